// test_scalemodel.c — the calibrated performance model (common/scalemodel.c).
//
// Each term against a hand computation from the formulas of rd/scalemodel.h, limits that must
// hold whatever the inputs (1 node: efficiency 1 and no allreduce; infinite bandwidth and zero
// latency and overhead: the compute-bound ideal; efficiency never above 1 and falling with nodes
// when communication grows), the hot-key term, non-finite figures refused, and the calibration
// parser's errors (unknown, duplicate, missing, negative, non-numeric, out-of-range keys with
// file:line; unreadable file).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/scalemodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define near(a, b, eps) assert_true(fabs((a) - (b)) <= (eps) * (1.0 + fabs(b)))

static rd_scale_calib calib(void) {
    rd_scale_calib c = {
        .compute_us_per_sample = 2.0,
        .batch_per_worker = 256,
        .dense_params = 10000,
        .ps_bytes_per_sample = 300,
        .ctl_bytes_per_sample = 1,
        .targets_bytes_per_sample = 10,
        .keys_per_sample = 4,
        .ps_key_ns = 50,
        .msg_overhead_us = 1.0,
        .hot_keys = 0,
    };
    return c;
}

static rd_scale_net net(void) {
    rd_scale_net n = {.bw_gbps = 12.5,
                      .lat_us = 2.0,
                      .workers_per_node = 1,
                      .ps_per_node = 1,
                      .fixed_ps = 0,
                      .overlap = 1};
    return n;
}

static void test_terms_by_hand(void **state) {
    (void)state;
    rd_scale_calib c = calib();
    rd_scale_net n = net();
    rd_scale_point p;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // 4 nodes: W = 4, P = 4, U = 1024 keys; S = 4 (1 - 0.75^1024) = 4 up to 1e-12.
    assert_int_equal(rd_scale_eval(&c, &n, 4, &p, &eb), RD_OK);
    assert_int_equal(p.workers, 4);
    assert_int_equal(p.ps, 4);
    near(p.shards_hit, 4.0, 1e-9);
    double bw = 12.5e3; // bytes per us
    near(p.term_us[RD_SCALE_COMPUTE], 512.0, 1e-12);
    near(p.term_us[RD_SCALE_PS_NETWORK], 3 * 2.0 + 256 * 300 / bw + 7 * 4 * 1.0, 1e-9);
    double keys_max = 4.0 * 1024 / 4; // even share, no hot keys
    near(p.term_us[RD_SCALE_PS_SERVER],
         2 * keys_max * 50e-3 + 7 * 4 * 1.0 + keys_max * (300.0 / 4) / bw, 1e-9);
    near(p.term_us[RD_SCALE_ALLREDUCE], 2 * 2 * 2.0 + 2 * 3.0 / 4 * 4 * 10000 / bw, 1e-9);
    // Overlap: max of the first three plus the allreduce.
    near(p.step_us, 512.0 + p.term_us[RD_SCALE_ALLREDUCE], 1e-12);
    assert_int_equal(p.bottleneck, RD_SCALE_COMPUTE);
    near(p.samples_per_s, 4 * 256 / p.step_us * 1e6, 1e-12);
    near(p.bytes_per_sample, 300 + 1 + 10 + 2 * 3.0 / 4 * 4 * 10000 / 256, 1e-12);
    // Few keys over many shards (S < P): 5 messages per shard touched, 2 (clock) per shard.
    rd_scale_calib few = c;
    few.batch_per_worker = 4;
    few.keys_per_sample = 1;
    rd_scale_net wide = n;
    wide.fixed_ps = 64;
    rd_scale_point q;
    assert_int_equal(rd_scale_eval(&few, &wide, 8, &q, &eb), RD_OK);
    double S = 64 * (1 - pow(63.0 / 64, 4));
    near(q.shards_hit, S, 1e-12);
    near(q.term_us[RD_SCALE_PS_NETWORK], 3 * 2.0 + 4 * 300 / bw + (5 * S + 2 * 64) * 1.0, 1e-9);
    // No overlap: the sum.
    n.overlap = 0;
    assert_int_equal(rd_scale_eval(&c, &n, 4, &p, &eb), RD_OK);
    near(p.step_us, p.term_us[0] + p.term_us[1] + p.term_us[2] + p.term_us[3], 1e-12);
}

