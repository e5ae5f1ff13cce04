// test_allreduce.c — data-parallel dense training over the ranks of a communicator.
//
// Run with 2 ranks (tests/mpi/testlist). Every rank builds the same model (same seed) and the
// same global batch of 2B examples; rank r trains on examples [rB, (r+1)B). After
// rd_dense_allreduce the averaged dense gradient must equal, within fp32 summation-order
// tolerance, the gradient of one process on the whole 2B batch at each of three steps; so must the
// rank-averaged sparse row gradients, the mean loss, and the parameters after each SGD update.
// Also: the allreduce of known values. Errors are counted per rank and summed with MPI_Allreduce;
// rank 0 reports.
#include "rd/config.h"
#include "rd/dense_optim.h"
#include "rd/error.h"
#include "rd/model.h"
#include "rd/rng.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BL = 5, U = 9, L = 6 }; // per-rank batch, unique rows per table, history length

static int n_errors;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "[rank %d] %s:%d: ", rank, __FILE__, __LINE__);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            n_errors++;                                                                            \
        }                                                                                          \
    } while (0)

static int rank;

static void model_config(rd_model_config *mc) {
    memset(mc, 0, sizeof *mc);
    snprintf(mc->name, sizeof mc->name, "dp");
    const char *fields[2] = {"user", "item"}, *tables[2] = {"u", "i"};
    for (int f = 0; f < 2; f++) {
        snprintf(mc->features[f].field, RD_NAME_MAX, "%s", fields[f]);
        snprintf(mc->features[f].table, RD_NAME_MAX, "%s", tables[f]);
        mc->features[f].pooling = RD_POOL_MEAN;
    }
    mc->n_features = 2;
    mc->seq = (rd_seq_config){.kind = RD_SEQ_TRANSFORMER,
                              .length = L,
                              .layers = 1,
                              .heads = 2,
                              .dim = 8,
                              .with_labels = 1};
    mc->n_mlp = 2;
    mc->mlp[0] = 16;
    mc->mlp[1] = 8;
    mc->n_tower = 1;
    mc->tower[0] = 4;
    mc->two_towers = 1;
    mc->layer_norm = 1;
    snprintf(mc->activation, sizeof mc->activation, "gelu");
}

// The global batch of 2 * BL examples; every rank generates the same one.
typedef struct global {
    float rows[2][U * 6];
    int32_t idx[2][2 * BL];
    int32_t seq[2 * BL * L];
    uint8_t seq_lab[2 * BL * L];
    float numeric[2 * BL];
    float labels[2 * BL];
    float teacher[2 * BL];
    uint8_t has[2 * BL];
} global;

static void make_global(global *g) {
    rd_rng r;
    rd_rng_seed(&r, 2024);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < U * 6; i++)
            g->rows[t][i] = 0.5f * (float)rd_rng_normal(&r);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 2 * BL; i++)
            g->idx[t][i] = (int32_t)rd_rng_below(&r, U);
    for (int i = 0; i < 2 * BL * L; i++) {
        g->seq[i] = i % 5 == 4 ? -1 : (int32_t)rd_rng_below(&r, U);
        g->seq_lab[i] = (uint8_t)rd_rng_below(&r, 2);
    }
    for (int i = 0; i < 2 * BL; i++) {
        g->numeric[i] = (float)rd_rng_normal(&r);
        g->labels[i] = (float)rd_rng_below(&r, 2);
        g->teacher[i] = (float)rd_rng_normal(&r);
        g->has[i] = i % 4 != 0;
    }
}

// Batch view of examples [first, first + n) of the global batch.
static void view(rd_batch *b, global *g, size_t first, size_t n, float *drows[2]) {
    memset(b, 0, sizeof *b);
    b->B = n;
    for (int t = 0; t < 2; t++) {
        b->rows[t] = g->rows[t];
        b->n_rows[t] = U;
        b->drows[t] = drows[t];
        b->feat_idx[t] = g->idx[t] + first;
        b->feat_slots[t] = 1;
    }
    b->seq_idx = g->seq + first * L;
    b->seq_labels = g->seq_lab + first * L;
    b->numeric = g->numeric + first;
    b->labels = g->labels + first;
    b->teacher_logits = g->teacher + first;
    b->has_target = g->has + first;
    b->alpha = 0.5f;
    b->temperature = 1.5f;
}

static rd_model *build(const rd_model_config *mc, size_t max_batch) {
    static const rd_table_config tables[2] = {{.name = "u", .dim = 6}, {.name = "i", .dim = 6}};
    rd_model_opts o = {.tables = tables,
                       .n_tables = 2,
                       .max_batch = max_batch,
                       .n_numeric = 1,
                       .opt_slots = rd_dense_optim_slots(RD_DENSE_ADAM),
                       .seed = 5};
    rd_model *m = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_model_create(mc, &o, &m, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "rd_model_create: %s", eb.msg);
    return m;
}

static void step(rd_model *m, const rd_batch *b) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_model_forward(m, b, &eb);
    if (rc == RD_OK)
        rc = rd_model_backward(m, b, &eb);
    RD_ASSERT_MSG(rc == RD_OK, "step: %s", eb.msg);
}

// max |a - b| / max(max |b|, tiny)
static double rel_diff(const float *a, const float *b, size_t n) {
    double err = 0.0, mx = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        err = d > err ? d : err;
        mx = fabs((double)b[i]) > mx ? fabs((double)b[i]) : mx;
    }
    return err / mx;
}

