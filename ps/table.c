// table.c — an embedding table shard: linear-probing hash index of (key, row) into a chunked
// arena of rows, a small admission count map, TTL eviction and per-table memory accounting.
//
// Workload: a PS shard serves pulls and pushes of batches of unique keys (Zipf-distributed: a few
// hot rows and a long tail), creates rows as new keys are admitted, and evicts stale ones when
// stream time advances. Lookups dominate; the index is kept at load <= 1/2 with 16-byte slots so
// that a probe usually touches one cache line, and the next keys of a batch are prefetched.
//
// Invariants:
// - index slot {key, row}: key 0 = empty; every live row r has exactly one slot with row == r.
// - rows are dense in [0, n_rows); row r's key is in its row_meta (swap-remove needs it).
// - an arena chunk is [chunk_rows rows of `stride` bytes | chunk_rows row_meta]; chunks are
//   never moved or freed before destroy.
// - `oldest` <= min(last_seen) over rows and pending entries (a lower bound, so eviction can
//   skip scans that would remove nothing); likewise chunk_low[c] over the rows of chunk c
//   (INT64_MAX for a chunk past the last row) and adm_low over the pending entries, so that an
//   eviction reads only the chunks that may hold an expired row. A last_seen only grows, so a
//   bound stays valid until a row with an older time is put into the chunk.
#include "rd/table.h"
#include "rd/alloc.h"
#include "rd/hash.h"
#include "rd/optim.h"
#include "rd/rng.h"

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

typedef struct idx_slot {
    uint64_t key; // 0 = empty
    uint64_t row;
} idx_slot;

typedef struct row_meta {
    uint64_t key;
    int64_t last_seen;
    uint64_t count;
} row_meta;

typedef struct adm_slot {
    uint64_t key; // 0 = empty
    uint32_t count;
    uint32_t pad;
    int64_t last_seen;
} adm_slot;

struct rd_table {
    rd_table_config cfg;
    int index;
    uint64_t seed;     // run seed ^ hash(table name): the init stream
    size_t dim;        // floats of the embedding
    size_t nslots;     // optimizer slot vectors
    size_t row_floats; // dim * (1 + nslots)
    size_t stride;     // bytes per row: row_floats * 4 padded to a cache line (or a power of
                       // two below 64), so a row never straddles more lines than it needs

    // Arena: chunks of chunk_rows rows, then chunk_rows row_meta records.
    unsigned char **chunks;
    int64_t *chunk_low; // (cap_chunks) lower bound of the last_seen of each chunk's rows
    size_t n_chunks, cap_chunks;
    size_t chunk_rows; // power of two
    unsigned chunk_shift;
    size_t n_rows;

    // Index.
    idx_slot *idx;
    size_t idx_cap; // power of two
    size_t idx_mask;

    // Admission map.
    adm_slot *adm;
    size_t adm_cap, adm_n;

    int64_t oldest;
    int64_t adm_low;          // lower bound of the pending entries' last_seen
    uint64_t evict_rows_read; // rows an eviction scan read, in all (rd__table_evict_rows_read)
    rd_table_stats st;
};

// ---------------------------------------------------------------------------------------------
// Row access

// Row r's floats: [embedding | slots].
static inline unsigned char *row_ptr(const rd_table *t, size_t r) {
    return t->chunks[r >> t->chunk_shift] + (r & (t->chunk_rows - 1)) * t->stride;
}

// Row r's key, last-seen time and update count, kept apart from the floats so that a pull reads
// only the embedding's cache lines (and a 64-float row is exactly 4 lines).
static inline row_meta *meta_of(const rd_table *t, size_t r) {
    row_meta *m = (row_meta *)(void *)(t->chunks[r >> t->chunk_shift] + t->chunk_rows * t->stride);
    return m + (r & (t->chunk_rows - 1));
}

