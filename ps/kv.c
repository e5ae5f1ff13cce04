// kv.c — worker-side PS client: splits pulls/pushes per shard (by hash), sends one message per
// shard without blocking, matches replies by request slot, and completes them with polling +
// backoff. See rd/kv.h for the API contract.
//
// Design:
// - A request (timestamp) is a handle owning one sub-request per message. Sub-requests live in a
//   pool of RD_TAG_PS_REPLY_SLOTS slots allocated at creation; a slot's index is the low 12 bits
//   of its req_id and selects the reply tag, so replies can come back in any order (the server
//   defers pulls in sync mode) without being confused.
// - Replies are not pre-posted: the client MPI_Improbe's the reply tag (then the data tag) and
//   receives each message by its actual size; an unexpected size is drained and reported as
//   RD_ERR_PROTO. A receive can never be truncated, so a buggy or hostile server cannot abort us.
// - Each request is one contiguous message [header | keys | grads] built in the slot's buffer
//   (a derived datatype would make MPI pack and unpack through bounce buffers; one contiguous
//   buffer moves with a single copy). A pull reply is a header message plus a contiguous data
//   message received directly into the caller's vals (P = 1) or into the slot's staging buffer
//   (P > 1, then scattered). Slot buffers grow geometrically to the largest batch and are then
//   reused (no allocation in the step loop).
#include "rd/kv.h"
#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/hash.h"
#include "rd/log.h"
#include "rd/msg.h"
#include "rd/optim.h"
#include "rd/tokens.h"

#include "ps_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// Request slots of this client: the low reply slots [0, RD_MSG_SLOT_KV_END); the top
// RD_MSG_SLOTS_RESERVED belong to other clients of rd_comm.kv in the same process (the token
// client's are [RD_MSG_SLOT_TOKEN_FIRST, RD_MSG_SLOTS); see rd/msg.h).
#define N_SUBS        RD_MSG_SLOT_KV_END
#define RBUF_MAX      (1u << 20) // largest non-pull reply payload accepted (stats, info, error text)
#define CLIENT_HOT_US 50         // busy-poll window of waits after progress (rd_backoff_hot)
_Static_assert(RD_MSG_SLOT_KV_END <= RD_MSG_SLOT_TOKEN_FIRST,
               "rd_kv's reply slots must not reach the token client's");
_Static_assert(RD_TOKEN_CLIENT_MAX_INFLIGHT + 1 <= RD_MSG_SLOTS - RD_MSG_SLOT_TOKEN_FIRST,
               "rd_token_client's slots 4095 - k must stay in the reserved token range");

enum { WHERE_DST = 0, WHERE_RBUF = 1, WHERE_DRAIN = 2 };

typedef struct kv_sub {
    int next;   // next sub of the same handle, or next free slot
    int handle; // handle slot
    int shard;
    unsigned op;
    uint64_t req_id;
    int in_use, complete;
    int send_done;
    int phase; // reply: 0 probe header, 1 receiving header, 2 probe data, 3 receiving data, 4 done
    MPI_Request sreq, rreq;
    MPI_Count reply_len; // bytes of the header message
    int drained;         // the header message had an unexpected size and was drained
    unsigned char drain_hdr[RD_MSG_HEADER_BYTES]; // target of a drained message's first bytes
    rd_msg_header h;                              // the decoded reply header
    void *dst; // where a PULL's values go: caller's vals (P = 1) or svals
    size_t dst_bytes;
    float *out; // scatter target (P > 1 pulls): out[spos[i]*dim]
    size_t n, dim;
    unsigned char *sbuf; // the request: [header | payload], 64-byte aligned
    size_t sbuf_cap;
    float *svals; // P > 1 pulls: the shard's values before scattering
    size_t svals_cap;
    uint32_t *spos; // P > 1 pulls: position of each of the shard's keys in the caller's arrays
    size_t spos_cap;
    unsigned char *rbuf; // the reply header message (header + small payload)
    size_t rbuf_cap;
    size_t rlen; // payload bytes of the reply in rbuf + 64
    int status;
    // Shared memory (shm = 1): the payload sits in the client's region at req_off (and a
    // PULL's values come back at reply_off); the message is the header + descriptor only.
    int shm;
    uint64_t req_off, req_bytes, reply_off;
    unsigned char *req; // where the payload is written: sbuf + 64, or the region at req_off
} kv_sub;

typedef struct kv_handle {
    int ts;
    int active;
    int detached;
    int head; // first sub, -1 if none
    unsigned op;
    int status;
    char msg[384];
} kv_handle;

struct rd_kv {
    const rd_comm *comm;
    const rd_config *cfg;
    MPI_Comm c;
    int P, job, worker;
    int n_tables;
    int dims[RD_MAX_TABLES];
    uint64_t max_payload;
    int poll_us_max;
    int64_t step, time;
    int read; // pulls are reads (rd_kv_set_read): RD_MSG_FLAG_READ
    int shut;

    kv_sub *subs; // (N_SUBS)
    int free_head, n_free;
    kv_handle handles[RD_KV_MAX_HANDLES];
    int next_ts;
    int wrapped; // next_ts wrapped past INT_MAX to 0: any ts >= 0 may have been issued
    uint64_t seq;

    int deferred_status; // error of a detached request, reported by the next wait
    char deferred_msg[384];

    int *shard_of; // (cap) shard of each key of the current call
    size_t shard_of_cap;
    size_t *cnt; // (P)
    int *chunk;  // (N_SUBS) subs of the current call, grouped by shard
    int *first;  // (P + 1) offsets into chunk

    // Same-node shared memory (ps.shm auto): one region, mapped by every PS rank that can; a
    // shard is asked (ATTACH) before the first pull or push that goes to it.
    int shm_on;             // 1: try shared memory (region created at the first pull/push)
    rd__shm_region shm;     // the region (base NULL until created)
    rd__shm_attach shm_att; // its announcement
    rd__shm_arena arena;    // ranges of the requests in flight
    signed char *shm_state; // (P) 0 not asked, 1 attached, -1 unavailable (MPI only)

    rd_errbuf err;
    rd_kv_counters ctr;
    rd_traffic traffic; // per channel: pull, push, everything else (ps_ctl)
    unsigned char bounce[4096];
};

