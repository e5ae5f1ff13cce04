// trainer.c — one worker rank's training loop (rd/trainer.h): keys -> dedup -> pull -> forward ->
// backward -> allreduce -> push -> dense step, over the batch period, the stream windows
// (evaluated before training on each) and the holdout.
//
// Invariants:
// - every rank of a job runs the same number of steps in every training phase (ranks with no
//   example left take B_r = 0 steps: zero gradients, no push, but allreduce and CLOCK), so the
//   allreduce and the PS's sync steps line up;
// - a step's update is the one of a single rank with all of the step's B_tot examples: dense
//   gradients are scaled by W * B_r / B_tot before the averaging allreduce, row gradients by
//   B_r / B_tot before the push (the PS sums the job's pushes of a step);
// - keys and gradients given to rd_kv_pull / rd_kv_push live in a stage that is not refilled
//   until those requests were waited on (two stages alternate);
// - nothing is allocated inside the step loops (stages, scratch, metrics reserved at create).
// - distillation (rd/trainer.h): teacher and student ranks begin / end the same phase sequence;
//   the owner of a target is a pure function of its record index (owner_of), so a sender already
//   in the next phase and a receiver still in this one agree; between steps and during
//   evaluation both sides progress the transport, so neither waits on the other unboundedly.
// - a teacher and its students resumed from their checkpoints (resume_common_start) all begin
//   the phase sequence at the earliest of their phases; the teacher resends from its target log
//   what it sent from there up to its checkpoint before training on, and each student drops what
//   it trained on before its own, so every record a student trains on after its checkpoint meets
//   its target once.
//
// Workload: the model's forward/backward dominates (sgemm); key building is O(B * (slots + L)),
// dedup is a radix sort of the same count. In sync mode the next batch's pull is sent right after
// this step's CLOCK and is answered while the rank runs the allreduce and the dense optimizer; in
// async mode it is sent before this step's compute.
#include "rd/trainer.h"

#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/dataset.h"
#include "rd/dense_optim.h"
#include "rd/distill.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/log.h"
#include "rd/numfmt.h"
#include "rd/optim.h"
#include "rd/source.h"
#include "rd/tokens.h"
#include "rd/train_ckpt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// A model feature: where its keys are in a record, and the table that embeds it.
typedef struct feat_src {
    rd_feature_src at; // rd_dataset_feature_src
    uint32_t width;    // key slots per example (at.width)
    int table;         // model-local table slot
    uint64_t table_id; // rd_table_salt(): salt of rd_table_key
} feat_src;

// The owner rule of one student job (rd_target_owner_fn context). A pure function of the record:
// the batch period is iterated in train.order, each stream window strided from its first record,
// so a sender and a receiver that are in different phases still agree.
typedef struct owner_ctx {
    const rd_dataset *ds;
    uint64_t batch_end;  // records [0, batch_end) are the batch period
    uint64_t stream_end; // end of the last stream window
    int batch_mode;      // RD_PART_STRIDED or RD_PART_USER
    int n;               // ranks of the student job
} owner_ctx;

// A job's own sampling of its training records (cluster.jobs[].negatives) as a predicate on
// record indices (rd_target_keep_fn context): the rule job_iter_init applies.
typedef struct keep_ctx {
    const rd_dataset *ds;
    uint64_t salt;
    double neg, pos;
    int sampled; // 0: every record is kept
} keep_ctx;

static void keep_init(const rd_trainer *tr, const rd_job_config *j, keep_ctx *k);

// Longest time a teacher's distillation call waits without a credit, besides distill.wait_ms:
// a real limit (a student that credits nothing for that long has stopped); tests shorten it
// (rd_trainer_opts.distill_timeout_ms). The student's wait for the teachers' FIN at close has
// none (distill_setup), so a shortened limit does not reach it (tests/scripts/fin_wait.sh).
#define DISTILL_TIMEOUT_MS 300000

// Everything one batch needs, from record indices to pulled rows and row gradients.
typedef struct stage {
    size_t B;                       // examples in this batch (0..max_batch)
    int64_t t_max;                  // latest timestamp of the batch (stream time of the step)
    uint64_t *rec;                  // (max_batch) record indices
    float *labels;                  // (max_batch)
    float *numeric;                 // (max_batch, n_numeric) or NULL
    int32_t *fidx[RD_MAX_FEATURES]; // (max_batch, width_f): position in raw, then in uniq
    int32_t *sidx;                  // (max_batch, L) history rows, -1 = padding
    uint8_t *slab;                  // (max_batch, L) history labels
    uint64_t *raw[RD_MAX_TABLES];   // (cap_t) table keys in use order
    size_t n_raw[RD_MAX_TABLES];
    uint64_t *uniq[RD_MAX_TABLES]; // (cap_t) sorted unique keys (pulled and pushed)
    uint32_t *inv[RD_MAX_TABLES];  // (cap_t)
    size_t n_uniq[RD_MAX_TABLES];
    float *vals[RD_MAX_TABLES];  // (cap_t, D_t) pulled rows
    float *drows[RD_MAX_TABLES]; // (cap_t, D_t) row gradients (pushed)
    int ts_pull[RD_MAX_TABLES];  // -1 = none in flight
    int ts_push[RD_MAX_TABLES];
    // Instance tokens (IAT stage 2), fetched through the PS ranks with the pull.
    uint64_t *tk_users; // (max_batch) user key of each example
    int64_t *tk_ts;     // (max_batch) its timestamp: tokens strictly before it
    uint64_t *tk_ids;   // (max_batch) its id (tokens.same_time earlier: ties before it too)
    uint64_t *tk_item;  // (max_batch) its item key (the key tokens.search matches)
    float *tk_fetch;    // (max_batch, Pt, d) as fetched: oldest first, left-aligned
    float *tk_flab;     // (max_batch, Pt) labels as fetched
    uint64_t *tk_fitem; // (max_batch, Pt) item keys as fetched (tokens.search), or NULL
    uint32_t *tk_n;     // (max_batch) tokens found
    float *tokens;      // (max_batch, Lt, d) model order: most recent first
    uint8_t *tk_mask;   // (max_batch, Lt)
    uint8_t *tk_lab;    // (max_batch, Lt)
    float *tk_fside;    // (max_batch, Pt, S) side values as fetched (S = tokens.side), or NULL
    float *tk_side;     // (max_batch, Lt, S) model order, or NULL
    int tk_handle;      // fetch in flight, -1 = none
} stage;

struct rd_trainer {
    const rd_comm *comm;
    const rd_config *cfg;
    const rd_job_config *job;
    const rd_model_config *mcfg;
    rd_dataset *ds;
    const rd_dataset_info *info;
    rd_model *model;
    rd_kv *kv;
    rd_dense_optim opt;
    int kv_table[RD_MAX_TABLES]; // model table slot -> KV table index
    feat_src src[RD_MAX_FEATURES];
    uint64_t seq_table_id;
    size_t L;                 // history length (0 without a seq branch)
    rd_history_keys hk;       // the history's table keys and label bits in per-user list order
                              // (rd_dataset_history_keys), or both NULL: read from the records
    int stats_feedback;       // numeric index of seq.stats_feedback, -1 without
    float *item_mean;         // rd_dataset_item_means for seq.stats_residual, else NULL
    int search_attr_on;       // tokens.search_by names an attribute of the item (not the item)
    rd_item_attr search_attr; // its item -> value map: the keys tokens.search compares
    size_t cap[RD_MAX_TABLES];
    size_t max_batch;
    stage st[2];
    void *scratch; // dedup scratch
    size_t scratch_bytes;
    rd_metrics *met;      // this rank's evaluated examples
    rd_metrics *met_warm; // the warm slice
    float *pred;          // (max_batch) evaluation logits (with logit_shift)
    uint64_t *users;      // (max_batch) user ids of the batch
    char metrics_path[RD_PATH_MAX + 64];
    int quiet;
    int distill_timeout_ms; // rd_trainer_opts.distill_timeout_ms, 0 resolved to the default
    int fin_delay_ms;       // rd_trainer_opts.fin_delay_ms (tests)
    // Progress.
    double t_create;
    double t_progress;
    double t_window_line;     // when the last stream window line was printed
    uint32_t windows_unshown; // window lines left out since it (window_line_due)
    uint64_t planned;         // training examples of the whole schedule (job total)
    uint64_t trained;         // training examples done (job total)
    uint64_t trained0;        // of those, done before this launch (restored by --resume)
    double train_s;           // seconds inside training phases (this launch)
    int32_t win_w;            // the stream window being trained, -1 outside one
    double win_s0;            // train_s and trained when window win_w began (this launch)
    uint64_t win_n0;
    double loss_ema;
    int have_loss;
    const char *phase_name;
    // Distillation (see rd/trainer.h).
    owner_ctx own[RD_MAX_JOBS];         // teacher: per student job; student: own[0] = mine
    keep_ctx keep[RD_MAX_JOBS];         // teacher: each student job's sampling; student:
                                        // keep[0] = the teacher job's (records it trains)
    rd_target_sender *snd[RD_MAX_JOBS]; // teacher: one sender per distilled student job
    int n_snd;
    rd_target_recv *rcv; // distilled student
    rd_target_log *tlog;
    int tlog_created;       // job rank 0 of a teacher created tlog (removed if the launch fails)
    rd_target_job_info rji; // replay: the teacher's job record in the log (when rji_rc is RD_OK)
    int rji_rc;             //   RD_OK, or RD_ERR_NOTFOUND (a log of an older build)
    int tgt_role;           // rd_trainer_targets.role
    int tgt_use;   // student: the open phase trains on targets (distill.start_window/_epoch)
    int tgt_phase; // a distillation phase is open
    rd_debias debias;
    rd_debias debias_t;  // the calibration the teacher's logits go through (distill.debias_teacher)
    float *zt;           // (max_batch) projected teacher logits
    uint8_t *has_zt;     // (max_batch)
    uint64_t *sub_rec;   // (max_batch) student, sampled teacher: the records the teacher trains
    float *sub_zt;       // (max_batch) their targets
    uint8_t *sub_has;    // (max_batch)
    uint64_t untargeted; // student: samples the teacher's own sampling drops (no target asked)
    float logit_shift;   // log(rate / pos_rate) of the job's own sampling: its main logit is
                         // in the sampled space; evaluation and rd_trainer_score add this, so
                         // probabilities are those of the data every job reads
    uint64_t step;       // training steps taken (the teacher's target version)
    uint64_t drop_seed;  // models[].dropout: the masks of step s on job rank r come from
                         // rd_mix64(drop_seed + s * W + r); a paired twin (init_as) shares them
    char targets_path[RD_PATH_MAX + 64];
    // Checkpoints (rd/train_ckpt.h).
    char ckpt_root[RD_PATH_MAX]; // "" = none
    int32_t pos_epoch;           // position of the range being trained
    int32_t pos_window;
    int64_t ckpt_step;                // step of the last checkpoint written, -1 = none
    int stop_acked;                   // PS shard 0 was told of the checkpoint on SIGTERM
    double ckpt_t;                    // when it was written (or the trainer created)
    char resume_dir[RD_PATH_MAX * 2]; // "" = fresh start (rd_trainer_opts.resume_dir)
    int resuming;                     // the run continues from rpos
    rd_train_pos rpos;
    // Job rank 0: the SIGUSR1s (this rank's, or passed on by another rank: usr1_collect) that
    // wait for a checkpoint (usr1_pend, their wall-clock times in ms), and those the last
    // checkpoint on SIGUSR1 answered (usr1_done, usr1_lo..usr1_hi).
    int usr1_pend, usr1_done;
    int final_ckpt; // the final checkpoint is written: no step is left (stop_after_final)
    long long usr1_pend_lo, usr1_pend_hi, usr1_lo, usr1_hi;
    rd_trainer_result *res; // the report being filled (rd_trainer_run); windows.tsv reads it
    int n_restored;         // stream windows whose metrics the checkpoint gave back (job rank 0)
    // Jobs in live distillation begin the phase sequence together (resume_common_start).
    char resume_from[RD_PATH_MAX * 2]; // the checkpoint resumed from
    int resume_live;                   // it begins the phases at rs_first with the other such jobs
    int32_t rs_first;                  // the first phase begun (phase_id), <= its checkpoint's
    int rs_starts;                     // resumed at the start of rs_first, common to all such jobs
    int rs_pending;        // teacher: its targets of phases rs_first.. before its checkpoint are
    uint64_t *rs_samples;  //   still to be sent again, a batch at a time through these
    float *rs_logits;      //   (max_batch) buffers, read back from the target log
    uint64_t *rs_versions; //   (max_batch)
    rd_range rs_range;     // student: its checkpoint phase's records; of this rank's, the ones
    uint64_t rs_bound;     //   record rs_bound in its iterator's order were trained on before
    int rs_all;            //   its checkpoint (rs_all: every one) (rd_target_recv_set_consumed)
    // IAT: token client (jobs whose model reads tokens, and the job that builds the store).
    rd_token_client *tok;
    size_t Lt, dt, St; // tokens per example, their dim and side values (0 without the token branch)
    size_t Pt;         // tokens fetched per example: Lt, or the pool of tokens.search
    int tok_job;       // rd_config_token_job: the job that builds the store (-1 = none)
    rd_trainer_tokens tok_stats;
    rd_traffic traffic; // allreduce and targets of this rank (the KV client keeps its own)
};
// "<run.out_dir>/<job>.metrics.jsonl" and "<run.out_dir>/<job>.targets.json" fit whatever the
// config allows (their temporary names go through rd_lmdbx_outfile, 4 KiB): no length check at
// run time, none at config time.
_Static_assert(RD_PATH_MAX + RD_NAME_MAX + sizeof ".metrics.jsonl" <=
                   sizeof((struct rd_trainer *)0)->metrics_path,
               "metrics_path must hold the longest run folder and job name");
_Static_assert(RD_PATH_MAX + RD_NAME_MAX + sizeof ".targets.json" <=
                   sizeof((struct rd_trainer *)0)->targets_path,
               "targets_path must hold the longest run folder and job name");

// ---------------------------------------------------------------------------------------------
// Create / destroy

static int resolve_features(rd_trainer *tr, rd_errbuf *eb) {
    const rd_model *m = tr->model;
    char who[RD_NAME_MAX + 16];
    snprintf(who, sizeof who, "model '%s'", tr->mcfg->name);
    for (int f = 0; f < m->n_features; f++) {
        feat_src *fs = &tr->src[f];
        int rc = rd_dataset_feature_src(tr->ds, m->features[f].field, who, &fs->at, eb);
        if (rc != RD_OK)
            return rc;
        fs->width = fs->at.width;
        fs->table = m->features[f].table;
        fs->table_id = m->tables[fs->table].salt;
    }
    return RD_OK;
}

// A job's own sampling (cluster.jobs[].negatives) that keeps one class of the batch period only
// leaves nothing to learn: every rank finds it alike (the keep rule is a pure function of the
// run seed and the record id) and refuses it before any step.
static int check_job_classes(const rd_trainer *tr, rd_errbuf *eb) {
    const rd_negsample_config *ng = &tr->job->negatives;
    if (ng->rate >= 1.0 && ng->pos_rate >= 1.0)
        return RD_OK; // the dataset itself holds both classes (rd_dataset_prepare)
    rd_range b = rd_dataset_batch(tr->ds);
    uint64_t salt = rd_sample_salt(tr->cfg->run.seed), kept[2] = {0, 0};
    for (uint64_t i = b.begin; i < b.end && !(kept[0] && kept[1]); i++) {
        const rd_record *r = rd_dataset_record(tr->ds, i);
        int pos = r->label > 0.5f;
        kept[pos] += (uint64_t)rd_sample_keep(salt, ng->rate, ng->pos_rate, i, pos);
    }
    if (b.end <= b.begin || (kept[0] && kept[1]))
        return RD_OK;
    return rd_err_set(eb, RD_ERR_EMPTY,
                      "job '%s': its sampling (negatives rate %g, pos_rate %g) keeps %s of the "
                      "batch period's %llu events: training needs both classes; raise the rate",
                      tr->job->name, ng->rate, ng->pos_rate,
                      kept[0] + kept[1] ? (kept[1] ? "positives only" : "negatives only") : "none",
                      (unsigned long long)(b.end - b.begin));
}

// The key of the token fetch length: tokens.search when it sets the pool fetched, else length.
static const char *tok_fetch_key(const rd_model_config *mc) {
    return mc->tokens.search ? "search" : "length";
}

static int model_index(const rd_config *cfg, const rd_model_config *mc) {
    return (int)(mc - cfg->models);
}

double rd__trainer_token_bytes(const rd_config *cfg, const rd_model_config *mc) {
    if (mc->tokens.scheme <= 0)
        return 0;
    // As stage_alloc and the token client allocate them (doubles: a wrong config must give a
    // figure, not a wrapped size_t).
    const double B = cfg->train.batch_size, L = mc->tokens.length;
    const double P = mc->tokens.search ? mc->tokens.search : mc->tokens.length;
    const double d = cfg->tokens.dim, S = rd_tokens_side_width(&cfg->tokens);
    const double item = mc->tokens.search ? 8 : 0;
    double fetched = B * P * (4 * d + 4 + 4 * S + item) + B * (4 + 4 * 8); // + counts, requests
    double staged = B * P * (4 * d + 4 + 4 * S + item + 1) + B * 4;        // the replies (+ mask)
    double picked = B * L * (4 * d + 2 + 4 * S);                           // tokens, mask, labels
    // Two stages (the next step's fetch is in flight while this one trains), each with its own
    // client slot whose staging buffers stay allocated.
    return 2 * (fetched + staged + picked);
}

int rd__trainer_check_token_memory(const rd_config *cfg,
                                   const rd_model_config *mc,
                                   double limit,
                                   rd_errbuf *eb) {
    const char *what = "the given limit";
    if (limit <= 0)
        limit = (double)rd_mem_limit(&what);
    double need = rd__trainer_token_bytes(cfg, mc);
    if (limit <= 0 || need <= limit)
        return RD_OK;
    const double G = 1073741824.0;
    const int m = model_index(cfg, mc);
    const int P = mc->tokens.search ? mc->tokens.search : mc->tokens.length;
    return rd_err_set(
        eb, RD_ERR_NOMEM,
        "model '%s' fetches %d tokens of %d values (tokens.dim) and %d side values per example "
        "(models[%d].tokens.%s) at train.batch_size %d examples a step: its token buffers "
        "(two steps of fetched and picked tokens and the replies they arrive in) need about "
        "%.1f GiB, more than %s (%.1f GiB): lower train.batch_size or models[%d].tokens.%s",
        mc->name, P, cfg->tokens.dim, rd_tokens_side_width(&cfg->tokens), m, tok_fetch_key(mc),
        cfg->train.batch_size, need / G, what, limit / G, m, tok_fetch_key(mc));
}

double rd__trainer_history_keys_budget(double limit, int world_size) {
    // The ranks of this node are at most those of the world. Each taking a quarter of its share
    // of the memory leaves the rest to the model, the step buffers and the page cache of the log
    // that every rank maps.
    return limit / (4.0 * (world_size > 0 ? world_size : 1));
}

// The history's keys and label bits as an array parallel to the per-user lists, when it fits:
// stage_build then reads a history's L entries contiguously instead of L records scattered over
// the log (nearly all of stage_build's time was cache misses on them). 9 bytes per event of the
// log, in every worker process; without it (too large, or out of memory) the records are read as
// before, with the same keys and labels.
static void history_keys_init(rd_trainer *tr) {
    const uint64_t n = tr->info->n_events;
    const char *what = "the memory limit";
    const double limit = (double)rd_mem_limit(&what);
    const double need = (double)n * (sizeof(uint64_t) + 1);
    const double budget = rd__trainer_history_keys_budget(limit, tr->comm->size);
    const double M = 1048576.0;
    const int say = !tr->quiet && tr->comm->job_rank == 0;
    if (n == 0 || limit <= 0 || need > budget) {
        if (say)
            RD_LOG_INFO("job '%s': history keys read from the log's records (an array of them "
                        "would take %.0f MiB a rank, above %.0f MiB: a quarter of %s over %d "
                        "ranks)",
                        tr->job->name, need / M, budget / M, what, tr->comm->size);
        return;
    }
    tr->hk.key = rd_malloc((size_t)n * sizeof(uint64_t));
    tr->hk.pos = rd_malloc((size_t)n);
    if (!tr->hk.key || !tr->hk.pos) {
        rd_free(tr->hk.key);
        rd_free(tr->hk.pos);
        tr->hk.key = NULL;
        tr->hk.pos = NULL;
        if (say)
            RD_LOG_INFO("job '%s': history keys read from the log's records (no memory for an "
                        "array of them, %.0f MiB)",
                        tr->job->name, need / M);
        return;
    }
    double t0 = rd_mono_s();
    rd_dataset_history_keys(tr->ds, tr->seq_table_id, tr->hk.key, tr->hk.pos);
    if (say)
        RD_LOG_INFO("job '%s': history keys from an array in per-user order (%.1f MiB a rank, "
                    "built in %.2f s)",
                    tr->job->name, need / M, rd_mono_s() - t0);
}

static void stage_alloc(rd_trainer *tr, stage *s) {
    const rd_model *m = tr->model;
    size_t Bm = tr->max_batch;
    s->rec = rd_xmalloc(Bm * sizeof *s->rec);
    s->labels = rd_xmalloc(Bm * sizeof *s->labels);
    s->numeric = m->n_numeric ? rd_xmalloc(Bm * m->n_numeric * sizeof(float)) : NULL;
    for (int f = 0; f < m->n_features; f++)
        s->fidx[f] = rd_xmalloc(Bm * tr->src[f].width * sizeof(int32_t));
    if (tr->L) {
        s->sidx = rd_xmalloc(Bm * tr->L * sizeof *s->sidx);
        s->slab = rd_xcalloc(Bm * tr->L, 1);
    }
    for (int t = 0; t < m->n_tables; t++) {
        size_t c = tr->cap[t] ? tr->cap[t] : 1;
        s->raw[t] = rd_xmalloc(c * sizeof(uint64_t));
        s->uniq[t] = rd_xmalloc(c * sizeof(uint64_t));
        s->inv[t] = rd_xmalloc(c * sizeof(uint32_t));
        s->vals[t] = rd_aligned_xalloc(c * m->tables[t].dim * sizeof(float));
        s->drows[t] = rd_aligned_xalloc(c * m->tables[t].dim * sizeof(float));
        s->ts_pull[t] = s->ts_push[t] = -1;
    }
    s->tk_handle = -1;
    if (tr->Lt) {
        size_t n = Bm * tr->Lt, nf = Bm * tr->Pt;
        s->tk_users = rd_xmalloc(Bm * sizeof(uint64_t));
        s->tk_ts = rd_xmalloc(Bm * sizeof(int64_t));
        s->tk_ids = rd_xmalloc(Bm * sizeof(uint64_t));
        s->tk_item = rd_xmalloc(Bm * sizeof(uint64_t));
        s->tk_n = rd_xmalloc(Bm * sizeof(uint32_t));
        s->tk_fetch = rd_xmalloc(nf * tr->dt * sizeof(float));
        s->tokens = rd_xmalloc(n * tr->dt * sizeof(float));
        s->tk_flab = rd_xmalloc(nf * sizeof(float));
        if (tr->mcfg->tokens.search)
            s->tk_fitem = rd_xmalloc(nf * sizeof(uint64_t));
        s->tk_mask = rd_xmalloc(n);
        s->tk_lab = rd_xmalloc(n);
        if (tr->St) {
            s->tk_fside = rd_xmalloc(nf * tr->St * sizeof(float));
            s->tk_side = rd_xmalloc(n * tr->St * sizeof(float));
        }
    }
}

