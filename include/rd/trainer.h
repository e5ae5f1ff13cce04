// rd/trainer.h — the training loop of one worker rank of one job: batch phase, stream windows with
// progressive validation, holdout evaluation (whole and warm slice), popularity baseline.
//
// Defines:
//   RD_TRAINER_WARM_MIN      earlier events a holdout user needs to count in the warm slice (20)
//   rd_trainer_eval          metrics of one evaluated range (model or popularity baseline)
//   rd_trainer_result        what a job's rank 0 reports at the end (plain struct: sent as bytes)
//   rd_trainer               opaque: dataset, model, KV client, step buffers of one worker rank
//   rd_trainer_create()      open the dataset, build the model, create the KV client
//   rd_trainer_run()         run the whole schedule; job rank 0 writes the job's metrics file
//                            (unless rd_trainer_opts.metrics_dir is "")
//   rd_trainer_write_metrics() / _write_targets()  a job's result files from its rd_trainer_result
//   rd_trainer_score()       main-tower logits of given records (the serving reference)
//   rd_trainer_model()       the dense model (tests compare parameters)
//   rd_trainer_kv()          the KV client (tests pull rows after training)
//   rd_trainer_destroy()     rd_kv_shutdown + free (every worker rank must reach it)
//   rd_trainer_agree()       every worker rank's status of a start-up step; one rank reports
//   rd_trainer_request_checkpoint() a checkpoint after the next step (async-signal-safe)
//   rd_trainer_request_stop()  the same, then PS shard 0 is told (SIGTERM: the run ends after)
//   rd_trainer_targets_json() the target counters as JSON members (targets.json, report.json)
//   rd_history_keys          a history's table keys and labels in per-user order (stage_build)
//
// Schedule (per job, all ranks of the job in lock step):
//   1. batch phase: train.epochs passes over rd_dataset_batch, in train.order (time: ranks take
//      records strided, so step s of W ranks with batch B covers exactly the W*B consecutive
//      records that one rank with batch W*B would take; user: users sharded by rd_shard_of).
//   2. stream: for each window w, evaluate it with the current parameters, then train on it
//      (time order, strided) — progressive validation.
//   3. holdout: evaluate rd_dataset_holdout, whole and warm slice.
// Data parallelism: a rank with B_r of a step's B_tot examples scales its dense gradient by
// W * B_r / B_tot before rd_dense_allreduce (which averages) and its row gradients by B_r / B_tot
// before the push (the PS sums a step's pushes), so the update equals the one of a single rank
// with the whole B_tot-example batch, including ragged last steps and ranks with B_r = 0.
//
// Distillation (cluster.jobs[].distill): a teacher job with distilled students creates one
// rd_target_sender per student job (over comm->world) and emits, at every training step, the
// batch's raw logits_main of its own forward pass (before the update) keyed by dataset record
// index, with its step as version; the first sender appends to distill.target_log. A distilled
// student creates an rd_target_recv (live, or replaying distill.target_log when distill.replay)
// and gets the targets of its step's records (bounded wait distill.wait_ms), projects them
// through its cross-debias calibration and trains the aux tower on them (distill.alpha,
// temperature) from distill.start_window on. Both sides begin / end the same phases: every batch
// epoch e (pass e, window -1), then every stream window w (pass 0, window w). The owner of a
// record is the student rank whose iterator takes it (strided by index from the range's start, or
// rd_shard_of(user_key) in user order). Job rank 0 writes "<job>.targets.json" next to the
// metrics file (`recdistill train` has world rank 0 write both for every job instead, beside
// report.json: rd_trainer_write_metrics, rd_trainer_write_targets).
//
// Instance tokens (IAT, models[].tokens.scheme > 0; rd_config_token_job names the first job whose
// model reads them): before any job trains, rank 0 of that job builds the run's token store at
// tokens.store_dir — an rd_source_driver trains tokens.source_model over the batch period
// (train.epochs passes, user order for scheme 2), then over the stream windows in time order
// (streaming mode: frozen previous tokens fetched from the store), then writes the holdout's
// tokens without training on it; every token goes through the PS rank that owns its user's
// shard (rd_token_client_append; the PS ranks serve the store with rd_token_service). Then it
// tells the rank 0 of every other job, and each job's rank 0 releases its ranks. A job whose
// model reads tokens fetches, with each batch's pull, the user's last tokens.length tokens
// strictly before the event (rd_token_client_fetch_start), laid out most recent first; with
// tokens.same_time earlier also those of its own second that come before it (its id), and with
// tokens.stats their summaries (rd_token_summary) close its numeric inputs.
//
// Features a model may embed: "user", "item", any categorical / multi field of the dataset, and
// two fields derived from the timestamp when the dataset has no field of that name: "hour"
// (0..23, UTC) and "weekday" (0 = Monday .. 6, UTC) (rd_dataset_feature_src). History items of the
// sequence branch are the user's last L records strictly before the event (rd_dataset_history),
// most recent first (position 0 = the latest), padding after them; history labels are those
// records' labels.
//
// Checkpoints (rd/train_ckpt.h): job rank 0 writes one after every ps.checkpoint_every-th step
// (0 = none during training) and one after the last training step, into
// <checkpoint_dir>/<job>/step-N (the job's tables through rd_kv_save, then dense.bin with the
// dense parameters, optimizer state and position), keeping the newest ps.checkpoint_keep. With
// opts.resume_dir the run continues from one: every rank restores the dense parameters, optimizer
// state and position, job rank 0 restores the job's PS tables (rd_kv_load), and the schedule goes
// on at the step after the checkpoint's (earlier phases are skipped and their windows are not
// re-evaluated: metrics NaN). In sync mode the result is bit-identical to the uninterrupted run,
// also on another number of PS ranks after `recdistill table reshard`. Jobs in live
// distillation each resume from their newest checkpoint and begin the phases together at the
// earliest job's: the teacher first sends its students again, from distill.target_log, the
// targets it sent from there up to its checkpoint, and a student drops those of the records it
// trained on before its own (rd/distill.h); when the log does not hold the teacher's targets, they
// resume from the newest phase start they all have a checkpoint at.
//
// Memory: every buffer of a step is allocated at create for train.batch_size (two stages, so the
// next batch's keys and pull are prepared while this one is computed); nothing per step.
#ifndef RD_TRAINER_H
#define RD_TRAINER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rd/comm.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/error.h"
#include "rd/kv.h"
#include "rd/metrics.h"
#include "rd/model.h"
#include "rd/tokens.h"
#include "rd/traffic.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_TRAINER_WARM_MIN 20 // warm slice: the user has >= this many earlier events
// Stream windows kept in rd_trainer_result: as many as a config allows (data.split.stream_windows),
// so every window counts in the metrics file, the report's stream slice and the plot.
#define RD_TRAINER_MAX_WINDOWS RD_SPLIT_MAX_WINDOWS

