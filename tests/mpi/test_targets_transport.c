// test_targets_transport.c — the distillation target transport (rd/distill.h) between a teacher
// job and a student job in one world.
//
// Usage: mpiexec -n R test_targets_transport T   (ranks [0, T) teach, [T, R) are students)
//        mpiexec -n 2 test_targets_transport bad (crafted malformed messages, see below)
//        mpiexec -n 4 test_targets_transport drift (record orders drift apart, see below)
//        (then a phase that takes no targets: run_skip_*, a pair resumed inside a
//        phase: run_resume_*, and a student slower than its teacher: run_slow_*, below)
// Over 5 phases (stream windows) with a random number of samples each, the teachers emit the
// targets of their half of each window in shuffled order and random batch sizes, with a tiny
// message batch (7) and window (max_in_flight 2) so that back-pressure is constant; students
// ask for their samples (owner = hash % S) in another shuffled order, random get sizes, and
// sleep now and then (slow receivers). Checked on every student, against what the teachers
// deterministically emitted:
//   - every emitted target reaches its owner exactly once with its logit and teacher version;
//     samples the teachers skip are missing; nothing else is;
//   - emits carry 1 to 12 targets (a teacher "step" covers VERSION_SPAN consecutive samples, so
//     each teacher has runs of one version), and every size from 1 to 12 occurs;
//   - window 1: one target is emitted twice, the second time with another logit -> one
//     duplicate, the first value kept (its owner asks for it only after the window completed,
//     so the second copy has arrived by then);
//   - window 2: students never ask for some samples -> unused;
//   - window 4: teachers hold back some targets until every student has given up on them
//     (wait 0, then a "go" message) -> exactly those are late (and missing);
//   - counters: sent (teachers) == received + late + duplicates (students), joined + unused ==
//     received, and messages/bytes agree on both sides;
//   - malformed messages (short, bad magic, oversized) sent to student 0 and a bad credit sent to
//     teacher 0 are rejected with RD_ERR_PROTO and a message naming the defect;
//   - every teacher also appends to one shared target log; after close, every student replays
//     the log through the same get(): identical targets for every sample the live run joined,
//     and the held-back ones are present in the log.
// No hang: senders and receivers use timeouts; errors are summed with MPI_Allreduce, rank 0
// reports.
#include "rd/alloc.h"
#include "rd/comm.h"
#include "rd/distill.h"
#include "rd/hash.h"
#include "rd/rng.h"
#include "rd/targets.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    WINDOWS = 5,
    BATCH = 7,
    IN_FLIGHT = 2,
    TAG_GO = 200,
    DUP_WINDOW = 1,
    UNUSED_WINDOW = 2,
    LATE_WINDOW = 4,
    VERSION_SPAN = 36, // consecutive sample indices k per teacher "step" (version)
    MAX_EMIT = 12      // emit_all's largest emit
};

static int rank, n_errors;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "[rank %d] %s:%d: ", rank, __FILE__, __LINE__);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            n_errors++;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct owner_ctx {
    int n_students;
} owner_ctx;

static int owner_of(uint64_t sample, void *ctx) {
    const owner_ctx *o = ctx;
    return (int)(rd_mix64(sample ^ 0xabcdefULL) % (uint64_t)o->n_students);
}

// The schedule every rank derives identically.
static int window_size(int w) {
    rd_rng r;
    rd_rng_split(&r, 99, (uint64_t)w);
    return 200 + (int)rd_rng_below(&r, 400);
}
static uint64_t sample_id(int w, int k) {
    return (uint64_t)w * 1000000ULL + (uint64_t)k * 7 + 1;
}
static int skipped(int k) { // never emitted: missing
    return k % 11 == 0;
}
static int held_back(int w, int k) { // emitted after the students gave up: late
    return w == LATE_WINDOW && k % 13 == 5 && !skipped(k);
}
static int not_asked(int w, int k) { // students never ask: unused
    return w == UNUSED_WINDOW && k % 17 == 3 && !skipped(k);
}
static int teacher_of(int k, int n_teachers) {
    return k % n_teachers;
}
static float logit_of(uint64_t s) {
    return (float)((double)(rd_mix64(s) >> 40) / (double)(1 << 20) - 8.0);
}
// The teacher "step" that emitted s (deterministic): VERSION_SPAN consecutive indices k of a
// window share one, so that each teacher has runs of samples of one version and emit_all's emits
// carry several targets (one version per emit).
static uint64_t version_of(uint64_t s) {
    uint64_t w = s / 1000000ULL, k = (s % 1000000ULL - 1) / 7;
    return w * 1000ULL + k / VERSION_SPAN;
}
static float dup_logit(uint64_t s) { // the second copy of the duplicated target: another value
    return logit_of(s) + 1.0f;
}
// The duplicated target of DUP_WINDOW: teacher 0's first sample there (every rank derives it).
static uint64_t dup_sample(int n_teachers) {
    for (int k = 0;; k++)
        if (teacher_of(k, n_teachers) == 0 && !skipped(k) && !held_back(DUP_WINDOW, k) &&
            !not_asked(DUP_WINDOW, k))
            return sample_id(DUP_WINDOW, k);
}

static uint64_t emit_hist[MAX_EMIT + 1]; // emit_all: emits by number of targets

