// test_source.c — unit tests of rd/source.h, the IAT source model (stage 1).
//
// - Kernels: bottleneck and causal SIT, BLAS vs naive twins (forward and backward) and
//   finite-difference gradients (fp32, norm-wise relative error < 1e-3).
// - Causality: a SIT output at position i never depends on an input at j > i (forward values
//   and backward gradients), while it does depend on j <= i (the test can fail).
// - The whole source model: FD over every tensor of both slabs and the pulled rows, on a batch
//   with several groups, frozen previous tokens and loss weights (the frozen tokens are held
//   constant, so the check also proves that no gradient is routed to or through them).
// - Streaming == batch: a group of T new instances and the same last instance with the first
//   T - 1 tokens given frozen produce the same token and logit; with the loss on the last
//   instance only, head/decompress/SIT gradients agree and the bottleneck/backbone ones differ
//   exactly because batch mode also differentiates the earlier tokens. prev_tokens is never
//   written.
// - Temporal scheme == user order with T = 1 (and no SIT): same tensors, bitwise same outputs
//   and gradients; with a SIT the stored (pre-SIT) tokens are still the temporal ones.
// - No allocation in forward/backward; clear errors for bad configs and bad batches.
// - Driver: rd_source_train_range on a tiny synthetic dataset (rd_dataset_prepare into a temp
//   dir), time and user order, both schemes: a token for every event, fetch(user, t, L) never
//   returns a record at or after t and returns exactly the user's earlier events.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/layers.h"
#include "rd/model.h"
#include "rd/rng.h"
#include "rd/source.h"
#include "rd/tokens.h"
#include "tmp_root.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Finite differences (generic over a loss closure)

#define FD_TOL    1e-3
#define FD_PROBES 24
#define FD_FLOOR  3e-3 // see test_model.c: the fp32 resolution of a whole-model loss

typedef double (*loss_fn)(void *ctx);

static double central(loss_fn f, void *ctx, float *x, float h) {
    float orig = *x, xp = orig + h, xm = orig - h;
    *x = xp;
    double lp = f(ctx);
    *x = xm;
    double lm = f(ctx);
    *x = orig;
    return (lp - lm) / ((double)xp - (double)xm);
}

// Candidate steps: the pair (h, h/2) whose two central differences agree best wins (small steps
// lose to rounding noise, large ones to truncation). Tests through the SIT add smaller steps:
// its layer norms act on d-wide tokens of small spread, where the curvature is high.
static const float FD_STEPS_DEFAULT[] = {0.04f, 0.16f};
static const float FD_STEPS_SIT[] = {0.0025f, 0.01f, 0.04f, 0.16f};
static const float *g_steps = FD_STEPS_DEFAULT;
static int g_nsteps = 2;

static double fd_element(loss_fn f, void *ctx, float *x) {
    double best = 0.0, best_err = (double)INFINITY;
    const float *hs = g_steps;
    for (int k = 0; k < g_nsteps; k++) {
        double d1 = central(f, ctx, x, hs[k]), d2 = central(f, ctx, x, 0.5f * hs[k]);
        double err = fabs(d1 - d2);
        if (err < best_err) {
            best_err = err;
            best = (4.0 * d2 - d1) / 3.0;
        }
    }
    return best;
}

// Norm-wise relative error over up to FD_PROBES elements; -1 when both are zero there.
static double fd_tensor(loss_fn f, void *ctx, float *x, const float *g, size_t n, rd_rng *r) {
    double num = 0.0, dfd = 0.0, dan = 0.0;
    size_t probes = n < FD_PROBES ? n : FD_PROBES;
    for (size_t p = 0; p < probes; p++) {
        size_t i = n <= FD_PROBES ? p : (size_t)rd_rng_below(r, n);
        double fd = fd_element(f, ctx, &x[i]);
        double an = (double)g[i];
        num += (fd - an) * (fd - an);
        dfd += fd * fd;
        dan += an * an;
    }
    double den = sqrt(dfd > dan ? dfd : dan);
    if (den < 1e-9)
        return -1.0;
    double floor = FD_FLOOR * sqrt((double)probes);
    return sqrt(num) / (den > floor ? den : floor);
}

static float *randv(size_t n, rd_rng *r, float scale) {
    float *x = calloc(n > 0 ? n : 1, sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)rd_rng_normal(r);
    return x;
}

static float *zerov(size_t n) {
    float *x = calloc(n > 0 ? n : 1, sizeof(float));
    assert_non_null(x);
    return x;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        num += e * e;
        den += (double)a[i] * (double)a[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-12);
}

// ---------------------------------------------------------------------------------------------
// Bottleneck kernel

typedef struct bn_ctx {
    float *inp, *w, *b, *out, *pre, *R;
    size_t BT, C, D;
} bn_ctx;

static double bn_loss(void *p) {
    bn_ctx *c = p;
    rd_source_bottleneck_forward(c->out, c->pre, c->inp, c->w, c->b, c->BT, c->C, c->D);
    double s = 0.0;
    for (size_t i = 0; i < c->BT * c->D; i++)
        s += (double)c->out[i] * (double)c->R[i];
    return s;
}

