// test_targets.c — the distillation target log (rd/targets.h): append/read round trip in any
// insertion order, pass filtering and range bounds, overwrite of a re-appended target, map
// growth from a tiny map, RD_ERR_RANGE when the caller's arrays are too small, read-only handles
// (also while a writer is open), header/version mismatches, corrupted records, bad input, and a
// teacher job's sampling record (rd_target_log_put_job / _get_job), and dropping one job's
// records (rd_target_log_drop_job) atomically while a reader in another process watches; the
// one-writing-launch lock (rd_target_log_lock) between processes.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/targets.h"
#include "tmp_root.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsync_log.h" // fsync() records what is synced (test_create_durable)

static char g_root[256];

static int setup_root(void **state) {
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/rd_test_targets_XXXXXX");
    return mkdtemp(g_root) ? 0 : -1;
}

static int teardown_root(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    return system(cmd) == 0 ? 0 : -1;
}

static void log_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_root, name);
}

static float logit_of(uint64_t job, uint64_t sample, uint32_t pass) {
    return (float)((double)(rd_mix64(job ^ sample * 31 ^ pass) >> 40) / (double)(1 << 20) - 8.0);
}

static void test_roundtrip_and_ranges(void **state) {
    (void)state;
    char p[512];
    log_path(p, sizeof p, "rt");
    rd_target_log_opts o = {0, 0, 1};
    rd_target_log *log = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_create(p, &o, &log, &eb), RD_OK);
    uint64_t teacher = rd_target_job_key("teacher"), other = rd_target_job_key("teacher2");
    assert_true(teacher != other);
    // Samples 0..999 in a shuffled order, passes 0 and 1, two jobs.
    enum { N = 1000 };
    uint64_t samples[N], versions[N];
    float logits[N];
    int32_t windows[N];
    for (uint32_t pass = 0; pass < 2; pass++) {
        for (uint64_t job_i = 0; job_i < 2; job_i++) {
            uint64_t job = job_i ? other : teacher;
            for (int i = 0; i < N; i++) {
                uint64_t s = (uint64_t)((i * 7919) % N);
                samples[i] = s;
                logits[i] = logit_of(job, s, pass);
                versions[i] = 100 * pass + s % 13;
                windows[i] = (int32_t)(s / 250) - 1;
            }
            rd_target_batch b = {N, job, pass, samples, logits, versions, windows};
            assert_int_equal(rd_target_log_append(log, &b, &eb), RD_OK);
        }
    }
    uint64_t count = 0;
    assert_int_equal(rd_target_log_count(log, &count, &eb), RD_OK);
    assert_true(count == 4 * N);
    // Range [100, 300) of pass 1: 200 records, in sample order.
    uint64_t os[2 * N], ov[2 * N];
    float ol[2 * N];
    uint32_t op[2 * N];
    int32_t ow[2 * N];
    rd_target_out out = {os, ol, op, ov, ow};
    size_t n = 0;
    assert_int_equal(rd_target_log_read_range(log, teacher, 100, 300, 1, &out, 2 * N, &n, &eb),
                     RD_OK);
    assert_int_equal(n, 200);
    for (size_t i = 0; i < n; i++) {
        assert_true(os[i] == 100 + i);
        assert_true(op[i] == 1);
        assert_true(ol[i] == logit_of(teacher, os[i], 1));
        assert_true(ov[i] == 100 + os[i] % 13);
        assert_int_equal(ow[i], (int32_t)(os[i] / 250) - 1);
    }
    // All passes: (sample, pass) order.
    assert_int_equal(
        rd_target_log_read_range(log, other, 998, 5000, RD_TARGET_ANY_PASS, &out, 2 * N, &n, &eb),
        RD_OK);
    assert_int_equal(n, 4);
    assert_true(os[0] == 998 && op[0] == 0 && os[1] == 998 && op[1] == 1 && os[3] == 999);
    assert_true(ol[3] == logit_of(other, 999, 1));
    // Empty and inverted ranges, unknown job.
    assert_int_equal(rd_target_log_read_range(log, teacher, 5, 5, 0, &out, 2 * N, &n, &eb), RD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(rd_target_log_read_range(log, teacher, 9, 3, 0, &out, 2 * N, &n, &eb), RD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(rd_target_log_read_range(log, 12345, 0, UINT64_MAX, RD_TARGET_ANY_PASS, &out,
                                              2 * N, &n, &eb),
                     RD_OK);
    assert_int_equal(n, 0);
    // Too small: RD_ERR_RANGE with the needed count.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_read_range(log, teacher, 0, N, 0, &out, 10, &n, &eb),
                     RD_ERR_RANGE);
    assert_int_equal(n, N);
    assert_non_null(strstr(eb.msg, "room for 10"));
    // Optional outputs may be NULL.
    rd_target_out slim = {os, ol, NULL, NULL, NULL};
    assert_int_equal(rd_target_log_read_range(log, teacher, 0, 10, 0, &slim, 10, &n, &eb), RD_OK);
    assert_int_equal(n, 10);
    // get
    float l;
    uint64_t v;
    int32_t w;
    assert_int_equal(rd_target_log_get(log, teacher, 777, 1, &l, &v, &w, &eb), RD_OK);
    assert_true(l == logit_of(teacher, 777, 1) && v == 100 + 777 % 13 && w == 2);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_get(log, teacher, 777, 2, &l, &v, &w, &eb), RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "sample 777"));
    // Re-appending a target replaces it; a batch may hold duplicates (the last one wins).
    uint64_t ds[3] = {777, 5, 777};
    float dl[3] = {1.5f, 2.5f, 3.5f};
    rd_target_batch d = {3, teacher, 1, ds, dl, NULL, NULL};
    assert_int_equal(rd_target_log_append(log, &d, &eb), RD_OK);
    assert_int_equal(rd_target_log_get(log, teacher, 777, 1, &l, &v, &w, &eb), RD_OK);
    assert_true(l == 3.5f && v == 0 && w == -1);
    assert_int_equal(rd_target_log_count(log, &count, &eb), RD_OK);
    assert_true(count == 4 * N);
    // A reader opened while the writer is open sees the same data.
    rd_target_log *ro = NULL;
    assert_int_equal(rd_target_log_open(p, 0, NULL, &ro, &eb), RD_OK);
    assert_int_equal(rd_target_log_get(ro, teacher, 5, 1, &l, NULL, NULL, &eb), RD_OK);
    assert_true(l == 2.5f);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_append(ro, &d, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "read-only"));
    // The reader's snapshot is renewed per call: it sees later appends.
    uint64_t ns[1] = {4242};
    float nl[1] = {-1.0f};
    rd_target_batch nb = {1, teacher, 0, ns, nl, NULL, NULL};
    assert_int_equal(rd_target_log_append(log, &nb, &eb), RD_OK);
    assert_int_equal(rd_target_log_get(ro, teacher, 4242, 0, &l, NULL, NULL, &eb), RD_OK);
    assert_true(l == -1.0f);
    // A no_sync writer flushes its commits on demand (a teacher's checkpoint); a reader cannot.
    assert_int_equal(rd_target_log_sync(log, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_sync(ro, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "read-only"));
    rd_target_log_close(ro);
    rd_target_log_close(log);
    // Creating over an existing log is refused.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_create(p, &o, &log, &eb), RD_ERR_EXISTS);
    assert_null(log);
}