static size_t next_pow2(size_t x) {
    size_t p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

static inline size_t slot_of(uint64_t key, size_t mask) {
    return (size_t)rd_mix64(key) & mask;
}

// ---------------------------------------------------------------------------------------------
// Create / destroy

static int add_chunk(rd_table *t) {
    if (t->n_chunks == t->cap_chunks) {
        size_t nc = t->cap_chunks ? t->cap_chunks * 2 : 8;
        unsigned char **p = rd_realloc(t->chunks, nc * sizeof *p);
        if (!p)
            return RD_ERR_NOMEM;
        t->chunks = p;
        int64_t *lo = rd_realloc(t->chunk_low, nc * sizeof *lo);
        if (!lo)
            return RD_ERR_NOMEM;
        t->chunk_low = lo;
        t->cap_chunks = nc;
    }
    t->chunk_low[t->n_chunks] = INT64_MAX;
    size_t bytes = t->chunk_rows * (t->stride + sizeof(row_meta));
    unsigned char *c = rd_aligned_alloc(bytes);
    if (!c)
        return RD_ERR_NOMEM;
    // Rows and index slots are accessed at random: with 4 KiB pages most accesses also miss
    // the TLB.
    rd_alloc_advise_huge(c, bytes);
    t->chunks[t->n_chunks++] = c;
    return RD_OK;
}

static int grow_index(rd_table *t, size_t new_cap) {
    idx_slot *ni = rd_calloc(new_cap, sizeof *ni);
    if (!ni)
        return RD_ERR_NOMEM;
    rd_alloc_advise_huge(ni, new_cap * sizeof *ni);
    size_t mask = new_cap - 1;
    // Rebuild from the arena: it holds every live key, and rows do not move.
    for (size_t r = 0; r < t->n_rows; r++) {
        uint64_t key = meta_of(t, r)->key;
        size_t s = slot_of(key, mask);
        while (ni[s].key)
            s = (s + 1) & mask;
        ni[s].key = key;
        ni[s].row = r;
    }
    rd_free(t->idx);
    t->idx = ni;
    t->idx_cap = new_cap;
    t->idx_mask = mask;
    return RD_OK;
}

uint64_t rd_table_salt(const rd_table_config *tc) {
    return rd_hash_str(tc->init_as[0] ? tc->init_as : tc->name, 0);
}

int rd_table_create(
    const rd_table_config *tc, int index, uint64_t run_seed, rd_table **out, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, tc != NULL);
    int ns = rd_optim_slots(tc->optim.kind);
    if (tc->dim < 1 || tc->dim > 1024)
        return rd_err_set(eb, RD_ERR_CONFIG, "table %s: dim %d outside 1..1024", tc->name, tc->dim);
    if (ns < 0)
        return rd_err_set(eb, RD_ERR_CONFIG, "table %s: unknown optimizer kind %d", tc->name,
                          tc->optim.kind);
    rd_table *t = rd_calloc(1, sizeof *t);
    if (!t)
        return rd_err_set(eb, RD_ERR_NOMEM, "table %s: out of memory", tc->name);
    t->cfg = *tc;
    t->cfg.name[RD_NAME_MAX - 1] = '\0';
    t->index = index;
    t->cfg.init_as[RD_NAME_MAX - 1] = '\0';
    t->seed = run_seed ^ rd_table_salt(&t->cfg);
    t->dim = (size_t)tc->dim;
    t->nslots = (size_t)ns;
    t->row_floats = t->dim * (1 + t->nslots);
    size_t fb = t->row_floats * sizeof(float);
    if (fb >= 64) {
        t->stride = (fb + 63) & ~(size_t)63;
    } else {
        t->stride = 4;
        while (t->stride < fb)
            t->stride <<= 1;
    }
    uint64_t cap = tc->capacity ? tc->capacity : 1;
    size_t chunk = next_pow2(cap < 256 ? 256 : (cap > 65536 ? 65536 : (size_t)cap));
    t->chunk_rows = chunk;
    while (((size_t)1 << t->chunk_shift) < chunk)
        t->chunk_shift++;
    t->oldest = INT64_MAX;
    t->adm_low = INT64_MAX;
    t->st.now = INT64_MIN;

    // Preallocate the configured capacity (growth later is lazy). A capacity beyond the node's
    // memory is said at once: allocating it chunk by chunk took minutes before it failed.
    int rc = RD_OK;
    double need = (double)cap * (double)(t->stride + sizeof(row_meta) + 32);
    const char *whose = NULL;
    double phys = (double)rd_mem_limit(&whose);
    if (phys > 0 && need > phys) {
        rd_table_destroy(t);
        return rd_err_set(eb, RD_ERR_NOMEM,
                          "table %s: the initial capacity of %" PRIu64
                          " rows needs %.1f GiB, more than %s (%.1f GiB): lower "
                          "its capacity (rows are added as keys arrive)",
                          tc->name, cap, need / 1073741824.0, whose, phys / 1073741824.0);
    }
    if (cap > ((uint64_t)1 << 40)) {
        rc = RD_ERR_NOMEM;
    } else {
        size_t want_chunks = (size_t)((cap + chunk - 1) / chunk);
        for (size_t i = 0; i < want_chunks && rc == RD_OK; i++)
            rc = add_chunk(t);
        if (rc == RD_OK)
            rc = grow_index(t, next_pow2((size_t)cap * 2 < 16 ? 16 : (size_t)cap * 2));
    }
    if (rc != RD_OK) {
        uint64_t stride = t->stride + sizeof(row_meta);
        rd_table_destroy(t);
        return rd_err_set(eb, RD_ERR_NOMEM,
                          "table %s: cannot allocate the initial capacity of %" PRIu64
                          " rows (%" PRIu64 " bytes per row + 32 bytes of index)",
                          tc->name, cap, stride);
    }
    *out = t;
    return RD_OK;
}

