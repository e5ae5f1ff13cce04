// rd/dataset.h — the binary, time-sorted dataset folder: format, reader (mmap), and prepare.
//
// Defines:
//   rd_record              fixed prefix of every record (48 bytes), then keys and numerics
//   rd_dataset_field       where a schema field lives in a record (slots or numeric index)
//   rd_dataset_info        counts, time range, layout, sampling rates of an opened dataset
//   rd_range               a half-open range [begin, end) of record indices (= sample ids)
//   rd_dataset_prepare()   build data.dir from the config's data source (CSV/MovieLens/synthetic)
//   rd_dataset_check_config()  refuse a prepared folder built from another data config
//   rd_dataset_missing_mean()  a field's `missing: mean` fill, as meta.yaml records it
//   rd_dataset_each_input()    the input files (log, parts, side tables) meta.yaml records
//   rd_schema_preset()     fill an rd_schema_config for movielens100k / movielens1m
//   rd_parse_iso8601()     an ISO 8601 time as the log's iso8601 time_format reads it
//   rd_dataset_open/close  mmap a dataset folder; verify magic, version, sizes and CRC-32C
//   rd_dataset_record/keys/nums   record i and its key slots / numeric features
//   rd_dataset_batch/window/holdout/all/time_range   split ranges and time windows
//   rd_dataset_window_of       the stream window of a record
//   rd_dataset_shard()     contiguous share of a range for one of n ranks
//   rd_dataset_iter_*      iterate a range in time order (contiguous or strided over ranks) or in
//                          user order (users owned by a rank, time-sorted within each user),
//                          optionally through a job's own sampling (rd_dataset_iter_sample)
//   rd_sample_keep/salt    that sampling: a pure keep rule on (run seed, record id)
//   rd_field_transform()   a raw numeric value as the builder stores it (log1p, standardize)
//   rd_dataset_user_*      per-user index: a user's records in time order, a record's position
//   rd_dataset_history()   the last L records of the same user strictly before record i, O(L)
//   rd_dataset_history_at/keys  where a history lies in the per-user lists, and an array of
//                          each list entry's table key and label bit (histories read contiguously)
//   rd_dataset_feature_src/key  where a model feature's keys are in a record, and the keys
//   rd_dataset_time_fields()    the derived "hour" and "weekday" of a timestamp
//   rd_dataset_ids_*       the raw user and item ids of a CSV or MovieLens folder (ids.csv), by key
//   rd_dataset_lines_*     the log file and line of each record of a CSV or MovieLens folder
//                          (lines.csv), read in record order
//
// Folder layout (written by rd_dataset_prepare into "<dir>.tmp-<pid>.<host>", fsynced, then
// renamed):
//   events.bin   [header | records | user offsets | user record lists | record positions]
//   meta.yaml    human-readable: source, schema, layout, vocabulary sizes, time range, label rate,
//                negative-sampling counts, split boundaries (record ranges + timestamps)
//   ids.csv      CSV and MovieLens sources: the raw id of every user and item of the log, as the
//                header "kind,id" and one row "user,<id>" or "item,<id>" each (RFC 4180 quoting),
//                users first, in order of first appearance in the log. The records keep only
//                rd_feature_key of an id, a hash: this file takes a key back to the log's text
//                (rd_dataset_ids_load), so that scores can be joined to the log. An id is as
//                hashed: UTF-8 (a Latin-1 log's ids converted). Written since 2026-12-06; the
//                synthetic source has no raw ids and writes none.
//   lines.csv    CSV and MovieLens sources: the header "file,line", then one row per record, in
//                record order: the log file the record was read from (its path under data.input,
//                or as data.schema.path names it when that is absolute; RFC 4180 quoting) and
//                its 1-based line there, the header being line 1 (the line a row starts on: the
//                lines prepare's messages name). It joins a record back to the very row of the
//                log, which (user, item, time) cannot do when a log repeats them in one second
//                (rd_dataset_lines_open). Written since 2026-12-07; the synthetic source writes
//                none.
//
// events.bin, little-endian, every section 8-byte aligned:
//   header     magic "RDDSET\r\n", version, sizes, counts, field table, split boundaries, CRCs;
//              version 2 adds each field's transform (flags in the field entry, then a table of
//              n_fields x {f64 mean, f64 std} after the split boundaries)
//   records    n x record_size bytes: rd_record | uint64 keys[n_slots] | float num[n_numeric] |
//              zero padding to a multiple of 8. Records are in time order: sorted by (time in
//              milliseconds as read, so "100.250" after "100" though both store ts 100; raw user
//              id; raw item id; input line, counted over all parts of a pattern), CSV and
//              MovieLens ids in natural order (decimal integers of at most 19 digits and no
//              leading zero by value, before any other id, which sort bytewise: 7 < 10 < "007"
//              < "a"), stable and deterministic; record i has id i.
//   user_off   (n_users + 1) x uint64: user u's records are user_rec[user_off[u], user_off[u+1])
//   user_rec   n x uint64 record indices, grouped by user, ascending (= time order) per user
//   user_pos   n x uint32: position of record i within its user's list (padded to 8 bytes)
// CRC-32C covers the records and (separately) the three index sections; the header carries its
// own CRC. Users and items are dense indices in order of first appearance in time order.
//
// Keys: user_key = rd_feature_key("user", id bytes), item_key = rd_feature_key("item", id bytes)
// for CSV/MovieLens (rd_feature_key_u64 for the synthetic source), and each slot of a field holds
// rd_feature_key(field name, value bytes) (0 = empty). A model derives the key its table sees with
// rd_table_key(table id, key).
//
// Splits are quantiles of the event count in time order: batch [0, b), stream windows
// w = 0..K-1 covering [b, h) in K near-equal parts, holdout [h, n), with
// b = round(n * batch_fraction) and h = n - round(n * holdout_fraction).
#ifndef RD_DATASET_H
#define RD_DATASET_H

