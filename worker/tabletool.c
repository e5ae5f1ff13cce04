// tabletool.c — offline checkpoint maintenance: inspect and edit the rows of a checkpoint and
// write it back with any P (rd/tabletool.h), one shard at a time.
//
// Everything goes through the checkpoint module's shard reader and writer (rd/checkpoint.h), so
// the on-disk format, its CRCs and its atomic shard directories have one implementation.
//
// Two ways to hold a checkpoint. rd_tabletool_open keeps every shard in memory (rd_tabletool_table
// hands them out: serve, tests). rd_tabletool_open_stream keeps only what is needed to replay the
// edits: it reads each shard once at open (CRC, records, counters), and afterwards every operation
// reads the shards again one at a time and applies the edits made so far (evictions, imports) to
// that shard only. Its peak memory is about one input shard plus one output shard, plus 16 bytes
// a row of an import (its rows are spilled to a temporary file: rows_in), whatever P:
//   - stats: two passes over the shards (the age histogram needs the newest row first);
//   - export: a k-way merge of P cursors that read each shard's rows in key order from the map
//     (rd_ckpt_cursor), so the rows come out sorted by key as they did from the sort of all rows;
//     with too few descriptors for P cursors, of groups of shards through runs of a temporary
//     file (export_runs);
//   - write with P' == P (compact, evict, import): shard s is read, edited and written as shard s;
//   - write with P' != P (reshard): output shard q gathers, from each input shard, only the keys
//     with rd_shard_of(key, P') == q (rd_ckpt_read_shard_part): P x P' reads of the input.
// The writer sorts every shard's rows by key, so the output is the same bytes whichever way the
// rows were gathered.
#include "rd/tabletool.h"

#include "rd/alloc.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/numfmt.h"
#include "rd/optim.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"
#include "tabletool_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct pend_ref {
    uint64_t key;
    int64_t last_seen;
    uint32_t count;
} pend_ref;

struct rows_in;

// An edit of a streamed checkpoint, replayed on every shard read after it.
enum { EDIT_NONE = 0, EDIT_EVICT = 1, EDIT_IMPORT = 2 };
typedef struct edit {
    int kind;
    int table;          // position in the manifest; -1 = every table (evict)
    int64_t older_than; // evict: INT64_MIN = no age rule
    uint64_t min_count; // evict: 0 = no count rule
    struct rows_in *in; // import: the rows and pending counts (owned)
} edit;

struct rd_tabletool {
    char dir[RD_PATH_MAX];
    rd_ckpt_manifest *man;
    int stream;                 // 1: shards are read one at a time (rd_tabletool_open_stream)
    unsigned long long mem_cap; // stream: bytes a shard may need (0 = no limit known)
    const char *mem_what;       // what mem_cap is (rd_mem_limit)
    rd_table **tab;             // resident: (n_shards * n_tables): tab[s * n_tables + t]
    rd_table_stats *sum;        // (n_shards * n_tables): counters and clock as read
    uint64_t *rows, *pend;      // (n_shards * n_tables): rows / pending counts after the edits
    int misplaced;              // some key is not in shard rd_shard_of(key, P)
    edit *ed;                   // stream: the edits so far, in order
    size_t n_ed, cap_ed;
    rd_tabletool_hist *hist; // (n_tables) statistics, valid while hist_ok
    int hist_ok;
    uint32_t export_group; // stream: shards a merge may open at once (0 = from RLIMIT_NOFILE)
    // What the config says of a table's admission (rd_tabletool_set_admission; the checkpoint
    // does not record it): admit[t] = admit_count, 0 = not known; admit_src[t] where it was read.
    int admit[RD_MAX_TABLES];
    char *admit_src[RD_MAX_TABLES];
};

static const char exp_magic[8] = {'R', 'D', 'T', 'B', 'L', 'E', 'X', 'P'};
// Version 2 adds the table's pending admission counts (after the rows); version 1 files are still
// read (they carry none: the import says so and the table's pending counts are dropped).
#define EXP_VERSION 2
#define EXP_HEADER  (8 + 4 * 4 + 8 + RD_NAME_MAX) // version 1 header; version 2 adds u64 pending

// A table config good enough to hold a checkpoint's rows: name, dim, optimizer from the
// manifest; hyper-parameters are not used by load / store.
static void table_config(const rd_ckpt_table *ct, rd_table_config *tc) {
    memset(tc, 0, sizeof *tc);
    snprintf(tc->name, sizeof tc->name, "%s", ct->name);
    tc->dim = (int)ct->dim;
    tc->optim.kind = (int)ct->optim;
    tc->optim.lr = 0.05f;
    tc->optim.beta1 = 0.9f;
    tc->optim.beta2 = 0.999f;
    tc->optim.eps = 1e-8f;
    tc->optim.initial_accumulator = 0.1f;
    tc->init_std = 0.01f;
    tc->admit_count = 1;
    tc->capacity = 1024;
}

static int
new_tables(const rd_ckpt_manifest *m, uint32_t n_shards, rd_table ***out, rd_errbuf *eb) {
    size_t n = (size_t)n_shards * m->n_tables;
    rd_table **tab = rd_xcalloc(n ? n : 1, sizeof *tab);
    for (uint32_t s = 0; s < n_shards; s++)
        for (uint32_t t = 0; t < m->n_tables; t++) {
            rd_table_config tc;
            table_config(&m->tables[t], &tc);
            int rc = rd_table_create(&tc, (int)m->tables[t].index, m->seed,
                                     &tab[(size_t)s * m->n_tables + t], eb);
            if (rc != RD_OK) {
                for (size_t k = 0; k < n; k++)
                    rd_table_destroy(tab[k]);
                rd_free(tab);
                return rc;
            }
        }
    *out = tab;
    return RD_OK;
}

static void free_tables(rd_table **tab, size_t n) {
    if (!tab)
        return;
    for (size_t k = 0; k < n; k++)
        rd_table_destroy(tab[k]);
    rd_free(tab);
}

// ---------------------------------------------------------------------------------------------
// Memory of a shard

// Bytes an rd_table takes for `rows` rows of table ct (arena row padded to a cache line, its
// metadata, an index slot at the load factor after a doubling), and an LMDB record of it.
static uint64_t row_mem(const rd_ckpt_table *ct) {
    uint64_t fb = (uint64_t)ct->dim * (1 + ct->slots) * sizeof(float);
    return ((fb + 63) & ~(uint64_t)63) + 24 + 64;
}

static uint64_t row_disk(const rd_ckpt_table *ct) {
    return (uint64_t)ct->dim * (1 + ct->slots) * sizeof(float) + 16 + 8 + 16;
}

// What holding `rows` rows of any table of the checkpoint costs at most (the widest table), plus
// an even share of the pending counts, when `writing` with the LMDB pages of the shard written.
static uint64_t shard_mem(const rd_ckpt_manifest *m, uint64_t rows, int writing) {
    uint64_t per = 0, pend = 0;
    for (uint32_t t = 0; t < m->n_tables; t++) {
        uint64_t r = row_mem(&m->tables[t]) + (writing ? row_disk(&m->tables[t]) : 0);
        if (r > per)
            per = r;
        pend += m->tables[t].pending;
    }
    return rows * per + pend / (m->n_shards ? m->n_shards : 1) * 96 + (4u << 20);
}

// Refuse, before reading (or writing) anything of it, a shard whose rows would not fit in this
// process's memory: an error naming the shard and the limit, instead of an OOM kill halfway
// through. `name` names the shard, `doing` is "load" or "write".
static int check_mem(const rd_tabletool *tt,
                     const char *name,
                     const char *doing,
                     uint64_t rows,
                     uint64_t need,
                     rd_errbuf *eb) {
    if (!tt->mem_cap || need <= tt->mem_cap)
        return RD_OK;
    return rd_err_set(eb, RD_ERR_NOMEM,
                      "%s (%llu rows) needs about %llu MiB to %s, more than %s (%llu MiB): the "
                      "table tools hold one shard at a time; reshard it to more shards on a "
                      "machine with more memory",
                      name, (unsigned long long)rows, (unsigned long long)(need >> 20), doing,
                      tt->mem_what ? tt->mem_what : "the memory limit",
                      (unsigned long long)(tt->mem_cap >> 20));
}

// ---------------------------------------------------------------------------------------------
// Open

static int open_tt(
    const char *dir, int stream, unsigned long long mem_limit, rd_tabletool **out, rd_errbuf *eb) {
    *out = NULL;
    rd_tabletool *tt = rd_xcalloc(1, sizeof *tt);
    if (snprintf(tt->dir, sizeof tt->dir, "%s", dir) >= (int)sizeof tt->dir) {
        rd_free(tt);
        return rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long: %.64s...", dir);
    }
    tt->stream = stream;
    if (stream) {
        tt->mem_cap = mem_limit;
        tt->mem_what = "the limit given";
        if (!mem_limit)
            tt->mem_cap = rd_mem_limit(&tt->mem_what);
    }
    tt->man = rd_xmalloc(sizeof *tt->man);
    int rc = rd_ckpt_read_manifest(dir, tt->man, eb);
    if (rc != RD_OK) {
        rd_tabletool_close(tt);
        return rc;
    }
    const uint32_t T = tt->man->n_tables, P = tt->man->n_shards;
    size_t n = (size_t)P * T;
    tt->sum = rd_xcalloc(n ? n : 1, sizeof *tt->sum);
    tt->rows = rd_xcalloc(n ? n : 1, sizeof *tt->rows);
    tt->pend = rd_xcalloc(n ? n : 1, sizeof *tt->pend);
    tt->hist = rd_xcalloc(T ? T : 1, sizeof *tt->hist);
    if (!stream)
        rc = new_tables(tt->man, P, &tt->tab, eb);
    // Every shard is read once here, CRC and records checked: a damaged checkpoint is refused
    // before anything is printed or written, with the reader's message.
    for (uint32_t s = 0; rc == RD_OK && s < P; s++) {
        rd_table **tabs = NULL;
        char name[RD_PATH_MAX * 2];
        if (stream && rd_ckpt_shard_path(dir, (int)s, name, sizeof name) != RD_OK)
            snprintf(name, sizeof name, "shard %u", s);
        if (stream)
            rc = check_mem(tt, name, "load", tt->man->shard_rows[s],
                           shard_mem(tt->man, tt->man->shard_rows[s], 0), eb);
        if (rc == RD_OK && stream)
            rc = new_tables(tt->man, 1, &tabs, eb);
        else if (rc == RD_OK)
            tabs = tt->tab + (size_t)s * T;
        if (rc == RD_OK)
            rc = rd_ckpt_read_shard(dir, (int)s, (int)P, tabs, (int)T, &tt->man->shard_crc[s], NULL,
                                    NULL, eb);
        for (uint32_t t = 0; rc == RD_OK && t < T; t++) {
            const rd_table *tab = tabs[t];
            rd_table_get_stats(tab, &tt->sum[(size_t)s * T + t]);
            tt->rows[(size_t)s * T + t] = rd_table_size(tab);
            tt->pend[(size_t)s * T + t] = rd_table_pending_size(tab);
            for (size_t i = 0; i < rd_table_size(tab) && !tt->misplaced; i++) {
                uint64_t key;
                rd_table_row_at(tab, i, &key, NULL, NULL);
                tt->misplaced = rd_shard_of(key, (int)P) != (int)s;
            }
            size_t cur = 0;
            uint64_t key;
            uint32_t cnt;
            int64_t ls;
            while (!tt->misplaced && rd_table_pending_next(tab, &cur, &key, &cnt, &ls))
                tt->misplaced = rd_shard_of(key, (int)P) != (int)s;
        }
        if (stream)
            free_tables(tabs, T);
    }
    if (rc != RD_OK) {
        rd_tabletool_close(tt);
        return rc;
    }
    *out = tt;
    return RD_OK;
}

int rd_tabletool_open(const char *dir, rd_tabletool **out, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, dir != NULL);
    return open_tt(dir, 0, 0, out, eb);
}

int rd_tabletool_open_stream(const char *dir,
                             unsigned long long mem_limit,
                             rd_tabletool **out,
                             rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, dir != NULL);
    return open_tt(dir, 1, mem_limit, out, eb);
}

static void edit_free(edit *e);

void rd_tabletool_close(rd_tabletool *tt) {
    if (!tt)
        return;
    if (tt->tab)
        free_tables(tt->tab, (size_t)tt->man->n_shards * tt->man->n_tables);
    for (size_t i = 0; i < tt->n_ed; i++)
        edit_free(&tt->ed[i]);
    rd_free(tt->ed);
    rd_free(tt->sum);
    rd_free(tt->rows);
    rd_free(tt->pend);
    rd_free(tt->hist);
    for (int t = 0; t < RD_MAX_TABLES; t++)
        rd_free(tt->admit_src[t]);
    rd_free(tt->man);
    rd_free(tt);
}

const rd_ckpt_manifest *rd_tabletool_manifest(const rd_tabletool *tt) {
    return tt ? tt->man : NULL;
}

int rd_tabletool_find(const rd_tabletool *tt, const char *name) {
    if (!tt || !name)
        return -1;
    for (uint32_t t = 0; t < tt->man->n_tables; t++)
        if (strcmp(tt->man->tables[t].name, name) == 0)
            return (int)t;
    return -1;
}

rd_table *rd_tabletool_table(rd_tabletool *tt, int shard, int table) {
    if (!tt || tt->stream || shard < 0 || (uint32_t)shard >= tt->man->n_shards || table < 0 ||
        (uint32_t)table >= tt->man->n_tables)
        return NULL;
    return tt->tab[(size_t)shard * tt->man->n_tables + (size_t)table];
}

