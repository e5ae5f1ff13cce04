// test_layers.c — unit tests of rd/layers.h.
//
// Every layer gets (1) a finite-difference gradient check in fp32: the loss is a random linear
// functional sum(w .* out) accumulated in double, Richardson-extrapolated central differences
// (steps 8e-2 and 4e-2) on a sample of each input and weight tensor, and the norm-wise relative
// error ||fd - analytic|| / ||.|| of each tensor must be < 1e-3; and (2), where a BLAS or
// vectorised kernel exists, an equality check against its `_naive` twin on random inputs (forward
// outputs and accumulated gradients). Known values, masks (padding, causal, fully masked rows) and
// numerical extremes are checked too.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/config.h"
#include "rd/layers.h"
#include "rd/rng.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Helpers: a float arena per test, random tensors, the FD check and closeness checks.

typedef struct arena {
    float *base;
    size_t used, cap;
} arena;

static void arena_init(arena *a, size_t cap) {
    a->base = calloc(cap, sizeof(float));
    assert_non_null(a->base);
    a->used = 0;
    a->cap = cap;
}

static void arena_free(arena *a) {
    free(a->base);
    a->base = NULL;
}

static float *take(arena *a, size_t n) {
    size_t n16 = (n + 15) / 16 * 16;
    assert_true(a->used + n16 <= a->cap);
    float *p = a->base + a->used;
    a->used += n16;
    return p;
}

static void fill(float *x, size_t n, rd_rng *r, float scale) {
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)rd_rng_normal(r);
}

static float *rnd(arena *a, rd_rng *r, size_t n, float scale) {
    float *p = take(a, n);
    fill(p, n, r, scale);
    return p;
}

static double dotw(const float *out, const float *w, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)out[i] * (double)w[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

typedef struct fdt {
    const char *name;
    float *x;       // the tensor perturbed
    const float *g; // its analytic gradient
    size_t n;
} fdt;

#define FD_EPS    8e-2f
#define FD_TOL    1e-3
#define FD_PROBES 48

// Central difference with the step actually representable in fp32.
static double central(void *ctx, loss_fn f, float *x, float h) {
    float orig = *x, xp = orig + h, xm = orig - h;
    *x = xp;
    double lp = f(ctx);
    *x = xm;
    double lm = f(ctx);
    *x = orig;
    return (lp - lm) / ((double)xp - (double)xm);
}

// Norm-wise relative error of the analytic gradient against finite differences on up to
// FD_PROBES elements of the tensor (all of them when it is small). The difference quotient is
// Richardson-extrapolated from steps FD_EPS and FD_EPS / 2, which cancels the O(h^2) term and so
// allows a step large enough that fp32 rounding of the forward pass stays far below tolerance.
static double fd_rel_error(void *ctx, loss_fn f, const fdt *t, rd_rng *r, double *gnorm) {
    double num = 0.0, dfd = 0.0, dan = 0.0;
    size_t probes = t->n < FD_PROBES ? t->n : FD_PROBES;
    for (size_t p = 0; p < probes; p++) {
        size_t i = t->n <= FD_PROBES ? p : (size_t)rd_rng_below(r, t->n);
        double d1 = central(ctx, f, &t->x[i], FD_EPS);
        double d2 = central(ctx, f, &t->x[i], 0.5f * FD_EPS);
        double fd = (4.0 * d2 - d1) / 3.0;
        double an = (double)t->g[i];
        num += (fd - an) * (fd - an);
        dfd += fd * fd;
        dan += an * an;
    }
    double den = sqrt(dfd > dan ? dfd : dan);
    *gnorm = den;
    return den > 0.0 ? sqrt(num) / den : sqrt(num);
}

static void fd_check(void *ctx, loss_fn f, const fdt *ts, size_t nt, const char *layer) {
    rd_rng r;
    rd_rng_seed(&r, 1234);
    double worst = 0.0;
    for (size_t i = 0; i < nt; i++) {
        double gnorm = 0.0;
        double rel = fd_rel_error(ctx, f, &ts[i], &r, &gnorm);
        if (!(rel < FD_TOL) || !(gnorm > 1e-6))
            fail_msg("%s: d/d%s: FD relative error %.3g (tolerance %.0e), |g| = %.3g", layer,
                     ts[i].name, rel, FD_TOL, gnorm);
        worst = rel > worst ? rel : worst;
    }
    print_message("FD %-26s %2zu tensors, worst relative error %.2e\n", layer, nt, worst);
    f(ctx); // leave the activations of the unperturbed point to the caller
}

// max |a - b| <= tol * max(max |b|, 1e-3)
static void assert_close(const float *a, const float *b, size_t n, float tol, const char *what) {
    float mx = 1e-3f, err = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i]))
            fail_msg("%s: non-finite value at %zu (%g vs %g)", what, i, (double)a[i], (double)b[i]);
        float d = fabsf(a[i] - b[i]);
        err = d > err ? d : err;
        mx = fabsf(b[i]) > mx ? fabsf(b[i]) : mx;
    }
    if (!(err <= tol * mx))
        fail_msg("%s: max abs difference %.3g > %.1g * %.3g", what, (double)err, (double)tol,
                 (double)mx);
}

static int all_zero(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f)
            return 0;
    return 1;
}

#define NB_TOL 1e-4f // naive vs BLAS: different summation orders only

// The fast softmax, softmax backward and layer norm reduce in LANES = 16 independent lanes and
// finish with a scalar tail: a row of 16 or more entries runs the vectorised body, a shorter one
// only the tail. Each layer is therefore checked at small sizes (T, C < 16: tail only) and at
// sizes >= 16 that are not multiples of 16 (vectorised body and tail both), with padding inside
// the vectorised region.
#define LANES 16

// mask (B, T), B >= 3: example 0 all valid; example 1 padded at scattered positions (inside the
// first 16 keys and in the tail); example 2 fully padded; any further example padded on a prefix
// (causal rows with no valid key) and just before its end.
static void seq_mask(float *m, size_t B, size_t T) {
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            int pad = 0;
            if (b == 1)
                pad = t % 5 == 2 || t == T - 1;
            else if (b == 2)
                pad = 1;
            else if (b >= 3)
                pad = t < 7 || t == T - 2;
            m[b * T + t] = pad ? 0.0f : 1.0f;
        }
}

// Does some example of mask (B, T) have padding among its first LANES keys, and T >= LANES?
static int pads_vector_region(const float *m, size_t B, size_t T) {
    if (T < LANES)
        return 0;
    for (size_t b = 0; b < B; b++) {
        int valid = 0, pad = 0;
        for (size_t t = 0; t < LANES; t++)
            *(m[b * T + t] != 0.0f ? &valid : &pad) = 1;
        if (valid && pad)
            return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Linear

typedef struct lin_ctx {
    size_t BT, C, OC;
    float *inp, *w, *b, *out, *wout;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    rd_linear_forward(c->out, c->inp, c->w, c->b, c->BT, c->C, c->OC);
    return dotw(c->out, c->wout, c->BT * c->OC);
}

static void test_linear(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 14);
    rd_rng r;
    rd_rng_seed(&r, 1);
    lin_ctx c = {.BT = 7, .C = 13, .OC = 5};
    c.inp = rnd(&A, &r, c.BT * c.C, 1.0f);
    c.w = rnd(&A, &r, c.OC * c.C, 0.3f);
    c.b = rnd(&A, &r, c.OC, 0.1f);
    c.out = take(&A, c.BT * c.OC);
    c.wout = rnd(&A, &r, c.BT * c.OC, 1.0f);
    float *dinp = take(&A, c.BT * c.C), *dw = take(&A, c.OC * c.C), *db = take(&A, c.OC);
    lin_loss(&c);
    rd_linear_backward(dinp, dw, db, c.wout, c.inp, c.w, c.BT, c.C, c.OC);
    fdt ts[] = {{"inp", c.inp, dinp, c.BT * c.C}, {"w", c.w, dw, c.OC * c.C}, {"b", c.b, db, c.OC}};
    fd_check(&c, lin_loss, ts, 3, "linear");

    // Naive twin: forward, then backward accumulated twice (+= semantics) on both sides.
    float *out_n = take(&A, c.BT * c.OC);
    rd_linear_forward_naive(out_n, c.inp, c.w, c.b, c.BT, c.C, c.OC);
    assert_close(c.out, out_n, c.BT * c.OC, NB_TOL, "linear forward vs naive");
    float *dinp_n = take(&A, c.BT * c.C), *dw_n = take(&A, c.OC * c.C), *db_n = take(&A, c.OC);
    for (int k = 0; k < 2; k++)
        rd_linear_backward_naive(dinp_n, dw_n, db_n, c.wout, c.inp, c.w, c.BT, c.C, c.OC);
    rd_linear_backward(dinp, dw, db, c.wout, c.inp, c.w, c.BT, c.C, c.OC);
    assert_close(dinp, dinp_n, c.BT * c.C, NB_TOL, "linear dinp vs naive");
    assert_close(dw, dw_n, c.OC * c.C, NB_TOL, "linear dweight vs naive");
    assert_close(db, db_n, c.OC, NB_TOL, "linear dbias vs naive");

    // No bias, no dinp (frozen input): the weight gradient is unchanged.
    rd_linear_forward(c.out, c.inp, c.w, NULL, c.BT, c.C, c.OC);
    rd_linear_forward_naive(out_n, c.inp, c.w, NULL, c.BT, c.C, c.OC);
    assert_close(c.out, out_n, c.BT * c.OC, NB_TOL, "linear forward without bias");
    memset(dw, 0, c.OC * c.C * sizeof(float));
    memset(dw_n, 0, c.OC * c.C * sizeof(float));
    rd_linear_backward(NULL, dw, NULL, c.wout, c.inp, c.w, c.BT, c.C, c.OC);
    rd_linear_backward_naive(NULL, dw_n, NULL, c.wout, c.inp, c.w, c.BT, c.C, c.OC);
    assert_close(dw, dw_n, c.OC * c.C, NB_TOL, "linear dweight without dinp");
    arena_free(&A);
}

// ---------------------------------------------------------------------------------------------
// Activations

typedef struct act_ctx {
    size_t N;
    int kind;
    float *inp, *out, *wout;
} act_ctx;

static double act_loss(void *p) {
    act_ctx *c = p;
    rd_act_forward(c->out, c->inp, c->N, c->kind);
    return dotw(c->out, c->wout, c->N);
}

static void test_activations(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 16);
    rd_rng r;
    rd_rng_seed(&r, 2);
    const int kinds[] = {RD_ACT_RELU, RD_ACT_GELU, RD_ACT_SIGMOID, RD_ACT_NONE};
    for (int k = 0; k < 4; k++) {
        act_ctx c = {.N = 67, .kind = kinds[k]};
        c.inp = rnd(&A, &r, c.N, 1.5f);
        for (size_t i = 0; i < c.N; i++) // keep ReLU's kink out of the FD steps
            if (fabsf(c.inp[i]) < 0.2f)
                c.inp[i] = 0.5f;
        c.out = take(&A, c.N);
        c.wout = rnd(&A, &r, c.N, 1.0f);
        float *dinp = take(&A, c.N);
        act_loss(&c);
        rd_act_backward(dinp, c.wout, c.inp, c.out, c.N, c.kind);
        fdt t = {"inp", c.inp, dinp, c.N};
        fd_check(&c, act_loss, &t, 1, rd_act_name(c.kind));
    }
    // Fast vs libm over a wide range including saturation; no NaN or Inf anywhere.
    size_t N = 4001;
    float *x = take(&A, N), *a = take(&A, N), *b = take(&A, N);
    for (size_t i = 0; i < N; i++)
        x[i] = -100.0f + 200.0f * (float)i / (float)(N - 1);
    x[0] = -1000.0f;
    x[N - 1] = 1000.0f;
    rd_sigmoid_forward(a, x, N);
    rd_sigmoid_forward_naive(b, x, N);
    for (size_t i = 0; i < N; i++)
        assert_true(fabsf(a[i] - b[i]) <= 1e-6f * fabsf(b[i]) + 1e-30f);
    rd_gelu_forward(a, x, N);
    rd_gelu_forward_naive(b, x, N);
    assert_close(a, b, N, 1e-6f, "gelu vs naive");
    memset(a, 0, N * sizeof(float));
    memset(b, 0, N * sizeof(float));
    float *ones = take(&A, N);
    for (size_t i = 0; i < N; i++)
        ones[i] = 1.0f;
    rd_gelu_backward(a, ones, x, N);
    rd_gelu_backward_naive(b, ones, x, N);
    assert_close(a, b, N, 1e-5f, "gelu backward vs naive");
    // ReLU and sigmoid twins: forward, and backward accumulated onto the same random start.
    float *g = rnd(&A, &r, N, 1.0f), *ga = rnd(&A, &r, N, 1.0f), *gb = take(&A, N);
    memcpy(gb, ga, N * sizeof(float));
    rd_relu_forward(a, x, N);
    rd_relu_forward_naive(b, x, N);
    assert_memory_equal(a, b, N * sizeof(float));
    rd_relu_backward(ga, g, x, N);
    rd_relu_backward_naive(gb, g, x, N);
    assert_close(ga, gb, N, 1e-6f, "relu backward vs naive");
    fill(ga, N, &r, 1.0f);
    memcpy(gb, ga, N * sizeof(float));
    for (size_t i = 0; i < N; i++) // moderate inputs, where the sigmoid has a real slope
        x[i] = -8.0f + 16.0f * (float)i / (float)(N - 1);
    rd_sigmoid_forward(a, x, N);
    rd_sigmoid_backward(ga, g, a, N);
    rd_sigmoid_backward_naive(gb, g, a, N);
    assert_close(ga, gb, N, 1e-6f, "sigmoid backward vs naive");
    rd_blas_set_threads(1);
    assert_int_equal(rd_blas_get_threads(), 1);
    rd_act_kind kind;
    assert_int_equal(rd_act_parse("gelu", &kind), 0);
    assert_int_equal(kind, RD_ACT_GELU);
    assert_true(rd_act_parse("tanh", &kind) < 0);
    arena_free(&A);
}

