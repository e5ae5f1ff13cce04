// tabletool.c — offline checkpoint maintenance: load every shard, inspect and edit rows, write
// back with any P (rd/tabletool.h).
//
// Everything goes through the checkpoint module's shard reader and writer (rd/checkpoint.h), so
// the on-disk format, its CRCs and its atomic shard directories have one implementation. A
// rewrite builds fresh rd_tables for the P' output shards, moves every row (and pending count)
// to rd_shard_of(key, P'), writes the shards and the MANIFEST into <out>.partial and renames it.
#include "rd/tabletool.h"

#include "rd/alloc.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/optim.h"
#include "rd/train_ckpt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct rd_tabletool {
    char dir[RD_PATH_MAX];
    rd_ckpt_manifest *man;
    rd_table **tab; // (n_shards * n_tables): tab[s * n_tables + t]
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

int rd_tabletool_open(const char *dir, rd_tabletool **out, rd_errbuf *eb) {
    *out = NULL;
    rd_tabletool *tt = rd_xcalloc(1, sizeof *tt);
    if (snprintf(tt->dir, sizeof tt->dir, "%s", dir) >= (int)sizeof tt->dir) {
        rd_free(tt);
        return rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long: %.64s...", dir);
    }
    tt->man = rd_xmalloc(sizeof *tt->man);
    int rc = rd_ckpt_read_manifest(dir, tt->man, eb);
    if (rc == RD_OK)
        rc = new_tables(tt->man, tt->man->n_shards, &tt->tab, eb);
    const uint32_t T = tt->man->n_tables;
    for (uint32_t s = 0; rc == RD_OK && s < tt->man->n_shards; s++)
        rc = rd_ckpt_read_shard(dir, (int)s, (int)tt->man->n_shards, tt->tab + (size_t)s * T,
                                (int)T, &tt->man->shard_crc[s], NULL, NULL, eb);
    if (rc != RD_OK) {
        rd_tabletool_close(tt);
        return rc;
    }
    *out = tt;
    return RD_OK;
}

void rd_tabletool_close(rd_tabletool *tt) {
    if (!tt)
        return;
    if (tt->tab)
        free_tables(tt->tab, (size_t)tt->man->n_shards * tt->man->n_tables);
    rd_free(tt->man);
    rd_free(tt);
}

const rd_ckpt_manifest *rd_tabletool_manifest(const rd_tabletool *tt) {
    return tt->man;
}

int rd_tabletool_find(const rd_tabletool *tt, const char *name) {
    for (uint32_t t = 0; t < tt->man->n_tables; t++)
        if (strcmp(tt->man->tables[t].name, name) == 0)
            return (int)t;
    return -1;
}

rd_table *rd_tabletool_table(rd_tabletool *tt, int shard, int table) {
    return tt->tab[(size_t)shard * tt->man->n_tables + (size_t)table];
}

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

void rd_tabletool_stats(const rd_tabletool *tt, int table, rd_tabletool_hist *h) {
    memset(h, 0, sizeof *h);
    h->newest = INT64_MIN;
    h->oldest = INT64_MAX;
    const uint32_t T = tt->man->n_tables;
    for (uint32_t s = 0; s < tt->man->n_shards; s++) {
        const rd_table *t = tt->tab[(size_t)s * T + (size_t)table];
        size_t n = rd_table_size(t);
        for (size_t i = 0; i < n; i++) {
            int64_t ls;
            rd_table_row_at(t, i, NULL, &ls, NULL);
            if (ls > h->newest)
                h->newest = ls;
            if (ls < h->oldest)
                h->oldest = ls;
        }
        h->rows += n;
        h->pending += rd_table_pending_size(t);
        h->row_bytes += n * (8 + 16 + rd_table_row_floats(t) * sizeof(float));
    }
    for (uint32_t s = 0; s < tt->man->n_shards; s++) {
        const rd_table *t = tt->tab[(size_t)s * T + (size_t)table];
        size_t n = rd_table_size(t);
        for (size_t i = 0; i < n; i++) {
            int64_t ls;
            uint64_t c;
            rd_table_row_at(t, i, NULL, &ls, &c);
            // newest >= ls, but their difference may exceed INT64_MAX: subtract unsigned.
            h->age[log2_bucket((uint64_t)h->newest - (uint64_t)ls)]++;
            h->count[log2_bucket(c)]++;
        }
    }
}

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

