// test_model.c — unit tests of rd/model.h and rd/dense_optim.h.
//
// - Finite-difference check of the WHOLE model (every parameter tensor and every table's pulled
//   rows) on tiny configs that together use every branch kind: transformer / din / mean sequence
//   branches, the IAT token branch, layer norm, numeric features, one and two towers, with and
//   without distillation targets (fp32, norm-wise relative error < 1e-3 per tensor).
// - Two-tower isolation: the aux loss does not depend on the main tower at all (bitwise), and the
//   main tower's gradients are bitwise the same whatever the teacher sends.
// - Overfitting a tiny synthetic batch to near-zero loss with Adam.
// - Batch prefix (B < max_batch), determinism, FLOP and parameter counts, no allocation in the
//   step, out-of-memory injection in create, clear errors for bad configs and bad batches, a
//   model built from YAML through rd_config_parse_string, and the dense optimizers.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/dense_optim.h"
#include "rd/distill.h"
#include "rd/layers.h"
#include "rd/model.h"
#include "rd/rng.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Fixtures: tables, configs and synthetic batches

static const rd_table_config TABLES[] = {
    {.name = "t_user", .dim = 4}, {.name = "t_item", .dim = 4}, {.name = "t_genre", .dim = 3},
    {.name = "t_hist", .dim = 5}, {.name = "t_wide", .dim = 8},
};
#define N_TABLES ((int)(sizeof TABLES / sizeof TABLES[0]))

static void mc_defaults(rd_model_config *mc, const char *name) {
    memset(mc, 0, sizeof *mc);
    snprintf(mc->name, sizeof mc->name, "%s", name);
    mc->seq = (rd_seq_config){
        .kind = RD_SEQ_NONE, .length = 16, .layers = 1, .heads = 2, .with_labels = 1};
    mc->tokens = (rd_token_use){.scheme = 0,
                                .length = 64,
                                .kind = RD_SEQ_TRANSFORMER,
                                .layers = 1,
                                .heads = 2,
                                .adapter = 64};
    snprintf(mc->activation, sizeof mc->activation, "relu");
}

static void add_feature(rd_model_config *mc, const char *field, const char *table, int pooling) {
    rd_feature_use *f = &mc->features[mc->n_features++];
    snprintf(f->field, sizeof f->field, "%s", field);
    snprintf(f->table, sizeof f->table, "%s", table);
    f->pooling = pooling;
}

static rd_model_opts opts_for(size_t max_batch, size_t n_numeric, size_t token_dim) {
    return (rd_model_opts){.tables = TABLES,
                           .n_tables = N_TABLES,
                           .max_batch = max_batch,
                           .n_numeric = n_numeric,
                           .token_dim = token_dim,
                           .opt_slots = 2,
                           .seed = 7};
}

// Config A: transformer history with labels, din token branch, numeric, layer norm, two towers.
static void config_a(rd_model_config *mc) {
    mc_defaults(mc, "a");
    add_feature(mc, "user", "t_user", RD_POOL_MEAN);
    add_feature(mc, "item", "t_item", RD_POOL_MEAN);
    add_feature(mc, "genre", "t_genre", RD_POOL_MEAN);
    mc->seq = (rd_seq_config){.kind = RD_SEQ_TRANSFORMER,
                              .length = 4,
                              .layers = 2,
                              .heads = 2,
                              .dim = 6,
                              .with_labels = 1};
    mc->tokens = (rd_token_use){
        .scheme = 2, .length = 3, .kind = RD_SEQ_DIN, .layers = 1, .heads = 2, .adapter = 4};
    mc->n_mlp = 2;
    mc->mlp[0] = 8;
    mc->mlp[1] = 5;
    mc->n_tower = 1;
    mc->tower[0] = 3;
    mc->two_towers = 1;
    mc->layer_norm = 1;
    snprintf(mc->activation, sizeof mc->activation, "gelu");
}

// Config B: din history from its own table (sum pooling feature), mean token branch, one tower
// with distillation, no layer norm, no tower hidden layer.
static void config_b(rd_model_config *mc) {
    mc_defaults(mc, "b");
    add_feature(mc, "user", "t_user", RD_POOL_MEAN);
    add_feature(mc, "tags", "t_genre", RD_POOL_SUM);
    mc->seq =
        (rd_seq_config){.kind = RD_SEQ_DIN, .length = 5, .layers = 1, .heads = 2, .with_labels = 0};
    snprintf(mc->seq.table, sizeof mc->seq.table, "t_hist");
    mc->tokens = (rd_token_use){
        .scheme = 1, .length = 3, .kind = RD_SEQ_MEAN, .layers = 1, .heads = 1, .adapter = 3};
    mc->n_mlp = 1;
    mc->mlp[0] = 6;
    snprintf(mc->activation, sizeof mc->activation, "gelu");
}

// Config C: mean history, causal transformer token branch, two towers, no MLP backbone.
static void config_c(rd_model_config *mc) {
    mc_defaults(mc, "c");
    add_feature(mc, "item", "t_item", RD_POOL_MEAN);
    mc->seq = (rd_seq_config){
        .kind = RD_SEQ_MEAN, .length = 3, .layers = 1, .heads = 1, .with_labels = 1};
    mc->tokens = (rd_token_use){.scheme = 2,
                                .length = 4,
                                .kind = RD_SEQ_TRANSFORMER,
                                .layers = 1,
                                .heads = 2,
                                .adapter = 4};
    mc->n_tower = 1;
    mc->tower[0] = 4;
    mc->two_towers = 1;
    snprintf(mc->activation, sizeof mc->activation, "gelu");
}

// Config D: the shape of configs/synthetic-iat.yaml: din history with labels and a din token
// branch, one tower. Config E: the same with a transformer token branch. (The configs run ReLU;
// the FD steps here, 0.02..0.16, cross ReLU kinks, so every FD config uses GELU.)
static void config_d(rd_model_config *mc, int tok_kind) {
    mc_defaults(mc, tok_kind == RD_SEQ_DIN ? "d" : "e");
    add_feature(mc, "user", "t_user", RD_POOL_MEAN);
    add_feature(mc, "item", "t_item", RD_POOL_MEAN);
    mc->seq =
        (rd_seq_config){.kind = RD_SEQ_DIN, .length = 5, .layers = 1, .heads = 2, .with_labels = 1};
    mc->tokens = (rd_token_use){
        .scheme = 2, .length = 4, .kind = tok_kind, .layers = 1, .heads = 2, .adapter = 4};
    mc->n_mlp = 2;
    mc->mlp[0] = 8;
    mc->mlp[1] = 5;
    snprintf(mc->activation, sizeof mc->activation, "gelu"); // smooth: FD steps cross no kink
}

// Config F: the teacher shape of configs/ml100k.yaml with seq.view: a history branch of `kind`
// with labels plus a second view (`view`, mean | din, none = off) of its view_length most recent
// events, one tower.
static void config_f(rd_model_config *mc, int kind, int view, int view_length) {
    mc_defaults(mc, "f");
    add_feature(mc, "user", "t_user", RD_POOL_MEAN);
    add_feature(mc, "item", "t_item", RD_POOL_MEAN);
    mc->seq = (rd_seq_config){.kind = kind,
                              .length = 5,
                              .layers = 1,
                              .heads = 2,
                              .with_labels = 1,
                              .view = view,
                              .view_length = view_length};
    mc->n_mlp = 2;
    mc->mlp[0] = 8;
    mc->mlp[1] = 5;
    snprintf(mc->activation, sizeof mc->activation, "gelu");
}

// A synthetic batch owning all of its arrays.
typedef struct tbatch {
    rd_batch b;
    float *rows[RD_MAX_TABLES];
    float *drows[RD_MAX_TABLES];
    int32_t *feat_idx[RD_MAX_FEATURES];
    int32_t *seq_idx;
    uint8_t *seq_labels, *tok_mask, *tok_labels, *has_target;
    float *tokens, *tok_side, *numeric, *labels, *teacher;
} tbatch;

// A non-identity calibration f_S (negatives kept at 0.3, b_s 0.1): rd_debias_from_sampling's
// parameters, r_s = q_+ / q_- = 1 / 0.3.
static const rd_debias k_calib = {.r_s = 1.0 / 0.3, .p_x = 1.0, .r_plus = 1.0, .b_s = 0.1};

// teacher: 0 = no targets, 1 = targets, 2 = targets and the calibration k_calib, 3 = targets
// and no task loss in the aux tower.
static void tb_make(tbatch *t, const rd_model *m, size_t B, uint64_t seed, int teacher) {
    memset(t, 0, sizeof *t);
    rd_rng r;
    rd_rng_seed(&r, seed);
    rd_batch *b = &t->b;
    b->B = B;
    size_t U = 7;
    for (int k = 0; k < m->n_tables; k++) {
        size_t n = U * m->tables[k].dim;
        t->rows[k] = calloc(n, sizeof(float));
        t->drows[k] = calloc(n, sizeof(float));
        assert_non_null(t->rows[k]);
        assert_non_null(t->drows[k]);
        for (size_t i = 0; i < n; i++)
            t->rows[k][i] = 0.5f * (float)rd_rng_normal(&r);
        b->rows[k] = t->rows[k];
        b->drows[k] = t->drows[k];
        b->n_rows[k] = U;
    }
    for (int f = 0; f < m->n_features; f++) {
        size_t S = m->features[f].pooling == RD_POOL_SUM || f == 2 ? 3 : 1;
        t->feat_idx[f] = calloc(B * S, sizeof(int32_t));
        assert_non_null(t->feat_idx[f]);
        for (size_t i = 0; i < B * S; i++) // a few empty slots in multi-valued features
            t->feat_idx[f][i] = S > 1 && i % 4 == 1 ? -1 : (int32_t)rd_rng_below(&r, U);
        b->feat_idx[f] = t->feat_idx[f];
        b->feat_slots[f] = S;
    }
    if (m->seq_table >= 0) {
        size_t L = m->seq_length;
        t->seq_idx = calloc(B * L, sizeof(int32_t));
        t->seq_labels = calloc(B * L, 1);
        assert_non_null(t->seq_idx);
        assert_non_null(t->seq_labels);
        for (size_t i = 0; i < B * L; i++) {
            // Example 1 has only its first event; the others are full.
            t->seq_idx[i] = (i / L == 1 && i % L > 0) ? -1 : (int32_t)rd_rng_below(&r, U);
            t->seq_labels[i] = (uint8_t)rd_rng_below(&r, 2);
        }
        b->seq_idx = t->seq_idx;
        b->seq_labels = m->seq_with_labels ? t->seq_labels : NULL;
    }
    if (m->tok_length > 0) {
        size_t L = m->tok_length, d = m->tok_dim;
        t->tokens = calloc(B * L * d, sizeof(float));
        t->tok_mask = calloc(B * L, 1);
        t->tok_labels = calloc(B * L, 1);
        assert_non_null(t->tokens);
        assert_non_null(t->tok_mask);
        assert_non_null(t->tok_labels);
        for (size_t i = 0; i < B * L * d; i++)
            t->tokens[i] = (float)rd_rng_normal(&r);
        for (size_t i = 0; i < B * L; i++) {
            t->tok_mask[i] = !(i / L == 0 && i % L == L - 1); // example 0: last token padded
            t->tok_labels[i] = (uint8_t)rd_rng_below(&r, 2);
        }
        b->tokens = t->tokens;
        b->tok_mask = t->tok_mask;
        b->tok_labels = t->tok_labels;
        if (m->tok_side) { // ratings-like values 1..5 and a centred one
            size_t S = m->tok_side;
            t->tok_side = calloc(B * L * S, sizeof(float));
            assert_non_null(t->tok_side);
            for (size_t i = 0; i < B * L * S; i++)
                t->tok_side[i] =
                    i % S == 0 ? (float)(1 + rd_rng_below(&r, 5)) : (float)rd_rng_normal(&r);
            b->tok_side = t->tok_side;
        }
    }
    if (m->n_numeric > 0) {
        t->numeric = calloc(B * m->n_numeric, sizeof(float));
        assert_non_null(t->numeric);
        for (size_t i = 0; i < B * m->n_numeric; i++)
            t->numeric[i] = (float)rd_rng_normal(&r);
        b->numeric = t->numeric;
    }
    t->labels = calloc(B, sizeof(float));
    t->teacher = calloc(B, sizeof(float));
    t->has_target = calloc(B, 1);
    assert_non_null(t->labels);
    assert_non_null(t->teacher);
    assert_non_null(t->has_target);
    for (size_t i = 0; i < B; i++) {
        t->labels[i] = (float)rd_rng_below(&r, 2);
        t->teacher[i] = 1.5f * (float)rd_rng_normal(&r);
        t->has_target[i] = i % 3 != 1;
    }
    b->labels = t->labels;
    if (teacher) {
        b->teacher_logits = t->teacher;
        b->has_target = t->has_target;
        b->alpha = 0.7f;
        b->temperature = 2.0f;
    }
    if (teacher == 2) // cross-debias: the student's logit through a sampling calibration
        b->calib = &k_calib;
    if (teacher == 3) // the aux tower on the distillation term alone (distill.aux_task: false)
        b->aux_task_off = 1;
}

