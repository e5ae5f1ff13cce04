// test_tabletool.c — offline checkpoint tools (rd/tabletool.h) and the training checkpoint's
// dense file and directories (rd/train_ckpt.h):
//   - reshard P = 3 -> P' = 5: every row and every pending key sits in shard rd_shard_of(key, 5),
//     with its exact floats, last-seen and count; totals match; and back to 3 gives the same rows;
//   - compact (P' = P) reproduces every shard CRC (the MANIFEST is byte-identical);
//   - evict by age removes exactly the rows and pending keys last seen before T, by count exactly
//     the rows updated fewer than N times;
//   - export -> import (TSV and binary) is exact, and a damaged binary export is refused before
//     the table is touched; so are negative keys or counts in TSV and a file that only starts
//     like a binary export; a folder is a read error; extreme last-seen times give a sane
//     age histogram;
//   - dense.bin round trip (params, optimizer slots and step, position), and refusals: flipped
//     byte (CRC), other config hash, other slab size, a file far larger than its header says;
//     commit replaces an older directory, prune keeps the newest N complete ones, latest ignores
//     incomplete ones, clear (a fresh run) removes every complete one and the crash leftovers;
//   - dense.bin's identity record (version 2) round trips, and rd_train_ckpt_check refuses
//     another dataset, job rank count, batch size, order or token settings, and names the part
//     of the config hash that differs (seed, a table, the model); a version-1 file still reads,
//     with nothing to check but the config hash;
//   - a rewrite to --out a/b/c that fails removes the parents it created, and only those;
//   - streamed (rd_tabletool_open_stream, one shard at a time) against resident: the same export
//     bytes and stats, compact keeps the MANIFEST, reshard 3 -> 5 gives the same shard CRCs with
//     every key at rd_shard_of(key, 5), the export is the same after 3 -> 5 and 5 -> 2, a round
//     trip 3 -> 5 -> 3 puts every row back in its shard (and a second one is the same bytes),
//     evict and import give the same checkpoint; a shard over the memory limit is refused by
//     name before it is read, and so is an output shard, writing nothing; a shard replaced after
//     the open (same row counts, one value changed) makes the streamed export fail on its CRC;
//   - an export holding only pending counts imports and exports again unchanged;
//   - a streamed export with too few descriptors for one cursor a shard (a set group size, or a
//     low soft RLIMIT_NOFILE) merges the shards in groups through a temporary file: the same
//     bytes after evictions and an import, the CRC check kept, and a missing or full
//     (RLIMIT_FSIZE) temporary folder is RD_ERR_IO naming it, with nothing written; a key held
//     by several shards (misplaced) comes out in shard order, grouped or not, the same bytes.
//   - a rewritten checkpoint is durable when the call returns: the folder holding --out is the
//     last fsync (after the rename).
//   - an export whose output fills the disk names the cause (ENOSPC), whatever write it was.
#define _GNU_SOURCE // fopencookie: an output file that fills up (test_export_full_output)
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fsync_log.h" // fsync() records what is synced (test_write_durable)
#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/optim.h"
#include "rd/table.h"
#include "rd/tabletool.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"
#include "tmp_root.h"

#include "../worker/tabletool_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_root[256];

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
    tc.init_std = 0.1f;
    // 3, not 2: a pending key may then hold 1 or 2 sightings, so that a tool that rewrites the
    // pending counts (evict, import, reshard) and resets them to 1 shows.
    tc.admit_count = 3;
    tc.capacity = 8;
    return tc;
}

// A checkpoint of P shards with tables emb_a (dim 4, Adam) and emb_b (dim 3, SGD), each shard's
// tables filled by fill(tab, t, s, P, arg); the table seed is 5, or 5 + s with seed_by_shard.
typedef void fill_fn(rd_table *tab, int t, int s, int P, int arg);
static void write_ckpt(const char *dir, int P, int seed_by_shard, fill_fn *fill, int arg) {
    rd_table_config tc[2] = {make_cfg("emb_a", 4, RD_OPT_ADAM), make_cfg("emb_b", 3, RD_OPT_SGD)};
    rd_ckpt_manifest *m = rd_xcalloc(1, sizeof *m);
    m->version = RD_CKPT_VERSION;
    m->n_shards = (uint32_t)P;
    m->step = 9;
    m->seed = 5;
    m->n_tables = 2;
    for (int t = 0; t < 2; t++) {
        memcpy(m->tables[t].name, tc[t].name, RD_NAME_MAX);
        m->tables[t].index = (uint32_t)t;
        m->tables[t].dim = (uint32_t)tc[t].dim;
        m->tables[t].optim = (uint32_t)tc[t].optim.kind;
        m->tables[t].slots = (uint32_t)rd_optim_slots(tc[t].optim.kind);
    }
    for (int s = 0; s < P; s++) {
        rd_table *tab[2];
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        for (int t = 0; t < 2; t++) {
            uint64_t seed = 5 + (seed_by_shard ? (uint64_t)s : 0);
            assert_int_equal(rd_table_create(&tc[t], t, seed, &tab[t], &eb), RD_OK);
            fill(tab[t], t, s, P, arg);
        }
        rd_ckpt_shard_info info;
        assert_int_equal(rd_ckpt_write_shard(dir, s, P, 9, 5, tab, 2, &info, &eb), RD_OK);
        m->shard_crc[s] = info.crc;
        for (int t = 0; t < 2; t++) {
            m->tables[t].rows += info.rows[t];
            m->tables[t].pending += info.pending[t];
            m->shard_rows[s] += info.rows[t];
        }
        rd_table_destroy(tab[0]);
        rd_table_destroy(tab[1]);
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_ckpt_write_manifest(dir, m, &eb), RD_OK);
    rd_free(m);
}

// Key k lives on shard rd_shard_of(k, P). Keys with k % 5 == 0 stay pending (one sighting, two
// when k % 10 == 0); the others get rows (three sightings) with (k % 7) pushes.
static void fill_spread(rd_table *tab, int t, int s, int P, int arg) {
    (void)arg;
    float out[8], g[8] = {0.1f, -0.2f, 0.3f, 0.05f};
    for (uint64_t k = 1; k <= 300; k++) {
        if (rd_shard_of(k * 7919 + (uint64_t)t, P) != s)
            continue;
        uint64_t key = k * 7919 + (uint64_t)t;
        assert_int_equal(rd_table_pull(tab, &key, 1, (int64_t)k, out), RD_OK);
        if (k % 10 == 0)
            assert_int_equal(rd_table_pull(tab, &key, 1, (int64_t)k, out), RD_OK);
        if (k % 5 == 0)
            continue;
        assert_int_equal(rd_table_pull(tab, &key, 1, (int64_t)k, out), RD_OK);
        assert_int_equal(rd_table_pull(tab, &key, 1, (int64_t)k, out), RD_OK);
        for (uint64_t r = 0; r < k % 7; r++)
            assert_int_equal(rd_table_push(tab, &key, g, 1, (int64_t)k + 1), RD_OK);
    }
}

static void make_ckpt(const char *dir, int P) {
    write_ckpt(dir, P, 0, fill_spread, 0);
}

static void path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_root, name);
}

static rd_tabletool *open_tt(const char *dir) {
    rd_tabletool *tt = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_tabletool_open(dir, &tt, &eb);
    if (rc != RD_OK)
        fail_msg("open %s: %s", dir, eb.msg);
    return tt;
}

// Find key in any shard of tt's table t; returns the row or NULL.
static const float *find_row(rd_tabletool *tt, int t, uint64_t key, int64_t *ls, uint64_t *c) {
    const rd_ckpt_manifest *m = rd_tabletool_manifest(tt);
    for (uint32_t s = 0; s < m->n_shards; s++) {
        rd_table *tab = rd_tabletool_table(tt, (int)s, t);
        for (size_t i = 0; i < rd_table_size(tab); i++) {
            uint64_t k;
            const float *row = rd_table_row_at(tab, i, &k, ls, c);
            if (k == key)
                return row;
        }
    }
    return NULL;
}

static void same_rows(rd_tabletool *a, rd_tabletool *b) {
    const rd_ckpt_manifest *ma = rd_tabletool_manifest(a);
    for (uint32_t t = 0; t < ma->n_tables; t++) {
        size_t nf = ma->tables[t].dim * (1 + ma->tables[t].slots), na = 0, nb = 0;
        for (uint32_t s = 0; s < ma->n_shards; s++) {
            rd_table *tab = rd_tabletool_table(a, (int)s, (int)t);
            na += rd_table_size(tab);
            for (size_t i = 0; i < rd_table_size(tab); i++) {
                uint64_t k, c, c2;
                int64_t ls, ls2;
                const float *row = rd_table_row_at(tab, i, &k, &ls, &c);
                const float *o = find_row(b, (int)t, k, &ls2, &c2);
                assert_non_null(o);
                assert_memory_equal(row, o, nf * sizeof(float));
                assert_true(ls == ls2 && c == c2);
            }
        }
        const rd_ckpt_manifest *mb = rd_tabletool_manifest(b);
        for (uint32_t s = 0; s < mb->n_shards; s++)
            nb += rd_table_size(rd_tabletool_table(b, (int)s, (int)t));
        assert_int_equal(na, nb);
    }
}

// Every pending admission count of a is in b with the same count and last-seen, and b has as
// many.
static void same_pending(rd_tabletool *a, rd_tabletool *b) {
    const rd_ckpt_manifest *ma = rd_tabletool_manifest(a), *mb = rd_tabletool_manifest(b);
    for (uint32_t t = 0; t < ma->n_tables; t++) {
        size_t na = 0, nb = 0;
        for (uint32_t s = 0; s < ma->n_shards; s++) {
            size_t cur = 0;
            uint64_t k;
            uint32_t cnt;
            int64_t ls;
            const rd_table *ta = rd_tabletool_table(a, (int)s, (int)t);
            while (rd_table_pending_next(ta, &cur, &k, &cnt, &ls)) {
                na++;
                int found = 0;
                for (uint32_t q = 0; q < mb->n_shards && !found; q++) {
                    size_t c2 = 0;
                    uint64_t k2;
                    uint32_t cnt2;
                    int64_t ls2;
                    const rd_table *tb = rd_tabletool_table(b, (int)q, (int)t);
                    while (!found && rd_table_pending_next(tb, &c2, &k2, &cnt2, &ls2))
                        found = k2 == k && cnt2 == cnt && ls2 == ls;
                }
                assert_true(found);
            }
        }
        for (uint32_t s = 0; s < mb->n_shards; s++)
            nb += rd_table_pending_size(rd_tabletool_table(b, (int)s, (int)t));
        assert_int_equal(na, nb);
    }
}

static void test_reshard(void **state) {
    (void)state;
    char p3[300], p5[300], back[300];
    path(p3, sizeof p3, "p3");
    path(p5, sizeof p5, "p5");
    path(back, sizeof back, "back3");
    make_ckpt(p3, 3);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_tabletool *a = open_tt(p3);
    assert_int_equal(rd_tabletool_write(a, p5, 5, &eb), RD_OK);
    assert_int_equal(rd_ckpt_verify(p5, &eb), RD_OK);
    rd_tabletool *b = open_tt(p5);
    const rd_ckpt_manifest *mb = rd_tabletool_manifest(b);
    assert_int_equal(mb->n_shards, 5);
    size_t pend_a = 0, pend_b = 0;
    for (int t = 0; t < 2; t++) {
        for (int s = 0; s < 5; s++) {
            rd_table *tab = rd_tabletool_table(b, s, t);
            for (size_t i = 0; i < rd_table_size(tab); i++) {
                uint64_t k;
                rd_table_row_at(tab, i, &k, NULL, NULL);
                assert_int_equal(rd_shard_of(k, 5), s);
            }
            size_t cur = 0;
            uint64_t k;
            uint32_t cnt;
            int64_t ls;
            while (rd_table_pending_next(tab, &cur, &k, &cnt, &ls)) {
                assert_int_equal(rd_shard_of(k, 5), s);
                pend_b++;
            }
        }
        for (int s = 0; s < 3; s++)
            pend_a += rd_table_pending_size(rd_tabletool_table(a, s, t));
    }
    assert_true(pend_a > 0);
    assert_int_equal(pend_a, pend_b);
    same_rows(a, b);
    same_rows(b, a);
    // Back to 3 shards: the same rows again; and writing over an existing dir is refused.
    assert_int_equal(rd_tabletool_write(b, back, 3, &eb), RD_OK);
    rd_tabletool *c = open_tt(back);
    same_rows(a, c);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tabletool_write(b, back, 3, &eb), RD_ERR_EXISTS);
    rd_tabletool_close(a);
    rd_tabletool_close(b);
    rd_tabletool_close(c);
}

// fill_spread, plus on shard 0 one pending key that belongs to shard 1 (every row in place).
static void fill_pending_astray(rd_table *tab, int t, int s, int P, int arg) {
    fill_spread(tab, t, s, P, arg);
    if (s != 0)
        return;
    uint64_t key = 1000003;
    while (rd_shard_of(key, P) != 1)
        key++;
    float out[8];
    assert_int_equal(rd_table_pull(tab, &key, 1, 77, out), RD_OK);
}

// A checkpoint whose only misplaced key is a pending one, rewritten with the same shard count:
// the pending key moves to its shard like a misplaced row would. (Catches the misplaced scan
// skipping pending keys, which let the write copy the shards as they are.)
static void test_pending_astray(void **state) {
    (void)state;
    char in[300], out[300];
    path(in, sizeof in, "astray");
    path(out, sizeof out, "astray_fixed");
    write_ckpt(in, 2, 0, fill_pending_astray, 0);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_tabletool *a = open_tt(in);
    assert_int_equal(rd_tabletool_write(a, out, 2, &eb), RD_OK);
    rd_tabletool *b = open_tt(out);
    size_t pend_a = 0, pend_b = 0;
    for (int t = 0; t < 2; t++)
        for (int s = 0; s < 2; s++) {
            pend_a += rd_table_pending_size(rd_tabletool_table(a, s, t));
            rd_table *tab = rd_tabletool_table(b, s, t);
            size_t cur = 0;
            uint64_t k;
            uint32_t cnt;
            int64_t ls;
            while (rd_table_pending_next(tab, &cur, &k, &cnt, &ls)) {
                if (rd_shard_of(k, 2) != s)
                    fail_msg("table %d: pending key %llu in shard %d, belongs to %d", t,
                             (unsigned long long)k, s, rd_shard_of(k, 2));
                pend_b++;
            }
        }
    assert_int_equal(pend_a, pend_b);
    same_pending(a, b);
    rd_tabletool_close(a);
    rd_tabletool_close(b);
}

