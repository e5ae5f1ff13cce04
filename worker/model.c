// model.c — build a dense model from its config into one parameter / gradient / optimizer-state /
// activation slab each, and run its forward and backward passes (rd/model.h).
//
// Layout: one function, layout(), walks the architecture in a fixed order and "carves" every
// parameter tensor and every activation buffer. It runs twice: a counting pass (no memory, only
// sizes and FLOPs) and an assigning pass on the allocated slabs. Parameters and gradients share
// offsets, so each weight struct of rd/layers.h exists twice (priv->...p / ...g) pointing at the
// same offsets of the two slabs. Tensors are padded to 16 floats (64 bytes).
//
// Invariants: forward and backward never allocate (the activation slab holds all scratch, sized
// for max_batch; a batch uses the first B rows); backward overwrites the gradient slab and the
// caller's drows; a backward must follow a forward of the same batch.
//
// Workload: see rd/layers.h; at the teacher's shapes almost all time is in the sequence branch's
// cblas_sgemm calls. The embedding gathers and the small per-example loops here are O(B * width).
#include "rd/model.h"

#include "rd/alloc.h"
#include "rd/distill.h"
#include "rd/hash.h"
#include "rd/layers.h"
#include "rd/log.h"
#include "rd/rng.h"
#include "rd/table.h"

#include "slab_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_BLOCKS 64 // config limit of seq.layers / tokens.layers

// ---------------------------------------------------------------------------------------------
// Private structures

// Parameters of a sequence branch (also used for their gradients).
typedef struct branch_params {
    float *in_w; // (C, Din)
    float *in_b; // (C)
    float *pos;  // (L, C) transformer only
    float *q_w;  // (C, E) din only: query from the request
    float *q_b;  // (C)
    rd_din_weights din;
    rd_tblock_weights blk[MAX_BLOCKS];
    rd_reqattn_weights ra;
} branch_params;

// A sequence branch (the item-ID history, or the IAT tokens): bin -> one vector per example.
typedef struct branch {
    int on;
    int kind;      // rd_seq_kind: mean | din | transformer
    size_t layers; // transformer blocks
    rd_seq_dims d; // B is set per batch; T = L, C, NH, E, H
    size_t Din;    // width of bin
    branch_params p, g;
    // Activations
    float *mask;              // (B, L) 1 valid / 0 padding
    float *bin;               // (B, L, Din) input of the in-projection (filled by the owner)
    float *x[MAX_BLOCKS + 1]; // (B, L, C) x[0] = in-projection (+ positions), x[l+1] = block l
    rd_tblock_acts ba[MAX_BLOCKS];
    rd_reqattn_acts ra;
    rd_din_acts din;
    float *q;   // (B, C) din query
    float *out; // (B, C)
    // Backward scratch
    float *dout;  // (B, C)
    float *dx[2]; // (B, L, C) ping-pong through the blocks
    float *dq;    // (B, C)
    float *dbin;  // (B, L, Din)
    rd_tblock_scratch bs;
    rd_reqattn_scratch ras;
    rd_din_scratch ds;
} branch;

struct rd__model_priv {
    float *acts; // the activation slab
    int act;     // rd_act_kind of the MLPs, FFNs and DIN
    size_t E;    // width of x_req

    // Features
    float *emb[RD_MAX_FEATURES];  // (B, D_f)
    float *demb[RD_MAX_FEATURES]; // (B, D_f)
    float *x_req;                 // (B, E)
    float *dx_req;                // (B, E)

    // Seq branch: gathered history + label side-embedding
    branch seq;
    float *seq_lab_p, *seq_lab_g; // (2, D_t)
    // seq.view: a second view (mean | din) of the Lm most recent events of the same history (its
    // bin is the first Lm events of seq.bin, copied; its dbin adds back into seq.dbin)
    branch seqm;
    int seqm_by_label; // seq.view_by_label: its bin is [x * y | x * (1 - y)] (2 D_t wide)

    // Token branch: adapter + label side-embedding (none with tokens.label none)
    branch tok;
    size_t A;                       // adapter width
    float *ad_w_p, *ad_w_g;         // (A, d_tok)
    float *ad_b_p, *ad_b_g;         // (A)
    float *tok_lab_p, *tok_lab_g;   // (2, A); NULL with tok_nolabel
    int tok_nolabel;                // tokens.label none: the side input holds the side values only
    float *tok_side_p, *tok_side_g; // (tok_side, A): side value k adds side[k] * row k
    float *ad_pre, *ad;             // (B, L, A)
    float *dad, *dad_pre;           // (B, L, A)
    int tok_gate;                   // tokens.gate: out -> gate * out
    int tok_norm;                   // tokens.norm: the adapter reads tok_in, standardised tokens
    float *tok_in;                  // (B, L, d_tok) with tok_norm
    float *gate_p, *gate_g;         // (C_tok), initialised to 0
    float *tok_gated, *dtok_gated;  // (B, C_tok)
    int tok_qseq;                   // tokens.query request_seq: the query reads tok_q
    float *tok_q, *dtok_q;          // (B, E + C_seq) [x_req | seq out] with tok_qseq

    // Backbone
    size_t W;             // backbone input width
    int n_parts;          // concat parts
    const float *part[5]; // x_req, numeric (set per batch), seq out, seq view out, tok out
    float *dpart[5];      // their gradients (NULL for numeric)
    size_t part_w[5];
    int part_numeric;         // index of the numeric part, -1 if none
    float *bb_in, *dbb_in;    // (B, W)
    int ln;                   // layer norm on the backbone input
    float *ln_w_p, *ln_w_g;   // (W)
    float *ln_b_p, *ln_b_g;   // (W)
    float *bb_ln, *dbb_ln;    // (B, W)
    float *bb_mean, *bb_rstd; // (B)
    int need_dbb;             // something trainable feeds the backbone (features, branches, ln)
    int need_dh;              // the head must pass a gradient to its input
    int has_mlp;
    rd_mlp_shape bb_shape;
    rd_mlp_weights bb_p, bb_g;
    rd_mlp_acts bb_a;
    float p_drop;            // models[].dropout: rate on every backbone MLP layer's output
    float *keep[RD_MLP_MAX]; // (B, mlp[i]) the masks of the last training forward
    rd_mlp_dropout bb_drop;  // keep[i] set in a training forward, NULL in any other forward
    int drop_on;             // 1 = the last forward ran with dropout
    float *h; // (B, Hd) backbone output (points into the slab; the dropped one after a training
              // forward with dropout)
    size_t Hd;
    float *dh; // (B, Hd)

    // Head: tower 0 = main (or the single tower), tower 1 = aux
    rd_two_tower head;
    rd_mlp_weights head_g[2];
    rd_mlp_scratch mlp_sc;

    // Losses
    float *loss_b, *dist_b;  // (B)
    float *zcal, *dzcal;     // (B) the student's logit through rd_batch.calib, and its gradient
    float *w_task, *w_dist;  // (B) per-example weights of the loss terms
    float *dz_main, *dz_aux; // (B)

    // Accounting and state
    double flops_fwd, flops_bwd; // per example
    rd__init_spec *inits;        // (n_tensors)
    size_t fwd_B;                // B of the last forward, 0 = none
    int fwd_head;                // 1 = the last forward ran the head and losses (rd_model_forward),
                                 // 0 = it stopped at h (rd_model_forward_hidden)
    int fwd_shared;              // 1 = the last forward shared a history (rd_batch.seq_shared or
                                 // tok_shared): it kept no per-example activations to go back
                                 // through
    int params_borrowed;         // 1 = params is opts.shared_params: not ours to free, and no
                                 // gradient slab (inference only)
};

// ---------------------------------------------------------------------------------------------
// Builder: the two layout passes

