// report.c — report.json, the final table, stream averages and transferability (rd/report.h).
#include "rd/report.h"
#include "rd/alloc.h"
#include "rd/lmdbx.h"
#include "rd/numfmt.h"
#include "rd/plot.h"
#include "rd/traffic.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int job_index(const rd_config *cfg, const char *name) {
    for (int j = 0; j < cfg->cluster.n_jobs; j++)
        if (strcmp(cfg->cluster.jobs[j].name, name) == 0)
            return j;
    return -1;
}

// Append printf-style text to a note, "; "-separated from what it holds (truncated to fit).
static void note_add(char *note, const char *fmt, ...) RD_PRINTF(2, 3);
static void note_add(char *note, const char *fmt, ...) {
    size_t len = strlen(note);
    if (len && len + 2 < RD_REPORT_NOTE_MAX) {
        memcpy(note + len, "; ", 3);
        len += 2;
    }
    if (len + 1 >= RD_REPORT_NOTE_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note + len, RD_REPORT_NOTE_MAX - len, fmt, ap);
    va_end(ap);
}

static int same_shape(const rd_trainer_result *a, const rd_trainer_result *b) {
    return a->params == b->params && a->flops_per_sample == b->flops_per_sample;
}

// What differs between the training of student s and raw twin r (rd/report.h, "Comparable");
// "" when nothing does. Returns 1 when comparable.
static int
compare_training(const rd_config *cfg, const rd_trainer_result *res, int s, int r, char *note) {
    const rd_job_config *js = &cfg->cluster.jobs[s], *jr = &cfg->cluster.jobs[r];
    note[0] = 0;
    if (!same_shape(&res[s], &res[r]))
        note_add(note, "model shape: %s has %llu params, %.4g FLOP/sample; %s %llu, %.4g", js->name,
                 (unsigned long long)res[s].params, res[s].flops_per_sample, jr->name,
                 (unsigned long long)res[r].params, res[r].flops_per_sample);
    if (js->ranks != jr->ranks)
        note_add(note,
                 "ranks: %s trains on %d (global batch %lld), %s on %d (global batch %lld), so "
                 "they take different steps",
                 js->name, js->ranks, (long long)js->ranks * cfg->train.batch_size, jr->name,
                 jr->ranks, (long long)jr->ranks * cfg->train.batch_size);
    if (js->negatives.rate != jr->negatives.rate ||
        js->negatives.pos_rate != jr->negatives.pos_rate)
        note_add(note,
                 "sampling: %s keeps negatives at rate %g (positives %g), %s at %g (%g), so they "
                 "train on different records",
                 js->name, js->negatives.rate, js->negatives.pos_rate, jr->name, jr->negatives.rate,
                 jr->negatives.pos_rate);
    return note[0] == 0;
}

// 1 when raw student r's init_as names a job other than itself and the student s: it is some
// other student's declared twin.
static int claimed_elsewhere(const rd_config *cfg, int r, int s) {
    const char *ia = cfg->cluster.jobs[r].init_as;
    return ia[0] && strcmp(ia, cfg->cluster.jobs[r].name) != 0 &&
           strcmp(ia, cfg->cluster.jobs[s].name) != 0;
}