static void test_bottleneck(void **state) {
    (void)state;
    rd_rng r;
    rd_rng_seed(&r, 11);
    size_t BT = 6, C = 9, D = 5;
    bn_ctx c = {.inp = randv(BT * C, &r, 1.0f),
                .w = randv(D * C, &r, 0.5f),
                .b = randv(D, &r, 0.3f),
                .out = zerov(BT * D),
                .pre = zerov(BT * D),
                .R = randv(BT * D, &r, 1.0f),
                .BT = BT,
                .C = C,
                .D = D};
    float *out2 = zerov(BT * D), *pre2 = zerov(BT * D), *dpre = zerov(BT * D);
    float *gi = zerov(BT * C), *gw = zerov(D * C), *gb = zerov(D);
    float *gi2 = zerov(BT * C), *gw2 = zerov(D * C), *gb2 = zerov(D);
    bn_loss(&c);
    rd_source_bottleneck_forward_naive(out2, pre2, c.inp, c.w, c.b, BT, C, D);
    assert_true(rel_diff(out2, c.out, BT * D) < 1e-6);
    rd_source_bottleneck_backward(gi, gw, gb, dpre, c.R, c.inp, c.w, c.out, BT, C, D);
    rd_source_bottleneck_backward_naive(gi2, gw2, gb2, dpre, c.R, c.inp, c.w, out2, BT, C, D);
    assert_true(rel_diff(gi2, gi, BT * C) < 1e-5);
    assert_true(rel_diff(gw2, gw, D * C) < 1e-5);
    assert_true(rel_diff(gb2, gb, D) < 1e-5);
    rd_rng pr;
    rd_rng_seed(&pr, 3);
    double e1 = fd_tensor(bn_loss, &c, c.inp, gi, BT * C, &pr);
    double e2 = fd_tensor(bn_loss, &c, c.w, gw, D * C, &pr);
    double e3 = fd_tensor(bn_loss, &c, c.b, gb, D, &pr);
    print_message("bottleneck FD rel err: inp %.2e, w %.2e, b %.2e\n", e1, e2, e3);
    assert_true(e1 >= 0 && e1 < FD_TOL);
    assert_true(e2 >= 0 && e2 < FD_TOL);
    assert_true(e3 >= 0 && e3 < FD_TOL);
    // Gradients accumulate (+=): a second backward doubles them.
    bn_loss(&c); // the FD probes left `out` at a perturbed point
    rd_source_bottleneck_backward(gi, gw, gb, dpre, c.R, c.inp, c.w, c.out, BT, C, D);
    for (size_t i = 0; i < D; i++)
        assert_float_equal(gb[i], 2.0f * gb2[i], 1e-5f * (1.0f + fabsf(gb2[i])));
    float *all[] = {c.inp, c.w, c.b, c.out, c.pre, c.R, out2, pre2,
                    dpre,  gi,  gw,  gb,    gi2,   gw2, gb2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

// ---------------------------------------------------------------------------------------------
// SIT kernel

typedef struct sit_fix {
    rd_seq_dims d;
    size_t layers;
    float *slab, *gslab, *aslab; // weights, gradients, activations + scratch
    rd_source_sit_weights w, g;
    rd_source_sit_acts a;
    rd_source_sit_scratch s;
    float *inp, *mask, *out, *R, *dinp;
} sit_fix;

static float *carve(float **cur, size_t n) {
    float *p = *cur;
    *cur += n;
    return p;
}

static size_t sit_weight_floats(size_t T, size_t C, size_t L) {
    return T * C + L * (12 * C * C + 13 * C) + 2 * C;
}

static void sit_weights_carve(rd_source_sit_weights *w, float *base, size_t T, size_t C, size_t L) {
    float *c = base;
    w->pos = carve(&c, T * C);
    for (size_t l = 0; l < L; l++) {
        rd_tblock_weights *b = &w->blk[l];
        b->ln1w = carve(&c, C);
        b->ln1b = carve(&c, C);
        b->qkvw = carve(&c, 3 * C * C);
        b->qkvb = carve(&c, 3 * C);
        b->projw = carve(&c, C * C);
        b->projb = carve(&c, C);
        b->ln2w = carve(&c, C);
        b->ln2b = carve(&c, C);
        b->fcw = carve(&c, 4 * C * C);
        b->fcb = carve(&c, 4 * C);
        b->fcprojw = carve(&c, 4 * C * C);
        b->fcprojb = carve(&c, C);
    }
    w->lnfw = carve(&c, C);
    w->lnfb = carve(&c, C);
    assert_true((size_t)(c - base) == sit_weight_floats(T, C, L));
}

static void sit_make(sit_fix *f, size_t G, size_t T, size_t C, size_t NH, size_t L, uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->d = (rd_seq_dims){.B = G, .T = T, .C = C, .NH = NH, .causal = 1, .act = RD_ACT_GELU};
    f->layers = L;
    rd_rng r;
    rd_rng_seed(&r, seed);
    size_t nw = sit_weight_floats(T, C, L);
    f->slab = randv(nw, &r, 0.3f);
    f->gslab = zerov(nw);
    sit_weights_carve(&f->w, f->slab, T, C, L);
    sit_weights_carve(&f->g, f->gslab, T, C, L);
    for (size_t l = 0; l < L; l++) // layer norm gains near 1
        for (size_t i = 0; i < C; i++) {
            f->w.blk[l].ln1w[i] += 1.0f;
            f->w.blk[l].ln2w[i] += 1.0f;
        }
    for (size_t i = 0; i < C; i++)
        f->w.lnfw[i] += 1.0f;
    size_t GT = G * T;
    size_t na = (L + 1) * GT * C + L * (GT * (C * 15 + 4) + G * NH * T * T) + 2 * GT + GT * C * 14 +
                T * T + 2 * GT * C;
    f->aslab = zerov(na);
    float *c = f->aslab;
    for (size_t l = 0; l <= L; l++)
        f->a.x[l] = carve(&c, GT * C);
    for (size_t l = 0; l < L; l++) {
        rd_tblock_acts *a = &f->a.blk[l];
        a->ln1 = carve(&c, GT * C);
        a->ln1_mean = carve(&c, GT);
        a->ln1_rstd = carve(&c, GT);
        a->qkv = carve(&c, GT * 3 * C);
        a->att = carve(&c, G * NH * T * T);
        a->atty = carve(&c, GT * C);
        a->res = carve(&c, GT * C);
        a->ln2 = carve(&c, GT * C);
        a->ln2_mean = carve(&c, GT);
        a->ln2_rstd = carve(&c, GT);
        a->fch = carve(&c, GT * 4 * C);
        a->fch_act = carve(&c, GT * 4 * C);
    }
    f->a.lnf_mean = carve(&c, GT);
    f->a.lnf_rstd = carve(&c, GT);
    f->s.bs.dres = carve(&c, GT * C);
    f->s.bs.dln = carve(&c, GT * C);
    f->s.bs.dqkv = carve(&c, GT * 3 * C);
    f->s.bs.datty = carve(&c, GT * C);
    f->s.bs.dfch = carve(&c, GT * 4 * C);
    f->s.bs.dfch_act = carve(&c, GT * 4 * C);
    f->s.bs.datt = carve(&c, T * T);
    f->s.dx[0] = carve(&c, GT * C);
    f->s.dx[1] = carve(&c, GT * C);
    assert_true((size_t)(c - f->aslab) <= na);
    f->inp = randv(GT * C, &r, 1.0f);
    f->mask = zerov(GT);
    for (size_t g = 0; g < G; g++) // group g has T - g valid positions (left-aligned)
        for (size_t t = 0; t + g < T; t++)
            f->mask[g * T + t] = 1.0f;
    f->out = zerov(GT * C);
    f->R = randv(GT * C, &r, 1.0f);
    // The source model reads the SIT's output at valid positions only: a padded position's
    // output gets no gradient (the fast blocks do not compute it: rd_tblock_forward).
    for (size_t i = 0; i < GT; i++)
        if (f->mask[i] == 0.0f)
            memset(f->R + i * C, 0, C * sizeof(float));
    f->dinp = zerov(GT * C);
}

static void sit_free(sit_fix *f) {
    free(f->slab);
    free(f->gslab);
    free(f->aslab);
    free(f->inp);
    free(f->mask);
    free(f->out);
    free(f->R);
    free(f->dinp);
}

static double sit_loss(void *p) {
    sit_fix *f = p;
    rd_source_sit_forward(f->out, &f->a, f->inp, f->mask, &f->w, &f->d, f->layers);
    double s = 0.0;
    for (size_t i = 0; i < f->d.B * f->d.T * f->d.C; i++)
        s += (double)f->out[i] * (double)f->R[i];
    return s;
}

static void sit_grads(sit_fix *f, int naive) {
    size_t nw = sit_weight_floats(f->d.T, f->d.C, f->layers), n = f->d.B * f->d.T * f->d.C;
    memset(f->gslab, 0, nw * sizeof(float));
    memset(f->dinp, 0, n * sizeof(float));
    if (naive) {
        rd_source_sit_forward_naive(f->out, &f->a, f->inp, f->mask, &f->w, &f->d, f->layers);
        rd_source_sit_backward_naive(f->dinp, &f->g, &f->s, f->R, f->inp, f->mask, &f->a, &f->w,
                                     &f->d, f->layers);
    } else {
        sit_loss(f);
        rd_source_sit_backward(f->dinp, &f->g, &f->s, f->R, f->inp, f->mask, &f->a, &f->w, &f->d,
                               f->layers);
    }
}

static void test_sit_naive_and_fd(void **state) {
    (void)state;
    sit_fix f;
    size_t G = 3, T = 4, C = 8, NH = 2, L = 2;
    sit_make(&f, G, T, C, NH, L, 21);
    size_t nw = sit_weight_floats(T, C, L), n = G * T * C;
    sit_grads(&f, 1);
    float *out_n = zerov(n), *din_n = zerov(n), *gw_n = zerov(nw);
    memcpy(out_n, f.out, n * sizeof(float));
    memcpy(din_n, f.dinp, n * sizeof(float));
    memcpy(gw_n, f.gslab, nw * sizeof(float));
    sit_grads(&f, 0);
    for (size_t i = 0; i < G * T; i++) // padded outputs are not read: not compared
        if (f.mask[i] == 0.0f) {
            memset(out_n + i * C, 0, C * sizeof(float));
            memset(f.out + i * C, 0, C * sizeof(float));
        }
    assert_true(rel_diff(out_n, f.out, n) < 1e-5);
    assert_true(rel_diff(din_n, f.dinp, n) < 1e-4);
    assert_true(rel_diff(gw_n, f.gslab, nw) < 1e-4);

    // FD on the input and on every weight tensor (probed).
    rd_rng pr;
    rd_rng_seed(&pr, 9);
    float *gw = zerov(nw);
    memcpy(gw, f.gslab, nw * sizeof(float));
    double e = fd_tensor(sit_loss, &f, f.inp, f.dinp, n, &pr);
    print_message("SIT FD rel err: inp %.2e\n", e);
    assert_true(e >= 0 && e < FD_TOL);
    struct {
        const char *name;
        float *x;
        size_t n;
    } ts[] = {{"pos", f.w.pos, T * C},
              {"ln1w", f.w.blk[0].ln1w, C},
              {"qkvw", f.w.blk[0].qkvw, 3 * C * C},
              {"qkvb", f.w.blk[1].qkvb, 3 * C},
              {"projw", f.w.blk[1].projw, C * C},
              {"fcw", f.w.blk[0].fcw, 4 * C * C},
              {"fcprojw", f.w.blk[1].fcprojw, 4 * C * C},
              {"ln2b", f.w.blk[1].ln2b, C},
              {"lnfw", f.w.lnfw, C},
              {"lnfb", f.w.lnfb, C}};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        const float *g = gw + (ts[k].x - f.slab);
        double ek = fd_tensor(sit_loss, &f, ts[k].x, g, ts[k].n, &pr);
        if (!(ek >= 0 && ek < FD_TOL))
            fail_msg("SIT FD: d loss / d %s: relative error %.3g", ts[k].name, ek);
    }
    free(out_n);
    free(din_n);
    free(gw_n);
    free(gw);
    sit_free(&f);
}

// Causality: output position i never depends on input position j > i, in value or gradient.
static void test_sit_causal(void **state) {
    (void)state;
    sit_fix f;
    size_t G = 2, T = 6, C = 8, NH = 2, L = 2, n = G * T * C;
    sit_make(&f, G, T, C, NH, L, 5);
    for (size_t i = 0; i < G * T; i++)
        f.mask[i] = 1.0f;
    sit_loss(&f);
    float *base = zerov(n);
    memcpy(base, f.out, n * sizeof(float));
    for (size_t j = 0; j < T; j++) {
        // Perturb input position j of group 1.
        float *x = f.inp + (1 * T + j) * C;
        float keep[8];
        memcpy(keep, x, sizeof keep);
        for (size_t i = 0; i < C; i++) // not a constant shift: layer norms would cancel it
            x[i] += 0.3f * (float)i - 0.5f;
        sit_loss(&f);
        for (size_t t = 0; t < T; t++) {
            double dg = max_abs_diff(base + (1 * T + t) * C, f.out + (1 * T + t) * C, C);
            if (t < j)
                assert_true(dg == 0.0); // earlier positions: bitwise unchanged
            else
                assert_true(dg > 1e-4); // j itself and later positions see it
            // The other group is untouched.
            assert_true(max_abs_diff(base + t * C, f.out + t * C, C) == 0.0);
        }
        memcpy(x, keep, sizeof keep);
    }
    // Gradient view: d out[pos i] / d inp[pos j] == 0 for every j > i.
    for (size_t i = 0; i < T; i++) {
        memset(f.R, 0, n * sizeof(float));
        for (size_t c = 0; c < C; c++)
            f.R[(0 * T + i) * C + c] = 1.0f + 0.1f * (float)c;
        sit_grads(&f, 0);
        for (size_t j = 0; j < T; j++) {
            double gnorm = 0.0;
            for (size_t c = 0; c < C; c++)
                gnorm += fabs((double)f.dinp[(0 * T + j) * C + c]);
            if (j > i)
                assert_true(gnorm == 0.0);
            else
                assert_true(gnorm > 0.0);
        }
    }
    free(base);
    sit_free(&f);
}

// ---------------------------------------------------------------------------------------------
// The source model: fixtures

static const rd_table_config TABLES[] = {
    {.name = "t_user", .dim = 4},
    {.name = "t_item", .dim = 5},
};

static rd_config *make_cfg(int scheme, int window, int sit_layers, int dim) {
    rd_config *cfg = calloc(1, sizeof *cfg);
    assert_non_null(cfg);
    rd_config_defaults(cfg);
    cfg->ps.n_tables = 2;
    memcpy(cfg->ps.tables, TABLES, sizeof TABLES);
    cfg->n_models = 2;
    rd_model_config *mc = &cfg->models[0];
    snprintf(mc->name, sizeof mc->name, "src");
    mc->n_features = 2;
    snprintf(mc->features[0].field, RD_NAME_MAX, "user");
    snprintf(mc->features[0].table, RD_NAME_MAX, "t_user");
    snprintf(mc->features[1].field, RD_NAME_MAX, "item");
    snprintf(mc->features[1].table, RD_NAME_MAX, "t_item");
    mc->seq = (rd_seq_config){
        .kind = RD_SEQ_MEAN, .length = 3, .layers = 1, .heads = 1, .with_labels = 1};
    snprintf(mc->seq.table, RD_NAME_MAX, "t_item");
    mc->tokens = (rd_token_use){.scheme = 0, .length = 4, .kind = RD_SEQ_MEAN, .adapter = 4};
    mc->n_mlp = 1;
    mc->mlp[0] = 7;
    mc->n_tower = 1;
    mc->tower[0] = 3;
    snprintf(mc->activation, sizeof mc->activation, "gelu");
    // A model that reads tokens (not allowed as a source model).
    rd_model_config *mt = &cfg->models[1];
    *mt = *mc;
    snprintf(mt->name, sizeof mt->name, "reader");
    mt->tokens.scheme = 2;
    cfg->tokens.scheme = scheme;
    cfg->tokens.window = window;
    cfg->tokens.sit_layers = sit_layers;
    cfg->tokens.sit_labels = 0; // the tests that want them set them
    cfg->tokens.dim = dim;
    snprintf(cfg->tokens.source_model, RD_NAME_MAX, "src");
    return cfg;
}

static rd_source *build(const rd_config *cfg, size_t max_batch, size_t heads) {
    rd_source_opts o = {.tables = cfg->ps.tables,
                        .n_tables = cfg->ps.n_tables,
                        .max_batch = max_batch,
                        .opt_slots = 2,
                        .sit_heads = heads,
                        .seed = 17};
    rd_source *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_source_create(cfg, &o, &s, &eb);
    if (rc != RD_OK)
        fail_msg("rd_source_create: %s: %s", rd_strerror(rc), eb.msg);
    return s;
}

// A batch owning its arrays: B instances, U rows per table.
typedef struct sbatch {
    rd_source_batch sb;
    float *rows[2], *drows[2];
    int32_t *fidx[2], *sidx;
    uint8_t *slab;
    float *labels, *weights, *prev;
    uint32_t glen[16], nprev[16];
    uint64_t items[16], pitems[16 * 8]; // item keys of the rows and of prev (sit_item_code)
} sbatch;

static void sb_make(sbatch *t, const rd_source *s, size_t B, uint64_t seed) {
    memset(t, 0, sizeof *t);
    rd_rng r;
    rd_rng_seed(&r, seed);
    const rd_model *m = s->backbone;
    size_t U = 6, L = m->seq_length;
    rd_batch *b = &t->sb.base;
    b->B = B;
    for (int k = 0; k < m->n_tables; k++) {
        size_t n = U * m->tables[k].dim;
        t->rows[k] = randv(n, &r, 0.5f);
        t->drows[k] = zerov(n);
        b->rows[k] = t->rows[k];
        b->drows[k] = t->drows[k];
        b->n_rows[k] = U;
    }
    for (int f = 0; f < m->n_features; f++) {
        t->fidx[f] = calloc(B, sizeof(int32_t));
        for (size_t i = 0; i < B; i++)
            t->fidx[f][i] = (int32_t)rd_rng_below(&r, U);
        b->feat_idx[f] = t->fidx[f];
        b->feat_slots[f] = 1;
    }
    t->sidx = calloc(B * L, sizeof(int32_t));
    t->slab = calloc(B * L, 1);
    for (size_t i = 0; i < B * L; i++) {
        t->sidx[i] = i % L == L - 1 && i / L == 0 ? -1 : (int32_t)rd_rng_below(&r, U);
        t->slab[i] = (uint8_t)rd_rng_below(&r, 2);
    }
    b->seq_idx = t->sidx;
    b->seq_labels = t->slab;
    t->labels = calloc(B, sizeof(float));
    t->weights = calloc(B, sizeof(float));
    for (size_t i = 0; i < B; i++) {
        t->labels[i] = (float)rd_rng_below(&r, 2);
        t->weights[i] = 0.5f + (float)rd_rng_uniform(&r);
    }
    b->labels = t->labels;
    size_t T = s->window;
    t->prev = zerov(16 * (T > 1 ? T - 1 : 1) * s->dim);
    for (size_t i = 0; i < 16 * (T > 1 ? T - 1 : 1) * s->dim; i++)
        t->prev[i] = (float)rd_rng_uniform(&r);
    // Item keys from a stream of their own (the draws above stay those of every test), few
    // enough that some repeat; given always, read only with sit_item_code.
    rd_rng ri;
    rd_rng_seed(&ri, seed ^ 0x6974656dULL);
    assert_true(B <= 16 && (T > 1 ? T - 1 : 1) <= 8);
    for (size_t i = 0; i < 16; i++)
        t->items[i] = 1000 + rd_rng_below(&ri, 4);
    for (size_t i = 0; i < 16 * 8; i++)
        t->pitems[i] = 1000 + rd_rng_below(&ri, 4);
    t->sb.item_keys = t->items;
    t->sb.prev_items = t->pitems;
}

static void sb_free(sbatch *t) {
    for (int k = 0; k < 2; k++) {
        free(t->rows[k]);
        free(t->drows[k]);
        free(t->fidx[k]);
    }
    free(t->sidx);
    free(t->slab);
    free(t->labels);
    free(t->weights);
    free(t->prev);
}

static void fwd_bwd(rd_source *s, const rd_source_batch *b) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_source_forward(s, b, &eb);
    if (rc == RD_OK)
        rc = rd_source_backward(s, b, &eb);
    if (rc != RD_OK)
        fail_msg("source step: %s: %s", rd_strerror(rc), eb.msg);
}

