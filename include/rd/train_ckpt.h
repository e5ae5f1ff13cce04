// rd/train_ckpt.h — training checkpoints of one job: the PS tables (rd_kv_save), the job's dense
// parameters with their optimizer state, and the trainer's position, in one directory whose
// PS MANIFEST is the commit point.
//
// Defines:
//   rd_train_pos               where the trainer stood when the cut was taken (plain struct)
//   rd_train_ckpt_path()       "<root>/<job>/step-NNNNNNNNNNNN"
//   rd_train_ckpt_write_dense()/read_dense()   <dir>/dense.bin (params + optimizer slots + pos)
//   rd_train_ckpt_config_hash()   hash of a model's architecture, its tables' configs and its
//                              job's sampling
//   rd_train_ckpt_ident()      this run's identity record: the parts of that hash, the dataset,
//                              the job's partition (ranks, batch, order) and its token settings
//   rd_train_ckpt_check()      does a checkpoint's identity match this run's (names what differs)
//   rd_train_ckpt_commit()     rename a finished ".partial" directory into place (atomic)
//   rd_train_ckpt_prune()      keep the newest `keep` complete checkpoints of a job
//   rd_train_ckpt_latest()     the newest complete checkpoint of a job
//   rd_train_ckpt_list()       the steps of a job's complete checkpoints
//   rd_train_ckpt_clear()      remove every checkpoint of a job (a run that does not resume)
//   rd_train_ckpt_rmtree()     rm -r (tools, retention)
//
// Layout (ps.checkpoint_dir = root):
//   <root>/<job>/step-000000000120/   a complete checkpoint: MANIFEST + shard-NNNNN/ (rd/
//                                     checkpoint.h, the job's tables only) + dense.bin +
//                                     windows.tsv (metrics of the stream windows evaluated so
//                                     far, so that a resumed run reports them; written beside
//                                     dense.bin, copied along with it by the table tools)
//   <root>/<job>/.step-000000000120.partial/   being written. Written in this order: dense.bin
//                                     (atomic file), the PS shards, the MANIFEST (rd_kv_save),
//                                     then the directory is renamed to step-N. A crash at any
//                                     point leaves the previous step-N directories untouched; a
//                                     leftover .partial is removed by the next checkpoint.
//   Retention renames a checkpoint to .step-N.deleting before removing it, and a replaced one
//   (a rerun into the same folder) to .step-N.old: a step-N directory is always whole.
// dense.bin (little-endian host floats, like the shard envs):
//   magic "RDDENSE1" | u32 version | u32 optimizer kind | u64 n_slab | u64 n_params |
//   u64 opt_slots | u64 optimizer t | f32 lr, beta1, beta2, eps, weight_decay | i64 step |
//   i32 epoch | i32 window | i64 range_step | u64 trained | f64 loss_ema | i32 have_loss |
//   u64 seed | u64 config_hash | char job[32] | char model[32] |
//   (version 2:) u32 has_ident | u64 data_events | u32 data_crc | i32 job_ranks | i32 batch_size |
//   i32 order | u64 tokens_hash | u64 model_hash | u64 sampling_hash | u32 n_tables |
//   RD_TRAIN_CKPT_TABLES x (char table[32] | u64 table_hash) |
//   (version 3:) f64 batch_fraction | f64 holdout_fraction | i32 stream_windows | u32 0 |
//   params (n_slab f32) | opt_state (opt_slots * n_slab f32) | u32 CRC-32C of all before it.
// Version 1 files (no identity record) are still read: has_ident is 0 and the callers warn that
// the dataset, partition and token settings cannot be checked. Version 2 files (no split) are
// still read: split_windows is 0, the split is not checked and the trainer warns so.
#ifndef RD_TRAIN_CKPT_H
#define RD_TRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/dense_optim.h"
#include "rd/error.h"
#include "rd/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_TRAIN_CKPT_VERSION 3
#define RD_TRAIN_CKPT_DENSE   "dense.bin"
#define RD_TRAIN_CKPT_WINDOWS "windows.tsv" // the stream windows' metrics so far (trainer.c)
#define RD_TRAIN_CKPT_TABLES  32 // table entries of the identity record (>= RD_MAX_TABLES)