int rd_report_find_pairs(const rd_config *cfg,
                         const rd_trainer_result *res,
                         int n,
                         rd_report_pair *out) {
    int jobs = cfg->cluster.n_jobs < n ? cfg->cluster.n_jobs : n;
    int first_teacher = -1, n_raw = 0, np = 0;
    for (int j = 0; j < jobs; j++) {
        const rd_job_config *jc = &cfg->cluster.jobs[j];
        if (jc->role == RD_JOB_TEACHER && first_teacher < 0)
            first_teacher = j;
        n_raw += jc->role == RD_JOB_STUDENT && !jc->distill;
    }
    for (int s = 0; s < jobs && np < RD_MAX_JOBS; s++) {
        const rd_job_config *js = &cfg->cluster.jobs[s];
        if (js->role != RD_JOB_STUDENT || !js->distill)
            continue;
        rd_report_pair *pr = &out[np++];
        memset(pr, 0, sizeof *pr);
        pr->student = s;
        pr->teacher = js->teacher[0] ? job_index(cfg, js->teacher) : first_teacher;
        if (pr->teacher >= jobs)
            pr->teacher = -1;
        // 1. The twin: the best-scored raw student of the better tier (rd/report.h, "Pairs").
        int best = -1, best_score = -1;
        char note[RD_REPORT_NOTE_MAX];
        for (int tier = 1; tier <= 2 && best < 0; tier++) {
            for (int r = 0; r < jobs; r++) {
                const rd_job_config *jr = &cfg->cluster.jobs[r];
                if (jr->role != RD_JOB_STUDENT || jr->distill)
                    continue;
                int named = strcmp(jr->init_as, js->name) == 0;
                if (tier == 1 ? !named : !same_shape(&res[r], &res[s]))
                    continue;
                int score = 2 * compare_training(cfg, res, s, r, note) +
                            (tier == 2 && !claimed_elsewhere(cfg, r, s));
                if (score > best_score) {
                    best = r;
                    best_score = score;
                }
            }
        }
        pr->student_raw = best;
        if (best >= 0)
            compare_training(cfg, res, s, best, pr->warning);
        // 2. Why there is no eta, if there is none.
        if (best < 0 && n_raw == 0)
            note_add(pr->reason, "no student_raw job: no distill: false student to compare %s with",
                     js->name);
        else if (best < 0)
            note_add(pr->reason,
                     "no student_raw twin of %s: no distill: false student has init_as: %s or "
                     "its model shape (%llu params, %.4g FLOP/sample)",
                     js->name, js->name, (unsigned long long)res[s].params,
                     res[s].flops_per_sample);
        if (pr->teacher < 0 && js->teacher[0])
            note_add(pr->reason,
                     "teacher %s of %s is not a job of this launch (its targets are replayed)",
                     js->teacher, js->name);
        else if (pr->teacher < 0)
            note_add(pr->reason, "no teacher job in this launch for %s", js->name);
        else if (cfg->distill.replay) {
            // A replaying launch sends no live targets: a teacher job in it trains anew (its
            // config or seed may differ from the run that wrote the log), so its AUC is not that
            // of the teacher the student learnt from, and a gap against it is not this pair's.
            note_add(pr->reason,
                     "%s replays its targets from distill.target_log: teacher %s of this launch "
                     "trains anew and sends none, so it is not the teacher %s learnt from",
                     js->name, res[pr->teacher].job, js->name);
            pr->teacher = -1;
        }
    }
    return np;
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
    e.positives = e.negatives = 0;
    e.few = 0;
    e.tiny = isfinite(e.eta) && e.gap < RD_REPORT_TINY_GAP;
    return e;
}

static double auc_of(const rd_metrics_result *m) {
    return m->auc_valid ? m->auc : (double)NAN;
}

// eta of the three roles on one slice: 0 holdout, 1 warm, 2 stream mean.
static rd_report_eta slice_eta(const rd_trainer_result *res, const rd_report_pair *pr, int slice) {
    double a[3] = {(double)NAN, (double)NAN, (double)NAN};
    int idx[3] = {pr->teacher, pr->student, pr->student_raw};
    uint64_t pos = UINT64_MAX, neg = UINT64_MAX; // the fewest of the three jobs
    for (int k = 0; k < 3; k++) {
        if (idx[k] < 0)
            continue;
        const rd_trainer_result *r = &res[idx[k]];
        rd_metrics_result sm;
        const rd_metrics_result *m;
        switch (slice) {
            case 0:
                m = &r->holdout.m;
                break;
            case 1:
                m = &r->warm.m;
                break;
            default:
                sm = rd_report_stream_mean(r);
                m = &sm;
                break;
        }
        a[k] = auc_of(m);
        pos = m->positives < pos ? m->positives : pos;
        neg = m->n - m->positives < neg ? m->n - m->positives : neg;
    }
    rd_report_eta e = rd_report_eta_of(a[0], a[1], a[2]);
    e.positives = pos == UINT64_MAX ? 0 : pos;
    e.negatives = neg == UINT64_MAX ? 0 : neg;
    e.few = e.positives < RD_REPORT_FEW_CLASS || e.negatives < RD_REPORT_FEW_CLASS;
    return e;
}

// ---------------------------------------------------------------------------------------------
// JSON

// A JSON number in the fewest digits that read back to v (rd_fmt_double), or null when v is not
// finite (undefined on the slice). "%.6f" lost what a reader needs to recompute one figure from
// others: eta from the three AUCs beside it differed in the fifth digit.
static void jnum(FILE *f, double v) {
    char buf[RD_FMT_DOUBLE_MAX];
    if (isfinite(v)) {
        rd_fmt_double(v, buf);
        fputs(buf, f);
    } else {
        fputs("null", f);
    }
}