void rd_table_destroy(rd_table *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->n_chunks; i++)
        rd_aligned_free(t->chunks[i]);
    rd_free(t->chunks);
    rd_free(t->chunk_low);
    rd_free(t->idx);
    rd_free(t->adm);
    rd_free(t);
}

const rd_table_config *rd_table_config_of(const rd_table *t) {
    return t ? &t->cfg : NULL;
}

int rd_table_index(const rd_table *t) {
    return t ? t->index : -1;
}

size_t rd_table_dim(const rd_table *t) {
    return t ? t->dim : 0;
}

size_t rd_table_row_floats(const rd_table *t) {
    return t ? t->row_floats : 0;
}

// ---------------------------------------------------------------------------------------------
// Initial values

void rd_table_init_value(const rd_table *t, uint64_t key, float *out) {
    if (!t || !out)
        return;
    rd_rng r;
    rd_rng_split(&r, t->seed, key);
    const double std = (double)t->cfg.init_std;
    for (size_t i = 0; i < t->dim; i++)
        out[i] = (float)(rd_rng_normal(&r) * std);
}

// ---------------------------------------------------------------------------------------------
// Index primitives

static inline idx_slot *idx_lookup(const rd_table *t, uint64_t key) {
    size_t s = slot_of(key, t->idx_mask);
    for (;;) {
        idx_slot *p = &t->idx[s];
        if (p->key == key)
            return p;
        if (p->key == 0)
            return NULL;
        s = (s + 1) & t->idx_mask;
    }
}

// Software pipelining of batch loops (one lookup per key): while key i is processed, the index
// slot of key i + LA_SLOT is prefetched and key i + LA_ROW is looked up (its slot line arrived
// meanwhile), its row index kept in a small ring and its row's lines prefetched; key i then
// takes its row from the ring. Rows of a large table live in DRAM and a Zipf tail key misses on
// both the slot and the row, so the misses of LA_ROW keys overlap. A ring entry is either a row
// (rows never move inside a batch call: nothing is removed there, and growth moves index slots,
// not rows) or "not found", which the caller re-checks with a fresh lookup because an earlier
// key of the same batch may have inserted it (a key given twice).
#define LA_SLOT 16
#define LA_ROW  8
#define LA_RING 16 // power of two > LA_ROW
#define LA_NONE SIZE_MAX

typedef struct lookahead {
    const uint64_t *keys;
    size_t n;
    size_t row_bytes; // leading bytes of a row the loop touches
    int meta;         // the loop also writes the row's meta record
    size_t row[LA_RING];
} lookahead;

