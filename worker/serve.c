// serve.c — serving bundle export and the scoring path (rd/serve.h).
//
// Scoring is the trainer's evaluation forward with the PS replaced by local tables: keys ->
// table keys -> per-table dedup -> rd_table_read (rows, or the deterministic initial value) ->
// rd_batch -> rd_model_forward -> logits_main. Every buffer is sized at open for
// max_candidates, so a request allocates nothing. The history is shared by the candidates of a
// request: its keys are added once per table, its row indices written once, and the forward
// runs with rd_batch.seq_shared, so its per-position work runs once for all candidates. The
// instance tokens are shared too unless the bundle searches them by item (tokens.search): they
// are picked once and the forward runs with tok_shared (the adapter over them runs once).
//
// Threads: an open bundle is two parts. The bundle proper (serve_bundle: the parameters, the
// embedding tables, the item attribute map, the layout) is built by rd_serve_open and then only
// read; every scorer of it (the opener's and its rd_serve_clone's, one per serving thread)
// holds a reference, and the last close frees it. A scorer (rd_serve) holds what a request
// writes: its model's activations (rd_model_opts.shared_params: the model reads the bundle's
// parameter slab) and its request buffers. A server of T threads thus holds the rows and the
// parameters once, and T times only the buffers of max_candidates candidates.
#include "rd/serve.h"

#include "rd/alloc.h"
#include "rd/hash.h"
#include "rd/kv.h"
#include "rd/lmdbx.h"
#include "rd/log.h"
#include "rd/model.h"
#include "rd/table.h"
#include "rd/tabletool.h"
#include "rd/tokens.h"
#include "rd/train_ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char bundle_magic[8] = {'R', 'D', 'S', 'E', 'R', 'V', 'E', '1'};

// Fuzzing builds (RD_FUZZ=ON) ignore a CRC mismatch, so that mutated bundles reach the checks
// behind it (tests/fuzz/fuzz_serve.c); never defined in a production build.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define RD__FUZZING 1
#else
#define RD__FUZZING 0
#endif

// Keys of one feature per candidate: a multi-valued schema field keeps at most max_len (1..64,
// config.c) values; every other feature has one.
#define MAX_WIDTH 64

// The read-only part of an open bundle, shared by every scorer made from it (rd_serve_open and
// the rd_serve_clone's of it): the dense parameters, the embedding rows, the item attribute map
// and the layout. Written only while rd_serve_open builds it, before any other thread can see
// it; from then on only read, by any number of serving threads at once (rd_table_read is
// side-effect free, and the scorers' models borrow the parameter slab: rd_model_opts.
// shared_params). Freed with the last scorer that holds it.
typedef struct serve_bundle {
    atomic_int refs; // scorers holding it
    char *path;      // the bundle file (messages of clones)
    rd_serve_info info;
    rd_model_config mc;
    int n_tables;
    rd_table_config tc[RD_MAX_TABLES];
    rd_table *tab[RD_MAX_TABLES];
    uint64_t table_id[RD_MAX_TABLES];
    uint32_t width[RD_MAX_FEATURES];
    size_t offset[RD_MAX_FEATURES];
    float *params; // the dense parameters (n_slab floats, 64-byte aligned)
    size_t n_slab;
    uint32_t tdim, tside; // the token store's dim and side values (the models' options)
    // Version 2: each numeric input's field and transform (rd_field_transform), for requests
    // with numeric_raw; a version-1 bundle has RD_XFORM_UNKNOWN.
    uint32_t n_inputs;
    char in_name[RD_MAX_FIELDS][RD_NAME_MAX];
    uint32_t in_xform[RD_MAX_FIELDS];
    double in_mean[RD_MAX_FIELDS], in_std[RD_MAX_FIELDS];
    // Version 3: what prepare stored for a missing value of each input (rd_missing_fill: error
    // = the row was refused, so no fill; zero, mean) and that fill before standardization; a
    // version-1 or 2 bundle has error and 0 (a raw NaN is refused, as it always was).
    uint32_t in_missing[RD_MAX_FIELDS];
    double in_fill[RD_MAX_FIELDS];
    size_t nn_model; // the model's numeric inputs: info.n_numeric + info.tok_stats
    // Version 5, tokens.search_by an item attribute: the dataset's item -> value map.
    rd_item_attr attr;
} serve_bundle;

// One serving thread's scorer: the shared bundle, and everything a request writes.
struct rd_serve {
    serve_bundle *sh; // shared, read-only
    rd_model *m;      // the model's activations for max_n candidates over sh->params
    size_t max_n;
    // Request buffers (max_n candidates).
    size_t cap[RD_MAX_TABLES];
    uint64_t *raw[RD_MAX_TABLES];
    uint64_t *uniq[RD_MAX_TABLES];
    uint32_t *inv[RD_MAX_TABLES];
    float *vals[RD_MAX_TABLES];
    int32_t *fidx[RD_MAX_FEATURES];
    int32_t *sidx; // (L) the history's row indices: every candidate reads it (seq_shared)
    uint8_t *slab; // (L)
    int32_t *hpos; // (L) history positions in raw
    float *labels; // (max_n) zeros: the forward wants labels
    float *numbuf; // (max_n, nn_model): raw inputs transformed, then the token summaries
    // Version 4, the token branch: each candidate's picked tokens as the model reads them (most
    // recent first, padding after), and rd_serve_fetch_tokens' buffers (tok_pool tokens). Without
    // tokens.search every candidate reads the same tokens: one row (tok_rows = 1, tok_shared).
    size_t tok_rows;           // max_n with tok_search, else 1
    float *tk;                 // (tok_rows, tok_length, tok_dim)
    uint8_t *tk_mask, *tk_lab; // (tok_rows, tok_length)
    float *tk_side;            // (tok_rows, tok_length, tok_side) or NULL
    float *f_tok, *f_lab, *f_side;
    uint64_t *f_item;
    // tokens.search_by an item attribute: the request's token item keys turned into the values
    // the search compares (tok_pool).
    uint64_t *f_key;
    void *scratch;
    size_t scratch_bytes;
    // rd_serve_request_from_dataset's item means (seq.stats_residual), built at first use for
    // the dataset it was given; mutable behind the const rd_serve of that call.
    struct stats_cache {
        const rd_dataset *ds;
        uint32_t records_crc;
        float *item_mean;
    } * cache;
};

// ---------------------------------------------------------------------------------------------
// Non-finite values (a checkpoint written as training diverged, or a file rewritten by hand)
// would make every score NaN with RD_OK. Export refuses to write them and open refuses to load
// them, with the same message: `where` is the checkpoint (export) or the bundle (open), `origin`
// what held the values.

// Every dense parameter of m. @return RD_OK or RD_ERR_CORRUPT naming the tensor and index
static int
check_dense_finite(const rd_model *m, const char *where, const char *origin, rd_errbuf *eb) {
    for (int i = 0; i < m->n_tensors; i++) {
        const rd_model_tensor *tt = &m->tensors[i];
        for (size_t k = 0; k < tt->n; k++)
            if (!isfinite(m->params[tt->offset + k]))
                return rd_err_set(eb, RD_ERR_CORRUPT,
                                  "%s: dense parameter %s[%zu] is %g: %s had diverged", where,
                                  tt->name, k, (double)m->params[tt->offset + k], origin);
    }
    return RD_OK;
}

// Row `i` (its place in the table's rows) of `table`, key `key`: row is (dim).
// @return RD_OK or RD_ERR_CORRUPT naming the table, row, key and value index
static int check_row_finite(const char *where,
                            const char *table,
                            uint64_t i,
                            uint64_t key,
                            const float *row,
                            size_t dim,
                            const char *origin,
                            rd_errbuf *eb) {
    for (size_t k = 0; k < dim; k++)
        if (!isfinite(row[k]))
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "%s: table %s row %llu (key %016llx): value %zu is %g: %s had "
                              "diverged",
                              where, table, (unsigned long long)i, (unsigned long long)key, k,
                              (double)row[k], origin);
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Export

typedef struct obuf {
    unsigned char *p;
    size_t len, cap;
} obuf;

static void out_put(obuf *o, const void *v, size_t n) {
    if (o->len + n > o->cap) {
        while (o->len + n > o->cap)
            o->cap = o->cap ? 2 * o->cap : 1 << 16;
        o->p = rd_xrealloc(o->p, o->cap);
    }
    memcpy(o->p + o->len, v, n);
    o->len += n;
}
#define OUT(o, v) out_put((o), &(v), sizeof(v))

// A table row of a checkpoint: its key, and where it is (shard, index in the shard's table).
typedef struct row_ref {
    uint64_t key;
    uint32_t shard;
    size_t index;
} row_ref;

static int row_ref_cmp(const void *a, const void *b) {
    uint64_t x = ((const row_ref *)a)->key, y = ((const row_ref *)b)->key;
    return (x > y) - (x < y);
}