typedef struct builder {
    rd_model *m;
    rd__model_priv *p;
    rd__carver c;
    double ff, fb; // FLOPs per example
    int fwd_only;  // inference only (opts.shared_params): no backward buffers are carved
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

// A buffer only the backward passes use (the d* gradients and their scratch): not carved, NULL,
// in an inference-only model, whose backward is refused. A serving thread's activations are
// then the forward's alone.
static float *bact(builder *bd, size_t n) {
    return bd->fwd_only ? NULL : rd__carve_act(&bd->c, n);
}

// FLOPs of a linear layer applied to `rows` rows per example.
static void flops_linear(builder *bd, double rows, size_t C, size_t OC, int with_dinp) {
    double f = 2.0 * rows * (double)C * (double)OC;
    bd->ff += f;
    bd->fb += with_dinp ? 2.0 * f : f;
}

// Std of a linear weight with fan-in `in` (LeCun normal; the layers are followed by relu/gelu
// or by layer norms, and the residual projections are scaled down GPT-2 style by the caller).
static float fan_std(size_t in) {
    return 1.0f / sqrtf((float)in);
}

static void layout_mlp(builder *bd,
                       const char *name,
                       const rd_mlp_shape *s,
                       rd_mlp_weights *w,
                       rd_mlp_weights *g,
                       rd_mlp_acts *a,
                       int first_dinp) {
    size_t B = bd->m->max_batch;
    for (size_t i = 0; i < s->n; i++) {
        size_t in = s->dims[i], out = s->dims[i + 1];
        param(bd, &w->w[i], &g->w[i], out * in, RD__INIT_NORMAL, fan_std(in), "%s.l%zu.w", name, i);
        param(bd, &w->b[i], &g->b[i], out, RD__INIT_ZERO, 0.0f, "%s.l%zu.b", name, i);
        a->pre[i] = act(bd, B * out);
        int f = i + 1 < s->n ? s->act : s->act_last;
        a->post[i] = f == RD_ACT_NONE ? a->pre[i] : act(bd, B * out);
        flops_linear(bd, 1.0, in, out, i > 0 || first_dinp);
    }
}

static void layout_branch(builder *bd, branch *br, const char *name) {
    size_t B = bd->m->max_batch, L = br->d.T, C = br->d.C, E = br->d.E, Din = br->Din;
    double Ld = (double)L;
    param(bd, &br->p.in_w, &br->g.in_w, C * Din, RD__INIT_NORMAL, fan_std(Din), "%s.in.w", name);
    param(bd, &br->p.in_b, &br->g.in_b, C, RD__INIT_ZERO, 0.0f, "%s.in.b", name);
    flops_linear(bd, Ld, Din, C, 1);
    br->mask = act(bd, B * L);
    br->bin = act(bd, B * L * Din);
    br->x[0] = act(bd, B * L * C);
    br->out = act(bd, B * C);
    br->dout = bact(bd, B * C);
    br->dx[0] = bact(bd, B * L * C);
    br->dbin = bact(bd, B * L * Din);
    if (br->kind == RD_SEQ_DIN) {
        size_t H = br->d.H;
        param(bd, &br->p.q_w, &br->g.q_w, C * E, RD__INIT_NORMAL, fan_std(E), "%s.q.w", name);
        param(bd, &br->p.q_b, &br->g.q_b, C, RD__INIT_ZERO, 0.0f, "%s.q.b", name);
        param(bd, &br->p.din.w1, &br->g.din.w1, H * 4 * C, RD__INIT_NORMAL, fan_std(4 * C),
              "%s.din.w1", name);
        param(bd, &br->p.din.b1, &br->g.din.b1, H, RD__INIT_ZERO, 0.0f, "%s.din.b1", name);
        param(bd, &br->p.din.w2, &br->g.din.w2, H, RD__INIT_NORMAL, fan_std(H), "%s.din.w2", name);
        param(bd, &br->p.din.b2, &br->g.din.b2, 1, RD__INIT_ZERO, 0.0f, "%s.din.b2", name);
        br->q = act(bd, B * C);
        br->dq = bact(bd, B * C);
        br->din.feat = act(bd, B * L * 2 * C); // [k, q * k]: rd_din_forward folds the layer
        br->din.hid = act(bd, B * L * H);
        br->din.hid_act = act(bd, B * L * H);
        br->din.score = act(bd, B * L);
        br->din.att = act(bd, B * L);
        rd_seq_dims fd = br->d;
        fd.B = B;
        br->din.fold = act(bd, rd_din_fold_floats(&fd));
        br->ds.dfold = bact(bd, rd_din_fold_floats(&fd));
        br->ds.dfeat = bact(bd, B * L * 2 * C);
        br->ds.dhid = bact(bd, B * L * H);
        br->ds.dhid_act = bact(bd, B * L * H);
        br->ds.dscore = bact(bd, B * L);
        flops_linear(bd, 1.0, E, C, 1);
        // The attention MLP's first layer, folded (rd_din_forward): the query's share once per
        // example, [k, q * k] per position.
        flops_linear(bd, 1.0, C, H, 1);
        flops_linear(bd, Ld, 2 * C, H, 1);
        flops_linear(bd, Ld, H, 1, 1);
        bd->ff += 2.0 * Ld * (double)C; // weighted sum of the keys
        bd->fb += 4.0 * Ld * (double)C;
    } else if (br->kind == RD_SEQ_TRANSFORMER) {
        size_t NH = br->d.NH;
        float res_std = fan_std(C) / sqrtf(2.0f * (float)br->layers);
        param(bd, &br->p.pos, &br->g.pos, L * C, RD__INIT_NORMAL, 0.02f, "%s.pos", name);
        br->dx[1] = bact(bd, B * L * C);
        // One shared backward scratch for all blocks (they run one at a time).
        br->bs.dres = bact(bd, B * L * C);
        br->bs.dln = bact(bd, B * L * C);
        br->bs.dqkv = bact(bd, B * L * 3 * C);
        br->bs.datty = bact(bd, B * L * C);
        br->bs.dfch = bact(bd, B * L * 4 * C);
        br->bs.dfch_act = bact(bd, B * L * 4 * C);
        br->bs.datt = bact(bd, L * L);
        for (size_t l = 0; l < br->layers; l++) {
            rd_tblock_weights *w = &br->p.blk[l], *g = &br->g.blk[l];
            rd_tblock_acts *a = &br->ba[l];
            param(bd, &w->ln1w, &g->ln1w, C, RD__INIT_ONE, 0.0f, "%s.block%zu.ln1w", name, l);
            param(bd, &w->ln1b, &g->ln1b, C, RD__INIT_ZERO, 0.0f, "%s.block%zu.ln1b", name, l);
            param(bd, &w->qkvw, &g->qkvw, 3 * C * C, RD__INIT_NORMAL, fan_std(C),
                  "%s.block%zu.qkvw", name, l);
            param(bd, &w->qkvb, &g->qkvb, 3 * C, RD__INIT_ZERO, 0.0f, "%s.block%zu.qkvb", name, l);
            param(bd, &w->projw, &g->projw, C * C, RD__INIT_NORMAL, res_std, "%s.block%zu.projw",
                  name, l);
            param(bd, &w->projb, &g->projb, C, RD__INIT_ZERO, 0.0f, "%s.block%zu.projb", name, l);
            param(bd, &w->ln2w, &g->ln2w, C, RD__INIT_ONE, 0.0f, "%s.block%zu.ln2w", name, l);
            param(bd, &w->ln2b, &g->ln2b, C, RD__INIT_ZERO, 0.0f, "%s.block%zu.ln2b", name, l);
            param(bd, &w->fcw, &g->fcw, 4 * C * C, RD__INIT_NORMAL, fan_std(C), "%s.block%zu.fcw",
                  name, l);
            param(bd, &w->fcb, &g->fcb, 4 * C, RD__INIT_ZERO, 0.0f, "%s.block%zu.fcb", name, l);
            param(bd, &w->fcprojw, &g->fcprojw, 4 * C * C, RD__INIT_NORMAL,
                  fan_std(4 * C) / sqrtf(2.0f * (float)br->layers), "%s.block%zu.fcprojw", name, l);
            param(bd, &w->fcprojb, &g->fcprojb, C, RD__INIT_ZERO, 0.0f, "%s.block%zu.fcprojb", name,
                  l);
            a->ln1 = act(bd, B * L * C);
            a->ln1_mean = act(bd, B * L);
            a->ln1_rstd = act(bd, B * L);
            a->qkv = act(bd, B * L * 3 * C);
            a->att = act(bd, B * NH * L * L);
            a->atty = act(bd, B * L * C);
            a->res = act(bd, B * L * C);
            a->ln2 = act(bd, B * L * C);
            a->ln2_mean = act(bd, B * L);
            a->ln2_rstd = act(bd, B * L);
            a->fch = act(bd, B * L * 4 * C);
            a->fch_act = act(bd, B * L * 4 * C);
            br->x[l + 1] = act(bd, B * L * C);
            flops_linear(bd, Ld, C, 3 * C, 1);
            bd->ff += 4.0 * Ld * Ld * (double)C; // Q K^T and P V over all heads
            bd->fb += 8.0 * Ld * Ld * (double)C;
            flops_linear(bd, Ld, C, C, 1);
            flops_linear(bd, Ld, C, 4 * C, 1);
            flops_linear(bd, Ld, 4 * C, C, 1);
        }
        rd_reqattn_weights *w = &br->p.ra, *g = &br->g.ra;
        param(bd, &w->lnw, &g->lnw, C, RD__INIT_ONE, 0.0f, "%s.ra.lnw", name);
        param(bd, &w->lnb, &g->lnb, C, RD__INIT_ZERO, 0.0f, "%s.ra.lnb", name);
        param(bd, &w->qw, &g->qw, C * E, RD__INIT_NORMAL, fan_std(E), "%s.ra.qw", name);
        param(bd, &w->qb, &g->qb, C, RD__INIT_ZERO, 0.0f, "%s.ra.qb", name);
        param(bd, &w->kvw, &g->kvw, 2 * C * C, RD__INIT_NORMAL, fan_std(C), "%s.ra.kvw", name);
        param(bd, &w->kvb, &g->kvb, 2 * C, RD__INIT_ZERO, 0.0f, "%s.ra.kvb", name);
        param(bd, &w->projw, &g->projw, C * C, RD__INIT_NORMAL, fan_std(C), "%s.ra.projw", name);
        param(bd, &w->projb, &g->projb, C, RD__INIT_ZERO, 0.0f, "%s.ra.projb", name);
        br->ra.ln = act(bd, B * L * C);
        br->ra.ln_mean = act(bd, B * L);
        br->ra.ln_rstd = act(bd, B * L);
        br->ra.q = act(bd, B * C);
        br->ra.kv = act(bd, B * L * 2 * C);
        br->ra.att = act(bd, B * NH * L);
        br->ra.o = act(bd, B * C);
        br->ras.dln = bact(bd, B * L * C);
        br->ras.dkv = bact(bd, B * L * 2 * C);
        br->ras.dq = bact(bd, B * C);
        br->ras.do_ = bact(bd, B * C);
        br->ras.dp = bact(bd, L);
        flops_linear(bd, 1.0, E, C, 1);
        flops_linear(bd, Ld, C, 2 * C, 1);
        bd->ff += 4.0 * Ld * (double)C;
        bd->fb += 8.0 * Ld * (double)C;
        flops_linear(bd, 1.0, C, C, 1);
    }
}

static void layout(builder *bd) {
    rd_model *m = bd->m;
    rd__model_priv *p = bd->p;
    size_t B = m->max_batch;
    for (int f = 0; f < m->n_features; f++) {
        p->emb[f] = act(bd, B * m->features[f].dim);
        p->demb[f] = bact(bd, B * m->features[f].dim);
    }
    p->x_req = act(bd, B * p->E);
    p->dx_req = bact(bd, B * p->E);

    if (p->seq.on) {
        size_t Dt = m->tables[m->seq_table].dim;
        if (m->seq_with_labels)
            param(bd, &p->seq_lab_p, &p->seq_lab_g, 2 * Dt, RD__INIT_NORMAL, 0.02f,
                  "seq.label_emb");
        layout_branch(bd, &p->seq, "seq");
    }
    if (p->seqm.on)
        layout_branch(bd, &p->seqm, "seq_view");
    if (p->tok.on) {
        size_t L = m->tok_length, A = p->A;
        param(bd, &p->ad_w_p, &p->ad_w_g, A * m->tok_dim, RD__INIT_NORMAL, fan_std(m->tok_dim),
              "tok.adapter.w");
        param(bd, &p->ad_b_p, &p->ad_b_g, A, RD__INIT_ZERO, 0.0f, "tok.adapter.b");
        if (!p->tok_nolabel)
            param(bd, &p->tok_lab_p, &p->tok_lab_g, 2 * A, RD__INIT_NORMAL, 0.02f, "tok.label_emb");
        if (m->tok_side) // only then: the slab of models without side values is unchanged
            param(bd, &p->tok_side_p, &p->tok_side_g, m->tok_side * A, RD__INIT_NORMAL, 0.02f,
                  "tok.side_w");
        if (p->tok_norm) {
            p->tok_in = act(bd, B * L * m->tok_dim);
            bd->ff += 4.0 * (double)L * (double)m->tok_dim; // mean, variance, scale: forward only
        }
        p->ad_pre = act(bd, B * L * A);
        p->ad = act(bd, B * L * A);
        p->dad = bact(bd, B * L * A);
        p->dad_pre = bact(bd, B * L * A);
        flops_linear(bd, (double)L, m->tok_dim, A, 0); // frozen tokens: no input gradient
        layout_branch(bd, &p->tok, "tok");
        if (p->tok_qseq) {
            p->tok_q = act(bd, B * p->tok.d.E);
            p->dtok_q = bact(bd, B * p->tok.d.E);
        }
        if (p->tok_gate) {
            param(bd, &p->gate_p, &p->gate_g, p->tok.d.C, RD__INIT_ZERO, 0.0f, "tok.gate");
            p->tok_gated = act(bd, B * p->tok.d.C);
            p->dtok_gated = bact(bd, B * p->tok.d.C);
        }
    }

    // Backbone input: [x_req | numeric | seq | seq view | tok]
    p->n_parts = 0;
    p->part_numeric = -1;
    if (p->E > 0) {
        p->part[p->n_parts] = p->x_req;
        p->dpart[p->n_parts] = p->dx_req;
        p->part_w[p->n_parts++] = p->E;
    }
    if (m->n_numeric > 0) {
        p->part_numeric = p->n_parts;
        p->part[p->n_parts] = NULL;
        p->dpart[p->n_parts] = NULL;
        p->part_w[p->n_parts++] = m->n_numeric;
    }
    branch *brs[3] = {&p->seq, &p->seqm, &p->tok};
    for (int i = 0; i < 3; i++)
        if (brs[i]->on) {
            int gated = i == 2 && p->tok_gate;
            p->part[p->n_parts] = gated ? p->tok_gated : brs[i]->out;
            p->dpart[p->n_parts] = gated ? p->dtok_gated : brs[i]->dout;
            p->part_w[p->n_parts++] = brs[i]->d.C;
        }
    p->W = 0;
    for (int i = 0; i < p->n_parts; i++)
        p->W += p->part_w[i];
    // Input gradients are needed below the backbone unless its input is numeric only.
    int trainable_input = p->n_parts > (p->part_numeric >= 0 ? 1 : 0);
    p->need_dbb = trainable_input || p->ln;
    p->bb_in = act(bd, B * p->W);
    p->dbb_in = bact(bd, B * p->W);
    float *x = p->bb_in;
    if (p->ln) {
        param(bd, &p->ln_w_p, &p->ln_w_g, p->W, RD__INIT_ONE, 0.0f, "backbone.ln.w");
        param(bd, &p->ln_b_p, &p->ln_b_g, p->W, RD__INIT_ZERO, 0.0f, "backbone.ln.b");
        p->bb_ln = act(bd, B * p->W);
        p->dbb_ln = bact(bd, B * p->W);
        p->bb_mean = act(bd, B);
        p->bb_rstd = act(bd, B);
        x = p->bb_ln;
    }
    p->need_dh = p->has_mlp || p->need_dbb;
    size_t maxw = 1;
    if (p->has_mlp) {
        layout_mlp(bd, "backbone", &p->bb_shape, &p->bb_p, &p->bb_g, &p->bb_a, p->need_dbb);
        p->h = rd_mlp_output(&p->bb_a, &p->bb_shape);
        if (p->p_drop > 0.0f)
            for (size_t i = 0; i < p->bb_shape.n; i++) {
                p->keep[i] = act(bd, B * p->bb_shape.dims[i + 1]);
                p->bb_drop.out[i] = act(bd, B * p->bb_shape.dims[i + 1]);
            }
        for (size_t i = 1; i <= p->bb_shape.n; i++)
            maxw = p->bb_shape.dims[i] > maxw ? p->bb_shape.dims[i] : maxw;
    } else {
        p->h = x; // no MLP: the backbone is the identity on its (normalised) input
    }
    p->dh = bact(bd, B * p->Hd);

    int ntow = m->two_towers ? 2 : 1;
    const char *tname[2] = {m->two_towers ? "tower_main" : "tower", "tower_aux"};
    for (int t = 0; t < ntow; t++) {
        layout_mlp(bd, tname[t], &p->head.shape[t], &p->head.w[t], &p->head_g[t], &p->head.acts[t],
                   p->need_dh);
        for (size_t i = 1; i <= p->head.shape[t].n; i++)
            maxw = p->head.shape[t].dims[i] > maxw ? p->head.shape[t].dims[i] : maxw;
    }
    p->mlp_sc.a = bact(bd, B * maxw);
    p->mlp_sc.b = bact(bd, B * maxw);
    m->logits_main = bd->c.assign ? rd_mlp_output(&p->head.acts[0], &p->head.shape[0]) : NULL;
    m->logits_aux =
        bd->c.assign && m->two_towers ? rd_mlp_output(&p->head.acts[1], &p->head.shape[1]) : NULL;
    p->loss_b = act(bd, B);
    p->dist_b = act(bd, B);
    p->zcal = act(bd, B);
    p->dzcal = act(bd, B);
    p->w_task = act(bd, B);
    p->w_dist = act(bd, B);
    p->dz_main = act(bd, B);
    p->dz_aux = act(bd, B);
}

// ---------------------------------------------------------------------------------------------
// Validation of the architecture

static int find_ps_table(const rd_model_opts *o, const char *name) {
    for (int i = 0; i < o->n_tables; i++)
        if (strcmp(o->tables[i].name, name) == 0)
            return i;
    return -1;
}

// Model-local slot of PS table `ps`, added on first use.
static int table_slot(rd_model *m, const rd_model_opts *o, int ps) {
    for (int t = 0; t < m->n_tables; t++)
        if (m->tables[t].ps_index == ps)
            return t;
    rd_model_table *t = &m->tables[m->n_tables];
    snprintf(t->name, sizeof t->name, "%s", o->tables[ps].name);
    t->ps_index = ps;
    t->dim = (size_t)o->tables[ps].dim;
    t->salt = rd_table_salt(&o->tables[ps]);
    return m->n_tables++;
}

static int setup_branch(branch *br,
                        const char *what,
                        const char *model,
                        int kind,
                        size_t L,
                        size_t C,
                        size_t NH,
                        size_t layers,
                        size_t E,
                        size_t Din,
                        int causal,
                        int act_kind,
                        rd_errbuf *eb) {
    if (kind != RD_SEQ_MEAN && kind != RD_SEQ_DIN && kind != RD_SEQ_TRANSFORMER)
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': %s.kind %d is not mean|din|transformer",
                          model, what, kind);
    if (L < 1 || L > 4096)
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': %s.length %zu not in 1..4096", model,
                          what, L);
    if (C < 1)
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': %s: branch width must be >= 1", model,
                          what);
    if (kind != RD_SEQ_MEAN && E == 0)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "model '%s': %s.kind %s needs a query from the request, but the model "
                          "embeds no feature",
                          model, what, kind == RD_SEQ_DIN ? "din" : "transformer");
    if (kind == RD_SEQ_TRANSFORMER) {
        if (layers < 1 || layers > MAX_BLOCKS)
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': %s.layers %zu not in 1..%d", model,
                              what, layers, MAX_BLOCKS);
        if (NH < 1 || C % NH != 0)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "model '%s': %s.heads: %zu does not divide the branch width %zu",
                              model, what, NH, C);
    }
    br->on = 1;
    br->kind = kind;
    br->layers = kind == RD_SEQ_TRANSFORMER ? layers : 0;
    br->Din = Din;
    br->d = (rd_seq_dims){.B = 0,
                          .T = L,
                          .C = C,
                          .NH = kind == RD_SEQ_TRANSFORMER ? NH : 1,
                          .E = E,
                          .H = C, // DIN attention MLP: one hidden layer of the branch width
                          .causal = causal,
                          .act = act_kind};
    return RD_OK;
}

