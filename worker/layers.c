// layers.c — dense layers of the worker models: the fast (BLAS + vectorised) kernels and the
// composite layers (DIN, transformer block, request-query attention, MLP, two towers).
//
// Purpose: every matmul goes through cblas_sgemm/sgemv/sger on contiguous, row-major activations;
// everything else is a single pass over memory. The composite layers are written once against a
// small kernel table (`kern`) so that their `_naive` twins (layers_naive.c primitives) run the
// exact same composition: the tests compare the two and check gradients by finite differences.
// DIN is the exception: its fast path folds the attention MLP's first layer (see "DIN" below),
// its naive twin computes the layer as written, and the tests compare those.
//
// Invariants: kernels never allocate and never log; public backward kernels accumulate (+=) into
// their gradient outputs; inside the composite layers, the first writer of a scratch buffer
// overwrites it (beta = 0, *_set variants) so that no zeroing pass is needed.
//
// Workload: the teacher's transformer branch (B = 256, T = 256, C = 64) dominates a step. Its
// attention runs two cblas_sgemm per (example, head) directly on the strided qkv (lda = 3C), and
// the masked softmax, GELU and sigmoid use a polynomial exp that GCC vectorises for AVX-512 /
// AVX2 / SSE2 (function clones picked at load time), because the libm exp of 33 M attention
// scores per layer would otherwise cost as much as the matmuls themselves.
#include "rd/layers.h"

#include "layers_internal.h"
#include "rd/config.h"
#include "rd/error.h"
#include "rd/hash.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Vectorisation helpers

// GCC vectorises the hot element-wise loops only with the dynamic cost model (-O2 uses the
// "very cheap" one), and only for SSE2 unless told the target: clone them per ISA (an ifunc picks
// the clone at load time). Clang (the fuzz build) rejects the GCC-only `optimize` attribute and
// sanitizer builds keep one code path, so both get plain functions: under ThreadSanitizer the
// ifunc resolvers, instrumented too, ran before its runtime was set up and crashed the program
// in the loader. ISO C mode (-std=c11) keeps -ffp-contract=off, so every clone computes
// bit-identical results.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define RD_SIMD                                                                                    \
    __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))                         \
    __attribute__((target_clones("avx512f", "avx2", "default")))
#elif defined(__GNUC__) && !defined(__clang__)
#define RD_SIMD __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define RD_SIMD
#endif

#define LANES 16 // independent accumulators of the vectorised reductions

// e^x for x in [-87, 88] (clamped outside; max relative error measured 7.8e-8 over that range):
// Cephes' expf polynomial with branch-free range reduction so that the loops around it vectorise.
static inline float fast_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // n = round(x / ln 2) by the 1.5 * 2^23 trick (no rounding instruction needed on SSE2).
    float t = x * 1.44269504088896341f + 12582912.0f;
    float fn = t - 12582912.0f;
    uint32_t ti;
    memcpy(&ti, &t, sizeof ti);
    float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    // 2^n as float bits, (n + 127) << 23 with n = ti - 0x4B400000, in unsigned arithmetic: a NaN
    // x passes the clamps and gives a garbage n, which overflowed the signed computation
    // (undefined behaviour); y is NaN then and so is the result.
    uint32_t e = (ti - 0x4B400000u + 127u) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return y * s;
}

// Masked softmax of one row, in place: p[j] = exp(s[j] - max) / sum for the valid j < n (m[j] !=
// 0) and 0 for the masked ones, where the max and the sum run over the valid entries only. m may
// be NULL (all valid). A masked score is never read into the result: it is selected away, not
// multiplied by m[j] = 0, because a NaN score (a padded key's NaN or overflowing q . k) times 0
// is NaN and would spread through the sum to the whole row (the naive twin skips it too).
// @return 1, or 0 when no entry is valid (the row is then all zeros).
RD_SIMD static int softmax_row(float *restrict s, const float *restrict m, size_t n) {
    float acc[LANES];
    for (size_t k = 0; k < LANES; k++)
        acc[k] = -FLT_MAX;
    size_t j = 0;
    if (m) {
        for (; j + LANES <= n; j += LANES)
            for (size_t k = 0; k < LANES; k++) {
                float v = m[j + k] != 0.0f ? s[j + k] : -FLT_MAX;
                acc[k] = v > acc[k] ? v : acc[k];
            }
    } else {
        for (; j + LANES <= n; j += LANES)
            for (size_t k = 0; k < LANES; k++)
                acc[k] = s[j + k] > acc[k] ? s[j + k] : acc[k];
    }
    float mx = -FLT_MAX;
    for (size_t k = 0; k < LANES; k++)
        mx = acc[k] > mx ? acc[k] : mx;
    for (; j < n; j++)
        if ((!m || m[j] != 0.0f) && s[j] > mx)
            mx = s[j];
    if (mx == -FLT_MAX) { // nothing valid (or every valid score is -FLT_MAX, equally degenerate)
        memset(s, 0, n * sizeof *s);
        return 0;
    }
    float sum[LANES] = {0};
    j = 0;
    if (m) {
        for (; j + LANES <= n; j += LANES)
            for (size_t k = 0; k < LANES; k++) {
                float e = m[j + k] != 0.0f ? fast_expf(s[j + k] - mx) : 0.0f;
                s[j + k] = e;
                sum[k] += e;
            }
    } else {
        for (; j + LANES <= n; j += LANES)
            for (size_t k = 0; k < LANES; k++) {
                float e = fast_expf(s[j + k] - mx);
                s[j + k] = e;
                sum[k] += e;
            }
    }
    float total = 0.0f;
    for (size_t k = 0; k < LANES; k++)
        total += sum[k];
    for (; j < n; j++) {
        float e = !m || m[j] != 0.0f ? fast_expf(s[j] - mx) : 0.0f;
        s[j] = e;
        total += e;
    }
    float inv = 1.0f / total; // total >= exp(0) = 1 for the arg max
    for (j = 0; j < n; j++)
        s[j] *= inv;
    return 1;
}

// Softmax backward of one row, in place: dp[j] <- scale * p[j] (dp[j] - sum_k p[k] dp[k]).
RD_SIMD static void
softmax_row_backward(float *restrict dp, const float *restrict p, size_t n, float scale) {
    float acc[LANES] = {0};
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (size_t k = 0; k < LANES; k++)
            acc[k] += p[j + k] * dp[j + k];
    float dot = 0.0f;
    for (size_t k = 0; k < LANES; k++)
        dot += acc[k];
    for (; j < n; j++)
        dot += p[j] * dp[j];
    for (j = 0; j < n; j++)
        dp[j] = scale * p[j] * (dp[j] - dot);
}