/** Metrics of one evaluated range. */
typedef struct rd_trainer_eval {
    rd_metrics_result m;  // auc, gauc, logloss, calibration, n, ... (NaN when undefined)
    double samples_per_s; // training throughput of the phase that followed (stream windows) or
                          // evaluation throughput (holdout), on this job
} rd_trainer_eval;

/** Distillation-target counters of one job, summed over its ranks (rd_target_stats). */
typedef struct rd_trainer_targets {
    int role;            // 0 none, 1 teacher sending live, 2 student live, 3 student replaying
    uint64_t sent;       // teacher: targets sent to students (all student jobs)
    uint64_t logged;     // teacher: targets appended to distill.target_log
    uint64_t received;   // student: targets received over MPI
    uint64_t joined;     // student: samples answered by a live target
    uint64_t late;       // student: targets that came after their sample / phase was done
    uint64_t missing;    // student: samples without a target within distill.wait_ms
    uint64_t replayed;   // student (replay): samples answered from the target log
    uint64_t unused;     // student: targets never asked for (e.g. before distill.start_window)
    uint64_t duplicates; // student: second target of a (phase, sample), dropped; also those a
                         // resumed teacher sent again for records trained on before the
                         // student's checkpoint
    uint64_t unsampled;  // teacher: targets not sent, the student job's own sampling drops
                         // their records (cluster.jobs[].negatives)
    uint64_t untargeted; // student: samples the teacher's own sampling drops: no target asked
} rd_trainer_targets;

/** Write t's members, `"role": "student", "sent": N, ...` (no braces), to f: the one spelling
 *  of the counters, shared by "<job>.targets.json" and report.json. */
void rd_trainer_targets_json(FILE *f, const rd_trainer_targets *t);

