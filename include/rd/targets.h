// rd/targets.h — the distillation target log: every raw teacher logit, keyed by (teacher job,
// sample id, pass), in one LMDB env, so that students started later replay them.
//
// Defines:
//   rd_target_log                      opaque handle (one LMDB env at distill.target_log)
//   rd_target_log_opts                 map size, growth cap, sync mode
//   rd_target_log_create / open / open_or_create / close
//   rd_target_log_lock / unlock        the one writing launch of a log (<log>/writer.lock)
//   rd_target_job_key()                teacher job name -> 64-bit key
//   rd_target_batch, rd_target_log_append()    batched appends (one write transaction)
//   rd_target_out, rd_target_log_read_range()  sample-id range -> arrays
//   rd_target_log_get()                one (job, sample, pass)
//   rd_target_log_sync()               flush committed appends to disk
//   rd_target_log_count()              records in the log
//   rd_target_log_drop_job()           delete every record of one job (a fresh teacher run)
//   rd_target_job_info, rd_target_log_put_job() / _get_job()   how a teacher job sampled
//
// On disk: an LMDB env (data.mdb, lock.mdb) with two named databases. "meta" holds the header
// record (key "header": magic "RDTGTLOG", version, key and value sizes, created, CRC-32C) and
// one sampling record per teacher job (key "job" | be64 job key; rd_target_job_info);
// "targets" holds the records:
//   key   (20 bytes) = big-endian job key | big-endian sample id | big-endian pass, so one job's
//         targets are contiguous and ordered by sample id, then pass;
//   value (20 bytes, little-endian) = logit f32 | window i32 | teacher version u64 (the
//         teacher's step when it produced the logit) | CRC-32C over key and value.
// A record appended twice (same job, sample and pass) keeps the last value.
//
// Concurrency: readers (MDB_RDONLY, e.g. a replaying student) see consistent snapshots and
// never block writers; the writer processes of one launch (its teacher jobs) may append, LMDB
// serialises their write transactions; one launch at a time writes a log (rd_target_log_lock),
// as a fresh teacher run drops its job's earlier records and must not drop a live run's. The map
// grows by doubling when full (never a lost write). A handle is used by one thread at a time.
//
// Arguments: every function returning a status refuses a NULL handle, batch, output or lock fd
// with RD_ERR_ARG and "FUNCTION: invalid argument: ..." (RD_ARG_CHECK, rd/error.h), having set
// an output handle to NULL (read_range's count to 0) first; they asserted, which aborted a
// replaying student, a tool or every rank of a launch over a caller's mistake.
#ifndef RD_TARGETS_H
#define RD_TARGETS_H

#include <stddef.h>
#include <stdint.h>

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_TARGET_LOG_VERSION 1
#define RD_TARGET_KEY_BYTES   20
#define RD_TARGET_VALUE_BYTES 20
#define RD_TARGET_ANY_PASS    (-1)

typedef struct rd_target_log rd_target_log;

typedef struct rd_target_log_opts {
    uint64_t map_size;     // initial map size in bytes; 0 = 1 MiB (or the file's when larger)
    uint64_t max_map_size; // growth cap; 0 = 1 TiB
    int no_sync;           // 1 = commits without fsync
} rd_target_log_opts;

/**
 * Create a new target log at folder `path` (created; must not hold an LMDB env yet).
 * @param[in] opts  may be NULL (defaults)
 * @param[out] out  open for writing; close with rd_target_log_close
 * @return RD_OK, RD_ERR_EXISTS (path holds data.mdb already), RD_ERR_IO, RD_ERR_ARG, RD_ERR_LMDB
 */
int rd_target_log_create(const char *path,
                         const rd_target_log_opts *opts,
                         rd_target_log **out,
                         rd_errbuf *eb);

/**
 * Open an existing target log.
 * @param[in] writable  0 = read-only (MDB_RDONLY), 1 = appends allowed
 * @param[in] opts      may be NULL
 * @return RD_OK, RD_ERR_NOTFOUND (no such log), RD_ERR_CORRUPT (no or damaged header record),
 *         RD_ERR_VERSION (other log version or record layout; the message says which),
 *         RD_ERR_LMDB, RD_ERR_NOMEM
 */