static void tb_free(tbatch *t) {
    for (int k = 0; k < RD_MAX_TABLES; k++) {
        free(t->rows[k]);
        free(t->drows[k]);
    }
    for (int f = 0; f < RD_MAX_FEATURES; f++)
        free(t->feat_idx[f]);
    free(t->seq_idx);
    free(t->seq_labels);
    free(t->tok_mask);
    free(t->tok_labels);
    free(t->has_target);
    free(t->tokens);
    free(t->tok_side);
    free(t->numeric);
    free(t->labels);
    free(t->teacher);
}

static rd_model *build(const rd_model_config *mc, const rd_model_opts *o) {
    rd_model *m = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_model_create(mc, o, &m, &eb);
    if (rc != RD_OK)
        fail_msg("rd_model_create(%s): %s: %s", mc->name, rd_strerror(rc), eb.msg);
    return m;
}

static void step(rd_model *m, const rd_batch *b) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_model_forward(m, b, &eb);
    if (rc == RD_OK)
        rc = rd_model_backward(m, b, &eb);
    if (rc != RD_OK)
        fail_msg("step: %s: %s", rd_strerror(rc), eb.msg);
}

static double fwd_loss(rd_model *m, const rd_batch *b) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_model_forward(m, b, &eb);
    if (rc != RD_OK)
        fail_msg("forward: %s: %s", rd_strerror(rc), eb.msg);
    return m->loss;
}

// ---------------------------------------------------------------------------------------------
// Finite differences over the whole model

#define FD_TOL    1e-3
#define FD_PROBES 24
// Below this gradient magnitude per element, fp32 central differences of the whole model cannot
// resolve 1e-3 relative error: the loss (~2) is only known to about one float ulp (~2.4e-7), so
// the (0.04, 0.02) extrapolation resolves about 4/3 * 2.4e-7 / 0.04 ~ 8e-6 absolute, and the
// (0.16, 0.08) one about 2e-6. Norms below FD_FLOOR * sqrt(probes) are compared with that floor
// as the denominator (an absolute check at 3e-6 per element) and are counted apart.
#define FD_FLOOR 3e-3

static double central(rd_model *m, const rd_batch *b, float *x, float h) {
    float orig = *x, xp = orig + h, xm = orig - h;
    *x = xp;
    double lp = fwd_loss(m, b);
    *x = xm;
    double lm = fwd_loss(m, b);
    *x = orig;
    return (lp - lm) / ((double)xp - (double)xm);
}

// Derivative at one element with an adaptive step (Ridders-style): Richardson extrapolations
// from (h, h/2) for h = 0.04 and h = 0.16; the one whose two central differences agree best wins
// (small steps lose to rounding noise, large ones to the O(h^4) truncation).
static double fd_element(rd_model *m, const rd_batch *b, float *x) {
    double best = 0.0, best_err = (double)INFINITY;
    const float hs[2] = {0.04f, 0.16f};
    for (int k = 0; k < 2; k++) {
        double d1 = central(m, b, x, hs[k]), d2 = central(m, b, x, 0.5f * hs[k]);
        double err = fabs(d1 - d2);
        if (err < best_err) {
            best_err = err;
            best = (4.0 * d2 - d1) / 3.0;
        }
    }
    return best;
}

// Norm-wise relative error on up to FD_PROBES elements (floored denominator, see FD_FLOOR);
// -1 when both gradients are zero on the probed elements. *limited = 1 when the floor applied.
static double fd_tensor(
    rd_model *m, const rd_batch *b, float *x, const float *g, size_t n, rd_rng *r, int *limited) {
    double num = 0.0, dfd = 0.0, dan = 0.0;
    size_t probes = n < FD_PROBES ? n : FD_PROBES;
    for (size_t p = 0; p < probes; p++) {
        size_t i = n <= FD_PROBES ? p : (size_t)rd_rng_below(r, n);
        double fd = fd_element(m, b, &x[i]);
        double an = (double)g[i];
        num += (fd - an) * (fd - an);
        dfd += fd * fd;
        dan += an * an;
    }
    double den = sqrt(dfd > dan ? dfd : dan);
    if (den < 1e-9)
        return -1.0;
    double floor = FD_FLOOR * sqrt((double)probes);
    *limited = den < floor;
    return sqrt(num) / (den > floor ? den : floor);
}

static uint64_t g_dropout_key; // the dropout key of fd_model's batches (0 = none)

static void fd_model_opts(const rd_model_config *mc, const rd_model_opts *o, int teacher) {
    rd_model *m = build(mc, o);
    const rd_model_tensor *gate = rd_model_find_tensor(m, "tok.gate");
    for (size_t k = 0; gate && k < gate->n; k++) // it starts at 0, where the branch has no gradient
        m->params[gate->offset + k] = 0.5f + 0.1f * (float)k;
    tbatch t;
    tb_make(&t, m, 3, 99, teacher); // B = 3 < max_batch 4: the prefix layout is exercised too
    t.b.dropout_key = g_dropout_key;
    step(m, &t.b);
    float *g = malloc(m->n_slab * sizeof(float));
    assert_non_null(g);
    memcpy(g, m->grads, m->n_slab * sizeof(float));
    rd_rng r;
    rd_rng_seed(&r, 5);
    double worst = 0.0;
    int zero = 0, checked = 0, n_limited = 0;
    for (int i = 0; i < m->n_tensors + m->n_tables; i++) {
        int is_rows = i >= m->n_tensors;
        const rd_model_tensor *ts = is_rows ? NULL : &m->tensors[i];
        int k = i - m->n_tensors;
        float *x = is_rows ? t.rows[k] : m->params + ts->offset;
        const float *gx = is_rows ? t.drows[k] : g + ts->offset;
        size_t n = is_rows ? t.b.n_rows[k] * m->tables[k].dim : ts->n;
        const char *name = is_rows ? m->tables[k].name : ts->name;
        int limited = 0;
        double rel = fd_tensor(m, &t.b, x, gx, n, &r, &limited);
        if (rel < 0.0 && !is_rows) {
            zero++;
            continue;
        }
        if (!(rel >= 0.0 && rel < FD_TOL))
            fail_msg("model %s: d loss / d %s%s: FD relative error %.3g (tolerance %.0e)", mc->name,
                     is_rows ? "rows of " : "", name, rel, FD_TOL);
        worst = rel > worst ? rel : worst;
        checked++;
        n_limited += limited;
    }
    print_message("FD model %s: %d tensors + tables checked (%d at the fp32 resolution floor), "
                  "worst relative error %.2e, %d with zero gradient, loss %.4f\n",
                  mc->name, checked, n_limited, worst, zero, m->loss);
    // Only the DIN output bias may have an exactly-zero gradient (softmax is shift-invariant).
    assert_true(zero <= 2);
    free(g);
    tb_free(&t);
    rd_model_destroy(m);
}

static void fd_model(const rd_model_config *mc, size_t n_numeric, size_t token_dim, int teacher) {
    rd_model_opts o = opts_for(4, n_numeric, token_dim);
    fd_model_opts(mc, &o, teacher);
}

// Side values stored with the tokens (tokens.side): FD gradients of their projection, padded
// slots ignore them, valid slots do not.
static void test_fd_model_token_side(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc); // DIN token branch
    rd_model_opts o = opts_for(4, 2, 5);
    o.token_side = 2;
    fd_model_opts(&mc, &o, 1);
    config_d(&mc, RD_SEQ_TRANSFORMER);
    o = opts_for(4, 0, 3);
    o.token_side = 1;
    fd_model_opts(&mc, &o, 1);
    rd_model *m = build(&mc, &o);
    assert_int_equal(m->tok_side, 1);
    assert_non_null(rd_model_find_tensor(m, "tok.side_w"));
    tbatch t;
    tb_make(&t, m, 3, 99, 1);
    double base = fwd_loss(m, &t.b);
    size_t L = m->tok_length;
    t.tok_side[L - 1] += 7.0f; // example 0's last slot is padding
    assert_true(fwd_loss(m, &t.b) == base);
    t.tok_side[0] += 7.0f; // example 0's most recent token
    assert_true(fwd_loss(m, &t.b) != base);
    // A batch without the side values is refused by name.
    t.b.tok_side = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "tok_side"));
    tb_free(&t);
    rd_model_destroy(m);
    // Without side values the parameter slab is the one of before (no tok.side_w).
    o.token_side = 0;
    m = build(&mc, &o);
    assert_null(rd_model_find_tensor(m, "tok.side_w"));
    rd_model_destroy(m);
}

