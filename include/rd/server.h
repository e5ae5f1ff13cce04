// rd/server.h — the parameter-server loop run by every PS rank.
//
// Defines:
//   rd_ps_serve()          create + run + destroy: what a PS rank of `recdistill train` calls
//   rd_server              opaque server (one per PS rank; owns one shard of every table)
//   rd_server_create/run/destroy
//   rd_kv_meta, rd_kv_pairs, rd_server_handler   ps-lite style request handlers
//   rd_server_register()   dispatch other request kinds (e.g. token-store fetch/append) by op
//   rd_server_respond()    answer the request a handler is processing
//   rd_server_reply_buffer()  a pooled reply buffer to build a large payload in place (then
//                          rd_server_respond sends it without copying)
//   rd_server_table()      a shard table (tests, handlers)
//
// Protocol summary (wire format in rd/msg.h; the client is rd/kv.h):
// - The loop never blocks inside MPI: MPI_Improbe + MPI_Get_count sizes each request, MPI_Imrecv
//   receives it into a pooled buffer, replies go out with MPI_Isend, and an idle loop sleeps with
//   exponential backoff up to cfg.cluster.poll_us_max microseconds.
// - A request that is too short, has a bad magic/version, an unknown op, a table or dim that does
//   not exist, sizes that disagree with the received length, more than ps.max_msg_bytes of
//   payload, key 0, or keys that are not strictly increasing gets an error reply (status < 0 and
//   the error text as payload), one WARN log line (rate limited), and the loop goes on.
//   Oversized messages are drained without allocating their size. Replies to messages whose
//   header could not be read, and to built-in ops whose req_id names a reply slot reserved for
//   other clients (rd/msg.h: the token store's tags are never answered for rd_kv traffic), go
//   to tag RD_TAG_PS_BADMSG.
// - Steps: every worker request carries the worker's step s (its number of CLOCKs so far).
//   Per job, the server tracks each worker's clock and `done`, the number of steps applied.
//   SYNC (ps.sync = 1): PUSHes of step s are buffered; when all W workers of the job sent
//     CLOCK(s), for each table the gradients of each key are summed in worker-rank order
//     (then message order), the optimizer is applied once per key, TTL eviction runs with the
//     latest stream time of that step's CLOCKs, and done = s + 1. A PULL (or SAVE) of step s
//     waits until done >= s. Results are bit-identical for any P and any arrival order.
//   ASYNC: PUSHes are applied on arrival; CLOCK(s) advances the worker's clock and eviction
//     runs when the job's stream time advances; with ps.staleness = k > 0 a PULL of step t waits
//     until every worker of the job has clocked t - k steps (0 = unbounded).
//   Requests "from the future" are deferred, and a worker's later requests queue behind its
//   deferred ones (per-worker FIFO) — except STATS and user ops, which never wait. A request
//   whose step is not the worker's own clock count is rejected (RD_ERR_STATE). Jobs never wait
//   for each other; ready requests of different jobs are served round-robin, one per job per
//   round.
// - Admission counts PULL sightings only (see rd/table.h). In sync mode a PULL is answered by a
//   pure read (rd_table_read) and its sightings (counts, last-seen, new rows) are applied at the
//   end of its step, before that step's pushes: the state at a step boundary never depends on
//   how early the next step's pulls arrived, which makes SAVE an exact cut. Eviction is the
//   explicit step above; it covers every table the job has touched or loaded. A PULL flagged
//   RD_MSG_FLAG_READ (an evaluation's or scoring's, rd_kv_set_read) is a pure read in both modes
//   and has no sightings at all: nothing is applied, or kept, for it.
// - SAVE(dir, tables) writes this shard with rd_ckpt_write_shard at the consistent cut "steps
//   0..s-1 applied" (s = the request's step) and replies with its CRC; the client writes the
//   manifest. LOAD replaces the listed tables from the shard (CRC checked) and resets the
//   job's clocks to the checkpoint's step; it needs a quiescent job (no buffered pushes).
// - Shared memory (rd/msg.h ATTACH, RD_MSG_FLAG_SHM): a worker on this node may ATTACH its
//   region (mapped here until the server is destroyed). Its PULL/PUSH requests then carry a
//   descriptor; ranges that are not inside that region, misaligned, overlapping, of the wrong
//   length or naming another region get an error reply and a log line like other bad messages.
//   The payload is read in place; a PULL's values are written into the region. Sync steps keep
//   PULL keys (not a read's) and PUSH gradients until the step is applied: those are copied out
//   of the region before the reply, after which the worker may reuse its ranges.
// - The loop ends when every worker rank of every job has sent SHUTDOWN and all replies are out.
#ifndef RD_SERVER_H
#define RD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "rd/comm.h"
#include "rd/config.h"
#include "rd/error.h"
#include "rd/table.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_server rd_server;

/** What a handler knows about a request (decoded header + sender identity). */
typedef struct rd_kv_meta {
    unsigned op;            // rd_msg_op or a registered user op
    uint32_t table;         // header table field (user ops may use it freely)
    uint64_t count;         // header count field
    uint32_t dim;           // header dim field
    uint64_t req_id;        // echoed by the reply
    int64_t step;           // sender's step
    int64_t stream_time;    // sender's stream time
    uint64_t payload_bytes; // payload length
    int sender;             // world rank of the sender
    int job;                // job index of the sender; -1 when the sender is a PS rank
    int worker;             // index of the sender in its job (or its shard)
} rd_kv_meta;