int rd_serve_export(const rd_config *cfg,
                    const char *job,
                    const char *ckpt_dir,
                    const char *dataset_dir,
                    const char *out,
                    rd_errbuf *eb) {
    rd_errbuf_clear(eb); // each call's message is its own (rd_err_set keeps the first one)
    // A NULL config or job read as "no job named '(null)'", and a NULL checkpoint folder or
    // output reached the file calls: the caller's mistake, said as such.
    RD_ARG_CHECK(eb, cfg != NULL);
    RD_ARG_CHECK(eb, job != NULL);
    RD_ARG_CHECK(eb, ckpt_dir != NULL);
    RD_ARG_CHECK(eb, out != NULL);
    const rd_job_config *jc = rd_config_find_job(cfg, job);
    if (!jc)
        return rd_err_set(eb, RD_ERR_NOTFOUND, "no job named '%s' in the config", job);
    const rd_model_config *mc = rd_config_find_model(cfg, jc->model);
    if (!mc)
        return rd_err_set(eb, RD_ERR_NOTFOUND, "job '%s': no model named '%s'", job, jc->model);
    struct stat st;
    if (stat(out, &st) == 0)
        return rd_err_set(eb, RD_ERR_EXISTS, "%s exists: give a new file name", out);
    rd_dataset *ds = NULL;
    rd_model *m = NULL;
    rd_tabletool *tt = NULL;
    obuf o = {0};
    row_ref *order = NULL;
    rd_item_attr attr = {0};
    int rc =
        rd_dataset_open(dataset_dir ? dataset_dir : cfg->data.dir, RD_DATASET_NOVERIFY, &ds, eb);
    if (rc != RD_OK)
        goto done;
    const rd_dataset_info *di = rd_dataset_get_info(ds);
    const char *data_dir = dataset_dir ? dataset_dir : cfg->data.dir;
    // 1. The checkpoint's record: the model and tables of this config (the config hash, naming
    // the part that differs) and the dataset it was trained on. The bundle carries the
    // dataset's vocabularies and numeric standardisation, so it must be exported with the
    // training data: other data (another period of the log, another split) would serve with
    // transforms the model never saw.
    rd_train_pos pos, run;
    memset(&run, 0, sizeof run);
    snprintf(run.model, sizeof run.model, "%s", mc->name);
    rd_train_ckpt_ident(cfg, jc, mc, di, 0, &run);
    if ((rc = rd_train_ckpt_read_pos(ckpt_dir, &pos, eb)) != RD_OK)
        goto done;
    if (strcmp(pos.job, job) != 0) {
        rc = rd_err_set(eb, RD_ERR_SCHEMA, "%s is a checkpoint of job '%s', not '%s'", ckpt_dir,
                        pos.job, job);
        goto done;
    }
    if ((rc = rd_train_ckpt_check(ckpt_dir, &pos, &run, data_dir, RD_TRAIN_CKPT_CHECK_CONFIG,
                                  eb)) != RD_OK)
        goto done;
    // A folder prepared from another data configuration (another split, other events) is
    // refused as train refuses to train on it; then the data must be the checkpoint's own.
    if ((rc = rd_dataset_check_config(data_dir, &cfg->data, pos.seed, eb)) != RD_OK) {
        // Its advice is train's, which prepares the folder again; export only reads it (and
        // removing another run's dataset on that advice lost it).
        char *adv = eb ? strstr(eb->msg, "; remove the folder to prepare it again") : NULL;
        if (adv)
            snprintf(adv, sizeof eb->msg - (size_t)(adv - eb->msg),
                     "; export reads the dataset the checkpoint was trained on: give --data "
                     "that folder (or --run, the run folder of `train --out`)");
        goto done;
    }
    if ((rc = rd_train_ckpt_check(ckpt_dir, &pos, &run, data_dir, RD_TRAIN_CKPT_CHECK_DATA, eb)) !=
        RD_OK)
        goto done;
    if (!pos.has_ident)
        RD_LOG_WARN("export: %s does not record its training dataset (dense.bin version 1 of an "
                    "older build, or a file written without it), so %s cannot be checked against "
                    "it; make sure "
                    "it is the data the model was trained on",
                    ckpt_dir, data_dir);
    // The token store the model read: the bundle records its id, dim and side values, and a
    // serving process reads its tokens from that store (rd_serve_fetch_tokens refuses another).
    rd_token_store_info tsi;
    memset(&tsi, 0, sizeof tsi);
    const size_t tok_side = mc->tokens.scheme > 0 ? (size_t)rd_tokens_side_width(&cfg->tokens) : 0;
    if (mc->tokens.scheme > 0) {
        if ((rc = rd_token_store_read_manifest(cfg->tokens.store_dir, &tsi, eb)) != RD_OK) {
            rd_err_prefix(eb,
                          "model '%s' reads instance tokens, and its store (tokens.store_dir; "
                          "--run DIR moves it with the run): ",
                          mc->name);
            goto done;
        }
        if ((int)tsi.dim != cfg->tokens.dim || tsi.n_side != tok_side) {
            rc = rd_err_set(eb, RD_ERR_SCHEMA,
                            "token store %s holds tokens of dim %u with %u side values, the "
                            "config's tokens.dim is %d with %zu (tokens.side)",
                            cfg->tokens.store_dir, tsi.dim, tsi.n_side, cfg->tokens.dim, tok_side);
            goto done;
        }
    }
    const size_t tok_stats =
        mc->tokens.scheme > 0 ? rd_token_summary_width(mc->tokens.n_stats, tok_side) : 0;
    // A token search by an attribute of the item (a series, a category) compares the values of
    // the dataset's item -> value map, which the bundle carries: the trainer built it from the
    // same dataset (rd_dataset_item_attr), so a candidate picks the tokens training picked.
    if (mc->tokens.scheme > 0 && mc->tokens.search && !rd_field_is_item(mc->tokens.search_by)) {
        char who[RD_NAME_MAX + 40];
        snprintf(who, sizeof who, "model '%s': tokens.search_by", mc->name);
        if ((rc = rd_dataset_item_attr(ds, mc->tokens.search_by, who, &attr, eb)) != RD_OK)
            goto done;
    }
    // 2. The model, its dense parameters from the checkpoint.
    rd_model_opts mo = {.tables = cfg->ps.tables,
                        .n_tables = cfg->ps.n_tables,
                        .max_batch = 1,
                        .n_numeric =
                            rd_dataset_n_inputs(di) + rd_history_stats_width(&mc->seq) + tok_stats,
                        .token_dim = (size_t)cfg->tokens.dim,
                        .token_side = tok_side,
                        .opt_slots = 0,
                        .seed = 1};
    if ((rc = rd_model_create(mc, &mo, &m, eb)) != RD_OK)
        goto done;
    if ((rc = rd_train_ckpt_read_dense(ckpt_dir, run.config_hash, &pos, m, NULL, eb)) != RD_OK)
        goto done;
    // Only the main tower serves: zero the auxiliary tower.
    for (int i = 0; i < m->n_tensors; i++)
        if (strncmp(m->tensors[i].name, "tower_aux", 9) == 0)
            memset(m->params + m->tensors[i].offset, 0, m->tensors[i].n * sizeof(float));
    // A bundle open would refuse (a checkpoint written as training diverged) is not written.
    if ((rc = check_dense_finite(m, ckpt_dir, "the checkpoint", eb)) != RD_OK)
        goto done;
    uint32_t width[RD_MAX_FEATURES];
    char who[RD_NAME_MAX + 16];
    snprintf(who, sizeof who, "model '%s'", mc->name);
    for (int f = 0; f < m->n_features; f++) {
        rd_feature_src at;
        if ((rc = rd_dataset_feature_src(ds, m->features[f].field, who, &at, eb)) != RD_OK)
            goto done;
        width[f] = at.width;
    }
    // 3. The PS rows of the model's tables.
    if ((rc = rd_tabletool_open(ckpt_dir, &tt, eb)) != RD_OK)
        goto done;
    int ti[RD_MAX_TABLES];
    const rd_ckpt_manifest *man = rd_tabletool_manifest(tt);
    for (int t = 0; t < m->n_tables; t++) {
        if ((ti[t] = rd_tabletool_find(tt, m->tables[t].name)) < 0) {
            rc = rd_err_set(eb, RD_ERR_NOTFOUND, "%s: no table '%s' (model '%s' reads it)",
                            ckpt_dir, m->tables[t].name, mc->name);
            goto done;
        }
        // The config hash covers dense.bin only: the shards beside it may hold tables of the
        // same name and another dim, whose rows would be copied at the model's width.
        if (man->tables[ti[t]].dim != m->tables[t].dim) {
            rc = rd_err_set(eb, RD_ERR_SCHEMA,
                            "%s: table '%s' is dim %u in the checkpoint, model '%s' reads dim %zu",
                            ckpt_dir, m->tables[t].name, man->tables[ti[t]].dim, mc->name,
                            m->tables[t].dim);
            goto done;
        }
    }
    // 4. The bundle.
    uint32_t version = RD_SERVE_VERSION, mcs = sizeof(rd_model_config),
             tcs = sizeof(rd_table_config), nt = (uint32_t)m->n_tables;
    // The export time, or SOURCE_DATE_EPOCH when set (the reproducible-builds convention): two
    // exports of one checkpoint are then the same bytes, whenever they run.
    int64_t created = (int64_t)time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde != NULL) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(sde, &end, 10);
        // Digits only: strtoll also skips leading white space of every kind (a tab, a newline)
        // and takes a sign.
        if (errno != 0 || end == sde || *end != '\0' || v < 0 || sde[0] < '0' || sde[0] > '9') {
            rc = rd_err_set(eb, RD_ERR_ARG,
                            "SOURCE_DATE_EPOCH='%s' is not a non-negative count of seconds "
                            "since 1970 (unset it, or give e.g. SOURCE_DATE_EPOCH=1700000000)",
                            sde);
            goto done;
        }
        created = (int64_t)v;
    }
    char name[RD_NAME_MAX];
    out_put(&o, bundle_magic, 8);
    OUT(&o, version);
    OUT(&o, mcs);
    OUT(&o, tcs);
    OUT(&o, nt);
    OUT(&o, run.config_hash);
    OUT(&o, pos.step);
    OUT(&o, cfg->run.seed);
    OUT(&o, created);
    memset(name, 0, sizeof name);
    snprintf(name, sizeof name, "%s", job);
    out_put(&o, name, sizeof name);
    memset(name, 0, sizeof name);
    snprintf(name, sizeof name, "%s", mc->name);
    out_put(&o, name, sizeof name);
    out_put(&o, mc, sizeof *mc);
    for (int t = 0; t < m->n_tables; t++) {
        rd_table_config tc = cfg->ps.tables[m->tables[t].ps_index];
        tc.optim.kind = RD_OPT_SGD;
        out_put(&o, &tc, sizeof tc);
    }
    // nn: the model's numeric inputs, the token summaries last (the scorer computes those).
    uint32_t nf = (uint32_t)m->n_features, nn = rd_dataset_n_inputs(di) +
                                                (uint32_t)rd_history_stats_width(&mc->seq) +
                                                (uint32_t)tok_stats;
    OUT(&o, nf);
    out_put(&o, width, nf * sizeof width[0]);
    OUT(&o, nn);
    // Version 2: the dataset's numeric inputs (numeric index order) and how the dataset turned
    // a raw value into the stored one, so a client can send raw values (numeric_raw).
    uint32_t n_in = rd_dataset_n_inputs(di);
    OUT(&o, n_in);
    for (uint32_t j = 0; j < n_in; j++) {
        const rd_dataset_field *fd = NULL, *all = rd_dataset_fields(ds);
        for (uint32_t f = 0; f < di->n_fields && !fd; f++)
            if (all[f].kind == RD_FIELD_NUMERIC && all[f].offset == j)
                fd = &all[f];
        if (!fd) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: no numeric field at input index %u",
                            dataset_dir ? dataset_dir : cfg->data.dir, j);
            goto done;
        }
        memset(name, 0, sizeof name);
        snprintf(name, sizeof name, "%s", fd->name);
        out_put(&o, name, sizeof name);
        uint32_t xf = fd->transform;
        double mean = fd->mean, sd = fd->std;
        OUT(&o, xf);
        OUT(&o, mean);
        OUT(&o, sd);
        // Version 3: the field's missing mode (the config's schema field of that name; a preset
        // such as MovieLens has none, so error) and its fill as the dataset stored it before
        // standardization: 0 for zero (the raw 0: log1p is not applied to it), the batch
        // period's mean of the stored values for mean, which only meta.yaml records.
        uint32_t miss = RD_MISSING_ERROR;
        double fill = 0.0;
        for (int f = 0; f < cfg->data.schema.n_fields; f++)
            if (strcmp(cfg->data.schema.fields[f].name, fd->name) == 0)
                miss = (uint32_t)cfg->data.schema.fields[f].missing;
        if (xf & RD_XFORM_UNKNOWN) // a version-1 dataset: raw values are not served at all
            miss = RD_MISSING_ERROR;
        if (miss > RD_MISSING_MEAN) {
            rc = rd_err_set(eb, RD_ERR_CONFIG, "data.schema field '%s': missing mode %u", fd->name,
                            miss);
            goto done;
        }
        if (miss == RD_MISSING_MEAN) {
            rd_errbuf leb;
            rd_errbuf_clear(&leb);
            int r2 = rd_dataset_missing_mean(data_dir, fd->name, &fill, &leb);
            if (r2 != RD_OK) {
                rc = rd_err_set(eb, r2,
                                "export: numeric input '%s' has `missing: mean`, but its fill "
                                "cannot be read: %s",
                                fd->name, leb.msg);
                goto done;
            }
        }
        OUT(&o, miss);
        OUT(&o, fill);
    }
    // The job's own negative sampling (cluster.jobs[].negatives) leaves its logits in the
    // sampled space: the prior correction log(rate / pos_rate), added to every served logit.
    float shift = (float)log(jc->negatives.rate / jc->negatives.pos_rate);
    OUT(&o, shift);
    // Version 4: the token store (all 0 without a token branch).
    uint32_t tdim = mc->tokens.scheme > 0 ? tsi.dim : 0, tside = (uint32_t)tok_side;
    uint64_t tid = mc->tokens.scheme > 0 ? tsi.store_id : 0;
    OUT(&o, tdim);
    OUT(&o, tside);
    OUT(&o, tid);
    uint64_t n_slab = m->n_slab, n_params = m->n_params;
    OUT(&o, n_slab);
    OUT(&o, n_params);
    out_put(&o, m->params, m->n_slab * sizeof(float));
    // Each table's rows in key order, whichever shard holds them: a bundle is then the same
    // bytes whatever the training run's PS count (rows sharded by key over 1 or 4 ranks).
    for (int t = 0; t < m->n_tables; t++) {
        uint64_t rows = 0;
        for (uint32_t s = 0; s < man->n_shards; s++)
            rows += rd_table_size(rd_tabletool_table(tt, (int)s, ti[t]));
        OUT(&o, rows);
        rd_free(order);
        order = rows ? rd_malloc((size_t)rows * sizeof *order) : NULL;
        if (rows && !order) {
            rc = rd_err_set(eb, RD_ERR_NOMEM, "export: out of memory ordering %llu rows of '%s'",
                            (unsigned long long)rows, m->tables[t].name);
            goto done;
        }
        size_t k = 0;
        for (uint32_t s = 0; s < man->n_shards; s++) {
            const rd_table *tab = rd_tabletool_table(tt, (int)s, ti[t]);
            for (size_t i = 0; i < rd_table_size(tab); i++, k++) {
                rd_table_row_at(tab, i, &order[k].key, NULL, NULL);
                order[k].shard = s;
                order[k].index = i;
            }
        }
        if (k > 1) // order is NULL for a table of no rows, which qsort must not be given
            qsort(order, k, sizeof *order, row_ref_cmp);
        for (uint64_t r = 0; r < rows; r++) { // r: the row's place in the bundle, as open counts
            const rd_table *tab = rd_tabletool_table(tt, (int)order[r].shard, ti[t]);
            uint64_t key;
            const float *row = rd_table_row_at(tab, order[r].index, &key, NULL, NULL);
            if ((rc = check_row_finite(ckpt_dir, m->tables[t].name, r, key, row, m->tables[t].dim,
                                       "the checkpoint", eb)) != RD_OK)
                goto done;
            OUT(&o, key);
            out_put(&o, row, m->tables[t].dim * sizeof(float));
        }
    }
    // Version 5: the item attribute map of tokens.search_by (0 items without one).
    uint64_t n_attr = attr.n;
    OUT(&o, n_attr);
    for (size_t k = 0; k < attr.n; k++) {
        OUT(&o, attr.item_key[k]);
        OUT(&o, attr.value[k]);
    }
    uint32_t crc = rd_crc32c(0, o.p, o.len);
    OUT(&o, crc);
    rc = rd_lmdbx_write_file_new(out, o.p, o.len, eb); // two exports into one path: one fails
