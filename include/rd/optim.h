// rd/optim.h — server-side sparse optimizers applied to one embedding row at a time.
//
// Defines:
//   rd_optim_slots()      optimizer slot vectors per row (each `dim` floats)
//   rd_optim_init_slots() initial slot values of a new row
//   rd_optim_update()     one update of one row from one (summed) gradient
//   rd_optim_name()
//
// Formulas (g = gradient, w = weight, all per coordinate, t = the row's update number, 1-based;
// l2 is the configured `l2`, used as L2 weight decay by SGD/Adagrad/Adam and as the FTRL L2):
//   SGD      g' = g + l2 w;  w -= lr g'                                              (0 slots)
//   Adagrad  g' = g + l2 w;  a += g'^2;  w -= lr g' / (sqrt(a) + eps)     a0 = initial_accumulator
//   Adam     g' = g + l2 w;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;
//            w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)           (slots m, v = 0)
//   FTRL     (McMahan et al. 2013, FTRL-proximal; lr is alpha) n' = n + g^2;
//            sigma = (sqrt(n') - sqrt(n)) / lr;  z += g - sigma w;  n = n';
//            w = 0 if |z| <= l1 else -(z - sign(z) l1) / ((beta + sqrt(n)) / lr + l2)
//                                                                             (slots z, n = 0)
//            The stored weight starts at the deterministic init value; the first update folds
//            it into z through the sigma w term, as TensorFlow's ApplyFtrl does.
// Overflow: a finite g' whose square fp32 cannot hold (|g'| beyond ~1.8e19) gives a finite row
// close to what the formulas give (an Adagrad or Adam step of about lr), rather than a step of 0
// with an inf slot that froze the coordinate for good (Adagrad, Adam) or a NaN weight (FTRL).
// Adagrad takes that coordinate's step in double and saturates a at FLT_MAX. Adam, where v or
// v / (1 - b2^t) would overflow, clips g' to +-2^63 for the step in m and v alike (a saturated v
// alone would leave m / sqrt(v) wrong for the steps after) and takes the step in double. FTRL,
// where n would overflow, clips g to +-2^63 for the step and saturates n at FLT_MAX. Every
// other input gives the plain float results above, bit for bit. A non-finite g' still gives a
// non-finite weight, which the trainer reports as a diverged table.
// Slot layout in a row: slot k occupies floats [k*dim, (k+1)*dim) after the embedding.
#ifndef RD_OPTIM_H
#define RD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Slot vectors per row: SGD 0, Adagrad 1, Adam 2, FTRL 2; -1 for an unknown kind. */
int rd_optim_slots(int kind);

/** "sgd", "adagrad", "adam", "ftrl" or "unknown". */
const char *rd_optim_name(int kind);

/** Initial slot values for a new row. slots is (rd_optim_slots(kind), dim). */
void rd_optim_init_slots(const rd_optim_config *oc, float *slots, size_t dim);

/**
 * Apply one update.
 * @param[in]     oc     optimizer config (kind, lr, ...)
 * @param[in,out] w      the embedding, (dim)
 * @param[in,out] slots  optimizer slots, (rd_optim_slots(kind), dim)
 * @param[in]     t      1-based update number of this row (Adam bias correction)
 * @param[in]     g      the gradient, (dim); may not alias w or slots
 */
void rd_optim_update(const rd_optim_config *oc,
                     float *RD_RESTRICT w,
                     float *RD_RESTRICT slots,
                     uint64_t t,
                     const float *RD_RESTRICT g,
                     size_t dim);

#ifdef __cplusplus
}
#endif
#endif // RD_OPTIM_H
