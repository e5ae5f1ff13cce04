// server.c — the PS rank's request loop: receive, validate, defer or execute, reply.
//
// Workload: W workers in one or more jobs send PULL/PUSH batches (thousands of keys), one CLOCK
// per step, and rare STATS/SAVE/LOAD/SHUTDOWN. The loop must never block inside MPI (a blocked
// MPICH call spins a core, and a 2-core machine runs several ranks), must never crash on bad
// bytes, and in sync mode must produce the same rows for any P and any arrival order.
//
// Phases of one loop iteration:
//   1. Receive: MPI_Improbe sizes each request; MPI_Imrecv receives it into a pooled buffer
//      (or drains it into a bounce buffer when it is larger than ps.max_msg_bytes). Completed
//      receives are validated and queued per job, keeping each sender's order.
//   2. Serve: jobs take turns (one request per job per round). A request is executed when
//      eligible, otherwise deferred; a worker's later requests queue behind its deferred ones.
//      Step completion (sync) and clock advances (async) re-examine the deferred requests.
//   3. Complete sends: replies are MPI_Isend'ed from pooled buffers, tested here and recycled.
//   4. Back off: right after traffic busy-poll for SERVER_HOT_US; then, with nothing to do,
//      yield, then sleep 1, 2, 4 ... poll_us_max microseconds.
//
// Invariants:
// - every request gets exactly one reply (success or error), except that a worker's requests
//   still deferred when the loop ends (it sent SHUTDOWN mid-step) are dropped with a warning;
// - a sync job's buffered pushes all belong to step `done`; pulls/saves of step s run only when
//   done >= s; the optimizer runs once per key per step on the worker-ordered sum of gradients.
#include "rd/server.h"
#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/clock.h"
#include "rd/hash.h"
#include "rd/log.h"
#include "rd/msg.h"
#include "rd/optim.h"
#include "rd/tokens.h"

#include "ps_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MSG_NORMAL = 0, MSG_SHORT = 1, MSG_OVERSIZED = 2, MSG_NOMEM = 3 };

// Busy-poll window after traffic, microseconds (rd_backoff_hot): short enough that an idle
// server leaves its core almost at once, long enough to catch a request's follow-up messages.
#define SERVER_HOT_US 50

typedef struct srv_msg {
    struct srv_msg *next;
    unsigned char *buf; // header + payload (MSG_NORMAL), 64-byte aligned
    size_t cap;
    size_t len; // bytes received (the true message size)
    int kind;
    MPI_Request req;
    unsigned char small[RD_MSG_HEADER_BYTES]; // header of drained / short messages
    rd_msg_header h;
    int src, job, worker;
    uint32_t ckpt_flags;     // LOAD: the request's flags (phase bits), set by route()
    const unsigned char *pl; // the payload: buf + 64, or the request's range of the sender's
                             // shared-memory region (shm)
    int shm;                 // PULL/PUSH whose payload (and PULL reply) is in shared memory
    uint64_t shm_bytes;      // shm: payload bytes at pl
    float *shm_out;          // shm PULL: where the values go
} srv_msg;

typedef struct srv_send {
    unsigned char *buf;
    size_t cap;
    MPI_Request req[2]; // header (+ payload), and the data message of a split reply
    int n_req;
    int active;
    int reserved; // handed out by rd_server_reply_buffer, not yet sent
} srv_send;

typedef struct srv_job {
    int n;                            // workers of the job (PS ranks for the pseudo job)
    int pseudo;                       // 1: requests from PS ranks (STATS and user ops only)
    int64_t *clock;                   // (n) steps clocked by each worker
    int64_t done;                     // steps applied
    int64_t now;                      // async: latest stream time of the job's clocks
    int64_t step_time;                // sync: latest stream time among the current step's clocks
    int n_clocked;                    // sync: workers that clocked step `done`
    srv_msg **pend_head, **pend_tail; // (n) sync: buffered pushes of step `done`
    srv_msg *ready_head, *ready_tail;
    srv_msg *def_head, *def_tail;
    int *ndef;            // (n) deferred requests per worker
    unsigned *stop;       // (n) retry-pass stamps
    int *shut;            // (n) SHUTDOWN received
    uint64_t tables_used; // bit i: the job touched table i
    int changed;          // done/clock changed: re-examine deferred requests
    // A staged LOAD (phase 1 of an all-or-nothing load, see exec_load): tables read and
    // verified but not installed. While one is staged the job's PULL/PUSH/CLOCK/SAVE wait, so
    // the state it was checked against ("not in the middle of a step") holds until COMMIT.
    int staged;                          // 1: staged_* hold a load
    int staged_worker;                   // the worker that staged it
    uint32_t staged_n;                   // tables
    uint32_t staged_idx[RD_MAX_TABLES];  // their indices
    rd_table *staged_tab[RD_MAX_TABLES]; // (staged_n) owned until COMMIT/ABORT
    int64_t staged_step;
    rd_ckpt_shard_info staged_info;
} srv_job;

// Sum of one step's gradients per key (sync mode with several pushes of a table).
typedef struct srv_acc {
    uint64_t *slot_key; // (cap) 0 = empty
    uint32_t *slot_idx; // (cap)
    size_t cap;
    uint64_t *keys; // (n) insertion order
    int64_t *times; // (n) latest stream time of the key's pushes
    float *grads;   // (n, dim)
    size_t n, cap_n, dim;
} srv_acc;

typedef struct srv_user_op {
    rd_server_handler fn;
    void *user;
} srv_user_op;

struct rd_server {
    const rd_comm *comm;
    const rd_config *cfg;
    MPI_Comm c;
    int shard, P;
    int n_tables;
    rd_table *tables[RD_MAX_TABLES];
    uint64_t max_payload;
    int sync, staleness, poll_us_max;
    uint64_t seed;

    int n_jobs; // worker jobs; jobs[n_jobs] is the pseudo job of PS senders
    srv_job jobs[RD_MAX_JOBS + 1];
    int workers_total, workers_shut;

    // SIGTERM (shard 0 only, stop_poll): since when the run is stopping (0: it is not), and
    // which jobs said they have a checkpoint since the signal; stop_shard: the lowest other
    // shard that got the signal (-1: none). Another shard: whether it told shard 0 (stop_told).
    double stop_t0, stop_grace;
    unsigned stop_turn;
    int stop_acked[RD_MAX_JOBS];
    int stop_shard, stop_told;
    // SIGUSR1 (any shard, usr1_pass): the sends to the jobs' rank 0 of the last one passed on
    // (usr1_n of them, from usr1_buf).
    long long usr1_buf;
    MPI_Request usr1_req[RD_MAX_JOBS];
    int usr1_n;

    srv_msg *incoming_head, *incoming_tail; // posted receives, probe order
    srv_msg *free_msgs;
    unsigned *src_stamp; // (world size)
    unsigned stamp;
    unsigned pass; // retry_deferred pass number (per-worker stop stamps)

    srv_send *sends;
    size_t n_sends, cap_sends;

    srv_user_op user_ops[RD_OP_USER_MAX + 1];
    rd_server_save_hook save_hook; // rd_server_on_save: run before each SAVE
    void *save_user;
    srv_msg *cur;   // request being handled by a user handler
    int responded;  // it was answered
    long cur_reply; // index in sends of the buffer from rd_server_reply_buffer, or -1

    srv_acc acc;
    rd__shm_region *regions; // (world size) the shared-memory region each worker attached
    uint64_t n_requests, n_errors;
    unsigned char bounce[65536]; // drain target of oversized messages
};

// ---------------------------------------------------------------------------------------------
// Message and send-buffer pools

// Capacity for a pooled buffer of n bytes: the next power of two (at least 4 KiB).
static size_t grow_cap(size_t n) {
    size_t c = 4096;
    while (c < n && c < ((size_t)1 << 62))
        c <<= 1;
    return c < n ? n : c;
}

static srv_msg *msg_get(rd_server *s, size_t n) {
    // Best fit from the free list, else grow one.
    srv_msg **best = NULL, **pp = &s->free_msgs;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->cap >= n && (!best || (*pp)->cap < (*best)->cap))
            best = pp;
    srv_msg *m;
    if (best) {
        m = *best;
        *best = m->next;
    } else if (s->free_msgs) {
        m = s->free_msgs;
        s->free_msgs = m->next;
    } else {
        m = rd_xcalloc(1, sizeof *m);
    }
    m->next = NULL;
    m->kind = MSG_NORMAL;
    m->ckpt_flags = 0;
    if (m->cap < n) {
        size_t cap = grow_cap(n);
        rd_aligned_free(m->buf);
        m->cap = 0;
        m->buf = rd_aligned_alloc(cap);
        if (m->buf) {
            m->cap = cap;
            rd__advise_huge(m->buf, cap);
        } else {
            m->kind = MSG_NOMEM;
        }
    }
    return m;
}

static void msg_put(rd_server *s, srv_msg *m) {
    m->next = s->free_msgs;
    s->free_msgs = m;
}

static const unsigned char *msg_hdr(const srv_msg *m) {
    return m->kind == MSG_NORMAL ? m->buf : m->small;
}

static const unsigned char *msg_payload(const srv_msg *m) {
    return m->pl;
}

