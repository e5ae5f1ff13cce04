// cmd_score.c — `recdistill score BUNDLE (--data DIR | --run DIR) [--split S] [--store DIR]
// [--out FILE] [--json FILE] [--limit N]`: score the records of a prepared dataset through a
// serving bundle (rd/serve.h), one request each, as a server would, and report the AUC, GAUC,
// logloss and calibration of the scores and the scoring rate.
//
// What it is for: checking an exported bundle against the training run (on the run's own data,
// the holdout AUC equals the one `train` reported for the job), scoring a dataset offline, and
// comparing two bundles on the same records. Every record is one request with one candidate:
// its keys, its user's history before it and its numeric inputs come from the dataset
// (rd_serve_request_from_dataset), its instance tokens from the model's token store opened
// read-only (rd_serve_fetch_tokens), as in training.
//
// The numeric inputs of a dataset are stored standardised with the statistics of the data it was
// prepared from. A folder prepared from other data (another period of the log, another split)
// stores other values for the same raw ones: its inputs are standardised again with the bundle's
// statistics (a `missing: mean` value keeps that folder's mean, which is the one thing it cannot
// tell apart). A folder whose fields differ (another log1p or standardize flag, other fields) is
// refused, naming the field.
//
// The CSV of --out joins back to the log: the records keep only a hash of each user and item id
// (rd_record.user_key / item_key), so each row also carries the raw ids, which prepare keeps in
// the dataset folder (ids.csv, rd_dataset_ids_load). A folder without that file (the synthetic
// source, or one prepared before it was written) leaves those two columns empty and says so.
// The ids and the time do not name one row of a log that repeats an event in one second (the
// records keep unix seconds, whatever the log's time_format): the last two columns name the log
// file and line each record was read from (lines.csv, rd_dataset_lines_open), empty without it.
//
// Outputs (--out CSV, --json) are written to a temporary name and renamed: a failure leaves
// nothing at their paths. Exit codes: 0 success, 1 failure (message on stderr), 2 usage error.
#include "commands.h"

#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/csv.h"
#include "rd/dataset.h"
#include "rd/error.h"
#include "rd/lmdbx.h"
#include "rd/metrics.h"
#include "rd/report.h"
#include "rd/serve.h"
#include "rd/tokens.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void score_usage(FILE *out) {
    fprintf(out,
            "usage: recdistill score BUNDLE (--data DIR | --run DIR) [--split SPLIT]\n"
            "                        [--store DIR] [--out FILE] [--json FILE] [--limit N]\n"
            "\n"
            "Score the records of a prepared dataset through a serving bundle of `recdistill\n"
            "export`, one request each (the record's keys, its user's history before it, its\n"
            "numeric inputs and, for a model that reads them, its instance tokens), and print\n"
            "the AUC, GAUC, logloss and calibration of the scores and the scoring rate. On the\n"
            "training run's own data the holdout AUC equals the one `train` reported for the\n"
            "job.\n"
            "\n"
            "  --data DIR    the prepared dataset (a folder of `recdistill prepare`, or\n"
            "                <run>/data), of the model's schema; its numeric inputs are\n"
            "                standardised again with the model's statistics when they differ\n"
            "                (a folder of another period of the log)\n"
            "  --run DIR     the run folder of `train --out DIR`: --data DIR/data and, for a\n"
            "                bundle that reads instance tokens, --store DIR/tokens\n"
            "  --split SPLIT holdout (default), stream, batch or all\n"
            "  --store DIR   the token store the model was trained on (tokens.store_dir), opened\n"
            "                read-only; needed by a bundle that reads instance tokens\n"
            "  --out FILE    one CSV row per record: record,user_key,item_key,ts,label,logit,\n"
            "                score,user_id,item_id,log_file,log_line: ts in unix seconds\n"
            "                (the log's time rounded down to the second, whatever its format),\n"
            "                user_id and item_id the log's own ids, log_file and log_line the\n"
            "                file and line (1-based, the header being line 1) of the log row\n"
            "                the record was read from, to join the scores back to that very\n"
            "                row (these four are empty for a dataset without them: the\n"
            "                synthetic source, or a folder prepared before they were kept)\n"
            "                ('-' = standard output, the summary then goes to stderr)\n"
            "  --json FILE   the summary as JSON\n"
            "  --limit N     score the first N records of the split only\n"
            "\n"
            "exit status: 0 ok, 1 failure (message on stderr), 2 usage error\n");
}

