// test_trainer.c — unit tests of the trainer's pure parts: the fields derived from the timestamp
// (hour, weekday), against hand-checked dates and against gmtime_r over a sweep of times (also
// before 1970); the set-up estimate of the token fetch buffers against the memory limit; a
// step's history keys and labels read through the per-user array against the records of the log
// (empty, short and truncated histories), and that array's memory budget. The
// training loop itself is tested against its single-process reference in tests/mpi/trainer_dist.c
// and end to end in tests/scripts/train.sh.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/hash.h"
#include "rd/rng.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void check(int64_t ts, int hour, int weekday) {
    int h = -1, w = -1;
    rd_dataset_time_fields(ts, &h, &w);
    assert_int_equal(h, hour);
    assert_int_equal(w, weekday);
}

static void test_known_dates(void **state) {
    (void)state;
    check(0, 0, 3);          // 1970-01-01 00:00:00 UTC, a Thursday
    check(-1, 23, 2);        // 1969-12-31 23:59:59, a Wednesday
    check(874724710, 3, 5);  // 1997-09-20 03:05:10, a Saturday (MovieLens-100K's start)
    check(893286638, 23, 2); // 1998-04-22 23:10:38, a Wednesday (its end)
    check(1796083200, 0, 1); // 2026-12-01 00:00:00, a Tuesday
    check(-86400 * 4, 0, 6); // 1969-12-28, a Sunday
}

static void test_matches_gmtime(void **state) {
    (void)state;
    // Weekday of struct tm counts from Sunday = 0; ours from Monday = 0.
    for (int64_t ts = -400LL * 86400; ts < 60LL * 365 * 86400; ts += 7919 * 13 + 1) {
        time_t tt = (time_t)ts;
        struct tm tm;
        assert_non_null(gmtime_r(&tt, &tm));
        int h = -1, w = -1;
        rd_dataset_time_fields(ts, &h, &w);
        assert_int_equal(h, tm.tm_hour);
        assert_int_equal(w, (tm.tm_wday + 6) % 7);
    }
}

// The checkpoint's config hash follows the history statistics (a resume with other windows must
// be refused) and the job's sampling rates, and ignores both when they are off (older
// checkpoints still load).
static void test_ckpt_hash_stats(void **state) {
    (void)state;
    rd_config *cfg = calloc(1, sizeof *cfg);
    assert_non_null(cfg);
    rd_config_defaults(cfg);
    rd_model_config mc;
    memset(&mc, 0, sizeof mc);
    strcpy(mc.name, "m");
    uint64_t off = rd_train_ckpt_config_hash(cfg, NULL, &mc);
    mc.seq.n_stats = 2;
    mc.seq.stats[0] = 1;
    mc.seq.stats[1] = 4;
    uint64_t a = rd_train_ckpt_config_hash(cfg, NULL, &mc);
    mc.seq.stats[1] = 8;
    uint64_t b = rd_train_ckpt_config_hash(cfg, NULL, &mc);
    strcpy(mc.seq.stats_feedback, "rating");
    uint64_t c = rd_train_ckpt_config_hash(cfg, NULL, &mc);
    mc.seq.stats_residual = 1;
    uint64_t d = rd_train_ckpt_config_hash(cfg, NULL, &mc);
    assert_true(off != a && a != b && b != c && c != d);
    mc.seq.n_stats = 0; // off: the same hash as a model that never had the keys
    memset(mc.seq.stats, 0, sizeof mc.seq.stats);
    mc.seq.stats_feedback[0] = '\0';
    mc.seq.stats_residual = 0;
    assert_true(rd_train_ckpt_config_hash(cfg, NULL, &mc) == off);
    // The job's own sampling: hashed only when it samples, each rate on its own.
    rd_job_config jc;
    memset(&jc, 0, sizeof jc);
    jc.negatives.rate = 1.0;
    jc.negatives.pos_rate = 1.0;
    assert_true(rd_train_ckpt_config_hash(cfg, &jc, &mc) == off);
    jc.negatives.rate = 0.5;
    uint64_t r5 = rd_train_ckpt_config_hash(cfg, &jc, &mc);
    jc.negatives.rate = 0.25;
    uint64_t r25 = rd_train_ckpt_config_hash(cfg, &jc, &mc);
    jc.negatives.rate = 1.0;
    jc.negatives.pos_rate = 0.8;
    uint64_t p8 = rd_train_ckpt_config_hash(cfg, &jc, &mc);
    assert_true(r5 != off && r25 != off && p8 != off && r5 != r25 && r5 != p8 && r25 != p8);
    free(cfg);
}