// GELU at the extremes: GELU(x) -> x and GELU'(x) -> 1 for x -> +inf, GELU(x) -> 0 and
// GELU'(x) -> 0 for x -> -inf, in both twins. The backward computed (1 - t^2) 0.134 x^2 with
// 0.134 x^2 = inf beyond |x| = 5e19 (0 * inf = NaN), and the forward x (1 + t) = -inf * 0 = NaN
// at x = -inf.
// Then finite differences on moderate inputs around the saturation point, where the kernels
// switch to the limits (|x| = 10): no step in the gradient there.
static void test_gelu_extremes(void **state) {
    (void)state;
    enum { N = 20 }; // one vectorised block of 16 and a tail
    const float mag[N / 2] = {10.0f, 10.5f, 20.0f, 1e6f,    7e12f,
                              1e19f, 6e19f, 1e30f, FLT_MAX, INFINITY};
    float x[N], ones[N], y[N], dx[N];
    for (size_t i = 0; i < N; i++) {
        x[i] = i % 2 ? -mag[i / 2] : mag[i / 2];
        ones[i] = 1.0f;
    }
    for (int naive = 0; naive <= 1; naive++) {
        const char *twin = naive ? "naive" : "fast";
        memset(dx, 0, sizeof dx);
        if (naive) {
            rd_gelu_forward_naive(y, x, N);
            rd_gelu_backward_naive(dx, ones, x, N);
        } else {
            rd_gelu_forward(y, x, N);
            rd_gelu_backward(dx, ones, x, N);
        }
        for (size_t i = 0; i < N; i++) {
            float want_y = x[i] > 0.0f ? x[i] : 0.0f, want_dx = x[i] > 0.0f ? 1.0f : 0.0f;
            if (y[i] != want_y || dx[i] != want_dx)
                fail_msg("gelu %s at x = %g: GELU %g (want %g), GELU' %g (want %g)", twin,
                         (double)x[i], (double)y[i], (double)want_y, (double)dx[i],
                         (double)want_dx);
        }
    }
    // FD on moderate inputs, -12 to 12 through the switch to the limits at +-10.
    arena A;
    arena_init(&A, 1 << 12);
    rd_rng r;
    rd_rng_seed(&r, 21);
    act_ctx c = {.N = 97, .kind = RD_ACT_GELU};
    c.inp = take(&A, c.N);
    for (size_t i = 0; i < c.N; i++)
        c.inp[i] = -12.0f + 24.0f * (float)i / (float)(c.N - 1);
    c.out = take(&A, c.N);
    c.wout = rnd(&A, &r, c.N, 1.0f);
    float *dinp = take(&A, c.N), *dinp_n = take(&A, c.N);
    act_loss(&c);
    rd_act_backward(dinp, c.wout, c.inp, c.out, c.N, c.kind);
    rd_gelu_backward_naive(dinp_n, c.wout, c.inp, c.N);
    assert_close(dinp, dinp_n, c.N, 1e-5f, "gelu backward vs naive on [-12, 12]");
    fdt t = {"inp", c.inp, dinp, c.N};
    fd_check(&c, act_loss, &t, 1, "gelu on [-12, 12]");
    arena_free(&A);
}

// A NaN input (a diverged parameter) comes out of the activations and the softmax as NaN, so
// that the trainer's checks of the loss and logits see it: the clamps of the polynomial exp let
// NaN through, and its exponent bits were then computed in signed arithmetic that overflowed for
// NaN (undefined behaviour: the -fsanitize=undefined build aborted in the kernel instead); ReLU
// turned NaN into 0.
static void test_nan_propagates(void **state) {
    (void)state;
    enum { N = 19 }; // one vectorised block of 16 and a tail
    float x[N], y[N], g[N], dx[N];
    for (size_t i = 0; i < N; i++) {
        x[i] = 0.25f * (float)i - 2.0f;
        g[i] = 1.0f;
        dx[i] = 0.0f;
    }
    x[3] = NAN;
    x[17] = -NAN;
    rd_relu_forward(y, x, N); // not 0: a silent unit would hide the NaN from the loss
    assert_true(isnan(y[3]) && isnan(y[17]) && y[0] == 0.0f && y[16] == 2.0f);
    rd_relu_forward_naive(y, x, N);
    assert_true(isnan(y[3]) && isnan(y[17]) && y[0] == 0.0f && y[16] == 2.0f);
    rd_sigmoid_forward(y, x, N);
    assert_true(isnan(y[3]) && isnan(y[17]) && isfinite(y[4]));
    rd_gelu_forward(y, x, N);
    assert_true(isnan(y[3]) && isnan(y[17]) && isfinite(y[4]));
    rd_gelu_backward(dx, g, x, N);
    assert_true(isnan(dx[3]) && isnan(dx[17]) && isfinite(dx[4]));
    // Target attention over T = N keys, one head of C = 1: a NaN key makes every probability of
    // the row NaN (the softmax's sum), and the output too.
    float q[1] = {1.0f}, kv[2 * N], att[N], out[1], mask[N];
    for (size_t t = 0; t < N; t++) {
        kv[2 * t] = x[t] == x[t] ? x[t] : NAN; // the key
        kv[2 * t + 1] = 1.0f;                  // the value
        mask[t] = 1.0f;
    }
    rd_target_attention_forward(out, att, q, kv, mask, 1, N, 1, 1);
    assert_true(isnan(att[0]) && isnan(out[0]));
}

// ---------------------------------------------------------------------------------------------
// Layer norm

typedef struct ln_ctx {
    size_t BT, C;
    float *inp, *w, *b, *out, *mean, *rstd, *wout;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    rd_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->BT, c->C);
    return dotw(c->out, c->wout, c->BT * c->C);
}

static void layernorm_case(size_t BT, size_t C, uint64_t seed) {
    arena A;
    arena_init(&A, 1 << 14);
    rd_rng r;
    rd_rng_seed(&r, seed);
    ln_ctx c = {.BT = BT, .C = C};
    c.inp = rnd(&A, &r, c.BT * c.C, 2.0f);
    c.w = rnd(&A, &r, c.C, 0.2f);
    for (size_t i = 0; i < c.C; i++)
        c.w[i] += 1.0f;
    c.b = rnd(&A, &r, c.C, 0.2f);
    c.out = take(&A, c.BT * c.C);
    c.mean = take(&A, c.BT);
    c.rstd = take(&A, c.BT);
    c.wout = rnd(&A, &r, c.BT * c.C, 1.0f);
    float *dinp = take(&A, c.BT * c.C), *dw = take(&A, c.C), *db = take(&A, c.C);
    ln_loss(&c);
    // Normalised rows have mean bias-free 0 and variance 1 before the affine part.
    for (size_t bt = 0; bt < c.BT; bt++) {
        double m = 0.0;
        for (size_t i = 0; i < c.C; i++)
            m += (double)((c.out[bt * c.C + i] - c.b[i]) / c.w[i]);
        assert_true(fabs(m / (double)c.C) < 1e-5);
    }
    rd_layernorm_backward(dinp, dw, db, c.wout, c.inp, c.w, c.mean, c.rstd, c.BT, c.C);
    char label[64];
    snprintf(label, sizeof label, "layernorm C=%zu", C);
    fdt ts[] = {{"inp", c.inp, dinp, c.BT * c.C}, {"w", c.w, dw, c.C}, {"b", c.b, db, c.C}};
    fd_check(&c, ln_loss, ts, 3, label);

    // Naive twin: forward (with mean and rstd), then backward accumulated twice on both sides.
    float *out_n = take(&A, BT * C), *mean_n = take(&A, BT), *rstd_n = take(&A, BT);
    rd_layernorm_forward_naive(out_n, mean_n, rstd_n, c.inp, c.w, c.b, BT, C);
    assert_close(c.out, out_n, BT * C, NB_TOL, "layernorm out vs naive");
    assert_close(c.mean, mean_n, BT, NB_TOL, "layernorm mean vs naive");
    assert_close(c.rstd, rstd_n, BT, NB_TOL, "layernorm rstd vs naive");
    float *dinp_n = take(&A, BT * C), *dw_n = take(&A, C), *db_n = take(&A, C);
    for (int k = 0; k < 2; k++)
        rd_layernorm_backward_naive(dinp_n, dw_n, db_n, c.wout, c.inp, c.w, c.mean, c.rstd, BT, C);
    rd_layernorm_backward(dinp, dw, db, c.wout, c.inp, c.w, c.mean, c.rstd, BT, C);
    assert_close(dinp, dinp_n, BT * C, NB_TOL, "layernorm dinp vs naive");
    assert_close(dw, dw_n, C, NB_TOL, "layernorm dweight vs naive");
    assert_close(db, db_n, C, NB_TOL, "layernorm dbias vs naive");
    // Without dinp (frozen input) the parameter gradients are unchanged.
    memset(dw, 0, C * sizeof(float));
    memset(db, 0, C * sizeof(float));
    memset(dw_n, 0, C * sizeof(float));
    memset(db_n, 0, C * sizeof(float));
    rd_layernorm_backward(NULL, dw, db, c.wout, c.inp, c.w, c.mean, c.rstd, BT, C);
    rd_layernorm_backward_naive(NULL, dw_n, db_n, c.wout, c.inp, c.w, c.mean, c.rstd, BT, C);
    assert_close(dw, dw_n, C, NB_TOL, "layernorm dweight without dinp");
    assert_close(db, db_n, C, NB_TOL, "layernorm dbias without dinp");
    arena_free(&A);
}