typedef struct model_ctx {
    rd_source *s;
    const rd_source_batch *b;
} model_ctx;

static double model_loss(void *p) {
    model_ctx *c = p;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_source_forward(c->s, c->b, &eb);
    if (rc != RD_OK)
        fail_msg("forward: %s", eb.msg);
    return c->s->loss;
}

// FD over every tensor of both slabs and the rows of every table.
static void fd_source(rd_source *s, sbatch *t) {
    fwd_bwd(s, &t->sb);
    rd_model *m = s->backbone;
    float *gs = zerov(s->n_slab), *gm = zerov(m->n_slab);
    memcpy(gs, s->grads, s->n_slab * sizeof(float));
    memcpy(gm, m->grads, m->n_slab * sizeof(float));
    float *gr[2] = {zerov(6 * 4), zerov(6 * 5)};
    for (int k = 0; k < m->n_tables; k++)
        memcpy(gr[k], t->drows[k], 6 * m->tables[k].dim * sizeof(float));
    model_ctx c = {s, &t->sb};
    rd_rng pr;
    rd_rng_seed(&pr, 77);
    double worst = 0.0;
    int checked = 0, zero = 0;
    for (int i = 0; i < s->n_tensors + m->n_tensors + m->n_tables; i++) {
        float *x;
        const float *g;
        size_t n;
        const char *name;
        int is_tower = 0;
        if (i < s->n_tensors) {
            const rd_model_tensor *ts = &s->tensors[i];
            x = s->params + ts->offset, g = gs + ts->offset, n = ts->n, name = ts->name;
        } else if (i < s->n_tensors + m->n_tensors) {
            const rd_model_tensor *ts = &m->tensors[i - s->n_tensors];
            x = m->params + ts->offset, g = gm + ts->offset, n = ts->n, name = ts->name;
            is_tower = strncmp(name, "tower", 5) == 0; // unused by the source model
        } else {
            int k = i - s->n_tensors - m->n_tensors;
            x = t->rows[k], g = gr[k], n = 6 * m->tables[k].dim, name = m->tables[k].name;
        }
        double e = fd_tensor(model_loss, &c, x, g, n, &pr);
        if (e < 0.0) {
            assert_true(is_tower); // only the backbone's own (unused) towers have no gradient
            zero++;
            continue;
        }
        assert_false(is_tower);
        if (getenv("RD_FD_VERBOSE"))
            print_message("  %-24s %.3e\n", name, e);
        if (!(e < FD_TOL))
            fail_msg("source FD: d loss / d %s: relative error %.3g", name, e);
        worst = e > worst ? e : worst;
        checked++;
    }
    print_message("source FD: %d tensors checked, worst %.2e, %d unused tower tensors\n", checked,
                  worst, zero);
    free(gs);
    free(gm);
    free(gr[0]);
    free(gr[1]);
}

// labels: 0 none, 1 tokens.sit_labels (shifted), 2 sit_labels + sit_pairs, 3 those and
// sit_item_code.
static void fd_user_order(int labels, int reverse) {
    rd_config *cfg = make_cfg(2, 4, 2, 8);
    int sit_labels = labels > 0;
    cfg->tokens.sit_labels = sit_labels;
    cfg->tokens.sit_pairs = labels >= 2;
    cfg->tokens.sit_item_code = labels == 3;
    rd_source *s = build(cfg, 8, 2);
    assert_non_null(rd_source_find_tensor(s, "sit.block1.fcprojw"));
    assert_true(!rd_source_find_tensor(s, "sit.prev_label") == !sit_labels);
    sbatch t;
    sb_make(&t, s, 5, 4);
    // Groups [2, 1, 2] with 1, 3 and 0 frozen previous tokens (group 1 uses only the most
    // recent T - 1 = 3; group 0 uses 1 of its 1; group 2 none).
    t.glen[0] = 2, t.glen[1] = 1, t.glen[2] = 2;
    t.nprev[0] = 1, t.nprev[1] = 3, t.nprev[2] = 0;
    t.sb.n_groups = 3;
    t.sb.group_len = t.glen;
    t.sb.prev_tokens = t.prev;
    t.sb.n_prev = t.nprev;
    float plab[3 * 3] = {1, 0, 0, 0, 1, 1, 0, 0, 0}; // labels of the frozen tokens
    t.sb.prev_labels = sit_labels ? plab : NULL;
    t.sb.loss_weights = t.weights;
    if (reverse) { // the two_pass step: each group's new instances latest first, nothing frozen
        t.sb.prev_tokens = NULL;
        t.sb.n_prev = NULL;
        t.sb.prev_labels = NULL;
        t.sb.reverse = 1;
    }
    // Spread the tokens over (0, 1) as a trained bottleneck does: at the initial scale they sit
    // near 0.5 with a tiny spread, and the SIT's layer norms then amplify the curvature so much
    // that fp32 finite differences cannot resolve 1e-3.
    const rd_model_tensor *bw = rd_source_find_tensor(s, "bottleneck.w");
    assert_non_null(bw);
    for (size_t i = 0; i < bw->n; i++)
        s->params[bw->offset + i] *= 6.0f;
    size_t np = 3 * 3 * s->dim;
    float *prev_copy = zerov(np);
    memcpy(prev_copy, t.prev, np * sizeof(float));
    g_steps = FD_STEPS_SIT;
    g_nsteps = 4;
    fd_source(s, &t);
    g_steps = FD_STEPS_DEFAULT;
    g_nsteps = 2;
    assert_memory_equal(prev_copy, t.prev, np * sizeof(float)); // never written
    free(prev_copy);
    sb_free(&t);
    rd_source_destroy(s);
    free(cfg);
}

static void fd_user_order_streaming(int labels) {
    fd_user_order(labels, 0);
}

static void test_fd_user_order_streaming(void **state) {
    (void)state;
    fd_user_order_streaming(0);
}

// The reverse pass of tokens.two_pass (pairs and item codes: every label and code path).
static void test_fd_reverse(void **state) {
    (void)state;
    fd_user_order(0, 1);
    fd_user_order(3, 1);
}

