// report.c — report.json, the final table, stream averages and transferability (rd/report.h).
#include "rd/report.h"
#include "rd/alloc.h"
#include "rd/lmdbx.h"
#include "rd/plot.h"
#include "rd/traffic.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int job_index(const rd_config *cfg, const char *name) {
    for (int j = 0; j < cfg->cluster.n_jobs; j++)
        if (strcmp(cfg->cluster.jobs[j].name, name) == 0)
            return j;
    return -1;
}

rd_report_roles rd_report_find_roles(const rd_config *cfg, const rd_trainer_result *res, int n) {
    rd_report_roles r = {-1, -1, -1};
    int jobs = cfg->cluster.n_jobs < n ? cfg->cluster.n_jobs : n;
    for (int j = 0; j < jobs && r.student < 0; j++) {
        const rd_job_config *jc = &cfg->cluster.jobs[j];
        if (jc->role == RD_JOB_STUDENT && jc->distill)
            r.student = j;
    }
    if (r.student >= 0) {
        const rd_job_config *s = &cfg->cluster.jobs[r.student];
        if (s->teacher[0])
            r.teacher = job_index(cfg, s->teacher);
    }
    for (int j = 0; j < jobs && r.teacher < 0; j++)
        if (cfg->cluster.jobs[j].role == RD_JOB_TEACHER)
            r.teacher = j;
    if (r.teacher >= jobs)
        r.teacher = -1;
    int first_raw = -1;
    for (int j = 0; j < jobs; j++) {
        const rd_job_config *jc = &cfg->cluster.jobs[j];
        if (jc->role != RD_JOB_STUDENT || jc->distill)
            continue;
        if (first_raw < 0)
            first_raw = j;
        if (r.student >= 0 && res[j].params == res[r.student].params &&
            res[j].flops_per_sample == res[r.student].flops_per_sample) {
            r.student_raw = j;
            break;
        }
    }
    if (r.student_raw < 0)
        r.student_raw = first_raw;
    return r;
}

// Mean of the finite values of one metric; NaN when there is none.
typedef struct mean_acc {
    double sum;
    int n;
} mean_acc;

static void acc_add(mean_acc *a, int valid, double v) {
    if (valid && isfinite(v)) {
        a->sum += v;
        a->n++;
    }
}

static double acc_mean(const mean_acc *a) {
    return a->n ? a->sum / a->n : (double)NAN;
}

rd_metrics_result rd_report_stream_mean(const rd_trainer_result *r) {
    rd_metrics_result out;
    memset(&out, 0, sizeof out);
    mean_acc auc = {0}, gauc = {0}, ll = {0}, cal = {0}, pred = {0}, lab = {0};
    int nw = r->n_windows < RD_TRAINER_MAX_WINDOWS ? r->n_windows : RD_TRAINER_MAX_WINDOWS;
    for (int w = 0; w < nw; w++) {
        const rd_metrics_result *m = &r->window[w].m;
        out.n += m->n;
        out.positives += m->positives;
        acc_add(&auc, m->auc_valid, m->auc);
        acc_add(&gauc, m->gauc_valid, m->gauc);
        acc_add(&ll, m->n > 0, m->logloss);
        acc_add(&cal, m->calibration_valid, m->calibration);
        acc_add(&pred, m->n > 0, m->mean_pred);
        acc_add(&lab, m->n > 0, m->mean_label);
    }
    out.auc = acc_mean(&auc);
    out.auc_valid = auc.n > 0;
    out.gauc = acc_mean(&gauc);
    out.gauc_valid = gauc.n > 0;
    out.logloss = acc_mean(&ll);
    out.calibration = acc_mean(&cal);
    out.calibration_valid = cal.n > 0;
    out.mean_pred = acc_mean(&pred);
    out.mean_label = acc_mean(&lab);
    return out;
}

rd_report_eta rd_report_eta_of(double teacher_auc, double student_auc, double raw_auc) {
    rd_report_eta e;
    e.teacher_auc = teacher_auc;
    e.student_auc = student_auc;
    e.raw_auc = raw_auc;
    e.gap = teacher_auc - raw_auc; // NaN propagates
    e.gain = student_auc - raw_auc;
    e.eta = isfinite(e.gap) && isfinite(e.gain) && e.gap > 0 ? e.gain / e.gap : (double)NAN;
    return e;
}