void rd_tabletool_counts(const rd_tabletool *tt, int table, uint64_t *rows, uint64_t *pending) {
    uint64_t r = 0, p = 0;
    for (uint32_t s = 0; tt && s < tt->man->n_shards; s++)
        for (uint32_t t = 0; t < tt->man->n_tables; t++)
            if (table < 0 || (int)t == table) {
                r += tt->rows[(size_t)s * tt->man->n_tables + t];
                p += tt->pend[(size_t)s * tt->man->n_tables + t];
            }
    if (rows)
        *rows = r;
    if (pending)
        *pending = p;
}

// ---------------------------------------------------------------------------------------------
// Shards as the edits leave them

static int import_into(const rd_tabletool *tt,
                       rd_table **tabs,
                       uint32_t s,
                       int part,
                       int n_parts,
                       const edit *e,
                       rd_errbuf *eb);
static int
evict_shard(const rd_tabletool *tt, rd_table **tabs, const edit *e, uint64_t *gone, rd_errbuf *eb);

// The n_tables tables of shard s, only the keys with rd_shard_of(key, n_parts) == part, with
// the edits so far applied. Resident: tt's own tables (all keys; callers filter). Release with
// put_shard.
static int
get_shard(rd_tabletool *tt, uint32_t s, int part, int n_parts, rd_table ***out, rd_errbuf *eb) {
    const uint32_t T = tt->man->n_tables;
    *out = NULL;
    if (!tt->stream) {
        *out = tt->tab + (size_t)s * T;
        return RD_OK;
    }
    rd_table **tabs = NULL;
    int rc = new_tables(tt->man, 1, &tabs, eb);
    if (rc == RD_OK)
        rc = rd_ckpt_read_shard_part(tt->dir, (int)s, (int)tt->man->n_shards, tabs, (int)T,
                                     &tt->man->shard_crc[s], part, n_parts, eb);
    for (size_t i = 0; rc == RD_OK && i < tt->n_ed; i++) {
        if (tt->ed[i].kind == EDIT_EVICT)
            rc = evict_shard(tt, tabs, &tt->ed[i], NULL, eb);
        else if (tt->ed[i].kind == EDIT_IMPORT)
            rc = import_into(tt, tabs, s, part, n_parts, &tt->ed[i], eb);
    }
    if (rc != RD_OK) {
        if (tabs)
            free_tables(tabs, T);
        return rc;
    }
    *out = tabs;
    return RD_OK;
}

static void put_shard(rd_tabletool *tt, rd_table **tabs) {
    if (tt->stream && tabs)
        free_tables(tabs, tt->man->n_tables);
}

static void push_edit(rd_tabletool *tt, const edit *e) {
    if (tt->n_ed == tt->cap_ed) {
        tt->cap_ed = tt->cap_ed ? 2 * tt->cap_ed : 4;
        tt->ed = rd_xrealloc(tt->ed, tt->cap_ed * sizeof *tt->ed);
    }
    tt->ed[tt->n_ed++] = *e;
}

// ---------------------------------------------------------------------------------------------
// Stats

static int log2_bucket(uint64_t v) {
    if (v == UINT64_MAX) // v + 1 would wrap to bucket 0
        return RD_TABLETOOL_HIST - 1;
    int b = 0;
    v += 1;
    while (v > 1 && b < RD_TABLETOOL_HIST - 1) {
        v >>= 1;
        b++;
    }
    return b;
}

// Statistics of every table: pass 1 the row counts and the newest row, pass 2 the histograms
// (ages are counted from the newest row of all shards).
static int compute_stats(rd_tabletool *tt, rd_errbuf *eb) {
    const uint32_t T = tt->man->n_tables;
    for (uint32_t t = 0; t < T; t++) {
        rd_tabletool_hist *h = &tt->hist[t];
        memset(h, 0, sizeof *h);
        h->newest = INT64_MIN;
        h->oldest = INT64_MAX;
    }
    int rc = RD_OK;
    for (int pass = 0; pass < 2 && rc == RD_OK; pass++)
        for (uint32_t s = 0; rc == RD_OK && s < tt->man->n_shards; s++) {
            rd_table **tabs;
            if ((rc = get_shard(tt, s, 0, 1, &tabs, eb)) != RD_OK)
                break;
            for (uint32_t k = 0; k < T; k++) {
                rd_tabletool_hist *h = &tt->hist[k];
                const rd_table *t = tabs[k];
                size_t n = rd_table_size(t);
                for (size_t i = 0; i < n; i++) {
                    int64_t ls;
                    uint64_t c;
                    rd_table_row_at(t, i, NULL, &ls, &c);
                    if (pass == 0) {
                        if (ls > h->newest)
                            h->newest = ls;
                        if (ls < h->oldest)
                            h->oldest = ls;
                    } else {
                        // newest >= ls, but their difference may exceed INT64_MAX: subtract
                        // unsigned.
                        h->age[log2_bucket((uint64_t)h->newest - (uint64_t)ls)]++;
                        h->count[log2_bucket(c)]++;
                    }
                }
                if (pass == 0) {
                    h->rows += n;
                    h->pending += rd_table_pending_size(t);
                    h->row_bytes += n * (8 + 16 + rd_table_row_floats(t) * sizeof(float));
                }
            }
            put_shard(tt, tabs);
        }
    tt->hist_ok = rc == RD_OK;
    return rc;
}

int rd_tabletool_stats(rd_tabletool *tt, int table, rd_tabletool_hist *h, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, tt != NULL);
    RD_ARG_CHECK(eb, table >= 0 && (uint32_t)table < tt->man->n_tables);
    RD_ARG_CHECK(eb, h != NULL);
    if (!tt->hist_ok) {
        int rc = compute_stats(tt, eb);
        if (rc != RD_OK)
            return rc;
    }
    *h = tt->hist[table];
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Evict

// Replace *slot by a copy holding the same rows and counters and the pending counts with
// last_seen >= older_than (the admission map has no remove).
static int drop_pending(
    const rd_ckpt_table *ct, uint64_t seed, rd_table **slot, int64_t older_than, rd_errbuf *eb) {
    rd_table_config tc;
    table_config(ct, &tc);
    rd_table *nt = NULL;
    int rc = rd_table_create(&tc, (int)ct->index, seed, &nt, eb);
    const rd_table *t = *slot;
    for (size_t i = 0; rc == RD_OK && i < rd_table_size(t); i++) {
        uint64_t key, c;
        int64_t ls;
        const float *row = rd_table_row_at(t, i, &key, &ls, &c);
        rc = rd_table_put(nt, key, row, ls, c);
    }
    size_t cur = 0;
    uint64_t key;
    uint32_t cnt;
    int64_t ls;
    while (rc == RD_OK && rd_table_pending_next(t, &cur, &key, &cnt, &ls))
        if (ls >= older_than)
            rc = rd_table_pending_put(nt, key, cnt, ls);
    if (rc != RD_OK) {
        rd_table_destroy(nt);
        return rc;
    }
    rd_table_stats st;
    rd_table_get_stats(t, &st);
    rd_table_set_counters(nt, &st);
    rd_table_destroy(*slot);
    *slot = nt;
    return RD_OK;
}

// Apply eviction rule e to the tables of one shard; *gone += rows removed (gone may be NULL).
static int
evict_shard(const rd_tabletool *tt, rd_table **tabs, const edit *e, uint64_t *gone, rd_errbuf *eb) {
    int rc = RD_OK;
    for (uint32_t k = 0; rc == RD_OK && k < tt->man->n_tables; k++) {
        if (e->table >= 0 && (int)k != e->table)
            continue;
        rd_table *t = tabs[k];
        // Backwards: removal moves the last row into the hole, which is already examined.
        for (size_t i = rd_table_size(t); i-- > 0;) {
            uint64_t key, c;
            int64_t ls;
            rd_table_row_at(t, i, &key, &ls, &c);
            if (ls < e->older_than || c < e->min_count) {
                RD_ASSERT(rd_table_remove(t, key) == RD_OK);
                if (gone)
                    (*gone)++;
            }
        }
        if (e->older_than != INT64_MIN && rd_table_pending_size(t))
            rc = drop_pending(&tt->man->tables[k], tt->man->seed, &tabs[k], e->older_than, eb);
    }
    return rc;
}