// Format into a fixed buffer, truncating long messages (they are diagnostics).
static void set_text(char *dst, size_t cap, const char *fmt, ...) RD_PRINTF(3, 4);
static void set_text(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

// ---------------------------------------------------------------------------------------------
// Create / destroy

int rd_kv_create(const rd_comm *comm, const rd_config *cfg, rd_kv **out, rd_errbuf *eb) {
    RD_ASSERT(comm && cfg && out);
    *out = NULL;
    if (comm->role_kind != RD_ROLE_WORKER)
        return rd_err_set(eb, RD_ERR_ARG, "rd_kv_create on rank %d, which is not a worker rank",
                          comm->rank);
    if (cfg->ps.n_tables < 1 || cfg->ps.n_tables > RD_MAX_TABLES)
        return rd_err_set(eb, RD_ERR_CONFIG, "ps.tables: %d tables (need 1..%d)", cfg->ps.n_tables,
                          RD_MAX_TABLES);
    rd_kv *kv = rd_calloc(1, sizeof *kv);
    if (!kv)
        return rd_err_set(eb, RD_ERR_NOMEM, "rd_kv_create: out of memory");
    kv->comm = comm;
    kv->cfg = cfg;
    kv->c = comm->kv;
    kv->P = comm->n_ps;
    kv->job = comm->job_index;
    kv->worker = comm->job_rank;
    kv->n_tables = cfg->ps.n_tables;
    for (int i = 0; i < kv->n_tables; i++)
        kv->dims[i] = cfg->ps.tables[i].dim;
    kv->max_payload = cfg->ps.max_msg_bytes;
    kv->poll_us_max = cfg->cluster.poll_us_max;
    kv->subs = rd_calloc(N_SUBS, sizeof *kv->subs);
    kv->cnt = rd_calloc((size_t)kv->P, sizeof *kv->cnt);
    kv->first = rd_calloc((size_t)kv->P + 1, sizeof *kv->first);
    kv->chunk = rd_calloc(N_SUBS, sizeof *kv->chunk);
    kv->shm_state = rd_calloc((size_t)kv->P, sizeof *kv->shm_state);
    kv->shm_on = cfg->ps.shm == RD_SHM_AUTO;
    kv->shm.fd = -1;
    if (!kv->subs || !kv->cnt || !kv->first || !kv->chunk || !kv->shm_state) {
        rd_kv_destroy(kv);
        return rd_err_set(eb, RD_ERR_NOMEM, "rd_kv_create: out of memory");
    }
    for (int i = 0; i < N_SUBS; i++)
        kv->subs[i].next = i + 1 < N_SUBS ? i + 1 : -1;
    kv->free_head = 0;
    kv->n_free = N_SUBS;
    *out = kv;
    return RD_OK;
}

void rd_kv_destroy(rd_kv *kv) {
    if (!kv)
        return;
    if (kv->subs) {
        rd_kv_wait_all(kv);
        for (int i = 0; i < N_SUBS; i++) {
            kv_sub *s = &kv->subs[i];
            rd_aligned_free(s->sbuf);
            rd_aligned_free(s->svals);
            rd_free(s->spos);
            rd_free(s->rbuf);
        }
    }
    rd_free(kv->subs);
    rd_free(kv->shard_of);
    rd_free(kv->cnt);
    rd_free(kv->first);
    rd_free(kv->chunk);
    rd_free(kv->shm_state);
    rd__shm_unmap(&kv->shm);
    rd__shm_arena_free_all(&kv->arena);
    rd_free(kv);
}

int rd_kv_table(const rd_kv *kv, const char *name) {
    for (int i = 0; i < kv->n_tables; i++)
        if (strcmp(kv->cfg->ps.tables[i].name, name) == 0)
            return i;
    return RD_ERR_NOTFOUND;
}

int rd_kv_dim(const rd_kv *kv, int table) {
    return table >= 0 && table < kv->n_tables ? kv->dims[table] : RD_ERR_RANGE;
}

void rd_kv_set_time(rd_kv *kv, int64_t stream_time) {
    kv->time = stream_time;
}

int64_t rd_kv_time(const rd_kv *kv) {
    return kv->time;
}

void rd_kv_set_read(rd_kv *kv, int on) {
    kv->read = on != 0;
}

int64_t rd_kv_step(const rd_kv *kv) {
    return kv->step;
}

void rd_kv_set_step(rd_kv *kv, int64_t step) {
    kv->step = step;
}

const char *rd_kv_errmsg(const rd_kv *kv) {
    return kv->err.msg;
}

void rd_kv_get_counters(const rd_kv *kv, rd_kv_counters *c) {
    *c = kv->ctr;
}

void rd_kv_add_traffic(const rd_kv *kv, rd_traffic *t) {
    rd_traffic_add(t, &kv->traffic);
}

void rd__kv_set_next_ts(rd_kv *kv, int ts) {
    RD_ASSERT(ts >= 0);
    kv->next_ts = ts;
}

// ---------------------------------------------------------------------------------------------
// Dedup: a hash pass gives each distinct key an id in order of first appearance, then an LSD
// radix sort (8 bits per pass, skipping constant bytes) orders the distinct keys only. A step's
// history keys repeat a lot (the teacher of the main job: 65,536 history keys, about 2,000
// distinct), so sorting the distinct keys rather than every key is where the time goes; the
// table starts small and doubles at half load, so a batch with few distinct keys never touches
// (nor clears) the whole of it. Key 0 marks an empty slot (it is refused as a key anyway).
// A batch whose first DEDUP_PROBE keys are mostly distinct is sorted whole instead, as before
// the hash pass existed: there the table costs more than it saves (bench_table's dedup_ns: 16
// ns a key sorted whole, 34 through the table, for 65,536 distinct keys).

typedef struct kv_pair {
    uint64_t key;
    uint64_t pos; // here: the key's id (order of first appearance)
} kv_pair;

#define DEDUP_MIN_SLOTS 1024u
#define DEDUP_PROBE     4096u

// Slots of the largest table: a power of two >= 2n, at least DEDUP_MIN_SLOTS.
static size_t dedup_max_slots(size_t n) {
    size_t cap = DEDUP_MIN_SLOTS;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

size_t rd_kv_dedup_scratch_bytes(size_t n) {
    // Two kv_pair arrays (the distinct keys, the sort's other buffer), the table's keys and ids.
    return 2 * (n ? n : 1) * sizeof(kv_pair) + dedup_max_slots(n) * (sizeof(uint64_t) + 4);
}

static inline size_t dedup_slot(uint64_t key, unsigned bits) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

// Insert the keys of d[0..u) into an empty table of 2^bits slots (ids = their index).
static void dedup_rehash(uint64_t *hk, uint32_t *hid, unsigned bits, const kv_pair *d, size_t u) {
    size_t mask = ((size_t)1 << bits) - 1;
    memset(hk, 0, (mask + 1) * sizeof *hk);
    for (size_t j = 0; j < u; j++) {
        size_t h = dedup_slot(d[j].key, bits);
        while (hk[h])
            h = (h + 1) & mask;
        hk[h] = d[j].key;
        hid[h] = (uint32_t)j;
    }
}

// Sort a[0..n) by key (LSD radix; b is the other buffer): @return the buffer holding the result.
static kv_pair *dedup_sort(kv_pair *a, kv_pair *b, size_t n) {
    for (int pass = 0; pass < 8; pass++) {
        size_t count[256] = {0};
        unsigned sh = 8u * (unsigned)pass;
        for (size_t i = 0; i < n; i++)
            count[(a[i].key >> sh) & 0xff]++;
        int constant = 0;
        for (int d = 0; d < 256; d++)
            if (count[d] == n)
                constant = 1;
        if (constant)
            continue;
        size_t off = 0;
        for (int d = 0; d < 256; d++) {
            size_t c = count[d];
            count[d] = off;
            off += c;
        }
        for (size_t i = 0; i < n; i++)
            b[count[(a[i].key >> sh) & 0xff]++] = a[i];
        kv_pair *t = a;
        a = b;
        b = t;
    }
    return a;
}

// Every key sorted with its position; the runs of equal keys give uniq and inverse.
static int dedup_sort_all(const uint64_t *keys,
                          size_t n,
                          uint64_t *uniq,
                          uint32_t *inverse,
                          size_t *n_uniq,
                          kv_pair *a,
                          kv_pair *b) {
    for (size_t i = 0; i < n; i++) {
        if (keys[i] == 0)
            return RD_ERR_ARG;
        a[i] = (kv_pair){keys[i], i};
    }
    const kv_pair *s = dedup_sort(a, b, n);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || s[i].key != s[i - 1].key)
            uniq[u++] = s[i].key;
        inverse[s[i].pos] = (uint32_t)(u - 1);
    }
    *n_uniq = u;
    return RD_OK;
}

