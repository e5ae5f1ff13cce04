// rd/tokens.h — the IAT instance-token store: LMDB envs sharded by user, fetch-by-timestamp
// without leakage, and its MPI path through the owning parameter-server rank.
//
// Defines:
//   rd_token_dtype, rd_token_dtype_parse/name       fp32 | fp16 storage of tokens
//   rd_token_f32_to_f16 / rd_token_f16_to_f32       IEEE binary16, round-to-nearest-even
//   rd_token_store                                  opaque store handle
//   rd_token_store_create / open / destroy          create a new store; open one (read-only or
//                                                   writer of a set of shards); close
//   rd_token_store_lock / unlock                    the one writer (launch or tool) of a store
//   rd_token_store_read_manifest / rd_token_store_info / rd_token_store_opts_from_config
//   rd_token_store_bind_dataset / read_dataset      the one dataset a store's tokens belong to
//   rd_token_shard_of_user / rd_token_ps_rank_of_shard   placement: user -> shard -> PS rank
//   rd_token_batch, rd_token_store_append           batched appends (one write txn per shard
//                                                   and append_batch records)
//   rd_token_fetch_out, rd_token_store_fetch / _fetch_batch   last L tokens strictly before t
//                                                   (_fetch_batch: or below the key (t, id))
//   rd_token_store_gc / _stats / _verify / _iterate tools: delete old entries, counts, checks,
//                                                   export
//   rd_token_gc_info, rd_token_store_gc_info        what the store records of its gcs
//   rd_token_store_map_huge, rd_token_map_stats     serve a built store from 2 MiB pages
//   rd_token_shard_fetch_batch / rd_token_fetch_reply_bytes / rd_token_fetch_reply_view
//   rd_token_append_pack / rd_token_append_packed_bytes / rd_token_shard_append_packed
//                                                   wire-friendly shard entry points (packed)
//   rd_token_service_create / destroy               PS side: handlers of RD_TOKEN_OP_* on an
//                                                   rd_server
//   rd_token_client_*                               worker side: batched fetch/append through the
//                                                   owning PS ranks (one message per rank,
//                                                   non-blocking); map_huge: RD_TOKEN_OP_MAP
//
// On disk: <dir>/MANIFEST (64 bytes: magic "RDTOKMAN", version, n_shards, dim, dtype, created,
// value size, store id, CRC-32C; written atomically, last, by create) and <dir>/shard-%04d/ one
// LMDB env per shard (data.mdb, lock.mdb) with two named databases: "meta" holds the header record
// (key "header": version, dim, dtype, shard id, n_shards, store id, CRC — checked against the
// manifest at open; and, once a gc deleted records, key "gc": rd_token_store_gc_info) and
// "tokens" holds the records:
//   key   (24 bytes) = big-endian user | big-endian (timestamp ^ 2^63) | big-endian instance id,
//         so memcmp order is (user, time, id) order and a cursor walks a user's history in time
//         order;
//   value (20 + 4 * n_side + dim * 4 or 2 bytes, little-endian) = label f32 | flags u32 |
//         item key u64 | side f32 (n_side) | token (dim fp32, or dim binary16) | CRC-32C over
//         key and the preceding value bytes.
// The side values are the instance's feedback known after the event (e.g. a rating, a dwell
// time: the dataset's feedback fields named by tokens.side), so that a reader's token branch can
// use them as side information next to the label. n_side is fixed per store (MANIFEST, shard
// headers). Version 1 stores (no side values, n_side 0) are still read and written.
//
// Placement: user u lives in shard rd_shard_of(u, n_shards) (rd/hash.h); shard s is owned — and
// written — only by PS rank s % P (n_shards may be a multiple of P, so that a store can be
// re-served by fewer or more ranks without rewriting it). One writer per shard env; readers
// (other jobs, tools) open the store read-only: LMDB read transactions are snapshots, so they
// never block the writer and never see a half-written batch.
//
// Removed or replaced stores (read-only handles; a serving process holds one for days): appends
// and `tokens gc` change each shard's data.mdb in place, and the next call reads them. rm -rf of
// the store, a `tokens compact` copy moved into its place and a store created anew there put new
// files at the paths, while the handle's envs would go on reading the unlinked ones. Every read
// call (fetch, stats, verify, iterate, gc_info, scan_raw) of a read-only handle first compares
// shard 0's data.mdb with the file it opened (one stat; the others only when it changed): a
// store removed is RD_ERR_IO naming that file ("... is gone since this handle opened the
// store"), and so is another store in its place (a MANIFEST of another store id or layout,
// both ids named; the handle keeps its own info); the same store in new files (same MANIFEST: a
// compacted copy, a restored backup) is reopened, shard by shard where the file changed, and
// the call goes on. A handle that failed so answers again once the store is back. A handle open
// for writing is never reopened: its appends and fetches fail instead (rd_token_store_append).
//
// Fetch semantics: fetch(user, t, L) returns the LAST min(L, count) records of `user` with
// timestamp STRICTLY LESS than t (never the instance at t itself, never the future), in time
// order, OLDEST FIRST, left-aligned: slots [0, n_found) hold them (slot n_found - 1 is the most
// recent), slots [n_found, L) are zero-filled with mask 0. Ties of timestamp are ordered by
// instance id.
//
// Threading: a store handle is used by one thread at a time (it reuses its read transactions
// and scratch buffers). Several handles, in one or several processes, may read the same store
// while its owner writes. The handles of one process share each shard's LMDB env (one per file
// and process): their reads hold its remap lock shared, and adopting a map that the writer grew
// takes it exclusive (rd_lmdbx_read_begin_shared), so threads each with their own handle (a
// serving process's) may open, fetch and close at once. A batched fetch that must adopt a
// shard's map while it holds reads of other shards ends those reads first rather than wait
// with them held (two such fetches would wait for each other). Until 2026-12-06 the adoption
// remapped the env under the other threads' reads: "damaged LMDB file (SIGSEGV ...)" in a
// server whose threads fetched while training appended (test_tokens
// test_threads_read_while_map_grows, one shard and four with batched fetches).
//
// Arguments: every function returning a status refuses a NULL handle, path, batch, buffer or
// required output with RD_ERR_ARG and "FUNCTION: invalid argument: ..." in eb (RD_ARG_CHECK,
// rd/error.h), having set an output handle to NULL (a lock's fd to -1) first; they asserted,
// which aborted a server or every rank of a launch over a caller's mistake. The functions
// without a status take NULL quietly: rd_token_store_info_get zeroes info, has_shard says 0,
// rd_token_fetch_fields 0, the client's counters 0, rd_token_pick 0 for a NULL pick.
#ifndef RD_TOKENS_H
#define RD_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "rd/error.h"
#include "rd/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_TOKEN_STORE_VERSION 2     // what create writes; versions 1 (n_side 0) and 2 are read
#define RD_TOKEN_MAX_SIDE      16    // most side values per record
#define RD_TOKEN_MAX_DIM       4096  // largest token dimension
#define RD_TOKEN_MAX_SHARDS    4096  // largest number of shards of a store
#define RD_TOKEN_MAX_L         65536 // largest fetch length
#define RD_TOKEN_PICK_MAX      4096  // most tokens a branch reads or searches (config.c checks)
#define RD_TOKEN_KEY_BYTES     24    // user | time | instance id
#define RD_TOKEN_VALUE_FIXED   20    // label + flags + item + crc (+ 4 * n_side)
#define RD_TOKEN_OP_FETCH      40    // rd_server user op: packed fetch request -> packed reply
#define RD_TOKEN_OP_APPEND     41    // rd_server user op: packed append -> empty reply
#define RD_TOKEN_OP_MAP        42    // rd_server user op: map request -> packed map stats

