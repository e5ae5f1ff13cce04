// serve_export.c — the serving path against the training-time student (3 ranks: 2 PS + 1
// worker).
//
// A tiny two-tower student (user, item, hour, weekday on two tables, a mean history branch with
// labels) trains on synthetic data; `train` writes its final checkpoint. The worker then:
//   1. scores every holdout record with the trainer's own forward (rd_trainer_score: params and
//      PS rows as trained) — the reference;
//   2. exports a bundle from the checkpoint (rd_serve_export) and scores the same records, one
//      request each, through rd_serve: |logit difference| must be <= 1e-6 (and must not be 0
//      for every record only because both are constant: the logits must vary);
//   3. scores requests of 16 and 256 candidates (the record's own item first, then other items):
//      candidate 0 equals the one-candidate score to 1e-6, i.e. no dependence on the batch;
//   4. bad input: missing bundle, a flipped byte (CRC), another version, a truncated file,
//      CRC-sealed files whose widths, counts, sizes or strings lie (refused, never an abort) or
//      whose parameters are NaN (refused at open) or so large the forward overflows (the request
//      is RD_ERR_RANGE, not a score of 1 with RD_OK), a
//      config whose model differs from the checkpoint's (config hash), PS shards whose tables
//      have another dim than the model's, an existing output file,
//      a request of 0 or too many candidates — each a clear error code, nothing written.
#include "ps_test_util.h"

#include <math.h>
#include <stddef.h>

#include "rd/dataset.h"
#include "rd/hash.h"
#include "rd/serve.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"

static int g_errs;

static const char *yaml_fmt =
    "run: {name: sv, seed: 3, out_dir: %s/run}\n"
    "cluster:\n  ps_ranks: 2\n  jobs:\n    - {name: student, role: student, model: small}\n"
    "data:\n  source: synthetic\n  dir: %s/data\n  history_max: 16\n"
    "  synthetic: {events: 5000, users: 50, items: 250}\n"
    "  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}\n"
    "ps:\n  tables:\n    - {name: s_user, dim: 4}\n"
    "    - {name: s_item, dim: 8, optimizer: {type: adam, lr: 0.01}}\n"
    "models:\n  - name: small\n    features:\n      - {field: user, table: s_user}\n"
    "      - {field: item, table: s_item}\n      - {field: hour, table: s_user}\n"
    "      - {field: weekday, table: s_user}\n"
    "    seq: {kind: mean, length: 8, stats: [2, 8]}\n    mlp: [%d]\n    two_towers: true\n"
    "train: {batch_size: 64, epochs: 2}\n"
    "output: {progress_every_s: 0}\n";

// The same student on MovieLens-100K (when $RD_SHARED_DATA has it): categorical side fields
// and the multi-valued genres (mean pooling), so candidates carry multi-slot keys.
static const char *yaml_ml =
    "run: {name: svml, seed: 3, out_dir: %s/runml}\n"
    "cluster:\n  ps_ranks: 2\n  jobs:\n    - {name: student, role: student, model: small}\n"
    "data:\n  source: movielens100k\n  input: %s\n  dir: %s/dataml\n  history_max: 16\n"
    "  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 1}\n"
    "ps:\n  tables:\n    - {name: s_user, dim: 4}\n"
    "    - {name: s_item, dim: 8, optimizer: {type: adam, lr: 0.01}}\n"
    "    - {name: s_side, dim: 4}\n"
    "models:\n  - name: small\n    features:\n      - {field: user, table: s_user}\n"
    "      - {field: item, table: s_item}\n      - {field: age, table: s_side}\n"
    "      - {field: occupation, table: s_side}\n"
    "      - {field: genres, table: s_side, pooling: mean}\n"
    "      - {field: weekday, table: s_side}\n"
    "    seq: {kind: mean, length: 8, stats: [1, 4, 16], stats_feedback: rating,\n"
    "          stats_residual: true}\n    mlp: [%d]\n    two_towers: true\n"
    "train: {batch_size: 512, epochs: 1}\n"
    "output: {progress_every_s: 0}\n";

// A CSV log with three numeric inputs: `price` (log1p, then standardized; empty in some rows,
// filled with the batch period's mean), `dwell` (standardized; empty in other rows, filled with
// 0) and `qty` (as is, never missing: `missing: error`), all functions of the event's time, so
// the checks can rebuild every record's raw values.
static const char *yaml_csv =
    "run: {name: svcsv, seed: 3, out_dir: %s/runcsv}\n"
    "cluster:\n  ps_ranks: 2\n  jobs:\n    - {name: student, role: student, model: small,\n"
    "       negatives: {rate: 0.5}}\n"
    "data:\n  source: csv\n  input: %s\n  dir: %s/datacsv\n  history_max: 16\n"
    "  schema:\n    path: log.csv\n    user_column: u\n    item_column: i\n"
    "    time_column: t\n    label: \"y >= 1\"\n    fields:\n"
    "      - {name: price, kind: numeric, log1p: true, standardize: true, missing: mean}\n"
    "      - {name: dwell, kind: numeric, standardize: true, missing: zero}\n"
    "      - {name: qty, kind: numeric}\n"
    "  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}\n"
    "ps:\n  tables:\n    - {name: s_user, dim: 4}\n"
    "    - {name: s_item, dim: 8, optimizer: {type: adam, lr: 0.01}}\n"
    "models:\n  - name: small\n    features:\n      - {field: user, table: s_user}\n"
    "      - {field: item, table: s_item}\n      - {field: hour, table: s_user}\n"
    "      - {field: weekday, table: s_user}\n"
    "    seq: {kind: mean, length: 8, stats: [2, 8]}\n    mlp: [%d]\n    two_towers: true\n"
    "train: {batch_size: 64, epochs: 2}\n"
    "output: {progress_every_s: 0}\n";

static const char *g_ml_input; // movielens session: the MovieLens-100K folder
static int g_csv;              // csv session

enum { CSV_ROWS = 4000, CSV_T0 = 1000000 };
// The raw values of the csv session's event at time t, as the CSV text reads (the nearest double
// of its decimal). Prices have cents, which most often a float does not hold exactly: prepare
// parsed "123.45" as a double and took log1p of that, one float step away in some rows from
// the log1p of the float 123.45f that a raw request carries.
static double csv_price(int64_t t) {
    return (double)((t / 60 * 37) % 1000 * 100 + (t / 60) % 97) / 100.0;
}
static double csv_dwell(int64_t t) {
    return (double)((t / 60) % 13);
}
static double csv_qty(int64_t t) {
    return (double)((t / 60) % 5 + 1);
}
// Rows whose price (dwell) is empty in the CSV: NaN as a raw request sends a missing value.
static int csv_price_missing(int64_t t) {
    return (t - CSV_T0) / 60 % 9 == 4;
}
static int csv_dwell_missing(int64_t t) {
    return (t - CSV_T0) / 60 % 7 == 3;
}

static void write_csv(const char *dir) {
    char p[700];
    snprintf(p, sizeof p, "%s/log.csv", dir);
    FILE *f = fopen(p, "w");
    RD_ASSERT(f);
    fprintf(f, "t,u,i,y,price,dwell,qty\n");
    uint64_t r = 12345;
    for (int k = 0; k < CSV_ROWS; k++) {
        int64_t t = CSV_T0 + 60 * (int64_t)k;
        r = rd_mix64(r + (uint64_t)k);
        int u = (int)(r % 40), it = (int)((r >> 20) % 150);
        // The label leans on the price, so the numeric inputs carry weight in the model.
        double px = csv_price(t);
        int y = ((r >> 40) % 1000) < (uint64_t)(200 + 0.6 * px);
        char ps[32] = "", ds[32] = "";
        if (!csv_price_missing(t))
            snprintf(ps, sizeof ps, "%.2f", px);
        if (!csv_dwell_missing(t))
            snprintf(ds, sizeof ds, "%.0f", csv_dwell(t));
        fprintf(f, "%lld,u%d,%d,%d,%s,%s,%.0f\n", (long long)t, u, it, y, ps, ds, csv_qty(t));
    }
    RD_ASSERT(fclose(f) == 0);
}

static const char *session_name(void) {
    return g_ml_input ? "movielens-100k" : g_csv ? "csv" : "synthetic";
}

