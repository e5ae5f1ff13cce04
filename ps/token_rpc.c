// token_rpc.c — the MPI path of the token store: PS-side handlers of RD_TOKEN_OP_FETCH and
// RD_TOKEN_OP_APPEND registered on an rd_server, and the worker-side client that groups a batch
// of requests by owning PS rank and sends them without blocking: one message per rank, or
// several when one rank's reply would exceed max_reply_bytes (or its request max_msg_bytes).
//
// Protocol (rd/msg.h headers on rd_comm.kv, tag RD_TAG_PS_REQUEST; replies on
// RD_TAG_PS_REPLY_BASE + (req_id & 4095)):
//   FETCH   request payload: u32 "RDTQ" | u32 n | u32 L | u32 dim | u32 fields | u32 S |
//                            users u64 (n) | t i64 (n) [| before ids u64 (n)]
//           (fields bit RD__TOKEN_REQ_BEFORE_ID: the ids follow, rd_token_store_fetch_batch's
//           before_id)
//           (S: the side values per record the client expects, 0 without RD_TOKEN_FIELD_SIDE)
//           reply payload:   the packed fetch reply of rd/tokens.h (n, L, dim, S, fields)
//   APPEND  request payload: the packed append of rd/tokens.h;  reply: empty
//   MAP     request payload: u32 "RDTM" | u32 mode (RD_TOKEN_HUGE_*);
//           reply payload:   u32 "RDTM" | u32 shards | u32 reread | u32 note | u64 used_bytes |
//                            i64 resident_kb | i64 huge_kb | f64 seconds   (rd_token_map_stats)
//   errors: status < 0 and the error text as payload (as every PS reply)
// The client uses the reply slots 4095 - k (k = its in-flight slot), the top of the range, so it
// can share rd_comm.kv with an rd_kv client (whose slots fill from 0 upwards). Several messages
// to one PS rank on one tag are matched in order (MPI non-overtaking): a PS serves one sender's
// requests in order, so the k-th reply on a tag answers the k-th request.
//
// Back-pressure of a split fetch: at most FETCH_WINDOW messages of one fetch to one PS rank are
// sent and unanswered at a time; the next one goes out when a reply is in. A PS rank builds each
// reply in a pooled send buffer that lives until the client has received it, so without the
// window a fetch of k x 1 GiB to one rank would have the PS hold k GiB at once. The rest of a
// split fetch is therefore sent from rd_token_client_wait (a fetch that fits one message per
// rank, the usual case, is sent whole by fetch_start as before).
//
// Every reply is received CONTIGUOUSLY (header + payload into one staging buffer) and then
// copied to the caller's arrays. Receiving straight into the caller's arrays with a struct
// datatype looks cheaper but is not: with MPICH ch4:ucx a non-contiguous receive goes through
// UCX's generic pack/unpack path instead of the zero-copy (CMA) rendezvous, and measured 4x
// slower for a 19 MB reply than a contiguous receive plus one memcpy. Only the optional arrays
// the caller asked for travel (RD_TOKEN_FIELD_*).
//
// Waits poll with MPI_Test / MPI_Improbe and back off (rd_backoff), because a blocked MPICH call
// spins a whole core (research/infra.md).
#include "rd/tokens.h"

#include "rd/alloc.h"
#include "rd/comm.h"
#include "rd/msg.h"
#include "rd/server.h"
#include "rd/traffic.h"

#include "ps_internal.h"
#include "token_store_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_REPLY_BYTES (UINT64_C(1) << 30) // largest fetch reply per message (1 GiB)
#define SMALL_REPLY     4096                // error texts and empty replies
#define BOUNCE_BYTES    4096
#define FETCH_WINDOW    RD_TOKEN_CLIENT_FETCH_WINDOW // back-pressure of a split fetch

static size_t errtext_len(const char *msg) {
    size_t n = strlen(msg);
    return n > RD_MSG_ERRTEXT_MAX ? RD_MSG_ERRTEXT_MAX : n;
}

// ---------------------------------------------------------------------------------------------
// PS side: the service

struct rd_token_service {
    rd_server *srv;
    rd_token_store *store;
    unsigned char *reply; // packed fetch reply (64-byte aligned, grows to the largest)
    size_t reply_cap;
    uint64_t *users; // (req_cap) request copies (payloads need not be aligned)
    int64_t *ts;
    uint64_t *ids; // before ids, when a request carries them
    size_t req_cap;
    unsigned char *copy; // aligned copy of a misaligned append payload
    size_t copy_cap;
};

static int grow_aligned(unsigned char **buf, size_t *cap, size_t need) {
    if (*cap >= need)
        return RD_OK;
    unsigned char *b = rd_aligned_alloc(need);
    if (!b)
        return RD_ERR_NOMEM;
    rd_aligned_free(*buf);
    *buf = b;
    *cap = need;
    return RD_OK;
}

static int reply_error(rd_server *srv, const rd_kv_meta *meta, int rc, const rd_errbuf *eb) {
    const char *msg = eb->msg[0] ? eb->msg : rd_strerror(rc);
    return rd_server_respond(srv, meta, rc, msg, errtext_len(msg));
}