static int same_file(const char *x, const char *y) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", x, y);
    return system(cmd) == 0;
}

// Import a text/binary file given as a string; returns the status, eb filled.
static int import_text(rd_tabletool *tt, int t, const char *text, size_t len, rd_errbuf *eb) {
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    rewind(f);
    rd_errbuf_clear(eb);
    int rc = rd_tabletool_import(tt, t, f, "in.tsv", NULL, eb);
    fclose(f);
    return rc;
}

static void test_compact_evict_export(void **state) {
    (void)state;
    char src[300], cp[300], ev[300], m1[320], m2[320];
    path(src, sizeof src, "src");
    path(cp, sizeof cp, "compact");
    path(ev, sizeof ev, "evicted");
    make_ckpt(src, 2);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_tabletool *a = open_tt(src);
    assert_int_equal(rd_tabletool_write(a, cp, 0, &eb), RD_OK);
    snprintf(m1, sizeof m1, "%s/MANIFEST", src);
    snprintf(m2, sizeof m2, "%s/MANIFEST", cp);
    assert_true(same_file(m1, m2)); // identical shard CRCs, counters and totals
    // Evict: by age (last seen < 150) on table 0, by count (< 3 updates) on table 1.
    uint64_t gone_age = 0, gone_count = 0, want_age = 0, want_count = 0;
    for (int s = 0; s < 2; s++) {
        rd_table *t0 = rd_tabletool_table(a, s, 0), *t1 = rd_tabletool_table(a, s, 1);
        for (size_t i = 0; i < rd_table_size(t0); i++) {
            int64_t ls;
            rd_table_row_at(t0, i, NULL, &ls, NULL);
            want_age += ls < 150;
        }
        for (size_t i = 0; i < rd_table_size(t1); i++) {
            uint64_t c;
            rd_table_row_at(t1, i, NULL, NULL, &c);
            want_count += c < 3;
        }
    }
    assert_int_equal(rd_tabletool_evict(a, 0, 150, 0, &gone_age, &eb), RD_OK);
    assert_int_equal(rd_tabletool_evict(a, 1, INT64_MIN, 3, &gone_count, &eb), RD_OK);
    assert_true(want_age > 0 && want_count > 0);
    assert_int_equal(gone_age, want_age);
    assert_int_equal(gone_count, want_count);
    for (int s = 0; s < 2; s++) {
        rd_table *t0 = rd_tabletool_table(a, s, 0);
        for (size_t i = 0; i < rd_table_size(t0); i++) {
            int64_t ls;
            rd_table_row_at(t0, i, NULL, &ls, NULL);
            assert_true(ls >= 150);
        }
        size_t cur = 0;
        uint64_t k;
        uint32_t cnt;
        int64_t ls;
        while (rd_table_pending_next(t0, &cur, &k, &cnt, &ls))
            assert_true(ls >= 150);
    }
    assert_int_equal(rd_tabletool_write(a, ev, 0, &eb), RD_OK);
    assert_int_equal(rd_ckpt_verify(ev, &eb), RD_OK);

    // Export -> import, both formats, into a fresh load of the source.
    for (int fmt = 0; fmt < 2; fmt++) {
        rd_tabletool *x = open_tt(src), *y = open_tt(src);
        FILE *f = tmpfile();
        assert_int_equal(rd_tabletool_export(x, 0, fmt, f, &eb), RD_OK);
        // Empty y's table 0 through an eviction of everything, then import.
        uint64_t n = 0;
        assert_int_equal(rd_tabletool_evict(y, 0, INT64_MAX, 0, &n, &eb), RD_OK);
        assert_true(n > 0);
        rewind(f);
        // The pending admission counts go along (they were dropped: a resume from the import
        // was no longer the same run).
        rd_tabletool_imported im;
        assert_int_equal(rd_tabletool_import(y, 0, f, "export", &im, &eb), RD_OK);
        same_rows(x, y);
        same_rows(y, x);
        same_pending(x, y);
        assert_true(im.pending > 0 && im.has_pending && im.dropped == 0);
        if (fmt == RD_TABLETOOL_BIN) {
            // A flipped byte in the middle: refused, and the table is untouched.
            fseek(f, 0, SEEK_END);
            long len = ftell(f);
            fseek(f, len / 2, SEEK_SET);
            int ch = fgetc(f);
            fseek(f, len / 2, SEEK_SET);
            fputc(ch ^ 0x20, f);
            rewind(f);
            rd_errbuf_clear(&eb);
            assert_int_equal(rd_tabletool_import(y, 0, f, "export", NULL, &eb), RD_ERR_CORRUPT);
            assert_non_null(strstr(eb.msg, "CRC"));
            same_rows(x, y);
            // The rows of another table of the same layout (the name in the header changed, the
            // CRC made whole again): refused by name, the table untouched.
            fseek(f, len / 2, SEEK_SET);
            fputc(ch, f); // undo the flip
            unsigned char *buf = rd_xmalloc((size_t)len);
            rewind(f);
            assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
            memset(buf + 32, 0, RD_NAME_MAX);
            memcpy(buf + 32, "emb_x", 5);
            uint32_t crc = rd_crc32c(0, buf, (size_t)len - 4);
            memcpy(buf + len - 4, &crc, 4);
            rd_errbuf_clear(&eb);
            assert_int_equal(import_text(y, 0, (const char *)buf, (size_t)len, &eb), RD_ERR_SCHEMA);
            assert_non_null(strstr(eb.msg,
                                   "rows of table emb_x, but they are imported into table emb_a: "
                                   "keys are hashed with their table's name"));
            assert_null(strstr(eb.msg, "edit"));
            same_rows(x, y);
            // A version-1 export (no pending field, no pending records) still imports; the
            // table then has no pending counts, and the import says how many it dropped.
            memcpy(buf + 32, "emb_a", 5);
            uint64_t rows;
            memcpy(&rows, buf + 24, 8);
            size_t nf = rd_tabletool_manifest(x)->tables[0].dim *
                        (1 + rd_tabletool_manifest(x)->tables[0].slots);
            size_t body = (size_t)rows * (24 + nf * sizeof(float));
            size_t hlen1 = 8 + 16 + 8 + RD_NAME_MAX, len1 = hlen1 + body + 4;
            unsigned char *v1 = rd_xmalloc(len1);
            memcpy(v1, buf, hlen1);
            uint32_t one = 1;
            memcpy(v1 + 8, &one, 4);
            memcpy(v1 + hlen1, buf + hlen1 + 8, body);
            crc = rd_crc32c(0, v1, len1 - 4);
            memcpy(v1 + len1 - 4, &crc, 4);
            FILE *g = tmpfile();
            assert_int_equal(fwrite(v1, 1, len1, g), len1);
            rewind(g);
            rd_errbuf_clear(&eb);
            assert_int_equal(rd_tabletool_import(y, 0, g, "v1", &im, &eb), RD_OK);
            same_rows(x, y);
            assert_true(!im.has_pending && im.pending == 0 && im.dropped > 0);
            fclose(g);
            rd_free(v1);
            rd_free(buf);
        }
        fclose(f);
        rd_tabletool_close(x);
        rd_tabletool_close(y);
    }
    rd_tabletool_close(a);
}