// Mask row of one example, or NULL when every position is valid (the softmax then skips the
// masked loads and selects).
static const float *mask_row(const float *mask, size_t b, size_t T) {
    if (!mask)
        return NULL;
    const float *m = mask + b * T;
    for (size_t t = 0; t < T; t++)
        if (m[t] == 0.0f)
            return m;
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// BLAS threads

void rd_blas_set_threads(int n) {
    RD_ASSERT(n >= 1);
    openblas_set_num_threads(n);
}

int rd_blas_get_threads(void) {
    return openblas_get_num_threads();
}

// ---------------------------------------------------------------------------------------------
// Activations

int rd_act_parse(const char *name, rd_act_kind *out) {
    static const char *const names[] = {"none", "relu", "gelu", "sigmoid"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (rd_act_kind)i;
            return RD_OK;
        }
    return RD_ERR_ARG;
}

const char *rd_act_name(int kind) {
    switch (kind) {
        case RD_ACT_NONE:
            return "none";
        case RD_ACT_RELU:
            return "relu";
        case RD_ACT_GELU:
            return "gelu";
        case RD_ACT_SIGMOID:
            return "sigmoid";
        default:
            return "?";
    }
}

// out, inp (N). A NaN input stays NaN (x <= 0 is false for it): mapped to 0, a diverged
// parameter would silence its unit and leave the loss finite, hiding the divergence from the
// trainer's checks.
RD_SIMD void rd_relu_forward(float *restrict out, const float *restrict inp, size_t N) {
    for (size_t i = 0; i < N; i++)
        out[i] = inp[i] <= 0.0f ? 0.0f : inp[i];
}

// dinp, dout, inp (N)
RD_SIMD void rd_relu_backward(float *restrict dinp,
                              const float *restrict dout,
                              const float *restrict inp,
                              size_t N) {
    for (size_t i = 0; i < N; i++)
        dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

#define GELU_SCALE 0.7978845608028654f // sqrt(2 / pi)

// tanh(u) = 1 - 2 / (1 + e^{2u}), exact at both saturations with the clamped exp.
static inline float fast_tanhf(float u) {
    return 1.0f - 2.0f / (1.0f + fast_expf(2.0f * u));
}

// Beyond |x| = GELU_SAT the tanh is +-1 in fp32 (|u| > 43, in fast_tanhf and libm tanhf alike),
// so GELU(x) is x or 0 and GELU'(x) is 1 or 0 exactly: the kernels take those limits there
// rather than compute them, because the backward's 0.134 x^2 overflows beyond |x| = 5e19 and
// (1 - t^2) times it is then 0 * inf = NaN, and x (1 + t) at x = -inf is -inf * 0 = NaN. A NaN
// x stays NaN (both clamps compare false).
#define GELU_SAT 10.0f

// GELU'(x) of the tanh form: 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 0.044715 x^2).
static inline float gelu_grad(float x) {
    x = x > GELU_SAT ? GELU_SAT : x;
    x = x < -GELU_SAT ? -GELU_SAT : x;
    float t = fast_tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
    float dt = (1.0f - t * t) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * dt;
}

// out, inp (N): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); 0 below -GELU_SAT.
RD_SIMD void rd_gelu_forward(float *restrict out, const float *restrict inp, size_t N) {
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float t = fast_tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
        out[i] = x < -GELU_SAT ? 0.0f : 0.5f * x * (1.0f + t);
    }
}

// dinp, dout, inp (N)
RD_SIMD void rd_gelu_backward(float *restrict dinp,
                              const float *restrict dout,
                              const float *restrict inp,
                              size_t N) {
    for (size_t i = 0; i < N; i++)
        dinp[i] += dout[i] * gelu_grad(inp[i]);
}

// out, inp (N)
RD_SIMD void rd_sigmoid_forward(float *restrict out, const float *restrict inp, size_t N) {
    for (size_t i = 0; i < N; i++)
        out[i] = 1.0f / (1.0f + fast_expf(-inp[i]));
}

// dinp, dout, out (N)
RD_SIMD void rd_sigmoid_backward(float *restrict dinp,
                                 const float *restrict dout,
                                 const float *restrict out,
                                 size_t N) {
    for (size_t i = 0; i < N; i++)
        dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

void rd_act_forward(float *out, const float *inp, size_t N, int kind) {
    switch (kind) {
        case RD_ACT_NONE:
            if (out != inp)
                memcpy(out, inp, N * sizeof *out);
            break;
        case RD_ACT_RELU:
            rd_relu_forward(out, inp, N);
            break;
        case RD_ACT_GELU:
            rd_gelu_forward(out, inp, N);
            break;
        case RD_ACT_SIGMOID:
            rd_sigmoid_forward(out, inp, N);
            break;
        default:
            RD_ASSERT_MSG(0, "unknown activation %d", kind);
    }
}

void rd_act_backward(
    float *dinp, const float *dout, const float *inp, const float *out, size_t N, int kind) {
    switch (kind) {
        case RD_ACT_NONE:
            for (size_t i = 0; i < N; i++)
                dinp[i] += dout[i];
            break;
        case RD_ACT_RELU:
            rd_relu_backward(dinp, dout, inp, N);
            break;
        case RD_ACT_GELU:
            rd_gelu_backward(dinp, dout, inp, N);
            break;
        case RD_ACT_SIGMOID:
            rd_sigmoid_backward(dinp, dout, out, N);
            break;
        default:
            RD_ASSERT_MSG(0, "unknown activation %d", kind);
    }
}

// Overwriting twins of the activation backward (dinp = ..., not +=) for the composite layers,
// which would otherwise zero their scratch first.
RD_SIMD static void relu_backward_set(float *restrict dinp,
                                      const float *restrict dout,
                                      const float *restrict inp,
                                      size_t N) {
    for (size_t i = 0; i < N; i++)
        dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
}

RD_SIMD static void gelu_backward_set(float *restrict dinp,
                                      const float *restrict dout,
                                      const float *restrict inp,
                                      size_t N) {
    for (size_t i = 0; i < N; i++)
        dinp[i] = dout[i] * gelu_grad(inp[i]);
}

RD_SIMD static void sigmoid_backward_set(float *restrict dinp,
                                         const float *restrict dout,
                                         const float *restrict out,
                                         size_t N) {
    for (size_t i = 0; i < N; i++)
        dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

static void act_backward_set(
    float *dinp, const float *dout, const float *inp, const float *out, size_t N, int kind) {
    switch (kind) {
        case RD_ACT_NONE:
            memcpy(dinp, dout, N * sizeof *dinp);
            break;
        case RD_ACT_RELU:
            relu_backward_set(dinp, dout, inp, N);
            break;
        case RD_ACT_GELU:
            gelu_backward_set(dinp, dout, inp, N);
            break;
        case RD_ACT_SIGMOID:
            sigmoid_backward_set(dinp, dout, out, N);
            break;
        default:
            RD_ASSERT_MSG(0, "unknown activation %d", kind);
    }
}

// ---------------------------------------------------------------------------------------------
// Embedding gather with pooling

// out (B, D), rows (U, D), idx (B, S)
void rd_embedding_pool_forward(float *restrict out,
                               const float *restrict rows,
                               const int32_t *restrict idx,
                               size_t B,
                               size_t S,
                               size_t U,
                               size_t D,
                               int pooling) {
    RD_ASSERT(pooling == RD_POOL_SUM || pooling == RD_POOL_MEAN);
    RD_ASSERT(U == 0 || rows != NULL);
    for (size_t b = 0; b < B; b++) {
        float *o = out + b * D;
        memset(o, 0, D * sizeof *o);
        size_t cnt = 0;
        for (size_t s = 0; s < S; s++) {
            int32_t r = idx[b * S + s];
            if (r < 0)
                continue;
            RD_ASSERT((size_t)r < U);
            const float *row = rows + (size_t)r * D;
            for (size_t i = 0; i < D; i++)
                o[i] += row[i];
            cnt++;
        }
        if (pooling == RD_POOL_MEAN && cnt > 1) {
            float inv = 1.0f / (float)cnt;
            for (size_t i = 0; i < D; i++)
                o[i] *= inv;
        }
    }
}

// drows (U, D), dout (B, D), idx (B, S)
void rd_embedding_pool_backward(float *restrict drows,
                                const float *restrict dout,
                                const int32_t *restrict idx,
                                size_t B,
                                size_t S,
                                size_t U,
                                size_t D,
                                int pooling) {
    RD_ASSERT(pooling == RD_POOL_SUM || pooling == RD_POOL_MEAN);
    for (size_t b = 0; b < B; b++) {
        const float *g = dout + b * D;
        float w = 1.0f;
        if (pooling == RD_POOL_MEAN) {
            size_t cnt = 0;
            for (size_t s = 0; s < S; s++)
                cnt += idx[b * S + s] >= 0;
            if (cnt > 1)
                w = 1.0f / (float)cnt;
        }
        for (size_t s = 0; s < S; s++) {
            int32_t r = idx[b * S + s];
            if (r < 0)
                continue;
            RD_ASSERT((size_t)r < U);
            float *d = drows + (size_t)r * D;
            for (size_t i = 0; i < D; i++)
                d[i] += w * g[i];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concat

// out (B, sum widths), inps[i] (B, widths[i])
void rd_concat_forward(
    float *out, const float *const *inps, const size_t *widths, size_t n, size_t B) {
    size_t W = 0;
    for (size_t i = 0; i < n; i++)
        W += widths[i];
    for (size_t b = 0; b < B; b++) {
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(out + b * W + off, inps[i] + b * widths[i], widths[i] * sizeof(float));
            off += widths[i];
        }
    }
}

// dinps[i] (B, widths[i]), dout (B, sum widths)
void rd_concat_backward(
    float *const *dinps, const float *dout, const size_t *widths, size_t n, size_t B) {
    size_t W = 0;
    for (size_t i = 0; i < n; i++)
        W += widths[i];
    for (size_t b = 0; b < B; b++) {
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            if (dinps[i]) {
                float *d = dinps[i] + b * widths[i];
                const float *g = dout + b * W + off;
                for (size_t k = 0; k < widths[i]; k++)
                    d[k] += g[k];
            }
            off += widths[i];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Linear

// out (BT, OC), inp (BT, C), weight (OC, C), bias (OC)
void rd_linear_forward(float *restrict out,
                       const float *restrict inp,
                       const float *restrict weight,
                       const float *restrict bias,
                       size_t BT,
                       size_t C,
                       size_t OC) {
    RD_ASSERT(out && inp && weight && C > 0 && OC > 0);
    if (BT == 0)
        return;
    float beta = 0.0f;
    if (bias) {
        // Seed the output with the bias and let sgemm accumulate onto it (beta = 1): one pass.
        for (size_t bt = 0; bt < BT; bt++)
            memcpy(out + bt * OC, bias, OC * sizeof *out);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)BT, (int)OC, (int)C, 1.0f, inp,
                (int)C, weight, (int)C, beta, out, (int)OC);
}

// dbias (OC) += sum over rows of dout (BT, OC)
RD_SIMD static void
colsum_add(float *restrict dbias, const float *restrict dout, size_t BT, size_t OC) {
    for (size_t bt = 0; bt < BT; bt++) {
        const float *g = dout + bt * OC;
        for (size_t o = 0; o < OC; o++)
            dbias[o] += g[o];
    }
}

// dinp (BT, C), dweight (OC, C), dbias (OC), dout (BT, OC), inp (BT, C), weight (OC, C).
// acc = 1: dinp += ...; acc = 0: dinp = ... (no need to zero it first). Weight and bias
// gradients always accumulate.
static void linear_backward(float *restrict dinp,
                            float *restrict dweight,
                            float *restrict dbias,
                            const float *restrict dout,
                            const float *restrict inp,
                            const float *restrict weight,
                            size_t BT,
                            size_t C,
                            size_t OC,
                            int acc) {
    RD_ASSERT(dweight && dout && inp && weight && C > 0 && OC > 0);
    if (BT == 0)
        return;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)BT, (int)C, (int)OC, 1.0f, dout,
                    (int)OC, weight, (int)C, acc ? 1.0f : 0.0f, dinp, (int)C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)BT, 1.0f, dout,
                (int)OC, inp, (int)C, 1.0f, dweight, (int)C);
    if (dbias)
        colsum_add(dbias, dout, BT, OC);
}

void rd_linear_backward(float *restrict dinp,
                        float *restrict dweight,
                        float *restrict dbias,
                        const float *restrict dout,
                        const float *restrict inp,
                        const float *restrict weight,
                        size_t BT,
                        size_t C,
                        size_t OC) {
    linear_backward(dinp, dweight, dbias, dout, inp, weight, BT, C, OC, 1);
}

// ---------------------------------------------------------------------------------------------
// Layer norm

#define LN_EPS 1e-5f

// sum of x (n) with LANES independent accumulators (inlined into vectorised callers)
static inline float lane_sum(const float *restrict x, size_t n) {
    float acc[LANES] = {0};
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (size_t k = 0; k < LANES; k++)
            acc[k] += x[j + k];
    float s = 0.0f;
    for (size_t k = 0; k < LANES; k++)
        s += acc[k];
    for (; j < n; j++)
        s += x[j];
    return s;
}

// sum of (x - m)^2 (returned) and of x - m (*dsum)
static inline float lane_sqdev(const float *restrict x, float m, size_t n, float *dsum) {
    float acc[LANES] = {0}, acc1[LANES] = {0};
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (size_t k = 0; k < LANES; k++) {
            float d = x[j + k] - m;
            acc1[k] += d;
            acc[k] += d * d;
        }
    float s = 0.0f, s1 = 0.0f;
    for (size_t k = 0; k < LANES; k++) {
        s += acc[k];
        s1 += acc1[k];
    }
    for (; j < n; j++) {
        s1 += x[j] - m;
        s += (x[j] - m) * (x[j] - m);
    }
    *dsum = s1;
    return s;
}

// Mean and rstd of a row whose squared deviations overflowed float (a spread beyond ~1e19: a
// diverged input), in double as the naive twin computes them. The float path gave rstd =
// 1 / sqrt(inf) = 0 there: every output its bias and every input gradient 0, a finite loss that
// hid the divergence behind the norm. Cold: the hot loop pays one compare per row.
static void __attribute__((noinline))
layernorm_stats_wide(const float *restrict x, size_t C, float *mean, float *rstd) {
    double m = 0.0, v = 0.0;
    for (size_t i = 0; i < C; i++)
        m += (double)x[i];
    m /= (double)C;
    for (size_t i = 0; i < C; i++)
        v += ((double)x[i] - m) * ((double)x[i] - m);
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(v / (double)C + (double)LN_EPS));
}

// out (BT, C), mean, rstd (BT), inp (BT, C), weight, bias (C)
RD_SIMD void rd_layernorm_forward(float *restrict out,
                                  float *restrict mean,
                                  float *restrict rstd,
                                  const float *restrict inp,
                                  const float *restrict weight,
                                  const float *restrict bias,
                                  size_t BT,
                                  size_t C) {
    RD_ASSERT(C > 0);
    for (size_t bt = 0; bt < BT; bt++) {
        const float *x = inp + bt * C;
        // Two passes (no cancellation), the second also correcting the float mean by the mean
        // deviation from it: a row that barely varies far from 0 multiplies the mean's error by
        // rstd (up to 1/sqrt(eps) = 316), and a constant row must normalise to exactly 0.
        float m0 = lane_sum(x, C) / (float)C, d1;
        float d2 = lane_sqdev(x, m0, C, &d1);
        float m = m0 + d1 / (float)C;
        float v = (d2 - d1 * (d1 / (float)C)) / (float)C;
        v = v < 0.0f ? 0.0f : v; // (a NaN stays NaN)
        float s = 1.0f / sqrtf(v + LN_EPS);
        if (d2 == INFINITY)
            layernorm_stats_wide(x, C, &m, &s);
        float *o = out + bt * C;
        for (size_t i = 0; i < C; i++)
            o[i] = (s * (x[i] - m)) * weight[i] + bias[i];
        mean[bt] = m;
        rstd[bt] = s;
    }
}

// dinp (BT, C), dweight, dbias (C), dout, inp (BT, C), weight (C), mean, rstd (BT).
// dweight and dbias are required; dinp may be NULL.
RD_SIMD void rd_layernorm_backward(float *restrict dinp,
                                   float *restrict dweight,
                                   float *restrict dbias,
                                   const float *restrict dout,
                                   const float *restrict inp,
                                   const float *restrict weight,
                                   const float *restrict mean,
                                   const float *restrict rstd,
                                   size_t BT,
                                   size_t C) {
    RD_ASSERT(C > 0 && dweight && dbias);
    for (size_t bt = 0; bt < BT; bt++) {
        const float *g = dout + bt * C;
        const float *x = inp + bt * C;
        float m = mean[bt], s = rstd[bt];
        // Two reductions first (llm.c): mean of dnorm and of dnorm * norm.
        float a1[LANES] = {0}, a2[LANES] = {0};
        size_t j = 0;
        for (; j + LANES <= C; j += LANES)
            for (size_t k = 0; k < LANES; k++) {
                float norm = (x[j + k] - m) * s;
                float dnorm = weight[j + k] * g[j + k];
                a1[k] += dnorm;
                a2[k] += dnorm * norm;
            }
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (size_t k = 0; k < LANES; k++) {
            dnorm_mean += a1[k];
            dnorm_norm_mean += a2[k];
        }
        for (; j < C; j++) {
            float norm = (x[j] - m) * s;
            float dnorm = weight[j] * g[j];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= (float)C;
        dnorm_norm_mean /= (float)C;
        for (size_t i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            dbias[i] += g[i];
            dweight[i] += norm * g[i];
        }
        if (dinp) {
            float *d = dinp + bt * C;
            for (size_t i = 0; i < C; i++) {
                float norm = (x[i] - m) * s;
                d[i] += (weight[i] * g[i] - dnorm_mean - norm * dnorm_norm_mean) * s;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Multi-head self-attention

// Positions of example b up to its last valid one (mask NULL: T). The fast attention runs on those
// only: a history keeps its padding after its events, so the queries and keys after the last
// valid position are padding, and an example of n events costs n^2 rather than T^2.
static size_t attn_span(const float *mask, size_t b, size_t T) {
    if (!mask)
        return T;
    const float *m = mask + b * T;
    size_t n = T;
    while (n > 0 && m[n - 1] == 0.0f)
        n--;
    return n;
}

// out (B, T, C), att (B, NH, T, T), qkv (B, T, 3C), mask (B, T)
void rd_attention_forward(float *restrict out,
                          float *restrict att,
                          const float *restrict qkv,
                          const float *restrict mask,
                          size_t B,
                          size_t T,
                          size_t C,
                          size_t NH,
                          int causal) {
    RD_ASSERT(NH > 0 && C % NH == 0 && T > 0);
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (size_t b = 0; b < B; b++) {
        const float *mb = mask_row(mask, b, T);
        const size_t n = attn_span(mask, b, T);
        if (n < T) // the queries after the last valid position: output 0, probabilities 0
            memset(out + (b * T + n) * C, 0, (T - n) * C * sizeof *out);
        for (size_t h = 0; h < NH; h++) {
            const float *q = qkv + b * T * 3 * C + h * hs;
            const float *k = q + C;
            const float *v = q + 2 * C;
            float *S = att + (b * NH + h) * T * T;
            if (n < T)
                memset(S + n * T, 0, (T - n) * T * sizeof *S);
            if (n == 0)
                continue;
            // S (n, n) = scale * Q_bh (n, hs) . K_bh^T: both read in place with stride 3C.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)hs, scale, q,
                        (int)(3 * C), k, (int)(3 * C), 0.0f, S, (int)T);
            for (size_t i = 0; i < n; i++) {
                float *row = S + i * T;
                size_t w = causal ? i + 1 : n;
                softmax_row(row, mb, w);
                if (w < T)
                    memset(row + w, 0, (T - w) * sizeof *row);
            }
            // out_bh (n, hs) = P (n, n) . V_bh (n, hs), written with stride C.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)hs, (int)n, 1.0f, S,
                        (int)T, v, (int)(3 * C), 0.0f, out + b * T * C + h * hs, (int)C);
        }
    }
}

// dqkv (B, T, 3C), scratch (T, T), dout (B, T, C), qkv (B, T, 3C), att (B, NH, T, T).
// acc = 0 overwrites dqkv: each (b, head) block of dQ, dK and dV is written by exactly one gemm.
static void attention_backward(float *restrict dqkv,
                               float *restrict scratch,
                               const float *restrict dout,
                               const float *restrict qkv,
                               const float *restrict att,
                               const float *restrict mask,
                               size_t B,
                               size_t T,
                               size_t C,
                               size_t NH,
                               int causal,
                               int acc) {
    RD_ASSERT(NH > 0 && C % NH == 0 && T > 0 && scratch);
    float beta = acc ? 1.0f : 0.0f;
    (void)causal; // masked and causal entries have p = 0, so their gradient is 0 by itself
                  // (softmax backward multiplies by p)
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int ld3 = (int)(3 * C);
    for (size_t b = 0; b < B; b++) {
        // Positions after the last valid one were not computed (rd_attention_forward): their
        // dout is not read and they get no gradient (0 when acc = 0).
        const size_t n = attn_span(mask, b, T);
        if (n < T && !acc)
            memset(dqkv + (b * T + n) * 3 * C, 0, (T - n) * 3 * C * sizeof *dqkv);
        if (n == 0)
            continue;
        for (size_t h = 0; h < NH; h++) {
            const float *q = qkv + b * T * 3 * C + h * hs;
            const float *k = q + C;
            const float *v = q + 2 * C;
            float *dq = dqkv + b * T * 3 * C + h * hs;
            float *dk = dq + C;
            float *dv = dq + 2 * C;
            const float *P = att + (b * NH + h) * T * T;
            const float *dO = dout + b * T * C + h * hs;
            // dP (n, n) = dO (n, hs) . V^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)hs, 1.0f, dO,
                        (int)C, v, ld3, 0.0f, scratch, (int)n);
            // dV (n, hs) += P^T . dO
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)hs, (int)n, 1.0f, P,
                        (int)T, dO, (int)C, beta, dv, ld3);
            for (size_t i = 0; i < n; i++)
                softmax_row_backward(scratch + i * n, P + i * T, n, scale);
            // dQ += dS . K ; dK += dS^T . Q   (dS already carries the 1/sqrt(hs) scale)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)hs, (int)n, 1.0f,
                        scratch, (int)n, k, ld3, beta, dq, ld3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)hs, (int)n, 1.0f,
                        scratch, (int)n, q, ld3, beta, dk, ld3);
        }
    }
}

