// bench_ps.c — parameter-server throughput: P servers, W workers, Zipf keys, dims 8/16/64.
//
// Usage: mpiexec -n P+W bench_ps [--ps P] [--dims 8,16,64] [--draws N] [--vocab V] [--zipf S]
//                                [--steps N] [--warmup N] [--optim sgd|adagrad|adam|ftrl]
//                                [--sync 0|1] [--max-msg BYTES] [--shm 0|1] [--json PATH]
// Each worker pre-generates batches of N Zipf(S) draws over V ids per table, deduplicates them
// (rd_kv_dedup, outside the timed loop), then runs `steps` timed steps per dim after `warmup`
// untimed ones: pull(batch b+1) is issued before waiting for push(batch b) (the next batch's
// pull overlaps this batch's compute and push), the "gradient" is 0.01 * value.
// Figures (per dim; the PS ranks are the resource being measured):
//   memcpy_gbps        memcpy of 256 MiB buffers (bytes copied per second, counted once), measured
//                      by worker 0 just before and just after this dim's timed steps (3 + 3
//                      samples, median; the PS ranks idle meanwhile), so that the reference sees
//                      the same machine load as the steps (this VM is shared and noisy). 256 MiB
//                      is DRAM-bound like the shard: at dim 64 the table holds ~110 k rows of
//                      512 B (Adagrad) = 74 MB, beyond a Zen 4 CCD's 32 MB L3. At dims 8/16 the
//                      table (16/24 MB) is cache-resident, so there the ratio flatters the PS.
//   memcpy_min/max     the extreme samples (noise indicator)
//   ps_row_gbps        embedding bytes (dim * 4 per key) pulled + pushed per second per PS rank
//                      (each direction counted once: a pulled row once, a pushed gradient once)
//   ratio_memcpy       ps_row_gbps / memcpy_gbps
//   bytes_per_key      bytes crossing between the processes (requests + replies, headers
//                      included, through MPI or the shared-memory region) per key pulled or
//                      pushed
// --shm 1 (default) is ps.shm auto: payloads to a PS rank on this node go through a shared-memory
// region, only a header and a 32-byte descriptor through MPI; --shm 0 sends everything by MPI.
//   min_bytes_per_key  dim * 4 + 8 (one key id + one row, the floor of either direction)
//   keys_per_s_per_ps  keys pulled + pushed per second per PS rank
// plus min/avg/max of per-worker seconds (OSU style). Wall time is the slowest worker's.
#include "bench_args.h"
#include "bench_tables.h"
#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/comm.h"
#include "rd/config.h"
#include "rd/hash.h"
#include "rd/kv.h"
#include "rd/log.h"
#include "rd/optim.h"
#include "rd/rng.h"
#include "rd/server.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_json_fail; // rank 0 could not write --json: the exit status is 1

#define MAX_DIMS 8
#define N_BATCH  8

typedef struct opts {
    int ps;
    int n_dims;
    int dims[MAX_DIMS];
    int draws;
    uint64_t vocab;
    double zipf;
    int steps, warmup;
    int optim;
    int sync;
    uint64_t max_msg;
    int shm;
    const char *json;
} opts;

typedef struct row {
    int dim;
    double seconds, t_min, t_avg, t_max;
    double memcpy_gbps, memcpy_min, memcpy_max, ps_row_gbps, ratio, bytes_per_key,
        keys_per_s_per_ps;
    double unique_per_batch;
    int min_bytes_per_key;
} row;

static void poll_wait(MPI_Request *r) {
    rd_backoff b;
    rd_backoff_reset(&b, 50);
    for (;;) {
        int done = 0;
        RD_MPI_CHECK(MPI_Test(r, &done, MPI_STATUS_IGNORE));
        if (done)
            return;
        rd_backoff_wait(&b);
    }
}

static void barrier(MPI_Comm c) {
    MPI_Request r;
    RD_MPI_CHECK(MPI_Ibarrier(c, &r));
    poll_wait(&r);
}

// memcpy bandwidth: `n` samples of copying `bytes` from a to b (already faulted in).
static void measure_memcpy(char *a, char *b, size_t bytes, double *out, int n) {
    for (int i = 0; i < n; i++) {
        double t0 = rd_mono_s();
        memcpy(b, a, bytes);
        double t1 = rd_mono_s();
        a[i] = b[bytes - 1 - (size_t)i]; // keep the copies observable
        out[i] = (double)bytes / (t1 - t0) / 1e9;
    }
}

