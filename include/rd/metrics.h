// rd/metrics.h — evaluation metrics of binary click prediction: AUC, GAUC, logloss, calibration.
//
// Defines:
//   rd_metrics               opaque accumulator of (prediction, label, user) examples, so that
//                            evaluation can stream examples batch by batch
//   rd_metrics_result        the metrics of everything added, with validity flags
//   rd_metrics_create/destroy/reset/count
//   rd_metrics_add()         one example;  rd_metrics_add_batch()  n examples, all or none
//   rd_metrics_add_logit()   the same by the model's logit; rd_metrics_add_logits() n of them
//   rd_metrics_compute()     AUC (exact, ties by average rank, O(n log n)), GAUC, logloss, ...
//   rd_metrics_merge()       append another accumulator (e.g. per-thread partials)
//   rd_metrics_gather()      collect the examples of every rank of a communicator on one rank
//   rd_metrics_auc()         exact AUC of two arrays; rd_metrics_auc_logits() by logits
//
// Conventions: predictions are given as probabilities in [0, 1] or as logits (prefer logits: a
// float sigmoid saturates, every logit below about -88.7 becoming 0.0f and above about 16.6
// 1.0f, which turns distinct scores into ties and changes AUC and GAUC; examples are stored by
// their logit either way, and logloss and calibration use the probability computed in double);
// labels are 0 or 1. AUC is the probability that a random positive scores above a random
// negative, counting ties as 1/2 (identical to the Mann-Whitney U with average ranks). When only
// one class is present AUC is undefined: it is reported as NaN with auc_valid = 0. GAUC is the
// mean of per-user AUCs weighted by each user's number of examples, over users that have both
// classes (others are skipped and not counted in the weights). Logloss clips predictions to
// [1e-7, 1 - 1e-7]. Calibration = mean prediction / mean label (NaN without positives).
//
// Memory: 24 bytes per example, grown geometrically with rd_realloc (fallible); compute sorts the
// stored examples in place (their order carries no meaning) and allocates nothing.
#ifndef RD_METRICS_H
#define RD_METRICS_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_METRICS_EPS 1e-7 // logloss clipping of predictions

typedef struct rd_metrics rd_metrics;

typedef struct rd_metrics_result {
    uint64_t n;             // examples
    uint64_t positives;     // examples with label 1
    uint64_t users;         // distinct users
    double auc;             // NaN unless auc_valid
    int auc_valid;          // 1 when both classes are present
    double gauc;            // NaN unless gauc_valid
    int gauc_valid;         // 1 when at least one user has both classes
    uint64_t gauc_users;    // users with both classes (those that count in GAUC)
    uint64_t gauc_examples; // their examples (the GAUC weight sum)
    double logloss;         // mean binary cross-entropy, clipped predictions; NaN when n = 0
    double mean_pred;       // NaN when n = 0
    double mean_label;      // NaN when n = 0
    double calibration;     // mean_pred / mean_label; NaN unless calibration_valid
    int calibration_valid;  // 1 when there is at least one positive
} rd_metrics_result;

/**
 * Create an empty accumulator.
 * @param[in]  capacity  examples to reserve (0 = a small default); it grows as needed
 * @param[out] out       the accumulator; free with rd_metrics_destroy
 * @return RD_OK or RD_ERR_NOMEM (*out = NULL)
 */
int rd_metrics_create(size_t capacity, rd_metrics **out);

/** Free an accumulator (NULL is fine). */
void rd_metrics_destroy(rd_metrics *m);

/** Forget every example, keep the memory. */
void rd_metrics_reset(rd_metrics *m);

/** Examples added so far. */
size_t rd_metrics_count(const rd_metrics *m);

/**
 * Add one example.
 * @return RD_OK; RD_ERR_ARG if pred is not a number in [0, 1] or label is not 0 or 1 (nothing
 *         added); RD_ERR_NOMEM if the storage cannot grow (nothing added)
 */
int rd_metrics_add(rd_metrics *m, float pred, float label, uint64_t user);

/** Add one example by its logit. @return RD_OK; RD_ERR_ARG if the logit is not finite or the
 *  label not 0 or 1 (nothing added); RD_ERR_NOMEM */
int rd_metrics_add_logit(rd_metrics *m, float logit, float label, uint64_t user);

/** Add n examples by their logits (finite): all of them, or none when one is invalid; as
 *  rd_metrics_add_batch. */
int rd_metrics_add_logits(rd_metrics *m,
                          const float *logit,
                          const float *label,
                          const uint64_t *user,
                          size_t n,
                          rd_errbuf *eb);

/**
 * Add n examples: all of them, or none when one is invalid.
 * @param[in]  pred   (n,) probabilities in [0, 1]
 * @param[in]  label  (n,) 0 or 1
 * @param[in]  user   (n,) user ids, or NULL (all examples belong to user 0)
 * @param[out] eb     on failure names the first bad example ("example 17: prediction nan ...")
 * @return RD_OK, RD_ERR_ARG, RD_ERR_NOMEM
 */
int rd_metrics_add_batch(rd_metrics *m,
                         const float *pred,
                         const float *label,
                         const uint64_t *user,
                         size_t n,
                         rd_errbuf *eb);

/**
 * Compute every metric over the examples added so far (they stay, so more can be added and the
 * metrics computed again).
 * @param[out] out  filled in every case; the undefined metrics are NaN with their flag 0
 * @return RD_OK, or RD_ERR_EMPTY when no example was added
 */
int rd_metrics_compute(rd_metrics *m, rd_metrics_result *out);

/** Append the examples of src to dst. @return RD_OK or RD_ERR_NOMEM (dst unchanged). */
int rd_metrics_merge(rd_metrics *dst, const rd_metrics *src);

/**
 * Collective over comm: rank `root` receives the examples of every rank (appended to its own,
 * in rank order); the other ranks keep theirs. Call it on every rank of comm.
 * The examples move in rounds of at most 2^31 bytes (MPI's int counts).
 * @return RD_OK; RD_ERR_NOMEM on root if the storage cannot grow; RD_ERR_RANGE when root would
 *         hold more than 2^31 - 1 examples (48 GiB); the return code is the same on every rank
 */
int rd_metrics_gather(rd_metrics *m, int root, MPI_Comm comm);

/** rd_metrics_gather's plan, for tests: examples per rank and round (a round moves at most
 *  INT_MAX bytes in all), the counts and displacements (in examples, from the start of root's
 *  storage) of round k, and the gather in rounds of per_rank (1..the default) examples. */
size_t rd__metrics_gather_per_rank(int size);
void rd__metrics_gather_round(const unsigned long long *counts,
                              int size,
                              int root,
                              size_t own,
                              size_t per_rank,
                              unsigned long long k,
                              int *cnt,
                              int *displs);
int rd__metrics_gather_rounds(rd_metrics *m, int root, MPI_Comm comm, size_t per_rank);

/**
 * Exact AUC of n (prediction, label) pairs, ties counted 1/2.
 * @param[out] auc  the AUC, or NaN when n = 0 or only one class is present
 * @return RD_OK, RD_ERR_EMPTY (n = 0 or one class), RD_ERR_ARG (bad prediction or label),
 *         RD_ERR_NOMEM
 */
int rd_metrics_auc(const float *pred, const float *label, size_t n, double *auc);

/** The same by logits (finite; RD_ERR_ARG otherwise). */
int rd_metrics_auc_logits(const float *logit, const float *label, size_t n, double *auc);

#ifdef __cplusplus
}
#endif
#endif // RD_METRICS_H