static void test_growth(void **state) {
    (void)state;
    char p[512];
    log_path(p, sizeof p, "grow");
    rd_target_log_opts o = {64 << 10, 0, 1};
    rd_target_log *log = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_create(p, &o, &log, &eb), RD_OK);
    enum { B = 20000, ROUNDS = 10 };
    static uint64_t s[B];
    static float l[B];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < B; i++) {
            s[i] = (uint64_t)(r * B + i);
            l[i] = (float)i * 0.5f;
        }
        rd_target_batch b = {B, 7, 0, s, l, NULL, NULL};
        assert_int_equal(rd_target_log_append(log, &b, &eb), RD_OK);
    }
    uint64_t count = 0;
    assert_int_equal(rd_target_log_count(log, &count, &eb), RD_OK);
    assert_true(count == (uint64_t)B * ROUNDS);
    float lv;
    assert_int_equal(rd_target_log_get(log, 7, 3 * B + 11, 0, &lv, NULL, NULL, &eb), RD_OK);
    assert_true(lv == 5.5f);
    rd_target_log_close(log);
    // At the cap: RD_ERR_FULL and the failed batch left nothing behind.
    log_path(p, sizeof p, "capped");
    rd_target_log_opts c = {64 << 10, 256 << 10, 1};
    assert_int_equal(rd_target_log_create(p, &c, &log, &eb), RD_OK);
    int rc = RD_OK;
    uint64_t committed = 0;
    for (int r = 0; r < 100 && rc == RD_OK; r++) {
        for (int i = 0; i < 2000; i++)
            s[i] = (uint64_t)(r * 2000 + i);
        rd_target_batch b = {2000, 7, 0, s, l, NULL, NULL};
        rd_errbuf_clear(&eb);
        rc = rd_target_log_append(log, &b, &eb);
        if (rc == RD_OK)
            committed += 2000;
    }
    assert_int_equal(rc, RD_ERR_FULL);
    assert_non_null(strstr(eb.msg, "full"));
    assert_int_equal(rd_target_log_count(log, &count, &eb), RD_OK);
    assert_true(count == committed && committed > 0);
    rd_target_log_close(log);
}

static void le32_put(unsigned char *p, uint32_t v) {
    for (int b = 0; b < 4; b++)
        p[b] = (unsigned char)(v >> (8 * b));
}

