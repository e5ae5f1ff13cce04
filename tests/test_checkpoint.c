// test_checkpoint.c — per-shard LMDB checkpoints: exact round trip (rows, slots, last-seen,
// counts, pending admission counts, counters), CRC independent of insertion order, atomic
// rename (no temp dir left, existing shard refused), manifest validation, and detection of
// corrupted shards, corrupted manifests and layout mismatches.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/checkpoint.h"
#include "rd/hash.h"
#include "rd/optim.h"
#include "rd/table.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    tc.init_std = 0.1f;
    tc.admit_count = 3;
    tc.capacity = 8;
    return tc;
}

static void rm_rf(const char *path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fail_msg("cannot remove %s", path);
}

// Fill a table with pulls (admitting after 3 sightings), pushes and a few pending keys: every 5th
// key has one sighting, every 7th (not 5th) two, so that a restore that lost the counts (a
// pending key back at one sighting) shows.
static void fill(rd_table *t, uint64_t first, uint64_t n, int reverse) {
    size_t dim = rd_table_dim(t);
    float out[64], g[64];
    for (size_t d = 0; d < dim; d++)
        g[d] = 0.01f * (float)(d + 1);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t key = reverse ? first + n - 1 - i : first + i;
        uint64_t k[1] = {key};
        int sightings = key % 5 == 0 ? 1 : key % 7 == 0 ? 2 : 3;
        for (int s = 0; s < sightings; s++)
            assert_int_equal(rd_table_pull(t, k, 1, (int64_t)key, out), RD_OK);
        assert_int_equal(rd_table_push(t, k, g, 1, (int64_t)key + 1), RD_OK);
    }
}

