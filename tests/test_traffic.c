// test_traffic.c — the communication counters' pure helpers (common/traffic.c): channel names,
// counting and sums, wire bytes of one- and two-ended channels, the allreduce cost model and the
// report's "comm" JSON object. The counting inside the KV client, the token client, the targets
// and the allreduce is checked by tests/mpi/comm_traffic.c and tests/scripts/scale_model.sh.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/traffic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Traffic helpers: names, sums, wire bytes, the allreduce cost model, the JSON object.
// What rd_traffic_write_json writes for t over `samples` samples, into text (cap bytes).
static void json_of(const rd_traffic *t, uint64_t samples, char *text, size_t cap) {
    FILE *f = tmpfile();
    assert_non_null(f);
    rd_traffic_write_json(f, t, samples, "");
    rewind(f);
    size_t n = fread(text, 1, cap - 1, f);
    fclose(f);
    text[n] = 0;
}

static void test_traffic(void **state) {
    (void)state;
    assert_string_equal(rd_traffic_chan_name(RD_CHAN_PS_PULL), "ps_pull");
    assert_string_equal(rd_traffic_chan_name(RD_CHAN_PS_CTL), "ps_ctl");
    assert_string_equal(rd_traffic_chan_name(RD_CHAN_PS_CKPT), "ps_ckpt");
    assert_string_equal(rd_traffic_chan_name(RD_CHAN_TOKEN_FETCH), "token_fetch");
    assert_string_equal(rd_traffic_chan_name(RD_CHAN_ALLREDUCE), "allreduce");
    assert_string_equal(rd_traffic_chan_name(RD_CHAN_COUNT), "?");
    rd_traffic a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    rd_traffic_count(&a, RD_CHAN_PS_PULL, 0, 2, 100);
    rd_traffic_count(&a, RD_CHAN_PS_PULL, 1, 4, 1000);
    rd_traffic_count(&a, RD_CHAN_TARGETS, 0, 1, 60);
    rd_traffic_count(&a, RD_CHAN_TARGETS, 1, 1, 60);
    rd_traffic_count(NULL, RD_CHAN_TARGETS, 1, 1, 60);
    rd_traffic_add(&b, &a);
    rd_traffic_add(&b, &a);
    assert_int_equal(b.sent[RD_CHAN_PS_PULL].msgs, 4);
    assert_int_equal(b.recv[RD_CHAN_PS_PULL].bytes, 2000);
    // One end counted (PS): sent + received; both ends (targets): the sent bytes only.
    assert_int_equal(rd_traffic_wire_bytes(&b, RD_CHAN_PS_PULL), 2200);
    assert_int_equal(rd_traffic_wire_bytes(&b, RD_CHAN_TARGETS), 120);
    uint64_t m, by;
    rd_traffic_allreduce_cost(1000, 1, &m, &by);
    assert_true(m == 0 && by == 0);
    rd_traffic_allreduce_cost(1000, 4, &m, &by);
    assert_true(m == 6 && by == 6000); // 2 * 3 * 4000 / 4
    rd_traffic_allreduce_cost(1000, 32, &m, &by);
    assert_true(m == 62 && by == 2 * 31 * 4000 / 32);
    char text[4096];
    json_of(&b, 100, text, sizeof text);
    assert_non_null(strstr(text, "\"samples\": 100"));
    assert_non_null(strstr(text, "\"ps_pull\": {\"msgs_sent\": 4, \"bytes_sent\": 200, "
                                 "\"msgs_recv\": 8, \"bytes_recv\": 2000, \"wire_bytes\": 2200, "
                                 "\"bytes_per_sample\": 22, \"msgs_per_sample\": 0.12}"));
    assert_non_null(strstr(text, "\"total\": {\"wire_bytes\": 2320, \"msgs\": 14"));
    json_of(&b, 0, text, sizeof text);
    assert_non_null(strstr(text, "\"bytes_per_sample\": null"));
    // A large batch: 3 control messages over 2048 samples is 0.00146484375 a sample, written in
    // full ("%.3f" wrote 0.001), and so is a byte figure below 1.
    rd_traffic c;
    memset(&c, 0, sizeof c);
    c.sent[RD_CHAN_PS_CTL].msgs = 3;
    c.sent[RD_CHAN_PS_CTL].bytes = 3;
    json_of(&c, 2048, text, sizeof text);
    assert_non_null(strstr(text,
                           "\"ps_ctl\": {\"msgs_sent\": 3, \"bytes_sent\": 3, \"msgs_recv\": 0, "
                           "\"bytes_recv\": 0, \"wire_bytes\": 3, \"bytes_per_sample\": "
                           "0.00146484375, \"msgs_per_sample\": 0.00146484375}"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traffic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