// Length of the valid UTF-8 sequence at c (1..4), or 0 when c does not start one.
static int utf8_len(const unsigned char *c) {
    int n = c[0] < 0x80             ? 1
            : (c[0] & 0xe0) == 0xc0 ? 2
            : (c[0] & 0xf0) == 0xe0 ? 3
            : (c[0] & 0xf8) == 0xf0 ? 4
                                    : 0;
    if (n == 0 || (n == 2 && c[0] < 0xc2) || (n == 4 && c[0] > 0xf4))
        return 0; // a continuation byte, an overlong 2-byte lead, beyond U+10FFFF
    for (int k = 1; k < n; k++)
        if ((c[k] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && c[0] == 0xe0 && c[1] < 0xa0) || (n == 3 && c[0] == 0xed && c[1] >= 0xa0) ||
        (n == 4 && c[0] == 0xf0 && c[1] < 0x90) || (n == 4 && c[0] == 0xf4 && c[1] >= 0x90))
        return 0; // overlong, a surrogate, beyond U+10FFFF
    return n;
}

// A JSON string (null when empty): quotes, backslashes and control characters escaped, and a
// byte that is not valid UTF-8 (a path in another encoding) written as the code point of its
// Latin-1 reading, so that the file stays valid JSON whatever the path holds.
void rd_report_json_string(FILE *f, const char *v) {
    if (!v || !v[0]) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)v; *c;) {
        int n = utf8_len(c);
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20 || n == 0)
            fprintf(f, "\\u%04x", *c);
        else
            fwrite(c, 1, (size_t)n, f);
        c += n ? n : 1;
    }
    fputc('"', f);
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

static void jeta(FILE *f, const char *ind, const char *key, rd_report_eta e, int last) {
    fprintf(f, "%s\"%s\": {\"eta\": ", ind, key);
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
    fprintf(f, ", \"positives\": %llu, \"negatives\": %llu, \"few_events\": %s, \"tiny_gap\": %s",
            (unsigned long long)e.positives, (unsigned long long)e.negatives,
            e.few ? "true" : "false", e.tiny ? "true" : "false");
    fputs(last ? "}" : "},\n", f);
}