static void stage_free(rd_trainer *tr, stage *s) {
    if (!tr->model)
        return;
    rd_free(s->rec);
    rd_free(s->labels);
    rd_free(s->numeric);
    for (int f = 0; f < tr->model->n_features; f++)
        rd_free(s->fidx[f]);
    rd_free(s->sidx);
    rd_free(s->slab);
    rd_free(s->tk_users);
    rd_free(s->tk_ts);
    rd_free(s->tk_ids);
    rd_free(s->tk_item);
    rd_free(s->tk_fitem);
    rd_free(s->tk_n);
    rd_free(s->tk_fetch);
    rd_free(s->tokens);
    rd_free(s->tk_flab);
    rd_free(s->tk_mask);
    rd_free(s->tk_lab);
    rd_free(s->tk_fside);
    rd_free(s->tk_side);
    for (int t = 0; t < tr->model->n_tables; t++) {
        rd_free(s->raw[t]);
        rd_free(s->uniq[t]);
        rd_free(s->inv[t]);
        rd_aligned_free(s->vals[t]);
        rd_aligned_free(s->drows[t]);
    }
}

// The split of the dataset must be the one the config asks for: a dataset prepared from another
// config would silently evaluate other windows.
static int check_split(const rd_trainer *tr, const char *dir, rd_errbuf *eb) {
    const rd_split_config *sp = &tr->cfg->data.split;
    uint64_t n = tr->info->n_events;
    uint64_t b = (uint64_t)llround((double)n * sp->batch_fraction);
    uint64_t h = n - (uint64_t)llround((double)n * sp->holdout_fraction);
    rd_range rb = rd_dataset_batch(tr->ds), rh = rd_dataset_holdout(tr->ds);
    if ((int)tr->info->n_windows != sp->stream_windows || rb.end != b || rh.begin != h)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "%s: the dataset was prepared with another split (batch [0, %llu), %u "
                          "windows, holdout from %llu) than data.split asks for (batch [0, %llu), "
                          "%d windows, holdout from %llu): run `recdistill prepare` again",
                          dir, (unsigned long long)rb.end, tr->info->n_windows,
                          (unsigned long long)rh.begin, (unsigned long long)b, sp->stream_windows,
                          (unsigned long long)h);
    if (tr->info->source != tr->cfg->data.source)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "%s: the dataset comes from another data.source than the config's: run "
                          "`recdistill prepare` again",
                          dir);
    return RD_OK;
}

int rd_trainer_create(const rd_comm *comm,
                      const rd_config *cfg,
                      const rd_trainer_opts *opts,
                      rd_trainer **out,
                      rd_errbuf *eb) {
    *out = NULL;
    if (!comm || comm->role_kind != RD_ROLE_WORKER || comm->job_index < 0)
        return rd_err_set(eb, RD_ERR_ARG, "trainer: not a worker rank");
    rd_trainer *tr = rd_xcalloc(1, sizeof *tr);
    tr->t_create = rd_mono_s();
    tr->win_w = -1;
    tr->comm = comm;
    tr->cfg = cfg;
    tr->quiet = opts ? opts->quiet : 0;
    tr->distill_timeout_ms =
        opts && opts->distill_timeout_ms > 0 ? opts->distill_timeout_ms : DISTILL_TIMEOUT_MS;
    tr->fin_delay_ms = opts && opts->fin_delay_ms > 0 ? opts->fin_delay_ms : 0;
    tr->job = &cfg->cluster.jobs[comm->job_index];
    tr->logit_shift = (float)log(tr->job->negatives.rate / tr->job->negatives.pos_rate);
    tr->mcfg = rd_config_find_model(cfg, tr->job->model);
    int rc = RD_OK;
    if (!tr->mcfg) {
        rc = rd_err_set(eb, RD_ERR_CONFIG, "job '%s': no model named '%s'", tr->job->name,
                        tr->job->model);
        goto fail;
    }
    tr->tok_job = rd_config_token_job(cfg);
    const char *dir = opts && opts->dataset_dir ? opts->dataset_dir : cfg->data.dir;
    if ((rc = rd_dataset_open(dir, RD_DATASET_NOVERIFY, &tr->ds, eb)) != RD_OK)
        goto fail;
    tr->info = rd_dataset_get_info(tr->ds);
    if ((rc = check_split(tr, dir, eb)) != RD_OK)
        goto fail;
    if ((rc = rd_dataset_stats_feedback(tr->ds, tr->mcfg->name, &tr->mcfg->seq, &tr->stats_feedback,
                                        eb)) != RD_OK)
        goto fail;
    if (tr->mcfg->seq.stats_residual &&
        !(tr->item_mean = rd_dataset_item_means(tr->ds, tr->stats_feedback))) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "job '%s': out of memory for item means", tr->job->name);
        goto fail;
    }
    if (tr->mcfg->tokens.scheme > 0 && tr->mcfg->tokens.search &&
        !rd_field_is_item(tr->mcfg->tokens.search_by)) {
        char who[RD_NAME_MAX + 40];
        snprintf(who, sizeof who, "model '%s': tokens.search_by", tr->mcfg->name);
        if ((rc = rd_dataset_item_attr(tr->ds, tr->mcfg->tokens.search_by, who, &tr->search_attr,
                                       eb)) != RD_OK)
            goto fail;
        tr->search_attr_on = 1;
    }

    // 1. Model and dense optimizer; first whether the token fetches fit this process's memory
    //    (they are allocated with the step buffers, after the model).
    if ((rc = rd__trainer_check_token_memory(cfg, tr->mcfg, 0, eb)) != RD_OK)
        goto fail;
    if ((rc = rd_dense_optim_init(&tr->opt, &cfg->train, eb)) != RD_OK)
        goto fail;
    tr->max_batch = (size_t)cfg->train.batch_size;
    rd_model_opts mo = {
        .tables = cfg->ps.tables,
        .n_tables = cfg->ps.n_tables,
        .max_batch = tr->max_batch,
        .n_numeric = rd_dataset_n_inputs(tr->info) + rd_history_stats_width(&tr->mcfg->seq) +
                     rd_token_summary_width(tr->mcfg->tokens.n_stats,
                                            (size_t)rd_tokens_side_width(&cfg->tokens)),
        .token_dim = (size_t)cfg->tokens.dim,
        .token_side = (size_t)rd_tokens_side_width(&cfg->tokens),
        .causal = 0,
        .opt_slots = rd_dense_optim_slots(tr->opt.kind),
        .seed = cfg->run.seed ^ rd_hash_str(rd_config_job_init_name(cfg, tr->job), 0),
    };
    if ((rc = rd_model_create(tr->mcfg, &mo, &tr->model, eb)) != RD_OK)
        goto fail;
    tr->drop_seed = rd_mix64(mo.seed ^ 0x64726f706f7574ull); // "dropout"
    if ((rc = resolve_features(tr, eb)) != RD_OK || (rc = check_job_classes(tr, eb)) != RD_OK)
        goto fail;
    // A job's sparse state and its checkpoints live on the PS: a model that reads no table (only
    // dense inputs: numeric fields, history statistics) would train to the end and then fail in
    // its first checkpoint, which needs at least one table. Refuse it before any step.
    if (tr->model->n_tables == 0) {
        rc = rd_err_set(eb, RD_ERR_CONFIG,
                        "model '%s' reads no embedding table (no feature and no sequence branch): "
                        "embed at least one feature, e.g. {field: item, table: ...}",
                        tr->mcfg->name);
        goto fail;
    }
    rd_model *m = tr->model;
    tr->L = m->seq_table >= 0 ? m->seq_length : 0;
    if (tr->L) {
        tr->seq_table_id = m->tables[m->seq_table].salt;
        history_keys_init(tr);
    }
    if (tr->mcfg->tokens.scheme > 0) {
        tr->Lt = m->tok_length;
        tr->dt = (size_t)cfg->tokens.dim;
        tr->St = m->tok_side;
        tr->Pt = tr->mcfg->tokens.search ? (size_t)tr->mcfg->tokens.search : tr->Lt;
    }
    if (tr->Lt || tr->tok_job == comm->job_index) {
        rd_token_store_info info;
        if ((rc = rd_token_store_read_manifest(cfg->tokens.store_dir, &info, eb)) != RD_OK)
            goto fail;
        rd_token_client_opts co = {.n_shards = (int)info.n_shards,
                                   .dim = (int)info.dim,
                                   .poll_us_max = cfg->cluster.poll_us_max,
                                   .max_msg_bytes = cfg->ps.max_msg_bytes,
                                   .n_side = (int)info.n_side};
        if ((int)info.dim != cfg->tokens.dim) {
            rc = rd_err_set(eb, RD_ERR_VERSION, "token store %s has dim %u, tokens.dim is %d",
                            cfg->tokens.store_dir, info.dim, cfg->tokens.dim);
            goto fail;
        }
        if ((int)info.n_side != rd_tokens_side_width(&cfg->tokens)) {
            rc = rd_err_set(eb, RD_ERR_VERSION,
                            "token store %s has %u side values per token, tokens.side and "
                            "tokens.side_residual ask for %d",
                            cfg->tokens.store_dir, info.n_side, rd_tokens_side_width(&cfg->tokens));
            goto fail;
        }
        if ((rc = rd_token_client_create(comm, &co, &tr->tok, eb)) != RD_OK)
            goto fail;
    }

    // 2. KV client and the table map.
    if ((rc = rd_kv_create(comm, cfg, &tr->kv, eb)) != RD_OK)
        goto fail;
    size_t cap_max = 0;
    for (int t = 0; t < m->n_tables; t++) {
        int k = rd_kv_table(tr->kv, m->tables[t].name);
        if (k < 0) {
            rc = rd_err_set(eb, RD_ERR_CONFIG, "model '%s': table '%s' is not in ps.tables",
                            tr->mcfg->name, m->tables[t].name);
            goto fail;
        }
        tr->kv_table[t] = k;
        size_t per = 0;
        for (int f = 0; f < m->n_features; f++)
            if (tr->src[f].table == t)
                per += tr->src[f].width;
        if (tr->L && m->seq_table == t)
            per += tr->L;
        tr->cap[t] = per * tr->max_batch;
        if (tr->cap[t] > cap_max)
            cap_max = tr->cap[t];
    }
    if (cap_max >= ((size_t)1 << 31)) {
        rc = rd_err_set(eb, RD_ERR_CONFIG, "train.batch_size %zu x keys per example is too large",
                        tr->max_batch);
        goto fail;
    }

    // 3. Step buffers, allocated once.
    stage_alloc(tr, &tr->st[0]);
    stage_alloc(tr, &tr->st[1]);
    tr->scratch_bytes = rd_kv_dedup_scratch_bytes(cap_max ? cap_max : 1);
    tr->scratch = rd_xmalloc(tr->scratch_bytes);
    tr->pred = rd_xmalloc(tr->max_batch * sizeof *tr->pred);
    tr->users = rd_xmalloc(tr->max_batch * sizeof *tr->users);
    rd_range hr = rd_dataset_holdout(tr->ds);
    size_t eval_cap = (size_t)(hr.end - hr.begin) / (size_t)comm->job_size + 1;
    if (rd_metrics_create(eval_cap, &tr->met) != RD_OK ||
        rd_metrics_create(eval_cap, &tr->met_warm) != RD_OK) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "trainer: metrics accumulators");
        goto fail;
    }

    // 4. Checkpoint root and metrics file path (job rank 0 writes them).
    const char *croot =
        opts && opts->checkpoint_dir ? opts->checkpoint_dir : cfg->ps.checkpoint_dir;
    snprintf(tr->ckpt_root, sizeof tr->ckpt_root, "%s", croot);
    tr->ckpt_step = -1;
    tr->ckpt_t = rd_mono_s();
    if (opts && opts->resume_dir && opts->resume_dir[0])
        snprintf(tr->resume_dir, sizeof tr->resume_dir, "%s", opts->resume_dir);
    const char *mdir = opts && opts->metrics_dir ? opts->metrics_dir : cfg->run.out_dir;
    if (mdir[0]) {
        snprintf(tr->metrics_path, sizeof tr->metrics_path, "%s/%s.metrics.%s", mdir, tr->job->name,
                 strcmp(cfg->output.metrics_format, "jsonl") == 0 ? "jsonl" : "csv");
        snprintf(tr->targets_path, sizeof tr->targets_path, "%s/%s.targets.json", mdir,
                 tr->job->name);
    }
    *out = tr;
    return RD_OK;
fail:
    if (eb && eb->msg[0] && tr->job)
        rd_err_prefix(eb, "job '%s' rank %d: ", tr->job->name, comm->job_rank);
    rd_trainer_destroy(tr);
    return rc;
}

int rd_trainer_destroy(rd_trainer *tr) {
    if (!tr)
        return RD_OK;
    int rc = RD_OK;
    for (int k = 0; k < tr->n_snd; k++)
        rd_target_sender_destroy(tr->snd[k]);
    rd_target_recv_destroy(tr->rcv);
    rd_target_log_close(tr->tlog);
    rd_token_client_destroy(tr->tok);
    rd_free(tr->zt);
    rd_free(tr->has_zt);
    rd_free(tr->sub_rec);
    rd_free(tr->sub_zt);
    rd_free(tr->sub_has);
    rd_free(tr->rs_samples);
    rd_free(tr->rs_logits);
    rd_free(tr->rs_versions);
    if (tr->kv) {
        rc = rd_kv_shutdown(tr->kv);
        rd_kv_destroy(tr->kv);
    }
    stage_free(tr, &tr->st[0]);
    stage_free(tr, &tr->st[1]);
    rd_free(tr->scratch);
    rd_free(tr->pred);
    rd_free(tr->users);
    rd_metrics_destroy(tr->met);
    rd_metrics_destroy(tr->met_warm);
    rd_model_destroy(tr->model);
    rd_free(tr->hk.key);
    rd_free(tr->hk.pos);
    rd_dataset_close(tr->ds);
    rd_free(tr->item_mean);
    rd_item_attr_free(&tr->search_attr);
    rd_free(tr);
    return rc;
}

rd_model *rd_trainer_model(rd_trainer *tr) {
    return tr->model;
}

rd_kv *rd_trainer_kv(rd_trainer *tr) {
    return tr->kv;
}

// ---------------------------------------------------------------------------------------------
// One batch: keys, dedup, pull

// Take up to n records from the iterator into stage s and build its keys and index arrays.
static int stage_build(rd_trainer *tr, stage *s, size_t B, rd_errbuf *eb);

static int stage_fill(rd_trainer *tr, stage *s, rd_dataset_iter *it, size_t n, rd_errbuf *eb) {
    size_t B = 0;
    uint64_t idx;
    while (B < n && rd_dataset_iter_next(it, &idx))
        s->rec[B++] = idx;
    return stage_build(tr, s, B, eb);
}

void rd__trainer_history_fill(const rd_dataset *ds,
                              const rd_history_keys *hk,
                              uint64_t table_id,
                              uint64_t i,
                              size_t L,
                              uint64_t *raw,
                              size_t *n_raw,
                              int32_t *si,
                              uint8_t *sl) {
    size_t nh = 0, n0 = *n_raw;
    // Most recent first: position j holds the (j+1)-th latest earlier event.
    if (hk && hk->key) {
        // The history's entries are contiguous in hk: no record of the log is read.
        uint64_t at = rd_dataset_history_at(ds, i, L, &nh);
        const uint64_t *key = hk->key + at;
        const uint8_t *pos = hk->pos + at;
        for (size_t j = 0; j < nh; j++) {
            raw[n0 + j] = key[nh - 1 - j];
            si[j] = (int32_t)(n0 + j);
            sl[j] = pos[nh - 1 - j];
        }
    } else {
        const uint64_t *h = rd_dataset_history_view(ds, i, L, &nh);
        for (size_t j = 0; j < nh; j++) {
            const rd_record *hr = rd_dataset_record(ds, h[nh - 1 - j]);
            raw[n0 + j] = rd_table_key(table_id, hr->item_key);
            si[j] = (int32_t)(n0 + j);
            sl[j] = hr->label > 0.5f ? 1 : 0;
        }
    }
    for (size_t j = nh; j < L; j++) {
        si[j] = -1;
        sl[j] = 0;
    }
    *n_raw = n0 + nh;
}

// Keys, dedup and index arrays of the B records in s->rec.
static int stage_build(rd_trainer *tr, stage *s, size_t B, rd_errbuf *eb) {
    const rd_model *m = tr->model;
    s->B = B;
    s->t_max = INT64_MIN;
    for (int t = 0; t < m->n_tables; t++)
        s->n_raw[t] = s->n_uniq[t] = 0;
    for (size_t b = 0; b < B; b++) {
        uint64_t i = s->rec[b];
        const rd_record *r = rd_dataset_record(tr->ds, i);
        s->labels[b] = r->label;
        if (r->ts > s->t_max)
            s->t_max = r->ts;
        if (tr->Lt) {
            s->tk_users[b] = r->user_key;
            s->tk_ts[b] = r->ts;
            s->tk_ids[b] = r->id;
            s->tk_item[b] =
                tr->search_attr_on ? rd_item_attr_key(&tr->search_attr, r->item_key) : r->item_key;
        }
        if (m->n_numeric) {
            float *num = s->numeric + b * m->n_numeric;
            size_t n_in = rd_dataset_n_inputs(tr->info);
            memcpy(num, rd_dataset_nums(tr->ds, i), n_in * sizeof(float));
            rd_dataset_history_stats(tr->ds, i, &tr->mcfg->seq, tr->stats_feedback, tr->item_mean,
                                     num + n_in);
        }
        for (int f = 0; f < m->n_features; f++) {
            const feat_src *fs = &tr->src[f];
            int32_t *dst = s->fidx[f] + b * fs->width;
            for (uint32_t k = 0; k < fs->width; k++) {
                uint64_t key = rd_dataset_feature_key(tr->ds, &fs->at, i, k);
                if (!key) {
                    dst[k] = -1;
                    continue;
                }
                int t = fs->table;
                s->raw[t][s->n_raw[t]] = rd_table_key(fs->table_id, key);
                dst[k] = (int32_t)s->n_raw[t]++;
            }
        }
        if (tr->L) {
            int t = m->seq_table;
            rd__trainer_history_fill(tr->ds, &tr->hk, tr->seq_table_id, i, tr->L, s->raw[t],
                                     &s->n_raw[t], s->sidx + b * tr->L, s->slab + b * tr->L);
        }
    }
    // Dedup per table, then turn positions in raw into rows of uniq.
    for (int t = 0; t < m->n_tables; t++) {
        if (!s->n_raw[t])
            continue;
        int rc = rd_kv_dedup(s->raw[t], s->n_raw[t], s->uniq[t], s->inv[t], &s->n_uniq[t],
                             tr->scratch, tr->scratch_bytes);
        if (rc != RD_OK)
            return rd_err_set(eb, rc, "dedup of table '%s': %s", m->tables[t].name,
                              rd_strerror(rc));
    }
    for (int f = 0; f < m->n_features; f++) {
        const uint32_t *inv = s->inv[tr->src[f].table];
        int32_t *x = s->fidx[f];
        for (size_t k = 0; k < B * tr->src[f].width; k++)
            if (x[k] >= 0)
                x[k] = (int32_t)inv[x[k]];
    }
    if (tr->L) {
        const uint32_t *inv = s->inv[m->seq_table];
        for (size_t k = 0; k < B * tr->L; k++)
            if (s->sidx[k] >= 0)
                s->sidx[k] = (int32_t)inv[s->sidx[k]];
    }
    return RD_OK;
}

static int kv_fail(rd_trainer *tr, int rc, const char *what, rd_errbuf *eb) {
    return rd_err_set(eb, rc, "%s: %s (%s)", what, rd_strerror(rc), rd_kv_errmsg(tr->kv));
}

static int stage_pull(rd_trainer *tr, stage *s, rd_errbuf *eb) {
    if (tr->Lt && s->B > 0) {
        rd_token_fetch_out fo = {.tokens = s->tk_fetch,
                                 .labels = s->tk_flab,
                                 .items = s->tk_fitem,
                                 .n_found = s->tk_n,
                                 .side = s->tk_fside};
        int rc = rd_token_client_fetch_start(tr->tok, s->B, s->tk_users, s->tk_ts,
                                             tr->mcfg->tokens.same_time ? s->tk_ids : NULL, tr->Pt,
                                             &fo, &s->tk_handle, eb);
        if (rc != RD_OK) {
            rd_err_prefix(eb,
                          "token fetch of a step (train.batch_size %zu examples, "
                          "models[%d].tokens.%s %zu tokens each): ",
                          tr->max_batch, model_index(tr->cfg, tr->mcfg), tok_fetch_key(tr->mcfg),
                          tr->Pt);
            return rc;
        }
        tr->tok_stats.fetched_requests += s->B;
    }
    for (int t = 0; t < tr->model->n_tables; t++) {
        s->ts_pull[t] = -1;
        if (!s->n_uniq[t])
            continue;
        rd_kv_set_time(tr->kv, s->t_max);
        int rc = rd_kv_pull(tr->kv, tr->kv_table[t], s->uniq[t], s->n_uniq[t], s->vals[t],
                            &s->ts_pull[t]);
        if (rc != RD_OK)
            return kv_fail(tr, rc, "pull", eb);
    }
    return RD_OK;
}

static int stage_wait(rd_trainer *tr, int *ts, rd_errbuf *eb) {
    for (int t = 0; t < tr->model->n_tables; t++) {
        if (ts[t] < 0)
            continue;
        int rc = rd_kv_wait(tr->kv, ts[t]);
        ts[t] = -1;
        if (rc != RD_OK)
            return kv_fail(tr, rc, "wait", eb);
    }
    return RD_OK;
}

// A diverged optimizer shows first in the rows a table serves (NaN or inf): named here, with the
// table and its optimizer, rather than by the NaN loss it would cause (ReLU passes NaN on).
// Checked on every pulled batch (one pass over the rows, small beside the forward pass).
static int
stage_check_rows(const rd_trainer *tr, const stage *s, const char *phase, rd_errbuf *eb) {
    const rd_model *m = tr->model;
    for (int t = 0; t < m->n_tables; t++) {
        size_t n = s->n_uniq[t] * m->tables[t].dim;
        const float *v = s->vals[t];
        for (size_t k = 0; k < n; k++) {
            if (isfinite(v[k]))
                continue;
            const int pi = m->tables[t].ps_index;
            const rd_optim_config *o = &tr->cfg->ps.tables[pi].optim;
            return rd_err_set(eb, RD_ERR_DIVERGED,
                              "%s, step %llu: table '%s' served a row holding %s: its optimizer "
                              "diverged (ps.tables[%d].optimizer: %s, lr %g); lower its lr",
                              phase, (unsigned long long)tr->step, m->tables[t].name,
                              isnan(v[k]) ? "NaN" : "inf", pi, rd_optim_name(o->kind),
                              (double)o->lr);
        }
    }
    return RD_OK;
}

