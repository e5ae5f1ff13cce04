// test_report.c — the run report: stream averages, the choice of teacher / student / raw twin,
// eta and its undefined cases, report.json contents (checked by substring against values computed
// here) and the atomic write (an unwritable folder leaves nothing).
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/report.h"

static void set_m(rd_metrics_result *m, double auc, double logloss, uint64_t n) {
    memset(m, 0, sizeof *m);
    m->n = n;
    m->auc = auc;
    m->auc_valid = isfinite(auc);
    m->gauc = auc - 0.05;
    m->gauc_valid = isfinite(auc);
    m->logloss = logloss;
    m->calibration = 1.0;
    m->calibration_valid = 1;
    m->positives = n / 2;
}

static void add_job(rd_config *cfg, const char *name, int role, int distill, const char *teacher) {
    rd_job_config *j = &cfg->cluster.jobs[cfg->cluster.n_jobs++];
    memset(j, 0, sizeof *j);
    snprintf(j->name, sizeof j->name, "%s", name);
    snprintf(j->model, sizeof j->model, "%s", name);
    j->role = role;
    j->distill = distill;
    j->ranks = 1;
    j->negatives.rate = j->negatives.pos_rate = 1;
    if (teacher)
        snprintf(j->teacher, sizeof j->teacher, "%s", teacher);
}

static void test_eta_of(void **state) {
    (void)state;
    rd_report_eta e = rd_report_eta_of(0.78, 0.77, 0.76);
    assert_true(fabs(e.gap - 0.02) < 1e-12);
    assert_true(fabs(e.gain - 0.01) < 1e-12);
    assert_true(fabs(e.eta - 0.5) < 1e-9);
    e = rd_report_eta_of(0.76, 0.755, 0.77); // teacher below raw: eta undefined, gap negative
    assert_true(isnan(e.eta));
    assert_true(e.gap < 0);
    e = rd_report_eta_of(0.77, 0.78, 0.77); // zero gap
    assert_true(isnan(e.eta));
    e = rd_report_eta_of((double)NAN, 0.78, 0.77);
    assert_true(isnan(e.eta) && isnan(e.gap));
    e = rd_report_eta_of(0.8, 0.74, 0.76); // distillation hurt: negative eta
    assert_true(fabs(e.eta - (-0.5)) < 1e-9);
    assert_false(e.tiny);
    // A gap under RD_REPORT_TINY_GAP keeps its eta, flagged; an undefined eta is never tiny.
    e = rd_report_eta_of(0.7605, 0.7601, 0.76);
    assert_true(fabs(e.eta - 0.2) < 1e-6 && e.tiny);
    e = rd_report_eta_of(0.76, 0.7601, 0.76);
    assert_true(isnan(e.eta) && !e.tiny);
}

static void test_stream_mean(void **state) {
    (void)state;
    rd_trainer_result *r = rd_xcalloc(1, sizeof *r); // ~1.2 MB: not on the stack
    rd_metrics_result m = rd_report_stream_mean(r);
    assert_true(isnan(m.auc) && !m.auc_valid && m.n == 0);
    r->n_windows = 3;
    set_m(&r->window[0].m, 0.70, 0.6, 100);
    set_m(&r->window[1].m, (double)NAN, 0.5, 10); // one class only: AUC undefined, skipped
    set_m(&r->window[2].m, 0.80, 0.4, 300);
    m = rd_report_stream_mean(r);
    assert_true(m.auc_valid);
    assert_true(fabs(m.auc - 0.75) < 1e-12); // unweighted mean of the defined ones
    assert_true(fabs(m.logloss - 0.5) < 1e-12);
    assert_int_equal(m.n, 410);
    // As many windows as a config allows all count (a table of 64 once dropped the rest).
    r->n_windows = RD_SPLIT_MAX_WINDOWS;
    for (int w = 0; w < r->n_windows; w++)
        set_m(&r->window[w].m, w < RD_SPLIT_MAX_WINDOWS / 2 ? 0.60 : 0.80, 0.5, 2);
    m = rd_report_stream_mean(r);
    assert_int_equal(m.n, 2 * RD_SPLIT_MAX_WINDOWS);
    assert_true(fabs(m.auc - 0.70) < 1e-9);
    rd_free(r);
}

// Results of the jobs in cfg: params (flops = 2 x params) per job, names copied.
static rd_trainer_result *results(const rd_config *cfg, const uint64_t *params) {
    rd_trainer_result *res = rd_xcalloc((size_t)cfg->cluster.n_jobs, sizeof *res); // ~1.2 MB each
    for (int j = 0; j < cfg->cluster.n_jobs; j++) {
        snprintf(res[j].job, sizeof res[j].job, "%s", cfg->cluster.jobs[j].name);
        res[j].params = params[j];
        res[j].flops_per_sample = (double)params[j] * 2;
        res[j].ranks = cfg->cluster.jobs[j].ranks;
    }
    return res;
}