void rd_attention_backward(float *restrict dqkv,
                           float *restrict scratch,
                           const float *restrict dout,
                           const float *restrict qkv,
                           const float *restrict att,
                           const float *restrict mask,
                           size_t B,
                           size_t T,
                           size_t C,
                           size_t NH,
                           int causal) {
    attention_backward(dqkv, scratch, dout, qkv, att, mask, B, T, C, NH, causal, 1);
}

// ---------------------------------------------------------------------------------------------
// Target attention

// out (B, C), att (B, NH, T), q (B, C), kv (B, T, 2C), mask (B, T)
void rd_target_attention_forward(float *restrict out,
                                 float *restrict att,
                                 const float *restrict q,
                                 const float *restrict kv,
                                 const float *restrict mask,
                                 size_t B,
                                 size_t T,
                                 size_t C,
                                 size_t NH) {
    RD_ASSERT(NH > 0 && C % NH == 0 && T > 0);
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int ld2 = (int)(2 * C);
    for (size_t b = 0; b < B; b++) {
        const float *mb = mask_row(mask, b, T);
        for (size_t h = 0; h < NH; h++) {
            const float *k = kv + b * T * 2 * C + h * hs;
            const float *v = k + C;
            float *p = att + (b * NH + h) * T;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)T, (int)hs, scale, k, ld2,
                        q + b * C + h * hs, 1, 0.0f, p, 1);
            softmax_row(p, mb, T);
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)T, (int)hs, 1.0f, v, ld2, p, 1, 0.0f,
                        out + b * C + h * hs, 1);
        }
    }
}