// A step's mean loss above this many nats per example is a numerically broken model, not a bad
// one: a constant predictor of the label rate costs about 1, the distillation term a few more,
// and a logit of 10^4 against its label is no prediction at all.
#define RD_TRAIN_LOSS_DIVERGED 1e4

// A numeric input beyond this magnitude (the threshold of prepare's warning) is named when the
// untrained model's loss is already broken.
#define RD_TRAIN_INPUT_LARGE 1000.0

// The dataset's numeric inputs of the stage's batch beyond RD_TRAIN_INPUT_LARGE, named into
// names ("'price' (|x| up to 1e+06), ..."). @return how many.
static int large_inputs(const rd_trainer *tr, const stage *s, char *names, size_t cap) {
    const rd_model *m = tr->model;
    const uint32_t n_in = rd_dataset_n_inputs(tr->info);
    const rd_dataset_field *fl = rd_dataset_fields(tr->ds);
    size_t len = 0;
    int n_large = 0;
    names[0] = 0;
    for (uint32_t j = 0; s->numeric && j < n_in && j < (uint32_t)m->n_numeric; j++) {
        double big = 0.0;
        for (size_t b = 0; b < s->B; b++) {
            double x = fabs((double)s->numeric[b * m->n_numeric + j]);
            big = isnan(x) || x > big ? x : big;
        }
        if (!(big > RD_TRAIN_INPUT_LARGE))
            continue;
        const char *name = "?";
        for (uint32_t f = 0; f < tr->info->n_fields; f++)
            if (fl[f].kind == RD_FIELD_NUMERIC && fl[f].offset == j)
                name = fl[f].name;
        if (len < cap - 1) {
            int w = snprintf(names + len, cap - len, "%s'%s' (|x| up to %.3g)", n_large ? ", " : "",
                             name, big);
            len += w > 0 ? (size_t)w : 0;
            len = len < cap - 1 ? len : cap - 1;
        }
        n_large++;
    }
    return n_large;
}

// The training loss of a step, NaN, inf or beyond RD_TRAIN_LOSS_DIVERGED: the dense part or a
// table diverged; at the run's first step, before any update, no learning rate is the cause: the
// message names the numeric inputs of the batch that are out of scale instead. Later, inputs out
// of scale in the diverging batch are named too: a standardized field whose batch period barely
// varied meets values of |z| 10^6 in the stream, and "lower the learning rate" sent the user the
// wrong way.
static int check_loss(const rd_trainer *tr, const stage *s, double loss, rd_errbuf *eb) {
    // The loss sums the main tower's, the auxiliary tower's and alpha times the distillation
    // term: each is bounded alike, the last after its T^2 factor. Against soft targets that
    // term does not fall below T^2 times their entropy (ln 2 at T 1000: 6.9e5 nats before any
    // update, however sound the model), so T^2 scales its bound when T > 1.
    double t2 = (double)tr->cfg->distill.temperature * (double)tr->cfg->distill.temperature;
    double terms =
        2.0 + (tr->job->distill ? (double)tr->cfg->distill.alpha * (t2 > 1.0 ? t2 : 1.0) : 0.0);
    if (isfinite(loss) && loss < RD_TRAIN_LOSS_DIVERGED * terms)
        return RD_OK;
    char what[64];
    if (isfinite(loss))
        snprintf(what, sizeof what, "%.3g nats per example", loss);
    else
        snprintf(what, sizeof what, "%s", isnan(loss) ? "NaN" : "inf");
    // Name the dataset's numeric inputs out of scale in this batch.
    char names[512];
    const int n_large = large_inputs(tr, s, names, sizeof names);
    if (tr->step > 0 && n_large)
        return rd_err_set(eb, RD_ERR_DIVERGED,
                          "training diverged at step %llu: the loss is %s, and numeric input%s "
                          "%s of this batch %s out of scale (as the model reads %s, after "
                          "log1p and standardize): set log1p: true on %s or rescale the "
                          "column, and prepare the data again (a standardized field whose batch "
                          "period barely varies meets such values later: prepare warned)",
                          (unsigned long long)tr->step, what, n_large > 1 ? "s" : "", names,
                          n_large > 1 ? "are" : "is", n_large > 1 ? "them" : "it",
                          n_large > 1 ? "them" : "it");
    if (tr->step > 0)
        return rd_err_set(eb, RD_ERR_DIVERGED,
                          "training diverged at step %llu: the loss is %s (train.lr %g, "
                          "train.optimizer %s); lower the learning rate",
                          (unsigned long long)tr->step, what, (double)tr->cfg->train.lr,
                          tr->cfg->train.optimizer);
    // Step 0: the initial model.
    if (n_large)
        return rd_err_set(eb, RD_ERR_DIVERGED,
                          "the untrained model's loss is %s at the first step, before any "
                          "update, so no learning rate is the cause: numeric input%s %s of "
                          "this batch %s out of scale; set standardize: true (or log1p: true) "
                          "on %s in the schema and prepare the data again",
                          what, n_large > 1 ? "s" : "", names, n_large > 1 ? "are" : "is",
                          n_large > 1 ? "them" : "it");
    return rd_err_set(eb, RD_ERR_DIVERGED,
                      "the untrained model's loss is %s at the first step, before any update, "
                      "so no learning rate is the cause: the initial model is numerically "
                      "broken (check the scale of the numeric inputs and the tables' "
                      "init_std)",
                      what);
}

// Complete the stage's token fetch and lay the tokens out as the model reads them: most recent
// first (position 0 = the latest earlier instance, as the item history), padding after.
static int stage_wait_tokens(rd_trainer *tr, stage *s, rd_errbuf *eb) {
    if (s->tk_handle < 0)
        return RD_OK;
    int rc = rd_token_client_wait(tr->tok, s->tk_handle, eb);
    s->tk_handle = -1;
    if (rc != RD_OK)
        return rc;
    const size_t L = tr->Lt, P = tr->Pt, d = tr->dt, S = tr->St;
    for (size_t b = 0; b < s->B; b++) {
        // pick[j]: the fetched slot of the branch's j-th token, most recent first: the latest L,
        // or with tokens.search the latest L whose item is the example's.
        uint32_t pick[RD_TOKEN_PICK_MAX];
        size_t nf = s->tk_n[b] < P ? s->tk_n[b] : P;
        if (tr->search_attr_on) // the fetched item keys become the keys tokens.search_by compares
            for (size_t j = 0; j < nf; j++)
                s->tk_fitem[b * P + j] = rd_item_attr_key(&tr->search_attr, s->tk_fitem[b * P + j]);
        size_t n =
            rd_token_pick(s->tk_fitem ? s->tk_fitem + b * P : NULL, nf, s->tk_item[b], L, pick);
        const float *src = s->tk_fetch + b * P * d;
        float *dst = s->tokens + b * L * d;
        uint8_t *mk = s->tk_mask + b * L, *lb = s->tk_lab + b * L;
        for (size_t j = 0; j < n; j++) {
            memcpy(dst + j * d, src + (size_t)pick[j] * d, d * sizeof(float));
            mk[j] = 1;
            lb[j] = s->tk_flab[b * P + pick[j]] > 0.5f ? 1 : 0;
        }
        if (S) {
            const float *fs = s->tk_fside + b * P * S;
            float *ds = s->tk_side + b * L * S;
            for (size_t j = 0; j < n; j++)
                memcpy(ds + j * S, fs + (size_t)pick[j] * S, S * sizeof(float));
            if (n < L)
                memset(ds + n * S, 0, (L - n) * S * sizeof(float));
        }
        if (n < L) {
            memset(dst + n * d, 0, (L - n) * d * sizeof(float));
            memset(mk + n, 0, L - n);
            memset(lb + n, 0, L - n);
        }
        tr->tok_stats.fetched_tokens += n;
        if (tr->mcfg->tokens.n_stats) {
            // The summaries close the numeric inputs, after the fields and the history statistics.
            const rd_model *m = tr->model;
            size_t w = rd_token_summary_width(tr->mcfg->tokens.n_stats, S);
            rc = rd_token_summary(tr->mcfg->tokens.stats, tr->mcfg->tokens.n_stats, n, lb,
                                  S ? s->tk_side + b * L * S : NULL, S,
                                  s->numeric + (b + 1) * m->n_numeric - w, eb);
            if (rc != RD_OK)
                return rc;
        }
    }
    return RD_OK;
}

static void stage_batch(rd_trainer *tr, stage *s, rd_batch *bt) {
    const rd_model *m = tr->model;
    memset(bt, 0, sizeof *bt);
    bt->B = s->B;
    for (int t = 0; t < m->n_tables; t++) {
        bt->rows[t] = s->vals[t];
        bt->n_rows[t] = s->n_uniq[t];
        bt->drows[t] = s->drows[t];
    }
    for (int f = 0; f < m->n_features; f++) {
        bt->feat_idx[f] = s->fidx[f];
        bt->feat_slots[f] = tr->src[f].width;
    }
    if (tr->L) {
        bt->seq_idx = s->sidx;
        bt->seq_labels = m->seq_with_labels ? s->slab : NULL;
    }
    if (tr->Lt) {
        bt->tokens = s->tokens;
        bt->tok_mask = s->tk_mask;
        bt->tok_labels = s->tk_lab;
        bt->tok_side = s->tk_side;
    }
    bt->numeric = m->n_numeric ? s->numeric : NULL;
    bt->labels = s->labels;
    bt->alpha = 0.0f;
    bt->temperature = 1.0f;
    // distill.aux_task: false holds in every phase of a distilled student: before its targets
    // start (start_epoch / start_window) its aux tower learned the labels, so that tower began
    // distilling from a task-trained state.
    bt->aux_task_off = tr->job->distill && !tr->cfg->distill.aux_task;
}

// ---------------------------------------------------------------------------------------------
// Progress

// A line every train.eval_every steps of a phase, between them one whenever
// output.progress_every_s seconds have passed without one (so slow steps still show), and one at
// the end of each batch epoch; output.progress_every_s 0 turns every progress line off.
static void progress(rd_trainer *tr, const char *phase, int64_t step, int64_t steps, int force) {
    if (tr->quiet || tr->comm->job_rank != 0 || tr->cfg->output.progress_every_s <= 0)
        return;
    double t = rd_mono_s();
    const int64_t every = tr->cfg->train.eval_every;
    int on_step = steps > 0 && every > 0 && step % every == 0;
    if (!force && !on_step && t - tr->t_progress < (double)tr->cfg->output.progress_every_s)
        return;
    tr->t_progress = t;
    double rate = tr->train_s > 0 ? (double)tr->trained / tr->train_s : 0.0;
    double eta = rate > 0 ? (double)(tr->planned - tr->trained) / rate : 0.0;
    char at[48] = "done";
    if (steps > 0)
        snprintf(at, sizeof at, "step %lld/%lld", (long long)step, (long long)steps);
    printf("[%s] %s %s  loss %.4f  %.0f samples/s  ETA %.0fs  (%.0fs elapsed)\n", tr->job->name,
           phase, at, tr->loss_ema, rate, eta, t - tr->t_create);
    fflush(stdout);
}

// Up to this many stream windows, each prints its line ("stream window w: auc ..."); beyond it
// (10,000 windows printed 30,000 lines over three jobs) the first and last windows print theirs,
// and between them one whenever output.progress_every_s seconds have passed since the last
// (none with 0). Every window is in the metrics file and report.json all the same.
#define RD_TRAINER_WINDOW_LINES_ALL 100

static int window_line_due(rd_trainer *tr, uint32_t w, uint32_t K) {
    if (K <= RD_TRAINER_WINDOW_LINES_ALL || w == 0 || w + 1 == K)
        return 1;
    const int every = tr->cfg->output.progress_every_s;
    return every > 0 && rd_mono_s() - tr->t_window_line >= (double)every;
}

// ---------------------------------------------------------------------------------------------
// Phases

// ---------------------------------------------------------------------------------------------
// Distillation targets (rd/trainer.h, rd/distill.h)

static int owner_of(uint64_t sample, void *ctx) {
    const owner_ctx *o = ctx;
    rd_range b = rd_dataset_batch(o->ds);
    if (sample >= o->stream_end || sample < b.begin)
        return -1;
    if (sample < o->batch_end) {
        if (o->batch_mode == RD_PART_USER)
            return rd_shard_of(rd_dataset_record(o->ds, sample)->user_key, o->n);
        return (int)((sample - b.begin) % (uint64_t)o->n);
    }
    // Once per target on both sides: a binary search. The scan over 10,000 windows it replaces
    // cost 3.1 us a target on average, the search 24 ns (bench/bench_window, README).
    int64_t w = rd_dataset_window_of(o->ds, sample);
    if (w < 0)
        return -1;
    return (int)((sample - rd_dataset_window(o->ds, (uint32_t)w).begin) % (uint64_t)o->n);
}

static int keep_of(uint64_t sample, void *ctx) {
    const keep_ctx *k = ctx;
    if (!k->sampled)
        return 1;
    return rd_sample_keep(k->salt, k->neg, k->pos, sample,
                          rd_dataset_record(k->ds, sample)->label > 0.5f);
}

static void keep_init(const rd_trainer *tr, const rd_job_config *j, keep_ctx *k) {
    *k = (keep_ctx){
        .ds = tr->ds,
        .salt = rd_sample_salt(tr->cfg->run.seed),
        .neg = j->negatives.rate,
        .pos = j->negatives.pos_rate,
        .sampled = j->negatives.rate < 1.0 || j->negatives.pos_rate < 1.0,
    };
}

static void owner_init(const rd_trainer *tr, owner_ctx *o, int n) {
    uint32_t K = tr->info->n_windows;
    rd_range b = rd_dataset_batch(tr->ds);
    *o = (owner_ctx){
        .ds = tr->ds,
        .batch_end = b.end,
        .stream_end = K ? rd_dataset_window(tr->ds, K - 1).end : b.end,
        .batch_mode = tr->cfg->train.order == RD_ORDER_USER ? RD_PART_USER : RD_PART_STRIDED,
        .n = n,
    };
}

// Does this job take part in distillation (the roles distill_setup gives: a teacher sending to
// a distilled student of the launch, or a distilled student, live or replaying)?
static int distills(const rd_trainer *tr) {
    const rd_config *cfg = tr->cfg;
    if (tr->job->role != RD_JOB_TEACHER)
        return tr->job->distill;
    if (cfg->distill.replay)
        return 0;
    for (int j = 0; j < cfg->cluster.n_jobs; j++) {
        const rd_job_config *sj = &cfg->cluster.jobs[j];
        if (sj->role == RD_JOB_STUDENT && sj->distill && strcmp(sj->teacher, tr->job->name) == 0)
            return 1;
    }
    return 0;
}

// The dataset a target log's job record must name for this run (sample ids index it).
static void log_data(const rd_trainer *tr, rd_target_job_info *ji) {
    ji->data_events = tr->info->n_events;
    ji->data_crc = tr->info->records_crc;
    ji->has_data = 1;
}

// A job record of the log names another dataset than this run's: its sample ids would join
// unrelated events. `who` names the job the record belongs to.
static int log_data_mismatch(const rd_trainer *tr,
                             const rd_target_job_info *ji,
                             const char *who,
                             rd_errbuf *eb) {
    return rd_err_set(eb, RD_ERR_CONFIG,
                      "target log %s holds the targets of teacher '%s' for another dataset (%llu "
                      "events, records CRC-32C 0x%08x; this run's: %llu events, 0x%08x): its "
                      "sample ids would join unrelated events",
                      tr->cfg->distill.target_log, who, (unsigned long long)ji->data_events,
                      ji->data_crc, (unsigned long long)tr->info->n_events, tr->info->records_crc);
}

static int log_data_differs(const rd_trainer *tr, const rd_target_job_info *ji) {
    return ji->has_data &&
           (ji->data_events != tr->info->n_events || ji->data_crc != tr->info->records_crc);
}

// Teacher rank 0 of the job opens the target log, or creates it (safe when several teacher jobs
// of the launch share it: rd_target_log_open_or_create), the other ranks open it after a
// barrier of the job: LMDB serialises their appends. A log that already holds this teacher's
// targets for another dataset (a target_log path reused across data) is refused.
static int distill_open_log(rd_trainer *tr, rd_errbuf *eb) {
    const char *path = tr->cfg->distill.target_log;
    rd_target_log_opts lo = {.no_sync = 1};
    int rc = RD_OK;
    if (tr->comm->job_rank == 0) {
        rc = rd_target_log_open_or_create(path, &lo, &tr->tlog, &tr->tlog_created, eb);
        if (rc != RD_OK)
            rd_err_prefix(eb, "distill.target_log %s: ", path);
        uint64_t key = rd_target_job_key(tr->job->name);
        rd_target_job_info old;
        if (rc == RD_OK) {
            rc = rd_target_log_get_job(tr->tlog, key, &old, eb);
            if (rc == RD_OK && log_data_differs(tr, &old))
                rc = log_data_mismatch(tr, &old, tr->job->name, eb);
            else if (rc == RD_ERR_NOTFOUND) {
                rd_errbuf_clear(eb);
                rc = RD_OK;
            }
        }
        // A teacher run that does not resume starts its own records: the ones an earlier run of
        // this job name left (passes this run may never write) would otherwise reach a replaying
        // student as this teacher's. One write transaction: a reader sees all of them or none;
        // other jobs' records (another teacher of this launch sharing the log) are untouched.
        if (rc == RD_OK && !tr->resume_dir[0]) {
            uint64_t dropped = 0;
            rc = rd_target_log_drop_job(tr->tlog, key, &dropped, eb);
            if (rc == RD_OK && dropped > 0) {
                printf("[%s] target log %s: removed %llu targets of an earlier run of job '%s'\n",
                       tr->job->name, path, (unsigned long long)dropped, tr->job->name);
                fflush(stdout);
            }
        }
        // How this teacher sampled its records, and on which dataset: a student replaying the
        // log alone needs it to tell the records the teacher never trained on (no target by
        // design) from lost ones, and to refuse a log of other data.
        if (rc == RD_OK) {
            const rd_negsample_config *ng = &tr->job->negatives;
            rd_target_job_info ji = {.neg_rate = ng->rate,
                                     .pos_rate = ng->pos_rate,
                                     .salt = rd_sample_salt(tr->cfg->run.seed)};
            log_data(tr, &ji);
            rc = rd_target_log_put_job(tr->tlog, key, &ji, eb);
        }
    }
    int ok = rc == RD_OK, all = 0;
    RD_MPI_CHECK(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, tr->comm->job));
    if (!all)
        return rc != RD_OK ? rc
                           : rd_err_set(eb, RD_ERR_IO, "%s: job rank 0 could not open it", path);
    if (tr->comm->job_rank != 0)
        rc = rd_target_log_open(path, 1, &lo, &tr->tlog, eb);
    return rc;
}

// A log without the teacher's job record was written by an older build, or the teacher named
// is not in it (a typo, a teacher of another launch): the latter would train with no targets at
// all. Refused when the log holds no target of that teacher.
static int replay_has_targets(rd_trainer *tr, rd_errbuf *eb) {
    uint64_t sample = 0;
    float logit = 0;
    rd_target_out out = {.samples = &sample, .logits = &logit};
    size_t n = 0;
    int rc = rd_target_log_read_range(tr->tlog, rd_target_job_key(tr->job->teacher), 0, UINT64_MAX,
                                      RD_TARGET_ANY_PASS, &out, 1, &n, eb);
    if (rc == RD_ERR_RANGE) // more than one: there are some
        rc = RD_OK, n = 2;
    if (rc != RD_OK)
        return rc;
    if (n == 0)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "target log %s holds no targets of teacher '%s' (student job '%s' names "
                          "it): is that the name of the teacher job that wrote the log?",
                          tr->cfg->distill.target_log, tr->job->teacher, tr->job->name);
    rd_errbuf_clear(eb);
    return RD_OK; // an older build's log: distill_setup warns
}

static int resume_read_targets(rd_trainer *tr, rd_errbuf *eb);
static int resume_mid(const rd_trainer *tr);

// A teacher that sends no targets (no live distilled student in the launch) writes no target log
// and leaves an existing one as it is: when that log holds this job's targets of an earlier
// launch, a replay would read those as this run's. Said once, by job rank 0 (docs/distillation.md).
static void stale_log_warn(const rd_trainer *tr) {
    const char *path = tr->cfg->distill.target_log;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return; // no log: a replay of this run is refused ("no such log"), nothing is misread
    rd_errbuf leb;
    rd_errbuf_clear(&leb);
    rd_target_log *log = NULL;
    rd_target_job_info ji;
    if (rd_target_log_open(path, 0, NULL, &log, &leb) == RD_OK &&
        rd_target_log_get_job(log, rd_target_job_key(tr->job->name), &ji, &leb) == RD_OK)
        RD_LOG_WARN("the target log %s holds targets of an earlier launch of teacher '%s'; this "
                    "launch sends none (no live distilled student), so it leaves them: a replay "
                    "of this log reads the earlier teacher's targets, not this run's",
                    path, tr->job->name);
    if (log)
        rd_target_log_close(log);
}

// Before any job writes: the teacher opens (or creates) its target log and checks that the log's
// record of it names this run's dataset (and, resumed inside a phase, reads back the targets it
// sent in that phase before its checkpoint); a replaying student opens the log and reads the
// teacher's record. What fails here fails the launch before anything is trained (collective
// over the job for a teacher: the log's barrier).
static int distill_logs(rd_trainer *tr, rd_errbuf *eb) {
    const rd_distill_config *dc = &tr->cfg->distill;
    if (tr->job->role == RD_JOB_TEACHER) {
        if (!dc->replay && dc->target_log[0] && !distills(tr) && tr->comm->job_rank == 0)
            stale_log_warn(tr);
        if (dc->replay || !dc->target_log[0] || !distills(tr))
            return RD_OK;
        int rc = distill_open_log(tr, eb);
        if (rc == RD_OK && resume_mid(tr))
            rc = resume_read_targets(tr, eb);
        return rc;
    }
    if (!tr->job->distill || !dc->replay)
        return RD_OK;
    int rc = rd_target_log_open(dc->target_log, 0, NULL, &tr->tlog, eb);
    if (rc == RD_OK) {
        rc = tr->rji_rc =
            rd_target_log_get_job(tr->tlog, rd_target_job_key(tr->job->teacher), &tr->rji, eb);
        if (rc == RD_OK && log_data_differs(tr, &tr->rji))
            rc = log_data_mismatch(tr, &tr->rji, tr->job->teacher, eb);
        else if (rc == RD_OK && !tr->rji.has_data && tr->comm->job_rank == 0)
            RD_LOG_WARN("distill.replay: the target log does not say on which dataset teacher "
                        "'%s' trained (a log of an older build): make sure it is this run's",
                        tr->job->teacher);
        if (rc == RD_ERR_NOTFOUND) { // no job record: a log of an older build, or no such job
            rd_errbuf_clear(eb);
            rc = replay_has_targets(tr, eb);
        }
    }
    if (rc != RD_OK)
        rd_err_prefix(eb, "distill.replay: ");
    return rc;
}