// How a numeric input stored in the dataset becomes the value the bundle's model reads. A
// dataset stores log1p(x) (or x), standardised with the mean and std of the batch period of the
// data it was prepared from; the model was trained on its own training data's. With the same
// flags, a stored value s is taken back to u = s * std + mean and standardised again with the
// bundle's figures. Inputs of equal figures pass unchanged (exactly).
typedef struct numeric_conv {
    int restd;              // 1: re-standardise
    double ds_mean, ds_std; // the dataset's figures
    double b_mean, b_std;   // the bundle's
} numeric_conv;

// Check the numeric inputs of the bundle against the dataset's and fill conv (n_in entries):
// the same fields in the same order with the same log1p / standardize flags; the mean and std
// may differ (*restd counts those inputs). A version-1 bundle or dataset recorded no transform:
// its inputs pass unchanged (*unchecked = 1).
static int check_numeric(const rd_serve *sv,
                         const rd_dataset *ds,
                         const char *data,
                         numeric_conv *conv,
                         int *restd,
                         int *unchecked,
                         rd_errbuf *eb) {
    rd_serve_info in;
    rd_serve_get_info(sv, &in);
    const rd_dataset_info *di = rd_dataset_get_info(ds);
    const rd_dataset_field *fields = rd_dataset_fields(ds);
    const size_t n_in = in.n_numeric - in.n_stats;
    if (rd_dataset_n_inputs(di) != n_in)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s has %u numeric inputs, the bundle's model reads %zu: it is not "
                          "data of the model's schema",
                          data, rd_dataset_n_inputs(di), n_in);
    *unchecked = *restd = 0;
    for (size_t j = 0; j < n_in; j++) {
        memset(&conv[j], 0, sizeof conv[j]);
        const char *name = NULL;
        uint32_t xf = 0;
        double mean = 0, sd = 1;
        rd_serve_numeric(sv, j, &name, &xf, &mean, &sd);
        if (xf & RD_XFORM_UNKNOWN) {
            *unchecked = 1;
            continue;
        }
        const rd_dataset_field *fd = NULL;
        for (uint32_t f = 0; f < di->n_fields && !fd; f++)
            if (fields[f].kind == RD_FIELD_NUMERIC && fields[f].offset == j)
                fd = &fields[f];
        if (!fd || strcmp(fd->name, name) != 0)
            return rd_err_set(eb, RD_ERR_SCHEMA,
                              "%s: numeric input %zu is '%s', the bundle's is '%s': it is not "
                              "data of the model's schema",
                              data, j, fd ? fd->name : "(none)", name);
        if (fd->transform & RD_XFORM_UNKNOWN) {
            *unchecked = 1;
            continue;
        }
        if (fd->transform != xf)
            return rd_err_set(
                eb, RD_ERR_SCHEMA,
                "%s: numeric input '%s' is stored%s%s, the bundle's model read it%s%s: "
                "the folder was prepared with another schema (the field's log1p / "
                "standardize)",
                data, name, fd->transform & RD_XFORM_LOG1P ? " after log1p" : "",
                fd->transform & RD_XFORM_STANDARDIZE ? " standardised" : " as is",
                xf & RD_XFORM_LOG1P ? " after log1p" : "",
                xf & RD_XFORM_STANDARDIZE ? " standardised" : " as is");
        if ((xf & RD_XFORM_STANDARDIZE) && (fd->mean != mean || fd->std != sd)) {
            conv[j] = (numeric_conv){1, fd->mean, fd->std, mean, sd};
            (*restd)++;
        }
    }
    return RD_OK;
}

