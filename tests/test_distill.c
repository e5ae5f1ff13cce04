// test_distill.c — rd/distill.h without MPI: the cross-debias calibration (identity without
// sampling, stable kernel vs the naive formula, finite-difference gradient, Bayes correction of
// down-sampled data, extreme logits, parameter validation) and the join table (out-of-order
// arrival, duplicates rejected, late after a miss or after the phase ended, missing, capacity,
// future phases kept across a phase end), plus the replay receiver on a target log.
// The live MPI transport is tested by tests/mpi/test_targets_transport.c.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/distill.h"
#include "rd/hash.h"
#include "rd/rng.h"
#include "rd/targets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Calibration

static double sigm(double x) {
    return 1.0 / (1.0 + exp(-x));
}

static void test_debias_identity(void **state) {
    (void)state;
    rd_debias id = rd_debias_identity();
    assert_int_equal(rd_debias_check(&id, NULL), RD_OK);
    // from_sampling without sampling is the identity too.
    rd_debias s1;
    assert_int_equal(rd_debias_from_sampling(1.0, 1.0, 0.0, &s1, NULL), RD_OK);
    enum { N = 41 };
    float z[N], out[N], out2[N];
    for (int i = 0; i < N; i++)
        z[i] = -30.0f + 1.5f * (float)i;
    rd_debias_logit_forward(out, z, &id, N);
    rd_debias_logit_forward(out2, z, &s1, N);
    for (int i = 0; i < N; i++) {
        assert_true(fabsf(out[i] - z[i]) <= 1e-6f * (1.0f + fabsf(z[i])));
        assert_true(fabsf(out2[i] - z[i]) <= 1e-6f * (1.0f + fabsf(z[i])));
        assert_true(fabs(rd_debias_prob(&id, (double)z[i]) - sigm((double)z[i])) < 1e-12);
    }
    // Gradient of the identity is 1.
    float dz[N], dout[N];
    for (int i = 0; i < N; i++) {
        dz[i] = 0.5f;
        dout[i] = 2.0f;
    }
    rd_debias_logit_backward(dz, dout, z, &id, N);
    for (int i = 0; i < N; i++)
        assert_true(fabsf(dz[i] - 2.5f) < 1e-6f); // accumulates: 0.5 + 2 * 1
    // rd_debias_is_identity decides whether the student's logit is calibrated at all (the trainer
    // passes calib = NULL for an identity) while the teacher's always is: a calibration with
    // r_s / p_x = 1 is still not the identity when b_s or 1 - r_plus make K > 0.
    assert_true(rd_debias_is_identity(&id));
    assert_true(rd_debias_is_identity(&s1));
    const rd_debias not_id[] = {
        {1.0, 1.0, 1.0, 0.1},  // bias only (distill.bias without sampling)
        {1.0, 1.0, 0.5, 0.0},  // r_plus < 1
        {2.0, 2.0, 0.9, 0.0},  // A = 1, K = 0.1
        {10.0, 1.0, 1.0, 0.0}, // pure shift
    };
    for (size_t k = 0; k < sizeof not_id / sizeof not_id[0]; k++) {
        assert_false(rd_debias_is_identity(&not_id[k]));
        float o;
        rd_debias_logit_forward(&o, &z[20], &not_id[k], 1); // z = 0
        assert_true(fabsf(o - z[20]) > 1e-2f);              // and it does move the logit
    }
    rd_debias b1;
    assert_int_equal(rd_debias_from_sampling(1.0, 1.0, 0.1, &b1, NULL), RD_OK);
    assert_false(rd_debias_is_identity(&b1));
}

static const rd_debias k_params[] = {
    {1.0, 1.0, 1.0, 0.0},   // identity
    {10.0, 1.0, 1.0, 0.0},  // pure shift (K = 0)
    {0.25, 0.8, 0.9, 0.0},  // r_plus < 1: K > 0
    {3.0, 0.5, 1.0, 0.05},  // bias only
    {2.0, 0.7, 0.6, 0.3},   // everything
    {0.05, 1.0, 1.0, 0.01}, // inflation < 1
};
#define N_PARAMS (sizeof k_params / sizeof k_params[0])