#include "rd/config.h"
#include "rd/error.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RD_DATASET_MAGIC   "RDDSET\r\n" // 8 bytes, no NUL
#define RD_DATASET_VERSION 2 // written; version 1 (no field transforms recorded) is still read
#define RD_DATASET_FILE    "events.bin"
#define RD_DATASET_META    "meta.yaml"
#define RD_DATASET_IDS     "ids.csv"
#define RD_DATASET_LINES   "lines.csv"

// ---------------------------------------------------------------------------------------------
// Format

/** The fixed 48-byte prefix of every record. Followed by uint64 keys[n_slots] and float
 *  num[n_numeric] (see rd_dataset_keys / rd_dataset_nums). */
typedef struct rd_record {
    uint64_t id;       // sample id = index in time order, 0..n-1
    int64_t ts;        // event time, unix seconds
    uint32_t user;     // dense user index, 0..n_users-1, by first appearance in time order
    uint32_t item;     // dense item index, 0..n_items-1, by first appearance in time order
    float label;       // 0 or 1
    float weight;      // 1 / sampling rate of the event's class (1 without negative sampling)
    uint64_t user_key; // rd_feature_key of the raw user id
    uint64_t item_key; // rd_feature_key of the raw item id
} rd_record;

/** Where one schema field lives inside a record. */
typedef struct rd_dataset_field {
    char name[RD_NAME_MAX]; // field name (the key's hash salt)
    int kind;               // rd_field_kind; 0/1 flag fields (MovieLens genres) are stored as
                            // RD_FIELD_MULTI: one slot per flag column
    uint32_t offset;        // first key slot (categorical, multi) or numeric index (numeric)
    uint32_t width;         // slots (1 for categorical and numeric, max_len for multi)
    uint64_t vocab;         // distinct non-empty values seen (0 for numeric fields)
    uint32_t transform;     // how a raw value became the stored one: RD_XFORM_* flags
    double mean, std;       // RD_XFORM_STANDARDIZE: stored = (x - mean) / std (else 0 and 1)
} rd_dataset_field;

// rd_dataset_field.transform: what the dataset builder did to a numeric (or feedback) field's raw
// value before storing it, in this order (rd_field_transform applies the same steps).
#define RD_XFORM_LOG1P       1u // log1p(max(x, 0))
#define RD_XFORM_STANDARDIZE 2u // (x - mean) / std, the batch period's figures
#define RD_XFORM_UNKNOWN     4u // a version-1 folder: the transform was not recorded

/**
 * A raw value as the dataset stores it for field fd: log1p(max(x, 0)) under RD_XFORM_LOG1P, then
 * rounded to float, then ((double)that - mean) / std under RD_XFORM_STANDARDIZE, rounded to float
 * — the builder's steps, so a serving client's raw input gives the stored value bit for bit.
 * The result may be non-finite for a non-finite or huge x: callers check.
 */
float rd_field_transform(uint32_t transform, double mean, double std, double x);

