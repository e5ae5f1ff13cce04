// test_optim.c — each server-side optimizer against values computed by hand (the arithmetic is
// written next to each expectation; computed in double, compared with float tolerance).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/config.h"
#include "rd/optim.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define TOL 2e-6

static rd_optim_config make(int kind, float lr) {
    rd_optim_config oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = kind;
    oc.lr = lr;
    oc.beta1 = 0.9f;
    oc.beta2 = 0.999f;
    oc.eps = 1e-8f;
    oc.initial_accumulator = 0.1f;
    oc.beta = 1.0f;
    return oc;
}

static void near(double expected, float got) {
    if (!(fabs(expected - (double)got) <= TOL * (1.0 + fabs(expected)))) // NaN fails too
        fail_msg("expected %.9g, got %.9g", expected, (double)got);
}

static void test_slots(void **state) {
    (void)state;
    assert_int_equal(rd_optim_slots(RD_OPT_SGD), 0);
    assert_int_equal(rd_optim_slots(RD_OPT_ADAGRAD), 1);
    assert_int_equal(rd_optim_slots(RD_OPT_ADAM), 2);
    assert_int_equal(rd_optim_slots(RD_OPT_FTRL), 2);
    assert_int_equal(rd_optim_slots(17), -1);
    assert_string_equal(rd_optim_name(RD_OPT_FTRL), "ftrl");
    rd_optim_config oc = make(RD_OPT_ADAGRAD, 0.1f);
    float slots[3] = {-1, -1, -1};
    rd_optim_init_slots(&oc, slots, 3);
    for (int i = 0; i < 3; i++)
        near(0.1, slots[i]);
    oc = make(RD_OPT_ADAM, 0.1f);
    float s2[4] = {-1, -1, -1, -1};
    rd_optim_init_slots(&oc, s2, 2);
    for (int i = 0; i < 4; i++)
        assert_true(s2[i] == 0.0f);
}

static void test_sgd(void **state) {
    (void)state;
    rd_optim_config oc = make(RD_OPT_SGD, 0.1f);
    float w[2] = {1.0f, -2.0f};
    float g[2] = {0.5f, 0.25f};
    rd_optim_update(&oc, w, NULL, 1, g, 2);
    near(0.95, w[0]);   // 1 - 0.1*0.5
    near(-2.025, w[1]); // -2 - 0.1*0.25
    // L2 weight decay: g' = 0.5 + 0.1*1 = 0.6, w = 1 - 0.1*0.6 = 0.94
    oc.l2 = 0.1f;
    float w2[1] = {1.0f};
    rd_optim_update(&oc, w2, NULL, 1, g, 1);
    near(0.94, w2[0]);
}

static void test_adagrad(void **state) {
    (void)state;
    rd_optim_config oc = make(RD_OPT_ADAGRAD, 0.1f);
    float w[1] = {1.0f};
    float acc[1];
    rd_optim_init_slots(&oc, acc, 1);
    float g[1] = {0.5f};
    // acc = 0.1 + 0.25 = 0.35; w = 1 - 0.1*0.5/(sqrt(0.35) + 1e-8) = 0.915484576
    rd_optim_update(&oc, w, acc, 1, g, 1);
    near(0.35, acc[0]);
    near(0.9154845759557197, w[0]);
    // acc = 0.6; w = 0.915484576 - 0.05/sqrt(0.6) = 0.850934854
    rd_optim_update(&oc, w, acc, 2, g, 1);
    near(0.6, acc[0]);
    near(0.8509348543522628, w[0]);
}

static void test_adam(void **state) {
    (void)state;
    rd_optim_config oc = make(RD_OPT_ADAM, 0.01f);
    float w[1] = {1.0f};
    float slots[2] = {0, 0}; // m, v
    float g1[1] = {0.5f};
    // t=1: m = 0.1*0.5 = 0.05, v = 0.001*0.25 = 0.00025, mhat = 0.5, vhat = 0.25,
    //      w = 1 - 0.01*0.5/(0.5 + 1e-8) = 0.9900000002
    rd_optim_update(&oc, w, slots, 1, g1, 1);
    near(0.05, slots[0]);
    near(0.00025, slots[1]);
    near(0.9900000002, w[0]);
    // t=2, g=-0.25: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225,
    //      mhat = 0.02/0.19, vhat = 0.00031225/0.001999,
    //      w = 0.99 - 0.01*mhat/(sqrt(vhat) + 1e-8) = 0.98733663
    float g2[1] = {-0.25f};
    rd_optim_update(&oc, w, slots, 2, g2, 1);
    near(0.02, slots[0]);
    near(0.00031225, slots[1]);
    near(0.9873366298707846, w[0]);
}