static void test_debias_naive_twin(void **state) {
    (void)state;
    enum { N = 200 };
    float z[N], a[N], b[N], ga[N], gb[N], dout[N];
    rd_rng rng;
    rd_rng_seed(&rng, 7);
    for (int i = 0; i < N; i++) {
        z[i] = (float)(rd_rng_uniform(&rng) * 24.0 - 12.0);
        dout[i] = (float)rd_rng_normal(&rng);
    }
    for (size_t p = 0; p < N_PARAMS; p++) {
        assert_int_equal(rd_debias_check(&k_params[p], NULL), RD_OK);
        rd_debias_logit_forward(a, z, &k_params[p], N);
        rd_debias_logit_forward_naive(b, z, &k_params[p], N);
        memset(ga, 0, sizeof ga);
        memset(gb, 0, sizeof gb);
        rd_debias_logit_backward(ga, dout, z, &k_params[p], N);
        rd_debias_logit_backward_naive(gb, dout, z, &k_params[p], N);
        for (int i = 0; i < N; i++) {
            // The naive twin loses digits of 1 - f for large g: compare with a loose bound.
            assert_true(fabsf(a[i] - b[i]) <= 2e-4f * (1.0f + fabsf(a[i])));
            assert_true(fabsf(ga[i] - gb[i]) <= 1e-5f * (1.0f + fabsf(gb[i])));
            // f = sigmoid(projected logit)
            double f = rd_debias_prob(&k_params[p], (double)z[i]);
            const rd_debias *d = &k_params[p];
            double ref =
                1.0 / (1.0 + (d->r_s / d->p_x) * (exp(-(double)z[i]) + 1.0 - d->r_plus) + d->b_s);
            assert_true(fabs(f - ref) < 1e-12);
            assert_true(fabs(sigm((double)a[i]) - ref) < 1e-6);
        }
    }
}

static void test_debias_fd_gradient(void **state) {
    (void)state;
    // d g / d z by central differences of the (double-evaluated) forward; the kernel is float, so
    // difference it in float with a step that keeps rounding well below the tolerance.
    enum { N = 64 };
    float z[N], dz[N], ones[N];
    rd_rng rng;
    rd_rng_seed(&rng, 11);
    for (int i = 0; i < N; i++) {
        z[i] = (float)(rd_rng_uniform(&rng) * 16.0 - 8.0);
        ones[i] = 1.0f;
    }
    const float h = 1e-2f;
    for (size_t p = 0; p < N_PARAMS; p++) {
        memset(dz, 0, sizeof dz);
        rd_debias_logit_backward(dz, ones, z, &k_params[p], N);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            float zp = z[i] + h, zm = z[i] - h, gp, gm;
            rd_debias_logit_forward(&gp, &zp, &k_params[p], 1);
            rd_debias_logit_forward(&gm, &zm, &k_params[p], 1);
            double fd = ((double)gp - (double)gm) / (2.0 * (double)h);
            if (fabs(fd - (double)dz[i]) > 2e-3 * (1.0 + fabs(fd))) {
                print_error("param %zu z %g: analytic %g fd %g\n", p, (double)z[i], (double)dz[i],
                            fd);
                bad++;
            }
            assert_true(dz[i] > 0.0f && dz[i] <= 1.0f + 1e-6f);
        }
        assert_int_equal(bad, 0);
    }
}

static void test_debias_bayes_correction(void **state) {
    (void)state;
    // A model trained on data that keeps negatives with probability qn and positives with qp
    // learns the sampled posterior q = p qp / (p qp + (1-p) qn). f must map logit(q) back to p.
    const double rates[][2] = {{0.1, 1.0}, {0.02, 1.0}, {0.5, 0.8}, {1.0, 1.0}, {0.3, 0.3}};
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        double qn = rates[r][0], qp = rates[r][1];
        rd_debias d;
        assert_int_equal(rd_debias_from_sampling(qn, qp, 0.0, &d, NULL), RD_OK);
        for (double p = 0.001; p < 1.0; p += 0.037) {
            double q = p * qp / (p * qp + (1 - p) * qn);
            double z = log(q / (1 - q));
            assert_true(fabs(rd_debias_prob(&d, z) - p) < 1e-9);
            float zf = (float)z, g;
            rd_debias_logit_forward(&g, &zf, &d, 1);
            assert_true(fabs((double)g - log(p / (1 - p))) < 1e-4 * (1 + fabs(log(p / (1 - p)))));
        }
        // Down-sampled negatives inflate probabilities: the correction lowers them.
        if (qn < qp)
            assert_true(rd_debias_prob(&d, 0.0) < 0.5);
    }
}

