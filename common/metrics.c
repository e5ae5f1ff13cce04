// metrics.c — AUC, GAUC, logloss and calibration over a growing array of examples.
//
// AUC by pair counting over score-sorted examples: walking groups of equal score in ascending
// order, each positive in a group beats every negative seen in earlier groups and ties with the
// negatives of its own group (1/2 each). This equals the average-rank Mann-Whitney statistic and
// needs one O(n log n) sort. GAUC sorts by (user, score) and applies the same walk to each user's
// run of examples.
//
// The stored score is the logit, not the probability: a float sigmoid saturates (every logit
// below about -88.7 is 0.0f, every one above about 16.6 is 1.0f, and near 1 neighbouring logits
// share a float), which would turn distinct scores into ties and change the AUC. Probabilities
// given to rd_metrics_add are mapped to their logit in double (0 -> -inf, 1 -> +inf: the order is
// kept, equal probabilities stay equal); logloss and calibration take the probability back from
// the logit in double.
//
// Invariants: stored scores are not NaN (±inf only from probabilities 0 and 1), labels are 0/1
// (checked on entry), so the sort comparators define a total order. Workload: evaluation windows
// of 1e3..1e7 examples.
#include "rd/metrics.h"
#include "rd/alloc.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// One example: 24 bytes, no implicit padding (gathered as MPI_BYTE). The logit is kept in double
// so that a probability given to rd_metrics_add comes back for logloss to 1e-16.
typedef struct example {
    uint64_t user;
    double score; // the logit
    uint32_t label;
    uint32_t pad; // 0
} example;

_Static_assert(sizeof(example) == 24, "example must be 24 bytes without implicit padding");

struct rd_metrics {
    example *ex; // (cap,) examples, the first n used
    size_t n;
    size_t cap;
};

static int valid_pred(float p) {
    return p >= 0.0f && p <= 1.0f; // false for NaN
}

static int valid_label(float l) {
    return l == 0.0f || l == 1.0f;
}

// The logit of a probability in [0, 1], in double: monotone, so the order (and ties) are kept.
static double logit_of(float p) {
    if (p <= 0.0f)
        return -(double)INFINITY;
    if (p >= 1.0f)
        return (double)INFINITY;
    return log((double)p) - log1p(-(double)p);
}

// The probability of a stored score.
static double prob_of(double z) {
    return isinf(z) ? (z > 0.0 ? 1.0 : 0.0) : 1.0 / (1.0 + exp(-z));
}

// Make room for `more` examples. @return RD_OK or RD_ERR_NOMEM (nothing changed).
static int reserve(rd_metrics *m, size_t more) {
    if (more <= m->cap - m->n)
        return RD_OK;
    if (more > SIZE_MAX / sizeof(example) - m->n)
        return RD_ERR_NOMEM;
    size_t need = m->n + more;
    size_t cap = m->cap ? m->cap : need;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 / sizeof(example) ? need : cap * 2;
    example *ex = rd_realloc(m->ex, cap * sizeof(example));
    if (!ex)
        return RD_ERR_NOMEM;
    m->ex = ex;
    m->cap = cap;
    return RD_OK;
}

int rd_metrics_create(size_t capacity, rd_metrics **out) {
    *out = NULL;
    rd_metrics *m = rd_calloc(1, sizeof *m);
    if (!m)
        return RD_ERR_NOMEM;
    if (reserve(m, capacity ? capacity : 1024) != RD_OK) {
        rd_free(m);
        return RD_ERR_NOMEM;
    }
    *out = m;
    return RD_OK;
}

void rd_metrics_destroy(rd_metrics *m) {
    if (!m)
        return;
    rd_free(m->ex);
    rd_free(m);
}

void rd_metrics_reset(rd_metrics *m) {
    m->n = 0;
}

size_t rd_metrics_count(const rd_metrics *m) {
    return m->n;
}

int rd_metrics_add(rd_metrics *m, float pred, float label, uint64_t user) {
    if (!valid_pred(pred) || !valid_label(label))
        return RD_ERR_ARG;
    if (reserve(m, 1) != RD_OK)
        return RD_ERR_NOMEM;
    m->ex[m->n++] = (example){user, logit_of(pred), (uint32_t)label, 0};
    return RD_OK;
}

