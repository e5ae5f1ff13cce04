// ps_bad_messages.c — bad messages are rejected with an error reply and the server keeps serving.
//
// Needs 3 ranks: rank 0 = PS (rd_server with a user handler registered for op 40, the hook the
// token store will use), rank 1 = a good worker (job "train") training 25 sync steps, rank 2 =
// an evil worker (job "evil") that talks raw MPI to the PS while rank 1 trains:
//   garbage shorter than a header, an empty message, bad magic, bad version, unknown op,
//   unregistered user op, registered user op (echo, copied and built in place with
//   rd_server_reply_buffer), unknown table, a count that disagrees with
//   the payload (and whose product overflows), a short payload, a message larger than
//   ps.max_msg_bytes (drained without allocating it), payload_bytes different from the received
//   size, wrong dim, key 0, unsorted keys, a far-future step, reply flag set, malformed SAVE,
//   LOAD of a missing checkpoint, STATS of an unknown table, a built-in op whose req_id names a
//   reply slot reserved for other clients (rejected on RD_TAG_PS_BADMSG, never on the reserved
//   tag) while a user op may use such a slot, 300 random or mutated messages, a SHUTDOWN sent
//   twice in a row (the second is refused, not counted) and a request after SHUTDOWN. Shared
//   memory (evil_shm): a shared-memory request before any ATTACH, ATTACH payloads of the wrong
//   size, from another node, naming a missing file, a region of another size or id, a second
//   ATTACH after a good one; then, with a real region attached, descriptors
//   naming another region, ranges outside the region, in its reserved start, unaligned,
//   overflowing, of the wrong length, a reply overlapping the keys or out of the region, a PUSH
//   with a reply range, a descriptor of the wrong size, the flag on CLOCK, too many keys, key 0 in
//   the region; and one valid shared-memory PULL whose values must land in the region.
// Each gets exactly one error reply with the expected status (on RD_TAG_PS_BADMSG when the
// header could not be read); nothing else arrives; the good worker's pulled values equal a
// single-process reference, i.e. the attack did not disturb training. The good worker then
// checks that its request timestamps wrap past INT_MAX to 0 without losing the ones in flight.
#include "ps_test_util.h"

#include <limits.h>

#include "../../ps/ps_internal.h"
#include "rd/msg.h"
#include "rd/optim.h"

#define STEPS   25
#define DRAWS   64
#define ECHO_OP 40
#define REV_OP  42 // echo reversed, built in place in rd_server_reply_buffer

static void make_cfg(rd_config *cfg) {
    const char *names[] = {"train", "evil"};
    int ranks[] = {1, 1};
    t_config(cfg, 1, 2, names, ranks);
    cfg->ps.max_msg_bytes = 4096;
    t_table(cfg, "emb", 8, RD_OPT_ADAGRAD, 0.05f);
    t_table(cfg, "small", 2, RD_OPT_SGD, 0.1f);
}

// ---------------------------------------------------------------------------------------------
// PS side: echo handler for the user op.

static int echo(const rd_kv_meta *meta, const rd_kv_pairs *pairs, rd_server *srv, void *user) {
    int *calls = user;
    (*calls)++;
    if (meta->job != 1 || meta->worker != 0)
        return rd_server_respond(srv, meta, RD_ERR_STATE, "bad identity", 12);
    return rd_server_respond(srv, meta, RD_OK, pairs->payload, pairs->payload_bytes);
}