static int on_fetch(const rd_kv_meta *meta, const rd_kv_pairs *pairs, rd_server *srv, void *user) {
    rd_token_service *svc = user;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    const unsigned char *p = pairs->payload;
    size_t len = pairs->payload_bytes;
    rd_token_store_info info;
    rd_token_store_info_get(svc->store, &info);
    int rc = RD_OK;
    uint32_t n = 0, L = 0, dim = 0, fields = 0;
    int with_ids = 0;
    if (len < RD__TOKEN_FETCH_HEADER || !p) {
        rc = rd_err_set(&eb, RD_ERR_PROTO, "token fetch request of %zu bytes (header is %d)", len,
                        RD__TOKEN_FETCH_HEADER);
    } else {
        n = rd__le32_get(p + 4);
        L = rd__le32_get(p + 8);
        dim = rd__le32_get(p + 12);
        fields = rd__le32_get(p + 16);
        with_ids = (fields & RD__TOKEN_REQ_BEFORE_ID) != 0;
        fields &= ~RD__TOKEN_REQ_BEFORE_ID;
        if (rd__le32_get(p) != RD__TOKEN_REQ_MAGIC)
            rc = rd_err_set(&eb, RD_ERR_PROTO, "token fetch request: bad magic %08x",
                            rd__le32_get(p));
        else if (n < 1 || n > RD__TOKEN_MAX_REQUESTS)
            rc = rd_err_set(&eb, RD_ERR_PROTO, "token fetch request: n = %u out of range 1..%u", n,
                            RD__TOKEN_MAX_REQUESTS);
        else if (len != RD__TOKEN_FETCH_HEADER + (with_ids ? 24 : 16) * (size_t)n)
            rc = rd_err_set(&eb, RD_ERR_PROTO,
                            "token fetch request of %zu bytes, but n = %u needs %zu", len, n,
                            RD__TOKEN_FETCH_HEADER + (with_ids ? 24 : 16) * (size_t)n);
        else if ((fields & ~RD_TOKEN_FIELDS_ALL) != 0)
            rc = rd_err_set(&eb, RD_ERR_PROTO, "token fetch request: unknown fields 0x%x", fields);
        else if (rd__le32_get(p + 20) != ((fields & RD_TOKEN_FIELD_SIDE) ? info.n_side : 0))
            rc = rd_err_set(&eb, RD_ERR_PROTO,
                            "token fetch request expects %u side values per token, the store has "
                            "%u",
                            rd__le32_get(p + 20), info.n_side);
        else if (dim != info.dim)
            rc = rd_err_set(&eb, RD_ERR_PROTO, "token fetch request for dim %u, the store has %u",
                            dim, info.dim);
        else if (L < 1 || L > RD_TOKEN_MAX_L)
            rc = rd_err_set(&eb, RD_ERR_PROTO, "token fetch request: L = %u out of range 1..%d", L,
                            RD_TOKEN_MAX_L);
    }
    size_t bytes = 0;
    if (rc == RD_OK) {
        bytes = rd_token_fetch_reply_bytes(n, L, dim, info.n_side, fields);
        if (bytes == 0 || bytes > MAX_REPLY_BYTES)
            rc = rd_err_set(&eb, RD_ERR_RANGE,
                            "token fetch of %u x %u tokens would need a reply over %" PRIu64
                            " bytes: split it",
                            n, L, MAX_REPLY_BYTES);
    }
    if (rc == RD_OK && svc->req_cap < n) {
        uint64_t *u = rd_realloc(svc->users, n * sizeof *u);
        if (u)
            svc->users = u;
        int64_t *t = u ? rd_realloc(svc->ts, n * sizeof *t) : NULL;
        if (t)
            svc->ts = t;
        uint64_t *ids = t ? rd_realloc(svc->ids, n * sizeof *ids) : NULL;
        if (ids) {
            svc->ids = ids;
            svc->req_cap = n;
        } else {
            rc = rd_err_set(&eb, RD_ERR_NOMEM, "token fetch: no memory for %u requests", n);
        }
    }
    // The reply is built in place in the server's send buffer and sent without a copy (a fetch
    // of 256 x 256 tokens of d = 64 is a 17 MB reply); the handler's own buffer is the fallback
    // when the pool has no memory.
    unsigned char *out = NULL;
    size_t out_cap = 0;
    if (rc == RD_OK) {
        out = rd_server_reply_buffer(srv, meta, bytes);
        out_cap = bytes;
        if (!out) {
            if (grow_aligned(&svc->reply, &svc->reply_cap, bytes) != RD_OK)
                rc = rd_err_set(&eb, RD_ERR_NOMEM, "token fetch: no memory for a %zu-byte reply",
                                bytes);
            out = svc->reply;
            out_cap = svc->reply_cap;
        }
    }
    if (rc == RD_OK) {
        memcpy(svc->users, p + RD__TOKEN_FETCH_HEADER, 8 * (size_t)n);
        memcpy(svc->ts, p + RD__TOKEN_FETCH_HEADER + 8 * (size_t)n, 8 * (size_t)n);
        if (with_ids)
            memcpy(svc->ids, p + RD__TOKEN_FETCH_HEADER + 16 * (size_t)n, 8 * (size_t)n);
        rc = rd_token_shard_fetch_batch(svc->store, n, svc->users, svc->ts,
                                        with_ids ? svc->ids : NULL, L, fields, out, out_cap, &eb);
    }
    if (rc != RD_OK)
        return reply_error(srv, meta, rc, &eb);
    return rd_server_respond(srv, meta, RD_OK, out, bytes);
}

static int on_append(const rd_kv_meta *meta, const rd_kv_pairs *pairs, rd_server *srv, void *user) {
    rd_token_service *svc = user;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    const void *p = pairs->payload;
    size_t len = pairs->payload_bytes;
    int rc = RD_OK;
    if (p && ((uintptr_t)p & 7u) != 0) {
        // The packed arrays are read in place: give them an aligned home first.
        if (grow_aligned(&svc->copy, &svc->copy_cap, len) != RD_OK)
            rc = rd_err_set(&eb, RD_ERR_NOMEM, "token append: no memory for %zu bytes", len);
        else
            p = memcpy(svc->copy, p, len);
    }
    if (rc == RD_OK)
        rc = rd_token_shard_append_packed(svc->store, p, len, &eb);
    if (rc != RD_OK)
        return reply_error(srv, meta, rc, &eb);
    return rd_server_respond(srv, meta, RD_OK, NULL, 0);
}

// The packed map stats (MAP reply) and request.
#define MAP_MAGIC       0x4d544452u // "RDTM"
#define MAP_REQ_BYTES   8
#define MAP_REPLY_BYTES 48

static void map_stats_pack(const rd_token_map_stats *st, unsigned char *p) {
    uint64_t sec;
    memcpy(&sec, &st->seconds, 8);
    rd__le32_put(p, MAP_MAGIC);
    rd__le32_put(p + 4, st->shards);
    rd__le32_put(p + 8, st->reread);
    rd__le32_put(p + 12, st->note);
    rd__le64_put(p + 16, st->used_bytes);
    rd__le64_put(p + 24, (uint64_t)st->resident_kb);
    rd__le64_put(p + 32, (uint64_t)st->huge_kb);
    rd__le64_put(p + 40, sec);
}

static int
map_stats_unpack(const unsigned char *p, size_t len, rd_token_map_stats *st, rd_errbuf *eb) {
    if (len != MAP_REPLY_BYTES || rd__le32_get(p) != MAP_MAGIC)
        return rd_err_set(eb, RD_ERR_PROTO, "token map reply of %zu bytes (expected %d, \"RDTM\")",
                          len, MAP_REPLY_BYTES);
    memset(st, 0, sizeof *st);
    st->shards = rd__le32_get(p + 4);
    st->reread = rd__le32_get(p + 8);
    st->note = rd__le32_get(p + 12);
    st->used_bytes = rd__le64_get(p + 16);
    st->resident_kb = (int64_t)rd__le64_get(p + 24);
    st->huge_kb = (int64_t)rd__le64_get(p + 32);
    uint64_t sec = rd__le64_get(p + 40);
    memcpy(&st->seconds, &sec, 8);
    if (st->reread > st->shards || st->note >= RD_TOKEN_HUGE_NOTE_COUNT || !(st->seconds >= 0) ||
        st->resident_kb < -1 || st->huge_kb < -1)
        return rd_err_set(eb, RD_ERR_PROTO, "token map reply with values out of range");
    return RD_OK;
}

