// bench_tokens.c — token-store throughput: append, raw LMDB scan, direct fetch, fetch through
// the owning PS rank.
//
// Usage: bench_tokens [--users U] [--per-user K] [--dim D] [--L L] [--batch R] [--iters N]
//                     [--rounds N] [--warmup N] [--inflight F] [--sync] [--compact]
//                     [--huge-pages auto|off] [--dir DIR] [--keep] [--verbose] [--json PATH]
//        mpiexec -n 2 bench_tokens ...   (rank 0 = 1 PS rank, rank 1 = 1 worker)
// Defaults: 2000 users x 1024 tokens of d = 64 fp32 (2.05 M records, ~600 MB of key + value
// bytes), fetches of L = 256 tokens, 256 requests per batch; 5 timed rounds of 20 batches each
// after 3 untimed batches.
// The store is built by world rank 0 in time order (every user gets its token of step t before
// any gets step t + 1, as a stream delivers them; batches of append_batch = 4096 records;
// MDB_NOSYNC unless --sync). Fetch times are uniform in [L, K], so every request finds L tokens.
// Appending in time order scatters each user's leaf pages over the whole file. --compact then
// measures on a `tokens compact` copy (rd_tokentool_compact: pages rewritten in key order, so a
// user's records are contiguous) instead, as an operator would serve a store that is no longer
// appended to; the build's figures stay those of the original.
// Figures (every throughput is the median of its rounds, with the slowest and fastest round):
//   append_tokens_per_s  records appended per second (the whole build)
//   append_write_bytes   bytes handed to write(2) during the build per record appended
//                        (/proc/self/io wchar; null where unknown): LMDB writes a commit's
//                        dirty pages whole, so once a commit's records land on as many leaf
//                        pages as it has records (users beyond a few thousand here), it tends
//                        to one 4 KiB page per record. The figure does not depend on the load
//                        of the machine as append_tokens_per_s does (docs/scaling.md, section 4)
//   lmdb_scan_gbps       raw MDB_NEXT scan touching every key and value byte, through the very
//                        handle (the same env, the same mapping) the PS rank then serves from
//                        (rd_token_store_scan_raw; key + value bytes per second; one untimed
//                        scan, then one scan per round)
//   direct_fetch_gbps    token bytes (found * d * 4) per second delivered by
//                        rd_token_store_fetch_batch on the PS rank's own handle
//   rpc_fetch_gbps       token bytes per second delivered to the worker's arrays through
//                        rd_token_client (F batches in flight, default 2); "n/a" with 1 rank
//   rpc_fetch_gbps_1     same with one batch in flight
//   ratio_scan           rpc_fetch_gbps / lmdb_scan_gbps (target >= 0.5)
// plus min/avg/max seconds per batch over all rounds (OSU style). All from the same run and env.
// Why the scan goes through the serving handle and comes first: its untimed pass maps every
// page of the store into the PS process, as a long-running PS has them. A fetch through a
// freshly opened handle pays the first touch of each page instead, and on a 2-core VM that
// halved the fetch figures of the first 20 batches (docs/iat.md, "Token-fetch benchmark").
// Why rounds and medians: the machine is shared; one noisy second must move one round, not the
// figure.
// --huge-pages auto (default, as tokens.huge_pages) has the PS rank run rd_token_store_map_huge
// on the built store before the scan, as a PS does after the IAT build: its pages are read back
// through a mapping advised MADV_HUGEPAGE, so that on a file system with large folios (ext4 on
// recent kernels) they are mapped as 2 MiB pages; --huge-pages off measures the store as the
// build left it in the page cache (4 KiB pages). JSON huge_pages says what was done.
// store_mapping (and JSON store_fs, store_map_kb) says whether the served store pages are 2 MiB
// pages: with the store on a tmpfs mounted huge=always (--dir there), the RPC fetch of a store
// as built was 2.9x faster on the 2-core PVM VM of docs/iat.md ("Token-fetch benchmark", the
// thirteenth session's paragraph).
#include "bench_args.h"
#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/comm.h"
#include "rd/config.h"
#include "rd/hash.h"
#include "rd/kv.h"
#include "rd/lmdbx.h"
#include "rd/log.h"
#include "rd/rng.h"
#include "rd/server.h"
#include "rd/tokens.h"
#include "rd/tokentool.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

// --dir, and the store's path in it (DIR/store.compact).
#define BT_DIR_MAX  RD_PATH_MAX
#define BT_PATH_MAX (BT_DIR_MAX + 32)

typedef struct opts {
    int users, per_user, dim, L, batch, iters, warmup, inflight, sync, keep, rounds, verbose;
    const char *dir;
    const char *json;
    int compact;
    int huge; // RD_TOKEN_HUGE_*: what the PS rank does with the built store before serving
} opts;

typedef struct stats3 {
    double min, avg, max;
} stats3;

#define MAX_ROUNDS 64

typedef struct results {
    double append_tokens_per_s, build_s;
    double append_write_bytes; // bytes written to the store per appended token; < 0: unknown
    double scan_gbps, scan_min, scan_max;
    double direct_gbps, direct_min, direct_max;
    stats3 direct_batch_s;
    double rpc_gbps, rpc_gbps_1; // < 0: not measured
    double rpc_min, rpc_max;     // slowest and fastest round of rpc_gbps
    stats3 rpc_batch_s;
    double store_bytes;
    double scan_bytes;
    double compact_s;     // --compact: seconds of `tokens compact` (verify + copy)
    double compact_bytes; // --compact: data.mdb bytes of the copy
    // Page faults of the serving rank (rank 0) per phase, minor and major (getrusage): the
    // timed scans, the direct batches, and the RPC batches it served (both in-flight settings).
    long scan_minflt, scan_majflt, direct_minflt, direct_majflt, rpc_minflt, rpc_majflt;
    long ps_huge_kb, worker_huge_kb; // AnonHugePages of the two ranks after the RPC phase
    // The serving rank's mapping of the store after the RPC phase (/proc/self/smaps, every
    // data.mdb mapping): resident kB and kB mapped by huge pages (PMD), and the store's file
    // system. On a file system without huge pages (ext4) every store page is a 4 KiB page
    // walk away; on tmpfs mounted with huge=always (or within_size) they are 2 MiB pages.
    long map_rss_kb, map_huge_kb;
    char store_fs[16];
    rd_token_map_stats map; // what rd_token_store_map_huge did before the scan (--huge-pages)
} results;