// Reversed echo built in place: asks for a small buffer, then a larger one (the pool may hand
// out another buffer), and answers without a copy. A payload starting "FAIL" is refused after
// the buffer was taken (as the token fetch does when a record turns out bad): the error text
// goes through the copy path and the taken buffer must go back to the pool.
static int echo_rev(const rd_kv_meta *meta, const rd_kv_pairs *pairs, rd_server *srv, void *user) {
    int *calls = user;
    (*calls)++;
    size_t n = pairs->payload_bytes;
    if (!rd_server_reply_buffer(srv, meta, 1))
        return RD_ERR_NOMEM;
    unsigned char *out = rd_server_reply_buffer(srv, meta, n + 100000);
    if (!out)
        return RD_ERR_NOMEM;
    const unsigned char *in = pairs->payload;
    if (n >= 4 && memcmp(in, "FAIL", 4) == 0)
        return rd_server_respond(srv, meta, RD_ERR_CORRUPT, "refused after reserving", 23);
    for (size_t i = 0; i < n; i++)
        out[i] = in[n - 1 - i];
    int rc = rd_server_respond(srv, meta, RD_OK, out, n);
    // Answered: no second buffer, no second reply.
    if (rc == RD_OK && (rd_server_reply_buffer(srv, meta, 8) != NULL ||
                        rd_server_respond(srv, meta, RD_OK, NULL, 0) != RD_ERR_STATE))
        (*calls) += 1000;
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Evil side: raw requests.

typedef struct evil {
    MPI_Comm c;
    int ps;
    int errs;
    uint64_t next_id;
} evil;

static void send_raw(evil *e, const void *buf, size_t len) {
    MPI_Request r;
    RD_MPI_CHECK(MPI_Isend(buf, (int)len, MPI_BYTE, e->ps, RD_TAG_PS_REQUEST, e->c, &r));
    t_wait(&r);
}

// Receive one reply on `tag` (10 s limit); returns its status and copies the text.
static int get_reply(evil *e, int tag, rd_msg_header *h, char *text, size_t cap) {
    rd_backoff b;
    rd_backoff_reset(&b, 200);
    double t0 = MPI_Wtime();
    for (;;) {
        int flag = 0;
        MPI_Message mh;
        MPI_Status st;
        RD_MPI_CHECK(MPI_Improbe(e->ps, tag, e->c, &flag, &mh, &st));
        if (flag) {
            int n = 0;
            MPI_Get_count(&st, MPI_BYTE, &n);
            unsigned char *buf = rd_xmalloc((size_t)n + 1);
            RD_MPI_CHECK(MPI_Mrecv(buf, n, MPI_BYTE, &mh, MPI_STATUS_IGNORE));
            int rc = rd_msg_decode(buf, (size_t)n, h, NULL);
            T_CHECK(&e->errs, rc == RD_OK, "undecodable reply of %d bytes", n);
            T_CHECK(&e->errs, h->flags & RD_MSG_FLAG_REPLY, "reply flag missing");
            size_t tl = n > 64 ? (size_t)n - 64 : 0;
            if (tl >= cap)
                tl = cap - 1;
            memcpy(text, buf + 64, tl);
            text[tl] = '\0';
            rd_free(buf);
            return h->status;
        }
        if (MPI_Wtime() - t0 > 10.0) {
            T_CHECK(&e->errs, 0, "no reply on tag %d within 10 s", tag);
            return 1;
        }
        rd_backoff_wait(&b);
    }
}

// Send header h with a payload of len bytes (at most 64), and receive the reply on `tag`: its
// status, header and text.
static int call_raw(evil *e,
                    const rd_msg_header *h,
                    const char *payload,
                    size_t len,
                    int tag,
                    rd_msg_header *r,
                    char *text,
                    size_t cap) {
    unsigned char buf[128];
    RD_ASSERT(len <= sizeof buf - 64);
    rd_msg_encode(h, buf);
    memcpy(buf + 64, payload, len);
    send_raw(e, buf, 64 + len);
    return get_reply(e, tag, r, text, cap);
}

static rd_msg_header
hdr(evil *e, unsigned op, uint32_t table, uint64_t count, uint32_t dim, uint64_t payload) {
    rd_msg_header h;
    memset(&h, 0, sizeof h);
    h.magic = RD_MSG_MAGIC;
    h.version = RD_MSG_VERSION;
    h.op = (uint16_t)op;
    h.table = table;
    h.count = count;
    h.dim = dim;
    h.req_id = ++e->next_id;
    h.payload_bytes = payload;
    return h;
}

static int reply_tag_of(uint64_t id) {
    return RD_TAG_PS_REPLY_BASE + (int)(id & (RD_TAG_PS_REPLY_SLOTS - 1));
}

// Send header h + payload (len bytes actually sent after the header) and expect `want`.
static void expect(evil *e,
                   const char *what,
                   const rd_msg_header *h,
                   const void *payload,
                   size_t len,
                   int want,
                   const char *needle) {
    unsigned char *buf = rd_xcalloc(1, 64 + len);
    rd_msg_encode(h, buf);
    if (len)
        memcpy(buf + 64, payload, len);
    send_raw(e, buf, 64 + len);
    rd_free(buf);
    rd_msg_header r;
    char text[600];
    int st = get_reply(e, reply_tag_of(h->req_id), &r, text, sizeof text);
    T_CHECK(&e->errs, st == want, "%s: status %d (%s), expected %d: %s", what, st, rd_strerror(st),
            want, text);
    T_CHECK(&e->errs, r.req_id == h->req_id && r.op == h->op, "%s: reply for another request",
            what);
    if (needle)
        T_CHECK(&e->errs, strstr(text, needle) != NULL, "%s: text '%s' lacks '%s'", what, text,
                needle);
}

static void expect_bad(evil *e, const char *what, const void *buf, size_t len) {
    send_raw(e, buf, len);
    rd_msg_header r;
    char text[600];
    int st = get_reply(e, RD_TAG_PS_BADMSG, &r, text, sizeof text);
    T_CHECK(&e->errs, st == RD_ERR_PROTO, "%s: status %d: %s", what, st, text);
}

// A shared-memory PULL/PUSH of `count` keys at dim 8 with descriptor d, expecting `want`.
static void expect_shm(evil *e,
                       const char *what,
                       unsigned op,
                       uint64_t count,
                       const rd_msg_shm *d,
                       int want,
                       const char *needle) {
    rd_msg_header h = hdr(e, op, 0, count, 8, RD_MSG_SHM_DESC_BYTES);
    h.flags = RD_MSG_FLAG_SHM;
    unsigned char desc[RD_MSG_SHM_DESC_BYTES];
    rd_msg_shm_encode(d, desc);
    expect(e, what, &h, desc, sizeof desc, want, needle);
}

static void
expect_attach(evil *e, const char *what, const rd__shm_attach *a, int want, const char *needle) {
    unsigned char buf[RD_MSG_ATTACH_BYTES];
    rd__shm_attach_encode(a, buf);
    rd_msg_header h = hdr(e, RD_OP_ATTACH, 0, 0, 0, sizeof buf);
    expect(e, what, &h, buf, sizeof buf, want, needle);
}

static void evil_shm(evil *e) {
    const uint64_t R = 1u << 20;
    rd_msg_shm d = {1, 64, 16, 128};
    expect_shm(e, "shm PULL before ATTACH", RD_OP_PULL, 2, &d, RD_ERR_STATE, "attached no region");
    rd__shm_region reg;
    rd__shm_attach a;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd__shm_create(R, 0xfeedull, &reg, &a, &eb);
    T_CHECK(&e->errs, rc == RD_OK, "rd__shm_create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    {
        unsigned char buf[100] = {0};
        rd_msg_header h = hdr(e, RD_OP_ATTACH, 0, 0, 0, sizeof buf);
        expect(e, "ATTACH of 100 bytes", &h, buf, sizeof buf, RD_ERR_PROTO, "ATTACH needs");
    }
    rd__shm_attach x = a;
    snprintf(x.host, sizeof x.host, "elsewhere");
    expect_attach(e, "ATTACH from another node", &x, RD_ERR_UNSUPPORTED, "elsewhere");
    x = a;
    x.fd = 999999;
    expect_attach(e, "ATTACH of a missing fd", &x, RD_ERR_IO, "open /proc/");
    x = a;
    x.bytes = R * 2;
    expect_attach(e, "ATTACH with another size", &x, RD_ERR_PROTO, "region");
    x = a;
    x.id = 0xbadull;
    expect_attach(e, "ATTACH with another id", &x, RD_ERR_PROTO, "header differs");
    expect_attach(e, "ATTACH", &a, RD_OK, NULL);
    expect_attach(e, "second ATTACH", &a, RD_ERR_STATE, "already");

    uint64_t *k = (uint64_t *)(void *)(reg.base + 64);
    for (int i = 0; i < 8; i++)
        k[i] = (uint64_t)i + 1;
    d = (rd_msg_shm){0xbadull, 64, 16, 128};
    expect_shm(e, "shm PULL of another region", RD_OP_PULL, 2, &d, RD_ERR_STATE, "region");
    d = (rd_msg_shm){0xfeedull, R, 16, 128};
    expect_shm(e, "shm keys past the region", RD_OP_PULL, 2, &d, RD_ERR_RANGE, "request at");
    d = (rd_msg_shm){0xfeedull, UINT64_MAX - 63, 16, 128};
    expect_shm(e, "shm offset near 2^64", RD_OP_PULL, 2, &d, RD_ERR_RANGE, "request at");
    d = (rd_msg_shm){0xfeedull, R - 64, 2 * (8 + 32), 0};
    expect_shm(e, "shm PUSH straddling the end", RD_OP_PUSH, 2, &d, RD_ERR_RANGE, "request at");
    d = (rd_msg_shm){0xfeedull, 0, 16, 128};
    expect_shm(e, "shm keys in the reserved start", RD_OP_PULL, 2, &d, RD_ERR_RANGE, "first 64");
    d = (rd_msg_shm){0xfeedull, 72, 16, 128};
    expect_shm(e, "unaligned shm keys", RD_OP_PULL, 2, &d, RD_ERR_RANGE, "aligned");
    d = (rd_msg_shm){0xfeedull, 64, 24, 128};
    expect_shm(e, "shm keys of the wrong length", RD_OP_PULL, 2, &d, RD_ERR_PROTO, "needs 16");
    d = (rd_msg_shm){0xfeedull, 64, 16, 64};
    expect_shm(e, "shm reply over the keys", RD_OP_PULL, 2, &d, RD_ERR_PROTO, "overlaps");
    d = (rd_msg_shm){0xfeedull, 64, 16, R};
    expect_shm(e, "shm reply past the region", RD_OP_PULL, 2, &d, RD_ERR_RANGE, "reply at");
    d = (rd_msg_shm){0xfeedull, 64, 2 * (8 + 32), 4096};
    expect_shm(e, "shm PUSH with a reply range", RD_OP_PUSH, 2, &d, RD_ERR_PROTO, "reply offset");
    d = (rd_msg_shm){0xfeedull, 64, 8000, 16384};
    expect_shm(e, "shm PULL of too many keys", RD_OP_PULL, 1000, &d, RD_ERR_RANGE, "fit");
    {
        rd_msg_header h = hdr(e, RD_OP_PULL, 0, 2, 8, 24);
        h.flags = RD_MSG_FLAG_SHM;
        unsigned char desc[24] = {0};
        expect(e, "shm descriptor of 24 bytes", &h, desc, sizeof desc, RD_ERR_PROTO, "descriptor");
        h = hdr(e, RD_OP_CLOCK, 0, 0, 0, 0);
        h.flags = RD_MSG_FLAG_SHM;
        expect(e, "shm flag on CLOCK", &h, NULL, 0, RD_ERR_PROTO, "flags");
    }
    k[0] = 0;
    d = (rd_msg_shm){0xfeedull, 64, 16, 128};
    expect_shm(e, "key 0 in shared memory", RD_OP_PULL, 2, &d, RD_ERR_ARG, "key 0");
    k[0] = 1;
    // A valid one: the values of keys 1..8 land at reply_off, the reply has no data message.
    float *v = (float *)(void *)(reg.base + 4096);
    for (int i = 0; i < 64; i++)
        v[i] = NAN;
    d = (rd_msg_shm){0xfeedull, 64, 64, 4096};
    rd_msg_header h = hdr(e, RD_OP_PULL, 0, 8, 8, RD_MSG_SHM_DESC_BYTES);
    h.flags = RD_MSG_FLAG_SHM;
    unsigned char buf[64 + RD_MSG_SHM_DESC_BYTES];
    rd_msg_encode(&h, buf);
    rd_msg_shm_encode(&d, buf + 64);
    send_raw(e, buf, sizeof buf);
    rd_msg_header r;
    char text[600];
    int st = get_reply(e, reply_tag_of(h.req_id), &r, text, sizeof text);
    T_CHECK(&e->errs, st == RD_OK && (r.flags & RD_MSG_FLAG_SHM) && r.count == 8 && r.dim == 8,
            "valid shm PULL: status %d flags 0x%x count %llu: %s", st, (unsigned)r.flags,
            (unsigned long long)r.count, text);
    int finite = 0;
    for (int i = 0; i < 64; i++)
        finite += isfinite(v[i]) && v[i] != 0.0f;
    T_CHECK(&e->errs, finite == 64, "valid shm PULL: %d of 64 values written", finite);
    rd__shm_unmap(&reg); // the server keeps its own mapping until it ends
}

static int evil_run(const rd_comm *comm) {
    evil e = {comm->kv, comm->ps_world[0], 0, 1000};
    unsigned char junk[256];
    for (int i = 0; i < 256; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    expect_bad(&e, "10 garbage bytes", junk, 10);
    expect_bad(&e, "empty message", junk, 0);
    expect_bad(&e, "bad magic", junk, 64);

    rd_msg_header h = hdr(&e, RD_OP_STATS, RD_MSG_ALL_TABLES, 0, 0, 0);
    h.version = 9;
    expect(&e, "bad version", &h, NULL, 0, RD_ERR_VERSION, "version 9");
    h = hdr(&e, 9, 0, 0, 0, 0);
    expect(&e, "unknown op", &h, NULL, 0, RD_ERR_UNSUPPORTED, "unknown op 9");
    h = hdr(&e, ECHO_OP + 1, 0, 0, 0, 5);
    expect(&e, "unregistered user op", &h, "hello", 5, RD_ERR_UNSUPPORTED, "no handler");
    // The registered one answers through rd_server_respond.
    {
        rd_msg_header r;
        char text[64];
        h = hdr(&e, ECHO_OP, 0, 0, 0, 5);
        int st = call_raw(&e, &h, "hello", 5, reply_tag_of(h.req_id), &r, text, sizeof text);
        T_CHECK(&e.errs, st == RD_OK && strcmp(text, "hello") == 0, "echo: %d '%s'", st, text);
        // Refused after the handler took a reply buffer, twice: the error arrives, and the in-place
        // echo below still gets a buffer.
        for (int k = 0; k < 2; k++) {
            h = hdr(&e, REV_OP, 0, 0, 0, 8);
            st = call_raw(&e, &h, "FAILFAIL", 8, reply_tag_of(h.req_id), &r, text, sizeof text);
            T_CHECK(&e.errs, st == RD_ERR_CORRUPT && strcmp(text, "refused after reserving") == 0,
                    "refusal after reserving: %d '%s'", st, text);
        }
        // The in-place reply, on a reserved slot (as the token client would use): user ops may.
        h = hdr(&e, REV_OP, 0, 0, 0, 5);
        h.req_id = (h.req_id << RD_MSG_SLOT_BITS) | (RD_MSG_SLOTS - 1);
        st = call_raw(&e, &h, "hello", 5, RD_TAG_PS_REPLY_TOKEN_LAST, &r, text, sizeof text);
        T_CHECK(&e.errs, st == RD_OK && strcmp(text, "olleh") == 0 && r.req_id == h.req_id,
                "in-place echo: %d '%s'", st, text);
    }
    uint64_t keys[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    // A built-in op must not name a reserved reply slot: the answer goes to BADMSG, and nothing
    // arrives on the reserved tag (checked with "nothing else is pending" below).
    for (unsigned slot = RD_MSG_SLOT_KV_END; slot < RD_MSG_SLOTS; slot += 85) {
        h = hdr(&e, RD_OP_PULL, 0, 2, 8, 16);
        h.req_id = (h.req_id << RD_MSG_SLOT_BITS) | slot;
        unsigned char buf[64 + 16];
        rd_msg_encode(&h, buf);
        memcpy(buf + 64, keys, 16);
        send_raw(&e, buf, sizeof buf);
        rd_msg_header r;
        char text[600];
        int st = get_reply(&e, RD_TAG_PS_BADMSG, &r, text, sizeof text);
        T_CHECK(&e.errs, st == RD_ERR_PROTO && strstr(text, "reserved") && r.req_id == h.req_id,
                "PULL on reserved slot %u: status %d: %s", slot, st, text);
    }
    h = hdr(&e, RD_OP_PULL, 77, 2, 8, 16);
    expect(&e, "unknown table", &h, keys, 16, RD_ERR_NOTFOUND, "unknown table 77");
    h = hdr(&e, RD_OP_PULL, 0, 1000000000000ull, 8, 16);
    expect(&e, "huge count", &h, keys, 16, RD_ERR_PROTO, NULL);
    h = hdr(&e, RD_OP_PUSH, 0, 10, 8, 5 * (8 + 32));
    unsigned char push5[5 * 40] = {0};
    expect(&e, "short payload", &h, push5, sizeof push5, RD_ERR_PROTO, NULL);
    h = hdr(&e, RD_OP_PUSH, 0, UINT64_MAX / 8, 8, 40);
    expect(&e, "overflowing count", &h, push5, 40, RD_ERR_PROTO, NULL);
    {
        // 8000 payload bytes > ps.max_msg_bytes (4096): drained, answered.
        size_t n = 1000;
        uint64_t *big = rd_xcalloc(n, 8);
        for (size_t i = 0; i < n; i++)
            big[i] = i + 1;
        h = hdr(&e, RD_OP_PULL, 0, n, 8, n * 8);
        expect(&e, "oversized message", &h, big, n * 8, RD_ERR_RANGE, "max_msg_bytes");
        rd_free(big);
    }
    h = hdr(&e, RD_OP_PULL, 0, 2, 8, 16);
    expect(&e, "payload size mismatch", &h, keys, 24, RD_ERR_PROTO, "24 were received");
    h = hdr(&e, RD_OP_PULL, 0, 2, 4, 16);
    expect(&e, "wrong dim", &h, keys, 16, RD_ERR_PROTO, "dim 4");
    uint64_t zero[2] = {0, 5};
    h = hdr(&e, RD_OP_PULL, 0, 2, 8, 16);
    expect(&e, "key 0", &h, zero, 16, RD_ERR_ARG, "key 0");
    uint64_t unsorted[2] = {9, 5};
    h = hdr(&e, RD_OP_PULL, 0, 2, 8, 16);
    expect(&e, "unsorted keys", &h, unsorted, 16, RD_ERR_ARG, "increasing");
    h = hdr(&e, RD_OP_CLOCK, 0, 0, 0, 0);
    h.step = 1000000;
    expect(&e, "far-future step", &h, NULL, 0, RD_ERR_STATE, "step 1000000");
    h = hdr(&e, RD_OP_STATS, 0, 0, 0, 0);
    h.flags = RD_MSG_FLAG_REPLY;
    expect(&e, "reply flag in a request", &h, NULL, 0, RD_ERR_PROTO, NULL);
    h = hdr(&e, RD_OP_SAVE, 0, 0, 0, 10);
    expect(&e, "malformed SAVE", &h, junk, 10, RD_ERR_PROTO, NULL);
    {
        rd__ckpt_req req;
        memset(&req, 0, sizeof req);
        snprintf(req.dir, sizeof req.dir, "/nonexistent/rd_ckpt_%d", comm->rank);
        req.n_tables = 1;
        unsigned char buf[512];
        size_t n = rd__ckpt_req_bytes(&req);
        rd__ckpt_req_encode(&req, buf);
        h = hdr(&e, RD_OP_LOAD, 0, 0, 0, n);
        expect(&e, "LOAD of a missing checkpoint", &h, buf, n, RD_ERR_NOTFOUND, "does not exist");
    }
    h = hdr(&e, RD_OP_STATS, 5, 0, 0, 0);
    expect(&e, "STATS of an unknown table", &h, NULL, 0, RD_ERR_NOTFOUND, NULL);
    evil_shm(&e);

    // Random and mutated messages: each gets exactly one reply.
    rd_rng r;
    rd_rng_seed(&r, 2024);
    for (int i = 0; i < 300; i++) {
        unsigned char buf[256];
        size_t len = (size_t)rd_rng_below(&r, 200);
        int mutated = (int)rd_rng_below(&r, 2);
        uint64_t id = 0;
        if (mutated) {
            rd_msg_header m = hdr(&e, RD_OP_STATS, RD_MSG_ALL_TABLES, 0, 0, 0);
            id = m.req_id;
            rd_msg_encode(&m, buf);
            if (len < 64)
                len = 64;
            for (size_t j = 64; j < len; j++)
                buf[j] = (unsigned char)rd_rng_u64(&r);
            // Mutate fields after magic/version/op, except req_id (bytes 32..39).
            int flips = 1 + (int)rd_rng_below(&r, 4);
            for (int f = 0; f < flips; f++) {
                size_t at = 8 + (size_t)rd_rng_below(&r, 56);
                if (at >= 32 && at < 40)
                    at += 8;
                buf[at] ^= (unsigned char)(1u + rd_rng_below(&r, 255));
            }
        } else {
            for (size_t j = 0; j < len; j++)
                buf[j] = (unsigned char)rd_rng_u64(&r);
        }
        send_raw(&e, buf, len);
        rd_msg_header rh;
        char text[600];
        get_reply(&e, mutated ? reply_tag_of(id) : RD_TAG_PS_BADMSG, &rh, text, sizeof text);
    }
    // Nothing else is pending.
    t_sleep_ms(50);
    int flag = 1;
    MPI_Status st;
    RD_MPI_CHECK(MPI_Iprobe(e.ps, MPI_ANY_TAG, e.c, &flag, &st));
    T_CHECK(&e.errs, !flag, "an extra reply (tag %d) arrived", st.MPI_TAG);

    // SHUTDOWN twice, then a request after it. The SHUTDOWNs follow a SAVE (fsync'ed LMDB
    // writes: milliseconds), so both arrive while the server is busy and are received in one
    // poll: the second must be refused, not counted as another worker's SHUTDOWN (with two
    // workers in all, the server would stop while the good worker still trains).
    {
        char base[] = "/tmp/rd_badmsg_XXXXXX";
        RD_ASSERT(mkdtemp(base) != NULL);
        rd__ckpt_req req;
        memset(&req, 0, sizeof req);
        snprintf(req.dir, sizeof req.dir, "%s/ck", base);
        req.n_tables = 1;
        unsigned char buf[512];
        size_t n = rd__ckpt_req_bytes(&req);
        rd_msg_header hs = hdr(&e, RD_OP_SAVE, 0, 0, 0, n);
        rd_msg_encode(&hs, buf);
        rd__ckpt_req_encode(&req, buf + 64);
        rd_msg_header h1 = hdr(&e, RD_OP_SHUTDOWN, 0, 0, 0, 0);
        rd_msg_header h2 = hdr(&e, RD_OP_SHUTDOWN, 0, 0, 0, 0);
        unsigned char b1[64], b2[64];
        rd_msg_encode(&h1, b1);
        rd_msg_encode(&h2, b2);
        send_raw(&e, buf, 64 + n);
        send_raw(&e, b1, sizeof b1);
        send_raw(&e, b2, sizeof b2);
        rd_msg_header rh;
        char text[600];
        int rs = get_reply(&e, reply_tag_of(hs.req_id), &rh, text, sizeof text);
        T_CHECK(&e.errs, rs == RD_OK, "SAVE before the SHUTDOWNs: %d: %s", rs, text);
        rs = get_reply(&e, reply_tag_of(h1.req_id), &rh, text, sizeof text);
        T_CHECK(&e.errs, rs == RD_OK, "shutdown: %d: %s", rs, text);
        rs = get_reply(&e, reply_tag_of(h2.req_id), &rh, text, sizeof text);
        T_CHECK(&e.errs, rs == RD_ERR_STATE && strstr(text, "after SHUTDOWN"),
                "second SHUTDOWN: status %d (%s): %s", rs, rd_strerror(rs), text);
        T_CHECK(&e.errs, t_rmtree(base) == 0, "%s stays", base);
    }
    h = hdr(&e, RD_OP_STATS, RD_MSG_ALL_TABLES, 0, 0, 0);
    expect(&e, "request after SHUTDOWN", &h, NULL, 0, RD_ERR_STATE, "after SHUTDOWN");
    return e.errs;
}

// ---------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    // t_mpi_start logs at WARN: the rejections' WARN lines stay visible (part of the contract).
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 3)
        return t_mpi_refuse(rank, 77, "ps_bad_messages needs 3 ranks");
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int errs = 0;
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    make_cfg(cfg);
    t_zipf z;
    t_zipf_init(&z, 200, 1.1);
    rd_comm *comm = NULL;
    int rc = rd_comm_create(MPI_COMM_WORLD, cfg, &comm, &eb);
    T_CHECK(&errs, rc == RD_OK, "rd_comm_create: %s", eb.msg);
    if (rc == RD_OK && comm->role_kind == RD_ROLE_PS) {
        rd_server *srv = NULL;
        int calls = 0;
        T_CHECK(&errs, rd_server_create(comm, cfg, &srv, &eb) == RD_OK, "%s", eb.msg);
        int rev_calls = 0;
        T_CHECK(&errs, rd_server_register(srv, ECHO_OP, echo, &calls) == RD_OK, "register");
        T_CHECK(&errs, rd_server_register(srv, REV_OP, echo_rev, &rev_calls) == RD_OK, "register");
        T_CHECK(&errs, rd_server_register(srv, ECHO_OP, echo, &calls) == RD_ERR_EXISTS,
                "double register");
        T_CHECK(&errs, rd_server_register(srv, 7, echo, &calls) == RD_ERR_RANGE,
                "register of a built-in op");
        T_CHECK(&errs, rd_server_run(srv) == RD_OK, "run");
        T_CHECK(&errs, calls == 1, "echo handler called %d times", calls);
        T_CHECK(&errs, rev_calls == 3, "in-place echo handler: %d (>= 1000: answered twice)",
                rev_calls);
        rd_server_destroy(srv);
    } else if (rc == RD_OK && comm->job_index == 0) {
        rd_kv *kv = NULL;
        T_CHECK(&errs, rd_kv_create(comm, cfg, &kv, &eb) == RD_OK, "%s", eb.msg);
        t_train tr = {0, STEPS, DRAWS, &z, 0, 0};
        errs += t_train_loop(kv, cfg, 0, &tr);
        // Same values as a single-process reference with one worker.
        rd_table *ref[RD_MAX_TABLES];
        t_make_tables(cfg, ref);
        uint32_t crc = 0;
        t_reference(cfg, ref, 1, &z, DRAWS, 0, STEPS, &crc);
        T_CHECK(&errs, crc == tr.pulled_crc, "training was disturbed by the bad messages");
        // Timestamps wrap past INT_MAX to 0: a request issued just before the wrap is still
        // waited on (not "never issued"), and those after it get valid, non-negative slots.
        {
            rd_kv_set_read(kv, 1);
            rd__kv_set_next_ts(kv, INT_MAX - 2);
            uint64_t key = 1;
            float v0[8], v1[8];
            int ts_prev = -1;
            for (int i = 0; i < 6 && errs == 0; i++) {
                int ts = -1;
                rc = rd_kv_pull(kv, 0, &key, 1, i % 2 ? v1 : v0, &ts);
                T_CHECK(&errs, rc == RD_OK && ts >= 0, "pull %d at the wrap: ts %d, %s", i, ts,
                        rd_kv_errmsg(kv));
                if (ts_prev >= 0) {
                    rc = rd_kv_wait(kv, ts_prev);
                    T_CHECK(&errs, rc == RD_OK, "wait on ts %d at the wrap: %s", ts_prev,
                            rd_kv_errmsg(kv));
                }
                ts_prev = ts;
            }
            if (ts_prev >= 0)
                T_CHECK(&errs, rd_kv_wait(kv, ts_prev) == RD_OK, "last wait: %s", rd_kv_errmsg(kv));
            T_CHECK(&errs, memcmp(v0, v1, sizeof v0) == 0, "read pulls differ");
            rd_kv_set_read(kv, 0);
        }
        for (int t = 0; t < cfg->ps.n_tables; t++) {
            rd_table_stats st;
            T_CHECK(&errs, rd_kv_stats(kv, t, &st, NULL) == RD_OK, "stats");
            T_CHECK(&errs, st.rows == rd_table_size(ref[t]), "table %d rows %llu vs %zu", t,
                    (unsigned long long)st.rows, rd_table_size(ref[t]));
            rd_table_destroy(ref[t]);
        }
        // Wait until the evil worker is done (the server must still be up for its checks).
        int go = 0;
        MPI_Request r;
        RD_MPI_CHECK(MPI_Irecv(&go, 1, MPI_INT, 2, 5, MPI_COMM_WORLD, &r));
        t_wait(&r);
        T_CHECK(&errs, rd_kv_shutdown(kv) == RD_OK, "shutdown: %s", rd_kv_errmsg(kv));
        rd_kv_destroy(kv);
    } else if (rc == RD_OK) {
        errs += evil_run(comm);
        int go = 1;
        MPI_Request r;
        RD_MPI_CHECK(MPI_Isend(&go, 1, MPI_INT, 1, 5, MPI_COMM_WORLD, &r));
        t_wait(&r);
    }
    rd_comm_destroy(comm);
    t_zipf_free(&z);
    rd_free(cfg);
    rc = t_finish("ps_bad_messages", errs);
    rd_mpi_finalize(rc);
    return rc;
}
