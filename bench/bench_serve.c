// bench_serve.c — serving latency and throughput of rd_serve_score (rd/serve.h) for requests
// of 1, 16 and 256 candidates.
//
// Usage: bench_serve [--bundle FILE --data DIR [--store DIR] | --dir DIR [--tokens L] [--seq K]]
//                    [--threads T] [--iters N] [--warmup N] [--json PATH]
// --dir DIR is where the benchmark builds its own bundle (kept afterwards; a new or empty folder,
// the bundle it leaves being scored again with --bundle DIR/student.rdsv --data DIR/data); with
// --bundle there is nothing to build, so the two are refused together.
// Without --bundle the benchmark builds its own student, the size of the ml100k-student model
// but not its features (configs/ml100k-student.yaml embeds 8 fields, one tower): user, item and
// the derived hour and weekday embedded at d = 8, a 16-event mean history with labels, MLP
// [64, 32], two towers (the pipeline's distilled student) on a synthetic dataset of 20000 events
// (2000 users, 5000 items), with one row per key of the dataset in a one-shard checkpoint, exported
// with rd_serve_export — the same path as `recdistill export`. Parameters are the initial ones:
// latency does not depend on their values.
// A request is one holdout event (its user, time and history) with N candidate items (its own
// item, then items of other events). Only rd_serve_score is timed (one thread, OpenBLAS with one
// thread); requests are built beforehand. Per N: p50_us, p99_us (latency percentiles, nearest
// rank), qps (requests / total scoring time) and min/avg/max us, after `warmup` untimed requests,
// over `requests` timed ones (--iters; for 256 candidates a quarter of it, at least 10), and
// candidates_per_s (qps times N). What a server owner sizes a host by goes in the JSON too:
// bundle_bytes (the file) and open_bytes, the heap rd_serve_open allocated and the scorer holds
// (the rows, the parameters and the buffers of max_candidates = 256), open_peak_bytes, the most
// the library held at once during the open (counted by a wrapping allocator: exact), and
// thread_bytes, what each further serving thread's scorer (an rd_serve_clone: its own buffers
// only) adds.
// --tokens L: the built-in student also reads the user's last L instance tokens (IAT; a DIN
// branch, d = 16, adapter 16) from a token store built beside it with one random token per
// dataset event (all of its users' histories; a one-shard store, as served from one PS rank's
// folder). A request is then its tokens fetched from the store (rd_serve_fetch_tokens, opened
// read-only as a server does) plus its scoring: the latency columns time both, and fetch_p50_us /
// fetch_p99_us the fetch alone. With --bundle, a token bundle needs --store (its store).
// --rows N: N more rows in the built-in student's item table, of keys no request reads: the
// memory figures of a bundle of a production student's size (its millions of rows).
// --seq KIND: the built-in student's 16-event item history is a `mean` (default), `din` or
// `transformer` branch (one block, two heads): the candidates of a request share it, so its
// per-position work runs once a request (rd_batch.seq_shared).
// --threads T: T serving threads score at once, each with its own scorer (the first opened,
// the others its rd_serve_clone's, as a server makes one per thread: they share the bundle's
// rows and parameters) and, with tokens, its own read-only store handle;
// they start timing together (a barrier after the warm-up) and the request rates are all
// threads' timed requests over the wall time from that barrier to the last thread's end (one
// thread: its requests over its time, as before); the latency percentiles pool every thread's
// requests. thread_bytes in the JSON is the heap each further scorer holds (one more is made
// and closed at T = 1), what a server pays per serving thread beyond open_bytes.
#include "../tests/count_alloc.h"
#include "bench_args.h"
#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/clock.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/dense_optim.h"
#include "rd/hash.h"
#include "rd/layers.h"
#include "rd/lmdbx.h"
#include "rd/log.h"
#include "rd/model.h"
#include "rd/optim.h"
#include "rd/rng.h"
#include "rd/serve.h"
#include "rd/table.h"
#include "rd/tokens.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *yaml_fmt =
    "run: {name: bsv, seed: 7, out_dir: %s/run}\n"
    "cluster:\n  ps_ranks: 1\n  jobs:\n    - {name: student, role: student, model: student}\n"
    "data:\n  source: synthetic\n  dir: %s/data\n  history_max: 16\n"
    "  synthetic: {events: 20000, users: 2000, items: 5000}\n"
    "  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 1}\n"
    "ps:\n  tables:\n    - {name: s_user, dim: 8}\n    - {name: s_item, dim: 8}\n"
    "    - {name: s_side, dim: 8}\n"
    "models:\n  - name: student\n    features:\n      - {field: user, table: s_user}\n"
    "      - {field: item, table: s_item}\n      - {field: hour, table: s_side}\n"
    "      - {field: weekday, table: s_side}\n"
    "    seq: {kind: %s, length: 16, table: s_item}\n    mlp: [64, 32]\n"
    "    two_towers: true\n";