int rd_kv_dedup(const uint64_t *keys,
                size_t n,
                uint64_t *uniq,
                uint32_t *inverse,
                size_t *n_uniq,
                void *scratch,
                size_t scratch_bytes) {
    *n_uniq = 0;
    if (n >= UINT32_MAX || (n && (!keys || !uniq || !inverse)))
        return RD_ERR_ARG;
    if (scratch_bytes < rd_kv_dedup_scratch_bytes(n) || !scratch)
        return RD_ERR_ARG;
    if (n == 0)
        return RD_OK;
    size_t max_slots = dedup_max_slots(n);
    kv_pair *d = scratch, *tmp = d + n;
    uint64_t *hk = (uint64_t *)(tmp + n);
    uint32_t *hid = (uint32_t *)(hk + max_slots);
    unsigned bits = 10; // DEDUP_MIN_SLOTS
    size_t mask = DEDUP_MIN_SLOTS - 1, u = 0, probe = n < DEDUP_PROBE ? n : DEDUP_PROBE;
    memset(hk, 0, DEDUP_MIN_SLOTS * sizeof *hk);
    for (size_t i = 0; i < n; i++) {
        if (i == probe && 4 * u > 3 * probe) // mostly distinct so far: sort the batch whole
            return dedup_sort_all(keys, n, uniq, inverse, n_uniq, d, tmp);
        uint64_t key = keys[i];
        if (key == 0)
            return RD_ERR_ARG;
        size_t h = dedup_slot(key, bits);
        while (hk[h] && hk[h] != key)
            h = (h + 1) & mask;
        if (hk[h]) {
            inverse[i] = hid[h];
            continue;
        }
        hk[h] = key;
        hid[h] = (uint32_t)u;
        d[u] = (kv_pair){key, u};
        inverse[i] = (uint32_t)u++;
        if (2 * u > mask + 1 && mask + 1 < max_slots) { // half full: double it
            bits++;
            mask = mask * 2 + 1;
            dedup_rehash(hk, hid, bits, d, u);
        }
    }
    // The distinct keys in order; id -> rank in hid (the table is no longer needed).
    const kv_pair *s = dedup_sort(d, tmp, u);
    for (size_t r = 0; r < u; r++) {
        uniq[r] = s[r].key;
        hid[s[r].pos] = (uint32_t)r;
    }
    for (size_t i = 0; i < n; i++)
        inverse[i] = hid[inverse[i]];
    *n_uniq = u;
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Handles and sub-request slots

static int handle_open(rd_kv *kv, unsigned op, int detached, int *slot);
static void reap_detached(rd_kv *kv);
static int ensure(void **p, size_t *cap, size_t need, int aligned);

static int sub_alloc(rd_kv *kv) {
    int i = kv->free_head;
    RD_ASSERT(i >= 0);
    kv_sub *s = &kv->subs[i];
    kv->free_head = s->next;
    kv->n_free--;
    s->in_use = 1;
    s->complete = s->send_done = s->phase = s->drained = 0;
    s->status = RD_OK;
    s->dst = NULL;
    s->dst_bytes = 0;
    s->out = NULL;
    s->n = s->dim = 0;
    s->rlen = 0;
    s->next = -1;
    s->shm = 0;
    s->req = NULL;
    return i;
}

static void sub_free(rd_kv *kv, int i) {
    kv_sub *s = &kv->subs[i];
    if (s->shm) {
        // The server answered (or the request was never sent): its ranges are free again.
        RD_ASSERT(rd__shm_release(&kv->arena, s->req_off) == RD_OK);
        if (s->op == RD_OP_PULL)
            RD_ASSERT(rd__shm_release(&kv->arena, s->reply_off) == RD_OK);
        s->shm = 0;
    }
    s->in_use = 0;
    s->next = kv->free_head;
    kv->free_head = i;
    kv->n_free++;
}

static int handle_open(rd_kv *kv, unsigned op, int detached, int *slot) {
    int ts = kv->next_ts;
    int h = ts % RD_KV_MAX_HANDLES;
    if (kv->handles[h].active) {
        reap_detached(kv);
        if (kv->handles[h].active)
            return rd_err_set(&kv->err, RD_ERR_FULL,
                              "%d requests outstanding: wait on old timestamps (ts %d is still "
                              "open)",
                              RD_KV_MAX_HANDLES, kv->handles[h].ts);
    }
    kv_handle *H = &kv->handles[h];
    memset(H, 0, sizeof *H);
    H->ts = ts;
    H->active = 1;
    H->detached = detached;
    H->head = -1;
    H->op = op;
    // Wrap explicitly (ts + 1 would overflow): slot INT_MAX % 256 = 255 is followed by 0.
    if (ts == INT_MAX) {
        kv->next_ts = 0;
        kv->wrapped = 1;
    } else {
        kv->next_ts = ts + 1;
    }
    *slot = h;
    return RD_OK;
}

static void handle_add(rd_kv *kv, int h, int sub) {
    kv_sub *s = &kv->subs[sub];
    s->handle = h;
    s->next = kv->handles[h].head;
    kv->handles[h].head = sub;
}

// Accounting channel of a request op. SAVE and LOAD carry the checkpoint folder's path: on a
// channel of their own, ps_ctl is the same for the same run wherever its run folder is.
static int op_chan(unsigned op) {
    switch (op) {
        case RD_OP_PULL:
            return RD_CHAN_PS_PULL;
        case RD_OP_PUSH:
            return RD_CHAN_PS_PUSH;
        case RD_OP_SAVE:
        case RD_OP_LOAD:
            return RD_CHAN_PS_CKPT;
        default:
            return RD_CHAN_PS_CTL;
    }
}

// Send sub `i`: its header is written into sbuf[0, 64) in front of the payload_bytes already
// placed at sbuf + 64, and the request goes out as one contiguous message (which MPI can move
// with a single copy; a derived datatype would be packed and unpacked through bounce buffers).
// A shared-memory sub (s->shm) sends the header and its descriptor; the payload already placed
// in the region counts as sent too (it crosses to the server all the same).
static void sub_send(
    rd_kv *kv, int i, unsigned op, uint32_t table, uint64_t count, uint32_t dim, size_t payload) {
    kv_sub *s = &kv->subs[i];
    s->op = op;
    RD_ASSERT(i >= 0 && i < RD_MSG_SLOT_KV_END); // never a reserved slot (rd/msg.h)
    s->req_id = (++kv->seq << RD_MSG_SLOT_BITS) | (uint64_t)i;
    size_t wire = payload;
    uint32_t flags = 0;
    if (s->shm) {
        RD_ASSERT(payload == s->req_bytes);
        rd_msg_shm d = {kv->shm.id, s->req_off, s->req_bytes, op == RD_OP_PULL ? s->reply_off : 0};
        rd_msg_shm_encode(&d, s->sbuf + RD_MSG_HEADER_BYTES);
        wire = RD_MSG_SHM_DESC_BYTES;
        flags = RD_MSG_FLAG_SHM;
    }
    if (op == RD_OP_PULL && kv->read)
        flags |= RD_MSG_FLAG_READ;
    RD_ASSERT(s->sbuf_cap >= RD_MSG_HEADER_BYTES + wire);
    rd_msg_header h = {RD_MSG_MAGIC, RD_MSG_VERSION, (uint16_t)op, 0,    table,    count,
                       dim,          flags,          s->req_id,    wire, kv->step, kv->time};
    rd_msg_encode(&h, s->sbuf);
    int dest = kv->comm->ps_world[s->shard];
    RD_MPI_CHECK(MPI_Isend_c(s->sbuf, (MPI_Count)(RD_MSG_HEADER_BYTES + wire), MPI_BYTE, dest,
                             RD_TAG_PS_REQUEST, kv->c, &s->sreq));
    const uint64_t bytes = RD_MSG_HEADER_BYTES + wire + (s->shm ? payload : 0);
    kv->ctr.messages++;
    kv->ctr.bytes_sent += bytes;
    rd_traffic_count(&kv->traffic, op_chan(op), 0, 1, bytes);
}

static void set_sub_error(rd_kv *kv, kv_sub *s, int rc, const char *fmt, ...) RD_PRINTF(4, 5);
static void set_sub_error(rd_kv *kv, kv_sub *s, int rc, const char *fmt, ...) {
    kv_handle *H = &kv->handles[s->handle];
    s->status = rc;
    if (H->status != RD_OK)
        return;
    H->status = rc;
    char nb[24], text[RD_MSG_ERRTEXT_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    set_text(H->msg, sizeof H->msg, "PS rank %d, %s: %s", kv->comm->ps_world[s->shard],
             rd_msg_op_name(s->op, nb, sizeof nb), text);
}

// The header message arrived: check it and decide whether a data message follows.
static void sub_header_done(rd_kv *kv, kv_sub *s) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    kv->ctr.bytes_recv += (uint64_t)s->reply_len;
    rd_traffic_count(&kv->traffic, op_chan(s->op), 1, 1, (uint64_t)s->reply_len);
    int rc = RD_OK;
    if (s->drained)
        rc = rd_err_set(&eb, RD_ERR_PROTO, "reply of %lld bytes (unexpected size)",
                        (long long)s->reply_len);
    if (rc == RD_OK)
        rc = rd_msg_decode(s->rbuf, (size_t)s->reply_len, &s->h, &eb);
    if (rc == RD_OK)
        rc = rd_msg_check_reply(&s->h, s->op, s->req_id, &eb);
    if (rc != RD_OK) {
        set_sub_error(kv, s, rc, "%s", eb.msg);
        s->phase = 4;
        return;
    }
    s->rlen = (size_t)s->reply_len - RD_MSG_HEADER_BYTES;
    if (s->h.status != RD_OK) {
        size_t len = s->rlen > RD_MSG_ERRTEXT_MAX ? RD_MSG_ERRTEXT_MAX : s->rlen;
        set_sub_error(kv, s, s->h.status < 0 ? s->h.status : RD_ERR_PROTO, "%.*s", (int)len,
                      (const char *)s->rbuf + RD_MSG_HEADER_BYTES);
        s->phase = 4;
        return;
    }
    if (s->op == RD_OP_PULL && s->shm) {
        // The values are in the region already: the header must say so, for these keys.
        if (!(s->h.flags & RD_MSG_FLAG_SHM) || (s->h.flags & RD_MSG_FLAG_SPLIT) ||
            s->h.count != s->n || s->h.dim != s->dim || s->rlen != 0) {
            set_sub_error(kv, s, RD_ERR_PROTO,
                          "shared-memory pull reply with flags 0x%x for %" PRIu64
                          " keys at dim %u (%zu keys at dim %zu requested)",
                          (unsigned)s->h.flags, s->h.count, (unsigned)s->h.dim, s->n, s->dim);
            s->phase = (s->h.flags & RD_MSG_FLAG_SPLIT) ? 2 : 4;
            return;
        }
        s->phase = 4;
        return;
    }
    if (s->op == RD_OP_PULL) {
        if (!(s->h.flags & RD_MSG_FLAG_SPLIT) || s->h.count != s->n || s->h.dim != s->dim) {
            set_sub_error(kv, s, RD_ERR_PROTO,
                          "pull reply without its values (%" PRIu64
                          " keys announced, %zu requested)",
                          s->h.count, s->n);
            // A data message may still come; collect (and drain) it if flagged.
            s->phase = (s->h.flags & RD_MSG_FLAG_SPLIT) ? 2 : 4;
            return;
        }
        s->phase = 2;
        return;
    }
    s->phase = 4;
}

// Interpret a completed request (both messages of a pull are in).
static void sub_finish(rd_kv *kv, kv_sub *s) {
    if (s->status != RD_OK)
        return;
    if (s->op == RD_OP_PULL) {
        const float *src =
            s->shm ? (const float *)(const void *)(kv->shm.base + s->reply_off) : s->svals;
        if (s->out) {
            // Scatter the shard's rows back to the caller's order.
            for (size_t i = 0; i < s->n; i++)
                memcpy(s->out + (size_t)s->spos[i] * s->dim, src + i * s->dim,
                       s->dim * sizeof(float));
        } else if (s->shm) {
            memcpy(s->dst, src, s->n * s->dim * sizeof(float));
        }
        if (s->shm) { // the values crossed through the region: count them as received
            const uint64_t bytes = (uint64_t)s->n * s->dim * sizeof(float);
            kv->ctr.bytes_recv += bytes;
            rd_traffic_count(&kv->traffic, op_chan(s->op), 1, 0, bytes);
        }
        kv->ctr.keys_pulled += s->n;
    } else if (s->op == RD_OP_PUSH) {
        kv->ctr.keys_pushed += s->n;
    }
}

// Advance one sub-request; returns 1 if anything happened.
static int sub_progress(rd_kv *kv, kv_sub *s) {
    if (s->complete)
        return 0;
    int did = 0;
    const int dest = kv->comm->ps_world[s->shard];
    const int slot = (int)rd_msg_slot(s->req_id);
    if (!s->send_done) {
        RD_MPI_CHECK(MPI_Test(&s->sreq, &s->send_done, MPI_STATUS_IGNORE));
        did |= s->send_done;
    }
    if (s->phase == 0 || s->phase == 2) {
        // Probe the next message (header, then data) and receive it by its actual size.
        int flag = 0;
        MPI_Message mh;
        MPI_Status st;
        int tag = s->phase == 0 ? RD_TAG_PS_REPLY_BASE + slot : RD_TAG_PS_DATA_BASE + slot;
        RD_MPI_CHECK(MPI_Improbe(dest, tag, kv->c, &flag, &mh, &st));
        if (flag) {
            MPI_Count n = 0;
            RD_MPI_CHECK(MPI_Get_count_c(&st, MPI_BYTE, &n));
            int ok;
            if (s->phase == 0) {
                s->reply_len = n;
                ok = n >= RD_MSG_HEADER_BYTES && n <= RD_MSG_HEADER_BYTES + RBUF_MAX &&
                     ensure((void **)&s->rbuf, &s->rbuf_cap, (size_t)n, 0) == RD_OK;
                if (ok)
                    RD_MPI_CHECK(MPI_Imrecv_c(s->rbuf, n, MPI_BYTE, &mh, &s->rreq));
            } else {
                kv->ctr.bytes_recv += (uint64_t)n;
                rd_traffic_count(&kv->traffic, op_chan(s->op), 1, 1, (uint64_t)n);
                ok = s->status == RD_OK && (size_t)n == s->dst_bytes;
                if (ok)
                    RD_MPI_CHECK(MPI_Imrecv_c(s->dst, n, MPI_BYTE, &mh, &s->rreq));
                else if (s->status == RD_OK)
                    set_sub_error(kv, s, RD_ERR_PROTO, "pull values of %lld bytes, expected %zu",
                                  (long long)n, s->dst_bytes);
            }
            if (!ok) {
                // Unexpected size: drain it (bytes discarded) and report a protocol error.
                MPI_Datatype dt;
                rd__drain_type(n, s->drain_hdr, kv->bounce, sizeof kv->bounce, &dt);
                RD_MPI_CHECK(MPI_Imrecv(MPI_BOTTOM, 1, dt, &mh, &s->rreq));
                RD_MPI_CHECK(MPI_Type_free(&dt));
                if (s->phase == 0)
                    s->drained = 1;
            }
            s->phase++;
            did = 1;
        }
    }
    if (s->phase == 1 || s->phase == 3) {
        int done = 0;
        RD_MPI_CHECK(MPI_Test(&s->rreq, &done, MPI_STATUS_IGNORE));
        if (done) {
            did = 1;
            if (s->phase == 1)
                sub_header_done(kv, s);
            else
                s->phase = 4;
        }
    }
    if (s->send_done && s->phase == 4) {
        sub_finish(kv, s);
        s->complete = 1;
        did = 1;
    }
    return did;
}

// Progress every sub of handle h; *all_done set when complete.
static int handle_progress(rd_kv *kv, int h, int *all_done) {
    int did = 0, done = 1;
    for (int i = kv->handles[h].head; i >= 0; i = kv->subs[i].next) {
        did |= sub_progress(kv, &kv->subs[i]);
        done &= kv->subs[i].complete;
    }
    *all_done = done;
    return did;
}

// Release a complete handle; returns its status.
static int handle_release(rd_kv *kv, int h) {
    kv_handle *H = &kv->handles[h];
    int i = H->head;
    while (i >= 0) {
        int n = kv->subs[i].next;
        sub_free(kv, i);
        i = n;
    }
    H->active = 0;
    H->head = -1;
    return H->status;
}

static void reap_detached(rd_kv *kv) {
    for (int h = 0; h < RD_KV_MAX_HANDLES; h++) {
        kv_handle *H = &kv->handles[h];
        if (!H->active || !H->detached)
            continue;
        int done = 0;
        handle_progress(kv, h, &done);
        if (!done)
            continue;
        int rc = handle_release(kv, h);
        if (rc != RD_OK && kv->deferred_status == RD_OK) {
            kv->deferred_status = rc;
            set_text(kv->deferred_msg, sizeof kv->deferred_msg, "%s", H->msg);
        }
    }
}

// Poll handle h to completion (backoff), without releasing it.
static void handle_complete(rd_kv *kv, int h) {
    rd_backoff bo;
    rd_backoff_hot(&bo, kv->poll_us_max, CLIENT_HOT_US);
    for (;;) {
        int done = 0;
        int did = handle_progress(kv, h, &done);
        if (done)
            return;
        // Progress (a header in, a send done): the rest usually follows at once.
        if (did)
            rd_backoff_hot(&bo, kv->poll_us_max, CLIENT_HOT_US);
        else
            rd_backoff_wait(&bo);
    }
}

static int take_deferred(rd_kv *kv) {
    int rc = kv->deferred_status;
    if (rc != RD_OK) {
        rd_err_set(&kv->err, rc, "%s", kv->deferred_msg);
        kv->deferred_status = RD_OK;
    }
    return rc;
}

// A timestamp that can have been issued: below next_ts, or any after the wrap past INT_MAX
// (a request issued just before the wrap is still outstanding then).
static int issued(const rd_kv *kv, int ts) {
    return ts >= 0 && (kv->wrapped || ts < kv->next_ts);
}

int rd_kv_wait(rd_kv *kv, int ts) {
    rd_errbuf_clear(&kv->err);
    if (!issued(kv, ts))
        return rd_err_set(&kv->err, RD_ERR_ARG, "rd_kv_wait: timestamp %d was never issued", ts);
    int h = ts % RD_KV_MAX_HANDLES;
    kv_handle *H = &kv->handles[h];
    int rc = RD_OK;
    if (H->active && H->ts == ts && !H->detached) {
        handle_complete(kv, h);
        rc = handle_release(kv, h);
        if (rc != RD_OK)
            rd_err_set(&kv->err, rc, "%s", H->msg);
    }
    reap_detached(kv);
    if (rc == RD_OK)
        rc = take_deferred(kv);
    return rc;
}

int rd_kv_test(rd_kv *kv, int ts, int *done) {
    rd_errbuf_clear(&kv->err);
    *done = 0;
    if (!issued(kv, ts))
        return rd_err_set(&kv->err, RD_ERR_ARG, "rd_kv_test: timestamp %d was never issued", ts);
    int h = ts % RD_KV_MAX_HANDLES;
    kv_handle *H = &kv->handles[h];
    if (!H->active || H->ts != ts || H->detached) {
        *done = 1;
        return RD_OK;
    }
    int all = 0;
    handle_progress(kv, h, &all);
    if (!all)
        return RD_OK;
    *done = 1;
    int rc = handle_release(kv, h);
    if (rc != RD_OK)
        rd_err_set(&kv->err, rc, "%s", H->msg);
    return rc;
}

int rd_kv_wait_all(rd_kv *kv) {
    int first = RD_OK;
    char msg[sizeof kv->err.msg];
    msg[0] = '\0';
    for (int h = 0; h < RD_KV_MAX_HANDLES; h++) {
        kv_handle *H = &kv->handles[h];
        if (!H->active)
            continue;
        handle_complete(kv, h);
        int rc = handle_release(kv, h);
        if (rc != RD_OK && first == RD_OK) {
            first = rc;
            set_text(msg, sizeof msg, "%s", H->msg);
        }
    }
    rd_errbuf_clear(&kv->err);
    if (first != RD_OK)
        rd_err_set(&kv->err, first, "%s", msg);
    int d = take_deferred(kv);
    return first != RD_OK ? first : d;
}

// ---------------------------------------------------------------------------------------------
// Pull / push

// Grow a staging buffer to at least `need` bytes (next power of two: batch sizes vary, and
// re-allocating large buffers every step would cost page faults). Contents are not kept.
static int ensure(void **p, size_t *cap, size_t need, int aligned) {
    if (*cap >= need)
        return RD_OK;
    size_t c = 256;
    while (c < need && c < ((size_t)1 << 62))
        c <<= 1;
    if (c < need)
        c = need;
    if (aligned)
        rd_aligned_free(*p);
    else
        rd_free(*p);
    *cap = 0;
    *p = aligned ? rd_aligned_alloc(c) : rd_malloc(c);
    if (!*p)
        return RD_ERR_NOMEM;
    *cap = c;
    rd__advise_huge(*p, c); // request buffers are read by the server through CMA
    return RD_OK;
}

static int check_keys(rd_kv *kv, const uint64_t *keys, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (keys[i] == 0)
            return rd_err_set(&kv->err, RD_ERR_ARG, "key %zu is 0 (reserved)", i);
        if (i && keys[i] <= keys[i - 1])
            return rd_err_set(&kv->err, RD_ERR_ARG,
                              "keys must be strictly increasing (sorted, unique): keys[%zu] = "
                              "%" PRIu64 " <= keys[%zu] = %" PRIu64 " (use rd_kv_dedup)",
                              i, keys[i], i - 1, keys[i - 1]);
    }
    return RD_OK;
}

