// rng.c — xoshiro256** (Blackman & Vigna), seeded through splitmix64 so that any 64-bit seed,
// including 0, gives a valid non-zero state.
#include "rd/rng.h"
#include "rd/hash.h"

#include <math.h>

// 128-bit product for Lemire's method; __extension__ keeps -Wpedantic quiet.
__extension__ typedef unsigned __int128 u128;

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void rd_rng_seed(rd_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        r->s[i] = rd_mix64(x);
    }
}

void rd_rng_split(rd_rng *child, uint64_t seed, uint64_t stream) {
    rd_rng_seed(child, rd_mix64(seed) ^ rd_mix64(stream * 0xd1342543de82ef95ULL + 1));
}

uint64_t rd_rng_u64(rd_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float rd_rng_uniformf(rd_rng *r) {
    return (float)(rd_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

double rd_rng_uniform(rd_rng *r) {
    return (double)(rd_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double rd_rng_normal(rd_rng *r) {
    double u1 = rd_rng_uniform(r);
    double u2 = rd_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t rd_rng_below(rd_rng *r, uint64_t n) {
    // Lemire's nearly divisionless method, with rejection for exact uniformity.
    uint64_t x = rd_rng_u64(r);
    u128 m = (u128)x * n;
    uint64_t l = (uint64_t)m;
    if (l < n) {
        uint64_t t = -n % n;
        while (l < t) {
            x = rd_rng_u64(r);
            m = (u128)x * n;
            l = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}
