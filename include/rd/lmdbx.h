// rd/lmdbx.h — small LMDB helpers shared by the token store, the target log and checkpoints.
//
// Defines:
//   rd_lmdbx_status()        LMDB / errno code -> rd_status (no message)
//   rd_lmdbx_error()         same, and fill an rd_errbuf with "what: path: LMDB text (rc N)"
//   rd_lmdbx_opts            how to open an env (read-only or writable, map size, its cap, ...)
//   rd_lmdbx_env_open()      mdb_env_create + options + mdb_env_open (creating the folder);
//                            shares the env this process holds on the same file
//   rd_lmdbx_env_close()     release an env of rd_lmdbx_env_open (closed with its last user)
//   rd_lmdbx_check_size()    refuse a data.mdb shorter than its meta page says (a SIGBUS later)
//   rd_lmdbx_check_nonempty()  refuse a data.mdb of 0 bytes, or not a regular file (a FIFO would
//                            block a read-only mdb_env_open for ever), before LMDB sees it
//   rd_lmdbx_grow()          double the map size (no transaction of this process may be active)
//   rd_lmdbx_write()         run a callback in a write transaction; on MDB_MAP_FULL abort, grow
//                            the map and run the whole callback again (never a lost write)
//   rd_lmdbx_read_begin()    begin (or renew) a read-only transaction, absorbing MDB_MAP_RESIZED
//   rd_lmdbx_read_begin_shared() / _end_shared()   the same for an env several threads read
//   rd_lmdbx_is_rd_status()  tell an rd_status from an LMDB/errno code in callback results
//   rd_lmdbx_put_be64() / rd_lmdbx_get_be64() / _be32   big-endian key packing
//   rd_lmdbx_i64_key() / rd_lmdbx_key_i64()             int64 <-> uint64 in unsigned order
//   rd_lmdbx_mkdir_p()       mkdir -p with an rd_errbuf message
//   rd_lmdbx_mkdir_parents() / rd_lmdbx_rmdir_created()   create the missing parents of an
//                            output, and remove exactly those again when the run fails
//   rd_lmdbx_mkdir_partial() a unique "<out>.partial.<host>.<pid>.<hex>" folder to build `out` in
//   rd_lmdbx_host_tag()      this host's name as partial-output names carry it
//   rd_lmdbx_pid_gone()      whether a leftover's process of this host no longer runs
//   rd_lmdbx_pending_add() / _forget()   outputs in progress, removed on SIGTERM/INT/HUP/PIPE
//   rd_lmdbx_outfile, rd_lmdbx_outfile_open() / _commit() / _commit_out() / _abort()   write a
//                            file under a unique temporary name beside it (O_EXCL |
//                            O_NOFOLLOW), then rename
//   rd_lmdbx_outfile_tmp_name() / rd_lmdbx_remove_stale_outfiles()   recognise and (as a
//                            folder's owner) remove the temporaries of killed processes
//   rd_lmdbx_write_file_atomic()  write a small file via an outfile: fsync + rename + fsync(dir)
//   rd_lmdbx_fsync_path() / rd_lmdbx_fsync_parent() / _parents()   make a file or folder, or a
//   rename in a
//                            folder, durable (LMDB's compacting copy writes without syncing)
//   rd_lmdbx_check_replaceable()  refuse to rename a file over a FIFO, device or symlink
//   rd_lmdbx_fopen_regular()  open an input file for reading, refusing a FIFO or device
//                            without blocking in open()
//   rd_lmdbx_check_out_not_input()  refuse an output that is an input file or lies inside an
//                            input folder (`table export C --out C/MANIFEST`)
//   rd_lmdbx_guard, RD_LMDBX_GUARDED()   turn a damaged page met inside LMDB (SIGSEGV, SIGBUS,
//                            or LMDB's own assertion, which aborts) into an rd_errbuf error
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
// A reader that dies without closing its env leaves its slot there; rd_lmdbx_env_open, every
// write transaction of rd_lmdbx_write, and rd_lmdbx_read_begin when every slot is taken, free
// the slots of processes that no longer run (mdb_reader_check), which LMDB itself does only for
// an opener that finds the env unused. A slot left inside a read holds its snapshot: until it is
// freed, no page freed after it is reused, and the file grows by every commit's copies.
#ifndef RD_LMDBX_H
#define RD_LMDBX_H