static int on_map(const rd_kv_meta *meta, const rd_kv_pairs *pairs, rd_server *srv, void *user) {
    rd_token_service *svc = user;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    const unsigned char *p = pairs->payload;
    int rc = RD_OK;
    uint32_t mode = 0;
    if (!p || pairs->payload_bytes != MAP_REQ_BYTES || rd__le32_get(p) != MAP_MAGIC)
        rc =
            rd_err_set(&eb, RD_ERR_PROTO, "token map: request of %zu bytes (expected %d, \"RDTM\")",
                       pairs->payload_bytes, MAP_REQ_BYTES);
    else if ((mode = rd__le32_get(p + 4)) != RD_TOKEN_HUGE_OFF && mode != RD_TOKEN_HUGE_AUTO)
        rc = rd_err_set(&eb, RD_ERR_PROTO, "token map: unknown mode %u", mode);
    rd_token_map_stats st;
    if (rc == RD_OK)
        rc = rd_token_store_map_huge(svc->store, (int)mode, &st, &eb);
    if (rc != RD_OK)
        return reply_error(srv, meta, rc, &eb);
    unsigned char out[MAP_REPLY_BYTES];
    map_stats_pack(&st, out);
    return rd_server_respond(srv, meta, RD_OK, out, sizeof out);
}

// Sum the stats of one more PS rank into a.
static void map_stats_add(rd_token_map_stats *a, const rd_token_map_stats *b) {
    a->shards += b->shards;
    a->reread += b->reread;
    a->used_bytes += b->used_bytes;
    if (a->note == RD_TOKEN_HUGE_REREAD)
        a->note = b->note;
    if (b->resident_kb >= 0)
        a->resident_kb = (a->resident_kb < 0 ? 0 : a->resident_kb) + b->resident_kb;
    if (b->huge_kb >= 0)
        a->huge_kb = (a->huge_kb < 0 ? 0 : a->huge_kb) + b->huge_kb;
    if (b->seconds > a->seconds)
        a->seconds = b->seconds;
}

// Before a checkpoint of this PS rank: the tokens appended so far are durable (rd/server.h).
static int on_save(void *user, rd_errbuf *eb) {
    rd_token_service *svc = user;
    return rd_token_store_sync(svc->store, eb);
}

int rd_token_service_create(rd_server *srv,
                            rd_token_store *store,
                            rd_token_service **out,
                            rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, srv != NULL);
    RD_ARG_CHECK(eb, store != NULL);
    rd_token_service *svc = rd_calloc(1, sizeof *svc);
    if (!svc)
        return rd_err_set(eb, RD_ERR_NOMEM, "token service: out of memory");
    svc->srv = srv;
    svc->store = store;
    int rc = rd_server_on_save(srv, on_save, svc);
    if (rc != RD_OK) {
        rd_free(svc);
        return rd_err_set(eb, rc, "token service: cannot hook the server's checkpoints: %s",
                          rd_strerror(rc));
    }
    rc = rd_server_register(srv, RD_TOKEN_OP_FETCH, on_fetch, svc);
    if (rc != RD_OK) {
        rd_free(svc);
        return rd_err_set(eb, rc, "token service: cannot register op %d on the server: %s",
                          RD_TOKEN_OP_FETCH, rd_strerror(rc));
    }
    static const unsigned more_ops[2] = {RD_TOKEN_OP_APPEND, RD_TOKEN_OP_MAP};
    const rd_server_handler more_fns[2] = {on_append, on_map};
    for (int k = 0; k < 2; k++) {
        rc = rd_server_register(srv, more_ops[k], more_fns[k], svc);
        if (rc != RD_OK) {
            // FETCH stays registered (the server cannot unregister): hand svc out so that it
            // lives as long as the server, as for a success.
            *out = svc;
            return rd_err_set(eb, rc, "token service: cannot register op %u on the server: %s",
                              more_ops[k], rd_strerror(rc));
        }
    }
    *out = svc;
    return RD_OK;
}

void rd_token_service_destroy(rd_token_service *svc) {
    if (!svc)
        return;
    rd_aligned_free(svc->reply);
    rd_aligned_free(svc->copy);
    rd_free(svc->users);
    rd_free(svc->ts);
    rd_free(svc->ids);
    rd_free(svc);
}

// ---------------------------------------------------------------------------------------------
// Worker side: the client

enum { WHERE_STAGE = 1, WHERE_SMALL = 2, WHERE_DRAIN = 3 };

typedef struct tc_msg {
    int ps;       // PS index (world rank comm->ps_world[ps])
    size_t n;     // requests (fetch) or records (append) in this message
    size_t first; // fetch: offset of its requests in op->pos
    unsigned op;  // RD_TOKEN_OP_*
    uint64_t req_id;
    unsigned char *req; // 64-byte header + payload (grows)
    size_t req_cap, req_bytes;
    unsigned char *stage; // fetch reply: 64-byte header + payload (64-aligned, grows)
    size_t stage_cap;
    size_t expect;                                          // expected success payload bytes
    unsigned char hdr_in[RD_MSG_HEADER_BYTES];              // drained replies: their header
    unsigned char small[RD_MSG_HEADER_BYTES + SMALL_REPLY]; // error texts, empty replies
    MPI_Request sreq, rreq;
    int sent; // MPI_Isend posted (a split fetch sends its later messages from the wait)
    int send_done, recv_posted, recv_done, finished;
    int where;
    MPI_Count reply_len;
} tc_msg;

typedef struct tc_op {
    int active;
    int slot; // 0..MAX_INFLIGHT-1; reply tag slot = 4095 - slot
    size_t n, L;
    unsigned fields; // RD_TOKEN_FIELD_* asked for
    int discard;     // destroy: complete the messages but write nothing to `out`
    rd_token_fetch_out out;
    tc_msg *msgs; // (cap_msgs); the messages of one PS rank are consecutive, in sending order
    int n_msgs, cap_msgs;
    size_t *pos; // (n) caller positions grouped by message
    size_t pos_cap;
    int status;
    char msg[512];
    rd_token_map_stats map; // RD_TOKEN_OP_MAP: the replies summed
} tc_op;

struct rd_token_client {
    const rd_comm *comm;
    MPI_Comm c;
    int P;
    rd_token_client_opts o;
    tc_op ops[RD_TOKEN_CLIENT_MAX_INFLIGHT + 1]; // the last one is reserved for appends
    uint64_t seq;
    int *cnt; // (P) scratch
    uint64_t bytes_sent, bytes_recv, messages;
    rd_traffic traffic; // token_fetch / token_append, both directions
    unsigned char bounce[BOUNCE_BYTES];
};