// Rows that barely vary, far from 0: a constant row normalises to its bias exactly (x - mean = 0,
// rstd = 1 / sqrt(eps)), and a row of spread 0.08 around 100 to what the double-precision twin
// gives. Both multiply an error of the row's mean by rstd (up to 316): a float mean rounded once
// per addition put the constant rows off their bias by up to 316 ulp(c) (0.3 at c = 12345.6,
// 2e-3 at 100.3). The float mean itself still limits such rows to ulp(c) / 2 rstd.
static void test_layernorm_flat_rows(void **state) {
    (void)state;
    enum { BT = 6, CMAX = 48 };
    const size_t Cs[] = {3, 17, 48};
    const float cs[BT] = {0.0f, 1.1f, -3.3f, 100.3f, -1000.1f, 12345.6f};
    float x[BT * CMAX], w[CMAX], b[CMAX], out[BT * CMAX], out_n[BT * CMAX];
    float mean[BT], rstd[BT], mean_n[BT], rstd_n[BT];
    float g[BT * CMAX], dx[BT * CMAX], dx_n[BT * CMAX], dw[CMAX], db[CMAX], dw_n[CMAX], db_n[CMAX];
    for (size_t k = 0; k < sizeof Cs / sizeof Cs[0]; k++) {
        const size_t C = Cs[k];
        for (size_t i = 0; i < C; i++) {
            w[i] = 1.0f + 0.01f * (float)i;
            b[i] = 0.5f - 0.02f * (float)i;
        }
        for (size_t r = 0; r < BT; r++)
            for (size_t i = 0; i < C; i++) {
                x[r * C + i] = cs[r];
                g[r * C + i] = 0.1f * (float)((r + 3 * i) % 7) - 0.3f;
            }
        rd_layernorm_forward(out, mean, rstd, x, w, b, BT, C);
        for (size_t r = 0; r < BT; r++) {
            assert_true(mean[r] == cs[r]);
            for (size_t i = 0; i < C; i++)
                if (out[r * C + i] != b[i])
                    fail_msg("C=%zu constant %g: out[%zu] = %.9g, bias %.9g", C, (double)cs[r], i,
                             (double)out[r * C + i], (double)b[i]);
        }
        // Spread 0.08 around 100: fast vs the double-precision twin, forward and backward.
        for (size_t r = 0; r < BT; r++)
            for (size_t i = 0; i < C; i++)
                x[r * C + i] = 100.0f + 0.01f * (float)((i * 5 + r) % 9);
        rd_layernorm_forward(out, mean, rstd, x, w, b, BT, C);
        rd_layernorm_forward_naive(out_n, mean_n, rstd_n, x, w, b, BT, C);
        assert_close(out, out_n, BT * C, NB_TOL, "flat layernorm out vs naive");
        assert_close(rstd, rstd_n, BT, NB_TOL, "flat layernorm rstd vs naive");
        memset(dx, 0, sizeof dx);
        memset(dx_n, 0, sizeof dx_n);
        memset(dw, 0, sizeof dw);
        memset(db, 0, sizeof db);
        memset(dw_n, 0, sizeof dw_n);
        memset(db_n, 0, sizeof db_n);
        rd_layernorm_backward(dx, dw, db, g, x, w, mean, rstd, BT, C);
        rd_layernorm_backward_naive(dx_n, dw_n, db_n, g, x, w, mean_n, rstd_n, BT, C);
        assert_close(dx, dx_n, BT * C, NB_TOL, "flat layernorm dinp vs naive");
        assert_close(dw, dw_n, C, NB_TOL, "flat layernorm dweight vs naive");
    }
}

// Rows whose squared deviations overflow float (a spread of 1e20 .. 1e37, as a diverged input
// would have): the fast forward summed (x - m)^2 in float, got rstd = 1 / sqrt(inf) = 0, and so
// gave every output its bias and every gradient 0, a finite loss that hid the divergence. Fast
// vs the double-precision twin, forward and backward (rstd and dinp compared relative to their
// tiny scale), on rows of the tail-only and the vectorised lengths.
static void test_layernorm_wide_rows(void **state) {
    (void)state;
    enum { BT = 3, CMAX = 35 };
    const size_t Cs[] = {5, 35};
    const float scale[BT] = {1e20f, 3e30f, 1e37f};
    float x[BT * CMAX], w[CMAX], b[CMAX], out[BT * CMAX], out_n[BT * CMAX];
    float mean[BT], rstd[BT], mean_n[BT], rstd_n[BT];
    float g[BT * CMAX], dx[BT * CMAX], dx_n[BT * CMAX], dw[CMAX], db[CMAX], dw_n[CMAX], db_n[CMAX];
    for (size_t k = 0; k < sizeof Cs / sizeof Cs[0]; k++) {
        const size_t C = Cs[k];
        for (size_t i = 0; i < C; i++) {
            w[i] = 1.0f + 0.01f * (float)i;
            b[i] = 0.5f - 0.02f * (float)i;
        }
        for (size_t r = 0; r < BT; r++)
            for (size_t i = 0; i < C; i++) {
                x[r * C + i] = scale[r] * (0.1f * (float)((i * 5 + r) % 9) - 0.3f);
                g[r * C + i] = 0.1f * (float)((r + 3 * i) % 7) - 0.3f;
            }
        rd_layernorm_forward(out, mean, rstd, x, w, b, BT, C);
        rd_layernorm_forward_naive(out_n, mean_n, rstd_n, x, w, b, BT, C);
        assert_close(out, out_n, BT * C, NB_TOL, "wide layernorm out vs naive");
        for (size_t r = 0; r < BT; r++)
            if (!(fabsf(rstd[r] - rstd_n[r]) <= 1e-5f * rstd_n[r]) ||
                !(fabsf(mean[r] - mean_n[r]) <= 1e-5f * scale[r]))
                fail_msg("wide layernorm C=%zu row %zu: mean %g rstd %g, naive %g %g", C, r,
                         (double)mean[r], (double)rstd[r], (double)mean_n[r], (double)rstd_n[r]);
        memset(dx, 0, sizeof dx);
        memset(dx_n, 0, sizeof dx_n);
        memset(dw, 0, sizeof dw);
        memset(db, 0, sizeof db);
        memset(dw_n, 0, sizeof dw_n);
        memset(db_n, 0, sizeof db_n);
        rd_layernorm_backward(dx, dw, db, g, x, w, mean, rstd, BT, C);
        rd_layernorm_backward_naive(dx_n, dw_n, db_n, g, x, w, mean_n, rstd_n, BT, C);
        assert_close(dw, dw_n, C, NB_TOL, "wide layernorm dweight vs naive");
        assert_close(db, db_n, C, NB_TOL, "wide layernorm dbias vs naive");
        for (size_t r = 0; r < BT; r++) // dinp scales as rstd: compare it in units of rstd
            for (size_t i = 0; i < C; i++) {
                dx[r * C + i] /= rstd_n[r];
                dx_n[r * C + i] /= rstd_n[r];
            }
        assert_close(dx, dx_n, BT * C, NB_TOL, "wide layernorm dinp / rstd vs naive");
    }
}

static void test_layernorm(void **state) {
    (void)state;
    layernorm_case(5, 12, 3);  // C < LANES: the scalar tail only
    layernorm_case(5, 17, 31); // one vectorised block and a tail of 1
    layernorm_case(3, 35, 32); // two blocks and a tail of 3
}

// ---------------------------------------------------------------------------------------------
// Embedding pooling

typedef struct emb_ctx {
    size_t B, S, U, D;
    int pooling;
    const int32_t *idx;
    float *rows, *out, *wout;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    rd_embedding_pool_forward(c->out, c->rows, c->idx, c->B, c->S, c->U, c->D, c->pooling);
    return dotw(c->out, c->wout, c->B * c->D);
}

static void test_embedding_pool(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 12);
    enum { B = 3, S = 3, U = 6, D = 4 };
    const int32_t idx[B * S] = {0, 2, -1, -1, -1, -1, 5, 5, 1};
    float *rows = take(&A, U * D), *out = take(&A, B * D);
    for (size_t u = 0; u < U; u++)
        for (size_t i = 0; i < D; i++)
            rows[u * D + i] = (float)(u * 10 + i);
    rd_embedding_pool_forward(out, rows, idx, B, S, U, D, RD_POOL_SUM);
    for (size_t i = 0; i < D; i++) {
        assert_true(out[i] == rows[i] + rows[2 * D + i]);
        assert_true(out[D + i] == 0.0f); // all slots empty
        assert_true(out[2 * D + i] == 2.0f * rows[5 * D + i] + rows[D + i]);
    }
    rd_embedding_pool_forward(out, rows, idx, B, S, U, D, RD_POOL_MEAN);
    for (size_t i = 0; i < D; i++) {
        assert_true(fabsf(out[i] - (rows[i] + rows[2 * D + i]) / 2.0f) < 1e-5f);
        assert_true(out[D + i] == 0.0f);
        assert_true(fabsf(out[2 * D + i] - (2.0f * rows[5 * D + i] + rows[D + i]) / 3.0f) < 1e-4f);
    }
    // Scatter-add: with dout = 1 the gradient of a row counts its (weighted) uses.
    float *ones = take(&A, B * D), *drows = take(&A, U * D);
    for (size_t i = 0; i < B * D; i++)
        ones[i] = 1.0f;
    rd_embedding_pool_backward(drows, ones, idx, B, S, U, D, RD_POOL_SUM);
    const float cnt_sum[U] = {1, 1, 1, 0, 0, 2};
    for (size_t u = 0; u < U; u++)
        assert_true(drows[u * D] == cnt_sum[u]);
    memset(drows, 0, U * D * sizeof(float));
    rd_embedding_pool_backward(drows, ones, idx, B, S, U, D, RD_POOL_MEAN);
    const float cnt_mean[U] = {0.5f, 1.0f / 3.0f, 0.5f, 0, 0, 2.0f / 3.0f};
    for (size_t u = 0; u < U; u++)
        assert_true(fabsf(drows[u * D + 3] - cnt_mean[u]) < 1e-6f);
    // FD through both poolings.
    rd_rng r;
    rd_rng_seed(&r, 4);
    for (int pooling = RD_POOL_SUM; pooling <= RD_POOL_MEAN; pooling++) {
        emb_ctx c = {
            B, S, U, D, pooling, idx, rnd(&A, &r, U * D, 1.0f), out, rnd(&A, &r, B * D, 1)};
        memset(drows, 0, U * D * sizeof(float));
        emb_loss(&c);
        rd_embedding_pool_backward(drows, c.wout, idx, B, S, U, D, pooling);
        fdt t = {"rows", c.rows, drows, U * D};
        fd_check(&c, emb_loss, &t, 1, pooling == RD_POOL_SUM ? "pool sum" : "pool mean");
    }
    arena_free(&A);
}

// ---------------------------------------------------------------------------------------------
// Concat

static void test_concat(void **state) {
    (void)state;
    const float a[2 * 2] = {1, 2, 3, 4}, b[2 * 3] = {5, 6, 7, 8, 9, 10};
    const float *inps[2] = {a, b};
    const size_t widths[2] = {2, 3};
    float out[2 * 5];
    rd_concat_forward(out, inps, widths, 2, 2);
    const float want[10] = {1, 2, 5, 6, 7, 3, 4, 8, 9, 10};
    assert_memory_equal(out, want, sizeof want);
    float da[4] = {0}, db[6] = {1, 1, 1, 1, 1, 1};
    float *dinps[2] = {da, NULL}; // second block frozen
    rd_concat_backward(dinps, want, widths, 2, 2);
    assert_memory_equal(da, a, sizeof da);
    dinps[1] = db;
    dinps[0] = NULL;
    rd_concat_backward(dinps, want, widths, 2, 2);
    for (size_t i = 0; i < 6; i++)
        assert_true(db[i] == b[i] + 1.0f);
}

// ---------------------------------------------------------------------------------------------
// Self-attention

typedef struct attn_ctx {
    size_t B, T, C, NH;
    int causal;
    const float *mask;
    float *qkv, *out, *att, *wout;
} attn_ctx;

static double attn_loss(void *p) {
    attn_ctx *c = p;
    rd_attention_forward(c->out, c->att, c->qkv, c->mask, c->B, c->T, c->C, c->NH, c->causal);
    return dotw(c->out, c->wout, c->B * c->T * c->C);
}

