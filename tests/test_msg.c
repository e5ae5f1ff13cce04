// test_msg.c — the PS wire header: round trip, every rejection path of the decoder and of the
// request checks, and a randomized pass over mutated headers (no crash, no false accept of a
// size that disagrees with the received length). Also the checkpoint payload decoders, the
// shared-memory descriptor checks (rd_msg_check_shm), the region allocator and the region
// create/announce/map round trip of ps_shm.c.
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
#include <unistd.h>

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

static void test_shm_check_request(void **state) {
    (void)state;
    rd_msg_header h = req(RD_OP_PULL, 2, 8, RD_MSG_SHM_DESC_BYTES);
    h.flags = RD_MSG_FLAG_SHM;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_OK);
    h.op = RD_OP_PUSH;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_OK);
    h.count = 4096 / (8 + 32) + 1; // keys + gradients beyond ps.max_msg_bytes
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_RANGE);
    h = req(RD_OP_PULL, 2, 8, 24);
    h.flags = RD_MSG_FLAG_SHM;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_PROTO);
    h = req(RD_OP_PULL, 0, 8, RD_MSG_SHM_DESC_BYTES);
    h.flags = RD_MSG_FLAG_SHM;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_RANGE);
    h = req(RD_OP_PULL, 2, 0, RD_MSG_SHM_DESC_BYTES);
    h.flags = RD_MSG_FLAG_SHM;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_PROTO);
    h = req(RD_OP_CLOCK, 0, 0, 0);
    h.flags = RD_MSG_FLAG_SHM; // only PULL and PUSH
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_PROTO);
    h = req(RD_OP_PULL, 2, 8, RD_MSG_SHM_DESC_BYTES);
    h.flags = RD_MSG_FLAG_SHM | RD_MSG_FLAG_SPLIT;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_PROTO);
    // A read (an evaluation's pull: no sightings) is a PULL flag, with or without shared memory.
    h.flags = RD_MSG_FLAG_SHM | RD_MSG_FLAG_READ;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_OK);
    h = req(RD_OP_PULL, 2, 8, 16);
    h.flags = RD_MSG_FLAG_READ;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_OK);
    h = req(RD_OP_PUSH, 2, 8, 2 * (8 + 32));
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_OK);
    h.flags = RD_MSG_FLAG_READ; // a push is never a read
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_PROTO);
    h = req(RD_OP_CLOCK, 0, 0, 0);
    h.flags = RD_MSG_FLAG_READ;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_PROTO);
    h = req(RD_OP_ATTACH, 0, 0, RD_MSG_ATTACH_BYTES);
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_OK);
    h.payload_bytes = RD_MSG_ATTACH_BYTES - 1;
    assert_int_equal(rd_msg_check_request(&h, 4096, NULL), RD_ERR_PROTO);
}

