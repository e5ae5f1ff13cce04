// cmd_prepare.c — `recdistill prepare CONFIG [--out DIR]`: build the binary dataset folder of the
// config's data source (data.dir, or DIR) and print its statistics: events, users, items, label
// rate, time range, negative sampling, split sizes and per-field vocabulary.
//
// Exit codes: 0 success, 1 bad config or bad input (one line "recdistill prepare: file:line: ..."
// on stderr; nothing is left at the output path), 2 usage error. Runs without MPI.
#include "commands.h"

#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/config.h"
#include "rd/dataset.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void prepare_usage(FILE *out) {
    fprintf(out,
            "usage: recdistill prepare CONFIG.yaml [--out DIR] [--set PATH=VALUE ...]\n"
            "\n"
            "Build the binary, time-sorted dataset folder of the config's data source\n"
            "(data.source: synthetic | movielens100k | movielens1m | csv) at data.dir, or at DIR\n"
            "with --out, and print its statistics. The folder is written under a temporary name\n"
            "and renamed: on failure nothing is left. An existing dataset folder is replaced.\n"
            "\n" RD_APP_SET_HELP "\n"
            "exit status: 0 ok, 1 bad config or input (message on stderr), 2 usage error\n");
}

static void utc(int64_t t, char *buf, size_t n) {
    time_t tt = (time_t)t;
    struct tm tm;
    // The year in four digits, as ISO 8601 (and data.schema's iso8601) has it: strftime's %Y
    // wrote a log of year 1 as "1-01-01".
    int k = gmtime_r(&tt, &tm) ? snprintf(buf, n, "%04d", tm.tm_year + 1900) : -1;
    if (k < 0 || (size_t)k >= n || !strftime(buf + k, n - (size_t)k, "-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, n, "?");
}

static void print_range(const char *name, rd_range r) {
    printf("  %-10s [%llu, %llu)  %llu events\n", name, (unsigned long long)r.begin,
           (unsigned long long)r.end, (unsigned long long)(r.end - r.begin));
}

static void print_stats(const rd_dataset *ds, const char *dir, double secs) {
    static const char *const sources[] = {"synthetic", "movielens100k", "movielens1m", "csv"};
    const rd_dataset_info *in = rd_dataset_get_info(ds);
    char t0[40], t1[40];
    utc(in->ts_min, t0, sizeof t0);
    utc(in->ts_max, t1, sizeof t1);
    printf("dataset      %s\n", dir);
    printf("source       %s\n", in->source >= 0 && in->source <= 3 ? sources[in->source] : "?");
    printf("events       %llu  (%u-byte records, %.1f MB file)\n", (unsigned long long)in->n_events,
           in->record_size, (double)in->file_bytes / 1e6);
    printf("users        %llu\n", (unsigned long long)in->n_users);
    printf("items        %llu\n", (unsigned long long)in->n_items);
    printf("label rate   %.4f  (%llu positives)\n", (double)in->n_positives / (double)in->n_events,
           (unsigned long long)in->n_positives);
    printf("time         %s .. %s  (%lld .. %lld)\n", t0, t1, (long long)in->ts_min,
           (long long)in->ts_max);
    if (in->neg_rate < 1 || in->pos_rate < 1)
        printf("sampling     kept %llu of %llu events (negatives rate %g, positives rate %g)\n",
               (unsigned long long)in->n_events, (unsigned long long)in->raw_events, in->neg_rate,
               in->pos_rate);
    printf("split\n");
    print_range("batch", rd_dataset_batch(ds));
    for (uint32_t w = 0; w < in->n_windows; w++) {
        char nm[24];
        snprintf(nm, sizeof nm, "stream %u", w);
        print_range(nm, rd_dataset_window(ds, w));
    }
    print_range("holdout", rd_dataset_holdout(ds));
    printf("vocabulary   user %llu, item %llu", (unsigned long long)in->n_users,
           (unsigned long long)in->n_items);
    const rd_dataset_field *f = rd_dataset_fields(ds);
    for (uint32_t i = 0; i < in->n_fields; i++) {
        if (f[i].kind == RD_FIELD_NUMERIC)
            printf(", %s (numeric)", f[i].name);
        else if (f[i].kind == RD_FIELD_FEEDBACK)
            printf(", %s (feedback)", f[i].name);
        else
            printf(", %s %llu", f[i].name, (unsigned long long)f[i].vocab);
    }
    printf("\n");
    printf("prepared in  %.2f s  (%.0f events/s)\n", secs,
           secs > 0 ? (double)in->raw_events / secs : 0.0);
}

int rd_cmd_prepare(int argc, char **argv) {
    rd_app_opt opts[] = {{"--out", RD_APP_STRING, NULL}, {"--set", RD_APP_REPEAT, NULL}};
    const char *config = NULL;
    int n_pos = 0;
    int st = rd_app_parse("recdistill prepare", argc, argv, 1, opts, 2, &config, 1, &n_pos);
    const char *sets[RD_CONFIG_MAX_SETS];
    int n_sets = st == 0 ? rd_app_sets("recdistill prepare", argc, argv, sets) : 0;
    if (n_sets < 0)
        st = 2;
    if (st == 1) {
        prepare_usage(stdout);
        return 0;
    }
    if (st != 0 || !config) {
        prepare_usage(stderr);
        return 2;
    }
    const char *out = opts[0].value;
    rd_config *cfg = rd_xmalloc(sizeof *cfg); // hundreds of KB: keep it off the stack
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_config_load_sets(config, sets, n_sets, cfg, &eb);
    if (rc == RD_OK && out) {
        if (strlen(out) >= sizeof cfg->data.dir) {
            rc = rd_err_set(&eb, RD_ERR_ARG, "--out: path too long");
        } else {
            snprintf(cfg->data.dir, sizeof cfg->data.dir, "%s", out);
        }
    }
    double t0 = rd_mono_s();
    if (rc == RD_OK) {
        rc = rd_dataset_prepare(&cfg->data, cfg->run.seed, &eb);
        // The library names the folder by its config key; here the user gave it as --out.
        if (rc == RD_ERR_EXISTS && out)
            rd_err_prefix(&eb, "--out %s (the dataset folder, data.dir): ", out);
    }
    double secs = rd_mono_s() - t0;
    rd_dataset *ds = NULL;
    if (rc == RD_OK)
        rc = rd_dataset_open(cfg->data.dir, RD_DATASET_NOVERIFY, &ds, &eb);
    if (rc != RD_OK) {
        fprintf(stderr, "recdistill prepare: %s\n", eb.msg[0] ? eb.msg : rd_strerror(rc));
        rd_free(cfg);
        return 1;
    }
    print_stats(ds, cfg->data.dir, secs);
    rd_dataset_close(ds);
    rd_free(cfg);
    return 0;
}