#include <lmdb.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

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
 * One env per file and process: LMDB's locks on lock.mdb are POSIX record locks, which a
 * process holds per file rather than per descriptor, so closing a second env of one file would
 * drop the first one's locks; another process opening it then takes it for unused and resets
 * its lock table under the first env's transactions (a writer starting from a stale snapshot,
 * lost commits). So a second open of an env this process holds returns the same MDB_env
 * (counted: rd_lmdbx_env_close closes it with its last user; the first open's map size and
 * options apply), and a writable open of one held read-only is refused. A child process does
 * not inherit its parent's envs (after a fork it opens its own).
 * @param[in]  path  folder; created (mkdir -p) when opts->create and not read-only
 * @param[in]  opts  see rd_lmdbx_opts
 * @param[out] out   the env; release with rd_lmdbx_env_close (never mdb_env_close)
 * @return RD_OK, RD_ERR_NOTFOUND (no folder or no data.mdb in read-only mode), RD_ERR_IO,
 *         RD_ERR_CORRUPT (not an LMDB file; a data.mdb of 0 bytes in an env it does not create;
 *         a truncated one), RD_ERR_VERSION, RD_ERR_NOMEM, RD_ERR_LMDB, RD_ERR_EXISTS (this
 *         process holds the env read-only and this open is writable)
 */
int rd_lmdbx_env_open(const char *path, const rd_lmdbx_opts *opts, MDB_env **out, rd_errbuf *eb);

/** Release an env of rd_lmdbx_env_open: closed when no other handle of this process shares it
 *  (close the caller's cursors and transactions of it first). NULL is a no-op. */
void rd_lmdbx_env_close(MDB_env *env);

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
 * Refuse a data.mdb of 0 bytes in the env folder `path`: a read-only mdb_env_open fails on it
 * with "Bad file descriptor", and a writable one would make a new, empty env of it. Refuse one that
 * is not a regular file too: a read-only mdb_env_open of a FIFO blocks in open() for ever.
 * rd_lmdbx_env_open calls it for every env it does not create; call it before any other
 * mdb_env_open of an existing env. A missing data.mdb is not this function's concern (RD_OK).
 * @return RD_OK, RD_ERR_CORRUPT ("<path>/data.mdb: empty file (0 bytes): not an LMDB env ...",
 *         "<path>/data.mdb: not a regular file (a FIFO): not an LMDB env")
 */
int rd_lmdbx_check_nonempty(const char *path, rd_errbuf *eb);

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

/**
 * rd_lmdbx_read_begin for an env that several threads of this process read at once (each
 * through its own handle and transactions: the token store). Adopting a map another process grew
 * remaps the env under every thread's transactions, so these hold the env's remap lock shared
 * from begin to rd_lmdbx_read_end_shared, and the adoption takes it exclusive. Plain
 * rd_lmdbx_read_begin adopted it under other threads' reads: SIGSEGV ("damaged LMDB file") in a
 * serving process whose threads fetched tokens while training grew the store. A thread must
 * end its transaction of an env before it begins another of the same env.
 * @param[in]  holding  1 when the calling thread holds reads of other envs of this kind: it
 *                      then never waits for the remap lock (two such threads could wait for
 *                      each other); when it would have to, it returns RD_ERR_STATE with *busy
 *                      set and nothing in eb, and the caller ends its other reads and calls
 *                      again with holding 0
 * @param[out] busy     NULL, or set to 1 in that case only
 * @return as rd_lmdbx_read_begin, or RD_ERR_STATE as above; on RD_OK end the transaction with
 *         rd_lmdbx_read_end_shared
 */
int rd_lmdbx_read_begin_shared(
    MDB_env *env, MDB_txn **txn, const char *path, int holding, int *busy, rd_errbuf *eb);

