// test_table.c — the embedding table shard: insert/find, growth far beyond the initial capacity,
// removal (backward-shift deletion) against a reference model, TTL eviction, admission counting,
// deterministic initial values (and init_as twins), restore (put / pending_put), memory accounting
// and out-of-memory injection through the swappable allocator.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/hash.h"
#include "rd/optim.h"
#include "rd/rng.h"
#include "rd/table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rd_table_config make_cfg(const char *name, int dim, int kind) {
    rd_table_config tc;
    memset(&tc, 0, sizeof tc);
    snprintf(tc.name, sizeof tc.name, "%s", name);
    tc.dim = dim;
    tc.optim.kind = kind;
    tc.optim.lr = 0.1f;
    tc.optim.beta1 = 0.9f;
    tc.optim.beta2 = 0.999f;
    tc.optim.eps = 1e-8f;
    tc.optim.initial_accumulator = 0.1f;
    tc.optim.beta = 1.0f;
    tc.init_std = 0.01f;
    tc.admit_count = 1;
    tc.capacity = 16;
    return tc;
}

static rd_table *make(const rd_table_config *tc) {
    rd_table *t = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_table_create(tc, 0, 42, &t, &eb), RD_OK);
    return t;
}

static void test_create_errors(void **state) {
    (void)state;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_table *t = NULL;
    rd_table_config tc = make_cfg("bad", 0, RD_OPT_SGD);
    assert_int_equal(rd_table_create(&tc, 0, 1, &t, &eb), RD_ERR_CONFIG);
    assert_null(t);
    assert_non_null(strstr(eb.msg, "dim 0"));
    tc = make_cfg("bad", 4, 9);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_table_create(&tc, 0, 1, &t, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "optimizer"));
    // A capacity beyond the node's memory is refused at once, not allocated chunk by chunk.
    tc = make_cfg("huge", 64, RD_OPT_ADAM);
    tc.capacity = (uint64_t)1 << 40;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_table_create(&tc, 0, 1, &t, &eb), RD_ERR_NOMEM);
    assert_null(t);
    assert_non_null(
        strstr(eb.msg, "table huge: the initial capacity of 1099511627776 rows needs "));
    assert_non_null(strstr(eb.msg, "GiB, more than this node's"));
    rd_table_destroy(NULL);
    // A NULL config or output is the caller's error, reported (rd_table_create asserted, and
    // the assertion aborted every rank of the job).
    t = (rd_table *)&eb;
    tc = make_cfg("emb", 4, RD_OPT_SGD);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_table_create(NULL, 0, 1, &t, &eb), RD_ERR_ARG);
    assert_null(t);
    assert_non_null(strstr(eb.msg, "rd_table_create: invalid argument: tc != NULL"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_table_create(&tc, 0, 1, NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_table_create: invalid argument: out != NULL"));
    // The status-returning calls give RD_ERR_ARG for a NULL table or array, as for key 0.
    t = make(&tc);
    uint64_t key = 5;
    float v[4] = {0};
    assert_int_equal(rd_table_pull(NULL, &key, 1, 0, v), RD_ERR_ARG);
    assert_int_equal(rd_table_pull(t, NULL, 1, 0, v), RD_ERR_ARG);
    assert_int_equal(rd_table_pull(t, &key, 1, 0, NULL), RD_ERR_ARG);
    assert_int_equal(rd_table_pull(t, NULL, 0, 0, NULL), RD_OK); // nothing asked
    assert_int_equal(rd_table_read(NULL, &key, 1, v), RD_ERR_ARG);
    assert_int_equal(rd_table_read(t, &key, 1, NULL), RD_ERR_ARG);
    assert_int_equal(rd_table_touch(NULL, &key, 1, 0), RD_ERR_ARG);
    assert_int_equal(rd_table_touch(t, NULL, 1, 0), RD_ERR_ARG);
    assert_int_equal(rd_table_push(NULL, &key, v, 1, 0), RD_ERR_ARG);
    assert_int_equal(rd_table_push(t, &key, NULL, 1, 0), RD_ERR_ARG);
    assert_int_equal(rd_table_insert(NULL, key, 0, NULL), RD_ERR_ARG);
    assert_int_equal(rd_table_remove(NULL, key), RD_ERR_ARG);
    assert_int_equal(rd_table_put(NULL, key, v, 0, 1), RD_ERR_ARG);
    assert_int_equal(rd_table_put(t, key, NULL, 0, 1), RD_ERR_ARG);
    assert_int_equal(rd_table_pending_put(NULL, key, 1, 0), RD_ERR_ARG);
    assert_int_equal(rd_table_size(t), 0); // none of the refused calls made a row
    assert_int_equal(rd_table_pull(t, &key, 1, 0, v), RD_OK);
    assert_int_equal(rd_table_size(t), 1);
    rd_table_destroy(t);
}

// The accessors without a status take a NULL table, and an index past the rows, quietly: size,
// dim and counts 0, find and row_at NULL, stats zeroed. They dereferenced the table (a crash)
// and row_at asserted its index (MPI_Abort), so a tool embedding the table died over its own
// mistake, where the status-returning calls already gave RD_ERR_ARG.
static void test_accessor_arguments(void **state) {
    (void)state;
    assert_int_equal(rd_table_size(NULL), 0);
    assert_null(rd_table_find(NULL, 5));
    uint64_t key = 7;
    int64_t seen = 3;
    uint64_t count = 9;
    assert_null(rd_table_row_at(NULL, 0, &key, &seen, &count));
    assert_true(key == 7 && seen == 3 && count == 9); // outputs untouched
    assert_null(rd_table_config_of(NULL));
    assert_int_equal(rd_table_index(NULL), -1);
    assert_int_equal(rd_table_dim(NULL), 0);
    assert_int_equal(rd_table_row_floats(NULL), 0);
    assert_int_equal(rd_table_pending_size(NULL), 0);
    assert_int_equal(rd_table_evict(NULL, 100), 0);
    size_t cur = 0;
    uint32_t pc = 0;
    assert_int_equal(rd_table_pending_next(NULL, &cur, &key, &pc, &seen), 0);
    rd_table_stats st;
    memset(&st, 0xff, sizeof st);
    rd_table_get_stats(NULL, &st);
    assert_true(st.rows == 0 && st.bytes == 0 && st.pulled == 0 && st.now == INT64_MIN);
    rd_table_set_counters(NULL, &st);
    float init[4] = {1, 2, 3, 4};
    rd_table_init_value(NULL, 5, init);
    assert_true(init[0] == 1.0f && init[3] == 4.0f);

    rd_table_config tc = make_cfg("emb", 4, RD_OPT_SGD);
    rd_table *t = make(&tc);
    float *row = NULL;
    assert_int_equal(rd_table_insert(t, 11, 0, &row), RD_OK);
    assert_int_equal(rd_table_size(t), 1);
    assert_non_null(rd_table_row_at(t, 0, &key, NULL, NULL));
    assert_true(key == 11);
    // One past the last row, and far past it: NULL, the outputs untouched.
    key = 1;
    assert_null(rd_table_row_at(t, 1, &key, &seen, &count));
    assert_null(rd_table_row_at(t, SIZE_MAX, &key, &seen, &count));
    assert_true(key == 1);
    // A size read before a removal no longer reaches a row.
    assert_int_equal(rd_table_remove(t, 11), RD_OK);
    assert_null(rd_table_row_at(t, 0, NULL, NULL, NULL));
    // pending_next without an output or cursor is the end of the iteration.
    assert_int_equal(rd_table_pending_next(t, NULL, &key, &pc, &seen), 0);
    assert_int_equal(rd_table_pending_next(t, &cur, NULL, &pc, &seen), 0);
    rd_table_get_stats(t, NULL); // no output: nothing to fill
    rd_table_destroy(t);
}

static void test_insert_find(void **state) {
    (void)state;
    rd_table_config tc = make_cfg("emb", 4, RD_OPT_ADAGRAD);
    rd_table *t = make(&tc);
    float *row = NULL;
    assert_int_equal(rd_table_insert(t, 0, 0, &row), RD_ERR_ARG);
    assert_int_equal(rd_table_insert(t, 77, 5, &row), RD_OK);
    assert_non_null(row);
    assert_int_equal(rd_table_insert(t, 77, 5, &row), RD_ERR_EXISTS);
    float init[4];
    rd_table_init_value(t, 77, init);
    float *f = rd_table_find(t, 77);
    assert_ptr_equal(f, row);
    assert_memory_equal(f, init, sizeof init);
    for (int i = 0; i < 4; i++)
        assert_true(f[4 + i] == 0.1f); // adagrad accumulator = initial_accumulator
    assert_null(rd_table_find(t, 78));
    assert_null(rd_table_find(t, 0));
    assert_int_equal(rd_table_size(t), 1);
    uint64_t key, count;
    int64_t ls;
    rd_table_row_at(t, 0, &key, &ls, &count);
    assert_true(key == 77 && ls == 5 && count == 0);
    rd_table_destroy(t);
}

static void test_init_deterministic(void **state) {
    (void)state;
    rd_table_config a = make_cfg("user", 8, RD_OPT_SGD), b = make_cfg("item", 8, RD_OPT_SGD);
    a.init_std = b.init_std = 0.5f;
    rd_table *ta = make(&a), *ta2 = NULL, *tb = make(&b);
    rd_errbuf eb;
    // Same name, different index and capacity: same values (only name and run seed matter).
    a.capacity = 1000;
    assert_int_equal(rd_table_create(&a, 5, 42, &ta2, &eb), RD_OK);
    float x[8], y[8], z[8];
    rd_table_init_value(ta, 12345, x);
    rd_table_init_value(ta2, 12345, y);
    rd_table_init_value(tb, 12345, z);
    assert_memory_equal(x, y, sizeof x);
    assert_memory_not_equal(x, z, sizeof x);
    // A twin table (init_as: user) starts with user's rows, though its name differs.
    rd_table_config c = make_cfg("user_twin", 8, RD_OPT_SGD);
    c.init_std = 0.5f;
    snprintf(c.init_as, sizeof c.init_as, "user");
    rd_table *tc = make(&c);
    float w[8];
    rd_table_init_value(tc, 12345, w);
    assert_memory_equal(x, w, sizeof x);
    rd_table_destroy(tc);
    // The values look like N(0, 0.5): mean near 0, std near 0.5 over many keys.
    double s = 0, s2 = 0;
    for (uint64_t k = 1; k <= 4000; k++) {
        rd_table_init_value(ta, k, x);
        for (int i = 0; i < 8; i++) {
            s += (double)x[i];
            s2 += (double)x[i] * (double)x[i];
        }
    }
    double mean = s / 32000, sd = sqrt(s2 / 32000 - mean * mean);
    assert_true(fabs(mean) < 0.02);
    assert_true(fabs(sd - 0.5) < 0.02);
    rd_table_destroy(ta);
    rd_table_destroy(ta2);
    rd_table_destroy(tb);
}

// Random inserts/removes against a reference set, far past the initial capacity of 16.
static void test_grow_remove_model(void **state) {
    (void)state;
    rd_table_config tc = make_cfg("m", 3, RD_OPT_SGD);
    rd_table *t = make(&tc);
    enum { N = 20000 };
    uint64_t *ref = calloc(N, sizeof *ref); // ref[i] = key i+1 present?
    rd_rng r;
    rd_rng_seed(&r, 7);
    size_t live = 0;
    rd_table_stats st0;
    rd_table_get_stats(t, &st0);
    for (int op = 0; op < 200000; op++) {
        uint64_t i = rd_rng_below(&r, N);
        uint64_t key = rd_mix64(i + 1) | 1; // spread keys, never 0
        if (rd_rng_below(&r, 3) < 2) {
            float *row;
            int rc = rd_table_insert(t, key, (int64_t)op, &row);
            if (ref[i]) {
                assert_int_equal(rc, RD_ERR_EXISTS);
            } else {
                assert_int_equal(rc, RD_OK);
                row[0] = (float)i; // tag the row to check it survives moves
                ref[i] = 1;
                live++;
            }
        } else {
            int rc = rd_table_remove(t, key);
            assert_int_equal(rc, ref[i] ? RD_OK : RD_ERR_NOTFOUND);
            if (ref[i]) {
                ref[i] = 0;
                live--;
            }
        }
    }
    assert_int_equal(rd_table_size(t), live);
    for (uint64_t i = 0; i < N; i++) {
        float *f = rd_table_find(t, rd_mix64(i + 1) | 1);
        if (ref[i]) {
            assert_non_null(f);
            assert_true(f[0] == (float)i);
        } else {
            assert_null(f);
        }
    }
    // Dense iteration visits every live row once.
    size_t seen = 0;
    for (size_t j = 0; j < rd_table_size(t); j++) {
        uint64_t key;
        const float *row = rd_table_row_at(t, j, &key, NULL, NULL);
        uint64_t i = (uint64_t)row[0];
        assert_true(ref[i] && (rd_mix64(i + 1) | 1) == key);
        seen++;
    }
    assert_int_equal(seen, live);
    rd_table_stats st;
    rd_table_get_stats(t, &st);
    assert_int_equal(st.rows, live);
    assert_true(st.bytes > st0.bytes);
    // At least a row's floats + meta per live row, and the index.
    assert_true(st.bytes >= live * (3 * 4 + 24 + 16));
    free(ref);
    rd_table_destroy(t);
}

static void test_pull_push(void **state) {
    (void)state;
    rd_table_config tc = make_cfg("pp", 2, RD_OPT_ADAM);
    tc.optim.lr = 0.01f;
    rd_table *t = make(&tc);
    uint64_t keys[2] = {5, 9};
    float out[4];
    assert_int_equal(rd_table_pull(t, keys, 2, 100, out), RD_OK);
    float init[2];
    rd_table_init_value(t, 9, init);
    assert_memory_equal(out + 2, init, sizeof init);
    // Two pushes of key 5: Adam with t = 1, then t = 2, exactly like rd_optim_update.
    float g1[2] = {0.5f, -0.5f}, g2[2] = {-0.25f, 0.25f};
    assert_int_equal(rd_table_push(t, keys, g1, 1, 150), RD_OK);
    assert_int_equal(rd_table_push(t, keys, g2, 1, 120), RD_OK);
    float w[2], slots[4] = {0, 0, 0, 0};
    rd_table_init_value(t, 5, w);
    rd_optim_update(&tc.optim, w, slots, 1, g1, 2);
    rd_optim_update(&tc.optim, w, slots, 2, g2, 2);
    float *row = rd_table_find(t, 5);
    assert_memory_equal(row, w, sizeof w);
    assert_memory_equal(row + 2, slots, sizeof slots);
    uint64_t key, count;
    int64_t ls;
    for (size_t i = 0; i < rd_table_size(t); i++) {
        rd_table_row_at(t, i, &key, &ls, &count);
        if (key == 5) {
            assert_true(count == 2);
            assert_true(ls == 150); // max of the times, not the latest call
        }
    }
    // Key 0 is rejected before anything changes.
    uint64_t bad[2] = {3, 0};
    assert_int_equal(rd_table_push(t, bad + 1, g1, 1, 0), RD_ERR_ARG);
    rd_table_stats st;
    rd_table_get_stats(t, &st);
    assert_int_equal(st.admitted, 2);
    assert_int_equal(st.pushed, 2);
    assert_int_equal(st.pulled, 2);
    rd_table_destroy(t);
}

// Two tables hold the same rows (keys, counts, last-seen times, floats and counters).
static void assert_same_tables(const rd_table *a, const rd_table *b) {
    assert_int_equal(rd_table_size(a), rd_table_size(b));
    assert_int_equal(rd_table_pending_size(a), rd_table_pending_size(b));
    size_t nf = rd_table_row_floats(a);
    for (size_t i = 0; i < rd_table_size(a); i++) {
        uint64_t ka, kb, ca, cb;
        int64_t la, lb;
        const float *ra = rd_table_row_at(a, i, &ka, &la, &ca);
        const float *rb = rd_table_row_at(b, i, &kb, &lb, &cb);
        assert_true(ka == kb && la == lb && ca == cb);
        assert_memory_equal(ra, rb, nf * sizeof(float));
    }
    rd_table_stats sa, sb;
    rd_table_get_stats(a, &sa);
    rd_table_get_stats(b, &sb);
    assert_true(sa.admitted == sb.admitted && sa.rejected == sb.rejected);
    assert_true(sa.pulled == sb.pulled && sa.pushed == sb.pushed);
}

// The batch loops (pull, read, touch, push) look keys up ahead of use and keep the rows in a
// ring; their naive twin is the same call one key at a time, where no lookahead can happen.
// Batches mix known keys, new keys (the index grows inside a batch: capacity 16), keys given
// twice (the second occurrence must find the row the first created), and with admission > 1
// keys that get admitted inside the batch.
static void test_batch_matches_single(void **state) {
    (void)state;
    for (int admit = 1; admit <= 3; admit += 2) {
        rd_table_config tc = make_cfg("la", 5, RD_OPT_ADAGRAD);
        tc.admit_count = admit;
        rd_table *bat = make(&tc), *one = make(&tc), *split = make(&tc);
        enum { N = 300 };
        uint64_t keys[N];
        float ob[N * 5], oo[N * 5], os[N * 5], g[N * 5];
        rd_rng r;
        rd_rng_split(&r, 7, (uint64_t)admit);
        for (int round = 0; round < 12; round++) {
            size_t n = (size_t)(N - 37 * round % 101);
            uint64_t span = 40 + 60 * (uint64_t)round; // new keys each round
            for (size_t i = 0; i < n; i++)
                keys[i] = 1 + rd_rng_below(&r, span);
            for (size_t i = 3; i < n; i += 17)
                keys[i] = keys[i - 3]; // a duplicate a few keys later
            int64_t now = 100 + round;
            assert_int_equal(rd_table_pull(bat, keys, n, now, ob), RD_OK);
            assert_int_equal(rd_table_pull(split, keys, 0, now, os), RD_OK); // empty batch
            for (size_t i = 0; i < n; i++)
                assert_int_equal(rd_table_pull(one, keys + i, 1, now, oo + i * 5), RD_OK);
            // pull == touch + read, here also as batches.
            assert_int_equal(rd_table_touch(split, keys, n, now), RD_OK);
            assert_int_equal(rd_table_read(split, keys, n, os), RD_OK);
            assert_memory_equal(ob, oo, n * 5 * sizeof(float));
            assert_memory_equal(ob, os, n * 5 * sizeof(float));
            assert_same_tables(bat, one);
            for (size_t i = 0; i < n * 5; i++)
                g[i] = 0.5f * ob[i] + 0.01f * (float)(i % 7);
            assert_int_equal(rd_table_push(bat, keys, g, n, now), RD_OK);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(rd_table_push(one, keys + i, g + i * 5, 1, now), RD_OK);
            assert_int_equal(rd_table_push(split, keys, g, n, now), RD_OK);
            assert_same_tables(bat, one);
            assert_same_tables(bat, split);
            // A push of keys never pulled: with admission 1 it creates their rows, and a key
            // given twice must be updated twice in the row its first occurrence created.
            for (size_t i = 0; i < n; i++)
                keys[i] = 100000 + 1000 * (uint64_t)round + rd_rng_below(&r, 64);
            assert_int_equal(rd_table_push(bat, keys, g, n, now), RD_OK);
            assert_int_equal(rd_table_push(split, keys, g, n, now), RD_OK);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(rd_table_push(one, keys + i, g + i * 5, 1, now), RD_OK);
            assert_same_tables(bat, one);
        }
        // The rows did grow inside batches, far past the capacity of 16.
        assert_true(rd_table_size(bat) > 200);
        rd_table_destroy(bat);
        rd_table_destroy(one);
        rd_table_destroy(split);
    }
}

static void test_admission(void **state) {
    (void)state;
    rd_table_config tc = make_cfg("adm", 2, RD_OPT_SGD);
    tc.admit_count = 3;
    rd_table *t = make(&tc);
    uint64_t k[1] = {42};
    float out[2], init[2], g[2] = {1.0f, 1.0f};
    rd_table_init_value(t, 42, init);
    // Sightings 1 and 2: init value, no row, pushes dropped and counted.
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rd_table_pull(t, k, 1, 10 + i, out), RD_OK);
        assert_memory_equal(out, init, sizeof init);
        assert_null(rd_table_find(t, 42));
        assert_int_equal(rd_table_push(t, k, g, 1, 10 + i), RD_OK);
    }
    rd_table_stats st;
    rd_table_get_stats(t, &st);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.rows, 0);
    size_t cur = 0;
    uint64_t pk;
    uint32_t pc;
    int64_t pls;
    assert_int_equal(rd_table_pending_next(t, &cur, &pk, &pc, &pls), 1);
    assert_true(pk == 42 && pc == 2 && pls == 11);
    assert_int_equal(rd_table_pending_next(t, &cur, &pk, &pc, &pls), 0);
    // Third sighting admits: the row starts at the init value; the next push applies.
    assert_int_equal(rd_table_pull(t, k, 1, 12, out), RD_OK);
    assert_memory_equal(out, init, sizeof init);
    assert_non_null(rd_table_find(t, 42));
    assert_int_equal(rd_table_push(t, k, g, 1, 12), RD_OK);
    float *row = rd_table_find(t, 42);
    assert_true(row[0] == init[0] - 0.1f * 1.0f);
    rd_table_get_stats(t, &st);
    assert_int_equal(st.admitted, 1);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.pending, 0);
    rd_table_destroy(t);
}

