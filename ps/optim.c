// optim.c — SGD, Adagrad, Adam and FTRL-proximal on one embedding row (see rd/optim.h for the
// formulas). Kernels are plain loops over `dim` with restrict pointers so the compiler can
// vectorize them; they run on the PS inside PUSH processing, once per key and step, so they are
// the hot path of a push. All arithmetic is float in a fixed order: the same gradient sequence
// gives bit-identical rows whatever the number of PS ranks.
#include "rd/optim.h"
#include "rd/error.h"

#include <float.h>
#include <math.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

int rd_optim_slots(int kind) {
    switch (kind) {
        case RD_OPT_SGD:
            return 0;
        case RD_OPT_ADAGRAD:
            return 1;
        case RD_OPT_ADAM:
            return 2;
        case RD_OPT_FTRL:
            return 2;
        default:
            return -1;
    }
}

const char *rd_optim_name(int kind) {
    switch (kind) {
        case RD_OPT_SGD:
            return "sgd";
        case RD_OPT_ADAGRAD:
            return "adagrad";
        case RD_OPT_ADAM:
            return "adam";
        case RD_OPT_FTRL:
            return "ftrl";
        default:
            return "unknown";
    }
}

void rd_optim_init_slots(const rd_optim_config *oc, float *slots, size_t dim) {
    int ns = rd_optim_slots(oc->kind);
    RD_ASSERT(ns >= 0);
    float v0 = oc->kind == RD_OPT_ADAGRAD ? oc->initial_accumulator : 0.0f;
    for (size_t i = 0; i < (size_t)ns * dim; i++)
        slots[i] = v0;
}

// Kernels: w is (dim), slots are (S, dim), g is (dim). Each has an SSE2 body (4 lanes) and a
// scalar tail written with exactly the same operations in the same order; SSE2 add/mul/div/
// sqrt are IEEE single precision like the scalar code, so results do not depend on which path
// (or on dim % 4). GCC does not vectorize these loops at -O2 (unknown trip count, and sqrtf
// sets errno), hence the intrinsics. A block where Adagrad's accumulator, Adam's v / (1 - b2^t)
// or FTRL's n overflows to inf is stored by none of them: it stops the vector loops, and the scalar
// loop, which alone has the overflow handling (rd/optim.h), does the rest of the row.

#if defined(__SSE2__)
static inline __m128 abs4(__m128 x) {
    return _mm_andnot_ps(_mm_set1_ps(-0.0f), x);
}
#endif

// AVX bodies (8 lanes), chosen at run time on CPUs that have AVX; they return how many leading
// elements they processed and leave the rest to the SSE2 body and the scalar tail.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__SSE2__)
#define RD_OPTIM_AVX 1
#define AVX_FN       __attribute__((target("avx")))

AVX_FN static size_t
sgd_avx(float lr, float l2, float *restrict w, const float *restrict g, size_t dim) {
    const __m256 vlr = _mm256_set1_ps(lr), vl2 = _mm256_set1_ps(l2);
    size_t i = 0;
    for (; i + 8 <= dim; i += 8) {
        __m256 wv = _mm256_loadu_ps(w + i);
        __m256 gi = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(vl2, wv));
        _mm256_storeu_ps(w + i, _mm256_sub_ps(wv, _mm256_mul_ps(vlr, gi)));
    }
    return i;
}

AVX_FN static size_t adagrad_avx(float lr,
                                 float l2,
                                 float eps,
                                 float *restrict w,
                                 float *restrict acc,
                                 const float *restrict g,
                                 size_t dim) {
    const __m256 vlr = _mm256_set1_ps(lr), vl2 = _mm256_set1_ps(l2), veps = _mm256_set1_ps(eps);
    const __m256 vinf = _mm256_set1_ps(INFINITY);
    size_t i = 0;
    for (; i + 8 <= dim; i += 8) {
        __m256 wv = _mm256_loadu_ps(w + i);
        __m256 gi = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(vl2, wv));
        __m256 a = _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_mul_ps(gi, gi));
        if (_mm256_movemask_ps(_mm256_cmp_ps(a, vinf, _CMP_EQ_OQ)))
            break; // an overflowed accumulator: the block is the scalar code's (adagrad_update)
        _mm256_storeu_ps(acc + i, a);
        __m256 upd = _mm256_div_ps(_mm256_mul_ps(vlr, gi), _mm256_add_ps(_mm256_sqrt_ps(a), veps));
        _mm256_storeu_ps(w + i, _mm256_sub_ps(wv, upd));
    }
    return i;
}