enum {
    RD_LMDBX_READ_ABORT = 0, // abort the transaction (*txn becomes NULL)
    RD_LMDBX_READ_RESET = 1, // reset it: the next rd_lmdbx_read_begin_shared renews it
    RD_LMDBX_READ_COMMIT = 2 // commit it (keeps the databases it opened; *txn becomes NULL)
};

/** End a transaction of rd_lmdbx_read_begin_shared as `how` says (RD_LMDBX_READ_*) and release
 *  the remap lock. @return 0, or mdb_txn_commit's code; 0 and nothing done for *txn NULL */
int rd_lmdbx_read_end_shared(MDB_env *env, MDB_txn **txn, int how);

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

/**
 * mkdir -p `path` (mode 0777 less the umask, as mkdir -p does); each folder it creates is synced
 * in its parent (rd_lmdbx_fsync_parent), so that what is later made and synced inside is
 * reachable after a crash.
 * @return RD_OK or RD_ERR_IO / RD_ERR_FULL ("mkdir <dir>: <strerror>", a failed fsync)
 */
int rd_lmdbx_mkdir_p(const char *path, rd_errbuf *eb);

/**
 * A file written under a unique temporary name beside its target and renamed over it when
 * complete (same folder, so the rename is atomic). The temporary name is
 * `<path>.tmp.<pid>.<8 hex digits>`, created with O_CREAT | O_EXCL | O_NOFOLLOW: nothing planted
 * under a predictable name (a symlink to someone else's file) is ever opened, and concurrent
 * writers into one path each write their own file; the last rename wins, and every reader
 * sees one complete file. Plain struct, usually on the stack (about 8 KiB).
 */
typedef struct rd_lmdbx_outfile {
    FILE *f;             // the temporary file, open "wb"; NULL after commit or abort
    char path[4096];     // the target
    char tmp[4096 + 32]; // the temporary file's name; "" when there is none to remove
} rd_lmdbx_outfile;

/**
 * Create the temporary file of `path` (see rd_lmdbx_outfile). Write to of->f, then call
 * rd_lmdbx_outfile_commit or rd_lmdbx_outfile_abort (exactly one of them).
 * @param[in]  path  the target; refused when it is a FIFO, a device or a symlink
 *                   (rd_lmdbx_check_replaceable), or a folder (the rename would fail only at
 *                   the commit, after the caller's work)
 * @param[out] of    the open file; on failure nothing is open and nothing is left on disk
 * @return RD_OK; RD_ERR_ARG (path empty or too long), RD_ERR_EXISTS (not replaceable, a folder),
 *         RD_ERR_IO / RD_ERR_FULL (the folder is missing, read-only or full)
 */
int rd_lmdbx_outfile_open(const char *path, rd_lmdbx_outfile *of, rd_errbuf *eb);

/**
 * Flush and fsync the temporary file, close it, rename it over the target (checked again to be
 * replaceable) and fsync the folder. On any failure before the rename, write errors of the
 * caller's own fwrite/fprintf included (they stick in ferror), the temporary file is removed and
 * the target is untouched. A failure of the folder's fsync, after the rename, leaves the new
 * file in place (a store's MANIFEST, a run's report: better than none); a command's own output
 * takes rd_lmdbx_outfile_commit_out.
 * @return RD_OK; RD_ERR_IO / RD_ERR_FULL ("write <tmp>: No space left on device", "fsync folder
 *         <dir>: ..."); RD_ERR_EXISTS (the target became a FIFO, device or symlink meanwhile)
 * @note of->f is closed in every case; of may be reused by rd_lmdbx_outfile_open.
 */
int rd_lmdbx_outfile_commit(rd_lmdbx_outfile *of, rd_errbuf *eb);

/**
 * rd_lmdbx_outfile_commit for the file a command was asked to write (`table export --out`,
 * `score --out`): when the folder's fsync fails after the rename, the file placed is removed
 * again (while the entry is still this file), so that a failed command leaves no output; a file
 * it replaced is gone by then, as after any failure past the rename.
 * @return as rd_lmdbx_outfile_commit
 */
int rd_lmdbx_outfile_commit_out(rd_lmdbx_outfile *of, rd_errbuf *eb);

