// train_ckpt.c — a job's training checkpoint besides its PS shards: dense.bin (parameters,
// optimizer slots, trainer position), directory naming, commit by rename, retention
// (rd/train_ckpt.h).
//
// The file is built in memory and written with rd_lmdbx_write_file_atomic (temp + fsync +
// rename): dense slabs of the models of this project are a few MB, and a torn dense.bin must
// never exist. Reads check size, magic, version and the trailing CRC-32C before touching the
// model, so a failed read leaves the model as it was.
#include "rd/train_ckpt.h"

#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/optim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char dense_magic[8] = {'R', 'D', 'D', 'E', 'N', 'S', 'E', '1'};

// Header bytes of version 1: magic 8 + 2*u32 + 4*u64 + 5*f32 + i64 + 2*i32 + i64 + u64 + f64 +
// i32 + 2*u64 + 2 names. Version 2 appends the identity record: u32 + u64 + 4*i32/u32 + 3*u64 +
// u32 + the table entries. Version 3 appends the split: 2*f64 + i32 + u32.
#define HDR_V1    (8 + 8 + 32 + 20 + 8 + 8 + 8 + 8 + 8 + 4 + 16 + 2 * RD_NAME_MAX)
#define IDENT_V2  (4 + 8 + 16 + 24 + 4 + RD_TRAIN_CKPT_TABLES * (RD_NAME_MAX + 8))
#define HDR_V2    (HDR_V1 + IDENT_V2)
#define SPLIT_V3  (8 + 8 + 4 + 4)
#define HDR_BYTES (HDR_V2 + SPLIT_V3)

_Static_assert(RD_MAX_TABLES <= RD_TRAIN_CKPT_TABLES, "dense.bin records every table of a model");

static size_t hdr_bytes(uint32_t version) {
    return version >= 3 ? HDR_BYTES : version == 2 ? HDR_V2 : HDR_V1;
}

// ---------------------------------------------------------------------------------------------
// Little serializer (host byte order, like the shard envs)

typedef struct wbuf {
    unsigned char *p;
    size_t off;
} wbuf;

static void put(wbuf *w, const void *v, size_t n) {
    memcpy(w->p + w->off, v, n);
    w->off += n;
}
#define PUT(w, v) put((w), &(v), sizeof(v))

typedef struct rbuf {
    const unsigned char *p;
    size_t off;
} rbuf;

static void get(rbuf *r, void *v, size_t n) {
    memcpy(v, r->p + r->off, n);
    r->off += n;
}
#define GET(r, v) get((r), &(v), sizeof(v))

// ---------------------------------------------------------------------------------------------

int rd_train_ckpt_path(const char *root, const char *job, int64_t step, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/%s/step-%012lld", root, job, (long long)step);
    return n < 0 || (size_t)n >= cap ? RD_ERR_RANGE : RD_OK;
}

// The model config alone, chained from h (the first part of rd_train_ckpt_config_hash).
static uint64_t model_part(const rd_model_config *mc, uint64_t h) {
    // Field by field (not the struct bytes): padding and unused array tails must not matter.
    h = rd_hash_str(mc->name, h);
    for (int f = 0; f < mc->n_features; f++) {
        h = rd_hash_str(mc->features[f].field, h);
        h = rd_hash_str(mc->features[f].table, h);
        h = rd_hash64(&mc->features[f].pooling, sizeof mc->features[f].pooling, h);
    }
    h = rd_hash64(&mc->seq.kind, sizeof mc->seq.kind, h);
    h = rd_hash64(&mc->seq.length, sizeof mc->seq.length, h);
    h = rd_hash_str(mc->seq.table, h);
    h = rd_hash64(&mc->seq.layers, sizeof mc->seq.layers, h);
    h = rd_hash64(&mc->seq.heads, sizeof mc->seq.heads, h);
    h = rd_hash64(&mc->seq.dim, sizeof mc->seq.dim, h);
    h = rd_hash64(&mc->seq.with_labels, sizeof mc->seq.with_labels, h);
    if (mc->seq.view != RD_SEQ_NONE) { // hashed only when on: older checkpoints still load
        h = rd_hash64(&mc->seq.view, sizeof mc->seq.view, h);
        h = rd_hash64(&mc->seq.view_length, sizeof mc->seq.view_length, h);
        h = rd_hash64(&mc->seq.view_by_label, sizeof mc->seq.view_by_label, h);
    }
    if (mc->seq.n_stats) { // the history statistics change what the inputs mean; hashed when on
        h = rd_hash64(mc->seq.stats, (size_t)mc->seq.n_stats * sizeof mc->seq.stats[0], h);
        h = rd_hash_str(mc->seq.stats_feedback, h);
        h = rd_hash64(&mc->seq.stats_residual, sizeof mc->seq.stats_residual, h);
    }
    h = rd_hash64(&mc->tokens.scheme, sizeof mc->tokens.scheme, h);
    if (mc->tokens.same_time) // which tokens are read: hashed when not the default
        h = rd_hash64(&mc->tokens.same_time, sizeof mc->tokens.same_time, h);
    if (mc->tokens.n_stats) // summaries of the fetched tokens: hashed when on, as seq.stats
        h = rd_hash64(mc->tokens.stats, (size_t)mc->tokens.n_stats * sizeof mc->tokens.stats[0], h);
    if (mc->tokens.norm) // what the adapter reads: hashed when on
        h = rd_hash_str("tokens.norm", h);
    if (mc->tokens.query) // what the branch's query reads (its weights' shape): hashed when on
        h = rd_hash64(&mc->tokens.query, sizeof mc->tokens.query, h);
    if (mc->tokens.label) // no label embedding (the weights' set): hashed when not the default
        h = rd_hash_str("tokens.label none", h);
    if (mc->tokens.search) // which tokens the branch reads: hashed when on
        h = rd_hash64(&mc->tokens.search, sizeof mc->tokens.search, h);
    if (!rd_field_is_item(mc->tokens.search_by)) { // which tokens the search reads
        h = rd_hash_str("tokens.search_by", h);
        h = rd_hash_str(mc->tokens.search_by, h);
    }
    h = rd_hash64(mc->mlp, (size_t)mc->n_mlp * sizeof mc->mlp[0], h);
    h = rd_hash64(mc->tower, (size_t)mc->n_tower * sizeof mc->tower[0], h);
    h = rd_hash64(&mc->two_towers, sizeof mc->two_towers, h);
    h = rd_hash64(&mc->layer_norm, sizeof mc->layer_norm, h);
    if (mc->dropout > 0.0f) // how it trains (a resume continues exactly): hashed when on
        h = rd_hash64(&mc->dropout, sizeof mc->dropout, h);
    return rd_hash_str(mc->activation, h);
}

