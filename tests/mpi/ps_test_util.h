// ps_test_util.h — shared helpers of the PS MPI tests (header-only: each tests/mpi/<name>.c is
// one executable). Provides: error counting, polling replacements for blocking collectives
// (a blocked MPICH call spins a core; these tests run 5 ranks on 2 cores), config builders, a
// PS session runner (comm split -> rd_ps_serve or client), Zipf key batches, a deterministic
// toy training loop, a single-process reference of synchronous training built directly on
// rd_table (the server must match it bit for bit), and what the tests of the trainer share: a
// config from printf-style YAML, the dataset prepared once, a `train` session on any ranks, and
// the end of main (the temporary folder removed, a failure if it stays).
#ifndef RD_PS_TEST_UTIL_H
#define RD_PS_TEST_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/comm.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/hash.h"
#include "rd/kv.h"
#include "rd/log.h"
#include "rd/rng.h"
#include "rd/server.h"
#include "rd/table.h"
#include "rd/tokens.h"
#include "rd/trainer.h"

// ---------------------------------------------------------------------------------------------
// Checks: failures are counted and printed; main sums them with MPI_Allreduce.

#define T_CHECK(errs, cond, ...)                                                                   \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (*(errs))++;                                                                           \
            int t__r = 0;                                                                          \
            MPI_Comm_rank(MPI_COMM_WORLD, &t__r);                                                  \
            fprintf(stderr, "[rank %d] %s:%d CHECK failed: %s: ", t__r, __FILE__, __LINE__,        \
                    #cond);                                                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

// ---------------------------------------------------------------------------------------------
// Start and layout check (the preamble of every MPI test's main)

// MPI up (thread level SINGLE), logging at WARN with the world rank; *rank and *size set.
// Returns 0, or 1 after printing why MPI did not start.
static int t_mpi_start(int *argc, char ***argv, int *rank, int *size) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_mpi_init(argc, argv, MPI_THREAD_SINGLE, &eb) != RD_OK) {
        fprintf(stderr, "%s\n", eb.msg);
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    rd_log_init(RD_LOG_LEVEL_WARN, *rank, "test");
    return 0;
}

// A launch this test cannot run in: rank 0 says why; MPI is finalized; returns `code` for main
// (77 = skipped under ctest's SKIP_RETURN_CODE, anything else = failed).
static int t_mpi_refuse(int rank, int code, const char *why) {
    if (rank == 0)
        fprintf(stderr, "%s\n", why);
    rd_mpi_finalize(code);
    return code;
}

// ---------------------------------------------------------------------------------------------
// Polling collectives

static void t_wait(MPI_Request *req) {
    rd_backoff b;
    rd_backoff_reset(&b, 200);
    for (;;) {
        int done = 0;
        RD_MPI_CHECK(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done)
            return;
        rd_backoff_wait(&b);
    }
}

static void t_barrier(MPI_Comm c) {
    MPI_Request r;
    RD_MPI_CHECK(MPI_Ibarrier(c, &r));
    t_wait(&r);
}

static void t_bcast(void *buf, int count, MPI_Datatype dt, int root, MPI_Comm c) {
    MPI_Request r;
    RD_MPI_CHECK(MPI_Ibcast(buf, count, dt, root, c, &r));
    t_wait(&r);
}

static int t_allsum(int v, MPI_Comm c) {
    int out = 0;
    MPI_Request r;
    RD_MPI_CHECK(MPI_Iallreduce(&v, &out, 1, MPI_INT, MPI_SUM, c, &r));
    t_wait(&r);
    return out;
}

static void t_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// ---------------------------------------------------------------------------------------------
// Temp directories

/** Remove dir and everything below it. Returns 0 when dir is gone (or was not there), -1 when
 *  it stays (something in it could not be removed). */
static int t_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[1024];
            if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
                continue;
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                t_rmtree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    return rmdir(dir) == 0 || errno == ENOENT ? 0 : -1;
}

/** The file at path read whole into a new buffer (*len bytes; rd_free it). */
static unsigned char *t_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    RD_ASSERT_MSG(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = rd_xmalloc(*len ? *len : 1);
    RD_ASSERT(fread(b, 1, *len, f) == *len);
    fclose(f);
    return b;
}

