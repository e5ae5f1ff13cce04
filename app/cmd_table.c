// cmd_table.c — `recdistill table <stats|export|import|evict|reshard|verify|compact> CKPT ...`:
// maintenance of PS table checkpoints (a step-N directory of `recdistill train`, or any
// directory rd_kv_save wrote) with rd/tabletool.h.
//
// Read-only subcommands (stats, export, verify) never write into the checkpoint; the others
// write a NEW checkpoint directory given by --out (which must not exist) and leave the input
// unchanged, so a bad edit can never destroy the only copy; an --out inside the input checkpoint
// (or naming one of its files) is a usage error. Output files are written to a temporary name
// and renamed at the end: a failed command leaves no partial output.
//
// Exit codes: 0 success, 1 failure (message on stderr), 2 usage error.
#include "commands.h"

#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/lmdbx.h"
#include "rd/optim.h"
#include "rd/tabletool.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void table_usage(FILE *out) {
    fprintf(out,
            "usage: recdistill table <command> CKPT [options]\n"
            "\n"
            "CKPT is a checkpoint directory (MANIFEST + shard-NNNNN/, e.g. <ps.checkpoint_dir>/\n"
            "<job>/step-N written by `recdistill train`). Commands that change tables write a new\n"
            "checkpoint to --out DIR (must not exist); the input is never modified (an --out\n"
            "inside CKPT is refused).\n"
            "\n"
            "  stats   CKPT [--table NAME]            rows, bytes, dims, optimizer, histograms\n"
            "                                         of age and update count\n"
            "  export  CKPT --table NAME --out FILE [--format tsv|bin]   rows sorted by key\n"
            "                                         (FILE '-' = stdout, tsv only; an\n"
            "                                         existing FILE is replaced)\n"
            "  import  CKPT --table NAME --in FILE --out DIR [--keys-of T] [--config C]\n"
            "                                         replace the table's rows by an export of\n"
            "                                         it (tsv or bin, detected; FILE '-' =\n"
            "                                         stdin); --keys-of T: of table T,\n"
            "                                         when NAME has init_as: T in the config;\n"
            "                                         --config C: the run's config: its\n"
            "                                         entry of NAME must be the table of CKPT\n"
            "                                         (dim, optimizer, and the table hash of\n"
            "                                         dense.bin), and pending counts into a\n"
            "                                         table without admission are refused\n"
            "                                         (the rows wait in a temporary file in\n"
            "                                         $TMPDIR, else beside CKPT)\n"
            "  evict   CKPT --out DIR [--table NAME] [--older-than T] [--min-count N]\n"
            "                                         drop rows last seen before stream time T\n"
            "                                         (unix seconds, or ISO 8601: 2024-03-01,\n"
            "                                         2024-03-01T12:00:00Z; no zone = UTC)\n"
            "                                         or updated fewer than N times; pending\n"
            "                                         admission counts last seen before T\n"
            "  reshard CKPT --shards P --out DIR      rows to rd_shard_of(key, P) (serve with P\n"
            "                                         PS ranks)\n"
            "  verify  CKPT                           MANIFEST, every shard's CRC and layout,\n"
            "                                         row totals, dense.bin, windows.tsv\n"
            "  compact CKPT --out DIR                 rewrite every shard env without free pages\n"
            "\n"
            "exit status: 0 ok, 1 failure (message on stderr), 2 usage error\n");
}

// What every subcommand reads, as messages name it.
#define TABLE_CKPT_EXPECTED                                                                        \
    "a table checkpoint, a folder holding MANIFEST and shard-NNNNN/ such as "                      \
    "<ps.checkpoint_dir>/<job>/step-N"

