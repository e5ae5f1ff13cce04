// test_embed.c — the public read-only APIs as a program that embeds the libraries uses them.
//
// An outside tool includes only include/rd/*.h and links the static libraries: it reads a table
// checkpoint (manifest, cursor, merged table, the table tools), and an instance-token store
// (read-only open, info, fetch, stats, verify, iterate), and it hands them its own mistakes (a
// NULL handle, path or output, an index past the rows). Each mistake must come back as an error
// or a documented quiet value, never an abort of the tool: RD_ASSERT calls MPI_Abort, and an
// embedder may be a long-lived server.
//
// The fixtures are written through the same public API (rd_table, rd_ckpt_write_*,
// rd_token_store_create/append) into a fresh folder of this test's own (mkdtemp), removed after.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "count_alloc.h"
#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/dense_optim.h"
#include "rd/error.h"
#include "rd/hash.h"
#include "rd/model.h"
#include "rd/optim.h"
#include "rd/serve.h"
#include "rd/table.h"
#include "rd/tabletool.h"
#include "rd/targets.h"
#include "rd/tokens.h"
#include "rd/tokentool.h"
#include "rd/train_ckpt.h"
#include "tmp_root.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char g_root[256];
static char g_ckpt[320];
static char g_store[320];

enum { DIM = 4, P = 2, N_KEYS = 40, TOK_DIM = 3, N_USERS = 5, PER_USER = 6 };

// ---------------------------------------------------------------------------------------------
// Fixtures, written through the public API

static rd_table_config table_cfg(void) {
    rd_table_config tc;
    memset(&tc, 0, sizeof tc);
    snprintf(tc.name, sizeof tc.name, "emb");
    tc.dim = DIM;
    tc.optim.kind = RD_OPT_ADAGRAD;
    tc.optim.lr = 0.1f;
    tc.optim.initial_accumulator = 0.1f;
    tc.init_std = 0.1f;
    tc.admit_count = 1;
    tc.capacity = 8;
    return tc;
}

// Keys 1..N_KEYS, key k on shard k % P, each pushed once at time k.
static void write_checkpoint(void) {
    rd_table_config tc = table_cfg();
    rd_ckpt_manifest *m = rd_xcalloc(1, sizeof *m);
    m->version = RD_CKPT_VERSION;
    m->n_shards = P;
    m->step = 3;
    m->seed = 11;
    m->n_tables = 1;
    memcpy(m->tables[0].name, tc.name, RD_NAME_MAX);
    m->tables[0].dim = DIM;
    m->tables[0].optim = (uint32_t)tc.optim.kind;
    m->tables[0].slots = (uint32_t)rd_optim_slots(tc.optim.kind);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    for (int s = 0; s < P; s++) {
        rd_table *t = NULL;
        assert_int_equal(rd_table_create(&tc, 0, 11, &t, &eb), RD_OK);
        const float g[DIM] = {0.5f, -0.5f, 0.25f, 1.0f};
        for (uint64_t k = 1; k <= N_KEYS; k++)
            if ((int)(k % P) == s)
                assert_int_equal(rd_table_push(t, &k, g, 1, (int64_t)k), RD_OK);
        rd_ckpt_shard_info info;
        assert_int_equal(rd_ckpt_write_shard(g_ckpt, s, P, 3, 11, &t, 1, &info, &eb), RD_OK);
        m->shard_crc[s] = info.crc;
        m->shard_rows[s] = info.rows[0];
        m->tables[0].rows += info.rows[0];
        rd_table_destroy(t);
    }
    assert_int_equal(rd_ckpt_write_manifest(g_ckpt, m, &eb), RD_OK);
    rd_free(m);
}

// N_USERS users with PER_USER records each, at times 10, 20, ...; token j of user u is
// (u, j, u + j), label j % 2, item 100 + j.
static void write_store(void) {
    rd_token_store_opts o;
    memset(&o, 0, sizeof o);
    o.dim = TOK_DIM;
    o.dtype = RD_TOKEN_FP32;
    o.n_shards = 2;
    o.no_sync = 1;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(g_store, &o, &s, &eb), RD_OK);
    enum { N = N_USERS * PER_USER };
    uint64_t users[N], ids[N], items[N];
    int64_t ts[N];
    float tokens[N * TOK_DIM], labels[N];
    for (int u = 0; u < N_USERS; u++) {
        for (int j = 0; j < PER_USER; j++) {
            int i = u * PER_USER + j;
            users[i] = 1000 + (uint64_t)u;
            ts[i] = 10 * (int64_t)(j + 1);
            ids[i] = (uint64_t)i + 1;
            items[i] = 100 + (uint64_t)j;
            labels[i] = (float)(j % 2);
            tokens[i * TOK_DIM] = (float)u;
            tokens[i * TOK_DIM + 1] = (float)j;
            tokens[i * TOK_DIM + 2] = (float)(u + j);
        }
    }
    rd_token_batch b;
    memset(&b, 0, sizeof b);
    b.n = N;
    b.users = users;
    b.ts = ts;
    b.ids = ids;
    b.tokens = tokens;
    b.labels = labels;
    b.items = items;
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    rd_token_store_destroy(s);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/rd_test_embed_XXXXXX");
    if (!mkdtemp(g_root))
        return -1;
    snprintf(g_ckpt, sizeof g_ckpt, "%s/ckpt", g_root);
    snprintf(g_store, sizeof g_store, "%s/tokens", g_root);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return rd_train_ckpt_rmtree(g_root, NULL) == RD_OK ? 0 : -1;
}

// ---------------------------------------------------------------------------------------------
// A table checkpoint, read as a tool reads it

static void test_read_checkpoint(void **state) {
    (void)state;
    write_checkpoint();
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_ckpt_manifest *m = rd_xcalloc(1, sizeof *m);
    assert_int_equal(rd_ckpt_read_manifest(g_ckpt, m, &eb), RD_OK);
    assert_int_equal(m->n_shards, P);
    assert_int_equal(m->n_tables, 1);
    assert_int_equal(m->tables[0].rows, N_KEYS);
    assert_int_equal(rd_ckpt_verify(g_ckpt, &eb), RD_OK);
    assert_int_equal(rd_ckpt_check_shards(g_ckpt, &eb), RD_OK);

    // Each shard's rows through a cursor, in key order, checked against the manifest's CRC.
    const size_t rf = DIM * (1 + m->tables[0].slots);
    uint64_t seen = 0;
    for (int s = 0; s < P; s++) {
        rd_ckpt_cursor *c = NULL;
        assert_int_equal(rd_ckpt_cursor_open(g_ckpt, s, 0, rf, 0, &m->shard_crc[s], &c, &eb),
                         RD_OK);
        rd_ckpt_record r;
        uint64_t prev = 0;
        int rc;
        while ((rc = rd_ckpt_cursor_next(c, &r, &eb)) == 1) {
            assert_true(r.key > prev && (int)(r.key % P) == s);
            assert_non_null(r.row);
            assert_int_equal(r.last_seen, (int64_t)r.key);
            assert_int_equal(r.count, 1);
            prev = r.key;
            seen++;
        }
        assert_int_equal(rc, 0);
        rd_ckpt_cursor_close(c);
    }
    assert_int_equal(seen, N_KEYS);

    // The whole table merged into one rd_table, then iterated by index.
    rd_table_config tc = table_cfg();
    rd_table *t = NULL;
    assert_int_equal(rd_table_create(&tc, 0, m->seed, &t, &eb), RD_OK);
    assert_int_equal(rd_ckpt_load_table(g_ckpt, "emb", t, &eb), RD_OK);
    assert_int_equal(rd_table_size(t), N_KEYS);
    assert_int_equal(rd_table_row_floats(t), rf);
    uint64_t key_sum = 0;
    for (size_t i = 0; i < rd_table_size(t); i++) {
        uint64_t key = 0;
        const float *row = rd_table_row_at(t, i, &key, NULL, NULL);
        assert_non_null(row);
        assert_ptr_equal(rd_table_find(t, key), row);
        key_sum += key;
    }
    assert_int_equal(key_sum, (uint64_t)N_KEYS * (N_KEYS + 1) / 2);
    assert_null(rd_table_row_at(t, rd_table_size(t), NULL, NULL, NULL));
    rd_table_destroy(t);

    // The table tools' read side.
    rd_tabletool *tt = NULL;
    assert_int_equal(rd_tabletool_open(g_ckpt, &tt, &eb), RD_OK);
    assert_int_equal(rd_tabletool_find(tt, "emb"), 0);
    assert_int_equal(rd_tabletool_find(tt, "none"), -1);
    uint64_t rows = 0, pending = 9;
    rd_tabletool_counts(tt, -1, &rows, &pending);
    assert_int_equal(rows, N_KEYS);
    assert_int_equal(pending, 0);
    assert_int_equal(rd_table_size(rd_tabletool_table(tt, 0, 0)) +
                         rd_table_size(rd_tabletool_table(tt, 1, 0)),
                     N_KEYS);
    assert_null(rd_tabletool_table(tt, P, 0)); // a shard past the last
    rd_tabletool_close(tt);
    rd_free(m);
}

