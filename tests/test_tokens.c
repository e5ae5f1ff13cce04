// test_tokens.c — the IAT instance-token store (rd/tokens.h) and the LMDB helpers (rd/lmdbx.h).
//
// Covers: binary16 conversion (exhaustive round trip and round-to-nearest-even at every
// midpoint), fp32/fp16 round trips through the store, the NO-LEAKAGE property (random users and
// timestamps with duplicates: fetch(u, t, L) returns exactly the last min(L, count) records with
// ts < t, in order, with the right mask and padding), map growth from 64 KiB (100k tokens, none
// lost) and RD_ERR_FULL at the cap, layout mismatches, corrupted / missing MANIFEST and shards,
// a forked writer appending while this process fetches (every snapshot a whole-batch prefix of
// the final history, no torn token), gc, verify detecting bad value sizes and CRCs, ownership
// by PS rank, bad input, the packed wire entry points against malformed payloads, iterate/stats,
// allocation failures, and one writer per store (rd_token_store_lock) when launches race to
// create it.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fsync_log.h" // fsync() fails for one path (test_commit_fsync_fails)
#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/rng.h"
#include "rd/tokens.h"
#include "rd/tokentool.h"
#include "tmp_root.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Helpers

static char g_root[256];

static int setup_root(void **state) {
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/rd_test_tokens_XXXXXX");
    if (!mkdtemp(g_root))
        return -1;
    return 0;
}

static void rm_rf(const char *path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fail_msg("cannot remove %s", path);
}

static int teardown_root(void **state) {
    (void)state;
    rm_rf(g_root);
    return 0;
}

static void store_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_root, name);
}

// Token element j of record (user, ts, id): a deterministic value in [-4, 4).
static float tokval(uint64_t user, int64_t ts, uint64_t id, size_t j) {
    uint64_t h = rd_mix64(user * 0x9e37u ^ rd_mix64((uint64_t)ts) ^ (id << 7) ^ (uint64_t)j);
    return (float)((double)(h >> 40) / (double)(1ull << 24) * 8.0 - 4.0);
}

static void fill_token(float *dst, size_t dim, uint64_t user, int64_t ts, uint64_t id) {
    for (size_t j = 0; j < dim; j++)
        dst[j] = tokval(user, ts, id, j);
}

// Fetch outputs for R requests of length L.
typedef struct fout {
    rd_token_fetch_out o;
    size_t R, L, dim;
} fout;

static void fout_init(fout *f, size_t R, size_t L, size_t dim) {
    f->R = R;
    f->L = L;
    f->dim = dim;
    f->o.tokens = calloc(R * L * dim, sizeof(float));
    f->o.labels = calloc(R * L, sizeof(float));
    f->o.items = calloc(R * L, sizeof(uint64_t));
    f->o.ts = calloc(R * L, sizeof(int64_t));
    f->o.ids = calloc(R * L, sizeof(uint64_t));
    f->o.mask = calloc(R * L, 1);
    f->o.n_found = calloc(R, sizeof(uint32_t));
    f->o.side = NULL; // stores with side values: test_side_values sets its own
    assert_non_null(f->o.tokens);
    // Poison the outputs so that padding that is not written shows up.
    memset(f->o.tokens, 0x7f, R * L * dim * sizeof(float));
    memset(f->o.mask, 0x55, R * L);
}

static void fout_free(fout *f) {
    free(f->o.tokens);
    free(f->o.labels);
    free(f->o.items);
    free(f->o.ts);
    free(f->o.ids);
    free(f->o.mask);
    free(f->o.n_found);
}

static rd_token_store *
create_store(const char *name, int dim, int dtype, int n_shards, uint64_t map_size) {
    char dir[512];
    store_path(dir, sizeof dir, name);
    rd_token_store_opts o = {0};
    o.dim = dim;
    o.dtype = dtype;
    o.n_shards = n_shards;
    o.map_size = map_size;
    o.no_sync = 1;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_token_store_create(dir, &o, &s, &eb);
    if (rc != RD_OK)
        fail_msg("create %s: %s", dir, eb.msg);
    return s;
}

static rd_token_store *open_store(const char *name, int mode, int *rc_out, rd_errbuf *eb) {
    char dir[512];
    store_path(dir, sizeof dir, name);
    rd_token_open_opts o = {0};
    o.mode = mode;
    o.no_sync = 1;
    rd_token_store *s = NULL;
    rd_errbuf_clear(eb);
    *rc_out = rd_token_store_open(dir, &o, &s, eb);
    return s;
}

// A user key that lands in shard `shard` of n_shards (search from `from`).
static uint64_t user_in_shard(int shard, int n_shards, uint64_t from) {
    for (uint64_t u = from;; u++)
        if (rd_token_shard_of_user(u, n_shards) == shard)
            return u;
}

// ---------------------------------------------------------------------------------------------
// binary16

static int f16_is_nan(uint16_t h) {
    return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
}

static void test_fp16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = rd_token_f16_to_f32((uint16_t)h);
        uint16_t back = rd_token_f32_to_f16(f);
        if (f16_is_nan((uint16_t)h)) {
            assert_true(isnan(f));
            assert_true(f16_is_nan(back));
        } else {
            assert_int_equal(back, h);
        }
    }
    // Known values.
    assert_true(rd_token_f16_to_f32(0x3c00u) == 1.0f);
    assert_true(rd_token_f16_to_f32(0xc000u) == -2.0f);
    assert_true(rd_token_f16_to_f32(0x7bffu) == 65504.0f);
    assert_true(rd_token_f16_to_f32(0x0001u) == ldexpf(1.0f, -24));
    assert_true(rd_token_f16_to_f32(0x0400u) == ldexpf(1.0f, -14));
    assert_int_equal(rd_token_f32_to_f16(65520.0f), 0x7c00u);   // tie -> even = inf
    assert_int_equal(rd_token_f32_to_f16(65519.996f), 0x7bffu); // just below the tie
    assert_int_equal(rd_token_f32_to_f16(1e10f), 0x7c00u);
    assert_int_equal(rd_token_f32_to_f16(-1e10f), 0xfc00u);
    assert_int_equal(rd_token_f32_to_f16(ldexpf(1.0f, -25)), 0x0000u); // tie -> even = 0
    assert_int_equal(rd_token_f32_to_f16(ldexpf(1.5f, -25)), 0x0001u);
    assert_int_equal(rd_token_f32_to_f16(-0.0f), 0x8000u);
    assert_int_equal(rd_token_f32_to_f16(1e-30f), 0x0000u);
    assert_true(f16_is_nan(rd_token_f32_to_f16(NAN)));
    assert_int_equal(rd_token_f32_to_f16(INFINITY), 0x7c00u);
}

// Every midpoint between two adjacent finite halves rounds to the even one; just above rounds
// up, just below rounds down.
static void test_fp16_round_to_nearest_even(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x7bffu; h++) {
        float a = rd_token_f16_to_f32((uint16_t)h);
        float b = rd_token_f16_to_f32((uint16_t)(h + 1));
        float m = 0.5f * (a + b); // exact: 12 significant bits at most
        assert_true(m > a && m < b);
        uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
        assert_int_equal(rd_token_f32_to_f16(m), even);
        assert_int_equal(rd_token_f32_to_f16(-m), even | 0x8000u);
        assert_int_equal(rd_token_f32_to_f16(nextafterf(m, INFINITY)), h + 1);
        assert_int_equal(rd_token_f32_to_f16(nextafterf(m, 0.0f)), h);
    }
    // Relative error bound in the normal range.
    rd_rng r;
    rd_rng_seed(&r, 5);
    for (int i = 0; i < 100000; i++) {
        float x = (float)((rd_rng_uniform(&r) * 2.0 - 1.0) * 1000.0);
        if (fabsf(x) < 1e-3f)
            continue;
        float y = rd_token_f16_to_f32(rd_token_f32_to_f16(x));
        assert_true(fabsf(y - x) <= ldexpf(fabsf(x), -11));
    }
    int dt = 0;
    assert_int_equal(rd_token_dtype_parse("fp16", &dt), RD_OK);
    assert_int_equal(dt, RD_TOKEN_FP16);
    assert_int_equal(rd_token_dtype_parse("fp32", &dt), RD_OK);
    assert_int_equal(dt, RD_TOKEN_FP32);
    assert_int_equal(rd_token_dtype_parse("bf16", &dt), RD_ERR_ARG);
    assert_string_equal(rd_token_dtype_name(RD_TOKEN_FP16), "fp16");
}

// ---------------------------------------------------------------------------------------------
// LMDB helpers

static void test_lmdbx_keys_and_errors(void **state) {
    (void)state;
    unsigned char b[8];
    rd_lmdbx_put_be64(b, 0x0102030405060708ull);
    assert_int_equal(b[0], 1);
    assert_int_equal(b[7], 8);
    assert_true(rd_lmdbx_get_be64(b) == 0x0102030405060708ull);
    int64_t xs[] = {INT64_MIN, -5, -1, 0, 1, 7, INT64_MAX};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        assert_true(rd_lmdbx_key_i64(rd_lmdbx_i64_key(xs[i])) == xs[i]);
        if (i)
            assert_true(rd_lmdbx_i64_key(xs[i - 1]) < rd_lmdbx_i64_key(xs[i]));
    }
    assert_int_equal(rd_lmdbx_status(MDB_MAP_FULL), RD_ERR_FULL);
    assert_int_equal(rd_lmdbx_status(ENOSPC), RD_ERR_FULL);
    assert_int_equal(rd_lmdbx_status(MDB_NOTFOUND), RD_ERR_NOTFOUND);
    assert_int_equal(rd_lmdbx_status(MDB_CORRUPTED), RD_ERR_CORRUPT);
    assert_int_equal(rd_lmdbx_status(MDB_VERSION_MISMATCH), RD_ERR_VERSION);
    assert_int_equal(rd_lmdbx_status(MDB_BAD_TXN), RD_ERR_LMDB);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_error(&eb, MDB_MAP_FULL, "append", "/x/y"), RD_ERR_FULL);
    assert_non_null(strstr(eb.msg, "/x/y"));
    assert_non_null(strstr(eb.msg, "append"));
    assert_true(rd_lmdbx_is_rd_status(RD_ERR_FULL));
    assert_false(rd_lmdbx_is_rd_status(MDB_MAP_FULL));
    assert_false(rd_lmdbx_is_rd_status(ENOSPC));
    // Read-only open of a missing env is RD_ERR_NOTFOUND with the path.
    MDB_env *env = NULL;
    rd_lmdbx_opts o = {0};
    o.read_only = 1;
    char p[512];
    store_path(p, sizeof p, "no-such-env");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_env_open(p, &o, &env, &eb), RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "no-such-env"));
    // Atomic file write.
    store_path(p, sizeof p, "atomic.bin");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_atomic(p, "abc", 3, &eb), RD_OK);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 3);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    assert_int_not_equal(stat(tmp, &st), 0);
    // Never over a FIFO or a device: the rename would replace the node.
    store_path(p, sizeof p, "atomic.fifo");
    assert_int_equal(mkfifo(p, 0644), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_atomic(p, "abc", 3, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "not a regular file"));
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
}

// The atomic writes (rd_lmdbx_outfile) against what a predictable temporary name allowed: a
// symlink planted at "<path>.tmp" was followed (the file it named was truncated and overwritten),
// and two writers into one path shared "<path>.tmp" (torn files, or a rename that failed after
// the other writer had moved the file away).
// Entries of dir named "<prefix>.<kind>.*" (kind tmp or partial).
static int count_kind(const char *dir, const char *prefix, const char *kind) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '^%s\\.%s\\.'", dir, prefix, kind);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

static int count_tmp(const char *dir, const char *prefix) {
    return count_kind(dir, prefix, "tmp");
}

// SIGTERM / SIGINT / SIGHUP / SIGPIPE remove the outputs in progress (rd_lmdbx_pending_add): a
// child builds a partial folder with files two levels down (more entries than one getdents64 read)
// and an output file under its temporary name, then is terminated; the parent finds both gone,
// the child ended by the signal, and what the child finished (renamed) or unregistered kept.
static void test_terminate_removes_outputs(void **state) {
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "term");
    assert_int_equal(mkdir(dir, 0755), 0);
    static const int sigs[4] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};
    // SIGPIPE (`recdistill prepare C 2>&1 | head` left its partial folder) must be covered
    // whenever it had its default action, as it has unless the test runner ignores it.
    struct sigaction pipe_before;
    assert_int_equal(sigaction(SIGPIPE, NULL, &pipe_before), 0);
    int pipe_default = !(pipe_before.sa_flags & SA_SIGINFO) && pipe_before.sa_handler == SIG_DFL;
    assert_true(rd_lmdbx_pending_add(dir) >= 0); // installs the handlers, if not yet
    rd_lmdbx_pending_forget(dir);
    if (pipe_default)
        assert_true(rd_lmdbx_pending_covers(SIGPIPE));
    for (int k = 0; k < 4; k++) {
        if (!rd_lmdbx_pending_covers(sigs[k])) {
            // Ignored (nohup) or another library's (UCX, linked in through MPI, takes SIGHUP):
            // left alone by design. SIGTERM and SIGINT are the ones that matter.
            assert_int_not_equal(sigs[k], SIGTERM);
            print_message("signal %d is ignored or handled by another library: not tested\n",
                          sigs[k]);
            continue;
        }
        char out[400], done[400], kept[400];
        snprintf(out, sizeof out, "%s/copy%d", dir, k);
        snprintf(done, sizeof done, "%s/done%d.bin", dir, k);
        snprintf(kept, sizeof kept, "%s/kept%d", dir, k);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            rd_errbuf eb;
            char part[500], p[700];
            if (rd_lmdbx_mkdir_partial(out, part, sizeof part, &eb) != RD_OK)
                _exit(3);
            for (int s = 0; s < 3; s++) {
                snprintf(p, sizeof p, "%s/shard-%04d", part, s);
                if (mkdir(p, 0755) != 0)
                    _exit(4);
                for (int j = 0; j < 40; j++) {
                    snprintf(p, sizeof p, "%s/shard-%04d/a-rather-long-file-name-%02d.mdb", part, s,
                             j);
                    FILE *f = fopen(p, "wb");
                    if (!f)
                        _exit(5);
                    fputs("x", f);
                    fclose(f);
                }
            }
            if (rd_lmdbx_write_file_atomic(done, "ok", 2, &eb) != RD_OK)
                _exit(6);
            // A folder registered and then forgotten stays.
            if (mkdir(kept, 0755) != 0 || rd_lmdbx_pending_add(kept) < 0)
                _exit(7);
            rd_lmdbx_pending_forget(kept);
            rd_lmdbx_outfile of;
            if (rd_lmdbx_outfile_open(done, &of, &eb) != RD_OK)
                _exit(8);
            fputs("half", of.f);
            fflush(of.f);
            raise(sigs[k]);
            _exit(9); // not reached: the signal ends the process
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("signal %d: child exited with %d", sigs[k], WEXITSTATUS(status));
        assert_int_equal(WTERMSIG(status), sigs[k]);
        char pref[64];
        snprintf(pref, sizeof pref, "copy%d", k);
        assert_int_equal(count_kind(dir, pref, "partial"), 0); // no copy<k>.partial.* left
        snprintf(pref, sizeof pref, "done%d.bin", k);
        assert_int_equal(count_tmp(dir, pref), 0); // no done<k>.bin.tmp.* left
        struct stat st;
        assert_int_equal(stat(done, &st), 0); // the committed file stays
        assert_int_equal(st.st_size, 2);
        assert_int_equal(stat(kept, &st), 0); // the forgotten folder stays
        assert_int_equal(stat(out, &st), -1); // and nothing else was made
    }
}

// A store serves one dataset: the first bind records it, the same dataset binds again, another
// is refused naming both; a damaged record is an error; of several processes binding a new
// store at once with different datasets, exactly one wins and the others are refused.
static void test_bind_dataset(void **state) {
    (void)state;
    rd_errbuf eb;
    rd_token_store *s = create_store("bind", 8, RD_TOKEN_FP32, 2, 0);
    rd_token_store_destroy(s);
    char dir[512], p[600];
    store_path(dir, sizeof dir, "bind");
    rd_token_dataset a = {.n_events = 1000, .records_crc = 0x1234abcdu}, b = a, got;
    b.records_crc ^= 1;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_read_dataset(dir, &got, &eb), RD_ERR_NOTFOUND);
    int had = -1;
    assert_int_equal(rd_token_store_bind_dataset(dir, &a, &had, &eb), RD_OK);
    assert_int_equal(had, 0);
    assert_int_equal(rd_token_store_read_dataset(dir, &got, &eb), RD_OK);
    assert_true(got.n_events == 1000 && got.records_crc == 0x1234abcdu);
    assert_int_equal(rd_token_store_bind_dataset(dir, &a, &had, &eb), RD_OK);
    assert_int_equal(had, 1);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_bind_dataset(dir, &b, NULL, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "holds the tokens of another dataset (1000 events, records "
                                   "CRC 1234abcd; this run's dataset has 1000 events, CRC "
                                   "1234abcc)"));
    // No temporary file is left beside the record.
    snprintf(p, sizeof p, "ls '%s' | grep -q 'DATASET.new'", dir);
    assert_int_not_equal(system(p), 0);
    // A damaged record.
    snprintf(p, sizeof p, "%s/DATASET", dir);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    fseek(f, 9, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_bind_dataset(dir, &a, NULL, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "DATASET: not a dataset record"));
    assert_int_equal(truncate(p, 5), 0);
    assert_int_equal(rd_token_store_read_dataset(dir, &got, &eb), RD_ERR_CORRUPT);
    // Not a store.
    char none[600];
    snprintf(none, sizeof none, "%s/none", g_root);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_bind_dataset(none, &a, NULL, &eb), RD_ERR_NOTFOUND);
    // Races: 6 processes bind one new store, each with its own dataset, 5 rounds.
    for (int round = 0; round < 5; round++) {
        char name[32];
        snprintf(name, sizeof name, "race%d", round);
        s = create_store(name, 8, RD_TOKEN_FP32, 1, 0);
        rd_token_store_destroy(s);
        char rdir[512];
        store_path(rdir, sizeof rdir, name);
        enum { NP = 6 };
        pid_t pids[NP];
        for (int k = 0; k < NP; k++) {
            pids[k] = fork();
            assert_true(pids[k] >= 0);
            if (pids[k] == 0) {
                rd_errbuf ceb;
                rd_errbuf_clear(&ceb);
                rd_token_dataset mine = {.n_events = 100 + (uint64_t)k, .records_crc = 7};
                int h = -1;
                int rc = rd_token_store_bind_dataset(rdir, &mine, &h, &ceb);
                _exit(rc == RD_OK && h == 0 ? 0 : rc == RD_ERR_CONFIG ? 1 : 2);
            }
        }
        int winners = 0, refused = 0;
        for (int k = 0; k < NP; k++) {
            int st = 0;
            assert_int_equal(waitpid(pids[k], &st, 0), pids[k]);
            assert_true(WIFEXITED(st));
            winners += WEXITSTATUS(st) == 0;
            refused += WEXITSTATUS(st) == 1;
        }
        assert_int_equal(winners, 1);
        assert_int_equal(refused, NP - 1);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_token_store_read_dataset(rdir, &got, &eb), RD_OK);
        assert_true(got.n_events >= 100 && got.n_events < 100 + NP);
    }
}

