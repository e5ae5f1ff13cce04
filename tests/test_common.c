// test_common.c — the common pieces: errors, hashing, CRC32C, RNG, allocation, logging, the rank
// sentinel's stamps.
//
// Golden hash values were computed once from this implementation and pinned: the hashes are part
// of the on-disk formats (datasets, checkpoints, token stores), so any change must be deliberate.
// rd_mix64(0) also equals the published first output of splitmix64 from state 0.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/error.h"
#include "rd/hash.h"
#include "rd/log.h"
#include "rd/numfmt.h"
#include "rd/rng.h"
#include "rd/watch.h"

#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Errors

static void test_strerror(void **state) {
    (void)state;
    static const struct {
        int code;
        const char *text;
    } table[] = {
#define ROW(name, code, text) {code, text},
        RD_STATUS_MAP(ROW)
#undef ROW
    };
    size_t n = sizeof table / sizeof table[0];
    assert_int_equal(n, 22);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(rd_strerror(table[i].code), table[i].text);
        // Codes are 0, -1, -2, ... without gaps or duplicates.
        assert_int_equal(table[i].code, -(int)i);
    }
    assert_string_equal(rd_strerror(RD_OK), "success");
    assert_string_equal(rd_strerror(RD_ERR_CONFIG), "invalid configuration");
    assert_string_equal(rd_strerror(RD_ERR_EMPTY), "empty input");
    assert_string_equal(rd_strerror(RD_ERR_DIVERGED), "training diverged (NaN or inf)");
    assert_string_equal(rd_strerror(RD_ERR_REPORTED), "failed; another rank reported why");
    assert_string_equal(rd_strerror(-22), "unknown error");
    assert_string_equal(rd_strerror(1), "unknown error");
    assert_string_equal(rd_strerror(-1000000), "unknown error");
}

static void test_errbuf(void **state) {
    (void)state;
    rd_errbuf eb;
    memset(&eb, 0x7f, sizeof eb);
    rd_errbuf_clear(&eb);
    assert_int_equal(eb.code, RD_OK);
    assert_string_equal(eb.msg, "");
    // Returns the code, keeps the first error.
    assert_int_equal(rd_err_set(&eb, RD_ERR_IO, "%s: %d", "first", 1), RD_ERR_IO);
    assert_int_equal(rd_err_set(&eb, RD_ERR_PARSE, "second"), RD_ERR_PARSE);
    assert_int_equal(eb.code, RD_ERR_IO);
    assert_string_equal(eb.msg, "first: 1");
    rd_err_prefix(&eb, "loading %s: ", "x.bin");
    assert_string_equal(eb.msg, "loading x.bin: first: 1");
    // The same context twice is kept once (no "loading x.bin: loading x.bin: ..."), another
    // one is added.
    rd_err_prefix(&eb, "loading %s: ", "x.bin");
    assert_string_equal(eb.msg, "loading x.bin: first: 1");
    rd_err_prefix(&eb, "loading: ");
    assert_string_equal(eb.msg, "loading: loading x.bin: first: 1");
    rd_err_prefix(&eb, "%s", "");
    assert_string_equal(eb.msg, "loading: loading x.bin: first: 1");
    // NULL buffers are accepted everywhere.
    assert_int_equal(rd_err_set(NULL, RD_ERR_ARG, "ignored"), RD_ERR_ARG);
    rd_err_prefix(NULL, "x");
    rd_errbuf_clear(NULL);
    // Long messages keep their head and their tail (the cause), always NUL-terminated: a 5000-byte
    // path used to fill the message, and "...: path too long" was cut off.
    rd_errbuf_clear(&eb);
    char big[RD_ERR_MSG_MAX + 1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rd_err_set(&eb, RD_ERR_IO, "%s: %s", big, "the cause");
    assert_true(strlen(eb.msg) < sizeof eb.msg && strlen(eb.msg) > sizeof eb.msg - 42);
    assert_non_null(strstr(eb.msg, "bytes cut]..."));
    assert_int_equal(strncmp(eb.msg, "aaaa", 4), 0);
    assert_string_equal(eb.msg + strlen(eb.msg) - 11, ": the cause");
    rd_err_prefix(&eb, "%s", "pre: ");
    assert_true(strlen(eb.msg) < sizeof eb.msg);
    assert_int_equal(strncmp(eb.msg, "pre: aaa", 8), 0);
    assert_string_equal(eb.msg + strlen(eb.msg) - 11, ": the cause");
    // A message that fits is not cut.
    rd_errbuf_clear(&eb);
    big[sizeof eb.msg - 1] = '\0';
    rd_err_set(&eb, RD_ERR_IO, "%s", big);
    assert_int_equal(strlen(eb.msg), sizeof eb.msg - 1);
    assert_null(strstr(eb.msg, "cut"));
    big[sizeof eb.msg - 1] = 'a';
    // rd_err_path: short paths whole, long ones as head ...(N bytes)... tail.
    assert_string_equal(rd_err_path("a/b.yaml").s, "a/b.yaml");
    assert_string_equal(rd_err_path(NULL).s, "(null)");
    big[RD_ERR_PATH_WHOLE] = '\0';
    assert_string_equal(rd_err_path(big).s, big);
    big[RD_ERR_PATH_WHOLE] = 'a';
    big[4999] = '\0';
    big[4998] = 'z';
    rd_err_path_text t = rd_err_path(big);
    char want[64];
    snprintf(want, sizeof want, "...(%d bytes)...", 4999 - RD_ERR_PATH_HEAD - RD_ERR_PATH_TAIL);
    assert_non_null(strstr(t.s, want));
    assert_int_equal(strlen(t.s), RD_ERR_PATH_HEAD + strlen(want) + RD_ERR_PATH_TAIL);
    assert_int_equal(t.s[strlen(t.s) - 1], 'z');
    // After clear, a new error is recorded.
    rd_errbuf_clear(&eb);
    rd_err_set(&eb, RD_ERR_NOTFOUND, "again");
    assert_int_equal(eb.code, RD_ERR_NOTFOUND);
    assert_string_equal(eb.msg, "again");
}

// Wait up to limit_s for the child; kill it and fail when it is still alive.
static int wait_child(pid_t pid, double limit_s) {
    struct timespec t0, t, nap = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        assert_true(r >= 0);
        if (r == pid)
            return st;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) > limit_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("child still alive after %.0f s", limit_s);
        }
        nanosleep(&nap, NULL);
    }
}