// Create the region (once) and ATTACH it to shard p, waiting for the answer. A refusal (another
// node, no /proc access) leaves shard p on MPI for the rest of the run; so does any failure here.
static void shm_attach(rd_kv *kv, int p) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (!kv->shm.base) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        uint64_t id = rd_mix64(((uint64_t)(uint32_t)getpid() << 32) ^ (uint64_t)kv->comm->rank ^
                               ((uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec));
        if (rd__shm_create(kv->cfg->ps.shm_bytes, id, &kv->shm, &kv->shm_att, &eb) != RD_OK) {
            RD_LOG_INFO("no shared-memory region (%s): PS payloads go through MPI", eb.msg);
            kv->shm_on = 0;
            return;
        }
        rd__shm_arena_init(&kv->arena, kv->shm.bytes);
    }
    int h = 0;
    if (kv->n_free < 1 || handle_open(kv, RD_OP_ATTACH, 0, &h) != RD_OK)
        return; // no free slot now: ask again at the next pull or push
    kv->shm_state[p] = -1;
    int i = sub_alloc(kv);
    kv->subs[i].shard = p;
    handle_add(kv, h, i);
    if (ensure((void **)&kv->subs[i].sbuf, &kv->subs[i].sbuf_cap,
               RD_MSG_HEADER_BYTES + RD_MSG_ATTACH_BYTES, 1) != RD_OK) {
        handle_release(kv, h);
        return;
    }
    rd__shm_attach_encode(&kv->shm_att, kv->subs[i].sbuf + RD_MSG_HEADER_BYTES);
    sub_send(kv, i, RD_OP_ATTACH, 0, 0, 0, RD_MSG_ATTACH_BYTES);
    handle_complete(kv, h);
    if (handle_release(kv, h) == RD_OK)
        kv->shm_state[p] = 1;
    else
        RD_LOG_INFO("PS rank %d does not map this worker's shared memory (%s): its payloads go "
                    "through MPI",
                    kv->comm->ps_world[p], kv->handles[h].msg);
}