/** The trainer's position at a checkpoint (steps 0..step-1 of the job are applied). */
typedef struct rd_train_pos {
    int64_t step;         // job steps completed (rd_kv_step after the step's CLOCK)
    int32_t epoch;        // batch epoch in progress (0-based); cfg.train.epochs once in the stream
    int32_t window;       // stream window in progress, -1 during the batch phase
    int64_t range_step;   // steps of the current epoch / window completed
    uint64_t trained;     // training examples done (job total)
    double loss_ema;      // moving average of job rank 0's loss
    int32_t have_loss;    // loss_ema is set
    uint64_t seed;        // cfg.run.seed
    uint64_t config_hash; // rd_train_ckpt_config_hash of the job's model
    char job[RD_NAME_MAX];
    char model[RD_NAME_MAX];
    int32_t opt_kind;   // train.optimizer (rd_dense_optim_kind; the header's, every version)
    uint64_t opt_slots; // its state floats per parameter (rd_dense_optim_slots)
    // Identity of the run the position belongs to (version 2; all 0 in a version-1 file). The
    // position "step k of the phase" only means the same examples on the same dataset, split
    // in the same way; the part hashes let a refusal say which part of config_hash differs.
    int32_t has_ident;      // 1 = the fields below were recorded (the first of them: a reader
                            // clears from here to the end for an identity not recorded)
    uint64_t data_events;   // rd_dataset_info.n_events of the training data
    uint32_t data_crc;      // rd_dataset_info.records_crc
    int32_t job_ranks;      // worker ranks of the job
    int32_t batch_size;     // train.batch_size (examples per worker step)
    int32_t order;          // train.order (rd_order)
    uint64_t tokens_hash;   // token-store build settings (tokens.*), 0 = the model reads none
    uint64_t model_hash;    // the model config alone
    uint64_t sampling_hash; // the job's negative sampling, 0 = none
    int32_t n_tables;       // tables the model reads
    char table[RD_TRAIN_CKPT_TABLES][RD_NAME_MAX]; // their names
    uint64_t table_hash[RD_TRAIN_CKPT_TABLES];     // their configs (dim, optimizer, ...)
    // The split of the dataset into phases (version 3; split_windows 0 = not recorded): a
    // position in the batch period or in stream window w means the same examples only under
    // the same data.split.
    double split_batch;    // data.split.batch_fraction
    double split_holdout;  // data.split.holdout_fraction
    int32_t split_windows; // data.split.stream_windows
    // The run's side only (rd_train_ckpt_ident; not in the file): each table's dim and optimizer
    // (rd_optim), so that a refusal names the one that differs from the checkpoint's MANIFEST.
    int32_t table_dim[RD_TRAIN_CKPT_TABLES];
    int32_t table_optim[RD_TRAIN_CKPT_TABLES];
} rd_train_pos;

/** What rd_train_ckpt_check compares (bit flags). */
enum {
    RD_TRAIN_CKPT_CHECK_CONFIG = 1,     // config_hash, naming the part that differs
    RD_TRAIN_CKPT_CHECK_DATA = 2,       // data_events and data_crc
    RD_TRAIN_CKPT_CHECK_PARTITION = 4,  // job_ranks, batch_size, order, data.split
    RD_TRAIN_CKPT_CHECK_TOKENS = 8,     // tokens_hash
    RD_TRAIN_CKPT_CHECK_OPTIMIZER = 16, // opt_slots: the dense optimizer's state continues
};

/** "<root>/<job>/step-%012lld" into out. @return RD_OK or RD_ERR_RANGE (does not fit). */
int rd_train_ckpt_path(const char *root, const char *job, int64_t step, char *out, size_t cap);

/**
 * Hash of what a checkpoint's dense parameters and rows mean: the model config and the configs
 * of the tables it reads (name, dim, optimizer, init_std, admission, ttl), the run seed, and the
 * job's own negative sampling (jc->negatives, hashed only when it samples, so checkpoints of
 * jobs that do not still load; jc may be NULL: no job sampling). A model trained on sampled
 * records has its logits in the sampled space, and a resume or an export under other rates
 * would mix two spaces or serve with the wrong prior correction.
 */
uint64_t
rd_train_ckpt_config_hash(const rd_config *cfg, const rd_job_config *jc, const rd_model_config *mc);

/**
 * The hash of one table's config (name, dim, optimizer, init_std, admit_count, ttl, init_as) as
 * the identity record keeps it in table_hash: `table import --config` checks the config it is
 * given against the checkpoint's record with it.
 */
uint64_t rd_train_ckpt_table_hash(const rd_table_config *tc);

/**
 * Fill the identity record of a run into pos: seed, config_hash and its parts (model_hash, the
 * tables' hashes, sampling_hash), tokens_hash (when the model reads tokens), the job's partition
 * (job_ranks, cfg->train.batch_size, cfg->train.order), the dataset (info, may be NULL: 0)
 * and the dense optimizer (opt_kind, opt_slots; an unknown train.optimizer gives sgd's).
 * Sets has_ident. Leaves the position fields (step, epoch, ...) and the names alone.
 */
void rd_train_ckpt_ident(const rd_config *cfg,
                         const rd_job_config *jc,
                         const rd_model_config *mc,
                         const rd_dataset_info *info,
                         int job_ranks,
                         rd_train_pos *pos);

/**
 * Compare a checkpoint's record `ck` (read from `dir`) with this run's `run`
 * (rd_train_ckpt_ident) on the parts `what` asks for (RD_TRAIN_CKPT_CHECK_*). The message names
 * the checkpoint, what differs and both values. Parts a version-1 checkpoint did not record
 * (ck->has_ident 0) are not checked: the caller warns.
 * @param[in] data_dir  the folder of this run's dataset, named by the dataset message (may be NULL)
 * @return RD_OK, RD_ERR_SCHEMA (config, partition, tokens, optimizer), RD_ERR_CONFIG (dataset)
 */
