// token_build.c — the run's token store built through the PS ranks against its single-process
// reference (3 ranks: 2 PS ranks + 1 teacher worker).
//
// `recdistill train` builds the store on the teacher's rank 0 through an rd_token_client: every
// token is appended by the PS rank that owns its user's shard, and in streaming mode every
// group's frozen previous tokens are fetched back through the PS. The reference builds the same
// store in this process with rd_source_build over rd_source_io_store (no PS, no messages). Checks:
//   - both stores hold the same records (user, ts, id, label, item, flags) in the same order on
//     the same shards, with tokens and side values equal to the bit;
//   - control: a reference built with another batch size differs, so that the comparison can
//     fail.
// Both schemes: user order (streaming with frozen prefixes fetched through the PS) and temporal.
#include "ps_test_util.h"

#include "rd/dataset.h"
#include "rd/source.h"
#include "rd/tokens.h"
#include "rd/trainer.h"

static int g_errs;

#define BATCH 48

static const char *yaml_fmt =
    "run: {name: tb, seed: 5, out_dir: %s/run}\n"
    "cluster:\n"
    "  ps_ranks: 2\n"
    "  poll_us_max: 100\n"
    "  jobs:\n"
    "    - {name: teacher, role: teacher, model: big}\n"
    "data:\n"
    "  source: synthetic\n"
    "  dir: %s/data\n"
    "  history_max: 8\n"
    "  synthetic: {events: 2400, users: 30, items: 150}\n"
    "  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}\n"
    "ps:\n"
    "  tables:\n"
    "    - {name: t_user, dim: 4}\n"
    "    - {name: t_item, dim: 4}\n"
    "    - {name: k_user, dim: 4}\n"
    "    - {name: k_item, dim: 4}\n"
    "models:\n"
    "  - name: big\n"
    "    features:\n"
    "      - {field: user, table: t_user}\n"
    "      - {field: item, table: t_item}\n"
    "    tokens: {scheme: %d, length: 6, kind: din, adapter: 4}\n"
    "    mlp: [8]\n"
    "  - name: src\n"
    "    features:\n"
    "      - {field: user, table: k_user}\n"
    "      - {field: item, table: k_item}\n"
    "    mlp: [8]\n"
    "tokens: {dim: 6, scheme: %d, sit_layers: 1, window: 4, source_model: src}\n"
    "train: {batch_size: %d, epochs: 2}\n"
    "output: {progress_every_s: 0}\n";

static void make_config(rd_config *cfg, const char *dir, int scheme) {
    t_config_yaml(cfg, "token_build", yaml_fmt, dir, dir, scheme, scheme, BATCH);
}

// Every record of a store, flattened: 7 header doubles (shard, user, ts, id, label, item, flags),
// then the dim token floats.
typedef struct flat {
    double *v;
    size_t n, cap, width;
    uint32_t shard;
} flat;

static int visit(const rd_token_record *r, void *user) {
    flat *f = user;
    if (f->n + f->width > f->cap) {
        f->cap = f->cap ? 2 * f->cap : 4096 * f->width;
        f->v = rd_xrealloc(f->v, f->cap * sizeof *f->v);
    }
    double *o = f->v + f->n;
    o[0] = (double)f->shard;
    o[1] = (double)r->user;
    o[2] = (double)r->ts;
    o[3] = (double)r->id;
    o[4] = (double)r->label;
    o[5] = (double)r->item;
    o[6] = (double)r->flags;
    for (size_t k = 0; k < f->width - 7; k++)
        o[7 + k] = (double)r->token[k];
    f->n += f->width;
    return 0;
}

// The records of every shard of the store in dir, shard by shard in key order.
static size_t read_store(const char *dir, flat *f, uint32_t *n_shards) {
    rd_token_open_opts oo = {.mode = RD_TOKEN_READ_ONLY};
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_token_store_open(dir, &oo, &s, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "open %s: %s", dir, eb.msg);
    rd_token_store_info in;
    rd_token_store_info_get(s, &in);
    RD_ASSERT_MSG(in.n_side == 0, "this test's stores have no side values");
    *n_shards = in.n_shards;
    memset(f, 0, sizeof *f);
    f->width = 7 + in.dim;
    for (f->shard = 0; f->shard < in.n_shards; f->shard++) {
        rc = rd_token_store_iterate(s, (int)f->shard, visit, f, &eb);
        RD_ASSERT_MSG(rc == RD_OK, "iterate %s shard %u: %s", dir, f->shard, eb.msg);
    }
    rd_token_store_destroy(s);
    return f->n / f->width;
}