// @return 0, 1 for --help, -1 after a message naming the option (on err; NULL off rank 0).
static int parse(int argc, char **argv, opts *o, FILE *err) {
    *o = (opts){1, 3,         {8, 16, 64}, 65536, 1000000, 1.05, 40, 8, RD_OPT_ADAGRAD,
                0, 64u << 20, 1,           NULL};
    const char *P = "bench_ps";
    long long x = 0;
    bench_seen seen = {0};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        static const struct {
            const char *name;
            long long lo, hi;
        } ints[] = {{"--ps", 1, 4096},
                    {"--draws", 1, 1 << 30},
                    {"--vocab", 1, 1LL << 40},
                    {"--steps", 1, 1 << 30},
                    {"--warmup", 0, 1 << 30},
                    {"--sync", 0, 1},
                    {"--max-msg", 4096, 1LL << 31},
                    {"--shm", 0, 1}};
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (bench_once(&seen, err, P, a) != 0)
            return -1;
        int k = 0, n_ints = (int)(sizeof ints / sizeof ints[0]);
        while (k < n_ints && strcmp(a, ints[k].name) != 0)
            k++;
        if (k < n_ints) {
            if (bench_int(err, P, a, v, ints[k].lo, ints[k].hi, &x) != 0)
                return -1;
            switch (k) {
                case 0:
                    o->ps = (int)x;
                    break;
                case 1:
                    o->draws = (int)x;
                    break;
                case 2:
                    o->vocab = (uint64_t)x;
                    break;
                case 3:
                    o->steps = (int)x;
                    break;
                case 4:
                    o->warmup = (int)x;
                    break;
                case 5:
                    o->sync = (int)x;
                    break;
                case 6:
                    o->max_msg = (size_t)x;
                    break;
                default:
                    o->shm = (int)x;
                    break;
            }
        } else if (strcmp(a, "--zipf") == 0) {
            if (bench_num(err, P, a, v, 0, 100, &o->zipf) != 0)
                return -1;
        } else if (strcmp(a, "--json") == 0 && v) {
            o->json = v;
        } else if (strcmp(a, "--optim") == 0 && v) {
            if (bench_optim(err, P, v, &o->optim) != 0)
                return -1;
        } else if (strcmp(a, "--dims") == 0 && v) {
            long long d[MAX_DIMS];
            if (bench_int_list(err, P, a, v, 1, 1024, MAX_DIMS, d, &o->n_dims) != 0)
                return -1;
            for (int j = 0; j < o->n_dims; j++)
                o->dims[j] = (int)d[j];
        } else {
            if (err)
                fprintf(err, "%s: '%s': %s\n", P, a,
                        v ? "unknown option" : "unknown option, or an option without its value");
            return -1;
        }
    }
    if (o->n_dims < 1) {
        if (err)
            fprintf(err, "%s: --dims: expected a list of dims in 1..1024\n", P);
        return -1;
    }
    // A push message holds whole keys (8 + 4 x dim bytes each): --max-msg 4096 with a dim of
    // 1022 or more was taken, and the first push aborted the worker ("FATAL: push:
    // ps.max_msg_bytes (4096) cannot hold one key of table d1024") after the warm-up.
    for (int j = 0; j < o->n_dims; j++)
        if (8 + 4 * (uint64_t)o->dims[j] > o->max_msg) {
            if (err)
                fprintf(err,
                        "%s: --max-msg %llu cannot hold one key of --dims %d (a push sends 8 + 4 x "
                        "dim = %d bytes a key)\n",
                        P, (unsigned long long)o->max_msg, o->dims[j], 8 + 4 * o->dims[j]);
            return -1;
        }
    // Only rank 0 (err != NULL) probes --json: ranks probing one path at once race (one's
    // probe file is removed under another's access()); main takes rank 0's verdict.
    if (o->json && err && bench_json_ok(err, P, o->json) != 0)
        return -1;
    return 0;
}

// Zipf(s) over [0, n) by inverse CDF on a table (built once per worker).
typedef struct zipf {
    double *cdf;
    uint64_t n;
} zipf;

static void zipf_init(zipf *z, uint64_t n, double s) {
    z->n = n;
    z->cdf = rd_xmalloc(n * sizeof *z->cdf);
    double acc = 0;
    for (uint64_t i = 0; i < n; i++)
        z->cdf[i] = acc += 1.0 / pow((double)(i + 1), s);
    for (uint64_t i = 0; i < n; i++)
        z->cdf[i] /= acc;
}