static void test_pairs(void **state) {
    (void)state;
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    rd_report_pair pr[RD_MAX_JOBS];

    // QA report C #2 (repro multi.yaml): student2 (from teacher2, 106 params) comes first and has
    // no twin; student_raw is student's twin (init_as) with student's shape. student2 was paired
    // with student_raw and student's own eta was never reported.
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "student2", RD_JOB_STUDENT, 1, "teacher2");
    add_job(cfg, "teacher", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "teacher2", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "student", RD_JOB_STUDENT, 1, NULL);
    add_job(cfg, "student_raw", RD_JOB_STUDENT, 0, NULL);
    snprintf(cfg->cluster.jobs[4].init_as, RD_NAME_MAX, "student");
    rd_trainer_result *res = results(cfg, (const uint64_t[]){106, 5000, 3000, 302, 302});
    assert_int_equal(rd_report_find_pairs(cfg, res, 5, pr), 2);
    assert_int_equal(pr[0].student, 0);
    assert_int_equal(pr[0].teacher, 2); // the teacher it names
    assert_int_equal(pr[0].student_raw, -1);
    assert_non_null(strstr(pr[0].reason, "no student_raw twin of student2"));
    assert_non_null(strstr(pr[0].reason, "106 params"));
    assert_int_equal(pr[1].student, 3);
    assert_int_equal(pr[1].teacher, 1); // none named: the first teacher job
    assert_int_equal(pr[1].student_raw, 4);
    assert_string_equal(pr[1].reason, "");
    assert_string_equal(pr[1].warning, "");
    rd_free(res);

    // The twin init_as names wins over an earlier raw student of the same shape; without it, a
    // same-shape raw student that trains alike wins over one on another rank count, and one
    // that is no other student's declared twin over one that is.
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "t", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "s", RD_JOB_STUDENT, 1, NULL);
    add_job(cfg, "raw_a", RD_JOB_STUDENT, 0, NULL);
    add_job(cfg, "raw_b", RD_JOB_STUDENT, 0, NULL);
    add_job(cfg, "raw_c", RD_JOB_STUDENT, 0, NULL);
    snprintf(cfg->cluster.jobs[4].init_as, RD_NAME_MAX, "s");
    res = results(cfg, (const uint64_t[]){900, 50, 50, 50, 70});
    assert_int_equal(rd_report_find_pairs(cfg, res, 5, pr), 1);
    assert_int_equal(pr[0].student_raw, 4); // named, though of another shape: paired, warned
    assert_non_null(strstr(pr[0].warning, "model shape"));
    cfg->cluster.jobs[4].init_as[0] = 0; // raw_c unrelated now: never used
    cfg->cluster.jobs[1].ranks = 2;
    cfg->cluster.jobs[3].ranks = 2;
    assert_int_equal(rd_report_find_pairs(cfg, res, 5, pr), 1);
    assert_int_equal(pr[0].student_raw, 3);
    assert_string_equal(pr[0].warning, "");
    cfg->cluster.jobs[3].ranks = 1; // both on other rank counts: raw_a, raw_b claimed elsewhere
    snprintf(cfg->cluster.jobs[2].init_as, RD_NAME_MAX, "t");
    assert_int_equal(rd_report_find_pairs(cfg, res, 5, pr), 1);
    assert_int_equal(pr[0].student_raw, 3);
    rd_free(res);

    // QA report C #12 (repro order.yaml): the twin on 1 rank, the student on 2 (and sampling
    // negatives differently): paired, with a warning naming both differences.
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "student_raw", RD_JOB_STUDENT, 0, NULL);
    add_job(cfg, "student", RD_JOB_STUDENT, 1, NULL);
    add_job(cfg, "teacher", RD_JOB_TEACHER, 0, NULL);
    snprintf(cfg->cluster.jobs[0].init_as, RD_NAME_MAX, "student");
    cfg->cluster.jobs[1].ranks = 2;
    cfg->cluster.jobs[1].negatives.rate = 0.3;
    cfg->train.batch_size = 64;
    res = results(cfg, (const uint64_t[]){302, 302, 5000});
    assert_int_equal(rd_report_find_pairs(cfg, res, 3, pr), 1);
    assert_int_equal(pr[0].student_raw, 0);
    assert_int_equal(pr[0].teacher, 2);
    assert_string_equal(pr[0].reason, "");
    assert_non_null(strstr(pr[0].warning, "student trains on 2 (global batch 128), student_raw "
                                          "on 1 (global batch 64)"));
    assert_non_null(strstr(pr[0].warning, "sampling: student keeps negatives at rate 0.3"));

    // QA report C #5: no raw student at all, and a teacher that is not a job (replayed targets).
    cfg->cluster.jobs[0].distill = 1;
    snprintf(cfg->cluster.jobs[0].teacher, RD_NAME_MAX, "gone");
    assert_int_equal(rd_report_find_pairs(cfg, res, 3, pr), 2);
    assert_int_equal(pr[0].teacher, -1);
    assert_non_null(strstr(pr[0].reason, "no student_raw job: no distill: false student"));
    assert_non_null(strstr(pr[0].reason, "teacher gone of student_raw is not a job"));
    assert_int_equal(pr[1].student_raw, -1);
    assert_non_null(strstr(pr[1].reason, "no student_raw job"));
    cfg->cluster.n_jobs = 1; // no distilled student: no pair
    cfg->cluster.jobs[0].distill = 0;
    assert_int_equal(rd_report_find_pairs(cfg, res, 1, pr), 0);
    rd_free(res);

    // A replaying launch that also holds the teacher job (the pipeline config with replay: true):
    // the teacher trains anew and sends nothing, so the student learnt from the log's teacher,
    // not from this one. Its gap was reported as the pair's (a teacher of another model gave
    // "teacher gap -0.0309" against the student's +0.0308 gain).
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "teacher", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "student", RD_JOB_STUDENT, 1, "teacher");
    add_job(cfg, "student_raw", RD_JOB_STUDENT, 0, NULL);
    snprintf(cfg->cluster.jobs[2].init_as, RD_NAME_MAX, "student");
    cfg->distill.replay = 1;
    res = results(cfg, (const uint64_t[]){5000, 302, 302});
    assert_int_equal(rd_report_find_pairs(cfg, res, 3, pr), 1);
    assert_int_equal(pr[0].teacher, -1);
    assert_int_equal(pr[0].student_raw, 2); // the twin is still named
    assert_non_null(strstr(pr[0].reason, "student replays its targets from distill.target_log: "
                                         "teacher teacher of this launch trains anew"));
    cfg->distill.replay = 0; // live: the same launch is a pair with an eta
    assert_int_equal(rd_report_find_pairs(cfg, res, 3, pr), 1);
    assert_int_equal(pr[0].teacher, 0);
    assert_string_equal(pr[0].reason, "");
    rd_free(res);
    rd_free(cfg);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = rd_xcalloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