// AnonHugePages of this process in kB (/proc/self/smaps_rollup), -1 if unknown: whether the
// fetch buffers that ask for transparent huge pages (MADV_HUGEPAGE) got them.
static long anon_huge_kb(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

// Resident and huge-page-mapped kB of this process's data.mdb mappings (-1, -1 if unknown).
static void store_mapping(long *rss_kb, long *huge_kb) {
    *rss_kb = *huge_kb = -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return;
    char line[1024];
    int in = 0;
    long rss = 0, huge = 0, v;
    while (fgets(line, sizeof line, f)) {
        // A mapping's header line starts with "start-end perms"; its fields follow it.
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {
            size_t n = strlen(line);
            while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
                line[--n] = '\0';
            in = n >= 9 && strcmp(line + n - 9, "/data.mdb") == 0;
            continue;
        }
        if (!in)
            continue;
        if (sscanf(line, "Rss: %ld kB", &v) == 1)
            rss += v;
        else if (sscanf(line, "ShmemPmdMapped: %ld kB", &v) == 1 ||
                 sscanf(line, "FilePmdMapped: %ld kB", &v) == 1)
            huge += v;
    }
    fclose(f);
    *rss_kb = rss;
    *huge_kb = huge;
}

// The file system of path: "tmpfs", "ext4", ... or its magic number.
static void fs_name(const char *path, char *out, size_t cap) {
    struct statfs sf;
    if (statfs(path, &sf) != 0) {
        snprintf(out, cap, "unknown");
        return;
    }
    static const struct {
        unsigned long magic;
        const char *name;
    } fs[] = {{0x01021994UL, "tmpfs"}, {0xEF53UL, "ext4"},       {0x58465342UL, "xfs"},
              {0x9123683EUL, "btrfs"}, {0x6969UL, "nfs"},        {0x0BD00BD0UL, "lustre"},
              {0x47504653UL, "gpfs"},  {0x794c7630UL, "overlay"}};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        if ((unsigned long)sf.f_type == fs[i].magic) {
            snprintf(out, cap, "%s", fs[i].name);
            return;
        }
    snprintf(out, cap, "0x%lx", (unsigned long)sf.f_type);
}

static void faults(long *minflt, long *majflt) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *minflt = ru.ru_minflt;
    *majflt = ru.ru_majflt;
}