typedef struct rd_dataset_info {
    uint32_t version;     // RD_DATASET_VERSION
    uint32_t record_size; // bytes per record, multiple of 8
    uint32_t n_slots;     // uint64 key slots per record
    uint32_t n_numeric;   // floats per record: the model inputs, then the n_feedback values
    uint32_t n_feedback;  // feedback fields (rd_field_kind RD_FIELD_FEEDBACK): the last floats
    uint32_t n_fields;    // entries of the field table
    uint32_t n_windows;   // K stream windows
    int source;           // rd_data_source the data came from
    uint64_t n_events;    // records (after negative sampling)
    uint64_t n_users;     // distinct users
    uint64_t n_items;     // distinct items
    uint64_t n_positives; // records with label 1
    int64_t ts_min;       // first and last timestamp (unix seconds)
    int64_t ts_max;
    uint64_t raw_events; // events before negative sampling
    uint64_t raw_positives;
    double neg_rate;      // fraction of negatives kept (r_s); 1 = no sampling
    double pos_rate;      // fraction of positives kept (r_+)
    uint64_t file_bytes;  // size of events.bin
    uint32_t records_crc; // CRC-32C of the record section
    uint32_t index_crc;   // CRC-32C of the user index sections
} rd_dataset_info;

/** Half-open range of record indices [begin, end). */
typedef struct rd_range {
    uint64_t begin;
    uint64_t end;
} rd_range;

typedef struct rd_dataset rd_dataset;

// ---------------------------------------------------------------------------------------------
// Prepare (writer side)

/**
 * Build the dataset folder dc->dir from dc->source: CSV through dc->schema, MovieLens through
 * rd_schema_preset, or the synthetic generator. The folder is written under
 * "<dir>.tmp-<pid>.<host>", fsynced and renamed into place, so a failure leaves neither the folder
 * nor the temporary one; a SIGTERM, SIGINT or SIGHUP removes the temporary folder too
 * (rd_lmdbx_pending_add), and a build removes those of this host's processes that no longer run
 * (a SIGKILL, a crash) beside dir. dir is at most RD_DATA_DIR_MAX bytes.
 * An existing dataset folder at dir (one holding events.bin) is replaced atomically; any other
 * existing path is an error.
 * @param[in]  dc        data config (schema paths are relative to dc->input when not absolute)
 * @param[in]  run_seed  run.seed: seeds the generator when synthetic.seed is 0, and negative
 *                       sampling
 * @param[out] eb        "file:line: column 'x': what is wrong" for bad input
 * @return RD_OK, RD_ERR_IO (unreadable input, unwritable output, disk full), RD_ERR_PARSE
 *         (malformed line, wrong column count, non-numeric value, bad timestamp), RD_ERR_SCHEMA
 *         (a column the schema names is missing, missing side-table key, duplicate side key,
 *         a label rule that gives every event the same class),
 *         RD_ERR_EMPTY (no events), RD_ERR_CONFIG (inconsistent data config), RD_ERR_EXISTS
 *         (dir exists and is not a dataset), RD_ERR_RANGE (more users/items than 2^32-1),
 *         RD_ERR_NOMEM.
 */
int rd_dataset_prepare(const rd_data_config *dc, uint64_t run_seed, rd_errbuf *eb);

/**
 * A hash of what decides a dataset's records: the data section of the config (source, input,
 * schema, synthetic parameters, split, negative sampling; not data.dir nor history_max) and the
 * seeds it draws from (the generator's, and run_seed when negatives are sampled). Prepare writes
 * it into meta.yaml as data_config_hash. @return the hash, or 0 when out of memory.
 */
uint64_t rd_dataset_config_hash(const rd_data_config *dc, uint64_t run_seed);

/**
 * Check that the dataset folder `dir` was prepared from this data config and run seed, so that a
 * run never trains silently on a folder left by another config (e.g. a shared data.dir after
 * the event count or the split changed). A folder without data_config_hash (prepared by an
 * older version) passes.
 * @return RD_OK, RD_ERR_CONFIG ("data.dir DIR holds a dataset prepared from another data
 *         configuration ..."), RD_ERR_IO (meta.yaml unreadable), RD_ERR_PARSE (malformed line),
 *         RD_ERR_NOMEM, RD_ERR_ARG (dir or dc NULL)
 */
int rd_dataset_check_config(const char *dir,
                            const rd_data_config *dc,
                            uint64_t run_seed,
                            rd_errbuf *eb);

