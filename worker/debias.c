// debias.c — Rec-Distill cross-debias calibration (rd/distill.h): f(z) and the projection of a
// raw logit through f back into logit space, with its gradient and naive twins.
//
// With A = r_s / p_x and K = A (1 - r_plus) + b_s, 1 / f(z) = 1 + A e^{-z} + K, so f is the
// sigmoid of g(z) = -log(A e^{-z} + K). Computing the formula as written overflows e^{-z} for
// z < -88 in float and loses all digits of 1 - f for large z; g is evaluated instead as
// -logaddexp(log A - z, log K), which is exact to rounding for every finite z (K = 0 is the
// pure shift z - log A). The derivative A e^{-z} / (A e^{-z} + K) is sigmoid(log A - z - log K).
//
// Workload: one call per teacher target on the student (O(B) per step); never a bottleneck.
#include "rd/distill.h"

#include <math.h>

rd_debias rd_debias_identity(void) {
    rd_debias d = {1.0, 1.0, 1.0, 0.0};
    return d;
}

int rd_debias_is_identity(const rd_debias *d) {
    double a = d->r_s / d->p_x;
    return a == 1.0 && a * (1.0 - d->r_plus) + d->b_s == 0.0;
}

int rd_debias_check(const rd_debias *d, rd_errbuf *eb) {
    if (!d)
        return rd_err_set(eb, RD_ERR_ARG, "debias: NULL parameters");
    if (!isfinite(d->r_s) || !isfinite(d->p_x) || !isfinite(d->r_plus) || !isfinite(d->b_s))
        return rd_err_set(eb, RD_ERR_ARG,
                          "debias: parameters must be finite (r_s %g p_x %g "
                          "r_plus %g b_s %g)",
                          d->r_s, d->p_x, d->r_plus, d->b_s);
    if (d->r_s <= 0 || d->p_x <= 0)
        return rd_err_set(eb, RD_ERR_ARG, "debias: r_s = %g and p_x = %g must be > 0", d->r_s,
                          d->p_x);
    double a = d->r_s / d->p_x, k = a * (1.0 - d->r_plus) + d->b_s;
    if (!(k >= 0))
        return rd_err_set(
            eb, RD_ERR_ARG,
            "debias: (r_s/p_x)*(1-r_plus)+b_s = %g < 0: f(z) leaves [0, 1] for large z", k);
    return RD_OK;
}

int rd_debias_from_sampling(
    double neg_keep, double pos_keep, double b_s, rd_debias *out, rd_errbuf *eb) {
    if (!(neg_keep > 0 && neg_keep <= 1))
        return rd_err_set(eb, RD_ERR_ARG, "debias: negative keep rate %g not in (0, 1]", neg_keep);
    if (!(pos_keep > 0 && pos_keep <= 1))
        return rd_err_set(eb, RD_ERR_ARG, "debias: positive keep rate %g not in (0, 1]", pos_keep);
    if (!(b_s >= 0) || !isfinite(b_s))
        return rd_err_set(eb, RD_ERR_ARG, "debias: bias b_s = %g must be finite and >= 0", b_s);
    // Sampled odds = true odds * q_+ / q_-, so the true probability is
    // 1 / (1 + (q_+ / q_-) e^{-z}): r_s / p_x = q_+ / q_-, no 1 - r_+ term.
    out->r_s = pos_keep / neg_keep;
    out->p_x = 1.0;
    out->r_plus = 1.0;
    out->b_s = b_s;
    return RD_OK;
}

int rd_debias_from_config(const rd_data_config *data,
                          const rd_negsample_config *job,
                          const rd_distill_config *dc,
                          rd_debias *out,
                          rd_errbuf *eb) {
    if (!dc->debias) {
        *out = rd_debias_identity();
        return RD_OK;
    }
    double neg = data->negatives.rate, pos = data->negatives.pos_rate;
    if (job) {
        neg *= job->rate;
        pos *= job->pos_rate;
    }
    int rc = rd_debias_from_sampling(neg, pos, (double)dc->bias, out, eb);
    if (rc != RD_OK)
        rd_err_prefix(
            eb, "data.negatives%s / distill.bias: ", job ? " x cluster.jobs[].negatives" : "");
    return rc;
}

static void coeffs(const rd_debias *d, double *log_a, double *log_k, int *k_zero) {
    double a = d->r_s / d->p_x, k = a * (1.0 - d->r_plus) + d->b_s;
    RD_ASSERT(a > 0 && k >= 0 && isfinite(a) && isfinite(k));
    *log_a = log(a);
    *k_zero = k == 0.0;
    *log_k = *k_zero ? 0.0 : log(k);
}

// g(z) = -log(A e^{-z} + K)
static double g_of(double z, double log_a, double log_k, int k_zero) {
    double u = log_a - z;
    if (k_zero)
        return -u;
    double hi = u > log_k ? u : log_k, lo = u > log_k ? log_k : u;
    return -(hi + log1p(exp(lo - hi)));
}

static double sigmoid(double x) {
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

double rd_debias_prob(const rd_debias *d, double z) {
    double log_a, log_k;
    int k_zero;
    coeffs(d, &log_a, &log_k, &k_zero);
    return sigmoid(g_of(z, log_a, log_k, k_zero));
}

// out is (n), inp is (n)
void rd_debias_logit_forward(float *out, const float *inp, const rd_debias *d, size_t n) {
    double log_a, log_k;
    int k_zero;
    coeffs(d, &log_a, &log_k, &k_zero);
    for (size_t i = 0; i < n; i++)
        out[i] = (float)g_of((double)inp[i], log_a, log_k, k_zero);
}

// dinp, dout, inp are (n)
void rd_debias_logit_backward(
    float *dinp, const float *dout, const float *inp, const rd_debias *d, size_t n) {
    double log_a, log_k;
    int k_zero;
    coeffs(d, &log_a, &log_k, &k_zero);
    for (size_t i = 0; i < n; i++) {
        double gz = k_zero ? 1.0 : sigmoid(log_a - (double)inp[i] - log_k);
        dinp[i] += (float)((double)dout[i] * gz);
    }
}

void rd_debias_logit_forward_naive(float *out, const float *inp, const rd_debias *d, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double z = (double)inp[i];
        double f = 1.0 / (1.0 + (d->r_s / d->p_x) * (exp(-z) + 1.0 - d->r_plus) + d->b_s);
        out[i] = (float)log(f / (1.0 - f));
    }
}

void rd_debias_logit_backward_naive(
    float *dinp, const float *dout, const float *inp, const rd_debias *d, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double z = (double)inp[i], a = d->r_s / d->p_x;
        double num = a * exp(-z);
        double den = a * (exp(-z) + 1.0 - d->r_plus) + d->b_s;
        dinp[i] += (float)((double)dout[i] * num / den);
    }
}