// The set-up check of the token fetch buffers: the estimate follows batch x fetch length x (dim
// + side values), and a refusal names the keys to lower (tokens.search when it sets the fetch).
static void test_token_memory(void **state) {
    (void)state;
    rd_config *cfg = calloc(1, sizeof *cfg);
    assert_non_null(cfg);
    rd_config_defaults(cfg);
    cfg->n_models = 2;
    snprintf(cfg->models[1].name, sizeof cfg->models[1].name, "reader");
    rd_model_config *mc = &cfg->models[1];
    assert_true(rd__trainer_token_bytes(cfg, mc) == 0.0); // no tokens read
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd__trainer_check_token_memory(cfg, mc, 1.0, &eb), RD_OK);
    mc->tokens.scheme = 1;
    mc->tokens.length = 64;
    cfg->tokens.dim = 32;
    cfg->tokens.n_side = 0;
    cfg->train.batch_size = 1024;
    const double b = rd__trainer_token_bytes(cfg, mc);
    // Two stages of fetched (4 d + 4 label bytes a token), staged (+ 1 mask byte) and picked
    // (4 d + 2) tokens, and 4 + 32 + 4 bytes per example.
    const double tok = 1024.0 * 64;
    assert_true(b ==
                2 * (tok * (4 * 32 + 4) + tok * (4 * 32 + 5) + tok * (4 * 32 + 2) + 1024.0 * 40));
    // Doubling the batch or the length doubles the token part; side values add 3 x 4 bytes each.
    cfg->train.batch_size = 2048;
    assert_true(rd__trainer_token_bytes(cfg, mc) > 1.99 * b);
    cfg->train.batch_size = 1024;
    cfg->tokens.n_side = 2;
    assert_true(rd__trainer_token_bytes(cfg, mc) == b + 2 * 3 * tok * 4 * 2);
    assert_int_equal(rd__trainer_check_token_memory(cfg, mc, 1e12, &eb), RD_OK);
    assert_int_equal(rd__trainer_check_token_memory(cfg, mc, 1e6, &eb), RD_ERR_NOMEM);
    assert_non_null(strstr(eb.msg, "models[1].tokens.length"));
    assert_non_null(strstr(eb.msg, "train.batch_size 1024"));
    assert_non_null(strstr(eb.msg, "model 'reader'"));
    // With tokens.search the pool fetched is what grows: it is the key named.
    mc->tokens.search = 4096;
    assert_true(rd__trainer_token_bytes(cfg, mc) > 30 * b);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd__trainer_check_token_memory(cfg, mc, 1e9, &eb), RD_ERR_NOMEM);
    assert_non_null(strstr(eb.msg, "models[1].tokens.search"));
    assert_non_null(strstr(eb.msg, "train.batch_size"));
    free(cfg);
}

// ---------------------------------------------------------------------------------------------
// stage_build's history: the array in per-user order against the records of the log

// A log whose users have one event (an empty history only), about 5 (short ones), 750 (longer than
// any L below) and about 22 (the other 20 users), interleaved at random, with ties of the
// timestamp.
static void history_log(const char *path) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "t,u,i,y\n");
    rd_rng r;
    rd_rng_seed(&r, 11);
    for (int k = 0; k < 1200; k++) {
        uint64_t c = rd_rng_below(&r, 8);
        const char *u = c < 4 ? "many" : c < 5 ? "few" : NULL;
        char other[32];
        if (!u) {
            snprintf(other, sizeof other, "u%llu", (unsigned long long)rd_rng_below(&r, 20));
            u = other;
        }
        if (!strcmp(u, "few") && rd_rng_below(&r, 30) != 0)
            u = "many";
        fprintf(f, "%llu,%s,%llu,%d\n", (unsigned long long)(1000 + rd_rng_below(&r, 3000)), u,
                (unsigned long long)rd_rng_below(&r, 5000), rd_rng_uniform(&r) < 0.3);
    }
    fprintf(f, "9000,solo,7,1\n");
    fclose(f);
}