// The records of `split`: *r, or RD_ERR_ARG for an unknown name.
static int split_range(const rd_dataset *ds, const char *split, rd_range *r) {
    if (strcmp(split, "holdout") == 0)
        *r = rd_dataset_holdout(ds);
    else if (strcmp(split, "batch") == 0)
        *r = rd_dataset_batch(ds);
    else if (strcmp(split, "all") == 0)
        *r = rd_dataset_all(ds);
    else if (strcmp(split, "stream") == 0)
        *r = (rd_range){rd_dataset_batch(ds).end, rd_dataset_holdout(ds).begin};
    else
        return RD_ERR_ARG;
    return RD_OK;
}

// The raw user and item ids of a record, as ",user_id,item_id" of its CSV row (empty without
// ids). A key the ids file does not hold means the file is not this dataset's: RD_ERR_CORRUPT.
static int csv_ids(FILE *f,
                   const rd_dataset_ids *ids,
                   const rd_record *rec,
                   const char *data,
                   uint64_t i,
                   rd_errbuf *eb) {
    if (!ids) {
        fputs(",,", f);
        return RD_OK;
    }
    for (int k = 0; k < 2; k++) {
        const uint64_t key = k ? rec->item_key : rec->user_key;
        size_t len = 0;
        const char *id = rd_dataset_ids_find(ids, k, key, &len);
        if (!id)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "%s record %llu: its %s (key 0x%016llx) is not in %s/%s: that "
                              "file is not this dataset's",
                              data, (unsigned long long)i, k ? "item" : "user",
                              (unsigned long long)key, data, RD_DATASET_IDS);
        fputc(',', f);
        rd_csv_write_value(f, id, len);
    }
    return RD_OK;
}

// The log file and line of record i, as ",log_file,log_line" of its CSV row (empty without
// them). A file that ends before the record, or whose row is not "file,line", is not this
// dataset's: RD_ERR_CORRUPT, naming its line.
static int csv_line(FILE *f, rd_dataset_lines *lines, uint64_t i, rd_errbuf *eb) {
    if (!lines) {
        fputs(",,", f);
        return RD_OK;
    }
    const char *file = NULL;
    size_t len = 0;
    uint64_t line = 0;
    int rc = rd_dataset_lines_at(lines, i, &file, &len, &line, eb);
    if (rc != RD_OK) {
        rd_err_prefix(eb, "record %llu: ", (unsigned long long)i);
        return rc;
    }
    fputc(',', f);
    rd_csv_write_value(f, file, len);
    fprintf(f, ",%llu", (unsigned long long)line);
    return RD_OK;
}

// The outputs against one input file of the dataset (the log, a part, a side table): the CSV
// of scores is to be joined back to the log, and a name typed for it beside the log replaced it.
typedef struct outs_ctx {
    const char *out, *json;
} outs_ctx;

static int check_out_not_log(const char *path, void *vctx, rd_errbuf *eb) {
    const outs_ctx *c = vctx;
    int rc = RD_OK;
    if (c->out && strcmp(c->out, "-") != 0)
        rc = rd_lmdbx_check_out_not_input("--out", c->out, "the dataset's input file", path, eb);
    if (rc == RD_OK && c->json)
        rc = rd_lmdbx_check_out_not_input("--json", c->json, "the dataset's input file", path, eb);
    return rc;
}

// A JSON number, or null for NaN (JSON has no NaN).
static void json_num(FILE *f, const char *key, double v, int last) {
    if (isfinite(v))
        fprintf(f, "  \"%s\": %.17g%s\n", key, v, last ? "" : ",");
    else
        fprintf(f, "  \"%s\": null%s\n", key, last ? "" : ",");
}

// A figure of the text summary with 4 decimals, or "n/a" (returns 1) when it is undefined on
// the scored records (NaN: AUC over one class, calibration without a positive).
static int fig4(char buf[32], double v) {
    if (isfinite(v)) {
        snprintf(buf, 32, "%.4f", v);
        return 0;
    }
    snprintf(buf, 32, "n/a");
    return 1;
}

// "key": v, as report.json writes strings.
static void json_str(FILE *f, const char *key, const char *v) {
    fprintf(f, "  \"%s\": ", key);
    rd_report_json_string(f, v);
    fprintf(f, ",\n");
}

