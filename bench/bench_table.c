// bench_table.c — one PS shard's table without MPI: rd_table_pull and rd_table_push per key, the
// table-side part of bench_ps (whose PS rank also pays the MPI copies), and the worker's side of
// a pull: rd_kv_dedup of the batch's raw keys.
//
// Usage: bench_table [--dim 64] [--optim sgd|adagrad|adam|ftrl] [--vocab V] [--zipf S]
//                    [--draws N] [--batches 8] [--reps R] [--json PATH]
// Like bench_ps: batches of N Zipf(S) draws over V ids, deduplicated and sorted, capacity 65536
// rows. The table is filled by pulling every batch once (untimed); then rep r pulls batch r % B
// (async pull: last-seen updated), computes the gradient 0.01 * value (untimed) and pushes it.
// Figures (per rep, then median and minimum over reps), in nanoseconds per key:
//   pull_ns / push_ns        thread CPU time (CLOCK_THREAD_CPUTIME_ID): on a shared machine
//                            this leaves out the time the thread waited for a core, though
//                            not the cache and memory traffic of other processes
//   pull_wall / push_wall    wall time (CLOCK_MONOTONIC)
//   dedup_ns / dedup_wall    rd_kv_dedup of the batch's N raw draws, per raw key (what a worker
//                            runs on each step's keys of a table before it pulls; a teacher step
//                            of the main job: --draws 65536 --vocab 2000)
// Single-threaded. No timed unit tests exist; this is where the table's speed is measured.
#include "bench_args.h"
#include "bench_tables.h"
#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/hash.h"
#include "rd/kv.h"
#include "rd/optim.h"
#include "rd/rng.h"
#include "rd/table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct opts {
    int dim, optim, draws, batches, reps;
    uint64_t vocab;
    double zipf;
    const char *json;
} opts;

static double clock_s(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *out) {
    fprintf(out, "usage: bench_table [--dim 64] [--optim sgd|adagrad|adam|ftrl] "
                 "[--vocab V] [--zipf S] [--draws N] [--batches 8] [--reps R] "
                 "[--json PATH]\n");
}

// @return 0, 1 for --help, -1 after a message naming the option.
static int parse(int argc, char **argv, opts *o) {
    *o = (opts){64, RD_OPT_ADAGRAD, 65536, 8, 200, 1000000, 1.05, NULL};
    const char *P = "bench_table";
    long long x = 0;
    bench_seen seen = {0};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (bench_once(&seen, stderr, P, a) != 0)
            return -1;
        if (strcmp(a, "--dim") == 0) {
            if (bench_int(stderr, P, a, v, 1, 1024, &x) != 0)
                return -1;
            o->dim = (int)x;
        } else if (strcmp(a, "--draws") == 0) {
            if (bench_int(stderr, P, a, v, 1, 1 << 30, &x) != 0)
                return -1;
            o->draws = (int)x;
        } else if (strcmp(a, "--batches") == 0) {
            if (bench_int(stderr, P, a, v, 1, 64, &x) != 0)
                return -1;
            o->batches = (int)x;
        } else if (strcmp(a, "--reps") == 0) {
            if (bench_int(stderr, P, a, v, 1, 1000000, &x) != 0)
                return -1;
            o->reps = (int)x;
        } else if (strcmp(a, "--vocab") == 0) {
            if (bench_int(stderr, P, a, v, 1, 1LL << 40, &x) != 0)
                return -1;
            o->vocab = (uint64_t)x;
        } else if (strcmp(a, "--zipf") == 0) {
            if (bench_num(stderr, P, a, v, 0, 100, &o->zipf) != 0)
                return -1;
        } else if (strcmp(a, "--json") == 0 && v) {
            o->json = v;
        } else if (strcmp(a, "--optim") == 0 && v) {
            if (bench_optim(stderr, P, v, &o->optim) != 0)
                return -1;
        } else {
            fprintf(stderr, "%s: '%s': %s\n", P, a,
                    v ? "unknown option" : "unknown option, or an option without its value");
            return -1;
        }
    }
    // What main allocates from the options (the table itself is a fixed 65536 rows): the Zipf
    // table of 8 bytes per id, the batches, the pulled values and gradients, the timings. A
    // --vocab up to 2^40 was taken and the run aborted in rd_xmalloc (exit 134).
    unsigned long long draws = (unsigned long long)o->draws, dim = (unsigned long long)o->dim;
    unsigned long long need = o->vocab * 8 + (unsigned long long)o->batches * (draws * 16 + 16) +
                              2 * draws * dim * 4 + 6 * (unsigned long long)o->reps * 8 +
                              rd_kv_dedup_scratch_bytes((size_t)draws) + draws * 12;
    char what[160];
    snprintf(what, sizeof what, "--vocab %llu (with --draws %d, --dim %d, --batches %d, --reps %d)",
             (unsigned long long)o->vocab, o->draws, o->dim, o->batches, o->reps);
    if (bench_mem_ok(stderr, P, what, need, bench_phys_bytes()) != 0)
        return -1;
    if (o->json && bench_json_ok(stderr, P, o->json) != 0)
        return -1;
    return 0;
}