static void test_push_creates_row(void **state) {
    (void)state;
    // With admit_count 1 (the default) a push creates the row of a key never pulled, as
    // include/rd/table.h promises ("rows are created on first touch (pull or push)"): a gradient
    // for a key evicted between the step's pull and its push, or sent by a worker that skipped
    // the pull, is applied to the key's initial value, not dropped as "not admitted".
    rd_table_config tc = make_cfg("push1", 2, RD_OPT_SGD);
    rd_table *t = make(&tc);
    uint64_t k[1] = {77};
    float init[2], g[2] = {1.0f, -2.0f};
    rd_table_init_value(t, 77, init);
    assert_null(rd_table_find(t, 77));
    assert_int_equal(rd_table_push(t, k, g, 1, 5), RD_OK);
    float *row = rd_table_find(t, 77);
    assert_non_null(row);
    assert_true(row[0] == init[0] - 0.1f * 1.0f);
    assert_true(row[1] == init[1] - 0.1f * -2.0f);
    rd_table_stats st;
    rd_table_get_stats(t, &st);
    assert_int_equal(st.rows, 1);
    assert_int_equal(st.admitted, 1);
    assert_int_equal(st.rejected, 0);
    assert_int_equal(st.pushed, 1);
    rd_table_destroy(t);
}