// A reverse batch is the forward batch with each group's rows in reverse order: the same logits
// (rows permuted back) and the same gradients, for every label variant (0 none, 1 sit_labels,
// 2 sit_pairs, 3 sit_item_code). The reference reorders the inputs, not the SIT.
static void reverse_equals_reordered(int labels) {
    rd_config *cfg = make_cfg(2, 4, 2, 4);
    cfg->tokens.sit_labels = labels > 0;
    cfg->tokens.sit_pairs = labels >= 2;
    cfg->tokens.sit_item_code = labels == 3;
    rd_source *s = build(cfg, 8, 2);
    rd_model *m = s->backbone;
    const size_t B = 6, L = m->seq_length;
    const uint32_t glen[3] = {3, 1, 2};
    size_t perm[6]; // perm[i]: the row of the reversed batch that holds row i of the forward one
    for (size_t g = 0, o = 0; g < 3; o += glen[g++])
        for (size_t k = 0; k < glen[g]; k++)
            perm[o + k] = o + glen[g] - 1 - k;
    sbatch t[2];
    float logits[6], *gs = zerov(s->n_slab), *gm = zerov(m->n_slab), *gr[2];
    for (int v = 0; v < 2; v++) {
        sb_make(&t[v], s, B, 21);
        memcpy(t[v].glen, glen, sizeof glen);
        t[v].sb.n_groups = 3;
        t[v].sb.group_len = t[v].glen;
        t[v].sb.loss_weights = t[v].weights;
        if (v == 0) {
            t[v].sb.reverse = 1;
        } else { // rows reordered by hand: row perm[i] of this batch is row i of the other
            for (size_t i = 0; i < B; i++) {
                size_t j = perm[i];
                for (int f = 0; f < m->n_features; f++)
                    t[1].fidx[f][j] = t[0].fidx[f][i];
                memcpy(t[1].sidx + j * L, t[0].sidx + i * L, L * sizeof(int32_t));
                memcpy(t[1].slab + j * L, t[0].slab + i * L, L);
                t[1].labels[j] = t[0].labels[i];
                t[1].weights[j] = t[0].weights[i];
                t[1].items[j] = t[0].items[i];
            }
        }
        fwd_bwd(s, &t[v].sb);
        if (v == 0) {
            memcpy(logits, s->logits, B * sizeof(float));
            memcpy(gs, s->grads, s->n_slab * sizeof(float));
            memcpy(gm, m->grads, m->n_slab * sizeof(float));
            for (int k = 0; k < 2; k++) {
                gr[k] = zerov(6 * m->tables[k].dim);
                memcpy(gr[k], t[0].drows[k], 6 * m->tables[k].dim * sizeof(float));
            }
            continue;
        }
        for (size_t i = 0; i < B; i++)
            assert_float_equal(s->logits[perm[i]], logits[i], 1e-5f);
        double es = rel_diff(gs, s->grads, s->n_slab), em = rel_diff(gm, m->grads, m->n_slab);
        if (!(es < 1e-5 && em < 1e-5))
            fail_msg("reverse vs reordered (labels %d): gradients differ: source %.3g, backbone "
                     "%.3g",
                     labels, es, em);
        for (int k = 0; k < 2; k++)
            assert_true(rel_diff(gr[k], t[1].drows[k], 6 * m->tables[k].dim) < 1e-5);
    }
    // Control: the same batch forward in its own order gives other logits.
    t[0].sb.reverse = 0;
    fwd_bwd(s, &t[0].sb);
    assert_true(max_abs_diff(s->logits, logits, B) > 1e-4);
    for (int v = 0; v < 2; v++)
        sb_free(&t[v]);
    free(gs);
    free(gm);
    free(gr[0]);
    free(gr[1]);
    rd_source_destroy(s);
    free(cfg);
}

static void test_reverse_equals_reordered(void **state) {
    (void)state;
    for (int labels = 0; labels <= 3; labels++)
        reverse_equals_reordered(labels);
}

static void test_fd_temporal(void **state) {
    (void)state;
    rd_config *cfg = make_cfg(1, 4, 2, 3);
    rd_source *s = build(cfg, 4, 0);
    assert_null(rd_source_find_tensor(s, "sit.pos"));
    sbatch t;
    sb_make(&t, s, 4, 8);
    fd_source(s, &t);
    sb_free(&t);
    rd_source_destroy(s);
    free(cfg);
}

// A window of T new instances vs. its last instance with the first T - 1 tokens frozen.
// With sit_labels the frozen prefix carries its labels, so both see the same label inputs.
// labels: 0 none, 1 sit_labels (shifted), 2 sit_labels + sit_pairs, 3 those and sit_item_code
// (the frozen prefix then carries its items as well).
static void streaming_equals_batch(int labels) {
    size_t T = 4;
    rd_config *cfg = make_cfg(2, (int)T, 2, 4);
    int sit_labels = labels > 0;
    cfg->tokens.sit_labels = sit_labels;
    cfg->tokens.sit_pairs = labels >= 2;
    cfg->tokens.sit_item_code = labels == 3;
    rd_source *s = build(cfg, T, 2);
    rd_model *m = s->backbone;
    size_t d = s->dim;
    sbatch t;
    sb_make(&t, s, T, 12);
    // Batch mode: one group of T new instances, the loss on the last one only.
    float w_last[4] = {0, 0, 0, 1};
    t.glen[0] = (uint32_t)T;
    t.sb.n_groups = 1;
    t.sb.group_len = t.glen;
    t.sb.loss_weights = w_last;
    fwd_bwd(s, &t.sb);
    float tok[4 * 4], logit_last = s->logits[T - 1];
    memcpy(tok, s->tokens, T * d * sizeof(float));
    float *gs_b = zerov(s->n_slab), *gm_b = zerov(m->n_slab);
    for (size_t i = 0; i < s->n_slab; i++)
        gs_b[i] = s->grads[i] * (float)T; // the batch loss is averaged over T
    for (size_t i = 0; i < m->n_slab; i++)
        gm_b[i] = m->grads[i] * (float)T;

    // Streaming: the last instance alone, the first T - 1 tokens frozen.
    rd_source_batch st = {0};
    st.base = t.sb.base;
    st.base.B = 1;
    for (int f = 0; f < m->n_features; f++)
        st.base.feat_idx[f] = t.fidx[f] + (T - 1);
    st.base.seq_idx = t.sidx + (T - 1) * m->seq_length;
    st.base.seq_labels = t.slab + (T - 1) * m->seq_length;
    st.base.labels = t.labels + (T - 1);
    uint32_t one = 1, nprev = (uint32_t)(T - 1);
    st.n_groups = 1;
    st.group_len = &one;
    st.prev_tokens = tok; // rows 0..T-2 of the batch's tokens: exactly the (1, T - 1, d) layout
    st.n_prev = &nprev;
    st.prev_labels = sit_labels ? t.labels : NULL; // their labels, row for row
    st.item_keys = t.items + (T - 1);
    st.prev_items = t.items; // and their items
    float tok_copy[16];
    memcpy(tok_copy, tok, sizeof tok_copy);
    fwd_bwd(s, &st);
    assert_memory_equal(tok_copy, tok, sizeof tok_copy);
    assert_true(max_abs_diff(s->tokens, tok + (T - 1) * d, d) < 1e-6);
    assert_float_equal(s->logits[0], logit_last, 1e-5f);

    // Above the tokens the two computations are the same; below, batch mode also pushes the loss
    // through the T - 1 earlier tokens, streaming does not (they are frozen).
    int same = 0, differ = 0;
    for (int i = 0; i < s->n_tensors; i++) {
        const rd_model_tensor *ts = &s->tensors[i];
        double e = rel_diff(gs_b + ts->offset, s->grads + ts->offset, ts->n);
        if (strncmp(ts->name, "bottleneck", 10) == 0) {
            assert_true(e > 1e-3);
            differ++;
        } else {
            if (!(e < 1e-4))
                fail_msg("streaming vs batch: %s gradients differ (%.3g)", ts->name, e);
            same++;
        }
    }
    const rd_model_tensor *w0 = rd_model_find_tensor(m, "backbone.l0.w");
    assert_non_null(w0);
    assert_true(rel_diff(gm_b + w0->offset, m->grads + w0->offset, w0->n) > 1e-3);
    print_message("streaming vs batch (labels %d): %d tensors equal, %d differ (bottleneck)\n",
                  labels, same, differ);
    free(gs_b);
    free(gm_b);
    sb_free(&t);
    rd_source_destroy(s);
    free(cfg);
}

static void test_streaming_equals_batch(void **state) {
    (void)state;
    streaming_equals_batch(0);
}

static void test_streaming_equals_batch_labels(void **state) {
    (void)state;
    streaming_equals_batch(1);
}

static void test_streaming_equals_batch_pairs(void **state) {
    (void)state;
    streaming_equals_batch(2);
}

static void test_streaming_equals_batch_item_code(void **state) {
    (void)state;
    streaming_equals_batch(3);
}

// sit_labels: every tensor (the label embeddings included) against finite differences.
static void test_fd_sit_labels(void **state) {
    (void)state;
    fd_user_order_streaming(1);
}

// sit_pairs: the same, with two SIT positions per instance (the labelled one's gradient reaches
// the instance's token too).
static void test_fd_sit_pairs(void **state) {
    (void)state;
    fd_user_order_streaming(2);
}

// sit_item_code adds constants to the SIT input: the gradients stay right.
static void test_fd_sit_item_code(void **state) {
    (void)state;
    fd_user_order_streaming(3);
}

// One group of 3 new instances after 1 frozen token whose label is plab[0] (of 3).
static void one_group(sbatch *t, const rd_source *s, float *plab) {
    sb_make(t, s, 3, 9);
    t->glen[0] = 3;
    t->nprev[0] = 1;
    t->sb.n_groups = 1;
    t->sb.group_len = t->glen;
    t->sb.prev_tokens = t->prev;
    t->sb.n_prev = t->nprev;
    t->sb.prev_labels = plab;
}

// tokens.sit_group item: groups of one user split into groups of one item, in the order of each
// item's first row, rows in their order; the same item in two groups stays in two.
static void test_split_by_item(void **state) {
    (void)state;
    uint64_t rec[8] = {10, 11, 12, 13, 14, 15, 16, 17};
    uint64_t items[8] = {7, 8, 7, 9, 8, 8, 7, 7}; // groups [7 8 7 9] [8 8] [7 7]
    uint32_t glen[8] = {4, 2, 2};
    size_t G = 3;
    rd_source_item_row scratch[8];
    rd_source_split_by_item(rec, items, glen, &G, 8, scratch);
    assert_int_equal(G, 5);
    uint32_t want_len[5] = {2, 1, 1, 2, 2};
    uint64_t want_rec[8] = {10, 12, 11, 13, 14, 15, 16, 17};
    assert_memory_equal(glen, want_len, sizeof want_len);
    assert_memory_equal(rec, want_rec, sizeof want_rec);
    uint64_t want_items[8] = {7, 7, 8, 9, 8, 8, 7, 7}; // the keys follow their records
    assert_memory_equal(items, want_items, sizeof want_items);
    // One group of one item, and groups that are all distinct items: unchanged.
    uint64_t r1[3] = {1, 2, 3}, i1[3] = {5, 5, 5};
    uint32_t g1[3] = {3};
    G = 1;
    rd_source_split_by_item(r1, i1, g1, &G, 3, scratch);
    assert_int_equal(G, 1);
    assert_int_equal(g1[0], 3);
    assert_int_equal(r1[2], 3);
}

// The frozen prefix of a group of one item: the tokens, labels and items of that item, in order.
static void test_keep_item(void **state) {
    (void)state;
    float tok[5 * 2] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4}, lab[5] = {0, 1, 0, 1, 1};
    uint64_t it[5] = {4, 9, 4, 4, 9};
    assert_int_equal(rd_source_keep_item(tok, lab, it, NULL, 5, 2, 9), 2);
    float want_tok[4] = {1, 1, 4, 4}, want_lab[2] = {1, 1};
    assert_memory_equal(tok, want_tok, sizeof want_tok);
    assert_memory_equal(lab, want_lab, sizeof want_lab);
    assert_true(it[0] == 9 && it[1] == 9);
    assert_int_equal(rd_source_keep_item(tok, NULL, it, NULL, 2, 2, 5), 0);
    // Compared by keys (tokens.sit_group_by: the items' series): the items follow their tokens,
    // the keys stay as they are.
    float tk2[4 * 2] = {0, 0, 1, 1, 2, 2, 3, 3}, lb2[4] = {0, 1, 1, 0};
    uint64_t it2[4] = {4, 9, 5, 4}, key2[4] = {70, 80, 80, 70};
    assert_int_equal(rd_source_keep_item(tk2, lb2, it2, key2, 4, 2, 80), 2);
    float want_tk2[4] = {1, 1, 2, 2}, want_lb2[2] = {1, 1};
    assert_memory_equal(tk2, want_tk2, sizeof want_tk2);
    assert_memory_equal(lb2, want_lb2, sizeof want_lb2);
    assert_true(it2[0] == 9 && it2[1] == 5);
    assert_true(key2[0] == 70 && key2[3] == 70);
}

