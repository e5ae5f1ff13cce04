// bench_ckpt.c — how long one PS shard's checkpoint takes to write and to read back, without MPI:
// rd_ckpt_write_shard (LMDB write transaction, sync, rename) and rd_ckpt_read_shard (into empty
// tables, CRC checked), the PS side of a `train` checkpoint and of a resume. The figure to size
// Slurm's --signal lead time and ps.checkpoint_every_s with (docs/slurm.md): shards are written
// by their PS ranks in parallel, so a checkpoint of P shards of R rows takes about one shard's.
//
// Usage: bench_ckpt [--rows R] [--dim 64] [--optim sgd|adagrad|adam|ftrl] [--tables T]
//                   [--reps 3] [--dir DIR] [--json PATH]
// T tables of R rows each (keys 1..R, rows as rd_table_pull admits them), optimizer slots as
// the optimizer keeps them (adam 2, adagrad/ftrl 1-2, sgd 0). Each rep writes the shard into a
// fresh folder in a new folder made in DIR (default: in $TMPDIR or /tmp) and removed at the end,
// then reads it back into fresh tables. Figures (median and minimum over reps, wall time: the sync
// is most of a write):
//   write_s / read_s            seconds for the shard
//   write_mb_per_s / read_mb_per_s   the rows' bytes (keys and values) per second
//   rows_per_s                  rows written per second (median)
#include "bench_args.h"
#include "bench_tables.h"
#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/clock.h"
#include "rd/config.h"
#include "rd/hash.h"
#include "rd/optim.h"
#include "rd/table.h"
#include "rd/train_ckpt.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct opts {
    long long rows;
    int dim, optim, tables, reps;
    const char *dir, *json;
} opts;

static void usage(FILE *out) {
    fprintf(out, "usage: bench_ckpt [--rows R] [--dim 64] [--optim sgd|adagrad|adam|ftrl] "
                 "[--tables T] [--reps 3] [--dir DIR] [--json PATH]\n");
}

// @return 0, 1 for --help, -1 after a message naming the option.
static int parse(int argc, char **argv, opts *o) {
    *o = (opts){200000, 64, RD_OPT_ADAM, 1, 3, NULL, NULL};
    const char *P = "bench_ckpt";
    long long x = 0;
    bench_seen seen = {0};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (bench_once(&seen, stderr, P, a) != 0)
            return -1;
        if (strcmp(a, "--rows") == 0) {
            if (bench_int(stderr, P, a, v, 1, 1LL << 32, &o->rows) != 0)
                return -1;
        } else if (strcmp(a, "--dim") == 0) {
            if (bench_int(stderr, P, a, v, 1, 1024, &x) != 0)
                return -1;
            o->dim = (int)x;
        } else if (strcmp(a, "--tables") == 0) {
            if (bench_int(stderr, P, a, v, 1, RD_MAX_TABLES, &x) != 0)
                return -1;
            o->tables = (int)x;
        } else if (strcmp(a, "--reps") == 0) {
            if (bench_int(stderr, P, a, v, 1, 1000, &x) != 0)
                return -1;
            o->reps = (int)x;
        } else if (strcmp(a, "--dir") == 0 && v) {
            o->dir = v;
        } else if (strcmp(a, "--json") == 0 && v) {
            o->json = v;
        } else if (strcmp(a, "--optim") == 0 && v) {
            if (bench_optim(stderr, P, v, &o->optim) != 0)
                return -1;
        } else {
            fprintf(stderr, "%s: '%s': %s\n", P, a,
                    v ? "unknown option" : "unknown option, or an option without its value");
            return -1;
        }
    }
    // What main allocates from the options: the T tables of R rows it writes, and the T tables it
    // reads them back into, both alive during a read; a row is dim * (1 + slots) floats plus its
    // key, last-seen, count and the table's index (64 bytes counted). A --rows up to 2^32 was
    // taken, and the fill ran for minutes before the OOM killer or rd_xmalloc stopped it.
    double row = (double)o->dim * (1 + rd_optim_slots(o->optim)) * 4 + 64;
    double need = 2.0 * (double)o->rows * o->tables * row + 4096.0 * o->dim * 4;
    unsigned long long phys = bench_phys_bytes();
    if (phys && need > (double)phys) {
        fprintf(stderr,
                "%s: --rows %lld (with --tables %d, --dim %d, %s) needs %.0f bytes of memory, "
                "more than the %llu bytes this machine has\n",
                P, o->rows, o->tables, o->dim, rd_optim_name(o->optim), need, phys);
        return -1;
    }
    if (o->json && bench_json_ok(stderr, P, o->json) != 0)
        return -1;
    return 0;
}

