// ps_checkpoint.c — checkpoint -> restore -> continue ends bit-identical to an uninterrupted run.
//
// Needs 4 ranks: 2 PS + 2 workers, synchronous mode.
//   Session 1 (uninterrupted): 30 steps. At step 15 worker 0 saves MID while worker 1 already
//     runs step 15 (the cut must still be "steps 0..14 applied"); at the end worker 0 saves FULL.
//   Session 2 (restart: new servers, empty tables): errors first (load of a missing checkpoint,
//     save into an existing one), then worker 0 loads MID, shares the step with worker 1, both
//     continue steps 15..29, and worker 0 saves RESUMED.
//   Session 3: LOAD while the job is mid-step is refused (RD_ERR_STATE) and nothing breaks.
//   Session 4: LOAD all or nothing: one shard is mid-step (a push of worker 1 reached only
//     shard 0), so it refuses; shard 1 could load but must not (a half-loaded PS would hold
//     MID's rows on shard 1 and reset its clocks to step MID). Every shard still has no rows
//     and the job finishes step 0; then, between steps, the same LOAD succeeds everywhere.
// Checks: FULL and RESUMED have the same step and the same per-shard CRCs (the CRC covers the
// canonical content: rows, slots, counts, last-seen, pending counts, counters), identical
// tables loaded with rd_ckpt_load_table, and the values pulled in steps 15..29 are identical.
#include "ps_test_util.h"

#include "rd/optim.h"

#define STEPS 30
#define MID   15
#define DRAWS 80

static void make_cfg(rd_config *cfg) {
    const char *names[] = {"train"};
    int ranks[] = {2};
    t_config(cfg, 2, 1, names, ranks);
    t_table(cfg, "user", 8, RD_OPT_ADAGRAD, 0.05f);
    rd_table_config *t = t_table(cfg, "item", 16, RD_OPT_ADAM, 0.01f);
    t->admit_count = 3; // 3: a pending key of 2 sightings must resume at 2, not 1
    t->ttl = 60;
    t_table(cfg, "ctx", 4, RD_OPT_FTRL, 0.1f);
}

typedef struct ctx {
    const t_zipf *z;
    const char *mid, *full, *resumed;
    uint32_t crc_late[2]; // pulled values of steps MID..STEPS-1
} ctx;

static int save(rd_kv *kv, const char *dir) {
    int errs = 0;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_kv_save(kv, dir, NULL, 0, &eb);
    T_CHECK(&errs, rc == RD_OK, "save %s: %s", dir, eb.msg);
    return errs;
}

static int session1(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *p) {
    ctx *c = p;
    int w = comm->job_rank, errs = 0;
    t_train a = {0, MID, DRAWS, c->z, 200, 0};
    errs += t_train_loop(kv, cfg, w, &a);
    if (w == 0) {
        // Worker 1 is already pulling/pushing step MID while this runs.
        T_CHECK(&errs, rd_kv_step(kv) == MID, "step %lld", (long long)rd_kv_step(kv));
        errs += save(kv, c->mid);
    }
    t_train b = {MID, STEPS, DRAWS, c->z, 200, 0};
    errs += t_train_loop(kv, cfg, w, &b);
    c->crc_late[w] = b.pulled_crc;
    t_barrier(comm->job);
    if (w == 0)
        errs += save(kv, c->full);
    return errs;
}