static void test_ftrl(void **state) {
    (void)state;
    rd_optim_config oc = make(RD_OPT_FTRL, 0.1f); // alpha 0.1, beta 1
    oc.l1 = 0.01f;
    float w[1] = {0.2f};
    float slots[2] = {0, 0}; // z, n
    float g1[1] = {0.5f};
    // n = 0.25, sigma = (0.5 - 0)/0.1 = 5, z = 0.5 - 5*0.2 = -0.5,
    // w = -(-0.5 + 0.01)/((1 + 0.5)/0.1) = 0.49/15 = 0.0326667
    rd_optim_update(&oc, w, slots, 1, g1, 1);
    near(-0.5, slots[0]);
    near(0.25, slots[1]);
    near(0.03266666666666666, w[0]);
    // g=0.1: n = 0.26, sigma = (sqrt(0.26) - 0.5)/0.1, z = -0.5 + 0.1 - sigma*w = -0.4032346,
    // w = (0.4032346 - 0.01)/((1 + sqrt(0.26))/0.1) = 0.0260437
    float g2[1] = {0.1f};
    rd_optim_update(&oc, w, slots, 2, g2, 1);
    near(-0.403234637444031, slots[0]);
    near(0.26, slots[1]);
    near(0.02604372006341367, w[0]);

    // |z| <= l1 gives an exact zero (sparsity): l1 = 1, z = -0.5.
    oc.l1 = 1.0f;
    float w3[1] = {0.2f}, s3[2] = {0, 0};
    rd_optim_update(&oc, w3, s3, 1, g1, 1);
    assert_true(w3[0] == 0.0f);
    // l2 = 2: w = 0.49/(15 + 2) = 0.0288235
    oc.l1 = 0.01f;
    oc.l2 = 2.0f;
    float w4[1] = {0.2f}, s4[2] = {0, 0};
    rd_optim_update(&oc, w4, s4, 1, g1, 1);
    near(0.028823529411764706, w4[0]);
}

// l2 is coupled for Adagrad and Adam: g' = g + l2 w enters the accumulators (rd/optim.h), unlike
// AdamW's decoupled decay. The hand values above use l2 = 0 and test_vector_matches_scalar only
// compares the code paths with each other, so a dropped or decoupled l2 passed both. Adam's first
// step is |lr| whatever g', so its slots and second step carry the check.
static void test_l2_coupled(void **state) {
    (void)state;
    rd_optim_config oc = make(RD_OPT_ADAM, 0.01f);
    oc.l2 = 0.1f;
    float w[1] = {1.0f}, slots[2] = {0, 0};
    float g1[1] = {0.5f}, g2[1] = {-0.25f};
    // t=1: g' = 0.5 + 0.1*1 = 0.6, m = 0.06, v = 0.001*0.36 = 0.00036, w = 1 - 0.01*0.6/0.6
    rd_optim_update(&oc, w, slots, 1, g1, 1);
    near(0.06, slots[0]);
    near(0.00036, slots[1]);
    near(0.9900000001666667, w[0]);
    // t=2: g' = -0.25 + 0.1*0.99 = -0.151, m = 0.054 - 0.0151 = 0.0389,
    //      v = 0.00035964 + 0.000022801 = 0.000382441,
    //      w = 0.99 - 0.01*(0.0389/0.19)/sqrt(0.000382441/0.001999) = 0.985319199
    //      (decoupled decay would give 0.985348, no decay 0.987337)
    rd_optim_update(&oc, w, slots, 2, g2, 1);
    near(0.0389, slots[0]);
    near(0.000382441, slots[1]);
    near(0.9853191993058599, w[0]);

    oc = make(RD_OPT_ADAGRAD, 0.1f);
    oc.l2 = 0.1f;
    float wa[1] = {1.0f}, acc[1];
    rd_optim_init_slots(&oc, acc, 1);
    // g' = 0.6: acc = 0.1 + 0.36 = 0.46, w = 1 - 0.1*0.6/sqrt(0.46) = 0.911534828
    rd_optim_update(&oc, wa, acc, 1, g1, 1);
    near(0.46, acc[0]);
    near(0.9115348276114096, wa[0]);
    // g' = 0.5 + 0.0911534828: acc = 0.809462440, w = 0.845829302
    rd_optim_update(&oc, wa, acc, 2, g1, 1);
    near(0.8094624401806265, acc[0]);
    near(0.8458293015452683, wa[0]);
}

