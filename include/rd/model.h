// rd/model.h — the worker's dense model (teacher, student, source model) built from the config.
//
// Defines:
//   rd_model_opts        what the builder needs besides the rd_model_config (tables, batch size)
//   rd_model_tensor      one named tensor of the parameter slab (name, offset, size)
//   rd_model_table       one embedding table the model reads (model-local slot)
//   rd_model_feature     one embedded feature (field, table slot, pooling)
//   rd_model             the model: slabs, tensor directory, outputs of the last forward
//   rd_batch             the trainer -> model boundary of one step
//   rd_model_create() / rd_model_destroy()
//   rd_model_check_batch()         validate a batch (indices, shapes, finiteness)
//   rd_model_forward()             logits and losses (rd_batch.seq_shared / tok_shared: the
//                                  candidates of one request share one history, run once)
//   rd_model_backward()            dense gradients (grad slab) + sparse row gradients (drows)
//   rd_model_find_tensor(), rd_model_param_count(), rd_model_flops()
//   rd_token_standardize()         tokens.norm: each token minus its mean, over its std
//   rd_model_forward_hidden() / rd_model_backward_hidden() / rd_model_hidden_dim()
//                                  the backbone alone (features -> h, dh -> gradients): for
//                                  models that put their own head on h (the IAT source model)
//
// Architecture (DESIGN.md, issue 4):
//   features: per feature f, gather its table's rows by index with sum/mean pooling -> (B, D_f);
//             their concat is the request vector x_req (B, E), E = sum D_f.
//   seq branch (models[].seq, kind mean | din | transformer): history rows gathered (B, L, D_t)
//             (+ a learned label side-embedding (2, D_t) of each event's label) -> linear to the
//             branch width C -> mean over valid events | DIN attention with query Wq x_req |
//             `layers` pre-LN self-attention blocks (+ learned positions (L, C), padding mask,
//             optional causal mask; FFN width 4C) then multi-head target attention whose query
//             is Wq x_req -> one vector (B, C). The DIN attention MLP has one hidden layer of
//             width C with the model's activation.
//   token branch (models[].tokens, IAT stage 2, scheme > 0): frozen tokens (B, L, d_tok) ->
//             [tokens.norm: each token standardised, rd_token_standardize] ->
//             adapter sigma(W x + b) (B, L, A) -> concat a label side-embedding (2, A) ->
//             linear to C = A -> the same mean | din | transformer machinery -> (B, C). Its
//             query is Wq x_req, or with tokens.query request_seq Wq [x_req | seq out] (the
//             seq branch's output gets that gradient too: the token branch's backward runs
//             before the seq branch's).
//   backbone: concat [x_req, numeric, seq vector, token vector] -> optional layer norm -> MLP
//             (models[].mlp, activation after every layer; with models[].dropout, inverted
//             dropout on every layer's output in a forward whose batch carries a dropout_key)
//             -> h.
//   head:     one tower (models[].tower hidden layers, then a linear to one logit), or two
//             towers that share no parameter (main + aux) on h when two_towers = 1.
//   losses:   main = mean_b BCE(z_main, y). With two towers, aux = mean_b [BCE(z_aux, y) +
//             has_target_b * alpha * T^2 * BCE(sigma(g(z_aux) / T), sigma(z_t / T))]; examples
//             without a target train the aux tower on the task loss alone (aux_task_off: the aux
//             loss is the distillation term alone, and such examples do not train it). With one
//             tower and teacher logits, the distillation term is added to the single tower's loss.
//             The optimised objective is main + aux. Cross-debias (Rec-Distill, papers.md §1.5):
//             the trainer passes the teacher's raw logit already projected through the
//             STUDENT's calibration f_S (as a logit: z_t = logit(f_S(z_teacher))), and the
//             model projects the student's logit through the same f_S, g(z) = logit(f_S(z))
//             (rd_batch.calib; g = identity without it). The task losses stay on raw logits.
//
// Memory (STYLE.md 6): rd_model_create allocates ONE parameter slab, ONE gradient slab of the same
// layout, ONE optimizer-state slab and ONE activation slab (sized for opts.max_batch, including the
// backward scratch). An inference-only model (opts.shared_params) borrows its parameter slab and
// has neither the gradient slab nor the backward scratch. Forward and backward never allocate: a
// batch of B <= max_batch uses the first B rows of every activation.
#ifndef RD_MODEL_H
#define RD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_MODEL_TENSOR_NAME 48