static void test_atomic_file_races(void **state) {
    (void)state;
    char dir[300], path[400], victim[400], old_tmp[420];
    store_path(dir, sizeof dir, "atomic");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(old_tmp, sizeof old_tmp, "%s.tmp", path);
    FILE *f = fopen(victim, "wb");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    // 1. A planted symlink at the old temporary name is not followed.
    assert_int_equal(symlink(victim, old_tmp), 0);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_atomic(path, "new", 3, &eb), RD_OK);
    struct stat st;
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 3);
    assert_int_equal(lstat(old_tmp, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(count_tmp(dir, "out.bin"), 0);
    // 2. The stream form: a failure (abort) and a commit leave no temporary file; a target that
    // turned into a symlink meanwhile is refused at the commit.
    rd_lmdbx_outfile of;
    assert_int_equal(rd_lmdbx_outfile_open(path, &of, &eb), RD_OK);
    assert_non_null(strstr(of.tmp, "out.bin.tmp."));
    fputs("partial", of.f);
    rd_lmdbx_outfile_abort(&of);
    rd_lmdbx_outfile_abort(&of); // twice is harmless
    assert_int_equal(count_tmp(dir, "out.bin"), 0);
    assert_int_equal(rd_lmdbx_outfile_open(path, &of, &eb), RD_OK);
    fprintf(of.f, "%s", "streamed");
    assert_int_equal(rd_lmdbx_outfile_commit(&of, &eb), RD_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(rd_lmdbx_outfile_open(path, &of, &eb), RD_OK);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink(victim, path), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_outfile_commit(&of, &eb), RD_ERR_EXISTS);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(count_tmp(dir, "out.bin"), 0);
    assert_int_equal(unlink(path), 0);
    // A folder at the target is refused at the open, not at the rename after the caller's work.
    assert_int_equal(mkdir(path, 0755), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_outfile_open(path, &of, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "exists and is a folder"));
    assert_null(of.f);
    assert_int_equal(count_tmp(dir, "out.bin"), 0);
    assert_int_equal(rmdir(path), 0);
    // A missing folder: the message names the target's folder, nothing is created.
    char nodir[420];
    snprintf(nodir, sizeof nodir, "%s/none/x.bin", dir);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_atomic(nodir, "x", 1, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "none/x.bin"));
    char want[440];
    snprintf(want, sizeof want, "no folder %s/none (", dir);
    assert_non_null(strstr(eb.msg, want));
    // A path ending with '/' names a folder: refused by name, before anything is made.
    char slash[420];
    snprintf(slash, sizeof slash, "%s/out/", dir);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_outfile_open(slash, &of, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "ends with '/': give the path of a file"));
    assert_null(of.f);
    assert_int_equal(count_tmp(dir, "out"), 0);
    // 3. Two writers into one path, many times over: every write succeeds, and the file is
    // always one writer's complete content.
    enum { SIZE = 256 << 10, ROUNDS = 25 };
    fflush(NULL);
    pid_t pid[2];
    for (int w = 0; w < 2; w++) {
        pid[w] = fork();
        assert_true(pid[w] >= 0);
        if (pid[w] == 0) {
            unsigned char *buf = malloc(SIZE);
            if (!buf)
                _exit(99);
            memset(buf, 'A' + w, SIZE);
            int failed = 0;
            for (int r = 0; r < ROUNDS; r++)
                failed += rd_lmdbx_write_file_atomic(path, buf, SIZE, NULL) != RD_OK;
            free(buf);
            _exit(failed);
        }
    }
    for (int w = 0; w < 2; w++) {
        int status = 0;
        assert_int_equal(waitpid(pid[w], &status, 0), pid[w]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *got = malloc(SIZE + 1);
    assert_int_equal(fread(got, 1, SIZE + 1, f), SIZE);
    fclose(f);
    assert_true(got[0] == 'A' || got[0] == 'B');
    for (size_t i = 1; i < SIZE; i++)
        if (got[i] != got[0])
            fail_msg("byte %zu is '%c' in a file of '%c': a torn write", i, got[i], got[0]);
    free(got);
    assert_int_equal(count_tmp(dir, "out.bin"), 0);
    // 4. Folders to build an output in are unique too, and never a planted link.
    char part1[500], part2[500], planted[420];
    snprintf(planted, sizeof planted, "%s/ckpt.partial", dir);
    assert_int_equal(symlink(victim, planted), 0);
    snprintf(planted, sizeof planted, "%s/ckpt", dir);
    assert_int_equal(rd_lmdbx_mkdir_partial(planted, part1, sizeof part1, &eb), RD_OK);
    assert_int_equal(rd_lmdbx_mkdir_partial(planted, part2, sizeof part2, &eb), RD_OK);
    assert_string_not_equal(part1, part2);
    assert_non_null(strstr(part1, "/ckpt.partial."));
    assert_int_equal(lstat(part1, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(lstat(part2, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

// An output that must not exist (`recdistill export`): the command checked that the path was
// free, wrote its temporary file and renamed it over the path. Two exports into one new path
// (two jobs of a sweep given the same --out) both said they exported it, and the second rename
// silently replaced the first bundle. rd_lmdbx_outfile_commit_new links the file in place
// instead: an entry made meanwhile is kept and the commit fails, naming the path.
static void test_commit_new(void **state) {
    (void)state;
    char dir[300], path[400], other[420];
    snprintf(dir, sizeof dir, "%s/commit_new", g_root);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/x.rdsv", dir);
    snprintf(other, sizeof other, "%s/elsewhere", dir);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_new(path, "first", 5, &eb), RD_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 5);
    // Another run's file is there by now: refused, kept, nothing left behind.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_new(path, "second!", 7, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "x.rdsv exists (written meanwhile by another run)"));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(count_tmp(dir, "x.rdsv"), 0);
    // The stream form, the target made between the open and the commit.
    assert_int_equal(unlink(path), 0);
    rd_lmdbx_outfile of;
    assert_int_equal(rd_lmdbx_outfile_open(path, &of, &eb), RD_OK);
    fputs("mine", of.f);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("theirs!!", f);
    fclose(f);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_outfile_commit_new(&of, &eb), RD_ERR_EXISTS);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(count_tmp(dir, "x.rdsv"), 0);
    // A dangling symlink made meanwhile is an entry too, and is not followed.
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rd_lmdbx_outfile_open(path, &of, &eb), RD_OK);
    fputs("mine", of.f);
    assert_int_equal(symlink(other, path), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_outfile_commit_new(&of, &eb), RD_ERR_EXISTS);
    assert_int_equal(lstat(other, &st), -1);
    assert_int_equal(count_tmp(dir, "x.rdsv"), 0);
    // Concurrent writers into one new path, many times over: exactly one succeeds each time.
    enum { WRITERS = 4, ROUNDS = 20 };
    for (int r = 0; r < ROUNDS; r++) {
        unlink(path);
        fflush(NULL);
        pid_t pid[WRITERS];
        for (int w = 0; w < WRITERS; w++) {
            pid[w] = fork();
            assert_true(pid[w] >= 0);
            if (pid[w] == 0)
                _exit(rd_lmdbx_write_file_new(path, "bundle", 6, NULL) == RD_OK ? 0 : 1);
        }
        int ok = 0;
        for (int w = 0; w < WRITERS; w++) {
            int status = 0;
            assert_int_equal(waitpid(pid[w], &status, 0), pid[w]);
            assert_true(WIFEXITED(status));
            ok += WEXITSTATUS(status) == 0;
        }
        assert_int_equal(ok, 1);
        assert_int_equal(count_tmp(dir, "x.rdsv"), 0);
    }
}

// The fsync of the output's folder fails after the rename (EIO, a failing disk): the commands
// failed with their output in place (`table export`, `score`, `export`, `plot`, `scale-model`).
// A command's output is removed again (commit_out, commit_new, write_file_out); a file others
// rely on (rd_lmdbx_outfile_commit: a store's MANIFEST) stays, new rather than none.
static void test_commit_fsync_fails(void **state) {
    (void)state;
    char dir[300], path[400], real[4096];
    snprintf(dir, sizeof dir, "%s/commit_fsync", g_root);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_non_null(realpath(dir, real)); // as /proc/self/fd names it
    snprintf(path, sizeof path, "%s/x.out", dir);
    size_t real_len = strlen(real);
    assert_true(real_len < sizeof g_fsync_fail);
    memcpy(g_fsync_fail, real, real_len + 1);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    struct stat st;
    rd_lmdbx_outfile of;
    assert_int_equal(rd_lmdbx_outfile_open(path, &of, &eb), RD_OK);
    fputs("new", of.f);
    assert_int_equal(rd_lmdbx_outfile_commit_out(&of, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "fsync folder"));
    assert_int_equal(lstat(path, &st), -1);
    // Over an existing file: the new one is removed (the old one went with the rename).
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("old", f);
    fclose(f);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_out(path, "new!", 4, &eb), RD_ERR_IO);
    assert_int_equal(lstat(path, &st), -1);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_new(path, "new!", 4, &eb), RD_ERR_IO);
    assert_int_equal(lstat(path, &st), -1);
    // rd_lmdbx_outfile_commit: the error, and the new file kept.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_write_file_atomic(path, "new!", 4, &eb), RD_ERR_IO);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4);
    assert_int_equal(count_tmp(dir, "x.out"), 0);
    g_fsync_fail[0] = '\0';
}

// Leftovers of killed builds (SIGKILL: no handler ran) are removed by the next build of the same
// output on this host when their process no longer runs; another host's, a running process's,
// another output's and a name that does not parse are left alone.
// An output that would land in an input: the input file itself under any name, the input
// folder, or a path inside it (through "..", a symlink, a missing tail); siblings pass.
static void test_out_not_input(void **state) {
    (void)state;
    char dir[300], ck[400], file[400], p[900], sym[400], hard[400];
    store_path(dir, sizeof dir, "outin");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(ck, sizeof ck, "%s/ckpt", dir);
    assert_int_equal(mkdir(ck, 0755), 0);
    snprintf(file, sizeof file, "%s/in.csv", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("x,y\n", f);
    fclose(f);
    snprintf(sym, sizeof sym, "%s/to_ckpt", dir);
    assert_int_equal(symlink(ck, sym), 0);
    snprintf(hard, sizeof hard, "%s/hard.csv", dir);
    assert_int_equal(link(file, hard), 0);
    rd_errbuf eb;
    static const struct {
        const char *out; // %s = dir
        int folder;      // 1 = against the folder ckpt, 0 = against the file in.csv
        int refused;
        const char *msg;
    } cases[] = {
        {"%s/ckpt/MANIFEST", 1, 1, "is inside the input checkpoint"},
        {"%s/ckpt", 1, 1, "/ckpt is the input checkpoint"},
        {"%s/ckpt/", 1, 1, "is the input checkpoint"},
        {"%s/ckpt/new/deeper/../x", 1, 1, "is inside"},
        {"%s/ckpt/../ckpt/./shard-00000", 1, 1, "is inside"},
        {"%s/to_ckpt/MANIFEST", 1, 1, "is inside"},
        {"%s/ckpt/new/../../out", 1, 0, NULL},
        {"%s/ckptx", 1, 0, NULL},
        {"%s/other/MANIFEST", 1, 0, NULL},
        {"%s/in.csv", 0, 1, "is the input file"},
        {"%s/./in.csv", 0, 1, "is the input file"},
        {"%s/hard.csv", 0, 1, "is the input file"},
        {"%s/in.csv.png", 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(p, sizeof p, cases[i].out, dir);
        rd_errbuf_clear(&eb);
        int rc = rd_lmdbx_check_out_not_input(
            "--out", p, cases[i].folder ? "the input checkpoint" : "the input file",
            cases[i].folder ? ck : file, &eb);
        if (rc != (cases[i].refused ? RD_ERR_ARG : RD_OK))
            fail_msg("case %zu (%s): rc %d", i, p, rc);
        if (cases[i].msg && (!strstr(eb.msg, cases[i].msg) || !strstr(eb.msg, "nothing written") ||
                             !strstr(eb.msg, p)))
            fail_msg("case %zu: message '%s' lacks '%s'", i, eb.msg, cases[i].msg);
    }
    // A relative path, resolved from the working folder; two outputs that do not exist yet.
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(
        rd_lmdbx_check_out_not_input("--out", "ckpt/x", "the input checkpoint", ck, &eb),
        RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(
        rd_lmdbx_check_out_not_input("--out", "a.png", "--out-throughput", "./b/../a.png", &eb),
        RD_ERR_ARG);
    rd_errbuf_clear(&eb);
    assert_int_equal(
        rd_lmdbx_check_out_not_input("--out", "a.png", "--out-throughput", "b.png", &eb), RD_OK);
    assert_int_equal(chdir(cwd), 0);
}

static void test_stale_partials(void **state) {
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "stale");
    assert_int_equal(mkdir(dir, 0755), 0);
    char out[400], mine[500], p[1600];
    snprintf(out, sizeof out, "%s/copy", dir);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_mkdir_partial(out, mine, sizeof mine, &eb), RD_OK);
    // This host's tag, as the library writes it: what follows "copy.partial." up to the pid.
    const char *tag = strstr(mine, "copy.partial.") + strlen("copy.partial.");
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(strrchr(mine, '.') - tag), tag);
    *strrchr(host, '.') = '\0'; // drop ".<pid>"
    // A process that ran and is gone: its pid.
    fflush(NULL);
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    struct {
        char name[300];
        int stays;
    } c[6];
    snprintf(c[0].name, sizeof c[0].name, "copy.partial.%.48s.%ld.0badc0de", host, (long)dead);
    c[0].stays = 0; // this host, process gone: removed
    snprintf(c[1].name, sizeof c[1].name, "copy.partial.other-host.%ld.0badc0de", (long)dead);
    c[1].stays = 1; // another host
    snprintf(c[2].name, sizeof c[2].name, "copy.partial.%.48s.%ld.0badc0de", host, (long)getppid());
    c[2].stays = 1; // a running process
    snprintf(c[3].name, sizeof c[3].name, "copy2.partial.%.48s.%ld.0badc0de", host, (long)dead);
    c[3].stays = 1; // another output
    snprintf(c[4].name, sizeof c[4].name, "copy.partial.%.48s.%ld.nothex!!", host, (long)dead);
    c[4].stays = 1; // not a name the library writes
    snprintf(c[5].name, sizeof c[5].name, "copy.partial.%.48s.%ldx.0badc0de", host, (long)dead);
    c[5].stays = 1;
    for (int k = 0; k < 6; k++) {
        snprintf(p, sizeof p, "%s/%.300s", dir, c[k].name);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof p, "%s/%.300s/shard-0000", dir, c[k].name);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof p, "%s/%.300s/shard-0000/data.mdb", dir, c[k].name);
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        fputs("left", f);
        fclose(f);
    }
    char again[500];
    assert_int_equal(rd_lmdbx_mkdir_partial(out, again, sizeof again, &eb), RD_OK);
    struct stat st;
    for (int k = 0; k < 6; k++) {
        snprintf(p, sizeof p, "%s/%.300s", dir, c[k].name);
        if ((stat(p, &st) == 0) != c[k].stays)
            fail_msg("%s: %s", c[k].name, c[k].stays ? "removed" : "left");
    }
    // This process's own earlier folder (alive) stays too.
    assert_int_equal(stat(mine, &st), 0);
    assert_int_equal(stat(again, &st), 0);
    rd_lmdbx_pending_forget(mine);
    rd_lmdbx_pending_forget(again);
}

// A process that ran and is gone: its pid.
static pid_t dead_pid(void) {
    fflush(NULL);
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    return dead;
}

static void touch_file(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%.300s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs("left", f);
    assert_int_equal(fclose(f), 0);
}

static int exists_in(const char *dir, const char *name) {
    char p[1200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%.300s", dir, name);
    return lstat(p, &st) == 0;
}

static int only_report(const char *name, size_t len) {
    return len == strlen("report.json") && strncmp(name, "report.json", len) == 0;
}

// The temporary files of rd_lmdbx_outfile that killed writers left: the name the library writes
// parses back; only regular files of a gone process of this host, for a target the caller owns,
// are removed; a running process's, this process's, a folder, a symlink, other targets and names
// that merely look alike stay.
static void test_stale_outfiles(void **state) {
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "stale_out");
    assert_int_equal(mkdir(dir, 0755), 0);
    char out[400];
    snprintf(out, sizeof out, "%s/report.json", dir);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_lmdbx_outfile of;
    assert_int_equal(rd_lmdbx_outfile_open(out, &of, &eb), RD_OK);
    size_t tl = 0;
    long pid = 0;
    assert_int_equal(rd_lmdbx_outfile_tmp_name(strrchr(of.tmp, '/') + 1, &tl, &pid), 1);
    assert_int_equal(tl, strlen("report.json"));
    assert_int_equal(pid, (long)getpid());
    long dead = (long)dead_pid();
    struct {
        char name[300];
        int stays;
    } c[14];
    int n = 0;
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp.%ld.0badc0de", dead);
    c[n++].stays = 0; // process gone: removed
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp.%ld.0badc0de", (long)getppid());
    c[n++].stays = 1; // a running process
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp.%ld.0badc0de", (long)getpid());
    c[n++].stays = 1; // this process
    snprintf(c[n].name, sizeof c[n].name, "notes.txt.tmp.%ld.0badc0de", dead);
    c[n++].stays = 1; // a target the caller does not own
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp.%ld.0BADC0DE", dead);
    c[n++].stays = 1; // not the library's hex
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp.%ld.0badc0d", dead);
    c[n++].stays = 1;
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp.0%ld.0badc0de", dead);
    c[n++].stays = 1; // a pid the library never writes
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp%ld.0badc0de", dead);
    c[n++].stays = 1;
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp.%ld.0badc0de.bak", dead);
    c[n++].stays = 1;
    snprintf(c[n].name, sizeof c[n].name, "report.json");
    c[n++].stays = 1;
    snprintf(c[n].name, sizeof c[n].name, "report.json.tmp.2147483648.0badc0de");
    c[n++].stays = 1; // no pid is that large (as a pid_t, INT_MIN: kill says ESRCH)
    for (int k = 0; k < n; k++)
        touch_file(dir, c[k].name);
    char folder[300], link[300], p[1200];
    snprintf(folder, sizeof folder, "report.json.tmp.%ld.1badc0de", dead);
    snprintf(p, sizeof p, "%s/%s", dir, folder);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(link, sizeof link, "report.json.tmp.%ld.2badc0de", dead);
    snprintf(p, sizeof p, "%s/%s", dir, link);
    assert_int_equal(symlink("report.json", p), 0);
    assert_int_equal(rd_lmdbx_remove_stale_outfiles(dir, only_report), 1);
    for (int k = 0; k < n; k++)
        if (exists_in(dir, c[k].name) != c[k].stays)
            fail_msg("%s: %s", c[k].name, c[k].stays ? "removed" : "left");
    assert_true(exists_in(dir, folder));
    assert_true(exists_in(dir, link));
    assert_int_equal(access(of.tmp, F_OK), 0); // this process's own, being written
    rd_lmdbx_outfile_abort(&of);
    // No filter: any target's, still only a gone process's.
    assert_int_equal(rd_lmdbx_remove_stale_outfiles(dir, NULL), 1);
    assert_false(exists_in(dir, c[3].name));
    assert_true(exists_in(dir, c[1].name));
    assert_int_equal(rd_lmdbx_remove_stale_outfiles("/nonexistent/rd_stale", NULL), 0);
    // A writer really SIGKILLed between its create and its rename: its file goes, the target
    // stays as it was.
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t w = fork();
    assert_true(w >= 0);
    if (w == 0) {
        close(fds[0]);
        rd_lmdbx_outfile wof;
        if (rd_lmdbx_outfile_open(out, &wof, NULL) != RD_OK || fputs("new", wof.f) < 0 ||
            fflush(wof.f) != 0)
            _exit(1);
        size_t len = strlen(wof.tmp) + 1;
        if (write(fds[1], wof.tmp, len) != (ssize_t)len)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    char left[sizeof of.tmp];
    size_t got = 0;
    ssize_t r;
    while (!memchr(left, 0, got) && got < sizeof left &&
           (r = read(fds[0], left + got, sizeof left - got)) > 0)
        got += (size_t)r;
    close(fds[0]);
    assert_non_null(memchr(left, 0, got)); // the child's temporary file, named
    assert_int_equal(kill(w, SIGKILL), 0);
    assert_int_equal(waitpid(w, NULL, 0), w);
    assert_int_equal(access(left, F_OK), 0);
    assert_int_equal(rd_lmdbx_remove_stale_outfiles(dir, only_report), 1);
    assert_int_not_equal(access(left, F_OK), 0);
    assert_true(exists_in(dir, "report.json"));
}

// The writer lock of a store, once taken, removes what killed writers of this host left: the
// temporaries of MANIFEST and DATASET and DATASET.new records never linked in; nothing else.
static void test_store_lock_removes_stale(void **state) {
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "stale_lock");
    assert_int_equal(mkdir(dir, 0755), 0);
    long dead = (long)dead_pid();
    struct {
        char name[300];
        int stays;
    } c[10];
    int n = 0;
    snprintf(c[n].name, sizeof c[n].name, "MANIFEST.tmp.%ld.0badc0de", dead);
    c[n++].stays = 0;
    snprintf(c[n].name, sizeof c[n].name, "DATASET.tmp.%ld.0badc0de", dead);
    c[n++].stays = 0;
    snprintf(c[n].name, sizeof c[n].name, "DATASET.new.%ld.123456789", dead);
    c[n++].stays = 0;
    snprintf(c[n].name, sizeof c[n].name, "DATASET.new.%ld.5.tmp.%ld.0badc0de", dead, dead);
    c[n++].stays = 0;
    snprintf(c[n].name, sizeof c[n].name, "DATASET.new.%ld.5", (long)getppid());
    c[n++].stays = 1; // a running process
    snprintf(c[n].name, sizeof c[n].name, "MANIFEST.tmp.%ld.0badc0de", (long)getppid());
    c[n++].stays = 1;
    snprintf(c[n].name, sizeof c[n].name, "DATASET.new.%ld.12x", dead);
    c[n++].stays = 1; // not a name the store writes
    snprintf(c[n].name, sizeof c[n].name, "DATASET.new.%ld.", dead);
    c[n++].stays = 1;
    snprintf(c[n].name, sizeof c[n].name, "shard-0000.tmp.%ld.0badc0de", dead);
    c[n++].stays = 1; // no file of the store is written so
    snprintf(c[n].name, sizeof c[n].name, "my-notes.txt");
    c[n++].stays = 1;
    for (int k = 0; k < n; k++)
        touch_file(dir, c[k].name);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int fd = -1;
    assert_int_equal(rd_token_store_lock(dir, "test", &fd, &eb), RD_OK);
    for (int k = 0; k < n; k++)
        if (exists_in(dir, c[k].name) != c[k].stays)
            fail_msg("%s: %s", c[k].name, c[k].stays ? "removed" : "left");
    rd_token_store_unlock(fd);
}