// tokens.label none: no label embedding (no tok.label_emb); FD gradients with and without side
// values; the model equals the one with the embedding at zero (logits and every shared gradient),
// and the stored labels no longer change its output.
static void test_token_label_none(void **state) {
    (void)state;
    rd_model_config mc;
    // FD over a DIN token branch. Over the transformer one (config_d's own), tok.in.b and tok.pos
    // land at 5e-3 at this initial point, as seq.in.b does in config_a once one tensor fewer
    // shifts the initial draws: offsets shared by every position, whose gradient nearly cancels.
    // The transformer model's gradients are the embed model's at a zero embedding (below).
    config_d(&mc, RD_SEQ_DIN);
    mc.tokens.label = 1;
    rd_model_opts o = opts_for(4, 0, 3);
    fd_model_opts(&mc, &o, 1);
    o.token_side = 2;
    fd_model_opts(&mc, &o, 1);
    config_d(&mc, RD_SEQ_TRANSFORMER);
    mc.tokens.label = 1;
    rd_model *a = build(&mc, &o);
    assert_null(rd_model_find_tensor(a, "tok.label_emb"));
    mc.tokens.label = 0;
    rd_model *b = build(&mc, &o);
    const rd_model_tensor *lab = rd_model_find_tensor(b, "tok.label_emb");
    assert_non_null(lab);
    assert_int_equal(a->n_tensors + 1, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) { // a's parameters into b, by name
        const rd_model_tensor *ta = &a->tensors[i], *tb = rd_model_find_tensor(b, ta->name);
        assert_non_null(tb);
        assert_int_equal(ta->n, tb->n);
        memcpy(b->params + tb->offset, a->params + ta->offset, ta->n * sizeof(float));
    }
    memset(b->params + lab->offset, 0, lab->n * sizeof(float));
    tbatch t;
    tb_make(&t, a, 3, 7, 1);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_model_forward(a, &t.b, &eb), RD_OK);
    assert_int_equal(rd_model_backward(a, &t.b, &eb), RD_OK);
    assert_int_equal(rd_model_forward(b, &t.b, &eb), RD_OK);
    assert_int_equal(rd_model_backward(b, &t.b, &eb), RD_OK);
    for (int i = 0; i < 3; i++)
        assert_float_equal(a->logits_main[i], b->logits_main[i], 1e-6f);
    for (int i = 0; i < a->n_tensors; i++) {
        const rd_model_tensor *ta = &a->tensors[i], *tb = rd_model_find_tensor(b, ta->name);
        for (size_t k = 0; k < ta->n; k++)
            assert_float_equal(a->grads[ta->offset + k], b->grads[tb->offset + k], 1e-6f);
    }
    // The labels stored with the tokens reach b (its embedding made non-zero), not a.
    for (size_t k = 0; k < lab->n; k++)
        b->params[lab->offset + k] = 0.1f * (float)(k % 7) - 0.3f;
    double la = fwd_loss(a, &t.b), lb = fwd_loss(b, &t.b);
    for (size_t i = 0; i < 3 * a->tok_length; i++)
        t.tok_labels[i] = (uint8_t)(1 - t.tok_labels[i]);
    assert_true(fwd_loss(a, &t.b) == la);
    assert_true(fwd_loss(b, &t.b) != lb);
    tb_free(&t);
    rd_model_destroy(a);
    rd_model_destroy(b);
}

static void test_fd_model_a(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc);
    fd_model(&mc, 2, 5, 1);
    fd_model(&mc, 2, 5, 2); // two towers, the aux tower's logit through the calibration
    fd_model(&mc, 2, 5, 3); // two towers, the aux tower on the distillation term alone
}

static void test_fd_model_b(void **state) {
    (void)state;
    rd_model_config mc;
    config_b(&mc);
    fd_model(&mc, 0, 3, 1);
    fd_model(&mc, 0, 3, 2); // one tower, its logit through the calibration
}

// Cross-debias: the distillation term compares the student's logit projected through f_S with
// the (already projected) teacher logit: loss_distill = mean over targets of
// T^2 BCE(sigma(g(z_s) / T), sigma(z_t / T)), g(z) = logit(f_S(z)) = -log(A e^{-z} + K), computed
// here from the formula in double precision.
static void test_distill_calibrated_loss(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc);
    rd_model_opts o = opts_for(4, 2, 5);
    rd_model *m = build(&mc, &o);
    tbatch t;
    tb_make(&t, m, 4, 17, 2);
    step(m, &t.b);
    double A = k_calib.r_s / k_calib.p_x, K = A * (1.0 - k_calib.r_plus) + k_calib.b_s;
    double T = (double)t.b.temperature, sum = 0.0;
    size_t n = 0;
    for (size_t b = 0; b < t.b.B; b++) {
        if (!t.has_target[b])
            continue;
        double g = -log(A * exp(-(double)m->logits_aux[b]) + K);
        double ps = 1.0 / (1.0 + exp(-g / T)), pt = 1.0 / (1.0 + exp(-(double)t.teacher[b] / T));
        sum += -T * T * (pt * log(ps) + (1.0 - pt) * log(1.0 - ps));
        n++;
    }
    assert_true(n > 0 && m->n_distill == n);
    assert_true(fabs(m->loss_distill - sum / (double)n) < 1e-5 * (1.0 + fabs(sum / (double)n)));
    // Without the calibration the same batch gives another value (the projection is not a no-op).
    double calibrated = m->loss_distill;
    t.b.calib = NULL;
    step(m, &t.b);
    assert_true(fabs(m->loss_distill - calibrated) > 1e-3);
    // distill.aux_task: false: the aux loss is the distillation term alone, alpha * sum / B; the
    // main tower's loss does not change.
    double main0 = m->loss_main;
    t.b.aux_task_off = 1;
    step(m, &t.b);
    double term = (double)t.b.alpha * m->loss_distill * (double)m->n_distill / (double)t.b.B;
    assert_true(fabs(m->loss_aux - term) < 1e-6 * (1.0 + term));
    assert_true(m->loss_main == main0);
    // Without teacher logits (a phase before the targets start) the aux tower learns nothing
    // either: it learned the labels there, and began distilling from a task-trained state.
    t.b.teacher_logits = NULL;
    t.b.has_target = NULL;
    step(m, &t.b);
    assert_true(m->loss_aux == 0.0);
    assert_true(m->loss_main == main0);
    tb_free(&t);
    rd_model_destroy(m);
}

static void test_fd_model_d(void **state) {
    (void)state;
    rd_model_config mc;
    config_d(&mc, RD_SEQ_DIN);
    fd_model(&mc, 0, 3, 1);
}

static void test_fd_model_e(void **state) {
    (void)state;
    rd_model_config mc;
    config_d(&mc, RD_SEQ_TRANSFORMER);
    fd_model(&mc, 0, 3, 1);
    mc.tokens.gate = 1; // the same with the token gate (set away from 0 by fd_model)
    fd_model(&mc, 0, 3, 1);
}

// tokens.query request_seq: the token branch's query reads [x_req | seq out]. FD gradients with a
// din and a transformer token branch over a din history (the query's gradient reaches the history
// rows and the seq branch's weights through its output), over a mean history without features
// (the query is the seq output alone); the query's weights widen by the seq branch's width.
static void test_fd_token_query_seq(void **state) {
    (void)state;
    rd_model_config mc;
    config_d(&mc, RD_SEQ_DIN);
    mc.tokens.query = 1;
    fd_model(&mc, 0, 3, 1);
    config_d(&mc, RD_SEQ_TRANSFORMER);
    mc.tokens.query = 1;
    fd_model(&mc, 0, 3, 2);
    mc_defaults(&mc, "q_nofeat");
    mc.seq = (rd_seq_config){.kind = RD_SEQ_MEAN, .length = 5, .with_labels = 1};
    snprintf(mc.seq.table, sizeof mc.seq.table, "t_item");
    mc.tokens = (rd_token_use){.scheme = 2,
                               .length = 4,
                               .kind = RD_SEQ_TRANSFORMER,
                               .layers = 1,
                               .heads = 2,
                               .adapter = 4,
                               .query = 1};
    mc.n_mlp = 1;
    mc.mlp[0] = 6;
    snprintf(mc.activation, sizeof mc.activation, "gelu");
    fd_model(&mc, 0, 3, 1);

    // The query's weights widen by the seq branch's width: C_tok more columns of C_seq each.
    config_d(&mc, RD_SEQ_TRANSFORMER);
    rd_model_opts o = opts_for(4, 0, 3);
    rd_model *m0 = build(&mc, &o);
    mc.tokens.query = 1;
    rd_model *m1 = build(&mc, &o);
    const rd_model_tensor *q0 = rd_model_find_tensor(m0, "tok.ra.qw");
    const rd_model_tensor *q1 = rd_model_find_tensor(m1, "tok.ra.qw");
    const rd_model_tensor *tb = rd_model_find_tensor(m1, "tok.in.b");
    const rd_model_tensor *sb = rd_model_find_tensor(m1, "seq.in.b");
    assert_non_null(q0);
    assert_non_null(q1);
    assert_non_null(tb);
    assert_non_null(sb);
    assert_int_equal(q1->n, q0->n + tb->n * sb->n);
    // The query reads the history's output: zeroing its columns of the query weights moves the
    // loss.
    tbatch t;
    tb_make(&t, m1, 3, 99, 1);
    double l1 = fwd_loss(m1, &t.b);
    float *w1 = m1->params + q1->offset;
    size_t E = q0->n / tb->n, Eq = q1->n / tb->n;
    for (size_t r = 0; r < tb->n; r++)
        for (size_t c = E; c < Eq; c++)
            w1[r * Eq + c] = 0.0f;
    double l0 = fwd_loss(m1, &t.b);
    assert_true(l0 != l1);
    tb_free(&t);
    rd_model_destroy(m0);
    rd_model_destroy(m1);
}

// tokens.norm: rd_token_standardize on known values (padding 0, a constant token 0); a model
// with it equals the same model without it fed the standardised tokens (logits and every
// gradient), and its gradients pass finite differences.
// A NaN dense parameter (a diverged optimizer) reaches the loss, wherever it is, so that the
// trainer's check of the loss stops the run: with ReLU (the default activation) a NaN
// pre-activation came out as 0, the unit fell silent, and the loss stayed finite while the run
// trained on with it. One tower, numeric inputs and a two-layer backbone: every parameter feeds
// the main logit.
static void test_nan_param_reaches_loss(void **state) {
    (void)state;
    rd_model_config mc;
    mc_defaults(&mc, "nan");
    add_feature(&mc, "user", "t_user", RD_POOL_MEAN);
    add_feature(&mc, "item", "t_item", RD_POOL_SUM);
    mc.n_mlp = 2;
    mc.mlp[0] = 8;
    mc.mlp[1] = 5;
    mc.n_tower = 1;
    mc.tower[0] = 3;
    assert_string_equal(mc.activation, "relu");
    rd_model_opts o = opts_for(4, 2, 0);
    rd_model *m = build(&mc, &o);
    tbatch t;
    tb_make(&t, m, 4, 5, 0);
    assert_true(isfinite(fwd_loss(m, &t.b)));
    for (int i = 0; i < m->n_tensors; i++) {
        const rd_model_tensor *tt = &m->tensors[i];
        for (size_t k = 0; k<tt->n; k += tt->n> 1 ? tt->n - 1 : 1) { // first and last
            float *x = &m->params[tt->offset + k], keep = *x;
            *x = NAN;
            double loss = fwd_loss(m, &t.b);
            *x = keep;
            if (!isnan(loss))
                fail_msg("a NaN in %s[%zu] left the loss at %g", tt->name, k, loss);
        }
    }
    assert_true(isfinite(fwd_loss(m, &t.b)));
    tb_free(&t);
    rd_model_destroy(m);
}

