// rd/lmdbx.h — small LMDB helpers shared by the token store, the target log and checkpoints.
//
// Defines:
//   rd_lmdbx_status()        LMDB / errno code -> rd_status (no message)
//   rd_lmdbx_error()         same, and fill an rd_errbuf with "what: path: LMDB text (rc N)"
//   rd_lmdbx_opts            how to open an env (read-only or writable, map size, its cap, ...)
//   rd_lmdbx_env_open()      mdb_env_create + options + mdb_env_open (creating the folder)
//   rd_lmdbx_check_size()    refuse a data.mdb shorter than its meta page says (a SIGBUS later)
//   rd_lmdbx_grow()          double the map size (no transaction of this process may be active)
//   rd_lmdbx_write()         run a callback in a write transaction; on MDB_MAP_FULL abort, grow
//                            the map and run the whole callback again (never a lost write)
//   rd_lmdbx_read_begin()    begin (or renew) a read-only transaction, absorbing MDB_MAP_RESIZED
//   rd_lmdbx_is_rd_status()  tell an rd_status from an LMDB/errno code in callback results
//   rd_lmdbx_put_be64() / rd_lmdbx_get_be64() / _be32   big-endian key packing
//   rd_lmdbx_i64_key() / rd_lmdbx_key_i64()             int64 <-> uint64 in unsigned order
//   rd_lmdbx_mkdir_p()       mkdir -p with an rd_errbuf message
//   rd_lmdbx_write_file_atomic()  write a small file via tmp + fsync + rename + fsync(dir)
//   rd_lmdbx_check_replaceable()  refuse to rename a file over a FIFO, device or symlink
//
// Error mapping (rd_lmdbx_status): MDB_NOTFOUND and ENOENT -> RD_ERR_NOTFOUND; MDB_MAP_FULL,
// ENOSPC, EDQUOT and MDB_TXN_FULL -> RD_ERR_FULL (the disk, the map at its cap, or a transaction
// too big for LMDB); ENOMEM -> RD_ERR_NOMEM; MDB_INVALID, MDB_CORRUPTED, MDB_PAGE_NOTFOUND ->
// RD_ERR_CORRUPT; MDB_VERSION_MISMATCH -> RD_ERR_VERSION; MDB_KEYEXIST -> RD_ERR_EXISTS; EACCES,
// EROFS, EIO -> RD_ERR_IO; EINVAL, MDB_BAD_VALSIZE -> RD_ERR_ARG; everything else RD_ERR_LMDB.
//
// Map growth. An env is opened with opts.map_size (or the size recorded in the file when larger)
// and may grow up to opts.max_map_size. rd_lmdbx_write grows by doubling when a transaction hits
// MDB_MAP_FULL; at the cap the write fails with RD_ERR_FULL and nothing of it is committed.
// LMDB 0.9 remaps the file on mdb_env_set_mapsize, so the caller must guarantee that no
// transaction of this process is active on the env (reset read transactions are fine). Readers
// in other processes that see a grown map get MDB_MAP_RESIZED from mdb_txn_begin/renew;
// rd_lmdbx_read_begin adopts the new size and retries.
//
// Every env is opened with MDB_NOTLS (read transactions are not tied to threads, and one thread
// may hold a read transaction while it writes), never with MDB_NOLOCK: readers in other
// processes register in lock.mdb, so they see consistent snapshots and never block the writer.
#ifndef RD_LMDBX_H
#define RD_LMDBX_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "rd/error.h"

/** How to open an env. Zero-initialise and set what you need. */
typedef struct rd_lmdbx_opts {
    int read_only;         // 1 = MDB_RDONLY (tools, readers of other jobs)
    int create;            // 1 = create the folder if missing (writable envs only)
    int no_sync;           // 1 = MDB_NOSYNC: commits do not fsync (benchmarks, scratch data)
    uint64_t map_size;     // initial map size in bytes; 0 = keep the file's (or 1 MiB if new)
    uint64_t max_map_size; // cap of rd_lmdbx_grow; 0 = 1 TiB
    unsigned max_dbs;      // named databases; 0 = none (main DB only)
    unsigned max_readers;  // reader slots; 0 = LMDB's default (126)
} rd_lmdbx_opts;

/** @return the rd_status an LMDB or errno code maps to (table above); RD_OK for 0. */
int rd_lmdbx_status(int mdb_rc);

/**
 * Map `mdb_rc` and describe it in `eb` as "<what>: <path>: <mdb_strerror> (LMDB rc N)".
 * @param[in] what  the operation, e.g. "mdb_env_open" or "append to shard 3"
 * @param[in] path  the env folder (may be NULL)
 * @return the mapped rd_status (RD_OK if mdb_rc is 0; eb untouched then)
 */
int rd_lmdbx_error(rd_errbuf *eb, int mdb_rc, const char *what, const char *path);

/** 1 if `rc` is an rd_status (-999..-1), 0 for 0 and for LMDB (<= -30799) / errno (> 0) codes. */
static inline int rd_lmdbx_is_rd_status(int rc) {
    return rc < 0 && rc > -1000;
}

/**
 * Open the env in folder `path` (data.mdb + lock.mdb inside).
 * @param[in]  path  folder; created (mkdir -p) when opts->create and not read-only
 * @param[in]  opts  see rd_lmdbx_opts
 * @param[out] out   the env; close with mdb_env_close
 * @return RD_OK, RD_ERR_NOTFOUND (no folder or no data.mdb in read-only mode), RD_ERR_IO,
 *         RD_ERR_CORRUPT (not an LMDB file), RD_ERR_VERSION, RD_ERR_NOMEM, RD_ERR_LMDB
 */