// The item code: +-RD_SOURCE_ITEM_CODE, a function of the key alone, different keys differ.
// In the SIT, an instance's item reaches its own logit and the later ones only (frozen items:
// all of the group's); without sit_item_code no item key reaches a logit.
static void test_sit_item_code(void **state) {
    (void)state;
    float a[70], b[70], c[70];
    rd_source_item_code(a, 42, 70);
    rd_source_item_code(b, 42, 70);
    rd_source_item_code(c, 43, 70);
    assert_memory_equal(a, b, sizeof a);
    int diff = 0, diff_hi = 0;
    for (int k = 0; k < 70; k++) {
        assert_true(fabsf(a[k]) == RD_SOURCE_ITEM_CODE);
        diff += a[k] != c[k];
        diff_hi += k >= 64 && a[k] != c[k];
    }
    assert_true(diff > 10 && diff_hi > 0);
    for (int on = 0; on <= 1; on++) {
        rd_config *cfg = make_cfg(2, 4, 1, 8);
        cfg->tokens.sit_labels = 1;
        cfg->tokens.sit_pairs = 1;
        cfg->tokens.sit_item_code = on;
        rd_source *s = build(cfg, 8, 2);
        sbatch t;
        float plab[3] = {1, 0, 1};
        one_group(&t, s, plab);
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        float base[3], z[3];
        assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_OK);
        memcpy(base, s->logits, sizeof base);
        for (int k = 0; k <= 3; k++) { // k = 3: the frozen token's item
            uint64_t *it = k < 3 ? &t.items[k] : &t.pitems[0];
            uint64_t keep = *it;
            *it = 7777;
            assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_OK);
            memcpy(z, s->logits, sizeof z);
            *it = keep;
            for (int r = 0; r < 3; r++) {
                if (on && (k == 3 || r >= k))
                    assert_true(fabsf(z[r] - base[r]) > 1e-7f);
                else
                    assert_float_equal(z[r], base[r], 0.0f);
            }
        }
        if (on) { // the keys are required
            t.sb.item_keys = NULL;
            assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_ARG);
            assert_non_null(strstr(eb.msg, "item_keys"));
            t.sb.item_keys = t.items;
            t.sb.prev_items = NULL;
            rd_errbuf_clear(&eb);
            assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_ARG);
            assert_non_null(strstr(eb.msg, "prev_items"));
        }
        sb_free(&t);
        rd_source_destroy(s);
        free(cfg);
    }
}

// sit_labels never shows an instance its own label: flipping the label of a group's last instance
// leaves every logit unchanged, flipping an earlier one changes the later logits only; flipping a
// frozen token's label changes the group's logits. Without sit_labels no label reaches a logit.
// The same with sit_pairs (mode 2), where each label sits in its own instance's second slot.
static void test_sit_labels_causal(void **state) {
    (void)state;
    for (int mode = 0; mode <= 2; mode++) {
        int on = mode > 0;
        rd_config *cfg = make_cfg(2, 4, 1, 8);
        cfg->tokens.sit_labels = on;
        cfg->tokens.sit_pairs = mode == 2;
        rd_source *s = build(cfg, 8, 2);
        sbatch t;
        float plab[3] = {1, 0, 1};
        one_group(&t, s, plab);
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        float base[3], z[3];
        assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_OK);
        memcpy(base, s->logits, sizeof base);
        // Flip the label of instance k (k = 3: the frozen token's) and compare.
        for (int k = 0; k <= 3; k++) {
            float *l = k < 3 ? &t.labels[k] : &plab[0];
            *l = 1.0f - *l;
            assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_OK);
            memcpy(z, s->logits, sizeof z);
            *l = 1.0f - *l;
            for (int r = 0; r < 3; r++) {
                int sees = on && (k == 3 || r > k); // later instances only, or all for the prefix
                if (sees)
                    assert_true(fabsf(z[r] - base[r]) > 1e-7f);
                else
                    assert_float_equal(z[r], base[r], 0.0f);
            }
        }
        sb_free(&t);
        rd_source_destroy(s);
        free(cfg);
    }
}

// Temporal scheme == user order with T = 1 and no SIT; with a SIT the stored tokens still match.
static void test_temporal_equals_user_t1(void **state) {
    (void)state;
    rd_config *ct = make_cfg(1, 8, 2, 4), *cu = make_cfg(2, 1, 0, 4), *cs = make_cfg(2, 1, 2, 4);
    rd_source *a = build(ct, 5, 0), *b = build(cu, 5, 0), *c = build(cs, 5, 0);
    assert_int_equal(a->n_tensors, b->n_tensors);
    assert_int_equal(a->n_slab, b->n_slab);
    assert_memory_equal(a->params, b->params, a->n_slab * sizeof(float));
    sbatch t;
    sb_make(&t, a, 5, 31);
    t.sb.loss_weights = t.weights;
    fwd_bwd(a, &t.sb);
    float ga[4096], tok[5 * 4], lg[5];
    assert_true(a->n_slab <= 4096);
    memcpy(ga, a->grads, a->n_slab * sizeof(float));
    memcpy(tok, a->tokens, sizeof tok);
    memcpy(lg, a->logits, sizeof lg);
    double la = a->loss;
    // User order with T = 1: every instance is its own group (explicitly).
    for (int g = 0; g < 5; g++)
        t.glen[g] = 1;
    t.sb.n_groups = 5;
    t.sb.group_len = t.glen;
    fwd_bwd(b, &t.sb);
    assert_memory_equal(tok, b->tokens, sizeof tok);
    assert_memory_equal(lg, b->logits, sizeof lg);
    assert_true(la == b->loss);
    assert_memory_equal(ga, b->grads, a->n_slab * sizeof(float));
    assert_memory_equal(a->backbone->grads, b->backbone->grads,
                        a->backbone->n_slab * sizeof(float));
    // With a SIT: the stored tokens are pre-SIT, so they are still the temporal ones; the logits
    // are not (the SIT transforms what the head sees).
    fwd_bwd(c, &t.sb);
    assert_memory_equal(tok, c->tokens, sizeof tok);
    assert_true(max_abs_diff(lg, c->logits, 5) > 1e-6);
    sb_free(&t);
    rd_source_destroy(a);
    rd_source_destroy(b);
    rd_source_destroy(c);
    free(ct);
    free(cu);
    free(cs);
}

// ---------------------------------------------------------------------------------------------
// No allocation in the step; errors

static long n_alloc_calls;
static void *count_malloc(size_t n) {
    n_alloc_calls++;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n) {
    n_alloc_calls++;
    return realloc(p, n);
}
static const rd_allocator counting = {count_malloc, count_realloc, free};

static void test_no_alloc_in_step(void **state) {
    (void)state;
    rd_config *cfg = make_cfg(2, 4, 2, 4);
    rd_source *s = build(cfg, 8, 2);
    sbatch t;
    sb_make(&t, s, 5, 4);
    t.glen[0] = 3, t.glen[1] = 2, t.nprev[0] = 1, t.nprev[1] = 2;
    t.sb.n_groups = 2;
    t.sb.group_len = t.glen;
    t.sb.prev_tokens = t.prev;
    t.sb.n_prev = t.nprev;
    n_alloc_calls = 0;
    rd_alloc_set(&counting);
    for (int k = 0; k < 3; k++)
        fwd_bwd(s, &t.sb);
    rd_alloc_set(NULL);
    assert_int_equal(n_alloc_calls, 0);
    sb_free(&t);
    rd_source_destroy(s);
    free(cfg);
}

// ---------------------------------------------------------------------------------------------
// The memory check: the estimate covers what rd_source_create allocates, and a limit below it
// is refused before any slab is allocated, naming the keys that size it.

static double n_alloc_bytes;
static void *bytes_malloc(size_t n) {
    n_alloc_bytes += (double)n;
    return malloc(n);
}
static const rd_allocator byte_counting = {bytes_malloc, realloc, free};

static int
create_limited(const rd_config *cfg, size_t B, double limit, rd_source **s, rd_errbuf *eb) {
    rd_source_opts o = {.tables = cfg->ps.tables,
                        .n_tables = cfg->ps.n_tables,
                        .max_batch = B,
                        .opt_slots = 2,
                        .sit_heads = 2,
                        .seed = 17,
                        .mem_limit = limit};
    rd_errbuf_clear(eb);
    return rd_source_create(cfg, &o, s, eb);
}

// Bytes allocated by a create at batch B, and the create's estimate.
static void measure(const rd_config *cfg, size_t B, double *alloc, double *est) {
    rd_errbuf eb;
    rd_source *s = NULL;
    n_alloc_bytes = 0;
    rd_alloc_set(&byte_counting);
    int rc = create_limited(cfg, B, 0, &s, &eb);
    rd_alloc_set(NULL);
    if (rc != RD_OK)
        fail_msg("rd_source_create: %s", eb.msg);
    *alloc = n_alloc_bytes;
    *est = s->mem_bytes;
    rd_source_destroy(s);
}

static void test_memory_check(void **state) {
    (void)state;
    rd_config *cfg = make_cfg(2, 16, 2, 8); // a SIT of 2 layers over 16 positions
    rd_errbuf eb;
    rd_source *s = NULL;
    // What grows with the batch is all counted (the SIT's activations above all: without them
    // the estimate would grow a fifth as fast); what does not (directories, private structs)
    // is a few hundred KiB.
    double a64, e64, a256, e256;
    measure(cfg, 64, &a64, &e64);
    measure(cfg, 256, &a256, &e256);
    double da = a256 - a64, de = e256 - e64;
    if (!(fabs(da - de) <= 0.01 * de && a64 - e64 < 512 * 1024))
        fail_msg("64 -> 256 instances: rd_source_create allocated %.0f more bytes, its estimate "
                 "grew by %.0f (at 64: %.0f allocated, %.0f estimated)",
                 da, de, a64, e64);
    double est = e64;

    // At the limit it goes through; one byte below it is refused, nothing allocated.
    s = NULL;
    assert_int_equal(create_limited(cfg, 64, est, &s, &eb), RD_OK);
    rd_source_destroy(s);
    s = (rd_source *)1;
    assert_int_equal(create_limited(cfg, 64, est - 1, &s, &eb), RD_ERR_NOMEM);
    assert_null(s);
    const char *needles[] = {"at a batch of 64 instances", "tokens.window 16",
                             "tokens.sit_layers 2", "train.batch_size", "the given limit"};
    for (size_t k = 0; k < sizeof needles / sizeof *needles; k++)
        if (!strstr(eb.msg, needles[k]))
            fail_msg("error '%s' does not mention '%s'", eb.msg, needles[k]);

    // A batch no node holds is refused before its slabs are allocated (the real limit).
    s = NULL;
    n_alloc_bytes = 0;
    rd_alloc_set(&byte_counting);
    int rc = create_limited(cfg, (size_t)1 << 30, 0, &s, &eb);
    rd_alloc_set(NULL);
    assert_int_equal(rc, RD_ERR_NOMEM);
    assert_true(n_alloc_bytes < 1e8);
    assert_non_null(strstr(eb.msg, "GiB of Source Instance Transformer activations"));
    free(cfg);
}