/** A fresh directory made by world rank 0 and broadcast to every rank. */
static void t_tmpdir(char *out, size_t cap, const char *tag) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char buf[256] = {0};
    if (rank == 0) {
        snprintf(buf, sizeof buf, "/tmp/rd_%s_XXXXXX", tag);
        if (!mkdtemp(buf))
            RD_ASSERT_MSG(0, "mkdtemp failed");
    }
    t_bcast(buf, (int)sizeof buf, MPI_CHAR, 0, MPI_COMM_WORLD);
    snprintf(out, cap, "%s", buf);
}

// ---------------------------------------------------------------------------------------------
// Configs

/** Defaults + P PS ranks + jobs (names[i], ranks[i]); no tables yet. */
static void
t_config(rd_config *cfg, int P, int n_jobs, const char *const *names, const int *ranks) {
    rd_config_defaults(cfg);
    cfg->run.seed = 1234;
    cfg->cluster.ps_ranks = P;
    cfg->cluster.n_jobs = n_jobs;
    cfg->cluster.poll_us_max = 100;
    for (int j = 0; j < n_jobs; j++) {
        rd_job_config *jc = &cfg->cluster.jobs[j];
        snprintf(jc->name, sizeof jc->name, "%s", names[j]);
        snprintf(jc->model, sizeof jc->model, "m");
        jc->role = j == 0 ? RD_JOB_TEACHER : RD_JOB_STUDENT;
        jc->ranks = ranks[j];
    }
    cfg->ps.n_tables = 0;
    cfg->ps.sync = 1;
    cfg->ps.staleness = 0;
}

static rd_table_config *t_table(rd_config *cfg, const char *name, int dim, int kind, float lr) {
    rd_table_config *tc = &cfg->ps.tables[cfg->ps.n_tables++];
    memset(tc, 0, sizeof *tc);
    snprintf(tc->name, sizeof tc->name, "%s", name);
    tc->dim = dim;
    tc->optim.kind = kind;
    tc->optim.lr = lr;
    tc->optim.beta1 = 0.9f;
    tc->optim.beta2 = 0.999f;
    tc->optim.eps = 1e-8f;
    tc->optim.initial_accumulator = 0.1f;
    tc->optim.beta = 1.0f;
    tc->optim.l1 = 0.001f;
    tc->init_std = 0.05f;
    tc->admit_count = 1;
    tc->ttl = 0;
    tc->capacity = 64;
    return tc;
}

// ---------------------------------------------------------------------------------------------
// Sessions

typedef int (*t_worker_fn)(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *ctx);

/** One PS session on `base`: PS ranks serve, workers run fn and shut down. A NULL fn still
 *  creates the client and shuts down (idle worker). Returns the number of failures. */
static int t_session(MPI_Comm base, const rd_config *cfg, t_worker_fn fn, void *ctx) {
    int errs = 0;
    rd_comm *comm = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_comm_create(base, cfg, &comm, &eb);
    T_CHECK(&errs, rc == RD_OK, "rd_comm_create: %s", eb.msg);
    if (rc != RD_OK)
        return errs;
    if (comm->role_kind == RD_ROLE_PS) {
        rc = rd_ps_serve(comm, cfg);
        T_CHECK(&errs, rc == RD_OK, "rd_ps_serve: %s", rd_strerror(rc));
    } else {
        rd_kv *kv = NULL;
        rc = rd_kv_create(comm, cfg, &kv, &eb);
        T_CHECK(&errs, rc == RD_OK, "rd_kv_create: %s", eb.msg);
        if (rc == RD_OK) {
            if (fn)
                errs += fn(kv, comm, cfg, ctx);
            rc = rd_kv_shutdown(kv);
            T_CHECK(&errs, rc == RD_OK, "rd_kv_shutdown: %s", rd_kv_errmsg(kv));
            rd_kv_destroy(kv);
        }
    }
    rd_comm_destroy(comm);
    return errs;
}

/** What each worker rank of a `train` session runs after rd_trainer_run: its trainer, the run's
 *  result, its layout (comm->job, comm->job_rank) and the caller's ctx. */
typedef void (*t_trainer_fn)(rd_trainer *tr,
                             const rd_trainer_result *res,
                             const rd_comm *comm,
                             const rd_config *cfg,
                             void *ctx);

/** One `train` session on `base` (MPI_COMM_WORLD or some of its ranks; every rank of base
 *  calls): the PS ranks serve; each worker rank creates its trainer with opts (NULL: quiet, no
 *  metrics file, checkpoints where cfg says), runs every phase to the end (checkpoints
 *  included), calls fn (NULL: nothing) and destroys the trainer. Returns the number of
 *  failures. */