// The watchdog of rd_abort_launch ends a process stuck after it (a hung MPI_Abort), even when
// SIGALRM was ignored and blocked before.
static void test_abort_watchdog(void **state) {
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGALRM, SIG_IGN);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGALRM);
        sigprocmask(SIG_BLOCK, &set, NULL);
        rd__abort_watchdog(1);
        for (;;)
            pause();
    }
    int st = wait_child(pid, 15.0);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGALRM);
}

// Without MPI, rd_abort_launch is abort().
static void test_abort_launch_without_mpi(void **state) {
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fclose(stderr); // no sanitizer or abort noise in the test log
        rd_abort_launch();
    }
    int st = wait_child(pid, 15.0);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
}

// ---------------------------------------------------------------------------------------------
// Hashing

static void test_hash_golden(void **state) {
    (void)state;
    assert_int_equal(rd_mix64(0), 0xe220a8397b1dcdafULL);
    assert_int_equal(rd_mix64(1), 0x910a2dec89025cc1ULL);
    assert_int_equal(rd_hash64("", 0, 0), 0x7a235e994b495db8ULL);
    assert_int_equal(rd_hash64("hello", 5, 1), 0x530c636033ec0b04ULL);
    assert_int_equal(rd_hash_str("abcdefghijklmnopq", 7), 0x92c6404cb5beb15aULL);
    assert_int_equal(rd_feature_key("item", "42", 2), 0xe786d578a070cf3bULL);
    assert_int_equal(rd_feature_key_u64("user", 42), 0xbf95c12daa2c93f9ULL);
    assert_int_equal(rd_table_key(1, 2), 0xe9470be3c8490cfeULL);
    assert_int_equal(rd_shard_of(12345, 7), 3);
}

static void test_hash_properties(void **state) {
    (void)state;
    // Seed, length and every byte matter; rd_hash_str equals rd_hash64 over strlen bytes.
    const char *s = "the quick brown fox";
    uint64_t h = rd_hash64(s, strlen(s), 0);
    assert_int_equal(rd_hash_str(s, 0), h);
    assert_int_not_equal(rd_hash64(s, strlen(s), 1), h);
    assert_int_not_equal(rd_hash64(s, strlen(s) - 1, 0), h);
    char buf[32];
    for (size_t i = 0; i < strlen(s); i++) {
        memcpy(buf, s, strlen(s));
        buf[i] ^= 1;
        assert_int_not_equal(rd_hash64(buf, strlen(s), 0), h);
    }
    // Unaligned input gives the same result as aligned.
    char shifted[64];
    memcpy(shifted + 3, s, strlen(s));
    assert_int_equal(rd_hash64(shifted + 3, strlen(s), 0), h);
    // "\0" and "" differ (length is mixed in); field names separate keys.
    assert_int_not_equal(rd_hash64("\0", 1, 0), rd_hash64("", 0, 0));
    assert_int_not_equal(rd_feature_key("a", "1", 1), rd_feature_key("b", "1", 1));
    assert_int_not_equal(rd_feature_key_u64("a", 1), rd_feature_key_u64("b", 1));
    assert_int_not_equal(rd_table_key(1, 5), rd_table_key(2, 5));
}

static void test_keys_never_zero(void **state) {
    (void)state;
    // No key function returns 0 (the reserved empty slot), over many inputs including 0.
    for (uint64_t v = 0; v < 200000; v++) {
        assert_true(rd_feature_key_u64("item", v) != 0);
        assert_true(rd_table_key(v, v * 31) != 0);
        assert_true(rd_table_key(0, v) != 0);
        char txt[24];
        int n = snprintf(txt, sizeof txt, "%llu", (unsigned long long)v);
        assert_true(rd_feature_key("tag", txt, (size_t)n) != 0);
    }
    assert_true(rd_feature_key("", "", 0) != 0);
    assert_true(rd_table_key(0, 0) != 0);
}

static void check_balance(const uint64_t *keys, size_t n, int nshards, double tol) {
    size_t counts[64] = {0};
    for (size_t i = 0; i < n; i++) {
        int s = rd_shard_of(keys[i], nshards);
        assert_true(s >= 0 && s < nshards);
        counts[s]++;
    }
    double mean = (double)n / nshards;
    for (int s = 0; s < nshards; s++) {
        double dev = fabs((double)counts[s] - mean) / mean;
        if (dev > tol) {
            print_error("shard %d of %d holds %zu keys (mean %.0f, off by %.1f%%)\n", s, nshards,
                        counts[s], mean, 100.0 * dev);
            fail();
        }
    }
}

static void test_shard_balance(void **state) {
    (void)state;
    enum { N = 100000 };
    uint64_t *seq = malloc(N * sizeof *seq), *fk = malloc(N * sizeof *fk);
    assert_non_null(seq);
    assert_non_null(fk);
    for (uint64_t i = 0; i < N; i++) {
        seq[i] = i + 1;                        // low-entropy keys
        fk[i] = rd_feature_key_u64("item", i); // real keys
    }
    // 100k keys: within 5% for P <= 8, 7% for 16 (~4.5 standard deviations at P = 16).
    for (int p = 1; p <= 16; p++) {
        double tol = p <= 8 ? 0.05 : 0.07;
        check_balance(seq, N, p, tol);
        check_balance(fk, N, p, tol);
    }
    free(seq);
    free(fk);
}