// The keys of one pair: names, warning, reason, then its three slices (null without a reason).
static void
jpair(FILE *f, const char *ind, const rd_trainer_result *res, const rd_report_pair *pr) {
    fputs("\"teacher\": ", f);
    rd_report_json_string(f, pr->teacher >= 0 ? res[pr->teacher].job : NULL);
    fputs(", \"student\": ", f);
    rd_report_json_string(f, res[pr->student].job);
    fputs(", \"student_raw\": ", f);
    rd_report_json_string(f, pr->student_raw >= 0 ? res[pr->student_raw].job : NULL);
    fprintf(f, ",\n%s\"comparable\": %s, \"warning\": ", ind,
            pr->student_raw < 0 ? "null"
            : pr->warning[0]    ? "false"
                                : "true");
    rd_report_json_string(f, pr->warning);
    fputs(", \"reason\": ", f);
    rd_report_json_string(f, pr->reason);
    fputs(",\n", f);
    if (pr->reason[0]) {
        fprintf(f, "%s\"holdout\": null, \"warm\": null, \"stream\": null", ind);
        return;
    }
    jeta(f, ind, "holdout", slice_eta(res, pr, 0), 0);
    jeta(f, ind, "warm", slice_eta(res, pr, 1), 0);
    jeta(f, ind, "stream", slice_eta(res, pr, 2), 1);
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
    fprintf(f, ",\n      \"train_samples\": %llu,\n      \"launch_samples\": %llu,",
            (unsigned long long)r->train_samples, (unsigned long long)r->launch_samples);
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
    rd_traffic_write_json(f, &r->comm, r->launch_samples, "      "); // this launch's traffic
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

int rd_report_write(const rd_config *cfg,
                    const rd_trainer_result *res,
                    int n,
                    double wall_s,
                    const rd_report_build *build,
                    rd_errbuf *eb) {
    char path[RD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.json", cfg->run.out_dir);
    rd_lmdbx_outfile of;
    int rc = rd_lmdbx_outfile_open(path, &of, eb);
    if (rc != RD_OK)
        return rc;
    FILE *f = of.f;
    fprintf(f, "{\n  \"run\": \"%s\",\n  \"seed\": %llu,\n  \"config\": ", cfg->run.name,
            (unsigned long long)cfg->run.seed);
    rd_report_json_string(f, cfg->source_path); // a path: any bytes
    if (build && build->n_sets > 0) {           // what the run changed in the file (train --set)
        fputs(",\n  \"config_sets\": [", f);
        for (int i = 0; i < build->n_sets; i++) {
            fputs(i ? ", " : "", f);
            rd_report_json_string(f, build->sets[i]);
        }
        fputs("]", f);
    }
    if (build && build->build) {
        fputs(",\n  \"build\": ", f);
        rd_report_json_string(f, build->build);
    }
    if (build && build->runtime) { // the ranks' run-time libraries (app/build_id.c)
        fputs(",\n  \"runtime\": ", f);
        rd_report_json_string(f, build->runtime);
        fprintf(f, ",\n  \"runtime_mixed\": %s", build->runtime_mixed ? "true" : "false");
    }
    fputs(",\n  \"wall_s\": ", f);
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

    // eta keeps its keys for the first pair that has one (the consumers written for one pair);
    // eta_pairs lists every pair, with its reason when it has no eta.
    rd_report_pair pairs[RD_MAX_JOBS];
    int np = rd_report_find_pairs(cfg, res, n, pairs), first = -1;
    for (int k = 0; k < np && first < 0; k++)
        if (!pairs[k].reason[0])
            first = k;
    if (first >= 0) {
        fputs(",\n  \"eta\": {\n    ", f);
        jpair(f, "    ", res, &pairs[first]);
        fputs("\n  }", f);
    } else {
        fputs(",\n  \"eta\": null,\n  \"eta_reason\": ", f);
        rd_report_json_string(f, np ? pairs[0].reason : "no distill: true student in this launch");
    }
    fputs(",\n  \"eta_pairs\": [", f);
    for (int k = 0; k < np; k++) {
        fputs(k ? ",\n    {" : "\n    {", f);
        jpair(f, "      ", res, &pairs[k]);
        fputs(k + 1 < np ? "}" : "}\n  ", f);
    }
    fputs("]", f);
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
    // Communication per channel over every job (rd/traffic.h), per sample all jobs trained in this
    // launch.
    rd_traffic comm;
    uint64_t samples = 0;
    memset(&comm, 0, sizeof comm);
    for (int j = 0; j < n; j++) {
        rd_traffic_add(&comm, &res[j].comm);
        samples += res[j].launch_samples; // the traffic is this launch's
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

// A figure of the table, or "n/a" where the slice leaves it undefined (AUC of one class, GAUC
// without a user of both, anything of 0 events): a bare "nan" in the table said nothing of why.
// @return 1 when it printed n/a.
static int cell(double v, int valid) {
    if (valid && isfinite(v)) {
        printf(" %8.4f", v);
        return 0;
    }
    printf(" %8s", "n/a");
    return 1;
}

// @return 1 when a figure of the row is n/a.
static int row(const char *job, const char *slice, const rd_metrics_result *m) {
    printf("%-14s %-8s", job, slice);
    int na = cell(m->auc, m->auc_valid);
    na |= cell(m->gauc, m->gauc_valid);
    na |= cell(m->logloss, m->n > 0);
    na |= cell(m->calibration, m->calibration_valid);
    printf(" %8llu\n", (unsigned long long)m->n);
    return na;
}

// One pair: a header naming it and its warning if any, then its three eta lines and the FLOP
// ratio; or a single "eta n/a (reason)" line.
static void print_pair(const rd_trainer_result *res, const rd_report_pair *pr) {
    if (pr->reason[0]) {
        printf("eta n/a (%s)\n", pr->reason);
        return;
    }
    printf("transfer: %s vs its raw twin %s, teacher %s\n", res[pr->student].job,
           res[pr->student_raw].job, res[pr->teacher].job);
    if (pr->warning[0])
        printf("WARNING: %s and %s did not train alike, so the gain below is not distillation's "
               "alone: %s\n",
               res[pr->student].job, res[pr->student_raw].job, pr->warning);
    static const char *const names[] = {"holdout", "warm", "stream"};
    for (int s = 0; s < 3; s++) {
        rd_report_eta e = slice_eta(res, pr, s);
        char few[160] = "";
        if (e.few)
            snprintf(few, sizeof few,
                     "  [caution: %llu positives and %llu negatives on this slice, under %d of a "
                     "class: its AUCs are too uncertain for eta to mean much]",
                     (unsigned long long)e.positives, (unsigned long long)e.negatives,
                     RD_REPORT_FEW_CLASS);
        if (isfinite(e.eta))
            printf("eta %-8s %7.3f   (teacher gap %+.4f, student gain %+.4f)%s%s%s\n", names[s],
                   e.eta, e.gap, e.gain, pr->warning[0] ? "  [not comparable: see WARNING]" : "",
                   e.tiny ? "  [teacher gap under 0.001 AUC: the ratio of two "
                            "tiny differences, mostly noise]"
                          : "",
                   few);
        else if (isfinite(e.gap) && isfinite(e.gain))
            printf("eta %-8s     n/a   (teacher gap %+.4f, student gain %+.4f: no gap over "
                   "student_raw to transfer)\n",
                   names[s], e.gap, e.gain);
        else
            printf("eta %-8s     n/a   (no AUC on this slice: it is empty or holds one "
                   "class)\n",
                   names[s]);
    }
    const rd_trainer_result *t = &res[pr->teacher], *st = &res[pr->student];
    if (t->flops_per_sample > 0 && st->flops_per_sample > 0) {
        double r = t->flops_per_sample / st->flops_per_sample;
        if (r >= 1.0)
            printf("%s / %s dense FLOPs per sample: 1/%.1f\n", st->job, t->job, r);
        else // a student larger than its teacher: "1/0.1" said nothing
            printf("%s / %s dense FLOPs per sample: %.1fx (the student is the larger)\n", st->job,
                   t->job, 1.0 / r);
    }
}

void rd_report_print(const rd_config *cfg, const rd_trainer_result *res, int n) {
    printf("\n== %s (seed %llu) ==\n", cfg->run.name, (unsigned long long)cfg->run.seed);
    printf("%-14s %-8s %8s %8s %8s %8s %8s\n", "job", "slice", "AUC", "GAUC", "logloss", "calib",
           "events");
    int na = 0;
    for (int j = 0; j < n; j++) {
        rd_metrics_result sm = rd_report_stream_mean(&res[j]);
        na |= row(res[j].job, "holdout", &res[j].holdout.m);
        na |= row(res[j].job, "warm", &res[j].warm.m);
        na |= row(res[j].job, "stream", &sm);
    }
    if (n > 0) {
        na |= row("popularity", "holdout", &res[0].pop_holdout.m);
        na |= row("popularity", "warm", &res[0].pop_warm.m);
        // Why a figure is n/a: the slice's events, not the model.
        if (na)
            printf("(n/a: undefined on the slice: AUC needs both classes, GAUC a user with both, "
                   "calib a positive, every figure an event)\n");
        if (res[0].holdout.m.n > 0 && res[0].warm.m.n == 0)
            printf("(warm is empty: no holdout event's user has >= %d earlier events)\n",
                   RD_TRAINER_WARM_MIN);
        if (rd_report_stream_mean(&res[0]).n == 0)
            printf("(stream is empty: data.split leaves no events between the batch period and "
                   "the holdout)\n");
        // A model that ranks the holdout worse than item counts do learned too little: say so
        // where its figures are read (a run of 2 epochs on a new log gave AUC 0.53 against
        // popularity's 0.61, and nothing said why).
        // Identical warm and holdout rows read as a bug (the demo's synthetic users all have a
        // long history): say why they are the same.
        if (res[0].holdout.m.n > 0 && res[0].warm.m.n == res[0].holdout.m.n)
            printf("(warm = holdout: every holdout event's user has >= %d earlier events)\n",
                   RD_TRAINER_WARM_MIN);
        const rd_metrics_result *pop = &res[0].pop_holdout.m;
        for (int j = 0; j < n && pop->auc_valid; j++) {
            const rd_metrics_result *m = &res[j].holdout.m;
            if (m->auc_valid && m->auc < pop->auc)
                printf("note: %s ranks the holdout below item popularity (AUC %.4f < %.4f): it "
                       "may be undertrained (train.epochs, the tables' optimizer lr) or read "
                       "features that do not carry over to the holdout\n",
                       res[j].job, m->auc, pop->auc);
        }
    }
    printf("%-14s %10s %12s %10s\n", "job", "params", "FLOP/sample", "samples/s");
    for (int j = 0; j < n; j++)
        printf("%-14s %10llu %12.4g %10.0f\n", res[j].job, (unsigned long long)res[j].params,
               res[j].flops_per_sample, res[j].samples_per_s);
    rd_report_pair pairs[RD_MAX_JOBS];
    int np = rd_report_find_pairs(cfg, res, n, pairs);
    if (np == 0)
        printf("eta n/a (no distill: true student in this launch)\n");
    for (int k = 0; k < np; k++)
        print_pair(res, &pairs[k]);
    fflush(stdout);
}