int rd_lmdbx_env_open(const char *path, const rd_lmdbx_opts *opts, MDB_env **out, rd_errbuf *eb);

/**
 * Refuse an env whose data.mdb is shorter than its meta page says (copied in part, cut by a
 * full disk): LMDB opens such a file, and the first read of a page past its end through the map
 * is a SIGBUS. rd_lmdbx_env_open calls it; call it after any other mdb_env_open of a file that
 * was not written by this process.
 * @param[in] path  the env folder (holding data.mdb)
 * @return RD_OK, RD_ERR_CORRUPT ("LMDB env <path>: data.mdb is truncated: ...")
 */
int rd_lmdbx_check_size(MDB_env *env, const char *path, rd_errbuf *eb);

/**
 * Double the map size of `env`, capped at max_map_size.
 * @note No transaction of this process may be active on env (reset read txns are allowed).
 * @return RD_OK, RD_ERR_FULL (already at the cap: "map of <path> is full at N bytes"),
 *         RD_ERR_LMDB
 */
int rd_lmdbx_grow(MDB_env *env, uint64_t max_map_size, const char *path, rd_errbuf *eb);

/**
 * Callback run inside a write transaction by rd_lmdbx_write. It must be re-runnable from
 * scratch: after MDB_MAP_FULL the transaction is aborted and the callback runs again.
 * @return 0 to commit; an LMDB/errno code (MDB_MAP_FULL triggers growth + retry, anything else
 *         aborts and is mapped by rd_lmdbx_error); or a negative rd_status with `eb` filled by
 *         the callback (aborts).
 */
typedef int (*rd_lmdbx_write_fn)(MDB_txn *txn, void *ctx, rd_errbuf *eb);

/**
 * Run `fn` in a write transaction of `env` and commit, growing the map on MDB_MAP_FULL (from
 * the callback or the commit) and retrying until it fits or the map reaches max_map_size.
 * Also absorbs MDB_MAP_RESIZED (another process grew the map) at transaction start.
 * @param[in] what  names the operation in error messages
 * @note Same constraint as rd_lmdbx_grow: no other transaction of this process may be active on
 *       env (reset read transactions are fine).
 * @return RD_OK, RD_ERR_FULL (map at its cap, disk full, transaction too large), the callback's
 *         rd_status, or the mapped LMDB error; on failure nothing was committed.
 */
int rd_lmdbx_write(MDB_env *env,
                   uint64_t max_map_size,
                   const char *path,
                   const char *what,
                   rd_lmdbx_write_fn fn,
                   void *ctx,
                   rd_errbuf *eb);

/**
 * Begin a read-only transaction, or renew `*txn` when it is a reset one (non-NULL). When the
 * map grew in another process (MDB_MAP_RESIZED) the env adopts the new size and it retries.
 * @param[in,out] txn  NULL-initialised handle on first use; afterwards a reset txn to renew.
 *                     On failure *txn is aborted and set to NULL.
 * @return RD_OK or the mapped LMDB error (eb says which env)
 */
int rd_lmdbx_read_begin(MDB_env *env, MDB_txn **txn, const char *path, rd_errbuf *eb);

// ---------------------------------------------------------------------------------------------
// Key packing: big-endian so that memcmp order (LMDB's default) is numeric order.

static inline void rd_lmdbx_put_be64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xffu);
        v >>= 8;
    }
}

static inline uint64_t rd_lmdbx_get_be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline void rd_lmdbx_put_be32(unsigned char *p, uint32_t v) {
    for (int i = 3; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xffu);
        v >>= 8;
    }
}

static inline uint32_t rd_lmdbx_get_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/** int64 -> uint64 whose unsigned order is the signed order (flip the sign bit). */
static inline uint64_t rd_lmdbx_i64_key(int64_t x) {
    return (uint64_t)x ^ (UINT64_C(1) << 63);
}

/** Inverse of rd_lmdbx_i64_key. */
static inline int64_t rd_lmdbx_key_i64(uint64_t u) {
    u ^= UINT64_C(1) << 63;
    int64_t x;
    // Two's complement reinterpretation without implementation-defined conversion.
    if (u <= (uint64_t)INT64_MAX)
        x = (int64_t)u;
    else
        x = -(int64_t)(~u) - 1;
    return x;
}

// ---------------------------------------------------------------------------------------------
// Files

/** mkdir -p `path` (mode 0755). @return RD_OK or RD_ERR_IO ("mkdir <dir>: <strerror>"). */
int rd_lmdbx_mkdir_p(const char *path, rd_errbuf *eb);

/**
 * Write `len` bytes to `path` atomically: `<path>.tmp`, fsync, rename over `path`, fsync the
 * folder. A crash leaves either the old file (or none) or the new one, never a torn one.
 * @return RD_OK or RD_ERR_IO / RD_ERR_FULL (ENOSPC) with the path and strerror in eb
 */
int rd_lmdbx_write_file_atomic(const char *path, const void *data, size_t len, rd_errbuf *eb);

/**
 * May `path` be replaced by a file written under a temporary name and renamed over it? A rename
 * replaces the directory entry itself: over a FIFO, a device or a symlink it swaps the node for
 * a regular file (as root, `--out /dev/null` turned /dev/null into a file). Call it before
 * writing the temporary file.
 * @return RD_OK when path does not exist, is a regular file, or is a folder (the rename then
 *         fails on its own); RD_ERR_EXISTS ("<path> exists and is not a regular file (...): not
 *         replaced") for anything else
 */
int rd_lmdbx_check_replaceable(const char *path, rd_errbuf *eb);

#endif // RD_LMDBX_H