/**
 * rd_lmdbx_outfile_commit for an output that must not exist (`recdistill export`): the file is
 * linked in place (link(2), else renameat2 RENAME_NOREPLACE), never renamed over an entry made
 * since the caller checked, so of two runs writing one new path one fails.
 * A failure of the folder's fsync removes the file placed, as rd_lmdbx_outfile_commit_out does.
 * @return as rd_lmdbx_outfile_commit; RD_ERR_EXISTS "<path> exists (written meanwhile by another
 *         run): give a new file name" (the temporary file is removed, the entry there kept)
 */
int rd_lmdbx_outfile_commit_new(rd_lmdbx_outfile *of, rd_errbuf *eb);

/** Close and remove the temporary file (a failed write). Accepts NULL and a committed, aborted
 *  or failed-to-open `of` (then does nothing). */
void rd_lmdbx_outfile_abort(rd_lmdbx_outfile *of);

/**
 * Write `len` bytes to `path` atomically through an rd_lmdbx_outfile: unique temporary file,
 * fsync, rename over `path`, fsync the folder. A crash leaves either the old file (or none) or
 * the new one, never a torn one (and at worst a stray `<path>.tmp.*`).
 * @return RD_OK or RD_ERR_IO / RD_ERR_FULL (ENOSPC) with the path and strerror in eb;
 *         RD_ERR_EXISTS when `path` is a FIFO, device or symlink
 */
int rd_lmdbx_write_file_atomic(const char *path, const void *data, size_t len, rd_errbuf *eb);

/** rd_lmdbx_write_file_atomic for a command's output: rd_lmdbx_outfile_commit_out (a failure of
 *  the folder's fsync removes the file placed). */
int rd_lmdbx_write_file_out(const char *path, const void *data, size_t len, rd_errbuf *eb);

/** rd_lmdbx_write_file_atomic for a `path` that must not exist: rd_lmdbx_outfile_commit_new. */
int rd_lmdbx_write_file_new(const char *path, const void *data, size_t len, rd_errbuf *eb);

/**
 * fsync the file or folder `path`. A folder the file system refuses to sync (EINVAL, EROFS) is
 * not an error: what it holds is synced on its own.
 * @return RD_OK or RD_ERR_IO / RD_ERR_FULL with the path and strerror in eb (open or fsync)
 */
int rd_lmdbx_fsync_path(const char *path, rd_errbuf *eb);

/**
 * fsync the folder holding `path` (trailing slashes ignored; "." for a bare name), so that a
 * rename into it is durable. A folder that cannot be opened is skipped, as above.
 * @return RD_OK or RD_ERR_IO / RD_ERR_FULL (fsync failed)
 */
int rd_lmdbx_fsync_parent(const char *path, rd_errbuf *eb);

/**
 * rd_lmdbx_fsync_parent(path), then, when rd_lmdbx_mkdir_parents created folders for it
 * (`created` its outermost, "" or NULL = none), the folder holding each of them, innermost
 * first: a new folder's entry lives in its parent, so without this a power loss could take
 * --out a/b/c away with a and b although the command had said it was written.
 * @return RD_OK or RD_ERR_IO / RD_ERR_FULL (an fsync failed)
 */
int rd_lmdbx_fsync_parents(const char *path, const char *created, rd_errbuf *eb);

/**
 * Create the missing parent folders of `path` (not `path` itself), mode 0777 less the umask,
 * and say which was the outermost one created, so that a run that fails can remove exactly what
 * it made (rd_lmdbx_rmdir_created). On failure the folders made so far are removed again.
 * @param[in]  path     a file or folder about to be created
 * @param[out] created  the outermost folder this call created, "" when every parent existed;
 *                      cap bytes (at least strlen(path) + 1)
 * @return RD_OK; RD_ERR_ARG (path empty or too long); RD_ERR_IO ("mkdir <dir>: exists and is
 *         not a folder", "mkdir <dir>: Permission denied"); RD_ERR_FULL (ENOSPC)
 */
int rd_lmdbx_mkdir_parents(const char *path, char *created, size_t cap, rd_errbuf *eb);