// Hand-edited or foreign import files: a negative key or count is an error (strtoull would wrap
// "-1" to 2^64-1), a file that only starts like a binary export is named as such, a folder is a
// read error (not "empty"), and rows at both ends of the int64 time range give a sane histogram.
static void test_import_bad_input(void **state) {
    (void)state;
    char src[300];
    path(src, sizeof src, "imp_src");
    make_ckpt(src, 2);
    rd_tabletool *tt = open_tt(src);
    rd_errbuf eb;
    // emb_b: dim 3, sgd (no slots): key, last_seen, count, 3 floats.
    const char *neg_key = "# table emb_b dim 3 slots 0 optimizer sgd rows 1\n"
                          "-1\t5\t1\t0.1\t0.2\t0.3\n";
    assert_int_equal(import_text(tt, 1, neg_key, strlen(neg_key), &eb), RD_ERR_PARSE);
    assert_non_null(strstr(eb.msg, "in.tsv:2"));
    const char *neg_count = "# table emb_b dim 3 slots 0 optimizer sgd rows 1\n"
                            "7\t5\t-5\t0.1\t0.2\t0.3\n";
    assert_int_equal(import_text(tt, 1, neg_count, strlen(neg_count), &eb), RD_ERR_PARSE);
    assert_non_null(strstr(eb.msg, "in.tsv:2: expected key"));
    const char *space_key = "# table emb_b dim 3 slots 0 optimizer sgd rows 1\n"
                            " 7\t5\t1\t0.1\t0.2\t0.3\n";
    assert_int_equal(import_text(tt, 1, space_key, strlen(space_key), &eb), RD_ERR_PARSE);
    assert_non_null(strstr(eb.msg, "in.tsv:2: expected key"));
    // The header of an export is checked against the file and the table: a file cut short
    // (fewer rows than the header counts, or a last line without its line break), more rows
    // than counted, another table's name, another optimizer. All imported before without a word.
    static const struct {
        const char *text, *expect;
    } hdr[] = {
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 3\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:2: header says 3 rows, file has 1 (truncated?)"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1\n7\t5\t1\t0.1\t0.2\t0.3\n"
         "8\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:3: header says 1 rows, file has 2"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1\n7\t5\t1\t0.1\t0.2\t0.3",
         "in.tsv:2: the file ends inside this line (truncated?)"},
        {"# table other dim 3 slots 0 optimizer sgd rows 1\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: rows of table other, but they are imported into table emb_b: keys are hashed"},
        // No header line, a header without its row count, another first line: the name,
        // optimizer and row count could not be checked, and a cut file imported.
        {"7\t5\t1\t0.1\t0.2\t0.3\n", "in.tsv:1: no '# table NAME"},
        {"# table emb_b dim 3 slots 0 optimizer sgd\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: the header line has no 'rows N'"},
        {"# exported by hand\n7\t5\t1\t0.1\t0.2\t0.3\n", "in.tsv:1: no '# table NAME"},
        // Pending admission counts: counted by the header, well formed, keys not rows.
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 2\n7\t5\t1\t0.1\t0.2\t0.3\n"
         "pending\t9\t5\t1\n",
         "in.tsv:3: header says 2 pending counts, file has 1 (truncated?)"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1\n7\t5\t1\t0.1\t0.2\t0.3\n"
         "pending\t9\t5\t1\n",
         "in.tsv:3: a pending line, but the header counts none"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 1\n7\t5\t1\t0.1\t0.2\t0.3\n"
         "pending\t9\t5\t0\n",
         "in.tsv:3: expected 'pending', key, last_seen and a count"},
        // A repeated key names the line of its repeat and of its first occurrence (it named
        // neither), also across comment lines and when a later-sorted key repeats first.
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 1\n7\t5\t1\t0.1\t0.2\t0.3\n"
         "pending\t7\t5\t2\n",
         "in.tsv:3: pending count 0: key 7 appears twice (first as row 0 on line 2)"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 3\n7\t5\t1\t0.1\t0.2\t0.3\n# note\n"
         "8\t5\t1\t0.1\t0.2\t0.3\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:5: row 2: key 7 appears twice (first as row 0 on line 2)"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 4\n9\t5\t1\t0.1\t0.2\t0.3\n"
         "9\t5\t1\t0.1\t0.2\t0.3\n7\t5\t1\t0.1\t0.2\t0.3\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:3: row 1: key 9 appears twice (first as row 0 on line 2)"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 0 pending 2\npending\t4\t5\t1\n"
         "# note\npending\t4\t5\t1\n",
         "in.tsv:4: pending count 1: key 4 appears twice (first as pending count 0 on line 2)"},
        // Every other check of an entry names its line too.
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 1\n7\t5\t1\t0.1\t0.2\t0.3\n"
         "pending\t0\t5\t2\n",
         "in.tsv:3: pending count 0 has key 0"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 2\n# note\n7\t5\t1\t0.1\t0.2\t0.3\n"
         "0\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:4: row 1 has key 0 (reserved)"},
        {"# table emb_b dim 3 slots 0 optimizer adam rows 1\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: header says optimizer adam, but table emb_b uses sgd"},
        // Trailing junk after the header's last field, and counts that are not digits: sscanf
        // stopped at the first mismatch, and each of these imported without a word.
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 junk\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: unexpected ' junk' after 'rows N' in the header line"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1x\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: unexpected 'x' after 'rows N'"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: unexpected ' pending' after 'rows N'"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 0 rows 1\n"
         "7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: unexpected ' rows 1' after 'pending M'"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 0\t#\r\n"
         "7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: unexpected '\t#' after 'pending M'"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows -1\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: the header line's rows count is not a non-negative integer"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending +0\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: the header line's pending count is not a non-negative integer"},
        // Separators as written: a space in a sscanf format is "any whitespace, or none", so a
        // field glued to its keyword or to the previous value, or a doubled space or a tab, was
        // taken as a valid header.
        {"# table emb_b dim 3 slots 0 optimizer sgd rows5\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: ' rows5' in the header line where ' rows N' was expected"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1pending 0\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: 'pending 0' in the header line where ' pending M' was expected"},
        {"# table emb_b dim3 slots 0 optimizer sgd rows 1\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: ' dim3 slots 0 optimizer sgd rows 1' in the header line where ' dim D' was "
         "expected"},
        {"# table emb_b dim 3 slots  0 optimizer sgd rows 1\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: ' slots  0 optimizer sgd rows 1' in the header line where ' slots S' was "
         "expected"},
        {"# table emb_b dim 3 slots 0 optimizer\tsgd rows 1\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: ' optimizer\tsgd rows 1' in the header line where ' optimizer OPT' was "
         "expected"},
        {"# table  emb_b dim 3 slots 0 optimizer sgd rows 1\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: '# table  emb_b dim 3 slots 0 optimizer s...' in the header line where "
         "'# table NAME' was expected"},
        {"# table emb_b dim 3 slots 0 optimizer sgd  rows 1 pending 0\n7\t5\t1\t0.1\t0.2\t0.3\n",
         "in.tsv:1: '  rows 1 pending 0' in the header line where ' rows N' was expected"},
    };
    for (size_t i = 0; i < sizeof hdr / sizeof hdr[0]; i++) {
        int rc = import_text(tt, 1, hdr[i].text, strlen(hdr[i].text), &eb);
        if (rc == RD_OK || !strstr(eb.msg, hdr[i].expect))
            fail_msg("header case %zu: rc %d, message '%s' lacks '%s'", i, rc, eb.msg,
                     hdr[i].expect);
    }
    // A NUL byte inside a line: strlen stopped there, and the rest of the line was ignored (a
    // row with junk after its values, a header with a count after the NUL: imported as valid).
    static const char nul_row[] = "# table emb_b dim 3 slots 0 optimizer sgd rows 1\n"
                                  "7\t5\t1\t0.1\t0.2\t0.3\0junk\n# end\n";
    static const char nul_header[] = "# table emb_b dim 3 slots 0 optimizer sgd rows 1\0 rows 9\n"
                                     "7\t5\t1\t0.1\t0.2\t0.3\n";
    rd_errbuf_clear(&eb);
    assert_int_equal(import_text(tt, 1, nul_row, sizeof nul_row - 1, &eb), RD_ERR_PARSE);
    assert_non_null(strstr(eb.msg, "in.tsv:2: a NUL byte at column 18"));
    rd_errbuf_clear(&eb);
    assert_int_equal(import_text(tt, 1, nul_header, sizeof nul_header - 1, &eb), RD_ERR_PARSE);
    assert_non_null(strstr(eb.msg, "in.tsv:1: a NUL byte"));
    // The table is untouched by the refused imports.
    rd_tabletool *ref = open_tt(src);
    same_rows(ref, tt);
    rd_tabletool_close(ref);

    // A binary export has no lines: a repeated key, key 0 or a non-finite value is named by
    // its entry and byte offset (header 72 bytes, rows of 24 + 3 * 4 bytes).
    {
        float nan = NAN;
        const struct {
            uint64_t key[3];
            int nan_at;
            const char *expect;
        } bin_case[] = {
            {{7, 8, 7},
             -1,
             "in.tsv: row 2 (byte 144): key 7 appears twice (first as row 0, byte 72)"},
            {{7, 0, 8}, -1, "in.tsv: row 1 (byte 108) has key 0 (reserved)"},
            {{7, 8, 9}, 2, "in.tsv: row 2 (byte 144) (key 9) has a non-finite value"},
        };
        for (size_t c = 0; c < sizeof bin_case / sizeof bin_case[0]; c++) {
            unsigned char b[72 + 3 * 36 + 4];
            memset(b, 0, sizeof b);
            memcpy(b, "RDTBLEXP", 8);
            const uint32_t hv[4] = {2, 3, 0, RD_OPT_SGD};
            memcpy(b + 8, hv, sizeof hv);
            const uint64_t rows = 3;
            memcpy(b + 24, &rows, 8);
            memcpy(b + 32, "emb_b", 5); // name[32], then u64 pending 0
            for (int i = 0; i < 3; i++) {
                unsigned char *row = b + 72 + 36 * i;
                const int64_t ls = 5;
                const uint64_t cnt = 1;
                const float v[3] = {0.1f, i == bin_case[c].nan_at ? nan : 0.2f, 0.3f};
                memcpy(row, &bin_case[c].key[i], 8);
                memcpy(row + 8, &ls, 8);
                memcpy(row + 16, &cnt, 8);
                memcpy(row + 24, v, sizeof v);
            }
            uint32_t crc = rd_crc32c(0, b, sizeof b - 4);
            memcpy(b + sizeof b - 4, &crc, 4);
            int rc = import_text(tt, 1, (const char *)b, sizeof b, &eb);
            if (rc != RD_ERR_PARSE || !strstr(eb.msg, bin_case[c].expect))
                fail_msg("binary case %zu: rc %d, message '%s' lacks '%s'", c, rc, eb.msg,
                         bin_case[c].expect);
        }
    }

    // A NULL handle, file or output and a table index out of range are refused with RD_ERR_ARG
    // naming the function (an index past the manifest's tables read beyond it), the table
    // unchanged.
    {
        char ok_text[] = "# table emb_b dim 3 slots 0 optimizer sgd rows 0\n";
        FILE *g = fmemopen(ok_text, sizeof ok_text - 1, "rb");
        rd_tabletool_hist h;
        rd_tabletool_imported im;
        const int T = (int)rd_tabletool_manifest(tt)->n_tables;
        static const struct {
            int table;
            int null_file;
        } imp[] = {{-1, 0}, {99, 0}, {1, 1}};
        for (size_t c = 0; c < sizeof imp / sizeof imp[0]; c++) {
            rd_errbuf_clear(&eb);
            im.rows = 5;
            int rc = rd_tabletool_import(tt, imp[c].table == 99 ? T : imp[c].table,
                                         imp[c].null_file ? NULL : g, "in.tsv", &im, &eb);
            if (rc != RD_ERR_ARG ||
                !strstr(eb.msg, "rd_tabletool_import_keys_of: invalid argument: "))
                fail_msg("import case %zu: rc %d, '%s'", c, rc, eb.msg);
            assert_int_equal(im.rows, 0);
        }
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_import(NULL, 0, g, "in.tsv", NULL, &eb), RD_ERR_ARG);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_export(tt, T, RD_TABLETOOL_TSV, stdout, &eb), RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, "rd_tabletool_export: invalid argument: table"));
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_export(tt, 1, 7, stdout, &eb), RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, "rd_tabletool_export: invalid argument: format"));
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_export(tt, 1, RD_TABLETOOL_TSV, NULL, &eb), RD_ERR_ARG);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_stats(tt, T, &h, &eb), RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, "rd_tabletool_stats: invalid argument: table"));
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_stats(NULL, 0, &h, &eb), RD_ERR_ARG);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_evict(tt, T, 5, 0, NULL, &eb), RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, "rd_tabletool_evict: invalid argument: table"));
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_write(tt, NULL, 0, &eb), RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, "rd_tabletool_write: invalid argument: out != NULL"));
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_write(NULL, "x", 0, &eb), RD_ERR_ARG);
        rd_tabletool *o2 = (rd_tabletool *)&eb;
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_open(NULL, &o2, &eb), RD_ERR_ARG);
        assert_null(o2);
        assert_non_null(strstr(eb.msg, "rd_tabletool_open: invalid argument: dir != NULL"));
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_open_stream(src, 0, NULL, &eb), RD_ERR_ARG);
        assert_int_equal(rd_tabletool_find(NULL, "emb_b"), -1);
        assert_int_equal(rd_tabletool_find(tt, NULL), -1);
        assert_null(rd_tabletool_manifest(NULL));
        assert_null(rd_tabletool_table(tt, 0, T));
        assert_null(rd_tabletool_table(tt, -1, 0));
        uint64_t rows = 1, pend = 1;
        rd_tabletool_counts(NULL, -1, &rows, &pend);
        assert_true(rows == 0 && pend == 0);
        fclose(g);
        rd_tabletool *st = NULL;
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_open_stream(src, 0, &st, &eb), RD_OK);
        assert_null(rd_tabletool_table(st, 0, 0)); // streamed: it asserted
        rd_tabletool_close(st);
    }

    // Starts with 'R' like "RDTBLEXP", but is a checkpoint MANIFEST ("RDCKMANI...").
    char bin[256];
    memset(bin, 0, sizeof bin);
    memcpy(bin, "RDCKMANI", 8);
    assert_int_equal(import_text(tt, 1, bin, sizeof bin, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "not a table export"));

    // A folder opens with fopen on Linux; reading it fails (EISDIR).
    FILE *d = fopen(g_root, "rb");
    if (d) {
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_import(tt, 1, d, g_root, NULL, &eb), RD_ERR_IO);
        assert_null(strstr(eb.msg, "empty"));
        fclose(d);
    }

    // A consistent header (format 1, and format 2 with pending counts) imports.
    const char *ok_hdr = "# table emb_b dim 3 slots 0 optimizer sgd rows 2\n"
                         "7\t5\t1\t0.1\t0.2\t0.3\n8\t5\t1\t0.1\t0.2\t0.3\n";
    assert_int_equal(import_text(tt, 1, ok_hdr, strlen(ok_hdr), &eb), RD_OK);
    const char *ok_pend = "# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 1\n"
                          "7\t5\t1\t0.1\t0.2\t0.3\n# a comment\npending\t9\t-4\t3\n";
    assert_int_equal(import_text(tt, 1, ok_pend, strlen(ok_pend), &eb), RD_OK);
    {
        rd_tabletool_hist hp;
        assert_int_equal(rd_tabletool_stats(tt, 1, &hp, &eb), RD_OK);
        assert_int_equal(hp.rows, 1);
        assert_int_equal(hp.pending, 1);
    }
    // The same file saved with CRLF line ends (an editor or a spreadsheet on Windows) imports
    // as it is: it was refused at line 2 as "expected key, ... tab separated".
    const char *crlf = "# table emb_b dim 3 slots 0 optimizer sgd rows 2 pending 1\r\n"
                       "7\t5\t1\t0.1\t0.2\t0.3\r\n8\t5\t1\t0.1\t0.2\t0.5\r\n# a comment\r\n"
                       "pending\t9\t-4\t3\r\n";
    int rc = import_text(tt, 1, crlf, strlen(crlf), &eb);
    if (rc != RD_OK)
        fail_msg("CRLF import: rc %d, %s", rc, eb.msg);
    {
        rd_tabletool_hist hp;
        assert_int_equal(rd_tabletool_stats(tt, 1, &hp, &eb), RD_OK);
        assert_int_equal(hp.rows, 2);
        assert_int_equal(hp.pending, 1);
    }

    // Only the CR of a line's CRLF goes: a CR (or any blank) elsewhere in a line is refused, as
    // a blank before a key is. strtoll and strtof skip leading blanks, so one before a
    // last_seen or a float was read as if absent.
    static const struct {
        const char *text, *expect;
    } cr[] = {
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1\r\n7\t5\t1\t0.1\t0.2\t\r0.3\r\n",
         "in.tsv:2: expected key"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1\r\n7\t\r5\t1\t0.1\t0.2\t0.3\r\n",
         "in.tsv:2: expected key"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1\n7\t5\t1\t 0.1\t0.2\t0.3\n",
         "in.tsv:2: expected key"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1\r\n7\t5\t1\t0.1\t0.2\t0.3\r\r\n",
         "in.tsv:2: expected key"},
        {"# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 1\r\n7\t5\t1\t0.1\t0.2\t0.3\r\n"
         "pending\t9\t\r-4\t3\r\n",
         "in.tsv:3: expected 'pending', key, last_seen and a count"},
    };
    for (size_t i = 0; i < sizeof cr / sizeof cr[0]; i++) {
        rc = import_text(tt, 1, cr[i].text, strlen(cr[i].text), &eb);
        if (rc == RD_OK || !strstr(eb.msg, cr[i].expect))
            fail_msg("CR case %zu: rc %d, message '%s' lacks '%s'", i, rc, eb.msg, cr[i].expect);
    }

    // Last-seen at INT64_MIN and INT64_MAX: the age of the oldest row is 2^64 - 1 seconds,
    // computed without signed overflow and counted in the last bucket, not in bucket 0.
    const char *extreme = "# table emb_b dim 3 slots 0 optimizer sgd rows 2\n"
                          "7\t-9223372036854775808\t1\t0.1\t0.2\t0.3\n"
                          "8\t9223372036854775807\t2\t0.1\t0.2\t0.3\n";
    assert_int_equal(import_text(tt, 1, extreme, strlen(extreme), &eb), RD_OK);
    rd_tabletool_hist h;
    assert_int_equal(rd_tabletool_stats(tt, 1, &h, &eb), RD_OK);
    assert_int_equal(h.rows, 2);
    assert_true(h.oldest == INT64_MIN && h.newest == INT64_MAX);
    assert_int_equal(h.age[0], 1);
    assert_int_equal(h.age[RD_TABLETOOL_HIST - 1], 1);

    // A rewrite refuses to carry a damaged dense.bin into the new checkpoint.
    char dense[400], out[300];
    snprintf(dense, sizeof dense, "%s/%s", src, RD_TRAIN_CKPT_DENSE);
    FILE *df = fopen(dense, "wb");
    assert_non_null(df);
    for (int i = 0; i < 500; i++)
        fputc(i & 0xff, df);
    fclose(df);
    path(out, sizeof out, "imp_out");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tabletool_write(tt, out, 0, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "not copied along"));
    struct stat st;
    assert_int_not_equal(stat(out, &st), 0);
    rd_tabletool_close(tt);
}

