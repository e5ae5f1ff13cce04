// rd/layers.h — dense layers of the worker models: forward and backward kernels (llm.c style).
//
// Defines:
//   rd_blas_set_threads()                      OpenBLAS threads of this rank (default 1 per rank)
//   rd_act_kind, rd_act_parse()                relu | gelu | sigmoid | none
//   Primitive kernels (forward + backward):
//     rd_embedding_pool_*    gather rows by index with sum/mean pooling (multi-valued fields);
//                            with S = 1 it is the plain gather of a sequence (padding -> zeros)
//     rd_concat_*            concatenate feature blocks along the last axis
//     rd_linear_*            out = inp W^T + b (cblas_sgemm)
//     rd_relu_* rd_gelu_* rd_sigmoid_* rd_act_*   element-wise activations
//     rd_layernorm_*         layer norm over the last axis
//     rd_attention_*         multi-head self-attention from packed qkv, padding + causal masks
//     rd_target_attention_*  multi-head dot-product attention of one query over a sequence
//     rd_masked_mean_*       mean over the valid positions of a sequence
//     rd_bce_logits_*        binary cross-entropy with logits
//     rd_distill_bce_*       distillation BCE against the soft target sigma(z_t / T), times T^2
//   Composite layers (plain structs of pointers for weights and activations):
//     rd_din_*               DIN target attention: MLP over [q, k, q-k, q*k], softmax over valid
//                            (rd_din_forward_shared: every example reads one history)
//     rd_tblock_*            pre-LN transformer block (self-attention + FFN, residuals)
//     rd_reqattn_*           target attention whose query is built from the current request
//                            (rd_reqattn_forward_shared: every example reads one history)
//     rd_mlp_*               stack of linear layers with activations
//     rd_two_tower_*         main + auxiliary tower on a shared backbone output
//   Every kernel that calls BLAS has a `_naive` twin (plain loops) kept for the tests.
//
// Conventions (STYLE.md 10): `<op>_forward(out, ..., inp, weight, dims)` and
// `<op>_backward(dinp, dweight, dbias, dout, inp, weight, dims)`. Backward kernels ACCUMULATE into
// their gradient outputs with += (zero them first); a NULL gradient output is skipped (frozen
// input). Index maths is size_t; matrices are row-major; a weight of a linear map from C to OC
// features is (OC, C) as in llm.c. Kernels never allocate and never log: scratch space comes from
// the caller (the model's activation slab). Preconditions are asserted (RD_ASSERT, always on).
// Masks are float arrays with 1 for a valid position and 0 for padding, so that the masked softmax
// vectorises; a NULL mask means every position is valid. A row with no valid key attends to
// nothing: its output is zero and it passes no gradient.
#ifndef RD_LAYERS_H
#define RD_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Set the OpenBLAS threads of this process (the trainer passes cfg.cluster.blas_threads; one
 *  thread per rank is the default so that ranks sharing a node do not oversubscribe it).
 *  @param[in] n  threads, >= 1 (asserted) */
void rd_blas_set_threads(int n);
/** @return the OpenBLAS threads currently in use. */
int rd_blas_get_threads(void);

// ---------------------------------------------------------------------------------------------
// Activations

typedef enum rd_act_kind {
    RD_ACT_NONE = 0,    // identity
    RD_ACT_RELU = 1,    // max(x, 0)
    RD_ACT_GELU = 2,    // tanh approximation (GPT-2)
    RD_ACT_SIGMOID = 3, // 1 / (1 + e^-x)
} rd_act_kind;

/** Parse "none" | "relu" | "gelu" | "sigmoid". @return RD_OK, or RD_ERR_ARG for anything else. */
int rd_act_parse(const char *name, rd_act_kind *out);
/** @return static text of an rd_act_kind ("?" when unknown). */
const char *rd_act_name(int kind);

