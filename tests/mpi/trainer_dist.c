// trainer_dist.c — the distributed trainer against its single-process reference (4 ranks).
//
// Session A: 2 PS ranks + 2 workers of one job, batch B, sync mode.
// Session B: 1 PS rank + 1 worker, batch 2B, on world ranks {0, 1} (the others wait).
// The schedule (2 epochs over the batch period, 3 stream windows, holdout) is the same, B is
// chosen so that steps are ragged (the last step of every phase has fewer than 2B examples and
// the two workers get different counts), and the model has a DIN history branch, several
// features on one table, a derived field (hour) and history statistics (seq.stats). Checks
// (train.order time):
//   - dense parameters of A and B agree within fp tolerance,
//   - every user and item embedding row on the PS agrees (pulled after training),
//   - holdout AUC / logloss and every stream window's AUC agree.
// Control (time order only): session C, 1 PS + 1 worker with batch B (a different schedule),
// must NOT agree, so that the comparison can fail.
#include "ps_test_util.h"

#include "rd/dataset.h"
#include "rd/trainer.h"

static int g_errs;

#define B_SMALL 37

// What a session reports to world rank 0.
typedef struct outcome {
    rd_trainer_result res;
    size_t n_params;
    size_t n_rows;
} outcome;

static const char *yaml_fmt =
    "run: {name: tt, seed: 11, out_dir: %s/run}\n"
    "cluster:\n"
    "  ps_ranks: %d\n"
    "  poll_us_max: 100\n"
    "  jobs:\n"
    "    - {name: j, role: student, model: m, ranks: %d}\n"
    "data:\n"
    "  source: synthetic\n"
    "  dir: %s/data\n"
    "  history_max: 8\n"
    "  synthetic: {events: 3000, users: 40, items: 200}\n"
    "  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 3}\n"
    "ps:\n"
    "  tables:\n"
    "    - {name: u, dim: 4}\n"
    "    - {name: i, dim: 4}\n"
    "models:\n"
    "  - name: m\n"
    "    features:\n"
    "      - {field: user, table: u}\n"
    "      - {field: hour, table: u}\n"
    "      - {field: item, table: i}\n"
    "    seq: {kind: din, length: 8, stats: [1, 3, 8]}\n"
    "    mlp: [16]\n"
    "train: {batch_size: %d, epochs: 2, order: %s}\n"
    "output: {progress_every_s: 0}\n";

static void make_config(rd_config *cfg, const char *dir, int P, int W, int B, const char *order) {
    t_config_yaml(cfg, "trainer_dist", yaml_fmt, dir, P, W, dir, B, order);
}

// Every user and item key of the dataset, pulled from the PS (one request per table).
static size_t pull_rows(rd_trainer *tr, const char *dsdir, float **out) {
    rd_dataset *ds = NULL;
    rd_errbuf eb;
    RD_ASSERT(rd_dataset_open(dsdir, 0, &ds, &eb) == RD_OK);
    const rd_dataset_info *in = rd_dataset_get_info(ds);
    size_t n = (size_t)in->n_events;
    uint64_t *keys = rd_xmalloc(n * sizeof *keys), *uniq = rd_xmalloc(n * sizeof *uniq);
    uint32_t *inv = rd_xmalloc(n * sizeof *inv);
    size_t sb = rd_kv_dedup_scratch_bytes(n);
    void *scratch = rd_xmalloc(sb);
    rd_kv *kv = rd_trainer_kv(tr);
    const char *names[2] = {"u", "i"};
    float *vals = rd_xmalloc(2 * n * 4 * sizeof *vals);
    size_t total = 0;
    for (int t = 0; t < 2; t++) {
        uint64_t tid = rd_hash_str(names[t], 0);
        for (size_t e = 0; e < n; e++) {
            const rd_record *r = rd_dataset_record(ds, e);
            keys[e] = rd_table_key(tid, t == 0 ? r->user_key : r->item_key);
        }
        size_t nu = 0;
        RD_ASSERT(rd_kv_dedup(keys, n, uniq, inv, &nu, scratch, sb) == RD_OK);
        int ts = -1;
        RD_ASSERT(rd_kv_pull(kv, rd_kv_table(kv, names[t]), uniq, nu, vals + total * 4, &ts) ==
                  RD_OK);
        RD_ASSERT(rd_kv_wait(kv, ts) == RD_OK);
        total += nu;
    }
    rd_free(keys);
    rd_free(uniq);
    rd_free(inv);
    rd_free(scratch);
    rd_dataset_close(ds);
    *out = vals;
    return total;
}