// Accounting channel of a token op.
static int tc_chan(unsigned op) {
    return op == RD_TOKEN_OP_APPEND ? RD_CHAN_TOKEN_APPEND : RD_CHAN_TOKEN_FETCH;
}

static void op_fail(tc_op *op, int rc, const char *fmt, ...) RD_PRINTF(3, 4);
static void op_fail(tc_op *op, int rc, const char *fmt, ...) {
    if (op->status != RD_OK)
        return; // keep the first error
    op->status = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->msg, sizeof op->msg, fmt, ap);
    va_end(ap);
}

int rd_token_client_create(const rd_comm *comm,
                           const rd_token_client_opts *o,
                           rd_token_client **out,
                           rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, comm != NULL);
    RD_ARG_CHECK(eb, o != NULL);
    if (o->n_shards < 1 || o->n_shards > RD_TOKEN_MAX_SHARDS || o->dim < 1 ||
        o->dim > RD_TOKEN_MAX_DIM || o->n_side < 0 || o->n_side > RD_TOKEN_MAX_SIDE)
        return rd_err_set(eb, RD_ERR_ARG,
                          "token client: n_shards %d (1..%d), dim %d (1..%d) or n_side %d (0..%d) "
                          "out of range",
                          o->n_shards, RD_TOKEN_MAX_SHARDS, o->dim, RD_TOKEN_MAX_DIM, o->n_side,
                          RD_TOKEN_MAX_SIDE);
    if (comm->n_ps < 1)
        return rd_err_set(eb, RD_ERR_ARG, "token client: the layout has no PS rank");
    rd_token_client *c = rd_calloc(1, sizeof *c);
    if (!c)
        return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
    c->comm = comm;
    c->c = comm->kv;
    c->P = comm->n_ps;
    c->o = *o;
    if (c->o.poll_us_max <= 0)
        c->o.poll_us_max = 200;
    if (c->o.max_msg_bytes == 0)
        c->o.max_msg_bytes = UINT64_C(64) << 20;
    if (c->o.max_reply_bytes == 0 || c->o.max_reply_bytes > MAX_REPLY_BYTES)
        c->o.max_reply_bytes = MAX_REPLY_BYTES;
    c->cnt = rd_calloc((size_t)c->P, sizeof *c->cnt);
    if (!c->cnt) {
        rd_free(c);
        return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
    }
    for (int i = 0; i <= RD_TOKEN_CLIENT_MAX_INFLIGHT; i++)
        c->ops[i].slot = i;
    *out = c;
    return RD_OK;
}

static int op_wait(rd_token_client *c, tc_op *op);

static void op_free(tc_op *op) {
    for (int m = 0; m < op->cap_msgs; m++) {
        rd_aligned_free(op->msgs[m].req);
        rd_aligned_free(op->msgs[m].stage);
    }
    rd_free(op->msgs);
    rd_free(op->pos);
}

void rd_token_client_destroy(rd_token_client *c) {
    if (!c)
        return;
    for (int i = 0; i <= RD_TOKEN_CLIENT_MAX_INFLIGHT; i++) {
        if (c->ops[i].active) {
            c->ops[i].discard = 1; // the caller's arrays may be gone already
            op_wait(c, &c->ops[i]);
        }
        op_free(&c->ops[i]);
    }
    rd_free(c->cnt);
    rd_free(c);
}

void rd_token_client_add_traffic(const rd_token_client *c, rd_traffic *t) {
    if (c && t)
        rd_traffic_add(t, &c->traffic);
}

void rd_token_client_counters(const rd_token_client *c,
                              uint64_t *bytes_sent,
                              uint64_t *bytes_recv,
                              uint64_t *messages) {
    if (bytes_sent)
        *bytes_sent = c ? c->bytes_sent : 0;
    if (bytes_recv)
        *bytes_recv = c ? c->bytes_recv : 0;
    if (messages)
        *messages = c ? c->messages : 0;
}

static int reply_tag_of(const tc_op *op) {
    return RD_TAG_PS_REPLY_BASE + (RD_TAG_PS_REPLY_SLOTS - 1 - op->slot);
}

// Make room for `n` messages in op (slots keep their buffers across calls).
static int op_reserve(tc_op *op, int n) {
    if (op->cap_msgs >= n)
        return RD_OK;
    tc_msg *m = rd_realloc(op->msgs, (size_t)n * sizeof *m);
    if (!m)
        return RD_ERR_NOMEM;
    memset(m + op->cap_msgs, 0, (size_t)(n - op->cap_msgs) * sizeof *m);
    op->msgs = m;
    op->cap_msgs = n;
    return RD_OK;
}

// Reset the per-call state of message m (buffers kept).
static void msg_reset(tc_msg *m) {
    m->sent = 0;
    m->send_done = m->recv_posted = m->recv_done = m->finished = 0;
    m->sreq = m->rreq = MPI_REQUEST_NULL;
    m->reply_len = 0;
}

// Fill m's 64-byte header for `payload` bytes and send header + payload (one buffer).
static void msg_send(rd_token_client *c, tc_op *op, tc_msg *m, size_t payload) {
    m->req_id = (++c->seq << 12) | (uint64_t)(RD_TAG_PS_REPLY_SLOTS - 1 - op->slot);
    rd_msg_header h = {RD_MSG_MAGIC,
                       RD_MSG_VERSION,
                       (uint16_t)m->op,
                       0,
                       0,
                       (uint64_t)m->n,
                       0,
                       0,
                       m->req_id,
                       (uint64_t)payload,
                       0,
                       0};
    rd_msg_encode(&h, m->req);
    m->req_bytes = RD_MSG_HEADER_BYTES + payload;
    m->sent = 1;
    RD_MPI_CHECK(MPI_Isend_c(m->req, (MPI_Count)m->req_bytes, MPI_BYTE, c->comm->ps_world[m->ps],
                             RD_TAG_PS_REQUEST, c->c, &m->sreq));
    c->messages++;
    c->bytes_sent += m->req_bytes;
    rd_traffic_count(&c->traffic, tc_chan(m->op), 0, 1, m->req_bytes);
}

