// rd/report.h — what a `recdistill train` run tells its user: report.json, the final table, and
// the quantities derived from the jobs' results (stream averages, teacher gap, transferability).
//
// Defines:
//   RD_REPORT_NOTE_MAX      size of a pair's reason / warning text
//   rd_report_pair          one distilled student, its teacher and its raw twin
//   rd_report_eta           transferability of one slice (holdout, warm, stream mean)
//   rd_report_build         what ran: build and run-time identities, for report.json
//   rd_report_find_pairs()  pair every distilled student with its teacher and raw twin
//   rd_report_stream_mean() per-window metrics averaged over a job's stream windows
//   rd_report_eta_of()      eta = (AUC_student - AUC_raw) / (AUC_teacher - AUC_raw)
//   rd_report_write()       <run.out_dir>/report.json (temp + rename: complete or absent)
//   rd_report_plot()        <run.out_dir>/auc_windows.png: AUC per stream window, per job
//   rd_report_print()       the final table of every job plus eta, on stdout
//   rd_report_json_string() a string as report.json writes it (for other JSON outputs)
//
// Pairs: one per distilled student (distill: true), in job order. Its teacher is the job it
// names (teacher:), else the first teacher job, as the trainer reads targets. Its raw twin is a
// student without distill, chosen in this order: (1) one whose init_as names the student (the
// twin the config declares); (2) one with the student's model shape (same dense params and
// FLOPs per sample). Within a tier a twin whose training is comparable (see below) comes first,
// then (tier 2) one whose init_as names no other job, then job order. A raw student of another
// shape is never used: a student without a twin, or whose teacher is not a job of this launch
// (replayed targets), has no eta, and the pair's reason says why. In a replaying launch
// (distill.replay) no pair has a teacher: a teacher job there trains anew and sends nothing, so
// it is not the one whose logged targets the student learnt from.
//
// Comparable: eta credits distillation with the gain over the twin, so the twin should train the
// same steps: the same model shape, the same rank count (the global batch and the step count
// depend on it) and the same sampling (negatives.rate, negatives.pos_rate). A twin that differs
// is still paired — the config asked for it, and the AUCs, gap and gain stay worth seeing — but
// the pair carries a warning naming each difference, printed above its eta lines and recorded
// in report.json, since the gain then mixes that difference in.
//
// Stream mean: the unweighted mean over the job's stream windows of AUC, GAUC, logloss and
// calibration (each window has the same weight, as in progressive validation reports); windows
// where a metric is undefined are skipped for that metric; samples is the windows' total.
//
// Eta: defined when the three AUCs are finite and the teacher gap AUC_teacher - AUC_raw is > 0;
// otherwise NaN (null in JSON) — the gap is reported beside it either way, since eta is a ratio
// of two small differences and means little when the gap is within the seed spread.
#ifndef RD_REPORT_H
#define RD_REPORT_H

#include "rd/config.h"
#include "rd/error.h"
#include "rd/metrics.h"
#include "rd/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_REPORT_NOTE_MAX 384

/** A distilled student and what its eta is measured against (indices into the results, in
 *  cfg.cluster.jobs order; -1 = absent). */
typedef struct rd_report_pair {
    int teacher;                      // the job the student distils from; -1 = not in the launch
    int student;                      // a distill: true student
    int student_raw;                  // its no-distillation twin; -1 = none
    char reason[RD_REPORT_NOTE_MAX];  // why there is no eta ("" when teacher and twin exist)
    char warning[RD_REPORT_NOTE_MAX]; // what differs between student and twin ("" = comparable)
} rd_report_pair;

/** Transferability of one slice. */
typedef struct rd_report_eta {
    double teacher_auc, student_auc, raw_auc; // NaN when absent
    double gap;                               // teacher_auc - raw_auc (NaN when absent)
    double gain;                              // student_auc - raw_auc (NaN when absent)
    double eta;                               // gain / gap, NaN unless gap > 0
    // The slice's events of each class, the fewest of the three jobs (0 from rd_report_eta_of;
    // the stream's are summed over its windows), and whether either is under
    // RD_REPORT_FEW_CLASS (few: eta is then mostly noise)
    uint64_t positives, negatives;
    int few;
    int tiny; // eta is defined but the gap is under RD_REPORT_TINY_GAP (eta mostly noise)
} rd_report_eta;