static int validate(rd_model *m,
                    rd__model_priv *p,
                    const rd_model_config *mc,
                    const rd_model_opts *o,
                    rd_errbuf *eb) {
    const char *name = mc->name;
    if (o->max_batch < 1)
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': max batch size must be >= 1", name);
    if (o->n_tables < 0 || (o->n_tables > 0 && !o->tables))
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': no table list", name);
    if (mc->n_features < 0 || mc->n_features > RD_MAX_FEATURES)
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': %d features (at most %d)", name,
                          mc->n_features, RD_MAX_FEATURES);
    rd_act_kind ak;
    if (rd_act_parse(mc->activation, &ak) != RD_OK || (ak != RD_ACT_RELU && ak != RD_ACT_GELU))
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': activation '%s' is not relu|gelu", name,
                          mc->activation);
    p->act = ak;
    m->max_batch = o->max_batch;
    m->n_numeric = o->n_numeric;
    m->two_towers = mc->two_towers ? 1 : 0;
    m->dropout = mc->dropout;
    m->seq_table = -1;

    int item_table = -1;
    p->E = 0;
    for (int f = 0; f < mc->n_features; f++) {
        const rd_feature_use *fu = &mc->features[f];
        int ps = find_ps_table(o, fu->table);
        if (ps < 0)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "model '%s': features[%d] (field '%s'): table '%s' is not in "
                              "ps.tables",
                              name, f, fu->field, fu->table);
        if (o->tables[ps].dim < 1)
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': table '%s' has dim %d", name,
                              fu->table, o->tables[ps].dim);
        if (fu->pooling != RD_POOL_SUM && fu->pooling != RD_POOL_MEAN)
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': features[%d]: pooling %d", name, f,
                              fu->pooling);
        rd_model_feature *mf = &m->features[m->n_features++];
        snprintf(mf->field, sizeof mf->field, "%s", fu->field);
        mf->table = table_slot(m, o, ps);
        mf->pooling = fu->pooling;
        mf->dim = m->tables[mf->table].dim;
        p->E += mf->dim;
        if (strcmp(fu->field, "item") == 0 && item_table < 0)
            item_table = ps;
    }

    const rd_seq_config *sq = &mc->seq;
    if (sq->kind != RD_SEQ_NONE) {
        int ps = item_table;
        if (sq->table[0] != '\0') {
            ps = find_ps_table(o, sq->table);
            if (ps < 0)
                return rd_err_set(eb, RD_ERR_CONFIG,
                                  "model '%s': seq.table '%s' is not in ps.tables", name,
                                  sq->table);
        } else if (ps < 0) {
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "model '%s': seq.table is empty and no feature embeds 'item' to "
                              "take it from",
                              name);
        }
        if (o->tables[ps].dim < 1)
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': table '%s' has dim %d", name,
                              o->tables[ps].name, o->tables[ps].dim);
        m->seq_table = table_slot(m, o, ps);
        size_t Dt = m->tables[m->seq_table].dim;
        if (sq->dim < 0)
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': seq.dim %d < 0", name, sq->dim);
        size_t C = sq->dim > 0 ? (size_t)sq->dim : Dt;
        int rc = setup_branch(
            &p->seq, "seq", name, sq->kind, (size_t)(sq->length > 0 ? sq->length : 0), C,
            (size_t)(sq->heads > 0 ? sq->heads : 0), (size_t)(sq->layers > 0 ? sq->layers : 0),
            p->E, Dt, o->causal, p->act, eb);
        if (rc != RD_OK)
            return rc;
        m->seq_length = p->seq.d.T;
        m->seq_with_labels = sq->with_labels ? 1 : 0;
        if (sq->view != RD_SEQ_NONE) {
            if (sq->view != RD_SEQ_MEAN && sq->view != RD_SEQ_DIN)
                return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': seq.view %d is not mean|din",
                                  name, sq->view);
            if (sq->view_length < 1 || (size_t)sq->view_length > m->seq_length)
                return rd_err_set(eb, RD_ERR_CONFIG,
                                  "model '%s': seq.view_length %d not in 1..seq.length (%zu)", name,
                                  sq->view_length, m->seq_length);
            if (sq->view_by_label && !sq->with_labels)
                return rd_err_set(eb, RD_ERR_CONFIG,
                                  "model '%s': seq.view_by_label needs seq.with_labels", name);
            p->seqm_by_label = sq->view_by_label ? 1 : 0;
            rc = setup_branch(&p->seqm, "seq.view", name, sq->view, (size_t)sq->view_length, C, 1,
                              0, p->E, p->seqm_by_label ? 2 * Dt : Dt, o->causal, p->act, eb);
            if (rc != RD_OK)
                return rc;
        } else if (sq->view_by_label) {
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': seq.view_by_label without seq.view",
                              name);
        }
    } else if (sq->view != RD_SEQ_NONE) {
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "model '%s': seq.view without a seq branch (seq.kind none)", name);
    }

    const rd_token_use *tu = &mc->tokens;
    if (tu->scheme != 0) {
        if (tu->scheme != 1 && tu->scheme != 2)
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': tokens.scheme %d is not 0|1|2", name,
                              tu->scheme);
        if (o->token_dim < 1)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "model '%s': token branch on but the token dim is 0", name);
        if (tu->adapter < 1)
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': tokens.adapter %d < 1", name,
                              tu->adapter);
        if (tu->kind == RD_SEQ_NONE)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "model '%s': tokens.kind none with tokens.scheme %d (want "
                              "mean|din|transformer, or scheme 0)",
                              name, tu->scheme);
        if (tu->query != 0 && tu->query != 1)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "model '%s': tokens.query %d is not request|request_seq", name,
                              tu->query);
        if (tu->query == 1 && !p->seq.on)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "model '%s': tokens.query request_seq reads the item-ID history "
                              "branch, but the model has none (seq.kind none)",
                              name);
        if (tu->query == 1 && tu->kind == RD_SEQ_MEAN)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "model '%s': tokens.query request_seq with tokens.kind mean: a mean "
                              "reads no query (want din|transformer, or query request)",
                              name);
        p->tok_qseq = tu->query == 1;
        p->A = (size_t)tu->adapter;
        size_t Eq = p->E + (p->tok_qseq ? p->seq.d.C : 0); // the query's input width
        int rc = setup_branch(
            &p->tok, "tokens", name, tu->kind, (size_t)(tu->length > 0 ? tu->length : 0), p->A,
            (size_t)(tu->heads > 0 ? tu->heads : 0), (size_t)(tu->layers > 0 ? tu->layers : 0), Eq,
            2 * p->A, o->causal, p->act, eb);
        if (rc != RD_OK)
            return rc;
        m->tok_length = p->tok.d.T;
        m->tok_dim = o->token_dim;
        if (o->token_side > RD_MAX_TOKEN_SIDE)
            return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': %zu token side values (at most %d)",
                              name, o->token_side, RD_MAX_TOKEN_SIDE);
        m->tok_side = o->token_side;
        p->tok_gate = tu->gate ? 1 : 0;
        p->tok_norm = tu->norm ? 1 : 0;
        p->tok_nolabel = tu->label == 1;
    }

    if (mc->n_mlp < 0 || mc->n_mlp > RD_MAX_LAYERS || mc->n_tower < 0 ||
        mc->n_tower > RD_MAX_LAYERS)
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': mlp/tower: at most %d layers", name,
                          RD_MAX_LAYERS);
    size_t W = p->E + o->n_numeric + (p->seq.on ? p->seq.d.C : 0) + (p->seqm.on ? p->seqm.d.C : 0) +
               (p->tok.on ? p->tok.d.C : 0);
    if (W == 0)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "model '%s': empty backbone input (no feature, numeric or sequence)",
                          name);
    p->ln = mc->layer_norm ? 1 : 0;
    p->has_mlp = mc->n_mlp > 0;
    if (!(mc->dropout >= 0.0f && mc->dropout < 1.0f))
        return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': dropout %g not in [0, 1)", name,
                          (double)mc->dropout);
    if (mc->dropout > 0.0f && !p->has_mlp)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "model '%s': dropout %g needs an mlp (it drops the backbone MLP's "
                          "outputs)",
                          name, (double)mc->dropout);
    p->p_drop = mc->dropout;
    size_t Hd = W;
    if (p->has_mlp) {
        p->bb_shape = (rd_mlp_shape){.n = (size_t)mc->n_mlp, .act = p->act, .act_last = p->act};
        p->bb_shape.dims[0] = W;
        for (int i = 0; i < mc->n_mlp; i++) {
            if (mc->mlp[i] < 1)
                return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': mlp[%d] = %d < 1", name, i,
                                  mc->mlp[i]);
            p->bb_shape.dims[i + 1] = (size_t)mc->mlp[i];
        }
        Hd = (size_t)mc->mlp[mc->n_mlp - 1];
    }
    p->Hd = Hd;
    for (int t = 0; t < 2; t++) {
        rd_mlp_shape *s = &p->head.shape[t];
        *s = (rd_mlp_shape){.n = (size_t)mc->n_tower + 1, .act = p->act, .act_last = RD_ACT_NONE};
        s->dims[0] = Hd;
        for (int i = 0; i < mc->n_tower; i++) {
            if (mc->tower[i] < 1)
                return rd_err_set(eb, RD_ERR_CONFIG, "model '%s': tower[%d] = %d < 1", name, i,
                                  mc->tower[i]);
            s->dims[i + 1] = (size_t)mc->tower[i];
        }
        s->dims[s->n] = 1;
    }
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Create / destroy