// Create this rank's senders or receiver (collective over the job: the log's barrier).
static int distill_setup(rd_trainer *tr, rd_errbuf *eb) {
    const rd_config *cfg = tr->cfg;
    const rd_distill_config *dc = &cfg->distill;
    const rd_comm *c = tr->comm;
    int rc = RD_OK;
    if (tr->job->role == RD_JOB_TEACHER) {
        if (!distills(tr))
            return RD_OK; // no distilled student of this teacher, or they replay the target log
        for (int j = 0; j < cfg->cluster.n_jobs; j++) { // the log is open (distill_logs)
            const rd_job_config *sj = &cfg->cluster.jobs[j];
            if (!(sj->role == RD_JOB_STUDENT && sj->distill &&
                  strcmp(sj->teacher, tr->job->name) == 0))
                continue;
            int n = c->job_ranks[j];
            int *ranks = rd_xmalloc((size_t)n * sizeof *ranks);
            for (int k = 0; k < n; k++)
                ranks[k] = c->job_first[j] + k;
            owner_ctx *o = &tr->own[tr->n_snd];
            owner_init(tr, o, n);
            keep_ctx *kc = &tr->keep[tr->n_snd];
            keep_init(tr, sj, kc);
            rd_target_sender_opts so = {
                .comm = c->world,
                .n_students = n,
                .students = ranks,
                .sender_index = c->job_rank,
                .owner = owner_of,
                .owner_ctx = o,
                .max_in_flight = dc->max_in_flight,
                .batch = dc->batch,
                .poll_us_max = cfg->cluster.poll_us_max,
                .timeout_ms = tr->distill_timeout_ms + dc->wait_ms,
                .log = tr->n_snd == 0 ? tr->tlog : NULL, // each target logged once
                .job = rd_target_job_key(tr->job->name),
                .keep = kc->sampled ? keep_of : NULL,
                .keep_ctx = kc,
            };
            rc = rd_target_sender_create(&so, &tr->snd[tr->n_snd], eb);
            rd_free(ranks);
            if (rc != RD_OK)
                return rc;
            tr->n_snd++;
        }
        tr->tgt_role = 1;
    } else if (tr->job->distill) {
        if ((rc = rd_debias_from_config(&cfg->data, &tr->job->negatives, dc, &tr->debias, eb)) !=
            RD_OK)
            return rc;
        // The records the teacher's own sampling drops get no target: never asked for. A
        // replay without the teacher job learns its sampling from the target log.
        const rd_job_config *tjob = rd_config_find_job(cfg, tr->job->teacher);
        rd_negsample_config tneg = {1.0, 1.0};
        if (tjob) {
            keep_init(tr, tjob, &tr->keep[0]);
            tneg = tjob->negatives;
        }
        if (dc->replay) { // the log is open and its job record read (distill_logs)
            rd_target_job_info ji = tr->rji;
            rc = tr->rji_rc;
            if (rc == RD_OK) {
                // The log describes the targets it holds: its rates win over the config's.
                if (tjob && (ji.neg_rate != tneg.rate || ji.pos_rate != tneg.pos_rate) &&
                    c->job_rank == 0)
                    RD_LOG_WARN("distill.replay: teacher job '%s' of this config samples %g / "
                                "%g, but the run that wrote the target log sampled %g / %g: "
                                "the log's rates are used",
                                tr->job->teacher, tneg.rate, tneg.pos_rate, ji.neg_rate,
                                ji.pos_rate);
                tneg = (rd_negsample_config){ji.neg_rate, ji.pos_rate};
                tr->keep[0] = (keep_ctx){.ds = tr->ds,
                                         .salt = ji.salt,
                                         .neg = ji.neg_rate,
                                         .pos = ji.pos_rate,
                                         .sampled = ji.neg_rate < 1.0 || ji.pos_rate < 1.0};
            } else if (rc == RD_ERR_NOTFOUND && !tjob && c->job_rank == 0) {
                RD_LOG_WARN("distill.replay: the target log does not say how teacher '%s' "
                            "sampled (a log of an older build): records it dropped count as "
                            "missing",
                            tr->job->teacher);
            }
            rc = RD_OK;
        }
        tr->debias_t = tr->debias;
        if (dc->debias_teacher == RD_DEBIAS_TEACHER &&
            (rc = rd_debias_from_config(&cfg->data, &tneg, dc, &tr->debias_t, eb)) != RD_OK)
            return rc;
        owner_ctx *o = &tr->own[0];
        owner_init(tr, o, c->job_size);
        rd_target_recv_opts ro = {
            .student_index = c->job_rank,
            .owner = owner_of,
            .owner_ctx = o,
            .max_in_flight = dc->max_in_flight,
            .batch = dc->batch,
            .poll_us_max = cfg->cluster.poll_us_max,
            .wait_ms = dc->wait_ms,
            // No limit on the wait for the teachers' FIN at close: a student whose bounded
            // waits ran out (distill.wait_ms, or a teacher step longer than it) finishes ahead of
            // its teacher by whatever the teacher still has to train and evaluate, which may
            // be far above any fixed limit; a teacher that fails or dies ends the launch.
            .timeout_ms = 0,
            .job = rd_target_job_key(tr->job->teacher),
        };
        int *ranks = NULL;
        if (dc->replay) {
            ro.replay = tr->tlog; // opened above
            tr->tgt_role = 3;
        } else {
            const rd_job_config *tj = rd_config_find_job(cfg, tr->job->teacher);
            int tjx = tj ? (int)(tj - cfg->cluster.jobs) : -1;
            if (tjx < 0)
                return rd_err_set(eb, RD_ERR_CONFIG, "teacher job '%s' is not in this launch",
                                  tr->job->teacher);
            int n = c->job_ranks[tjx];
            ranks = rd_xmalloc((size_t)n * sizeof *ranks);
            for (int k = 0; k < n; k++)
                ranks[k] = c->job_first[tjx] + k;
            ro.comm = c->world;
            ro.n_teachers = n;
            ro.teachers = ranks;
            tr->tgt_role = 2;
        }
        rc = rd_target_recv_create(&ro, &tr->rcv, eb);
        rd_free(ranks);
        if (rc != RD_OK)
            return rc;
        tr->zt = rd_xmalloc(tr->max_batch * sizeof *tr->zt);
        tr->has_zt = rd_xcalloc(tr->max_batch, 1);
        if (tr->keep[0].sampled) {
            tr->sub_rec = rd_xmalloc(tr->max_batch * sizeof *tr->sub_rec);
            tr->sub_zt = rd_xmalloc(tr->max_batch * sizeof *tr->sub_zt);
            tr->sub_has = rd_xcalloc(tr->max_batch, 1);
        }
    }
    return RD_OK;
}

// Begin a phase on both sides (same sequence everywhere: see rd/trainer.h).
static int distill_begin(rd_trainer *tr, uint32_t pass, int32_t window, rd_errbuf *eb) {
    int rc = RD_OK;
    for (int k = 0; k < tr->n_snd; k++) {
        if ((rc = rd_target_sender_begin(tr->snd[k], pass, window, eb)) != RD_OK)
            return rc;
    }
    if (tr->rcv) {
        if ((rc = rd_target_recv_begin(tr->rcv, pass, window, eb)) != RD_OK)
            return rc;
        const rd_distill_config *dc = &tr->cfg->distill;
        tr->tgt_use = window >= dc->start_window && (window >= 0 || (int)pass >= dc->start_epoch);
        if (!tr->tgt_use)
            rd_target_recv_skip(tr->rcv);
    }
    tr->tgt_phase = tr->n_snd > 0 || tr->rcv;
    return RD_OK;
}

static int distill_end(rd_trainer *tr, rd_errbuf *eb) {
    int rc = RD_OK;
    if (!tr->tgt_phase)
        return RD_OK;
    tr->tgt_phase = 0;
    // A phase that used no targets (before distill.start_epoch / start_window) did not wait for
    // the teacher: wait for its end of the phase now, so that the student does not reach the
    // first phase that uses targets far ahead of the teacher (its bounded waits would then run
    // out and those samples would train without targets). The phase's targets count as unused.
    // No time limit (a teacher's phase may be long), but an end of phase that can never come (a
    // rejected end-of-phase message, a teacher closed without it) is an error naming the teacher.
    if (tr->rcv && !tr->tgt_use && (rc = rd_target_recv_wait_phase(tr->rcv, 0, eb)) != RD_OK)
        return rc;
    for (int k = 0; k < tr->n_snd; k++)
        if ((rc = rd_target_sender_end(tr->snd[k], eb)) != RD_OK)
            return rc;
    if (tr->rcv)
        rc = rd_target_recv_end(tr->rcv, eb);
    tr->tgt_use = 0;
    return rc;
}

// Between steps and during evaluation: let credits and targets flow; never waits. A malformed
// message is dropped and counted by the receiver: a warning, not a failure. A stream that lost a
// teacher's end of phase (RD_ERR_STATE) fails: the phase could never complete.
static int distill_progress(rd_trainer *tr, rd_errbuf *eb) {
    int rc;
    for (int k = 0; k < tr->n_snd; k++)
        if ((rc = rd_target_sender_progress(tr->snd[k], eb)) != RD_OK)
            return rc;
    if (tr->rcv && (rc = rd_target_recv_progress(tr->rcv, eb)) != RD_OK) {
        if (rc != RD_ERR_PROTO)
            return rc;
        if (eb->msg[0])
            RD_LOG_WARN("job '%s': %s", tr->job->name, eb->msg);
        eb->msg[0] = 0;
    }
    return RD_OK;
}

// Student: the targets of the stage's records into bt (projected through the calibration).
static int distill_get(rd_trainer *tr, const stage *s, rd_batch *bt, rd_errbuf *eb) {
    if (!tr->rcv)
        return RD_OK;
    if (!tr->tgt_use || s->B == 0)
        return distill_progress(tr, eb);
    int rc;
    if (!tr->keep[0].sampled) {
        rc = rd_target_recv_get(tr->rcv, s->B, s->rec, tr->zt, NULL, tr->has_zt, eb);
    } else {
        // Ask only for the records the teacher trains; the others have no target.
        size_t m = 0;
        for (size_t i = 0; i < s->B; i++)
            if (keep_of(s->rec[i], &tr->keep[0]))
                tr->sub_rec[m++] = s->rec[i];
        tr->untargeted += s->B - m;
        rc = m ? rd_target_recv_get(tr->rcv, m, tr->sub_rec, tr->sub_zt, NULL, tr->sub_has, eb)
               : distill_progress(tr, eb);
        for (size_t i = 0, k = 0; i < s->B; i++) {
            int kept = k < m && tr->sub_rec[k] == s->rec[i];
            tr->zt[i] = kept ? tr->sub_zt[k] : 0.0f;
            tr->has_zt[i] = kept ? tr->sub_has[k] : 0;
            k += (size_t)kept;
        }
    }
    if (rc == RD_ERR_PROTO) {
        if (eb->msg[0])
            RD_LOG_WARN("job '%s': %s", tr->job->name, eb->msg);
        eb->msg[0] = 0;
    } else if (rc != RD_OK) {
        return rc;
    }
    rd_debias_logit_forward(tr->zt, tr->zt, &tr->debias_t, s->B);
    bt->teacher_logits = tr->zt;
    bt->has_target = tr->has_zt;
    bt->alpha = tr->cfg->distill.alpha;
    bt->temperature = tr->cfg->distill.temperature;
    bt->calib = rd_debias_is_identity(&tr->debias) ? NULL : &tr->debias;
    bt->aux_task_off = !tr->cfg->distill.aux_task;
    return RD_OK;
}

// Teacher: the raw logits of this step's forward pass, before the update.
static int distill_emit(rd_trainer *tr, const stage *s, rd_errbuf *eb) {
    int rc;
    for (int k = 0; k < tr->n_snd; k++) {
        if (s->B > 0 && (rc = rd_target_sender_emit(tr->snd[k], s->B, s->rec,
                                                    tr->model->logits_main, tr->step, eb)) != RD_OK)
            return rc;
        if ((rc = rd_target_sender_flush(tr->snd[k], eb)) != RD_OK)
            return rc;
    }
    return RD_OK;
}