// A teacher, its distilled student and the student's raw twin, reporting into `dir` (free it).
static rd_config *distill_config(const char *dir) {
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "teacher", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "student", RD_JOB_STUDENT, 1, NULL);
    add_job(cfg, "student_raw", RD_JOB_STUDENT, 0, NULL);
    snprintf(cfg->run.out_dir, sizeof cfg->run.out_dir, "%s", dir);
    snprintf(cfg->run.name, sizeof cfg->run.name, "unit");
    return cfg;
}

static void test_write(void **state) {
    (void)state;
    char dir[] = "/tmp/rd_test_report_XXXXXX";
    assert_non_null(mkdtemp(dir));
    rd_config *cfg = distill_config(dir);
    rd_trainer_result *res = rd_xcalloc(3, sizeof *res); // ~1.2 MB each
    const double auc[3] = {0.80, 0.77, 0.76};
    for (int j = 0; j < 3; j++) {
        snprintf(res[j].job, sizeof res[j].job, "%s", cfg->cluster.jobs[j].name);
        res[j].params = j ? 100 : 10000;
        res[j].flops_per_sample = j ? 200 : 20000;
        set_m(&res[j].holdout.m, auc[j], 0.5, 1000);
        set_m(&res[j].warm.m, auc[j] + 0.01 * j, 0.5, 800);
        res[j].n_windows = 2;
        set_m(&res[j].window[0].m, auc[j] - 0.01, 0.55, 200);
        set_m(&res[j].window[1].m, auc[j] + 0.03, 0.55, 200);
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    const char *sets[] = {"train.lr=0.5", "models.t.seq={kind: \"din\"}"};
    const rd_report_build build = {"recdistill 0.1.0 src=0123", "mpi=MPICH-4.0.2 openblas=0.3.21",
                                   1, sets, 2};
    assert_int_equal(rd_report_write(cfg, res, 3, 1.5, &build, &eb), RD_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/report.json", dir);
    char *js = slurp(path);
    assert_non_null(js);
    // The config's overrides (train --set) follow the config, in order, as JSON strings.
    assert_non_null(strstr(js, "\"config_sets\": [\"train.lr=0.5\", "
                               "\"models.t.seq={kind: \\\"din\\\"}\"],\n  \"build\""));
    // The build identity follows the config, then rank 0's run-time identity and whether some
    // rank's differed (a NULL build leaves the keys out: the other cases).
    assert_non_null(strstr(js, "\"build\": \"recdistill 0.1.0 src=0123\",\n  \"runtime\": "
                               "\"mpi=MPICH-4.0.2 openblas=0.3.21\",\n  \"runtime_mixed\": true,\n"
                               "  \"wall_s\""));
    // holdout eta = (0.77 - 0.76) / (0.80 - 0.76) = 0.25; warm (0.78 - 0.78) / (0.8 - 0.78) = 0.
    // Every figure reads back to its double: the gap 0.80 - 0.76 is 0.040000000000000036.
    assert_non_null(
        strstr(js, "\"holdout\": {\"eta\": 0.25, \"teacher_gap\": 0.040000000000000036,"));
    assert_non_null(strstr(js, "\"warm\": {\"eta\": 0, \"teacher_gap\": 0.020000000000000018,"));
    // stream: mean of (auc - 0.01, auc + 0.03) = auc + 0.01 for each: eta 0.25
    assert_non_null(strstr(js, "\"stream\": {\"eta\": 0.25,"));
    assert_non_null(strstr(js, "\"stream\": {\n    \"teacher\": {\n      \"auc\": 0.81,"));
    assert_non_null(strstr(js, "\"flops_per_sample\": {\"teacher\": 20000,"));
    assert_non_null(strstr(js, "\"params\": {\"teacher\": 10000, \"student\": 100"));
    // No temporary file is left beside it (report.json.tmp.<pid>.<hex>, rd_lmdbx_outfile).
    DIR *dd = opendir(dir);
    assert_non_null(dd);
    for (struct dirent *de; (de = readdir(dd));)
        assert_null(strstr(de->d_name, ".tmp"));
    closedir(dd);
    rd_free(js);
    // The per-window plot: a PNG (signature, IHDR of 800 x 500).
    res[1].window[1].m.auc_valid = 0; // an undefined AUC is skipped, not drawn as 0
    assert_int_equal(rd_report_plot(cfg, res, 3, &eb), RD_OK);
    snprintf(path, sizeof path, "%s/auc_windows.png", dir);
    FILE *pf = fopen(path, "rb");
    assert_non_null(pf);
    unsigned char hdr[24];
    assert_int_equal(fread(hdr, 1, sizeof hdr, pf), sizeof hdr);
    fclose(pf);
    assert_memory_equal(hdr, "\x89PNG\r\n\x1a\n", 8);
    assert_memory_equal(hdr + 12, "IHDR", 4);
    assert_int_equal((hdr[16] << 24) | (hdr[17] << 16) | (hdr[18] << 8) | hdr[19], 800);
    assert_int_equal((hdr[20] << 24) | (hdr[21] << 16) | (hdr[22] << 8) | hdr[23], 500);
    assert_int_equal(remove(path), 0);

    // A folder that does not exist: an error naming the file, nothing written.
    snprintf(cfg->run.out_dir, sizeof cfg->run.out_dir, "%s/missing/sub", dir);
    assert_int_equal(rd_report_write(cfg, res, 3, 1.5, NULL, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "missing/sub/report.json"));
    snprintf(path, sizeof path, "%s/report.json", dir);
    assert_int_equal(remove(path), 0);
    assert_int_equal(rmdir(dir), 0);
    rd_free(res);
    rd_free(cfg);
}

// The number after the first `key` at or after p (strtod), and where it ends; NaN when absent.
static double num_after(const char *p, const char *key, const char **end) {
    const char *k = p ? strstr(p, key) : NULL;
    if (!k)
        return (double)NAN;
    char *e = NULL;
    double v = strtod(k + strlen(key), &e);
    if (end)
        *end = e;
    return v;
}

// A reader recomputes eta from the three AUCs report.json prints beside it, and compares the AUCs
// with the job slices: every figure must read back to the double the run computed. With "%.6f"
// the AUCs of a real run (0.744715..., 0.730018..., 0.681760...) gave back eta 0.766548 against
// the printed 0.766537.
static void test_write_round_trip(void **state) {
    (void)state;
    char dir[] = "/tmp/rd_test_report_rt_XXXXXX";
    assert_non_null(mkdtemp(dir));
    rd_config *cfg = distill_config(dir);
    rd_trainer_result *res = rd_xcalloc(3, sizeof *res);
    const double auc[3] = {0.74471537019231, 0.73001812345679, 0.68176043219876};
    for (int j = 0; j < 3; j++) {
        snprintf(res[j].job, sizeof res[j].job, "%s", cfg->cluster.jobs[j].name);
        res[j].params = 100;
        res[j].flops_per_sample = 200;
        set_m(&res[j].holdout.m, auc[j], 0.53089812345, 12000);
        set_m(&res[j].warm.m, auc[j], 0.53089812345, 12000);
        res[j].n_windows = 1;
        set_m(&res[j].window[0].m, auc[j] + 1e-7, 0.5, 2400);
    }
    res[0].wall_s = 76.82647013664246;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_report_write(cfg, res, 3, 76.82647013664246, NULL, &eb), RD_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/report.json", dir);
    char *js = slurp(path);
    assert_non_null(js);
    const char *eta = strstr(js, "\"eta\": {");
    assert_non_null(eta);
    const char *h = strstr(eta, "\"holdout\": {");
    double e = num_after(h, "\"eta\": ", NULL), t = num_after(h, "\"teacher_auc\": ", NULL);
    double s = num_after(h, "\"student_auc\": ", NULL),
           r = num_after(h, "\"student_raw_auc\": ", NULL);
    double gap = num_after(h, "\"teacher_gap\": ", NULL);
    double gain = num_after(h, "\"student_gain\": ", NULL);
    assert_true(t == auc[0] && s == auc[1] && r == auc[2]);
    assert_true(gap == t - r && gain == s - r);
    assert_true(e == (s - r) / (t - r)); // the same operations on the same doubles
    // The job slice holds the same figure; the stream window keeps its 1e-7.
    assert_true(num_after(strstr(js, "\"holdout\": {\n    \"teacher\""), "\"auc\": ", NULL) ==
                auc[0]);
    assert_true(num_after(strstr(js, "\"windows\": ["), "\"auc\": ", NULL) == auc[0] + 1e-7);
    assert_true(num_after(js, "\"wall_s\": ", NULL) == 76.82647013664246);
    // A round figure stays short: no trailing zeros to 17 digits.
    assert_non_null(strstr(js, "\"flops_per_sample\": {\"teacher\": 200, "));
    rd_free(js);
    assert_int_equal(remove(path), 0);
    assert_int_equal(rmdir(dir), 0);
    rd_free(res);
    rd_free(cfg);
}

// report.json where figures are undefined: a holdout where the teacher ranks below the twin (gap
// < 0), an empty warm slice, stream windows of one class, an empty popularity warm slice, NaN
// throughput and loss. Every such figure is null (JSON has no NaN or Infinity), eta is null with
// the gap and gain beside it where they are defined, and no bare nan/inf token is written.
static void test_write_undefined(void **state) {
    (void)state;
    char dir[] = "/tmp/rd_test_report_undef_XXXXXX";
    assert_non_null(mkdtemp(dir));
    rd_config *cfg = distill_config(dir);
    rd_trainer_result *res = rd_xcalloc(3, sizeof *res);
    const double auc[3] = {0.70, 0.74, 0.75}; // the teacher below its twin: gap -0.05
    for (int j = 0; j < 3; j++) {
        snprintf(res[j].job, sizeof res[j].job, "%s", cfg->cluster.jobs[j].name);
        res[j].params = j ? 100 : 10000;
        res[j].flops_per_sample = j ? 200 : 20000;
        res[j].samples_per_s = (double)NAN;
        res[j].final_loss = (double)INFINITY;
        set_m(&res[j].holdout.m, auc[j], 0.5, 1000);
        set_m(&res[j].warm.m, (double)NAN, (double)NAN, 0);
        res[j].warm.m.calibration = (double)NAN;
        res[j].warm.m.calibration_valid = 0;
        res[j].n_windows = 2;
        for (int w = 0; w < 2; w++) {
            set_m(&res[j].window[w].m, (double)NAN, 0.3, 50); // every event a positive
            res[j].window[w].m.positives = 50;
        }
    }
    set_m(&res[0].pop_holdout.m, 0.6, 0.6, 1000);
    set_m(&res[0].pop_warm.m, (double)NAN, (double)NAN, 0);
    res[0].pop_warm.m.calibration = (double)NAN;
    res[0].pop_warm.m.calibration_valid = 0;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_report_write(cfg, res, 3, (double)NAN, NULL, &eb), RD_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/report.json", dir);
    char *js = slurp(path);
    assert_non_null(js);
    for (const char *p = js; *p; p++) // outside strings, no nan, inf or NaN token
        assert_true(strncasecmp(p, "nan", 3) != 0 && strncasecmp(p, "inf", 3) != 0);
    assert_non_null(strstr(js, "\"wall_s\": null,"));
    assert_non_null(strstr(js, "\"warm\": {\n      \"auc\": null,\n      \"gauc\": null,\n      "
                               "\"logloss\": null,\n      \"calibration\": null,\n      "
                               "\"samples\": 0\n    }"));
    assert_non_null(strstr(js, "\"holdout\": {\"eta\": null, \"teacher_gap\": -0.05"));
    assert_non_null(strstr(js, "\"warm\": {\"eta\": null, \"teacher_gap\": null, "
                               "\"student_gain\": null, \"teacher_auc\": null"));
    assert_non_null(strstr(js, "\"stream\": {\"eta\": null, \"teacher_gap\": null"));
    assert_non_null(strstr(js, "\"positives\": 100, \"negatives\": 0, \"few_events\": true"));
    assert_non_null(strstr(js, "\"samples_per_s\": null,\n      \"final_loss\": null,"));
    assert_non_null(strstr(js, "{\"auc\": null, \"gauc\": null, \"logloss\": 0.3, "
                               "\"calibration\": 1, \"samples\": 50}"));
    rd_free(js);
    assert_int_equal(remove(path), 0);
    assert_int_equal(rmdir(dir), 0);
    rd_free(res);
    rd_free(cfg);
}

// Run rd_report_print with stdout sent to a temporary file; returns what it printed.
static char *printed(const rd_config *cfg, const rd_trainer_result *res, int n) {
    char path[] = "/tmp/rd_test_report_out_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    rd_report_print(cfg, res, n);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    close(fd);
    char *out = slurp(path);
    assert_non_null(out);
    assert_int_equal(remove(path), 0);
    return out;
}

static int count_lines(const char *text, const char *prefix) {
    int n = 0;
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        n += strncmp(l, prefix, strlen(prefix)) == 0;
    return n;
}

// Several pairs (QA report C #2): one eta block per pair in the table and in eta_pairs; eta keeps
// the first pair that has one. No twin (C #5): "eta n/a (reason)" and eta_reason. A twin on
// other ranks (C #12): a warning above its eta lines and in report.json.
static void test_pairs_reported(void **state) {
    (void)state;
    char dir[] = "/tmp/rd_test_report_XXXXXX";
    assert_non_null(mkdtemp(dir));
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    snprintf(cfg->run.out_dir, sizeof cfg->run.out_dir, "%s", dir);
    snprintf(cfg->run.name, sizeof cfg->run.name, "pairs");
    cfg->train.batch_size = 64;
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "student2", RD_JOB_STUDENT, 1, "teacher2");
    add_job(cfg, "teacher", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "teacher2", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "student", RD_JOB_STUDENT, 1, NULL);
    add_job(cfg, "student_raw", RD_JOB_STUDENT, 0, NULL);
    add_job(cfg, "student3", RD_JOB_STUDENT, 1, "teacher2");
    add_job(cfg, "raw3", RD_JOB_STUDENT, 0, NULL);
    snprintf(cfg->cluster.jobs[4].init_as, RD_NAME_MAX, "student");
    snprintf(cfg->cluster.jobs[6].init_as, RD_NAME_MAX, "student3");
    cfg->cluster.jobs[5].ranks = 2;
    rd_trainer_result *res = results(cfg, (const uint64_t[]){106, 5000, 3000, 302, 302, 80, 80});
    const double auc[7] = {0.70, 0.80, 0.78, 0.77, 0.76, 0.75, 0.74};
    for (int j = 0; j < 7; j++) {
        set_m(&res[j].holdout.m, auc[j], 0.5, 1000);
        set_m(&res[j].warm.m, auc[j], 0.5, 800);
        res[j].n_windows = 1;
        set_m(&res[j].window[0].m, auc[j], 0.5, 100);
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_report_write(cfg, res, 7, 1.0, NULL, &eb), RD_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/report.json", dir);
    char *js = slurp(path);
    assert_non_null(js);
    // eta: student / student_raw / teacher (0.25), not student2 against student_raw.
    assert_non_null(strstr(js,
                           "\"eta\": {\n    \"teacher\": \"teacher\", \"student\": \"student\", "
                           "\"student_raw\": \"student_raw\",\n    \"comparable\": true, "
                           "\"warning\": null, \"reason\": null,\n    \"holdout\": {\"eta\": "
                           "0.25, \"teacher_gap\": 0.040000000000000036,"));
    assert_null(strstr(js, "\"eta_reason\""));
    const char *list = strstr(js, "\"eta_pairs\": [");
    assert_non_null(list);
    const char *p2 = strstr(list, "\"student\": \"student2\", \"student_raw\": null");
    const char *p1 = strstr(list, "\"student\": \"student\", \"student_raw\": \"student_raw\"");
    const char *p3 = strstr(list, "\"student\": \"student3\", \"student_raw\": \"raw3\"");
    assert_true(p2 && p1 && p3 && p2 < p1 && p1 < p3);
    assert_non_null(strstr(p2, "\"reason\": \"no student_raw twin of student2"));
    assert_non_null(strstr(p2, "\"holdout\": null, \"warm\": null, \"stream\": null"));
    // student3 (2 ranks) vs raw3 (1): eta (0.75 - 0.74) / (0.78 - 0.74) = 0.25, with a warning.
    assert_non_null(
        strstr(p3, "\"comparable\": false, \"warning\": \"ranks: student3 trains on 2"));
    assert_non_null(strstr(p3, "\"holdout\": {\"eta\": 0.25,"));
    rd_free(js);

    char *out = printed(cfg, res, 7);
    assert_int_equal(count_lines(out, "eta holdout"), 2);
    assert_int_equal(count_lines(out, "eta n/a (no student_raw twin of student2"), 1);
    assert_int_equal(count_lines(out, "transfer: student vs its raw twin student_raw, teacher "
                                      "teacher"),
                     1);
    const char *warn = strstr(out, "WARNING: student3 and raw3 did not train alike");
    assert_non_null(warn);
    assert_non_null(strstr(warn, "ranks: student3 trains on 2"));
    assert_non_null(strstr(warn, "[not comparable"));
    assert_non_null(strstr(out, "student / teacher dense FLOPs per sample: 1/16.6"));
    assert_null(strstr(out, "teacher gap under 0.001"));
    assert_null(strstr(out, "note: "));          // no popularity baseline (its AUC is not valid)
    assert_null(strstr(out, "(warm = holdout")); // 800 warm events of 1000
    rd_free(out);
    // Popularity at 0.755: the jobs below it (student2 0.70, student3 0.75, raw3 0.74) get a
    // note each, the others none.
    set_m(&res[0].pop_holdout.m, 0.755, 0.6, 1000);
    out = printed(cfg, res, 7);
    assert_int_equal(count_lines(out, "note: "), 3);
    assert_non_null(strstr(out, "note: student3 ranks the holdout below item popularity (AUC "
                                "0.7500 < 0.7550): it may be undertrained (train.epochs"));
    assert_non_null(strstr(out, "note: raw3 ranks the holdout below item popularity (AUC 0.7400"));
    rd_free(out);
    memset(&res[0].pop_holdout.m, 0, sizeof res[0].pop_holdout.m);
    // Every holdout event warm: the table says why the two rows are the same.
    set_m(&res[0].warm.m, auc[0], 0.5, 1000);
    out = printed(cfg, res, 7);
    assert_non_null(strstr(out, "\n(warm = holdout: every holdout event's user has >= 20 "
                                "earlier events)\n"));
    rd_free(out);
    set_m(&res[0].warm.m, auc[0], 0.5, 800);
    // A tiny teacher gap (0.7605 against 0.76): the eta line says it is mostly noise.
    set_m(&res[1].holdout.m, 0.7605, 0.5, 1000);
    set_m(&res[4].holdout.m, 0.7600, 0.5, 1000);
    out = printed(cfg, res, 7);
    const char *tiny = strstr(out, "eta holdout   20.000   (teacher gap +0.0005");
    assert_non_null(tiny);
    assert_true(strstr(tiny, "[teacher gap under 0.001 AUC") < strchr(tiny, '\n'));
    rd_free(out);
    // report.json says so too (tiny_gap, as few_events): its eta of 20 was there with nothing
    // beside it to tell a reader of the JSON that the table called it noise.
    assert_int_equal(rd_report_write(cfg, res, 7, 1.0, NULL, &eb), RD_OK);
    js = slurp(path);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"holdout\": {\"eta\": 20.0000000000"));
    assert_non_null(strstr(js, "\"few_events\": false, \"tiny_gap\": true},\n"));
    assert_non_null(strstr(js, "\"few_events\": false, \"tiny_gap\": false},\n"));
    rd_free(js);
    set_m(&res[1].holdout.m, auc[1], 0.5, 1000);
    set_m(&res[4].holdout.m, auc[4], 0.5, 1000);
    // A holdout of 1000 events (500 of each class) gets no caution; one of 40 (20 positives)
    // does, on its eta line and as few_events in report.json, the other slices not.
    out = printed(cfg, res, 7);
    const char *hl = strstr(out, "eta holdout    0.250");
    assert_non_null(hl);
    assert_true(!strstr(hl, "[caution") || strstr(hl, "[caution") > strchr(hl, '\n'));
    rd_free(out);
    for (int j = 0; j < 7; j++)
        set_m(&res[j].holdout.m, auc[j], 0.5, 40);
    out = printed(cfg, res, 7);
    hl = strstr(out, "eta holdout    0.250   (teacher gap +0.0400, student gain +0.0100)  "
                     "[caution: 20 positives and 20 negatives on this slice, under 100 of a "
                     "class: its AUCs are too uncertain for eta to mean much]\n");
    assert_non_null(hl);
    const char *wl = strstr(hl, "eta warm");
    assert_non_null(wl);
    assert_true(strstr(wl, "[caution") == NULL || strstr(wl, "[caution") > strchr(wl, '\n'));
    rd_free(out);
    assert_int_equal(rd_report_write(cfg, res, 7, 1.0, NULL, &eb), RD_OK);
    js = slurp(path);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"student_raw_auc\": 0.76, \"positives\": 20, "
                               "\"negatives\": 20, \"few_events\": true, \"tiny_gap\": false},\n"));
    assert_non_null(strstr(js, "\"positives\": 400, \"negatives\": 400, \"few_events\": "
                               "false, \"tiny_gap\": false}"));
    rd_free(js);
    for (int j = 0; j < 7; j++)
        set_m(&res[j].holdout.m, auc[j], 0.5, 1000);

    // No raw student (QA report C #5, repro fan.yaml): eta null with its reason, and one
    // printed "eta n/a (...)" line per distilled student.
    cfg->cluster.n_jobs = 4;
    assert_int_equal(rd_report_write(cfg, res, 4, 1.0, NULL, &eb), RD_OK);
    js = slurp(path);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"eta\": null,\n  \"eta_reason\": \"no student_raw job: no "
                               "distill: false student to compare student2 with\""));
    rd_free(js);
    out = printed(cfg, res, 4);
    assert_int_equal(count_lines(out, "eta "), 2);
    assert_int_equal(count_lines(out, "eta n/a (no student_raw job: no distill: false student "
                                      "to compare student with)"),
                     1);
    rd_free(out);
    // No distilled student: still a reason.
    cfg->cluster.n_jobs = 3;
    cfg->cluster.jobs[0].distill = 0;
    assert_int_equal(rd_report_write(cfg, res, 3, 1.0, NULL, &eb), RD_OK);
    out = printed(cfg, res, 3);
    assert_int_equal(count_lines(out, "eta n/a (no distill: true student in this launch)"), 1);
    rd_free(out);
    js = slurp(path);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"eta_reason\": \"no distill: true student in this launch\""));
    assert_non_null(strstr(js, "\"eta_pairs\": []"));
    rd_free(js);
    assert_int_equal(remove(path), 0);
    assert_int_equal(rmdir(dir), 0);
    rd_free(res);
    rd_free(cfg);
}

