// dense_optim.c — SGD / Adam / AdamW over a dense parameter slab, and the gradient allreduce of
// data-parallel training (rd/dense_optim.h).
//
// The update is one pass over the slab (llm.c gpt2_update). The allreduce is a single in-place
// MPI_Allreduce: the slab is a few MB at most for the models of this project, so MPICH's own
// algorithm choice (ring / recursive doubling) is better than anything hand-written here.
#include "rd/dense_optim.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

int rd_dense_optim_parse(const char *name, int *kind) {
    static const char *const names[] = {"sgd", "adam", "adamw"};
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *kind = i;
            return RD_OK;
        }
    return RD_ERR_ARG;
}

int rd_dense_optim_init(rd_dense_optim *o, const rd_train_config *train, rd_errbuf *eb) {
    memset(o, 0, sizeof *o);
    if (rd_dense_optim_parse(train->optimizer, &o->kind) != RD_OK)
        return rd_err_set(eb, RD_ERR_CONFIG, "train.optimizer: '%s' is not sgd|adam|adamw",
                          train->optimizer);
    if (!(train->lr > 0.0f) || !isfinite(train->lr))
        return rd_err_set(eb, RD_ERR_CONFIG, "train.lr: %g must be > 0", (double)train->lr);
    if (!(train->beta1 >= 0.0f && train->beta1 < 1.0f) ||
        !(train->beta2 >= 0.0f && train->beta2 < 1.0f))
        return rd_err_set(eb, RD_ERR_CONFIG, "train.beta1/beta2: %g/%g must be in [0, 1)",
                          (double)train->beta1, (double)train->beta2);
    if (!(train->eps > 0.0f))
        return rd_err_set(eb, RD_ERR_CONFIG, "train.eps: %g must be > 0", (double)train->eps);
    if (!(train->weight_decay >= 0.0f) || !isfinite(train->weight_decay))
        return rd_err_set(eb, RD_ERR_CONFIG, "train.weight_decay: %g must be >= 0",
                          (double)train->weight_decay);
    o->lr = train->lr;
    o->beta1 = train->beta1;
    o->beta2 = train->beta2;
    o->eps = train->eps;
    o->weight_decay = train->weight_decay;
    o->t = 0;
    return RD_OK;
}

size_t rd_dense_optim_slots(int kind) {
    return kind == RD_DENSE_SGD ? 0 : 2;
}

// One Adam or AdamW coordinate whose v or v / (1 - b2^t) overflowed float (vhat is inf). On a
// finite gradient g and v (|g| beyond ~1.8e19 at t = 1) the float step was 0, and an inf v froze
// the parameter for good (and made the training checkpoint refuse it): as the PS's Adam does
// (rd/optim.h), g is clipped to +-2^63 in m and v alike, and the step is taken in double.
// @return 1 when the coordinate was updated, 0 for a non-finite g or v (left to the float code)
static int
adam_wide(const rd_dense_optim *o, float c1, float c2, float g, float *p, float *m, float *v) {
    if (!isfinite(g) || !isfinite(*v))
        return 0;
    const float b1 = o->beta1, b2 = o->beta2;
    float gc = fabsf(g) > 0x1p63f ? copysignf(0x1p63f, g) : g;
    float mi = b1 * *m + (1.0f - b1) * gc;
    float vi = b2 * *v + (1.0f - b2) * gc * gc;
    *m = mi;
    *v = vi < FLT_MAX ? vi : FLT_MAX;
    double upd = (double)mi * (double)c1 / (sqrt((double)*v * (double)c2) + (double)o->eps);
    if (o->kind == RD_DENSE_ADAMW)
        upd += (double)o->weight_decay * (double)*p;
    *p -= (float)((double)o->lr * upd);
    return 1;
}

// params, grads (n); state (2n) for Adam
void rd_dense_optim_step(rd_dense_optim *o,
                         float *restrict params,
                         const float *restrict grads,
                         float *restrict state,
                         size_t n) {
    RD_ASSERT(o->kind >= RD_DENSE_SGD && o->kind <= RD_DENSE_ADAMW);
    o->t++;
    float lr = o->lr, wd = o->weight_decay;
    if (o->kind == RD_DENSE_SGD) {
        for (size_t i = 0; i < n; i++)
            params[i] -= lr * (grads[i] + wd * params[i]);
        return;
    }
    RD_ASSERT(state != NULL);
    float *m = state, *v = state + n;
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    // Bias corrections in double: 1 - beta^t underflows float precision for small t and b ~ 1.
    float c1 = (float)(1.0 / (1.0 - pow((double)b1, (double)o->t)));
    float c2 = (float)(1.0 / (1.0 - pow((double)b2, (double)o->t)));
    int decoupled = o->kind == RD_DENSE_ADAMW;
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        if (!decoupled)
            g += wd * params[i];
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        float mhat = mi * c1, vhat = vi * c2;
        if (vhat > FLT_MAX && adam_wide(o, c1, c2, g, &params[i], &m[i], &v[i]))
            continue;
        m[i] = mi;
        v[i] = vi;
        float upd = mhat / (sqrtf(vhat) + eps);
        if (decoupled)
            upd += wd * params[i];
        params[i] -= lr * upd;
    }
}

void rd_dense_allreduce(float *grads, size_t n, MPI_Comm comm) {
    rd_dense_allreduce_counted(grads, n, comm, NULL);
}

void rd_dense_allreduce_counted(float *grads, size_t n, MPI_Comm comm, rd_traffic *t) {
    int size;
    RD_MPI_CHECK(MPI_Comm_size(comm, &size));
    if (t && size > 1) {
        uint64_t msgs, bytes;
        rd_traffic_allreduce_cost(n, size, &msgs, &bytes);
        rd_traffic_count(t, RD_CHAN_ALLREDUCE, 0, msgs, bytes);
        rd_traffic_count(t, RD_CHAN_ALLREDUCE, 1, msgs, bytes);
    }
    for (size_t off = 0; off < n;) {
        size_t chunk = n - off < (size_t)INT_MAX ? n - off : (size_t)INT_MAX;
        RD_MPI_CHECK(
            MPI_Allreduce(MPI_IN_PLACE, grads + off, (int)chunk, MPI_FLOAT, MPI_SUM, comm));
        off += chunk;
    }
    if (size > 1) {
        float inv = 1.0f / (float)size;
        for (size_t i = 0; i < n; i++)
            grads[i] *= inv;
    }
}