// --tokens L: the same student with a token branch, and the token section (its source model is
// never trained here: the store's tokens are random).
static const char *yaml_tokens =
    "    tokens: {scheme: 2, length: %d, kind: din, adapter: 16}\n"
    "  - name: src\n    features:\n      - {field: user, table: s_user}\n    mlp: [8]\n"
    "tokens: {dim: 16, scheme: 2, source_model: src}\n";

static int die(const char *what, const rd_errbuf *eb) {
    fprintf(stderr, "bench_serve: %s: %s\n", what, eb->msg);
    exit(1);
}

// Build a one-shard checkpoint of the student with a row for every key of the dataset, and
// export it. Returns the bundle path in out.
static void build_bundle(const char *dir,
                         int tokens,
                         long long extra_rows,
                         const char *seq,
                         char *bundle,
                         size_t cap,
                         char *dsdir,
                         size_t dcap,
                         char *store_dir,
                         size_t scap) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char text[4096];
    int len = snprintf(text, sizeof text, yaml_fmt, dir, dir, seq);
    if (tokens)
        snprintf(text + len, sizeof text - (size_t)len, yaml_tokens, tokens);
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    if (rd_config_parse_string(text, strlen(text), "bench_serve", cfg, &eb) != RD_OK)
        die("config", &eb);
    snprintf(dsdir, dcap, "%s", cfg->data.dir);
    if (rd_dataset_prepare(&cfg->data, cfg->run.seed, &eb) != RD_OK)
        die("prepare", &eb);
    rd_dataset *ds = NULL;
    if (rd_dataset_open(cfg->data.dir, 0, &ds, &eb) != RD_OK)
        die("dataset", &eb);
    const rd_dataset_info *di = rd_dataset_get_info(ds);
    // Tables with a row for each user, item, hour and weekday key.
    const int T = cfg->ps.n_tables;
    rd_table *tab[RD_MAX_TABLES];
    for (int t = 0; t < T; t++)
        if (rd_table_create(&cfg->ps.tables[t], t, cfg->run.seed, &tab[t], &eb) != RD_OK)
            die("table", &eb);
    uint64_t tid[3] = {rd_hash_str("s_user", 0), rd_hash_str("s_item", 0),
                       rd_hash_str("s_side", 0)};
    for (uint64_t i = 0; i < di->n_events; i++) {
        const rd_record *r = rd_dataset_record(ds, i);
        int hour, wd;
        rd_dataset_time_fields(r->ts, &hour, &wd);
        uint64_t k[4] = {rd_table_key(tid[0], r->user_key), rd_table_key(tid[1], r->item_key),
                         rd_table_key(tid[2], rd_feature_key_u64("hour", (uint64_t)hour)),
                         rd_table_key(tid[2], rd_feature_key_u64("weekday", (uint64_t)wd))};
        int slot[4] = {0, 1, 2, 2};
        for (int j = 0; j < 4; j++)
            if (rd_table_touch(tab[slot[j]], &k[j], 1, r->ts) != RD_OK)
                die("touch", &eb);
    }
    // --rows: item rows of keys no request reads (a production student's millions of rows).
    for (long long i = 0; i < extra_rows; i++) {
        uint64_t k = rd_table_key(tid[1], rd_feature_key_u64("bench_row", (uint64_t)i));
        if (rd_table_touch(tab[1], &k, 1, 0) != RD_OK)
            die("touch", &eb);
    }
    char ck[600];
    snprintf(ck, sizeof ck, "%s/ckpt", dir);
    rd_ckpt_shard_info info;
    if (rd_ckpt_write_shard(ck, 0, 1, 1, cfg->run.seed, tab, T, &info, &eb) != RD_OK)
        die("write shard", &eb);
    rd_ckpt_manifest *m = rd_xcalloc(1, sizeof *m);
    m->version = RD_CKPT_VERSION;
    m->n_shards = 1;
    m->step = 1;
    m->seed = cfg->run.seed;
    m->n_tables = (uint32_t)T;
    for (int t = 0; t < T; t++) {
        const rd_table_config *tc = &cfg->ps.tables[t];
        snprintf(m->tables[t].name, RD_NAME_MAX, "%s", tc->name);
        m->tables[t].index = (uint32_t)t;
        m->tables[t].dim = (uint32_t)tc->dim;
        m->tables[t].optim = (uint32_t)tc->optim.kind;
        m->tables[t].slots = (uint32_t)rd_optim_slots(tc->optim.kind);
        m->tables[t].rows = info.rows[t];
        m->tables[t].pending = info.pending[t];
        m->shard_rows[0] += info.rows[t];
    }
    m->shard_crc[0] = info.crc;
    if (rd_ckpt_write_manifest(ck, m, &eb) != RD_OK)
        die("manifest", &eb);
    // The token store: one random token per event, appended in one batch (time order).
    if (tokens) {
        snprintf(store_dir, scap, "%s", cfg->tokens.store_dir);
        rd_token_store_opts so;
        if (rd_token_store_opts_from_config(&cfg->tokens, 1, &so, &eb) != RD_OK)
            die("token store options", &eb);
        so.no_sync = 1;
        rd_token_store *st = NULL;
        if (rd_token_store_create(cfg->tokens.store_dir, &so, &st, &eb) != RD_OK)
            die("token store", &eb);
        const size_t n = di->n_events, d = (size_t)cfg->tokens.dim;
        uint64_t *users = rd_xmalloc(n * sizeof *users), *ids = rd_xmalloc(n * sizeof *ids),
                 *items = rd_xmalloc(n * sizeof *items);
        int64_t *ts = rd_xmalloc(n * sizeof *ts);
        float *tok = rd_xmalloc(n * d * sizeof *tok), *lab = rd_xmalloc(n * sizeof *lab);
        rd_rng rng;
        rd_rng_seed(&rng, 5);
        for (size_t i = 0; i < n; i++) {
            const rd_record *r = rd_dataset_record(ds, i);
            users[i] = r->user_key;
            ts[i] = r->ts;
            ids[i] = r->id;
            items[i] = r->item_key;
            lab[i] = r->label;
            for (size_t k = 0; k < d; k++)
                tok[i * d + k] = (float)(rd_rng_u64(&rng) % 2001) / 1000.0f - 1.0f;
        }
        rd_token_batch tb = {.n = n,
                             .users = users,
                             .ts = ts,
                             .ids = ids,
                             .tokens = tok,
                             .labels = lab,
                             .items = items};
        if (rd_token_store_append(st, &tb, &eb) != RD_OK)
            die("token append", &eb);
        rd_token_store_destroy(st);
        rd_free(users);
        rd_free(ids);
        rd_free(items);
        rd_free(ts);
        rd_free(tok);
        rd_free(lab);
    }
    // Dense parameters: the model's initial ones.
    rd_dense_optim opt;
    if (rd_dense_optim_init(&opt, &cfg->train, &eb) != RD_OK)
        die("optimizer", &eb);
    rd_model_opts mo = {.tables = cfg->ps.tables,
                        .n_tables = cfg->ps.n_tables,
                        .max_batch = 1,
                        .n_numeric = rd_dataset_n_inputs(di),
                        .token_dim = (size_t)cfg->tokens.dim,
                        .opt_slots = rd_dense_optim_slots(opt.kind),
                        .seed = 11};
    rd_model *model = NULL;
    if (rd_model_create(&cfg->models[0], &mo, &model, &eb) != RD_OK)
        die("model", &eb);
    rd_train_pos pos;
    memset(&pos, 0, sizeof pos);
    pos.step = 1;
    rd_train_ckpt_ident(cfg, NULL, &cfg->models[0], di, 1, &pos); // trained on this dataset
    snprintf(pos.job, sizeof pos.job, "student");
    snprintf(pos.model, sizeof pos.model, "student");
    if (rd_train_ckpt_write_dense(ck, &pos, model, &opt, &eb) != RD_OK)
        die("dense.bin", &eb);
    snprintf(bundle, cap, "%s/student.rdsv", dir);
    if (rd_serve_export(cfg, "student", ck, NULL, bundle, &eb) != RD_OK)
        die("export", &eb);
    rd_model_destroy(model);
    rd_free(m);
    for (int t = 0; t < T; t++)
        rd_table_destroy(tab[t]);
    rd_dataset_close(ds);
    rd_free(cfg);
}