static inline void la_prefetch_slot(const rd_table *t, uint64_t key) {
    __builtin_prefetch(&t->idx[slot_of(key, t->idx_mask)]);
}

// Look key j up, remember its row and prefetch the row's lines (and meta record).
static inline void la_resolve(const rd_table *t, lookahead *la, size_t j) {
    uint64_t key = la->keys[j];
    size_t r = LA_NONE;
    if (key != 0) {
        const idx_slot *p = idx_lookup(t, key);
        if (p) {
            r = p->row;
            const unsigned char *rp = row_ptr(t, r);
            for (size_t off = 0; off < la->row_bytes; off += 64)
                __builtin_prefetch(rp + off);
            if (la->meta)
                __builtin_prefetch(meta_of(t, r), 1);
        }
    }
    la->row[j & (LA_RING - 1)] = r;
}

static inline void la_start(
    const rd_table *t, lookahead *la, const uint64_t *keys, size_t n, size_t row_bytes, int meta) {
    la->keys = keys;
    la->n = n;
    la->row_bytes = row_bytes;
    la->meta = meta;
    for (size_t j = 0; j < n && j < LA_SLOT; j++)
        if (keys[j] != 0)
            la_prefetch_slot(t, keys[j]);
    for (size_t j = 0; j < n && j < LA_ROW; j++)
        la_resolve(t, la, j);
}

// Advance the pipeline to key i and return key i's row, or LA_NONE when it had none at
// look-up time (key 0, or a key without a row: the caller looks it up again).
static inline size_t la_next(const rd_table *t, lookahead *la, size_t i) {
    size_t r = la->row[i & (LA_RING - 1)];
    if (i + LA_SLOT < la->n && la->keys[i + LA_SLOT] != 0)
        la_prefetch_slot(t, la->keys[i + LA_SLOT]);
    if (i + LA_ROW < la->n)
        la_resolve(t, la, i + LA_ROW);
    return r;
}

float *rd_table_find(rd_table *t, uint64_t key) {
    if (!t || key == 0)
        return NULL;
    idx_slot *p = idx_lookup(t, key);
    return p ? (float *)(void *)row_ptr(t, p->row) : NULL;
}

// Append a row for `key` (not present) and index it. Grows arena and index as needed.
static int insert_row(rd_table *t, uint64_t key, size_t *out_r) {
    if ((t->n_rows + 1) * 2 > t->idx_cap) {
        int rc = grow_index(t, t->idx_cap * 2);
        if (rc != RD_OK)
            return rc;
    }
    if (t->n_rows == t->n_chunks * t->chunk_rows) {
        int rc = add_chunk(t);
        if (rc != RD_OK)
            return rc;
    }
    size_t r = t->n_rows++;
    meta_of(t, r)->key = key;
    size_t s = slot_of(key, t->idx_mask);
    while (t->idx[s].key)
        s = (s + 1) & t->idx_mask;
    t->idx[s].key = key;
    t->idx[s].row = r;
    *out_r = r;
    return RD_OK;
}

// Initialise a fresh row: embedding from the key, slots from the optimizer, meta.
static void init_row(rd_table *t, uint64_t key, size_t r, int64_t now) {
    float *f = (float *)(void *)row_ptr(t, r);
    rd_table_init_value(t, key, f);
    rd_optim_init_slots(&t->cfg.optim, f + t->dim, t->dim);
    meta_of(t, r)->last_seen = now;
    meta_of(t, r)->count = 0;
    if (now < t->oldest)
        t->oldest = now;
    if (now < t->chunk_low[r >> t->chunk_shift])
        t->chunk_low[r >> t->chunk_shift] = now;
}

int rd_table_insert(rd_table *t, uint64_t key, int64_t now, float **row) {
    if (!t || key == 0)
        return RD_ERR_ARG;
    if (idx_lookup(t, key))
        return RD_ERR_EXISTS;
    size_t r;
    int rc = insert_row(t, key, &r);
    if (rc != RD_OK)
        return rc;
    init_row(t, key, r, now);
    t->st.admitted++;
    if (row)
        *row = (float *)(void *)row_ptr(t, r);
    return RD_OK;
}