static void test_crc32c(void **state) {
    (void)state;
    assert_int_equal(rd_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(rd_crc32c(0, "", 0), 0u);
    // 32 zero bytes: the iSCSI test vector of RFC 3720 (B.4).
    unsigned char zeros[32] = {0};
    assert_int_equal(rd_crc32c(0, zeros, 32), 0x8A9136AAu);
    // Incremental = one shot.
    const char *s = "incremental checksums must not depend on chunking";
    uint32_t one = rd_crc32c(0, s, strlen(s));
    for (size_t cut = 0; cut <= strlen(s); cut++)
        assert_int_equal(rd_crc32c(rd_crc32c(0, s, cut), s + cut, strlen(s) - cut), one);
    // Slice-by-8 equals the bytewise twin on random bytes, every length 0..300 and every
    // alignment 0..7, with a random starting crc.
    unsigned char buf[320];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        buf[i] = (unsigned char)(x >> 56);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= 308; len++) {
            uint32_t seed = (uint32_t)(len * 2654435761u + off);
            assert_int_equal(rd_crc32c(seed, buf + off, len),
                             rd_crc32c_bytewise(seed, buf + off, len));
        }
}

// ---------------------------------------------------------------------------------------------
// RNG

static void test_rng_determinism(void **state) {
    (void)state;
    rd_rng a, b;
    rd_rng_seed(&a, 42);
    rd_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(rd_rng_u64(&a), rd_rng_u64(&b));
    // Different seeds, including 0 (a valid state), give different streams.
    rd_rng_seed(&a, 0);
    rd_rng_seed(&b, 1);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += rd_rng_u64(&a) == rd_rng_u64(&b);
    assert_int_equal(same, 0);
    rd_rng_seed(&a, 0);
    assert_true(a.s[0] | a.s[1] | a.s[2] | a.s[3]);
    // A copy is a fork.
    rd_rng_seed(&a, 7);
    rd_rng_u64(&a);
    b = a;
    assert_int_equal(rd_rng_u64(&a), rd_rng_u64(&b));
}

static void test_rng_split(void **state) {
    (void)state;
    // Same (seed, stream) -> same sequence, whatever ran before.
    rd_rng a, b, other;
    rd_rng_split(&a, 42, 3);
    rd_rng_split(&other, 42, 4);
    for (int i = 0; i < 100; i++)
        rd_rng_u64(&other);
    rd_rng_split(&b, 42, 3);
    for (int i = 0; i < 100; i++)
        assert_int_equal(rd_rng_u64(&a), rd_rng_u64(&b));
    // Neighbouring streams (and the parent seed) are independent: sample correlation of their
    // uniforms is near 0 and no output repeats.
    enum { S = 8, N = 20000 };
    static double u[S][N];
    for (int s = 0; s < S; s++) {
        rd_rng r;
        rd_rng_split(&r, 42, (uint64_t)s);
        for (int i = 0; i < N; i++)
            u[s][i] = rd_rng_uniform(&r);
    }
    for (int s = 0; s < S; s++) {
        for (int t = s + 1; t < S; t++) {
            double sx = 0, sy = 0, sxy = 0, sxx = 0, syy = 0;
            for (int i = 0; i < N; i++) {
                sx += u[s][i];
                sy += u[t][i];
                sxy += u[s][i] * u[t][i];
                sxx += u[s][i] * u[s][i];
                syy += u[t][i] * u[t][i];
            }
            double cov = sxy / N - (sx / N) * (sy / N);
            double corr =
                cov / sqrt((sxx / N - (sx / N) * (sx / N)) * (syy / N - (sy / N) * (sy / N)));
            // 1/sqrt(N) = 0.007: 0.04 is more than 5 standard deviations.
            assert_true(fabs(corr) < 0.04);
            assert_true(u[s][0] != u[t][0]);
        }
    }
    rd_rng p;
    rd_rng_seed(&p, 42);
    rd_rng_split(&a, 42, 0);
    assert_int_not_equal(rd_rng_u64(&p), rd_rng_u64(&a));
}

static void test_rng_ranges(void **state) {
    (void)state;
    rd_rng r;
    rd_rng_seed(&r, 5);
    // rd_rng_below: always in [0, n); n = 1 gives 0; uniform over small n.
    for (int i = 0; i < 1000; i++)
        assert_int_equal(rd_rng_below(&r, 1), 0);
    static const uint64_t ns[] = {2, 3, 7, 10, 1000, 1ULL << 33, (1ULL << 63) + 1, UINT64_MAX};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
        for (int i = 0; i < 20000; i++)
            assert_true(rd_rng_below(&r, ns[k]) < ns[k]);
    enum { K = 6, N = 60000 };
    int hist[K] = {0};
    for (int i = 0; i < N; i++)
        hist[rd_rng_below(&r, K)]++;
    double chi2 = 0;
    for (int k = 0; k < K; k++)
        chi2 += (hist[k] - N / K) * (double)(hist[k] - N / K) / (N / K);
    assert_true(chi2 < 25.0); // 5 degrees of freedom: p < 1e-4 beyond 25.7
    // Uniforms in [0, 1); normal has mean 0 and variance 1.
    double sum = 0, sumsq = 0;
    for (int i = 0; i < N; i++) {
        double x = rd_rng_uniform(&r);
        float f = rd_rng_uniformf(&r);
        assert_true(x >= 0.0 && x < 1.0);
        assert_true(f >= 0.0f && f < 1.0f);
        double z = rd_rng_normal(&r);
        assert_true(isfinite(z));
        sum += z;
        sumsq += z * z;
    }
    assert_true(fabs(sum / N) < 0.03);
    assert_true(fabs(sumsq / N - 1.0) < 0.05);
}

