// ps_async.c — asynchronous mode: pushes apply on arrival, the staleness bound holds, and TTL
// eviction runs when the job's stream time advances.
//
// Needs 4 ranks: 2 PS + 2 workers; ps.sync = 0, ps.staleness = 1.
// 1. Worker 0 pulls a key, pushes a gradient and pulls again in the same step: the second pull
//    already sees the update (in sync mode it would see it only after the step).
// 2. Worker 1 holds back its first CLOCK. Worker 0 clocks twice (it is at step 2); its pull of
//    step 1 is answered (1 step ahead is allowed), its pull of step 2 must stay pending however
//    long we poll (2 > min clock 0 + staleness 1). When worker 1 clocks once, it is answered.
// 3. A key pushed at stream time 0 in a ttl-10 table is evicted when a CLOCK at time 100 arrives.
#include "ps_test_util.h"

#include "rd/optim.h"

static void make_cfg(rd_config *cfg) {
    const char *names[] = {"train"};
    int ranks[] = {2};
    t_config(cfg, 2, 1, names, ranks);
    cfg->ps.sync = 0;
    cfg->ps.staleness = 1;
    t_table(cfg, "emb", 4, RD_OPT_SGD, 0.5f);
    rd_table_config *t = t_table(cfg, "ttl", 2, RD_OPT_SGD, 0.5f);
    t->ttl = 10;
}

static int wait_ok(rd_kv *kv, int ts, const char *what) {
    int errs = 0;
    int rc = rd_kv_wait(kv, ts);
    T_CHECK(&errs, rc == RD_OK, "%s: %s", what, rd_kv_errmsg(kv));
    return errs;
}