int rd_target_log_open(const char *path,
                       int writable,
                       const rd_target_log_opts *opts,
                       rd_target_log **out,
                       rd_errbuf *eb);

/**
 * Open the target log at `path` for appending, or create it when there is none. Safe when
 * several processes do it at once (the teacher jobs of one launch share a log): the log is
 * built in a folder of its own beside `path` and renamed into place, so no process ever opens a
 * half-created log, and those that lose the race open the winner's.
 * @param[out] created  may be NULL; 1 when this call created the log, else 0
 * @return RD_OK; RD_ERR_EXISTS (`path` is a folder that holds other files but no log, or not a
 *         folder); what rd_target_log_open and _create return
 */
int rd_target_log_open_or_create(const char *path,
                                 const rd_target_log_opts *opts,
                                 rd_target_log **out,
                                 int *created,
                                 rd_errbuf *eb);

/**
 * Become the one writing launch of the target log at `path`: create the folder (and its parents)
 * when missing, then lock `<path>/writer.lock` (flock, no waiting) and record "host H pid P since
 * T: what" in it. A launch that writes the log takes it once, on world rank 0, before any of its
 * teacher jobs opens the log (they all share it, so several teacher jobs of one launch still
 * write one log); a second launch is refused before it trains. Replaying students never take it.
 * Released by rd_target_log_unlock or when the process ends, however it ends (no stale lock on
 * this host; on NFS the server frees a dead host's lock when its lease expires).
 * @param[out] fd  the lock; release with rd_target_log_unlock
 * @return RD_OK; RD_ERR_STATE "target log L is in use by another writer (host H pid P since T:
 *         what; ...)"; RD_ERR_IO (cannot create the folder, or create or lock the file);
 *         RD_ERR_EXISTS (`path` is not a folder)
 */
int rd_target_log_lock(const char *path, const char *what, int *fd, rd_errbuf *eb);

/** Release a lock of rd_target_log_lock. -1 is ignored. */
void rd_target_log_unlock(int fd);

/** Remove the log at `path` (its data.mdb and lock.mdb, then the folder if it is empty): undo a
 *  creation when the run that made it fails before writing any target. Close handles first. */
void rd_target_log_remove(const char *path);

/** Close the env and free the handle. Accepts NULL. */
void rd_target_log_close(rd_target_log *log);

/** Key of a teacher job: a hash of its name (rd_hash_str with a fixed seed). */
uint64_t rd_target_job_key(const char *job_name);

/** n targets of one teacher job and pass (arrays borrowed for the call). */
typedef struct rd_target_batch {
    size_t n;
    uint64_t job;             // rd_target_job_key(teacher job name)
    uint32_t pass;            // epoch / pass over the data that produced these logits
    const uint64_t *samples;  // (n) sample ids
    const float *logits;      // (n) raw teacher logits, finite
    const uint64_t *versions; // (n) teacher step per logit, or NULL (0)
    const int32_t *windows;   // (n) stream window per sample (-1 = batch phase), or NULL (-1)
} rd_target_batch;

/**
 * Append a batch in one write transaction (keys sorted; MDB_APPEND when they extend the log).
 * Validated first: nothing is written when a logit is not finite.
 * @return RD_OK, RD_ERR_ARG (read-only handle, non-finite logit i, missing arrays),
 *         RD_ERR_FULL (map at its cap or disk full; nothing of the batch committed),
 *         RD_ERR_LMDB, RD_ERR_NOMEM
 */
int rd_target_log_append(rd_target_log *log, const rd_target_batch *b, rd_errbuf *eb);

/**
 * Delete every target record of `job` (all samples and passes) in one write transaction, so a
 * reader sees either all of them or none; the records of other jobs and the job's sampling record
 * (rd_target_log_put_job) are kept. A teacher run that is not a resume calls it before its first
 * append, so the log never mixes its targets with an earlier run's of the same job name. Safe
 * while other processes append other jobs' records (LMDB serialises write transactions).
 * @param[out] n_dropped  may be NULL; the number of records deleted
 * @return RD_OK (also when the job has no record), RD_ERR_ARG (read-only handle), RD_ERR_FULL
 *         (map at its cap, disk full, or more deletions than one LMDB transaction holds: nothing
 *         deleted), RD_ERR_CORRUPT (a key of the wrong size), RD_ERR_LMDB
 */
