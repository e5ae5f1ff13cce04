// test_metrics.c — AUC, GAUC, logloss and calibration (common/metrics.c).
//
// Hand-computed values (with ties and degenerate cases), an O(n^2) brute-force AUC on random data
// with many ties, streaming equivalence (chunked adds = one batch; compute twice), input checks
// and out-of-memory injection; logits rank where saturated float probabilities would tie.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/metrics.h"
#include "rd/rng.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-12

// |a - b| <= eps, printing both on failure (cmocka 1.1 has no double assertion).
#define assert_double_equal(a, b, eps) near_impl((a), (b), (eps), #a, __FILE__, __LINE__)
static void
near_impl(double a, double b, double eps, const char *what, const char *file, int line) {
    if (!(fabs(a - b) <= eps)) {
        print_error("%s:%d: %s = %.17g, expected %.17g (eps %g)\n", file, line, what, a, b, eps);
        fail();
    }
}

static rd_metrics *make(const float *p, const float *l, const uint64_t *u, size_t n) {
    rd_metrics *m = NULL;
    assert_int_equal(rd_metrics_create(0, &m), RD_OK);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_metrics_add_batch(m, p, l, u, n, &eb), RD_OK);
    return m;
}

static void test_auc_hand(void **state) {
    (void)state;
    // Positives {0.35, 0.8}, negatives {0.1, 0.4}: pairs (0.35>0.1) (0.8>0.1) (0.8>0.4) won,
    // (0.35<0.4) lost -> 3/4.
    const float p1[] = {0.1f, 0.4f, 0.35f, 0.8f}, l1[] = {0, 0, 1, 1};
    double auc;
    assert_int_equal(rd_metrics_auc(p1, l1, 4, &auc), RD_OK);
    assert_double_equal(auc, 0.75, EPS);
    // Ties between classes count 1/2: positives {0.5, 0.9}, negatives {0.2, 0.5} ->
    // (1 + 0.5 + 1 + 1) / 4 = 0.875.
    const float p2[] = {0.2f, 0.5f, 0.5f, 0.9f}, l2[] = {0, 1, 0, 1};
    assert_int_equal(rd_metrics_auc(p2, l2, 4, &auc), RD_OK);
    assert_double_equal(auc, 0.875, EPS);
    // All predictions equal -> 0.5 whatever the labels.
    const float p3[] = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f}, l3[] = {1, 0, 0, 1, 0};
    assert_int_equal(rd_metrics_auc(p3, l3, 5, &auc), RD_OK);
    assert_double_equal(auc, 0.5, EPS);
    // Perfectly wrong ranking -> 0; perfect -> 1 (also with 0 and 1 exactly).
    const float p4[] = {0.0f, 1.0f}, l4[] = {1, 0}, l5[] = {0, 1};
    assert_int_equal(rd_metrics_auc(p4, l4, 2, &auc), RD_OK);
    assert_double_equal(auc, 0.0, EPS);
    assert_int_equal(rd_metrics_auc(p4, l5, 2, &auc), RD_OK);
    assert_double_equal(auc, 1.0, EPS);
    // Three positives tied with two negatives at 0.6 and one negative below: each positive wins 1
    // pair and ties 2 -> (3*1 + 3*2*0.5) / (3*3) = 6/9.
    const float p6[] = {0.6f, 0.6f, 0.6f, 0.6f, 0.6f, 0.1f}, l6[] = {1, 1, 1, 0, 0, 0};
    assert_int_equal(rd_metrics_auc(p6, l6, 6, &auc), RD_OK);
    assert_double_equal(auc, 6.0 / 9.0, EPS);
}