// An integer option value: all of `v` must be a number in [lo, hi], in the plain decimal every
// bench takes (bench_args.h: `1e3` too; strtol took ' 5' and '+5').
static int
int_opt(const char *name, const char *v, long lo, long hi, int *out, char *why, size_t cap) {
    long long x = 0;
    if (bench_int(NULL, "bench_tokens", name, v, lo, hi, &x) != 0) {
        snprintf(why, cap, "%s: '%s' is not an integer in %ld..%ld", name, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

// @return 0, 1 for --help, or -1 with the reason in why (the caller prints it and the usage).
static int parse(int argc, char **argv, opts *o, char *why, size_t cap) {
    *o = (opts){2000, 1024, 64, 256, 256, 20, 3, 2, 0, 0, 5, 0, NULL, NULL, 0, RD_TOKEN_HUGE_AUTO};
    why[0] = '\0';
    bench_seen seen = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (bench_once(&seen, NULL, "bench_tokens", a) != 0) {
            snprintf(why, cap, "%s given twice", a);
            return -1;
        }
        if (strcmp(a, "--sync") == 0) {
            o->sync = 1;
            continue;
        }
        if (strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
            continue;
        }
        if (strcmp(a, "--keep") == 0) {
            o->keep = 1;
            continue;
        }
        if (strcmp(a, "--compact") == 0) {
            o->compact = 1;
            continue;
        }
        static const struct {
            const char *name;
            size_t off;
            long lo, hi;
        } ints[] = {
            {"--users", offsetof(opts, users), 1, INT_MAX},
            {"--per-user", offsetof(opts, per_user), 1, INT_MAX},
            {"--dim", offsetof(opts, dim), 1, RD_TOKEN_MAX_DIM},
            {"--L", offsetof(opts, L), 1, INT_MAX},
            {"--batch", offsetof(opts, batch), 1, INT_MAX},
            {"--iters", offsetof(opts, iters), 1, INT_MAX},
            {"--rounds", offsetof(opts, rounds), 1, MAX_ROUNDS},
            {"--warmup", offsetof(opts, warmup), 0, INT_MAX},
            {"--inflight", offsetof(opts, inflight), 1, RD_TOKEN_CLIENT_MAX_INFLIGHT},
        };
        int known = 0;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
            if (strcmp(a, ints[k].name) == 0) {
                if (!v) {
                    snprintf(why, cap, "%s needs a value", a);
                    return -1;
                }
                if (int_opt(a, v, ints[k].lo, ints[k].hi, (int *)(void *)((char *)o + ints[k].off),
                            why, cap) != 0)
                    return -1;
                known = 1;
                i++;
                break;
            }
        if (known)
            continue;
        if (strcmp(a, "--huge-pages") == 0) {
            if (!v || (strcmp(v, "auto") != 0 && strcmp(v, "off") != 0)) {
                snprintf(why, cap, "--huge-pages: '%s' is neither auto nor off", v ? v : "");
                return -1;
            }
            o->huge = strcmp(v, "auto") == 0 ? RD_TOKEN_HUGE_AUTO : RD_TOKEN_HUGE_OFF;
            i++;
            continue;
        }
        if (strcmp(a, "--dir") == 0 || strcmp(a, "--json") == 0) {
            if (!v) {
                snprintf(why, cap, "%s needs a value", a);
                return -1;
            }
            // --dir was copied into 512 bytes: a longer one was cut, and the store built and
            // removed in the folder the cut path named.
            if (strcmp(a, "--dir") == 0 && strlen(v) >= BT_DIR_MAX) {
                snprintf(why, cap, "--dir: path too long (at most %d bytes)", BT_DIR_MAX - 1);
                return -1;
            }
            *(strcmp(a, "--dir") == 0 ? &o->dir : &o->json) = v;
            i++;
            continue;
        }
        snprintf(why, cap, "unknown option '%s'", a);
        return -1;
    }
    if (o->L > o->per_user) {
        snprintf(why, cap, "--L %d is more than --per-user %d (every fetch must find L tokens)",
                 o->L, o->per_user);
        return -1;
    }
    // The store is built in --dir/store (and copied to --dir/store.compact): one kept there by an
    // earlier --keep run was refused by the store's creation, exit 1, as a folder "not empty but
    // has no MANIFEST (not a token store ...)", which it is.
    for (int k = 0; o->dir && k < 2; k++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", o->dir, k ? "store.compact" : "store");
        if (bench_dir_used(p)) {
            snprintf(why, cap,
                     "--dir: %.160s is not empty (a store an earlier --keep run left?): remove "
                     "it or give another --dir",
                     p);
            return -1;
        }
    }
    // The timings of every batch and the fetch outputs, known from the options: a fetch's
    // arrays hold --batch x --L tokens (d floats, a label, a time, a mask byte each), one set for
    // the PS rank's direct fetch, about one for its reply, one per batch in flight on the worker.
    // A --batch 2000000000 was taken and the PS rank aborted in rd_xmalloc (exit 1), leaving the
    // store it had built behind; a --rounds x --iters beyond INT_MAX wrapped to a negative count.
    double n = (double)o->warmup + (double)o->rounds * (double)o->iters;
    if (n > INT_MAX) {
        snprintf(why, cap, "--warmup %d + --rounds %d x --iters %d: %.0f batches, more than %d",
                 o->warmup, o->rounds, o->iters, n, INT_MAX);
        return -1;
    }
    double out = (double)o->batch * o->L * (4.0 * o->dim + 13) + 20.0 * o->batch;
    double need = (2.0 + o->inflight) * out + 24.0 * n;
    unsigned long long phys = bench_phys_bytes();
    if (phys && need > (double)phys) {
        snprintf(why, cap,
                 "--batch %d (with --L %d, --dim %d, --inflight %d) needs %.0f bytes of memory, "
                 "more than the %llu bytes this machine has",
                 o->batch, o->L, o->dim, o->inflight, need, phys);
        return -1;
    }
    return 0;
}

// Token element j of (user, t).
static float tokval(uint64_t user, int64_t t, int j) {
    return (float)(rd_mix64(user * 0x9e3779b9u ^ (uint64_t)t * 131u ^ (uint64_t)j) >> 40) /
               (float)(1 << 24) -
           0.5f;
}

static uint64_t user_key(int u) {
    return rd_mix64((uint64_t)u + 1);
}

// Poll an MPI request with backoff (a blocked MPICH call spins a core).
static void wait_req(MPI_Request *r) {
    rd_backoff b;
    rd_backoff_reset(&b, 500);
    for (;;) {
        int done = 0;
        RD_MPI_CHECK(MPI_Test(r, &done, MPI_STATUS_IGNORE));
        if (done)
            return;
        rd_backoff_wait(&b);
    }
}

static void poll_barrier(MPI_Comm c) {
    MPI_Request r;
    RD_MPI_CHECK(MPI_Ibarrier(c, &r));
    wait_req(&r);
}

// ---------------------------------------------------------------------------------------------
// Build, scan, direct fetch (world rank 0)

// Bytes this process has passed to write(2) and its kind so far (/proc/self/io wchar), -1 if
// unknown. LMDB writes a commit's dirty pages with pwrite, so the build's wchar divided by the
// records appended is the store's write amplification in bytes per token, a figure that does not
// depend on the machine's load as the throughput does.
static double wchar_bytes(void) {
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return -1;
    char line[128];
    double v = -1;
    unsigned long long x;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "wchar: %llu", &x) == 1) {
            v = (double)x;
            break;
        }
    fclose(f);
    return v;
}

static int build(const opts *o, const char *store, results *res) {
    rd_token_store_opts so = {o->dim, RD_TOKEN_FP32, 1, 64ull << 20, 0, 4096, !o->sync, 0, 0};
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_token_store_create(store, &so, &s, &eb) != RD_OK) {
        fprintf(stderr, "bench_tokens: %s\n", eb.msg);
        return 1;
    }
    const size_t B = 4096, d = (size_t)o->dim;
    uint64_t *users = rd_xmalloc(B * 8), *ids = rd_xmalloc(B * 8), *items = rd_xmalloc(B * 8);
    int64_t *ts = rd_xmalloc(B * 8);
    float *tok = rd_xmalloc(B * d * 4), *labels = rd_xmalloc(B * 4);
    const uint64_t total = (uint64_t)o->users * (uint64_t)o->per_user;
    double w0 = wchar_bytes(), t0 = rd_mono_s(), gen = 0;
    int rc = RD_OK;
    for (uint64_t g0 = 0; g0 < total && rc == RD_OK; g0 += B) {
        double tg = rd_mono_s();
        size_t n = total - g0 < B ? (size_t)(total - g0) : B;
        for (size_t i = 0; i < n; i++) {
            uint64_t g = g0 + i; // time-major: step g / users, user g % users
            int u = (int)(g % (uint64_t)o->users);
            int64_t t = (int64_t)(g / (uint64_t)o->users);
            users[i] = user_key(u);
            ts[i] = t;
            ids[i] = g;
            items[i] = rd_mix64(g);
            labels[i] = (float)(g % 3 == 0);
            for (size_t j = 0; j < d; j++)
                tok[i * d + j] = tokval(users[i], t, (int)j);
        }
        gen += rd_mono_s() - tg; // generating the data is not the store's cost
        rd_token_batch b = {n, users, ts, ids, tok, labels, items, NULL, NULL};
        rc = rd_token_store_append(s, &b, &eb);
    }
    res->build_s = rd_mono_s() - t0 - gen;
    res->append_tokens_per_s = (double)total / res->build_s;
    double w1 = wchar_bytes();
    res->append_write_bytes = w0 >= 0 && w1 >= w0 && total ? (w1 - w0) / (double)total : -1;
    rd_token_stats st;
    if (rc == RD_OK)
        rc = rd_token_store_stats(s, &st, NULL, &eb);
    if (rc == RD_OK)
        res->store_bytes = (double)st.file_bytes;
    rd_token_store_destroy(s);
    rd_free(users);
    rd_free(ids);
    rd_free(items);
    rd_free(ts);
    rd_free(tok);
    rd_free(labels);
    if (rc != RD_OK) {
        fprintf(stderr, "bench_tokens: build: %s\n", eb.msg);
        return 1;
    }
    return 0;
}

