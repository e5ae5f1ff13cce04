// slab.c — carving the parameter and activation slabs of the dense models (slab_internal.h).
#include "slab_internal.h"

#include "rd/rng.h"

#include <stdio.h>

size_t rd__pad16(size_t n) {
    return (n + 15) / 16 * 16;
}

void rd__carve_vparam(rd__carver *c,
                      float **pp,
                      float **gp,
                      size_t n,
                      int init,
                      float std,
                      const char *fmt,
                      va_list ap) {
    if (c->assign) {
        rd_model_tensor *t = &c->tensors[c->nt];
        vsnprintf(t->name, sizeof t->name, fmt, ap);
        t->offset = c->poff;
        t->n = n;
        c->inits[c->nt] = (rd__init_spec){init, std};
        *pp = c->params + c->poff;
        *gp = c->grads ? c->grads + c->poff : NULL; // no gradient slab: inference only
    } else {
        *pp = NULL;
        *gp = NULL;
    }
    c->nt++;
    c->poff += rd__pad16(n);
    c->nparams += n;
}

float *rd__carve_act(rd__carver *c, size_t n) {
    float *r = c->assign ? c->acts + c->aoff : NULL;
    c->aoff += rd__pad16(n);
    return r;
}

void rd__init_tensors(const rd_model_tensor *tensors,
                      const rd__init_spec *inits,
                      int n,
                      float *params,
                      uint64_t seed) {
    for (int i = 0; i < n; i++) {
        const rd_model_tensor *t = &tensors[i];
        const rd__init_spec *s = &inits[i];
        float *x = params + t->offset;
        rd_rng r;
        rd_rng_split(&r, seed, (uint64_t)i);
        for (size_t k = 0; k < t->n; k++)
            x[k] = s->kind == RD__INIT_ONE      ? 1.0f
                   : s->kind == RD__INIT_NORMAL ? s->std * (float)rd_rng_normal(&r)
                                                : 0.0f;
    }
}
