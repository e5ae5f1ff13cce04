// cmd_export.c — `recdistill export CONFIG --out FILE [--job NAME] [--run DIR] [--ckpt DIR]
// [--data DIR] [--seed N]`:
// the serving bundle of a trained student (rd/serve.h): its main tower and the embedding rows
// of its tables, with the format version and the config hash, from a training checkpoint.
//
// Defaults: the first student job of the config (the only job when there is one), its newest
// complete checkpoint under ps.checkpoint_dir, the dataset at data.dir; --run DIR and --seed N
// move these as `train --out DIR` and `train --seed N` did. The checkpoint's dense.bin must be
// of the step of its tables (MANIFEST), as --resume requires. The bundle is written to a
// temporary name and renamed: a failure leaves nothing at FILE (nor the parent folders of FILE
// that the export created).
//
// Exit codes: 0 success, 1 failure (message on stderr), 2 usage error.
#include "commands.h"

#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/config.h"
#include "rd/lmdbx.h"
#include "rd/serve.h"
#include "rd/train_ckpt.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void export_usage(FILE *out) {
    fprintf(
        out,
        "usage: recdistill export CONFIG.yaml --out FILE [--job NAME] [--run DIR] [--ckpt DIR]\n"
        "                         [--data DIR] [--seed N] [--set PATH=VALUE ...]\n"
        "\n"
        "Write the serving bundle of a trained model (a student, or with --job any job, a\n"
        "teacher included): the dense parameters of its main tower and the embedding rows of\n"
        "the tables it reads, with the bundle version and the hash of the model and table\n"
        "config (checked against the checkpoint's). A model that reads instance tokens records\n"
        "its token store (tokens.store_dir, which must exist): the server reads the tokens\n"
        "from that store, read-only (rd_serve_fetch_tokens of rd/serve.h).\n"
        "\n"
        "  --out FILE   bundle to write (must not exist; missing parent folders are made)\n"
        "  --job NAME   job to export; default: the first student job of the config\n"
        "  --run DIR    the run folder given to `train --out DIR`: the paths derived from\n"
        "               run.out_dir (ps.checkpoint_dir, data.dir, tokens.store_dir) move with\n"
        "               it, as in train\n"
        "  --ckpt DIR   training checkpoint (a step-N directory, or a checkpoint root:\n"
        "               its newest complete one of the job); default: the newest\n"
        "               complete one under <ps.checkpoint_dir>/<job>\n"
        "  --data DIR   prepared dataset (feature widths); default: data.dir\n"
        "  --seed N     run.seed instead of the config's, as given to `train --seed N`\n"
        "               (the checkpoint records the seed; it must match)\n" RD_APP_SET_HELP
        "              (those given to `train`: the checkpoint records the config's hash)\n"
        "\n"
        "exit status: 0 ok, 1 failure (message on stderr), 2 usage error\n");
}

// The tables (MANIFEST) and dense.bin of one checkpoint must be of one step, as --resume and
// `table verify` require: a hand-assembled or partly restored folder would otherwise give a
// bundle whose dense parameters and embedding rows come from different points of training.
static int check_same_step(const char *dir, rd_errbuf *eb) {
    rd_ckpt_manifest *m = rd_xmalloc(sizeof *m); // about 50 KiB
    rd_train_pos pos;
    int rc = rd_ckpt_read_manifest(dir, m, eb);
    if (rc == RD_OK)
        rc = rd_train_ckpt_read_pos(dir, &pos, eb);
    if (rc == RD_OK && pos.step != m->step)
        rc = rd_err_set(eb, RD_ERR_CORRUPT,
                        "%s: tables of step %lld (MANIFEST), dense.bin of step %lld: not one "
                        "checkpoint",
                        dir, (long long)m->step, (long long)pos.step);
    rd_free(m);
    return rc;
}