// CKPT could not be read: when it is no table checkpoint at all (a token store, a run folder, a
// job's checkpoint folder, a file, ...), say what it is and what was expected instead of naming
// the first file that failed ("X/MANIFEST: bad magic"). A damaged checkpoint keeps the reader's
// message.
static void explain_not_checkpoint(const char *dir, rd_errbuf *eb) {
    rd_ckpt_manifest *m = rd_xmalloc(sizeof *m);
    rd_errbuf local;
    rd_errbuf_clear(&local);
    int readable = rd_ckpt_read_manifest(dir, m, &local) == RD_OK;
    rd_free(m);
    char msg[sizeof eb->msg];
    if (!readable &&
        rd_app_wrong_folder(dir, RD_APP_PATH_TABLE_CKPT, TABLE_CKPT_EXPECTED, msg, sizeof msg)) {
        rd_errbuf_clear(eb);
        rd_err_set(eb, RD_ERR_NOTFOUND, "%s", msg);
    }
}

static int fail(const char *cmd, const rd_errbuf *eb, int rc) {
    fprintf(stderr, "recdistill table %s: %s\n", cmd, eb->msg[0] ? eb->msg : rd_strerror(rc));
    return 1;
}

// Bytes of the files under a directory (one level of shard dirs).
static uint64_t du(const char *dir, const rd_ckpt_manifest *m) {
    uint64_t total = 0;
    struct stat st;
    char p[RD_PATH_MAX * 2 + 32];
    snprintf(p, sizeof p, "%s/MANIFEST", dir);
    if (stat(p, &st) == 0)
        total += (uint64_t)st.st_size;
    snprintf(p, sizeof p, "%s/%s", dir, RD_TRAIN_CKPT_DENSE);
    if (stat(p, &st) == 0)
        total += (uint64_t)st.st_size;
    for (uint32_t s = 0; s < m->n_shards; s++) {
        char sp[RD_PATH_MAX * 2];
        rd_ckpt_shard_path(dir, (int)s, sp, sizeof sp);
        snprintf(p, sizeof p, "%s/data.mdb", sp);
        if (stat(p, &st) == 0)
            total += (uint64_t)st.st_size;
    }
    return total;
}

static void print_hist(const char *what, const uint64_t *h) {
    printf("  %s:", what);
    int any = 0;
    for (int b = 0; b < RD_TABLETOOL_HIST; b++) {
        if (!h[b])
            continue;
        // Bucket b holds [2^b - 1, 2^(b+1) - 2]; the last one everything above (1 << 64 is UB).
        uint64_t lo = (b == 0 ? 0 : ((uint64_t)1 << b) - 1);
        uint64_t hi = b == RD_TABLETOOL_HIST - 1 ? UINT64_MAX : ((uint64_t)1 << (b + 1)) - 2;
        printf(" [%" PRIu64 "..%" PRIu64 "]=%" PRIu64, lo, hi, h[b]);
        any = 1;
    }
    printf("%s\n", any ? "" : " (no rows)");
}

// Pending admission counts of table `table` (-1 = every table), over all shards.
static uint64_t pending_of(const rd_tabletool *tt, int table) {
    uint64_t n = 0;
    rd_tabletool_counts(tt, table, NULL, &n);
    return n;
}