static void test_dense_and_dirs(void **state) {
    (void)state;
    rd_model m;
    memset(&m, 0, sizeof m);
    m.n_slab = m.n_params = 37;
    m.opt_slots = 2;
    m.params = rd_xmalloc(37 * sizeof(float));
    m.opt_state = rd_xmalloc(74 * sizeof(float));
    for (int i = 0; i < 37; i++)
        m.params[i] = 0.5f * (float)i - 3.0f;
    for (int i = 0; i < 74; i++)
        m.opt_state[i] = 1e-3f * (float)i;
    rd_dense_optim o;
    memset(&o, 0, sizeof o);
    o.kind = RD_DENSE_ADAM;
    o.t = 123;
    rd_train_pos pos;
    memset(&pos, 0, sizeof pos);
    pos.step = 40;
    pos.epoch = 1;
    pos.window = -1;
    pos.range_step = 7;
    pos.config_hash = 0xabcdef;
    snprintf(pos.job, sizeof pos.job, "student");
    char root[300], part[400], final[400];
    path(root, sizeof root, "ckroot");
    snprintf(part, sizeof part, "%s/student/.step-000000000040.partial", root);
    assert_int_equal(rd_train_ckpt_path(root, "student", 40, final, sizeof final), RD_OK);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_mkdir_p(part, NULL), RD_OK);
    // A NaN or inf parameter or optimizer slot is a diverged optimizer's (behind a ReLU it
    // leaves the loss finite): refused, naming it, and nothing is written.
    char dense_file[450];
    snprintf(dense_file, sizeof dense_file, "%s/dense.bin", part);
    struct stat dst;
    m.params[5] = NAN;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_write_dense(part, &pos, &m, &o, &eb), RD_ERR_DIVERGED);
    assert_non_null(strstr(eb.msg, "parameter 5 "));
    assert_int_not_equal(stat(dense_file, &dst), 0);
    m.params[5] = 0.5f * 5.0f - 3.0f;
    m.opt_state[37 + 2] = INFINITY; // slot 1 of parameter 2
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_write_dense(part, &pos, &m, &o, &eb), RD_ERR_DIVERGED);
    assert_non_null(strstr(eb.msg, "optimizer slot 1 of parameter 2 "));
    assert_int_not_equal(stat(dense_file, &dst), 0);
    m.opt_state[37 + 2] = 1e-3f * 39.0f;
    assert_int_equal(rd_train_ckpt_write_dense(part, &pos, &m, &o, &eb), RD_OK);
    // Read back into a zeroed model.
    rd_model z = m;
    z.params = rd_xcalloc(37, sizeof(float));
    z.opt_state = rd_xcalloc(74, sizeof(float));
    rd_dense_optim oz;
    memset(&oz, 0, sizeof oz);
    rd_train_pos pz;
    assert_int_equal(rd_train_ckpt_read_dense(part, 0xabcdef, &pz, &z, &oz, &eb), RD_OK);
    assert_memory_equal(z.params, m.params, 37 * sizeof(float));
    assert_memory_equal(z.opt_state, m.opt_state, 74 * sizeof(float));
    assert_int_equal(oz.t, 123);
    assert_true(pz.step == 40 && pz.epoch == 1 && pz.window == -1 && pz.range_step == 7);
    assert_string_equal(pz.job, "student");
    assert_false(pz.has_ident); // written without an identity: read as unknown, not as 0 events
    // Refusals.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_read_dense(part, 0x1234, &pz, &z, &oz, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "config hash"));
    z.n_slab = z.n_params = 36;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_read_dense(part, 0, &pz, &z, &oz, &eb), RD_ERR_SCHEMA);
    z.n_slab = z.n_params = 37;
    char file[450];
    snprintf(file, sizeof file, "%s/dense.bin", part);
    FILE *f = fopen(file, "r+b");
    assert_non_null(f);
    fseek(f, 200, SEEK_SET);
    fputc(0x77, f);
    fclose(f);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_read_dense(part, 0, &pz, &z, &oz, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "CRC"));
    // A dense.bin grown to 100 GiB (a sparse file: its header intact, zeros after) is refused by
    // its size before anything is read: it used to be loaded whole, and the allocation aborted.
    assert_int_equal(rd_train_ckpt_write_dense(part, &pos, &m, &o, &eb), RD_OK);
    assert_int_equal(truncate(file, (off_t)100 << 30), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_read_pos(part, &pz, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "the header implies"));
    // Directories: a dense.bin alone is not a complete checkpoint (no MANIFEST).
    assert_int_equal(rd_train_ckpt_write_dense(part, &pos, &m, &o, &eb), RD_OK);
    assert_int_equal(rd_train_ckpt_commit(part, final, &eb), RD_OK);
    char latest[400];
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_latest(root, "student", latest, sizeof latest, &eb),
                     RD_ERR_NOTFOUND);
    // Three complete checkpoints (a MANIFEST each) and one incomplete newer one.
    for (int64_t st = 10; st <= 40; st += 10) {
        char d[400], man[450];
        assert_int_equal(rd_train_ckpt_path(root, "student", st, d, sizeof d), RD_OK);
        assert_int_equal(rd_lmdbx_mkdir_p(d, NULL), RD_OK);
        if (st == 40)
            continue;
        snprintf(man, sizeof man, "%s/MANIFEST", d);
        f = fopen(man, "w");
        fputs("x", f);
        fclose(f);
    }
    assert_int_equal(rd_train_ckpt_latest(root, "student", latest, sizeof latest, &eb), RD_OK);
    assert_non_null(strstr(latest, "step-000000000030"));
    // A complete checkpoint under a name this module does not write ("step-90", a renamed
    // copy) is not a checkpoint of the timeline: latest ignores it.
    char odd[400], oddman[450];
    snprintf(odd, sizeof odd, "%s/student/step-90", root);
    assert_int_equal(rd_lmdbx_mkdir_p(odd, NULL), RD_OK);
    snprintf(oddman, sizeof oddman, "%s/MANIFEST", odd);
    f = fopen(oddman, "w");
    fputs("x", f);
    fclose(f);
    assert_int_equal(rd_train_ckpt_latest(root, "student", latest, sizeof latest, &eb), RD_OK);
    assert_non_null(strstr(latest, "step-000000000030"));
    char jd[350];
    snprintf(jd, sizeof jd, "%s/student", root);
    assert_int_equal(rd_train_ckpt_prune(jd, 40, 2, 0, &eb), RD_OK);
    char d10[400], d20[400], d40[400];
    rd_train_ckpt_path(root, "student", 10, d10, sizeof d10);
    rd_train_ckpt_path(root, "student", 20, d20, sizeof d20);
    rd_train_ckpt_path(root, "student", 40, d40, sizeof d40);
    struct stat st;
    assert_true(stat(d10, &st) != 0);
    assert_true(stat(d20, &st) == 0);
    assert_true(stat(d40, &st) == 0); // incomplete ones are not counted (nor removed) by prune
    // After a rerun committed step 15, the complete 20 and 30 of the earlier run are dropped.
    char d15[400], man15[450], d30[400];
    rd_train_ckpt_path(root, "student", 15, d15, sizeof d15);
    rd_train_ckpt_path(root, "student", 30, d30, sizeof d30);
    assert_int_equal(rd_lmdbx_mkdir_p(d15, NULL), RD_OK);
    snprintf(man15, sizeof man15, "%s/MANIFEST", d15);
    f = fopen(man15, "w");
    fputs("x", f);
    fclose(f);
    assert_int_equal(rd_train_ckpt_prune(jd, 15, 2, 0, &eb), RD_OK);
    assert_true(stat(d15, &st) == 0 && stat(d20, &st) != 0 && stat(d30, &st) != 0);
    assert_int_equal(rd_train_ckpt_latest(root, "student", latest, sizeof latest, &eb), RD_OK);
    assert_non_null(strstr(latest, "step-000000000015"));
    // A fresh run clears the job folder: every complete checkpoint (15 and 40 made complete
    // here) and the hidden crash leftovers go, ascending in the list; a step-N without a
    // MANIFEST stays (not a checkpoint); a second clear and a missing folder remove nothing.
    char man40[450], d50[400], hidden[400];
    snprintf(man40, sizeof man40, "%s/MANIFEST", d40);
    f = fopen(man40, "w");
    fputs("x", f);
    fclose(f);
    rd_train_ckpt_path(root, "student", 50, d50, sizeof d50);
    assert_int_equal(rd_lmdbx_mkdir_p(d50, NULL), RD_OK);
    snprintf(hidden, sizeof hidden, "%s/.step-000000000060.partial", jd);
    assert_int_equal(rd_lmdbx_mkdir_p(hidden, NULL), RD_OK);
    int64_t *gone = NULL;
    size_t n_gone = 0;
    assert_int_equal(rd_train_ckpt_clear(jd, &gone, &n_gone, &eb), RD_OK);
    assert_int_equal(n_gone, 2);
    assert_true(gone[0] == 15 && gone[1] == 40);
    rd_free(gone);
    assert_true(stat(d15, &st) != 0 && stat(d40, &st) != 0 && stat(hidden, &st) != 0);
    assert_true(stat(d50, &st) == 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_latest(root, "student", latest, sizeof latest, &eb),
                     RD_ERR_NOTFOUND);
    assert_int_equal(rd_train_ckpt_clear(jd, &gone, &n_gone, &eb), RD_OK);
    assert_true(n_gone == 0 && gone == NULL);
    char nowhere[400];
    snprintf(nowhere, sizeof nowhere, "%s/nojob", root);
    assert_int_equal(rd_train_ckpt_clear(nowhere, &gone, &n_gone, &eb), RD_OK);
    assert_true(n_gone == 0 && gone == NULL);
    // Retention for jobs in live distillation: besides the newest `keep`, the newest
    // `keep_starts` older checkpoints at the start of a phase (range_step 0) stay.
    // Steps 100..160; 110 and 130 are phase starts: keep 2 + 1 start keeps 150, 160 and 130.
    for (int64_t stp = 100; stp <= 160; stp += 10) {
        char d[400], man[450];
        assert_int_equal(rd_train_ckpt_path(root, "student", stp, d, sizeof d), RD_OK);
        assert_int_equal(rd_lmdbx_mkdir_p(d, NULL), RD_OK);
        pos.step = stp;
        pos.range_step = stp == 110 || stp == 130 ? 0 : 5;
        assert_int_equal(rd_train_ckpt_write_dense(d, &pos, &m, &o, &eb), RD_OK);
        snprintf(man, sizeof man, "%s/MANIFEST", d);
        f = fopen(man, "w");
        fputs("x", f);
        fclose(f);
    }
    assert_int_equal(rd_train_ckpt_prune(jd, 160, 2, 1, &eb), RD_OK);
    int64_t *left = NULL;
    size_t n_left = 0;
    assert_int_equal(rd_train_ckpt_list(root, "student", &left, &n_left, &eb), RD_OK);
    assert_int_equal(n_left, 3);
    assert_true(left[0] == 130 && left[1] == 150 && left[2] == 160);
    rd_free(left);
    // keep_starts 0: only the newest `keep`.
    assert_int_equal(rd_train_ckpt_prune(jd, 160, 2, 0, &eb), RD_OK);
    assert_int_equal(rd_train_ckpt_list(root, "student", &left, &n_left, &eb), RD_OK);
    assert_true(n_left == 2 && left[0] == 150 && left[1] == 160);
    rd_free(left);
    assert_int_equal(rd_train_ckpt_list(root, "nojob", &left, &n_left, &eb), RD_OK);
    assert_true(n_left == 0 && left == NULL);
    rd_free(m.params);
    rd_free(m.opt_state);
    rd_free(z.params);
    rd_free(z.opt_state);
}

// A run's identity record: the config of tests/scripts/resume.sh in small (two tables, one model).
static void ident_config(rd_config *cfg, rd_model_config *mc) {
    rd_config_defaults(cfg);
    cfg->run.seed = 5;
    cfg->ps.n_tables = 3;
    snprintf(cfg->ps.tables[0].name, RD_NAME_MAX, "s_user");
    snprintf(cfg->ps.tables[1].name, RD_NAME_MAX, "s_item");
    snprintf(cfg->ps.tables[2].name, RD_NAME_MAX, "unused");
    for (int t = 0; t < 3; t++)
        cfg->ps.tables[t].dim = 4;
    memset(mc, 0, sizeof *mc);
    snprintf(mc->name, RD_NAME_MAX, "small");
    mc->n_features = 2;
    snprintf(mc->features[0].field, RD_NAME_MAX, "user");
    snprintf(mc->features[0].table, RD_NAME_MAX, "s_user");
    snprintf(mc->features[1].field, RD_NAME_MAX, "item");
    snprintf(mc->features[1].table, RD_NAME_MAX, "s_item");
    mc->n_mlp = 1;
    mc->mlp[0] = 16;
}

// rd_train_ckpt_check of ck against a run built from (cfg, mc, info, ranks); the message is left
// in eb.
static int check_against(const rd_train_pos *ck,
                         const rd_config *cfg,
                         const rd_model_config *mc,
                         const rd_dataset_info *info,
                         int ranks,
                         rd_errbuf *eb) {
    rd_train_pos run;
    memset(&run, 0, sizeof run);
    snprintf(run.model, sizeof run.model, "%s", mc->name);
    rd_train_ckpt_ident(cfg, NULL, mc, info, ranks, &run);
    rd_errbuf_clear(eb);
    return rd_train_ckpt_check("CK", ck, &run, "DATA", 0xf, eb);
}