/**
 * Undo rd_lmdbx_mkdir_parents after a failure: rmdir the parents of `path` from the innermost
 * up to `created`. Only empty folders go (rmdir), so files others put there meanwhile stay.
 * Does nothing when `created` is NULL or "".
 */
void rd_lmdbx_rmdir_created(const char *path, const char *created);

/**
 * Create a fresh folder beside `out` to build it in, `<out>.partial.<host>.<pid>.<8 hex
 * digits>` (mkdir, mode 0777 less the umask, exclusive: concurrent builds of one `out` never share
 * a folder, and no planted symlink is followed; <host> is this host's name with every byte but
 * letters, digits and '-' made '-'). Rename it to `out` when complete; remove it on failure; then
 * rd_lmdbx_pending_forget(part). It is registered for removal on SIGTERM / SIGINT / SIGHUP /
 * SIGPIPE (rd_lmdbx_pending_add). A SIGKILL or a crash leaves it behind; the next build of the
 * same `out` on the same host removes such leftovers of processes that no longer run (a warning
 * names each), and leaves other hosts' and running processes' alone.
 * @param[out] part  the folder's name, cap bytes (strlen(out) + 88 is enough)
 * @return RD_OK; RD_ERR_ARG (out empty or too long); RD_ERR_IO / RD_ERR_FULL from mkdir (the
 *         parent is missing, read-only or full)
 */
int rd_lmdbx_mkdir_partial(const char *out, char *part, size_t cap, rd_errbuf *eb);

/**
 * This host's name as it appears in the names of partial outputs (rd_lmdbx_mkdir_partial, the
 * dataset's temporary folder): letters, digits and '-' only (any other byte becomes '-'), at
 * most 40 bytes, so that a '.'-separated name parses back.
 * @param[out] buf  cap bytes (48 is enough)
 */
void rd_lmdbx_host_tag(char *buf, size_t cap);

/** 1 when `pid`, read from the name of a leftover of THIS host, is a process that no longer
 *  runs (kill(pid, 0) says ESRCH) and is not this one: its leftover may be removed. 0 for a
 *  running process, one not ours to signal (alive), this process, or a pid out of 1..INT_MAX. */
int rd_lmdbx_pid_gone(long pid);

/**
 * Parse `name` (a folder entry) as the temporary file of an rd_lmdbx_outfile,
 * "<target>.tmp.<pid>.<8 lowercase hex digits>".
 * @param[out] target_len  the length of <target> (may be NULL)
 * @param[out] pid         the process that made it (may be NULL)
 * @return 1 for such a name, else 0 (nothing set)
 */
int rd_lmdbx_outfile_tmp_name(const char *name, size_t *target_len, long *pid);

/**
 * Remove from folder `dir` the temporary files of rd_lmdbx_outfile that earlier processes left
 * when they were killed between the create and the rename (SIGKILL, the OOM killer, a crash):
 * regular files named as rd_lmdbx_outfile_tmp_name says, whose target `ours` accepts (`ours`
 * gets the entry's name and the target's length; NULL accepts any) and whose process no longer
 * runs on this host (rd_lmdbx_pid_gone: never this process's, never a running one's). A
 * warning names each file removed. Folders, symlinks and other names are left alone.
 * The names carry no host, so call it only as the folder's one writer (holding its writer lock,
 * rd/writer_lock.h): a process on another host that writes there is then excluded by the lock.
 * @return the number of files removed (an unreadable folder: 0)
 */
int rd_lmdbx_remove_stale_outfiles(const char *dir, int (*ours)(const char *target, size_t len));

/**
 * Outputs in progress, removed if the process is terminated by SIGTERM, SIGINT, SIGHUP or
 * SIGPIPE (a Slurm time limit or scancel, a Ctrl-C, output piped into a reader that quit): the
 * temporary files of rd_lmdbx_outfile and the folders of rd_lmdbx_mkdir_partial register
 * themselves. The first registration installs a handler for each of the four signals whose
 * action is the default (an ignored or otherwise
 * handled signal is left alone). It removes every registered path (a folder with what it holds)
 * with async-signal-safe calls only, then lets the signal end the process as before (exit
 * status 128 + signal). At most 16 paths at once; a 17th is not registered (return -1).
 * @return the slot, or -1 (path empty or longer than 4199 bytes, or the table full)
 */
