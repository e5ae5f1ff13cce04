// bench_numfmt.c — "%.9g" of floats: rd_fmt_float9 against snprintf (its naive twin), the text a
// TSV table export writes per value (rd/numfmt.h).
//
// Usage: bench_numfmt [--floats N] [--reps R] [--json PATH]
// The floats are what a table of Adagrad rows holds: half embedding values (normal, std 0.1),
// half accumulators (exp of a normal: 1e-4 .. 1e2). Each rep formats all N with each function;
// figures are millions of floats per second of thread CPU time (CLOCK_THREAD_CPUTIME_ID: on a
// shared machine this leaves out the time the thread waited for a core), median and best over
// the reps, and the ratio of the medians. The outputs are compared once (they must be the same
// bytes; exit 1 otherwise). Single-threaded.
#include "bench_args.h"
#include "rd/numfmt.h"
#include "rd/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct opts {
    long long floats, reps;
    const char *json;
} opts;

static void usage(FILE *out) {
    fprintf(out, "usage: bench_numfmt [--floats N] [--reps R] [--json PATH]\n");
}

// @return 0, 1 for --help, -1 after a message naming the option.
static int parse(int argc, char **argv, opts *o) {
    *o = (opts){1000000, 5, NULL};
    const char *P = "bench_numfmt";
    bench_seen seen = {0};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (bench_once(&seen, stderr, P, a) != 0)
            return -1;
        int rc = 0;
        if (strcmp(a, "--floats") == 0)
            rc = bench_int(stderr, P, a, v, 1, 1LL << 30, &o->floats);
        else if (strcmp(a, "--reps") == 0)
            rc = bench_int(stderr, P, a, v, 1, 1000, &o->reps);
        else if (strcmp(a, "--json") == 0 && v)
            o->json = v;
        else {
            fprintf(stderr, "%s: unknown option or missing value: %s\n", P, a);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    if (o->json && bench_json_ok(stderr, P, o->json) != 0)
        return -1;
    return 0;
}

// Format every float with f; @return the bytes written (kept so the loop is not optimised away).
static size_t run(size_t (*f)(float, char *), const float *x, size_t n, double *secs) {
    char buf[RD_FMT_FLOAT_MAX];
    size_t total = 0;
    double t0 = bench_cpu_s();
    for (size_t i = 0; i < n; i++)
        total += f(x[i], buf);
    *secs = bench_cpu_s() - t0;
    return total;
}

int main(int argc, char **argv) {
    opts o;
    int p = parse(argc, argv, &o);
    if (p != 0) {
        usage(p > 0 ? stdout : stderr);
        return p > 0 ? 0 : 2;
    }
    if (bench_one_process(stderr, "bench_numfmt") != 0)
        return 2;
    size_t n = (size_t)o.floats;
    float *x = malloc(n * sizeof *x);
    double *mf = malloc((size_t)o.reps * sizeof *mf), *ms = malloc((size_t)o.reps * sizeof *ms);
    if (!x || !mf || !ms) {
        fprintf(stderr, "bench_numfmt: out of memory for %zu floats\n", n);
        return 1;
    }
    rd_rng r;
    rd_rng_seed(&r, 11);
    for (size_t i = 0; i < n; i++) {
        double u1 = ((double)(rd_rng_u64(&r) >> 11) + 0.5) * 0x1p-53;
        double u2 = ((double)(rd_rng_u64(&r) >> 11) + 0.5) * 0x1p-53;
        double g = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        x[i] = i % 2 ? (float)(0.1 * g) : (float)exp(2.0 * g - 2.0);
    }
    // The same bytes, or the benchmark compares different work.
    for (size_t i = 0; i < n; i++) {
        char a[RD_FMT_FLOAT_MAX], b[RD_FMT_FLOAT_MAX];
        rd_fmt_float9(x[i], a);
        rd_fmt_float9_naive(x[i], b);
        if (strcmp(a, b) != 0) {
            fprintf(stderr, "bench_numfmt: float %zu: '%s' against snprintf's '%s'\n", i, a, b);
            return 1;
        }
    }
    size_t bytes = 0;
    for (long long k = 0; k < o.reps; k++) {
        double sf, ss;
        bytes += run(rd_fmt_float9, x, n, &sf);
        bytes += run(rd_fmt_float9_naive, x, n, &ss);
        mf[k] = (double)n / sf * 1e-6;
        ms[k] = (double)n / ss * 1e-6;
    }
    qsort(mf, (size_t)o.reps, sizeof *mf, bench_cmp_double);
    qsort(ms, (size_t)o.reps, sizeof *ms, bench_cmp_double);
    double fmed = bench_median_sorted(mf, (size_t)o.reps), fbest = mf[o.reps - 1];
    double smed = bench_median_sorted(ms, (size_t)o.reps), sbest = ms[o.reps - 1];
    printf("# bench_numfmt: %zu floats (embedding values and accumulators), %lld reps, %.1f bytes "
           "a float\n",
           n, o.reps, (double)bytes / (double)(2 * (size_t)o.reps * n));
    printf("%-22s %14s %14s\n", "M floats/s (cpu)", "median", "best");
    printf("%-22s %14.2f %14.2f\n", "rd_fmt_float9", fmed, fbest);
    printf("%-22s %14.2f %14.2f\n", "snprintf %.9g", smed, sbest);
    printf("%-22s %14.2f\n", "ratio (medians)", fmed / smed);
    if (o.json) {
        bench_json bj;
        FILE *f = bench_json_open(&bj, "bench_numfmt", o.json);
        if (!f)
            return 1;
        fprintf(f,
                "{\n  \"bench\": \"numfmt\",\n  \"floats\": %zu,\n  \"reps\": %lld,\n"
                "  \"fast_mfloats_per_s\": %.3f,\n  \"fast_mfloats_per_s_best\": %.3f,\n"
                "  \"snprintf_mfloats_per_s\": %.3f,\n  \"snprintf_mfloats_per_s_best\": %.3f,\n"
                "  \"speedup\": %.3f\n}\n",
                n, o.reps, fmed, fbest, smed, sbest, fmed / smed);
        if (bench_json_commit(&bj, "bench_numfmt") != 0)
            return 1;
    }
    free(x);
    free(mf);
    free(ms);
    return 0;
}
