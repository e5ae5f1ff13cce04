// trainer_resume.c — a resumed run trains on with the dense Adam state it saved, and the warm
// slice counts the holdout events whose user has exactly RD_TRAINER_WARM_MIN earlier ones.
//
// Session A: 1 PS rank + 1 worker, dense Adam, a checkpoint every 5 steps (all kept). After the
// run the worker keeps its dense parameters.
// Session B: the same config resumed (rd_trainer_opts.resume_dir) from A's first checkpoint.
// Checks:
//   - B's dense parameters equal A's (one worker, the same order of every sum: to ~1e-6). A
//     resume that restored the parameters but not the Adam step count or moments (the trainer
//     passing no optimizer to rd_train_ckpt_read_dense, or read_dense dropping them) restarts
//     the bias correction and moves every parameter by ~lr: refused. Before this test only
//     tests/scripts/resume.sh (60 s) saw that.
//   - the warm slice (model and popularity baseline) holds exactly the holdout events with
//     rd_dataset_user_pos >= RD_TRAINER_WARM_MIN, and some of them have exactly that many (so
//     that `>` for `>=` in worker/trainer.c shows).
#include "ps_test_util.h"

#include <math.h>

#include "rd/dataset.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"

static int g_errs;

static const char *yaml_fmt = "run: {name: rs, seed: 7, out_dir: %s/run}\n"
                              "cluster:\n"
                              "  ps_ranks: 1\n"
                              "  poll_us_max: 100\n"
                              "  jobs:\n"
                              "    - {name: j, role: student, model: m, ranks: 1}\n"
                              "data:\n"
                              "  source: synthetic\n"
                              "  dir: %s/data\n"
                              "  history_max: 4\n"
                              "  synthetic: {events: 1500, users: 30, items: 100}\n"
                              "  split: {batch_fraction: 0.6, holdout_fraction: 0.2, "
                              "stream_windows: 2}\n"
                              "ps:\n"
                              "  checkpoint_every: 5\n"
                              "  checkpoint_keep: 1000\n"
                              "  tables:\n"
                              "    - {name: u, dim: 4}\n"
                              "    - {name: i, dim: 4}\n"
                              "models:\n"
                              "  - name: m\n"
                              "    features:\n"
                              "      - {field: user, table: u}\n"
                              "      - {field: item, table: i}\n"
                              "    mlp: [8]\n"
                              "train: {batch_size: 50, epochs: 2, optimizer: adam, lr: 0.01}\n"
                              "output: {progress_every_s: 0}\n";

// What the worker keeps of a session: its dense parameters and its result.
typedef struct kept {
    float *params; // rd_free
    size_t n;
    rd_trainer_result *res;
} kept;

static void keep(rd_trainer *tr,
                 const rd_trainer_result *res,
                 const rd_comm *comm,
                 const rd_config *cfg,
                 void *ctx) {
    (void)comm;
    (void)cfg;
    kept *k = ctx;
    rd_model *m = rd_trainer_model(tr);
    k->n = m->n_slab;
    k->params = rd_xmalloc(m->n_slab * sizeof(float));
    memcpy(k->params, m->params, m->n_slab * sizeof(float));
    memcpy(k->res, res, sizeof *res);
}

// Run one session on MPI_COMM_WORLD (checkpoints in ckpt, resumed from resume); the worker
// keeps its dense parameters and result in *k.
static void session(const rd_config *cfg, const char *ckpt, const char *resume, kept *k) {
    rd_trainer_opts o = {
        .metrics_dir = "", .quiet = 1, .checkpoint_dir = ckpt, .resume_dir = resume};
    g_errs += t_train_session(MPI_COMM_WORLD, cfg, &o, keep, k);
}