// A reader killed inside a read (a `tokens verify` stopped with kill -9, a crashed server) leaves
// its slot in lock.mdb holding its snapshot: LMDB may not reuse any page freed after it. A
// writer that keeps the env open (a PS rank for the whole launch) never cleared that slot, so
// every commit's copied pages were lost: 50 rewrites of a 2.5 MB shard grew its data.mdb to
// 130 MB instead of 3.5 MB, and appends of new records took 35 % more room, until some other
// process happened to open the env. A write transaction now clears dead readers' slots first.
static int block_in_read(const rd_token_record *rec, void *user) {
    (void)rec;
    char c = 'r';
    (void)!write(*(int *)user, &c, 1);
    pause(); // killed here, inside the read transaction
    return 0;
}

static long shard_file_bytes(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/shard-0000/data.mdb", dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return (long)st.st_size;
}

static void test_dead_reader_pins_no_pages(void **state) {
    (void)state;
    enum { N = 3000, DIM = 8, ROUNDS = 12 };
    char dir[512];
    store_path(dir, sizeof dir, "dead_reader");
    rd_token_store *s = create_store("dead_reader", DIM, RD_TOKEN_FP32, 1, 0);
    uint64_t *users = calloc(N, sizeof *users), *ids = calloc(N, sizeof *ids);
    int64_t *ts = calloc(N, sizeof *ts);
    float *tok = calloc((size_t)N * DIM, sizeof *tok);
    assert_true(users && ids && ts && tok);
    for (int i = 0; i < N; i++) {
        users[i] = 1 + (uint64_t)(i % 100);
        ts[i] = 1000 + i;
        ids[i] = (uint64_t)i + 1;
    }
    rd_token_batch b = {0};
    b.n = N;
    b.users = users;
    b.ts = ts;
    b.ids = ids;
    b.tokens = tok;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK); // the freelist in use once
    const long base = shard_file_bytes(dir);
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        rd_token_open_opts o = {0};
        o.mode = RD_TOKEN_READ_ONLY;
        rd_token_store *r = NULL;
        if (rd_token_store_open(dir, &o, &r, &eb) == RD_OK)
            rd_token_store_iterate(r, -1, block_in_read, &p[1], &eb);
        _exit(1);
    }
    close(p[1]);
    char c = 0;
    assert_int_equal(read(p[0], &c, 1), 1); // inside its read
    close(p[0]);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    for (int round = 0; round < ROUNDS; round++) { // the same records rewritten, as a rebuild
        for (size_t i = 0; i < (size_t)N * DIM; i++)
            tok[i] += 1.0f;
        assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    }
    const long end = shard_file_bytes(dir);
    rd_token_store_destroy(s);
    free(users);
    free(ids);
    free(ts);
    free(tok);
    // Without the dead reader's slot cleared, each round added about a store's worth.
    if (end > 2 * base)
        fail_msg("%d rewrites after a reader died inside a read: data.mdb grew from %ld to %ld "
                 "bytes",
                 ROUNDS, base, end);
}

// ---------------------------------------------------------------------------------------------
// Round trips

static void roundtrip(int dtype, const char *name) {
    const size_t dim = 24, per_user = 40;
    const int n_users = 9;
    rd_token_store *s = create_store(name, (int)dim, dtype, 4, 0);
    size_t n = (size_t)n_users * per_user;
    uint64_t *users = malloc(n * 8), *ids = malloc(n * 8), *items = malloc(n * 8);
    int64_t *ts = malloc(n * 8);
    float *tok = malloc(n * dim * 4), *labels = malloc(n * 4);
    uint32_t *flags = malloc(n * 4);
    // Insert in reverse time order to exercise the non-MDB_APPEND path too.
    for (size_t i = 0; i < n; i++) {
        size_t u = i % (size_t)n_users, k = per_user - 1 - i / (size_t)n_users;
        users[i] = 1000 + u;
        ts[i] = (int64_t)k * 10 - 100; // negative timestamps too
        ids[i] = k * 3 + 1;
        items[i] = rd_mix64(i + 1);
        labels[i] = (float)(k % 2);
        flags[i] = (uint32_t)k;
        fill_token(tok + i * dim, dim, users[i], ts[i], ids[i]);
    }
    rd_token_batch b = {n, users, ts, ids, tok, labels, items, flags, NULL};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    // Read back from the writer handle and from a read-only handle.
    for (int pass = 0; pass < 2; pass++) {
        rd_token_store *r = s;
        int rc = RD_OK;
        if (pass == 1) {
            r = open_store(name, RD_TOKEN_READ_ONLY, &rc, &eb);
            assert_int_equal(rc, RD_OK);
        }
        fout f;
        fout_init(&f, 1, per_user, dim);
        for (int u = 0; u < n_users; u++) {
            assert_int_equal(
                rd_token_store_fetch(r, 1000 + (uint64_t)u, INT64_MAX, per_user, &f.o, &eb), RD_OK);
            assert_int_equal(f.o.n_found[0], per_user);
            for (size_t k = 0; k < per_user; k++) {
                int64_t t = (int64_t)k * 10 - 100;
                assert_true(f.o.ts[k] == t);
                assert_true(f.o.ids[k] == k * 3 + 1);
                assert_true(f.o.labels[k] == (float)(k % 2));
                assert_int_equal(f.o.mask[k], 1);
                for (size_t j = 0; j < dim; j++) {
                    float want = tokval(1000 + (uint64_t)u, t, k * 3 + 1, j);
                    float got = f.o.tokens[k * dim + j];
                    if (dtype == RD_TOKEN_FP32)
                        assert_true(got == want);
                    else
                        assert_true(fabsf(got - want) <= 1e-3f * fabsf(want) + 1e-7f);
                }
            }
        }
        fout_free(&f);
        uint64_t checked = 0;
        assert_int_equal(rd_token_store_verify(r, &checked, &eb), RD_OK);
        assert_true(checked == n);
        if (pass == 1)
            rd_token_store_destroy(r);
    }
    rd_token_store_destroy(s);
    free(users);
    free(ids);
    free(items);
    free(ts);
    free(tok);
    free(labels);
    free(flags);
}

static void test_roundtrip_fp32(void **state) {
    (void)state;
    roundtrip(RD_TOKEN_FP32, "rt32");
}

static void test_roundtrip_fp16(void **state) {
    (void)state;
    roundtrip(RD_TOKEN_FP16, "rt16");
}

// ---------------------------------------------------------------------------------------------
// No leakage: a property test against a reference model

typedef struct ref_rec {
    uint64_t user;
    int64_t ts;
    uint64_t id;
    float label;
    uint64_t item;
} ref_rec;

