// trainer_evtime.c — evaluation and scoring do not move the stream time a job's clocks carry.
//
// The PS takes the latest stream time among a job's clocks as the "now" of TTL eviction
// (ps/server.c evict_job), and a worker with no records of its own in a step clocks with the time
// it set last (rd_kv_set_time). Evaluation pulls set the evaluated records' time; had it stayed,
// a rank with nothing to train in a step (an uneven split, its records dropped by the job's
// negative sampling) would clock with the evaluated window's end and rows would be evicted
// against a stream time the job has not trained to.
//
// Session: 2 workers of one job (sync mode; with `async`, ps.sync 0) and size - 2 PS ranks, a
// table with a ttl (long: nothing is evicted, but the tables' clocks advance), 2 stream windows
// and a holdout, which comes after them in time and is evaluated after the last training step.
// After rd_trainer_run, each worker:
//   1. clocks one more step without records of its own (what a rank with none in a step does);
//      the tables' clock (rd_kv_stats `now`) must stay the trained one, earlier than the holdout;
//   2. scores the holdout's last records (rd_trainer_score) and clocks again: the same.
#include "ps_test_util.h"

#include <inttypes.h>

#include "rd/dataset.h"
#include "rd/trainer.h"

static int g_errs;

static const char *yaml_fmt = "run: {name: ev, seed: 5, out_dir: %s/run}\n"
                              "cluster:\n"
                              "  ps_ranks: %d\n"
                              "  poll_us_max: 100\n"
                              "  jobs:\n"
                              "    - {name: j, role: student, model: m, ranks: 2}\n"
                              "data:\n"
                              "  source: synthetic\n"
                              "  dir: %s/data\n"
                              "  history_max: 4\n"
                              "  synthetic: {events: 1200, users: 30, items: 100}\n"
                              "  split: {batch_fraction: 0.6, holdout_fraction: 0.2, "
                              "stream_windows: 2}\n"
                              "ps:\n"
                              "  sync: %s\n"
                              "  tables:\n"
                              "    - {name: u, dim: 4, ttl: 1000000000}\n"
                              "    - {name: i, dim: 4, ttl: 1000000000}\n"
                              "models:\n"
                              "  - name: m\n"
                              "    features:\n"
                              "      - {field: user, table: u}\n"
                              "      - {field: item, table: i}\n"
                              "    mlp: [8]\n"
                              "train: {batch_size: 50, epochs: 1}\n"
                              "output: {progress_every_s: 0}\n";

// The latest clock of tables u and i (rd_kv_stats `now`, the max over the shards).
static int64_t tables_now(rd_kv *kv) {
    int64_t now = INT64_MIN;
    const char *names[2] = {"u", "i"};
    for (int t = 0; t < 2; t++) {
        rd_table_stats st;
        RD_ASSERT(rd_kv_stats(kv, rd_kv_table(kv, names[t]), &st, NULL) == RD_OK);
        if (st.now > now)
            now = st.now;
    }
    return now;
}

// One step with no records of this worker: the clock alone, given once both workers read the
// tables' clock and completed by both before either reads it again (sync: the last clock applies
// the step and evicts; async: each clock evicts at once).
static void empty_step(rd_kv *kv, MPI_Comm job) {
    t_barrier(job);
    T_CHECK(&g_errs, rd_kv_clock(kv, NULL) == RD_OK, "clock");
    T_CHECK(&g_errs, rd_kv_wait_all(kv) == RD_OK, "wait");
    t_barrier(job);
}

// After training, on each worker (t_train_session): ctx is the test's folder.
static void worker(rd_trainer *tr,
                   const rd_trainer_result *res,
                   const rd_comm *comm,
                   const rd_config *cfg,
                   void *ctx) {
    (void)res;
    (void)cfg;
    const char *dir = ctx;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char dsdir[600];
    snprintf(dsdir, sizeof dsdir, "%s/data", dir);
    rd_dataset *ds = NULL;
    RD_ASSERT(rd_dataset_open(dsdir, 0, &ds, &eb) == RD_OK);
    rd_range h = rd_dataset_holdout(ds);
    RD_ASSERT(h.end > h.begin + 4);
    const int64_t t_holdout = rd_dataset_record(ds, h.end - 1)->ts;
    rd_kv *kv = rd_trainer_kv(tr);
    const int me = comm->job_rank;

    // The trained clock is before the holdout's end, so that evaluation could move it (else this
    // test could not fail).
    const int64_t trained = tables_now(kv);
    T_CHECK(&g_errs, trained != INT64_MIN && trained < t_holdout,
            "tables' clock %" PRId64 " after training, holdout ends at %" PRId64, trained,
            t_holdout);

    // 1. After the holdout's evaluation.
    empty_step(kv, comm->job);
    int64_t now = tables_now(kv);
    T_CHECK(&g_errs, now == trained,
            "a step without records after the holdout evaluation moved the tables' clock from "
            "%" PRId64 " to %" PRId64 " (holdout ends at %" PRId64 ")",
            trained, now, t_holdout);

    // 2. After scoring the holdout's last records (each worker its own two).
    uint64_t recs[2] = {h.end - 1 - (uint64_t)me, h.end - 3 - (uint64_t)me};
    float logits[2];
    T_CHECK(&g_errs, rd_trainer_score(tr, recs, 2, logits, &eb) == RD_OK, "score: %s", eb.msg);
    empty_step(kv, comm->job);
    now = tables_now(kv);
    T_CHECK(&g_errs, now == trained,
            "a step without records after scoring moved the tables' clock from %" PRId64
            " to %" PRId64,
            trained, now);
    if (me == 0)
        printf("tables' clock after training %" PRId64 ", after an empty step following the "
               "holdout evaluation and scoring %" PRId64 "; holdout ends at %" PRId64 "\n",
               trained, now, t_holdout);
    rd_dataset_close(ds);
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size < 3)
        return t_mpi_refuse(rank, 1, "trainer_evtime needs 3 ranks or more (2 workers)");
    const int sync = !(argc > 1 && strcmp(argv[1], "async") == 0);
    char dir[512];
    t_tmpdir(dir, sizeof dir, "evtime");
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    t_config_yaml(cfg, "trainer_evtime", yaml_fmt, dir, size - 2, dir, sync ? "true" : "false");
    t_prepare(cfg, 0);
    g_errs += t_train_session(MPI_COMM_WORLD, cfg, NULL, worker, dir);
    rd_free(cfg);
    return t_end("trainer_evtime", g_errs, dir);
}