// Backward-shift deletion of index slot `s` (linear probing without tombstones).
static void idx_delete(rd_table *t, size_t s) {
    size_t mask = t->idx_mask;
    size_t hole = s;
    size_t j = s;
    for (;;) {
        j = (j + 1) & mask;
        if (t->idx[j].key == 0)
            break;
        size_t home = slot_of(t->idx[j].key, mask);
        // Move j into the hole if its home is not in (hole, j] cyclically.
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            t->idx[hole] = t->idx[j];
            hole = j;
        }
    }
    t->idx[hole].key = 0;
    t->idx[hole].row = 0;
}

static void remove_slot(rd_table *t, idx_slot *p) {
    size_t r = p->row;
    idx_delete(t, (size_t)(p - t->idx));
    size_t last = t->n_rows - 1;
    if (r != last) {
        memcpy(row_ptr(t, r), row_ptr(t, last), t->stride);
        *meta_of(t, r) = *meta_of(t, last);
        idx_slot *q = idx_lookup(t, meta_of(t, r)->key);
        RD_ASSERT(q && q->row == last);
        q->row = r;
        int64_t ls = meta_of(t, r)->last_seen;
        if (ls < t->chunk_low[r >> t->chunk_shift])
            t->chunk_low[r >> t->chunk_shift] = ls;
    }
    if ((last & (t->chunk_rows - 1)) == 0) // its chunk is empty now
        t->chunk_low[last >> t->chunk_shift] = INT64_MAX;
    t->n_rows--;
}

int rd_table_remove(rd_table *t, uint64_t key) {
    if (!t)
        return RD_ERR_ARG;
    if (key == 0)
        return RD_ERR_NOTFOUND;
    idx_slot *p = idx_lookup(t, key);
    if (!p)
        return RD_ERR_NOTFOUND;
    remove_slot(t, p);
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Admission map (linear probing, backward-shift deletion, like the index)

static adm_slot *adm_lookup(const rd_table *t, uint64_t key) {
    if (!t->adm)
        return NULL;
    size_t mask = t->adm_cap - 1;
    size_t s = slot_of(key, mask);
    for (;;) {
        if (t->adm[s].key == key)
            return &t->adm[s];
        if (t->adm[s].key == 0)
            return NULL;
        s = (s + 1) & mask;
    }
}

static int adm_grow(rd_table *t) {
    size_t nc = t->adm_cap ? t->adm_cap * 2 : 64;
    adm_slot *na = rd_calloc(nc, sizeof *na);
    if (!na)
        return RD_ERR_NOMEM;
    for (size_t i = 0; i < t->adm_cap; i++) {
        if (!t->adm[i].key)
            continue;
        size_t s = slot_of(t->adm[i].key, nc - 1);
        while (na[s].key)
            s = (s + 1) & (nc - 1);
        na[s] = t->adm[i];
    }
    rd_free(t->adm);
    t->adm = na;
    t->adm_cap = nc;
    return RD_OK;
}

static int adm_insert(rd_table *t, uint64_t key, adm_slot **out) {
    if ((t->adm_n + 1) * 2 > t->adm_cap) {
        int rc = adm_grow(t);
        if (rc != RD_OK)
            return rc;
    }
    size_t mask = t->adm_cap - 1;
    size_t s = slot_of(key, mask);
    while (t->adm[s].key)
        s = (s + 1) & mask;
    t->adm[s].key = key;
    t->adm[s].count = 0;
    t->adm[s].last_seen = INT64_MIN;
    t->adm_n++;
    *out = &t->adm[s];
    return RD_OK;
}

static void adm_delete(rd_table *t, adm_slot *p) {
    size_t mask = t->adm_cap - 1;
    size_t hole = (size_t)(p - t->adm);
    size_t j = hole;
    for (;;) {
        j = (j + 1) & mask;
        if (t->adm[j].key == 0)
            break;
        size_t home = slot_of(t->adm[j].key, mask);
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            t->adm[hole] = t->adm[j];
            hole = j;
        }
    }
    memset(&t->adm[hole], 0, sizeof t->adm[hole]);
    t->adm_n--;
}

