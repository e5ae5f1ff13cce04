// ps_admission.c — feature admission and TTL eviction behave as configured (sync mode; with
// argv[2] = "async" the asynchronous server and no shared memory, whose pulls and reads take
// other paths in ps/server.c: rd_table_pull at once, the keys in the message).
//
// Ranks: P PS + 1 worker, P = argv[1] (registered as 2 ranks / P=1 and 4 ranks / P=3 sync, and
// 3 ranks / P=2 async).
// Table "adm" (SGD, admit_count 3): a key's first two pulls return its initial value and its
// pushes are dropped (STATS: rejected, pending); the third pull admits it (a row equal to the
// initial value) and that step's push applies; from then on pulls see the trained row.
// Table "ttl" (SGD, ttl 10 s): keys A are used at stream time 0 only, keys B at every step
// (time = 5 * step); at the end of the step at time 15, A is evicted (STATS: evicted), and a
// later pull of A returns the initial value again although A was trained at step 0.
// Reads (rd_kv_set_read: the trainer's evaluation pulls) of every adm key and of A at every step
// answer the same values and change none of this: they count no admission sighting and do not
// refresh A's last-seen time (they did: A was never evicted, adm keys were admitted a step early).
#include "ps_test_util.h"

#include "rd/optim.h"

#define NK 20