int rd_cmd_export(int argc, char **argv) {
    rd_app_opt opts[] = {{"--out", RD_APP_STRING, NULL},  {"--job", RD_APP_STRING, NULL},
                         {"--ckpt", RD_APP_STRING, NULL}, {"--data", RD_APP_STRING, NULL},
                         {"--run", RD_APP_STRING, NULL},  {"--seed", RD_APP_NUMBER, NULL},
                         {"--set", RD_APP_REPEAT, NULL}};
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *config = NULL;
    int n_pos = 0;
    int st = rd_app_parse("recdistill export", argc, argv, 1, opts, n_opts, &config, 1, &n_pos);
    if (st == 1) {
        export_usage(stdout);
        return 0;
    }
    const char *sets[RD_CONFIG_MAX_SETS];
    int n_sets = st == 0 ? rd_app_sets("recdistill export", argc, argv, sets) : 0;
    if (n_sets < 0)
        st = 2;
    if (st != 0) {
        export_usage(stderr);
        return 2;
    }
    const char *out = opts[0].value, *job = opts[1].value, *ckpt = opts[2].value,
               *data = opts[3].value, *run = opts[4].value, *seed_arg = opts[5].value;
    if (!config || !out) {
        fprintf(stderr, "recdistill export: missing %s\n", !config ? "CONFIG" : "--out FILE");
        export_usage(stderr);
        return 2;
    }
    // The range of run.seed, as `train --seed` takes it: any uint64 (a run trained with a seed
    // >= 2^63 must be exportable), so "given" is seed_arg, not a negative sentinel.
    uint64_t seed = 0;
    if (seed_arg && rd_app_parse_u64(seed_arg, &seed) != 0) {
        fprintf(stderr,
                "recdistill export: --seed: '%.100s' is not a non-negative integer "
                "(0..18446744073709551615)\n",
                seed_arg);
        return 2;
    }
    if (rd_app_out_not_stdout("recdistill export", "--out", out,
                              "a serving bundle is written to a file") != 0)
        return 2;
    if ((run && !run[0]) || !out[0]) {
        fprintf(stderr, "recdistill export: %s: empty path\n", !out[0] ? "--out" : "--run");
        return 2;
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    int rc = rd_config_load_sets(config, sets, n_sets, cfg, &eb);
    if (rc == RD_OK && seed_arg)
        cfg->run.seed = seed;
    if (rc == RD_OK && run && (rc = rd_config_move_out_dir(cfg, run, &eb)) != RD_OK)
        rd_err_prefix(&eb, "--run: ");
    if (rc == RD_OK && !job) {
        for (int j = 0; j < cfg->cluster.n_jobs && !job; j++)
            if (cfg->cluster.jobs[j].role == RD_JOB_STUDENT)
                job = cfg->cluster.jobs[j].name;
        if (!job)
            rc = rd_err_set(&eb, RD_ERR_NOTFOUND, "%s: no student job (give --job)", config);
    }
    if (rc == RD_OK && !rd_config_find_job(cfg, job))
        rc = rd_err_set(&eb, RD_ERR_NOTFOUND, "%s: no job named '%s'", config, job);
    // --ckpt is a step-N folder, or a checkpoint root (as train --resume takes): its newest
    // complete checkpoint of the job.
    char latest[RD_PATH_MAX * 2], probe[RD_PATH_MAX * 2 + 32];
    if (ckpt)
        snprintf(probe, sizeof probe, "%s/%s", ckpt, RD_TRAIN_CKPT_DENSE);
    if (rc == RD_OK && (!ckpt || access(probe, F_OK) != 0)) {
        rc = rd_train_ckpt_latest(ckpt ? ckpt : cfg->ps.checkpoint_dir, job, latest, sizeof latest,
                                  &eb);
        // The config's own folders were looked in: a run trained with `train --out DIR` has its
        // checkpoints and dataset under DIR instead.
        if (rc != RD_OK && !ckpt && !run) {
            char msg[sizeof eb.msg];
            snprintf(msg, sizeof msg, "%s", eb.msg);
            rd_errbuf_clear(&eb);
            rd_err_set(&eb, rc,
                       "%.3000s (this is ps.checkpoint_dir of %s; for a run trained with `train "
                       "--out DIR` give --run DIR, or both --ckpt DIR/ckpt and --data DIR/data)",
                       msg, config);
        }
        ckpt = latest;
    }
    if (rc == RD_OK)
        rc = check_same_step(ckpt, &eb);
    // Missing parent folders of --out are made, and removed again when the export fails.
    char created[RD_PATH_MAX * 2];
    created[0] = 0;
    if (rc == RD_OK && strlen(out) >= sizeof created)
        rc = rd_err_set(&eb, RD_ERR_ARG, "--out: path too long");
    if (rc == RD_OK)
        rc = rd_lmdbx_mkdir_parents(out, created, sizeof created, &eb);
    if (rc == RD_OK)
        rc = rd_serve_export(cfg, job, ckpt, data, out, &eb);
    // The bundle is synced in its folder; the folders made for it are synced in theirs, or a
    // crash could lose the path to a bundle the command reported.
    if (rc == RD_OK && (rc = rd_lmdbx_fsync_parents(out, created, &eb)) != RD_OK)
        remove(out);
    if (rc == RD_OK) {
        rd_serve *sv = NULL;
        rc = rd_serve_open(out, 1, &sv, &eb); // read back: the bundle must load
        if (rc == RD_OK) {
            rd_serve_info in;
            rd_serve_get_info(sv, &in);
            printf("exported job %s (model %s, step %lld, %llu params, %llu rows, config hash "
                   "%016llx) from %s: %s\n",
                   in.job, in.model, (long long)in.step, (unsigned long long)in.params,
                   (unsigned long long)in.rows, (unsigned long long)in.config_hash, ckpt, out);
            if (in.tok_length)
                printf("instance tokens: %zu per candidate (of up to %zu a request carries), dim "
                       "%zu, %zu side values, %zu summaries computed by the scorer; served from "
                       "the store %s (id %016llx), read-only\n",
                       in.tok_length, in.tok_pool, in.tok_dim, in.tok_side, in.tok_stats,
                       cfg->tokens.store_dir, (unsigned long long)in.tok_store_id);
            if (in.tok_search_items)
                printf("token search by item attribute '%s': the bundle maps %zu items to "
                       "their values (an item not among them matches only itself)\n",
                       in.tok_search_by, in.tok_search_items);
            if (in.logit_shift != 0.0f)
                printf("logit shift %+.6g: the job's own negative sampling, undone in every "
                       "served score\n",
                       (double)in.logit_shift);
            // What a client sending raw numeric values (numeric_raw) gets done to them.
            for (size_t j = 0; j < in.n_numeric - in.n_stats; j++) {
                const char *field = "";
                uint32_t xf = 0;
                double mean = 0, sd = 1;
                rd_serve_numeric(sv, j, &field, &xf, &mean, &sd);
                printf("numeric input %zu: %s", j, field);
                if (xf & RD_XFORM_UNKNOWN)
                    printf(" (transform not recorded: a version-1 dataset; send stored values)");
                else if (!xf)
                    printf(" (as is)");
                if (xf & RD_XFORM_LOG1P)
                    printf(", log1p(max(x, 0))");
                if (xf & RD_XFORM_STANDARDIZE)
                    printf(", then (x - %.9g) / %.9g", mean, sd);
                uint32_t mm = RD_MISSING_ERROR;
                double fill = 0;
                rd_serve_numeric_missing(sv, j, &mm, &fill);
                if (mm == RD_MISSING_ZERO)
                    printf("; missing (NaN): 0, not log1p'ed");
                else if (mm == RD_MISSING_MEAN)
                    printf("; missing (NaN): the mean %.9g, not log1p'ed", fill);
                if (mm != RD_MISSING_ERROR && (xf & RD_XFORM_STANDARDIZE))
                    printf(", then standardized");
                printf("\n");
            }
            rd_serve_close(sv);
        } else {
            remove(out);
        }
    }
    if (rc != RD_OK)
        rd_lmdbx_rmdir_created(out, created);
    rd_free(cfg);
    if (rc != RD_OK) {
        fprintf(stderr, "recdistill export: %s\n", eb.msg[0] ? eb.msg : rd_strerror(rc));
        return 1;
    }
    return 0;
}