// ---------------------------------------------------------------------------------------------
// Token element types

typedef enum rd_token_dtype {
    RD_TOKEN_FP32 = 1, // 4 bytes per element, exact
    RD_TOKEN_FP16 = 2, // IEEE binary16, round-to-nearest-even; |rel err| <= 2^-11 in range
} rd_token_dtype;

/** "fp32" | "fp16" -> dtype. @return RD_OK or RD_ERR_ARG. */
int rd_token_dtype_parse(const char *name, int *dtype);
/** dtype -> "fp32" | "fp16" | "unknown". */
const char *rd_token_dtype_name(int dtype);

/** float -> binary16 bits, round to nearest even; overflow -> inf, NaN stays NaN (quiet). */
uint16_t rd_token_f32_to_f16(float f);
/** binary16 bits -> float (exact, subnormals included). */
float rd_token_f16_to_f32(uint16_t h);

// ---------------------------------------------------------------------------------------------
// Store handle

typedef struct rd_token_store rd_token_store;

/** Layout of a new store (rd_token_store_create). */
typedef struct rd_token_store_opts {
    int dim;               // token dimension d, 1..RD_TOKEN_MAX_DIM
    int dtype;             // rd_token_dtype
    int n_shards;          // shards, 1..RD_TOKEN_MAX_SHARDS (a multiple of the PS ranks P)
    uint64_t map_size;     // initial LMDB map size per shard, bytes; 0 = 1 MiB (grows)
    uint64_t max_map_size; // cap of the growth per shard; 0 = 1 TiB
    int append_batch;      // records per write transaction; 0 = 4096
    int no_sync;           // 1 = commits without fsync (benchmarks, scratch stores)
    int n_side;            // side values per record, 0..RD_TOKEN_MAX_SIDE
    int version;           // 0 = RD_TOKEN_STORE_VERSION; 1 = the layout before side values
                           // (n_side must be 0), for readers built before version 2
} rd_token_store_opts;

typedef enum rd_token_mode {
    RD_TOKEN_READ_ONLY = 0, // every shard, MDB_RDONLY: tools and reader jobs
    RD_TOKEN_WRITE = 1,     // the shards owned by ps_rank (all when n_ps == 0), writable
} rd_token_mode;

/** How to open an existing store (rd_token_store_open). Zero-initialise, then set. */
typedef struct rd_token_open_opts {
    int mode;              // rd_token_mode
    int ps_rank;           // WRITE: this PS rank (0..n_ps-1)
    int n_ps;              // WRITE: P; shard s is opened iff s % P == ps_rank; 0 = all shards
    int expect_dim;        // > 0: the store must have this dim, else RD_ERR_VERSION
    int expect_dtype;      // > 0: the store must have this dtype, else RD_ERR_VERSION
    uint64_t map_size;     // WRITE: raise the map to at least this size; 0 = the file's
    uint64_t max_map_size; // WRITE: cap of the growth; 0 = 1 TiB
    int append_batch;      // records per write transaction; 0 = 4096
    int no_sync;           // WRITE: commits without fsync
    int verify_crc;        // 1 = fetch checks every record's CRC (verify always does)
} rd_token_open_opts;

/** What the MANIFEST says. */
typedef struct rd_token_store_info {
    uint32_t version; // RD_TOKEN_STORE_VERSION
    uint32_t n_shards;
    uint32_t dim;
    uint32_t dtype;       // rd_token_dtype
    uint32_t value_bytes; // bytes of one record's value
    int64_t created;      // unix seconds
    uint64_t store_id;    // random id drawn at create; every shard header repeats it
    uint32_t n_side;      // side values per record (0 for version 1 stores)
} rd_token_store_info;

/**
 * Create a new store in `dir` (which must not exist, or be an empty folder but for the writer's
 * lock file, see rd_token_store_lock): every shard env with
 * its header record, then the MANIFEST, atomically and last (a store whose creation did not
 * finish has no MANIFEST and cannot be opened).
 * @param[out] out  the new store, open for writing on every shard; free with
 *                  rd_token_store_destroy (a PS rank usually closes it and re-opens its shards)
 * @return RD_OK, RD_ERR_ARG (bad opts: which field and range), RD_ERR_EXISTS (dir not empty),
 *         RD_ERR_IO / RD_ERR_FULL (mkdir, write), RD_ERR_LMDB, RD_ERR_NOMEM
 */