static void med_min(double *x, int n, double *med, double *min) {
    qsort(x, (size_t)n, sizeof *x, bench_cmp_double);
    *med = n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
    *min = x[0];
}

// o->tables tables, filled with keys 1..rows when fill (else empty). @return RD_OK or an error.
static int make_tables(const opts *o, int fill, rd_table **t, rd_errbuf *eb) {
    for (int k = 0; k < o->tables; k++) {
        rd_table_config tc;
        char name[16];
        snprintf(name, sizeof name, "t%d", k);
        bench_table_config(&tc, name, o->dim, o->optim);
        int rc = rd_table_create(&tc, k, 1, &t[k], eb);
        if (rc != RD_OK)
            return rc;
        if (!fill)
            continue;
        enum { CHUNK = 4096 };
        uint64_t keys[CHUNK];
        float *out = rd_xmalloc((size_t)CHUNK * (size_t)o->dim * sizeof *out);
        uint64_t salt = rd_hash_str(tc.name, 0);
        for (long long b = 0; b < o->rows && rc == RD_OK; b += CHUNK) {
            size_t n = (size_t)(o->rows - b < CHUNK ? o->rows - b : CHUNK);
            for (size_t i = 0; i < n; i++)
                keys[i] = rd_table_key(salt, (uint64_t)(b + (long long)i) + 1);
            rc = rd_table_pull(t[k], keys, n, 1, out);
            if (rc != RD_OK)
                rd_err_set(eb, rc, "filling table %s: out of memory at %lld rows", tc.name, b);
        }
        rd_free(out);
        if (rc != RD_OK)
            return rc;
    }
    return RD_OK;
}

static void free_tables(rd_table **t, int n) {
    for (int k = 0; k < n; k++) {
        rd_table_destroy(t[k]);
        t[k] = NULL;
    }
}

