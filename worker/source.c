// source.c — IAT stage 1: the source model (backbone -> bottleneck token -> causal Source
// Instance Transformer over a user's window -> decompress -> head, BCE) and a single-process
// driver that trains it and writes a token for every event to the token store (rd/source.h).
//
// Invariants:
// - The stored token is the PRE-SIT bottleneck output of the instance (s->tokens); the SIT only
//   shapes what the head sees during training (IAT: storing SIT outputs costs downstream AUC).
// - Frozen previous tokens are copied into the SIT input and their input gradient is dropped:
//   nothing outside this batch's own instances is ever differentiated.
// - Causality: a group's sequence is [frozen prefix | new instances | padding], time-sorted and
//   left-aligned, under a causal mask, so position p never sees a later position (padding
//   included: it comes after every valid position).
// - Forward and backward never allocate: one parameter, gradient, optimizer-state and activation
//   slab each, carved at create by two passes of layout() (count, then assign), as in model.c.
//
// Workload: with d = 64, T = 32 and B = 256 the SIT is small next to the backbone; the group
// tensors are (G, T, d) with G <= max_groups, padded to T per group.
#include "rd/source.h"

#include "rd/alloc.h"
#include "rd/dense_optim.h"
#include "rd/hash.h"
#include "rd/kv.h"
#include "rd/log.h"
#include "rd/metrics.h"
#include "rd/rng.h"
#include "rd/table.h"

#include "slab_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Bottleneck kernel

void rd_source_bottleneck_forward(float *out,
                                  float *pre,
                                  const float *inp,
                                  const float *weight,
                                  const float *bias,
                                  size_t BT,
                                  size_t C,
                                  size_t D) {
    RD_ASSERT(out && pre && inp && weight && out != pre);
    rd_linear_forward(pre, inp, weight, bias, BT, C, D);
    rd_sigmoid_forward(out, pre, BT * D);
}

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
                                   size_t D) {
    RD_ASSERT(dweight && dpre && dout && inp && weight && out);
    memset(dpre, 0, BT * D * sizeof(float));
    rd_sigmoid_backward(dpre, dout, out, BT * D);
    rd_linear_backward(dinp, dweight, dbias, dpre, inp, weight, BT, C, D);
}

void rd_source_bottleneck_forward_naive(float *out,
                                        float *pre,
                                        const float *inp,
                                        const float *weight,
                                        const float *bias,
                                        size_t BT,
                                        size_t C,
                                        size_t D) {
    rd_linear_forward_naive(pre, inp, weight, bias, BT, C, D);
    rd_sigmoid_forward_naive(out, pre, BT * D);
}

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
                                         size_t D) {
    for (size_t i = 0; i < BT * D; i++)
        dpre[i] = dout[i] * out[i] * (1.0f - out[i]);
    rd_linear_backward_naive(dinp, dweight, dbias, dpre, inp, weight, BT, C, D);
}

// ---------------------------------------------------------------------------------------------
// Source Instance Transformer kernel

typedef void (*tblock_fwd_fn)(float *,
                              const rd_tblock_acts *,
                              const float *,
                              const float *,
                              const rd_tblock_weights *,
                              const rd_seq_dims *);
typedef void (*tblock_bwd_fn)(float *,
                              const rd_tblock_weights *,
                              const rd_tblock_scratch *,
                              const float *,
                              const float *,
                              const float *,
                              const rd_tblock_acts *,
                              const rd_tblock_weights *,
                              const rd_seq_dims *);

static void sit_forward(tblock_fwd_fn blk,
                        float *out,
                        const rd_source_sit_acts *a,
                        const float *inp,
                        const float *mask,
                        const rd_source_sit_weights *w,
                        const rd_seq_dims *d,
                        size_t layers) {
    RD_ASSERT(d->causal == 1 && layers >= 1 && layers <= RD_SOURCE_MAX_SIT);
    size_t G = d->B, T = d->T, C = d->C;
    for (size_t g = 0; g < G; g++)
        for (size_t t = 0; t < T; t++) {
            const float *x = inp + (g * T + t) * C;
            const float *pe = w->pos + t * C;
            float *y = a->x[0] + (g * T + t) * C;
            for (size_t i = 0; i < C; i++)
                y[i] = x[i] + pe[i];
        }
    for (size_t l = 0; l < layers; l++)
        blk(a->x[l + 1], &a->blk[l], a->x[l], mask, &w->blk[l], d);
    rd_layernorm_forward(out, a->lnf_mean, a->lnf_rstd, a->x[layers], w->lnfw, w->lnfb, G * T, C);
}

static void sit_backward(tblock_bwd_fn blk,
                         float *dinp,
                         const rd_source_sit_weights *dw,
                         const rd_source_sit_scratch *s,
                         const float *dout,
                         const float *mask,
                         const rd_source_sit_acts *a,
                         const rd_source_sit_weights *w,
                         const rd_seq_dims *d,
                         size_t layers) {
    RD_ASSERT(d->causal == 1 && layers >= 1 && layers <= RD_SOURCE_MAX_SIT);
    size_t G = d->B, T = d->T, C = d->C, n = G * T * C;
    float *cur = s->dx[0];
    memset(cur, 0, n * sizeof(float));
    rd_layernorm_backward(cur, dw->lnfw, dw->lnfb, dout, a->x[layers], w->lnfw, a->lnf_mean,
                          a->lnf_rstd, G * T, C);
    for (size_t l = layers; l-- > 0;) {
        float *nxt = cur == s->dx[0] ? s->dx[1] : s->dx[0];
        memset(nxt, 0, n * sizeof(float));
        blk(nxt, &dw->blk[l], &s->bs, cur, a->x[l], mask, &a->blk[l], &w->blk[l], d);
        cur = nxt;
    }
    for (size_t g = 0; g < G; g++)
        for (size_t t = 0; t < T; t++) {
            const float *gx = cur + (g * T + t) * C;
            float *gp = dw->pos + t * C;
            for (size_t i = 0; i < C; i++)
                gp[i] += gx[i];
        }
    if (dinp)
        for (size_t i = 0; i < n; i++)
            dinp[i] += cur[i];
}

void rd_source_sit_forward(float *out,
                           const rd_source_sit_acts *acts,
                           const float *inp,
                           const float *mask,
                           const rd_source_sit_weights *w,
                           const rd_seq_dims *d,
                           size_t layers) {
    sit_forward(rd_tblock_forward, out, acts, inp, mask, w, d, layers);
}

void rd_source_sit_backward(float *dinp,
                            const rd_source_sit_weights *dw,
                            const rd_source_sit_scratch *s,
                            const float *dout,
                            const float *inp,
                            const float *mask,
                            const rd_source_sit_acts *acts,
                            const rd_source_sit_weights *w,
                            const rd_seq_dims *d,
                            size_t layers) {
    (void)inp; // the block inputs are kept in acts->x
    sit_backward(rd_tblock_backward, dinp, dw, s, dout, mask, acts, w, d, layers);
}

void rd_source_sit_forward_naive(float *out,
                                 const rd_source_sit_acts *acts,
                                 const float *inp,
                                 const float *mask,
                                 const rd_source_sit_weights *w,
                                 const rd_seq_dims *d,
                                 size_t layers) {
    sit_forward(rd_tblock_forward_naive, out, acts, inp, mask, w, d, layers);
}

void rd_source_sit_backward_naive(float *dinp,
                                  const rd_source_sit_weights *dw,
                                  const rd_source_sit_scratch *s,
                                  const float *dout,
                                  const float *inp,
                                  const float *mask,
                                  const rd_source_sit_acts *acts,
                                  const rd_source_sit_weights *w,
                                  const rd_seq_dims *d,
                                  size_t layers) {
    (void)inp;
    sit_backward(rd_tblock_backward_naive, dinp, dw, s, dout, mask, acts, w, d, layers);
}

// ---------------------------------------------------------------------------------------------
// The source model: private state

struct rd__source_priv {
    float *acts; // activation slab
    rd__init_spec *inits;
    size_t *row_pos; // (max_batch) position g * slots + p of each new instance in the SIT tensors
                     // (its unlabelled slot with sit_pairs; its labelled one is the next)
    int act;         // rd_act_kind of the backbone model (decompress and head use it too)
    int sit_on;      // scheme 2 with sit_layers > 0

    // Parameters (p) and gradients (g)
    float *bw_p, *bw_g; // (d, Hd) bottleneck
    float *bb_p, *bb_g; // (d)
    rd_mlp_shape dec_shape, head_shape;
    rd_mlp_weights dec_p, dec_g, head_p, head_g;
    rd_source_sit_weights sit_p, sit_g;
    float *lab_p, *lab_g; // (3, d) SIT label embeddings: 0, 1, unknown (sit_labels only)
    rd_seq_dims sd;       // SIT dims (B = groups of the batch, T = slots)
    size_t slots;         // SIT positions per group: T, or 2 T with sit_pairs
    uint8_t *sit_lab;     // (max_groups, slots) label index added at each SIT position
    float *code;          // (d) scratch: one item code (sit_item_code)

    // Activations
    const float *h; // (B, Hd) backbone output (inside the backbone's slab)
    float *pre;     // (B, d) bottleneck pre-activation
    float *sit_in;  // (G, slots, d)
    float *mask;    // (G, slots)
    float *sit_out; // (G, slots, d)
    rd_source_sit_acts sit_a;
    float *ysit;    // (B, d) SIT outputs at the new instances
    const float *y; // = ysit or s->tokens
    rd_mlp_acts dec_a, head_a;
    float *loss_b, *wts, *dz; // (B)

    // Backward scratch
    float *ddec;     // (B, Hd)
    float *dy;       // (B, d)
    float *dsit_out; // (G, slots, d)
    float *dsit_in;  // (G, slots, d)
    rd_source_sit_scratch sit_s;
    float *dtok; // (B, d)
    float *dpre; // (B, d)
    float *dh;   // (B, Hd)
    rd_mlp_scratch mlp_sc;

    size_t fwd_B, fwd_G; // B and groups of the last forward, 0 = none
};

// ---------------------------------------------------------------------------------------------
// Layout (two passes: count, then assign)

typedef struct builder {
    rd_source *s;
    rd__source_priv *p;
    rd__carver c;
    size_t sit_acts; // floats of the activation slab that the SIT takes (its blocks and scratch)
} builder;

static void
param(builder *bd, float **pp, float **gp, size_t n, int init, float std, const char *fmt, ...)
    RD_PRINTF(7, 8);

static void
param(builder *bd, float **pp, float **gp, size_t n, int init, float std, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rd__carve_vparam(&bd->c, pp, gp, n, init, std, fmt, ap);
    va_end(ap);
}

static float *act(builder *bd, size_t n) {
    return rd__carve_act(&bd->c, n);
}

static float fan_std(size_t in) {
    return 1.0f / sqrtf((float)in);
}