static void shuffle(uint64_t *a, size_t n, rd_rng *r) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rd_rng_below(r, i);
        uint64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static void sleep_us(long us) {
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

// Emit `n` targets in random batch sizes, one version per call (the samples of one call are
// grouped by version so that each call's single version is right).
static void emit_all(rd_target_sender *s, const uint64_t *samples, size_t n, rd_rng *r) {
    size_t i = 0;
    while (i < n) {
        size_t m = 1 + (size_t)rd_rng_below(r, MAX_EMIT);
        if (m > n - i)
            m = n - i;
        // Cut the batch where the version changes.
        uint64_t v = version_of(samples[i]);
        size_t k = 1;
        while (k < m && version_of(samples[i + k]) == v)
            k++;
        float lg[MAX_EMIT];
        for (size_t j = 0; j < k; j++)
            lg[j] = logit_of(samples[i + j]);
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int rc = rd_target_sender_emit(s, k, samples + i, lg, v, &eb);
        emit_hist[k]++;
        CHECK(rc == RD_OK, "emit: %s", eb.msg);
        if (rd_rng_below(r, 5) == 0) {
            rc = rd_target_sender_flush(s, &eb);
            CHECK(rc == RD_OK, "flush: %s", eb.msg);
        }
        i += k;
    }
}

// Sort samples by version so emit_all's groups are long (teachers emit in "step" order).
static int cmp_version(const void *a, const void *b) {
    uint64_t va = version_of(*(const uint64_t *)a), vb = version_of(*(const uint64_t *)b);
    return va < vb ? -1 : va > vb;
}

static void run_teacher(int t, int n_teachers, int n_students, const char *log_path) {
    owner_ctx oc = {n_students};
    int students[64];
    for (int d = 0; d < n_students; d++)
        students[d] = n_teachers + d;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_log *log = NULL;
    int rc = rd_target_log_open(log_path, 1, NULL, &log, &eb);
    CHECK(rc == RD_OK, "log open: %s", eb.msg);
    rd_target_sender_opts so = {
        .comm = MPI_COMM_WORLD,
        .n_students = n_students,
        .students = students,
        .sender_index = t,
        .owner = owner_of,
        .owner_ctx = &oc,
        .max_in_flight = IN_FLIGHT,
        .batch = BATCH,
        .poll_us_max = 200,
        .timeout_ms = 60000,
        .log = log,
        .job = rd_target_job_key("teacher"),
    };
    rd_target_sender *s = NULL;
    rc = rd_target_sender_create(&so, &s, &eb);
    CHECK(rc == RD_OK, "sender create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    // Bad input is rejected before anything is sent.
    uint64_t one = 5;
    float nan_logit = NAN;
    CHECK(rd_target_sender_emit(s, 1, &one, &nan_logit, 0, NULL) == RD_ERR_STATE, "emit outside");
    rd_rng r;
    rd_rng_split(&r, 1234, (uint64_t)rank);
    uint64_t *buf = rd_xmalloc(1000 * sizeof *buf);
    uint64_t expect_sent = 0;
    for (int w = 0; w < WINDOWS; w++) {
        rc = rd_target_sender_begin(s, 0, w, &eb);
        CHECK(rc == RD_OK, "begin: %s", eb.msg);
        rd_errbuf_clear(&eb);
        CHECK(rd_target_sender_emit(s, 1, &one, &nan_logit, 0, &eb) == RD_ERR_ARG &&
                  strstr(eb.msg, "not finite"),
              "non-finite logit accepted: %s", eb.msg);
        rd_errbuf_clear(&eb);
        int nw = window_size(w);
        size_t n = 0, nh = 0;
        uint64_t held[1000];
        for (int k = 0; k < nw; k++) {
            if (teacher_of(k, n_teachers) != t || skipped(k))
                continue;
            if (held_back(w, k))
                held[nh++] = sample_id(w, k);
            else
                buf[n++] = sample_id(w, k);
        }
        shuffle(buf, n, &r);
        qsort(buf, n, sizeof *buf, cmp_version);
        emit_all(s, buf, n, &r);
        expect_sent += n;
        if (w == DUP_WINDOW && t == 0) {
            // The same target again, with another value: the students keep the first one (the
            // log keeps both, and its replay the last one).
            uint64_t dup = dup_sample(n_teachers);
            float z = dup_logit(dup);
            rc = rd_target_sender_emit(s, 1, &dup, &z, version_of(dup), &eb);
            CHECK(rc == RD_OK, "dup emit: %s", eb.msg);
            expect_sent++;
        }
        if (w == LATE_WINDOW) {
            rc = rd_target_sender_flush(s, &eb);
            CHECK(rc == RD_OK, "flush: %s", eb.msg);
            // Wait for "go" from every student (they have given up on the held-back samples).
            for (int d = 0; d < n_students; d++) {
                int flag = 0;
                rd_backoff bo;
                rd_backoff_reset(&bo, 500);
                double t0 = MPI_Wtime();
                while (!flag && MPI_Wtime() - t0 < 60) {
                    RD_MPI_CHECK(
                        MPI_Iprobe(students[d], TAG_GO, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
                    if (!flag) {
                        rd_target_sender_progress(s, NULL);
                        rd_backoff_wait(&bo);
                    }
                }
                CHECK(flag, "no go from student %d", d);
                if (flag) {
                    int dummy;
                    RD_MPI_CHECK(MPI_Recv(&dummy, 1, MPI_INT, students[d], TAG_GO, MPI_COMM_WORLD,
                                          MPI_STATUS_IGNORE));
                }
            }
            qsort(held, nh, sizeof *held, cmp_version);
            emit_all(s, held, nh, &r);
            expect_sent += nh;
        }
        rc = rd_target_sender_end(s, &eb);
        CHECK(rc == RD_OK, "end: %s", eb.msg);
    }
    // Malformed messages to student 0 (teacher 0 only): short, bad magic, oversized.
    if (t == 0) {
        // After student 0 finished its windows (it says so with a go message).
        int flag = 0;
        rd_backoff gb;
        rd_backoff_reset(&gb, 500);
        double tg = MPI_Wtime();
        while (!flag && MPI_Wtime() - tg < 60) {
            RD_MPI_CHECK(MPI_Iprobe(students[0], TAG_GO, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
            if (!flag) {
                rd_target_sender_progress(s, NULL);
                rd_backoff_wait(&gb);
            }
        }
        CHECK(flag, "student 0 never finished its windows");
        int dummy;
        if (flag)
            RD_MPI_CHECK(MPI_Recv(&dummy, 1, MPI_INT, students[0], TAG_GO, MPI_COMM_WORLD,
                                  MPI_STATUS_IGNORE));
        unsigned char junk[4000];
        memset(junk, 0x5a, sizeof junk);
        RD_MPI_CHECK(
            MPI_Send(junk, 10, MPI_BYTE, students[0], RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
        RD_MPI_CHECK(
            MPI_Send(junk, 40 + 20, MPI_BYTE, students[0], RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
        RD_MPI_CHECK(
            MPI_Send(junk, 4000, MPI_BYTE, students[0], RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
        // A bad credit arrives from student 0 (sent before its close): rejected.
        rd_backoff bo;
        rd_backoff_reset(&bo, 500);
        double t0 = MPI_Wtime();
        rd_target_stats st;
        int got = 0;
        do {
            rd_errbuf_clear(&eb);
            if (rd_target_sender_progress(s, &eb) == RD_ERR_PROTO) {
                CHECK(strstr(eb.msg, "credit") != NULL, "bad credit message: %s", eb.msg);
                got = 1;
            }
            rd_target_sender_stats(s, &st);
            if (!got)
                rd_backoff_wait(&bo);
        } while (!got && MPI_Wtime() - t0 < 60);
        CHECK(got && st.rejected == 1, "bad credit not rejected (rejected %llu)",
              (unsigned long long)st.rejected);
    }
    rd_errbuf_clear(&eb);
    rc = rd_target_sender_close(s, &eb);
    CHECK(rc == RD_OK, "close: %s", eb.msg);
    rd_target_stats st;
    rd_target_sender_stats(s, &st);
    CHECK(st.sent == expect_sent && st.logged == expect_sent, "sent %llu logged %llu expected %llu",
          (unsigned long long)st.sent, (unsigned long long)st.logged,
          (unsigned long long)expect_sent);
    CHECK(st.credits > 0, "no credits");
    // Emits of every size from 1 to MAX_EMIT happened: a target lost from a large emit (or from
    // any position in one) shows up as missing on its student.
    for (int k = 1; k <= MAX_EMIT; k++)
        CHECK(emit_hist[k] > 0, "no emit of %d targets (emit sizes: 1:%llu 4:%llu 12:%llu)", k,
              (unsigned long long)emit_hist[1], (unsigned long long)emit_hist[4],
              (unsigned long long)emit_hist[12]);
    // Totals for the cross-check: sent, messages, bytes.
    uint64_t tot[3] = {st.sent, st.messages, st.bytes}, dummy[3] = {0, 0, 0};
    RD_MPI_CHECK(MPI_Allreduce(tot, dummy, 3, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD));
    rd_target_sender_destroy(s);
    rd_target_log_close(log);
    rd_free(buf);
}

typedef struct got {
    float z;
    uint64_t v;
    uint8_t has;
} got;

static void run_student(int d, int n_teachers, int n_students, const char *log_path) {
    owner_ctx oc = {n_students};
    int teachers[64];
    for (int t = 0; t < n_teachers; t++)
        teachers[t] = t;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_recv_opts ro = {
        .comm = MPI_COMM_WORLD,
        .n_teachers = n_teachers,
        .teachers = teachers,
        .student_index = d,
        .owner = owner_of,
        .owner_ctx = &oc,
        .max_in_flight = IN_FLIGHT,
        .batch = BATCH,
        .capacity = 0,
        .poll_us_max = 200,
        .wait_ms = 30000,
        .timeout_ms = 60000,
    };
    rd_target_recv *r = NULL;
    int rc = rd_target_recv_create(&ro, &r, &eb);
    CHECK(rc == RD_OK, "recv create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rd_rng rng;
    rd_rng_split(&rng, 777, (uint64_t)rank);
    // Per window: my samples, in my order, and what live get() returned.
    uint64_t *mine[WINDOWS];
    got *res[WINDOWS];
    size_t n_mine[WINDOWS];
    uint64_t exp_joined = 0, exp_missing = 0, exp_late = 0, exp_unused = 0, exp_dup = 0;
    for (int w = 0; w < WINDOWS; w++) {
        int nw = window_size(w);
        mine[w] = rd_xmalloc((size_t)nw * sizeof *mine[w]);
        res[w] = rd_xcalloc((size_t)nw, sizeof *res[w]);
        n_mine[w] = 0;
        for (int k = 0; k < nw; k++) {
            uint64_t s = sample_id(w, k);
            if (owner_of(s, &oc) != d)
                continue;
            if (not_asked(w, k)) {
                exp_unused++;
                continue;
            }
            mine[w][n_mine[w]++] = s;
            if (skipped(k) || held_back(w, k))
                exp_missing++;
            else
                exp_joined++;
            if (held_back(w, k))
                exp_late++;
        }
        shuffle(mine[w], n_mine[w], &rng);
    }
    // The duplicated target: its owner asks for it last, after the window completed, so that
    // both copies have arrived and "the first value kept" is what the check below sees.
    (void)exp_dup;
    uint64_t dup = dup_sample(n_teachers);
    size_t n_dup_deferred = 0;
    for (size_t k = 0; k < n_mine[DUP_WINDOW]; k++)
        if (mine[DUP_WINDOW][k] == dup) {
            mine[DUP_WINDOW][k] = mine[DUP_WINDOW][n_mine[DUP_WINDOW] - 1];
            mine[DUP_WINDOW][n_mine[DUP_WINDOW] - 1] = dup;
            n_dup_deferred = 1;
        }
    for (int w = 0; w < WINDOWS; w++) {
        rc = rd_target_recv_begin(r, 0, w, &eb);
        CHECK(rc == RD_OK, "begin: %s", eb.msg);
        size_t i = 0;
        if (w == LATE_WINDOW) {
            // Ask for the held-back samples first, without waiting: they cannot be here.
            rd_target_recv_set_wait(r, 0);
            size_t nh = 0;
            for (size_t k = 0; k < n_mine[w]; k++) {
                uint64_t s = mine[w][k];
                int kk = (int)((s - sample_id(w, 0)) / 7);
                if (held_back(w, kk)) { // move to the front
                    mine[w][k] = mine[w][nh];
                    mine[w][nh++] = s;
                }
            }
            float z[1000];
            uint64_t v[1000];
            uint8_t has[1000];
            rc = rd_target_recv_get(r, nh, mine[w], z, v, has, &eb);
            CHECK(rc == RD_OK, "get: %s", eb.msg);
            for (size_t k = 0; k < nh; k++) {
                CHECK(!has[k], "held-back sample %llu already here",
                      (unsigned long long)mine[w][k]);
                res[w][k] = (got){z[k], v[k], has[k]};
            }
            i = nh;
            rd_target_recv_set_wait(r, 30000);
            for (int t = 0; t < n_teachers; t++) {
                int go = 1;
                RD_MPI_CHECK(MPI_Send(&go, 1, MPI_INT, teachers[t], TAG_GO, MPI_COMM_WORLD));
            }
        }
        size_t n_now = n_mine[w] - (w == DUP_WINDOW ? n_dup_deferred : 0);
        while (i < n_now) {
            size_t m = 1 + (size_t)rd_rng_below(&rng, 20);
            if (m > n_now - i)
                m = n_now - i;
            float z[32];
            uint64_t v[32];
            uint8_t has[32];
            rc = rd_target_recv_get(r, m, mine[w] + i, z, v, has, &eb);
            CHECK(rc == RD_OK, "get: %s", eb.msg);
            for (size_t k = 0; k < m; k++)
                res[w][i + k] = (got){z[k], v[k], has[k]};
            i += m;
            if (rd_rng_below(&rng, 4) == 0)
                sleep_us(200 + (long)rd_rng_below(&rng, 1500)); // slow receiver
        }
        // Wait for every teacher's end of the window, so that the counts below do not depend on
        // timing (a target never asked for is unused only if it came before end()).
        {
            rd_backoff bo;
            rd_backoff_reset(&bo, 500);
            double t0 = MPI_Wtime();
            while (!rd_target_recv_phase_complete(r) && MPI_Wtime() - t0 < 60) {
                rc = rd_target_recv_progress(r, &eb);
                CHECK(rc == RD_OK, "progress: %s", eb.msg);
                rd_backoff_wait(&bo);
            }
            CHECK(rd_target_recv_phase_complete(r), "window %d never completed", w);
        }
        if (w == DUP_WINDOW && n_dup_deferred) {
            size_t k = n_mine[w] - 1;
            float z;
            uint64_t v;
            uint8_t has;
            rc = rd_target_recv_get(r, 1, &mine[w][k], &z, &v, &has, &eb);
            CHECK(rc == RD_OK, "get: %s", eb.msg);
            res[w][k] = (got){z, v, has};
            CHECK(has && z == logit_of(dup) && z != dup_logit(dup),
                  "duplicated sample %llu: has %d logit %g, expected the first value %g (the "
                  "second was %g)",
                  (unsigned long long)dup, has, (double)z, (double)logit_of(dup),
                  (double)dup_logit(dup));
        }
        // Check this window.
        for (size_t k = 0; k < n_mine[w]; k++) {
            uint64_t s = mine[w][k];
            int kk = (int)((s - sample_id(w, 0)) / 7);
            int expect = !skipped(kk) && !held_back(w, kk);
            CHECK(res[w][k].has == expect, "window %d sample %llu: has_target %d, expected %d", w,
                  (unsigned long long)s, res[w][k].has, expect);
            if (expect && res[w][k].has)
                CHECK(res[w][k].z == logit_of(s) && res[w][k].v == version_of(s),
                      "window %d sample %llu: logit %g version %llu, expected %g %llu", w,
                      (unsigned long long)s, (double)res[w][k].z, (unsigned long long)res[w][k].v,
                      (double)logit_of(s), (unsigned long long)version_of(s));
        }
        rc = rd_target_recv_end(r, &eb);
        CHECK(rc == RD_OK, "end: %s", eb.msg);
    }
    // Malformed messages (student 0): three rejections, each named.
    if (d == 0) {
        int ready = 1;
        RD_MPI_CHECK(MPI_Send(&ready, 1, MPI_INT, teachers[0], TAG_GO, MPI_COMM_WORLD));
        rd_target_stats st;
        double t0 = MPI_Wtime();
        int seen_short = 0, seen_magic = 0, seen_big = 0;
        rd_backoff bo;
        rd_backoff_reset(&bo, 500);
        do {
            rd_errbuf_clear(&eb);
            if (rd_target_recv_progress(r, &eb) == RD_ERR_PROTO) {
                seen_short |= strstr(eb.msg, "shorter than a header") != NULL;
                seen_magic |= strstr(eb.msg, "bad magic") != NULL;
                seen_big |= strstr(eb.msg, "exceeds") != NULL;
            }
            rd_target_recv_stats(r, &st);
            if (st.rejected < 3)
                rd_backoff_wait(&bo);
        } while (st.rejected < 3 && MPI_Wtime() - t0 < 60);
        CHECK(st.rejected == 3 && seen_short && seen_magic && seen_big,
              "malformed: rejected %llu short %d magic %d big %d", (unsigned long long)st.rejected,
              seen_short, seen_magic, seen_big);
        // A bad credit to teacher 0.
        unsigned char junk[16];
        memset(junk, 0x11, sizeof junk);
        RD_MPI_CHECK(
            MPI_Send(junk, 16, MPI_BYTE, teachers[0], RD_TAG_DISTILL_CREDIT, MPI_COMM_WORLD));
    }
    rd_errbuf_clear(&eb);
    rc = rd_target_recv_close(r, &eb);
    CHECK(rc == RD_OK, "close: %s", eb.msg);
    rd_target_stats st;
    rd_target_recv_stats(r, &st);
    CHECK(st.joined == exp_joined, "joined %llu expected %llu", (unsigned long long)st.joined,
          (unsigned long long)exp_joined);
    CHECK(st.missing == exp_missing, "missing %llu expected %llu", (unsigned long long)st.missing,
          (unsigned long long)exp_missing);
    CHECK(st.late == exp_late, "late %llu expected %llu", (unsigned long long)st.late,
          (unsigned long long)exp_late);
    CHECK(st.unused == exp_unused, "unused %llu expected %llu", (unsigned long long)st.unused,
          (unsigned long long)exp_unused);
    CHECK(st.joined + st.unused == st.received, "joined %llu + unused %llu != received %llu",
          (unsigned long long)st.joined, (unsigned long long)st.unused,
          (unsigned long long)st.received);
    CHECK(st.rejected == (d == 0 ? 3u : 0u), "rejected %llu", (unsigned long long)st.rejected);
    // Cross-check with the teachers: sent == received + late + duplicates; messages and bytes
    // (the three malformed ones excluded) agree.
    uint64_t junk_msgs = d == 0 ? 3 : 0, junk_bytes = d == 0 ? 10 + 60 + 4000 : 0;
    uint64_t mine_tot[3] = {st.received + st.late + st.duplicates, st.messages - junk_msgs,
                            st.bytes - junk_bytes},
             sum_students[3] = {0, 0, 0};
    uint64_t zero[3] = {0, 0, 0}, sum_teachers[3];
    (void)zero;
    // The teachers contribute their (sent, messages, bytes) to the same reduction.
    uint64_t contrib[3] = {0, 0, 0};
    RD_MPI_CHECK(MPI_Allreduce(contrib, sum_teachers, 3, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD));
    uint64_t dups = st.duplicates, sum_dups = 0;
    MPI_Comm students_comm;
    RD_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, 1, rank, &students_comm));
    RD_MPI_CHECK(MPI_Allreduce(mine_tot, sum_students, 3, MPI_UINT64_T, MPI_SUM, students_comm));
    RD_MPI_CHECK(MPI_Allreduce(&dups, &sum_dups, 1, MPI_UINT64_T, MPI_SUM, students_comm));
    RD_MPI_CHECK(MPI_Comm_free(&students_comm));
    for (int k = 0; k < 3; k++)
        CHECK(sum_students[k] == sum_teachers[k], "total %d: students %llu teachers %llu", k,
              (unsigned long long)sum_students[k], (unsigned long long)sum_teachers[k]);
    CHECK(sum_dups == 1, "duplicates over all students %llu, expected 1",
          (unsigned long long)sum_dups);
    rd_target_recv_destroy(r);

    // Replay from the log through the same get(): the same answers for every joined sample, and
    // the held-back (late) targets are in the log.
    rd_target_log *log = NULL;
    rc = rd_target_log_open(log_path, 0, NULL, &log, &eb);
    CHECK(rc == RD_OK, "log open: %s", eb.msg);
    rd_target_recv_opts rr = {.wait_ms = 0, .replay = log, .job = rd_target_job_key("teacher")};
    rc = rd_target_recv_create(&rr, &r, &eb);
    CHECK(rc == RD_OK, "replay create: %s", eb.msg);
    uint64_t replay_has = 0;
    for (int w = 0; w < WINDOWS && rc == RD_OK; w++) {
        CHECK(rd_target_recv_begin(r, 0, w, &eb) == RD_OK, "replay begin: %s", eb.msg);
        for (size_t k = 0; k < n_mine[w]; k++) {
            float z;
            uint64_t v;
            uint8_t has;
            CHECK(rd_target_recv_get(r, 1, &mine[w][k], &z, &v, &has, &eb) == RD_OK,
                  "replay get: %s", eb.msg);
            uint64_t s = mine[w][k];
            int kk = (int)((s - sample_id(w, 0)) / 7);
            replay_has += has;
            CHECK(has == !skipped(kk), "replay sample %llu has %d", (unsigned long long)s, has);
            if (s == dup) // the log keeps both copies; its replay answers with the last one
                CHECK(has && z == dup_logit(s) && v == version_of(s),
                      "replay of the duplicated sample %llu: logit %g, expected %g",
                      (unsigned long long)s, (double)z, (double)dup_logit(s));
            else if (res[w][k].has)
                CHECK(has && z == res[w][k].z && v == res[w][k].v,
                      "replay sample %llu differs from live", (unsigned long long)s);
        }
        CHECK(rd_target_recv_end(r, &eb) == RD_OK, "replay end: %s", eb.msg);
    }
    rd_target_recv_stats(r, &st);
    CHECK(st.replayed == replay_has && st.replayed == exp_joined + exp_late,
          "replayed %llu expected %llu", (unsigned long long)st.replayed,
          (unsigned long long)(exp_joined + exp_late));
    rd_target_recv_destroy(r);
    rd_target_log_close(log);
    for (int w = 0; w < WINDOWS; w++) {
        rd_free(mine[w]);
        rd_free(res[w]);
    }
}

// ---------------------------------------------------------------------------------------------
// Mode "bad" (2 ranks): rank 0 is a hand-written fake teacher that sends crafted messages; rank 1
// is a receiver that must reject each with RD_ERR_PROTO and a message naming the defect, keep the
// stream usable (a valid target after them is joined), and close cleanly on the FIN.

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

// Build a message: kind, sender, count (header), phase, seq, then n targets (n may differ from
// count to forge a size mismatch).
static size_t craft(unsigned char *buf,
                    int kind,
                    uint32_t sender,
                    uint32_t count,
                    uint64_t phase,
                    uint64_t seq,
                    size_t n,
                    const uint64_t *samples,
                    const float *logits) {
    put32(buf, 0x47544452u);
    buf[4] = 1;
    buf[5] = 0;
    buf[6] = (unsigned char)kind;
    buf[7] = 0;
    put32(buf + 8, sender);
    put32(buf + 12, count);
    put64(buf + 16, phase);
    put32(buf + 24, 0);
    put32(buf + 28, 0);
    put64(buf + 32, seq);
    unsigned char *q = buf + 40;
    for (size_t i = 0; i < n; i++)
        put64(q + 8 * i, samples[i]);
    q += 8 * n;
    for (size_t i = 0; i < n; i++)
        put64(q + 8 * i, 1000 + i);
    q += 8 * n;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &logits[i], 4);
        put32(q + 4 * i, u);
    }
    return rd_target_msg_bytes(n);
}

// Two students in the owner rule; the receiver is student 0. Samples owned by 0 and by 1:
static uint64_t owned_by(int d) {
    owner_ctx oc = {2};
    for (uint64_t s = 1;; s++)
        if (owner_of(s, &oc) == d)
            return s;
}

enum { N_BAD = 8, N_CREDITED = 9 };

static void drain_credits(int from, uint64_t want, const char *part) {
    uint64_t credited = 0;
    double t0 = MPI_Wtime();
    while (credited < want && MPI_Wtime() - t0 < 60) {
        int flag = 0;
        RD_MPI_CHECK(
            MPI_Iprobe(from, RD_TAG_DISTILL_CREDIT, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
        if (!flag) {
            sleep_us(200);
            continue;
        }
        unsigned char c[16];
        RD_MPI_CHECK(MPI_Recv(c, 16, MPI_BYTE, from, RD_TAG_DISTILL_CREDIT, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE));
        credited += (uint64_t)c[8] | (uint64_t)c[9] << 8;
    }
    CHECK(credited == want, "%s: %llu messages credited, expected %llu", part,
          (unsigned long long)credited, (unsigned long long)want);
}

static void send_crafted(const unsigned char *buf, size_t len) {
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
}

// A receiver of teacher rank 0 as student 0 of two, in phase 0 (pass 0, window 0).
static rd_target_recv *bad_receiver(owner_ctx *oc) {
    int teachers[1] = {0};
    rd_target_recv_opts ro = {.comm = MPI_COMM_WORLD,
                              .n_teachers = 1,
                              .teachers = teachers,
                              .student_index = 0,
                              .owner = owner_of,
                              .owner_ctx = oc,
                              .max_in_flight = 4,
                              .batch = 4,
                              .wait_ms = 30000,
                              .timeout_ms = 60000};
    rd_target_recv *r = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    CHECK(rd_target_recv_create(&ro, &r, &eb) == RD_OK, "create: %s", eb.msg);
    if (r)
        CHECK(rd_target_recv_begin(r, 0, 0, &eb) == RD_OK, "begin: %s", eb.msg);
    return r;
}

static void run_fake_teacher(void) {
    unsigned char buf[512];
    uint64_t mine = owned_by(0), other = owned_by(1), two[2] = {mine, mine + 0};
    float ok[2] = {0.5f, 1.5f}, withnan[2] = {0.5f, NAN};
    two[1] = owned_by(0);
    for (uint64_t s = two[0] + 1;; s++) { // a second sample of student 0
        owner_ctx oc = {2};
        if (owner_of(s, &oc) == 0) {
            two[1] = s;
            break;
        }
    }
    size_t len;
    // a. non-finite logit (credited, seq 0)
    len = craft(buf, 1, 0, 2, 0, 0, 2, two, withnan);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // b. a sample of another student (seq 1)
    len = craft(buf, 1, 0, 1, 0, 1, 1, &other, ok);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // c. count 3 with the bytes of 2 (seq 2)
    len = craft(buf, 1, 0, 3, 0, 2, 2, two, ok);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // d. a gap in the sequence (seq 7; not credited)
    len = craft(buf, 1, 0, 1, 0, 7, 1, &mine, ok);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // e. wrong sender index (not credited)
    len = craft(buf, 1, 1, 1, 0, 3, 1, &mine, ok);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // f. unknown kind (seq 3)
    len = craft(buf, 9, 0, 0, 0, 3, 0, NULL, NULL);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // g. EOS of the wrong phase (seq 4)
    len = craft(buf, 2, 0, 0, 1, 4, 0, NULL, NULL);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // h. the right EOS of phase 0 (seq 5)
    len = craft(buf, 2, 0, 0, 0, 5, 0, NULL, NULL);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // i. data of phase 0 after its EOS (seq 6)
    len = craft(buf, 1, 0, 1, 0, 6, 1, &mine, ok);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // j. a valid target of phase 1 (seq 7), k. EOS of phase 1 (seq 8), l. FIN (seq 9)
    len = craft(buf, 1, 0, 1, 1, 7, 1, &mine, ok);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    len = craft(buf, 2, 0, 0, 1, 8, 0, NULL, NULL);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    len = craft(buf, 3, 0, 0, 2, 9, 0, NULL, NULL);
    RD_MPI_CHECK(MPI_Send(buf, (int)len, MPI_BYTE, 1, RD_TAG_DISTILL_TARGET, MPI_COMM_WORLD));
    // Collect the credits: every message of the stream except d and e, i.e. 10.
    drain_credits(1, N_CREDITED + 1, "fake teacher");
}

static void run_bad_receiver(void) {
    owner_ctx oc = {2};
    rd_target_recv *r = bad_receiver(&oc);
    if (!r)
        return;
    rd_errbuf eb;
    const char *expect[N_BAD] = {"non-finite",         "owned by student 1", "does not match",
                                 "lost or duplicated", "claims sender 1",    "unknown message kind",
                                 "ended phase 1",      "after ending it"};
    int seen = 0;
    double t0 = MPI_Wtime();
    while (seen < N_BAD && MPI_Wtime() - t0 < 60) {
        rd_errbuf_clear(&eb);
        int rc = rd_target_recv_progress(r, &eb);
        if (rc == RD_ERR_PROTO) {
            CHECK(strstr(eb.msg, expect[seen]) != NULL,
                  "malformed message %d: expected '%s' in '%s'", seen, expect[seen], eb.msg);
            seen++;
        } else {
            CHECK(rc == RD_OK, "progress: %d %s", rc, eb.msg);
            sleep_us(200);
        }
    }
    CHECK(seen == N_BAD, "%d malformed messages reported, expected %d", seen, N_BAD);
    CHECK(rd_target_recv_phase_complete(r), "phase 0 not complete after its EOS");
    CHECK(rd_target_recv_end(r, &eb) == RD_OK, "end: %s", eb.msg);
    CHECK(rd_target_recv_begin(r, 0, 0, &eb) == RD_OK, "begin: %s", eb.msg);
    uint64_t mine = owned_by(0);
    float z = 0;
    uint8_t has = 0;
    rd_errbuf_clear(&eb);
    CHECK(rd_target_recv_get(r, 1, &mine, &z, NULL, &has, &eb) == RD_OK, "get: %s", eb.msg);
    CHECK(has && z == 0.5f, "valid target after the malformed ones: has %d z %g", has, (double)z);
    CHECK(rd_target_recv_end(r, &eb) == RD_OK, "end: %s", eb.msg);
    rd_errbuf_clear(&eb);
    CHECK(rd_target_recv_close(r, &eb) == RD_OK, "close: %s", eb.msg);
    rd_target_stats st;
    rd_target_recv_stats(r, &st);
    CHECK(st.rejected == N_BAD && st.received == 1 && st.joined == 1,
          "rejected %llu received %llu joined %llu", (unsigned long long)st.rejected,
          (unsigned long long)st.received, (unsigned long long)st.joined);
    rd_target_recv_destroy(r);
}

// After mode bad (2 ranks): a phase the student takes no targets from (distill.start_epoch) holds
// 30 times more targets than its join table has room for. The student skips it and waits for the
// teacher's end of it: every target must be counted unused without being stored (credits keep
// flowing: storing them would stop the credits and the teacher would never end the phase), then
// the next phase's targets are all joined.
enum { SKIP_N = 1920, USE_N = 100 };

static void run_skip_teacher(void) {
    int students[1] = {1};
    owner_ctx oc = {1};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_sender_opts so = {.comm = MPI_COMM_WORLD,
                                .n_students = 1,
                                .students = students,
                                .owner = owner_of,
                                .owner_ctx = &oc,
                                .max_in_flight = IN_FLIGHT,
                                .batch = BATCH,
                                .poll_us_max = 200,
                                .timeout_ms = 20000,
                                .job = rd_target_job_key("teacher")};
    rd_target_sender *s = NULL;
    int rc = rd_target_sender_create(&so, &s, &eb);
    CHECK(rc == RD_OK, "skip sender create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    for (int ph = 0; ph < 2 && rc == RD_OK; ph++) {
        rc = rd_target_sender_begin(s, (uint32_t)ph, -1, &eb);
        size_t n = ph == 0 ? SKIP_N : USE_N;
        for (size_t i = 0; i < n && rc == RD_OK; i++) {
            uint64_t sample = i;
            float logit = (float)i * 0.01f + (float)ph;
            rc = rd_target_sender_emit(s, 1, &sample, &logit, (uint64_t)ph, &eb);
        }
        if (rc == RD_OK)
            rc = rd_target_sender_end(s, &eb);
    }
    CHECK(rc == RD_OK, "skip teacher: %s", eb.msg);
    rc = rd_target_sender_close(s, &eb);
    CHECK(rc == RD_OK, "skip teacher close: %s", eb.msg);
    rd_target_sender_destroy(s);
}

static void run_skip_student(void) {
    int teachers[1] = {0};
    owner_ctx oc = {1};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_recv_opts ro = {.comm = MPI_COMM_WORLD,
                              .n_teachers = 1,
                              .teachers = teachers,
                              .owner = owner_of,
                              .owner_ctx = &oc,
                              .max_in_flight = IN_FLIGHT,
                              .batch = BATCH,
                              .capacity = 64, // >= 2 x the in-flight reserve (2 x 7)
                              .poll_us_max = 200,
                              .wait_ms = 20000,
                              .timeout_ms = 20000};
    rd_target_recv *r = NULL;
    int rc = rd_target_recv_create(&ro, &r, &eb);
    CHECK(rc == RD_OK, "skip recv create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rc = rd_target_recv_begin(r, 0, -1, &eb);
    rd_target_recv_skip(r);
    double t0 = MPI_Wtime();
    while (rc == RD_OK && !rd_target_recv_phase_complete(r) && MPI_Wtime() - t0 < 20)
        rc = rd_target_recv_progress(r, &eb);
    CHECK(rd_target_recv_phase_complete(r), "skipped phase never completed (credits stopped?)");
    if (rc == RD_OK)
        rc = rd_target_recv_end(r, &eb);
    rd_target_stats st;
    rd_target_recv_stats(r, &st);
    // Received may already hold some of the next phase's targets (stored, not unused).
    CHECK(st.unused == SKIP_N && st.received >= SKIP_N && st.late == 0,
          "skipped phase: unused %llu received %llu late %llu, expected %d unused",
          (unsigned long long)st.unused, (unsigned long long)st.received,
          (unsigned long long)st.late, SKIP_N);
    if (rc == RD_OK)
        rc = rd_target_recv_begin(r, 1, -1, &eb);
    uint64_t samples[USE_N];
    float logits[USE_N];
    uint8_t has[USE_N];
    for (int i = 0; i < USE_N; i++)
        samples[i] = (uint64_t)i;
    if (rc == RD_OK)
        rc = rd_target_recv_get(r, USE_N, samples, logits, NULL, has, &eb);
    int good = 0;
    for (int i = 0; rc == RD_OK && i < USE_N; i++)
        good += has[i] && logits[i] == (float)i * 0.01f + 1.0f;
    CHECK(good == USE_N, "used phase: %d of %d targets joined with their logit", good, USE_N);
    if (rc == RD_OK)
        rc = rd_target_recv_end(r, &eb);
    if (rc == RD_OK)
        rc = rd_target_recv_close(r, &eb);
    CHECK(rc == RD_OK, "skip student: %s", eb.msg);
    rd_target_recv_destroy(r);
}

// After mode skip (2 ranks): a teacher and a student resumed inside a phase (pass 0, window 3).
// Both begin phase (0, 2) first, as resumed jobs begin the phase of the one that is furthest
// behind: there the teacher resends samples [0, RES_PAST), a phase the student trained before
// its checkpoint and ends at once. In (0, 3) the teacher resends samples [0, RES_SENT) with their
// logged versions, then emits the rest of [0, RES_N) to a target log; the student trained on
// samples [0, RES_DONE) before its checkpoint (rd_target_recv_set_consumed, set before the first
// progress), so it asks only for [RES_DONE, RES_N): every one joined with the teacher's logit and
// version, exactly RES_PAST + RES_DONE duplicates (dropped), nothing unused or late; the log
// holds only the emitted targets.
enum { RES_N = 100, RES_SENT = 60, RES_DONE = 40, RES_PAST = 30 };

static float res_logit(uint64_t sample) {
    return (float)sample * 0.5f - 3.0f;
}

static int res_done(uint64_t sample, void *ctx) {
    (void)ctx;
    return sample < RES_DONE;
}

static void run_resume_teacher(void) {
    int students[1] = {1};
    owner_ctx oc = {1};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char root[] = "/tmp/rd_test_transport_resume_XXXXXX", path[64];
    RD_ASSERT(mkdtemp(root));
    snprintf(path, sizeof path, "%s/targets", root);
    rd_target_log *log = NULL;
    rd_target_log_opts lo = {0, 0, 1};
    int rc = rd_target_log_create(path, &lo, &log, &eb);
    CHECK(rc == RD_OK, "resume: log create: %s", eb.msg);
    rd_target_sender_opts so = {.comm = MPI_COMM_WORLD,
                                .n_students = 1,
                                .students = students,
                                .owner = owner_of,
                                .owner_ctx = &oc,
                                .max_in_flight = IN_FLIGHT,
                                .batch = BATCH,
                                .poll_us_max = 200,
                                .timeout_ms = 20000,
                                .log = log,
                                .job = rd_target_job_key("teacher")};
    rd_target_sender *s = NULL;
    if (rc == RD_OK)
        rc = rd_target_sender_create(&so, &s, &eb);
    CHECK(rc == RD_OK, "resume sender create: %s", eb.msg);
    uint64_t samples[RES_N], versions[RES_N];
    float logits[RES_N];
    for (uint64_t i = 0; i < RES_N; i++) {
        samples[i] = i;
        logits[i] = res_logit(i);
        versions[i] = 1000 + i / 8; // a teacher step per 8 samples
    }
    if (rc == RD_OK)
        rc = rd_target_sender_begin(s, 0, 2, &eb);
    if (rc == RD_OK)
        rc = rd_target_sender_resend(s, RES_PAST, samples, logits, versions, &eb);
    if (rc == RD_OK)
        rc = rd_target_sender_end(s, &eb);
    if (rc == RD_OK)
        rc = rd_target_sender_begin(s, 0, 3, &eb);
    if (rc == RD_OK)
        rc = rd_target_sender_resend(s, RES_SENT, samples, logits, versions, &eb);
    for (uint64_t i = RES_SENT; i < RES_N && rc == RD_OK; i++)
        rc = rd_target_sender_emit(s, 1, &samples[i], &logits[i], versions[i], &eb);
    if (rc == RD_OK)
        rc = rd_target_sender_end(s, &eb);
    if (rc == RD_OK)
        rc = rd_target_sender_close(s, &eb);
    CHECK(rc == RD_OK, "resume teacher: %s", eb.msg);
    uint64_t n = 0;
    if (log && rd_target_log_count(log, &n, &eb) == RD_OK)
        CHECK(n == RES_N - RES_SENT,
              "resume: the log holds %llu targets, expected %d (resent "
              "ones are not appended again)",
              (unsigned long long)n, RES_N - RES_SENT);
    rd_target_stats st;
    if (s) {
        rd_target_sender_stats(s, &st);
        CHECK(st.sent == RES_PAST + RES_N && st.logged == RES_N - RES_SENT,
              "resume: sent %llu logged %llu", (unsigned long long)st.sent,
              (unsigned long long)st.logged);
    }
    rd_target_sender_destroy(s);
    rd_target_log_close(log);
    rd_target_log_remove(path);
    rmdir(root);
}

static void run_resume_student(void) {
    int teachers[1] = {0};
    owner_ctx oc = {1};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_recv_opts ro = {.comm = MPI_COMM_WORLD,
                              .n_teachers = 1,
                              .teachers = teachers,
                              .owner = owner_of,
                              .owner_ctx = &oc,
                              .max_in_flight = IN_FLIGHT,
                              .batch = BATCH,
                              .poll_us_max = 200,
                              .wait_ms = 20000,
                              .timeout_ms = 20000};
    rd_target_recv *r = NULL;
    int rc = rd_target_recv_create(&ro, &r, &eb);
    CHECK(rc == RD_OK, "resume recv create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rd_target_recv_set_consumed(r, 0, 3, res_done, NULL);
    rc = rd_target_recv_begin(r, 0, 2, &eb);
    if (rc == RD_OK)
        rc = rd_target_recv_end(r, &eb);
    if (rc == RD_OK)
        rc = rd_target_recv_begin(r, 0, 3, &eb);
    uint64_t samples[RES_N], versions[RES_N];
    float logits[RES_N];
    uint8_t has[RES_N];
    size_t m = RES_N - RES_DONE;
    for (size_t i = 0; i < m; i++)
        samples[i] = RES_DONE + i;
    if (rc == RD_OK)
        rc = rd_target_recv_get(r, m, samples, logits, versions, has, &eb);
    int good = 0;
    for (size_t i = 0; rc == RD_OK && i < m; i++)
        good +=
            has[i] && logits[i] == res_logit(samples[i]) && versions[i] == 1000 + samples[i] / 8;
    CHECK(good == (int)m, "resume: %d of %zu targets joined with their logit and version", good, m);
    if (rc == RD_OK)
        rc = rd_target_recv_end(r, &eb);
    if (rc == RD_OK)
        rc = rd_target_recv_close(r, &eb);
    CHECK(rc == RD_OK, "resume student: %s", eb.msg);
    rd_target_stats st;
    rd_target_recv_stats(r, &st);
    CHECK(st.duplicates == RES_PAST + RES_DONE && st.joined == m && st.unused == 0 &&
              st.late == 0 && st.missing == 0,
          "resume: duplicates %llu joined %llu unused %llu late %llu missing %llu; expected %d "
          "duplicates, %zu joined",
          (unsigned long long)st.duplicates, (unsigned long long)st.joined,
          (unsigned long long)st.unused, (unsigned long long)st.late,
          (unsigned long long)st.missing, RES_PAST + RES_DONE, m);
    rd_target_recv_destroy(r);
}
// After mode bad (2 ranks): an end of phase that can never come is an error naming the teacher,
// never a hang. A student in a phase without targets (distill.start_epoch) waits for the
// teachers' end of it with no time limit, so each case must be caught without one:
//   A. the teacher's end-of-phase message is malformed (rejected), then its targets of the next
//      phase arrive: wait_phase, progress, get and close fail with RD_ERR_STATE at once;
//   B. the teacher closes (FIN) without beginning the phase: RD_ERR_PROTO, "closed without";
//   C. nothing arrives: a bounded wait is RD_ERR_TIMEOUT; then the end comes and all is well.
enum { TAG_LOST_GO = 202 };

static void run_lost_end_teacher(void) {
    unsigned char buf[512];
    uint64_t mine = owned_by(0);
    float ok[1] = {0.25f};
    // A. an end of phase 0 carrying a target count (malformed), then targets of phase 1.
    send_crafted(buf, craft(buf, 2, 0, 1, 0, 0, 0, NULL, NULL));
    send_crafted(buf, craft(buf, 1, 0, 1, 1, 1, 1, &mine, ok));
    drain_credits(1, 2, "lost end A");
    MPI_Barrier(MPI_COMM_WORLD);
    // B. FIN after 0 phases begun (a teacher that ran fewer phases).
    send_crafted(buf, craft(buf, 3, 0, 0, 0, 0, 0, NULL, NULL));
    drain_credits(1, 1, "lost end B");
    MPI_Barrier(MPI_COMM_WORLD);
    // C. silence until the student's bounded wait ran out, then the end of phase 0 and FIN.
    int go = 0;
    RD_MPI_CHECK(MPI_Recv(&go, 1, MPI_INT, 1, TAG_LOST_GO, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    send_crafted(buf, craft(buf, 2, 0, 0, 0, 0, 0, NULL, NULL));
    send_crafted(buf, craft(buf, 3, 0, 0, 1, 1, 0, NULL, NULL));
    drain_credits(1, 2, "lost end C");
}

static void run_lost_end_student(void) {
    owner_ctx oc = {2};
    rd_errbuf eb;
    // A. It returns as soon as the targets of phase 1 show the end of phase 0 lost (the 20 s
    // bound only turns a regression into a failure rather than a hang).
    rd_target_recv *r = bad_receiver(&oc);
    double t0 = MPI_Wtime();
    if (r) {
        rd_errbuf_clear(&eb);
        int rc = rd_target_recv_wait_phase(r, 20000, &eb);
        CHECK(rc == RD_ERR_STATE && strstr(eb.msg, "teacher 0 (rank 0)") &&
                  strstr(eb.msg, "end of phase 0 never arrived") &&
                  strstr(eb.msg, "targets of phase 1"),
              "A: wait_phase %d '%s'", rc, eb.msg);
    }
    if (r && n_errors == 0) { // (after a failure above, get and close would wait out their bounds)
        rd_target_stats st;
        rd_target_recv_stats(r, &st);
        CHECK(st.rejected == 1, "A: rejected %llu", (unsigned long long)st.rejected);
        rd_errbuf_clear(&eb);
        CHECK(rd_target_recv_progress(r, &eb) == RD_ERR_STATE && strstr(eb.msg, "never arrived"),
              "A: progress after: '%s'", eb.msg);
        uint64_t mine = owned_by(0);
        float z = 0;
        uint8_t has = 1;
        rd_errbuf_clear(&eb);
        CHECK(rd_target_recv_get(r, 1, &mine, &z, NULL, &has, &eb) == RD_ERR_STATE, "A: get: '%s'",
              eb.msg);
        CHECK(rd_target_recv_end(r, &eb) == RD_ERR_STATE, "A: end: '%s'", eb.msg);
        rd_errbuf_clear(&eb);
        CHECK(rd_target_recv_close(r, &eb) == RD_ERR_STATE, "A: close: '%s'", eb.msg);
        // Neither the bound, nor get's wait_ms (30 s), nor close's timeout (60 s) was waited out.
        CHECK(MPI_Wtime() - t0 < 15, "A: took %.1f s", MPI_Wtime() - t0);
    }
    rd_target_recv_destroy(r);
    MPI_Barrier(MPI_COMM_WORLD);
    // B.
    r = bad_receiver(&oc);
    if (r) {
        rd_errbuf_clear(&eb);
        int rc = rd_target_recv_wait_phase(r, 20000, &eb);
        CHECK(rc == RD_ERR_PROTO && strstr(eb.msg, "closed without an end of the phase") &&
                  strstr(eb.msg, "teacher 0 (rank 0, closed)"),
              "B: wait_phase %d '%s'", rc, eb.msg);
        rd_errbuf_clear(&eb);
        CHECK(rd_target_recv_end(r, &eb) == RD_OK, "B: end: '%s'", eb.msg);
        CHECK(rd_target_recv_close(r, &eb) == RD_OK, "B: close: '%s'", eb.msg);
        rd_target_recv_destroy(r);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    // C.
    r = bad_receiver(&oc);
    int go = 1;
    if (r) {
        rd_errbuf_clear(&eb);
        int rc = rd_target_recv_wait_phase(r, 300, &eb);
        CHECK(rc == RD_ERR_TIMEOUT && strstr(eb.msg, "no end of the phase in time") &&
                  strstr(eb.msg, "teacher 0 (rank 0)"),
              "C: wait_phase %d '%s'", rc, eb.msg);
    }
    RD_MPI_CHECK(MPI_Send(&go, 1, MPI_INT, 0, TAG_LOST_GO, MPI_COMM_WORLD));
    if (r) {
        rd_errbuf_clear(&eb);
        CHECK(rd_target_recv_wait_phase(r, 0, &eb) == RD_OK, "C: wait_phase: '%s'", eb.msg);
        CHECK(rd_target_recv_end(r, &eb) == RD_OK, "C: end: '%s'", eb.msg);
        CHECK(rd_target_recv_close(r, &eb) == RD_OK, "C: close: '%s'", eb.msg);
        rd_target_recv_destroy(r);
    }
}

// Mode drift (4 ranks: teacher 0, students 1..3; owner = sample % 3): the records' orders of the
// two jobs drift apart (train.order: user with different rank counts). The teacher emits the
// targets of students 1 and 2 first, DRIFT_N each in one-target messages (window 2: far more than
// fit in flight), and student 0's one sample last. Students 1 and 2 do not progress at all until
// student 0 has its target (they block in MPI_Recv, as a rank blocks in its job's allreduce
// behind a peer that waits in get()). Student 0 must get its target without waiting out its
// wait_ms (a window shared by all students filled with the others' messages: the teacher never
// reached the last sample); then students 1 and 2 get all theirs: nothing late or missing.
enum { DRIFT_N = 400, DRIFT_WAIT_MS = 20000, TAG_DRIFT_GO = 201 };

static int owner_mod3(uint64_t sample, void *ctx) {
    (void)ctx;
    return (int)(sample % 3);
}

static void run_drift_teacher(void) {
    int students[3] = {1, 2, 3};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_sender_opts so = {.comm = MPI_COMM_WORLD,
                                .n_students = 3,
                                .students = students,
                                .owner = owner_mod3,
                                .max_in_flight = IN_FLIGHT,
                                .batch = 1,
                                .poll_us_max = 200,
                                .timeout_ms = 60000};
    rd_target_sender *s = NULL;
    int rc = rd_target_sender_create(&so, &s, &eb);
    CHECK(rc == RD_OK, "drift sender create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rc = rd_target_sender_begin(s, 0, -1, &eb);
    for (uint64_t i = 0; i < 2 * DRIFT_N && rc == RD_OK; i++) {
        uint64_t sample = 3 * (i / 2) + 1 + i % 2; // students 1 and 2, interleaved
        float logit = (float)sample * 0.001f;
        rc = rd_target_sender_emit(s, 1, &sample, &logit, i, &eb);
        if (rc == RD_OK)
            rc = rd_target_sender_flush(s, &eb);
    }
    uint64_t last = 3 * DRIFT_N; // student 0's
    float z = 7.0f;
    if (rc == RD_OK)
        rc = rd_target_sender_emit(s, 1, &last, &z, 2 * DRIFT_N, &eb);
    if (rc == RD_OK)
        rc = rd_target_sender_end(s, &eb);
    if (rc == RD_OK)
        rc = rd_target_sender_close(s, &eb);
    CHECK(rc == RD_OK, "drift teacher: %s", eb.msg);
    rd_target_stats st;
    rd_target_sender_stats(s, &st);
    CHECK(st.sent == 2 * DRIFT_N + 1, "drift teacher sent %llu targets",
          (unsigned long long)st.sent);
    rd_target_sender_destroy(s);
}

static void run_drift_student(int me) {
    int teachers[1] = {0};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_recv_opts ro = {.comm = MPI_COMM_WORLD,
                              .n_teachers = 1,
                              .teachers = teachers,
                              .student_index = me,
                              .owner = owner_mod3,
                              .max_in_flight = IN_FLIGHT,
                              .batch = 1,
                              .poll_us_max = 200,
                              .wait_ms = DRIFT_WAIT_MS,
                              .timeout_ms = 60000};
    rd_target_recv *r = NULL;
    int rc = rd_target_recv_create(&ro, &r, &eb);
    CHECK(rc == RD_OK, "drift recv create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rc = rd_target_recv_begin(r, 0, -1, &eb);
    size_t n = me == 0 ? 1 : DRIFT_N;
    uint64_t *samples = rd_xmalloc(n * sizeof *samples);
    float *logits = rd_xmalloc(n * sizeof *logits);
    uint8_t *has = rd_xmalloc(n);
    for (size_t i = 0; i < n; i++) // in reverse: the last emitted first
        samples[i] = me == 0 ? 3 * DRIFT_N : 3 * (DRIFT_N - 1 - i) + (uint64_t)me;
    double t0 = MPI_Wtime();
    if (me != 0) // blocked, no progress, until student 0 has its target
        RD_MPI_CHECK(
            MPI_Recv(NULL, 0, MPI_BYTE, 1, TAG_DRIFT_GO, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    if (rc == RD_OK)
        rc = rd_target_recv_get(r, n, samples, logits, NULL, has, &eb);
    if (me == 0) {
        CHECK(MPI_Wtime() - t0 < DRIFT_WAIT_MS / 2000.0,
              "student 0 waited %.1f s for its target (window held by the others' messages?)",
              MPI_Wtime() - t0);
        for (int d = 2; d <= 3; d++)
            RD_MPI_CHECK(MPI_Send(NULL, 0, MPI_BYTE, d, TAG_DRIFT_GO, MPI_COMM_WORLD));
    }
    int good = 0;
    for (size_t i = 0; rc == RD_OK && i < n; i++)
        good += has[i] && logits[i] == (me == 0 ? 7.0f : (float)samples[i] * 0.001f);
    CHECK(good == (int)n, "drift student %d: %d of %zu targets joined", me, good, n);
    if (rc == RD_OK)
        rc = rd_target_recv_end(r, &eb);
    if (rc == RD_OK)
        rc = rd_target_recv_close(r, &eb);
    CHECK(rc == RD_OK, "drift student %d: %s", me, eb.msg);
    rd_target_stats st;
    rd_target_recv_stats(r, &st);
    CHECK(st.late == 0 && st.missing == 0 && st.duplicates == 0 && st.joined == n,
          "drift student %d: joined %llu late %llu missing %llu", me, (unsigned long long)st.joined,
          (unsigned long long)st.late, (unsigned long long)st.missing);
    rd_free(samples);
    rd_free(logits);
    rd_free(has);
    rd_target_recv_destroy(r);
}

// Last in mode bad (2 ranks): a student slower than its teacher. The teacher emits a phase of
// SLOW_N targets at once (window 1, one target a message: all but one held) and ends the phase;
// the student takes one target every SLOW_STEP_MS, crediting each, so the teacher's end waits
// about SLOW_N x SLOW_STEP_MS = 2.4 s in all with a credit every 80 ms, against a sender
// timeout of 1 s. The timeout bounds the time without a credit: the end must succeed and every
// target be joined. Before the fix it bounded the whole wait, and the teacher gave up after 1 s
// with "no credit within 1000 ms" while credits kept coming (in a launch: a student slower than
// the teacher by more than 300 s over one phase ended the launch).
enum { SLOW_N = 30, SLOW_STEP_MS = 80, SLOW_TIMEOUT_MS = 1000 };

static void run_slow_teacher(void) {
    int students[1] = {1};
    owner_ctx oc = {1};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_sender_opts so = {.comm = MPI_COMM_WORLD,
                                .n_students = 1,
                                .students = students,
                                .owner = owner_of,
                                .owner_ctx = &oc,
                                .max_in_flight = 1,
                                .batch = 1,
                                .poll_us_max = 200,
                                .timeout_ms = SLOW_TIMEOUT_MS,
                                .job = rd_target_job_key("teacher")};
    rd_target_sender *s = NULL;
    int rc = rd_target_sender_create(&so, &s, &eb);
    CHECK(rc == RD_OK, "slow sender create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rc = rd_target_sender_begin(s, 0, -1, &eb);
    for (int i = 0; i < SLOW_N && rc == RD_OK; i++) {
        uint64_t sample = (uint64_t)i;
        float logit = (float)i * 0.5f;
        rc = rd_target_sender_emit(s, 1, &sample, &logit, 1, &eb);
    }
    double t0 = MPI_Wtime();
    if (rc == RD_OK)
        rc = rd_target_sender_end(s, &eb);
    CHECK(rc == RD_OK, "slow student: the teacher's end of phase failed after %.1f s: %s",
          MPI_Wtime() - t0, eb.msg);
    if (rc == RD_OK) {
        rc = rd_target_sender_close(s, &eb);
        CHECK(rc == RD_OK, "slow teacher close: %s", eb.msg);
    }
    rd_target_sender_destroy(s);
}

static void run_slow_student(void) {
    int teachers[1] = {0};
    owner_ctx oc = {1};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_recv_opts ro = {.comm = MPI_COMM_WORLD,
                              .n_teachers = 1,
                              .teachers = teachers,
                              .owner = owner_of,
                              .owner_ctx = &oc,
                              .max_in_flight = 1,
                              .batch = 1,
                              .poll_us_max = 200,
                              .wait_ms = 5000,
                              .timeout_ms = 0};
    rd_target_recv *r = NULL;
    int rc = rd_target_recv_create(&ro, &r, &eb);
    CHECK(rc == RD_OK, "slow recv create: %s", eb.msg);
    if (rc != RD_OK)
        return;
    rc = rd_target_recv_begin(r, 0, -1, &eb);
    int good = 0;
    for (int i = 0; i < SLOW_N && rc == RD_OK; i++) {
        sleep_us(SLOW_STEP_MS * 1000L); // a slow training step
        uint64_t sample = (uint64_t)i;
        float logit = 0;
        uint8_t has = 0;
        rc = rd_target_recv_get(r, 1, &sample, &logit, NULL, &has, &eb);
        good += rc == RD_OK && has && logit == (float)i * 0.5f;
        // The teacher gave up (before the fix): stop instead of waiting out wait_ms per step.
        int gone = 0;
        MPI_Iprobe(0, TAG_GO, MPI_COMM_WORLD, &gone, MPI_STATUS_IGNORE);
        if (gone) {
            int go = 0;
            MPI_Recv(&go, 1, MPI_INT, 0, TAG_GO, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            break;
        }
    }
    CHECK(good == SLOW_N, "slow student: %d of %d targets joined", good, SLOW_N);
    if (rc == RD_OK)
        rc = rd_target_recv_end(r, &eb);
    if (rc == RD_OK && good == SLOW_N)
        rc = rd_target_recv_close(r, &eb);
    CHECK(rc == RD_OK, "slow student: %s", eb.msg);
    rd_target_recv_destroy(r);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1 && strcmp(argv[1], "drift") == 0) {
        if (size != 4) {
            if (rank == 0)
                fprintf(stderr, "mode drift needs 4 ranks\n");
            MPI_Finalize();
            return 2;
        }
        if (rank == 0)
            run_drift_teacher();
        else
            run_drift_student(rank - 1);
        int total = 0;
        MPI_Allreduce(&n_errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (rank == 0)
            printf("test_targets_transport drift: %s (%d errors)\n", total ? "FAILED" : "ok",
                   total);
        MPI_Finalize();
        return total ? 1 : 0;
    }
    if (argc > 1 && strcmp(argv[1], "bad") == 0) {
        if (size != 2) {
            if (rank == 0)
                fprintf(stderr, "mode bad needs 2 ranks\n");
            MPI_Finalize();
            return 2;
        }
        if (rank == 0)
            run_fake_teacher();
        else
            run_bad_receiver();
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0) // then a phase that takes no targets (mode skip, below)
            run_skip_teacher();
        else
            run_skip_student();
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0) // then a pair resumed inside a phase
            run_resume_teacher();
        else
            run_resume_student();
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0) // then ends of phase that can never come
            run_lost_end_teacher();
        else
            run_lost_end_student();
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0) { // then a student slower than its teacher
            int before = n_errors;
            run_slow_teacher();
            if (n_errors > before) { // the student waits for what will never come: stop it
                int go = 1;
                MPI_Send(&go, 1, MPI_INT, 1, TAG_GO, MPI_COMM_WORLD);
            }
        } else {
            run_slow_student();
        }
        int total = 0;
        MPI_Allreduce(&n_errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (rank == 0)
            printf("test_targets_transport bad: %s (%d errors)\n", total ? "FAILED" : "ok", total);
        MPI_Finalize();
        return total ? 1 : 0;
    }
    int n_teachers = argc > 1 ? atoi(argv[1]) : 2;
    if (n_teachers < 1 || n_teachers >= size || size - n_teachers > 64 || n_teachers > 64) {
        if (rank == 0)
            fprintf(stderr, "usage: mpiexec -n R %s T (1 <= T < R)\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    int n_students = size - n_teachers;
    // One shared target log (rank 0 creates it; the teachers append, the students replay).
    char log_path[256] = {0};
    if (rank == 0) {
        char root[] = "/tmp/rd_test_transport_XXXXXX";
        if (!mkdtemp(root))
            RD_ASSERT(0);
        snprintf(log_path, sizeof log_path, "%s/targets", root);
        rd_target_log_opts lo = {0, 0, 1};
        rd_target_log *log = NULL;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        if (rd_target_log_create(log_path, &lo, &log, &eb) != RD_OK) {
            fprintf(stderr, "log create: %s\n", eb.msg);
            RD_ASSERT(0);
        }
        rd_target_log_close(log);
    }
    MPI_Bcast(log_path, sizeof log_path, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank < n_teachers) {
        run_teacher(rank, n_teachers, n_students, log_path);
        // Match the students' split (color 1) with a teacher-side one.
        MPI_Comm c;
        RD_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, 0, rank, &c));
        RD_MPI_CHECK(MPI_Comm_free(&c));
    } else {
        run_student(rank - n_teachers, n_teachers, n_students, log_path);
    }
    int total = 0;
    MPI_Allreduce(&n_errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("test_targets_transport (%d teachers, %d students): %s (%d errors)\n", n_teachers,
               n_students, total ? "FAILED" : "ok", total);
        char cmd[300];
        char *slash = strrchr(log_path, '/');
        if (slash)
            *slash = 0;
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", log_path);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", log_path);
    }
    MPI_Finalize();
    return total ? 1 : 0;
}