// Copy a shared-memory request's payload into a private buffer: the sender may reuse its
// range as soon as it has the reply, and a sync step keeps PULL keys and PUSH gradients until
// the step is applied. @return 0, or -1 when out of memory (nothing changed).
static int localize(srv_msg *m) {
    if (!m->shm)
        return 0;
    size_t need = RD_MSG_HEADER_BYTES + (size_t)m->shm_bytes;
    if (m->cap < need) {
        size_t cap = grow_cap(need);
        unsigned char *nb = rd_aligned_alloc(cap);
        if (!nb)
            return -1;
        memcpy(nb, m->buf, RD_MSG_HEADER_BYTES);
        rd_aligned_free(m->buf);
        m->buf = nb;
        m->cap = cap;
        rd__advise_huge(m->buf, cap);
    }
    memcpy(m->buf + RD_MSG_HEADER_BYTES, m->pl, (size_t)m->shm_bytes);
    m->pl = m->buf + RD_MSG_HEADER_BYTES;
    m->shm = 0;
    m->shm_out = NULL;
    return 0;
}

// A send buffer of at least `bytes` (NULL when out of memory and `fallible`).
static srv_send *send_get(rd_server *s, size_t bytes, int fallible) {
    srv_send *best = NULL, *any = NULL;
    for (size_t i = 0; i < s->n_sends; i++) {
        srv_send *b = &s->sends[i];
        if (b->active || b->reserved)
            continue;
        if (!any)
            any = b;
        if (b->cap >= bytes && (!best || b->cap < best->cap))
            best = b;
    }
    srv_send *b = best ? best : any;
    if (!b) {
        if (s->n_sends == s->cap_sends) {
            size_t nc = s->cap_sends ? s->cap_sends * 2 : 16;
            s->sends = rd_xrealloc(s->sends, nc * sizeof *s->sends);
            memset(s->sends + s->cap_sends, 0, (nc - s->cap_sends) * sizeof *s->sends);
            s->cap_sends = nc;
        }
        b = &s->sends[s->n_sends++];
    }
    if (b->cap < bytes) {
        // Grow geometrically: reply sizes vary from batch to batch, and re-allocating large
        // (mmap'ed) buffers costs page faults on every request.
        size_t cap = grow_cap(bytes);
        rd_aligned_free(b->buf);
        b->cap = 0;
        b->buf = fallible ? rd_aligned_alloc(cap) : rd_aligned_xalloc(cap);
        if (!b->buf)
            return NULL;
        b->cap = cap;
        rd__advise_huge(b->buf, cap);
    }
    b->n_req = 0;
    return b;
}

static int progress_sends(rd_server *s) {
    int work = 0;
    for (size_t i = 0; i < s->n_sends; i++) {
        srv_send *b = &s->sends[i];
        if (!b->active)
            continue;
        int done = 0;
        MPI_Status st[2];
        RD_MPI_CHECK(MPI_Testall(b->n_req, b->req, &done, st));
        if (done) {
            b->active = 0;
            work = 1;
        }
    }
    return work;
}

