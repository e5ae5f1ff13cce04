// rd/serve.h — the student's serving bundle and a small scoring API: one request (one user at
// one time, with its history) and N candidates -> N main-tower scores.
//
// Defines:
//   RD_SERVE_VERSION          bundle format version
//   rd_serve_export()         checkpoint (dense.bin + PS shards) + config -> bundle file
//   rd_serve                  opaque scorer (a bundle's model and embedding rows, shared with
//                             its clones; its own activation and request buffers)
//   rd_serve_info             what a bundle holds (job, model, step, config hash, layout)
//   rd_serve_request          one request: per-candidate feature keys, the shared history
//   rd_serve_open / score / close
//   rd_serve_clone()          another serving thread's scorer of the same bundle (shared rows
//                             and parameters, its own buffers)
//   rd_serve_feature()        layout of the keys of one candidate (feature f: offset, width)
//   rd_serve_numeric()        numeric input j: its field and how a raw value is transformed
//   rd_serve_numeric_missing()  numeric input j: what a missing raw value (NaN) becomes
//   rd_serve_request_from_dataset()   a dataset record as a one-candidate request (tests, bench)
//   rd_serve_fetch_tokens()   a request's instance tokens from the model's token store (IAT)
//
// Bundle file (one file, little-endian host floats like the checkpoints; written to a temporary
// name, fsync'ed and renamed):
//   magic "RDSERVE1" | u32 version | u32 sizeof(rd_model_config) | u32 sizeof(rd_table_config)
//   | u32 n_tables | u64 config_hash | i64 step | u64 seed | i64 created (unix s)
//   | char job[32] | char model[32] | rd_model_config | n_tables x rd_table_config (the model's
//   tables in model slot order, optimizer set to sgd: no slots are shipped) | u32 n_features |
//   u32 width[n_features] | u32 n_numeric | (version 2: u32 n_inputs | n_inputs x (char
//   field[32] | u32 transform | f64 mean | f64 std | (version 3: u32 missing | f64 fill)) | f32
//   logit_shift) | (version 4: u32 token_dim | u32 token_side | u64 token_store_id: the token
//   store the model was trained on, all 0 without a token branch) | u64 n_slab | u64 n_params
//   | params (n_slab f32) | per table: u64 rows, rows x (u64 key | dim f32) | (version 5: u64
//   n_attr | n_attr x (u64 item_key | u64 value): the item -> value map of the attribute that
//   models[].tokens.search_by names, ascending item keys; 0 items unless the token search is by
//   an attribute) | u32 CRC-32C of everything before.
// The configs are the plain pointer-free structs of rd/config.h (written as bytes, like the
// config broadcast): a bundle is read by a build with the same struct sizes, else
// RD_ERR_VERSION. Only the main tower serves: the auxiliary tower's parameters (trained on the
// teacher's targets) are zeroed in the bundle.
//
// Scores equal the training-time main-tower scores (rd_trainer_score): the same model code runs
// on the same parameters and rows; a key without a row gets the same deterministic initial value
// as the PS gives it (rd_table_read on a table created from the same config and seed).
//
// Keys: a request carries FIELD-level keys as stored in datasets (rd_record.user_key /
// item_key, rd_dataset_keys slots, rd_feature_key_u64("hour" | "weekday", v)); the scorer turns
// them into table keys (rd_table_key). Threads: one rd_serve per serving thread (a scorer is
// not thread-safe); open the bundle once and give each further thread an rd_serve_clone of it:
// the clones share the bundle's rows and parameters, which nothing writes after the open, and
// each has its own activation and request buffers. Opening bundles from several threads at once
// is safe too (separate opens share nothing). The buffers are for max_candidates candidates and
// grow with it and with the model's widths: open it with the largest request the server sends,
// not the 2^20 maximum. The library writes
// nothing to stdout or stderr, and every call that takes an rd_errbuf clears it first (its
// message is that call's). C++: the declarations are extern "C".
#ifndef RD_SERVE_H
#define RD_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_SERVE_VERSION                                                                           \
    5 // written; versions 1 (no numeric transforms), 2 (no missing-value fills), 3 (no token
      // branch) and 4 (no item attribute map for tokens.search_by) are still read

typedef struct rd_serve rd_serve;