static void layout_mlp(builder *bd,
                       const char *name,
                       const rd_mlp_shape *sh,
                       rd_mlp_weights *w,
                       rd_mlp_weights *g,
                       rd_mlp_acts *a) {
    size_t B = bd->s->max_batch;
    for (size_t i = 0; i < sh->n; i++) {
        size_t in = sh->dims[i], out = sh->dims[i + 1];
        param(bd, &w->w[i], &g->w[i], out * in, RD__INIT_NORMAL, fan_std(in), "%s.l%zu.w", name, i);
        param(bd, &w->b[i], &g->b[i], out, RD__INIT_ZERO, 0.0f, "%s.l%zu.b", name, i);
        a->pre[i] = act(bd, B * out);
        int f = i + 1 < sh->n ? sh->act : sh->act_last;
        a->post[i] = f == RD_ACT_NONE ? a->pre[i] : act(bd, B * out);
    }
}

static void layout(builder *bd) {
    rd_source *s = bd->s;
    rd__source_priv *p = bd->p;
    size_t B = s->max_batch, G = s->max_groups, T = p->slots, d = s->dim, Hd = s->hidden;
    // Tensor order: bottleneck, decompress, head, then the SIT, so that a temporal model and a
    // user-order model without SIT have the same tensors at the same indices (same init).
    param(bd, &p->bw_p, &p->bw_g, d * Hd, RD__INIT_NORMAL, fan_std(Hd), "bottleneck.w");
    param(bd, &p->bb_p, &p->bb_g, d, RD__INIT_ZERO, 0.0f, "bottleneck.b");
    layout_mlp(bd, "decompress", &p->dec_shape, &p->dec_p, &p->dec_g, &p->dec_a);
    layout_mlp(bd, "head", &p->head_shape, &p->head_p, &p->head_g, &p->head_a);
    size_t sit_from = bd->c.aoff;
    if (p->sit_on) {
        size_t L = s->sit_layers, C = d, NH = s->sit_heads, GT = G * T;
        float res_std = fan_std(C) / sqrtf(2.0f * (float)L);
        rd_source_sit_weights *w = &p->sit_p, *g = &p->sit_g;
        param(bd, &w->pos, &g->pos, T * C, RD__INIT_NORMAL, 0.02f, "sit.pos");
        for (size_t l = 0; l < L; l++) {
            rd_tblock_weights *bw = &w->blk[l], *bg = &g->blk[l];
            param(bd, &bw->ln1w, &bg->ln1w, C, RD__INIT_ONE, 0.0f, "sit.block%zu.ln1w", l);
            param(bd, &bw->ln1b, &bg->ln1b, C, RD__INIT_ZERO, 0.0f, "sit.block%zu.ln1b", l);
            param(bd, &bw->qkvw, &bg->qkvw, 3 * C * C, RD__INIT_NORMAL, fan_std(C),
                  "sit.block%zu.qkvw", l);
            param(bd, &bw->qkvb, &bg->qkvb, 3 * C, RD__INIT_ZERO, 0.0f, "sit.block%zu.qkvb", l);
            param(bd, &bw->projw, &bg->projw, C * C, RD__INIT_NORMAL, res_std, "sit.block%zu.projw",
                  l);
            param(bd, &bw->projb, &bg->projb, C, RD__INIT_ZERO, 0.0f, "sit.block%zu.projb", l);
            param(bd, &bw->ln2w, &bg->ln2w, C, RD__INIT_ONE, 0.0f, "sit.block%zu.ln2w", l);
            param(bd, &bw->ln2b, &bg->ln2b, C, RD__INIT_ZERO, 0.0f, "sit.block%zu.ln2b", l);
            param(bd, &bw->fcw, &bg->fcw, 4 * C * C, RD__INIT_NORMAL, fan_std(C),
                  "sit.block%zu.fcw", l);
            param(bd, &bw->fcb, &bg->fcb, 4 * C, RD__INIT_ZERO, 0.0f, "sit.block%zu.fcb", l);
            param(bd, &bw->fcprojw, &bg->fcprojw, 4 * C * C, RD__INIT_NORMAL,
                  fan_std(4 * C) / sqrtf(2.0f * (float)L), "sit.block%zu.fcprojw", l);
            param(bd, &bw->fcprojb, &bg->fcprojb, C, RD__INIT_ZERO, 0.0f, "sit.block%zu.fcprojb",
                  l);
            rd_tblock_acts *a = &p->sit_a.blk[l];
            a->ln1 = act(bd, GT * C);
            a->ln1_mean = act(bd, GT);
            a->ln1_rstd = act(bd, GT);
            a->qkv = act(bd, GT * 3 * C);
            a->att = act(bd, G * NH * T * T);
            a->atty = act(bd, GT * C);
            a->res = act(bd, GT * C);
            a->ln2 = act(bd, GT * C);
            a->ln2_mean = act(bd, GT);
            a->ln2_rstd = act(bd, GT);
            a->fch = act(bd, GT * 4 * C);
            a->fch_act = act(bd, GT * 4 * C);
        }
        param(bd, &w->lnfw, &g->lnfw, C, RD__INIT_ONE, 0.0f, "sit.lnfw");
        param(bd, &w->lnfb, &g->lnfb, C, RD__INIT_ZERO, 0.0f, "sit.lnfb");
        if (s->sit_labels)
            param(bd, &p->lab_p, &p->lab_g, 3 * C, RD__INIT_NORMAL, 0.02f, "sit.prev_label");
        for (size_t l = 0; l <= L; l++)
            p->sit_a.x[l] = act(bd, GT * C);
        p->sit_a.lnf_mean = act(bd, GT);
        p->sit_a.lnf_rstd = act(bd, GT);
        p->sit_in = act(bd, GT * C);
        p->code = act(bd, C);
        p->mask = act(bd, GT);
        p->sit_out = act(bd, GT * C);
        p->ysit = act(bd, B * C);
        p->dsit_out = act(bd, GT * C);
        p->dsit_in = act(bd, GT * C);
        rd_tblock_scratch *bs = &p->sit_s.bs;
        bs->dres = act(bd, GT * C);
        bs->dln = act(bd, GT * C);
        bs->dqkv = act(bd, GT * 3 * C);
        bs->datty = act(bd, GT * C);
        bs->dfch = act(bd, GT * 4 * C);
        bs->dfch_act = act(bd, GT * 4 * C);
        bs->datt = act(bd, T * T);
        p->sit_s.dx[0] = act(bd, GT * C);
        p->sit_s.dx[1] = act(bd, GT * C);
    }
    bd->sit_acts = bd->c.aoff - sit_from;
    s->tokens = act(bd, B * d);
    p->pre = act(bd, B * d);
    p->loss_b = act(bd, B);
    p->wts = act(bd, B);
    p->dz = act(bd, B);
    p->ddec = act(bd, B * Hd);
    p->dy = act(bd, B * d);
    p->dtok = act(bd, B * d);
    p->dpre = act(bd, B * d);
    p->dh = act(bd, B * Hd);
    size_t maxw = Hd;
    for (size_t i = 1; i <= p->head_shape.n; i++)
        maxw = p->head_shape.dims[i] > maxw ? p->head_shape.dims[i] : maxw;
    p->mlp_sc.a = act(bd, B * maxw);
    p->mlp_sc.b = act(bd, B * maxw);
    s->logits = bd->c.assign ? rd_mlp_output(&p->head_a, &p->head_shape) : NULL;
}

// ---------------------------------------------------------------------------------------------
// Create / destroy

// A memory estimate, bytes.
typedef struct mem_est {
    double model;   // backbone and source slabs, SIT activations excepted
    double sit;     // the SIT's activations
    double reserve; // the caller's buffers
    double total;
    double limit; // 0 = unknown
    const char *limit_what;
} mem_est;