/**
 * Call fn with the path of each input file prepare read for dataset folder `dir`, as meta.yaml
 * records them (`inputs:`: the log or each of its parts, then the side tables; as the config
 * named them, so a relative path is relative to the working folder of prepare). For a command
 * that writes beside a dataset: its outputs must not overwrite the log the scores join back to.
 * A folder that records none (the synthetic source) calls fn for none.
 * @return RD_OK; fn's status when it is not RD_OK (it stops there); RD_ERR_IO (meta.yaml
 *         unreadable), RD_ERR_PARSE (a malformed inputs entry), RD_ERR_ARG
 */
int rd_dataset_each_input(const char *dir,
                          int (*fn)(const char *path, void *ctx, rd_errbuf *eb),
                          void *ctx,
                          rd_errbuf *eb);

/**
 * The fill of numeric field `field` (data.schema.fields[].missing: mean) of the dataset folder
 * `dir`: the mean of its present stored values (after log1p, before standardize) over the batch
 * period, which prepare stored for every missing value. The field table of events.bin does not
 * hold it: it is read from meta.yaml (fields[].missing_mean.value) with libyaml, from the
 * top-level fields section only (the input paths elsewhere in the file need not be UTF-8).
 * @param[out] value  the fill, finite (a float's value)
 * @return RD_OK, RD_ERR_NOTFOUND (no such field in meta.yaml, or it records no missing_mean),
 *         RD_ERR_IO (meta.yaml unreadable), RD_ERR_PARSE (not YAML, or a value that is not a
 *         finite number), RD_ERR_NOMEM, RD_ERR_ARG (dir, field or value NULL); the message
 *         names the field and the file
 */
int rd_dataset_missing_mean(const char *dir, const char *field, double *value, rd_errbuf *eb);

/**
 * Fill `sc` with the schema of a MovieLens preset (the whole struct is overwritten; other
 * sources are an error). movielens100k: u.data (tab; user_id item_id rating timestamp) joined
 * with u.user ("|"; fields age, gender, occupation, zip) and u.item ("|"; field genres = the 19
 * 0/1 genre flag columns). movielens1m: ratings.dat, users.dat, movies.dat ("::"; fields gender,
 * age, occupation, zip, genres = the "|"-separated Genres column, up to 6 values). Both label
 * events with rating >= 4 and read unix seconds.
 * @return RD_OK or RD_ERR_ARG (not a MovieLens source)
 */
int rd_schema_preset(int source, rd_schema_config *sc, rd_errbuf *eb);

/**
 * An ISO 8601 / RFC 3339 time as the log's `time_format: iso8601` reads it: the n bytes at s,
 * YYYY-MM-DD[(T|t| )hh:mm[:ss[.fff]]][Z|z|(+|-)hh[[:]mm]] (no zone = UTC; blanks around it
 * are skipped). *ms = milliseconds since 1970-01-01T00:00:00Z.
 * @return 0, or -1 when the text is not such a time (*ms untouched)
 */
int rd_parse_iso8601(const char *s, size_t n, int64_t *ms);

// ---------------------------------------------------------------------------------------------
// Reader

enum {
    RD_DATASET_NOVERIFY = 1, // skip the full CRC of records and index at open (header, sizes and
                             // offsets are still checked); use when the file was just verified
};

/**
 * Open and mmap a dataset folder (read-only, shared: ranks on one node share the pages).
 * @param[in]  dir    dataset folder
 * @param[in]  flags  0 or RD_DATASET_NOVERIFY
 * @param[out] out    the dataset; close with rd_dataset_close
 * @param[out] eb     "dir/events.bin: what" (bad magic, truncated, CRC mismatch, ...); cleared
 *                    first, so its message is this call's
 * @return RD_OK, RD_ERR_IO, RD_ERR_CORRUPT (bad magic, CRC mismatch, inconsistent header,
 *         truncated or oversized file), RD_ERR_VERSION, RD_ERR_NOMEM, RD_ERR_ARG (dir or out
 *         NULL; out is set to NULL first)
 */
int rd_dataset_open(const char *dir, int flags, rd_dataset **out, rd_errbuf *eb);

/** Unmap and free. Accepts NULL. Pointers obtained from the dataset die with it. */
void rd_dataset_close(rd_dataset *ds);

/** Counts and layout. @return a pointer that lives as long as ds; NULL for a NULL ds. */
const rd_dataset_info *rd_dataset_get_info(const rd_dataset *ds);