static void test_evict(void **state) {
    (void)state;
    rd_table_config tc = make_cfg("ttl", 2, RD_OPT_SGD);
    tc.ttl = 10;
    tc.admit_count = 2;
    rd_table *t = make(&tc);
    float out[2], g[2] = {1, 1};
    // Rows 1..100 seen at time = key; key 500 pending (one sighting) at time 3.
    for (uint64_t key = 1; key <= 100; key++) {
        uint64_t k[1] = {key};
        assert_int_equal(rd_table_pull(t, k, 1, (int64_t)key, out), RD_OK);
        assert_int_equal(rd_table_pull(t, k, 1, (int64_t)key, out), RD_OK);
        assert_int_equal(rd_table_push(t, k, g, 1, (int64_t)key), RD_OK);
    }
    uint64_t p[1] = {500};
    assert_int_equal(rd_table_pull(t, p, 1, 3, out), RD_OK);
    assert_int_equal(rd_table_size(t), 100);
    // now = 60: rows with last_seen < 50 go (keys 1..49) and the pending key.
    assert_int_equal(rd_table_evict(t, 60), 49);
    assert_int_equal(rd_table_size(t), 51);
    assert_int_equal(rd_table_pending_size(t), 0);
    for (uint64_t key = 1; key <= 100; key++)
        assert_true((rd_table_find(t, key) != NULL) == (key >= 50));
    // Time never goes backwards, and an evicted key restarts from its init value and count 0.
    assert_int_equal(rd_table_evict(t, 20), 0);
    uint64_t k7[1] = {7};
    float init[2];
    rd_table_init_value(t, 7, init);
    assert_int_equal(rd_table_pull(t, k7, 1, 61, out), RD_OK);
    assert_null(rd_table_find(t, 7)); // admission starts over
    assert_int_equal(rd_table_pull(t, k7, 1, 61, out), RD_OK);
    assert_memory_equal(rd_table_find(t, 7), init, sizeof init);
    rd_table_stats st;
    rd_table_get_stats(t, &st);
    assert_int_equal(st.evicted, 49);
    assert_true(st.now == 60);
    // ttl 0 never evicts.
    rd_table_config tc0 = make_cfg("keep", 2, RD_OPT_SGD);
    rd_table *t0 = make(&tc0);
    uint64_t k1[1] = {1};
    assert_int_equal(rd_table_pull(t0, k1, 1, 0, out), RD_OK);
    assert_int_equal(rd_table_evict(t0, 1000000), 0);
    assert_int_equal(rd_table_size(t0), 1);
    rd_table_destroy(t0);
    rd_table_destroy(t);
}

