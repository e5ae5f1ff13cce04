// ps_sync_layouts.c — synchronous training gives bit-identical embeddings with 1 PS and 3 PS.
//
// Needs 5 ranks. Phase A runs on world ranks 0..2 (1 PS + 2 workers; ranks 3, 4 wait), phase B
// on all 5 (3 PS + 2 workers). Both run the same toy loop for 40 steps over 4 tables (SGD,
// Adagrad with admission, Adam with TTL eviction, FTRL) with Zipf keys, a tiny
// ps.max_msg_bytes (so messages are split in chunks) and random delays before pushes (so
// arrival orders differ), then save a checkpoint. Rank 0 then checks that
//   - the rows, optimizer slots, counts, last-seen times and pending admission counts of both
//     checkpoints are identical bit for bit to each other and to a single-process reference
//     computed here with rd_table (sum of gradients per key in worker order, one update per key);
//   - every value each worker pulled (CRC over the run) is identical in A, B and the reference;
//   - both checkpoints verify;
//   - a read of 1500 untrained keys (three messages) answers every key's initial value.
// Phase C runs asynchronous mode (ps.sync 0) with 3 PS + 1 worker on ranks 0..3: its worker waits
// for its pushes before the next pull, so rows and pulled values must equal a one-worker
// sequential reference bit for bit (and differ from the two-worker one: the control).
#include "ps_test_util.h"

#include "rd/optim.h"

#define STEPS 40
#define DRAWS 96

static void make_cfg(rd_config *cfg, int P, int W) {
    const char *names[] = {"train"};
    int ranks[] = {W};
    t_config(cfg, P, 1, names, ranks);
    cfg->ps.max_msg_bytes = 4096;
    t_table(cfg, "u_sgd", 4, RD_OPT_SGD, 0.05f);
    rd_table_config *t = t_table(cfg, "i_adagrad", 16, RD_OPT_ADAGRAD, 0.05f);
    t->admit_count = 2;
    t = t_table(cfg, "c_adam", 8, RD_OPT_ADAM, 0.01f);
    t->ttl = 50;
    t_table(cfg, "x_ftrl", 8, RD_OPT_FTRL, 0.1f);
}

typedef struct ctx {
    const t_zipf *z;
    const char *ckpt;
    uint32_t crc[2];
    uint64_t rows[RD_MAX_TABLES];
} ctx;

static int worker(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *p) {
    ctx *c = p;
    int errs = 0;
    int w = comm->job_rank;
    t_train tr = {0, STEPS, DRAWS, c->z, 300, 0};
    errs += t_train_loop(kv, cfg, w, &tr);
    c->crc[w] = tr.pulled_crc;
    t_barrier(comm->job);
    if (w == 0) {
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int rc = rd_kv_save(kv, c->ckpt, NULL, 0, &eb);
        T_CHECK(&errs, rc == RD_OK, "save %s: %s", c->ckpt, eb.msg);
        for (int t = 0; t < cfg->ps.n_tables; t++) {
            rd_table_stats st;
            rc = rd_kv_stats(kv, t, &st, NULL);
            T_CHECK(&errs, rc == RD_OK, "stats: %s", rd_kv_errmsg(kv));
            c->rows[t] = st.rows;
        }
        // A read of more keys than one message holds (ps.max_msg_bytes 4096: 512 keys of 8
        // bytes), none of them trained: every value is its key's initial value, in its key's
        // place. With one PS rank the chunks' values land straight in the caller's array, each at
        // its chunk's offset (the toy loop's pulls of <= DRAWS keys never needed two chunks).
        enum { NR = 1500 };
        uint64_t *rk = rd_xmalloc(NR * sizeof *rk);
        float *rv = rd_xmalloc(NR * 4 * sizeof *rv), want[4];
        for (size_t i = 0; i < NR; i++)
            rk[i] = 1000000 + 3 * (uint64_t)i;
        rd_table *ref[RD_MAX_TABLES];
        t_make_tables(cfg, ref);
        rd_kv_set_read(kv, 1);
        int ts = 0;
        rc = rd_kv_pull(kv, 0, rk, NR, rv, &ts);
        if (rc == RD_OK)
            rc = rd_kv_wait(kv, ts);
        T_CHECK(&errs, rc == RD_OK, "read of %d keys: %s", NR, rd_kv_errmsg(kv));
        size_t bad = 0;
        for (size_t i = 0; rc == RD_OK && i < NR; i++) {
            rd_table_init_value(ref[0], rk[i], want);
            bad += memcmp(want, rv + 4 * i, sizeof want) != 0;
        }
        T_CHECK(&errs, bad == 0, "read of %d untrained keys: %zu values are not their initial ones",
                NR, bad);
        rd_kv_set_read(kv, 0);
        for (int t = 0; t < cfg->ps.n_tables; t++)
            rd_table_destroy(ref[t]);
        rd_free(rk);
        rd_free(rv);
    }
    return errs;
}