typedef struct fx {
    char dir[256];
    rd_table *a, *b;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/rd_test_ckpt_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    rd_table_config ca = make_cfg("user", 4, RD_OPT_ADAGRAD);
    rd_table_config cb = make_cfg("item", 8, RD_OPT_ADAM);
    if (rd_table_create(&ca, 0, 42, &f->a, NULL) || rd_table_create(&cb, 1, 42, &f->b, NULL))
        return -1;
    fill(f->a, 1, 300, 0);
    fill(f->b, 1000, 120, 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    rm_rf(f->dir);
    rd_table_destroy(f->a);
    rd_table_destroy(f->b);
    free(f);
    return 0;
}

// Same rows, slots, metadata and pending counts (order-independent).
static void assert_same_table(rd_table *x, rd_table *y) {
    assert_int_equal(rd_table_size(x), rd_table_size(y));
    assert_int_equal(rd_table_pending_size(x), rd_table_pending_size(y));
    size_t nf = rd_table_row_floats(x);
    for (size_t i = 0; i < rd_table_size(x); i++) {
        uint64_t key, c1, c2;
        int64_t l1, l2;
        const float *r1 = rd_table_row_at(x, i, &key, &l1, &c1);
        const float *r2 = rd_table_find(y, key);
        assert_non_null(r2);
        assert_memory_equal(r1, r2, nf * sizeof(float));
        for (size_t j = 0; j < rd_table_size(y); j++) {
            uint64_t k2;
            rd_table_row_at(y, j, &k2, &l2, &c2);
            if (k2 == key) {
                assert_true(l1 == l2 && c1 == c2);
                break;
            }
        }
    }
    size_t cur = 0;
    uint64_t key;
    uint32_t c;
    int64_t ls;
    while (rd_table_pending_next(x, &cur, &key, &c, &ls)) {
        size_t cur2 = 0;
        uint64_t k2;
        uint32_t c2;
        int64_t l2;
        int found = 0;
        while (rd_table_pending_next(y, &cur2, &k2, &c2, &l2))
            if (k2 == key) {
                found = 1;
                assert_true(c == c2 && ls == l2);
            }
        assert_true(found);
    }
}

static void write_ckpt(fx *f, rd_ckpt_manifest *m) {
    rd_table *ts[2] = {f->a, f->b};
    rd_ckpt_shard_info info;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_ckpt_write_shard(f->dir, 0, 1, 17, 42, ts, 2, &info, &eb);
    if (rc != RD_OK)
        fail_msg("write_shard: %s", eb.msg);
    assert_int_equal(info.n_tables, 2);
    assert_int_equal(info.rows[0], rd_table_size(f->a));
    assert_int_equal(info.pending[0], rd_table_pending_size(f->a));
    memset(m, 0, sizeof *m);
    m->version = RD_CKPT_VERSION;
    m->n_shards = 1;
    m->step = 17;
    m->seed = 42;
    m->n_tables = 2;
    for (int i = 0; i < 2; i++) {
        const rd_table_config *tc = rd_table_config_of(ts[i]);
        snprintf(m->tables[i].name, RD_NAME_MAX, "%s", tc->name);
        m->tables[i].index = (uint32_t)i;
        m->tables[i].dim = (uint32_t)tc->dim;
        m->tables[i].optim = (uint32_t)tc->optim.kind;
        m->tables[i].slots = (uint32_t)rd_optim_slots(tc->optim.kind);
        m->tables[i].rows = info.rows[i];
        m->tables[i].pending = info.pending[i];
        m->shard_rows[0] += info.rows[i];
    }
    m->shard_crc[0] = info.crc;
    assert_int_equal(rd_ckpt_write_manifest(f->dir, m, &eb), RD_OK);
}

static void test_roundtrip(void **state) {
    fx *f = *state;
    rd_ckpt_manifest *m = malloc(sizeof *m);
    write_ckpt(f, m);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_verify(f->dir, &eb), RD_OK);
    // No temp directories or lock files left behind.
    char p[512];
    snprintf(p, sizeof p, "%s/.shard-00000.tmp", f->dir);
    assert_int_not_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/shard-00000/lock.mdb", f->dir);
    assert_int_not_equal(access(p, F_OK), 0);

    rd_ckpt_manifest *m2 = malloc(sizeof *m2);
    assert_int_equal(rd_ckpt_read_manifest(f->dir, m2, &eb), RD_OK);
    assert_true(m2->n_shards == 1 && m2->step == 17 && m2->seed == 42 && m2->n_tables == 2);
    assert_string_equal(m2->tables[1].name, "item");
    assert_int_equal(m2->shard_crc[0], m->shard_crc[0]);

    // Read back into fresh tables.
    rd_table_config ca = make_cfg("user", 4, RD_OPT_ADAGRAD);
    rd_table_config cb = make_cfg("item", 8, RD_OPT_ADAM);
    rd_table *a2, *b2;
    assert_int_equal(rd_table_create(&ca, 0, 42, &a2, NULL), RD_OK);
    assert_int_equal(rd_table_create(&cb, 1, 42, &b2, NULL), RD_OK);
    rd_table *ts[2] = {b2, a2}; // any order
    int64_t step = 0;
    rd_ckpt_shard_info info;
    assert_int_equal(rd_ckpt_read_shard(f->dir, 0, 1, ts, 2, &m->shard_crc[0], &step, &info, &eb),
                     RD_OK);
    assert_int_equal(step, 17);
    assert_same_table(f->a, a2);
    assert_same_table(f->b, b2);
    rd_table_stats s1, s2;
    rd_table_get_stats(f->b, &s1);
    rd_table_get_stats(b2, &s2);
    assert_true(s1.admitted == s2.admitted && s1.rejected == s2.rejected &&
                s1.pushed == s2.pushed && s1.pulled == s2.pulled && s1.now == s2.now);

    // rd_ckpt_load_table merges into one table.
    rd_table *a3;
    assert_int_equal(rd_table_create(&ca, 3, 42, &a3, NULL), RD_OK);
    assert_int_equal(rd_ckpt_load_table(f->dir, "user", a3, &eb), RD_OK);
    assert_same_table(f->a, a3);
    assert_int_equal(rd_ckpt_load_table(f->dir, "nope", a3, &eb), RD_ERR_NOTFOUND);
    rd_table_destroy(a3);

    // The same content inserted in another order gives the same CRC.
    rd_table *a4, *b4;
    assert_int_equal(rd_table_create(&ca, 0, 42, &a4, NULL), RD_OK);
    assert_int_equal(rd_table_create(&cb, 1, 42, &b4, NULL), RD_OK);
    fill(a4, 1, 300, 1);
    fill(b4, 1000, 120, 1);
    char dir2[300];
    snprintf(dir2, sizeof dir2, "%s/again", f->dir);
    rd_table *t4[2] = {a4, b4};
    rd_ckpt_shard_info info4;
    assert_int_equal(rd_ckpt_write_shard(dir2, 0, 1, 17, 42, t4, 2, &info4, &eb), RD_OK);
    assert_int_equal(info4.crc, m->shard_crc[0]);
    // Writing the same shard again is refused.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_write_shard(dir2, 0, 1, 17, 42, t4, 2, &info4, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "already exists"));
    rd_table_destroy(a4);
    rd_table_destroy(b4);
    rd_table_destroy(a2);
    rd_table_destroy(b2);
    free(m);
    free(m2);
}