// A tool's mistakes with the checkpoint API: errors it can report, not an abort or a crash.
static void test_checkpoint_arguments(void **state) {
    (void)state;
    rd_errbuf eb;
    rd_ckpt_manifest *m = rd_xcalloc(1, sizeof *m);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_read_manifest(NULL, m, &eb), RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_read_manifest(g_ckpt, NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_ckpt_read_manifest: invalid argument: m != NULL"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_verify(NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_ckpt_verify: invalid argument: dir != NULL"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_check_shards(NULL, &eb), RD_ERR_ARG);
    char sp[64];
    assert_int_equal(rd_ckpt_shard_path(NULL, 0, sp, sizeof sp), RD_ERR_ARG);
    assert_int_equal(rd_ckpt_shard_path(g_ckpt, 0, NULL, 64), RD_ERR_ARG);
    assert_int_equal(rd_ckpt_shard_path("c", 1, sp, sizeof sp), RD_OK);
    assert_string_equal(sp, "c/shard-00001");
    uint32_t crc = 0;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_shard_crc(NULL, 0, &crc, &eb), RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_shard_crc(g_ckpt, 0, NULL, &eb), RD_ERR_ARG);
    rd_ckpt_cursor *c = (rd_ckpt_cursor *)&eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_cursor_open(NULL, 0, 0, DIM * 2, 0, NULL, &c, &eb), RD_ERR_ARG);
    assert_null(c);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_cursor_open(g_ckpt, 0, 0, DIM * 2, 0, NULL, NULL, &eb), RD_ERR_ARG);
    rd_ckpt_record r;
    rd_errbuf_clear(&eb);
    assert_true(rd_ckpt_cursor_next(NULL, &r, &eb) < 0);
    rd_ckpt_cursor_close(NULL);
    rd_table_config tc = table_cfg();
    rd_table *t = NULL;
    assert_int_equal(rd_table_create(&tc, 0, 11, &t, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_load_table(NULL, "emb", t, &eb), RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_load_table(g_ckpt, NULL, t, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_ckpt_load_table: invalid argument: name != NULL"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_load_table(g_ckpt, "emb", NULL, &eb), RD_ERR_ARG);
    assert_int_equal(rd_table_size(t), 0);
    rd_table_destroy(t);
    rd_tabletool *tt = (rd_tabletool *)&eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tabletool_open(NULL, &tt, &eb), RD_ERR_ARG);
    assert_null(tt);
    assert_null(rd_tabletool_manifest(NULL));
    assert_int_equal(rd_tabletool_find(NULL, "emb"), -1);
    rd_tabletool_close(NULL);
    rd_free(m);
}

// ---------------------------------------------------------------------------------------------
// An instance-token store, read as a tool reads it

static int count_visit(const rd_token_record *rec, void *user) {
    assert_non_null(rec->token);
    (*(uint64_t *)user)++;
    return 0;
}

static void test_read_token_store(void **state) {
    (void)state;
    write_store();
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store_info info;
    assert_int_equal(rd_token_store_read_manifest(g_store, &info, &eb), RD_OK);
    assert_int_equal(info.dim, TOK_DIM);
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.mode = RD_TOKEN_READ_ONLY;
    oo.expect_dim = TOK_DIM;
    rd_token_store *s = NULL;
    assert_int_equal(rd_token_store_open(g_store, &oo, &s, &eb), RD_OK);
    rd_token_store_info_get(s, &info);
    assert_int_equal(info.n_shards, 2);

    // The 4 latest records of user 1002 strictly before t = 50: j = 0..3, oldest first.
    enum { L = 4 };
    float tok[L * TOK_DIM], lab[L];
    uint64_t items[L];
    uint32_t n_found = 0;
    rd_token_fetch_out out;
    memset(&out, 0, sizeof out);
    out.tokens = tok;
    out.labels = lab;
    out.items = items;
    out.n_found = &n_found;
    assert_int_equal(rd_token_store_fetch(s, 1002, 50, L, &out, &eb), RD_OK);
    assert_int_equal(n_found, 4);
    for (int j = 0; j < 4; j++) {
        assert_float_equal(tok[j * TOK_DIM + 1], (float)j, 0.0f);
        assert_float_equal(tok[j * TOK_DIM + 2], 2.0f + (float)j, 0.0f);
        assert_int_equal(items[j], 100 + (uint64_t)j);
    }
    // What a scorer then does with them: the latest 2 whose item is 101 (one: j = 1), and the
    // summaries of the latest tokens.
    uint32_t pick[L];
    assert_int_equal(rd_token_pick(items, n_found, 101, L, pick), 1);
    assert_int_equal(pick[0], 1);
    const int windows[] = {2, 4};
    uint8_t lab8[L] = {1, 0, 1, 0}; // most recent first: j = 3, 2, 1, 0
    float summ[1 + 2];
    assert_int_equal(rd_token_summary_width(2, 0), 3);
    assert_int_equal(rd_token_summary(windows, 2, n_found, lab8, NULL, 0, summ, &eb), RD_OK);
    assert_float_equal(summ[1], 0.5f, 1e-6f);
    assert_float_equal(summ[2], 0.5f, 1e-6f);

    rd_token_stats total;
    assert_int_equal(rd_token_store_stats(s, &total, NULL, &eb), RD_OK);
    assert_int_equal(total.entries, N_USERS * PER_USER);
    assert_int_equal(total.users, N_USERS);
    uint64_t checked = 0, visited = 0;
    assert_int_equal(rd_token_store_verify(s, &checked, &eb), RD_OK);
    assert_int_equal(checked, N_USERS * PER_USER);
    assert_int_equal(rd_token_store_iterate(s, -1, count_visit, &visited, &eb), RD_OK);
    assert_int_equal(visited, N_USERS * PER_USER);
    // A read-only handle refuses to write, with a status.
    rd_errbuf_clear(&eb);
    uint64_t deleted = 0;
    assert_int_equal(rd_token_store_gc(s, 100, &deleted, &eb), RD_ERR_ARG);
    rd_token_store_destroy(s);
}

// A tool's mistakes with the token store API.
static void test_token_store_arguments(void **state) {
    (void)state;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store_info info;
    assert_int_equal(rd_token_store_read_manifest(NULL, &info, &eb), RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_read_manifest(g_store, NULL, &eb), RD_ERR_ARG);
    rd_token_store *s = (rd_token_store *)&eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_open(NULL, NULL, &s, &eb), RD_ERR_ARG);
    assert_null(s);
    memset(&info, 0xff, sizeof info);
    rd_token_store_info_get(NULL, &info);
    assert_int_equal(info.dim, 0);
    assert_int_equal(rd_token_store_has_shard(NULL, 0), 0);
    rd_token_stats total;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_stats(NULL, &total, NULL, &eb), RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_verify(NULL, NULL, &eb), RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_iterate(NULL, -1, count_visit, NULL, &eb), RD_ERR_ARG);
    rd_token_store_destroy(NULL);
}