static void test_auc_degenerate(void **state) {
    (void)state;
    double auc = 0.0;
    const float p[] = {0.1f, 0.9f, 0.5f}, ones[] = {1, 1, 1}, zeros[] = {0, 0, 0};
    assert_int_equal(rd_metrics_auc(p, ones, 3, &auc), RD_ERR_EMPTY);
    assert_true(isnan(auc));
    assert_int_equal(rd_metrics_auc(p, zeros, 3, &auc), RD_ERR_EMPTY);
    assert_true(isnan(auc));
    assert_int_equal(rd_metrics_auc(p, zeros, 0, &auc), RD_ERR_EMPTY);
    assert_true(isnan(auc));

    // The accumulator reports the undefined metrics as NaN with their flags cleared.
    rd_metrics *m = make(p, ones, NULL, 3);
    rd_metrics_result r;
    assert_int_equal(rd_metrics_compute(m, &r), RD_OK);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.positives, 3);
    assert_false(r.auc_valid);
    assert_true(isnan(r.auc));
    assert_false(r.gauc_valid);
    assert_true(isnan(r.gauc));
    assert_int_equal(r.users, 1);
    assert_int_equal(r.gauc_users, 0);
    assert_true(r.calibration_valid);
    assert_double_equal(r.calibration, 0.5, 1e-7); // mean pred 0.5 / mean label 1
    rd_metrics_destroy(m);

    m = make(p, zeros, NULL, 3);
    assert_int_equal(rd_metrics_compute(m, &r), RD_OK);
    assert_false(r.auc_valid);
    assert_false(r.calibration_valid); // no positives
    assert_true(isnan(r.calibration));
    assert_double_equal(r.mean_label, 0.0, EPS);
    // Empty accumulator: RD_ERR_EMPTY, everything NaN.
    rd_metrics_reset(m);
    assert_int_equal(rd_metrics_count(m), 0);
    assert_int_equal(rd_metrics_compute(m, &r), RD_ERR_EMPTY);
    assert_int_equal(r.n, 0);
    assert_true(isnan(r.auc) && isnan(r.gauc) && isnan(r.logloss) && isnan(r.calibration));
    assert_false(r.auc_valid || r.gauc_valid || r.calibration_valid);
    rd_metrics_destroy(m);
}

static void test_gauc_hand(void **state) {
    (void)state;
    // User 7: {0.1:0, 0.9:1, 0.5:1} -> AUC 1, weight 3. User 3: {0.3:1, 0.6:0} -> AUC 0, weight
    // 2. User 5: one example (one class) -> skipped. User 9: {0.4:1, 0.4:0} tie -> 0.5, weight 2.
    // GAUC = (3*1 + 2*0 + 2*0.5) / 7 = 4/7.
    const float p[] = {0.1f, 0.3f, 0.9f, 0.2f, 0.6f, 0.5f, 0.4f, 0.4f};
    const float l[] = {0, 1, 1, 1, 0, 1, 1, 0};
    const uint64_t u[] = {7, 3, 7, 5, 3, 7, 9, 9};
    rd_metrics *m = make(p, l, u, 8);
    rd_metrics_result r;
    assert_int_equal(rd_metrics_compute(m, &r), RD_OK);
    assert_int_equal(r.users, 4);
    assert_int_equal(r.gauc_users, 3);
    assert_int_equal(r.gauc_examples, 7);
    assert_true(r.gauc_valid);
    assert_double_equal(r.gauc, 4.0 / 7.0, EPS);
    // Global AUC over the same examples: positives {0.3, 0.9, 0.2, 0.5, 0.4},
    // negatives {0.1, 0.6, 0.4}. Wins: 0.3 -> 1 (0.1); 0.9 -> 3; 0.2 -> 1; 0.5 -> 2 (0.1, 0.4);
    // 0.4 -> 1 win (0.1) + 1 tie (0.4) = 1.5. Total 8.5 / 15.
    assert_true(r.auc_valid);
    assert_double_equal(r.auc, 8.5 / 15.0, EPS);
    rd_metrics_destroy(m);
}