int rd_model_create(const rd_model_config *mcfg,
                    const rd_model_opts *opts,
                    rd_model **out,
                    rd_errbuf *eb) {
    *out = NULL;
    if (!mcfg || !opts)
        return rd_err_set(eb, RD_ERR_ARG, "rd_model_create: NULL config or options");
    int rc = RD_ERR_NOMEM;
    rd_model *m = rd_calloc(1, sizeof *m);
    rd__model_priv *p = rd_calloc(1, sizeof *p);
    if (!m || !p) {
        rd_free(m);
        rd_free(p);
        return rd_err_set(eb, RD_ERR_NOMEM, "model '%s': out of memory", mcfg->name);
    }
    m->priv = p;
    rc = validate(m, p, mcfg, opts, eb);
    if (rc != RD_OK)
        goto fail;

    // Pass 1: sizes and FLOPs.
    builder bd = {.m = m, .p = p, .fwd_only = opts->shared_params != NULL};
    layout(&bd);
    m->n_slab = bd.c.poff;
    m->n_params = bd.c.nparams;
    m->n_acts = bd.c.aoff;
    m->n_tensors = bd.c.nt;
    m->opt_slots = opts->opt_slots;
    p->flops_fwd = bd.ff;
    p->flops_bwd = bd.fb;
    if (opts->plan_only) {
        *out = m;
        return RD_OK;
    }
    p->params_borrowed = opts->shared_params != NULL;
    if (p->params_borrowed && opts->opt_slots > 0) {
        rc = rd_err_set(eb, RD_ERR_ARG,
                        "model '%s': a shared parameter slab is for inference: no optimizer "
                        "slots (opt_slots %zu)",
                        mcfg->name, opts->opt_slots);
        goto fail;
    }

    // What the slabs cost, said before they are allocated and zeroed (a long transformer history
    // at a large batch asked for 9 GB and spent minutes zeroing it): beyond the node's memory it
    // is an error, above 1 GiB a warning.
    {
        const double own_slabs = p->params_borrowed ? 0.0 : 2.0 + (double)opts->opt_slots;
        double gib =
            ((double)m->n_slab * own_slabs + (double)m->n_acts) * sizeof(float) / 1073741824.0;
        double acts = (double)m->n_acts * sizeof(float) / 1073741824.0;
        const char *whose = NULL;
        double phys = (double)rd_mem_limit(&whose) / 1073741824.0;
        if (phys > 0 && gib > phys) {
            rc = rd_err_set(eb, RD_ERR_NOMEM,
                            "model '%s' needs %.1f GiB (%.1f GiB of activations for %zu examples "
                            "a step), more than %s (%.1f GiB): lower %s or the history "
                            "lengths (a transformer's attention grows with their square)",
                            mcfg->name, gib, acts, opts->max_batch, whose, phys,
                            opts->batch_knob ? opts->batch_knob : "train.batch_size");
            goto fail;
        }
        int attention = mcfg->seq.kind == RD_SEQ_TRANSFORMER ||
                        (mcfg->tokens.scheme > 0 && mcfg->tokens.kind == RD_SEQ_TRANSFORMER);
        if (gib > 1.0 && !opts->quiet)
            RD_LOG_WARN("model '%s' needs %.1f GiB (%.1f GiB of activations for %zu examples a "
                        "step)%s",
                        mcfg->name, gib, acts, opts->max_batch,
                        attention ? ": a transformer's attention grows with the square of its "
                                    "history length"
                                  : "");
    }
    // Allocate the slabs (64-byte aligned; zeroed: padding stays 0 for the allreduce).
    size_t nslab = m->n_slab > 0 ? m->n_slab : 1;
    if (m->opt_slots > 0 && nslab > SIZE_MAX / sizeof(float) / m->opt_slots) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "model '%s': optimizer state too large", mcfg->name);
        goto fail;
    }
    if (p->params_borrowed) {
        m->params = opts->shared_params;
    } else {
        m->params = rd_aligned_alloc(nslab * sizeof(float));
        m->grads = rd_aligned_alloc(nslab * sizeof(float));
    }
    if (m->opt_slots > 0)
        m->opt_state = rd_aligned_alloc(m->opt_slots * nslab * sizeof(float));
    p->acts = rd_aligned_alloc((m->n_acts > 0 ? m->n_acts : 1) * sizeof(float));
    m->tensors = rd_calloc((size_t)(m->n_tensors > 0 ? m->n_tensors : 1), sizeof *m->tensors);
    p->inits = rd_calloc((size_t)(m->n_tensors > 0 ? m->n_tensors : 1), sizeof *p->inits);
    if (!m->params || (!m->grads && !p->params_borrowed) || (m->opt_slots > 0 && !m->opt_state) ||
        !p->acts || !m->tensors || !p->inits) {
        rc = rd_err_set(eb, RD_ERR_NOMEM,
                        "model '%s': cannot allocate the slabs (%zu parameters, %zu activation "
                        "floats, max batch %zu)",
                        mcfg->name, m->n_slab, m->n_acts, m->max_batch);
        goto fail;
    }
    // The teacher's activations are ~1 GB: 4 KiB pages cost TLB misses in every pass over them
    // and ~300 k page faults at start-up.
    rd_alloc_advise_huge(p->acts, (m->n_acts > 0 ? m->n_acts : 1) * sizeof(float));
    if (!p->params_borrowed) { // a borrowed slab is the lender's: read, never written
        memset(m->params, 0, nslab * sizeof(float));
        memset(m->grads, 0, nslab * sizeof(float));
    }
    if (m->opt_state)
        memset(m->opt_state, 0, m->opt_slots * nslab * sizeof(float));
    memset(p->acts, 0, (m->n_acts > 0 ? m->n_acts : 1) * sizeof(float));

    // Pass 2: carve.
    bd = (builder){.m = m,
                   .p = p,
                   .fwd_only = p->params_borrowed,
                   .c = {.assign = 1,
                         .tensors = m->tensors,
                         .inits = p->inits,
                         .params = m->params,
                         .grads = m->grads,
                         .acts = p->acts}};
    layout(&bd);
    RD_ASSERT(bd.c.poff == m->n_slab && bd.c.aoff == m->n_acts && bd.c.nt == m->n_tensors);
    if (!p->params_borrowed)
        rd__init_tensors(m->tensors, p->inits, m->n_tensors, m->params, opts->seed);
    *out = m;
    return RD_OK;