static void test_token_norm(void **state) {
    (void)state;
    float x[3 * 4] = {1, 2, 3, 4, 9, 9, 9, 9, 5, 6, 7, 8}, y[3 * 4];
    uint8_t mask[3] = {1, 1, 0};
    rd_token_standardize(y, x, mask, 3, 4);
    float sd = sqrtf(1.25f + (float)RD_TOKEN_NORM_EPS); // values 1..4: mean 2.5, variance 1.25
    for (int k = 0; k < 4; k++) {
        assert_float_equal(y[k], ((float)k + 1.0f - 2.5f) / sd, 1e-6f);
        assert_float_equal(y[4 + k], 0.0f, 0.0f);
        assert_float_equal(y[8 + k], 0.0f, 0.0f);
    }
    rd_model_config mc;
    config_d(&mc, RD_SEQ_TRANSFORMER);
    mc.tokens.norm = 1;
    fd_model(&mc, 0, 3, 1);
    rd_model_opts o = opts_for(4, 0, 3);
    rd_model *a = build(&mc, &o);
    mc.tokens.norm = 0;
    rd_model *b = build(&mc, &o);
    assert_int_equal(a->n_slab, b->n_slab); // no parameters of its own
    assert_memory_equal(a->params, b->params, a->n_slab * sizeof(float));
    tbatch t;
    tb_make(&t, a, 3, 7, 1);
    size_t n = 3 * a->tok_length, d = a->tok_dim;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_model_forward(a, &t.b, &eb), RD_OK);
    assert_int_equal(rd_model_backward(a, &t.b, &eb), RD_OK);
    float la[3];
    memcpy(la, a->logits_main, sizeof la);
    float *ga = malloc(a->n_slab * sizeof(float));
    assert_non_null(ga);
    memcpy(ga, a->grads, a->n_slab * sizeof(float));
    rd_token_standardize(t.tokens, t.tokens, t.tok_mask, n, d); // in place: row by row
    assert_int_equal(rd_model_forward(b, &t.b, &eb), RD_OK);
    assert_int_equal(rd_model_backward(b, &t.b, &eb), RD_OK);
    for (int i = 0; i < 3; i++)
        assert_float_equal(la[i], b->logits_main[i], 1e-6f);
    for (size_t i = 0; i < a->n_slab; i++)
        assert_float_equal(ga[i], b->grads[i], 1e-6f);
    free(ga);
    tb_free(&t);
    rd_model_destroy(a);
    rd_model_destroy(b);
}

static void test_fd_model_f(void **state) {
    (void)state;
    rd_model_config mc;
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_MEAN, 3);
    fd_model(&mc, 0, 0, 1);
    config_f(&mc, RD_SEQ_DIN, RD_SEQ_MEAN, 5); // the view over the whole history
    fd_model(&mc, 1, 0, 0);
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_MEAN, 4); // liked and disliked events apart
    mc.seq.view_by_label = 1;
    fd_model(&mc, 0, 0, 1);
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_DIN, 3); // a din view (query from the request)
    fd_model(&mc, 0, 0, 1);
    mc.seq.view_by_label = 1;
    fd_model(&mc, 1, 0, 0);
}

// models[].dropout: finite differences of the whole model with fixed masks (a dropout key), the
// masks are a function of the key, a forward without a key is the model without dropout (logits
// and gradients), and dropout without an MLP is refused by name.
static void test_model_dropout(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc);
    mc.dropout = 0.3f;
    // FD is deterministic for a key. With some masks (keys 7, 0x5eed) seq.in.b lands at
    // 1.5-2.7e-3, over the 1e-3 tolerance: the 0.04-0.16 steps through the transformer under
    // 1/(1 - p)-scaled activations, not the dropout path (test_layers checks that at ~1e-5).
    g_dropout_key = 0x5eee;
    fd_model(&mc, 2, 5, 1);
    fd_model(&mc, 2, 5, 2);
    config_b(&mc);
    mc.dropout = 0.5f;
    fd_model(&mc, 0, 3, 1);
    g_dropout_key = 0;

    config_a(&mc);
    rd_model_opts o = opts_for(4, 2, 5);
    rd_model *plain = build(&mc, &o);
    mc.dropout = 0.3f;
    rd_model *m = build(&mc, &o);
    assert_true(m->dropout == 0.3f && plain->dropout == 0.0f);
    assert_int_equal(m->n_slab, plain->n_slab); // no parameter of its own
    assert_memory_equal(m->params, plain->params, m->n_slab * sizeof(float));
    tbatch t;
    tb_make(&t, m, 4, 41, 1);
    float zp[4], z0[4], z1[4], z2[4];
    step(plain, &t.b);
    memcpy(zp, plain->logits_main, sizeof zp);
    step(m, &t.b); // no key: no dropout, the same logits and gradients as the plain model
    memcpy(z0, m->logits_main, sizeof z0);
    assert_memory_equal(zp, z0, sizeof zp);
    assert_memory_equal(m->grads, plain->grads, m->n_slab * sizeof(float));
    t.b.dropout_key = 1;
    step(m, &t.b);
    memcpy(z1, m->logits_main, sizeof z1);
    assert_memory_not_equal(z0, z1, sizeof z0);
    assert_memory_not_equal(m->grads, plain->grads, m->n_slab * sizeof(float));
    step(m, &t.b); // the same key: the same masks
    assert_memory_equal(z1, m->logits_main, sizeof z1);
    t.b.dropout_key = 2;
    step(m, &t.b);
    memcpy(z2, m->logits_main, sizeof z2);
    assert_memory_not_equal(z1, z2, sizeof z1);
    t.b.dropout_key = 0; // and back: the masks of the last training pass are not reused
    step(m, &t.b);
    assert_memory_equal(z0, m->logits_main, sizeof z0);
    assert_memory_equal(m->grads, plain->grads, m->n_slab * sizeof(float));
    tb_free(&t);
    rd_model_destroy(m);
    rd_model_destroy(plain);

    config_c(&mc); // no backbone MLP
    mc.dropout = 0.2f;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    o = opts_for(4, 0, 5);
    assert_int_equal(rd_model_create(&mc, &o, &m, &eb), RD_ERR_CONFIG);
    assert_null(m);
    assert_non_null(strstr(eb.msg, "dropout"));
    assert_non_null(strstr(eb.msg, "needs an mlp"));
    config_a(&mc);
    mc.dropout = 1.0f;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_model_create(&mc, &o, &m, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "dropout 1 not in [0, 1)"));
}

// seq.view_by_label routes a liked event's input to the first half of the view's in-projection
// and a disliked one's to the second. With the transformer's output and the second half's weights
// zeroed, a disliked event's item does not move the logits, a liked event's does.
static void test_seq_view_by_label(void **state) {
    (void)state;
    rd_model_config mc;
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_MEAN, 3);
    mc.seq.view_by_label = 1;
    rd_model_opts o = opts_for(4, 0, 0);
    rd_model *m = build(&mc, &o);
    const rd_model_tensor *w = rd_model_find_tensor(m, "seq_view.in.w");
    assert_non_null(w);
    size_t Dt = m->tables[m->seq_table].dim, C = w->n / (2 * Dt);
    assert_int_equal(w->n, C * 2 * Dt); // (C, 2 D_t)
    const char *zero[2] = {"seq.ra.projw", "seq.ra.projb"};
    for (int k = 0; k < 2; k++) {
        const rd_model_tensor *ts = rd_model_find_tensor(m, zero[k]);
        memset(m->params + ts->offset, 0, ts->n * sizeof(float));
    }
    // Zero the disliked half of the in-projection: a disliked event's item row no longer counts.
    for (size_t c = 0; c < C; c++)
        memset(m->params + w->offset + c * 2 * Dt + Dt, 0, Dt * sizeof(float));
    tbatch t;
    tb_make(&t, m, 4, 33, 0);
    size_t L = m->seq_length;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    float z0[4], z1[4];
    t.seq_labels[2 * L + 1] = 0; // example 2, second most recent event: disliked
    assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
    memcpy(z0, m->logits_main, sizeof z0);
    t.seq_idx[2 * L + 1] = (t.seq_idx[2 * L + 1] + 1) % 7; // another disliked item: no change
    assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
    memcpy(z1, m->logits_main, sizeof z1);
    assert_memory_equal(z0, z1, sizeof z0);
    t.seq_labels[2 * L + 1] = 1; // now liked: its item row and label embedding count
    assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
    memcpy(z0, m->logits_main, sizeof z0);
    t.seq_idx[2 * L + 1] = (t.seq_idx[2 * L + 1] + 1) % 7; // another liked item: a change
    assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
    memcpy(z1, m->logits_main, sizeof z1);
    assert_true(fabsf(z1[2] - z0[2]) > 1e-6f);
    tb_free(&t);
    rd_model_destroy(m);
}

// seq.view reads the view_length MOST RECENT events (positions 0..Lm-1): with the transformer
// branch's output projection zeroed (its output is then 0), the logits do not move when an older
// event changes, and do when a recent one does; without the view they never do.
static void test_seq_view_window(void **state) {
    (void)state;
    for (int with_view = 0; with_view < 3; with_view++) { // none, mean, din
        rd_model_config mc;
        config_f(&mc, RD_SEQ_TRANSFORMER,
                 with_view == 0   ? RD_SEQ_NONE
                 : with_view == 1 ? RD_SEQ_MEAN
                                  : RD_SEQ_DIN,
                 3);
        rd_model_opts o = opts_for(4, 0, 0);
        rd_model *m = build(&mc, &o);
        assert_true((rd_model_find_tensor(m, "seq_view.in.w") != NULL) == (with_view > 0));
        const char *zero[2] = {"seq.ra.projw", "seq.ra.projb"};
        for (int k = 0; k < 2; k++) {
            const rd_model_tensor *ts = rd_model_find_tensor(m, zero[k]);
            assert_non_null(ts);
            memset(m->params + ts->offset, 0, ts->n * sizeof(float));
        }
        tbatch t;
        tb_make(&t, m, 4, 21, 0);
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        float z0[4], z1[4];
        assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
        memcpy(z0, m->logits_main, sizeof z0);
        size_t L = m->seq_length; // example 2: full history of 5 events
        t.seq_idx[2 * L + 4] = (t.seq_idx[2 * L + 4] + 1) % 7; // the oldest event: outside
        t.seq_labels[2 * L + 3] ^= 1;                          // the view (positions 3, 4)
        assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
        memcpy(z1, m->logits_main, sizeof z1);
        assert_memory_equal(z0, z1, sizeof z0);
        t.seq_labels[2 * L + 2] ^= 1; // the third most recent: inside the view
        assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
        memcpy(z1, m->logits_main, sizeof z1);
        if (with_view)
            assert_true(fabsf(z1[2] - z0[2]) > 1e-6f);
        else
            assert_memory_equal(z0, z1, sizeof z0);
        for (int b = 0; b < 4; b++) // the other examples are untouched
            if (b != 2)
                assert_true(z1[b] == z0[b]);
        tb_free(&t);
        rd_model_destroy(m);
    }
}