static double auc_of(const rd_metrics_result *m) {
    return m->auc_valid ? m->auc : (double)NAN;
}

// eta of the three roles on one slice: 0 holdout, 1 warm, 2 stream mean.
static rd_report_eta slice_eta(const rd_trainer_result *res, rd_report_roles ro, int slice) {
    double a[3] = {NAN, NAN, NAN};
    int idx[3] = {ro.teacher, ro.student, ro.student_raw};
    for (int k = 0; k < 3; k++) {
        if (idx[k] < 0)
            continue;
        const rd_trainer_result *r = &res[idx[k]];
        rd_metrics_result sm;
        switch (slice) {
            case 0:
                a[k] = auc_of(&r->holdout.m);
                break;
            case 1:
                a[k] = auc_of(&r->warm.m);
                break;
            default:
                sm = rd_report_stream_mean(r);
                a[k] = auc_of(&sm);
                break;
        }
    }
    return rd_report_eta_of(a[0], a[1], a[2]);
}

// ---------------------------------------------------------------------------------------------
// JSON

static void jnum(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.6f", v);
    else
        fputs("null", f);
}

static void jmetrics(FILE *f, const char *ind, const rd_metrics_result *m) {
    fprintf(f, "{\n%s  \"auc\": ", ind);
    jnum(f, m->auc_valid ? m->auc : (double)NAN);
    fprintf(f, ",\n%s  \"gauc\": ", ind);
    jnum(f, m->gauc_valid ? m->gauc : (double)NAN);
    fprintf(f, ",\n%s  \"logloss\": ", ind);
    jnum(f, m->logloss);
    fprintf(f, ",\n%s  \"calibration\": ", ind);
    jnum(f, m->calibration_valid ? m->calibration : (double)NAN);
    fprintf(f, ",\n%s  \"samples\": %llu\n%s}", ind, (unsigned long long)m->n, ind);
}

// "name": <metrics> for every job, of one slice.
static void jslice(FILE *f, const char *key, const rd_trainer_result *res, int n, int slice) {
    fprintf(f, ",\n  \"%s\": {\n", key);
    for (int j = 0; j < n; j++) {
        rd_metrics_result sm;
        const rd_metrics_result *m = slice == 0   ? &res[j].holdout.m
                                     : slice == 1 ? &res[j].warm.m
                                                  : (sm = rd_report_stream_mean(&res[j]), &sm);
        fprintf(f, "    \"%s\": ", res[j].job);
        jmetrics(f, "    ", m);
        fputs(j + 1 < n ? ",\n" : "\n", f);
    }
    fputs("  }", f);
}

static void jeta(FILE *f, const char *key, rd_report_eta e, int last) {
    fprintf(f, "    \"%s\": {\"eta\": ", key);
    jnum(f, e.eta);
    fputs(", \"teacher_gap\": ", f);
    jnum(f, e.gap);
    fputs(", \"student_gain\": ", f);
    jnum(f, e.gain);
    fputs(", \"teacher_auc\": ", f);
    jnum(f, e.teacher_auc);
    fputs(", \"student_auc\": ", f);
    jnum(f, e.student_auc);
    fputs(", \"student_raw_auc\": ", f);
    jnum(f, e.raw_auc);
    fputs(last ? "}\n" : "},\n", f);
}