// Example 2 of mask (B, T) must be fully padded.
static void
attention_case(size_t B, size_t T, size_t C, size_t NH, const float *mask, uint64_t seed) {
    arena A;
    arena_init(&A, 1 << 18);
    rd_rng r;
    rd_rng_seed(&r, seed);
    for (int causal = 0; causal <= 1; causal++) {
        attn_ctx c = {B, T, C, NH, causal, mask, NULL, NULL, NULL, NULL};
        c.qkv = rnd(&A, &r, B * T * 3 * C, 0.8f);
        c.out = take(&A, B * T * C);
        c.att = take(&A, B * NH * T * T);
        c.wout = rnd(&A, &r, B * T * C, 1.0f);
        // The fast kernel skips the queries after an example's last valid position (0 output,
        // no gradient): the loss puts no weight on them, as rd_tblock's callers do not.
        size_t span[8];
        assert_true(B <= 8);
        for (size_t b = 0; b < B; b++) {
            span[b] = T;
            while (span[b] > 0 && mask[b * T + span[b] - 1] == 0.0f)
                span[b]--;
            memset(c.wout + (b * T + span[b]) * C, 0, (T - span[b]) * C * sizeof(float));
        }
        float *dqkv = take(&A, B * T * 3 * C), *scratch = take(&A, T * T);
        attn_loss(&c);
        // Probabilities: rows sum to 1 over visible keys, 0 on hidden ones, fully padded -> 0.
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < NH; h++)
                for (size_t i = 0; i < T; i++) {
                    const float *row = c.att + ((b * NH + h) * T + i) * T;
                    float sum = 0.0f;
                    int any = 0;
                    for (size_t j = 0; j < T; j++) {
                        int vis = i < span[b] && mask[b * T + j] != 0.0f && (!causal || j <= i);
                        any |= vis;
                        if (!vis && row[j] != 0.0f)
                            fail_msg("attention T=%zu: p[%zu, %zu, %zu, %zu] = %g on a hidden key",
                                     T, b, h, i, j, (double)row[j]);
                        sum += row[j];
                    }
                    assert_true(any ? fabsf(sum - 1.0f) < 1e-5f : sum == 0.0f);
                }
        for (size_t b = 0; b < B; b++) // skipped queries, and the fully padded example 2
            assert_true(all_zero(c.out + (b * T + span[b]) * C, (T - span[b]) * C));
        rd_attention_backward(dqkv, scratch, c.wout, c.qkv, c.att, mask, B, T, C, NH, causal);
        assert_true(all_zero(dqkv + 2 * T * 3 * C, T * 3 * C));
        char label[64];
        snprintf(label, sizeof label, "%sattention T=%zu C=%zu", causal ? "causal " : "", T, C);
        fdt t = {"qkv", c.qkv, dqkv, B * T * 3 * C};
        fd_check(&c, attn_loss, &t, 1, label);

        float *out_n = take(&A, B * T * C), *att_n = take(&A, B * NH * T * T);
        rd_attention_forward_naive(out_n, att_n, c.qkv, mask, B, T, C, NH, causal);
        for (size_t b = 0; b < B; b++) { // the queries up to the last valid position
            assert_close(c.out + b * T * C, out_n + b * T * C, span[b] * C, NB_TOL,
                         "attention out vs naive");
            for (size_t h = 0; h < NH; h++)
                assert_close(c.att + (b * NH + h) * T * T, att_n + (b * NH + h) * T * T,
                             span[b] * T, NB_TOL, "attention probabilities vs naive");
        }
        float *dqkv_n = take(&A, B * T * 3 * C);
        memset(dqkv, 0, B * T * 3 * C * sizeof(float));
        rd_attention_backward(dqkv, scratch, c.wout, c.qkv, c.att, mask, B, T, C, NH, causal);
        rd_attention_backward_naive(dqkv_n, scratch, c.wout, c.qkv, att_n, mask, B, T, C, NH,
                                    causal);
        assert_close(dqkv, dqkv_n, B * T * 3 * C, NB_TOL, "attention dqkv vs naive");
    }
    // Without a mask every key is visible: same as an all-ones mask.
    float *qkv = rnd(&A, &r, B * T * 3 * C, 1.0f), *o1 = take(&A, B * T * C);
    float *o2 = take(&A, B * T * C), *att = take(&A, B * NH * T * T), *ones = take(&A, B * T);
    for (size_t i = 0; i < B * T; i++)
        ones[i] = 1.0f;
    rd_attention_forward(o1, att, qkv, NULL, B, T, C, NH, 0);
    rd_attention_forward(o2, att, qkv, ones, B, T, C, NH, 0);
    assert_memory_equal(o1, o2, B * T * C * sizeof(float));
    arena_free(&A);
}

static void test_attention(void **state) {
    (void)state;
    // Example 0 all valid, example 1 with padding, example 2 fully padded.
    const float mask[3 * 5] = {1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0};
    attention_case(3, 5, 8, 2, mask, 5);
    // Rows of 17 and 35 keys: the vectorised softmax (forward and backward) with padding in it.
    float big[4 * 35];
    seq_mask(big, 4, 17);
    assert_true(pads_vector_region(big, 4, 17));
    attention_case(4, 17, 17, 1, big, 51);
    seq_mask(big, 4, 35);
    attention_case(4, 35, 18, 2, big, 52);
}

// ---------------------------------------------------------------------------------------------
// Target attention

typedef struct tattn_ctx {
    size_t B, T, C, NH;
    const float *mask;
    float *q, *kv, *out, *att, *wout;
} tattn_ctx;

static double tattn_loss(void *p) {
    tattn_ctx *c = p;
    rd_target_attention_forward(c->out, c->att, c->q, c->kv, c->mask, c->B, c->T, c->C, c->NH);
    return dotw(c->out, c->wout, c->B * c->C);
}

// Example 2 of mask (B, T) must be fully padded.
static void
target_attention_case(size_t B, size_t T, size_t C, size_t NH, const float *mask, uint64_t seed) {
    arena A;
    arena_init(&A, 1 << 15);
    rd_rng r;
    rd_rng_seed(&r, seed);
    tattn_ctx c = {B, T, C, NH, mask, NULL, NULL, NULL, NULL, NULL};
    c.q = rnd(&A, &r, B * C, 1.0f);
    c.kv = rnd(&A, &r, B * T * 2 * C, 1.0f);
    c.out = take(&A, B * C);
    c.att = take(&A, B * NH * T);
    c.wout = rnd(&A, &r, B * C, 1.0f);
    float *dq = take(&A, B * C), *dkv = take(&A, B * T * 2 * C), *scratch = take(&A, T);
    tattn_loss(&c);
    assert_true(all_zero(c.out + 2 * C, C)); // fully padded example
    for (size_t b = 0; b < B; b++)           // no weight on padding
        for (size_t h = 0; h < NH; h++)
            for (size_t t = 0; t < T; t++)
                if (mask[b * T + t] == 0.0f)
                    assert_true(c.att[(b * NH + h) * T + t] == 0.0f);
    rd_target_attention_backward(dq, dkv, scratch, c.wout, c.q, c.kv, c.att, mask, B, T, C, NH);
    char label[64];
    snprintf(label, sizeof label, "target attention T=%zu", T);
    fdt ts[] = {{"q", c.q, dq, B * C}, {"kv", c.kv, dkv, B * T * 2 * C}};
    fd_check(&c, tattn_loss, ts, 2, label);

    float *out_n = take(&A, B * C), *att_n = take(&A, B * NH * T);
    rd_target_attention_forward_naive(out_n, att_n, c.q, c.kv, mask, B, T, C, NH);
    assert_close(c.out, out_n, B * C, NB_TOL, "target attention out vs naive");
    assert_close(c.att, att_n, B * NH * T, NB_TOL, "target attention probabilities vs naive");
    float *dq_n = take(&A, B * C), *dkv_n = take(&A, B * T * 2 * C);
    rd_target_attention_backward_naive(dq_n, dkv_n, scratch, c.wout, c.q, c.kv, att_n, mask, B, T,
                                       C, NH);
    assert_close(dq, dq_n, B * C, NB_TOL, "target attention dq vs naive");
    assert_close(dkv, dkv_n, B * T * 2 * C, NB_TOL, "target attention dkv vs naive");
    arena_free(&A);
}

static void test_target_attention(void **state) {
    (void)state;
    const float mask[3 * 6] = {1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    target_attention_case(3, 6, 8, 2, mask, 6);
    float big[4 * 35];
    seq_mask(big, 4, 17);
    target_attention_case(4, 17, 17, 1, big, 61);
    seq_mask(big, 4, 35);
    target_attention_case(4, 35, 18, 2, big, 62);
}

// Keys at masked positions may hold garbage (NaN or inf in a padded position's key, so that its
// score is NaN or inf). The softmax must drop a masked score without reading it, as the naive
// twin does: the fast one multiplied exp(s - max) by the mask, and 0 * NaN spread NaN through
// the row's sum to every probability, to the output and to every gradient. Planted at each head's
// first key dimension of the masked positions t: NaN (t % 3 == 0), +inf (1) or -inf (2).
static void
plant_masked_keys(float *k, size_t kstride, const float *m, size_t T, size_t C, size_t NH) {
    for (size_t t = 0; t < T; t++)
        for (size_t h = 0; h < NH && m[t] == 0.0f; h++)
            k[t * kstride + h * (C / NH)] = t % 3 == 0 ? NAN : t % 3 == 1 ? INFINITY : -INFINITY;
}

// The backward twins agree with garbage keys: equal NaN positions (a garbage key still reaches
// dq as its probability 0 times itself, 0 * NaN, in both twins) and close finite values, with
// the finite values required to be most of them (dk and dv stay finite).
static void assert_close_same_nan(const float *a, const float *b, size_t n, const char *what) {
    size_t finite = 0;
    float mx = 1e-3f, err = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i]) || isinf(a[i]) || isinf(b[i]))
            fail_msg("%s: %g vs %g at %zu", what, (double)a[i], (double)b[i], i);
        if (isnan(b[i]))
            continue;
        finite++;
        err = fabsf(a[i] - b[i]) > err ? fabsf(a[i] - b[i]) : err;
        mx = fabsf(b[i]) > mx ? fabsf(b[i]) : mx;
    }
    if (!(err <= NB_TOL * mx) || finite < n / 2)
        fail_msg("%s: max abs difference %.3g (scale %.3g), %zu of %zu finite", what, (double)err,
                 (double)mx, finite, n);
}

static void test_attention_masked_garbage(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 18);
    rd_rng r;
    rd_rng_seed(&r, 71);
    // T = 35: the vectorised softmax body and its tail. Example 0 is padded at scattered
    // positions (t % 5 == 2, inside the first 16 keys too) and at its end, example 1 on a prefix.
    enum { B = 2, T = 35, C = 8, NH = 2 };
    float mask[B * T];
    for (size_t t = 0; t < T; t++) {
        mask[t] = t % 5 == 2 || t >= T - 3 ? 0.0f : 1.0f;
        mask[T + t] = t < 7 ? 0.0f : 1.0f;
    }
    const size_t span[B] = {T - 3, T};
    float *qkv = take(&A, B * T * 3 * C), *out = take(&A, B * T * C), *out_n = take(&A, B * T * C);
    float *att = take(&A, B * NH * T * T), *att_n = take(&A, B * NH * T * T);
    float *dout = take(&A, B * T * C), *dqkv = take(&A, B * T * 3 * C);
    float *dqkv_n = take(&A, B * T * 3 * C), *scratch = take(&A, T * T);
    for (int causal = 0; causal <= 1; causal++) {
        fill(qkv, B * T * 3 * C, &r, 0.8f);
        fill(dout, B * T * C, &r, 1.0f);
        for (size_t b = 0; b < B; b++) {
            plant_masked_keys(qkv + b * T * 3 * C + C, 3 * C, mask + b * T, T, C, NH);
            memset(dout + (b * T + span[b]) * C, 0, (T - span[b]) * C * sizeof(float));
        }
        rd_attention_forward(out, att, qkv, mask, B, T, C, NH, causal);
        rd_attention_forward_naive(out_n, att_n, qkv, mask, B, T, C, NH, causal);
        for (size_t b = 0; b < B; b++) {
            assert_close(out + b * T * C, out_n + b * T * C, span[b] * C, NB_TOL,
                         "attention out with garbage masked keys vs naive");
            for (size_t h = 0; h < NH; h++)
                assert_close(att + (b * NH + h) * T * T, att_n + (b * NH + h) * T * T, span[b] * T,
                             NB_TOL, "attention probabilities with garbage masked keys vs naive");
        }
        memset(dqkv, 0, B * T * 3 * C * sizeof(float));
        memset(dqkv_n, 0, B * T * 3 * C * sizeof(float));
        rd_attention_backward(dqkv, scratch, dout, qkv, att, mask, B, T, C, NH, causal);
        rd_attention_backward_naive(dqkv_n, scratch, dout, qkv, att_n, mask, B, T, C, NH, causal);
        for (size_t b = 0; b < B; b++) // the naive twin's dq after the span: 0 * NaN too
            assert_close_same_nan(dqkv + b * T * 3 * C, dqkv_n + b * T * 3 * C, span[b] * 3 * C,
                                  "attention dqkv with garbage masked keys vs naive");
    }
    // Target attention over the same masks.
    float *q = rnd(&A, &r, B * C, 1.0f), *kv = rnd(&A, &r, B * T * 2 * C, 1.0f);
    float *tdout = rnd(&A, &r, B * C, 1.0f), *tatt = take(&A, B * NH * T);
    float *tatt_n = take(&A, B * NH * T), *dq = take(&A, B * C), *dq_n = take(&A, B * C);
    float *dkv = take(&A, B * T * 2 * C), *dkv_n = take(&A, B * T * 2 * C);
    for (size_t b = 0; b < B; b++)
        plant_masked_keys(kv + b * T * 2 * C, 2 * C, mask + b * T, T, C, NH);
    rd_target_attention_forward(out, tatt, q, kv, mask, B, T, C, NH);
    rd_target_attention_forward_naive(out_n, tatt_n, q, kv, mask, B, T, C, NH);
    assert_close(out, out_n, B * C, NB_TOL, "target attention out with garbage masked keys");
    assert_close(tatt, tatt_n, B * NH * T, NB_TOL,
                 "target attention probabilities with garbage masked keys");
    rd_target_attention_backward(dq, dkv, scratch, tdout, q, kv, tatt, mask, B, T, C, NH);
    rd_target_attention_backward_naive(dq_n, dkv_n, scratch, tdout, q, kv, tatt_n, mask, B, T, C,
                                       NH);
    assert_close_same_nan(dkv, dkv_n, B * T * 2 * C,
                          "target attention dkv with garbage masked keys vs naive");
    assert_close_same_nan(dq, dq_n, B * C, "target attention dq with garbage masked keys vs naive");
    arena_free(&A);
}

