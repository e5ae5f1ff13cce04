// distill.c — the distillation target transport (rd/distill.h): the join table, the teacher-side
// sender with credit flow control, and the student-side receiver (live over MPI, or replaying the
// target log behind the same get()).
//
// Invariants:
//   - A sender never has more than max_in_flight unacknowledged messages per student; what a
//     full window cannot take is held in that student's FIFO (at most hold_max targets before
//     emit waits), so one student that does not credit never stops the others' targets.
//   - A receiver credits a message once it has stored it, and only while its join table keeps
//     `reserve` = teachers * max_in_flight * batch entries below its capacity, so every message
//     that can be in flight towards it fits: a put of received data never finds the table full.
//     The table grows (doubling) towards the capacity as targets arrive ahead of their samples.
//   - Per (teacher, student) pair, messages carry seq 0, 1, 2, ...; MPI keeps them in order (same
//     source, tag and communicator), so any gap or repeat is a protocol error.
//   - Nothing here blocks inside MPI: every wait is MPI_Test / MPI_Iprobe + rd_backoff.
//   - Every buffer is allocated at create; emit / get / progress allocate only when the jobs'
//     record orders drift apart (a sender FIFO or the join table doubles, amortized), or to
//     receive and drop an oversized malformed message.
//
// Workload: one emit per teacher step (B targets), one get per student step (B samples). The
// wire cost is 20 bytes per target plus a 40-byte header per `batch` targets; the join is an
// open-addressing table (linear probing, load <= 1/2) keyed by (phase, sample).
#include "rd/distill.h"

#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/comm.h"
#include "rd/hash.h"
#include "rd/log.h"
#include "rd/msg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MSG_MAGIC    0x47544452u // bytes "RDTG"
#define CREDIT_MAGIC 0x52434452u // bytes "RDCR"
#define MSG_VERSION  1
#define HEADER_BYTES 40
#define CREDIT_BYTES RD_TARGET_CREDIT_BYTES
#define TARGET_BYTES 20
#define MAX_BATCH    (1 << 24)

enum { KIND_DATA = 1, KIND_EOS = 2, KIND_FIN = 3 };

size_t rd_target_msg_bytes(size_t n) {
    return HEADER_BYTES + TARGET_BYTES * n;
}

static double now_ms(void) {
    return rd_mono_s() * 1e3;
}

// ---------------------------------------------------------------------------------------------
// Little-endian encoding (rd/msg.h's helpers; the logits as the bits of an IEEE binary32)

static void put_f32(unsigned char *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    rd_le_put32(p, u);
}
static float get_f32(const unsigned char *p) {
    uint32_t u = rd_le_get32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct msg_header {
    uint32_t magic;
    uint16_t version, kind;
    uint32_t sender, count;
    uint64_t phase;
    uint32_t pass;
    int32_t window;
    uint64_t seq;
} msg_header;

static void encode_header(unsigned char *p, const msg_header *h) {
    rd_le_put32(p + 0, h->magic);
    rd_le_put16(p + 4, h->version);
    rd_le_put16(p + 6, h->kind);
    rd_le_put32(p + 8, h->sender);
    rd_le_put32(p + 12, h->count);
    rd_le_put64(p + 16, h->phase);
    rd_le_put32(p + 24, h->pass);
    rd_le_put32(p + 28, (uint32_t)h->window);
    rd_le_put64(p + 32, h->seq);
}

static void decode_header(const unsigned char *p, msg_header *h) {
    h->magic = rd_le_get32(p + 0);
    h->version = rd_le_get16(p + 4);
    h->kind = rd_le_get16(p + 6);
    h->sender = rd_le_get32(p + 8);
    h->count = rd_le_get32(p + 12);
    h->phase = rd_le_get64(p + 16);
    h->pass = rd_le_get32(p + 24);
    h->window = (int32_t)rd_le_get32(p + 28);
    h->seq = rd_le_get64(p + 32);
}

// ---------------------------------------------------------------------------------------------
// Join table

enum { ST_EMPTY = 0, ST_PENDING = 1, ST_TAKEN = 2, ST_MISSED = 3 };

typedef struct jentry {
    uint64_t sample;
    uint64_t phase;
    uint64_t version;
    float logit;
    uint32_t state; // ST_*
} jentry;

struct rd_target_join {
    jentry *tab;     // (mask + 1)
    size_t mask;     // table size - 1 (power of two >= 2 * room)
    size_t n;        // entries held
    size_t n_live;   // pending targets + missing markers (consumed ones can be purged)
    size_t cap;      // most entries held (the hard bound)
    size_t room;     // entries the current allocation holds (<= cap; doubles on demand)
    uint64_t floor;  // phases < floor have ended
    jentry *scratch; // (room) survivors while rebuilding
};

// First allocation: memory follows what is really held (targets that arrive ahead of their
// samples), not the capacity, which is only the bound.
#define JOIN_ROOM0 4096

static size_t jhash(uint64_t phase, uint64_t sample) {
    return (size_t)rd_mix64(sample ^ rd_mix64(phase + 0x632be59bd9b4e019ULL));
}

// Slot holding the key, or the empty slot where it would go.
static jentry *jfind(rd_target_join *j, uint64_t phase, uint64_t sample) {
    size_t i = jhash(phase, sample) & j->mask;
    for (;;) {
        jentry *e = &j->tab[i];
        if (e->state == ST_EMPTY || (e->sample == sample && e->phase == phase))
            return e;
        i = (i + 1) & j->mask;
    }
}

int rd_target_join_create(size_t capacity, rd_target_join **out, rd_errbuf *eb) {
    *out = NULL;
    if (capacity < 1 || capacity > ((size_t)1 << 40))
        return rd_err_set(eb, RD_ERR_ARG, "target join: capacity %zu not in [1, 2^40]", capacity);
    size_t room = capacity < JOIN_ROOM0 ? capacity : JOIN_ROOM0;
    size_t size = 2;
    while (size < 2 * room)
        size *= 2;
    rd_target_join *j = rd_calloc(1, sizeof *j);
    if (!j)
        return rd_err_set(eb, RD_ERR_NOMEM, "target join: out of memory");
    j->tab = rd_calloc(size, sizeof *j->tab);
    j->scratch = rd_malloc(room * sizeof *j->scratch);
    if (!j->tab || !j->scratch) {
        rd_target_join_destroy(j);
        return rd_err_set(eb, RD_ERR_NOMEM, "target join: cannot allocate %zu entries", size);
    }
    j->mask = size - 1;
    j->cap = capacity;
    j->room = room;
    *out = j;
    return RD_OK;
}

void rd_target_join_destroy(rd_target_join *j) {
    if (!j)
        return;
    rd_free(j->tab);
    rd_free(j->scratch);
    rd_free(j);
}

// Rebuild the table without the entries of ended phases (and, with drop_taken, without the
// consumed ones); returns the pending targets dropped.
static size_t rebuild_drop(rd_target_join *j, int drop_taken, uint64_t drop_phase) {
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i <= j->mask; i++) {
        jentry *e = &j->tab[i];
        if (e->state == ST_EMPTY)
            continue;
        if (e->phase >= j->floor && !(drop_taken && e->state == ST_TAKEN) && e->phase != drop_phase)
            j->scratch[kept++] = *e;
        else if (e->state == ST_PENDING)
            dropped++;
    }
    memset(j->tab, 0, (j->mask + 1) * sizeof *j->tab);
    j->n_live = 0;
    for (size_t k = 0; k < kept; k++) {
        *jfind(j, j->scratch[k].phase, j->scratch[k].sample) = j->scratch[k];
        j->n_live += j->scratch[k].state != ST_TAKEN;
    }
    j->n = kept;
    return dropped;
}

static size_t rebuild(rd_target_join *j, int drop_taken) {
    return rebuild_drop(j, drop_taken, UINT64_MAX);
}

// Double the allocation (at most to cap) and re-insert every entry. Allocates: called only when
// targets arrive ahead of their samples faster than they are taken, amortized O(1) per entry.
static void grow(rd_target_join *j) {
    size_t room = j->room * 2 < j->cap ? j->room * 2 : j->cap;
    size_t size = 2;
    while (size < 2 * room)
        size *= 2;
    jentry *old = j->tab;
    size_t old_size = j->mask + 1;
    j->tab = rd_xcalloc(size, sizeof *j->tab);
    j->mask = size - 1;
    for (size_t i = 0; i < old_size; i++)
        if (old[i].state != ST_EMPTY)
            *jfind(j, old[i].phase, old[i].sample) = old[i];
    rd_free(old);
    rd_free(j->scratch);
    j->scratch = rd_xmalloc(room * sizeof *j->scratch);
    j->room = room;
}