static void test_shm_descriptor(void **state) {
    (void)state;
    const uint64_t R = 1u << 20, ID = 0x1234abcdull;
    rd_msg_shm d = {ID, 64, 16, 128}, g;
    unsigned char buf[RD_MSG_SHM_DESC_BYTES];
    rd_msg_shm_encode(&d, buf);
    rd_msg_shm_decode(buf, &g);
    assert_memory_equal(&d, &g, sizeof d);
    rd_msg_header pull = req(RD_OP_PULL, 2, 8, RD_MSG_SHM_DESC_BYTES);
    rd_msg_header push = req(RD_OP_PUSH, 2, 8, RD_MSG_SHM_DESC_BYTES);
    pull.flags = push.flags = RD_MSG_FLAG_SHM;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_msg_check_shm(&pull, &d, ID, R, 4096, &eb), RD_OK);
    // Exactly at the end of the region: accepted; one alignment step further: not.
    d = (rd_msg_shm){ID, 64, 16, R - 64};
    assert_int_equal(rd_msg_check_shm(&pull, &d, ID, R, 4096, NULL), RD_OK);
    d = (rd_msg_shm){ID, 64, 16, R};
    assert_int_equal(rd_msg_check_shm(&pull, &d, ID, R, 4096, NULL), RD_ERR_RANGE);
    struct {
        rd_msg_shm d;
        int push, want;
        const char *needle;
    } bad[] = {
        {{ID + 1, 64, 16, 128}, 0, RD_ERR_STATE, "region"},
        {{ID, 0, 16, 128}, 0, RD_ERR_RANGE, "first 64"},
        {{ID, 72, 16, 128}, 0, RD_ERR_RANGE, "aligned"},
        {{ID, R, 16, 128}, 0, RD_ERR_RANGE, "request at"},
        {{ID, UINT64_MAX & ~(uint64_t)63, 16, 128}, 0, RD_ERR_RANGE, "request at"},
        {{ID, 64, 24, 128}, 0, RD_ERR_PROTO, "needs 16"},
        {{ID, 64, UINT64_MAX, 128}, 0, RD_ERR_PROTO, "needs 16"},
        {{ID, 64, 16, 64}, 0, RD_ERR_PROTO, "overlaps"},
        {{ID, 64, 16, UINT64_MAX & ~(uint64_t)63}, 0, RD_ERR_RANGE, "reply at"},
        {{ID, R - 64, 80, 0}, 1, RD_ERR_RANGE, "request at"},
        {{ID, 64, 80, 4096}, 1, RD_ERR_PROTO, "reply offset"},
        {{ID, 64, 81, 0}, 1, RD_ERR_PROTO, "needs 80"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rd_errbuf_clear(&eb);
        int rc = rd_msg_check_shm(bad[i].push ? &push : &pull, &bad[i].d, ID, R, 4096, &eb);
        if (rc != bad[i].want || !strstr(eb.msg, bad[i].needle))
            fail_msg("case %zu: %d '%s' (expected %d, '%s')", i, rc, eb.msg, bad[i].want,
                     bad[i].needle);
    }
    d = (rd_msg_shm){ID, 64, 80, 0};
    assert_int_equal(rd_msg_check_shm(&push, &d, ID, R, 4096, NULL), RD_OK);
    d = (rd_msg_shm){ID, 128, 16, 64}; // the reply [64, 128) just before the keys
    assert_int_equal(rd_msg_check_shm(&pull, &d, ID, R, 4096, NULL), RD_OK);
    // The count bound keeps count * dim * 4 from overflowing whatever the header says.
    rd_msg_header huge = req(RD_OP_PULL, UINT64_MAX / 8, 1024, RD_MSG_SHM_DESC_BYTES);
    d = (rd_msg_shm){ID, 64, UINT64_MAX / 8 * 8, 128};
    assert_int_equal(rd_msg_check_shm(&huge, &d, ID, UINT64_MAX, UINT64_MAX, NULL), RD_ERR_RANGE);
    rd_msg_header stats = req(RD_OP_STATS, 0, 0, 0);
    assert_int_equal(rd_msg_check_shm(&stats, &d, ID, R, 4096, NULL), RD_ERR_PROTO);
}

static void test_shm_arena(void **state) {
    (void)state;
    rd__shm_arena a;
    rd__shm_arena_init(&a, 64 + 64 * 10); // 10 units of 64 bytes after the reserved start
    uint64_t o[10];
    assert_int_equal(rd__shm_alloc(&a, 1, &o[0]), RD_OK);
    assert_int_equal(o[0], 64);
    assert_int_equal(rd__shm_alloc(&a, 65, &o[1]), RD_OK); // 2 units
    assert_int_equal(o[1], 128);
    assert_int_equal(rd__shm_alloc(&a, 64 * 7, &o[2]), RD_OK);
    assert_int_equal(o[2], 256);
    assert_int_equal(rd__shm_alloc(&a, 1, &o[3]), RD_ERR_FULL);
    assert_int_equal(rd__shm_release(&a, o[1]), RD_OK);
    assert_int_equal(rd__shm_release(&a, o[1]), RD_ERR_NOTFOUND);
    assert_int_equal(rd__shm_alloc(&a, 64 * 3, &o[3]), RD_ERR_FULL); // the gap holds 2
    assert_int_equal(rd__shm_alloc(&a, 64, &o[3]), RD_OK);           // first fit: the gap
    assert_int_equal(o[3], 128);
    assert_int_equal(rd__shm_alloc(&a, 64, &o[4]), RD_OK);
    assert_int_equal(o[4], 192);
    assert_int_equal(rd__shm_release(&a, o[0]), RD_OK);
    assert_int_equal(rd__shm_release(&a, o[2]), RD_OK);
    assert_int_equal(rd__shm_alloc(&a, 64 * 8, &o[5]), RD_ERR_FULL);
    assert_int_equal(rd__shm_alloc(&a, 64 * 7, &o[5]), RD_OK);
    assert_int_equal(o[5], 256);
    assert_int_equal(rd__shm_alloc(&a, 1u << 20, &o[6]), RD_ERR_FULL);
    // Random alloc/release against a byte map: ranges never overlap and stay inside.
    rd__shm_arena_free_all(&a);
    rd__shm_arena_init(&a, 64 * 200);
    unsigned char owner[200];
    memset(owner, 0, sizeof owner);
    uint64_t offs[64], lens[64];
    int live = 0;
    rd_rng r;
    rd_rng_seed(&r, 5);
    for (int it = 0; it < 5000; it++) {
        if (live > 0 && (live == 64 || rd_rng_below(&r, 2))) {
            int k = (int)rd_rng_below(&r, (uint64_t)live);
            assert_int_equal(rd__shm_release(&a, offs[k]), RD_OK);
            for (uint64_t u = offs[k] / 64; u < (offs[k] + lens[k]) / 64; u++)
                owner[u] = 0;
            offs[k] = offs[live - 1];
            lens[k] = lens[live - 1];
            live--;
            continue;
        }
        uint64_t len = 1 + rd_rng_below(&r, 64 * 12), off = 0;
        int rc = rd__shm_alloc(&a, len, &off);
        if (rc == RD_ERR_FULL)
            continue;
        assert_int_equal(rc, RD_OK);
        uint64_t units = (len + 63) / 64;
        assert_true(off % 64 == 0 && off >= 64 && off + units * 64 <= 64 * 200);
        for (uint64_t u = off / 64; u < off / 64 + units; u++) {
            assert_int_equal(owner[u], 0);
            owner[u] = 1;
        }
        offs[live] = off;
        lens[live] = units * 64;
        live++;
    }
    rd__shm_arena_free_all(&a);
}