// Overlap with the PS server the largest term: the step is that term plus the allreduce, and the
// bottleneck names it. (Catches the overlap maximum skipping the last overlapped term.)
static void test_overlap_server_bound(void **state) {
    (void)state;
    rd_scale_calib c = calib();
    c.ps_key_ns = 5000; // 2 * 1024 keys * 5 us: far above the 512 us of compute
    rd_scale_net n = net();
    rd_scale_point p;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_eval(&c, &n, 4, &p, &eb), RD_OK);
    assert_true(p.term_us[RD_SCALE_PS_SERVER] > p.term_us[RD_SCALE_COMPUTE] &&
                p.term_us[RD_SCALE_PS_SERVER] > p.term_us[RD_SCALE_PS_NETWORK]);
    near(p.step_us, p.term_us[RD_SCALE_PS_SERVER] + p.term_us[RD_SCALE_ALLREDUCE], 1e-12);
    assert_int_equal(p.bottleneck, RD_SCALE_PS_SERVER);
}

// The efficiency's reference is one node with one PS shard, whatever the PS layout asked for
// (ps_per_node 2 would give the lone node 2 shards). (Catches the reference keeping the layout.)
static void test_efficiency_reference(void **state) {
    (void)state;
    rd_scale_calib c = calib();
    c.batch_per_worker = 8; // few keys: the fan-out to the shards counts
    rd_scale_net n = net();
    n.ps_per_node = 2;
    rd_scale_net one = net();
    one.fixed_ps = 1;
    rd_scale_point p, r;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_eval(&c, &one, 1, &r, &eb), RD_OK);
    assert_int_equal(r.ps, 1);
    for (int nodes = 1; nodes <= 8; nodes *= 2) {
        assert_int_equal(rd_scale_eval(&c, &n, nodes, &p, &eb), RD_OK);
        assert_int_equal(p.ps, 2 * nodes);
        near(p.efficiency, p.samples_per_s / ((double)nodes * r.samples_per_s), 1e-12);
    }
}

static void test_limits(void **state) {
    (void)state;
    rd_scale_calib c = calib();
    rd_scale_net n = net();
    rd_scale_point p;
    rd_errbuf eb;
    // 1 node: efficiency 1, no allreduce.
    assert_int_equal(rd_scale_eval(&c, &n, 1, &p, &eb), RD_OK);
    near(p.efficiency, 1.0, 1e-12);
    assert_true(p.term_us[RD_SCALE_ALLREDUCE] == 0);
    // A near-infinite network with free messages: compute-bound at any size (server keys stay
    // below compute here), efficiency 1.
    c.msg_overhead_us = 0;
    n.bw_gbps = 1e12;
    n.lat_us = 0;
    for (int nodes = 1; nodes <= 256; nodes *= 2) {
        assert_int_equal(rd_scale_eval(&c, &n, nodes, &p, &eb), RD_OK);
        near(p.efficiency, 1.0, 1e-6);
        assert_int_equal(p.bottleneck, RD_SCALE_COMPUTE);
    }
    // Realistic network: efficiency in (0, 1], never increasing with nodes.
    c = calib();
    n = net();
    double prev = 2;
    for (int nodes = 1; nodes <= 256; nodes *= 2) {
        assert_int_equal(rd_scale_eval(&c, &n, nodes, &p, &eb), RD_OK);
        assert_true(p.efficiency > 0 && p.efficiency <= 1.0 + 1e-12);
        assert_true(p.efficiency <= prev + 1e-12);
        prev = p.efficiency;
    }
    // At 256 nodes the per-message fan-out of the PS (7 messages per shard touched, and every
    // worker touches every shard) exceeds the compute: the bottleneck is not compute.
    assert_int_equal(rd_scale_eval(&c, &n, 256, &p, &eb), RD_OK);
    assert_int_not_equal(p.bottleneck, RD_SCALE_COMPUTE);
    // Fixed PS count: P stays.
    n.fixed_ps = 3;
    assert_int_equal(rd_scale_eval(&c, &n, 64, &p, &eb), RD_OK);
    assert_int_equal(p.ps, 3);
    // Bad arguments.
    n = net();
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_eval(&c, &n, 0, &p, &eb), RD_ERR_ARG);
    n.bw_gbps = 0;
    assert_int_equal(rd_scale_eval(&c, &n, 2, &p, &eb), RD_ERR_ARG);
}