/** IAT counters of one job: the store build (job rank 0 of the builder job) and the fetches
 *  (all ranks of the job). */
typedef struct rd_trainer_tokens {
    int built;                 // 1 = this job built the run's token store
    double build_s;            // seconds of the build (source model training + appends)
    uint64_t source_events;    // events the source model trained on (all epochs)
    uint64_t tokens_written;   // tokens appended (all passes; a later epoch overwrites)
    double source_auc;         // the source model's progressive AUC of its last trained pass
    uint64_t fetched_requests; // examples whose history tokens were fetched
    uint64_t fetched_tokens;   // tokens delivered to the model
    int mapped;                // 1 = the builder asked the PS ranks to map the built store in
                               // 2 MiB pages (tokens.huge_pages auto): map says what they did
    rd_token_map_stats map;
} rd_trainer_tokens;

/** The report of one job (filled on the job's rank 0; other ranks get n_windows = 0). About
 *  1.2 MB (the window table): allocate it, do not put it on the stack. */
typedef struct rd_trainer_result {
    char job[RD_NAME_MAX];
    char model[RD_NAME_MAX];
    int ranks;               // worker ranks of the job
    uint64_t params;         // dense parameters
    double flops_per_sample; // forward dense FLOPs per example (rd_model_flops)
    double wall_s;           // create .. end of run on rank 0
    double train_s;          // seconds spent in training steps (batch + stream) by this launch
    uint64_t train_samples;  // examples trained on (all ranks, all epochs and windows)
    uint64_t launch_samples; // of those, trained by this launch (less after --resume)
    double samples_per_s;    // launch_samples / train_s
    double final_loss;       // moving average (0.99) of rank 0's training loss
    int n_windows;           // stream windows evaluated (<= RD_TRAINER_MAX_WINDOWS)
    rd_trainer_eval window[RD_TRAINER_MAX_WINDOWS];
    rd_trainer_eval holdout; // the whole holdout window
    rd_trainer_eval warm;    // holdout events whose user has >= RD_TRAINER_WARM_MIN earlier ones
    rd_trainer_eval pop_holdout; // popularity baseline on the same events
    rd_trainer_eval pop_warm;
    rd_trainer_targets targets; // distillation counters (all ranks of the job)
    rd_trainer_tokens tokens;   // IAT store build and fetch counters
    rd_traffic comm; // messages and bytes per channel, summed over the job's ranks (rank 0 only;
                     // PS traffic as the job's KV clients saw it, up to the end of the holdout)
    double neg_keep, pos_keep; // the job's own sampling of its training records
                               // (cluster.jobs[].negatives); 0 = not recorded
} rd_trainer_result;

typedef struct rd_trainer rd_trainer;

/** Options besides the config. */
typedef struct rd_trainer_opts {
    const char *dataset_dir;    // prepared dataset folder; NULL = cfg->data.dir
    const char *metrics_dir;    // folder of the metrics file "<job>.metrics.<csv|jsonl>"; NULL =
                                // cfg->run.out_dir; "" = write none
    int quiet;                  // 1 = no progress lines
    const char *checkpoint_dir; // root of the job's checkpoints (rd/train_ckpt.h); NULL =
                                // cfg->ps.checkpoint_dir; "" = write none
    const char *resume_dir;     // continue from a checkpoint: a step-N directory of this job,
                                // or a checkpoint root (its newest <job>/step-N); NULL = fresh
    // Test hooks (cmd_train reads them from RD_TEST_DISTILL_TIMEOUT_MS, RD_TEST_FIN_DELAY_MS):
    int distill_timeout_ms; // ms a teacher's distillation call waits without a credit, besides
                            // distill.wait_ms; 0 = 300000. A student's wait for its teachers' FIN
                            // never has a limit, whatever this is
    int fin_delay_ms;       // ms a teacher that sends targets sleeps before it closes its senders
                            // (a teacher slow to finish); 0 = none
} rd_trainer_opts;