static void jjob(FILE *f, const rd_trainer_result *r, int last) {
    fprintf(f,
            "    \"%s\": {\n      \"model\": \"%s\",\n      \"ranks\": %d,\n      \"params\": "
            "%llu,\n      \"flops_per_sample\": ",
            r->job, r->model, r->ranks, (unsigned long long)r->params);
    jnum(f, r->flops_per_sample);
    fputs(",\n      \"wall_s\": ", f);
    jnum(f, r->wall_s);
    fputs(",\n      \"train_s\": ", f);
    jnum(f, r->train_s);
    fprintf(f, ",\n      \"train_samples\": %llu,", (unsigned long long)r->train_samples);
    if (r->neg_keep > 0 && (r->neg_keep < 1 || r->pos_keep < 1)) {
        fputs("\n      \"negatives\": {\"rate\": ", f);
        jnum(f, r->neg_keep);
        fputs(", \"pos_rate\": ", f);
        jnum(f, r->pos_keep);
        fputs("},", f);
    }
    fputs("\n      \"samples_per_s\": ", f);
    jnum(f, r->samples_per_s);
    fputs(",\n      \"final_loss\": ", f);
    jnum(f, r->final_loss);
    fputs(",\n      \"comm\": ", f);
    rd_traffic_write_json(f, &r->comm, r->train_samples, "      ");
    if (r->targets.role != 0) {
        fputs(",\n      \"targets\": {", f);
        rd_trainer_targets_json(f, &r->targets);
        fputc('}', f);
    }
    const rd_trainer_tokens *tk = &r->tokens;
    if (tk->built || tk->fetched_requests) {
        fprintf(f,
                ",\n      \"tokens\": {\"built\": %s, \"build_s\": ", tk->built ? "true" : "false");
        jnum(f, tk->build_s);
        fprintf(f, ", \"source_events\": %llu, \"tokens_written\": %llu, \"source_auc\": ",
                (unsigned long long)tk->source_events, (unsigned long long)tk->tokens_written);
        jnum(f, tk->source_auc);
        fprintf(f, ", \"fetched_requests\": %llu, \"fetched_tokens\": %llu",
                (unsigned long long)tk->fetched_requests, (unsigned long long)tk->fetched_tokens);
        if (tk->mapped) {
            const rd_token_map_stats *ms = &tk->map;
            fprintf(f,
                    ", \"map\": {\"used_bytes\": %llu, \"resident_kb\": %lld, \"huge_kb\": %lld, "
                    "\"shards\": %u, \"reread\": %u, \"note\": \"%s\", \"seconds\": ",
                    (unsigned long long)ms->used_bytes, (long long)ms->resident_kb,
                    (long long)ms->huge_kb, ms->shards, ms->reread,
                    rd_token_huge_note_text(ms->note));
            jnum(f, ms->seconds);
            fputc('}', f);
        }
        fputc('}', f);
    }
    fputs(",\n      \"windows\": [", f);
    int nw = r->n_windows < RD_TRAINER_MAX_WINDOWS ? r->n_windows : RD_TRAINER_MAX_WINDOWS;
    for (int w = 0; w < nw; w++) {
        const rd_metrics_result *m = &r->window[w].m;
        fputs(w ? ", " : "", f);
        fputs("{\"auc\": ", f);
        jnum(f, m->auc_valid ? m->auc : (double)NAN);
        fputs(", \"gauc\": ", f);
        jnum(f, m->gauc_valid ? m->gauc : (double)NAN);
        fputs(", \"logloss\": ", f);
        jnum(f, m->logloss);
        fputs(", \"calibration\": ", f);
        jnum(f, m->calibration_valid ? m->calibration : (double)NAN);
        fprintf(f, ", \"samples\": %llu}", (unsigned long long)m->n);
    }
    fprintf(f, "]\n    }%s\n", last ? "" : ",");
}

// "key": {"job": number, ...}; which: 0 flops, 1 params, 2 samples/s
static void jper_job(FILE *f, const char *key, const rd_trainer_result *res, int n, int which) {
    fprintf(f, ",\n  \"%s\": {", key);
    for (int j = 0; j < n; j++) {
        fprintf(f, "%s\"%s\": ", j ? ", " : "", res[j].job);
        if (which == 1)
            fprintf(f, "%llu", (unsigned long long)res[j].params);
        else
            jnum(f, which == 0 ? res[j].flops_per_sample : res[j].samples_per_s);
    }
    fputs("}", f);
}

