// rd/dense_optim.h — optimizers of the dense (replicated) parameters and their data-parallel sync.
//
// Defines:
//   rd_dense_optim_kind       SGD, Adam (L2 weight decay), AdamW (decoupled weight decay)
//   rd_dense_optim            transparent optimizer state: hyper-parameters + step count
//   rd_dense_optim_parse()    "sgd" | "adam" | "adamw" -> kind
//   rd_dense_optim_init()     from cfg.train (optimizer, lr, beta1, beta2, eps, weight_decay)
//   rd_dense_optim_slots()    optimizer-state floats per parameter (rd_model_opts.opt_slots)
//   rd_dense_optim_step()     one update over a parameter slab
//   rd_dense_allreduce()      average gradients across the ranks of one job (in place)
//   rd_dense_allreduce_counted()  the same, counting its cost on the allreduce channel
//
// Data parallelism (DESIGN.md): dense parameters are replicated inside a job and kept identical
// by averaging their gradients before every step (sparse gradients go to the PS instead). With
// equal per-rank batches, the average of the per-rank mean-loss gradients is the gradient of the
// mean loss over the concatenated batch, so R ranks of batch B step exactly like one of R * B
// (up to fp32 summation order).
#ifndef RD_DENSE_OPTIM_H
#define RD_DENSE_OPTIM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/error.h"
#include "rd/traffic.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rd_dense_optim_kind {
    RD_DENSE_SGD = 0,   // p -= lr (g + wd p)
    RD_DENSE_ADAM = 1,  // Adam on g + wd p (L2 regularisation)
    RD_DENSE_ADAMW = 2, // Adam on g, then p -= lr wd p (decoupled, Loshchilov & Hutter)
} rd_dense_optim_kind;

typedef struct rd_dense_optim {
    int kind;           // rd_dense_optim_kind
    float lr;           // learning rate (the trainer may change it between steps)
    float beta1, beta2; // Adam moment decay rates, in [0, 1)
    float eps;          // Adam denominator term, > 0
    float weight_decay; // >= 0
    uint64_t t;         // steps taken (Adam bias correction)
} rd_dense_optim;

/** @return RD_OK and *kind, or RD_ERR_ARG for a name other than sgd | adam | adamw. */
int rd_dense_optim_parse(const char *name, int *kind);

/** Fill `o` from the train section and reset the step count.
 *  @return RD_OK or RD_ERR_CONFIG ("train.optimizer: 'rmsprop' is not sgd|adam|adamw", lr <= 0,
 *  betas outside [0, 1), eps <= 0, weight_decay < 0). */
int rd_dense_optim_init(rd_dense_optim *o, const rd_train_config *train, rd_errbuf *eb);

/** @return the optimizer-state floats per parameter: 0 for SGD, 2 (m, v) for Adam/AdamW. */
size_t rd_dense_optim_slots(int kind);

/**
 * One update: params (n) -= f(grads (n)). state holds rd_dense_optim_slots(kind) slabs of n
 * floats back to back (m = state[0..n), v = state[n..2n)), zeroed before the first step.
 * Increments o->t. No allocation. A finite Adam/AdamW gradient whose v or v / (1 - b2^t) would
 * overflow fp32 (|g| beyond ~1.8e19 at t = 1) is clipped to +-2^63 for that step in m and v alike
 * and the step taken in double, as the PS's Adam does (rd/optim.h): a step of about lr, not 0 with
 * an inf v. Every other input gives the plain float results; a non-finite one a non-finite
 * parameter.
 */
void rd_dense_optim_step(
    rd_dense_optim *o, float *params, const float *grads, float *state, size_t n);

/** grads (n) <- the average of grads over the ranks of `comm` (MPI_Allreduce in place with
 *  MPI_SUM, then a scale by 1 / size; counts above INT_MAX are sent in chunks). Every rank of
 *  comm must call it with the same n. MPI errors abort (RD_MPI_CHECK). */
void rd_dense_allreduce(float *grads, size_t n, MPI_Comm comm);
/** rd_dense_allreduce, plus its cost per rank (rd_traffic_allreduce_cost of n floats over the
 *  size of comm) counted on RD_CHAN_ALLREDUCE of *t, both directions. t may be NULL. */
void rd_dense_allreduce_counted(float *grads, size_t n, MPI_Comm comm, rd_traffic *t);

#ifdef __cplusplus
}
#endif
#endif // RD_DENSE_OPTIM_H