// rd_ckpt_read_shard_part (table reshard): part p of 3 gets exactly the rows and pending keys
// with rd_shard_of(key, 3) == p, each as saved; the three parts together are the whole shard.
static void test_read_part(void **state) {
    fx *f = *state;
    rd_ckpt_manifest *m = malloc(sizeof *m);
    write_ckpt(f, m);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_table_config ca = make_cfg("user", 4, RD_OPT_ADAGRAD);
    rd_table_config cb = make_cfg("item", 8, RD_OPT_ADAM);
    size_t rows = 0, pending = 0;
    for (int part = 0; part < 3; part++) {
        rd_table *a2, *b2;
        assert_int_equal(rd_table_create(&ca, 0, 42, &a2, NULL), RD_OK);
        assert_int_equal(rd_table_create(&cb, 1, 42, &b2, NULL), RD_OK);
        rd_table *ts[2] = {a2, b2};
        int rc = rd_ckpt_read_shard_part(f->dir, 0, 1, ts, 2, &m->shard_crc[0], part, 3, &eb);
        if (rc != RD_OK)
            fail_msg("read part %d: %s", part, eb.msg);
        for (size_t i = 0; i < rd_table_size(a2); i++) {
            uint64_t key;
            const float *r = rd_table_row_at(a2, i, &key, NULL, NULL);
            assert_int_equal(rd_shard_of(key, 3), part);
            const float *want = rd_table_find(f->a, key);
            assert_non_null(want);
            assert_memory_equal(r, want, rd_table_row_floats(a2) * sizeof(float));
        }
        size_t cur = 0;
        uint64_t key;
        uint32_t c;
        int64_t ls;
        while (rd_table_pending_next(a2, &cur, &key, &c, &ls)) {
            assert_int_equal(rd_shard_of(key, 3), part);
            pending++;
        }
        rows += rd_table_size(a2);
        rd_table_destroy(a2);
        rd_table_destroy(b2);
    }
    assert_int_equal(rows, rd_table_size(f->a));
    assert_int_equal(pending, rd_table_pending_size(f->a));
    free(m);
}

static void test_layout_mismatch(void **state) {
    fx *f = *state;
    rd_ckpt_manifest *m = malloc(sizeof *m);
    write_ckpt(f, m);
    rd_errbuf eb;
    rd_table_config wrong = make_cfg("user", 5, RD_OPT_ADAGRAD);
    rd_table *t;
    assert_int_equal(rd_table_create(&wrong, 0, 42, &t, NULL), RD_OK);
    rd_table *ts[1] = {t};
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_read_shard(f->dir, 0, 1, ts, 1, NULL, NULL, NULL, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "dim 4"));
    rd_table_destroy(t);
    rd_table_config ok = make_cfg("user", 4, RD_OPT_ADAGRAD);
    assert_int_equal(rd_table_create(&ok, 0, 42, &t, NULL), RD_OK);
    ts[0] = t;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_read_shard(f->dir, 0, 3, ts, 1, NULL, NULL, NULL, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "shard 0 of 1"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_read_shard(f->dir, 1, 2, ts, 1, NULL, NULL, NULL, &eb),
                     RD_ERR_NOTFOUND);
    // A table that is not in the checkpoint.
    rd_table_config other = make_cfg("ctx", 4, RD_OPT_ADAGRAD);
    rd_table *o;
    assert_int_equal(rd_table_create(&other, 7, 42, &o, NULL), RD_OK);
    ts[0] = o;
    assert_int_equal(rd_ckpt_read_shard(f->dir, 0, 1, ts, 1, NULL, NULL, NULL, &eb), RD_ERR_SCHEMA);
    rd_table_destroy(o);
    rd_table_destroy(t);
    free(m);
}