static void test_debias_from_config(void **state) {
    (void)state;
    rd_data_config data;
    rd_distill_config dc;
    memset(&data, 0, sizeof data);
    memset(&dc, 0, sizeof dc);
    data.negatives.rate = 0.1;
    data.negatives.pos_rate = 1.0;
    dc.debias = 0;
    rd_debias d;
    assert_int_equal(rd_debias_from_config(&data, NULL, &dc, &d, NULL), RD_OK);
    assert_true(d.r_s == 1.0 && d.p_x == 1.0 && d.r_plus == 1.0 && d.b_s == 0.0);
    dc.debias = 1;
    assert_int_equal(rd_debias_from_config(&data, NULL, &dc, &d, NULL), RD_OK);
    // Kept 1 negative in 10: a sampled-data probability of 1/2 is 1/11 in truth.
    assert_true(fabs(rd_debias_prob(&d, 0.0) - 1.0 / 11.0) < 1e-12);
    // The student job's own sampling multiplies the data's: 0.5 x 0.2 = 1 in 10 again.
    rd_negsample_config job = {.rate = 0.2, .pos_rate = 1.0};
    data.negatives.rate = 0.5;
    assert_int_equal(rd_debias_from_config(&data, &job, &dc, &d, NULL), RD_OK);
    assert_true(fabs(rd_debias_prob(&d, 0.0) - 1.0 / 11.0) < 1e-12);
    job.rate = 1.0;
    job.pos_rate = 0.5; // positives kept at 1/2, negatives at 1/2: no shift
    assert_int_equal(rd_debias_from_config(&data, &job, &dc, &d, NULL), RD_OK);
    assert_true(fabs(rd_debias_prob(&d, 0.0) - 0.5) < 1e-12);
    data.negatives.rate = 1.0; // no sampling: identity
    assert_int_equal(rd_debias_from_config(&data, NULL, &dc, &d, NULL), RD_OK);
    float z = 1.25f, g;
    rd_debias_logit_forward(&g, &z, &d, 1);
    assert_true(g == z);
    data.negatives.rate = 0.0;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_debias_from_config(&data, NULL, &dc, &d, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "data.negatives"));
}

static void test_debias_extremes_and_checks(void **state) {
    (void)state;
    const float z[] = {-1e4f, -200.0f, -88.0f, 0.0f, 88.0f, 200.0f, 1e4f};
    enum { N = sizeof z / sizeof z[0] };
    float out[N], dz[N], ones[N];
    for (int i = 0; i < N; i++)
        ones[i] = 1.0f;
    for (size_t p = 0; p < N_PARAMS; p++) {
        memset(dz, 0, sizeof dz);
        rd_debias_logit_forward(out, z, &k_params[p], N);
        rd_debias_logit_backward(dz, ones, z, &k_params[p], N);
        for (int i = 0; i < N; i++) {
            assert_true(isfinite(out[i]) && isfinite(dz[i]));
            double f = rd_debias_prob(&k_params[p], (double)z[i]);
            assert_true(f >= 0.0 && f <= 1.0);
        }
        for (int i = 1; i < N; i++)
            assert_true(out[i] >= out[i - 1]); // monotone
    }
    rd_errbuf eb;
    rd_debias bad = {1.0, 1.0, 2.0, 0.0}; // K = -1
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_debias_check(&bad, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "< 0"));
    bad = (rd_debias){0.0, 1.0, 1.0, 0.0};
    assert_int_equal(rd_debias_check(&bad, NULL), RD_ERR_ARG);
    bad = (rd_debias){1.0, (double)NAN, 1.0, 0.0};
    assert_int_equal(rd_debias_check(&bad, NULL), RD_ERR_ARG);
    rd_debias d;
    assert_int_equal(rd_debias_from_sampling(0.0, 1.0, 0.0, &d, NULL), RD_ERR_ARG);
    assert_int_equal(rd_debias_from_sampling(0.5, 1.5, 0.0, &d, NULL), RD_ERR_ARG);
    assert_int_equal(rd_debias_from_sampling(0.5, 1.0, -0.1, &d, NULL), RD_ERR_ARG);
}