done:
    rd_item_attr_free(&attr);
    rd_free(order);
    rd_free(o.p);
    rd_tabletool_close(tt);
    rd_model_destroy(m);
    rd_dataset_close(ds);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Open / close

// The bundle file, read in order through a buffer of IBUF_CHUNK bytes. It was read whole first,
// and its rows were parsed into the tables from that copy: a peak of the file and the tables at
// once (131 MB to hold 91, a bundle of 40 MB and a million rows: docs/tools.md). The first pass
// (open_file) only checks the CRC; this second one parses, and sums the CRC of what it reads
// again, so that a file changed between the two passes is refused, not half-trusted.
#define IBUF_CHUNK ((size_t)1 << 16)

typedef struct ibuf {
    FILE *f;
    unsigned char *chunk; // (IBUF_CHUNK) bytes read from f: [pos, end) not taken yet
    size_t pos, end;
    size_t len, off; // bytes to take (the file less its CRC), bytes taken
    size_t got;      // bytes read from f (<= len)
    uint32_t crc;    // CRC-32C of the bytes read
    int bad;
} ibuf;

static void in_get(ibuf *b, void *v, size_t n) {
    if (b->bad || b->len - b->off < n) {
        b->bad = 1;
        memset(v, 0, n);
        return;
    }
    unsigned char *d = v;
    size_t left = n;
    while (left) {
        if (b->pos == b->end) {
            size_t want = b->len - b->got < IBUF_CHUNK ? b->len - b->got : IBUF_CHUNK;
            if (want == 0 || fread(b->chunk, 1, want, b->f) != want) {
                b->bad = 1;
                memset(v, 0, n);
                return;
            }
            b->crc = rd_crc32c(b->crc, b->chunk, want);
            b->got += want;
            b->pos = 0;
            b->end = want;
        }
        size_t k = b->end - b->pos < left ? b->end - b->pos : left;
        memcpy(d, b->chunk + b->pos, k);
        b->pos += k;
        d += k;
        left -= k;
    }
    b->off += n;
}
#define IN(b, v) in_get((b), &(v), sizeof(v))

// A bundle stores rd_model_config as this build lays it out. Members added since bundles were
// first written, oldest first, at their offset in this build's layout: a bundle of an earlier
// build holds the struct without the members added after it, and each reads as 0 (its default;
// they are training or token settings, which serving does not use). A member added to
// rd_model_config (or to a struct inside it) is appended here. Every member is 4-byte aligned,
// so taking one out moves the rest by its size and changes no padding.
typedef struct mc_member {
    size_t off, len;
} mc_member;
static const mc_member mc_added[] = {
    {offsetof(rd_model_config, dropout), sizeof(float)}, // models[].dropout
    // models[].tokens.query
    {offsetof(rd_model_config, tokens) + offsetof(rd_token_use, query), sizeof(int)},
    // models[].tokens.label
    {offsetof(rd_model_config, tokens) + offsetof(rd_token_use, label), sizeof(int)},
};
#define N_MC_ADDED ((int)(sizeof mc_added / sizeof mc_added[0]))
_Static_assert(_Alignof(rd_model_config) == sizeof(int) && sizeof(float) == sizeof(int),
               "rd_model_config: bundles of earlier builds are read by taking 4-byte members out");

// The layout of a bundle's model config of mcs bytes: how many members of mc_added it has (the
// oldest ones), or -1 when mcs is no layout this build knows.
static int mc_layout(uint32_t mcs) {
    size_t size = sizeof(rd_model_config);
    int present = N_MC_ADDED;
    while (size != mcs && present > 0)
        size -= mc_added[--present].len;
    return size == mcs ? present : -1;
}

// Read a bundle's model config of layout `present` (mc_layout) into *mc, in this build's layout.
static void get_model_config(ibuf *b, rd_model_config *mc, int present) {
    memset(mc, 0, sizeof *mc);
    // Copy around the absent members mc_added[present..], in the order they sit in the struct.
    size_t pos = 0;
    for (;;) {
        const mc_member *next = NULL;
        for (int i = present; i < N_MC_ADDED; i++)
            if (mc_added[i].off >= pos && (!next || mc_added[i].off < next->off))
                next = &mc_added[i];
        if (!next)
            break;
        in_get(b, (char *)mc + pos, next->off - pos);
        pos = next->off + next->len;
    }
    in_get(b, (char *)mc + pos, sizeof *mc - pos);
}

