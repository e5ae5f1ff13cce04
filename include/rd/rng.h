// rd/rng.h — seedable, splittable pseudo-random numbers (xoshiro256** seeded by splitmix64).
//
// Defines:
//   rd_rng                 4 x uint64 state, plain struct (copy = fork)
//   rd_rng_seed()          seed from a 64-bit value
//   rd_rng_split()         independent child stream for (parent seed, stream id): ranks, users,
//                          rows — results never depend on how work is partitioned
//   rd_rng_u64/uniform/normal/below
#ifndef RD_RNG_H
#define RD_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_rng {
    uint64_t s[4];
} rd_rng;

void rd_rng_seed(rd_rng *r, uint64_t seed);
/** Child stream `stream` of a seed: same (seed, stream) -> same sequence, whatever else ran. */
void rd_rng_split(rd_rng *child, uint64_t seed, uint64_t stream);
uint64_t rd_rng_u64(rd_rng *r);
/** Uniform in [0, 1) with 24 bits (float) / 53 bits (double). */
float rd_rng_uniformf(rd_rng *r);
double rd_rng_uniform(rd_rng *r);
/** Standard normal (Box-Muller). */
double rd_rng_normal(rd_rng *r);
/** Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rd_rng_below(rd_rng *r, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif // RD_RNG_H
