// rd/comm.h — MPI start-up, the rank layout of a launch, communicators and message tags.
//
// Defines:
//   rd_mpi_init() / rd_mpi_finalize()  MPI_Init_thread with a required thread level
//   rd_mpi_library_name()              the MPI library, from MPI_Get_library_version's text
//   rd_role                            RD_ROLE_PS | RD_ROLE_WORKER
//   rd_tag                             every point-to-point tag of the program (named enum),
//                                      including the reply-slot partition of rd_comm.kv
//   rd_comm                            the layout: my role, job, shard; PS world ranks; the world
//                                      ranks of every job; the communicators split once
//   rd_comm_create() / rd_comm_destroy()
//   rd_comm_job_of()                   world rank -> (job index, index in the job)
//   rd_comm_wait()                     complete one request, polling with rd_backoff
//   rd_backoff                         polling helper: busy-poll briefly after traffic
//                                      (rd_backoff_hot), yield a little, then nanosleep with
//                                      exponential backoff up to poll_us_max
//
// Rank layout (identical under `mpiexec -n P a : -n T b : ...` MPMD launches, Slurm --multi-prog
// and Slurm heterogeneous job steps, because it only depends on the rank number, never on
// MPI_APPNUM, which srun does not set): world ranks [0, P) are the PS ranks (shard i = rank i),
// then the ranks of cluster.jobs[0], then jobs[1], ... in config order.
//
// Communicators (all created once, collectively, by rd_comm_create):
//   world  a duplicate of the base communicator: application traffic (allreduce across jobs, ...)
//   kv     a second duplicate reserved for PS requests and replies (rd_kv <-> rd_server); its
//          error handler is MPI_ERRORS_RETURN so that the PS code can treat a bad message as data
//   role   the ranks of my role: all PS ranks, or all worker ranks of every job
//   job    the ranks of my job (workers), or the PS group again (PS ranks)
#ifndef RD_COMM_H
#define RD_COMM_H

#include <mpi.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/error.h"
#include "rd/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * MPI_Init_thread asking for `required` (MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE).
 * Also reads RD_FINALIZE_TIMEOUT_S (rd_mpi_finalize) and duplicates MPI_COMM_WORLD for the
 * exit barrier (collective).
 * @param[out] eb  on failure "MPI provides thread level X, Y is required", or a malformed
 *                 RD_FINALIZE_TIMEOUT_S
 * @return RD_OK, RD_ERR_MPI (the library provides less than required), RD_ERR_ARG (the
 *         environment variable); MPI is initialised anyway so that the caller can report and
 *         call rd_mpi_finalize. The error may be this rank's alone (an MPMD segment's -env): a
 *         rank that calls rd_mpi_finalize on it while the others go on to a collective leaves
 *         them waiting for ever, so every rank must learn of it first (train: after
 *         rd_app_agree, whose first collective is frozen)
 */
int rd_mpi_init(int *argc, char ***argv, int required, rd_errbuf *eb);
/**
 * MPI_Finalize if MPI is initialised and not yet finalized. Collective over MPI_COMM_WORLD, as
 * MPI_Finalize is: after rd_mpi_init, every rank first waits (polling, on a communicator of its
 * own) until all ranks are here, then finalizes under an alarm. If MPI_Finalize has not returned
 * after RD_FINALIZE_TIMEOUT_S seconds (environment; default 30, 0 = no limit; rd_mpi_init
 * rejects a malformed value), the rank prints why on stderr and exits with `status` — the code
 * the program returns next, so a run that failed does not turn into a success. Output streams
 * are flushed first.
 */
void rd_mpi_finalize(int status);