// ---------------------------------------------------------------------------------------------
// Masked mean

typedef struct mm_ctx {
    size_t B, T, C;
    const float *mask;
    float *inp, *out, *wout;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    rd_masked_mean_forward(c->out, c->inp, c->mask, c->B, c->T, c->C);
    return dotw(c->out, c->wout, c->B * c->C);
}

static void test_masked_mean(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 12);
    rd_rng r;
    rd_rng_seed(&r, 7);
    enum { B = 3, T = 4, C = 3 };
    const float mask[B * T] = {1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0};
    mm_ctx c = {
        B, T, C, mask, rnd(&A, &r, B * T * C, 1.0f), take(&A, B * C), rnd(&A, &r, B * C, 1)};
    mm_loss(&c);
    for (size_t i = 0; i < C; i++)
        assert_true(fabsf(c.out[C + i] - (c.inp[(T + 1) * C + i] + c.inp[(T + 3) * C + i]) / 2.0f) <
                    1e-6f);
    assert_true(all_zero(c.out + 2 * C, C));
    float *dinp = take(&A, B * T * C);
    rd_masked_mean_backward(dinp, c.wout, mask, B, T, C);
    fdt t = {"inp", c.inp, dinp, B * T * C};
    fd_check(&c, mm_loss, &t, 1, "masked mean");
    arena_free(&A);
}

// ---------------------------------------------------------------------------------------------
// Losses

typedef struct loss_ctx {
    size_t B;
    float T;
    int distill;
    float *z, *y, *zt, *losses, *wout;
} loss_ctx;

static double loss_loss(void *p) {
    loss_ctx *c = p;
    if (c->distill)
        rd_distill_bce_forward(c->losses, c->z, c->zt, c->T, c->B);
    else
        rd_bce_logits_forward(c->losses, c->z, c->y, c->B);
    return dotw(c->losses, c->wout, c->B);
}

static void test_losses(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 12);
    rd_rng r;
    rd_rng_seed(&r, 8);
    enum { B = 9 };
    loss_ctx c = {B, 2.0f, 0, NULL, NULL, NULL, NULL, NULL};
    c.z = rnd(&A, &r, B, 2.0f);
    c.y = take(&A, B);
    for (size_t b = 0; b < B; b++)
        c.y[b] = (float)(b % 2);
    c.zt = rnd(&A, &r, B, 2.0f);
    c.losses = take(&A, B);
    c.wout = rnd(&A, &r, B, 1.0f);
    float *dz = take(&A, B);
    for (c.distill = 0; c.distill <= 1; c.distill++) {
        memset(dz, 0, B * sizeof(float));
        loss_loss(&c);
        if (c.distill)
            rd_distill_bce_backward(dz, c.wout, c.z, c.zt, c.T, B);
        else
            rd_bce_logits_backward(dz, c.wout, c.z, c.y, B);
        fdt t = {"logits", c.z, dz, B};
        fd_check(&c, loss_loss, &t, 1, c.distill ? "distill bce" : "bce");
    }
    // Known values and extremes.
    float z[4] = {0.0f, 100.0f, -100.0f, 30.0f}, y[4] = {1, 0, 0, 1}, l[4];
    rd_bce_logits_forward(l, z, y, 4);
    assert_true(fabsf(l[0] - logf(2.0f)) < 1e-6f);
    assert_true(fabsf(l[1] - 100.0f) < 1e-4f);
    assert_true(l[2] >= 0.0f && l[2] < 1e-30f);
    assert_true(l[3] >= 0.0f && l[3] < 1e-12f);
    float g[4] = {0}, ones[4] = {1, 1, 1, 1};
    rd_bce_logits_backward(g, ones, z, y, 4);
    assert_true(fabsf(g[0] + 0.5f) < 1e-6f && fabsf(g[1] - 1.0f) < 1e-6f && fabsf(g[2]) < 1e-30f);
    // Distillation at T = 1 is BCE against the soft label sigma(z_t); zero gradient at z = z_t.
    float zt[4] = {0.3f, -2.0f, 4.0f, 30.0f}, soft[4], ld[4], lb[4];
    for (int i = 0; i < 4; i++)
        soft[i] = 1.0f / (1.0f + expf(-zt[i]));
    rd_distill_bce_forward(ld, z, zt, 1.0f, 4);
    rd_bce_logits_forward(lb, z, soft, 4);
    assert_close(ld, lb, 4, 1e-6f, "distill at T=1 vs soft-label BCE");
    memset(g, 0, sizeof g);
    rd_distill_bce_backward(g, ones, zt, zt, 3.0f, 4);
    for (int i = 0; i < 4; i++)
        assert_true(fabsf(g[i]) < 1e-6f);
    // At T != 1 the loss is T^2 * BCE(sigma(z / T), sigma(z_t / T)) and its gradient
    // T * (sigma(z / T) - sigma(z_t / T)): the finite differences above check the two against
    // each other only, so a T^2 missing from both would pass them.
    const float T = 2.0f;
    float zs[4];
    for (int i = 0; i < 4; i++) {
        zs[i] = z[i] / T;
        soft[i] = 1.0f / (1.0f + expf(-zt[i] / T));
    }
    rd_distill_bce_forward(ld, z, zt, T, 4);
    rd_bce_logits_forward(lb, zs, soft, 4);
    for (int i = 0; i < 4; i++)
        lb[i] *= T * T;
    assert_close(ld, lb, 4, 1e-6f, "distill at T=2 vs T^2 soft-label BCE of z / T");
    memset(g, 0, sizeof g);
    rd_distill_bce_backward(g, ones, z, zt, T, 4);
    for (int i = 0; i < 4; i++) {
        float want = T * (1.0f / (1.0f + expf(-zs[i])) - soft[i]);
        assert_true(fabsf(g[i] - want) < 1e-6f);
    }
    arena_free(&A);
}

// ---------------------------------------------------------------------------------------------
// DIN

typedef struct din_ctx {
    rd_seq_dims d;
    const float *mask;
    float *q, *k, *out, *wout;
    rd_din_weights w;
    rd_din_acts a;
    int naive;
} din_ctx;

static void din_alloc(arena *A,
                      rd_rng *r,
                      const rd_seq_dims *d,
                      rd_din_weights *w,
                      rd_din_weights *dw,
                      rd_din_acts *a,
                      rd_din_scratch *s,
                      size_t feat_w) { // 2: rd_din_*'s [k, q * k] rows; 4: the naive twin's
    size_t B = d->B, T = d->T, C = d->C, H = d->H;
    w->w1 = rnd(A, r, H * 4 * C, 0.4f);
    w->b1 = rnd(A, r, H, 0.1f);
    w->w2 = rnd(A, r, H, 0.5f);
    w->b2 = rnd(A, r, 1, 0.1f);
    dw->w1 = take(A, H * 4 * C);
    dw->b1 = take(A, H);
    dw->w2 = take(A, H);
    dw->b2 = take(A, 1);
    a->feat = take(A, B * T * feat_w * C);
    a->hid = take(A, B * T * H);
    a->hid_act = take(A, B * T * H);
    a->score = take(A, B * T);
    a->att = take(A, B * T);
    a->fold = take(A, rd_din_fold_floats(d));
    s->dfeat = take(A, B * T * feat_w * C);
    s->dhid = take(A, B * T * H);
    s->dhid_act = take(A, B * T * H);
    s->dscore = take(A, B * T);
    s->dfold = take(A, rd_din_fold_floats(d));
}

static double din_loss(void *p) {
    din_ctx *c = p;
    if (c->naive)
        rd_din_forward_naive(c->out, &c->a, c->q, c->k, c->mask, &c->w, &c->d);
    else
        rd_din_forward(c->out, &c->a, c->q, c->k, c->mask, &c->w, &c->d);
    return dotw(c->out, c->wout, c->d.B * c->d.C);
}

// An example whose mask row is all 0 must give an output of 0.
static void din_case(const rd_seq_dims *dims, const float *mask, uint64_t seed) {
    arena A;
    arena_init(&A, 1 << 17);
    rd_rng r;
    rd_rng_seed(&r, seed);
    rd_seq_dims d = *dims;
    size_t H = d.H, C4 = 4 * d.C;
    din_ctx c = {.d = d, .mask = mask};
    rd_din_weights dw;
    rd_din_scratch s;
    din_alloc(&A, &r, &d, &c.w, &dw, &c.a, &s, 2);
    c.q = rnd(&A, &r, d.B * d.C, 1.0f);
    c.k = rnd(&A, &r, d.B * d.T * d.C, 1.0f);
    c.out = take(&A, d.B * d.C);
    c.wout = rnd(&A, &r, d.B * d.C, 1.0f);
    float *dq = take(&A, d.B * d.C), *dk = take(&A, d.B * d.T * d.C);
    din_loss(&c);
    for (size_t b = 0; b < d.B; b++)
        if (all_zero(mask + b * d.T, d.T))
            assert_true(all_zero(c.out + b * d.C, d.C));
    for (size_t i = 0; i < d.B * d.T; i++) // no attention weight on padding
        if (mask[i] == 0.0f)
            assert_true(c.a.att[i] == 0.0f);
    rd_din_backward(dq, dk, &dw, &s, c.wout, c.q, c.k, mask, &c.a, &c.w, &d);
    char label[64];
    snprintf(label, sizeof label, "din T=%zu C=%zu", d.T, d.C);
    fdt ts[] = {{"q", c.q, dq, d.B * d.C},
                {"k", c.k, dk, d.B * d.T * d.C},
                {"w1", c.w.w1, dw.w1, H * C4},
                {"b1", c.w.b1, dw.b1, H},
                {"w2", c.w.w2, dw.w2, H}};
    fd_check(&c, din_loss, ts, 5, label);
    // b2 shifts every score equally: softmax removes it, so its gradient must be exactly 0.
    assert_true(fabsf(dw.b2[0]) < 1e-5f);

    // Naive twin.
    float *out_b = take(&A, d.B * d.C);
    memcpy(out_b, c.out, d.B * d.C * sizeof(float));
    rd_din_weights dw_n;
    rd_din_acts a_n;
    rd_din_scratch s_n;
    rd_din_weights w_save = c.w;
    din_alloc(&A, &r, &d, &c.w, &dw_n, &a_n, &s_n, 4);
    c.w = w_save;
    c.a = a_n;
    c.naive = 1;
    din_loss(&c);
    assert_close(c.out, out_b, d.B * d.C, NB_TOL, "din out vs naive");
    float *dq_n = take(&A, d.B * d.C), *dk_n = take(&A, d.B * d.T * d.C);
    rd_din_backward_naive(dq_n, dk_n, &dw_n, &s_n, c.wout, c.q, c.k, mask, &a_n, &c.w, &d);
    assert_close(dq, dq_n, d.B * d.C, NB_TOL, "din dq vs naive");
    assert_close(dk, dk_n, d.B * d.T * d.C, NB_TOL, "din dk vs naive");
    assert_close(dw.w1, dw_n.w1, H * C4, NB_TOL, "din dw1 vs naive");
    assert_close(dw.b1, dw_n.b1, H, NB_TOL, "din db1 vs naive");
    assert_close(dw.w2, dw_n.w2, H, NB_TOL, "din dw2 vs naive");
    assert_true(fabsf(dw_n.b2[0]) < 1e-5f); // 0 up to rounding, as above
    arena_free(&A);
}