// Post the receive of m's reply once it has arrived (probe first: the size decides where it
// goes, so no receive can be truncated). Every receive is contiguous. @return 1 if anything
// happened.
static int msg_probe(rd_token_client *c, tc_op *op, tc_msg *m) {
    int flag = 0;
    MPI_Message mh;
    MPI_Status st;
    RD_MPI_CHECK(MPI_Improbe(c->comm->ps_world[m->ps], reply_tag_of(op), c->c, &flag, &mh, &st));
    if (!flag)
        return 0;
    MPI_Count len = 0;
    RD_MPI_CHECK(MPI_Get_count_c(&st, MPI_BYTE, &len));
    m->reply_len = len;
    size_t pay = len > RD_MSG_HEADER_BYTES ? (size_t)len - RD_MSG_HEADER_BYTES : 0;
    if (m->op == RD_TOKEN_OP_FETCH && len > RD_MSG_HEADER_BYTES && pay == m->expect) {
        m->where = WHERE_STAGE;
        RD_MPI_CHECK(MPI_Imrecv_c(m->stage, len, MPI_BYTE, &mh, &m->rreq));
    } else if (len >= RD_MSG_HEADER_BYTES && pay <= SMALL_REPLY) {
        m->where = WHERE_SMALL;
        RD_MPI_CHECK(MPI_Imrecv_c(m->small, len, MPI_BYTE, &mh, &m->rreq));
    } else {
        m->where = WHERE_DRAIN;
        MPI_Datatype dt;
        rd__drain_type(len, m->hdr_in, c->bounce, sizeof c->bounce, &dt);
        RD_MPI_CHECK(MPI_Imrecv(MPI_BOTTOM, 1, dt, &mh, &m->rreq));
        RD_MPI_CHECK(MPI_Type_free(&dt));
    }
    m->recv_posted = 1;
    return 1;
}

// Copy a staged fetch reply to the caller's rows (one block copy per array when the message
// holds consecutive requests in order, as with a single PS rank).
static int msg_scatter(rd_token_client *c, tc_op *op, tc_msg *m, rd_errbuf *eb) {
    rd_token_fetch_out v;
    size_t L = op->L, d = (size_t)c->o.dim;
    size_t S = (size_t)c->o.n_side;
    int rc = rd_token_fetch_reply_view(m->stage + RD_MSG_HEADER_BYTES, m->expect, m->n, L, d, S,
                                       op->fields, &v, eb);
    if (rc != RD_OK)
        return rc;
    const rd_token_fetch_out *o = &op->out;
    // Requests are grouped stably by rank: with one PS rank (or users of one rank only) a
    // message holds the caller's rows r0 .. r0 + n - 1.
    const size_t r0 = op->pos[m->first];
    size_t run = 1;
    while (run < m->n && op->pos[m->first + run] == r0 + run)
        run++;
    if (run == m->n) {
        size_t nl = m->n * L, at = r0 * L;
        memcpy(o->tokens + at * d, v.tokens, nl * d * sizeof(float));
        memcpy(o->n_found + r0, v.n_found, m->n * sizeof(uint32_t));
        if (o->labels)
            memcpy(o->labels + at, v.labels, nl * sizeof(float));
        if (o->items)
            memcpy(o->items + at, v.items, nl * sizeof(uint64_t));
        if (o->ts)
            memcpy(o->ts + at, v.ts, nl * sizeof(int64_t));
        if (o->ids)
            memcpy(o->ids + at, v.ids, nl * sizeof(uint64_t));
        if (o->side && S)
            memcpy(o->side + at * S, v.side, nl * S * sizeof(float));
        if (o->mask)
            memcpy(o->mask + at, v.mask, nl);
        return RD_OK;
    }
    for (size_t j = 0; j < m->n; j++) {
        size_t r = op->pos[m->first + j];
        memcpy(o->tokens + r * L * d, v.tokens + j * L * d, L * d * sizeof(float));
        o->n_found[r] = v.n_found[j];
        if (o->labels)
            memcpy(o->labels + r * L, v.labels + j * L, L * sizeof(float));
        if (o->items)
            memcpy(o->items + r * L, v.items + j * L, L * sizeof(uint64_t));
        if (o->ts)
            memcpy(o->ts + r * L, v.ts + j * L, L * sizeof(int64_t));
        if (o->ids)
            memcpy(o->ids + r * L, v.ids + j * L, L * sizeof(uint64_t));
        if (o->side && S)
            memcpy(o->side + r * L * S, v.side + j * L * S, L * S * sizeof(float));
        if (o->mask)
            memcpy(o->mask + r * L, v.mask + j * L, L);
    }
    return RD_OK;
}

// Interpret a completed reply.
static void msg_finish(rd_token_client *c, tc_op *op, tc_msg *m) {
    m->finished = 1;
    c->bytes_recv += (uint64_t)m->reply_len;
    rd_traffic_count(&c->traffic, tc_chan(m->op), 1, 1, (uint64_t)m->reply_len);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int world = c->comm->ps_world[m->ps];
    if (m->where == WHERE_DRAIN) {
        op_fail(op, RD_ERR_PROTO, "PS rank %d: token reply of %lld bytes (unexpected size)", world,
                (long long)m->reply_len);
        return;
    }
    // An error text exactly as long as the expected reply was received into the stage.
    const unsigned char *hdr = m->where == WHERE_STAGE ? m->stage : m->small;
    const char *text = (const char *)hdr + RD_MSG_HEADER_BYTES;
    rd_msg_header h;
    int rc = rd_msg_decode(hdr, (size_t)m->reply_len, &h, &eb);
    if (rc == RD_OK)
        rc = rd_msg_check_reply(&h, m->op, m->req_id, &eb);
    if (rc != RD_OK) {
        op_fail(op, rc, "PS rank %d: %s", world, eb.msg);
        return;
    }
    if (h.status != RD_OK) {
        size_t len = (size_t)h.payload_bytes; // rd_msg_decode checked it against the length
        if (len > RD_MSG_ERRTEXT_MAX)
            len = RD_MSG_ERRTEXT_MAX;
        op_fail(op, h.status < 0 ? h.status : RD_ERR_PROTO, "PS rank %d: %.*s", world, (int)len,
                text);
        return;
    }
    if (m->op == RD_TOKEN_OP_MAP) {
        rd_token_map_stats one;
        if (m->where != WHERE_SMALL)
            rc = rd_err_set(&eb, RD_ERR_PROTO, "token map reply of %" PRIu64 " bytes",
                            h.payload_bytes);
        else
            rc = map_stats_unpack(m->small + RD_MSG_HEADER_BYTES, (size_t)h.payload_bytes, &one,
                                  &eb);
        if (rc != RD_OK)
            op_fail(op, rc, "PS rank %d: %s", world, eb.msg);
        else
            map_stats_add(&op->map, &one);
        return;
    }
    if (m->op == RD_TOKEN_OP_APPEND) {
        if (h.payload_bytes != 0)
            op_fail(op, RD_ERR_PROTO, "PS rank %d: append reply carries %" PRIu64 " bytes", world,
                    h.payload_bytes);
        return;
    }
    if (m->where == WHERE_STAGE && op->discard)
        rc = RD_OK;
    else if (m->where == WHERE_STAGE)
        rc = msg_scatter(c, op, m, &eb);
    else
        rc = rd_err_set(&eb, RD_ERR_PROTO, "token fetch reply of %" PRIu64 " bytes, expected %zu",
                        h.payload_bytes, m->expect);
    if (rc != RD_OK)
        op_fail(op, rc, "PS rank %d: %s", world, eb.msg);
}