int main(int argc, char **argv) {
    opts o;
    int pst = parse(argc, argv, &o);
    if (pst != 0) {
        usage(pst == 1 ? stdout : stderr);
        return pst == 1 ? 0 : 2;
    }
    if (bench_one_process(stderr, "bench_ckpt") != 0)
        return 2;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // The folder the shards go to: a new one in DIR (it must exist), else in $TMPDIR or /tmp,
    // removed at the end. The reps went straight into DIR/rep-N, and each was removed whole
    // after its read: a DIR/rep-0 of the user's lost its files to a run that succeeded.
    char root[4096];
    if (o.dir) {
        DIR *d = opendir(o.dir);
        if (!d) {
            fprintf(stderr, "bench_ckpt: --dir: cannot open '%s': %s\n", o.dir, strerror(errno));
            return 2;
        }
        closedir(d);
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/bench_ckpt.XXXXXX", o.dir ? o.dir : tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "bench_ckpt: cannot make a folder %s: %s\n", root, strerror(errno));
        return 1;
    }
    bench_tmp_own(root); // removed however the run ends (a signal, an abort of rd_xmalloc)
    rd_table *t[RD_MAX_TABLES] = {0}, *r[RD_MAX_TABLES] = {0};
    int rc = make_tables(&o, 1, t, &eb);
    if (rc != RD_OK) {
        free_tables(t, o.tables);
        rmdir(root);
        fprintf(stderr, "bench_ckpt: %s\n", eb.msg);
        return 1;
    }
    double *wr = rd_xmalloc((size_t)o.reps * sizeof *wr),
           *rd = rd_xmalloc((size_t)o.reps * sizeof *rd);
    // A row as stored: the key, then dim * (1 + slots) floats, last-seen and count.
    size_t row_bytes = 8 + rd_table_row_floats(t[0]) * sizeof(float) + 16;
    double bytes = (double)o.rows * (double)o.tables * (double)row_bytes;
    char dir[4200] = "";
    for (int rep = 0; rep < o.reps && rc == RD_OK; rep++) {
        snprintf(dir, sizeof dir, "%s/rep-%d", root, rep);
        double w0 = rd_mono_s();
        rd_ckpt_shard_info info;
        rc = rd_ckpt_write_shard(dir, 0, 1, 1, 1, t, o.tables, &info, &eb);
        double w1 = rd_mono_s();
        if (rc != RD_OK)
            break;
        if ((rc = make_tables(&o, 0, r, &eb)) != RD_OK)
            break;
        double r0 = rd_mono_s();
        rc = rd_ckpt_read_shard(dir, 0, 1, r, o.tables, &info.crc, NULL, NULL, &eb);
        double r1 = rd_mono_s();
        free_tables(r, o.tables);
        wr[rep] = w1 - w0;
        rd[rep] = r1 - r0;
        if (rc == RD_OK)
            rc = rd_train_ckpt_rmtree(dir, &eb);
    }
    free_tables(t, o.tables);
    if (rc != RD_OK) {
        fprintf(stderr, "bench_ckpt: %s\n", eb.msg);
        rd_errbuf_clear(&eb);
        rd_train_ckpt_rmtree(root, &eb); // what the failed rep left
        return 1;
    }
    rmdir(root);
    double wmed, wmin, rmed, rmin;
    med_min(wr, o.reps, &wmed, &wmin);
    med_min(rd, o.reps, &rmed, &rmin);
    double mb = bytes / 1e6;
    printf("bench_ckpt: %d table(s) x %lld rows, dim %d, %s (%zu bytes a row), %d rep(s), in %s\n",
           o.tables, o.rows, o.dim, rd_optim_name(o.optim), row_bytes, o.reps, root);
    printf("%-8s %12s %12s %14s\n", "", "median s", "min s", "MB/s (median)");
    printf("%-8s %12.4f %12.4f %14.1f\n", "write", wmed, wmin, mb / wmed);
    printf("%-8s %12.4f %12.4f %14.1f\n", "read", rmed, rmin, mb / rmed);
    printf("rows/s written (median): %.0f\n", (double)o.rows * o.tables / wmed);
    rd_free(wr);
    rd_free(rd);
    if (o.json) {
        bench_json j;
        FILE *f = bench_json_open(&j, "bench_ckpt", o.json);
        if (!f)
            return 1;
        fprintf(f,
                "{\"bench\": \"ckpt\", \"rows\": %lld, \"tables\": %d, \"dim\": %d, "
                "\"optimizer\": \"%s\", \"row_bytes\": %zu, \"reps\": %d, \"write_s\": %.6f, "
                "\"write_s_min\": %.6f, \"read_s\": %.6f, \"read_s_min\": %.6f, "
                "\"write_mb_per_s\": %.3f, \"read_mb_per_s\": %.3f, \"rows_per_s\": %.1f}\n",
                o.rows, o.tables, o.dim, rd_optim_name(o.optim), row_bytes, o.reps, wmed, wmin,
                rmed, rmin, mb / wmed, mb / rmed, (double)o.rows * o.tables / wmed);
        if (bench_json_commit(&j, "bench_ckpt") != 0)
            return 1;
    }
    return 0;
}