static void test_din(void **state) {
    (void)state;
    rd_seq_dims d = {.B = 3, .T = 4, .C = 4, .NH = 1, .H = 6, .act = RD_ACT_GELU};
    const float mask[12] = {1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0};
    din_case(&d, mask, 9);
    // No padding at all: every position is a row.
    const float full[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    din_case(&d, full, 10);
    // Softmax rows of 17 and 35 keys, padded inside the vectorised region.
    float big[4 * 35];
    d = (rd_seq_dims){.B = 4, .T = 17, .C = 17, .NH = 1, .H = 6, .act = RD_ACT_GELU};
    seq_mask(big, d.B, d.T);
    din_case(&d, big, 91);
    d = (rd_seq_dims){.B = 4, .T = 35, .C = 18, .NH = 1, .H = 5, .act = RD_ACT_SIGMOID};
    seq_mask(big, d.B, d.T);
    din_case(&d, big, 92);
}

// ---------------------------------------------------------------------------------------------
// Transformer block

typedef struct tb_ctx {
    rd_seq_dims d;
    const float *mask;
    float *inp, *out, *wout;
    rd_tblock_weights w;
    rd_tblock_acts a;
    int naive;
} tb_ctx;

static void tb_weights(arena *A, rd_rng *r, size_t C, rd_tblock_weights *w, int random) {
    float s = random ? 1.0f : 0.0f;
    w->ln1w = rnd(A, r, C, 0.1f * s);
    w->ln1b = rnd(A, r, C, 0.1f * s);
    w->qkvw = rnd(A, r, 3 * C * C, 0.3f * s);
    w->qkvb = rnd(A, r, 3 * C, 0.1f * s);
    w->projw = rnd(A, r, C * C, 0.3f * s);
    w->projb = rnd(A, r, C, 0.1f * s);
    w->ln2w = rnd(A, r, C, 0.1f * s);
    w->ln2b = rnd(A, r, C, 0.1f * s);
    w->fcw = rnd(A, r, 4 * C * C, 0.3f * s);
    w->fcb = rnd(A, r, 4 * C, 0.1f * s);
    w->fcprojw = rnd(A, r, 4 * C * C, 0.2f * s);
    w->fcprojb = rnd(A, r, C, 0.1f * s);
    if (random)
        for (size_t i = 0; i < C; i++) {
            w->ln1w[i] += 1.0f;
            w->ln2w[i] += 1.0f;
        }
}

static void tb_acts(arena *A, const rd_seq_dims *d, rd_tblock_acts *a) {
    size_t BT = d->B * d->T, C = d->C;
    a->ln1 = take(A, BT * C);
    a->ln1_mean = take(A, BT);
    a->ln1_rstd = take(A, BT);
    a->qkv = take(A, BT * 3 * C);
    a->att = take(A, d->B * d->NH * d->T * d->T);
    a->atty = take(A, BT * C);
    a->res = take(A, BT * C);
    a->ln2 = take(A, BT * C);
    a->ln2_mean = take(A, BT);
    a->ln2_rstd = take(A, BT);
    a->fch = take(A, BT * 4 * C);
    a->fch_act = take(A, BT * 4 * C);
}

static void tb_scratch(arena *A, const rd_seq_dims *d, rd_tblock_scratch *s) {
    size_t BT = d->B * d->T, C = d->C;
    s->dres = take(A, BT * C);
    s->dln = take(A, BT * C);
    s->dqkv = take(A, BT * 3 * C);
    s->datty = take(A, BT * C);
    s->dfch = take(A, BT * 4 * C);
    s->dfch_act = take(A, BT * 4 * C);
    s->datt = take(A, d->T * d->T);
}

static double tb_loss(void *p) {
    tb_ctx *c = p;
    if (c->naive)
        rd_tblock_forward_naive(c->out, &c->a, c->inp, c->mask, &c->w, &c->d);
    else
        rd_tblock_forward(c->out, &c->a, c->inp, c->mask, &c->w, &c->d);
    return dotw(c->out, c->wout, c->d.B * c->d.T * c->d.C);
}

// The 12 parameter tensors of a block, in declaration order, with their sizes.
static size_t tb_tensors(const rd_tblock_weights *w, size_t C, float **x, size_t *n) {
    float *p[] = {w->ln1w, w->ln1b, w->qkvw, w->qkvb, w->projw,   w->projb,
                  w->ln2w, w->ln2b, w->fcw,  w->fcb,  w->fcprojw, w->fcprojb};
    size_t sz[] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, 4 * C * C, C};
    for (size_t i = 0; i < 12; i++) {
        x[i] = p[i];
        n[i] = sz[i];
    }
    return 12;
}

static const char *const tb_names[12] = {"ln1w", "ln1b", "qkvw", "qkvb", "projw",   "projb",
                                         "ln2w", "ln2b", "fcw",  "fcb",  "fcprojw", "fcprojb"};

static void tblock_case(size_t B, size_t T, size_t C, size_t NH, const float *mask, uint64_t seed) {
    arena A;
    arena_init(&A, 1 << 18);
    rd_rng r;
    rd_rng_seed(&r, seed);
    for (int causal = 0; causal <= 1; causal++) {
        rd_seq_dims d = {.B = B, .T = T, .C = C, .NH = NH, .causal = causal, .act = RD_ACT_GELU};
        size_t BT = d.B * d.T;
        tb_ctx c = {.d = d, .mask = mask};
        tb_weights(&A, &r, C, &c.w, 1);
        rd_tblock_weights dw;
        tb_weights(&A, &r, C, &dw, 0);
        tb_acts(&A, &d, &c.a);
        rd_tblock_scratch s;
        tb_scratch(&A, &d, &s);
        c.inp = rnd(&A, &r, BT * C, 1.0f);
        c.out = take(&A, BT * C);
        c.wout = rnd(&A, &r, BT * C, 1.0f);
        // A padded position's output is never read (the next block masks it as a key, the
        // request attention pools valid positions only): the loss gives it no weight, and the
        // fast block leaves it 0 (it runs its row-wise layers on the valid rows only).
        for (size_t i = 0; i < BT; i++)
            if (mask[i] == 0.0f)
                memset(c.wout + i * C, 0, C * sizeof(float));
        float *dinp = take(&A, BT * C);
        tb_loss(&c);
        for (size_t i = 0; i < BT; i++)
            if (mask[i] == 0.0f)
                assert_true(all_zero(c.out + i * C, C));
        rd_tblock_backward(dinp, &dw, &s, c.wout, c.inp, mask, &c.a, &c.w, &d);
        float *wx[12], *gx[12];
        size_t nx[12];
        tb_tensors(&c.w, C, wx, nx);
        tb_tensors(&dw, C, gx, nx);
        fdt ts[13] = {{"inp", c.inp, dinp, BT * C}};
        for (size_t i = 0; i < 12; i++)
            ts[i + 1] = (fdt){tb_names[i], wx[i], gx[i], nx[i]};
        char label[64];
        snprintf(label, sizeof label, "%stblock T=%zu C=%zu", causal ? "causal " : "", T, C);
        fd_check(&c, tb_loss, ts, 13, label);

        // Naive twin on the same weights: the output and every gradient.
        float *out_b = take(&A, BT * C);
        memcpy(out_b, c.out, BT * C * sizeof(float));
        c.naive = 1;
        tb_acts(&A, &d, &c.a);
        tb_loss(&c);
        for (size_t i = 0; i < BT; i++) // the naive twin computes padded rows too: not compared
            if (mask[i] == 0.0f)
                memset(c.out + i * C, 0, C * sizeof(float));
        assert_close(c.out, out_b, BT * C, NB_TOL, "tblock out vs naive");
        rd_tblock_weights dw_n;
        tb_weights(&A, &r, C, &dw_n, 0);
        rd_tblock_scratch s_n;
        tb_scratch(&A, &d, &s_n);
        float *dinp_n = take(&A, BT * C);
        rd_tblock_backward_naive(dinp_n, &dw_n, &s_n, c.wout, c.inp, mask, &c.a, &c.w, &d);
        assert_close(dinp, dinp_n, BT * C, NB_TOL, "tblock dinp vs naive");
        float *gn[12];
        tb_tensors(&dw_n, C, gn, nx);
        for (size_t i = 0; i < 12; i++) {
            char what[64];
            snprintf(what, sizeof what, "tblock d%s vs naive", tb_names[i]);
            assert_close(gx[i], gn[i], nx[i], NB_TOL, what);
        }
    }
    arena_free(&A);
}

static void test_tblock(void **state) {
    (void)state;
    const float mask[2 * 5] = {1, 1, 1, 1, 1, 1, 1, 0, 1, 0};
    tblock_case(2, 5, 8, 2, mask, 10);
    // T = 17 rows of attention and C = 18 rows of layer norm run the vectorised bodies.
    float big[4 * 17];
    seq_mask(big, 4, 17);
    tblock_case(4, 17, 18, 2, big, 101);
}

// ---------------------------------------------------------------------------------------------
// Request-query attention

typedef struct ra_ctx {
    rd_seq_dims d;
    const float *mask;
    float *x, *h, *out, *wout;
    rd_reqattn_weights w;
    rd_reqattn_acts a;
    int naive;
} ra_ctx;

static void
ra_weights(arena *A, rd_rng *r, const rd_seq_dims *d, rd_reqattn_weights *w, int random) {
    float s = random ? 1.0f : 0.0f;
    size_t C = d->C, E = d->E;
    w->lnw = rnd(A, r, C, 0.1f * s);
    w->lnb = rnd(A, r, C, 0.1f * s);
    w->qw = rnd(A, r, C * E, 0.4f * s);
    w->qb = rnd(A, r, C, 0.1f * s);
    w->kvw = rnd(A, r, 2 * C * C, 0.4f * s);
    w->kvb = rnd(A, r, 2 * C, 0.1f * s);
    w->projw = rnd(A, r, C * C, 0.4f * s);
    w->projb = rnd(A, r, C, 0.1f * s);
    if (random)
        for (size_t i = 0; i < C; i++)
            w->lnw[i] += 1.0f;
}

static void ra_acts(arena *A, const rd_seq_dims *d, rd_reqattn_acts *a, rd_reqattn_scratch *s) {
    size_t B = d->B, T = d->T, C = d->C;
    a->ln = take(A, B * T * C);
    a->ln_mean = take(A, B * T);
    a->ln_rstd = take(A, B * T);
    a->q = take(A, B * C);
    a->kv = take(A, B * T * 2 * C);
    a->att = take(A, B * d->NH * T);
    a->o = take(A, B * C);
    s->dln = take(A, B * T * C);
    s->dkv = take(A, B * T * 2 * C);
    s->dq = take(A, B * C);
    s->do_ = take(A, B * C);
    s->dp = take(A, T);
}

static double ra_loss(void *p) {
    ra_ctx *c = p;
    if (c->naive)
        rd_reqattn_forward_naive(c->out, &c->a, c->x, c->h, c->mask, &c->w, &c->d);
    else
        rd_reqattn_forward(c->out, &c->a, c->x, c->h, c->mask, &c->w, &c->d);
    return dotw(c->out, c->wout, c->d.B * c->d.C);
}

static size_t ra_tensors(const rd_reqattn_weights *w, const rd_seq_dims *d, float **x, size_t *n) {
    size_t C = d->C, E = d->E;
    float *p[] = {w->lnw, w->lnb, w->qw, w->qb, w->kvw, w->kvb, w->projw, w->projb};
    size_t sz[] = {C, C, C * E, C, 2 * C * C, 2 * C, C * C, C};
    for (size_t i = 0; i < 8; i++) {
        x[i] = p[i];
        n[i] = sz[i];
    }
    return 8;
}

static const char *const ra_names[8] = {"lnw", "lnb", "qw", "qb", "kvw", "kvb", "projw", "projb"};