int rd_metrics_add_logit(rd_metrics *m, float logit, float label, uint64_t user) {
    if (!isfinite(logit) || !valid_label(label))
        return RD_ERR_ARG;
    if (reserve(m, 1) != RD_OK)
        return RD_ERR_NOMEM;
    m->ex[m->n++] = (example){user, (double)logit, (uint32_t)label, 0};
    return RD_OK;
}

// n examples by probability (logits = 0) or by logit (1): all of them, or none when one is
// invalid; `who` names the entry point in the messages.
static int add_n(rd_metrics *m,
                 const float *score,
                 int logits,
                 const float *label,
                 const uint64_t *user,
                 size_t n,
                 const char *who,
                 rd_errbuf *eb) {
    for (size_t i = 0; i < n; i++) {
        if (logits && !isfinite(score[i]))
            return rd_err_set(eb, RD_ERR_ARG, "%s: example %zu: logit %g is not finite", who, i,
                              (double)score[i]);
        if (!logits && !valid_pred(score[i]))
            return rd_err_set(eb, RD_ERR_ARG,
                              "%s: example %zu: prediction %g is not a probability in [0, 1]", who,
                              i, (double)score[i]);
        if (!valid_label(label[i]))
            return rd_err_set(eb, RD_ERR_ARG, "%s: example %zu: label %g is not 0 or 1", who, i,
                              (double)label[i]);
    }
    if (reserve(m, n) != RD_OK)
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory for %zu examples", who, m->n + n);
    for (size_t i = 0; i < n; i++)
        m->ex[m->n + i] =
            (example){user ? user[i] : 0, logits ? (double)score[i] : logit_of(score[i]),
                      (uint32_t)label[i], 0};
    m->n += n;
    return RD_OK;
}

int rd_metrics_add_batch(rd_metrics *m,
                         const float *pred,
                         const float *label,
                         const uint64_t *user,
                         size_t n,
                         rd_errbuf *eb) {
    return add_n(m, pred, 0, label, user, n, "rd_metrics_add_batch", eb);
}

int rd_metrics_add_logits(rd_metrics *m,
                          const float *logit,
                          const float *label,
                          const uint64_t *user,
                          size_t n,
                          rd_errbuf *eb) {
    return add_n(m, logit, 1, label, user, n, "rd_metrics_add_logits", eb);
}

int rd_metrics_merge(rd_metrics *dst, const rd_metrics *src) {
    if (reserve(dst, src->n) != RD_OK)
        return RD_ERR_NOMEM;
    if (src->n)
        memcpy(dst->ex + dst->n, src->ex, src->n * sizeof(example));
    dst->n += src->n;
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Sorting and the pair-counting walk.

static int by_pred(const void *pa, const void *pb) {
    const example *a = pa, *b = pb;
    return (a->score > b->score) - (a->score < b->score);
}

static int by_user_pred(const void *pa, const void *pb) {
    const example *a = pa, *b = pb;
    if (a->user != b->user)
        return a->user < b->user ? -1 : 1;
    return (a->score > b->score) - (a->score < b->score);
}

// AUC of ex[0..n) sorted by prediction; NaN when one class is missing.
static double auc_sorted(const example *ex, size_t n, uint64_t *npos_out) {
    double pairs = 0.0; // correctly ordered (positive, negative) pairs, ties count 1/2
    uint64_t neg_below = 0, npos = 0, nneg = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        uint64_t gpos = 0, gneg = 0;
        while (j < n && ex[j].score == ex[i].score) {
            if (ex[j].label)
                gpos++;
            else
                gneg++;
            j++;
        }
        pairs += (double)gpos * (double)neg_below + 0.5 * (double)gpos * (double)gneg;
        neg_below += gneg;
        npos += gpos;
        nneg += gneg;
        i = j;
    }
    if (npos_out)
        *npos_out = npos;
    if (npos == 0 || nneg == 0)
        return (double)NAN;
    return pairs / ((double)npos * (double)nneg);
}