AVX_FN static size_t adam_avx(const float *c,
                              float *restrict w,
                              float *restrict m,
                              float *restrict v,
                              const float *restrict g,
                              size_t dim) {
    // c = {lr, l2, eps, b1, b2, 1-b1, 1-b2, c1, c2}
    const __m256 vlr = _mm256_set1_ps(c[0]), vl2 = _mm256_set1_ps(c[1]);
    const __m256 veps = _mm256_set1_ps(c[2]), vb1 = _mm256_set1_ps(c[3]);
    const __m256 vb2 = _mm256_set1_ps(c[4]), vob1 = _mm256_set1_ps(c[5]);
    const __m256 vob2 = _mm256_set1_ps(c[6]), vc1 = _mm256_set1_ps(c[7]);
    const __m256 vc2 = _mm256_set1_ps(c[8]), vinf = _mm256_set1_ps(INFINITY);
    size_t i = 0;
    for (; i + 8 <= dim; i += 8) {
        __m256 wv = _mm256_loadu_ps(w + i);
        __m256 gi = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(vl2, wv));
        __m256 mv =
            _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(vob1, gi));
        __m256 vv = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)),
                                  _mm256_mul_ps(_mm256_mul_ps(vob2, gi), gi));
        __m256 mhat = _mm256_div_ps(mv, vc1), vhat = _mm256_div_ps(vv, vc2);
        if (_mm256_movemask_ps(_mm256_cmp_ps(vhat, vinf, _CMP_EQ_OQ)))
            break; // an overflowed second moment: the block is the scalar code's (adam_update)
        _mm256_storeu_ps(m + i, mv);
        _mm256_storeu_ps(v + i, vv);
        __m256 upd =
            _mm256_div_ps(_mm256_mul_ps(vlr, mhat), _mm256_add_ps(_mm256_sqrt_ps(vhat), veps));
        _mm256_storeu_ps(w + i, _mm256_sub_ps(wv, upd));
    }
    return i;
}

AVX_FN static size_t ftrl_avx(float alpha,
                              float l1,
                              float l2,
                              float beta,
                              float *restrict w,
                              float *restrict z,
                              float *restrict n,
                              const float *restrict g,
                              size_t dim) {
    const __m256 va = _mm256_set1_ps(alpha), vl1 = _mm256_set1_ps(l1);
    const __m256 vl2 = _mm256_set1_ps(l2), vbeta = _mm256_set1_ps(beta);
    const __m256 sign = _mm256_set1_ps(-0.0f), vinf = _mm256_set1_ps(INFINITY);
    size_t i = 0;
    for (; i + 8 <= dim; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i), nv = _mm256_loadu_ps(n + i);
        __m256 wv = _mm256_loadu_ps(w + i);
        __m256 n_new = _mm256_add_ps(nv, _mm256_mul_ps(gi, gi));
        if (_mm256_movemask_ps(_mm256_cmp_ps(n_new, vinf, _CMP_EQ_OQ)))
            break; // an overflowed n: the block is the scalar code's (ftrl_update)
        __m256 sqrt_new = _mm256_sqrt_ps(n_new);
        __m256 sigma = _mm256_div_ps(_mm256_sub_ps(sqrt_new, _mm256_sqrt_ps(nv)), va);
        __m256 zv =
            _mm256_add_ps(_mm256_loadu_ps(z + i), _mm256_sub_ps(gi, _mm256_mul_ps(sigma, wv)));
        _mm256_storeu_ps(z + i, zv);
        _mm256_storeu_ps(n + i, n_new);
        __m256 sl1 = _mm256_or_ps(_mm256_and_ps(sign, zv), _mm256_andnot_ps(sign, vl1));
        __m256 num = _mm256_xor_ps(sign, _mm256_sub_ps(zv, sl1));
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_add_ps(vbeta, sqrt_new), va), vl2);
        __m256 wn = _mm256_div_ps(num, den);
        __m256 zero = _mm256_cmp_ps(_mm256_andnot_ps(sign, zv), vl1, _CMP_LE_OQ);
        _mm256_storeu_ps(w + i, _mm256_andnot_ps(zero, wn));
    }
    return i;
}

