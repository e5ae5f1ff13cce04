// test_trainer.c — unit tests of the trainer's pure parts: the fields derived from the timestamp
// (hour, weekday), against hand-checked dates and against gmtime_r over a sweep of times (also
// before 1970); the set-up estimate of the token fetch buffers against the memory limit. The
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
#include "rd/train_ckpt.h"
#include "rd/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_dates),
        cmocka_unit_test(test_matches_gmtime),
        cmocka_unit_test(test_ckpt_hash_stats),
        cmocka_unit_test(test_token_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
