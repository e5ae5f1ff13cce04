// rd/source.h — IAT stage 1: the source model that compresses every training instance into an
// instance token (DESIGN.md "Instance-token store", research/papers.md §2.1, issue 5).
//
// Defines:
//   Kernels (forward + backward, each with a `_naive` twin for the tests):
//     rd_source_bottleneck_*   token = sigmoid(h W^T + b)
//     rd_source_sit_*          the causal Source Instance Transformer over a user's window:
//                              learned positions, `layers` pre-LN blocks (causal + padding mask),
//                              final layer norm
//   rd_source_opts, rd_source, rd_source_batch
//   rd_source_create() / rd_source_destroy()
//   rd_source_check_batch(), rd_source_forward(), rd_source_backward()
//   rd_source_find_tensor()
//   rd_source_io, rd_source_driver_create/run/destroy   the same driver kept across ranges, with
//                              its token I/O through the store or through the PS ranks
//   rd_source_build()          a run's whole token build (batch period, stream, holdout)
//   rd_source_train_opts, rd_source_train_stats, rd_source_train_range()   single-process driver
//                              (in-process embedding tables, no PS) that trains the source model
//                              on a dataset range and writes a token for every event to a store
//
// Architecture (tokens.source_model names the models: entry of the backbone):
//   h       = backbone of that rd_model (features, seq branch, MLP; its towers are unused)  (B, Hd)
//   token   = sigmoid(W_b h + b_b)                                         (B, d = tokens.dim)
//   user-order scheme (tokens.scheme 2) with tokens.sit_layers > 0: the tokens of one GROUP (up to
//             T = tokens.window instances of one user, time-sorted), preceded by that user's
//             FROZEN previous tokens, form a sequence of length <= T; SIT(seq) -> y at the
//             positions of the new instances. Position p of a query attends only to positions
//             <= p (causal). The PRE-SIT tokens are the ones stored.
//             sit_labels: position p adds the embedding of the label of position p - 1 (never its
//             own). sit_pairs: each instance takes two positions, [token + e_unknown, token +
//             e_label]; its logit reads the first, and only later instances see the second, so
//             an earlier instance's token and label meet in one attention value (2 T positions).
//             sit_item_code: every position also adds its instance's item code, a constant
//             (rd_source_item_code), so that attention can match events of the same item.
//   temporal scheme (tokens.scheme 1), or sit_layers 0: y = token (each instance on its own).
//   logit   = head(decompress(y)): decompress = linear d -> Hd + the model's activation; head =
//             the model's tower hidden sizes then one logit; loss = mean_b w_b BCE(logit_b, y_b).
// Streaming mode is the general case of the layout: a group of one new instance whose user's
// previous T - 1 tokens come in frozen (fetched from the store: rd_token_store_fetch with
// L = T - 1 fills prev_tokens / n_prev directly). Frozen tokens receive no gradient (they are
// inputs, not outputs of this batch's backbone).
//
// Parameters: the backbone's own slab (backbone->params/grads/opt_state, rd/model.h) plus the
// source's slab (params/grads/opt_state here: bottleneck, decompress, head, SIT). The trainer
// steps and allreduces both. Memory (STYLE.md 6): one parameter, gradient, optimizer-state and
// activation slab each, allocated at create; forward and backward never allocate.
#ifndef RD_SOURCE_H
#define RD_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/error.h"
#include "rd/layers.h"
#include "rd/model.h"
#include "rd/tokens.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_SOURCE_MAX_SIT   64   // config limit of tokens.sit_layers
#define RD_SOURCE_ITEM_CODE 0.5f // magnitude of each dimension of a tokens.sit_item_code code

/** The item code of tokens.sit_item_code: code[k] = +-RD_SOURCE_ITEM_CODE, the sign from a hash
 *  of (item_key, k); d values. */
void rd_source_item_code(float *code, uint64_t item_key, size_t d);

// ---------------------------------------------------------------------------------------------
// Bottleneck kernel: out (BT, D) = sigmoid(inp (BT, C) . weight (D, C)^T + bias (D))