// Write the n bytes of a dense.bin image to file as file format `version` (the header's version
// field and the trailing CRC-32C set to match): an older build's file from a current one.
static void write_dense_as(const char *file, unsigned char *buf, size_t n, uint32_t version) {
    memcpy(buf + 8, &version, 4);
    uint32_t crc = rd_crc32c(0, buf, n - 4);
    memcpy(buf + n - 4, &crc, 4);
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

// A dense.bin whose position no run writes (its CRC intact: an edited file, or another tool's):
// window 2^31 - 1 inside the window, epoch 2^31 - 1 in the batch period, a negative step or
// range step. Each is refused by the reader (RD_ERR_CORRUPT naming the field), before `table
// verify`, `train --resume` or the trainer compute with it: `window + 1` and `epoch + 1`
// overflowed (signed, undefined; UBSan aborted `table verify`), and the others resumed a
// schedule that does not exist without an error.
static void test_dense_position_range(void **state) {
    (void)state;
    rd_model m;
    memset(&m, 0, sizeof m);
    m.n_slab = m.n_params = 5;
    m.params = rd_xcalloc(5, sizeof(float));
    rd_dense_optim o;
    memset(&o, 0, sizeof o);
    o.kind = RD_DENSE_SGD;
    char dir[300];
    path(dir, sizeof dir, "badpos");
    assert_int_equal(rd_lmdbx_mkdir_p(dir, NULL), RD_OK);
    static const struct {
        int64_t step, range_step;
        int32_t epoch, window;
        const char *needle;
    } bad[] = {
        {100, 3, 1, INT32_MAX, "window"}, {100, 0, INT32_MAX, -1, "epoch"},
        {100, 0, -2, -1, "epoch"},        {100, 0, 1, -2, "window"},
        {100, 0, 1, 10001, "window"},     {-1, 0, 0, -1, "step"},
        {100, -5, 0, -1, "range step"},   {100, 101, 0, -1, "range step"},
    };
    // A windows.tsv of no window (a batch-period checkpoint's), so that the window check
    // computes how many the position needs.
    char wfile[350];
    snprintf(wfile, sizeof wfile, "%s/%s", dir, RD_TRAIN_CKPT_WINDOWS);
    FILE *wf = fopen(wfile, "w");
    assert_non_null(wf);
    fputs("window\tn\tpositives\tusers\tauc\tauc_valid\tgauc\tgauc_valid\tgauc_users\t"
          "gauc_examples\tlogloss\tmean_pred\tmean_label\tcalibration\tcalibration_valid\t"
          "samples_per_s\n",
          wf);
    fclose(wf);
    rd_errbuf eb;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rd_train_pos pos;
        memset(&pos, 0, sizeof pos);
        pos.step = bad[k].step;
        pos.range_step = bad[k].range_step;
        pos.epoch = bad[k].epoch;
        pos.window = bad[k].window;
        snprintf(pos.job, sizeof pos.job, "student");
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_train_ckpt_write_dense(dir, &pos, &m, &o, &eb), RD_OK);
        rd_train_pos pz;
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_train_ckpt_read_pos(dir, &pz, &eb), RD_ERR_CORRUPT);
        assert_non_null(strstr(eb.msg, "dense.bin"));
        assert_non_null(strstr(eb.msg, bad[k].needle));
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_train_ckpt_read_dense(dir, 0, &pz, &m, NULL, &eb), RD_ERR_CORRUPT);
        // The checks that take a position from their caller do not overflow on it either.
        int n_win = -1;
        rd_errbuf_clear(&eb);
        int wrc = rd_trainer_windows_check(dir, pos.window, pos.range_step, &n_win, &eb);
        assert_true(n_win == 0 && (wrc == RD_OK || wrc == RD_ERR_CORRUPT));
        if (pos.window == INT32_MAX) // needs every window (the most a run has), holds none
            assert_int_equal(wrc, RD_ERR_CORRUPT);
        rd_errbuf_clear(&eb);
        int erc = rd_train_ckpt_check_epochs(dir, &pos, 1, &eb);
        if (pos.epoch == INT32_MAX) {
            assert_int_equal(erc, RD_ERR_SCHEMA);
            assert_non_null(strstr(eb.msg, "batch epoch 2147483648"));
        }
    }
    // The positions a run writes still read: the batch period, a window, the end (window K).
    static const int32_t ok[][2] = {{0, -1}, {999, -1}, {1000, 0}, {1000, 10000}};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        rd_train_pos pos, pz;
        memset(&pos, 0, sizeof pos);
        pos.step = 50;
        pos.range_step = 50;
        pos.epoch = ok[k][0];
        pos.window = ok[k][1];
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_train_ckpt_write_dense(dir, &pos, &m, &o, &eb), RD_OK);
        assert_int_equal(rd_train_ckpt_read_pos(dir, &pz, &eb), RD_OK);
        assert_true(pz.epoch == pos.epoch && pz.window == pos.window);
    }
    rd_free(m.params);
}

static void test_dense_identity(void **state) {
    (void)state;
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_model_config *mc = rd_xcalloc(1, sizeof *mc);
    ident_config(cfg, mc);
    rd_dataset_info info;
    memset(&info, 0, sizeof info);
    info.n_events = 6000;
    info.records_crc = 0x1234abcd;
    rd_model m;
    memset(&m, 0, sizeof m);
    m.n_slab = m.n_params = 5;
    m.params = rd_xcalloc(5, sizeof(float));
    m.params[3] = 2.5f;
    rd_dense_optim o;
    memset(&o, 0, sizeof o);
    rd_train_pos pos;
    memset(&pos, 0, sizeof pos);
    pos.step = 40;
    pos.range_step = 40;
    snprintf(pos.job, sizeof pos.job, "student");
    snprintf(pos.model, sizeof pos.model, "small");
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &pos);
    assert_int_equal(pos.n_tables, 2); // the tables the model reads
    char dir[300];
    path(dir, sizeof dir, "ident");
    assert_int_equal(rd_lmdbx_mkdir_p(dir, NULL), RD_OK);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_write_dense(dir, &pos, &m, &o, &eb), RD_OK);
    rd_train_pos ck;
    assert_int_equal(rd_train_ckpt_read_pos(dir, &ck, &eb), RD_OK);
    assert_true(ck.has_ident && ck.data_events == 6000 && ck.data_crc == 0x1234abcd);
    assert_true(ck.job_ranks == 1 && ck.batch_size == cfg->train.batch_size);
    assert_true(ck.order == RD_ORDER_TIME && ck.tokens_hash == 0 && ck.n_tables == 2);
    assert_string_equal(ck.table[0], "s_user");
    assert_string_equal(ck.table[1], "s_item");
    assert_true(ck.config_hash == rd_train_ckpt_config_hash(cfg, NULL, mc));
    // The same run: accepted.
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_OK);
    // Another partition of the data into steps.
    assert_int_equal(check_against(&ck, cfg, mc, &info, 2, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "CK was written with 1 rank x batch 256 in time order; this "
                                   "run has 2 x 256 in time order"));
    cfg->train.batch_size = 64;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "this run has 1 x 64 in time order"));
    cfg->train.batch_size = 256;
    cfg->train.order = RD_ORDER_USER;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "this run has 1 x 256 in user order"));
    cfg->train.order = RD_ORDER_TIME;
    // Another split of the data into phases (data.split): step k of the batch period or of stream
    // window w is other examples. It resumed, and a run with fewer windows than the checkpoint's
    // window ended at once, reporting the windows of the old split as its own.
    assert_true(ck.split_windows == cfg->data.split.stream_windows && ck.split_windows > 0);
    cfg->data.split.stream_windows = 3;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "CK was written with data.split batch_fraction 0.8, "
                                   "holdout_fraction 0.1, stream_windows 5; this run has"));
    assert_non_null(strstr(eb.msg, ", 3 (its position"));
    cfg->data.split.stream_windows = ck.split_windows;
    cfg->data.split.batch_fraction = 0.7;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "stream_windows 5; this run has 0.7, 0.1, 5"));
    cfg->data.split.batch_fraction = ck.split_batch;
    cfg->data.split.holdout_fraction = 0.05;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    cfg->data.split.holdout_fraction = ck.split_holdout;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_OK);
    // train.epochs: a position in the stream belongs to a run of exactly that many batch epochs
    // (it resumed into the stream of a run of 3, skipping two batch epochs); a position in batch
    // epoch e needs e + 1 or more.
    rd_train_pos ph = ck;
    ph.epoch = 1;
    ph.window = 2;
    assert_int_equal(rd_train_ckpt_check_epochs("CK", &ph, 1, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_check_epochs("CK", &ph, 3, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "CK is in the stream (window 2) of a run of train.epochs 1; "
                                   "this run has train.epochs 3"));
    ph.epoch = 1;
    ph.window = -1;
    assert_int_equal(rd_train_ckpt_check_epochs("CK", &ph, 3, &eb), RD_OK); // more epochs
    assert_int_equal(rd_train_ckpt_check_epochs("CK", &ph, 2, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_check_epochs("CK", &ph, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "CK is in batch epoch 2 (counting from 1); this run has "
                                   "train.epochs 1"));
    // Another dataset: other events, or the same count with other records.
    info.n_events = 3000;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "CK was trained on another dataset (6000 events, records "
                                   "CRC-32C 0x1234abcd) than the one in DATA (3000 events"));
    info.n_events = 6000;
    info.records_crc = 0x1234abce;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_CONFIG);
    info.records_crc = 0x1234abcd;
    // Token settings, for a model that reads tokens (its config hash changes too: the check of
    // the tokens alone is done on a checkpoint of that model).
    mc->tokens.scheme = 2;
    rd_train_pos tk;
    memset(&tk, 0, sizeof tk);
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &tk);
    assert_true(tk.tokens_hash != 0);
    cfg->tokens.window = 4;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "tokens built with other settings"));
    cfg->tokens.window = 32;
    cfg->tokens.sit_layers = 1;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    cfg->tokens.sit_layers = 2;
    cfg->tokens.map_size <<= 1; // not a build setting
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_OK);
    // The store is built at the builder job's global batch: a builder of several ranks builds
    // another store than one of one rank did before that, so its identity changes; one rank
    // keeps it.
    rd_config *cb = rd_xmalloc(sizeof *cb); // cfg with a job of mc: the token builder
    *cb = *cfg;
    cb->models[0] = *mc;
    cb->n_models = 1;
    cb->cluster.n_jobs = 1;
    snprintf(cb->cluster.jobs[0].model, RD_NAME_MAX, "%s", mc->name);
    assert_int_equal(rd_config_token_job(cb), 0);
    rd_train_pos t1, t2;
    memset(&t1, 0, sizeof t1);
    memset(&t2, 0, sizeof t2);
    cb->cluster.jobs[0].ranks = 1;
    rd_train_ckpt_ident(cb, NULL, mc, &info, 1, &t1);
    cb->cluster.jobs[0].ranks = 2;
    rd_train_ckpt_ident(cb, NULL, mc, &info, 2, &t2);
    assert_true(t1.tokens_hash == tk.tokens_hash); // one rank: the identity of before
    assert_true(t2.tokens_hash != t1.tokens_hash);
    rd_free(cb);
    // sit_pairs, sit_item_code and sit_group (hashed only when set): each changes the tokens, and
    // pairs and codes are not the same change.
    rd_train_pos tp, tc;
    memset(&tp, 0, sizeof tp);
    memset(&tc, 0, sizeof tc);
    cfg->tokens.sit_pairs = 1;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &tp);
    cfg->tokens.sit_pairs = 0;
    cfg->tokens.sit_item_code = 1;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &tc);
    cfg->tokens.sit_item_code = 0;
    assert_true(tp.tokens_hash != tc.tokens_hash);
    // batch_tokens final (hashed only when set): the batch period's tokens are others.
    cfg->tokens.batch_tokens = RD_BATCH_TOKENS_FINAL;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "batch_tokens"));
    cfg->tokens.batch_tokens = RD_BATCH_TOKENS_FIRST_PASS;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_OK);
    // two_pass (hashed only when set, and only where there is a SIT to train twice).
    cfg->tokens.two_pass = 1;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "two_pass"));
    int layers = cfg->tokens.sit_layers;
    cfg->tokens.sit_layers = 0;
    rd_train_pos tw0, tw1;
    memset(&tw0, 0, sizeof tw0);
    memset(&tw1, 0, sizeof tw1);
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &tw1);
    cfg->tokens.two_pass = 0;
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &tw0);
    assert_true(tw0.tokens_hash == tw1.tokens_hash);
    cfg->tokens.sit_layers = layers;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_OK);
    cfg->tokens.sit_group = RD_SIT_GROUP_ITEM;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    // Grouped by the item, by default or by name, is the same build; by an attribute is another,
    // each attribute its own.
    rd_train_pos ti, ts, tt;
    memset(&ti, 0, sizeof ti);
    memset(&ts, 0, sizeof ts);
    memset(&tt, 0, sizeof tt);
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &ti);
    snprintf(cfg->tokens.sit_group_by, sizeof cfg->tokens.sit_group_by, "item");
    assert_int_equal(check_against(&ti, cfg, mc, &info, 1, &eb), RD_OK);
    snprintf(cfg->tokens.sit_group_by, sizeof cfg->tokens.sit_group_by, "series");
    assert_int_equal(check_against(&ti, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &ts);
    snprintf(cfg->tokens.sit_group_by, sizeof cfg->tokens.sit_group_by, "topic");
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &tt);
    assert_true(ts.tokens_hash != tt.tokens_hash);
    cfg->tokens.sit_group_by[0] = '\0';
    cfg->tokens.sit_group = RD_SIT_GROUP_USER;
    // The search, and the search by an attribute of the item, read other tokens: the model
    // differs.
    mc->tokens.search = 256;
    assert_int_equal(check_against(&tk, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    rd_train_pos tsr;
    memset(&tsr, 0, sizeof tsr);
    rd_train_ckpt_ident(cfg, NULL, mc, &info, 1, &tsr);
    snprintf(mc->tokens.search_by, sizeof mc->tokens.search_by, "item");
    assert_int_equal(check_against(&tsr, cfg, mc, &info, 1, &eb), RD_OK);
    snprintf(mc->tokens.search_by, sizeof mc->tokens.search_by, "series");
    assert_int_equal(check_against(&tsr, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    mc->tokens.search_by[0] = '\0';
    mc->tokens.search = 0;
    mc->tokens.scheme = 0;
    // The config hash: the message says which part differs.
    cfg->run.seed = 6;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "written with run.seed 5, this run has 6"));
    assert_null(strstr(eb.msg, "table"));
    cfg->run.seed = 5;
    cfg->ps.tables[0].optim.kind = RD_OPT_ADAM;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "table 's_user' differs"));
    assert_null(strstr(eb.msg, "s_item"));
    assert_null(strstr(eb.msg, "model"));
    cfg->ps.tables[0].optim = cfg->ps.tables[1].optim;
    cfg->ps.tables[2].dim = 8; // a table the model does not read: no difference
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_OK);
    mc->mlp[0] = 12;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "model 'small' differs"));
    assert_null(strstr(eb.msg, "table"));
    mc->mlp[0] = 16;
    // A version-2 file (identity record, no split): still read, the split not checked.
    // Version 2 = the header of version 3 without its last 24 bytes (the split).
    char file[350];
    snprintf(file, sizeof file, "%s/dense.bin", dir);
    FILE *f = fopen(file, "rb");
    assert_non_null(f);
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const size_t v1 = 192, ident = 4 + 8 + 16 + 24 + 4 + RD_TRAIN_CKPT_TABLES * (RD_NAME_MAX + 8);
    const size_t split = 24;
    assert_int_equal(n, v1 + ident + split + 5 * sizeof(float) + 4);
    memmove(buf + v1 + ident, buf + v1 + ident + split, n - v1 - ident - split);
    n -= split;
    write_dense_as(file, buf, n, 2);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_read_pos(dir, &ck, &eb), RD_OK);
    assert_true(ck.has_ident && ck.split_windows == 0 && ck.n_tables == 2);
    cfg->data.split.stream_windows = 3;
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_OK); // not recorded
    cfg->data.split.stream_windows = 5; // rd_config_defaults's, as the checkpoint's
    assert_int_equal(check_against(&ck, cfg, mc, &info, 2, &eb), RD_ERR_SCHEMA); // still checked
    // A version-1 file (no identity record): still read, with only the config hash to check.
    // Version 1 = the first 192 header bytes of version 2, then the slab, then the CRC.
    memmove(buf + v1, buf + v1 + ident, n - v1 - ident);
    n -= ident;
    write_dense_as(file, buf, n, 1);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_train_ckpt_read_pos(dir, &ck, &eb), RD_OK);
    assert_true(!ck.has_ident && ck.step == 40 && ck.range_step == 40);
    assert_string_equal(ck.model, "small");
    assert_int_equal(check_against(&ck, cfg, mc, &info, 2, &eb), RD_OK); // cannot be checked
    cfg->run.seed = 6; // the config hash still can, and a seed is still named
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "written with run.seed 5, this run has 6"));
    cfg->run.seed = 5;
    cfg->ps.tables[0].dim = 8; // nothing recorded names a table: the hashes
    assert_int_equal(check_against(&ck, cfg, mc, &info, 1, &eb), RD_ERR_SCHEMA);
    assert_non_null(strstr(eb.msg, "another model or table config"));
    memset(m.params, 0, 5 * sizeof(float));
    assert_int_equal(rd_train_ckpt_read_dense(dir, ck.config_hash, &ck, &m, &o, &eb), RD_OK);
    assert_true(m.params[3] == 2.5f);
    // A version from the future is refused (its CRC matching: the version is the reason).
    write_dense_as(file, buf, n, RD_TRAIN_CKPT_VERSION + 1);
    assert_int_equal(rd_train_ckpt_read_pos(dir, &ck, &eb), RD_ERR_VERSION);
    rd_free(m.params);
    rd_free(mc);
    rd_free(cfg);
}