// inp, out are (N); in-place (out == inp) is NOT allowed.
void rd_relu_forward(float *out, const float *inp, size_t N);
void rd_relu_backward(float *dinp, const float *dout, const float *inp, size_t N);
void rd_gelu_forward(float *out, const float *inp, size_t N);
void rd_gelu_backward(float *dinp, const float *dout, const float *inp, size_t N);
void rd_sigmoid_forward(float *out, const float *inp, size_t N);
// the sigmoid backward reads the forward OUTPUT
void rd_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t N);
/** Dispatch on kind. RD_ACT_NONE copies (forward) / adds dout (backward). The backward reads inp
 *  (relu, gelu) or out (sigmoid). */
void rd_act_forward(float *out, const float *inp, size_t N, int kind);
void rd_act_backward(
    float *dinp, const float *dout, const float *inp, const float *out, size_t N, int kind);
// Naive twins with libm expf/tanhf (the fast ones use a vectorised exp, |rel err| < 1e-6).
void rd_gelu_forward_naive(float *out, const float *inp, size_t N);
void rd_gelu_backward_naive(float *dinp, const float *dout, const float *inp, size_t N);
void rd_sigmoid_forward_naive(float *out, const float *inp, size_t N);
void rd_sigmoid_backward_naive(float *dinp, const float *dout, const float *out, size_t N);
void rd_relu_forward_naive(float *out, const float *inp, size_t N);
void rd_relu_backward_naive(float *dinp, const float *dout, const float *inp, size_t N);

// ---------------------------------------------------------------------------------------------
// Embedding gather with pooling

/** out (B, D) = pool over s of rows[idx[b, s]]; pooling is an rd_pooling of rd/config.h:
 *  RD_POOL_SUM (sum of the non-empty slots) or RD_POOL_MEAN (their mean; no slot -> zeros).
 *  rows (U, D) are the unique rows of one table pulled for the batch; idx (B, S) int32 in
 *  [-1, U) with -1 = empty slot (asserted: validate untrusted indices before, see rd_model). */
void rd_embedding_pool_forward(float *out,
                               const float *rows,
                               const int32_t *idx,
                               size_t B,
                               size_t S,
                               size_t U,
                               size_t D,
                               int pooling);
/** drows (U, D) += scatter of dout (B, D) through idx (B, S) with the pooling's weights. */
void rd_embedding_pool_backward(float *drows,
                                const float *dout,
                                const int32_t *idx,
                                size_t B,
                                size_t S,
                                size_t U,
                                size_t D,
                                int pooling);

// ---------------------------------------------------------------------------------------------
// Concat along the last axis

/** out (B, sum widths) = [inps[0] (B, widths[0]) | inps[1] | ...], n blocks. */
void rd_concat_forward(
    float *out, const float *const *inps, const size_t *widths, size_t n, size_t B);
/** dinps[i] (B, widths[i]) += the matching columns of dout; NULL dinps[i] are skipped. */
void rd_concat_backward(
    float *const *dinps, const float *dout, const size_t *widths, size_t n, size_t B);

// ---------------------------------------------------------------------------------------------
// Linear

/** out (BT, OC) = inp (BT, C) . weight (OC, C)^T + bias (OC). bias may be NULL. */
void rd_linear_forward(float *out,
                       const float *inp,
                       const float *weight,
                       const float *bias,
                       size_t BT,
                       size_t C,
                       size_t OC);
/** dinp (BT, C) += dout . weight; dweight (OC, C) += dout^T . inp; dbias (OC) += sum_bt dout.
 *  dinp and dbias may be NULL. */
void rd_linear_backward(float *dinp,
                        float *dweight,
                        float *dbias,
                        const float *dout,
                        const float *inp,
                        const float *weight,
                        size_t BT,
                        size_t C,
                        size_t OC);
void rd_linear_forward_naive(float *out,
                             const float *inp,
                             const float *weight,
                             const float *bias,
                             size_t BT,
                             size_t C,
                             size_t OC);
void rd_linear_backward_naive(float *dinp,
                              float *dweight,
                              float *dbias,
                              const float *dout,
                              const float *inp,
                              const float *weight,
                              size_t BT,
                              size_t C,
                              size_t OC);

// ---------------------------------------------------------------------------------------------
// Layer norm (eps 1e-5)

/** out (BT, C) = (inp - mean) * rstd * weight + bias; mean, rstd (BT) are kept for backward. */
void rd_layernorm_forward(float *out,
                          float *mean,
                          float *rstd,
                          const float *inp,
                          const float *weight,
                          const float *bias,
                          size_t BT,
                          size_t C);