int rd_report_write(
    const rd_config *cfg, const rd_trainer_result *res, int n, double wall_s, rd_errbuf *eb) {
    char path[RD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.json", cfg->run.out_dir);
    rd_lmdbx_outfile of;
    int rc = rd_lmdbx_outfile_open(path, &of, eb);
    if (rc != RD_OK)
        return rc;
    FILE *f = of.f;
    fprintf(f, "{\n  \"run\": \"%s\",\n  \"seed\": %llu,\n  \"config\": \"%s\",\n  \"wall_s\": ",
            cfg->run.name, (unsigned long long)cfg->run.seed, cfg->source_path);
    jnum(f, wall_s);
    if (n > 0) {
        fputs(",\n  \"popularity\": {\n    \"holdout\": ", f);
        jmetrics(f, "    ", &res[0].pop_holdout.m);
        fputs(",\n    \"warm\": ", f);
        jmetrics(f, "    ", &res[0].pop_warm.m);
        fputs("\n  }", f);
    }
    jslice(f, "holdout", res, n, 0);
    jslice(f, "warm", res, n, 1);
    jslice(f, "stream", res, n, 2);

    rd_report_roles ro = rd_report_find_roles(cfg, res, n);
    if (ro.teacher >= 0 && ro.student >= 0 && ro.student_raw >= 0) {
        fprintf(f,
                ",\n  \"eta\": {\n    \"teacher\": \"%s\", \"student\": \"%s\", \"student_raw\": "
                "\"%s\",\n",
                res[ro.teacher].job, res[ro.student].job, res[ro.student_raw].job);
        jeta(f, "holdout", slice_eta(res, ro, 0), 0);
        jeta(f, "warm", slice_eta(res, ro, 1), 0);
        jeta(f, "stream", slice_eta(res, ro, 2), 1);
        fputs("  }", f);
    } else {
        fputs(",\n  \"eta\": null", f);
    }
    jper_job(f, "flops_per_sample", res, n, 0);
    jper_job(f, "params", res, n, 1);
    jper_job(f, "throughput", res, n, 2);

    // Distillation targets summed over the jobs.
    rd_trainer_targets sum;
    memset(&sum, 0, sizeof sum);
    for (int j = 0; j < n; j++) {
        sum.sent += res[j].targets.sent;
        sum.received += res[j].targets.received;
        sum.late += res[j].targets.late;
        sum.missing += res[j].targets.missing;
        sum.replayed += res[j].targets.replayed;
    }
    // Communication per channel over every job (rd/traffic.h), per trained sample of all jobs.
    rd_traffic comm;
    uint64_t samples = 0;
    memset(&comm, 0, sizeof comm);
    for (int j = 0; j < n; j++) {
        rd_traffic_add(&comm, &res[j].comm);
        samples += res[j].train_samples;
    }
    fputs(",\n  \"comm\": ", f);
    rd_traffic_write_json(f, &comm, samples, "  ");
    fprintf(f,
            ",\n  \"targets\": {\"sent\": %llu, \"received\": %llu, \"late\": %llu, "
            "\"missing\": %llu, \"replayed\": %llu}",
            (unsigned long long)sum.sent, (unsigned long long)sum.received,
            (unsigned long long)sum.late, (unsigned long long)sum.missing,
            (unsigned long long)sum.replayed);
    fputs(",\n  \"jobs\": {\n", f);
    for (int j = 0; j < n; j++)
        jjob(f, &res[j], j + 1 == n);
    fputs("  }\n}\n", f);
    return rd_lmdbx_outfile_commit(&of, eb);
}

// ---------------------------------------------------------------------------------------------
// Plot

int rd_report_plot(const rd_config *cfg, const rd_trainer_result *res, int n, rd_errbuf *eb) {
    rd_plot p;
    rd_plot_init(&p);
    snprintf(p.title, sizeof p.title, "%s: AUC per stream window (seed %llu)", cfg->run.name,
             (unsigned long long)cfg->run.seed);
    snprintf(p.xlabel, sizeof p.xlabel, "stream window (scored before training on it)");
    snprintf(p.ylabel, sizeof p.ylabel, "AUC");
    int jobs = n < RD_PLOT_MAX_SERIES ? n : RD_PLOT_MAX_SERIES;
    double *xy = rd_calloc((size_t)jobs * 2 * RD_TRAINER_MAX_WINDOWS + 1, sizeof(double));
    if (!xy)
        return rd_err_set(eb, RD_ERR_NOMEM, "plot: out of memory");
    for (int j = 0; j < jobs; j++) {
        double *x = xy + (size_t)j * 2 * RD_TRAINER_MAX_WINDOWS, *y = x + RD_TRAINER_MAX_WINDOWS;
        int nw =
            res[j].n_windows < RD_TRAINER_MAX_WINDOWS ? res[j].n_windows : RD_TRAINER_MAX_WINDOWS;
        for (int w = 0; w < nw; w++) {
            x[w] = w;
            y[w] = res[j].window[w].m.auc_valid ? res[j].window[w].m.auc : (double)NAN;
        }
        rd_plot_add(&p, res[j].job, x, y, (size_t)nw);
        p.series[p.n_series - 1].markers = 1;
    }
    char path[RD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/auc_windows.png", cfg->run.out_dir);
    int rc = rd_plot_write_png(&p, path, eb);
    rd_free(xy);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Final table

static void row(const char *job, const char *slice, const rd_metrics_result *m) {
    printf("%-14s %-8s %8.4f %8.4f %8.4f %8.4f %8llu\n", job, slice,
           m->auc_valid ? m->auc : (double)NAN, m->gauc_valid ? m->gauc : (double)NAN, m->logloss,
           m->calibration_valid ? m->calibration : (double)NAN, (unsigned long long)m->n);
}

void rd_report_print(const rd_config *cfg, const rd_trainer_result *res, int n) {
    printf("\n== %s (seed %llu) ==\n", cfg->run.name, (unsigned long long)cfg->run.seed);
    printf("%-14s %-8s %8s %8s %8s %8s %8s\n", "job", "slice", "AUC", "GAUC", "logloss", "calib",
           "events");
    for (int j = 0; j < n; j++) {
        rd_metrics_result sm = rd_report_stream_mean(&res[j]);
        row(res[j].job, "holdout", &res[j].holdout.m);
        row(res[j].job, "warm", &res[j].warm.m);
        row(res[j].job, "stream", &sm);
    }
    if (n > 0) {
        row("popularity", "holdout", &res[0].pop_holdout.m);
        row("popularity", "warm", &res[0].pop_warm.m);
    }
    printf("%-14s %10s %12s %10s\n", "job", "params", "FLOP/sample", "samples/s");
    for (int j = 0; j < n; j++)
        printf("%-14s %10llu %12.4g %10.0f\n", res[j].job, (unsigned long long)res[j].params,
               res[j].flops_per_sample, res[j].samples_per_s);
    rd_report_roles ro = rd_report_find_roles(cfg, res, n);
    if (ro.teacher >= 0 && ro.student >= 0 && ro.student_raw >= 0) {
        static const char *const names[] = {"holdout", "warm", "stream"};
        for (int s = 0; s < 3; s++) {
            rd_report_eta e = slice_eta(res, ro, s);
            if (isfinite(e.eta))
                printf("eta %-8s %7.3f   (teacher gap %+.4f, student gain %+.4f)\n", names[s],
                       e.eta, e.gap, e.gain);
            else if (isfinite(e.gap))
                printf("eta %-8s     n/a   (teacher gap %+.4f, student gain %+.4f: no gap over "
                       "student_raw to transfer)\n",
                       names[s], e.gap, e.gain);
            else
                printf("eta %-8s     n/a   (no AUC on this slice: it is empty or holds one "
                       "class)\n",
                       names[s]);
        }
        const rd_trainer_result *t = &res[ro.teacher], *s = &res[ro.student];
        if (t->flops_per_sample > 0 && s->flops_per_sample > 0) {
            double r = t->flops_per_sample / s->flops_per_sample;
            if (r >= 1.0)
                printf("student / teacher dense FLOPs per sample: 1/%.1f\n", r);
            else // a student larger than its teacher: "1/0.1" said nothing
                printf("student / teacher dense FLOPs per sample: %.1fx (the student is the "
                       "larger)\n",
                       1.0 / r);
        }
    }
    fflush(stdout);
}