// tokens.gate starts at 0: the tokens do not change the logits until the gate has learned.
static void test_token_gate_starts_closed(void **state) {
    (void)state;
    rd_model_config mc;
    config_d(&mc, RD_SEQ_DIN);
    mc.tokens.gate = 1;
    rd_model_opts o = opts_for(4, 0, 3);
    rd_model *m = build(&mc, &o);
    tbatch t;
    tb_make(&t, m, 4, 5, 0);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    float z0[4], z1[4];
    assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
    memcpy(z0, m->logits_main, sizeof z0);
    for (size_t i = 0; i < 4 * m->tok_length * m->tok_dim; i++)
        t.tokens[i] = -t.tokens[i] + 0.3f;
    assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
    memcpy(z1, m->logits_main, sizeof z1);
    assert_memory_equal(z0, z1, sizeof z0);
    const rd_model_tensor *gate = rd_model_find_tensor(m, "tok.gate");
    assert_non_null(gate);
    m->params[gate->offset] = 1.0f;
    assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
    assert_true(fabsf(m->logits_main[0] - z0[0]) > 1e-7f);
    tb_free(&t);
    rd_model_destroy(m);
}

static void test_fd_model_c(void **state) {
    (void)state;
    rd_model_config mc;
    config_c(&mc);
    fd_model(&mc, 1, 2, 0);
}

// ---------------------------------------------------------------------------------------------
// Two-tower isolation

static int has_prefix(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

// ---------------------------------------------------------------------------------------------
// Shared history (rd_batch.seq_shared / tok_shared): the serving forward of B candidates of one
// request against the plain forward on B copies of example 0's history and tokens (the naive
// twin: what serving ran before).

// Example 0's history and tokens in `mode` 0: as tb_make made them (full history, the last token
// padded); 1: two events, one token; 2: empty (no valid event, no valid token). Then copied to
// every example.
static void share_example0(tbatch *t, const rd_model *m, int mode) {
    size_t B = t->b.B;
    if (m->seq_table >= 0) {
        size_t L = m->seq_length;
        for (size_t j = 0; j < L; j++)
            if (mode == 2 || (mode == 1 && j >= 2))
                t->seq_idx[j] = -1;
        for (size_t b = 1; b < B; b++) {
            memcpy(t->seq_idx + b * L, t->seq_idx, L * sizeof(int32_t));
            memcpy(t->seq_labels + b * L, t->seq_labels, L);
        }
    }
    if (m->tok_length > 0) {
        size_t L = m->tok_length, d = m->tok_dim, S = m->tok_side;
        for (size_t j = 0; j < L; j++)
            if (mode == 2 || (mode == 1 && j >= 1))
                t->tok_mask[j] = 0;
        for (size_t b = 1; b < B; b++) {
            memcpy(t->tokens + b * L * d, t->tokens, L * d * sizeof(float));
            memcpy(t->tok_mask + b * L, t->tok_mask, L);
            memcpy(t->tok_labels + b * L, t->tok_labels, L);
            if (S)
                memcpy(t->tok_side + b * L * S, t->tok_side, L * S * sizeof(float));
        }
    }
}

// Rows 1.. of the history and token arrays out of range: a shared forward must not read them.
static void spoil_rows(tbatch *t, const rd_model *m, int seq, int tok) {
    size_t B = t->b.B;
    if (seq && m->seq_table >= 0)
        for (size_t i = m->seq_length; i < B * m->seq_length; i++) {
            t->seq_idx[i] = 1 << 30;
            t->seq_labels[i] = 7;
        }
    if (tok && m->tok_length > 0) {
        size_t L = m->tok_length;
        for (size_t i = L * m->tok_dim; i < B * L * m->tok_dim; i++)
            t->tokens[i] = NAN;
        for (size_t i = L; i < B * L; i++)
            t->tok_mask[i] = t->tok_labels[i] = 9;
        for (size_t i = L * m->tok_side; i < B * L * m->tok_side; i++)
            t->tok_side[i] = NAN;
    }
}

// The logits of the shared forward (seq, tok as the flags) vs the plain one; returns the largest
// difference (a few ulp at most: the shared matmuls run on fewer rows).
static double shared_vs_plain(const rd_model_config *mc, const rd_model_opts *o, uint64_t seed) {
    const size_t B = 5;
    rd_model_opts ob = *o;
    ob.max_batch = B;
    rd_model *m = build(mc, &ob);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    double worst = 0.0;
    for (int mode = 0; mode < 3; mode++) {
        for (int flags = 1; flags < 4; flags++) {
            int seq = flags & 1, tok = (flags >> 1) & 1;
            if ((seq && m->seq_table < 0) || (tok && m->tok_length == 0))
                continue;
            tbatch t;
            tb_make(&t, m, B, seed + (uint64_t)mode, 0);
            share_example0(&t, m, mode);
            assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
            float plain[B], plain_aux[B];
            memcpy(plain, m->logits_main, sizeof plain);
            if (m->two_towers)
                memcpy(plain_aux, m->logits_aux, sizeof plain_aux);
            // The shared forward reads row 0 only: spoil the other rows of what it shares, and
            // leave other activations behind (a slip to a stale row of the last forward would
            // read other histories).
            spoil_rows(&t, m, seq, tok);
            tbatch other;
            tb_make(&other, m, B, seed + 99, 0);
            assert_int_equal(rd_model_forward(m, &other.b, &eb), RD_OK);
            tb_free(&other);
            t.b.seq_shared = seq;
            t.b.tok_shared = tok;
            int rc = rd_model_forward(m, &t.b, &eb);
            if (rc != RD_OK)
                fail_msg("%s mode %d flags %d: %s", mc->name, mode, flags, eb.msg);
            for (size_t b = 0; b < B; b++) {
                double dz = fabs((double)m->logits_main[b] - (double)plain[b]);
                if (m->two_towers)
                    dz = fmax(dz, fabs((double)m->logits_aux[b] - (double)plain_aux[b]));
                if (!(dz <= 1e-5 * fmax(1.0, fabs((double)plain[b]))))
                    fail_msg("%s mode %d flags %d: example %zu: shared %.9g vs plain %.9g",
                             mc->name, mode, flags, b, (double)m->logits_main[b], (double)plain[b]);
                worst = fmax(worst, dz);
            }
            // Inference only: no backward after it, and a plain forward allows one again.
            assert_int_equal(rd_model_backward(m, &t.b, &eb), RD_ERR_STATE);
            assert_non_null(strstr(eb.msg, "shared"));
            float dh[B * 64];
            memset(dh, 0, sizeof dh);
            assert_true(rd_model_hidden_dim(m) <= 64);
            assert_int_equal(rd_model_backward_hidden(m, &t.b, dh, &eb), RD_ERR_STATE);
            tb_free(&t);
            tb_make(&t, m, B, seed, 0);
            assert_int_equal(rd_model_forward(m, &t.b, &eb), RD_OK);
            assert_int_equal(rd_model_backward(m, &t.b, &eb), RD_OK);
            tb_free(&t);
        }
    }
    rd_model_destroy(m);
    return worst;
}

// The DIN history branch (config b, with a mean token branch; config d with a din token branch;
// config f with a din view), the transformer history (config a with a din token branch; config
// f with a mean or din view, by label), a mean history with a transformer token branch (config
// c), and the token branch over DIN and transformer with tokens.norm, side values and the
// request_seq query; each with a full, a short and an empty history.
static void test_shared_history(void **state) {
    (void)state;
    rd_model_config mc;
    rd_model_opts o = opts_for(4, 0, 3), o0 = opts_for(4, 0, 0);
    double worst = 0.0;
    config_b(&mc);
    worst = fmax(worst, shared_vs_plain(&mc, &o, 101));
    config_d(&mc, RD_SEQ_DIN);
    worst = fmax(worst, shared_vs_plain(&mc, &o, 102));
    config_d(&mc, RD_SEQ_TRANSFORMER);
    worst = fmax(worst, shared_vs_plain(&mc, &o, 103));
    config_c(&mc);
    worst = fmax(worst, shared_vs_plain(&mc, &o, 104));
    config_f(&mc, RD_SEQ_DIN, RD_SEQ_DIN, 3);
    worst = fmax(worst, shared_vs_plain(&mc, &o0, 105));
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_DIN, 3);
    mc.seq.view_by_label = 1;
    worst = fmax(worst, shared_vs_plain(&mc, &o0, 106));
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_MEAN, 4);
    worst = fmax(worst, shared_vs_plain(&mc, &o0, 107));
    // Token branches with tokens.norm, side values and numeric inputs; the query from
    // [x_req | seq out].
    rd_model_opts os = opts_for(4, 2, 5);
    os.token_side = 2;
    config_a(&mc);
    mc.tokens.norm = 1;
    worst = fmax(worst, shared_vs_plain(&mc, &os, 108));
    os = opts_for(4, 0, 3);
    os.token_side = 1;
    const int kinds[2] = {RD_SEQ_DIN, RD_SEQ_TRANSFORMER};
    for (int k = 0; k < 2; k++) {
        config_d(&mc, kinds[k]);
        mc.tokens.norm = 1;
        worst = fmax(worst, shared_vs_plain(&mc, &os, 109));
        mc.tokens.query = 1;
        worst = fmax(worst, shared_vs_plain(&mc, &os, 110));
    }
    // Causal self-attention in both branches.
    config_d(&mc, RD_SEQ_TRANSFORMER);
    mc.seq.kind = RD_SEQ_TRANSFORMER;
    o.causal = 1;
    worst = fmax(worst, shared_vs_plain(&mc, &o, 111));
    print_message("shared history vs plain: max |logit difference| %.3g\n", worst);
}