// Does model mc read table tc?
static int reads_table(const rd_model_config *mc, const rd_table_config *tc) {
    int used = strcmp(mc->seq.table, tc->name) == 0;
    for (int f = 0; f < mc->n_features && !used; f++)
        used = strcmp(mc->features[f].table, tc->name) == 0;
    return used;
}

// One table's config, chained from h.
static uint64_t table_part(const rd_table_config *tc, uint64_t h) {
    h = rd_hash_str(tc->name, h);
    h = rd_hash64(&tc->dim, sizeof tc->dim, h);
    h = rd_hash64(&tc->optim.kind, sizeof tc->optim.kind, h);
    h = rd_hash64(&tc->init_std, sizeof tc->init_std, h);
    h = rd_hash64(&tc->admit_count, sizeof tc->admit_count, h);
    h = rd_hash64(&tc->ttl, sizeof tc->ttl, h);
    if (tc->init_as[0] && strcmp(tc->init_as, tc->name) != 0) // twin tables only
        h = rd_hash_str(tc->init_as, h);
    return h;
}

uint64_t rd_train_ckpt_table_hash(const rd_table_config *tc) {
    return table_part(tc, 0x7461626c65ULL);
}

static int job_samples(const rd_job_config *jc) {
    return jc && (jc->negatives.rate < 1.0 || jc->negatives.pos_rate < 1.0);
}

// The parts are chained in this order (model, tables, seed, sampling) so that the hash of
// version-1 checkpoints is unchanged.
uint64_t rd_train_ckpt_config_hash(const rd_config *cfg,
                                   const rd_job_config *jc,
                                   const rd_model_config *mc) {
    uint64_t h = model_part(mc, 0x7264636b70ULL);
    for (int t = 0; t < cfg->ps.n_tables; t++)
        if (reads_table(mc, &cfg->ps.tables[t]))
            h = table_part(&cfg->ps.tables[t], h);
    h = rd_hash64(&cfg->run.seed, sizeof cfg->run.seed, h);
    if (job_samples(jc)) {
        h = rd_hash64(&jc->negatives.rate, sizeof jc->negatives.rate, h);
        h = rd_hash64(&jc->negatives.pos_rate, sizeof jc->negatives.pos_rate, h);
    }
    return h ? h : 1;
}

// What the token builder writes (IAT stage 1): the tokens.* keys that change the tokens, and
// the source model's architecture. Not map_size, append_batch, store_dir or huge_pages.
static uint64_t tokens_part(const rd_config *cfg) {
    const rd_tokens_config *t = &cfg->tokens;
    uint64_t h = rd_hash64(&t->dim, sizeof t->dim, 0x746f6b656e73ULL);
    h = rd_hash_str(t->dtype, h);
    h = rd_hash64(&t->scheme, sizeof t->scheme, h);
    h = rd_hash64(&t->sit_layers, sizeof t->sit_layers, h);
    h = rd_hash64(&t->window, sizeof t->window, h);
    h = rd_hash64(&t->batch_order, sizeof t->batch_order, h);
    h = rd_hash64(&t->sit_labels, sizeof t->sit_labels, h);
    h = rd_hash_str(t->source_model, h);
    const rd_model_config *src =
        t->source_model[0] ? rd_config_find_model(cfg, t->source_model) : NULL;
    if (src)
        h = model_part(src, h);
    for (int i = 0; i < t->n_side; i++)
        h = rd_hash_str(t->side[i], h);
    h = rd_hash64(&t->side_residual, sizeof t->side_residual, h);
    // Keys added later enter only when set (stores built before them keep their identity), each
    // by its name (two such flags must not hash alike).
    if (t->sit_pairs)
        h = rd_hash_str("sit_pairs", h);
    if (t->sit_item_code)
        h = rd_hash_str("sit_item_code", h);
    if (t->sit_group != RD_SIT_GROUP_USER)
        h = rd_hash_str("sit_group item", h);
    if (t->sit_group != RD_SIT_GROUP_USER && !rd_field_is_item(t->sit_group_by)) {
        h = rd_hash_str("sit_group_by", h);
        h = rd_hash_str(t->sit_group_by, h);
    }
    if (t->batch_tokens == RD_BATCH_TOKENS_FINAL)
        h = rd_hash_str("batch_tokens final", h);
    if (t->two_pass && t->scheme == 2 && t->sit_layers > 0)
        h = rd_hash_str("two_pass", h);
    // The store is built at the builder job's global batch (twenty-seventh session; before, at
    // its per-rank batch): a builder of several ranks builds another store than before, so its
    // checkpoints of earlier builds are refused. One rank: the same store, the same identity.
    int bj = rd_config_token_job(cfg);
    if (bj >= 0 && cfg->cluster.jobs[bj].ranks > 1) {
        h = rd_hash_str("global batch", h);
        int64_t gb = (int64_t)cfg->train.batch_size * cfg->cluster.jobs[bj].ranks;
        h = rd_hash64(&gb, sizeof gb, h);
    }
    return h ? h : 1;
}

void rd_train_ckpt_ident(const rd_config *cfg,
                         const rd_job_config *jc,
                         const rd_model_config *mc,
                         const rd_dataset_info *info,
                         int job_ranks,
                         rd_train_pos *pos) {
    pos->has_ident = 1;
    pos->seed = cfg->run.seed;
    pos->config_hash = rd_train_ckpt_config_hash(cfg, jc, mc);
    pos->model_hash = model_part(mc, 0x6d6f64656cULL);
    pos->n_tables = 0;
    memset(pos->table, 0, sizeof pos->table);
    memset(pos->table_hash, 0, sizeof pos->table_hash);
    memset(pos->table_dim, 0, sizeof pos->table_dim);
    memset(pos->table_optim, 0, sizeof pos->table_optim);
    for (int t = 0; t < cfg->ps.n_tables && pos->n_tables < RD_TRAIN_CKPT_TABLES; t++) {
        const rd_table_config *tc = &cfg->ps.tables[t];
        if (!reads_table(mc, tc))
            continue;
        snprintf(pos->table[pos->n_tables], RD_NAME_MAX, "%s", tc->name);
        pos->table_dim[pos->n_tables] = tc->dim;
        pos->table_optim[pos->n_tables] = tc->optim.kind;
        pos->table_hash[pos->n_tables++] = rd_train_ckpt_table_hash(tc);
    }
    pos->sampling_hash = 0;
    if (job_samples(jc)) {
        uint64_t h = rd_hash64(&jc->negatives.rate, sizeof jc->negatives.rate, 0x6e6567ULL);
        h = rd_hash64(&jc->negatives.pos_rate, sizeof jc->negatives.pos_rate, h);
        pos->sampling_hash = h ? h : 1;
    }
    pos->tokens_hash = mc->tokens.scheme > 0 ? tokens_part(cfg) : 0;
    pos->job_ranks = job_ranks;
    pos->batch_size = cfg->train.batch_size;
    pos->order = cfg->train.order;
    pos->data_events = info ? info->n_events : 0;
    pos->data_crc = info ? info->records_crc : 0;
    pos->split_batch = cfg->data.split.batch_fraction;
    pos->split_holdout = cfg->data.split.holdout_fraction;
    pos->split_windows = cfg->data.split.stream_windows;
    int kind = RD_DENSE_SGD;
    if (rd_dense_optim_parse(cfg->train.optimizer, &kind) != RD_OK)
        kind = RD_DENSE_SGD; // refused by the config check before any run
    pos->opt_kind = kind;
    pos->opt_slots = rd_dense_optim_slots(kind);
}

