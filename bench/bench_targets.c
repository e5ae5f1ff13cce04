// bench_targets.c — throughput of the distillation target transport (rd/distill.h).
//
// Usage: mpiexec -n T+S bench_targets [--teachers T] [--targets N] [--step B] [--batches 64,1024]
//                                     [--in-flight W] [--reps R] [--warmup R] [--log 0|1]
//                                     [--json PATH]
// Ranks [0, T) are teacher ranks, [T, T+S) student ranks (owner = hash(sample) % S). Per
// configuration (message batch) and repetition, every teacher emits N targets in emit calls of
// B samples (a teacher step; one flush per step is NOT done, so messages are full), ends the
// phase; every student get()s all of its samples in calls of B, in emit order, then waits for
// the phase to complete and ends it. The clock runs from a barrier to the last rank's end of
// phase. `warmup` repetitions are discarded. With --log 1 each teacher also appends every
// target to a shared LMDB target log (no fsync), as the pipeline does.
// Figures per message batch:
//   targets_per_s      targets delivered per second, all teachers together (min over reps of the
//                      wall time -> max rate, and the median)
//   bytes_per_target   wire bytes per target (data + markers + headers; credits excluded)
//   credit_bytes_per_target  the reverse direction
//   t_min/t_avg/t_max  per-rank seconds of the median repetition (OSU style; of the lower of the
//                      two middle ones for an even --reps, whose median is their mean)
//   sender_blocked_ms  time teachers waited for credits in the median repetition (the one of
//                      t_min/t_avg/t_max), averaged over the teachers
#include "bench_args.h"
#include "rd/alloc.h"
#include "rd/comm.h"
#include "rd/distill.h"
#include "rd/hash.h"
#include "rd/targets.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_json_fail; // rank 0 could not write --json: the exit status is 1

#define MAX_CONF 16

typedef struct opts {
    int teachers;
    long targets;
    int step;
    int n_batches;
    int batches[MAX_CONF];
    int in_flight;
    int reps, warmup;
    int log;
    const char *json;
} opts;

typedef struct result {
    int batch;
    double best_s, median_s, t_min, t_avg, t_max;
    double rate_best, rate_median, bytes_per_target, credit_bytes_per_target, blocked_ms;
} result;

static int owner_of(uint64_t s, void *ctx) {
    return (int)(rd_mix64(s) % (uint64_t) * (const int *)ctx);
}

// @return 0, 1 for --help, -1 after a message naming the option (on err; NULL off rank 0).
static int parse(int argc, char **argv, opts *o, FILE *err) {
    *o = (opts){1, 1000000, 256, 4, {64, 256, 1024, 4096}, 8, 5, 1, 0, NULL};
    const char *P = "bench_targets";
    long long x = 0;
    bench_seen seen = {0};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        static const struct {
            const char *name;
            long long lo, hi;
        } ints[] = {{"--teachers", 1, 4096}, {"--targets", 1, 1LL << 40},
                    {"--step", 1, 1 << 24},  {"--in-flight", 1, 65536},
                    {"--reps", 1, 1000000},  {"--warmup", 0, 1000000},
                    {"--log", 0, 1}};
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (bench_once(&seen, err, P, a) != 0)
            return -1;
        int k = 0, n_ints = (int)(sizeof ints / sizeof ints[0]);
        while (k < n_ints && strcmp(a, ints[k].name) != 0)
            k++;
        if (k < n_ints) {
            if (bench_int(err, P, a, v, ints[k].lo, ints[k].hi, &x) != 0)
                return -1;
            switch (k) {
                case 0:
                    o->teachers = (int)x;
                    break;
                case 1:
                    o->targets = (long)x;
                    break;
                case 2:
                    o->step = (int)x;
                    break;
                case 3:
                    o->in_flight = (int)x;
                    break;
                case 4:
                    o->reps = (int)x;
                    break;
                case 5:
                    o->warmup = (int)x;
                    break;
                default:
                    o->log = (int)x;
                    break;
            }
        } else if (strcmp(a, "--json") == 0 && v) {
            o->json = v;
        } else if (strcmp(a, "--batches") == 0 && v) {
            long long b[MAX_CONF];
            if (bench_int_list(err, P, a, v, 1, 1 << 24, MAX_CONF, b, &o->n_batches) != 0)
                return -1;
            for (int j = 0; j < o->n_batches; j++)
                o->batches[j] = (int)b[j];
        } else {
            if (err)
                fprintf(err, "%s: '%s': %s\n", P, a,
                        v ? "unknown option" : "unknown option, or an option without its value");
            return -1;
        }
    }
    if (o->n_batches < 1) {
        if (err)
            fprintf(err, "%s: --batches: expected a list of sizes in 1..%d\n", P, 1 << 24);
        return -1;
    }
    // Only rank 0 (err != NULL) probes --json: ranks probing one path at once race (one's
    // probe file is removed under another's access()); main takes rank 0's verdict.
    if (o->json && err && bench_json_ok(err, P, o->json) != 0)
        return -1;
    return 0;
}

