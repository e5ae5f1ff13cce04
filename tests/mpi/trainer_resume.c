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

// Run one session on MPI_COMM_WORLD; the worker copies its dense parameters into *params (which
// it allocates) and its result into *res.
static void session(const rd_config *cfg,
                    const char *ckpt,
                    const char *resume,
                    float **params,
                    size_t *n,
                    rd_trainer_result *res) {
    rd_comm *comm = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_comm_create(MPI_COMM_WORLD, cfg, &comm, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "rd_comm_create: %s", eb.msg);
    if (comm->role_kind == RD_ROLE_PS) {
        rc = rd_ps_serve(comm, cfg);
        T_CHECK(&g_errs, rc == RD_OK, "rd_ps_serve: %s", rd_strerror(rc));
    } else {
        rd_trainer *tr = NULL;
        rd_trainer_opts o = {
            .metrics_dir = "", .quiet = 1, .checkpoint_dir = ckpt, .resume_dir = resume};
        rc = rd_trainer_create(comm, cfg, &o, &tr, &eb);
        RD_ASSERT_MSG(rc == RD_OK, "rd_trainer_create: %s", eb.msg);
        rc = rd_trainer_run(tr, res, &eb);
        RD_ASSERT_MSG(rc == RD_OK, "rd_trainer_run: %s", eb.msg);
        rd_model *m = rd_trainer_model(tr);
        *n = m->n_slab;
        *params = rd_xmalloc(m->n_slab * sizeof(float));
        memcpy(*params, m->params, m->n_slab * sizeof(float));
        rc = rd_trainer_destroy(tr);
        T_CHECK(&g_errs, rc == RD_OK, "rd_trainer_destroy: %s", rd_strerror(rc));
    }
    rd_comm_destroy(comm);
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
    char text[4096];
    snprintf(text, sizeof text, yaml_fmt, dir, dir);
    int rc = rd_config_parse_string(text, strlen(text), "trainer_resume", cfg, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "config: %s", eb.msg);
    if (rank == 0)
        rc = rd_dataset_prepare(&cfg->data, cfg->run.seed, &eb);
    t_bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    RD_ASSERT_MSG(rc == RD_OK, "prepare: %s", eb.msg);

    char ckpt[600];
    snprintf(ckpt, sizeof ckpt, "%s/ck", dir);
    rd_trainer_result *ra = rd_xcalloc(1, sizeof *ra), *rb = rd_xcalloc(1, sizeof *rb);
    float *pa = NULL, *pb = NULL;
    size_t na = 0, nb = 0;
    session(cfg, ckpt, "", &pa, &na, ra);
    t_barrier(MPI_COMM_WORLD);

    // The first checkpoint of A (world rank 1 is the worker; it picks and resumes).
    char from[700] = "";
    if (rank == 1) {
        int64_t *steps = NULL;
        size_t ns = 0;
        rc = rd_train_ckpt_list(ckpt, "j", &steps, &ns, &eb);
        T_CHECK(&g_errs, rc == RD_OK && ns >= 2, "checkpoints of A: %zu (%s)", ns, eb.msg);
        if (rc == RD_OK && ns >= 1)
            RD_ASSERT(rd_train_ckpt_path(ckpt, "j", steps[0], from, sizeof from) == RD_OK);
        rd_free(steps);
        check_warm(dir, ra);
    }
    session(cfg, "", rank == 1 ? from : NULL, &pb, &nb, rb);
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
    rd_free(pa);
    rd_free(pb);
    rd_free(ra);
    rd_free(rb);
    rd_free(cfg);

    t_barrier(MPI_COMM_WORLD);
    if (rank == 0)
        t_rmtree(dir);
    int code = t_finish("trainer_resume", g_errs);
    rd_mpi_finalize(code);
    return code;
}