static void test_logloss_calibration(void **state) {
    (void)state;
    // -(ln 0.9 + ln 0.8) / 2
    const float p[] = {0.9f, 0.2f}, l[] = {1, 0};
    rd_metrics *m = make(p, l, NULL, 2);
    rd_metrics_result r;
    assert_int_equal(rd_metrics_compute(m, &r), RD_OK);
    double want = -(log((double)0.9f) + log(1.0 - (double)0.2f)) / 2.0;
    assert_double_equal(r.logloss, want, 1e-12);
    assert_double_equal(r.logloss, 0.164252033486018, 1e-7);
    assert_double_equal(r.mean_pred, 0.55, 1e-7);
    assert_double_equal(r.mean_label, 0.5, EPS);
    assert_true(r.calibration_valid);
    assert_double_equal(r.calibration, 1.1, 1e-6);
    rd_metrics_destroy(m);

    // Clipping: a confident wrong prediction costs -ln(1e-7), not infinity.
    const float p2[] = {0.0f, 1.0f}, l2[] = {1, 1};
    m = make(p2, l2, NULL, 2);
    assert_int_equal(rd_metrics_compute(m, &r), RD_OK);
    double clipped = (-log(RD_METRICS_EPS) - log1p(-RD_METRICS_EPS)) / 2.0;
    assert_true(isfinite(r.logloss));
    assert_double_equal(r.logloss, clipped, 1e-12);
    assert_double_equal(r.logloss, 16.11809565 / 2.0, 1e-6);
    rd_metrics_destroy(m);

    // Predictions of exactly 1 and 0 (kept as logits of +inf and -inf) stay 1 and 0: right ones
    // cost -ln(1 - 1e-7) each and the mean prediction counts them as such. The case above is
    // symmetric (one of each, both labels 1), so it would pass with 1 and 0 swapped.
    const float p3[] = {1.0f, 1.0f, 0.0f}, l3[] = {1, 1, 0};
    m = make(p3, l3, NULL, 3);
    assert_int_equal(rd_metrics_compute(m, &r), RD_OK);
    assert_double_equal(r.logloss, -log1p(-RD_METRICS_EPS), 1e-12);
    assert_double_equal(r.mean_pred, 2.0 / 3.0, 1e-12);
    assert_double_equal(r.calibration, 1.0, 1e-12);
    rd_metrics_destroy(m);
}

// O(n^2) reference AUC.
static double brute_auc(const float *p, const float *l, size_t n) {
    double win = 0.0, np = 0.0, nn = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (l[i] == 1.0f)
            np++;
        else
            nn++;
        if (l[i] != 1.0f)
            continue;
        for (size_t j = 0; j < n; j++) {
            if (l[j] != 0.0f)
                continue;
            win += p[i] > p[j] ? 1.0 : p[i] == p[j] ? 0.5 : 0.0;
        }
    }
    return win / (np * nn);
}

static void test_random_vs_brute_force(void **state) {
    (void)state;
    rd_rng rng;
    rd_rng_seed(&rng, 99);
    enum { N = 1500 };
    float *p = malloc(N * sizeof *p), *l = malloc(N * sizeof *l);
    uint64_t *u = malloc(N * sizeof *u);
    assert_non_null(p);
    assert_non_null(l);
    assert_non_null(u);
    for (int round = 0; round < 5; round++) {
        int levels = round == 0 ? 3 : 20 * round; // few levels = many ties
        for (size_t i = 0; i < N; i++) {
            p[i] = (float)rd_rng_below(&rng, (uint64_t)levels) / (float)(levels - 1);
            // Labels correlated with predictions so that AUC is away from 0.5.
            l[i] = rd_rng_uniformf(&rng) < 0.2f + 0.6f * p[i] ? 1.0f : 0.0f;
            u[i] = rd_rng_below(&rng, 40);
        }
        double want = brute_auc(p, l, N), got;
        assert_int_equal(rd_metrics_auc(p, l, N, &got), RD_OK);
        assert_double_equal(got, want, 1e-12);
        assert_true(got > 0.55);

        // Streaming in uneven chunks gives the same results as one batch; GAUC matches a
        // per-user brute force.
        rd_metrics *a = make(p, l, u, N), *b = NULL;
        assert_int_equal(rd_metrics_create(7, &b), RD_OK);
        size_t i = 0;
        while (i < N) {
            size_t k = 1 + (size_t)rd_rng_below(&rng, 97);
            if (k > N - i)
                k = N - i;
            if (k == 1)
                assert_int_equal(rd_metrics_add(b, p[i], l[i], u[i]), RD_OK);
            else
                assert_int_equal(rd_metrics_add_batch(b, p + i, l + i, u + i, k, NULL), RD_OK);
            i += k;
        }
        rd_metrics_result ra, rb, rb2;
        assert_int_equal(rd_metrics_compute(a, &ra), RD_OK);
        assert_int_equal(rd_metrics_compute(b, &rb), RD_OK);
        assert_int_equal(rd_metrics_compute(b, &rb2), RD_OK); // computing again: same
        assert_double_equal(ra.auc, want, 1e-12);
        assert_double_equal(rb.auc, want, 1e-12);
        assert_double_equal(rb2.auc, want, 1e-12);
        assert_double_equal(ra.gauc, rb.gauc, 1e-12);
        assert_double_equal(rb.gauc, rb2.gauc, 1e-12);
        assert_double_equal(ra.logloss, rb.logloss, 1e-9);

        double wsum = 0.0, w = 0.0;
        for (uint64_t user = 0; user < 40; user++) {
            float up[N], ul[N];
            size_t n = 0;
            for (size_t j = 0; j < N; j++)
                if (u[j] == user) {
                    up[n] = p[j];
                    ul[n++] = l[j];
                }
            double ua;
            if (n && rd_metrics_auc(up, ul, n, &ua) == RD_OK) {
                wsum += (double)n * ua;
                w += (double)n;
            }
        }
        assert_double_equal(ra.gauc, wsum / w, 1e-12);
        rd_metrics_destroy(a);
        rd_metrics_destroy(b);
    }
    free(p);
    free(l);
    free(u);
}

