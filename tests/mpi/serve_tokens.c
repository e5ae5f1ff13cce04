// serve_tokens.c — serving a model with an instance-token branch (IAT) against the training-time
// model (3 ranks: 2 PS + 1 worker).
//
// A small student reads tokens of the run's store (the job builds it with its source model) and
// trains; `train` writes its final checkpoint. The worker then:
//   1. scores every holdout record with the trainer's own forward (rd_trainer_score: tokens
//      fetched through the PS ranks) — the reference;
//   2. exports the bundle, opens the store read-only (as a serving process does, beside the PS
//      ranks that own it) and scores the same records one request each, tokens fetched by
//      rd_serve_fetch_tokens: |logit difference| <= 1e-5, the logits vary, and the tokens move
//      them (the same requests without tokens score otherwise);
//   3. scores requests of 16 candidates of other items and other numeric inputs: each candidate
//      equals its one-candidate request (with tokens.search each candidate picks the tokens of its
//      own item);
//   4. bad input: too many tokens, tokens or item keys missing, a NaN token, another store of the
//      same shape, the bundle rewritten as version 3 (which never held a token branch), an export
//      without the store or with another search key than the checkpoint's; with a search by an
//      item attribute, the bundle rewritten as version 4 (no item map) and with its map out of
//      order — each a clear error code.
// Three sessions: a DIN branch over user-order tokens with side values and their residuals,
// summaries, same-second tokens and standardised tokens; a transformer branch over temporal-order
// tokens with a search by item, a query from the request and the history, and history statistics
// (seq.stats: numeric inputs of the request, ahead of the token summaries); a DIN branch over
// user-order tokens searched by the item's series (tokens.search_by: series, the synthetic data's
// item attribute), whose picks differ from a search by item for many requests (counted: the
// test could not pass if the bundle's item map were not applied).
#include "ps_test_util.h"

#include <math.h>
#include <stddef.h>
#include <sys/stat.h>

#include "rd/dataset.h"
#include "rd/hash.h"
#include "rd/serve.h"
#include "rd/tokens.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"

static int g_errs;
static int g_search; // 1: transformer branch, tokens.search, query request_seq; 2: DIN branch,
                     // tokens.search by series

static const char *yaml_fmt =
    "run: {name: st, seed: 7, out_dir: %s/run%d}\n"
    "cluster:\n  ps_ranks: 2\n  poll_us_max: 100\n"
    "  jobs:\n    - {name: student, role: student, model: small}\n"
    "data:\n  source: synthetic\n  dir: %s/data%d\n  history_max: 16\n"
    "  synthetic: {events: 3000, users: 30, items: 120, feedback: 1}\n"
    "  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}\n"
    "ps:\n  tables:\n    - {name: s_user, dim: 4}\n"
    "    - {name: s_item, dim: 4, optimizer: {type: adam, lr: 0.01}}\n"
    "    - {name: k_user, dim: 4}\n    - {name: k_item, dim: 4}\n"
    "models:\n  - name: small\n    features:\n      - {field: user, table: s_user}\n"
    "      - {field: item, table: s_item}\n"
    "%s"
    "    tokens: %s\n    mlp: [8]\n    two_towers: true\n"
    "  - name: src\n    features:\n      - {field: user, table: k_user}\n"
    "      - {field: item, table: k_item}\n    mlp: [8]\n"
    "tokens: {dim: 6, scheme: %d, sit_layers: 1, window: 4, source_model: src,\n"
    "         side: [engagement], side_residual: %s}\n"
    "train: {batch_size: 48, epochs: 2}\n"
    "output: {progress_every_s: 0}\n";

static const char *session_name(void) {
    return g_search == 2 ? "din-series" : g_search ? "transformer-search" : "din";
}