// Entries of g_root whose name contains `part` (leftover partial folders).
static int count_in_root(const char *part) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*%s*' | wc -l", g_root, part);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

// `table compact|reshard|... --out a/b/c` creates the missing parents a/ and a/b/; a run that
// fails removes exactly those again (they used to stay behind), and never a folder that existed.
static void test_out_parents(void **state) {
    (void)state;
    char src[300], dense[340], out[400], top[300], keep[300];
    path(src, sizeof src, "src-dense");
    make_ckpt(src, 2);
    // A damaged dense.bin fails the write after every shard and the MANIFEST are written.
    snprintf(dense, sizeof dense, "%s/dense.bin", src);
    FILE *f = fopen(dense, "wb");
    assert_non_null(f);
    fputs("not a dense file", f);
    fclose(f);
    rd_tabletool *tt = open_tt(src);
    rd_errbuf eb;
    struct stat st;
    // 1. Every parent new: all removed.
    path(top, sizeof top, "new1");
    snprintf(out, sizeof out, "%s/new2/out", top);
    rd_errbuf_clear(&eb);
    assert_int_not_equal(rd_tabletool_write(tt, out, 3, &eb), RD_OK);
    assert_non_null(strstr(eb.msg, "dense.bin"));
    assert_int_not_equal(lstat(top, &st), 0);
    // 2. Some parents new: only those removed.
    path(keep, sizeof keep, "keep");
    assert_int_equal(mkdir(keep, 0755), 0);
    snprintf(out, sizeof out, "%s/a/b/out", keep);
    rd_errbuf_clear(&eb);
    assert_int_not_equal(rd_tabletool_write(tt, out, 0, &eb), RD_OK);
    assert_int_equal(lstat(keep, &st), 0);
    snprintf(out, sizeof out, "%s/a", keep);
    assert_int_not_equal(lstat(out, &st), 0);
    // 3. No parent new: nothing removed, nothing left.
    snprintf(out, sizeof out, "%s/out", keep);
    rd_errbuf_clear(&eb);
    assert_int_not_equal(rd_tabletool_write(tt, out, 0, &eb), RD_OK);
    assert_int_equal(lstat(keep, &st), 0);
    assert_int_equal(count_in_root(".partial"), 0);
    // 4. A parent that is a file: a clear message, nothing created.
    snprintf(out, sizeof out, "%s/dense.bin/x/out", src);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tabletool_write(tt, out, 0, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "dense.bin: exists and is not a folder"));
    rd_tabletool_close(tt);
    // 5. Success creates the parents and keeps them.
    assert_int_equal(unlink(dense), 0);
    tt = open_tt(src);
    snprintf(out, sizeof out, "%s/new2/out", top);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tabletool_write(tt, out, 3, &eb), RD_OK);
    assert_int_equal(rd_ckpt_verify(out, &eb), RD_OK);
    assert_int_equal(count_in_root(".partial"), 0);
    rd_tabletool_close(tt);
}

// ---------------------------------------------------------------------------------------------
// Streamed (one shard at a time) against resident: the same bytes

// The export of table t as bytes (free with free).
static char *export_bytes(rd_tabletool *tt, int t, int fmt, size_t *len) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    FILE *f = tmpfile();
    assert_non_null(f);
    int rc = rd_tabletool_export(tt, t, fmt, f, &eb);
    if (rc != RD_OK)
        fail_msg("export: %s", eb.msg);
    long n = ftell(f);
    assert_true(n > 0);
    char *buf = malloc((size_t)n);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void same_export(rd_tabletool *a, rd_tabletool *b, int t) {
    for (int fmt = 0; fmt < 2; fmt++) {
        size_t na, nb;
        char *xa = export_bytes(a, t, fmt, &na), *xb = export_bytes(b, t, fmt, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(xa, xb, na);
        free(xa);
        free(xb);
    }
}

static rd_tabletool *open_stream(const char *dir) {
    rd_tabletool *tt = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_tabletool_open_stream(dir, 0, &tt, &eb) != RD_OK)
        fail_msg("open_stream %s: %s", dir, eb.msg);
    return tt;
}

static void manifest_path(char *out, size_t cap, const char *dir) {
    snprintf(out, cap, "%s/MANIFEST", dir);
}

// Shard s of a and b (resident) hold the same rows and pending counts.
static void same_shard(rd_tabletool *a, rd_tabletool *b, int s) {
    for (int t = 0; t < 2; t++) {
        rd_table *ta = rd_tabletool_table(a, s, t), *tb = rd_tabletool_table(b, s, t);
        assert_int_equal(rd_table_size(ta), rd_table_size(tb));
        assert_int_equal(rd_table_pending_size(ta), rd_table_pending_size(tb));
        size_t nf = rd_table_row_floats(ta);
        for (size_t i = 0; i < rd_table_size(ta); i++) {
            uint64_t k, c, k2, c2;
            int64_t ls, ls2;
            const float *row = rd_table_row_at(ta, i, &k, &ls, &c);
            const float *o = NULL;
            for (size_t j = 0; j < rd_table_size(tb) && !o; j++) {
                const float *r2 = rd_table_row_at(tb, j, &k2, &ls2, &c2);
                if (k2 == k)
                    o = r2;
            }
            assert_non_null(o);
            assert_memory_equal(row, o, nf * sizeof(float));
            assert_true(ls == ls2 && c == c2);
        }
    }
}

static void test_stream_same_bytes(void **state) {
    (void)state;
    char src[300], d[8][320], m1[340], m2[340];
    path(src, sizeof src, "st_src");
    const char *names[8] = {"st_cp", "st_r5a",  "st_r5b",  "st_back",
                            "st_r2", "st_ev_a", "st_ev_b", "st_back2"};
    for (int i = 0; i < 8; i++)
        path(d[i], sizeof d[i], names[i]);
    make_ckpt(src, 3);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_tabletool *res = open_tt(src), *str = open_stream(src);
    // Export (both formats, rows and pending counts in key order) and stats: the same.
    for (int t = 0; t < 2; t++) {
        same_export(res, str, t);
        rd_tabletool_hist ha, hb;
        assert_int_equal(rd_tabletool_stats(res, t, &ha, &eb), RD_OK);
        assert_int_equal(rd_tabletool_stats(str, t, &hb, &eb), RD_OK);
        assert_memory_equal(&ha, &hb, sizeof ha);
        assert_true(ha.rows > 0 && ha.pending > 0);
    }
    // Compact streamed: every shard CRC, counter and total as the input (MANIFEST identical).
    assert_int_equal(rd_tabletool_write(str, d[0], 0, &eb), RD_OK);
    manifest_path(m1, sizeof m1, src);
    manifest_path(m2, sizeof m2, d[0]);
    assert_true(same_file(m1, m2));
    // Reshard 3 -> 5 streamed and resident: the same shards (CRCs), and every key where
    // rd_shard_of(key, 5) puts it (the routing of output shard q from every input shard).
    assert_int_equal(rd_tabletool_write(str, d[1], 5, &eb), RD_OK);
    assert_int_equal(rd_tabletool_write(res, d[2], 5, &eb), RD_OK);
    manifest_path(m1, sizeof m1, d[1]);
    manifest_path(m2, sizeof m2, d[2]);
    assert_true(same_file(m1, m2));
    rd_tabletool *r5 = open_tt(d[1]), *s5 = open_stream(d[1]);
    for (int t = 0; t < 2; t++)
        for (int s = 0; s < 5; s++) {
            rd_table *tab = rd_tabletool_table(r5, s, t);
            for (size_t i = 0; i < rd_table_size(tab); i++) {
                uint64_t k;
                rd_table_row_at(tab, i, &k, NULL, NULL);
                assert_int_equal(rd_shard_of(k, 5), s);
            }
        }
    // The export does not depend on the sharding: after 3 -> 5, and 5 -> 2, the same bytes.
    for (int t = 0; t < 2; t++)
        same_export(res, s5, t);
    assert_int_equal(rd_tabletool_write(s5, d[4], 2, &eb), RD_OK);
    rd_tabletool *s2 = open_stream(d[4]);
    for (int t = 0; t < 2; t++)
        same_export(res, s2, t);
    // Round trip 3 -> 5 -> 3: each shard holds the rows it held (counters go to shard 0 when P
    // changes); a second round trip is the same bytes as the first.
    assert_int_equal(rd_tabletool_write(s5, d[3], 3, &eb), RD_OK);
    rd_tabletool *back = open_tt(d[3]);
    for (int s = 0; s < 3; s++)
        same_shard(res, back, s);
    rd_tabletool *s3 = open_stream(d[3]);
    rd_tabletool_close(s5);
    s5 = NULL;
    char r5c[320];
    path(r5c, sizeof r5c, "st_r5c");
    assert_int_equal(rd_tabletool_write(s3, r5c, 5, &eb), RD_OK);
    s5 = open_stream(r5c);
    assert_int_equal(rd_tabletool_write(s5, d[7], 3, &eb), RD_OK);
    manifest_path(m1, sizeof m1, d[3]);
    manifest_path(m2, sizeof m2, d[7]);
    assert_true(same_file(m1, m2));
    // Evict then import, streamed and resident: the same checkpoint, and the same export after
    // each edit (the edits are replayed on every shard the streamed tool reads).
    uint64_t ga = 0, gb = 0;
    assert_int_equal(rd_tabletool_evict(res, 0, 150, 0, &ga, &eb), RD_OK);
    assert_int_equal(rd_tabletool_evict(str, 0, 150, 0, &gb, &eb), RD_OK);
    assert_int_equal(ga, gb);
    assert_int_equal(rd_tabletool_evict(res, -1, INT64_MIN, 3, &ga, &eb), RD_OK);
    assert_int_equal(rd_tabletool_evict(str, -1, INT64_MIN, 3, &gb, &eb), RD_OK);
    assert_true(ga > 0 && ga == gb);
    for (int t = 0; t < 2; t++)
        same_export(res, str, t);
    uint64_t ra, pa, rb, pb;
    rd_tabletool_counts(res, -1, &ra, &pa);
    rd_tabletool_counts(str, -1, &rb, &pb);
    assert_true(ra == rb && pa == pb);
    size_t nx;
    char *x = export_bytes(s2, 1, RD_TABLETOOL_BIN, &nx); // table 1 before the evictions
    for (int k = 0; k < 2; k++) {
        FILE *f = tmpfile();
        assert_int_equal(fwrite(x, 1, nx, f), nx);
        rewind(f);
        assert_int_equal(rd_tabletool_import(k ? str : res, 1, f, "x.bin", NULL, &eb), RD_OK);
        fclose(f);
    }
    free(x);
    for (int t = 0; t < 2; t++)
        same_export(res, str, t);
    assert_int_equal(rd_tabletool_write(res, d[5], 0, &eb), RD_OK);
    assert_int_equal(rd_tabletool_write(str, d[6], 0, &eb), RD_OK);
    manifest_path(m1, sizeof m1, d[5]);
    manifest_path(m2, sizeof m2, d[6]);
    assert_true(same_file(m1, m2));
    assert_int_equal(rd_ckpt_verify(d[6], &eb), RD_OK);
    rd_tabletool_close(res);
    rd_tabletool_close(str);
    rd_tabletool_close(r5);
    rd_tabletool_close(s5);
    rd_tabletool_close(s2);
    rd_tabletool_close(s3);
    rd_tabletool_close(back);
}