// Where a session's job rank 0 sends its outcome.
typedef struct dest {
    const char *dir;
    int tag;
} dest;

// After training, on each worker: job rank 0 sends (outcome, params, rows) to world rank 0.
static void send_outcome(rd_trainer *tr,
                         const rd_trainer_result *res,
                         const rd_comm *comm,
                         const rd_config *cfg,
                         void *ctx) {
    (void)cfg;
    const dest *d = ctx;
    if (comm->job_rank != 0)
        return;
    outcome *oc = rd_xcalloc(1, sizeof *oc); // ~1.2 MB: not on the stack
    oc->res = *res;
    char dsdir[600];
    snprintf(dsdir, sizeof dsdir, "%s/data", d->dir);
    float *rows = NULL;
    oc->n_rows = pull_rows(tr, dsdir, &rows);
    rd_model *m = rd_trainer_model(tr);
    oc->n_params = m->n_slab;
    MPI_Request r[3];
    RD_MPI_CHECK(MPI_Isend(oc, (int)sizeof *oc, MPI_BYTE, 0, d->tag, MPI_COMM_WORLD, &r[0]));
    RD_MPI_CHECK(
        MPI_Isend(m->params, (int)m->n_slab, MPI_FLOAT, 0, d->tag + 1, MPI_COMM_WORLD, &r[1]));
    RD_MPI_CHECK(
        MPI_Isend(rows, (int)(oc->n_rows * 4), MPI_FLOAT, 0, d->tag + 2, MPI_COMM_WORLD, &r[2]));
    for (int k = 0; k < 3; k++)
        t_wait(&r[k]);
    rd_free(rows);
    rd_free(oc);
}

/** Run one session on `base`; its job rank 0 sends (outcome, params, rows) to world rank 0. */
static void session(MPI_Comm base, const rd_config *cfg, const char *dir, int tag) {
    dest d = {dir, tag};
    g_errs += t_train_session(base, cfg, NULL, send_outcome, &d);
}

typedef struct got {
    outcome oc;
    float *params;
    float *rows;
} got;

// World rank 0 receives a session's outcome (posted before the session runs: rank 0 is a PS rank
// of every session and must not block while serving).
static void recv_post(got *g, MPI_Request *r, int tag, size_t max_params, size_t max_rows) {
    g->params = rd_xmalloc(max_params * sizeof(float));
    g->rows = rd_xmalloc(max_rows * 4 * sizeof(float));
    RD_MPI_CHECK(
        MPI_Irecv(&g->oc, (int)sizeof g->oc, MPI_BYTE, MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &r[0]));
    RD_MPI_CHECK(MPI_Irecv(g->params, (int)max_params, MPI_FLOAT, MPI_ANY_SOURCE, tag + 1,
                           MPI_COMM_WORLD, &r[1]));
    RD_MPI_CHECK(MPI_Irecv(g->rows, (int)max_rows * 4, MPI_FLOAT, MPI_ANY_SOURCE, tag + 2,
                           MPI_COMM_WORLD, &r[2]));
}

// Largest |a - b| / (1 + |b|).
static double max_rel(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t k = 0; k < n; k++) {
        double e = fabs((double)a[k] - (double)b[k]) / (1.0 + fabs((double)b[k]));
        if (e > d || e != e)
            d = e != e ? (double)INFINITY : e;
    }
    return d;
}

