// bench_window.c — the cost of finding a record's stream window (rd_dataset_window_of: a binary
// search over the windows' bounds) against its linear twin (rd_dataset_window_of_naive, the scan
// the distillation owner rule ran per target on the teacher and on the student).
//
// Usage: bench_window [--events N] [--windows K] [--lookups M] [--reps R] [--out DIR]
//                     [--json PATH]
// Prepares N synthetic events (default 200000) with K stream windows (default 10000, the most
// data.split.stream_windows allows) in DIR/ds (DIR by default a fresh folder in $TMPDIR or /tmp,
// removed however the run ends), then looks up M stream records (default 100000, in stream order,
// as targets arrive) with each function per rep. Figures: nanoseconds per lookup of thread CPU
// time (CLOCK_THREAD_CPUTIME_ID), median and best over the reps, and the ratio of the medians.
// The two must agree on every record looked up (exit 1 otherwise). Single-threaded.
#include "bench_args.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct opts {
    long long events, windows, lookups, reps;
    const char *out, *json;
} opts;

static void usage(FILE *out) {
    fprintf(out, "usage: bench_window [--events N] [--windows K] [--lookups M] [--reps R] "
                 "[--out DIR] [--json PATH]\n"
                 "  --out DIR  prepare the events in DIR/ds (default: a fresh folder in $TMPDIR\n"
                 "             or /tmp, removed at the end)\n");
}