int rd_metrics_compute(rd_metrics *m, rd_metrics_result *out) {
    memset(out, 0, sizeof *out);
    out->auc = out->gauc = out->logloss = (double)NAN;
    out->mean_pred = out->mean_label = out->calibration = (double)NAN;
    out->n = m->n;
    if (m->n == 0)
        return RD_ERR_EMPTY;

    // ---- logloss, means (order-independent)
    double sum_p = 0.0, sum_ll = 0.0;
    uint64_t npos = 0;
    for (size_t i = 0; i < m->n; i++) {
        double p = prob_of(m->ex[i].score);
        double pc = fmin(fmax(p, RD_METRICS_EPS), 1.0 - RD_METRICS_EPS);
        sum_p += p;
        if (m->ex[i].label) {
            npos++;
            sum_ll -= log(pc);
        } else {
            sum_ll -= log1p(-pc);
        }
    }
    out->positives = npos;
    out->logloss = sum_ll / (double)m->n;
    out->mean_pred = sum_p / (double)m->n;
    out->mean_label = (double)npos / (double)m->n;
    if (npos > 0) {
        out->calibration = out->mean_pred / out->mean_label;
        out->calibration_valid = 1;
    }

    // ---- AUC over all examples
    qsort(m->ex, m->n, sizeof(example), by_pred);
    out->auc = auc_sorted(m->ex, m->n, NULL);
    out->auc_valid = !isnan(out->auc);

    // ---- GAUC: per user runs, weighted by the user's example count
    qsort(m->ex, m->n, sizeof(example), by_user_pred);
    double wsum = 0.0;
    size_t i = 0;
    while (i < m->n) {
        size_t j = i;
        while (j < m->n && m->ex[j].user == m->ex[i].user)
            j++;
        out->users++;
        double a = auc_sorted(m->ex + i, j - i, NULL);
        if (!isnan(a)) {
            wsum += (double)(j - i) * a;
            out->gauc_users++;
            out->gauc_examples += j - i;
        }
        i = j;
    }
    if (out->gauc_users > 0) {
        out->gauc = wsum / (double)out->gauc_examples;
        out->gauc_valid = 1;
    }
    return RD_OK;
}

// Both exact-AUC entry points: scores are probabilities (logits = 0) or logits (1).
static int auc_of(const float *score, int logits, const float *label, size_t n, double *auc) {
    *auc = (double)NAN;
    for (size_t i = 0; i < n; i++)
        if (!(logits ? isfinite(score[i]) : valid_pred(score[i])) || !valid_label(label[i]))
            return RD_ERR_ARG;
    if (n == 0)
        return RD_ERR_EMPTY;
    if (n > SIZE_MAX / sizeof(example))
        return RD_ERR_NOMEM;
    example *ex = rd_malloc(n * sizeof(example));
    if (!ex)
        return RD_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        ex[i] = (example){0, logits ? (double)score[i] : logit_of(score[i]), (uint32_t)label[i], 0};
    qsort(ex, n, sizeof(example), by_pred);
    *auc = auc_sorted(ex, n, NULL);
    rd_free(ex);
    return isnan(*auc) ? RD_ERR_EMPTY : RD_OK;
}

int rd_metrics_auc(const float *pred, const float *label, size_t n, double *auc) {
    return auc_of(pred, 0, label, n, auc);
}

int rd_metrics_auc_logits(const float *logit, const float *label, size_t n, double *auc) {
    return auc_of(logit, 1, label, n, auc);
}

// ---------------------------------------------------------------------------------------------
// Gather on one rank.
//   1. every rank learns every rank's example count (MPI_Allgather), so that all of them make the
//      same plan;
//   2. the total must fit an int count of examples (the displacements are int); root grows its
//      storage, and its verdict is broadcast so that every rank returns the same code and nobody
//      enters a Gatherv alone;
//   3. rounds of MPI_Gatherv in units of one example (a contiguous type): in round k each rank
//      sends its examples [k q, (k + 1) q), q = per_rank, so that no round moves more than
//      2^31 bytes (MPI counts are int; a holdout of 10^8 examples on a few ranks is 2.4 GB), to
//      its place after root's own examples and those of the ranks before it.