// ---------------------------------------------------------------------------------------------
// Pull / push

// A key without a row at look-up time (new, or pending admission): the sighting. Returns RD_OK
// with *r set to the key's row, or *r = LA_NONE when the key is still pending (then dst, unless
// NULL, gets the initial value).
static int pull_missing(rd_table *t, uint64_t key, int64_t now, float *dst, size_t *r) {
    idx_slot *p = idx_lookup(t, key); // an earlier key of the batch may have created it
    if (p) {
        *r = p->row;
        row_meta *m = meta_of(t, *r);
        if (now > m->last_seen)
            m->last_seen = now;
        return RD_OK;
    }
    if (t->cfg.admit_count <= 1) {
        int rc = insert_row(t, key, r);
        if (rc != RD_OK)
            return rc;
        init_row(t, key, *r, now);
        t->st.admitted++;
        return RD_OK;
    }
    adm_slot *a = adm_lookup(t, key);
    if (!a) {
        int rc = adm_insert(t, key, &a);
        if (rc != RD_OK)
            return rc;
        if (now < t->oldest)
            t->oldest = now;
        if (now < t->adm_low)
            t->adm_low = now;
    }
    a->count++;
    if (now > a->last_seen)
        a->last_seen = now;
    if (a->count >= (uint32_t)t->cfg.admit_count) {
        int64_t seen = a->last_seen;
        int rc = insert_row(t, key, r);
        if (rc != RD_OK)
            return rc;
        adm_delete(t, adm_lookup(t, key));
        init_row(t, key, *r, seen);
        t->st.admitted++;
        return RD_OK;
    }
    if (dst)
        rd_table_init_value(t, key, dst);
    *r = LA_NONE;
    return RD_OK;
}

int rd_table_pull(rd_table *t, const uint64_t *keys, size_t n, int64_t now, float *out) {
    if (!t || (n && (!keys || !out)))
        return RD_ERR_ARG;
    const size_t dim = t->dim;
    lookahead la;
    la_start(t, &la, keys, n, dim * sizeof(float), 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t key = keys[i];
        if (key == 0)
            return RD_ERR_ARG;
        float *dst = out + i * dim;
        size_t r = la_next(t, &la, i);
        if (r != LA_NONE) {
            row_meta *m = meta_of(t, r);
            if (now > m->last_seen)
                m->last_seen = now;
        } else {
            int rc = pull_missing(t, key, now, dst, &r);
            if (rc != RD_OK)
                return rc;
        }
        if (r != LA_NONE)
            memcpy(dst, row_ptr(t, r), dim * sizeof(float));
        t->st.pulled++;
    }
    return RD_OK;
}

int rd_table_read(const rd_table *t, const uint64_t *keys, size_t n, float *out) {
    if (!t || (n && (!keys || !out)))
        return RD_ERR_ARG;
    const size_t dim = t->dim;
    lookahead la;
    la_start(t, &la, keys, n, dim * sizeof(float), 0);
    for (size_t i = 0; i < n; i++) {
        if (keys[i] == 0)
            return RD_ERR_ARG;
        size_t r = la_next(t, &la, i); // nothing is inserted here: LA_NONE is final
        if (r != LA_NONE)
            memcpy(out + i * dim, row_ptr(t, r), dim * sizeof(float));
        else
            rd_table_init_value(t, keys[i], out + i * dim);
    }
    return RD_OK;
}

int rd_table_touch(rd_table *t, const uint64_t *keys, size_t n, int64_t now) {
    if (!t || (n && !keys))
        return RD_ERR_ARG;
    lookahead la;
    la_start(t, &la, keys, n, 0, 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t key = keys[i];
        if (key == 0)
            return RD_ERR_ARG;
        size_t r = la_next(t, &la, i);
        t->st.pulled++;
        if (r != LA_NONE) {
            row_meta *m = meta_of(t, r);
            if (now > m->last_seen)
                m->last_seen = now;
            continue;
        }
        int rc = pull_missing(t, key, now, NULL, &r);
        if (rc != RD_OK)
            return rc;
    }
    return RD_OK;
}