// Put sub s's payload (and a PULL's values) in the region if both ranges fit; otherwise it
// stays an MPI request.
static void shm_place(rd_kv *kv, kv_sub *s, unsigned op, size_t payload, size_t reply) {
    uint64_t ro = 0, po = 0;
    if (rd__shm_alloc(&kv->arena, payload, &ro) != RD_OK)
        return;
    if (op == RD_OP_PULL && rd__shm_alloc(&kv->arena, reply, &po) != RD_OK) {
        rd__shm_release(&kv->arena, ro);
        return;
    }
    s->shm = 1;
    s->op = op; // sub_free releases the reply range of a PULL even if it is never sent
    s->req_off = ro;
    s->req_bytes = payload;
    s->reply_off = po;
    s->req = kv->shm.base + ro;
}

static int issue(rd_kv *kv,
                 unsigned op,
                 int table,
                 const uint64_t *keys,
                 size_t n,
                 const float *grads,
                 float *vals,
                 int *ts) {
    rd_errbuf_clear(&kv->err);
    if (kv->shut)
        return rd_err_set(&kv->err, RD_ERR_STATE, "request after rd_kv_shutdown");
    if (!ts || table < 0 || table >= kv->n_tables || (n && !keys) ||
        (n && op == RD_OP_PULL && !vals) || (n && op == RD_OP_PUSH && !grads))
        return rd_err_set(&kv->err, RD_ERR_ARG, "bad arguments (table %d of %d, n %zu)", table,
                          kv->n_tables, n);
    reap_detached(kv);
    int rc = check_keys(kv, keys, n);
    if (rc != RD_OK)
        return rc;
    const size_t dim = (size_t)kv->dims[table];
    const uint64_t per = op == RD_OP_PULL ? 8 : 8 + 4 * (uint64_t)dim;
    const size_t maxk = (size_t)(kv->max_payload / per);
    if (maxk == 0)
        return rd_err_set(&kv->err, RD_ERR_CONFIG,
                          "ps.max_msg_bytes (%" PRIu64 ") cannot hold one key of table %s",
                          kv->max_payload, kv->cfg->ps.tables[table].name);
    const int P = kv->P;

    // 1. Count keys per shard and the messages they need.
    size_t total_subs = 0;
    if (P == 1) {
        kv->cnt[0] = n;
    } else {
        if ((rc = ensure((void **)&kv->shard_of, &kv->shard_of_cap, n * sizeof(int), 0)))
            return rd_err_set(&kv->err, rc, "out of memory splitting %zu keys", n);
        memset(kv->cnt, 0, (size_t)P * sizeof *kv->cnt);
        for (size_t i = 0; i < n; i++) {
            int s = rd_shard_of(keys[i], P);
            kv->shard_of[i] = s;
            kv->cnt[s]++;
        }
    }
    for (int p = 0; p < P; p++)
        total_subs += (kv->cnt[p] + maxk - 1) / maxk;
    if (kv->shm_on)
        for (int p = 0; p < P; p++)
            if (kv->cnt[p] > 0 && kv->shm_state[p] == 0)
                shm_attach(kv, p);
    if (total_subs > (size_t)kv->n_free) {
        reap_detached(kv);
        if (total_subs > (size_t)kv->n_free)
            return rd_err_set(&kv->err, RD_ERR_FULL,
                              "%zu messages needed, %d request slots free: wait on outstanding "
                              "requests",
                              total_subs, kv->n_free);
    }
    int h = 0; // set by handle_open; initialised for GCC's flow analysis
    if ((rc = handle_open(kv, op, 0, &h)) != RD_OK)
        return rc;

    // 2. Allocate the subs, grouped by shard, each with its contiguous request buffer
    //    [header | keys | grads] (and, for P > 1 pulls, the values + positions to scatter).
    size_t k = 0;
    for (int p = 0; p < P; p++) {
        kv->first[p] = (int)k;
        for (size_t left = kv->cnt[p]; left > 0;) {
            size_t c = left < maxk ? left : maxk;
            int i = sub_alloc(kv);
            kv_sub *s = &kv->subs[i];
            s->shard = p;
            s->n = c;
            s->dim = dim;
            handle_add(kv, h, i);
            kv->chunk[k++] = i;
            left -= c;
            size_t payload = c * (size_t)per;
            if (kv->shm_on && kv->shm_state[p] == 1)
                shm_place(kv, s, op, payload, c * dim * sizeof(float));
            if (s->shm) {
                rc = ensure((void **)&s->sbuf, &s->sbuf_cap,
                            RD_MSG_HEADER_BYTES + RD_MSG_SHM_DESC_BYTES, 1);
            } else {
                rc = ensure((void **)&s->sbuf, &s->sbuf_cap, RD_MSG_HEADER_BYTES + payload, 1);
                if (!rc)
                    s->req = s->sbuf + RD_MSG_HEADER_BYTES;
                if (!rc && P > 1 && op == RD_OP_PULL)
                    rc = ensure((void **)&s->svals, &s->svals_cap, c * dim * sizeof(float), 1);
            }
            if (!rc && P > 1 && op == RD_OP_PULL)
                rc = ensure((void **)&s->spos, &s->spos_cap, c * sizeof(uint32_t), 0);
            if (rc) {
                handle_release(kv, h);
                return rd_err_set(&kv->err, RD_ERR_NOMEM,
                                  "out of memory staging %zu keys for PS rank %d", c, p);
            }
        }
    }
    kv->first[P] = (int)k;

    // 3. Fill and send. Keys stay in increasing order within each message.
    if (P == 1) {
        size_t off = 0;
        for (size_t j = 0; j < k; j++) {
            kv_sub *s = &kv->subs[kv->chunk[j]];
            size_t c = s->n;
            uint64_t *sk = (uint64_t *)(void *)s->req;
            memcpy(sk, keys + off, c * 8);
            if (op == RD_OP_PULL) {
                s->dst = vals + off * dim; // values land in place
                s->dst_bytes = c * dim * sizeof(float);
            } else {
                memcpy(sk + c, grads + off * dim, c * dim * sizeof(float));
            }
            sub_send(kv, kv->chunk[j], op, (uint32_t)table, c, (uint32_t)dim, c * (size_t)per);
            off += c;
        }
    } else {
        // Gather per shard: cursor per shard over its subs (chunk[]) and the fill position.
        size_t *fill = kv->cnt; // the counts are no longer needed
        int *cur = kv->first;
        memset(fill, 0, (size_t)P * sizeof *fill);
        for (size_t i = 0; i < n; i++) {
            int p = kv->shard_of[i];
            kv_sub *s = &kv->subs[kv->chunk[cur[p]]];
            size_t f = fill[p]++;
            uint64_t *sk = (uint64_t *)(void *)s->req;
            sk[f] = keys[i];
            if (op == RD_OP_PUSH)
                memcpy((float *)(void *)(sk + s->n) + f * dim, grads + i * dim,
                       dim * sizeof(float));
            else
                s->spos[f] = (uint32_t)i;
            if (fill[p] == s->n) {
                cur[p]++;
                fill[p] = 0;
            }
        }
        for (size_t j = 0; j < k; j++) {
            int i = kv->chunk[j];
            kv_sub *s = &kv->subs[i];
            if (op == RD_OP_PULL) {
                s->dst = s->svals;
                s->dst_bytes = s->n * dim * sizeof(float);
                s->out = vals;
            }
            sub_send(kv, i, op, (uint32_t)table, s->n, (uint32_t)dim, s->n * (size_t)per);
        }
    }
    *ts = kv->handles[h].ts;
    return RD_OK;
}

