// bench_prepare.c — throughput (events/s) and peak memory of `prepare`: MovieLens-100K through
// the movielens100k preset, and N synthetic events through the long-range generator.
//
//   bench_prepare [--events N] [--ml100k DIR] [--out DIR] [--reps R] [--warmup W]
//                 [--skip-ml] [--skip-synth] [--json PATH]
//
// Each run happens in a forked child, so that its peak resident set (wait4's ru_maxrss) is its
// own; the child also times a full open (mmap + CRC-32C of every byte). W warm-up runs per case
// are discarded, then R runs are reported as min / avg / max (the average rate is the events over
// the average time). Throughput counts input events (before negative sampling) per second of wall
// time, fsync included. Resident set counts the pages of the output file touched through the
// mapping while the index is built (released in 32 MiB steps), not the page cache.
#include "bench_args.h"
#include "rd/clock.h"
#include "rd/config.h"
#include "rd/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct run_result {
    int ok;
    double prepare_s;
    double open_s;
    uint64_t events; // input events
    uint64_t file_bytes;
    char err[RD_ERR_MSG_MAX];
} run_result;

typedef struct stats {
    double min, avg, max;
} stats;

typedef struct case_result {
    const char *name;
    uint64_t events;
    uint64_t file_bytes;
    int reps;
    stats time_s, events_per_s, peak_rss_mb, open_s;
} case_result;

// Remove the dataset folder a run made, every file prepare writes: the next run's prepare
// refuses a folder that is not a dataset (an ids.csv left behind made every run after the
// MovieLens case's first fail, "exists and is not a dataset folder").
static void remove_dataset(const char *dir) {
    static const char *const files[] = {RD_DATASET_FILE, RD_DATASET_META, RD_DATASET_IDS,
                                        RD_DATASET_LINES};
    char p[RD_PATH_MAX + 64];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

// Child: prepare + verified open; the result goes through the pipe.
static void child_run(const rd_data_config *dc, int fd) {
    run_result r;
    memset(&r, 0, sizeof r);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    double t0 = rd_mono_s();
    int rc = rd_dataset_prepare(dc, 42, &eb);
    r.prepare_s = rd_mono_s() - t0;
    if (rc == RD_OK) {
        rd_dataset *ds = NULL;
        t0 = rd_mono_s();
        rc = rd_dataset_open(dc->dir, 0, &ds, &eb);
        r.open_s = rd_mono_s() - t0;
        if (rc == RD_OK) {
            r.events = rd_dataset_get_info(ds)->raw_events;
            r.file_bytes = rd_dataset_get_info(ds)->file_bytes;
            rd_dataset_close(ds);
        }
    }
    r.ok = rc == RD_OK;
    snprintf(r.err, sizeof r.err, "%s", eb.msg);
    ssize_t w = write(fd, &r, sizeof r);
    _exit(w == (ssize_t)sizeof r && r.ok ? 0 : 1);
}

// One run in a child process. @return 0 on success.
static int run_once(const rd_data_config *dc, run_result *r, double *rss_mb) {
    int p[2];
    if (pipe(p) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(p[0]);
        child_run(dc, p[1]);
    }
    close(p[1]);
    memset(r, 0, sizeof *r);
    ssize_t got = read(p[0], r, sizeof *r);
    close(p[0]);
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid)
        return -1;
    *rss_mb = (double)ru.ru_maxrss / 1024.0; // KiB on Linux
    remove_dataset(dc->dir);
    if (got != (ssize_t)sizeof *r || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !r->ok) {
        fprintf(stderr, "bench_prepare: run failed: %s\n", got > 0 ? r->err : "child died");
        return -1;
    }
    return 0;
}

static void acc(stats *s, double v, int i) {
    if (i == 0 || v < s->min)
        s->min = v;
    if (i == 0 || v > s->max)
        s->max = v;
    s->avg += v;
}

static int
run_case(const char *name, const rd_data_config *dc, int warmup, int reps, case_result *cr) {
    memset(cr, 0, sizeof *cr);
    cr->name = name;
    cr->reps = reps;
    run_result r;
    double rss;
    for (int i = 0; i < warmup; i++)
        if (run_once(dc, &r, &rss) != 0)
            return -1;
    for (int i = 0; i < reps; i++) {
        if (run_once(dc, &r, &rss) != 0)
            return -1;
        acc(&cr->time_s, r.prepare_s, i);
        acc(&cr->events_per_s, (double)r.events / r.prepare_s, i);
        acc(&cr->peak_rss_mb, rss, i);
        acc(&cr->open_s, r.open_s, i);
        cr->events = r.events;
        cr->file_bytes = r.file_bytes;
    }
    cr->time_s.avg /= reps;
    // the average rate is the events over the average time (the mean of the rates would weigh a
    // fast run's rate as much as a slow one's and overstate the throughput)
    cr->events_per_s.avg = cr->time_s.avg > 0 ? (double)cr->events / cr->time_s.avg : 0.0;
    cr->peak_rss_mb.avg /= reps;
    cr->open_s.avg /= reps;
    return 0;
}