typedef struct rd_serve_info {
    uint32_t version;
    char job[RD_NAME_MAX];
    char model[RD_NAME_MAX];
    uint64_t config_hash; // rd_train_ckpt_config_hash of the model at export
    int64_t step;         // training step of the checkpoint
    uint64_t seed;        // run seed (initial values of unseen keys)
    int64_t created;      // unix seconds of the export (SOURCE_DATE_EPOCH when set)
    int n_features;
    size_t keys_per_candidate; // K: sum of the features' widths
    size_t hist_len;           // L of the sequence branch (0 without)
    size_t n_numeric;          // floats per candidate: the dataset's numeric inputs, then n_stats
    size_t n_stats;            // the last n_stats floats are the user's history statistics
                               // (seq.stats of the model; rd_dataset_history_stats computes them,
                               // the same for every candidate of one request)
    uint64_t rows;             // embedding rows shipped
    uint64_t params;           // dense parameters
    float logit_shift; // added to every main-tower logit: log(rate / pos_rate) of the job's own
                       // negative sampling (cluster.jobs[].negatives), 0 without (and in v1)
    // The instance-token branch (IAT; version 4), all 0 without one:
    size_t tok_length;     // tokens the branch reads per candidate (models[].tokens.length)
    size_t tok_pool;       // most tokens a request carries: tok_length, or tokens.search's pool
    size_t tok_dim;        // values per token (tokens.dim of the store)
    size_t tok_side;       // side values per token (tokens.side, twice with side_residual)
    size_t tok_stats;      // summary inputs the scorer computes from the tokens (tokens.stats):
                           // not part of n_numeric, a request never sends them
    int tok_same_time;     // tokens.same_time earlier: a request's tokens include the user's
                           // earlier events of its own second (rd_serve_fetch_tokens' id)
    int tok_search;        // tokens.search: each candidate reads the tokens of its own item, so
                           // a request carries tok_items and the candidates' items
    uint64_t tok_store_id; // the token store the model was trained on (its MANIFEST's id)
    // With tok_search (version 5): "item", or the item attribute the search matches
    // (tokens.search_by, e.g. a series): a candidate then reads the tokens of the items with its
    // item's value, looked up in the bundle's map of tok_search_items items (0 for a search by
    // item); an item not in it (new since training) matches only itself.
    char tok_search_by[RD_NAME_MAX];
    size_t tok_search_items;
} rd_serve_info;

/** One request: n candidates of one user at one time. Pointers are borrowed for the call. */
typedef struct rd_serve_request {
    size_t n;                   // candidates, 1..max_candidates
    const uint64_t *keys;       // (n, K) field-level keys of each candidate, 0 = empty slot
    const uint64_t *hist_items; // (L) item keys of the user's earlier events, most recent first,
                                // 0 = padding; NULL when L == 0 (or no history)
    const uint8_t *hist_labels; // (L) labels of those events (0/1), NULL = all 0
    const float *numeric;       // (n, n_numeric), NULL when n_numeric == 0
    int numeric_raw;            // 0: the numeric inputs are as the dataset stores them;
                                // 1: raw field values (what the CSV held): the scorer applies
                                // each input's log1p / standardize (rd_serve_numeric) first. A
                                // NaN is a missing value: with the field's `missing: zero | mean`
                                // (version 3, rd_serve_numeric_missing) it becomes the fill, then
                                // standardize applies (not log1p), as prepare did; a field with
                                // `missing: error`, or a version-2 bundle, refuses it. The
                                // history statistics (the last n_stats floats) are passed as
                                // computed either way.
    // The instance-token branch (info.tok_length > 0): the user's tokens before the request, as
    // rd_token_store_fetch returns them (oldest first, left-aligned); rd_serve_fetch_tokens fills
    // these from the store. The scorer picks each candidate's tokens (the latest tok_length, or
    // with tok_search the latest of the candidate's item) and computes their summaries.
    size_t tok_n;              // 0..info.tok_pool tokens
    const float *tok;          // (tok_n, tok_dim)
    const float *tok_labels;   // (tok_n) the label stored with each token, 0 or 1
    const uint64_t *tok_items; // (tok_n) their item keys (rd_record.item_key); with tok_search
    const float *tok_side;     // (tok_n, tok_side) side values; NULL when tok_side is 0
    const uint64_t *items;     // (n) each candidate's item key, the key tok_search matches
                               // (through the bundle's map when tok_search_by is an attribute)
} rd_serve_request;