int rd_tabletool_evict(rd_tabletool *tt,
                       int table,
                       int64_t older_than,
                       uint64_t min_count,
                       uint64_t *removed,
                       rd_errbuf *eb) {
    RD_ARG_CHECK(eb, tt != NULL);
    RD_ARG_CHECK(eb, table >= -1 && table < (int64_t)tt->man->n_tables);
    edit e;
    memset(&e, 0, sizeof e);
    e.kind = EDIT_EVICT;
    e.table = table;
    e.older_than = older_than;
    e.min_count = min_count;
    uint64_t gone = 0;
    const uint32_t T = tt->man->n_tables;
    int rc = RD_OK;
    tt->hist_ok = 0;
    // Resident: applied to the tables. Streamed: applied to each shard as it is read (which
    // replays the edits before this one), to count what goes and what stays; then recorded.
    for (uint32_t s = 0; rc == RD_OK && s < tt->man->n_shards; s++) {
        rd_table **tabs;
        if ((rc = get_shard(tt, s, 0, 1, &tabs, eb)) != RD_OK)
            break;
        rc = evict_shard(tt, tabs, &e, &gone, eb);
        for (uint32_t k = 0; rc == RD_OK && k < T; k++) {
            tt->rows[(size_t)s * T + k] = rd_table_size(tabs[k]);
            tt->pend[(size_t)s * T + k] = rd_table_pending_size(tabs[k]);
        }
        put_shard(tt, tabs);
    }
    if (rc == RD_OK && tt->stream)
        push_edit(tt, &e);
    if (removed)
        *removed = gone;
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Export / import

// A row to export, sorted by key: its shard and its index there (row_ref), or its index in an
// import's rows (imp_ref, 16 bytes: an import may be large). The indices are 64 bits: a shard's
// table grows past 2^32 rows (its capacity alone may be 2^40), and so may an import (streamed, it
// holds 16 to 24 bytes a row); a 32-bit index wrapped there without a word, and the export wrote
// row i - 2^32 in place of row i. The key comes first: cmp_ref sorts both.
typedef struct row_ref {
    uint64_t key;
    uint64_t idx;
    uint32_t shard;
} row_ref;

typedef struct imp_ref {
    uint64_t key;
    uint64_t idx;
} imp_ref;

uint64_t rd__tabletool_ref_idx_max(void) {
    row_ref r; // all bits set: each index holds its largest value
    imp_ref m;
    memset(&r, 0xff, sizeof r);
    memset(&m, 0xff, sizeof m);
    return r.idx < m.idx ? (uint64_t)r.idx : (uint64_t)m.idx;
}

static int cmp_ref(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b; // the key: first of either
    return x < y ? -1 : x > y;
}

static int cmp_pend(const void *a, const void *b) {
    uint64_t x = ((const pend_ref *)a)->key, y = ((const pend_ref *)b)->key;
    return x < y ? -1 : x > y;
}

// Every pending admission count of `table`, sorted by key (resident). Free with rd_free.
static pend_ref *collect_pending(const rd_tabletool *tt, int table, size_t *n_out) {
    const uint32_t T = tt->man->n_tables;
    size_t n = 0;
    for (uint32_t s = 0; s < tt->man->n_shards; s++)
        n += rd_table_pending_size(tt->tab[(size_t)s * T + (size_t)table]);
    pend_ref *p = rd_xmalloc((n ? n : 1) * sizeof *p);
    size_t k = 0;
    for (uint32_t s = 0; s < tt->man->n_shards; s++) {
        const rd_table *t = tt->tab[(size_t)s * T + (size_t)table];
        size_t cur = 0;
        uint64_t key;
        uint32_t cnt;
        int64_t ls;
        while (k < n && rd_table_pending_next(t, &cur, &key, &cnt, &ls)) {
            p[k].key = key;
            p[k].last_seen = ls;
            p[k++].count = cnt;
        }
    }
    qsort(p, k, sizeof *p, cmp_pend);
    *n_out = k;
    return p;
}

// The export's writer: the header, rows and pending counts in the order given, the CRC.
typedef struct exp_out {
    FILE *f;
    int format;
    size_t nf;
    uint32_t crc;
    char *line; // TSV: one row's text (exp_line_cap(nf) bytes), written with one fwrite
    int err;    // errno of the first write that failed (0: none); nothing is written after it
} exp_out;

// Every write of the export goes through here: the errno of the first one that fails is kept,
// since the stream's error flag alone does not say why (a full disk was reported as "write
// error (Input/output error)" when the buffer flush that failed was not the last one).
static void exp_put(exp_out *o, const void *p, size_t n) {
    if (o->err || n == 0)
        return;
    errno = 0;
    if (fwrite(p, 1, n, o->f) != n)
        o->err = errno ? errno : EIO;
}

// Bytes of a TSV row: three integers (at most 20 digits and a sign each), nf floats
// (rd_fmt_float9), the tabs and the newline.
static size_t exp_line_cap(size_t nf) {
    return 3 * 24 + nf * RD_FMT_FLOAT_MAX + 2;
}

static void exp_header(exp_out *o, const rd_ckpt_table *ct, uint64_t n, uint64_t np) {
    if (o->format == RD_TABLETOOL_TSV) {
        char h[RD_NAME_MAX + 160];
        int k = snprintf(h, sizeof h,
                         "# table %s dim %u slots %u optimizer %s rows %zu pending %zu\n", ct->name,
                         ct->dim, ct->slots, rd_optim_name((int)ct->optim), (size_t)n, (size_t)np);
        exp_put(o, h, k > 0 && (size_t)k < sizeof h ? (size_t)k : 0);
    } else {
        unsigned char h[EXP_HEADER + 8];
        uint32_t v[4] = {EXP_VERSION, ct->dim, ct->slots, ct->optim};
        uint64_t rows = n, pending = np;
        char name[RD_NAME_MAX];
        memset(name, 0, sizeof name);
        snprintf(name, sizeof name, "%s", ct->name);
        memcpy(h, exp_magic, 8);
        memcpy(h + 8, v, sizeof v);
        memcpy(h + 24, &rows, 8);
        memcpy(h + 32, name, sizeof name);
        memcpy(h + EXP_HEADER, &pending, 8);
        o->crc = rd_crc32c(o->crc, h, sizeof h);
        exp_put(o, h, sizeof h);
    }
}

static void exp_row(exp_out *o, uint64_t key, int64_t ls, uint64_t c, const float *row) {
    if (o->format == RD_TABLETOOL_TSV) {
        // "%.9g" of every float (rd_fmt_float9 writes printf's bytes, several times faster).
        char *p = o->line;
        int n = snprintf(p, 3 * 24, "%llu\t%lld\t%llu", (unsigned long long)key, (long long)ls,
                         (unsigned long long)c);
        p += n > 0 ? n : 0;
        for (size_t j = 0; j < o->nf; j++) {
            *p++ = '\t';
            p += rd_fmt_float9(row[j], p);
        }
        *p++ = '\n';
        exp_put(o, o->line, (size_t)(p - o->line));
    } else {
        unsigned char r[24];
        memcpy(r, &key, 8);
        memcpy(r + 8, &ls, 8);
        memcpy(r + 16, &c, 8);
        o->crc = rd_crc32c(o->crc, r, sizeof r);
        o->crc = rd_crc32c(o->crc, row, o->nf * sizeof(float));
        exp_put(o, r, sizeof r);
        exp_put(o, row, o->nf * sizeof(float));
    }
}

static void exp_pending(exp_out *o, uint64_t key, int64_t ls, uint32_t count) {
    if (o->format == RD_TABLETOOL_TSV) {
        char t[96];
        int k = snprintf(t, sizeof t, "pending\t%llu\t%lld\t%u\n", (unsigned long long)key,
                         (long long)ls, count);
        exp_put(o, t, k > 0 && (size_t)k < sizeof t ? (size_t)k : 0);
    } else {
        unsigned char r[24];
        uint32_t zero = 0;
        memcpy(r, &key, 8);
        memcpy(r + 8, &ls, 8);
        memcpy(r + 16, &count, 4);
        memcpy(r + 20, &zero, 4);
        o->crc = rd_crc32c(o->crc, r, sizeof r);
        exp_put(o, r, sizeof r);
    }
}

static int exp_finish(exp_out *o, const rd_ckpt_table *ct, rd_errbuf *eb) {
    if (o->format != RD_TABLETOOL_TSV)
        exp_put(o, &o->crc, 4);
    // The first failed write's errno (exp_put), else this flush's.
    errno = 0;
    int e = o->err ? o->err : fflush(o->f) != 0 ? (errno ? errno : EIO) : 0;
    if (e || ferror(o->f))
        return rd_err_set(eb, RD_ERR_IO, "export of table %s: write error (%s)", ct->name,
                          strerror(e ? e : EIO));
    return RD_OK;
}

static int export_resident(const rd_tabletool *tt, int table, exp_out *o, rd_errbuf *eb) {
    const uint32_t T = tt->man->n_tables;
    const rd_ckpt_table *ct = &tt->man->tables[table];
    size_t n = 0;
    for (uint32_t s = 0; s < tt->man->n_shards; s++)
        n += rd_table_size(tt->tab[(size_t)s * T + (size_t)table]);
    row_ref *ref = rd_xmalloc((n ? n : 1) * sizeof *ref);
    size_t k = 0;
    for (uint32_t s = 0; s < tt->man->n_shards; s++) {
        const rd_table *t = tt->tab[(size_t)s * T + (size_t)table];
        for (size_t i = 0; i < rd_table_size(t); i++) {
            rd_table_row_at(t, i, &ref[k].key, NULL, NULL);
            ref[k].shard = s;
            ref[k++].idx = i;
        }
    }
    qsort(ref, n, sizeof *ref, cmp_ref);
    size_t np = 0;
    pend_ref *pend = collect_pending(tt, table, &np);
    exp_header(o, ct, n, np);
    for (size_t i = 0; i < n; i++) {
        const rd_table *t = tt->tab[(size_t)ref[i].shard * T + (size_t)table];
        uint64_t key, c;
        int64_t ls;
        const float *row = rd_table_row_at(t, (size_t)ref[i].idx, &key, &ls, &c);
        exp_row(o, key, ls, c, row);
    }
    // The pending admission counts (keys seen fewer than admit_count times, no row yet): without
    // them an imported table starts those keys' counts again, and a resume from it differs.
    for (size_t i = 0; i < np; i++)
        exp_pending(o, pend[i].key, pend[i].last_seen, pend[i].count);
    rd_free(pend);
    rd_free(ref);
    return exp_finish(o, ct, eb);
}
// Where entries of one kind (rows, or pending counts) stood in a TSV import: runs of consecutive
// lines, entry `index` on line `line` and the next ones on the lines after it. An export is one
// run of rows and one of pending counts whatever its size; a hand-edited file adds a run per
// comment line or per switch between the two kinds. Messages name the line of an entry with it.
typedef struct line_run {
    size_t index; // first entry of the run
    long line;    // its line (1-based)
} line_run;

enum { ENTRY_ROW = 0, ENTRY_PENDING = 1 };

// Parsed rows of an import. Resident (rd_tabletool_open): every field in memory. Streamed
// (rd_tabletool_open_stream): the keys stay in memory, each row's last_seen, count and values go
// to an unlinked temporary file (spill, spill_rec(nf) bytes a row, in input order), read back a
// shard at a time through by_shard / shard_start: an import holds 16 to 24 bytes a row (key,
// index, the key array's growth), not the rows.
typedef struct rows_in {
    size_t n, cap, nf;
    uint64_t *key;
    int64_t *ls;     // resident only
    uint64_t *count; // resident only
    float *val;      // resident only
    size_t np, pcap; // pending admission counts
    pend_ref *pend;
    int has_pending;     // the file records pending counts (format version 2)
    const char *keys_of; // the table whose salt the keys must carry: the table's, or its init_as
    char *what;          // a recorded import (streamed): the file's name, for messages (owned)
    // Checks of each row as it is read; the first failure is kept in chk and reported once the
    // whole file has parsed (its format, a binary file's CRC, come first, as they always did).
    rd_errbuf chk;
    int chk_rc;
    size_t dim;
    int sq_slot;         // optimizer slot of sums of squares (never negative), -1 = none
    const char *sq_name; // what that slot is, for messages
    // Streamed: the spill file and the rows' order by shard.
    FILE *spill;         // NULL = resident
    size_t *by_shard;    // (n) row indices, shard by shard (rd_shard_of(key, P)), input order
    size_t *shard_start; // (P + 1) rows of shard s: by_shard[shard_start[s] .. shard_start[s+1])
    unsigned char *rec;  // (spill_rec(nf)) one row read back
    // Where each entry is in the file, for messages: a TSV's lines (runs[ENTRY_ROW], runs[
    // ENTRY_PENDING]), or a binary file's byte offsets (bin_header: the header's bytes).
    int bin;
    size_t bin_header;
    line_run *runs[2];
    size_t n_runs[2], runs_cap[2];
} rows_in;

// Entry `index` of `kind` is on line `line` of a TSV import.
static void note_line(rows_in *r, int kind, size_t index, long line) {
    size_t n = r->n_runs[kind];
    const line_run *last = n ? &r->runs[kind][n - 1] : NULL;
    if (last && last->line + (long)(index - last->index) == line)
        return;
    if (n == r->runs_cap[kind]) {
        r->runs_cap[kind] = n ? 2 * n : 4;
        r->runs[kind] = rd_xrealloc(r->runs[kind], r->runs_cap[kind] * sizeof *r->runs[kind]);
    }
    r->runs[kind][n].index = index;
    r->runs[kind][n].line = line;
    r->n_runs[kind] = n + 1;
}

// Position of entry i of `kind` in the file, in file order: its line (TSV) or its byte offset
// (binary: the rows, then the pending counts).
static long long entry_pos(const rows_in *r, int kind, size_t i) {
    if (r->bin) {
        size_t row_bytes = 24 + r->nf * sizeof(float);
        return kind == ENTRY_ROW ? (long long)(r->bin_header + i * row_bytes)
                                 : (long long)(r->bin_header + r->n * row_bytes + i * 24);
    }
    const line_run *run = r->runs[kind];
    size_t lo = 0, hi = r->n_runs[kind]; // the last run with index <= i
    if (hi == 0)
        return 0;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (run[mid].index <= i)
            lo = mid;
        else
            hi = mid;
    }
    return run[lo].line + (long long)(i - run[lo].index);
}

// "FILE:LINE: row I" (TSV) or "FILE: row I (byte B)" (binary), and likewise "pending count I":
// where entry i of `kind` is, as a message starts.
static void
entry_at(const rows_in *r, const char *what, int kind, size_t i, char *out, size_t cap) {
    const char *k = kind == ENTRY_ROW ? "row" : "pending count";
    if (r->bin)
        snprintf(out, cap, "%s: %s %zu (byte %lld)", what, k, i, entry_pos(r, kind, i));
    else
        snprintf(out, cap, "%s:%lld: %s %zu", what, entry_pos(r, kind, i), k, i);
}

// Bytes of one spilled row: last_seen i64 | count u64 | nf floats.
static size_t spill_rec(size_t nf) {
    return 16 + nf * sizeof(float);
}

static void pend_push(rows_in *r, uint64_t key, int64_t ls, uint32_t c) {
    if (r->np == r->pcap) {
        r->pcap = r->pcap ? 2 * r->pcap : 256;
        r->pend = rd_xrealloc(r->pend, r->pcap * sizeof *r->pend);
    }
    r->pend[r->np].key = key;
    r->pend[r->np].last_seen = ls;
    r->pend[r->np++].count = c;
}

// Row r->n of the file: checked (key non-zero, values finite, sums of squares >= 0: the first
// failure goes to r->chk), then kept. @return RD_OK, or RD_ERR_IO when the spill fails.
static int rows_push(rows_in *r,
                     uint64_t key,
                     int64_t ls,
                     uint64_t c,
                     const float *v,
                     const char *what,
                     rd_errbuf *eb) {
    size_t i = r->n;
    // The first failing check; its message (with the entry's place, formatted only then: a
    // snprintf per row would slow a large import) is kept in r->chk.
    size_t bad_val = r->nf, bad_sq = r->nf;
    int bad_key = !r->chk_rc && key == 0;
    for (size_t j = 0; !r->chk_rc && !bad_key && bad_val == r->nf && j < r->nf; j++)
        if (!isfinite(v[j]))
            bad_val = j;
    // Optimizer state the optimizer can hold: its sums of squared gradients (Adagrad's
    // accumulator, Adam's v, FTRL's n) are >= 0; a negative one made the first update of the row
    // NaN, reported at train time as a diverged optimizer.
    for (size_t j = 0; !r->chk_rc && !bad_key && bad_val == r->nf && bad_sq == r->nf &&
                       r->sq_slot >= 0 && j < r->dim;
         j++)
        if (v[r->dim * (1 + (size_t)r->sq_slot) + j] < 0)
            bad_sq = j;
    if (bad_key || bad_val < r->nf || bad_sq < r->nf) {
        char at[RD_PATH_MAX + 64];
        entry_at(r, what, ENTRY_ROW, i, at, sizeof at);
        size_t col = r->dim * (1 + (size_t)(r->sq_slot < 0 ? 0 : r->sq_slot)) + bad_sq;
        if (bad_key)
            r->chk_rc = rd_err_set(&r->chk, RD_ERR_PARSE, "%s has key 0 (reserved)", at);
        else if (bad_val < r->nf)
            r->chk_rc = rd_err_set(&r->chk, RD_ERR_PARSE, "%s (key %llu) has a non-finite value",
                                   at, (unsigned long long)key);
        else
            r->chk_rc = rd_err_set(&r->chk, RD_ERR_PARSE,
                                   "%s (key %llu): value %zu of %zu after the count (%s, "
                                   "coordinate %zu) is %g: a sum of squares, never negative",
                                   at, (unsigned long long)key, col + 1, r->nf, r->sq_name, bad_sq,
                                   (double)v[col]);
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 1024;
        r->key = rd_xrealloc(r->key, r->cap * sizeof *r->key);
        if (!r->spill) {
            r->ls = rd_xrealloc(r->ls, r->cap * sizeof *r->ls);
            r->count = rd_xrealloc(r->count, r->cap * sizeof *r->count);
            r->val = rd_xrealloc(r->val, r->cap * r->nf * sizeof *r->val);
        }
    }
    r->key[i] = key;
    if (r->spill) {
        if (fwrite(&ls, 8, 1, r->spill) != 1 || fwrite(&c, 8, 1, r->spill) != 1 ||
            fwrite(v, sizeof *v, r->nf, r->spill) != r->nf)
            return rd_err_set(eb, RD_ERR_IO,
                              "%s: row %zu: writing the import's temporary file: %s (TMPDIR "
                              "names where it goes)",
                              what, i, strerror(errno));
    } else {
        r->ls[i] = ls;
        r->count[i] = c;
        memcpy(r->val + i * r->nf, v, r->nf * sizeof *v);
    }
    r->n++;
    return RD_OK;
}