// Eviction with a TTL on a table that streams: rows created in time order, a few touched (and
// some restored with old times) at each step, eviction at every step as the PS does. It must
// evict exactly the rows and pending keys a full scan would (a shadow of every key's last_seen),
// while reading only the chunks that may hold an expired row: a full scan at every step read
// 20000 rows a step (18 ms a step on a shard of 10^7 rows).
static void test_evict_chunks(void **state) {
    (void)state;
    rd_table_config tc = make_cfg("stream", 2, RD_OPT_SGD);
    tc.ttl = 200;
    tc.capacity = 256; // chunks of 256 rows
    tc.admit_count = 2;
    rd_table *t = make(&tc);
    enum { K = 20000, STEPS = 400 };
    int64_t *seen = malloc((K + 1) * sizeof *seen);    // shadow: last_seen, INT64_MIN = absent
    int *pend = calloc(K + 1, sizeof *pend);           // shadow: pending sightings
    int64_t *pend_ls = calloc(K + 1, sizeof *pend_ls); // and their last_seen
    float out[2];
    for (uint64_t k = 1; k <= K; k++) { // two sightings: a row, seen at k / 10
        uint64_t key[1] = {k};
        assert_int_equal(rd_table_pull(t, key, 1, (int64_t)(k / 10), out), RD_OK);
        assert_int_equal(rd_table_pull(t, key, 1, (int64_t)(k / 10), out), RD_OK);
        seen[k] = (int64_t)(k / 10);
    }
    rd_rng r;
    rd_rng_seed(&r, 9);
    uint64_t read0 = rd__table_evict_rows_read(t);
    for (int step = 0; step < STEPS; step++) {
        int64_t now = 200 + 5 * step, limit = now - tc.ttl;
        for (int j = 0; j < 20; j++) {
            uint64_t k = 1 + rd_rng_below(&r, K);
            uint64_t key[1] = {k};
            if (j == 0 && seen[k] != INT64_MIN) { // a restore with an older time
                float row[2] = {0.5f, 0.5f};
                int64_t old = limit + (int64_t)rd_rng_below(&r, 40);
                assert_int_equal(rd_table_put(t, k, row, old, 1), RD_OK);
                seen[k] = old;
                continue;
            }
            assert_int_equal(rd_table_pull(t, key, 1, now, out), RD_OK);
            if (seen[k] != INT64_MIN) {
                seen[k] = now > seen[k] ? now : seen[k];
            } else if (++pend[k] == 2) { // admitted at its second sighting
                seen[k] = now;
                pend[k] = 0;
            } else {
                pend_ls[k] = now;
            }
        }
        rd_table_evict(t, now);
        size_t want = 0, want_pending = 0;
        for (uint64_t k = 1; k <= K; k++) {
            if (seen[k] != INT64_MIN && seen[k] < limit)
                seen[k] = INT64_MIN;
            if (pend[k] && pend_ls[k] < limit) // pending counts expire like rows
                pend[k] = 0;
            want += seen[k] != INT64_MIN;
            want_pending += pend[k] != 0;
            if ((rd_table_find(t, k) != NULL) != (seen[k] != INT64_MIN))
                fail_msg("step %d: key %llu present %d, want %d", step, (unsigned long long)k,
                         rd_table_find(t, k) != NULL, seen[k] != INT64_MIN);
        }
        assert_int_equal(rd_table_size(t), want);
        assert_int_equal(rd_table_pending_size(t), want_pending);
    }
    // About a chunk or two a step, not the 20000 rows of a full scan.
    uint64_t read = rd__table_evict_rows_read(t) - read0;
    if (read > (uint64_t)STEPS * 2000)
        fail_msg("evictions read %llu rows in %d steps", (unsigned long long)read, STEPS);
    free(seen);
    free(pend);
    free(pend_ls);
    rd_table_destroy(t);

    // A removal moves the last row (restored with an older time) into an old chunk: that chunk
    // must be read when the moved row expires.
    t = make(&tc);
    for (uint64_t k = 1; k <= 600; k++) {
        uint64_t key[1] = {k};
        assert_int_equal(rd_table_pull(t, key, 1, 1000, out), RD_OK);
        assert_int_equal(rd_table_pull(t, key, 1, 1000, out), RD_OK);
    }
    float row[2] = {0, 0};
    assert_int_equal(rd_table_put(t, 600, row, 950, 1), RD_OK); // the last row, chunk 2
    assert_int_equal(rd_table_remove(t, 1), RD_OK);             // row 0 of chunk 0 <- key 600
    assert_int_equal(rd_table_evict(t, 1170), 1);               // limit 970
    assert_null(rd_table_find(t, 600));
    assert_int_equal(rd_table_size(t), 598);
    rd_table_destroy(t);
}