static const char *order_name(int32_t o) {
    return o == RD_ORDER_TIME ? "time" : o == RD_ORDER_USER ? "user" : "windows";
}

static int table_index(const rd_train_pos *p, const char *name) {
    for (int t = 0; t < p->n_tables && t < RD_TRAIN_CKPT_TABLES; t++)
        if (strcmp(p->table[t], name) == 0)
            return t;
    return -1;
}

// The config hashes differ: name the part. Falls back to the hashes when nothing recorded
// explains it (a version-1 checkpoint with the same seed).
// The table named `name` in a checkpoint's MANIFEST, or NULL.
static const rd_ckpt_table *manifest_table(const rd_ckpt_manifest *m, const char *name) {
    for (uint32_t i = 0; i < m->n_tables && i < RD_MAX_TABLES; i++)
        if (strcmp(m->tables[i].name, name) == 0)
            return &m->tables[i];
    return NULL;
}

static int
config_mismatch(const char *dir, const rd_train_pos *ck, const rd_train_pos *run, rd_errbuf *eb) {
    char what[1024];
    size_t n = 0;
    what[0] = 0;
    // The MANIFEST beside dense.bin records each table's dim and optimizer: with it a table that
    // differs is named with the field (dense.bin keeps one hash per table). Read when present.
    rd_ckpt_manifest *man = rd_malloc(sizeof *man); // about 50 KiB
    rd_errbuf meb;
    rd_errbuf_clear(&meb);
    int man_ok = man && rd_ckpt_read_manifest(dir, man, &meb) == RD_OK;
#define SAY(...)                                                                                   \
    do {                                                                                           \
        if (n < sizeof what) {                                                                     \
            int k_ = snprintf(what + n, sizeof what - n, "%s", n ? "; " : "");                     \
            n += (size_t)(k_ > 0 ? k_ : 0);                                                        \
        }                                                                                          \
        if (n < sizeof what) {                                                                     \
            int k_ = snprintf(what + n, sizeof what - n, __VA_ARGS__);                             \
            n += (size_t)(k_ > 0 ? k_ : 0);                                                        \
        }                                                                                          \
    } while (0)
    if (ck->seed != run->seed)
        SAY("written with run.seed %llu, this run has %llu", (unsigned long long)ck->seed,
            (unsigned long long)run->seed);
    if (ck->has_ident) {
        if (ck->model_hash != run->model_hash)
            SAY("model '%s' differs (architecture, features, seq, tokens, towers or dropout)",
                run->model);
        for (int t = 0; t < run->n_tables && t < RD_TRAIN_CKPT_TABLES; t++) {
            int c = table_index(ck, run->table[t]);
            if (c < 0)
                SAY("table '%s' is not in the checkpoint", run->table[t]);
            else if (ck->table_hash[c] != run->table_hash[t]) {
                const rd_ckpt_table *mt = man_ok ? manifest_table(man, run->table[t]) : NULL;
                if (mt && mt->dim != (uint32_t)run->table_dim[t])
                    SAY("table '%s' is dim %u in the checkpoint, %d in this run", run->table[t],
                        mt->dim, run->table_dim[t]);
                else if (mt && mt->optim != (uint32_t)run->table_optim[t])
                    SAY("table '%s' has optimizer %s in the checkpoint, %s in this run",
                        run->table[t], rd_optim_name((int)mt->optim),
                        rd_optim_name(run->table_optim[t]));
                else if (mt)
                    SAY("table '%s' differs (its dim and optimizer are the same: init_std, "
                        "admit_count, ttl or init_as)",
                        run->table[t]);
                else
                    SAY("table '%s' differs (dim/optimizer/init_std/admit_count/ttl/init_as)",
                        run->table[t]);
            }
        }
        for (int c = 0; c < ck->n_tables && c < RD_TRAIN_CKPT_TABLES; c++)
            if (table_index(run, ck->table[c]) < 0)
                SAY("table '%s' of the checkpoint is not read by this run's model", ck->table[c]);
        if (ck->sampling_hash != run->sampling_hash)
            SAY("the job's negative sampling (negatives.rate / pos_rate) differs");
        // The tables are hashed in the order of ps.tables: the same tables in another order
        // give another hash, and nothing above names it.
        int moved = 0;
        for (int t = 0; t < run->n_tables && t < RD_TRAIN_CKPT_TABLES; t++) {
            int c = table_index(ck, run->table[t]);
            moved |= c >= 0 && c != t;
        }
        if (moved) {
            char a[256], b[256];
            size_t na = 0, nb = 0;
            a[0] = b[0] = 0;
            for (int c = 0; c < ck->n_tables && c < RD_TRAIN_CKPT_TABLES && na < sizeof a; c++) {
                int k =
                    snprintf(a + na, sizeof a - na, "%s%d:%s", c ? ", " : "", c + 1, ck->table[c]);
                na += (size_t)(k > 0 ? k : 0);
            }
            for (int t = 0; t < run->n_tables && t < RD_TRAIN_CKPT_TABLES && nb < sizeof b; t++) {
                int k =
                    snprintf(b + nb, sizeof b - nb, "%s%d:%s", t ? ", " : "", t + 1, run->table[t]);
                nb += (size_t)(k > 0 ? k : 0);
            }
            SAY("the tables are in another order in ps.tables: the checkpoint has %s, this run "
                "has %s (the order is part of the config hash: restore the checkpoint's order)",
                a, b);
        }
    }
#undef SAY
    rd_free(man);
    // The config includes its command-line overrides (train --set; report.json's config_sets).
    if (n)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s: %s (config hash %016llx, this run's %016llx; give the --set "
                          "overrides the checkpoint was trained with, if any)",
                          dir, what, (unsigned long long)ck->config_hash,
                          (unsigned long long)run->config_hash);
    return rd_err_set(eb, RD_ERR_SCHEMA,
                      "%s: written for another model or table config (config hash %016llx, "
                      "expected %016llx; give the --set overrides the checkpoint was trained "
                      "with, if any)",
                      dir, (unsigned long long)ck->config_hash,
                      (unsigned long long)run->config_hash);
}