static void expect_create_error(rd_config *cfg, const char *needle) {
    rd_source_opts o = {.tables = cfg->ps.tables, .n_tables = cfg->ps.n_tables, .max_batch = 4};
    rd_source *s = (rd_source *)1;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_create(cfg, &o, &s, &eb), RD_ERR_CONFIG);
    assert_null(s);
    if (!strstr(eb.msg, needle))
        fail_msg("error '%s' does not mention '%s'", eb.msg, needle);
}

// n_groups = 0 makes every instance a group of its own: B groups, which the SIT tensors (sized
// for max_groups) must hold. A batch of more instances than max_groups is refused, not run past
// the end of sit_in, mask and sit_lab.
static void test_ungrouped_batch_over_max_groups(void **state) {
    (void)state;
    rd_config *cfg = make_cfg(2, 4, 1, 4);
    cfg->tokens.sit_labels = 1;
    rd_source_opts o = {.tables = cfg->ps.tables,
                        .n_tables = cfg->ps.n_tables,
                        .max_batch = 8,
                        .max_groups = 2,
                        .sit_heads = 2,
                        .seed = 17};
    rd_source *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_create(cfg, &o, &s, &eb), RD_OK);
    assert_int_equal(s->max_groups, 2);
    sbatch t;
    sb_make(&t, s, 5, 4); // no group arrays: 5 groups of one
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_ARG);
    if (!strstr(eb.msg, "5 groups"))
        fail_msg("unexpected message: %s", eb.msg);
    sb_free(&t);
    sb_make(&t, s, 2, 4); // two groups of one fit
    fwd_bwd(s, &t.sb);
    sb_free(&t);
    rd_source_destroy(s);
    free(cfg);
}

static void test_errors(void **state) {
    (void)state;
    rd_config *cfg = make_cfg(2, 4, 2, 4);
    snprintf(cfg->tokens.source_model, RD_NAME_MAX, "nope");
    expect_create_error(cfg, "'nope' is not in models");
    snprintf(cfg->tokens.source_model, RD_NAME_MAX, "reader");
    expect_create_error(cfg, "reads instance tokens");
    cfg->tokens.source_model[0] = '\0';
    expect_create_error(cfg, "empty");
    snprintf(cfg->tokens.source_model, RD_NAME_MAX, "src");
    cfg->tokens.scheme = 3;
    expect_create_error(cfg, "tokens.scheme 3");
    cfg->tokens.scheme = 2;
    cfg->tokens.sit_pairs = 1; // make_cfg leaves sit_labels off
    expect_create_error(cfg, "sit_pairs needs tokens.sit_labels");
    cfg->tokens.sit_pairs = 0;
    cfg->tokens.dim = 6;
    rd_source_opts o = {.tables = cfg->ps.tables, .n_tables = 2, .max_batch = 4, .sit_heads = 4};
    rd_source *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_create(cfg, &o, &s, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "do not divide"));
    cfg->tokens.dim = 4;

    // Bad batches: clear errors, nothing computed.
    s = build(cfg, 8, 2);
    sbatch t;
    sb_make(&t, s, 5, 4);
    t.sb.n_groups = 2;
    t.sb.group_len = t.glen;
    t.glen[0] = 3, t.glen[1] = 1; // sums to 4, B = 5
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_ARG);
    if (!strstr(eb.msg, "sum to 4"))
        fail_msg("unexpected message: %s", eb.msg);
    t.glen[0] = 5, t.glen[1] = 0;
    t.sb.n_groups = 1; // 5 > T = 4
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_RANGE);
    assert_non_null(strstr(eb.msg, "group_len 5"));
    t.glen[0] = 4, t.glen[1] = 1;
    t.sb.n_groups = 2;
    t.sb.prev_tokens = t.prev;
    t.sb.n_prev = t.nprev;
    t.nprev[0] = 4; // > T - 1
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_RANGE);
    t.nprev[0] = 2;
    t.prev[1] = NAN;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_RANGE);
    assert_non_null(strstr(eb.msg, "not finite"));
    t.prev[1] = 0.5f;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_backward(s, &t.sb, &eb), RD_ERR_STATE);
    t.sb.n_prev = NULL;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_ARG);
    t.sb.n_prev = t.nprev;
    float tl[5] = {0};
    t.sb.base.teacher_logits = tl;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_ARG);
    t.sb.base.teacher_logits = NULL;
    fwd_bwd(s, &t.sb);
    // The backbone ran only up to h: its own full backward refuses (no head output to use).
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_model_backward(s->backbone, &t.sb.base, &eb), RD_ERR_STATE);
    assert_non_null(strstr(eb.msg, "hidden only"));
    sb_free(&t);
    rd_source_destroy(s);
    free(cfg);
}

// ---------------------------------------------------------------------------------------------
// Driver on a tiny synthetic dataset

static char g_tmp[128];