static int cmd_stats(rd_tabletool *tt, const char *dir, const char *table, rd_errbuf *ebp) {
    const rd_ckpt_manifest *m = rd_tabletool_manifest(tt);
    // Every table's statistics before the first line is printed: a read that fails leaves no
    // partial output.
    rd_tabletool_hist h0;
    int src = m->n_tables ? rd_tabletool_stats(tt, 0, &h0, ebp) : RD_OK;
    if (src != RD_OK)
        return src;
    printf("checkpoint %s: step %lld, %u shards, seed %llu, %u tables, %llu bytes on disk\n", dir,
           (long long)m->step, m->n_shards, (unsigned long long)m->seed, m->n_tables,
           (unsigned long long)du(dir, m));
    rd_train_pos pos;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_train_ckpt_read_pos(dir, &pos, &eb) == RD_OK)
        printf("dense: job %s, model %s, step %lld, config hash %016llx\n", pos.job, pos.model,
               (long long)pos.step, (unsigned long long)pos.config_hash);
    for (uint32_t t = 0; t < m->n_tables; t++) {
        const rd_ckpt_table *ct = &m->tables[t];
        if (table && strcmp(table, ct->name) != 0)
            continue;
        rd_tabletool_hist h;
        if ((src = rd_tabletool_stats(tt, (int)t, &h, ebp)) != RD_OK) // computed above
            return src;
        printf("table %s: dim %u, optimizer %s (%u slots), rows %llu, pending %llu, row bytes "
               "%llu",
               ct->name, ct->dim, rd_optim_name((int)ct->optim), ct->slots,
               (unsigned long long)h.rows, (unsigned long long)h.pending,
               (unsigned long long)h.row_bytes);
        if (h.rows)
            printf(", last seen %lld..%lld", (long long)h.oldest, (long long)h.newest);
        printf("\n");
        print_hist("age (s before the newest row)", h.age);
        print_hist("updates", h.count);
    }
    return RD_OK;
}

// The config that the report.json of run folder `run` names (its line `  "config": "PATH",`, as
// rd_report_write writes it) to out (cap bytes). @return 0 when there is none to name: no
// report, no such line, a path with escapes or too long.
static int report_config(const char *run, char *out, size_t cap) {
    char p[RD_PATH_MAX + 32];
    if (snprintf(p, sizeof p, "%s/report.json", run) >= (int)sizeof p)
        return 0;
    FILE *f = NULL;
    if (rd_lmdbx_fopen_regular(p, &f) != 0)
        return 0;
    static const char key[] = "  \"config\": \"";
    char line[RD_PATH_MAX + 64];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, sizeof key - 1) != 0)
            continue;
        const char *v = line + sizeof key - 1, *end = strchr(v, '"');
        size_t n = end ? (size_t)(end - v) : 0;
        if (n > 0 && n < cap && !memchr(v, '\\', n)) {
            memcpy(out, v, n);
            out[n] = '\0';
            found = 1;
        }
        break;
    }
    fclose(f);
    return found;
}

// --config PATH that does not exist. The messages and docs point at the run's
// config.effective.yaml, which run folders of builds before it was written lack: say what to
// give instead, the config the run's report.json names, rather than only "cannot open".
static int config_missing(const char *path, rd_errbuf *eb) {
    static const char eff[] = "config.effective.yaml";
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    rd_errbuf_clear(eb);
    if (strcmp(base, eff) != 0)
        return rd_err_set(eb, RD_ERR_NOTFOUND, "--config %s: no such file", path);
    char run[RD_PATH_MAX], named[RD_PATH_MAX];
    int rl = slash ? (slash == path ? 1 : (int)(slash - path)) : 1;
    int named_ok = snprintf(run, sizeof run, "%.*s", rl, slash ? path : ".") < (int)sizeof run &&
                   report_config(run, named, sizeof named);
    const char *what = "a run folder written by a build before config.effective.yaml holds none";
    const char *then = "with that run's --set overrides written into it (the table's entry is "
                       "checked against the hash dense.bin records)";
    if (named_ok)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "--config %s: no such file: %s; give the config the run was trained "
                          "with instead, --config %s (%s/report.json names it; a relative path "
                          "is from where train ran), %s",
                          path, what, named, run, then);
    return rd_err_set(eb, RD_ERR_NOTFOUND,
                      "--config %s: no such file: %s; give the config the run was trained with "
                      "instead (its report.json names it, \"config\"), %s",
                      path, what, then);
}