// Undefined figures in the printed table (odd logs: a holdout of one class, users of one class,
// no warm user, no stream events) read "n/a" with a line saying why, never "nan".
static void test_table_undefined(void **state) {
    (void)state;
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    snprintf(cfg->run.name, sizeof cfg->run.name, "odd");
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "teacher", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "student", RD_JOB_STUDENT, 1, "teacher");
    rd_trainer_result *res = results(cfg, (const uint64_t[]){5000, 300});
    for (int j = 0; j < 2; j++) {
        set_m(&res[j].holdout.m, 0.6, 0.5, 200);
        res[j].holdout.m.gauc = (double)NAN; // every holdout user of one class
        res[j].holdout.m.gauc_valid = 0;
        set_m(&res[j].warm.m, (double)NAN, (double)NAN, 0); // no warm user
        res[j].warm.m.calibration_valid = 0;
        res[j].n_windows = 2; // windows of 0 events
        set_m(&res[j].window[0].m, (double)NAN, (double)NAN, 0);
        set_m(&res[j].window[1].m, (double)NAN, (double)NAN, 0);
        res[j].window[0].m.calibration_valid = res[j].window[1].m.calibration_valid = 0;
    }
    set_m(&res[0].pop_holdout.m, 0.55, 0.6, 200);
    set_m(&res[0].pop_warm.m, (double)NAN, (double)NAN, 0);
    res[0].pop_warm.m.calibration_valid = 0;
    char *out = printed(cfg, res, 2);
    assert_null(strstr(out, "nan"));
    assert_non_null(
        strstr(out, "teacher        holdout    0.6000      n/a   0.5000   1.0000      200"));
    assert_non_null(
        strstr(out, "teacher        warm          n/a      n/a      n/a      n/a        0"));
    assert_non_null(
        strstr(out, "student        stream        n/a      n/a      n/a      n/a        0"));
    assert_non_null(strstr(out, "\n(n/a: undefined on the slice: AUC needs both classes, GAUC a "
                                "user with both, calib a positive, every figure an event)\n"));
    assert_non_null(strstr(out, "\n(warm is empty: no holdout event's user has >= 20 earlier "
                                "events)\n"));
    assert_non_null(strstr(out, "\n(stream is empty: data.split leaves no events between the "
                                "batch period and the holdout)\n"));
    rd_free(out);
    // Every figure defined: no footnote.
    for (int j = 0; j < 2; j++) {
        set_m(&res[j].holdout.m, 0.6, 0.5, 200);
        set_m(&res[j].warm.m, 0.6, 0.5, 100);
        set_m(&res[j].window[0].m, 0.6, 0.5, 10);
        set_m(&res[j].window[1].m, 0.6, 0.5, 10);
    }
    set_m(&res[0].pop_warm.m, 0.55, 0.6, 100);
    out = printed(cfg, res, 2);
    assert_null(strstr(out, "n/a:"));
    assert_null(strstr(out, "is empty"));
    rd_free(out);
    rd_free(res);
    rd_free(cfg);
}