int rd_tabletool_evict(rd_tabletool *tt,
                       int table,
                       int64_t older_than,
                       uint64_t min_count,
                       uint64_t *removed,
                       rd_errbuf *eb) {
    uint64_t gone = 0;
    const uint32_t T = tt->man->n_tables;
    int rc = RD_OK;
    for (uint32_t s = 0; rc == RD_OK && s < tt->man->n_shards; s++)
        for (uint32_t k = 0; rc == RD_OK && k < T; k++) {
            if (table >= 0 && (int)k != table)
                continue;
            rd_table **slot = &tt->tab[(size_t)s * T + k];
            rd_table *t = *slot;
            // Backwards: removal moves the last row into the hole, which is already examined.
            for (size_t i = rd_table_size(t); i-- > 0;) {
                uint64_t key, c;
                int64_t ls;
                rd_table_row_at(t, i, &key, &ls, &c);
                if (ls < older_than || c < min_count) {
                    RD_ASSERT(rd_table_remove(t, key) == RD_OK);
                    gone++;
                }
            }
            if (older_than != INT64_MIN && rd_table_pending_size(t))
                rc = drop_pending(&tt->man->tables[k], tt->man->seed, slot, older_than, eb);
        }
    if (removed)
        *removed = gone;
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Export / import

typedef struct row_ref {
    uint64_t key;
    uint32_t shard;
    uint32_t idx;
} row_ref;

static int cmp_ref(const void *a, const void *b) {
    uint64_t x = ((const row_ref *)a)->key, y = ((const row_ref *)b)->key;
    return x < y ? -1 : x > y;
}

typedef struct pend_ref {
    uint64_t key;
    int64_t last_seen;
    uint32_t count;
} pend_ref;

static int cmp_pend(const void *a, const void *b) {
    uint64_t x = ((const pend_ref *)a)->key, y = ((const pend_ref *)b)->key;
    return x < y ? -1 : x > y;
}

// Every pending admission count of `table`, sorted by key. Free with rd_free.
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

int rd_tabletool_export(const rd_tabletool *tt, int table, int format, FILE *f, rd_errbuf *eb) {
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
            ref[k++].idx = (uint32_t)i;
        }
    }
    qsort(ref, n, sizeof *ref, cmp_ref);
    size_t np = 0;
    pend_ref *pend = collect_pending(tt, table, &np);
    const size_t nf = (size_t)ct->dim * (1 + ct->slots);
    uint32_t crc = 0;
    if (format == RD_TABLETOOL_TSV) {
        fprintf(f, "# table %s dim %u slots %u optimizer %s rows %zu pending %zu\n", ct->name,
                ct->dim, ct->slots, rd_optim_name((int)ct->optim), n, np);
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
        crc = rd_crc32c(crc, h, sizeof h);
        fwrite(h, 1, sizeof h, f);
    }
    for (size_t i = 0; i < n; i++) {
        const rd_table *t = tt->tab[(size_t)ref[i].shard * T + (size_t)table];
        uint64_t key, c;
        int64_t ls;
        const float *row = rd_table_row_at(t, ref[i].idx, &key, &ls, &c);
        if (format == RD_TABLETOOL_TSV) {
            fprintf(f, "%llu\t%lld\t%llu", (unsigned long long)key, (long long)ls,
                    (unsigned long long)c);
            for (size_t j = 0; j < nf; j++)
                fprintf(f, "\t%.9g", (double)row[j]);
            fputc('\n', f);
        } else {
            unsigned char r[24];
            memcpy(r, &key, 8);
            memcpy(r + 8, &ls, 8);
            memcpy(r + 16, &c, 8);
            crc = rd_crc32c(crc, r, sizeof r);
            crc = rd_crc32c(crc, row, nf * sizeof(float));
            fwrite(r, 1, sizeof r, f);
            fwrite(row, sizeof(float), nf, f);
        }
    }
    // The pending admission counts (keys seen fewer than admit_count times, no row yet): without
    // them an imported table starts those keys' counts again, and a resume from it differs.
    for (size_t i = 0; i < np; i++) {
        if (format == RD_TABLETOOL_TSV) {
            fprintf(f, "pending\t%llu\t%lld\t%u\n", (unsigned long long)pend[i].key,
                    (long long)pend[i].last_seen, pend[i].count);
        } else {
            unsigned char r[24];
            uint32_t zero = 0;
            memcpy(r, &pend[i].key, 8);
            memcpy(r + 8, &pend[i].last_seen, 8);
            memcpy(r + 16, &pend[i].count, 4);
            memcpy(r + 20, &zero, 4);
            crc = rd_crc32c(crc, r, sizeof r);
            fwrite(r, 1, sizeof r, f);
        }
    }
    if (format != RD_TABLETOOL_TSV)
        fwrite(&crc, 4, 1, f);
    rd_free(pend);
    rd_free(ref);
    // A failed write of the buffer sets errno at the flush that failed: this one, or (the error
    // flag set) an earlier one whose errno is lost.
    int e = fflush(f) != 0 ? errno : 0;
    if (e || ferror(f))
        return rd_err_set(eb, RD_ERR_IO, "export of table %s: write error (%s)", ct->name,
                          strerror(e ? e : EIO));
    return RD_OK;
}