static const char *dense_optim_name(int32_t kind) {
    static const char *const name[3] = {"sgd", "adam", "adamw"};
    return kind >= 0 && kind < 3 ? name[kind] : "(unknown)";
}

int rd_train_ckpt_check(const char *dir,
                        const rd_train_pos *ck,
                        const rd_train_pos *run,
                        const char *data_dir,
                        unsigned what,
                        rd_errbuf *eb) {
    if ((what & RD_TRAIN_CKPT_CHECK_CONFIG) && ck->config_hash != run->config_hash)
        return config_mismatch(dir, ck, run, eb);
    // The header's, in every version: adam <-> adamw continue the same moments; sgd keeps none.
    if ((what & RD_TRAIN_CKPT_CHECK_OPTIMIZER) && ck->opt_slots != run->opt_slots)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s was trained with train.optimizer %s (%llu state floats a "
                          "parameter); this run's %s (%llu) cannot continue that state (resume "
                          "with %s, or start a new run)",
                          dir, dense_optim_name(ck->opt_kind), (unsigned long long)ck->opt_slots,
                          dense_optim_name(run->opt_kind), (unsigned long long)run->opt_slots,
                          ck->opt_slots ? "adam or adamw" : "sgd");
    if (!ck->has_ident)
        return RD_OK;
    if ((what & RD_TRAIN_CKPT_CHECK_DATA) &&
        (ck->data_events != run->data_events || ck->data_crc != run->data_crc))
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "%s was trained on another dataset (%llu events, records CRC-32C "
                          "0x%08x) than the one in %s (%llu events, 0x%08x)",
                          dir, (unsigned long long)ck->data_events, ck->data_crc,
                          data_dir ? data_dir : "this run's data.dir",
                          (unsigned long long)run->data_events, run->data_crc);
    if ((what & RD_TRAIN_CKPT_CHECK_PARTITION) &&
        (ck->job_ranks != run->job_ranks || ck->batch_size != run->batch_size ||
         ck->order != run->order))
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s was written with %d rank%s x batch %d in %s order; this run has "
                          "%d x %d in %s order (its position, a step of the phase, only means "
                          "the same examples for the same job ranks, train.batch_size and "
                          "train.order)",
                          dir, ck->job_ranks, ck->job_ranks == 1 ? "" : "s", ck->batch_size,
                          order_name(ck->order), run->job_ranks, run->batch_size,
                          order_name(run->order));
    // The phases: batch period, stream windows, holdout (a version-2 file did not record them).
    if ((what & RD_TRAIN_CKPT_CHECK_PARTITION) && ck->split_windows > 0 &&
        (ck->split_batch != run->split_batch || ck->split_holdout != run->split_holdout ||
         ck->split_windows != run->split_windows))
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s was written with data.split batch_fraction %.15g, holdout_fraction "
                          "%.15g, stream_windows %d; this run has %.15g, %.15g, %d (its position, "
                          "a step of the batch period or of a stream window, only means the same "
                          "examples under the same split)",
                          dir, ck->split_batch, ck->split_holdout, ck->split_windows,
                          run->split_batch, run->split_holdout, run->split_windows);
    if ((what & RD_TRAIN_CKPT_CHECK_TOKENS) && ck->tokens_hash != run->tokens_hash)
        return rd_err_set(
            eb, RD_ERR_SCHEMA,
            "%s was trained on tokens built with other settings (tokens.window, "
            "sit_layers, scheme, batch_order, batch_tokens, two_pass, sit_labels, sit_pairs, "
            "sit_item_code, sit_group, dim, dtype, side or the source model differ; "
            "token hash %016llx, this run's %016llx)",
            dir, (unsigned long long)ck->tokens_hash, (unsigned long long)run->tokens_hash);
    return RD_OK;
}

int rd_train_ckpt_check_epochs(const char *dir, const rd_train_pos *ck, int epochs, rd_errbuf *eb) {
    // In the stream, epoch is the writer's train.epochs (next_phase in trainer.c): the stream of
    // a run of other epochs comes after other batch training, and such a resume skipped (or
    // never reached) the batch epochs this run asks for.
    if (ck->window >= 0 && ck->epoch != epochs)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s is in the stream (window %d) of a run of train.epochs %d; this run "
                          "has train.epochs %d (the stream follows the batch epochs: resume with "
                          "train.epochs %d, or start a new run)",
                          dir, ck->window, ck->epoch, epochs, ck->epoch);
    if (ck->window < 0 && ck->epoch >= epochs)
        return rd_err_set(
            eb, RD_ERR_SCHEMA,
            "%s is in batch epoch %lld (counting from 1); this run has train.epochs %d (resume "
            "with train.epochs %lld or more)",
            dir, (long long)ck->epoch + 1, epochs, (long long)ck->epoch + 1);
    return RD_OK;
}

// The first NaN or inf float of the parameters and optimizer slots, named into eb.
// @return RD_OK or RD_ERR_DIVERGED
static int dense_finite(const char *dir, const rd_model *m, rd_errbuf *eb) {
    for (size_t s = 0; s <= m->opt_slots; s++) {
        const float *x = s == 0 ? m->params : m->opt_state + (s - 1) * m->n_slab;
        for (size_t i = 0; i < m->n_slab; i++) {
            if (isfinite(x[i]))
                continue;
            const char *tensor = "";
            size_t at = i;
            for (int t = 0; t < m->n_tensors; t++)
                if (i >= m->tensors[t].offset && i - m->tensors[t].offset < m->tensors[t].n) {
                    tensor = m->tensors[t].name;
                    at = i - m->tensors[t].offset;
                }
            char what[48] = "";
            if (s > 0)
                snprintf(what, sizeof what, "optimizer slot %zu of ", s - 1);
            return rd_err_set(eb, RD_ERR_DIVERGED,
                              "%s: %sparameter %zu (%s[%zu]) is %s: the dense optimizer diverged; "
                              "not written",
                              dir, what, i, tensor[0] ? tensor : "slab", at,
                              isnan(x[i]) ? "NaN" : "inf");
        }
    }
    return RD_OK;
}