static int sends_active(const rd_server *s) {
    for (size_t i = 0; i < s->n_sends; i++)
        if (s->sends[i].active)
            return 1;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Replies

static int reply_tag(uint64_t req_id) {
    return RD_TAG_PS_REPLY_BASE + (int)rd_msg_slot(req_id);
}

// Where the error reply to m goes: its reply tag, unless the header could not be read (no
// magic) or a built-in op names a reserved reply slot (that tag belongs to another client of
// rd_comm.kv in the sender's process, e.g. the token store): then RD_TAG_PS_BADMSG.
static int error_tag(const srv_msg *m) {
    if (m->h.magic != RD_MSG_MAGIC)
        return RD_TAG_PS_BADMSG;
    int builtin = m->h.op >= 1 && m->h.op <= RD_OP_BUILTIN_MAX;
    if (builtin && rd_msg_slot_reserved(rd_msg_slot(m->h.req_id)))
        return RD_TAG_PS_BADMSG;
    return reply_tag(m->h.req_id);
}

// Fill the header of `b` for request m and send header + payload_bytes already in place.
static void reply_send_flags(rd_server *s,
                             const srv_msg *m,
                             srv_send *b,
                             int status,
                             uint64_t count,
                             uint32_t dim,
                             size_t payload_bytes,
                             int tag,
                             uint32_t flags) {
    rd_msg_header h;
    memset(&h, 0, sizeof h);
    h.magic = RD_MSG_MAGIC;
    h.version = RD_MSG_VERSION;
    h.op = m->h.op;
    h.status = status;
    h.table = m->h.table;
    h.count = count;
    h.dim = dim;
    h.flags = RD_MSG_FLAG_REPLY | flags;
    h.req_id = m->h.req_id;
    h.payload_bytes = payload_bytes;
    h.step = m->job >= 0 && m->job <= s->n_jobs ? s->jobs[m->job].done : 0;
    rd_msg_encode(&h, b->buf);
    RD_MPI_CHECK(MPI_Isend_c(b->buf, (MPI_Count)(RD_MSG_HEADER_BYTES + payload_bytes), MPI_BYTE,
                             m->src, tag, s->c, &b->req[0]));
    b->n_req = 1;
    b->active = 1;
}

static void reply_send(rd_server *s,
                       const srv_msg *m,
                       srv_send *b,
                       int status,
                       uint64_t count,
                       uint32_t dim,
                       size_t payload_bytes,
                       int tag) {
    reply_send_flags(s, m, b, status, count, dim, payload_bytes, tag, 0);
}

// Successful PULL: the header alone, then the values as a second contiguous message that the
// client receives straight into its destination array.
static void reply_split(rd_server *s,
                        const srv_msg *m,
                        srv_send *b,
                        uint64_t count,
                        uint32_t dim,
                        size_t payload_bytes) {
    rd_msg_header h;
    memset(&h, 0, sizeof h);
    h.magic = RD_MSG_MAGIC;
    h.version = RD_MSG_VERSION;
    h.op = m->h.op;
    h.table = m->h.table;
    h.count = count;
    h.dim = dim;
    h.flags = RD_MSG_FLAG_REPLY | RD_MSG_FLAG_SPLIT;
    h.req_id = m->h.req_id;
    h.payload_bytes = 0; // of this message; the data message holds count * dim floats
    h.step = s->jobs[m->job].done;
    rd_msg_encode(&h, b->buf);
    int slot = (int)rd_msg_slot(m->h.req_id);
    RD_MPI_CHECK(MPI_Isend(b->buf, RD_MSG_HEADER_BYTES, MPI_BYTE, m->src,
                           RD_TAG_PS_REPLY_BASE + slot, s->c, &b->req[0]));
    RD_MPI_CHECK(MPI_Isend_c(b->buf + RD_MSG_HEADER_BYTES, (MPI_Count)payload_bytes, MPI_BYTE,
                             m->src, RD_TAG_PS_DATA_BASE + slot, s->c, &b->req[1]));
    b->n_req = 2;
    b->active = 1;
}

static void reply_ok(rd_server *s, const srv_msg *m, const void *payload, size_t bytes) {
    srv_send *b = send_get(s, RD_MSG_HEADER_BYTES + bytes, 0);
    if (bytes)
        memcpy(b->buf + RD_MSG_HEADER_BYTES, payload, bytes);
    reply_send(s, m, b, RD_OK, 0, 0, bytes, reply_tag(m->h.req_id));
}

// Error reply with the text as payload, and (log = 1) a rate-limited log line, on error_tag(m).
static void reply_error_v(rd_server *s, const srv_msg *m, int status, int log, const char *fmt, ...)
    RD_PRINTF(5, 6);
static void
reply_error_v(rd_server *s, const srv_msg *m, int status, int log, const char *fmt, ...) {
    char text[RD_MSG_ERRTEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : ((size_t)n >= sizeof text ? sizeof text - 1 : (size_t)n);
    if (log)
        s->n_errors++;
    if (log && (s->n_errors <= 20 || s->n_errors % 1000 == 0)) {
        char nb[24];
        const char *who = m->job >= 0 && m->job < s->n_jobs ? s->comm->job_name[m->job] : "ps";
        RD_LOG_WARN("rejected request from rank %d (%s #%d), op %s: %s [%s; %" PRIu64
                    " rejected so far]",
                    m->src, who, m->worker, rd_msg_op_name(m->h.op, nb, sizeof nb), text,
                    rd_strerror(status), s->n_errors);
    }
    srv_send *b = send_get(s, RD_MSG_HEADER_BYTES + len, 0);
    memcpy(b->buf + RD_MSG_HEADER_BYTES, text, len);
    reply_send(s, m, b, status, 0, 0, len, error_tag(m));
}

#define reply_error(s, m, status, ...) reply_error_v(s, m, status, 1, __VA_ARGS__)

// ---------------------------------------------------------------------------------------------
// Sync-step gradient accumulator

static void acc_reset(srv_acc *a, size_t dim) {
    if (a->slot_key)
        memset(a->slot_key, 0, a->cap * sizeof *a->slot_key);
    a->n = 0;
    if (a->dim != dim) {
        rd_aligned_free(a->grads);
        a->grads = NULL;
        a->cap_n = 0;
        rd_free(a->keys);
        rd_free(a->times);
        a->keys = NULL;
        a->times = NULL;
        a->dim = dim;
    }
}

static void acc_rehash(srv_acc *a, size_t cap) {
    rd_free(a->slot_key);
    rd_free(a->slot_idx);
    a->slot_key = rd_xcalloc(cap, sizeof *a->slot_key);
    a->slot_idx = rd_xcalloc(cap, sizeof *a->slot_idx);
    a->cap = cap;
    for (size_t i = 0; i < a->n; i++) {
        size_t h = (size_t)rd_mix64(a->keys[i]) & (cap - 1);
        while (a->slot_key[h])
            h = (h + 1) & (cap - 1);
        a->slot_key[h] = a->keys[i];
        a->slot_idx[h] = (uint32_t)i;
    }
}

// First gradient of a key is copied, later ones are added in call order (worker order).
static void acc_add(srv_acc *a, uint64_t key, const float *g, int64_t t) {
    if ((a->n + 1) * 2 > a->cap)
        acc_rehash(a, a->cap ? a->cap * 2 : 1024);
    size_t h = (size_t)rd_mix64(key) & (a->cap - 1);
    while (a->slot_key[h] && a->slot_key[h] != key)
        h = (h + 1) & (a->cap - 1);
    if (a->slot_key[h] == key) {
        size_t i = a->slot_idx[h];
        float *dst = a->grads + i * a->dim;
        for (size_t d = 0; d < a->dim; d++)
            dst[d] += g[d];
        if (t > a->times[i])
            a->times[i] = t;
        return;
    }
    if (a->n == a->cap_n) {
        size_t nc = a->cap_n ? a->cap_n * 2 : 1024;
        float *ng = rd_aligned_xalloc(nc * a->dim * sizeof(float));
        if (a->n)
            memcpy(ng, a->grads, a->n * a->dim * sizeof(float));
        rd_aligned_free(a->grads);
        a->grads = ng;
        a->keys = rd_xrealloc(a->keys, nc * sizeof *a->keys);
        a->times = rd_xrealloc(a->times, nc * sizeof *a->times);
        a->cap_n = nc;
    }
    size_t i = a->n++;
    a->slot_key[h] = key;
    a->slot_idx[h] = (uint32_t)i;
    a->keys[i] = key;
    a->times[i] = t;
    memcpy(a->grads + i * a->dim, g, a->dim * sizeof(float));
}

static void acc_free(srv_acc *a) {
    rd_free(a->slot_key);
    rd_free(a->slot_idx);
    rd_free(a->keys);
    rd_free(a->times);
    rd_aligned_free(a->grads);
}

// ---------------------------------------------------------------------------------------------
// Create / destroy

static void job_free(srv_job *j) {
    rd_free(j->clock);
    rd_free(j->pend_head);
    rd_free(j->pend_tail);
    rd_free(j->ndef);
    rd_free(j->stop);
    rd_free(j->shut);
}

static void free_list(srv_msg *m) {
    while (m) {
        srv_msg *n = m->next;
        rd_aligned_free(m->buf);
        rd_free(m);
        m = n;
    }
}

int rd_server_create(const rd_comm *comm, const rd_config *cfg, rd_server **out, rd_errbuf *eb) {
    RD_ASSERT(comm && cfg && out);
    *out = NULL;
    if (comm->role_kind != RD_ROLE_PS)
        return rd_err_set(eb, RD_ERR_ARG, "rd_server_create on rank %d, which is not a PS rank",
                          comm->rank);
    if (cfg->ps.n_tables < 1 || cfg->ps.n_tables > RD_MAX_TABLES)
        return rd_err_set(eb, RD_ERR_CONFIG, "ps.tables: %d tables (need 1..%d)", cfg->ps.n_tables,
                          RD_MAX_TABLES);
    rd_server *s = rd_calloc(1, sizeof *s);
    if (!s)
        return rd_err_set(eb, RD_ERR_NOMEM, "rd_server_create: out of memory");
    s->comm = comm;
    s->cfg = cfg;
    s->c = comm->kv;
    s->shard = comm->ps_index;
    s->P = comm->n_ps;
    s->n_tables = cfg->ps.n_tables;
    s->max_payload = cfg->ps.max_msg_bytes;
    s->sync = cfg->ps.sync;
    s->staleness = cfg->ps.staleness;
    s->poll_us_max = cfg->cluster.poll_us_max;
    s->seed = cfg->run.seed;
    s->n_jobs = comm->n_jobs;
    s->cur_reply = -1;
    s->stop_shard = -1;
    int rc = RD_OK;
    for (int i = 0; i < s->n_tables && rc == RD_OK; i++) {
        rd_table_config tc = cfg->ps.tables[i];
        // The configured capacity is per shard; keep it (rows spread over P shards anyway).
        rc = rd_table_create(&tc, i, s->seed, &s->tables[i], eb);
    }
    for (int j = 0; j <= s->n_jobs && rc == RD_OK; j++) {
        srv_job *J = &s->jobs[j];
        J->pseudo = j == s->n_jobs;
        J->n = J->pseudo ? s->P : comm->job_ranks[j];
        J->clock = rd_calloc((size_t)J->n, sizeof *J->clock);
        J->pend_head = rd_calloc((size_t)J->n, sizeof *J->pend_head);
        J->pend_tail = rd_calloc((size_t)J->n, sizeof *J->pend_tail);
        J->ndef = rd_calloc((size_t)J->n, sizeof *J->ndef);
        J->stop = rd_calloc((size_t)J->n, sizeof *J->stop);
        J->shut = rd_calloc((size_t)J->n, sizeof *J->shut);
        J->now = INT64_MIN;
        J->step_time = INT64_MIN;
        if (!J->clock || !J->pend_head || !J->pend_tail || !J->ndef || !J->stop || !J->shut)
            rc = rd_err_set(eb, RD_ERR_NOMEM, "rd_server_create: out of memory");
        if (!J->pseudo)
            s->workers_total += J->n;
    }
    if (rc == RD_OK) {
        s->src_stamp = rd_calloc((size_t)comm->size, sizeof *s->src_stamp);
        s->regions = rd_calloc((size_t)comm->size, sizeof *s->regions);
        if (!s->src_stamp || !s->regions)
            rc = rd_err_set(eb, RD_ERR_NOMEM, "rd_server_create: out of memory");
        for (int i = 0; s->regions && i < comm->size; i++)
            s->regions[i].fd = -1;
    }
    if (rc != RD_OK) {
        rd_server_destroy(s);
        return rc;
    }
    *out = s;
    return RD_OK;
}

void rd_server_destroy(rd_server *s) {
    if (!s)
        return;
    // Outstanding receives/sends only exist if run() was interrupted; cancel what we can.
    for (srv_msg *m = s->incoming_head; m; m = m->next) {
        MPI_Cancel(&m->req);
        MPI_Request_free(&m->req);
    }
    free_list(s->incoming_head);
    for (int j = 0; j <= s->n_jobs; j++) {
        srv_job *J = &s->jobs[j];
        free_list(J->ready_head);
        free_list(J->def_head);
        for (int w = 0; J->pend_head && w < J->n; w++)
            free_list(J->pend_head[w]);
        for (uint32_t i = 0; J->staged && i < J->staged_n; i++)
            rd_table_destroy(J->staged_tab[i]);
        job_free(J);
    }
    free_list(s->free_msgs);
    if (s->usr1_n > 0) { // 8 bytes each: sent at once (eager), whether received or not
        MPI_Status st[RD_MAX_JOBS];
        MPI_Waitall(s->usr1_n, s->usr1_req, st);
    }
    for (size_t i = 0; i < s->n_sends; i++) {
        if (s->sends[i].active) {
            MPI_Status st[2];
            MPI_Waitall(s->sends[i].n_req, s->sends[i].req, st);
        }
        rd_aligned_free(s->sends[i].buf);
    }
    rd_free(s->sends);
    for (int i = 0; i < s->n_tables; i++)
        rd_table_destroy(s->tables[i]);
    acc_free(&s->acc);
    rd_free(s->src_stamp);
    for (int i = 0; s->regions && i < s->comm->size; i++)
        rd__shm_unmap(&s->regions[i]);
    rd_free(s->regions);
    rd_free(s);
}

rd_table *rd_server_table(rd_server *s, int index) {
    return index >= 0 && index < s->n_tables ? s->tables[index] : NULL;
}

int rd_server_register(rd_server *s, unsigned op, rd_server_handler fn, void *user) {
    if (op < RD_OP_USER_MIN || op > RD_OP_USER_MAX || !fn)
        return RD_ERR_RANGE;
    if (s->user_ops[op].fn)
        return RD_ERR_EXISTS;
    s->user_ops[op].fn = fn;
    s->user_ops[op].user = user;
    return RD_OK;
}

int rd_server_on_save(rd_server *s, rd_server_save_hook fn, void *user) {
    if (!s || !fn)
        return RD_ERR_ARG;
    if (s->save_hook)
        return RD_ERR_EXISTS;
    s->save_hook = fn;
    s->save_user = user;
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Queues

static void q_push(srv_msg **head, srv_msg **tail, srv_msg *m) {
    m->next = NULL;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

static srv_msg *q_pop(srv_msg **head, srv_msg **tail) {
    srv_msg *m = *head;
    if (m) {
        *head = m->next;
        if (!*head)
            *tail = NULL;
        m->next = NULL;
    }
    return m;
}

// ---------------------------------------------------------------------------------------------
// Validation after a receive completes

static int keys_valid(const srv_msg *m, const char **why) {
    const uint64_t *keys = (const uint64_t *)(const void *)msg_payload(m);
    uint64_t prev = 0;
    for (uint64_t i = 0; i < m->h.count; i++) {
        if (keys[i] == 0) {
            *why = "key 0 is reserved";
            return 0;
        }
        if (i > 0 && keys[i] <= prev) {
            *why = "keys must be strictly increasing (sorted, unique: see rd_kv_dedup)";
            return 0;
        }
        prev = keys[i];
    }
    return 1;
}

static void route(rd_server *s, srv_msg *m) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    s->n_requests++;
    int job = -1, w = -1;
    RD_ASSERT(rd_comm_job_of(s->comm, m->src, &job, &w) == RD_OK);
    m->job = job < 0 ? s->n_jobs : job;
    m->worker = w;
    m->pl = m->kind == MSG_NORMAL ? m->buf + RD_MSG_HEADER_BYTES : NULL;
    m->shm = 0;
    m->shm_bytes = 0;
    m->shm_out = NULL;
    memset(&m->h, 0, sizeof m->h);
    if (m->kind == MSG_SHORT) {
        reply_error(s, m, RD_ERR_PROTO, "message of %zu bytes is shorter than the %d-byte header",
                    m->len, RD_MSG_HEADER_BYTES);
        msg_put(s, m);
        return;
    }
    int rc = rd_msg_decode(msg_hdr(m), m->len, &m->h, &eb);
    if (rc != RD_OK) {
        reply_error(s, m, rc, "%s", eb.msg);
        msg_put(s, m);
        return;
    }
    if (m->kind == MSG_OVERSIZED || m->kind == MSG_NOMEM) {
        if (m->kind == MSG_OVERSIZED)
            reply_error(s, m, RD_ERR_RANGE,
                        "message of %zu bytes exceeds ps.max_msg_bytes (%" PRIu64
                        ") + header; drained",
                        m->len, s->max_payload);
        else
            reply_error(s, m, RD_ERR_NOMEM, "no memory to receive %zu bytes", m->len);
        msg_put(s, m);
        return;
    }
    rc = rd_msg_check_request(&m->h, s->max_payload, &eb);
    if (rc != RD_OK) {
        reply_error(s, m, rc, "%s", eb.msg);
        msg_put(s, m);
        return;
    }
    unsigned op = m->h.op;
    srv_job *J = &s->jobs[m->job];
    const char *why = NULL;
    if (m->h.flags & RD_MSG_FLAG_SHM) {
        // Payload in the sender's region: the descriptor must name the attached region and
        // ranges inside it (rd_msg_check_request allowed the flag on PULL/PUSH only).
        const rd__shm_region *r = &s->regions[m->src];
        rd_msg_shm d;
        rd_msg_shm_decode(m->buf + RD_MSG_HEADER_BYTES, &d);
        if (!r->base)
            rc = rd_err_set(&eb, RD_ERR_STATE,
                            "shared-memory request, but rank %d attached no region to this PS "
                            "rank",
                            m->src);
        else
            rc = rd_msg_check_shm(&m->h, &d, r->id, r->bytes, s->max_payload, &eb);
        if (rc != RD_OK) {
            reply_error(s, m, rc, "%s", eb.msg);
            msg_put(s, m);
            return;
        }
        m->shm = 1;
        m->shm_bytes = d.req_bytes;
        m->pl = r->base + d.req_off;
        if (op == RD_OP_PULL)
            m->shm_out = (float *)(void *)(r->base + d.reply_off);
    }
    if (op == RD_OP_PULL || op == RD_OP_PUSH) {
        if (m->h.table >= (uint32_t)s->n_tables) {
            reply_error(s, m, RD_ERR_NOTFOUND, "unknown table %u (this PS has %d tables)",
                        m->h.table, s->n_tables);
        } else if (m->h.dim != (uint32_t)rd_table_dim(s->tables[m->h.table])) {
            reply_error(s, m, RD_ERR_PROTO, "dim %u for table %s, whose dim is %zu", m->h.dim,
                        rd_table_config_of(s->tables[m->h.table])->name,
                        rd_table_dim(s->tables[m->h.table]));
        } else if (!keys_valid(m, &why)) {
            reply_error(s, m, RD_ERR_ARG, "%s", why);
        } else {
            why = NULL;
            goto ok;
        }
        msg_put(s, m);
        return;
    }
    if (op == RD_OP_STATS && m->h.table != RD_MSG_ALL_TABLES &&
        m->h.table >= (uint32_t)s->n_tables) {
        reply_error(s, m, RD_ERR_NOTFOUND, "unknown table %u (this PS has %d tables)", m->h.table,
                    s->n_tables);
        msg_put(s, m);
        return;
    }
    if (op == RD_OP_SAVE || op == RD_OP_LOAD) {
        rd__ckpt_req r;
        rc = rd__ckpt_req_decode(msg_payload(m), (size_t)m->h.payload_bytes, &r, &eb);
        for (uint32_t i = 0; rc == RD_OK && i < r.n_tables; i++)
            if (r.tables[i] >= (uint32_t)s->n_tables)
                rc = rd_err_set(&eb, RD_ERR_NOTFOUND, "unknown table %u (this PS has %d tables)",
                                r.tables[i], s->n_tables);
        if (rc == RD_OK && op == RD_OP_SAVE && (r.flags & RD__CKPT_PHASES))
            rc = rd_err_set(&eb, RD_ERR_PROTO, "SAVE with LOAD phase flags 0x%x", r.flags);
        if (rc != RD_OK) {
            reply_error(s, m, rc, "%s", eb.msg);
            msg_put(s, m);
            return;
        }
        m->ckpt_flags = r.flags;
    }
    if (op >= RD_OP_USER_MIN && !s->user_ops[op].fn) {
        reply_error(s, m, RD_ERR_UNSUPPORTED, "no handler registered for op %u", op);
        msg_put(s, m);
        return;
    }
ok:
    if (J->pseudo && op != RD_OP_STATS && op < RD_OP_USER_MIN) {
        reply_error(s, m, RD_ERR_STATE, "this op needs a worker rank (rank %d is a PS rank)",
                    m->src);
        msg_put(s, m);
        return;
    }
    if (!J->pseudo && J->shut[w]) {
        reply_error(s, m, RD_ERR_STATE, "request after SHUTDOWN");
        msg_put(s, m);
        return;
    }
    q_push(&J->ready_head, &J->ready_tail, m);
}

// ---------------------------------------------------------------------------------------------
// Receive

static int poll_incoming(rd_server *s) {
    int work = 0;
    // 1a. Match up to 64 new requests and post their receives.
    for (int i = 0; i < 64; i++) {
        int flag = 0;
        MPI_Message mh;
        MPI_Status st;
        RD_MPI_CHECK(MPI_Improbe(MPI_ANY_SOURCE, RD_TAG_PS_REQUEST, s->c, &flag, &mh, &st));
        if (!flag)
            break;
        MPI_Count n = 0;
        RD_MPI_CHECK(MPI_Get_count_c(&st, MPI_BYTE, &n));
        int normal =
            n >= RD_MSG_HEADER_BYTES && (uint64_t)n - RD_MSG_HEADER_BYTES <= s->max_payload;
        srv_msg *m = msg_get(s, normal ? (size_t)n : 0);
        m->src = st.MPI_SOURCE;
        m->len = (size_t)n;
        if (!normal)
            m->kind = n < RD_MSG_HEADER_BYTES ? MSG_SHORT : MSG_OVERSIZED;
        if (m->kind == MSG_NORMAL) {
            RD_MPI_CHECK(MPI_Imrecv_c(m->buf, n, MPI_BYTE, &mh, &m->req));
        } else {
            memset(m->small, 0, sizeof m->small);
            MPI_Datatype dt;
            rd__drain_type(n, m->small, s->bounce, sizeof s->bounce, &dt);
            RD_MPI_CHECK(MPI_Imrecv(MPI_BOTTOM, 1, dt, &mh, &m->req));
            RD_MPI_CHECK(MPI_Type_free(&dt));
        }
        q_push(&s->incoming_head, &s->incoming_tail, m);
        work = 1;
    }
    // 1b. Route completed receives; a sender's later message waits for its earlier ones.
    s->stamp++;
    srv_msg *prev = NULL, *m = s->incoming_head;
    while (m) {
        srv_msg *next = m->next;
        int done = 0;
        if (s->src_stamp[m->src] != s->stamp)
            RD_MPI_CHECK(MPI_Test(&m->req, &done, MPI_STATUS_IGNORE));
        if (!done) {
            s->src_stamp[m->src] = s->stamp;
            prev = m;
        } else {
            if (prev)
                prev->next = next;
            else
                s->incoming_head = next;
            if (s->incoming_tail == m)
                s->incoming_tail = prev;
            m->next = NULL;
            route(s, m);
            work = 1;
        }
        m = next;
    }
    return work;
}

// ---------------------------------------------------------------------------------------------
// Execution

static void evict_job(rd_server *s, srv_job *J, int64_t now) {
    if (now == INT64_MIN)
        return;
    for (int i = 0; i < s->n_tables; i++) {
        if (!(J->tables_used >> i & 1) || rd_table_config_of(s->tables[i])->ttl <= 0)
            continue;
        uint64_t n = rd_table_evict(s->tables[i], now);
        if (n)
            RD_LOG_DEBUG("table %s: evicted %" PRIu64 " rows at stream time %" PRId64,
                         rd_table_config_of(s->tables[i])->name, n, now);
    }
}

// Sync: apply step `done` (all workers clocked it): per table, first the sightings of the
// step's pulls, then the buffered pushes (summed per key in worker order, applied once).
static void apply_step(rd_server *s, srv_job *J) {
    for (int ti = 0; ti < s->n_tables; ti++) {
        rd_table *t = s->tables[ti];
        const size_t dim = rd_table_dim(t);
        srv_msg *only = NULL;
        int n_push = 0, rc = RD_OK;
        for (int w = 0; w < J->n; w++)
            for (srv_msg *m = J->pend_head[w]; m; m = m->next) {
                if (m->h.table != (uint32_t)ti)
                    continue;
                if (m->h.op == RD_OP_PUSH) {
                    only = m;
                    n_push++;
                    continue;
                }
                const uint64_t *keys = (const uint64_t *)(const void *)msg_payload(m);
                int r2 = rd_table_touch(t, keys, (size_t)m->h.count, m->h.stream_time);
                if (r2 != RD_OK)
                    rc = r2;
            }
        if (n_push == 1) {
            // One push: keys are unique within it, so the "sum" is the gradient itself.
            const uint64_t *keys = (const uint64_t *)(const void *)msg_payload(only);
            const float *g = (const float *)(const void *)(keys + only->h.count);
            int r2 = rd_table_push(t, keys, g, (size_t)only->h.count, only->h.stream_time);
            if (r2 != RD_OK)
                rc = r2;
        } else if (n_push > 1) {
            srv_acc *a = &s->acc;
            acc_reset(a, dim);
            for (int w = 0; w < J->n; w++)
                for (srv_msg *m = J->pend_head[w]; m; m = m->next) {
                    if (m->h.table != (uint32_t)ti || m->h.op != RD_OP_PUSH)
                        continue;
                    const uint64_t *keys = (const uint64_t *)(const void *)msg_payload(m);
                    const float *g = (const float *)(const void *)(keys + m->h.count);
                    for (uint64_t i = 0; i < m->h.count; i++)
                        acc_add(a, keys[i], g + i * dim, m->h.stream_time);
                }
            for (size_t i = 0; i < a->n; i++) {
                int r2 = rd_table_push(t, &a->keys[i], a->grads + i * dim, 1, a->times[i]);
                if (r2 != RD_OK)
                    rc = r2;
            }
        }
        if (rc != RD_OK)
            RD_LOG_ERROR("table %s: step %" PRId64 " could not be applied completely: %s",
                         rd_table_config_of(t)->name, J->done, rd_strerror(rc));
    }
    for (int w = 0; w < J->n; w++) {
        srv_msg *m = J->pend_head[w];
        while (m) {
            srv_msg *n = m->next;
            msg_put(s, m);
            m = n;
        }
        J->pend_head[w] = J->pend_tail[w] = NULL;
    }
}

// A worker's PULL/PUSH/CLOCK/SAVE carries its own step, the number of CLOCKs it sent. Requests
// are evaluated in per-worker order, so for a correct client that is exactly the number of its
// CLOCKs executed so far. Anything else is a protocol violation, rejected at once: deferring a
// "future" step forever would block the worker's later requests (and its SHUTDOWN).
static int bad_step(const srv_job *J, const srv_msg *m) {
    if (J->pseudo)
        return 0;
    switch (m->h.op) {
        case RD_OP_PULL:
        case RD_OP_PUSH:
        case RD_OP_CLOCK:
        case RD_OP_SAVE:
            return m->h.step != J->clock[m->worker];
        default:
            return 0;
    }
}

static int eligible(const rd_server *s, const srv_job *J, const srv_msg *m) {
    if (J->pseudo)
        return 1;
    if (J->staged && (m->h.op == RD_OP_PULL || m->h.op == RD_OP_PUSH || m->h.op == RD_OP_CLOCK ||
                      m->h.op == RD_OP_SAVE))
        return 0; // until the staged LOAD is committed or aborted
    int64_t step = m->h.step;
    switch (m->h.op) {
        case RD_OP_PULL:
            if (s->sync)
                return step <= J->done;
            return s->staleness == 0 || step <= J->done + s->staleness;
        case RD_OP_PUSH:
        case RD_OP_CLOCK:
            return s->sync ? step <= J->done : 1;
        case RD_OP_SAVE:
            return step <= J->done;
        default:
            return 1;
    }
}

// Returns 1 if m was kept (sync: its sightings are applied when the step completes).
static int exec_pull(rd_server *s, srv_job *J, srv_msg *m) {
    rd_table *t = s->tables[m->h.table];
    size_t n = (size_t)m->h.count, dim = m->h.dim;
    if (s->sync && m->h.step < J->done) {
        reply_error(s, m, RD_ERR_STATE,
                    "PULL for step %" PRId64 " after that step was applied (%" PRId64 " steps)",
                    m->h.step, J->done);
        return 0;
    }
    srv_send *b = send_get(s, RD_MSG_HEADER_BYTES + (m->shm ? 0 : n * dim * sizeof(float)), 1);
    if (!b) {
        reply_error(s, m, RD_ERR_NOMEM, "no memory for a reply of %zu keys", n);
        return 0;
    }
    const uint64_t *keys = (const uint64_t *)(const void *)msg_payload(m);
    float *out = m->shm ? m->shm_out : (float *)(void *)(b->buf + RD_MSG_HEADER_BYTES);
    J->tables_used |= 1ull << m->h.table;
    // A read (RD_MSG_FLAG_READ: an evaluation's pull) has no sightings at all: a key only
    // evaluated keeps its last-seen time (TTL eviction) and admission count, and gets no row, as
    // a key only served does (rd_table_read in serve.c).
    const int read = (m->h.flags & RD_MSG_FLAG_READ) != 0;
    // Sync: a pure read now; the sightings (admission counts, last-seen, new rows, counters)
    // are applied at the end of the step, so a SAVE at this step boundary sees none of them
    // whatever the arrival order. Async: everything at once.
    int rc = s->sync || read ? rd_table_read(t, keys, n, out)
                             : rd_table_pull(t, keys, n, m->h.stream_time, out);
    if (rc != RD_OK) {
        reply_error(s, m, rc, "table %s: pull failed: %s", rd_table_config_of(t)->name,
                    rd_strerror(rc));
        return 0;
    }
    if (m->shm) {
        // The values are in the sender's region; keep the keys (sync: sightings at the end of
        // the step) before the reply lets the sender reuse its range.
        if (s->sync && !read && localize(m) != 0) {
            reply_error(s, m, RD_ERR_NOMEM, "no memory to keep the %zu keys of a pull", n);
            return 0;
        }
        reply_send_flags(s, m, b, RD_OK, n, (uint32_t)dim, 0, reply_tag(m->h.req_id),
                         RD_MSG_FLAG_SHM);
    } else {
        reply_split(s, m, b, n, (uint32_t)dim, n * dim * sizeof(float));
    }
    if (!s->sync || read)
        return 0;
    q_push(&J->pend_head[m->worker], &J->pend_tail[m->worker], m);
    return 1;
}

// Returns 1 if m was kept (buffered sync push).
static int exec_push(rd_server *s, srv_job *J, srv_msg *m) {
    int w = m->worker;
    J->tables_used |= 1ull << m->h.table;
    if (s->sync) {
        if (m->h.step < J->done || J->clock[w] > m->h.step) {
            reply_error(s, m, RD_ERR_STATE,
                        "PUSH for step %" PRId64 " after that step was clocked (server has "
                        "applied %" PRId64 " steps, this worker clocked %" PRId64 ")",
                        m->h.step, J->done, J->clock[w]);
            return 0;
        }
        if (localize(m) != 0) {
            reply_error(s, m, RD_ERR_NOMEM, "no memory to keep a push of %" PRIu64 " keys",
                        m->h.count);
            return 0;
        }
        reply_ok(s, m, NULL, 0);
        q_push(&J->pend_head[w], &J->pend_tail[w], m);
        return 1;
    }
    rd_table *t = s->tables[m->h.table];
    const uint64_t *keys = (const uint64_t *)(const void *)msg_payload(m);
    const float *g = (const float *)(const void *)(keys + m->h.count);
    int rc = rd_table_push(t, keys, g, (size_t)m->h.count, m->h.stream_time);
    if (rc != RD_OK)
        reply_error(s, m, rc, "table %s: push failed: %s", rd_table_config_of(t)->name,
                    rd_strerror(rc));
    else
        reply_ok(s, m, NULL, 0);
    return 0;
}

static void exec_clock(rd_server *s, srv_job *J, srv_msg *m) {
    int w = m->worker;
    int64_t step = m->h.step;
    if (step != J->clock[w] || (s->sync && step != J->done)) {
        reply_error(s, m, RD_ERR_STATE,
                    "CLOCK for step %" PRId64 ", but this worker is at step %" PRId64
                    " and the job has applied %" PRId64 " steps",
                    step, J->clock[w], J->done);
        return;
    }
    J->clock[w] = step + 1;
    reply_ok(s, m, NULL, 0);
    if (s->sync) {
        if (m->h.stream_time > J->step_time)
            J->step_time = m->h.stream_time;
        if (++J->n_clocked < J->n)
            return;
        // 1. every worker clocked step `done`: apply, 2. evict, 3. advance.
        apply_step(s, J);
        evict_job(s, J, J->step_time);
        J->done++;
        J->n_clocked = 0;
        J->step_time = INT64_MIN;
        J->changed = 1;
        return;
    }
    int advanced = m->h.stream_time > J->now;
    if (advanced)
        J->now = m->h.stream_time;
    int64_t lo = J->clock[0];
    for (int i = 1; i < J->n; i++)
        if (J->clock[i] < lo)
            lo = J->clock[i];
    if (lo != J->done) {
        J->done = lo;
        J->changed = 1;
    }
    if (advanced)
        evict_job(s, J, J->now);
}

static void exec_stats(rd_server *s, srv_msg *m) {
    unsigned char buf[RD__STATS_RECORD * RD_MAX_TABLES];
    size_t n = 0;
    for (int i = 0; i < s->n_tables; i++) {
        if (m->h.table != RD_MSG_ALL_TABLES && m->h.table != (uint32_t)i)
            continue;
        rd_table_stats st;
        rd_table_get_stats(s->tables[i], &st);
        rd__stats_encode((uint32_t)i, &st, buf + n * RD__STATS_RECORD);
        n++;
    }
    reply_ok(s, m, buf, n * RD__STATS_RECORD);
}

static void exec_save(rd_server *s, srv_job *J, srv_msg *m) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd__ckpt_req r;
    RD_ASSERT(rd__ckpt_req_decode(msg_payload(m), (size_t)m->h.payload_bytes, &r, &eb) == RD_OK);
    if (s->sync && m->h.step != J->done) {
        reply_error(s, m, RD_ERR_STATE,
                    "SAVE at step %" PRId64 " but the job has applied %" PRId64 " steps", m->h.step,
                    J->done);
        return;
    }
    if (s->save_hook) {
        int hrc = s->save_hook(s->save_user, &eb);
        if (hrc != RD_OK) {
            reply_error(s, m, hrc, "SAVE: %s", eb.msg);
            return;
        }
    }
    rd_table *tabs[RD_MAX_TABLES];
    for (uint32_t i = 0; i < r.n_tables; i++)
        tabs[i] = s->tables[r.tables[i]];
    rd_ckpt_shard_info info;
    memset(&info, 0, sizeof info);
    int rc = rd_ckpt_write_shard(r.dir, s->shard, s->P, m->h.step, s->seed, tabs, (int)r.n_tables,
                                 &info, &eb);
    if (rc != RD_OK) {
        reply_error(s, m, rc, "SAVE: %s", eb.msg);
        return;
    }
    unsigned char out[8 + 16 * RD_MAX_TABLES];
    rd__shard_info_encode(&info, out);
    reply_ok(s, m, out, rd__shard_info_bytes(info.n_tables));
    // "shard S of P": of 3 PS shards it said "saved shard 2 of 1 tables", the table count in the
    // place of the shard count.
    RD_LOG_INFO("saved shard %d of %d (%d table%s) at step %" PRId64 " into %s (crc 0x%08x)",
                s->shard, s->P, (int)r.n_tables, r.n_tables == 1 ? "" : "s", m->h.step, r.dir,
                info.crc);
}

// Drop a staged LOAD's tables (ABORT, a newer STAGE, or nothing to commit).
static void unstage(srv_job *J) {
    for (uint32_t i = 0; J->staged && i < J->staged_n; i++)
        rd_table_destroy(J->staged_tab[i]);
    J->staged = 0;
    J->staged_n = 0;
    J->changed = 1; // requests that waited for the load may run now
}

// Install a read checkpoint: tables[i] replaces table idx[i]; the job restarts at `step`.
static void install_load(rd_server *s,
                         srv_job *J,
                         uint32_t n,
                         const uint32_t *idx,
                         rd_table *const *tables,
                         int64_t step) {
    for (uint32_t i = 0; i < n; i++) {
        rd_table_destroy(s->tables[idx[i]]);
        s->tables[idx[i]] = tables[i];
        J->tables_used |= 1ull << idx[i];
        rd_table_stats st;
        rd_table_get_stats(tables[i], &st);
        if (st.now > J->now)
            J->now = st.now;
    }
    J->done = step;
    for (int w = 0; w < J->n; w++)
        J->clock[w] = step;
    J->step_time = INT64_MIN;
    J->changed = 1;
}

// LOAD. The client loads all shards or none (rd_kv_load): phase 1 (STAGE) reads and verifies
// this shard's file into fresh tables kept aside, after checking that the job is between steps;
// from then on the job's step requests wait here, so that check still holds at phase 2. Phase 2
// is COMMIT when every shard staged (install: cannot fail) or ABORT when any refused (drop).
// A request without a phase bit reads and installs at once, for one shard on its own.
static void exec_load(rd_server *s, srv_job *J, srv_msg *m) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd__ckpt_req r;
    RD_ASSERT(rd__ckpt_req_decode(msg_payload(m), (size_t)m->h.payload_bytes, &r, &eb) == RD_OK);
    const uint32_t phase = r.flags & RD__CKPT_PHASES;
    unsigned char out[8 + 16 * RD_MAX_TABLES];
    if (phase == RD__CKPT_FLAG_ABORT) {
        if (J->staged && J->staged_worker == m->worker)
            unstage(J);
        rd_ckpt_shard_info none;
        memset(&none, 0, sizeof none);
        none.n_tables = r.n_tables;
        rd__shard_info_encode(&none, out);
        reply_ok(s, m, out, rd__shard_info_bytes(none.n_tables));
        return;
    }
    if (phase == RD__CKPT_FLAG_COMMIT) {
        int same = J->staged && J->staged_worker == m->worker && J->staged_n == r.n_tables;
        for (uint32_t i = 0; same && i < r.n_tables; i++)
            same = J->staged_idx[i] == r.tables[i];
        if (!same) {
            reply_error(s, m, RD_ERR_STATE,
                        "LOAD commit without a matching staged load on shard %d (the tables "
                        "are unchanged)",
                        s->shard);
            return;
        }
        install_load(s, J, J->staged_n, J->staged_idx, J->staged_tab, J->staged_step);
        J->staged = 0; // the tables now belong to the server
        J->staged_n = 0;
        rd__shard_info_encode(&J->staged_info, out);
        reply_ok(s, m, out, rd__shard_info_bytes(J->staged_info.n_tables));
        RD_LOG_INFO("loaded shard %d (%u tables) at step %" PRId64 " from %s", s->shard, r.n_tables,
                    J->done, r.dir);
        return;
    }
    int busy = J->n_clocked != 0;
    for (int w = 0; w < J->n; w++)
        busy |= J->pend_head[w] != NULL;
    if (busy) {
        reply_error(s, m, RD_ERR_STATE,
                    "LOAD while the job is in the middle of step %" PRId64
                    " on shard %d (load before training, then synchronise the job's ranks)",
                    J->done, s->shard);
        return;
    }
    if (J->staged && J->staged_worker != m->worker) {
        reply_error(s, m, RD_ERR_STATE, "LOAD while worker %d's load is staged on shard %d",
                    J->staged_worker, s->shard);
        return;
    }
    if (J->staged)
        unstage(J); // this worker's earlier attempt, never committed
    rd_table *fresh[RD_MAX_TABLES] = {0};
    int rc = RD_OK;
    for (uint32_t i = 0; i < r.n_tables && rc == RD_OK; i++)
        rc = rd_table_create(&s->cfg->ps.tables[r.tables[i]], (int)r.tables[i], s->seed, &fresh[i],
                             &eb);
    int64_t step = 0;
    rd_ckpt_shard_info info;
    memset(&info, 0, sizeof info);
    if (rc == RD_OK)
        rc = rd_ckpt_read_shard(r.dir, s->shard, s->P, fresh, (int)r.n_tables,
                                (r.flags & RD__CKPT_FLAG_CRC) ? &r.crc : NULL, &step, &info, &eb);
    if (rc != RD_OK) {
        for (uint32_t i = 0; i < r.n_tables; i++)
            rd_table_destroy(fresh[i]);
        reply_error(s, m, rc, "LOAD: %s", eb.msg);
        return;
    }
    rd__shard_info_encode(&info, out);
    if (phase == RD__CKPT_FLAG_STAGE) {
        J->staged = 1;
        J->staged_worker = m->worker;
        J->staged_n = r.n_tables;
        memcpy(J->staged_idx, r.tables, r.n_tables * sizeof r.tables[0]);
        memcpy(J->staged_tab, fresh, r.n_tables * sizeof fresh[0]);
        J->staged_step = step;
        J->staged_info = info;
        reply_ok(s, m, out, rd__shard_info_bytes(info.n_tables));
        return;
    }
    install_load(s, J, r.n_tables, r.tables, fresh, step);
    reply_ok(s, m, out, rd__shard_info_bytes(info.n_tables));
    RD_LOG_INFO("loaded shard %d (%u tables) at step %" PRId64 " from %s", s->shard, r.n_tables,
                step, r.dir);
}

// ATTACH: map the sender's shared-memory region (once per sender). A region on another node is
// refused without a warning: the client then uses MPI for this PS rank.
static void exec_attach(rd_server *s, srv_msg *m) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd__shm_attach a;
    rd__shm_region r;
    int rc = rd__shm_attach_decode(msg_payload(m), (size_t)m->h.payload_bytes, &a, &eb);
    // One region per sender for the server's life: requests still deferred point into it.
    if (rc == RD_OK && s->regions[m->src].base)
        rc = rd_err_set(&eb, RD_ERR_STATE, "rank %d attached region %016" PRIx64 " already", m->src,
                        s->regions[m->src].id);
    if (rc == RD_OK)
        rc = rd__shm_map(&a, &r, &eb);
    if (rc == RD_ERR_UNSUPPORTED) {
        reply_error_v(s, m, rc, 0, "ATTACH: %s", eb.msg);
        return;
    }
    if (rc != RD_OK) {
        reply_error(s, m, rc, "ATTACH: %s", eb.msg);
        return;
    }
    s->regions[m->src] = r;
    reply_ok(s, m, NULL, 0);
    RD_LOG_DEBUG("PS shard %d: rank %d attached a %" PRIu64 "-byte shared-memory region", s->shard,
                 m->src, r.bytes);
}