// A parameter slab shared by several models (rd_model_opts.shared_params: rd_serve's serving
// threads): the borrowers' forwards equal the owner's bit for bit, whatever their max_batch;
// nothing writes the slab; a borrower has no gradient slab nor backward buffers, refuses a
// backward and an optimizer, and its destroy leaves the slab to its owner.
static void shared_params_case(const rd_model_config *mc, const rd_model_opts *o, uint64_t seed) {
    const size_t B = 4;
    rd_model_opts oo = *o;
    oo.max_batch = B;
    oo.seed = seed;
    rd_model *owner = build(mc, &oo);
    float *before = malloc(owner->n_slab * sizeof(float));
    assert_non_null(before);
    memcpy(before, owner->params, owner->n_slab * sizeof(float));
    rd_model_opts ob = *o;
    ob.max_batch = 7;   // its own activations, of another size
    ob.seed = seed + 1; // unused: the borrowed slab is not initialised
    ob.opt_slots = 0;
    ob.shared_params = owner->params;
    rd_model *a = build(mc, &ob), *b = build(mc, &ob);
    assert_ptr_equal(a->params, owner->params);
    assert_null(a->grads);
    // No backward buffers either: at the owner's max_batch a borrower's activations are fewer.
    rd_model_opts oc = ob;
    oc.max_batch = B;
    rd_model *c = build(mc, &oc);
    assert_true(c->n_acts < owner->n_acts);
    rd_model_destroy(c);
    assert_null(a->opt_state);
    assert_int_equal(a->n_slab, owner->n_slab);
    assert_memory_equal(owner->params, before, owner->n_slab * sizeof(float));
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    tbatch t;
    tb_make(&t, owner, B, seed, 1);
    assert_int_equal(rd_model_forward(owner, &t.b, &eb), RD_OK);
    float ref[B];
    memcpy(ref, owner->logits_main, sizeof ref);
    const double ref_loss = owner->loss;
    // Each borrower's logits and losses are the owner's bit for bit; b runs between a's forward
    // and the read of a's logits, which stay in a's own activations.
    assert_int_equal(rd_model_forward(a, &t.b, &eb), RD_OK);
    assert_int_equal(rd_model_forward(b, &t.b, &eb), RD_OK);
    assert_memory_equal(a->logits_main, ref, sizeof ref);
    assert_memory_equal(b->logits_main, ref, sizeof ref);
    assert_true(a->loss == ref_loss && b->loss == ref_loss);
    // Inference only: no backward (it would write the gradient slab it does not have).
    assert_int_equal(rd_model_backward(a, &t.b, &eb), RD_ERR_STATE);
    assert_non_null(strstr(eb.msg, "shared parameter slab"));
    float dh[B * 64];
    memset(dh, 0, sizeof dh);
    assert_true(rd_model_hidden_dim(a) <= 64);
    assert_int_equal(rd_model_forward(a, &t.b, &eb), RD_OK);
    assert_int_equal(rd_model_backward_hidden(a, &t.b, dh, &eb), RD_ERR_STATE);
    assert_memory_equal(owner->params, before, owner->n_slab * sizeof(float));
    // A borrower's destroy leaves the slab: the owner still scores the same, and trains.
    rd_model_destroy(a);
    rd_model_destroy(b);
    assert_memory_equal(owner->params, before, owner->n_slab * sizeof(float));
    assert_int_equal(rd_model_forward(owner, &t.b, &eb), RD_OK);
    assert_memory_equal(owner->logits_main, ref, sizeof ref);
    assert_int_equal(rd_model_backward(owner, &t.b, &eb), RD_OK);
    // An optimizer over a slab the model may not write is refused.
    ob.opt_slots = 2;
    rd_model *bad = (rd_model *)&eb;
    assert_int_equal(rd_model_create(mc, &ob, &bad, &eb), RD_ERR_ARG);
    assert_null(bad);
    assert_non_null(strstr(eb.msg, "shared parameter slab"));
    tb_free(&t);
    free(before);
    rd_model_destroy(owner);
}

static void test_shared_params(void **state) {
    (void)state;
    rd_model_config mc;
    rd_model_opts o = opts_for(4, 0, 3);
    config_a(&mc);
    shared_params_case(&mc, &o, 201);
    config_b(&mc);
    shared_params_case(&mc, &o, 202);
    config_c(&mc);
    shared_params_case(&mc, &o, 203);
    config_d(&mc, RD_SEQ_TRANSFORMER);
    shared_params_case(&mc, &o, 204);
    // The other branch shapes, none of whose forwards may use a backward buffer: a din token
    // branch with the request_seq query, norm and the gate; history views; side values.
    config_d(&mc, RD_SEQ_DIN);
    mc.tokens.query = 1;
    mc.tokens.norm = 1;
    mc.tokens.gate = 1;
    shared_params_case(&mc, &o, 205);
    rd_model_opts o0 = opts_for(4, 0, 0);
    config_f(&mc, RD_SEQ_DIN, RD_SEQ_DIN, 3);
    shared_params_case(&mc, &o0, 206);
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_MEAN, 4);
    mc.seq.view_by_label = 1;
    shared_params_case(&mc, &o0, 207);
    rd_model_opts os = opts_for(4, 2, 5);
    os.token_side = 2;
    config_a(&mc);
    mc.tokens.norm = 1;
    shared_params_case(&mc, &os, 208);
}

static void test_two_tower_isolation(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc);
    rd_model_opts o = opts_for(4, 2, 5);
    rd_model *m = build(&mc, &o);
    tbatch t;
    tb_make(&t, m, 4, 3, 1);

    // Forward view: the aux loss does not depend on any main-tower parameter at all.
    fwd_loss(m, &t.b);
    double aux0 = m->loss_aux, main0 = m->loss_main;
    int n_main = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (has_prefix(m->tensors[i].name, "tower_main.")) {
            n_main++;
            float *x = m->params + m->tensors[i].offset;
            for (size_t k = 0; k < m->tensors[i].n; k++)
                x[k] += 0.3f;
        }
    assert_true(n_main >= 4);
    fwd_loss(m, &t.b);
    assert_true(m->loss_aux == aux0); // bitwise
    assert_true(m->loss_main != main0);

    // Backward view: the main tower's gradients are bitwise the same whatever the teacher sends
    // (no target, normal targets, extreme targets with a large alpha), while the aux tower and
    // the shared backbone do see the teacher.
    float *g0 = malloc(m->n_slab * sizeof(float));
    assert_non_null(g0);
    t.b.teacher_logits = NULL;
    step(m, &t.b);
    memcpy(g0, m->grads, m->n_slab * sizeof(float));
    float extreme[4] = {80.0f, -80.0f, 50.0f, -3.0f};
    uint8_t all[4] = {1, 1, 1, 1};
    for (int v = 0; v < 3; v++) { // v = 2: the extreme targets through the calibration
        t.b.teacher_logits = v == 0 ? t.teacher : extreme;
        t.b.has_target = v == 0 ? t.has_target : all;
        t.b.alpha = v == 0 ? 0.7f : 50.0f;
        t.b.temperature = v == 0 ? 2.0f : 0.5f;
        t.b.calib = v == 2 ? &k_calib : NULL;
        step(m, &t.b);
        for (int i = 0; i < m->n_tensors; i++) {
            const rd_model_tensor *ts = &m->tensors[i];
            int same = memcmp(g0 + ts->offset, m->grads + ts->offset, ts->n * sizeof(float)) == 0;
            if (has_prefix(ts->name, "tower_main."))
                assert_true(same);
            if (strcmp(ts->name, "tower_aux.l0.w") == 0 || strcmp(ts->name, "backbone.l0.w") == 0)
                assert_false(same);
        }
    }
    free(g0);
    tb_free(&t);
    rd_model_destroy(m);
}

// ---------------------------------------------------------------------------------------------
// Overfit a tiny batch

static void test_overfit(void **state) {
    (void)state;
    rd_model_config mc;
    mc_defaults(&mc, "tiny");
    add_feature(&mc, "user", "t_wide", RD_POOL_MEAN);
    add_feature(&mc, "item", "t_item", RD_POOL_MEAN);
    mc.seq = (rd_seq_config){
        .kind = RD_SEQ_TRANSFORMER, .length = 4, .layers = 1, .heads = 2, .with_labels = 1};
    mc.n_mlp = 2;
    mc.mlp[0] = 32;
    mc.mlp[1] = 16;
    rd_model_opts o = opts_for(16, 1, 0);
    rd_model *m = build(&mc, &o);
    tbatch t;
    tb_make(&t, m, 16, 11, 0);
    // Distinct rows per example so that the labels can be memorised from the inputs.
    for (size_t i = 0; i < 16; i++)
        t.labels[i] = (float)((i * 7 + 3) % 2);
    rd_train_config tc = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    snprintf(tc.optimizer, sizeof tc.optimizer, "adam");
    rd_dense_optim opt;
    assert_int_equal(rd_dense_optim_init(&opt, &tc, NULL), RD_OK);
    double first = 0.0;
    for (int it = 0; it < 300; it++) {
        step(m, &t.b);
        if (it == 0)
            first = m->loss;
        rd_dense_optim_step(&opt, m->params, m->grads, m->opt_state, m->n_slab);
    }
    double last = fwd_loss(m, &t.b);
    print_message("overfit: loss %.4f -> %.6f after 300 Adam steps\n", first, last);
    assert_true(first > 0.5);
    assert_true(last < 1e-2);
    tb_free(&t);
    rd_model_destroy(m);
}

// ---------------------------------------------------------------------------------------------
// Structure: prefix batches, determinism, counts, allocation-free steps, OOM injection

static void test_prefix_and_determinism(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc);
    rd_model_opts o = opts_for(6, 2, 5);
    rd_model *m1 = build(&mc, &o), *m2 = build(&mc, &o);
    assert_int_equal(m1->n_slab, m2->n_slab);
    assert_memory_equal(m1->params, m2->params, m1->n_slab * sizeof(float));
    size_t sum = 0;
    for (int i = 0; i < m1->n_tensors; i++) {
        sum += m1->tensors[i].n;
        assert_true(m1->tensors[i].offset % 16 == 0);
        assert_non_null(rd_model_find_tensor(m1, m1->tensors[i].name));
    }
    assert_int_equal(sum, rd_model_param_count(m1));
    assert_null(rd_model_find_tensor(m1, "nope"));
    // The logits of the first 3 examples do not depend on the rest of the batch.
    tbatch t;
    tb_make(&t, m1, 6, 21, 1);
    assert_int_equal(fwd_loss(m1, &t.b) == fwd_loss(m1, &t.b), 1);
    float z6[6];
    memcpy(z6, m1->logits_main, sizeof z6);
    t.b.B = 3;
    fwd_loss(m2, &t.b);
    // Within rounding, not bitwise: OpenBLAS kernels (e.g. Haswell's) block sgemm by the row count,
    // so the same row may be summed in another order when B changes.
    for (int i = 0; i < 3; i++)
        assert_true(fabsf(z6[i] - m2->logits_main[i]) <= 1e-5f * (1.0f + fabsf(z6[i])));
    // Backward on a different B than the last forward is refused.
    t.b.B = 6;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_model_backward(m2, &t.b, &eb), RD_ERR_STATE);
    tb_free(&t);
    rd_model_destroy(m1);
    rd_model_destroy(m2);
}

