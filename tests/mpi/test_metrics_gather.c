// test_metrics_gather.c — rd_metrics_gather: every rank adds its own examples (a different
// number per rank, drawn from its own RNG stream); the root gathers them and its metrics must
// equal those of an accumulator that generated all ranks' examples locally. Non-root ranks keep
// their examples. Rounds with root 0 and root = last rank; a rank with no examples is included;
// each also in gather rounds of 7 examples a rank (rd__metrics_gather_rounds).
// Errors are summed with MPI_Allreduce and rank 0 reports. Run: mpiexec.mpich -n 3 ...
#include "rd/log.h"
#include "rd/metrics.h"
#include "rd/rng.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>

// Examples of rank r: 150 + 200 r of them, except rank 1 which has none; users shared.
static void fill(rd_metrics *m, int r) {
    rd_rng rng;
    rd_rng_split(&rng, 77, (uint64_t)r);
    int n = r == 1 ? 0 : 150 + 200 * r;
    for (int i = 0; i < n; i++) {
        float p = (float)rd_rng_below(&rng, 50) / 49.0f;
        float l = rd_rng_uniformf(&rng) < 0.1f + 0.8f * p ? 1.0f : 0.0f;
        RD_ASSERT(rd_metrics_add(m, p, l, rd_rng_below(&rng, 25)) == RD_OK);
    }
}

static int same(double a, double b) {
    return (isnan(a) && isnan(b)) || fabs(a - b) <= 1e-12;
}

// per_rank 0: rd_metrics_gather; else the gather in rounds of per_rank examples a rank.
static int check_round(int root, int rank, int size, size_t per_rank) {
    int errors = 0;
    rd_metrics *m = NULL, *ref = NULL;
    RD_ASSERT(rd_metrics_create(0, &m) == RD_OK);
    fill(m, rank);
    size_t before = rd_metrics_count(m);
    int rc = per_rank ? rd__metrics_gather_rounds(m, root, MPI_COMM_WORLD, per_rank)
                      : rd_metrics_gather(m, root, MPI_COMM_WORLD);
    if (rc != RD_OK) {
        fprintf(stderr, "[r%d] gather returned %d\n", rank, rc);
        errors++;
    }
    if (rank != root) {
        if (rd_metrics_count(m) != before) {
            fprintf(stderr, "[r%d] non-root count changed\n", rank);
            errors++;
        }
    } else {
        RD_ASSERT(rd_metrics_create(0, &ref) == RD_OK);
        for (int r = 0; r < size; r++)
            fill(ref, r);
        rd_metrics_result a, b;
        rd_metrics_compute(m, &a);
        rd_metrics_compute(ref, &b);
        if (a.n != b.n || a.positives != b.positives || a.users != b.users || !same(a.auc, b.auc) ||
            !same(a.gauc, b.gauc) || fabs(a.logloss - b.logloss) > 1e-9 || !a.auc_valid) {
            fprintf(stderr,
                    "[r%d] root %d: gathered n=%llu auc=%.15f gauc=%.15f, expected "
                    "n=%llu auc=%.15f gauc=%.15f\n",
                    rank, root, (unsigned long long)a.n, a.auc, a.gauc, (unsigned long long)b.n,
                    b.auc, b.gauc);
            errors++;
        }
        rd_metrics_destroy(ref);
    }
    rd_metrics_destroy(m);
    return errors;
}

int main(int argc, char **argv) {
    RD_MPI_CHECK(MPI_Init(&argc, &argv));
    int rank = 0, size = 1;
    RD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    RD_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    rd_log_init(RD_LOG_LEVEL_INFO, rank, "test");
    // Rounds of 7 examples (a rank's 550 in 79 rounds): how a holdout beyond 2^31 bytes moves.
    int errors = check_round(0, rank, size, 0) + check_round(size - 1, rank, size, 0) +
                 check_round(0, rank, size, 7) + check_round(size - 1, rank, size, 7);
    int total = 0;
    RD_MPI_CHECK(MPI_Allreduce(&errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (rank == 0)
        printf(total == 0 ? "test_metrics_gather: %d ranks: No Errors\n"
                          : "test_metrics_gather: %d ranks: errors\n",
               size);
    RD_MPI_CHECK(MPI_Finalize());
    return total == 0 ? 0 : 1;
}