/**
 * Pair every distilled student among the first n jobs with its teacher and raw twin (see the
 * header comment).
 * @param[out] out  RD_MAX_JOBS entries; the first (return value) are filled, in job order
 * @return the number of pairs (0: no distilled student)
 */
int rd_report_find_pairs(const rd_config *cfg,
                         const rd_trainer_result *res,
                         int n,
                         rd_report_pair *out);

/** What report.json records of the program that wrote it (borrowed strings, NULL: no key). */
typedef struct rd_report_build {
    const char *build;   // the build identity, rd_app_build_id(): "build"
    const char *runtime; // world rank 0's run-time identity, rd_app_runtime_id(): "runtime"
    int runtime_mixed;   // 1: some rank's run-time identity differs ("runtime_mixed", with runtime)
    const char *const *sets; // the config's overrides, `train --set` ("config_sets", in order)
    int n_sets;
} rd_report_build;

/** Averages of r's stream windows (see the header comment). n = 0 windows gives NaN metrics. */
rd_metrics_result rd_report_stream_mean(const rd_trainer_result *r);

/** Eta of three AUCs (any may be NaN). */
rd_report_eta rd_report_eta_of(double teacher_auc, double student_auc, double raw_auc);

/**
 * Write <cfg->run.out_dir>/report.json: run, seed, config, wall_s, popularity, holdout, warm,
 * stream (per job); eta: the first pair that has one (teacher, student, student_raw, warning
 * (null or text), and holdout, warm, stream: eta, teacher_gap, student_gain, the three AUCs,
 * positives, negatives, few_events: either under RD_REPORT_FEW_CLASS, and tiny_gap: eta defined
 * from a gap under RD_REPORT_TINY_GAP), or
 * null with eta_reason beside it; eta_pairs: every pair in job order, with the same keys plus
 * reason (null or text; the slices are null when there is a reason); flops_per_sample and params
 * (per job), throughput (samples/s per job, of this launch: launch_samples / train_s), targets
 * (summed), comm (this launch's traffic per launch sample), jobs (details and per-window
 * metrics). Written to a temp file and renamed.
 * @param[in] build  what ran: "build", then "runtime" and "runtime_mixed", after "config" (NULL,
 *                   or a NULL field: no such key)
 * @return RD_OK or RD_ERR_IO (nothing left behind)
 */
int rd_report_write(const rd_config *cfg,
                    const rd_trainer_result *res,
                    int n,
                    double wall_s,
                    const rd_report_build *build,
                    rd_errbuf *eb);

/**
 * Write <cfg->run.out_dir>/auc_windows.png: AUC of every stream window (x = window index, each
 * scored before training on it) for every job, one line per job (rd/plot.h, atomic).
 * @return RD_OK, RD_ERR_IO, RD_ERR_NOMEM
 */
int rd_report_plot(const rd_config *cfg, const rd_trainer_result *res, int n, rd_errbuf *eb);

/** Print the final table to stdout: every job's holdout, warm and stream metrics, then per pair
 *  its warning if any and three eta lines ("eta <slice> ..."), or one "eta n/a (<reason>)" line
 *  for a pair without eta or a launch without a distilled student. */
void rd_report_print(const rd_config *cfg, const rd_trainer_result *res, int n);

/** A teacher gap (AUC) under which eta carries a note that it is mostly noise (an eta of -92 from
 *  a gap of +0.00005 was printed plain): in the table, and as tiny_gap in report.json, whose eta
 *  keeps its number (the gap is beside it). */
#define RD_REPORT_TINY_GAP 0.001

/** Events of a class (positives or negatives) on a slice under which its eta carries a caution,
 *  in the table and as few_events in report.json: with 100 of each an AUC near 0.7 has a
 *  standard error of about 0.036 (Hanley and McNeil, 1982), more than most teacher gaps
 *  (0.01 to 0.05), so eta, a ratio of two AUC differences, is mostly noise below it (an eta
 *  printed plain from a holdout of 30 events). */
#define RD_REPORT_FEW_CLASS 100

/** Write v as a JSON string, or null when v is NULL or empty: quotes, backslashes and control
 *  characters escaped, and a byte that is not valid UTF-8 (a path in another encoding) written
 *  as the code point of its Latin-1 reading, so the output stays valid JSON. */
void rd_report_json_string(FILE *f, const char *v);

#ifdef __cplusplus
}
#endif
#endif // RD_REPORT_H
