// rd/numfmt.h — numbers as text: a float as printf("%.9g") writes it, without printf.
//
// Defines:
//   RD_FMT_FLOAT_MAX        bytes rd_fmt_float9 may write, the NUL included
//   rd_fmt_float9()         the shortest "%.9g" text of a float: 9 significant digits, enough to
//                           read back the same float (strtof), the same bytes as printf
//   rd_fmt_float9_naive()   its twin through snprintf (tests, benchmarks)
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

#define RD_FMT_FLOAT_MAX 32

/** Write x as printf("%.9g", (double)x) does into out (NUL-terminated).
 *  @return the length written, NUL excluded (at most RD_FMT_FLOAT_MAX - 1). */
size_t rd_fmt_float9(float x, char out[RD_FMT_FLOAT_MAX]);
/** The same through snprintf. */
size_t rd_fmt_float9_naive(float x, char out[RD_FMT_FLOAT_MAX]);

#endif // RD_NUMFMT_H