fail:
    rd_model_destroy(m);
    return rc;
}

void rd_model_destroy(rd_model *m) {
    if (!m)
        return;
    int borrowed = 0;
    if (m->priv) {
        borrowed = m->priv->params_borrowed;
        rd_aligned_free(m->priv->acts);
        rd_free(m->priv->inits);
        rd_free(m->priv);
    }
    if (!borrowed)
        rd_aligned_free(m->params);
    rd_aligned_free(m->grads);
    rd_aligned_free(m->opt_state);
    rd_free(m->tensors);
    rd_free(m);
}

const rd_model_tensor *rd_model_find_tensor(const rd_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

size_t rd_model_param_count(const rd_model *m) {
    return m->n_params;
}

void rd_model_flops(const rd_model *m, double *fwd_per_example, double *bwd_per_example) {
    if (fwd_per_example)
        *fwd_per_example = m->priv->flops_fwd;
    if (bwd_per_example)
        *bwd_per_example = m->priv->flops_bwd;
}

// ---------------------------------------------------------------------------------------------
// Batch validation

static int check_floats(const float *x, size_t n, const char *what, rd_errbuf *eb) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return rd_err_set(eb, RD_ERR_RANGE, "batch: %s[%zu] is not finite", what, i);
    return RD_OK;
}

static int check_01(const uint8_t *x, size_t n, const char *what, rd_errbuf *eb) {
    for (size_t i = 0; i < n; i++)
        if (x[i] > 1)
            return rd_err_set(eb, RD_ERR_RANGE, "batch: %s[%zu] = %u is not 0 or 1", what, i,
                              (unsigned)x[i]);
    return RD_OK;
}

static int check_idx(const int32_t *idx,
                     size_t B,
                     size_t S,
                     size_t U,
                     const char *what,
                     const char *table,
                     rd_errbuf *eb) {
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++) {
            int32_t r = idx[b * S + s];
            if (r < -1 || (r >= 0 && (size_t)r >= U))
                return rd_err_set(eb, RD_ERR_RANGE,
                                  "batch: %s (table '%s'): example %zu slot %zu: row %d not in "
                                  "[-1, %zu)",
                                  what, table, b, s, (int)r, U);
        }
    return RD_OK;
}