static int ref_cmp(const void *a, const void *b) {
    const ref_rec *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void test_no_leakage(void **state) {
    (void)state;
    const size_t dim = 8;
    const int n_users = 40;
    rd_token_store *s = create_store("leak", (int)dim, RD_TOKEN_FP32, 3, 0);
    rd_rng r;
    rd_rng_seed(&r, 77);
    // Users with 0..60 records; timestamps in a small range so that many share a timestamp.
    size_t cap = (size_t)n_users * 60, n = 0;
    ref_rec *ref = malloc(cap * sizeof *ref);
    for (int u = 0; u < n_users; u++) {
        size_t cnt = (size_t)rd_rng_below(&r, 61);
        for (size_t k = 0; k < cnt; k++) {
            ref_rec *x = &ref[n++];
            x->user = rd_mix64((uint64_t)u + 17); // spread over the shards
            x->ts = (int64_t)rd_rng_below(&r, 31) - 5;
            x->id = k + 1; // unique per user
            x->label = (float)rd_rng_below(&r, 2);
            x->item = rd_rng_u64(&r);
        }
    }
    // Append in random order, in several batches.
    size_t *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rd_rng_below(&r, i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    uint64_t *users = malloc(n * 8), *ids = malloc(n * 8), *items = malloc(n * 8);
    int64_t *ts = malloc(n * 8);
    float *tok = malloc(n * dim * 4), *labels = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        const ref_rec *x = &ref[perm[i]];
        users[i] = x->user;
        ts[i] = x->ts;
        ids[i] = x->id;
        items[i] = x->item;
        labels[i] = x->label;
        fill_token(tok + i * dim, dim, x->user, x->ts, x->id);
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    for (size_t b0 = 0; b0 < n; b0 += 333) {
        size_t m = n - b0 < 333 ? n - b0 : 333;
        rd_token_batch b = {m,           users + b0, ts + b0, ids + b0, tok + b0 * dim,
                            labels + b0, items + b0, NULL,    NULL};
        assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    }
    qsort(ref, n, sizeof *ref, ref_cmp);
    // Random queries, single and batched.
    const size_t Q = 600, LMAX = 70;
    uint64_t *qu = malloc(Q * 8);
    int64_t *qt = malloc(Q * 8);
    size_t *ql = malloc(Q * sizeof *ql);
    for (size_t q = 0; q < Q; q++) {
        qu[q] = rd_mix64(rd_rng_below(&r, (uint64_t)n_users + 3) + 17); // a few unknown users
        qt[q] = (int64_t)rd_rng_below(&r, 40) - 8;
        if (q % 50 == 0)
            qt[q] = q % 100 == 0 ? INT64_MIN : INT64_MAX;
        ql[q] = 1 + (size_t)rd_rng_below(&r, LMAX);
    }
    fout f;
    fout_init(&f, 1, LMAX, dim);
    for (size_t q = 0; q < Q; q++) {
        size_t L = ql[q];
        memset(f.o.tokens, 0x7f, L * dim * 4);
        memset(f.o.mask, 0x55, L);
        assert_int_equal(rd_token_store_fetch(s, qu[q], qt[q], L, &f.o, &eb), RD_OK);
        // Reference: records of the user with ts < t, the last min(L, count).
        size_t lo = 0;
        while (lo < n && ref[lo].user < qu[q])
            lo++;
        size_t hi = lo;
        while (hi < n && ref[hi].user == qu[q] && ref[hi].ts < qt[q])
            hi++;
        size_t count = hi - lo, want = count < L ? count : L;
        assert_int_equal(f.o.n_found[0], want);
        for (size_t k = 0; k < want; k++) {
            const ref_rec *x = &ref[hi - want + k];
            assert_true(f.o.ts[k] < qt[q]); // never at or after t
            assert_true(f.o.ts[k] == x->ts);
            assert_true(f.o.ids[k] == x->id);
            assert_true(f.o.items[k] == x->item);
            assert_true(f.o.labels[k] == x->label);
            assert_int_equal(f.o.mask[k], 1);
            for (size_t j = 0; j < dim; j++)
                assert_true(f.o.tokens[k * dim + j] == tokval(x->user, x->ts, x->id, j));
        }
        for (size_t k = want; k < L; k++) {
            assert_int_equal(f.o.mask[k], 0);
            assert_true(f.o.ts[k] == 0 && f.o.ids[k] == 0 && f.o.items[k] == 0);
            for (size_t j = 0; j < dim; j++)
                assert_true(f.o.tokens[k * dim + j] == 0.0f);
        }
    }
    fout_free(&f);
    // The batched fetch gives the same rows.
    const size_t L = 25;
    fout fb, f1;
    fout_init(&fb, Q, L, dim);
    fout_init(&f1, 1, L, dim);
    assert_int_equal(rd_token_store_fetch_batch(s, Q, qu, qt, NULL, L, &fb.o, &eb), RD_OK);
    for (size_t q = 0; q < Q; q++) {
        assert_int_equal(rd_token_store_fetch(s, qu[q], qt[q], L, &f1.o, &eb), RD_OK);
        assert_int_equal(fb.o.n_found[q], f1.o.n_found[0]);
        assert_memory_equal(fb.o.tokens + q * L * dim, f1.o.tokens, L * dim * 4);
        assert_memory_equal(fb.o.ts + q * L, f1.o.ts, L * 8);
        assert_memory_equal(fb.o.mask + q * L, f1.o.mask, L);
    }
    fout_free(&fb);
    fout_free(&f1);
    // With before ids: also the records at t whose instance id is below the request's (the key
    // order), never the record with that id, nothing after it.
    uint64_t *qi = malloc(Q * 8);
    for (size_t q = 0; q < Q; q++)
        qi[q] = q % 37 == 0 ? UINT64_MAX : rd_rng_below(&r, 60);
    fout_init(&fb, Q, L, dim);
    assert_int_equal(rd_token_store_fetch_batch(s, Q, qu, qt, qi, L, &fb.o, &eb), RD_OK);
    size_t ties = 0;
    for (size_t q = 0; q < Q; q++) {
        size_t lo = 0;
        while (lo < n && ref[lo].user < qu[q])
            lo++;
        size_t hi = lo;
        while (hi < n && ref[hi].user == qu[q] &&
               (ref[hi].ts < qt[q] || (ref[hi].ts == qt[q] && ref[hi].id < qi[q])))
            hi++;
        size_t count = hi - lo, want = count < L ? count : L;
        assert_int_equal(fb.o.n_found[q], want);
        for (size_t k = 0; k < want; k++) {
            const ref_rec *x = &ref[hi - want + k];
            assert_true(fb.o.ts[q * L + k] == x->ts && fb.o.ids[q * L + k] == x->id);
            assert_true(x->ts < qt[q] || x->id < qi[q]);
            ties += x->ts == qt[q];
            assert_true(fb.o.tokens[(q * L + k) * dim] == tokval(x->user, x->ts, x->id, 0));
        }
    }
    assert_true(ties > 0); // the queries did reach records of their own time
    fout_free(&fb);
    free(qi);
    rd_token_store_destroy(s);
    free(ref);
    free(perm);
    free(users);
    free(ids);
    free(items);
    free(ts);
    free(tok);
    free(labels);
    free(qu);
    free(qt);
    free(ql);
}

// Duplicated keys replace the stored record; a re-appended batch is idempotent.
static void test_duplicate_keys(void **state) {
    (void)state;
    const size_t dim = 4;
    rd_token_store *s = create_store("dup", (int)dim, RD_TOKEN_FP32, 2, 0);
    uint64_t users[3] = {5, 5, 5}, ids[3] = {1, 1, 2};
    int64_t ts[3] = {10, 10, 10};
    float tok[12] = {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    rd_token_batch b = {3, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    fout f;
    fout_init(&f, 1, 4, dim);
    assert_int_equal(rd_token_store_fetch(s, 5, 11, 4, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 2);
    assert_true(f.o.tokens[0] == 2.0f); // the later of the two (5, 10, 1) records won
    assert_true(f.o.tokens[4] == 3.0f);
    assert_int_equal(rd_token_store_fetch(s, 5, 10, 4, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 0); // nothing strictly before 10
    fout_free(&f);
    rd_token_stats st;
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    assert_true(st.entries == 2);
    rd_token_store_destroy(s);
}

// A store folder removed (rm -rf) or replaced while a writer has it open: the open env went on
// working on the unlinked files, so appends and fetches succeeded and the tokens were lost with
// the folder. Now the next append or fetch fails, naming the store and its shard's file.
static void test_store_removed_while_open(void **state) {
    (void)state;
    const size_t dim = 4;
    char dir[512];
    store_path(dir, sizeof dir, "gone");
    uint64_t users[2] = {5, 6}, ids[2] = {1, 2};
    int64_t ts[2] = {10, 11};
    float tok[8] = {1, 1, 1, 1, 2, 2, 2, 2};
    rd_token_batch b = {2, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    fout f;
    fout_init(&f, 1, 4, dim);
    rd_errbuf eb;
    for (int replace = 0; replace < 2; replace++) {
        rd_token_store *s = create_store("gone", (int)dim, RD_TOKEN_FP32, 2, 0);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
        assert_int_equal(rd_token_store_fetch(s, 5, 11, 4, &f.o, &eb), RD_OK);
        assert_int_equal(f.o.n_found[0], 1);
        rm_rf(dir);
        if (replace) { // other files in its place (another process's new store)
            char cmd[2400];
            int n = snprintf(cmd, sizeof cmd,
                             "mkdir -p '%s/shard-0000' '%s/shard-0001' && touch "
                             "'%s/shard-0000/data.mdb' '%s/shard-0001/data.mdb'",
                             dir, dir, dir, dir);
            assert_true(n > 0 && (size_t)n < sizeof cmd);
            assert_int_equal(system(cmd), 0);
        }
        assert_int_equal(rd_token_store_append(s, &b, &eb), RD_ERR_IO);
        assert_non_null(strstr(eb.msg, dir));
        assert_non_null(strstr(eb.msg, replace ? "is another file" : "is gone"));
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_token_store_fetch(s, 5, 11, 4, &f.o, &eb), RD_ERR_IO);
        assert_non_null(strstr(eb.msg, "shard-"));
        rd_token_store_destroy(s);
        rm_rf(dir);
    }
    fout_free(&f);
}

// Append (user, ts, id) to the store in `dir` from a child process, or with gc_before > 0 delete
// the records before it: the writer of a store a server reads is another process (and this
// one's read-only envs would refuse a writable open).
static void
child_write(const char *dir, uint64_t user, int64_t ts, uint64_t id, int64_t gc_before) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rd_errbuf ceb;
        rd_errbuf_clear(&ceb);
        rd_token_open_opts o = {0};
        o.mode = RD_TOKEN_WRITE;
        o.no_sync = 1;
        rd_token_store *w = NULL;
        float tok[4];
        fill_token(tok, 4, user, ts, id);
        rd_token_batch b = {1, &user, &ts, &id, tok, NULL, NULL, NULL, NULL};
        int rc = rd_token_store_open(dir, &o, &w, &ceb);
        if (rc == RD_OK)
            rc = gc_before > 0 ? rd_token_store_gc(w, gc_before, NULL, &ceb)
                               : rd_token_store_append(w, &b, &ceb);
        rd_token_store_destroy(w);
        if (rc != RD_OK)
            fprintf(stderr, "child write: %s\n", ceb.msg);
        _exit(rc == RD_OK ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

// A serving process's read-only handles outlive what the training side does to the store:
// appends and gc change it in place (the same data.mdb, seen by the next fetch), `tokens compact`
// writes a new folder that an operator moves into the store's place, and a store may be removed or
// rebuilt there. The handles read their open (unlinked) files for ever: after rm -rf a fetch still
// answered RD_OK from the removed store, and after a compacted copy was moved in it never saw
// the tokens appended to it since. Now a fetch of a removed store fails naming its MANIFEST, a
// copy of the same store (same MANIFEST) is reopened at the next fetch, and another store in
// its place is refused naming both ids.
static void test_reader_store_replaced(void **state) {
    (void)state;
    const size_t dim = 4;
    char dir[512], copy[560];
    store_path(dir, sizeof dir, "served");
    snprintf(copy, sizeof copy, "%s.compact", dir);
    rd_token_store *w = create_store("served", (int)dim, RD_TOKEN_FP32, 2, 0);
    rd_token_store_info in0;
    rd_token_store_info_get(w, &in0);
    rd_token_store_destroy(w);
    child_write(dir, 5, 10, 1, 0);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_open_opts ro = {0};
    ro.mode = RD_TOKEN_READ_ONLY;
    rd_token_store *r1 = NULL, *r2 = NULL; // two serving threads' handles: one env each shard
    assert_int_equal(rd_token_store_open(dir, &ro, &r1, &eb), RD_OK);
    assert_int_equal(rd_token_store_open(dir, &ro, &r2, &eb), RD_OK);
    fout f;
    fout_init(&f, 1, 8, dim);
    assert_int_equal(rd_token_store_fetch(r1, 5, 100, 8, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 1);
    // Appends land in the same files: seen by the next fetch.
    child_write(dir, 5, 20, 2, 0);
    assert_int_equal(rd_token_store_fetch(r1, 5, 100, 8, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 2);
    // A compacted copy, the store removed: every read call refuses, naming the file.
    assert_int_equal(rd_tokentool_compact(dir, copy, &eb), RD_OK);
    rm_rf(dir);
    char file[600];
    snprintf(file, sizeof file, "%s/shard-0000/data.mdb", dir);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_fetch(r1, 5, 100, 8, &f.o, &eb), RD_ERR_IO);
    print_message("%s\n", eb.msg);
    assert_non_null(strstr(eb.msg, file));
    assert_non_null(strstr(eb.msg, "is gone"));
    rd_token_stats st;
    assert_int_equal(rd_token_store_stats(r2, &st, NULL, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, file));
    // The copy moved into its place is the same store: read again, appends to it included, in
    // either shard.
    assert_int_equal(rename(copy, dir), 0);
    uint64_t other = 6;
    while (rd_token_shard_of_user(other, 2) == rd_token_shard_of_user(5, 2))
        other++;
    child_write(dir, 5, 30, 3, 0);
    child_write(dir, other, 40, 4, 0);
    for (int k = 0; k < 2; k++) {
        rd_token_store *r = k ? r2 : r1;
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_token_store_fetch(r, 5, 100, 8, &f.o, &eb), RD_OK);
        assert_int_equal(f.o.n_found[0], 3);
        assert_true(f.o.ts[0] == 10 && f.o.ts[1] == 20 && f.o.ts[2] == 30);
        assert_int_equal(rd_token_store_fetch(r, other, 100, 8, &f.o, &eb), RD_OK);
        assert_int_equal(f.o.n_found[0], 1);
        assert_int_equal(f.o.ts[0], 40);
        assert_int_equal(rd_token_store_stats(r, &st, NULL, &eb), RD_OK);
        assert_int_equal(st.entries, 4);
    }
    // gc deletes in the same files: seen by the next fetch, no reopening.
    child_write(dir, 0, 0, 0, 15);
    assert_int_equal(rd_token_store_fetch(r1, 5, 100, 8, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 2);
    assert_true(f.o.ts[0] == 20 && f.o.ts[1] == 30);
    // Another store created in its place (same layout, another id): refused, naming both.
    rm_rf(dir);
    w = create_store("served", (int)dim, RD_TOKEN_FP32, 2, 0);
    rd_token_store_info in1;
    rd_token_store_info_get(w, &in1);
    rd_token_store_destroy(w);
    assert_true(in1.store_id != in0.store_id);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_fetch(r1, 5, 100, 8, &f.o, &eb), RD_ERR_IO);
    print_message("%s\n", eb.msg);
    char id[40];
    snprintf(id, sizeof id, "%016llx", (unsigned long long)in0.store_id);
    assert_non_null(strstr(eb.msg, id));
    snprintf(id, sizeof id, "%016llx", (unsigned long long)in1.store_id);
    assert_non_null(strstr(eb.msg, id));
    assert_non_null(strstr(eb.msg, "another store"));
    rd_token_store_info cur;
    rd_token_store_info_get(r1, &cur);
    assert_true(cur.store_id == in0.store_id);
    rd_token_store_destroy(r1);
    rd_token_store_destroy(r2);
    fout_free(&f);
    rm_rf(dir);
}

// ---------------------------------------------------------------------------------------------
// Map growth

// max_map_size below LMDB's default map (1 MiB) holds: a new shard starts at the cap, and an
// append that needs more is refused with RD_ERR_FULL instead of filling a 1 MiB map. Before,
// a 128 KiB cap took 2000 records of 300 bytes (a 688 KiB file in a 1 MiB map).
static void test_small_map_cap(void **state) {
    (void)state;
    char dir[512];
    store_path(dir, sizeof dir, "smallcap");
    rd_token_store_opts o = {0};
    o.dim = 64;
    o.dtype = RD_TOKEN_FP32;
    o.n_shards = 1;
    o.max_map_size = 128 << 10;
    o.no_sync = 1;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &o, &s, &eb), RD_OK);
    enum { N = 2000, B = 100 };
    uint64_t *users = calloc(N, 8), *ids = calloc(N, 8);
    int64_t *ts = calloc(N, 8);
    float *tok = calloc((size_t)N * 64, 4);
    for (size_t i = 0; i < N; i++) {
        users[i] = 7;
        ts[i] = (int64_t)i;
        ids[i] = i;
    }
    int rc = RD_OK;
    for (size_t b = 0; b < N && rc == RD_OK; b += B) {
        rd_token_batch bt = {B, users + b, ts + b, ids + b, tok + b * 64, NULL, NULL, NULL, NULL};
        rc = rd_token_store_append(s, &bt, &eb);
    }
    assert_int_equal(rc, RD_ERR_FULL);
    rd_token_stats st;
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    assert_true(st.map_bytes <= (uint64_t)o.max_map_size);
    assert_true(st.file_bytes <= (uint64_t)o.max_map_size);
    assert_true(st.entries > 0 && st.entries < N);
    rd_token_store_destroy(s);
    free(users);
    free(ids);
    free(ts);
    free(tok);
}

static void test_map_growth(void **state) {
    (void)state;
    const size_t dim = 64, N = 100000, B = 10000;
    rd_token_store *s = create_store("grow", (int)dim, RD_TOKEN_FP32, 2, 64 << 10);
    uint64_t *users = malloc(B * 8), *ids = malloc(B * 8);
    int64_t *ts = malloc(B * 8);
    float *tok = malloc(B * dim * 4);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    for (size_t b0 = 0; b0 < N; b0 += B) {
        for (size_t i = 0; i < B; i++) {
            size_t g = b0 + i;
            users[i] = g % 97;
            ts[i] = (int64_t)(g / 97);
            ids[i] = g;
            fill_token(tok + i * dim, dim, users[i], ts[i], ids[i]);
        }
        rd_token_batch b = {B, users, ts, ids, tok, NULL, NULL, NULL, NULL};
        assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    }
    rd_token_stats tot, per[2];
    assert_int_equal(rd_token_store_stats(s, &tot, per, &eb), RD_OK);
    assert_true(tot.entries == N);
    assert_true(tot.users == 97);
    assert_true(per[0].map_bytes > (64u << 10) && per[1].map_bytes > (64u << 10));
    assert_true(tot.t_min == 0 && tot.t_max == (int64_t)((N - 1) / 97));
    uint64_t checked = 0;
    assert_int_equal(rd_token_store_verify(s, &checked, &eb), RD_OK);
    assert_true(checked == N);
    // Spot check: user 3's full history.
    size_t cnt = 0;
    for (size_t g = 3; g < N; g += 97)
        cnt++;
    fout f;
    fout_init(&f, 1, 2048, dim);
    assert_int_equal(rd_token_store_fetch(s, 3, INT64_MAX, 2048, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], cnt);
    for (size_t k = 0; k < cnt; k++) {
        size_t g = 3 + 97 * k;
        assert_true(f.o.ids[k] == g);
        assert_true(f.o.tokens[k * dim + 5] == tokval(3, (int64_t)(g / 97), g, 5));
    }
    fout_free(&f);
    rd_token_store_destroy(s);
    // A capped map fails with RD_ERR_FULL and keeps every committed batch intact.
    char dir[512];
    store_path(dir, sizeof dir, "capped");
    rd_token_store_opts o = {0};
    o.dim = (int)dim;
    o.dtype = RD_TOKEN_FP32;
    o.n_shards = 1;
    o.map_size = 64 << 10;
    o.max_map_size = 512 << 10;
    o.no_sync = 1;
    o.append_batch = 1 << 20;
    assert_int_equal(rd_token_store_create(dir, &o, &s, &eb), RD_OK);
    size_t committed = 0;
    int rc = RD_OK;
    for (int round = 0; round < 50 && rc == RD_OK; round++) {
        for (size_t i = 0; i < 300; i++) {
            users[i] = 1;
            ts[i] = (int64_t)(round * 300 + (int)i);
            ids[i] = 0;
            fill_token(tok + i * dim, dim, 1, ts[i], 0);
        }
        rd_token_batch b = {300, users, ts, ids, tok, NULL, NULL, NULL, NULL};
        rd_errbuf_clear(&eb);
        rc = rd_token_store_append(s, &b, &eb);
        if (rc == RD_OK)
            committed += 300;
    }
    assert_int_equal(rc, RD_ERR_FULL);
    assert_non_null(strstr(eb.msg, "full"));
    assert_true(committed > 0);
    assert_int_equal(rd_token_store_stats(s, &tot, NULL, &eb), RD_OK);
    assert_true(tot.entries == committed); // the failed batch left nothing behind
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_OK);
    rd_token_store_destroy(s);
    free(users);
    free(ids);
    free(ts);
    free(tok);
}

// ---------------------------------------------------------------------------------------------
// Layout errors

static void write_manifest_field(const char *dir, long off, uint32_t value, int fix_crc) {
    char p[RD_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/MANIFEST", dir);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    unsigned char m[64];
    assert_int_equal(fread(m, 1, 64, f), 64);
    memcpy(m + off, &value, 4);
    if (fix_crc) {
        uint32_t crc = rd_crc32c(0, m, 60);
        memcpy(m + 60, &crc, 4);
    }
    rewind(f);
    assert_int_equal(fwrite(m, 1, 64, f), 64);
    fclose(f);
}

static void test_layout_mismatch(void **state) {
    (void)state;
    rd_errbuf eb;
    rd_token_store *s = create_store("lay8", 8, RD_TOKEN_FP32, 2, 0);
    rd_token_store_destroy(s);
    char dir[512];
    store_path(dir, sizeof dir, "lay8");
    rd_token_open_opts o = {0};
    o.mode = RD_TOKEN_READ_ONLY;
    o.expect_dim = 16;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_open(dir, &o, &s, &eb), RD_ERR_VERSION);
    assert_null(s);
    assert_non_null(strstr(eb.msg, "dim 8 fp32"));
    assert_non_null(strstr(eb.msg, "dim 16"));
    o.expect_dim = 8;
    o.expect_dtype = RD_TOKEN_FP16;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_open(dir, &o, &s, &eb), RD_ERR_VERSION);
    assert_non_null(strstr(eb.msg, "fp16"));
    o.expect_dtype = RD_TOKEN_FP32;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_open(dir, &o, &s, &eb), RD_OK);
    rd_token_store_destroy(s);
    // A shard of a store with another dim: the shard header disagrees with the MANIFEST.
    s = create_store("lay16", 16, RD_TOKEN_FP32, 2, 0);
    rd_token_store_destroy(s);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/lay8/shard-0001", g_root);
    snprintf(b, sizeof b, "%s/lay16/shard-0001", g_root);
    rm_rf(a);
    assert_int_equal(rename(b, a), 0);
    int rc;
    s = open_store("lay8", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_VERSION);
    assert_non_null(strstr(eb.msg, "shard-0001"));
    assert_non_null(strstr(eb.msg, "dim 16"));
    // A shard of another store with the same layout: its store id differs.
    s = create_store("lay8b", 8, RD_TOKEN_FP32, 2, 0);
    rd_token_store_destroy(s);
    snprintf(b, sizeof b, "%s/lay8b/shard-0001", g_root);
    rm_rf(a);
    assert_int_equal(rename(b, a), 0);
    s = open_store("lay8", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "store"));
    // A MANIFEST of a newer version (valid CRC).
    s = create_store("ver", 8, RD_TOKEN_FP32, 1, 0);
    rd_token_store_destroy(s);
    store_path(dir, sizeof dir, "ver");
    write_manifest_field(dir, 8, RD_TOKEN_STORE_VERSION + 1, 1);
    s = open_store("ver", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_VERSION);
    assert_non_null(strstr(eb.msg, "version 3"));
    // Bad create options.
    rd_token_store_opts co = {0};
    co.dim = 0;
    co.dtype = RD_TOKEN_FP32;
    co.n_shards = 1;
    store_path(dir, sizeof dir, "bad");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "dim 0"));
    co.dim = 4;
    co.dtype = 3;
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_ERR_ARG);
    co.dtype = RD_TOKEN_FP16;
    co.n_shards = 0;
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_ERR_ARG);
    co.n_shards = 1;
    co.map_size = 1 << 20;
    co.max_map_size = 1 << 19;
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_ERR_ARG);
}

// Threads of one process, each with its own read-only handle (a server's scoring threads),
// fetch while another process appends and grows the map. The handles share each shard's env
// (one per file and process), and adopting the grown map remapped it under the other threads'
// read transactions: SIGSEGV in LMDB, reported as "damaged LMDB file" (or a crash).
typedef struct ro_reader {
    const char *dir;
    volatile int *stop;
    size_t batch; // users per fetch: 1, or several spread over the shards (a batched fetch holds
                  // the reads of every shard it has visited until it ends)
    long fetches, checked;
    int rc;
    char msg[RD_ERR_MSG_MAX];
} ro_reader;

static void *ro_reader_run(void *arg) {
    ro_reader *r = arg;
    rd_token_open_opts o = {0};
    o.mode = RD_TOKEN_READ_ONLY;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    r->rc = rd_token_store_open(r->dir, &o, &s, &eb);
    enum { L = 16, DIM = 8, MAXB = 8 };
    RD_ASSERT(r->batch >= 1 && r->batch <= MAXB);
    fout f;
    fout_init(&f, MAXB, L, DIM);
    uint64_t users[MAXB];
    int64_t before[MAXB];
    for (uint64_t k = 0; r->rc == RD_OK && !__atomic_load_n(r->stop, __ATOMIC_ACQUIRE); k++) {
        for (size_t b = 0; b < r->batch; b++) {
            users[b] = 1 + (k * r->batch + b * 7) % 64;
            before[b] = 1000000;
        }
        r->rc = rd_token_store_fetch_batch(s, r->batch, users, before, NULL, L, &f.o, &eb);
        r->fetches++;
        // What a fetch returns is what was written: every value of the newest token found.
        for (size_t b = 0; r->rc == RD_OK && b < r->batch; b++) {
            uint32_t n = f.o.n_found[b];
            if (n == 0)
                continue;
            size_t at = b * L + n - 1;
            for (size_t j = 0; j < DIM; j++)
                if (f.o.tokens[at * DIM + j] != tokval(users[b], f.o.ts[at], f.o.ids[at], j)) {
                    r->rc = RD_ERR_CORRUPT;
                    snprintf(eb.msg, sizeof eb.msg, "user %llu: token value %zu differs",
                             (unsigned long long)users[b], j);
                }
            r->checked++;
        }
    }
    snprintf(r->msg, sizeof r->msg, "%s", eb.msg);
    fout_free(&f);
    rd_token_store_destroy(s);
    return NULL;
}

// Threads of one process, each with its own read-only handle, fetch while another process
// appends and grows the map (1 MiB, doubled to ~64 MiB): one shard and single-user fetches, then
// four shards and fetches of 8 users spread over them, which hold several shards' reads at once
// while another thread may need to adopt one of those shards' grown map (a wait there, with the
// reads held, could deadlock). Every fetched token must be what was written.
static void threads_read_while_map_grows(const char *name, int n_shards, size_t batch) {
    rd_token_store *w = create_store(name, 8, RD_TOKEN_FP32, n_shards, 1 << 20);
    rd_token_store_destroy(w);
    char dir[512];
    store_path(dir, sizeof dir, name);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { // the writer: 1 MiB map, grown by doubling to ~64 MiB
        rd_token_open_opts o = {0};
        o.mode = RD_TOKEN_WRITE;
        o.no_sync = 1;
        rd_token_store *s = NULL;
        if (rd_token_store_open(dir, &o, &s, NULL) != RD_OK)
            _exit(90);
        enum { B = 4096 };
        static uint64_t users[B], ids[B];
        static int64_t ts[B];
        static float tok[B * 8];
        // Under valgrind (tools/valgrind-unit.sh) 12 rounds, still 4 growths of the map.
        const int rounds = getenv("RD_UNDER_VALGRIND") ? 12 : 100;
        for (int round = 0; round < rounds; round++) {
            for (int i = 0; i < B; i++) {
                users[i] = 1 + (uint64_t)i % 64;
                ts[i] = (int64_t)round * B + i;
                ids[i] = (uint64_t)i;
                fill_token(tok + i * 8, 8, users[i], ts[i], ids[i]);
            }
            rd_token_batch b = {.n = B, .users = users, .ts = ts, .ids = ids, .tokens = tok};
            if (rd_token_store_append(s, &b, NULL) != RD_OK)
                _exit(91);
        }
        rd_token_store_destroy(s);
        _exit(0);
    }
    enum { T = 4 };
    volatile int stop = 0;
    ro_reader r[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        r[i] = (ro_reader){.dir = dir, .stop = &stop, .batch = batch};
        assert_int_equal(pthread_create(&th[i], NULL, ro_reader_run, &r[i]), 0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < T; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int i = 0; i < T; i++) {
        if (r[i].rc != RD_OK)
            fail_msg("reader %d after %ld fetches: %s", i, r[i].fetches, r[i].msg);
        assert_true(r[i].fetches > 0);
    }
}

static void test_threads_read_while_map_grows(void **state) {
    (void)state;
    threads_read_while_map_grows("mtgrow", 1, 1);
    threads_read_while_map_grows("mtgrow4", 4, 8);
}

static void test_manifest_corrupt_missing(void **state) {
    (void)state;
    rd_errbuf eb;
    int rc;
    rd_token_store *s = create_store("man", 8, RD_TOKEN_FP16, 2, 0);
    rd_token_store_destroy(s);
    char dir[512], p[600];
    store_path(dir, sizeof dir, "man");
    // Creating over an existing store is refused.
    rd_token_store_opts co = {8, RD_TOKEN_FP16, 2, 0, 0, 0, 1, 0, 0};
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_ERR_EXISTS);
    // Flipped byte: CRC.
    write_manifest_field(dir, 16, 9, 0);
    s = open_store("man", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "CRC"));
    // Impossible layout with a valid CRC (dim 0).
    write_manifest_field(dir, 16, 0, 1);
    s = open_store("man", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_CORRUPT);
    // Truncated.
    snprintf(p, sizeof p, "%s/MANIFEST", dir);
    assert_int_equal(truncate(p, 30), 0);
    s = open_store("man", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "30 bytes"));
    // Bad magic.
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    unsigned char junk[64] = "NOTATOKENSTORE";
    fwrite(junk, 1, 64, f);
    fclose(f);
    s = open_store("man", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "magic"));
    // Missing.
    assert_int_equal(unlink(p), 0);
    s = open_store("man", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "MANIFEST"));
    s = open_store("no-such-store", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_NOTFOUND);
    // The message is this call's, also with the errbuf of an earlier failure (a server opens
    // stores again with one errbuf): it named the earlier failure's path.
    store_path(dir, sizeof dir, "no-such-store-2");
    rd_token_open_opts oo = {.mode = RD_TOKEN_READ_ONLY};
    assert_int_equal(rd_token_store_open(dir, &oo, &s, &eb), RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "no-such-store-2"));
    // A missing shard env.
    s = create_store("miss", 8, RD_TOKEN_FP32, 3, 0);
    rd_token_store_destroy(s);
    snprintf(p, sizeof p, "%s/miss/shard-0002", g_root);
    rm_rf(p);
    s = open_store("miss", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "shard 2"));
    assert_null(s);
    rd_token_store_info info;
    store_path(dir, sizeof dir, "miss");
    assert_int_equal(rd_token_store_read_manifest(dir, &info, &eb), RD_OK);
    assert_int_equal(info.n_shards, 3);
    assert_int_equal(info.dim, 8);
    // A shard whose data.mdb is 0 bytes: "empty file", not LMDB's "Bad file descriptor"; and a
    // writable open does not quietly make a new, empty env of it.
    s = create_store("zero", 8, RD_TOKEN_FP32, 2, 0);
    rd_token_store_destroy(s);
    snprintf(p, sizeof p, "%s/zero/shard-0001/data.mdb", g_root);
    assert_int_equal(truncate(p, 0), 0);
    for (int mode = 0; mode < 2; mode++) {
        s = open_store("zero", mode ? RD_TOKEN_WRITE : RD_TOKEN_READ_ONLY, &rc, &eb);
        assert_null(s);
        assert_int_equal(rc, RD_ERR_CORRUPT);
        if (!strstr(eb.msg, "shard-0001/data.mdb: empty file (0 bytes)"))
            fail_msg("mode %d: message '%s'", mode, eb.msg);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 0);
    }
    // A regular file where the store should be: "is not a folder", not "no such folder".
    store_path(dir, sizeof dir, "a_file");
    FILE *af = fopen(dir, "w");
    assert_non_null(af);
    fclose(af);
    s = open_store("a_file", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "a_file is not a folder"));
}