// A teacher job's sampling record: written, replaced, read back by a read-only handle; absent
// for another job; refused with bad rates or on a read-only handle; damaged -> RD_ERR_CORRUPT.
static void test_job_sampling_record(void **state) {
    (void)state;
    char p[512];
    log_path(p, sizeof p, "jobs");
    rd_target_log *log = NULL, *ro = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_create(p, NULL, &log, &eb), RD_OK);
    uint64_t t = rd_target_job_key("teacher"), u = rd_target_job_key("teacher2");
    rd_target_job_info ji = {0.5, 1.0, 0x1234567890abcdefULL, 123456789012ULL, 0xdeadbeefu, 1}, got;
    assert_int_equal(rd_target_log_put_job(log, t, &ji, &eb), RD_OK);
    ji.neg_rate = 0.25; // replaced, not added
    assert_int_equal(rd_target_log_put_job(log, t, &ji, &eb), RD_OK);
    assert_int_equal(rd_target_log_open(p, 0, NULL, &ro, &eb), RD_OK);
    memset(&got, 0, sizeof got);
    assert_int_equal(rd_target_log_get_job(ro, t, &got, &eb), RD_OK);
    assert_true(got.neg_rate == 0.25 && got.pos_rate == 1.0 && got.salt == ji.salt);
    assert_true(got.has_data && got.data_events == ji.data_events && got.data_crc == 0xdeadbeefu);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_get_job(ro, u, &got, &eb), RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "no sampling record"));
    assert_int_equal(rd_target_log_put_job(ro, u, &ji, &eb), RD_ERR_ARG);
    rd_target_job_info bad[3] = {
        {0.0, 1.0, 1, 1, 1, 1}, {0.5, 1.5, 1, 1, 1, 1}, {(double)NAN, 1.0, 1, 1, 1, 1}};
    for (int k = 0; k < 3; k++) {
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_target_log_put_job(log, u, &bad[k], &eb), RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, "not in (0, 1]"));
    }
    rd_target_job_info nodata = {0.5, 1.0, 1, 0, 0, 0}; // the dataset is required
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_put_job(log, u, &nodata, &eb), RD_ERR_ARG);
    uint64_t count = 9;
    assert_int_equal(rd_target_log_count(log, &count, &eb), RD_OK);
    assert_true(count == 0); // meta records are not targets
    rd_target_log_close(ro);
    rd_target_log_close(log);
    // Behind the log's back: the record as an older build wrote it (40 bytes, "RDTGJOB1", no
    // dataset) is read with has_data 0; then one byte of the rate flipped (the CRC no longer
    // matches) is damage.
    rd_lmdbx_opts lo = {0};
    lo.max_dbs = 4;
    MDB_env *env;
    unsigned char kb[11] = {'j', 'o', 'b'};
    rd_lmdbx_put_be64(kb + 3, t);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(rd_lmdbx_env_open(p, &lo, &env, &eb), RD_OK);
        MDB_txn *txn;
        MDB_dbi meta;
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
        MDB_val k = {11, kb}, v;
        assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
        assert_int_equal(v.mv_size, round == 0 ? 56 : 40);
        unsigned char val[56];
        memcpy(val, v.mv_data, v.mv_size);
        if (round == 0) { // rewrite as version 1
            memcpy(val, "RDTGJOB1", 8);
            le32_put(val + 32, rd_crc32c(0, val, 32));
            le32_put(val + 36, 0);
            v.mv_size = 40;
        } else {
            val[10] ^= 0x40;
        }
        v.mv_data = val;
        assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        rd_lmdbx_env_close(env);
        assert_int_equal(rd_target_log_open(p, 0, NULL, &ro, &eb), RD_OK);
        rd_errbuf_clear(&eb);
        memset(&got, 0, sizeof got);
        if (round == 0) {
            assert_int_equal(rd_target_log_get_job(ro, t, &got, &eb), RD_OK);
            assert_true(got.neg_rate == 0.25 && got.salt == ji.salt && !got.has_data);
        } else {
            assert_int_equal(rd_target_log_get_job(ro, t, &got, &eb), RD_ERR_CORRUPT);
            assert_non_null(strstr(eb.msg, "damaged sampling record"));
        }
        rd_target_log_close(ro);
    }
}