int rd_token_store_create(const char *dir,
                          const rd_token_store_opts *opts,
                          rd_token_store **out,
                          rd_errbuf *eb);

/**
 * Open an existing store. Checks the MANIFEST (magic, CRC, version, expectations) and each opened
 * shard's header record against it. Clears eb first: its message is this call's.
 * @return RD_OK, RD_ERR_NOTFOUND (no dir, no MANIFEST, a shard env missing), RD_ERR_CORRUPT
 *         (MANIFEST or shard header: bad size, magic or CRC), RD_ERR_VERSION (other store version,
 *         dim or dtype than expected, a shard header that disagrees with the MANIFEST: the message
 *         says what the store has and what was expected), RD_ERR_ARG (bad opts), RD_ERR_LMDB,
 *         RD_ERR_NOMEM
 */
int rd_token_store_open(const char *dir,
                        const rd_token_open_opts *opts,
                        rd_token_store **out,
                        rd_errbuf *eb);

/** Close every env and free the handle. Accepts NULL. A handle opened with no_sync is durable
 *  only up to its last rd_token_store_sync: call it first. */
void rd_token_store_destroy(rd_token_store *s);

/**
 * Make every append committed so far durable: fdatasync each shard this handle writes (a PS
 * rank's own shards). A no-op for a read-only handle. The training PS opens its shards with
 * no_sync (a commit of a few hundred tokens then costs no disk flush; LMDB keeps a process crash
 * harmless, only a host crash loses what was not synced, which every launch builds again) and
 * syncs them at every checkpoint (rd_server_on_save) and at the end of the run.
 * @return RD_OK, RD_ERR_IO naming the shard's file
 */
int rd_token_store_sync(rd_token_store *s, rd_errbuf *eb);

/**
 * Become the one writer of the store in `dir` (which must exist; it may still be empty): lock
 * `<dir>/writer.lock` (flock, no waiting) and record "host H pid P since T: what" in it. A writer
 * launch (its world rank 0, for all of its PS ranks), `tokens gc` and `tokens compact` take it
 * before they create, build into, delete from or copy the store; readers (stats, fetch, verify,
 * reader jobs) never take it and never block. The lock is released by rd_token_store_unlock or
 * when the process ends, however it ends (no stale lock on this host; on NFS the server frees a
 * dead host's lock when its lease expires). Once it holds the lock it removes what writers of
 * this host that no longer run (killed by SIGKILL or the OOM killer mid-write) left in the
 * folder: the temporary files of MANIFEST and DATASET and unlinked DATASET.new.<pid>.<ns>
 * records (rd_lmdbx_remove_stale_outfiles), each named in a warning.
 * @param[in] what   who is writing, for the message of a refused writer ("train iat.yaml")
 * @param[out] fd    the lock; release with rd_token_store_unlock
 * @return RD_OK; RD_ERR_STATE "token store D is in use by another writer (host H pid P since T:
 *         what; ...)"; RD_ERR_IO (no such folder, cannot create or lock the file)
 */
int rd_token_store_lock(const char *dir, const char *what, int *fd, rd_errbuf *eb);

/** Release a lock of rd_token_store_lock. -1 is ignored. */
void rd_token_store_unlock(int fd);

/** Read and check `<dir>/MANIFEST` only (no env is opened). Same codes as open. */
int rd_token_store_read_manifest(const char *dir, rd_token_store_info *info, rd_errbuf *eb);

/** The dataset whose events a store's tokens compress. A token's key holds the event's id in
 *  its dataset (the record index), so tokens of two datasets in one store would mix in every
 *  user's history: a store serves one dataset, recorded in `<dir>/DATASET` by the first run that
 *  builds into it. */
typedef struct rd_token_dataset {
    uint64_t n_events;    // rd_dataset_info n_events
    uint32_t records_crc; // rd_dataset_info records_crc
} rd_token_dataset;

/**
 * Bind the store to dataset `ds`: the first run writes `<dir>/DATASET` (atomically; of two runs
 * binding at once exactly one wins and the other compares), later runs must name the same
 * dataset.
 * @param[out] had_record  1 if the store was already bound (0: bound now; a store that existed
 *                         before this record did has none, and its earlier tokens cannot be
 *                         checked). May be NULL.
 * @return RD_OK; RD_ERR_CONFIG "token store D holds the tokens of another dataset (...)";
 *         RD_ERR_CORRUPT (a damaged record), RD_ERR_IO, RD_ERR_NOTFOUND (no store)
 */
int rd_token_store_bind_dataset(const char *dir,
                                const rd_token_dataset *ds,
                                int *had_record,
                                rd_errbuf *eb);

/** Read `<dir>/DATASET`. @return RD_OK, RD_ERR_NOTFOUND (the store is not bound yet),
 *  RD_ERR_CORRUPT, RD_ERR_IO. */
int rd_token_store_read_dataset(const char *dir, rd_token_dataset *ds, rd_errbuf *eb);

struct rd_tokens_config;

/**
 * Store options from the `tokens:` config section (dim, dtype, map_size, append_batch); the
 * number of shards is the caller's (usually cluster.ps_ranks or a multiple of it).
 * @return RD_OK or RD_ERR_CONFIG ("tokens.dtype: ..." for an unknown dtype)
 */
int rd_token_store_opts_from_config(const struct rd_tokens_config *tc,
                                    int n_shards,
                                    rd_token_store_opts *o,
                                    rd_errbuf *eb);

/** The layout of an open store. */
void rd_token_store_info_get(const rd_token_store *s, rd_token_store_info *info);

/** 1 if this handle has shard `shard` open (and writable in WRITE mode), else 0. */
int rd_token_store_has_shard(const rd_token_store *s, int shard);