int rd_kv_pull(rd_kv *kv, int table, const uint64_t *keys, size_t n, float *vals, int *ts) {
    return issue(kv, RD_OP_PULL, table, keys, n, NULL, vals, ts);
}

int rd_kv_push(rd_kv *kv, int table, const uint64_t *keys, const float *grads, size_t n, int *ts) {
    return issue(kv, RD_OP_PUSH, table, keys, n, grads, NULL, ts);
}

// ---------------------------------------------------------------------------------------------
// Control requests: one message per shard

// Open a handle with one sub per shard (no payload yet). Returns the handle slot.
static int open_per_shard(rd_kv *kv, unsigned op, int detached, size_t payload, int *h) {
    if (kv->n_free < kv->P) {
        reap_detached(kv);
        if (kv->n_free < kv->P)
            return rd_err_set(&kv->err, RD_ERR_FULL, "no free request slots: wait on requests");
    }
    int rc = handle_open(kv, op, detached, h);
    if (rc != RD_OK)
        return rc;
    for (int p = kv->P - 1; p >= 0; p--) {
        int i = sub_alloc(kv);
        kv->subs[i].shard = p;
        handle_add(kv, *h, i);
    }
    for (int i = kv->handles[*h].head; i >= 0; i = kv->subs[i].next)
        if (ensure((void **)&kv->subs[i].sbuf, &kv->subs[i].sbuf_cap, RD_MSG_HEADER_BYTES + payload,
                   1) != RD_OK) {
            handle_release(kv, *h);
            return rd_err_set(&kv->err, RD_ERR_NOMEM, "out of memory for a request buffer");
        }
    return RD_OK;
}