static void exec_user(rd_server *s, srv_msg *m) {
    rd_kv_meta meta = {m->h.op,          m->h.table,
                       m->h.count,       m->h.dim,
                       m->h.req_id,      m->h.step,
                       m->h.stream_time, m->h.payload_bytes,
                       m->src,           m->job == s->n_jobs ? -1 : m->job,
                       m->worker};
    rd_kv_pairs pairs = {NULL, NULL, (size_t)m->h.count, msg_payload(m),
                         (size_t)m->h.payload_bytes};
    uint64_t per = 8u + 4u * (uint64_t)m->h.dim;
    if (m->h.count && m->h.payload_bytes / per == m->h.count && m->h.payload_bytes % per == 0) {
        pairs.keys = (const uint64_t *)(const void *)msg_payload(m);
        pairs.vals = m->h.dim ? (const float *)(const void *)(pairs.keys + m->h.count) : NULL;
    }
    s->cur = m;
    s->responded = 0;
    s->cur_reply = -1;
    int rc = s->user_ops[m->h.op].fn(&meta, &pairs, s, s->user_ops[m->h.op].user);
    s->cur = NULL;
    if (s->cur_reply >= 0) // reserved but never sent: back to the pool
        s->sends[s->cur_reply].reserved = 0;
    s->cur_reply = -1;
    if (!s->responded)
        reply_error(s, m, rc < 0 ? rc : RD_ERR_STATE, "handler for op %u %s", (unsigned)m->h.op,
                    rc < 0 ? "failed" : "did not respond");
}