// ---------------------------------------------------------------------------------------------
// Join

static void test_join_basic(void **state) {
    (void)state;
    rd_target_join *j = NULL;
    assert_int_equal(rd_target_join_create(0, &j, NULL), RD_ERR_ARG);
    assert_int_equal(rd_target_join_create(1000, &j, NULL), RD_OK);
    // Targets arrive in a shuffled order; takes come in another order.
    enum { N = 500 };
    uint64_t order[N];
    for (int i = 0; i < N; i++)
        order[i] = (uint64_t)((i * 211) % N) * 1000003ULL + 5;
    for (int i = 0; i < N; i++)
        assert_int_equal(rd_target_join_put(j, 0, order[i], (float)order[i] * 1e-6f, order[i] + 1),
                         RD_JOIN_STORED);
    assert_int_equal(rd_target_join_size(j), N);
    // Same samples in the next phase are different keys.
    assert_int_equal(rd_target_join_put(j, 1, order[0], 42.0f, 9), RD_JOIN_STORED);
    // Duplicate of a pending target: rejected, first value kept.
    assert_int_equal(rd_target_join_put(j, 0, order[3], -7.0f, 0), RD_JOIN_DUPLICATE);
    for (int k = N - 1; k >= 0; k--) {
        uint64_t s = (uint64_t)((k * 37) % N) * 1000003ULL + 5;
        float z = 0;
        uint64_t v = 0;
        assert_int_equal(rd_target_join_take(j, 0, s, &z, &v), 1);
        assert_true(z == (float)s * 1e-6f && v == s + 1);
        // Taken once only.
        assert_int_equal(rd_target_join_take(j, 0, s, NULL, NULL), 0);
    }
    // Duplicate after it was consumed: still rejected.
    assert_int_equal(rd_target_join_put(j, 0, order[3], 1.0f, 0), RD_JOIN_DUPLICATE);
    // Missing: not there -> marker; its target, arriving later, is late.
    assert_int_equal(rd_target_join_take(j, 0, 777, NULL, NULL), 0);
    assert_int_equal(rd_target_join_miss(j, 0, 777), 1);
    assert_int_equal(rd_target_join_put(j, 0, 777, 1.0f, 0), RD_JOIN_LATE);
    assert_int_equal(rd_target_join_take(j, 0, 777, NULL, NULL), 0);
    // A pending target never taken is counted at the phase end; the next phase survives it.
    assert_int_equal(rd_target_join_put(j, 0, 888, 1.0f, 0), RD_JOIN_STORED);
    assert_int_equal(rd_target_join_put(j, 2, 888, 2.0f, 0), RD_JOIN_STORED);
    assert_int_equal(rd_target_join_end(j, 0), 1);
    assert_int_equal(rd_target_join_size(j), 2);
    // After the end of phase 0 anything of phase 0 is late.
    assert_int_equal(rd_target_join_put(j, 0, 999, 1.0f, 0), RD_JOIN_LATE);
    float z = 0;
    assert_int_equal(rd_target_join_take(j, 1, order[0], &z, NULL), 1);
    assert_true(z == 42.0f);
    assert_int_equal(rd_target_join_take(j, 2, 888, &z, NULL), 1);
    assert_true(z == 2.0f);
    assert_int_equal(rd_target_join_end(j, 2), 0);
    assert_int_equal(rd_target_join_size(j), 0);
    // Drop one phase without ending it (a phase that takes no targets): its pending entries go,
    // the other phases' stay, and later targets of it are stored again, not late.
    assert_int_equal(rd_target_join_put(j, 3, 1, 1.0f, 0), RD_JOIN_STORED);
    assert_int_equal(rd_target_join_put(j, 3, 2, 1.0f, 0), RD_JOIN_STORED);
    assert_int_equal(rd_target_join_put(j, 4, 1, 4.0f, 0), RD_JOIN_STORED);
    assert_int_equal(rd_target_join_drop(j, 3), 2);
    assert_int_equal(rd_target_join_size(j), 1);
    assert_int_equal(rd_target_join_put(j, 3, 3, 1.0f, 0), RD_JOIN_STORED);
    assert_int_equal(rd_target_join_take(j, 4, 1, &z, NULL), 1);
    assert_true(z == 4.0f);
    rd_target_join_destroy(j);
    rd_target_join_destroy(NULL);
}