// The distillation target log, read as a replaying tool reads it, and its mistakes.
static void test_target_log(void **state) {
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/targets", g_root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_log_opts o;
    memset(&o, 0, sizeof o);
    o.no_sync = 1;
    rd_target_log *w = NULL;
    assert_int_equal(rd_target_log_create(path, &o, &w, &eb), RD_OK);
    const uint64_t job = rd_target_job_key("teacher");
    const uint64_t samples[3] = {4, 5, 9};
    const float logits[3] = {0.5f, -1.0f, 2.0f};
    rd_target_batch b = {3, job, 0, samples, logits, NULL, NULL};
    assert_int_equal(rd_target_log_append(w, &b, &eb), RD_OK);
    rd_target_log_close(w);

    rd_target_log *r = NULL;
    assert_int_equal(rd_target_log_open(path, 0, NULL, &r, &eb), RD_OK);
    uint64_t n = 0;
    assert_int_equal(rd_target_log_count(r, &n, &eb), RD_OK);
    assert_int_equal(n, 3);
    uint64_t got_s[4];
    float got_l[4];
    rd_target_out out = {got_s, got_l, NULL, NULL, NULL};
    size_t n_out = 0;
    assert_int_equal(rd_target_log_read_range(r, job, 5, 10, -1, &out, 4, &n_out, &eb), RD_OK);
    assert_int_equal(n_out, 2);
    assert_int_equal(got_s[0], 5);
    assert_float_equal(got_l[1], 2.0f, 0.0f);
    float logit = 0;
    assert_int_equal(rd_target_log_get(r, job, 4, 0, &logit, NULL, NULL, &eb), RD_OK);
    assert_float_equal(logit, 0.5f, 0.0f);

    // Each NULL is the caller's error, named; the handle stays usable.
    rd_target_log *h = (rd_target_log *)&eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_open(path, 0, NULL, NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_target_log_open: invalid argument: out != NULL"));
    assert_int_equal(rd_target_log_open(NULL, 0, NULL, &h, NULL), RD_ERR_ARG);
    assert_null(h);
    assert_int_equal(rd_target_log_create(path, &o, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_open_or_create(path, &o, NULL, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_lock(path, "test", NULL, NULL), RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_count(NULL, &n, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_target_log_count: invalid argument: log != NULL"));
    assert_int_equal(rd_target_log_count(r, NULL, NULL), RD_ERR_ARG);
    n_out = 7;
    assert_int_equal(rd_target_log_read_range(NULL, job, 0, 10, -1, &out, 4, &n_out, NULL),
                     RD_ERR_ARG);
    assert_int_equal(n_out, 0);
    assert_int_equal(rd_target_log_read_range(r, job, 0, 10, -1, NULL, 4, &n_out, NULL),
                     RD_ERR_ARG);
    assert_int_equal(rd_target_log_read_range(r, job, 0, 10, -1, &out, 4, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_get(NULL, job, 4, 0, &logit, NULL, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_append(NULL, &b, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_append(r, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_drop_job(NULL, job, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_sync(NULL, NULL), RD_ERR_ARG);
    rd_target_job_info ji;
    memset(&ji, 0, sizeof ji);
    assert_int_equal(rd_target_log_get_job(NULL, job, &ji, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_get_job(r, job, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_put_job(NULL, job, &ji, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_put_job(r, job, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_log_count(r, &n, &eb), RD_OK);
    assert_int_equal(n, 3);
    rd_target_log_close(r);
}

// The token store's tool helpers (rd/tokentool.h), and their mistakes.
static void test_tokentool(void **state) {
    (void)state;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    rd_token_store *s = NULL;
    assert_int_equal(rd_token_store_open(g_store, &oo, &s, &eb), RD_OK);
    char path[400];
    snprintf(path, sizeof path, "%s/users.tsv", g_root);
    FILE *f = fopen(path, "w+");
    assert_non_null(f);
    uint64_t listed = 0;
    int more = -1;
    assert_int_equal(rd_tokentool_print_users(s, 2, f, &listed, &more, &eb), RD_OK);
    assert_int_equal(listed, 2);
    assert_int_equal(more, 1);
    uint32_t nf = 9;
    assert_int_equal(rd_tokentool_print_fetch(s, 1001, 35, NULL, 8, f, &nf, &eb), RD_OK);
    assert_int_equal(nf, 3);

    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tokentool_print_users(NULL, 2, f, NULL, NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_tokentool_print_users: invalid argument: s != NULL"));
    assert_int_equal(rd_tokentool_print_users(s, 2, NULL, NULL, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_tokentool_print_users(s, 0, f, NULL, NULL, NULL), RD_ERR_ARG);
    nf = 9;
    assert_int_equal(rd_tokentool_print_fetch(s, 1001, 35, NULL, 8, NULL, &nf, NULL), RD_ERR_ARG);
    assert_int_equal(nf, 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tokentool_print_fetch(s, 1001, 35, NULL, SIZE_MAX, f, NULL, &eb),
                     RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_tokentool_print_fetch: invalid argument: L >= 1"));
    assert_int_equal(rd_tokentool_print_fetch(NULL, 1001, 35, NULL, 8, f, NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_tokentool_compact(g_store, NULL, NULL), RD_ERR_ARG);
    fclose(f);
    rd_token_store_destroy(s);
}

// A dataset folder opened by a tool: its mistakes are errors, not a crash.
static void test_dataset_arguments(void **state) {
    (void)state;
    rd_errbuf eb;
    rd_dataset *ds = (rd_dataset *)&eb;
    assert_int_equal(rd_dataset_open(NULL, 0, &ds, &eb), RD_ERR_ARG);
    assert_null(ds);
    assert_non_null(strstr(eb.msg, "rd_dataset_open: invalid argument: dir != NULL"));
    assert_int_equal(rd_dataset_open(g_root, 0, NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_dataset_open: invalid argument: out != NULL"));
    // A folder without a dataset is an I/O error naming the file.
    assert_int_equal(rd_dataset_open(g_root, 0, &ds, &eb), RD_ERR_IO);
    assert_null(ds);
    assert_non_null(strstr(eb.msg, "events.bin"));
    assert_null(rd_dataset_get_info(NULL));
    assert_null(rd_dataset_fields(NULL));
    assert_null(rd_dataset_find_field(NULL, "user"));
    rd_dataset_close(NULL);
    rd_dataset_ids *ids = NULL;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_dataset_ids_load(g_root, NULL, &eb), RD_ERR_ARG);
    assert_int_equal(rd_dataset_ids_load(NULL, &ids, &eb), RD_ERR_ARG);
    assert_null(ids);
    double v = 0;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_dataset_missing_mean(g_root, NULL, &v, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_dataset_missing_mean: invalid argument: field != NULL"));
    assert_int_equal(rd_dataset_missing_mean(g_root, "x", NULL, NULL), RD_ERR_ARG);
    assert_int_equal(rd_dataset_missing_mean(NULL, "x", &v, NULL), RD_ERR_ARG);
    assert_int_equal(rd_dataset_check_config(g_root, NULL, 1, NULL), RD_ERR_ARG);
}

// The serving API as a server embeds it: a NULL bundle path, scorer or export argument is an
// error it can log, never a crash of the server.
static void test_serve_arguments(void **state) {
    (void)state;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_serve *sv = (rd_serve *)&eb;
    assert_int_equal(rd_serve_open(NULL, 1, &sv, &eb), RD_ERR_ARG);
    assert_null(sv);
    rd_serve_info info;
    memset(&info, 0xff, sizeof info);
    rd_serve_get_info(NULL, &info);
    assert_int_equal(info.keys_per_candidate, 0);
    assert_int_equal(rd_serve_score(NULL, NULL, NULL, NULL, &eb), RD_ERR_ARG);
    rd_serve_close(NULL);
    // rd_serve_export checks its arguments before it reads anything, so a zeroed config serves.
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    char out[400];
    snprintf(out, sizeof out, "%s/bundle.rdsv", g_root);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_serve_export(NULL, "student", g_ckpt, NULL, out, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_serve_export: invalid argument: cfg != NULL"));
    assert_int_equal(rd_serve_export(cfg, NULL, g_ckpt, NULL, out, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_serve_export: invalid argument: job != NULL"));
    assert_int_equal(rd_serve_export(cfg, "student", NULL, NULL, out, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_serve_export: invalid argument: ckpt_dir != NULL"));
    assert_int_equal(rd_serve_export(cfg, "student", g_ckpt, NULL, NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "rd_serve_export: invalid argument: out != NULL"));
    rd_free(cfg);
}

// ---------------------------------------------------------------------------------------------
// The request buffers of rd_serve_open: out of memory is RD_ERR_NOMEM, not an abort

static size_t g_alloc_limit; // allocations of this many bytes or more fail (0: none)
static size_t g_alloc_refused;

static void *limited_malloc(size_t n) {
    if (g_alloc_limit && n >= g_alloc_limit) {
        g_alloc_refused++;
        return NULL;
    }
    return malloc(n);
}

static void *limited_realloc(void *p, size_t n) {
    if (g_alloc_limit && n >= g_alloc_limit) {
        g_alloc_refused++;
        return NULL;
    }
    return realloc(p, n);
}

// The committed bundle tests/fuzz/corpus/serve/tiny with every feature 64 keys wide (a
// multi-valued field of max_len 64), resealed: its model is small, but each table's request
// buffers hold (max_candidates x 64 keys per feature) keys and their rows. With n_features > 0
// the feature list claims that many (the model's config still has its own: only the checks
// made before the model is built see the claim).
static void write_wide_bundle(const char *out, uint32_t n_features) {
    const char *src = getenv("RD_SOURCE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/serve/tiny", src ? src : ".");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(len > 200 && len < sizeof buf);
    uint32_t mcs, tcs, nt, nf, crc;
    memcpy(&mcs, buf + 12, 4);
    memcpy(&tcs, buf + 16, 4);
    memcpy(&nt, buf + 20, 4);
    // magic, version, 3 sizes | hash, step, seed, created | job, model | configs | n_features
    size_t off = 24 + 32 + 2 * RD_NAME_MAX + mcs + (size_t)nt * tcs;
    assert_true(off + 4 < len);
    memcpy(&nf, buf + off, 4);
    assert_true(nf >= 1 && off + 4 + 4 * (size_t)nf < len);
    if (n_features > nf) { // room for the widths of the features claimed
        size_t grow = 4 * (size_t)(n_features - nf), at = off + 4 + 4 * (size_t)nf;
        assert_true(len + grow <= sizeof buf);
        memmove(buf + at + grow, buf + at, len - at);
        len += grow;
        nf = n_features;
        memcpy(buf + off, &nf, 4);
    }
    for (uint32_t k = 0; k < nf; k++) {
        uint32_t w = 64;
        memcpy(buf + off + 4 + 4 * k, &w, 4);
    }
    crc = rd_crc32c(0, buf, len - 4);
    memcpy(buf + len - 4, &crc, 4);
    f = fopen(out, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

// A server opening a bundle at a max_candidates whose request buffers do not fit gets
// RD_ERR_NOMEM naming max_candidates, as it does for the model's activations: the buffers were
// rd_xmalloc'ed, and the failed allocation aborted the serving process ("FATAL: out of memory")
// with a line on its stderr.
static void test_serve_open_nomem(void **state) {
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/wide.rdsv", g_root);
    write_wide_bundle(path, 0);
    rd_errbuf eb;
    rd_serve *sv = NULL;
    assert_int_equal(rd_serve_open(path, 16, &sv, &eb), RD_OK); // the bundle is sound
    rd_serve_close(sv);
    // At 65536 candidates the model's activations take about 14 MB, the keys of one table's
    // request 64 MB: allocations from 32 MB fail.
    rd_allocator a = {limited_malloc, limited_realloc, free};
    rd_alloc_set(&a);
    g_alloc_limit = (size_t)32 << 20;
    g_alloc_refused = 0;
    sv = (rd_serve *)&eb;
    int rc = rd_serve_open(path, 65536, &sv, &eb);
    g_alloc_limit = 0;
    rd_alloc_set(NULL);
    assert_int_equal(rc, RD_ERR_NOMEM);
    assert_null(sv);
    assert_true(g_alloc_refused > 0);
    assert_non_null(strstr(eb.msg, "out of memory for the request buffers of 65536 candidates"));
    assert_non_null(strstr(eb.msg, "lower max_candidates"));
    assert_int_equal(remove(path), 0);
}

// A request's key slots are numbered by int32: a bundle of 32 features of 64 keys (2048 keys a
// candidate, the most a config can express) at 2^20 candidates would number 2^31 of them and
// more. rd_serve_open refuses that max_candidates, naming the limit, before it sizes anything
// from it: without the check the open went on to build the model for 2^20 candidates (here
// refused as out of memory by the allocator's limit; on a large node, the scorer's last
// positions wrapped negative: a history key read as padding, a candidate's key as "row
// -2147483648").
static void test_serve_open_int32_keys(void **state) {
    (void)state;
    char tiny[400], path[400];
    const char *src = getenv("RD_SOURCE_DIR");
    snprintf(tiny, sizeof tiny, "%s/tests/fuzz/corpus/serve/tiny", src ? src : ".");
    snprintf(path, sizeof path, "%s/keys2048.rdsv", g_root);
    rd_errbuf eb;
    rd_serve *sv = NULL;
    assert_int_equal(rd_serve_open(tiny, 1, &sv, &eb), RD_OK);
    rd_serve_info info;
    rd_serve_get_info(sv, &info);
    rd_serve_close(sv);
    write_wide_bundle(path, 32);
    // Nothing large may be allocated on the way to the refusal; just below the limit the open
    // passes the check (and then fails on the bundle's false claim, or out of memory).
    size_t most = ((size_t)INT32_MAX - info.hist_len) / 2048; // the largest max_candidates
    const size_t tries[3] = {(size_t)1 << 20, most + 1, most};
    int rc[3];
    char msg[3][RD_ERR_MSG_MAX];
    size_t refused[3];
    rd_allocator a = {limited_malloc, limited_realloc, free};
    rd_alloc_set(&a);
    g_alloc_limit = (size_t)32 << 20;
    for (int i = 0; i < 3; i++) {
        g_alloc_refused = 0;
        sv = (rd_serve *)&eb;
        rc[i] = rd_serve_open(path, tries[i], &sv, &eb);
        refused[i] = g_alloc_refused;
        snprintf(msg[i], sizeof msg[i], "%s", eb.msg);
        rd_serve_close(sv);
    }
    g_alloc_limit = 0;
    rd_alloc_set(NULL);
    print_message("%s\n", msg[0]);
    char want[160];
    snprintf(want, sizeof want, "max_candidates 1048576 x 2048 keys a candidate + %zu history keys",
             info.hist_len);
    assert_non_null(strstr(msg[0], want));
    assert_non_null(strstr(msg[0], "more than the 2^31 - 1 its int32 key indices hold"));
    snprintf(want, sizeof want, "at most %zu candidates with this bundle", most);
    assert_non_null(strstr(msg[0], want));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rc[i], RD_ERR_ARG);
        assert_int_equal(refused[i], 0);
    }
    assert_int_not_equal(rc[2], RD_OK);
    assert_int_not_equal(rc[2], RD_ERR_ARG);
    assert_null(strstr(msg[2], "int32"));
    assert_int_equal(remove(path), 0);
}

// A bundle of a model that embeds 32 features (the most a model has), each a multi-valued field
// of max_len 64 (the most a field keeps): 2048 keys a candidate and no history, which
// rd_serve_open takes at a small max_candidates. Exported as `recdistill export` does
// (rd_serve_export of a one-shard checkpoint whose table of dim 16 holds `rows` rows, of keys no
// request uses, and whose dense parameters are the initial ones) from a CSV log of 60 events.
static void write_keys2048_bundle(const char *dir, size_t rows, char *bundle, size_t cap) {
    assert_int_equal(mkdir(dir, 0777), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "ts,uid,iid,clicked");
    for (int k = 0; k < RD_MAX_FEATURES; k++)
        fprintf(f, ",f%d", k);
    fputc('\n', f);
    for (int e = 0; e < 60; e++) {
        fprintf(f, "%d,%d,%d,%d", 1000 + 60 * e, e % 7, e % 11, e % 3 == 0);
        for (int k = 0; k < RD_MAX_FEATURES; k++)
            fprintf(f, ",v%d|w%d", (e + k) % 5, k);
        fputc('\n', f);
    }
    assert_int_equal(fclose(f), 0);
    char yaml[8192];
    int len = snprintf(yaml, sizeof yaml,
                       "run: {name: k2048, seed: 7, out_dir: %s/run}\n"
                       "cluster:\n  ps_ranks: 1\n  jobs:\n"
                       "    - {name: student, role: student, model: wide}\n"
                       "data:\n  source: csv\n  input: %s\n  dir: %s/data\n"
                       "  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 1}\n"
                       "  schema:\n    path: log.csv\n    delimiter: \",\"\n    header: true\n"
                       "    user_column: uid\n    item_column: iid\n    time_column: ts\n"
                       "    time_format: unix\n    label: \"clicked >= 1\"\n    fields:\n",
                       dir, dir, dir);
    assert_true(len > 0 && (size_t)len < sizeof yaml);
    for (int k = 0; k < RD_MAX_FEATURES; k++) {
        int n = snprintf(yaml + len, sizeof yaml - (size_t)len,
                         "      - {name: f%d, kind: multi, max_len: 64}\n", k);
        assert_true(n > 0 && (size_t)n < sizeof yaml - (size_t)len);
        len += n;
    }
    int n = snprintf(yaml + len, sizeof yaml - (size_t)len,
                     "ps:\n  tables:\n    - {name: t, dim: 16}\n"
                     "models:\n  - name: wide\n    mlp: [4]\n    features:\n");
    assert_true(n > 0 && (size_t)n < sizeof yaml - (size_t)len);
    len += n;
    for (int k = 0; k < RD_MAX_FEATURES; k++) {
        n = snprintf(yaml + len, sizeof yaml - (size_t)len, "      - {field: f%d, table: t}\n", k);
        assert_true(n > 0 && (size_t)n < sizeof yaml - (size_t)len);
        len += n;
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    if (rd_config_parse_string(yaml, (size_t)len, "k2048", cfg, &eb) != RD_OK)
        fail_msg("config: %s", eb.msg);
    assert_int_equal(rd_dataset_prepare(&cfg->data, cfg->run.seed, &eb), RD_OK);
    rd_dataset *ds = NULL;
    assert_int_equal(rd_dataset_open(cfg->data.dir, 0, &ds, &eb), RD_OK);
    const rd_dataset_info *di = rd_dataset_get_info(ds);
    char ck[600];
    snprintf(ck, sizeof ck, "%s/ckpt", dir);
    rd_table *tab = NULL;
    assert_int_equal(rd_table_create(&cfg->ps.tables[0], 0, cfg->run.seed, &tab, &eb), RD_OK);
    const uint64_t salt = rd_table_salt(&cfg->ps.tables[0]);
    for (size_t r = 0; r < rows; r++) {
        uint64_t key = rd_table_key(salt, rd_feature_key_u64("row", (uint64_t)r));
        assert_int_equal(rd_table_touch(tab, &key, 1, 0), RD_OK);
    }
    rd_ckpt_shard_info info;
    assert_int_equal(rd_ckpt_write_shard(ck, 0, 1, 1, cfg->run.seed, &tab, 1, &info, &eb), RD_OK);
    rd_table_destroy(tab);
    rd_ckpt_manifest *m = rd_xcalloc(1, sizeof *m);
    m->version = RD_CKPT_VERSION;
    m->n_shards = 1;
    m->step = 1;
    m->seed = cfg->run.seed;
    m->n_tables = 1;
    snprintf(m->tables[0].name, RD_NAME_MAX, "t");
    m->tables[0].dim = (uint32_t)cfg->ps.tables[0].dim;
    m->tables[0].optim = (uint32_t)cfg->ps.tables[0].optim.kind;
    m->tables[0].slots = (uint32_t)rd_optim_slots(cfg->ps.tables[0].optim.kind);
    m->tables[0].rows = info.rows[0];
    m->shard_rows[0] = info.rows[0];
    m->shard_crc[0] = info.crc;
    assert_int_equal(rd_ckpt_write_manifest(ck, m, &eb), RD_OK);
    rd_free(m);
    rd_dense_optim opt;
    assert_int_equal(rd_dense_optim_init(&opt, &cfg->train, &eb), RD_OK);
    rd_model_opts mo = {.tables = cfg->ps.tables,
                        .n_tables = cfg->ps.n_tables,
                        .max_batch = 1,
                        .n_numeric = rd_dataset_n_inputs(di),
                        .opt_slots = rd_dense_optim_slots(opt.kind),
                        .seed = 11,
                        .quiet = 1};
    rd_model *model = NULL;
    assert_int_equal(rd_model_create(&cfg->models[0], &mo, &model, &eb), RD_OK);
    rd_train_pos pos;
    memset(&pos, 0, sizeof pos);
    pos.step = 1;
    rd_train_ckpt_ident(cfg, NULL, &cfg->models[0], di, 1, &pos);
    snprintf(pos.job, sizeof pos.job, "student");
    snprintf(pos.model, sizeof pos.model, "wide");
    assert_int_equal(rd_train_ckpt_write_dense(ck, &pos, model, &opt, &eb), RD_OK);
    rd_model_destroy(model);
    rd_dataset_close(ds);
    snprintf(bundle, cap, "%s/wide.rdsv", dir);
    if (rd_serve_export(cfg, "student", ck, NULL, bundle, &eb) != RD_OK)
        fail_msg("export: %s", eb.msg);
    rd_free(cfg);
}

// rd_serve_clone sizes a scorer for its own max_candidates, which may be larger than the
// opened one's, so it checks the int32 key slots as rd_serve_open does: a bundle of 2048 keys a
// candidate, opened at 16 candidates, cloned at 2^20 (and at one more than the most it takes)
// is refused naming the limit, before anything is sized from max_candidates; at the most it
// takes the check passes (and the clone fails on the allocator's limit, not on the check).
// Without the check in rd_serve_clone the clone went on to size the scorer for 2^31 key slots
// (refused here as out of memory by the allocator's limit; on a large node, positions wrapped
// negative, as test_serve_open_int32_keys describes).
static void test_serve_clone_int32_keys(void **state) {
    (void)state;
    char dir[400], bundle[500];
    snprintf(dir, sizeof dir, "%s/k2048", g_root);
    write_keys2048_bundle(dir, 0, bundle, sizeof bundle);
    rd_errbuf eb;
    rd_serve *sv = NULL;
    if (rd_serve_open(bundle, 16, &sv, &eb) != RD_OK)
        fail_msg("open: %s", eb.msg);
    rd_serve_info info;
    rd_serve_get_info(sv, &info);
    assert_int_equal(info.keys_per_candidate, 2048);
    assert_int_equal(info.hist_len, 0);
    const size_t most = (size_t)INT32_MAX / 2048; // 2^20 - 1
    const size_t tries[4] = {(size_t)1 << 20, most + 1, most, 32};
    int rc[4];
    char msg[4][RD_ERR_MSG_MAX];
    size_t refused[4];
    rd_allocator a = {limited_malloc, limited_realloc, free};
    rd_alloc_set(&a);
    g_alloc_limit = (size_t)32 << 20;
    for (int i = 0; i < 4; i++) {
        g_alloc_refused = 0;
        rd_serve *c = (rd_serve *)&eb;
        rc[i] = rd_serve_clone(sv, tries[i], &c, &eb);
        refused[i] = g_alloc_refused;
        snprintf(msg[i], sizeof msg[i], "%s", eb.msg);
        if (rc[i] != RD_OK)
            assert_null(c);
        rd_serve_close(c);
    }
    g_alloc_limit = 0;
    rd_alloc_set(NULL);
    print_message("%s\n", msg[0]);
    assert_non_null(
        strstr(msg[0], "max_candidates 1048576 x 2048 keys a candidate + 0 history keys"));
    assert_non_null(strstr(msg[0], "more than the 2^31 - 1 its int32 key indices hold"));
    char want[160];
    snprintf(want, sizeof want, "at most %zu candidates with this bundle", most);
    assert_non_null(strstr(msg[0], want));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rc[i], RD_ERR_ARG);
        assert_int_equal(refused[i], 0);
    }
    assert_int_equal(rc[2], RD_ERR_NOMEM);
    assert_null(strstr(msg[2], "int32"));
    assert_int_equal(rc[3], RD_OK); // a clone of its own size is made as before
    rd_serve_close(sv);
}

// rd_serve_open read the whole bundle into memory and parsed the rows into the tables from that
// copy: at its peak it held the file and the tables at once, about twice the rows. It reads the
// file in chunks now: a bundle of 40,000 rows of dim 16 (2.9 MB), opened at one candidate (small
// buffers), peaks at what the open leaves held plus the last index growth's old index (at most
// 1 MB here) and a chunk; before, at least 2.9 MB above it.
static void test_serve_open_peak(void **state) {
    (void)state;
    char dir[400], bundle[500];
    snprintf(dir, sizeof dir, "%s/rows40k", g_root);
    write_keys2048_bundle(dir, 40000, bundle, sizeof bundle);
    struct stat st;
    assert_int_equal(stat(bundle, &st), 0);
    assert_true(st.st_size > 40000 * 72);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_serve *sv = NULL;
    count_alloc_begin(); // the most bytes the library held at once (count_alloc.h)
    int rc = rd_serve_open(bundle, 1, &sv, &eb);
    count_alloc_end();
    const long long held = g_count_held, peak = g_count_peak;
    if (rc != RD_OK)
        fail_msg("open: %s", eb.msg);
    rd_serve_info info;
    rd_serve_get_info(sv, &info);
    assert_int_equal(info.rows, 40000);
    rd_serve_close(sv);
    print_message("bundle %lld bytes: open holds %lld, peak %lld (+%lld)\n", (long long)st.st_size,
                  held, peak, peak - held);
    assert_true(held > (long long)st.st_size); // the rows, in the tables
    assert_true(peak - held < (long long)st.st_size / 2);
}

// ---------------------------------------------------------------------------------------------
// Several serving threads, each with its own rd_serve (rd/serve.h: "opening bundles from several
// threads at once is safe"; one rd_serve per serving thread)

enum { SV_THREADS = 4, SV_REQUESTS = 300, SV_MAX = 8 };

typedef struct sv_thread {
    const char *path;
    const rd_serve *base;   // clone it (rd_serve_clone) rather than open path
    pthread_barrier_t *bar; // with base: passed once the clone is made
    float logits[SV_REQUESTS * SV_MAX];
    int rc;
    char msg[RD_ERR_MSG_MAX];
} sv_thread;

// Request r: 1..SV_MAX candidates with keys and numeric inputs derived from r (some keys 0,
// some never trained), the same in every thread.
static int score_requests(sv_thread *t) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_serve *sv = NULL;
    int rc =
        t->base ? rd_serve_clone(t->base, 0, &sv, &eb) : rd_serve_open(t->path, SV_MAX, &sv, &eb);
    if (t->bar)
        pthread_barrier_wait(t->bar);
    rd_serve_info in;
    rd_serve_get_info(sv, &in);
    uint64_t keys[SV_MAX * 16];
    float num[SV_MAX * 8];
    for (int r = 0; r < SV_REQUESTS && rc == RD_OK; r++) {
        size_t n = 1 + (size_t)r % SV_MAX;
        if (in.keys_per_candidate > 16 || in.n_numeric > 8 || in.hist_len || in.tok_length) {
            rc = rd_err_set(&eb, RD_ERR_RANGE, "fixture bundle of another shape");
            break;
        }
        for (size_t k = 0; k < n * in.keys_per_candidate; k++)
            keys[k] = (uint64_t)(r * 31 + (int)k) % 7 == 0 ? 0 : 1 + (uint64_t)(r * 131 + (int)k);
        for (size_t k = 0; k < n * in.n_numeric; k++)
            num[k] = (float)((r + (int)k) % 9) * 0.25f - 1.0f;
        rd_serve_request rq = {.n = n, .keys = keys, .numeric = in.n_numeric ? num : NULL};
        rc = rd_serve_score(sv, &rq, NULL, t->logits + (size_t)r * SV_MAX, &eb);
    }
    rd_serve_close(sv);
    t->rc = rc;
    snprintf(t->msg, sizeof t->msg, "%s", eb.msg);
    return rc;
}

static void *score_thread(void *arg) {
    score_requests(arg);
    return NULL;
}

static void test_serve_threads(void **state) {
    (void)state;
    const char *src = getenv("RD_SOURCE_DIR");
    static const char *const bundles[] = {"tiny", "tiny-v1", "tiny-v5"};
    for (size_t b = 0; b < sizeof bundles / sizeof bundles[0]; b++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/serve/%s", src ? src : ".", bundles[b]);
        sv_thread *ref = rd_xcalloc(1, sizeof *ref), *t = rd_xcalloc(SV_THREADS, sizeof *t);
        ref->path = path;
        if (score_requests(ref) != RD_OK)
            fail_msg("%s: %s", path, ref->msg);
        pthread_t th[SV_THREADS];
        for (int i = 0; i < SV_THREADS; i++) {
            t[i].path = path;
            assert_int_equal(pthread_create(&th[i], NULL, score_thread, &t[i]), 0);
        }
        for (int i = 0; i < SV_THREADS; i++) {
            assert_int_equal(pthread_join(th[i], NULL), 0);
            if (t[i].rc != RD_OK)
                fail_msg("%s, thread %d: %s", path, i, t[i].msg);
            for (int r = 0; r < SV_REQUESTS; r++)
                assert_memory_equal(t[i].logits + (size_t)r * SV_MAX,
                                    ref->logits + (size_t)r * SV_MAX,
                                    (1 + (size_t)r % SV_MAX) * sizeof(float));
        }
        rd_free(t);
        rd_free(ref);
    }
}

// Serving threads that share one open bundle (rd_serve_clone): each clones the scorer the main
// thread opened, all at once, and they score concurrently on the shared rows and parameters.
// Every logit equals the one-thread logit bit for bit (a thread writing the shared part, or
// reading another's buffers, would change some). The scorer they were cloned from is closed
// while they score: the bundle stays until the last clone closes.
static void test_serve_clone_threads(void **state) {
    (void)state;
    const char *src = getenv("RD_SOURCE_DIR");
    static const char *const bundles[] = {"tiny", "tiny-v1", "tiny-v5"};
    for (size_t b = 0; b < sizeof bundles / sizeof bundles[0]; b++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/serve/%s", src ? src : ".", bundles[b]);
        sv_thread *ref = rd_xcalloc(1, sizeof *ref), *t = rd_xcalloc(SV_THREADS, sizeof *t);
        ref->path = path;
        if (score_requests(ref) != RD_OK)
            fail_msg("%s: %s", path, ref->msg);
        rd_errbuf eb;
        rd_serve *base = NULL;
        if (rd_serve_open(path, SV_MAX, &base, &eb) != RD_OK)
            fail_msg("%s: %s", path, eb.msg);
        // A clone scores as the base's own opener does (single thread, first).
        sv_thread *own = rd_xcalloc(1, sizeof *own);
        own->base = base;
        assert_int_equal(score_requests(own), RD_OK);
        // One clone of a larger max_candidates, made before the threads start; the argument
        // errors.
        rd_serve *wide = NULL;
        assert_int_equal(rd_serve_clone(base, 4 * SV_MAX, &wide, &eb), RD_OK);
        rd_serve *bad = (rd_serve *)&eb;
        assert_int_equal(rd_serve_clone(base, ((size_t)1 << 20) + 1, &bad, &eb), RD_ERR_ARG);
        assert_null(bad);
        assert_int_equal(rd_serve_clone(NULL, 1, &bad, &eb), RD_ERR_ARG);
        assert_int_equal(rd_serve_clone(base, 1, NULL, &eb), RD_ERR_ARG);
        rd_serve_info in;
        rd_serve_get_info(base, &in);
        pthread_barrier_t bar;
        assert_int_equal(pthread_barrier_init(&bar, NULL, SV_THREADS + 1), 0);
        pthread_t th[SV_THREADS];
        for (int i = 0; i < SV_THREADS; i++) {
            t[i].base = base;
            t[i].bar = &bar;
            assert_int_equal(pthread_create(&th[i], NULL, score_thread, &t[i]), 0);
        }
        // The base scores while the threads clone it (a clone reads only what scoring never
        // writes): its logits are the reference's.
        {
            uint64_t k1[16];
            float n1[8], z1 = 0;
            assert_true(in.keys_per_candidate <= 16 && in.n_numeric <= 8);
            for (size_t k = 0; k < in.keys_per_candidate; k++)
                k1[k] = k % 7 == 0 ? 0 : 1 + (uint64_t)k; // request 0 of score_requests
            for (size_t k = 0; k < in.n_numeric; k++)
                n1[k] = (float)((int)k % 9) * 0.25f - 1.0f;
            rd_serve_request r1 = {.n = 1, .keys = k1, .numeric = in.n_numeric ? n1 : NULL};
            for (int i = 0; i < 50; i++) {
                assert_int_equal(rd_serve_score(base, &r1, NULL, &z1, &eb), RD_OK);
                assert_memory_equal(&z1, ref->logits, sizeof z1);
            }
        }
        // Every thread has cloned the base (which must outlive the calls that read it): close
        // it while they score.
        pthread_barrier_wait(&bar);
        rd_serve_close(base);
        for (int i = 0; i < SV_THREADS; i++) {
            assert_int_equal(pthread_join(th[i], NULL), 0);
            if (t[i].rc != RD_OK)
                fail_msg("%s, clone thread %d: %s", path, i, t[i].msg);
            for (int r = 0; r < SV_REQUESTS; r++)
                assert_memory_equal(t[i].logits + (size_t)r * SV_MAX,
                                    ref->logits + (size_t)r * SV_MAX,
                                    (1 + (size_t)r % SV_MAX) * sizeof(float));
        }
        pthread_barrier_destroy(&bar);
        for (int r = 0; r < SV_REQUESTS; r++)
            assert_memory_equal(own->logits + (size_t)r * SV_MAX, ref->logits + (size_t)r * SV_MAX,
                                (1 + (size_t)r % SV_MAX) * sizeof(float));
        // The last scorer of the bundle: 4 * SV_MAX candidates at once, not one more.
        uint64_t keys[4 * SV_MAX * 16];
        float num[4 * SV_MAX * 8], lg[4 * SV_MAX];
        assert_true(in.keys_per_candidate <= 16 && in.n_numeric <= 8);
        for (size_t k = 0; k < 4 * SV_MAX * in.keys_per_candidate; k++)
            keys[k] = 1 + k;
        for (size_t k = 0; k < 4 * SV_MAX * in.n_numeric; k++)
            num[k] = 0.5f;
        rd_serve_request rq = {.n = 4 * SV_MAX, .keys = keys, .numeric = in.n_numeric ? num : NULL};
        assert_int_equal(rd_serve_score(wide, &rq, NULL, lg, &eb), RD_OK);
        for (size_t k = 0; k < 4 * SV_MAX; k++)
            assert_true(lg[k] == lg[k] && lg[k] - lg[k] == 0.0f); // finite
        rq.n = 4 * SV_MAX + 1;
        assert_int_equal(rd_serve_score(wide, &rq, NULL, lg, &eb), RD_ERR_ARG);
        rd_serve_close(wide);
        rd_free(own);
        rd_free(t);
        rd_free(ref);
    }
}

// ---------------------------------------------------------------------------------------------
// A long-lived process opens and closes the same things many times (a server reloading its
// bundle and store, a tool run in a loop inside one program): each open/close cycle, and each
// refused open, must give back every descriptor and every mapping it took.

enum { CYCLES = 40 };

// Descriptors open in this process, less the one reading /proc/self/fd.
static int open_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

static char g_bundle[512];

// Mappings of this process of a file of the test's folder or of the bundle (the heap's own
// mappings come and go with malloc, and under valgrind with valgrind).
static int open_maps(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    int n = 0;
    char line[4096 + 256];
    while (fgets(line, sizeof line, f))
        n += strstr(line, g_root) != NULL || (g_bundle[0] && strstr(line, g_bundle) != NULL);
    fclose(f);
    return n;
}

static char g_dataset[400];
static char g_junk[400]; // a folder of plain files where each kind of input is expected
static char g_bad_store[300], g_bad_ckpt[300]; // shard 1 of each damaged, shard 0 sound

// Overwrite `dir`/data.mdb with 8 KiB of bytes that are no LMDB page.
static void damage_env(const char *dir) {
    char p[500];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (int i = 0; i < 8192; i++)
        fputc(0x5a, f);
    fclose(f);
}

static void cycle_store_read(void) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.mode = RD_TOKEN_READ_ONLY;
    rd_token_store *s = NULL;
    assert_int_equal(rd_token_store_open(g_store, &oo, &s, &eb), RD_OK);
    float tok[4 * TOK_DIM];
    uint32_t n_found = 0;
    rd_token_fetch_out out;
    memset(&out, 0, sizeof out);
    out.tokens = tok;
    out.n_found = &n_found;
    assert_int_equal(rd_token_store_fetch(s, 1002, 50, 4, &out, &eb), RD_OK);
    assert_int_equal(n_found, 4);
    rd_token_store_destroy(s);
}

static void cycle_store_write(void) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.mode = RD_TOKEN_WRITE;
    oo.no_sync = 1;
    rd_token_store *s = NULL;
    assert_int_equal(rd_token_store_open(g_store, &oo, &s, &eb), RD_OK);
    uint64_t user = 1000, id = 1;
    int64_t ts = 10;
    float tok[TOK_DIM] = {0, 0, 0}, lab = 0;
    uint64_t item = 100;
    rd_token_batch b;
    memset(&b, 0, sizeof b);
    b.n = 1;
    b.users = &user;
    b.ts = &ts;
    b.ids = &id;
    b.tokens = tok;
    b.labels = &lab;
    b.items = &item;
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK); // the same record again
    rd_token_store_destroy(s);
}

static void cycle_store_refused(void) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.mode = RD_TOKEN_READ_ONLY;
    oo.expect_dim = TOK_DIM + 1; // another dim: refused after the shards were opened
    rd_token_store *s = NULL;
    assert_int_not_equal(rd_token_store_open(g_store, &oo, &s, &eb), RD_OK);
    assert_null(s);
    oo.expect_dim = 0;
    assert_int_not_equal(rd_token_store_open(g_junk, &oo, &s, &eb), RD_OK);
    assert_null(s);
    rd_errbuf_clear(&eb);
    assert_int_not_equal(rd_token_store_open(g_bad_store, &oo, &s, &eb), RD_OK);
    assert_null(s);
    oo.mode = RD_TOKEN_WRITE;
    rd_errbuf_clear(&eb);
    assert_int_not_equal(rd_token_store_open(g_bad_store, &oo, &s, &eb), RD_OK);
    assert_null(s);
}

static void cycle_checkpoint(void) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_ckpt_manifest *m = rd_xcalloc(1, sizeof *m);
    assert_int_equal(rd_ckpt_read_manifest(g_ckpt, m, &eb), RD_OK);
    assert_int_equal(rd_ckpt_verify(g_ckpt, &eb), RD_OK);
    rd_ckpt_cursor *c = NULL;
    const size_t rf = DIM * (1 + m->tables[0].slots);
    assert_int_equal(rd_ckpt_cursor_open(g_ckpt, 1, 0, rf, 0, &m->shard_crc[1], &c, &eb), RD_OK);
    rd_ckpt_record r;
    assert_int_equal(rd_ckpt_cursor_next(c, &r, &eb), 1);
    rd_ckpt_cursor_close(c);
    rd_table_config tc = table_cfg();
    rd_table *t = NULL;
    assert_int_equal(rd_table_create(&tc, 0, m->seed, &t, &eb), RD_OK);
    assert_int_equal(rd_ckpt_load_table(g_ckpt, "emb", t, &eb), RD_OK);
    rd_table_destroy(t);
    rd_tabletool *tt = NULL;
    assert_int_equal(rd_tabletool_open(g_ckpt, &tt, &eb), RD_OK);
    rd_tabletool_close(tt);
    rd_free(m);
}

static void cycle_checkpoint_refused(void) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_ckpt_cursor *c = NULL;
    uint32_t crc = 0;
    assert_int_not_equal(rd_ckpt_cursor_open(g_ckpt, 1, 0, DIM * 2, 0, &crc, &c, &eb), RD_OK);
    assert_null(c);
    assert_int_not_equal(rd_ckpt_verify(g_junk, &eb), RD_OK);
    rd_tabletool *tt = NULL;
    assert_int_not_equal(rd_tabletool_open(g_junk, &tt, &eb), RD_OK);
    assert_int_not_equal(rd_ckpt_verify(g_bad_ckpt, &eb), RD_OK);
    assert_int_not_equal(rd_tabletool_open(g_bad_ckpt, &tt, &eb), RD_OK);
    rd_table_config tc = table_cfg();
    rd_table *t = NULL;
    assert_int_equal(rd_table_create(&tc, 0, 11, &t, &eb), RD_OK);
    assert_int_not_equal(rd_ckpt_load_table(g_bad_ckpt, "emb", t, &eb), RD_OK);
    rd_table_destroy(t);
}

static void cycle_target_log(void) {
    char path[400];
    snprintf(path, sizeof path, "%s/targets", g_root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_log *r = NULL;
    assert_int_equal(rd_target_log_open(path, 0, NULL, &r, &eb), RD_OK);
    uint64_t n = 0;
    assert_int_equal(rd_target_log_count(r, &n, &eb), RD_OK);
    rd_target_log_close(r);
    assert_int_not_equal(rd_target_log_open(g_junk, 0, NULL, &r, &eb), RD_OK);
}

static void cycle_dataset(void) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_dataset *ds = NULL;
    assert_int_equal(rd_dataset_open(g_dataset, 0, &ds, &eb), RD_OK);
    rd_dataset_close(ds);
    rd_dataset_ids *ids = NULL;
    if (rd_dataset_ids_load(g_dataset, &ids, &eb) == RD_OK)
        rd_dataset_ids_free(ids);
    assert_int_not_equal(rd_dataset_open(g_junk, 0, &ds, &eb), RD_OK);
    assert_null(ds);
}

static void cycle_serve(void) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_serve *sv = NULL;
    assert_int_equal(rd_serve_open(g_bundle, 4, &sv, &eb), RD_OK);
    rd_serve_close(sv);
    char junk[450];
    snprintf(junk, sizeof junk, "%s/events.bin", g_junk);
    assert_int_not_equal(rd_serve_open(junk, 4, &sv, &eb), RD_OK);
    assert_null(sv);
}

static void test_open_close_cycles(void **state) {
    (void)state;
    // The fixtures of the tests above, a small prepared dataset, a bundle of the corpus and a
    // folder of junk: a file named as each input's main file, holding text.
    const char *src = getenv("RD_SOURCE_DIR");
    snprintf(g_bundle, sizeof g_bundle, "%s/tests/fuzz/corpus/serve/tiny", src ? src : ".");
    snprintf(g_dataset, sizeof g_dataset, "%s/data", g_root);
    snprintf(g_junk, sizeof g_junk, "%s/junk", g_root);
    assert_int_equal(mkdir(g_junk, 0777), 0);
    static const char *const junk_files[] = {"events.bin", "MANIFEST", "data.mdb", "meta.yaml"};
    for (size_t i = 0; i < sizeof junk_files / sizeof junk_files[0]; i++) {
        char p[500];
        snprintf(p, sizeof p, "%s/%s", g_junk, junk_files[i]);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs("not what it should be\n", f);
        fclose(f);
    }
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    cfg->data.source = RD_DATA_SYNTHETIC;
    cfg->data.synthetic.events = 2000;
    cfg->data.synthetic.users = 20;
    cfg->data.synthetic.items = 50;
    snprintf(cfg->data.dir, sizeof cfg->data.dir, "%s", g_dataset);
    char keep[320], shard[340];
    memcpy(keep, g_store, sizeof keep);
    snprintf(g_bad_store, sizeof g_bad_store, "%s/tokens_bad", g_root);
    snprintf(g_store, sizeof g_store, "%s", g_bad_store);
    write_store();
    memcpy(g_store, keep, sizeof keep);
    snprintf(shard, sizeof shard, "%s/shard-0001", g_bad_store);
    damage_env(shard);
    memcpy(keep, g_ckpt, sizeof keep);
    snprintf(g_bad_ckpt, sizeof g_bad_ckpt, "%s/ckpt_bad", g_root);
    snprintf(g_ckpt, sizeof g_ckpt, "%s", g_bad_ckpt);
    write_checkpoint();
    memcpy(g_ckpt, keep, sizeof keep);
    snprintf(shard, sizeof shard, "%s/shard-00001", g_bad_ckpt);
    damage_env(shard);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_dataset_prepare(&cfg->data, 7, &eb) != RD_OK)
        fail_msg("prepare %s: %s", g_dataset, eb.msg);
    rd_free(cfg);

    static const struct {
        const char *name;
        void (*fn)(void);
    } cycles[] = {
        {"token store, read-only open + fetch", cycle_store_read},
        {"token store, writable open + append", cycle_store_write},
        {"token store, refused opens", cycle_store_refused},
        {"checkpoint: manifest, verify, cursor, load, table tool", cycle_checkpoint},
        {"checkpoint: refused cursor, verify, table tool", cycle_checkpoint_refused},
        {"target log, open and a refused open", cycle_target_log},
        {"dataset, open and a refused open", cycle_dataset},
        {"serve bundle, open and a refused open", cycle_serve},
    };
    for (size_t k = 0; k < sizeof cycles / sizeof cycles[0]; k++) {
        cycles[k].fn(); // once first: what a first use sets up for the process may stay
        int fds = open_fds(), maps = open_maps();
        for (int i = 0; i < CYCLES; i++)
            cycles[k].fn();
        int fds2 = open_fds(), maps2 = open_maps();
        if (fds2 != fds || maps2 != maps)
            fail_msg("%s, %d times: %d descriptors and %d mappings before, %d and %d after",
                     cycles[k].name, CYCLES, fds, maps, fds2, maps2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_checkpoint),
        cmocka_unit_test(test_checkpoint_arguments),
        cmocka_unit_test(test_read_token_store),
        cmocka_unit_test(test_token_store_arguments),
        cmocka_unit_test(test_serve_arguments),
        cmocka_unit_test(test_target_log),
        cmocka_unit_test(test_tokentool),
        cmocka_unit_test(test_dataset_arguments),
        cmocka_unit_test(test_serve_open_nomem),
        cmocka_unit_test(test_serve_open_int32_keys),
        cmocka_unit_test(test_serve_clone_int32_keys),
        cmocka_unit_test(test_serve_open_peak),
        cmocka_unit_test(test_serve_threads),
        cmocka_unit_test(test_serve_clone_threads),
        cmocka_unit_test(test_open_close_cycles),
    };
    return tmp_root_status(cmocka_run_group_tests(tests, setup, teardown), g_root);
}