// Room for one more entry. Consumed entries are kept only for duplicate detection: when at least
// half the entries are consumed, or the table is at its cap, forget them (their duplicates can
// then no longer be told apart from new targets); otherwise grow towards the cap.
static int make_room(rd_target_join *j) {
    if (j->n < j->room)
        return 1;
    if (j->n_live < j->n && (j->room >= j->cap || j->n - j->n_live >= j->n / 2))
        rebuild(j, 1);
    if (j->n >= j->room && j->room < j->cap)
        grow(j);
    return j->n < j->room;
}

// Claim the empty slot `e` that jfind gave for (phase, sample) for a new entry, counted in n and
// n_live; the caller fills it. A full table is first made room in (make_room), which may rebuild
// or grow it and so move every slot: the slot is then looked up again. @return the slot, or NULL
// when the table is full at its cap.
static jentry *claim(rd_target_join *j, jentry *e, uint64_t phase, uint64_t sample) {
    if (j->n >= j->room) {
        if (!make_room(j))
            return NULL;
        e = jfind(j, phase, sample);
    }
    j->n++;
    j->n_live++;
    return e;
}

int rd_target_join_put(
    rd_target_join *j, uint64_t phase, uint64_t sample, float logit, uint64_t version) {
    if (phase < j->floor)
        return RD_JOIN_LATE;
    jentry *e = jfind(j, phase, sample);
    if (e->state == ST_MISSED)
        return RD_JOIN_LATE;
    if (e->state != ST_EMPTY)
        return RD_JOIN_DUPLICATE;
    e = claim(j, e, phase, sample);
    if (!e)
        return RD_JOIN_FULL;
    *e = (jentry){sample, phase, version, logit, ST_PENDING};
    return RD_JOIN_STORED;
}

int rd_target_join_take(
    rd_target_join *j, uint64_t phase, uint64_t sample, float *logit, uint64_t *version) {
    jentry *e = jfind(j, phase, sample);
    if (e->state != ST_PENDING)
        return 0;
    if (logit)
        *logit = e->logit;
    if (version)
        *version = e->version;
    e->state = ST_TAKEN;
    j->n_live--;
    return 1;
}

int rd_target_join_miss(rd_target_join *j, uint64_t phase, uint64_t sample) {
    if (phase < j->floor)
        return 1; // any target of an ended phase is late anyway
    jentry *e = jfind(j, phase, sample);
    if (e->state != ST_EMPTY)
        return 1;
    e = claim(j, e, phase, sample);
    if (!e)
        return 0;
    *e = (jentry){sample, phase, 0, 0.0f, ST_MISSED};
    return 1;
}

size_t rd_target_join_end(rd_target_join *j, uint64_t phase) {
    if (phase + 1 > j->floor)
        j->floor = phase + 1;
    // Rebuild: deleting from a linear-probing table in place would need backward shifts per
    // entry; a phase end touches every entry anyway.
    return rebuild(j, 0);
}

size_t rd_target_join_drop(rd_target_join *j, uint64_t phase) {
    return rebuild_drop(j, 0, phase);
}

size_t rd_target_join_size(const rd_target_join *j) {
    return j->n;
}

size_t rd_target_join_live(const rd_target_join *j) {
    return j->n_live;
}

// ---------------------------------------------------------------------------------------------
// Teacher side

struct rd_target_sender {
    MPI_Comm comm;
    int n_students;
    int *students; // (n_students) ranks in comm
    int sender_index;
    rd_target_owner_fn owner;
    void *owner_ctx;
    rd_target_keep_fn keep;
    void *keep_ctx;
    int max_in_flight, batch, poll_us_max, timeout_ms, tag_data, tag_credit;
    rd_target_log *log;
    uint64_t job;

    // Staging: per student d, st_n[d] targets in row d of the (n_students, batch) arrays.
    uint64_t *st_samples;  // (n_students, batch)
    uint64_t *st_versions; // (n_students, batch)
    float *st_logits;      // (n_students, batch)
    size_t *st_n;          // (n_students)
    uint64_t *seq;         // (n_students) next message seq per destination
    uint64_t *unacked_to;  // (n_students) messages not yet credited, per destination
    int unacked;           // sum of unacked_to

    // Send slots: max_in_flight buffers of rd_target_msg_bytes(batch) bytes per destination
    // (slot d * max_in_flight + k), so that a student that does not credit for a while holds
    // only its own slots and window.
    unsigned char *slot_buf;
    size_t slot_bytes;
    MPI_Request *req; // (n_students * max_in_flight)
    int *busy;        // (n_students * max_in_flight)

    // Held messages: per destination, a FIFO of encoded messages (seq written when sent) that
    // its window could not take yet. Grows on demand; held_targets <= hold_max (emit waits).
    unsigned char **q;   // (n_students) buffers
    size_t *q_cap;       // (n_students) bytes allocated
    size_t *q_head;      // (n_students) first byte not yet sent
    size_t *q_tail;      // (n_students) bytes queued
    size_t held_targets; // targets in the FIFOs, all destinations
    size_t hold_max;     // most targets held before emit waits for credits
    int warned_hold;     // the hold_max warning was logged

    uint64_t *log_versions; // (batch) scratch for the log
    int32_t *log_windows;   // (batch)

    uint64_t phase; // phases begun so far (the open one is phase - 1)
    int open, closed;
    uint32_t pass;
    int32_t window;
    rd_target_stats stats;
};