// Drop one scorer's hold on the bundle; the last one frees it. Any thread, in any order.
static void bundle_release(serve_bundle *sh) {
    if (!sh || atomic_fetch_sub_explicit(&sh->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int t = 0; t < RD_MAX_TABLES; t++)
        rd_table_destroy(sh->tab[t]);
    rd_item_attr_free(&sh->attr);
    rd_aligned_free(sh->params);
    rd_free(sh->path);
    rd_free(sh);
}

// A scorer's own buffers (not the bundle).
static void scorer_free(rd_serve *s) {
    if (!s)
        return;
    if (s->cache)
        rd_free(s->cache->item_mean);
    rd_free(s->cache);
    for (int t = 0; t < RD_MAX_TABLES; t++) {
        rd_free(s->raw[t]);
        rd_free(s->uniq[t]);
        rd_free(s->inv[t]);
        rd_free(s->vals[t]);
    }
    for (int f = 0; f < RD_MAX_FEATURES; f++)
        rd_free(s->fidx[f]);
    rd_free(s->sidx);
    rd_free(s->slab);
    rd_free(s->hpos);
    rd_free(s->labels);
    rd_free(s->numbuf);
    rd_free(s->tk);
    rd_free(s->tk_mask);
    rd_free(s->tk_lab);
    rd_free(s->tk_side);
    rd_free(s->f_tok);
    rd_free(s->f_lab);
    rd_free(s->f_item);
    rd_free(s->f_side);
    rd_free(s->f_key);
    rd_free(s->scratch);
    rd_model_destroy(s->m);
    rd_free(s);
}

void rd_serve_close(rd_serve *s) {
    if (!s)
        return;
    serve_bundle *sh = s->sh;
    scorer_free(s);
    bundle_release(sh);
}

// Open the bundle at `path` for reading (*fp, its size in *len) and check its CRC: the CRC-32C
// of its bytes but the last 4 in *computed, those 4 in *stored. The file is read in chunks of
// `chunk` (IBUF_CHUNK bytes) and left at its start.
static int open_file(const char *path,
                     unsigned char *chunk,
                     FILE **fp,
                     size_t *len,
                     uint32_t *computed,
                     uint32_t *stored,
                     rd_errbuf *eb) {
    // O_NONBLOCK: a FIFO (or a device) must not block a serving process in open(); anything but
    // a regular file is refused by its kind (a folder was "short read").
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return rd_err_set(eb, errno == ENOENT ? RD_ERR_NOTFOUND : RD_ERR_IO, "%s: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rd_err_set(eb, RD_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        int dir = S_ISDIR(st.st_mode);
        close(fd);
        return rd_err_set(eb, RD_ERR_IO, "%s: not a regular file (%s): a serving bundle is a file",
                          path, dir ? "a folder" : "a FIFO, socket or device");
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return rd_err_set(eb, RD_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (st.st_size < 16) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: too short to be a serving bundle", path);
    }
    // A bundle's rows take at least their bytes in memory once opened: a larger file cannot be
    // opened, and is refused before it is read (a 2 TiB sparse file was refused as out of memory
    // when the file was loaded whole; read in chunks, serve_export_n3 timed out reading it).
    const char *whose = NULL;
    unsigned long long lim = rd_mem_limit(&whose);
    if (lim > 0 && (unsigned long long)st.st_size > lim) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_NOMEM,
                          "%s: %lld bytes, more than %s (%.1f GiB): its rows cannot be held", path,
                          (long long)st.st_size, whose, (double)lim / 1073741824.0);
    }
    *len = (size_t)st.st_size;
    uint32_t crc = 0;
    unsigned char tail[4];
    int bad = 0;
    for (size_t at = 0; at < *len - 4 && !bad;) {
        size_t want = *len - 4 - at < IBUF_CHUNK ? *len - 4 - at : IBUF_CHUNK;
        bad = fread(chunk, 1, want, f) != want;
        crc = rd_crc32c(crc, chunk, want);
        at += want;
    }
    if (bad || fread(tail, 1, 4, f) != 4 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_IO, "%s: short read", path);
    }
    *computed = crc;
    memcpy(stored, tail, 4);
    *fp = f;
    return RD_OK;
}

// One request buffer of rd_serve_open: NULL, with *failed set to its size, when it cannot be
// allocated; once one has failed the rest are not tried.
static void *req_alloc(size_t *failed, size_t bytes) {
    if (*failed)
        return NULL;
    void *p = rd_malloc(bytes ? bytes : 1);
    if (!p)
        *failed = bytes ? bytes : 1;
    return p;
}

// A scorer of bundle sh for up to max_candidates candidates: its model (activations only, over
// sh->params; m0 when given, built for max_candidates, which the scorer takes over either way)
// and its request buffers. Reads sh, never writes it (the caller holds a reference, which the
// scorer takes over on success). @return RD_OK, RD_ERR_CONFIG or RD_ERR_NOMEM
static int scorer_create(
    serve_bundle *sh, size_t max_candidates, rd_model *m0, rd_serve **out, rd_errbuf *eb) {
    const char *path = sh->path;
    const rd_serve_info *in = &sh->info;
    rd_serve *s = rd_xcalloc(1, sizeof *s);
    s->cache = rd_xcalloc(1, sizeof *s->cache);
    s->max_n = max_candidates;
    rd_model_opts mo = {.tables = sh->tc,
                        .n_tables = sh->n_tables,
                        .max_batch = max_candidates,
                        .n_numeric = sh->nn_model,
                        .token_dim = sh->tdim,
                        .token_side = sh->tside,
                        .opt_slots = 0,
                        .quiet = 1, // a serving process's stderr is not ours to write
                        .batch_knob = "max_candidates (the largest request this server sends)",
                        .shared_params = sh->params};
    s->m = m0;
    int rc = m0 ? RD_OK : rd_model_create(&sh->mc, &mo, &s->m, eb);
    if (rc != RD_OK) {
        rd_err_prefix(eb, "%s: ", path);
        scorer_free(s);
        return rc;
    }
    const rd_model *m = s->m;
    const int tok_on = in->tok_length > 0;
    const int attr_on = tok_on && in->tok_search && sh->attr.n > 0;
    const size_t K = in->keys_per_candidate, nn = sh->nn_model;
    const uint32_t tdim = sh->tdim, tside = sh->tside;
    // Request buffers. Fallible, as the model's slabs are: their size grows with max_candidates
    // times the keys per candidate (a wide multi-valued feature), and a failed allocation is
    // RD_ERR_NOMEM naming max_candidates, never an abort of the serving process.
    size_t failed = 0; // bytes of the first allocation that failed
    const size_t L = in->hist_len, N = max_candidates;
    size_t cap_max = 1;
    for (int t = 0; t < m->n_tables; t++) {
        size_t per = 0;
        for (int f = 0; f < m->n_features; f++)
            if (m->features[f].table == t)
                per += sh->width[f];
        s->cap[t] = per * N + (m->seq_table == t ? L : 0) + 1;
        if (s->cap[t] > cap_max)
            cap_max = s->cap[t];
        s->raw[t] = req_alloc(&failed, s->cap[t] * sizeof(uint64_t));
        s->uniq[t] = req_alloc(&failed, s->cap[t] * sizeof(uint64_t));
        s->inv[t] = req_alloc(&failed, s->cap[t] * sizeof(uint32_t));
        s->vals[t] = req_alloc(&failed, s->cap[t] * m->tables[t].dim * sizeof(float));
    }
    for (int f = 0; f < m->n_features; f++)
        s->fidx[f] = req_alloc(&failed, N * sh->width[f] * sizeof(int32_t));
    if (L) {
        s->sidx = req_alloc(&failed, L * sizeof(int32_t));
        s->slab = req_alloc(&failed, L);
        s->hpos = req_alloc(&failed, L * sizeof(int32_t));
    }
    s->labels = req_alloc(&failed, N * sizeof(float));
    if (s->labels)
        memset(s->labels, 0, N * sizeof(float)); // the forward wants labels
    if (nn)
        s->numbuf = req_alloc(&failed, N * nn * sizeof(float));
    if (tok_on) {
        const size_t Lt = in->tok_length, P = in->tok_pool, d = tdim, S = tside;
        s->tok_rows = in->tok_search ? N : 1;
        const size_t Nt = s->tok_rows;
        // Each candidate's tokens, as the model's activations are checked (rd_model_create):
        // beyond the node's memory is an error naming max_candidates, not an abort.
        const char *whose = NULL;
        double need = (double)Nt * (double)Lt * (4.0 * (double)(d + S) + 2.0) +
                      (double)P * (4.0 * (double)(d + S) + 12.0),
               phys = (double)rd_mem_limit(&whose);
        if (phys > 0 && need > phys) {
            rc = rd_err_set(eb, RD_ERR_NOMEM,
                            "%s: the token inputs of %zu candidates (%zu tokens of %u values "
                            "each) need %.1f GiB, more than %s (%.1f GiB): lower max_candidates",
                            path, N, Lt, tdim, need / 1073741824.0, whose, phys / 1073741824.0);
            scorer_free(s);
            return rc;
        }
        s->tk = req_alloc(&failed, Nt * Lt * d * sizeof(float));
        s->tk_mask = req_alloc(&failed, Nt * Lt);
        s->tk_lab = req_alloc(&failed, Nt * Lt);
        s->tk_side = S ? req_alloc(&failed, Nt * Lt * S * sizeof(float)) : NULL;
        s->f_tok = req_alloc(&failed, P * d * sizeof(float));
        s->f_lab = req_alloc(&failed, P * sizeof(float));
        s->f_item = req_alloc(&failed, P * sizeof(uint64_t));
        s->f_side = S ? req_alloc(&failed, P * S * sizeof(float)) : NULL;
        if (attr_on)
            s->f_key = req_alloc(&failed, P * sizeof(uint64_t));
    }
    s->scratch_bytes = rd_kv_dedup_scratch_bytes(cap_max);
    s->scratch = req_alloc(&failed, s->scratch_bytes);
    if (failed) {
        rc = rd_err_set(eb, RD_ERR_NOMEM,
                        "%s: out of memory for the request buffers of %zu candidates (an "
                        "allocation of %zu bytes failed; %zu keys per candidate): lower "
                        "max_candidates (the largest request this server sends)",
                        path, N, failed, K);
        scorer_free(s);
        return rc;
    }
    s->sh = sh;
    *out = s;
    return RD_OK;
}

// A request's key slots (every candidate's keys of one table, then the history's) are numbered
// by int32 (the positions, then the row indices the model gathers with): refused before anything
// is sized from max_candidates N, where they could pass INT32_MAX (2048 keys a candidate at 2^20
// candidates). K: the keys of a candidate, over all tables together; L: the history's keys.
static int key_slots_check(const char *path, size_t K, size_t L, size_t N, rd_errbuf *eb) {
    if (K * N + L <= (size_t)INT32_MAX) // K <= RD_MAX_FEATURES * MAX_WIDTH, N <= 2^20: no overflow
        return RD_OK;
    return rd_err_set(eb, RD_ERR_ARG,
                      "%s: max_candidates %zu x %zu keys a candidate + %zu history keys = %zu key "
                      "slots a request, more than the 2^31 - 1 its int32 key indices hold: at "
                      "most %zu candidates with this bundle",
                      path, N, K, L, K * N + L, ((size_t)INT32_MAX - L) / K);
}

int rd_serve_clone(const rd_serve *s, size_t max_candidates, rd_serve **out, rd_errbuf *eb) {
    rd_errbuf_clear(eb); // each call's message is its own (rd_err_set keeps the first one)
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, s != NULL);
    if (max_candidates == 0)
        max_candidates = s->max_n;
    if (max_candidates > ((size_t)1 << 20))
        return rd_err_set(eb, RD_ERR_ARG, "max_candidates %zu outside 1..2^20", max_candidates);
    // The new scorer's reference, taken before it exists: s holds one, so the bundle stays.
    serve_bundle *sh = s->sh;
    int rc = key_slots_check(sh->path, sh->info.keys_per_candidate, sh->info.hist_len,
                             max_candidates, eb);
    if (rc != RD_OK)
        return rc;
    atomic_fetch_add_explicit(&sh->refs, 1, memory_order_relaxed);
    rc = scorer_create(sh, max_candidates, NULL, out, eb);
    if (rc != RD_OK)
        bundle_release(sh);
    return rc;
}

