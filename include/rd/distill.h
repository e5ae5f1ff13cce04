// rd/distill.h — Rec-Distill building blocks: the teacher -> student target transport over MPI,
// the student-side join of samples with targets, target-log replay, and cross-debias calibration.
//
// Defines:
//   rd_debias                          the four parameters of one side's calibration f
//   rd_debias_identity() / rd_debias_is_identity() / rd_debias_from_sampling()
//   rd_debias_from_config() / rd_debias_check()
//   rd_debias_prob()                   f(z), a probability
//   rd_debias_logit_forward/backward   logit(f(z)) and its gradient (+ _naive twins for tests)
//   rd_target_stats                    counters of a sender or a receiver
//   rd_target_owner_fn                 sample id -> owning student index (the data iterator's rule)
//   rd_target_join                     hash join keyed by (phase, sample id): put / take / miss
//   rd_target_sender                   teacher side: emit targets, batched, credit flow control
//   rd_target_recv                     student side: live (MPI) or replay (target log), one get()
//
// Cross-debias (papers.md §1.5, Eq. 12-14). One side's calibration of a raw logit z is
//     f(z) = 1 / (1 + (r_s / p_X) * (e^{-z} + 1 - r_+) + b_s).
// Without sampling (r_s = p_X = r_+ = 1, b_s = 0) f is the sigmoid, so logit(f(z)) = z. The
// distilled student consumes the teacher's RAW logit projected through the STUDENT's f, as a
// logit (rd/model.h: teacher_logits), and compares it with its own logit projected through the
// same f (rd_batch.calib): D(f_S(z_t), f_S(z_s)), never a calibrated probability against a raw
// one. logit(f(z)) = -log(A e^{-z} + K) with A = r_s / p_X and
// K = A (1 - r_+) + b_s; f is a proper probability for every z iff A > 0 and K >= 0.
// The secondary sources do not define r_s unambiguously (papers.md): rd_debias_from_sampling()
// chooses the parameters that make f the exact Bayes correction of independent down-sampling
// (negatives kept with probability q_-, positives with q_+: f(z) = 1/(1 + (q_+/q_-) e^{-z} + b_s)),
// i.e. r_s = q_+ / q_- (kept-positive-to-kept-negative inflation), p_X = 1, r_+ = 1. Taking the
// negatives' keep fraction itself as r_s would move probabilities the wrong way.
//
// Transport. A teacher job of T ranks and a student job of S ranks live in one MPMD world; both
// sides name the other's ranks as ranks of one communicator (rd_comm.world). Every run is a
// sequence of PHASES (batch epochs, then stream windows), begun and ended in the same order on
// both sides; a phase is numbered 0, 1, 2, ... by the order of the begin calls and carries its
// (pass, window) for the target log.
//   1. The teacher, during its training forward pass, calls rd_target_sender_emit() with the
//      batch's sample ids, raw logits and its step. Targets are staged per owning student rank
//      and sent as one message when `batch` targets are staged (or at flush / end of phase).
//   2. Flow control: a sender has at most `max_in_flight` unacknowledged messages per student
//      (its window). A receiver acknowledges (credits) a message once it has stored it in its
//      join table, which grows to hold targets that arrive ahead of their samples, up to its
//      capacity. A message whose student's window is full is HELD by the sender (a FIFO per
//      student, in order) and sent when credits return; emit never waits for one student's
//      credits while it holds at most `hold_max` targets. Past that bound, and at end of phase
//      (until the phase's messages have all left), the sender progresses with backoff until
//      credits arrive: back-pressure reaches the teacher's training loop.
//      Why per student, and why hold: the two jobs walk their records in different orders
//      (train.order: user with different rank counts: rd_shard_of(user, T) vs (user, S)).
//      Student A may wait for a record the teacher reaches only much later, while student B,
//      the peer A's job allreduce waits for, does not progress and so does not credit. A
//      window shared by all students fills with B's messages, A never gets its record, and
//      every such step costs distill.wait_ms and leaves targets late. With a window per
//      student and B's messages held, the teacher keeps serving A; B drains its backlog into
//      its join table once A lets the job move on.
//      Memory bound: per sender, the slots (students x max_in_flight x (40 + 20 batch) bytes)
//      plus at most hold_max (+ one batch per student) held targets at 20 bytes each; per
//      receiver, the join table: about 48 bytes per entry held (96 at a doubling), at most
//      `capacity` entries. Entries held are this student's targets that came ahead of their
//      samples: at most its records of the phases the teachers are ahead on. A layout that
//      drifts further warns once (on the sender or the receiver: "the student's records run
//      too far from the teacher's") and then pays distill.wait_ms per stall; nothing is lost
//      silently (late / missing are counted).
//   3. End of phase: the sender flushes and sends an EOS marker to every student; the receiver
//      knows a phase is complete when it holds the EOS of every teacher rank, and stops waiting.
//   Resume inside a phase (a teacher and its students restarted, each from its own checkpoint,
//   in the same phase or in different ones): both sides begin the phase sequence at the earliest
//   phase any of them is in, so that phases are numbered alike. A teacher whose checkpoint is in
//   a later phase begins, resends (rd_target_sender_resend) every target it emitted in that
//   phase, read back from the target log, and ends it, phase after phase, then in its own phase
//   resends those it emitted before its checkpoint and emits the rest as it trains again. A
//   student whose checkpoint is in a later phase begins and ends the phases before it without
//   asking for targets. Each student drops the targets of the samples it trained on before its
//   own checkpoint: all of the phases before its checkpoint's, those before the cut in it
//   (rd_target_recv_set_consumed; counted duplicates). Every sample the student still trains on
//   thus gets its target once, and in sync mode the same one as without the restart.
//   4. Close: the sender sends FIN to every student and waits until every message is credited;
//      the receiver drains until it holds every FIN. Per (sender, receiver) pair, messages carry
//      a sequence number; MPI's non-overtaking order makes a gap or repeat a protocol error, so a
//      lost or duplicated message cannot go unnoticed.
// Wire format (little-endian). Data / EOS / FIN message: 40-byte header
//     0 u32 magic "RDTG"  4 u16 version  6 u16 kind (1 data, 2 eos, 3 fin)  8 u32 sender index
//     12 u32 count  16 u64 phase  24 u32 pass  28 i32 window  32 u64 seq (per destination)
// then count u64 sample ids, count u64 teacher versions, count f32 raw logits (20 bytes per
// target). Credit message: 16 bytes: u32 magic "RDCR", u16 version, u16 0, u32 messages
// credited, u32 receiver index.
//
// Join semantics (receiver): a target is keyed by (phase, sample id). take() of a joined target
// counts it `joined`; a get() that finds none within the wait counts the sample `missing` and
// leaves a marker, so that its target, if it comes later, is counted `late` and dropped; a target
// whose phase has already ended is `late` too; a second target for a key is a `duplicate`
// (dropped); targets never asked for before their phase ends are `unused`.
//
// Usage (one trainer step never waits longer than wait_ms; nothing here allocates per step):
//   teacher rank:  s = rd_target_sender_create(...)
//                  per phase:  rd_target_sender_begin(s, pass, window)
//                     per step: forward -> rd_target_sender_emit(s, B, sample_ids,
//                               model->logits_main, step) [-> rd_target_sender_flush(s) to cut
//                               latency] -> backward / update
//                  rd_target_sender_end(s)      ... rd_target_sender_close(s); _destroy(s)
//   student rank:  r = rd_target_recv_create(...) (live, or .replay = log for a student alone)
//                  rd_debias_from_config(&cfg.data, &job.negatives, &cfg.distill, &f)
//                  per phase:  rd_target_recv_begin(r, pass, window)
//                     per step: rd_target_recv_get(r, B, sample_ids, z_t, NULL, has_target)
//                               rd_debias_logit_forward(z_t, z_t, &f, B)
//                               batch.teacher_logits = z_t; batch.has_target = has_target
//                               batch.calib = rd_debias_is_identity(&f) ? NULL : &f
//                  rd_target_recv_end(r)        ... rd_target_recv_close(r); _destroy(r)
//   A rank that is not training for a while (evaluation, checkpoints) should call
//   rd_target_recv_progress() / rd_target_sender_progress() now and then so that credits flow.
#ifndef RD_DISTILL_H
#define RD_DISTILL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/error.h"
#include "rd/targets.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_TARGET_CREDIT_BYTES 16 // size of one credit message (wire format above)
// Default bounds (see "Transport", 2): targets a sender holds before emit waits for credits
// (80 MiB at 20 bytes each), and join entries a receiver holds (about 200 MiB, 400 MiB while
// doubling). Both are bounds, not allocations: memory follows the drift between the jobs.
#define RD_TARGET_HOLD_DEFAULT ((size_t)1 << 22)
#define RD_TARGET_JOIN_DEFAULT ((size_t)1 << 22)

