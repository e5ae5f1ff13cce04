// test_movielens.c — the movielens100k preset on the real MovieLens-100K files, read from
// $RD_SHARED_DATA/movielens-100k (never copied into the repository). Skipped (exit 77, with a
// "skipped:" line) when the folder is absent.
//
// Checks against the data itself, not against figures copied from a previous run: the event
// count and the label count are recomputed from u.data, the time order is compared with an
// independent sort of u.data by (timestamp, user, item), and the split and the number of holdout
// events of users absent from the batch period are compared with the protocol in
// shared/research/ml100k-baseline.md (80,000 / 5 x 2,000 / 10,000; 8,582).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/hash.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_input[200];
static char g_out[64];

typedef struct raw {
    long user, item, rating, ts;
    uint64_t line; // in u.data (no header: the first row is line 1)
} raw;

static int cmp_raw(const void *a, const void *b) {
    const raw *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

static uint64_t id_key(const char *field, long v) {
    char s[32];
    int n = snprintf(s, sizeof s, "%ld", v);
    return rd_feature_key(field, s, (size_t)n);
}

static void test_ml100k(void **state) {
    (void)state;
    rd_config *cfg = calloc(1, sizeof *cfg);
    rd_config_defaults(cfg);
    cfg->data.source = RD_DATA_MOVIELENS100K;
    snprintf(cfg->data.input, sizeof cfg->data.input, "%s", g_input);
    snprintf(cfg->data.dir, sizeof cfg->data.dir, "%s/ml100k", g_out);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_dataset_prepare(&cfg->data, 1, &eb);
    if (rc)
        fprintf(stderr, "%s\n", eb.msg);
    assert_int_equal(rc, RD_OK);
    rd_dataset *ds = NULL;
    assert_int_equal(rd_dataset_open(cfg->data.dir, 0, &ds, &eb), RD_OK);
    const rd_dataset_info *in = rd_dataset_get_info(ds);

    // Independent reading of u.data.
    char path[600];
    snprintf(path, sizeof path, "%s/u.data", g_input);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    raw *r = malloc(200000 * sizeof *r);
    size_t n = 0, pos = 0;
    while (n < 200000 &&
           fscanf(f, "%ld %ld %ld %ld", &r[n].user, &r[n].item, &r[n].rating, &r[n].ts) == 4) {
        pos += r[n].rating >= 4;
        r[n].line = n + 1;
        n++;
    }
    fclose(f);
    qsort(r, n, sizeof *r, cmp_raw);
    fprintf(stderr, "u.data: %zu ratings, %zu with rating >= 4 (%.4f)\n", n, pos,
            (double)pos / (double)n);

    assert_int_equal(in->n_events, n);
    assert_int_equal(n, 100000);
    assert_int_equal(in->n_users, 943);
    assert_int_equal(in->n_items, 1682);
    assert_int_equal(in->n_positives, pos);
    double rate = (double)in->n_positives / (double)in->n_events;
    assert_true(rate > 0.55 && rate < 0.56);
    // Each record's log line (lines.csv): the row of u.data it was read from.
    rd_dataset_lines *ln = NULL;
    assert_int_equal(rd_dataset_lines_open(cfg->data.dir, in->n_events, &ln, &eb), RD_OK);
    for (uint64_t i = 0; i < n; i++) {
        const rd_record *rec = rd_dataset_record(ds, i);
        assert_int_equal(rec->ts, r[i].ts);
        assert_true(rec->user_key == id_key("user", r[i].user));
        assert_true(rec->item_key == id_key("item", r[i].item));
        assert_true(rec->label == (r[i].rating >= 4 ? 1.0f : 0.0f));
        const char *file = NULL;
        size_t len = 0;
        uint64_t line = 0;
        assert_int_equal(rd_dataset_lines_at(ln, i, &file, &len, &line, &eb), RD_OK);
        assert_true(len == 6 && memcmp(file, "u.data", 6) == 0);
        assert_int_equal(line, r[i].line);
    }
    assert_int_equal(rd_dataset_lines_end(ln, &eb), RD_OK);
    rd_dataset_lines_close(ln);
    free(r);

    // The protocol's split.
    assert_int_equal(rd_dataset_batch(ds).end, 80000);
    assert_int_equal(in->n_windows, 5);
    for (uint32_t w = 0; w < 5; w++) {
        rd_range wr = rd_dataset_window(ds, w);
        assert_int_equal(wr.begin, 80000 + 2000 * w);
        assert_int_equal(wr.end - wr.begin, 2000);
    }
    assert_int_equal(rd_dataset_holdout(ds).begin, 90000);
    assert_int_equal(rd_dataset_holdout(ds).end, 100000);
    // Holdout events of users with no event in the batch period (the research note: 8,582).
    uint64_t cold = 0;
    rd_range ho = rd_dataset_holdout(ds);
    for (uint64_t i = ho.begin; i < ho.end; i++) {
        uint64_t cnt;
        const uint64_t *l = rd_dataset_user_records(ds, rd_dataset_record(ds, i)->user, &cnt);
        cold += l[0] >= 80000;
    }
    fprintf(stderr, "holdout events of users absent from the batch period: %llu\n",
            (unsigned long long)cold);
    assert_int_equal(cold, 8582);

    // Side features: item 1 (u.item line 1) has genres Animation, Children's, Comedy.
    const rd_dataset_field *g = rd_dataset_find_field(ds, "genres");
    assert_non_null(g);
    int checked = 0;
    for (uint64_t i = 0; i < n && !checked; i++) {
        if (rd_dataset_record(ds, i)->item_key != id_key("item", 1))
            continue;
        const uint64_t *k = rd_dataset_keys(ds, i) + g->offset;
        assert_true(k[0] == rd_feature_key("genres", "animation", 9));
        assert_true(k[1] == rd_feature_key("genres", "children", 8));
        assert_true(k[2] == rd_feature_key("genres", "comedy", 6));
        assert_true(k[3] == 0);
        checked = 1;
    }
    assert_true(checked);
    // Histories: the user's earlier events, strictly before, at most L.
    for (uint64_t i = 0; i < n; i += 997) {
        size_t m;
        const uint64_t *h = rd_dataset_history_view(ds, i, 256, &m);
        assert_int_equal(m, rd_dataset_user_pos(ds, i) < 256 ? rd_dataset_user_pos(ds, i) : 256);
        for (size_t j = 0; j < m; j++) {
            assert_true(h[j] < i);
            assert_int_equal(rd_dataset_record(ds, h[j])->user, rd_dataset_record(ds, i)->user);
        }
    }
    rd_dataset_close(ds);
    char p[RD_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", cfg->data.dir, RD_DATASET_FILE);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", cfg->data.dir, RD_DATASET_META);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", cfg->data.dir, RD_DATASET_IDS);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", cfg->data.dir, RD_DATASET_LINES);
    unlink(p);
    // Nothing else written: the test leaves no folder behind.
    assert_int_equal(rmdir(cfg->data.dir), 0);
    free(cfg);
}

int main(void) {
    const char *shared = getenv("RD_SHARED_DATA");
    struct stat st;
    if (shared)
        snprintf(g_input, sizeof g_input, "%s/movielens-100k", shared);
    char probe[600];
    snprintf(probe, sizeof probe, "%s/u.data", g_input);
    if (!shared || stat(probe, &st) != 0) {
        if (shared)
            printf("skipped: RD_SHARED_DATA not found (%s has no movielens-100k/u.data)\n", shared);
        else
            printf("skipped: RD_SHARED_DATA not found (the variable is not set)\n");
        return 77;
    }
    snprintf(g_out, sizeof g_out, "/tmp/rd_test_movielens_XXXXXX");
    if (!mkdtemp(g_out))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ml100k),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (rmdir(g_out) != 0) {
        fprintf(stderr, "test_movielens: %s left behind: %s\n", g_out, strerror(errno));
        return 1;
    }
    return rc;
}