// dq (B, C), dkv (B, T, 2C), scratch (T), dout (B, C)
void rd_target_attention_backward(float *restrict dq,
                                  float *restrict dkv,
                                  float *restrict scratch,
                                  const float *restrict dout,
                                  const float *restrict q,
                                  const float *restrict kv,
                                  const float *restrict att,
                                  const float *restrict mask,
                                  size_t B,
                                  size_t T,
                                  size_t C,
                                  size_t NH) {
    RD_ASSERT(NH > 0 && C % NH == 0 && T > 0 && scratch && dkv);
    (void)mask; // p = 0 on masked keys
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int ld2 = (int)(2 * C);
    for (size_t b = 0; b < B; b++) {
        for (size_t h = 0; h < NH; h++) {
            const float *k = kv + b * T * 2 * C + h * hs;
            const float *v = k + C;
            float *dk = dkv + b * T * 2 * C + h * hs;
            float *dv = dk + C;
            const float *p = att + (b * NH + h) * T;
            const float *g = dout + b * C + h * hs;
            // dp (T) = V_bh . g ; dV_bh += p g^T
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)T, (int)hs, 1.0f, v, ld2, g, 1, 0.0f,
                        scratch, 1);
            cblas_sger(CblasRowMajor, (int)T, (int)hs, 1.0f, p, 1, g, 1, dv, ld2);
            softmax_row_backward(scratch, p, T, scale);
            if (dq)
                cblas_sgemv(CblasRowMajor, CblasTrans, (int)T, (int)hs, 1.0f, k, ld2, scratch, 1,
                            1.0f, dq + b * C + h * hs, 1);
            cblas_sger(CblasRowMajor, (int)T, (int)hs, 1.0f, scratch, 1, q + b * C + h * hs, 1, dk,
                       ld2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Masked mean

// out (B, C), inp (B, T, C), mask (B, T)
void rd_masked_mean_forward(float *restrict out,
                            const float *restrict inp,
                            const float *restrict mask,
                            size_t B,
                            size_t T,
                            size_t C) {
    for (size_t b = 0; b < B; b++) {
        float *o = out + b * C;
        memset(o, 0, C * sizeof *o);
        float cnt = 0.0f;
        for (size_t t = 0; t < T; t++) {
            float m = mask ? mask[b * T + t] : 1.0f;
            if (m == 0.0f)
                continue;
            const float *x = inp + (b * T + t) * C;
            for (size_t i = 0; i < C; i++)
                o[i] += m * x[i];
            cnt += m;
        }
        if (cnt > 0.0f) {
            float inv = 1.0f / cnt;
            for (size_t i = 0; i < C; i++)
                o[i] *= inv;
        }
    }
}

// dinp (B, T, C), dout (B, C), mask (B, T)
void rd_masked_mean_backward(float *restrict dinp,
                             const float *restrict dout,
                             const float *restrict mask,
                             size_t B,
                             size_t T,
                             size_t C) {
    for (size_t b = 0; b < B; b++) {
        float cnt = 0.0f;
        for (size_t t = 0; t < T; t++)
            cnt += mask ? mask[b * T + t] : 1.0f;
        if (cnt == 0.0f)
            continue;
        const float *g = dout + b * C;
        for (size_t t = 0; t < T; t++) {
            float w = (mask ? mask[b * T + t] : 1.0f) / cnt;
            if (w == 0.0f)
                continue;
            float *d = dinp + (b * T + t) * C;
            for (size_t i = 0; i < C; i++)
                d[i] += w * g[i];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Losses

// softplus(x) = log(1 + e^x), stable for both signs.
static float softplusf(float x) {
    return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

static float sigmoidf(float x) {
    return x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
}

// losses, logits, labels (B)
void rd_bce_logits_forward(float *restrict losses,
                           const float *restrict logits,
                           const float *restrict labels,
                           size_t B) {
    for (size_t b = 0; b < B; b++)
        losses[b] = softplusf(logits[b]) - labels[b] * logits[b];
}

// dlogits, dlosses, logits, labels (B)
void rd_bce_logits_backward(float *restrict dlogits,
                            const float *restrict dlosses,
                            const float *restrict logits,
                            const float *restrict labels,
                            size_t B) {
    for (size_t b = 0; b < B; b++)
        dlogits[b] += dlosses[b] * (sigmoidf(logits[b]) - labels[b]);
}

// losses, logits, teacher_logits (B)
void rd_distill_bce_forward(float *restrict losses,
                            const float *restrict logits,
                            const float *restrict teacher_logits,
                            float temperature,
                            size_t B) {
    RD_ASSERT(temperature > 0.0f);
    float T = temperature;
    for (size_t b = 0; b < B; b++) {
        float x = logits[b] / T;
        float pt = sigmoidf(teacher_logits[b] / T);
        losses[b] = T * T * (softplusf(x) - pt * x);
    }
}

// dlogits, dlosses, logits, teacher_logits (B)
void rd_distill_bce_backward(float *restrict dlogits,
                             const float *restrict dlosses,
                             const float *restrict logits,
                             const float *restrict teacher_logits,
                             float temperature,
                             size_t B) {
    RD_ASSERT(temperature > 0.0f);
    float T = temperature;
    for (size_t b = 0; b < B; b++) {
        if (dlosses[b] == 0.0f) // no target: its teacher logit may be anything, even NaN
            continue;
        float ps = sigmoidf(logits[b] / T);
        float pt = sigmoidf(teacher_logits[b] / T);
        dlogits[b] += dlosses[b] * T * (ps - pt);
    }
}

// ---------------------------------------------------------------------------------------------
// Composite layers, written once over a kernel table (BLAS or naive).

typedef struct kern {
    void (*linear_fwd)(
        float *, const float *, const float *, const float *, size_t, size_t, size_t);
    void (*linear_bwd)(float *,
                       float *,
                       float *,
                       const float *,
                       const float *,
                       const float *,
                       size_t,
                       size_t,
                       size_t,
                       int acc);
    void (*attn_fwd)(
        float *, float *, const float *, const float *, size_t, size_t, size_t, size_t, int);
    void (*attn_bwd)(float *,
                     float *,
                     const float *,
                     const float *,
                     const float *,
                     const float *,
                     size_t,
                     size_t,
                     size_t,
                     size_t,
                     int,
                     int acc);
    void (*tattn_fwd)(float *,
                      float *,
                      const float *,
                      const float *,
                      const float *,
                      size_t,
                      size_t,
                      size_t,
                      size_t);
    void (*tattn_bwd)(float *,
                      float *,
                      float *,
                      const float *,
                      const float *,
                      const float *,
                      const float *,
                      const float *,
                      size_t,
                      size_t,
                      size_t,
                      size_t);
    int (*softmax)(float *, const float *, size_t);
} kern;

static const kern kern_blas = {rd_linear_forward,
                               linear_backward,
                               rd_attention_forward,
                               attention_backward,
                               rd_target_attention_forward,
                               rd_target_attention_backward,
                               softmax_row};
static const kern kern_naive = {rd_linear_forward_naive,
                                rd__linear_backward_naive_ex,
                                rd_attention_forward_naive,
                                rd__attention_backward_naive_ex,
                                rd_target_attention_forward_naive,
                                rd_target_attention_backward_naive,
                                rd__softmax_row_naive};

RD_SIMD static void add_inplace(float *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

// ---- DIN

// The attention MLP's first layer over [q, k, q - k, q * k] with W1 = [Wa | Wb | Wc | Wd] is
//     W1 f + b1 = (Wa + Wc) q + b1  +  [Wb - Wc | Wd] [k, q * k]
// so rd_din_forward computes the query's share once per example (uq, B x H) and runs the
// per-position matmul on 2C inputs instead of 4C: half the FLOPs of the layer that dominates a
// DIN step (bench_dense --seq din). The folded weights (a->fold) are rebuilt from W1 on every
// forward; gradients are unfolded back into W1's layout, so checkpoints, bundles and the
// optimiser see the plain parameterisation. The naive twin runs the plain [q, k, q - k, q * k]
// layer on every position, so test_layers checks the fold and the packing below against it.
//
// Positions: the fast path runs the MLP on the valid ones (mask != 0) only, in (b, t) order —
// the rows of feat, hid, hid_act and score then hold those alone, first (a padded position gets
// p = 0 from the softmax, so its score, and its share of every gradient, is never used;
// histories shorter than T leave many such rows).

size_t rd_din_fold_floats(const rd_seq_dims *d) {
    return d->H * 3 * d->C + d->B * d->H;
}

// Rows a row-wise layer runs on: every (b, t), or with `pack` only the valid ones (mask != 0), in
// (b, t) order (DIN, the transformer block and the request attention).
static size_t packed_rows(const float *mask, size_t BT, int pack) {
    if (!pack || !mask)
        return BT;
    size_t n = 0;
    for (size_t i = 0; i < BT; i++)
        n += mask[i] != 0.0f;
    return n;
}

// Scores (n rows, or BT without packing) -> att (positional, 0 on padding) -> softmax -> out.
static void din_attend(int (*softmax)(float *, const float *, size_t),
                       float *out,
                       const rd_din_acts *a,
                       const float *k,
                       const float *mask,
                       size_t n,
                       const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, BT = B * T;
    if (n == BT) {
        memcpy(a->att, a->score, BT * sizeof(float));
    } else { // the scores back to their positions; a padded one is 0 (the softmax drops it)
        for (size_t i = 0, r = 0; i < BT; i++)
            a->att[i] = mask[i] != 0.0f ? a->score[r++] : 0.0f;
    }
    for (size_t b = 0; b < B; b++) {
        float *p = a->att + b * T;
        softmax(p, mask ? mask + b * T : NULL, T);
        float *o = out + b * C;
        memset(o, 0, C * sizeof *o);
        for (size_t t = 0; t < T; t++) {
            const float *kt = k + (b * T + t) * C;
            for (size_t i = 0; i < C; i++)
                o[i] += p[t] * kt[i];
        }
    }
}

// rd_din_backward's unfold of one row's d[k, q * k] (f, 2C): dk_t += d[k] + d[q * k] * q_b,
// and with dq, dq_b += d[q * k] * k_t.
RD_SIMD static void din_unfold_row(float *restrict dkt,
                                   float *restrict dqb,
                                   const float *restrict f,
                                   const float *restrict kt,
                                   const float *restrict qb,
                                   size_t C) {
    if (dqb)
        for (size_t i = 0; i < C; i++)
            dqb[i] += f[C + i] * kt[i];
    for (size_t i = 0; i < C; i++)
        dkt[i] += f[i] + f[C + i] * qb[i];
}

// out = sum_t p_t k_t: dk_t += p_t dout; dp_t = dout . k_t; then through the softmax into
// s->dscore (positional; with n < BT the valid positions' entries are then moved first, as the
// rows the forward ran).
static void din_dscore(float *dk,
                       const rd_din_scratch *s,
                       const float *dout,
                       const float *k,
                       const float *mask,
                       const rd_din_acts *a,
                       size_t n,
                       const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, BT = B * T;
    for (size_t b = 0; b < B; b++) {
        const float *g = dout + b * C;
        const float *p = a->att + b * T;
        float *ds = s->dscore + b * T;
        float dot = 0.0f;
        for (size_t t = 0; t < T; t++) {
            const float *kt = k + (b * T + t) * C;
            float *dkt = dk + (b * T + t) * C;
            float dp = 0.0f;
            for (size_t i = 0; i < C; i++) {
                dkt[i] += p[t] * g[i];
                dp += g[i] * kt[i];
            }
            ds[t] = dp;
            dot += p[t] * dp;
        }
        for (size_t t = 0; t < T; t++)
            ds[t] = p[t] * (ds[t] - dot);
    }
    if (n < BT)
        for (size_t i = 0, r = 0; i < BT; i++)
            if (mask[i] != 0.0f)
                s->dscore[r++] = s->dscore[i];
}

// W1 = [Wa | Wb | Wc | Wd] folded into a->fold: wk (H, 2C) = [Wb - Wc | Wd], wq (H, C) = Wa + Wc,
// then the query's share uq (B, H) = q wq^T + b1.
static void
din_fold(const rd_din_acts *a, const float *q, const rd_din_weights *w, const rd_seq_dims *d) {
    size_t B = d->B, C = d->C, H = d->H, C2 = 2 * C;
    float *wk = a->fold, *wq = wk + H * C2, *uq = wq + H * C;
    for (size_t h = 0; h < H; h++) {
        const float *r = w->w1 + h * 4 * C;
        for (size_t i = 0; i < C; i++) {
            wq[h * C + i] = r[i] + r[2 * C + i];
            wk[h * C2 + i] = r[C + i] - r[2 * C + i];
            wk[h * C2 + C + i] = r[3 * C + i];
        }
    }
    rd_linear_forward(uq, q, wq, w->b1, B, C, H); // the query's share, bias included
}

// The fast forward: the folded layer on the valid rows [k_t, q_b * k_t] (2C wide).
void rd_din_forward(float *out,
                    const rd_din_acts *a,
                    const float *q,
                    const float *k,
                    const float *mask,
                    const rd_din_weights *w,
                    const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, H = d->H, C2 = 2 * C;
    RD_ASSERT(B > 0 && T > 0 && C > 0 && H > 0 && d->act != RD_ACT_NONE && a->fold);
    const size_t BT = B * T, n = packed_rows(mask, BT, 1);
    din_fold(a, q, w, d);
    const float *wk = a->fold, *uq = wk + H * C2 + H * C;
    // Rows [k_t, q * k_t] (n, 2C); each hid row starts as its example's query share.
    size_t r = 0;
    for (size_t b = 0; b < B; b++) {
        const float *qb = q + b * C;
        for (size_t t = 0; t < T; t++) {
            if (n < BT && mask[b * T + t] == 0.0f)
                continue;
            const float *kt = k + (b * T + t) * C;
            float *f = a->feat + r * C2;
            memcpy(f, kt, C * sizeof *f);
            for (size_t i = 0; i < C; i++)
                f[C + i] = qb[i] * kt[i];
            memcpy(a->hid + r * H, uq + b * H, H * sizeof(float));
            r++;
        }
    }
    if (n) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)H, (int)C2, 1.0f, a->feat,
                    (int)C2, wk, (int)C2, 1.0f, a->hid, (int)H);
        rd_act_forward(a->hid_act, a->hid, n * H, d->act);
        rd_linear_forward(a->score, a->hid_act, w->w2, w->b2, n, H, 1);
    }
    din_attend(softmax_row, out, a, k, mask, n, d);
}

// Every example reads the one history (k, mask). With W1 folded (rd_din_forward) a row's
// pre-activation is uq_b + (Wb - Wc) k_t + Wd (q_b * k_t): the middle term is the same for every
// example, so it runs once, on the history's valid rows, and the per-row matmul reads the C
// columns of q * k instead of 2C. The three terms are summed in another order than the
// trainer's one matmul: a few ulp apart from rd_din_forward on B copies of the history.
void rd_din_forward_shared(float *out,
                           const rd_din_acts *a,
                           const float *q,
                           const float *k,
                           const float *mask,
                           const rd_din_weights *w,
                           const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, H = d->H, C2 = 2 * C;
    RD_ASSERT(mask != NULL && B > 0 && T > 0 && C > 0 && H > 0 && d->act != RD_ACT_NONE && a->fold);
    const size_t nt = packed_rows(mask, T, 1), n = B * nt;
    din_fold(a, q, w, d);
    const float *wk = a->fold, *uq = wk + H * C2 + H * C;
    if (nt) {
        // The keys' share kh (nt, H) = k_valid [Wb - Wc]^T, into hid_act (free until the
        // activation below); the valid keys packed into feat first.
        size_t r = 0;
        for (size_t t = 0; t < T; t++)
            if (mask[t] != 0.0f)
                memcpy(a->feat + (r++) * C, k + t * C, C * sizeof(float));
        float *kh = a->hid_act;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nt, (int)H, (int)C, 1.0f, a->feat,
                    (int)C, wk, (int)C2, 0.0f, kh, (int)H);
        // Rows q_b * k_t (n, C); each hid row starts as uq_b + kh_t.
        r = 0;
        for (size_t b = 0; b < B; b++) {
            const float *qb = q + b * C, *ub = uq + b * H;
            for (size_t t = 0, j = 0; t < T; t++) {
                if (mask[t] == 0.0f)
                    continue;
                const float *kt = k + t * C, *kj = kh + (j++) * H;
                float *f = a->feat + r * C, *hr = a->hid + r * H;
                for (size_t i = 0; i < C; i++)
                    f[i] = qb[i] * kt[i];
                for (size_t i = 0; i < H; i++)
                    hr[i] = ub[i] + kj[i];
                r++;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)H, (int)C, 1.0f, a->feat,
                    (int)C, wk + C, (int)C2, 1.0f, a->hid, (int)H);
        rd_act_forward(a->hid_act, a->hid, n * H, d->act);
        rd_linear_forward(a->score, a->hid_act, w->w2, w->b2, n, H, 1);
    }
    // The softmax and the weighted sum on each example's nt valid scores (its rows of score, in
    // place: no backward reads them) and keys only; att gets them back at their positions.
    for (size_t b = 0; b < B; b++) {
        float *sc = a->score + b * nt, *p = a->att + b * T, *o = out + b * C;
        if (nt)
            softmax_row(sc, NULL, nt);
        memset(o, 0, C * sizeof *o);
        for (size_t t = 0, j = 0; t < T; t++) {
            if (mask[t] == 0.0f) {
                p[t] = 0.0f;
                continue;
            }
            const float pt = p[t] = sc[j++], *kt = k + t * C;
            for (size_t i = 0; i < C; i++)
                o[i] += pt * kt[i];
        }
    }
}

void rd_din_backward(float *dq,
                     float *dk,
                     const rd_din_weights *dw,
                     const rd_din_scratch *s,
                     const float *dout,
                     const float *q,
                     const float *k,
                     const float *mask,
                     const rd_din_acts *a,
                     const rd_din_weights *w,
                     const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, H = d->H, C2 = 2 * C;
    RD_ASSERT(dk != NULL && a->fold && s->dfold);
    const size_t BT = B * T, n = packed_rows(mask, BT, 1);
    const float *wk = a->fold, *wq = wk + H * C2;
    float *dwk = s->dfold, *ga = dwk + H * C2, *S = ga + H * C;
    din_dscore(dk, s, dout, k, mask, a, n, d);
    memset(S, 0, B * H * sizeof *S);
    if (n) {
        linear_backward(s->dhid_act, dw->w2, dw->b2, s->dscore, a->hid_act, w->w2, n, H, 1, 0);
        act_backward_set(s->dhid, s->dhid_act, a->hid, a->hid_act, n * H, d->act);
        // d[k, q * k] (n, 2C) = dhid wk; d wk (H, 2C) = dhid^T [k, q * k]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)C2, (int)H, 1.0f,
                    s->dhid, (int)H, wk, (int)C2, 0.0f, s->dfeat, (int)C2);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)H, (int)C2, (int)n, 1.0f, s->dhid,
                    (int)H, a->feat, (int)C2, 0.0f, dwk, (int)C2);
    } else {
        memset(dwk, 0, H * C2 * sizeof *dwk);
    }
    // Per row: dk_t += d[k] + d[q * k] * q_b, dq_b += d[q * k] * k_t; S_b = sum_t dhid_t.
    size_t r = 0;
    for (size_t b = 0; b < B; b++) {
        const float *qb = q + b * C;
        float *dqb = dq ? dq + b * C : NULL;
        for (size_t t = 0; t < T; t++) {
            if (n < BT && mask[b * T + t] == 0.0f)
                continue;
            const float *kt = k + (b * T + t) * C, *f = s->dfeat + r * C2;
            din_unfold_row(dk + (b * T + t) * C, dqb, f, kt, qb, C);
            add_inplace(S + b * H, s->dhid + r * H, H);
            r++;
        }
    }
    // The query's share uq = q wq^T + b1: dq += S wq, d wq = S^T q, db1 += sum_b S_b.
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)H, (int)C, (int)B, 1.0f, S, (int)H, q,
                (int)C, 0.0f, ga, (int)C);
    colsum_add(dw->b1, S, B, H);
    if (dq)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)C, (int)H, 1.0f, S,
                    (int)H, wq, (int)C, 1.0f, dq, (int)C);
    // Unfold into W1 = [Wa | Wb | Wc | Wd]: wq = Wa + Wc, wk = [Wb - Wc | Wd].
    for (size_t h = 0; h < H; h++) {
        float *g = dw->w1 + h * 4 * C;
        const float *gq = ga + h * C, *gk = dwk + h * C2;
        for (size_t i = 0; i < C; i++) {
            g[i] += gq[i];
            g[C + i] += gk[i];
            g[2 * C + i] += gq[i] - gk[i];
            g[3 * C + i] += gk[C + i];
        }
    }
}