int rd_train_ckpt_write_dense(const char *dir,
                              const rd_train_pos *pos,
                              const rd_model *m,
                              const rd_dense_optim *opt,
                              rd_errbuf *eb) {
    char path[RD_PATH_MAX + 64];
    if (snprintf(path, sizeof path, "%s/%s", dir, RD_TRAIN_CKPT_DENSE) >= (int)sizeof path)
        return rd_err_set(eb, RD_ERR_ARG, "%s: checkpoint path too long", dir);
    // A parameter of NaN or inf is a diverged optimizer's, and the update of the step before a
    // checkpoint has no forward pass after it whose loss check would see it: saved, a resumed
    // run would train on with it. Refused, like a PS table's row (rd_ckpt verify).
    int frc = dense_finite(dir, m, eb);
    if (frc != RD_OK)
        return frc;
    size_t nf = m->n_slab * (1 + m->opt_slots);
    size_t bytes = HDR_BYTES + nf * sizeof(float) + 4;
    wbuf w = {rd_xmalloc(bytes), 0};
    uint32_t version = RD_TRAIN_CKPT_VERSION, kind = (uint32_t)opt->kind;
    uint64_t n_slab = m->n_slab, n_params = m->n_params, slots = m->opt_slots, t = opt->t;
    put(&w, dense_magic, 8);
    PUT(&w, version);
    PUT(&w, kind);
    PUT(&w, n_slab);
    PUT(&w, n_params);
    PUT(&w, slots);
    PUT(&w, t);
    PUT(&w, opt->lr);
    PUT(&w, opt->beta1);
    PUT(&w, opt->beta2);
    PUT(&w, opt->eps);
    PUT(&w, opt->weight_decay);
    PUT(&w, pos->step);
    PUT(&w, pos->epoch);
    PUT(&w, pos->window);
    PUT(&w, pos->range_step);
    PUT(&w, pos->trained);
    PUT(&w, pos->loss_ema);
    PUT(&w, pos->have_loss);
    PUT(&w, pos->seed);
    PUT(&w, pos->config_hash);
    char name[RD_NAME_MAX];
    memset(name, 0, sizeof name);
    snprintf(name, sizeof name, "%s", pos->job);
    put(&w, name, sizeof name);
    memset(name, 0, sizeof name);
    snprintf(name, sizeof name, "%s", pos->model);
    put(&w, name, sizeof name);
    // A writer that did not fill the identity (has_ident 0: a tool, a test) says so, and the file
    // reads like a version-1 one: nothing to check rather than a dataset of 0 events.
    uint32_t has_ident = pos->has_ident ? 1 : 0;
    PUT(&w, has_ident);
    PUT(&w, pos->data_events);
    PUT(&w, pos->data_crc);
    PUT(&w, pos->job_ranks);
    PUT(&w, pos->batch_size);
    PUT(&w, pos->order);
    PUT(&w, pos->tokens_hash);
    PUT(&w, pos->model_hash);
    PUT(&w, pos->sampling_hash);
    uint32_t n_tables = pos->n_tables < 0                      ? 0
                        : pos->n_tables > RD_TRAIN_CKPT_TABLES ? RD_TRAIN_CKPT_TABLES
                                                               : (uint32_t)pos->n_tables;
    PUT(&w, n_tables);
    for (int k = 0; k < RD_TRAIN_CKPT_TABLES; k++) {
        memset(name, 0, sizeof name);
        uint64_t th = 0;
        if ((uint32_t)k < n_tables) {
            snprintf(name, sizeof name, "%s", pos->table[k]);
            th = pos->table_hash[k];
        }
        put(&w, name, sizeof name);
        PUT(&w, th);
    }
    // A writer without the identity records no split either (read back as not recorded).
    double sb = has_ident ? pos->split_batch : 0, sh = has_ident ? pos->split_holdout : 0;
    int32_t sw = has_ident && pos->split_windows > 0 ? pos->split_windows : 0;
    uint32_t zero = 0;
    PUT(&w, sb);
    PUT(&w, sh);
    PUT(&w, sw);
    PUT(&w, zero);
    put(&w, m->params, m->n_slab * sizeof(float));
    if (m->opt_slots)
        put(&w, m->opt_state, m->n_slab * m->opt_slots * sizeof(float));
    uint32_t crc = rd_crc32c(0, w.p, w.off);
    PUT(&w, crc);
    int rc = rd_lmdbx_write_file_atomic(path, w.p, w.off, eb);
    rd_free(w.p);
    return rc;
}

typedef struct hdr {
    uint32_t version, kind;
    uint64_t n_slab, n_params, slots, t;
    float lr, beta1, beta2, eps, wd;
    rd_train_pos pos;
} hdr;

static void parse_hdr(const unsigned char *p, hdr *h) {
    rbuf r = {p, 8};
    memset(h, 0, sizeof *h);
    GET(&r, h->version);
    GET(&r, h->kind);
    GET(&r, h->n_slab);
    GET(&r, h->n_params);
    GET(&r, h->slots);
    GET(&r, h->t);
    GET(&r, h->lr);
    GET(&r, h->beta1);
    GET(&r, h->beta2);
    GET(&r, h->eps);
    GET(&r, h->wd);
    GET(&r, h->pos.step);
    GET(&r, h->pos.epoch);
    GET(&r, h->pos.window);
    GET(&r, h->pos.range_step);
    GET(&r, h->pos.trained);
    GET(&r, h->pos.loss_ema);
    GET(&r, h->pos.have_loss);
    GET(&r, h->pos.seed);
    GET(&r, h->pos.config_hash);
    get(&r, h->pos.job, RD_NAME_MAX);
    get(&r, h->pos.model, RD_NAME_MAX);
    h->pos.job[RD_NAME_MAX - 1] = h->pos.model[RD_NAME_MAX - 1] = 0;
    h->pos.opt_kind = (int32_t)h->kind;
    h->pos.opt_slots = h->slots;
    if (h->version < 2) // no identity record: has_ident stays 0
        return;
    uint32_t has_ident;
    GET(&r, has_ident);
    GET(&r, h->pos.data_events);
    GET(&r, h->pos.data_crc);
    GET(&r, h->pos.job_ranks);
    GET(&r, h->pos.batch_size);
    GET(&r, h->pos.order);
    GET(&r, h->pos.tokens_hash);
    GET(&r, h->pos.model_hash);
    GET(&r, h->pos.sampling_hash);
    uint32_t n_tables;
    GET(&r, n_tables);
    h->pos.n_tables = n_tables > RD_TRAIN_CKPT_TABLES ? RD_TRAIN_CKPT_TABLES : (int32_t)n_tables;
    for (int t = 0; t < RD_TRAIN_CKPT_TABLES; t++) {
        get(&r, h->pos.table[t], RD_NAME_MAX);
        h->pos.table[t][RD_NAME_MAX - 1] = 0;
        GET(&r, h->pos.table_hash[t]);
    }
    if (h->version >= 3) { // else split_windows stays 0: not recorded
        GET(&r, h->pos.split_batch);
        GET(&r, h->pos.split_holdout);
        GET(&r, h->pos.split_windows);
        if (h->pos.split_windows < 0)
            h->pos.split_windows = 0;
    }
    if (has_ident) // else recorded as unknown: the fields are not the run's
        h->pos.has_ident = 1;
    else
        memset(&h->pos.has_ident, 0, sizeof *h - offsetof(hdr, pos.has_ident));
}