// Heap bytes in use (glibc: the arenas' allocated chunks and the mmap'ed ones), -1 elsewhere. Not
// the resident set: the bundle built in this process was freed before the open, whose buffers
// then reuse that memory (its VmRSS grew by 668 KiB, against 2500 opened in a fresh process).
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
static long long heap_bytes(void) {
    struct mallinfo2 mi = mallinfo2();
    return (long long)(mi.uordblks + mi.hblkhd);
}
#else
static long long heap_bytes(void) {
    return -1;
}
#endif

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    size_t n;
    int requests; // timed requests: --iters, a quarter of it (at least 10) for 256 candidates
    double p50_us, p99_us, qps, min_us, avg_us, max_us, fetch_p50_us, fetch_p99_us;
} result;

// The requests every thread scores: built beforehand, only read while the threads run.
typedef struct reqset {
    size_t R, NC, K, L, NN;
    const uint64_t *keys;   // (R, NC, K)
    const uint64_t *hist;   // (R, L)
    const uint8_t *hl;      // (R, L)
    const float *num;       // (R, NC, NN)
    const uint64_t *rq_rec; // (R) the holdout record of each request (its user, time and id)
    const uint64_t *items;  // (R, NC) each candidate's item
    const rd_dataset *ds;
} reqset;

// One serving thread: its scorer, store handle and samples of one request size.
typedef struct worker {
    rd_serve *sv;
    rd_token_store *st; // NULL without tokens
    const reqset *rs;
    size_t N;
    int it_k, warmup;
    pthread_barrier_t *bar; // with several threads: passed after the warm-up
    double *lat, *flat;     // (it_k) latency, and the fetch's part of it
    double total;           // sum of lat
    size_t fetched, fetches;
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    const reqset *rs = w->rs;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    float out[256];
    w->total = 0;
    w->fetched = w->fetches = 0;
    for (int i = -w->warmup; i < w->it_k; i++) {
        if (i == 0 && w->bar)
            pthread_barrier_wait(w->bar);
        size_t r = (size_t)(i + w->warmup) % rs->R;
        rd_serve_request rq = {.n = w->N,
                               .keys = rs->keys + r * rs->NC * rs->K,
                               .hist_items = rs->L ? rs->hist + r * rs->L : NULL,
                               .hist_labels = rs->L ? rs->hl + r * rs->L : NULL,
                               .numeric = rs->NN ? rs->num + r * rs->NC * rs->NN : NULL,
                               .items = rs->items + r * rs->NC};
        double t0 = rd_mono_s(), tf = 0;
        if (w->st) { // the request's tokens, as a server fetches them
            const rd_record *rr = rd_dataset_record(rs->ds, rs->rq_rec[r]);
            if (rd_serve_fetch_tokens(w->sv, w->st, rr->user_key, rr->ts, rr->id, &rq, &eb) !=
                RD_OK)
                die("fetch tokens", &eb);
            tf = rd_mono_s() - t0;
            if (i >= 0) {
                w->fetched += rq.tok_n;
                w->fetches++;
            }
        }
        if (rd_serve_score(w->sv, &rq, out, NULL, &eb) != RD_OK)
            die("score", &eb);
        double dt = rd_mono_s() - t0;
        if (i >= 0) {
            w->lat[i] = dt;
            w->flat[i] = tf;
            w->total += dt;
        }
    }
    return NULL;
}