// An export sorts references to the rows by key; each names its row by an index in the shard's
// table (or in an import's rows). That index was 32 bits, and a shard or an import of more than
// 2^32 rows (a shard's capacity alone may be 2^40) exported row i - 2^32 in place of row i
// without a word. Checked on the index itself: such a table takes hundreds of GiB.
static void test_ref_idx_limit(void **state) {
    (void)state;
    assert_true(rd__tabletool_ref_idx_max() >= (uint64_t)1 << 40);
    assert_true(rd__tabletool_ref_idx_max() >= SIZE_MAX);
}

// A shard that would not fit in the memory limit is refused before it is read, by name.
static void test_stream_mem_limit(void **state) {
    (void)state;
    char src[300], out[320];
    path(src, sizeof src, "ml_src");
    path(out, sizeof out, "ml_out");
    make_ckpt(src, 2);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_tabletool *tt = NULL;
    assert_int_equal(rd_tabletool_open_stream(src, 1 << 20, &tt, &eb), RD_ERR_NOMEM);
    assert_null(tt);
    assert_non_null(strstr(eb.msg, "shard-00000"));
    assert_non_null(strstr(eb.msg, "limit given (1 MiB)"));
    // Enough for one shard, not for the single output shard of all of them.
    const rd_ckpt_manifest *m;
    tt = open_stream(src);
    m = rd_tabletool_manifest(tt);
    uint64_t big = m->shard_rows[0] > m->shard_rows[1] ? m->shard_rows[0] : m->shard_rows[1];
    rd_tabletool_close(tt);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tabletool_open_stream(src, (4u << 20) + big * 200 + 20000, &tt, &eb),
                     RD_OK);
    assert_int_equal(rd_tabletool_write(tt, out, 1, &eb), RD_ERR_NOMEM);
    assert_non_null(strstr(eb.msg, "output"));
    struct stat st;
    assert_int_not_equal(stat(out, &st), 0); // nothing written
    rd_tabletool_close(tt);
}

// An export of a table that holds only pending admission counts (no row) imports and exports
// again unchanged, resident and streamed (the key check once copied from a NULL row array:
// undefined behaviour that the sanitizer build stops at).
static void test_import_pending_only(void **state) {
    (void)state;
    char src[300];
    path(src, sizeof src, "po_src");
    make_ckpt(src, 2);
    static const char text[] = "# table emb_b dim 3 slots 0 optimizer sgd rows 0 pending 2\n"
                               "pending\t5\t7\t1\n"
                               "pending\t9\t8\t1\n";
    rd_errbuf eb;
    for (int k = 0; k < 2; k++) {
        rd_tabletool *tt = k ? open_stream(src) : open_tt(src);
        assert_int_equal(import_text(tt, 1, text, sizeof text - 1, &eb), RD_OK);
        size_t n;
        char *x = export_bytes(tt, 1, RD_TABLETOOL_TSV, &n);
        assert_int_equal(n, sizeof text - 1);
        assert_memory_equal(x, text, n);
        free(x);
        rd_tabletool_close(tt);
    }
}

// A shard replaced after the open by one with the same row counts but another value: the
// streamed export reads the shards again through cursors, and must refuse the changed shard (its
// CRC no longer matches the MANIFEST), as stats and write do, instead of exporting its rows.
static void test_stream_export_changed_shard(void **state) {
    (void)state;
    char src[300], other[320], from[400], to[400], aside[400];
    path(src, sizeof src, "chg_src");
    path(other, sizeof other, "chg_other");
    make_ckpt(src, 3);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // The same checkpoint with one float of one row of shard 0 changed (same counts).
    rd_tabletool *res = open_tt(src);
    rd_table *t0 = rd_tabletool_table(res, 0, 0);
    assert_true(rd_table_size(t0) > 0);
    uint64_t key, cnt;
    int64_t ls;
    float row[64];
    memcpy(row, rd_table_row_at(t0, 0, &key, &ls, &cnt), rd_table_row_floats(t0) * sizeof(float));
    row[0] += 1.0f;
    assert_int_equal(rd_table_put(t0, key, row, ls, cnt), RD_OK);
    assert_int_equal(rd_tabletool_write(res, other, 0, &eb), RD_OK);
    rd_tabletool_close(res);
    rd_tabletool *str = open_stream(src);
    snprintf(from, sizeof from, "%s/shard-00000", other);
    snprintf(to, sizeof to, "%s/shard-00000", src);
    snprintf(aside, sizeof aside, "%s/shard-00000.old", other);
    assert_int_equal(rename(to, aside), 0);
    assert_int_equal(rename(from, to), 0);
    for (uint32_t g = 0; g <= 2; g += 2) { // one pass, then shards merged two at a time
        rd__tabletool_set_export_group(str, g);
        FILE *f = tmpfile();
        assert_non_null(f);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_export(str, 0, RD_TABLETOOL_BIN, f, &eb), RD_ERR_CORRUPT);
        assert_non_null(strstr(eb.msg, "does not match the manifest"));
        assert_int_equal(ftell(f), 0); // nothing written, not even the header
        fclose(f);
    }
    rd_tabletool_close(str);
}

// Entries of folder dir besides . and ..
static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

// A streamed import keeps its rows in an unlinked temporary file ($TMPDIR, else the checkpoint's
// parent folder): the round trip through it is exact (export, and the written checkpoint equals
// the resident import's), nothing is left in the folder, and a folder that cannot take the file
// (missing, or full: RLIMIT_FSIZE) is a clear error that leaves the table as it was.
static void test_stream_import_spill(void **state) {
    (void)state;
    char src[300], tmpd[300], nodir[320], out_r[300], out_s[300], m1[340], m2[340];
    path(src, sizeof src, "sp_src");
    path(tmpd, sizeof tmpd, "sp_tmp");
    path(out_r, sizeof out_r, "sp_out_r");
    path(out_s, sizeof out_s, "sp_out_s");
    snprintf(nodir, sizeof nodir, "%s/missing", tmpd);
    assert_int_equal(mkdir(tmpd, 0755), 0);
    make_ckpt(src, 3);
    const char *old_tmp = getenv("TMPDIR");
    char *saved = old_tmp ? strdup(old_tmp) : NULL;
    rd_errbuf eb;
    for (int t = 0; t < 2; t++) { // emb_a (Adam: two slots), emb_b (SGD)
        rd_tabletool *res = open_tt(src);
        size_t nb = 0;
        char *bin = export_bytes(res, t, RD_TABLETOOL_BIN, &nb);
        uint64_t rows0 = 0, pend0 = 0;
        rd_tabletool_counts(res, t, &rows0, &pend0);
        assert_true(rows0 > 0);
        FILE *f = fmemopen(bin, nb, "rb");
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_import(res, t, f, "x.bin", NULL, &eb), RD_OK);
        fclose(f);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_write(res, out_r, 0, &eb), RD_OK);
        rd_tabletool_close(res);

        setenv("TMPDIR", tmpd, 1);
        rd_tabletool *str = open_stream(src);
        f = fmemopen(bin, nb, "rb");
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_import(str, t, f, "x.bin", NULL, &eb), RD_OK);
        fclose(f);
        assert_int_equal(dir_entries(tmpd), 0); // unlinked at once
        size_t n2 = 0;
        char *again = export_bytes(str, t, RD_TABLETOOL_BIN, &n2);
        assert_int_equal(n2, nb);
        assert_memory_equal(again, bin, nb);
        free(again);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_write(str, out_s, 0, &eb), RD_OK);
        manifest_path(m1, sizeof m1, out_r);
        manifest_path(m2, sizeof m2, out_s);
        assert_true(same_file(m1, m2)); // the same shard CRCs, counters and totals
        rd_tabletool_close(str);
        assert_int_equal(rd_train_ckpt_rmtree(out_r, NULL), RD_OK);
        assert_int_equal(rd_train_ckpt_rmtree(out_s, NULL), RD_OK);

        // No folder for the file: refused, naming it; the table keeps its rows.
        setenv("TMPDIR", nodir, 1);
        str = open_stream(src);
        f = fmemopen(bin, nb, "rb");
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_import(str, t, f, "x.bin", NULL, &eb), RD_ERR_IO);
        fclose(f);
        assert_non_null(strstr(eb.msg, "x.bin: cannot create the import's temporary file in"));
        assert_non_null(strstr(eb.msg, nodir));
        uint64_t rows1 = 0, pend1 = 0;
        rd_tabletool_counts(str, t, &rows1, &pend1);
        assert_true(rows1 == rows0 && pend1 == pend0);

        // A full disk while the rows are written: refused, the table as it was, nothing left.
        setenv("TMPDIR", tmpd, 1);
        struct rlimit old, lim;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = 64;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        f = fmemopen(bin, nb, "rb");
        rd_errbuf_clear(&eb);
        int rc = rd_tabletool_import(str, t, f, "x.bin", NULL, &eb);
        fclose(f);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, prev);
        assert_int_equal(rc, RD_ERR_IO);
        assert_non_null(strstr(eb.msg, "writing the import's temporary file"));
        rd_tabletool_counts(str, t, &rows1, &pend1);
        assert_true(rows1 == rows0 && pend1 == pend0);
        assert_int_equal(dir_entries(tmpd), 0);
        rd_tabletool_close(str);
        free(bin);
    }
    // A bad row is refused in the streamed import as in the resident one (same message).
    static const char zero_key[] = "# table emb_b dim 3 slots 0 optimizer sgd rows 2\n"
                                   "7\t5\t1\t0.1\t0.2\t0.3\n0\t5\t1\t0.1\t0.2\t0.3\n";
    for (int k = 0; k < 2; k++) {
        rd_tabletool *tt = k ? open_stream(src) : open_tt(src);
        assert_int_equal(import_text(tt, 1, zero_key, sizeof zero_key - 1, &eb), RD_ERR_PARSE);
        assert_non_null(strstr(eb.msg, "in.tsv:3: row 1 has key 0 (reserved)"));
        rd_tabletool_close(tt);
    }
    assert_int_equal(dir_entries(tmpd), 0);
    if (saved) {
        setenv("TMPDIR", saved, 1);
        free(saved);
    } else {
        unsetenv("TMPDIR");
    }
}

// Pending admission counts into a table the config gives no admission (admit_count 1): the PS
// would never read them. They imported without a word; with the config's admit_count known
// (rd_tabletool_set_admission) they are refused, naming the line, the table and the config key,
// resident and streamed alike; rows alone import, and with admission the counts do.
static void test_import_admission(void **state) {
    (void)state;
    char src[300];
    path(src, sizeof src, "adm_src");
    make_ckpt(src, 2);
    static const char with_pending[] =
        "# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 2\n"
        "7\t5\t1\t0.1\t0.2\t0.3\n# note\n"
        "pending\t9\t5\t1\npending\t11\t6\t2\n";
    static const char rows_only[] = "# table emb_b dim 3 slots 0 optimizer sgd rows 1 pending 0\n"
                                    "7\t5\t1\t0.1\t0.2\t0.3\n";
    for (int k = 0; k < 2; k++) {
        rd_tabletool *tt = k ? open_stream(src) : open_tt(src);
        rd_errbuf eb;
        uint64_t rows0, pend0, rows, pend;
        rd_tabletool_counts(tt, 1, &rows0, &pend0);
        // Not known: imported as before (the command line says a note).
        assert_int_equal(import_text(tt, 1, with_pending, sizeof with_pending - 1, &eb), RD_OK);
        rd_tabletool_counts(tt, 1, &rows, &pend);
        assert_true(rows == 1 && pend == 2);
        rd_tabletool_close(tt);
        tt = k ? open_stream(src) : open_tt(src);
        rd_errbuf_clear(&eb);
        assert_int_equal(
            rd_tabletool_set_admission(tt, 1, 1, "c.yaml: ps.tables[1].admit_count", &eb), RD_OK);
        assert_int_equal(import_text(tt, 1, with_pending, sizeof with_pending - 1, &eb),
                         RD_ERR_SCHEMA);
        assert_non_null(strstr(eb.msg, "in.tsv:4: pending count 0: key 9 is a pending admission "
                                       "count (2 in the file), but table emb_b has no admission "
                                       "(c.yaml: ps.tables[1].admit_count is 1)"));
        rd_tabletool_counts(tt, 1, &rows, &pend);
        assert_true(rows == rows0 && pend == pend0); // untouched
        assert_int_equal(import_text(tt, 1, rows_only, sizeof rows_only - 1, &eb), RD_OK);
        rd_tabletool_counts(tt, 1, &rows, &pend);
        assert_true(rows == 1 && pend == 0);
        // With admission (admit_count 3) the counts import.
        assert_int_equal(
            rd_tabletool_set_admission(tt, 1, 3, "c.yaml: ps.tables[1].admit_count", &eb), RD_OK);
        assert_int_equal(import_text(tt, 1, with_pending, sizeof with_pending - 1, &eb), RD_OK);
        rd_tabletool_counts(tt, 1, &rows, &pend);
        assert_true(rows == 1 && pend == 2);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tabletool_set_admission(tt, 5, 1, "x", &eb), RD_ERR_ARG);
        assert_int_equal(rd_tabletool_set_admission(tt, 1, 1, NULL, &eb), RD_ERR_ARG);
        rd_tabletool_close(tt);
    }
}

// The soft RLIMIT_NOFILE that leaves `spare` descriptors free: one past the spare-th free one
// (descriptors open above it, inherited ones say, do not count).
static rlim_t limit_for_spare(int spare) {
    int fd = 0;
    for (int n = 0; n < spare; fd++)
        n += fcntl(fd, F_GETFD) == -1;
    return (rlim_t)fd;
}