// Median, min and max of n values (n <= MAX_ROUNDS).
static void median_of(const double *v, int n, double *med, double *lo, double *hi) {
    double t[MAX_ROUNDS];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
    *med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    *lo = t[0];
    *hi = t[n - 1];
}

// Raw cursor scan through the serving handle: one untimed pass, then one per round.
static int scan(const opts *o, rd_token_store *s, results *res) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    double g[MAX_ROUNDS];
    uint64_t sink = 0;
    for (int rep = -1; rep < o->rounds; rep++) {
        uint64_t bytes = 0, digest = 0;
        double t0 = rd_mono_s();
        if (rd_token_store_scan_raw(s, -1, &bytes, &digest, &eb) != RD_OK) {
            fprintf(stderr, "bench_tokens: scan: %s\n", eb.msg);
            return 1;
        }
        double dt = rd_mono_s() - t0;
        sink ^= digest;
        if (rep >= 0)
            g[rep] = (double)bytes / dt / 1e9;
        res->scan_bytes = (double)bytes;
    }
    median_of(g, o->rounds, &res->scan_gbps, &res->scan_min, &res->scan_max);
    if (sink == 42)
        printf("(sink)\n"); // keeps the loads alive
    return 0;
}

// The requests of batch b: users and times, the same on every rank.
static void make_batch(const opts *o, int b, uint64_t *users, int64_t *ts) {
    rd_rng r;
    rd_rng_split(&r, 2024, (uint64_t)b);
    for (int i = 0; i < o->batch; i++) {
        users[i] = user_key((int)rd_rng_below(&r, (uint64_t)o->users));
        ts[i] = o->L + (int64_t)rd_rng_below(&r, (uint64_t)(o->per_user - o->L + 1));
    }
}

typedef struct outs {
    rd_token_fetch_out o;
} outs;

static void outs_init(outs *x, const opts *o) {
    size_t R = (size_t)o->batch, L = (size_t)o->L;
    memset(x, 0, sizeof *x);
    x->o.tokens = rd_aligned_xalloc(R * L * (size_t)o->dim * 4);
    x->o.labels = rd_aligned_xalloc(R * L * 4);
    x->o.ts = rd_aligned_xalloc(R * L * 8);
    x->o.mask = rd_aligned_xalloc(R * L);
    x->o.n_found = rd_aligned_xalloc(R * 4);
    memset(x->o.tokens, 0, R * L * (size_t)o->dim * 4); // fault the pages in before timing
}

static void outs_free(outs *x) {
    rd_aligned_free(x->o.tokens);
    rd_aligned_free(x->o.labels);
    rd_aligned_free(x->o.ts);
    rd_aligned_free(x->o.mask);
    rd_aligned_free(x->o.n_found);
}

static uint64_t found_tokens(const outs *x, int R) {
    uint64_t n = 0;
    for (int i = 0; i < R; i++)
        n += x->o.n_found[i];
    return n;
}

static void stats_of(const double *t, int n, stats3 *s) {
    s->min = (double)INFINITY;
    s->max = 0;
    s->avg = 0;
    for (int i = 0; i < n; i++) {
        s->min = fmin(s->min, t[i]);
        s->max = fmax(s->max, t[i]);
        s->avg += t[i] / n;
    }
}

static int direct_fetch(const opts *o, rd_token_store *s, results *res) {
    uint64_t *users = rd_xmalloc((size_t)o->batch * 8);
    int64_t *ts = rd_xmalloc((size_t)o->batch * 8);
    outs x;
    outs_init(&x, o);
    const int timed = o->rounds * o->iters;
    double *t = rd_xmalloc((size_t)timed * sizeof *t), g[MAX_ROUNDS];
    uint64_t tokens = 0;
    double round_s = 0;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = RD_OK;
    for (int b = 0; b < o->warmup + timed && rc == RD_OK; b++) {
        make_batch(o, b, users, ts);
        double t0 = rd_mono_s();
        rc = rd_token_store_fetch_batch(s, (size_t)o->batch, users, ts, NULL, (size_t)o->L, &x.o,
                                        &eb);
        double dt = rd_mono_s() - t0;
        if (b < o->warmup)
            continue;
        int k = b - o->warmup;
        t[k] = dt;
        round_s += dt;
        tokens += found_tokens(&x, o->batch);
        if ((k + 1) % o->iters == 0) {
            g[k / o->iters] = (double)tokens * o->dim * 4 / round_s / 1e9;
            tokens = 0;
            round_s = 0;
        }
    }
    if (rc != RD_OK)
        fprintf(stderr, "bench_tokens: direct fetch: %s\n", eb.msg);
    else
        median_of(g, o->rounds, &res->direct_gbps, &res->direct_min, &res->direct_max);
    stats_of(t, timed, &res->direct_batch_s);
    rd_free(t);
    outs_free(&x);
    rd_free(users);
    rd_free(ts);
    return rc != RD_OK;
}

// ---------------------------------------------------------------------------------------------
// RPC (world rank 1 = worker)

