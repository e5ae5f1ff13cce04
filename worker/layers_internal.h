// layers_internal.h — private helpers shared by layers.c and layers_naive.c.
#ifndef RD_LAYERS_INTERNAL_H
#define RD_LAYERS_INTERNAL_H

#include <stddef.h>

/** Masked softmax of one row with libm expf, in place (the naive twin of the vectorised one):
 *  s (n), m (n) or NULL. @return 0 when no entry is valid (row set to zeros), else 1. */
int rd__softmax_row_naive(float *s, const float *m, size_t n);

/** rd_linear_backward_naive / rd_attention_backward_naive with acc = 0 meaning "overwrite the
 *  input gradient" (the composite layers' fast paths skip zeroing their scratch). */
void rd__linear_backward_naive_ex(float *dinp,
                                  float *dweight,
                                  float *dbias,
                                  const float *dout,
                                  const float *inp,
                                  const float *weight,
                                  size_t BT,
                                  size_t C,
                                  size_t OC,
                                  int acc);
void rd__attention_backward_naive_ex(float *dqkv,
                                     float *scratch,
                                     const float *dout,
                                     const float *qkv,
                                     const float *att,
                                     const float *mask,
                                     size_t B,
                                     size_t T,
                                     size_t C,
                                     size_t NH,
                                     int causal,
                                     int acc);

#endif // RD_LAYERS_INTERNAL_H