void *rd_server_reply_buffer(rd_server *s, const rd_kv_meta *req, size_t bytes) {
    if (!s->cur || s->responded || !req || req->req_id != s->cur->h.req_id)
        return NULL;
    if (bytes > SIZE_MAX - RD_MSG_HEADER_BYTES)
        return NULL;
    if (s->cur_reply >= 0) {
        srv_send *old = &s->sends[s->cur_reply];
        if (old->cap >= RD_MSG_HEADER_BYTES + bytes)
            return old->buf + RD_MSG_HEADER_BYTES; // the same buffer, now (re)sized for bytes
        old->reserved = 0;
        s->cur_reply = -1;
    }
    srv_send *b = send_get(s, RD_MSG_HEADER_BYTES + bytes, 1);
    if (!b)
        return NULL;
    b->reserved = 1;
    s->cur_reply = b - s->sends; // an index: send_get may move the array
    return b->buf + RD_MSG_HEADER_BYTES;
}

int rd_server_respond(
    rd_server *s, const rd_kv_meta *req, int status, const void *payload, size_t bytes) {
    if (!s->cur || s->responded || !req || req->req_id != s->cur->h.req_id)
        return RD_ERR_STATE;
    long ri = s->cur_reply;
    if (ri >= 0) {
        srv_send *r = &s->sends[ri];
        // The payload was built in place (rd_server_reply_buffer): send it without a copy.
        if (bytes && payload == r->buf + RD_MSG_HEADER_BYTES &&
            bytes <= r->cap - RD_MSG_HEADER_BYTES) {
            r->reserved = 0;
            s->cur_reply = -1;
            reply_send(s, s->cur, r, status, 0, 0, bytes, reply_tag(s->cur->h.req_id));
            s->responded = 1;
            return RD_OK;
        }
    }
    // Copy path. A reserved buffer stays reserved until the copy is done: the payload may
    // point into it.
    srv_send *b = send_get(s, RD_MSG_HEADER_BYTES + bytes, 1);
    if (b && bytes)
        memcpy(b->buf + RD_MSG_HEADER_BYTES, payload, bytes);
    if (ri >= 0) {
        s->sends[ri].reserved = 0;
        s->cur_reply = -1;
    }
    if (!b)
        return RD_ERR_NOMEM;
    reply_send(s, s->cur, b, status, 0, 0, bytes, reply_tag(s->cur->h.req_id));
    s->responded = 1;
    return RD_OK;
}