static int worker(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *p) {
    (void)p;
    int errs = 0, ts, w = comm->job_rank;
    rd_table *ref[RD_MAX_TABLES];
    t_make_tables(cfg, ref);
    uint64_t key[1] = {rd_table_key(5, 5)};
    float v[4], init[4], g[4] = {1, 2, 3, 4};
    rd_table_init_value(ref[0], key[0], init);

    if (w == 0) {
        // 1. Immediate application.
        T_CHECK(&errs, rd_kv_pull(kv, 0, key, 1, v, &ts) == RD_OK, "pull");
        errs += wait_ok(kv, ts, "pull");
        T_CHECK(&errs, memcmp(v, init, sizeof v) == 0, "first pull is not the init value");
        T_CHECK(&errs, rd_kv_push(kv, 0, key, g, 1, &ts) == RD_OK, "push");
        errs += wait_ok(kv, ts, "push");
        T_CHECK(&errs, rd_kv_pull(kv, 0, key, 1, v, &ts) == RD_OK, "pull");
        errs += wait_ok(kv, ts, "pull");
        for (int d = 0; d < 4; d++)
            T_CHECK(&errs, v[d] == init[d] - 0.5f * g[d], "dim %d: %g, expected %g", d,
                    (double)v[d], (double)(init[d] - 0.5f * g[d]));

        // 2. Staleness: run to step 2 while worker 1 stays at step 0.
        T_CHECK(&errs, rd_kv_clock(kv, &ts) == RD_OK, "clock");
        errs += wait_ok(kv, ts, "clock");
        T_CHECK(&errs, rd_kv_pull(kv, 0, key, 1, v, &ts) == RD_OK, "pull");
        errs += wait_ok(kv, ts, "pull at step 1 (one step ahead is allowed)");
        T_CHECK(&errs, rd_kv_clock(kv, &ts) == RD_OK, "clock");
        errs += wait_ok(kv, ts, "clock");
        T_CHECK(&errs, rd_kv_step(kv) == 2, "step %lld", (long long)rd_kv_step(kv));
        int ts_far;
        T_CHECK(&errs, rd_kv_pull(kv, 0, key, 1, v, &ts_far) == RD_OK, "pull");
        int done = 0;
        for (int i = 0; i < 300 && !done; i++) { // about 0.3 s of polling
            T_CHECK(&errs, rd_kv_test(kv, ts_far, &done) == RD_OK, "test: %s", rd_kv_errmsg(kv));
            t_sleep_ms(1);
        }
        T_CHECK(&errs, !done, "pull of step 2 answered while a worker is still at step 0");
        int go = 1;
        MPI_Request r;
        RD_MPI_CHECK(MPI_Isend(&go, 1, MPI_INT, 1, 7, comm->job, &r));
        t_wait(&r);
        errs += wait_ok(kv, ts_far, "pull at step 2 after the other worker clocked");
    } else {
        int go = 0;
        MPI_Request r;
        RD_MPI_CHECK(MPI_Irecv(&go, 1, MPI_INT, 0, 7, comm->job, &r));
        t_wait(&r);
        T_CHECK(&errs, rd_kv_clock(kv, &ts) == RD_OK, "clock");
        errs += wait_ok(kv, ts, "clock");
    }
    t_barrier(comm->job);

    // 3. Eviction on stream-time advance (async: at the CLOCK that moves the time forward).
    uint64_t k2[1] = {rd_table_key(9, 9)};
    float g2[2] = {1, 1};
    if (w == 0) {
        rd_kv_set_time(kv, 0);
        T_CHECK(&errs, rd_kv_push(kv, 1, k2, g2, 1, &ts) == RD_OK, "push");
        errs += wait_ok(kv, ts, "push");
        rd_table_stats st;
        T_CHECK(&errs, rd_kv_stats(kv, 1, &st, NULL) == RD_OK, "stats");
        T_CHECK(&errs, st.rows == 1 && st.evicted == 0, "rows %llu evicted %llu",
                (unsigned long long)st.rows, (unsigned long long)st.evicted);
        rd_kv_set_time(kv, 100);
        T_CHECK(&errs, rd_kv_clock(kv, &ts) == RD_OK, "clock");
        errs += wait_ok(kv, ts, "clock");
        T_CHECK(&errs, rd_kv_stats(kv, 1, &st, NULL) == RD_OK, "stats");
        T_CHECK(&errs, st.rows == 0 && st.evicted == 1 && st.now == 100,
                "after time 100: rows %llu evicted %llu now %lld", (unsigned long long)st.rows,
                (unsigned long long)st.evicted, (long long)st.now);
    }
    for (int t = 0; t < cfg->ps.n_tables; t++)
        rd_table_destroy(ref[t]);
    return errs;
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 4)
        return t_mpi_refuse(rank, 77, "ps_async needs 4 ranks");
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    int errs = 0;
    // The layout: a config for another world size is refused on every rank with a clear error.
    const char *names[] = {"teacher", "student"};
    int ranks[] = {1, 2};
    t_config(cfg, 2, 2, names, ranks); // 2 + 1 + 2 = 5 ranks, the launch has 4
    rd_comm *bad = NULL;
    rd_errbuf_clear(&eb);
    T_CHECK(&errs, rd_comm_create(MPI_COMM_WORLD, cfg, &bad, &eb) == RD_ERR_ARG && !bad,
            "world size mismatch accepted");
    T_CHECK(&errs, strstr(eb.msg, "has 4 ranks but the config needs 5") != NULL, "message: %s",
            eb.msg);
    // PS ranks first, then the jobs in config order.
    ranks[1] = 1;
    t_config(cfg, 2, 2, names, ranks);
    rd_comm *c = NULL;
    T_CHECK(&errs, rd_comm_create(MPI_COMM_WORLD, cfg, &c, &eb) == RD_OK, "%s", eb.msg);
    if (c) {
        int job = 0, idx = 0;
        T_CHECK(&errs, c->n_ps == 2 && c->job_first[0] == 2 && c->job_first[1] == 3,
                "layout %d %d %d", c->n_ps, c->job_first[0], c->job_first[1]);
        T_CHECK(&errs, rd_comm_job_of(c, 3, &job, &idx) == RD_OK && job == 1 && idx == 0,
                "job_of(3)");
        T_CHECK(&errs, rd_comm_job_of(c, 4, &job, &idx) == RD_ERR_RANGE, "job_of(4)");
        int want_role = rank < 2 ? RD_ROLE_PS : RD_ROLE_WORKER;
        T_CHECK(&errs, c->role_kind == want_role && c->job_size == (rank < 2 ? 2 : 1),
                "rank %d: role %d job size %d", rank, c->role_kind, c->job_size);
        rd_comm_destroy(c);
    }
    make_cfg(cfg);
    errs += t_session(MPI_COMM_WORLD, cfg, worker, NULL);
    rd_free(cfg);
    int rc = t_finish("ps_async", errs);
    rd_mpi_finalize(rc);
    return rc;
}