static void make_cfg(rd_config *cfg, int P, int async) {
    const char *names[] = {"train"};
    int ranks[] = {1};
    t_config(cfg, P, 1, names, ranks);
    if (async) {
        cfg->ps.sync = 0;
        cfg->ps.staleness = 0;
        cfg->ps.shm = RD_SHM_OFF; // the keys travel in the message
    }
    rd_table_config *t = t_table(cfg, "adm", 4, RD_OPT_SGD, 0.5f);
    t->admit_count = 3;
    t = t_table(cfg, "ttl", 2, RD_OPT_SGD, 0.5f);
    t->ttl = 10;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void make_keys(uint64_t *k, int n, uint64_t salt) {
    for (int i = 0; i < n; i++)
        k[i] = rd_table_key(salt, (uint64_t)i + 1);
    qsort(k, (size_t)n, sizeof *k, cmp_u64);
}

static int pull(rd_kv *kv, int t, const uint64_t *k, size_t n, float *out) {
    int errs = 0, ts;
    T_CHECK(&errs, rd_kv_pull(kv, t, k, n, out, &ts) == RD_OK, "pull: %s", rd_kv_errmsg(kv));
    T_CHECK(&errs, rd_kv_wait(kv, ts) == RD_OK, "pull: %s", rd_kv_errmsg(kv));
    return errs;
}

static int push(rd_kv *kv, int t, const uint64_t *k, size_t n, const float *g) {
    int errs = 0, ts;
    T_CHECK(&errs, rd_kv_push(kv, t, k, g, n, &ts) == RD_OK, "push: %s", rd_kv_errmsg(kv));
    T_CHECK(&errs, rd_kv_wait(kv, ts) == RD_OK, "push: %s", rd_kv_errmsg(kv));
    return errs;
}

static int worker(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *p) {
    (void)comm;
    (void)p;
    int errs = 0;
    rd_table *ref[RD_MAX_TABLES]; // for initial values only
    t_make_tables(cfg, ref);
    uint64_t kadm[NK], ka[NK / 2], kb[NK / 2], kab[NK];
    make_keys(kadm, NK, 11);
    make_keys(ka, NK / 2, 22);
    make_keys(kb, NK / 2, 33);
    memcpy(kab, ka, sizeof ka);
    memcpy(kab + NK / 2, kb, sizeof kb);
    qsort(kab, NK, sizeof *kab, cmp_u64);
    float init_adm[NK * 4], init_a[NK / 2 * 2], vals[NK * 4], g[NK * 4], expect[NK * 4];
    for (int i = 0; i < NK; i++)
        rd_table_init_value(ref[0], kadm[i], init_adm + 4 * i);
    for (int i = 0; i < NK / 2; i++)
        rd_table_init_value(ref[1], ka[i], init_a + 2 * i);
    memcpy(expect, init_adm, sizeof expect);

    for (int64_t s = 0; s < 6 && errs == 0; s++) {
        rd_kv_set_time(kv, 5 * s);
        // --- reads, as an evaluation makes: the values a training pull would get, no sightings
        rd_kv_set_read(kv, 1);
        errs += pull(kv, 0, kadm, NK, vals);
        T_CHECK(&errs, memcmp(vals, expect, sizeof vals) == 0,
                "step %lld: adm values read differ from the expected ones", (long long)s);
        errs += pull(kv, 1, ka, NK / 2, vals);
        T_CHECK(&errs, s < 4 || memcmp(vals, init_a, sizeof init_a) == 0,
                "step %lld: an evicted key read is not its initial value", (long long)s);
        rd_kv_set_read(kv, 0);
        // --- admission table
        errs += pull(kv, 0, kadm, NK, vals);
        T_CHECK(&errs, memcmp(vals, expect, sizeof vals) == 0,
                "step %lld: adm values differ from the expected ones", (long long)s);
        float gs = 0.25f * (float)(s + 1);
        for (int i = 0; i < NK * 4; i++)
            g[i] = gs;
        errs += push(kv, 0, kadm, NK, g);
        if (s >= 2) // pushes of the admitting step (third sighting) and later apply
            for (int i = 0; i < NK * 4; i++)
                expect[i] = expect[i] - 0.5f * gs;
        // --- ttl table
        const uint64_t *k = s == 0 ? kab : kb;
        size_t n = s == 0 ? NK : NK / 2;
        errs += pull(kv, 1, k, n, vals);
        for (size_t i = 0; i < n * 2; i++)
            g[i] = 1.0f;
        errs += push(kv, 1, k, n, g);
        int ts;
        T_CHECK(&errs, rd_kv_clock(kv, &ts) == RD_OK, "clock");
        T_CHECK(&errs, rd_kv_wait(kv, ts) == RD_OK, "clock: %s", rd_kv_errmsg(kv));

        // --- statistics after the step was applied
        rd_table_stats adm, ttl;
        rd_table_stats *per = rd_xcalloc((size_t)comm->n_ps, sizeof *per);
        T_CHECK(&errs, rd_kv_stats(kv, 0, &adm, per) == RD_OK, "stats: %s", rd_kv_errmsg(kv));
        T_CHECK(&errs, rd_kv_stats(kv, 1, &ttl, NULL) == RD_OK, "stats: %s", rd_kv_errmsg(kv));
        uint64_t rows_sum = 0;
        for (int i = 0; i < comm->n_ps; i++)
            rows_sum += per[i].rows;
        rd_free(per);
        T_CHECK(&errs, rows_sum == adm.rows, "per-shard rows do not add up");
        uint64_t want_rej = s == 0 ? NK : 2 * NK;
        T_CHECK(&errs, adm.rejected == want_rej, "step %lld: rejected %llu, expected %llu",
                (long long)s, (unsigned long long)adm.rejected, (unsigned long long)want_rej);
        T_CHECK(&errs, adm.rows == (s >= 2 ? NK : 0u), "step %lld: adm rows %llu", (long long)s,
                (unsigned long long)adm.rows);
        T_CHECK(&errs, adm.pending == (s >= 2 ? 0u : NK), "step %lld: pending %llu", (long long)s,
                (unsigned long long)adm.pending);
        T_CHECK(&errs, adm.admitted == (s >= 2 ? NK : 0u), "step %lld: admitted %llu", (long long)s,
                (unsigned long long)adm.admitted);
        T_CHECK(&errs, adm.pulled == (uint64_t)(s + 1) * NK, "step %lld: pulled %llu (reads count)",
                (long long)s, (unsigned long long)adm.pulled);
        // A is last seen at time 0: evicted at the end of the step at time 15 (0 < 15 - 10).
        uint64_t want_rows = s >= 3 ? NK / 2 : NK;
        T_CHECK(&errs, ttl.rows == want_rows, "step %lld: ttl rows %llu, expected %llu",
                (long long)s, (unsigned long long)ttl.rows, (unsigned long long)want_rows);
        T_CHECK(&errs, ttl.evicted == (s >= 3 ? NK / 2 : 0u), "step %lld: evicted %llu",
                (long long)s, (unsigned long long)ttl.evicted);
        T_CHECK(&errs, ttl.now == 5 * s, "step %lld: table clock %lld", (long long)s,
                (long long)ttl.now);
    }
    // Evicted keys come back re-initialised from their key; B keeps its trained rows.
    float va[NK], vb[NK];
    errs += pull(kv, 1, ka, NK / 2, va);
    T_CHECK(&errs, memcmp(va, init_a, sizeof init_a) == 0, "evicted keys are not re-initialised");
    errs += pull(kv, 1, kb, NK / 2, vb);
    float init_b[2];
    rd_table_init_value(ref[1], kb[0], init_b);
    float want = init_b[0];
    for (int i = 0; i < 6; i++)
        want -= 0.5f * 1.0f; // six SGD steps with gradient 1
    T_CHECK(&errs, vb[0] == want, "key B[0]: %g, expected %g", (double)vb[0], (double)want);
    for (int t = 0; t < cfg->ps.n_tables; t++)
        rd_table_destroy(ref[t]);
    return errs;
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    int P = argc > 1 ? atoi(argv[1]) : 1;
    if (P < 1 || size != P + 1)
        return t_mpi_refuse(rank, 77, "ps_admission P needs P+1 ranks");
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    make_cfg(cfg, P, argc > 2 && strcmp(argv[2], "async") == 0);
    int errs = t_session(MPI_COMM_WORLD, cfg, worker, NULL);
    rd_free(cfg);
    int rc = t_finish("ps_admission", errs);
    rd_mpi_finalize(rc);
    return rc;
}