int rd_target_sender_create(const rd_target_sender_opts *o, rd_target_sender **out, rd_errbuf *eb) {
    *out = NULL;
    int comm_size = 0;
    if (!o || o->comm == MPI_COMM_NULL)
        return rd_err_set(eb, RD_ERR_ARG, "target sender: no communicator");
    RD_MPI_CHECK(MPI_Comm_size(o->comm, &comm_size));
    if (o->n_students < 1 || !o->students || !o->owner)
        return rd_err_set(eb, RD_ERR_ARG,
                          "target sender: need >= 1 student rank and an owner "
                          "function");
    for (int d = 0; d < o->n_students; d++)
        if (o->students[d] < 0 || o->students[d] >= comm_size)
            return rd_err_set(eb, RD_ERR_ARG,
                              "target sender: students[%d] = %d not a rank of comm (size %d)", d,
                              o->students[d], comm_size);
    if (o->max_in_flight < 1 || o->max_in_flight > 65536)
        return rd_err_set(eb, RD_ERR_ARG, "target sender: max_in_flight %d not in [1, 65536]",
                          o->max_in_flight);
    if (o->batch < 1 || o->batch > MAX_BATCH)
        return rd_err_set(eb, RD_ERR_ARG, "target sender: batch %d not in [1, 2^24]", o->batch);
    if (o->sender_index < 0 || o->timeout_ms < 0)
        return rd_err_set(eb, RD_ERR_ARG,
                          "target sender: sender_index %d, timeout_ms %d must be "
                          ">= 0",
                          o->sender_index, o->timeout_ms);
    rd_target_sender *s = rd_calloc(1, sizeof *s);
    if (!s)
        return rd_err_set(eb, RD_ERR_NOMEM, "target sender: out of memory");
    s->comm = o->comm;
    s->n_students = o->n_students;
    s->sender_index = o->sender_index;
    s->owner = o->owner;
    s->owner_ctx = o->owner_ctx;
    s->keep = o->keep;
    s->keep_ctx = o->keep_ctx;
    s->max_in_flight = o->max_in_flight;
    s->batch = o->batch;
    s->poll_us_max = o->poll_us_max > 0 ? o->poll_us_max : 200;
    s->timeout_ms = o->timeout_ms;
    s->tag_data = o->tag_data ? o->tag_data : RD_TAG_DISTILL_TARGET;
    s->tag_credit = o->tag_credit ? o->tag_credit : RD_TAG_DISTILL_CREDIT;
    s->log = o->log;
    s->job = o->job;
    size_t nd = (size_t)o->n_students, b = (size_t)o->batch, w = (size_t)o->max_in_flight;
    s->hold_max = o->hold_max ? o->hold_max : RD_TARGET_HOLD_DEFAULT;
    if (s->hold_max < nd * b)
        s->hold_max = nd * b; // a full batch per destination can always be held
    s->slot_bytes = rd_target_msg_bytes(b);
    s->students = rd_malloc(nd * sizeof *s->students);
    s->st_samples = rd_malloc(nd * b * sizeof *s->st_samples);
    s->st_versions = rd_malloc(nd * b * sizeof *s->st_versions);
    s->st_logits = rd_malloc(nd * b * sizeof *s->st_logits);
    s->st_n = rd_calloc(nd, sizeof *s->st_n);
    s->seq = rd_calloc(nd, sizeof *s->seq);
    s->unacked_to = rd_calloc(nd, sizeof *s->unacked_to);
    s->slot_buf = rd_malloc(nd * w * s->slot_bytes);
    s->req = rd_malloc(nd * w * sizeof *s->req);
    s->busy = rd_calloc(nd * w, sizeof *s->busy);
    s->log_versions = rd_malloc(b * sizeof *s->log_versions);
    s->log_windows = rd_malloc(b * sizeof *s->log_windows);
    s->q = rd_calloc(nd, sizeof *s->q);
    s->q_cap = rd_calloc(nd, sizeof *s->q_cap);
    s->q_head = rd_calloc(nd, sizeof *s->q_head);
    s->q_tail = rd_calloc(nd, sizeof *s->q_tail);
    int q_ok = s->q && s->q_cap && s->q_head && s->q_tail;
    // One full message per destination up front: in the common case (the window has room) a
    // message passes through its FIFO without any allocation.
    for (size_t d = 0; q_ok && d < nd; d++) {
        s->q[d] = rd_malloc(s->slot_bytes);
        s->q_cap[d] = s->slot_bytes;
        q_ok = s->q[d] != NULL;
    }
    if (!s->students || !s->st_samples || !s->st_versions || !s->st_logits || !s->st_n || !s->seq ||
        !s->unacked_to || !s->slot_buf || !s->req || !s->busy || !s->log_versions ||
        !s->log_windows || !q_ok) {
        rd_target_sender_destroy(s);
        return rd_err_set(eb, RD_ERR_NOMEM,
                          "target sender: cannot allocate buffers for %zu "
                          "students x batch %zu",
                          nd, b);
    }
    memcpy(s->students, o->students, nd * sizeof *s->students);
    for (size_t i = 0; i < nd * w; i++)
        s->req[i] = MPI_REQUEST_NULL;
    *out = s;
    return RD_OK;
}

static int student_of_rank(const rd_target_sender *s, int rank) {
    for (int d = 0; d < s->n_students; d++)
        if (s->students[d] == rank)
            return d;
    return -1;
}

// Receive one pending message of `bytes` from `src` on `tag` into buf, or, when it is larger than
// cap, into a temporary buffer that is dropped (*len_out = its size; return 0).
static int
recv_bounded(MPI_Comm comm, int src, int tag, int bytes, unsigned char *buf, size_t cap) {
    if (bytes >= 0 && (size_t)bytes <= cap) {
        RD_MPI_CHECK(MPI_Recv(buf, bytes, MPI_BYTE, src, tag, comm, MPI_STATUS_IGNORE));
        return 1;
    }
    void *tmp = rd_xmalloc(bytes > 0 ? (size_t)bytes : 1);
    RD_MPI_CHECK(MPI_Recv(tmp, bytes, MPI_BYTE, src, tag, comm, MPI_STATUS_IGNORE));
    rd_free(tmp);
    return 0;
}

static void pump(rd_target_sender *s, int d);

int rd_target_sender_progress(rd_target_sender *s, rd_errbuf *eb) {
    for (int i = 0; i < s->n_students * s->max_in_flight; i++) {
        if (!s->busy[i])
            continue;
        int done = 0;
        RD_MPI_CHECK(MPI_Test(&s->req[i], &done, MPI_STATUS_IGNORE));
        if (done)
            s->busy[i] = 0;
    }
    int rc = RD_OK;
    for (int d = 0; d < s->n_students; d++) {
        for (;;) {
            int flag = 0, bytes = 0;
            MPI_Status st;
            RD_MPI_CHECK(MPI_Iprobe(s->students[d], s->tag_credit, s->comm, &flag, &st));
            if (!flag)
                break;
            RD_MPI_CHECK(MPI_Get_count(&st, MPI_BYTE, &bytes));
            unsigned char c[CREDIT_BYTES];
            int ok = recv_bounded(s->comm, s->students[d], s->tag_credit, bytes, c, sizeof c);
            if (!ok || bytes != CREDIT_BYTES) {
                s->stats.rejected++;
                rc = rd_err_set(eb, RD_ERR_PROTO,
                                "target sender %d: credit message of %d bytes from rank %d "
                                "(expected %d)",
                                s->sender_index, bytes, s->students[d], CREDIT_BYTES);
                continue;
            }
            uint32_t magic = rd_le_get32(c), count = rd_le_get32(c + 8), who = rd_le_get32(c + 12);
            uint16_t version = rd_le_get16(c + 4);
            if (magic != CREDIT_MAGIC || version != MSG_VERSION || who != (uint32_t)d ||
                count == 0 || count > s->unacked_to[d]) {
                s->stats.rejected++;
                rc = rd_err_set(eb, RD_ERR_PROTO,
                                "target sender %d: bad credit from rank %d (magic 0x%08x version "
                                "%u student %u count %u, %llu messages unacknowledged)",
                                s->sender_index, s->students[d], magic, version, who, count,
                                (unsigned long long)s->unacked_to[d]);
                continue;
            }
            s->unacked_to[d] -= count;
            s->unacked -= (int)count;
            s->stats.credits++;
        }
    }
    for (int d = 0; d < s->n_students; d++)
        pump(s, d);
    return rc;
}

// Send destination d's held messages, oldest first, while its window and its send slots have
// room. Never waits. The seq is assigned here, in sending order, so each stream stays gapless.
static void pump(rd_target_sender *s, int d) {
    size_t w = (size_t)s->max_in_flight;
    while (s->q_head[d] < s->q_tail[d] && s->unacked_to[d] < (uint64_t)s->max_in_flight) {
        size_t slot = SIZE_MAX;
        for (size_t k = 0; k < w && slot == SIZE_MAX; k++)
            if (!s->busy[(size_t)d * w + k])
                slot = (size_t)d * w + k;
        if (slot == SIZE_MAX)
            return; // sends still completing: progress tests them
        const unsigned char *m = s->q[d] + s->q_head[d];
        uint32_t n = rd_le_get32(m + 12);
        size_t bytes = rd_target_msg_bytes(n);
        unsigned char *p = s->slot_buf + slot * s->slot_bytes;
        memcpy(p, m, bytes);
        rd_le_put64(p + 32, s->seq[d]);
        RD_MPI_CHECK(MPI_Isend(p, (int)bytes, MPI_BYTE, s->students[d], s->tag_data, s->comm,
                               &s->req[slot]));
        s->busy[slot] = 1;
        s->seq[d]++;
        s->unacked_to[d]++;
        s->unacked++;
        s->stats.messages++;
        s->stats.bytes += bytes;
        s->stats.sent += n;
        s->held_targets -= n;
        s->q_head[d] += bytes;
        if (s->q_head[d] == s->q_tail[d])
            s->q_head[d] = s->q_tail[d] = 0;
    }
}