void rd_layernorm_backward(float *dinp,
                           float *dweight,
                           float *dbias,
                           const float *dout,
                           const float *inp,
                           const float *weight,
                           const float *mean,
                           const float *rstd,
                           size_t BT,
                           size_t C);
// Naive twins (one plain loop per row, double accumulators): same contracts as the fast ones.
void rd_layernorm_forward_naive(float *out,
                                float *mean,
                                float *rstd,
                                const float *inp,
                                const float *weight,
                                const float *bias,
                                size_t BT,
                                size_t C);
void rd_layernorm_backward_naive(float *dinp,
                                 float *dweight,
                                 float *dbias,
                                 const float *dout,
                                 const float *inp,
                                 const float *weight,
                                 const float *mean,
                                 const float *rstd,
                                 size_t BT,
                                 size_t C);

// ---------------------------------------------------------------------------------------------
// Multi-head self-attention

/** qkv (B, T, 3C) holds [q | k | v] per position, each split into NH heads of hs = C / NH.
 *  att (B, NH, T, T) receives the attention probabilities (kept for backward); out (B, T, C).
 *  mask (B, T): key t of example b is visible when mask[b, t] != 0 (and t <= query when causal).
 *  A hidden key's score is dropped unread, in both twins: a NaN or inf in its key (garbage in
 *  a padded position) changes no probability. (Its key and value still meet its probability 0
 *  in the matmuls, so a NaN there reaches out or dq as 0 * NaN.)
 *  Scale 1 / sqrt(hs). The BLAS version runs two cblas_sgemm per (b, head) straight on the
 *  strided qkv (lda = 3C): no copies. It runs each example on its positions up to the last
 *  valid one only (histories keep their padding last): the queries after it get an output of 0
 *  and probabilities of 0, and rd_attention_backward neither reads their dout nor gives them a
 *  gradient. The naive twin computes every query; the two agree on the queries up to the last
 *  valid position, and on every gradient when dout is 0 after it (as rd_tblock's is). */
void rd_attention_forward(float *out,
                          float *att,
                          const float *qkv,
                          const float *mask,
                          size_t B,
                          size_t T,
                          size_t C,
                          size_t NH,
                          int causal);
/** dqkv (B, T, 3C) += gradient; scratch (T, T) floats. */
void rd_attention_backward(float *dqkv,
                           float *scratch,
                           const float *dout,
                           const float *qkv,
                           const float *att,
                           const float *mask,
                           size_t B,
                           size_t T,
                           size_t C,
                           size_t NH,
                           int causal);
void rd_attention_forward_naive(float *out,
                                float *att,
                                const float *qkv,
                                const float *mask,
                                size_t B,
                                size_t T,
                                size_t C,
                                size_t NH,
                                int causal);
void rd_attention_backward_naive(float *dqkv,
                                 float *scratch,
                                 const float *dout,
                                 const float *qkv,
                                 const float *att,
                                 const float *mask,
                                 size_t B,
                                 size_t T,
                                 size_t C,
                                 size_t NH,
                                 int causal);

// ---------------------------------------------------------------------------------------------
// Target attention: one query per example over a sequence (multi-head, scaled dot product)

/** q (B, C); kv (B, T, 2C) holds [k | v] per position; att (B, NH, T) probabilities (kept);
 *  out (B, C) = per head sum_t att[b, h, t] v[b, t, h]. mask (B, T) as for rd_attention. */
void rd_target_attention_forward(float *out,
                                 float *att,
                                 const float *q,
                                 const float *kv,
                                 const float *mask,
                                 size_t B,
                                 size_t T,
                                 size_t C,
                                 size_t NH);
/** dq (B, C) += ..., dkv (B, T, 2C) += ...; dq may be NULL. scratch (T) floats. */
void rd_target_attention_backward(float *dq,
                                  float *dkv,
                                  float *scratch,
                                  const float *dout,
                                  const float *q,
                                  const float *kv,
                                  const float *att,
                                  const float *mask,
                                  size_t B,
                                  size_t T,
                                  size_t C,
                                  size_t NH);
