// layers_naive.c — the `_naive` twins of the BLAS and vectorised kernels of layers.c.
//
// Purpose: plain loops, written for obviousness rather than speed, that the tests compare against
// the fast kernels on random inputs (llm.c keeps the same pairs). Same contracts as the fast ones
// (rd/layers.h): backward kernels accumulate, masks are float 1/0, a row with no valid key is
// zero. Nothing here runs in training.
#include "layers_internal.h"
#include "rd/error.h"
#include "rd/layers.h"

#include <math.h>
#include <string.h>

int rd__softmax_row_naive(float *s, const float *m, size_t n) {
    float mx = 0.0f;
    int any = 0;
    for (size_t j = 0; j < n; j++)
        if ((!m || m[j] != 0.0f) && (!any || s[j] > mx)) {
            mx = s[j];
            any = 1;
        }
    if (!any) {
        memset(s, 0, n * sizeof *s);
        return 0;
    }
    float sum = 0.0f;
    for (size_t j = 0; j < n; j++) {
        s[j] = (!m || m[j] != 0.0f) ? expf(s[j] - mx) : 0.0f;
        sum += s[j];
    }
    for (size_t j = 0; j < n; j++)
        s[j] /= sum;
    return 1;
}

// ---------------------------------------------------------------------------------------------
// Activations

// out, inp (N). Beyond |x| = 10 the tanh is +-1 in fp32: GELU(x) is x or 0 there, and GELU'(x)
// 1 or 0, taken as such (x (1 + t) at x = -inf and (1 - t^2) 0.134 x^2 beyond |x| = 5e19 are
// NaN).
void rd_gelu_forward_naive(float *out, const float *inp, size_t N) {
    const float s = 0.7978845608028654f; // sqrt(2 / pi)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        if (x < -10.0f)
            out[i] = 0.0f;
        else
            out[i] = 0.5f * x * (1.0f + tanhf(s * (x + 0.044715f * x * x * x)));
    }
}

// dinp, dout, inp (N)
void rd_gelu_backward_naive(float *dinp, const float *dout, const float *inp, size_t N) {
    const float s = 0.7978845608028654f; // sqrt(2 / pi)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        if (x > 10.0f || x < -10.0f) {
            dinp[i] += dout[i] * (x > 0.0f ? 1.0f : 0.0f);
            continue;
        }
        float u = s * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        float sech2 = 1.0f - t * t;
        float du = s * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * sech2 * du);
    }
}

// out, inp (N)
void rd_sigmoid_forward_naive(float *out, const float *inp, size_t N) {
    for (size_t i = 0; i < N; i++)
        out[i] = 1.0f / (1.0f + expf(-inp[i]));
}