// Figures that are not finite (or a zero step) are an error, never a point: a huge input made
// the step inf and the efficiency NaN, and scale-model printed them with exit 0.
static void test_non_finite(void **state) {
    (void)state;
    rd_scale_net n = net();
    rd_scale_point p;
    rd_errbuf eb;
    rd_scale_calib c = calib();
    c.compute_us_per_sample = 1e308;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_eval(&c, &n, 1, &p, &eb), RD_ERR_RANGE);
    assert_non_null(strstr(eb.msg, "compute_us is inf"));
    c = calib();
    n.lat_us = 1e308;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_eval(&c, &n, 4, &p, &eb), RD_ERR_RANGE);
    assert_non_null(strstr(eb.msg, "is inf"));
    // Everything so small that the step underflows to 0 (throughput inf).
    n = net();
    n.lat_us = 0;
    c.compute_us_per_sample = 1e-300;
    c.batch_per_worker = 1e-300;
    c.ps_bytes_per_sample = c.ctl_bytes_per_sample = c.targets_bytes_per_sample = 0;
    c.ps_key_ns = c.msg_overhead_us = c.dense_params = 0;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_eval(&c, &n, 1, &p, &eb), RD_ERR_RANGE);
    assert_non_null(strstr(eb.msg, "step_us is 0"));
    // The largest inputs the calibration file accepts, on the widest layout: finite.
    rd_scale_calib big = {1e9, 1e9, 1e13, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
    rd_scale_net wide = {.bw_gbps = 1e-6,
                         .lat_us = 1e9,
                         .workers_per_node = 4096,
                         .ps_per_node = 64,
                         .fixed_ps = 0,
                         .overlap = 0};
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_eval(&big, &wide, 32768, &p, &eb), RD_OK);
    assert_true(isfinite(p.step_us) && isfinite(p.efficiency) && p.samples_per_s > 0);
}

// Hot keys: the busiest shard's keys grow with W ceil(H / P) on top of its even share.
static void test_hot_keys(void **state) {
    (void)state;
    rd_scale_calib c = calib();
    rd_scale_net n = net();
    n.fixed_ps = 8;
    rd_scale_point cold, hot;
    rd_errbuf eb;
    assert_int_equal(rd_scale_eval(&c, &n, 64, &cold, &eb), RD_OK);
    c.hot_keys = 4; // fewer hot keys than shards: one shard holds one of them
    assert_int_equal(rd_scale_eval(&c, &n, 64, &hot, &eb), RD_OK);
    double U = 1024, W = 64, P = 8;
    double k_cold = W * U / P, k_hot = W * (U - 4) / P + W * 1;
    double per_key = 2 * 50e-3 + (300.0 / 4) / 12.5e3;
    near(hot.term_us[RD_SCALE_PS_SERVER] - cold.term_us[RD_SCALE_PS_SERVER],
         (k_hot - k_cold) * per_key, 1e-9);
    assert_true(hot.term_us[RD_SCALE_PS_SERVER] > cold.term_us[RD_SCALE_PS_SERVER]);
}

// The n bytes at text (NUL bytes too) in a fresh file; its path, valid until the next call.
static const char *write_tmp_n(const char *text, size_t n) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/rd_test_calib_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
    return path;
}

static const char *write_tmp(const char *text) {
    return write_tmp_n(text, strlen(text));
}