// The join key is (phase, sample), not the sample: a record id comes back in every pass, and the
// teacher can run a phase ahead, so the same sample is pending in two phases at once. In a small,
// half-full table the probe chains of (p, s) and (p + 1, s) cross, which a lookup by sample alone
// (or by phase alone) would mistake for a duplicate or answer with the other phase's logit.
static void test_join_same_sample_two_phases(void **state) {
    (void)state;
    for (uint64_t base = 0; base < 64; base++) {
        rd_target_join *j = NULL;
        assert_int_equal(rd_target_join_create(16, &j, NULL), RD_OK);
        for (uint64_t k = 0; k < 8; k++) {
            uint64_t s = base * 1000 + k + 1;
            assert_int_equal(rd_target_join_put(j, 5, s, (float)k, 50 + k), RD_JOIN_STORED);
            assert_int_equal(rd_target_join_put(j, 6, s, 100.0f + (float)k, 60 + k),
                             RD_JOIN_STORED);
        }
        assert_int_equal(rd_target_join_size(j), 16);
        for (uint64_t k = 8; k-- > 0;) {
            uint64_t s = base * 1000 + k + 1, v = 0;
            float z = -1.0f;
            assert_int_equal(rd_target_join_take(j, 6, s, &z, &v), 1);
            assert_true(z == 100.0f + (float)k && v == 60 + k);
            assert_int_equal(rd_target_join_take(j, 5, s, &z, &v), 1);
            assert_true(z == (float)k && v == 50 + k);
        }
        rd_target_join_destroy(j);
    }
}

// The model of a full join: consumed entries of live phases are forgotten.
static size_t purge_taken(uint8_t model[4][256], uint64_t floor) {
    size_t k = 0;
    for (uint64_t p = floor; p < 4; p++)
        for (int s = 0; s < 256; s++)
            if (model[p][s] == 2) {
                model[p][s] = 0;
                k++;
            }
    return k;
}

