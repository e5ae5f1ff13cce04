// slab_internal.h — carving the parameter and activation slabs of the dense models, shared by
// model.c (rd_model) and source.c (rd_source).
//
// A model lays itself out twice with the same code: a counting pass that only sums sizes, then,
// once the slabs are allocated, an assigning pass that hands out pointers at the same offsets.
// Every tensor starts on a 16-float boundary (64 bytes), so the padding stays zero for the
// allreduce and vector loads stay aligned.
#ifndef RD_SLAB_INTERNAL_H
#define RD_SLAB_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "rd/model.h"

/** How a tensor starts. */
enum { RD__INIT_ZERO = 0, RD__INIT_ONE = 1, RD__INIT_NORMAL = 2 };

typedef struct rd__init_spec {
    int kind;  // RD__INIT_*
    float std; // RD__INIT_NORMAL: the standard deviation
} rd__init_spec;

typedef struct rd__carver {
    int assign; // 0 = counting pass, 1 = assigning pass
    // Assigning pass only: the tensor directory and its initialisations (n_tensors each), the
    // parameter and gradient slabs (same layout) and the activation slab.
    rd_model_tensor *tensors;
    rd__init_spec *inits;
    float *params, *grads, *acts;
    size_t poff;    // floats carved from the parameter slab (padding included)
    size_t aoff;    // floats carved from the activation slab
    size_t nparams; // parameters (padding excluded)
    int nt;         // tensors
} rd__carver;

/** n rounded up to a multiple of 16 floats. */
size_t rd__pad16(size_t n);

/** Carve a parameter tensor of n floats named by fmt: *pp in the parameter slab, *gp at the same
 *  offset of the gradient slab (both NULL in the counting pass; *gp NULL without a gradient
 *  slab, an inference-only model); record it in the directory with its initialisation. */
void rd__carve_vparam(rd__carver *c,
                      float **pp,
                      float **gp,
                      size_t n,
                      int init,
                      float std,
                      const char *fmt,
                      va_list ap);

/** Carve n floats of the activation slab (NULL in the counting pass). */
float *rd__carve_act(rd__carver *c, size_t n);

/** Initialise the n tensors of the directory in params as their inits say. Each tensor draws
 *  from its own stream (split by its index), so its values do not depend on the others' sizes. */
void rd__init_tensors(const rd_model_tensor *tensors,
                      const rd__init_spec *inits,
                      int n,
                      float *params,
                      uint64_t seed);

#endif // RD_SLAB_INTERNAL_H