static void test_calib_file(void **state) {
    (void)state;
    static const char *good = "# comment\n"
                              "compute_us_per_sample: 2.5   # us\n"
                              "batch_per_worker: 256\n"
                              "dense_params: 1433\n"
                              "ps_bytes_per_sample: 230.5\n"
                              "keys_per_sample: 3.7\n"
                              "ps_key_ns: 48\n"
                              "msg_overhead_us: 1\n"
                              "\n";
    rd_scale_calib c;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    const char *p = write_tmp(good);
    assert_int_equal(rd_scale_calib_load(p, &c, &eb), RD_OK);
    near(c.compute_us_per_sample, 2.5, 1e-12);
    near(c.keys_per_sample, 3.7, 1e-12);
    assert_true(c.hot_keys == 0 && c.targets_bytes_per_sample == 0);
    unlink(p);

    // A comment longer than the line buffer is still a comment (its tail was read as the next
    // line, "expected 'key: value'" at the wrong line number); a long key: value line is an
    // error naming its own line.
    char *text = malloc(4096);
    assert_non_null(text);
    int n = snprintf(text, 4096, "# %0700d\n%s", 0, good);
    assert_true(n > 0 && n < 4096);
    p = write_tmp(text);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_calib_load(p, &c, &eb), RD_OK);
    near(c.keys_per_sample, 3.7, 1e-12);
    unlink(p);
    // A NUL byte after a '#': with fgets the line looked cut and the next line, hot_keys: 9,
    // was dropped as its tail (read as 0, exit 0). Refused, naming its line.
    {
        char nul_text[512];
        static const char head[] = "# x\0y\nhot_keys: 9\n";
        size_t hn = sizeof head - 1, gn = strlen(good);
        assert_true(hn + gn < sizeof nul_text);
        memcpy(nul_text, head, hn);
        memcpy(nul_text + hn, good, gn);
        p = write_tmp_n(nul_text, hn + gn);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_scale_calib_load(p, &c, &eb), RD_ERR_PARSE);
        assert_non_null(strstr(eb.msg, ":1: a NUL byte in the line"));
        unlink(p);
    }
    snprintf(text, 4096, "%s# ok\nhot_keys: %0700d\n", good, 1);
    p = write_tmp(text);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_calib_load(p, &c, &eb), RD_ERR_PARSE);
    assert_non_null(strstr(eb.msg, ":11: line longer than"));
    unlink(p);
    free(text);

    // Malformed files (RD_ERR_PARSE), and finite but huge values: a range error naming the key,
    // its line and its range (RD_ERR_RANGE).
    static const struct {
        const char *text, *expect;
        int rc;
    } bad[] = {
        {"compute_us_per_sample: 1\ncolour: 3\n", ":2: unknown key 'colour'", RD_ERR_PARSE},
        {"batch_per_worker: 1\nbatch_per_worker: 2\n", ":2: duplicate key", RD_ERR_PARSE},
        {"batch_per_worker: -1\n", "batch_per_worker: '-1' is not a finite number > 0",
         RD_ERR_PARSE},
        {"ps_key_ns: fast\n", "ps_key_ns: 'fast'", RD_ERR_PARSE},
        {"ps_key_ns: 0x10\n", "ps_key_ns: '0x10' is not a finite number", RD_ERR_PARSE},
        {"ps_key_ns 3\n", ":1: expected 'key: value'", RD_ERR_PARSE},
        {"batch_per_worker: 1\n", "missing key 'compute_us_per_sample'", RD_ERR_PARSE},
        {"keys_per_sample: 0\n", "keys_per_sample: '0' is not a finite number > 0", RD_ERR_PARSE},
        {"compute_us_per_sample: 1e308\n",
         ":1: compute_us_per_sample: '1e308' is out of range (0, 1e9]", RD_ERR_RANGE},
        {"batch_per_worker: 1\nhot_keys: 2e9\n", ":2: hot_keys: '2e9' is out of range [0, 1e9]",
         RD_ERR_RANGE},
        {"dense_params: 1e14\n", "dense_params: '1e14' is out of range [0, 1e13]", RD_ERR_RANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = write_tmp(bad[i].text);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_scale_calib_load(p, &c, &eb), bad[i].rc);
        if (!strstr(eb.msg, bad[i].expect))
            fail_msg("case %zu: message '%s' lacks '%s'", i, eb.msg, bad[i].expect);
        unlink(p);
    }
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_scale_calib_load("/nonexistent/calib.yaml", &c, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "/nonexistent/calib.yaml"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_terms_by_hand),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_hot_keys),
        cmocka_unit_test(test_non_finite),
        cmocka_unit_test(test_calib_file),
        cmocka_unit_test(test_overlap_server_bound),
        cmocka_unit_test(test_efficiency_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