static void test_join_capacity(void **state) {
    (void)state;
    rd_target_join *j = NULL;
    assert_int_equal(rd_target_join_create(8, &j, NULL), RD_OK);
    for (uint64_t s = 0; s < 8; s++)
        assert_int_equal(rd_target_join_put(j, 0, s, 0.0f, 0), RD_JOIN_STORED);
    assert_int_equal(rd_target_join_put(j, 0, 100, 0.0f, 0), RD_JOIN_FULL);
    assert_int_equal(rd_target_join_miss(j, 0, 101), 0);
    // Consumed entries make room when needed (and stop being recognised as duplicates).
    assert_int_equal(rd_target_join_take(j, 0, 3, NULL, NULL), 1);
    assert_int_equal(rd_target_join_put(j, 0, 3, 0.0f, 0), RD_JOIN_DUPLICATE);
    assert_int_equal(rd_target_join_live(j), 7);
    assert_int_equal(rd_target_join_put(j, 0, 100, 0.0f, 0), RD_JOIN_STORED);
    assert_int_equal(rd_target_join_size(j), 8);
    assert_int_equal(rd_target_join_put(j, 0, 101, 0.0f, 0), RD_JOIN_FULL);
    rd_target_join_destroy(j);
    // Far below its cap, the join forgets consumed entries once they are half of what it holds
    // (make_room), instead of growing: a student taking every target as it comes keeps the
    // table at its first allocation (4096 entries), not at the cap.
    assert_int_equal(rd_target_join_create((size_t)1 << 20, &j, NULL), RD_OK);
    for (uint64_t r = 0; r < 8; r++)
        for (uint64_t k = 1; k <= 4096; k++) {
            uint64_t s = r * 4096 + k;
            assert_int_equal(rd_target_join_put(j, 0, s, 0.0f, 0), RD_JOIN_STORED);
            assert_int_equal(rd_target_join_take(j, 0, s, NULL, NULL), 1);
        }
    assert_int_equal(rd_target_join_live(j), 0);
    assert_true(rd_target_join_size(j) <= 4096);
    rd_target_join_destroy(j);
    // Random stress: a model of the table (every key in a small universe) must agree.
    assert_int_equal(rd_target_join_create(300, &j, NULL), RD_OK);
    static uint8_t model[4][256]; // 0 none, 1 pending, 2 taken, 3 missed
    memset(model, 0, sizeof model);
    rd_rng rng;
    rd_rng_seed(&rng, 3);
    uint64_t floor = 0;
    size_t n = 0;
    for (int it = 0; it < 20000; it++) {
        uint64_t ph = floor + rd_rng_below(&rng, 2), s = rd_rng_below(&rng, 256);
        int op = (int)rd_rng_below(&rng, 100);
        if (ph >= 4)
            break;
        if (op < 45) {
            int res = rd_target_join_put(j, ph, s, (float)s, ph);
            if (model[ph][s] == 0 && n >= 300)
                n -= purge_taken(model, floor);
            int exp = model[ph][s] == 0   ? (n < 300 ? RD_JOIN_STORED : RD_JOIN_FULL)
                      : model[ph][s] == 3 ? RD_JOIN_LATE
                                          : RD_JOIN_DUPLICATE;
            assert_int_equal(res, exp);
            if (res == RD_JOIN_STORED) {
                model[ph][s] = 1;
                n++;
            }
        } else if (op < 80) {
            float z = -1;
            uint64_t v = 99;
            int got = rd_target_join_take(j, ph, s, &z, &v);
            assert_int_equal(got, model[ph][s] == 1);
            if (got) {
                assert_true(z == (float)s && v == ph);
                model[ph][s] = 2;
            }
        } else if (op < 98) {
            if (model[ph][s] == 0 && n >= 300)
                n -= purge_taken(model, floor); // the join forgets consumed entries first
            if (model[ph][s] == 0 && n < 300) {
                assert_int_equal(rd_target_join_miss(j, ph, s), 1);
                model[ph][s] = 3;
                n++;
            }
        } else {
            size_t pend = 0;
            for (int k = 0; k < 256; k++)
                pend += model[floor][k] == 1;
            assert_int_equal(rd_target_join_end(j, floor), pend);
            for (int k = 0; k < 256; k++)
                n -= model[floor][k] != 0;
            floor++;
        }
        assert_int_equal(rd_target_join_size(j), n);
        size_t live = 0;
        for (uint64_t q = floor; q < 4; q++)
            for (int k = 0; k < 256; k++)
                live += model[q][k] == 1 || model[q][k] == 3;
        assert_int_equal(rd_target_join_live(j), live);
    }
    rd_target_join_destroy(j);
}