// ---------------------------------------------------------------------------------------------
// Cross-debias calibration

typedef struct rd_debias {
    double r_s;    // negative sampling ratio of the formula (see header comment), > 0
    double p_x;    // effective retention probability of the positive event, > 0
    double r_plus; // nominal positive-retention rate; (r_s/p_x)(1 - r_plus) + b_s >= 0
    double b_s;    // additive bias of the sampling strategy
} rd_debias;

/** r_s = p_x = r_plus = 1, b_s = 0: f is the sigmoid, the projection the identity. */
rd_debias rd_debias_identity(void);

/** 1 when f is the sigmoid (r_s / p_x = 1 and (r_s / p_x)(1 - r_plus) + b_s = 0), else 0. */
int rd_debias_is_identity(const rd_debias *d);

/**
 * The calibration of a side whose training data keeps negatives with probability `neg_keep` and
 * positives with probability `pos_keep` (data.negatives.rate / pos_rate), plus bias b_s.
 * @return RD_OK, RD_ERR_ARG (a rate outside (0, 1], b_s < 0 or not finite)
 */
int rd_debias_from_sampling(
    double neg_keep, double pos_keep, double b_s, rd_debias *out, rd_errbuf *eb);

/**
 * The student's calibration from the run configuration: identity when distill.debias is 0, or
 * when the student's training records are not sampled and distill.bias is 0; else
 * rd_debias_from_sampling(neg, pos, distill.bias) (b_s applies without sampling too: f is
 * then 1 / (1 + e^{-z} + b_s), not the sigmoid) with the keep rates the student trains at:
 * data.negatives times the student job's own cluster.jobs[].negatives (`job`, NULL = none).
 * This is where the config's keep rates are turned into the formula's parameters (see the
 * header comment); trainers should not do it themselves.
 * @return RD_OK, RD_ERR_ARG
 */