// Several processes open-or-create one log at once (the teacher jobs of a launch): every one
// gets the same log, each writes its job record, nothing half-made is ever opened and no
// partial folder stays. An existing empty folder is taken; a folder holding other files and a
// regular file are refused with messages naming them, and nothing is left behind.
static void test_open_or_create(void **state) {
    (void)state;
    enum { KIDS = 6, ROUNDS = 8 };
    for (int round = 0; round < ROUNDS; round++) {
        char p[512], name[32];
        snprintf(name, sizeof name, "race%d/sub/log", round);
        log_path(p, sizeof p, name);
        int go[2];
        assert_int_equal(pipe(go), 0);
        pid_t kid[KIDS];
        for (int k = 0; k < KIDS; k++) {
            kid[k] = fork();
            assert_true(kid[k] >= 0);
            if (kid[k] == 0) {
                char c;
                close(go[1]);
                if (read(go[0], &c, 1) != 0) // released together when the pipe closes
                    _exit(3);
                rd_errbuf eb;
                rd_errbuf_clear(&eb);
                rd_target_log *log = NULL;
                rd_target_log_opts o = {0, 0, 1};
                int created = -1;
                if (rd_target_log_open_or_create(p, &o, &log, &created, &eb) != RD_OK) {
                    fprintf(stderr, "child %d: %s\n", k, eb.msg);
                    _exit(1);
                }
                char job[16];
                snprintf(job, sizeof job, "t%d", k);
                rd_target_job_info ji = {1.0, 1.0, (uint64_t)k, 100, 7, 1};
                int rc = rd_target_log_put_job(log, rd_target_job_key(job), &ji, &eb);
                rd_target_log_close(log);
                _exit(rc != RD_OK ? 2 : created == 1 ? 10 : created == 0 ? 11 : 12);
            }
        }
        close(go[0]);
        close(go[1]);
        int creators = 0;
        for (int k = 0; k < KIDS; k++) {
            int st = 0;
            assert_int_equal(waitpid(kid[k], &st, 0), kid[k]);
            assert_true(WIFEXITED(st) && (WEXITSTATUS(st) == 10 || WEXITSTATUS(st) == 11));
            creators += WEXITSTATUS(st) == 10;
        }
        assert_int_equal(creators, 1); // exactly one process says it created the log
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        rd_target_log *log = NULL;
        assert_int_equal(rd_target_log_open(p, 0, NULL, &log, &eb), RD_OK);
        for (int k = 0; k < KIDS; k++) {
            char job[16];
            snprintf(job, sizeof job, "t%d", k);
            rd_target_job_info got;
            assert_int_equal(rd_target_log_get_job(log, rd_target_job_key(job), &got, &eb), RD_OK);
            assert_true(got.salt == (uint64_t)k && got.has_data && got.data_events == 100);
        }
        rd_target_log_close(log);
        char parent[600];
        snprintf(parent, sizeof parent, "%s/race%d/sub", g_root, round);
        DIR *d = opendir(parent);
        assert_non_null(d);
        struct dirent *e;
        int entries = 0;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                entries++; // only "log": every loser removed its partial folder
        closedir(d);
        assert_int_equal(entries, 1);
    }
    // An empty folder is taken.
    char p[512], f[600];
    log_path(p, sizeof p, "empty_dir");
    assert_int_equal(mkdir(p, 0755), 0);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_log *log = NULL;
    int created = 0;
    assert_int_equal(rd_target_log_open_or_create(p, NULL, &log, &created, &eb), RD_OK);
    assert_int_equal(created, 1);
    rd_target_log_close(log);
    assert_int_equal(rd_target_log_open_or_create(p, NULL, &log, &created, &eb), RD_OK);
    assert_int_equal(created, 0); // there now
    rd_target_log_close(log);
    rd_target_log_remove(p); // undone: the folder is gone
    struct stat st;
    assert_int_equal(stat(p, &st), -1);
    // A folder with other files, and a regular file: refused by name, nothing left.
    log_path(p, sizeof p, "busy_dir");
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(f, sizeof f, "%s/notes.txt", p);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_open_or_create(p, NULL, &log, NULL, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "holds other files but no log"));
    assert_non_null(strstr(eb.msg, p));
    log_path(p, sizeof p, "a_file");
    fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_open_or_create(p, NULL, &log, NULL, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "exists and is not a folder"));
    // Under a regular file: the mkdir of the parent says so.
    snprintf(f, sizeof f, "%s/targets", p);
    rd_errbuf_clear(&eb);
    assert_true(rd_target_log_open_or_create(f, NULL, &log, NULL, &eb) != RD_OK);
    assert_non_null(strstr(eb.msg, "not a folder"));
    assert_null(log);
    DIR *d = opendir(g_root);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        assert_null(strstr(e->d_name, ".partial."));
    closedir(d);
}