static int session2(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *p) {
    ctx *c = p;
    int w = comm->job_rank, errs = 0;
    int64_t step = -1;
    if (w == 0) {
        rd_errbuf eb;
        char missing[300];
        snprintf(missing, sizeof missing, "%s-missing", c->mid);
        rd_errbuf_clear(&eb);
        int rc = rd_kv_load(kv, missing, NULL, 0, &step, &eb);
        T_CHECK(&errs, rc == RD_ERR_NOTFOUND, "load of a missing dir gave %d: %s", rc, eb.msg);
        // Bad arguments are refused alike by save and load, before any message is sent.
        static char longdir[RD_CKPT_PARTIAL_MAX + 2];
        memset(longdir, 'd', sizeof longdir - 1);
        const int dup[2] = {1, 1}, out_of_range[1] = {3}, two[2] = {0, 2};
        for (int op = 0; op < 2; op++) {
            const char *name = op ? "load" : "save";
            struct {
                const char *dir;
                const int *tables;
                int n;
                const char *want;
            } bad[] = {{"", NULL, 0, "checkpoint folder: empty path"},
                       {NULL, NULL, 0, "checkpoint folder: empty path"},
                       {longdir, NULL, 0, "bytes, longer than the limit of"},
                       {c->mid, dup, 2, "table index 1 listed twice"},
                       {c->mid, out_of_range, 1, "table index 3 out of range"},
                       {c->mid, two, 0, "0 tables requested (1..3)"},
                       {c->mid, two, 4, "4 tables requested (1..3)"}};
            for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
                rd_errbuf_clear(&eb);
                rc = op ? rd_kv_load(kv, bad[k].dir, bad[k].tables, bad[k].n, &step, &eb)
                        : rd_kv_save(kv, bad[k].dir, bad[k].tables, bad[k].n, &eb);
                T_CHECK(&errs, rc == RD_ERR_ARG && strstr(eb.msg, bad[k].want),
                        "%s with bad argument %zu gave %d: %s", name, k, rc, eb.msg);
            }
        }
        T_CHECK(&errs, step == -1, "a refused load set the step to %lld", (long long)step);
        rd_errbuf_clear(&eb);
        rc = rd_kv_save(kv, c->mid, NULL, 0, &eb);
        T_CHECK(&errs, rc == RD_ERR_EXISTS, "save into an existing checkpoint gave %d: %s", rc,
                eb.msg);
        T_CHECK(&errs, rd_ckpt_verify(c->mid, &eb) == RD_OK, "MID damaged: %s", eb.msg);
        rd_errbuf_clear(&eb);
        rc = rd_kv_load(kv, c->mid, NULL, 0, &step, &eb);
        T_CHECK(&errs, rc == RD_OK, "load: %s", eb.msg);
        T_CHECK(&errs, step == MID, "loaded step %lld", (long long)step);
    }
    int64_t s = step;
    t_bcast(&s, 1, MPI_INT64_T, 0, comm->job);
    rd_kv_set_step(kv, s);
    t_barrier(comm->job); // nobody pulls before the load is done
    t_train b = {MID, STEPS, DRAWS, c->z, 200, 0};
    errs += t_train_loop(kv, cfg, w, &b);
    T_CHECK(&errs, b.pulled_crc == c->crc_late[w],
            "worker %d pulled different values after the restart", w);
    t_barrier(comm->job);
    if (w == 0)
        errs += save(kv, c->resumed);
    return errs;
}

static int session3(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *p) {
    ctx *c = p;
    (void)cfg;
    int w = comm->job_rank, errs = 0;
    uint64_t key[1] = {99};
    float g[8] = {0};
    int ts;
    if (w == 1) {
        T_CHECK(&errs, rd_kv_push(kv, 0, key, g, 1, &ts) == RD_OK, "push");
        T_CHECK(&errs, rd_kv_wait(kv, ts) == RD_OK, "push: %s", rd_kv_errmsg(kv));
    }
    t_barrier(comm->job);
    if (w == 0) {
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int64_t step;
        int rc = rd_kv_load(kv, c->mid, NULL, 0, &step, &eb);
        T_CHECK(&errs, rc == RD_ERR_STATE, "load mid-step gave %d: %s", rc, eb.msg);
        T_CHECK(&errs, strstr(eb.msg, "middle of step") != NULL, "message: %s", eb.msg);
    }
    T_CHECK(&errs, rd_kv_clock(kv, &ts) == RD_OK, "clock");
    T_CHECK(&errs, rd_kv_wait(kv, ts) == RD_OK, "clock: %s", rd_kv_errmsg(kv));
    return errs;
}