static void usage(FILE *out) {
    fprintf(out, "usage: mpiexec -n T+S bench_targets [--teachers T] [--targets N] [--step B] "
                 "[--batches 64,1024] [--in-flight W] [--reps R] [--warmup R] [--log 0|1] "
                 "[--json PATH]   (T < ranks)\n");
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    opts o;
    int pst = parse(argc, argv, &o, rank == 0 ? stderr : NULL);
    MPI_Bcast(&pst, 1, MPI_INT, 0, MPI_COMM_WORLD); // every rank follows rank 0's verdict
    if (pst == 1) {
        if (rank == 0)
            usage(stdout);
        MPI_Finalize();
        return 0;
    }
    if (pst != 0 || o.teachers >= size) {
        if (rank == 0 && pst == 0)
            fprintf(stderr, "bench_targets: --teachers %d needs more than %d ranks, got %d\n",
                    o.teachers, o.teachers, size);
        if (rank == 0)
            usage(stderr);
        MPI_Finalize();
        return 2;
    }
    int T = o.teachers, S = size - T, teacher = rank < T;
    // The memory the ranks on one node need, known from the options: every rank's N sample ids,
    // a student's list of the T * N it may own (sized for all of them), the step's logits and
    // targets. A --targets up to 2^40 was taken and every rank aborted in rd_xmalloc ("out of
    // memory allocating 8000000000000 bytes", exit 1). Each node sums its ranks' needs; the node
    // most over its memory (MPI_MAXLOC) is the one reported, by rank 0.
    {
        const unsigned long long n = (unsigned long long)o.targets;
        unsigned long long mine = n * 8 + (teacher ? 0 : (unsigned long long)T * n * 8) +
                                  (unsigned long long)o.step * 9,
                           node_sum = 0;
        MPI_Comm node;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
        MPI_Allreduce(&mine, &node_sum, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, node);
        MPI_Comm_free(&node);
        const unsigned long long phys = bench_phys_bytes();
        struct {
            double over;
            int rank;
        } in = {phys ? (double)node_sum - (double)phys : 0.0, rank}, worst;
        MPI_Allreduce(&in, &worst, 1, MPI_DOUBLE_INT, MPI_MAXLOC, MPI_COMM_WORLD);
        if (worst.over > 0) {
            unsigned long long fig[2] = {node_sum, phys};
            MPI_Bcast(fig, 2, MPI_UNSIGNED_LONG_LONG, worst.rank, MPI_COMM_WORLD);
            char what[200];
            snprintf(what, sizeof what,
                     "--targets %ld (with --teachers %d, --step %d, %d rank(s) in all)", o.targets,
                     T, o.step, size);
            bench_mem_ok(rank == 0 ? stderr : NULL, "bench_targets", what, fig[0], fig[1]);
            if (rank == 0)
                usage(stderr);
            MPI_Finalize();
            return 2;
        }
    }
    int *teachers = rd_xmalloc((size_t)T * sizeof *teachers);
    int *students = rd_xmalloc((size_t)S * sizeof *students);
    for (int t = 0; t < T; t++)
        teachers[t] = t;
    for (int d = 0; d < S; d++)
        students[d] = T + d;

    char log_path[256] = {0};
    if (o.log && rank == 0) {
        char root[200]; // removed however rank 0 ends (bench_tmp_own)
        if (bench_tmp_make("bench_targets", "bench_targets", root, sizeof root) != 0)
            MPI_Abort(MPI_COMM_WORLD, 1);
        snprintf(log_path, sizeof log_path, "%s/targets", root);
        rd_target_log_opts lo = {64u << 20, 0, 1};
        rd_target_log *lg = NULL;
        RD_ASSERT(rd_target_log_create(log_path, &lo, &lg, NULL) == RD_OK);
        rd_target_log_close(lg);
    }
    MPI_Bcast(log_path, sizeof log_path, MPI_CHAR, 0, MPI_COMM_WORLD);
    rd_target_log *log = NULL;
    if (o.log && teacher) {
        rd_target_log_opts lo = {64u << 20, 0, 1};
        RD_ASSERT(rd_target_log_open(log_path, 1, &lo, &log, NULL) == RD_OK);
    }

    // Teacher t emits samples t, t + T, t + 2T, ...; a student's samples are those it owns.
    size_t n_emit = (size_t)o.targets;
    uint64_t *samples = rd_xmalloc(n_emit * sizeof *samples);
    float *logits = rd_xmalloc((size_t)o.step * sizeof *logits);
    for (int i = 0; i < o.step; i++)
        logits[i] = (float)(i % 17) * 0.25f - 2.0f;
    size_t n_mine = 0;
    uint64_t *mine = NULL;
    if (teacher) {
        for (size_t i = 0; i < n_emit; i++)
            samples[i] = (uint64_t)i * (uint64_t)T + (uint64_t)rank;
    } else {
        // Students ask in (teacher-interleaved) emit order.
        int d = rank - T;
        mine = rd_xmalloc((size_t)T * n_emit * sizeof *mine);
        for (size_t i = 0; i < n_emit; i++)
            for (int t = 0; t < T; t++) {
                uint64_t s = (uint64_t)i * (uint64_t)T + (uint64_t)t;
                if (owner_of(s, &S) == d)
                    mine[n_mine++] = s;
            }
    }
    float *zs = rd_xmalloc((size_t)o.step * sizeof *zs);
    uint8_t *has = rd_xmalloc((size_t)o.step);

    result res[MAX_CONF];
    for (int c = 0; c < o.n_batches; c++) {
        int batch = o.batches[c];
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        rd_target_sender *snd = NULL;
        rd_target_recv *rcv = NULL;
        if (teacher) {
            rd_target_sender_opts so = {.comm = MPI_COMM_WORLD,
                                        .n_students = S,
                                        .students = students,
                                        .sender_index = rank,
                                        .owner = owner_of,
                                        .owner_ctx = &S,
                                        .max_in_flight = o.in_flight,
                                        .batch = batch,
                                        .poll_us_max = 200,
                                        .timeout_ms = 600000,
                                        .log = log,
                                        .job = rd_target_job_key("bench")};
            if (rd_target_sender_create(&so, &snd, &eb) != RD_OK) {
                fprintf(stderr, "bench_targets rank %d: %s\n", rank, eb.msg);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        } else {
            rd_target_recv_opts ro = {.comm = MPI_COMM_WORLD,
                                      .n_teachers = T,
                                      .teachers = teachers,
                                      .student_index = rank - T,
                                      .owner = owner_of,
                                      .owner_ctx = &S,
                                      .max_in_flight = o.in_flight,
                                      .batch = batch,
                                      .capacity = 0,
                                      .poll_us_max = 200,
                                      .wait_ms = 600000,
                                      .timeout_ms = 600000};
            if (rd_target_recv_create(&ro, &rcv, &eb) != RD_OK) {
                fprintf(stderr, "bench_targets rank %d: %s\n", rank, eb.msg);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        }
        int total_reps = o.warmup + o.reps;
        double *walls = rd_xmalloc((size_t)total_reps * sizeof *walls);
        double *mine_s = rd_xmalloc((size_t)total_reps * sizeof *mine_s);
        // A teacher's credit waits of each rep (the counter's growth over the rep).
        double *blocked_s = rd_xmalloc((size_t)total_reps * sizeof *blocked_s);
        rd_target_stats st0, st1;
        memset(&st0, 0, sizeof st0);
        uint64_t blocked_before = 0;
        for (int rep = 0; rep < total_reps; rep++) {
            if (rep == o.warmup) {
                if (snd)
                    rd_target_sender_stats(snd, &st0);
                else
                    rd_target_recv_stats(rcv, &st0);
            }
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            int rc;
            if (teacher) {
                rc = rd_target_sender_begin(snd, (uint32_t)rep, (int32_t)c, &eb);
                for (size_t i = 0; i < n_emit && rc == RD_OK; i += (size_t)o.step) {
                    size_t m = n_emit - i < (size_t)o.step ? n_emit - i : (size_t)o.step;
                    rc = rd_target_sender_emit(snd, m, samples + i, logits, i, &eb);
                }
                if (rc == RD_OK)
                    rc = rd_target_sender_end(snd, &eb);
            } else {
                rc = rd_target_recv_begin(rcv, (uint32_t)rep, (int32_t)c, &eb);
                for (size_t i = 0; i < n_mine && rc == RD_OK; i += (size_t)o.step) {
                    size_t m = n_mine - i < (size_t)o.step ? n_mine - i : (size_t)o.step;
                    rc = rd_target_recv_get(rcv, m, mine + i, zs, NULL, has, &eb);
                }
                rd_backoff bo;
                rd_backoff_reset(&bo, 200);
                while (rc == RD_OK && !rd_target_recv_phase_complete(rcv)) {
                    rc = rd_target_recv_progress(rcv, &eb);
                    rd_backoff_wait(&bo);
                }
                if (rc == RD_OK)
                    rc = rd_target_recv_end(rcv, &eb);
            }
            if (rc != RD_OK) {
                fprintf(stderr, "bench_targets rank %d: %s\n", rank, eb.msg);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            mine_s[rep] = MPI_Wtime() - t0;
            blocked_s[rep] = 0;
            if (snd) {
                rd_target_stats sr;
                rd_target_sender_stats(snd, &sr);
                blocked_s[rep] = (double)(sr.blocked_us - blocked_before) / 1e6;
                blocked_before = sr.blocked_us;
            }
            MPI_Allreduce(&mine_s[rep], &walls[rep], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        }
        rd_errbuf_clear(&eb);
        int rc = teacher ? rd_target_sender_close(snd, &eb) : rd_target_recv_close(rcv, &eb);
        if (rc != RD_OK) {
            fprintf(stderr, "bench_targets rank %d: close: %s\n", rank, eb.msg);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (snd)
            rd_target_sender_stats(snd, &st1);
        else
            rd_target_recv_stats(rcv, &st1);
        // Sanity: every target joined, nothing missing/late.
        if (!teacher && (st1.missing || st1.late || st1.duplicates || st1.unused)) {
            fprintf(stderr, "bench_targets rank %d: missing %llu late %llu dup %llu unused %llu\n",
                    rank, (unsigned long long)st1.missing, (unsigned long long)st1.late,
                    (unsigned long long)st1.duplicates, (unsigned long long)st1.unused);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        // Timed reps only: wire bytes (teachers), credit bytes (students).
        double loc[3] = {teacher ? (double)(st1.bytes - st0.bytes) : 0.0,
                         teacher ? (double)(st1.sent - st0.sent) : 0.0,
                         teacher ? 0.0 : (double)(st1.credits - st0.credits) * 16.0},
               glob[3];
        MPI_Allreduce(loc, glob, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        // Median repetition and per-rank spread.
        // Over every timed rep: a copy of 256 of them left the reps after the 256th out of the
        // best and the median. The median of an even count is the mean of the two middle reps;
        // the per-rank spread is that of the lower one (a rep that ran).
        double *timed = walls + o.warmup;
        int nr = o.reps;
        double *sorted = rd_xmalloc((size_t)nr * sizeof *sorted);
        memcpy(sorted, timed, (size_t)nr * sizeof *sorted);
        qsort(sorted, (size_t)nr, sizeof *sorted, bench_cmp_double);
        double median = bench_median_sorted(sorted, (size_t)nr), best = sorted[0];
        int med_rep = 0;
        for (int k = 0; k < nr; k++)
            if (timed[k] == sorted[(nr - 1) / 2])
                med_rep = k;
        rd_free(sorted);
        // The credit waits of that rep, averaged over the teachers: the mean over all timed reps
        // plus the close after them was written as the median rep's, and could exceed its wall.
        double my_blocked = blocked_s[o.warmup + med_rep], blocked_sum = 0;
        MPI_Allreduce(&my_blocked, &blocked_sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        double blocked_ms_rep = blocked_sum / T * 1e3;
        double my = mine_s[o.warmup + med_rep], tmin, tmax, tsum;
        MPI_Allreduce(&my, &tmin, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(&my, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(&my, &tsum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        double per_rep = (double)n_emit * T;
        res[c] = (result){batch,
                          best,
                          median,
                          tmin,
                          tsum / size,
                          tmax,
                          per_rep / best,
                          per_rep / median,
                          glob[0] / glob[1],
                          glob[2] / glob[1],
                          blocked_ms_rep};
        rd_free(walls);
        rd_free(mine_s);
        rd_free(blocked_s);
        rd_target_sender_destroy(snd);
        rd_target_recv_destroy(rcv);
    }
    if (rank == 0) {
        printf("bench_targets: %d teacher(s) -> %d student(s), %ld targets per teacher per rep, "
               "step %d, max_in_flight %d, log %s, %d reps (+%d warm-up)\n",
               T, S, o.targets, o.step, o.in_flight, o.log ? "on" : "off", o.reps, o.warmup);
        printf("%8s %14s %14s %10s %10s %9s %9s %9s %11s\n", "batch", "targets/s_best",
               "targets/s_med", "bytes/tgt", "credit_B/t", "t_min", "t_avg", "t_max", "blocked_ms");
        for (int c = 0; c < o.n_batches; c++)
            printf("%8d %14.3e %14.3e %10.3f %10.4f %9.4f %9.4f %9.4f %11.2f\n", res[c].batch,
                   res[c].rate_best, res[c].rate_median, res[c].bytes_per_target,
                   res[c].credit_bytes_per_target, res[c].t_min, res[c].t_avg, res[c].t_max,
                   res[c].blocked_ms);
        if (o.json) {
            bench_json bj;
            FILE *f = bench_json_open(&bj, "bench_targets", o.json);
            if (!f) {
                g_json_fail = 1;
            } else {
                fprintf(f,
                        "{\"bench\":\"targets\",\"teachers\":%d,\"students\":%d,"
                        "\"targets_per_teacher\":%ld,\"step\":%d,\"max_in_flight\":%d,"
                        "\"log\":%d,\"reps\":%d,\"warmup\":%d,\"results\":[",
                        T, S, o.targets, o.step, o.in_flight, o.log, o.reps, o.warmup);
                for (int c = 0; c < o.n_batches; c++)
                    fprintf(f,
                            "%s{\"batch\":%d,\"targets_per_s_best\":%.6g,"
                            "\"targets_per_s_median\":%.6g,\"bytes_per_target\":%.6g,"
                            "\"credit_bytes_per_target\":%.6g,\"wall_s_best\":%.6g,"
                            "\"wall_s_median\":%.6g,\"t_min\":%.6g,\"t_avg\":%.6g,\"t_max\":%.6g,"
                            "\"sender_blocked_ms\":%.6g}",
                            c ? "," : "", res[c].batch, res[c].rate_best, res[c].rate_median,
                            res[c].bytes_per_target, res[c].credit_bytes_per_target, res[c].best_s,
                            res[c].median_s, res[c].t_min, res[c].t_avg, res[c].t_max,
                            res[c].blocked_ms);
                fprintf(f, "]}\n");
                if (bench_json_commit(&bj, "bench_targets") != 0)
                    g_json_fail = 1;
            }
        }
    }
    rd_target_log_close(log);
    MPI_Barrier(MPI_COMM_WORLD);
    if (o.log && rank == 0) {
        char *slash = strrchr(log_path, '/');
        if (slash)
            *slash = 0;
        if (bench_rmtree(log_path) != 0)
            fprintf(stderr, "cannot remove %s\n", log_path);
    }
    rd_free(samples);
    rd_free(logits);
    rd_free(mine);
    rd_free(zs);
    rd_free(has);
    rd_free(teachers);
    rd_free(students);
    MPI_Finalize();
    return g_json_fail;
}