// Load and check the whole file; *buf is freed by the caller (rd_free). The header is read
// first and the file's size must be the one it implies, so that a damaged or foreign file is
// refused before its bytes are: a file of many GB would otherwise be loaded whole (or abort the
// allocation) only to fail the CRC.
static int load_file(const char *dir, unsigned char **buf, size_t *len, rd_errbuf *eb) {
    char path[RD_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, RD_TRAIN_CKPT_DENSE);
    *buf = NULL;
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f);
    if (o != 0)
        return rd_err_set(eb, o < 0 && errno == ENOENT ? RD_ERR_NOTFOUND : RD_ERR_IO, "%s: %s",
                          path, o > 0 ? "not a regular file" : strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < HDR_V1 + 4 ||
        (uint64_t)st.st_size > ((uint64_t)1 << 40)) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: %lld bytes is not a dense checkpoint", path,
                          (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    // The version-1 header first; a version-2 file's identity record (and a version-3 file's
    // split) follows it.
    unsigned char head[HDR_BYTES];
    if (fread(head, 1, HDR_V1, f) != HDR_V1) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_IO, "%s: short read", path);
    }
    if (memcmp(head, dense_magic, 8) != 0) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: bad magic (not a dense checkpoint)", path);
    }
    uint32_t version;
    memcpy(&version, head + 8, sizeof version);
    if (version < 1 || version > RD_TRAIN_CKPT_VERSION) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_VERSION, "%s: version %u, this build reads versions 1..%d",
                          path, version, RD_TRAIN_CKPT_VERSION);
    }
    size_t hb = hdr_bytes(version);
    if (n < hb + 4 || fread(head + HDR_V1, 1, hb - HDR_V1, f) != hb - HDR_V1) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: %zu bytes, shorter than its header", path, n);
    }
    hdr h;
    parse_hdr(head, &h);
    // The position as a run writes it (its CRC does not tell an edited file): the trainer and the
    // checks before a resume compute with epoch, window and the step counts, and `window + 1` or
    // `epoch + 1` of 2^31 - 1 overflowed, a negative or an unreachable one resumed a schedule
    // that does not exist.
    const rd_train_pos *ps = &h.pos;
    const char *bad = ps->step < 0                                           ? "step"
                      : ps->range_step < 0 || ps->range_step > ps->step      ? "range step"
                      : ps->epoch < 0 || ps->epoch > RD_MAX_EPOCHS           ? "epoch"
                      : ps->window < -1 || ps->window > RD_SPLIT_MAX_WINDOWS ? "window"
                                                                             : NULL;
    if (bad) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s: position out of range in its %s (step %lld, epoch %d, window %d, "
                          "range step %lld; a run writes epoch 0..%d, window -1..%d and 0 <= "
                          "range step <= step)",
                          path, bad, (long long)ps->step, ps->epoch, ps->window,
                          (long long)ps->range_step, RD_MAX_EPOCHS, RD_SPLIT_MAX_WINDOWS);
    }
    // slots <= 2 and n_slab <= 2^36 keep the product far from overflow.
    uint64_t want = h.slots > 2 || h.n_slab > ((uint64_t)1 << 36)
                        ? 0
                        : hb + h.n_slab * (1 + h.slots) * sizeof(float) + 4;
    if (want != n) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s: %zu bytes, the header implies %llu (%llu floats, %llu slots)", path,
                          n, (unsigned long long)want, (unsigned long long)h.n_slab,
                          (unsigned long long)h.slots);
    }
    unsigned char *p = rd_malloc(n);
    if (!p) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: no memory to load %zu bytes", path, n);
    }
    memcpy(p, head, hb);
    size_t got = hb + fread(p + hb, 1, n - hb, f);
    fclose(f);
    if (got != n) {
        rd_free(p);
        return rd_err_set(eb, RD_ERR_IO, "%s: short read", path);
    }
    uint32_t crc;
    memcpy(&crc, p + n - 4, 4);
    if (rd_crc32c(0, p, n - 4) != crc) {
        rd_free(p);
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: CRC mismatch (file damaged)", path);
    }
    *buf = p;
    *len = n;
    return RD_OK;
}

int rd_train_ckpt_read_pos(const char *dir, rd_train_pos *pos, rd_errbuf *eb) {
    unsigned char *p;
    size_t n;
    int rc = load_file(dir, &p, &n, eb);
    if (rc != RD_OK)
        return rc;
    hdr h;
    parse_hdr(p, &h);
    rd_free(p);
    *pos = h.pos;
    return RD_OK;
}