// dinp, dout, out (N): the sigmoid backward reads the forward output.
void rd_sigmoid_backward_naive(float *dinp, const float *dout, const float *out, size_t N) {
    for (size_t i = 0; i < N; i++)
        dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

// out, inp (N)
void rd_relu_forward_naive(float *out, const float *inp, size_t N) {
    for (size_t i = 0; i < N; i++)
        out[i] = inp[i] <= 0.0f ? 0.0f : inp[i]; // NaN stays NaN
}

// dinp, dout, inp (N)
void rd_relu_backward_naive(float *dinp, const float *dout, const float *inp, size_t N) {
    for (size_t i = 0; i < N; i++)
        if (inp[i] > 0.0f)
            dinp[i] += dout[i];
}

// ---------------------------------------------------------------------------------------------
// Layer norm (eps 1e-5, as in layers.c)

// out (BT, C), mean, rstd (BT), inp (BT, C), weight, bias (C)
void rd_layernorm_forward_naive(float *out,
                                float *mean,
                                float *rstd,
                                const float *inp,
                                const float *weight,
                                const float *bias,
                                size_t BT,
                                size_t C) {
    RD_ASSERT(C > 0);
    for (size_t bt = 0; bt < BT; bt++) {
        const float *x = inp + bt * C;
        double m = 0.0, v = 0.0;
        for (size_t i = 0; i < C; i++)
            m += (double)x[i];
        m /= (double)C;
        for (size_t i = 0; i < C; i++)
            v += ((double)x[i] - m) * ((double)x[i] - m);
        v /= (double)C;
        double s = 1.0 / sqrt(v + 1e-5);
        for (size_t i = 0; i < C; i++)
            out[bt * C + i] = (float)(((double)x[i] - m) * s * (double)weight[i] + (double)bias[i]);
        mean[bt] = (float)m;
        rstd[bt] = (float)s;
    }
}

// dinp (BT, C), dweight, dbias (C), dout, inp (BT, C), weight (C), mean, rstd (BT); dinp may be
// NULL. With norm = (x - mean) rstd and dnorm = weight * dout:
// dinp = rstd (dnorm - mean(dnorm) - norm * mean(dnorm * norm)).
void rd_layernorm_backward_naive(float *dinp,
                                 float *dweight,
                                 float *dbias,
                                 const float *dout,
                                 const float *inp,
                                 const float *weight,
                                 const float *mean,
                                 const float *rstd,
                                 size_t BT,
                                 size_t C) {
    RD_ASSERT(C > 0 && dweight && dbias);
    for (size_t bt = 0; bt < BT; bt++) {
        const float *g = dout + bt * C, *x = inp + bt * C;
        double m = (double)mean[bt], s = (double)rstd[bt];
        double dmean = 0.0, dnorm_mean = 0.0;
        for (size_t i = 0; i < C; i++) {
            double norm = ((double)x[i] - m) * s, dnorm = (double)weight[i] * (double)g[i];
            dmean += dnorm;
            dnorm_mean += dnorm * norm;
            dbias[i] += g[i];
            dweight[i] += (float)(norm * (double)g[i]);
        }
        dmean /= (double)C;
        dnorm_mean /= (double)C;
        if (dinp)
            for (size_t i = 0; i < C; i++) {
                double norm = ((double)x[i] - m) * s, dnorm = (double)weight[i] * (double)g[i];
                dinp[bt * C + i] += (float)((dnorm - dmean - norm * dnorm_mean) * s);
            }
    }
}

// ---------------------------------------------------------------------------------------------
// Linear

// out (BT, OC), inp (BT, C), weight (OC, C), bias (OC)
void rd_linear_forward_naive(float *out,
                             const float *inp,
                             const float *weight,
                             const float *bias,
                             size_t BT,
                             size_t C,
                             size_t OC) {
    for (size_t bt = 0; bt < BT; bt++)
        for (size_t o = 0; o < OC; o++) {
            float acc = bias ? bias[o] : 0.0f;
            for (size_t i = 0; i < C; i++)
                acc += inp[bt * C + i] * weight[o * C + i];
            out[bt * OC + o] = acc;
        }
}

void rd__linear_backward_naive_ex(float *dinp,
                                  float *dweight,
                                  float *dbias,
                                  const float *dout,
                                  const float *inp,
                                  const float *weight,
                                  size_t BT,
                                  size_t C,
                                  size_t OC,
                                  int acc) {
    if (dinp && !acc)
        memset(dinp, 0, BT * C * sizeof *dinp);
    rd_linear_backward_naive(dinp, dweight, dbias, dout, inp, weight, BT, C, OC);
}

// dinp (BT, C), dweight (OC, C), dbias (OC), dout (BT, OC)
void rd_linear_backward_naive(float *dinp,
                              float *dweight,
                              float *dbias,
                              const float *dout,
                              const float *inp,
                              const float *weight,
                              size_t BT,
                              size_t C,
                              size_t OC) {
    for (size_t bt = 0; bt < BT; bt++)
        for (size_t o = 0; o < OC; o++) {
            float g = dout[bt * OC + o];
            if (dbias)
                dbias[o] += g;
            for (size_t i = 0; i < C; i++) {
                if (dinp)
                    dinp[bt * C + i] += g * weight[o * C + i];
                dweight[o * C + i] += g * inp[bt * C + i];
            }
        }
}

// ---------------------------------------------------------------------------------------------
// Multi-head self-attention

// out (B, T, C), att (B, NH, T, T), qkv (B, T, 3C), mask (B, T)
void rd_attention_forward_naive(float *out,
                                float *att,
                                const float *qkv,
                                const float *mask,
                                size_t B,
                                size_t T,
                                size_t C,
                                size_t NH,
                                int causal) {
    RD_ASSERT(NH > 0 && C % NH == 0);
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++)
            for (size_t i = 0; i < T; i++) {
                const float *q = qkv + (b * T + i) * 3 * C + h * hs;
                float *row = att + ((b * NH + h) * T + i) * T;
                size_t n = causal ? i + 1 : T;
                for (size_t j = 0; j < T; j++) {
                    const float *k = qkv + (b * T + j) * 3 * C + C + h * hs;
                    float dot = 0.0f;
                    for (size_t c = 0; c < hs; c++)
                        dot += q[c] * k[c];
                    row[j] = dot * scale;
                }
                rd__softmax_row_naive(row, mask ? mask + b * T : NULL, n);
                for (size_t j = n; j < T; j++)
                    row[j] = 0.0f;
                float *o = out + (b * T + i) * C + h * hs;
                for (size_t c = 0; c < hs; c++) {
                    float acc = 0.0f;
                    for (size_t j = 0; j < T; j++)
                        acc += row[j] * qkv[(b * T + j) * 3 * C + 2 * C + h * hs + c];
                    o[c] = acc;
                }
            }
}