// ---------------------------------------------------------------------------------------------
// Concurrent reader: a forked writer appends while we fetch

enum { CW_BATCH = 50, CW_BATCHES = 400, CW_DIM = 32 };
#define CW_USER 424242u

static void concurrent_child(const char *dir) {
    rd_token_open_opts o = {0};
    o.mode = RD_TOKEN_WRITE;
    o.no_sync = 1;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_token_store_open(dir, &o, &s, &eb) != RD_OK) {
        fprintf(stderr, "child open: %s\n", eb.msg);
        _exit(2);
    }
    uint64_t users[CW_BATCH], ids[CW_BATCH];
    int64_t ts[CW_BATCH];
    static float tok[CW_BATCH * CW_DIM];
    for (int bno = 0; bno < CW_BATCHES; bno++) {
        for (int i = 0; i < CW_BATCH; i++) {
            int64_t t = (int64_t)bno * CW_BATCH + i;
            users[i] = CW_USER;
            ts[i] = t;
            ids[i] = (uint64_t)t;
            fill_token(tok + (size_t)i * CW_DIM, CW_DIM, CW_USER, t, (uint64_t)t);
        }
        // Another user in the same batch keeps other keys moving too.
        users[CW_BATCH - 1] = CW_USER + 1;
        fill_token(tok + (size_t)(CW_BATCH - 1) * CW_DIM, CW_DIM, CW_USER + 1, ts[CW_BATCH - 1],
                   ids[CW_BATCH - 1]);
        rd_token_batch b = {CW_BATCH, users, ts, ids, tok, NULL, NULL, NULL, NULL};
        if (rd_token_store_append(s, &b, &eb) != RD_OK) {
            fprintf(stderr, "child append: %s\n", eb.msg);
            _exit(3);
        }
        usleep(200); // let the reader take many snapshots between and during batches
    }
    rd_token_store_destroy(s);
    _exit(0);
}

static void test_concurrent_reader(void **state) {
    (void)state;
    // Tiny map: the writer grows it many times while we read (MDB_MAP_RESIZED on our side).
    rd_token_store *s = create_store("conc", CW_DIM, RD_TOKEN_FP32, 1, 64 << 10);
    rd_token_store_destroy(s); // never fork with an open env
    char dir[512];
    store_path(dir, sizeof dir, "conc");
    int rc;
    rd_errbuf eb;
    s = open_store("conc", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    rd_token_store_destroy(s);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        concurrent_child(dir);
    s = open_store("conc", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    const size_t LBIG = (size_t)CW_BATCH * CW_BATCHES, LSMALL = 64;
    fout big, small;
    fout_init(&big, 1, LBIG, CW_DIM);
    fout_init(&small, 1, LSMALL, CW_DIM);
    const uint32_t per_batch = CW_BATCH - 1; // records of CW_USER per batch
    uint32_t last = 0;
    int snapshots = 0, growing = 0, status = 0, done = 0;
    while (!done) {
        done = waitpid(pid, &status, WNOHANG) == pid;
        // Cheap check on every snapshot: the newest records are a contiguous tail that ends on
        // a batch boundary (the newest CW_USER record of a batch has index CW_BATCH - 2).
        rc = rd_token_store_fetch(s, CW_USER, INT64_MAX, LSMALL, &small.o, &eb);
        assert_int_equal(rc, RD_OK);
        uint32_t ns = small.o.n_found[0];
        if (ns > 0)
            assert_true(small.o.ts[ns - 1] % CW_BATCH == CW_BATCH - 2); // never a torn batch
        for (uint32_t k = 0; k < ns; k++) {
            if (k > 0) {
                int64_t prev = small.o.ts[k - 1];
                int64_t next = prev % CW_BATCH == CW_BATCH - 2 ? prev + 2 : prev + 1;
                assert_true(small.o.ts[k] == next); // no gaps
            }
            for (size_t j = 0; j < CW_DIM; j += 5)
                assert_true(small.o.tokens[k * CW_DIM + j] ==
                            tokval(CW_USER, small.o.ts[k], (uint64_t)small.o.ts[k], j));
        }
        snapshots++;
        if (snapshots % 16 != 0 && !done)
            continue;
        // Full history now and then: a prefix 0..n-1 of the final sequence, whole batches only.
        rc = rd_token_store_fetch(s, CW_USER, INT64_MAX, LBIG, &big.o, &eb);
        assert_int_equal(rc, RD_OK);
        uint32_t nf = big.o.n_found[0];
        assert_true(nf % per_batch == 0);
        assert_true(nf >= last); // snapshots never go back
        if (nf > last)
            growing++;
        last = nf;
        for (uint32_t k = 0; k < nf; k++) {
            int64_t want_t = (int64_t)(k / per_batch) * CW_BATCH + (int64_t)(k % per_batch);
            assert_true(big.o.ts[k] == want_t);
            for (size_t j = 0; j < CW_DIM; j += 7)
                assert_true(big.o.tokens[k * CW_DIM + j] ==
                            tokval(CW_USER, want_t, (uint64_t)want_t, j));
        }
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    rc = rd_token_store_fetch(s, CW_USER, INT64_MAX, LBIG, &big.o, &eb);
    assert_int_equal(rc, RD_OK);
    assert_int_equal(big.o.n_found[0], per_batch * CW_BATCHES);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_OK);
    print_message("concurrent reader: %d snapshots, %d saw new batches\n", snapshots, growing);
    assert_true(snapshots >= 2);
    fout_free(&big);
    fout_free(&small);
    rd_token_store_destroy(s);
}

// ---------------------------------------------------------------------------------------------
// Serving from 2 MiB pages (rd_token_store_map_huge): the store's content is unchanged for the
// writer and for a reader that had it mapped, appends after it still land, and the stats agree
// with what was done.

enum { HG_USERS = 40, HG_PER = 250, HG_DIM = 16 };

static void hg_append(rd_token_store *s, int round) {
    const size_t n = (size_t)HG_USERS * HG_PER;
    uint64_t *users = malloc(n * 8), *ids = malloc(n * 8);
    int64_t *ts = malloc(n * 8);
    float *tok = malloc(n * HG_DIM * 4);
    assert_non_null(tok);
    for (size_t i = 0; i < n; i++) { // time order: every user's step k before any step k + 1
        size_t u = i % HG_USERS, k = (size_t)round * HG_PER + i / HG_USERS;
        users[i] = 7 + u;
        ts[i] = (int64_t)k;
        ids[i] = k;
        fill_token(tok + i * HG_DIM, HG_DIM, users[i], ts[i], ids[i]);
    }
    rd_token_batch b = {n, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    free(users);
    free(ids);
    free(ts);
    free(tok);
}

// Every user's whole history must be the `rounds` * HG_PER records hg_append wrote.
static void hg_check(rd_token_store *s, int rounds) {
    const size_t L = (size_t)rounds * HG_PER;
    fout f;
    fout_init(&f, 1, L, HG_DIM);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    for (uint64_t u = 7; u < 7 + HG_USERS; u++) {
        assert_int_equal(rd_token_store_fetch(s, u, INT64_MAX, L, &f.o, &eb), RD_OK);
        assert_int_equal(f.o.n_found[0], L);
        for (size_t k = 0; k < L; k++) {
            assert_true(f.o.ts[k] == (int64_t)k);
            for (size_t j = 0; j < HG_DIM; j += 3)
                assert_true(f.o.tokens[k * HG_DIM + j] == tokval(u, (int64_t)k, k, j));
        }
    }
    fout_free(&f);
}

static void hg_check_stats(const rd_token_map_stats *st, uint32_t shards) {
    assert_int_equal(st->shards, shards);
    assert_true(st->used_bytes > 0);
    assert_true(st->note < RD_TOKEN_HUGE_NOTE_COUNT);
    assert_true(st->reread <= st->shards);
    assert_true(st->seconds >= 0);
    assert_true(st->huge_kb <= st->resident_kb);
    if (st->note == RD_TOKEN_HUGE_REREAD && st->shards > 0) {
        // Every shard was read back through its mapping: all its used pages are resident.
        assert_int_equal(st->reread, st->shards);
        assert_true((uint64_t)st->resident_kb * 1024 >= st->used_bytes);
    }
    print_message("map_huge: %u shards, %u re-read (%s), %.2f MB used, %lld kB resident, %lld kB "
                  "in 2 MiB pages, %.3f s\n",
                  st->shards, st->reread, rd_token_huge_note_text(st->note),
                  (double)st->used_bytes / 1e6, (long long)st->resident_kb, (long long)st->huge_kb,
                  st->seconds);
}

static void test_map_huge(void **state) {
    (void)state;
    rd_token_store *s = create_store("huge", HG_DIM, RD_TOKEN_FP32, 3, 1 << 20); // map grows
    hg_append(s, 0);
    int rc;
    rd_errbuf eb;
    rd_token_store *r = open_store("huge", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    hg_check(r, 1); // the reader has the store mapped while the writer re-reads it
    rd_token_map_stats st;
    assert_int_equal(rd_token_store_map_huge(s, RD_TOKEN_HUGE_AUTO, &st, &eb), RD_OK);
    hg_check_stats(&st, 3);
    hg_check(s, 1);
    hg_check(r, 1);
    // Appends after it (growing the map past its advised size) still land and read back.
    hg_append(s, 1);
    hg_check(s, 2);
    hg_check(r, 2);
    assert_int_equal(rd_token_store_map_huge(s, RD_TOKEN_HUGE_AUTO, &st, &eb), RD_OK);
    hg_check_stats(&st, 3);
    // A read-only handle may do the same (no flush: it writes nothing).
    assert_int_equal(rd_token_store_map_huge(r, RD_TOKEN_HUGE_AUTO, &st, &eb), RD_OK);
    hg_check_stats(&st, 3);
    hg_check(r, 2);
    // off: nothing done, only the sizes looked at.
    assert_int_equal(rd_token_store_map_huge(s, RD_TOKEN_HUGE_OFF, &st, &eb), RD_OK);
    assert_int_equal(st.note, RD_TOKEN_HUGE_NOTE_OFF);
    assert_int_equal(st.reread, 0);
    assert_int_equal(st.shards, 3);
    assert_true(st.used_bytes > 0);
    // A bad mode: refused, with the store named.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_map_huge(s, 7, &st, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "huge-page mode 7 is neither off nor auto"));
    assert_non_null(strstr(eb.msg, "huge"));
    assert_string_equal(rd_token_huge_note_text(RD_TOKEN_HUGE_NOTE_COUNT), "unknown");
    uint64_t checked = 0;
    assert_int_equal(rd_token_store_verify(s, &checked, &eb), RD_OK);
    assert_true(checked == 2 * (uint64_t)HG_USERS * HG_PER);
    rd_token_store_destroy(r);
    rd_token_store_destroy(s);
}

// ---------------------------------------------------------------------------------------------
// gc

// The first gc of a store records its cutoff also when it is negative (times before 1970): the
// record starts empty, not at a cutoff of 0. (Catches the first gc's cutoff compared with 0.)
static void test_gc_negative_cutoff(void **state) {
    (void)state;
    const size_t dim = 4, n = 20;
    char dir[512];
    store_path(dir, sizeof dir, "gc_neg");
    rd_token_store_opts co = {(int)dim, RD_TOKEN_FP32, 1, 0, 0, 0, 1, 0, 0};
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_OK);
    uint64_t users[20], ids[20];
    int64_t ts[20];
    float tok[20 * 4];
    for (size_t i = 0; i < n; i++) {
        users[i] = 5;
        ts[i] = -20 + (int64_t)i; // -20 .. -1
        ids[i] = i + 1;
        fill_token(tok + i * dim, dim, users[i], ts[i], ids[i]);
    }
    rd_token_batch b = {n, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    uint64_t del = 0;
    assert_int_equal(rd_token_store_gc(s, -10, &del, &eb), RD_OK);
    assert_int_equal(del, 10);
    rd_token_gc_info gi;
    assert_int_equal(rd_token_store_gc_info(s, &gi, &eb), RD_OK);
    assert_int_equal(gi.n_gc, 1);
    assert_int_equal(gi.deleted, 10);
    assert_true(gi.before_t == -10);
    rd_token_store_destroy(s);
}

static void test_gc(void **state) {
    (void)state;
    const size_t dim = 4, U = 10, T = 100;
    char dir[512];
    store_path(dir, sizeof dir, "gc");
    rd_token_store_opts co = {(int)dim, RD_TOKEN_FP32, 3, 0, 0, 7, 1, 0, 0}; // 7 deletions per txn
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_OK);
    size_t n = U * T;
    uint64_t *users = malloc(n * 8), *ids = malloc(n * 8);
    int64_t *ts = malloc(n * 8);
    float *tok = malloc(n * dim * 4);
    for (size_t i = 0; i < n; i++) {
        users[i] = i % U;
        ts[i] = (int64_t)(i / U);
        ids[i] = i;
        fill_token(tok + i * dim, dim, users[i], ts[i], ids[i]);
    }
    rd_token_batch b = {n, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    // A store never collected has no gc record, as every store made before the record existed
    // (the same bytes: the record is written by a gc only), and it opens and reads as before.
    rd_token_gc_info gi;
    memset(&gi, 0xff, sizeof gi);
    assert_int_equal(rd_token_store_gc_info(s, &gi, &eb), RD_OK);
    assert_true(gi.n_gc == 0 && gi.deleted == 0 && gi.last_at == 0);
    uint64_t del = 0;
    const int64_t t0 = (int64_t)time(NULL);
    assert_int_equal(rd_token_store_gc(s, 50, &del, &eb), RD_OK);
    const int64_t t1 = (int64_t)time(NULL);
    assert_true(del == U * 50);
    // The gc is recorded (in every transaction of 7 deletions, counted once).
    assert_int_equal(rd_token_store_gc_info(s, &gi, &eb), RD_OK);
    assert_int_equal(gi.n_gc, 1);
    assert_true(gi.deleted == U * 50 && gi.before_t == 50);
    assert_true(gi.last_at >= t0 && gi.last_at <= t1);
    rd_token_stats st;
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    assert_true(st.entries == U * 50);
    assert_true(st.t_min == 50 && st.t_max == 99);
    assert_true(st.users == U);
    fout f;
    fout_init(&f, 1, 100, dim);
    assert_int_equal(rd_token_store_fetch(s, 3, 60, 100, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 10);
    assert_true(f.o.ts[0] == 50 && f.o.ts[9] == 59);
    fout_free(&f);
    // gc again at the same point deletes nothing; gc of everything empties the store.
    assert_int_equal(rd_token_store_gc(s, 50, &del, &eb), RD_OK);
    assert_true(del == 0);
    assert_int_equal(rd_token_store_gc_info(s, &gi, &eb), RD_OK);
    assert_true(gi.n_gc == 1 && gi.deleted == U * 50); // nothing deleted, nothing recorded
    assert_int_equal(rd_token_store_gc(s, INT64_MAX, &del, &eb), RD_OK);
    assert_true(del == U * 50);
    assert_int_equal(rd_token_store_gc_info(s, &gi, &eb), RD_OK);
    assert_true(gi.n_gc == 2 && gi.deleted == U * 100 && gi.before_t == INT64_MAX);
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    assert_true(st.entries == 0 && st.users == 0);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_OK);
    rd_token_store_destroy(s);
    int rc;
    s = open_store("gc", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_gc(s, 10, &del, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "read-only"));
    // A reader sees the record; verify checks it and accepts the store with it.
    memset(&gi, 0, sizeof gi);
    assert_int_equal(rd_token_store_gc_info(s, &gi, &eb), RD_OK);
    assert_true(gi.n_gc == 2 && gi.deleted == U * 100);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_OK);
    rd_token_store_destroy(s);
    // A damaged record is said, naming its shard.
    {
        char p[RD_PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/gc/shard-0001", g_root);
        rd_lmdbx_opts lo = {0};
        lo.max_dbs = 4;
        MDB_env *env = NULL;
        assert_int_equal(rd_lmdbx_env_open(p, &lo, &env, &eb), RD_OK);
        MDB_txn *txn;
        MDB_dbi meta;
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
        MDB_val k = {2, (void *)(uintptr_t) "gc"}, v = {5, (void *)(uintptr_t) "junk!"};
        assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        rd_lmdbx_env_close(env);
    }
    s = open_store("gc", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_gc_info(s, &gi, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "gc/shard-0001: its gc record is damaged (5 bytes"));
    // verify (and so `tokens verify`, and compact's check of its source) said the store was
    // whole while stats refused it.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "gc/shard-0001: its gc record is damaged (5 bytes"));
    rd_token_store_destroy(s);
    free(users);
    free(ids);
    free(ts);
    free(tok);
}

// ---------------------------------------------------------------------------------------------
// verify

// Write a raw record into shard `shard` of store `name` behind the store's back.
static void
raw_put(const char *name, int shard, const unsigned char *key, const void *val, size_t vlen) {
    char p[RD_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s/shard-%04d", g_root, name, shard);
    rd_lmdbx_opts o = {0};
    o.max_dbs = 4;
    MDB_env *env = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_env_open(p, &o, &env, &eb), RD_OK);
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "tokens", 0, &dbi), 0);
    MDB_val k = {RD_TOKEN_KEY_BYTES, (void *)(uintptr_t)key};
    MDB_val v = {vlen, (void *)(uintptr_t)val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    rd_lmdbx_env_close(env);
}

static void test_verify_detects_corruption(void **state) {
    (void)state;
    const size_t dim = 8;
    rd_token_store *s = create_store("ver1", (int)dim, RD_TOKEN_FP32, 2, 0);
    uint64_t u0 = user_in_shard(0, 2, 100);
    uint64_t users[4] = {u0, u0, u0, u0}, ids[4] = {1, 2, 3, 4};
    int64_t ts[4] = {1, 2, 3, 4};
    float tok[4 * 8];
    for (int i = 0; i < 4; i++)
        fill_token(tok + i * 8, dim, u0, ts[i], ids[i]);
    rd_token_batch b = {4, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_OK);
    rd_token_store_destroy(s);
    // A value of the wrong size for (u0, ts 3, id 3).
    unsigned char key[24];
    rd_lmdbx_put_be64(key, u0);
    rd_lmdbx_put_be64(key + 8, rd_lmdbx_i64_key(3));
    rd_lmdbx_put_be64(key + 16, 3);
    unsigned char shortv[10] = {0};
    raw_put("ver1", 0, key, shortv, sizeof shortv);
    int rc;
    s = open_store("ver1", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    uint64_t n = 0;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_verify(s, &n, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "value of 10 bytes"));
    assert_non_null(strstr(eb.msg, "ts 3"));
    fout f;
    fout_init(&f, 1, 4, dim);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_fetch(s, u0, 10, 4, &f.o, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "value of 10 bytes"));
    // Records before the damaged one are still readable.
    assert_int_equal(rd_token_store_fetch(s, u0, 3, 4, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 2);
    rd_token_store_destroy(s);
    // A value of the right size with a flipped byte: CRC.
    s = create_store("ver2", (int)dim, RD_TOKEN_FP32, 2, 0);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    rd_token_store_destroy(s);
    unsigned char val[RD_TOKEN_VALUE_FIXED + 8 * 4];
    memset(val, 0, sizeof val);
    memcpy(val + 16, tok + 2 * 8, 32);
    raw_put("ver2", 0, key, val, sizeof val);
    s = open_store("ver2", RD_TOKEN_READ_ONLY, &rc, &eb);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "CRC"));
    assert_int_equal(rd_token_store_fetch(s, u0, 10, 4, &f.o, &eb), RD_OK); // no CRC check
    rd_token_store_destroy(s);
    char dir[512];
    store_path(dir, sizeof dir, "ver2");
    rd_token_open_opts oo = {0};
    oo.verify_crc = 1;
    assert_int_equal(rd_token_store_open(dir, &oo, &s, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_fetch(s, u0, 10, 4, &f.o, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "CRC"));
    rd_token_store_destroy(s);
    // A user stored in the wrong shard.
    s = create_store("ver3", (int)dim, RD_TOKEN_FP32, 2, 0);
    rd_token_store_destroy(s);
    uint64_t u1 = user_in_shard(1, 2, 100);
    rd_lmdbx_put_be64(key, u1);
    raw_put("ver3", 0, key, val, sizeof val);
    s = open_store("ver3", RD_TOKEN_READ_ONLY, &rc, &eb);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "another shard"));
    rd_token_store_destroy(s);
    fout_free(&f);
}