static void execute(rd_server *s, srv_job *J, srv_msg *m) {
    int kept = 0;
    // route() refuses what arrives after the worker's SHUTDOWN was executed; this catches what
    // was routed before that (received in the same poll, or queued behind a deferred SHUTDOWN).
    // A second SHUTDOWN counted again would end the server while other workers still need it.
    if (!J->pseudo && J->shut[m->worker]) {
        reply_error(s, m, RD_ERR_STATE, "request after SHUTDOWN");
        msg_put(s, m);
        return;
    }
    if (bad_step(J, m)) {
        char nb[24];
        reply_error(s, m, RD_ERR_STATE,
                    "%s for step %" PRId64 " from a worker at step %" PRId64
                    " (steps count this worker's CLOCKs)",
                    rd_msg_op_name(m->h.op, nb, sizeof nb), m->h.step, J->clock[m->worker]);
        msg_put(s, m);
        return;
    }
    switch (m->h.op) {
        case RD_OP_PULL:
            kept = exec_pull(s, J, m);
            break;
        case RD_OP_PUSH:
            kept = exec_push(s, J, m);
            break;
        case RD_OP_CLOCK:
            exec_clock(s, J, m);
            break;
        case RD_OP_STATS:
            exec_stats(s, m);
            break;
        case RD_OP_SAVE:
            exec_save(s, J, m);
            break;
        case RD_OP_LOAD:
            exec_load(s, J, m);
            break;
        case RD_OP_ATTACH:
            exec_attach(s, m);
            break;
        case RD_OP_SHUTDOWN:
            J->shut[m->worker] = 1;
            s->workers_shut++;
            reply_ok(s, m, NULL, 0);
            break;
        default:
            exec_user(s, m);
            break;
    }
    if (!kept)
        msg_put(s, m);
}