/** The field table (info->n_fields entries) and a lookup by name (NULL if absent).
 *  @return pointers that live as long as ds; NULL for a NULL ds (or name). */
const rd_dataset_field *rd_dataset_fields(const rd_dataset *ds);
const rd_dataset_field *rd_dataset_find_field(const rd_dataset *ds, const char *name);

/** Where the keys of a model feature come from in a record: the user or item key, the hour or
 *  weekday of the timestamp (when the dataset has no field of that name), or a field's slots. */
typedef enum rd_feature_kind {
    RD_FEATURE_USER = 0,
    RD_FEATURE_ITEM = 1,
    RD_FEATURE_HOUR = 2,
    RD_FEATURE_WEEKDAY = 3,
    RD_FEATURE_FIELD = 4,
} rd_feature_kind;

typedef struct rd_feature_src {
    int kind;        // rd_feature_kind
    uint32_t offset; // RD_FEATURE_FIELD: first key slot in the record
    uint32_t width;  // key slots per record (1 unless a multi-valued field)
} rd_feature_src;

/** The CSV source's event store, for tests: the capacity it grows to from `cap` (doubling,
 *  at most what `limit` bytes hold at per_event bytes an event; limit 0 = no limit); a result
 *  <= cap means the log does not fit. */
uint64_t rd__schema_log_cap(uint64_t cap, double per_event, double limit);

/** The CSV source's event store under data.schema.drop_repeats, for tests: the bytes of tally
 *  bits an event keeps (3 a field of the schema's plan, 1 a side table), sized by the schema. */
uint32_t rd__schema_tally_bytes(int n_plan, int n_side);

/**
 * Resolve the model feature named `field` in this dataset. "user" and "item" are the record's
 * keys; a field of the dataset comes next (so a CSV column named "hour" wins over the derived
 * one); then "hour" and "weekday" of the timestamp (rd_dataset_time_fields).
 * @param[in] who  names the model in messages, e.g. "model 'teacher'"
 * @return RD_OK, or RD_ERR_CONFIG: "<who>: feature 'x' is a numeric field ..." (numeric and
 *         feedback fields are never embedded) or "... is not a field of the dataset (have: ...)"
 */
int rd_dataset_feature_src(
    const rd_dataset *ds, const char *field, const char *who, rd_feature_src *out, rd_errbuf *eb);

/** Key of slot `slot` (< fs->width) of a resolved feature in record i; 0 = an empty slot. */
uint64_t
rd_dataset_feature_key(const rd_dataset *ds, const rd_feature_src *fs, uint64_t i, uint32_t slot);

/** The derived fields of unix time ts (UTC, also before 1970): *hour in 0..23 and *weekday in
 *  0..6 with 0 = Monday. Their feature keys are rd_feature_key_u64("hour" | "weekday", value). */
void rd_dataset_time_fields(int64_t ts, int *hour, int *weekday);

/** Record i (asserts i < n_events), its n_slots keys and its n_numeric floats.
 *  @return pointers into the mapping; valid until rd_dataset_close. */
const rd_record *rd_dataset_record(const rd_dataset *ds, uint64_t i);
const uint64_t *rd_dataset_keys(const rd_dataset *ds, uint64_t i);
const float *rd_dataset_nums(const rd_dataset *ds, uint64_t i);

/** Split ranges: all events, the batch period, stream window w (0 <= w < n_windows, asserted),
 *  and the holdout window. */
rd_range rd_dataset_all(const rd_dataset *ds);
rd_range rd_dataset_batch(const rd_dataset *ds);
rd_range rd_dataset_window(const rd_dataset *ds, uint32_t w);
rd_range rd_dataset_holdout(const rd_dataset *ds);

/** The stream window that holds record i: w with i in rd_dataset_window(ds, w), or -1 when i is
 *  in the batch period, the holdout or beyond the events (binary search over the windows'
 *  bounds: O(log n_windows)). rd_dataset_window_of_naive is its linear twin, for tests and
 *  bench/bench_window.c. */
int64_t rd_dataset_window_of(const rd_dataset *ds, uint64_t i);
int64_t rd_dataset_window_of_naive(const rd_dataset *ds, uint64_t i);

/** Records with t0 <= ts < t1 (binary search; an empty range if none). */
rd_range rd_dataset_time_range(const rd_dataset *ds, int64_t t0, int64_t t1);

/** Contiguous share of r for `rank` of `nranks` (sizes differ by at most one, in rank order). */
rd_range rd_dataset_shard(rd_range r, int rank, int nranks);