static int t_train_session(
    MPI_Comm base, const rd_config *cfg, const rd_trainer_opts *opts, t_trainer_fn fn, void *ctx) {
    int errs = 0;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_comm *comm = NULL;
    int rc = rd_comm_create(base, cfg, &comm, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "rd_comm_create: %s", eb.msg);
    if (comm->role_kind == RD_ROLE_PS) {
        rc = rd_ps_serve(comm, cfg);
        T_CHECK(&errs, rc == RD_OK, "rd_ps_serve: %s", rd_strerror(rc));
    } else {
        rd_trainer *tr = NULL;
        const rd_trainer_opts quiet = {.metrics_dir = "", .quiet = 1};
        rc = rd_trainer_create(comm, cfg, opts ? opts : &quiet, &tr, &eb);
        RD_ASSERT_MSG(rc == RD_OK, "rd_trainer_create: %s", eb.msg);
        rd_trainer_result *res = rd_xcalloc(1, sizeof *res); // ~1.2 MB: not on the stack
        rc = rd_trainer_run(tr, res, &eb);
        RD_ASSERT_MSG(rc == RD_OK, "rd_trainer_run: %s", eb.msg);
        if (fn)
            fn(tr, res, comm, cfg, ctx);
        rd_free(res);
        rc = rd_trainer_destroy(tr);
        T_CHECK(&errs, rc == RD_OK, "rd_trainer_destroy: %s", rd_strerror(rc));
    }
    rd_comm_destroy(comm);
    return errs;
}

/** cfg parsed from the YAML text that fmt prints with the arguments (asserted: the tests' own
 *  configs must parse); what names the text in messages. */
static void t_config_yaml(rd_config *cfg, const char *what, const char *fmt, ...) RD_PRINTF(3, 4);
static void t_config_yaml(rd_config *cfg, const char *what, const char *fmt, ...) {
    char text[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    RD_ASSERT_MSG(n >= 0 && (size_t)n < sizeof text, "%s: config text of %d bytes", what, n);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_config_parse_string(text, (size_t)n, what, cfg, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "config: %s", eb.msg);
}

/** World rank 0 prepares cfg's dataset (cfg->data.dir) and, with token_store, creates the run's
 *  empty token store (cfg->tokens.store_dir, one shard per PS rank, as `recdistill train` does);
 *  every rank returns once that went well (asserted). */
static void t_prepare(const rd_config *cfg, int token_store) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = RD_OK;
    if (rank == 0) {
        rc = rd_dataset_prepare(&cfg->data, cfg->run.seed, &eb);
        if (rc == RD_OK && token_store) {
            rd_token_store_opts so;
            rc = rd_token_store_opts_from_config(&cfg->tokens, cfg->cluster.ps_ranks, &so, &eb);
            rd_token_store *s = NULL;
            so.no_sync = 1;
            if (rc == RD_OK)
                rc = rd_token_store_create(cfg->tokens.store_dir, &so, &s, &eb);
            rd_token_store_destroy(s);
        }
    }
    t_bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    RD_ASSERT_MSG(rc == RD_OK, "prepare (world rank 0 says why): %s", eb.msg);
}

/** The sub-communicator of world ranks [0, n) (MPI_COMM_NULL elsewhere). */
static MPI_Comm t_first_ranks(int n) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm c;
    RD_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, rank < n ? 0 : MPI_UNDEFINED, rank, &c));
    return c;
}

// ---------------------------------------------------------------------------------------------
// Zipf batches and the toy training loop

typedef struct t_zipf {
    double *cdf; // (n)
    uint64_t n;
} t_zipf;

static void t_zipf_init(t_zipf *z, uint64_t n, double s) {
    z->n = n;
    z->cdf = rd_xmalloc(n * sizeof *z->cdf);
    double acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        acc += 1.0 / pow((double)(i + 1), s);
        z->cdf[i] = acc;
    }
    for (uint64_t i = 0; i < n; i++)
        z->cdf[i] /= acc;
}