int rd_serve_open(const char *path, size_t max_candidates, rd_serve **out, rd_errbuf *eb) {
    rd_errbuf_clear(eb); // each call's message is its own (rd_err_set keeps the first one)
    if (!out)
        return rd_err_set(eb, RD_ERR_ARG, "rd_serve_open: out is NULL");
    *out = NULL;
    if (!path)
        return rd_err_set(eb, RD_ERR_ARG, "rd_serve_open: path is NULL");
    if (max_candidates == 0 || max_candidates > ((size_t)1 << 20))
        return rd_err_set(eb, RD_ERR_ARG, "max_candidates %zu outside 1..2^20", max_candidates);
    unsigned char *chunk = rd_malloc(IBUF_CHUNK);
    if (!chunk)
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: no memory to read it", path);
    FILE *file = NULL;
    size_t len = 0;
    uint32_t crc_file = 0, crc = 0;
    int rc = open_file(path, chunk, &file, &len, &crc_file, &crc, eb);
    if (rc != RD_OK) {
        rd_free(chunk);
        return rc;
    }
    serve_bundle *sh = rd_xcalloc(1, sizeof *sh);
    atomic_init(&sh->refs, 1);
    sh->path = rd_xstrdup(path);
    rd_serve *s = NULL;
    rd_model *m = NULL; // this thread's model until its scorer takes it
    ibuf b = {.f = file, .chunk = chunk, .len = len - 4};
    char magic[8];
    uint32_t version, mcs, tcs, nt;
    in_get(&b, magic, 8);
    IN(&b, version);
    IN(&b, mcs);
    IN(&b, tcs);
    IN(&b, nt);
    if (memcmp(magic, bundle_magic, 8) != 0) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: not a serving bundle (bad magic)", path);
        goto fail;
    }
    if (version < 1 || version > RD_SERVE_VERSION) {
        rc = rd_err_set(eb, RD_ERR_VERSION,
                        "%s: bundle version %u, this build reads versions 1 to %d", path, version,
                        RD_SERVE_VERSION);
        goto fail;
    }
    if (crc_file != crc && !RD__FUZZING) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: CRC mismatch (file damaged)", path);
        goto fail;
    }
    int mc_present = mc_layout(mcs); // the model config of this build or of an earlier one
    if (mc_present < 0 || tcs != sizeof(rd_table_config) || nt == 0 || nt > RD_MAX_TABLES) {
        rc = rd_err_set(eb, RD_ERR_VERSION,
                        "%s: written by a build with another config layout (model config %u "
                        "bytes, table config %u, %u tables; this build: %zu, %zu)",
                        path, mcs, tcs, nt, sizeof(rd_model_config), sizeof(rd_table_config));
        goto fail;
    }
    rd_serve_info *in = &sh->info;
    in->version = version;
    IN(&b, in->config_hash);
    IN(&b, in->step);
    IN(&b, in->seed);
    IN(&b, in->created);
    in_get(&b, in->job, RD_NAME_MAX);
    in_get(&b, in->model, RD_NAME_MAX);
    in->job[RD_NAME_MAX - 1] = in->model[RD_NAME_MAX - 1] = 0;
    get_model_config(&b, &sh->mc, mc_present);
    sh->n_tables = (int)nt;
    for (uint32_t t = 0; t < nt; t++) {
        in_get(&b, &sh->tc[t], sizeof sh->tc[t]);
        sh->tc[t].name[RD_NAME_MAX - 1] = 0;
        sh->tc[t].init_as[RD_NAME_MAX - 1] = 0;
    }
    uint32_t nf, nn;
    IN(&b, nf);
    if (nf > RD_MAX_FEATURES) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: %u features", path, nf);
        goto fail;
    }
    in_get(&b, sh->width, nf * sizeof sh->width[0]);
    IN(&b, nn);
    if (version >= 2) {
        IN(&b, sh->n_inputs);
        if (sh->n_inputs > RD_MAX_FIELDS || sh->n_inputs > nn) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: %u numeric input fields (%u inputs)", path,
                            sh->n_inputs, nn);
            goto fail;
        }
        for (uint32_t j = 0; j < sh->n_inputs; j++) {
            in_get(&b, sh->in_name[j], RD_NAME_MAX);
            IN(&b, sh->in_xform[j]);
            IN(&b, sh->in_mean[j]);
            IN(&b, sh->in_std[j]);
            uint32_t xf = sh->in_xform[j];
            int stdz = (xf & RD_XFORM_STANDARDIZE) != 0;
            if (version >= 3) {
                IN(&b, sh->in_missing[j]);
                IN(&b, sh->in_fill[j]);
            }
            if (b.bad)
                break;
            if (memchr(sh->in_name[j], '\0', RD_NAME_MAX) == NULL || !sh->in_name[j][0] ||
                (xf & RD_XFORM_UNKNOWN ? xf != RD_XFORM_UNKNOWN
                                       : (xf & ~(RD_XFORM_LOG1P | RD_XFORM_STANDARDIZE)) != 0) ||
                (stdz &&
                 !(isfinite(sh->in_mean[j]) && isfinite(sh->in_std[j]) && sh->in_std[j] > 0))) {
                sh->in_name[j][RD_NAME_MAX - 1] = 0;
                rc = rd_err_set(eb, RD_ERR_CORRUPT,
                                "%s: numeric input %u ('%s'): bad transform (flags 0x%x, mean "
                                "%g, std %g)",
                                path, j, sh->in_name[j], xf, sh->in_mean[j], sh->in_std[j]);
                goto fail;
            }
            // A fill is a finite stored value; error has none and zero's is the raw 0.
            uint32_t mm = sh->in_missing[j];
            double fv = sh->in_fill[j];
            if (mm > RD_MISSING_MEAN || !isfinite(fv) || fabs(fv) > (double)FLT_MAX ||
                (mm != RD_MISSING_MEAN && fv != 0.0) ||
                (mm != RD_MISSING_ERROR && xf & RD_XFORM_UNKNOWN)) {
                rc = rd_err_set(eb, RD_ERR_CORRUPT,
                                "%s: numeric input %u ('%s'): bad missing-value fill (mode %u, "
                                "fill %g)",
                                path, j, sh->in_name[j], mm, fv);
                goto fail;
            }
        }
    }
    if (version >= 2) {
        IN(&b, sh->info.logit_shift);
        if (!isfinite(sh->info.logit_shift) || fabsf(sh->info.logit_shift) > 1000.0f) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: logit shift %g (a sampling rate's log)", path,
                            (double)sh->info.logit_shift);
            goto fail;
        }
    }
    uint32_t tdim = 0, tside = 0;
    if (version >= 4) {
        IN(&b, tdim);
        IN(&b, tside);
        IN(&b, in->tok_store_id);
    }
    uint64_t n_slab, n_params;
    IN(&b, n_slab);
    IN(&b, n_params);
    if (b.bad) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: truncated header", path);
        goto fail;
    }
    // The CRC only says the file is as written; everything that sizes memory or indexes an
    // array is checked against the limits a config can express before it is used: the model and
    // table configs as the YAML loader checks them (ranges, list counts, terminated strings),
    // each feature's key width as a schema field's max_len, the numeric inputs as the dataset's
    // numeric fields plus the history statistics.
    {
        rd_errbuf local;
        char what[RD_PATH_MAX + 32];
        snprintf(what, sizeof what, "%s: model config", path);
        rc = rd_config_check_model(&sh->mc, what, &local);
        for (uint32_t t = 0; rc == RD_OK && t < nt; t++) {
            snprintf(what, sizeof what, "%s: table config %u", path, t);
            rc = rd_config_check_table(&sh->tc[t], what, &local);
        }
        if (rc != RD_OK) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s", local.msg);
            goto fail;
        }
    }
    for (uint32_t f = 0; f < nf; f++)
        if (sh->width[f] < 1 || sh->width[f] > MAX_WIDTH) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: feature %u has %u keys (1..%d)", path, f,
                            sh->width[f], MAX_WIDTH);
            goto fail;
        }
    {
        size_t K = 0;
        for (uint32_t f = 0; f < nf; f++)
            K += sh->width[f];
        rc =
            key_slots_check(path, K, sh->mc.seq.kind != RD_SEQ_NONE ? (size_t)sh->mc.seq.length : 0,
                            max_candidates, eb);
        if (rc != RD_OK)
            goto fail;
    }
    // The token branch: a store's dim and side values with it (versions before 4 never wrote
    // one), nothing without it.
    const int tok_on = sh->mc.tokens.scheme > 0;
    if (tok_on ? (version < 4 || tdim < 1 || tdim > RD_TOKEN_MAX_DIM || tside > RD_TOKEN_MAX_SIDE)
               : (tdim || tside || in->tok_store_id)) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT,
                        "%s: token store of dim %u with %u side values for a model %s a token "
                        "branch (bundle version %u)",
                        path, tdim, tside, tok_on ? "with" : "without", version);
        goto fail;
    }
    const size_t tok_stats = tok_on ? rd_token_summary_width(sh->mc.tokens.n_stats, tside) : 0;
    if (nn > RD_MAX_FIELDS + rd_history_stats_width(&sh->mc.seq) + tok_stats) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: %u numeric inputs (at most %zu)", path, nn,
                        RD_MAX_FIELDS + rd_history_stats_width(&sh->mc.seq) + tok_stats);
        goto fail;
    }
    // The dense parameters: one slab, which every scorer's model reads (shared_params), laid
    // out by the model the bundle's config builds (sized first, without any slab); then this
    // thread's model over it, whose activations for max_candidates are checked against the
    // memory before anything else is read.
    rd_model_opts mo = {.tables = sh->tc,
                        .n_tables = sh->n_tables,
                        .max_batch = max_candidates,
                        .n_numeric = nn,
                        .token_dim = tdim,
                        .token_side = tside,
                        .opt_slots = 0,
                        .quiet = 1, // a serving process's stderr is not ours to write
                        .plan_only = 1,
                        .batch_knob = "max_candidates (the largest request this server sends)"};
    rd_model *plan = NULL;
    if ((rc = rd_model_create(&sh->mc, &mo, &plan, eb)) != RD_OK) {
        rd_err_prefix(eb, "%s: ", path);
        goto fail;
    }
    sh->n_slab = plan->n_slab;
    rd_model_destroy(plan);
    sh->tdim = tdim;
    sh->tside = tside;
    // Fallible: a bundle's parameters are an error, not an abort, when they do not fit.
    sh->params = rd_aligned_alloc((sh->n_slab ? sh->n_slab : 1) * sizeof(float));
    if (!sh->params) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "%s: no memory for %zu dense parameters", path,
                        sh->n_slab);
        goto fail;
    }
    memset(sh->params, 0, (sh->n_slab ? sh->n_slab : 1) * sizeof(float));
    mo.plan_only = 0;
    mo.shared_params = sh->params;
    if ((rc = rd_model_create(&sh->mc, &mo, &m, eb)) != RD_OK) {
        rd_err_prefix(eb, "%s: ", path);
        goto fail;
    }
    if (n_slab != m->n_slab || n_params != m->n_params || (int)nf != m->n_features ||
        m->n_tables != sh->n_tables) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT,
                        "%s: %llu dense floats and %u features, the model built from the "
                        "bundle's config has %zu and %d",
                        path, (unsigned long long)n_slab, nf, m->n_slab, m->n_features);
        goto fail;
    }
    in_get(&b, sh->params, sh->n_slab * sizeof(float));
    // A NaN or infinite parameter (a checkpoint written as training diverged, or a file
    // rewritten by hand) would make every score NaN with RD_OK: refused here, naming it, as the
    // trainer's evaluation refuses a non-finite score.
    if (!b.bad &&
        (rc = check_dense_finite(m, path, "the checkpoint it was exported from", eb)) != RD_OK)
        goto fail;
    // Tables: created from the config and seed (initial values of unseen keys), then the rows.
    in->rows = 0;
    for (int t = 0; t < sh->n_tables && rc == RD_OK; t++) {
        if (m->tables[t].ps_index != t) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: table order differs from the model's", path);
            break;
        }
        sh->tc[t].capacity = 1024;
        if ((rc = rd_table_create(&sh->tc[t], t, in->seed, &sh->tab[t], eb)) != RD_OK)
            break;
        sh->table_id[t] = rd_table_salt(&sh->tc[t]);
        uint64_t rows;
        IN(&b, rows);
        size_t dim = m->tables[t].dim;
        if (b.bad || rows > (len - b.off) / (8 + dim * sizeof(float))) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: table %s: truncated rows", path,
                            sh->tc[t].name);
            break;
        }
        for (uint64_t i = 0; i < rows && rc == RD_OK; i++) {
            uint64_t key;
            IN(&b, key);
            float tmp[1024]; // dim <= 1024 (rd_table_create checks)
            in_get(&b, tmp, dim * sizeof(float));
            if (!b.bad &&
                (rc = check_row_finite(path, sh->tc[t].name, i, key, tmp, dim,
                                       "the checkpoint it was exported from", eb)) != RD_OK)
                break;
            rc = rd_table_put(sh->tab[t], key, tmp, 0, 0);
            if (rc != RD_OK)
                rd_err_set(eb, rc, "%s: table %s row %llu: %s", path, sh->tc[t].name,
                           (unsigned long long)i, rd_strerror(rc));
        }
        in->rows += rows;
    }
    // Version 5: the item -> value map of a token search by an item attribute; present exactly
    // when the model's search is by one (an earlier version never wrote a map, so such a model
    // in one is a lie), keys strictly ascending (rd_item_attr_key searches them).
    const int attr_on =
        tok_on && sh->mc.tokens.search && !rd_field_is_item(sh->mc.tokens.search_by);
    if (rc == RD_OK && version >= 5) {
        uint64_t n_attr = 0;
        IN(&b, n_attr);
        if (b.bad || n_attr > (len - 4 - b.off) / 16 || (n_attr > 0) != attr_on) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT,
                            "%s: an item attribute map of %llu items for a model whose token "
                            "search is %s (%zu bytes left)",
                            path, (unsigned long long)n_attr,
                            attr_on ? "by an item attribute" : "not by one", len - 4 - b.off);
            goto fail;
        }
        sh->attr.n = (size_t)n_attr;
        sh->attr.item_key = rd_xmalloc((n_attr ? n_attr : 1) * sizeof(uint64_t));
        sh->attr.value = rd_xmalloc((n_attr ? n_attr : 1) * sizeof(uint64_t));
        for (size_t k = 0; k < sh->attr.n; k++) {
            IN(&b, sh->attr.item_key[k]);
            IN(&b, sh->attr.value[k]);
            if (k > 0 && sh->attr.item_key[k] <= sh->attr.item_key[k - 1]) {
                rc = rd_err_set(eb, RD_ERR_CORRUPT,
                                "%s: item attribute map: item key %llu at %zu after %llu (keys "
                                "must ascend)",
                                path, (unsigned long long)sh->attr.item_key[k], k,
                                (unsigned long long)sh->attr.item_key[k - 1]);
                goto fail;
            }
        }
    } else if (rc == RD_OK && attr_on) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT,
                        "%s: a model whose token search is by an item attribute ('%s') in a "
                        "version-%u bundle, which carries no item attribute map",
                        path, sh->mc.tokens.search_by, version);
        goto fail;
    }
    if (rc == RD_OK && (b.bad || b.off != len - 4))
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: %zu bytes left over after the rows", path,
                        len - 4 - b.off);
    if (rc == RD_OK && b.crc != crc_file) // every byte was read again: its CRC is complete
        rc = rd_err_set(eb, RD_ERR_CORRUPT,
                        "%s: changed while it was read (written over in place?): open it again",
                        path);
    if (rc != RD_OK)
        goto fail;
    snprintf(in->model, sizeof in->model, "%s", sh->mc.name);
    in->n_features = m->n_features;
    in->n_stats = rd_history_stats_width(&sh->mc.seq);
    if (in->n_stats + tok_stats > nn) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT,
                        "%s: %u numeric inputs, fewer than the model's %zu "
                        "history statistics and %zu token summaries",
                        path, nn, in->n_stats, tok_stats);
        goto fail;
    }
    in->n_numeric = nn - tok_stats; // what a request sends; the scorer adds the summaries
    sh->nn_model = nn;
    if (tok_on) {
        in->tok_length = m->tok_length;
        in->tok_pool = sh->mc.tokens.search ? (size_t)sh->mc.tokens.search : m->tok_length;
        in->tok_dim = tdim;
        in->tok_side = tside;
        in->tok_stats = tok_stats;
        in->tok_same_time = sh->mc.tokens.same_time != 0;
        in->tok_search = sh->mc.tokens.search != 0;
        if (in->tok_search)
            snprintf(in->tok_search_by, sizeof in->tok_search_by, "%s",
                     attr_on ? sh->mc.tokens.search_by : "item");
        in->tok_search_items = sh->attr.n;
    }
    if (version < 2) { // no transforms recorded: the inputs are known only as stored values
        sh->n_inputs = nn - (uint32_t)in->n_stats;
        for (uint32_t j = 0; j < sh->n_inputs; j++)
            sh->in_xform[j] = RD_XFORM_UNKNOWN;
    } else if (sh->n_inputs != in->n_numeric - in->n_stats) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT,
                        "%s: %u numeric input fields, but %u inputs less %zu history statistics "
                        "and %zu token summaries",
                        path, sh->n_inputs, nn, in->n_stats, tok_stats);
        goto fail;
    }
    in->hist_len = m->seq_table >= 0 ? m->seq_length : 0;
    in->params = m->n_params;
    size_t K = 0;
    for (int f = 0; f < m->n_features; f++) {
        sh->offset[f] = K;
        K += sh->width[f];
    }
    in->keys_per_candidate = K;
    fclose(file);
    file = NULL;
    rd_free(chunk);
    chunk = NULL;
    // The bundle is complete: from here on it is only read. This thread's scorer.
    rc = scorer_create(sh, max_candidates, m, &s, eb);
    m = NULL; // the scorer's, or freed with it
    if (rc != RD_OK)
        goto fail;
    *out = s;
    return RD_OK;