int rd_lmdbx_pending_add(const char *path);

/** Unregister `path` (after its rename or its removal). Unknown paths are ignored. */
void rd_lmdbx_pending_forget(const char *path);

/** 1 if `sig`'s handler is the one that removes the registered outputs, else 0 (not installed
 *  yet, or the signal was ignored or another library's when it would have been: UCX, linked in
 *  through MPI, handles SIGHUP). */
int rd_lmdbx_pending_covers(int sig);

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

/**
 * Open `path` for reading if it is a regular file. open() with O_RDONLY | O_NONBLOCK | O_CLOEXEC,
 * so that a FIFO (with no writer, open() blocks for ever) or a device returns at once; fstat;
 * anything but a regular file is refused before a byte is read; then O_NONBLOCK is cleared and
 * the descriptor is wrapped by fdopen. For the files a command reads as a whole (a config, a
 * calibration, a MANIFEST, dense.bin): fopen() of a FIFO given as CONFIG hung `recdistill
 * config`, and a check of st_mode after fopen came too late. Inputs that may be pipes (a CSV
 * log, `table import --in`) are opened with fopen.
 * @param[out] out  the open file (fclose it); NULL on failure
 * @return 0; -1 when open/fstat/fcntl/fdopen failed (errno says why, ENOENT for a missing
 *         file); 1 when `path` is not a regular file (a folder, a FIFO, a device; errno EINVAL)
 */
int rd_lmdbx_fopen_regular(const char *path, FILE **out);

/**
 * Refuse an output that would overwrite an input: `out` is the input file `in` (the same
 * st_dev/st_ino, so also under another name), or resolves to `in` or to a path inside the input
 * folder `in`. Paths are compared after realpath of their deepest existing ancestor (symlinks and
 * ".." resolved; the missing tail as written), so neither needs to exist: two outputs that do
 * not exist yet may be compared too. Call it before anything is written.
 * @param[in] opt   the option naming `out` in the message, e.g. "--out"
 * @param[in] what  what `in` is, e.g. "the input checkpoint"
 * @return RD_OK; RD_ERR_ARG ("--out C/MANIFEST is inside the input checkpoint C: nothing
 *         written", "--out a.csv is the input file a.csv: nothing written", or a path that
 *         cannot be resolved: empty, too long, or relative with the working folder gone)
 */
int rd_lmdbx_check_out_not_input(
    const char *opt, const char *out, const char *what, const char *in, rd_errbuf *eb);

// ---------------------------------------------------------------------------------------------
// Damaged pages
//
// LMDB trusts the page structure of its file: a page whose header, pointers or sizes were
// damaged on disk (a flipped bit, a zeroed block, a bad copy) makes the reading thread follow a
// wild pointer (SIGSEGV), read past the end of the file (SIGBUS) or fail one of LMDB's own
// assertions, which calls abort(). Record CRCs cannot catch this: the crash comes before the
// record. The guard turns those three into an ordinary error of the call that met them:
//
//     int rc, faulted;
//     RD_LMDBX_GUARDED(rc, faulted, path, eb, read_something(s, ..., eb));
//
// runs the call; if the thread faults inside it (or LMDB asserts), control returns to the
// guard, which sets eb to "<path>: damaged LMDB file (SIGSEGV at 0x... while reading its page
// structure): ..." and rc to RD_ERR_CORRUPT. Guards nest (per thread). Nothing of the
// interrupted call is cleaned up: a caller that got RD_ERR_CORRUPT from a guard must treat the
// env as unusable (report and stop; closing it is allowed). A fault outside any guard goes to
// the handler that was installed before (ASan, UCX, the default: a core dump) exactly as if
// the guard did not exist, and an LMDB assertion outside a guard aborts as before.
// The handler is (re)installed by every rd_lmdbx_env_open (and rd_lmdbx_guard_install) when it
// is not in place, and chains to the one it found. A program in which another library replaces
// the SIGSEGV handler after its envs are open (a test runner does, around each test) calls
// rd_lmdbx_guard_install() again. Envs opened with rd_lmdbx_env_open route LMDB's assertions
// through the guards (mdb_env_set_assert); others can call rd_lmdbx_guard_env().
// Cost per guarded call: a sigsetjmp without the signal mask (no system call) and two
// thread-local stores.