/** Builder options. Pointers are borrowed only during rd_model_create. */
typedef struct rd_model_opts {
    const rd_table_config *tables; // the PS tables (cfg.ps.tables): feature tables are looked up
    int n_tables;                  // by name there for their dims
    size_t max_batch;              // largest B of a batch, >= 1 (cfg.train.batch_size)
    size_t n_numeric;              // numeric features per example (the dataset's count), >= 0
    size_t token_dim;              // d_tok of the instance tokens (cfg.tokens.dim) when the token
                                   // branch is on
    size_t token_side;             // side values stored with each token (cfg.tokens.side), each
                                   // mapped into the label side-embedding by a learned vector
    int causal;                    // 1 = causal self-attention in the sequence branches; default 0
    size_t opt_slots;              // optimizer-state floats per parameter (rd_dense_optim_slots)
    uint64_t seed;                 // parameter initialisation (same seed -> same parameters)
    int quiet;     // 1 = no warning on stderr (a library caller, rd_serve, reports its own way)
    int plan_only; // 1 = size the model (n_slab, n_acts, n_params, the hidden width, FLOPs) and
                   // allocate no slab nor check its memory: the result can only be read and
                   // destroyed (a caller that adds its own buffers checks the sum first)
    const char *batch_knob; // what sets max_batch, named when the model does not fit in memory;
                            // NULL = "train.batch_size" (rd_serve: its max_candidates)
    // Inference over a parameter slab held elsewhere (rd_serve: one slab for all its serving
    // threads): n_slab floats laid out for this config (the params of a model built from the same
    // config and options, or a plan_only model's n_slab filled by the caller), 64-byte aligned,
    // borrowed for the model's life. The model never writes it: it is not initialised (seed is
    // unused), rd_model_destroy does not free it, and there is no gradient nor optimizer slab
    // (grads NULL; opt_slots must be 0) nor backward scratch in the activation slab:
    // rd_model_backward / _hidden are RD_ERR_STATE. Several
    // such models, each with its own activations, may run forwards on one slab at once. NULL =
    // the model's own slab.
    float *shared_params;
} rd_model_opts;

/** One tensor of the parameter slab; the same offset addresses its gradient and its optimizer
 *  slots (slot s of parameter i is opt_state[s * n_slab + i]). */
typedef struct rd_model_tensor {
    char name[RD_MODEL_TENSOR_NAME]; // e.g. "seq.block0.qkvw", "tower_main.l1.w"
    size_t offset;                   // in floats from the start of the slab (64-byte aligned)
    size_t n;                        // floats
} rd_model_tensor;

/** An embedding table the model reads, in model-local slot order (the index into rd_batch.rows). */
typedef struct rd_model_table {
    char name[RD_NAME_MAX];
    int ps_index;  // index into opts.tables
    size_t dim;    // D_t
    uint64_t salt; // rd_table_salt(): the salt of its keys (rd_table_key)
} rd_model_table;

typedef struct rd_model_feature {
    char field[RD_NAME_MAX];
    int table;   // model-local table slot
    int pooling; // rd_pooling
    size_t dim;  // = tables[table].dim
} rd_model_feature;

typedef struct rd__model_priv rd__model_priv;

typedef struct rd_model {
    // Slabs (64-byte aligned). n_slab >= n_params: tensors are padded to 16 floats.
    float *params;    // (n_slab); opts.shared_params when given (borrowed, never written)
    float *grads;     // (n_slab) written by rd_model_backward; NULL with opts.shared_params
    float *opt_state; // (opt_slots * n_slab), zeroed at create; NULL when opt_slots == 0
    size_t n_slab;
    size_t n_params; // sum of the tensors' sizes
    size_t opt_slots;
    size_t n_acts; // floats of the activation slab

    int n_tensors;
    rd_model_tensor *tensors; // (n_tensors) directory of the parameter slab

    int n_tables;
    rd_model_table tables[RD_MAX_TABLES];
    int n_features;
    rd_model_feature features[RD_MAX_FEATURES];
    int seq_table;       // table slot of the history items, -1 without a seq branch
    size_t seq_length;   // L of the seq branch (0 without)
    int seq_with_labels; // the batch must carry seq_labels
    size_t tok_length;   // L_tok of the token branch (0 without)
    size_t tok_dim;      // d_tok
    size_t tok_side;     // side values per token (0 = the label alone)
    size_t n_numeric;
    size_t max_batch;
    int two_towers;
    float dropout; // models[].dropout (applied only in a forward whose batch has a dropout_key)

    // Outputs of the last rd_model_forward (valid for its batch's B).
    float *logits_main;  // (max_batch)
    float *logits_aux;   // (max_batch), NULL with one tower
    double loss;         // main + aux: the optimised objective
    double loss_main;    // mean BCE of the main tower (+ distillation with one tower)
    double loss_aux;     // aux tower: mean BCE + alpha * T^2 * distill summed over targets / B
    double loss_distill; // mean T^2-scaled distillation BCE over the examples with a target
    size_t n_distill;    // examples of the last batch with a teacher target

    rd__model_priv *priv; // layer plumbing (opaque)
} rd_model;