static uint64_t t_zipf_draw(const t_zipf *z, rd_rng *r) {
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

static void t_zipf_free(t_zipf *z) {
    rd_free(z->cdf);
}

#define T_MAX_BATCH 512

/** Unique sorted keys of (table, worker, step): `draws` Zipf draws over the vocab, each mapped
 *  to the table's key space. Independent of P. */
static size_t t_batch(const rd_config *cfg,
                      const t_zipf *z,
                      int table,
                      int worker,
                      int64_t step,
                      int draws,
                      uint64_t *uniq) {
    RD_ASSERT(draws <= T_MAX_BATCH);
    rd_rng r;
    rd_rng_split(&r, cfg->run.seed ^ 0x7e57ull,
                 ((uint64_t)step * 1024 + (uint64_t)worker) * 64 + (uint64_t)table);
    uint64_t raw[T_MAX_BATCH];
    uint64_t tid = rd_hash_str(cfg->ps.tables[table].name, 0);
    for (int i = 0; i < draws; i++)
        raw[i] = rd_table_key(tid, t_zipf_draw(z, &r) + 1);
    uint32_t inv[T_MAX_BATCH];
    unsigned char scratch[32 * T_MAX_BATCH];
    size_t nu = 0;
    RD_ASSERT(rd_kv_dedup(raw, (size_t)draws, uniq, inv, &nu, scratch, sizeof scratch) == RD_OK);
    return nu;
}

/** A deterministic "gradient" from the pulled values (like a loss gradient, it depends on the
 *  current parameters, so any divergence between runs is amplified, not hidden). */
static void t_grad(const float *vals,
                   const uint64_t *keys,
                   size_t n,
                   size_t dim,
                   int worker,
                   int64_t step,
                   float *g) {
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < dim; d++)
            g[i * dim + d] = 0.5f * vals[i * dim + d] + 0.01f * (float)((keys[i] >> d) & 7) -
                             0.035f + 0.001f * (float)worker - 0.0001f * (float)(step % 7);
}

static int64_t t_time(int64_t step) {
    return 1000 + 10 * step;
}

typedef struct t_train {
    int64_t from, to; // steps [from, to)
    int draws;        // Zipf draws per table per step
    const t_zipf *zipf;
    int jitter_us;       // random sleep before each push (varies arrival orders), 0 = none
    uint32_t pulled_crc; // out: CRC-32C of every value this worker pulled, in order
} t_train;

/** Steps [from, to) of the toy loop: per table pull -> wait -> grad -> push, then clock. */
static int t_train_loop(rd_kv *kv, const rd_config *cfg, int worker, t_train *tr) {
    int errs = 0;
    int nt = cfg->ps.n_tables;
    uint64_t keys[RD_MAX_TABLES][T_MAX_BATCH];
    size_t n[RD_MAX_TABLES];
    float *vals = rd_xmalloc((size_t)nt * T_MAX_BATCH * 1024 * sizeof(float));
    float *grads = rd_xmalloc((size_t)nt * T_MAX_BATCH * 1024 * sizeof(float));
    for (int64_t step = tr->from; step < tr->to && errs == 0; step++) {
        T_CHECK(&errs, rd_kv_step(kv) == step, "step %lld, client at %lld", (long long)step,
                (long long)rd_kv_step(kv));
        rd_kv_set_time(kv, t_time(step));
        int ts_pull[RD_MAX_TABLES], ts_push[RD_MAX_TABLES];
        for (int t = 0; t < nt; t++) {
            n[t] = t_batch(cfg, tr->zipf, t, worker, step, tr->draws, keys[t]);
            float *v = vals + (size_t)t * T_MAX_BATCH * 1024;
            int rc = rd_kv_pull(kv, t, keys[t], n[t], v, &ts_pull[t]);
            T_CHECK(&errs, rc == RD_OK, "pull: %s", rd_kv_errmsg(kv));
        }
        for (int t = 0; t < nt && errs == 0; t++) {
            size_t dim = (size_t)cfg->ps.tables[t].dim;
            float *v = vals + (size_t)t * T_MAX_BATCH * 1024;
            float *g = grads + (size_t)t * T_MAX_BATCH * 1024;
            int rc = rd_kv_wait(kv, ts_pull[t]);
            T_CHECK(&errs, rc == RD_OK, "wait pull: %s", rd_kv_errmsg(kv));
            tr->pulled_crc = rd_crc32c(tr->pulled_crc, v, n[t] * dim * sizeof(float));
            t_grad(v, keys[t], n[t], dim, worker, step, g);
            if (tr->jitter_us > 0) {
                rd_rng jr;
                rd_rng_split(&jr, (uint64_t)worker * 7919u + 17u,
                             (uint64_t)step * 64u + (uint64_t)t);
                int us = (int)rd_rng_below(&jr, (uint64_t)tr->jitter_us);
                struct timespec ts = {0, (long)us * 1000L};
                nanosleep(&ts, NULL);
            }
            rc = rd_kv_push(kv, t, keys[t], g, n[t], &ts_push[t]);
            T_CHECK(&errs, rc == RD_OK, "push: %s", rd_kv_errmsg(kv));
        }
        for (int t = 0; t < nt && errs == 0; t++) {
            int rc = rd_kv_wait(kv, ts_push[t]);
            T_CHECK(&errs, rc == RD_OK, "wait push: %s", rd_kv_errmsg(kv));
        }
        int rc = rd_kv_clock(kv, NULL);
        T_CHECK(&errs, rc == RD_OK, "clock: %s", rd_kv_errmsg(kv));
    }
    int rc = rd_kv_wait_all(kv);
    T_CHECK(&errs, rc == RD_OK, "wait_all: %s", rd_kv_errmsg(kv));
    rd_free(vals);
    rd_free(grads);
    return errs;
}