// Append the staged targets of student d (data) or a marker (kind EOS / FIN) to d's FIFO, then
// send what d's window takes. Never waits for credits: one student that does not credit for a
// while (e.g. blocked in its job's allreduce behind a peer that waits for a target of ours)
// must not stop the targets of the others (the deadlock of rd/distill.h, "Transport").
static void send_msg(rd_target_sender *s, int d, int kind) {
    size_t n = kind == KIND_DATA ? s->st_n[d] : 0;
    size_t bytes = rd_target_msg_bytes(n);
    if (s->q_tail[d] + bytes > s->q_cap[d]) {
        if (s->q_head[d] > 0) { // compact first
            memmove(s->q[d], s->q[d] + s->q_head[d], s->q_tail[d] - s->q_head[d]);
            s->q_tail[d] -= s->q_head[d];
            s->q_head[d] = 0;
        }
        if (s->q_tail[d] + bytes > s->q_cap[d]) {
            size_t cap = s->q_cap[d] * 2;
            while (cap < s->q_tail[d] + bytes)
                cap *= 2;
            s->q[d] = rd_xrealloc(s->q[d], cap);
            s->q_cap[d] = cap;
        }
    }
    unsigned char *p = s->q[d] + s->q_tail[d];
    msg_header h = {MSG_MAGIC,
                    MSG_VERSION,
                    (uint16_t)kind,
                    (uint32_t)s->sender_index,
                    (uint32_t)n,
                    s->phase - 1,
                    s->pass,
                    s->window,
                    0};
    if (kind == KIND_FIN)
        h.phase = s->phase; // phases begun: the receiver can check it saw every EOS
    encode_header(p, &h);
    const uint64_t *sm = s->st_samples + (size_t)d * (size_t)s->batch;
    const uint64_t *vs = s->st_versions + (size_t)d * (size_t)s->batch;
    const float *lg = s->st_logits + (size_t)d * (size_t)s->batch;
    unsigned char *q = p + HEADER_BYTES;
    for (size_t i = 0; i < n; i++)
        rd_le_put64(q + 8 * i, sm[i]);
    q += 8 * n;
    for (size_t i = 0; i < n; i++)
        rd_le_put64(q + 8 * i, vs[i]);
    q += 8 * n;
    for (size_t i = 0; i < n; i++)
        put_f32(q + 4 * i, lg[i]);
    s->q_tail[d] += bytes;
    s->held_targets += n;
    s->st_n[d] = 0;
    pump(s, d);
}

// Wait (progress + backoff) until the held targets are at most `most` (0: every FIFO empty),
// or, with `all_credited`, also every message credited and every send complete. timeout_ms
// bounds the time without a credit, not the whole wait: a student slower than the teacher
// drains a phase's held targets for as long as it takes to train the rest of that phase
// (minutes or hours), crediting all along, and is not a student that stopped.
static int wait_held(rd_target_sender *s, size_t most, int all_credited, rd_errbuf *eb) {
    rd_backoff bo;
    rd_backoff_reset(&bo, s->poll_us_max);
    double t0 = now_ms(), t_credit = t0;
    uint64_t credits = s->stats.credits;
    for (;;) {
        int rc = rd_target_sender_progress(s, eb);
        if (rc != RD_OK)
            return rc;
        if (s->stats.credits != credits) {
            credits = s->stats.credits;
            t_credit = now_ms();
        }
        int queued = 0, busy = 0;
        for (int d = 0; d < s->n_students; d++)
            queued += s->q_head[d] < s->q_tail[d];
        for (int i = 0; all_credited && i < s->n_students * s->max_in_flight; i++)
            busy += s->busy[i];
        int done = most == 0 ? !queued : s->held_targets <= most;
        if (done && (!all_credited || (s->unacked == 0 && busy == 0))) {
            s->stats.blocked_us += (uint64_t)((now_ms() - t0) * 1e3);
            return RD_OK;
        }
        if (s->timeout_ms > 0 && now_ms() - t_credit > s->timeout_ms)
            return rd_err_set(eb, RD_ERR_TIMEOUT,
                              "target sender %d: no credit within %d ms (%d messages "
                              "unacknowledged, %zu targets held; are the students "
                              "progressing?)",
                              s->sender_index, s->timeout_ms, s->unacked, s->held_targets);
        rd_backoff_wait(&bo);
    }
}

// Back-pressure: more than hold_max targets held means a student has stopped crediting for
// longer than any order drift explains (or the drift exceeds the documented bound): wait.
static int hold_check(rd_target_sender *s, rd_errbuf *eb) {
    if (s->held_targets <= s->hold_max)
        return RD_OK;
    if (!s->warned_hold) {
        s->warned_hold = 1;
        RD_LOG_WARN("target sender %d: %zu targets held for students that do not credit (bound "
                    "%zu): the teacher now waits for credits; if a student waits for a target "
                    "behind them, it is late (the student's records run too far from the "
                    "teacher's: see docs/distillation.md, transport)",
                    s->sender_index, s->held_targets, s->hold_max);
    }
    return wait_held(s, s->hold_max, 0, eb);
}

int rd_target_sender_begin(rd_target_sender *s, uint32_t pass, int32_t window, rd_errbuf *eb) {
    if (s->open || s->closed)
        return rd_err_set(eb, RD_ERR_STATE, "target sender %d: begin: %s", s->sender_index,
                          s->closed ? "sender is closed" : "phase already open");
    s->phase++;
    s->open = 1;
    s->pass = pass;
    s->window = window;
    return RD_OK;
}

// emit and resend: `versions` (n) when given, else `version` for all; `log` 0 = not appended.
static int emit_impl(rd_target_sender *s,
                     size_t n,
                     const uint64_t *samples,
                     const float *logits,
                     uint64_t version,
                     const uint64_t *versions,
                     int log,
                     rd_errbuf *eb) {
    if (!s->open)
        return rd_err_set(eb, RD_ERR_STATE, "target sender %d: %s outside a phase", s->sender_index,
                          log ? "emit" : "resend");
    if (n == 0)
        return RD_OK;
    if (!samples || !logits)
        return rd_err_set(eb, RD_ERR_ARG, "target sender %d: emit: NULL arrays", s->sender_index);
    // 1. Validate everything before anything leaves.
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(logits[i]))
            return rd_err_set(eb, RD_ERR_ARG,
                              "target sender %d: emit: logit %zu of sample %llu is not finite",
                              s->sender_index, i, (unsigned long long)samples[i]);
        int d = s->owner(samples[i], s->owner_ctx);
        if (d < 0 || d >= s->n_students)
            return rd_err_set(eb, RD_ERR_RANGE,
                              "target sender %d: emit: owner of sample %llu is %d, not in [0, %d)",
                              s->sender_index, (unsigned long long)samples[i], d, s->n_students);
    }
    // 2. The log, in chunks of `batch` (one write transaction each).
    if (s->log && log) {
        for (size_t off = 0; off < n; off += (size_t)s->batch) {
            size_t m = n - off < (size_t)s->batch ? n - off : (size_t)s->batch;
            for (size_t i = 0; i < m; i++) {
                s->log_versions[i] = version;
                s->log_windows[i] = s->window;
            }
            rd_target_batch tb = {
                m, s->job, s->pass, samples + off, logits + off, s->log_versions, s->log_windows};
            int rc = rd_target_log_append(s->log, &tb, eb);
            if (rc != RD_OK) {
                rd_err_prefix(eb, "target sender %d: ", s->sender_index);
                return rc;
            }
            s->stats.logged += m;
        }
    }
    // 3. Stage; send full batches.
    for (size_t i = 0; i < n; i++) {
        if (s->keep && !s->keep(samples[i], s->keep_ctx)) {
            s->stats.unsampled++;
            continue;
        }
        int d = s->owner(samples[i], s->owner_ctx);
        size_t k = (size_t)d * (size_t)s->batch + s->st_n[d];
        s->st_samples[k] = samples[i];
        s->st_versions[k] = versions ? versions[i] : version;
        s->st_logits[k] = logits[i];
        if (++s->st_n[d] == (size_t)s->batch) {
            send_msg(s, d, KIND_DATA);
            int rc = hold_check(s, eb);
            if (rc != RD_OK)
                return rc;
        }
    }
    return rd_target_sender_progress(s, eb);
}

int rd_target_sender_emit(rd_target_sender *s,
                          size_t n,
                          const uint64_t *samples,
                          const float *logits,
                          uint64_t version,
                          rd_errbuf *eb) {
    return emit_impl(s, n, samples, logits, version, NULL, 1, eb);
}

int rd_target_sender_resend(rd_target_sender *s,
                            size_t n,
                            const uint64_t *samples,
                            const float *logits,
                            const uint64_t *versions,
                            rd_errbuf *eb) {
    if (n > 0 && !versions)
        return rd_err_set(eb, RD_ERR_ARG, "target sender %d: resend: NULL versions",
                          s->sender_index);
    return emit_impl(s, n, samples, logits, 0, versions, 0, eb);
}

