// rd/watch.h — a sentinel process per rank that names a rank which died without an orderly exit.
//
// Defines:
//   rd_watch            opaque handle of one rank's sentinel
//   rd_watch_start()    fork the sentinel (call BEFORE MPI_Init: nothing of MPI is duplicated)
//   rd_watch_identify() tell it who this rank is ("rank 1 (teacher: job 'teacher' rank 0)") and
//                       the launch-wide token that names the per-host marker file
//   rd_watch_freeze()   from now on, end the launch when this rank is frozen (stopped, or in
//                       one uninterruptible kernel wait) that many seconds
//                       (cluster.freeze_timeout_s)
//   rd_watch_failing()  this rank is about to end the launch itself (MPI_Abort after a printed
//                       error): the sentinel claims the marker silently
//   rd_watch_stop()     orderly exit: the sentinel leaves without a word; frees the handle
//
// Why: when a rank is killed (kill -9, OOM killer, segfault), MPICH's hydra and Slurm end the
// other ranks with SIGKILL within milliseconds. That is good (no hang) but leaves no survivor able
// to say what happened, and hydra's banner names only a PID, often the wrong one. The sentinel is
// a small child process, forked before MPI_Init, that holds the read end of a pipe whose write end
// only the rank holds. The kernel closes the write end whatever way the rank ends, so the sentinel
// always learns of the end; without a prior rd_watch_stop() it prints
//   recdistill: rank 1 (teacher: job 'teacher' rank 0, pid 123 on host vm) died without an orderly
//   exit (killed by a signal or crashed); the job cannot go on without it
// on the rank's stderr, which the launcher still forwards.
//
// Which rank died first: all ranks of a torn-down launch end abruptly, the victims within a
// millisecond of the culprit. Each sentinel that sees an abrupt end writes the time it saw it to
// /dev/shm/recdistill-<token>.<pid>, waits 200 ms, and prints only if no stamp of the same launch
// is earlier (sentinels wake in the order of the deaths, as far as the scheduler keeps it: on a
// loaded host a victim is sometimes named instead; docs/reliability.md has the figures). A rank
// that ends the launch on purpose (rd_watch_failing, then MPI_Abort) stamps time 0 first, so the
// victims of its MPI_Abort stay silent. On several hosts, each host's first abrupt end is reported
// (the first line in time is the culprit). Stamps are removed by their sentinel 3 s later; a
// sentinel killed before that (kill -9 of every process of a launch, a Slurm step ended whole)
// leaves its stamp, and every sentinel removes this user's stamps older than a minute as it
// starts.
//
// Frozen ranks: a rank stopped by SIGSTOP or stuck in the kernel (State D on a dead NFS mount)
// is alive, so its pipe stays open, and every rank waiting on it would wait until the time limit.
// Once told a timeout (rd_watch_freeze), the sentinel looks at its rank in /proc once a second;
// a rank stopped (State T), or in one uninterruptible wait (State D without a context switch),
// for that long is named
//   recdistill: rank 1 (...), pid 123 on host vm, has not run for 600 s: it is stopped (State T:
//   ...); every rank that exchanges with it would wait for it until the time limit, so it is
//   killed (SIGKILL) to end the launch (cluster.freeze_timeout_s: 600; 0 turns this off)
// and killed; the launcher then ends the launch as for any dead rank, and the sentinel's stamp
// (time 0) keeps its victims silent. A rank that computes, however long, is never frozen (no
// heartbeat of the rank's own loop is involved); nor is one held by a debugger (TracerPid), nor
// one whose sentinel was suspended with it (the count restarts after a gap in its own looks),
// nor a stopped rank of a Slurm job that `scontrol -o show job $SLURM_JOB_ID` says is SUSPENDED
// (asked when the timeout is reached: where Slurm suspends by process group, the sentinels run on).
#ifndef RD_WATCH_H
#define RD_WATCH_H

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_watch rd_watch;

/**
 * Fork the sentinel. Must run before MPI_Init (forking an initialised MPI process is unsafe).
 * @param[out] out  the handle; free with rd_watch_stop
 * @param[out] eb   "pipe: ..." / "fork: ..."
 * @return RD_OK, RD_ERR_IO (pipe or fork failed), RD_ERR_NOMEM
 */
int rd_watch_start(rd_watch **out, rd_errbuf *eb);

/** Send the identity line printed on an abrupt end and the launch-wide marker token (letters,
 *  digits, '-' and '_' only; other bytes are replaced). Accepts w == NULL. */
void rd_watch_identify(rd_watch *w, const char *identity, const char *token);

/** Longest freeze timeout, seconds (a week). */
#define RD_WATCH_FREEZE_MAX_S 604800

/** Watch this rank for freezes from now on: timeout_s seconds stopped or in one uninterruptible
 *  wait end the launch, naming the rank (see above); 0 stops watching. Accepts w == NULL. */
void rd_watch_freeze(rd_watch *w, int timeout_s);

/** The rank is going to end the launch itself (a reported error): claim the marker so that the
 *  ranks the launcher kills next are not reported as dead. Accepts w == NULL. */
void rd_watch_failing(rd_watch *w);

/** Orderly exit: the sentinel exits silently. Frees w. Accepts NULL. */
void rd_watch_stop(rd_watch *w);

/** rd_watch_failing on this process's sentinel, if one was started (a no-op otherwise). Used by
 *  rd__fatal and RD_MPI_CHECK (common/error.c), which end the launch from anywhere. */
void rd__watch_failing(void);

#ifdef __cplusplus
}
#endif
#endif // RD_WATCH_H