static void reqattn_case(const rd_seq_dims *dims, const float *mask, uint64_t seed) {
    arena A;
    arena_init(&A, 1 << 17);
    rd_rng r;
    rd_rng_seed(&r, seed);
    rd_seq_dims d = *dims;
    ra_ctx c = {.d = d, .mask = mask};
    ra_weights(&A, &r, &d, &c.w, 1);
    rd_reqattn_weights dw;
    ra_weights(&A, &r, &d, &dw, 0);
    rd_reqattn_scratch s;
    ra_acts(&A, &d, &c.a, &s);
    c.x = rnd(&A, &r, d.B * d.E, 1.0f);
    c.h = rnd(&A, &r, d.B * d.T * d.C, 1.0f);
    c.out = take(&A, d.B * d.C);
    c.wout = rnd(&A, &r, d.B * d.C, 1.0f);
    float *dx = take(&A, d.B * d.E), *dh = take(&A, d.B * d.T * d.C);
    ra_loss(&c);
    rd_reqattn_backward(dx, dh, &dw, &s, c.wout, c.x, c.h, mask, &c.a, &c.w, &d);
    size_t C = d.C, E = d.E;
    float *wx[8], *gx[8];
    size_t nx[8];
    ra_tensors(&c.w, &d, wx, nx);
    ra_tensors(&dw, &d, gx, nx);
    fdt ts[10] = {{"x_req", c.x, dx, d.B * E}, {"h", c.h, dh, d.B * d.T * C}};
    for (size_t i = 0; i < 8; i++)
        ts[i + 2] = (fdt){ra_names[i], wx[i], gx[i], nx[i]};
    char label[64];
    snprintf(label, sizeof label, "request attention T=%zu C=%zu", d.T, C);
    fd_check(&c, ra_loss, ts, 10, label);

    float *out_b = take(&A, d.B * C);
    memcpy(out_b, c.out, d.B * C * sizeof(float));
    rd_reqattn_scratch s_n;
    ra_acts(&A, &d, &c.a, &s_n);
    c.naive = 1;
    ra_loss(&c);
    assert_close(c.out, out_b, d.B * C, NB_TOL, "reqattn out vs naive");
    rd_reqattn_weights dw_n;
    ra_weights(&A, &r, &d, &dw_n, 0);
    float *dx_n = take(&A, d.B * E), *dh_n = take(&A, d.B * d.T * C);
    rd_reqattn_backward_naive(dx_n, dh_n, &dw_n, &s_n, c.wout, c.x, c.h, mask, &c.a, &c.w, &d);
    assert_close(dx, dx_n, d.B * E, NB_TOL, "reqattn dx vs naive");
    assert_close(dh, dh_n, d.B * d.T * C, NB_TOL, "reqattn dh vs naive");
    float *gn[8];
    ra_tensors(&dw_n, &d, gn, nx);
    for (size_t i = 0; i < 8; i++) {
        char what[64];
        snprintf(what, sizeof what, "reqattn d%s vs naive", ra_names[i]);
        assert_close(gx[i], gn[i], nx[i], NB_TOL, what);
    }
    arena_free(&A);
}

static void test_reqattn(void **state) {
    (void)state;
    rd_seq_dims d = {.B = 2, .T = 5, .C = 8, .NH = 2, .E = 6};
    const float mask[10] = {1, 1, 0, 1, 1, 0, 1, 1, 0, 0};
    reqattn_case(&d, mask, 11);
    // 35 keys per softmax row and layer norm over C = 18, with padding inside the first 16 keys.
    float big[4 * 35];
    d = (rd_seq_dims){.B = 4, .T = 35, .C = 18, .NH = 2, .E = 17};
    seq_mask(big, d.B, d.T);
    reqattn_case(&d, big, 111);
}

// ---------------------------------------------------------------------------------------------
// Shared history (serving: B candidates of one request read one history)

// rd_din_forward_shared and rd_reqattn_forward_shared against their plain kernels on B copies of
// the history (the reference: what serving ran before). The shared DIN sums the keys' share of
// its first layer apart from the per-row matmul, and the request attention's key / value matmul
// runs on T rows instead of B T: both round differently, a few ulp.
static void shared_case(size_t B, size_t T, size_t C, const float *hmask, uint64_t seed) {
    arena A;
    arena_init(&A, 1 << 18);
    rd_rng r;
    rd_rng_seed(&r, seed);
    rd_seq_dims d = {.B = B, .T = T, .C = C, .NH = 2, .E = 7, .H = 6, .act = RD_ACT_RELU};
    float *mask = take(&A, B * T), *k = rnd(&A, &r, T * C, 1.0f), *kb = take(&A, B * T * C);
    for (size_t b = 0; b < B; b++) {
        memcpy(mask + b * T, hmask, T * sizeof(float));
        memcpy(kb + b * T * C, k, T * C * sizeof(float));
    }
    // DIN
    rd_din_weights w, dw;
    rd_din_acts a, a_s;
    rd_din_scratch s, s_s;
    din_alloc(&A, &r, &d, &w, &dw, &a, &s, 2);
    rd_din_weights w_save = w;
    din_alloc(&A, &r, &d, &w, &dw, &a_s, &s_s, 2);
    w = w_save;
    float *q = rnd(&A, &r, B * C, 1.0f), *out = take(&A, B * C), *out_s = take(&A, B * C);
    rd_din_forward(out, &a, q, kb, mask, &w, &d);
    rd_din_forward_shared(out_s, &a_s, q, k, hmask, &w, &d);
    char what[64];
    snprintf(what, sizeof what, "shared DIN T=%zu C=%zu", T, C);
    assert_close(out_s, out, B * C, 1e-5f, what);
    assert_close(a_s.att, a.att, B * T, 1e-5f, what);
    for (size_t i = 0; i < B * T; i++) // padding: exactly 0, as the plain kernel's
        if (mask[i] == 0.0f)
            assert_true(a_s.att[i] == 0.0f);
    // Against the naive twin too (the plain layer, every position; 4C-wide feat).
    rd_din_acts a_n = a;
    a_n.feat = take(&A, B * T * 4 * C);
    float *out_n = take(&A, B * C);
    rd_din_forward_naive(out_n, &a_n, q, kb, mask, &w, &d);
    assert_close(out_s, out_n, B * C, 1e-5f, what);
    if (all_zero(hmask, T)) // no valid position: every output 0
        assert_true(all_zero(out_s, B * C));
    // Request attention
    rd_reqattn_weights rw;
    ra_weights(&A, &r, &d, &rw, 1);
    rd_reqattn_acts ra, ra_s;
    rd_reqattn_scratch rs;
    ra_acts(&A, &d, &ra, &rs);
    ra_acts(&A, &d, &ra_s, &rs);
    float *x = rnd(&A, &r, B * d.E, 1.0f);
    rd_reqattn_forward(out, &ra, x, kb, mask, &rw, &d);
    rd_reqattn_forward_shared(out_s, &ra_s, x, k, hmask, &rw, &d);
    snprintf(what, sizeof what, "shared reqattn T=%zu C=%zu", T, C);
    assert_close(out_s, out, B * C, 1e-5f, what);
    assert_close(ra_s.att, ra.att, B * d.NH * T, 1e-5f, what);
    arena_free(&A);
}

static void test_shared_history(void **state) {
    (void)state;
    const float some[6] = {1, 1, 0, 1, 0, 0}, all[6] = {1, 1, 1, 1, 1, 1}, none[6] = {0};
    for (size_t B = 1; B <= 5; B += 4) {
        shared_case(B, 6, 4, some, 21 + B);
        shared_case(B, 6, 4, all, 31 + B);
        shared_case(B, 6, 4, none, 41 + B); // an empty history (0 valid positions)
    }
    float big[35];
    for (size_t t = 0; t < 35; t++) // padding inside the first 16 keys, and after the 30th
        big[t] = t % 5 == 2 || t >= 30 ? 0.0f : 1.0f;
    shared_case(9, 35, 18, big, 51);
}

// ---------------------------------------------------------------------------------------------
// MLP and two towers

static void mlp_alloc(arena *A,
                      rd_rng *r,
                      const rd_mlp_shape *s,
                      size_t B,
                      rd_mlp_weights *w,
                      rd_mlp_weights *dw,
                      rd_mlp_acts *a) {
    for (size_t i = 0; i < s->n; i++) {
        size_t in = s->dims[i], out = s->dims[i + 1];
        w->w[i] = rnd(A, r, out * in, 1.0f / sqrtf((float)in));
        w->b[i] = rnd(A, r, out, 0.1f);
        dw->w[i] = take(A, out * in);
        dw->b[i] = take(A, out);
        a->pre[i] = take(A, B * out);
        int act = i + 1 < s->n ? s->act : s->act_last;
        a->post[i] = act == RD_ACT_NONE ? a->pre[i] : take(A, B * out);
    }
}

typedef struct mlp_ctx {
    rd_mlp_shape s;
    size_t B;
    float *inp, *wout;
    rd_mlp_weights w;
    rd_mlp_acts a;
    int naive;
    const rd_mlp_dropout *d; // NULL = the plain MLP
} mlp_ctx;

static double mlp_loss(void *p) {
    mlp_ctx *c = p;
    if (c->d && c->naive)
        rd_mlp_forward_dropout_naive(&c->a, c->d, c->inp, &c->w, &c->s, c->B);
    else if (c->d)
        rd_mlp_forward_dropout(&c->a, c->d, c->inp, &c->w, &c->s, c->B);
    else if (c->naive)
        rd_mlp_forward_naive(&c->a, c->inp, &c->w, &c->s, c->B);
    else
        rd_mlp_forward(&c->a, c->inp, &c->w, &c->s, c->B);
    const float *out =
        c->d ? rd_mlp_output_dropout(&c->a, c->d, &c->s) : rd_mlp_output(&c->a, &c->s);
    return dotw(out, c->wout, c->B * c->s.dims[c->s.n]);
}

static void test_mlp(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 14);
    rd_rng r;
    rd_rng_seed(&r, 12);
    for (int last = 0; last < 2; last++) {
        mlp_ctx c = {.s = {.n = 3,
                           .dims = {6, 7, 5, 3},
                           .act = RD_ACT_GELU,
                           .act_last = last ? RD_ACT_SIGMOID : RD_ACT_NONE},
                     .B = 4};
        rd_mlp_weights dw;
        mlp_alloc(&A, &r, &c.s, c.B, &c.w, &dw, &c.a);
        c.inp = rnd(&A, &r, c.B * 6, 1.0f);
        c.wout = rnd(&A, &r, c.B * 3, 1.0f);
        float *dinp = take(&A, c.B * 6);
        rd_mlp_scratch sc = {take(&A, c.B * 7), take(&A, c.B * 7)};
        mlp_loss(&c);
        rd_mlp_backward(dinp, &dw, &sc, c.wout, c.inp, &c.a, &c.w, &c.s, c.B);
        fdt ts[] = {{"inp", c.inp, dinp, c.B * 6}, {"w0", c.w.w[0], dw.w[0], 42},
                    {"b0", c.w.b[0], dw.b[0], 7},  {"w1", c.w.w[1], dw.w[1], 35},
                    {"b1", c.w.b[1], dw.b[1], 5},  {"w2", c.w.w[2], dw.w[2], 15},
                    {"b2", c.w.b[2], dw.b[2], 3}};
        fd_check(&c, mlp_loss, ts, 7, "mlp");

        float out_b[12];
        memcpy(out_b, rd_mlp_output(&c.a, &c.s), sizeof out_b);
        c.naive = 1;
        mlp_loss(&c);
        assert_close(rd_mlp_output(&c.a, &c.s), out_b, 12, NB_TOL, "mlp out vs naive");
        rd_mlp_weights dw_n;
        rd_mlp_acts a_n;
        rd_mlp_weights w_n;
        mlp_alloc(&A, &r, &c.s, c.B, &w_n, &dw_n, &a_n);
        float *dinp_n = take(&A, c.B * 6);
        rd_mlp_backward_naive(dinp_n, &dw_n, &sc, c.wout, c.inp, &c.a, &c.w, &c.s, c.B);
        assert_close(dinp, dinp_n, c.B * 6, NB_TOL, "mlp dinp vs naive");
        for (size_t l = 0; l < c.s.n; l++) {
            size_t in = c.s.dims[l], out = c.s.dims[l + 1];
            char what[64];
            snprintf(what, sizeof what, "mlp dw%zu vs naive", l);
            assert_close(dw.w[l], dw_n.w[l], out * in, NB_TOL, what);
            snprintf(what, sizeof what, "mlp db%zu vs naive", l);
            assert_close(dw.b[l], dw_n.b[l], out, NB_TOL, what);
        }
    }
    arena_free(&A);
}