// Close the transport (bounded waits), then sum the counters over the job.
static int distill_finish(rd_trainer *tr, rd_trainer_result *res, rd_errbuf *eb) {
    int rc = RD_OK;
    if (tr->n_snd > 0 && tr->fin_delay_ms > 0) {
        // A test's teacher slow to finish: its students wait for the FIN this long.
        RD_LOG_INFO("job '%s': holding the FIN for %d ms (RD_TEST_FIN_DELAY_MS)", tr->job->name,
                    tr->fin_delay_ms);
        struct timespec ts = {tr->fin_delay_ms / 1000, (long)(tr->fin_delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    for (int k = 0; k < tr->n_snd && rc == RD_OK; k++)
        rc = rd_target_sender_close(tr->snd[k], eb);
    if (tr->rcv && rc == RD_OK) {
        // Live: a wait without a time limit, so say when it begins and how long it took (a
        // student idle at its end is waiting for a teacher still evaluating; fin_wait.sh).
        double t0 = rd_mono_s();
        if (tr->tgt_role == 2)
            RD_LOG_INFO("job '%s': waiting for the FIN of job '%s' (no time limit)", tr->job->name,
                        tr->job->teacher);
        rc = rd_target_recv_close(tr->rcv, eb);
        if (tr->tgt_role == 2 && rc == RD_OK)
            RD_LOG_INFO("job '%s': the FIN of job '%s' after %.0f ms", tr->job->name,
                        tr->job->teacher, (rd_mono_s() - t0) * 1e3);
    }
    if (rc != RD_OK) {
        rd_err_prefix(eb, "distillation targets: ");
        return rc;
    }
    uint64_t v[11] = {0};
    rd_target_stats st;
    for (int k = 0; k < tr->n_snd; k++) {
        rd_target_sender_stats(tr->snd[k], &st);
        v[0] += st.sent;
        v[1] += st.logged;
        v[9] += st.unsampled;
        rd_traffic_count(&tr->traffic, RD_CHAN_TARGETS, 0, st.messages, st.bytes);
        rd_traffic_count(&tr->traffic, RD_CHAN_TARGETS, 1, st.credits,
                         st.credits * RD_TARGET_CREDIT_BYTES);
    }
    if (tr->rcv) {
        rd_target_recv_stats(tr->rcv, &st);
        rd_traffic_count(&tr->traffic, RD_CHAN_TARGETS, 1, st.messages, st.bytes);
        rd_traffic_count(&tr->traffic, RD_CHAN_TARGETS, 0, st.credits,
                         st.credits * RD_TARGET_CREDIT_BYTES);
        v[2] = st.received;
        v[3] = st.joined;
        v[4] = st.late;
        v[5] = st.missing;
        v[6] = st.replayed;
        v[7] = st.unused;
        v[8] = st.duplicates;
        v[10] = tr->untargeted;
    }
    uint64_t sum[11];
    RD_MPI_CHECK(MPI_Allreduce(v, sum, 11, MPI_UINT64_T, MPI_SUM, tr->comm->job));
    rd_trainer_targets *t = &res->targets;
    t->role = tr->tgt_role;
    t->sent = sum[0];
    t->logged = sum[1];
    t->received = sum[2];
    t->joined = sum[3];
    t->late = sum[4];
    t->missing = sum[5];
    t->replayed = sum[6];
    t->unused = sum[7];
    t->duplicates = sum[8];
    t->unsampled = sum[9];
    t->untargeted = sum[10];
    // Samples that trained without their target are in report.json; say it where it is seen.
    uint64_t asked = t->joined + t->replayed + t->missing;
    if (tr->comm->job_rank == 0 && t->missing > 0 && t->role == 3)
        RD_LOG_WARN("distill.replay: %llu of %llu samples found no target of teacher '%s' in %s "
                    "and trained on labels only: the teacher's run did not write them (it was "
                    "still running, stopped, or trained on other records)",
                    (unsigned long long)t->missing, (unsigned long long)asked, tr->job->teacher,
                    tr->cfg->distill.target_log);
    else if (tr->comm->job_rank == 0 && t->missing > 0 && t->role == 2)
        RD_LOG_WARN("job '%s': %llu of %llu samples got no target from teacher '%s' within "
                    "distill.wait_ms (%d ms) and trained on labels only (%llu targets came late)",
                    tr->job->name, (unsigned long long)t->missing, (unsigned long long)asked,
                    tr->job->teacher, tr->cfg->distill.wait_ms, (unsigned long long)t->late);
    return RD_OK;
}

void rd_trainer_targets_json(FILE *f, const rd_trainer_targets *t) {
    static const char *const roles[] = {"none", "teacher", "student", "replay"};
    fprintf(f,
            "\"role\": \"%s\", \"sent\": %llu, \"logged\": %llu, \"received\": %llu, "
            "\"joined\": %llu, \"late\": %llu, \"missing\": %llu, \"replayed\": %llu, "
            "\"unused\": %llu, \"duplicates\": %llu, \"unsampled\": %llu, \"untargeted\": %llu",
            roles[t->role >= 0 && t->role <= 3 ? t->role : 0], (unsigned long long)t->sent,
            (unsigned long long)t->logged, (unsigned long long)t->received,
            (unsigned long long)t->joined, (unsigned long long)t->late,
            (unsigned long long)t->missing, (unsigned long long)t->replayed,
            (unsigned long long)t->unused, (unsigned long long)t->duplicates,
            (unsigned long long)t->unsampled, (unsigned long long)t->untargeted);
}

// Job rank 0: "<job>.targets.json" (written atomically).
static int write_targets(const rd_trainer *tr, const rd_trainer_targets *t, rd_errbuf *eb) {
    if (!tr->targets_path[0])
        return RD_OK;
    return rd_trainer_write_targets(tr->job->name, t, tr->targets_path, eb);
}

int rd_trainer_write_targets(const char *job,
                             const rd_trainer_targets *t,
                             const char *path,
                             rd_errbuf *eb) {
    if (t->role == 0)
        return RD_OK;
    rd_lmdbx_outfile of;
    int rc = rd_lmdbx_outfile_open(path, &of, eb);
    if (rc != RD_OK)
        return rc;
    fprintf(of.f, "{\"job\": \"%s\", ", job);
    rd_trainer_targets_json(of.f, t);
    fputs("}\n", of.f);
    return rd_lmdbx_outfile_commit(&of, eb); // unique temporary name, fsync, rename
}

// The job's training iterator over `range`: this rank's share, through the job's own sampling
// (cluster.jobs[].negatives).
static void job_iter_init(rd_trainer *tr, rd_dataset_iter *it, rd_range range, int mode) {
    rd_dataset_iter_init(it, tr->ds, range, mode, tr->comm->job_rank, tr->comm->job_size);
    const rd_negsample_config *ng = &tr->job->negatives;
    rd_dataset_iter_sample(it, rd_sample_salt(tr->cfg->run.seed), ng->rate, ng->pos_rate);
}

// My examples of `range` in `mode` and the job's per-rank counts (collective over the job).
static void phase_counts(rd_trainer *tr, rd_range range, int mode, int64_t *counts) {
    rd_dataset_iter it;
    job_iter_init(tr, &it, range, mode);
    int64_t mine = 0;
    uint64_t idx;
    if (mode == RD_PART_STRIDED && !it.sampled) {
        uint64_t n = range.end > range.begin ? range.end - range.begin : 0;
        uint64_t r = (uint64_t)tr->comm->job_rank, W = (uint64_t)tr->comm->job_size;
        mine = n > r ? (int64_t)((n - r + W - 1) / W) : 0;
    } else {
        while (rd_dataset_iter_next(&it, &idx))
            mine++;
    }
    RD_MPI_CHECK(MPI_Allgather(&mine, 1, MPI_INT64_T, counts, 1, MPI_INT64_T, tr->comm->job));
}

static size_t batch_of(int64_t n, int64_t s, size_t B) {
    int64_t left = n - s * (int64_t)B;
    return left <= 0 ? 0 : (left < (int64_t)B ? (size_t)left : B);
}

// ---------------------------------------------------------------------------------------------
// Resuming jobs in live distillation (resume_common_start, rd/distill.h "Resume inside a phase")

// Phases are numbered 0..E-1 (batch epochs), E..E+K-1 (stream windows); E+K is the end of the
// schedule. A checkpoint's phase is the one its position is in (a phase start counts for the
// phase it starts).
static int32_t phase_id(const rd_trainer *tr, int32_t epoch, int32_t window) {
    return window < 0 ? epoch : tr->cfg->train.epochs + window;
}

// The (epoch, window) of phase id p.
static void phase_of_id(const rd_trainer *tr, int32_t p, int32_t *epoch, int32_t *window) {
    const int32_t E = tr->cfg->train.epochs;
    *epoch = p < E ? p : E;
    *window = p < E ? -1 : p - E;
}

// The records and partition of phase (epoch, window): the batch period in train.order, or one
// stream window, strided.
static void phase_range(const rd_trainer *tr, int32_t window, rd_range *range, int *mode) {
    if (window < 0) {
        *range = rd_dataset_batch(tr->ds);
        *mode = tr->cfg->train.order == RD_ORDER_USER ? RD_PART_USER : RD_PART_STRIDED;
    } else {
        *range = rd_dataset_window(tr->ds, (uint32_t)window);
        *mode = RD_PART_STRIDED;
    }
}

// "batch epoch 2/2", "stream window 1/3": the phase of (epoch, window).
static void phase_text(const rd_trainer *tr, int32_t epoch, int32_t window, char *buf, size_t cap) {
    if (window < 0)
        snprintf(buf, cap, "batch epoch %d/%d", epoch + 1, tr->cfg->train.epochs);
    else
        snprintf(buf, cap, "stream window %d/%u", window + 1, tr->info->n_windows);
}

// This rank's records of phase id p that it trained on before its checkpoint are the first
// *limit of this iterator: all of a phase before the checkpoint's, those of the steps the
// checkpoint holds in its own phase (the records train_range skips).
static void resume_cut_iter(rd_trainer *tr, int32_t p, rd_dataset_iter *it, uint64_t *limit) {
    rd_range range;
    int mode;
    int32_t e, w;
    phase_of_id(tr, p, &e, &w);
    phase_range(tr, w, &range, &mode);
    uint64_t B = tr->max_batch, t = (uint64_t)tr->rpos.range_step;
    if (p < phase_id(tr, tr->rpos.epoch, tr->rpos.window))
        *limit = UINT64_MAX;
    else
        *limit = t > UINT64_MAX / B ? UINT64_MAX : t * B;
    job_iter_init(tr, it, range, mode);
}

// One target the teacher sent in phase (epoch, window) before its checkpoint, from the target
// log by (record, pass) as replay reads it. A missing or wrong one names the checkpoint, the log
// and the record: the launch cannot give the students their targets.
static int resume_log_get(rd_trainer *tr,
                          int32_t epoch,
                          int32_t window,
                          uint64_t rec,
                          float *logit,
                          uint64_t *version,
                          rd_errbuf *eb) {
    const uint32_t pass = window < 0 ? (uint32_t)epoch : 0;
    int32_t w = 0;
    rd_errbuf leb;
    rd_errbuf_clear(&leb);
    int rc = rd_target_log_get(tr->tlog, rd_target_job_key(tr->job->name), rec, pass, logit,
                               version, &w, &leb);
    if (rc == RD_OK && w != window)
        rc = rd_err_set(&leb, RD_ERR_CORRUPT, "its record is of window %d", w);
    if (rc == RD_OK)
        return RD_OK;
    // Where the checkpoint is: inside a phase, at the start of one, or at the end of the schedule
    // (a teacher phases ahead of its students resends whole phases from any of them).
    char ph[64], at[96], cur[64];
    phase_text(tr, tr->rpos.epoch, tr->rpos.window, cur, sizeof cur);
    if (tr->rpos.window >= (int32_t)tr->info->n_windows)
        snprintf(at, sizeof at, "at the end of the schedule");
    else
        snprintf(at, sizeof at, "%s %s", tr->rpos.range_step > 0 ? "inside" : "at the start of",
                 cur);
    phase_text(tr, epoch, window, ph, sizeof ph);
    int nf = rc == RD_ERR_NOTFOUND;
    // Checkpoints at phase starts do not avoid the resend (a teacher phases ahead still sends
    // whole phases again): only a log without the teacher's targets does (resume_common_start).
    return rd_err_set(eb, rc,
                      "--resume: %s is %s, and the teacher sends its students again the "
                      "targets it sent in %s before it, from distill.target_log %s: the "
                      "log %s record %llu (pass %u)%s%s (was it removed, or written by another "
                      "run?); to resume without them, name a distill.target_log that holds no "
                      "targets of job '%s': the jobs in live distillation then resume from the "
                      "newest phase start that they all have a checkpoint at under %s",
                      tr->resume_from, at, ph, tr->cfg->distill.target_log,
                      nf ? "holds no target of" : "has a bad target of", (unsigned long long)rec,
                      pass, nf ? "" : ": ", nf ? "" : leb.msg, tr->job->name, tr->resume_dir);
}

// Does this job go through phases before its checkpoint's position, or resume inside one (a
// teacher then has targets to send again, a student targets to drop)?
static int resume_mid(const rd_trainer *tr) {
    return tr->resume_live && (tr->rpos.range_step > 0 ||
                               tr->rs_first < phase_id(tr, tr->rpos.epoch, tr->rpos.window));
}

// Teacher, before any job trains: every target it sent from the first phase begun up to its
// checkpoint is in the target log (the checkpoint synced the log before it was written); a log
// that lacks one fails the launch here rather than the students later. They are read again, a
// batch at a time, when each phase begins (resume_resend): nothing is held meanwhile.
static int resume_read_targets(rd_trainer *tr, rd_errbuf *eb) {
    rd_dataset_iter it;
    uint64_t limit, idx, v;
    float z;
    const int32_t own = phase_id(tr, tr->rpos.epoch, tr->rpos.window);
    const int32_t last = own < tr->cfg->train.epochs + (int32_t)tr->info->n_windows ? own : own - 1;
    for (int32_t p = tr->rs_first; p <= last; p++) {
        int32_t e, w;
        phase_of_id(tr, p, &e, &w);
        resume_cut_iter(tr, p, &it, &limit);
        for (uint64_t n = 0; n < limit && rd_dataset_iter_next(&it, &idx); n++) {
            int rc = resume_log_get(tr, e, w, idx, &z, &v, eb);
            if (rc != RD_OK)
                return rc;
        }
    }
    tr->rs_samples = rd_xmalloc(tr->max_batch * sizeof *tr->rs_samples);
    tr->rs_logits = rd_xmalloc(tr->max_batch * sizeof *tr->rs_logits);
    tr->rs_versions = rd_xmalloc(tr->max_batch * sizeof *tr->rs_versions);
    tr->rs_pending = 1;
    return RD_OK;
}

// Teacher, once phase (epoch, window) is begun: send again what it sent in it before its
// checkpoint (all of it in a phase before the checkpoint's), read from the log a step's batch at
// a time (never logged again), to every student job.
static int resume_resend(rd_trainer *tr, int32_t epoch, int32_t window, rd_errbuf *eb) {
    const int32_t p = phase_id(tr, epoch, window);
    if (!tr->rs_pending || p < tr->rs_first || p > phase_id(tr, tr->rpos.epoch, tr->rpos.window))
        return RD_OK;
    rd_dataset_iter it;
    uint64_t limit, n = 0;
    int rc = RD_OK;
    if (p == phase_id(tr, tr->rpos.epoch, tr->rpos.window))
        tr->rs_pending = 0;
    resume_cut_iter(tr, p, &it, &limit);
    for (;;) {
        size_t m = 0;
        while (m < tr->max_batch && n < limit && rd_dataset_iter_next(&it, &tr->rs_samples[m])) {
            if ((rc = resume_log_get(tr, epoch, window, tr->rs_samples[m], &tr->rs_logits[m],
                                     &tr->rs_versions[m], eb)) != RD_OK)
                return rc;
            m++, n++;
        }
        if (m == 0)
            return RD_OK;
        for (int k = 0; k < tr->n_snd && rc == RD_OK; k++) {
            rc = rd_target_sender_resend(tr->snd[k], m, tr->rs_samples, tr->rs_logits,
                                         tr->rs_versions, eb);
            if (rc == RD_OK)
                rc = rd_target_sender_flush(tr->snd[k], eb);
        }
        if (rc != RD_OK)
            return rc;
    }
}

// The order a job's iterator walks a phase in: record index (time order), or (user, index) in
// user order (users ascending, each one's records in time order; rd_partition).
static int iter_before(const rd_trainer *tr, uint64_t a, uint64_t b) {
    if (tr->rpos.window < 0 && tr->cfg->train.order == RD_ORDER_USER) {
        uint32_t ua = rd_dataset_record(tr->ds, a)->user, ub = rd_dataset_record(tr->ds, b)->user;
        if (ua != ub)
            return ua < ub;
    }
    return a < b;
}

// Did this student rank train on `sample` (one of its records: the owner rule) in the phase of
// its checkpoint before it? Its records come in iter_before order, so those are the ones before
// the first it had not trained on. (The receiver drops every target of the phases before that
// one: rd_target_recv_set_consumed.)
static int consumed_of(uint64_t sample, void *ctx) {
    const rd_trainer *tr = ctx;
    if (sample < tr->rs_range.begin || sample >= tr->rs_range.end)
        return 0;
    return tr->rs_all || iter_before(tr, sample, tr->rs_bound);
}

// Student resumed after the first phase begun or inside its phase: the first record it had not
// trained on before its checkpoint bounds those it had; their targets, and all of those of the
// phases before, sent again by the teacher, are dropped.
static void resume_consumed(rd_trainer *tr) {
    rd_dataset_iter it;
    uint64_t limit, n = 0, idx = 0, prev = 0;
    int mode;
    tr->rs_all = 1;
    int32_t w = tr->rpos.window;
    if (w >= (int32_t)tr->info->n_windows) { // the end of the schedule: every phase is before it
        tr->rs_range.begin = tr->rs_range.end = 0;
        rd_target_recv_set_consumed(tr->rcv, 0, w, consumed_of, tr);
        return;
    }
    phase_range(tr, w, &tr->rs_range, &mode);
    resume_cut_iter(tr, phase_id(tr, tr->rpos.epoch, w), &it, &limit);
    while (rd_dataset_iter_next(&it, &idx)) {
        // The order consumed_of relies on (an invariant of rd_dataset_iter).
        RD_ASSERT(n == 0 || iter_before(tr, prev, idx));
        if (n++ == limit) {
            tr->rs_all = 0;
            tr->rs_bound = idx;
            break;
        }
        prev = idx;
    }
    rd_target_recv_set_consumed(tr->rcv, w < 0 ? (uint32_t)tr->rpos.epoch : 0, w, consumed_of, tr);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints (rd/train_ckpt.h)

// Jobs in live distillation (a teacher with its distilled students in the launch, or such a
// student) exchange targets as they train, phase by phase, so they begin the phases together
// when resumed (resume_common_start): each from its newest checkpoint, the teacher sending again
// from its target log what it sent from the earliest job's phase up to its own checkpoint (or,
// when the log does not hold its targets, all of them from the start of a phase they all have a
// checkpoint at). Every checkpoint written after a phase's last step records the start of the
// next phase as its position (range_step 0), and with a cadence configured such jobs write one
// at every phase end; retention keeps the newest few of those, for that fallback.
static int live_distill(const rd_trainer *tr) {
    return distills(tr) && !(tr->job->role == RD_JOB_STUDENT && tr->cfg->distill.replay);
}

static int ckpt_cadence(const rd_trainer *tr) {
    const rd_ps_config *ps = &tr->cfg->ps;
    return ps->checkpoint_every > 0 || ps->checkpoint_every_s > 0 ||
           ps->checkpoint_every_windows > 0;
}

// The position after phase (epoch, window): the start of the next phase.
static void next_phase(const rd_trainer *tr, int32_t *epoch, int32_t *window) {
    const int32_t E = tr->cfg->train.epochs;
    if (*window < 0 && *epoch + 1 < E) {
        (*epoch)++;
    } else {
        *window = *window < 0 ? 0 : *window + 1;
        *epoch = E;
    }
}

// <checkpoint>/windows.tsv: the metrics of the stream windows evaluated before the cut (each
// window is scored before training on it, so the window in progress is one of them), so that
// a resumed run reports every window as the uninterrupted one does. Doubles as %.17g (exact
// round trip); one line per window after a header. A checkpoint without it (an older build)
// resumes with those windows' metrics NaN.
static const char windows_header[] =
    "window\tn\tpositives\tusers\tauc\tauc_valid\tgauc\tgauc_valid\tgauc_users\t"
    "gauc_examples\tlogloss\tmean_pred\tmean_label\tcalibration\tcalibration_valid\t"
    "samples_per_s";

// Stream windows evaluated at a position (window, range_step): each window is scored before its
// first step, so a position inside window w counts w + 1 and the start of w (range_step 0: a
// checkpoint at the end of the phase before) counts w; -1 = the batch phase, K = the end.
static int windows_evaluated(const rd_trainer *tr, int32_t window, int64_t range_step) {
    int n = window + (range_step > 0 ? 1 : 0), K = (int)tr->info->n_windows;
    n = n < 0 ? 0 : n;
    n = n > K ? K : n;
    return n < RD_TRAINER_MAX_WINDOWS ? n : RD_TRAINER_MAX_WINDOWS;
}

static int windows_write(const char *dir, const rd_trainer_result *res, int n, rd_errbuf *eb) {
    char path[RD_PATH_MAX + 160];
    snprintf(path, sizeof path, "%s/%s", dir, RD_TRAIN_CKPT_WINDOWS);
    size_t cap = sizeof windows_header + 2 + (size_t)n * 512, len = 0;
    char *buf = rd_xmalloc(cap);
    len += (size_t)snprintf(buf, cap, "%s\n", windows_header);
    for (int w = 0; w < n; w++) {
        const rd_trainer_eval *e = &res->window[w];
        const rd_metrics_result *m = &e->m;
        len += (size_t)snprintf(
            buf + len, cap - len,
            "%d\t%llu\t%llu\t%llu\t%.17g\t%d\t%.17g\t%d\t%llu\t%llu\t%.17g\t"
            "%.17g\t%.17g\t%.17g\t%d\t%.17g\n",
            w, (unsigned long long)m->n, (unsigned long long)m->positives,
            (unsigned long long)m->users, m->auc, m->auc_valid, m->gauc, m->gauc_valid,
            (unsigned long long)m->gauc_users, (unsigned long long)m->gauc_examples, m->logloss,
            m->mean_pred, m->mean_label, m->calibration, m->calibration_valid, e->samples_per_s);
    }
    int rc = rd_lmdbx_write_file_atomic(path, buf, len, eb);
    rd_free(buf);
    return rc;
}

static int parse_u64(const char *s, uint64_t *v) {
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *v = x;
    return 0;
}

static int parse_dbl(const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end == s || *end || errno == ERANGE ? -1 : 0;
}

// A window-metrics line's values that no evaluation gives (u: window n positives users
// auc_valid gauc_valid; cv: calibration_valid; d: auc gauc logloss mean_pred mean_label
// calibration samples_per_s):
// what is wrong, or NULL. NaN stands for "not defined" (a flag 0, an empty window).
static const char *
window_values_bad(const uint64_t *u, uint64_t gu, uint64_t ge, uint64_t cv, const double *d) {
    static const char *const bad[7] = {"auc outside [0, 1]",
                                       "gauc outside [0, 1]",
                                       "logloss negative or not finite",
                                       "mean_pred outside [0, 1]",
                                       "mean_label outside [0, 1]",
                                       "calibration negative or not finite",
                                       "samples_per_s negative or not finite"};
    if (u[2] > u[1] || u[3] > u[1])
        return "more positives or users than examples";
    if (gu > u[3] || ge > u[1])
        return "more GAUC users or examples than the window has";
    for (int k = 0; k < 7; k++) {
        double x = d[k];
        if (isnan(x)) {
            if (k == 0 && u[4])
                return "auc is NaN but auc_valid is 1";
            if (k == 1 && u[5])
                return "gauc is NaN but gauc_valid is 1";
            if (k == 5 && cv)
                return "calibration is NaN but calibration_valid is 1";
            continue;
        }
        int prob = k <= 1 || k == 3 || k == 4; // in [0, 1]; the others finite and >= 0
        if (!isfinite(x) || x < 0 || (prob && x > 1))
            return bad[k];
    }
    return NULL;
}

// Read <dir>/windows.tsv into res->window[0..]: *n = the windows it holds, 0 when the file is
// absent (*absent = 1). A damaged file is an error naming it and the line.
static int
windows_read(const char *dir, rd_trainer_result *res, int max, int *n, int *absent, rd_errbuf *eb) {
    char path[RD_PATH_MAX * 2 + 32];
    snprintf(path, sizeof path, "%s/%s", dir, RD_TRAIN_CKPT_WINDOWS);
    *n = 0;
    *absent = 0;
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f);
    if (o != 0) {
        if (o < 0 && errno == ENOENT) {
            *absent = 1;
            return RD_OK;
        }
        return rd_err_set(eb, RD_ERR_IO, "%s: %s", path,
                          o > 0 ? "not a regular file" : strerror(errno));
    }
    char line[1024];
    int rc = RD_OK, ln = 0;
    while (rc == RD_OK && fgets(line, sizeof line, f)) {
        ln++;
        size_t l = strlen(line);
        if (l == 0 || line[l - 1] != '\n') {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s:%d: line too long or not ended", path, ln);
            break;
        }
        line[l - 1] = '\0';
        if (ln == 1) {
            if (strcmp(line, windows_header) != 0)
                rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s:1: not a window-metrics header", path);
            continue;
        }
        char *col[16], *save = NULL;
        int nc = 0;
        for (char *t = strtok_r(line, "\t", &save); t && nc < 17; t = strtok_r(NULL, "\t", &save))
            if (nc < 16)
                col[nc++] = t;
            else
                nc++;
        uint64_t u[6];
        double d[8];
        int bad = nc != 16;
        // window n positives users | auc auc_valid gauc gauc_valid gauc_users gauc_examples ...
        bad = bad || parse_u64(col[0], &u[0]) || parse_u64(col[1], &u[1]) ||
              parse_u64(col[2], &u[2]) || parse_u64(col[3], &u[3]) || parse_dbl(col[4], &d[0]) ||
              parse_u64(col[5], &u[4]) || parse_dbl(col[6], &d[1]) || parse_u64(col[7], &u[5]);
        uint64_t gu = 0, ge = 0, cv = 0;
        bad = bad || parse_u64(col[8], &gu) || parse_u64(col[9], &ge) ||
              parse_dbl(col[10], &d[2]) || parse_dbl(col[11], &d[3]) || parse_dbl(col[12], &d[4]) ||
              parse_dbl(col[13], &d[5]) || parse_u64(col[14], &cv) || parse_dbl(col[15], &d[6]);
        if (bad || u[0] != (uint64_t)*n || (int)u[0] >= max || u[4] > 1 || u[5] > 1 || cv > 1) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT,
                            "%s:%d: not a window-metrics line (16 tab-separated fields, window %d "
                            "expected)",
                            path, ln, *n);
            break;
        }
        const char *range = window_values_bad(u, gu, ge, cv, d);
        if (range) {
            // Not protected by a CRC: a value no evaluation can give is refused, not reported.
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s:%d: window %d: %s", path, ln, *n, range);
            break;
        }
        rd_trainer_eval *e = &res->window[*n];
        memset(e, 0, sizeof *e);
        e->m.n = u[1];
        e->m.positives = u[2];
        e->m.users = u[3];
        e->m.auc = d[0];
        e->m.auc_valid = (int)u[4];
        e->m.gauc = d[1];
        e->m.gauc_valid = (int)u[5];
        e->m.gauc_users = gu;
        e->m.gauc_examples = ge;
        e->m.logloss = d[2];
        e->m.mean_pred = d[3];
        e->m.mean_label = d[4];
        e->m.calibration = d[5];
        e->m.calibration_valid = (int)cv;
        e->samples_per_s = d[6];
        (*n)++;
    }
    if (rc == RD_OK && ferror(f))
        rc = rd_err_set(eb, RD_ERR_IO, "%s: read error", path);
    if (rc == RD_OK && ln == 0)
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: empty (no header)", path);
    fclose(f);
    if (rc != RD_OK)
        *n = 0;
    return rc;
}

int rd_trainer_windows_check(
    const char *dir, int32_t window, int64_t range_step, int *n, rd_errbuf *eb) {
    rd_trainer_result *res = rd_xcalloc(1, sizeof *res);
    int absent = 0, got = 0;
    int rc = windows_read(dir, res, RD_TRAINER_MAX_WINDOWS, &got, &absent, eb);
    rd_free(res);
    *n = absent ? -1 : got;
    // As the resume counts them (windows_evaluated): a position inside window w has w + 1, the
    // start of w has w; the last window's end is the start of window K, which has K.
    int64_t w = (int64_t)window + (range_step > 0 ? 1 : 0); // a caller's window: no overflow
    int need = w < 0 ? 0 : w < RD_TRAINER_MAX_WINDOWS ? (int)w : RD_TRAINER_MAX_WINDOWS;
    if (rc == RD_OK && !absent && got != need)
        rc = rd_err_set(eb, RD_ERR_CORRUPT,
                        "%s/%s: %d window(s), the checkpoint is in window %d (expected %d)", dir,
                        RD_TRAIN_CKPT_WINDOWS, got, window, need);
    return rc;
}

// A checkpoint request, set by a signal handler: answered, and cleared, by the job rank 0 that
// writes the checkpoint. Bit 2: SIGTERM (rd_trainer_request_stop: once the checkpoint is written,
// PS shard 0 is told, and ends the run when every job has one, rd/server.h). SIGUSR1 has usr1_ms
// (below); bit 1 stands for it in a request taken (req, asked_by).
static volatile sig_atomic_t ckpt_requested;

// The wall-clock time (ms since the epoch) of this rank's latest SIGUSR1 not yet taken (0: none),
// set by the handler, taken by usr1_take: it tells the same signal sent to every rank (Slurm,
// mpiexec), reaching the job's rank 0 also passed on by the others, from a new one. Lock-free,
// so async-signal-safe.
static atomic_llong usr1_ms;
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "a signal handler sets usr1_ms: it must be lock-free");

// SIGUSR1s whose times are this close are one request, answered by one checkpoint: the same
// signal to every process reaches them within milliseconds (the clocks of a cluster's nodes agree
// closer than that), but its copies passed on reach a job's rank 0 a step or more later.
#define USR1_SAME_MS 5000

static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long t = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return t > 0 ? t : 1;
}

void rd_trainer_request_checkpoint(void) {
    atomic_store(&usr1_ms, wall_ms());
}

// This rank's pending SIGUSR1: its time, or 0 (none).
static long long usr1_take(void) {
    return atomic_exchange(&usr1_ms, 0);
}

void rd_trainer_request_stop(void) {
    ckpt_requested |= 2;
}

// Job rank 0, after the checkpoint that answers a SIGTERM (req bit 2): tell PS shard 0 (once). The
// buffer outlives the send (static); the request is freed at once, the send completes on its own.
static void stop_ack(rd_trainer *tr, int req) {
    static int job;
    if (!(req & 2) || tr->stop_acked || tr->comm->job_rank != 0)
        return;
    tr->stop_acked = 1;
    job = tr->comm->job_index;
    MPI_Request r;
    RD_MPI_CHECK(
        MPI_Isend(&job, 1, MPI_INT, tr->comm->ps_world[0], RD_TAG_STOP, tr->comm->world, &r));
    RD_MPI_CHECK(MPI_Request_free(&r));
}

static const char *asked_by(int req) {
    return (req & 2) ? "SIGTERM" : "SIGUSR1";
}

// Only the job's rank 0 answers SIGTERM (its checkpoint, then stop_ack), so the signal taken by
// another rank of the job alone (a kill of one pid) was lost: that rank trained on, and the
// launch ended with exit 0. Such a rank passes it on to the job's rank 0 (RD_TAG_STOP), which
// takes it as its own unless it has acknowledged one already (the same signal sent to every
// rank, answered once). SIGUSR1 likewise (RD_TAG_CKPT, with the time the rank got it): the job's
// rank 0 takes those in usr1_collect.
static void stop_forward(rd_trainer *tr) {
    const rd_comm *c = tr->comm;
    const int first = c->job_first[c->job_index];
    if (c->job_rank != 0) {
        static const int bit = 2;  // the sends' buffers: outlive them
        static long long usr1_fwd; // (rd_comm_wait before the next)
        MPI_Request r;
        if ((usr1_fwd = usr1_take()) != 0) {
            RD_LOG_INFO("job '%s': SIGUSR1 on rank %d of the job, passed on to its rank 0",
                        tr->job->name, c->job_rank);
            RD_MPI_CHECK(MPI_Isend(&usr1_fwd, 1, MPI_LONG_LONG, first, RD_TAG_CKPT, c->world, &r));
            rd_comm_wait(&r, tr->cfg->cluster.poll_us_max);
        }
        if (!(ckpt_requested & 2))
            return;
        ckpt_requested = 0;
        RD_LOG_INFO("job '%s': SIGTERM on rank %d of the job, passed on to its rank 0",
                    tr->job->name, c->job_rank);
        RD_MPI_CHECK(MPI_Isend(&bit, 1, MPI_INT, first, RD_TAG_STOP, c->world, &r));
        rd_comm_wait(&r, tr->cfg->cluster.poll_us_max);
        return;
    }
    for (;;) {
        int flag = 0, got = 0;
        MPI_Status st;
        RD_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, RD_TAG_STOP, c->world, &flag, &st));
        if (!flag)
            return;
        RD_MPI_CHECK(
            MPI_Recv(&got, 1, MPI_INT, st.MPI_SOURCE, RD_TAG_STOP, c->world, MPI_STATUS_IGNORE));
        // Only from a rank of this job (nothing else sends a worker this tag).
        if (st.MPI_SOURCE > first && st.MPI_SOURCE < first + c->job_size && !tr->stop_acked)
            ckpt_requested |= got & 2;
    }
}