// A new log in folders that do not exist yet: it is built beside its place and renamed there;
// then the log's own folder, the folder it was renamed in and each folder made for it are
// synced, innermost first. Likewise a log linked into its writer lock's folder. Before, none
// was: a crash could lose a log whose pages were synced.
static void test_create_durable(void **state) {
    (void)state;
    char root[4096], p[4400];
    assert_non_null(realpath(g_root, root));
    snprintf(p, sizeof p, "%s/tl_new1/tl_new2/log", root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_log *log = NULL;
    g_n_fsynced = 0;
    g_fsync_log = 1;
    int rc = rd_target_log_open_or_create(p, NULL, &log, NULL, &eb);
    g_fsync_log = 0;
    assert_int_equal(rc, RD_OK);
    rd_target_log_close(log);
    char a[4400], b[4400];
    snprintf(a, sizeof a, "%s/tl_new1/tl_new2", root);
    snprintf(b, sizeof b, "%s/tl_new1", root);
    int h = fsync_log_find(p, 0), i = fsync_log_find(a, h), j = fsync_log_find(b, i),
        k = fsync_log_find(root, j);
    if (h < 0 || i < 0 || j < 0 || k < 0)
        fail_msg("new log in new folders: %s, %s, %s, %s synced at %d, %d, %d, %d of %d", p, a, b,
                 root, h, i, j, k, g_n_fsynced);
    // The launch's writer lock made the log's folder first: the log's data.mdb is linked in.
    snprintf(p, sizeof p, "%s/tl_locked", root);
    int fd = -1;
    assert_int_equal(rd_target_log_lock(p, "launch A", &fd, &eb), RD_OK);
    g_n_fsynced = 0;
    g_fsync_log = 1;
    rc = rd_target_log_open_or_create(p, NULL, &log, NULL, &eb);
    g_fsync_log = 0;
    assert_int_equal(rc, RD_OK);
    rd_target_log_close(log);
    rd_target_log_unlock(fd);
    if (fsync_log_find(p, 0) < 0)
        fail_msg("log linked into %s: the folder was not synced", p);
}

static void test_errors(void **state) {
    (void)state;
    char p[512];
    rd_errbuf eb;
    rd_target_log *log = NULL;
    log_path(p, sizeof p, "missing");
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_open(p, 0, NULL, &log, &eb), RD_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "missing"));
    assert_int_equal(rd_target_log_create("", NULL, &log, &eb), RD_ERR_ARG);
    // Bad input: non-finite logits, missing arrays, bad pass filter.
    log_path(p, sizeof p, "err");
    assert_int_equal(rd_target_log_create(p, NULL, &log, &eb), RD_OK);
    uint64_t s[2] = {1, 2};
    float l[2] = {0.5f, NAN};
    rd_target_batch b = {2, 1, 0, s, l, NULL, NULL};
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_append(log, &b, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "record 1"));
    uint64_t count = 9;
    assert_int_equal(rd_target_log_count(log, &count, &eb), RD_OK);
    assert_true(count == 0);
    b.logits = NULL;
    assert_int_equal(rd_target_log_append(log, &b, &eb), RD_ERR_ARG);
    uint64_t os[2];
    float ol[2];
    rd_target_out out = {os, ol, NULL, NULL, NULL};
    size_t n;
    assert_int_equal(rd_target_log_read_range(log, 1, 0, 9, -2, &out, 2, &n, &eb), RD_ERR_ARG);
    l[1] = 1.0f;
    b.logits = l;
    assert_int_equal(rd_target_log_append(log, &b, &eb), RD_OK);
    rd_target_log_close(log);
    // Corrupted record and damaged header, written behind the log's back.
    rd_lmdbx_opts lo = {0};
    lo.max_dbs = 4;
    MDB_env *env;
    assert_int_equal(rd_lmdbx_env_open(p, &lo, &env, &eb), RD_OK);
    MDB_txn *txn;
    MDB_dbi targets, meta;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "targets", 0, &targets), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    unsigned char key[20];
    rd_lmdbx_put_be64(key, 1);
    rd_lmdbx_put_be64(key + 8, 2);
    rd_lmdbx_put_be32(key + 16, 0);
    unsigned char val[20] = {0};
    MDB_val k = {20, key}, v = {20, val};
    assert_int_equal(mdb_put(txn, targets, &k, &v, 0), 0); // right size, bad CRC
    // Sample 3: a NaN logit under a right CRC (no sender logs one): refused as the record's.
    unsigned char key3[20], val3[20] = {0};
    memcpy(key3, key, 20);
    rd_lmdbx_put_be64(key3 + 8, 3);
    const float qnan = NAN;
    uint32_t nb, c3;
    memcpy(&nb, &qnan, 4);
    for (int i = 0; i < 4; i++)
        val3[i] = (unsigned char)(nb >> (8 * i));
    c3 = rd_crc32c(rd_crc32c(0, key3, 20), val3, 16);
    for (int i = 0; i < 4; i++)
        val3[16 + i] = (unsigned char)(c3 >> (8 * i));
    MDB_val k3 = {20, key3}, v3 = {20, val3};
    assert_int_equal(mdb_put(txn, targets, &k3, &v3, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    rd_lmdbx_env_close(env);
    assert_int_equal(rd_target_log_open(p, 0, NULL, &log, &eb), RD_OK);
    float lv;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_get(log, 1, 2, 0, &lv, NULL, NULL, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "CRC"));
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_get(log, 1, 3, 0, &lv, NULL, NULL, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "sample 3, pass 0): the logit is not a finite number"));
    assert_int_equal(rd_target_log_get(log, 1, 1, 0, &lv, NULL, NULL, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_read_range(log, 1, 0, 9, 0, &out, 2, &n, &eb), RD_ERR_CORRUPT);
    rd_target_log_close(log);
    // A header of another version.
    assert_int_equal(rd_lmdbx_env_open(p, &lo, &env, &eb), RD_OK);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    MDB_val hk = {6, (void *)(uintptr_t) "header"}, hv;
    assert_int_equal(mdb_get(txn, meta, &hk, &hv), 0);
    unsigned char h[40];
    assert_int_equal(hv.mv_size, 40);
    memcpy(h, hv.mv_data, 40);
    h[8] = 9; // version 9
    uint32_t crc = rd_crc32c(0, h, 36);
    memcpy(h + 36, &crc, 4);
    hv.mv_data = h;
    assert_int_equal(mdb_put(txn, meta, &hk, &hv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    rd_lmdbx_env_close(env);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_open(p, 0, NULL, &log, &eb), RD_ERR_VERSION);
    assert_non_null(strstr(eb.msg, "version 9"));
    assert_null(log);
    // A plain LMDB env that is not a target log.
    log_path(p, sizeof p, "plain");
    lo.create = 1;
    assert_int_equal(rd_lmdbx_env_open(p, &lo, &env, &eb), RD_OK);
    rd_lmdbx_env_close(env);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_open(p, 1, NULL, &log, &eb), RD_ERR_CORRUPT);
    assert_non_null(strstr(eb.msg, "not a target log"));
}