/** One step's inputs. Every pointer is borrowed for the duration of the call. Index arrays refer
 *  to the UNIQUE rows of each table that the trainer pulled for this batch; when several uses
 *  share a table (e.g. the "item" feature and the history, by default), its slot holds the union
 *  of their rows and drows sums the gradients of all uses. */
typedef struct rd_batch {
    size_t B; // examples, 1..max_batch

    const float *rows[RD_MAX_TABLES]; // per model table slot t: (n_rows[t], D_t) pulled rows
    size_t n_rows[RD_MAX_TABLES];     // U_t
    float *drows[RD_MAX_TABLES];      // per slot: (n_rows[t], D_t), OVERWRITTEN by backward with
                                      // d loss / d row (what the trainer pushes); NULL = not needed

    const int32_t *feat_idx[RD_MAX_FEATURES]; // per model feature f: (B, feat_slots[f]) row
                                              // indices into rows[features[f].table], -1 = empty
    size_t feat_slots[RD_MAX_FEATURES];       // slots per example, >= 1

    const int32_t *seq_idx;    // (B, seq_length) into rows[seq_table], -1 = padding
    const uint8_t *seq_labels; // (B, seq_length) labels of the history events, 0 or 1

    const float *tokens;       // (B, tok_length, tok_dim) instance tokens (frozen: no gradient)
    const uint8_t *tok_mask;   // (B, tok_length) 1 = valid token, 0 = padding
    const uint8_t *tok_labels; // (B, tok_length) labels stored with the tokens, 0 or 1
    const float *tok_side;     // (B, tok_length, tok_side) side values stored with the tokens
                               // (finite), or NULL when tok_side is 0

    const float *numeric; // (B, n_numeric), NULL when n_numeric == 0
    const float *labels;  // (B) in [0, 1]

    const float *teacher_logits; // (B) projected teacher logits, or NULL (no distillation)
    const uint8_t *has_target;   // (B) 1 = teacher_logits[b] is valid; NULL = all valid
    float alpha;                 // weight of the distillation term, >= 0
    float temperature;           // T > 0
    int aux_task_off;            // two towers: 1 = the aux tower's loss is the distillation
                                 // term alone (distill.aux_task: false), so a batch without
                                 // teacher_logits (or an example without a target) does not
                                 // train it
    // The student's own calibration f_S (cross-debias, rd/distill.h): the distillation term
    // compares logit(f_S(z_student)) with teacher_logits (= logit(f_S(z_teacher))), so both sides
    // are in the same calibrated space. NULL = identity (no sampling, or distill.debias off).
    const struct rd_debias *calib;
    // Dropout (models[].dropout): a training forward passes a non-zero key, from which the
    // masks are drawn (rd_dropout_mask; the same key gives the same masks, so a resumed step
    // repeats them); 0 = no dropout (evaluation, scoring, serving, a teacher's targets).
    uint64_t dropout_key;
    // Shared history (inference only: serving scores the candidates of one request, which all
    // carry the same user history). seq_shared = 1: every example reads example 0's history, and
    // seq_idx / seq_labels hold that one row (1, seq_length) (more rows may follow; they are not
    // read). tok_shared = 1: likewise tokens, tok_mask, tok_labels and tok_side hold one example's
    // (1, tok_length, ...). The forward then runs what depends on the history alone once — the
    // gather, the token adapter, the in-projection, a transformer's blocks, the request
    // attention's keys and values — and per example only what reads the example's own features:
    // the DIN / request-attention query and the attention over the shared keys. The logits equal
    // those of the plain forward on B copies of the history up to float rounding: the shared
    // matmuls run on fewer rows, which OpenBLAS may round differently (a few ulp, as a batch of
    // another size is rounded). A backward after such a forward is RD_ERR_STATE. 0 = every example
    // has its own (training, evaluation).
    int seq_shared;
    int tok_shared;
} rd_batch;