int rd_source_create(const rd_config *cfg,
                     const rd_source_opts *opts,
                     rd_source **out,
                     rd_errbuf *eb) {
    *out = NULL;
    if (!cfg || !opts)
        return rd_err_set(eb, RD_ERR_ARG, "rd_source_create: NULL config or options");
    const rd_tokens_config *tc = &cfg->tokens;
    if (tc->source_model[0] == '\0')
        return rd_err_set(eb, RD_ERR_CONFIG, "tokens.source_model: empty (name a models: entry)");
    const rd_model_config *mc = rd_config_find_model(cfg, tc->source_model);
    if (!mc)
        return rd_err_set(eb, RD_ERR_CONFIG, "tokens.source_model: '%s' is not in models",
                          tc->source_model);
    if (mc->tokens.scheme != 0)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "tokens.source_model: model '%s' reads instance tokens itself "
                          "(tokens.scheme %d); the source model must not",
                          mc->name, mc->tokens.scheme);
    if (tc->scheme != 1 && tc->scheme != 2)
        return rd_err_set(eb, RD_ERR_CONFIG, "tokens.scheme %d is not 1 (temporal) | 2 (user)",
                          tc->scheme);
    if (tc->dim < 1 || tc->dim > RD_TOKEN_MAX_DIM)
        return rd_err_set(eb, RD_ERR_CONFIG, "tokens.dim %d not in 1..%d", tc->dim,
                          RD_TOKEN_MAX_DIM);
    if (tc->window < 1 || tc->window > 4096)
        return rd_err_set(eb, RD_ERR_CONFIG, "tokens.window %d not in 1..4096", tc->window);
    if (tc->sit_layers < 0 || tc->sit_layers > RD_SOURCE_MAX_SIT)
        return rd_err_set(eb, RD_ERR_CONFIG, "tokens.sit_layers %d not in 0..%d", tc->sit_layers,
                          RD_SOURCE_MAX_SIT);
    if (tc->sit_pairs && !tc->sit_labels)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "tokens.sit_pairs needs tokens.sit_labels (the pairs are where the "
                          "labels go)");
    if (opts->max_batch < 1)
        return rd_err_set(eb, RD_ERR_CONFIG, "source model: max batch must be >= 1");
    size_t d = (size_t)tc->dim;
    size_t NH = opts->sit_heads;
    if (NH == 0)
        NH = d % 4 == 0 ? 4 : d % 2 == 0 ? 2 : 1;
    if (d % NH != 0)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "source model: %zu SIT heads do not divide tokens.dim %zu", NH, d);

    rd_source *s = rd_calloc(1, sizeof *s);
    rd__source_priv *p = rd_calloc(1, sizeof *p);
    if (!s || !p) {
        rd_free(s);
        rd_free(p);
        return rd_err_set(eb, RD_ERR_NOMEM, "source model: out of memory");
    }
    s->priv = p;
    int rc;
    // The backbone is sized first (plan_only): its slabs, the source's and the caller's buffers
    // are checked together against the memory this process may use before any is allocated.
    rd_model_opts mo = {.tables = opts->tables,
                        .n_tables = opts->n_tables,
                        .max_batch = opts->max_batch,
                        .n_numeric = opts->n_numeric,
                        .token_dim = 0,
                        .causal = 0,
                        .opt_slots = opts->opt_slots,
                        .seed = opts->seed,
                        .plan_only = 1};
    rc = rd_model_create(mc, &mo, &s->backbone, eb);
    if (rc != RD_OK)
        goto fail;
    rd_act_kind ak = RD_ACT_RELU;
    (void)rd_act_parse(mc->activation, &ak); // validated by rd_model_create
    p->act = ak;
    s->scheme = tc->scheme;
    s->dim = d;
    s->window = (size_t)tc->window;
    s->sit_layers = tc->scheme == 2 ? (size_t)tc->sit_layers : 0;
    s->sit_heads = NH;
    s->sit_labels = s->sit_layers > 0 && tc->sit_labels;
    s->sit_pairs = s->sit_labels && tc->sit_pairs;
    s->sit_item_code = s->sit_layers > 0 && tc->sit_item_code;
    s->hidden = rd_model_hidden_dim(s->backbone);
    s->max_batch = opts->max_batch;
    s->max_groups = opts->max_groups > 0 && opts->max_groups < opts->max_batch ? opts->max_groups
                                                                               : opts->max_batch;
    s->opt_slots = opts->opt_slots;
    p->sit_on = s->sit_layers > 0;
    p->slots = s->window * (s->sit_pairs ? 2 : 1);
    p->sd = (rd_seq_dims){
        .B = 0, .T = p->slots, .C = d, .NH = NH, .E = 0, .H = 0, .causal = 1, .act = p->act};
    p->dec_shape = (rd_mlp_shape){.n = 1, .act = p->act, .act_last = p->act};
    p->dec_shape.dims[0] = d;
    p->dec_shape.dims[1] = s->hidden;
    p->head_shape =
        (rd_mlp_shape){.n = (size_t)mc->n_tower + 1, .act = p->act, .act_last = RD_ACT_NONE};
    p->head_shape.dims[0] = s->hidden;
    for (int i = 0; i < mc->n_tower; i++)
        p->head_shape.dims[i + 1] = (size_t)mc->tower[i];
    p->head_shape.dims[p->head_shape.n] = 1;

    builder bd = {.s = s, .p = p};
    layout(&bd);
    s->n_slab = bd.c.poff;
    s->n_params = bd.c.nparams;
    s->n_tensors = bd.c.nt;
    size_t n_acts = bd.c.aoff;
    // What the slabs and the caller's buffers take, in bytes (doubles: a wrong batch of 2^32
    // instances must give a figure, not a wrapped size_t).
    const rd_model *bb = s->backbone;
    double slots = 2.0 + (double)s->opt_slots; // parameters, gradients, optimizer slots
    mem_est mem = {.sit = (double)bd.sit_acts * sizeof(float), .reserve = opts->reserve_bytes};
    mem.model = ((double)bb->n_slab * (2.0 + (double)bb->opt_slots) + (double)bb->n_acts +
                 (double)s->n_slab * slots + (double)(n_acts - bd.sit_acts)) *
                sizeof(float);
    mem.total = mem.model + mem.sit + mem.reserve;
    mem.limit = opts->mem_limit;
    mem.limit_what = "the given limit";
    if (mem.limit <= 0)
        mem.limit = (double)rd_mem_limit(&mem.limit_what);
    if (mem.limit > 0 && mem.total > mem.limit) {
        const double G = 1073741824.0;
        rc = rd_err_set(
            eb, RD_ERR_NOMEM,
            "source model '%s' (tokens.source_model) at a batch of %zu instances needs about "
            "%.1f GiB: %.1f GiB of Source Instance Transformer activations (tokens.window %zu, "
            "tokens.sit_layers %zu, tokens.dim %zu: they grow with the batch times the window's "
            "square), %.1f GiB of other model slabs and %.1f GiB of batch and data buffers; more "
            "than %s (%.1f GiB): lower train.batch_size (a token build runs at its job's global "
            "batch, train.batch_size x the job's ranks), tokens.window or tokens.sit_layers",
            mc->name, s->max_batch, mem.total / G, mem.sit / G, s->window, s->sit_layers, d,
            mem.model / G, mem.reserve / G, mem.limit_what, mem.limit / G);
        goto fail;
    }
    s->mem_bytes = mem.total;
    rd_model_destroy(s->backbone);
    mo.plan_only = 0;
    if ((rc = rd_model_create(mc, &mo, &s->backbone, eb)) != RD_OK)
        goto fail;
    if (s->opt_slots > 0 && s->n_slab > SIZE_MAX / sizeof(float) / s->opt_slots) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "source model: optimizer state too large");
        goto fail;
    }
    s->params = rd_aligned_alloc(s->n_slab * sizeof(float));
    s->grads = rd_aligned_alloc(s->n_slab * sizeof(float));
    if (s->opt_slots > 0)
        s->opt_state = rd_aligned_alloc(s->opt_slots * s->n_slab * sizeof(float));
    p->acts = rd_aligned_alloc(n_acts * sizeof(float));
    s->tensors = rd_calloc((size_t)s->n_tensors, sizeof *s->tensors);
    p->inits = rd_calloc((size_t)s->n_tensors, sizeof *p->inits);
    p->row_pos = rd_calloc(s->max_batch, sizeof *p->row_pos);
    if (s->sit_labels)
        p->sit_lab = rd_calloc(s->max_groups * p->slots, 1);
    if (!s->params || !s->grads || (s->opt_slots > 0 && !s->opt_state) || !p->acts || !s->tensors ||
        !p->inits || !p->row_pos || (s->sit_labels && !p->sit_lab)) {
        rc = rd_err_set(eb, RD_ERR_NOMEM,
                        "source model: cannot allocate the slabs (%zu parameters, %zu activation "
                        "floats, max batch %zu, max groups %zu)",
                        s->n_slab, n_acts, s->max_batch, s->max_groups);
        goto fail;
    }
    memset(s->params, 0, s->n_slab * sizeof(float));
    memset(s->grads, 0, s->n_slab * sizeof(float));
    if (s->opt_state)
        memset(s->opt_state, 0, s->opt_slots * s->n_slab * sizeof(float));
    memset(p->acts, 0, n_acts * sizeof(float));
    bd = (builder){.s = s,
                   .p = p,
                   .c = {.assign = 1,
                         .tensors = s->tensors,
                         .inits = p->inits,
                         .params = s->params,
                         .grads = s->grads,
                         .acts = p->acts}};
    layout(&bd);
    RD_ASSERT(bd.c.poff == s->n_slab && bd.c.aoff == n_acts && bd.c.nt == s->n_tensors);
    rd__init_tensors(s->tensors, p->inits, s->n_tensors, s->params,
                     opts->seed ^ 0x534f55524345ULL); // "SOURCE": a stream apart from the backbone
    *out = s;
    return RD_OK;

fail:
    rd_source_destroy(s);
    return rc;
}

void rd_source_destroy(rd_source *s) {
    if (!s)
        return;
    rd_model_destroy(s->backbone);
    rd_aligned_free(s->params);
    rd_aligned_free(s->grads);
    rd_aligned_free(s->opt_state);
    rd_free(s->tensors);
    if (s->priv) {
        rd_aligned_free(s->priv->acts);
        rd_free(s->priv->inits);
        rd_free(s->priv->row_pos);
        rd_free(s->priv->sit_lab);
        rd_free(s->priv);
    }
    rd_free(s);
}