static int have_avx(void) {
    return __builtin_cpu_supports("avx");
}
#endif

static void
sgd_update(const rd_optim_config *oc, float *restrict w, const float *restrict g, size_t dim) {
    const float lr = oc->lr, l2 = oc->l2;
    size_t i = 0;
#if defined(RD_OPTIM_AVX)
    if (have_avx())
        i = sgd_avx(lr, l2, w, g, dim);
#endif
#if defined(__SSE2__)
    const __m128 vlr = _mm_set1_ps(lr), vl2 = _mm_set1_ps(l2);
    for (; i + 4 <= dim; i += 4) {
        __m128 wv = _mm_loadu_ps(w + i);
        __m128 gi = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(vl2, wv));
        _mm_storeu_ps(w + i, _mm_sub_ps(wv, _mm_mul_ps(vlr, gi)));
    }
#endif
    for (; i < dim; i++)
        w[i] -= lr * (g[i] + l2 * w[i]);
}

static void adagrad_update(const rd_optim_config *oc,
                           float *restrict w,
                           float *restrict acc,
                           const float *restrict g,
                           size_t dim) {
    const float lr = oc->lr, l2 = oc->l2, eps = oc->eps;
    size_t i = 0;
#if defined(RD_OPTIM_AVX)
    if (have_avx())
        i = adagrad_avx(lr, l2, eps, w, acc, g, dim);
#endif
#if defined(__SSE2__)
    const __m128 vlr = _mm_set1_ps(lr), vl2 = _mm_set1_ps(l2), veps = _mm_set1_ps(eps);
    const __m128 vinf = _mm_set1_ps(INFINITY);
    for (; i + 4 <= dim; i += 4) {
        __m128 wv = _mm_loadu_ps(w + i);
        __m128 gi = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(vl2, wv));
        __m128 a = _mm_add_ps(_mm_loadu_ps(acc + i), _mm_mul_ps(gi, gi));
        if (_mm_movemask_ps(_mm_cmpeq_ps(a, vinf)))
            break; // an overflowed accumulator: left to the scalar loop below
        _mm_storeu_ps(acc + i, a);
        __m128 upd = _mm_div_ps(_mm_mul_ps(vlr, gi), _mm_add_ps(_mm_sqrt_ps(a), veps));
        _mm_storeu_ps(w + i, _mm_sub_ps(wv, upd));
    }
#endif
    for (; i < dim; i++) {
        float gi = g[i] + l2 * w[i];
        float a = acc[i] + gi * gi;
        if (a > FLT_MAX && isfinite(gi) && isfinite(acc[i])) {
            // The sum of squares overflowed float on a finite g' (|g'| beyond ~1.8e19): the step
            // is taken in double, about lr as Adagrad's is, and the accumulator saturates. In
            // float the step was 0, and the inf left in the slot froze the coordinate for good
            // (and made rd_ckpt verify refuse the checkpoint).
            double ad = (double)acc[i] + (double)gi * (double)gi;
            acc[i] = FLT_MAX;
            w[i] -= (float)((double)lr * (double)gi / (sqrt(ad) + (double)eps));
            continue;
        }
        acc[i] = a;
        w[i] -= lr * gi / (sqrtf(a) + eps);
    }
}