int rd_kv_clock(rd_kv *kv, int *ts) {
    rd_errbuf_clear(&kv->err);
    if (kv->shut)
        return rd_err_set(&kv->err, RD_ERR_STATE, "request after rd_kv_shutdown");
    reap_detached(kv);
    int h;
    int rc = open_per_shard(kv, RD_OP_CLOCK, ts == NULL, 0, &h);
    if (rc != RD_OK)
        return rc;
    for (int i = kv->handles[h].head; i >= 0; i = kv->subs[i].next)
        sub_send(kv, i, RD_OP_CLOCK, 0, 0, 0, 0);
    kv->step++;
    if (ts)
        *ts = kv->handles[h].ts;
    return RD_OK;
}

int rd_kv_stats(rd_kv *kv, int table, rd_table_stats *total, rd_table_stats *per_shard) {
    rd_errbuf_clear(&kv->err);
    if (table < 0 || table >= kv->n_tables || !total)
        return rd_err_set(&kv->err, RD_ERR_ARG, "rd_kv_stats: bad table %d", table);
    int h;
    int rc = open_per_shard(kv, RD_OP_STATS, 0, 0, &h);
    if (rc != RD_OK)
        return rc;
    for (int i = kv->handles[h].head; i >= 0; i = kv->subs[i].next)
        sub_send(kv, i, RD_OP_STATS, (uint32_t)table, 0, 0, 0);
    handle_complete(kv, h);
    memset(total, 0, sizeof *total);
    total->now = INT64_MIN;
    rc = kv->handles[h].status;
    for (int i = kv->handles[h].head; rc == RD_OK && i >= 0; i = kv->subs[i].next) {
        kv_sub *s = &kv->subs[i];
        if (s->rlen != RD__STATS_RECORD) {
            rc = RD_ERR_PROTO;
            set_text(kv->handles[h].msg, sizeof kv->handles[h].msg,
                     "STATS reply of %zu bytes from PS rank %d", s->rlen,
                     kv->comm->ps_world[s->shard]);
            break;
        }
        uint32_t idx;
        rd_table_stats st;
        rd__stats_decode(s->rbuf + RD_MSG_HEADER_BYTES, &idx, &st);
        if (per_shard)
            per_shard[s->shard] = st;
        total->rows += st.rows;
        total->pending += st.pending;
        total->bytes += st.bytes;
        total->admitted += st.admitted;
        total->rejected += st.rejected;
        total->evicted += st.evicted;
        total->pulled += st.pulled;
        total->pushed += st.pushed;
        if (st.now > total->now)
            total->now = st.now;
    }
    if (rc != RD_OK)
        rd_err_set(&kv->err, rc, "%s", kv->handles[h].msg);
    handle_release(kv, h);
    return rc;
}

// Send a checkpoint request (SAVE or LOAD) to every shard and wait for all replies. With a
// manifest m, each shard is sent its expected CRC.
static int ckpt_round(rd_kv *kv,
                      unsigned op,
                      rd__ckpt_req *req,
                      const rd_ckpt_manifest *m,
                      rd_ckpt_shard_info *infos,
                      rd_errbuf *eb) {
    int h;
    size_t bytes = rd__ckpt_req_bytes(req);
    int rc = open_per_shard(kv, op, 0, bytes, &h);
    if (rc != RD_OK)
        return rd_err_set(eb, rc, "%s", kv->err.msg);
    for (int i = kv->handles[h].head; i >= 0; i = kv->subs[i].next) {
        kv_sub *s = &kv->subs[i];
        if (m) {
            req->flags |= RD__CKPT_FLAG_CRC;
            req->crc = m->shard_crc[s->shard];
        }
        rd__ckpt_req_encode(req, s->sbuf + RD_MSG_HEADER_BYTES);
        sub_send(kv, i, op, 0, 0, 0, bytes);
    }
    handle_complete(kv, h);
    rc = kv->handles[h].status;
    for (int i = kv->handles[h].head; rc == RD_OK && i >= 0; i = kv->subs[i].next) {
        kv_sub *s = &kv->subs[i];
        rc = rd__shard_info_decode(s->rbuf + RD_MSG_HEADER_BYTES, s->rlen, &infos[s->shard], eb);
        if (rc == RD_OK && infos[s->shard].n_tables != req->n_tables)
            rc = rd_err_set(eb, RD_ERR_PROTO, "PS rank %d answered for %u tables, not %u",
                            kv->comm->ps_world[s->shard], infos[s->shard].n_tables, req->n_tables);
    }
    if (kv->handles[h].status != RD_OK)
        rd_err_set(eb, rc, "%s", kv->handles[h].msg);
    handle_release(kv, h);
    return rc;
}

static int
table_list(rd_kv *kv, const int *tables, int n_tables, rd__ckpt_req *req, rd_errbuf *eb) {
    if (!tables) {
        req->n_tables = (uint32_t)kv->n_tables;
        for (int i = 0; i < kv->n_tables; i++)
            req->tables[i] = (uint32_t)i;
        return RD_OK;
    }
    if (n_tables < 1 || n_tables > kv->n_tables)
        return rd_err_set(eb, RD_ERR_ARG, "%d tables requested (1..%d)", n_tables, kv->n_tables);
    req->n_tables = (uint32_t)n_tables;
    for (int i = 0; i < n_tables; i++) {
        if (tables[i] < 0 || tables[i] >= kv->n_tables)
            return rd_err_set(eb, RD_ERR_ARG, "table index %d out of range", tables[i]);
        for (int j = 0; j < i; j++)
            if (tables[j] == tables[i])
                return rd_err_set(eb, RD_ERR_ARG, "table index %d listed twice", tables[i]);
        req->tables[i] = (uint32_t)tables[i];
    }
    return RD_OK;
}