/** Shard of a user. */
static inline int rd_token_shard_of_user(uint64_t user, int n_shards) {
    return rd_shard_of(user, n_shards);
}

/** PS rank (0..n_ps-1) that owns and serves shard `shard`. */
static inline int rd_token_ps_rank_of_shard(int shard, int n_ps) {
    return shard % n_ps;
}

// ---------------------------------------------------------------------------------------------
// Append

/** n records to append (borrowed for the call). */
typedef struct rd_token_batch {
    size_t n;
    const uint64_t *users; // (n) user keys
    const int64_t *ts;     // (n) timestamps (any int64; seconds in this project)
    const uint64_t *ids;   // (n) instance ids (unique per user and timestamp)
    const float *tokens;   // (n, dim), finite (|x| < 65520 in an fp16 store)
    const float *labels;   // (n) finite, or NULL (stored as 0)
    const uint64_t *items; // (n) item keys, or NULL (0)
    const uint32_t *flags; // (n) free flags, or NULL (0)
    const float *side;     // (n, n_side) finite side values, or NULL (0); n_side of the store
} rd_token_batch;

/**
 * Append a batch. Every record is validated first (owned shard, finite values); then each
 * shard's records are sorted by key and written in write transactions of append_batch records
 * (MDB_APPEND while keys arrive in increasing order, ordinary puts otherwise). A record whose key
 * (user, ts, id) already exists replaces it (re-appending a batch is idempotent). When the map
 * is full it grows by doubling and the transaction is retried, so no write is lost. After each
 * shard's transactions its data file is checked to be the one this handle opened (one stat): a
 * store folder removed or replaced meanwhile is RD_ERR_IO naming the store and the file (an open
 * env goes on writing into unlinked files, and the tokens would be lost unseen). Fetches of a
 * handle open for writing check the same before reading each shard.
 * @return RD_OK, RD_ERR_ARG (record i: shard not owned by this handle, read-only store,
 *         non-finite value, token element fp16 rounds to infinity (|x| >= 65520) in an fp16
 *         store; nothing written), RD_ERR_FULL (map at max_map_size or disk full; the
 *         transactions committed before the failing one stay), RD_ERR_IO (the shard's data file
 *         removed or replaced since the store was opened), RD_ERR_LMDB, RD_ERR_NOMEM
 */
int rd_token_store_append(rd_token_store *s, const rd_token_batch *b, rd_errbuf *eb);

// ---------------------------------------------------------------------------------------------
// Fetch

/** Outputs of a fetch of R requests of length L (caller-owned arrays). */
typedef struct rd_token_fetch_out {
    float *tokens;     // (R, L, dim), required; zero-padded
    float *labels;     // (R, L) or NULL
    uint64_t *items;   // (R, L) or NULL
    int64_t *ts;       // (R, L) or NULL
    uint64_t *ids;     // (R, L) or NULL
    uint8_t *mask;     // (R, L) or NULL; 1 = slot holds a record
    uint32_t *n_found; // (R), required; records found per request (<= L)
    float *side;       // (R, L, n_side) or NULL; n_side of the store (ignored when it is 0)
} rd_token_fetch_out;

/**
 * The last min(L, count) records of `user` strictly before `before_t` (see the semantics above),
 * from one read snapshot.
 * @param[in] L  1..RD_TOKEN_MAX_L
 * @return RD_OK, RD_ERR_ARG (L out of range, the user's shard not open in this handle),
 *         RD_ERR_CORRUPT (a record of the wrong size or CRC: shard, user and time named),
 *         RD_ERR_IO (a handle open for writing: the shard's data file removed or replaced since
 *         it was opened, rd_token_store_append; a read-only handle: the store removed, or
 *         replaced by another store, since it was opened — "Removed or replaced stores" above),
 *         RD_ERR_LMDB. On error the outputs are unspecified.
 */
int rd_token_store_fetch(rd_token_store *s,
                         uint64_t user,
                         int64_t before_t,
                         size_t L,
                         const rd_token_fetch_out *out,
                         rd_errbuf *eb);

/** Fetch n requests (users[i], before_t[i]) into row i of `out`, with one read transaction per
 *  shard involved (renewed, not recreated). Same codes as rd_token_store_fetch.
 *  before_id: NULL for the semantics above (strictly before before_t), or (n) instance ids: then
 *  request i also returns the records at before_t[i] whose instance id is below before_id[i] —
 *  the key order, which is the dataset's event order (a log's events that share one timestamp
 *  are ordered by id; the hand-crafted history reads them as earlier). Never the record with that
 *  id itself, nothing after it. */
int rd_token_store_fetch_batch(rd_token_store *s,
                               size_t n,
                               const uint64_t *users,
                               const int64_t *before_t,
                               const uint64_t *before_id,
                               size_t L,
                               const rd_token_fetch_out *out,
                               rd_errbuf *eb);

// ---------------------------------------------------------------------------------------------
// Tools

/**
 * Delete every record with timestamp < before_t from the writable shards of this handle, in
 * write transactions of at most append_batch deletions (a long gc never holds one huge txn),
 * each also updating the shard's gc record (rd_token_store_gc_info).
 * The open shards are verified first (rd_token_store_verify): a damaged store is refused with
 * verify's error ("the store does not verify (nothing deleted): ...") and left unchanged.
 * @param[out] n_deleted  records deleted (may be NULL)
 * @return RD_OK, RD_ERR_ARG (read-only handle), RD_ERR_CORRUPT (does not verify), RD_ERR_FULL,
 *         RD_ERR_LMDB
 */
int rd_token_store_gc(rd_token_store *s, int64_t before_t, uint64_t *n_deleted, rd_errbuf *eb);

/** What the store records of the gcs that deleted records from it. Each shard keeps a record
 *  (meta key "gc", written in the same write transaction as the deletions: a deletion is never
 *  committed without it); a gc that deletes nothing leaves none. A store made before the record
 *  existed (2026-12-06), or never collected, has none: n_gc 0. Builds before it ignore the key
 *  and copy it along (compact). A model trained before last_at may have read records that are
 *  gone (`recdistill score` warns). */