// Export table t of tt into a fresh temporary file under a soft RLIMIT_NOFILE that leaves `spare`
// descriptors free; the bytes (free with free) or NULL with *rc and eb set.
static char *
export_spare(rd_tabletool *tt, int t, int fmt, int spare, size_t *len, int *rc, rd_errbuf *eb) {
    FILE *f = tmpfile();
    assert_non_null(f);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = limit_for_spare(spare);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
    rd_errbuf_clear(eb);
    *rc = rd_tabletool_export(tt, t, fmt, f, eb);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    long n = ftell(f);
    char *buf = NULL;
    if (*rc == RD_OK) {
        buf = malloc(n > 0 ? (size_t)n : 1);
        assert_non_null(buf);
        rewind(f);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    } else {
        assert_int_equal(n, 0); // nothing of the export written
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

// A streamed export whose shards cannot all be open at once merges them in groups through runs
// of a temporary file, and writes the same bytes (both formats) as the resident export and the
// single pass, with evictions before and after an import applied: 7 shards in groups of 2 (4
// runs merged again into 2), 3 (3 runs, again into 1), 6 (2 runs), and a soft RLIMIT_NOFILE
// leaving 6 descriptors (fewer than 7 cursors: EMFILE before). The temporary file is unlinked at
// once (nothing left in TMPDIR); a full disk (RLIMIT_FSIZE) or a missing folder is RD_ERR_IO
// naming the folder, with nothing written to the output.
static void test_stream_export_groups(void **state) {
    (void)state;
    char src[300], tmpd[300], nodir[320];
    path(src, sizeof src, "grp_src");
    path(tmpd, sizeof tmpd, "grp_tmp");
    snprintf(nodir, sizeof nodir, "%s/missing", tmpd);
    assert_int_equal(mkdir(tmpd, 0755), 0);
    make_ckpt(src, 7);
    const char *old_tmp = getenv("TMPDIR");
    char *saved = old_tmp ? strdup(old_tmp) : NULL;
    setenv("TMPDIR", tmpd, 1);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_tabletool *res = open_tt(src), *str = open_stream(src);
    size_t nx;
    char *x = export_bytes(res, 1, RD_TABLETOOL_TSV, &nx);
    uint64_t ga = 0, gb = 0;
    assert_int_equal(rd_tabletool_evict(res, 0, 150, 0, &ga, &eb), RD_OK);
    assert_int_equal(rd_tabletool_evict(str, 0, 150, 0, &gb, &eb), RD_OK);
    assert_true(ga > 0 && ga == gb);
    for (int k = 0; k < 2; k++) {
        FILE *f = fmemopen(x, nx, "rb");
        assert_int_equal(rd_tabletool_import(k ? str : res, 1, f, "x.tsv", NULL, &eb), RD_OK);
        fclose(f);
    }
    free(x);
    assert_int_equal(rd_tabletool_evict(res, -1, INT64_MIN, 3, &ga, &eb), RD_OK);
    assert_int_equal(rd_tabletool_evict(str, -1, INT64_MIN, 3, &gb, &eb), RD_OK);
    assert_true(ga > 0 && ga == gb);
    static const uint32_t groups[] = {0, 2, 3, 6, 7};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        rd__tabletool_set_export_group(str, groups[i]);
        for (int t = 0; t < 2; t++)
            same_export(res, str, t);
        assert_int_equal(dir_entries(tmpd), 0);
    }
    // The group from RLIMIT_NOFILE: 6 descriptors free for 7 shards.
    rd__tabletool_set_export_group(str, 0);
    for (int fmt = 0; fmt < 2; fmt++) {
        size_t na, nb;
        int rc;
        char *xa = export_bytes(res, 0, fmt, &na);
        char *xb = export_spare(str, 0, fmt, 6, &nb, &rc, &eb);
        if (rc != RD_OK)
            fail_msg("export with 6 descriptors free: %s", eb.msg);
        assert_int_equal(na, nb);
        assert_memory_equal(xa, xb, na);
        free(xa);
        free(xb);
    }
    // The folder of the temporary file missing: refused, naming it (and so the grouped path was
    // taken), nothing written.
    setenv("TMPDIR", nodir, 1);
    size_t n0;
    int rc0;
    assert_null(export_spare(str, 0, RD_TABLETOOL_BIN, 6, &n0, &rc0, &eb));
    assert_int_equal(rc0, RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "table emb_a: cannot create the export's temporary file in"));
    assert_non_null(strstr(eb.msg, nodir));
    // A full disk while the runs are written: RD_ERR_IO naming the folder, nothing written to
    // the output (the runs are all written before its first byte), nothing left.
    setenv("TMPDIR", tmpd, 1);
    rd__tabletool_set_export_group(str, 2);
    for (int fmt = 0; fmt < 2; fmt++) {
        FILE *f = tmpfile();
        assert_non_null(f);
        struct rlimit old, lim;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = 4096;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        rd_errbuf_clear(&eb);
        int rc = rd_tabletool_export(str, 0, fmt, f, &eb);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, prev);
        assert_int_equal(rc, RD_ERR_IO);
        assert_non_null(strstr(eb.msg, "table emb_a: writing the export's temporary file in"));
        assert_non_null(strstr(eb.msg, tmpd));
        assert_non_null(strstr(eb.msg, "File too large"));
        assert_int_equal(ftell(f), 0);
        fclose(f);
        assert_int_equal(dir_entries(tmpd), 0);
    }
    // And the tool still exports after the failure.
    for (int t = 0; t < 2; t++)
        same_export(res, str, t);
    rd_tabletool_close(res);
    rd_tabletool_close(str);
    if (saved) {
        setenv("TMPDIR", saved, 1);
        free(saved);
    } else {
        unsetenv("TMPDIR");
    }
}

// Every shard holds the same keys 1..12 (misplaced keys), each with values, last-seen and count
// of its own; table emb_b is empty in every shard but `only` (-1: empty in all of them).
static void fill_dup(rd_table *tab, int t, int s, int P, int only) {
    (void)P;
    if (t == 1 && s != only)
        return;
    float out[8], g[8] = {0.1f, -0.2f, 0.3f, 0.05f};
    for (uint64_t k = 1; k <= 12; k++) {
        uint64_t key = k;
        int64_t ts = (int64_t)(100 * s + k);
        assert_int_equal(rd_table_pull(tab, &key, 1, ts, out), RD_OK);
        if (k % 5 == 0)
            continue;
        assert_int_equal(rd_table_pull(tab, &key, 1, ts, out), RD_OK);
        assert_int_equal(rd_table_pull(tab, &key, 1, ts, out), RD_OK);
        for (int r = 0; r < s + 1; r++)
            assert_int_equal(rd_table_push(tab, &key, g, 1, ts + 1), RD_OK);
    }
}

static void make_dup_ckpt(const char *dir, int P, int only) {
    write_ckpt(dir, P, 1, fill_dup, only);
}

// Descriptors open in this process (less the one reading /proc/self/fd).
static int open_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

// A key held by several shards (misplaced keys: the tools accept such checkpoints) comes out in
// shard order whether the shards are merged at once or in groups (before, the heap broke ties by
// chance, and each grouping did so differently: the grouped export differed from the single
// pass); every group size, with a table empty in every shard or present in one, and no descriptor
// left open.
static void test_stream_export_groups_dup_keys(void **state) {
    (void)state;
    static const int Ps[] = {5, 7, 9};
    for (size_t pi = 0; pi < 3; pi++) {
        int P = Ps[pi];
        for (int only = -1; only < P; only += P / 2 + 1) {
            char src[400];
            char name[32];
            snprintf(name, sizeof name, "gd_%d_%d", P, only + 1);
            path(src, sizeof src, name);
            make_dup_ckpt(src, P, only);
            rd_tabletool *str = open_stream(src);
            for (int t = 0; t < 2; t++)
                for (int fmt = 0; fmt < 2; fmt++) {
                    size_t n1, n2;
                    rd__tabletool_set_export_group(str, 0);
                    char *a = export_bytes(str, t, fmt, &n1);
                    for (uint32_t g = 2; g < (uint32_t)P; g++) {
                        rd__tabletool_set_export_group(str, g);
                        int before = open_fds();
                        char *b = export_bytes(str, t, fmt, &n2);
                        int after = open_fds();
                        if (before != after)
                            fail_msg("P %d group %u: %d descriptors before, %d after", P, g, before,
                                     after);
                        if (n1 != n2 || memcmp(a, b, n1) != 0)
                            fail_msg("P %d table %d fmt %d group %u (emb_b only in shard %d): "
                                     "grouped export differs from the single pass",
                                     P, t, fmt, g, only);
                        free(b);
                    }
                    free(a);
                }
            rd_tabletool_close(str);
        }
    }
}

// A checkpoint written by compact / reshard / evict / import is durable once the command
// returns: the folder holding --out is synced after the rename that publishes it. Before, the
// last fsync was the partial folder's, so a power loss could undo the rename.
static void test_write_durable(void **state) {
    (void)state;
    char src[300], sub[300], out[340], root[4096];
    path(src, sizeof src, "dur_src");
    path(sub, sizeof sub, "dur_into");
    make_ckpt(src, 2);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_non_null(realpath(sub, root));
    for (int shards = 0; shards <= 3; shards += 3) { // compact (same P), reshard to 3
        snprintf(out, sizeof out, "%s/out%d", sub, shards);
        rd_tabletool *tt = open_tt(src);
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        g_n_fsynced = 0;
        g_fsync_log = 1;
        int rc = rd_tabletool_write(tt, out, shards, &eb);
        g_fsync_log = 0;
        rd_tabletool_close(tt);
        assert_int_equal(rc, RD_OK);
        assert_true(g_n_fsynced > 0);
        if (strcmp(g_fsynced[g_n_fsynced - 1], root) != 0)
            fail_msg("write (shards %d): the last fsync is %s, not the folder of --out %s", shards,
                     g_fsynced[g_n_fsynced - 1], root);
    }
    // --out in folders that do not exist yet: each folder made for it is synced in its parent,
    // innermost first (before, only the innermost was: a power loss could take new1 away).
    snprintf(out, sizeof out, "%s/new1/new2/out", sub);
    rd_tabletool *tt = open_tt(src);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    g_n_fsynced = 0;
    g_fsync_log = 1;
    int rc = rd_tabletool_write(tt, out, 0, &eb);
    g_fsync_log = 0;
    rd_tabletool_close(tt);
    assert_int_equal(rc, RD_OK);
    const char *bad = fsync_log_made_parents(root, "new1", "new2");
    if (bad)
        fail_msg("write into new folders: %s", bad);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/rd_test_tabletool_XXXXXX");
    return mkdtemp(g_root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return rd_train_ckpt_rmtree(g_root, NULL) == RD_OK ? 0 : -1;
}

// An export that fills the disk under its output says why: the errno of the write that failed.
// The export wrote with fwrite and fprintf, unchecked, and looked at the stream once at the end:
// when the buffer flush that failed was not the last one, its errno was lost and a full disk
// read "write error (Input/output error)" (`table export ... --out` on a full tmpfs). The output
// here is a disk of `room` bytes whose writes then fail with ENOSPC, for good or only once (a
// shared disk where another job frees space meanwhile): the export must fail either way, naming
// ENOSPC, never pass off a file with a hole in it.
typedef struct {
    size_t room;
    int once; // the first write that does not fit fails, later ones succeed
    int failed;
} disk_cookie;

static ssize_t disk_write(void *c, const char *buf, size_t n) {
    (void)buf;
    disk_cookie *d = c;
    if (n > d->room && !(d->once && d->failed)) {
        d->failed = 1;
        errno = ENOSPC;
        return -1;
    }
    d->room = n > d->room ? 0 : d->room - n;
    return (ssize_t)n;
}

static void test_export_full_output(void **state) {
    (void)state;
    char ck[512];
    path(ck, sizeof ck, "full_out");
    make_ckpt(ck, 2);
    rd_tabletool *tt = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tabletool_open_stream(ck, 0, &tt, &eb), RD_OK);
    for (int fmt = 0; fmt < 2; fmt++) {
        FILE *f = tmpfile();
        assert_non_null(f);
        assert_int_equal(rd_tabletool_export(tt, 0, fmt, f, &eb), RD_OK);
        long size = ftell(f);
        fclose(f);
        for (size_t room = 0; room < 2 * (size_t)size; room += (size_t)size / 7 + 1) {
            disk_cookie d = {room % (size_t)size, room >= (size_t)size, 0};
            cookie_io_functions_t io = {NULL, disk_write, NULL, NULL};
            f = fopencookie(&d, "w", io);
            assert_non_null(f);
            rd_errbuf_clear(&eb);
            int rc = rd_tabletool_export(tt, 0, fmt, f, &eb);
            fclose(f);
            assert_int_equal(rc, RD_ERR_IO);
            if (!strstr(eb.msg, strerror(ENOSPC)))
                fail_msg("format %d, room %zu of %ld bytes, once %d: %s", fmt, d.room, size, d.once,
                         eb.msg);
        }
    }
    rd_tabletool_close(tt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshard),
        cmocka_unit_test(test_pending_astray),
        cmocka_unit_test(test_compact_evict_export),
        cmocka_unit_test(test_import_bad_input),
        cmocka_unit_test(test_import_admission),
        cmocka_unit_test(test_dense_and_dirs),
        cmocka_unit_test(test_dense_identity),
        cmocka_unit_test(test_dense_position_range),
        cmocka_unit_test(test_out_parents),
        cmocka_unit_test(test_stream_same_bytes),
        cmocka_unit_test(test_stream_mem_limit),
        cmocka_unit_test(test_ref_idx_limit),
        cmocka_unit_test(test_stream_export_changed_shard),
        cmocka_unit_test(test_import_pending_only),
        cmocka_unit_test(test_stream_import_spill),
        cmocka_unit_test(test_stream_export_groups),
        cmocka_unit_test(test_stream_export_groups_dup_keys),
        cmocka_unit_test(test_write_durable),
        cmocka_unit_test(test_export_full_output),
    };
    return tmp_root_status(cmocka_run_group_tests(tests, setup, teardown), g_root);
}