size_t rd__metrics_gather_per_rank(int size) {
    size_t per = (size_t)INT_MAX / sizeof(example) / (size_t)(size > 0 ? size : 1);
    return per > 0 ? per : 1;
}

void rd__metrics_gather_round(const unsigned long long *counts,
                              int size,
                              int root,
                              size_t own,
                              size_t per_rank,
                              unsigned long long k,
                              int *cnt,
                              int *displs) {
    unsigned long long at = own, from = k * per_rank;
    for (int r = 0; r < size; r++) {
        unsigned long long c = r == root ? 0 : counts[r];
        unsigned long long left = c > from ? c - from : 0;
        cnt[r] = (int)(left < per_rank ? left : per_rank);
        displs[r] = (int)(at + (c > from ? from : c));
        at += c;
    }
}

int rd__metrics_gather_rounds(rd_metrics *m, int root, MPI_Comm comm, size_t per_rank) {
    int rank = 0, size = 1;
    RD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    RD_MPI_CHECK(MPI_Comm_size(comm, &size));
    RD_ASSERT(per_rank >= 1 && per_rank <= rd__metrics_gather_per_rank(size));
    unsigned long long mine = m->n;
    // 1. (P small counters: out-of-memory here aborts, STYLE.md tier 3)
    unsigned long long *counts = rd_xmalloc((size_t)size * sizeof *counts);
    int *cnt = rd_xcalloc((size_t)size, sizeof *cnt);
    int *displs = rd_xcalloc((size_t)size, sizeof *displs);
    RD_MPI_CHECK(
        MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, counts, 1, MPI_UNSIGNED_LONG_LONG, comm));

    // 2.
    const size_t own = (size_t)counts[root];
    unsigned long long total = 0, most = 0;
    for (int r = 0; r < size; r++) {
        unsigned long long c = r == root ? 0ULL : counts[r];
        total += c;
        most = c > most ? c : most;
    }
    int rc = own + total > (unsigned long long)INT_MAX ? RD_ERR_RANGE : RD_OK;
    if (rank == root && rc == RD_OK && reserve(m, (size_t)total) != RD_OK)
        rc = RD_ERR_NOMEM;
    RD_MPI_CHECK(MPI_Bcast(&rc, 1, MPI_INT, root, comm));

    // 3. Root's own examples stay where they are (MPI_IN_PLACE, 0 from itself).
    if (rc == RD_OK && total > 0) {
        MPI_Datatype ex_type;
        RD_MPI_CHECK(MPI_Type_contiguous((int)sizeof(example), MPI_BYTE, &ex_type));
        RD_MPI_CHECK(MPI_Type_commit(&ex_type));
        unsigned long long rounds = (most + per_rank - 1) / per_rank;
        for (unsigned long long k = 0; k < rounds; k++) {
            rd__metrics_gather_round(counts, size, root, own, per_rank, k, cnt, displs);
            if (rank == root)
                RD_MPI_CHECK(
                    MPI_Gatherv(MPI_IN_PLACE, 0, ex_type, m->ex, cnt, displs, ex_type, root, comm));
            else // a rank whose examples ended in an earlier round sends 0 from its end
                RD_MPI_CHECK(MPI_Gatherv(
                    m->ex + (k * per_rank < mine ? (size_t)(k * per_rank) : (size_t)mine),
                    cnt[rank], ex_type, NULL, NULL, NULL, ex_type, root, comm));
        }
        RD_MPI_CHECK(MPI_Type_free(&ex_type));
        if (rank == root)
            m->n += (size_t)total;
    }
    rd_free(counts);
    rd_free(cnt);
    rd_free(displs);
    return rc;
}

int rd_metrics_gather(rd_metrics *m, int root, MPI_Comm comm) {
    int size = 1;
    RD_MPI_CHECK(MPI_Comm_size(comm, &size));
    return rd__metrics_gather_rounds(m, root, comm, rd__metrics_gather_per_rank(size));
}