fail:
    if (file)
        fclose(file);
    rd_free(chunk);
    rd_model_destroy(m);
    bundle_release(sh);
    return rc;
}

void rd_serve_get_info(const rd_serve *s, rd_serve_info *info) {
    if (!info)
        return;
    if (!s) {
        memset(info, 0, sizeof *info);
        return;
    }
    *info = s->sh->info;
}

int rd_serve_numeric(const rd_serve *s,
                     size_t j,
                     const char **field,
                     uint32_t *transform,
                     double *mean,
                     double *std) {
    if (!s || j >= s->sh->n_inputs)
        return RD_ERR_RANGE;
    if (field)
        *field = s->sh->in_name[j];
    if (transform)
        *transform = s->sh->in_xform[j];
    if (mean)
        *mean = s->sh->in_xform[j] & RD_XFORM_STANDARDIZE ? s->sh->in_mean[j] : 0.0;
    if (std)
        *std = s->sh->in_xform[j] & RD_XFORM_STANDARDIZE ? s->sh->in_std[j] : 1.0;
    return RD_OK;
}

int rd_serve_numeric_missing(const rd_serve *s, size_t j, uint32_t *missing, double *fill) {
    if (!s || j >= s->sh->n_inputs)
        return RD_ERR_RANGE;
    if (missing)
        *missing = s->sh->in_missing[j];
    if (fill)
        *fill = s->sh->in_fill[j];
    return RD_OK;
}

