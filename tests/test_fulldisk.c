// test_fulldisk.c — a full disk during a token-store append or compaction, a checkpoint write or a
// dataset prepare is a clear error (RD_ERR_FULL or RD_ERR_IO naming the file), and nothing valid is
// lost: the store keeps every transaction committed before the failure and still verifies, the
// previous checkpoint still verifies, and a failed prepare leaves no folder behind.
//
// The disk is made "full" with RLIMIT_FSIZE (SIGXFSZ ignored, so writes past the limit fail with
// EFBIG), which needs no privileges; tests/scripts/full_disk.sh does the same with a real ENOSPC
// on a tiny tmpfs when it can mount one. The limit is per process and lifted in every teardown.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/checkpoint.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/optim.h"
#include "rd/table.h"
#include "rd/tokens.h"
#include "rd/tokentool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

enum { DIM = 16 };

static void rm_rf(const char *path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fail_msg("cannot remove %s", path);
}

// Files may not grow beyond `bytes` (writes past it fail with EFBIG instead of killing us).
static void limit_files(rlim_t bytes) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = bytes;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void unlimit_files(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_FSIZE, &rl);
    }
}

static off_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

typedef struct fx {
    char dir[128];
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/rd_test_full_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    unlimit_files();
    rm_rf(f->dir);
    free(f);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Token store

// Append records [first, first + n) of a deterministic sequence: user i % 97, time i, id i.
static int append_range(rd_token_store *s, uint64_t first, size_t n, rd_errbuf *eb) {
    uint64_t *users = calloc(n, sizeof *users), *ids = calloc(n, sizeof *ids);
    int64_t *ts = calloc(n, sizeof *ts);
    float *tok = calloc(n * DIM, sizeof *tok);
    assert_non_null(users);
    assert_non_null(ids);
    assert_non_null(ts);
    assert_non_null(tok);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = first + i;
        users[i] = 1000 + k % 97;
        ts[i] = (int64_t)k;
        ids[i] = k;
        for (size_t d = 0; d < DIM; d++)
            tok[i * DIM + d] = (float)((k * 31 + d) % 101) / 101.0f;
    }
    rd_token_batch b = {n, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    int rc = rd_token_store_append(s, &b, eb);
    free(users);
    free(ids);
    free(ts);
    free(tok);
    return rc;
}

static uint64_t store_entries(rd_token_store *s) {
    rd_token_stats st;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    return st.entries;
}

static void test_token_append_full(void **state) {
    fx *f = *state;
    char dir[512], data[600];
    snprintf(dir, sizeof dir, "%s/store", f->dir);
    rd_token_store_opts o = {0};
    o.dim = DIM;
    o.dtype = RD_TOKEN_FP32;
    o.n_shards = 1;
    o.append_batch = 256;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &o, &s, &eb), RD_OK);
    assert_int_equal(append_range(s, 0, 2000, &eb), RD_OK);
    rd_token_store_destroy(s);

    // The shard file may grow by 256 KiB only; the next append needs megabytes.
    snprintf(data, sizeof data, "%s/shard-0000/data.mdb", dir);
    if (file_size(data) < 0)
        snprintf(data, sizeof data, "%s/shard-0/data.mdb", dir);
    off_t before = file_size(data);
    assert_true(before > 0);
    rd_token_open_opts oo = {0};
    oo.mode = RD_TOKEN_WRITE;
    oo.append_batch = 256;
    assert_int_equal(rd_token_store_open(dir, &oo, &s, &eb), RD_OK);
    limit_files((rlim_t)before + 256 * 1024);
    int rc = append_range(s, 2000, 40000, &eb);
    unlimit_files();
    assert_true(rc == RD_ERR_FULL || rc == RD_ERR_IO || rc == RD_ERR_LMDB);
    print_message("append past the limit: %s (%s)\n", rd_strerror(rc), eb.msg);
    assert_non_null(strstr(eb.msg, dir)); // names the store (or its shard)
    rd_token_store_destroy(s);

    // Nothing valid lost: the store opens, verifies, holds the first 2000 records and whole
    // transactions of the failed append only, and takes appends again.
    oo.mode = RD_TOKEN_READ_ONLY;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_open(dir, &oo, &s, &eb), RD_OK);
    uint64_t checked = 0;
    assert_int_equal(rd_token_store_verify(s, &checked, &eb), RD_OK);
    uint64_t n = store_entries(s);
    assert_true(n >= 2000 && n < 42000);
    assert_int_equal((n - 2000) % 256 == 0 || n == 2000, 1);
    assert_int_equal(checked, n);
    rd_token_store_destroy(s);
    oo.mode = RD_TOKEN_WRITE;
    assert_int_equal(rd_token_store_open(dir, &oo, &s, &eb), RD_OK);
    assert_int_equal(append_range(s, 2000, 40000, &eb), RD_OK);
    assert_int_equal(store_entries(s), 42000);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_OK);
    rd_token_store_destroy(s);
}