// ---------------------------------------------------------------------------------------------
// Damaged pages (the guard of rd/lmdbx.h)

static int read_byte(const volatile unsigned char *p) {
    return p[0];
}

static int nested_fault(const volatile unsigned char *p, int *inner_faulted, rd_errbuf *eb) {
    int rc;
    RD_LMDBX_GUARDED(rc, *inner_faulted, "inner", eb, read_byte(p));
    return rc == RD_ERR_CORRUPT ? 7 : -1;
}

static void test_guard_signals(void **state) {
    (void)state;
    // Valgrind reports the deliberate invalid reads as errors before the handler runs.
    if (getenv("RD_UNDER_VALGRIND"))
        skip();
    rd_lmdbx_guard_install(); // cmocka put its own handler back after the last test
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char *none = mmap(NULL, (size_t)pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(none != MAP_FAILED);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = 0, faulted = 0;
    // SIGSEGV: the call returns through the guard with the message.
    RD_LMDBX_GUARDED(rc, faulted, "/x/shard-0003", &eb, read_byte(none));
    assert_int_equal(faulted, 1);
    assert_int_equal(rc, RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "/x/shard-0003: damaged LMDB file (SIGSEGV"));
    // SIGBUS: a shared map of an empty file read past its end.
    char path[512];
    snprintf(path, sizeof path, "%s/empty.bin", g_root);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    unsigned char *past = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(past != MAP_FAILED);
    rd_errbuf_clear(&eb);
    RD_LMDBX_GUARDED(rc, faulted, "bus", &eb, read_byte(past));
    assert_int_equal(faulted, 1);
    assert_non_null(strstr(eb.msg, "bus: damaged LMDB file (SIGBUS"));
    // Nested guards: the innermost catches; the outer call returns normally.
    int inner = 0;
    rd_errbuf_clear(&eb);
    RD_LMDBX_GUARDED(rc, faulted, "outer", &eb, nested_fault(none, &inner, &eb));
    assert_int_equal(faulted, 0);
    assert_int_equal(inner, 1);
    assert_int_equal(rc, 7);
    assert_non_null(strstr(eb.msg, "inner: damaged"));
    // A call that does not fault returns its own value.
    unsigned char ok = 42;
    RD_LMDBX_GUARDED(rc, faulted, "ok", &eb, read_byte(&ok));
    assert_int_equal(faulted, 0);
    assert_int_equal(rc, 42);
    // Outside a guard a fault keeps its old disposition: here the default, death by SIGSEGV.
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        rd_lmdbx_guard_install(); // on top of the default action
        RD_LMDBX_GUARDED(rc, faulted, "child", &eb, read_byte(&ok));
        (void)read_byte(none);
        _exit(3);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSEGV);
    munmap(past, (size_t)pg);
    close(fd);
    munmap(none, (size_t)pg);
}

// Zero every leaf page of the shard's token database except those holding its smallest key:
// a cursor walk starts on a good page and then steps onto zeroed siblings, where LMDB asserts
// (it checks the page type on a descent, not on a sibling step).
static void zero_leaves_after_first(const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s/shard-0000/data.mdb", g_root, name);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f), pg = sysconf(_SC_PAGESIZE);
    unsigned char *b = malloc((size_t)len);
    assert_non_null(b);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    unsigned char min_key[24];
    int have_min = 0, n_leaves = 0, n_zeroed = 0;
    for (int pass = 0; pass < 2; pass++)
        for (long o = 2 * pg; o + pg <= len; o += pg) {
            uint16_t flags, lower, ptr, ksize;
            memcpy(&flags, b + o + 10, 2);
            memcpy(&lower, b + o + 12, 2);
            if (flags != 2 || lower <= 16)
                continue;
            memcpy(&ptr, b + o + 16, 2);
            if (ptr + 8 + 24 > pg)
                continue;
            memcpy(&ksize, b + o + ptr + 6, 2);
            if (ksize != 24)
                continue;
            const unsigned char *key = b + o + ptr + 8;
            if (pass == 0) {
                n_leaves++;
                if (!have_min || memcmp(key, min_key, 24) < 0)
                    memcpy(min_key, key, 24), have_min = 1;
            } else if (memcmp(key, min_key, 24) != 0) {
                memset(b + o, 0, (size_t)pg);
                n_zeroed++;
            }
        }
    assert_true(n_leaves >= 3 && n_zeroed >= 1);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fwrite(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    free(b);
}

static void test_damaged_page(void **state) {
    (void)state;
    const size_t dim = 16, n = 2000;
    rd_token_store *s = create_store("dmg", (int)dim, RD_TOKEN_FP32, 1, 0);
    uint64_t *users = malloc(n * sizeof *users), *ids = malloc(n * sizeof *ids);
    int64_t *ts = malloc(n * sizeof *ts);
    float *tok = malloc(n * dim * sizeof *tok);
    assert_true(users && ids && ts && tok);
    for (size_t i = 0; i < n; i++) {
        users[i] = 1000 + i % 20;
        ts[i] = (int64_t)(i / 20);
        ids[i] = i;
        fill_token(tok + i * dim, dim, users[i], ts[i], ids[i]);
    }
    rd_token_batch b = {n, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    rd_token_store_destroy(s);
    zero_leaves_after_first("dmg");
    int rc;
    s = open_store("dmg", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    // The walk meets the damage: an error naming the shard, not an abort.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_verify(s, NULL, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "dmg/shard-0000: damaged LMDB file (LMDB assertion"));
    char first[RD_ERR_MSG_MAX];
    snprintf(first, sizeof first, "%s", eb.msg);
    // The handle refuses every later call with the same message.
    rd_errbuf_clear(&eb);
    uint64_t bytes = 0, digest = 0;
    assert_int_equal(rd_token_store_scan_raw(s, 0, &bytes, &digest, &eb), RD_ERR_CORRUPT);
    assert_string_equal(eb.msg, first);
    fout f;
    fout_init(&f, 1, 4, dim);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_fetch(s, 1000, 5, 4, &f.o, &eb), RD_ERR_CORRUPT);
    assert_string_equal(eb.msg, first);
    rd_token_store_destroy(s);
    // A fresh handle: the raw scan meets it too.
    s = open_store("dmg", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_scan_raw(s, 0, &bytes, &digest, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "damaged LMDB file"));
    rd_token_store_destroy(s);
    fout_free(&f);
    free(users);
    free(ids);
    free(ts);
    free(tok);
}

// An fp16 store holds at most 65504 in magnitude: a finite token beyond the rounding limit
// 65520 would be written as an infinity, which fetch then hands to the model and verify reports
// as damage. Append refuses it, like a non-finite value, before anything is written; 65504 and
// 65519.99 (rounds down to 65504) are accepted.
static void test_fp16_append_range(void **state) {
    (void)state;
    const size_t dim = 4;
    rd_token_store *s = create_store("f16range", (int)dim, RD_TOKEN_FP16, 1, 0);
    uint64_t users[1] = {7}, ids[1] = {1};
    int64_t ts[1] = {5};
    float tok[4] = {0.5f, -1e5f, 0.25f, 0.0f};
    rd_token_batch b = {1, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "element 1"));
    tok[1] = 65520.0f; // the first value that rounds to infinity
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_ERR_ARG);
    rd_token_stats st;
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    assert_true(st.entries == 0); // nothing was written
    tok[1] = -65504.0f;
    tok[3] = 65519.99f;
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    uint64_t checked = 0;
    assert_int_equal(rd_token_store_verify(s, &checked, &eb), RD_OK);
    assert_true(checked == 1);
    fout f;
    fout_init(&f, 1, 2, dim);
    assert_int_equal(rd_token_store_fetch(s, 7, 10, 2, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 1);
    assert_true(f.o.tokens[1] == -65504.0f && f.o.tokens[3] == 65504.0f);
    fout_free(&f);
    rd_token_store_destroy(s);
}

// ---------------------------------------------------------------------------------------------
// Ownership and bad input

static void test_ownership_and_bad_input(void **state) {
    (void)state;
    const size_t dim = 4;
    rd_token_store *s = create_store("own", (int)dim, RD_TOKEN_FP32, 4, 0);
    rd_token_store_destroy(s);
    char dir[512];
    store_path(dir, sizeof dir, "own");
    rd_token_open_opts o = {0};
    o.mode = RD_TOKEN_WRITE;
    o.ps_rank = 1;
    o.n_ps = 2;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_open(dir, &o, &s, &eb), RD_OK);
    assert_false(rd_token_store_has_shard(s, 0));
    assert_true(rd_token_store_has_shard(s, 1));
    assert_false(rd_token_store_has_shard(s, 2));
    assert_true(rd_token_store_has_shard(s, 3));
    assert_false(rd_token_store_has_shard(s, 4));
    uint64_t mine = user_in_shard(3, 4, 1), other = user_in_shard(2, 4, 1);
    uint64_t users[2] = {mine, other}, ids[2] = {1, 2};
    int64_t ts[2] = {5, 5};
    float tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    rd_token_batch b = {2, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "owned by PS rank 0"));
    rd_token_stats st;
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    assert_true(st.entries == 0); // nothing of the batch was written
    fout f;
    fout_init(&f, 1, 4, dim);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_fetch(s, other, 10, 4, &f.o, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "shard 2"));
    // Non-finite values are refused before anything is written.
    b.n = 1;
    tok[2] = NAN;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "element 2"));
    tok[2] = 3;
    float lab = INFINITY;
    b.labels = &lab;
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_ERR_ARG);
    b.labels = NULL;
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    // L out of range.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_fetch(s, mine, 10, 0, &f.o, &eb), RD_ERR_ARG);
    assert_int_equal(rd_token_store_fetch(s, mine, 10, RD_TOKEN_MAX_L + 1, &f.o, &eb), RD_ERR_ARG);
    assert_int_equal(rd_token_store_fetch(s, mine, 10, 4, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 1);
    // Missing arrays.
    rd_token_batch nb = {1, users, ts, NULL, tok, NULL, NULL, NULL, NULL};
    assert_int_equal(rd_token_store_append(s, &nb, &eb), RD_ERR_ARG);
    rd_token_store_destroy(s);
    // Bad PS rank.
    o.ps_rank = 2;
    assert_int_equal(rd_token_store_open(dir, &o, &s, &eb), RD_ERR_ARG);
    // Read-only handles refuse appends.
    int rc;
    s = open_store("own", RD_TOKEN_READ_ONLY, &rc, &eb);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "read-only"));
    rd_token_store_destroy(s);
    fout_free(&f);
}