static void make_config(rd_config *cfg, const char *dir) {
    char text[4096];
    if (g_search == 2)
        snprintf(text, sizeof text, yaml_fmt, dir, 3, dir, 3, "",
                 "{scheme: 2, length: 4, search: 12, search_by: series, kind: din, adapter: 4, "
                 "stats: [2]}",
                 2, "false");
    else if (g_search)
        snprintf(text, sizeof text, yaml_fmt, dir, 2, dir, 2,
                 "    seq: {kind: mean, length: 8, table: s_item, stats: [4]}\n",
                 "{scheme: 1, length: 4, search: 12, kind: transformer, layers: 1, heads: 2, "
                 "adapter: 4, query: request_seq, stats: [2]}",
                 1, "false");
    else
        snprintf(text, sizeof text, yaml_fmt, dir, 1, dir, 1, "",
                 "{scheme: 2, length: 6, kind: din, adapter: 4, gate: true, stats: [2, 4], "
                 "same_time: earlier, norm: true}",
                 2, "true");
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_config_parse_string(text, strlen(text), "serve_tokens", cfg, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "config: %s", eb.msg);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

// One holdout record as a request of the bundle: keys, history, numeric inputs and its tokens
// from the store (buffers of sv), the candidate's item key.
static void record_request(rd_serve *sv,
                           const rd_dataset *ds,
                           rd_token_store *st,
                           uint64_t rec,
                           uint64_t *keys,
                           uint64_t *hist,
                           uint8_t *hl,
                           float *num,
                           uint64_t *item,
                           rd_serve_request *rq) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_serve_request_from_dataset(sv, ds, rec, keys, hist, hl, num, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "request from dataset: %s", eb.msg);
    const rd_record *r = rd_dataset_record(ds, rec);
    memset(rq, 0, sizeof *rq);
    rq->n = 1;
    rq->keys = keys;
    rq->hist_items = hist;
    rq->hist_labels = hl;
    rq->numeric = num;
    *item = r->item_key;
    rq->items = item;
    rc = rd_serve_fetch_tokens(sv, st, r->user_key, r->ts, r->id, rq, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "fetch tokens: %s", eb.msg);
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
    char ckpt[RD_PATH_MAX * 2], bundle[RD_PATH_MAX + 64], p[RD_PATH_MAX + 64];
    snprintf(bundle, sizeof bundle, "%s/student_%s.rdsv", dir, session_name());
    int rc = rd_train_ckpt_latest(cfg->ps.checkpoint_dir, "student", ckpt, sizeof ckpt, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "no checkpoint: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rd_dataset *ds = NULL;
    RD_ASSERT(rd_dataset_open(cfg->data.dir, 0, &ds, &eb) == RD_OK);
    rd_range h = rd_dataset_holdout(ds);
    const size_t n = (size_t)(h.end - h.begin);
    uint64_t *recs = rd_xmalloc(n * sizeof *recs);
    for (size_t i = 0; i < n; i++)
        recs[i] = h.begin + i;
    float *ref = rd_xmalloc(n * sizeof *ref), *solo = rd_xmalloc(n * sizeof *solo);
    // 1. The reference.
    rc = rd_trainer_score(tr, recs, n, ref, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "rd_trainer_score: %s", eb.msg);

    // 2. Export; the store read-only; score one by one.
    rc = rd_serve_export(cfg, "student", ckpt, NULL, bundle, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "rd_serve_export: %s", eb.msg);
    rd_serve *sv = NULL;
    rc = rd_serve_open(bundle, 16, &sv, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "rd_serve_open: %s", eb.msg);
    rd_token_store *st = NULL;
    rd_token_open_opts oo = {.mode = RD_TOKEN_READ_ONLY};
    int src = rd_token_store_open(cfg->tokens.store_dir, &oo, &st, &eb);
    T_CHECK(&g_errs, src == RD_OK, "store read-only: %s", eb.msg);
    if (rc != RD_OK || src != RD_OK)
        goto out;
    rd_serve_info in;
    rd_serve_get_info(sv, &in);
    rd_token_store_info si;
    rd_token_store_info_get(st, &si);
    // Session 1: 6 tokens, engagement and its residual, summaries 1 + 2 x (1 + 2); sessions 2
    // and 3: 4 of a pool of 12, engagement alone, summaries 1 + 1 x (1 + 1); session 3's item
    // map holds every item of the dataset.
    const size_t want_stats = g_search ? 3 : 7;
    const rd_dataset_info *dinf = rd_dataset_get_info(ds);
    T_CHECK(&g_errs,
            in.version == RD_SERVE_VERSION && in.tok_length == (g_search ? 4u : 6u) &&
                in.tok_pool == (g_search ? 12u : 6u) && in.tok_dim == 6 &&
                in.tok_side == (g_search ? 1u : 2u) && in.tok_stats == want_stats &&
                in.tok_same_time == !g_search && in.tok_search == (g_search != 0) &&
                strcmp(in.tok_search_by, g_search == 2 ? "series"
                                         : g_search    ? "item"
                                                       : "") == 0 &&
                in.tok_search_items == (g_search == 2 ? dinf->n_items : 0) &&
                in.tok_store_id == si.store_id && in.n_numeric == in.n_stats,
            "info: version %u, tokens %zu of %zu, dim %zu, side %zu, stats %zu, same time %d, "
            "search %d by '%s' (%zu items), store %016llx (the store's %016llx), %zu numeric",
            in.version, in.tok_length, in.tok_pool, in.tok_dim, in.tok_side, in.tok_stats,
            in.tok_same_time, in.tok_search, in.tok_search_by, in.tok_search_items,
            (unsigned long long)in.tok_store_id, (unsigned long long)si.store_id, in.n_numeric);
    // Session 3: the series of every item, to count the requests whose picks by series differ
    // from picks by item.
    rd_item_attr series = {0};
    if (g_search == 2)
        RD_ASSERT_MSG(rd_dataset_item_attr(ds, "series", "test", &series, &eb) == RD_OK, "%s",
                      eb.msg);
    size_t by_series_differs = 0;
    const size_t K = in.keys_per_candidate, NN = in.n_numeric ? in.n_numeric : 1, NC = 16;
    uint64_t *keys = rd_xcalloc(NC * K, sizeof *keys), hist[8] = {0}, items[16];
    uint8_t hl[8] = {0};
    float *num = rd_xcalloc(NC * NN, sizeof *num);
    float logit[16], score[16];
    double maxd = 0, lo = 1e30, hi = -1e30;
    size_t moved = 0, with_tokens = 0;
    for (size_t i = 0; i < n; i++) {
        rd_serve_request rq;
        record_request(sv, ds, st, recs[i], keys, hist, hl, num, &items[0], &rq);
        rc = rd_serve_score(sv, &rq, score, logit, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "score: %s", eb.msg);
        solo[i] = logit[0];
        double d = fabs((double)logit[0] - (double)ref[i]);
        maxd = d > maxd ? d : maxd;
        lo = fmin(lo, (double)ref[i]);
        hi = fmax(hi, (double)ref[i]);
        T_CHECK(&g_errs, fabs((double)score[0] - 1.0 / (1.0 + exp(-(double)logit[0]))) < 1e-6,
                "score");
        if (g_search == 2) {
            size_t same_item = 0, same_series = 0;
            const uint64_t want = rd_item_attr_key(&series, items[0]);
            for (size_t j = 0; j < rq.tok_n; j++) {
                same_item += rq.tok_items[j] == items[0];
                same_series += rd_item_attr_key(&series, rq.tok_items[j]) == want;
            }
            by_series_differs +=
                (same_item < 4 ? same_item : 4) != (same_series < 4 ? same_series : 4);
        }
        // The same request without its tokens.
        with_tokens += rq.tok_n > 0;
        rq.tok_n = 0;
        rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "score without tokens: %s", eb.msg);
        moved += fabs((double)logit[0] - (double)solo[i]) > 1e-4;
    }
    printf("[%s] serve vs trainer: %zu holdout requests (%zu with tokens), max |logit diff| %.3g "
           "(logits in [%.3f, %.3f]); %zu scores move without the tokens\n",
           session_name(), n, with_tokens, maxd, lo, hi, moved);
    T_CHECK(&g_errs, maxd <= 1e-5, "serving logits differ from the trainer's by %.3g", maxd);
    T_CHECK(&g_errs, hi - lo > 1e-3, "logits do not vary (%.3g..%.3g): the test could not fail", lo,
            hi);
    T_CHECK(&g_errs, with_tokens > n / 2 && moved > n / 4,
            "%zu of %zu requests have tokens, %zu move without them: the tokens are not read",
            with_tokens, n, moved);
    if (g_search == 2) {
        printf("[%s] %zu of %zu requests pick other tokens by series than by item\n",
               session_name(), by_series_differs, n);
        T_CHECK(&g_errs, by_series_differs > n / 4,
                "only %zu of %zu requests pick other tokens by series: the test could not fail",
                by_series_differs, n);
    }
    rd_item_attr_free(&series);

    // 3. 16 candidates: the record's item, then other records' items; each candidate against
    // its one-candidate request (same user, time, history and tokens).
    int item_f = -1;
    for (int f = 0; f < in.n_features; f++) {
        const char *field = NULL;
        RD_ASSERT(rd_serve_feature(sv, f, &field, NULL, NULL) == RD_OK);
        if (strcmp(field, "item") == 0)
            item_f = f;
    }
    RD_ASSERT(item_f >= 0);
    size_t item_off = 0;
    RD_ASSERT(rd_serve_feature(sv, item_f, NULL, &item_off, NULL) == RD_OK);
    double md = 0;
    size_t differ = 0;
    for (size_t i = 0; i < n; i += 5) {
        rd_serve_request rq;
        record_request(sv, ds, st, recs[i], keys, hist, hl, num, &items[0], &rq);
        for (size_t c = 1; c < NC; c++) {
            const rd_record *o = rd_dataset_record(ds, recs[(i + c * 7) % n]);
            memcpy(keys + c * K, keys, K * sizeof *keys);
            // Other numeric inputs too (a candidate of another item has other values): with the
            // token summaries appended after them, a candidate given another's inputs would show.
            for (size_t j = 0; j < NN; j++)
                num[c * NN + j] = num[j] + 0.25f * (float)c;
            keys[c * K + item_off] = o->item_key;
            items[c] = o->item_key;
        }
        rq.n = NC;
        rq.items = items;
        rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "%zu candidates: %s", NC, eb.msg);
        float many[16];
        memcpy(many, logit, sizeof many);
        rd_serve_request one = rq;
        one.n = 1;
        for (size_t c = 0; c < NC; c++) {
            one.keys = keys + c * K;
            one.numeric = num + c * NN;
            one.items = &items[c];
            rc = rd_serve_score(sv, &one, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_OK, "one candidate: %s", eb.msg);
            double d = fabs((double)logit[0] - (double)many[c]);
            md = d > md ? d : md;
            differ += fabs((double)many[c] - (double)many[0]) > 1e-4;
        }
    }
    printf("[%s] %zu candidates: each vs its one-candidate request: max diff %.3g\n",
           session_name(), NC, md);
    T_CHECK(&g_errs, md <= 1e-5, "candidates depend on the batch: %.3g", md);
    T_CHECK(&g_errs, differ > 0, "every candidate scores the same: the test could not fail");

    // 4. Bad input.
    {
        rd_serve_request rq;
        record_request(sv, ds, st, recs[n - 1], keys, hist, hl, num, &items[0], &rq);
        RD_ASSERT(rq.tok_n > 0);
        rd_serve_request bad = rq;
        bad.tok_n = in.tok_pool + 1;
        rc = rd_serve_score(sv, &bad, NULL, logit, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "at most"), "too many tokens: %d %s",
                rc, eb.msg);
        bad = rq;
        bad.tok = NULL;
        rc = rd_serve_score(sv, &bad, NULL, logit, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "tok is NULL"), "tokens NULL: %d %s",
                rc, eb.msg);
        bad = rq;
        bad.tok_side = NULL;
        rc = rd_serve_score(sv, &bad, NULL, logit, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "tok_side"), "side NULL: %d %s", rc,
                eb.msg);
        float *copy = rd_xmalloc(rq.tok_n * in.tok_dim * sizeof *copy);
        memcpy(copy, rq.tok, rq.tok_n * in.tok_dim * sizeof *copy);
        copy[rq.tok_n * in.tok_dim - 1] = NAN;
        bad = rq;
        bad.tok = copy;
        rc = rd_serve_score(sv, &bad, NULL, logit, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "not finite"), "NaN token: %d %s", rc,
                eb.msg);
        rd_free(copy);
        if (g_search) {
            bad = rq;
            bad.items = NULL;
            rc = rd_serve_score(sv, &bad, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "tokens.search"),
                    "items NULL: %d %s", rc, eb.msg);
            bad = rq;
            bad.tok_items = NULL;
            rc = rd_serve_score(sv, &bad, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "tok_items"),
                    "token items NULL: %d %s", rc, eb.msg);
        }
        // The request as it was still scores (nothing of the refusals stuck).
        rc = rd_serve_score(sv, &rq, NULL, logit, &eb);
        T_CHECK(&g_errs, rc == RD_OK && logit[0] == solo[n - 1], "after the refusals: %d %s", rc,
                eb.msg);
        rc = rd_serve_fetch_tokens(sv, NULL, 1, 0, 0, &rq, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_ARG, "fetch without a store: %d %s", rc, eb.msg);
    }
    {
        // Another store of the same shape (a rebuilt one): refused by its id.
        snprintf(p, sizeof p, "%s/other_store_%s", dir, session_name());
        rd_token_store_opts so = {.dim = 6,
                                  .dtype = RD_TOKEN_FP32,
                                  .n_shards = 2,
                                  .no_sync = 1,
                                  .n_side = (int)in.tok_side};
        rd_token_store *other = NULL;
        rc = rd_token_store_create(p, &so, &other, &eb);
        RD_ASSERT_MSG(rc == RD_OK, "other store: %s", eb.msg);
        rd_serve_request rq;
        memset(&rq, 0, sizeof rq);
        rc = rd_serve_fetch_tokens(sv, other, 1, 1000, 0, &rq, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_SCHEMA && strstr(eb.msg, "not the one") && rq.tok_n == 0,
                "another store: %d %s", rc, eb.msg);
        rd_token_store_destroy(other);
        t_rmtree(p);
    }
    {
        // The bundle rewritten as version 3, which never held a token branch: refused.
        size_t len;
        unsigned char *b = t_read_file(bundle, &len);
        const uint32_t v3 = 3;
        memcpy(b + 8, &v3, 4);
        uint32_t crc = rd_crc32c(0, b, len - 4);
        memcpy(b + len - 4, &crc, 4);
        snprintf(p, sizeof p, "%s/v3_%s.rdsv", dir, session_name());
        FILE *f = fopen(p, "wb");
        RD_ASSERT(f && fwrite(b, 1, len, f) == len);
        fclose(f);
        rd_free(b);
        rd_serve *x = NULL;
        rc = rd_serve_open(p, 4, &x, &eb);
        T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, "token"),
                "version 3 with a token branch: %d %s", rc, eb.msg);
        remove(p);
    }
    {
        // Export without the store (tokens.store_dir elsewhere): refused, nothing written.
        rd_config *c2 = rd_xmalloc(sizeof *c2);
        memcpy(c2, cfg, sizeof *c2);
        snprintf(c2->tokens.store_dir, sizeof c2->tokens.store_dir, "%s/no_store", dir);
        snprintf(p, sizeof p, "%s/nostore_%s.rdsv", dir, session_name());
        rc = rd_serve_export(c2, "student", ckpt, NULL, p, &eb);
        T_CHECK(&g_errs, rc != RD_OK && strstr(eb.msg, "tokens.store_dir") && !exists(p),
                "export without the store: %d %s", rc, eb.msg);
        // Another search key than the checkpoint's: the model differs from the one trained.
        memcpy(c2, cfg, sizeof *c2);
        c2->models[0].tokens.search = 12;
        snprintf(c2->models[0].tokens.search_by, sizeof c2->models[0].tokens.search_by,
                 g_search == 2 ? "topic" : "series");
        rc = rd_serve_export(c2, "student", ckpt, NULL, p, &eb);
        T_CHECK(&g_errs,
                rc == RD_ERR_SCHEMA && strstr(eb.msg, "model 'small' differs") && !exists(p),
                "export with another search_by: %d %s", rc, eb.msg);
        rd_free(c2);
    }
    {
        // The bundle as version 4 wrote it: without the item map (its count and pairs before
        // the CRC). Without a search by an attribute it opens and scores as before; with one it
        // is refused (version 4 never held the map). With the map's keys out of order: refused.
        size_t len;
        unsigned char *b = t_read_file(bundle, &len);
        const size_t map = 8 + 16 * in.tok_search_items, at = len - 4 - map;
        uint64_t n_map;
        memcpy(&n_map, b + at, 8);
        RD_ASSERT(n_map == in.tok_search_items);
        const uint32_t v4 = 4;
        unsigned char *c = rd_xmalloc(len);
        memcpy(c, b, at);
        memcpy(c + 8, &v4, 4);
        uint32_t crc = rd_crc32c(0, c, at);
        memcpy(c + at, &crc, 4);
        snprintf(p, sizeof p, "%s/v4_%s.rdsv", dir, session_name());
        FILE *f = fopen(p, "wb");
        RD_ASSERT(f && fwrite(c, 1, at + 4, f) == at + 4);
        fclose(f);
        rd_serve *x = NULL;
        rc = rd_serve_open(p, 4, &x, &eb);
        if (g_search == 2) {
            T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, "no item attribute map"),
                    "version 4 with a search by series: %d %s", rc, eb.msg);
        } else {
            T_CHECK(&g_errs, rc == RD_OK, "version 4: %d %s", rc, eb.msg);
            rd_serve_request rq;
            record_request(sv, ds, st, recs[n - 1], keys, hist, hl, num, &items[0], &rq);
            if (rc == RD_OK)
                rc = rd_serve_score(x, &rq, NULL, logit, &eb);
            T_CHECK(&g_errs, rc == RD_OK && logit[0] == solo[n - 1],
                    "version 4 scores otherwise: %d %s", rc, eb.msg);
        }
        rd_serve_close(x);
        remove(p);
        if (g_search == 2 && in.tok_search_items >= 2) { // swap the first two item keys
            memcpy(c, b, len);
            uint64_t k0, k1;
            memcpy(&k0, c + at + 8, 8);
            memcpy(&k1, c + at + 24, 8);
            memcpy(c + at + 8, &k1, 8);
            memcpy(c + at + 24, &k0, 8);
            crc = rd_crc32c(0, c, len - 4);
            memcpy(c + len - 4, &crc, 4);
            snprintf(p, sizeof p, "%s/unordered_%s.rdsv", dir, session_name());
            f = fopen(p, "wb");
            RD_ASSERT(f && fwrite(c, 1, len, f) == len);
            fclose(f);
            x = NULL;
            rc = rd_serve_open(p, 4, &x, &eb);
            T_CHECK(&g_errs, rc == RD_ERR_CORRUPT && !x && strstr(eb.msg, "must ascend"),
                    "item map out of order: %d %s", rc, eb.msg);
            remove(p);
        }
        rd_free(c);
        rd_free(b);
    }
    rd_free(keys);
    rd_free(num);
out:
    rd_token_store_destroy(st);
    rd_serve_close(sv);
    rd_free(recs);
    rd_free(ref);
    rd_free(solo);
    rd_dataset_close(ds);
}

static void session(char *dir) {
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    make_config(cfg, dir);
    t_prepare(cfg, 1);
    g_errs += t_train_session(MPI_COMM_WORLD, cfg, NULL, worker_checks, dir);
    t_barrier(MPI_COMM_WORLD);
    rd_free(cfg);
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 3)
        return t_mpi_refuse(rank, 1, "serve_tokens needs 3 ranks");
    char dir[512];
    t_tmpdir(dir, sizeof dir, "servetok");
    session(dir);
    g_search = 1;
    session(dir);
    g_search = 2;
    session(dir);
    return t_end("serve_tokens", g_errs, dir);
}