// The request of a SAVE or LOAD (`fn` names it in messages) of folder `dir` and the `tables`
// (NULL = all): refused after shutdown, for an empty path, or one too long for the partial
// folder a save builds beside it. Clears kv->err (rd_kv_errmsg) first, as the other calls do.
static int ckpt_req_make(rd_kv *kv,
                         const char *fn,
                         const char *dir,
                         const int *tables,
                         int n_tables,
                         rd__ckpt_req *req,
                         rd_errbuf *eb) {
    rd_errbuf_clear(&kv->err);
    if (kv->shut)
        return rd_err_set(eb, RD_ERR_STATE, "%s after rd_kv_shutdown", fn);
    if (!dir || !*dir)
        return rd_err_set(eb, RD_ERR_ARG, "checkpoint folder: empty path");
    if (strlen(dir) > RD_CKPT_PARTIAL_MAX)
        return rd_err_set(eb, RD_ERR_ARG,
                          "checkpoint folder %s: %zu bytes, longer than the limit of %d bytes", dir,
                          strlen(dir), RD_CKPT_PARTIAL_MAX);
    memset(req, 0, sizeof *req);
    snprintf(req->dir, sizeof req->dir, "%s", dir);
    return table_list(kv, tables, n_tables, req, eb);
}

int rd_kv_save(rd_kv *kv, const char *dir, const int *tables, int n_tables, rd_errbuf *eb) {
    rd__ckpt_req req;
    int rc = ckpt_req_make(kv, "rd_kv_save", dir, tables, n_tables, &req, eb);
    if (rc != RD_OK)
        return rc;
    rd_ckpt_shard_info *infos = rd_calloc((size_t)kv->P, sizeof *infos);
    rd_ckpt_manifest *m = rd_calloc(1, sizeof *m);
    if (!infos || !m) {
        rd_free(infos);
        rd_free(m);
        return rd_err_set(eb, RD_ERR_NOMEM, "rd_kv_save: out of memory");
    }
    rc = ckpt_round(kv, RD_OP_SAVE, &req, NULL, infos, eb);
    if (rc == RD_OK) {
        m->version = RD_CKPT_VERSION;
        m->n_shards = (uint32_t)kv->P;
        m->step = kv->step;
        m->seed = kv->cfg->run.seed;
        m->n_tables = req.n_tables;
        for (uint32_t i = 0; i < req.n_tables; i++) {
            const rd_table_config *tc = &kv->cfg->ps.tables[req.tables[i]];
            rd_ckpt_table *t = &m->tables[i];
            snprintf(t->name, sizeof t->name, "%s", tc->name);
            t->index = req.tables[i];
            t->dim = (uint32_t)tc->dim;
            t->optim = (uint32_t)tc->optim.kind;
            t->slots = (uint32_t)rd_optim_slots(tc->optim.kind);
            for (int p = 0; p < kv->P; p++) {
                t->rows += infos[p].rows[i];
                t->pending += infos[p].pending[i];
            }
        }
        for (int p = 0; p < kv->P; p++) {
            m->shard_crc[p] = infos[p].crc;
            for (uint32_t i = 0; i < req.n_tables; i++)
                m->shard_rows[p] += infos[p].rows[i];
        }
        rc = rd_ckpt_write_manifest(dir, m, eb);
    }
    if (rc != RD_OK)
        rd_err_set(&kv->err, rc, "%s", eb ? eb->msg : "checkpoint failed");
    rd_free(infos);
    rd_free(m);
    return rc;
}

int rd_kv_load(
    rd_kv *kv, const char *dir, const int *tables, int n_tables, int64_t *step, rd_errbuf *eb) {
    rd__ckpt_req req;
    int rc = ckpt_req_make(kv, "rd_kv_load", dir, tables, n_tables, &req, eb);
    if (rc != RD_OK)
        return rc;
    rd_ckpt_manifest *m = rd_calloc(1, sizeof *m);
    rd_ckpt_shard_info *infos = rd_calloc((size_t)kv->P, sizeof *infos);
    if (!infos || !m) {
        rd_free(infos);
        rd_free(m);
        return rd_err_set(eb, RD_ERR_NOMEM, "rd_kv_load: out of memory");
    }
    rc = rd_ckpt_read_manifest(dir, m, eb);
    if (rc == RD_OK && m->n_shards != (uint32_t)kv->P)
        rc = rd_err_set(eb, RD_ERR_SCHEMA,
                        "%s has %u shards but this run has %d PS ranks (restore needs the same "
                        "layout)",
                        dir, m->n_shards, kv->P);
    if (rc == RD_OK && m->seed != kv->cfg->run.seed)
        rc = rd_err_set(eb, RD_ERR_CONFIG,
                        "%s was written with run.seed %" PRIu64 ", this run uses %" PRIu64
                        " (new rows would be initialised differently)",
                        dir, m->seed, kv->cfg->run.seed);
    for (uint32_t i = 0; rc == RD_OK && i < req.n_tables; i++) {
        const rd_table_config *tc = &kv->cfg->ps.tables[req.tables[i]];
        const rd_ckpt_table *ct = NULL;
        for (uint32_t j = 0; j < m->n_tables; j++)
            if (strcmp(m->tables[j].name, tc->name) == 0)
                ct = &m->tables[j];
        if (!ct)
            rc = rd_err_set(eb, RD_ERR_SCHEMA, "%s has no table %s", dir, tc->name);
        else if (ct->dim != (uint32_t)tc->dim || ct->optim != (uint32_t)tc->optim.kind)
            rc = rd_err_set(eb, RD_ERR_SCHEMA,
                            "%s: table %s is dim %u %s, the config says dim %d %s", dir, tc->name,
                            ct->dim, rd_optim_name((int)ct->optim), tc->dim,
                            rd_optim_name(tc->optim.kind));
        else if (ct->index != req.tables[i])
            rc = rd_err_set(eb, RD_ERR_SCHEMA,
                            "%s: table %s was ps.tables[%u] when saved and is ps.tables[%u] now "
                            "(keep the table order)",
                            dir, tc->name, ct->index, req.tables[i]);
    }
    // All shards or none: 1. every shard reads and verifies its file into tables kept aside
    // (STAGE; a shard mid-step or with a bad file refuses); 2. if all staged, COMMIT installs
    // them everywhere, else ABORT drops them everywhere and the first refusal is reported.
    if (rc == RD_OK) {
        req.flags = RD__CKPT_FLAG_STAGE;
        rc = ckpt_round(kv, RD_OP_LOAD, &req, m, infos, eb);
        if (rc == RD_OK) {
            req.flags = RD__CKPT_FLAG_COMMIT;
            rc = ckpt_round(kv, RD_OP_LOAD, &req, m, infos, eb);
        } else {
            rd_errbuf ab;
            rd_errbuf_clear(&ab);
            req.flags = RD__CKPT_FLAG_ABORT;
            int rc2 = ckpt_round(kv, RD_OP_LOAD, &req, m, infos, &ab);
            if (rc2 != RD_OK)
                RD_LOG_ERROR("aborting the LOAD of %s: %s", dir, ab.msg);
            rd_err_prefix(eb, "no shard was loaded: ");
        }
    }
    if (rc == RD_OK) {
        kv->step = m->step;
        if (step)
            *step = m->step;
    } else {
        rd_err_set(&kv->err, rc, "%s", eb ? eb->msg : "restore failed");
    }
    rd_free(infos);
    rd_free(m);
    return rc;
}

int rd_kv_shutdown(rd_kv *kv) {
    int rc = rd_kv_wait_all(kv);
    if (kv->shut)
        return rc;
    int h;
    int rc2 = open_per_shard(kv, RD_OP_SHUTDOWN, 0, 0, &h);
    if (rc2 != RD_OK)
        return rc2;
    for (int i = kv->handles[h].head; i >= 0; i = kv->subs[i].next)
        sub_send(kv, i, RD_OP_SHUTDOWN, 0, 0, 0, 0);
    handle_complete(kv, h);
    rc2 = handle_release(kv, h);
    if (rc2 != RD_OK)
        rd_err_set(&kv->err, rc2, "%s", kv->handles[h].msg);
    kv->shut = 1;
    return rc != RD_OK ? rc : rc2;
}