// Flip one byte of a stored row value inside data.mdb: the CRC catches it.
static void test_corruption(void **state) {
    fx *f = *state;
    // A recognisable value in one row.
    float *row = rd_table_find(f->a, 2);
    assert_non_null(row);
    row[1] = 12345.678f;
    rd_ckpt_manifest *m = malloc(sizeof *m);
    write_ckpt(f, m);
    char path[512];
    snprintf(path, sizeof path, "%s/shard-00000/data.mdb", f->dir);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    unsigned char *buf = malloc((size_t)size);
    fseek(fp, 0, SEEK_SET);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    float needle = 12345.678f;
    long at = -1;
    for (long i = 0; i + 4 <= size; i++)
        if (memcmp(buf + i, &needle, 4) == 0)
            at = i;
    assert_true(at >= 0);
    buf[at] ^= 0x01;
    fseek(fp, at, SEEK_SET);
    fputc(buf[at], fp);
    fclose(fp);
    free(buf);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_verify(f->dir, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "CRC"));
    rd_table_config ca = make_cfg("user", 4, RD_OPT_ADAGRAD);
    rd_table *t;
    assert_int_equal(rd_table_create(&ca, 0, 42, &t, NULL), RD_OK);
    rd_table *ts[1] = {t};
    assert_int_equal(rd_ckpt_read_shard(f->dir, 0, 1, ts, 1, &m->shard_crc[0], NULL, NULL, &eb),
                     RD_ERR_CORRUPT);
    assert_int_equal(rd_table_size(t), 0); // nothing loaded
    rd_table_destroy(t);
    free(m);
}

// A shard whose data.mdb was cut short (a partial copy, a full disk during a copy) still opens
// in LMDB; its meta page names pages past the end of the file and the first read of one through
// the map is a SIGBUS. Every reader (verify, read_shard, load_table) must refuse it instead.
// A row holding NaN or inf (a diverged optimizer) is a checkpoint that verifies as well formed
// (its CRC matches) but must not be trusted: verify names the table and the key.
static void test_nonfinite_row(void **state) {
    fx *f = *state;
    float *row = rd_table_find(f->a, 2);
    assert_non_null(row);
    row[1] = NAN;
    rd_ckpt_manifest *m = malloc(sizeof *m);
    write_ckpt(f, m);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_verify(f->dir, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, ": table user: the row of key "));
    assert_non_null(strstr(eb.msg, "holds NaN (value 1 of "));
    free(m);
}

static void test_truncated_shard(void **state) {
    fx *f = *state;
    rd_ckpt_manifest *m = malloc(sizeof *m);
    write_ckpt(f, m);
    char path[512];
    snprintf(path, sizeof path, "%s/shard-00000/data.mdb", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 3 * 4096);
    assert_int_equal(truncate(path, 2 * 4096), 0); // both meta pages, no data page
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_verify(f->dir, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "truncated"));
    assert_non_null(strstr(eb.msg, "shard-00000"));
    rd_table_config ca = make_cfg("user", 4, RD_OPT_ADAGRAD);
    rd_table *t;
    assert_int_equal(rd_table_create(&ca, 0, 42, &t, NULL), RD_OK);
    rd_table *ts[1] = {t};
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_read_shard(f->dir, 0, 1, ts, 1, NULL, NULL, NULL, &eb),
                     RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "truncated"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_load_table(f->dir, "user", t, &eb), RD_ERR_CORRUPT);
    assert_int_equal(rd_table_size(t), 0);
    uint32_t crc;
    assert_int_equal(rd_ckpt_shard_crc(f->dir, 0, &crc, NULL), RD_ERR_CORRUPT);
    rd_table_destroy(t);
    free(m);
}

// rd_ckpt_check_shards, the quick check before a resume: passes a good checkpoint, and refuses a
// shard that is missing, cut short or of another cut (its records disagree with the MANIFEST),
// without the reads that grow with the tables: a flipped row byte (CRC) passes it, verify not.
static void test_check_shards(void **state) {
    fx *f = *state;
    rd_ckpt_manifest *m = malloc(sizeof *m);
    write_ckpt(f, m);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_check_shards(f->dir, &eb), RD_OK);
    // Of another cut: the MANIFEST says step 18, the shard record 17 (the CRC is not read).
    m->step = 18;
    assert_int_equal(rd_ckpt_write_manifest(f->dir, m, &eb), RD_OK);
    assert_int_equal(rd_ckpt_check_shards(f->dir, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "disagrees with the manifest"));
    // Only the CRC wrong: the quick check passes, verify refuses.
    m->step = 17;
    m->shard_crc[0] ^= 1;
    assert_int_equal(rd_ckpt_write_manifest(f->dir, m, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_check_shards(f->dir, &eb), RD_OK);
    assert_int_equal(rd_ckpt_verify(f->dir, &eb), RD_ERR_CORRUPT);
    // Cut short, then missing.
    char path[512];
    snprintf(path, sizeof path, "%s/shard-00000/data.mdb", f->dir);
    assert_int_equal(truncate(path, 2 * 4096), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_check_shards(f->dir, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "truncated"));
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/shard-00000", f->dir);
    assert_int_equal(rmdir(path), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_check_shards(f->dir, &eb), RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "shard-00000 does not exist"));
    free(m);
}