/**
 * Write the serving bundle of job `job` from training checkpoint `ckpt_dir` (a step-N directory
 * of `recdistill train`: dense.bin + the job's PS tables).
 * @param[in] cfg          the run config (the model, its tables, the seed); its config hash
 *                         must equal the checkpoint's
 * @param[in] dataset_dir  the prepared dataset (feature widths, numeric count); NULL =
 *                         cfg->data.dir
 * Each numeric input records its missing mode (the schema field of that name in cfg; error
 * without one) and, for `missing: mean`, the fill the dataset's meta.yaml records.
 * @return RD_OK, RD_ERR_NOTFOUND (job, checkpoint, dense.bin, table, the missing_mean of a
 *         `missing: mean` field in meta.yaml), RD_ERR_PARSE (meta.yaml), RD_ERR_SCHEMA (config
 *         hash or model layout differs), RD_ERR_CONFIG (tokens.search_by names a field that
 *         is not a one-valued attribute of the dataset's items), RD_ERR_CORRUPT
 *         (also a NaN or infinite dense parameter or embedding value of the checkpoint, named
 *         as rd_serve_open names it: a diverged run, whose bundle open would refuse),
 *         RD_ERR_VERSION, RD_ERR_IO, RD_ERR_EXISTS (out exists), RD_ERR_ARG (cfg, job,
 *         ckpt_dir or out NULL: "rd_serve_export: invalid argument: ..."); nothing is left at
 *         `out` on failure
 */
int rd_serve_export(const rd_config *cfg,
                    const char *job,
                    const char *ckpt_dir,
                    const char *dataset_dir,
                    const char *out,
                    rd_errbuf *eb);

/**
 * Load a bundle and allocate everything a request of up to max_candidates needs.
 * @param[out] out  free with rd_serve_close
 * @return RD_OK, RD_ERR_NOTFOUND, RD_ERR_CORRUPT (magic, size, CRC; a NaN or infinite dense
 *         parameter or embedding value, named: a diverged checkpoint), RD_ERR_VERSION (format
 *         or struct sizes), RD_ERR_CONFIG (the model cannot be built), RD_ERR_ARG
 *         (max_candidates outside 1..2^20, path or out NULL; max_candidates times the bundle's
 *         keys per candidate, plus its history length, above 2^31 - 1: a request's key slots
 *         are numbered by int32, and the message names the most candidates the bundle takes),
 *         RD_ERR_NOMEM (the bundle, or the
 *         model's activations or the request buffers of max_candidates candidates, named),
 *         RD_ERR_IO (also a path that is not a regular file: a folder, a FIFO; never blocks on
 *         one)
 */
int rd_serve_open(const char *path, size_t max_candidates, rd_serve **out, rd_errbuf *eb);

/**
 * A scorer for another serving thread, sharing s's bundle: the dense parameters, the embedding
 * rows and the item attribute map are held once, whatever the number of scorers, and are only
 * read after rd_serve_open (a server of T threads holds them once, not T times); the new scorer
 * has its own activations and request buffers, for up to max_candidates candidates (0 = s's).
 * Thread-safe: a clone, a close and scoring on other scorers of the bundle may run at once; s
 * itself may be scoring in another thread meanwhile. Each scorer is closed with rd_serve_close,
 * in any order: the bundle is freed with the last.
 * @param[out] out  free with rd_serve_close
 * @return RD_OK, RD_ERR_ARG (s or out NULL, max_candidates above 2^20, or too many key slots
 *         a request for int32 indices, named as rd_serve_open names them), RD_ERR_CONFIG,
 *         RD_ERR_NOMEM (the model's activations or the request buffers of max_candidates
 *         candidates, named as rd_serve_open names them)
 */
int rd_serve_clone(const rd_serve *s, size_t max_candidates, rd_serve **out, rd_errbuf *eb);

/**
 * Score one request. No allocation.
 * @param[out] scores  (n) probabilities sigmoid(main logit), or NULL
 * @param[out] logits  (n) main-tower logits (plus info.logit_shift), or NULL
 * @return RD_OK, RD_ERR_ARG (s or req NULL, n out of 1..max_candidates, keys NULL, numeric
 *         missing),
 *         RD_ERR_RANGE (non-finite numeric, except a raw NaN of a field with a fill; a raw
 *         value whose transform is not finite, a history label other than 0/1; tok_n above
 *         tok_pool, a token, token label or side value that is not finite, tokens or item keys
 *         missing where the bundle reads them; or a main-tower
 *         logit that is not finite: an overflow on inputs far outside the training range; no
 *         score of that request is then written),
 *         RD_ERR_UNSUPPORTED (numeric_raw with a bundle that does not record the transforms)
 */
int rd_serve_score(
    rd_serve *s, const rd_serve_request *req, float *scores, float *logits, rd_errbuf *eb);