void rd_target_attention_forward_naive(float *out,
                                       float *att,
                                       const float *q,
                                       const float *kv,
                                       const float *mask,
                                       size_t B,
                                       size_t T,
                                       size_t C,
                                       size_t NH);
void rd_target_attention_backward_naive(float *dq,
                                        float *dkv,
                                        float *scratch,
                                        const float *dout,
                                        const float *q,
                                        const float *kv,
                                        const float *att,
                                        const float *mask,
                                        size_t B,
                                        size_t T,
                                        size_t C,
                                        size_t NH);

// ---------------------------------------------------------------------------------------------
// Masked mean over a sequence

/** out (B, C) = mean over valid t of inp (B, T, C); no valid position -> zeros. */
void rd_masked_mean_forward(
    float *out, const float *inp, const float *mask, size_t B, size_t T, size_t C);
void rd_masked_mean_backward(
    float *dinp, const float *dout, const float *mask, size_t B, size_t T, size_t C);

// ---------------------------------------------------------------------------------------------
// Losses (per example; the model averages)

/** losses (B) = BCE(sigma(logits), labels) = softplus(z) - y z, labels in [0, 1]. */
void rd_bce_logits_forward(float *losses, const float *logits, const float *labels, size_t B);
/** dlogits (B) += dlosses[b] * (sigma(z) - y). */
void rd_bce_logits_backward(
    float *dlogits, const float *dlosses, const float *logits, const float *labels, size_t B);
/** losses (B) = T^2 * BCE(sigma(z / T), sigma(z_t / T)) with soft target p_t = sigma(z_t / T).
 *  Rec-Distill's cross-debias hook: `teacher_logits` must already be the teacher's raw logit
 *  projected through the STUDENT's calibration (the caller applies f_S and passes its logit);
 *  this kernel never calibrates. temperature > 0 (asserted). */
void rd_distill_bce_forward(
    float *losses, const float *logits, const float *teacher_logits, float temperature, size_t B);
/** dlogits (B) += dlosses[b] * T * (sigma(z / T) - sigma(z_t / T)). */
void rd_distill_bce_backward(float *dlogits,
                             const float *dlosses,
                             const float *logits,
                             const float *teacher_logits,
                             float temperature,
                             size_t B);

// ---------------------------------------------------------------------------------------------
// Composite layers. Their weight structs are used for both the parameters and their gradients
// (same layout, llm.c ParameterTensors); activation structs point into the activation slab.

/** Dimensions of the sequence composites. */
typedef struct rd_seq_dims {
    size_t B;   // examples
    size_t T;   // sequence length
    size_t C;   // model width of the branch
    size_t NH;  // heads (C % NH == 0)
    size_t E;   // request features feeding the query (rd_reqattn)
    size_t H;   // hidden width of the DIN attention MLP
    int causal; // self-attention: 1 = key t visible to query s only when t <= s
    int act;    // rd_act_kind of the FFN (rd_tblock) and the DIN attention MLP
} rd_seq_dims;

// ---- DIN: s[b,t] = w2 . act(W1 [q, k_t, q - k_t, q * k_t] + b1) + b2, p = softmax over valid t,
//      out[b] = sum_t p[b,t] k[b,t]
typedef struct rd_din_weights {
    float *w1; // (H, 4C)
    float *b1; // (H)
    float *w2; // (1, H)
    float *b2; // (1)
} rd_din_weights;

// rd_din_forward runs the attention MLP on the valid positions (mask != 0) only: the rows of
// feat, hid, hid_act and score (and of the scratch's dfeat, dhid, dhid_act, dscore in the
// backward pass) then hold those positions first, in (b, t) order; att is always positional.
// It also folds the first layer: W1 [q, k, q-k, q*k] = (Wa + Wc) q + [Wb - Wc | Wd] [k, q*k]
// (W1 = [Wa | Wb | Wc | Wd]), so its feat rows are [k, q*k] (2C wide) and the query's share is
// computed once per example; fold and dfold hold the folded weights and their gradients
// (rd_din_fold_floats each). Gradients are unfolded into dw->w1, which keeps the plain layout.
// The naive twin runs the plain layer on every position (rows (b, t), feat 4C wide), as a mask
// of all ones does, and needs neither fold nor dfold.
typedef struct rd_din_acts {
    float *feat;    // (B, T, 4C) attention-unit input; (B, T, 2C) suffice for rd_din_forward
    float *hid;     // (B, T, H) pre-activation
    float *hid_act; // (B, T, H)
    float *score;   // (B, T)
    float *att;     // (B, T) softmax over valid t; 0 on padding
    float *fold;    // rd_din_fold_floats: folded first-layer weights, the query's share (B, H)
} rd_din_acts;