int rd_target_sender_flush(rd_target_sender *s, rd_errbuf *eb) {
    for (int d = 0; d < s->n_students; d++)
        if (s->st_n[d] > 0)
            send_msg(s, d, KIND_DATA);
    int rc = hold_check(s, eb);
    if (rc != RD_OK)
        return rc;
    return rd_target_sender_progress(s, eb);
}

int rd_target_sender_end(rd_target_sender *s, rd_errbuf *eb) {
    if (!s->open)
        return rd_err_set(eb, RD_ERR_STATE, "target sender %d: end outside a phase",
                          s->sender_index);
    for (int d = 0; d < s->n_students; d++) {
        if (s->st_n[d] > 0)
            send_msg(s, d, KIND_DATA);
        send_msg(s, d, KIND_EOS);
    }
    s->open = 0;
    // The phase's data and EOS all leave before the teacher moves on: nothing of a phase is held
    // across the teacher's work between phases (evaluation, checkpoints), where it might not
    // progress. No cycle: every student that still waits for this phase's targets progresses.
    return wait_held(s, 0, 0, eb);
}

int rd_target_sender_close(rd_target_sender *s, rd_errbuf *eb) {
    if (s->open)
        return rd_err_set(eb, RD_ERR_STATE, "target sender %d: close with phase %llu open",
                          s->sender_index, (unsigned long long)(s->phase - 1));
    if (!s->closed) {
        for (int d = 0; d < s->n_students; d++)
            send_msg(s, d, KIND_FIN);
        s->closed = 1;
    }
    // Every held message sent, every message credited (the receivers hold them all) and every
    // send complete.
    return wait_held(s, 0, 1, eb);
}

void rd_target_sender_stats(const rd_target_sender *s, rd_target_stats *out) {
    *out = s->stats;
}

void rd_target_sender_destroy(rd_target_sender *s) {
    if (!s)
        return;
    int pending = 0;
    if (s->req)
        for (int i = 0; i < s->n_students * s->max_in_flight; i++)
            if (s->busy && s->busy[i]) {
                MPI_Cancel(&s->req[i]);
                MPI_Request_free(&s->req[i]);
                pending++;
            }
    if (pending)
        RD_LOG_WARN("target sender %d destroyed with %d sends pending (close not called?)",
                    s->sender_index, pending);
    rd_free(s->students);
    rd_free(s->st_samples);
    rd_free(s->st_versions);
    rd_free(s->st_logits);
    rd_free(s->st_n);
    rd_free(s->seq);
    rd_free(s->unacked_to);
    rd_free(s->slot_buf);
    rd_free(s->req);
    rd_free(s->busy);
    rd_free(s->log_versions);
    rd_free(s->log_windows);
    for (int d = 0; s->q && d < s->n_students; d++)
        rd_free(s->q[d]);
    rd_free(s->q);
    rd_free(s->q_cap);
    rd_free(s->q_head);
    rd_free(s->q_tail);
    rd_free(s);
}

// ---------------------------------------------------------------------------------------------
// Student side

struct rd_target_recv {
    int replay_mode;
    rd_target_log *log;
    uint64_t job;

    MPI_Comm comm;
    int n_teachers;
    int *teachers; // (n_teachers)
    int student_index;
    rd_target_owner_fn owner;
    void *owner_ctx;
    int max_in_flight, batch, poll_us_max, tag_data, tag_credit, wait_ms, timeout_ms;

    rd_target_join *join;
    size_t capacity, reserve;

    unsigned char *rbuf; // (rd_target_msg_bytes(batch))
    size_t rbuf_cap;
    uint64_t *expect_seq; // (n_teachers)
    uint64_t *eos;        // (n_teachers) phases each teacher ended
    int *fin;             // (n_teachers)
    int n_fin;
    uint64_t *owed; // (n_teachers) messages joined, not yet credited

    // Credit send slots: max_in_flight per teacher (one credit message covers >= 1 message).
    unsigned char *cbuf; // (n_teachers * max_in_flight, CREDIT_BYTES)
    MPI_Request *creq;   // (n_teachers * max_in_flight)
    int *cbusy;

    uint32_t *idx; // (scratch) indices of samples still without a target in get()
    size_t idx_cap;

    uint64_t phase; // phases begun (the open one is phase - 1)
    int open, closing;
    int skip; // the open phase takes no targets: what arrives for it is counted unused at once
    // rd_target_recv_set_consumed: the samples of phase (cons_pass, cons_window) trained on
    // before a checkpoint, and every sample of the phases before it
    rd_target_keep_fn consumed; // 1 = trained on before the checkpoint; NULL = none
    void *consumed_ctx;
    uint32_t cons_pass;
    int32_t cons_window;
    int warned_full; // the "credits pause" warning was logged
    // A teacher's stream lost an end-of-phase marker (it sent something of a later phase, or its
    // FIN, before the end of a phase reached here): that phase can never complete, so every
    // later call fails with this message instead of waiting for it.
    int broken;
    char broken_msg[512];
    uint32_t pass;
    int32_t window;
    rd_target_stats stats;
};

int rd_target_recv_create(const rd_target_recv_opts *o, rd_target_recv **out, rd_errbuf *eb) {
    *out = NULL;
    if (!o)
        return rd_err_set(eb, RD_ERR_ARG, "target receiver: no options");
    if (o->wait_ms < 0 || o->timeout_ms < 0)
        return rd_err_set(eb, RD_ERR_ARG, "target receiver: wait_ms %d / timeout_ms %d < 0",
                          o->wait_ms, o->timeout_ms);
    rd_target_recv *r = rd_calloc(1, sizeof *r);
    if (!r)
        return rd_err_set(eb, RD_ERR_NOMEM, "target receiver: out of memory");
    r->wait_ms = o->wait_ms;
    r->timeout_ms = o->timeout_ms;
    if (o->replay) {
        r->replay_mode = 1;
        r->log = o->replay;
        r->job = o->job;
        *out = r;
        return RD_OK;
    }
    int comm_size = 0, rc = RD_OK;
    if (o->comm == MPI_COMM_NULL) {
        rc = rd_err_set(eb, RD_ERR_ARG, "target receiver: no communicator");
        goto fn_fail;
    }
    RD_MPI_CHECK(MPI_Comm_size(o->comm, &comm_size));
    if (o->n_teachers < 1 || !o->teachers || o->student_index < 0) {
        rc = rd_err_set(eb, RD_ERR_ARG,
                        "target receiver: need >= 1 teacher rank and a student "
                        "index >= 0");
        goto fn_fail;
    }
    for (int t = 0; t < o->n_teachers; t++)
        if (o->teachers[t] < 0 || o->teachers[t] >= comm_size) {
            rc = rd_err_set(eb, RD_ERR_ARG,
                            "target receiver: teachers[%d] = %d not a rank of comm (size %d)", t,
                            o->teachers[t], comm_size);
            goto fn_fail;
        }
    if (o->max_in_flight < 1 || o->max_in_flight > 65536 || o->batch < 1 || o->batch > MAX_BATCH) {
        rc = rd_err_set(eb, RD_ERR_ARG,
                        "target receiver: max_in_flight %d not in [1, 65536] or batch %d not in "
                        "[1, 2^24]",
                        o->max_in_flight, o->batch);
        goto fn_fail;
    }
    r->comm = o->comm;
    r->n_teachers = o->n_teachers;
    r->student_index = o->student_index;
    r->owner = o->owner;
    r->owner_ctx = o->owner_ctx;
    r->max_in_flight = o->max_in_flight;
    r->batch = o->batch;
    r->poll_us_max = o->poll_us_max > 0 ? o->poll_us_max : 200;
    r->tag_data = o->tag_data ? o->tag_data : RD_TAG_DISTILL_TARGET;
    r->tag_credit = o->tag_credit ? o->tag_credit : RD_TAG_DISTILL_CREDIT;
    r->reserve = (size_t)o->n_teachers * (size_t)o->max_in_flight * (size_t)o->batch;
    r->capacity = o->capacity;
    if (r->capacity == 0) {
        // A bound, not an allocation: the table grows only as targets arrive ahead of their
        // samples (rd/distill.h, "Transport").
        r->capacity = 4 * r->reserve;
        if (r->capacity < RD_TARGET_JOIN_DEFAULT)
            r->capacity = RD_TARGET_JOIN_DEFAULT;
    }
    if (r->capacity < 2 * r->reserve) {
        rc = rd_err_set(eb, RD_ERR_ARG,
                        "target receiver: capacity %zu < 2 x the %zu targets that can be in "
                        "flight (teachers x max_in_flight x batch)",
                        r->capacity, r->reserve);
        goto fn_fail;
    }
    rc = rd_target_join_create(r->capacity, &r->join, eb);
    if (rc != RD_OK)
        goto fn_fail;
    size_t nt = (size_t)o->n_teachers, w = (size_t)o->max_in_flight;
    r->rbuf_cap = rd_target_msg_bytes((size_t)o->batch);
    r->rbuf = rd_malloc(r->rbuf_cap);
    r->teachers = rd_malloc(nt * sizeof *r->teachers);
    r->expect_seq = rd_calloc(nt, sizeof *r->expect_seq);
    r->eos = rd_calloc(nt, sizeof *r->eos);
    r->fin = rd_calloc(nt, sizeof *r->fin);
    r->owed = rd_calloc(nt, sizeof *r->owed);
    r->cbuf = rd_malloc(nt * w * CREDIT_BYTES);
    r->creq = rd_malloc(nt * w * sizeof *r->creq);
    r->cbusy = rd_calloc(nt * w, sizeof *r->cbusy);
    if (!r->rbuf || !r->teachers || !r->expect_seq || !r->eos || !r->fin || !r->owed || !r->cbuf ||
        !r->creq || !r->cbusy) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "target receiver: out of memory");
        goto fn_fail;
    }
    memcpy(r->teachers, o->teachers, nt * sizeof *r->teachers);
    for (size_t i = 0; i < nt * w; i++)
        r->creq[i] = MPI_REQUEST_NULL;
    *out = r;
    return RD_OK;