// The warm slice of a fresh run's result against the dataset's own count.
static void check_warm(const char *dir, const rd_trainer_result *res) {
    char dsdir[600];
    snprintf(dsdir, sizeof dsdir, "%s/data", dir);
    rd_dataset *ds = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    RD_ASSERT(rd_dataset_open(dsdir, 0, &ds, &eb) == RD_OK);
    rd_range h = rd_dataset_holdout(ds);
    uint64_t warm = 0, at_min = 0;
    for (uint64_t i = h.begin; i < h.end; i++) {
        uint32_t p = rd_dataset_user_pos(ds, i);
        warm += p >= RD_TRAINER_WARM_MIN;
        at_min += p == RD_TRAINER_WARM_MIN;
    }
    rd_dataset_close(ds);
    printf("holdout %llu events, warm %llu (%llu with exactly %d earlier); trainer warm %llu, "
           "popularity warm %llu\n",
           (unsigned long long)(h.end - h.begin), (unsigned long long)warm,
           (unsigned long long)at_min, RD_TRAINER_WARM_MIN, (unsigned long long)res->warm.m.n,
           (unsigned long long)res->pop_warm.m.n);
    T_CHECK(&g_errs, at_min > 0,
            "no holdout event with exactly %d earlier ones: the data no "
            "longer tests the warm boundary",
            RD_TRAINER_WARM_MIN);
    T_CHECK(&g_errs, warm < h.end - h.begin, "every holdout event is warm");
    T_CHECK(&g_errs, res->holdout.m.n == h.end - h.begin, "holdout of %llu events, %llu scored",
            (unsigned long long)(h.end - h.begin), (unsigned long long)res->holdout.m.n);
    T_CHECK(&g_errs, res->warm.m.n == warm, "warm slice of %llu events, expected %llu",
            (unsigned long long)res->warm.m.n, (unsigned long long)warm);
    T_CHECK(&g_errs, res->pop_warm.m.n == warm,
            "popularity warm slice of %llu events, expected %llu",
            (unsigned long long)res->pop_warm.m.n, (unsigned long long)warm);
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 2)
        return t_mpi_refuse(rank, 1, "trainer_resume needs 2 ranks (1 PS, 1 worker)");
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char dir[512];
    t_tmpdir(dir, sizeof dir, "resume");
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    t_config_yaml(cfg, "trainer_resume", yaml_fmt, dir, dir);
    t_prepare(cfg, 0);

    char ckpt[600];
    snprintf(ckpt, sizeof ckpt, "%s/ck", dir);
    rd_trainer_result *ra = rd_xcalloc(1, sizeof *ra), *rb = rd_xcalloc(1, sizeof *rb);
    kept a = {.res = ra}, b = {.res = rb};
    session(cfg, ckpt, "", &a);
    t_barrier(MPI_COMM_WORLD);

    // The first checkpoint of A (world rank 1 is the worker; it picks and resumes).
    char from[700] = "";
    if (rank == 1) {
        int64_t *steps = NULL;
        size_t ns = 0;
        int rc = rd_train_ckpt_list(ckpt, "j", &steps, &ns, &eb);
        T_CHECK(&g_errs, rc == RD_OK && ns >= 2, "checkpoints of A: %zu (%s)", ns, eb.msg);
        if (rc == RD_OK && ns >= 1)
            RD_ASSERT(rd_train_ckpt_path(ckpt, "j", steps[0], from, sizeof from) == RD_OK);
        rd_free(steps);
        check_warm(dir, ra);
    }
    session(cfg, "", rank == 1 ? from : NULL, &b);
    const float *pa = a.params, *pb = b.params;
    const size_t na = a.n, nb = b.n;
    if (rank == 1) {
        T_CHECK(&g_errs, na == nb && na > 0, "dense slabs of %zu and %zu floats", na, nb);
        double d = 0;
        for (size_t k = 0; k < na && na == nb; k++) {
            double e = fabs((double)pa[k] - (double)pb[k]) / (1.0 + fabs((double)pa[k]));
            d = e > d || e != e ? e : d;
        }
        printf("resumed from %s: dense parameters differ by %.3g (max rel)\n", from, d);
        T_CHECK(&g_errs, d < 1e-5,
                "resumed run's dense parameters differ from the uninterrupted run's by %.3g (the "
                "Adam step count or moments not restored?)",
                d);
    }
    rd_free(a.params);
    rd_free(b.params);
    rd_free(ra);
    rd_free(rb);
    rd_free(cfg);
    return t_end("trainer_resume", g_errs, dir);
}