static void usage(FILE *out) {
    fprintf(out, "usage: bench_serve [--bundle FILE --data DIR [--store DIR] | [--dir DIR] "
                 "[--tokens L] [--seq mean|din|transformer] [--rows N]] [--threads T] [--iters N] "
                 "[--warmup N] [--json PATH]\n");
}

int main(int argc, char **argv) {
    const char *bundle_arg = NULL, *data_arg = NULL, *json = NULL, *dir_arg = NULL,
               *store_arg = NULL, *seq = NULL;
    int iters = 2000, warmup = 100, tokens = 0, threads = 1;
    long long extra_rows = 0;
    long long val = 0;
    bench_seen seen = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        static const char *const known[] = {"--bundle", "--data",    "--json",  "--dir",
                                            "--iters",  "--warmup",  "--store", "--tokens",
                                            "--seq",    "--threads", "--rows"};
        int is_known = 0;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            is_known |= strcmp(a, known[k]) == 0;
        if (!is_known) {
            fprintf(stderr, "bench_serve: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "bench_serve: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        if (bench_once(&seen, stderr, "bench_serve", a) != 0) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--bundle") == 0)
            bundle_arg = v;
        else if (strcmp(a, "--data") == 0)
            data_arg = v;
        else if (strcmp(a, "--json") == 0)
            json = v;
        else if (strcmp(a, "--dir") == 0)
            dir_arg = v;
        else if (strcmp(a, "--store") == 0)
            store_arg = v;
        else if (strcmp(a, "--seq") == 0) {
            if (strcmp(v, "mean") != 0 && strcmp(v, "din") != 0 && strcmp(v, "transformer") != 0) {
                fprintf(stderr, "bench_serve: --seq: expected mean, din or transformer, got '%s'\n",
                        v);
                usage(stderr);
                return 2;
            }
            seq = v;
        } else if (strcmp(a, "--tokens") == 0) {
            if (bench_int(stderr, "bench_serve", a, v, 1, 4096, &val) != 0) {
                usage(stderr);
                return 2;
            }
            tokens = (int)val;
        } else if (strcmp(a, "--rows") == 0) {
            if (bench_int(stderr, "bench_serve", a, v, 0, 100000000, &extra_rows) != 0) {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (bench_int(stderr, "bench_serve", a, v, 1, 64, &val) != 0) {
                usage(stderr);
                return 2;
            }
            threads = (int)val;
        } else if (strcmp(a, "--iters") == 0 || strcmp(a, "--warmup") == 0) {
            int it = strcmp(a, "--iters") == 0;
            if (bench_int(stderr, "bench_serve", a, v, it ? 10 : 0, 100000000, &val) != 0) {
                usage(stderr);
                return 2;
            }
            *(it ? &iters : &warmup) = (int)val;
        } else {
            fprintf(stderr, "bench_serve: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (bundle_arg && !data_arg) {
        fprintf(stderr, "bench_serve: --bundle needs --data\n");
        return 2;
    }
    // --data alone was ignored: the run scored its own synthetic bundle, and its JSON read as
    // figures of the data asked for.
    if (data_arg && !bundle_arg) {
        fprintf(stderr, "bench_serve: --data needs --bundle (without both it builds its own)\n");
        return 2;
    }
    // --dir is where the benchmark's own bundle is built: with --bundle it was ignored, exit 0,
    // and the folder a user asked for stayed empty.
    if (bundle_arg && dir_arg) {
        fprintf(stderr,
                "bench_serve: --dir '%s' and --bundle '%s' exclude each other (--dir is "
                "where the benchmark builds its own bundle)\n",
                dir_arg, bundle_arg);
        usage(stderr);
        return 2;
    }
    // --tokens builds the benchmark's own token student, --store is the store of a given
    // bundle: each is meaningless with the other mode, and was silently ignored.
    if (seq && bundle_arg) {
        fprintf(stderr, "bench_serve: --seq builds the benchmark's own student: not with "
                        "--bundle\n");
        usage(stderr);
        return 2;
    }
    if (extra_rows && bundle_arg) {
        fprintf(stderr, "bench_serve: --rows adds rows to the benchmark's own student: not with "
                        "--bundle\n");
        usage(stderr);
        return 2;
    }
    if (tokens && bundle_arg) {
        fprintf(stderr, "bench_serve: --tokens builds the benchmark's own token student: not "
                        "with --bundle (give its store with --store)\n");
        usage(stderr);
        return 2;
    }
    if (store_arg && !bundle_arg) {
        fprintf(stderr, "bench_serve: --store is the token store of --bundle FILE\n");
        usage(stderr);
        return 2;
    }
    // --dir is where this run builds its bundle, checkpoint and data: a folder holding anything
    // (an earlier run's, whose checkpoint shard is never written over) failed after the data was
    // prepared, "write shard: DIR/ckpt/shard-00000 already exists", exit 1; so a second run into
    // the folder of a before/after comparison never ran.
    if (dir_arg) {
        if (bench_dir_used(dir_arg)) {
            fprintf(stderr,
                    "bench_serve: --dir '%s' is not empty (an earlier run's bundle?): give a new "
                    "or empty folder, or score what is there with --bundle %s/student.rdsv "
                    "--data %s/data (and --store %s/run/tokens if it was built with --tokens)\n",
                    dir_arg, dir_arg, dir_arg, dir_arg);
            usage(stderr);
            return 2;
        }
    }
    if (json && bench_json_ok(stderr, "bench_serve", json) != 0)
        return 2;
    if (bench_one_process(stderr, "bench_serve") != 0)
        return 2;
    rd_log_init(RD_LOG_LEVEL_WARN, 0, "bench");
    rd_blas_set_threads(1);
    char dir[512], bundle[700], dsdir[RD_PATH_MAX], store_dir[RD_PATH_MAX] = "";
    // Without --dir the bundle is built in a new folder of its own (in $TMPDIR, else /tmp),
    // removed however the run ends: a failed run (exit 1 from any step, a signal) left its
    // /tmp/rd_bench_serve_<pid>, with a dataset, a checkpoint and the bundle, behind.
    if (dir_arg)
        snprintf(dir, sizeof dir, "%s", dir_arg);
    else if (!bundle_arg && bench_tmp_make("bench_serve", "bench_serve", dir, sizeof dir) != 0)
        return 1;
    if (bundle_arg) {
        snprintf(bundle, sizeof bundle, "%s", bundle_arg);
        snprintf(dsdir, sizeof dsdir, "%s", data_arg);
        if (store_arg)
            snprintf(store_dir, sizeof store_dir, "%s", store_arg);
    } else {
        build_bundle(dir, tokens, extra_rows, seq ? seq : "mean", bundle, sizeof bundle, dsdir,
                     sizeof dsdir, store_dir, sizeof store_dir);
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_serve *sv = NULL;
    const long long heap0 = heap_bytes();
    // open_peak_bytes: the most bytes the library held at once during rd_serve_open, exact and
    // the same run to run (count_alloc.h): what a host needs free to open the bundle beside what
    // it already holds.
    count_alloc_begin();
    int orc = rd_serve_open(bundle, 256, &sv, &eb);
    count_alloc_end(); // blocks of either are libc's: freed by free() later
    if (orc != RD_OK)
        die("open", &eb);
    const long long heap1 = heap_bytes(), open_bytes = heap0 >= 0 ? heap1 - heap0 : -1;
    const long long open_peak_bytes = g_count_peak;
    struct stat bst; // the file rd_serve_open has just read
    if (stat(bundle, &bst) != 0) {
        fprintf(stderr, "bench_serve: %s: %s\n", bundle, strerror(errno));
        return 1;
    }
    rd_dataset *ds = NULL;
    if (rd_dataset_open(dsdir, 0, &ds, &eb) != RD_OK)
        die("dataset", &eb);
    rd_serve_info in;
    rd_serve_get_info(sv, &in);
    rd_token_store *st = NULL;
    if (in.tok_length && !store_dir[0]) {
        fprintf(stderr, "bench_serve: %s reads instance tokens: give its token store (--store)\n",
                bundle);
        return 2;
    }
    if (!in.tok_length && store_arg) {
        fprintf(stderr, "bench_serve: --store: %s reads no instance tokens\n", bundle);
        return 2;
    }
    if (in.tok_length) {
        rd_token_open_opts oo = {.mode = RD_TOKEN_READ_ONLY};
        if (rd_token_store_open(store_dir, &oo, &st, &eb) != RD_OK)
            die("token store", &eb);
    }
    rd_range h = rd_dataset_holdout(ds);
    // The requests are holdout events: a folder without (holdout_fraction 0) divided by zero.
    if (h.end == h.begin) {
        fprintf(stderr,
                "bench_serve: --data %s holds no holdout records to draw the requests from "
                "(data.split.holdout_fraction 0): give a dataset with a holdout\n",
                dsdir);
        return 2;
    }
    const size_t K = in.keys_per_candidate, L = in.hist_len, NN = in.n_numeric;
    size_t item_off = (size_t)-1;
    for (int f = 0; f < in.n_features; f++) {
        const char *field;
        size_t off, w;
        rd_serve_feature(sv, f, &field, &off, &w);
        if (strcmp(field, "item") == 0)
            item_off = off;
    }
    // Requests built beforehand: R distinct requests of 256 candidates, reused round robin.
    const size_t R = 64, NC = 256;
    uint64_t *keys = rd_xmalloc(R * NC * K * sizeof *keys);
    uint64_t *hist = rd_xmalloc(R * (L ? L : 1) * sizeof *hist);
    uint8_t *hl = rd_xmalloc(R * (L ? L : 1));
    float *num = rd_xmalloc(R * NC * (NN ? NN : 1) * sizeof *num);
    rd_rng rng;
    rd_rng_seed(&rng, 99);
    uint64_t span = h.end - h.begin;
    uint64_t *rq_rec = rd_xmalloc(R * sizeof *rq_rec), *items = rd_xmalloc(R * NC * sizeof *items);
    for (size_t r = 0; r < R; r++) {
        uint64_t rec = h.begin + rd_rng_u64(&rng) % span;
        rq_rec[r] = rec;
        items[r * NC] = rd_dataset_record(ds, rec)->item_key;
        uint64_t *kr = keys + r * NC * K;
        if (rd_serve_request_from_dataset(sv, ds, rec, kr, hist + r * L, hl + r * L,
                                          num + r * NC * NN, &eb) != RD_OK)
            die("request", &eb);
        for (size_t c = 1; c < NC; c++) {
            memcpy(kr + c * K, kr, K * sizeof *kr);
            if (NN)
                memcpy(num + (r * NC + c) * NN, num + r * NC * NN, NN * sizeof *num);
            if (item_off != (size_t)-1) {
                uint64_t other = rd_rng_u64(&rng) % rd_dataset_get_info(ds)->n_events;
                kr[c * K + item_off] = rd_dataset_record(ds, other)->item_key;
            }
            items[r * NC + c] = item_off != (size_t)-1 ? kr[c * K + item_off] : items[r * NC];
        }
    }
    // The threads' scorers (thread 0 scores with the one opened above) and store handles, and
    // the heap each further scorer holds: one more is made and closed when there is one thread.
    rd_serve **svs = rd_xcalloc((size_t)threads, sizeof *svs);
    rd_token_store **sts = rd_xcalloc((size_t)threads, sizeof *sts);
    svs[0] = sv;
    sts[0] = st;
    const long long heap2 = heap_bytes();
    rd_serve *extra = NULL;
    for (int t = 1; t < threads; t++)
        if (rd_serve_clone(sv, 256, &svs[t], &eb) != RD_OK)
            die("a thread's scorer", &eb);
    if (threads == 1 && rd_serve_clone(sv, 256, &extra, &eb) != RD_OK)
        die("a second scorer", &eb);
    const long long heap3 = heap_bytes(),
                    thread_bytes =
                        heap2 >= 0 ? (heap3 - heap2) / (threads > 1 ? threads - 1 : 1) : -1;
    rd_serve_close(extra);
    for (int t = 1; t < threads && st; t++) {
        rd_token_open_opts oo = {.mode = RD_TOKEN_READ_ONLY};
        if (rd_token_store_open(store_dir, &oo, &sts[t], &eb) != RD_OK)
            die("token store", &eb);
    }
    const reqset rs = {.NC = NC,
                       .R = R,
                       .K = K,
                       .L = L,
                       .NN = NN,
                       .keys = keys,
                       .hist = hist,
                       .hl = hl,
                       .num = num,
                       .rq_rec = rq_rec,
                       .items = items,
                       .ds = ds};
    const size_t sizes[3] = {1, 16, 256};
    result res[3];
    const size_t per = (size_t)iters;
    double *lat = rd_xmalloc((size_t)threads * per * sizeof *lat),
           *flat = rd_xmalloc((size_t)threads * per * sizeof *flat);
    worker *wk = rd_xcalloc((size_t)threads, sizeof *wk);
    pthread_t *th = rd_xcalloc((size_t)threads, sizeof *th);
    size_t fetched = 0, fetches = 0;
    for (int k = 0; k < 3; k++) {
        size_t N = sizes[k];
        int it_k = N == 256 ? (iters / 4 > 10 ? iters / 4 : 10) : iters;
        double total = 0, wall = 0;
        pthread_barrier_t bar;
        if (threads > 1 && pthread_barrier_init(&bar, NULL, (unsigned)threads + 1) != 0) {
            fprintf(stderr, "bench_serve: pthread_barrier_init failed\n");
            return 1;
        }
        for (int t = 0; t < threads; t++)
            wk[t] = (worker){.sv = svs[t],
                             .st = sts[t],
                             .rs = &rs,
                             .N = N,
                             .it_k = it_k,
                             .warmup = warmup,
                             .bar = threads > 1 ? &bar : NULL,
                             .lat = lat + (size_t)t * per,
                             .flat = flat + (size_t)t * per};
        if (threads == 1) {
            run_worker(&wk[0]);
            wall = wk[0].total;
        } else {
            for (int t = 0; t < threads; t++)
                if (pthread_create(&th[t], NULL, run_worker, &wk[t]) != 0) {
                    fprintf(stderr, "bench_serve: cannot start thread %d\n", t);
                    return 1;
                }
            pthread_barrier_wait(&bar); // every thread has warmed up: the timed part starts
            const double t0 = rd_mono_s();
            for (int t = 0; t < threads; t++)
                pthread_join(th[t], NULL);
            wall = rd_mono_s() - t0;
            pthread_barrier_destroy(&bar);
        }
        // Pool the threads' samples (each thread's slice is it_k long at the front of its per).
        size_t n_lat = 0;
        for (int t = 0; t < threads; t++) {
            memmove(lat + n_lat, wk[t].lat, (size_t)it_k * sizeof *lat);
            memmove(flat + n_lat, wk[t].flat, (size_t)it_k * sizeof *flat);
            n_lat += (size_t)it_k;
            total += wk[t].total;
            fetched += wk[t].fetched;
            fetches += wk[t].fetches;
        }
        qsort(lat, n_lat, sizeof *lat, cmp_d);
        qsort(flat, n_lat, sizeof *flat, cmp_d);
        result *x = &res[k];
        x->n = N;
        x->requests = (int)n_lat;
        // Nearest rank: the p-th percentile is the smallest sample with at least p % of the
        // samples at or below it, sample ceil(p n) of n. floor(p (n - 1)) gave, of the 10 requests
        // of a short run, the 9th slowest as the p99: below 10 % of the samples, not 1 %.
        const size_t i50 = (size_t)ceil(0.50 * (double)n_lat) - 1,
                     i99 = (size_t)ceil(0.99 * (double)n_lat) - 1;
        x->fetch_p50_us = 1e6 * flat[i50];
        x->fetch_p99_us = 1e6 * flat[i99];
        x->p50_us = 1e6 * lat[i50];
        x->p99_us = 1e6 * lat[i99];
        x->qps = (double)n_lat / wall;
        x->min_us = 1e6 * lat[0];
        x->max_us = 1e6 * lat[n_lat - 1];
        x->avg_us = 1e6 * total / (double)n_lat;
    }
    printf("bench_serve: bundle %s (%lld bytes; model %s, %llu params, %llu rows, K %zu keys, "
           "history %zu), %d timed requests (256: %d) per thread, %d warm-up\n",
           bundle, (long long)bst.st_size, in.model, (unsigned long long)in.params,
           (unsigned long long)in.rows, K, L, iters, iters / 4 > 10 ? iters / 4 : 10, warmup);
    printf("  open at 256 candidates: %lld bytes held (at most %lld during the open); each "
           "further scorer (a serving thread): %lld bytes; %d thread%s\n",
           open_bytes, open_peak_bytes, thread_bytes, threads,
           threads > 1 ? "s scoring at once" : "");
    if (st)
        printf("  tokens: %zu per candidate (dim %zu) from %s, %.1f a request on average; the "
               "latencies include the fetch\n",
               in.tok_length, in.tok_dim, store_dir, fetches ? (double)fetched / fetches : 0.0);
    printf("  %10s %10s %10s %12s %12s %10s %10s %10s", "candidates", "p50_us", "p99_us", "qps",
           "cands/s", "min_us", "avg_us", "max_us");
    printf(st ? " %12s %12s\n" : "\n", "fetch_p50_us", "fetch_p99_us");
    for (int k = 0; k < 3; k++) {
        printf("  %10zu %10.1f %10.1f %12.0f %12.0f %10.1f %10.1f %10.1f", res[k].n, res[k].p50_us,
               res[k].p99_us, res[k].qps, res[k].qps * (double)res[k].n, res[k].min_us,
               res[k].avg_us, res[k].max_us);
        if (st)
            printf(" %12.1f %12.1f", res[k].fetch_p50_us, res[k].fetch_p99_us);
        printf("\n");
    }
    if (json) {
        bench_json bj;
        FILE *f = bench_json_open(&bj, "bench_serve", json);
        if (!f)
            return 1;
        fprintf(f,
                "{\"bench\": \"serve\", \"model\": \"%s\", \"params\": %llu, \"rows\": %llu, "
                "\"bundle_bytes\": %lld, \"max_candidates\": 256, \"open_bytes\": %lld, "
                "\"open_peak_bytes\": %lld, \"thread_bytes\": %lld, \"threads\": %d, "
                "\"iters\": %d, \"warmup\": %d, \"tokens\": %zu, \"candidates\": {",
                in.model, (unsigned long long)in.params, (unsigned long long)in.rows,
                (long long)bst.st_size, open_bytes, open_peak_bytes, thread_bytes, threads, iters,
                warmup, st ? in.tok_length : 0);
        for (int k = 0; k < 3; k++) {
            fprintf(f,
                    "%s\"%zu\": {\"requests\": %d, \"p50_us\": %.2f, \"p99_us\": %.2f, "
                    "\"qps\": %.1f, \"candidates_per_s\": %.1f, \"min_us\": %.2f, "
                    "\"avg_us\": %.2f, \"max_us\": %.2f",
                    k ? ", " : "", res[k].n, res[k].requests, res[k].p50_us, res[k].p99_us,
                    res[k].qps, res[k].qps * (double)res[k].n, res[k].min_us, res[k].avg_us,
                    res[k].max_us);
            if (st)
                fprintf(f, ", \"fetch_p50_us\": %.2f, \"fetch_p99_us\": %.2f", res[k].fetch_p50_us,
                        res[k].fetch_p99_us);
            fprintf(f, "}");
        }
        fprintf(f, "}}\n");
        if (bench_json_commit(&bj, "bench_serve") != 0)
            return 1;
    }
    rd_free(lat);
    rd_free(flat);
    rd_free(wk);
    rd_free(th);
    rd_free(rq_rec);
    rd_free(items);
    for (int t = 0; t < threads; t++) {
        rd_token_store_destroy(sts[t]);
        if (t > 0)
            rd_serve_close(svs[t]);
    }
    rd_free(sts);
    rd_free(svs);
    rd_free(keys);
    rd_free(hist);
    rd_free(hl);
    rd_free(num);
    rd_dataset_close(ds);
    rd_serve_close(sv);
    if (!bundle_arg && !dir_arg && rd_train_ckpt_rmtree(dir, &eb) != RD_OK)
        fprintf(stderr, "bench_serve: %s\n", eb.msg);
    return 0;
}