// Targets far ahead of their samples (a student walking its records in another order than the
// teacher, docs/distillation.md "Transport"): the table starts small and doubles up to its
// capacity; every target stored is found, in any order, and no key is lost or duplicated across
// the doublings; FULL only at the capacity.
static void test_join_growth(void **state) {
    (void)state;
    enum { CAP = 50000 };
    rd_target_join *j = NULL;
    assert_int_equal(rd_target_join_create(CAP, &j, NULL), RD_OK);
    // Phase 0: every target arrives before any get, in a scrambled order.
    for (uint64_t i = 0; i < CAP; i++) {
        uint64_t s = (i * 7919) % CAP;
        assert_int_equal(rd_target_join_put(j, 0, s, (float)s, i), RD_JOIN_STORED);
    }
    assert_int_equal(rd_target_join_live(j), CAP);
    assert_int_equal(rd_target_join_put(j, 0, CAP + 1, 0.0f, 0), RD_JOIN_FULL);
    assert_int_equal(rd_target_join_put(j, 0, 17, 0.0f, 0), RD_JOIN_DUPLICATE);
    // Taken in another order: each exactly once, with its value.
    for (uint64_t i = 0; i < CAP; i++) {
        uint64_t s = CAP - 1 - i;
        float z = -1;
        assert_int_equal(rd_target_join_take(j, 0, s, &z, NULL), 1);
        assert_true(z == (float)s);
        assert_int_equal(rd_target_join_take(j, 0, s, NULL, NULL), 0);
    }
    assert_int_equal(rd_target_join_live(j), 0);
    assert_int_equal(rd_target_join_end(j, 0), 0);
    assert_int_equal(rd_target_join_size(j), 0);
    // Phase 1 grows again after the phase end; a missed sample's target is late.
    assert_int_equal(rd_target_join_miss(j, 1, 5), 1);
    for (uint64_t s = 0; s < 20000; s++)
        assert_int_equal(rd_target_join_put(j, 1, s, 1.0f, 1),
                         s == 5 ? RD_JOIN_LATE : RD_JOIN_STORED);
    assert_int_equal(rd_target_join_live(j), 20000);
    assert_int_equal(rd_target_join_end(j, 1), 19999);
    assert_int_equal(rd_target_join_put(j, 1, 3, 1.0f, 1), RD_JOIN_LATE);
    rd_target_join_destroy(j);
}

// ---------------------------------------------------------------------------------------------
// Replay receiver

static void test_replay_receiver(void **state) {
    (void)state;
    char root[] = "/tmp/rd_test_distill_XXXXXX";
    assert_non_null(mkdtemp(root));
    char path[300];
    snprintf(path, sizeof path, "%s/log", root);
    rd_target_log_opts lo = {0, 0, 1};
    rd_target_log *log = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_create(path, &lo, &log, &eb), RD_OK);
    uint64_t job = rd_target_job_key("teacher");
    uint64_t samples[6] = {10, 11, 12, 13, 14, 15};
    float logits[6] = {0.5f, -1.0f, 2.0f, 3.5f, -0.25f, 1.0f};
    uint64_t versions[6] = {1, 1, 2, 2, 3, 3};
    rd_target_batch b = {5, job, 0, samples, logits, versions, NULL}; // sample 15 never logged
    assert_int_equal(rd_target_log_append(log, &b, &eb), RD_OK);
    rd_target_batch b1 = {2, job, 1, samples, logits + 4, versions, NULL}; // pass 1: 10, 11
    assert_int_equal(rd_target_log_append(log, &b1, &eb), RD_OK);

    rd_target_recv_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.replay = log;
    ro.job = job;
    rd_target_recv *r = NULL;
    assert_int_equal(rd_target_recv_create(&ro, &r, &eb), RD_OK);
    float z[6];
    uint64_t v[6];
    uint8_t has[6];
    assert_int_equal(rd_target_recv_get(r, 6, samples, z, v, has, &eb), RD_ERR_STATE);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_recv_begin(r, 0, -1, &eb), RD_OK);
    // Out of order request.
    uint64_t ask[6] = {15, 13, 10, 14, 12, 11};
    assert_int_equal(rd_target_recv_get(r, 6, ask, z, v, has, &eb), RD_OK);
    for (int i = 0; i < 6; i++) {
        int k = (int)(ask[i] - 10);
        assert_int_equal(has[i], k < 5);
        if (k < 5)
            assert_true(z[i] == logits[k] && v[i] == versions[k]);
    }
    assert_int_equal(rd_target_recv_end(r, &eb), RD_OK);
    assert_int_equal(rd_target_recv_begin(r, 1, -1, &eb), RD_OK);
    assert_int_equal(rd_target_recv_get(r, 3, samples, z, NULL, has, &eb), RD_OK);
    assert_true(has[0] && has[1] && !has[2] && z[0] == logits[4] && z[1] == logits[5]);
    assert_int_equal(rd_target_recv_end(r, &eb), RD_OK);
    assert_int_equal(rd_target_recv_close(r, &eb), RD_OK);
    rd_target_stats st;
    rd_target_recv_stats(r, &st);
    assert_true(st.replayed == 7 && st.missing == 2 && st.late == 0);
    rd_target_recv_destroy(r);
    rd_target_log_close(log);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