static void compare(const got *a, const got *b, int expect_equal, const char *what) {
    // Rows and predictions agree to ~1e-8; a dense parameter whose Adam second moment is ~0 can
    // move by ~lr/10 on fp-order noise alone, hence the looser bound on parameters.
    const double tol_p = 1e-3, tol_r = 1e-5;
    T_CHECK(&g_errs, a->oc.n_params == b->oc.n_params && a->oc.n_rows == b->oc.n_rows,
            "%s: shapes differ", what);
    double dp = max_rel(a->params, b->params, a->oc.n_params);
    double dr = max_rel(a->rows, b->rows, a->oc.n_rows * 4);
    const rd_metrics_result *ha = &a->oc.res.holdout.m, *hb = &b->oc.res.holdout.m;
    double da = fabs(ha->auc - hb->auc), dl = fabs(ha->logloss - hb->logloss);
    double dw = 0;
    for (int w = 0; w < a->oc.res.n_windows; w++)
        dw = fmax(dw, fabs(a->oc.res.window[w].m.auc - b->oc.res.window[w].m.auc));
    printf("%s: max rel diff params %.2e rows %.2e; |dAUC| holdout %.2e windows %.2e; "
           "|dlogloss| %.2e (holdout AUC %.4f vs %.4f)\n",
           what, dp, dr, da, dw, dl, ha->auc, hb->auc);
    if (expect_equal) {
        T_CHECK(&g_errs, ha->n == hb->n && ha->n > 0, "%s: holdout sizes %llu vs %llu", what,
                (unsigned long long)ha->n, (unsigned long long)hb->n);
        T_CHECK(&g_errs, a->oc.res.n_windows == 3 && b->oc.res.n_windows == 3, "%s: windows", what);
        T_CHECK(&g_errs, a->oc.res.train_samples == b->oc.res.train_samples,
                "%s: trained %llu vs %llu samples", what,
                (unsigned long long)a->oc.res.train_samples,
                (unsigned long long)b->oc.res.train_samples);
        T_CHECK(&g_errs, dp < tol_p, "%s: dense parameters differ by %.3g", what, dp);
        T_CHECK(&g_errs, dr < tol_r, "%s: embedding rows differ by %.3g", what, dr);
        T_CHECK(&g_errs, da < 1e-3 && dw < 1e-3, "%s: AUC differs (%.3g, windows %.3g)", what, da,
                dw);
        T_CHECK(&g_errs, dl < 1e-4, "%s: logloss differs by %.3g", what, dl);
    } else {
        T_CHECK(&g_errs, dp > 10 * tol_p && dr > 100 * tol_r,
                "%s: control run should differ (params by %.3g, rows by %.3g)", what, dp, dr);
    }
}

static void got_free(got *g) {
    rd_free(g->params);
    rd_free(g->rows);
}

// One comparison: session A (2 PS + 2 workers, batch B) vs B (1 + 1, batch 2B) [vs control C].
static void run_order(const char *dir, const char *order, int control, int tag0) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    const size_t max_params = 1 << 16, max_rows = 1 << 12;
    got *g3 = rd_xcalloc(3, sizeof *g3); // each holds a ~1.2 MB rd_trainer_result
    got *ga = &g3[0], *gb = &g3[1], *gc = &g3[2];
    MPI_Request ra[3], rb[3], rc[3];
    if (rank == 0) {
        recv_post(ga, ra, tag0, max_params, max_rows);
        recv_post(gb, rb, tag0 + 10, max_params, max_rows);
        if (control)
            recv_post(gc, rc, tag0 + 20, max_params, max_rows);
    }
    make_config(cfg, dir, 2, 2, B_SMALL, order);
    session(MPI_COMM_WORLD, cfg, dir, tag0);
    MPI_Comm two = t_first_ranks(2);
    if (two != MPI_COMM_NULL) {
        make_config(cfg, dir, 1, 1, 2 * B_SMALL, order);
        session(two, cfg, dir, tag0 + 10);
        if (control) {
            make_config(cfg, dir, 1, 1, B_SMALL, order);
            session(two, cfg, dir, tag0 + 20);
        }
        MPI_Comm_free(&two);
    }
    if (rank == 0) {
        for (int k = 0; k < 3; k++) {
            t_wait(&ra[k]);
            t_wait(&rb[k]);
            if (control)
                t_wait(&rc[k]);
        }
        char what[64];
        snprintf(what, sizeof what, "order %s: 2x%d vs 1x%d", order, B_SMALL, 2 * B_SMALL);
        compare(ga, gb, 1, what);
        if (control) {
            snprintf(what, sizeof what, "control 1x%d vs 1x%d", B_SMALL, 2 * B_SMALL);
            compare(gc, gb, 0, what);
            got_free(gc);
        }
        got_free(ga);
        got_free(gb);
    }
    t_barrier(MPI_COMM_WORLD);
    rd_free(g3);
    rd_free(cfg);
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 4)
        return t_mpi_refuse(rank, 1, "trainer_dist needs 4 ranks");
    char dir[512];
    t_tmpdir(dir, sizeof dir, "trainer");
    // Rank 0 prepares the dataset once; the sessions share it.
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    make_config(cfg, dir, 1, 1, B_SMALL, "time");
    t_prepare(cfg, 0);
    rd_free(cfg);

    // User order is not compared: W ranks own disjoint user shards, so a step of W ranks is not
    // a step of one rank over the same records (that equivalence holds for time order only).
    run_order(dir, "time", 1, 100);
    return t_end("trainer_dist", g_errs, dir);
}