// The plain layer on every position: feat (B, T, 4C) = [q, k, q - k, q * k].
void rd_din_forward_naive(float *out,
                          const rd_din_acts *a,
                          const float *q,
                          const float *k,
                          const float *mask,
                          const rd_din_weights *w,
                          const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, H = d->H;
    RD_ASSERT(B > 0 && T > 0 && C > 0 && H > 0 && d->act != RD_ACT_NONE);
    const size_t BT = B * T;
    float *f = a->feat;
    for (size_t b = 0; b < B; b++) {
        const float *qb = q + b * C;
        for (size_t t = 0; t < T; t++) {
            const float *kt = k + (b * T + t) * C;
            for (size_t i = 0; i < C; i++) {
                f[i] = qb[i];
                f[C + i] = kt[i];
                f[2 * C + i] = qb[i] - kt[i];
                f[3 * C + i] = qb[i] * kt[i];
            }
            f += 4 * C;
        }
    }
    rd_linear_forward_naive(a->hid, a->feat, w->w1, w->b1, BT, 4 * C, H);
    rd_act_forward(a->hid_act, a->hid, BT * H, d->act);
    rd_linear_forward_naive(a->score, a->hid_act, w->w2, w->b2, BT, H, 1);
    din_attend(rd__softmax_row_naive, out, a, k, mask, BT, d);
}