// Records of one job in the log, from a read range with no room (RD_ERR_RANGE says how many).
static uint64_t job_records(rd_target_log *log, uint64_t job) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    uint64_t s;
    float l;
    rd_target_out out = {&s, &l, NULL, NULL, NULL};
    size_t n = 0;
    int rc =
        rd_target_log_read_range(log, job, 0, UINT64_MAX, RD_TARGET_ANY_PASS, &out, 0, &n, &eb);
    assert_true(rc == RD_OK || rc == RD_ERR_RANGE);
    return n;
}

static void append_job(rd_target_log *log, uint64_t job, uint32_t passes, size_t n) {
    uint64_t *samples = malloc(n * sizeof *samples);
    float *logits = malloc(n * sizeof *logits);
    assert_non_null(samples);
    assert_non_null(logits);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    for (uint32_t pass = 0; pass < passes; pass++) {
        for (size_t i = 0; i < n; i++) {
            samples[i] = i;
            logits[i] = logit_of(job, i, pass);
        }
        rd_target_batch b = {n, job, pass, samples, logits, NULL, NULL};
        assert_int_equal(rd_target_log_append(log, &b, &eb), RD_OK);
    }
    free(samples);
    free(logits);
}

// A fresh teacher run drops its job's records of an earlier run: every record of that job goes
// (all passes), the jobs whose keys sort just before and after it keep theirs, the job's sampling
// record stays, a second drop finds nothing, and new appends land normally. A reader in another
// process never sees a part of the job's records (one write transaction).
static void test_drop_job(void **state) {
    (void)state;
    enum { N = 3000, ROUNDS = 20 };
    char p[512];
    log_path(p, sizeof p, "drop");
    rd_target_log_opts o = {0, 0, 1};
    rd_target_log *log = NULL, *ro = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_create(p, &o, &log, &eb), RD_OK);
    // Three jobs sorted by key: the middle one is dropped.
    uint64_t k[3] = {rd_target_job_key("a"), rd_target_job_key("b"), rd_target_job_key("c")};
    for (int i = 1; i < 3; i++)
        for (int j = i; j > 0 && k[j - 1] > k[j]; j--) {
            uint64_t t = k[j];
            k[j] = k[j - 1];
            k[j - 1] = t;
        }
    uint64_t dropped = 7;
    assert_int_equal(rd_target_log_drop_job(log, k[1], &dropped, &eb), RD_OK); // empty log
    assert_true(dropped == 0);
    for (int i = 0; i < 3; i++)
        append_job(log, k[i], 3, N);
    rd_target_job_info ji = {0.5, 1.0, 42, 1000, 0xabcdu, 1}, got;
    assert_int_equal(rd_target_log_put_job(log, k[1], &ji, &eb), RD_OK);
    assert_int_equal(rd_target_log_drop_job(log, k[1], &dropped, &eb), RD_OK);
    assert_true(dropped == 3 * N);
    assert_true(job_records(log, k[1]) == 0);
    assert_true(job_records(log, k[0]) == 3 * N && job_records(log, k[2]) == 3 * N);
    uint64_t count = 0;
    assert_int_equal(rd_target_log_count(log, &count, &eb), RD_OK);
    assert_true(count == 6 * N);
    float l = 0;
    assert_int_equal(rd_target_log_get(log, k[2], N - 1, 2, &l, NULL, NULL, &eb), RD_OK);
    assert_true(l == logit_of(k[2], N - 1, 2));
    assert_int_equal(rd_target_log_get(log, k[1], 0, 0, &l, NULL, NULL, &eb), RD_ERR_NOTFOUND);
    assert_int_equal(rd_target_log_get_job(log, k[1], &got, &eb), RD_OK);
    assert_true(got.salt == 42);
    assert_int_equal(rd_target_log_drop_job(log, k[1], NULL, &eb), RD_OK);
    append_job(log, k[1], 1, N); // the new run's records
    assert_true(job_records(log, k[1]) == N);
    // Read-only handles cannot drop.
    assert_int_equal(rd_target_log_open(p, 0, NULL, &ro, &eb), RD_OK);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_drop_job(ro, k[0], NULL, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "read-only"));
    assert_non_null(strstr(eb.msg, p));
    rd_target_log_close(ro);
    // A reader process counts the job's records while this one drops and re-appends them: it
    // must only ever see 0 or N (a drop split over several transactions would show between).
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        close(fds[1]);
        rd_target_log *r = NULL;
        rd_errbuf keb;
        rd_errbuf_clear(&keb);
        if (rd_target_log_open(p, 0, NULL, &r, &keb) != RD_OK)
            _exit(2);
        int bad = 0, done = 0;
        while (!done) {
            uint64_t n = job_records(r, k[1]);
            if (n != 0 && n != N)
                bad = 1;
            if (job_records(r, k[0]) != 3 * N)
                bad = 1;
            struct timeval tv = {0, 0};
            fd_set fs;
            FD_ZERO(&fs);
            FD_SET(fds[0], &fs);
            done = select(fds[0] + 1, &fs, NULL, NULL, &tv) > 0;
        }
        rd_target_log_close(r);
        _exit(bad);
    }
    close(fds[0]);
    for (int round = 0; round < ROUNDS; round++) {
        assert_int_equal(rd_target_log_drop_job(log, k[1], &dropped, &eb), RD_OK);
        assert_true(dropped == N);
        append_job(log, k[1], 1, N);
    }
    close(fds[1]); // EOF: the reader stops
    int st = 0;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rd_target_log_close(log);
}