static void test_history_keys(void **state) {
    (void)state;
    char tmp[] = "/tmp/rd_test_trainer_XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char csv[256], dir[256];
    snprintf(csv, sizeof csv, "%s/log.csv", tmp);
    snprintf(dir, sizeof dir, "%s/ds", tmp);
    history_log(csv);
    rd_config *cfg = calloc(1, sizeof *cfg);
    assert_non_null(cfg);
    rd_config_defaults(cfg);
    rd_data_config *dc = &cfg->data;
    dc->source = RD_DATA_CSV;
    snprintf(dc->input, sizeof dc->input, "%s", tmp);
    snprintf(dc->dir, sizeof dc->dir, "%s", dir);
    rd_schema_config *sc = &dc->schema;
    memset(sc, 0, sizeof *sc);
    strcpy(sc->path, "log.csv");
    strcpy(sc->delimiter, ",");
    sc->header = 1;
    sc->quoting = 1;
    strcpy(sc->user_column, "u");
    strcpy(sc->item_column, "i");
    strcpy(sc->time_column, "t");
    strcpy(sc->label_column, "y");
    sc->label_threshold = 1;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_dataset_prepare(dc, 42, &eb);
    if (rc != RD_OK)
        fprintf(stderr, "prepare: %s\n", eb.msg);
    assert_int_equal(rc, RD_OK);
    rd_dataset *ds = NULL;
    assert_int_equal(rd_dataset_open(dir, 0, &ds, &eb), RD_OK);
    const uint64_t n = rd_dataset_get_info(ds)->n_events;
    assert_int_equal(n, 1201);

    const uint64_t table = 0x5eedull;
    rd_history_keys hk = {malloc(n * sizeof(uint64_t)), malloc(n)};
    assert_true(hk.key && hk.pos);
    rd_dataset_history_keys(ds, table, hk.key, hk.pos);
    static const size_t Ls[] = {1, 16, 256};
    const size_t Lmax = 256, off = 3; // raw already holds 3 keys: positions continue after them
    uint64_t *raw_a = malloc((Lmax + off) * sizeof(uint64_t));
    uint64_t *raw_b = malloc((Lmax + off) * sizeof(uint64_t));
    int32_t si_a[256], si_b[256];
    uint8_t sl_a[256], sl_b[256];
    assert_true(raw_a && raw_b);
    for (size_t c = 0; c < sizeof Ls / sizeof *Ls; c++) {
        const size_t L = Ls[c];
        uint64_t empty = 0, part = 0, full = 0;
        for (uint64_t i = 0; i < n; i++) {
            // Spoil the outputs differently, so that an entry left unwritten shows.
            memset(raw_a, 0xa5, (Lmax + off) * sizeof(uint64_t));
            memset(raw_b, 0x5a, (Lmax + off) * sizeof(uint64_t));
            memset(si_a, 0x11, sizeof si_a);
            memset(si_b, 0x22, sizeof si_b);
            memset(sl_a, 0x33, sizeof sl_a);
            memset(sl_b, 0x44, sizeof sl_b);
            raw_a[0] = raw_b[0] = 1;
            raw_a[1] = raw_b[1] = 2;
            raw_a[2] = raw_b[2] = 3;
            size_t na = off, nb = off;
            rd__trainer_history_fill(ds, NULL, table, i, L, raw_a, &na, si_a, sl_a);
            rd__trainer_history_fill(ds, &hk, table, i, L, raw_b, &nb, si_b, sl_b);
            assert_int_equal(na, nb);
            assert_memory_equal(raw_a, raw_b, na * sizeof(uint64_t));
            assert_memory_equal(si_a, si_b, L * sizeof(int32_t));
            assert_memory_equal(sl_a, sl_b, L);
            // Against the records themselves: latest first, then padding.
            size_t nh = na - off;
            uint32_t p = rd_dataset_user_pos(ds, i);
            assert_int_equal(nh, p < L ? p : L);
            const uint64_t *h = rd_dataset_history_view(ds, i, L, &nh);
            for (size_t j = 0; j < nh; j++) {
                const rd_record *r = rd_dataset_record(ds, h[nh - 1 - j]);
                assert_true(raw_a[off + j] == rd_table_key(table, r->item_key));
                assert_int_equal(si_a[j], (int32_t)(off + j));
                assert_int_equal(sl_a[j], r->label > 0.5f);
            }
            for (size_t j = nh; j < L; j++) {
                assert_int_equal(si_a[j], -1);
                assert_int_equal(sl_a[j], 0);
            }
            empty += nh == 0;
            part += nh > 0 && nh < L;
            full += nh == L;
        }
        // Every kind of history occurred (L = 1 has no partial one).
        assert_true(empty >= 22 && full > 0 && (L == 1 || part > 0));
    }
    // Without the array (NULL or empty) is the records' path.
    rd_history_keys none = {NULL, NULL};
    size_t na = 0, nh = 0;
    rd_dataset_history_view(ds, n - 2, 16, &nh);
    rd__trainer_history_fill(ds, &none, table, n - 2, 16, raw_a, &na, si_a, sl_a);
    assert_int_equal(na, nh);
    free(raw_a);
    free(raw_b);
    free(hk.key);
    free(hk.pos);
    rd_dataset_close(ds);
    free(cfg);
    assert_int_equal(rd_train_ckpt_rmtree(tmp, NULL), RD_OK);
}

// The array's budget: a quarter of the memory over the ranks (at most those of the node).
static void test_history_keys_budget(void **state) {
    (void)state;
    assert_true(rd__trainer_history_keys_budget(64e9, 4) == 4e9);
    assert_true(rd__trainer_history_keys_budget(64e9, 0) == 16e9);
    // The main job: 4 ranks of 24 GiB, 120,000 events of 9 bytes fit by far.
    assert_true(120000.0 * 9 < rd__trainer_history_keys_budget(24.0 * 1073741824.0, 4));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_dates),         cmocka_unit_test(test_matches_gmtime),
        cmocka_unit_test(test_ckpt_hash_stats),     cmocka_unit_test(test_token_memory),
        cmocka_unit_test(test_history_keys),        // rd__trainer_history_fill, both paths
        cmocka_unit_test(test_history_keys_budget), // rd__trainer_history_keys_budget
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