// ---------------------------------------------------------------------------------------------
// Single-process reference of synchronous training

typedef struct t_kg {
    uint64_t key;
    int worker;
    size_t idx;
} t_kg;

static int t_kg_cmp(const void *a, const void *b) {
    const t_kg *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->worker - y->worker;
}

/** Steps [from, to) for W workers on tables `tabs` (created from cfg->ps.tables), exactly as
 *  the sync server defines them: all pulls of the step, then per key the worker-ordered sum of
 *  gradients applied once, then eviction at the step's stream time. crc[w] accumulates each
 *  worker's pulled values like t_train_loop. */
static void t_reference(const rd_config *cfg,
                        rd_table **tabs,
                        int W,
                        const t_zipf *z,
                        int draws,
                        int64_t from,
                        int64_t to,
                        uint32_t *crc) {
    int nt = cfg->ps.n_tables;
    size_t cap = (size_t)W * T_MAX_BATCH;
    uint64_t *keys = rd_xmalloc(cap * sizeof *keys);
    size_t *n = rd_xmalloc((size_t)W * sizeof *n);
    float *vals = rd_xmalloc(cap * 1024 * sizeof(float));
    float *grads = rd_xmalloc(cap * 1024 * sizeof(float));
    t_kg *kg = rd_xmalloc(cap * sizeof *kg);
    float *sum = rd_xmalloc(1024 * sizeof(float));
    for (int64_t step = from; step < to; step++) {
        int64_t now = t_time(step);
        // Pulls of every worker (workers' CRCs visit tables in order, like the loop).
        float *allg[RD_MAX_TABLES];
        uint64_t *allk[RD_MAX_TABLES];
        size_t *alln[RD_MAX_TABLES];
        for (int t = 0; t < nt; t++) {
            size_t dim = (size_t)cfg->ps.tables[t].dim;
            allk[t] = rd_xmalloc(cap * sizeof(uint64_t));
            alln[t] = rd_xmalloc((size_t)W * sizeof(size_t));
            allg[t] = rd_xmalloc(cap * dim * sizeof(float));
            for (int w = 0; w < W; w++) {
                uint64_t *k = allk[t] + (size_t)w * T_MAX_BATCH;
                alln[t][w] = t_batch(cfg, z, t, w, step, draws, k);
                float *v = vals + (size_t)w * T_MAX_BATCH * dim;
                RD_ASSERT(rd_table_pull(tabs[t], k, alln[t][w], now, v) == RD_OK);
                if (crc)
                    crc[w] = rd_crc32c(crc[w], v, alln[t][w] * dim * sizeof(float));
                t_grad(v, k, alln[t][w], dim, w, step, allg[t] + (size_t)w * T_MAX_BATCH * dim);
            }
        }
        // Apply: per key, the sum over workers in worker order (first copied, then added).
        for (int t = 0; t < nt; t++) {
            size_t dim = (size_t)cfg->ps.tables[t].dim;
            size_t m = 0;
            for (int w = 0; w < W; w++)
                for (size_t i = 0; i < alln[t][w]; i++)
                    kg[m++] = (t_kg){allk[t][(size_t)w * T_MAX_BATCH + i], w, i};
            qsort(kg, m, sizeof *kg, t_kg_cmp);
            for (size_t i = 0; i < m;) {
                size_t j = i;
                const float *g0 = allg[t] + ((size_t)kg[i].worker * T_MAX_BATCH + kg[i].idx) * dim;
                memcpy(sum, g0, dim * sizeof(float));
                for (j = i + 1; j < m && kg[j].key == kg[i].key; j++) {
                    const float *gj =
                        allg[t] + ((size_t)kg[j].worker * T_MAX_BATCH + kg[j].idx) * dim;
                    for (size_t d = 0; d < dim; d++)
                        sum[d] += gj[d];
                }
                RD_ASSERT(rd_table_push(tabs[t], &kg[i].key, sum, 1, now) == RD_OK);
                i = j;
            }
        }
        for (int t = 0; t < nt; t++)
            rd_table_evict(tabs[t], now);
        for (int t = 0; t < nt; t++) {
            rd_free(allk[t]);
            rd_free(alln[t]);
            rd_free(allg[t]);
        }
    }
    rd_free(keys);
    rd_free(n);
    rd_free(vals);
    rd_free(grads);
    rd_free(kg);
    rd_free(sum);
}