static void make_config(rd_config *cfg, const char *dir, int mlp) {
    char text[4096];
    if (g_ml_input)
        snprintf(text, sizeof text, yaml_ml, dir, g_ml_input, dir, mlp);
    else if (g_csv)
        snprintf(text, sizeof text, yaml_csv, dir, dir, dir, mlp);
    else
        snprintf(text, sizeof text, yaml_fmt, dir, dir, mlp);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_config_parse_string(text, strlen(text), "serve_export", cfg, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "config: %s", eb.msg);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void copy_patch(const char *from, const char *to, long off, int xor_byte, long truncate) {
    FILE *f = fopen(from, "rb");
    RD_ASSERT(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = rd_xmalloc((size_t)n);
    RD_ASSERT(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    if (off >= 0)
        b[off] ^= (unsigned char)xor_byte;
    if (truncate > 0)
        n = truncate;
    f = fopen(to, "wb");
    RD_ASSERT(f && fwrite(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    rd_free(b);
}

// Copy a bundle with `n` bytes at `off` replaced by `val` and its trailing CRC-32C recomputed:
// a well-formed file whose content lies (what the CRC cannot catch).
static void copy_reseal(const char *from, const char *to, size_t off, const void *val, size_t n) {
    FILE *f = fopen(from, "rb");
    RD_ASSERT(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = rd_xmalloc((size_t)len);
    RD_ASSERT(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    RD_ASSERT(off + n + 4 <= (size_t)len);
    memcpy(b + off, val, n);
    uint32_t crc = rd_crc32c(0, b, (size_t)len - 4);
    memcpy(b + len - 4, &crc, 4);
    f = fopen(to, "wb");
    RD_ASSERT(f && fwrite(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    rd_free(b);
}

// Offset of n_numeric in a bundle: after the header (56 bytes), job and model names, the model
// config, n_tables table configs, n_features and the widths.
static size_t numeric_offset(const char *bundle) {
    const size_t mc_off = 56 + 2 * RD_NAME_MAX;
    uint32_t nt = 0, nf = 0;
    FILE *f = fopen(bundle, "rb");
    RD_ASSERT(f && fseek(f, 20, SEEK_SET) == 0 && fread(&nt, 4, 1, f) == 1);
    const size_t nf_off = mc_off + sizeof(rd_model_config) + nt * sizeof(rd_table_config);
    RD_ASSERT(fseek(f, (long)nf_off, SEEK_SET) == 0 && fread(&nf, 4, 1, f) == 1);
    fclose(f);
    return nf_off + 4 + 4 * (size_t)nf;
}

// Bytes per numeric input in a version-3 bundle: field name, transform, mean, std, then the
// missing mode and fill (what version 2 lacks).
#define INPUT_BYTES (RD_NAME_MAX + 4 + 16 + 12)

// b (len bytes) with its header version set to `version` and its CRC resealed, written to `to`;
// frees b. Before version 5 a bundle ends with its rows: the item attribute map after them (its
// count, 0 here: these models search no tokens) is cut.
static void write_as_version(unsigned char *b, size_t len, uint32_t version, const char *to) {
    if (version < 5) {
        uint64_t n_attr;
        memcpy(&n_attr, b + len - 12, 8);
        RD_ASSERT_MSG(n_attr == 0, "bundle with an item attribute map of %llu items",
                      (unsigned long long)n_attr);
        len -= 8;
    }
    memcpy(b + 8, &version, 4);
    uint32_t crc = rd_crc32c(0, b, len - 4);
    memcpy(b + len - 4, &crc, 4);
    FILE *f = fopen(to, "wb");
    RD_ASSERT(f && fwrite(b, 1, len, f) == len);
    fclose(f);
    rd_free(b);
}

// Bytes of the token store fields of a version-4 bundle (after the logit shift): token dim, side
// values, store id.
#define TOKEN_BYTES (4 + 4 + 8)

// The same bundle in format version 1: version 1, without the numeric input table, the logit
// shift and the token store fields that follow n_numeric, CRC resealed.
static void copy_as_v1(const char *from, const char *to, size_t n_inputs) {
    size_t len;
    unsigned char *b = t_read_file(from, &len);
    const size_t at = numeric_offset(from) + 4, cut = 4 + n_inputs * INPUT_BYTES + 4 + TOKEN_BYTES;
    memmove(b + at, b + at + cut, len - at - cut);
    write_as_version(b, len - cut, 1, to);
}

// b (*len bytes, n_inputs numeric inputs, from file `from`) without the token store fields of
// version 4.
static void cut_token_fields(unsigned char *b, size_t *len, const char *from, size_t n_inputs) {
    const size_t at = numeric_offset(from) + 8 + n_inputs * INPUT_BYTES + 4;
    memmove(b + at, b + at + TOKEN_BYTES, *len - at - TOKEN_BYTES);
    *len -= TOKEN_BYTES;
}

// The same bundle in format version 3: version 3, without the token store fields, CRC resealed.
static void copy_as_v3(const char *from, const char *to, size_t n_inputs) {
    size_t len;
    unsigned char *b = t_read_file(from, &len);
    cut_token_fields(b, &len, from, n_inputs);
    write_as_version(b, len, 3, to);
}

// The same bundle in format version 2: version 2, without the token store fields, each numeric
// input without its missing mode and fill (the last 12 bytes of its entry), CRC resealed.
static void copy_as_v2(const char *from, const char *to, size_t n_inputs) {
    size_t len;
    unsigned char *b = t_read_file(from, &len);
    cut_token_fields(b, &len, from, n_inputs);
    const size_t at = numeric_offset(from) + 8; // the first input's entry
    for (size_t j = n_inputs; j-- > 0;) {       // from the last, so earlier offsets hold
        const size_t cut_at = at + j * INPUT_BYTES + INPUT_BYTES - 12;
        memmove(b + cut_at, b + cut_at + 12, len - cut_at - 12);
        len -= 12;
    }
    write_as_version(b, len, 2, to);
}

// The same bundle as an earlier build wrote it: its model config without the n 4-byte members
// at offs (offsets in this build's rd_model_config, the highest first) that the build lacked,
// the config size in the header (bytes 12..15) to match, CRC resealed.
static void copy_as_layout(const char *from, const char *to, const size_t *offs, size_t n) {
    size_t len;
    unsigned char *b = t_read_file(from, &len);
    const size_t mc_off = 56 + 2 * RD_NAME_MAX;
    uint32_t mcs, version;
    memcpy(&version, b + 8, 4);
    memcpy(&mcs, b + 12, 4);
    for (size_t i = 0; i < n; i++) {
        const size_t at = mc_off + offs[i];
        memmove(b + at, b + at + 4, len - at - 4);
        len -= 4;
        mcs -= 4;
    }
    memcpy(b + 12, &mcs, 4);
    write_as_version(b, len, version, to);
}

// A checkpoint folder `to` (replaced) made from the student's checkpoint `ckpt`: its dense.bin,
// with the float at byte `nan_at` set to NaN when nan_at >= 0, beside one PS shard of 40 rows
// (keys 977, 2 * 977, ...) in each of the config's tables at dim `dim` (0 = the config's),
// value 1 of table 0's key 3 * 977 NaN when `nan_row`.
static void make_ckpt(const rd_config *cfg,
                      const char *ckpt,
                      const char *to,
                      uint32_t dim,
                      int nan_row,
                      long nan_at) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_train_ckpt_rmtree(to, NULL); // left by the session before (same folder), or a call before
    const int nt = cfg->ps.n_tables;
    rd_table_config tc[RD_MAX_TABLES];
    rd_table *tab[RD_MAX_TABLES];
    rd_ckpt_manifest *mm = rd_xcalloc(1, sizeof *mm);
    mm->version = RD_CKPT_VERSION;
    mm->n_shards = 1;
    mm->seed = cfg->run.seed;
    mm->n_tables = (uint32_t)nt;
    for (int t = 0; t < nt; t++) {
        tc[t] = cfg->ps.tables[t];
        if (dim)
            tc[t].dim = (int)dim;
        tc[t].optim.kind = RD_OPT_SGD;
        tc[t].capacity = 16;
        RD_ASSERT(rd_table_create(&tc[t], t, cfg->run.seed, &tab[t], &eb) == RD_OK);
        float row[1024];
        RD_ASSERT(tc[t].dim <= 1024);
        for (uint64_t k = 1; k <= 40; k++) {
            for (int j = 0; j < tc[t].dim; j++)
                row[j] = j % 2 ? -0.5f : 0.5f;
            if (nan_row && t == 0 && k == 3)
                row[1] = NAN;
            RD_ASSERT(rd_table_put(tab[t], k * 977, row, 1, 1) == RD_OK);
        }
        memcpy(mm->tables[t].name, tc[t].name, RD_NAME_MAX);
        mm->tables[t].index = (uint32_t)t;
        mm->tables[t].dim = (uint32_t)tc[t].dim;
        mm->tables[t].optim = RD_OPT_SGD;
        mm->tables[t].slots = 0;
    }
    rd_ckpt_shard_info info;
    RD_ASSERT(rd_ckpt_write_shard(to, 0, 1, 0, cfg->run.seed, tab, nt, &info, &eb) == RD_OK);
    mm->shard_crc[0] = info.crc;
    for (int t = 0; t < nt; t++) {
        mm->tables[t].rows = info.rows[t];
        mm->shard_rows[0] += info.rows[t];
        rd_table_destroy(tab[t]);
    }
    RD_ASSERT(rd_ckpt_write_manifest(to, mm, &eb) == RD_OK);
    rd_free(mm);
    char from[RD_PATH_MAX * 2 + 64], dst[RD_PATH_MAX + 128];
    snprintf(from, sizeof from, "%s/%s", ckpt, RD_TRAIN_CKPT_DENSE);
    snprintf(dst, sizeof dst, "%s/%s", to, RD_TRAIN_CKPT_DENSE);
    if (nan_at >= 0) {
        const float fnan = NAN;
        copy_reseal(from, dst, (size_t)nan_at, &fnan, 4);
        return;
    }
    FILE *fi = fopen(from, "rb"), *fo = fopen(dst, "wb");
    RD_ASSERT(fi && fo);
    int ch;
    while ((ch = fgetc(fi)) != EOF)
        fputc(ch, fo);
    fclose(fi);
    RD_ASSERT(fclose(fo) == 0);
}

// After training, on the worker rank (t_train_session): ctx is the test's folder.
static void worker_checks(rd_trainer *tr,
                          const rd_trainer_result *res,
                          const rd_comm *comm,
                          const rd_config *cfg,
                          void *ctx) {
    (void)res;
    (void)comm;
    const char *dir = ctx;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char dsdir[RD_PATH_MAX], ckpt[RD_PATH_MAX * 2], bundle[RD_PATH_MAX + 64];
    snprintf(dsdir, sizeof dsdir, "%s", cfg->data.dir);
    snprintf(bundle, sizeof bundle, "%s/student_%s.rdsv", dir, session_name());
    int rc = rd_train_ckpt_latest(cfg->ps.checkpoint_dir, "student", ckpt, sizeof ckpt, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "no checkpoint: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rd_dataset *ds = NULL;
    RD_ASSERT(rd_dataset_open(dsdir, 0, &ds, &eb) == RD_OK);
    rd_range h = rd_dataset_holdout(ds);
    size_t n = (size_t)(h.end - h.begin);
    uint64_t *recs = rd_xmalloc(n * sizeof *recs);
    for (size_t i = 0; i < n; i++)
        recs[i] = h.begin + i;
    float *ref = rd_xmalloc(n * sizeof *ref);
    // 1. The reference.
    rc = rd_trainer_score(tr, recs, n, ref, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "rd_trainer_score: %s", eb.msg);

    // 2. Export, open, score one by one.
    rc = rd_serve_export(cfg, "student", ckpt, NULL, bundle, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "rd_serve_export: %s", eb.msg);
    rd_serve *sv = NULL;
    rc = rd_serve_open(bundle, 256, &sv, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "rd_serve_open: %s", eb.msg);
    if (rc != RD_OK)
        goto out;
    rd_serve_info in;
    rd_serve_get_info(sv, &in);
    T_CHECK(&g_errs,
            in.keys_per_candidate == (g_ml_input ? 5 + 19u : 4) && in.hist_len == 8 && in.rows > 0,
            "info: K %zu L %zu rows %llu", in.keys_per_candidate, in.hist_len,
            (unsigned long long)in.rows);
    T_CHECK(&g_errs,
            in.config_hash ==
                rd_train_ckpt_config_hash(cfg, rd_config_find_job(cfg, "student"), &cfg->models[0]),
            "config hash");
    // History statistics: synthetic and csv [2, 8] (labels), MovieLens [1, 4, 16] x (label,
    // rating, residual); the csv session also has its three numeric inputs.
    T_CHECK(&g_errs,
            in.version == RD_SERVE_VERSION && in.n_stats == (g_ml_input ? 10u : 3u) &&
                in.n_numeric == in.n_stats + (g_csv ? 3u : 0u),
            "info: version %u, %zu numeric, %zu stats", in.version, in.n_numeric, in.n_stats);
    // The csv session's student keeps half of its negatives: its bundle adds log(0.5).
    T_CHECK(&g_errs, in.logit_shift == (g_csv ? (float)log(0.5) : 0.0f), "logit shift %g",
            (double)in.logit_shift);
    const size_t K = in.keys_per_candidate, NC = 256, NN = in.n_numeric;
    float *num = rd_xcalloc(NC * (NN ? NN : 1), sizeof *num);
    uint64_t *keys = rd_xmalloc(NC * K * sizeof *keys), hist[8];
    uint8_t hl[8];
    float logit[256], score[256];
    double maxd = 0, lo = 1e30, hi = -1e30;
    float *solo = rd_xmalloc(n * sizeof *solo);
    for (size_t i = 0; i < n; i++) {
        RD_ASSERT(rd_serve_request_from_dataset(sv, ds, recs[i], keys, hist, hl, num, &eb) ==
                  RD_OK);
        rd_serve_request rq = {
            .n = 1, .keys = keys, .hist_items = hist, .hist_labels = hl, .numeric = num};
        rc = rd_serve_score(sv, &rq, score, logit, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "score: %s", eb.msg);
        solo[i] = logit[0];
        double d = fabs((double)logit[0] - (double)ref[i]);
        maxd = d > maxd ? d : maxd;
        lo = fmin(lo, (double)ref[i]);
        hi = fmax(hi, (double)ref[i]);
        T_CHECK(&g_errs, fabs((double)score[0] - 1.0 / (1.0 + exp(-(double)logit[0]))) < 1e-6,
                "score");
    }
    printf("[%s] serve vs trainer: %zu holdout requests, max |logit diff| %.3g (logits in [%.3f, "
           "%.3f])\n",
           session_name(), n, maxd, lo, hi);
    T_CHECK(&g_errs, maxd <= 1e-6, "serving logits differ from the trainer's by %.3g", maxd);
    T_CHECK(&g_errs, hi - lo > 1e-3, "logits do not vary (%.3g..%.3g): the test could not fail", lo,
            hi);

    // 3. Many candidates: the record's item first, then other records' items.
    const size_t sizes[2] = {16, 256};
    for (int k = 0; k < 2; k++) {
        double md = 0;
        for (size_t i = 0; i < n; i += 7) {
            for (size_t c = 0; c < sizes[k]; c++) {
                uint64_t other = c == 0 ? recs[i] : recs[(i + c * 13) % n];
                RD_ASSERT(rd_serve_request_from_dataset(sv, ds, other, keys + c * K, hist, hl,
                                                        num + c * NN, &eb) == RD_OK);
                // Same user, time and history for every candidate: only the item differs.
                memcpy(keys + c * K, keys, K * sizeof *keys);
                size_t off, w;
                const char *field;
                for (int f = 0; f < in.n_features; f++) {
                    rd_serve_feature(sv, f, &field, &off, &w);
                    if (strcmp(field, "item") == 0)
                        keys[c * K + off] = rd_dataset_record(ds, other)->item_key;
                }
            }
            RD_ASSERT(rd_serve_request_from_dataset(sv, ds, recs[i], keys, hist, hl, num, &eb) ==
                      RD_OK);
            for (size_t c = 1; c < sizes[k]; c++) // the user's statistics, for every candidate
                memcpy(num + c * NN, num, NN * sizeof *num);
            rd_serve_request rq = {
                .n = sizes[k], .keys = keys, .hist_items = hist, .hist_labels = hl, .numeric = num};
            rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_OK, "score %zu: %s", sizes[k], eb.msg);
            md = fmax(md, fabs((double)logit[0] - (double)solo[i]));
        }
        printf("%zu candidates: candidate 0 vs one-candidate request: max diff %.3g\n", sizes[k],
               md);
        T_CHECK(&g_errs, md <= 1e-6, "batch of %zu changes the score by %.3g", sizes[k], md);
    }
    // Raw numeric inputs: the bundle records each input's field and transform (the dataset's),
    // and a request of raw values scores exactly as one of stored values.
    for (size_t j = 0; j < NN - in.n_stats; j++) {
        const char *field = NULL;
        uint32_t xf = 0;
        double mean = 0, sd = 0;
        T_CHECK(&g_errs, rd_serve_numeric(sv, j, &field, &xf, &mean, &sd) == RD_OK, "numeric %zu",
                j);
        const rd_dataset_field *df = rd_dataset_find_field(ds, field);
        T_CHECK(&g_errs,
                df && df->kind == RD_FIELD_NUMERIC && df->offset == j && df->transform == xf &&
                    df->mean == mean && df->std == sd,
                "numeric %zu ('%s'): transform 0x%x mean %g std %g", j, field, xf, mean, sd);
        T_CHECK(&g_errs,
                xf == (j == 0   ? RD_XFORM_LOG1P | RD_XFORM_STANDARDIZE
                       : j == 1 ? RD_XFORM_STANDARDIZE
                                : 0u),
                "numeric %zu: transform 0x%x", j, xf);
        // Version 3: the missing mode of the config's field and the fill of the dataset (price:
        // the mean meta.yaml records; dwell: 0; qty: none).
        uint32_t mm = 99;
        double fill = -1, want = 0;
        T_CHECK(&g_errs, rd_serve_numeric_missing(sv, j, &mm, &fill) == RD_OK, "missing %zu", j);
        if (j == 0) {
            rc = rd_dataset_missing_mean(dsdir, "price", &want, &eb);
            T_CHECK(&g_errs, rc == RD_OK && want != 0, "meta.yaml missing_mean: %d %s", rc, eb.msg);
        }
        T_CHECK(&g_errs,
                mm == (j == 0   ? RD_MISSING_MEAN
                       : j == 1 ? RD_MISSING_ZERO
                                : RD_MISSING_ERROR) &&
                    fill == want,
                "numeric %zu ('%s'): missing mode %u fill %.17g (want %.17g)", j, field, mm, fill,
                want);
    }
    T_CHECK(&g_errs, rd_serve_numeric(sv, NN - in.n_stats, NULL, NULL, NULL, NULL) == RD_ERR_RANGE,
            "numeric past the inputs");
    T_CHECK(&g_errs, rd_serve_numeric_missing(sv, NN - in.n_stats, NULL, NULL) == RD_ERR_RANGE,
            "missing past the inputs");
    if (g_csv) {
        // Where the log's value was missing the raw request sends NaN: the bundle's fill, then
        // the field's standardization, must give the stored value bit for bit.
        size_t differ = 0, miss_p = 0, miss_d = 0, once = 0;
        for (size_t i = 0; i < n; i++) {
            RD_ASSERT(rd_serve_request_from_dataset(sv, ds, recs[i], keys, hist, hl, num, &eb) ==
                      RD_OK);
            const float stored0 = num[0];
            int64_t t = rd_dataset_record(ds, recs[i])->ts;
            const int mp = csv_price_missing(t), md = csv_dwell_missing(t);
            miss_p += mp;
            miss_d += md;
            num[0] = mp ? NAN : (float)csv_price(t);
            num[1] = md ? NAN : (float)csv_dwell(t);
            num[2] = (float)csv_qty(t);
            differ += !mp && num[0] != stored0;
            rd_errbuf_clear(&eb);
            rd_serve_request rq = {.n = 1,
                                   .keys = keys,
                                   .hist_items = hist,
                                   .hist_labels = hl,
                                   .numeric = num,
                                   .numeric_raw = 1};
            rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_OK && logit[0] == solo[i],
                    "raw inputs of record %llu: %d %s, logit %.9g against %.9g",
                    (unsigned long long)recs[i], rc, eb.msg, (double)logit[0], (double)solo[i]);
            if (!mp && !md && !once++) { // the same raw values read as stored ones: another score
                rq.numeric_raw = 0;
                RD_ASSERT(rd_serve_score(sv, &rq, NULL, logit, &eb) == RD_OK);
                T_CHECK(&g_errs, logit[0] != solo[i], "raw read as stored: same logit");
                // A stored NaN is refused naming the candidate and the field (it was "batch:
                // numeric[1] is not finite"), and so is a raw request's NaN history statistic.
                const float keep1 = num[1];
                num[1] = NAN;
                rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
                T_CHECK(&g_errs,
                        rc == RD_ERR_RANGE && strstr(eb.msg, "candidate 0") &&
                            strstr(eb.msg, "'dwell'"),
                        "stored NaN dwell: %d %s", rc, eb.msg);
                num[1] = keep1;
                const float keep_st = num[NN - 1];
                num[NN - 1] = INFINITY;
                rq.numeric_raw = 1;
                rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
                T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "history statistic"),
                        "raw request, infinite statistic: %d %s", rc, eb.msg);
                num[NN - 1] = keep_st;
                rq.numeric_raw = 0;
                // NaN of a field without a fill (missing: error) is refused by name; infinity
                // is never a missing value.
                rq.numeric_raw = 1;
                num[2] = NAN;
                rd_errbuf_clear(&eb);
                rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
                T_CHECK(&g_errs,
                        rc == RD_ERR_RANGE && strstr(eb.msg, "'qty'") &&
                            strstr(eb.msg, "missing: error"),
                        "raw NaN of a field without a fill: %d %s", rc, eb.msg);
                num[2] = (float)csv_qty(t);
                num[0] = INFINITY;
                rd_errbuf_clear(&eb);
                rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
                T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "'price'"),
                        "raw infinite price: %d %s", rc, eb.msg);
            }
            if (mp) { // the stored value is the fill, standardized (never log1p'ed)
                uint32_t xf;
                double mean, sd, fill;
                RD_ASSERT(rd_serve_numeric(sv, 0, NULL, &xf, &mean, &sd) == RD_OK &&
                          rd_serve_numeric_missing(sv, 0, NULL, &fill) == RD_OK);
                T_CHECK(&g_errs,
                        stored0 == rd_field_transform(xf & ~RD_XFORM_LOG1P, mean, sd, fill),
                        "record %llu: stored price %.9g is not the standardized fill %.17g",
                        (unsigned long long)recs[i], (double)stored0, fill);
            }
        }
        printf("[csv] %zu holdout requests with raw price, dwell and qty: same logits as stored "
               "values (%zu raw prices differ from the stored ones; %zu prices and %zu dwells "
               "sent missing as NaN)\n",
               n, differ, miss_p, miss_d);
        T_CHECK(&g_errs, differ == n - miss_p, "raw and stored prices agree on %zu records",
                n - miss_p - differ);
        T_CHECK(&g_errs, miss_p > 0 && miss_d > 0 && miss_p < n && miss_d < n,
                "holdout: %zu missing prices, %zu missing dwells of %zu", miss_p, miss_d, n);
        T_CHECK(&g_errs, once, "no holdout record without a missing value");
    }
    {
        // A version-1 bundle (written before the transforms were recorded) still opens and
        // scores stored values the same; raw values are refused by name.
        char v1[800];
        snprintf(v1, sizeof v1, "%s/v1_%s.rdsv", dir, session_name());
        copy_as_v1(bundle, v1, NN - in.n_stats);
        rd_serve *old = NULL;
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(v1, 4, &old, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "version-1 bundle: %d %s", rc, eb.msg);
        if (rc == RD_OK) {
            rd_serve_info oi;
            rd_serve_get_info(old, &oi);
            uint32_t xf = 0;
            T_CHECK(&g_errs,
                    oi.version == 1 && oi.n_numeric == NN &&
                        (NN == in.n_stats ||
                         (rd_serve_numeric(old, 0, NULL, &xf, NULL, NULL) == RD_OK &&
                          xf == RD_XFORM_UNKNOWN)),
                    "version-1 info: version %u, %zu numeric, transform 0x%x", oi.version,
                    oi.n_numeric, xf);
            RD_ASSERT(rd_serve_request_from_dataset(old, ds, recs[0], keys, hist, hl, num, &eb) ==
                      RD_OK);
            rd_serve_request rq = {
                .n = 1, .keys = keys, .hist_items = hist, .hist_labels = hl, .numeric = num};
            rc = rd_serve_score(old, &rq, NULL, logit, &eb);
            // (a version-1 bundle has no logit shift)
            T_CHECK(&g_errs, rc == RD_OK && logit[0] + in.logit_shift == solo[0],
                    "version-1 score: %d %s", rc, eb.msg);
            rq.numeric_raw = 1;
            rd_errbuf_clear(&eb);
            rc = rd_serve_score(old, &rq, NULL, logit, &eb);
            T_CHECK(&g_errs,
                    NN == in.n_stats ? rc == RD_OK
                                     : rc == RD_ERR_UNSUPPORTED && strstr(eb.msg, "re-export"),
                    "version-1 raw request: %d %s", rc, eb.msg);
            rd_serve_close(old);
        }
    }
    {
        // A version-3 bundle (before the token branch was served) still opens and scores the same.
        char v3[800];
        snprintf(v3, sizeof v3, "%s/v3_%s.rdsv", dir, session_name());
        copy_as_v3(bundle, v3, NN - in.n_stats);
        rd_serve *old = NULL;
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(v3, 4, &old, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "version-3 bundle: %d %s", rc, eb.msg);
        if (rc == RD_OK) {
            rd_serve_info oi;
            rd_serve_get_info(old, &oi);
            T_CHECK(&g_errs,
                    oi.version == 3 && oi.n_numeric == NN && !oi.tok_length && !oi.tok_store_id,
                    "version-3 info: version %u, %zu numeric, %zu tokens", oi.version, oi.n_numeric,
                    oi.tok_length);
            RD_ASSERT(rd_serve_request_from_dataset(old, ds, recs[0], keys, hist, hl, num, &eb) ==
                      RD_OK);
            rd_serve_request rq = {
                .n = 1, .keys = keys, .hist_items = hist, .hist_labels = hl, .numeric = num};
            rc = rd_serve_score(old, &rq, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_OK && logit[0] == solo[0], "version-3 score: %d %s", rc,
                    eb.msg);
            rd_serve_close(old);
        }
    }
    {
        // A version-2 bundle (transforms, no missing-value fills) still opens and scores stored
        // and raw values the same, and refuses a raw NaN as before: it records no fill.
        char v2[800];
        snprintf(v2, sizeof v2, "%s/v2_%s.rdsv", dir, session_name());
        copy_as_v2(bundle, v2, NN - in.n_stats);
        rd_serve *old = NULL;
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(v2, 4, &old, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "version-2 bundle: %d %s", rc, eb.msg);
        if (rc == RD_OK) {
            rd_serve_info oi;
            rd_serve_get_info(old, &oi);
            uint32_t xf = 0, mm = 99;
            double fill = -1;
            T_CHECK(&g_errs,
                    oi.version == 2 && oi.n_numeric == NN && oi.logit_shift == in.logit_shift &&
                        (NN == in.n_stats ||
                         (rd_serve_numeric(old, 0, NULL, &xf, NULL, NULL) == RD_OK &&
                          xf == (RD_XFORM_LOG1P | RD_XFORM_STANDARDIZE) &&
                          rd_serve_numeric_missing(old, 0, &mm, &fill) == RD_OK &&
                          mm == RD_MISSING_ERROR && fill == 0)),
                    "version-2 info: version %u, %zu numeric, transform 0x%x, missing %u fill %g",
                    oi.version, oi.n_numeric, xf, mm, fill);
            // A record without missing values, then (csv) one whose price was missing.
            size_t full = 0, gap = n;
            while (g_csv && full < n &&
                   (csv_price_missing(rd_dataset_record(ds, recs[full])->ts) ||
                    csv_dwell_missing(rd_dataset_record(ds, recs[full])->ts)))
                full++;
            for (size_t i = 0; g_csv && i < n && gap == n; i++)
                if (csv_price_missing(rd_dataset_record(ds, recs[i])->ts))
                    gap = i;
            RD_ASSERT(full < n && (!g_csv || gap < n));
            RD_ASSERT(rd_serve_request_from_dataset(old, ds, recs[full], keys, hist, hl, num,
                                                    &eb) == RD_OK);
            rd_serve_request rq = {
                .n = 1, .keys = keys, .hist_items = hist, .hist_labels = hl, .numeric = num};
            rc = rd_serve_score(old, &rq, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_OK && logit[0] == solo[full], "version-2 score: %d %s", rc,
                    eb.msg);
            if (g_csv) {
                int64_t t = rd_dataset_record(ds, recs[full])->ts;
                num[0] = (float)csv_price(t);
                num[1] = (float)csv_dwell(t);
                num[2] = (float)csv_qty(t);
                rq.numeric_raw = 1;
                rd_errbuf_clear(&eb);
                rc = rd_serve_score(old, &rq, NULL, logit, &eb);
                T_CHECK(&g_errs, rc == RD_OK && logit[0] == solo[full],
                        "version-2 raw request: %d %s", rc, eb.msg);
                RD_ASSERT(rd_serve_request_from_dataset(old, ds, recs[gap], keys, hist, hl, num,
                                                        &eb) == RD_OK);
                t = rd_dataset_record(ds, recs[gap])->ts;
                num[0] = NAN;
                num[1] = csv_dwell_missing(t) ? NAN : (float)csv_dwell(t);
                num[2] = (float)csv_qty(t);
                rd_errbuf_clear(&eb);
                rc = rd_serve_score(old, &rq, NULL, logit, &eb);
                T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "'price'"),
                        "version-2 raw NaN: %d %s", rc, eb.msg);
            }
            rd_serve_close(old);
        }
    }
    {
        // Bundles of the earlier config layouts (rd_model_config before models[].tokens.label,
        // before models[].tokens.query too, and before models[].dropout too) still open and
        // score the same; a layout no build wrote (one 4-byte member fewer still) is refused by
        // name. The members are cut from the last one back (copy_as_layout).
        const size_t q_off = offsetof(rd_model_config, tokens) + offsetof(rd_token_use, query),
                     l_off = offsetof(rd_model_config, tokens) + offsetof(rd_token_use, label),
                     d_off = offsetof(rd_model_config, dropout);
        const size_t no_l[] = {l_off}, no_lq[] = {l_off, q_off}, no_dlq[] = {d_off, l_off, q_off},
                     none[] = {d_off, l_off, q_off, offsetof(rd_model_config, layer_norm)};
        struct {
            const char *what;
            const size_t *offs;
            size_t n;
        } layouts[] = {{"without tokens.label", no_l, 1},
                       {"without tokens.query and tokens.label", no_lq, 2},
                       {"without dropout, tokens.query and tokens.label", no_dlq, 3},
                       {"of no build", none, 4}};
        RD_ASSERT(d_off > l_off && l_off > q_off);
        for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
            char old_p[800];
            snprintf(old_p, sizeof old_p, "%s/layout%zu_%s.rdsv", dir, i, session_name());
            copy_as_layout(bundle, old_p, layouts[i].offs, layouts[i].n);
            rd_serve *old = NULL;
            rd_errbuf_clear(&eb);
            rc = rd_serve_open(old_p, 4, &old, &eb);
            if (i == 3) {
                T_CHECK(&g_errs, rc == RD_ERR_VERSION && !old && strstr(eb.msg, "config layout"),
                        "bundle %s: %d %s", layouts[i].what, rc, eb.msg);
                continue;
            }
            T_CHECK(&g_errs, rc == RD_OK, "bundle %s: %d %s", layouts[i].what, rc, eb.msg);
            if (rc != RD_OK)
                continue;
            RD_ASSERT(rd_serve_request_from_dataset(old, ds, recs[0], keys, hist, hl, num, &eb) ==
                      RD_OK);
            rd_serve_request rq = {
                .n = 1, .keys = keys, .hist_items = hist, .hist_labels = hl, .numeric = num};
            rc = rd_serve_score(old, &rq, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_OK && logit[0] == solo[0], "bundle %s: score %d %s",
                    layouts[i].what, rc, eb.msg);
            rd_serve_close(old);
        }
    }
    rd_errbuf_clear(&eb);
    rd_serve_request bad = {.n = 0, .keys = keys};
    T_CHECK(&g_errs, rd_serve_score(sv, &bad, NULL, logit, &eb) == RD_ERR_ARG, "n = 0");
    bad.n = 257;
    T_CHECK(&g_errs, rd_serve_score(sv, &bad, NULL, logit, &eb) == RD_ERR_ARG, "n > max");
    bad.n = 1;
    T_CHECK(&g_errs, rd_serve_score(NULL, &bad, NULL, logit, &eb) == RD_ERR_ARG, "NULL scorer");
    T_CHECK(&g_errs, rd_serve_score(sv, NULL, NULL, logit, &eb) == RD_ERR_ARG, "NULL request");
    T_CHECK(&g_errs, rd_serve_feature(NULL, 0, NULL, NULL, NULL) == RD_ERR_RANGE, "NULL feature");
    // NULL outputs the bundle needs (its history of L = 8, its numeric inputs and statistics),
    // and NULL open arguments: RD_ERR_ARG naming them (each was a segfault).
    rc = rd_serve_request_from_dataset(sv, ds, recs[0], keys, NULL, hl, num, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_ARG && strstr(eb.msg, "hist"), "NULL hist: %d %s", rc, eb.msg);
    rc = rd_serve_request_from_dataset(sv, ds, recs[0], keys, hist, NULL, num, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_ARG && strstr(eb.msg, "hist_lab"), "NULL hist_lab: %d %s", rc,
            eb.msg);
    rc = rd_serve_request_from_dataset(sv, ds, recs[0], keys, hist, hl, NULL, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_ARG && strstr(eb.msg, "numeric"), "NULL numeric: %d %s", rc,
            eb.msg);
    rc = rd_serve_open(bundle, 4, NULL, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_ARG && strstr(eb.msg, "out"), "open, NULL out: %d %s", rc,
            eb.msg);
    {
        rd_serve *none = (rd_serve *)&eb; // must be set to NULL
        rc = rd_serve_open(NULL, 4, &none, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_ARG && !none && strstr(eb.msg, "path"),
                "open, NULL path: %d %s", rc, eb.msg);
    }
    T_CHECK(&g_errs, rd_serve_numeric(NULL, 0, NULL, NULL, NULL, NULL) == RD_ERR_RANGE,
            "NULL numeric");
    rd_serve_info zero;
    rd_serve_get_info(NULL, &zero);
    T_CHECK(&g_errs, zero.keys_per_candidate == 0 && zero.hist_len == 0, "NULL info");
    rd_serve_close(sv);
    rd_free(keys);
    rd_free(num);
    rd_free(solo);

    // 4. Bad input.
    char p[800];
    rd_serve *x = NULL;
    snprintf(p, sizeof p, "%s/none.rdsv", dir);
    rd_errbuf_clear(&eb);
    T_CHECK(&g_errs, rd_serve_open(p, 4, &x, &eb) == RD_ERR_NOTFOUND && !x, "missing: %s", eb.msg);
    snprintf(p, sizeof p, "%s/flip.rdsv", dir);
    copy_patch(bundle, p, 300, 0x10, 0);
    rd_errbuf_clear(&eb);
    rc = rd_serve_open(p, 4, &x, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && strstr(eb.msg, "CRC"), "flipped byte: %d %s", rc,
            eb.msg);
    snprintf(p, sizeof p, "%s/ver.rdsv", dir);
    copy_patch(bundle, p, 8, 0x10, 0); // the version field: 20
    rd_errbuf_clear(&eb);
    rc = rd_serve_open(p, 4, &x, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_VERSION && strstr(eb.msg, "version"), "version: %d %s", rc,
            eb.msg);
    snprintf(p, sizeof p, "%s/trunc.rdsv", dir);
    copy_patch(bundle, p, -1, 0, 200);
    rd_errbuf_clear(&eb);
    rc = rd_serve_open(p, 4, &x, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_CORRUPT, "truncated: %d %s", rc, eb.msg);
    rd_errbuf_clear(&eb);
    T_CHECK(&g_errs, rd_serve_open(bundle, 0, &x, &eb) == RD_ERR_ARG, "max_candidates 0");
    // Not a regular file: a folder was "short read", and a FIFO blocked open() for ever. The
    // error buffer is not cleared by the caller here: each call clears it (a later failure used
    // to keep the first one's message).
    T_CHECK(&g_errs,
            rd_serve_open(dir, 4, &x, &eb) == RD_ERR_IO && strstr(eb.msg, "a folder") && !x,
            "folder: %s", eb.msg);
    snprintf(p, sizeof p, "%s/bundle.fifo", dir);
    if (mkfifo(p, 0600) == 0) {
        rc = rd_serve_open(p, 4, &x, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_IO && strstr(eb.msg, "a FIFO") && !x, "fifo: %d %s", rc,
                eb.msg);
        unlink(p);
    }
    // Well-formed (CRC-sealed) bundles whose counts and strings lie: each refused with
    // RD_ERR_CORRUPT, never an abort on a huge allocation or a read past an array.
    {
        // Layout: magic, version, config sizes, n_tables (24), hash, step, seed, created (56),
        // job and model names, the model config, n_tables table configs, n_features, widths,
        // n_numeric.
        const size_t mc_off = 56 + 2 * RD_NAME_MAX;
        uint32_t nt = 0, nf = 0;
        FILE *f = fopen(bundle, "rb");
        RD_ASSERT(f && fseek(f, 20, SEEK_SET) == 0 && fread(&nt, 4, 1, f) == 1);
        const size_t nf_off = mc_off + sizeof(rd_model_config) + nt * sizeof(rd_table_config);
        RD_ASSERT(fseek(f, (long)nf_off, SEEK_SET) == 0 && fread(&nf, 4, 1, f) == 1);
        fclose(f);
        const size_t w_off = nf_off + 4, nn_off = numeric_offset(bundle);
        RD_ASSERT(nn_off == w_off + 4 * (size_t)nf);
        struct {
            const char *what;
            size_t off;
            uint32_t val;
        } lies[] = {
            {"feature width 2^32-1", w_off, 0xffffffffu},
            {"feature width 0", w_off, 0},
            {"2^32-1 numeric inputs", nn_off, 0xffffffffu},
            {"2^32-1 numeric input fields", nn_off + 4, 0xffffffffu},
            {"transform flags 0x10", g_csv ? nn_off + 8 + RD_NAME_MAX : nn_off, 0x10},
            {"seq.n_stats 1000",
             mc_off + offsetof(rd_model_config, seq) + offsetof(rd_seq_config, n_stats), 1000},
            {"mlp[0] 2^31-1", mc_off + offsetof(rd_model_config, mlp), 0x7fffffffu},
        };
        for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
            snprintf(p, sizeof p, "%s/lie%zu.rdsv", dir, i);
            copy_reseal(bundle, p, lies[i].off, &lies[i].val, 4);
            rd_errbuf_clear(&eb);
            rc = rd_serve_open(p, 4, &x, &eb);
            T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x, "%s: %d %s", lies[i].what, rc, eb.msg);
            rd_serve_close(x);
            x = NULL;
        }
        if (g_csv) { // the standardized input's mean NaN, its std 0
            const double bad_v[2] = {(double)NAN, 0.0};
            for (int k = 0; k < 2; k++) {
                snprintf(p, sizeof p, "%s/lie_xform%d.rdsv", dir, k);
                copy_reseal(bundle, p, nn_off + 8 + RD_NAME_MAX + 4 + 8 * (size_t)k, &bad_v[k], 8);
                rd_errbuf_clear(&eb);
                rc = rd_serve_open(p, 4, &x, &eb);
                T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, "'price'"),
                        "transform %s: %d %s", k ? "std 0" : "mean NaN", rc, eb.msg);
                rd_serve_close(x);
                x = NULL;
            }
            // Version 3's missing mode and fill: a mode out of range, a NaN fill (price), a
            // fill beside `missing: zero` (dwell, whose fill is the raw 0).
            const size_t in0 = nn_off + 8, miss_at = RD_NAME_MAX + 4 + 16;
            const uint32_t bad_mode = 7;
            const double nan_fill = (double)NAN, one = 1.0;
            struct {
                const char *what, *field;
                size_t off;
                const void *val;
                size_t n;
            } fills[] = {
                {"missing mode 7", "'price'", in0 + miss_at, &bad_mode, 4},
                {"fill NaN", "'price'", in0 + miss_at + 4, &nan_fill, 8},
                {"fill 1 with missing: zero", "'dwell'", in0 + INPUT_BYTES + miss_at + 4, &one, 8},
            };
            for (size_t k = 0; k < sizeof fills / sizeof fills[0]; k++) {
                snprintf(p, sizeof p, "%s/lie_fill%zu.rdsv", dir, k);
                copy_reseal(bundle, p, fills[k].off, fills[k].val, fills[k].n);
                rd_errbuf_clear(&eb);
                rc = rd_serve_open(p, 4, &x, &eb);
                T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, fills[k].field),
                        "%s: %d %s", fills[k].what, rc, eb.msg);
                rd_serve_close(x);
                x = NULL;
            }
        }