typedef struct rd_din_scratch {
    float *dfeat;    // (B, T, 4C); (B, T, 2C) suffice for rd_din_backward
    float *dhid;     // (B, T, H)
    float *dhid_act; // (B, T, H)
    float *dscore;   // (B, T)
    float *dfold;    // rd_din_fold_floats: their gradients, summed hidden gradients (B, H)
} rd_din_scratch;

/** Floats of rd_din_acts.fold and of rd_din_scratch.dfold for dims d (d->B the largest batch). */
size_t rd_din_fold_floats(const rd_seq_dims *d);

/** q (B, C), k (B, T, C), mask (B, T) -> out (B, C). */
void rd_din_forward(float *out,
                    const rd_din_acts *acts,
                    const float *q,
                    const float *k,
                    const float *mask,
                    const rd_din_weights *w,
                    const rd_seq_dims *d);
/** Shared-history inference (rd_batch.seq_shared / tok_shared): q (B, C), but one history
 *  k (T, C), mask (T) (not NULL) that every example reads -> out (B, C). The keys' share of the
 *  attention MLP's first layer runs once for the history, so the per-row matmul is C wide, not
 *  2C; equals rd_din_forward on B copies of k and mask but for rounding (the terms are summed in
 *  another order). Forward only: the acts hold no per-example keys for a backward. */
void rd_din_forward_shared(float *out,
                           const rd_din_acts *acts,
                           const float *q,
                           const float *k,
                           const float *mask,
                           const rd_din_weights *w,
                           const rd_seq_dims *d);
/** dq (B, C) +=, dk (B, T, C) +=, dw +=. dq may be NULL. */
void rd_din_backward(float *dq,
                     float *dk,
                     const rd_din_weights *dw,
                     const rd_din_scratch *s,
                     const float *dout,
                     const float *q,
                     const float *k,
                     const float *mask,
                     const rd_din_acts *acts,
                     const rd_din_weights *w,
                     const rd_seq_dims *d);
void rd_din_forward_naive(float *out,
                          const rd_din_acts *acts,
                          const float *q,
                          const float *k,
                          const float *mask,
                          const rd_din_weights *w,
                          const rd_seq_dims *d);
void rd_din_backward_naive(float *dq,
                           float *dk,
                           const rd_din_weights *dw,
                           const rd_din_scratch *s,
                           const float *dout,
                           const float *q,
                           const float *k,
                           const float *mask,
                           const rd_din_acts *acts,
                           const rd_din_weights *w,
                           const rd_seq_dims *d);

// ---- Transformer block, pre-LN:
//      x1 = inp + proj(attention(qkv(ln1(inp))))
//      out = x1 + fcproj(act(fc(ln2(x1))))          FFN width 4C
typedef struct rd_tblock_weights {
    float *ln1w, *ln1b; // (C)
    float *qkvw;        // (3C, C)
    float *qkvb;        // (3C)
    float *projw;       // (C, C)
    float *projb;       // (C)
    float *ln2w, *ln2b; // (C)
    float *fcw;         // (4C, C)
    float *fcb;         // (4C)
    float *fcprojw;     // (C, 4C)
    float *fcprojb;     // (C)
} rd_tblock_weights;

typedef struct rd_tblock_acts {
    float *ln1;                 // (B, T, C)
    float *ln1_mean, *ln1_rstd; // (B, T)
    float *qkv;                 // (B, T, 3C)
    float *att;                 // (B, NH, T, T)
    float *atty;                // (B, T, C) attention output before proj
    float *res;                 // (B, T, C) x1
    float *ln2;                 // (B, T, C)
    float *ln2_mean, *ln2_rstd; // (B, T)
    float *fch;                 // (B, T, 4C)
    float *fch_act;             // (B, T, 4C)
} rd_tblock_acts;