void rd_din_backward_naive(float *dq,
                           float *dk,
                           const rd_din_weights *dw,
                           const rd_din_scratch *s,
                           const float *dout,
                           const float *q,
                           const float *k,
                           const float *mask,
                           const rd_din_acts *a,
                           const rd_din_weights *w,
                           const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, H = d->H;
    RD_ASSERT(dk != NULL);
    const size_t BT = B * T;
    din_dscore(dk, s, dout, k, mask, a, BT, d);
    rd__linear_backward_naive_ex(s->dhid_act, dw->w2, dw->b2, s->dscore, a->hid_act, w->w2, BT, H,
                                 1, 0);
    act_backward_set(s->dhid, s->dhid_act, a->hid, a->hid_act, BT * H, d->act);
    rd__linear_backward_naive_ex(s->dfeat, dw->w1, dw->b1, s->dhid, a->feat, w->w1, BT, 4 * C, H,
                                 0);
    const float *f = s->dfeat;
    for (size_t b = 0; b < B; b++) {
        const float *qb = q + b * C;
        float *dqb = dq ? dq + b * C : NULL;
        for (size_t t = 0; t < T; t++) {
            const float *kt = k + (b * T + t) * C;
            float *dkt = dk + (b * T + t) * C;
            for (size_t i = 0; i < C; i++) {
                if (dqb)
                    dqb[i] += f[i] + f[2 * C + i] + f[3 * C + i] * kt[i];
                dkt[i] += f[C + i] - f[2 * C + i] + f[3 * C + i] * qb[i];
            }
            f += 4 * C;
        }
    }
}

// ---- Transformer block

// Rows of a (B, T) layout and its packed form (the valid positions, in (b, t) order): gather
// copies the valid rows of src (positional) to dst rows 0..n-1; scatter writes packed rows back
// to their positions from the last one down (so src may be dst: a packed row never lies after
// its position), zero rows at padding; scatter_add adds them instead. Rows are w floats.
static void rows_gather(float *dst, const float *src, const float *mask, size_t BT, size_t w) {
    for (size_t i = 0, r = 0; i < BT; i++)
        if (mask[i] != 0.0f)
            memmove(dst + r++ * w, src + i * w, w * sizeof(float));
}
static void
rows_scatter(float *dst, const float *src, const float *mask, size_t BT, size_t n, size_t w) {
    for (size_t i = BT, r = n; i-- > 0;) {
        if (mask[i] != 0.0f)
            memmove(dst + i * w, src + --r * w, w * sizeof(float));
        else
            memset(dst + i * w, 0, w * sizeof(float));
    }
}
static void rows_scatter_add(float *dst, const float *src, const float *mask, size_t BT, size_t w) {
    for (size_t i = 0, r = 0; i < BT; i++)
        if (mask[i] != 0.0f)
            add_inplace(dst + i * w, src + r++ * w, w);
}

// The block runs its row-wise layers (layer norms, the linears, the FFN) on the valid positions
// only, like DIN (din_rows): with `pack` and padding, ln1, ln1_mean/rstd, atty, res, ln2,
// ln2_mean/rstd, fch and fch_act hold the n valid rows first, in (b, t) order, while qkv and att
// stay positional for the attention (a padded position's qkv row is 0: masked as a key, its
// output as a query is not used). out is positional with zero rows at padding. The naive twin
// runs every row.
static void tblock_forward(const kern *K,
                           int pack,
                           float *out,
                           const rd_tblock_acts *a,
                           const float *inp,
                           const float *mask,
                           const rd_tblock_weights *w,
                           const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, NH = d->NH, BT = B * T;
    RD_ASSERT(out != inp && C % NH == 0);
    const size_t n = packed_rows(mask, BT, pack);
    const int packed = n < BT;
    const float *x = inp;
    if (packed) { // out holds the packed input until the FFN writes it
        rows_gather(out, inp, mask, BT, C);
        x = out;
    }
    rd_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, w->ln1w, w->ln1b, n, C);
    K->linear_fwd(a->qkv, a->ln1, w->qkvw, w->qkvb, n, C, 3 * C);
    if (packed)
        rows_scatter(a->qkv, a->qkv, mask, BT, n, 3 * C);
    K->attn_fwd(a->atty, a->att, a->qkv, mask, B, T, C, NH, d->causal);
    if (packed)
        rows_gather(a->atty, a->atty, mask, BT, C);
    K->linear_fwd(a->res, a->atty, w->projw, w->projb, n, C, C);
    add_inplace(a->res, x, n * C);
    rd_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res, w->ln2w, w->ln2b, n, C);
    K->linear_fwd(a->fch, a->ln2, w->fcw, w->fcb, n, C, 4 * C);
    rd_act_forward(a->fch_act, a->fch, n * 4 * C, d->act);
    K->linear_fwd(out, a->fch_act, w->fcprojw, w->fcprojb, n, 4 * C, C);
    add_inplace(out, a->res, n * C);
    if (packed)
        rows_scatter(out, out, mask, BT, n, C);
}