#if !defined(__SANITIZE_ADDRESS__) // ASan's allocator aborts on a 2 TiB request by design
        // 2 TiB (sparse: a valid header, then zeros): more than any machine here can allocate.
        snprintf(p, sizeof p, "%s/huge.rdsv", dir);
        copy_patch(bundle, p, -1, 0, 200);
        RD_ASSERT(truncate(p, (off_t)1 << 41) == 0);
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(p, 4, &x, &eb);
        T_CHECK(&g_errs, (rc == RD_ERR_NOMEM || rc == RD_ERR_CORRUPT) && !x, "2 TiB bundle: %d %s",
                rc, eb.msg);
        unlink(p);
#endif
        char name[RD_NAME_MAX];
        memset(name, 'A', sizeof name); // the model name without its terminating NUL
        snprintf(p, sizeof p, "%s/lie_name.rdsv", dir);
        copy_reseal(bundle, p, mc_off + offsetof(rd_model_config, name), name, sizeof name);
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(p, 4, &x, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, "NUL"),
                "unterminated model name: %d %s", rc, eb.msg);
        rd_serve_close(x);
        x = NULL;
        // A model too large for this machine at max_candidates (mlp[0] 65536, the most a config
        // allows, for 2^20 candidates: 256 TiB of activations): RD_ERR_NOMEM, whose advice is the
        // serving knob (it said "lower train.batch_size", which a server does not have).
        const uint32_t wide = 65536;
        snprintf(p, sizeof p, "%s/wide.rdsv", dir);
        copy_reseal(bundle, p, mc_off + offsetof(rd_model_config, mlp), &wide, 4);
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(p, (size_t)1 << 20, &x, &eb);
        T_CHECK(&g_errs,
                rc == RD_ERR_NOMEM && !x && strstr(eb.msg, "max_candidates") &&
                    !strstr(eb.msg, "train.batch_size"),
                "too large for memory: %d %s", rc, eb.msg);
        rd_serve_close(x);
        x = NULL;
        // Non-finite parameters (a checkpoint of a diverged run): a NaN dense parameter, or a
        // NaN in an embedding row, is refused at open, naming it; they loaded, and every score
        // (or that key's) was NaN with RD_OK.
        const size_t n_in = in.n_numeric - in.n_stats;
        const size_t par_off = nn_off + 4 + 4 + n_in * INPUT_BYTES + 4 + TOKEN_BYTES + 16;
        uint64_t n_slab = 0;
        f = fopen(bundle, "rb");
        RD_ASSERT(f && fseek(f, (long)(par_off - 16), SEEK_SET) == 0 &&
                  fread(&n_slab, 8, 1, f) == 1);
        fclose(f);
        RD_ASSERT(n_slab >= in.params && in.params > 0);
        const float fnan = NAN;
        snprintf(p, sizeof p, "%s/lie_param_nan.rdsv", dir);
        copy_reseal(bundle, p, par_off, &fnan, 4);
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(p, 4, &x, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, "dense parameter"),
                "NaN dense parameter: %d %s", rc, eb.msg);
        rd_serve_close(x);
        x = NULL;
        // A token store recorded for a model without a token branch (the 16 bytes before
        // n_slab): refused, not read as a token model.
        const uint32_t tdim = 8;
        snprintf(p, sizeof p, "%s/lie_token_dim.rdsv", dir);
        copy_reseal(bundle, p, par_off - 16 - TOKEN_BYTES, &tdim, 4);
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(p, 4, &x, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, "without a token branch"),
                "token dim without a token branch: %d %s", rc, eb.msg);
        rd_serve_close(x);
        x = NULL;
        // Table 0's first row: after the slab, the row count and the row's key.
        snprintf(p, sizeof p, "%s/lie_row_nan.rdsv", dir);
        copy_reseal(bundle, p, par_off + 4 * n_slab + 8 + 8, &fnan, 4);
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(p, 4, &x, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, "table s_user row 0"),
                "NaN embedding value: %d %s", rc, eb.msg);
        rd_serve_close(x);
        x = NULL;
        // Finite parameters whose forward overflows (every one 1e20: the hidden layer's outputs
        // pass 1e38): the logit is not finite, and the request fails instead of returning a
        // score of 1 (or NaN) with RD_OK.
        float *huge = rd_xmalloc(n_slab * sizeof *huge);
        for (size_t k = 0; k < n_slab; k++)
            huge[k] = 1e20f;
        snprintf(p, sizeof p, "%s/lie_param_huge.rdsv", dir);
        copy_reseal(bundle, p, par_off, huge, n_slab * sizeof *huge);
        rd_free(huge);
        rd_errbuf_clear(&eb);
        rc = rd_serve_open(p, 4, &x, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "finite 1e20 parameters: %d %s", rc, eb.msg);
        if (rc == RD_OK) {
            uint64_t k2[64], h2[8];
            uint8_t l2[8];
            float n2[64], z2 = 0, p2 = -1;
            RD_ASSERT(in.keys_per_candidate <= 64 && in.n_numeric <= 64);
            RD_ASSERT(rd_serve_request_from_dataset(x, ds, recs[0], k2, h2, l2, n2, &eb) == RD_OK);
            rd_serve_request rq2 = {
                .n = 1, .keys = k2, .hist_items = h2, .hist_labels = l2, .numeric = n2};
            rc = rd_serve_score(x, &rq2, &p2, &z2, &eb);
            T_CHECK(&g_errs,
                    rc == RD_ERR_RANGE && strstr(eb.msg, "candidate 0") && strstr(eb.msg, "logit"),
                    "overflowing forward: %d %s (logit %g, score %g)", rc, eb.msg, (double)z2,
                    (double)p2);
        }
        rd_serve_close(x);
        x = NULL;
    }
    rd_errbuf_clear(&eb);
    rc = rd_serve_export(cfg, "student", ckpt, NULL, bundle, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_EXISTS, "existing output: %d", rc);
    rd_config *other = rd_xmalloc(sizeof *other);
    make_config(other, dir, 12);
    snprintf(p, sizeof p, "%s/other.rdsv", dir);
    rd_errbuf_clear(&eb);
    rc = rd_serve_export(other, "student", ckpt, NULL, p, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_SCHEMA && strstr(eb.msg, "config hash") && !exists(p),
            "other config: %d %s", rc, eb.msg);
    // The caller does not clear the buffer, which holds an earlier call's failure: the export's
    // message must be its own (it kept the earlier one, naming another file).
    rd_errbuf_clear(&eb);
    snprintf(p, sizeof p, "%s/none.rdsv", dir);
    RD_ASSERT(rd_serve_open(p, 4, &x, &eb) == RD_ERR_NOTFOUND);
    snprintf(p, sizeof p, "%s/other.rdsv", dir);
    rc = rd_serve_export(cfg, "teacher", ckpt, NULL, p, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_NOTFOUND && !exists(p) && strstr(eb.msg, "'teacher'"),
            "unknown job: %d %s", rc, eb.msg);
    {
        // The student's own dense.bin (its config hash matches) beside PS shards whose tables
        // have the right names but dim 2: the rows would be read as dim 4 and 8 (past each
        // row), so the export must refuse.
        char mix[RD_PATH_MAX + 64];
        snprintf(mix, sizeof mix, "%s/mixed_ckpt", dir);
        make_ckpt(cfg, ckpt, mix, 2, 0, -1);
        snprintf(p, sizeof p, "%s/mixed_%s.rdsv", dir, session_name());
        rd_errbuf_clear(&eb);
        rc = rd_serve_export(cfg, "student", mix, NULL, p, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_SCHEMA && strstr(eb.msg, "dim 2") && !exists(p),
                "checkpoint tables of another dim: %d %s", rc, eb.msg);
    }
    {
        // Non-finite values in the checkpoint (a run that diverged): the export refuses them,
        // naming them as rd_serve_open does, and writes nothing; it wrote a bundle that open
        // then refused. First the same checkpoint with finite rows, which exports.
        char nanck[RD_PATH_MAX + 64];
        snprintf(nanck, sizeof nanck, "%s/nan_ckpt", dir);
        make_ckpt(cfg, ckpt, nanck, 0, 0, -1);
        snprintf(p, sizeof p, "%s/finite_%s.rdsv", dir, session_name());
        rd_errbuf_clear(&eb);
        rc = rd_serve_export(cfg, "student", nanck, NULL, p, &eb);
        T_CHECK(&g_errs, rc == RD_OK && exists(p), "finite made-up checkpoint: %d %s", rc, eb.msg);
        // A NaN in an embedding row: table 0's key 3 * 977, value 1.
        make_ckpt(cfg, ckpt, nanck, 0, 1, -1);
        char keyhex[64];
        snprintf(keyhex, sizeof keyhex, "(key %016llx): value 1 is nan", 3ull * 977);
        snprintf(p, sizeof p, "%s/nan_row_%s.rdsv", dir, session_name());
        rd_errbuf_clear(&eb);
        rc = rd_serve_export(cfg, "student", nanck, NULL, p, &eb);
        T_CHECK(&g_errs,
                rc == RD_ERR_CORRUPT && strstr(eb.msg, nanck) &&
                    strstr(eb.msg, "table s_user row ") && strstr(eb.msg, keyhex) && !exists(p),
                "NaN embedding value at export: %d %s", rc, eb.msg);
        // A NaN dense parameter. Where the bundle's parameter k lies in dense.bin: its slab
        // precedes the optimizer slots (0 to 2 floats per parameter) and the CRC, and equals
        // the bundle's but for the auxiliary tower, which the bundle zeroes; k is the first
        // parameter that is not zero, so not the auxiliary tower's.
        size_t blen = 0, dlen = 0;
        unsigned char *bb = t_read_file(bundle, &blen);
        char dpath[RD_PATH_MAX * 2 + 64];
        snprintf(dpath, sizeof dpath, "%s/%s", ckpt, RD_TRAIN_CKPT_DENSE);
        unsigned char *db = t_read_file(dpath, &dlen);
        const size_t par_off = numeric_offset(bundle) + 4 + 4 +
                               (in.n_numeric - in.n_stats) * INPUT_BYTES + 4 + TOKEN_BYTES + 16;
        uint64_t n_slab = 0;
        memcpy(&n_slab, bb + par_off - 16, 8);
        RD_ASSERT(par_off + 4 * n_slab <= blen);
        const float *bp = (const float *)(bb + par_off);
        size_t k0 = 0;
        while (k0 < n_slab && bp[k0] == 0.0f)
            k0++;
        RD_ASSERT(k0 < n_slab);
        long dense_at = -1;
        for (size_t slots = 0; slots <= 2 && dense_at < 0; slots++) {
            if (4 + 4 * n_slab * (1 + slots) > dlen)
                break;
            const size_t off = dlen - 4 - 4 * n_slab * (1 + slots);
            int same = 1;
            for (size_t k = 0; k < n_slab && same; k++)
                same = bp[k] == 0.0f || memcmp(db + off + 4 * k, &bp[k], 4) == 0;
            if (same)
                dense_at = (long)(off + 4 * k0);
        }
        rd_free(bb);
        rd_free(db);
        RD_ASSERT(dense_at >= 0);
        make_ckpt(cfg, ckpt, nanck, 0, 0, dense_at);
        snprintf(p, sizeof p, "%s/nan_param_%s.rdsv", dir, session_name());
        rd_errbuf_clear(&eb);
        rc = rd_serve_export(cfg, "student", nanck, NULL, p, &eb);
        T_CHECK(&g_errs,
                rc == RD_ERR_CORRUPT && strstr(eb.msg, nanck) &&
                    strstr(eb.msg, "dense parameter ") && strstr(eb.msg, "is nan") && !exists(p),
                "NaN dense parameter at export: %d %s", rc, eb.msg);
    }
    if (g_csv) {
        // A `missing: mean` field whose fill meta.yaml does not record (a folder edited, or
        // written by a build before the fill was recorded): the export names the field and file.
        char meta[RD_PATH_MAX + 64], keep[RD_PATH_MAX + 80];
        snprintf(meta, sizeof meta, "%s/%s", dsdir, RD_DATASET_META);
        snprintf(keep, sizeof keep, "%s.keep", meta);
        RD_ASSERT(rename(meta, keep) == 0);
        FILE *fi = fopen(keep, "r"), *fo = fopen(meta, "w");
        RD_ASSERT(fi && fo);
        char line[8192];
        while (fgets(line, sizeof line, fi)) {
            char *m = strstr(line, "missing_mean");
            if (m)
                memcpy(m, "missing_xxxx", 12);
            fputs(line, fo);
        }
        fclose(fi);
        RD_ASSERT(fclose(fo) == 0);
        snprintf(p, sizeof p, "%s/nofill.rdsv", dir);
        rd_errbuf_clear(&eb);
        rc = rd_serve_export(cfg, "student", ckpt, NULL, p, &eb);
        T_CHECK(&g_errs,
                rc == RD_ERR_NOTFOUND && strstr(eb.msg, "'price'") &&
                    strstr(eb.msg, RD_DATASET_META) && !exists(p),
                "mean fill not in meta.yaml: %d %s", rc, eb.msg);
        RD_ASSERT(rename(keep, meta) == 0);
    }
    snprintf(p, sizeof p, "%s/nowhere", dir);
    char q[800];
    snprintf(q, sizeof q, "%s/x.rdsv", dir);
    rd_errbuf_clear(&eb);
    rc = rd_serve_export(cfg, "student", p, NULL, q, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_NOTFOUND && !exists(q), "missing checkpoint: %d %s", rc, eb.msg);
    rd_free(other);