// Logits rank where a float sigmoid would tie: every logit below about -88.7 is 0.0f and every
// one above about 16.6 is 1.0f, so the AUC of the probabilities differs from the model's.
static void test_logits_no_saturation(void **state) {
    (void)state;
    // Negatives at -200, -100; positives at -150, -90; all four sigmoids are 0.0f in float.
    // By logit: positive -150 beats -200, loses to -100; -90 beats both -> 3/4.
    const float z[] = {-200.0f, -100.0f, -150.0f, -90.0f, 20.0f, 30.0f, 25.0f, 40.0f};
    const float l[] = {0, 0, 1, 1, 0, 0, 1, 1};
    float p[8];
    for (int i = 0; i < 8; i++)
        p[i] = 1.0f / (1.0f + expf(-z[i]));
    assert_true(p[0] == 0.0f && p[3] == 0.0f && p[4] == 1.0f && p[7] == 1.0f); // saturated
    double auc;
    assert_int_equal(rd_metrics_auc_logits(z, l, 4, &auc), RD_OK);
    assert_double_equal(auc, 0.75, EPS);
    assert_int_equal(rd_metrics_auc(p, l, 4, &auc), RD_OK);
    assert_double_equal(auc, 0.5, EPS); // the ties the logits avoid
    // The accumulator: the same by logit as brute force over the logits, GAUC too.
    const uint64_t u[] = {1, 1, 1, 1, 2, 2, 2, 2};
    rd_metrics *m = NULL;
    assert_int_equal(rd_metrics_create(0, &m), RD_OK);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_metrics_add_logits(m, z, l, u, 8, &eb), RD_OK);
    rd_metrics_result r;
    assert_int_equal(rd_metrics_compute(m, &r), RD_OK);
    assert_double_equal(r.auc, brute_auc(z, l, 8), EPS);
    // user 1: 3/4; user 2: 25 beats 20, loses to 30; 40 beats both -> 3/4.
    assert_double_equal(r.gauc, 0.75, EPS);
    // logloss and calibration from the probability in double: -log(sigmoid(z)) for positives.
    double ll = 0.0, mp = 0.0;
    for (int i = 0; i < 8; i++) {
        double q = 1.0 / (1.0 + exp(-(double)z[i]));
        double qc = fmin(fmax(q, RD_METRICS_EPS), 1.0 - RD_METRICS_EPS);
        ll -= l[i] ? log(qc) : log1p(-qc);
        mp += q;
    }
    assert_double_equal(r.logloss, ll / 8.0, 1e-12);
    assert_double_equal(r.mean_pred, mp / 8.0, 1e-12);
    // One at a time equals the batch.
    rd_metrics *m1 = NULL;
    assert_int_equal(rd_metrics_create(0, &m1), RD_OK);
    for (int i = 0; i < 8; i++)
        assert_int_equal(rd_metrics_add_logit(m1, z[i], l[i], u[i]), RD_OK);
    rd_metrics_result r1;
    assert_int_equal(rd_metrics_compute(m1, &r1), RD_OK);
    assert_double_equal(r1.auc, r.auc, 0.0);
    assert_double_equal(r1.gauc, r.gauc, 0.0);
    assert_double_equal(r1.logloss, r.logloss, 0.0);
    // Non-finite logits and bad labels are refused, nothing added.
    const float bad[] = {0.0f, NAN}, badl[] = {0, 1};
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_metrics_add_logits(m1, bad, badl, NULL, 2, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "example 1"));
    assert_int_equal(rd_metrics_add_logit(m1, INFINITY, 1.0f, 0), RD_ERR_ARG);
    assert_int_equal(rd_metrics_add_logit(m1, 0.0f, 0.5f, 0), RD_ERR_ARG);
    assert_int_equal(rd_metrics_count(m1), 8);
    assert_int_equal(rd_metrics_auc_logits(bad, badl, 2, &auc), RD_ERR_ARG);
    rd_metrics_destroy(m1);
    rd_metrics_destroy(m);
}