static int setup_tmp(void **state) {
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rd_test_source_XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown_tmp(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct seen_ctx {
    uint8_t *seen;
    uint64_t n, dup, bad;
    const rd_dataset *ds;
} seen_ctx;

static int visit(const rd_token_record *rec, void *user) {
    seen_ctx *c = user;
    if (rec->id >= c->n) {
        c->bad++;
        return 0;
    }
    const rd_record *r = rd_dataset_record(c->ds, rec->id);
    if (r->user_key != rec->user || r->ts != rec->ts || r->item_key != rec->item ||
        r->label != rec->label)
        c->bad++;
    if (c->seen[rec->id]++)
        c->dup++;
    return 0;
}

static void check_store(const rd_dataset *ds, rd_token_store *store, size_t dim) {
    const rd_dataset_info *info = rd_dataset_get_info(ds);
    uint64_t n = info->n_events;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // A token for every event, exactly once, with the record's side info.
    seen_ctx c = {.seen = calloc(n, 1), .n = n, .ds = ds};
    assert_int_equal(rd_token_store_iterate(store, -1, visit, &c, &eb), RD_OK);
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal(c.seen[i], 1);
    assert_int_equal(c.dup, 0);
    assert_int_equal(c.bad, 0);
    free(c.seen);
    // fetch(user, t, L): only records strictly before t, exactly the user's earlier events.
    size_t L = 5;
    float *tok = calloc(L * dim, sizeof(float));
    int64_t ts[5];
    uint64_t ids[5];
    uint32_t nf;
    rd_token_fetch_out fo = {.tokens = tok, .ts = ts, .ids = ids, .n_found = &nf};
    uint64_t checked = 0, nonempty = 0;
    for (uint64_t i = 0; i < n; i++) {
        const rd_record *r = rd_dataset_record(ds, i);
        assert_int_equal(rd_token_store_fetch(store, r->user_key, r->ts, L, &fo, &eb), RD_OK);
        uint64_t cnt = 0;
        const uint64_t *ur = rd_dataset_user_records(ds, r->user, &cnt);
        uint64_t before = 0;
        for (uint64_t k = 0; k < cnt; k++)
            before += rd_dataset_record(ds, ur[k])->ts < r->ts;
        assert_int_equal(nf, before < L ? before : L);
        for (uint32_t k = 0; k < nf; k++) {
            assert_true(ts[k] < r->ts);
            assert_true(ids[k] != i);
            assert_int_equal(rd_dataset_record(ds, ids[k])->user_key, r->user_key);
            for (size_t j = 0; j < dim; j++) // sigmoid outputs
                assert_true(tok[k * dim + j] > 0.0f && tok[k * dim + j] < 1.0f);
        }
        checked++;
        nonempty += nf > 0;
    }
    assert_true(nonempty > n / 2);
    free(tok);
}

// The driver tests' data: 1500 synthetic events of 40 users and 60 items (the default split:
// batch period, 5 stream windows, holdout), prepared once in g_tmp/ds; opened into *ds.
static void open_synth(rd_config *cfg, rd_dataset **ds) {
    cfg->data.source = RD_DATA_SYNTHETIC;
    cfg->data.synthetic.events = 1500;
    cfg->data.synthetic.users = 40;
    cfg->data.synthetic.items = 60;
    cfg->data.synthetic.seed = 5;
    snprintf(cfg->data.dir, sizeof cfg->data.dir, "%s/ds", g_tmp);
    cfg->train.lr = 3e-3f;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (access(cfg->data.dir, F_OK) != 0)
        assert_int_equal(rd_dataset_prepare(&cfg->data, 1, &eb), RD_OK);
    *ds = NULL;
    assert_int_equal(rd_dataset_open(cfg->data.dir, 0, ds, &eb), RD_OK);
}

static void run_driver(const char *name, int scheme, int order, int sit_layers) {
    rd_config *cfg = make_cfg(scheme, 4, sit_layers, 8);
    rd_dataset *ds = NULL;
    open_synth(cfg, &ds);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char tdir[300];
    snprintf(tdir, sizeof tdir, "%s/tokens_%s", g_tmp, name);
    rd_token_store_opts so = {.dim = 8, .dtype = RD_TOKEN_FP32, .n_shards = 2, .no_sync = 1};
    rd_token_store *store = NULL;
    assert_int_equal(rd_token_store_create(tdir, &so, &store, &eb), RD_OK);
    rd_source_train_opts o = {.order = order, .epochs = 2, .batch_size = 64};
    rd_source_train_stats st;
    int rc = rd_source_train_range(cfg, ds, &o, store, &st, &eb);
    if (rc != RD_OK)
        fail_msg("train_range: %s: %s", rd_strerror(rc), eb.msg);
    uint64_t n = rd_dataset_get_info(ds)->n_events;
    print_message("driver %s: %llu events x 2 epochs in %llu steps, %llu frozen tokens used, "
                  "loss %.4f -> %.4f, progressive AUC (epoch 2) %.4f\n",
                  name, (unsigned long long)n, (unsigned long long)st.steps,
                  (unsigned long long)st.frozen_used, st.loss_first, st.loss_last, st.auc_last);
    assert_int_equal(st.events, 2 * n);
    assert_int_equal(st.tokens_written, 2 * n);
    if (scheme == 2 && order == RD_ORDER_WINDOWS) {
        // Whole windows of T = 4 consecutive events of one user, never cut by a batch: each
        // user contributes ceil(count / 4) groups per epoch.
        uint64_t want = 0;
        for (uint32_t u = 0; u < rd_dataset_get_info(ds)->n_users; u++) {
            uint64_t cnt = 0;
            (void)rd_dataset_user_records(ds, u, &cnt);
            want += (cnt + 3) / 4;
        }
        assert_int_equal(st.groups, 2 * want);
        // Packed whole: a batch of 64 ends only when the next window (<= 4 events) does not
        // fit, so every batch but an epoch's last holds at least 61 events.
        assert_true(st.steps <= 2 * ((n + 60) / 61));
    }
    // Streaming (time order, user scheme) feeds frozen previous tokens; the other modes none.
    if (scheme == 2 && order == RD_ORDER_TIME)
        assert_true(st.frozen_used > n);
    else
        assert_int_equal(st.frozen_used, 0);
    assert_true(isfinite(st.loss_first) && isfinite(st.loss_last));
    rd_token_stats ts;
    assert_int_equal(rd_token_store_stats(store, &ts, NULL, &eb), RD_OK);
    assert_int_equal(ts.entries, n);
    check_store(ds, store, 8);
    // A store of another dim is refused.
    rd_token_store_destroy(store);
    cfg->tokens.dim = 4;
    store = NULL;
    rd_token_open_opts oo = {.mode = RD_TOKEN_WRITE};
    assert_int_equal(rd_token_store_open(tdir, &oo, &store, &eb), RD_OK);
    assert_int_equal(rd_source_train_range(cfg, ds, &o, store, &st, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "dim"));
    rd_token_store_destroy(store);
    rd_dataset_close(ds);
    free(cfg);
}

static void test_driver_user_time(void **state) {
    (void)state;
    run_driver("user_time", 2, RD_ORDER_TIME, 2);
}

static void test_driver_user_user(void **state) {
    (void)state;
    run_driver("user_user", 2, RD_ORDER_USER, 2);
}

static void test_driver_user_windows(void **state) {
    (void)state;
    run_driver("user_windows", 2, RD_ORDER_WINDOWS, 2);
}

static void test_driver_temporal(void **state) {
    (void)state;
    run_driver("temporal", 1, RD_ORDER_TIME, 2);
}

// Persistent driver (what `recdistill train` uses): parameters carry over between ranges, and an
// infer_only pass writes tokens without changing them. Checked through the tokens themselves:
// two infer_only passes over the same range write identical tokens; a training pass over it then
// writes, for its first batch, the same tokens (computed before that batch's update) and for later
// batches different ones (the updates took effect).
typedef struct grab_ctx {
    float *tok; // (n, dim) by record id
    size_t dim;
} grab_ctx;

static int grab(const rd_token_record *rec, void *user) {
    grab_ctx *g = user;
    memcpy(g->tok + rec->id * g->dim, rec->token, g->dim * sizeof(float));
    return 0;
}

static void test_driver_persistent(void **state) {
    (void)state;
    rd_config *cfg = make_cfg(2, 4, 1, 8);
    rd_dataset *ds = NULL;
    open_synth(cfg, &ds);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    uint64_t n = rd_dataset_get_info(ds)->n_events, half = n / 2;
    char tdir[300];
    snprintf(tdir, sizeof tdir, "%s/tokens_persistent", g_tmp);
    rd_token_store_opts so = {.dim = 8, .dtype = RD_TOKEN_FP32, .n_shards = 1, .no_sync = 1};
    rd_token_store *store = NULL;
    assert_int_equal(rd_token_store_create(tdir, &so, &store, &eb), RD_OK);
    rd_source_io io = rd_source_io_store(store);
    rd_source_driver *sd = NULL;
    assert_int_equal(rd_source_driver_create(cfg, ds, &io, 64, &sd, &eb), RD_OK);
    // A builder batch no node holds (a job of many ranks: the build runs at the global batch) is
    // an error naming what sizes it, before the batch's buffers are allocated.
    rd_source_driver *huge = (rd_source_driver *)1;
    assert_int_equal(rd_source_driver_create(cfg, ds, &io, (size_t)1 << 32, &huge, &eb),
                     RD_ERR_NOMEM);
    assert_null(huge);
    assert_non_null(strstr(eb.msg, "at a batch of 4294967296 instances"));
    assert_non_null(strstr(eb.msg, "GiB of batch and data buffers"));
    rd_source_train_stats st;
    rd_source_train_opts first = {.range = {0, half}, .order = RD_ORDER_USER, .epochs = 1};
    assert_int_equal(rd_source_driver_run(sd, &first, &st, &eb), RD_OK);
    assert_int_equal(st.events, half);

    grab_ctx g[3];
    rd_source_train_opts second = {
        .range = {half, n}, .order = RD_ORDER_TIME, .epochs = 3, .infer_only = 1};
    for (int k = 0; k < 3; k++) {
        if (k == 2)
            second.infer_only = 0;
        second.epochs = k == 2 ? 1 : 3; // infer_only ignores epochs: one pass
        assert_int_equal(rd_source_driver_run(sd, &second, &st, &eb), RD_OK);
        assert_int_equal(st.events, n - half);
        g[k].dim = 8;
        g[k].tok = calloc(n * 8, sizeof(float));
        assert_int_equal(rd_token_store_iterate(store, -1, grab, &g[k], &eb), RD_OK);
    }
    size_t row = half * 8, tail = (n - 1) * 8;
    assert_memory_equal(g[0].tok + row, g[1].tok + row, (n - half) * 8 * sizeof(float));
    assert_memory_equal(g[1].tok + row, g[2].tok + row, 8 * sizeof(float)); // first event
    assert_true(max_abs_diff(g[1].tok + tail, g[2].tok + tail, 8) > 0.0);   // after updates
    // The first range's tokens were not rewritten by the later passes.
    assert_memory_equal(g[0].tok, g[2].tok, half * 8 * sizeof(float));
    for (int k = 0; k < 3; k++)
        free(g[k].tok);
    // first_epoch_tokens: three epochs write exactly the tokens of a one-epoch run of a fresh
    // driver (the first pass, each token computed before the update on its batch).
    grab_ctx h[2];
    for (int k = 0; k < 2; k++) {
        char dir2[320];
        snprintf(dir2, sizeof dir2, "%s/tokens_first_%d", g_tmp, k);
        rd_token_store *s2 = NULL;
        assert_int_equal(rd_token_store_create(dir2, &so, &s2, &eb), RD_OK);
        rd_source_io io2 = rd_source_io_store(s2);
        rd_source_driver *d2 = NULL;
        assert_int_equal(rd_source_driver_create(cfg, ds, &io2, 64, &d2, &eb), RD_OK);
        rd_source_train_opts fo = {.range = {0, half},
                                   .order = RD_ORDER_USER,
                                   .epochs = k ? 3 : 1,
                                   .first_epoch_tokens = k};
        assert_int_equal(rd_source_driver_run(d2, &fo, &st, &eb), RD_OK);
        assert_int_equal(st.tokens_written, half);
        assert_int_equal(st.events, (k ? 3 : 1) * half);
        h[k].dim = 8;
        h[k].tok = calloc(n * 8, sizeof(float));
        assert_int_equal(rd_token_store_iterate(s2, -1, grab, &h[k], &eb), RD_OK);
        rd_source_driver_destroy(d2);
        rd_token_store_destroy(s2);
    }
    assert_memory_equal(h[0].tok, h[1].tok, half * 8 * sizeof(float));
    free(h[0].tok);
    free(h[1].tok);
    // A batch larger than the driver's is refused.
    second.batch_size = 65;
    assert_int_equal(rd_source_driver_run(sd, &second, &st, &eb), RD_ERR_ARG);
    rd_source_driver_destroy(sd);
    rd_token_store_destroy(store);
    rd_dataset_close(ds);
    free(cfg);
}

// The parts a build reports, in order.
typedef struct part_log {
    int part[8];
    uint64_t written[8], steps[8], reverse[8];
    int n;
    // rd_source_build's step callback, per part (RD_SOURCE_PART_*): the last steps, events done
    // and total it gave, and whether a call was out of order (steps not one more than the last,
    // events not more, another total, or a part already reported done)
    uint64_t s_steps[4], s_done[4], s_total[4];
    int s_bad;
} part_log;

static void log_step(void *ctx, int part, uint64_t steps, uint64_t done, uint64_t total) {
    part_log *pl = ctx;
    if (part < 0 || part > 3 || steps != pl->s_steps[part] + 1 || done <= pl->s_done[part] ||
        done > total || (pl->s_total[part] && total != pl->s_total[part]))
        pl->s_bad = 1;
    for (int i = 0; i < pl->n && i < 8; i++)
        pl->s_bad |= pl->part[i] == part;
    if (part >= 0 && part <= 3) {
        pl->s_steps[part] = steps;
        pl->s_done[part] = done;
        pl->s_total[part] = total;
    }
}

static void log_part(void *ctx, int part, const rd_source_train_stats *st) {
    part_log *pl = ctx;
    if (pl->n < 8) {
        pl->part[pl->n] = part;
        pl->written[pl->n] = st->tokens_written;
        pl->steps[pl->n] = st->steps;
        pl->reverse[pl->n] = st->reverse_steps;
    }
    pl->n++;
}

// A fresh store in g_tmp/<name>; its tokens by instance id after fn ran on it (fn NULL: none).
static float *store_tokens(const char *name, uint64_t n, rd_token_store **out) {
    char dir[320];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, name);
    rd_token_store_opts so = {.dim = 8, .dtype = RD_TOKEN_FP32, .n_shards = 2, .no_sync = 1};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &so, out, &eb), RD_OK);
    float *tok = calloc(n * 8, sizeof(float));
    assert_non_null(tok);
    return tok;
}

static void grab_all(rd_token_store *store, float *tok) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    grab_ctx g = {.tok = tok, .dim = 8};
    assert_int_equal(rd_token_store_iterate(store, -1, grab, &g, &eb), RD_OK);
}

