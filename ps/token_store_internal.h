// token_store_internal.h — private layout helpers shared by token_store.c (the LMDB store and
// its packed shard entry points) and token_rpc.c (the PS handlers and the worker client).
//
// Wire layouts (little-endian; see rd/tokens.h for the public description):
//   fetch request  : u32 "RDTQ" | u32 n | u32 L | u32 dim | u32 fields | u32 0 |
//                    users u64 (n) | before_t i64 (n)
//   fetch reply    : rd__token_reply_layout
//   append payload : rd__token_append_layout
#ifndef RD_TOKEN_STORE_INTERNAL_H
#define RD_TOKEN_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rd/error.h"

#define RD__TOKEN_REQ_MAGIC     0x51544452u         // "RDTQ"
#define RD__TOKEN_REPLY_MAGIC   0x46544452u         // "RDTF"
#define RD__TOKEN_APPEND_MAGIC  0x41544452u         // "RDTA"
#define RD__TOKEN_MAX_REQUESTS  (1u << 20)          // requests per packed fetch
#define RD__TOKEN_MAX_APPEND    (1u << 24)          // records per packed append
#define RD__TOKEN_REQ_HEADER    16                  // packed append header
#define RD__TOKEN_FETCH_HEADER  24                  // fetch request and fetch reply headers
#define RD__TOKEN_REQ_BEFORE_ID 0x80000000u         // fetch request fields bit: ids (n) follow t
#define RD__TOKEN_MAX_PACKED    (UINT64_C(1) << 36) // 64 GiB: any packed buffer above is refused

/** Byte offsets of the arrays of a packed fetch reply of (n, L, dim, fields); the offset of an
 *  absent optional array is 0. */
typedef struct rd__token_reply_layout {
    size_t items, ts, ids, tokens, labels, side, n_found, mask, total;
} rd__token_reply_layout;

/** Byte offsets of the arrays of a packed append of (n, dim, n_side). */
typedef struct rd__token_append_layout {
    size_t users, ts, ids, items, tokens, labels, flags, side, total;
} rd__token_append_layout;

/** @return 1 and the layout, or 0 when n / L / dim / n_side are out of range or the size
 *  overflows. n_side counts only when fields has RD_TOKEN_FIELD_SIDE. */
int rd__token_reply_layout_of(
    size_t n, size_t L, size_t dim, size_t n_side, unsigned fields, rd__token_reply_layout *lay);
int rd__token_append_layout_of(size_t n, size_t dim, size_t n_side, rd__token_append_layout *lay);

static inline void rd__le32_put(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t rd__le32_get(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void rd__le64_put(unsigned char *p, uint64_t v) {
    rd__le32_put(p, (uint32_t)v);
    rd__le32_put(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t rd__le64_get(const unsigned char *p) {
    return (uint64_t)rd__le32_get(p) | ((uint64_t)rd__le32_get(p + 4) << 32);
}

/** Internal accessors of a store handle (token_map.c): shard i's env (NULL when this handle
 *  does not open it), whether it is open for writing, and the store folder. */
struct rd_token_store;
struct MDB_env;
struct MDB_env *rd__token_store_shard_env(struct rd_token_store *s, int shard);
int rd__token_store_shard_writable(const struct rd_token_store *s, int shard);
const char *rd__token_store_dir(const struct rd_token_store *s);

#endif // RD_TOKEN_STORE_INTERNAL_H