fn_fail:
    rd_target_recv_destroy(r);
    return rc;
}

// Is phase (pass, window) before phase (cpass, cwindow) in the schedule (batch epochs by pass,
// then stream windows by window)?
static int phase_before(uint32_t pass, int32_t window, uint32_t cpass, int32_t cwindow) {
    if (window < 0)
        return cwindow >= 0 || pass < cpass;
    return cwindow >= 0 && window < cwindow;
}

// Teacher t's well-formed message shows it ended every phase before `phase` (targets of phase
// `phase`; a FIN after `phase` phases). A teacher ends its phases in order, and its stream
// carries a phase's end before anything later: when that is past the phases it ended here, the
// end of phase eos[t] came and was rejected as malformed, and that phase can never complete
// here. A rejected marker itself proves nothing (its phase field may be what is wrong).
static void note_past(rd_target_recv *r, int t, uint64_t phase, int kind) {
    if (phase <= r->eos[t] || r->broken)
        return;
    const char *what = kind == KIND_DATA ? "targets of phase" : "its FIN after a phase count of";
    snprintf(r->broken_msg, sizeof r->broken_msg,
             "target receiver %d: teacher %d (rank %d) sent %s %llu, but its end of phase %llu "
             "never arrived here (a malformed message from it was rejected): that phase can "
             "never complete",
             r->student_index, t, r->teachers[t], what, (unsigned long long)phase,
             (unsigned long long)r->eos[t]);
    r->broken = 1;
}

// Handle one received message of teacher t. Returns RD_OK, or RD_ERR_PROTO (dropped, counted).
// *credit = 1 when the message came from a well-formed stream and must be acknowledged.
static int handle_msg(
    rd_target_recv *r, int t, const unsigned char *p, size_t len, int *credit, rd_errbuf *eb) {
    *credit = 0;
    r->stats.messages++;
    r->stats.bytes += len;
    int src = r->teachers[t];
    if (len < HEADER_BYTES)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: message of %zu bytes from rank %d (teacher %d) is "
                          "shorter than a header",
                          r->student_index, len, src, t);
    msg_header h;
    decode_header(p, &h);
    if (h.magic != MSG_MAGIC || h.version != MSG_VERSION)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: message from rank %d (teacher %d): bad magic "
                          "0x%08x or version %u",
                          r->student_index, src, t, h.magic, h.version);
    if (h.sender != (uint32_t)t)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: message from rank %d claims sender %u, expected %d",
                          r->student_index, src, h.sender, t);
    if (h.seq != r->expect_seq[t])
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: teacher %d sent message seq %llu, expected %llu "
                          "(lost or duplicated message)",
                          r->student_index, t, (unsigned long long)h.seq,
                          (unsigned long long)r->expect_seq[t]);
    if (r->fin[t])
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: message from teacher %d after "
                          "its FIN",
                          r->student_index, t);
    // The stream is in sequence: from here on the message is acknowledged even if rejected,
    // so that the sender's window stays consistent.
    r->expect_seq[t]++;
    *credit = 1;
    if (h.kind == KIND_EOS || h.kind == KIND_FIN) {
        if (h.count != 0 || len != HEADER_BYTES)
            return rd_err_set(eb, RD_ERR_PROTO,
                              "target receiver %d: %s marker from teacher %d with %u targets / "
                              "%zu bytes",
                              r->student_index, h.kind == KIND_EOS ? "EOS" : "FIN", t, h.count,
                              len);
        if (h.kind == KIND_EOS) {
            if (h.phase != r->eos[t])
                return rd_err_set(eb, RD_ERR_PROTO,
                                  "target receiver %d: teacher %d ended phase %llu, expected "
                                  "phase %llu",
                                  r->student_index, t, (unsigned long long)h.phase,
                                  (unsigned long long)r->eos[t]);
            r->eos[t]++;
        } else {
            note_past(r, t, h.phase, KIND_FIN); // its phase is the count of phases it began
            if (h.phase != r->eos[t] && !r->broken)
                RD_LOG_WARN("target receiver %d: teacher %d closed after beginning %llu phases "
                            "but ending %llu",
                            r->student_index, t, (unsigned long long)h.phase,
                            (unsigned long long)r->eos[t]);
            r->fin[t] = 1;
            r->n_fin++;
        }
        return RD_OK;
    }
    if (h.kind != KIND_DATA)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: unknown message kind %u from "
                          "teacher %d",
                          r->student_index, h.kind, t);
    if (h.count < 1 || h.count > (uint32_t)r->batch || len != rd_target_msg_bytes(h.count))
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: data message from teacher %d: count %u (batch %d) "
                          "does not match its %zu bytes",
                          r->student_index, t, h.count, r->batch, len);
    if (h.phase < r->eos[t])
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: teacher %d sent targets of phase %llu after ending "
                          "it",
                          r->student_index, t, (unsigned long long)h.phase);
    if (r->open && h.phase == r->phase - 1 && (h.pass != r->pass || h.window != r->window))
        return rd_err_set(eb, RD_ERR_PROTO,
                          "target receiver %d: teacher %d's phase %llu is (pass %u, window %d) but "
                          "the student's is (pass %u, window %d): schedules differ",
                          r->student_index, t, (unsigned long long)h.phase, h.pass, h.window,
                          r->pass, r->window);
    size_t n = h.count;
    const unsigned char *sm = p + HEADER_BYTES, *vs = sm + 8 * n, *lg = vs + 8 * n;
    // Validate the whole message before joining any of it.
    for (size_t i = 0; i < n; i++) {
        uint64_t sample = rd_le_get64(sm + 8 * i);
        float logit = get_f32(lg + 4 * i);
        if (!isfinite(logit))
            return rd_err_set(eb, RD_ERR_PROTO,
                              "target receiver %d: teacher %d: target %zu (sample %llu) has a "
                              "non-finite logit",
                              r->student_index, t, i, (unsigned long long)sample);
        if (r->owner) {
            int d = r->owner(sample, r->owner_ctx);
            if (d != r->student_index)
                return rd_err_set(eb, RD_ERR_PROTO,
                                  "target receiver %d: teacher %d sent sample %llu, owned by "
                                  "student %d",
                                  r->student_index, t, (unsigned long long)sample, d);
        }
    }
    note_past(r, t, h.phase, KIND_DATA);                 // well formed: its phase can be trusted
    if (r->skip && r->open && h.phase == r->phase - 1) { // never stored: credits keep flowing
        r->stats.received += n;
        r->stats.unused += n;
        return RD_OK;
    }
    int cons = r->consumed && h.pass == r->cons_pass && h.window == r->cons_window;
    int before = r->consumed && phase_before(h.pass, h.window, r->cons_pass, r->cons_window);
    for (size_t i = 0; i < n; i++) {
        uint64_t sample = rd_le_get64(sm + 8 * i);
        if (before || (cons && r->consumed(sample, r->consumed_ctx))) {
            // A resumed teacher sends again what it sent after its own checkpoint: the student
            // trained on this one before its checkpoint (the first target of the key), in its
            // checkpoint's phase or one before. Also after the student ended the phase: not
            // late, it was never waited for.
            r->stats.duplicates++;
            continue;
        }
        int res = rd_target_join_put(r->join, h.phase, sample, get_f32(lg + 4 * i),
                                     rd_le_get64(vs + 8 * i));
        switch (res) {
            case RD_JOIN_STORED:
                r->stats.received++;
                break;
            case RD_JOIN_DUPLICATE:
                r->stats.duplicates++;
                break;
            case RD_JOIN_LATE:
                r->stats.late++;
                break;
            default:
                // Cannot happen while credits keep `reserve` entries free; count, never hide.
                r->stats.unused++;
                RD_LOG_WARN("target receiver %d: join table full, target dropped",
                            r->student_index);
                break;
        }
    }
    return RD_OK;
}