// tokens.batch_tokens final: after its batch epochs the source model writes the batch period's
// tokens again without training, then goes on to the stream and the holdout as before. Against
// the same sequence run by hand on one driver, for both schemes; the first-pass build is the
// control (its batch tokens differ, so the comparison can fail).
static void test_build_batch_tokens_final(void **state) {
    (void)state;
    for (int scheme = 1; scheme <= 2; scheme++) {
        rd_config *cfg = make_cfg(scheme, 4, 1, 8);
        rd_dataset *ds = NULL;
        open_synth(cfg, &ds);
        cfg->train.epochs = 3;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        uint64_t n = rd_dataset_get_info(ds)->n_events;
        rd_range batch = rd_dataset_batch(ds), hold = rd_dataset_holdout(ds);
        uint32_t K = rd_dataset_get_info(ds)->n_windows;
        assert_true(K > 0);
        rd_range stream = {batch.end, rd_dataset_window(ds, K - 1).end};
        assert_true(batch.end > batch.begin && stream.end > stream.begin && hold.end > hold.begin);
        char name[64];
        // The two builds.
        float *tok[2];
        part_log pl[2];
        memset(pl, 0, sizeof pl);
        for (int mode = 0; mode < 2; mode++) {
            cfg->tokens.batch_tokens = mode ? RD_BATCH_TOKENS_FINAL : RD_BATCH_TOKENS_FIRST_PASS;
            rd_token_store *st = NULL;
            snprintf(name, sizeof name, "final_s%d_m%d", scheme, mode);
            tok[mode] = store_tokens(name, n, &st);
            rd_source_io io = rd_source_io_store(st);
            assert_int_equal(rd_source_build(cfg, ds, &io, 32, log_part, log_step, &pl[mode], &eb),
                             RD_OK);
            grab_all(st, tok[mode]);
            rd_token_store_destroy(st);
        }
        // The parts: batch, its rewrite (final only), stream, holdout; each writes its range.
        assert_int_equal(pl[0].n, 3);
        assert_int_equal(pl[0].part[0], RD_SOURCE_PART_BATCH);
        assert_int_equal(pl[0].part[1], RD_SOURCE_PART_STREAM);
        assert_int_equal(pl[0].part[2], RD_SOURCE_PART_HOLDOUT);
        assert_int_equal(pl[1].n, 4);
        assert_int_equal(pl[1].part[0], RD_SOURCE_PART_BATCH);
        assert_int_equal(pl[1].part[1], RD_SOURCE_PART_BATCH_FINAL);
        assert_int_equal(pl[1].part[2], RD_SOURCE_PART_STREAM);
        assert_int_equal(pl[1].part[3], RD_SOURCE_PART_HOLDOUT);
        assert_int_equal(pl[1].written[0], batch.end - batch.begin);
        assert_int_equal(pl[1].written[1], batch.end - batch.begin);
        assert_int_equal(pl[1].written[2], stream.end - stream.begin);
        // Each step of each part was reported, in order, up to the part's events x its passes
        // (a token build of millions of events printed nothing until its part ended).
        for (int mode = 0; mode < 2; mode++) {
            assert_false(pl[mode].s_bad);
            for (int i = 0; i < pl[mode].n; i++) {
                const int k = pl[mode].part[i];
                assert_int_equal(pl[mode].s_steps[k], pl[mode].steps[i]);
                assert_int_equal(pl[mode].s_done[k], pl[mode].s_total[k]);
            }
            assert_int_equal(pl[mode].s_total[RD_SOURCE_PART_BATCH], 3 * (batch.end - batch.begin));
            assert_int_equal(pl[mode].s_total[RD_SOURCE_PART_STREAM], stream.end - stream.begin);
            assert_int_equal(pl[mode].s_total[RD_SOURCE_PART_HOLDOUT], hold.end - hold.begin);
        }
        assert_int_equal(pl[1].s_total[RD_SOURCE_PART_BATCH_FINAL], batch.end - batch.begin);
        // The reference: one driver, by hand.
        rd_token_store *rs = NULL;
        snprintf(name, sizeof name, "final_s%d_ref", scheme);
        float *ref = store_tokens(name, n, &rs);
        rd_source_io rio = rd_source_io_store(rs);
        rd_source_driver *sd = NULL;
        assert_int_equal(rd_source_driver_create(cfg, ds, &rio, 32, &sd, &eb), RD_OK);
        int border = scheme == 2 ? cfg->tokens.batch_order : RD_ORDER_TIME;
        rd_source_train_opts steps[4] = {
            {.range = batch, .order = border, .epochs = 3, .first_epoch_tokens = 1},
            {.range = batch, .order = border, .epochs = 1, .infer_only = 1},
            {.range = stream, .order = RD_ORDER_TIME, .epochs = 1, .first_epoch_tokens = 1},
            {.range = hold, .order = RD_ORDER_TIME, .epochs = 1, .infer_only = 1},
        };
        rd_source_train_stats sts;
        float *after_batch = calloc(n * 8, sizeof(float));
        assert_non_null(after_batch);
        for (int k = 0; k < 4; k++) {
            assert_int_equal(rd_source_driver_run(sd, &steps[k], &sts, &eb), RD_OK);
            if (k == 0)
                grab_all(rs, after_batch);
        }
        grab_all(rs, ref);
        rd_source_driver_destroy(sd);
        rd_token_store_destroy(rs);
        assert_memory_equal(tok[1], ref, n * 8 * sizeof(float));
        // The first-pass build holds the tokens of the batch epochs as they were written.
        size_t nb = (size_t)(batch.end - batch.begin) * 8;
        assert_memory_equal(tok[0] + batch.begin * 8, after_batch + batch.begin * 8,
                            nb * sizeof(float));
        // Control: the trained model's batch tokens are others than the first pass's.
        assert_true(max_abs_diff(tok[0] + batch.begin * 8, tok[1] + batch.begin * 8, nb) > 1e-4);
        free(after_batch);
        free(ref);
        free(tok[0]);
        free(tok[1]);
        rd_dataset_close(ds);
        free(cfg);
    }
}

// tokens.two_pass: in the batch period every step is followed by a reverse one (none in the
// stream and the holdout, none without a SIT); the tokens are written by the forward steps, so
// the first batch's tokens (written before any update) are those of a build without it and the
// later ones differ (the reverse steps trained the model).
static void test_build_two_pass(void **state) {
    (void)state;
    for (int sit = 0; sit < 2; sit++) {
        rd_config *cfg = make_cfg(2, 4, sit, 8);
        rd_dataset *ds = NULL;
        open_synth(cfg, &ds);
        cfg->train.epochs = 2;
        cfg->tokens.batch_order = RD_ORDER_WINDOWS;
        cfg->tokens.sit_labels = 1;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        uint64_t n = rd_dataset_get_info(ds)->n_events;
        rd_range batch = rd_dataset_batch(ds);
        float *tok[2];
        part_log pl[2];
        memset(pl, 0, sizeof pl);
        for (int two = 0; two < 2; two++) {
            cfg->tokens.two_pass = two;
            rd_token_store *st = NULL;
            char name[64];
            snprintf(name, sizeof name, "two_pass_s%d_%d", sit, two);
            tok[two] = store_tokens(name, n, &st);
            rd_source_io io = rd_source_io_store(st);
            assert_int_equal(rd_source_build(cfg, ds, &io, 32, log_part, NULL, &pl[two], &eb),
                             RD_OK);
            grab_all(st, tok[two]);
            rd_token_store_destroy(st);
            assert_int_equal(pl[two].n, 3);
            for (int k = 0; k < 3; k++) // the same parts, steps and tokens written either way
                assert_int_equal(pl[two].written[k], pl[0].written[k]);
        }
        assert_int_equal(pl[1].part[0], RD_SOURCE_PART_BATCH);
        assert_true(pl[1].steps[0] > 2);
        assert_int_equal(pl[1].reverse[0], sit ? pl[1].steps[0] : 0);
        assert_int_equal(pl[1].reverse[1], 0);
        assert_int_equal(pl[1].reverse[2], 0);
        assert_int_equal(pl[0].reverse[0], 0);
        size_t same = 0, nb = (size_t)(batch.end - batch.begin);
        for (size_t i = batch.begin; i < batch.end; i++)
            same += memcmp(tok[0] + i * 8, tok[1] + i * 8, 8 * sizeof(float)) == 0;
        if (sit) // the first batch's events (windows of 4 packed into 32), no others
            assert_true(same >= 29 && same <= 32);
        else // ignored without a SIT
            assert_int_equal(same, nb);
        print_message("two_pass (sit_layers %d): %zu of %zu batch-period tokens as without\n", sit,
                      same, nb);
        free(tok[0]);
        free(tok[1]);
        rd_dataset_close(ds);
        free(cfg);
    }
}

// A reverse batch reads its groups' own instances: with a frozen prefix, or without groups, it is
// refused.
static void test_reverse_errors(void **state) {
    (void)state;
    rd_config *cfg = make_cfg(2, 4, 1, 4);
    rd_source *s = build(cfg, 4, 1);
    sbatch t;
    one_group(&t, s, NULL);
    t.sb.reverse = 1;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "reverse with prev_tokens"));
    t.sb.prev_tokens = NULL;
    t.sb.n_prev = NULL;
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_OK);
    t.sb.n_groups = 0;
    t.sb.group_len = NULL;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_source_forward(s, &t.sb, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "reverse with n_groups = 0"));
    sb_free(&t);
    rd_source_destroy(s);
    free(cfg);
}

// The driver's buffers in the memory check, split by what they grow with (reserve(B) = B x per
// instance + over the data): tokens.side_residual adds per event the item means of each side
// field, one float (rd_dataset_item_means), not one per side value (the residuals double those
// per instance only). Counting two made the check refuse a build over 10^9 events 4 GB early.
static void test_driver_reserve(void **state) {
    (void)state;
    rd_config *cfg = make_cfg(2, 4, 1, 8);
    cfg->data.source = RD_DATA_SYNTHETIC;
    cfg->data.synthetic.events = 1500;
    cfg->data.synthetic.users = 40;
    cfg->data.synthetic.items = 60;
    cfg->data.synthetic.seed = 5;
    cfg->data.synthetic.feedback = 1; // "engagement", a feedback field
    snprintf(cfg->data.dir, sizeof cfg->data.dir, "%s/ds_feedback", g_tmp);
    cfg->tokens.n_side = 1;
    snprintf(cfg->tokens.side[0], RD_NAME_MAX, "engagement");
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (access(cfg->data.dir, F_OK) != 0)
        assert_int_equal(rd_dataset_prepare(&cfg->data, 1, &eb), RD_OK);
    rd_dataset *ds = NULL;
    assert_int_equal(rd_dataset_open(cfg->data.dir, 0, &ds, &eb), RD_OK);
    double n_events = (double)rd_dataset_get_info(ds)->n_events, per[2], data[2];
    for (int res = 0; res < 2; res++) {
        cfg->tokens.side_residual = res;
        double r1 = 0, r2 = 0;
        assert_int_equal(rd__source_driver_reserve(cfg, ds, 1, &r1, &eb), RD_OK);
        assert_int_equal(rd__source_driver_reserve(cfg, ds, 2, &r2, &eb), RD_OK);
        per[res] = r2 - r1;
        data[res] = r1 - per[res];
    }
    assert_true(per[1] > per[0]); // the residuals travel with each token
    if (fabs(data[1] - data[0] - 4.0 * n_events) > 0.5)
        fail_msg("side_residual adds %.0f bytes over the data, %.0f events x 4 expected",
                 data[1] - data[0], n_events);
    rd_dataset_close(ds);
    free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bottleneck),
        cmocka_unit_test(test_sit_naive_and_fd),
        cmocka_unit_test(test_sit_causal),
        cmocka_unit_test(test_fd_user_order_streaming),
        cmocka_unit_test(test_fd_reverse),
        cmocka_unit_test(test_reverse_equals_reordered),
        cmocka_unit_test(test_fd_temporal),
        cmocka_unit_test(test_fd_sit_labels),
        cmocka_unit_test(test_sit_labels_causal),
        cmocka_unit_test(test_streaming_equals_batch_labels),
        cmocka_unit_test(test_fd_sit_pairs),
        cmocka_unit_test(test_streaming_equals_batch_pairs),
        cmocka_unit_test(test_fd_sit_item_code),
        cmocka_unit_test(test_split_by_item),
        cmocka_unit_test(test_keep_item),
        cmocka_unit_test(test_sit_item_code),
        cmocka_unit_test(test_streaming_equals_batch_item_code),
        cmocka_unit_test(test_streaming_equals_batch),
        cmocka_unit_test(test_temporal_equals_user_t1),
        cmocka_unit_test(test_no_alloc_in_step),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_ungrouped_batch_over_max_groups),
        cmocka_unit_test(test_driver_user_time),
        cmocka_unit_test(test_driver_user_user),
        cmocka_unit_test(test_driver_user_windows),
        cmocka_unit_test(test_driver_temporal),
        cmocka_unit_test(test_driver_persistent),
        cmocka_unit_test(test_build_batch_tokens_final),
        cmocka_unit_test(test_build_two_pass),
        cmocka_unit_test(test_reverse_errors),
        cmocka_unit_test(test_memory_check),
        cmocka_unit_test(test_driver_reserve),
    };
    return tmp_root_status(cmocka_run_group_tests(tests, setup_tmp, teardown_tmp), g_tmp);
}
