// rd/hash.h — 64-bit hashing, feature keys, shard placement and CRC32C.
//
// Defines:
//   rd_mix64()        bijective 64-bit finalizer (splitmix64); good avalanche
//   rd_hash64()       hash of a byte string with a seed
//   rd_hash_str()     hash of a NUL-terminated string
//   rd_feature_key()  hash(field, value bytes): the per-field value key stored in datasets
//   rd_table_key()    hash(table id, field value key): the key an embedding table sees
//   rd_shard_of()     which of P shards owns a key (independent of the key's table layout)
//   rd_crc32c()       CRC-32C (Castagnoli), incremental: pass the previous crc (start with 0)
//
// Every feature value becomes key = rd_table_key(table, rd_feature_key(field, value)); the
// dataset stores the field-level key so that teacher and student tables derive their own keys.
// Key 0 is reserved as "empty slot"; the functions never return 0.
#ifndef RD_HASH_H
#define RD_HASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline uint64_t rd_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t rd_hash64(const void *data, size_t len, uint64_t seed);
uint64_t rd_hash_str(const char *s, uint64_t seed);

/** Key of one value of one field. `field` is the field name. Never 0. */
uint64_t rd_feature_key(const char *field, const void *value, size_t len);
/** Same with an integer value (ids, buckets). Never 0. */
uint64_t rd_feature_key_u64(const char *field, uint64_t value);
/** Key seen by an embedding table with id `table_id` (e.g. rd_hash_str(table name)). Never 0. */
uint64_t rd_table_key(uint64_t table_id, uint64_t feature_key);

/** Shard in [0, nshards) that owns `key`. Mixes again so that keys' low bits need not be random. */
static inline int rd_shard_of(uint64_t key, int nshards) {
    return (int)(rd_mix64(key ^ 0x5851f42d4c957f2dULL) % (uint64_t)nshards);
}

uint32_t rd_crc32c(uint32_t crc, const void *data, size_t len);
/** The naive twin of rd_crc32c (one table lookup per byte), for tests. Same results. */
uint32_t rd_crc32c_bytewise(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif // RD_HASH_H