int rd_train_ckpt_read_dense(const char *dir,
                             uint64_t expect_hash,
                             rd_train_pos *pos,
                             rd_model *m,
                             rd_dense_optim *opt,
                             rd_errbuf *eb) {
    unsigned char *p;
    size_t n;
    int rc = load_file(dir, &p, &n, eb);
    if (rc != RD_OK)
        return rc;
    hdr h;
    parse_hdr(p, &h);
    size_t hb = hdr_bytes(h.version);
    size_t want = hb + (size_t)(h.n_slab * (1 + h.slots)) * sizeof(float) + 4;
    if (h.slots > 2 || h.n_slab > ((uint64_t)1 << 36) || want != n)
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s/%s: %zu bytes, the header implies %zu", dir,
                        RD_TRAIN_CKPT_DENSE, n, want);
    else if (expect_hash && h.pos.config_hash != expect_hash)
        rc =
            rd_err_set(eb, RD_ERR_SCHEMA,
                       "%s: written for another model or table config (config hash %016llx, "
                       "expected %016llx)",
                       dir, (unsigned long long)h.pos.config_hash, (unsigned long long)expect_hash);
    else if (h.n_slab != m->n_slab || h.n_params != m->n_params)
        rc = rd_err_set(eb, RD_ERR_SCHEMA,
                        "%s: dense slab of %llu floats (%llu params), the model has %zu (%zu)", dir,
                        (unsigned long long)h.n_slab, (unsigned long long)h.n_params, m->n_slab,
                        m->n_params);
    else if (opt && h.slots != m->opt_slots)
        rc = rd_err_set(eb, RD_ERR_SCHEMA,
                        "%s: %llu optimizer slots per parameter, the model has %zu", dir,
                        (unsigned long long)h.slots, m->opt_slots);
    if (rc == RD_OK) {
        const unsigned char *q = p + hb;
        memcpy(m->params, q, m->n_slab * sizeof(float));
        if (opt) {
            if (m->opt_slots)
                memcpy(m->opt_state, q + m->n_slab * sizeof(float),
                       m->n_slab * m->opt_slots * sizeof(float));
            opt->t = h.t;
        }
        if (pos)
            *pos = h.pos;
    }
    rd_free(p);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Directories

int rd_train_ckpt_rmtree(const char *path, rd_errbuf *eb) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? RD_OK : rd_err_set(eb, RD_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0)
            return rd_err_set(eb, RD_ERR_IO, "remove %s: %s", path, strerror(errno));
        return RD_OK;
    }
    DIR *d = opendir(path);
    if (!d)
        return rd_err_set(eb, RD_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = RD_OK;
    struct dirent *e;
    while (rc == RD_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[RD_PATH_MAX * 2];
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub) {
            rc = rd_err_set(eb, RD_ERR_IO, "%s/%s: path too long", path, e->d_name);
            break;
        }
        rc = rd_train_ckpt_rmtree(sub, eb);
    }
    closedir(d);
    if (rc == RD_OK && rmdir(path) != 0)
        rc = rd_err_set(eb, RD_ERR_IO, "rmdir %s: %s", path, strerror(errno));
    return rc;
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int rd_train_ckpt_commit(const char *partial, const char *final, rd_errbuf *eb) {
    // The replaced directory is moved to a hidden name first (".step-N.old"), so that a crash
    // never leaves a half-removed checkpoint under a step-N name.
    char old[RD_PATH_MAX * 2];
    const char *base = strrchr(final, '/');
    if (base)
        snprintf(old, sizeof old, "%.*s/.%s.old", (int)(base - final), final, base + 1);
    else
        snprintf(old, sizeof old, ".%s.old", final);
    struct stat st;
    int had = stat(final, &st) == 0;
    if (had) {
        int rc = rd_train_ckpt_rmtree(old, eb);
        if (rc != RD_OK)
            return rc;
        if (rename(final, old) != 0)
            return rd_err_set(eb, RD_ERR_IO, "rename %s: %s", final, strerror(errno));
    }
    if (rename(partial, final) != 0)
        return rd_err_set(eb, RD_ERR_IO, "rename %s to %s: %s", partial, final, strerror(errno));
    char parent[RD_PATH_MAX * 2];
    snprintf(parent, sizeof parent, "%s", final);
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = 0;
        sync_dir(parent[0] ? parent : "/");
    }
    return had ? rd_train_ckpt_rmtree(old, eb) : RD_OK;
}

// Complete checkpoints of a job folder, sorted by step (ascending). Returns the count; *steps is
// freed by the caller.
static int list_steps(const char *job_dir, int64_t **steps, size_t *n, rd_errbuf *eb) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(job_dir);
    if (!d)
        return errno == ENOENT ? RD_ERR_NOTFOUND
                               : rd_err_set(eb, RD_ERR_IO, "%s: %s", job_dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long long s;
        char tail;
        if (strncmp(e->d_name, "step-", 5) != 0 || sscanf(e->d_name + 5, "%lld%c", &s, &tail) != 1)
            continue;
        // Only the names this module writes: a copy renamed "step-40" would be taken for the
        // newest and then looked up under its padded name.
        char canon[32];
        snprintf(canon, sizeof canon, "step-%012lld", s);
        if (strcmp(e->d_name, canon) != 0)
            continue;
        char man[RD_PATH_MAX * 2];
        snprintf(man, sizeof man, "%s/%s/MANIFEST", job_dir, e->d_name);
        if (access(man, R_OK) != 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *steps = rd_xrealloc(*steps, cap * sizeof **steps);
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    for (size_t i = 1; i < *n; i++) // insertion sort: a handful of checkpoints
        for (size_t j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
            int64_t t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = t;
        }
    return RD_OK;
}

// Remove one checkpoint: rename it to a hidden name first (atomic), then delete it, so that a
// crash midway never leaves a step-N directory with some of its files gone.
static int drop_step(const char *job_dir, int64_t step, rd_errbuf *eb) {
    char p[RD_PATH_MAX * 2], q[RD_PATH_MAX * 2 + 16];
    snprintf(p, sizeof p, "%s/step-%012lld", job_dir, (long long)step);
    snprintf(q, sizeof q, "%s/.step-%012lld.deleting", job_dir, (long long)step);
    int rc = rd_train_ckpt_rmtree(q, eb);
    if (rc == RD_OK && rename(p, q) != 0)
        rc = rd_err_set(eb, RD_ERR_IO, "rename %s: %s", p, strerror(errno));
    return rc == RD_OK ? rd_train_ckpt_rmtree(q, eb) : rc;
}

// Hidden leftovers of crashes (".step-N.partial", ".step-N.old", ".step-N.deleting").
static int drop_hidden(const char *job_dir, rd_errbuf *eb) {
    DIR *d = opendir(job_dir);
    if (!d)
        return errno == ENOENT ? RD_OK
                               : rd_err_set(eb, RD_ERR_IO, "%s: %s", job_dir, strerror(errno));
    int rc = RD_OK;
    struct dirent *e;
    while (rc == RD_OK && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".step-", 6) != 0)
            continue;
        char p[RD_PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/%s", job_dir, e->d_name);
        rc = rd_train_ckpt_rmtree(p, eb);
    }
    closedir(d);
    return rc;
}