void rd__attention_backward_naive_ex(float *dqkv,
                                     float *scratch,
                                     const float *dout,
                                     const float *qkv,
                                     const float *att,
                                     const float *mask,
                                     size_t B,
                                     size_t T,
                                     size_t C,
                                     size_t NH,
                                     int causal,
                                     int acc) {
    if (!acc)
        memset(dqkv, 0, B * T * 3 * C * sizeof *dqkv);
    rd_attention_backward_naive(dqkv, scratch, dout, qkv, att, mask, B, T, C, NH, causal);
}

// dqkv (B, T, 3C), scratch (T, T), dout (B, T, C), qkv (B, T, 3C), att (B, NH, T, T)
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
                                 int causal) {
    RD_ASSERT(NH > 0 && C % NH == 0);
    (void)mask;
    (void)causal;
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++) {
            const float *P = att + (b * NH + h) * T * T;
            for (size_t i = 0; i < T; i++) {
                const float *g = dout + (b * T + i) * C + h * hs;
                float *dp = scratch + i * T;
                for (size_t j = 0; j < T; j++) {
                    const float *v = qkv + (b * T + j) * 3 * C + 2 * C + h * hs;
                    float *dv = dqkv + (b * T + j) * 3 * C + 2 * C + h * hs;
                    float acc = 0.0f;
                    for (size_t c = 0; c < hs; c++) {
                        acc += g[c] * v[c];
                        dv[c] += P[i * T + j] * g[c];
                    }
                    dp[j] = acc;
                }
                float dot = 0.0f;
                for (size_t j = 0; j < T; j++)
                    dot += P[i * T + j] * dp[j];
                for (size_t j = 0; j < T; j++)
                    dp[j] = P[i * T + j] * (dp[j] - dot) * scale;
                const float *q = qkv + (b * T + i) * 3 * C + h * hs;
                float *dq = dqkv + (b * T + i) * 3 * C + h * hs;
                for (size_t j = 0; j < T; j++) {
                    const float *k = qkv + (b * T + j) * 3 * C + C + h * hs;
                    float *dk = dqkv + (b * T + j) * 3 * C + C + h * hs;
                    for (size_t c = 0; c < hs; c++) {
                        dq[c] += dp[j] * k[c];
                        dk[c] += dp[j] * q[c];
                    }
                }
            }
        }
}

// ---------------------------------------------------------------------------------------------
// Target attention

// out (B, C), att (B, NH, T), q (B, C), kv (B, T, 2C), mask (B, T)
void rd_target_attention_forward_naive(float *out,
                                       float *att,
                                       const float *q,
                                       const float *kv,
                                       const float *mask,
                                       size_t B,
                                       size_t T,
                                       size_t C,
                                       size_t NH) {
    RD_ASSERT(NH > 0 && C % NH == 0);
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++) {
            float *p = att + (b * NH + h) * T;
            const float *qh = q + b * C + h * hs;
            for (size_t t = 0; t < T; t++) {
                const float *k = kv + (b * T + t) * 2 * C + h * hs;
                float dot = 0.0f;
                for (size_t c = 0; c < hs; c++)
                    dot += qh[c] * k[c];
                p[t] = dot * scale;
            }
            rd__softmax_row_naive(p, mask ? mask + b * T : NULL, T);
            float *o = out + b * C + h * hs;
            for (size_t c = 0; c < hs; c++) {
                float acc = 0.0f;
                for (size_t t = 0; t < T; t++)
                    acc += p[t] * kv[(b * T + t) * 2 * C + C + h * hs + c];
                o[c] = acc;
            }
        }
}

// dq (B, C), dkv (B, T, 2C), scratch (T), dout (B, C)
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
                                        size_t NH) {
    RD_ASSERT(NH > 0 && C % NH == 0);
    (void)mask;
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++) {
            const float *p = att + (b * NH + h) * T;
            const float *g = dout + b * C + h * hs;
            const float *qh = q + b * C + h * hs;
            float dot = 0.0f;
            for (size_t t = 0; t < T; t++) {
                const float *v = kv + (b * T + t) * 2 * C + C + h * hs;
                float *dv = dkv + (b * T + t) * 2 * C + C + h * hs;
                float acc = 0.0f;
                for (size_t c = 0; c < hs; c++) {
                    acc += g[c] * v[c];
                    dv[c] += p[t] * g[c];
                }
                scratch[t] = acc;
                dot += p[t] * acc;
            }
            for (size_t t = 0; t < T; t++) {
                float ds = p[t] * (scratch[t] - dot) * scale;
                const float *k = kv + (b * T + t) * 2 * C + h * hs;
                float *dk = dkv + (b * T + t) * 2 * C + h * hs;
                for (size_t c = 0; c < hs; c++) {
                    if (dq)
                        dq[b * C + h * hs + c] += ds * k[c];
                    dk[c] += ds * qh[c];
                }
            }
        }
}