// Row i of an import: its last_seen, count and values (into r->rec when spilled: valid until
// the next call).
static int row_get(rows_in *r, size_t i, int64_t *ls, uint64_t *c, const float **v, rd_errbuf *eb) {
    if (!r->spill) {
        *ls = r->ls[i];
        *c = r->count[i];
        *v = r->val + i * r->nf;
        return RD_OK;
    }
    size_t len = spill_rec(r->nf);
    ssize_t got = pread(fileno(r->spill), r->rec, len, (off_t)(i * len));
    if (got != (ssize_t)len)
        return rd_err_set(eb, RD_ERR_IO, "%s: row %zu: reading the import's temporary file: %s",
                          r->what ? r->what : "import", i,
                          got < 0 ? strerror(errno) : "short read");
    memcpy(ls, r->rec, 8);
    memcpy(c, r->rec + 8, 8);
    *v = (const float *)(const void *)(r->rec + 16);
    return RD_OK;
}

static void rows_free(rows_in *r) {
    rd_free(r->key);
    rd_free(r->ls);
    rd_free(r->count);
    rd_free(r->val);
    rd_free(r->pend);
    rd_free(r->by_shard);
    rd_free(r->shard_start);
    rd_free(r->rec);
    rd_free(r->runs[ENTRY_ROW]);
    rd_free(r->runs[ENTRY_PENDING]);
    if (r->spill)
        fclose(r->spill);
    r->spill = NULL;
}

// An unlinked temporary file for the rows of a streamed import or of an export merged in groups
// (`kind`: "import", "export"), in $TMPDIR when set, else beside the checkpoint (its parent
// folder): the rows may not fit in memory, nor in a tmpfs /tmp; /tmp only when that folder
// refuses the file (no permission, read-only). The folder used goes to where (where_cap bytes)
// when not NULL, for the messages of later writes.
static int spill_open(const rd_tabletool *tt,
                      const char *what,
                      const char *kind,
                      FILE **out,
                      char *where,
                      size_t where_cap,
                      rd_errbuf *eb) {
    char dir[RD_PATH_MAX];
    const char *env = getenv("TMPDIR");
    if (env && env[0]) {
        snprintf(dir, sizeof dir, "%s", env);
    } else {
        snprintf(dir, sizeof dir, "%s", tt->dir);
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            dir[--n] = 0;
        char *slash = strrchr(dir, '/');
        if (!slash)
            snprintf(dir, sizeof dir, ".");
        else if (slash == dir)
            dir[1] = 0;
        else
            *slash = 0;
    }
    char path[RD_PATH_MAX + 32];
    int n = snprintf(path, sizeof path, "%s/.rd-%s-XXXXXX", dir, kind);
    if (n < 0 || (size_t)n >= sizeof path)
        return rd_err_set(eb, RD_ERR_RANGE, "%s: temporary folder path too long: %s", what, dir);
    int fd = mkstemp(path);
    int err = errno;
    // TMPDIR unset and the checkpoint's folder refuses the file (a read-only checkpoint, or one
    // of another user: an import or export only reads it, and before the spill needed no write
    // there): the system's temporary folder, as the rows' memory was before.
    int fallback = fd < 0 && !(env && env[0]) && (err == EACCES || err == EPERM || err == EROFS);
    int err2 = 0;
    if (fallback) {
        snprintf(path, sizeof path, "/tmp/.rd-%s-XXXXXX", kind);
        fd = mkstemp(path);
        err2 = errno;
        if (fd >= 0)
            snprintf(dir, sizeof dir, "/tmp");
    }
    if (fd < 0 && fallback)
        return rd_err_set(eb, RD_ERR_IO,
                          "%s: cannot create the %s's temporary file in %s (%s) nor in /tmp "
                          "(%s): set TMPDIR to a folder with room for the rows",
                          what, kind, dir, strerror(err), strerror(err2));
    if (fd < 0)
        return rd_err_set(eb, RD_ERR_IO,
                          "%s: cannot create the %s's temporary file in %s: %s (set TMPDIR "
                          "to a folder with room for the rows)",
                          what, kind, dir, strerror(err));
    unlink(path); // gone with the last descriptor, whatever happens to this process
    FILE *f = fdopen(fd, "w+b");
    if (!f) {
        err = errno;
        close(fd);
        return rd_err_set(eb, RD_ERR_IO, "%s: temporary file: %s", what, strerror(err));
    }
    if (where)
        snprintf(where, where_cap, "%s", dir);
    *out = f;
    return RD_OK;
}

// The rows of a spilled import ordered by shard of P (counting sort, input order kept within a
// shard), after the spill is flushed.
static int spill_index(rows_in *r, uint32_t P, const char *what, rd_errbuf *eb) {
    if (fflush(r->spill) != 0 || ferror(r->spill))
        return rd_err_set(eb, RD_ERR_IO,
                          "%s: writing the import's temporary file: %s (TMPDIR "
                          "names where it goes)",
                          what, strerror(errno));
    r->shard_start = rd_xcalloc((size_t)P + 1, sizeof *r->shard_start);
    r->by_shard = rd_xmalloc((r->n ? r->n : 1) * sizeof *r->by_shard);
    r->rec = rd_xmalloc(spill_rec(r->nf));
    for (size_t i = 0; i < r->n; i++)
        r->shard_start[rd_shard_of(r->key[i], (int)P) + 1]++;
    for (uint32_t s = 0; s < P; s++)
        r->shard_start[s + 1] += r->shard_start[s];
    size_t *pos = rd_xmalloc(((size_t)P + 1) * sizeof *pos);
    memcpy(pos, r->shard_start, ((size_t)P + 1) * sizeof *pos);
    for (size_t i = 0; i < r->n; i++)
        r->by_shard[pos[rd_shard_of(r->key[i], (int)P)]++] = i;
    rd_free(pos);
    return RD_OK;
}

// Rows of table `from` offered to table `to`: refused. A row's key is rd_table_key(salt,
// feature key) with the salt of the table it was trained in (its name, or its init_as), and the
// export holds only these salted keys: table `to` would never look one of them up, so its
// trained rows would be replaced by dead ones and every lookup would start from the initial
// value again. Editing the header does not change the keys.
static int
other_table(const char *what, const char *from, const rows_in *r, const char *to, rd_errbuf *eb) {
    if (strcmp(r->keys_of, to) != 0) // --keys-of given
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s: rows of table %s, but --keys-of says table %s's keys carry the salt "
                          "of table %s",
                          what, from, to, r->keys_of);
    return rd_err_set(eb, RD_ERR_SCHEMA,
                      "%s: rows of table %s, but they are imported into table %s: keys are hashed "
                      "with their table's name (or its init_as), so table %s would look these "
                      "rows up only if the config gives it init_as: %s (then say so with "
                      "--keys-of %s); else its own trained rows would be lost",
                      what, from, to, to, from, from);
}

static int read_bin(FILE *f, const rd_ckpt_table *ct, const char *what, rows_in *r, rd_errbuf *eb) {
    unsigned char h[EXP_HEADER + 8];
    if (fread(h, 1, EXP_HEADER, f) != EXP_HEADER)
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: truncated header", what);
    if (memcmp(h, exp_magic, sizeof exp_magic) != 0)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s: not a table export (no RDTBLEXP magic, and not TSV: a TSV line "
                          "starts with a key or '#')",
                          what);
    uint32_t v[4];
    uint64_t rows, pending = 0;
    memcpy(v, h + 8, sizeof v);
    memcpy(&rows, h + 24, 8);
    if (v[0] != 1 && v[0] != EXP_VERSION)
        return rd_err_set(eb, RD_ERR_VERSION, "%s: export version %u, this build reads 1..%d", what,
                          v[0], EXP_VERSION);
    size_t hlen = EXP_HEADER;
    if (v[0] >= 2) { // u64 pending after the name
        if (fread(h + EXP_HEADER, 1, 8, f) != 8)
            return rd_err_set(eb, RD_ERR_CORRUPT, "%s: truncated header", what);
        memcpy(&pending, h + EXP_HEADER, 8);
        hlen += 8;
        r->has_pending = 1;
    }
    if (v[1] != ct->dim || v[2] != ct->slots || v[3] != ct->optim)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s: rows of dim %u, %u slots (%s); table %s is dim %u, %u slots (%s)",
                          what, v[1], v[2], rd_optim_name((int)v[3]), ct->name, ct->dim, ct->slots,
                          rd_optim_name((int)ct->optim));
    r->bin = 1;
    r->bin_header = hlen;
    uint32_t crc = rd_crc32c(0, h, hlen);
    float *vals = rd_xmalloc(r->nf * sizeof *vals);
    int rc = RD_OK;
    for (uint64_t i = 0; i < rows && rc == RD_OK; i++) {
        unsigned char rr[24];
        if (fread(rr, 1, 24, f) != 24 || fread(vals, sizeof(float), r->nf, f) != r->nf) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: truncated at row %llu of %llu", what,
                            (unsigned long long)i, (unsigned long long)rows);
            break;
        }
        crc = rd_crc32c(crc, rr, 24);
        crc = rd_crc32c(crc, vals, r->nf * sizeof(float));
        uint64_t key, c;
        int64_t ls;
        memcpy(&key, rr, 8);
        memcpy(&ls, rr + 8, 8);
        memcpy(&c, rr + 16, 8);
        rc = rows_push(r, key, ls, c, vals, what, eb);
    }
    rd_free(vals);
    for (uint64_t i = 0; i < pending && rc == RD_OK; i++) {
        unsigned char rr[24];
        if (fread(rr, 1, 24, f) != 24) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: truncated at pending count %llu of %llu", what,
                            (unsigned long long)i, (unsigned long long)pending);
            break;
        }
        crc = rd_crc32c(crc, rr, 24);
        uint64_t key;
        int64_t ls;
        uint32_t c;
        memcpy(&key, rr, 8);
        memcpy(&ls, rr + 8, 8);
        memcpy(&c, rr + 16, 4);
        pend_push(r, key, ls, c);
    }
    uint32_t want;
    if (rc == RD_OK && (fread(&want, 4, 1, f) != 1 || want != crc))
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: CRC mismatch (file damaged)", what);
    if (rc == RD_OK && fgetc(f) != EOF)
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: trailing bytes after the CRC", what);
    // The export names its table (checked once the CRC says the header is whole).
    char name[RD_NAME_MAX + 1];
    memcpy(name, h + 32, RD_NAME_MAX);
    name[RD_NAME_MAX] = '\0';
    if (rc == RD_OK && strcmp(name, r->keys_of) != 0)
        rc = other_table(what, name, r, ct->name, eb);
    return rc;
}

// The header line from `at` to its end, cut at 40 bytes, for a message.
static void header_excerpt(const char *at, char *out, size_t cap) {
    size_t w = strcspn(at, "\n");
    snprintf(out, cap, "%.*s%s", (int)(w > 40 ? 40 : w), at, w > 40 ? "..." : "");
}

// The header line of a TSV export, "# table NAME dim D slots S optimizer OPT rows N pending M"
// ("pending M" since format 2), checked against the table imported into: its layout, its name
// and its optimizer (rows of another table, or slots of another optimizer, would load without
// a word). The header is required: it is what makes a cut or foreign file detectable.
// @return RD_OK with *rows (and *pending, r->has_pending), or an rd_status.
static int tsv_header(const char *line,
                      const rd_ckpt_table *ct,
                      const char *what,
                      rows_in *r,
                      size_t *rows,
                      size_t *pending,
                      rd_errbuf *eb) {
    unsigned dim, slots;
    char name[RD_NAME_MAX + 8], opt[32];
    // end[k]: where the header's k-th field ends (1 name, 2 dim, 3 slots, 4 optimizer, 5 rows,
    // 6 pending), so that whatever follows the last field parsed can be checked: sscanf stops at
    // the first mismatch and took "rows 5 junk", "rows 5x" or "rows 3 pending 1 extra" as a valid
    // header. And a space in its format is "any whitespace, or none" (a conversion skips leading
    // whitespace too): "rows5", "rows 1pending 0" or "dim  3" matched, hence the separators are
    // checked below against sep[k], the text before field k as export writes it.
    static const char *const sep[7] = {"",       "# table ", " dim ", " slots ", " optimizer ",
                                       " rows ", " pending "};
    static const char *const field[7] = {
        "", "# table NAME", " dim D", " slots S", " optimizer OPT", " rows N", " pending M"};
    int end[7] = {0};
    int n = strncmp(line, "# table ", 8) != 0
                ? 0
                : sscanf(line,
                         "# table %39s%n dim %u%n slots %u%n optimizer %31s%n rows %zu%n pending "
                         "%zu%n",
                         name, &end[1], &dim, &end[2], &slots, &end[3], opt, &end[4], rows, &end[5],
                         pending, &end[6]);
    if (n < 4)
        return rd_err_set(eb, RD_ERR_PARSE,
                          "%s:1: no '# table NAME dim D slots S optimizer OPT rows N pending M' "
                          "header line; `recdistill table export` writes one, and it is required: "
                          "it names the table and counts the rows, so that a cut or foreign file "
                          "is refused",
                          what);
    // Every field parsed follows its keyword and one space, after one space.
    for (int k = 1; k <= n; k++) {
        const char *at = line + (k == 1 ? 0 : end[k - 1]);
        size_t len = strlen(sep[k]);
        if (strncmp(at, sep[k], len) == 0 && !isspace((unsigned char)at[len]))
            continue;
        char shown[48];
        header_excerpt(at, shown, sizeof shown);
        return rd_err_set(eb, RD_ERR_PARSE,
                          "%s:1: '%s' in the header line where '%s' was expected (its fields are "
                          "separated by single spaces, as `recdistill table export` writes them)",
                          what, shown, field[k]);
    }
    if (dim != ct->dim || slots != ct->slots)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s: rows of dim %u with %u slots; table %s is dim %u with %u slots",
                          what, dim, slots, ct->name, ct->dim, ct->slots);
    if (strcmp(name, r->keys_of) != 0) {
        char w[RD_PATH_MAX + 8];
        snprintf(w, sizeof w, "%s:1", what);
        return other_table(w, name, r, ct->name, eb);
    }
    if (strcmp(opt, rd_optim_name((int)ct->optim)) != 0)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s:1: header says optimizer %s, but table %s uses %s (its slots would "
                          "be read as the other optimizer's)",
                          what, opt, ct->name, rd_optim_name((int)ct->optim));
    if (n < 5)
        return rd_err_set(eb, RD_ERR_PARSE,
                          "%s:1: the header line has no 'rows N': the row count is required (it "
                          "is how a cut file is refused)",
                          what);
    // The counts are digits: %zu also takes "-1" (as SIZE_MAX) and "+3".
    const char *rp = strstr(line + end[4], "rows") + 4;
    while (*rp == ' ' || *rp == '\t')
        rp++;
    const char *pp = n == 6 ? strstr(line + end[5], "pending") + 7 : NULL;
    while (pp && (*pp == ' ' || *pp == '\t'))
        pp++;
    if (!isdigit((unsigned char)*rp) || (pp && !isdigit((unsigned char)*pp)))
        return rd_err_set(eb, RD_ERR_PARSE,
                          "%s:1: the header line's %s count is not a non-negative integer", what,
                          !isdigit((unsigned char)*rp) ? "rows" : "pending");
    const char *rest = line + end[n];
    if (*rest != '\n' && *rest != '\0') {
        char shown[48];
        header_excerpt(rest, shown, sizeof shown);
        return rd_err_set(eb, RD_ERR_PARSE,
                          "%s:1: unexpected '%s' after '%s' in the header line (expected '# table "
                          "NAME dim D slots S optimizer OPT rows N pending M' and nothing after)",
                          what, shown, n == 6 ? "pending M" : "rows N");
    }
    r->has_pending = n == 6;
    if (n == 5)
        *pending = 0;
    return RD_OK;
}

