// rd/table.h — one embedding table shard: an open-addressing hash map into an arena of rows.
//
// Defines:
//   rd_table                 opaque shard of one table (one per table per PS rank)
//   rd_table_stats           rows, memory, admission / rejection / eviction counters
//   rd_table_create/destroy
//   rd_table_init_value()    the deterministic initial embedding of a key
//   rd_table_pull()          rows for keys (creating admitted rows), with admission counting
//   rd_table_read/touch()    the side-effect-free and the side-effect halves of a pull
//   rd_table_push()          apply gradients with the table's optimizer (drops non-admitted keys)
//   rd_table_evict()         TTL eviction in stream time
//   rd_table_find/insert/remove   single-key primitives (tests, tools)
//   rd_table_size/row_at/put       dense iteration and restore (checkpoints, stats, tools)
//   rd_table_pending_*       the admission count map (checkpoints)
//
// Row: [ embedding: dim f32 | optimizer slots: S*dim f32 ] padded to whole cache lines (to a
// power of two below 64 bytes), plus a separate 24-byte record { key, last_seen i64, count u64 }
// kept in a parallel array, so that a pull touches only the embedding's lines (a 64-d row is
// exactly 4 lines). `count` is the number of updates applied (Adam's t); `last_seen` is the
// latest stream time at which the key was pulled for training (rd_table_pull / rd_table_touch)
// or pushed (max, so arrival order does not matter). Reads (rd_table_read: evaluation pulls,
// RD_MSG_FLAG_READ, and serving) leave it: TTL eviction drops what training has not used.
//
// Invariants and behaviour:
// - The index is linear probing over (key, row) pairs, power-of-two size, load <= 1/2, backward-
//   shift deletion (no tombstones). Key 0 is reserved (empty slot); functions reject it.
// - Rows are dense in [0, size): removal moves the last row into the hole. Growing adds arena
//   chunks (rows never move when the table grows) and rebuilds the 16-byte-per-slot index from
//   the arena, so growth never stops the server for long and costs no copy of embeddings.
//   Large chunks and the index are madvise'd for transparent huge pages (random row access).
// - Memory accounting (rd_table_stats.bytes) counts arena chunks, index and admission map.
// - Initial value of (table, key) = N(0, init_std) drawn from rd_rng_split(run_seed ^
//   rd_hash_str(table name, 0), key): identical on any PS layout. A table with `init_as: NAME`
//   draws under NAME instead, so its rows start equal to table NAME's (twin students).
// - Admission (admit_count = N > 1): a key gets a row on its N-th PULL sighting (one sighting per
//   pull request containing the key). Until then pulls return the initial value and pushes of
//   that key are dropped and counted as `rejected`. Counts live in a small separate map. With
//   N = 1 rows are created on first touch (pull or push).
// - Eviction (ttl > 0): rd_table_evict(now) removes rows and pending counts with last_seen <
//   now - ttl; an evicted key starts over (re-initialised from its key, admission from zero).
// Not thread-safe: one PS thread owns its shards.
//
// Arguments: rd_table_create refuses a NULL config or output with RD_ERR_ARG and a message naming
// itself (it asserted); the functions returning a status give RD_ERR_ARG for a NULL table, or a
// NULL array when n > 0, as for key 0. The accessors without a status take a NULL table (and
// rd_table_row_at an index past the rows) quietly, with the value each names below: 0, -1 or
// NULL, stats zeroed. No function aborts over an argument.
#ifndef RD_TABLE_H
#define RD_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_table rd_table;

typedef struct rd_table_stats {
    uint64_t rows;     // live rows
    uint64_t pending;  // keys counted for admission, no row yet
    uint64_t bytes;    // memory held: arena chunks + index + admission map
    uint64_t admitted; // rows created (cumulative)
    uint64_t rejected; // pushed keys dropped because not admitted (cumulative)
    uint64_t evicted;  // rows evicted by TTL (cumulative)
    uint64_t pulled;   // keys answered by pulls (cumulative)
    uint64_t pushed;   // key updates applied (cumulative)
    int64_t now;       // latest stream time given to rd_table_evict (INT64_MIN if none)
} rd_table_stats;

#define RD_TABLE_STATS_FIELDS 9 // number of 8-byte fields of rd_table_stats (wire format)

/**
 * @param[in]  tc        table config (copied)
 * @param[in]  index     index of the table in cfg.ps.tables (reported in stats and checkpoints)
 * @param[in]  run_seed  cfg.run.seed
 * @param[out] out       free with rd_table_destroy
 * @return RD_OK, RD_ERR_CONFIG (dim outside 1..1024, unknown optimizer), RD_ERR_NOMEM
 *         (the initial capacity could not be allocated; eb gives the bytes), RD_ERR_ARG (tc or
 *         out NULL)
 */
int rd_table_create(
    const rd_table_config *tc, int index, uint64_t run_seed, rd_table **out, rd_errbuf *eb);
void rd_table_destroy(rd_table *t);

/** @return the table's config, borrowed until rd_table_destroy; NULL for a NULL t. */
const rd_table_config *rd_table_config_of(const rd_table *t);
/** @return the index given to rd_table_create; -1 for a NULL t. */
int rd_table_index(const rd_table *t);
/** @return floats of an embedding; 0 for a NULL t. */
size_t rd_table_dim(const rd_table *t);
/** Floats of a row: dim * (1 + slots); 0 for a NULL t. */
size_t rd_table_row_floats(const rd_table *t);