static void test_put_restore(void **state) {
    (void)state;
    rd_table_config tc = make_cfg("r", 2, RD_OPT_FTRL);
    rd_table *t = make(&tc);
    float row[6] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(rd_table_put(t, 9, row, 77, 3), RD_OK);
    assert_int_equal(rd_table_put(t, 0, row, 77, 3), RD_ERR_ARG);
    float *f = rd_table_find(t, 9);
    assert_memory_equal(f, row, sizeof row);
    row[0] = -1;
    assert_int_equal(rd_table_put(t, 9, row, 78, 4), RD_OK); // overwrite
    assert_int_equal(rd_table_size(t), 1);
    uint64_t key, count;
    int64_t ls;
    const float *r0 = rd_table_row_at(t, 0, &key, &ls, &count);
    assert_true(r0[0] == -1.0f && ls == 78 && count == 4);
    assert_int_equal(rd_table_pending_put(t, 11, 2, 50), RD_OK);
    assert_int_equal(rd_table_pending_put(t, 11, 0, 50), RD_ERR_ARG);
    assert_int_equal(rd_table_pending_size(t), 1);
    rd_table_stats st;
    memset(&st, 0, sizeof st);
    st.admitted = 5;
    st.rejected = 6;
    st.evicted = 7;
    st.pulled = 8;
    st.pushed = 9;
    st.now = 10;
    rd_table_set_counters(t, &st);
    rd_table_stats got;
    rd_table_get_stats(t, &got);
    assert_true(got.admitted == 5 && got.rejected == 6 && got.evicted == 7 && got.pulled == 8 &&
                got.pushed == 9 && got.now == 10 && got.rows == 1 && got.pending == 1);
    rd_table_destroy(t);
}