/**
 * Set up one worker rank: open the dataset (and check that its split matches cfg->data.split),
 * build the job's model (seed cfg->run.seed, identical on the job's ranks), init the dense
 * optimizer and create the KV client. Not collective (no MPI traffic), so a failure here may be
 * local to one rank: the caller must turn it into a global stop (cmd_train agrees the status over
 * every worker rank with rd_trainer_agree, so that one rank reports it, then aborts).
 * @param[in]  comm  a worker rank's layout (borrowed: must outlive the trainer)
 * @param[in]  cfg   validated run config (borrowed: must outlive the trainer)
 * @param[out] out   free with rd_trainer_destroy
 * @return RD_OK, RD_ERR_ARG (not a worker rank), RD_ERR_CONFIG (unknown field, numeric field
 *         embedded, token branch, model invalid, dataset split differs from the config),
 *         RD_ERR_IO / RD_ERR_CORRUPT / RD_ERR_VERSION (dataset), RD_ERR_NOMEM
 */
int rd_trainer_create(const rd_comm *comm,
                      const rd_config *cfg,
                      const rd_trainer_opts *opts,
                      rd_trainer **out,
                      rd_errbuf *eb);

/** rd_trainer_create's first check, for tests: the bytes the token fetches of model mc take on
 *  a worker rank (two stages of fetched and picked tokens, and the token client's staging of
 *  their replies; 0 without tokens), from cfg->train.batch_size, mc->tokens.length / .search,
 *  cfg->tokens.dim and the side values. */
double rd__trainer_token_bytes(const rd_config *cfg, const rd_model_config *mc);
/** Compare rd__trainer_token_bytes with `limit` bytes (<= 0: rd_mem_limit()).
 *  @return RD_OK, or RD_ERR_NOMEM naming train.batch_size and models[i].tokens.length (or
 *          .search, when it sets how many tokens are fetched) */
int rd__trainer_check_token_memory(const rd_config *cfg,
                                   const rd_model_config *mc,
                                   double limit,
                                   rd_errbuf *eb);

/** The table keys and label bits of rd_dataset_history_keys (n_events each), or both NULL. */
typedef struct rd_history_keys {
    uint64_t *key; // (n_events) rd_table_key(seq table, item key) of each per-user list entry
    uint8_t *pos;  // (n_events) its label > 0.5
} rd_history_keys;

/**
 * stage_build's history of record i, for tests: appends the table keys of its (up to L) earlier
 * events, latest first, to raw[*n_raw ..], and sets si (L) to their positions in raw (-1 after
 * them) and sl (L) to their label bits (0 after them). hk NULL or empty reads the records of the
 * log; else hk must hold rd_dataset_history_keys(ds, table_id). Both give the same output.
 */
void rd__trainer_history_fill(const rd_dataset *ds,
                              const rd_history_keys *hk,
                              uint64_t table_id,
                              uint64_t i,
                              size_t L,
                              uint64_t *raw,
                              size_t *n_raw,
                              int32_t *si,
                              uint8_t *sl);
/** The bytes a worker rank may give that array: a quarter of limit over world_size ranks. */
double rd__trainer_history_keys_budget(double limit, int world_size);

/**
 * Run the schedule. Collective over the job's ranks (allreduce, metric gathers) and talks to the
 * PS. On the job's rank 0 fills *res and writes the metrics and targets files (none when
 * rd_trainer_opts.metrics_dir is ""); other ranks zero *res except
 * job, model and ranks.
 * @return RD_OK, or a KV error (RD_ERR_PROTO, RD_ERR_STATE, ...), RD_ERR_RANGE (a batch failed
 *         the model's checks: corrupt data), RD_ERR_IO (metrics file), RD_ERR_NOMEM. An error
 *         leaves the job's other ranks inside collectives: the caller must abort the launch.
 */
int rd_trainer_run(rd_trainer *tr, rd_trainer_result *res, rd_errbuf *eb);

/**
 * Write a job's metrics file "<job>.metrics.<csv|jsonl>" (cfg->output.metrics_format) of `res`
 * (its job rank 0's result) to `path`: unique temporary name, fsync, rename (complete or absent).
 * `recdistill train` writes every job's on world rank 0, beside report.json.
 * @return RD_OK, RD_ERR_IO / RD_ERR_FULL / RD_ERR_EXISTS (rd_lmdbx_outfile_open / _commit)
 */
int rd_trainer_write_metrics(const rd_config *cfg,
                             const rd_trainer_result *res,
                             const char *path,
                             rd_errbuf *eb);