typedef struct rd_token_gc_info {
    int64_t last_at;  // unix seconds (wall clock) of the latest gc that deleted records; 0 = none
    int64_t before_t; // the largest cutoff of those gcs: every record before it was deleted
    uint64_t deleted; // records they deleted, all shards
    uint32_t n_gc;    // how many gcs deleted records (the most of any one shard)
} rd_token_gc_info;

/**
 * The gc records of the shards open in this handle, merged (read snapshots; read-only handles
 * too).
 * @return RD_OK (n_gc 0: nothing recorded), RD_ERR_CORRUPT (a damaged record: shard named),
 *         RD_ERR_LMDB, RD_ERR_ARG (NULL s or info), RD_ERR_IO (a read-only handle's store
 *         removed or replaced by another: "Removed or replaced stores" above)
 */
int rd_token_store_gc_info(rd_token_store *s, rd_token_gc_info *info, rd_errbuf *eb);

typedef struct rd_token_stats {
    uint64_t entries;       // records
    uint64_t users;         // distinct users
    uint64_t payload_bytes; // entries * (key + value bytes)
    uint64_t file_bytes;    // pages in use * page size (data.mdb high-water mark)
    uint64_t map_bytes;     // current map size(s)
    int64_t t_min, t_max;   // time range (INT64_MAX / INT64_MIN when empty)
} rd_token_stats;

/**
 * Statistics over the shards open in this handle, from read snapshots.
 * @param[out] total      sum (t_min/t_max: min/max)
 * @param[out] per_shard  (n_shards) or NULL; shards not open are zeroed (t_min = INT64_MAX,
 *                        t_max = INT64_MIN)
 * @return RD_OK, RD_ERR_LMDB, RD_ERR_CORRUPT, RD_ERR_IO (as rd_token_store_gc_info)
 */
int rd_token_store_stats(rd_token_store *s,
                         rd_token_stats *total,
                         rd_token_stats *per_shard,
                         rd_errbuf *eb);

/**
 * Check every open shard: header record against the MANIFEST, every key 24 bytes and strictly
 * increasing, the user in the right shard, every value of the right size with a good CRC and
 * finite numbers.
 * @param[out] n_checked  records checked (may be NULL)
 * @return RD_OK, or RD_ERR_CORRUPT / RD_ERR_VERSION describing the first problem (shard, user,
 *         time, what), RD_ERR_LMDB, RD_ERR_IO (as rd_token_store_gc_info)
 */
int rd_token_store_verify(rd_token_store *s, uint64_t *n_checked, rd_errbuf *eb);

/** One record as seen by rd_token_store_iterate. Pointers are valid during the callback only. */
typedef struct rd_token_record {
    int shard;
    uint64_t user;
    int64_t ts;
    uint64_t id;
    float label;
    uint64_t item;
    uint32_t flags;
    const float *token; // (dim), converted to fp32
    const float *side;  // (n_side of the store)
} rd_token_record;

/** Visit callback: return 0 to go on, non-zero to stop (rd_token_store_iterate returns it).
 *  It must not modify the store through the same handle (a read transaction is live). */
typedef int (*rd_token_visit_fn)(const rd_token_record *rec, void *user);

/**
 * Visit every record of `shard` (or of every open shard when shard < 0), in key order, from one
 * read snapshot per shard. For export tools.
 * @return RD_OK, the callback's non-zero value, RD_ERR_ARG (shard not open), RD_ERR_CORRUPT,
 *         RD_ERR_LMDB, RD_ERR_IO (as rd_token_store_gc_info)
 */
int rd_token_store_iterate(
    rd_token_store *s, int shard, rd_token_visit_fn fn, void *user, rd_errbuf *eb);

/**
 * Raw cursor scan of every open shard (or of `shard` alone when >= 0) through this handle's own
 * environments: reads every key and value byte in key order, decodes and checks nothing. It is the
 * reference a fetch is measured against (bench/bench_tokens.c), and it maps every page of the store
 * into this process, so later fetches through the same handle run at their steady-state speed
 * instead of paying the first-touch cost.
 * @param[out] bytes  key + value bytes read (may be NULL)
 * @param[out] digest an XOR of the bytes read, so the reads cannot be optimised away (may be
 *                    NULL)
 * @return RD_OK, RD_ERR_ARG (shard not open), RD_ERR_LMDB, RD_ERR_IO (as
 *         rd_token_store_gc_info)
 */
int rd_token_store_scan_raw(
    rd_token_store *s, int shard, uint64_t *bytes, uint64_t *digest, rd_errbuf *eb);

// ---------------------------------------------------------------------------------------------
// Serving a store from 2 MiB pages (rd_token_store_map_huge)
//
// LMDB reads a shard through a file mapping. A store written in time order scatters each user's
// pages over the file, and a fetch then touches thousands of 4 KiB pages in random places; on
// some machines (VMs above all) each first touch of a page costs a page walk that dominates the
// fetch (docs/iat.md, "Token-fetch benchmark"). Linux maps a file's page cache in 2 MiB pages
// when the mapping asks for them (MADV_HUGEPAGE) and the cache holds 2 MiB folios: tmpfs mounted
// huge=always|within_size, and the file systems with large folios (ext4 and xfs on recent
// kernels) when the pages are read in through such a mapping. Pages this process just wrote
// with pwrite sit in the cache as small folios, so a freshly built store needs one re-read:
// flush it (mdb_env_sync), drop this process's page-table entries and the file's clean cached
// pages (MADV_DONTNEED, POSIX_FADV_DONTNEED: nothing is lost; dirty pages and pages other
// processes map stay), and read it back through the advised mapping (MADV_POPULATE_READ).

/** tokens.huge_pages: what rd_token_store_map_huge does. */
enum {
    RD_TOKEN_HUGE_OFF = 0,  // nothing
    RD_TOKEN_HUGE_AUTO = 1, // advise every shard's mapping; re-read what fits (see below)
};