// A row's update count is Adam's t. Restored as 2^64 - 1 (a `table import` of a TSV takes any
// u64), it wrapped to 0 at the next push, and Adam's t >= 1 assertion aborted the job. It
// saturates now: the push is an Adam step with bias corrections of 1, the row stays finite.
static void test_push_count_saturates(void **state) {
    (void)state;
    rd_table_config tc = make_cfg("sat", 2, RD_OPT_ADAM);
    rd_table *t = make(&tc);
    float row[6] = {1.0f, -1.0f, 0.0f, 0.0f, 0.0f, 0.0f}; // w, m, v
    assert_int_equal(rd_table_put(t, 9, row, 1, UINT64_MAX), RD_OK);
    uint64_t key = 9, count = 0;
    float g[2] = {0.5f, -0.5f};
    assert_int_equal(rd_table_push(t, &key, g, 1, 2), RD_OK);
    const float *r = rd_table_row_at(t, 0, NULL, NULL, &count);
    assert_true(count == UINT64_MAX);
    // m = 0.05, v = 0.00025, no bias correction: w -= 0.1 * 0.05 / sqrt(0.00025) = 0.316
    assert_true(fabs((double)r[0] - (1.0 - 0.1 * 0.05 / sqrt(0.00025))) < 1e-5);
    assert_true(fabs((double)r[1] - (-1.0 + 0.1 * 0.05 / sqrt(0.00025))) < 1e-5);
    rd_table_destroy(t);
}

