// hash.c — a small, fast 64-bit string hash (8-byte blocks with multiply-xorshift mixing, folded
// through splitmix64) and a table-driven CRC-32C. Keys are part of the on-disk formats (datasets,
// checkpoints, token stores): changing either function is a format version change.
#include "rd/hash.h"

#include <pthread.h>
#include <string.h>

static inline uint64_t load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8); // little-endian hosts only (x86_64, aarch64); asserted by the format tests
    return v;
}

uint64_t rd_hash64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = rd_mix64(seed ^ (0x27d4eb2f165667c5ULL * (uint64_t)(len + 1)));
    while (len >= 8) {
        h = rd_mix64(h ^ load64(p)) * 0x9fb21c651e98df25ULL;
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    for (size_t i = 0; i < len; i++)
        tail |= (uint64_t)p[i] << (8 * i);
    h = rd_mix64(h ^ tail ^ ((uint64_t)len << 56));
    return h;
}

uint64_t rd_hash_str(const char *s, uint64_t seed) {
    return rd_hash64(s, strlen(s), seed);
}

static inline uint64_t nonzero(uint64_t k) {
    return k ? k : 0x9e3779b97f4a7c15ULL;
}

uint64_t rd_feature_key(const char *field, const void *value, size_t len) {
    return nonzero(rd_hash64(value, len, rd_hash_str(field, 0x6a09e667f3bcc908ULL)));
}

uint64_t rd_feature_key_u64(const char *field, uint64_t value) {
    return nonzero(rd_mix64(value ^ rd_hash_str(field, 0xbb67ae8584caa73bULL)));
}

uint64_t rd_table_key(uint64_t table_id, uint64_t feature_key) {
    return nonzero(rd_mix64(feature_key ^ rd_mix64(table_id ^ 0x3c6ef372fe94f82bULL)));
}

// ---------------------------------------------------------------------------------------------
// CRC-32C, reflected polynomial 0x82F63B78. Slice-by-8 tables built once at first use, under
// pthread_once (deterministic contents; no other mutable state). rd_crc32c_bytewise is the naive
// twin: one table lookup per byte; the tests check the two agree on random data, lengths and
// alignments.

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT; // threads open bundles at once (rd/serve.h)

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = crc_table[0][crc_table[t - 1][i] & 0xff] ^ (crc_table[t - 1][i] >> 8);
}

uint32_t rd_crc32c_bytewise(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = crc_table[0][(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t rd_crc32c(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    // Eight bytes per step, read byte by byte so the result does not depend on alignment or on
    // the host's byte order (GCC fuses the loads on little-endian targets).
    for (; len >= 8; len -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        uint32_t hi =
            (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
              crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
              crc_table[0][hi >> 24];
    }
    for (; len > 0; len--, p++)
        crc = crc_table[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
    return ~crc;
}