/**
 * Build a model: validate the architecture, lay out and allocate the slabs, initialise the
 * parameters from opts->seed.
 * @param[in]  mcfg  the architecture (one entry of cfg.models)
 * @param[in]  opts  tables, batch size, ...
 * @param[out] out   the model on success, NULL on failure
 * @param[out] eb    "model 'teacher': seq.heads: 3 does not divide the branch width 64" (may be
 * NULL)
 * @return RD_OK, RD_ERR_CONFIG (architecture or options invalid, unknown table),
 *         RD_ERR_NOMEM (a slab could not be allocated)
 * @note free with rd_model_destroy.
 */
int rd_model_create(const rd_model_config *mcfg,
                    const rd_model_opts *opts,
                    rd_model **out,
                    rd_errbuf *eb);
/** Free everything rd_model_create allocated; NULL is fine. */
void rd_model_destroy(rd_model *m);

/** Validate a batch against the model: B range, required arrays present, every index in range,
 *  labels and masks in their sets, labels / numeric / teacher logits finite, alpha >= 0, T > 0.
 *  The NaN scans of the bulk inputs (pulled rows, tokens) run only without NDEBUG (STYLE.md 10:
 *  the default RelWithDebInfo build runs them, Release skips them).
 *  @return RD_OK, RD_ERR_ARG (missing array, bad B) or RD_ERR_RANGE (a value out of its range),
 *  with "feature 'genre' (table 'genres'): example 3 slot 1: row 57 not in [-1, 40)" in eb. */
int rd_model_check_batch(const rd_model *m, const rd_batch *batch, rd_errbuf *eb);

/** Forward pass: checks the batch (rd_model_check_batch), then fills logits_main/aux and the
 *  losses. @return RD_OK or the check's error (nothing computed). */
int rd_model_forward(rd_model *m, const rd_batch *batch, rd_errbuf *eb);

/** Backward pass of the last forward, which must have run on this same batch: overwrites the
 *  gradient slab with d loss / d params and every non-NULL batch->drows[t] with d loss / d rows.
 *  @return RD_OK or RD_ERR_STATE (no forward before it, a different B, or a forward with
 *  seq_shared / tok_shared, which is inference only). */
int rd_model_backward(rd_model *m, const rd_batch *batch, rd_errbuf *eb);

/** Forward pass up to the backbone output h only (no head, no loss): checks the batch like
 *  rd_model_forward (labels are still required), then runs the features, sequence branches and
 *  backbone. Used by models that put their own head on h (rd/source.h); the model's towers
 *  then stay unused (their gradients are 0).
 *  @param[out] h   (B, Hd) the backbone output inside the activation slab, valid until the next
 *                  forward (may be NULL)
 *  @param[out] Hd  its width (may be NULL)
 *  @return RD_OK or the check's error (nothing computed). */
int rd_model_forward_hidden(
    rd_model *m, const rd_batch *batch, const float **h, size_t *Hd, rd_errbuf *eb);
/** Backward pass of the last rd_model_forward_hidden (or rd_model_forward) of this same batch
 *  from a given d loss / d h (B, Hd): overwrites the gradient slab (towers get 0) and every
 *  non-NULL batch->drows[t]. dh is copied (borrowed for the call).
 *  @return RD_OK or RD_ERR_STATE (no forward before it, a different B, dh NULL, a shared-history
 *  forward). */
int rd_model_backward_hidden(rd_model *m, const rd_batch *batch, const float *dh, rd_errbuf *eb);
/** @return Hd, the width of the backbone output h (the last mlp size, else the backbone input
 *  width). */
size_t rd_model_hidden_dim(const rd_model *m);

/** @return the tensor named `name`, or NULL. */
const rd_model_tensor *rd_model_find_tensor(const rd_model *m, const char *name);
/** @return the number of trainable dense parameters (n_params). */
size_t rd_model_param_count(const rd_model *m);
/** Dense matmul FLOPs per example of one forward and one backward (the backward is about 2x:
 *  input and weight gradients of every matmul, none for frozen inputs). Element-wise work and
 *  the embedding gathers are not counted. */
void rd_model_flops(const rd_model *m, double *fwd_per_example, double *bwd_per_example);

#define RD_TOKEN_NORM_EPS 1e-6 // variance floor of rd_token_standardize

/** tokens.norm: out (n, d) = each token of tokens (n, d) minus the mean of its d values, divided
 *  by sqrt(their variance + RD_TOKEN_NORM_EPS); rows whose mask is 0 (mask NULL: none) are 0.
 *  The tokens are frozen inputs: nothing is differentiated through it. */
void rd_token_standardize(float *out, const float *tokens, const uint8_t *mask, size_t n, size_t d);

#ifdef __cplusplus
}
#endif
#endif // RD_MODEL_H