// median and minimum of x (n values; sorts x).
static void med_min(double *x, int n, double *med, double *min) {
    qsort(x, (size_t)n, sizeof *x, bench_cmp_double);
    *med = n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
    *min = x[0];
}

int main(int argc, char **argv) {
    opts o;
    int pst = parse(argc, argv, &o);
    if (pst != 0) {
        usage(pst == 1 ? stdout : stderr);
        return pst == 1 ? 0 : 2;
    }
    if (bench_one_process(stderr, "bench_table") != 0)
        return 2;
    rd_table_config tc;
    char name[16];
    snprintf(name, sizeof name, "d%d", o.dim);
    bench_table_config(&tc, name, o.dim, o.optim);
    rd_table *t = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_table_create(&tc, 0, 1, &t, &eb) != RD_OK) {
        fprintf(stderr, "bench_table: %s\n", eb.msg);
        return 1;
    }
    // Zipf(s) by inverse CDF, as bench_ps; keys as a table sees them.
    double *cdf = rd_xmalloc(o.vocab * sizeof *cdf), acc = 0;
    for (uint64_t i = 0; i < o.vocab; i++)
        cdf[i] = acc += 1.0 / pow((double)(i + 1), o.zipf);
    for (uint64_t i = 0; i < o.vocab; i++)
        cdf[i] /= acc;
    uint64_t tid = rd_hash_str(tc.name, 0);
    uint64_t **batch = rd_xmalloc((size_t)o.batches * sizeof *batch);
    uint64_t **raw = rd_xmalloc((size_t)o.batches * sizeof *raw); // the draws, as drawn
    size_t *nb = rd_xmalloc((size_t)o.batches * sizeof *nb);
    double uniq = 0;
    for (int b = 0; b < o.batches; b++) {
        rd_rng r;
        rd_rng_split(&r, 99, (uint64_t)b);
        uint64_t *k = batch[b] = rd_xmalloc((size_t)o.draws * sizeof *k);
        for (int i = 0; i < o.draws; i++) {
            double u = rd_rng_uniform(&r);
            uint64_t lo = 0, hi = o.vocab - 1;
            while (lo < hi) {
                uint64_t mid = (lo + hi) / 2;
                if (cdf[mid] < u)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            k[i] = rd_table_key(tid, lo + 1);
        }
        raw[b] = rd_xmalloc((size_t)o.draws * sizeof *k);
        memcpy(raw[b], k, (size_t)o.draws * sizeof *k);
        qsort(k, (size_t)o.draws, sizeof *k, cmp_u64);
        size_t n = 0;
        for (int i = 0; i < o.draws; i++)
            if (n == 0 || k[n - 1] != k[i])
                k[n++] = k[i];
        nb[b] = n;
        uniq += (double)n;
    }
    const size_t dim = (size_t)o.dim;
    float *out = rd_aligned_xalloc((size_t)o.draws * dim * sizeof(float));
    float *g = rd_aligned_xalloc((size_t)o.draws * dim * sizeof(float));
    for (int b = 0; b < o.batches; b++) // fill the table (untimed)
        RD_ASSERT(rd_table_pull(t, batch[b], nb[b], 0, out) == RD_OK);

    // rd_kv_dedup's output, checked against the qsort of each batch above (untimed).
    size_t sb = rd_kv_dedup_scratch_bytes((size_t)o.draws);
    void *scratch = rd_xmalloc(sb);
    uint64_t *uq = rd_xmalloc((size_t)o.draws * sizeof *uq);
    uint32_t *inv = rd_xmalloc((size_t)o.draws * sizeof *inv);
    for (int b = 0; b < o.batches; b++) {
        size_t nu = 0;
        RD_ASSERT(rd_kv_dedup(raw[b], (size_t)o.draws, uq, inv, &nu, scratch, sb) == RD_OK);
        RD_ASSERT(nu == nb[b] && memcmp(uq, batch[b], nu * sizeof *uq) == 0);
    }

    double *x[6];
    for (int j = 0; j < 6; j++)
        x[j] = rd_xmalloc((size_t)o.reps * sizeof(double));
    double check = 0;
    for (int rep = 0; rep < o.reps; rep++) {
        int b = rep % o.batches;
        size_t n = nb[b];
        double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
        RD_ASSERT(rd_table_pull(t, batch[b], n, rep + 1, out) == RD_OK);
        double c1 = clock_s(CLOCK_THREAD_CPUTIME_ID), w1 = clock_s(CLOCK_MONOTONIC);
        for (size_t i = 0; i < n * dim; i++)
            g[i] = 0.01f * out[i];
        double c2 = clock_s(CLOCK_THREAD_CPUTIME_ID), w2 = clock_s(CLOCK_MONOTONIC);
        RD_ASSERT(rd_table_push(t, batch[b], g, n, rep + 1) == RD_OK);
        double c3 = clock_s(CLOCK_THREAD_CPUTIME_ID), w3 = clock_s(CLOCK_MONOTONIC);
        size_t nu = 0;
        RD_ASSERT(rd_kv_dedup(raw[b], (size_t)o.draws, uq, inv, &nu, scratch, sb) == RD_OK);
        double c4 = clock_s(CLOCK_THREAD_CPUTIME_ID), w4 = clock_s(CLOCK_MONOTONIC);
        x[4][rep] = (c4 - c3) / (double)o.draws * 1e9;
        x[5][rep] = (w4 - w3) / (double)o.draws * 1e9;
        x[0][rep] = (c1 - c0) / (double)n * 1e9;
        x[1][rep] = (c3 - c2) / (double)n * 1e9;
        x[2][rep] = (w1 - w0) / (double)n * 1e9;
        x[3][rep] = (w3 - w2) / (double)n * 1e9;
        check += (double)out[dim / 2];
    }
    double med[6], mn[6];
    for (int j = 0; j < 6; j++)
        med_min(x[j], o.reps, &med[j], &mn[j]);
    printf("# bench_table: dim %d, %s, Zipf(%.2f) over %llu ids, %d draws per batch (%.0f "
           "unique), %zu rows, %d reps (checksum %g)\n",
           o.dim, rd_optim_name(o.optim), o.zipf, (unsigned long long)o.vocab, o.draws,
           uniq / o.batches, rd_table_size(t), o.reps, check);
    printf("%-10s %12s %12s %12s %12s\n", "ns/key", "cpu median", "cpu min", "wall median",
           "wall min");
    printf("%-10s %12.1f %12.1f %12.1f %12.1f\n", "pull", med[0], mn[0], med[2], mn[2]);
    printf("%-10s %12.1f %12.1f %12.1f %12.1f\n", "push", med[1], mn[1], med[3], mn[3]);
    printf("%-10s %12.1f %12.1f %12.1f %12.1f   (per raw key)\n", "dedup", med[4], mn[4], med[5],
           mn[5]);
    if (o.json) {
        bench_json bj;
        FILE *f = bench_json_open(&bj, "bench_table", o.json);
        if (!f)
            return 1;
        fprintf(f,
                "{\n  \"bench\": \"table\",\n  \"dim\": %d,\n  \"optimizer\": \"%s\",\n"
                "  \"zipf\": %.3f,\n  \"vocab\": %llu,\n  \"draws\": %d,\n"
                "  \"unique_keys_per_batch\": %.1f,\n  \"rows\": %zu,\n  \"reps\": %d,\n"
                "  \"pull_ns\": %.2f,\n  \"pull_ns_min\": %.2f,\n  \"push_ns\": %.2f,\n"
                "  \"push_ns_min\": %.2f,\n  \"pull_wall_ns\": %.2f,\n  \"push_wall_ns\": %.2f,\n"
                "  \"dedup_ns\": %.2f,\n  \"dedup_ns_min\": %.2f,\n  \"dedup_wall_ns\": %.2f\n}\n",
                o.dim, rd_optim_name(o.optim), o.zipf, (unsigned long long)o.vocab, o.draws,
                uniq / o.batches, rd_table_size(t), o.reps, med[0], mn[0], med[1], mn[1], med[2],
                med[3], med[4], mn[4], med[5]);
        if (bench_json_commit(&bj, "bench_table") != 0)
            return 1;
    }
    for (int j = 0; j < 6; j++)
        rd_free(x[j]);
    for (int b = 0; b < o.batches; b++) {
        rd_free(batch[b]);
        rd_free(raw[b]);
    }
    rd_free(batch);
    rd_free(raw);
    rd_free(scratch);
    rd_free(uq);
    rd_free(inv);
    rd_free(nb);
    rd_free(cdf);
    rd_aligned_free(out);
    rd_aligned_free(g);
    rd_table_destroy(t);
    return 0;
}