// Re-examine deferred requests after the job's state changed, until nothing more can run.
static void retry_deferred(rd_server *s, srv_job *J) {
    for (;;) {
        J->changed = 0;
        unsigned pass = ++s->pass;
        srv_msg *prev = NULL, *m = J->def_head;
        int ran = 0;
        while (m) {
            int w = m->worker;
            if (J->stop[w] == pass || (!bad_step(J, m) && !eligible(s, J, m))) {
                J->stop[w] = pass; // keep this worker's order: its later requests wait too
                prev = m;
                m = m->next;
                continue;
            }
            if (prev)
                prev->next = m->next;
            else
                J->def_head = m->next;
            if (J->def_tail == m)
                J->def_tail = prev;
            m->next = NULL;
            J->ndef[w]--;
            execute(s, J, m);
            ran = 1;
            break; // the state may have changed: rescan from the start
        }
        if (!ran)
            break;
    }
    J->changed = 0;
}

static void handle(rd_server *s, srv_job *J, srv_msg *m) {
    int w = m->worker;
    // User ops (token store) and STATS touch no step state: they never wait behind the
    // worker's deferred requests (a token fetch must not stall until slower workers finish).
    // Neither do the second phase of a LOAD (COMMIT, ABORT): the loading worker waits for it
    // with nothing else in flight, and other workers' requests may be waiting on it.
    int free_op =
        m->h.op >= RD_OP_USER_MIN || m->h.op == RD_OP_STATS || m->h.op == RD_OP_ATTACH ||
        (m->h.op == RD_OP_LOAD && (m->ckpt_flags & (RD__CKPT_FLAG_COMMIT | RD__CKPT_FLAG_ABORT)));
    if (!J->pseudo && !free_op && (J->ndef[w] > 0 || (!bad_step(J, m) && !eligible(s, J, m)))) {
        q_push(&J->def_head, &J->def_tail, m);
        J->ndef[w]++;
        return;
    }
    execute(s, J, m);
    if (J->changed)
        retry_deferred(s, J);
}

// Round-robin over jobs: one request per job per round, until every ready queue is empty.
static int process_ready(rd_server *s) {
    int work = 0;
    for (int any = 1; any;) {
        any = 0;
        for (int j = 0; j <= s->n_jobs; j++) {
            srv_job *J = &s->jobs[j];
            srv_msg *m = q_pop(&J->ready_head, &J->ready_tail);
            if (!m)
                continue;
            any = work = 1;
            handle(s, J, m);
        }
    }
    return work;
}

// ---------------------------------------------------------------------------------------------
// SIGTERM: a checkpoint of every job, then the end of the run
//
// Slurm's preemption and scancel, and a kill of mpiexec, send SIGTERM to every rank; SIGKILL
// follows some seconds later (Slurm's KillWait, 30 s by default). A worker rank takes it as a
// checkpoint request (rd_trainer_request_stop): its job's rank 0 writes one after its next step,
// tells shard 0 (RD_TAG_STOP), and trains on, because another job may need it to reach its own
// next step (a student the teacher's targets). Shard 0 ends the run once every job has said so
// or has shut down, or when RD_STOP_GRACE_S seconds (default 20) have passed since the signal:
// MPI_Abort with exit status 143 (128 + SIGTERM), which ends every rank. The other shards keep
// serving until then: every job's checkpoint needs them. A shard other than 0 that gets the
// signal tells shard 0 (RD_TAG_STOP, -1), which then stops as if it had got it: a SIGTERM to that
// rank alone was lost before (the launch trained on and ended with exit 0).

static volatile sig_atomic_t stop_requested;

void rd_server_request_stop(void) {
    stop_requested = 1;
}

// SIGUSR1 asks each job for a checkpoint, which a job's rank 0 writes (rd/trainer.h), so one that
// reached a PS rank alone was lost (the PS ranks took it and did nothing). Every shard now passes
// it on to the rank 0 of each job still training (RD_TAG_CKPT, with when it came: sent to every
// rank, the job's rank 0 gets it once per rank and answers it once, by those times). usr1_ms: the
// wall-clock time in ms of this rank's SIGUSR1 not yet passed on (0: none); lock-free, so
// async-signal-safe.
static atomic_llong usr1_ms;
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "a signal handler sets usr1_ms: it must be lock-free");

void rd_server_request_checkpoint(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long t = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    atomic_store(&usr1_ms, t > 0 ? t : 1);
}

static int job_shut(const srv_job *J);

// Pass this rank's SIGUSR1 on to every job still training (once the sends of the last one are
// done: they share usr1_buf). Returns 1 on work.
static int usr1_pass(rd_server *s) {
    int done = 1;
    MPI_Status st[RD_MAX_JOBS];
    if (s->usr1_n > 0)
        RD_MPI_CHECK(MPI_Testall(s->usr1_n, s->usr1_req, &done, st));
    if (!done)
        return 0;
    s->usr1_n = 0;
    s->usr1_buf = atomic_exchange(&usr1_ms, 0);
    for (int j = 0; j < s->n_jobs && s->usr1_buf != 0; j++) {
        if (job_shut(&s->jobs[j]))
            continue;
        RD_MPI_CHECK(MPI_Isend(&s->usr1_buf, 1, MPI_LONG_LONG, s->comm->job_first[j], RD_TAG_CKPT,
                               s->comm->world, &s->usr1_req[s->usr1_n++]));
    }
    if (s->usr1_n > 0)
        RD_LOG_INFO("PS shard %d: SIGUSR1 passed on to the rank 0 of %d job(s)", s->shard,
                    s->usr1_n);
    return 1;
}