static int usr1_answered(const rd_trainer *tr, long long t) {
    return tr->usr1_done && t >= tr->usr1_lo - USR1_SAME_MS && t <= tr->usr1_hi + USR1_SAME_MS;
}

// Job rank 0: a SIGUSR1 at time t (ms), this rank's own or passed on by world rank `from` (another
// rank of the job, stop_forward, or a PS shard, rd_server_run), waits for a checkpoint unless the
// last checkpoint on SIGUSR1 answered it already: the same signal sent to every rank comes to
// this rank once per rank it reached, in any order.
static void usr1_note(rd_trainer *tr, long long t, int from) {
    if (usr1_answered(tr, t)) {
        RD_LOG_DEBUG("job '%s': SIGUSR1 from rank %d answered already", tr->job->name, from);
        return;
    }
    if (from != tr->comm->rank)
        RD_LOG_INFO("job '%s': a checkpoint for the SIGUSR1 rank %d got", tr->job->name, from);
    if (!tr->usr1_pend || t < tr->usr1_pend_lo)
        tr->usr1_pend_lo = t;
    if (!tr->usr1_pend || t > tr->usr1_pend_hi)
        tr->usr1_pend_hi = t;
    tr->usr1_pend = 1;
}

// Job rank 0: this rank's SIGUSR1 and those the others passed on (RD_TAG_CKPT: another rank of
// the job, or a PS shard; a SIGUSR1 to one of them alone was lost before).
static void usr1_collect(rd_trainer *tr) {
    const rd_comm *c = tr->comm;
    long long t = usr1_take();
    if (t != 0)
        usr1_note(tr, t, c->rank);
    for (;;) {
        int flag = 0, job = 0, index = 0;
        MPI_Status st;
        RD_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, RD_TAG_CKPT, c->world, &flag, &st));
        if (!flag)
            return;
        RD_MPI_CHECK(MPI_Recv(&t, 1, MPI_LONG_LONG, st.MPI_SOURCE, RD_TAG_CKPT, c->world,
                              MPI_STATUS_IGNORE));
        // From a PS shard or another rank of this job (nothing else sends a worker this tag).
        if (rd_comm_job_of(c, st.MPI_SOURCE, &job, &index) == RD_OK &&
            (job < 0 || (job == c->job_index && index > 0)) && t > 0)
            usr1_note(tr, t, st.MPI_SOURCE);
    }
}

// Job rank 0: the SIGUSR1s waiting are answered (by the checkpoint just written or written
// at this step already).
static void usr1_answer(rd_trainer *tr) {
    if (!tr->usr1_pend)
        return;
    tr->usr1_pend = 0;
    tr->usr1_done = 1;
    tr->usr1_lo = tr->usr1_pend_lo;
    tr->usr1_hi = tr->usr1_pend_hi;
}

// After the final checkpoint no step is left to checkpoint after, so a SIGTERM taken then (the
// holdout evaluation, the end of the distillation) was answered by nobody: PS shard 0 waited for
// the job to shut down and the run went on to its report and exit 0 (or, with a slow evaluation,
// ended at the grace time naming the job as without a checkpoint). The final checkpoint answers
// it: the job's rank 0 tells PS shard 0 at once (another rank passes it on, stop_forward), which
// ends the run with exit status 143 and no report (rd/server.h). Called between the steps of what
// follows the final checkpoint.
static void stop_after_final(rd_trainer *tr) {
    if (!tr->final_ckpt)
        return;
    if (tr->comm->job_size > 1)
        stop_forward(tr);
    if (tr->comm->job_rank != 0 || !(ckpt_requested & 2) || tr->stop_acked)
        return;
    ckpt_requested = 0;
    char path[RD_PATH_MAX + 96];
    if (rd_train_ckpt_path(tr->ckpt_root, tr->job->name, tr->ckpt_step, path, sizeof path) == RD_OK)
        printf("[%s] checkpoint on SIGTERM: %s (the final one)\n", tr->job->name, path);
    fflush(stdout);
    stop_ack(tr, 2);
}

// Job rank 0 writes the checkpoint of the cut "steps 0..step-1 applied" when it is due (or
// forced); the other ranks return at once. Called between rd_dense_optim_step and the next
// step's push, so the PS cut (rd_kv_save waits for it) and the dense parameters agree.
static int ckpt_maybe(rd_trainer *tr, int64_t range_step, int force, int phase_end, rd_errbuf *eb) {
    const int every = tr->cfg->ps.checkpoint_every, every_s = tr->cfg->ps.checkpoint_every_s;
    int64_t step = rd_kv_step(tr->kv);
    if (tr->comm->job_size > 1)
        stop_forward(tr);
    if (!tr->ckpt_root[0] || step == 0)
        return RD_OK;
    // Only job rank 0 writes, so its own clock may decide the time cadence, and only its own
    // pending request counts (ckpt_requested; SIGUSR1: usr1_collect).
    if (tr->comm->job_rank == 0)
        usr1_collect(tr);
    int req = tr->comm->job_rank == 0 ? ((int)ckpt_requested & 2) | (tr->usr1_pend ? 1 : 0) : 0;
    // A SIGTERM after the one acknowledged asks nothing new (the run is ending): one that every
    // rank got, taken here a step after another rank of the job passed it on (stop_forward),
    // wrote a second checkpoint.
    if ((req & 2) && tr->stop_acked) {
        ckpt_requested &= ~2;
        req &= ~2;
    }
    int asked = req != 0;
    if (step == tr->ckpt_step) { // written at this step already: that one answers a request
        char path[RD_PATH_MAX + 96];
        if (asked &&
            rd_train_ckpt_path(tr->ckpt_root, tr->job->name, step, path, sizeof path) == RD_OK) {
            ckpt_requested = 0;
            usr1_answer(tr);
            printf("[%s] checkpoint on %s: %s (written already)\n", tr->job->name, asked_by(req),
                   path);
            fflush(stdout);
            stop_ack(tr, req);
        }
        return RD_OK;
    }
    int due = force || asked || (every > 0 && step % every == 0) ||
              (every_s > 0 && tr->comm->job_rank == 0 && rd_mono_s() - tr->ckpt_t >= every_s);
    if (!due)
        return RD_OK;
    tr->ckpt_step = step;
    if (tr->comm->job_rank != 0)
        return RD_OK;
    // Cleared before the write: a request that arrives during it asks for the next step's
    // (a SIGUSR1 unless it is one of those answered: usr1_answered).
    if (asked) {
        ckpt_requested = 0;
        usr1_answer(tr);
    }
    tr->ckpt_t = rd_mono_s();
    char final[RD_PATH_MAX + 96], part[RD_PATH_MAX + 128], jdir[RD_PATH_MAX + 64];
    snprintf(jdir, sizeof jdir, "%s/%s", tr->ckpt_root, tr->job->name);
    if (rd_train_ckpt_path(tr->ckpt_root, tr->job->name, step, final, sizeof final) != RD_OK)
        return rd_err_set(eb, RD_ERR_RANGE, "checkpoint: %s: path too long", tr->ckpt_root);
    snprintf(part, sizeof part, "%s/.step-%012lld.partial", jdir, (long long)step);
    int rc;
    // A .partial left by a crash is garbage: it never had its rename.
    if ((rc = rd_train_ckpt_rmtree(part, eb)) != RD_OK ||
        (rc = rd_lmdbx_mkdir_p(part, eb)) != RD_OK)
        goto fail;
    // The targets the teacher sent before the cut are on disk before the checkpoint is: resumed
    // inside a phase, it sends them again from the log (every rank appended its step's targets
    // before the step's allreduce, so all of them are committed by now).
    if (tr->tlog && tr->n_snd > 0 && (rc = rd_target_log_sync(tr->tlog, eb)) != RD_OK)
        goto fail;
    rd_train_pos pos;
    memset(&pos, 0, sizeof pos);
    pos.step = step;
    pos.epoch = tr->pos_epoch;
    pos.window = tr->pos_window;
    pos.range_step = range_step;
    if (phase_end) { // after the phase's last step: the start of the next one
        next_phase(tr, &pos.epoch, &pos.window);
        pos.range_step = 0;
    }
    pos.trained = tr->trained;
    pos.loss_ema = tr->loss_ema;
    pos.have_loss = tr->have_loss;
    rd_train_ckpt_ident(tr->cfg, tr->job, tr->mcfg, tr->info, tr->comm->job_size, &pos);
    snprintf(pos.job, sizeof pos.job, "%s", tr->job->name);
    snprintf(pos.model, sizeof pos.model, "%s", tr->mcfg->name);
    if ((rc = rd_train_ckpt_write_dense(part, &pos, tr->model, &tr->opt, eb)) != RD_OK)
        goto fail;
    // The stream windows evaluated so far (each one before its first step), the one in
    // progress with its throughput so far (its entry is filled only after its last step, and a
    // checkpoint at that step would record 0).
    if (tr->res && tr->win_w >= 0 && tr->win_w < RD_TRAINER_MAX_WINDOWS && tr->train_s > tr->win_s0)
        tr->res->window[tr->win_w].samples_per_s =
            (double)(tr->trained - tr->win_n0) / (tr->train_s - tr->win_s0);
    if (tr->res &&
        (rc = windows_write(part, tr->res, windows_evaluated(tr, pos.window, pos.range_step),
                            eb)) != RD_OK)
        goto fail;
    int tables[RD_MAX_TABLES];
    for (int t = 0; t < tr->model->n_tables; t++)
        tables[t] = tr->kv_table[t];
    // The PS shards, then the MANIFEST: the checkpoint is complete from here on.
    if ((rc = rd_kv_save(tr->kv, part, tables, tr->model->n_tables, eb)) != RD_OK)
        goto fail;
    if ((rc = rd_train_ckpt_commit(part, final, eb)) != RD_OK)
        goto fail;
    if ((rc = rd_train_ckpt_prune(jdir, step, tr->cfg->ps.checkpoint_keep, live_distill(tr) ? 3 : 0,
                                  eb)) != RD_OK)
        goto fail;
    if (asked) { // said even when quiet: the user asked for it
        printf("[%s] checkpoint on %s: %s\n", tr->job->name, asked_by(req), final);
        fflush(stdout);
        stop_ack(tr, req);
    } else if (!tr->quiet) {
        printf("[%s] checkpoint: %s\n", tr->job->name, final);
    }
    return RD_OK;
fail:
    rd_err_prefix(eb, "checkpoint of step %lld: ", (long long)step);
    return rc;
}

/**
 * Train one pass over `range`: all ranks of the job run `steps` = max_r ceil(n_r / B) steps.
 * Sync mode: pull(s+1) is sent after CLOCK(s); async: before computing s.
 */
static int train_range(rd_trainer *tr,
                       rd_range range,
                       int mode,
                       const char *phase,
                       int64_t *counts,
                       int64_t start,
                       rd_errbuf *eb) {
    rd_model *m = tr->model;
    const int W = tr->comm->job_size, me = tr->comm->job_rank;
    const size_t B = tr->max_batch;
    const int sync = tr->cfg->ps.sync;
    phase_counts(tr, range, mode, counts);
    int64_t steps = 0;
    for (int r = 0; r < W; r++) {
        int64_t s = (counts[r] + (int64_t)B - 1) / (int64_t)B;
        if (s > steps)
            steps = s;
    }
    if (steps == 0 || start >= steps)
        return RD_OK;
    double t0 = rd_mono_s();
    rd_dataset_iter it;
    job_iter_init(tr, &it, range, mode);
    // Resumed run: skip the records of the steps the checkpoint already holds.
    for (int64_t s = 0; s < start; s++) {
        uint64_t idx;
        for (size_t k = batch_of(counts[me], s, B); k > 0 && rd_dataset_iter_next(&it, &idx); k--)
            ;
    }
    int rc;
    if ((rc = stage_fill(tr, &tr->st[start & 1], &it, batch_of(counts[me], start, B), eb)) != RD_OK)
        return rc;
    if ((rc = stage_pull(tr, &tr->st[start & 1], eb)) != RD_OK)
        return rc;
    rd_batch bt;
    for (int64_t s = start; s < steps; s++) {
        stage *cur = &tr->st[s & 1], *nxt = &tr->st[(s + 1) & 1];
        size_t Btot = 0;
        for (int r = 0; r < W; r++)
            Btot += batch_of(counts[r], s, B);
        // 1. The other stage's push (step s-1) must be complete before its keys are rebuilt.
        if ((rc = stage_wait(tr, nxt->ts_push, eb)) != RD_OK)
            return rc;
        if (s + 1 < steps) {
            if ((rc = stage_fill(tr, nxt, &it, batch_of(counts[me], s + 1, B), eb)) != RD_OK)
                return rc;
            if (!sync && (rc = stage_pull(tr, nxt, eb)) != RD_OK)
                return rc;
        }
        // 2. Forward and backward on this rank's share of the step.
        if ((rc = stage_wait(tr, cur->ts_pull, eb)) != RD_OK ||
            (rc = stage_wait_tokens(tr, cur, eb)) != RD_OK ||
            (rc = stage_check_rows(tr, cur, "training", eb)) != RD_OK)
            return rc;
        if (cur->B > 0) {
            stage_batch(tr, cur, &bt);
            if ((rc = distill_get(tr, cur, &bt, eb)) != RD_OK)
                return rc;
            // A teacher with dropout sends the logit of its whole network (no mask), from a
            // forward of this step's parameters before the update: one more forward a step.
            int clean_targets = m->dropout > 0.0f && tr->n_snd > 0;
            if (clean_targets && ((rc = rd_model_forward(m, &bt, eb)) != RD_OK ||
                                  (rc = distill_emit(tr, cur, eb)) != RD_OK))
                return rc;
            if (m->dropout > 0.0f)
                bt.dropout_key =
                    rd_mix64(tr->drop_seed + tr->step * (uint64_t)W + (uint64_t)me) | 1;
            if ((rc = rd_model_forward(m, &bt, eb)) != RD_OK ||
                (rc = check_loss(tr, cur, m->loss, eb)))
                return rc;
            if (!clean_targets && (rc = distill_emit(tr, cur, eb)) != RD_OK)
                return rc;
            if ((rc = rd_model_backward(m, &bt, eb)) != RD_OK)
                return rc;
            tr->loss_ema = tr->have_loss ? 0.99 * tr->loss_ema + 0.01 * m->loss : m->loss;
            tr->have_loss = 1;
            // 3. Scale to the step's whole batch (see the file header) and push the rows.
            float rs = (float)cur->B / (float)Btot;
            for (int t = 0; t < m->n_tables; t++) {
                size_t nf = cur->n_uniq[t] * m->tables[t].dim;
                float *g = cur->drows[t];
                for (size_t k = 0; k < nf; k++)
                    g[k] *= rs;
                if (cur->n_uniq[t] &&
                    (rc = rd_kv_push(tr->kv, tr->kv_table[t], cur->uniq[t], cur->drows[t],
                                     cur->n_uniq[t], &cur->ts_push[t])) != RD_OK)
                    return kv_fail(tr, rc, "push", eb);
            }
            float ds = (float)W * rs;
            for (size_t k = 0; k < m->n_slab; k++)
                m->grads[k] *= ds;
        } else {
            memset(m->grads, 0, m->n_slab * sizeof *m->grads);
            if ((rc = distill_progress(tr, eb)) != RD_OK)
                return rc;
        }
        tr->step++;
        if (cur->B > 0)
            rd_kv_set_time(tr->kv, cur->t_max);
        if ((rc = rd_kv_clock(tr->kv, NULL)) != RD_OK)
            return kv_fail(tr, rc, "clock", eb);
        if (sync && s + 1 < steps && (rc = stage_pull(tr, nxt, eb)) != RD_OK)
            return rc;
        // 4. Dense parameters: average over the job, then the optimizer (overlaps the PS).
        if (W > 1)
            rd_dense_allreduce_counted(m->grads, m->n_slab, tr->comm->job, &tr->traffic);
        rd_dense_optim_step(&tr->opt, m->params, m->grads, m->opt_state, m->n_slab);
        tr->trained += Btot;
        tr->train_s += rd_mono_s() - t0;
        // 5. Every checkpoint_every steps: the cut "steps 0..s applied" (no push of s+1 yet).
        //    Not counted as training time.
        const int ew = tr->cfg->ps.checkpoint_every_windows;
        int window_end =
            s + 1 == steps && tr->pos_window >= 0 && ew > 0 && (tr->pos_window + 1) % ew == 0;
        int phase_end = s + 1 == steps;
        if ((rc = ckpt_maybe(tr, s + 1,
                             window_end || (phase_end && live_distill(tr) && ckpt_cadence(tr)),
                             phase_end, eb)) != RD_OK)
            return rc;
        t0 = rd_mono_s();
        progress(tr, phase, s + 1, steps, 0);
    }
    for (int k = 0; k < 2; k++)
        if ((rc = stage_wait(tr, tr->st[k].ts_push, eb)) != RD_OK)
            return rc;
    return RD_OK;
}

/**
 * Evaluate `range` with the current parameters: this rank scores its strided share; the job's
 * examples are gathered on job rank 0, which computes the metrics (whole, and the warm slice).
 */
