// test_msg.c — the PS wire header: round trip, every rejection path of the decoder and of the
// request checks, and a randomized pass over mutated headers (no crash, no false accept of a
// size that disagrees with the received length). Also the checkpoint payload decoders.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../ps/ps_internal.h"
#include "rd/msg.h"
#include "rd/rng.h"

#include <stdio.h>
#include <string.h>

static rd_msg_header req(unsigned op, uint64_t count, uint32_t dim, uint64_t payload) {
    rd_msg_header h;
    memset(&h, 0, sizeof h);
    h.magic = RD_MSG_MAGIC;
    h.version = RD_MSG_VERSION;
    h.op = (uint16_t)op;
    h.count = count;
    h.dim = dim;
    h.req_id = 0x1234;
    h.payload_bytes = payload;
    h.step = -3;
    h.stream_time = 1700000000;
    return h;
}

static void test_roundtrip(void **state) {
    (void)state;
    rd_msg_header h = req(RD_OP_PUSH, 3, 16, 3 * (8 + 64)), g;
    h.status = RD_ERR_PROTO;
    h.table = 7;
    h.flags = RD_MSG_FLAG_REPLY;
    unsigned char buf[64 + 3 * 72];
    memset(buf, 0, sizeof buf);
    rd_msg_encode(&h, buf);
    assert_memory_equal(buf, "RDPS", 4); // magic bytes on the wire
    assert_int_equal(rd_msg_decode(buf, sizeof buf, &g, NULL), RD_OK);
    assert_memory_equal(&h, &g, sizeof h);
    assert_int_equal(rd_msg_check_reply(&g, RD_OP_PUSH, 0x1234, NULL), RD_OK);
    assert_int_equal(rd_msg_check_reply(&g, RD_OP_PULL, 0x1234, NULL), RD_ERR_PROTO);
    assert_int_equal(rd_msg_check_reply(&g, RD_OP_PUSH, 0x1235, NULL), RD_ERR_PROTO);
}

static void test_decode_rejects(void **state) {
    (void)state;
    unsigned char buf[128];
    rd_msg_header h = req(RD_OP_PULL, 8, 4, 64), g;
    rd_msg_encode(&h, buf);
    memset(buf + 64, 1, 64);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_msg_decode(buf, 10, &g, &eb), RD_ERR_PROTO);
    assert_non_null(strstr(eb.msg, "shorter"));
    assert_int_equal(rd_msg_decode(NULL, 0, &g, NULL), RD_ERR_PROTO);
    // Payload size must equal the received length.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_msg_decode(buf, 120, &g, &eb), RD_ERR_PROTO);
    assert_non_null(strstr(eb.msg, "64 payload bytes, 56 were received"));
    // Bad magic / version.
    unsigned char bad[128];
    memcpy(bad, buf, sizeof bad);
    bad[0] ^= 0xff;
    assert_int_equal(rd_msg_decode(bad, 128, &g, NULL), RD_ERR_PROTO);
    memcpy(bad, buf, sizeof bad);
    bad[4] = 9;
    assert_int_equal(rd_msg_decode(bad, 128, &g, NULL), RD_ERR_VERSION);
    assert_int_equal(g.req_id, 0x1234); // still readable for the error reply
}

static void test_check_request(void **state) {
    (void)state;
    const uint64_t max = 1 << 20;
    rd_msg_header h;
    // Valid ones.
    h = req(RD_OP_PULL, 8, 4, 64);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_OK);
    h = req(RD_OP_PUSH, 2, 3, 2 * 20);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_OK);
    h = req(RD_OP_CLOCK, 0, 0, 0);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_OK);
    h = req(RD_OP_USER_MIN + 3, 77, 0, 999);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_OK);
    // Unknown op, flags/status set.
    h = req(9, 0, 0, 0);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_UNSUPPORTED);
    h = req(0, 0, 0, 0);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_UNSUPPORTED);
    h = req(RD_OP_CLOCK, 0, 0, 0);
    h.flags = RD_MSG_FLAG_REPLY;
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    // Counts that disagree with the payload, including ones whose product would overflow.
    h = req(RD_OP_PULL, 9, 4, 64);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    h = req(RD_OP_PULL, 0, 4, 0);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    h = req(RD_OP_PULL, UINT64_MAX / 4, 4, 64);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    h = req(RD_OP_PUSH, (UINT64_MAX / 20) + 1, 3, 40);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    h = req(RD_OP_PUSH, 2, 0, 16);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    h = req(RD_OP_PUSH, 2, 5000, 2 * (8 + 20000));
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    h = req(RD_OP_STATS, 1, 0, 0);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    h = req(RD_OP_SAVE, 0, 0, 0);
    assert_int_equal(rd_msg_check_request(&h, max, NULL), RD_ERR_PROTO);
    // Too big.
    h = req(RD_OP_PULL, (max / 8) + 1, 4, ((max / 8) + 1) * 8);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_msg_check_request(&h, max, &eb), RD_ERR_RANGE);
    assert_non_null(strstr(eb.msg, "max_msg_bytes"));
}