const rd_model_tensor *rd_source_find_tensor(const rd_source *s, const char *name) {
    for (int i = 0; i < s->n_tensors; i++)
        if (strcmp(s->tensors[i].name, name) == 0)
            return &s->tensors[i];
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// Batch check

int rd_source_check_batch(const rd_source *s, const rd_source_batch *b, rd_errbuf *eb) {
    if (!b)
        return rd_err_set(eb, RD_ERR_ARG, "source batch: NULL");
    size_t B = b->base.B, T = s->window, d = s->dim;
    if (B < 1 || B > s->max_batch)
        return rd_err_set(eb, RD_ERR_ARG, "source batch: B = %zu not in 1..%zu", B, s->max_batch);
    if (b->base.teacher_logits)
        return rd_err_set(eb, RD_ERR_ARG,
                          "source batch: teacher logits given (the source model does not distil)");
    if (b->n_groups > 0) {
        if (b->n_groups > s->max_groups)
            return rd_err_set(eb, RD_ERR_ARG, "source batch: %zu groups (at most %zu)", b->n_groups,
                              s->max_groups);
        if (!b->group_len)
            return rd_err_set(eb, RD_ERR_ARG, "source batch: %zu groups but group_len is NULL",
                              b->n_groups);
        if (!b->prev_tokens != !b->n_prev)
            return rd_err_set(eb, RD_ERR_ARG,
                              "source batch: prev_tokens and n_prev must be both set or both NULL");
        size_t sum = 0;
        for (size_t g = 0; g < b->n_groups; g++) {
            uint32_t n = b->group_len[g];
            if (n < 1 || n > T)
                return rd_err_set(eb, RD_ERR_RANGE,
                                  "source batch: group %zu: group_len %u not in "
                                  "1..%zu (tokens.window)",
                                  g, n, T);
            sum += n;
            if (b->n_prev) {
                if (b->n_prev[g] > T - 1)
                    return rd_err_set(eb, RD_ERR_RANGE,
                                      "source batch: group %zu: n_prev %u > T - 1 = %zu", g,
                                      b->n_prev[g], T - 1);
                const float *pl = b->prev_labels ? b->prev_labels + g * (T - 1) : NULL;
                for (size_t i = 0; pl && i < (size_t)b->n_prev[g]; i++)
                    if (!(pl[i] == 0.0f || pl[i] == 1.0f))
                        return rd_err_set(eb, RD_ERR_RANGE,
                                          "source batch: group %zu: previous label %zu = %g is "
                                          "not 0 or 1",
                                          g, i, (double)pl[i]);
                const float *pt = b->prev_tokens + g * (T - 1) * d;
                for (size_t i = 0; i < (size_t)b->n_prev[g] * d; i++)
                    if (!isfinite(pt[i]))
                        return rd_err_set(eb, RD_ERR_RANGE,
                                          "source batch: group %zu: previous token %zu is not "
                                          "finite",
                                          g, i / d);
            }
        }
        if (sum != B)
            return rd_err_set(eb, RD_ERR_ARG, "source batch: group lengths sum to %zu, B = %zu",
                              sum, B);
        if (b->prev_labels && !b->prev_tokens)
            return rd_err_set(eb, RD_ERR_ARG, "source batch: prev_labels without prev_tokens");
        if (s->sit_item_code && b->prev_tokens && !b->prev_items)
            return rd_err_set(eb, RD_ERR_ARG,
                              "source batch: prev_tokens without prev_items (tokens.sit_item_code "
                              "needs the item of every frozen token)");
        if (b->reverse && b->prev_tokens)
            return rd_err_set(eb, RD_ERR_ARG,
                              "source batch: reverse with prev_tokens (a reverse pass reads a "
                              "group's own instances only)");
    } else if (b->reverse) {
        return rd_err_set(eb, RD_ERR_ARG, "source batch: reverse with n_groups = 0");
    } else if (b->prev_tokens || b->n_prev || b->group_len || b->prev_labels) {
        return rd_err_set(eb, RD_ERR_ARG,
                          "source batch: group arrays given with n_groups = 0 (set n_groups)");
    } else if (s->sit_layers > 0 && B > s->max_groups) { // the SIT tensors hold max_groups
        return rd_err_set(eb, RD_ERR_ARG,
                          "source batch: n_groups = 0 makes %zu groups of one (at most %zu)", B,
                          s->max_groups);
    }
    if (s->sit_item_code && !b->item_keys)
        return rd_err_set(eb, RD_ERR_ARG,
                          "source batch: item_keys NULL (tokens.sit_item_code needs them)");
    if (b->loss_weights)
        for (size_t i = 0; i < B; i++)
            if (!(b->loss_weights[i] >= 0.0f) || !isfinite(b->loss_weights[i]))
                return rd_err_set(eb, RD_ERR_RANGE, "source batch: loss_weights[%zu] = %g", i,
                                  (double)b->loss_weights[i]);
    return rd_model_check_batch(s->backbone, &b->base, eb);
}

// ---------------------------------------------------------------------------------------------
// Forward / backward

void rd_source_item_code(float *code, uint64_t item_key, size_t d) {
    uint64_t h = rd_hash64(&item_key, sizeof item_key, 0x6974656d636f6465ULL); // "itemcode"
    for (size_t k = 0; k < d; k++) {
        if (k % 64 == 0 && k > 0)
            h = rd_hash64(&h, sizeof h, (uint64_t)k);
        code[k] = (h >> (k % 64)) & 1 ? RD_SOURCE_ITEM_CODE : -RD_SOURCE_ITEM_CODE;
    }
}

// Build the SIT input: per group [the most recent frozen tokens | the group's new tokens |
// padding], the mask, and each new instance's position. With sit_pairs every instance takes two
// slots, [token + e_unknown, token + e_label]: the first is its own position (its logit reads
// it), the second is seen only by the slots after it, i.e. by later instances. @return the
// number of groups.
// The new instance at position i of a group of n (reverse: the latest first), and the position of
// instance i (the map is its own inverse).
static size_t flip(int reverse, size_t n, size_t i) {
    return reverse ? n - 1 - i : i;
}

static size_t sit_assemble(rd_source *s, const rd_source_batch *b) {
    rd__source_priv *p = s->priv;
    size_t B = b->base.B, T = s->window, d = s->dim, S = p->slots, w = s->sit_pairs ? 2 : 1;
    size_t G = b->n_groups > 0 ? b->n_groups : B;
    memset(p->sit_in, 0, G * S * d * sizeof(float));
    memset(p->mask, 0, G * S * sizeof(float));
    size_t row = 0;
    for (size_t g = 0; g < G; g++) {
        size_t n = b->n_groups > 0 ? b->group_len[g] : 1;
        size_t P = 0;
        float *x = p->sit_in + g * S * d;
        const float *pl = b->prev_tokens && b->prev_labels ? b->prev_labels + g * (T - 1) : NULL;
        size_t have = b->prev_tokens ? b->n_prev[g] : 0, first = row;
        if (b->prev_tokens) {
            P = have < T - n ? have : T - n;
            for (size_t k = 0; k < P; k++)
                for (size_t c = 0; c < w; c++)
                    memcpy(x + (k * w + c) * d, b->prev_tokens + (g * (T - 1) + have - P + k) * d,
                           d * sizeof(float));
        }
        for (size_t k = 0; k < n; k++, row++) {
            size_t at = P + flip(b->reverse, n, k); // its own inverse
            p->row_pos[row] = g * S + at * w;
            for (size_t c = 0; c < w; c++)
                memcpy(x + (at * w + c) * d, s->tokens + row * d, d * sizeof(float));
        }
        for (size_t t = 0; t < (P + n) * w; t++)
            p->mask[g * S + t] = 1.0f;
        if (s->sit_item_code)
            for (size_t i = 0; i < P + n; i++) {
                uint64_t key = i < P ? b->prev_items[g * (T - 1) + have - P + i]
                                     : b->item_keys[first + flip(b->reverse, n, i - P)];
                rd_source_item_code(p->code, key, d);
                for (size_t c = 0; c < w; c++) {
                    float *xt = x + (i * w + c) * d;
                    for (size_t k = 0; k < d; k++)
                        xt[k] += p->code[k];
                }
            }
        if (!s->sit_labels)
            continue;
        // lab(i) = the label of instance i of the sequence (frozen ones from prev_labels, 2 =
        // unknown). Shifted: slot t reads lab(t - 1) (of the frozen token before the used prefix
        // for t = 0); pairs: slot 2i reads 2, slot 2i + 1 reads lab(i).
        uint8_t *li = p->sit_lab + g * S;
        for (size_t t = 0; t < (P + n) * w; t++) {
            size_t i = s->sit_pairs ? t / 2 : t; // the instance of slot t
            int shifted = !s->sit_pairs, labelled = s->sit_pairs && t % 2 == 1;
            uint8_t l = 2;
            if (shifted || labelled) {
                // the instance whose label slot t reads, as an index + 1 into [frozen | new]
                // counted from the first frozen token the caller gave (have - P before the prefix)
                size_t k = have - P + i + (labelled ? 1 : 0);
                if (k >= 1 && k <= have)
                    l = pl ? (pl[k - 1] > 0.5f ? 1 : 0) : 2;
                else if (k > have)
                    l = b->base.labels[first + flip(b->reverse, n, k - 1 - have)] > 0.5f ? 1 : 0;
            }
            li[t] = l;
            const float *e = p->lab_p + (size_t)l * d;
            float *xt = x + t * d;
            for (size_t c = 0; c < d; c++)
                xt[c] += e[c];
        }
    }
    RD_ASSERT(row == B);
    return G;
}

int rd_source_forward(rd_source *s, const rd_source_batch *b, rd_errbuf *eb) {
    rd__source_priv *p = s->priv;
    p->fwd_B = 0;
    int rc = rd_source_check_batch(s, b, eb);
    if (rc != RD_OK)
        return rc;
    size_t B = b->base.B, d = s->dim, Hd = s->hidden;

    // 1. Backbone -> h.
    rc = rd_model_forward_hidden(s->backbone, &b->base, &p->h, NULL, eb);
    if (rc != RD_OK)
        return rc;

    // 2. Bottleneck: the tokens that are stored.
    rd_source_bottleneck_forward(s->tokens, p->pre, p->h, p->bw_p, p->bb_p, B, Hd, d);

    // 3. Causal SIT over each group (user order), else each token alone.
    p->y = s->tokens;
    p->fwd_G = 0;
    if (p->sit_on) {
        size_t G = sit_assemble(s, b);
        rd_seq_dims sd = p->sd;
        sd.B = G;
        rd_source_sit_forward(p->sit_out, &p->sit_a, p->sit_in, p->mask, &p->sit_p, &sd,
                              s->sit_layers);
        for (size_t r = 0; r < B; r++)
            memcpy(p->ysit + r * d, p->sit_out + p->row_pos[r] * d, d * sizeof(float));
        p->y = p->ysit;
        p->fwd_G = G;
    }

    // 4. Decompress and head.
    rd_mlp_forward(&p->dec_a, p->y, &p->dec_p, &p->dec_shape, B);
    rd_mlp_forward(&p->head_a, rd_mlp_output(&p->dec_a, &p->dec_shape), &p->head_p, &p->head_shape,
                   B);

    // 5. Loss.
    rd_bce_logits_forward(p->loss_b, s->logits, b->base.labels, B);
    double sum = 0.0;
    for (size_t i = 0; i < B; i++)
        sum += (double)p->loss_b[i] * (b->loss_weights ? (double)b->loss_weights[i] : 1.0);
    s->loss = sum / (double)B;
    p->fwd_B = B;
    return RD_OK;
}

int rd_source_backward(rd_source *s, const rd_source_batch *b, rd_errbuf *eb) {
    rd__source_priv *p = s->priv;
    if (!b || p->fwd_B == 0 || p->fwd_B != b->base.B)
        return rd_err_set(eb, RD_ERR_STATE,
                          "rd_source_backward: no forward of this batch before it (last forward "
                          "B = %zu)",
                          p->fwd_B);
    size_t B = b->base.B, d = s->dim, Hd = s->hidden;
    memset(s->grads, 0, s->n_slab * sizeof(float));

    // 1. Loss -> d logits.
    for (size_t i = 0; i < B; i++)
        p->wts[i] = (b->loss_weights ? b->loss_weights[i] : 1.0f) / (float)B;
    memset(p->dz, 0, B * sizeof(float));
    rd_bce_logits_backward(p->dz, p->wts, s->logits, b->base.labels, B);

    // 2. Head and decompress -> dy.
    const float *dec_out = rd_mlp_output(&p->dec_a, &p->dec_shape);
    memset(p->ddec, 0, B * Hd * sizeof(float));
    rd_mlp_backward(p->ddec, &p->head_g, &p->mlp_sc, p->dz, dec_out, &p->head_a, &p->head_p,
                    &p->head_shape, B);
    memset(p->dy, 0, B * d * sizeof(float));
    rd_mlp_backward(p->dy, &p->dec_g, &p->mlp_sc, p->ddec, p->y, &p->dec_a, &p->dec_p,
                    &p->dec_shape, B);

    // 3. SIT -> d tokens. Only the new instances' positions carry an output gradient, and only
    //    their input gradient is kept: the frozen prefix gets none.
    const float *dtok = p->dy;
    if (p->sit_on) {
        size_t G = p->fwd_G, T = p->slots;
        rd_seq_dims sd = p->sd;
        sd.B = G;
        memset(p->dsit_out, 0, G * T * d * sizeof(float));
        for (size_t r = 0; r < B; r++)
            memcpy(p->dsit_out + p->row_pos[r] * d, p->dy + r * d, d * sizeof(float));
        memset(p->dsit_in, 0, G * T * d * sizeof(float));
        rd_source_sit_backward(p->dsit_in, &p->sit_g, &p->sit_s, p->dsit_out, p->sit_in, p->mask,
                               &p->sit_a, &p->sit_p, &sd, s->sit_layers);
        for (size_t r = 0; r < B; r++) {
            memcpy(p->dtok + r * d, p->dsit_in + p->row_pos[r] * d, d * sizeof(float));
            if (s->sit_pairs) { // the instance's labelled slot, right after its own
                const float *g2 = p->dsit_in + (p->row_pos[r] + 1) * d;
                for (size_t k = 0; k < d; k++)
                    p->dtok[r * d + k] += g2[k];
            }
        }
        if (s->sit_labels)
            for (size_t i = 0; i < G * T; i++) {
                if (p->mask[i] == 0.0f)
                    continue;
                float *ge = p->lab_g + (size_t)p->sit_lab[i] * d;
                const float *gi = p->dsit_in + i * d;
                for (size_t k = 0; k < d; k++)
                    ge[k] += gi[k];
            }
        dtok = p->dtok;
    }

    // 4. Bottleneck -> dh, then the backbone.
    memset(p->dh, 0, B * Hd * sizeof(float));
    rd_source_bottleneck_backward(p->dh, p->bw_g, p->bb_g, p->dpre, dtok, p->h, p->bw_p, s->tokens,
                                  B, Hd, d);
    return rd_model_backward_hidden(s->backbone, &b->base, p->dh, eb);
}

// ---------------------------------------------------------------------------------------------
// Single-process driver

// A backbone feature: where its keys are in a record (as the trainer resolves them, so that a
// store written here matches a later PS-backed run on the same tables) and its table.
typedef struct feat_src {
    rd_feature_src at; // rd_dataset_feature_src
    uint32_t width;    // key slots per example (at.width)
    int table;         // model table slot
    uint64_t table_id; // rd_table_salt(), the salt of rd_table_key (as the trainer)
} feat_src;

typedef struct driver {
    const rd_config *cfg;
    const rd_dataset *ds;
    rd_source *src;
    rd_model *m; // src->backbone
    rd_source_io io;
    size_t Bmax, T, d, L; // L = the backbone's history length (0 without a seq branch)
    feat_src fs[RD_MAX_FEATURES];
    uint64_t seq_table_id;
    rd_table *tab[RD_MAX_TABLES];
    size_t cap[RD_MAX_TABLES]; // keys per batch per table slot
    uint64_t *raw[RD_MAX_TABLES], *uniq[RD_MAX_TABLES];
    uint32_t *inv[RD_MAX_TABLES];
    size_t n_raw[RD_MAX_TABLES], n_uniq[RD_MAX_TABLES];
    float *rows[RD_MAX_TABLES], *drows[RD_MAX_TABLES];
    int32_t *fidx[RD_MAX_FEATURES], *sidx;
    uint8_t *slab;
    float *numeric, *labels;
    void *scratch;
    size_t scratch_bytes;
    // Batch in group order
    uint64_t *rec;
    size_t B, G;
    uint32_t *glen;
    int by_item;        // tokens.sit_group item (user order): groups of one user and one item
    int by_attr;        // ... or of one value of an attribute of the item (tokens.sit_group_by)
    rd_item_attr attr;  // that attribute's item -> value map
    uint64_t *prev_grp; // (B, T - 1) group keys of prev (by_attr)
    rd_source_item_row *isort; // (Bmax) scratch of rd_source_split_by_item
    uint32_t *ucnt;            // (n_users) events of each user in the batch being formed
    // Frozen prefix fetched from the store, and appends
    float *prev;
    float *prev_lab;               // (B, T - 1) labels of prev
    uint64_t *prev_items, *bitems; // (B, T - 1) items of prev; (B) of the batch (sit_item_code)
    uint32_t *n_found;
    uint64_t *users, *items, *ids;
    int64_t *ts;
    float *tlabels;
    size_t n_side;                       // tokens.side: feedback fields stored with each token
    int side_idx[RD_MAX_TOKEN_SIDE];     // their numeric indices in the dataset
    float *side_mean[RD_MAX_TOKEN_SIDE]; // tokens.side_residual: per event, the field's mean over
                                         // the item's earlier events; NULL without
    size_t side_w; // side values per token: n_side, or 2 n_side with residuals
    float *tside;  // (Bmax, side_w): the values, then their residuals
    // Dense optimizers of the two slabs
    rd_dense_optim opt_bb, opt_src;
    // Progressive predictions of the current epoch
    float *pred, *plab;
    size_t n_pred, pred_cap;
} driver;

static void driver_free(driver *dv) {
    for (int t = 0; t < RD_MAX_TABLES; t++) {
        rd_table_destroy(dv->tab[t]);
        rd_free(dv->raw[t]);
        rd_free(dv->uniq[t]);
        rd_free(dv->inv[t]);
        rd_free(dv->rows[t]);
        rd_free(dv->drows[t]);
    }
    for (int f = 0; f < RD_MAX_FEATURES; f++)
        rd_free(dv->fidx[f]);
    rd_free(dv->sidx);
    rd_free(dv->slab);
    rd_free(dv->numeric);
    rd_free(dv->labels);
    rd_free(dv->scratch);
    rd_free(dv->rec);
    rd_free(dv->glen);
    rd_free(dv->isort);
    rd_item_attr_free(&dv->attr);
    rd_free(dv->prev_grp);
    rd_free(dv->ucnt);
    rd_free(dv->prev);
    rd_free(dv->prev_lab);
    rd_free(dv->prev_items);
    rd_free(dv->bitems);
    rd_free(dv->tside);
    for (int k = 0; k < RD_MAX_TOKEN_SIDE; k++)
        rd_free(dv->side_mean[k]);
    rd_free(dv->n_found);
    rd_free(dv->users);
    rd_free(dv->items);
    rd_free(dv->ids);
    rd_free(dv->ts);
    rd_free(dv->tlabels);
    rd_free(dv->pred);
    rd_free(dv->plab);
    rd_source_destroy(dv->src);
}

// The driver's buffers beside the source model, in bytes, for batches of B instances: per feature
// slot a key, its dedup entry, index and row with its gradient; each group's frozen prefix of
// T - 1 tokens, once fetched into the token client's reply and once in the driver; and the arrays
// over the data (per-user counts, the progressive predictions of the longest range, the item means
// of the side values). rd_source_create adds it to its own slabs for the memory check.
int rd__source_driver_reserve(
    const rd_config *cfg, const rd_dataset *ds, size_t B, double *out, rd_errbuf *eb) {
    const rd_model_config *mc = rd_config_find_model(cfg, cfg->tokens.source_model);
    const rd_dataset_info *info = rd_dataset_get_info(ds);
    *out = 0;
    if (!mc)
        return RD_OK; // rd_source_create says so
    double per = 0;   // bytes per instance of the batch
    for (int f = 0; f < mc->n_features; f++) {
        rd_feature_src at;
        int rc = rd_dataset_feature_src(ds, mc->features[f].field, "tokens.source_model", &at, eb);
        if (rc != RD_OK)
            return rc;
        const rd_table_config *tc = rd_config_find_table(cfg, mc->features[f].table);
        double D = tc ? (double)tc->dim : 0.0;
        per += (double)at.width * (4 + 8 + 8 + 4 + 16 + 8 * D); // fidx, raw, uniq, inv, dedup, rows
    }
    if (mc->seq.kind != RD_SEQ_NONE && mc->seq.length > 0) {
        const rd_table_config *tc =
            mc->seq.table[0] ? rd_config_find_table(cfg, mc->seq.table) : NULL;
        double D = tc ? (double)tc->dim : 64.0;
        per += (double)mc->seq.length * (4 + 1 + 8 + 8 + 4 + 16 + 8 * D);
    }
    double T = cfg->tokens.window > 1 ? (double)cfg->tokens.window - 1 : 1.0;
    double side = (double)rd_tokens_side_width(&cfg->tokens), d = (double)cfg->tokens.dim;
    per += T * 2 * (4 * d + 4 * side + 4 + 8 + 8 + 1); // the frozen prefix: reply and copy
    per += (double)info->n_numeric * 4 + 4 * d + 4 * side + 160; // per-instance arrays
    // The item means of side_residual: one float an event per side field (n_side of them; the
    // residuals that double the side width exist per instance only, counted above).
    double data =
        (double)info->n_users * 4 + (double)info->n_events * 8 +
        (cfg->tokens.side_residual ? (double)cfg->tokens.n_side * 4 * (double)info->n_events : 0) +
        (cfg->tokens.batch_order == RD_ORDER_WINDOWS ? 32 * (double)info->n_events : 0);
    *out = per * (double)B + data;
    return RD_OK;
}

static int driver_init(driver *dv, rd_errbuf *eb) {
    const rd_config *cfg = dv->cfg;
    const rd_dataset_info *info = rd_dataset_get_info(dv->ds);
    int kind;
    int rc = rd_dense_optim_parse(cfg->train.optimizer, &kind);
    if (rc != RD_OK)
        return rd_err_set(eb, RD_ERR_CONFIG, "train.optimizer: '%s' is not sgd|adam|adamw",
                          cfg->train.optimizer);
    rd_source_opts so = {.tables = cfg->ps.tables,
                         .n_tables = cfg->ps.n_tables,
                         .max_batch = dv->Bmax,
                         .max_groups = dv->Bmax,
                         .n_numeric = rd_dataset_n_inputs(info),
                         .opt_slots = rd_dense_optim_slots(kind),
                         .seed = cfg->run.seed ^ rd_hash_str("source", 0)};
    if ((rc = rd__source_driver_reserve(cfg, dv->ds, dv->Bmax, &so.reserve_bytes, eb)) != RD_OK ||
        (rc = rd_source_create(cfg, &so, &dv->src, eb)) != RD_OK)
        return rc;
    if ((rc = rd_dense_optim_init(&dv->opt_bb, &cfg->train, eb)) != RD_OK ||
        (rc = rd_dense_optim_init(&dv->opt_src, &cfg->train, eb)) != RD_OK)
        return rc;
    rd_model *m = dv->m = dv->src->backbone;
    dv->T = dv->src->window;
    dv->d = dv->src->dim;
    dv->L = m->seq_length;
    size_t B = dv->Bmax;

    char who[RD_NAME_MAX + 24];
    snprintf(who, sizeof who, "source model '%s'", cfg->tokens.source_model);
    for (int f = 0; f < m->n_features; f++) {
        feat_src *fs = &dv->fs[f];
        if ((rc = rd_dataset_feature_src(dv->ds, m->features[f].field, who, &fs->at, eb)) != RD_OK)
            return rc;
        fs->width = fs->at.width;
        fs->table = m->features[f].table;
        fs->table_id = m->tables[fs->table].salt;
        dv->cap[fs->table] += B * fs->width;
        dv->fidx[f] = rd_calloc(B * fs->width, sizeof(int32_t));
        if (!dv->fidx[f])
            return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    }
    if (dv->L) {
        dv->seq_table_id = m->tables[m->seq_table].salt;
        dv->cap[m->seq_table] += B * dv->L;
        dv->sidx = rd_calloc(B * dv->L, sizeof(int32_t));
        dv->slab = rd_calloc(B * dv->L, 1);
        if (!dv->sidx || !dv->slab)
            return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    }
    size_t maxcap = 1;
    for (int t = 0; t < m->n_tables; t++) {
        const rd_table_config *tc = &cfg->ps.tables[m->tables[t].ps_index];
        if ((rc = rd_table_create(tc, m->tables[t].ps_index, cfg->run.seed, &dv->tab[t], eb)))
            return rc;
        size_t c = dv->cap[t] > 0 ? dv->cap[t] : 1, D = m->tables[t].dim;
        maxcap = c > maxcap ? c : maxcap;
        dv->raw[t] = rd_malloc(c * sizeof(uint64_t));
        dv->uniq[t] = rd_malloc(c * sizeof(uint64_t));
        dv->inv[t] = rd_malloc(c * sizeof(uint32_t));
        dv->rows[t] = rd_calloc(c * D, sizeof(float));
        dv->drows[t] = rd_calloc(c * D, sizeof(float));
        if (!dv->raw[t] || !dv->uniq[t] || !dv->inv[t] || !dv->rows[t] || !dv->drows[t])
            return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    }
    dv->scratch_bytes = rd_kv_dedup_scratch_bytes(maxcap);
    dv->scratch = rd_malloc(dv->scratch_bytes);
    size_t nn = rd_dataset_n_inputs(info);
    dv->numeric = nn ? rd_calloc(B * nn, sizeof(float)) : NULL;
    dv->labels = rd_calloc(B, sizeof(float));
    dv->rec = rd_calloc(B, sizeof(uint64_t));
    dv->glen = rd_calloc(B, sizeof(uint32_t));
    dv->by_item = dv->src->scheme == 2 && dv->src->sit_layers > 0 &&
                  cfg->tokens.sit_group == RD_SIT_GROUP_ITEM;
    dv->isort = dv->by_item ? rd_calloc(B, sizeof *dv->isort) : NULL;
    if (dv->by_item && !rd_field_is_item(cfg->tokens.sit_group_by)) {
        if ((rc = rd_dataset_item_attr(dv->ds, cfg->tokens.sit_group_by, "tokens.sit_group_by",
                                       &dv->attr, eb)) != RD_OK)
            return rc;
        dv->by_attr = 1;
        dv->prev_grp = rd_calloc(B * (dv->T > 1 ? dv->T - 1 : 1), sizeof(uint64_t));
        if (!dv->prev_grp)
            return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    }
    dv->ucnt = rd_calloc(info->n_users > 0 ? info->n_users : 1, sizeof(uint32_t));
    size_t Tm1 = dv->T > 1 ? dv->T - 1 : 1;
    dv->prev = rd_calloc(B * Tm1 * dv->d, sizeof(float));
    dv->prev_lab = rd_calloc(B * Tm1, sizeof(float));
    dv->prev_items = rd_calloc(B * Tm1, sizeof(uint64_t));
    dv->bitems = rd_calloc(B, sizeof(uint64_t));
    dv->n_found = rd_calloc(B, sizeof(uint32_t));
    dv->users = rd_calloc(B, sizeof(uint64_t));
    dv->items = rd_calloc(B, sizeof(uint64_t));
    dv->ids = rd_calloc(B, sizeof(uint64_t));
    dv->ts = rd_calloc(B, sizeof(int64_t));
    dv->tlabels = rd_calloc(B, sizeof(float));
    dv->n_side = (size_t)dv->cfg->tokens.n_side;
    for (size_t k = 0; k < dv->n_side; k++) {
        char what[40];
        snprintf(what, sizeof what, "tokens.side[%zu]", k);
        rc = rd_dataset_feedback_index(dv->ds, what, dv->cfg->tokens.side[k], &dv->side_idx[k], eb);
        if (rc != RD_OK)
            return rc;
    }
    dv->side_w = (size_t)rd_tokens_side_width(&dv->cfg->tokens);
    for (size_t k = 0; dv->cfg->tokens.side_residual && k < dv->n_side; k++)
        if (!(dv->side_mean[k] = rd_dataset_item_means(dv->ds, dv->side_idx[k])))
            return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    if (dv->side_w && !(dv->tside = rd_calloc(B * dv->side_w, sizeof(float))))
        return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    // Progressive predictions of one run over a range: grown by rd_source_driver_run.
    dv->pred_cap = B;
    dv->pred = rd_calloc(B, sizeof(float));
    dv->plab = rd_calloc(B, sizeof(float));
    if (!dv->scratch || (nn && !dv->numeric) || !dv->labels || !dv->rec || !dv->glen || !dv->ucnt ||
        (dv->by_item && !dv->isort) || !dv->prev || !dv->prev_lab || !dv->prev_items ||
        !dv->bitems || !dv->n_found || !dv->users || !dv->items || !dv->ids || !dv->ts ||
        !dv->tlabels || !dv->pred || !dv->plab)
        return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    return RD_OK;
}

// Keys, dedup and in-process pull of the batch in dv->rec; fills the rd_batch.
static int build_batch(driver *dv, rd_source_batch *sb, rd_errbuf *eb) {
    rd_model *m = dv->m;
    size_t B = dv->B, nn = m->n_numeric;
    int64_t t_max = INT64_MIN;
    for (int t = 0; t < m->n_tables; t++)
        dv->n_raw[t] = 0;
    for (size_t b = 0; b < B; b++) {
        uint64_t i = dv->rec[b];
        const rd_record *r = rd_dataset_record(dv->ds, i);
        dv->labels[b] = r->label;
        t_max = r->ts > t_max ? r->ts : t_max;
        if (nn)
            memcpy(dv->numeric + b * nn, rd_dataset_nums(dv->ds, i), nn * sizeof(float));
        for (int f = 0; f < m->n_features; f++) {
            const feat_src *fs = &dv->fs[f];
            int32_t *dst = dv->fidx[f] + b * fs->width;
            for (uint32_t k = 0; k < fs->width; k++) {
                uint64_t key = rd_dataset_feature_key(dv->ds, &fs->at, i, k);
                if (!key) {
                    dst[k] = -1;
                    continue;
                }
                dv->raw[fs->table][dv->n_raw[fs->table]] = rd_table_key(fs->table_id, key);
                dst[k] = (int32_t)dv->n_raw[fs->table]++;
            }
        }
        if (dv->L) {
            size_t nh = 0;
            const uint64_t *h = rd_dataset_history_view(dv->ds, i, dv->L, &nh);
            int t = m->seq_table;
            for (size_t j = 0; j < nh; j++) { // most recent first, as the trainer
                const rd_record *hr = rd_dataset_record(dv->ds, h[nh - 1 - j]);
                dv->raw[t][dv->n_raw[t]] = rd_table_key(dv->seq_table_id, hr->item_key);
                dv->sidx[b * dv->L + j] = (int32_t)dv->n_raw[t]++;
                dv->slab[b * dv->L + j] = hr->label > 0.5f ? 1 : 0;
            }
            for (size_t j = nh; j < dv->L; j++) {
                dv->sidx[b * dv->L + j] = -1;
                dv->slab[b * dv->L + j] = 0;
            }
        }
    }
    memset(sb, 0, sizeof *sb);
    rd_batch *bt = &sb->base;
    bt->B = B;
    for (int t = 0; t < m->n_tables; t++) {
        size_t D = m->tables[t].dim;
        dv->n_uniq[t] = 0;
        if (dv->n_raw[t]) {
            int rc = rd_kv_dedup(dv->raw[t], dv->n_raw[t], dv->uniq[t], dv->inv[t], &dv->n_uniq[t],
                                 dv->scratch, dv->scratch_bytes);
            if (rc != RD_OK)
                return rd_err_set(eb, rc, "source driver: key dedup of table '%s' failed",
                                  m->tables[t].name);
            rc = rd_table_pull(dv->tab[t], dv->uniq[t], dv->n_uniq[t], t_max, dv->rows[t]);
            if (rc != RD_OK)
                return rd_err_set(eb, rc, "source driver: pull of table '%s' failed",
                                  m->tables[t].name);
        }
        (void)D;
        bt->rows[t] = dv->rows[t];
        bt->drows[t] = dv->drows[t];
        bt->n_rows[t] = dv->n_uniq[t];
    }
    for (int f = 0; f < m->n_features; f++) {
        const feat_src *fs = &dv->fs[f];
        int32_t *x = dv->fidx[f];
        for (size_t k = 0; k < B * fs->width; k++)
            if (x[k] >= 0)
                x[k] = (int32_t)dv->inv[fs->table][x[k]];
        bt->feat_idx[f] = x;
        bt->feat_slots[f] = fs->width;
    }
    if (dv->L) {
        int t = m->seq_table;
        for (size_t k = 0; k < B * dv->L; k++)
            if (dv->sidx[k] >= 0)
                dv->sidx[k] = (int32_t)dv->inv[t][dv->sidx[k]];
        bt->seq_idx = dv->sidx;
        bt->seq_labels = m->seq_with_labels ? dv->slab : NULL;
    }
    bt->numeric = nn ? dv->numeric : NULL;
    bt->labels = dv->labels;
    return RD_OK;
}

// Order of the batch (TIME mode): stable by user, so each user's events stay time-sorted.
typedef struct rec_user {
    uint32_t user;
    uint32_t pos;
    uint64_t rec;
} rec_user;

static int cmp_rec_user(const void *a, const void *b) {
    const rec_user *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

// TIME mode: take consecutive events from *next while the batch has room and (user order) no
// user has T events in it yet; group them by user. rs is scratch of Bmax entries.
static void form_time_batch(driver *dv, uint64_t *next, uint64_t end, rec_user *rs) {
    size_t n = 0;
    int user_order = dv->src->scheme == 2;
    while (n < dv->Bmax && *next < end) {
        const rd_record *r = rd_dataset_record(dv->ds, *next);
        if (user_order && dv->ucnt[r->user] >= dv->T)
            break;
        dv->ucnt[r->user]++;
        rs[n] = (rec_user){.user = r->user, .pos = (uint32_t)n, .rec = *next};
        n++;
        (*next)++;
    }
    for (size_t k = 0; k < n; k++)
        dv->ucnt[rs[k].user] = 0;
    dv->B = n;
    dv->G = 0;
    if (user_order)
        qsort(rs, n, sizeof *rs, cmp_rec_user);
    for (size_t k = 0; k < n; k++) {
        dv->rec[k] = rs[k].rec;
        if (user_order) {
            if (dv->G == 0 || rs[k].user != rs[k - 1].user)
                dv->glen[dv->G++] = 0;
            dv->glen[dv->G - 1]++;
        }
    }
}

// USER mode: users one after the other (rd_dataset_iter in user order), windows of T consecutive
// events of a user. *pending carries a record that did not fit in the previous batch.
static void form_user_batch(driver *dv, rd_dataset_iter *it, uint64_t *pending, int *has_pending) {
    size_t n = 0;
    uint32_t last_user = 0;
    dv->G = 0;
    for (;;) {
        uint64_t i;
        if (*has_pending) {
            i = *pending;
            *has_pending = 0;
        } else if (!rd_dataset_iter_next(it, &i)) {
            break;
        }
        if (n == dv->Bmax) {
            *pending = i;
            *has_pending = 1;
            break;
        }
        const rd_record *r = rd_dataset_record(dv->ds, i);
        if (dv->G == 0 || r->user != last_user || dv->glen[dv->G - 1] == dv->T)
            dv->glen[dv->G++] = 0;
        dv->glen[dv->G - 1]++;
        last_user = r->user;
        dv->rec[n++] = i;
    }
    dv->B = n;
}

// WINDOWS mode: the range's records in user order cut into windows of at most T (and Bmax)
// consecutive events of one user, sorted by the time of their first event (then user, then
// position), so that a batch holds the windows of many users that start around the same time.
typedef struct win {
    int64_t t0;     // timestamp of the window's first event
    uint64_t first; // offset of its first record in the user-ordered list
    uint32_t len;
} win;

static int cmp_win(const void *a, const void *b) {
    const win *x = a, *y = b;
    if (x->t0 != y->t0)
        return x->t0 < y->t0 ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

typedef struct win_list {
    uint64_t *recs; // (n_recs) record indices in user order
    win *w;         // (n_win)
    size_t n_recs, n_win;
} win_list;

static void win_list_free(win_list *wl) {
    rd_free(wl->recs);
    rd_free(wl->w);
    memset(wl, 0, sizeof *wl);
}

static int win_list_build(const driver *dv, rd_range range, win_list *wl, rd_errbuf *eb) {
    memset(wl, 0, sizeof *wl);
    uint64_t n = range.end - range.begin;
    size_t cap = dv->T < dv->Bmax ? dv->T : dv->Bmax;
    wl->recs = rd_calloc(n ? n : 1, sizeof *wl->recs);
    wl->w = rd_calloc(n ? n : 1, sizeof *wl->w);
    if (!wl->recs || !wl->w) {
        win_list_free(wl);
        return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory for %llu windows",
                          (unsigned long long)n);
    }
    rd_dataset_iter it;
    rd_dataset_iter_init(&it, dv->ds, range, RD_PART_USER, 0, 1);
    uint64_t i;
    uint32_t last_user = 0;
    while (rd_dataset_iter_next(&it, &i)) {
        const rd_record *r = rd_dataset_record(dv->ds, i);
        win *cur = wl->n_win ? &wl->w[wl->n_win - 1] : NULL;
        if (!cur || r->user != last_user || cur->len == cap)
            wl->w[wl->n_win++] = (win){r->ts, wl->n_recs, 0};
        wl->w[wl->n_win - 1].len++;
        wl->recs[wl->n_recs++] = i;
        last_user = r->user;
    }
    qsort(wl->w, wl->n_win, sizeof *wl->w, cmp_win);
    return RD_OK;
}

// The next batch of whole windows from wl (from *pos on).
static void form_window_batch(driver *dv, const win_list *wl, size_t *pos) {
    size_t n = 0;
    dv->G = 0;
    while (*pos < wl->n_win && n + wl->w[*pos].len <= dv->Bmax) {
        const win *w = &wl->w[(*pos)++];
        memcpy(dv->rec + n, wl->recs + w->first, w->len * sizeof *dv->rec);
        dv->glen[dv->G++] = w->len;
        n += w->len;
    }
    dv->B = n;
}

static int cmp_item_row(const void *a, const void *b) {
    const rd_source_item_row *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void rd_source_split_by_item(uint64_t *rec,
                             uint64_t *items,
                             uint32_t *glen,
                             size_t *G,
                             size_t B,
                             rd_source_item_row *scratch) {
    size_t row = 0;
    for (size_t g = 0; g < *G; g++) {
        size_t n = glen[g];
        rd_source_item_row *ir = scratch + row;
        for (size_t k = 0; k < n; k++) {
            uint64_t item = items[row + k];
            uint32_t first = (uint32_t)k;
            for (size_t j = 0; j < k; j++) // n <= T: a scan is enough
                if (ir[j].item == item) {
                    first = ir[j].first;
                    break;
                }
            ir[k] = (rd_source_item_row){item, rec[row + k], (uint32_t)g, first, (uint32_t)k};
        }
        row += n;
    }
    RD_ASSERT(row == B);
    qsort(scratch, B, sizeof *scratch, cmp_item_row);
    *G = 0;
    for (size_t r = 0; r < B; r++) {
        const rd_source_item_row *x = &scratch[r];
        rec[r] = x->rec;
        items[r] = x->item;
        if (r == 0 || x->group != x[-1].group || x->item != x[-1].item)
            glen[(*G)++] = 0;
        glen[*G - 1]++;
    }
}

size_t rd_source_keep_item(float *tokens,
                           float *labels,
                           uint64_t *items,
                           const uint64_t *keys,
                           size_t n,
                           size_t d,
                           uint64_t key) {
    size_t kept = 0;
    for (size_t k = 0; k < n; k++) {
        if ((keys ? keys[k] : items[k]) != key)
            continue;
        if (kept != k) {
            memcpy(tokens + kept * d, tokens + k * d, d * sizeof(float));
            if (labels)
                labels[kept] = labels[k];
            items[kept] = items[k];
        }
        kept++;
    }
    return kept;
}

// The key an instance's SIT group shares (tokens.sit_group item): its item, or the item's value
// of tokens.sit_group_by.
static uint64_t group_key(const driver *dv, uint64_t rec) {
    uint64_t item = rd_dataset_record(dv->ds, rec)->item_key;
    return dv->by_attr ? rd_item_attr_key(&dv->attr, item) : item;
}

// One step on the batch in dv->rec: fetch the frozen prefix, forward, record the progressive
// predictions, backward, update, push the rows, append the tokens.
// One step on the batch formed in dv. reverse: the two_pass step after it on the same batch, each
// group's events reversed (no frozen prefix, no predictions kept, no tokens written).
static int run_step(driver *dv,
                    int streaming,
                    int update,
                    int write,
                    int reverse,
                    double *loss_sum,
                    uint64_t *frozen,
                    rd_errbuf *eb) {
    rd_source *src = dv->src;
    rd_model *m = dv->m;
    rd_source_batch sb;
    int rc = build_batch(dv, &sb, eb);
    if (rc != RD_OK)
        return rc;
    size_t B = dv->B, d = dv->d;
    if (src->scheme == 2) {
        sb.n_groups = dv->G;
        sb.group_len = dv->glen;
        sb.reverse = reverse;
    }
    if (src->sit_item_code) {
        if (!dv->by_item || dv->by_attr) // else the split left them in the batch's order
            for (size_t b = 0; b < B; b++)
                dv->bitems[b] = rd_dataset_record(dv->ds, dv->rec[b])->item_key;
        sb.item_keys = dv->bitems;
    }
    if (src->scheme == 2 && streaming && !reverse && dv->T > 1) {
        // The frozen prefix of each group: its user's tokens strictly before its first event.
        size_t row = 0;
        for (size_t g = 0; g < dv->G; g++) {
            const rd_record *r = rd_dataset_record(dv->ds, dv->rec[row]);
            dv->users[g] = r->user_key;
            dv->ts[g] = r->ts;
            row += dv->glen[g];
        }
        rd_token_fetch_out fo = {.tokens = dv->prev,
                                 .labels = src->sit_labels || dv->by_item ? dv->prev_lab : NULL,
                                 .items = src->sit_item_code || dv->by_item ? dv->prev_items : NULL,
                                 .n_found = dv->n_found};
        rc = dv->io.fetch(dv->io.ctx, dv->G, dv->users, dv->ts, dv->T - 1, &fo, eb);
        if (rc != RD_OK)
            return rc;
        size_t Tm1 = dv->T - 1;
        for (size_t g = 0, r = 0; dv->by_item && g < dv->G; r += dv->glen[g++]) {
            uint64_t *pi = dv->prev_items + g * Tm1, *keys = NULL;
            if (dv->by_attr) { // compare the items' values of tokens.sit_group_by
                keys = dv->prev_grp + g * Tm1;
                for (size_t k = 0; k < dv->n_found[g]; k++)
                    keys[k] = rd_item_attr_key(&dv->attr, pi[k]);
            }
            dv->n_found[g] =
                (uint32_t)rd_source_keep_item(dv->prev + g * Tm1 * d, dv->prev_lab + g * Tm1, pi,
                                              keys, dv->n_found[g], d, group_key(dv, dv->rec[r]));
        }
        sb.prev_tokens = dv->prev;
        sb.prev_labels = src->sit_labels ? dv->prev_lab : NULL;
        sb.prev_items = src->sit_item_code ? dv->prev_items : NULL;
        sb.n_prev = dv->n_found;
        for (size_t g = 0; g < dv->G; g++) {
            size_t room = dv->T - dv->glen[g];
            *frozen += dv->n_found[g] < room ? dv->n_found[g] : room;
        }
    }
    if ((rc = rd_source_forward(src, &sb, eb)) != RD_OK)
        return rc;
    for (size_t b = 0; b < B && !reverse; b++) {
        dv->pred[dv->n_pred] = src->logits[b]; // ranked by the logit (rd/metrics.h)
        dv->plab[dv->n_pred++] = dv->labels[b];
    }
    if (!reverse)
        *loss_sum += src->loss * (double)B;
    if (update) {
        if ((rc = rd_source_backward(src, &sb, eb)) != RD_OK)
            return rc;
        rd_dense_optim_step(&dv->opt_src, src->params, src->grads, src->opt_state, src->n_slab);
        rd_dense_optim_step(&dv->opt_bb, m->params, m->grads, m->opt_state, m->n_slab);
    }
    int64_t now = INT64_MIN;
    for (size_t b = 0; b < B; b++) {
        const rd_record *r = rd_dataset_record(dv->ds, dv->rec[b]);
        now = r->ts > now ? r->ts : now;
        dv->users[b] = r->user_key;
        dv->ts[b] = r->ts;
        dv->ids[b] = r->id;
        dv->items[b] = r->item_key;
        dv->tlabels[b] = r->label;
        if (dv->n_side) {
            const float *num = rd_dataset_nums(dv->ds, dv->rec[b]);
            float *o = dv->tside + b * dv->side_w;
            for (size_t k = 0; k < dv->n_side; k++) {
                o[k] = num[dv->side_idx[k]];
                if (dv->side_mean[k])
                    o[dv->n_side + k] = o[k] - dv->side_mean[k][dv->rec[b]];
            }
        }
    }
    for (int t = 0; t < m->n_tables && update; t++)
        if (dv->n_uniq[t] &&
            (rc = rd_table_push(dv->tab[t], dv->uniq[t], dv->drows[t], dv->n_uniq[t], now)))
            return rd_err_set(eb, rc, "source driver: push to table '%s' failed",
                              m->tables[t].name);
    rd_token_batch tb = {.n = B,
                         .users = dv->users,
                         .ts = dv->ts,
                         .ids = dv->ids,
                         .tokens = src->tokens,
                         .labels = dv->tlabels,
                         .items = dv->items,
                         .side = dv->tside};
    (void)d;
    return write && !reverse ? dv->io.append(dv->io.ctx, &tb, eb) : RD_OK;
}

struct rd_source_driver {
    driver dv;
    rec_user *rs; // (Bmax) scratch of the time-order batch former
};

int rd_source_driver_create(const rd_config *cfg,
                            const rd_dataset *ds,
                            const rd_source_io *io,
                            size_t batch_size,
                            rd_source_driver **out,
                            rd_errbuf *eb) {
    *out = NULL;
    if (!cfg || !ds || !io || !io->fetch || !io->append)
        return rd_err_set(eb, RD_ERR_ARG, "rd_source_driver_create: NULL argument");
    rd_source_driver *sd = rd_calloc(1, sizeof *sd);
    if (!sd)
        return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    driver *dv = &sd->dv;
    dv->cfg = cfg;
    dv->ds = ds;
    dv->io = *io;
    dv->Bmax = batch_size > 0 ? batch_size : (size_t)cfg->train.batch_size;
    int rc = dv->Bmax < 1 ? rd_err_set(eb, RD_ERR_ARG, "source driver: batch size 0")
                          : driver_init(dv, eb);
    if (rc == RD_OK && !(sd->rs = rd_calloc(dv->Bmax, sizeof *sd->rs)))
        rc = rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
    if (rc != RD_OK) {
        rd_source_driver_destroy(sd);
        return rc;
    }
    *out = sd;
    return RD_OK;
}

void rd_source_driver_destroy(rd_source_driver *sd) {
    if (!sd)
        return;
    rd_free(sd->rs);
    driver_free(&sd->dv);
    rd_free(sd);
}

int rd_source_driver_run(rd_source_driver *sd,
                         const rd_source_train_opts *o,
                         rd_source_train_stats *st,
                         rd_errbuf *eb) {
    if (!sd || !o || !st)
        return rd_err_set(eb, RD_ERR_ARG, "rd_source_driver_run: NULL argument");
    driver *dv = &sd->dv;
    memset(st, 0, sizeof *st);
    st->auc_last = (double)NAN;
    if (o->order != RD_ORDER_TIME && o->order != RD_ORDER_USER && o->order != RD_ORDER_WINDOWS)
        return rd_err_set(eb, RD_ERR_ARG, "source driver: order %d is not time|user|windows",
                          o->order);
    if (o->batch_size > dv->Bmax)
        return rd_err_set(eb, RD_ERR_ARG, "source driver: batch size %zu > the driver's %zu",
                          o->batch_size, dv->Bmax);
    rd_source_train_opts oo = *o;
    rd_range all = rd_dataset_all(dv->ds);
    if (oo.range.begin >= oo.range.end) {
        oo.range = all;
    } else {
        oo.range.end = oo.range.end < all.end ? oo.range.end : all.end;
        oo.range.begin = oo.range.begin < oo.range.end ? oo.range.begin : oo.range.end;
    }
    uint64_t n_range = oo.range.end - oo.range.begin;
    if (n_range > dv->pred_cap) {
        float *p = rd_realloc(dv->pred, n_range * sizeof(float));
        if (p)
            dv->pred = p;
        float *l = p ? rd_realloc(dv->plab, n_range * sizeof(float)) : NULL;
        if (l)
            dv->plab = l;
        if (!p || !l)
            return rd_err_set(eb, RD_ERR_NOMEM, "source driver: out of memory");
        dv->pred_cap = n_range;
    }
    size_t Bkeep = dv->Bmax;
    if (oo.batch_size > 0)
        dv->Bmax = oo.batch_size;
    int epochs = oo.epochs > 0 ? oo.epochs : dv->cfg->train.epochs;
    if (oo.infer_only)
        epochs = 1;
    int rc = RD_OK;
    win_list wl = {0};
    if (oo.order == RD_ORDER_WINDOWS)
        rc = win_list_build(dv, oo.range, &wl, eb);
    for (int e = 0; rc == RD_OK && e < epochs; e++) {
        double loss_sum = 0.0;
        uint64_t n_ep = 0;
        dv->n_pred = 0;
        size_t wpos = 0;
        uint64_t next = oo.range.begin, pending = 0;
        int has_pending = 0;
        rd_dataset_iter it;
        rd_dataset_iter_init(&it, dv->ds, oo.range, RD_PART_USER, 0, 1);
        for (;;) {
            if (oo.order == RD_ORDER_TIME)
                form_time_batch(dv, &next, oo.range.end, sd->rs);
            else if (oo.order == RD_ORDER_WINDOWS)
                form_window_batch(dv, &wl, &wpos);
            else
                form_user_batch(dv, &it, &pending, &has_pending);
            if (dv->B == 0)
                break;
            if (dv->by_item) { // the group keys go in bitems and are reordered with the records
                for (size_t b = 0; b < dv->B; b++)
                    dv->bitems[b] = group_key(dv, dv->rec[b]);
                rd_source_split_by_item(dv->rec, dv->bitems, dv->glen, &dv->G, dv->B, dv->isort);
            }
            int write = !oo.first_epoch_tokens || e == 0;
            if ((rc = run_step(dv, oo.order == RD_ORDER_TIME, !oo.infer_only, write, 0, &loss_sum,
                               &st->frozen_used, eb)) != RD_OK)
                break;
            if (oo.two_pass && !oo.infer_only && dv->src->scheme == 2 && dv->src->sit_layers > 0) {
                if ((rc = run_step(dv, 0, 1, 0, 1, &loss_sum, &st->frozen_used, eb)) != RD_OK)
                    break;
                st->reverse_steps++;
            }
            st->steps++;
            st->groups += dv->src->scheme == 2 ? dv->G : 0;
            st->events += dv->B;
            st->tokens_written += write ? dv->B : 0;
            n_ep += dv->B;
            if (oo.on_step)
                oo.on_step(oo.step_ctx, st->steps, st->events,
                           (uint64_t)epochs * (oo.range.end - oo.range.begin));
        }
        if (rc != RD_OK)
            break;
        double mean = n_ep ? loss_sum / (double)n_ep : (double)NAN;
        if (e == 0)
            st->loss_first = mean;
        st->loss_last = mean;
        double auc = (double)NAN;
        if (dv->n_pred > 0 && rd_metrics_auc_logits(dv->pred, dv->plab, dv->n_pred, &auc) != RD_OK)
            auc = (double)NAN;
        st->auc_last = auc;
    }
    win_list_free(&wl);
    dv->Bmax = Bkeep;
    return rc;
}

// The driver's I/O: the store directly, or the token client (same semantics).
static int store_fetch(void *ctx,
                       size_t n,
                       const uint64_t *users,
                       const int64_t *before_t,
                       size_t L,
                       const rd_token_fetch_out *out,
                       rd_errbuf *eb) {
    return rd_token_store_fetch_batch(ctx, n, users, before_t, NULL, L, out, eb);
}

static int store_append(void *ctx, const rd_token_batch *b, rd_errbuf *eb) {
    return rd_token_store_append(ctx, b, eb);
}

static int client_fetch(void *ctx,
                        size_t n,
                        const uint64_t *users,
                        const int64_t *before_t,
                        size_t L,
                        const rd_token_fetch_out *out,
                        rd_errbuf *eb) {
    return rd_token_client_fetch(ctx, n, users, before_t, NULL, L, out, eb);
}

static int client_append(void *ctx, const rd_token_batch *b, rd_errbuf *eb) {
    return rd_token_client_append(ctx, b, eb);
}

rd_source_io rd_source_io_store(rd_token_store *store) {
    rd_source_io io = {.ctx = store, .fetch = store_fetch, .append = store_append};
    return io;
}

rd_source_io rd_source_io_client(rd_token_client *client) {
    rd_source_io io = {.ctx = client, .fetch = client_fetch, .append = client_append};
    return io;
}

int rd_source_train_range(const rd_config *cfg,
                          const rd_dataset *ds,
                          const rd_source_train_opts *o,
                          rd_token_store *store,
                          rd_source_train_stats *st,
                          rd_errbuf *eb) {
    if (!cfg || !ds || !o || !store || !st)
        return rd_err_set(eb, RD_ERR_ARG, "rd_source_train_range: NULL argument");
    memset(st, 0, sizeof *st);
    st->auc_last = (double)NAN;
    rd_token_store_info si;
    rd_token_store_info_get(store, &si);
    if ((int)si.dim != cfg->tokens.dim)
        return rd_err_set(eb, RD_ERR_CONFIG, "token store has dim %u, tokens.dim is %d", si.dim,
                          cfg->tokens.dim);
    if ((int)si.n_side != rd_tokens_side_width(&cfg->tokens))
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "token store has %u side values per token, tokens.side and "
                          "tokens.side_residual ask for %d",
                          si.n_side, rd_tokens_side_width(&cfg->tokens));
    if (o->order != RD_ORDER_TIME && o->order != RD_ORDER_USER && o->order != RD_ORDER_WINDOWS)
        return rd_err_set(eb, RD_ERR_ARG, "source driver: order %d is not time|user|windows",
                          o->order);
    rd_source_io io = rd_source_io_store(store);
    rd_source_driver *sd = NULL;
    int rc = rd_source_driver_create(cfg, ds, &io, o->batch_size, &sd, eb);
    if (rc == RD_OK)
        rc = rd_source_driver_run(sd, o, st, eb);
    rd_source_driver_destroy(sd);
    return rc;
}

// rd_source_build's step callback with the part it is in.
typedef struct build_step {
    rd_source_step_fn fn;
    void *ctx;
    int part;
} build_step;

static void build_on_step(void *ctx, uint64_t steps, uint64_t done, uint64_t total) {
    const build_step *bs = ctx;
    bs->fn(bs->ctx, bs->part, steps, done, total);
}

int rd_source_build(const rd_config *cfg,
                    const rd_dataset *ds,
                    const rd_source_io *io,
                    size_t batch_size,
                    rd_source_part_fn on_part,
                    rd_source_step_fn on_step,
                    void *ctx,
                    rd_errbuf *eb) {
    rd_source_driver *sd = NULL;
    int rc = rd_source_driver_create(cfg, ds, io, batch_size, &sd, eb);
    rd_range batch = rd_dataset_batch(ds), hold = rd_dataset_holdout(ds);
    uint32_t K = rd_dataset_get_info(ds)->n_windows;
    rd_range stream = {batch.end, K ? rd_dataset_window(ds, K - 1).end : batch.end};
    struct {
        rd_range r;
        int order, epochs, infer;
    } parts[3] = {
        {batch, cfg->tokens.scheme == 2 ? cfg->tokens.batch_order : RD_ORDER_TIME,
         cfg->train.epochs, 0},
        {stream, RD_ORDER_TIME, 1, 0},
        {hold, RD_ORDER_TIME, 1, 1},
    };
    for (int k = 0; k < 3 && rc == RD_OK; k++) {
        if (parts[k].r.end <= parts[k].r.begin || parts[k].epochs == 0)
            continue;
        // First-epoch tokens only: a token the source model computed after training on its own
        // event (and on later ones) would be an in-sample output, unlike the out-of-sample tokens
        // of the stream and the holdout that the teacher is evaluated with (docs/iat.md: on the
        // synthetic data this choice alone did not change the teacher's AUC).
        rd_source_train_opts o = {.range = parts[k].r,
                                  .order = parts[k].order,
                                  .epochs = parts[k].epochs,
                                  .infer_only = parts[k].infer,
                                  .first_epoch_tokens = 1,
                                  .two_pass = k == RD_SOURCE_PART_BATCH && cfg->tokens.two_pass};
        build_step bs = {on_step, ctx, k};
        if (on_step) {
            o.on_step = build_on_step;
            o.step_ctx = &bs;
        }
        rd_source_train_stats st;
        if ((rc = rd_source_driver_run(sd, &o, &st, eb)) == RD_OK && on_part)
            on_part(ctx, k, &st);
        // tokens.batch_tokens final: the trained model writes the batch period's tokens again,
        // in the order it trained in (a time-ordered pass fetches the earlier ones it rewrote).
        if (rc == RD_OK && k == RD_SOURCE_PART_BATCH &&
            cfg->tokens.batch_tokens == RD_BATCH_TOKENS_FINAL) {
            o.epochs = 1;
            o.infer_only = 1;
            bs.part = RD_SOURCE_PART_BATCH_FINAL;
            if ((rc = rd_source_driver_run(sd, &o, &st, eb)) == RD_OK && on_part)
                on_part(ctx, RD_SOURCE_PART_BATCH_FINAL, &st);
        }
    }
    rd_source_driver_destroy(sd);
    return rc;
}