// Advance every message of op; @return 1 when all are finished.
// The messages of one PS rank are consecutive in op->msgs and answered in sending order on one
// tag, so only the first of a rank whose receive is not posted may probe (the reply that
// arrives first is its own). Unsent messages (the tail of a split fetch) go out while fewer than
// FETCH_WINDOW of their rank are unanswered; once the op has failed, or its results are
// discarded, they are never sent.
static int op_progress(rd_token_client *c, tc_op *op, int *did) {
    int all = 1;
    int run_ps = -1, open = 0, may_probe = 1; // of the current rank's run of messages
    for (int i = 0; i < op->n_msgs; i++) {
        tc_msg *m = &op->msgs[i];
        if (m->ps != run_ps) {
            run_ps = m->ps;
            open = 0;
            may_probe = 1;
        }
        if (m->finished)
            continue;
        if (!m->sent) {
            if (op->status != RD_OK || op->discard) {
                m->finished = 1; // nothing asked, nothing to wait for
                continue;
            }
            all = 0;
            if (open >= FETCH_WINDOW)
                continue;
            msg_send(c, op, m, m->req_bytes - RD_MSG_HEADER_BYTES);
            *did = 1;
        }
        open++;
        if (!m->send_done) {
            RD_MPI_CHECK(MPI_Test(&m->sreq, &m->send_done, MPI_STATUS_IGNORE));
            *did |= m->send_done;
        }
        if (!m->recv_posted && may_probe)
            *did |= msg_probe(c, op, m);
        if (!m->recv_posted)
            may_probe = 0;
        if (m->recv_posted && !m->recv_done) {
            RD_MPI_CHECK(MPI_Test(&m->rreq, &m->recv_done, MPI_STATUS_IGNORE));
            *did |= m->recv_done;
        }
        if (m->send_done && m->recv_done) {
            msg_finish(c, op, m);
            open--;
        } else {
            all = 0;
        }
    }
    return all;
}

static int op_wait(rd_token_client *c, tc_op *op) {
    rd_backoff b;
    rd_backoff_reset(&b, c->o.poll_us_max);
    for (;;) {
        int did = 0;
        if (op_progress(c, op, &did))
            break;
        if (did)
            rd_backoff_reset(&b, c->o.poll_us_max);
        else
            rd_backoff_wait(&b);
    }
    op->active = 0;
    return op->status;
}

// A fetch reply staging buffer: the kernel copies each reply into it (CMA), so it asks for huge
// pages as the server's send buffers do (fewer pages to pin per copy).
static int grow_buf(unsigned char **buf, size_t *cap, size_t need) {
    size_t had = *cap;
    int rc = grow_aligned(buf, cap, need);
    if (rc == RD_OK && *cap != had)
        rd__advise_huge(*buf, *cap);
    return rc;
}

static int ps_of_user(const rd_token_client *c, uint64_t user) {
    return rd_token_ps_rank_of_shard(rd_token_shard_of_user(user, c->o.n_shards), c->P);
}