// Random headers and random mutations of valid ones: the checks never accept a header whose
// sizes disagree with what a PULL/PUSH needs, and never crash (ASan/UBSan build).
static void test_random(void **state) {
    (void)state;
    rd_rng r;
    rd_rng_seed(&r, 99);
    unsigned char buf[256];
    int accepted = 0;
    for (int it = 0; it < 200000; it++) {
        rd_msg_header h = req(1 + (unsigned)rd_rng_below(&r, 8), rd_rng_below(&r, 5),
                              (uint32_t)rd_rng_below(&r, 5), 0);
        h.payload_bytes = h.op == RD_OP_PULL ? 8 * h.count : (8 + 4 * (uint64_t)h.dim) * h.count;
        rd_msg_encode(&h, buf);
        int flips = (int)rd_rng_below(&r, 4);
        for (int f = 0; f < flips; f++)
            buf[rd_rng_below(&r, 64)] ^= (unsigned char)(1u << rd_rng_below(&r, 8));
        size_t len = 64 + (size_t)rd_rng_below(&r, 192);
        rd_msg_header g;
        if (rd_msg_decode(buf, len, &g, NULL) != RD_OK)
            continue;
        assert_true(g.payload_bytes == len - 64);
        if (rd_msg_check_request(&g, 1 << 20, NULL) != RD_OK)
            continue;
        accepted++;
        if (g.op == RD_OP_PULL)
            assert_true(g.count >= 1 && g.count * 8 == g.payload_bytes);
        if (g.op == RD_OP_PUSH)
            assert_true(g.count >= 1 && g.dim >= 1 &&
                        g.count * (8 + 4 * (uint64_t)g.dim) == g.payload_bytes);
    }
    assert_true(accepted > 0);
}

static void test_ckpt_payload(void **state) {
    (void)state;
    rd__ckpt_req r, g;
    memset(&r, 0, sizeof r);
    snprintf(r.dir, sizeof r.dir, "/tmp/ckpt/step-10");
    r.n_tables = 3;
    r.tables[0] = 2;
    r.tables[1] = 0;
    r.tables[2] = 5;
    r.flags = RD__CKPT_FLAG_CRC;
    r.crc = 0xdeadbeef;
    unsigned char buf[512];
    size_t n = rd__ckpt_req_bytes(&r);
    rd__ckpt_req_encode(&r, buf);
    assert_int_equal(rd__ckpt_req_decode(buf, n, &g, NULL), RD_OK);
    assert_string_equal(g.dir, r.dir);
    assert_true(g.n_tables == 3 && g.tables[2] == 5 && g.crc == 0xdeadbeef);
    assert_int_equal(rd__ckpt_req_decode(buf, n - 1, &g, NULL), RD_ERR_PROTO);
    assert_int_equal(rd__ckpt_req_decode(buf, 10, &g, NULL), RD_ERR_PROTO);
    unsigned char bad[512];
    memcpy(bad, buf, n);
    bad[16 + 3] = 0; // NUL inside the path
    assert_int_equal(rd__ckpt_req_decode(bad, n, &g, NULL), RD_ERR_PROTO);
    memcpy(bad, buf, n);
    memcpy(bad + 16 + strlen(r.dir), &r.tables[1], 4); // table listed twice
    assert_int_equal(rd__ckpt_req_decode(bad, n, &g, NULL), RD_ERR_PROTO);
    memcpy(bad, buf, n);
    bad[0] = 200; // too many tables
    assert_int_equal(rd__ckpt_req_decode(bad, n, &g, NULL), RD_ERR_PROTO);
    // LOAD phases: each alone (with or without the CRC flag) is valid, two at once or an
    // unknown bit are not.
    const uint32_t ok_flags[] = {RD__CKPT_FLAG_STAGE, RD__CKPT_FLAG_COMMIT | RD__CKPT_FLAG_CRC,
                                 RD__CKPT_FLAG_ABORT};
    for (size_t i = 0; i < sizeof ok_flags / sizeof ok_flags[0]; i++) {
        r.flags = ok_flags[i];
        rd__ckpt_req_encode(&r, bad);
        assert_int_equal(rd__ckpt_req_decode(bad, n, &g, NULL), RD_OK);
        assert_true(g.flags == ok_flags[i]);
    }
    const uint32_t bad_flags[] = {RD__CKPT_FLAG_STAGE | RD__CKPT_FLAG_COMMIT,
                                  RD__CKPT_FLAG_COMMIT | RD__CKPT_FLAG_ABORT, 0x10u};
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        r.flags = bad_flags[i];
        rd__ckpt_req_encode(&r, bad);
        assert_int_equal(rd__ckpt_req_decode(bad, n, &g, NULL), RD_ERR_PROTO);
    }
    r.flags = RD__CKPT_FLAG_CRC;

    rd_ckpt_shard_info in, out;
    memset(&in, 0, sizeof in);
    in.crc = 7;
    in.n_tables = 2;
    in.rows[1] = 99;
    in.pending[0] = 3;
    rd__shard_info_encode(&in, buf);
    assert_int_equal(rd__shard_info_decode(buf, rd__shard_info_bytes(2), &out, NULL), RD_OK);
    assert_true(out.crc == 7 && out.rows[1] == 99 && out.pending[0] == 3);
    assert_int_equal(rd__shard_info_decode(buf, rd__shard_info_bytes(2) + 1, &out, NULL),
                     RD_ERR_PROTO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),     cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_check_request), cmocka_unit_test(test_random),
        cmocka_unit_test(test_ckpt_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