// RD_STOP_GRACE_S: seconds, 1..3600; anything else is the default (and said once).
static double stop_grace_s(void) {
    const char *e = getenv("RD_STOP_GRACE_S");
    if (!e || !e[0])
        return 20.0;
    char *end = NULL;
    errno = 0;
    long v = strtol(e, &end, 10);
    if (errno || *end || v < 1 || v > 3600) {
        RD_LOG_WARN("RD_STOP_GRACE_S='%.32s' is not a whole number of seconds in 1..3600: using 20",
                    e);
        return 20.0;
    }
    return (double)v;
}

static int job_shut(const srv_job *J) {
    for (int w = 0; w < J->n; w++)
        if (!J->shut[w])
            return 0;
    return 1;
}

RD_NORETURN static void stop_end(rd_server *s, const char *why) {
    printf("[ps] SIGTERM: %s: ending the run (exit status 143); resume it with --resume %s\n", why,
           s->cfg->ps.checkpoint_dir);
    fflush(stdout);
    rd_abort_launch_status(143);
}

// Shard 0: the acknowledgements of the jobs, the start and the end of a stop. Returns 1 on work.
static int stop_poll(rd_server *s) {
    int work = 0;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        RD_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, RD_TAG_STOP, s->comm->world, &flag, &st));
        if (!flag)
            break;
        int job = -1, index = 0, got = -1;
        RD_MPI_CHECK(MPI_Recv(&got, 1, MPI_INT, st.MPI_SOURCE, RD_TAG_STOP, s->comm->world,
                              MPI_STATUS_IGNORE));
        // Only a job's rank 0 acknowledges, for its own job: anything else is not ours to count.
        // Another shard passes on a SIGTERM it got (-1).
        int known = rd_comm_job_of(s->comm, st.MPI_SOURCE, &job, &index) == RD_OK;
        if (known && job >= 0 && index == 0 && got == job)
            s->stop_acked[job] = 1;
        else if (known && job < 0 && got == -1)
            s->stop_shard = s->stop_shard < 0 ? index : s->stop_shard;
        else
            RD_LOG_WARN("a stop message from rank %d (job %d) ignored: not a job's rank 0",
                        st.MPI_SOURCE, got);
        work = 1;
    }
    if (s->stop_t0 == 0.0) {
        int acked = 0;
        for (int j = 0; j < s->n_jobs; j++)
            acked |= s->stop_acked[j];
        if (!stop_requested && !acked && s->stop_shard < 0)
            return work;
        s->stop_t0 = rd_mono_s();
        s->stop_grace = stop_grace_s();
        if (!stop_requested && s->stop_shard >= 0)
            RD_LOG_WARN("PS shard %d got SIGTERM, which this rank did not: the run ends once every "
                        "job has a checkpoint since the signal",
                        s->stop_shard);
        else if (!stop_requested)
            RD_LOG_WARN("a job checkpointed on SIGTERM, which this rank did not get: the run ends "
                        "once every job has");
    }
    int left = 0, running = 0;
    char missing[512] = "";
    size_t off = 0;
    for (int j = 0; j < s->n_jobs; j++) {
        int shut = job_shut(&s->jobs[j]);
        running += !shut;
        if (s->stop_acked[j] || shut)
            continue;
        left++;
        int n = snprintf(missing + off, sizeof missing - off, "%s%s", off ? ", " : "",
                         s->comm->job_name[j]);
        if (n > 0 && (size_t)n < sizeof missing - off)
            off += (size_t)n;
    }
    // Every job done (its final checkpoint written, its report figures too) is no reason to go
    // on to the report: the signal asked the run to end, and it ends as it would have a step
    // earlier (a run that went on ended with exit 0 or, with a slow evaluation, at the grace
    // time). A resumed run starts from the final checkpoints and only evaluates.
    if (!running)
        stop_end(s, "every job has ended its training (its final checkpoint is written)");
    if (!left)
        stop_end(s, "every job has a checkpoint since the signal");
    double grace = s->stop_grace;
    if (rd_mono_s() - s->stop_t0 >= grace) {
        char why[768];
        snprintf(why, sizeof why,
                 "no checkpoint of %s since the signal after %.0f s (RD_STOP_GRACE_S): %s from "
                 "%s earlier checkpoint",
                 missing, grace, left > 1 ? "they resume" : "it resumes",
                 left > 1 ? "their" : "its");
        stop_end(s, why);
    }
    return work;
}

// A shard other than 0: tell shard 0 that this rank got SIGTERM (once). The buffer outlives the
// send (static); the request is freed at once, the send completes on its own.
static void stop_tell(rd_server *s) {
    static const int got = -1;
    s->stop_told = 1;
    MPI_Request r;
    RD_MPI_CHECK(
        MPI_Isend(&got, 1, MPI_INT, s->comm->ps_world[0], RD_TAG_STOP, s->comm->world, &r));
    RD_MPI_CHECK(MPI_Request_free(&r));
}

// ---------------------------------------------------------------------------------------------
// Loop

static int finished(const rd_server *s) {
    if (s->workers_shut < s->workers_total || s->incoming_head || sends_active(s))
        return 0;
    for (int j = 0; j <= s->n_jobs; j++)
        if (s->jobs[j].ready_head)
            return 0;
    return 1;
}

int rd_server_run(rd_server *s) {
    RD_LOG_INFO("PS shard %d of %d: %d tables, %s mode%s, max payload %" PRIu64 " bytes", s->shard,
                s->P, s->n_tables, s->sync ? "sync" : "async",
                !s->sync && s->staleness ? " with a staleness bound" : "", s->max_payload);
    rd_backoff bo;
    rd_backoff_reset(&bo, s->poll_us_max);
    for (;;) {
        int work = poll_incoming(s);
        work |= process_ready(s);
        work |= progress_sends(s);
        // Shard 0: SIGTERM's stop (a probe of the world every 16th turn until it begins).
        // Another shard passes its SIGTERM on to shard 0, once.
        if (s->shard == 0 && (stop_requested || s->stop_t0 != 0.0 || (++s->stop_turn & 15) == 0))
            work |= stop_poll(s);
        else if (s->shard != 0 && stop_requested && !s->stop_told)
            stop_tell(s);
        if (atomic_load(&usr1_ms) != 0)
            work |= usr1_pass(s);
        if (finished(s))
            break;
        // After traffic, poll without yielding for a short window (the data message of a
        // reply being drained, the next request of a batch); idle, back off (see rd/comm.h).
        if (work)
            rd_backoff_hot(&bo, s->poll_us_max, SERVER_HOT_US);
        else
            rd_backoff_wait(&bo);
    }
    for (int j = 0; j < s->n_jobs; j++) {
        int left = 0;
        for (srv_msg *m = s->jobs[j].def_head; m; m = m->next)
            left++;
        if (left)
            RD_LOG_WARN("job %s: %d deferred requests dropped at shutdown (a worker stopped "
                        "mid-step)",
                        s->comm->job_name[j], left);
    }
    RD_LOG_DEBUG("PS shard %d: %" PRIu64 " requests, %" PRIu64 " rejected", s->shard, s->n_requests,
                 s->n_errors);
    return RD_OK;
}

int rd_ps_serve(const rd_comm *comm, const rd_config *cfg) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_server *s = NULL;
    int rc = rd_server_create(comm, cfg, &s, &eb);
    if (rc != RD_OK) {
        RD_LOG_ERROR("cannot start the parameter server: %s", eb.msg);
        return rc;
    }
    // IAT: when a job reads instance tokens, this rank also owns (and is the only writer of) its
    // shards of the run's token store (created by world rank 0 before the roles start).
    rd_token_store *store = NULL;
    rd_token_service *svc = NULL;
    if (rd_config_token_job(cfg) >= 0) {
        rd_token_open_opts oo;
        memset(&oo, 0, sizeof oo);
        oo.mode = RD_TOKEN_WRITE;
        oo.ps_rank = comm->ps_index;
        oo.n_ps = cfg->cluster.ps_ranks;
        oo.expect_dim = cfg->tokens.dim;
        oo.map_size = cfg->tokens.map_size;
        oo.append_batch = cfg->tokens.append_batch;
        // Commits without a disk flush: a build appends every step, and a flush per commit was
        // most of the PS rank's time at scale (fdatasync of a page per token). Durable at each
        // checkpoint (the service's save hook) and at the end (below); a crash of the process
        // loses nothing, a crash of the host only tokens that every launch builds again.
        oo.no_sync = 1;
        rc = rd_token_store_open(cfg->tokens.store_dir, &oo, &store, &eb);
        if (rc == RD_OK)
            rc = rd_token_service_create(s, store, &svc, &eb);
        if (rc != RD_OK) {
            RD_LOG_ERROR("cannot serve the token store %s: %s", cfg->tokens.store_dir, eb.msg);
            rd_server_destroy(s);
            rd_token_store_destroy(store);
            return rc;
        }
    }
    rc = rd_server_run(s);
    if (store) {
        int src = rd_token_store_sync(store, &eb);
        if (src != RD_OK) {
            RD_LOG_ERROR("%s", eb.msg);
            if (rc == RD_OK)
                rc = src;
        }
    }
    rd_server_destroy(s);
    rd_token_service_destroy(svc);
    rd_token_store_destroy(store);
    return rc;
}