// req->numeric_raw: the raw inputs of every candidate as the dataset stores them, into numbuf
// (rows of nn_model; the history statistics, the last n_stats floats, are passed through).
static int transform_raw(rd_serve *s, const rd_serve_request *req, rd_errbuf *eb) {
    const size_t N = req->n, NN = s->sh->info.n_numeric;
    for (uint32_t j = 0; j < s->sh->n_inputs; j++)
        if (s->sh->in_xform[j] & RD_XFORM_UNKNOWN)
            return rd_err_set(eb, RD_ERR_UNSUPPORTED,
                              "request: numeric_raw needs the inputs' transforms, which this "
                              "bundle (version %u, or exported from a version-1 dataset) does "
                              "not record; send stored values, or re-prepare and re-export",
                              s->sh->info.version);
    for (size_t b = 0; b < N; b++) {
        const float *x = req->numeric + b * NN;
        float *y = s->numbuf + b * s->sh->nn_model;
        for (uint32_t j = 0; j < s->sh->n_inputs; j++) {
            // A missing value (NaN) takes the field's fill, which prepare stored before
            // standardizing it like any other value (never log1p: the fill is a stored value
            // already), so the input equals the dataset's bit for bit.
            if (isnan(x[j]) && s->sh->in_missing[j] != RD_MISSING_ERROR) {
                y[j] = rd_field_transform(s->sh->in_xform[j] & ~RD_XFORM_LOG1P, s->sh->in_mean[j],
                                          s->sh->in_std[j], s->sh->in_fill[j]);
                continue;
            }
            if (isnan(x[j]) && s->sh->info.version >= 3)
                return rd_err_set(eb, RD_ERR_RANGE,
                                  "request: candidate %zu: '%s' is missing (NaN), and the field "
                                  "has no fill: `missing: error` at prepare refused such rows "
                                  "(set data.schema.fields[].missing: zero or mean, prepare, "
                                  "train and export again to serve missing values)",
                                  b, s->sh->in_name[j]);
            if (!isfinite(x[j]))
                return rd_err_set(eb, RD_ERR_RANGE, "request: candidate %zu: '%s' is %g", b,
                                  s->sh->in_name[j], (double)x[j]);
            y[j] = rd_field_transform(s->sh->in_xform[j], s->sh->in_mean[j], s->sh->in_std[j],
                                      (double)x[j]);
            if (!isfinite(y[j]))
                return rd_err_set(eb, RD_ERR_RANGE,
                                  "request: candidate %zu: '%s' = %g is out of range after its "
                                  "transform",
                                  b, s->sh->in_name[j], (double)x[j]);
        }
        memcpy(y + s->sh->n_inputs, x + s->sh->n_inputs, (NN - s->sh->n_inputs) * sizeof(float));
    }
    return RD_OK;
}