static void print_case(const case_result *c) {
    printf("%-14s %11llu %9.1f  %7.3f %7.3f %7.3f  %10.0f %10.0f %10.0f  %7.1f %7.1f  %7.3f\n",
           c->name, (unsigned long long)c->events, (double)c->file_bytes / 1e6, c->time_s.min,
           c->time_s.avg, c->time_s.max, c->events_per_s.min, c->events_per_s.avg,
           c->events_per_s.max, c->peak_rss_mb.avg, c->peak_rss_mb.max, c->open_s.avg);
}

static void json_stats(FILE *f, const char *key, const stats *s) {
    fprintf(f, "\"%s\": {\"min\": %.6g, \"avg\": %.6g, \"max\": %.6g}", key, s->min, s->avg,
            s->max);
}

static void usage(FILE *out) {
    fprintf(out, "usage: bench_prepare [--events N] [--ml100k DIR] [--out DIR] [--reps R]\n"
                 "                     [--warmup W] [--skip-ml] [--skip-synth] [--json PATH]\n"
                 "MovieLens-100K is read from --ml100k DIR, else $RD_SHARED_DATA/movielens-100k,\n"
                 "else ../shared/data/movielens-100k relative to the current folder (as the\n"
                 "movielens100k preset's default); without u.data there the case is skipped,\n"
                 "but a --ml100k DIR without u.data is refused (exit 2).\n");
}