// eps sits outside the square root (rd/optim.h): with eps = 1e-8 above, sqrt(v) + eps and
// sqrt(v + eps) agree to 1e-8 and the hand values cannot tell them apart, so Adam and Adagrad are
// checked again over two steps with eps = 0.1, where the two placements differ by ~1e-4.
static void test_eps_placement(void **state) {
    (void)state;
    rd_optim_config oc = make(RD_OPT_ADAM, 0.01f);
    oc.eps = 0.1f;
    float w[1] = {1.0f}, slots[2] = {0, 0};
    float g1[1] = {0.5f}, g2[1] = {-0.25f};
    // t=1: mhat = 0.5, vhat = 0.25: w = 1 - 0.01*0.5/(0.5 + 0.1) = 0.991666667
    //      (sqrt(0.25 + 0.1) would give 0.991548)
    rd_optim_update(&oc, w, slots, 1, g1, 1);
    near(0.9916666666666667, w[0]);
    // t=2: m = 0.02, v = 0.00031225 as in test_adam:
    //      w -= 0.01*(0.02/0.19)/(sqrt(0.00031225/0.001999) + 0.1) = 0.989541106
    rd_optim_update(&oc, w, slots, 2, g2, 1);
    near(0.9895411060230342, w[0]);

    oc = make(RD_OPT_ADAGRAD, 0.1f);
    oc.eps = 0.1f;
    float wa[1] = {1.0f}, acc[1];
    rd_optim_init_slots(&oc, acc, 1);
    // acc = 0.35: w = 1 - 0.1*0.5/(sqrt(0.35) + 0.1) = 0.927704709
    rd_optim_update(&oc, wa, acc, 1, g1, 1);
    near(0.9277047090720645, wa[0]);
    // acc = 0.6: w -= 0.05/(sqrt(0.6) + 0.1) = 0.8705355
    rd_optim_update(&oc, wa, acc, 2, g1, 1);
    near(0.8705354998143117, wa[0]);
}

// Coordinates are independent and the vector bodies equal the scalar tail bit for bit: a 21-d
// update (AVX, SSE2 and scalar parts) equals 21 one-element updates, for every optimizer,
// over several steps with mixed-sign gradients.
static void test_vector_matches_scalar(void **state) {
    (void)state;
    enum { D = 21, S = 2 }; // 2 AVX blocks + 1 SSE2 block + 1 scalar element
    for (int kind = 0; kind < 4; kind++) {
        rd_optim_config oc = make(kind, 0.05f);
        oc.l1 = 0.01f;
        oc.l2 = 0.001f;
        float w[D], slots[S * D], w1[D], s1[D][S];
        for (int i = 0; i < D; i++)
            w[i] = w1[i] = 0.1f * (float)(i - 6);
        rd_optim_init_slots(&oc, slots, D);
        for (int i = 0; i < D; i++)
            rd_optim_init_slots(&oc, s1[i], 1);
        for (uint64_t t = 1; t <= 5; t++) {
            float g[D];
            for (int i = 0; i < D; i++)
                g[i] = 0.3f * (float)((i * 7 + (int)t * 3) % 11 - 5);
            rd_optim_update(&oc, w, slots, t, g, D);
            for (int i = 0; i < D; i++) {
                float one[S];
                for (int k = 0; k < S; k++)
                    one[k] = s1[i][k];
                rd_optim_update(&oc, &w1[i], one, t, &g[i], 1);
                for (int k = 0; k < S; k++)
                    s1[i][k] = one[k];
            }
        }
        int ns = rd_optim_slots(kind);
        for (int i = 0; i < D; i++) {
            if (memcmp(&w[i], &w1[i], sizeof(float)) != 0)
                fail_msg("%s: w[%d] vector %.9g scalar %.9g", rd_optim_name(kind), i, (double)w[i],
                         (double)w1[i]);
            for (int k = 0; k < ns; k++)
                if (memcmp(&slots[k * D + i], &s1[i][k], sizeof(float)) != 0)
                    fail_msg("%s: slot %d[%d] differs", rd_optim_name(kind), k, i);
        }
    }
}