int rd_token_client_fetch_start(rd_token_client *c,
                                size_t n,
                                const uint64_t *users,
                                const int64_t *before_t,
                                const uint64_t *before_id,
                                size_t L,
                                const rd_token_fetch_out *out,
                                int *handle,
                                rd_errbuf *eb) {
    RD_ARG_CHECK(eb, handle != NULL);
    *handle = -1;
    RD_ARG_CHECK(eb, c != NULL);
    RD_ARG_CHECK(eb, out != NULL);
    if (n < 1 || n > RD__TOKEN_MAX_REQUESTS || L < 1 || L > RD_TOKEN_MAX_L)
        return rd_err_set(eb, RD_ERR_ARG,
                          "token client fetch: n = %zu (1..%u) or L = %zu (1..%d) "
                          "out of range",
                          n, RD__TOKEN_MAX_REQUESTS, L, RD_TOKEN_MAX_L);
    if (!users || !before_t || !out->tokens || !out->n_found)
        return rd_err_set(eb, RD_ERR_ARG,
                          "token client fetch: users, before_t, out->tokens, out->n_found needed");
    tc_op *op = NULL;
    for (int i = 0; i < RD_TOKEN_CLIENT_MAX_INFLIGHT && !op; i++)
        if (!c->ops[i].active)
            op = &c->ops[i];
    if (!op)
        return rd_err_set(eb, RD_ERR_FULL, "token client: %d fetches already outstanding",
                          RD_TOKEN_CLIENT_MAX_INFLIGHT);
    const unsigned fields = rd_token_fetch_fields(out);
    const size_t per_req = before_id ? 24 : 16; // request bytes: user, t [, id]
    const size_t dim = (size_t)c->o.dim, S = (size_t)c->o.n_side;
    // 1. Requests per message: as many as one reply within max_reply_bytes and one request
    //    within max_msg_bytes hold (a reply's size grows with its request count).
    size_t one = rd_token_fetch_reply_bytes(1, L, dim, S, fields);
    if (one == 0 || one > c->o.max_reply_bytes)
        return rd_err_set(eb, RD_ERR_RANGE,
                          "token client fetch: one request of L = %zu tokens (dim %zu, %zu side "
                          "values) needs a reply of %zu bytes, over the %" PRIu64
                          " a PS rank answers at most (max_reply_bytes): L is too long",
                          L, dim, (fields & RD_TOKEN_FIELD_SIDE) ? S : 0, one,
                          c->o.max_reply_bytes);
    if (RD__TOKEN_FETCH_HEADER + per_req > c->o.max_msg_bytes)
        return rd_err_set(eb, RD_ERR_RANGE,
                          "token client fetch: max_msg_bytes %" PRIu64
                          " cannot hold one request of %zu bytes",
                          c->o.max_msg_bytes, RD__TOKEN_FETCH_HEADER + per_req);
    size_t per = (size_t)((c->o.max_msg_bytes - RD__TOKEN_FETCH_HEADER) / per_req);
    if (per > n)
        per = n;
    size_t hi_bytes = rd_token_fetch_reply_bytes(per, L, dim, S, fields);
    if (hi_bytes == 0 || hi_bytes > c->o.max_reply_bytes) {
        size_t lo = 1, hi = per; // fits at lo, not at hi
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            size_t b = rd_token_fetch_reply_bytes(mid, L, dim, S, fields);
            if (b != 0 && b <= c->o.max_reply_bytes)
                lo = mid;
            else
                hi = mid;
        }
        per = lo;
    }
    // 2. Count requests per PS rank and the messages they take.
    for (int r = 0; r < c->P; r++)
        c->cnt[r] = 0;
    for (size_t i = 0; i < n; i++)
        c->cnt[ps_of_user(c, users[i])]++;
    size_t n_msgs = 0;
    for (int r = 0; r < c->P; r++)
        n_msgs += ((size_t)c->cnt[r] + per - 1) / per;
    if (n_msgs > INT_MAX || op_reserve(op, (int)n_msgs) != RD_OK)
        return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
    if (op->pos_cap < n) {
        size_t *p = rd_realloc(op->pos, n * sizeof *p);
        if (!p)
            return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
        op->pos = p;
        op->pos_cap = n;
    }
    // 3. Lay out the messages, rank by rank (a rank's are consecutive); pos lists each
    //    message's requests in caller order.
    op->n_msgs = 0;
    size_t off = 0;
    for (int r = 0; r < c->P; r++) {
        const size_t cnt = (size_t)c->cnt[r];
        for (size_t k = 0; k < cnt; k += per) {
            tc_msg *m = &op->msgs[op->n_msgs++];
            msg_reset(m);
            m->ps = r;
            m->op = RD_TOKEN_OP_FETCH;
            m->n = cnt - k < per ? cnt - k : per;
            m->first = off + k;
            m->expect = rd_token_fetch_reply_bytes(m->n, L, dim, S, fields);
            m->req_bytes = RD_MSG_HEADER_BYTES + RD__TOKEN_FETCH_HEADER + per_req * m->n;
            if (grow_buf(&m->req, &m->req_cap, m->req_bytes) != RD_OK ||
                grow_buf(&m->stage, &m->stage_cap, RD_MSG_HEADER_BYTES + m->expect) != RD_OK)
                return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
        }
        c->cnt[r] = (int)off; // becomes the fill cursor of rank r
        off += cnt;
    }
    for (size_t i = 0; i < n; i++) {
        int r = ps_of_user(c, users[i]);
        op->pos[c->cnt[r]++] = i;
    }
    // 4. Pack every request now (the caller may reuse its arrays at once).
    for (int k = 0; k < op->n_msgs; k++) {
        tc_msg *m = &op->msgs[k];
        unsigned char *p = m->req + RD_MSG_HEADER_BYTES;
        rd__le32_put(p, RD__TOKEN_REQ_MAGIC);
        rd__le32_put(p + 4, (uint32_t)m->n);
        rd__le32_put(p + 8, (uint32_t)L);
        rd__le32_put(p + 12, (uint32_t)dim);
        rd__le32_put(p + 16, fields | (before_id ? RD__TOKEN_REQ_BEFORE_ID : 0u));
        rd__le32_put(p + 20, (fields & RD_TOKEN_FIELD_SIDE) ? (uint32_t)S : 0);
        unsigned char *pu = p + RD__TOKEN_FETCH_HEADER, *pt = pu + 8 * m->n, *pi = pt + 8 * m->n;
        for (size_t j = 0; j < m->n; j++) {
            size_t i = op->pos[m->first + j];
            rd__le64_put(pu + 8 * j, users[i]);
            rd__le64_put(pt + 8 * j, (uint64_t)before_t[i]);
            if (before_id)
                rd__le64_put(pi + 8 * j, before_id[i]);
        }
    }
    op->active = 1;
    op->status = RD_OK;
    op->msg[0] = '\0';
    op->n = n;
    op->L = L;
    op->out = *out;
    op->fields = fields;
    op->discard = 0;
    // 5. Send the first FETCH_WINDOW messages of each rank; rd_token_client_wait sends the
    //    rest as replies come in.
    for (int k = 0, run = 0; k < op->n_msgs; k++) {
        tc_msg *m = &op->msgs[k];
        run = k > 0 && op->msgs[k - 1].ps == m->ps ? run + 1 : 0;
        if (run < FETCH_WINDOW)
            msg_send(c, op, m, m->req_bytes - RD_MSG_HEADER_BYTES);
    }
    *handle = op->slot;
    return RD_OK;
}

int rd_token_client_wait(rd_token_client *c, int handle, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, c != NULL);
    if (handle < 0 || handle >= RD_TOKEN_CLIENT_MAX_INFLIGHT || !c->ops[handle].active)
        return rd_err_set(eb, RD_ERR_ARG, "token client: no outstanding fetch %d", handle);
    tc_op *op = &c->ops[handle];
    int rc = op_wait(c, op);
    if (rc != RD_OK)
        rd_err_set(eb, rc, "token fetch: %s", op->msg);
    return rc;
}

int rd_token_client_fetch(rd_token_client *c,
                          size_t n,
                          const uint64_t *users,
                          const int64_t *before_t,
                          const uint64_t *before_id,
                          size_t L,
                          const rd_token_fetch_out *out,
                          rd_errbuf *eb) {
    RD_ARG_CHECK(eb, c != NULL);
    RD_ARG_CHECK(eb, out != NULL);
    // Requests per piece: as many as fit one reply when every one of them lands on one PS rank
    // (halving from the request limit; a reply's size is affine in its request count).
    const unsigned fields = rd_token_fetch_fields(out);
    const size_t dim = (size_t)c->o.dim, S = (size_t)c->o.n_side;
    size_t piece = n < RD__TOKEN_MAX_REQUESTS ? n : RD__TOKEN_MAX_REQUESTS;
    while (piece > 1) {
        size_t b = rd_token_fetch_reply_bytes(piece, L, dim, S, fields);
        if (b != 0 && b <= c->o.max_reply_bytes)
            break;
        piece /= 2;
    }
    if (n <= piece || !users || !before_t || !out->tokens || !out->n_found) {
        int h = -1; // one piece (or arguments fetch_start refuses)
        int rc = rd_token_client_fetch_start(c, n, users, before_t, before_id, L, out, &h, eb);
        return rc != RD_OK ? rc : rd_token_client_wait(c, h, eb);
    }
    for (size_t i = 0;;) {
        size_t k = n - i < piece ? n - i : piece;
        rd_token_fetch_out o = *out;
        o.tokens += i * L * dim;
        o.n_found += i;
        if (o.labels)
            o.labels += i * L;
        if (o.items)
            o.items += i * L;
        if (o.ts)
            o.ts += i * L;
        if (o.ids)
            o.ids += i * L;
        if (o.mask)
            o.mask += i * L;
        if (o.side && S)
            o.side += i * L * S;
        int h = -1;
        int rc = rd_token_client_fetch_start(c, k, users + i, before_t + i,
                                             before_id ? before_id + i : NULL, L, &o, &h, eb);
        if (rc == RD_OK)
            rc = rd_token_client_wait(c, h, eb);
        if (rc != RD_OK)
            return rc;
        i += k;
        if (i >= n)
            return RD_OK;
    }
}