int rd_serve_feature(const rd_serve *s, int f, const char **field, size_t *offset, size_t *width) {
    if (!s || f < 0 || f >= s->m->n_features)
        return RD_ERR_RANGE;
    if (field)
        *field = s->m->features[f].field;
    if (offset)
        *offset = s->sh->offset[f];
    if (width)
        *width = s->sh->width[f];
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Score

// The token branch's inputs of every candidate from the request's tokens (oldest first, as a
// fetch returns them), as the trainer lays out a fetch (stage_wait_tokens): the candidate's
// picks (rd_token_pick: the latest tok_length, or with tokens.search the latest of its item)
// most recent first, padding after, and the summaries (rd_token_summary) after the request's
// numeric inputs in numbuf.
static int prepare_tokens(rd_serve *s, const rd_serve_request *req, rd_errbuf *eb) {
    const rd_serve_info *in = &s->sh->info;
    const size_t N = req->n, L = in->tok_length, P = in->tok_pool, d = in->tok_dim,
                 S = in->tok_side, nf = req->tok_n;
    if (nf > P)
        return rd_err_set(eb, RD_ERR_RANGE,
                          "request: %zu tokens, the bundle reads at most %zu (tok_pool: "
                          "models[].tokens.%s)",
                          nf, P, s->sh->mc.tokens.search ? "search" : "length");
    if (nf && (!req->tok || !req->tok_labels || (S && !req->tok_side) ||
               (in->tok_search && !req->tok_items)))
        return rd_err_set(eb, RD_ERR_RANGE, "request: %zu tokens, but %s is NULL", nf,
                          !req->tok               ? "tok"
                          : !req->tok_labels      ? "tok_labels"
                          : (S && !req->tok_side) ? "tok_side (the bundle's tokens have side "
                                                    "values)"
                                                  : "tok_items (the bundle's token search "
                                                    "matches items)");
    if (in->tok_search && !req->items)
        return rd_err_set(eb, RD_ERR_RANGE,
                          "request: items is NULL, and the bundle's token branch reads the "
                          "tokens of each candidate's item (tokens.search)");
    // Tokens come from a store that checks its records' CRC, or from a caller: a NaN would
    // score NaN with RD_OK (the model's NaN scan runs only in debug builds), so name it here.
    for (size_t j = 0; j < nf; j++) {
        int bad = !isfinite(req->tok_labels[j]);
        for (size_t k = 0; k < d && !bad; k++)
            bad = !isfinite(req->tok[j * d + k]);
        for (size_t k = 0; k < S && !bad; k++)
            bad = !isfinite(req->tok_side[j * S + k]);
        if (bad)
            return rd_err_set(eb, RD_ERR_RANGE,
                              "request: token %zu (of %zu, oldest first): a value, its label or "
                              "a side value is not finite",
                              j, nf);
    }
    // A search by an item attribute compares the items' values (an item the map does not hold
    // keeps its own key, as in training).
    const uint64_t *tok_keys = in->tok_search ? req->tok_items : NULL;
    if (in->tok_search && s->f_key) {
        for (size_t j = 0; j < nf; j++)
            s->f_key[j] = rd_item_attr_key(&s->sh->attr, req->tok_items[j]);
        tok_keys = s->f_key;
    }
    uint32_t pick[RD_TOKEN_PICK_MAX];
    // Without a search every candidate reads the same tokens: picked, written and summarised
    // once (row 0; the forward shares them, tok_shared). With one, each candidate its own row.
    const size_t rows = in->tok_search ? N : 1, NNm = s->sh->nn_model;
    for (size_t b = 0; b < rows; b++) {
        size_t n = rd_token_pick(tok_keys, nf,
                                 !in->tok_search ? 0
                                 : s->f_key      ? rd_item_attr_key(&s->sh->attr, req->items[b])
                                                 : req->items[b],
                                 L, pick);
        float *dst = s->tk + b * L * d;
        uint8_t *mk = s->tk_mask + b * L, *lb = s->tk_lab + b * L;
        for (size_t j = 0; j < n; j++) {
            memcpy(dst + j * d, req->tok + (size_t)pick[j] * d, d * sizeof(float));
            mk[j] = 1;
            lb[j] = req->tok_labels[pick[j]] > 0.5f ? 1 : 0;
        }
        memset(dst + n * d, 0, (L - n) * d * sizeof(float));
        memset(mk + n, 0, L - n);
        memset(lb + n, 0, L - n);
        if (S) {
            float *ds = s->tk_side + b * L * S;
            for (size_t j = 0; j < n; j++)
                memcpy(ds + j * S, req->tok_side + (size_t)pick[j] * S, S * sizeof(float));
            memset(ds + n * S, 0, (L - n) * S * sizeof(float));
        }
        if (in->tok_stats) {
            int rc = rd_token_summary(s->sh->mc.tokens.stats, s->sh->mc.tokens.n_stats, n, lb,
                                      S ? s->tk_side + b * L * S : NULL, S,
                                      s->numbuf + (b + 1) * NNm - in->tok_stats, eb);
            if (rc != RD_OK)
                return rc;
        }
    }
    for (size_t b = rows; b < N && in->tok_stats; b++) // the shared tokens' summaries
        memcpy(s->numbuf + (b + 1) * NNm - in->tok_stats, s->numbuf + NNm - in->tok_stats,
               in->tok_stats * sizeof(float));
    return RD_OK;
}

int rd_serve_score(
    rd_serve *s, const rd_serve_request *req, float *scores, float *logits, rd_errbuf *eb) {
    rd_errbuf_clear(eb); // each call's message is its own (rd_err_set keeps the first one)
    if (!s || !req)
        return rd_err_set(eb, RD_ERR_ARG, "request: %s is NULL", !s ? "the scorer" : "the request");
    rd_model *m = s->m;
    const size_t N = req->n, K = s->sh->info.keys_per_candidate, L = s->sh->info.hist_len;
    if (N == 0 || N > s->max_n)
        return rd_err_set(eb, RD_ERR_ARG, "request: %zu candidates outside 1..%zu", N, s->max_n);
    if (!req->keys)
        return rd_err_set(eb, RD_ERR_ARG, "request: keys missing");
    if (s->sh->info.n_numeric && !req->numeric)
        return rd_err_set(eb, RD_ERR_ARG, "request: %zu numeric features per candidate missing",
                          s->sh->info.n_numeric);
    if (s->sh->info.n_numeric && req->numeric_raw) {
        int rc0 = transform_raw(s, req, eb);
        if (rc0 != RD_OK)
            return rc0;
    }
    // A non-finite stored value (or history statistic of a raw request) would also be refused
    // by the model's batch check, but that names only a flat index: name the candidate and the
    // input here.
    for (size_t b = 0; b < N && s->sh->info.n_numeric; b++)
        for (size_t j = req->numeric_raw ? s->sh->n_inputs : 0; j < s->sh->info.n_numeric; j++) {
            float v = req->numeric[b * s->sh->info.n_numeric + j];
            if (isfinite(v))
                continue;
            if (j < s->sh->n_inputs && s->sh->in_name[j][0])
                return rd_err_set(eb, RD_ERR_RANGE,
                                  "request: candidate %zu: numeric input %zu ('%s') is %g (a "
                                  "stored value must be finite; a missing raw value is sent as "
                                  "NaN with numeric_raw)",
                                  b, j, s->sh->in_name[j], (double)v);
            return rd_err_set(
                eb, RD_ERR_RANGE, "request: candidate %zu: numeric input %zu (%s) is %g", b, j,
                j < s->sh->n_inputs ? "a dataset field" : "a history statistic", (double)v);
        }
    // The numeric inputs the model reads: the request's (or their transforms), then the token
    // summaries, which prepare_tokens writes.
    const size_t NNr = s->sh->info.n_numeric, NNm = s->sh->nn_model;
    if (NNm > NNr && NNr && !req->numeric_raw)
        for (size_t b = 0; b < N; b++)
            memcpy(s->numbuf + b * NNm, req->numeric + b * NNr, NNr * sizeof(float));
    if (s->sh->info.tok_length) {
        int rc0 = prepare_tokens(s, req, eb);
        if (rc0 != RD_OK)
            return rc0;
    }
    size_t n_raw[RD_MAX_TABLES] = {0};
    // 1. Table keys in use order, positions into raw.
    for (int f = 0; f < m->n_features; f++) {
        int t = m->features[f].table;
        const size_t w = s->sh->width[f], off = s->sh->offset[f];
        for (size_t b = 0; b < N; b++)
            for (size_t k = 0; k < w; k++) {
                uint64_t key = req->keys[b * K + off + k];
                int32_t *dst = &s->fidx[f][b * w + k];
                if (!key) {
                    *dst = -1;
                    continue;
                }
                s->raw[t][n_raw[t]] = rd_table_key(s->sh->table_id[t], key);
                *dst = (int32_t)n_raw[t]++;
            }
    }
    if (L) {
        int t = m->seq_table;
        for (size_t j = 0; j < L; j++) {
            uint64_t key = req->hist_items ? req->hist_items[j] : 0;
            if (!key) {
                s->hpos[j] = -1;
                continue;
            }
            s->raw[t][n_raw[t]] = rd_table_key(s->sh->table_id[t], key);
            s->hpos[j] = (int32_t)n_raw[t]++;
        }
    }
    // 2. Dedup, rows (or initial values), indices into the unique rows.
    size_t n_uniq[RD_MAX_TABLES] = {0};
    for (int t = 0; t < m->n_tables; t++) {
        if (!n_raw[t])
            continue;
        int rc = rd_kv_dedup(s->raw[t], n_raw[t], s->uniq[t], s->inv[t], &n_uniq[t], s->scratch,
                             s->scratch_bytes);
        if (rc != RD_OK)
            return rd_err_set(eb, rc, "request: dedup of table %s", s->sh->tc[t].name);
        rc = rd_table_read(s->sh->tab[t], s->uniq[t], n_uniq[t], s->vals[t]);
        if (rc != RD_OK)
            return rd_err_set(eb, rc, "request: table %s", s->sh->tc[t].name);
    }
    for (int f = 0; f < m->n_features; f++) {
        const uint32_t *inv = s->inv[m->features[f].table];
        int32_t *x = s->fidx[f];
        for (size_t k = 0; k < N * s->sh->width[f]; k++)
            if (x[k] >= 0)
                x[k] = (int32_t)inv[x[k]];
    }
    if (L) {
        const uint32_t *inv = s->inv[m->seq_table];
        for (size_t j = 0; j < L; j++) {
            int32_t p = s->hpos[j] >= 0 ? (int32_t)inv[s->hpos[j]] : -1;
            uint8_t lab = req->hist_labels && s->hpos[j] >= 0 ? req->hist_labels[j] : 0;
            s->sidx[j] = p; // one row: every candidate reads it (seq_shared)
            s->slab[j] = lab;
        }
    }
    // 3. Forward.
    rd_batch bt;
    memset(&bt, 0, sizeof bt);
    bt.B = N;
    for (int t = 0; t < m->n_tables; t++) {
        bt.rows[t] = s->vals[t];
        bt.n_rows[t] = n_uniq[t];
    }
    for (int f = 0; f < m->n_features; f++) {
        bt.feat_idx[f] = s->fidx[f];
        bt.feat_slots[f] = s->sh->width[f];
    }
    if (L) {
        bt.seq_idx = s->sidx;
        bt.seq_labels = m->seq_with_labels ? s->slab : NULL;
        bt.seq_shared = 1;
    }
    bt.numeric = !NNm ? NULL : (req->numeric_raw || NNm > NNr) ? s->numbuf : req->numeric;
    if (s->sh->info.tok_length) {
        bt.tokens = s->tk;
        bt.tok_mask = s->tk_mask;
        bt.tok_labels = s->tk_lab;
        bt.tok_side = s->tk_side;
        bt.tok_shared = !s->sh->info.tok_search;
    }
    bt.labels = s->labels;
    bt.temperature = 1.0f;
    int rc = rd_model_forward(m, &bt, eb);
    if (rc != RD_OK)
        return rc;
    // A finite bundle still overflows on inputs far outside the training range (a stored
    // numeric value of 1e38): a NaN or infinite logit is no score, so the request fails, as the
    // trainer's evaluation does, rather than a NaN score (or 0 or 1 from an infinite logit)
    // with RD_OK.
    for (size_t b = 0; b < N; b++) {
        float z = m->logits_main[b] + s->sh->info.logit_shift;
        if (!isfinite(z))
            return rd_err_set(eb, RD_ERR_RANGE,
                              "request: candidate %zu: the main-tower logit is %s (an overflow: "
                              "numeric inputs far outside the range the model was trained on?)",
                              b, isnan(z) ? "NaN" : "infinite");
    }
    for (size_t b = 0; b < N; b++) {
        float z = m->logits_main[b] + s->sh->info.logit_shift;
        if (logits)
            logits[b] = z;
        if (scores)
            scores[b] = 1.0f / (1.0f + expf(-z));
    }
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Requests from a dataset (tests, benchmarks)

int rd_serve_request_from_dataset(const rd_serve *s,
                                  const rd_dataset *ds,
                                  uint64_t rec,
                                  uint64_t *keys,
                                  uint64_t *hist,
                                  uint8_t *hist_lab,
                                  float *numeric,
                                  rd_errbuf *eb) {
    rd_errbuf_clear(eb); // each call's message is its own (rd_err_set keeps the first one)
    if (!s || !ds || !keys)
        return rd_err_set(eb, RD_ERR_ARG, "request from dataset: %s is NULL",
                          !s    ? "the scorer"
                          : !ds ? "the dataset"
                                : "keys");
    // The bundle's history and numeric inputs are written: NULL is only for a bundle without.
    if (s->sh->info.hist_len && (!hist || !hist_lab))
        return rd_err_set(eb, RD_ERR_ARG,
                          "request from dataset: %s is NULL, and the bundle's history has %zu "
                          "events",
                          !hist ? "hist" : "hist_lab", s->sh->info.hist_len);
    if (s->sh->info.n_numeric && !numeric)
        return rd_err_set(eb, RD_ERR_ARG,
                          "request from dataset: numeric is NULL, and the bundle has %zu numeric "
                          "inputs",
                          s->sh->info.n_numeric);
    const rd_dataset_info *di = rd_dataset_get_info(ds);
    if (rec >= di->n_events)
        return rd_err_set(eb, RD_ERR_RANGE, "record %llu not in [0, %llu)", (unsigned long long)rec,
                          (unsigned long long)di->n_events);
    size_t n_in = s->sh->info.n_numeric - s->sh->info.n_stats;
    if (rd_dataset_n_inputs(di) != n_in)
        return rd_err_set(eb, RD_ERR_SCHEMA, "dataset has %u numeric features, the bundle %zu",
                          rd_dataset_n_inputs(di), n_in);
    int fb = -1;
    int rc = rd_dataset_stats_feedback(ds, s->sh->mc.name, &s->sh->mc.seq, &fb, eb);
    if (rc != RD_OK)
        return rc;
    const float *item_mean = NULL;
    if (s->sh->mc.seq.stats_residual) {
        struct stats_cache *c = s->cache;
        if (c->ds != ds || c->records_crc != di->records_crc || !c->item_mean) {
            rd_free(c->item_mean);
            c->ds = ds;
            c->records_crc = di->records_crc;
            if (!(c->item_mean = rd_dataset_item_means(ds, fb)))
                return rd_err_set(eb, RD_ERR_NOMEM, "out of memory for the item means");
        }
        item_mean = c->item_mean;
    }
    const rd_model *m = s->m;
    char who[RD_NAME_MAX + 16];
    snprintf(who, sizeof who, "model '%s'", s->sh->mc.name);
    for (int f = 0; f < m->n_features; f++) {
        const char *name = m->features[f].field;
        rd_feature_src at;
        if ((rc = rd_dataset_feature_src(ds, name, who, &at, eb)) != RD_OK)
            return rc;
        if (at.width != s->sh->width[f])
            return rd_err_set(eb, RD_ERR_SCHEMA, "field '%s' has width %u, the bundle %u", name,
                              at.width, s->sh->width[f]);
        for (uint32_t k = 0; k < at.width; k++)
            keys[s->sh->offset[f] + k] = rd_dataset_feature_key(ds, &at, rec, k);
    }
    const size_t L = s->sh->info.hist_len;
    if (L) {
        size_t nh = 0;
        const uint64_t *h = rd_dataset_history_view(ds, rec, L, &nh);
        for (size_t j = 0; j < L; j++) {
            if (j < nh) {
                const rd_record *hr = rd_dataset_record(ds, h[nh - 1 - j]);
                hist[j] = hr->item_key;
                hist_lab[j] = hr->label > 0.5f ? 1 : 0;
            } else {
                hist[j] = 0;
                hist_lab[j] = 0;
            }
        }
    }
    if (n_in)
        memcpy(numeric, rd_dataset_nums(ds, rec), n_in * sizeof(float));
    rd_dataset_history_stats(ds, rec, &s->sh->mc.seq, fb, item_mean, numeric + n_in);
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Tokens from the store

int rd_serve_fetch_tokens(rd_serve *s,
                          rd_token_store *store,
                          uint64_t user,
                          int64_t t,
                          uint64_t id,
                          rd_serve_request *req,
                          rd_errbuf *eb) {
    rd_errbuf_clear(eb); // each call's message is its own (rd_err_set keeps the first one)
    if (!s || !store || !req)
        return rd_err_set(eb, RD_ERR_ARG, "fetch tokens: %s is NULL",
                          !s       ? "the scorer"
                          : !store ? "the token store"
                                   : "the request");
    const rd_serve_info *in = &s->sh->info;
    if (!in->tok_length)
        return rd_err_set(eb, RD_ERR_UNSUPPORTED,
                          "fetch tokens: model '%s' of the bundle reads no instance tokens",
                          in->model);
    // The tokens the model was trained on come from one store: another store (rebuilt by
    // another run or source model, or another layout) gives tokens it never saw.
    rd_token_store_info si;
    rd_token_store_info_get(store, &si);
    if (si.store_id != in->tok_store_id || si.dim != in->tok_dim || si.n_side != in->tok_side)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "fetch tokens: the store (id %016llx, dim %u, %u side values) is not "
                          "the one model '%s' was trained on (id %016llx, dim %zu, %zu side "
                          "values): open the store of the training run (tokens.store_dir)",
                          (unsigned long long)si.store_id, si.dim, si.n_side, in->model,
                          (unsigned long long)in->tok_store_id, in->tok_dim, in->tok_side);
    uint32_t found = 0;
    rd_token_fetch_out fo = {.tokens = s->f_tok,
                             .labels = s->f_lab,
                             .items = s->f_item,
                             .n_found = &found,
                             .side = s->f_side};
    int rc = rd_token_store_fetch_batch(store, 1, &user, &t, in->tok_same_time ? &id : NULL,
                                        in->tok_pool, &fo, eb);
    if (rc != RD_OK) {
        rd_err_prefix(eb, "fetch tokens of user %llu before time %lld: ", (unsigned long long)user,
                      (long long)t);
        return rc;
    }
    req->tok_n = found < in->tok_pool ? found : in->tok_pool;
    req->tok = s->f_tok;
    req->tok_labels = s->f_lab;
    req->tok_items = s->f_item;
    req->tok_side = in->tok_side ? s->f_side : NULL;
    return RD_OK;
}