// ---------------------------------------------------------------------------------------------
// Iteration and partitioning across ranks

typedef enum rd_partition {
    RD_PART_CONTIGUOUS = 0, // rank r gets rd_dataset_shard(range, r, n), in time order
    RD_PART_STRIDED = 1,    // rank r gets begin + r, begin + r + n, ... (time order)
    RD_PART_USER = 2,       // user order: users u = 0, 1, ... with
                            // rd_shard_of(user_key, n) == r, each user's records in the range in
                            // time order (the IAT user-order scheme, and the store's sharding)
} rd_partition;

/** Iterator state (plain struct; copy to fork). */
typedef struct rd_dataset_iter {
    const rd_dataset *ds;
    rd_range range;
    int mode; // rd_partition
    int rank;
    int nranks;
    uint64_t next; // time modes: next index; user mode: position in the current user's list
    uint64_t stop; // time modes: end; user mode: end position in the current user's list
    uint64_t step; // strided: nranks
    uint64_t user; // user mode: current user
    // rd_dataset_iter_sample: records are kept by rd_sample_keep (0 = every record)
    int sampled;
    uint64_t keep_salt;
    double keep_neg, keep_pos;
} rd_dataset_iter;

/** Start iterating `range` (clipped to the dataset) as `rank` of `nranks` (asserts
 *  0 <= rank < nranks). */
void rd_dataset_iter_init(
    rd_dataset_iter *it, const rd_dataset *ds, rd_range range, int mode, int rank, int nranks);

/** @return 1 and *idx = the next record index, or 0 at the end. */
int rd_dataset_iter_next(rd_dataset_iter *it, uint64_t *idx);

/** From now on yield only the records rd_sample_keep(salt, neg_keep, pos_keep, id, label > 0.5)
 *  keeps (a job's own negative sampling; asserts both rates in (0, 1]). Rates of 1 keep all. */
void rd_dataset_iter_sample(rd_dataset_iter *it, uint64_t salt, double neg_keep, double pos_keep);

/** The salt of the jobs' own sampling: a hash of the run seed, the same for every job, so jobs
 *  at the same rates keep the same records and a lower rate keeps a subset of a higher one's
 *  (a student sampled harder than its teacher has a target for every record it trains on). */
uint64_t rd_sample_salt(uint64_t run_seed);

/** 1 when record `id` (positive or not) is kept at these rates: a uniform draw from a hash of
 *  (salt, id) below the rate (pos_keep for positives, neg_keep else). Pure: every rank, every
 *  job that knows the salt and rates, and every replay gets the same answer. */
int rd_sample_keep(uint64_t salt, double neg_keep, double pos_keep, uint64_t id, int positive);

// ---------------------------------------------------------------------------------------------
// Per-user index

/** Records of user u in time order (asserts u < n_users). *n receives the count.
 *  @return a pointer into the mapping; valid until rd_dataset_close. */
const uint64_t *rd_dataset_user_records(const rd_dataset *ds, uint64_t u, uint64_t *n);

/** Position of record i within its user's list (0 = the user's first event). */
uint32_t rd_dataset_user_pos(const rd_dataset *ds, uint64_t i);

/**
 * The last min(L, pos) records of record i's user strictly before record i (in record order,
 * i.e. earlier timestamps, and for equal timestamps earlier ids), oldest first, in O(L).
 * @param[out] n  number of indices (0 for a user's first event)
 * @return a pointer to the *n indices inside the mapping (valid until rd_dataset_close)
 */
const uint64_t *rd_dataset_history_view(const rd_dataset *ds, uint64_t i, size_t L, size_t *n);

/** Same, copied into out_idx (room for L entries). */
void rd_dataset_history(const rd_dataset *ds, uint64_t i, size_t L, uint64_t *out_idx, size_t *n);

/**
 * Where the history of rd_dataset_history_view lies in the per-user lists: its *n indices are
 * entries [k, k + *n) of user_rec, the n_events entries of every user's list one after the other
 * (user 0's first). An array parallel to those lists (rd_dataset_history_keys) thus holds a
 * history's values contiguously, where the records themselves are scattered over the log.
 * @param[out] n  number of indices (0 for a user's first event)
 * @return k; k + *n is record i's own entry, so k + *n < n_events
 */
uint64_t rd_dataset_history_at(const rd_dataset *ds, uint64_t i, size_t L, size_t *n);