// A NULL argument of a public function is the caller's error, RD_ERR_ARG naming the function and
// the argument: rd_token_store_open and the others asserted, which aborted a serving process (or
// every rank of a launch) instead of letting it report the mistake.
#define EXPECT_ARG(call, fn)                                                                       \
    do {                                                                                           \
        rd_errbuf_clear(&eb);                                                                      \
        int rc_ = (call);                                                                          \
        if (rc_ != RD_ERR_ARG || !strstr(eb.msg, fn ": invalid argument: "))                       \
            fail_msg("%s: rc %d, message '%s'", #call, rc_, eb.msg);                               \
    } while (0)

static void test_null_arguments(void **state) {
    (void)state;
    rd_errbuf eb;
    char dir[512];
    store_path(dir, sizeof dir, "nullargs");
    rd_token_store_opts co = {0};
    co.dim = 4;
    co.dtype = RD_TOKEN_FP32;
    co.n_shards = 2;
    rd_token_open_opts oo = {0};
    rd_token_store *s = (rd_token_store *)&eb; // a stale value each call must clear
    EXPECT_ARG(rd_token_store_open(NULL, &oo, &s, &eb), "rd_token_store_open");
    assert_null(s);
    EXPECT_ARG(rd_token_store_open(dir, NULL, &s, &eb), "rd_token_store_open");
    EXPECT_ARG(rd_token_store_open(dir, &oo, NULL, &eb), "rd_token_store_open");
    assert_int_equal(rd_token_store_open(dir, &oo, NULL, NULL), RD_ERR_ARG); // eb may be NULL
    s = (rd_token_store *)&eb;
    EXPECT_ARG(rd_token_store_create(NULL, &co, &s, &eb), "rd_token_store_create");
    assert_null(s);
    EXPECT_ARG(rd_token_store_create(dir, NULL, &s, &eb), "rd_token_store_create");
    EXPECT_ARG(rd_token_store_create(dir, &co, NULL, &eb), "rd_token_store_create");
    assert_int_equal(access(dir, F_OK), -1); // nothing was made
    int fd = 7;
    EXPECT_ARG(rd_token_store_lock(NULL, "test", &fd, &eb), "rd_token_store_lock");
    assert_int_equal(fd, -1);
    EXPECT_ARG(rd_token_store_lock(dir, "test", NULL, &eb), "rd_token_store_lock");
    rd_token_store_info info;
    EXPECT_ARG(rd_token_store_read_manifest(NULL, &info, &eb), "rd_token_store_read_manifest");
    EXPECT_ARG(rd_token_store_read_manifest(dir, NULL, &eb), "rd_token_store_read_manifest");
    rd_token_dataset ds = {1, 2};
    EXPECT_ARG(rd_token_store_read_dataset(NULL, &ds, &eb), "rd_token_store_read_dataset");
    EXPECT_ARG(rd_token_store_read_dataset(dir, NULL, &eb), "rd_token_store_read_dataset");
    EXPECT_ARG(rd_token_store_bind_dataset(NULL, &ds, NULL, &eb), "rd_token_store_bind_dataset");
    EXPECT_ARG(rd_token_store_bind_dataset(dir, NULL, NULL, &eb), "rd_token_store_bind_dataset");
    rd_tokens_config tc;
    memset(&tc, 0, sizeof tc);
    EXPECT_ARG(rd_token_store_opts_from_config(NULL, 2, &co, &eb),
               "rd_token_store_opts_from_config");
    EXPECT_ARG(rd_token_store_opts_from_config(&tc, 2, NULL, &eb),
               "rd_token_store_opts_from_config");
    assert_int_equal(rd_token_dtype_parse("fp32", NULL), RD_ERR_ARG);

    // A NULL handle, and the NULL arrays of a real one.
    float tok[4] = {1, 2, 3, 4};
    uint64_t user = 3, id = 1;
    int64_t ts = 5;
    rd_token_batch b = {1, &user, &ts, &id, tok, NULL, NULL, NULL, NULL};
    fout f;
    fout_init(&f, 1, 2, 4);
    rd_token_stats st;
    uint64_t n = 0;
    rd_token_map_stats ms;
    static unsigned char buf[4096] __attribute__((aligned(8)));
    for (int real = 0; real < 2; real++) {
        s = real ? create_store("nullargs", 4, RD_TOKEN_FP32, 2, 0) : NULL;
        if (!real) {
            EXPECT_ARG(rd_token_store_append(s, &b, &eb), "rd_token_store_append");
            EXPECT_ARG(rd_token_store_fetch(s, user, 10, 2, &f.o, &eb),
                       "rd_token_store_fetch_batch");
            EXPECT_ARG(rd_token_store_fetch_batch(s, 1, &user, &ts, NULL, 2, &f.o, &eb),
                       "rd_token_store_fetch_batch");
            EXPECT_ARG(rd_token_store_gc(s, 10, &n, &eb), "rd_token_store_gc");
            EXPECT_ARG(rd_token_store_stats(s, &st, NULL, &eb), "rd_token_store_stats");
            EXPECT_ARG(rd_token_store_verify(s, &n, &eb), "rd_token_store_verify");
            EXPECT_ARG(rd_token_store_scan_raw(s, -1, &n, NULL, &eb), "rd_token_store_scan_raw");
            EXPECT_ARG(rd_token_store_map_huge(s, RD_TOKEN_HUGE_OFF, &ms, &eb),
                       "rd_token_store_map_huge");
            EXPECT_ARG(
                rd_token_shard_fetch_batch(s, 1, &user, &ts, NULL, 2, 0, buf, sizeof buf, &eb),
                "rd_token_shard_fetch_batch");
            EXPECT_ARG(rd_token_shard_append_packed(s, buf, 16, &eb),
                       "rd_token_shard_append_packed");
            assert_false(rd_token_store_has_shard(s, 0));
            memset(&info, 0xff, sizeof info);
            rd_token_store_info_get(s, &info);
            assert_int_equal(info.n_shards, 0);
        } else {
            EXPECT_ARG(rd_token_store_append(s, NULL, &eb), "rd_token_store_append");
            EXPECT_ARG(rd_token_store_fetch(s, user, 10, 2, NULL, &eb),
                       "rd_token_store_fetch_batch");
            EXPECT_ARG(rd_token_store_stats(s, NULL, NULL, &eb), "rd_token_store_stats");
            EXPECT_ARG(rd_token_store_iterate(s, -1, NULL, NULL, &eb), "rd_token_store_iterate");
            EXPECT_ARG(rd_token_store_map_huge(s, RD_TOKEN_HUGE_OFF, NULL, &eb),
                       "rd_token_store_map_huge");
            EXPECT_ARG(
                rd_token_shard_fetch_batch(s, 1, &user, &ts, NULL, 2, 0, NULL, sizeof buf, &eb),
                "rd_token_shard_fetch_batch");
            EXPECT_ARG(rd_token_shard_append_packed(s, NULL, 16, &eb),
                       "rd_token_shard_append_packed");
            // The handle still works after the refusals.
            assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
            assert_int_equal(rd_token_store_fetch(s, user, 10, 2, &f.o, &eb), RD_OK);
            assert_int_equal(f.o.n_found[0], 1);
        }
        rd_token_store_destroy(s);
    }
    EXPECT_ARG(rd_token_fetch_reply_view(NULL, 64, 1, 2, 4, 0, 0, &f.o, &eb),
               "rd_token_fetch_reply_view");
    EXPECT_ARG(rd_token_fetch_reply_view(buf, 64, 1, 2, 4, 0, 0, NULL, &eb),
               "rd_token_fetch_reply_view");
    EXPECT_ARG(rd_token_append_pack(NULL, 4, 0, buf, sizeof buf, &eb), "rd_token_append_pack");
    EXPECT_ARG(rd_token_append_pack(&b, 4, 0, NULL, sizeof buf, &eb), "rd_token_append_pack");
    assert_int_equal(rd_token_fetch_fields(NULL), 0);
    // The MPI half: handles and outputs checked before any MPI call (MPI is not initialised).
    rd_token_service *svc = (rd_token_service *)&eb;
    EXPECT_ARG(rd_token_service_create(NULL, NULL, &svc, &eb), "rd_token_service_create");
    assert_null(svc);
    rd_token_client *cl = (rd_token_client *)&eb;
    rd_token_client_opts cop = {0};
    EXPECT_ARG(rd_token_client_create(NULL, &cop, &cl, &eb), "rd_token_client_create");
    assert_null(cl);
    int handle = 3;
    EXPECT_ARG(rd_token_client_fetch_start(NULL, 1, &user, &ts, NULL, 2, &f.o, &handle, &eb),
               "rd_token_client_fetch_start");
    assert_int_equal(handle, -1);
    EXPECT_ARG(rd_token_client_wait(NULL, 0, &eb), "rd_token_client_wait");
    EXPECT_ARG(rd_token_client_fetch(NULL, 1, &user, &ts, NULL, 2, &f.o, &eb),
               "rd_token_client_fetch");
    EXPECT_ARG(rd_token_client_append(NULL, &b, &eb), "rd_token_client_append");
    EXPECT_ARG(rd_token_client_map_huge(NULL, RD_TOKEN_HUGE_OFF, &ms, &eb),
               "rd_token_client_map_huge");
    uint64_t sent = 1, recv = 1, msgs = 1;
    rd_token_client_counters(NULL, &sent, &recv, &msgs);
    assert_true(sent == 0 && recv == 0 && msgs == 0);
    fout_free(&f);
}

// ---------------------------------------------------------------------------------------------
// Packed entry points

static void test_packed_entry_points(void **state) {
    (void)state;
    const size_t dim = 6, n = 200, L = 9;
    rd_token_store *s = create_store("packed", (int)dim, RD_TOKEN_FP16, 2, 0);
    uint64_t *users = malloc(n * 8), *ids = malloc(n * 8), *items = malloc(n * 8);
    int64_t *ts = malloc(n * 8);
    float *tok = malloc(n * dim * 4), *labels = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        users[i] = i % 7;
        ts[i] = (int64_t)(i / 7);
        ids[i] = i;
        items[i] = i * 11;
        labels[i] = (float)(i % 2);
        fill_token(tok + i * dim, dim, users[i], ts[i], ids[i]);
    }
    rd_token_batch b = {n, users, ts, ids, tok, labels, items, NULL, NULL};
    size_t bytes = rd_token_append_packed_bytes(n, dim, 0);
    assert_true(bytes > 0 && bytes % 8 == 0);
    unsigned char *buf = rd_aligned_alloc(bytes + 64);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_append_pack(&b, dim, 0, buf, bytes - 1, &eb), RD_ERR_ARG);
    assert_int_equal(rd_token_append_pack(&b, dim, 0, buf, bytes, &eb), RD_OK);
    // Every truncation and every extension is refused, and nothing is written.
    for (size_t len = 0; len < bytes; len += (len < 64 ? 1 : 97)) {
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_token_shard_append_packed(s, buf, len, &eb), RD_ERR_PROTO);
    }
    assert_int_equal(rd_token_shard_append_packed(s, buf, bytes + 8, &eb), RD_ERR_PROTO);
    unsigned char saved[16];
    memcpy(saved, buf, 16);
    buf[0] ^= 1; // magic
    assert_int_equal(rd_token_shard_append_packed(s, buf, bytes, &eb), RD_ERR_PROTO);
    memcpy(buf, saved, 16);
    buf[8] = 7; // dim
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_shard_append_packed(s, buf, bytes, &eb), RD_ERR_PROTO);
    assert_non_null(strstr(eb.msg, "dim 7"));
    memcpy(buf, saved, 16);
    buf[7] = 0x7f; // n huge
    assert_int_equal(rd_token_shard_append_packed(s, buf, bytes, &eb), RD_ERR_PROTO);
    memcpy(buf, saved, 16);
    buf[12] = 1; // side values per record: the store has none
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_shard_append_packed(s, buf, bytes, &eb), RD_ERR_PROTO);
    assert_non_null(strstr(eb.msg, "side values"));
    memcpy(buf, saved, 16);
    assert_int_equal(rd_token_shard_append_packed(s, buf + 4, bytes - 8, &eb), RD_ERR_PROTO);
    // Random garbage never crashes and never writes.
    rd_rng r;
    rd_rng_seed(&r, 3);
    unsigned char *junk = rd_aligned_alloc(4096);
    for (int it = 0; it < 2000; it++) {
        size_t len = (size_t)rd_rng_below(&r, 4096);
        for (size_t i = 0; i < len; i++)
            junk[i] = (unsigned char)rd_rng_u64(&r);
        if (it % 2 == 0 && len >= 16) {
            memcpy(junk, saved, 16); // valid header, wrong sizes
            junk[4] = (unsigned char)rd_rng_below(&r, 256);
        }
        int rc = rd_token_shard_append_packed(s, junk, len, &eb);
        assert_true(rc == RD_ERR_PROTO || rc == RD_ERR_ARG || rc == RD_OK);
    }
    rd_token_stats st;
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    size_t before = st.entries; // garbage that happened to be valid (can only be tiny)
    assert_int_equal(rd_token_shard_append_packed(s, buf, bytes, &eb), RD_OK);
    assert_int_equal(rd_token_store_stats(s, &st, NULL, &eb), RD_OK);
    assert_true(st.entries >= n && st.entries <= n + before);
    // Packed fetch equals the direct fetch.
    uint64_t qu[7];
    int64_t qt[7];
    for (int i = 0; i < 7; i++) {
        qu[i] = (uint64_t)i;
        qt[i] = 5 + 3 * i;
    }
    const unsigned ALL = RD_TOKEN_FIELDS_ALL & ~RD_TOKEN_FIELD_SIDE; // the store has no side values
    size_t rb = rd_token_fetch_reply_bytes(7, L, dim, 0, ALL);
    unsigned char *reply = rd_aligned_alloc(rb);
    assert_int_equal(rd_token_shard_fetch_batch(s, 7, qu, qt, NULL, L, ALL, reply, rb - 8, &eb),
                     RD_ERR_ARG);
    assert_int_equal(rd_token_shard_fetch_batch(s, 7, qu, qt, NULL, L, 0x20, reply, rb, &eb),
                     RD_ERR_ARG);
    assert_int_equal(rd_token_shard_fetch_batch(s, 7, qu, qt, NULL, L, ALL, reply, rb, &eb), RD_OK);
    rd_token_fetch_out v;
    assert_int_equal(rd_token_fetch_reply_view(reply, rb, 7, L, dim, 0, ALL, &v, &eb), RD_OK);
    fout f;
    fout_init(&f, 7, L, dim);
    assert_int_equal(rd_token_fetch_fields(&f.o), ALL);
    assert_int_equal(rd_token_store_fetch_batch(s, 7, qu, qt, NULL, L, &f.o, &eb), RD_OK);
    assert_memory_equal(v.tokens, f.o.tokens, 7 * L * dim * 4);
    assert_memory_equal(v.ts, f.o.ts, 7 * L * 8);
    assert_memory_equal(v.items, f.o.items, 7 * L * 8);
    assert_memory_equal(v.mask, f.o.mask, 7 * L);
    assert_memory_equal(v.n_found, f.o.n_found, 7 * 4);
    assert_memory_equal(v.labels, f.o.labels, 7 * L * 4);
    // Malformed replies are refused.
    assert_int_equal(rd_token_fetch_reply_view(reply, rb - 8, 7, L, dim, 0, ALL, &v, &eb),
                     RD_ERR_PROTO);
    assert_int_equal(rd_token_fetch_reply_view(reply, rb, 7, L + 1, dim, 0, ALL, &v, &eb),
                     RD_ERR_PROTO);
    assert_int_equal(rd_token_fetch_reply_view(reply, rb, 7, L, dim, 0, 0, &v, &eb), RD_ERR_PROTO);
    v.mask[0] ^= 1;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_fetch_reply_view(reply, rb, 7, L, dim, 0, ALL, &v, &eb),
                     RD_ERR_PROTO);
    assert_non_null(strstr(eb.msg, "mask"));
    v.mask[0] ^= 1;
    v.n_found[1] = (uint32_t)L + 1;
    assert_int_equal(rd_token_fetch_reply_view(reply, rb, 7, L, dim, 0, ALL, &v, &eb),
                     RD_ERR_PROTO);
    assert_true(rd_token_fetch_reply_bytes(0, L, dim, 0, ALL) == 0);
    assert_true(rd_token_fetch_reply_bytes(1, 0, dim, 0, ALL) == 0);
    assert_true(rd_token_fetch_reply_bytes(1, L, RD_TOKEN_MAX_DIM + 1, 0, ALL) == 0);
    assert_true(rd_token_fetch_reply_bytes(1, L, dim, 0, 0x20) == 0);
    assert_true(rd_token_fetch_reply_bytes(1, L, dim, RD_TOKEN_MAX_SIDE + 1, ALL) == 0);
    // Tokens only: a smaller reply with the same tokens, counts and mask, and no other arrays.
    size_t rb0 = rd_token_fetch_reply_bytes(7, L, dim, 0, 0);
    assert_true(rb0 < rb);
    unsigned char *reply0 = rd_aligned_alloc(rb0);
    assert_int_equal(rd_token_shard_fetch_batch(s, 7, qu, qt, NULL, L, 0, reply0, rb0, &eb), RD_OK);
    rd_token_fetch_out v0;
    assert_int_equal(rd_token_fetch_reply_view(reply0, rb0, 7, L, dim, 0, 0, &v0, &eb), RD_OK);
    assert_null(v0.labels);
    assert_null(v0.items);
    assert_null(v0.ts);
    assert_null(v0.ids);
    assert_memory_equal(v0.tokens, f.o.tokens, 7 * L * dim * 4);
    assert_memory_equal(v0.mask, f.o.mask, 7 * L);
    assert_memory_equal(v0.n_found, f.o.n_found, 7 * 4);
    rd_aligned_free(reply0);
    fout_free(&f);
    rd_aligned_free(reply);
    rd_aligned_free(junk);
    rd_aligned_free(buf);
    rd_token_store_destroy(s);
    free(users);
    free(ids);
    free(items);
    free(ts);
    free(tok);
    free(labels);
}

// ---------------------------------------------------------------------------------------------
// iterate / stats

typedef struct visit_state {
    uint64_t n;
    int shard_prev;
    uint64_t user_prev;
    int64_t ts_prev;
    int ordered, values_ok;
    uint64_t stop_at;
} visit_state;

// ---------------------------------------------------------------------------------------------
// Side values (store version 2) and version 1 stores

#define SIDE_N 3

static float sideval(uint64_t user, int64_t ts, size_t j) {
    return (float)(user % 5) + 0.25f * (float)(ts % 4) - (float)j;
}

typedef struct side_visit {
    size_t n, bad;
} side_visit;

static int visit_side(const rd_token_record *rec, void *user) {
    side_visit *v = user;
    v->n++;
    for (size_t j = 0; j < SIDE_N; j++)
        if (rec->side[j] != sideval(rec->user, rec->ts, j))
            v->bad++;
    return 0;
}

static void side_values(int dtype, const char *name) {
    const size_t dim = 5, n = 120, L = 6, R = 4;
    char dir[512];
    store_path(dir, sizeof dir, name);
    rd_token_store_opts co = {0};
    co.dim = (int)dim;
    co.dtype = dtype;
    co.n_shards = 2;
    co.no_sync = 1;
    co.n_side = SIDE_N;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_OK);
    rd_token_store_info info;
    rd_token_store_info_get(s, &info);
    assert_int_equal(info.version, RD_TOKEN_STORE_VERSION);
    assert_int_equal(info.n_side, SIDE_N);
    assert_int_equal(info.value_bytes,
                     RD_TOKEN_VALUE_FIXED + 4 * SIDE_N + dim * (dtype == RD_TOKEN_FP32 ? 4 : 2));
    uint64_t users[120], ids[120];
    int64_t ts[120];
    float tok[120 * 5], side[120 * SIDE_N], labels[120];
    for (size_t i = 0; i < n; i++) {
        users[i] = i % R;
        ts[i] = (int64_t)(i / R);
        ids[i] = i;
        labels[i] = (float)(i % 2);
        fill_token(tok + i * dim, dim, users[i], ts[i], ids[i]);
        for (size_t j = 0; j < SIDE_N; j++)
            side[i * SIDE_N + j] = sideval(users[i], ts[i], j);
    }
    rd_token_batch b = {n, users, ts, ids, tok, labels, NULL, NULL, side};
    // A non-finite side value refuses the whole batch.
    side[7 * SIDE_N + 2] = NAN;
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "side value 2"));
    side[7 * SIDE_N + 2] = sideval(users[7], ts[7], 2);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    // Direct fetch: the side values of the L records before t, aligned with the tokens.
    fout f;
    fout_init(&f, R, L, dim);
    f.o.side = calloc(R * L * SIDE_N, sizeof(float));
    memset(f.o.side, 0x7f, R * L * SIDE_N * sizeof(float)); // poison: padding must be zeroed
    uint64_t qu[4] = {0, 1, 2, 3};
    int64_t qt[4] = {3, 20, 100, 0}; // 3, L, L (all 30 records before), 0 found
    assert_int_equal(rd_token_store_fetch_batch(s, R, qu, qt, NULL, L, &f.o, &eb), RD_OK);
    for (size_t r = 0; r < R; r++) {
        uint32_t nf = f.o.n_found[r];
        assert_int_equal(nf, r == 0 ? 3 : r == 3 ? 0 : L);
        for (size_t k = 0; k < L; k++)
            for (size_t j = 0; j < SIDE_N; j++) {
                float got = f.o.side[(r * L + k) * SIDE_N + j];
                float want = k < nf ? sideval(qu[r], f.o.ts[r * L + k], j) : 0.0f;
                assert_true(got == want);
            }
    }
    // Packed fetch with the side bit equals the direct fetch; without it there is no side array.
    const unsigned ALL = RD_TOKEN_FIELDS_ALL;
    size_t rb = rd_token_fetch_reply_bytes(R, L, dim, SIDE_N, ALL);
    assert_true(rb == rd_token_fetch_reply_bytes(R, L, dim, 0, ALL) + R * L * SIDE_N * 4);
    unsigned char *reply = rd_aligned_alloc(rb);
    assert_int_equal(rd_token_shard_fetch_batch(s, R, qu, qt, NULL, L, ALL, reply, rb, &eb), RD_OK);
    rd_token_fetch_out v;
    assert_int_equal(rd_token_fetch_reply_view(reply, rb, R, L, dim, SIDE_N, ALL, &v, &eb), RD_OK);
    assert_memory_equal(v.side, f.o.side, R * L * SIDE_N * 4);
    assert_memory_equal(v.tokens, f.o.tokens, R * L * dim * 4);
    // A reader that expects another number of side values is refused by the header check.
    size_t rb2 = rd_token_fetch_reply_bytes(R, L, dim, SIDE_N - 1, ALL);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_fetch_reply_view(reply, rb2, R, L, dim, SIDE_N - 1, ALL, &v, &eb),
                     RD_ERR_PROTO);
    // Packed append round trip (a second user range), and one with the wrong count is refused.
    for (size_t i = 0; i < n; i++)
        users[i] += 100;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < SIDE_N; j++)
            side[i * SIDE_N + j] = sideval(users[i], ts[i], j);
    size_t ab = rd_token_append_packed_bytes(n, dim, SIDE_N);
    unsigned char *abuf = rd_aligned_alloc(ab);
    assert_int_equal(rd_token_append_pack(&b, dim, SIDE_N, abuf, ab, &eb), RD_OK);
    assert_int_equal(rd_token_shard_append_packed(s, abuf, ab, &eb), RD_OK);
    size_t ab0 = rd_token_append_packed_bytes(n, dim, 0);
    unsigned char *abuf0 = rd_aligned_alloc(ab0);
    assert_int_equal(rd_token_append_pack(&b, dim, 0, abuf0, ab0, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_shard_append_packed(s, abuf0, ab0, &eb), RD_ERR_PROTO);
    assert_non_null(strstr(eb.msg, "side values"));
    // Every record, read back by a read-only handle: verify and iterate see the side values.
    int rc;
    rd_token_store *ro = open_store(name, RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    uint64_t checked = 0;
    assert_int_equal(rd_token_store_verify(ro, &checked, &eb), RD_OK);
    assert_true(checked == 2 * n);
    side_visit sv = {0, 0};
    assert_int_equal(rd_token_store_iterate(ro, -1, visit_side, &sv, &eb), RD_OK);
    assert_true(sv.n == 2 * n);
    assert_true(sv.bad == 0);
    rd_token_store_destroy(ro);
    rd_aligned_free(abuf0);
    rd_aligned_free(abuf);
    rd_aligned_free(reply);
    free(f.o.side);
    fout_free(&f);
    rd_token_store_destroy(s);
}

static void test_side_values(void **state) {
    (void)state;
    side_values(RD_TOKEN_FP32, "side32");
    side_values(RD_TOKEN_FP16, "side16");
}

// rd_token_summary against its naive twin: every window summed from scratch, for every count of
// fetched tokens around the window edges, with and without side values.
static void test_summary(void **state) {
    (void)state;
    const int windows[] = {1, 3, 8};
    enum { L = 10, S = 2 };
    uint8_t labels[L];
    float side[L * S];
    uint64_t x = 12345;
    for (int j = 0; j < L; j++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        labels[j] = (uint8_t)((x >> 33) & 1u);
        for (int c = 0; c < S; c++)
            side[j * S + c] = (float)((x >> (20 + 5 * c)) % 5u) + 1.0f - 0.5f * (float)c;
    }
    assert_int_equal(rd_token_summary_width(3, S), 1 + 3 * (1 + S));
    assert_int_equal(rd_token_summary_width(3, 0), 1 + 3);
    assert_int_equal(rd_token_summary_width(0, S), 0);
    for (size_t ns = 0; ns <= S; ns += S) {
        for (size_t n = 0; n <= L; n++) {
            float out[1 + 3 * (1 + S)];
            for (size_t k = 0; k < sizeof out / sizeof out[0]; k++)
                out[k] = -7.0f; // every slot of the width must be written
            assert_int_equal(
                rd_token_summary(windows, 3, n, labels, ns ? side : NULL, ns, out, NULL), RD_OK);
            assert_float_equal(out[0], log1p((double)n), 1e-6);
            for (int k = 0; k < 3; k++) {
                size_t m = (size_t)windows[k] < n ? (size_t)windows[k] : n;
                double y = 0, f[S] = {0};
                for (size_t j = 0; j < m; j++) {
                    y += labels[j];
                    for (size_t c = 0; c < ns; c++)
                        f[c] += (double)side[j * ns + c];
                }
                const float *o = out + 1 + (size_t)k * (1 + ns);
                assert_float_equal(o[0], m ? y / (double)m : 0.0, 1e-6);
                for (size_t c = 0; c < ns; c++)
                    assert_float_equal(o[1 + c], m ? f[c] / (double)m : 0.0, 1e-5);
            }
            for (size_t k = rd_token_summary_width(3, ns); k < sizeof out / sizeof out[0]; k++)
                assert_float_equal(out[k], -7.0f, 0.0); // and nothing beyond it
        }
    }
}

// A caller's mistake in rd_token_summary's arguments is RD_ERR_ARG naming it, with nothing
// written; rd_token_pick takes a NULL pick quietly. Before, the summary asserted (MPI_Abort: a
// serving process or every rank died) on a NULL side or windows out of order, and either
// crashed on a NULL array.
static void test_summary_pick_arguments(void **state) {
    (void)state;
    const int windows[] = {1, 3}, unordered[] = {3, 3}, zero[] = {0, 2};
    const uint8_t labels[4] = {1, 0, 1, 1};
    const float side[4] = {1, 2, 3, 4};
    float out[1 + 2 * 2];
    struct {
        const int *w;
        const uint8_t *lab;
        const float *side;
        size_t n_side;
        float *out;
        const char *msg;
    } bad[] = {
        {NULL, labels, NULL, 0, out, "rd_token_summary: invalid argument: windows != NULL"},
        {windows, labels, NULL, 0, NULL, "rd_token_summary: invalid argument: out != NULL"},
        {windows, NULL, NULL, 0, out, "rd_token_summary: invalid argument: labels || n == 0"},
        {windows, labels, NULL, 1, out, "rd_token_summary: invalid argument: side || n_side == 0"},
        {windows, labels, side, RD_TOKEN_MAX_SIDE + 1, out,
         "invalid argument: n_side <= RD_TOKEN_MAX_SIDE"},
        {unordered, labels, NULL, 0, out, "invalid argument: windows[1] = 3 (the windows must"},
        {zero, labels, NULL, 0, out, "invalid argument: windows[0] = 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        for (size_t k = 0; k < sizeof out / sizeof out[0]; k++)
            out[k] = -7.0f;
        assert_int_equal(rd_token_summary(bad[i].w, 2, 4, bad[i].lab, bad[i].side, bad[i].n_side,
                                          bad[i].out, &eb),
                         RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, bad[i].msg));
        for (size_t k = 0; k < sizeof out / sizeof out[0]; k++)
            assert_float_equal(out[k], -7.0f, 0.0); // nothing written
        // Without an error buffer the status alone.
        assert_int_equal(rd_token_summary(bad[i].w, 2, 4, bad[i].lab, bad[i].side, bad[i].n_side,
                                          bad[i].out, NULL),
                         RD_ERR_ARG);
    }
    // No windows: nothing to write and nothing needed; no tokens: labels may be NULL.
    assert_int_equal(rd_token_summary(NULL, 0, 4, NULL, NULL, 0, NULL, NULL), RD_OK);
    assert_int_equal(rd_token_summary(windows, 2, 0, NULL, NULL, 0, out, NULL), RD_OK);
    assert_float_equal(out[0], 0.0f, 0.0);
    const uint64_t items[3] = {5, 6, 5};
    assert_int_equal(rd_token_pick(items, 3, 5, 4, NULL), 0);
    assert_int_equal(rd_token_pick(NULL, 3, 0, 4, NULL), 0);
    uint32_t pick[4];
    assert_int_equal(rd_token_pick(items, 3, 5, 4, pick), 2); // the handle-free call still works
    assert_int_equal(pick[0], 2);
}

// rd_token_pick against its naive twin: walk every slot, keep what matches, reverse, cut at L.
static void test_pick(void **state) {
    (void)state;
    enum { N = 40 };
    uint64_t items[N];
    uint64_t x = 777;
    for (int j = 0; j < N; j++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        items[j] = 1000 + ((x >> 40) % 4u); // four items, many repeats
    }
    for (size_t nf = 0; nf <= N; nf += 7) {
        for (size_t L = 1; L <= N; L += 3) {
            for (uint64_t key = 999; key <= 1004; key++) {
                for (int search = 0; search < 2; search++) {
                    uint32_t want[N], got[N + 1];
                    size_t nw = 0;
                    for (size_t k = 0; k < nf; k++)
                        if (!search || items[k] == key)
                            want[nw++] = (uint32_t)k;
                    got[L < N ? L : N] = 0xdeadbeefu;
                    size_t n = rd_token_pick(search ? items : NULL, nf, key, L, got);
                    assert_int_equal(n, nw < L ? nw : L);
                    for (size_t j = 0; j < n; j++) {
                        assert_int_equal(got[j], want[nw - 1 - j]); // most recent first
                        assert_true(!search || items[got[j]] == key);
                    }
                    if (L < N)
                        assert_int_equal(got[L], 0xdeadbeefu); // never beyond L slots
                }
            }
        }
    }
}

static void test_version1_store(void **state) {
    (void)state;
    char dir[512];
    store_path(dir, sizeof dir, "v1");
    rd_token_store_opts co = {0};
    co.dim = 4;
    co.dtype = RD_TOKEN_FP32;
    co.n_shards = 1;
    co.no_sync = 1;
    co.version = 1;
    co.n_side = 2;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // Version 1 has no side values.
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "version 1"));
    co.n_side = RD_TOKEN_MAX_SIDE + 1;
    co.version = 0;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "n_side"));
    co.n_side = 0;
    co.version = 1;
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_OK);
    rd_token_store_destroy(s);
    // The version 1 layout: value = label | flags | item | token | crc, read as before.
    int rc;
    s = open_store("v1", RD_TOKEN_WRITE, &rc, &eb);
    assert_int_equal(rc, RD_OK);
    rd_token_store_info info;
    rd_token_store_info_get(s, &info);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.n_side, 0);
    assert_int_equal(info.value_bytes, RD_TOKEN_VALUE_FIXED + 4 * 4);
    uint64_t users[3] = {1, 1, 1}, ids[3] = {0, 1, 2};
    int64_t ts[3] = {10, 20, 30};
    float tok[12], labels[3] = {1, 0, 1}, side[6] = {1, 2, 3, 4, 5, 6};
    for (size_t i = 0; i < 3; i++)
        fill_token(tok + i * 4, 4, users[i], ts[i], ids[i]);
    rd_token_batch b = {3,      users, ts,   ids, tok,
                        labels, NULL,  NULL, side}; // side ignored: 0 per record
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    fout f;
    fout_init(&f, 1, 4, 4);
    float fs[8];
    f.o.side = fs; // no side values in the store: nothing written there
    memset(fs, 0x7f, sizeof fs);
    assert_int_equal(rd_token_store_fetch(s, 1, 25, 4, &f.o, &eb), RD_OK);
    assert_int_equal(f.o.n_found[0], 2);
    assert_true(f.o.labels[0] == 1.0f && f.o.labels[1] == 0.0f);
    for (size_t j = 0; j < 4; j++)
        assert_true(f.o.tokens[4 + j] == tokval(1, 20, 1, j));
    unsigned char poison[sizeof fs];
    memset(poison, 0x7f, sizeof poison);
    assert_memory_equal(fs, poison, sizeof fs);
    uint64_t checked = 0;
    assert_int_equal(rd_token_store_verify(s, &checked, &eb), RD_OK);
    assert_true(checked == 3);
    f.o.side = NULL;
    fout_free(&f);
    rd_token_store_destroy(s);
    // The MANIFEST of a version 1 store that claims side values is refused.
    write_manifest_field(dir, 48, 2, 1);
    rd_errbuf_clear(&eb);
    s = open_store("v1", RD_TOKEN_READ_ONLY, &rc, &eb);
    assert_int_equal(rc, RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "2 side values"));
}