static int eval_range(rd_trainer *tr,
                      rd_range range,
                      rd_metrics_result *whole,
                      rd_metrics_result *warm,
                      double *secs,
                      rd_errbuf *eb) {
    rd_model *m = tr->model;
    const int W = tr->comm->job_size, me = tr->comm->job_rank;
    double t0 = rd_mono_s();
    rd_metrics_reset(tr->met);
    rd_metrics_reset(tr->met_warm);
    rd_dataset_iter it;
    rd_dataset_iter_init(&it, tr->ds, range, RD_PART_STRIDED, me, W);
    int rc = RD_OK;
    rd_batch bt;
    stage *cur = &tr->st[0], *nxt = &tr->st[1];
    // The pulls of an evaluation are reads: a window is evaluated before it is trained on (and
    // the holdout after the last step), and its sightings made the keys it holds look trained to
    // the PS: last-seen times of events not yet trained (kept from TTL eviction, in a checkpoint
    // inside the window, in `table stats`), admission counts, rows of keys only evaluated.
    // The stream time the pulls set (stage_pull) is the evaluated range's, which the job has
    // not trained to: it is put back afterwards, or a rank with no records in a later training
    // step would clock with it and move the PS's TTL eviction ahead (rd_kv_set_time).
    const int64_t t_trained = rd_kv_time(tr->kv);
    rd_kv_set_read(tr->kv, 1);
    rc = stage_fill(tr, cur, &it, tr->max_batch, eb);
    if (rc == RD_OK)
        rc = stage_pull(tr, cur, eb);
    while (rc == RD_OK && cur->B > 0) {
        // Prepare and request the next batch while this one is scored.
        if ((rc = stage_fill(tr, nxt, &it, tr->max_batch, eb)) != RD_OK)
            break;
        if (nxt->B > 0 && (rc = stage_pull(tr, nxt, eb)) != RD_OK)
            break;
        if ((rc = stage_wait(tr, cur->ts_pull, eb)) != RD_OK ||
            (rc = stage_wait_tokens(tr, cur, eb)) != RD_OK ||
            (rc = stage_check_rows(tr, cur, "evaluation", eb)) != RD_OK)
            break;
        if ((rc = distill_progress(tr, eb)) != RD_OK)
            break;
        stop_after_final(tr);
        stage_batch(tr, cur, &bt);
        if ((rc = rd_model_forward(m, &bt, eb)) != RD_OK)
            break;
        for (size_t b = 0; b < cur->B; b++) {
            const rd_record *r = rd_dataset_record(tr->ds, cur->rec[b]);
            float z = m->logits_main[b] + tr->logit_shift;
            if (!isfinite(z)) {
                rc = rd_err_set(eb, RD_ERR_DIVERGED,
                                "the model's score of record %llu is %s: its dense parameters "
                                "diverged (train.lr %g); lower the learning rate",
                                (unsigned long long)cur->rec[b], isnan(z) ? "NaN" : "inf",
                                (double)tr->cfg->train.lr);
                break;
            }
            // Ranked by the logit: a float sigmoid would tie saturated scores (rd/metrics.h).
            tr->pred[b] = z;
            tr->users[b] = r->user;
            if (rd_dataset_user_pos(tr->ds, cur->rec[b]) >= RD_TRAINER_WARM_MIN &&
                (rc = rd_metrics_add_logit(tr->met_warm, z, r->label, r->user)) != RD_OK)
                break;
        }
        if (rc == RD_OK)
            rc = rd_metrics_add_logits(tr->met, tr->pred, cur->labels, tr->users, cur->B, eb);
        stage *tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    rd_kv_set_read(tr->kv, 0);
    rd_kv_set_time(tr->kv, t_trained);
    if (rc != RD_OK) {
        rd_err_prefix(eb, "evaluation: ");
        return rc; // the caller aborts the launch: no collective is attempted
    }
    RD_ASSERT(rd_metrics_gather(tr->met, 0, tr->comm->job) == RD_OK);
    RD_ASSERT(rd_metrics_gather(tr->met_warm, 0, tr->comm->job) == RD_OK);
    if (me == 0) {
        rd_metrics_compute(tr->met, whole);
        if (warm)
            rd_metrics_compute(tr->met_warm, warm);
    }
    *secs = rd_mono_s() - t0;
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Popularity baseline and the metrics file

// Item CTR over the batch period, smoothed towards the period's CTR with POP_PRIOR pseudo-events.
#define POP_PRIOR 20.0

static void popularity(rd_trainer *tr, rd_trainer_result *res) {
    const rd_dataset *ds = tr->ds;
    size_t ni = (size_t)tr->info->n_items;
    double *cnt = rd_xcalloc(ni ? ni : 1, sizeof *cnt);
    double *pos = rd_xcalloc(ni ? ni : 1, sizeof *pos);
    rd_range b = rd_dataset_batch(ds);
    double P = 0;
    for (uint64_t i = b.begin; i < b.end; i++) {
        const rd_record *r = rd_dataset_record(ds, i);
        cnt[r->item] += 1;
        pos[r->item] += (double)r->label;
        P += (double)r->label;
    }
    double prior = b.end > b.begin ? P / (double)(b.end - b.begin) : 0.5;
    rd_metrics *all = NULL, *warm = NULL;
    rd_range h = rd_dataset_holdout(ds);
    RD_ASSERT(rd_metrics_create((size_t)(h.end - h.begin), &all) == RD_OK);
    RD_ASSERT(rd_metrics_create(0, &warm) == RD_OK);
    for (uint64_t i = h.begin; i < h.end; i++) {
        const rd_record *r = rd_dataset_record(ds, i);
        float p = (float)((pos[r->item] + POP_PRIOR * prior) / (cnt[r->item] + POP_PRIOR));
        RD_ASSERT(rd_metrics_add(all, p, r->label, r->user) == RD_OK);
        if (rd_dataset_user_pos(ds, i) >= RD_TRAINER_WARM_MIN)
            RD_ASSERT(rd_metrics_add(warm, p, r->label, r->user) == RD_OK);
    }
    rd_metrics_compute(all, &res->pop_holdout.m);
    rd_metrics_compute(warm, &res->pop_warm.m);
    // A baseline computed from counts, not a model scored: no throughput (nan, not 0).
    res->pop_holdout.samples_per_s = (double)NAN;
    res->pop_warm.samples_per_s = (double)NAN;
    rd_metrics_destroy(all);
    rd_metrics_destroy(warm);
    rd_free(cnt);
    rd_free(pos);
}

// A figure of the metrics file in the fewest digits that read back to v (rd_fmt_double), as in
// report.json, so that the two agree to the last digit; undefined: null (jsonl) or nan (csv).
static void put_num(FILE *f, double v, int json) {
    char buf[RD_FMT_DOUBLE_MAX];
    if (isfinite(v)) {
        rd_fmt_double(v, buf);
        fputs(buf, f);
    } else {
        fputs(json ? "null" : "nan", f);
    }
}

static void write_line(FILE *f, int json, const char *phase, int window, const rd_trainer_eval *e) {
    const rd_metrics_result *m = &e->m;
    double v[4] = {m->auc_valid ? m->auc : (double)NAN, m->gauc_valid ? m->gauc : (double)NAN,
                   m->logloss, m->calibration_valid ? m->calibration : (double)NAN};
    if (json) {
        fprintf(f, "{\"phase\": \"%s\", \"window\": %d, \"auc\": ", phase, window);
        put_num(f, v[0], 1);
        fputs(", \"gauc\": ", f);
        put_num(f, v[1], 1);
        fputs(", \"logloss\": ", f);
        put_num(f, v[2], 1);
        fputs(", \"calibration\": ", f);
        put_num(f, v[3], 1);
        fprintf(f, ", \"samples\": %llu, \"samples_per_s\": ", (unsigned long long)m->n);
        put_num(f, e->samples_per_s, 1);
        fputs("}\n", f);
    } else {
        fprintf(f, "%s,%d", phase, window);
        for (int k = 0; k < 4; k++) {
            fputc(',', f);
            put_num(f, v[k], 0);
        }
        fprintf(f, ",%llu,", (unsigned long long)m->n);
        put_num(f, e->samples_per_s, 0);
        fputc('\n', f);
    }
}

static int write_metrics(const rd_trainer *tr, const rd_trainer_result *res, rd_errbuf *eb) {
    if (!tr->metrics_path[0])
        return RD_OK;
    char dir[sizeof tr->metrics_path];
    snprintf(dir, sizeof dir, "%s", tr->metrics_path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        int rc = rd_lmdbx_mkdir_p(dir, eb);
        if (rc != RD_OK)
            return rc;
    }
    return rd_trainer_write_metrics(tr->cfg, res, tr->metrics_path, eb);
}

int rd_trainer_write_metrics(const rd_config *cfg,
                             const rd_trainer_result *res,
                             const char *path,
                             rd_errbuf *eb) {
    rd_lmdbx_outfile of;
    int rc = rd_lmdbx_outfile_open(path, &of, eb);
    if (rc != RD_OK)
        return rc;
    FILE *f = of.f;
    int json = strcmp(cfg->output.metrics_format, "jsonl") == 0;
    if (!json)
        fputs("phase,window,auc,gauc,logloss,calibration,samples,samples_per_s\n", f);
    for (int w = 0; w < res->n_windows && w < RD_TRAINER_MAX_WINDOWS; w++)
        write_line(f, json, "stream", w, &res->window[w]);
    write_line(f, json, "holdout", -1, &res->holdout);
    write_line(f, json, "holdout_warm", -1, &res->warm);
    write_line(f, json, "popularity_holdout", -1, &res->pop_holdout);
    write_line(f, json, "popularity_warm", -1, &res->pop_warm);
    return rd_lmdbx_outfile_commit(&of, eb); // unique temporary name, fsync, rename
}

// ---------------------------------------------------------------------------------------------
// The schedule

// ---------------------------------------------------------------------------------------------
// Resume (rd_trainer_opts.resume_dir)

// Polled broadcast of an int over the job (a blocked MPICH call spins a core).
static void job_bcast_int(rd_trainer *tr, int *v) {
    MPI_Request r;
    RD_MPI_CHECK(MPI_Ibcast(v, 1, MPI_INT, 0, tr->comm->job, &r));
    rd_comm_wait(&r, tr->cfg->cluster.poll_us_max);
}

int rd_trainer_agree(const rd_comm *comm, int poll_us, int rc, rd_errbuf *eb) {
    // The lowest failed world rank reports: one message however many ranks refused the same
    // config or input (every rank of a job reads it), and every rank still ends the launch.
    int mine = rc == RD_OK ? INT_MAX : comm->rank, first = INT_MAX;
    MPI_Request r;
    RD_MPI_CHECK(MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm->role, &r));
    rd_comm_wait(&r, poll_us);
    if (first == INT_MAX || first == comm->rank)
        return rc;
    return rd_err_set(eb, RD_ERR_REPORTED, "rank %d failed before training (its message says why)",
                      first);
}

// Every worker rank of the launch (all jobs) says whether its last step before training went
// well (resume, the target logs); no job builds tokens or trains before all did, so a launch that
// fails there leaves no checkpoint, metrics file or target log of a run that never was. A rank
// whose rd_trainer_create failed never gets here: the launch ended at the agreement after it.
static int all_workers_ready(rd_trainer *tr, int rc, rd_errbuf *eb) {
    return rd_trainer_agree(tr->comm, tr->cfg->cluster.poll_us_max, rc, eb);
}

// A run that does not resume starts its own timeline: job rank 0 removes every checkpoint an
// earlier run left in <checkpoint root>/<job> (one folder holds one timeline), so
// checkpoint_keep counts only this run's and none of the earlier ones can be resumed as if it
// were this run's. --resume keeps them (retention drops the ones above its step).
static int fresh_timeline(rd_trainer *tr, rd_errbuf *eb) {
    if (!tr->ckpt_root[0] || tr->comm->job_rank != 0)
        return RD_OK;
    char jdir[RD_PATH_MAX + 64];
    snprintf(jdir, sizeof jdir, "%s/%s", tr->ckpt_root, tr->job->name);
    int64_t *steps = NULL;
    size_t n = 0;
    int rc = rd_train_ckpt_clear(jdir, &steps, &n, eb);
    if (n > 0) {
        // One line: how many, and the first and last steps (a long timeline stays one line).
        char list[160] = "";
        size_t len = 0;
        for (size_t i = 0; i < n && len < sizeof list - 40; i++) {
            if (n > 6 && i == 3) {
                len += (size_t)snprintf(list + len, sizeof list - len, ", ...");
                i = n - 2;
                continue;
            }
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%lld", i ? ", " : "",
                                    (long long)steps[i]);
        }
        printf("[%s] removed %zu checkpoint%s of an earlier run from %s (step %s)%s\n",
               tr->job->name, n, n == 1 ? "" : "s", jdir, list,
               rc == RD_OK ? "" : "; then removing failed");
        fflush(stdout);
    }
    rd_free(steps);
    return rc;
}

// Does distill.target_log hold this teacher job's record for this dataset (the run resumed wrote
// its targets there)? A read-only look, closed again before the job opens the log to append; a
// log of an older build without job records counts as not holding it. When it does not, `why`
// says why: no log at that path, no record of the job, a record for other data, or why the log
// could not be read (a damaged log then fails the launch when the job opens it, and the line
// printed before must not blame a missing record).
static int log_knows_job(const rd_trainer *tr, char *why, size_t cap) {
    rd_target_log *log = NULL;
    rd_errbuf leb;
    rd_errbuf_clear(&leb);
    int rc = rd_target_log_open(tr->cfg->distill.target_log, 0, NULL, &log, &leb);
    if (rc != RD_OK) {
        snprintf(why, cap, "%s", rc == RD_ERR_NOTFOUND ? "there is no log" : leb.msg);
        return 0;
    }
    rd_target_job_info ji;
    rc = rd_target_log_get_job(log, rd_target_job_key(tr->job->name), &ji, &leb);
    rd_target_log_close(log);
    if (rc == RD_ERR_NOTFOUND)
        snprintf(why, cap, "the log has no record of the job");
    else if (rc != RD_OK)
        snprintf(why, cap, "%s", leb.msg);
    else if (log_data_differs(tr, &ji))
        snprintf(why, cap, "its record of the job names another dataset");
    return rc == RD_OK && !log_data_differs(tr, &ji);
}

// Jobs in live distillation (see live_distill) begin the phase sequence together, at one phase
// (rs_first). When every teacher's distill.target_log holds its job's targets, each such job
// resumes from its own newest checkpoint, wherever it is, and they all begin at the earliest
// phase among those: a teacher sends again, from its log, what it sent from that phase up to its
// checkpoint (whole phases, then the part of its own phase before it), and a student drops the
// targets of the records it trained on before its own checkpoint, all of those of the phases
// before its own (rd/distill.h, "Resume inside a phase"). When a teacher's log does not hold its
// job (a resume with another --out and the default log, a log removed), it could not send them
// again: the jobs resume from the newest phase start that every such job has a checkpoint at,
// and begin there.
static int
resume_common_start(rd_trainer *tr, int root, char *dir, size_t cap, int *rc, rd_errbuf *eb) {
    const int32_t E = tr->cfg->train.epochs, K = (int32_t)tr->info->n_windows;
    // Phases 0..E+K-1 (batch epochs, then stream windows) and E+K: the end of the schedule.
    const int n = E + K + 1;
    int mine = 1, mid = 0;
    if (root && live_distill(tr) && tr->job->role == RD_JOB_TEACHER && tr->comm->job_rank == 0) {
        char why[RD_ERR_MSG_MAX] = "distill.target_log is empty";
        mine = tr->cfg->distill.target_log[0] && log_knows_job(tr, why, sizeof why);
        if (!mine && !tr->quiet)
            printf("[%s] distill.target_log %s holds no targets of job '%s' for this dataset "
                   "(%s): it cannot send its students again the targets it sent before its "
                   "checkpoint, so the jobs in live distillation resume from the start of a "
                   "phase that they all have a checkpoint at\n",
                   tr->job->name, tr->cfg->distill.target_log, tr->job->name, why);
    }
    RD_MPI_CHECK(MPI_Allreduce(&mine, &mid, 1, MPI_INT, MPI_MIN, tr->comm->role));
    unsigned char *have = rd_xmalloc((size_t)n), *all = rd_xmalloc((size_t)n);
    int64_t *at = rd_xmalloc((size_t)n * sizeof *at); // the newest step at each start, -1 = none
    memset(have, 1, (size_t)n);
    for (int i = 0; i < n; i++)
        at[i] = -1;
    int live = root && live_distill(tr);
    int64_t *steps = NULL, newest = -1, own_step = -1;
    int32_t own = INT32_MAX, first = INT32_MAX; // this job's phase, the earliest of all jobs'
    size_t ns = 0;
    if (live) {
        memset(have, 0, (size_t)n);
        rd_errbuf lseb; // a failed listing (a file given, ...) is explained below
        rd_errbuf_clear(&lseb);
        int lrc = rd_train_ckpt_list(tr->resume_dir, tr->job->name, &steps, &ns, &lseb);
        if (lrc != RD_OK)
            ns = 0;
        for (size_t i = 0; lrc == RD_OK && i < ns; i++) { // ascending: the newest wins
            char p[RD_PATH_MAX * 2];
            rd_train_pos pos;
            rd_errbuf leb;
            rd_errbuf_clear(&leb);
            if (rd_train_ckpt_path(tr->resume_dir, tr->job->name, steps[i], p, sizeof p) != RD_OK)
                continue;
            if (rd_train_ckpt_read_pos(p, &pos, &leb) != RD_OK || pos.range_step < 0) {
                // Never the one resumed from: the job takes an older one, perhaps of an earlier
                // phase, and the others with it. Say so, or the lost steps are unexplained.
                if (tr->comm->job_rank == 0)
                    RD_LOG_WARN("--resume: %s cannot be resumed from (%s): the jobs in live "
                                "distillation choose among the others",
                                p, leb.msg[0] ? leb.msg : "negative position");
                continue;
            }
            int ok = pos.window < 0 ? pos.epoch >= 0 && pos.epoch < E
                                    : pos.epoch == E && pos.window <= K;
            int id = pos.window < 0 ? pos.epoch : E + pos.window;
            if (!ok)
                continue;
            if (mid)
                own_step = steps[i], own = id;
            else if (pos.range_step == 0 && id >= 1)
                have[id] = 1, at[id] = steps[i];
        }
        newest = ns ? steps[ns - 1] : -1;
    }
    // Both collective over every worker of the launch (mid is the same everywhere).
    int found = -1;
    if (mid) {
        RD_MPI_CHECK(MPI_Allreduce(&own, &first, 1, MPI_INT32_T, MPI_MIN, tr->comm->role));
        found = live && own_step >= 0 ? own : -1;
    } else {
        RD_MPI_CHECK(MPI_Allreduce(have, all, n, MPI_UNSIGNED_CHAR, MPI_BAND, tr->comm->role));
        for (int i = n - 1; live && i >= 1 && found < 0; i--)
            if (all[i] && at[i] >= 0)
                found = i;
    }
    int ret = 0;
    const char *other = tr->job->role == RD_JOB_TEACHER ? "distilled students" : "teacher";
    if (live && ns == 0 && *rc == RD_OK) {
        // None (or the folder could not be listed): why, said about what the path is, in the
        // words of rd_train_ckpt_latest (the check `recdistill train` made on world rank 0, and
        // export): this rank may not see what rank 0 saw (a node-local disk, another working
        // directory).
        char none[RD_PATH_MAX * 2];
        *rc = rd_train_ckpt_latest(tr->resume_dir, tr->job->name, none, sizeof none, eb);
        if (*rc == RD_OK) // one was completed since the listing above
            *rc = rd_err_set(eb, RD_ERR_NOTFOUND, "%s/%s: no complete checkpoint when listed",
                             tr->resume_dir, tr->job->name);
    } else if (live && found < 0 && *rc == RD_OK && mid) {
        *rc = rd_err_set(eb, RD_ERR_NOTFOUND,
                         "--resume: job '%s' is in live distillation with its %s: %s/%s holds no "
                         "checkpoint that can be resumed from (see the warnings)",
                         tr->job->name, other, tr->resume_dir, tr->job->name);
    } else if (live && found < 0 && *rc == RD_OK) {
        *rc = rd_err_set(eb, RD_ERR_NOTFOUND,
                         "--resume: job '%s' is in live distillation with its %s, and without the "
                         "teacher's targets in its target log they resume together from the start "
                         "of a phase: %s/%s "
                         "holds no checkpoint at the start of a phase that every such job has one "
                         "for (they are written at the end of each phase when ps.checkpoint_every, "
                         "checkpoint_every_s or checkpoint_every_windows is set)",
                         tr->job->name, other, tr->resume_dir, tr->job->name);
    } else if (live && found >= 0 && *rc == RD_OK) {
        int64_t st = mid ? own_step : at[found];
        if (rd_train_ckpt_path(tr->resume_dir, tr->job->name, st, dir, cap) != RD_OK)
            *rc = rd_err_set(eb, RD_ERR_RANGE, "--resume: %s: path too long", tr->resume_dir);
        ret = 1;
        tr->resume_live = 1;
        tr->rs_first = mid ? first : found;
        tr->rs_starts = !mid;
        if (*rc == RD_OK && !mid && st != newest && tr->comm->job_rank == 0 && !tr->quiet)
            printf("[%s] resumes from %s, the newest checkpoint at the start of a phase that "
                   "every job in live distillation has (its newest is step %lld; a teacher "
                   "whose target log does not hold its targets cannot send them again)\n",
                   tr->job->name, dir, (long long)newest);
    }
    rd_free(steps);
    rd_free(have);
    rd_free(all);
    rd_free(at);
    return ret;
}

// Job ranks: the step of the checkpoint each one read (rc: its outcome). Collective over the job,
// called by every rank whatever rc; a rank that failed keeps its own error and is not compared.
static int resume_same_step(rd_trainer *tr, const char *dir, int rc, rd_errbuf *eb) {
    int64_t v[2] = {rc == RD_OK ? tr->rpos.step : INT64_MIN,
                    rc == RD_OK ? -tr->rpos.step : INT64_MIN};
    int64_t m[2];
    MPI_Request r;
    RD_MPI_CHECK(MPI_Iallreduce(v, m, 2, MPI_INT64_T, MPI_MAX, tr->comm->job, &r));
    rd_comm_wait(&r, tr->cfg->cluster.poll_us_max);
    if (rc != RD_OK || m[1] == INT64_MIN || m[0] == -m[1])
        return rc;
    return rd_err_set(eb, RD_ERR_STATE,
                      "--resume: the ranks of job '%s' do not see the same checkpoints under %s: "
                      "this rank resumes from %s (step %lld), another from step %lld (each rank "
                      "must see the checkpoint root as job rank 0 does: a node-local copy that "
                      "lags?)",
                      tr->job->name, tr->resume_dir, dir, (long long)tr->rpos.step,
                      (long long)(m[0] != tr->rpos.step ? m[0] : -m[1]));
}

// Every rank reads dense.bin (params, optimizer state and step, position); job rank 0 loads the
// job's PS tables and the server's step (rd_kv_load) and tells the others the outcome; then every
// rank takes the checkpoint's step as its own. No rank pulls before the broadcast.
static int resume(rd_trainer *tr, rd_errbuf *eb) {
    char dir[RD_PATH_MAX * 2], probe[RD_PATH_MAX * 2 + 16];
    snprintf(probe, sizeof probe, "%s/%s", tr->resume_dir, RD_TRAIN_CKPT_DENSE);
    int rc = RD_OK, folder = access(probe, R_OK) == 0;
    if (folder)
        snprintf(dir, sizeof dir, "%s", tr->resume_dir);
    // Jobs in live distillation begin the phases together, at the earliest one's (see
    // resume_common_start); every worker of the launch takes part in that agreement.
    int common = resume_common_start(tr, !folder, dir, sizeof dir, &rc, eb);
    if (rc == RD_OK && !folder && !common)
        rc = rd_train_ckpt_latest(tr->resume_dir, tr->job->name, dir, sizeof dir, eb);
    // What the checkpoint's position means: the same model and tables (config hash, naming the
    // part that differs), the same dataset, the same partition of it into steps (job ranks,
    // batch size, order) and, for a job that reads tokens, the same token-build settings.
    rd_train_pos run, ck;
    memset(&run, 0, sizeof run);
    snprintf(run.job, sizeof run.job, "%s", tr->job->name);
    snprintf(run.model, sizeof run.model, "%s", tr->mcfg->name);
    rd_train_ckpt_ident(tr->cfg, tr->job, tr->mcfg, tr->info, tr->comm->job_size, &run);
    if (rc == RD_OK)
        rc = rd_train_ckpt_read_pos(dir, &ck, eb);
    if (rc == RD_OK && strcmp(ck.job, tr->job->name) != 0)
        rc = rd_err_set(eb, RD_ERR_SCHEMA, "--resume: %s is a checkpoint of job '%s', not '%s'",
                        dir, ck.job, tr->job->name);
    if (rc == RD_OK)
        rc = rd_train_ckpt_check(dir, &ck, &run, tr->cfg->data.dir,
                                 RD_TRAIN_CKPT_CHECK_CONFIG | RD_TRAIN_CKPT_CHECK_DATA |
                                     RD_TRAIN_CKPT_CHECK_PARTITION | RD_TRAIN_CKPT_CHECK_TOKENS,
                                 eb);
    if (rc == RD_OK)
        rc = rd_train_ckpt_check_epochs(dir, &ck, tr->cfg->train.epochs, eb);
    if (rc == RD_OK && !ck.has_ident && tr->comm->job_rank == 0)
        RD_LOG_WARN("--resume: %s does not record the run it belongs to (dense.bin version 1 of an "
                    "older build, or a file written without it): its dataset, job ranks, "
                    "train.batch_size, train.order, data.split and token settings were "
                    "not recorded and cannot be checked; make sure they are this run's",
                    dir);
    else if (rc == RD_OK && ck.split_windows == 0 && tr->comm->job_rank == 0)
        // Version 2 records the run but not the split: its position (a step of the batch
        // period or of a stream window) is read under this run's split, which may not be the
        // one it was written under (a version 3 checkpoint of another split is refused).
        RD_LOG_WARN("--resume: %s does not record data.split (dense.bin version 2 of an older "
                    "build): its position is taken under this run's split (batch_fraction %.15g, "
                    "holdout_fraction %.15g, stream_windows %d), which cannot be checked; make "
                    "sure it is the split the checkpoint was written with",
                    dir, tr->cfg->data.split.batch_fraction, tr->cfg->data.split.holdout_fraction,
                    tr->cfg->data.split.stream_windows);
    if (rc == RD_OK)
        rc = rd_train_ckpt_read_dense(dir, run.config_hash, &tr->rpos, tr->model, &tr->opt, eb);
    if (rc == RD_OK)
        snprintf(tr->resume_from, sizeof tr->resume_from, "%s", dir);
    // Every rank of the job chose its checkpoint from its own listing of the root; ranks that
    // see different checkpoints (a node-local copy of the root that lags) would resume at
    // different steps and fail later in the PS or the transport with a message about steps,
    // not about the root. They must agree before anything else is collective.
    rc = resume_same_step(tr, dir, rc, eb);
    if (rc == RD_OK && tr->resume_live) {
        // The phase its listing gave (replaced since it was listed?): at the first phase begun
        // or after it; at its start when the jobs resume from a common phase start.
        int32_t id = phase_id(tr, tr->rpos.epoch, tr->rpos.window);
        if (id < tr->rs_first || (tr->rs_starts && (id != tr->rs_first || tr->rpos.range_step)))
            rc = rd_err_set(eb, RD_ERR_STATE,
                            "--resume: %s: dense.bin is at step %lld of phase %d, its listing "
                            "said otherwise (was it replaced meanwhile?)",
                            dir, (long long)tr->rpos.range_step, id);
    }
    if (rc != RD_OK && strncmp(eb->msg, "--resume", 8) != 0)
        rd_err_prefix(eb, "--resume: ");
    // Rank 0 loads the tables only if every rank read its dense state (a local failure above
    // is still reported by that rank; the launch is aborted by the caller).
    int st = rc;
    if (tr->comm->job_rank == 0 && rc == RD_OK) {
        int tables[RD_MAX_TABLES];
        for (int t = 0; t < tr->model->n_tables; t++)
            tables[t] = tr->kv_table[t];
        int64_t step = -1;
        st = rd_kv_load(tr->kv, dir, tables, tr->model->n_tables, &step, eb);
        int absent = 0, need = windows_evaluated(tr, tr->rpos.window, tr->rpos.range_step);
        // Read whenever present, also with no window evaluated yet (a batch-period checkpoint
        // holds the header alone): a damaged file is refused here as by `table verify`.
        if (st == RD_OK && tr->res) {
            st = windows_read(dir, tr->res, RD_TRAINER_MAX_WINDOWS, &tr->n_restored, &absent, eb);
            // Builds before dense.bin version 3 may not have written it; since, every
            // checkpoint has it, so a version-3 one without it lost it in a copy.
            if (st == RD_OK && absent && need > 0)
                RD_LOG_WARN("--resume: %s holds no %s (%s): the metrics of the %d stream "
                            "window(s) evaluated before it are NaN in this run's files",
                            dir, RD_TRAIN_CKPT_WINDOWS,
                            ck.split_windows > 0 ? "lost in a copy? dense.bin version 3 is always "
                                                   "written with it: copy it along to keep them"
                                                 : "an older build",
                            need);
            else if (st == RD_OK && tr->n_restored != need)
                st = rd_err_set(eb, RD_ERR_CORRUPT,
                                "%s/%s: %d window(s), the checkpoint is in window %d (expected %d)",
                                dir, RD_TRAIN_CKPT_WINDOWS, tr->n_restored, tr->rpos.window, need);
        }
        if (st == RD_OK && step != tr->rpos.step)
            st = rd_err_set(eb, RD_ERR_CORRUPT,
                            "--resume: %s: tables of step %lld, dense.bin of "
                            "step %lld",
                            dir, (long long)step, (long long)tr->rpos.step);
        if (st != RD_OK)
            rd_err_prefix(eb, "--resume: ");
    }
    job_bcast_int(tr, &st);
    if (rc != RD_OK)
        return rc;
    if (st != RD_OK)
        return tr->comm->job_rank == 0 ? st
                                       : rd_err_set(eb, st,
                                                    "--resume: job rank 0 failed to load "
                                                    "the tables of %s",
                                                    dir);
    rd_kv_set_step(tr->kv, tr->rpos.step);
    tr->step = (uint64_t)tr->rpos.step;
    tr->trained = tr->rpos.trained;
    tr->trained0 = tr->rpos.trained;
    tr->loss_ema = tr->rpos.loss_ema;
    tr->have_loss = tr->rpos.have_loss;
    tr->ckpt_step = tr->rpos.step;
    tr->resuming = 1;
    if (tr->comm->job_rank == 0 && !tr->quiet) {
        printf("[%s] resumed from %s (step %lld, epoch %d, window %d, step %lld of the phase)\n",
               tr->job->name, dir, (long long)tr->rpos.step, tr->rpos.epoch, tr->rpos.window,
               (long long)tr->rpos.range_step);
        int32_t own = phase_id(tr, tr->rpos.epoch, tr->rpos.window);
        if (tr->resume_live && tr->rs_first < own) {
            // The phases it went through before its checkpoint that another job in live
            // distillation resumes in: it begins and ends them with that job first.
            char a[64], b[64];
            int32_t e, w;
            phase_of_id(tr, tr->rs_first, &e, &w);
            phase_text(tr, e, w, a, sizeof a);
            phase_of_id(tr, own - 1, &e, &w);
            // One phase is named alone ("batch epoch 1/2 to batch epoch 1/2" read as a typo).
            char span[160];
            if (tr->rs_first == own - 1)
                snprintf(span, sizeof span, "%s", a);
            else {
                phase_text(tr, e, w, b, sizeof b);
                snprintf(span, sizeof span, "%s to %s", a, b);
            }
            if (tr->job->role == RD_JOB_TEACHER)
                printf("[%s] a job in live distillation resumes in %s: the teacher first sends "
                       "its students again, from its target log, every target of %s\n",
                       tr->job->name, a, span);
            else
                printf("[%s] a job in live distillation resumes in %s: the student first goes "
                       "through %s with its teacher, dropping their targets\n",
                       tr->job->name, a, span);
        }
    }
    return RD_OK;
}