// Rows per shard, summed over the tables (rd_kv_stats).
static void shard_rows(rd_kv *kv, const rd_config *cfg, uint64_t rows[2]) {
    rows[0] = rows[1] = 0;
    for (int t = 0; t < cfg->ps.n_tables; t++) {
        rd_table_stats total, per[2];
        RD_ASSERT(rd_kv_stats(kv, t, &total, per) == RD_OK);
        rows[0] += per[0].rows;
        rows[1] += per[1].rows;
    }
}

static int session4(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *p) {
    ctx *c = p;
    int w = comm->job_rank, errs = 0;
    int ts;
    if (w == 1) {
        // A key of shard 0 only: shard 0 is then mid-step, shard 1 is between steps.
        uint64_t key[1] = {1};
        while (rd_shard_of(key[0], 2) != 0)
            key[0]++;
        float g[8] = {0};
        T_CHECK(&errs, rd_kv_push(kv, 0, key, g, 1, &ts) == RD_OK, "push");
        T_CHECK(&errs, rd_kv_wait(kv, ts) == RD_OK, "push: %s", rd_kv_errmsg(kv));
    }
    t_barrier(comm->job);
    rd_errbuf eb;
    int64_t step = -1;
    if (w == 0) {
        rd_ckpt_manifest *mf = rd_xcalloc(1, sizeof *mf);
        rd_errbuf_clear(&eb);
        T_CHECK(&errs, rd_ckpt_read_manifest(c->mid, mf, &eb) == RD_OK, "%s", eb.msg);
        T_CHECK(&errs, mf->shard_rows[0] > 0 && mf->shard_rows[1] > 0,
                "MID has rows on both shards (%llu, %llu)", (unsigned long long)mf->shard_rows[0],
                (unsigned long long)mf->shard_rows[1]);
        rd_errbuf_clear(&eb);
        int rc = rd_kv_load(kv, c->mid, NULL, 0, &step, &eb);
        T_CHECK(&errs, rc == RD_ERR_STATE, "load with shard 0 mid-step gave %d: %s", rc, eb.msg);
        T_CHECK(&errs, strstr(eb.msg, "no shard was loaded") && strstr(eb.msg, "shard 0"),
                "message: %s", eb.msg);
        T_CHECK(&errs, rd_kv_step(kv) == 0, "client step %lld", (long long)rd_kv_step(kv));
        uint64_t rows[2];
        shard_rows(kv, cfg, rows);
        T_CHECK(&errs, rows[0] == 0 && rows[1] == 0,
                "half-loaded: shard rows %llu and %llu after a refused LOAD",
                (unsigned long long)rows[0], (unsigned long long)rows[1]);
        rd_free(mf);
    }
    t_barrier(comm->job); // worker 1 clocks only after the LOAD (else shard 1 is mid-step too)
    // Step 0 completes on both shards (a shard that had loaded would be at step MID).
    T_CHECK(&errs, rd_kv_clock(kv, &ts) == RD_OK, "clock");
    T_CHECK(&errs, rd_kv_wait(kv, ts) == RD_OK, "clock after a refused LOAD: %s", rd_kv_errmsg(kv));
    t_barrier(comm->job);
    if (w == 0) {
        rd_errbuf_clear(&eb);
        int rc = rd_kv_load(kv, c->mid, NULL, 0, &step, &eb);
        T_CHECK(&errs, rc == RD_OK && step == MID, "load between steps gave %d (step %lld): %s", rc,
                (long long)step, eb.msg);
        rd_ckpt_manifest *mf = rd_xcalloc(1, sizeof *mf);
        rd_errbuf_clear(&eb);
        T_CHECK(&errs, rd_ckpt_read_manifest(c->mid, mf, &eb) == RD_OK, "%s", eb.msg);
        uint64_t rows[2];
        shard_rows(kv, cfg, rows);
        T_CHECK(&errs, rows[0] == mf->shard_rows[0] && rows[1] == mf->shard_rows[1],
                "loaded shard rows %llu, %llu; MID has %llu, %llu", (unsigned long long)rows[0],
                (unsigned long long)rows[1], (unsigned long long)mf->shard_rows[0],
                (unsigned long long)mf->shard_rows[1]);
        rd_free(mf);
    }
    return errs;
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 4)
        return t_mpi_refuse(rank, 77, "ps_checkpoint needs 4 ranks");
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int errs = 0;
    char dir[256], mid[300], full[300], resumed[300];
    t_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(mid, sizeof mid, "%s/mid", dir);
    snprintf(full, sizeof full, "%s/full", dir);
    snprintf(resumed, sizeof resumed, "%s/resumed", dir);
    t_zipf z;
    t_zipf_init(&z, 300, 1.1);
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    make_cfg(cfg);
    ctx c = {&z, mid, full, resumed, {0, 0}};

    errs += t_session(MPI_COMM_WORLD, cfg, session1, &c);
    t_barrier(MPI_COMM_WORLD);
    // Workers keep their own crc_late; session 2 compares on the same rank (same layout).
    errs += t_session(MPI_COMM_WORLD, cfg, session2, &c);
    t_barrier(MPI_COMM_WORLD);
    errs += t_session(MPI_COMM_WORLD, cfg, session3, &c);
    t_barrier(MPI_COMM_WORLD);
    errs += t_session(MPI_COMM_WORLD, cfg, session4, &c);
    t_barrier(MPI_COMM_WORLD);

    if (rank == 0) {
        rd_ckpt_manifest *mf = rd_xcalloc(1, sizeof *mf), *mr = rd_xcalloc(1, sizeof *mr);
        T_CHECK(&errs, rd_ckpt_verify(full, &eb) == RD_OK, "verify full: %s", eb.msg);
        T_CHECK(&errs, rd_ckpt_verify(resumed, &eb) == RD_OK, "verify resumed: %s", eb.msg);
        T_CHECK(&errs, rd_ckpt_read_manifest(full, mf, &eb) == RD_OK, "%s", eb.msg);
        T_CHECK(&errs, rd_ckpt_read_manifest(resumed, mr, &eb) == RD_OK, "%s", eb.msg);
        T_CHECK(&errs, mf->step == STEPS && mr->step == STEPS, "steps %lld %lld",
                (long long)mf->step, (long long)mr->step);
        for (uint32_t s = 0; s < mf->n_shards; s++)
            T_CHECK(&errs, mf->shard_crc[s] == mr->shard_crc[s],
                    "shard %u: CRC 0x%08x uninterrupted vs 0x%08x restored", s, mf->shard_crc[s],
                    mr->shard_crc[s]);
        for (int t = 0; t < cfg->ps.n_tables; t++) {
            rd_table *a[RD_MAX_TABLES], *b[RD_MAX_TABLES];
            t_make_tables(cfg, a);
            t_make_tables(cfg, b);
            const char *name = cfg->ps.tables[t].name;
            T_CHECK(&errs, rd_ckpt_load_table(full, name, a[t], &eb) == RD_OK, "%s", eb.msg);
            T_CHECK(&errs, rd_ckpt_load_table(resumed, name, b[t], &eb) == RD_OK, "%s", eb.msg);
            char what[96];
            snprintf(what, sizeof what, "table %s, uninterrupted vs restored", name);
            errs += t_same_tables(a[t], b[t], what);
            T_CHECK(&errs, rd_table_size(a[t]) > 10, "table %s: %zu rows", name,
                    rd_table_size(a[t]));
            // The mid checkpoint is really a different (earlier) state.
            rd_table *m[RD_MAX_TABLES];
            t_make_tables(cfg, m);
            T_CHECK(&errs, rd_ckpt_load_table(mid, name, m[t], &eb) == RD_OK, "%s", eb.msg);
            T_CHECK(&errs, t_same_tables(a[t], m[t], NULL) != 0,
                    "table %s did not change after step %d", name, MID);
            for (int i = 0; i < cfg->ps.n_tables; i++) {
                rd_table_destroy(a[i]);
                rd_table_destroy(b[i]);
                rd_table_destroy(m[i]);
            }
        }
        rd_free(mf);
        rd_free(mr);
        T_CHECK(&errs, t_rmtree(dir) == 0, "%s stays", dir);
    }
    t_zipf_free(&z);
    rd_free(cfg);
    int rc = t_finish("ps_checkpoint", errs);
    rd_mpi_finalize(rc);
    return rc;
}