int rd_table_push(rd_table *t, const uint64_t *keys, const float *grads, size_t n, int64_t now) {
    if (!t || (n && (!keys || !grads)))
        return RD_ERR_ARG;
    const size_t dim = t->dim;
    lookahead la;
    la_start(t, &la, keys, n, t->row_floats * sizeof(float), 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t key = keys[i];
        if (key == 0)
            return RD_ERR_ARG;
        size_t r = la_next(t, &la, i);
        if (r == LA_NONE) {
            idx_slot *p = idx_lookup(t, key); // an earlier key of the batch may have created it
            if (p) {
                r = p->row;
            } else if (t->cfg.admit_count <= 1) {
                int rc = insert_row(t, key, &r);
                if (rc != RD_OK)
                    return rc;
                init_row(t, key, r, now);
                t->st.admitted++;
            } else {
                t->st.rejected++;
                continue;
            }
        }
        float *w = (float *)(void *)row_ptr(t, r);
        row_meta *m = meta_of(t, r);
        // Saturating: a count of 2^64 - 1 (a `table import` takes any u64) wrapped to 0, and Adam's
        // t >= 1 assertion aborted the job at the row's next push.
        m->count += m->count < UINT64_MAX;
        rd_optim_update(&t->cfg.optim, w, w + dim, m->count, grads + i * dim, dim);
        if (now > m->last_seen)
            m->last_seen = now;
        t->st.pushed++;
    }
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Eviction

uint64_t rd_table_evict(rd_table *t, int64_t now) {
    if (!t)
        return 0;
    if (now > t->st.now)
        t->st.now = now;
    if (t->cfg.ttl <= 0 || t->st.now == INT64_MIN)
        return 0;
    int64_t limit = t->st.now < INT64_MIN + t->cfg.ttl ? INT64_MIN : t->st.now - t->cfg.ttl;
    if (t->oldest >= limit)
        return 0;
    uint64_t evicted = 0;
    int64_t oldest = INT64_MAX;
    // Rows, chunk by chunk from the last, reading only the chunks whose bound is below the limit:
    // with a TTL the limit moves at every step, and a full scan of a shard of 10^7 rows cost 18 ms
    // a step against 2.3 ms for the step's pull (docs/reliability.md, twenty-eighth session).
    // Downward: swap-remove moves the last row into the hole, and that row is either already
    // checked or in a chunk that holds nothing to evict.
    for (size_t c = t->n_chunks; c-- > 0;) {
        size_t lo = c << t->chunk_shift;
        if (lo >= t->n_rows || t->chunk_low[c] >= limit) {
            if (lo < t->n_rows && t->chunk_low[c] < oldest)
                oldest = t->chunk_low[c];
            continue;
        }
        size_t hi = lo + t->chunk_rows < t->n_rows ? lo + t->chunk_rows : t->n_rows;
        int64_t low = INT64_MAX;
        t->evict_rows_read += hi - lo;
        for (size_t r = hi; r-- > lo;) {
            int64_t ls = meta_of(t, r)->last_seen;
            if (ls < limit) {
                idx_slot *p = idx_lookup(t, meta_of(t, r)->key);
                RD_ASSERT(p && p->row == r);
                remove_slot(t, p);
                evicted++;
                if (r < t->n_rows) // the row moved into the hole
                    ls = meta_of(t, r)->last_seen;
                else
                    continue;
            }
            if (ls < low)
                low = ls;
        }
        if (lo < t->n_rows)
            t->chunk_low[c] = low;
        if (low < oldest)
            oldest = low;
    }
    // Pending counts: deletion shifts later entries back, so revisit the slot after a delete.
    if (t->adm_low < limit) {
        int64_t low = INT64_MAX;
        for (size_t i = 0; i < t->adm_cap;) {
            adm_slot *a = &t->adm[i];
            if (a->key && a->last_seen < limit) {
                adm_delete(t, a);
                continue;
            }
            if (a->key && a->last_seen < low)
                low = a->last_seen;
            i++;
        }
        t->adm_low = low;
    }
    if (t->adm_low < oldest)
        oldest = t->adm_low;
    t->oldest = oldest;
    t->st.evicted += evicted;
    return evicted;
}

// ---------------------------------------------------------------------------------------------
// Iteration, restore, stats

size_t rd_table_size(const rd_table *t) {
    return t ? t->n_rows : 0;
}

const float *
rd_table_row_at(const rd_table *t, size_t i, uint64_t *key, int64_t *last_seen, uint64_t *count) {
    // A caller's index past the rows (a size read before a removal) or a NULL table is NULL,
    // which the caller can report; an assertion here aborted a tool embedding the table.
    if (!t || i >= t->n_rows)
        return NULL;
    const row_meta *m = meta_of(t, i);
    if (key)
        *key = m->key;
    if (last_seen)
        *last_seen = m->last_seen;
    if (count)
        *count = m->count;
    return (const float *)(const void *)row_ptr(t, i);
}

int rd_table_put(rd_table *t, uint64_t key, const float *row, int64_t last_seen, uint64_t count) {
    if (!t || !row || key == 0)
        return RD_ERR_ARG;
    idx_slot *p = idx_lookup(t, key);
    size_t r;
    if (p) {
        r = p->row;
    } else {
        int rc = insert_row(t, key, &r);
        if (rc != RD_OK)
            return rc;
    }
    memcpy(row_ptr(t, r), row, t->row_floats * sizeof(float));
    meta_of(t, r)->last_seen = last_seen;
    meta_of(t, r)->count = count;
    if (last_seen < t->oldest)
        t->oldest = last_seen;
    if (last_seen < t->chunk_low[r >> t->chunk_shift])
        t->chunk_low[r >> t->chunk_shift] = last_seen;
    return RD_OK;
}

size_t rd_table_pending_size(const rd_table *t) {
    return t ? t->adm_n : 0;
}

int rd_table_pending_next(
    const rd_table *t, size_t *cursor, uint64_t *key, uint32_t *count, int64_t *last_seen) {
    if (!t || !cursor || !key || !count || !last_seen)
        return 0;
    for (size_t i = *cursor; i < t->adm_cap; i++) {
        if (t->adm[i].key) {
            *key = t->adm[i].key;
            *count = t->adm[i].count;
            *last_seen = t->adm[i].last_seen;
            *cursor = i + 1;
            return 1;
        }
    }
    *cursor = t->adm_cap;
    return 0;
}

int rd_table_pending_put(rd_table *t, uint64_t key, uint32_t count, int64_t last_seen) {
    if (!t || key == 0 || count == 0)
        return RD_ERR_ARG;
    adm_slot *a = adm_lookup(t, key);
    if (!a) {
        int rc = adm_insert(t, key, &a);
        if (rc != RD_OK)
            return rc;
    }
    a->count = count;
    a->last_seen = last_seen;
    if (last_seen < t->oldest)
        t->oldest = last_seen;
    if (last_seen < t->adm_low)
        t->adm_low = last_seen;
    return RD_OK;
}

void rd_table_get_stats(const rd_table *t, rd_table_stats *st) {
    if (!st)
        return;
    if (!t) {
        memset(st, 0, sizeof *st);
        st->now = INT64_MIN;
        return;
    }
    *st = t->st;
    st->rows = t->n_rows;
    st->pending = t->adm_n;
    st->bytes = (uint64_t)(t->n_chunks * t->chunk_rows * (t->stride + sizeof(row_meta))) +
                (uint64_t)(t->idx_cap * sizeof(idx_slot)) +
                (uint64_t)(t->adm_cap * sizeof(adm_slot)) +
                (uint64_t)(t->cap_chunks * sizeof(unsigned char *)) + (uint64_t)sizeof *t;
}

void rd_table_set_counters(rd_table *t, const rd_table_stats *st) {
    if (!t || !st)
        return;
    t->st.admitted = st->admitted;
    t->st.rejected = st->rejected;
    t->st.evicted = st->evicted;
    t->st.pulled = st->pulled;
    t->st.pushed = st->pushed;
    t->st.now = st->now;
}

uint64_t rd__table_evict_rows_read(const rd_table *t) {
    return t->evict_rows_read;
}