// A replayed target is the teacher's of the phase the student is in: a record the teacher
// logged in another phase (its run split the data otherwise: another batch_fraction or number
// of stream windows, over the same events) is refused, naming the sample and both phases, rather
// than joined into a phase it was not produced for.
static void test_replay_other_phase(void **state) {
    (void)state;
    char root[] = "/tmp/rd_test_distill_XXXXXX";
    assert_non_null(mkdtemp(root));
    char path[300];
    snprintf(path, sizeof path, "%s/log", root);
    rd_target_log_opts lo = {0, 0, 1};
    rd_target_log *log = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_create(path, &lo, &log, &eb), RD_OK);
    uint64_t job = rd_target_job_key("teacher");
    uint64_t samples[3] = {20, 21, 22};
    float logits[3] = {0.5f, -1.0f, 2.0f};
    int32_t windows[3] = {-1, 0, 1}; // the teacher's batch period, stream windows 0 and 1
    rd_target_batch b = {3, job, 0, samples, logits, NULL, windows};
    assert_int_equal(rd_target_log_append(log, &b, &eb), RD_OK);
    rd_target_recv_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.replay = log;
    ro.job = job;
    rd_target_recv *r = NULL;
    assert_int_equal(rd_target_recv_create(&ro, &r, &eb), RD_OK);
    float z[3];
    uint8_t has[3];
    // Each in its own phase: found.
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rd_target_recv_begin(r, 0, windows[i], &eb), RD_OK);
        assert_int_equal(rd_target_recv_get(r, 1, samples + i, z, NULL, has, &eb), RD_OK);
        assert_true(has[0] && z[0] == logits[i]);
        assert_int_equal(rd_target_recv_end(r, &eb), RD_OK);
    }
    // The student's batch period reaches into the teacher's stream window 0.
    assert_int_equal(rd_target_recv_begin(r, 0, -1, &eb), RD_OK);
    assert_int_equal(rd_target_recv_get(r, 2, samples, z, NULL, has, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "sample 21"));
    assert_non_null(strstr(eb.msg, "stream window 0"));
    assert_non_null(strstr(eb.msg, "batch period"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_recv_end(r, &eb), RD_OK);
    // The student's stream window 0 holds a record of the teacher's batch period.
    assert_int_equal(rd_target_recv_begin(r, 0, 0, &eb), RD_OK);
    assert_int_equal(rd_target_recv_get(r, 1, samples, z, NULL, has, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "sample 20"));
    rd_errbuf_clear(&eb);
    // Another stream window.
    assert_int_equal(rd_target_recv_get(r, 1, samples + 2, z, NULL, has, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "stream window 1"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_recv_end(r, &eb), RD_OK);
    rd_target_stats st;
    rd_target_recv_stats(r, &st);
    assert_true(st.replayed >= 3 && st.missing == 0); // none counted missing
    rd_target_recv_destroy(r);
    rd_target_log_close(log);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_debias_identity),
        cmocka_unit_test(test_debias_naive_twin),
        cmocka_unit_test(test_debias_fd_gradient),
        cmocka_unit_test(test_debias_bayes_correction),
        cmocka_unit_test(test_debias_from_config),
        cmocka_unit_test(test_debias_extremes_and_checks),
        cmocka_unit_test(test_join_basic),
        cmocka_unit_test(test_join_same_sample_two_phases),
        cmocka_unit_test(test_join_capacity),
        cmocka_unit_test(test_join_growth),
        cmocka_unit_test(test_replay_receiver),
        cmocka_unit_test(test_replay_other_phase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