/** pre (BT, D) keeps the linear output (only for symmetry with the naive twin; the backward
 *  reads `out`). */
void rd_source_bottleneck_forward(float *out,
                                  float *pre,
                                  const float *inp,
                                  const float *weight,
                                  const float *bias,
                                  size_t BT,
                                  size_t C,
                                  size_t D);
/** dinp (BT, C) +=, dweight (D, C) +=, dbias (D) += (dinp, dbias may be NULL). dpre (BT, D) is
 *  scratch (overwritten). `out` is the forward output. */
void rd_source_bottleneck_backward(float *dinp,
                                   float *dweight,
                                   float *dbias,
                                   float *dpre,
                                   const float *dout,
                                   const float *inp,
                                   const float *weight,
                                   const float *out,
                                   size_t BT,
                                   size_t C,
                                   size_t D);
void rd_source_bottleneck_forward_naive(float *out,
                                        float *pre,
                                        const float *inp,
                                        const float *weight,
                                        const float *bias,
                                        size_t BT,
                                        size_t C,
                                        size_t D);
void rd_source_bottleneck_backward_naive(float *dinp,
                                         float *dweight,
                                         float *dbias,
                                         float *dpre,
                                         const float *dout,
                                         const float *inp,
                                         const float *weight,
                                         const float *out,
                                         size_t BT,
                                         size_t C,
                                         size_t D);

// ---------------------------------------------------------------------------------------------
// Source Instance Transformer kernel:
//   x0 = inp + pos;  x_{l+1} = tblock_l(x_l) (causal);  out = layernorm(x_L) * lnfw + lnfb

typedef struct rd_source_sit_weights {
    float *pos;                               // (T, C) learned positions
    rd_tblock_weights blk[RD_SOURCE_MAX_SIT]; // pre-LN blocks (rd/layers.h)
    float *lnfw, *lnfb;                       // (C) final layer norm
} rd_source_sit_weights;

typedef struct rd_source_sit_acts {
    float *x[RD_SOURCE_MAX_SIT + 1]; // (G, T, C) x[0] = inp + pos, x[l + 1] = block l output
    rd_tblock_acts blk[RD_SOURCE_MAX_SIT];
    float *lnf_mean, *lnf_rstd; // (G, T)
} rd_source_sit_acts;

typedef struct rd_source_sit_scratch {
    rd_tblock_scratch bs; // shared by the blocks (they run their backward one at a time)
    float *dx[2];         // (G, T, C) ping-pong
} rd_source_sit_scratch;

/** inp (G, T, C), mask (G, T) -> out (G, T, C). d->B = G, d->T, d->C, d->NH, d->act are used;
 *  d->causal must be 1 (asserted): the SIT is causal by definition. */
void rd_source_sit_forward(float *out,
                           const rd_source_sit_acts *acts,
                           const float *inp,
                           const float *mask,
                           const rd_source_sit_weights *w,
                           const rd_seq_dims *d,
                           size_t layers);
/** dinp (G, T, C) += (may be NULL), dw += ; dout (G, T, C). `inp` is not read (the block inputs
 *  are kept in acts->x); it is there for the kernel signature convention. s->dx must not alias
 *  dout or dinp. */
void rd_source_sit_backward(float *dinp,
                            const rd_source_sit_weights *dw,
                            const rd_source_sit_scratch *s,
                            const float *dout,
                            const float *inp,
                            const float *mask,
                            const rd_source_sit_acts *acts,
                            const rd_source_sit_weights *w,
                            const rd_seq_dims *d,
                            size_t layers);
void rd_source_sit_forward_naive(float *out,
                                 const rd_source_sit_acts *acts,
                                 const float *inp,
                                 const float *mask,
                                 const rd_source_sit_weights *w,
                                 const rd_seq_dims *d,
                                 size_t layers);
void rd_source_sit_backward_naive(float *dinp,
                                  const rd_source_sit_weights *dw,
                                  const rd_source_sit_scratch *s,
                                  const float *dout,
                                  const float *inp,
                                  const float *mask,
                                  const rd_source_sit_acts *acts,
                                  const rd_source_sit_weights *w,
                                  const rd_seq_dims *d,
                                  size_t layers);