// `tokens compact` onto a full disk: the copy fails naming --out, where the disk is full (the
// message named only the source shard, "compacting copy of: STORE/shard-0000: File too large"),
// and leaves no --out behind.
static void test_token_compact_full(void **state) {
    fx *f = *state;
    char dir[512], out[512];
    snprintf(dir, sizeof dir, "%s/store", f->dir);
    snprintf(out, sizeof out, "%s/compacted", f->dir);
    rd_token_store_opts o = {0};
    o.dim = DIM;
    o.dtype = RD_TOKEN_FP32;
    o.n_shards = 1;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &o, &s, &eb), RD_OK);
    assert_int_equal(append_range(s, 0, 20000, &eb), RD_OK);
    rd_token_store_destroy(s);
    limit_files(256 * 1024); // the copy needs more than a megabyte
    int rc = rd_tokentool_compact(dir, out, &eb);
    unlimit_files();
    assert_int_not_equal(rc, RD_OK);
    print_message("compact past the limit: %s (%s)\n", rd_strerror(rc), eb.msg);
    assert_non_null(strstr(eb.msg, "into --out"));
    assert_non_null(strstr(eb.msg, out));
    assert_int_equal(file_size(out), -1);
}

// MDB_MAP_FULL: the map may not grow past max_map_size. Same promise as a full disk.
static void test_token_map_full(void **state) {
    fx *f = *state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/store", f->dir);
    rd_token_store_opts o = {0};
    o.dim = DIM;
    o.dtype = RD_TOKEN_FP32;
    o.n_shards = 1;
    o.map_size = 256 * 1024;
    o.max_map_size = 1024 * 1024;
    o.append_batch = 128;
    o.no_sync = 1;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &o, &s, &eb), RD_OK);
    assert_int_equal(append_range(s, 0, 1000, &eb), RD_OK);
    int rc = append_range(s, 1000, 50000, &eb);
    assert_int_equal(rc, RD_ERR_FULL);
    print_message("map full: %s\n", eb.msg);
    assert_true(strlen(eb.msg) > 10);
    uint64_t n = store_entries(s);
    assert_true(n >= 1000 && n < 51000);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_OK);
    rd_token_store_destroy(s);
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

static rd_table *make_table(void) {
    rd_table_config tc;
    memset(&tc, 0, sizeof tc);
    snprintf(tc.name, sizeof tc.name, "user");
    tc.dim = 32;
    tc.optim.kind = RD_OPT_ADAGRAD;
    tc.optim.lr = 0.1f;
    tc.optim.initial_accumulator = 0.1f;
    tc.init_std = 0.1f;
    tc.admit_count = 1;
    tc.capacity = 1024;
    rd_table *t = NULL;
    assert_int_equal(rd_table_create(&tc, 0, 42, &t, NULL), RD_OK);
    float out[32];
    for (uint64_t k = 1; k <= 20000; k++)
        assert_int_equal(rd_table_pull(t, &k, 1, (int64_t)k, out), RD_OK);
    return t;
}

