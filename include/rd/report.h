// rd/report.h — what a `recdistill train` run tells its user: report.json, the final table, and
// the quantities derived from the jobs' results (stream averages, teacher gap, transferability).
//
// Defines:
//   rd_report_roles         which jobs are the teacher, the distilled student and its raw twin
//   rd_report_eta           transferability of one slice (holdout, warm, stream mean)
//   rd_report_find_roles()  pick the three jobs from the config
//   rd_report_stream_mean() per-window metrics averaged over a job's stream windows
//   rd_report_eta_of()      eta = (AUC_student - AUC_raw) / (AUC_teacher - AUC_raw)
//   rd_report_write()       <run.out_dir>/report.json (temp + rename: complete or absent)
//   rd_report_plot()        <run.out_dir>/auc_windows.png: AUC per stream window, per job
//   rd_report_print()       the final table of every job plus eta, on stdout
//
// Roles: the teacher is the job a distilled student names (distill: true, teacher: or the first
// teacher job); the raw twin is the first student without distill whose model has the same
// architecture size (dense params and FLOPs) as the distilled student's, else the first student
// without distill. A missing role is -1 and eta is then absent (null in JSON).
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

/** Indices into the jobs' results (cfg.cluster.jobs order); -1 = absent. */
typedef struct rd_report_roles {
    int teacher;
    int student;
    int student_raw;
} rd_report_roles;

/** Transferability of one slice. */
typedef struct rd_report_eta {
    double teacher_auc, student_auc, raw_auc; // NaN when absent
    double gap;                               // teacher_auc - raw_auc (NaN when absent)
    double gain;                              // student_auc - raw_auc (NaN when absent)
    double eta;                               // gain / gap, NaN unless gap > 0
} rd_report_eta;

/** Pick the teacher, the first distilled student and its raw twin among n results. */
rd_report_roles rd_report_find_roles(const rd_config *cfg, const rd_trainer_result *res, int n);

/** Averages of r's stream windows (see the header comment). n = 0 windows gives NaN metrics. */
rd_metrics_result rd_report_stream_mean(const rd_trainer_result *r);

/** Eta of three AUCs (any may be NaN). */
rd_report_eta rd_report_eta_of(double teacher_auc, double student_auc, double raw_auc);

/**
 * Write <cfg->run.out_dir>/report.json: run, seed, config, wall_s, popularity, holdout, warm,
 * stream (per job), eta (holdout, warm, stream: eta, teacher_gap, student_gain), flops_per_sample
 * and params (per job), throughput (samples/s per job), targets (summed), jobs (details and
 * per-window metrics). Written to a temp file and renamed.
 * @return RD_OK or RD_ERR_IO (nothing left behind)
 */
int rd_report_write(
    const rd_config *cfg, const rd_trainer_result *res, int n, double wall_s, rd_errbuf *eb);

/**
 * Write <cfg->run.out_dir>/auc_windows.png: AUC of every stream window (x = window index, each
 * scored before training on it) for every job, one line per job (rd/plot.h, atomic).
 * @return RD_OK, RD_ERR_IO, RD_ERR_NOMEM
 */
int rd_report_plot(const rd_config *cfg, const rd_trainer_result *res, int n, rd_errbuf *eb);

/** Print the final table (every job's holdout, warm and stream metrics; eta) to stdout. */
void rd_report_print(const rd_config *cfg, const rd_trainer_result *res, int n);

#endif // RD_REPORT_H