// @return 0, 1 for --help, -1 after a message naming the option.
static int parse(int argc, char **argv, opts *o) {
    *o = (opts){200000, 10000, 100000, 5, NULL, NULL};
    const char *P = "bench_window";
    bench_seen seen = {0};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (bench_once(&seen, stderr, P, a) != 0)
            return -1;
        int rc = 0;
        if (strcmp(a, "--events") == 0)
            rc = bench_int(stderr, P, a, v, 100, 1LL << 32, &o->events);
        else if (strcmp(a, "--windows") == 0)
            rc = bench_int(stderr, P, a, v, 1, RD_SPLIT_MAX_WINDOWS, &o->windows);
        else if (strcmp(a, "--lookups") == 0)
            rc = bench_int(stderr, P, a, v, 1, 1LL << 34, &o->lookups);
        else if (strcmp(a, "--reps") == 0)
            rc = bench_int(stderr, P, a, v, 1, 1000, &o->reps);
        else if (strcmp(a, "--out") == 0 && v)
            o->out = v;
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

// Look up m stream records (cycling through [b, e)) with f; @return the sum of the windows
// found (kept so that the loop is not optimised away).
static int64_t run(int64_t (*f)(const rd_dataset *, uint64_t),
                   const rd_dataset *ds,
                   uint64_t b,
                   uint64_t e,
                   uint64_t m,
                   double *secs) {
    int64_t sum = 0;
    uint64_t i = b;
    double t0 = bench_cpu_s();
    for (uint64_t k = 0; k < m; k++) {
        sum += f(ds, i);
        i = i + 1 < e ? i + 1 : b;
    }
    *secs = bench_cpu_s() - t0;
    return sum;
}

int main(int argc, char **argv) {
    opts o;
    int p = parse(argc, argv, &o);
    if (p != 0) {
        usage(p > 0 ? stdout : stderr);
        return p > 0 ? 0 : 2;
    }
    if (bench_one_process(stderr, "bench_window") != 0)
        return 2;
    // Without --out: a new folder (in $TMPDIR, else /tmp) for the dataset, removed however the
    // run ends (bench_tmp_own).
    const char *dir = o.out;
    char tmp[4200];
    if (!dir) {
        if (bench_tmp_make("bench_window", "bench_window", tmp, sizeof tmp) != 0)
            return 1;
        dir = tmp;
    }
    rd_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        fprintf(stderr, "bench_window: out of memory\n");
        return 1;
    }
    rd_config_defaults(cfg);
    cfg->data.source = RD_DATA_SYNTHETIC;
    cfg->data.synthetic.events = (uint64_t)o.events;
    cfg->data.split.stream_windows = (int)o.windows;
    if (snprintf(cfg->data.dir, sizeof cfg->data.dir, "%s/ds", dir) >= (int)sizeof cfg->data.dir) {
        fprintf(stderr, "bench_window: path too long: %s/ds\n", dir);
        return 2;
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_dataset *ds = NULL;
    int rc = rd_dataset_prepare(&cfg->data, 1, &eb);
    if (rc == RD_OK)
        rc = rd_dataset_open(cfg->data.dir, 0, &ds, &eb);
    if (rc != RD_OK) {
        fprintf(stderr, "bench_window: %s\n", eb.msg);
        return 1;
    }
    uint32_t K = rd_dataset_get_info(ds)->n_windows;
    uint64_t b = rd_dataset_batch(ds).end, e = rd_dataset_holdout(ds).begin;
    if (e <= b) {
        fprintf(stderr, "bench_window: the stream is empty (--events too few)\n");
        return 1;
    }
    for (uint64_t i = 0; i < rd_dataset_get_info(ds)->n_events; i++)
        if (rd_dataset_window_of(ds, i) != rd_dataset_window_of_naive(ds, i)) {
            fprintf(stderr, "bench_window: record %llu: window %lld, the scan says %lld\n",
                    (unsigned long long)i, (long long)rd_dataset_window_of(ds, i),
                    (long long)rd_dataset_window_of_naive(ds, i));
            return 1;
        }
    uint64_t m = (uint64_t)o.lookups;
    double *fast = malloc((size_t)o.reps * sizeof *fast);
    double *scan = malloc((size_t)o.reps * sizeof *scan);
    if (!fast || !scan) {
        fprintf(stderr, "bench_window: out of memory\n");
        return 1;
    }
    int64_t check = 0;
    for (long long r = 0; r < o.reps; r++) {
        double sf, ss;
        check += run(rd_dataset_window_of, ds, b, e, m, &sf);
        check -= run(rd_dataset_window_of_naive, ds, b, e, m, &ss);
        fast[r] = sf / (double)m * 1e9;
        scan[r] = ss / (double)m * 1e9;
    }
    if (check != 0) {
        fprintf(stderr, "bench_window: the two lookups disagree\n");
        return 1;
    }
    qsort(fast, (size_t)o.reps, sizeof *fast, bench_cmp_double);
    qsort(scan, (size_t)o.reps, sizeof *scan, bench_cmp_double);
    double fmed = bench_median_sorted(fast, (size_t)o.reps), fbest = fast[0];
    double smed = bench_median_sorted(scan, (size_t)o.reps), sbest = scan[0];
    printf("# bench_window: %llu events, %u stream windows (%llu stream records), %llu lookups a "
           "rep, %lld reps\n",
           (unsigned long long)rd_dataset_get_info(ds)->n_events, K, (unsigned long long)(e - b),
           (unsigned long long)m, o.reps);
    printf("%-28s %12s %12s\n", "ns a lookup (cpu)", "median", "best");
    printf("%-28s %12.1f %12.1f\n", "rd_dataset_window_of", fmed, fbest);
    printf("%-28s %12.1f %12.1f\n", "rd_dataset_window_of_naive", smed, sbest);
    printf("%-28s %12.1f\n", "ratio (medians)", smed / fmed);
    rd_dataset_close(ds);
    if (o.json) {
        bench_json bj;
        FILE *f = bench_json_open(&bj, "bench_window", o.json);
        if (!f)
            return 1;
        fprintf(f,
                "{\n  \"bench\": \"window\",\n  \"events\": %lld,\n  \"windows\": %u,\n"
                "  \"lookups\": %llu,\n  \"reps\": %lld,\n  \"search_ns\": %.3f,\n"
                "  \"search_ns_best\": %.3f,\n  \"scan_ns\": %.3f,\n  \"scan_ns_best\": %.3f,\n"
                "  \"speedup\": %.3f\n}\n",
                o.events, K, (unsigned long long)m, o.reps, fmed, fbest, smed, sbest, smed / fmed);
        if (bench_json_commit(&bj, "bench_window") != 0)
            return 1;
    }
    free(fast);
    free(scan);
    free(cfg);
    return 0;
}