static void write_ckpt(const char *dir, rd_table *t, rd_errbuf *eb, int *rc_shard, int *rc_man) {
    rd_ckpt_shard_info info;
    *rc_shard = rd_ckpt_write_shard(dir, 0, 1, 7, 42, &t, 1, &info, eb);
    *rc_man = RD_ERR_STATE;
    if (*rc_shard != RD_OK)
        return;
    rd_ckpt_manifest *m = calloc(1, sizeof *m);
    m->version = RD_CKPT_VERSION;
    m->n_shards = 1;
    m->step = 7;
    m->seed = 42;
    m->n_tables = 1;
    snprintf(m->tables[0].name, sizeof m->tables[0].name, "user");
    m->tables[0].dim = 32;
    m->tables[0].optim = RD_OPT_ADAGRAD;
    m->tables[0].slots = 1;
    m->tables[0].rows = info.rows[0];
    m->tables[0].pending = info.pending[0];
    m->shard_crc[0] = info.crc;
    m->shard_rows[0] = info.rows[0];
    *rc_man = rd_ckpt_write_manifest(dir, m, eb);
    free(m);
}

static void test_checkpoint_full(void **state) {
    fx *f = *state;
    rd_table *t = make_table();
    char good[512], bad[512], shard[600];
    snprintf(good, sizeof good, "%s/ckpt-1", f->dir);
    snprintf(bad, sizeof bad, "%s/ckpt-2", f->dir);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rs, rm;
    write_ckpt(good, t, &eb, &rs, &rm);
    assert_int_equal(rs, RD_OK);
    assert_int_equal(rm, RD_OK);
    assert_int_equal(rd_ckpt_verify(good, &eb), RD_OK);

    // The next checkpoint may write 64 KiB per file: the shard (about 3 MB) cannot be written.
    limit_files(64 * 1024);
    rd_errbuf_clear(&eb);
    write_ckpt(bad, t, &eb, &rs, &rm);
    unlimit_files();
    assert_int_not_equal(rs, RD_OK);
    print_message("checkpoint past the limit: %s (%s)\n", rd_strerror(rs), eb.msg);
    assert_true(rs == RD_ERR_FULL || rs == RD_ERR_IO || rs == RD_ERR_LMDB);
    assert_non_null(strstr(eb.msg, "ckpt-2"));
    // No shard directory and no manifest in the failed checkpoint (a temp env may not survive
    // either), and the previous checkpoint is intact.
    rd_ckpt_shard_path(bad, 0, shard, sizeof shard);
    assert_int_equal(access(shard, F_OK), -1);
    snprintf(shard, sizeof shard, "%s/MANIFEST", bad);
    assert_int_equal(access(shard, F_OK), -1);
    snprintf(shard, sizeof shard, "%s/.shard-00000.tmp", bad);
    assert_int_equal(access(shard, F_OK), -1);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_verify(good, &eb), RD_OK);
    assert_int_not_equal(rd_ckpt_verify(bad, &eb), RD_OK);
    rd_table_destroy(t);
}

// ---------------------------------------------------------------------------------------------
// Dataset prepare

static void test_prepare_full(void **state) {
    fx *f = *state;
    rd_config *cfg = calloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    cfg->data.source = RD_DATA_SYNTHETIC;
    cfg->data.synthetic.events = 200000;
    cfg->data.synthetic.users = 500;
    cfg->data.synthetic.items = 2000;
    snprintf(cfg->data.dir, sizeof cfg->data.dir, "%s/data", f->dir);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    limit_files(128 * 1024);
    int rc = rd_dataset_prepare(&cfg->data, 1, &eb);
    unlimit_files();
    print_message("prepare past the limit: %s (%s)\n", rd_strerror(rc), eb.msg);
    assert_true(rc == RD_ERR_FULL || rc == RD_ERR_IO);
    assert_non_null(strstr(eb.msg, f->dir));
    // Neither the folder nor its temporary twin remains.
    assert_int_equal(access(cfg->data.dir, F_OK), -1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -q .", f->dir);
    assert_int_not_equal(system(cmd), 0);
    // With room it works.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_dataset_prepare(&cfg->data, 1, &eb), RD_OK);
    free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_append_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_compact_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