static uint64_t zipf_draw(const zipf *z, rd_rng *r) {
    double u = rd_rng_uniform(r);
    uint64_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

// `steps` pipelined steps of one dim on this worker, after a barrier of the workers. Values
// and gradients are double-buffered: pull(b+1) is in flight while batch b is computed, and
// push(b) while batch b+1 is pulled and computed (push(b-1) is waited before its gradient
// buffer is reused). Returns this worker's seconds.
static double run_dim(rd_kv *kv,
                      int steps,
                      int table,
                      uint64_t *const *batch,
                      const size_t *nb,
                      float *vals[2],
                      float *grads[2],
                      MPI_Comm job) {
    const size_t dim = (size_t)rd_kv_dim(kv, table);
    int ts_pull = -1, ts_push[2] = {-1, -1};
    RD_ASSERT(rd_kv_wait_all(kv) == RD_OK);
    barrier(job);
    double t0 = rd_mono_s();
    int rc = rd_kv_pull(kv, table, batch[0], nb[0], vals[0], &ts_pull);
    RD_ASSERT_MSG(rc == RD_OK, "pull: %s", rd_kv_errmsg(kv));
    for (int s = 0; s < steps; s++) {
        int b = s % N_BATCH;
        rc = rd_kv_wait(kv, ts_pull);
        RD_ASSERT_MSG(rc == RD_OK, "pull: %s", rd_kv_errmsg(kv));
        const float *v = vals[s & 1];
        // Issue the next pull now: it overlaps this step's compute and push.
        if (s + 1 < steps) {
            int b1 = (s + 1) % N_BATCH;
            rc = rd_kv_pull(kv, table, batch[b1], nb[b1], vals[(s + 1) & 1], &ts_pull);
            RD_ASSERT_MSG(rc == RD_OK, "pull: %s", rd_kv_errmsg(kv));
        }
        float *g = grads[s & 1];
        if (ts_push[s & 1] >= 0) {
            rc = rd_kv_wait(kv, ts_push[s & 1]); // push(s-2) used this buffer
            RD_ASSERT_MSG(rc == RD_OK, "push: %s", rd_kv_errmsg(kv));
        }
        size_t nf = nb[b] * dim;
        for (size_t i = 0; i < nf; i++)
            g[i] = 0.01f * v[i];
        rc = rd_kv_push(kv, table, batch[b], g, nb[b], &ts_push[s & 1]);
        RD_ASSERT_MSG(rc == RD_OK, "push: %s", rd_kv_errmsg(kv));
        rc = rd_kv_clock(kv, NULL);
        RD_ASSERT(rc == RD_OK);
    }
    rc = rd_kv_wait_all(kv);
    RD_ASSERT_MSG(rc == RD_OK, "%s", rd_kv_errmsg(kv));
    return rd_mono_s() - t0;
}

static void usage(FILE *out) {
    fprintf(out, "usage: mpiexec -n P+W bench_ps [--ps P] [--dims 8,16,64] [--draws N] "
                 "[--vocab V] [--zipf S] [--steps N] [--warmup N] "
                 "[--optim sgd|adagrad|adam|ftrl] [--sync 0|1] [--max-msg BYTES] [--shm 0|1] "
                 "[--json PATH]\n");
}

int main(int argc, char **argv) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_mpi_init(&argc, &argv, MPI_THREAD_SINGLE, &eb) != RD_OK) {
        fprintf(stderr, "%s\n", eb.msg);
        return 1;
    }
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rd_log_init(RD_LOG_LEVEL_WARN, rank, "bench");
    opts o;
    int pst = parse(argc, argv, &o, rank == 0 ? stderr : NULL);
    MPI_Bcast(&pst, 1, MPI_INT, 0, MPI_COMM_WORLD); // every rank follows rank 0's verdict
    if (pst == 1) {
        if (rank == 0)
            usage(stdout);
        rd_mpi_finalize(0);
        return 0;
    }
    if (pst != 0 || size <= o.ps) {
        if (rank == 0 && pst == 0)
            fprintf(stderr, "bench_ps: --ps %d needs more than %d ranks (P+W), got %d\n", o.ps,
                    o.ps, size);
        if (rank == 0)
            usage(stderr);
        rd_mpi_finalize(2);
        return 2;
    }
    // The memory the workers on one node need, known from the options (the PS ranks' tables are
    // a fixed 65536 rows): every worker's Zipf table of 8 bytes per id, its batches, dedup
    // buffers, values and gradients, and worker 0's two memcpy buffers. A --vocab up to 2^40 was
    // taken and every worker aborted in rd_xmalloc. Each node sums its ranks' needs; the node
    // most over its memory (MPI_MAXLOC) is the one reported, by rank 0.
    {
        const unsigned long long draws = (unsigned long long)o.draws;
        int maxdim = 0;
        for (int d = 0; d < o.n_dims; d++)
            maxdim = o.dims[d] > maxdim ? o.dims[d] : maxdim;
        unsigned long long mine[2] = {0, rank >= o.ps}, node_sum[2];
        if (rank >= o.ps)
            mine[0] = o.vocab * 8 + draws * (8 + 4 + N_BATCH * 8) +
                      rd_kv_dedup_scratch_bytes((size_t)o.draws) +
                      4 * draws * (unsigned long long)maxdim * 4 +
                      (rank == o.ps ? 2ULL * (256u << 20) : 0);
        MPI_Comm node;
        RD_MPI_CHECK(
            MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
        RD_MPI_CHECK(MPI_Allreduce(mine, node_sum, 2, MPI_UNSIGNED_LONG_LONG, MPI_SUM, node));
        RD_MPI_CHECK(MPI_Comm_free(&node));
        const unsigned long long phys = bench_phys_bytes();
        struct {
            double over;
            int rank;
        } in = {phys ? (double)node_sum[0] - (double)phys : 0.0, rank}, worst;
        RD_MPI_CHECK(MPI_Allreduce(&in, &worst, 1, MPI_DOUBLE_INT, MPI_MAXLOC, MPI_COMM_WORLD));
        if (worst.over > 0) {
            unsigned long long fig[3] = {node_sum[0], node_sum[1], phys};
            RD_MPI_CHECK(MPI_Bcast(fig, 3, MPI_UNSIGNED_LONG_LONG, worst.rank, MPI_COMM_WORLD));
            char what[200];
            snprintf(
                what, sizeof what,
                "--vocab %llu (with --draws %d, dims up to %d, %llu worker rank(s) on one node)",
                (unsigned long long)o.vocab, o.draws, maxdim, fig[1]);
            bench_mem_ok(rank == 0 ? stderr : NULL, "bench_ps", what, fig[0], fig[2]);
            if (rank == 0)
                usage(stderr);
            rd_mpi_finalize(2);
            return 2;
        }
    }
    int W = size - o.ps;
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    cfg->cluster.ps_ranks = o.ps;
    cfg->cluster.n_jobs = 1;
    cfg->cluster.poll_us_max = 50;
    snprintf(cfg->cluster.jobs[0].name, RD_NAME_MAX, "bench");
    cfg->cluster.jobs[0].ranks = W;
    cfg->ps.sync = o.sync;
    cfg->ps.max_msg_bytes = o.max_msg;
    cfg->ps.shm = o.shm ? RD_SHM_AUTO : RD_SHM_OFF;
    cfg->ps.n_tables = o.n_dims;
    for (int d = 0; d < o.n_dims; d++) {
        char name[RD_NAME_MAX];
        snprintf(name, sizeof name, "d%d", o.dims[d]);
        bench_table_config(&cfg->ps.tables[d], name, o.dims[d], o.optim);
    }

    rd_comm *comm = NULL;
    int rc = rd_comm_create(MPI_COMM_WORLD, cfg, &comm, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "%s", eb.msg);
    row rows[MAX_DIMS];
    memset(rows, 0, sizeof rows);
    if (comm->role_kind == RD_ROLE_PS) {
        rc = rd_ps_serve(comm, cfg);
        RD_ASSERT(rc == RD_OK);
    } else {
        rd_kv *kv = NULL;
        rc = rd_kv_create(comm, cfg, &kv, &eb);
        RD_ASSERT_MSG(rc == RD_OK, "%s", eb.msg);
        int w = comm->job_rank;
        // memcpy reference buffers (worker 0), faulted in once.
        const size_t mc_bytes = (size_t)256 << 20;
        char *mc_a = NULL, *mc_b = NULL;
        if (w == 0) {
            mc_a = rd_aligned_xalloc(mc_bytes);
            mc_b = rd_aligned_xalloc(mc_bytes);
            memset(mc_a, 1, mc_bytes);
            memset(mc_b, 2, mc_bytes);
        }
        zipf z;
        zipf_init(&z, o.vocab, o.zipf);
        size_t maxdim = 0;
        for (int d = 0; d < o.n_dims; d++)
            if ((size_t)o.dims[d] > maxdim)
                maxdim = (size_t)o.dims[d];
        uint64_t *raw = rd_xmalloc((size_t)o.draws * 8);
        uint32_t *inv = rd_xmalloc((size_t)o.draws * 4);
        void *scratch = rd_xmalloc(rd_kv_dedup_scratch_bytes((size_t)o.draws));
        float *vals[2] = {rd_aligned_xalloc((size_t)o.draws * maxdim * 4),
                          rd_aligned_xalloc((size_t)o.draws * maxdim * 4)};
        float *grads[2] = {rd_aligned_xalloc((size_t)o.draws * maxdim * 4),
                           rd_aligned_xalloc((size_t)o.draws * maxdim * 4)};
        for (int d = 0; d < o.n_dims; d++) {
            uint64_t *batch[N_BATCH];
            size_t nb[N_BATCH];
            double uniq = 0;
            uint64_t tid = rd_hash_str(cfg->ps.tables[d].name, 0);
            for (int b = 0; b < N_BATCH; b++) {
                rd_rng rr;
                rd_rng_split(&rr, 99, (uint64_t)(w * 1000 + d * N_BATCH + b));
                for (int i = 0; i < o.draws; i++)
                    raw[i] = rd_table_key(tid, zipf_draw(&z, &rr) + 1);
                batch[b] = rd_xmalloc((size_t)o.draws * 8);
                RD_ASSERT(rd_kv_dedup(raw, (size_t)o.draws, batch[b], inv, &nb[b], scratch,
                                      rd_kv_dedup_scratch_bytes((size_t)o.draws)) == RD_OK);
                uniq += (double)nb[b];
            }
            rd_kv_counters c0, c1;
            if (o.warmup > 0) // untimed: creates the rows, warms caches and buffers
                run_dim(kv, o.warmup, d, batch, nb, vals, grads, comm->job);
            double mc[6];
            if (w == 0) // the other workers wait in run_dim's barrier
                measure_memcpy(mc_a, mc_b, mc_bytes, mc, 3);
            rd_kv_get_counters(kv, &c0);
            double t = run_dim(kv, o.steps, d, batch, nb, vals, grads, comm->job);
            rd_kv_get_counters(kv, &c1);
            if (w == 0)
                measure_memcpy(mc_a, mc_b, mc_bytes, mc + 3, 3);
            double bytes = (double)(c1.bytes_sent - c0.bytes_sent + c1.bytes_recv - c0.bytes_recv);
            double keys =
                (double)(c1.keys_pulled - c0.keys_pulled + c1.keys_pushed - c0.keys_pushed);
            // Reduce over the workers: max/min/sum of time, sum of keys and bytes.
            double in[5] = {t, -t, t, keys, bytes}, out[5];
            MPI_Request rq[2];
            RD_MPI_CHECK(MPI_Ireduce(in, out, 2, MPI_DOUBLE, MPI_MAX, 0, comm->job, &rq[0]));
            RD_MPI_CHECK(
                MPI_Ireduce(in + 2, out + 2, 3, MPI_DOUBLE, MPI_SUM, 0, comm->job, &rq[1]));
            poll_wait(&rq[0]);
            poll_wait(&rq[1]);
            if (w == 0) {
                row *rw = &rows[d];
                rw->dim = o.dims[d];
                rw->t_max = out[0];
                rw->t_min = -out[1];
                rw->t_avg = out[2] / W;
                rw->seconds = out[0];
                qsort(mc, 6, sizeof mc[0], bench_cmp_double);
                double memcpy_gbps = 0.5 * (mc[2] + mc[3]);
                rw->memcpy_gbps = memcpy_gbps;
                rw->memcpy_min = mc[0];
                rw->memcpy_max = mc[5];
                rw->keys_per_s_per_ps = out[3] / rw->seconds / o.ps;
                rw->ps_row_gbps = out[3] * (double)o.dims[d] * 4.0 / rw->seconds / o.ps / 1e9;
                rw->ratio = rw->ps_row_gbps / memcpy_gbps;
                rw->bytes_per_key = out[4] / out[3];
                rw->min_bytes_per_key = o.dims[d] * 4 + 8;
                rw->unique_per_batch = uniq / N_BATCH;
            }
            for (int b = 0; b < N_BATCH; b++)
                rd_free(batch[b]);
        }
        if (w == 0) {
            printf("# bench_ps: %d PS, %d workers, %s, %s, Zipf(%.2f) over %llu ids, %d draws "
                   "per batch, %d timed steps, shm %s\n",
                   o.ps, W, rd_optim_name(o.optim), o.sync ? "sync" : "async", o.zipf,
                   (unsigned long long)o.vocab, o.draws, o.steps, o.shm ? "auto" : "off");
            printf("%5s %8s %8s %12s %10s %10s %8s %12s %10s %14s %22s\n", "dim", "uniq/b",
                   "memcpy", "mc min/max", "ps_row", "ratio", "B/key", "min_B/key", "keys/s/ps",
                   "seconds", "worker s min/avg/max");
            for (int d = 0; d < o.n_dims; d++) {
                row *x = &rows[d];
                printf("%5d %8.0f %8.2f %5.2f/%-6.2f %10.3f %10.3f %8.2f %12d %10.3g %14.3f "
                       "%8.3f/%.3f/%.3f\n",
                       x->dim, x->unique_per_batch, x->memcpy_gbps, x->memcpy_min, x->memcpy_max,
                       x->ps_row_gbps, x->ratio, x->bytes_per_key, x->min_bytes_per_key,
                       x->keys_per_s_per_ps, x->seconds, x->t_min, x->t_avg, x->t_max);
            }
            fflush(stdout);
            if (o.json) {
                bench_json bj;
                FILE *f = bench_json_open(&bj, "bench_ps", o.json);
                if (!f) {
                    g_json_fail = 1;
                } else {
                    fprintf(f,
                            "{\n  \"bench\": \"ps\",\n  \"ps\": %d,\n  \"workers\": %d,\n"
                            "  \"optimizer\": \"%s\",\n  \"mode\": \"%s\",\n"
                            "  \"zipf\": %.3f,\n  \"vocab\": %llu,\n  \"draws\": %d,\n"
                            "  \"steps\": %d,\n  \"shm\": %d,\n  \"rows\": [\n",
                            o.ps, W, rd_optim_name(o.optim), o.sync ? "sync" : "async", o.zipf,
                            (unsigned long long)o.vocab, o.draws, o.steps, o.shm);
                    for (int d = 0; d < o.n_dims; d++) {
                        row *x = &rows[d];
                        fprintf(f,
                                "    {\"dim\": %d, \"ps\": %d, \"workers\": %d, "
                                "\"unique_keys_per_batch\": %.1f, \"memcpy_gbps\": %.4f, "
                                "\"memcpy_gbps_min\": %.4f, \"memcpy_gbps_max\": %.4f, "
                                "\"ps_row_gbps\": %.4f, \"ratio_memcpy\": %.4f, "
                                "\"bytes_per_key\": %.4f, \"min_bytes_per_key\": %d, "
                                "\"keys_per_s_per_ps\": %.1f, \"seconds\": %.4f, "
                                "\"worker_seconds_min\": %.4f, \"worker_seconds_avg\": %.4f, "
                                "\"worker_seconds_max\": %.4f}%s\n",
                                x->dim, o.ps, W, x->unique_per_batch, x->memcpy_gbps, x->memcpy_min,
                                x->memcpy_max, x->ps_row_gbps, x->ratio, x->bytes_per_key,
                                x->min_bytes_per_key, x->keys_per_s_per_ps, x->seconds, x->t_min,
                                x->t_avg, x->t_max, d + 1 < o.n_dims ? "," : "");
                    }
                    fprintf(f, "  ]\n}\n");
                    if (bench_json_commit(&bj, "bench_ps") != 0)
                        g_json_fail = 1;
                }
            }
        }
        rd_aligned_free(mc_a);
        rd_aligned_free(mc_b);
        rd_free(raw);
        rd_free(inv);
        rd_free(scratch);
        rd_aligned_free(vals[0]);
        rd_aligned_free(vals[1]);
        rd_aligned_free(grads[0]);
        rd_aligned_free(grads[1]);
        rd_free(z.cdf);
        rc = rd_kv_shutdown(kv);
        RD_ASSERT_MSG(rc == RD_OK, "%s", rd_kv_errmsg(kv));
        rd_kv_destroy(kv);
    }
    rd_comm_destroy(comm);
    rd_free(cfg);
    rd_mpi_finalize(g_json_fail);
    return g_json_fail;
}