// A phase before the checkpoint's that the job still begins and ends with the other jobs in live
// distillation (resume_common_start): none of it is trained again, its window not evaluated.
#define RESUME_END INT64_MAX

// Steps of phase (epoch e, window w; e is ignored for a window) already in the checkpoint: -1 =
// the phase is before the first one begun (skip it whole, evaluation included), RESUME_END = it
// is after that but before the checkpoint's (begin and end it, train none), else the steps to
// skip.
static int64_t resume_skip(const rd_trainer *tr, int32_t e, int32_t w) {
    if (!tr->resuming)
        return 0;
    const rd_train_pos *p = &tr->rpos;
    int32_t id = w < 0 ? e : tr->cfg->train.epochs + w, own = phase_id(tr, p->epoch, p->window);
    int32_t first = tr->resume_live ? tr->rs_first : own;
    return id < first ? -1 : id < own ? RESUME_END : id == own ? p->range_step : 0;
}

// IAT stage 1: the token store of the run

enum { TAG_TOKENS_READY = RD_TAG_USER + 2 };

// Rank 0 of the builder job trains the source model (tokens.source_model), in batches of the
// job's global batch (train.batch_size x its ranks), on the batch period (train.epochs passes; user
// order for the user-order scheme; the tokens are those of the first pass, each computed before the
// update on its batch), then goes through the stream windows in time order training as it goes
// (streaming mode: each group's previous tokens come frozen from the store), then writes the
// holdout's tokens without training on it. Every token is appended through the PS rank that owns
// its user's shard. A token is computed before the update on its own batch, so the tokens of stream
// and holdout events carry no label of their own or of any later event.
typedef struct build_ctx {
    rd_trainer *tr;
    double t0;
    double t_part; // when the part in progress began
    double t_line; // when the last progress line was printed
} build_ctx;

static const char *const tokens_part_name[4] = {
    "batch period", "stream", "holdout (no training)",
    "batch period rewritten by the trained model (no training)"};

// A line every train.eval_every steps of a part, and between them one whenever
// output.progress_every_s seconds have passed without one, as the training phases print: a
// batch period of millions of events took minutes without a word (none with progress_every_s 0).
static void tokens_step(void *ctx, int part, uint64_t steps, uint64_t done, uint64_t total) {
    build_ctx *bc = ctx;
    rd_trainer *tr = bc->tr;
    const double t = rd_mono_s();
    if (steps == 1)
        bc->t_part = t;
    const int every_s = tr->cfg->output.progress_every_s;
    const int64_t every = tr->cfg->train.eval_every;
    if (tr->quiet || every_s <= 0 || done >= total)
        return;
    if (!(every > 0 && steps % (uint64_t)every == 0) && t - bc->t_line < (double)every_s)
        return;
    bc->t_line = t;
    const double rate = t > bc->t_part ? (double)done / (t - bc->t_part) : 0.0;
    const double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    printf("[%s] tokens: %s, step %llu, %llu of %llu events  %.0f events/s  ETA %.0fs  (%.0fs "
           "elapsed)\n",
           tr->job->name, tokens_part_name[part], (unsigned long long)steps,
           (unsigned long long)done, (unsigned long long)total, rate, eta, t - bc->t0);
    fflush(stdout);
}

static void tokens_part_done(void *ctx, int part, const rd_source_train_stats *st) {
    const char *const *what = tokens_part_name;
    build_ctx *bc = ctx;
    rd_trainer *tr = bc->tr;
    int trained = part == RD_SOURCE_PART_BATCH || part == RD_SOURCE_PART_STREAM;
    tr->tok_stats.source_events += trained ? st->events : 0;
    tr->tok_stats.tokens_written += st->tokens_written;
    if (trained)
        tr->tok_stats.source_auc = st->auc_last;
    // A part of one class (a holdout of positives only) has no AUC: said so, not "nan".
    char auc[32] = "n/a (one class)";
    if (isfinite(st->auc_last))
        snprintf(auc, sizeof auc, "%.4f", st->auc_last);
    char rev[64] = "";
    if (st->reverse_steps)
        snprintf(rev, sizeof rev, " (and %llu reverse steps)",
                 (unsigned long long)st->reverse_steps);
    if (!tr->quiet)
        printf("[%s] tokens: %s, %llu tokens written, source model progressive AUC %s, "
               "loss %.4f -> %.4f%s (%.1f s)\n",
               tr->job->name, what[part], (unsigned long long)st->tokens_written, auc,
               st->loss_first, st->loss_last, rev, rd_mono_s() - bc->t0);
    fflush(stdout);
}

static int tokens_build(rd_trainer *tr, rd_errbuf *eb) {
    build_ctx bc = {tr, rd_mono_s(), 0.0, rd_mono_s()};
    rd_source_io io = rd_source_io_client(tr->tok);
    // The job's global batch (train.batch_size on each of its ranks): the store, built on one
    // rank, is the same whatever the number of ranks the batch is split over (docs/scaling.md).
    size_t build_batch = tr->max_batch * (size_t)tr->job->ranks;
    int rc =
        rd_source_build(tr->cfg, tr->ds, &io, build_batch, tokens_part_done, tokens_step, &bc, eb);
    if (rc == RD_ERR_NOMEM) // the memory grows with the ranks: say so where it is decided
        rd_err_prefix(eb,
                      "job '%s' builds the token store on one rank at its global batch of %zu "
                      "(train.batch_size %zu x %d ranks): ",
                      tr->job->name, build_batch, tr->max_batch, tr->job->ranks);
    tr->tok_stats.build_s = rd_mono_s() - bc.t0;
    tr->tok_stats.built = rc == RD_OK;
    return rc;
}

// Once built, the store only serves fetches: each PS rank maps its shards in 2 MiB pages
// (tokens.huge_pages; rd_token_store_map_huge), so that a fetch's scattered pages cost no page
// walk each.
static int tokens_map(rd_trainer *tr, rd_errbuf *eb) {
    const rd_config *cfg = tr->cfg;
    if (cfg->tokens.huge_pages == RD_TOKEN_HUGE_OFF)
        return RD_OK;
    rd_token_map_stats *ms = &tr->tok_stats.map;
    int rc = rd_token_client_map_huge(tr->tok, cfg->tokens.huge_pages, ms, eb);
    if (rc != RD_OK)
        return rc;
    tr->tok_stats.mapped = 1;
    if (!tr->quiet) {
        printf("[%s] tokens: store of %.1f MB on %d PS rank(s) mapped for serving: ", tr->job->name,
               (double)ms->used_bytes / 1e6, cfg->cluster.ps_ranks);
        if (ms->huge_kb >= 0)
            printf("%.1f of %.1f MB resident in 2 MiB pages", (double)ms->huge_kb / 1e3,
                   (double)ms->resident_kb / 1e3);
        else
            printf("page mapping unknown");
        printf(", %u of %u shards re-read", ms->reread, ms->shards);
        if (ms->note != RD_TOKEN_HUGE_REREAD)
            printf(" (%s)", rd_token_huge_note_text(ms->note));
        printf(" (%.1f s)\n", ms->seconds);
        fflush(stdout);
    }
    return RD_OK;
}

// Every worker job starts training only once the store is built: the builder job's rank 0 builds
// it and tells the rank 0 of every other job; each job's rank 0 then releases its ranks.
static int tokens_ready(rd_trainer *tr, rd_errbuf *eb) {
    if (tr->tok_job < 0)
        return RD_OK;
    const rd_comm *c = tr->comm;
    const int poll = tr->cfg->cluster.poll_us_max;
    int rc = RD_OK;
    if (c->job_rank == 0) {
        if (c->job_index == tr->tok_job) {
            rc = tokens_build(tr, eb);
            if (rc == RD_OK)
                rc = tokens_map(tr, eb);
            for (int j = 0; j < c->n_jobs; j++) {
                if (j == c->job_index)
                    continue;
                MPI_Request r;
                RD_MPI_CHECK(
                    MPI_Isend(&rc, 1, MPI_INT, c->job_first[j], TAG_TOKENS_READY, c->world, &r));
                rd_comm_wait(&r, poll);
            }
        } else {
            MPI_Request r;
            RD_MPI_CHECK(MPI_Irecv(&rc, 1, MPI_INT, c->job_first[tr->tok_job], TAG_TOKENS_READY,
                                   c->world, &r));
            rd_comm_wait(&r, poll);
            if (rc != RD_OK)
                rd_err_set(eb, rc, "the token store was not built (job '%s' failed)",
                           c->job_name[tr->tok_job]);
        }
    }
    int st = rc;
    job_bcast_int(tr, &st);
    if (st != RD_OK && rc == RD_OK)
        rc = rd_err_set(eb, st, "the token store was not built (job rank 0 failed)");
    return rc;
}

int rd_trainer_run(rd_trainer *tr, rd_trainer_result *res, rd_errbuf *eb) {
    const rd_config *cfg = tr->cfg;
    const int W = tr->comm->job_size, me = tr->comm->job_rank;
    memset(res, 0, sizeof *res);
    tr->res = res;
    tr->n_restored = 0;
    snprintf(res->job, sizeof res->job, "%s", tr->job->name);
    snprintf(res->model, sizeof res->model, "%s", tr->mcfg->name);
    res->ranks = W;
    res->neg_keep = tr->job->negatives.rate;
    res->pos_keep = tr->job->negatives.pos_rate;
    int64_t *counts = rd_xmalloc((size_t)W * sizeof *counts);
    rd_range batch = rd_dataset_batch(tr->ds);
    uint32_t K = tr->info->n_windows;
    rd_range wend = K ? rd_dataset_window(tr->ds, K - 1) : batch;
    tr->planned = (uint64_t)cfg->train.epochs * (batch.end - batch.begin) + (wend.end - batch.end);
    tr->t_progress = rd_mono_s();
    int mode = cfg->train.order == RD_ORDER_USER ? RD_PART_USER : RD_PART_STRIDED;
    // Resume (or, for a fresh run, remove the job's earlier checkpoints), then open the target
    // logs, each step agreed by every worker of the launch: a launch that fails here has
    // trained nothing (a target log it created is removed again).
    int rc = tr->resume_dir[0] ? resume(tr, eb) : fresh_timeline(tr, eb);
    if ((rc = all_workers_ready(tr, rc, eb)) == RD_OK) {
        rc = distill_logs(tr, eb);
        if ((rc = all_workers_ready(tr, rc, eb)) != RD_OK && tr->tlog_created) {
            rd_target_log_close(tr->tlog);
            tr->tlog = NULL;
            rd_target_log_remove(cfg->distill.target_log);
        }
    }
    if (rc == RD_OK)
        rc = tokens_ready(tr, eb);
    if (rc == RD_OK)
        rc = distill_setup(tr, eb);
    if (rc == RD_OK && tr->rcv && resume_mid(tr))
        resume_consumed(tr);
    char phase[64];

    // 1. Batch phase.
    for (int e = 0; e < cfg->train.epochs && rc == RD_OK; e++) {
        int64_t skip = resume_skip(tr, e, -1);
        if (skip < 0)
            continue;
        snprintf(phase, sizeof phase, "batch epoch %d/%d", e + 1, cfg->train.epochs);
        if ((rc = distill_begin(tr, (uint32_t)e, -1, eb)) != RD_OK)
            break;
        if ((rc = resume_resend(tr, e, -1, eb)) != RD_OK)
            break;
        tr->pos_epoch = e;
        tr->pos_window = -1;
        rc = train_range(tr, batch, mode, phase, counts, skip, eb);
        if (rc == RD_OK)
            rc = distill_end(tr, eb);
        progress(tr, phase, 0, 0, 1); // end of the epoch
    }
    // 2. Stream windows: evaluate w, then train on w.
    for (uint32_t w = 0; w < K && rc == RD_OK; w++) {
        rd_range r = rd_dataset_window(tr->ds, w);
        rd_metrics_result mr;
        double es = 0;
        memset(&mr, 0, sizeof mr);
        // A resumed run does not evaluate windows evaluated before its checkpoint (their
        // metrics come from its windows.tsv; NaN, n = 0, from a checkpoint without one), nor
        // trains the steps the checkpoint holds.
        int64_t skip = resume_skip(tr, 0, (int32_t)w);
        mr.auc = mr.gauc = mr.logloss = mr.calibration = (double)NAN;
        double sps_before = 0;
        if (skip != 0 && (int)w < tr->n_restored) {
            mr = res->window[w].m;
            sps_before = res->window[w].samples_per_s;
        }
        if (skip == 0 && (rc = eval_range(tr, r, &mr, NULL, &es, eb)) != RD_OK)
            break;
        if (w < RD_TRAINER_MAX_WINDOWS) // a checkpoint inside the window records it
            res->window[w].m = mr;
        tr->win_w = (int32_t)w; // the window's throughput, also for a checkpoint inside it
        tr->win_s0 = tr->train_s;
        tr->win_n0 = tr->trained;
        snprintf(phase, sizeof phase, "stream window %u/%u", w + 1, K);
        if ((rc = distill_begin(tr, 0, (int32_t)w, eb)) != RD_OK)
            break;
        if ((rc = resume_resend(tr, cfg->train.epochs, (int32_t)w, eb)) != RD_OK)
            break;
        tr->pos_epoch = cfg->train.epochs;
        tr->pos_window = (int32_t)w;
        if (skip >= 0)
            rc = train_range(tr, r, RD_PART_STRIDED, phase, counts, skip, eb);
        if (rc == RD_OK)
            rc = distill_end(tr, eb);
        tr->win_w = -1;
        if (w < RD_TRAINER_MAX_WINDOWS) {
            res->window[w].m = mr;
            double dt = tr->train_s - tr->win_s0;
            res->window[w].samples_per_s = dt > 0 ? (double)(tr->trained - tr->win_n0) / dt : 0.0;
            if (skip < 0 || skip == RESUME_END) // trained before the checkpoint: its throughput
                res->window[w].samples_per_s = sps_before;
            res->n_windows = (int)w + 1;
        }
        if (me == 0 && !tr->quiet && !window_line_due(tr, w, K)) {
            tr->windows_unshown++;
        } else if (me == 0 && !tr->quiet) {
            // n/a, not nan, where the window leaves a figure undefined (as the final table).
            char fig[3][16];
            const double v[3] = {mr.auc, mr.gauc, mr.logloss};
            const int ok[3] = {mr.auc_valid, mr.gauc_valid, mr.n > 0};
            for (int k = 0; k < 3; k++)
                if (ok[k] && isfinite(v[k]))
                    snprintf(fig[k], sizeof fig[k], "%.4f", v[k]);
                else
                    snprintf(fig[k], sizeof fig[k], "n/a");
            char gap[160] = "";
            if (tr->windows_unshown > 0)
                snprintf(gap, sizeof gap,
                         " (%u %s since the last line not printed: every window is in the "
                         "metrics file)",
                         tr->windows_unshown, tr->windows_unshown == 1 ? "window" : "windows");
            printf("[%s] stream window %u: auc %s gauc %s logloss %s (%llu events)%s\n",
                   tr->job->name, w, fig[0], fig[1], fig[2], (unsigned long long)mr.n, gap);
            tr->t_window_line = rd_mono_s();
            tr->windows_unshown = 0;
        }
    }
    // 3. The final checkpoint (after the last training step), then the holdout, whole and warm.
    if (rc == RD_OK) {
        tr->pos_epoch = cfg->train.epochs;
        tr->pos_window = (int32_t)K;
        rc = ckpt_maybe(tr, 0, 1, 0, eb);
        // A final checkpoint (none without a checkpoint folder) answers a SIGTERM from here on.
        tr->final_ckpt = rc == RD_OK && tr->ckpt_root[0] && tr->ckpt_step == rd_kv_step(tr->kv);
        stop_after_final(tr);
    }
    if (rc == RD_OK) {
        double es = 0;
        rc = eval_range(tr, rd_dataset_holdout(tr->ds), &res->holdout.m, &res->warm.m, &es, eb);
        res->holdout.samples_per_s = es > 0 ? (double)res->holdout.m.n / es : 0.0;
        // The warm slice is scored in the same pass as the holdout, not timed on its own: its
        // throughput is not measured (nan in the metrics file, as the popularity rows').
        res->warm.samples_per_s = (double)NAN;
    }
    if (rc == RD_OK) {
        stop_after_final(tr);
        rc = distill_finish(tr, res, eb);
        stop_after_final(tr);
    }
    if (rc == RD_OK) {
        // Communication of the job: this rank's channels, summed on job rank 0.
        rd_traffic mine = tr->traffic;
        rd_kv_add_traffic(tr->kv, &mine);
        if (tr->tok)
            rd_token_client_add_traffic(tr->tok, &mine);
        rd_traffic_reduce(&mine, &res->comm, 0, tr->comm->job, cfg->cluster.poll_us_max);
    }
    rd_free(counts);
    if (rc != RD_OK)
        return rc;
    res->params = rd_model_param_count(tr->model);
    double fwd = 0, bwd = 0;
    rd_model_flops(tr->model, &fwd, &bwd);
    res->flops_per_sample = fwd;
    res->train_s = tr->train_s;
    res->train_samples = tr->trained;
    res->launch_samples = tr->trained - tr->trained0;
    res->samples_per_s = tr->train_s > 0 ? (double)res->launch_samples / tr->train_s : 0.0;
    res->final_loss = tr->loss_ema;
    uint64_t tk[2] = {tr->tok_stats.fetched_requests, tr->tok_stats.fetched_tokens}, tks[2];
    MPI_Request tkr;
    RD_MPI_CHECK(MPI_Iallreduce(tk, tks, 2, MPI_UINT64_T, MPI_SUM, tr->comm->job, &tkr));
    rd_comm_wait(&tkr, cfg->cluster.poll_us_max);
    res->tokens = tr->tok_stats;
    res->tokens.fetched_requests = tks[0];
    res->tokens.fetched_tokens = tks[1];
    if (me == 0) {
        popularity(tr, res);
        res->wall_s = rd_mono_s() - tr->t_create;
        if ((rc = write_metrics(tr, res, eb)) != RD_OK)
            return rc;
        if ((rc = write_targets(tr, &res->targets, eb)) != RD_OK)
            return rc;
    } else {
        res->n_windows = 0;
    }
    stop_after_final(tr);
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Scoring given records (the training-time reference of the serving path)

int rd_trainer_score(rd_trainer *tr, const uint64_t *recs, size_t n, float *logits, rd_errbuf *eb) {
    rd_model *m = tr->model;
    stage *s = &tr->st[0];
    int rc = RD_OK;
    uint64_t n_ev = tr->info->n_events;
    for (size_t i = 0; i < n; i++)
        if (recs[i] >= n_ev)
            return rd_err_set(eb, RD_ERR_RANGE, "score: record %llu not in [0, %llu)",
                              (unsigned long long)recs[i], (unsigned long long)n_ev);
    // Scoring reads the rows, as serving does, and leaves the stream time as trained (both as
    // eval_range does).
    const int64_t t_trained = rd_kv_time(tr->kv);
    rd_kv_set_read(tr->kv, 1);
    for (size_t done = 0; done < n && rc == RD_OK;) {
        size_t b = n - done < tr->max_batch ? n - done : tr->max_batch;
        memcpy(s->rec, recs + done, b * sizeof *recs);
        rd_batch bt;
        if ((rc = stage_build(tr, s, b, eb)) == RD_OK && (rc = stage_pull(tr, s, eb)) == RD_OK &&
            (rc = stage_wait(tr, s->ts_pull, eb)) == RD_OK &&
            (rc = stage_wait_tokens(tr, s, eb)) == RD_OK) {
            stage_batch(tr, s, &bt);
            rc = rd_model_forward(m, &bt, eb);
        }
        if (rc == RD_OK)
            for (size_t k = 0; k < b; k++)
                logits[done + k] = m->logits_main[k] + tr->logit_shift;
        done += b;
    }
    rd_kv_set_read(tr->kv, 0);
    rd_kv_set_time(tr->kv, t_trained);
    return rc;
}