/** Free everything. Accepts NULL. */
void rd_serve_close(rd_serve *s);

/** The bundle's shapes; all zero for s NULL. */
void rd_serve_get_info(const rd_serve *s, rd_serve_info *info);

/** Feature f (0..n_features-1): its field name, first key slot and width in a candidate's keys.
 *  @return RD_OK or RD_ERR_RANGE (also for s NULL) */
int rd_serve_feature(const rd_serve *s, int f, const char **field, size_t *offset, size_t *width);

/**
 * Numeric input j (0 .. n_numeric - n_stats - 1): its dataset field, and what the dataset did to
 * a raw value before storing it (RD_XFORM_* of rd/dataset.h: rd_field_transform(transform, mean,
 * std, x) gives the stored value; mean 0 and std 1 without RD_XFORM_STANDARDIZE). A version-1
 * bundle, or one exported from a version-1 dataset, gives RD_XFORM_UNKNOWN: such a bundle scores
 * stored values only.
 * @return RD_OK or RD_ERR_RANGE (also for s NULL)
 */
int rd_serve_numeric(const rd_serve *s,
                     size_t j,
                     const char **field,
                     uint32_t *transform,
                     double *mean,
                     double *std);

/**
 * Numeric input j (as rd_serve_numeric): what a missing raw value (NaN with numeric_raw) becomes.
 * @param[out] missing  rd_missing_fill of rd/config.h: RD_MISSING_ERROR (no fill: prepare refused
 *                      such rows, and a raw NaN is RD_ERR_RANGE), RD_MISSING_ZERO or
 *                      RD_MISSING_MEAN; always RD_MISSING_ERROR in a version-1 or 2 bundle
 * @param[out] fill     the value prepare stored for it before standardization (after log1p for
 *                      mean; 0 for zero: log1p is not applied to it) — the stored input is
 *                      rd_field_transform(transform & ~RD_XFORM_LOG1P, mean, std, fill); 0 for
 *                      error
 * @return RD_OK or RD_ERR_RANGE (also for s NULL)
 */
int rd_serve_numeric_missing(const rd_serve *s, size_t j, uint32_t *missing, double *fill);

/**
 * Fill a one-candidate request from dataset record `rec`, deriving every key as the trainer does
 * (user, item, hour / weekday of the timestamp, dataset fields; history = the user's last L
 * records strictly before, most recent first; numeric = the record's numeric inputs, then the
 * history statistics of seq.stats). With seq.stats_residual the first call for a dataset
 * computes its item means (O(records)) and keeps them in s: calls on one rd_serve must not run
 * concurrently.
 * @param[out] keys      (K)
 * @param[out] hist      (L) or NULL when L == 0
 * @param[out] hist_lab  (L) or NULL when L == 0
 * @param[out] numeric   (n_numeric) or NULL when n_numeric == 0
 * @return RD_OK, RD_ERR_ARG (s, ds or keys NULL; hist, hist_lab or numeric NULL where the
 * bundle has a history or numeric inputs), RD_ERR_RANGE (rec), RD_ERR_SCHEMA (a feature
 * missing from the dataset or of another width, or seq.stats_feedback not a feedback field of it),
 * RD_ERR_NOMEM
 */
int rd_serve_request_from_dataset(const rd_serve *s,
                                  const rd_dataset *ds,
                                  uint64_t rec,
                                  uint64_t *keys,
                                  uint64_t *hist,
                                  uint8_t *hist_lab,
                                  float *numeric,
                                  rd_errbuf *eb);

struct rd_token_store;

/**
 * The instance tokens of one request, read from the token store the model was trained on (a
 * read-only rd_token_store_open of its folder; a serving process reads it while the training
 * jobs append to it): the user's last info.tok_pool tokens strictly before time t (with
 * tok_same_time also the records of time t whose instance id is below `id`, as training read
 * them). Sets req's tok_* members to buffers of s, valid until the next call on s.
 * @return RD_OK, RD_ERR_ARG (s, store or req NULL), RD_ERR_UNSUPPORTED (the bundle has no token
 *         branch), RD_ERR_SCHEMA (another store: its id, dim or side values differ from the
 *         bundle's), and the codes of rd_token_store_fetch_batch
 */
int rd_serve_fetch_tokens(rd_serve *s,
                          struct rd_token_store *store,
                          uint64_t user,
                          int64_t t,
                          uint64_t id,
                          rd_serve_request *req,
                          rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_SERVE_H