static void test_manifest_errors(void **state) {
    fx *f = *state;
    rd_ckpt_manifest *m = malloc(sizeof *m);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_read_manifest(f->dir, m, &eb), RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "not a complete checkpoint"));
    write_ckpt(f, m);
    char path[512];
    snprintf(path, sizeof path, "%s/MANIFEST", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    // Any single flipped byte or truncation is rejected.
    FILE *fp = fopen(path, "rb");
    unsigned char good[4096];
    size_t len = fread(good, 1, sizeof good, fp);
    fclose(fp);
    for (size_t i = 0; i < len; i += 7) {
        unsigned char bad[4096];
        memcpy(bad, good, len);
        bad[i] ^= 0x40;
        fp = fopen(path, "wb");
        fwrite(bad, 1, len, fp);
        fclose(fp);
        int rc = rd_ckpt_read_manifest(f->dir, m, NULL);
        assert_true(rc == RD_ERR_CORRUPT || rc == RD_ERR_VERSION);
    }
    fp = fopen(path, "wb");
    fwrite(good, 1, len - 3, fp);
    fclose(fp);
    assert_int_equal(rd_ckpt_read_manifest(f->dir, m, NULL), RD_ERR_CORRUPT);
    // A manifest whose CRC does not match the shard.
    fp = fopen(path, "wb");
    fwrite(good, 1, len, fp);
    fclose(fp);
    assert_int_equal(rd_ckpt_verify(f->dir, NULL), RD_OK);
    m->shard_crc[0] ^= 1;
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rd_ckpt_write_manifest(f->dir, m, NULL), RD_OK);
    assert_int_equal(rd_ckpt_verify(f->dir, NULL), RD_ERR_CORRUPT);
    free(m);
}

// Symlinks planted under the names a checkpoint write used to use for its temporary files
// (".shard-NNNNN.tmp", ".MANIFEST.tmp"): the write must neither follow them nor empty the folder
// they point to. The shard's temporary folder was removed through stat(), which follows a link:
// the env files of the folder it named were deleted.
static void test_planted_symlinks(void **state) {
    fx *f = *state;
    char victim[300], vfile[340], vman[300], p[300];
    snprintf(victim, sizeof victim, "%s.victim", f->dir);
    snprintf(vfile, sizeof vfile, "%s/data.mdb", victim);
    snprintf(vman, sizeof vman, "%s.victim-manifest", f->dir);
    assert_int_equal(mkdir(victim, 0755), 0);
    FILE *fp = fopen(vfile, "wb");
    assert_non_null(fp);
    fputs("precious", fp);
    fclose(fp);
    fp = fopen(vman, "wb");
    assert_non_null(fp);
    fputs("precious", fp);
    fclose(fp);
    snprintf(p, sizeof p, "%s/.shard-00000.tmp", f->dir);
    assert_int_equal(symlink(victim, p), 0);
    snprintf(p, sizeof p, "%s/.MANIFEST.tmp", f->dir);
    assert_int_equal(symlink(vman, p), 0);
    rd_ckpt_manifest *m = malloc(sizeof *m);
    write_ckpt(f, m);
    assert_int_equal(rd_ckpt_verify(f->dir, NULL), RD_OK);
    struct stat st;
    assert_int_equal(stat(vfile, &st), 0);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(stat(vman, &st), 0);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(lstat(p, &st), 0); // the MANIFEST's planted link is left alone
    assert_true(S_ISLNK(st.st_mode));
    unlink(vfile);
    rmdir(victim);
    unlink(vman);
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_planted_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_part, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonfinite_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