// A finite gradient beyond ~1.8e19 overflowed Adam's v / (1 - b2^t) in float (1e20 at t = 1), or v
// itself (1e30, FLT_MAX): the step was 0, and an inf v froze the coordinate for good and made
// rd_ckpt verify refuse the checkpoint. Adam's step is about lr whatever the scale of g: here lr,
// then after g = -1 the step of a g of 2^63 (the clip, rd/optim.h): m = 0.09*2^63 - 0.1,
// v = 0.000999*2^126 + 0.001, w = 0.99 - 0.01*(m/0.19)/sqrt(v/0.001999) = 0.983299417. Lanes 0,
// 4, ..., 20 of a 21-d row carry the huge gradient (AVX, SSE2 and scalar parts), the others 0.5,
// and the row equals 21 one-element updates bit for bit.
static void test_adam_huge_gradient(void **state) {
    (void)state;
    enum { D = 21 };
    const float huge[] = {1e20f, 1e30f, FLT_MAX};
    for (int k = 0; k < 3; k++) {
        rd_optim_config oc = make(RD_OPT_ADAM, 0.01f);
        float w[D], slots[2 * D], w1[D], s1[D][2];
        for (int i = 0; i < D; i++) {
            w[i] = w1[i] = 1.0f;
            slots[i] = slots[D + i] = s1[i][0] = s1[i][1] = 0.0f;
        }
        for (uint64_t t = 1; t <= 2; t++) {
            float g[D];
            for (int i = 0; i < D; i++)
                g[i] = t == 2 ? -1.0f : i % 4 == 0 ? huge[k] : 0.5f;
            rd_optim_update(&oc, w, slots, t, g, D);
            for (int i = 0; i < D; i++)
                rd_optim_update(&oc, &w1[i], s1[i], t, &g[i], 1);
            for (int i = 0; i < D; i += 4)
                near(t == 1 ? 0.99 : 0.9832994174586346, w1[i]);
        }
        for (int i = 0; i < D; i++) {
            assert_true(isfinite(s1[i][0]) && isfinite(s1[i][1]));
            if (memcmp(&w[i], &w1[i], sizeof(float)) != 0 ||
                memcmp(&slots[i], &s1[i][0], sizeof(float)) != 0 ||
                memcmp(&slots[D + i], &s1[i][1], sizeof(float)) != 0)
                fail_msg("g %g: lane %d: vector and scalar differ", (double)huge[k], i);
        }
    }
    // A non-finite gradient still gives a non-finite weight, which the trainer reports as a
    // diverged table (it is not clipped into a finite step).
    const float bad[] = {INFINITY, -INFINITY, NAN};
    for (int k = 0; k < 3; k++) {
        rd_optim_config oc = make(RD_OPT_ADAM, 0.01f);
        float w[D], slots[2 * D] = {0}, g[D];
        for (int i = 0; i < D; i++) {
            w[i] = 1.0f;
            g[i] = i == 5 || i == 20 ? bad[k] : 0.5f;
        }
        rd_optim_update(&oc, w, slots, 1, g, D);
        assert_false(isfinite(w[5]));
        assert_false(isfinite(w[20]));
        near(0.99, w[4]);
    }
}