// ---------------------------------------------------------------------------------------------
// Allocation

static int g_fail; // 1 = every allocation fails
static int g_calls;
static void *test_malloc_fn(size_t n) {
    g_calls++;
    return g_fail ? NULL : malloc(n);
}
static void *test_realloc_fn(void *p, size_t n) {
    g_calls++;
    return g_fail ? NULL : realloc(p, n);
}

static void test_aligned(void **state) {
    (void)state;
    static const size_t sizes[] = {0, 1, 3, 63, 64, 65, 100, 4096, 1000001};
    void *ptrs[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ptrs[i] = rd_aligned_alloc(sizes[i]);
        assert_non_null(ptrs[i]);
        assert_int_equal((uintptr_t)ptrs[i] % RD_ALIGN, 0);
        memset(ptrs[i], 0xcd, sizes[i]); // the whole size is usable (ASan checks)
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        rd_aligned_free(ptrs[i]);
    rd_aligned_free(NULL);
    void *x = rd_aligned_xalloc(128);
    assert_int_equal((uintptr_t)x % RD_ALIGN, 0);
    rd_aligned_free(x);
    // Impossible sizes fail cleanly.
    assert_null(rd_aligned_alloc(SIZE_MAX - 10));
    assert_null(rd_calloc(SIZE_MAX / 2, 4));
    // calloc zeroes; realloc keeps content; xstrdup copies.
    unsigned char *c = rd_calloc(100, 3);
    assert_non_null(c);
    for (int i = 0; i < 300; i++)
        assert_int_equal(c[i], 0);
    c[299] = 9;
    c = rd_xrealloc(c, 1000);
    assert_int_equal(c[299], 9);
    rd_free(c);
    rd_free(NULL);
    char *d = rd_xstrdup("dup me");
    assert_string_equal(d, "dup me");
    rd_free(d);
}

// rd_alloc_advise_huge asks only for the 2 MiB-aligned interior of the block (madvise rejects an
// unaligned start, and the ragged ends cannot be huge pages): its size, for a block inside a real
// 10 MiB allocation at and just past a 2 MiB boundary.
static void test_advise_huge(void **state) {
    (void)state;
    const size_t M2 = (size_t)2 << 20;
    unsigned char *raw = malloc(5 * M2);
    assert_non_null(raw);
    unsigned char *q = raw + (M2 - (uintptr_t)raw % M2) % M2; // first 2 MiB boundary in raw
#if defined(__linux__)
    assert_int_equal(rd_alloc_advise_huge(q, 2 * M2), 2 * M2);
    assert_int_equal(rd_alloc_advise_huge(q, 2 * M2 + 100), 2 * M2);
    assert_int_equal(rd_alloc_advise_huge(q + 1, 2 * M2), M2); // [q + 2M, q + 4M)
    assert_int_equal(rd_alloc_advise_huge(q + 1, 3 * M2 - 1), 2 * M2);
    assert_int_equal(rd_alloc_advise_huge(q, M2), M2);
#endif
    assert_int_equal(rd_alloc_advise_huge(q, M2 - 1), 0);
    assert_int_equal(rd_alloc_advise_huge(q + 1, M2), 0); // crosses no whole huge page
    assert_int_equal(rd_alloc_advise_huge(q, 0), 0);
    memset(q, 1, 2 * M2); // the memory stays usable
    free(raw);
}

static void test_oom_injection(void **state) {
    (void)state;
    rd_allocator a = {test_malloc_fn, test_realloc_fn, free};
    rd_alloc_set(&a);
    g_fail = 1;
    g_calls = 0;
    assert_null(rd_malloc(16));
    assert_null(rd_calloc(4, 4));
    assert_null(rd_realloc(NULL, 16));
    assert_null(rd_aligned_alloc(256));
    assert_int_equal(g_calls, 4); // every call went through the injected allocator
    g_fail = 0;
    void *p = rd_malloc(16);
    assert_non_null(p);
    void *q = rd_aligned_alloc(256);
    assert_non_null(q);
    assert_int_equal(g_calls, 6);
    rd_free(p);
    rd_aligned_free(q);
    // NULL restores libc.
    rd_alloc_set(NULL);
    g_calls = 0;
    p = rd_malloc(8);
    assert_non_null(p);
    assert_int_equal(g_calls, 0);
    rd_free(p);
}

// ---------------------------------------------------------------------------------------------
// rd_fmt_rank_set: the rank lists of the launch-wide messages (app/args.c)

static void test_fmt_rank_set(void **state) {
    (void)state;
    char sel[16] = {0}, buf[600];
    int32_t app[16] = {0};
    sel[2] = 1;
    rd_fmt_rank_set(sel, NULL, 16, buf, sizeof buf);
    assert_string_equal(buf, "rank 2");
    sel[0] = sel[1] = sel[4] = sel[5] = sel[7] = sel[8] = sel[9] = 1;
    rd_fmt_rank_set(sel, NULL, 16, buf, sizeof buf);
    assert_string_equal(buf, "ranks 0-2, 4, 5, 7-9");
    for (int r = 8; r < 16; r++)
        app[r] = 1;
    rd_fmt_rank_set(sel, app, 16, buf, sizeof buf);
    assert_string_equal(buf, "ranks 0-2, 4, 5, 7-9 (mpiexec segments 1, 2)");
    memset(sel, 0, sizeof sel);
    sel[9] = sel[10] = 1;
    rd_fmt_rank_set(sel, app, 16, buf, sizeof buf);
    assert_string_equal(buf, "ranks 9, 10 (mpiexec segment 2)");
}

// Every other rank of a large launch: cut after a whole rank, and "... (N more)" says how many
// are left out (the list was cut mid-number, with nothing to say it was cut). The segments
// stay at the end.
static void check_cut(const char *buf, size_t cap, int total, const char *tail) {
    assert_true(strlen(buf) < cap);
    const char *dots = strstr(buf, ", ... (");
    assert_non_null(dots);
    int shown = 0, last = -2;
    for (const char *p = buf + strlen("ranks "); p < dots;) {
        char *end;
        long r = strtol(p, &end, 10);
        assert_true(end > p);
        assert_true(r == last + 2); // every other rank, whole numbers
        last = (int)r;
        shown++;
        p = end;
        if (p < dots) {
            assert_memory_equal(p, ", ", 2);
            p += 2;
        }
    }
    int more = -1;
    char rest[128] = "";
    assert_int_equal(sscanf(dots, ", ... (%d more)%127[^\n]", &more, rest) >= 1, 1);
    assert_int_equal(shown + more, total);
    assert_string_equal(rest, tail);
}

static void test_fmt_rank_set_cut(void **state) {
    (void)state;
    enum { N = 1000 };
    char *sel = calloc(N, 1);
    int32_t *app = calloc(N, sizeof *app);
    assert_non_null(sel);
    assert_non_null(app);
    char buf[600];
    for (int r = 0; r < N; r += 2)
        sel[r] = 1;
    rd_fmt_rank_set(sel, NULL, N, buf, sizeof buf);
    check_cut(buf, sizeof buf, N / 2, "");
    for (int r = N / 2; r < N; r++)
        app[r] = 1;
    rd_fmt_rank_set(sel, app, N, buf, sizeof buf);
    check_cut(buf, sizeof buf, N / 2, " (mpiexec segments 1, 2)");
    // One segment a rank: the segments are cut the same way, and the ranks still shown.
    for (int r = 0; r < N; r++)
        app[r] = r;
    rd_fmt_rank_set(sel, app, N, buf, sizeof buf);
    assert_true(strlen(buf) < sizeof buf);
    assert_non_null(strstr(buf, "ranks 0, 2, 4, "));
    const char *seg = strstr(buf, " (mpiexec segments 1, 3, 5, ");
    assert_non_null(seg);
    assert_non_null(strstr(seg, ", ... ("));
    assert_string_equal(buf + strlen(buf) - strlen(" more))"), " more))");
    // A small buffer: still whole entries, or the count alone.
    char small[24];
    rd_fmt_rank_set(sel, NULL, N, small, sizeof small);
    assert_true(strlen(small) < sizeof small);
    assert_non_null(strstr(small, "more)"));
    // A long run is one entry, never cut.
    memset(sel, 1, N);
    rd_fmt_rank_set(sel, NULL, N, buf, sizeof buf);
    assert_string_equal(buf, "ranks 0-999");
    free(sel);
    free(app);
}

// Every buffer size from the smallest that holds "ranks ... (N more)": the text is whole entries
// and whole counts, its parentheses closed, or the segment suffix is left out entirely. A
// buffer whose third could not hold the suffix's words and count wrote "(mpiexec segments ...
// (8 mo" or "(mpiexec segmen", cut inside a word with the parenthesis left open.
// rd_fmt_append: printf text appended, cut at the buffer's end, nothing once it is full.
static void test_fmt_append(void **state) {
    (void)state;
    char buf[8];
    size_t len = 0;
    rd_fmt_append(buf, sizeof buf, &len, "%s", "ab");
    assert_string_equal(buf, "ab");
    assert_int_equal(len, 2);
    rd_fmt_append(buf, sizeof buf, &len, "%d-%d", 12, 345);
    assert_string_equal(buf, "ab12-34"); // cut at cap - 1
    assert_int_equal(len, 7);
    rd_fmt_append(buf, sizeof buf, &len, "x");
    assert_string_equal(buf, "ab12-34");
    assert_int_equal(len, 7);
    len = 0;
    rd_fmt_append(buf, sizeof buf, &len, "%s", "");
    assert_int_equal(len, 0);
}

static void test_fmt_rank_set_small(void **state) {
    (void)state;
    enum { N = 1000 };
    char *sel = calloc(N, 1);
    int32_t *app = calloc(N, sizeof *app);
    assert_non_null(sel);
    assert_non_null(app);
    for (int r = 0; r < N; r += 2)
        sel[r] = 1;
    for (int r = 0; r < N; r++)
        app[r] = r;
    char buf[256];
    for (size_t cap = 24; cap <= sizeof buf; cap++) {
        rd_fmt_rank_set(sel, app, N, buf, cap);
        const size_t len = strlen(buf);
        assert_true(len < cap);
        int open = 0;
        for (size_t i = 0; i < len; i++) {
            open += buf[i] == '(';
            open -= buf[i] == ')';
            assert_true(open >= 0 && open <= 2);
        }
        if (open != 0)
            fail_msg("cap %zu: parenthesis left open: '%s'", cap, buf);
        // Each count is whole: "... (N more)".
        for (const char *p = buf; (p = strstr(p, "... (")) != NULL; p += 5) {
            int more = 0;
            char close = 0;
            if (sscanf(p, "... (%d more%c", &more, &close) != 2 || close != ')' || more <= 0)
                fail_msg("cap %zu: a count cut: '%s'", cap, buf);
        }
        // The suffix, when present, holds a segment or a count after its words.
        const char *seg = strstr(buf, " (mpiexec segment");
        if (seg && !strstr(seg, "segments 1") && !strstr(seg, "segments ... ("))
            fail_msg("cap %zu: a suffix cut inside its words: '%s'", cap, buf);
        assert_true(len > 0 && buf[len - 1] == ')'); // 500 ranks never fit: a count ends it
    }
    free(sel);
    free(app);
}

// ---------------------------------------------------------------------------------------------
// Logging

// rd_mem_limit's cgroup part on a fake hierarchy: v2 memory.max ("max" = none) and v1
// memory.limit_in_bytes (2^63 - 4096 = none), the smallest from the process's cgroup up (under
// v1 only through ancestors with memory.use_hierarchy = 1).
static void put_file(const char *dir, const char *name, const char *text) {
    char cmd[700], path[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_cgroup_limit(void **state) {
    (void)state;
    char root[] = "/tmp/rd_cgroup_XXXXXX", d[400];
    assert_non_null(mkdtemp(root));
    // v2: the job's limit (2 GiB) under a slice without one, the step's own "max".
    snprintf(d, sizeof d, "%s/slurm", root);
    put_file(d, "memory.max", "max\n");
    snprintf(d, sizeof d, "%s/slurm/job_7", root);
    put_file(d, "memory.max", "2147483648\n");
    snprintf(d, sizeof d, "%s/slurm/job_7/step_0", root);
    put_file(d, "memory.max", "max\n");
    assert_true(rd__cgroup_mem_limit(root, "0::/slurm/job_7/step_0\n") == 2147483648ULL);
    assert_true(rd__cgroup_mem_limit(root, "0::/slurm\n") == 0);
    assert_true(rd__cgroup_mem_limit(root, "0::/\n") == 0);
    assert_true(rd__cgroup_mem_limit(root, "0::/gone/away\n") == 0);
    // v1: the memory controller's line among others; a smaller step limit wins.
    snprintf(d, sizeof d, "%s/memory/uid_0/job_9", root);
    put_file(d, "memory.limit_in_bytes", "9223372036854771712\n");
    snprintf(d, sizeof d, "%s/memory/uid_0", root);
    put_file(d, "memory.limit_in_bytes", "1073741824\n");
    snprintf(d, sizeof d, "%s/memory/uid_0/job_9/step_1", root);
    put_file(d, "memory.limit_in_bytes", "536870912\n");
    assert_true(rd__cgroup_mem_limit(root, "5:cpu,cpuacct:/x\n4:memory:/uid_0/job_9\n") ==
                1073741824ULL);
    assert_true(rd__cgroup_mem_limit(root, "4:blkio,memory:/uid_0/job_9/step_1\n") == 536870912ULL);
    assert_true(rd__cgroup_mem_limit(root, "4:memoryx:/uid_0/job_9/step_1\n") == 0);
    assert_true(rd__cgroup_mem_limit(root, "") == 0);
    // v1 memory.use_hierarchy: a parent's limit reaches a child only when the parent has 1.
    // (uid_0 and job_9 above have no such file: hierarchical, as on Linux >= 5.11.)
    snprintf(d, sizeof d, "%s/memory/flat", root); // 256 MiB, not hierarchical
    put_file(d, "memory.limit_in_bytes", "268435456\n");
    put_file(d, "memory.use_hierarchy", "0\n");
    snprintf(d, sizeof d, "%s/memory/flat/job", root); // no limit, not hierarchical
    put_file(d, "memory.limit_in_bytes", "9223372036854771712\n");
    put_file(d, "memory.use_hierarchy", "0\n");
    snprintf(d, sizeof d, "%s/memory/flat/job/step", root);
    put_file(d, "memory.limit_in_bytes", "9223372036854771712\n");
    put_file(d, "memory.use_hierarchy", "0\n");
    assert_true(rd__cgroup_mem_limit(root, "4:memory:/flat/job/step\n") == 0);
    assert_true(rd__cgroup_mem_limit(root, "4:memory:/flat/job\n") == 0);
    assert_true(rd__cgroup_mem_limit(root, "4:memory:/flat\n") == 268435456ULL); // its own
    snprintf(d, sizeof d, "%s/memory/flat/hier", root); // 1 GiB, hierarchical, under `flat`
    put_file(d, "memory.limit_in_bytes", "1073741824\n");
    put_file(d, "memory.use_hierarchy", "1\n");
    snprintf(d, sizeof d, "%s/memory/flat/hier/step", root);
    put_file(d, "memory.limit_in_bytes", "9223372036854771712\n");
    put_file(d, "memory.use_hierarchy", "1\n");
    // hier's 1 GiB applies to its step; flat's smaller 256 MiB does not (flat is not
    // hierarchical, so the walk stops at hier).
    assert_true(rd__cgroup_mem_limit(root, "4:memory:/flat/hier/step\n") == 1073741824ULL);
    // A child's own limit counts whatever its parent says.
    snprintf(d, sizeof d, "%s/memory/flat/job/small", root);
    put_file(d, "memory.limit_in_bytes", "536870912\n");
    put_file(d, "memory.use_hierarchy", "0\n");
    assert_true(rd__cgroup_mem_limit(root, "4:memory:/flat/job/small\n") == 536870912ULL);
    // The process's own figure: never above the node's memory.
    const char *what = NULL;
    unsigned long long lim = rd_mem_limit(&what);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    assert_true(lim > 0 && lim <= (unsigned long long)pages * (unsigned long long)psz);
    assert_non_null(what);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

// rd_fmt_float9 writes what snprintf("%.9g") writes, byte for byte, and it reads back as the same
// float: the edges (zeros, subnormals, the largest float, powers of 2 and of 10 with their
// neighbours, the fixed / exponent boundaries, exact ties such as 1562.515625), every 4099th bit
// pattern and a million random ones.
static int fmt_check(uint32_t bits, long *fallback_free) {
    float x;
    memcpy(&x, &bits, 4);
    char a[RD_FMT_FLOAT_MAX], b[RD_FMT_FLOAT_MAX];
    size_t na = rd_fmt_float9(x, a), nb = rd_fmt_float9_naive(x, b);
    if (na != nb || strcmp(a, b) != 0) {
        print_error("bits 0x%08x: '%s' (fast) but '%s' (snprintf)\n", bits, a, b);
        return 1;
    }
    if (isfinite(x)) {
        float y = strtof(a, NULL);
        uint32_t yb;
        memcpy(&yb, &y, 4);
        if (yb != bits) {
            print_error("bits 0x%08x: '%s' reads back as 0x%08x\n", bits, a, yb);
            return 1;
        }
        (*fallback_free)++;
    }
    return 0;
}

// rd_fmt_double: every double reads back exactly (strtod), in no more digits than it needs.
static void test_fmt_double(void **state) {
    (void)state;
    char s[RD_FMT_DOUBLE_MAX];
    const struct {
        double x;
        const char *text;
    } exact[] = {{0.25, "0.25"},
                 {20000.0, "20000"},
                 {0.0, "0"},
                 {-0.0, "-0"},
                 {0.1, "0.1"},
                 {1e-7, "1e-07"},
                 {0.7447150, "0.744715"},
                 {0.8 - 0.76, "0.040000000000000036"},
                 {1.0 / 3.0, "0.3333333333333333"},
                 {(double)INFINITY, "inf"}};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        assert_int_equal(rd_fmt_double(exact[i].x, s), strlen(exact[i].text));
        assert_string_equal(s, exact[i].text);
    }
    uint64_t z = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        z ^= z << 13, z ^= z >> 7, z ^= z << 17;
        double x;
        memcpy(&x, &z, sizeof x);
        if (!isfinite(x))
            continue;
        size_t n = rd_fmt_double(x, s);
        assert_true(n > 0 && n < RD_FMT_DOUBLE_MAX);
        assert_true(strtod(s, NULL) == x);
        double u = (double)(z >> 11) / 9007199254740992.0; // an AUC-like value in [0, 1)
        rd_fmt_double(u, s);
        assert_true(strtod(s, NULL) == u);
    }
}

static void test_fmt_float9(void **state) {
    (void)state;
    long n = 0;
    int bad = 0;
    const float edge[] = {0.0f,         -0.0f,     FLT_MIN,     -FLT_MIN,    FLT_MAX,   -FLT_MAX,
                          1.0f,         -1.0f,     0.1f,        1e-5f,       9.999e-5f, 1e-4f,
                          0.0001f,      1e9f,      999999999.f, 123456789.f, 1e8f,      99999999.f,
                          1562.515625f, 0.5f,      2.5f,        1e-45f,      3e38f,     16777217.f,
                          INFINITY,     -INFINITY, NAN};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        uint32_t bits;
        memcpy(&bits, &edge[i], 4);
        bad += fmt_check(bits, &n);
    }
    for (uint32_t bits = 0; bits < 0x100; bits++) // the smallest subnormals
        bad += fmt_check(bits, &n);
    for (int k = -149; k <= 127; k++) { // powers of 2 and their neighbours
        float x = ldexpf(1.0f, k);
        uint32_t bits;
        memcpy(&bits, &x, 4);
        for (int dlt = -2; dlt <= 2; dlt++)
            bad += fmt_check(bits + (uint32_t)dlt, &n);
    }
    for (int k = -45; k <= 38; k++) { // powers of 10 and their neighbours
        float x = (float)pow(10.0, k);
        uint32_t bits;
        memcpy(&bits, &x, 4);
        for (int dlt = -3; dlt <= 3; dlt++)
            bad += fmt_check(bits + (uint32_t)dlt, &n);
    }
    for (uint64_t bits = 0; bits <= UINT32_MAX && bad < 10; bits += 4099)
        bad += fmt_check((uint32_t)bits, &n);
    rd_rng r;
    rd_rng_seed(&r, 77);
    for (int i = 0; i < 1000000 && bad < 10; i++)
        bad += fmt_check((uint32_t)rd_rng_u64(&r), &n);
    assert_int_equal(bad, 0);
    assert_true(n > 1900000);
}

static void test_log_levels(void **state) {
    (void)state;
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        rd_log_level lv = RD_LOG_LEVEL_ERROR;
        assert_int_equal(rd_log_level_parse(names[i], &lv), RD_OK);
        assert_int_equal(lv, i);
    }
    rd_log_level lv = RD_LOG_LEVEL_WARN;
    assert_int_equal(rd_log_level_parse("verbose", &lv), RD_ERR_ARG);
    assert_int_equal(rd_log_level_parse("INFO", &lv), RD_ERR_ARG);
    assert_int_equal(lv, RD_LOG_LEVEL_WARN); // untouched on failure
    rd_log_init(RD_LOG_LEVEL_DEBUG, 3, "ps");
    assert_int_equal(rd_log_get_level(), RD_LOG_LEVEL_DEBUG);
    assert_int_equal(rd_log_get_rank(), 3);
    assert_string_equal(rd_log_get_role(), "ps");
    rd_log_set_rank(1, NULL);
    assert_string_equal(rd_log_get_role(), "-");
    rd_log_set_rank(0, "a-role-name-that-is-much-longer-than-the-buffer");
    assert_true(strlen(rd_log_get_role()) < 24);
    // Below the level nothing is formatted: an argument with a side effect is not evaluated.
    rd_log_init(RD_LOG_LEVEL_ERROR, 0, "test");
    int evaluated = 0;
    RD_LOG_DEBUG("%d", ++evaluated);
    assert_int_equal(evaluated, 0);
    rd_log_init(RD_LOG_LEVEL_INFO, 0, "test");
}