// "pending\tKEY\tLAST_SEEN\tCOUNT": one pending admission count. @return 1 parsed, 0 malformed.
static int tsv_pending(const char *line, uint64_t *key, int64_t *ls, uint32_t *count) {
    const char *p = line + 8; // after "pending\t"
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*p))
        return 0;
    unsigned long long k = strtoull(p, &end, 10);
    if (*end != '\t' || errno)
        return 0;
    p = end + 1;
    if (isspace((unsigned char)*p)) // strtoll would skip it
        return 0;
    long long l = strtoll(p, &end, 10);
    if (end == p || *end != '\t' || errno)
        return 0;
    p = end + 1;
    if (!isdigit((unsigned char)*p))
        return 0;
    unsigned long long c = strtoull(p, &end, 10);
    if (errno || (*end != '\n' && *end != 0) || c == 0 || c > UINT32_MAX)
        return 0;
    *key = k;
    *ls = l;
    *count = (uint32_t)c;
    return 1;
}

static int read_tsv(FILE *f, const rd_ckpt_table *ct, const char *what, rows_in *r, rd_errbuf *eb) {
    size_t cap = 64 + r->nf * 32;
    char *line = rd_xmalloc(cap);
    float *vals = rd_xmalloc(r->nf * sizeof *vals);
    int rc = RD_OK;
    long lineno = 0;
    size_t want_rows = 0, want_pending = 0;
    int ended = 1; // the last line read had its '\n'
    while (rc == RD_OK && fgets(line, (int)cap, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len + 1 == cap && line[len - 1] != '\n') {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%ld: line too long", what, lineno);
            break;
        }
        // fgets stops at a line break, a full buffer or the end of the file: a string that ends
        // before all three stopped at a NUL byte inside the line, and the rest of the line (a
        // field, a header's count, junk) would be ignored, or read as a line of its own.
        if ((len == 0 || line[len - 1] != '\n') && !feof(f)) {
            rc = rd_err_set(eb, RD_ERR_PARSE,
                            "%s:%ld: a NUL byte at column %zu (a TSV export is text)", what, lineno,
                            len + 1);
            break;
        }
        ended = len > 0 && line[len - 1] == '\n';
        if (ended && len >= 2 && line[len - 2] == '\r') { // CRLF: a file saved on Windows
            line[len - 2] = '\n';
            line[--len] = '\0';
        }
        if (lineno == 1) {
            rc = tsv_header(line, ct, what, r, &want_rows, &want_pending, eb);
            continue;
        }
        if (line[0] == '#')
            continue; // a comment
        if (strncmp(line, "pending\t", 8) == 0) {
            uint64_t key;
            int64_t ls;
            uint32_t c;
            if (!r->has_pending)
                rc = rd_err_set(eb, RD_ERR_PARSE,
                                "%s:%ld: a pending line, but the header counts none (no "
                                "'pending M')",
                                what, lineno);
            else if (!tsv_pending(line, &key, &ls, &c))
                rc = rd_err_set(eb, RD_ERR_PARSE,
                                "%s:%ld: expected 'pending', key, last_seen and a count in "
                                "1..%u, tab separated",
                                what, lineno, UINT32_MAX);
            else {
                note_line(r, ENTRY_PENDING, r->np, lineno);
                pend_push(r, key, ls, c);
            }
            continue;
        }
        // Key and count are unsigned: strtoull would take "-1" as 2^64-1 (and skip leading
        // blanks), so each must start with a digit. strtoll and strtof skip leading blanks too:
        // last_seen and the floats must not start with one (a stray CR, a space).
        char *p = line, *end = line;
        errno = 0;
        unsigned long long key = 0;
        long long ls = 0;
        unsigned long long c = 0;
        int ok = isdigit((unsigned char)*p);
        if (ok) {
            key = strtoull(p, &end, 10);
            ok = *end == '\t' && errno == 0;
        }
        if (ok) {
            p = end + 1;
            ok = !isspace((unsigned char)*p);
        }
        if (ok) {
            ls = strtoll(p, &end, 10);
            ok = end != p && *end == '\t' && errno == 0;
        }
        if (ok) {
            p = end + 1;
            ok = isdigit((unsigned char)*p);
        }
        if (ok) {
            c = strtoull(p, &end, 10);
            ok = errno == 0;
        }
        for (size_t j = 0; ok && j < r->nf; j++) {
            if (*end != '\t') {
                ok = 0;
                break;
            }
            p = end + 1;
            if (isspace((unsigned char)*p)) {
                ok = 0;
                break;
            }
            vals[j] = strtof(p, &end);
            ok = end != p && isfinite(vals[j]);
        }
        if (ok && *end != '\n' && *end != 0)
            ok = 0;
        if (!ok) {
            rc = rd_err_set(eb, RD_ERR_PARSE,
                            "%s:%ld: expected key, last_seen, count and %zu finite floats, "
                            "tab separated",
                            what, lineno, r->nf);
            break;
        }
        note_line(r, ENTRY_ROW, r->n, lineno);
        if ((rc = rows_push(r, key, ls, c, vals, what, eb)) != RD_OK)
            break;
    }
    if (rc == RD_OK && ferror(f))
        rc = rd_err_set(eb, RD_ERR_IO, "%s: read error", what);
    if (rc == RD_OK && lineno == 0)
        rc = rd_err_set(eb, RD_ERR_PARSE, "%s: empty file", what);
    // An export ends with a complete line and holds the rows its header counts: a file cut
    // short (a full disk, a partial copy, `head`) would otherwise import part of the table, and
    // the missing keys would silently go back to their initial values.
    if (rc == RD_OK && !ended)
        rc = rd_err_set(eb, RD_ERR_PARSE,
                        "%s:%ld: the file ends inside this line (truncated?); an export ends with "
                        "a line break",
                        what, lineno);
    if (rc == RD_OK && r->n != want_rows)
        rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%ld: header says %zu rows, file has %zu%s", what,
                        lineno, want_rows, r->n, r->n < want_rows ? " (truncated?)" : "");
    if (rc == RD_OK && r->np != want_pending)
        rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%ld: header says %zu pending counts, file has %zu%s",
                        what, lineno, want_pending, r->np,
                        r->np < want_pending ? " (truncated?)" : "");
    rd_free(line);
    rd_free(vals);
    return rc;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// One place a key occurs in an import: its position in file order (entry_pos), kind and index.
typedef struct key_occ {
    long long pos;
    int kind;
    size_t index;
} key_occ;

static int cmp_occ_pos(const key_occ *a, const key_occ *b) {
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

// Keys of an import unique (a key is a row or a pending count, once). The check sorts the keys
// alone (8 bytes a key); only when one repeats are the entries scanned again, to name the
// repeat that comes first in the file (its second occurrence) and where the key first was.
static int unique_keys(const rows_in *r, const char *what, rd_errbuf *eb) {
    size_t nk = r->n + r->np, nd = 0;
    uint64_t *k = rd_xmalloc(nk * sizeof *k);
    if (r->n) // r->key is NULL for an export of pending counts only
        memcpy(k, r->key, r->n * sizeof *k);
    for (size_t i = 0; i < r->np; i++)
        k[r->n + i] = r->pend[i].key;
    qsort(k, nk, sizeof *k, cmp_u64);
    for (size_t i = 1; i < nk; i++) // the repeated keys, once each, sorted, to the front of k
        if (k[i] == k[i - 1] && (nd == 0 || k[nd - 1] != k[i]))
            k[nd++] = k[i];
    if (nd == 0) {
        rd_free(k);
        return RD_OK;
    }
    // first[d], second[d]: the two earliest occurrences of repeated key d.
    key_occ *first = rd_xmalloc(2 * nd * sizeof *first), *second = first + nd;
    for (size_t d = 0; d < 2 * nd; d++)
        first[d].pos = LLONG_MAX;
    for (int kind = ENTRY_ROW; kind <= ENTRY_PENDING; kind++) {
        size_t n = kind == ENTRY_ROW ? r->n : r->np;
        for (size_t i = 0; i < n; i++) {
            uint64_t key = kind == ENTRY_ROW ? r->key[i] : r->pend[i].key;
            const uint64_t *hit = bsearch(&key, k, nd, sizeof *k, cmp_u64);
            if (!hit)
                continue;
            size_t d = (size_t)(hit - k);
            key_occ o = {entry_pos(r, kind, i), kind, i};
            if (cmp_occ_pos(&o, &first[d]) < 0) {
                second[d] = first[d];
                first[d] = o;
            } else if (cmp_occ_pos(&o, &second[d]) < 0) {
                second[d] = o;
            }
        }
    }
    size_t best = 0;
    for (size_t d = 1; d < nd; d++)
        if (cmp_occ_pos(&second[d], &second[best]) < 0)
            best = d;
    const key_occ *a = &first[best], *b = &second[best];
    static const char *const kind_name[2] = {"row", "pending count"};
    char at[RD_PATH_MAX + 64];
    entry_at(r, what, b->kind, b->index, at, sizeof at);
    int rc;
    if (r->bin)
        rc = rd_err_set(eb, RD_ERR_PARSE,
                        "%s: key %llu appears twice (first as %s %zu, byte %lld): a key is one "
                        "row or one pending admission count%s",
                        at, (unsigned long long)k[best], kind_name[a->kind], a->index, a->pos,
                        nd > 1 ? " (other keys repeat too)" : "");
    else
        rc = rd_err_set(eb, RD_ERR_PARSE,
                        "%s: key %llu appears twice (first as %s %zu on line %lld): a key is one "
                        "row or one pending admission count%s",
                        at, (unsigned long long)k[best], kind_name[a->kind], a->index, a->pos,
                        nd > 1 ? " (other keys repeat too)" : "");
    rd_free(first);
    rd_free(k);
    return rc;
}

// ---- Streamed export: P cursors merged by key

// A run: records in key order at bytes [off, off + n * rec) of an export's temporary file.
// A record is key u64 | last_seen i64 | count u64 | the row's floats (none for a pending count),
// so the floats of a record sit 4-aligned in a buffer of whole records.
typedef struct run {
    off_t off;
    uint64_t n;
} run;

// A run read back through a buffer of whole records (pread: the runs of one file share its
// descriptor, so a merge of any number of runs needs one).
typedef struct run_reader {
    int fd;
    size_t rec;          // bytes a record
    off_t pos, end;      // the next byte of the run to read, and its end
    unsigned char *buf;  // (cap) records read ahead
    size_t cap, len, at; // bytes held, bytes filled, next record
    const char *where;   // the file's folder, for messages
} run_reader;

// Bytes of a run record of a row of nf floats (nf 0: a pending count).
static size_t run_rec(size_t nf) {
    return 24 + nf * sizeof(float);
}

// The records of one table over several sources in key order: a heap of the sources (shard
// cursors, or runs) by the key of their current record.
typedef struct merge {
    uint32_t k;           // sources
    rd_ckpt_cursor **cur; // (k) the shards' cursors, or NULL
    run_reader *rr;       // (k) the runs' readers, or NULL
    rd_ckpt_record *rec;  // (k) the current record of each source
    uint32_t *heap;       // sources with a current record, a min-heap by rec[].key, then source
    uint32_t n;
} merge;

// By key, then by source: a key held by several shards (misplaced keys) comes out in shard order,
// whether the shards are merged at once or in groups (a group's run keeps its shards' order, and
// the runs are merged in group order), so the grouped export is the same bytes as the single pass.
static int merge_less(const merge *m, uint32_t a, uint32_t b) {
    uint32_t x = m->heap[a], y = m->heap[b];
    uint64_t kx = m->rec[x].key, ky = m->rec[y].key;
    return kx < ky || (kx == ky && x < y);
}

static void merge_down(merge *m, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, s = i;
        if (l < m->n && merge_less(m, l, s))
            s = l;
        if (r < m->n && merge_less(m, r, s))
            s = r;
        if (s == i)
            return;
        uint32_t x = m->heap[i];
        m->heap[i] = m->heap[s];
        m->heap[s] = x;
        i = s;
    }
}