// A slice where the student's AUC is undefined but the teacher's and the twin's are (its stream
// windows all NaN, as after a resume from a checkpoint without windows.tsv): the eta line says
// so, without a "nan" gain and without claiming the teacher has no gap over the twin.
static void test_eta_student_undefined(void **state) {
    (void)state;
    rd_config *cfg = distill_config("/nonexistent");
    rd_trainer_result *res = rd_xcalloc(3, sizeof *res);
    const double auc[3] = {0.80, 0.77, 0.76};
    for (int j = 0; j < 3; j++) {
        snprintf(res[j].job, sizeof res[j].job, "%s", cfg->cluster.jobs[j].name);
        res[j].params = j ? 100 : 10000;
        res[j].flops_per_sample = j ? 200 : 20000;
        set_m(&res[j].holdout.m, auc[j], 0.5, 1000);
        set_m(&res[j].warm.m, auc[j], 0.5, 1000);
        res[j].n_windows = 2;
        set_m(&res[j].window[0].m, auc[j], 0.5, 200);
        set_m(&res[j].window[1].m, auc[j], 0.5, 200);
    }
    set_m(&res[1].window[0].m, (double)NAN, (double)NAN, 0);
    set_m(&res[1].window[1].m, (double)NAN, (double)NAN, 0);
    char *out = printed(cfg, res, 3);
    assert_non_null(strstr(out, "eta holdout    0.250"));
    const char *line = strstr(out, "eta stream");
    assert_non_null(line);
    assert_null(strstr(line, "nan"));
    assert_null(strstr(line, "no gap over student_raw"));
    rd_free(out);
    rd_free(res);
    rd_free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eta_of),
        cmocka_unit_test(test_stream_mean),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_write_round_trip),
        cmocka_unit_test(test_write_undefined),
        cmocka_unit_test(test_pairs_reported),
        cmocka_unit_test(test_table_undefined),
        cmocka_unit_test(test_eta_student_undefined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