/**
 * For every entry k of the per-user lists (rd_dataset_history_at), the table key of its record's
 * item and its label bit: key[k] = rd_table_key(table_id, item_key), pos[k] = label > 0.5. One
 * scattered pass over the log, O(n_events).
 * @param[out] key  n_events uint64 (caller-owned)
 * @param[out] pos  n_events bytes, 0 or 1 (caller-owned)
 */
void rd_dataset_history_keys(const rd_dataset *ds, uint64_t table_id, uint64_t *key, uint8_t *pos);

/** Floats of a record that are model inputs: n_numeric - n_feedback, the first ones. */
static inline uint32_t rd_dataset_n_inputs(const rd_dataset_info *in) {
    return in->n_numeric - in->n_feedback;
}

/** Width of the history statistics of seq.stats: 1 + n_stats * (1 + feedback + residual). */
size_t rd_history_stats_width(const rd_seq_config *sq);

/**
 * The history statistics of record i (seq.stats of rd/config.h), in this order: log1p(number of
 * the user's events before i), then for each window k: the mean label of the min(k, pos) latest
 * earlier events, and with a feedback field (feedback_index >= 0) the mean of its values over the
 * same events, and with item_mean (seq.stats_residual) the mean of value - item_mean[e]. An
 * empty window gives 0 (the count tells the model it is empty). Reads only events strictly
 * before i: no label or feedback of i itself, nor of anything later. O(max k).
 * @param[in]  feedback_index  numeric index of sq->stats_feedback (rd_dataset_stats_feedback), -1
 *                             when it is empty
 * @param[in]  item_mean       rd_dataset_item_means() of that field when sq->stats_residual, else
 *                             NULL
 * @param[out] out             rd_history_stats_width(sq) floats
 */
void rd_dataset_history_stats(const rd_dataset *ds,
                              uint64_t i,
                              const rd_seq_config *sq,
                              int feedback_index,
                              const float *item_mean,
                              float *out);

/** An attribute of the item (a category, a series): the value of one categorical field for
 *  every item key of a dataset, sorted by item key (models[].tokens.search_by,
 *  tokens.sit_group_by). */
typedef struct rd_item_attr {
    size_t n;
    uint64_t *item_key; // (n) ascending
    uint64_t *value;    // (n) the field's key for that item (0 = the item has none)
} rd_item_attr;

/**
 * Build the item -> value map of `field` over every record of ds. The field must be categorical
 * with one slot, and an attribute of the item: every event of an item has the same value.
 * @param[in] who  names the setting in messages, e.g. "models[0].tokens.search_by"
 * @return RD_OK; RD_ERR_CONFIG naming `who` and the field when it is not a categorical field of
 *         the dataset, has several values per event, or is not an attribute of the item (the
 *         message names two records of one item with different values); RD_ERR_NOMEM
 */
int rd_dataset_item_attr(
    const rd_dataset *ds, const char *field, const char *who, rd_item_attr *out, rd_errbuf *eb);

/** The key an item is searched or grouped by: its value of the attribute (binary search), or
 *  the item key itself when the item has no value or the map does not hold it (an item of
 *  another dataset in a shared token store): such an item matches only itself. */
uint64_t rd_item_attr_key(const rd_item_attr *a, uint64_t item_key);

void rd_item_attr_free(rd_item_attr *a);

/**
 * For every record e, the mean of a feedback field over the earlier events (in record order) of
 * e's item, shrunk toward the running mean of all earlier events: (sum + P * g) / (count + P)
 * with P = RD_STATS_PRIOR (g = 0 for the very first event). One pass in record order, O(n).
 * @param[out] out  n_events floats, or NULL on out-of-memory (free with rd_free)
 */
float *rd_dataset_item_means(const rd_dataset *ds, int feedback_index);

/**
 * Resolve seq.stats_feedback against the dataset's field table.
 * @param[out] index  numeric index of the field, or -1 when sq->stats_feedback is empty
 * @return RD_OK, or RD_ERR_SCHEMA ("model 'M': seq.stats_feedback: ...") when the dataset has no
 *         such field or it is not of kind feedback (e.g. a folder prepared before the kind existed)
 */
int rd_dataset_stats_feedback(
    const rd_dataset *ds, const char *model, const rd_seq_config *sq, int *index, rd_errbuf *eb);

/**
 * Resolve a feedback field by name.
 * @param[in]  what   who asks, for the message (e.g. "tokens.side[0]")
 * @param[out] index  numeric index of the field (into rd_record numeric values)
 * @return RD_OK, or RD_ERR_SCHEMA ("WHAT: ...") when the dataset has no such field or it is not of
 *         kind feedback
 */