int rd_model_check_batch(const rd_model *m, const rd_batch *bt, rd_errbuf *eb) {
    if (!bt)
        return rd_err_set(eb, RD_ERR_ARG, "batch: NULL");
    size_t B = bt->B;
    if (B < 1 || B > m->max_batch)
        return rd_err_set(eb, RD_ERR_ARG, "batch: B = %zu not in 1..%zu (the model's max batch)", B,
                          m->max_batch);
    int rc;
    for (int t = 0; t < m->n_tables; t++) {
        if (bt->n_rows[t] > (size_t)INT32_MAX)
            return rd_err_set(eb, RD_ERR_RANGE, "batch: table '%s': %zu rows (max %d)",
                              m->tables[t].name, bt->n_rows[t], INT32_MAX);
        if (bt->n_rows[t] > 0 && !bt->rows[t])
            return rd_err_set(eb, RD_ERR_ARG, "batch: table '%s': %zu rows but rows is NULL",
                              m->tables[t].name, bt->n_rows[t]);
#ifndef NDEBUG
        if (bt->n_rows[t] > 0) {
            char what[64];
            snprintf(what, sizeof what, "rows of table '%s'", m->tables[t].name);
            if ((rc = check_floats(bt->rows[t], bt->n_rows[t] * m->tables[t].dim, what, eb)))
                return rc;
        }
#endif
    }
    for (int f = 0; f < m->n_features; f++) {
        const rd_model_feature *mf = &m->features[f];
        char what[64];
        snprintf(what, sizeof what, "feature '%s'", mf->field);
        if (!bt->feat_idx[f] || bt->feat_slots[f] < 1)
            return rd_err_set(eb, RD_ERR_ARG, "batch: %s: no index array (or 0 slots)", what);
        if ((rc = check_idx(bt->feat_idx[f], B, bt->feat_slots[f], bt->n_rows[mf->table], what,
                            m->tables[mf->table].name, eb)))
            return rc;
    }
    if (m->seq_table >= 0) {
        if (!bt->seq_idx)
            return rd_err_set(eb, RD_ERR_ARG,
                              "batch: the model has a seq branch but seq_idx is "
                              "NULL");
        const size_t Bh = bt->seq_shared ? 1 : B; // histories the batch holds
        if ((rc = check_idx(bt->seq_idx, Bh, m->seq_length, bt->n_rows[m->seq_table], "seq_idx",
                            m->tables[m->seq_table].name, eb)))
            return rc;
        if (m->seq_with_labels) {
            if (!bt->seq_labels)
                return rd_err_set(eb, RD_ERR_ARG,
                                  "batch: seq.with_labels is on but seq_labels is NULL");
            if ((rc = check_01(bt->seq_labels, Bh * m->seq_length, "seq_labels", eb)))
                return rc;
        }
    }
    if (m->tok_length > 0) {
        const size_t Bt = bt->tok_shared ? 1 : B; // token sequences the batch holds
        if (!bt->tokens || !bt->tok_mask || !bt->tok_labels)
            return rd_err_set(eb, RD_ERR_ARG,
                              "batch: the model has a token branch but tokens, tok_mask or "
                              "tok_labels is NULL");
#ifndef NDEBUG
        if ((rc = check_floats(bt->tokens, Bt * m->tok_length * m->tok_dim, "tokens", eb)))
            return rc;
#endif
        if ((rc = check_01(bt->tok_mask, Bt * m->tok_length, "tok_mask", eb)) ||
            (rc = check_01(bt->tok_labels, Bt * m->tok_length, "tok_labels", eb)))
            return rc;
        if (m->tok_side && !bt->tok_side)
            return rd_err_set(eb, RD_ERR_ARG,
                              "batch: the token branch reads %zu side values but tok_side is NULL",
                              m->tok_side);
#ifndef NDEBUG
        if (m->tok_side &&
            (rc = check_floats(bt->tok_side, Bt * m->tok_length * m->tok_side, "tok_side", eb)))
            return rc;
#endif
    }
    if (m->n_numeric > 0) {
        if (!bt->numeric)
            return rd_err_set(eb, RD_ERR_ARG, "batch: %zu numeric features but numeric is NULL",
                              m->n_numeric);
        if ((rc = check_floats(bt->numeric, B * m->n_numeric, "numeric", eb)))
            return rc;
    }
    if (!bt->labels)
        return rd_err_set(eb, RD_ERR_ARG, "batch: labels is NULL");
    for (size_t b = 0; b < B; b++)
        if (!(bt->labels[b] >= 0.0f && bt->labels[b] <= 1.0f))
            return rd_err_set(eb, RD_ERR_RANGE, "batch: labels[%zu] = %g not in [0, 1]", b,
                              (double)bt->labels[b]);
    if (bt->teacher_logits) {
        if (!(bt->temperature > 0.0f) || !isfinite(bt->temperature))
            return rd_err_set(eb, RD_ERR_RANGE, "batch: temperature %g must be > 0",
                              (double)bt->temperature);
        if (!(bt->alpha >= 0.0f) || !isfinite(bt->alpha))
            return rd_err_set(eb, RD_ERR_RANGE, "batch: alpha %g must be >= 0", (double)bt->alpha);
        if (bt->has_target && (rc = check_01(bt->has_target, B, "has_target", eb)))
            return rc;
        for (size_t b = 0; b < B; b++)
            if ((!bt->has_target || bt->has_target[b]) && !isfinite(bt->teacher_logits[b]))
                return rd_err_set(eb, RD_ERR_RANGE, "batch: teacher_logits[%zu] is not finite", b);
        if (bt->calib && (rc = rd_debias_check(bt->calib, eb)) != RD_OK) {
            rd_err_prefix(eb, "batch: calib: ");
            return rc;
        }
    }
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Forward

// With `shared` (rd_batch.seq_shared / tok_shared, inference only) br->mask and br->bin hold
// example 0's history alone, one row of L, and every per-position activation of the branch is
// computed on that row once: the in-projection, a transformer's blocks, the request attention's
// layer norm and keys / values. What reads the example's own inputs — the DIN or request
// attention query and what follows it — runs per example against that one history. Per row the
// arithmetic is the plain path's; the shared matmuls run on fewer rows, which OpenBLAS may round
// differently (a few ulp, as it does for another batch size).
static void branch_forward(branch *br, const float *x_req, size_t B, int shared) {
    rd_seq_dims d = br->d;
    d.B = B;
    size_t L = d.T, C = d.C, Bh = shared ? 1 : B; // Bh: histories held
    rd_linear_forward(br->x[0], br->bin, br->p.in_w, br->p.in_b, Bh * L, br->Din, C);
    switch (br->kind) {
        case RD_SEQ_MEAN:
            rd_masked_mean_forward(br->out, br->x[0], br->mask, Bh, L, C);
            for (size_t b = 1; b < B && shared; b++)
                memcpy(br->out + b * C, br->out, C * sizeof(float));
            break;
        case RD_SEQ_DIN:
            rd_linear_forward(br->q, x_req, br->p.q_w, br->p.q_b, B, d.E, C);
            if (shared)
                rd_din_forward_shared(br->out, &br->din, br->q, br->x[0], br->mask, &br->p.din, &d);
            else
                rd_din_forward(br->out, &br->din, br->q, br->x[0], br->mask, &br->p.din, &d);
            break;
        case RD_SEQ_TRANSFORMER: {
            for (size_t b = 0; b < Bh; b++)
                for (size_t l = 0; l < L; l++) {
                    float *x = br->x[0] + (b * L + l) * C;
                    const float *pe = br->p.pos + l * C;
                    for (size_t i = 0; i < C; i++)
                        x[i] += pe[i];
                }
            rd_seq_dims dh = d; // the blocks see the histories only
            dh.B = Bh;
            for (size_t l = 0; l < br->layers; l++)
                rd_tblock_forward(br->x[l + 1], &br->ba[l], br->x[l], br->mask, &br->p.blk[l], &dh);
            const float *h = br->x[br->layers];
            if (shared)
                rd_reqattn_forward_shared(br->out, &br->ra, x_req, h, br->mask, &br->p.ra, &d);
            else
                rd_reqattn_forward(br->out, &br->ra, x_req, h, br->mask, &br->p.ra, &d);
            break;
        }
        default:
            RD_ASSERT(0);
    }
}

static void seq_forward(rd_model *m, const rd_batch *bt) {
    rd__model_priv *p = m->priv;
    branch *br = &p->seq;
    const int shared = bt->seq_shared != 0;
    // Bh histories: every example's, or example 0's alone (bt->seq_shared).
    size_t B = bt->B, Bh = shared ? 1 : B, L = br->d.T, t = (size_t)m->seq_table,
           Dt = m->tables[t].dim;
    for (size_t i = 0; i < Bh * L; i++)
        br->mask[i] = bt->seq_idx[i] >= 0 ? 1.0f : 0.0f;
    // Gather = pooling of one slot: padding (-1) gives a zero row.
    rd_embedding_pool_forward(br->bin, bt->rows[t], bt->seq_idx, Bh * L, 1, bt->n_rows[t], Dt,
                              RD_POOL_SUM);
    if (m->seq_with_labels)
        for (size_t i = 0; i < Bh * L; i++) {
            if (bt->seq_idx[i] < 0)
                continue;
            const float *lab = p->seq_lab_p + (size_t)bt->seq_labels[i] * Dt;
            float *x = br->bin + i * Dt;
            for (size_t k = 0; k < Dt; k++)
                x[k] += lab[k];
        }
    branch_forward(br, p->x_req, B, shared);
    if (p->seqm.on) { // the view reads the first Lm (most recent) events of the same input
        branch *bm = &p->seqm;
        size_t Lm = bm->d.T;
        for (size_t b = 0; b < Bh; b++) {
            memcpy(bm->mask + b * Lm, br->mask + b * L, Lm * sizeof(float));
            if (!p->seqm_by_label) {
                memcpy(bm->bin + b * Lm * Dt, br->bin + b * L * Dt, Lm * Dt * sizeof(float));
                continue;
            }
            // By label: event j's input goes to the first half when liked, the second when not.
            memset(bm->bin + b * Lm * 2 * Dt, 0, Lm * 2 * Dt * sizeof(float));
            for (size_t j = 0; j < Lm; j++) {
                size_t i = b * L + j;
                if (bt->seq_idx[i] < 0)
                    continue;
                float *dst = bm->bin + (b * Lm + j) * 2 * Dt + (bt->seq_labels[i] ? 0 : Dt);
                memcpy(dst, br->bin + i * Dt, Dt * sizeof(float));
            }
        }
        branch_forward(bm, p->x_req, B, shared);
    }
}

void rd_token_standardize(
    float *out, const float *tokens, const uint8_t *mask, size_t n, size_t d) {
    for (size_t i = 0; i < n; i++) {
        const float *x = tokens + i * d;
        float *y = out + i * d;
        if (mask && !mask[i]) { // padding stays 0
            memset(y, 0, d * sizeof(float));
            continue;
        }
        double mu = 0.0, var = 0.0;
        for (size_t k = 0; k < d; k++)
            mu += (double)x[k];
        mu /= (double)d;
        for (size_t k = 0; k < d; k++)
            var += ((double)x[k] - mu) * ((double)x[k] - mu);
        float rs = (float)(1.0 / sqrt(var / (double)d + RD_TOKEN_NORM_EPS));
        for (size_t k = 0; k < d; k++)
            y[k] = (x[k] - (float)mu) * rs;
    }
}

static void tok_forward(rd_model *m, const rd_batch *bt) {
    rd__model_priv *p = m->priv;
    branch *br = &p->tok;
    const int shared = bt->tok_shared != 0;
    // The adapter and the token inputs run on every example's tokens, or on example 0's alone
    // (bt->tok_shared): BL rows.
    size_t B = bt->B, L = br->d.T, A = p->A, BL = (shared ? 1 : B) * L;
    for (size_t i = 0; i < BL; i++)
        br->mask[i] = bt->tok_mask[i] ? 1.0f : 0.0f;
    const float *tin = bt->tokens;
    if (p->tok_norm) {
        rd_token_standardize(p->tok_in, bt->tokens, bt->tok_mask, BL, m->tok_dim);
        tin = p->tok_in;
    }
    rd_linear_forward(p->ad_pre, tin, p->ad_w_p, p->ad_b_p, BL, m->tok_dim, A);
    rd_sigmoid_forward(p->ad, p->ad_pre, BL * A);
    const size_t S = m->tok_side;
    for (size_t i = 0; i < BL; i++) {
        float *x = br->bin + i * 2 * A;
        memcpy(x, p->ad + i * A, A * sizeof(float));
        if (p->tok_nolabel)
            memset(x + A, 0, A * sizeof(float));
        else
            memcpy(x + A, p->tok_lab_p + (size_t)bt->tok_labels[i] * A, A * sizeof(float));
        for (size_t j = 0; j < S; j++) {
            const float v = bt->tok_side[i * S + j], *w = p->tok_side_p + j * A;
            for (size_t k = 0; k < A; k++)
                x[A + k] += v * w[k];
        }
    }
    const float *q = p->x_req;
    if (p->tok_qseq) { // [x_req | seq out]: the seq branch ran before
        const float *parts[2] = {p->x_req, p->seq.out};
        size_t widths[2] = {p->E, p->seq.d.C}, skip = p->E > 0 ? 0 : 1; // no x_req: seq alone
        rd_concat_forward(p->tok_q, parts + skip, widths + skip, 2 - skip, B);
        q = p->tok_q;
    }
    branch_forward(br, q, B, shared);
    if (p->tok_gate) {
        size_t C = br->d.C;
        for (size_t b = 0; b < B; b++)
            for (size_t k = 0; k < C; k++)
                p->tok_gated[b * C + k] = p->gate_p[k] * br->out[b * C + k];
    }
}

// Sum over the examples with a target of the per-example distillation losses.
static double distill_sum(const rd__model_priv *p, const rd_batch *bt, size_t *n) {
    double s = 0.0;
    *n = 0;
    for (size_t b = 0; b < bt->B; b++)
        if (!bt->has_target || bt->has_target[b]) {
            s += (double)p->dist_b[b];
            (*n)++;
        }
    return s;
}

// Steps 1-3 of the forward pass: features, sequence branches and backbone -> p->h.
static void forward_backbone(rd_model *m, const rd_batch *bt) {
    rd__model_priv *p = m->priv;
    size_t B = bt->B;

    // 1. Embedded features -> x_req.
    const float *embs[RD_MAX_FEATURES];
    size_t widths[RD_MAX_FEATURES];
    for (int f = 0; f < m->n_features; f++) {
        const rd_model_feature *mf = &m->features[f];
        rd_embedding_pool_forward(p->emb[f], bt->rows[mf->table], bt->feat_idx[f], B,
                                  bt->feat_slots[f], bt->n_rows[mf->table], mf->dim, mf->pooling);
        embs[f] = p->emb[f];
        widths[f] = mf->dim;
    }
    if (m->n_features > 0)
        rd_concat_forward(p->x_req, embs, widths, (size_t)m->n_features, B);

    // 2. Sequence branches.
    if (p->seq.on)
        seq_forward(m, bt);
    if (p->tok.on)
        tok_forward(m, bt);

    // 3. Backbone.
    if (p->part_numeric >= 0)
        p->part[p->part_numeric] = bt->numeric;
    rd_concat_forward(p->bb_in, p->part, p->part_w, (size_t)p->n_parts, B);
    const float *x = p->bb_in;
    if (p->ln) {
        rd_layernorm_forward(p->bb_ln, p->bb_mean, p->bb_rstd, p->bb_in, p->ln_w_p, p->ln_b_p, B,
                             p->W);
        x = p->bb_ln;
    }
    p->drop_on = 0;
    if (p->has_mlp) {
        // Dropout in training passes only: the masks are a function of the batch's key.
        p->drop_on = p->p_drop > 0.0f && bt->dropout_key != 0;
        for (size_t i = 0; i < p->bb_shape.n; i++) {
            size_t N = B * p->bb_shape.dims[i + 1];
            if (p->drop_on)
                rd_dropout_mask(p->keep[i], N, p->p_drop,
                                rd_mix64(bt->dropout_key ^ ((uint64_t)(i + 1) << 56)));
            p->bb_drop.keep[i] = p->drop_on ? p->keep[i] : NULL;
        }
        rd_mlp_forward_dropout(&p->bb_a, &p->bb_drop, x, &p->bb_p, &p->bb_shape, B);
        p->h = rd_mlp_output_dropout(&p->bb_a, &p->bb_drop, &p->bb_shape);
    }
}

int rd_model_forward_hidden(
    rd_model *m, const rd_batch *bt, const float **h, size_t *Hd, rd_errbuf *eb) {
    rd__model_priv *p = m->priv;
    p->fwd_B = 0;
    int rc = rd_model_check_batch(m, bt, eb);
    if (rc != RD_OK)
        return rc;
    forward_backbone(m, bt);
    p->fwd_B = bt->B;
    p->fwd_head = 0;
    p->fwd_shared = bt->seq_shared || bt->tok_shared;
    if (h)
        *h = p->h;
    if (Hd)
        *Hd = p->Hd;
    return RD_OK;
}

size_t rd_model_hidden_dim(const rd_model *m) {
    return m->priv->Hd;
}

int rd_model_forward(rd_model *m, const rd_batch *bt, rd_errbuf *eb) {
    rd__model_priv *p = m->priv;
    p->fwd_B = 0;
    int rc = rd_model_check_batch(m, bt, eb);
    if (rc != RD_OK)
        return rc;
    size_t B = bt->B;
    forward_backbone(m, bt);

    // 4. Head.
    if (m->two_towers)
        rd_two_tower_forward(&p->head, p->h, B);
    else
        rd_mlp_forward(&p->head.acts[0], p->h, &p->head.w[0], &p->head.shape[0], B);

    // 5. Losses.
    double inv_b = 1.0 / (double)B;
    rd_bce_logits_forward(p->loss_b, m->logits_main, bt->labels, B);
    double sum_main = 0.0;
    for (size_t b = 0; b < B; b++)
        sum_main += (double)p->loss_b[b];
    m->loss_main = sum_main * inv_b;
    m->loss_aux = 0.0;
    m->loss_distill = 0.0;
    m->n_distill = 0;
    double dist = 0.0;
    if (bt->teacher_logits) {
        const float *z = m->two_towers ? m->logits_aux : m->logits_main;
        if (bt->calib) { // cross-debias: the student's logit in the teacher target's space
            rd_debias_logit_forward(p->zcal, z, bt->calib, B);
            z = p->zcal;
        }
        rd_distill_bce_forward(p->dist_b, z, bt->teacher_logits, bt->temperature, B);
        if (bt->has_target) // keep absent targets out of the buffer (their logits may be garbage)
            for (size_t b = 0; b < B; b++)
                if (!bt->has_target[b])
                    p->dist_b[b] = 0.0f;
        dist = distill_sum(p, bt, &m->n_distill);
        m->loss_distill = m->n_distill > 0 ? dist / (double)m->n_distill : 0.0;
    }
    double dist_term = (double)bt->alpha * dist * inv_b;
    if (m->two_towers) {
        double sum_aux = 0.0;
        if (!bt->aux_task_off) { // the aux tower's task loss
            rd_bce_logits_forward(p->loss_b, m->logits_aux, bt->labels, B);
            for (size_t b = 0; b < B; b++)
                sum_aux += (double)p->loss_b[b];
        }
        m->loss_aux = sum_aux * inv_b + (bt->teacher_logits ? dist_term : 0.0);
    } else if (bt->teacher_logits) {
        m->loss_main += dist_term;
    }
    m->loss = m->loss_main + m->loss_aux;
    p->fwd_B = B;
    p->fwd_head = 1;
    p->fwd_shared = bt->seq_shared || bt->tok_shared;
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Backward

// br->dout holds d loss / d out. Accumulates the query gradient into dx_req and OVERWRITES
// br->dbin with d loss / d bin.
static void branch_backward(branch *br, float *dx_req, const float *x_req, size_t B) {
    rd_seq_dims d = br->d;
    d.B = B;
    size_t L = d.T, C = d.C, BLC = B * L * C;
    float *dx0 = br->dx[0];
    memset(dx0, 0, BLC * sizeof(float));
    switch (br->kind) {
        case RD_SEQ_MEAN:
            rd_masked_mean_backward(dx0, br->dout, br->mask, B, L, C);
            break;
        case RD_SEQ_DIN:
            memset(br->dq, 0, B * C * sizeof(float));
            rd_din_backward(br->dq, dx0, &br->g.din, &br->ds, br->dout, br->q, br->x[0], br->mask,
                            &br->din, &br->p.din, &d);
            rd_linear_backward(dx_req, br->g.q_w, br->g.q_b, br->dq, x_req, br->p.q_w, B, d.E, C);
            break;
        case RD_SEQ_TRANSFORMER: {
            float *cur = br->dx[0];
            rd_reqattn_backward(dx_req, cur, &br->g.ra, &br->ras, br->dout, x_req,
                                br->x[br->layers], br->mask, &br->ra, &br->p.ra, &d);
            for (size_t l = br->layers; l-- > 0;) {
                float *nxt = cur == br->dx[0] ? br->dx[1] : br->dx[0];
                memset(nxt, 0, BLC * sizeof(float));
                rd_tblock_backward(nxt, &br->g.blk[l], &br->bs, cur, br->x[l], br->mask, &br->ba[l],
                                   &br->p.blk[l], &d);
                cur = nxt;
            }
            dx0 = cur;
            for (size_t b = 0; b < B; b++)
                for (size_t l = 0; l < L; l++) {
                    const float *g = dx0 + (b * L + l) * C;
                    float *gp = br->g.pos + l * C;
                    for (size_t i = 0; i < C; i++)
                        gp[i] += g[i];
                }
            break;
        }
        default:
            RD_ASSERT(0);
    }
    memset(br->dbin, 0, B * L * br->Din * sizeof(float));
    rd_linear_backward(br->dbin, br->g.in_w, br->g.in_b, dx0, br->bin, br->p.in_w, B * L, br->Din,
                       C);
}

static void seq_backward(rd_model *m, const rd_batch *bt) {
    rd__model_priv *p = m->priv;
    branch *br = &p->seq;
    size_t B = bt->B, L = br->d.T, t = (size_t)m->seq_table, Dt = m->tables[t].dim;
    branch_backward(br, p->dx_req, p->x_req, B);
    if (p->seqm.on) { // add the view's input gradient to the first Lm events
        branch *bm = &p->seqm;
        size_t Lm = bm->d.T;
        branch_backward(bm, p->dx_req, p->x_req, B);
        for (size_t b = 0; b < B; b++) {
            if (!p->seqm_by_label) {
                float *dst = br->dbin + b * L * Dt;
                const float *src = bm->dbin + b * Lm * Dt;
                for (size_t k = 0; k < Lm * Dt; k++)
                    dst[k] += src[k];
                continue;
            }
            for (size_t j = 0; j < Lm; j++) {
                size_t i = b * L + j;
                if (bt->seq_idx[i] < 0)
                    continue;
                float *dst = br->dbin + i * Dt;
                const float *src = bm->dbin + (b * Lm + j) * 2 * Dt + (bt->seq_labels[i] ? 0 : Dt);
                for (size_t k = 0; k < Dt; k++)
                    dst[k] += src[k];
            }
        }
    }
    if (m->seq_with_labels)
        for (size_t i = 0; i < B * L; i++) {
            if (bt->seq_idx[i] < 0)
                continue;
            float *g = p->seq_lab_g + (size_t)bt->seq_labels[i] * Dt;
            const float *d = br->dbin + i * Dt;
            for (size_t k = 0; k < Dt; k++)
                g[k] += d[k];
        }
    if (bt->drows[t])
        rd_embedding_pool_backward(bt->drows[t], br->dbin, bt->seq_idx, B * L, 1, bt->n_rows[t], Dt,
                                   RD_POOL_SUM);
}

static void tok_backward(rd_model *m, const rd_batch *bt) {
    rd__model_priv *p = m->priv;
    branch *br = &p->tok;
    size_t B = bt->B, L = br->d.T, A = p->A, BL = B * L;
    if (p->tok_gate) {
        size_t C = br->d.C;
        for (size_t b = 0; b < B; b++)
            for (size_t k = 0; k < C; k++) {
                float d = p->dtok_gated[b * C + k];
                p->gate_g[k] += d * br->out[b * C + k];
                br->dout[b * C + k] = d * p->gate_p[k];
            }
    }
    if (p->tok_qseq) { // the query's gradient goes to x_req and to the seq branch's output
        memset(p->dtok_q, 0, B * br->d.E * sizeof(float));
        branch_backward(br, p->dtok_q, p->tok_q, B);
        float *dparts[2] = {p->dx_req, p->seq.dout};
        size_t widths[2] = {p->E, p->seq.d.C}, skip = p->E > 0 ? 0 : 1;
        rd_concat_backward(dparts + skip, p->dtok_q, widths + skip, 2 - skip, B);
    } else {
        branch_backward(br, p->dx_req, p->x_req, B);
    }
    for (size_t i = 0; i < BL; i++) {
        const float *d = br->dbin + i * 2 * A;
        memcpy(p->dad + i * A, d, A * sizeof(float));
        if (!p->tok_nolabel) {
            float *g = p->tok_lab_g + (size_t)bt->tok_labels[i] * A;
            for (size_t k = 0; k < A; k++)
                g[k] += d[A + k];
        }
        for (size_t j = 0; j < m->tok_side; j++) {
            const float v = bt->tok_side[i * m->tok_side + j];
            float *gw = p->tok_side_g + j * A;
            for (size_t k = 0; k < A; k++)
                gw[k] += v * d[A + k];
        }
    }
    memset(p->dad_pre, 0, BL * A * sizeof(float));
    rd_sigmoid_backward(p->dad_pre, p->dad, p->ad, BL * A);
    rd_linear_backward(NULL, p->ad_w_g, p->ad_b_g, p->dad_pre, p->tok_norm ? p->tok_in : bt->tokens,
                       p->ad_w_p, BL, m->tok_dim, A);
}

// Zero the gradient slab and the caller's drows (the backward passes overwrite them).
static void zero_grads(rd_model *m, const rd_batch *bt) {
    memset(m->grads, 0, m->n_slab * sizeof(float));
    for (int t = 0; t < m->n_tables; t++)
        if (bt->drows[t] && bt->n_rows[t] > 0)
            memset(bt->drows[t], 0, bt->n_rows[t] * m->tables[t].dim * sizeof(float));
}

static void backward_backbone(rd_model *m, const rd_batch *bt);

int rd_model_backward(rd_model *m, const rd_batch *bt, rd_errbuf *eb) {
    rd__model_priv *p = m->priv;
    if (!bt || p->fwd_B == 0 || p->fwd_B != bt->B || !p->fwd_head)
        return rd_err_set(eb, RD_ERR_STATE,
                          "rd_model_backward: no forward of this batch before it (last forward "
                          "B = %zu%s)",
                          p->fwd_B, p->fwd_B && !p->fwd_head ? ", hidden only" : "");
    if (p->fwd_shared)
        return rd_err_set(eb, RD_ERR_STATE,
                          "rd_model_backward: the last forward shared example 0's history "
                          "(seq_shared / tok_shared): inference only, no backward");
    if (p->params_borrowed)
        return rd_err_set(eb, RD_ERR_STATE,
                          "rd_model_backward: the model reads a shared parameter slab "
                          "(shared_params): inference only, no backward");
    size_t B = bt->B;
    zero_grads(m, bt);

    // 1. Losses -> d logits. Every example weighs 1/B; the distillation term alpha/B where the
    //    example has a target.
    float inv_b = 1.0f / (float)B;
    for (size_t b = 0; b < B; b++) {
        p->w_task[b] = inv_b;
        p->w_dist[b] = (!bt->has_target || bt->has_target[b]) ? bt->alpha * inv_b : 0.0f;
    }
    memset(p->dz_main, 0, B * sizeof(float));
    rd_bce_logits_backward(p->dz_main, p->w_task, m->logits_main, bt->labels, B);
    if (m->two_towers) {
        memset(p->dz_aux, 0, B * sizeof(float));
        if (!bt->aux_task_off)
            rd_bce_logits_backward(p->dz_aux, p->w_task, m->logits_aux, bt->labels, B);
    }
    if (bt->teacher_logits) {
        float *dz = m->two_towers ? p->dz_aux : p->dz_main;
        const float *z = m->two_towers ? m->logits_aux : m->logits_main;
        if (bt->calib) { // through g(z) = logit(f_S(z)), computed by the forward pass in zcal
            memset(p->dzcal, 0, B * sizeof(float));
            rd_distill_bce_backward(p->dzcal, p->w_dist, p->zcal, bt->teacher_logits,
                                    bt->temperature, B);
            rd_debias_logit_backward(dz, p->dzcal, z, bt->calib, B);
        } else {
            rd_distill_bce_backward(dz, p->w_dist, z, bt->teacher_logits, bt->temperature, B);
        }
    }

    // 2. Head -> dh.
    float *dh = p->need_dh ? p->dh : NULL;
    if (dh)
        memset(dh, 0, B * p->Hd * sizeof(float));
    if (m->two_towers)
        rd_two_tower_backward(dh, p->head_g, &p->mlp_sc, p->dz_main, p->dz_aux, p->h, &p->head, B);
    else
        rd_mlp_backward(dh, &p->head_g[0], &p->mlp_sc, p->dz_main, p->h, &p->head.acts[0],
                        &p->head.w[0], &p->head.shape[0], B);
    if (dh)
        backward_backbone(m, bt);
    return RD_OK;
}

int rd_model_backward_hidden(rd_model *m, const rd_batch *bt, const float *dh, rd_errbuf *eb) {
    rd__model_priv *p = m->priv;
    if (!bt || !dh || p->fwd_B == 0 || p->fwd_B != bt->B)
        return rd_err_set(eb, RD_ERR_STATE,
                          "rd_model_backward_hidden: no forward of this batch before it (last "
                          "forward B = %zu) or NULL dh",
                          p->fwd_B);
    if (p->fwd_shared)
        return rd_err_set(eb, RD_ERR_STATE,
                          "rd_model_backward_hidden: the last forward shared example 0's history "
                          "(seq_shared / tok_shared): inference only, no backward");
    if (p->params_borrowed)
        return rd_err_set(eb, RD_ERR_STATE,
                          "rd_model_backward_hidden: the model reads a shared parameter slab "
                          "(shared_params): inference only, no backward");
    zero_grads(m, bt);
    if (!p->need_dh) // the backbone is the identity on numeric inputs: nothing learns below h
        return RD_OK;
    memcpy(p->dh, dh, bt->B * p->Hd * sizeof(float));
    backward_backbone(m, bt);
    return RD_OK;
}

// Steps 3-5 of the backward pass from p->dh: backbone, sequence branches, features (gradients
// accumulate into the slab and the drows, which the caller zeroed).
static void backward_backbone(rd_model *m, const rd_batch *bt) {
    rd__model_priv *p = m->priv;
    size_t B = bt->B;

    // 3. Backbone -> d bb_in.
    const float *x = p->ln ? p->bb_ln : p->bb_in;
    const float *dx = p->dh;
    if (p->has_mlp) {
        float *dxb = p->need_dbb ? (p->ln ? p->dbb_ln : p->dbb_in) : NULL;
        if (dxb)
            memset(dxb, 0, B * p->W * sizeof(float));
        rd_mlp_backward_dropout(dxb, &p->bb_g, &p->mlp_sc, p->dh, x, &p->bb_a, &p->bb_drop,
                                &p->bb_p, &p->bb_shape, B);
        dx = dxb;
    }
    if (!p->need_dbb) // numeric inputs only: nothing below the backbone learns
        return;
    if (p->ln) {
        memset(p->dbb_in, 0, B * p->W * sizeof(float));
        rd_layernorm_backward(p->dbb_in, p->ln_w_g, p->ln_b_g, dx, p->bb_in, p->ln_w_p, p->bb_mean,
                              p->bb_rstd, B, p->W);
        dx = p->dbb_in;
    }
    for (int i = 0; i < p->n_parts; i++)
        if (p->dpart[i])
            memset(p->dpart[i], 0, B * p->part_w[i] * sizeof(float));
    rd_concat_backward(p->dpart, dx, p->part_w, (size_t)p->n_parts, B);

    // 4. Sequence branches (their queries add to dx_req). A token query that reads the seq
    //    branch's output adds to its dout, so the token branch goes first then.
    if (p->tok.on && p->tok_qseq)
        tok_backward(m, bt);
    if (p->seq.on)
        seq_backward(m, bt);
    if (p->tok.on && !p->tok_qseq)
        tok_backward(m, bt);

    // 5. Features: split dx_req and scatter into the rows.
    if (m->n_features > 0) {
        size_t widths[RD_MAX_FEATURES];
        for (int f = 0; f < m->n_features; f++) {
            widths[f] = m->features[f].dim;
            memset(p->demb[f], 0, B * widths[f] * sizeof(float));
        }
        rd_concat_backward(p->demb, p->dx_req, widths, (size_t)m->n_features, B);
        for (int f = 0; f < m->n_features; f++) {
            const rd_model_feature *mf = &m->features[f];
            if (bt->drows[mf->table])
                rd_embedding_pool_backward(bt->drows[mf->table], p->demb[f], bt->feat_idx[f], B,
                                           bt->feat_slots[f], bt->n_rows[mf->table], mf->dim,
                                           mf->pooling);
        }
    }
}