static void test_merge(void **state) {
    (void)state;
    const float p[] = {0.1f, 0.4f, 0.35f, 0.8f}, l[] = {0, 0, 1, 1};
    rd_metrics *a = make(p, l, NULL, 2), *b = make(p + 2, l + 2, NULL, 2);
    assert_int_equal(rd_metrics_merge(a, b), RD_OK);
    assert_int_equal(rd_metrics_count(a), 4);
    assert_int_equal(rd_metrics_count(b), 2);
    rd_metrics_result r;
    assert_int_equal(rd_metrics_compute(a, &r), RD_OK);
    assert_double_equal(r.auc, 0.75, EPS);
    rd_metrics_destroy(a);
    rd_metrics_destroy(b);
}

static void test_bad_input(void **state) {
    (void)state;
    rd_metrics *m = NULL;
    assert_int_equal(rd_metrics_create(4, &m), RD_OK);
    assert_int_equal(rd_metrics_add(m, NAN, 1.0f, 0), RD_ERR_ARG);
    assert_int_equal(rd_metrics_add(m, 1.5f, 1.0f, 0), RD_ERR_ARG);
    assert_int_equal(rd_metrics_add(m, -0.1f, 1.0f, 0), RD_ERR_ARG);
    assert_int_equal(rd_metrics_add(m, INFINITY, 0.0f, 0), RD_ERR_ARG);
    assert_int_equal(rd_metrics_add(m, 0.5f, 0.5f, 0), RD_ERR_ARG);
    assert_int_equal(rd_metrics_add(m, 0.5f, NAN, 0), RD_ERR_ARG);
    assert_int_equal(rd_metrics_count(m), 0);
    // A batch with one bad example adds nothing and names it.
    const float p[] = {0.1f, 0.2f, NAN, 0.4f}, l[] = {0, 1, 1, 0}, lbad[] = {0, 1, 2, 0};
    const float pok[] = {0.1f, 0.2f, 0.3f, 0.4f};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_metrics_add_batch(m, p, l, NULL, 4, &eb), RD_ERR_ARG);
    assert_string_equal(eb.msg,
                        "rd_metrics_add_batch: example 2: prediction nan is not a probability in "
                        "[0, 1]");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_metrics_add_batch(m, pok, lbad, NULL, 4, &eb), RD_ERR_ARG);
    assert_string_equal(eb.msg, "rd_metrics_add_batch: example 2: label 2 is not 0 or 1");
    assert_int_equal(rd_metrics_count(m), 0);
    double auc;
    assert_int_equal(rd_metrics_auc(p, l, 4, &auc), RD_ERR_ARG);
    assert_true(isnan(auc));
    rd_metrics_destroy(m);
    rd_metrics_destroy(NULL);
}

static int g_fail_after = -1; // allocations left before failing; -1 = never fail
static void *oom_malloc(size_t n) {
    if (g_fail_after == 0)
        return NULL;
    if (g_fail_after > 0)
        g_fail_after--;
    return malloc(n);
}
static void *oom_realloc(void *p, size_t n) {
    if (g_fail_after == 0)
        return NULL;
    if (g_fail_after > 0)
        g_fail_after--;
    return realloc(p, n);
}