// Batches 0 .. n-1 through the client with `inflight` outstanding (batch b uses slot
// b % inflight), one continuous pipeline. For each batch: its latency from start to completion
// (lat), the time it completed (done_at, seconds since t0) and the tokens it found.
static int rpc_ring(const opts *o,
                    rd_token_client *cl,
                    int inflight,
                    outs *x,
                    int n,
                    double t0,
                    double *lat,
                    double *done_at,
                    uint64_t *found,
                    rd_errbuf *eb) {
    uint64_t *users = rd_xmalloc((size_t)o->batch * 8);
    int64_t *ts = rd_xmalloc((size_t)o->batch * 8);
    int handle[RD_TOKEN_CLIENT_MAX_INFLIGHT];
    double t_start[RD_TOKEN_CLIENT_MAX_INFLIGHT];
    int rc = RD_OK;
    for (int b = 0; b < n + inflight && rc == RD_OK; b++) {
        int slot = b % inflight;
        if (b >= inflight) {
            int done_b = b - inflight;
            rc = rd_token_client_wait(cl, handle[slot], eb);
            if (rc != RD_OK)
                break;
            double now = rd_mono_s();
            lat[done_b] = now - t_start[slot];
            done_at[done_b] = now - t0;
            found[done_b] = found_tokens(&x[slot], o->batch);
            if (done_b == n - 1)
                break;
        }
        if (b < n) {
            make_batch(o, b, users, ts);
            t_start[slot] = rd_mono_s();
            rc = rd_token_client_fetch_start(cl, (size_t)o->batch, users, ts, NULL, (size_t)o->L,
                                             &x[slot].o, &handle[slot], eb);
        }
    }
    rd_free(users);
    rd_free(ts);
    return rc;
}