// Dropout in the MLP: finite differences with fixed masks (layers 0 and 2 dropped, layer 1 not),
// the naive twin, masks of all ones give the plain MLP bit for bit, and a dropped unit passes no
// gradient to the layer below.
static void test_mlp_dropout(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 14);
    rd_rng r;
    rd_rng_seed(&r, 31);
    for (int last = 0; last < 2; last++) {
        mlp_ctx c = {.s = {.n = 3,
                           .dims = {6, 7, 5, 3},
                           .act = RD_ACT_GELU,
                           .act_last = last ? RD_ACT_SIGMOID : RD_ACT_NONE},
                     .B = 4};
        rd_mlp_weights dw;
        mlp_alloc(&A, &r, &c.s, c.B, &c.w, &dw, &c.a);
        rd_mlp_dropout d;
        memset(&d, 0, sizeof d);
        float *keep0 = take(&A, c.B * 7), *keep2 = take(&A, c.B * 3);
        rd_dropout_mask(keep0, c.B * 7, 0.4f, 11 + (uint64_t)last);
        rd_dropout_mask(keep2, c.B * 3, 0.4f, 12 + (uint64_t)last);
        d.keep[0] = keep0;
        d.keep[2] = keep2;
        d.out[0] = take(&A, c.B * 7);
        d.out[2] = take(&A, c.B * 3);
        c.d = &d;
        c.inp = rnd(&A, &r, c.B * 6, 1.0f);
        c.wout = rnd(&A, &r, c.B * 3, 1.0f);
        float *dinp = take(&A, c.B * 6);
        rd_mlp_scratch sc = {take(&A, c.B * 7), take(&A, c.B * 7)};
        mlp_loss(&c);
        rd_mlp_backward_dropout(dinp, &dw, &sc, c.wout, c.inp, &c.a, &d, &c.w, &c.s, c.B);
        fdt ts[] = {{"inp", c.inp, dinp, c.B * 6}, {"w0", c.w.w[0], dw.w[0], 42},
                    {"b0", c.w.b[0], dw.b[0], 7},  {"w1", c.w.w[1], dw.w[1], 35},
                    {"b1", c.w.b[1], dw.b[1], 5},  {"w2", c.w.w[2], dw.w[2], 15},
                    {"b2", c.w.b[2], dw.b[2], 3}};
        fd_check(&c, mlp_loss, ts, 7, "mlp with dropout");
        // The output is the dropped one: 0 where the last layer's mask is 0.
        const float *out = rd_mlp_output_dropout(&c.a, &d, &c.s);
        assert_ptr_equal(out, d.out[2]);
        int dropped = 0;
        for (size_t k = 0; k < c.B * 3; k++)
            if (keep2[k] == 0.0f) {
                assert_true(out[k] == 0.0f);
                dropped++;
            }
        assert_true(dropped > 0);
        // A unit of layer 0 dropped on every example passes no gradient to w0's row of it.
        for (size_t b = 0; b < c.B; b++)
            keep0[b * 7 + 2] = 0.0f;
        mlp_loss(&c);
        memset(dinp, 0, c.B * 6 * sizeof(float));
        for (size_t l = 0; l < c.s.n; l++) { // the weight gradients accumulate too
            memset(dw.w[l], 0, c.s.dims[l + 1] * c.s.dims[l] * sizeof(float));
            memset(dw.b[l], 0, c.s.dims[l + 1] * sizeof(float));
        }
        rd_mlp_backward_dropout(dinp, &dw, &sc, c.wout, c.inp, &c.a, &d, &c.w, &c.s, c.B);
        for (size_t j = 0; j < 6; j++)
            assert_true(dw.w[0][2 * 6 + j] == 0.0f);
        assert_true(dw.b[0][2] == 0.0f);

        // The naive twin: same output, same gradients.
        float out_b[12], dinp_n[24];
        memcpy(out_b, out, sizeof out_b);
        c.naive = 1;
        mlp_loss(&c);
        assert_close(rd_mlp_output_dropout(&c.a, &d, &c.s), out_b, 12, NB_TOL,
                     "mlp dropout out vs naive");
        rd_mlp_weights dw_n, w_n;
        rd_mlp_acts a_n;
        mlp_alloc(&A, &r, &c.s, c.B, &w_n, &dw_n, &a_n);
        memset(dinp_n, 0, sizeof dinp_n);
        rd_mlp_backward_dropout_naive(dinp_n, &dw_n, &sc, c.wout, c.inp, &c.a, &d, &c.w, &c.s, c.B);
        assert_close(dinp, dinp_n, c.B * 6, NB_TOL, "mlp dropout dinp vs naive");
        for (size_t l = 0; l < c.s.n; l++) {
            assert_close(dw.w[l], dw_n.w[l], c.s.dims[l + 1] * c.s.dims[l], NB_TOL,
                         "mlp dropout dw vs naive");
            assert_close(dw.b[l], dw_n.b[l], c.s.dims[l + 1], NB_TOL, "mlp dropout db vs naive");
        }
        c.naive = 0;

        // Masks of rate 0 (all 1) give the plain MLP exactly.
        rd_dropout_mask(keep0, c.B * 7, 0.0f, 5);
        rd_dropout_mask(keep2, c.B * 3, 0.0f, 6);
        mlp_loss(&c);
        memcpy(out_b, rd_mlp_output_dropout(&c.a, &d, &c.s), sizeof out_b);
        c.d = NULL;
        mlp_loss(&c);
        assert_memory_equal(out_b, rd_mlp_output(&c.a, &c.s), sizeof out_b);
    }
    arena_free(&A);
}

// rd_dropout_mask: the rate of zeros, the kept scale 1 / (1 - p), the same key the same mask.
static void test_dropout_mask(void **state) {
    (void)state;
    enum { N = 200000 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    assert_true(a && b);
    const float rates[3] = {0.1f, 0.25f, 0.5f};
    for (int i = 0; i < 3; i++) {
        float p = rates[i];
        rd_dropout_mask(a, N, p, 77);
        size_t zeros = 0;
        for (size_t k = 0; k < N; k++) {
            if (a[k] == 0.0f)
                zeros++;
            else
                assert_true(a[k] == 1.0f / (1.0f - p));
        }
        double frac = (double)zeros / N; // binomial std at most 0.0011
        assert_true(fabs(frac - (double)p) < 0.006);
        rd_dropout_mask(b, N, p, 77);
        assert_memory_equal(a, b, N * sizeof(float));
        rd_dropout_mask(b, N, p, 78);
        size_t same = 0;
        for (size_t k = 0; k < N; k++)
            same += a[k] == b[k];
        assert_true(same < N - N / 20); // another key, another mask
    }
    rd_dropout_mask(a, N, 0.0f, 3);
    for (size_t k = 0; k < N; k++)
        assert_true(a[k] == 1.0f);
    free(a);
    free(b);
}

typedef struct tt_ctx {
    rd_two_tower t;
    size_t B;
    float *h, *wm, *wa;
    int naive;
} tt_ctx;

static double tt_loss(void *p) {
    tt_ctx *c = p;
    if (c->naive)
        rd_two_tower_forward_naive(&c->t, c->h, c->B);
    else
        rd_two_tower_forward(&c->t, c->h, c->B);
    return dotw(rd_mlp_output(&c->t.acts[0], &c->t.shape[0]), c->wm, c->B) +
           dotw(rd_mlp_output(&c->t.acts[1], &c->t.shape[1]), c->wa, c->B);
}

static void test_two_tower(void **state) {
    (void)state;
    arena A;
    arena_init(&A, 1 << 14);
    rd_rng r;
    rd_rng_seed(&r, 13);
    tt_ctx c = {.B = 5};
    c.t.shape[0] = (rd_mlp_shape){.n = 2, .dims = {4, 3, 1}, .act = RD_ACT_GELU};
    c.t.shape[1] = (rd_mlp_shape){.n = 3, .dims = {4, 5, 2, 1}, .act = RD_ACT_SIGMOID};
    rd_mlp_weights dw[2];
    for (int i = 0; i < 2; i++)
        mlp_alloc(&A, &r, &c.t.shape[i], c.B, &c.t.w[i], &dw[i], &c.t.acts[i]);
    c.h = rnd(&A, &r, c.B * 4, 1.0f);
    c.wm = rnd(&A, &r, c.B, 1.0f);
    c.wa = rnd(&A, &r, c.B, 1.0f);
    float *dh = take(&A, c.B * 4);
    rd_mlp_scratch sc = {take(&A, c.B * 5), take(&A, c.B * 5)};
    tt_loss(&c);
    rd_two_tower_backward(dh, dw, &sc, c.wm, c.wa, c.h, &c.t, c.B);
    // Every parameter tensor of both towers, and the shared input.
    fdt ts[] = {{"h", c.h, dh, c.B * 4},
                {"main.w0", c.t.w[0].w[0], dw[0].w[0], 12},
                {"main.b0", c.t.w[0].b[0], dw[0].b[0], 3},
                {"main.w1", c.t.w[0].w[1], dw[0].w[1], 3},
                {"main.b1", c.t.w[0].b[1], dw[0].b[1], 1},
                {"aux.w0", c.t.w[1].w[0], dw[1].w[0], 20},
                {"aux.b0", c.t.w[1].b[0], dw[1].b[0], 5},
                {"aux.w1", c.t.w[1].w[1], dw[1].w[1], 10},
                {"aux.b1", c.t.w[1].b[1], dw[1].b[1], 2},
                {"aux.w2", c.t.w[1].w[2], dw[1].w[2], 2},
                {"aux.b2", c.t.w[1].b[2], dw[1].b[2], 1}};
    fd_check(&c, tt_loss, ts, sizeof ts / sizeof ts[0], "two towers");

    // Isolation: the aux tower's gradient alone leaves every main-tower gradient exactly zero.
    for (int i = 0; i < 2; i++)
        for (size_t l = 0; l < c.t.shape[i].n; l++) {
            size_t n = c.t.shape[i].dims[l] * c.t.shape[i].dims[l + 1];
            memset(dw[i].w[l], 0, n * sizeof(float));
            memset(dw[i].b[l], 0, c.t.shape[i].dims[l + 1] * sizeof(float));
        }
    rd_two_tower_backward(NULL, dw, &sc, NULL, c.wa, c.h, &c.t, c.B);
    for (size_t l = 0; l < c.t.shape[0].n; l++) {
        assert_true(all_zero(dw[0].w[l], c.t.shape[0].dims[l] * c.t.shape[0].dims[l + 1]));
        assert_true(all_zero(dw[0].b[l], c.t.shape[0].dims[l + 1]));
    }
    assert_false(all_zero(dw[1].w[0], 20));

    // Naive twin.
    float zm[5], za[5];
    tt_loss(&c);
    memcpy(zm, rd_mlp_output(&c.t.acts[0], &c.t.shape[0]), sizeof zm);
    memcpy(za, rd_mlp_output(&c.t.acts[1], &c.t.shape[1]), sizeof za);
    c.naive = 1;
    tt_loss(&c);
    assert_close(rd_mlp_output(&c.t.acts[0], &c.t.shape[0]), zm, 5, NB_TOL, "main tower vs naive");
    assert_close(rd_mlp_output(&c.t.acts[1], &c.t.shape[1]), za, 5, NB_TOL, "aux tower vs naive");

    // Naive backward twin on the same activations: dh and every weight of both towers. The two
    // output gradients differ (wm != wa), so swapping the towers' dz cannot go unnoticed.
    rd_mlp_weights dw_n[2], w_n[2];
    rd_mlp_acts a_n[2];
    for (int i = 0; i < 2; i++) {
        mlp_alloc(&A, &r, &c.t.shape[i], c.B, &w_n[i], &dw_n[i], &a_n[i]);
        for (size_t l = 0; l < c.t.shape[i].n; l++) {
            memset(dw[i].w[l], 0, c.t.shape[i].dims[l] * c.t.shape[i].dims[l + 1] * sizeof(float));
            memset(dw[i].b[l], 0, c.t.shape[i].dims[l + 1] * sizeof(float));
        }
    }
    float *dh_n = take(&A, c.B * 4);
    memset(dh, 0, c.B * 4 * sizeof(float));
    rd_two_tower_backward(dh, dw, &sc, c.wm, c.wa, c.h, &c.t, c.B);
    rd_two_tower_backward_naive(dh_n, dw_n, &sc, c.wm, c.wa, c.h, &c.t, c.B);
    assert_close(dh, dh_n, c.B * 4, NB_TOL, "two towers dh vs naive");
    for (int i = 0; i < 2; i++)
        for (size_t l = 0; l < c.t.shape[i].n; l++) {
            size_t in = c.t.shape[i].dims[l], out = c.t.shape[i].dims[l + 1];
            char what[64];
            snprintf(what, sizeof what, "%s tower dw%zu vs naive", i ? "aux" : "main", l);
            assert_close(dw[i].w[l], dw_n[i].w[l], out * in, NB_TOL, what);
            snprintf(what, sizeof what, "%s tower db%zu vs naive", i ? "aux" : "main", l);
            assert_close(dw[i].b[l], dw_n[i].b[l], out, NB_TOL, what);
        }
    arena_free(&A);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_nan_propagates),
        cmocka_unit_test(test_gelu_extremes),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_layernorm_flat_rows),
        cmocka_unit_test(test_layernorm_wide_rows),
        cmocka_unit_test(test_embedding_pool),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_target_attention),
        cmocka_unit_test(test_attention_masked_garbage),
        cmocka_unit_test(test_masked_mean),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_din),
        cmocka_unit_test(test_tblock),
        cmocka_unit_test(test_reqattn),
        cmocka_unit_test(test_shared_history),
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_mlp_dropout),
        cmocka_unit_test(test_dropout_mask),
        cmocka_unit_test(test_two_tower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