int rd_debias_from_config(const rd_data_config *data,
                          const rd_negsample_config *job,
                          const rd_distill_config *dc,
                          rd_debias *out,
                          rd_errbuf *eb);

/** @return RD_OK or RD_ERR_ARG ("debias: r_s/p_x*(1-r_plus)+b_s = -0.2 < 0: f leaves [0,1]"). */
int rd_debias_check(const rd_debias *d, rd_errbuf *eb);

/** f(z) in [0, 1] (double precision, stable for any finite z). d must pass rd_debias_check. */
double rd_debias_prob(const rd_debias *d, double z);

/**
 * out[i] = logit(f(inp[i])) = -log(A e^{-z} + K), computed stably (log-sum-exp).
 * inp, out are (n); out may alias inp. d must pass rd_debias_check (asserted).
 */
void rd_debias_logit_forward(float *out, const float *inp, const rd_debias *d, size_t n);
/** dinp[i] += dout[i] * d logit(f(z)) / dz at z = inp[i] (= A e^{-z} / (A e^{-z} + K), in
 *  (0, 1]). All (n). */
void rd_debias_logit_backward(
    float *dinp, const float *dout, const float *inp, const rd_debias *d, size_t n);
/** Naive twins: the formula as written, in double, then log(f / (1 - f)). Tests only. */
void rd_debias_logit_forward_naive(float *out, const float *inp, const rd_debias *d, size_t n);
void rd_debias_logit_backward_naive(
    float *dinp, const float *dout, const float *inp, const rd_debias *d, size_t n);