// The admit_count of table `name` in the run's config `path`, for the import's check. The
// config must be the one the checkpoint `dir` was trained with: its table's dim and optimizer
// are those of the MANIFEST, and its table hash (name, dim, optimizer, init_std, admit_count,
// ttl, init_as) the one dense.bin records, when it records that table. Another job's config, or
// this run's config edited since, would give an admit_count the checkpoint's PS never had.
static int admission_from_config(
    rd_tabletool *tt, int ti, const char *dir, const char *name, const char *path, rd_errbuf *eb) {
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return config_missing(path, eb);
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    int rc = rd_config_load(path, cfg, eb);
    int t = 0;
    while (rc == RD_OK && t < cfg->ps.n_tables && strcmp(cfg->ps.tables[t].name, name) != 0)
        t++;
    if (rc == RD_OK && t == cfg->ps.n_tables)
        rc = rd_err_set(eb, RD_ERR_CONFIG,
                        "--config %s: no table '%s' in ps.tables: not the config of the run that "
                        "wrote this checkpoint",
                        path, name);
    const rd_table_config *tc = rc == RD_OK ? &cfg->ps.tables[t] : NULL;
    const rd_ckpt_table *ct = &rd_tabletool_manifest(tt)->tables[ti];
    if (rc == RD_OK && (uint32_t)tc->dim != ct->dim)
        rc = rd_err_set(eb, RD_ERR_CONFIG,
                        "--config %s: ps.tables[%d].dim is %d, but table '%s' of %s has dim %u: "
                        "not the config of the run that wrote this checkpoint",
                        path, t, tc->dim, name, dir, ct->dim);
    else if (rc == RD_OK && (uint32_t)tc->optim.kind != ct->optim)
        rc = rd_err_set(eb, RD_ERR_CONFIG,
                        "--config %s: ps.tables[%d].optimizer is %s, but table '%s' of %s was "
                        "trained with %s: not the config of the run that wrote this checkpoint",
                        path, t, rd_optim_name(tc->optim.kind), name, dir,
                        rd_optim_name((int)ct->optim));
    if (rc == RD_OK) {
        // dense.bin of a training checkpoint records the hash of each table its model reads
        // (absent in a bare rd_kv_save folder, a version-1 file or another model's tables: not
        // checked then; a damaged one is verify's business).
        rd_train_pos *pos = rd_xmalloc(sizeof *pos);
        rd_errbuf local;
        rd_errbuf_clear(&local);
        if (rd_train_ckpt_read_pos(dir, pos, &local) == RD_OK && pos->has_ident) {
            for (int c = 0; c < pos->n_tables && c < RD_TRAIN_CKPT_TABLES; c++)
                if (strcmp(pos->table[c], name) == 0 &&
                    pos->table_hash[c] != rd_train_ckpt_table_hash(tc))
                    rc = rd_err_set(eb, RD_ERR_CONFIG,
                                    "--config %s: ps.tables[%d] ('%s') differs from the config "
                                    "%s/%s was trained with (dim, optimizer, init_std, "
                                    "admit_count, ttl or init_as): not the config of the run that "
                                    "wrote this checkpoint (give its config.effective.yaml)",
                                    path, t, name, dir, RD_TRAIN_CKPT_DENSE);
        }
        rd_free(pos);
    }
    if (rc == RD_OK) {
        char src[RD_PATH_MAX + 64];
        snprintf(src, sizeof src, "%s: ps.tables[%d].admit_count", path, t);
        rc = rd_tabletool_set_admission(tt, ti, tc->admit_count, src, eb);
    }
    rd_free(cfg);
    return rc;
}