// ---------------------------------------------------------------------------------------------
// The rank sentinel's stamps (rd/watch.h)

// Make /dev/shm/<name> holding "123\n", its modification time `age_s` seconds ago.
static void shm_file(const char *name, int age_s) {
    char p[300];
    snprintf(p, sizeof p, "/dev/shm/%s", name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("123\n", f);
    fclose(f);
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age_s;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int shm_exists(const char *name) {
    char p[300];
    snprintf(p, sizeof p, "/dev/shm/%s", name);
    return access(p, F_OK) == 0;
}

// A sentinel killed within the 3 s its stamp lives (kill -9 of every process of a launch, as
// `pkill -9 -f "recdistill train"` does, or a Slurm step's processes ended together) left the
// stamp in /dev/shm for good: no later launch reads it (its token differs), and nothing removed
// it, one more file per such kill. A sentinel now removes the stamps of this user older than a
// minute when it starts; fresh stamps (another launch's sentinels arbitrating now) and other
// names stay.
static void test_watch_stale_stamps(void **state) {
    (void)state;
    struct stat st;
    if (stat("/dev/shm", &st) != 0 || !S_ISDIR(st.st_mode) || access("/dev/shm", W_OK) != 0)
        skip();
    char old[96], fresh[96], other[96];
    snprintf(old, sizeof old, "recdistill-rdtest%ld-old.%ld", (long)getpid(), (long)getpid());
    snprintf(fresh, sizeof fresh, "recdistill-rdtest%ld-new.%ld", (long)getpid(), (long)getpid());
    snprintf(other, sizeof other, "recdistill-rdtest%ld-keep.txt", (long)getpid());
    shm_file(old, 600);
    shm_file(fresh, 1);
    shm_file(other, 600);
    rd_watch *w = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_watch_start(&w, &eb), RD_OK);
    rd_watch_stop(w); // waits for the sentinel
    int old_left = shm_exists(old), fresh_left = shm_exists(fresh), other_left = shm_exists(other);
    char p[300];
    const char *const names[3] = {old, fresh, other};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "/dev/shm/%s", names[i]);
        unlink(p);
    }
    assert_false(old_left);
    assert_true(fresh_left);
    assert_true(other_left);
}