typedef struct score_out {
    rd_lmdbx_outfile of;
    FILE *f; // of.f, or stdout for "-"
    int to_stdout;
    char created[RD_PATH_MAX * 2]; // parent folders made for it
    const char *path;
} score_out;

static int out_open(score_out *o, const char *path, rd_errbuf *eb) {
    memset(o, 0, sizeof *o);
    o->path = path;
    if (strcmp(path, "-") == 0) {
        o->to_stdout = 1;
        o->f = stdout;
        return RD_OK;
    }
    if (strlen(path) >= sizeof o->created)
        return rd_err_set(eb, RD_ERR_ARG, "%s: path too long", path);
    int rc = rd_lmdbx_mkdir_parents(path, o->created, sizeof o->created, eb);
    if (rc == RD_OK && (rc = rd_lmdbx_outfile_open(path, &o->of, eb)) != RD_OK)
        rd_lmdbx_rmdir_created(path, o->created);
    o->f = o->of.f;
    return rc;
}

// Commit (rc == RD_OK) or abort an output; returns the final status.
static int out_close(score_out *o, int rc, rd_errbuf *eb) {
    if (!o->path || o->to_stdout)
        return rc;
    if (rc == RD_OK)
        rc = rd_lmdbx_outfile_commit_out(&o->of, eb);
    else
        rd_lmdbx_outfile_abort(&o->of);
    if (rc == RD_OK && (rc = rd_lmdbx_fsync_parents(o->path, o->created, eb)) != RD_OK)
        remove(o->path);
    if (rc != RD_OK)
        rd_lmdbx_rmdir_created(o->path, o->created);
    return rc;
}

// A `tokens gc` of the store after the bundle was made deleted tokens the model read in
// training: it now reads fewer (a user's history starts later), and its scores differ from
// the ones training reported, with nothing else to say why. The store records its gcs
// (rd_token_store_gc_info); the bundle's `created` (its export, after the training) is the
// latest time the model can have read them, so a gc at or after it is said, once, on stderr.
// A gc between the training and the export is not seen (the bundle records no training time),
// and SOURCE_DATE_EPOCH moves `created`. The scores themselves are still what a server reading
// this store would give: a warning, not a refusal.
static void
warn_gc_after(rd_token_store *store, const char *dir, const char *bundle, const rd_serve_info *in) {
    rd_token_gc_info gi;
    rd_errbuf geb;
    rd_errbuf_clear(&geb);
    if (rd_token_store_gc_info(store, &gi, &geb) != RD_OK) {
        fprintf(stderr,
                "recdistill score: warning: cannot tell whether token store %s was "
                "garbage-collected after %s was made: %s\n",
                dir, bundle, geb.msg);
        return;
    }
    if (gi.n_gc == 0 || gi.last_at < in->created)
        return;
    char at[32], made[32], bt[32];
    rd_fmt_utc(gi.last_at, at, sizeof at);
    rd_fmt_utc(in->created, made, sizeof made);
    rd_fmt_utc(gi.before_t, bt, sizeof bt);
    fprintf(stderr,
            "recdistill score: warning: token store %s was garbage-collected at %s, after %s was "
            "exported (%s): its records before %lld (%s) are gone (%llu deleted), so model '%s' "
            "now reads fewer tokens than it was trained with and its scores differ from "
            "training's\n",
            dir, at, bundle, made, (long long)gi.before_t, bt, (unsigned long long)gi.deleted,
            in->model);
}