/** Why rd_token_store_map_huge did not re-read the shards (the first reason that held). */
typedef enum rd_token_huge_note {
    RD_TOKEN_HUGE_REREAD = 0,     // re-read (or nothing to re-read: no shard open)
    RD_TOKEN_HUGE_NOTE_OFF,       // mode off
    RD_TOKEN_HUGE_NOTE_THP_OFF,   // transparent huge pages are "never" (or absent) on this node
    RD_TOKEN_HUGE_NOTE_TMPFS,     // the store is on tmpfs: its pages are what the mount makes them
    RD_TOKEN_HUGE_NOTE_TOO_BIG,   // the shards exceed half of the node's available memory
    RD_TOKEN_HUGE_NOTE_NO_MAP,    // the shard's mapping was not found in /proc/self/maps
    RD_TOKEN_HUGE_NOTE_NO_KERNEL, // the kernel refused the advice (no MADV_POPULATE_READ)
    RD_TOKEN_HUGE_NOTE_COUNT
} rd_token_huge_note;

/** What rd_token_store_map_huge did, summed over the shards (and over PS ranks by the client). */
typedef struct rd_token_map_stats {
    uint32_t shards;     // shards looked at
    uint32_t reread;     // of them, re-read through the advised mapping
    uint32_t note;       // rd_token_huge_note: why not (RD_TOKEN_HUGE_REREAD when all were)
    uint32_t pad_;       // (zero)
    uint64_t used_bytes; // bytes of the shards' data.mdb in use (up to the last page)
    int64_t resident_kb; // resident kB of the shards' mappings afterwards (-1: unknown)
    int64_t huge_kb;     // of them, mapped as 2 MiB pages (-1: unknown)
    double seconds;      // time spent, flush and re-read included
} rd_token_map_stats;

/** A short text for a note ("re-read", "mode off", "transparent huge pages off", ...). */
const char *rd_token_huge_note_text(uint32_t note);

/**
 * Prepare the shards this handle opens for serving fetches from 2 MiB pages (header text above):
 * with RD_TOKEN_HUGE_AUTO, advise every shard's mapping MADV_HUGEPAGE and, when transparent huge
 * pages are enabled on the node, the store is not on tmpfs and the shards' used bytes fit in
 * half of MemAvailable, flush and re-read them. Data and results are unchanged; only how the
 * pages are mapped (and the time of the call) differs. Call it when the store stops growing (the
 * PS does after the IAT build: RD_TOKEN_OP_MAP); pages appended later are small again, and a
 * map that grows (rd_lmdbx_grow) loses the advice until the next call. Linux only: elsewhere it
 * does nothing and says RD_TOKEN_HUGE_NOTE_NO_KERNEL.
 * @param[in]  mode  RD_TOKEN_HUGE_OFF | RD_TOKEN_HUGE_AUTO
 * @param[out] st    what was done (always filled)
 * @return RD_OK (also when the node does not allow it: see st->note), RD_ERR_ARG (bad mode),
 *         RD_ERR_IO (the flush failed; or the file shrank under the mapping: a read-back fault),
 *         RD_ERR_LMDB
 */
int rd_token_store_map_huge(rd_token_store *s, int mode, rd_token_map_stats *st, rd_errbuf *eb);

// ---------------------------------------------------------------------------------------------
// Wire-friendly shard entry points (what a PS rank runs for RD_TOKEN_OP_FETCH / _APPEND)
//
// Packed fetch reply for n requests of length L and dimension d with optional `fields`
// (RD_TOKEN_FIELD_* bits; little-endian; every array starts 8-byte aligned relative to the
// buffer when the buffer is):
//   u32 magic "RDTF" | u32 n | u32 L | u32 d | u32 fields | u32 S     24 bytes
//   [items u64 (n, L)] [ts i64 (n, L)] [ids u64 (n, L)] tokens f32 (n, L, d) [labels f32 (n, L)]
//   [side f32 (n, L, S)] n_found u32 (n) | mask u8 (n, L) | zero padding to a multiple of 8
// where S = n_side of the store (0 when the side bit is clear).
// Bracketed arrays are present only when their field bit is set. Tokens always travel as fp32
// (fp16 stores convert on the server). Shipping only what the caller asked for matters: the
// reply is copied twice on its way (server send buffer, client staging).
//
// Packed append for n records of dimension d:
//   u32 magic "RDTA" | u32 n | u32 d | u32 S (side values per record)   16 bytes
//   users u64 (n) | ts i64 (n) | ids u64 (n) | items u64 (n) | tokens f32 (n, d) | labels f32 (n)
//   | flags u32 (n) | side f32 (n, S) | zero padding to a multiple of 8

#define RD_TOKEN_FIELD_LABELS 0x1u  // labels f32
#define RD_TOKEN_FIELD_ITEMS  0x2u  // item keys u64
#define RD_TOKEN_FIELD_TS     0x4u  // timestamps i64
#define RD_TOKEN_FIELD_IDS    0x8u  // instance ids u64
#define RD_TOKEN_FIELD_SIDE   0x10u // side values f32 (n_side per slot)
#define RD_TOKEN_FIELDS_ALL   0x1fu

/** The RD_TOKEN_FIELD_* bits of the optional arrays that `out` asks for (non-NULL). */
unsigned rd_token_fetch_fields(const rd_token_fetch_out *out);

/** The slots of one request's fetch that the branch reads, most recent first (models[].tokens.
 * search): n_found records as fetched (oldest first), `items` their item keys. With items NULL,
 * the min(L, n_found) latest; otherwise the min(L, matches) latest whose item key equals `key`
 * (SIM's hard search: the same item shown to the user before). pick holds L slots. Pure: no
 * state, safe from any thread.
 * @return the number of slots written; 0 for a NULL pick (nothing written) */
size_t rd_token_pick(const uint64_t *items, size_t n_found, uint64_t key, size_t L, uint32_t *pick);