// 0 if another process may take LMDB's exclusive lock of env `p` (byte 0 of lock.mdb): no live
// process has the env open. Run in a child: a process never conflicts with its own locks.
static int lock_taken_elsewhere(const char *p) {
    char lf[600];
    snprintf(lf, sizeof lf, "%s/lock.mdb", p);
    int fd = open(lf, O_RDWR);
    if (fd < 0)
        return -1;
    struct flock fl = {0};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    int rc = fcntl(fd, F_GETLK, &fl);
    close(fd);
    return rc != 0 ? -1 : fl.l_type != F_UNLCK;
}

static int child_sees_lock(const char *p) {
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        int taken = lock_taken_elsewhere(p);
        _exit(taken < 0 ? 2 : taken ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 2); // 2: lock.mdb could not be queried
    return WEXITSTATUS(st) == 0;
}

// One env per file and process (rd/lmdbx.h): a second handle of a log this process has open
// shares its env, so closing it leaves the first handle's lock on lock.mdb (a closed second
// env would drop it, and the next process to open the log would reset the lock table under the
// writer). A writable open of an env held read-only is refused; a forked child opens its own.
static void test_one_env_per_process(void **state) {
    (void)state;
    char p[512];
    log_path(p, sizeof p, "oneenv");
    rd_target_log *log = NULL, *ro = NULL, *ro2 = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_create(p, NULL, &log, &eb), RD_OK);
    append_job(log, 11, 1, 100);
    assert_true(child_sees_lock(p));
    assert_int_equal(rd_target_log_open(p, 0, NULL, &ro, &eb), RD_OK);
    assert_int_equal(rd_target_log_open(p, 0, NULL, &ro2, &eb), RD_OK);
    assert_true(job_records(ro, 11) == 100);
    rd_target_log_close(ro);
    assert_true(child_sees_lock(p)); // the writer's lock outlives the reader
    append_job(log, 12, 1, 50);
    assert_true(job_records(ro2, 12) == 50);
    rd_target_log_close(ro2);
    assert_true(child_sees_lock(p));
    append_job(log, 13, 1, 10);
    rd_target_log_close(log);
    assert_false(child_sees_lock(p)); // the last handle closed the env
    // The same through rd_lmdbx_env_open: one MDB_env, counted; read-only first, then writable.
    rd_lmdbx_opts lo = {.read_only = 1, .max_dbs = 4};
    MDB_env *a = NULL, *b = NULL, *w = NULL;
    assert_int_equal(rd_lmdbx_env_open(p, &lo, &a, &eb), RD_OK);
    assert_int_equal(rd_lmdbx_env_open(p, &lo, &b, &eb), RD_OK);
    assert_ptr_equal(a, b);
    rd_lmdbx_opts wo = {.max_dbs = 4};
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_lmdbx_env_open(p, &wo, &w, &eb), RD_ERR_EXISTS);
    assert_null(w);
    assert_non_null(strstr(eb.msg, p));
    assert_non_null(strstr(eb.msg, "read-only in this process"));
    rd_lmdbx_env_close(a);
    MDB_txn *txn = NULL;
    assert_int_equal(mdb_txn_begin(b, NULL, MDB_RDONLY, &txn), 0); // b is still open
    mdb_txn_abort(txn);
    assert_true(child_sees_lock(p));
    // A forked child does not use its parent's env: it opens (and closes) its own.
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        MDB_env *c = NULL;
        rd_errbuf ceb;
        rd_errbuf_clear(&ceb);
        int ok = rd_lmdbx_env_open(p, &lo, &c, &ceb) == RD_OK && c != b;
        rd_lmdbx_env_close(c);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rd_lmdbx_env_close(b);
    assert_false(child_sees_lock(p));
    // Writable once nothing holds it read-only.
    assert_int_equal(rd_lmdbx_env_open(p, &wo, &w, &eb), RD_OK);
    rd_lmdbx_env_close(w);
    rd_lmdbx_env_close(NULL);
}

// A child process that holds the writer lock of log `p` as `what` until its `quit` pipe closes
// (or it is killed). Returns its pid once it holds the lock.
static pid_t hold_lock(const char *p, const char *what, int quit[2]) {
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(quit), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        close(ready[0]);
        close(quit[1]);
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int fd = -1;
        if (rd_target_log_lock(p, what, &fd, &eb) != RD_OK) {
            fprintf(stderr, "holder: %s\n", eb.msg);
            _exit(1);
        }
        char c = 'x';
        if (write(ready[1], &c, 1) != 1)
            _exit(2);
        while (read(quit[0], &c, 1) > 0)
            ;
        rd_target_log_unlock(fd);
        _exit(0);
    }
    close(ready[1]);
    close(quit[0]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    return kid;
}