int main(int argc, char **argv) {
    uint64_t events = 1000000;
    const char *ml = NULL, *json = NULL, *out = NULL;
    int reps = 3, warmup = 1, skip_ml = 0, skip_synth = 0;
    long long x = 0;
    bench_seen seen = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") != 0 && strcmp(a, "--help") != 0 &&
            bench_once(&seen, stderr, "bench_prepare", a) != 0)
            return usage(stderr), 2;
        if (!strcmp(a, "--events")) {
            if (bench_int(stderr, "bench_prepare", a, v, 1, 1000000000000LL, &x) != 0)
                return usage(stderr), 2;
            events = (uint64_t)x;
            i++;
        } else if (!strcmp(a, "--ml100k") && v) {
            ml = v;
            i++;
        } else if (!strcmp(a, "--out") && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--json") && v) {
            json = v;
            i++;
        } else if (!strcmp(a, "--reps")) {
            if (bench_int(stderr, "bench_prepare", a, v, 1, 1000000, &x) != 0)
                return usage(stderr), 2;
            reps = (int)x;
            i++;
        } else if (!strcmp(a, "--warmup")) {
            if (bench_int(stderr, "bench_prepare", a, v, 0, 1000000, &x) != 0)
                return usage(stderr), 2;
            warmup = (int)x;
            i++;
        } else if (!strcmp(a, "--skip-ml")) {
            skip_ml = 1;
        } else if (!strcmp(a, "--skip-synth")) {
            skip_synth = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_prepare: '%s': %s\n", a,
                    v || a[0] != '-' ? "unknown option"
                                     : "unknown option, or an option without its value");
            usage(stderr);
            return 2;
        }
    }
    if (json && bench_json_ok(stderr, "bench_prepare", json) != 0)
        return 2;
    if (bench_one_process(stderr, "bench_prepare") != 0)
        return 2;
    // A case left out must be one asked for: a --ml100k DIR without u.data (a typo) was skipped
    // like the default folder, and the run exited 0 with JSON that lacked the case, which a
    // comparison of two machines' files then read as the other machine's only.
    if (skip_ml && skip_synth) {
        fprintf(stderr, "bench_prepare: --skip-ml and --skip-synth leave no case to run\n");
        return usage(stderr), 2;
    }
    // The MovieLens folder as data.input holds it (RD_PATH_MAX - 1 bytes), checked before anything
    // is made: probe and mlbuf had 600 and 512 bytes, so a longer --ml100k DIR was cut and
    // refused as "no <the cut path>", and a longer RD_SHARED_DATA was cut and its case skipped.
    struct stat st;
    char probe[RD_PATH_MAX + 16];
    if (ml && !skip_ml) {
        if (strlen(ml) >= RD_PATH_MAX) {
            fprintf(stderr, "bench_prepare: --ml100k: path too long (at most %d bytes): %s\n",
                    RD_PATH_MAX - 1, ml);
            return usage(stderr), 2;
        }
        snprintf(probe, sizeof probe, "%s/u.data", ml);
        if (stat(probe, &st) != 0) {
            fprintf(stderr, "bench_prepare: --ml100k: no %s (%s)\n", probe, strerror(errno));
            return usage(stderr), 2;
        }
    }
    char mlbuf[RD_PATH_MAX];
    if (!ml) {
        const char *shared = getenv("RD_SHARED_DATA");
        int n =
            snprintf(mlbuf, sizeof mlbuf, "%s/movielens-100k", shared ? shared : "../shared/data");
        if (n < 0 || (n >= (int)sizeof mlbuf && !skip_ml)) {
            fprintf(stderr,
                    "bench_prepare: RD_SHARED_DATA: path too long (at most %d bytes with "
                    "/movielens-100k): %s\n",
                    RD_PATH_MAX - 1, shared);
            return 2;
        }
        ml = mlbuf;
    }
    // Without --out: a new folder of its own (in $TMPDIR, else /tmp), removed however the run
    // ends (bench_tmp_own); a /tmp/rd_bench_prepare_<pid> was left by a run that failed early.
    char outbuf[4200];
    int made_out = 1;
    if (!out) {
        if (bench_tmp_make("bench_prepare", "bench_prepare", outbuf, sizeof outbuf) != 0)
            return 1;
        out = outbuf;
    } else {
        // The folder is removed at the end only when this run made it: an --out DIR the user
        // had made (empty) was removed too.
        made_out = mkdir(out, 0777) == 0;
        if (!made_out && errno != EEXIST) {
            fprintf(stderr, "bench_prepare: cannot create %s\n", out);
            return 1;
        }
    }
    rd_config *cfg = calloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    if (snprintf(cfg->data.dir, sizeof cfg->data.dir, "%s/ds", out) >= (int)sizeof cfg->data.dir) {
        fprintf(stderr, "bench_prepare: --out path too long: %s\n", out);
        if (made_out)
            rmdir(out);
        return 2;
    }
    // Each rep prepares into OUT/ds and removes it: a dataset (or anything) already there would
    // be overwritten and then deleted.
    if (!made_out && lstat(cfg->data.dir, &st) == 0) {
        fprintf(stderr,
                "bench_prepare: --out %s: %s exists and each rep replaces and removes it; give "
                "another --out\n",
                out, cfg->data.dir);
        return 2;
    }
    case_result cases[2];
    int n_cases = 0, rc = 0;
    snprintf(probe, sizeof probe, "%s/u.data", ml);
    if (!skip_ml && stat(probe, &st) != 0) {
        printf("movielens100k: skipped (no %s; give --ml100k DIR or RD_SHARED_DATA)\n", probe);
        skip_ml = 1;
    }
    printf("%-14s %11s %9s  %7s %7s %7s  %10s %10s %10s  %7s %7s  %7s\n", "case", "events",
           "file_MB", "t_min", "t_avg", "t_max", "ev/s_min", "ev/s_avg", "ev/s_max", "rss_avg",
           "rss_max", "open_s");
    if (!skip_ml) {
        cfg->data.source = RD_DATA_MOVIELENS100K;
        if (strlen(ml) >= sizeof cfg->data.input) {
            fprintf(stderr, "bench_prepare: --ml100k path too long\n");
            return 2;
        }
        memcpy(cfg->data.input, ml, strlen(ml) + 1);
        if (run_case("movielens100k", &cfg->data, warmup, reps, &cases[n_cases]) == 0)
            print_case(&cases[n_cases++]);
        else
            rc = 1;
    }
    if (!skip_synth) {
        cfg->data.source = RD_DATA_SYNTHETIC;
        cfg->data.synthetic.events = events;
        if (run_case("synthetic", &cfg->data, warmup, reps, &cases[n_cases]) == 0)
            print_case(&cases[n_cases++]);
        else
            rc = 1;
    }
    if (made_out)
        rmdir(out);
    // A failed case leaves no JSON (the one that ran, or an empty "cases" list, replaced an earlier
    // file, with exit 1): a comparison of two machines' files must not read it as a whole run.
    if (json && rc != 0)
        fprintf(stderr, "bench_prepare: --json: a case failed: '%s' not written\n", json);
    else if (json) {
        bench_json bj;
        FILE *f = bench_json_open(&bj, "bench_prepare", json);
        if (!f)
            return 1;
        fprintf(f, "{\"bench\": \"prepare\", \"warmup\": %d, \"cases\": [", warmup);
        for (int i = 0; i < n_cases; i++) {
            const case_result *c = &cases[i];
            fprintf(f,
                    "%s\n  {\"name\": \"%s\", \"events\": %llu, \"file_bytes\": %llu, "
                    "\"reps\": %d, ",
                    i ? "," : "", c->name, (unsigned long long)c->events,
                    (unsigned long long)c->file_bytes, c->reps);
            json_stats(f, "time_s", &c->time_s);
            fprintf(f, ", ");
            json_stats(f, "events_per_s", &c->events_per_s);
            fprintf(f, ", ");
            json_stats(f, "peak_rss_mb", &c->peak_rss_mb);
            fprintf(f, ", ");
            json_stats(f, "open_verify_s", &c->open_s);
            fprintf(f, "}");
        }
        fprintf(f, "\n]}\n");
        if (bench_json_commit(&bj, "bench_prepare") != 0)
            rc = 1;
    }
    free(cfg);
    return rc;
}