/**
 * Write "<job>.targets.json", {"job": "<job>", <rd_trainer_targets_json>}, to `path`, atomically
 * as rd_trainer_write_metrics. A job that neither sends nor receives targets (t->role 0) writes
 * none.
 * @return as rd_trainer_write_metrics
 */
int rd_trainer_write_targets(const char *job,
                             const rd_trainer_targets *t,
                             const char *path,
                             rd_errbuf *eb);

/**
 * Main-tower logits of dataset records `recs` with the current parameters and PS rows (one
 * forward pass per train.batch_size records, rows pulled like an evaluation; no update). The
 * reference of the serving path's scores (tests). Call after rd_trainer_run, before destroy.
 * A job with its own negative sampling gets log(rate / pos_rate) added (the prior correction
 * evaluation applies too; the serving bundle carries it).
 * @param[out] logits  (n)
 * @return RD_OK, RD_ERR_RANGE (a record index out of range), a KV error
 */
int rd_trainer_score(rd_trainer *tr, const uint64_t *recs, size_t n, float *logits, rd_errbuf *eb);

/**
 * Check a checkpoint's windows.tsv (the stream windows' metrics, not CRC-protected) as
 * `train --resume` reads it: the header, one well-formed line per window with values an
 * evaluation can give, and as many windows as the position (window, range_step of its
 * dense.bin) has evaluated. `table verify` runs it, so a file the resume would refuse is not
 * reported as ok.
 * @param[out] n  the windows it holds, -1 when there is no windows.tsv (an older build: ok)
 * @return RD_OK, RD_ERR_CORRUPT (naming the file and line), RD_ERR_IO
 */
int rd_trainer_windows_check(
    const char *dir, int32_t window, int64_t range_step, int *n, rd_errbuf *eb);

/**
 * Ask every trainer of this process for a checkpoint after its next training step, whatever the
 * checkpoint cadence (none set included); training then goes on. Job rank 0 writes it, as it
 * writes the periodic ones; another rank of the job passes its request on to it (RD_TAG_CKPT,
 * as a PS rank does: rd_server_request_checkpoint), and requests less than 5 s apart are
 * answered by one checkpoint. A request before the first step or while no step is left
 * (evaluation) waits for the next step, if any. Async-signal-safe: it only sets a lock-free
 * atomic. `recdistill train` calls it from its
 * SIGUSR1 handler, so `kill -USR1`, or Slurm's `--signal=USR1@N` some minutes before a time
 * limit, leaves a checkpoint seconds old to resume from (docs/slurm.md).
 */
void rd_trainer_request_checkpoint(void);

/**
 * rd_trainer_request_checkpoint for SIGTERM: the checkpoint is announced as "on SIGTERM", and
 * job rank 0 then tells PS shard 0 (RD_TAG_STOP), which ends the launch once every job still
 * training has done so (rd_server_run). Training goes on meanwhile: another job may need this
 * one's next steps to reach its own (a student the teacher's targets). Async-signal-safe.
 */
void rd_trainer_request_stop(void);

/** The dense model (parameters identical on the job's ranks after every step). */
rd_model *rd_trainer_model(rd_trainer *tr);
/** The KV client (valid until rd_trainer_destroy). */
rd_kv *rd_trainer_kv(rd_trainer *tr);

/** Call rd_kv_shutdown (every worker rank must, also after a failed run when the PS ranks are
 *  to return normally), then free everything. Accepts NULL. @return the shutdown's status. */
int rd_trainer_destroy(rd_trainer *tr);

/**
 * Agree on a start-up step (rd_trainer_create, resume, the target logs) over every worker rank
 * of the launch: collective over comm->role, polled (poll_us as cluster.poll_us_max). A refusal
 * of the config or of an input is usually seen by every rank at once; one of them reports it,
 * so that `mpiexec -n N` prints it once, not once per rank.
 * @param[in]     comm  a worker rank's layout
 * @param[in]     rc    this rank's status of the step
 * @param[in,out] eb    this rank's message; on a rank that gets RD_ERR_REPORTED, which rank
 *                      reported
 * @return RD_OK when every rank's rc is RD_OK; rc itself on the lowest world rank whose rc is not;
 *         RD_ERR_REPORTED on every other rank, failed or not (its caller ends the launch without a
 *         message of its own: the reporting rank's says why).
 */
int rd_trainer_agree(const rd_comm *comm, int poll_us, int rc, rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_TRAINER_H