static void tblock_backward(const kern *K,
                            int pack,
                            float *dinp,
                            const rd_tblock_weights *dw,
                            const rd_tblock_scratch *s,
                            const float *dout,
                            const float *inp,
                            const float *mask,
                            const rd_tblock_acts *a,
                            const rd_tblock_weights *w,
                            const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, NH = d->NH, BT = B * T;
    RD_ASSERT(dinp != NULL);
    const size_t n = packed_rows(mask, BT, pack);
    const int packed = n < BT;
    // FFN half: out = res + fcproj(act(fc(ln2(res)))); dres starts as dout (its valid rows).
    if (packed)
        rows_gather(s->dres, dout, mask, BT, C);
    else
        memcpy(s->dres, dout, BT * C * sizeof(float));
    // The scratch buffers are overwritten by their first writer (acc = 0): no zeroing passes.
    K->linear_bwd(s->dfch_act, dw->fcprojw, dw->fcprojb, s->dres, a->fch_act, w->fcprojw, n, 4 * C,
                  C, 0);
    act_backward_set(s->dfch, s->dfch_act, a->fch, a->fch_act, n * 4 * C, d->act);
    K->linear_bwd(s->dln, dw->fcw, dw->fcb, s->dfch, a->ln2, w->fcw, n, C, 4 * C, 0);
    rd_layernorm_backward(s->dres, dw->ln2w, dw->ln2b, s->dln, a->res, w->ln2w, a->ln2_mean,
                          a->ln2_rstd, n, C);
    // Attention half: res = inp + proj(attn(qkv(ln1(inp))))
    if (packed)
        rows_scatter_add(dinp, s->dres, mask, BT, C);
    else
        add_inplace(dinp, s->dres, BT * C);
    K->linear_bwd(s->datty, dw->projw, dw->projb, s->dres, a->atty, w->projw, n, C, C, 0);
    if (packed) // a padded query's output is not used: no gradient
        rows_scatter(s->datty, s->datty, mask, BT, n, C);
    K->attn_bwd(s->dqkv, s->datt, s->datty, a->qkv, a->att, mask, B, T, C, NH, d->causal, 0);
    if (packed)
        rows_gather(s->dqkv, s->dqkv, mask, BT, 3 * C);
    K->linear_bwd(s->dln, dw->qkvw, dw->qkvb, s->dqkv, a->ln1, w->qkvw, n, C, 3 * C, 0);
    if (!packed) {
        rd_layernorm_backward(dinp, dw->ln1w, dw->ln1b, s->dln, inp, w->ln1w, a->ln1_mean,
                              a->ln1_rstd, BT, C);
        return;
    }
    // The input's valid rows (into dres, free now) and their gradient (into datty, zeroed),
    // added to dinp at their positions.
    rows_gather(s->dres, inp, mask, BT, C);
    memset(s->datty, 0, n * C * sizeof(float));
    rd_layernorm_backward(s->datty, dw->ln1w, dw->ln1b, s->dln, s->dres, w->ln1w, a->ln1_mean,
                          a->ln1_rstd, n, C);
    rows_scatter_add(dinp, s->datty, mask, BT, C);
}

void rd_tblock_forward(float *out,
                       const rd_tblock_acts *acts,
                       const float *inp,
                       const float *mask,
                       const rd_tblock_weights *w,
                       const rd_seq_dims *d) {
    tblock_forward(&kern_blas, 1, out, acts, inp, mask, w, d);
}
void rd_tblock_backward(float *dinp,
                        const rd_tblock_weights *dw,
                        const rd_tblock_scratch *s,
                        const float *dout,
                        const float *inp,
                        const float *mask,
                        const rd_tblock_acts *acts,
                        const rd_tblock_weights *w,
                        const rd_seq_dims *d) {
    tblock_backward(&kern_blas, 1, dinp, dw, s, dout, inp, mask, acts, w, d);
}
void rd_tblock_forward_naive(float *out,
                             const rd_tblock_acts *acts,
                             const float *inp,
                             const float *mask,
                             const rd_tblock_weights *w,
                             const rd_seq_dims *d) {
    tblock_forward(&kern_naive, 0, out, acts, inp, mask, w, d);
}
void rd_tblock_backward_naive(float *dinp,
                              const rd_tblock_weights *dw,
                              const rd_tblock_scratch *s,
                              const float *dout,
                              const float *inp,
                              const float *mask,
                              const rd_tblock_acts *acts,
                              const rd_tblock_weights *w,
                              const rd_seq_dims *d) {
    tblock_backward(&kern_naive, 0, dinp, dw, s, dout, inp, mask, acts, w, d);
}

// ---- Request-query target attention

// Like the block (tblock_forward): with `pack` and padding, the layer norm and the key/value
// linear run on the valid rows only (ln, ln_mean/rstd packed; kv positional, 0 at padding).
static void reqattn_forward(const kern *K,
                            int pack,
                            float *out,
                            const rd_reqattn_acts *a,
                            const float *x_req,
                            const float *h,
                            const float *mask,
                            const rd_reqattn_weights *w,
                            const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, E = d->E, BT = B * T;
    RD_ASSERT(E > 0 && C % d->NH == 0);
    const size_t n = packed_rows(mask, BT, pack);
    const float *x = h;
    if (n < BT) { // the valid rows of h, in kv until the linear writes it
        rows_gather(a->kv, h, mask, BT, C);
        x = a->kv;
    }
    rd_layernorm_forward(a->ln, a->ln_mean, a->ln_rstd, x, w->lnw, w->lnb, n, C);
    K->linear_fwd(a->q, x_req, w->qw, w->qb, B, E, C);
    K->linear_fwd(a->kv, a->ln, w->kvw, w->kvb, n, C, 2 * C);
    if (n < BT)
        rows_scatter(a->kv, a->kv, mask, BT, n, 2 * C);
    K->tattn_fwd(a->o, a->att, a->q, a->kv, mask, B, T, C, d->NH);
    K->linear_fwd(out, a->o, w->projw, w->projb, B, C, C);
}

static void reqattn_backward(const kern *K,
                             int pack,
                             float *dx_req,
                             float *dh,
                             const rd_reqattn_weights *dw,
                             const rd_reqattn_scratch *s,
                             const float *dout,
                             const float *x_req,
                             const float *h,
                             const float *mask,
                             const rd_reqattn_acts *a,
                             const rd_reqattn_weights *w,
                             const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, E = d->E, BT = B * T;
    RD_ASSERT(dh != NULL);
    K->linear_bwd(s->do_, dw->projw, dw->projb, dout, a->o, w->projw, B, C, C, 0);
    memset(s->dq, 0, B * C * sizeof(float));
    memset(s->dkv, 0, BT * 2 * C * sizeof(float));
    K->tattn_bwd(s->dq, s->dkv, s->dp, s->do_, a->q, a->kv, a->att, mask, B, T, C, d->NH);
    K->linear_bwd(dx_req, dw->qw, dw->qb, s->dq, x_req, w->qw, B, E, C, 1);
    const size_t n = packed_rows(mask, BT, pack);
    if (n == BT) {
        K->linear_bwd(s->dln, dw->kvw, dw->kvb, s->dkv, a->ln, w->kvw, BT, C, 2 * C, 0);
        rd_layernorm_backward(dh, dw->lnw, dw->lnb, s->dln, h, w->lnw, a->ln_mean, a->ln_rstd, BT,
                              C);
        return;
    }
    rows_gather(s->dkv, s->dkv, mask, BT, 2 * C); // a padded key has no gradient
    K->linear_bwd(s->dln, dw->kvw, dw->kvb, s->dkv, a->ln, w->kvw, n, C, 2 * C, 0);
    // dkv is free now: h's valid rows in its first n C floats, their gradient in the next.
    float *hx = s->dkv, *dx = s->dkv + n * C;
    rows_gather(hx, h, mask, BT, C);
    memset(dx, 0, n * C * sizeof(float));
    rd_layernorm_backward(dx, dw->lnw, dw->lnb, s->dln, hx, w->lnw, a->ln_mean, a->ln_rstd, n, C);
    rows_scatter_add(dh, dx, mask, BT, C);
}

void rd_reqattn_forward(float *out,
                        const rd_reqattn_acts *acts,
                        const float *x_req,
                        const float *h,
                        const float *mask,
                        const rd_reqattn_weights *w,
                        const rd_seq_dims *d) {
    reqattn_forward(&kern_blas, 1, out, acts, x_req, h, mask, w, d);
}
// Every example's query against the one history h (T, C), mask (T): the layer norm and the
// key / value linear run once, on its valid rows; the query, the attention and the output
// projection per example. Each example's attention is rd_target_attention_forward of one
// example over that kv, the calls rd_reqattn_forward makes per example. The key / value linear
// runs on n rows instead of B n: OpenBLAS may round a row differently with another row count (a
// few ulp; a batch of another size does the same), so the result equals the plain one to that.
void rd_reqattn_forward_shared(float *out,
                               const rd_reqattn_acts *a,
                               const float *x_req,
                               const float *h,
                               const float *mask,
                               const rd_reqattn_weights *w,
                               const rd_seq_dims *d) {
    size_t B = d->B, T = d->T, C = d->C, E = d->E, NH = d->NH;
    RD_ASSERT(E > 0 && C % NH == 0 && mask != NULL);
    const size_t n = packed_rows(mask, T, 1);
    const float *x = h;
    if (n < T) { // the valid rows of h, in kv until the linear writes it
        rows_gather(a->kv, h, mask, T, C);
        x = a->kv;
    }
    rd_layernorm_forward(a->ln, a->ln_mean, a->ln_rstd, x, w->lnw, w->lnb, n, C);
    rd_linear_forward(a->q, x_req, w->qw, w->qb, B, E, C);
    rd_linear_forward(a->kv, a->ln, w->kvw, w->kvb, n, C, 2 * C);
    if (n < T)
        rows_scatter(a->kv, a->kv, mask, T, n, 2 * C);
    for (size_t b = 0; b < B; b++)
        rd_target_attention_forward(a->o + b * C, a->att + b * NH * T, a->q + b * C, a->kv, mask, 1,
                                    T, C, NH);
    rd_linear_forward(out, a->o, w->projw, w->projb, B, C, C);
}
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
                         const rd_seq_dims *d) {
    reqattn_backward(&kern_blas, 1, dx_req, dh, dw, s, dout, x_req, h, mask, acts, w, d);
}
void rd_reqattn_forward_naive(float *out,
                              const rd_reqattn_acts *acts,
                              const float *x_req,
                              const float *h,
                              const float *mask,
                              const rd_reqattn_weights *w,
                              const rd_seq_dims *d) {
    reqattn_forward(&kern_naive, 0, out, acts, x_req, h, mask, w, d);
}
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
                               const rd_seq_dims *d) {
    reqattn_backward(&kern_naive, 0, dx_req, dh, dw, s, dout, x_req, h, mask, acts, w, d);
}