/** Compare two tables bitwise (rows with slots, last-seen, counts; pending counts).
 *  Returns the number of differences (0 = identical); prints the first ones unless what is
 *  NULL. */
static int t_same_tables(rd_table *a, rd_table *b, const char *what) {
    int errs = 0;
    if (rd_table_size(a) != rd_table_size(b)) {
        errs++;
        if (what)
            fprintf(stderr, "%s: %zu vs %zu rows\n", what, rd_table_size(a), rd_table_size(b));
    }
    if (rd_table_pending_size(a) != rd_table_pending_size(b)) {
        errs++;
        if (what)
            fprintf(stderr, "%s: %zu vs %zu pending keys\n", what, rd_table_pending_size(a),
                    rd_table_pending_size(b));
    }
    size_t nf = rd_table_row_floats(a);
    int shown = 0;
    for (size_t i = 0; i < rd_table_size(a); i++) {
        uint64_t key;
        int64_t ls;
        uint64_t cnt;
        const float *ra = rd_table_row_at(a, i, &key, &ls, &cnt);
        const float *rb = rd_table_find(b, key);
        int bad = !rb || memcmp(ra, rb, nf * sizeof(float)) != 0;
        if (!bad) {
            // meta of b's row
            for (size_t j = 0; j < rd_table_size(b); j++) {
                uint64_t kb, cb;
                int64_t lb;
                const float *p = rd_table_row_at(b, j, &kb, &lb, &cb);
                if (p == rb) {
                    bad = lb != ls || cb != cnt;
                    break;
                }
            }
        }
        if (bad) {
            errs++;
            if (what && shown++ < 3)
                fprintf(stderr, "%s: row of key %llu differs (%s)\n", what, (unsigned long long)key,
                        rb ? "values or meta" : "missing");
        }
    }
    size_t cur = 0;
    uint64_t pk;
    uint32_t pc;
    int64_t pls;
    while (rd_table_pending_next(a, &cur, &pk, &pc, &pls)) {
        size_t c2 = 0;
        uint64_t k2;
        uint32_t n2;
        int64_t l2;
        int ok = 0;
        while (rd_table_pending_next(b, &c2, &k2, &n2, &l2))
            if (k2 == pk)
                ok = n2 == pc && l2 == pls;
        if (!ok)
            errs++;
    }
    return errs;
}

/** Create fresh tables for every table of cfg. */
static void t_make_tables(const rd_config *cfg, rd_table **tabs) {
    for (int t = 0; t < cfg->ps.n_tables; t++) {
        rd_errbuf eb;
        RD_ASSERT(rd_table_create(&cfg->ps.tables[t], t, cfg->run.seed, &tabs[t], &eb) == RD_OK);
    }
}

/** Number of failures, summed over all ranks; rank 0 prints the verdict. Returns the exit code. */
static int t_finish(const char *name, int errs) {
    int total = t_allsum(errs, MPI_COMM_WORLD);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        if (total == 0)
            printf("%s: No Errors\n", name);
        else
            printf("%s: %d errors\n", name, total);
        fflush(stdout);
    }
    return total == 0 ? 0 : 1;
}

/** The end of a test's main: once every rank is here, world rank 0 removes dir (NULL: none; a
 *  folder the test cannot remove is a failure: it would stay in /tmp after every run), the
 *  verdict (t_finish), MPI finalized. Returns main's exit code. */
static int t_end(const char *name, int errs, const char *dir) {
    t_barrier(MPI_COMM_WORLD);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0 && dir) {
        int gone = t_rmtree(dir) == 0;
        const char *why = gone ? "" : strerror(errno);
        T_CHECK(&errs, gone, "%s stays: %s", dir, why);
    }
    int code = t_finish(name, errs);
    rd_mpi_finalize(code);
    return code;
}

#endif // RD_PS_TEST_UTIL_H