/**
 * The MPI library named by the text of MPI_Get_library_version, one word without blanks for the
 * run-time identity (app/build_id.c): "MPICH Version:\t4.0.2 ... MPICH Device:\tch4:ofi" gives
 * "MPICH-4.0.2/ch4:ofi" (the device tells two builds of one version apart: ch3 and ch4, ucx and
 * ofi, reduce differently), "MPICH Version: 4.0.2" without a device line "MPICH-4.0.2";
 * "Intel(R) MPI Library 2021.6 for Linux* OS" is its first line whole, "Open MPI v4.1.4, package:
 * ..." its first line up to the first comma. A pure function (no MPI call).
 * @param[in] version  the text, NUL-terminated
 * @param[out] out     cap bytes, NUL-terminated (cut to fit); blanks in the first line are kept
 */
void rd_mpi_library_name(const char *version, char *out, size_t cap);

typedef enum rd_role {
    RD_ROLE_PS = 0,     // embedding parameter server (one shard per rank)
    RD_ROLE_WORKER = 1, // a worker of one of the jobs of cluster.jobs
} rd_role;

/** Message tags. PS traffic lives on rd_comm.kv; the other tags are for world/job
 *  communicators. Reply tags encode the client's request slot, so replies can be matched even
 *  when a server answers out of order (deferred requests). */
typedef enum rd_tag {
    RD_TAG_PS_REQUEST = 1,       // worker -> PS: rd_msg header + payload
    RD_TAG_PS_BADMSG = 2,        // PS -> sender of a message whose header could not be read
    RD_TAG_DISTILL_TARGET = 16,  // teacher -> student: distillation targets
    RD_TAG_DISTILL_CREDIT = 17,  // student -> teacher: flow-control credits
    RD_TAG_TOKEN = 24,           // reserved for the token-store module
    RD_TAG_STOP = 25,            // job rank 0 -> PS shard 0 (world): checkpointed since SIGTERM;
                                 // another PS shard -> shard 0: got SIGTERM (-1); another rank
                                 // of a job -> its rank 0: got SIGTERM (2)
    RD_TAG_CKPT = 26,            // another rank of a job, or a PS shard -> a job's rank 0: got
                                 // SIGUSR1 (long long: when, ms since the epoch)
    RD_TAG_USER = 64,            // first tag free for other modules
    RD_TAG_PS_REPLY_BASE = 4096, // PS -> worker: RD_TAG_PS_REPLY_BASE + rd_msg_slot(req_id)
    RD_TAG_PS_REPLY_SLOTS = RD_MSG_SLOTS, // number of reply tags (request slots per process)
    RD_TAG_PS_REPLY_RESERVED = RD_MSG_SLOTS_RESERVED, // top slots left to other clients of
                                                      // rd_comm.kv in the same process
    RD_TAG_PS_REPLY_KV_SLOTS = RD_MSG_SLOT_KV_END,    // rd_kv uses slots [0, 3840) only
    // Reply tags of rd_token_client (slots [4080, 4096), i.e. tags [8176, 8192)); the token
    // client uses slot 4095 - k for its in-flight slot k. Reserved: rd_kv never uses them and
    // the server rejects built-in KV ops whose req_id carries one of the reserved slots.
    RD_TAG_PS_REPLY_TOKEN_FIRST = RD_TAG_PS_REPLY_BASE + RD_MSG_SLOT_TOKEN_FIRST,
    RD_TAG_PS_REPLY_TOKEN_LAST = RD_TAG_PS_REPLY_BASE + RD_MSG_SLOTS - 1,
    RD_TAG_PS_DATA_BASE = 8192, // PS -> worker: values of a PULL reply, + rd_msg_slot(req_id)
} rd_tag;