static void merge_close(merge *m) {
    for (uint32_t s = 0; m->cur && s < m->k; s++)
        rd_ckpt_cursor_close(m->cur[s]);
    for (uint32_t s = 0; m->rr && s < m->k; s++)
        rd_free(m->rr[s].buf);
    rd_free(m->cur);
    rd_free(m->rr);
    rd_free(m->rec);
    rd_free(m->heap);
    memset(m, 0, sizeof *m);
}

// The next record of run reader q into *r. @return 1 a record, 0 the end, RD_ERR_IO.
static int run_next(run_reader *q, rd_ckpt_record *r, rd_errbuf *eb) {
    if (q->at == q->len) {
        if (q->pos >= q->end)
            return 0;
        size_t want = (size_t)(q->end - q->pos) < q->cap ? (size_t)(q->end - q->pos) : q->cap;
        size_t got = 0;
        while (got < want) {
            ssize_t k = pread(q->fd, q->buf + got, want - got, q->pos + (off_t)got);
            if (k <= 0)
                return rd_err_set(eb, RD_ERR_IO, "reading the export's temporary file in %s: %s",
                                  q->where, k < 0 ? strerror(errno) : "short read");
            got += (size_t)k;
        }
        q->pos += (off_t)got;
        q->len = got;
        q->at = 0;
    }
    const unsigned char *p = q->buf + q->at;
    memcpy(&r->key, p, 8);
    memcpy(&r->last_seen, p + 8, 8);
    memcpy(&r->count, p + 16, 8);
    r->row = q->rec > 24 ? (const float *)(const void *)(p + 24) : NULL;
    q->at += q->rec;
    return 1;
}

static int merge_next(merge *m, uint32_t s, rd_errbuf *eb) {
    return m->cur ? rd_ckpt_cursor_next(m->cur[s], &m->rec[s], eb)
                  : run_next(&m->rr[s], &m->rec[s], eb);
}

// The first record of every source, then the heap.
static int merge_start(merge *m, rd_errbuf *eb) {
    int rc = RD_OK;
    for (uint32_t s = 0; rc == RD_OK && s < m->k; s++) {
        int got = merge_next(m, s, eb);
        if (got < 0)
            rc = got;
        else if (got == 1)
            m->heap[m->n++] = s;
    }
    for (uint32_t i = m->n / 2; rc == RD_OK && i-- > 0;)
        merge_down(m, i);
    if (rc != RD_OK)
        merge_close(m);
    return rc;
}

static void merge_alloc(merge *m, uint32_t k) {
    memset(m, 0, sizeof *m);
    m->k = k;
    m->rec = rd_xcalloc(k ? k : 1, sizeof *m->rec);
    m->heap = rd_xcalloc(k ? k : 1, sizeof *m->heap);
}

// The rows (pending 0) or pending counts (pending 1) of shards [first, first + k).
static int merge_open(const rd_tabletool *tt,
                      int table,
                      int pending,
                      uint32_t first,
                      uint32_t k,
                      merge *m,
                      rd_errbuf *eb) {
    const rd_ckpt_table *ct = &tt->man->tables[table];
    merge_alloc(m, k);
    m->cur = rd_xcalloc(k ? k : 1, sizeof *m->cur);
    for (uint32_t s = 0; s < k; s++) {
        // The CRC again: a shard replaced since the open must not be exported unnoticed.
        int rc = rd_ckpt_cursor_open(tt->dir, (int)(first + s), ct->index,
                                     (size_t)ct->dim * (1 + ct->slots), pending,
                                     &tt->man->shard_crc[first + s], &m->cur[s], eb);
        if (rc != RD_OK) {
            merge_close(m);
            return rc;
        }
    }
    return merge_start(m, eb);
}

// Runs ru[0 .. k) of the file open as fd, records of rec bytes.
static int merge_open_runs(
    int fd, const char *where, size_t rec, const run *ru, uint32_t k, merge *m, rd_errbuf *eb) {
    merge_alloc(m, k);
    m->rr = rd_xcalloc(k ? k : 1, sizeof *m->rr);
    // 64 KiB of records a run (at least one): at most G runs are merged at once, so the buffers
    // stay at G x 64 KiB (G itself bounded by the descriptors free).
    size_t per = rec < ((size_t)64 << 10) ? ((size_t)64 << 10) / rec : 1;
    for (uint32_t s = 0; s < k; s++) {
        run_reader *q = &m->rr[s];
        q->fd = fd;
        q->rec = rec;
        q->pos = ru[s].off;
        q->end = ru[s].off + (off_t)(ru[s].n * rec);
        q->cap = per * rec;
        q->buf = rd_xmalloc(q->cap);
        q->where = where;
    }
    return merge_start(m, eb);
}

// The record with the smallest key, or NULL at the end; valid until merge_advance.
static const rd_ckpt_record *merge_peek(const merge *m) {
    return m->n ? &m->rec[m->heap[0]] : NULL;
}

static int merge_advance(merge *m, rd_errbuf *eb) {
    uint32_t s = m->heap[0];
    int got = merge_next(m, s, eb);
    if (got < 0)
        return got;
    if (got == 0)
        m->heap[0] = m->heap[--m->n];
    merge_down(m, 0);
    return RD_OK;
}

// Evicted by an edit from position `from` on: a row (pending 0) or a pending count (pending 1).
static int
gone_by_edits(const rd_tabletool *tt, size_t from, int table, int pending, int64_t ls, uint64_t c) {
    for (size_t i = from; i < tt->n_ed; i++) {
        const edit *e = &tt->ed[i];
        if (e->kind != EDIT_EVICT || (e->table >= 0 && e->table != table))
            continue;
        if (ls < e->older_than || (!pending && c < e->min_count))
            return 1;
    }
    return 0;
}

// ---- Streamed export in groups: when the shards cannot all be open at once
//
// Each cursor holds one descriptor (the map's data.mdb: the envs are opened MDB_NOLOCK, without a
// lock file), so a single-pass merge of P shards needs P descriptors at once. When the soft
// RLIMIT_NOFILE leaves fewer (a hard limit of 1024 or 4096 and thousands of shards), the export
// merges the shards in groups of at most G, each group's records (rows, then pending counts)
// written in key order as a run of one unlinked temporary file, then merges groups of at most G
// runs into a fresh file until at most G runs of each kind are left, and merges those into the
// output. The runs of a file are read with pread through its one descriptor, so G bounds the
// cursors (and the fan-in), never the runs; all of it happens before the first byte of the output.

// Descriptors kept free besides a group's cursors: the temporary files (two while the runs of
// one are merged into the next), and what the C library or LMDB may open meanwhile.
#define EXPORT_FD_RESERVE 16

// Shards an export opens at once: the soft RLIMIT_NOFILE less the descriptors open now and the
// reserve, at least 2; P when the limit leaves room for far more.
static uint32_t export_group(const rd_tabletool *tt) {
    const uint32_t P = tt->man->n_shards;
    if (tt->export_group)
        return tt->export_group < P ? tt->export_group : P;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= (rlim_t)P + 1024)
        return P;
    // The descriptors below the limit already taken (standard streams, the output, an import's
    // temporary file...): at most P + 1024 probes (F_GETFD fails on a free one).
    long lim = (long)rl.rlim_cur, used = 0;
    for (long fd = 0; fd < lim; fd++)
        used += fcntl((int)fd, F_GETFD) != -1;
    long g = lim - used - EXPORT_FD_RESERVE;
    return g < 2 ? 2 : g >= (long)P ? P : (uint32_t)g;
}

void rd__tabletool_set_export_group(rd_tabletool *tt, uint32_t g) {
    RD_ASSERT(g == 0 || g >= 2);
    tt->export_group = g;
}

// A temporary file of runs, written through stdio and read back with pread once flushed.
typedef struct run_file {
    FILE *f;
    off_t end;               // bytes written
    char where[RD_PATH_MAX]; // its folder
} run_file;

static int run_file_open(const rd_tabletool *tt, int table, run_file *w, rd_errbuf *eb) {
    char what[RD_NAME_MAX + 16];
    snprintf(what, sizeof what, "table %s", tt->man->tables[table].name);
    memset(w, 0, sizeof *w);
    return spill_open(tt, what, "export", &w->f, w->where, sizeof w->where, eb);
}

// A write of w that failed with errno err (0: lost in an earlier buffered write): a full disk
// names the folder, and how to choose another.
static int
run_write_err(const rd_tabletool *tt, int table, const run_file *w, int err, rd_errbuf *eb) {
    return rd_err_set(eb, RD_ERR_IO,
                      "table %s: writing the export's temporary file in %s: %s (set TMPDIR to a "
                      "folder with room for the rows)",
                      tt->man->tables[table].name, w->where, strerror(err ? err : EIO));
}

// Everything written to w reaches the file (pread reads the file, not the stdio buffer).
static int run_file_flush(const rd_tabletool *tt, int table, run_file *w, rd_errbuf *eb) {
    int e = fflush(w->f) != 0 ? errno : 0;
    if (e || ferror(w->f))
        return run_write_err(tt, table, w, e, eb);
    return RD_OK;
}

// Every record of m in key order to w as one run (*out). With filter, the rows (pending 0) or
// pending counts (pending 1) evicted by the edits are left out, as the single pass does.
static int merge_to_run(const rd_tabletool *tt,
                        int table,
                        int pending,
                        int filter,
                        merge *m,
                        run_file *w,
                        run *out,
                        rd_errbuf *eb) {
    const rd_ckpt_table *ct = &tt->man->tables[table];
    size_t nf = pending ? 0 : (size_t)ct->dim * (1 + ct->slots);
    out->off = w->end;
    out->n = 0;
    const rd_ckpt_record *r;
    int rc = RD_OK;
    while (rc == RD_OK && (r = merge_peek(m)) != NULL) {
        if (!filter || !gone_by_edits(tt, 0, table, pending, r->last_seen, r->count)) {
            unsigned char h[24];
            memcpy(h, &r->key, 8);
            memcpy(h + 8, &r->last_seen, 8);
            memcpy(h + 16, &r->count, 8);
            errno = 0;
            if (fwrite(h, 1, sizeof h, w->f) != sizeof h ||
                (nf && fwrite(r->row, sizeof(float), nf, w->f) != nf))
                return run_write_err(tt, table, w, errno, eb);
            w->end += (off_t)run_rec(nf);
            out->n++;
        }
        rc = merge_advance(m, eb);
    }
    return rc;
}

// The shards merged in groups of at most G into runs of a temporary file, then the runs in
// groups of at most G into a fresh file until at most G of each kind are left: *w holds
// ru[0][0 .. nr[0]) (rows) and ru[1][0 .. nr[1]) (pending counts), flushed. Free ru[] with
// rd_free and close w->f, also on failure.
static int export_runs(const rd_tabletool *tt,
                       int table,
                       uint32_t G,
                       run_file *w,
                       run *ru[2],
                       uint32_t nr[2],
                       rd_errbuf *eb) {
    const uint32_t P = tt->man->n_shards;
    const rd_ckpt_table *ct = &tt->man->tables[table];
    const size_t nf = (size_t)ct->dim * (1 + ct->slots);
    const uint32_t cap = (P + G - 1) / G;
    ru[0] = rd_xcalloc(cap, sizeof *ru[0]);
    ru[1] = rd_xcalloc(cap, sizeof *ru[1]);
    nr[0] = nr[1] = 0;
    int rc = run_file_open(tt, table, w, eb);
    // 1. Shards [first, first + G): their rows, then their pending counts, each cursor checking
    //    its shard's CRC as in the single pass.
    for (int pending = 0; rc == RD_OK && pending < 2; pending++)
        for (uint32_t first = 0; rc == RD_OK && first < P; first += G) {
            merge m;
            uint32_t k = P - first < G ? P - first : G;
            if ((rc = merge_open(tt, table, pending, first, k, &m, eb)) != RD_OK)
                break;
            rc = merge_to_run(tt, table, pending, 1, &m, w, &ru[pending][nr[pending]++], eb);
            merge_close(&m);
        }
    // 2. More runs than G: groups of G runs merged into the runs of a fresh file, the old one
    //    closed (and gone) after; each level divides the runs by G.
    while (rc == RD_OK && (nr[0] > G || nr[1] > G)) {
        run_file nw;
        if ((rc = run_file_flush(tt, table, w, eb)) != RD_OK ||
            (rc = run_file_open(tt, table, &nw, eb)) != RD_OK)
            break;
        for (int pending = 0; rc == RD_OK && pending < 2; pending++) {
            uint32_t k2 = 0;
            for (uint32_t i = 0; rc == RD_OK && i < nr[pending]; i += G) {
                merge m;
                uint32_t k = nr[pending] - i < G ? nr[pending] - i : G;
                rc = merge_open_runs(fileno(w->f), w->where, run_rec(pending ? 0 : nf),
                                     ru[pending] + i, k, &m, eb);
                // Run k2 <= i / G is overwritten: the readers hold their runs' positions.
                if (rc == RD_OK)
                    rc = merge_to_run(tt, table, pending, 0, &m, &nw, &ru[pending][k2++], eb);
                merge_close(&m);
            }
            nr[pending] = k2;
        }
        fclose(w->f);
        *w = nw;
    }
    if (rc == RD_OK)
        rc = run_file_flush(tt, table, w, eb);
    return rc;
}