// ---------------------------------------------------------------------------------------------
// Counters

typedef struct rd_target_stats {
    uint64_t sent;       // sender: targets sent (data messages only)
    uint64_t logged;     // sender: targets appended to the target log
    uint64_t received;   // receiver: valid targets received over MPI
    uint64_t joined;     // receiver: get() answered from a live target
    uint64_t replayed;   // receiver (replay): get() answered from the target log
    uint64_t late;       // receiver: targets that came after their sample or phase was done
    uint64_t missing;    // receiver: get() samples without a target within the wait
    uint64_t duplicates; // receiver: second target for a (phase, sample) key, dropped
    uint64_t unused;     // receiver: targets never asked for before their phase ended
    uint64_t rejected;   // receiver/sender: malformed messages dropped (each also an error)
    uint64_t messages;   // messages sent (sender) or received (receiver), markers included
    uint64_t bytes;      // bytes of those messages, headers included
    uint64_t credits;    // credit messages received (sender) or sent (receiver)
    uint64_t blocked_us; // time spent waiting: window full (sender), get() waits (receiver)
    uint64_t unsampled;  // sender: targets not sent because the owning student job's own
                         // sampling drops the record (the keep rule; still logged)
} rd_target_stats;

/** The owner rule: sample id -> student index in [0, n_students) (the same deterministic rule
 *  the student's data iterator uses). Called for every target on both sides. */
typedef int (*rd_target_owner_fn)(uint64_t sample, void *ctx);

/** Whether the student job trains on a sample at all (its own sampling, rd_sample_keep): 1 yes,
 *  0 no target is sent for it. */
typedef int (*rd_target_keep_fn)(uint64_t sample, void *ctx);

// ---------------------------------------------------------------------------------------------
// Join table (used by the receiver; public for tests and for trainers that join locally)

typedef struct rd_target_join rd_target_join;

typedef enum rd_join_result {
    RD_JOIN_STORED = 0,    // new pending target
    RD_JOIN_DUPLICATE = 1, // the key holds (or held, this phase) a target already
    RD_JOIN_LATE = 2,      // its sample was declared missing, or its phase has ended
    RD_JOIN_FULL = 3,      // no room (capacity entries): not stored
} rd_join_result;

/**
 * The table allocates room for min(capacity, 4096) entries and doubles on demand up to
 * capacity (a put or miss that grows it allocates; out of memory aborts, rd_xmalloc).
 * @param[in] capacity  most entries held at once (pending, consumed and missing markers), >= 1
 * @return RD_OK, RD_ERR_ARG, RD_ERR_NOMEM. Free with rd_target_join_destroy.
 */
int rd_target_join_create(size_t capacity, rd_target_join **out, rd_errbuf *eb);
void rd_target_join_destroy(rd_target_join *j);
/** Store a target. @return rd_join_result (FULL only when pending targets and missing markers
 *  fill the capacity). */
int rd_target_join_put(
    rd_target_join *j, uint64_t phase, uint64_t sample, float logit, uint64_t version);
/** A pending target of the key: copied out (outputs may be NULL) and marked consumed.
 *  @return 1 found, 0 not (none yet, already consumed, or marked missing). */
int rd_target_join_take(
    rd_target_join *j, uint64_t phase, uint64_t sample, float *logit, uint64_t *version);
/** Declare the sample missing (its target, if it comes, will be late).
 *  @return 1 marker stored, 0 no room (a later target is then counted unused, not late). */
int rd_target_join_miss(rd_target_join *j, uint64_t phase, uint64_t sample);
/** End every phase <= `phase`: drop their entries; later puts for them are late.
 *  @return the pending (never taken) targets dropped. */