static int visit(const rd_token_record *rec, void *user) {
    visit_state *v = user;
    if (v->n && rec->shard == v->shard_prev &&
        (rec->user < v->user_prev || (rec->user == v->user_prev && rec->ts < v->ts_prev)))
        v->ordered = 0;
    if (rec->token[2] != tokval(rec->user, rec->ts, rec->id, 2) || rec->flags != rec->id % 5 ||
        rec->item != rec->id * 3)
        v->values_ok = 0;
    v->shard_prev = rec->shard;
    v->user_prev = rec->user;
    v->ts_prev = rec->ts;
    v->n++;
    return v->stop_at && v->n == v->stop_at ? 42 : 0;
}

static void test_iterate_and_stats(void **state) {
    (void)state;
    const size_t dim = 4, n = 500;
    rd_token_store *s = create_store("iter", (int)dim, RD_TOKEN_FP32, 3, 0);
    uint64_t users[500], ids[500], items[500];
    int64_t ts[500];
    uint32_t flags[500];
    float tok[500 * 4];
    for (size_t i = 0; i < n; i++) {
        users[i] = (i * 7919) % 23;
        ts[i] = (int64_t)i - 250;
        ids[i] = i;
        items[i] = i * 3;
        flags[i] = (uint32_t)(i % 5);
        fill_token(tok + i * dim, dim, users[i], ts[i], ids[i]);
    }
    rd_token_batch b = {n, users, ts, ids, tok, NULL, items, flags, NULL};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_append(s, &b, &eb), RD_OK);
    visit_state v = {0, 0, 0, 0, 1, 1, 0};
    assert_int_equal(rd_token_store_iterate(s, -1, visit, &v, &eb), RD_OK);
    assert_true(v.n == n);
    assert_true(v.ordered && v.values_ok);
    visit_state w = {0, 0, 0, 0, 1, 1, 17};
    assert_int_equal(rd_token_store_iterate(s, -1, visit, &w, &eb), 42);
    assert_true(w.n == 17);
    assert_int_equal(rd_token_store_iterate(s, 5, visit, &w, &eb), RD_ERR_ARG);
    rd_token_stats tot, per[3];
    assert_int_equal(rd_token_store_stats(s, &tot, per, &eb), RD_OK);
    assert_true(tot.entries == n && tot.users == 23);
    assert_true(tot.t_min == -250 && tot.t_max == 249);
    assert_true(per[0].entries + per[1].entries + per[2].entries == n);
    assert_true(tot.payload_bytes == n * (24 + RD_TOKEN_VALUE_FIXED + dim * 4));
    assert_true(tot.file_bytes > 0 && tot.map_bytes >= tot.file_bytes);
    // The raw scan reads every key and value byte: the same bytes as the stats, the shards add
    // up (bytes, and the XOR digest), and one more record adds one record's bytes.
    uint64_t all_b = 0, all_d = 0, sum_b = 0, xor_d = 0;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_scan_raw(s, -1, &all_b, &all_d, &eb), RD_OK);
    assert_true(all_b == tot.payload_bytes);
    for (int sh = 0; sh < 3; sh++) {
        uint64_t bb = 0, dd = 0;
        assert_int_equal(rd_token_store_scan_raw(s, sh, &bb, &dd, &eb), RD_OK);
        assert_true(bb == per[sh].payload_bytes);
        sum_b += bb;
        xor_d ^= dd;
    }
    assert_true(sum_b == all_b && xor_d == all_d);
    assert_int_equal(rd_token_store_scan_raw(s, 3, NULL, NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "shard 3"));
    uint64_t u1 = 5, id1 = 100000;
    int64_t t1 = 1000;
    float tok1[4] = {0.25f, -0.5f, 1.0f, 2.0f};
    rd_token_batch b1 = {1, &u1, &t1, &id1, tok1, NULL, NULL, NULL, NULL};
    assert_int_equal(rd_token_store_append(s, &b1, &eb), RD_OK);
    uint64_t more_b = 0, more_d = 0;
    assert_int_equal(rd_token_store_scan_raw(s, -1, &more_b, &more_d, &eb), RD_OK);
    assert_true(more_b == all_b + 24 + RD_TOKEN_VALUE_FIXED + dim * 4);
    assert_true(more_d != all_d);
    rd_token_store_info info;
    rd_token_store_info_get(s, &info);
    assert_int_equal(info.dim, dim);
    assert_int_equal(info.n_shards, 3);
    assert_int_equal(info.value_bytes, RD_TOKEN_VALUE_FIXED + dim * 4);
    rd_token_store_destroy(s);
}

// ---------------------------------------------------------------------------------------------
// Allocation failures

static long g_alloc_left = -1; // allocations until failure; -1 = never fail

static void *fail_malloc(size_t n) {
    if (g_alloc_left == 0)
        return NULL;
    if (g_alloc_left > 0)
        g_alloc_left--;
    return malloc(n);
}

static void *fail_realloc(void *p, size_t n) {
    if (g_alloc_left == 0)
        return NULL;
    if (g_alloc_left > 0)
        g_alloc_left--;
    return realloc(p, n);
}

static const rd_allocator g_fail_alloc = {fail_malloc, fail_realloc, free};

static void test_alloc_failures(void **state) {
    (void)state;
    rd_token_store *s = create_store("oom", 4, RD_TOKEN_FP32, 2, 0);
    rd_token_store_destroy(s);
    char dir[512];
    store_path(dir, sizeof dir, "oom");
    uint64_t users[3] = {1, 2, 3}, ids[3] = {1, 2, 3};
    int64_t ts[3] = {1, 2, 3};
    float tok[12] = {0};
    rd_token_batch b = {3, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    int saw_nomem = 0, saw_ok = 0;
    for (long k = 0; k < 40; k++) {
        rd_alloc_set(&g_fail_alloc);
        g_alloc_left = k;
        rd_token_open_opts o = {0};
        o.mode = RD_TOKEN_WRITE;
        o.no_sync = 1;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        s = NULL;
        int rc = rd_token_store_open(dir, &o, &s, &eb);
        if (rc == RD_OK)
            rc = rd_token_store_append(s, &b, &eb);
        g_alloc_left = -1;
        rd_alloc_set(NULL);
        assert_true(rc == RD_OK || rc == RD_ERR_NOMEM);
        if (rc == RD_ERR_NOMEM) {
            saw_nomem = 1;
            assert_non_null(strstr(eb.msg, "memory"));
        } else {
            saw_ok = 1;
        }
        rd_token_store_destroy(s);
    }
    assert_true(saw_nomem && saw_ok);
}

// ---------------------------------------------------------------------------------------------
// Options from the config

static void test_opts_from_config(void **state) {
    (void)state;
    rd_config cfg;
    rd_config_defaults(&cfg);
    rd_token_store_opts o;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_opts_from_config(&cfg.tokens, 4, &o, &eb), RD_OK);
    assert_int_equal(o.dim, cfg.tokens.dim);
    assert_int_equal(o.dtype, RD_TOKEN_FP32);
    assert_int_equal(o.n_shards, 4);
    assert_true(o.map_size == cfg.tokens.map_size);
    assert_int_equal(o.append_batch, cfg.tokens.append_batch);
    snprintf(cfg.tokens.dtype, sizeof cfg.tokens.dtype, "fp16");
    assert_int_equal(rd_token_store_opts_from_config(&cfg.tokens, 4, &o, &eb), RD_OK);
    assert_int_equal(o.dtype, RD_TOKEN_FP16);
    snprintf(cfg.tokens.dtype, sizeof cfg.tokens.dtype, "int8");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_opts_from_config(&cfg.tokens, 4, &o, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "tokens.dtype"));
}

// Launches creating one fresh store at once (cmd_train's token_store_ready: make the folder,
// take the store's writer lock, then open the MANIFEST or create the store): exactly one creates
// it, every other is refused by the lock (never "folder exists and is not empty"), and the store
// is complete. The creator's lock file does not make the folder "not empty"; a folder holding
// other files but no MANIFEST is refused saying so.
static void test_create_under_lock(void **state) {
    (void)state;
    enum { KIDS = 6 };
    char dir[512];
    store_path(dir, sizeof dir, "lockrace/store");
    int go[2], done[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    fflush(NULL);
    pid_t kid[KIDS];
    for (int k = 0; k < KIDS; k++) {
        kid[k] = fork();
        assert_true(kid[k] >= 0);
        if (kid[k] == 0) {
            close(go[1]);
            close(done[1]);
            char c;
            if (read(go[0], &c, 1) != 0)
                _exit(3);
            rd_errbuf eb;
            rd_errbuf_clear(&eb);
            int fd = -1, rc = rd_lmdbx_mkdir_p(dir, &eb);
            if (rc == RD_OK)
                rc = rd_token_store_lock(dir, "launch", &fd, &eb);
            int code = 1;
            if (rc == RD_ERR_STATE && strstr(eb.msg, "in use by another writer")) {
                code = 11;
            } else if (rc == RD_OK) {
                rd_token_store_info info;
                rc = rd_token_store_read_manifest(dir, &info, &eb);
                if (rc == RD_ERR_NOTFOUND) {
                    rd_token_store_opts o = {4, RD_TOKEN_FP16, 2, 0, 0, 0, 1, 0, 0};
                    rd_token_store *s = NULL;
                    rd_errbuf_clear(&eb);
                    rc = rd_token_store_create(dir, &o, &s, &eb);
                    rd_token_store_destroy(s);
                    code = rc == RD_OK ? 10 : 2;
                } else {
                    code = rc == RD_OK ? 12 : 4;
                }
            }
            if (code < 10)
                fprintf(stderr, "launch %d: %s\n", k, eb.msg);
            while (read(done[0], &c, 1) > 0) // hold the lock until every launch has tried
                ;
            _exit(code);
        }
    }
    close(go[0]);
    close(done[0]);
    close(go[1]);
    usleep(500 * 1000);
    close(done[1]);
    int created = 0, refused = 0;
    for (int k = 0; k < KIDS; k++) {
        int st = 0;
        assert_int_equal(waitpid(kid[k], &st, 0), kid[k]);
        assert_true(WIFEXITED(st));
        created += WEXITSTATUS(st) == 10;
        refused += WEXITSTATUS(st) == 11;
    }
    assert_int_equal(created, 1);
    assert_int_equal(refused, KIDS - 1);
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.expect_dtype = RD_TOKEN_FP16;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_open(dir, &oo, &s, &eb), RD_OK);
    rd_token_store_destroy(s);
    // The lock file alone leaves a folder "empty" for create; other files do not.
    store_path(dir, sizeof dir, "lockonly");
    assert_int_equal(mkdir(dir, 0755), 0);
    int fd = -1;
    assert_int_equal(rd_token_store_lock(dir, "me", &fd, &eb), RD_OK);
    rd_token_store_opts o = {4, RD_TOKEN_FP32, 1, 0, 0, 0, 1, 0, 0};
    assert_int_equal(rd_token_store_create(dir, &o, &s, &eb), RD_OK);
    rd_token_store_destroy(s);
    rd_token_store_unlock(fd);
    // Created again: refused as a store that is there, not as a folder "with no MANIFEST".
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &o, &s, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "the folder already holds a store (its MANIFEST)"));
    store_path(dir, sizeof dir, "junk");
    assert_int_equal(mkdir(dir, 0755), 0);
    char f[600];
    snprintf(f, sizeof f, "%s/notes.txt", dir);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &o, &s, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "has no MANIFEST"));
    assert_non_null(strstr(eb.msg, dir));
    // A lock on a folder that is not there says so.
    store_path(dir, sizeof dir, "nowhere");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_lock(dir, "me", &fd, &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, dir));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_under_lock),
        cmocka_unit_test(test_fp16_exhaustive),
        cmocka_unit_test(test_fp16_round_to_nearest_even),
        cmocka_unit_test(test_lmdbx_keys_and_errors),
        cmocka_unit_test(test_atomic_file_races),
        cmocka_unit_test(test_terminate_removes_outputs),
        cmocka_unit_test(test_stale_partials),
        cmocka_unit_test(test_stale_outfiles),
        cmocka_unit_test(test_store_lock_removes_stale),
        cmocka_unit_test(test_out_not_input),
        cmocka_unit_test(test_roundtrip_fp32),
        cmocka_unit_test(test_roundtrip_fp16),
        cmocka_unit_test(test_no_leakage),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_store_removed_while_open),
        cmocka_unit_test(test_reader_store_replaced),
        cmocka_unit_test(test_map_growth),
        cmocka_unit_test(test_small_map_cap),
        cmocka_unit_test(test_layout_mismatch),
        cmocka_unit_test(test_manifest_corrupt_missing),
        cmocka_unit_test(test_threads_read_while_map_grows),
        cmocka_unit_test(test_bind_dataset),
        cmocka_unit_test(test_concurrent_reader),
        cmocka_unit_test(test_map_huge),
        cmocka_unit_test(test_gc),
        cmocka_unit_test(test_gc_negative_cutoff),
        cmocka_unit_test(test_verify_detects_corruption),
        cmocka_unit_test(test_guard_signals),
        cmocka_unit_test(test_damaged_page),
        cmocka_unit_test(test_fp16_append_range),
        cmocka_unit_test(test_ownership_and_bad_input),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_packed_entry_points),
        cmocka_unit_test(test_side_values),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_summary_pick_arguments),
        cmocka_unit_test(test_version1_store),
        cmocka_unit_test(test_iterate_and_stats),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_opts_from_config),
        cmocka_unit_test(test_commit_new),
        cmocka_unit_test(test_commit_fsync_fails),
        cmocka_unit_test(test_dead_reader_pins_no_pages),
    };
    return tmp_root_status(cmocka_run_group_tests(tests, setup_root, teardown_root), g_root);
}