/** Width of rd_token_summary's output: 1 + n_windows * (1 + n_side), or 0 without windows. */
size_t rd_token_summary_width(int n_windows, size_t n_side);

/** Summary statistics of one request's fetched tokens, as dense model inputs
 * (models[].tokens.stats, the token-store twin of seq.stats): out[0] = log1p(n); then for each
 * window k (ascending, each >= 1) the mean label of the min(windows[k], n) most recent tokens and
 * the mean of each of their n_side side values; 0 for an empty window. Pure: no state, safe from
 * any thread.
 * @param[in]  windows  (n_windows) token counts, each >= 1, ascending and distinct; n_windows <= 0
 *                      writes nothing (rd_token_summary_width 0)
 * @param[in]  labels   (n) 0/1, most recent first, as the trainer lays a fetch out; NULL when n is
 * 0
 * @param[in]  side     (n, n_side), most recent first; NULL when n_side is 0
 * @param[in]  n_side   0 .. RD_TOKEN_MAX_SIDE
 * @param[out] out      (rd_token_summary_width(n_windows, n_side))
 * @return RD_OK, or RD_ERR_ARG ("rd_token_summary: invalid argument: ..." in eb; nothing written)
 *         for a NULL array that is needed, n_side out of range or windows not >= 1, ascending and
 *         distinct (it asserted, which aborted a server or every rank of a launch) */
int rd_token_summary(const int *windows,
                     int n_windows,
                     size_t n,
                     const uint8_t *labels,
                     const float *side,
                     size_t n_side,
                     float *out,
                     rd_errbuf *eb);

/** Bytes of a packed fetch reply (n_side: the store's; it counts only with RD_TOKEN_FIELD_SIDE);
 *  0 if n, L, dim, n_side or fields is out of range or the size overflows. */
size_t rd_token_fetch_reply_bytes(size_t n, size_t L, size_t dim, size_t n_side, unsigned fields);

/**
 * Fetch n requests from this handle's shards into a packed reply.
 * @param[in]  fields  RD_TOKEN_FIELD_* bits of the optional arrays to include
 * @param[out] buf     cap >= rd_token_fetch_reply_bytes(n, L, dim, n_side, fields) bytes,
 *                     8-aligned (dim and n_side of the store)
 * @return RD_OK, RD_ERR_ARG (cap too small, L, n or fields out of range), and fetch's codes
 */
int rd_token_shard_fetch_batch(rd_token_store *s,
                               size_t n,
                               const uint64_t *users,
                               const int64_t *before_t,
                               const uint64_t *before_id,
                               size_t L,
                               unsigned fields,
                               void *buf,
                               size_t cap,
                               rd_errbuf *eb);

/**
 * Check a packed fetch reply of `len` bytes against the expected (n, L, dim, n_side, fields) and
 * point
 * `view`'s arrays into it (no copy; arrays of absent fields are NULL). Never trusts a size from
 * the buffer: everything is checked against len, and n_found[i] <= L, mask in {0, 1} with
 * mask row i = n_found[i] ones then zeros.
 * @note view points into buf (lives as long as buf); buf must be 8-byte aligned.
 * @return RD_OK or RD_ERR_PROTO (what is wrong)
 */
int rd_token_fetch_reply_view(const void *buf,
                              size_t len,
                              size_t n,
                              size_t L,
                              size_t dim,
                              size_t n_side,
                              unsigned fields,
                              rd_token_fetch_out *view,
                              rd_errbuf *eb);

/** Bytes of a packed append of n records of dimension dim with n_side side values each; 0 on
 *  overflow / out of range. */
size_t rd_token_append_packed_bytes(size_t n, size_t dim, size_t n_side);

/**
 * Pack a batch for the wire (b->side, when not NULL, holds n_side values per record).
 * @param[out] buf  cap >= rd_token_append_packed_bytes(b->n, dim, n_side) bytes
 * @return RD_OK or RD_ERR_ARG (cap too small, n, dim or n_side out of range)
 */
int rd_token_append_pack(
    const rd_token_batch *b, size_t dim, size_t n_side, void *buf, size_t cap, rd_errbuf *eb);

/**
 * Validate a packed append of `len` bytes (magic, n, dim and n_side == the store's, exact size;
 * never trusting a size) and append it (rd_token_store_append semantics).
 * @param[in] buf  8-byte aligned
 * @return RD_OK, RD_ERR_PROTO (malformed payload, nothing written), and append's codes
 */
int rd_token_shard_append_packed(rd_token_store *s, const void *buf, size_t len, rd_errbuf *eb);

// ---------------------------------------------------------------------------------------------
// MPI path (needs rd/server.h on PS ranks and rd/comm.h on workers)

struct rd_server;
struct rd_comm;
struct rd_traffic;

typedef struct rd_token_service rd_token_service;

/**
 * Register the handlers of RD_TOKEN_OP_FETCH and RD_TOKEN_OP_APPEND on `srv`, serving `store`
 * (a handle opened in WRITE mode with this PS rank's shards; READ_ONLY serves fetches only).
 * Requests for users of other shards get an RD_ERR_ARG reply naming the owning rank.
 * @note srv and store are borrowed: destroy the service after rd_server_destroy, and the store
 *       after the service. If only the second op could not be registered, *out is still set
 *       (the first handler refers to it) and must be destroyed the same way.
 * @return RD_OK, RD_ERR_EXISTS (an op is already registered), RD_ERR_NOMEM
 */
int rd_token_service_create(struct rd_server *srv,
                            rd_token_store *store,
                            rd_token_service **out,
                            rd_errbuf *eb);
/** Free the service (its reply buffer). Accepts NULL. */
void rd_token_service_destroy(rd_token_service *svc);

typedef struct rd_token_client rd_token_client;