static void test_oom(void **state) {
    (void)state;
    rd_allocator a = {oom_malloc, oom_realloc, free};
    rd_alloc_set(&a);
    rd_metrics *m = (rd_metrics *)&a; // must be reset to NULL on failure
    g_fail_after = 0;
    assert_int_equal(rd_metrics_create(0, &m), RD_ERR_NOMEM);
    assert_null(m);
    g_fail_after = 1; // struct succeeds, storage fails
    assert_int_equal(rd_metrics_create(0, &m), RD_ERR_NOMEM);
    assert_null(m);
    g_fail_after = -1;
    assert_int_equal(rd_metrics_create(2, &m), RD_OK);
    assert_int_equal(rd_metrics_add(m, 0.1f, 0.0f, 1), RD_OK);
    assert_int_equal(rd_metrics_add(m, 0.9f, 1.0f, 1), RD_OK);
    // Full: the next add must grow, and the growth fails: nothing added, data intact.
    g_fail_after = 0;
    assert_int_equal(rd_metrics_add(m, 0.5f, 1.0f, 1), RD_ERR_NOMEM);
    const float p[] = {0.3f, 0.4f}, l[] = {0, 1};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_metrics_add_batch(m, p, l, NULL, 2, &eb), RD_ERR_NOMEM);
    assert_non_null(strstr(eb.msg, "out of memory"));
    double auc;
    assert_int_equal(rd_metrics_auc(p, l, 2, &auc), RD_ERR_NOMEM);
    g_fail_after = -1;
    rd_alloc_set(NULL);
    assert_int_equal(rd_metrics_count(m), 2);
    rd_metrics_result r;
    assert_int_equal(rd_metrics_compute(m, &r), RD_OK);
    assert_double_equal(r.auc, 1.0, EPS);
    rd_metrics_destroy(m);
}

// The gather's plan at the scale of a large holdout: 10^8 examples on each of three ranks
// beside root's own (2.4 GB a rank, beyond one MPI count of bytes). Every round moves at most
// INT_MAX bytes, every example of every rank is sent exactly once, to its place in rank order.
static void test_gather_plan(void **state) {
    (void)state;
    const int size = 4, root = 1;
    const unsigned long long counts[4] = {100000000ULL, 5000000ULL, 0ULL, 100000001ULL};
    const size_t own = (size_t)counts[root], per = rd__metrics_gather_per_rank(size);
    assert_true(per * 24 * (size_t)size <= (size_t)INT_MAX);
    assert_true(per * 24 * (size_t)size > (size_t)INT_MAX - 24 * (size_t)size);
    unsigned long long sent[4] = {0}, base[4] = {0}, at = own;
    for (int r = 0; r < size; r++) {
        base[r] = at;
        at += r == root ? 0 : counts[r];
    }
    unsigned long long rounds = (100000001ULL + per - 1) / per;
    assert_true(rounds == 5);
    for (unsigned long long k = 0; k < rounds; k++) {
        int cnt[4], displs[4];
        rd__metrics_gather_round(counts, size, root, own, per, k, cnt, displs);
        unsigned long long bytes = 0;
        for (int r = 0; r < size; r++) {
            assert_true(cnt[r] >= 0);
            bytes += (unsigned long long)cnt[r] * 24;
            if (cnt[r] > 0)
                assert_true((unsigned long long)displs[r] == base[r] + sent[r]);
            sent[r] += (unsigned long long)cnt[r];
        }
        assert_true(bytes <= (unsigned long long)INT_MAX);
    }
    for (int r = 0; r < size; r++)
        assert_true(sent[r] == (r == root ? 0 : counts[r]));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc_hand),
        cmocka_unit_test(test_auc_degenerate),
        cmocka_unit_test(test_gauc_hand),
        cmocka_unit_test(test_logloss_calibration),
        cmocka_unit_test(test_random_vs_brute_force),
        cmocka_unit_test(test_logits_no_saturation),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_gather_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
