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
    e = rd_report_eta_of(NAN, 0.78, 0.77);
    assert_true(isnan(e.eta) && isnan(e.gap));
    e = rd_report_eta_of(0.8, 0.74, 0.76); // distillation hurt: negative eta
    assert_true(fabs(e.eta - (-0.5)) < 1e-9);
}

static void test_stream_mean(void **state) {
    (void)state;
    rd_trainer_result *r = rd_xcalloc(1, sizeof *r); // ~1.2 MB: not on the stack
    rd_metrics_result m = rd_report_stream_mean(r);
    assert_true(isnan(m.auc) && !m.auc_valid && m.n == 0);
    r->n_windows = 3;
    set_m(&r->window[0].m, 0.70, 0.6, 100);
    set_m(&r->window[1].m, NAN, 0.5, 10); // one class only: AUC undefined, skipped
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

static void test_roles(void **state) {
    (void)state;
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "big", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "other_teacher", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "tiny_raw", RD_JOB_STUDENT, 0, NULL);
    add_job(cfg, "s", RD_JOB_STUDENT, 1, "other_teacher");
    add_job(cfg, "s_raw", RD_JOB_STUDENT, 0, NULL);
    rd_trainer_result *res = rd_xcalloc(5, sizeof *res); // ~1.2 MB each
    uint64_t params[5] = {1000, 900, 5, 50, 50};
    for (int j = 0; j < 5; j++) {
        res[j].params = params[j];
        res[j].flops_per_sample = (double)params[j] * 2;
    }
    rd_report_roles ro = rd_report_find_roles(cfg, res, 5);
    assert_int_equal(ro.teacher, 1); // the teacher the student names
    assert_int_equal(ro.student, 3);
    assert_int_equal(ro.student_raw, 4); // same size as the student, not the first raw
    res[4].params = 51;                  // no same-size twin: the first raw student
    ro = rd_report_find_roles(cfg, res, 5);
    assert_int_equal(ro.student_raw, 2);
    cfg->cluster.jobs[3].teacher[0] = 0; // no named teacher: the first teacher job
    ro = rd_report_find_roles(cfg, res, 5);
    assert_int_equal(ro.teacher, 0);
    cfg->cluster.n_jobs = 1; // a teacher alone
    ro = rd_report_find_roles(cfg, res, 1);
    assert_int_equal(ro.student, -1);
    assert_int_equal(ro.student_raw, -1);
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

static void test_write(void **state) {
    (void)state;
    char dir[] = "/tmp/rd_test_report_XXXXXX";
    assert_non_null(mkdtemp(dir));
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    cfg->cluster.n_jobs = 0;
    add_job(cfg, "teacher", RD_JOB_TEACHER, 0, NULL);
    add_job(cfg, "student", RD_JOB_STUDENT, 1, NULL);
    add_job(cfg, "student_raw", RD_JOB_STUDENT, 0, NULL);
    snprintf(cfg->run.out_dir, sizeof cfg->run.out_dir, "%s", dir);
    snprintf(cfg->run.name, sizeof cfg->run.name, "unit");
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
    assert_int_equal(rd_report_write(cfg, res, 3, 1.5, &eb), RD_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/report.json", dir);
    char *js = slurp(path);
    assert_non_null(js);
    // holdout eta = (0.77 - 0.76) / (0.80 - 0.76) = 0.25; warm (0.78 - 0.78) / (0.8 - 0.78) = 0
    assert_non_null(strstr(js, "\"holdout\": {\"eta\": 0.250000, \"teacher_gap\": 0.040000"));
    assert_non_null(strstr(js, "\"warm\": {\"eta\": 0.000000, \"teacher_gap\": 0.020000"));
    // stream: mean of (auc - 0.01, auc + 0.03) = auc + 0.01 for each: eta 0.25
    assert_non_null(strstr(js, "\"stream\": {\"eta\": 0.250000"));
    assert_non_null(strstr(js, "\"stream\": {\n    \"teacher\": {\n      \"auc\": 0.810000"));
    assert_non_null(strstr(js, "\"flops_per_sample\": {\"teacher\": 20000.000000"));
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
    assert_int_equal(rd_report_write(cfg, res, 3, 1.5, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "missing/sub/report.json"));
    snprintf(path, sizeof path, "%s/report.json", dir);
    assert_int_equal(remove(path), 0);
    assert_int_equal(rmdir(dir), 0);
    rd_free(res);
    rd_free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eta_of),
        cmocka_unit_test(test_stream_mean),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