/** A request's payload. keys/vals are set for PULL/PUSH-shaped payloads; payload always. */
typedef struct rd_kv_pairs {
    const uint64_t *keys; // (n) or NULL
    const float *vals;    // (n, dim) or NULL
    size_t n;
    const void *payload; // raw payload bytes (valid only during the handler call)
    size_t payload_bytes;
} rd_kv_pairs;

/** A handler must call rd_server_respond exactly once before returning. If it returns a negative
 *  rd_status without responding, the server replies with that status. */
typedef int (*rd_server_handler)(const rd_kv_meta *meta,
                                 const rd_kv_pairs *pairs,
                                 rd_server *srv,
                                 void *user);

/**
 * Run a PS rank until every worker has sent SHUTDOWN (create, run, destroy).
 * @param[in] comm  the layout; must be a PS rank (comm->role_kind == RD_ROLE_PS)
 * @param[in] cfg   the run configuration (cfg->ps tables, sync, staleness, max_msg_bytes;
 *                  cfg->cluster.poll_us_max; cfg->run.seed); borrowed for the call
 * @return RD_OK, or the error that prevented serving (RD_ERR_CONFIG, RD_ERR_NOMEM); logs it.
 */
int rd_ps_serve(const rd_comm *comm, const rd_config *cfg);

/**
 * Create a server and its shard of every table in cfg->ps.tables.
 * @note comm and cfg are borrowed and must outlive the server.
 * @return RD_OK, RD_ERR_ARG (not a PS rank), RD_ERR_CONFIG (no tables, bad table), RD_ERR_NOMEM
 */
int rd_server_create(const rd_comm *comm, const rd_config *cfg, rd_server **out, rd_errbuf *eb);
/** Serve until shutdown. @return RD_OK (errors of single requests are replied, not returned).
 *  After rd_server_request_stop (on shard 0), or a job's RD_TAG_STOP message: ends the launch
 *  (MPI_Abort, exit status 143) once every job still training has a checkpoint since the signal
 *  (a job past its final checkpoint has one; a job that shut down meanwhile counts too), or
 *  RD_STOP_GRACE_S seconds (default 20) after it. A run whose jobs all shut down meanwhile ends
 *  with 143 as well, before its report (`recdistill train` then agrees on the signal once more
 *  just before the report). */
int rd_server_run(rd_server *srv);
/** Async-signal-safe: SIGTERM reached this PS rank (only shard 0 acts on it, rd_server_run). */
void rd_server_request_stop(void);
/** Async-signal-safe: SIGUSR1 reached this PS rank; rd_server_run passes it on to the rank 0 of
 *  every job still training (RD_TAG_CKPT), which writes a checkpoint (as on
 *  rd_trainer_request_checkpoint) unless the same signal reached it by another way. */
void rd_server_request_checkpoint(void);
/** Free tables, buffers and handlers. Accepts NULL. Requests still deferred are dropped. */
void rd_server_destroy(rd_server *srv);

/**
 * Route requests with op in [RD_OP_USER_MIN, RD_OP_USER_MAX] to `fn`. Such requests are not
 * step-deferred; they are served in arrival order (round-robin across jobs).
 * @return RD_OK, RD_ERR_RANGE (op outside the user range), RD_ERR_EXISTS (already registered)
 */
int rd_server_register(rd_server *srv, unsigned op, rd_server_handler fn, void *user);

/** What must be durable before a checkpoint of this PS rank's tables: called by every SAVE before
 *  the shard is written; an error fails that SAVE (its message in the reply). */
typedef int (*rd_server_save_hook)(void *user, rd_errbuf *eb);

/**
 * Call `fn` before each SAVE (e.g. the token store's sync, so that a checkpoint never claims
 * tokens a host crash could still take). One hook per server.
 * @return RD_OK, RD_ERR_EXISTS (a hook is set already), RD_ERR_ARG (fn NULL)
 */
int rd_server_on_save(rd_server *srv, rd_server_save_hook fn, void *user);

/**
 * Reply to the request being handled: status (RD_OK or a negative rd_status) and a payload
 * (copied, unless it is the buffer of rd_server_reply_buffer; NULL/0 for none). Call once per
 * request, from inside its handler. The payload may be freed or reused once this returns.
 * @return RD_OK, RD_ERR_STATE (no request being handled, or already answered), RD_ERR_NOMEM
 */
int rd_server_respond(
    rd_server *srv, const rd_kv_meta *req, int status, const void *payload, size_t bytes);

/**
 * A reply buffer of at least `bytes` bytes for the request being handled, taken from the
 * server's send pool, so that a handler can build a large payload in place: passing this
 * pointer (and bytes <= the size asked) to rd_server_respond sends it without a copy. Asking
 * again with a larger size may return another buffer (the contents are not kept).
 * @return the buffer (64-byte aligned), or NULL (no request being handled, already answered,
 *         out of memory; the handler can still answer with a copied payload or an error)
 * @note Owned by the server; valid until rd_server_respond or the end of the handler call.
 */
void *rd_server_reply_buffer(rd_server *srv, const rd_kv_meta *req, size_t bytes);

/** This rank's shard of table `index` (borrowed; replaced by LOAD). NULL if out of range. */
rd_table *rd_server_table(rd_server *srv, int index);

#ifdef __cplusplus
}
#endif
#endif // RD_SERVER_H