// Parsed rows of an import.
typedef struct rows_in {
    size_t n, cap, nf;
    uint64_t *key;
    int64_t *ls;
    uint64_t *count;
    float *val;
    size_t np, pcap; // pending admission counts
    pend_ref *pend;
    int has_pending;     // the file records pending counts (format version 2)
    const char *keys_of; // the table whose salt the keys must carry: the table's, or its init_as
} rows_in;

static void pend_push(rows_in *r, uint64_t key, int64_t ls, uint32_t c) {
    if (r->np == r->pcap) {
        r->pcap = r->pcap ? 2 * r->pcap : 256;
        r->pend = rd_xrealloc(r->pend, r->pcap * sizeof *r->pend);
    }
    r->pend[r->np].key = key;
    r->pend[r->np].last_seen = ls;
    r->pend[r->np++].count = c;
}

static void rows_push(rows_in *r, uint64_t key, int64_t ls, uint64_t c, const float *v) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 1024;
        r->key = rd_xrealloc(r->key, r->cap * sizeof *r->key);
        r->ls = rd_xrealloc(r->ls, r->cap * sizeof *r->ls);
        r->count = rd_xrealloc(r->count, r->cap * sizeof *r->count);
        r->val = rd_xrealloc(r->val, r->cap * r->nf * sizeof *r->val);
    }
    r->key[r->n] = key;
    r->ls[r->n] = ls;
    r->count[r->n] = c;
    memcpy(r->val + r->n * r->nf, v, r->nf * sizeof *v);
    r->n++;
}