static void test_flops(void **state) {
    (void)state;
    // x_req (E = 4 + 4) -> mlp [5] -> tower -> 1: forward 2 (8*5 + 5*1) per example; the backward
    // doubles every matmul (the embeddings need the input gradient).
    rd_model_config mc;
    mc_defaults(&mc, "flat");
    add_feature(&mc, "user", "t_user", RD_POOL_MEAN);
    add_feature(&mc, "item", "t_item", RD_POOL_MEAN);
    mc.n_mlp = 1;
    mc.mlp[0] = 5;
    rd_model_opts o = opts_for(2, 0, 0);
    rd_model *m = build(&mc, &o);
    double f, b;
    rd_model_flops(m, &f, &b);
    assert_true(f == 2.0 * (8 * 5 + 5 * 1));
    assert_true(b == 2.0 * f);
    assert_int_equal(rd_model_param_count(m), 8 * 5 + 5 + 5 + 1);
    rd_model_destroy(m);
    // Transformer branch: the attention term 4 L^2 C per block is in.
    mc.seq = (rd_seq_config){
        .kind = RD_SEQ_TRANSFORMER, .length = 8, .layers = 1, .heads = 2, .with_labels = 1};
    m = build(&mc, &o);
    double f2;
    rd_model_flops(m, &f2, NULL);
    double C = 4, L = 8, E = 8;
    double want = 2.0 * (8 * 5 + 5 * 1) - 2.0 * 8 * 5 + 2.0 * (12 * 5)     // backbone input 8 -> 12
                  + 2 * L * 4 * C                                          // in-projection
                  + 2 * L * C * 3 * C + 4 * L * L * C + 2 * L * C * C      // qkv, attention, proj
                  + 2 * L * C * 4 * C * 2                                  // FFN
                  + 2 * E * C + 2 * L * C * 2 * C + 4 * L * C + 2 * C * C; // request attention
    assert_true(fabs(f2 - want) < 1e-9);
    rd_model_destroy(m);
}

// Counting allocator: counts calls and live blocks; can fail after a budget of allocations.
static long n_alloc_calls, n_live, fail_after = -1;

static void *count_malloc(size_t n) {
    n_alloc_calls++;
    if (fail_after >= 0 && n_alloc_calls > fail_after)
        return NULL;
    void *p = malloc(n);
    if (p)
        n_live++;
    return p;
}
static void *count_realloc(void *p, size_t n) {
    n_alloc_calls++;
    if (fail_after >= 0 && n_alloc_calls > fail_after)
        return NULL;
    void *q = realloc(p, n);
    if (q && !p)
        n_live++;
    return q;
}
static void count_free(void *p) {
    if (p)
        n_live--;
    free(p);
}
static const rd_allocator counting = {count_malloc, count_realloc, count_free};

static void test_no_alloc_in_step(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc);
    rd_model_opts o = opts_for(4, 2, 5);
    rd_alloc_set(&counting);
    n_alloc_calls = n_live = 0;
    fail_after = -1;
    rd_model *m = build(&mc, &o);
    tbatch t;
    tb_make(&t, m, 4, 8, 1);
    long before = n_alloc_calls;
    for (int i = 0; i < 3; i++)
        step(m, &t.b);
    assert_int_equal(n_alloc_calls, before);
    rd_model_destroy(m);
    assert_int_equal(n_live, 0);
    rd_alloc_set(NULL);
    tb_free(&t);
}

static void test_oom_injection(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc);
    rd_model_opts o = opts_for(4, 2, 5);
    rd_alloc_set(&counting);
    int failures = 0;
    for (long budget = 0; budget < 64; budget++) {
        n_alloc_calls = n_live = 0;
        fail_after = budget;
        rd_model *m = NULL;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int rc = rd_model_create(&mc, &o, &m, &eb);
        if (rc == RD_OK) {
            rd_model_destroy(m);
            assert_int_equal(n_live, 0);
            break;
        }
        failures++;
        assert_int_equal(rc, RD_ERR_NOMEM);
        assert_null(m);
        assert_int_equal(n_live, 0);
        assert_non_null(strstr(eb.msg, "model 'a'"));
    }
    fail_after = -1;
    rd_alloc_set(NULL);
    assert_true(failures >= 3); // every allocation of create was made to fail once
}

// ---------------------------------------------------------------------------------------------
// Errors: configs and batches

static void
expect_config_error(const rd_model_config *mc, const rd_model_opts *o, const char *needle) {
    rd_model *m = (rd_model *)1;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_model_create(mc, o, &m, &eb);
    assert_int_equal(rc, RD_ERR_CONFIG);
    assert_null(m);
    if (!strstr(eb.msg, needle))
        fail_msg("expected '%s' in the error, got '%s'", needle, eb.msg);
}

static void test_config_errors(void **state) {
    (void)state;
    rd_model_config mc;
    rd_model_opts o = opts_for(4, 2, 5);
    config_a(&mc);
    snprintf(mc.features[1].table, sizeof mc.features[1].table, "t_missing");
    expect_config_error(&mc, &o, "table 't_missing' is not in ps.tables");
    config_a(&mc);
    mc.seq.heads = 4; // width 6
    expect_config_error(&mc, &o, "seq.heads: 4 does not divide the branch width 6");
    config_a(&mc);
    snprintf(mc.activation, sizeof mc.activation, "tanh");
    expect_config_error(&mc, &o, "activation 'tanh'");
    config_a(&mc);
    mc.n_features = 0;
    expect_config_error(&mc, &o, "seq.table is empty and no feature embeds 'item'");
    config_a(&mc);
    mc.tokens.kind = RD_SEQ_NONE;
    expect_config_error(&mc, &o, "tokens.kind none");
    config_a(&mc);
    mc.tokens.query = 1;
    mc.seq.kind = RD_SEQ_NONE;
    expect_config_error(&mc, &o, "tokens.query request_seq reads the item-ID history");
    config_a(&mc);
    mc.tokens.query = 1;
    mc.tokens.kind = RD_SEQ_MEAN;
    expect_config_error(&mc, &o, "tokens.query request_seq with tokens.kind mean");
    config_a(&mc);
    rd_model_opts o0 = opts_for(4, 2, 0);
    expect_config_error(&mc, &o0, "token dim is 0");
    config_a(&mc);
    mc.mlp[1] = 0;
    expect_config_error(&mc, &o, "mlp[1] = 0");
    config_a(&mc);
    rd_model_opts ob = opts_for(0, 2, 5);
    expect_config_error(&mc, &ob, "max batch size");
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_MEAN, 6);
    expect_config_error(&mc, &o, "seq.view_length 6 not in 1..seq.length (5)");
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_TRANSFORMER, 3);
    expect_config_error(&mc, &o, "seq.view 3 is not mean|din");
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_NONE, 3);
    mc.seq.view_by_label = 1;
    expect_config_error(&mc, &o, "seq.view_by_label without seq.view");
    config_f(&mc, RD_SEQ_TRANSFORMER, RD_SEQ_MEAN, 3);
    mc.seq.view_by_label = 1;
    mc.seq.with_labels = 0;
    expect_config_error(&mc, &o, "seq.view_by_label needs seq.with_labels");
    config_f(&mc, RD_SEQ_NONE, RD_SEQ_MEAN, 3);
    expect_config_error(&mc, &o, "seq.view without a seq branch");
    mc_defaults(&mc, "empty");
    rd_model_opts oe = opts_for(4, 0, 0);
    expect_config_error(&mc, &oe, "empty backbone input");
}

static void expect_batch_error(rd_model *m, const rd_batch *b, int code, const char *needle) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_model_forward(m, b, &eb);
    assert_int_equal(rc, code);
    if (!strstr(eb.msg, needle))
        fail_msg("expected '%s' in the error, got '%s'", needle, eb.msg);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_model_backward(m, b, &eb), RD_ERR_STATE); // nothing was computed
}

static void test_batch_errors(void **state) {
    (void)state;
    rd_model_config mc;
    config_a(&mc);
    rd_model_opts o = opts_for(4, 2, 5);
    rd_model *m = build(&mc, &o);
    tbatch t;
    tb_make(&t, m, 4, 5, 1);
    rd_batch b = t.b;
    b.B = 5;
    expect_batch_error(m, &b, RD_ERR_ARG, "B = 5 not in 1..4");
    t.feat_idx[2][4] = 7; // U = 7
    expect_batch_error(m, &t.b, RD_ERR_RANGE,
                       "feature 'genre' (table 't_genre'): example 1 slot 1: row 7 not in [-1, 7)");
    t.feat_idx[2][4] = -2;
    expect_batch_error(m, &t.b, RD_ERR_RANGE, "row -2");
    t.feat_idx[2][4] = 0;
    t.seq_idx[3] = 100;
    expect_batch_error(m, &t.b, RD_ERR_RANGE, "seq_idx (table 't_item')");
    t.seq_idx[3] = 0;
    t.seq_labels[2] = 2;
    expect_batch_error(m, &t.b, RD_ERR_RANGE, "seq_labels[2] = 2");
    t.seq_labels[2] = 1;
#ifndef NDEBUG // the bulk NaN scans are debug-only (rd_model_check_batch)
    t.tokens[5] = NAN;
    expect_batch_error(m, &t.b, RD_ERR_RANGE, "tokens[5] is not finite");
    t.tokens[5] = 0.0f;
#endif
    t.labels[3] = 1.5f;
    expect_batch_error(m, &t.b, RD_ERR_RANGE, "labels[3] = 1.5");
    t.labels[3] = 1.0f;
    t.teacher[0] = INFINITY;
    expect_batch_error(m, &t.b, RD_ERR_RANGE, "teacher_logits[0]");
    t.has_target[0] = 0; // a non-finite logit without a target is fine
    step(m, &t.b);
    assert_true(isfinite(m->loss));
    for (size_t i = 0; i < m->n_slab; i++)
        assert_true(isfinite(m->grads[i]));
    // NaN too, the value a missing target's slot may hold: its weight is 0, and 0 * NaN is NaN,
    // so the backward must skip the example, not multiply (an infinite logit alone would not show
    // it: sigma(inf) = 1 is finite).
    t.teacher[0] = NAN;
    step(m, &t.b);
    assert_true(isfinite(m->loss));
    for (size_t i = 0; i < m->n_slab; i++)
        assert_true(isfinite(m->grads[i]));
    t.has_target[0] = 1;
    t.teacher[0] = 0.0f;
    b = t.b;
    b.temperature = 0.0f;
    expect_batch_error(m, &b, RD_ERR_RANGE, "temperature");
    b = t.b;
    const rd_debias bad_calib = {.r_s = 0.0, .p_x = 1.0, .r_plus = 1.0, .b_s = 0.0};
    b.calib = &bad_calib; // f would not be a probability
    expect_batch_error(m, &b, RD_ERR_ARG, "calib: debias: r_s = 0");
    b = t.b;
    b.numeric = NULL;
    expect_batch_error(m, &b, RD_ERR_ARG, "numeric is NULL");
    b = t.b;
    b.tok_mask = NULL;
    expect_batch_error(m, &b, RD_ERR_ARG, "token branch");
    b = t.b;
#ifndef NDEBUG
    t.rows[1][0] = NAN;
    expect_batch_error(m, &b, RD_ERR_RANGE, "rows of table 't_item'");
    t.rows[1][0] = 0.0f;
#endif
    b.labels = NULL;
    expect_batch_error(m, &b, RD_ERR_ARG, "labels is NULL");
    // A valid batch still works afterwards, and backward without a forward is refused.
    step(m, &t.b);
    rd_model_destroy(m);
    m = build(&mc, &o);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_model_backward(m, &t.b, &eb), RD_ERR_STATE);
    rd_model_destroy(m);
    tb_free(&t);
}

// ---------------------------------------------------------------------------------------------
// A model described in YAML