// ---- MLP

static int mlp_act_of(const rd_mlp_shape *s, size_t i) {
    return i + 1 < s->n ? s->act : s->act_last;
}

float *rd_mlp_output(const rd_mlp_acts *acts, const rd_mlp_shape *s) {
    RD_ASSERT(s->n >= 1 && s->n <= RD_MLP_MAX);
    return acts->post[s->n - 1];
}

static const float *mlp_keep(const rd_mlp_dropout *d, size_t i) {
    return d ? d->keep[i] : NULL;
}

static void mlp_forward(const kern *K,
                        const rd_mlp_acts *a,
                        const rd_mlp_dropout *d,
                        const float *inp,
                        const rd_mlp_weights *w,
                        const rd_mlp_shape *s,
                        size_t B) {
    RD_ASSERT(s->n >= 1 && s->n <= RD_MLP_MAX);
    const float *x = inp;
    for (size_t i = 0; i < s->n; i++) {
        size_t N = B * s->dims[i + 1];
        K->linear_fwd(a->pre[i], x, w->w[i], w->b[i], B, s->dims[i], s->dims[i + 1]);
        int act = mlp_act_of(s, i);
        if (act == RD_ACT_NONE)
            RD_ASSERT(a->post[i] == a->pre[i]);
        else
            rd_act_forward(a->post[i], a->pre[i], N, act);
        x = a->post[i];
        const float *keep = mlp_keep(d, i);
        if (keep) {
            float *o = d->out[i];
            RD_ASSERT(o && o != a->post[i]);
            for (size_t k = 0; k < N; k++)
                o[k] = a->post[i][k] * keep[k];
            x = o;
        }
    }
}

static void mlp_backward(const kern *K,
                         float *dinp,
                         const rd_mlp_weights *dw,
                         const rd_mlp_scratch *sc,
                         const float *dout,
                         const float *inp,
                         const rd_mlp_acts *a,
                         const rd_mlp_dropout *d,
                         const rd_mlp_weights *w,
                         const rd_mlp_shape *s,
                         size_t B) {
    RD_ASSERT(s->n >= 1 && s->n <= RD_MLP_MAX && sc->a != sc->b);
    RD_ASSERT(dout != sc->a && dout != sc->b);
    const float *g = dout; // gradient of layer i's output (out[i] with dropout, else post[i])
    for (size_t i = s->n; i-- > 0;) {
        size_t N = B * s->dims[i + 1];
        int act = mlp_act_of(s, i);
        const float *keep = mlp_keep(d, i);
        float *buf = g == sc->a ? sc->b : sc->a;
        const float *dpre = g;
        if (act != RD_ACT_NONE) {
            act_backward_set(buf, g, a->pre[i], a->post[i], N, act);
            dpre = buf;
        }
        if (keep) { // d pre = d out * keep * act'(pre): elementwise, so in either order
            if (dpre == buf)
                for (size_t k = 0; k < N; k++)
                    buf[k] *= keep[k];
            else
                for (size_t k = 0; k < N; k++)
                    buf[k] = g[k] * keep[k];
            dpre = buf;
        }
        // Hidden layers overwrite their scratch; the input gradient accumulates (+=).
        float *dx = i > 0 ? (dpre == sc->a ? sc->b : sc->a) : dinp;
        const float *x = inp;
        if (i > 0)
            x = mlp_keep(d, i - 1) ? d->out[i - 1] : a->post[i - 1];
        K->linear_bwd(dx, dw->w[i], dw->b[i], dpre, x, w->w[i], B, s->dims[i], s->dims[i + 1],
                      i == 0);
        g = dx;
    }
}

float *
rd_mlp_output_dropout(const rd_mlp_acts *acts, const rd_mlp_dropout *d, const rd_mlp_shape *s) {
    RD_ASSERT(s->n >= 1 && s->n <= RD_MLP_MAX);
    return mlp_keep(d, s->n - 1) ? d->out[s->n - 1] : acts->post[s->n - 1];
}

void rd_dropout_mask(float *keep, size_t n, float p, uint64_t key) {
    RD_ASSERT(p >= 0.0f && p < 1.0f);
    float scale = 1.0f / (1.0f - p);
    double pd = (double)p;
    for (size_t k = 0; k < n; k++) {
        double u = (double)(rd_mix64(key + k) >> 11) * 0x1p-53;
        keep[k] = u < pd ? 0.0f : scale;
    }
}

void rd_mlp_forward(const rd_mlp_acts *acts,
                    const float *inp,
                    const rd_mlp_weights *w,
                    const rd_mlp_shape *s,
                    size_t B) {
    mlp_forward(&kern_blas, acts, NULL, inp, w, s, B);
}
void rd_mlp_backward(float *dinp,
                     const rd_mlp_weights *dw,
                     const rd_mlp_scratch *scratch,
                     const float *dout,
                     const float *inp,
                     const rd_mlp_acts *acts,
                     const rd_mlp_weights *w,
                     const rd_mlp_shape *s,
                     size_t B) {
    mlp_backward(&kern_blas, dinp, dw, scratch, dout, inp, acts, NULL, w, s, B);
}
void rd_mlp_forward_naive(const rd_mlp_acts *acts,
                          const float *inp,
                          const rd_mlp_weights *w,
                          const rd_mlp_shape *s,
                          size_t B) {
    mlp_forward(&kern_naive, acts, NULL, inp, w, s, B);
}
void rd_mlp_backward_naive(float *dinp,
                           const rd_mlp_weights *dw,
                           const rd_mlp_scratch *scratch,
                           const float *dout,
                           const float *inp,
                           const rd_mlp_acts *acts,
                           const rd_mlp_weights *w,
                           const rd_mlp_shape *s,
                           size_t B) {
    mlp_backward(&kern_naive, dinp, dw, scratch, dout, inp, acts, NULL, w, s, B);
}
void rd_mlp_forward_dropout(const rd_mlp_acts *acts,
                            const rd_mlp_dropout *d,
                            const float *inp,
                            const rd_mlp_weights *w,
                            const rd_mlp_shape *s,
                            size_t B) {
    mlp_forward(&kern_blas, acts, d, inp, w, s, B);
}
void rd_mlp_backward_dropout(float *dinp,
                             const rd_mlp_weights *dw,
                             const rd_mlp_scratch *scratch,
                             const float *dout,
                             const float *inp,
                             const rd_mlp_acts *acts,
                             const rd_mlp_dropout *d,
                             const rd_mlp_weights *w,
                             const rd_mlp_shape *s,
                             size_t B) {
    mlp_backward(&kern_blas, dinp, dw, scratch, dout, inp, acts, d, w, s, B);
}
void rd_mlp_forward_dropout_naive(const rd_mlp_acts *acts,
                                  const rd_mlp_dropout *d,
                                  const float *inp,
                                  const rd_mlp_weights *w,
                                  const rd_mlp_shape *s,
                                  size_t B) {
    mlp_forward(&kern_naive, acts, d, inp, w, s, B);
}
void rd_mlp_backward_dropout_naive(float *dinp,
                                   const rd_mlp_weights *dw,
                                   const rd_mlp_scratch *scratch,
                                   const float *dout,
                                   const float *inp,
                                   const rd_mlp_acts *acts,
                                   const rd_mlp_dropout *d,
                                   const rd_mlp_weights *w,
                                   const rd_mlp_shape *s,
                                   size_t B) {
    mlp_backward(&kern_naive, dinp, dw, scratch, dout, inp, acts, d, w, s, B);
}

// ---- Two towers

static void two_tower_forward(const kern *K, const rd_two_tower *t, const float *h, size_t B) {
    for (int i = 0; i < 2; i++) {
        RD_ASSERT(t->shape[i].dims[t->shape[i].n] == 1 && t->shape[i].act_last == RD_ACT_NONE);
        mlp_forward(K, &t->acts[i], NULL, h, &t->w[i], &t->shape[i], B);
    }
}

static void two_tower_backward(const kern *K,
                               float *dh,
                               const rd_mlp_weights dw[2],
                               const rd_mlp_scratch *sc,
                               const float *dz_main,
                               const float *dz_aux,
                               const float *h,
                               const rd_two_tower *t,
                               size_t B) {
    const float *dz[2] = {dz_main, dz_aux};
    for (int i = 0; i < 2; i++)
        if (dz[i])
            mlp_backward(K, dh, &dw[i], sc, dz[i], h, &t->acts[i], NULL, &t->w[i], &t->shape[i], B);
}

void rd_two_tower_forward(const rd_two_tower *t, const float *h, size_t B) {
    two_tower_forward(&kern_blas, t, h, B);
}
void rd_two_tower_backward(float *dh,
                           const rd_mlp_weights dw[2],
                           const rd_mlp_scratch *scratch,
                           const float *dz_main,
                           const float *dz_aux,
                           const float *h,
                           const rd_two_tower *t,
                           size_t B) {
    two_tower_backward(&kern_blas, dh, dw, scratch, dz_main, dz_aux, h, t, B);
}
void rd_two_tower_forward_naive(const rd_two_tower *t, const float *h, size_t B) {
    two_tower_forward(&kern_naive, t, h, B);
}
void rd_two_tower_backward_naive(float *dh,
                                 const rd_mlp_weights dw[2],
                                 const rd_mlp_scratch *scratch,
                                 const float *dz_main,
                                 const float *dz_aux,
                                 const float *h,
                                 const rd_two_tower *t,
                                 size_t B) {
    two_tower_backward(&kern_naive, dh, dw, scratch, dz_main, dz_aux, h, t, B);
}