typedef struct rd_lmdbx_guard {
    sigjmp_buf jb;
    struct rd_lmdbx_guard *prev;
    const char *what; // names the file in the message (the env folder)
    int sig;          // SIGSEGV / SIGBUS, or 0 for an LMDB assertion
    void *addr;       // the faulting address (signals)
    char assert_msg[192];
} rd_lmdbx_guard;

/** Install the SIGSEGV/SIGBUS handler of the guards unless it is in place (see above). */
void rd_lmdbx_guard_install(void);
/** Internal to RD_LMDBX_GUARDED: make `g` the innermost guard of this thread. */
void rd_lmdbx_guard_push(rd_lmdbx_guard *g, const char *what);
/** Internal: leave `g` (the innermost guard) after its call returned. */
void rd_lmdbx_guard_pop(rd_lmdbx_guard *g);
/** Internal: after a fault was caught by `g`: fill eb, return RD_ERR_CORRUPT. */
int rd_lmdbx_guard_fault(rd_lmdbx_guard *g, rd_errbuf *eb);
/** Route LMDB's assertion callback of `env` to the guards (rd_lmdbx_env_open does it). */
void rd_lmdbx_guard_env(MDB_env *env);

/**
 * Run `call` (an expression of type int) under a guard; store its value, or RD_ERR_CORRUPT
 * with eb filled when it met a damaged page, in the int lvalue `rc`; set the int lvalue
 * `faulted` to 1 in the second case and to 0 otherwise.
 */
#define RD_LMDBX_GUARDED(rc, faulted, what, eb, call)                                              \
    do {                                                                                           \
        rd_lmdbx_guard rd_g_;                                                                      \
        rd_lmdbx_guard_push(&rd_g_, (what));                                                       \
        if (sigsetjmp(rd_g_.jb, 0)) {                                                              \
            (rc) = rd_lmdbx_guard_fault(&rd_g_, (eb));                                             \
            (faulted) = 1;                                                                         \
        } else {                                                                                   \
            (rc) = (call);                                                                         \
            rd_lmdbx_guard_pop(&rd_g_);                                                            \
            (faulted) = 0;                                                                         \
        }                                                                                          \
    } while (0)

/** The damaged state of a handle (a store, a log): set by its first guarded fault. */
typedef struct rd_lmdbx_damage {
    int damaged;
    char msg[RD_ERR_MSG_MAX];
} rd_lmdbx_damage;

/** Internal to RD_LMDBX_RETURN_GUARDED: refuse a call on a damaged handle. */
int rd_lmdbx_damage_refuse(const rd_lmdbx_damage *d, rd_errbuf *eb);
/** Internal: record the fault message `geb` (prefixed) in d, copy it to eb, RD_ERR_CORRUPT. */
int rd_lmdbx_damage_record(rd_lmdbx_damage *d, const char *prefix, rd_errbuf *geb, rd_errbuf *eb);

/**
 * In a function returning int: return the value of `call` run under a guard, for a handle
 * whose damaged state is `dmg`. After a fault the handle refuses every later call with the
 * first message ("<prefix><what>: damaged LMDB file ..."): its transactions and cursors were
 * left mid-operation.
 */
#define RD_LMDBX_RETURN_GUARDED(dmg, prefix, what, eb, call)                                       \
    do {                                                                                           \
        if ((dmg)->damaged)                                                                        \
            return rd_lmdbx_damage_refuse((dmg), (eb));                                            \
        int rc_, faulted_;                                                                         \
        rd_errbuf geb_;                                                                            \
        rd_errbuf_clear(&geb_);                                                                    \
        RD_LMDBX_GUARDED(rc_, faulted_, (what), &geb_, (call));                                    \
        if (!faulted_)                                                                             \
            return rc_;                                                                            \
        return rd_lmdbx_damage_record((dmg), (prefix), &geb_, (eb));                               \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif // RD_LMDBX_H