/** Backward scratch; blocks run their backward one at a time, so all blocks share one. */
typedef struct rd_tblock_scratch {
    float *dres;     // (B, T, C)
    float *dln;      // (B, T, C)
    float *dqkv;     // (B, T, 3C)
    float *datty;    // (B, T, C)
    float *dfch;     // (B, T, 4C)
    float *dfch_act; // (B, T, 4C)
    float *datt;     // (T, T)
} rd_tblock_scratch;

/** inp (B, T, C), mask (B, T) -> out (B, T, C); out must not alias inp. */
void rd_tblock_forward(float *out,
                       const rd_tblock_acts *acts,
                       const float *inp,
                       const float *mask,
                       const rd_tblock_weights *w,
                       const rd_seq_dims *d);
void rd_tblock_backward(float *dinp,
                        const rd_tblock_weights *dw,
                        const rd_tblock_scratch *s,
                        const float *dout,
                        const float *inp,
                        const float *mask,
                        const rd_tblock_acts *acts,
                        const rd_tblock_weights *w,
                        const rd_seq_dims *d);
void rd_tblock_forward_naive(float *out,
                             const rd_tblock_acts *acts,
                             const float *inp,
                             const float *mask,
                             const rd_tblock_weights *w,
                             const rd_seq_dims *d);
void rd_tblock_backward_naive(float *dinp,
                              const rd_tblock_weights *dw,
                              const rd_tblock_scratch *s,
                              const float *dout,
                              const float *inp,
                              const float *mask,
                              const rd_tblock_acts *acts,
                              const rd_tblock_weights *w,
                              const rd_seq_dims *d);

// ---- Request-query target attention (the end of the transformer branch):
//      q = Wq x_req + bq;  [k | v] = Wkv ln(h) + bkv;  out = Wo attn(q, k, v) + bo
typedef struct rd_reqattn_weights {
    float *lnw, *lnb; // (C)
    float *qw;        // (C, E)
    float *qb;        // (C)
    float *kvw;       // (2C, C)
    float *kvb;       // (2C)
    float *projw;     // (C, C)
    float *projb;     // (C)
} rd_reqattn_weights;

typedef struct rd_reqattn_acts {
    float *ln;                // (B, T, C)
    float *ln_mean, *ln_rstd; // (B, T)
    float *q;                 // (B, C)
    float *kv;                // (B, T, 2C)
    float *att;               // (B, NH, T)
    float *o;                 // (B, C) before proj
} rd_reqattn_acts;

typedef struct rd_reqattn_scratch {
    float *dln; // (B, T, C)
    float *dkv; // (B, T, 2C)
    float *dq;  // (B, C)
    float *do_; // (B, C)
    float *dp;  // (T)
} rd_reqattn_scratch;

/** x_req (B, E), h (B, T, C), mask (B, T) -> out (B, C). The layer norm and the key / value
 *  linear run on the valid rows of h only (ln, ln_mean/rstd packed first, as rd_tblock_forward
 *  packs its rows; kv positional, 0 at padding); the naive twin runs every row. */
void rd_reqattn_forward(float *out,
                        const rd_reqattn_acts *acts,
                        const float *x_req,
                        const float *h,
                        const float *mask,
                        const rd_reqattn_weights *w,
                        const rd_seq_dims *d);
/** Shared-history inference: x_req (B, E), but one history h (T, C), mask (T) (not NULL) that
 *  every example reads -> out (B, C). The layer norm and the key / value linear run once (ln,
 *  kv hold that history's rows: T of kv), the query, attention (att (B, NH, T)) and output per
 *  example. Equals rd_reqattn_forward on B copies of h and mask up to the rounding of the
 *  key / value matmul on fewer rows (a few ulp, as another batch size). Forward only. */
void rd_reqattn_forward_shared(float *out,
                               const rd_reqattn_acts *acts,
                               const float *x_req,
                               const float *h,
                               const float *mask,
                               const rd_reqattn_weights *w,
                               const rd_seq_dims *d);