// Adagrad's accumulator overflowed float at |g| beyond ~1.8e19: the step was 0 and the inf left in
// the slot froze the coordinate for good. Now the step is lr g / sqrt(0.1 + g^2) = lr and the
// accumulator saturates at FLT_MAX, so the next step (g = 0.5) is 0.1*0.5/1.8e19, about 0, as the
// exact accumulator of >= 1e40 gives. Same lane layout as test_adam_huge_gradient.
static void test_adagrad_huge_gradient(void **state) {
    (void)state;
    enum { D = 21 };
    const float huge[] = {2e19f, -1e30f, FLT_MAX};
    for (int k = 0; k < 3; k++) {
        rd_optim_config oc = make(RD_OPT_ADAGRAD, 0.1f);
        float w[D], acc[D], w1[D], a1[D];
        rd_optim_init_slots(&oc, acc, D);
        rd_optim_init_slots(&oc, a1, D);
        for (int i = 0; i < D; i++)
            w[i] = w1[i] = 1.0f;
        const double sign = huge[k] > 0.0f ? 1.0 : -1.0;
        for (uint64_t t = 1; t <= 2; t++) {
            float g[D];
            for (int i = 0; i < D; i++)
                g[i] = t == 2 ? 0.5f : i % 4 == 0 ? huge[k] : 0.5f;
            rd_optim_update(&oc, w, acc, t, g, D);
            for (int i = 0; i < D; i++)
                rd_optim_update(&oc, &w1[i], &a1[i], t, &g[i], 1);
            for (int i = 0; i < D; i += 4) {
                near(1.0 - 0.1 * sign, w1[i]);
                assert_true(a1[i] == FLT_MAX);
            }
        }
        for (int i = 0; i < D; i++)
            if (memcmp(&w[i], &w1[i], sizeof(float)) != 0 ||
                memcmp(&acc[i], &a1[i], sizeof(float)) != 0)
                fail_msg("g %g: lane %d: vector and scalar differ", (double)huge[k], i);
    }
    rd_optim_config oc = make(RD_OPT_ADAGRAD, 0.1f);
    float w[1] = {1.0f}, acc[1] = {0.1f}, g[1] = {INFINITY};
    rd_optim_update(&oc, w, acc, 1, g, 1);
    assert_false(isfinite(w[0]));
}

// FTRL's n overflowed float at |g| beyond ~1.8e19: sigma was inf and the weight NaN, reported as a
// diverged table. Now g is clipped to +-2^63 and n saturates: alpha 0.1, beta 1, l1 0.01, w 0.2:
// n = 2^126, sigma = 2^63/0.1, z = 2^63 - 2^63*0.2/0.1 = -2^63,
// w = (2^63 - 0.01)/((1 + 2^63)/0.1) = 0.1; a second step of g = 0.5 leaves n, z (to float
// precision) and so w = 0.1. Same lane layout as test_adam_huge_gradient.
static void test_ftrl_huge_gradient(void **state) {
    (void)state;
    enum { D = 21 };
    const float huge[] = {2e19f, 1e30f, FLT_MAX};
    for (int k = 0; k < 3; k++) {
        rd_optim_config oc = make(RD_OPT_FTRL, 0.1f);
        oc.l1 = 0.01f;
        float w[D], slots[2 * D], w1[D], s1[D][2];
        for (int i = 0; i < D; i++) {
            w[i] = w1[i] = 0.2f;
            slots[i] = slots[D + i] = s1[i][0] = s1[i][1] = 0.0f;
        }
        for (uint64_t t = 1; t <= 2; t++) {
            float g[D];
            for (int i = 0; i < D; i++)
                g[i] = t == 1 && i % 4 == 0 ? huge[k] : 0.5f;
            rd_optim_update(&oc, w, slots, t, g, D);
            for (int i = 0; i < D; i++)
                rd_optim_update(&oc, &w1[i], s1[i], t, &g[i], 1);
            for (int i = 0; i < D; i += 4)
                near(0.1, w1[i]);
        }
        for (int i = 0; i < D; i++) {
            assert_true(isfinite(s1[i][0]) && isfinite(s1[i][1]));
            if (memcmp(&w[i], &w1[i], sizeof(float)) != 0 ||
                memcmp(&slots[i], &s1[i][0], sizeof(float)) != 0 ||
                memcmp(&slots[D + i], &s1[i][1], sizeof(float)) != 0)
                fail_msg("g %g: lane %d: vector and scalar differ", (double)huge[k], i);
        }
    }
    rd_optim_config oc = make(RD_OPT_FTRL, 0.1f);
    float w[1] = {0.2f}, slots[2] = {0, 0}, g[1] = {INFINITY};
    rd_optim_update(&oc, w, slots, 1, g, 1);
    assert_false(isfinite(w[0]));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adagrad),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_ftrl),
        cmocka_unit_test(test_l2_coupled),
        cmocka_unit_test(test_eps_placement),
        cmocka_unit_test(test_vector_matches_scalar),
        cmocka_unit_test(test_adam_huge_gradient),
        cmocka_unit_test(test_adagrad_huge_gradient),
        cmocka_unit_test(test_ftrl_huge_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