size_t rd_target_join_end(rd_target_join *j, uint64_t phase);
/** Drop the entries of one phase (not ended: later targets of it can still be stored).
 *  @return the dropped targets never taken */
size_t rd_target_join_drop(rd_target_join *j, uint64_t phase);
/** Entries held (pending, consumed, missing markers). */
size_t rd_target_join_size(const rd_target_join *j);
/** Pending targets + missing markers. Consumed entries are kept for duplicate detection only
 *  while there is room: when the table is full, or half of it is consumed when it would double,
 *  they are forgotten first. */
size_t rd_target_join_live(const rd_target_join *j);

// ---------------------------------------------------------------------------------------------
// Teacher side

typedef struct rd_target_sender_opts {
    MPI_Comm comm;            // holds both jobs (rd_comm.world); borrowed for the handle's life
    int n_students;           // student ranks, >= 1
    const int *students;      // (n_students) their ranks in comm; copied
    int sender_index;         // my index among the teacher ranks (0..T-1), in every message
    rd_target_owner_fn owner; // sample -> student index
    void *owner_ctx;
    int max_in_flight;        // unacknowledged messages, >= 1 (distill.max_in_flight)
    int batch;                // targets per message, 1..2^24 (distill.batch)
    int poll_us_max;          // backoff cap (cluster.poll_us_max); <= 0 = 200
    int timeout_ms;           // longest a call waits without a credit; 0 = no limit
    int tag_data, tag_credit; // 0 = RD_TAG_DISTILL_TARGET / RD_TAG_DISTILL_CREDIT
    rd_target_log *log;       // optional: every emitted target is appended; borrowed
    uint64_t job;             // rd_target_job_key(teacher job name), for the log
    rd_target_keep_fn keep;   // optional: samples it rejects are logged but not sent (counted
    void *keep_ctx;           // unsampled); NULL = send every target
    size_t hold_max;          // targets held for students whose window is full before emit
                              // waits for credits; 0 = RD_TARGET_HOLD_DEFAULT; at least
                              // n_students x batch
} rd_target_sender_opts;

typedef struct rd_target_sender rd_target_sender;

/** @return RD_OK, RD_ERR_ARG (bad option, e.g. "students[2] = 9 not a rank of comm (size 6)"),
 *  RD_ERR_NOMEM. Local (not collective). Free with rd_target_sender_destroy. */
int rd_target_sender_create(const rd_target_sender_opts *o, rd_target_sender **out, rd_errbuf *eb);
/** Start the next phase (pass, window: what the target log records; window -1 = batch phase).
 *  @return RD_OK, RD_ERR_STATE (a phase is open, or the sender is closed) */
int rd_target_sender_begin(rd_target_sender *s, uint32_t pass, int32_t window, rd_errbuf *eb);
/**
 * Emit n targets of the open phase: all validated first (finite logits, owner in range; nothing
 * sent otherwise), appended to the log if any, staged; full batches are sent, or held when their
 * student's window is full; waits for credits (backoff) only while more than hold_max targets
 * are held. Arrays are borrowed for the call.
 * @param[in] version  the teacher's step that produced these logits
 * @return RD_OK, RD_ERR_STATE (no open phase), RD_ERR_ARG (non-finite logit), RD_ERR_RANGE
 *         (owner out of range), RD_ERR_TIMEOUT (no credit within timeout_ms), RD_ERR_PROTO
 *         (malformed credit), the log's errors
 */
int rd_target_sender_emit(rd_target_sender *s,
                          size_t n,
                          const uint64_t *samples,
                          const float *logits,
                          uint64_t version,
                          rd_errbuf *eb);
/**
 * Send again n targets the teacher emitted before its checkpoint (a resumed teacher, inside a
 * phase: read back from the target log) in the open phase: as emit, with a version per target,
 * and never appended to the log (they are in it). Arrays are borrowed for the call.
 * @return as emit; RD_ERR_ARG (NULL versions)
 */