// ---------------------------------------------------------------------------------------------
// The source model

/** Builder options. Pointers are borrowed only during rd_source_create. */
typedef struct rd_source_opts {
    const rd_table_config *tables; // cfg.ps.tables (the backbone's feature tables)
    int n_tables;
    size_t max_batch;  // largest number B of new instances per batch, >= 1
    size_t max_groups; // largest number G of groups per batch; 0 = max_batch
    size_t n_numeric;  // numeric features per example (the dataset's count)
    size_t opt_slots;  // optimizer-state floats per parameter (rd_dense_optim_slots)
    size_t sit_heads;  // SIT attention heads (must divide d); 0 = 4, 2 or 1, the largest dividing d
    uint64_t seed;     // parameters (the backbone gets seed, the source's slab seed ^ a constant)
    double reserve_bytes; // the caller's own buffers for this model (a builder's batch, fetch
                          // and per-event arrays), counted in the memory check; default 0
    double mem_limit;     // bytes the model and those buffers may take; 0 = rd_mem_limit()
} rd_source_opts;

typedef struct rd__source_priv rd__source_priv;

typedef struct rd_source {
    rd_model *backbone; // the source_model entry's rd_model (owned)
    int scheme;         // 1 temporal, 2 user order
    size_t dim;         // d = tokens.dim
    size_t window;      // T = tokens.window
    size_t sit_layers;  // 0 when scheme 1
    int sit_labels;     // tokens.sit_labels (with the SIT only): previous labels feed the SIT
    int sit_pairs;      // tokens.sit_pairs (with sit_labels only): two SIT positions per instance
    int sit_item_code;  // tokens.sit_item_code (with the SIT only): item codes feed the SIT
    size_t sit_heads;
    size_t hidden; // Hd of the backbone
    size_t max_batch, max_groups;
    double mem_bytes; // the estimate checked at create: the slabs + opts.reserve_bytes, bytes

    // The source's own parameter slab (bottleneck, decompress, head, SIT), same conventions as
    // rd_model: grads at the same offsets, opt_state = opt_slots slabs of n_slab floats.
    float *params;
    float *grads;
    float *opt_state; // NULL when opt_slots == 0
    size_t n_slab, n_params, opt_slots;
    int n_tensors;
    rd_model_tensor *tensors; // "bottleneck.w", "decompress.w", "head.l0.w", "sit.block0.qkvw", ...

    // Outputs of the last rd_source_forward (valid for its batch's B).
    float *tokens; // (max_batch, d) PRE-SIT tokens of the new instances, in batch row order: what
                   // the trainer appends to the store
    float *logits; // (max_batch)
    double loss;   // mean_b w_b BCE

    rd__source_priv *priv;
} rd_source;

/**
 * One step's inputs. `base` holds the B new instances exactly as for rd_model (features,
 * history, numeric, labels; no teacher logits, no tokens: the source model reads none), in
 * GROUP order: group g owns the group_len[g] consecutive rows that follow group g - 1's, sorted
 * by time. Every pointer is borrowed for the call; backward writes base.drows.
 */