static void adam_update(const rd_optim_config *oc,
                        float *restrict w,
                        float *restrict m,
                        float *restrict v,
                        uint64_t t,
                        const float *restrict g,
                        size_t dim) {
    const float lr = oc->lr, l2 = oc->l2, eps = oc->eps, b1 = oc->beta1, b2 = oc->beta2;
    const float ob1 = 1.0f - b1, ob2 = 1.0f - b2;
    // Bias corrections in double, rounded once to float: exact enough for large t and the same
    // on every rank.
    const float c1 = (float)(1.0 - pow((double)b1, (double)t));
    const float c2 = (float)(1.0 - pow((double)b2, (double)t));
    size_t i = 0;
#if defined(RD_OPTIM_AVX)
    if (have_avx()) {
        const float c[9] = {lr, l2, eps, b1, b2, ob1, ob2, c1, c2};
        i = adam_avx(c, w, m, v, g, dim);
    }
#endif
#if defined(__SSE2__)
    const __m128 vlr = _mm_set1_ps(lr), vl2 = _mm_set1_ps(l2), veps = _mm_set1_ps(eps);
    const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vob1 = _mm_set1_ps(ob1);
    const __m128 vob2 = _mm_set1_ps(ob2), vc1 = _mm_set1_ps(c1), vc2 = _mm_set1_ps(c2);
    const __m128 vinf = _mm_set1_ps(INFINITY);
    for (; i + 4 <= dim; i += 4) {
        __m128 wv = _mm_loadu_ps(w + i);
        __m128 gi = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(vl2, wv));
        __m128 mv = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vob1, gi));
        __m128 vv =
            _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)), _mm_mul_ps(_mm_mul_ps(vob2, gi), gi));
        __m128 mhat = _mm_div_ps(mv, vc1), vhat = _mm_div_ps(vv, vc2);
        if (_mm_movemask_ps(_mm_cmpeq_ps(vhat, vinf)))
            break; // an overflowed second moment: left to the scalar loop below
        _mm_storeu_ps(m + i, mv);
        _mm_storeu_ps(v + i, vv);
        __m128 upd = _mm_div_ps(_mm_mul_ps(vlr, mhat), _mm_add_ps(_mm_sqrt_ps(vhat), veps));
        _mm_storeu_ps(w + i, _mm_sub_ps(wv, upd));
    }
#endif
    for (; i < dim; i++) {
        float gi = g[i] + l2 * w[i];
        float mi = b1 * m[i] + ob1 * gi;
        float vi = b2 * v[i] + ob2 * gi * gi;
        float mhat = mi / c1;
        float vhat = vi / c2;
        if (vhat > FLT_MAX && isfinite(gi) && isfinite(v[i])) {
            // v or v / (1 - b2^t) overflowed float on a finite g' (|g'| beyond ~1.8e19 at t = 1):
            // in float the step was 0, and an inf v froze the coordinate for good (and made
            // rd_ckpt verify refuse the checkpoint). g' is clipped to +-2^63, whose square fits
            // with room, in m and v alike (v alone saturated would leave m / sqrt(v) wrong by
            // orders of magnitude for the steps after), and the step is taken in double.
            float gc = fabsf(gi) > 0x1p63f ? copysignf(0x1p63f, gi) : gi;
            mi = b1 * m[i] + ob1 * gc;
            vi = b2 * v[i] + ob2 * gc * gc;
            m[i] = mi;
            v[i] = vi < FLT_MAX ? vi : FLT_MAX;
            double den = sqrt((double)v[i] / (double)c2) + (double)eps;
            w[i] -= (float)((double)lr * ((double)mi / (double)c1) / den);
            continue;
        }
        m[i] = mi;
        v[i] = vi;
        w[i] -= lr * mhat / (sqrtf(vhat) + eps);
    }
}