/** Deterministic initial embedding of `key`; out is (dim). Writes nothing when t or out is
 *  NULL. */
void rd_table_init_value(const rd_table *t, uint64_t key, float *out);

/** rd_hash_str(name, 0), or of `init_as` when set: the salt of the table's keys (rd_table_key)
 *  and of its init stream, so that a twin table (init_as) sees the same keys and rows. */
uint64_t rd_table_salt(const rd_table_config *tc);

/**
 * Pull: for each key, the row's embedding into out[i*dim...]. Existing rows get last_seen =
 * max(last_seen, now). Missing keys count a sighting; admitted ones get a new row, the others
 * get the initial value.
 * @param[out] out  (n, dim)
 * @return RD_OK, RD_ERR_ARG (key 0), RD_ERR_NOMEM (growth failed; out is then incomplete)
 */
int rd_table_pull(rd_table *t, const uint64_t *keys, size_t n, int64_t now, float *out);

/**
 * Read-only half of a pull: the row's embedding, or the initial value for a key without a row.
 * No side effect at all (no admission count, last-seen or counter). Sync-mode servers answer
 * pulls with it and apply the sightings with rd_table_touch when the step completes.
 * @param[out] out  (n, dim)
 * @return RD_OK or RD_ERR_ARG (key 0)
 */
int rd_table_read(const rd_table *t, const uint64_t *keys, size_t n, float *out);

/**
 * The side effects of a pull without the values: last-seen, admission counts (admitted rows
 * are created), the `pulled` counter. rd_table_pull == rd_table_touch + rd_table_read.
 * @return RD_OK, RD_ERR_ARG (key 0), RD_ERR_NOMEM
 */
int rd_table_touch(rd_table *t, const uint64_t *keys, size_t n, int64_t now);

/**
 * Push: apply grads[i*dim...] to the row of keys[i] with the table's optimizer, in order (a key
 * given twice is updated twice). Non-admitted keys are dropped and counted.
 * @return RD_OK, RD_ERR_ARG (key 0), RD_ERR_NOMEM
 */
int rd_table_push(rd_table *t, const uint64_t *keys, const float *grads, size_t n, int64_t now);

/** Evict rows and pending counts with last_seen < now - ttl (no-op when ttl == 0). The table's
 *  clock is max(previous, now). @return rows evicted (0 for a NULL t). Amortised: only the arena
 * chunks (and the pending map) whose oldest possible last_seen is below the limit are read. */
uint64_t rd_table_evict(rd_table *t, int64_t now);
/** Rows read by the eviction scans of t so far (for tests of the amortisation). */
uint64_t rd__table_evict_rows_read(const rd_table *t);

/** @return the row's embedding (followed by its slots), or NULL (no row, key 0 or a NULL t).
 *  Borrowed: valid until the next call that inserts or removes. */
float *rd_table_find(rd_table *t, uint64_t key);
/** Insert a new initialised row (last_seen = now, count 0).
 *  @return RD_OK, RD_ERR_EXISTS, RD_ERR_ARG (key 0), RD_ERR_NOMEM */
int rd_table_insert(rd_table *t, uint64_t key, int64_t now, float **row);
/** @return RD_OK or RD_ERR_NOTFOUND. */
int rd_table_remove(rd_table *t, uint64_t key);

/** Live rows (0 for a NULL t). Row i in [0, size) is at a stable position until the next
 *  insert/remove. */
size_t rd_table_size(const rd_table *t);
/** Row i: returns its floats (dim*(1+S)), borrowed as rd_table_find's, and fills key / last_seen /
 *  count (each may be NULL). NULL, the outputs untouched, for a NULL t or i >= rd_table_size
 *  (it asserted). */
const float *
rd_table_row_at(const rd_table *t, size_t i, uint64_t *key, int64_t *last_seen, uint64_t *count);
/** Insert or overwrite a row with exact contents (restore). row is (dim*(1+S)).
 *  @return RD_OK, RD_ERR_ARG (key 0), RD_ERR_NOMEM */
int rd_table_put(rd_table *t, uint64_t key, const float *row, int64_t last_seen, uint64_t count);

/** Keys waiting for admission (0 for a NULL t). */
size_t rd_table_pending_size(const rd_table *t);
/** Iterate the admission map: start with *cursor = 0; returns 1 and fills the outputs while
 *  entries remain, then 0. The order is the map's (not sorted). 0 when t, cursor or an output is
 *  NULL. */
int rd_table_pending_next(
    const rd_table *t, size_t *cursor, uint64_t *key, uint32_t *count, int64_t *last_seen);
/** Set a pending count exactly (restore). @return RD_OK, RD_ERR_ARG (key 0 or count 0),
 *  RD_ERR_NOMEM */
int rd_table_pending_put(rd_table *t, uint64_t key, uint32_t count, int64_t last_seen);

/** Fill st (nothing when NULL); a NULL t gives zeroes and now = INT64_MIN. */
void rd_table_get_stats(const rd_table *t, rd_table_stats *st);
/** Restore the cumulative counters and the clock (admitted, rejected, evicted, pulled, pushed,
 *  now) from a checkpoint; rows/pending/bytes are ignored (they are live values). No-op when t
 *  or st is NULL. */
void rd_table_set_counters(rd_table *t, const rd_table_stats *st);

#ifdef __cplusplus
}
#endif
#endif // RD_TABLE_H