typedef struct rd_source_batch {
    rd_batch base;
    size_t n_groups;            // G, 1..max_groups; 0 = every instance is a group of its own
    const uint32_t *group_len;  // (G) new instances per group, 1..T; they sum to B (NULL iff G = 0)
    const float *prev_tokens;   // (G, T - 1, d) frozen previous tokens of each group's user,
                                // oldest first, left-aligned (rows [0, n_prev[g]) valid), exactly
                                // as rd_token_store_fetch(user, t_first, T - 1) returns them;
                                // NULL = none. No gradient ever reaches them.
    const uint32_t *n_prev;     // (G) valid rows of prev_tokens per group (NULL iff prev_tokens is
                                // NULL). The most recent min(n_prev[g], T - group_len[g]) are used.
    const float *prev_labels;   // (G, T - 1) labels (0 / 1) of prev_tokens, row for row; NULL =
                                // unknown. Read only with sit_labels: SIT position p then adds
                                // the embedding of the label of position p - 1, or with
                                // sit_pairs each instance's second position its own (a new
                                // instance's own label never reaches its own logit; "unknown"
                                // where no label is known).
    const float *loss_weights;  // (B) per-instance weights of the loss, >= 0; NULL = all 1
    const uint64_t *item_keys;  // (B) item key of each new instance (rd_record.item_key); read
                                // only with sit_item_code, and then required
    const uint64_t *prev_items; // (G, T - 1) item keys of prev_tokens, row for row (the store's
                                // side info); with sit_item_code required with prev_tokens
    int reverse; // 1 = the SIT reads each group's new instances in reverse time order (latest
                 // first, so an instance's position sees its group's later ones): the reverse
                 // pass of tokens.two_pass. Needs n_groups > 0 and no prev_tokens.
} rd_source_batch;

/**
 * Build the source model of `cfg`: the backbone from cfg.models[tokens.source_model] (which must
 * not read tokens itself), then the source's slab.
 * Its slabs (the backbone's and its own, sized for max_batch instances and max_groups groups of
 * tokens.window positions: the SIT's activations grow with G x T^2) plus opts->reserve_bytes are
 * compared with opts->mem_limit before anything large is allocated.
 * @return RD_OK, RD_ERR_CONFIG (no/unknown source_model, the model reads tokens, scheme not 1|2,
 *         sit heads that do not divide d, a backbone error), RD_ERR_NOMEM (out of memory, or the
 *         estimate above the limit: the message gives it and names the keys that set it)
 * @note free with rd_source_destroy.
 */
int rd_source_create(const rd_config *cfg,
                     const rd_source_opts *opts,
                     rd_source **out,
                     rd_errbuf *eb);
/** Free everything; NULL is fine. */
void rd_source_destroy(rd_source *s);

/** Validate the group layout, frozen tokens (finite) and loss weights, then the base batch
 *  (rd_model_check_batch). @return RD_OK, RD_ERR_ARG (missing array, sizes) or RD_ERR_RANGE
 *  with "group 3: group_len 40 not in 1..32" in eb. */
int rd_source_check_batch(const rd_source *s, const rd_source_batch *b, rd_errbuf *eb);

/** Forward: fills tokens, logits and loss. @return RD_OK or the check's error. */
int rd_source_forward(rd_source *s, const rd_source_batch *b, rd_errbuf *eb);

/** Backward of the last forward of this same batch: overwrites both gradient slabs (source and
 *  backbone) and base.drows. @return RD_OK or RD_ERR_STATE. */
int rd_source_backward(rd_source *s, const rd_source_batch *b, rd_errbuf *eb);

/** @return the tensor of the source's slab named `name`, or NULL. */
const rd_model_tensor *rd_source_find_tensor(const rd_source *s, const char *name);

// ---------------------------------------------------------------------------------------------
// Single-process driver (no PS): in-process embedding tables (rd/table.h) and dense optimizers.

typedef struct rd_source_train_opts {
    rd_range range;    // records to train on (clipped to the dataset); begin == end = all
    int order;         // rd_order: RD_ORDER_TIME = batches of consecutive events in time order,
                       // user-order groups take their user's previous tokens frozen from the
                       // store (streaming mode; a batch holds at most T events of one user);
                       // RD_ORDER_USER = users one after the other, groups = windows of T
                       // consecutive events of a user, no frozen prefix (batch mode);
                       // RD_ORDER_WINDOWS = the same windows, all users' interleaved by the
                       // time of their first event (a batch holds windows of many users)
    int epochs;        // passes over the range; 0 = cfg.train.epochs
    size_t batch_size; // events per step; 0 = cfg.train.batch_size
    int infer_only;    // 1 = write the tokens of the range without training on it (one pass, no
                       // backward, no table push): the holdout of a run
    int first_epoch_tokens; // 1 = append tokens during the first epoch only: every token is then
                            // computed before the model trained on its batch (progressive, as
                            // in the stream and the holdout); later epochs only train. 0 = every
                            // epoch appends (the last epoch's tokens win: in-sample tokens)
    int two_pass; // 1 = each training step is followed by one on the same batch with every
                  // group's events in reverse order (rd_source_batch.reverse: no frozen prefix,
                  // no tokens written, not in the progressive AUC); only with scheme 2 and a SIT,
                  // else ignored (tokens.two_pass)
    // NULL, or called after each step with the steps and events done so far (all epochs) and
    // the events of the whole call (the range's events x its epochs): a caller's progress line
    void (*on_step)(void *ctx, uint64_t steps, uint64_t done, uint64_t total);
    void *step_ctx;
} rd_source_train_opts;

