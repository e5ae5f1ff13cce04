// rd/numfmt.h — numbers as text: a float as printf("%.9g") writes it, without printf; a double
// in the fewest digits that read back to it; a set of MPI ranks.
//
// Defines:
//   RD_FMT_FLOAT_MAX        bytes rd_fmt_float9 may write, the NUL included
//   rd_fmt_float9()         the shortest "%.9g" text of a float: 9 significant digits, enough to
//                           read back the same float (strtof), the same bytes as printf
//   rd_fmt_float9_naive()   its twin through snprintf (tests, benchmarks)
//   RD_FMT_DOUBLE_MAX       bytes rd_fmt_double may write, the NUL included
//   rd_fmt_double()         the shortest "%.15g" .. "%.17g" text of a double that strtod reads
//                           back to the same double (the figures of report.json and the metrics
//                           files)
//   rd_fmt_rank_set()       a set of MPI ranks, "ranks 0-3, 7 (mpiexec segments 1, 2)", for the
//                           launch-wide messages of app/args.c
//   rd_fmt_append()         printf-style text appended to a fixed buffer, cut at its end
//
// Why: a TSV export of a table writes one "%.9g" per float, and printf's general conversion made
// `recdistill table export --format tsv` about 6x slower than the binary export. The fast path
// scales the float by a power of ten in double precision, rounds to 9 digits and lays them out as
// %g does (fixed for exponents -4..8, else d.dddddddde+XX, trailing zeros dropped). Its rounding
// is exact unless the scaled value is within 1e-6 of a half (the double product is off by at most
// ~3e-7 there): those values, and non-finite ones, go through snprintf. bench/bench_numfmt.c
// measures both; tests/test_common.c compares them over every 4099th bit pattern, random ones and
// the edges.
#ifndef RD_NUMFMT_H
#define RD_NUMFMT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RD_FMT_FLOAT_MAX 32

/** Write x as printf("%.9g", (double)x) does into out (NUL-terminated).
 *  @return the length written, NUL excluded (at most RD_FMT_FLOAT_MAX - 1). */
size_t rd_fmt_float9(float x, char out[RD_FMT_FLOAT_MAX]);
/** The same through snprintf. */
size_t rd_fmt_float9_naive(float x, char out[RD_FMT_FLOAT_MAX]);

#define RD_FMT_DOUBLE_MAX 32

/** Write x into out (NUL-terminated) as the first of "%.15g", "%.16g" and "%.17g" that strtod
 *  reads back to x exactly: 0.25 stays "0.25", a computed AUC keeps every digit it has. A figure
 *  a reader recomputes from others (eta from three AUCs) then comes out the same to the last bit,
 *  which six decimals did not give (eta 0.766537 printed, 0.766548 from the printed AUCs).
 *  Non-finite values are written as printf does ("nan", "inf", "-inf"): JSON writers test
 *  isfinite first and write null.
 *  @return the length written, NUL excluded (at most RD_FMT_DOUBLE_MAX - 1). */
size_t rd_fmt_double(double x, char out[RD_FMT_DOUBLE_MAX]);

/** The ranks r < n with sel[r] as text into buf (NUL-terminated, cap > 0): "rank 2", "ranks 0-1,
 *  4", runs of three or more as a range; then, when appnum is not NULL (the launch has several
 *  mpiexec segments; appnum[r] is rank r's MPI_APPNUM, from 0), " (mpiexec segment 2)" or
 *  " (mpiexec segments 1, 2)", counted from 1. A list too long for buf ends after a whole entry
 *  with ", ... (N more)"; the segments take at most a third of cap, and are left out when their
 *  words and count do not fit there.
 *  @param[in] sel     n flags
 *  @param[in] appnum  n segment numbers, or NULL */
void rd_fmt_rank_set(const char *sel, const int32_t *appnum, int n, char *buf, size_t cap);

/** Append printf(fmt, ...) to buf[*len..] (NUL-terminated, cap > 0), cut at cap - 1 bytes;
 *  *len becomes the new length. Nothing is written once the buffer is full. */
void rd_fmt_append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif // RD_NUMFMT_H