int rd_cmd_score(int argc, char **argv) {
    rd_app_opt opts[] = {{"--data", RD_APP_STRING, NULL},  {"--run", RD_APP_STRING, NULL},
                         {"--split", RD_APP_STRING, NULL}, {"--store", RD_APP_STRING, NULL},
                         {"--out", RD_APP_STRING, NULL},   {"--json", RD_APP_STRING, NULL},
                         {"--limit", RD_APP_NUMBER, NULL}};
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *bundle = NULL;
    int n_pos = 0;
    int st = rd_app_parse("recdistill score", argc, argv, 1, opts, n_opts, &bundle, 1, &n_pos);
    if (st == 1) {
        score_usage(stdout);
        return rd_app_stdout_written("score", NULL);
    }
    if (st != 0) {
        score_usage(stderr);
        return 2;
    }
    const char *data = opts[0].value, *run = opts[1].value, *split = opts[2].value,
               *store_dir = opts[3].value, *out = opts[4].value, *json = opts[5].value,
               *limit_arg = opts[6].value;
    if (!bundle || (!data && !run)) {
        fprintf(stderr, "recdistill score: missing %s\n",
                !bundle ? "BUNDLE" : "--data DIR (or --run DIR)");
        score_usage(stderr);
        return 2;
    }
    if (!bundle[0]) { // (the options' empty values are usage errors of rd_app_parse)
        fprintf(stderr, "recdistill score: BUNDLE: empty path\n");
        return 2;
    }
    if (!split)
        split = "holdout";
    if (strcmp(split, "holdout") && strcmp(split, "stream") && strcmp(split, "batch") &&
        strcmp(split, "all")) {
        fprintf(stderr,
                "recdistill score: --split '%.64s': not one of holdout, stream, batch, all\n",
                split);
        return 2;
    }
    uint64_t limit = UINT64_MAX;
    if (limit_arg && (rd_app_parse_u64(limit_arg, &limit) != 0 || limit == 0)) {
        fprintf(stderr, "recdistill score: --limit: '%.64s' is not a positive integer\n",
                limit_arg);
        return 2;
    }
    if (json && rd_app_out_not_stdout("recdistill score", "--json", json,
                                      "the summary is printed; --json writes it to a file") != 0)
        return 2;
    if (out && json && strcmp(out, json) == 0) {
        fprintf(stderr, "recdistill score: --out and --json are the same file '%s'\n", out);
        return 2;
    }
    char data_buf[RD_PATH_MAX * 2], store_buf[RD_PATH_MAX * 2];
    if (run && strlen(run) + sizeof "/tokens" > sizeof data_buf) {
        fprintf(stderr, "recdistill score: --run: path too long (%zu bytes)\n", strlen(run));
        return 1;
    }
    if (!data) {
        snprintf(data_buf, sizeof data_buf, "%s/data", run);
        data = data_buf;
    }

    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_serve *sv = NULL;
    rd_dataset *ds = NULL;
    rd_token_store *store = NULL;
    rd_dataset_ids *ids = NULL;
    rd_dataset_lines *lines = NULL;
    rd_metrics *met = NULL;
    score_out csv = {0}, js = {0};
    uint64_t *keys = NULL, *hist = NULL;
    uint8_t *hl = NULL;
    float *num = NULL;
    rd_serve_info in;
    memset(&in, 0, sizeof in);
    int rc = rd_serve_open(bundle, 1, &sv, &eb);
    if (rc == RD_OK)
        rd_serve_get_info(sv, &in);
    // The outputs must not overwrite an input.
    const char *outs[2] = {out, json};
    for (int k = 0; k < 2 && rc == RD_OK; k++) {
        if (!outs[k] || strcmp(outs[k], "-") == 0)
            continue;
        const char *opt = k ? "--json" : "--out";
        rc = rd_lmdbx_check_out_not_input(opt, outs[k], "the bundle", bundle, &eb);
        if (rc == RD_OK)
            rc = rd_lmdbx_check_out_not_input(opt, outs[k], "the dataset", data, &eb);
    }
    // The two outputs under two names of one file (./s and s): the JSON would replace the CSV.
    if (rc == RD_OK && out && json && strcmp(out, "-") != 0)
        rc = rd_lmdbx_check_out_not_input("--json", json, "the --out file", out, &eb);
    if (rc == RD_OK && (rc = rd_dataset_open(data, 0, &ds, &eb)) != RD_OK) {
        char msg[sizeof eb.msg];
        if (rd_app_wrong_folder(data, RD_APP_PATH_DATASET,
                                "a dataset folder of `recdistill prepare` (events.bin; <run>/data "
                                "after `train --out`)",
                                msg, sizeof msg)) {
            rd_errbuf_clear(&eb);
            rd_err_set(&eb, rc, "--data %s", msg);
        }
    }
    // Nor the files the dataset was prepared from, which meta.yaml names.
    if (rc == RD_OK && ((out && strcmp(out, "-") != 0) || json)) {
        outs_ctx oc = {out, json};
        rc = rd_dataset_each_input(data, check_out_not_log, &oc, &eb);
    }
    int unchecked = 0, restd = 0;
    numeric_conv conv[RD_MAX_FIELDS];
    if (rc == RD_OK)
        rc = check_numeric(sv, ds, data, conv, &restd, &unchecked, &eb);
    // The token store: the bundle's model reads tokens exactly when it needs one.
    if (rc == RD_OK && in.tok_length) {
        if (!store_dir && run) {
            snprintf(store_buf, sizeof store_buf, "%s/tokens", run);
            store_dir = store_buf;
        }
        if (!store_dir) {
            rc = rd_err_set(&eb, RD_ERR_ARG,
                            "model '%s' of %s reads instance tokens: give its token store "
                            "(--store DIR, tokens.store_dir of the training run, or --run DIR)",
                            in.model, bundle);
        } else {
            // The outputs must not land in the store either (over its MANIFEST or a shard).
            for (int k = 0; k < 2 && rc == RD_OK; k++)
                if (outs[k] && strcmp(outs[k], "-") != 0)
                    rc = rd_lmdbx_check_out_not_input(k ? "--json" : "--out", outs[k],
                                                      "the token store", store_dir, &eb);
            rd_token_open_opts oo = {.mode = RD_TOKEN_READ_ONLY};
            rd_app_raise_nofile(); // every shard is opened (two descriptors each)
            if (rc == RD_OK && (rc = rd_token_store_open(store_dir, &oo, &store, &eb)) != RD_OK)
                rd_err_prefix(&eb, "--store: ");
            if (rc == RD_OK)
                warn_gc_after(store, store_dir, bundle, &in);
        }
    } else if (rc == RD_OK && opts[3].value) {
        rc = rd_err_set(&eb, RD_ERR_ARG, "--store %s: model '%s' of %s reads no instance tokens",
                        store_dir, in.model, bundle);
    }
    rd_range r = {0, 0};
    if (rc == RD_OK) {
        split_range(ds, split, &r);
        if (r.end - r.begin > limit)
            r.end = r.begin + limit;
        if (r.end == r.begin)
            rc = rd_err_set(&eb, RD_ERR_EMPTY, "%s: the %s split holds no records", data, split);
    }
    if (rc == RD_OK && rd_metrics_create((size_t)(r.end - r.begin), &met) != RD_OK)
        rc = rd_err_set(&eb, RD_ERR_NOMEM, "out of memory for %llu scores",
                        (unsigned long long)(r.end - r.begin));
    // The raw ids, for the CSV only; a folder without them scores all the same.
    int no_ids = 0;
    if (rc == RD_OK && out && (rc = rd_dataset_ids_load(data, &ids, &eb)) == RD_ERR_NOTFOUND) {
        rd_errbuf_clear(&eb);
        rc = RD_OK;
        no_ids = 1;
    }
    // The log lines, for the CSV only, read as the records are.
    int no_lines = 0;
    if (rc == RD_OK && out &&
        (rc = rd_dataset_lines_open(data, rd_dataset_get_info(ds)->n_events, &lines, &eb)) ==
            RD_ERR_NOTFOUND) {
        rd_errbuf_clear(&eb);
        rc = RD_OK;
        no_lines = 1;
    }
    if (rc == RD_OK && out && (rc = out_open(&csv, out, &eb)) == RD_OK)
        fprintf(csv.f, "record,user_key,item_key,ts,label,logit,score,user_id,item_id,log_file,"
                       "log_line\n");
    if (rc == RD_OK && json)
        rc = out_open(&js, json, &eb);
    const size_t K = in.keys_per_candidate, L = in.hist_len, NN = in.n_numeric;
    if (rc == RD_OK) {
        keys = rd_xcalloc(K ? K : 1, sizeof *keys);
        hist = rd_xcalloc(L ? L : 1, sizeof *hist);
        hl = rd_xcalloc(L ? L : 1, 1);
        num = rd_xcalloc(NN ? NN : 1, sizeof *num);
    }
    double t_score = 0;
    uint64_t with_tokens = 0;
    for (uint64_t i = r.begin; i < r.end && rc == RD_OK; i++) {
        const rd_record *rec = rd_dataset_record(ds, i);
        if ((rc = rd_serve_request_from_dataset(sv, ds, i, keys, L ? hist : NULL, L ? hl : NULL,
                                                NN ? num : NULL, &eb)) != RD_OK) {
            rd_err_prefix(&eb, "%s record %llu: ", data, (unsigned long long)i);
            break;
        }
        for (size_t j = 0; restd && j < NN - in.n_stats; j++)
            if (conv[j].restd) {
                double u = (double)num[j] * conv[j].ds_std + conv[j].ds_mean;
                num[j] = (float)((u - conv[j].b_mean) / conv[j].b_std);
            }
        uint64_t item = rec->item_key;
        rd_serve_request rq = {.n = 1,
                               .keys = keys,
                               .hist_items = L ? hist : NULL,
                               .hist_labels = L ? hl : NULL,
                               .numeric = NN ? num : NULL,
                               .items = &item};
        double t0 = rd_mono_s();
        if (store && (rc = rd_serve_fetch_tokens(sv, store, rec->user_key, rec->ts, rec->id, &rq,
                                                 &eb)) != RD_OK) {
            rd_err_prefix(&eb, "%s record %llu: ", data, (unsigned long long)i);
            break;
        }
        float logit = 0, score = 0;
        if ((rc = rd_serve_score(sv, &rq, &score, &logit, &eb)) != RD_OK) {
            rd_err_prefix(&eb, "%s record %llu: ", data, (unsigned long long)i);
            break;
        }
        t_score += rd_mono_s() - t0;
        with_tokens += rq.tok_n > 0;
        if ((rc = rd_metrics_add_logit(met, logit, rec->label > 0.5f ? 1.0f : 0.0f,
                                       rec->user_key)) != RD_OK) {
            rc = rd_err_set(&eb, RD_ERR_CORRUPT, "%s record %llu: logit %g, label %g", data,
                            (unsigned long long)i, (double)logit, (double)rec->label);
            break;
        }
        if (csv.f) {
            fprintf(csv.f, "%llu,%llu,%llu,%lld,%d,%.9g,%.9g", (unsigned long long)i,
                    (unsigned long long)rec->user_key, (unsigned long long)rec->item_key,
                    (long long)rec->ts, rec->label > 0.5f, (double)logit, (double)score);
            if ((rc = csv_ids(csv.f, ids, rec, data, i, &eb)) != RD_OK ||
                (rc = csv_line(csv.f, lines, i, &eb)) != RD_OK)
                break;
            fputc('\n', csv.f);
        }
    }
    // A lines file of more rows than the dataset's records is not the dataset's either.
    if (rc == RD_OK && lines)
        rc = rd_dataset_lines_end(lines, &eb);
    rd_metrics_result res;
    memset(&res, 0, sizeof res);
    if (rc == RD_OK)
        rd_metrics_compute(met, &res);
    const double rate = t_score > 0 ? (double)res.n / t_score : (double)NAN;
    if (rc == RD_OK && js.f) {
        fprintf(js.f, "{\n");
        json_str(js.f, "bundle", bundle);
        json_str(js.f, "data", data);
        json_str(js.f, "split", split);
        json_str(js.f, "job", in.job);
        json_str(js.f, "model", in.model);
        fprintf(js.f, "  \"step\": %lld,\n", (long long)in.step);
        fprintf(js.f, "  \"records\": %llu,\n", (unsigned long long)res.n);
        fprintf(js.f, "  \"positives\": %llu,\n", (unsigned long long)res.positives);
        fprintf(js.f, "  \"with_tokens\": %llu,\n", (unsigned long long)with_tokens);
        fprintf(js.f, "  \"numeric_restandardised\": %d,\n", restd);
        if (out)
            fprintf(js.f, "  \"raw_ids\": %s,\n  \"log_lines\": %s,\n", ids ? "true" : "false",
                    lines ? "true" : "false");
        json_num(js.f, "auc", res.auc, 0);
        json_num(js.f, "gauc", res.gauc, 0);
        json_num(js.f, "logloss", res.logloss, 0);
        json_num(js.f, "calibration", res.calibration, 0);
        json_num(js.f, "mean_score", res.mean_pred, 0);
        json_num(js.f, "records_per_s", rate, 1);
        fprintf(js.f, "}\n");
    }
    rc = out_close(&csv, rc, &eb);
    int csv_placed = rc == RD_OK && csv.path && !csv.to_stdout;
    // Until the JSON is in place too, a SIGTERM / SIGINT removes the CSV as a failure of the JSON
    // does below (its temporary file is registered already, rd_lmdbx_pending_add): a Ctrl-C at
    // the JSON's commit left the CSV alone, a finished-looking output of a command that did not
    // finish. Only once placed: registered earlier, the signal would remove the file it replaces.
    if (csv_placed && js.path && !js.to_stdout)
        (void)rd_lmdbx_pending_add(csv.path);
    rc = out_close(&js, rc, &eb);
    if (rc != RD_OK && csv_placed) {
        // The JSON failed after the CSV was renamed into place: a failed command leaves neither
        // (a script would take the CSV for a finished run's).
        remove(csv.path);
        rd_lmdbx_rmdir_created(csv.path, csv.created);
    }
    if (csv_placed)
        rd_lmdbx_pending_forget(csv.path);
    if (rc == RD_OK) {
        FILE *sum = csv.to_stdout ? stderr : stdout;
        fprintf(
            sum, "scored %llu records (%s split of %s) with %s (job %s, model %s, step %lld)%s\n",
            (unsigned long long)res.n, split, data, bundle, in.job, in.model, (long long)in.step,
            unchecked ? " [numeric transforms not recorded: unchecked]" : "");
        char f_auc[32], f_gauc[32], f_ll[32], f_cal[32], f_mean[32];
        int na = fig4(f_auc, res.auc) | fig4(f_gauc, res.gauc) | fig4(f_ll, res.logloss) |
                 fig4(f_cal, res.calibration) | fig4(f_mean, res.mean_pred);
        fprintf(sum,
                "AUC %s  GAUC %s (%llu users)  logloss %s  calibration %s  mean score %s  "
                "positives %llu\n",
                f_auc, f_gauc, (unsigned long long)res.gauc_users, f_ll, f_cal, f_mean,
                (unsigned long long)res.positives);
        // Why a figure is n/a: the scored records, not the model (as `train` says of a slice).
        if (na)
            fprintf(sum,
                    "(n/a: undefined on these records: AUC needs both classes, GAUC a user with "
                    "both, calibration a positive, every figure a record)\n");
        if (restd)
            fprintf(sum,
                    "%d numeric input%s standardised again: %s was prepared from other data "
                    "than the model's training data\n",
                    restd, restd == 1 ? "" : "s", data);
        if (no_ids)
            fprintf(sum,
                    "no raw ids in %s (no %s: a synthetic source, or a folder prepared before "
                    "they were kept; prepare it again): the CSV's user_id and item_id are "
                    "empty\n",
                    data, RD_DATASET_IDS);
        if (no_lines)
            fprintf(sum,
                    "no log lines in %s (no %s: a synthetic source, or a folder prepared before "
                    "they were kept; prepare it again): the CSV's log_file and log_line are "
                    "empty\n",
                    data, RD_DATASET_LINES);
        if (in.tok_length)
            fprintf(sum, "instance tokens from %s: %llu of the records had some\n", store_dir,
                    (unsigned long long)with_tokens);
        fprintf(sum, "%.0f records/s (one request each, one thread%s)\n", rate,
                store ? ", token fetch included" : "");
    }
    rd_free(keys);
    rd_free(hist);
    rd_free(hl);
    rd_free(num);
    rd_metrics_destroy(met);
    rd_dataset_ids_free(ids);
    rd_dataset_lines_close(lines);
    rd_token_store_destroy(store);
    rd_dataset_close(ds);
    rd_serve_close(sv);
    if (rc != RD_OK) {
        fprintf(stderr, "recdistill score: %s\n", eb.msg);
        return 1;
    }
    return rd_app_stdout_written("score", NULL);
}