/** dx_req (B, E) += (may be NULL), dh (B, T, C) +=, dw +=. */
void rd_reqattn_backward(float *dx_req,
                         float *dh,
                         const rd_reqattn_weights *dw,
                         const rd_reqattn_scratch *s,
                         const float *dout,
                         const float *x_req,
                         const float *h,
                         const float *mask,
                         const rd_reqattn_acts *acts,
                         const rd_reqattn_weights *w,
                         const rd_seq_dims *d);
void rd_reqattn_forward_naive(float *out,
                              const rd_reqattn_acts *acts,
                              const float *x_req,
                              const float *h,
                              const float *mask,
                              const rd_reqattn_weights *w,
                              const rd_seq_dims *d);
void rd_reqattn_backward_naive(float *dx_req,
                               float *dh,
                               const rd_reqattn_weights *dw,
                               const rd_reqattn_scratch *s,
                               const float *dout,
                               const float *x_req,
                               const float *h,
                               const float *mask,
                               const rd_reqattn_acts *acts,
                               const rd_reqattn_weights *w,
                               const rd_seq_dims *d);

// ---- MLP: n linear layers, `act` after each but the last, `act_last` after the last.
#define RD_MLP_MAX 9 // RD_MAX_LAYERS hidden layers + one output layer

typedef struct rd_mlp_shape {
    size_t n;                    // layers, 1..RD_MLP_MAX
    size_t dims[RD_MLP_MAX + 1]; // dims[0] input width, dims[i + 1] output width of layer i
    int act;                     // rd_act_kind after hidden layers
    int act_last;                // rd_act_kind after the last layer (RD_ACT_NONE for logits)
} rd_mlp_shape;

typedef struct rd_mlp_weights {
    float *w[RD_MLP_MAX]; // w[i] (dims[i + 1], dims[i])
    float *b[RD_MLP_MAX]; // b[i] (dims[i + 1])
} rd_mlp_weights;

typedef struct rd_mlp_acts {
    float *pre[RD_MLP_MAX];  // (B, dims[i + 1]) before the activation
    float *post[RD_MLP_MAX]; // (B, dims[i + 1]) after it; == pre[i] when that activation is none
} rd_mlp_acts;

typedef struct rd_mlp_scratch {
    float *a; // (B, max dims[1..n]) two ping-pong buffers
    float *b; // (B, max dims[1..n])
} rd_mlp_scratch;

/** @return the MLP output (B, dims[n]) inside acts: post[n - 1]. */
float *rd_mlp_output(const rd_mlp_acts *acts, const rd_mlp_shape *s);
/** inp (B, dims[0]) -> acts (output: rd_mlp_output). */
void rd_mlp_forward(const rd_mlp_acts *acts,
                    const float *inp,
                    const rd_mlp_weights *w,
                    const rd_mlp_shape *s,
                    size_t B);
/** dinp (B, dims[0]) += (may be NULL); dw +=; dout (B, dims[n]) must not point into scratch. */
void rd_mlp_backward(float *dinp,
                     const rd_mlp_weights *dw,
                     const rd_mlp_scratch *scratch,
                     const float *dout,
                     const float *inp,
                     const rd_mlp_acts *acts,
                     const rd_mlp_weights *w,
                     const rd_mlp_shape *s,
                     size_t B);
/** Dropout inside an MLP (training passes only): keep[i] (B, dims[i + 1]) holds, per output of
 *  layer i, 0 (dropped) or 1 / (1 - p) (kept, inverted dropout); out[i] (B, dims[i + 1]) receives
 *  post[i] * keep[i], which is what the next layer (or the caller, rd_mlp_output_dropout) reads.
 *  keep[i] NULL = no dropout on layer i. The backward multiplies the gradient of out[i] by keep[i]
 *  before the activation's derivative, so the masks must be those of the forward. */
typedef struct rd_mlp_dropout {
    const float *keep[RD_MLP_MAX];
    float *out[RD_MLP_MAX];
} rd_mlp_dropout;