// One writing launch per log: while a launch (its rank 0, here a child process) holds the log's
// writer lock, another is refused at once with a message naming the log and the holder (host,
// pid, what); the teacher jobs of the holding launch still open-or-create the log in the locked
// folder concurrently (exactly one creates it); the lock dies with its process (SIGKILL: no stale
// lock), and of several launches racing for a free log exactly one wins.
static void test_writer_lock(void **state) {
    (void)state;
    char p[512];
    log_path(p, sizeof p, "locked/targets");
    int quit[2];
    pid_t holder = hold_lock(p, "launch A", quit);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int fd = -1;
    assert_int_equal(rd_target_log_lock(p, "launch B", &fd, &eb), RD_ERR_STATE);
    assert_int_equal(fd, -1);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld ", (long)holder);
    assert_non_null(strstr(eb.msg, p));
    assert_non_null(strstr(eb.msg, pid));
    assert_non_null(strstr(eb.msg, "launch A"));
    assert_non_null(strstr(eb.msg, "host "));
    // The holding launch's teacher jobs create and share the log in the locked folder.
    enum { KIDS = 4 };
    pid_t kid[KIDS];
    for (int k = 0; k < KIDS; k++) {
        kid[k] = fork();
        assert_true(kid[k] >= 0);
        if (kid[k] == 0) {
            rd_errbuf keb;
            rd_errbuf_clear(&keb);
            rd_target_log *log = NULL;
            rd_target_log_opts o = {0, 0, 1};
            int created = -1;
            if (rd_target_log_open_or_create(p, &o, &log, &created, &keb) != RD_OK) {
                fprintf(stderr, "teacher %d: %s\n", k, keb.msg);
                _exit(1);
            }
            char job[16];
            snprintf(job, sizeof job, "t%d", k);
            rd_target_job_info ji = {1.0, 1.0, (uint64_t)k, 100, 7, 1};
            int rc = rd_target_log_put_job(log, rd_target_job_key(job), &ji, &keb);
            rd_target_log_close(log);
            _exit(rc != RD_OK ? 2 : created == 1 ? 10 : 11);
        }
    }
    int creators = 0;
    for (int k = 0; k < KIDS; k++) {
        int st = 0;
        assert_int_equal(waitpid(kid[k], &st, 0), kid[k]);
        assert_true(WIFEXITED(st) && (WEXITSTATUS(st) == 10 || WEXITSTATUS(st) == 11));
        creators += WEXITSTATUS(st) == 10;
    }
    assert_int_equal(creators, 1);
    rd_target_log *log = NULL;
    assert_int_equal(rd_target_log_open(p, 0, NULL, &log, &eb), RD_OK);
    rd_target_job_info got;
    assert_int_equal(rd_target_log_get_job(log, rd_target_job_key("t3"), &got, &eb), RD_OK);
    rd_target_log_close(log);
    // The holder dies without releasing: the lock goes with it.
    assert_int_equal(kill(holder, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(holder, &st, 0), holder);
    close(quit[1]);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_lock(p, "launch B", &fd, &eb), RD_OK);
    assert_true(fd >= 0);
    rd_target_log_unlock(fd);
    // A creation undone removes the lock file with the log: nothing is left.
    rd_target_log_remove(p);
    struct stat sb;
    assert_int_equal(stat(p, &sb), -1);
    // Launches racing for a free log: exactly one holds it.
    enum { RACERS = 6 };
    log_path(p, sizeof p, "race_lock/targets");
    int go[2], done[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    pid_t r[RACERS];
    for (int k = 0; k < RACERS; k++) {
        r[k] = fork();
        assert_true(r[k] >= 0);
        if (r[k] == 0) {
            close(go[1]);
            close(done[1]);
            char c;
            if (read(go[0], &c, 1) != 0)
                _exit(3);
            rd_errbuf keb;
            rd_errbuf_clear(&keb);
            int kfd = -1;
            int rc = rd_target_log_lock(p, "racer", &kfd, &keb);
            while (read(done[0], &c, 1) > 0) // hold until every racer has tried
                ;
            _exit(rc == RD_OK ? 10 : rc == RD_ERR_STATE ? 11 : 1);
        }
    }
    close(go[0]);
    close(done[0]);
    close(go[1]);
    usleep(300 * 1000);
    close(done[1]);
    int winners = 0;
    for (int k = 0; k < RACERS; k++) {
        assert_int_equal(waitpid(r[k], &st, 0), r[k]);
        assert_true(WIFEXITED(st) && (WEXITSTATUS(st) == 10 || WEXITSTATUS(st) == 11));
        winners += WEXITSTATUS(st) == 10;
    }
    assert_int_equal(winners, 1);
    // A path that is a regular file is refused.
    char f[600];
    log_path(f, sizeof f, "lock_file_not_dir");
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_target_log_lock(f, "x", &fd, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "not a folder"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_lock),
        cmocka_unit_test(test_roundtrip_and_ranges),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_job_sampling_record),
        cmocka_unit_test(test_open_or_create),
        cmocka_unit_test(test_create_durable),
        cmocka_unit_test(test_drop_job),
        cmocka_unit_test(test_one_env_per_process),
    };
    return tmp_root_status(cmocka_run_group_tests(tests, setup_root, teardown_root), g_root);
}