out:
    rd_free(recs);
    rd_free(ref);
    rd_dataset_close(ds);
}

static void session(char *dir) {
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    make_config(cfg, dir, 16);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0 && g_csv)
        write_csv(dir);
    t_prepare(cfg, 0);
    g_errs += t_train_session(MPI_COMM_WORLD, cfg, NULL, worker_checks, dir);
    t_barrier(MPI_COMM_WORLD);
    rd_free(cfg);
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 3)
        return t_mpi_refuse(rank, 1, "serve_export needs 3 ranks");
    char dir[512];
    t_tmpdir(dir, sizeof dir, "serve");
    session(dir);
    g_csv = 1; // numeric inputs, raw and stored
    session(dir);
    g_csv = 0;
    // MovieLens-100K (multi-valued genres) when the shared data is there.
    const char *shared = getenv("RD_SHARED_DATA");
    char ml[600];
    if (shared) {
        snprintf(ml, sizeof ml, "%s/movielens-100k/u.data", shared);
        if (access(ml, R_OK) == 0) {
            snprintf(ml, sizeof ml, "%s/movielens-100k", shared);
            g_ml_input = ml;
            session(dir);
        } else if (rank == 0) {
            printf("movielens-100k session skipped: no %s\n", ml);
        }
    }
    return t_end("serve_export", g_errs, dir);
}