static void rows_free(rows_in *r) {
    rd_free(r->key);
    rd_free(r->ls);
    rd_free(r->count);
    rd_free(r->val);
    rd_free(r->pend);
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
        rows_push(r, key, ls, c, vals);
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
    int n = strncmp(line, "# table ", 8) != 0
                ? 0
                : sscanf(line, "# table %39s dim %u slots %u optimizer %31s rows %zu pending %zu",
                         name, &dim, &slots, opt, rows, pending);
    if (n < 4)
        return rd_err_set(eb, RD_ERR_PARSE,
                          "%s:1: no '# table NAME dim D slots S optimizer OPT rows N pending M' "
                          "header line; `recdistill table export` writes one, and it is required: "
                          "it names the table and counts the rows, so that a cut or foreign file "
                          "is refused",
                          what);
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
        ended = len > 0 && line[len - 1] == '\n';
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
            else
                pend_push(r, key, ls, c);
            continue;
        }
        // Key and count are unsigned: strtoull would take "-1" as 2^64-1 (and skip leading
        // blanks), so each must start with a digit.
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
        rows_push(r, key, ls, c, vals);
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
    const rd_ckpt_table *ct = &tt->man->tables[table];
    rows_in r;
    memset(&r, 0, sizeof r);
    r.keys_of = keys_of && keys_of[0] ? keys_of : ct->name;
    if (res)
        memset(res, 0, sizeof *res);
    r.nf = (size_t)ct->dim * (1 + ct->slots);
    int c0 = fgetc(f);
    if (c0 == EOF) {
        int err = ferror(f) ? errno : 0; // a folder opens, and its first read fails (EISDIR)
        rows_free(&r);
        if (err)
            return rd_err_set(eb, RD_ERR_IO, "%s: %s", what, strerror(err));
        return rd_err_set(eb, RD_ERR_PARSE, "%s: empty file", what);
    }
    ungetc(c0, f);
    int rc = c0 == exp_magic[0] ? read_bin(f, ct, what, &r, eb) : read_tsv(f, ct, what, &r, eb);
    // Keys: non-zero and unique (a key is a row or a pending count, never both); floats finite.
    for (size_t i = 0; rc == RD_OK && i < r.n; i++) {
        if (r.key[i] == 0)
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s: row %zu has key 0 (reserved)", what, i);
        for (size_t j = 0; rc == RD_OK && j < r.nf; j++)
            if (!isfinite(r.val[i * r.nf + j]))
                rc = rd_err_set(eb, RD_ERR_PARSE, "%s: row %zu (key %llu) has a non-finite value",
                                what, i, (unsigned long long)r.key[i]);
    }
    // Optimizer state the optimizer can hold: its sums of squared gradients (Adagrad's
    // accumulator, Adam's v, FTRL's n) are >= 0; a negative one made the first update of the row
    // NaN, reported at train time as a diverged optimizer.
    int sq_slot = ct->optim == RD_OPT_ADAGRAD                            ? 0
                  : ct->optim == RD_OPT_ADAM || ct->optim == RD_OPT_FTRL ? 1
                                                                         : -1;
    const char *sq_name = ct->optim == RD_OPT_ADAGRAD ? "Adagrad accumulator"
                          : ct->optim == RD_OPT_ADAM  ? "Adam second moment v"
                                                      : "FTRL n";
    for (size_t i = 0; rc == RD_OK && sq_slot >= 0 && i < r.n; i++)
        for (size_t j = 0; rc == RD_OK && j < ct->dim; j++) {
            size_t col = (size_t)ct->dim * (1 + (size_t)sq_slot) + j;
            float x = r.val[i * r.nf + col];
            if (x < 0)
                rc = rd_err_set(eb, RD_ERR_PARSE,
                                "%s: row %zu (key %llu): value %zu of %zu after the count (%s, "
                                "coordinate %zu) is %g: a sum of squares, never negative",
                                what, i, (unsigned long long)r.key[i], col + 1, r.nf, sq_name, j,
                                (double)x);
        }
    for (size_t i = 0; rc == RD_OK && i < r.np; i++)
        if (r.pend[i].key == 0 || r.pend[i].count == 0)
            rc =
                rd_err_set(eb, RD_ERR_PARSE, "%s: pending count %zu has key 0 or count 0", what, i);
    if (rc == RD_OK && r.n + r.np > 1) {
        size_t nk = r.n + r.np;
        uint64_t *k = rd_xmalloc(nk * sizeof *k);
        memcpy(k, r.key, r.n * sizeof *k);
        for (size_t i = 0; i < r.np; i++)
            k[r.n + i] = r.pend[i].key;
        qsort(k, nk, sizeof *k, cmp_u64);
        for (size_t i = 1; rc == RD_OK && i < nk; i++)
            if (k[i] == k[i - 1])
                rc = rd_err_set(eb, RD_ERR_PARSE, "%s: key %llu appears twice", what,
                                (unsigned long long)k[i]);
        rd_free(k);
    }
    // Only now touch the table: fresh shard tables (counters kept), then the rows and the
    // pending counts.
    const uint32_t T = tt->man->n_tables, P = tt->man->n_shards;
    uint64_t dropped = 0;
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
        dropped += rd_table_pending_size(*slot);
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
    if (rc == RD_OK && res) {
        res->rows = r.n;
        res->pending = r.np;
        res->has_pending = r.has_pending;
        res->dropped = r.has_pending ? 0 : dropped;
    }
    rows_free(&r);
    return rc;
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
    const rd_ckpt_manifest *m = tt->man;
    const uint32_t P = m->n_shards, T = m->n_tables;
    uint32_t Q = n_shards > 0 ? (uint32_t)n_shards : P;
    if (n_shards < 0 || Q > RD_CKPT_MAX_SHARDS)
        return rd_err_set(eb, RD_ERR_ARG, "shards: %d outside 1..%d", n_shards, RD_CKPT_MAX_SHARDS);
    struct stat st;
    if (stat(out, &st) == 0)
        return rd_err_set(eb, RD_ERR_EXISTS, "%s exists: give a new directory", out);
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
    rd_table **nt = NULL;
    if (rc == RD_OK)
        rc = new_tables(m, Q, &nt, eb);
    // 1. Rows and pending counts to their shard under Q.
    int64_t clock = INT64_MIN;
    rd_table_stats sum;
    memset(&sum, 0, sizeof sum);
    for (uint32_t s = 0; rc == RD_OK && s < P; s++)
        for (uint32_t t = 0; rc == RD_OK && t < T; t++) {
            const rd_table *src = tt->tab[(size_t)s * T + t];
            rd_table_stats ss;
            rd_table_get_stats(src, &ss);
            if (Q == P)
                rd_table_set_counters(nt[(size_t)s * T + t], &ss);
            else if (ss.now > clock)
                clock = ss.now;
            for (size_t i = 0; rc == RD_OK && i < rd_table_size(src); i++) {
                uint64_t key, c;
                int64_t ls;
                const float *row = rd_table_row_at(src, i, &key, &ls, &c);
                int q = rd_shard_of(key, (int)Q);
                rc = rd_table_put(nt[(size_t)q * T + t], key, row, ls, c);
            }
            size_t cur = 0;
            uint64_t key;
            uint32_t cnt;
            int64_t ls;
            while (rc == RD_OK && rd_table_pending_next(src, &cur, &key, &cnt, &ls)) {
                int q = rd_shard_of(key, (int)Q);
                rc = rd_table_pending_put(nt[(size_t)q * T + t], key, cnt, ls);
            }
        }
    if (rc == RD_OK && Q != P) {
        // Counters summed per table into shard 0; every shard gets the latest clock.
        for (uint32_t t = 0; t < T; t++) {
            rd_table_stats acc;
            memset(&acc, 0, sizeof acc);
            for (uint32_t s = 0; s < P; s++) {
                rd_table_stats ss;
                rd_table_get_stats(tt->tab[(size_t)s * T + t], &ss);
                acc.admitted += ss.admitted;
                acc.rejected += ss.rejected;
                acc.evicted += ss.evicted;
                acc.pulled += ss.pulled;
                acc.pushed += ss.pushed;
            }
            for (uint32_t q = 0; q < Q; q++) {
                rd_table_stats qs;
                memset(&qs, 0, sizeof qs);
                if (q == 0)
                    qs = acc;
                qs.now = clock;
                rd_table_set_counters(nt[(size_t)q * T + t], &qs);
            }
        }
    }
    // 2. Shards, then the MANIFEST, then dense.bin, then the rename.
    rd_ckpt_manifest *nm = rd_xmalloc(sizeof *nm);
    *nm = *m;
    nm->n_shards = Q;
    for (uint32_t t = 0; t < T; t++)
        nm->tables[t].rows = nm->tables[t].pending = 0;
    for (uint32_t q = 0; rc == RD_OK && q < Q; q++) {
        rd_ckpt_shard_info info;
        rc = rd_ckpt_write_shard(part, (int)q, (int)Q, m->step, m->seed, nt + (size_t)q * T, (int)T,
                                 &info, eb);
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
    for (uint32_t q = Q; q < RD_CKPT_MAX_SHARDS; q++)
        nm->shard_crc[q] = 0, nm->shard_rows[q] = 0;
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
            // The window metrics of the trainer's position go with it (absent: an older build).
            snprintf(from, sizeof from, "%s/%s", tt->dir, RD_TRAIN_CKPT_WINDOWS);
            snprintf(to, sizeof to, "%s/%s", part, RD_TRAIN_CKPT_WINDOWS);
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
    if (rc != RD_OK) {
        rd_train_ckpt_rmtree(part, NULL);
        rd_lmdbx_rmdir_created(out, created);
    }
    rd_lmdbx_pending_forget(part);
    rd_free(nm);
    free_tables(nt, (size_t)Q * T);
    return rc;
}