// ---------------------------------------------------------------------------------------------
// Out-of-memory injection: allocations fail after a budget.

static int g_budget = -1;

static void *fail_malloc(size_t n) {
    if (g_budget == 0)
        return NULL;
    if (g_budget > 0)
        g_budget--;
    return malloc(n);
}

static void *fail_realloc(void *p, size_t n) {
    if (g_budget == 0)
        return NULL;
    if (g_budget > 0)
        g_budget--;
    return realloc(p, n);
}

static void test_oom(void **state) {
    (void)state;
    rd_allocator a = {fail_malloc, fail_realloc, free};
    rd_alloc_set(&a);
    rd_table_config tc = make_cfg("oom", 4, RD_OPT_ADAGRAD);
    // Creation fails cleanly at every allocation point.
    for (int b = 0; b < 4; b++) {
        g_budget = b;
        rd_table *t = NULL;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int rc = rd_table_create(&tc, 0, 1, &t, &eb);
        if (rc == RD_OK) {
            rd_table_destroy(t);
            continue;
        }
        assert_int_equal(rc, RD_ERR_NOMEM);
        assert_null(t);
    }
    // Growth fails with RD_ERR_NOMEM and the table stays consistent.
    g_budget = -1;
    rd_table *t = make(&tc);
    uint64_t key = 1;
    int rc = RD_OK;
    g_budget = 3;
    float out[4];
    for (; key < 100000 && rc == RD_OK; key++) {
        uint64_t k[1] = {key};
        rc = rd_table_pull(t, k, 1, 0, out);
    }
    g_budget = -1;
    assert_int_equal(rc, RD_ERR_NOMEM);
    size_t n = rd_table_size(t);
    assert_true(n > 16);
    for (uint64_t k = 1; k <= n; k++)
        assert_non_null(rd_table_find(t, k));
    // And it works again once memory is back.
    uint64_t k2[1] = {key + 10};
    assert_int_equal(rd_table_pull(t, k2, 1, 0, out), RD_OK);
    rd_table_destroy(t);
    rd_alloc_set(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_insert_find),
        cmocka_unit_test(test_init_deterministic),
        cmocka_unit_test(test_grow_remove_model),
        cmocka_unit_test(test_pull_push),
        cmocka_unit_test(test_batch_matches_single),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_push_creates_row),
        cmocka_unit_test(test_evict),
        cmocka_unit_test(test_put_restore),
        cmocka_unit_test(test_push_count_saturates),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_evict_chunks),
        cmocka_unit_test(test_accessor_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