static void send_credits(rd_target_recv *r) {
    size_t w = (size_t)r->max_in_flight;
    for (size_t i = 0; i < (size_t)r->n_teachers * w; i++)
        if (r->cbusy[i]) {
            int done = 0;
            RD_MPI_CHECK(MPI_Test(&r->creq[i], &done, MPI_STATUS_IGNORE));
            if (done)
                r->cbusy[i] = 0;
        }
    int room = rd_target_join_live(r->join) + r->reserve <= r->capacity;
    if (!room && !r->closing) {
        if (!r->warned_full) {
            r->warned_full = 1;
            RD_LOG_WARN("target receiver %d: %zu targets wait for their samples (join capacity "
                        "%zu): credits pause until the student catches up; a target it waits "
                        "for behind them is late (the student's records run too far from the "
                        "teacher's: see docs/distillation.md, transport)",
                        r->student_index, rd_target_join_live(r->join), r->capacity);
        }
        return; // back-pressure: the teachers wait until get() / end() make room
    }
    for (int t = 0; t < r->n_teachers; t++) {
        if (r->owed[t] == 0)
            continue;
        for (size_t k = 0; k < w; k++) {
            size_t i = (size_t)t * w + k;
            if (r->cbusy[i])
                continue;
            unsigned char *c = r->cbuf + i * CREDIT_BYTES;
            rd_le_put32(c, CREDIT_MAGIC);
            rd_le_put16(c + 4, MSG_VERSION);
            rd_le_put16(c + 6, 0);
            rd_le_put32(c + 8, (uint32_t)r->owed[t]);
            rd_le_put32(c + 12, (uint32_t)r->student_index);
            RD_MPI_CHECK(MPI_Isend(c, CREDIT_BYTES, MPI_BYTE, r->teachers[t], r->tag_credit,
                                   r->comm, &r->creq[i]));
            r->cbusy[i] = 1;
            r->owed[t] = 0;
            r->stats.credits++;
            break;
        }
    }
}

int rd_target_recv_progress(rd_target_recv *r, rd_errbuf *eb) {
    if (r->replay_mode)
        return RD_OK;
    if (r->broken)
        return rd_err_set(eb, RD_ERR_STATE, "%s", r->broken_msg);
    int rc = RD_OK;
    for (int t = 0; t < r->n_teachers; t++) {
        for (;;) {
            int flag = 0, bytes = 0;
            MPI_Status st;
            RD_MPI_CHECK(MPI_Iprobe(r->teachers[t], r->tag_data, r->comm, &flag, &st));
            if (!flag)
                break;
            RD_MPI_CHECK(MPI_Get_count(&st, MPI_BYTE, &bytes));
            int credit = 0, mrc;
            if (recv_bounded(r->comm, r->teachers[t], r->tag_data, bytes, r->rbuf, r->rbuf_cap)) {
                mrc = handle_msg(r, t, r->rbuf, (size_t)bytes, &credit, eb);
            } else {
                r->stats.messages++;
                r->stats.bytes += (uint64_t)bytes;
                mrc = rd_err_set(eb, RD_ERR_PROTO,
                                 "target receiver %d: message of %d bytes from rank %d (teacher "
                                 "%d) exceeds the %zu bytes of a full batch",
                                 r->student_index, bytes, r->teachers[t], t, r->rbuf_cap);
            }
            if (credit)
                r->owed[t]++;
            if (mrc != RD_OK) {
                // Report one malformed message per call (the next call reports the next one).
                r->stats.rejected++;
                rc = mrc;
                goto done;
            }
            if (r->broken) {
                rc = rd_err_set(eb, RD_ERR_STATE, "%s", r->broken_msg);
                goto done;
            }
        }
    }
done:
    send_credits(r);
    return rc;
}

int rd_target_recv_phase_complete(const rd_target_recv *r) {
    if (r->replay_mode || !r->open)
        return r->replay_mode;
    for (int t = 0; t < r->n_teachers; t++)
        if (r->eos[t] < r->phase)
            return 0;
    return 1;
}

int rd_target_recv_wait_phase(rd_target_recv *r, int timeout_ms, rd_errbuf *eb) {
    if (!r->open)
        return rd_err_set(eb, RD_ERR_STATE, "target receiver: wait outside a phase");
    rd_backoff bo;
    rd_backoff_reset(&bo, r->poll_us_max);
    double t0 = now_ms();
    while (!rd_target_recv_phase_complete(r)) {
        rd_errbuf peb;
        rd_errbuf_clear(&peb);
        int rc = rd_target_recv_progress(r, &peb);
        if (rc == RD_ERR_PROTO)
            RD_LOG_WARN("%s", peb.msg); // dropped and counted; the end may still come
        else if (rc != RD_OK)
            return rd_err_set(eb, rc, "%s", peb.msg);
        if (rd_target_recv_phase_complete(r))
            break;
        // A teacher that closed without ending the phase never will (a FIN of the right phase
        // count after a lost end of phase is caught as broken above; this is one that ran fewer
        // phases).
        char who[256];
        size_t k = 0;
        int owing = 0, closed = 0;
        who[0] = 0;
        for (int t = 0; t < r->n_teachers; t++) {
            if (r->eos[t] >= r->phase)
                continue;
            closed += r->fin[t];
            if (owing++ < 8 && k < sizeof who)
                k += (size_t)snprintf(who + k, sizeof who - k, "%s%d (rank %d%s)",
                                      owing > 1 ? ", " : "", t, r->teachers[t],
                                      r->fin[t] ? ", closed" : "");
        }
        if (owing > 8 && k < sizeof who)
            snprintf(who + k, sizeof who - k, " and %d more", owing - 8);
        int late = timeout_ms > 0 && now_ms() - t0 > timeout_ms;
        if (closed || late)
            return rd_err_set(
                eb, closed ? RD_ERR_PROTO : RD_ERR_TIMEOUT,
                "target receiver %d: phase %llu (pass %u, window %d): %s from "
                "teacher %s (%llu malformed messages rejected so far)",
                r->student_index, (unsigned long long)(r->phase - 1), r->pass, r->window,
                closed ? "closed without an end of the phase" : "no end of the phase in time", who,
                (unsigned long long)r->stats.rejected);
        rd_backoff_wait(&bo);
    }
    return RD_OK;
}

void rd_target_recv_skip(rd_target_recv *r) {
    if (!r->open || r->replay_mode)
        return;
    r->skip = 1;
    // What came for this phase before it began is dropped too (and makes room for credits).
    r->stats.unused += rd_target_join_drop(r->join, r->phase - 1);
    send_credits(r);
}

void rd_target_recv_set_consumed(
    rd_target_recv *r, uint32_t pass, int32_t window, rd_target_keep_fn consumed, void *ctx) {
    r->consumed = consumed;
    r->consumed_ctx = ctx;
    r->cons_pass = pass;
    r->cons_window = window;
}