/** rd_mlp_forward with dropout d (NULL = rd_mlp_forward). */
void rd_mlp_forward_dropout(const rd_mlp_acts *acts,
                            const rd_mlp_dropout *d,
                            const float *inp,
                            const rd_mlp_weights *w,
                            const rd_mlp_shape *s,
                            size_t B);
/** rd_mlp_backward of an rd_mlp_forward_dropout with the same d; dout is d loss / d of the
 *  output the forward gave (rd_mlp_output_dropout). */
void rd_mlp_backward_dropout(float *dinp,
                             const rd_mlp_weights *dw,
                             const rd_mlp_scratch *scratch,
                             const float *dout,
                             const float *inp,
                             const rd_mlp_acts *acts,
                             const rd_mlp_dropout *d,
                             const rd_mlp_weights *w,
                             const rd_mlp_shape *s,
                             size_t B);
/** @return the output of an rd_mlp_forward_dropout: out[n - 1] when the last layer has dropout,
 *  else post[n - 1]. */
float *
rd_mlp_output_dropout(const rd_mlp_acts *acts, const rd_mlp_dropout *d, const rd_mlp_shape *s);
void rd_mlp_forward_dropout_naive(const rd_mlp_acts *acts,
                                  const rd_mlp_dropout *d,
                                  const float *inp,
                                  const rd_mlp_weights *w,
                                  const rd_mlp_shape *s,
                                  size_t B);
void rd_mlp_backward_dropout_naive(float *dinp,
                                   const rd_mlp_weights *dw,
                                   const rd_mlp_scratch *scratch,
                                   const float *dout,
                                   const float *inp,
                                   const rd_mlp_acts *acts,
                                   const rd_mlp_dropout *d,
                                   const rd_mlp_weights *w,
                                   const rd_mlp_shape *s,
                                   size_t B);
/** Fill keep (n) with dropout scales for rate p in [0, 1): element k is 0 when
 *  rd_mix64(key + k) / 2^64 < p, else 1 / (1 - p). The same key gives the same mask (a resumed
 *  or re-run step draws the same one). */
void rd_dropout_mask(float *keep, size_t n, float p, uint64_t key);
void rd_mlp_forward_naive(const rd_mlp_acts *acts,
                          const float *inp,
                          const rd_mlp_weights *w,
                          const rd_mlp_shape *s,
                          size_t B);
void rd_mlp_backward_naive(float *dinp,
                           const rd_mlp_weights *dw,
                           const rd_mlp_scratch *scratch,
                           const float *dout,
                           const float *inp,
                           const rd_mlp_acts *acts,
                           const rd_mlp_weights *w,
                           const rd_mlp_shape *s,
                           size_t B);

// ---- Two towers on a shared backbone output h (B, Hd): each tower is an MLP ending in one logit
//      (shape dims[0] = Hd, dims[n] = 1, act_last none). They share no parameter, so the aux
//      tower's loss can reach the main tower's weights only through h (never directly).
typedef struct rd_two_tower {
    rd_mlp_shape shape[2]; // [0] main, [1] aux
    rd_mlp_weights w[2];
    rd_mlp_acts acts[2];
} rd_two_tower;

/** h (B, Hd) -> z_main = rd_mlp_output(acts[0]) (B), z_aux = rd_mlp_output(acts[1]) (B). */
void rd_two_tower_forward(const rd_two_tower *t, const float *h, size_t B);
/** dh (B, Hd) += both towers' contributions (may be NULL); dw[i] += ...; dz_main / dz_aux (B)
 *  may be NULL (that tower contributes nothing). */
void rd_two_tower_backward(float *dh,
                           const rd_mlp_weights dw[2],
                           const rd_mlp_scratch *scratch,
                           const float *dz_main,
                           const float *dz_aux,
                           const float *h,
                           const rd_two_tower *t,
                           size_t B);
void rd_two_tower_forward_naive(const rd_two_tower *t, const float *h, size_t B);
void rd_two_tower_backward_naive(float *dh,
                                 const rd_mlp_weights dw[2],
                                 const rd_mlp_scratch *scratch,
                                 const float *dz_main,
                                 const float *dz_aux,
                                 const float *h,
                                 const rd_two_tower *t,
                                 size_t B);

#ifdef __cplusplus
}
#endif
#endif // RD_LAYERS_H