typedef struct rd_source_train_stats {
    uint64_t steps;
    uint64_t events;         // instances trained (all epochs)
    uint64_t tokens_written; // records appended (all epochs; later epochs replace earlier ones)
    uint64_t frozen_used;    // frozen previous tokens fed to the SIT (time order, user scheme)
    uint64_t groups;         // SIT groups over all steps (user scheme: a user's events in one
                             // batch; 0 for the temporal scheme)
    uint64_t reverse_steps;  // steps of the reverse pass (two_pass)
    double loss_first;       // mean loss of the first epoch
    double loss_last;        // mean loss of the last epoch
    double auc_last;         // AUC of the last epoch's logits, each computed before the update
                             // on its batch (progressive validation); NAN if one class only
} rd_source_train_stats;

/**
 * Train the source model of `cfg` on a range of `ds` and append a token for every event of the
 * range (key: the record's user_key, ts, record id; side info: label, item_key) to `store`
 * after each step, so that a later batch's frozen prefix can be fetched from it.
 * @param[in] store  open in WRITE mode on every shard, dim == cfg.tokens.dim (borrowed)
 * @return RD_OK, RD_ERR_CONFIG (bad source model, a feature the dataset lacks, store dim),
 *         the store's and the model's codes, RD_ERR_NOMEM
 */
int rd_source_train_range(const rd_config *cfg,
                          const rd_dataset *ds,
                          const rd_source_train_opts *o,
                          rd_token_store *store,
                          rd_source_train_stats *st,
                          rd_errbuf *eb);

/** Where a driver reads frozen prefixes and writes tokens: the store directly (tools, tests), or
 *  the owning PS ranks through an rd_token_client (`recdistill train`). Both have the semantics
 *  of rd_token_store_fetch_batch / rd_token_store_append. */
typedef struct rd_source_io {
    void *ctx;
    int (*fetch)(void *ctx,
                 size_t n,
                 const uint64_t *users,
                 const int64_t *before_t,
                 size_t L,
                 const rd_token_fetch_out *out,
                 rd_errbuf *eb);
    int (*append)(void *ctx, const rd_token_batch *b, rd_errbuf *eb);
} rd_source_io;

/** A row of a batch being split by rd_source_split_by_item (its scratch). */
typedef struct rd_source_item_row {
    uint64_t item;  // item key
    uint64_t rec;   // record index
    uint32_t group; // the group the row came from
    uint32_t first; // position in that group of its item's first row (orders the new groups)
    uint32_t pos;   // position of the row in that group
} rd_source_item_row;

/** tokens.sit_group item: split every group of a batch (rec[0..B) in group order, glen[0..*G)
 *  their lengths, items[b] the item key of rec[b]) into groups of one item, in the order of each
 *  item's first row in its group, rows in their order; rewrites rec, items, glen and *G (glen
 *  must hold B). scratch: B rows. Groups of one item of two different groups stay apart. */
void rd_source_split_by_item(uint64_t *rec,
                             uint64_t *items,
                             uint32_t *glen,
                             size_t *G,
                             size_t B,
                             rd_source_item_row *scratch);

/** Keep, of n frozen tokens (n x d, oldest first) with their labels (NULL: none) and items,
 *  those whose key is `key`, left-aligned in their order. keys: (n) the key of each token (the
 *  item's key of tokens.sit_group_by, rd_item_attr_key; not compacted), or NULL to compare the
 *  items themselves. @return how many. */