static double abs_diff(const float *a, const float *b, size_t n) {
    double err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        err = d > err ? d : err;
    }
    return err;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    RD_MPI_CHECK(MPI_Init(&argc, &argv));
    int size;
    RD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    RD_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    if (size != 2) {
        if (rank == 0)
            fprintf(stderr, "test_allreduce: needs 2 ranks, got %d: skipped\n", size);
        MPI_Finalize();
        return 77;
    }

    // 1. The allreduce averages known values, also for a count that is not a multiple of anything.
    float v[37];
    for (int i = 0; i < 37; i++)
        v[i] = (float)(rank + 1) * (float)i;
    rd_dense_allreduce(v, 37, MPI_COMM_WORLD);
    for (int i = 0; i < 37; i++)
        CHECK(v[i] == 1.5f * (float)i, "allreduce v[%d] = %g, want %g", i, (double)v[i], 1.5 * i);

    // 2. Data-parallel step vs one process on the concatenated batch.
    rd_model_config mc;
    model_config(&mc);
    static global g;
    make_global(&g);
    rd_model *dp = build(&mc, BL), *ref = build(&mc, 2 * BL);
    CHECK(dp->n_slab == ref->n_slab, "slab sizes differ");
    CHECK(memcmp(dp->params, ref->params, dp->n_slab * sizeof(float)) == 0,
          "same seed, different parameters");
    static float drows_dp[2][U * 6], drows_ref[2][U * 6];
    float *d_dp[2] = {drows_dp[0], drows_dp[1]}, *d_ref[2] = {drows_ref[0], drows_ref[1]};
    rd_batch bl, bg;
    view(&bl, &g, (size_t)rank * BL, BL, d_dp);
    view(&bg, &g, 0, 2 * BL, d_ref);
    // SGD for the parameter comparison: Adam's first steps divide by sqrt(v) and so amplify the
    // fp32 noise of gradients that are exactly 0 in exact arithmetic (the key biases of
    // attention: softmax ignores a shift common to all scores) to O(lr) differences.
    rd_train_config tc = {.lr = 0.05f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    snprintf(tc.optimizer, sizeof tc.optimizer, "sgd");
    rd_dense_optim o_dp, o_ref;
    RD_ASSERT(rd_dense_optim_init(&o_dp, &tc, NULL) == RD_OK);
    RD_ASSERT(rd_dense_optim_init(&o_ref, &tc, NULL) == RD_OK);
    double worst_g = 0.0, worst_p = 0.0, worst_rows = 0.0, loss_dp = 0.0;
    for (int it = 0; it < 3; it++) {
        step(dp, &bl);
        rd_dense_allreduce(dp->grads, dp->n_slab, MPI_COMM_WORLD);
        // Sparse: each rank's gradient is of its own mean loss; their average is the gradient
        // of the global mean (what the PS must apply when both ranks push).
        for (int t = 0; t < 2; t++)
            rd_dense_allreduce(drows_dp[t], U * 6, MPI_COMM_WORLD);
        double l = dp->loss;
        RD_MPI_CHECK(MPI_Allreduce(&l, &loss_dp, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
        loss_dp /= 2.0;
        step(ref, &bg);
        CHECK(fabs(loss_dp - ref->loss) <= 1e-5 * fabs(ref->loss),
              "step %d: mean of rank losses %.8f vs full-batch loss %.8f", it, loss_dp, ref->loss);
        double eg = rel_diff(dp->grads, ref->grads, dp->n_slab);
        worst_g = eg > worst_g ? eg : worst_g;
        CHECK(eg < 1e-5, "step %d: averaged dense gradient differs by %.3g (relative)", it, eg);
        for (int t = 0; t < 2; t++) {
            double er = rel_diff(drows_dp[t], drows_ref[t], U * 6);
            worst_rows = er > worst_rows ? er : worst_rows;
            CHECK(er < 1e-5, "step %d: table %d row gradients differ by %.3g", it, t, er);
        }
        rd_dense_optim_step(&o_dp, dp->params, dp->grads, dp->opt_state, dp->n_slab);
        rd_dense_optim_step(&o_ref, ref->params, ref->grads, ref->opt_state, ref->n_slab);
        double ep = abs_diff(dp->params, ref->params, dp->n_slab);
        worst_p = ep > worst_p ? ep : worst_p;
        CHECK(ep < 1e-6, "step %d: parameters differ by %.3g after the update", it, ep);
    }
    // The two ranks hold identical parameters (the replicas never drift apart).
    float *other = malloc(dp->n_slab * sizeof(float));
    RD_ASSERT(other != NULL);
    memcpy(other, dp->params, dp->n_slab * sizeof(float));
    RD_MPI_CHECK(MPI_Bcast(other, (int)dp->n_slab, MPI_FLOAT, 0, MPI_COMM_WORLD));
    CHECK(memcmp(other, dp->params, dp->n_slab * sizeof(float)) == 0, "replicas drifted apart");
    free(other);

    int total = 0;
    RD_MPI_CHECK(MPI_Allreduce(&n_errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (rank == 0) {
        printf("test_allreduce: 2 ranks x B=%d vs 1 x B=%d, 3 SGD steps: max relative gradient "
               "difference %.2e, rows %.2e, max parameter difference %.2e (lr %.0e)\n",
               BL, 2 * BL, worst_g, worst_rows, worst_p, (double)tc.lr);
        printf("test_allreduce: %s (%d errors)\n", total ? "FAILED" : "PASSED", total);
    }
    rd_model_destroy(dp);
    rd_model_destroy(ref);
    MPI_Finalize();
    return total ? 1 : 0;
}