// An empty store in dir with n_shards shards, as `recdistill train` creates it (cmd_train.c).
static rd_token_store *create_store(const rd_config *cfg, const char *dir, int n_shards) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store_opts so;
    int rc = rd_token_store_opts_from_config(&cfg->tokens, n_shards, &so, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "store opts: %s", eb.msg);
    so.no_sync = 1;
    rd_token_store *store = NULL;
    rc = rd_token_store_create(dir, &so, &store, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "create %s: %s", dir, eb.msg);
    return store;
}

// Build the reference store in dir with batch size B, in this process.
static void build_reference(const rd_config *cfg, const char *dir, size_t B, uint32_t n_shards) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_dataset *ds = NULL;
    int rc = rd_dataset_open(cfg->data.dir, 0, &ds, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "dataset: %s", eb.msg);
    rd_token_store *store = create_store(cfg, dir, (int)n_shards);
    rd_source_io io = rd_source_io_store(store);
    rc = rd_source_build(cfg, ds, &io, B, NULL, NULL, NULL, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "rd_source_build: %s", eb.msg);
    rd_token_store_destroy(store);
    rd_dataset_close(ds);
}

// Bitwise equal records; prints the first difference.
static int same(const flat *a, const flat *b, size_t *first) {
    if (a->n != b->n || a->width != b->width) {
        *first = (size_t)-1;
        return 0;
    }
    for (size_t k = 0; k < a->n; k++)
        if (memcmp(&a->v[k], &b->v[k], sizeof(double)) != 0) {
            *first = k / a->width;
            return 0;
        }
    return 1;
}

// One scheme: prepare, create the store, train (building it through the PS), compare.
static void run_scheme(int rank, const char *top, int scheme) {
    char dir[560];
    snprintf(dir, sizeof dir, "%s/s%d", top, scheme);
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    make_config(cfg, dir, scheme);
    t_prepare(cfg, 1);
    g_errs += t_train_session(MPI_COMM_WORLD, cfg, NULL, NULL, NULL);
    t_barrier(MPI_COMM_WORLD);

    if (rank == 0) {
        flat run, ref, other;
        uint32_t shards = 0, s2 = 0, s3 = 0;
        size_t n = read_store(cfg->tokens.store_dir, &run, &shards);
        char rdir[600], odir[600];
        snprintf(rdir, sizeof rdir, "%s/ref", dir);
        snprintf(odir, sizeof odir, "%s/other", dir);
        build_reference(cfg, rdir, BATCH, shards);
        build_reference(cfg, odir, BATCH + 5, shards);
        size_t n2 = read_store(rdir, &ref, &s2);
        size_t n3 = read_store(odir, &other, &s3);
        printf("scheme %d: %zu records on %u shards through the PS, %zu on %u in the reference\n",
               scheme, n, shards, n2, s2);
        // One token per event: the batch period (first epoch), the stream and the holdout.
        T_CHECK(&g_errs, n == 2400 && shards == 2, "scheme %d: %zu records on %u shards", scheme, n,
                shards);
        size_t at = 0;
        T_CHECK(&g_errs, same(&run, &ref, &at),
                "scheme %d: the store built through the PS differs from the reference at record "
                "%zu",
                scheme, at);
        T_CHECK(&g_errs, n3 == n2 && !same(&run, &other, &at),
                "scheme %d: control: a reference of another batch size equals the run's store",
                scheme);
        rd_free(run.v);
        rd_free(ref.v);
        rd_free(other.v);
    }
    t_barrier(MPI_COMM_WORLD);
    rd_free(cfg);
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 3)
        return t_mpi_refuse(rank, 1, "token_build needs 3 ranks");
    char dir[512];
    t_tmpdir(dir, sizeof dir, "token_build");
    run_scheme(rank, dir, 2);
    run_scheme(rank, dir, 1);
    return t_end("token_build", g_errs, dir);
}