/** Client settings (usually from cfg.tokens, the store's MANIFEST and cfg.cluster / cfg.ps). */
typedef struct rd_token_client_opts {
    int n_shards;             // shards of the store (MANIFEST)
    int dim;                  // token dimension (MANIFEST)
    int poll_us_max;          // max backoff of waits, microseconds; 0 = 200
    uint64_t max_msg_bytes;   // largest request payload the PS accepts (ps.max_msg_bytes);
                              // 0 = 64 MiB. Larger appends are split.
    int n_side;               // side values per record (MANIFEST); fetches asking for them get
                              // (R, L, n_side)
    uint64_t max_reply_bytes; // largest fetch reply message from a PS rank; 0 (and anything
                              // above) = 1 GiB, what a PS rank answers at most. A fetch whose
                              // requests to one rank need more goes out in several messages;
                              // one request that needs more (L too long) is refused
} rd_token_client_opts;

#define RD_TOKEN_CLIENT_MAX_INFLIGHT 8 // outstanding fetches per client
#define RD_TOKEN_CLIENT_FETCH_WINDOW 2 // messages of one fetch to one PS rank in flight at once

/**
 * @param[in] comm  the layout (a worker or PS rank); borrowed, must outlive the client
 * @return RD_OK, RD_ERR_ARG (bad opts), RD_ERR_NOMEM
 * @note Replies come back on the PS reply tags RD_TAG_PS_REPLY_BASE + slot with the slots
 *       RD_TAG_PS_REPLY_SLOTS - 1 - k, k < RD_TOKEN_CLIENT_MAX_INFLIGHT (the top of the range,
 *       which rd_kv only reaches with more than 4088 sub-requests in flight).
 */
int rd_token_client_create(const struct rd_comm *comm,
                           const rd_token_client_opts *opts,
                           rd_token_client **out,
                           rd_errbuf *eb);
/** Complete outstanding requests (fetch results are discarded: nothing is written to their
 *  `out` arrays any more) and free. Accepts NULL. */
void rd_token_client_destroy(rd_token_client *c);

/**
 * Start fetching n requests: they are grouped by owning PS rank and sent as one message per
 * rank (MPI_Isend, no blocking), or as several consecutive messages to a rank whose requests
 * need a reply over max_reply_bytes or a request over max_msg_bytes. Of those, the first
 * RD_TOKEN_CLIENT_FETCH_WINDOW per rank are sent here and the others by rd_token_client_wait,
 * each when an earlier reply of its rank is in (a PS rank holds a reply until it is received).
 * Each message is one consistent read of each of its shards. The rows land in caller order
 * whatever the split. users/before_t/before_id are copied (reusable at once); before_id is NULL
 * or per request, as in rd_token_store_fetch_batch; `out` must stay valid and untouched until
 * rd_token_client_wait(handle) returns. The client stages every reply (as many bytes as the
 * result arrays take, kept for the next fetch of that slot).
 * @param[out] handle  to pass to rd_token_client_wait
 * @return RD_OK, RD_ERR_ARG (L or n out of range), RD_ERR_FULL (RD_TOKEN_CLIENT_MAX_INFLIGHT
 *         fetches outstanding), RD_ERR_RANGE (the reply to one request of length L exceeds
 *         max_reply_bytes: the text says "L is too long"; or one request exceeds max_msg_bytes),
 *         RD_ERR_NOMEM
 */
int rd_token_client_fetch_start(rd_token_client *c,
                                size_t n,
                                const uint64_t *users,
                                const int64_t *before_t,
                                const uint64_t *before_id,
                                size_t L,
                                const rd_token_fetch_out *out,
                                int *handle,
                                rd_errbuf *eb);
/** Complete a fetch (polling with backoff; never spins a core). @return RD_OK, the first
 *  server-side error of its messages (text of the PS in eb), RD_ERR_PROTO (malformed reply),
 *  RD_ERR_ARG (unknown handle). */
int rd_token_client_wait(rd_token_client *c, int handle, rd_errbuf *eb);
/** Start + wait, in pieces of requests whose reply fits max_reply_bytes even when all of a
 *  piece's users live on one PS rank (the IAT builder fetches at a job's global batch). The
 *  pieces run one after the other, so the client stages one piece at a time (fetch_start alone
 *  would stage the whole reply); each is one consistent read per shard. Errors as
 *  rd_token_client_fetch_start and rd_token_client_wait. */
int rd_token_client_fetch(rd_token_client *c,
                          size_t n,
                          const uint64_t *users,
                          const int64_t *before_t,
                          const uint64_t *before_id,
                          size_t L,
                          const rd_token_fetch_out *out,
                          rd_errbuf *eb);
/** Append a batch through the owning PS ranks (one message per rank, split at max_msg_bytes);
 *  blocking. @return RD_OK or the first error (a rank's error text in eb). */
int rd_token_client_append(rd_token_client *c, const rd_token_batch *b, rd_errbuf *eb);
/**
 * Ask every PS rank to prepare its shards for serving (rd_token_store_map_huge with `mode`) and
 * wait for all of them; blocking. Send it when the store stops growing (the IAT build's end).
 * @param[out] sum  the ranks' stats summed (shards, reread, used_bytes, resident/huge kB: -1
 *                  when no rank knew), the first rank's note that is not "re-read", and the
 *                  longest time
 * @return RD_OK or the first error (a rank's error text in eb); RD_ERR_ARG for a bad mode
 */
int rd_token_client_map_huge(rd_token_client *c, int mode, rd_token_map_stats *sum, rd_errbuf *eb);

/** Bytes moved by this client so far (payloads incl. 64-byte headers). */
void rd_token_client_counters(const rd_token_client *c,
                              uint64_t *bytes_sent,
                              uint64_t *bytes_recv,
                              uint64_t *messages);
/** Add this client's traffic into *t: requests as sent, replies as received, on
 *  RD_CHAN_TOKEN_FETCH or RD_CHAN_TOKEN_APPEND (rd/traffic.h). */
void rd_token_client_add_traffic(const rd_token_client *c, struct rd_traffic *t);

#ifdef __cplusplus
}
#endif
#endif // RD_TOKENS_H
