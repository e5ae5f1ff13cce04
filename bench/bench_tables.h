// bench_tables.h — what the benchmarks of embedding tables share (bench_table, bench_ckpt,
// bench_ps): the --optim option and the table config they build, so that all measure the same
// table.
#ifndef RD_BENCH_TABLES_H
#define RD_BENCH_TABLES_H

#include "rd/config.h"
#include "rd/optim.h"

#include <stdio.h>
#include <string.h>

/** --optim V: sgd|adagrad|adam|ftrl into *out; -1 otherwise, after a message to err (NULL: none,
 *  as on the MPI ranks that do not print). */
static inline int bench_optim(FILE *err, const char *prog, const char *v, int *out) {
    for (int k = 0; k < 4; k++)
        if (strcmp(v, rd_optim_name(k)) == 0) {
            *out = k;
            return 0;
        }
    if (err)
        fprintf(err, "%s: --optim: expected sgd|adagrad|adam|ftrl, got '%s'\n", prog, v);
    return -1;
}

/** The benchmarks' table: dim, the optimizer with fixed hyperparameters (lr 0.05), every key
 *  admitted at once, 65536 rows of initial capacity. */
static inline void bench_table_config(rd_table_config *tc, const char *name, int dim, int optim) {
    memset(tc, 0, sizeof *tc);
    snprintf(tc->name, sizeof tc->name, "%s", name);
    tc->dim = dim;
    tc->optim.kind = optim;
    tc->optim.lr = 0.05f;
    tc->optim.beta1 = 0.9f;
    tc->optim.beta2 = 0.999f;
    tc->optim.eps = 1e-8f;
    tc->optim.initial_accumulator = 0.1f;
    tc->optim.beta = 1.0f;
    tc->init_std = 0.01f;
    tc->admit_count = 1;
    tc->capacity = 1u << 16;
}

#endif