int rd_cmd_table(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        table_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    // The options each subcommand takes (as in its usage line); any other is refused, not ignored.
    static const rd_app_sub subs[] = {{"stats", "--table"},
                                      {"export", "--table --out --format"},
                                      {"import", "--table --in --out --keys-of --config"},
                                      {"evict", "--out --table --older-than --min-count"},
                                      {"reshard", "--shards --out"},
                                      {"verify", ""},
                                      {"compact", "--out"}};
    const rd_app_sub *sub =
        rd_app_sub_find("recdistill table", subs, sizeof subs / sizeof subs[0], cmd);
    if (!sub) {
        table_usage(stderr);
        return 2;
    }
    char prog[64];
    snprintf(prog, sizeof prog, "recdistill table %s", cmd);
    rd_app_opt opts[] = {
        {"--table", RD_APP_STRING, NULL},      {"--out", RD_APP_STRING, NULL},
        {"--in", RD_APP_STRING, NULL},         {"--format", RD_APP_STRING, NULL},
        {"--older-than", RD_APP_NUMBER, NULL}, {"--min-count", RD_APP_NUMBER, NULL},
        {"--shards", RD_APP_NUMBER, NULL},     {"--keys-of", RD_APP_STRING, NULL},
        {"--config", RD_APP_STRING, NULL}};
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *dir = NULL;
    int n_pos = 0;
    int st = rd_app_parse(prog, argc, argv, 2, opts, n_opts, &dir, 1, &n_pos);
    if (st == 1) {
        table_usage(stdout);
        return 0;
    }
    if (st != 0)
        return 2;
    if (rd_app_only(prog, cmd, opts, n_opts, sub->taken) != 0)
        return 2;
    const char *table = opts[0].value, *out = opts[1].value, *in = opts[2].value;
    const char *format = opts[3].value ? opts[3].value : "tsv";
    int64_t older = INT64_MIN, min_count = 0, shards = 0;
    if (opts[4].value && rd_app_parse_time(opts[4].value, &older)) {
        fprintf(stderr,
                "%s: --older-than: '%s' is not a time (unix seconds, or ISO 8601 such as "
                "2024-03-01T12:00:00Z)\n",
                prog, opts[4].value);
        return 2;
    }
    if (opts[5].value && (rd_app_parse_i64(opts[5].value, &min_count) || min_count < 0)) {
        fprintf(stderr, "%s: --min-count: '%s' is not a count\n", prog, opts[5].value);
        return 2;
    }
    // Given is the option's presence, not a value: INT64_MIN and 0 used to be the "not given"
    // sentinels, so `--min-count 0` was reported as missing. Both bounds that can drop nothing
    // (no count is below 0, no time before INT64_MIN) are refused by name instead of writing an
    // unchanged copy of the checkpoint.
    int older_given = opts[4].value != NULL, min_count_given = opts[5].value != NULL;
    if (min_count_given && min_count == 0) {
        fprintf(stderr,
                "%s: --min-count 0 evicts nothing (every row has a count >= 0); give N >= 1\n",
                prog);
        return 2;
    }
    if (older_given && older == INT64_MIN) {
        fprintf(stderr,
                "%s: --older-than %s evicts nothing (no stream time is before it); give a later "
                "time\n",
                prog, opts[4].value);
        return 2;
    }
    if (opts[6].value &&
        (rd_app_parse_i64(opts[6].value, &shards) || shards < 1 || shards > RD_CKPT_MAX_SHARDS)) {
        fprintf(stderr, "%s: --shards: '%s' is not in 1..%d\n", prog, opts[6].value,
                RD_CKPT_MAX_SHARDS);
        return 2;
    }
    int edits = strcmp(cmd, "import") == 0 || strcmp(cmd, "evict") == 0 ||
                strcmp(cmd, "reshard") == 0 || strcmp(cmd, "compact") == 0;
    const char *missing = !dir                                 ? "CKPT"
                          : edits && !out                      ? "--out DIR"
                          : strcmp(cmd, "export") == 0 && !out ? "--out FILE"
                          : (strcmp(cmd, "export") == 0 || strcmp(cmd, "import") == 0) && !table
                              ? "--table NAME"
                          : strcmp(cmd, "import") == 0 && !in          ? "--in FILE"
                          : strcmp(cmd, "reshard") == 0 && shards == 0 ? "--shards P"
                          : strcmp(cmd, "evict") == 0 && !older_given && !min_count_given
                              ? "--older-than T or --min-count N"
                              : NULL;
    if (missing) {
        fprintf(stderr, "recdistill table %s: missing %s (recdistill table --help)\n", cmd,
                missing);
        return 2;
    }
    int fmt = strcmp(format, "tsv") == 0   ? RD_TABLETOOL_TSV
              : strcmp(format, "bin") == 0 ? RD_TABLETOOL_BIN
                                           : -1;
    if (fmt < 0) {
        fprintf(stderr, "recdistill table %s: --format: '%s' is not tsv|bin\n", cmd, format);
        return 2;
    }
    // Binary rows to a terminal or a pipe: an argument error, like the other refusals here.
    if (strcmp(cmd, "export") == 0 && strcmp(out, "-") == 0 && fmt != RD_TABLETOOL_TSV) {
        fprintf(stderr,
                "recdistill table export: --out - --format bin: a binary export needs a file "
                "(stdout takes --format tsv)\n");
        return 2;
    }
    if (strcmp(cmd, "export") != 0 &&
        rd_app_out_not_stdout(prog, "--out", out, "a checkpoint is written to a folder") != 0)
        return 2;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // An output in the input would overwrite it (export renamed its TSV over the MANIFEST, the
    // commit point) or add a folder to it: refused before anything is read or written.
    if (out && strcmp(out, "-") != 0 && strcmp(cmd, "stats") != 0 && strcmp(cmd, "verify") != 0 &&
        rd_lmdbx_check_out_not_input("--out", out, "the input checkpoint", dir, &eb) != RD_OK) {
        fprintf(stderr, "%s: %s\n", prog, eb.msg);
        return 2;
    }
    int rc;
    if (strcmp(cmd, "verify") == 0) {
        rd_ckpt_manifest *m = calloc(1, sizeof *m);
        if (!m)
            return 1;
        rc = rd_ckpt_verify(dir, &eb);
        if (rc == RD_OK)
            rc = rd_ckpt_read_manifest(dir, m, &eb);
        else
            explain_not_checkpoint(dir, &eb);
        rd_train_pos pos;
        int dense = 0;
        if (rc == RD_OK) {
            int d = rd_train_ckpt_read_pos(dir, &pos, &eb);
            if (d == RD_OK) {
                dense = 1;
                if (pos.step != m->step)
                    rc = rd_err_set(&eb, RD_ERR_CORRUPT,
                                    "%s: dense.bin is of step %lld, the MANIFEST of step %lld", dir,
                                    (long long)pos.step, (long long)m->step);
                // windows.tsv has no CRC, but a resume refuses one it cannot read: so does
                // verify, rather than saying ok about a checkpoint that will not resume.
                int n_win = -1;
                if (rc == RD_OK)
                    rc = rd_trainer_windows_check(dir, pos.window, pos.range_step, &n_win, &eb);
                // Absent is fine of an older build only: since dense.bin version 3 (the split
                // recorded) every checkpoint is written with it, so one without it lost it in a
                // copy, and a resume from it goes on with the earlier windows' metrics NaN.
                if (rc == RD_OK && n_win < 0 && pos.split_windows > 0) {
                    int64_t w = (int64_t)pos.window + (pos.range_step > 0 ? 1 : 0);
                    rc = rd_err_set(&eb, RD_ERR_NOTFOUND,
                                    "%s/%s: missing, but %s (version 3) is always written with "
                                    "it: lost in a copy? A resume would take the metrics of the "
                                    "%lld stream window(s) evaluated before it as NaN; copy it "
                                    "along from the checkpoint this one was copied from",
                                    dir, RD_TRAIN_CKPT_WINDOWS, RD_TRAIN_CKPT_DENSE,
                                    (long long)(w > 0 ? w : 0));
                }
            } else if (d != RD_ERR_NOTFOUND) {
                rc = d;
            } else {
                rd_errbuf_clear(&eb);
            }
        }
        if (rc == RD_OK) {
            uint64_t rows = 0;
            for (uint32_t t = 0; t < m->n_tables; t++)
                rows += m->tables[t].rows;
            printf("ok: %s: step %lld, %u shards, %u tables, %llu rows%s\n", dir,
                   (long long)m->step, m->n_shards, m->n_tables, (unsigned long long)rows,
                   dense ? ", dense.bin ok"
                         : ", no dense.bin (PS tables only: not a checkpoint that train --resume "
                           "or export can use)");
        }
        free(m);
        return rc == RD_OK ? 0 : fail(cmd, &eb, rc);
    }

    // An export merges every shard's rows at once, one LMDB env (one descriptor) per shard: a
    // checkpoint of thousands of shards needs more files than the usual soft limit of 1024. With
    // the hard limit too low as well, it merges them in groups through a temporary file (slower,
    // rd/tabletool.h "Memory"): raise the soft limit so that one pass is taken whenever it can.
    rd_app_raise_nofile(); // best effort: the export groups the shards
    rd_tabletool *tt = NULL;
    // One shard at a time (rd/tabletool.h "Memory"): a checkpoint larger than this machine's
    // memory can be inspected, edited and resharded.
    if ((rc = rd_tabletool_open_stream(dir, 0, &tt, &eb)) != RD_OK) {
        explain_not_checkpoint(dir, &eb);
        return fail(cmd, &eb, rc);
    }
    int ti = -1;
    if (table && (ti = rd_tabletool_find(tt, table)) < 0) {
        rd_err_set(&eb, RD_ERR_NOTFOUND, "%s: no table named '%s'", dir, table);
        rd_tabletool_close(tt);
        return fail(cmd, &eb, RD_ERR_NOTFOUND);
    }
    int code = 0;
    if (strcmp(cmd, "stats") == 0) {
        rc = cmd_stats(tt, dir, table, &eb);
    } else if (strcmp(cmd, "export") == 0) {
        int to_stdout = strcmp(out, "-") == 0;
        // A unique temporary file beside --out, renamed over it: never over a FIFO, device or
        // symlink, and never through a link planted under a predictable name (rd/lmdbx.h).
        // Missing parent folders of --out are made, and removed again when the export fails.
        rd_lmdbx_outfile of;
        memset(&of, 0, sizeof of);
        FILE *f = stdout;
        char created[RD_PATH_MAX * 2];
        created[0] = 0;
        if (!to_stdout && strlen(out) >= sizeof created) {
            rc = rd_err_set(&eb, RD_ERR_ARG, "--out: path too long");
        } else if (!to_stdout &&
                   (rc = rd_lmdbx_mkdir_parents(out, created, sizeof created, &eb)) == RD_OK) {
            rc = rd_lmdbx_outfile_open(out, &of, &eb);
            f = of.f;
        }
        // A write to the output names it; the export's other I/O errors (a temporary file of a
        // grouped export) name their own folder and are not the output's.
        if (rc == RD_OK && (rc = rd_tabletool_export(tt, ti, fmt, f, &eb)) == RD_ERR_IO &&
            strncmp(eb.msg, "export of table ", 16) == 0)
            rd_err_prefix(&eb, "%s: ", to_stdout ? "standard output" : out);
        if (!to_stdout) {
            if (rc == RD_OK)
                rc = rd_lmdbx_outfile_commit_out(&of, &eb);
            else
                rd_lmdbx_outfile_abort(&of);
            // The folders made for it are synced in theirs too (a crash could lose the path).
            if (rc == RD_OK && (rc = rd_lmdbx_fsync_parents(out, created, &eb)) != RD_OK)
                unlink(out);
            if (rc != RD_OK)
                rd_lmdbx_rmdir_created(out, created);
        }
    } else if (strcmp(cmd, "import") == 0) {
        // "-" reads standard input, as export's "--out -" writes standard output: an export
        // piped through a filter into an import.
        const int from_stdin = strcmp(in, "-") == 0;
        const char *in_name = from_stdin ? "standard input" : in;
        FILE *f = from_stdin ? stdin : fopen(in, "rb");
        rd_tabletool_imported im;
        memset(&im, 0, sizeof im);
        const uint64_t pend_before = pending_of(tt, ti);
        const char *config = opts[8].value;
        // The checkpoint does not record the table's admission; the run's config does.
        rc = config ? admission_from_config(tt, ti, dir, table, config, &eb) : RD_OK;
        if (rc == RD_OK && !f)
            rc = rd_err_set(&eb, errno == ENOENT ? RD_ERR_NOTFOUND : RD_ERR_IO, "%s: %s", in,
                            strerror(errno));
        else if (rc == RD_OK)
            rc = rd_tabletool_import_keys_of(tt, ti, opts[7].value, f, in_name, &im, &eb);
        if (f && !from_stdin)
            fclose(f);
        if (rc == RD_OK)
            rc = rd_tabletool_write(tt, out, 0, &eb);
        if (rc == RD_OK) {
            printf("imported %llu rows and %llu pending admission counts into table %s: %s\n",
                   (unsigned long long)im.rows, (unsigned long long)im.pending, table, out);
            if (!im.has_pending)
                fprintf(stderr,
                        "%s: note: %s is an export of an older build (no pending admission "
                        "counts): the table's %llu pending counts were dropped\n",
                        prog, in_name, (unsigned long long)im.dropped);
            // Without the config, a file that brings the first pending counts is the one hint
            // that the table may have no admission (such a table never has any).
            if (!config && im.pending && pend_before == 0)
                fprintf(stderr,
                        "%s: note: table %s held no pending admission counts and %s brings "
                        "%llu: a table without admission (admit_count 1) never has any, and its "
                        "PS would never read them; --config CONFIG checks the table's "
                        "admit_count (and refuses them then)\n",
                        prog, table, in_name, (unsigned long long)im.pending);
        }
    } else if (strcmp(cmd, "evict") == 0) {
        // Pending admission counts (keys counted for admission, no row yet) carry a last-seen
        // time: --older-than drops them by the same rule as rows. Their count is of sightings,
        // not of updates, so --min-count does not apply to them. The summary says both.
        uint64_t n = 0, pend_before = pending_of(tt, ti);
        rc = rd_tabletool_evict(tt, ti, older, (uint64_t)min_count, &n, &eb);
        uint64_t pend_after = rc == RD_OK ? pending_of(tt, ti) : pend_before;
        if (rc == RD_OK)
            rc = rd_tabletool_write(tt, out, 0, &eb);
        if (rc == RD_OK)
            printf("evicted %llu rows and %llu of %llu pending admission counts%s: %s\n",
                   (unsigned long long)n, (unsigned long long)(pend_before - pend_after),
                   (unsigned long long)pend_before,
                   pend_before && older == INT64_MIN ? " (only --older-than drops those)" : "",
                   out);
    } else if (strcmp(cmd, "reshard") == 0) {
        rc = rd_tabletool_write(tt, out, (int)shards, &eb);
        if (rc == RD_OK)
            printf("resharded %u -> %lld shards: %s\n", rd_tabletool_manifest(tt)->n_shards,
                   (long long)shards, out);
    } else { // compact
        uint64_t before = du(dir, rd_tabletool_manifest(tt));
        rc = rd_tabletool_write(tt, out, 0, &eb);
        if (rc == RD_OK)
            printf("compacted %llu -> %llu bytes: %s\n", (unsigned long long)before,
                   (unsigned long long)du(out, rd_tabletool_manifest(tt)), out);
    }
    rd_tabletool_close(tt);
    if (rc != RD_OK)
        return fail(cmd, &eb, rc);
    return code;
}