// A rank stuck in one uninterruptible wait of the kernel (State D: a dead NFS server, a hung
// device) is frozen as surely as a stopped one (tests/scripts/freeze.sh stops ranks), though the
// kernel, not a signal, holds it. Made here without root or a file system: the parent of vfork()
// waits in State D (killable) until its child ends, and the child sleeps 60 s. The sentinel, told
// a timeout of 1 s, names the wait and kills the rank long before that: the rank ends by SIGKILL,
// not with exit 3 after the child. Before the freeze watch nothing looked at a live rank.
static void test_watch_freeze_dstate(void **state) {
    (void)state;
    if (getenv("RD_UNDER_VALGRIND")) // valgrind runs vfork as a fork: no wait to watch
        skip();
    char dir[] = "/tmp/rd_test_freeze_XXXXXX", log[64];
    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof log, "%s/stderr", dir);
    fflush(NULL);
    pid_t rank = fork();
    assert_true(rank >= 0);
    if (rank == 0) {
        int fd = open(log, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0)
            _exit(2);
        close(fd);
        rd_watch *w = NULL;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        if (rd_watch_start(&w, &eb) != RD_OK)
            _exit(2);
        char token[64];
        snprintf(token, sizeof token, "rdtest%ld-freeze", (long)getpid());
        rd_watch_identify(w, "rank 9 (role test)", token);
        rd_watch_freeze(w, 1);
        pid_t me = getpid();
        pid_t child = vfork();
        if (child == 0) {
            // Ends with the rank: no sleeper is left behind.
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() == me) {
                struct timespec ts = {60, 0};
                nanosleep(&ts, NULL);
            }
            _exit(0);
        }
        rd_watch_stop(w);
        _exit(3);
    }
    int status = 0;
    assert_int_equal(waitpid(rank, &status, 0), rank);
    char text[2048] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    unlink(log);
    rmdir(dir);
    char who[96];
    snprintf(who, sizeof who, "recdistill: rank 9 (role test), pid %ld on host ", (long)rank);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_non_null(strstr(text, who));
    assert_non_null(strstr(text, "has been in one uninterruptible wait of the kernel for "));
    assert_non_null(strstr(text, "(cluster.freeze_timeout_s: 1; 0 turns this off)"));
    assert_null(strstr(text, "died without an orderly exit"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_errbuf),
        cmocka_unit_test(test_hash_golden),
        cmocka_unit_test(test_hash_properties),
        cmocka_unit_test(test_keys_never_zero),
        cmocka_unit_test(test_shard_balance),
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_rng_determinism),
        cmocka_unit_test(test_rng_split),
        cmocka_unit_test(test_rng_ranges),
        cmocka_unit_test(test_aligned),
        cmocka_unit_test(test_oom_injection),
        cmocka_unit_test(test_advise_huge),
        cmocka_unit_test(test_cgroup_limit), // rd_mem_limit
        cmocka_unit_test(test_fmt_float9),
        cmocka_unit_test(test_fmt_double),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_fmt_rank_set),
        cmocka_unit_test(test_fmt_rank_set_cut),
        cmocka_unit_test(test_fmt_rank_set_small),
        cmocka_unit_test(test_fmt_append),
        cmocka_unit_test(test_abort_watchdog),
        cmocka_unit_test(test_abort_launch_without_mpi),
        cmocka_unit_test(test_watch_stale_stamps),
        cmocka_unit_test(test_watch_freeze_dstate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