typedef struct rd_comm {
    MPI_Comm world;             // duplicate of the base communicator (application messages)
    MPI_Comm kv;                // duplicate reserved for PS requests/replies; MPI_ERRORS_RETURN
    MPI_Comm role;              // ranks of my role
    MPI_Comm job;               // ranks of my job; for PS ranks, the PS group
    int rank;                   // my rank in world (== in kv)
    int size;                   // size of world
    int role_kind;              // rd_role
    int job_index;              // index into cluster.jobs, -1 on PS ranks
    int job_rank;               // my rank in `job` (for PS ranks: my shard index)
    int job_size;               // size of `job`
    int ps_index;               // my shard index on PS ranks, -1 on workers
    int n_ps;                   // P
    int ps_world[4096];         // world rank of shard i, i < n_ps (== i with this layout)
    int n_jobs;                 // cluster.n_jobs
    int job_first[RD_MAX_JOBS]; // world rank of the first rank of job j
    int job_ranks[RD_MAX_JOBS]; // number of ranks of job j
    char job_name[RD_MAX_JOBS][RD_NAME_MAX]; // names from the config
} rd_comm;

/**
 * Split `base` (usually MPI_COMM_WORLD) into the layout of cfg->cluster. Collective over base.
 * @param[in]  base  communicator of the whole launch; its size must be rd_config_world_size(cfg)
 * @param[in]  cfg   the run configuration (only cfg->cluster is read)
 * @param[out] out   the layout; free with rd_comm_destroy (collective)
 * @param[out] eb    e.g. "launch has 4 ranks but the config needs 5 (ps_ranks 1 + teacher 2 +
 *                   student 2)"
 * @return RD_OK, RD_ERR_ARG (the size of base is not rd_config_world_size(cfg): a launch of the
 *         wrong size, which `train` reports as a usage error), RD_ERR_CONFIG (P > 4096, no
 *         jobs), RD_ERR_NOMEM.
 *         All ranks return the same code (the checks only use the size and the config).
 */
int rd_comm_create(MPI_Comm base, const rd_config *cfg, rd_comm **out, rd_errbuf *eb);
/** Free the communicators (collective) and the struct. Accepts NULL. */
void rd_comm_destroy(rd_comm *comm);

/** Job of a world rank: *job = index into cluster.jobs and *index = rank within the job, or
 *  *job = -1 and *index = shard for a PS rank. @return RD_OK or RD_ERR_RANGE (not in world). */
int rd_comm_job_of(const rd_comm *comm, int world_rank, int *job, int *index);

/** Polling helper for loops that must not block inside MPI (blocked MPICH calls spin a core).
 *  Usage: rd_backoff_reset(&b, max_us); while (!done) { ...test...; if (progress)
 *  rd_backoff_reset(&b, max_us); else rd_backoff_wait(&b); }
 *  Loops that serve traffic (the PS loop, waits on replies) reset with rd_backoff_hot instead:
 *  right after progress the next message usually follows within microseconds (the second half
 *  of a request, the next request of a batch), and a yield or a sleep there costs a scheduler
 *  round trip (milliseconds on a loaded 2-core machine); once the window has passed without
 *  progress the loop backs off as usual, so an idle loop still leaves the core. */
typedef struct rd_backoff {
    int spins;            // sched_yield rounds left before sleeping
    int us;               // next sleep in microseconds
    int max_us;           // cap (cluster.poll_us_max)
    int64_t hot_until_ns; // busy-poll (no yield, no sleep) until this CLOCK_MONOTONIC time
} rd_backoff;

void rd_backoff_reset(rd_backoff *b, int max_us);
/** rd_backoff_reset plus a busy-poll window: rd_backoff_wait returns at once (a CPU pause)
 *  during the next hot_us microseconds, then yields and sleeps as after rd_backoff_reset. */
void rd_backoff_hot(rd_backoff *b, int max_us, int hot_us);
/** Busy-poll inside a hot window; then yield (first 32 calls), then sleep 1, 2, 4, ... max_us
 *  microseconds. */
void rd_backoff_wait(rd_backoff *b);

/** Complete one request by MPI_Test with backoff up to poll_us_max microseconds (<= 0: 200), so a
 *  rank waiting on a collective or a point-to-point message does not spin a core. */
void rd_comm_wait(MPI_Request *req, int poll_us_max);

#ifdef __cplusplus
}
#endif
#endif // RD_COMM_H