int rd_token_client_append(rd_token_client *c, const rd_token_batch *b, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, c != NULL);
    RD_ARG_CHECK(eb, b != NULL);
    if (b->n == 0)
        return RD_OK;
    if (!b->users || !b->ts || !b->ids || !b->tokens)
        return rd_err_set(eb, RD_ERR_ARG, "token client append: users, ts, ids, tokens required");
    tc_op *op = &c->ops[RD_TOKEN_CLIENT_MAX_INFLIGHT];
    RD_ASSERT(!op->active);
    const size_t dim = (size_t)c->o.dim, S = (size_t)c->o.n_side;
    // Records per message so that a packed append stays within max_msg_bytes.
    size_t per = 8 * 4 + 4 * 2 + 4 * S + 4 * dim;
    uint64_t room = c->o.max_msg_bytes > 64 ? c->o.max_msg_bytes - 64 : 0;
    size_t chunk = (size_t)(room / per);
    if (chunk > RD__TOKEN_MAX_APPEND)
        chunk = RD__TOKEN_MAX_APPEND;
    if (chunk < 1)
        return rd_err_set(eb, RD_ERR_RANGE,
                          "token client append: max_msg_bytes %" PRIu64
                          " cannot hold one record of dim %zu",
                          c->o.max_msg_bytes, dim);
    // 1. Group by rank (stable) into pos.
    if (op->pos_cap < b->n) {
        size_t *p = rd_realloc(op->pos, b->n * sizeof *p);
        if (!p)
            return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
        op->pos = p;
        op->pos_cap = b->n;
    }
    for (int r = 0; r < c->P; r++)
        c->cnt[r] = 0;
    for (size_t i = 0; i < b->n; i++)
        c->cnt[ps_of_user(c, b->users[i])]++;
    int n_msgs = 0;
    for (int r = 0; r < c->P; r++)
        n_msgs += (int)((c->cnt[r] + chunk - 1) / chunk);
    if (op_reserve(op, n_msgs) != RD_OK)
        return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
    size_t off = 0;
    for (int r = 0; r < c->P; r++) {
        size_t k = (size_t)c->cnt[r];
        c->cnt[r] = (int)off;
        off += k;
    }
    for (size_t i = 0; i < b->n; i++)
        op->pos[c->cnt[ps_of_user(c, b->users[i])]++] = i;
    // 2. Pack: messages of one rank are consecutive in pos.
    op->n_msgs = 0;
    op->status = RD_OK;
    op->msg[0] = '\0';
    size_t i0 = 0;
    while (i0 < b->n) {
        int r = ps_of_user(c, b->users[op->pos[i0]]);
        size_t i1 = i0;
        while (i1 < b->n && i1 - i0 < chunk && ps_of_user(c, b->users[op->pos[i1]]) == r)
            i1++;
        tc_msg *m = &op->msgs[op->n_msgs++];
        msg_reset(m);
        m->ps = r;
        m->op = RD_TOKEN_OP_APPEND;
        m->n = i1 - i0;
        m->first = i0;
        size_t bytes = rd_token_append_packed_bytes(m->n, dim, S);
        if (grow_buf(&m->req, &m->req_cap, RD_MSG_HEADER_BYTES + bytes) != RD_OK)
            return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
        rd__token_append_layout lay;
        RD_ASSERT(rd__token_append_layout_of(m->n, dim, S, &lay));
        unsigned char *p = m->req + RD_MSG_HEADER_BYTES;
        memset(p, 0, bytes);
        rd__le32_put(p, RD__TOKEN_APPEND_MAGIC);
        rd__le32_put(p + 4, (uint32_t)m->n);
        rd__le32_put(p + 8, (uint32_t)dim);
        rd__le32_put(p + 12, (uint32_t)S);
        for (size_t j = 0; j < m->n; j++) {
            size_t i = op->pos[i0 + j];
            rd__le64_put(p + lay.users + 8 * j, b->users[i]);
            rd__le64_put(p + lay.ts + 8 * j, (uint64_t)b->ts[i]);
            rd__le64_put(p + lay.ids + 8 * j, b->ids[i]);
            rd__le64_put(p + lay.items + 8 * j, b->items ? b->items[i] : 0);
            memcpy(p + lay.tokens + 4 * dim * j, b->tokens + i * dim, 4 * dim);
            if (b->labels)
                memcpy(p + lay.labels + 4 * j, &b->labels[i], 4);
            rd__le32_put(p + lay.flags + 4 * j, b->flags ? b->flags[i] : 0);
            if (b->side && S)
                memcpy(p + lay.side + 4 * S * j, b->side + i * S, 4 * S);
        }
        m->expect = 0;
        i0 = i1;
    }
    // 3. Send everything, then wait for every reply.
    op->active = 1;
    for (int k = 0; k < op->n_msgs; k++)
        msg_send(c, op, &op->msgs[k], rd_token_append_packed_bytes(op->msgs[k].n, dim, S));
    int rc = op_wait(c, op);
    if (rc != RD_OK)
        rd_err_set(eb, rc, "token append: %s", op->msg);
    return rc;
}

int rd_token_client_map_huge(rd_token_client *c, int mode, rd_token_map_stats *sum, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, sum != NULL);
    memset(sum, 0, sizeof *sum);
    sum->resident_kb = sum->huge_kb = -1;
    RD_ARG_CHECK(eb, c != NULL);
    if (mode != RD_TOKEN_HUGE_OFF && mode != RD_TOKEN_HUGE_AUTO)
        return rd_err_set(eb, RD_ERR_ARG, "token map: mode %d is neither off nor auto", mode);
    tc_op *op = &c->ops[RD_TOKEN_CLIENT_MAX_INFLIGHT];
    RD_ASSERT(!op->active);
    if (op_reserve(op, c->P) != RD_OK)
        return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
    op->n_msgs = 0;
    op->status = RD_OK;
    op->msg[0] = '\0';
    op->map = *sum;
    for (int r = 0; r < c->P; r++) {
        tc_msg *m = &op->msgs[op->n_msgs++];
        msg_reset(m);
        m->ps = r;
        m->op = RD_TOKEN_OP_MAP;
        m->n = 0;
        m->first = 0;
        m->expect = 0;
        if (grow_buf(&m->req, &m->req_cap, RD_MSG_HEADER_BYTES + MAP_REQ_BYTES) != RD_OK)
            return rd_err_set(eb, RD_ERR_NOMEM, "token client: out of memory");
        rd__le32_put(m->req + RD_MSG_HEADER_BYTES, MAP_MAGIC);
        rd__le32_put(m->req + RD_MSG_HEADER_BYTES + 4, (uint32_t)mode);
    }
    op->active = 1;
    for (int k = 0; k < op->n_msgs; k++)
        msg_send(c, op, &op->msgs[k], MAP_REQ_BYTES);
    int rc = op_wait(c, op);
    if (rc != RD_OK)
        return rd_err_set(eb, rc, "token map: %s", op->msg);
    *sum = op->map;
    return RD_OK;
}