size_t rd_source_keep_item(float *tokens,
                           float *labels,
                           uint64_t *items,
                           const uint64_t *keys,
                           size_t n,
                           size_t d,
                           uint64_t key);

/** The io of a store opened for writing (borrowed). */
rd_source_io rd_source_io_store(rd_token_store *store);
/** The io through the PS ranks that own the shards (borrowed client). */
rd_source_io rd_source_io_client(rd_token_client *client);

/** A source model with its in-process tables and optimizers that lives across several ranges
 *  (the batch period, then the stream, then the holdout of one run). */
typedef struct rd_source_driver rd_source_driver;

/** Build the model, tables and buffers for batches of up to batch_size events (0 =
 *  cfg.train.batch_size). The io is copied; its ctx is borrowed. Same codes as
 *  rd_source_train_range. */
int rd_source_driver_create(const rd_config *cfg,
                            const rd_dataset *ds,
                            const rd_source_io *io,
                            size_t batch_size,
                            rd_source_driver **out,
                            rd_errbuf *eb);
/** Train on (or, with o->infer_only, only tokenise) one range; the parameters carry over to the
 *  next call. o->batch_size must be <= the driver's. */
int rd_source_driver_run(rd_source_driver *d,
                         const rd_source_train_opts *o,
                         rd_source_train_stats *st,
                         rd_errbuf *eb);
/** Free everything; NULL is fine. */
void rd_source_driver_destroy(rd_source_driver *d);
/** rd_source_driver_create's memory check, for tests: the bytes of the driver's own buffers for
 *  batches of B events (they grow with B) and over the dataset (they do not), which it adds to
 *  the source model's slabs. @return RD_OK, or the error of a feature the dataset lacks. */
int rd__source_driver_reserve(
    const rd_config *cfg, const rd_dataset *ds, size_t B, double *out, rd_errbuf *eb);

/** One part of a run's token build: RD_SOURCE_PART_BATCH (the batch period, train.epochs passes,
 *  user order for scheme 2 as tokens.batch_order says), _BATCH_FINAL (with tokens.batch_tokens
 *  final: the batch period again, tokenised by the trained model without training), _STREAM
 *  (the stream windows in time order, one pass) or _HOLDOUT (tokenised without training). */
enum {
    RD_SOURCE_PART_BATCH = 0,
    RD_SOURCE_PART_STREAM = 1,
    RD_SOURCE_PART_HOLDOUT = 2,
    RD_SOURCE_PART_BATCH_FINAL = 3
};

/** Called after each part that ran (an empty part, or a batch period of 0 epochs, is skipped). */
typedef void (*rd_source_part_fn)(void *ctx, int part, const rd_source_train_stats *st);
/** Called after each step of a part: its steps and events so far, and its events in all (the
 *  part's events x its passes), so that a long part is not silent until it ends. */
typedef void (*rd_source_step_fn)(
    void *ctx, int part, uint64_t steps, uint64_t done, uint64_t total);

/**
 * The token store of a run, as `recdistill train` builds it: one driver over the batch period,
 * then the stream, then the holdout (first-epoch tokens of the batch period: each token is
 * computed before the update on its own batch, so no stored token carries its own label; with
 * tokens.batch_tokens final the trained model writes them again after the last batch epoch).
 * @param[in] io          the store directly, or the PS ranks through a client
 * @param[in] batch_size  events per step (0 = cfg.train.batch_size)
 * @param[in] on_part     NULL, or called after each part
 * @param[in] on_step     NULL, or called after each step of a part (ctx is the same)
 * @return the codes of rd_source_driver_create / _run
 */
int rd_source_build(const rd_config *cfg,
                    const rd_dataset *ds,
                    const rd_source_io *io,
                    size_t batch_size,
                    rd_source_part_fn on_part,
                    rd_source_step_fn on_step,
                    void *ctx,
                    rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_SOURCE_H