int rd_train_ckpt_check(const char *dir,
                        const rd_train_pos *ck,
                        const rd_train_pos *run,
                        const char *data_dir,
                        unsigned what,
                        rd_errbuf *eb);

/**
 * The checkpoint's phase must exist in a run of `epochs` batch epochs (cfg.train.epochs): a
 * position in the stream (or at its start, after the last batch epoch) was written by a run of
 * exactly ck->epoch batch epochs, and batch epoch ck->epoch must be one of this run's. Another
 * train.epochs is otherwise accepted (a run in its batch period may be given more epochs).
 * @return RD_OK or RD_ERR_SCHEMA, naming the checkpoint, its phase and both epoch counts
 */
int rd_train_ckpt_check_epochs(const char *dir, const rd_train_pos *ck, int epochs, rd_errbuf *eb);

/**
 * Write <dir>/dense.bin atomically (temp file + fsync + rename).
 * @return RD_OK, RD_ERR_DIVERGED (a parameter or optimizer slot is NaN or inf, named; nothing
 *         written), RD_ERR_IO, RD_ERR_FULL
 */
int rd_train_ckpt_write_dense(const char *dir,
                              const rd_train_pos *pos,
                              const rd_model *m,
                              const rd_dense_optim *opt,
                              rd_errbuf *eb);

/**
 * Read <dir>/dense.bin into a model built from the same config: params and (when opt is not
 * NULL and the model has optimizer slots) opt_state and the optimizer's step count.
 * @param[in]  expect_hash  0 = do not check, else the checkpoint's config hash must equal it
 * @param[out] pos          may be NULL
 * @return RD_OK, RD_ERR_NOTFOUND (no file), RD_ERR_CORRUPT (size, magic, CRC),
 *         RD_ERR_VERSION, RD_ERR_SCHEMA (other n_slab / optimizer slots / config hash), RD_ERR_IO
 */
int rd_train_ckpt_read_dense(const char *dir,
                             uint64_t expect_hash,
                             rd_train_pos *pos,
                             rd_model *m,
                             rd_dense_optim *opt,
                             rd_errbuf *eb);

/** Read only the position record of <dir>/dense.bin (checked like read_dense). */
int rd_train_ckpt_read_pos(const char *dir, rd_train_pos *pos, rd_errbuf *eb);

/**
 * Move the finished `partial` directory to `final`: a previous `final` (e.g. of an earlier run
 * into the same folder) is renamed aside first and removed after the rename, then the parent is
 * fsync'ed. @return RD_OK or RD_ERR_IO
 */
int rd_train_ckpt_commit(const char *partial, const char *final, rd_errbuf *eb);

/** Retention of <root>/<job> after checkpoint `newest` was committed: remove the complete
 *  checkpoints (step-N with a MANIFEST) with a step above `newest` (left by an earlier run in the
 *  same folder), then all but the newest `keep` of the others and, among the older ones, the
 *  newest `keep_starts` whose position is the start of a phase (range_step 0: where jobs in live
 *  distillation resume together when the teacher's target log lacks its targets), then hidden
 *  crash leftovers (.step-N.partial / .old / .deleting). step-N directories without a MANIFEST
 *  are left alone.
 *  @return RD_OK or RD_ERR_IO */
int rd_train_ckpt_prune(
    const char *job_dir, int64_t newest, int keep, int keep_starts, rd_errbuf *eb);

/** The complete checkpoints of <root>/<job>, their steps ascending (*steps NULL and *n 0 when
 *  there are none or the folder is missing); free *steps with rd_free.
 *  @return RD_OK or RD_ERR_IO */
int rd_train_ckpt_list(
    const char *root, const char *job, int64_t **steps, size_t *n, rd_errbuf *eb);

/**
 * Remove every complete checkpoint (step-N with a MANIFEST) of the job folder and the hidden
 * crash leftovers (.step-N.partial / .old / .deleting): a run that does not resume starts its own
 * timeline, so checkpoint_keep counts only its checkpoints and none of an earlier run in the
 * folder can be resumed by mistake. Each one is renamed to .step-N.deleting before it is removed
 * (never a half-removed step-N), newest first. step-N directories without a MANIFEST are left
 * alone, like rd_train_ckpt_prune does; a missing folder is fine.
 * @param[out] removed  the steps removed, ascending (NULL when none); free with rd_free
 * @param[out] n        how many
 * @return RD_OK or RD_ERR_IO (*removed / *n then list what was removed before the failure)
 */
int rd_train_ckpt_clear(const char *job_dir, int64_t **removed, size_t *n, rd_errbuf *eb);

/** The newest complete checkpoint of <root>/<job> into out.
 *  @return RD_OK, RD_ERR_NOTFOUND, RD_ERR_RANGE */
int rd_train_ckpt_latest(const char *root, const char *job, char *out, size_t cap, rd_errbuf *eb);

/** rm -r path (a missing path is fine). @return RD_OK or RD_ERR_IO */
int rd_train_ckpt_rmtree(const char *path, rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_TRAIN_CKPT_H