static void ftrl_update(const rd_optim_config *oc,
                        float *restrict w,
                        float *restrict z,
                        float *restrict n,
                        const float *restrict g,
                        size_t dim) {
    const float alpha = oc->lr, l1 = oc->l1, l2 = oc->l2, beta = oc->beta;
    size_t i = 0;
#if defined(RD_OPTIM_AVX)
    if (have_avx())
        i = ftrl_avx(alpha, l1, l2, beta, w, z, n, g, dim);
#endif
#if defined(__SSE2__)
    const __m128 va = _mm_set1_ps(alpha), vl1 = _mm_set1_ps(l1), vl2 = _mm_set1_ps(l2);
    const __m128 vbeta = _mm_set1_ps(beta), sign = _mm_set1_ps(-0.0f);
    const __m128 vinf = _mm_set1_ps(INFINITY);
    for (; i + 4 <= dim; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i), nv = _mm_loadu_ps(n + i), wv = _mm_loadu_ps(w + i);
        __m128 n_new = _mm_add_ps(nv, _mm_mul_ps(gi, gi));
        if (_mm_movemask_ps(_mm_cmpeq_ps(n_new, vinf)))
            break; // an overflowed n: left to the scalar loop below
        __m128 sqrt_new = _mm_sqrt_ps(n_new);
        __m128 sigma = _mm_div_ps(_mm_sub_ps(sqrt_new, _mm_sqrt_ps(nv)), va);
        __m128 zv = _mm_add_ps(_mm_loadu_ps(z + i), _mm_sub_ps(gi, _mm_mul_ps(sigma, wv)));
        _mm_storeu_ps(z + i, zv);
        _mm_storeu_ps(n + i, n_new);
        // copysign(l1, z) and -(z - copysign(l1, z)) / ((beta + sqrt(n)) / alpha + l2)
        __m128 sl1 = _mm_or_ps(_mm_and_ps(sign, zv), abs4(vl1));
        __m128 num = _mm_xor_ps(sign, _mm_sub_ps(zv, sl1));
        __m128 den = _mm_add_ps(_mm_div_ps(_mm_add_ps(vbeta, sqrt_new), va), vl2);
        __m128 wn = _mm_div_ps(num, den);
        __m128 zero = _mm_cmple_ps(abs4(zv), vl1); // |z| <= l1 -> exactly 0
        _mm_storeu_ps(w + i, _mm_andnot_ps(zero, wn));
    }
#endif
    for (; i < dim; i++) {
        float gi = g[i];
        float n_new = n[i] + gi * gi;
        if (n_new > FLT_MAX && isfinite(gi) && isfinite(n[i])) {
            // n overflowed float on a finite g (|g| beyond ~1.8e19): sigma was inf and the
            // weight NaN. g is clipped to +-2^63, whose square fits, and n saturates at
            // FLT_MAX; the rest is the float code, from the n it stores, so z, n and w agree.
            gi = fabsf(gi) > 0x1p63f ? copysignf(0x1p63f, gi) : gi;
            n_new = n[i] + gi * gi;
            n_new = n_new < FLT_MAX ? n_new : FLT_MAX;
        }
        float sqrt_new = sqrtf(n_new);
        float sigma = (sqrt_new - sqrtf(n[i])) / alpha;
        z[i] += gi - sigma * w[i];
        n[i] = n_new;
        float zi = z[i];
        if (fabsf(zi) <= l1)
            w[i] = 0.0f;
        else
            w[i] = -(zi - copysignf(l1, zi)) / ((beta + sqrt_new) / alpha + l2);
    }
}

void rd_optim_update(const rd_optim_config *oc,
                     float *restrict w,
                     float *restrict slots,
                     uint64_t t,
                     const float *restrict g,
                     size_t dim) {
    switch (oc->kind) {
        case RD_OPT_SGD:
            sgd_update(oc, w, g, dim);
            return;
        case RD_OPT_ADAGRAD:
            adagrad_update(oc, w, slots, g, dim);
            return;
        case RD_OPT_ADAM:
            RD_ASSERT(t >= 1);
            adam_update(oc, w, slots, slots + dim, t, g, dim);
            return;
        case RD_OPT_FTRL:
            ftrl_update(oc, w, slots, slots + dim, g, dim);
            return;
        default:
            RD_ASSERT_MSG(0, "unknown optimizer kind %d", oc->kind);
    }
}