static void test_shm_region(void **state) {
    (void)state;
    rd__shm_region mine, peer;
    rd__shm_attach a, b;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd__shm_create(1u << 20, 77, &mine, &a, &eb), RD_OK);
    assert_int_equal(a.pid, (uint32_t)getpid());
    unsigned char buf[RD_MSG_ATTACH_BYTES];
    rd__shm_attach_encode(&a, buf);
    assert_int_equal(rd__shm_attach_decode(buf, sizeof buf, &b, &eb), RD_OK);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(rd__shm_attach_decode(buf, sizeof buf - 1, &b, NULL), RD_ERR_PROTO);
    unsigned char bad[RD_MSG_ATTACH_BYTES];
    memcpy(bad, buf, sizeof bad);
    memset(bad + 24, 'x', RD__SHM_HOST); // host name without its NUL
    assert_int_equal(rd__shm_attach_decode(bad, sizeof bad, &b, NULL), RD_ERR_PROTO);
    // Mapped again (as a PS rank would): the same memory.
    assert_int_equal(rd__shm_map(&a, &peer, &eb), RD_OK);
    mine.base[5000] = 42;
    assert_int_equal(peer.base[5000], 42);
    peer.base[6000] = 7;
    assert_int_equal(mine.base[6000], 7);
    rd__shm_unmap(&peer);
    // Sealed: the file cannot shrink under a peer's mapping, nor grow.
    assert_int_not_equal(ftruncate(mine.fd, 4096), 0);
    assert_int_not_equal(ftruncate(mine.fd, 2u << 20), 0);
    // Refusals: another node, another id, another size, a missing fd.
    rd__shm_attach x = a;
    snprintf(x.host, sizeof x.host, "elsewhere");
    assert_int_equal(rd__shm_map(&x, &peer, NULL), RD_ERR_UNSUPPORTED);
    x = a;
    x.id = 78;
    assert_int_equal(rd__shm_map(&x, &peer, NULL), RD_ERR_PROTO);
    x = a;
    x.bytes = 2u << 20;
    assert_int_equal(rd__shm_map(&x, &peer, NULL), RD_ERR_PROTO);
    x = a;
    x.fd = 999999;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd__shm_map(&x, &peer, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "/proc/"));
    assert_null(peer.base);
    rd__shm_unmap(&mine);
    rd__shm_unmap(&mine); // idempotent
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_check_request),  cmocka_unit_test(test_random),
        cmocka_unit_test(test_ckpt_payload),   cmocka_unit_test(test_shm_check_request),
        cmocka_unit_test(test_shm_descriptor), cmocka_unit_test(test_shm_arena),
        cmocka_unit_test(test_shm_region),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