static void share(ctx *c) {
    uint32_t in[2] = {c->crc[0], c->crc[1]};
    MPI_Request r;
    RD_MPI_CHECK(MPI_Iallreduce(in, c->crc, 2, MPI_UINT32_T, MPI_BOR, MPI_COMM_WORLD, &r));
    t_wait(&r);
    uint64_t rows[RD_MAX_TABLES];
    memcpy(rows, c->rows, sizeof rows);
    RD_MPI_CHECK(
        MPI_Iallreduce(rows, c->rows, RD_MAX_TABLES, MPI_UINT64_T, MPI_BOR, MPI_COMM_WORLD, &r));
    t_wait(&r);
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 5)
        return t_mpi_refuse(rank, 77, "ps_sync_layouts needs 5 ranks");
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int errs = 0;
    char dir[256], dir_a[300], dir_b[300], dir_c[300];
    t_tmpdir(dir, sizeof dir, "sync");
    snprintf(dir_a, sizeof dir_a, "%s/p1", dir);
    snprintf(dir_b, sizeof dir_b, "%s/p3", dir);
    t_zipf z;
    t_zipf_init(&z, 400, 1.05);

    // Phase A: 1 PS + 2 workers on ranks 0..2.
    rd_config *cfg1 = rd_xcalloc(1, sizeof *cfg1);
    make_cfg(cfg1, 1, 2);
    ctx a = {&z, dir_a, {0, 0}, {0}};
    MPI_Comm sub = t_first_ranks(3);
    if (sub != MPI_COMM_NULL) {
        errs += t_session(sub, cfg1, worker, &a);
        MPI_Comm_free(&sub);
    }
    t_barrier(MPI_COMM_WORLD);
    share(&a);

    // Phase B: 3 PS + 2 workers on all 5 ranks.
    rd_config *cfg3 = rd_xcalloc(1, sizeof *cfg3);
    make_cfg(cfg3, 3, 2);
    ctx b = {&z, dir_b, {0, 0}, {0}};
    errs += t_session(MPI_COMM_WORLD, cfg3, worker, &b);
    t_barrier(MPI_COMM_WORLD);
    share(&b);

    // Phase C: asynchronous mode (pushes applied on arrival) with one worker, 3 PS on ranks 0..3.
    // The loop waits for its pushes before it clocks and pulls again, so the order of updates is
    // that of the sequential reference of one worker.
    rd_config *cfga = rd_xcalloc(1, sizeof *cfga);
    make_cfg(cfga, 3, 1);
    cfga->ps.sync = 0;
    snprintf(dir_c, sizeof dir_c, "%s/async", dir);
    ctx c = {&z, dir_c, {0, 0}, {0}};
    sub = t_first_ranks(4);
    if (sub != MPI_COMM_NULL) {
        errs += t_session(sub, cfga, worker, &c);
        MPI_Comm_free(&sub);
    }
    t_barrier(MPI_COMM_WORLD);
    share(&c);

    if (rank == 0) {
        // One worker's sequential reference against the asynchronous run.
        rd_config *cfg1w = rd_xcalloc(1, sizeof *cfg1w);
        make_cfg(cfg1w, 1, 1);
        rd_table *ref1[RD_MAX_TABLES];
        t_make_tables(cfg1w, ref1);
        uint32_t crc1[2] = {0, 0};
        t_reference(cfg1w, ref1, 1, &z, DRAWS, 0, STEPS, crc1);
        T_CHECK(&errs, c.crc[0] == crc1[0],
                "async, 1 worker: pulled other values than the reference");
        T_CHECK(&errs, rd_ckpt_verify(dir_c, &eb) == RD_OK, "verify C: %s", eb.msg);
        for (int t = 0; t < cfg1w->ps.n_tables; t++) {
            rd_table *tc[RD_MAX_TABLES];
            t_make_tables(cfg1w, tc);
            const char *name = cfg1w->ps.tables[t].name;
            T_CHECK(&errs, rd_ckpt_load_table(dir_c, name, tc[t], &eb) == RD_OK, "%s", eb.msg);
            char what[96];
            snprintf(what, sizeof what, "table %s, async 1 worker vs reference", name);
            errs += t_same_tables(tc[t], ref1[t], what);
            for (int i = 0; i < cfg1w->ps.n_tables; i++)
                rd_table_destroy(tc[i]);
        }
        // Control: the two-worker reference is another trajectory.
        T_CHECK(&errs, crc1[0] != a.crc[0], "control: 1 and 2 workers pulled the same values");
        for (int t = 0; t < cfg1w->ps.n_tables; t++)
            rd_table_destroy(ref1[t]);
        rd_free(cfg1w);
    }
    rd_free(cfga);

    if (rank == 0) {
        // Reference, computed in this process.
        rd_table *ref[RD_MAX_TABLES];
        t_make_tables(cfg1, ref);
        uint32_t crc_ref[2] = {0, 0};
        t_reference(cfg1, ref, 2, &z, DRAWS, 0, STEPS, crc_ref);
        for (int w = 0; w < 2; w++) {
            T_CHECK(&errs, a.crc[w] == crc_ref[w], "worker %d pulled other values with 1 PS", w);
            T_CHECK(&errs, b.crc[w] == crc_ref[w], "worker %d pulled other values with 3 PS", w);
        }
        T_CHECK(&errs, rd_ckpt_verify(dir_a, &eb) == RD_OK, "verify A: %s", eb.msg);
        T_CHECK(&errs, rd_ckpt_verify(dir_b, &eb) == RD_OK, "verify B: %s", eb.msg);
        uint64_t evicted = 0, rejected = 0;
        for (int t = 0; t < cfg1->ps.n_tables; t++) {
            rd_table *ta[RD_MAX_TABLES], *tb[RD_MAX_TABLES];
            t_make_tables(cfg1, ta);
            t_make_tables(cfg1, tb);
            const char *name = cfg1->ps.tables[t].name;
            T_CHECK(&errs, rd_ckpt_load_table(dir_a, name, ta[t], &eb) == RD_OK, "%s", eb.msg);
            T_CHECK(&errs, rd_ckpt_load_table(dir_b, name, tb[t], &eb) == RD_OK, "%s", eb.msg);
            char what[96];
            snprintf(what, sizeof what, "table %s, 1 PS vs 3 PS", name);
            errs += t_same_tables(ta[t], tb[t], what);
            snprintf(what, sizeof what, "table %s, 1 PS vs reference", name);
            errs += t_same_tables(ta[t], ref[t], what);
            T_CHECK(&errs, rd_table_size(ref[t]) == a.rows[t] && a.rows[t] == b.rows[t],
                    "table %s: STATS rows %llu / %llu, reference %zu", name,
                    (unsigned long long)a.rows[t], (unsigned long long)b.rows[t],
                    rd_table_size(ref[t]));
            T_CHECK(&errs, rd_table_size(ref[t]) > 10, "table %s has only %zu rows", name,
                    rd_table_size(ref[t]));
            rd_table_stats st;
            rd_table_get_stats(ref[t], &st);
            evicted += st.evicted;
            rejected += st.rejected;
            for (int i = 0; i < cfg1->ps.n_tables; i++) {
                rd_table_destroy(ta[i]);
                rd_table_destroy(tb[i]);
            }
        }
        // The scenario really exercised eviction and admission.
        T_CHECK(&errs, evicted > 0, "no row was evicted");
        T_CHECK(&errs, rejected > 0, "no push was rejected by admission");
        for (int t = 0; t < cfg1->ps.n_tables; t++)
            rd_table_destroy(ref[t]);
        T_CHECK(&errs, t_rmtree(dir) == 0, "%s stays", dir);
    }
    t_zipf_free(&z);
    rd_free(cfg1);
    rd_free(cfg3);
    int rc = t_finish("ps_sync_layouts", errs);
    rd_mpi_finalize(rc);
    return rc;
}