static const char YAML[] = "cluster:\n"
                           "  jobs:\n"
                           "    - {name: teacher, role: teacher, model: teacher}\n"
                           "ps:\n"
                           "  tables:\n"
                           "    - {name: t_user, dim: 8}\n"
                           "    - {name: t_item, dim: 8}\n"
                           "models:\n"
                           "  - name: teacher\n"
                           "    features:\n"
                           "      - {field: user, table: t_user}\n"
                           "      - {field: item, table: t_item}\n"
                           "    seq: {kind: transformer, length: 8, layers: 2, heads: 2}\n"
                           "    mlp: [16, 8]\n"
                           "    activation: gelu\n"
                           "data:\n"
                           "  history_max: 8\n";

static void test_from_yaml(void **state) {
    (void)state;
    static rd_config cfg; // large: keep it off the stack
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_config_parse_string(YAML, sizeof YAML - 1, "test.yaml", &cfg, &eb);
    if (rc != RD_OK)
        fail_msg("config: %s", eb.msg);
    const rd_model_config *mc = rd_config_find_model(&cfg, "teacher");
    assert_non_null(mc);
    rd_model_opts o = {.tables = cfg.ps.tables,
                       .n_tables = cfg.ps.n_tables,
                       .max_batch = 8,
                       .opt_slots = 2,
                       .seed = cfg.run.seed};
    rd_model *m = build(mc, &o);
    assert_int_equal(m->n_tables, 2);
    assert_int_equal(m->seq_table, 1); // the item's table by default
    assert_int_equal(m->seq_length, 8);
    assert_non_null(rd_model_find_tensor(m, "seq.block1.fcprojw"));
    tbatch t;
    tb_make(&t, m, 8, 1, 0);
    step(m, &t.b);
    assert_true(isfinite(m->loss) && m->loss > 0.0);
    tb_free(&t);
    rd_model_destroy(m);
}

// ---------------------------------------------------------------------------------------------
// Dense optimizers

static void test_dense_optim(void **state) {
    (void)state;
    rd_train_config tc = {
        .lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.5f};
    rd_dense_optim o;
    rd_errbuf eb;
    snprintf(tc.optimizer, sizeof tc.optimizer, "rmsprop");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_dense_optim_init(&o, &tc, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "'rmsprop' is not sgd|adam|adamw"));
    snprintf(tc.optimizer, sizeof tc.optimizer, "adam");
    tc.lr = 0.0f;
    assert_int_equal(rd_dense_optim_init(&o, &tc, NULL), RD_ERR_CONFIG);
    tc.lr = 0.1f;
    assert_int_equal(rd_dense_optim_slots(RD_DENSE_SGD), 0);
    assert_int_equal(rd_dense_optim_slots(RD_DENSE_ADAMW), 2);

    // SGD with L2: p -= lr (g + wd p).
    snprintf(tc.optimizer, sizeof tc.optimizer, "sgd");
    assert_int_equal(rd_dense_optim_init(&o, &tc, NULL), RD_OK);
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.25f}, st[4] = {0};
    rd_dense_optim_step(&o, p, g, NULL, 2);
    assert_true(fabsf(p[0] - (1.0f - 0.1f * (0.5f + 0.5f))) < 1e-7f);
    assert_true(fabsf(p[1] - (-2.0f - 0.1f * (0.25f - 1.0f))) < 1e-7f);

    // Adam's first step moves every parameter by lr in the direction of -(g + wd p).
    snprintf(tc.optimizer, sizeof tc.optimizer, "adam");
    assert_int_equal(rd_dense_optim_init(&o, &tc, NULL), RD_OK);
    p[0] = 1.0f;
    p[1] = -2.0f;
    rd_dense_optim_step(&o, p, g, st, 2);
    assert_true(fabsf(p[0] - 0.9f) < 1e-6f); // g + wd p = 1.0 > 0
    assert_true(fabsf(p[1] + 1.9f) < 1e-6f); // g + wd p = -0.75 < 0
    assert_int_equal(o.t, 1);

    // AdamW: the decay is outside the moments: first step = lr (sign(g) + wd p).
    snprintf(tc.optimizer, sizeof tc.optimizer, "adamw");
    assert_int_equal(rd_dense_optim_init(&o, &tc, NULL), RD_OK);
    memset(st, 0, sizeof st);
    p[0] = 1.0f;
    p[1] = -2.0f;
    rd_dense_optim_step(&o, p, g, st, 2);
    assert_true(fabsf(p[0] - (1.0f - 0.1f * (1.0f + 0.5f))) < 1e-6f);
    assert_true(fabsf(p[1] - (-2.0f - 0.1f * (1.0f - 1.0f))) < 1e-6f);

    // Adam converges on a quadratic: minimise sum (p - 3)^2.
    tc.weight_decay = 0.0f;
    tc.lr = 0.05f;
    snprintf(tc.optimizer, sizeof tc.optimizer, "adam");
    assert_int_equal(rd_dense_optim_init(&o, &tc, NULL), RD_OK);
    memset(st, 0, sizeof st);
    p[0] = 0.0f;
    p[1] = 10.0f;
    for (int it = 0; it < 2000; it++) {
        g[0] = 2.0f * (p[0] - 3.0f);
        g[1] = 2.0f * (p[1] - 3.0f);
        rd_dense_optim_step(&o, p, g, st, 2);
    }
    assert_true(fabsf(p[0] - 3.0f) < 1e-2f && fabsf(p[1] - 3.0f) < 1e-2f);
}

// Two steps of Adam and AdamW against values computed by hand (in double, from the formulas of
// rd/dense_optim.h) with eps = 0.1, so that its placement outside the square root, the bias
// corrections at t = 2 and where the weight decay enters all show; test_dense_optim's eps = 1e-8
// and first step (a move of exactly lr) cannot tell these apart.
static void test_dense_adam_reference(void **state) {
    (void)state;
    rd_train_config tc = {
        .lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 0.1f, .weight_decay = 0.5f};
    // [kind][step][param]: lr 0.1, p0 = (1, -2), g = (0.5, 0.25) then (-0.25, 0.75).
    const double want[2][2][2] = {
        {{0.9090909090909091, -1.911764705882353}, {0.8383322854074317, -1.840419604919218}},
        {{0.8666666666666667, -1.9714285714285715}, {0.8020777268970087, -1.9507111012394582}}};
    const float g[2][2] = {{0.5f, 0.25f}, {-0.25f, 0.75f}};
    for (int k = 0; k < 2; k++) {
        snprintf(tc.optimizer, sizeof tc.optimizer, "%s", k ? "adamw" : "adam");
        rd_dense_optim o;
        assert_int_equal(rd_dense_optim_init(&o, &tc, NULL), RD_OK);
        float p[2] = {1.0f, -2.0f}, st[4] = {0};
        for (int t = 0; t < 2; t++) {
            rd_dense_optim_step(&o, p, g[t], st, 2);
            for (int i = 0; i < 2; i++)
                if (!(fabs((double)p[i] - want[k][t][i]) < 1e-6))
                    fail_msg("%s step %d p[%d] = %.9g, want %.9g", tc.optimizer, t + 1, i,
                             (double)p[i], want[k][t][i]);
        }
    }
}

// A finite gradient beyond ~1.8e19 overflowed Adam's v * 1 / (1 - b2^t) in float (1e20 at t = 1),
// or v itself (1e30, FLT_MAX): the step was 0, and an inf v froze the parameter for good and made
// the training checkpoint refuse it ("optimizer slot 1 ... is inf"). Adam's step is about lr
// whatever the scale of g: lr, then after g = -1 that of a g of 2^63 (the clip, as on the PS):
// m = 0.09*2^63 - 0.1, v = 0.000999*2^126 + 0.001, p = 0.99 - 0.01*(m/0.19)/sqrt(v/0.001999)
// = 0.983299417; AdamW with weight_decay 0.5 adds 0.01*0.5*p to each step: 0.985, 0.973374417.
static void test_dense_adam_huge_gradient(void **state) {
    (void)state;
    rd_train_config tc = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    const double want[2][2] = {{0.99, 0.9832994174586346}, {0.985, 0.9733744174586346}};
    for (int kind = 0; kind < 2; kind++) {
        snprintf(tc.optimizer, sizeof tc.optimizer, "%s", kind ? "adamw" : "adam");
        tc.weight_decay = kind ? 0.5f : 0.0f;
        rd_dense_optim o;
        assert_int_equal(rd_dense_optim_init(&o, &tc, NULL), RD_OK);
        float p[4] = {1.0f, 1.0f, 1.0f, 1.0f}, st[8] = {0};
        float g[4] = {1e20f, 1e30f, FLT_MAX, 0.5f};
        rd_dense_optim_step(&o, p, g, st, 4);
        for (int i = 0; i < 4; i++)
            g[i] = -1.0f;
        for (int i = 0; i < 3; i++)
            assert_true(fabs((double)p[i] - want[kind][0]) < 1e-6);
        rd_dense_optim_step(&o, p, g, st, 4);
        for (int i = 0; i < 3; i++) {
            if (fabs((double)p[i] - want[kind][1]) > 1e-6)
                fail_msg("%s, g %d: p = %.9g, expected %.9g", tc.optimizer, i, (double)p[i],
                         want[kind][1]);
            assert_true(isfinite(st[i]) && isfinite(st[4 + i]));
        }
    }
    // A non-finite gradient still gives a non-finite parameter (the loss check reports it).
    snprintf(tc.optimizer, sizeof tc.optimizer, "adam");
    rd_dense_optim o;
    assert_int_equal(rd_dense_optim_init(&o, &tc, NULL), RD_OK);
    float p[2] = {1.0f, 1.0f}, st[4] = {0}, g[2] = {INFINITY, NAN};
    rd_dense_optim_step(&o, p, g, st, 2);
    assert_false(isfinite(p[0]));
    assert_false(isfinite(p[1]));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_model_a),
        cmocka_unit_test(test_fd_model_token_side),
        cmocka_unit_test(test_fd_model_b),
        cmocka_unit_test(test_fd_model_c),
        cmocka_unit_test(test_fd_model_d),
        cmocka_unit_test(test_fd_model_e),
        cmocka_unit_test(test_fd_token_query_seq),
        cmocka_unit_test(test_fd_model_f),
        cmocka_unit_test(test_model_dropout),
        cmocka_unit_test(test_nan_param_reaches_loss),
        cmocka_unit_test(test_token_norm),
        cmocka_unit_test(test_token_label_none),
        cmocka_unit_test(test_distill_calibrated_loss),
        cmocka_unit_test(test_seq_view_window),
        cmocka_unit_test(test_seq_view_by_label),
        cmocka_unit_test(test_token_gate_starts_closed),
        cmocka_unit_test(test_shared_history),
        cmocka_unit_test(test_shared_params),
        cmocka_unit_test(test_two_tower_isolation),
        cmocka_unit_test(test_overfit),
        cmocka_unit_test(test_prefix_and_determinism),
        cmocka_unit_test(test_flops),
        cmocka_unit_test(test_no_alloc_in_step),
        cmocka_unit_test(test_oom_injection),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_from_yaml),
        cmocka_unit_test(test_dense_optim),
        cmocka_unit_test(test_dense_adam_reference),
        cmocka_unit_test(test_dense_adam_huge_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