// The rows and pending counts of import `imp` in key order, less those evicted by the edits
// from `from` on.
static int export_imported(const rd_tabletool *tt,
                           int table,
                           const edit *imp,
                           size_t from,
                           exp_out *o,
                           uint64_t *rows_out,
                           uint64_t *pend_out,
                           rd_errbuf *eb) {
    rows_in *r = imp->in;
    imp_ref *ref = rd_xmalloc((r->n ? r->n : 1) * sizeof *ref);
    for (size_t i = 0; i < r->n; i++) {
        ref[i].key = r->key[i];
        ref[i].idx = i;
    }
    qsort(ref, r->n, sizeof *ref, cmp_ref);
    int rc = RD_OK;
    for (size_t j = 0; j < r->n; j++) {
        size_t i = (size_t)ref[j].idx;
        int64_t ls;
        uint64_t c;
        const float *v;
        if ((rc = row_get(r, i, &ls, &c, &v, eb)) != RD_OK)
            break;
        if (gone_by_edits(tt, from, table, 0, ls, c))
            continue;
        exp_row(o, r->key[i], ls, c, v);
        (*rows_out)++;
    }
    rd_free(ref);
    if (rc != RD_OK)
        return rc;
    pend_ref *p = rd_xmalloc((r->np ? r->np : 1) * sizeof *p);
    if (r->np)
        memcpy(p, r->pend, r->np * sizeof *p);
    qsort(p, r->np, sizeof *p, cmp_pend);
    for (size_t i = 0; i < r->np; i++) {
        if (gone_by_edits(tt, from, table, 1, p[i].last_seen, p[i].count))
            continue;
        exp_pending(o, p[i].key, p[i].last_seen, p[i].count);
        (*pend_out)++;
    }
    rd_free(p);
    return RD_OK;
}

static int export_stream(rd_tabletool *tt, int table, exp_out *o, rd_errbuf *eb) {
    const rd_ckpt_table *ct = &tt->man->tables[table];
    const uint32_t P = tt->man->n_shards;
    uint64_t n = 0, np = 0, rows_out = 0, pend_out = 0;
    rd_tabletool_counts(tt, table, &n, &np);
    // The rows come from the last import of the table, if any, else from the shards; the
    // evictions after it drop theirs.
    size_t from = 0;
    const edit *imp = NULL;
    for (size_t i = 0; i < tt->n_ed; i++)
        if (tt->ed[i].kind == EDIT_IMPORT && tt->ed[i].table == table) {
            imp = &tt->ed[i];
            from = i + 1;
        }
    // The rows' cursors open (every shard's CRC checked) before the first byte is written: a
    // shard replaced since the open leaves no output, not even on standard output. Merged in
    // groups (too few descriptors for P cursors), every shard is read, and every temporary
    // file written, before that first byte too: a full disk leaves no output either.
    const uint32_t G = imp ? P : export_group(tt);
    const int grouped = G < P;
    run_file w;
    run *ru[2] = {NULL, NULL};
    uint32_t nr[2] = {0, 0};
    merge m0;
    memset(&w, 0, sizeof w);
    memset(&m0, 0, sizeof m0);
    int rc = imp       ? RD_OK
             : grouped ? export_runs(tt, table, G, &w, ru, nr, eb)
                       : merge_open(tt, table, 0, 0, P, &m0, eb);
    if (rc == RD_OK)
        exp_header(o, ct, n, np);
    if (rc == RD_OK && imp) {
        rc = export_imported(tt, table, imp, from, o, &rows_out, &pend_out, eb);
    } else if (rc == RD_OK) {
        for (int pending = 0; pending < 2 && rc == RD_OK; pending++) {
            merge m = m0;
            if (grouped)
                rc = merge_open_runs(fileno(w.f), w.where, run_rec(pending ? 0 : o->nf),
                                     ru[pending], nr[pending], &m, eb);
            else if (pending)
                rc = merge_open(tt, table, pending, 0, P, &m, eb);
            if (rc != RD_OK)
                break;
            const rd_ckpt_record *r;
            while (rc == RD_OK && (r = merge_peek(&m)) != NULL) {
                if (!gone_by_edits(tt, 0, table, pending, r->last_seen, r->count)) {
                    if (pending) {
                        exp_pending(o, r->key, r->last_seen, (uint32_t)r->count);
                        pend_out++;
                    } else {
                        exp_row(o, r->key, r->last_seen, r->count, r->row);
                        rows_out++;
                    }
                }
                rc = merge_advance(&m, eb);
            }
            merge_close(&m);
        }
    }
    if (w.f)
        fclose(w.f);
    rd_free(ru[0]);
    rd_free(ru[1]);
    if (rc != RD_OK)
        return rc;
    // The header was written from the counts taken when the shards were read: a shard that
    // changed since would make the file contradict its header.
    if (rows_out != n || pend_out != np)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s: table %s: %llu rows and %llu pending counts now, %llu and %llu "
                          "when the checkpoint was opened (changed meanwhile?)",
                          tt->dir, ct->name, (unsigned long long)rows_out,
                          (unsigned long long)pend_out, (unsigned long long)n,
                          (unsigned long long)np);
    return exp_finish(o, ct, eb);
}

int rd_tabletool_export(rd_tabletool *tt, int table, int format, FILE *f, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, tt != NULL);
    RD_ARG_CHECK(eb, table >= 0 && (uint32_t)table < tt->man->n_tables);
    RD_ARG_CHECK(eb, format == RD_TABLETOOL_TSV || format == RD_TABLETOOL_BIN);
    RD_ARG_CHECK(eb, f != NULL);
    const rd_ckpt_table *ct = &tt->man->tables[table];
    size_t nf = (size_t)ct->dim * (1 + ct->slots);
    exp_out o = {f, format, nf, 0, NULL, 0};
    if (format == RD_TABLETOOL_TSV)
        o.line = rd_xmalloc(exp_line_cap(nf));
    int rc = tt->stream ? export_stream(tt, table, &o, eb) : export_resident(tt, table, &o, eb);
    rd_free(o.line);
    return rc;
}

int rd_tabletool_set_admission(
    rd_tabletool *tt, int table, int admit_count, const char *source, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, tt != NULL);
    RD_ARG_CHECK(eb, table >= 0 && (uint32_t)table < tt->man->n_tables);
    RD_ARG_CHECK(eb, admit_count >= 0);
    RD_ARG_CHECK(eb, source != NULL);
    tt->admit[table] = admit_count;
    rd_free(tt->admit_src[table]);
    tt->admit_src[table] = rd_xstrdup(source);
    return RD_OK;
}

int rd_tabletool_import(rd_tabletool *tt,
                        int table,
                        FILE *f,
                        const char *what,
                        rd_tabletool_imported *res,
                        rd_errbuf *eb) {
    return rd_tabletool_import_keys_of(tt, table, NULL, f, what, res, eb);
}

int rd_tabletool_import_keys_of(rd_tabletool *tt,
                                int table,
                                const char *keys_of,
                                FILE *f,
                                const char *what,
                                rd_tabletool_imported *res,
                                rd_errbuf *eb) {
    if (res)
        memset(res, 0, sizeof *res);
    RD_ARG_CHECK(eb, tt != NULL);
    RD_ARG_CHECK(eb, table >= 0 && (uint32_t)table < tt->man->n_tables);
    RD_ARG_CHECK(eb, f != NULL);
    RD_ARG_CHECK(eb, what != NULL);
    const rd_ckpt_table *ct = &tt->man->tables[table];
    rows_in r;
    memset(&r, 0, sizeof r);
    r.keys_of = keys_of && keys_of[0] ? keys_of : ct->name;
    r.nf = (size_t)ct->dim * (1 + ct->slots);
    r.dim = ct->dim;
    r.sq_slot = ct->optim == RD_OPT_ADAGRAD                            ? 0
                : ct->optim == RD_OPT_ADAM || ct->optim == RD_OPT_FTRL ? 1
                                                                       : -1;
    r.sq_name = ct->optim == RD_OPT_ADAGRAD ? "Adagrad accumulator"
                : ct->optim == RD_OPT_ADAM  ? "Adam second moment v"
                                            : "FTRL n";
    rd_errbuf_clear(&r.chk);
    int c0 = fgetc(f);
    if (c0 == EOF) {
        int err = ferror(f) ? errno : 0; // a folder opens, and its first read fails (EISDIR)
        rows_free(&r);
        if (err)
            return rd_err_set(eb, RD_ERR_IO, "%s: %s", what, strerror(err));
        return rd_err_set(eb, RD_ERR_PARSE, "%s: empty file", what);
    }
    ungetc(c0, f);
    int rc = tt->stream ? spill_open(tt, what, "import", &r.spill, NULL, 0, eb) : RD_OK;
    if (rc == RD_OK)
        rc = c0 == exp_magic[0] ? read_bin(f, ct, what, &r, eb) : read_tsv(f, ct, what, &r, eb);
    // Each row's checks (rows_push), once the file is whole; then the keys: unique (a key is a
    // row or a pending count, never both).
    if (rc == RD_OK && r.chk_rc)
        rc = rd_err_set(eb, r.chk_rc, "%s", r.chk.msg);
    for (size_t i = 0; rc == RD_OK && i < r.np; i++)
        if (r.pend[i].key == 0 || r.pend[i].count == 0) {
            char at[RD_PATH_MAX + 64];
            entry_at(&r, what, ENTRY_PENDING, i, at, sizeof at);
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s has %s 0", at,
                            r.pend[i].key == 0 ? "key" : "count");
        }
    if (rc == RD_OK && r.n + r.np > 1)
        rc = unique_keys(&r, what, eb);
    // Pending admission counts into a table without admission (admit_count 1): the PS creates a
    // row at a key's first sighting and never reads them, so they would only sit in every later
    // checkpoint and, were admission turned on, admit those keys early. A file that carries them
    // is not an export of this table as configured (another config, or an edit gone wrong):
    // refused, naming the first one, rather than dropped without the maintainer deciding.
    if (rc == RD_OK && r.np > 0 && tt->admit[table] == 1) {
        char at[RD_PATH_MAX + 64];
        entry_at(&r, what, ENTRY_PENDING, 0, at, sizeof at);
        rc =
            rd_err_set(eb, RD_ERR_SCHEMA,
                       "%s: key %llu is a pending admission count (%zu in the file), but table %s "
                       "has no admission (%s is 1): the PS never reads them. Import the rows "
                       "alone (drop the 'pending' lines and give the header 'pending 0'), or "
                       "give the table admit_count > 1",
                       at, (unsigned long long)r.pend[0].key, r.np, ct->name, tt->admit_src[table]);
    }
    // Only now touch the table: fresh shard tables (counters kept), then the rows and the
    // pending counts. Resident: every shard now. Streamed: recorded, and applied to each shard as
    // it is read (import_into); the rows stay in the spill file until rd_tabletool_close.
    const uint32_t T = tt->man->n_tables, P = tt->man->n_shards;
    uint64_t dropped = 0;
    for (uint32_t s = 0; s < P; s++)
        dropped += tt->pend[(size_t)s * T + (size_t)table];
    if (rc == RD_OK && tt->stream)
        rc = spill_index(&r, P, what, eb);
    if (rc == RD_OK && tt->stream) {
        edit e;
        memset(&e, 0, sizeof e);
        e.kind = EDIT_IMPORT;
        e.table = table;
        e.in = rd_xmalloc(sizeof *e.in);
        *e.in = r;
        e.in->what = rd_xstrdup(what);
        e.in->keys_of = NULL;
        memset(&r, 0, sizeof r);
        // An earlier import of this table is replaced whole by this one: its rows can go.
        for (size_t i = 0; i < tt->n_ed; i++)
            if (tt->ed[i].kind == EDIT_IMPORT && tt->ed[i].table == table)
                edit_free(&tt->ed[i]);
        push_edit(tt, &e);
        const rows_in *in = e.in;
        for (uint32_t s = 0; s < P; s++)
            tt->rows[(size_t)s * T + (size_t)table] = tt->pend[(size_t)s * T + (size_t)table] = 0;
        for (size_t i = 0; i < in->n; i++)
            tt->rows[(size_t)rd_shard_of(in->key[i], (int)P) * T + (size_t)table]++;
        for (size_t i = 0; i < in->np; i++)
            tt->pend[(size_t)rd_shard_of(in->pend[i].key, (int)P) * T + (size_t)table]++;
        tt->hist_ok = 0;
        if (res) {
            res->rows = in->n;
            res->pending = in->np;
            res->has_pending = in->has_pending;
            res->dropped = in->has_pending ? 0 : dropped;
        }
        return RD_OK;
    }
    for (uint32_t s = 0; rc == RD_OK && s < P; s++) {
        rd_table **slot = &tt->tab[(size_t)s * T + (size_t)table];
        rd_table_config tc;
        table_config(ct, &tc);
        rd_table *nt = NULL;
        if ((rc = rd_table_create(&tc, (int)ct->index, tt->man->seed, &nt, eb)) != RD_OK)
            break;
        rd_table_stats st;
        rd_table_get_stats(*slot, &st);
        rd_table_set_counters(nt, &st);
        rd_table_destroy(*slot);
        *slot = nt;
    }
    for (size_t i = 0; rc == RD_OK && i < r.n; i++) {
        int s = rd_shard_of(r.key[i], (int)P);
        rc = rd_table_put(tt->tab[(size_t)s * T + (size_t)table], r.key[i], r.val + i * r.nf,
                          r.ls[i], r.count[i]);
        if (rc != RD_OK)
            rd_err_set(eb, rc, "%s: row %zu: %s", what, i, rd_strerror(rc));
    }
    for (size_t i = 0; rc == RD_OK && i < r.np; i++) {
        int s = rd_shard_of(r.pend[i].key, (int)P);
        rc = rd_table_pending_put(tt->tab[(size_t)s * T + (size_t)table], r.pend[i].key,
                                  r.pend[i].count, r.pend[i].last_seen);
        if (rc != RD_OK)
            rd_err_set(eb, rc, "%s: pending count %zu: %s", what, i, rd_strerror(rc));
    }
    for (uint32_t s = 0; rc == RD_OK && s < P; s++) {
        const rd_table *t = tt->tab[(size_t)s * T + (size_t)table];
        tt->rows[(size_t)s * T + (size_t)table] = rd_table_size(t);
        tt->pend[(size_t)s * T + (size_t)table] = rd_table_pending_size(t);
    }
    tt->hist_ok = 0;
    if (rc == RD_OK && res) {
        res->rows = r.n;
        res->pending = r.np;
        res->has_pending = r.has_pending;
        res->dropped = r.has_pending ? 0 : dropped;
    }
    rows_free(&r);
    return rc;
}