// The warm-up batches, then o->rounds rounds of o->iters batches in one pipeline (no refill
// between rounds); round r spans from the completion of its predecessor's last batch to the
// completion of its own last batch. The figure is the median round.
static int rpc_fetch(const opts *o, rd_token_client *cl, int inflight, results *res, int save) {
    outs x[RD_TOKEN_CLIENT_MAX_INFLIGHT];
    for (int k = 0; k < inflight; k++)
        outs_init(&x[k], o);
    const int timed = o->rounds * o->iters, n = o->warmup + timed;
    double *lat = rd_xmalloc((size_t)n * sizeof *lat);
    double *done_at = rd_xmalloc((size_t)n * sizeof *done_at), g[MAX_ROUNDS];
    uint64_t *found = rd_xmalloc((size_t)n * sizeof *found);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    const double t0 = rd_mono_s();
    int rc = rpc_ring(o, cl, inflight, x, n, t0, lat, done_at, found, &eb);
    for (int r = 0; r < o->rounds && rc == RD_OK; r++) {
        int first = o->warmup + r * o->iters, last = first + o->iters - 1;
        double from = first > 0 ? done_at[first - 1] : 0.0;
        uint64_t tokens = 0;
        for (int b = first; b <= last; b++)
            tokens += found[b];
        g[r] = (double)tokens * o->dim * 4 / (done_at[last] - from) / 1e9;
        if (o->verbose)
            fprintf(stderr, "bench_tokens: rpc round %d (%d in flight): %.3f GB/s\n", r + 1,
                    inflight, g[r]);
    }
    if (rc != RD_OK) {
        fprintf(stderr, "bench_tokens: rpc fetch: %s\n", eb.msg);
    } else if (save) {
        median_of(g, o->rounds, &res->rpc_gbps, &res->rpc_min, &res->rpc_max);
        stats_of(lat + o->warmup, timed, &res->rpc_batch_s);
    } else {
        double lo, hi;
        median_of(g, o->rounds, &res->rpc_gbps_1, &lo, &hi);
    }
    rd_free(lat);
    rd_free(done_at);
    rd_free(found);
    for (int k = 0; k < inflight; k++)
        outs_free(&x[k]);
    return rc != RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Report

static void fmt_g(char *buf, size_t cap, double v) {
    if (v < 0)
        snprintf(buf, cap, "n/a");
    else
        snprintf(buf, cap, "%.3f", v);
}

// A figure for the JSON: null when not measured (< 0), else at full precision.
static void json_num(char *buf, size_t cap, double v) {
    if (v < 0)
        snprintf(buf, cap, "null");
    else
        snprintf(buf, cap, "%.6g", v);
}

// --compact: replace the built store by its compacted copy (<store>.compact); `store` then names
// the copy. The original is removed first thing after the copy, to halve the disk use.
static int compact_store(char *store, size_t cap, results *res) {
    char copy[BT_PATH_MAX];
    if (snprintf(copy, sizeof copy, "%s.compact", store) >= (int)sizeof copy ||
        strlen(copy) >= cap) {
        fprintf(stderr, "bench_tokens: store path too long\n");
        return 1;
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    double t0 = rd_mono_s();
    if (rd_tokentool_compact(store, copy, &eb) != RD_OK) {
        fprintf(stderr, "bench_tokens: compact: %s\n", eb.msg);
        return 1;
    }
    res->compact_s = rd_mono_s() - t0;
    if (bench_rmtree(store) != 0)
        fprintf(stderr, "bench_tokens: could not remove %s\n", store);
    memcpy(store, copy, strlen(copy) + 1);
    char data[BT_PATH_MAX + 32];
    snprintf(data, sizeof data, "%s/shard-0000/data.mdb", store);
    struct stat st;
    res->compact_bytes = stat(data, &st) == 0 ? (double)st.st_size : 0;
    return 0;
}

// Prints the figures and writes --json; -1 when the JSON could not be written.
static int report(const opts *o, const results *r, int ranks) {
    char rpc[32], rpc1[32], ratio[32];
    fmt_g(rpc, sizeof rpc, r->rpc_gbps);
    fmt_g(rpc1, sizeof rpc1, r->rpc_gbps_1);
    fmt_g(ratio, sizeof ratio, r->rpc_gbps < 0 ? -1 : r->rpc_gbps / r->scan_gbps);
    printf("bench_tokens: %d users x %d tokens, d = %d fp32, L = %d, %d requests/batch, %d rounds "
           "of %d timed batches (+%d warm-up), %d rank(s), %s; medians of the rounds\n",
           o->users, o->per_user, o->dim, o->L, o->batch, o->rounds, o->iters, o->warmup, ranks,
           o->sync ? "fsync per commit" : "MDB_NOSYNC");
    printf("  %-26s %14.0f   (build %.2f s, data.mdb %.0f MB)\n", "append_tokens_per_s",
           r->append_tokens_per_s, r->build_s, r->store_bytes / 1e6);
    char wb[32];
    fmt_g(wb, sizeof wb, r->append_write_bytes);
    printf("  %-26s %14s   (bytes written per token appended, /proc/self/io wchar; one record "
           "is %d B of key and value)\n",
           "append_write_bytes", wb, RD_TOKEN_KEY_BYTES + RD_TOKEN_VALUE_FIXED + 4 * o->dim);
    if (o->compact)
        printf("  %-26s %14.2f   (tokens compact: verify + copy in key order; data.mdb %.0f MB); "
               "the figures below are of the copy\n",
               "compact_s", r->compact_s, r->compact_bytes / 1e6);
    printf("  %-26s %14s   (%u of %u shards re-read: %s; %.2f s; %lld of %lld kB in 2 MiB pages "
           "then)\n",
           "huge_pages", o->huge == RD_TOKEN_HUGE_AUTO ? "auto" : "off", r->map.reread,
           r->map.shards, rd_token_huge_note_text(r->map.note), r->map.seconds,
           (long long)r->map.huge_kb, (long long)r->map.resident_kb);
    printf("  %-26s %14.3f   (rounds %.3f..%.3f; %.0f MB of key+value per scan)\n",
           "lmdb_scan_gbps", r->scan_gbps, r->scan_min, r->scan_max, r->scan_bytes / 1e6);
    printf("  %-26s %14.3f   (rounds %.3f..%.3f; s/batch min %.4f avg %.4f max %.4f)\n",
           "direct_fetch_gbps", r->direct_gbps, r->direct_min, r->direct_max, r->direct_batch_s.min,
           r->direct_batch_s.avg, r->direct_batch_s.max);
    if (r->rpc_gbps >= 0)
        printf("  %-26s %14s   (rounds %.3f..%.3f; %d in flight; s/batch min %.4f avg %.4f max "
               "%.4f)\n",
               "rpc_fetch_gbps", rpc, r->rpc_min, r->rpc_max, o->inflight, r->rpc_batch_s.min,
               r->rpc_batch_s.avg, r->rpc_batch_s.max);
    else
        printf("  %-26s %14s   (run with mpiexec -n 2 for the PS path)\n", "rpc_fetch_gbps", rpc);
    printf("  %-26s %14s\n", "rpc_fetch_gbps_1", rpc1);
    printf("  %-26s %14s   (rpc_fetch_gbps / lmdb_scan_gbps; target >= 0.5)\n", "ratio_scan",
           ratio);
    // Page faults of the serving rank per batch: a first touch of a store page that is not in
    // its page table (or not in memory: major) costs a fault, which a scattered store pays per
    // page visited.
    const double nb = (double)(o->warmup + o->rounds * o->iters);
    printf("  %-26s scan %.0f minor + %ld major in %d scans; direct %.1f + %.2f per batch; rpc "
           "%.1f + %.2f per batch\n",
           "serving_rank_faults", (double)r->scan_minflt, r->scan_majflt, o->rounds + 1,
           (double)r->direct_minflt / nb, (double)r->direct_majflt / nb,
           ranks > 1 ? (double)r->rpc_minflt / (2 * nb) : 0.0,
           ranks > 1 ? (double)r->rpc_majflt / (2 * nb) : 0.0);
    if (ranks > 1) {
        printf("  %-26s PS rank %ld kB, worker %ld kB (AnonHugePages after the RPC phase)\n",
               "transparent_huge_pages", r->ps_huge_kb, r->worker_huge_kb);
        printf("  %-26s %s; data.mdb %ld kB resident, %ld kB of it in huge pages (PS rank after "
               "the RPC phase)\n",
               "store_mapping", r->store_fs, r->map_rss_kb, r->map_huge_kb);
    }
    if (o->json) {
        bench_json bj;
        FILE *f = bench_json_open(&bj, "bench_tokens", o->json);
        if (!f)
            return -1;
        // The JSON carries the figures at full precision (%.6g), the same for a median and its
        // range, so that min <= median <= max holds in the file as it does in the run (the
        // printed 3 decimals would round a slow run's median below its slowest round).
        // With 1 rank nothing went through the PS: the RPC figures are null, its seconds per
        // batch too (they were [0, 0, 0], a batch in no time).
        char rj[32], r1j[32], raj[32], rrange[80], rbatch[120], cs[32], wj[32];
        snprintf(cs, sizeof cs, o->compact ? "%.3f" : "null", r->compact_s);
        if (r->rpc_gbps < 0) {
            snprintf(rrange, sizeof rrange, "null");
            snprintf(rbatch, sizeof rbatch, "null");
        } else {
            snprintf(rrange, sizeof rrange, "[%.6g, %.6g]", r->rpc_min, r->rpc_max);
            snprintf(rbatch, sizeof rbatch, "[%.6f, %.6f, %.6f]", r->rpc_batch_s.min,
                     r->rpc_batch_s.avg, r->rpc_batch_s.max);
        }
        json_num(rj, sizeof rj, r->rpc_gbps);
        json_num(wj, sizeof wj, r->append_write_bytes);
        json_num(r1j, sizeof r1j, r->rpc_gbps_1);
        json_num(raj, sizeof raj, r->rpc_gbps < 0 ? -1 : r->rpc_gbps / r->scan_gbps);
        fprintf(f,
                "{\"bench\": \"tokens\", \"users\": %d, \"tokens_per_user\": %d, \"dim\": %d, "
                "\"L\": %d, \"batch\": %d, \"iters\": %d, \"rounds\": %d, \"warmup\": %d, "
                "\"ranks\": %d, \"inflight\": %d, \"sync\": %d,\n"
                " \"append_tokens_per_s\": %.0f, \"append_write_bytes\": %s, "
                "\"lmdb_scan_gbps\": %.6g, "
                "\"direct_fetch_gbps\": %.6g, \"rpc_fetch_gbps\": %s, \"rpc_fetch_gbps_1\": %s, "
                "\"ratio_scan\": %s,\n"
                " \"store_bytes\": %.0f, \"direct_batch_s\": [%.6f, %.6f, %.6f], "
                "\"rpc_batch_s\": %s,\n"
                " \"lmdb_scan_gbps_range\": [%.6g, %.6g], \"direct_fetch_gbps_range\": [%.6g, "
                "%.6g], \"rpc_fetch_gbps_range\": %s,\n"
                " \"compacted\": %s, \"compact_s\": %s,\n"
                " \"faults\": {\"scan_minor\": %ld, \"scan_major\": %ld, \"direct_minor\": %ld, "
                "\"direct_major\": %ld, \"rpc_minor\": %ld, \"rpc_major\": %ld},\n"
                " \"anon_huge_kb\": {\"ps\": %ld, \"worker\": %ld},\n"
                " \"store_fs\": \"%s\", \"store_map_kb\": {\"resident\": %ld, \"huge\": %ld},\n"
                " \"huge_pages\": {\"mode\": \"%s\", \"shards\": %u, \"reread\": %u, \"note\": "
                "\"%s\", \"seconds\": %.4f}}\n",
                o->users, o->per_user, o->dim, o->L, o->batch, o->iters, o->rounds, o->warmup,
                ranks, o->inflight, o->sync, r->append_tokens_per_s, wj, r->scan_gbps,
                r->direct_gbps, rj, r1j, raj, r->store_bytes, r->direct_batch_s.min,
                r->direct_batch_s.avg, r->direct_batch_s.max, rbatch, r->scan_min, r->scan_max,
                r->direct_min, r->direct_max, rrange, o->compact ? "true" : "false", cs,
                r->scan_minflt, r->scan_majflt, r->direct_minflt, r->direct_majflt, r->rpc_minflt,
                r->rpc_majflt, r->ps_huge_kb, r->worker_huge_kb, r->store_fs, r->map_rss_kb,
                r->map_huge_kb, o->huge == RD_TOKEN_HUGE_AUTO ? "auto" : "off", r->map.shards,
                r->map.reread, rd_token_huge_note_text(r->map.note), r->map.seconds);
        if (bench_json_commit(&bj, "bench_tokens") != 0)
            return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_mpi_init(&argc, &argv, MPI_THREAD_SINGLE, &eb) != RD_OK) {
        fprintf(stderr, "%s\n", eb.msg);
        return 1;
    }
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rd_log_init(RD_LOG_LEVEL_WARN, rank, NULL);
    opts o;
    char why[256];
    int pst = parse(argc, argv, &o, why, sizeof why);
    // Only rank 0 probes --json (ranks probing one path at once race); all follow its verdict.
    // It prints the reason itself ("is a directory", "Permission denied"), which the message
    // made here left out.
    if (pst == 0 && rank == 0 && o.json && bench_json_ok(stderr, "bench_tokens", o.json) != 0) {
        why[0] = '\0';
        pst = -1;
    }
    MPI_Bcast(&pst, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (pst == 1) {
        if (rank == 0)
            printf("usage: [mpiexec -n 2] bench_tokens [--users U] [--per-user K] [--dim D] "
                   "[--L L] [--batch R] [--iters N] [--rounds 1..%d] [--warmup N] "
                   "[--inflight 1..%d] [--sync] [--compact] [--huge-pages auto|off] [--dir DIR] "
                   "[--keep] [--verbose] [--json PATH]\n",
                   MAX_ROUNDS, RD_TOKEN_CLIENT_MAX_INFLIGHT);
        rd_mpi_finalize(0);
        return 0;
    }
    if (pst != 0 || size > 2) {
        if (rank == 0 && size > 2)
            fprintf(stderr, "bench_tokens: %d ranks: run with 1 or 2\n", size);
        else if (rank == 0 && why[0])
            fprintf(stderr, "bench_tokens: %s\n", why);
        if (rank == 0)
            fprintf(stderr,
                    "usage: [mpiexec -n 2] bench_tokens [--users U] [--per-user K] [--dim D] "
                    "[--L L] [--batch R] [--iters N] [--rounds 1..%d] [--warmup N] "
                    "[--inflight 1..%d] [--sync] [--compact] [--huge-pages auto|off] [--dir DIR] "
                    "[--keep] [--verbose] [--json PATH]\n",
                    MAX_ROUNDS, RD_TOKEN_CLIENT_MAX_INFLIGHT);
        rd_mpi_finalize(2);
        return 2;
    }
    // The store folder: --dir/store, or a fresh temp folder made by rank 0.
    char base[BT_DIR_MAX] = {0}, store[BT_PATH_MAX];
    if (rank == 0) {
        if (o.dir) {
            snprintf(base, sizeof base, "%s", o.dir);
        } else {
            // A new folder (in $TMPDIR, else /tmp), removed however rank 0 ends unless --keep.
            if (bench_tmp_make("bench_tokens", "bench_tokens", base, sizeof base) != 0)
                MPI_Abort(MPI_COMM_WORLD, 1);
            if (o.keep)
                bench_tmp_keep();
        }
    }
    MPI_Request br;
    RD_MPI_CHECK(MPI_Ibcast(base, (int)sizeof base, MPI_CHAR, 0, MPI_COMM_WORLD, &br));
    wait_req(&br);
    snprintf(store, sizeof store, "%s/store", base);
    if (rank != 0 && o.compact) // where rank 0's compact_store puts the copy it serves
        snprintf(store, sizeof store, "%s/store.compact", base);
    results res;
    memset(&res, 0, sizeof res);
    res.rpc_gbps = res.rpc_gbps_1 = -1;
    int fail = 0;
    rd_token_store *s = NULL;
    if (rank == 0) {
        fail = build(&o, store, &res);
        fs_name(base, res.store_fs, sizeof res.store_fs);
        if (!fail && o.compact)
            fail = compact_store(store, sizeof store, &res);
        if (!fail) {
            rd_token_open_opts oo = {0};
            oo.mode = RD_TOKEN_WRITE;
            oo.no_sync = !o.sync;
            if (rd_token_store_open(store, &oo, &s, &eb) != RD_OK) {
                fprintf(stderr, "bench_tokens: %s\n", eb.msg);
                fail = 1;
            }
            // What the PS does once the IAT build is over (tokens.huge_pages; RD_TOKEN_OP_MAP).
            if (!fail && rd_token_store_map_huge(s, o.huge, &res.map, &eb) != RD_OK) {
                fprintf(stderr, "bench_tokens: %s\n", eb.msg);
                fail = 1;
            }
        }
        long f0, j0, f1, j1;
        faults(&f0, &j0);
        if (!fail)
            fail = scan(&o, s, &res);
        faults(&f1, &j1);
        res.scan_minflt = f1 - f0;
        res.scan_majflt = j1 - j0;
        if (!fail)
            fail = direct_fetch(&o, s, &res);
        faults(&f0, &j0);
        res.direct_minflt = f0 - f1;
        res.direct_majflt = j0 - j1;
    }
    int any_fail = 0;
    MPI_Request ar;
    RD_MPI_CHECK(MPI_Iallreduce(&fail, &any_fail, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &ar));
    wait_req(&ar);
    if (size == 2 && !any_fail) {
        // 1 PS rank (world 0) + 1 worker (world 1).
        rd_config cfg;
        rd_config_defaults(&cfg);
        cfg.cluster.ps_ranks = 1;
        cfg.cluster.n_jobs = 1;
        cfg.cluster.poll_us_max = 50;
        snprintf(cfg.cluster.jobs[0].name, RD_NAME_MAX, "teacher");
        snprintf(cfg.cluster.jobs[0].model, RD_NAME_MAX, "m");
        cfg.cluster.jobs[0].role = RD_JOB_TEACHER;
        cfg.cluster.jobs[0].ranks = 1;
        cfg.ps.n_tables = 1;
        snprintf(cfg.ps.tables[0].name, RD_NAME_MAX, "unused");
        cfg.ps.tables[0].dim = 4;
        cfg.ps.tables[0].optim.lr = 0.1f;
        cfg.ps.tables[0].capacity = 16;
        cfg.ps.tables[0].admit_count = 1;
        rd_comm *comm = NULL;
        if (rd_comm_create(MPI_COMM_WORLD, &cfg, &comm, &eb) != RD_OK) {
            fprintf(stderr, "bench_tokens: %s\n", eb.msg);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (comm->role_kind == RD_ROLE_PS) {
            rd_server *srv = NULL;
            rd_token_service *svc = NULL;
            if (rd_server_create(comm, &cfg, &srv, &eb) != RD_OK ||
                rd_token_service_create(srv, s, &svc, &eb) != RD_OK) {
                fprintf(stderr, "bench_tokens: %s\n", eb.msg);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            long f0, j0, f1, j1;
            faults(&f0, &j0);
            rd_server_run(srv);
            faults(&f1, &j1);
            res.rpc_minflt = f1 - f0;
            res.rpc_majflt = j1 - j0;
            res.ps_huge_kb = anon_huge_kb();
            store_mapping(&res.map_rss_kb, &res.map_huge_kb);
            rd_server_destroy(srv);
            rd_token_service_destroy(svc);
            double got[9];
            MPI_Request rr;
            RD_MPI_CHECK(MPI_Irecv(got, 9, MPI_DOUBLE, 1, 99, MPI_COMM_WORLD, &rr));
            wait_req(&rr);
            res.rpc_gbps = got[0];
            res.rpc_gbps_1 = got[1];
            res.rpc_batch_s = (stats3){got[2], got[3], got[4]};
            fail |= got[5] != 0;
            res.rpc_min = got[6];
            res.rpc_max = got[7];
            res.worker_huge_kb = (long)got[8];
        } else {
            rd_kv *kv = NULL;
            rd_token_client *cl = NULL;
            rd_token_store_info info;
            if (rd_kv_create(comm, &cfg, &kv, &eb) != RD_OK ||
                rd_token_store_read_manifest(store, &info, &eb) != RD_OK) {
                fprintf(stderr, "bench_tokens: %s\n", eb.msg);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            rd_token_client_opts co = {(int)info.n_shards, (int)info.dim, 50, 0, 0, 0};
            if (rd_token_client_create(comm, &co, &cl, &eb) != RD_OK) {
                fprintf(stderr, "bench_tokens: %s\n", eb.msg);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            int f = rpc_fetch(&o, cl, 1, &res, 0);
            f |= rpc_fetch(&o, cl, o.inflight, &res, 1);
            double huge = (double)anon_huge_kb();
            rd_token_client_destroy(cl);
            rd_kv_shutdown(kv);
            rd_kv_destroy(kv);
            double out[9] = {res.rpc_gbps,        res.rpc_gbps_1,      res.rpc_batch_s.min,
                             res.rpc_batch_s.avg, res.rpc_batch_s.max, (double)f,
                             res.rpc_min,         res.rpc_max,         huge};
            MPI_Request sr;
            RD_MPI_CHECK(MPI_Isend(out, 9, MPI_DOUBLE, 0, 99, MPI_COMM_WORLD, &sr));
            wait_req(&sr);
        }
        rd_comm_destroy(comm);
    }
    if (rank == 0) {
        rd_token_store_destroy(s);
        if (!any_fail && !fail && report(&o, &res, size) != 0)
            fail = 1;
        if (!o.keep) {
            if (bench_rmtree(o.dir ? store : base) != 0)
                fprintf(stderr, "bench_tokens: could not remove %s\n", o.dir ? store : base);
        }
    }
    poll_barrier(MPI_COMM_WORLD);
    int status = any_fail || fail;
    rd_mpi_finalize(status);
    return status;
}