int rd_target_sender_resend(rd_target_sender *s,
                            size_t n,
                            const uint64_t *samples,
                            const float *logits,
                            const uint64_t *versions,
                            rd_errbuf *eb);
/** Send (or hold) every partly filled batch now (e.g. once per teacher step). Waits for credits
 *  only while more than hold_max targets are held. */
int rd_target_sender_flush(rd_target_sender *s, rd_errbuf *eb);
/** Flush, then send the phase's EOS marker to every student; waits (backoff) until every held
 *  message of the phase has been sent. @return as emit. */
int rd_target_sender_end(rd_target_sender *s, rd_errbuf *eb);
/** Complete finished sends, take arriving credits and send held messages the windows now take;
 *  never waits. @return RD_OK, RD_ERR_PROTO */
int rd_target_sender_progress(rd_target_sender *s, rd_errbuf *eb);
/** Send FIN to every student and wait (backoff) until every message is credited and every send
 *  completed. No phase may be open. @return RD_OK, RD_ERR_STATE, RD_ERR_TIMEOUT, RD_ERR_PROTO */
int rd_target_sender_close(rd_target_sender *s, rd_errbuf *eb);
void rd_target_sender_stats(const rd_target_sender *s, rd_target_stats *out);
/** Free. Call rd_target_sender_close first (a handle destroyed with sends pending cancels them
 *  and logs a warning). Accepts NULL. */
void rd_target_sender_destroy(rd_target_sender *s);

// ---------------------------------------------------------------------------------------------
// Student side

typedef struct rd_target_recv_opts {
    // Live mode (replay == NULL):
    MPI_Comm comm;            // as the sender's; borrowed
    int n_teachers;           // teacher ranks, >= 1
    const int *teachers;      // (n_teachers) their ranks in comm, in sender_index order; copied
    int student_index;        // my index among the student ranks (the owner rule's value)
    rd_target_owner_fn owner; // checks that each target belongs here (NULL = no check)
    void *owner_ctx;
    int max_in_flight;        // as the senders' (sizes the room reserved for in-flight data)
    int batch;                // as the senders' (largest message accepted)
    size_t capacity;          // most join entries; 0 = 4 * teachers * max_in_flight * batch, at
                              // least RD_TARGET_JOIN_DEFAULT. A bound: the table grows to it on
                              // demand. Credits stop while pending targets + missing markers +
                              // the in-flight reserve exceed it (consumed targets are forgotten
                              // when room is needed)
    int poll_us_max;          // backoff cap; <= 0 = 200
    int tag_data, tag_credit; // 0 = defaults
    // Both modes:
    int wait_ms;    // bounded wait of one get() call (distill.wait_ms), >= 0
    int timeout_ms; // close: longest wait for the teachers' FIN; 0 = no limit
    // Replay mode:
    rd_target_log *replay; // non-NULL = replay from this log (borrowed); comm etc. unused
    uint64_t job;          // rd_target_job_key(teacher job name)
} rd_target_recv_opts;

typedef struct rd_target_recv rd_target_recv;

/** @return RD_OK, RD_ERR_ARG, RD_ERR_NOMEM. Free with rd_target_recv_destroy. */
int rd_target_recv_create(const rd_target_recv_opts *o, rd_target_recv **out, rd_errbuf *eb);
/** Start the next phase (same sequence as the teacher's). @return RD_OK, RD_ERR_STATE */
int rd_target_recv_begin(rd_target_recv *r, uint32_t pass, int32_t window, rd_errbuf *eb);
/**
 * Targets of n samples of the open phase. Waits at most wait_ms for the whole call (not per
 * sample) and not at all once every teacher ended the phase. Samples without a target get
 * has_target[i] = 0 (logits[i] = 0) and are counted missing. Arrays are (n), caller-owned;
 * versions may be NULL. In replay mode: one target-log lookup per sample, no wait.
 * @return RD_OK, RD_ERR_STATE (no open phase, or a teacher's stream lost an end of phase: see
 * progress), RD_ERR_ARG, RD_ERR_PROTO (a malformed message
 * arrived: it was dropped and counted, eb names sender and defect; the outputs are still valid),
 *         RD_ERR_CORRUPT / RD_ERR_LMDB (replay)
 */