// Is the checkpoint <job_dir>/step-N at the start of a phase (range_step 0)? A file that cannot
// be read is not: retention then treats it like any other.
static int at_phase_start(const char *job_dir, int64_t step) {
    char p[RD_PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/step-%012lld", job_dir, (long long)step);
    rd_train_pos pos;
    rd_errbuf leb;
    rd_errbuf_clear(&leb);
    return rd_train_ckpt_read_pos(p, &pos, &leb) == RD_OK && pos.range_step == 0;
}

int rd_train_ckpt_prune(
    const char *job_dir, int64_t newest, int keep, int keep_starts, rd_errbuf *eb) {
    int64_t *steps;
    size_t n;
    int rc = list_steps(job_dir, &steps, &n, eb);
    if (rc == RD_ERR_NOTFOUND)
        return RD_OK;
    // Checkpoints beyond `newest` belong to an earlier run in the same folder (this one has not
    // reached them): drop them, so that they can neither outrank this run's nor be resumed from
    // by mistake.
    while (rc == RD_OK && n > 0 && steps[n - 1] > newest)
        rc = drop_step(job_dir, steps[--n], eb);
    // Of the older ones, the newest keep_starts at the start of a phase stay too.
    size_t starts = 0;
    for (size_t i = n; rc == RD_OK && keep >= 0 && i-- > 0;) {
        if (i + (size_t)keep >= n)
            continue; // among the newest `keep`
        if ((int)starts < keep_starts && at_phase_start(job_dir, steps[i])) {
            starts++;
            continue;
        }
        rc = drop_step(job_dir, steps[i], eb);
    }
    // The checkpoint being committed has been renamed already, so no hidden leftover is live.
    if (rc == RD_OK)
        rc = drop_hidden(job_dir, eb);
    rd_free(steps);
    return rc;
}

int rd_train_ckpt_clear(const char *job_dir, int64_t **removed, size_t *n, rd_errbuf *eb) {
    *removed = NULL;
    *n = 0;
    int64_t *steps;
    size_t ns;
    int rc = list_steps(job_dir, &steps, &ns, eb);
    if (rc == RD_ERR_NOTFOUND)
        return RD_OK;
    size_t k = 0;
    // Newest first: a crash midway leaves the older ones, never a gap under a newer one that
    // a later `--resume <root>` could mistake for this run's latest.
    while (rc == RD_OK && k < ns && (rc = drop_step(job_dir, steps[ns - 1 - k], eb)) == RD_OK)
        k++;
    if (rc == RD_OK)
        rc = drop_hidden(job_dir, eb);
    for (size_t i = 0; i < k; i++) // removed ones, ascending
        steps[i] = steps[ns - k + i];
    *n = k;
    if (k)
        *removed = steps;
    else
        rd_free(steps);
    if (rc != RD_OK)
        rd_err_prefix(eb, "removing the earlier checkpoints of %s: ", job_dir);
    return rc;
}

int rd_train_ckpt_list(
    const char *root, const char *job, int64_t **steps, size_t *n, rd_errbuf *eb) {
    char jd[RD_PATH_MAX * 2];
    snprintf(jd, sizeof jd, "%s/%s", root, job);
    int rc = list_steps(jd, steps, n, eb);
    return rc == RD_ERR_NOTFOUND ? RD_OK : rc;
}

// Why <root>/<job> holds no complete checkpoint, said about what `root` is: a path given as
// --ckpt / --resume may not exist, be a file, be the job's own folder (step-N folders inside),
// be a step folder without dense.bin, or be a folder with no checkpoint of the job at all.
static int explain_no_checkpoint(const char *root, const char *job, const char *jd, rd_errbuf *eb) {
    struct stat st;
    char p[RD_PATH_MAX * 2 + 32];
    if (stat(root, &st) != 0)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "%s: %s (expected a checkpoint root holding %s/step-N, or a step-N "
                          "folder)",
                          root, strerror(errno), job);
    if (!S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "%s: not a directory (expected a checkpoint root holding %s/step-N, or "
                          "a step-N folder)",
                          root, job);
    snprintf(p, sizeof p, "%s/MANIFEST", root);
    char tok[RD_PATH_MAX * 2 + 32];
    snprintf(tok, sizeof tok, "%s/shard-0000", root); // a token store's first shard (rd/tokens.h)
    if (access(p, F_OK) == 0 && access(tok, F_OK) == 0)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "%s is an instance-token store (MANIFEST + shard-NNNN/; `recdistill "
                          "tokens` reads it), not a training checkpoint: give a step-N folder "
                          "that `recdistill train` wrote, or a checkpoint root holding %s/step-N",
                          root, job);
    if (access(p, F_OK) == 0)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "%s: a checkpoint of the PS tables only, without %s (incomplete, or "
                          "written by rd_kv_save or a table tool from one): training state is "
                          "needed, give a step-N folder that `recdistill train` wrote",
                          root, RD_TRAIN_CKPT_DENSE);
    if (stat(jd, &st) == 0 && S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "%s: no complete checkpoint (no step-N folder with a MANIFEST)", jd);
    int64_t *steps = NULL;
    size_t n = 0;
    rd_errbuf local;
    rd_errbuf_clear(&local);
    int own = list_steps(root, &steps, &n, &local) == RD_OK && n > 0;
    rd_free(steps);
    if (own)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "%s holds step-N folders itself (one job's checkpoint folder): give one "
                          "of those step-N folders, or the checkpoint root above it that holds "
                          "%s/step-N",
                          root, job);
    return rd_err_set(eb, RD_ERR_NOTFOUND,
                      "%s: no checkpoint of job '%s' inside (no %s/step-N folder, and no "
                      "MANIFEST + %s of a step-N folder)",
                      root, job, job, RD_TRAIN_CKPT_DENSE);
}

int rd_train_ckpt_latest(const char *root, const char *job, char *out, size_t cap, rd_errbuf *eb) {
    char jd[RD_PATH_MAX * 2];
    snprintf(jd, sizeof jd, "%s/%s", root, job);
    int64_t *steps = NULL;
    size_t n = 0;
    struct stat st;
    int rc = stat(root, &st) != 0 || !S_ISDIR(st.st_mode) ? RD_ERR_NOTFOUND
                                                          : list_steps(jd, &steps, &n, eb);
    if (rc == RD_OK && n == 0)
        rc = RD_ERR_NOTFOUND;
    if (rc == RD_ERR_NOTFOUND)
        explain_no_checkpoint(root, job, jd, eb);
    else if (rc == RD_OK && rd_train_ckpt_path(root, job, steps[n - 1], out, cap) != RD_OK)
        rc = rd_err_set(eb, RD_ERR_RANGE, "%s: path too long", jd);
    rd_free(steps);
    return rc;
}