int rd_target_log_drop_job(rd_target_log *log, uint64_t job, uint64_t *n_dropped, rd_errbuf *eb);

/** Outputs of a range read (caller-owned arrays of `cap` entries; NULL = not wanted, except
 *  samples and logits). */
typedef struct rd_target_out {
    uint64_t *samples;  // (cap) required
    float *logits;      // (cap) required
    uint32_t *passes;   // (cap) or NULL
    uint64_t *versions; // (cap) or NULL
    int32_t *windows;   // (cap) or NULL
} rd_target_out;

/**
 * Every record of `job` with sample_lo <= sample < sample_hi (and pass == `pass`, unless pass is
 * RD_TARGET_ANY_PASS), in (sample, pass) order, from one read snapshot.
 * @param[out] n_out  records written; on RD_ERR_RANGE, the number the range holds
 * @return RD_OK, RD_ERR_RANGE (more than cap records: nothing is valid, *n_out says how many),
 *         RD_ERR_CORRUPT (a record of the wrong size or CRC), RD_ERR_ARG, RD_ERR_LMDB
 */
int rd_target_log_read_range(rd_target_log *log,
                             uint64_t job,
                             uint64_t sample_lo,
                             uint64_t sample_hi,
                             int64_t pass,
                             const rd_target_out *out,
                             size_t cap,
                             size_t *n_out,
                             rd_errbuf *eb);

/**
 * One target. Outputs may be NULL.
 * @return RD_OK, RD_ERR_NOTFOUND, RD_ERR_CORRUPT, RD_ERR_LMDB
 */
int rd_target_log_get(rd_target_log *log,
                      uint64_t job,
                      uint64_t sample,
                      uint32_t pass,
                      float *logit,
                      uint64_t *version,
                      int32_t *window,
                      rd_errbuf *eb);

/** Flush every committed append to disk (fsync; the log may be opened with no_sync), also
 *  those of other processes on this host writing the same log: a teacher's checkpoint commits
 *  only after the targets it emitted before its cut are on disk.
 *  @return RD_OK, RD_ERR_ARG (read-only handle), RD_ERR_LMDB */
int rd_target_log_sync(rd_target_log *log, rd_errbuf *eb);

/** Records in the log (all jobs). @return RD_OK or RD_ERR_LMDB. */
int rd_target_log_count(rd_target_log *log, uint64_t *n, rd_errbuf *eb);

/** How a teacher job sampled its training records (cluster.jobs[].negatives): a record is kept
 *  by rd_sample_keep(salt, neg_rate, pos_rate, id, label), so a student replaying the log alone
 *  knows which records have no target by design (untargeted) and which are missing. */
typedef struct rd_target_job_info {
    double neg_rate;      // (0, 1]
    double pos_rate;      // (0, 1]
    uint64_t salt;        // rd_sample_salt(run seed of the teacher's run)
    uint64_t data_events; // the dataset the teacher trained on (its sample ids index it):
    uint32_t data_crc;    //   rd_dataset_info n_events and records_crc
    int has_data;         // 1 = data_* are set (always when written; 0 in an older build's log)
} rd_target_job_info;

/**
 * Record (or replace) job's sampling and dataset in the log's meta database (key "job" | be64
 * job; 56-byte value with a CRC-32C; the 40-byte records of older builds are still read).
 * @return RD_OK, RD_ERR_ARG (read-only handle, a rate outside (0, 1], has_data 0), RD_ERR_FULL,
 *         RD_ERR_LMDB
 */
int rd_target_log_put_job(rd_target_log *log,
                          uint64_t job,
                          const rd_target_job_info *ji,
                          rd_errbuf *eb);

/**
 * Read job's sampling.
 * @return RD_OK, RD_ERR_NOTFOUND (none recorded: a log written before this record existed),
 *         RD_ERR_CORRUPT (bad size, magic, CRC or rates), RD_ERR_LMDB
 */
int rd_target_log_get_job(rd_target_log *log, uint64_t job, rd_target_job_info *ji, rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_TARGETS_H