int rd_dataset_feedback_index(
    const rd_dataset *ds, const char *what, const char *name, int *index, rd_errbuf *eb);

// ---------------------------------------------------------------------------------------------
// Raw ids

typedef struct rd_dataset_ids rd_dataset_ids;

/**
 * Load the raw ids of dataset folder `dir` (its RD_DATASET_IDS file), keyed as the records are:
 * rd_feature_key("user" | "item", id bytes).
 * @param[out] out  the ids; free with rd_dataset_ids_free
 * @return RD_OK; RD_ERR_NOTFOUND when the folder has no ids file (the synthetic source, or a
 *         folder prepared before the file was written: prepare it again); RD_ERR_CORRUPT
 *         ("DIR/ids.csv:LINE: ...": not the header "kind,id", a row that is not kind,id, a kind
 *         other than user and item); RD_ERR_PARSE (a malformed CSV row), RD_ERR_IO, RD_ERR_NOMEM,
 *         RD_ERR_ARG (dir or out NULL)
 */
int rd_dataset_ids_load(const char *dir, rd_dataset_ids **out, rd_errbuf *eb);

/**
 * The raw id of the user (is_item 0) or item (1) of `key` (rd_record.user_key / item_key).
 * @param[out] len  its length in bytes (the id is not NUL-terminated)
 * @return a pointer into ids, valid until rd_dataset_ids_free, or NULL when ids holds no such key
 */
const char *rd_dataset_ids_find(const rd_dataset_ids *ids, int is_item, uint64_t key, size_t *len);

/** The number of users (is_item 0) or items (1) that ids holds. */
uint64_t rd_dataset_ids_count(const rd_dataset_ids *ids, int is_item);

/** Free. Accepts NULL. */
void rd_dataset_ids_free(rd_dataset_ids *ids);

// ---------------------------------------------------------------------------------------------
// Log lines

typedef struct rd_dataset_lines rd_dataset_lines;

/**
 * Open the log lines of dataset folder `dir` (its RD_DATASET_LINES file), to be read in record
 * order with rd_dataset_lines_at. The file is read as it goes, not loaded.
 * @param n_records  the dataset's record count (rd_dataset_info.n_events): the file's rows
 * @param[out] out   free with rd_dataset_lines_close
 * @return RD_OK; RD_ERR_NOTFOUND when the folder has no lines file (the synthetic source, or a
 *         folder prepared before the file was written: prepare it again); RD_ERR_CORRUPT
 *         ("DIR/lines.csv:LINE: ...": not the header "file,line"); RD_ERR_IO, RD_ERR_NOMEM,
 *         RD_ERR_ARG
 */
int rd_dataset_lines_open(const char *dir,
                          uint64_t n_records,
                          rd_dataset_lines **out,
                          rd_errbuf *eb);

/**
 * The log file and line of record `rec`, a record after the one of the call before (the rows
 * between are skipped).
 * @param[out] file  the file's name (not NUL-terminated), valid until the next call
 * @param[out] len   its length in bytes
 * @param[out] line  its 1-based line
 * @return RD_OK; RD_ERR_ARG (rec not after the record of the call before, or not below
 *         n_records);
 *         RD_ERR_CORRUPT ("DIR/lines.csv:LINE: ..." for a row that is not "file,line" with a
 *         name and a positive line, or "DIR/lines.csv: N rows, the dataset holds M records" when
 *         the file ends first: not this dataset's file); RD_ERR_PARSE, RD_ERR_IO
 */
int rd_dataset_lines_at(rd_dataset_lines *l,
                        uint64_t rec,
                        const char **file,
                        size_t *len,
                        uint64_t *line,
                        rd_errbuf *eb);

/**
 * Read the rest of the file: it must hold exactly n_records rows.
 * @return RD_OK; RD_ERR_CORRUPT ("DIR/lines.csv: N rows, the dataset holds M records: the file
 *         is not this dataset's", or a malformed row as rd_dataset_lines_at); RD_ERR_PARSE,
 *         RD_ERR_IO
 */
int rd_dataset_lines_end(rd_dataset_lines *l, rd_errbuf *eb);

/** Close and free. Accepts NULL. */
void rd_dataset_lines_close(rd_dataset_lines *l);

#ifdef __cplusplus
}
#endif
#endif // RD_DATASET_H