int rd_target_recv_get(rd_target_recv *r,
                       size_t n,
                       const uint64_t *samples,
                       float *logits,
                       uint64_t *versions,
                       uint8_t *has_target,
                       rd_errbuf *eb);
/** Receive what has arrived, join it, return credits; never waits (call between steps).
 *  Stops at a malformed message: it is dropped and reported, the next call goes on. A teacher
 *  whose end-of-phase message was rejected and who then sent something of a later phase has
 *  left a phase that can never complete: RD_ERR_STATE naming it, from then on at every call.
 *  @return RD_OK, RD_ERR_PROTO or RD_ERR_STATE */
int rd_target_recv_progress(rd_target_recv *r, rd_errbuf *eb);
/** 1 when every teacher ended the open phase (nothing more will come for it). */
int rd_target_recv_phase_complete(const rd_target_recv *r);
/**
 * Receive (backoff) until every teacher ended the open phase; timeout_ms > 0 bounds the wait
 * (0 = none: a teacher's phase may take long, and a lost teacher ends the launch). A malformed
 * message on the way is dropped, counted and logged as a warning, as between steps. The phase
 * can never complete when a teacher's end-of-phase message was rejected (it then sends
 * something of a later phase: RD_ERR_STATE, as from progress) or a teacher closed without
 * ending it (RD_ERR_PROTO): an error naming the teacher, never a hang. Replay mode: RD_OK.
 * @return RD_OK, RD_ERR_STATE, RD_ERR_PROTO, RD_ERR_TIMEOUT, RD_ERR_MPI
 */
int rd_target_recv_wait_phase(rd_target_recv *r, int timeout_ms, rd_errbuf *eb);
/** The open phase takes no targets (distill.start_epoch / start_window): what arrives for it,
 *  and what came before it began, is counted received and unused at once and never stored, so
 *  credits keep flowing while the student waits for the teachers' end of the phase. */
void rd_target_recv_skip(rd_target_recv *r);
/**
 * A student resumed inside phase (pass, window), or at its start: targets of that phase whose
 * sample `consumed` says it trained on before its checkpoint, and every target of the phases
 * before it in the schedule (batch epochs of a lower pass; every batch epoch before a stream
 * window; stream windows of a lower window), are dropped when they arrive (also before their
 * phase begins or after it ended) and counted `duplicates`: the resumed teacher sends again
 * what it sent before its own checkpoint, or what it sent after it in phases the student is
 * past. Call before the first progress of the run. `ctx` is borrowed until the receiver is
 * destroyed; a later call replaces the filter (NULL = none).
 */
void rd_target_recv_set_consumed(
    rd_target_recv *r, uint32_t pass, int32_t window, rd_target_keep_fn consumed, void *ctx);
/** End the open phase: its targets never asked for are dropped (unused), later ones are late. */
int rd_target_recv_end(rd_target_recv *r, rd_errbuf *eb);
/** Change the bounded wait of later get() calls (e.g. 0 in phases that must not wait). */
void rd_target_recv_set_wait(rd_target_recv *r, int wait_ms);
/** Drain until every teacher's FIN (live; no-op in replay). No phase may be open.
 *  @return RD_OK, RD_ERR_STATE, RD_ERR_TIMEOUT, RD_ERR_PROTO */
int rd_target_recv_close(rd_target_recv *r, rd_errbuf *eb);
void rd_target_recv_stats(const rd_target_recv *r, rd_target_stats *out);
/** Accepts NULL. */
void rd_target_recv_destroy(rd_target_recv *r);

/** Bytes of one data message carrying n targets (40 + 20 n). */
size_t rd_target_msg_bytes(size_t n);

#ifdef __cplusplus
}
#endif
#endif // RD_DISTILL_H