// Import edit e applied to the tables of shard s (only the keys of part `part` of n_parts): the
// table's rows and pending counts replaced by the imported ones of this shard, counters kept.
static int import_into(const rd_tabletool *tt,
                       rd_table **tabs,
                       uint32_t s,
                       int part,
                       int n_parts,
                       const edit *e,
                       rd_errbuf *eb) {
    const rd_ckpt_table *ct = &tt->man->tables[e->table];
    rows_in *r = e->in;
    const int P = (int)tt->man->n_shards;
    RD_ASSERT(r->spill && r->shard_start); // a streamed import (rd_tabletool_import_keys_of)
    rd_table_config tc;
    table_config(ct, &tc);
    rd_table *nt = NULL;
    int rc = rd_table_create(&tc, (int)ct->index, tt->man->seed, &nt, eb);
    if (rc != RD_OK)
        return rc;
    rd_table_stats st;
    rd_table_get_stats(tabs[e->table], &st);
    rd_table_set_counters(nt, &st);
    rd_table_destroy(tabs[e->table]);
    tabs[e->table] = nt;
    for (size_t j = r->shard_start[s]; rc == RD_OK && j < r->shard_start[s + 1]; j++) {
        size_t i = r->by_shard[j];
        RD_ASSERT(rd_shard_of(r->key[i], P) == (int)s);
        if (n_parts > 1 && rd_shard_of(r->key[i], n_parts) != part)
            continue;
        int64_t ls;
        uint64_t c;
        const float *v;
        if ((rc = row_get(r, i, &ls, &c, &v, eb)) != RD_OK)
            break;
        rc = rd_table_put(nt, r->key[i], v, ls, c);
        if (rc != RD_OK)
            rd_err_set(eb, rc, "%s: row %zu: %s", r->what, i, rd_strerror(rc));
    }
    for (size_t i = 0; rc == RD_OK && i < r->np; i++) {
        if (rd_shard_of(r->pend[i].key, P) != (int)s ||
            (n_parts > 1 && rd_shard_of(r->pend[i].key, n_parts) != part))
            continue;
        rc = rd_table_pending_put(nt, r->pend[i].key, r->pend[i].count, r->pend[i].last_seen);
        if (rc != RD_OK)
            rd_err_set(eb, rc, "%s: pending count %zu: %s", r->what, i, rd_strerror(rc));
    }
    return rc;
}

static void edit_free(edit *e) {
    if (e->in) {
        rd_free(e->in->what);
        rows_free(e->in);
        rd_free(e->in);
    }
    memset(e, 0, sizeof *e);
}

// ---------------------------------------------------------------------------------------------
// Rewrite

static int copy_file(const char *from, const char *to, rd_errbuf *eb) {
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(from, &f);
    if (o != 0)
        return o < 0 && errno == ENOENT
                   ? RD_ERR_NOTFOUND
                   : rd_err_set(eb, RD_ERR_IO, "%s: %s", from,
                                o > 0 ? "not a regular file" : strerror(errno));
    // Fallible growth: a huge (damaged, sparse) dense.bin is an error, not an abort.
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = rd_malloc(cap);
    size_t got;
    int nomem = !buf;
    while (!nomem && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *nb = rd_realloc(buf, 2 * cap);
            if (!nb) {
                nomem = 1;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    int rc =
        nomem ? rd_err_set(eb, RD_ERR_NOMEM, "%s: no memory to copy it (%zu bytes read)", from, n)
        : bad ? rd_err_set(eb, RD_ERR_IO, "%s: read error", from)
              : rd_lmdbx_write_file_atomic(to, buf, n, eb);
    rd_free(buf);
    return rc;
}

int rd_tabletool_write(rd_tabletool *tt, const char *out, int n_shards, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, tt != NULL);
    RD_ARG_CHECK(eb, out != NULL);
    const rd_ckpt_manifest *m = tt->man;
    const uint32_t P = m->n_shards, T = m->n_tables;
    uint32_t Q = n_shards > 0 ? (uint32_t)n_shards : P;
    if (n_shards < 0 || Q > RD_CKPT_MAX_SHARDS)
        return rd_err_set(eb, RD_ERR_ARG, "shards: %d outside 1..%d", n_shards, RD_CKPT_MAX_SHARDS);
    struct stat st;
    if (stat(out, &st) == 0)
        return rd_err_set(eb, RD_ERR_EXISTS, "%s exists: give a new directory", out);
    // Shard by shard: with Q == P each shard is read, edited and written as itself (unless some
    // key sits in another shard than rd_shard_of says, which the general way moves); else output
    // shard q gathers its keys from every input shard. Refused up front when one output shard
    // would not fit in memory beside the part of an input shard being read.
    int direct = Q == P && !tt->misplaced;
    if (tt->stream) {
        uint64_t total = 0, in_max = 0;
        for (uint32_t s = 0; s < P; s++) {
            uint64_t r = 0;
            for (uint32_t t = 0; t < T; t++)
                r += tt->rows[(size_t)s * T + t];
            total += r;
            if (r > in_max)
                in_max = r;
        }
        // Keys spread evenly over the shards (rd_shard_of mixes them); a 25 % margin.
        uint64_t out_rows = direct ? in_max : total / Q + total / Q / 4 + 1;
        uint64_t in_rows = direct ? 0 : in_max / Q + in_max / Q / 4 + 1;
        char name[RD_PATH_MAX + 64];
        snprintf(name, sizeof name, "an output shard of %s (%u shards)", out, Q);
        int rc = check_mem(tt, name, "write", out_rows,
                           shard_mem(m, out_rows, 1) + shard_mem(m, in_rows, 0), eb);
        if (rc != RD_OK)
            return rc;
    }
    // Missing parents of --out are created as before, but removed again when the run fails
    // (only those this run made); the checkpoint is built in a folder of its own beside --out.
    char part[RD_PATH_MAX + 96], created[RD_PATH_MAX + 48];
    if (strlen(out) + 96 > sizeof part)
        return rd_err_set(eb, RD_ERR_ARG, "output path too long: %.64s...", out);
    int rc = rd_lmdbx_mkdir_parents(out, created, sizeof created, eb);
    if (rc != RD_OK)
        return rc;
    if ((rc = rd_lmdbx_mkdir_partial(out, part, sizeof part, eb)) != RD_OK) {
        rd_lmdbx_rmdir_created(out, created);
        return rc;
    }
    // Counters (as read; edits keep them): with Q != P summed per table into shard 0, and every
    // shard gets the latest clock.
    int64_t clock = INT64_MIN;
    rd_table_stats *acc = rd_xcalloc(T ? T : 1, sizeof *acc);
    for (uint32_t s = 0; s < P; s++)
        for (uint32_t t = 0; t < T; t++) {
            const rd_table_stats *ss = &tt->sum[(size_t)s * T + t];
            if (ss->now > clock)
                clock = ss->now;
            acc[t].admitted += ss->admitted;
            acc[t].rejected += ss->rejected;
            acc[t].evicted += ss->evicted;
            acc[t].pulled += ss->pulled;
            acc[t].pushed += ss->pushed;
        }
    rd_ckpt_manifest *nm = rd_xmalloc(sizeof *nm);
    *nm = *m;
    nm->n_shards = Q;
    for (uint32_t t = 0; t < T; t++)
        nm->tables[t].rows = nm->tables[t].pending = 0;
    for (uint32_t q = 0; rc == RD_OK && q < Q; q++) {
        // 1. The rows and pending counts of output shard q.
        rd_table **nt = NULL, **src = NULL;
        if (direct) {
            rc = get_shard(tt, q, 0, 1, &src, eb);
            nt = src;
        } else {
            rc = new_tables(m, 1, &nt, eb);
            for (uint32_t s = 0; rc == RD_OK && s < P; s++) {
                if ((rc = get_shard(tt, s, (int)q, (int)Q, &src, eb)) != RD_OK)
                    break;
                for (uint32_t t = 0; rc == RD_OK && t < T; t++) {
                    const rd_table *from = src[t];
                    for (size_t i = 0; rc == RD_OK && i < rd_table_size(from); i++) {
                        uint64_t key, c;
                        int64_t ls;
                        const float *row = rd_table_row_at(from, i, &key, &ls, &c);
                        if (rd_shard_of(key, (int)Q) == (int)q)
                            rc = rd_table_put(nt[t], key, row, ls, c);
                    }
                    size_t cur = 0;
                    uint64_t key;
                    uint32_t cnt;
                    int64_t ls;
                    while (rc == RD_OK && rd_table_pending_next(from, &cur, &key, &cnt, &ls))
                        if (rd_shard_of(key, (int)Q) == (int)q)
                            rc = rd_table_pending_put(nt[t], key, cnt, ls);
                }
                put_shard(tt, src);
                src = NULL;
            }
            for (uint32_t t = 0; rc == RD_OK && t < T; t++) {
                rd_table_stats qs;
                if (Q == P) {
                    qs = tt->sum[(size_t)q * T + t];
                } else {
                    memset(&qs, 0, sizeof qs);
                    if (q == 0)
                        qs = acc[t];
                    qs.now = clock;
                }
                rd_table_set_counters(nt[t], &qs);
            }
        }
        // 2. The shard.
        rd_ckpt_shard_info info;
        if (rc == RD_OK)
            rc = rd_ckpt_write_shard(part, (int)q, (int)Q, m->step, m->seed, nt, (int)T, &info, eb);
        if (direct)
            put_shard(tt, nt);
        else
            free_tables(nt, T);
        if (rc != RD_OK)
            break;
        nm->shard_crc[q] = info.crc;
        nm->shard_rows[q] = 0;
        for (uint32_t t = 0; t < T; t++) {
            nm->shard_rows[q] += info.rows[t];
            nm->tables[t].rows += info.rows[t];
            nm->tables[t].pending += info.pending[t];
        }
    }
    rd_free(acc);
    for (uint32_t q = Q; q < RD_CKPT_MAX_SHARDS; q++)
        nm->shard_crc[q] = 0, nm->shard_rows[q] = 0;
    // 3. The MANIFEST, then dense.bin, then the rename.
    if (rc == RD_OK)
        rc = rd_ckpt_write_manifest(part, nm, eb);
    if (rc == RD_OK) {
        // dense.bin goes along only if it is whole (size, CRC): a damaged one would be copied
        // into a checkpoint that looks new, and a huge one would be read into memory.
        rd_train_pos pos;
        rd_errbuf local;
        rd_errbuf_clear(&local);
        int drc = rd_train_ckpt_read_pos(tt->dir, &pos, &local);
        if (drc == RD_OK) {
            char from[RD_PATH_MAX + 32], to[RD_PATH_MAX + 128];
            snprintf(from, sizeof from, "%s/%s", tt->dir, RD_TRAIN_CKPT_DENSE);
            snprintf(to, sizeof to, "%s/%s", part, RD_TRAIN_CKPT_DENSE);
            drc = copy_file(from, to, eb);
            if (drc != RD_OK && drc != RD_ERR_NOTFOUND)
                rc = drc;
            // The window metrics of the trainer's position go with it (absent: an older build),
            // if a resume can read them: a damaged file would be copied into a checkpoint that
            // looks new, as a damaged dense.bin would.
            snprintf(from, sizeof from, "%s/%s", tt->dir, RD_TRAIN_CKPT_WINDOWS);
            snprintf(to, sizeof to, "%s/%s", part, RD_TRAIN_CKPT_WINDOWS);
            int n_win = -1;
            if (rc == RD_OK && (drc = rd_trainer_windows_check(tt->dir, pos.window, pos.range_step,
                                                               &n_win, &local)) != RD_OK)
                rc = rd_err_set(eb, drc, "%s (not copied along)", local.msg);
            if (rc == RD_OK && (drc = copy_file(from, to, eb)) != RD_OK && drc != RD_ERR_NOTFOUND)
                rc = drc;
        } else if (drc != RD_ERR_NOTFOUND) {
            rc = rd_err_set(eb, drc, "%s (not copied along)", local.msg);
        }
    }
    if (rc == RD_OK && rename(part, out) != 0)
        rc =
            errno == EEXIST || errno == ENOTEMPTY
                ? rd_err_set(eb, RD_ERR_EXISTS, "%s exists (written meanwhile by another run)", out)
                : rd_err_set(eb, RD_ERR_IO, "rename %s to %s: %s", part, out, strerror(errno));
    // The rename that publishes the checkpoint is durable only once the folder holding --out is
    // synced (and the folders made for it, each in its parent): without it a power loss after
    // "compacted ...: OUT" (and the user's removal of the input) could leave neither. The
    // shards, MANIFEST and dense.bin were synced before.
    int renamed = rc == RD_OK;
    if (renamed)
        rc = rd_lmdbx_fsync_parents(out, created, eb);
    if (rc != RD_OK && !renamed) {
        rd_train_ckpt_rmtree(part, NULL);
        rd_lmdbx_rmdir_created(out, created);
    }
    rd_lmdbx_pending_forget(part);
    rd_free(nm);
    return rc;
}