int rd_target_recv_begin(rd_target_recv *r, uint32_t pass, int32_t window, rd_errbuf *eb) {
    if (r->open || r->closing)
        return rd_err_set(eb, RD_ERR_STATE, "target receiver: begin: %s",
                          r->closing ? "receiver is closed" : "phase already open");
    r->phase++;
    r->open = 1;
    r->skip = 0;
    r->pass = pass;
    r->window = window;
    return RD_OK;
}

static int replay_get(rd_target_recv *r,
                      size_t n,
                      const uint64_t *samples,
                      float *logits,
                      uint64_t *versions,
                      uint8_t *has_target,
                      rd_errbuf *eb) {
    for (size_t i = 0; i < n; i++) {
        float z = 0.0f;
        uint64_t v = 0;
        int32_t w = r->window;
        rd_errbuf leb;
        rd_errbuf_clear(&leb);
        int rc = rd_target_log_get(r->log, r->job, samples[i], r->pass, &z, &v, &w, &leb);
        if (rc == RD_OK && w != r->window) {
            // The key (sample, pass) does not name the phase: stream windows are all pass 0, as
            // the first batch epoch is. A record of another phase means the teacher's run split
            // the same events otherwise (data.split), and its target is not the one this phase
            // of a live run would have joined.
            char tw[48], sw[48];
            if (w < 0)
                snprintf(tw, sizeof tw, "its batch period");
            else
                snprintf(tw, sizeof tw, "its stream window %d", w);
            if (r->window < 0)
                snprintf(sw, sizeof sw, "the batch period (epoch %u)", r->pass);
            else
                snprintf(sw, sizeof sw, "stream window %d", r->window);
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "target replay: the teacher logged the target of sample %llu in "
                              "%s, but this student trains on it in %s: the teacher's run split "
                              "the data otherwise (data.split: batch_fraction, stream_windows); "
                              "replay with the teacher's split",
                              (unsigned long long)samples[i], tw, sw);
        }
        if (rc == RD_OK) {
            logits[i] = z;
            if (versions)
                versions[i] = v;
            has_target[i] = 1;
            r->stats.replayed++;
        } else if (rc == RD_ERR_NOTFOUND) {
            logits[i] = 0.0f;
            if (versions)
                versions[i] = 0;
            has_target[i] = 0;
            r->stats.missing++;
        } else {
            return rd_err_set(eb, rc, "target replay: sample %llu pass %u: %s",
                              (unsigned long long)samples[i], r->pass, leb.msg);
        }
    }
    return RD_OK;
}

int rd_target_recv_get(rd_target_recv *r,
                       size_t n,
                       const uint64_t *samples,
                       float *logits,
                       uint64_t *versions,
                       uint8_t *has_target,
                       rd_errbuf *eb) {
    if (!r->open)
        return rd_err_set(eb, RD_ERR_STATE, "target receiver: get outside a phase");
    if (n == 0)
        return RD_OK;
    if (!samples || !logits || !has_target || n > UINT32_MAX)
        return rd_err_set(eb, RD_ERR_ARG, "target receiver: get: NULL arrays or n = %zu too large",
                          n);
    if (r->replay_mode)
        return replay_get(r, n, samples, logits, versions, has_target, eb);
    if (n > r->idx_cap) {
        // Grows once to the largest batch the trainer uses (a lazy once-only allocation).
        uint32_t *idx = rd_realloc(r->idx, n * sizeof *idx);
        if (!idx)
            return rd_err_set(eb, RD_ERR_NOMEM, "target receiver: out of memory");
        r->idx = idx;
        r->idx_cap = n;
    }
    uint64_t phase = r->phase - 1;
    int rc = rd_target_recv_progress(r, eb);
    size_t left = 0;
    for (size_t i = 0; i < n; i++) {
        has_target[i] = 0;
        logits[i] = 0.0f;
        if (versions)
            versions[i] = 0;
        r->idx[left++] = (uint32_t)i;
    }
    rd_backoff bo;
    rd_backoff_reset(&bo, r->poll_us_max);
    double t0 = now_ms();
    for (;;) {
        size_t still = 0;
        for (size_t k = 0; k < left; k++) {
            size_t i = r->idx[k];
            uint64_t v = 0;
            if (rd_target_join_take(r->join, phase, samples[i], &logits[i], &v)) {
                has_target[i] = 1;
                if (versions)
                    versions[i] = v;
                r->stats.joined++;
            } else {
                r->idx[still++] = (uint32_t)i;
            }
        }
        left = still;
        if (left == 0 || rd_target_recv_phase_complete(r) || now_ms() - t0 >= r->wait_ms ||
            r->broken)
            break;
        rd_backoff_wait(&bo);
        int prc = rd_target_recv_progress(r, eb);
        if (prc != RD_OK)
            rc = prc;
    }
    r->stats.blocked_us += (uint64_t)((now_ms() - t0) * 1e3);
    // Missing: leave a marker (while the table keeps its reserve) so that a target arriving
    // later is recognised as late rather than stored.
    for (size_t k = 0; k < left; k++) {
        r->stats.missing++;
        if (rd_target_join_live(r->join) + r->reserve < r->capacity)
            rd_target_join_miss(r->join, phase, samples[r->idx[k]]);
    }
    send_credits(r); // taking targets may have made room
    return rc;
}

int rd_target_recv_end(rd_target_recv *r, rd_errbuf *eb) {
    if (!r->open)
        return rd_err_set(eb, RD_ERR_STATE, "target receiver: end outside a phase");
    int rc = RD_OK;
    if (!r->replay_mode) {
        rc = rd_target_recv_progress(r, eb);
        r->stats.unused += rd_target_join_end(r->join, r->phase - 1);
        send_credits(r);
    }
    r->open = 0;
    return rc;
}

int rd_target_recv_close(rd_target_recv *r, rd_errbuf *eb) {
    if (r->open)
        return rd_err_set(eb, RD_ERR_STATE, "target receiver: close with a phase open");
    r->closing = 1;
    if (r->replay_mode)
        return RD_OK;
    rd_backoff bo;
    rd_backoff_reset(&bo, r->poll_us_max);
    double t0 = now_ms();
    int rc = RD_OK;
    for (;;) {
        int prc = rd_target_recv_progress(r, eb);
        if (prc != RD_OK && prc != RD_ERR_PROTO)
            return prc; // a broken stream (or MPI): waiting on cannot help
        if (prc != RD_OK)
            rc = prc;
        // Whatever arrives after the last phase the student ran is unused.
        if (rd_target_join_size(r->join) > 0)
            r->stats.unused += rd_target_join_end(r->join, UINT64_MAX - 1);
        int busy = 0;
        uint64_t owed = 0;
        for (size_t i = 0; i < (size_t)r->n_teachers * (size_t)r->max_in_flight; i++)
            busy += r->cbusy[i];
        for (int t = 0; t < r->n_teachers; t++)
            owed += r->owed[t];
        if (r->n_fin == r->n_teachers && busy == 0 && owed == 0)
            return rc;
        if (r->timeout_ms > 0 && now_ms() - t0 > r->timeout_ms)
            return rd_err_set(eb, RD_ERR_TIMEOUT,
                              "target receiver %d: close: FIN from %d of %d teachers after %d ms",
                              r->student_index, r->n_fin, r->n_teachers, r->timeout_ms);
        rd_backoff_wait(&bo);
    }
}

void rd_target_recv_set_wait(rd_target_recv *r, int wait_ms) {
    r->wait_ms = wait_ms > 0 ? wait_ms : 0;
}

void rd_target_recv_stats(const rd_target_recv *r, rd_target_stats *out) {
    *out = r->stats;
}

void rd_target_recv_destroy(rd_target_recv *r) {
    if (!r)
        return;
    if (r->cbusy)
        for (size_t i = 0; i < (size_t)r->n_teachers * (size_t)r->max_in_flight; i++)
            if (r->cbusy[i]) {
                MPI_Cancel(&r->creq[i]);
                MPI_Request_free(&r->creq[i]);
            }
    rd_target_join_destroy(r->join);
    rd_free(r->rbuf);
    rd_free(r->teachers);
    rd_free(r->expect_seq);
    rd_free(r->eos);
    rd_free(r->fin);
    rd_free(r->owed);
    rd_free(r->cbuf);
    rd_free(r->creq);
    rd_free(r->cbusy);
    rd_free(r->idx);
    rd_free(r);
}
