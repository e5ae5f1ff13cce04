// lmdbx.c — small LMDB helpers: env opening, error mapping, map growth with retry, renewable
// read transactions, atomic small files. See rd/lmdbx.h for the contract.
//
// Invariants: every env is opened with MDB_NOTLS and never with MDB_NOLOCK; a map is only
// resized when this process has no active transaction on it (the callers guarantee it: each
// store handle is single-threaded and resets its read transactions between calls).
// Workload: rd_lmdbx_write is called once per append batch (thousands of records), so its
// overhead (one mdb_env_info on growth) does not matter; rd_lmdbx_read_begin is on the fetch
// path and costs one mdb_txn_renew.
#include "rd/lmdbx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DEFAULT_MAX_MAP    (UINT64_C(1) << 40) // 1 TiB of address space, not of disk
#define MAX_RESIZE_RETRIES 64

// ---------------------------------------------------------------------------------------------
// Errors

int rd_lmdbx_status(int rc) {
    switch (rc) {
        case 0:
            return RD_OK;
        case MDB_NOTFOUND:
        case ENOENT:
            return RD_ERR_NOTFOUND;
        case MDB_MAP_FULL:
        case MDB_TXN_FULL:
        case ENOSPC:
        case EFBIG: // the file may not grow (RLIMIT_FSIZE, file system limit): no space for it
#ifdef EDQUOT
        case EDQUOT:
#endif
            return RD_ERR_FULL;
        case ENOMEM:
            return RD_ERR_NOMEM;
        case MDB_INVALID:
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
            return RD_ERR_CORRUPT;
        case MDB_VERSION_MISMATCH:
            return RD_ERR_VERSION;
        case MDB_KEYEXIST:
            return RD_ERR_EXISTS;
        case EACCES:
        case EROFS:
        case EIO:
        case EPERM:
            return RD_ERR_IO;
        case EINVAL:
        case MDB_BAD_VALSIZE:
            return RD_ERR_ARG;
        default:
            return RD_ERR_LMDB;
    }
}

// LMDB reports a short write (the usual form of a full disk, or of a file-size limit) as EIO.
// Tell that case apart: little free space where the env lives, or a finite RLIMIT_FSIZE.
static int looks_full(const char *path) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        return 1;
    struct statvfs vf;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    while (statvfs(dir, &vf) != 0) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
            return 0;
        *slash = '\0';
    }
    return (uint64_t)vf.f_bavail * vf.f_frsize < (uint64_t)4 << 20;
}

int rd_lmdbx_error(rd_errbuf *eb, int rc, const char *what, const char *path) {
    if (rc == 0)
        return RD_OK;
    int st = rd_lmdbx_status(rc);
    const char *why = mdb_strerror(rc);
    if (rc == MDB_TXN_FULL)
        why = "transaction has too many dirty pages (MDB_TXN_FULL)";
    if (rc == EIO && path && looks_full(path)) {
        st = RD_ERR_FULL;
        why = "short write: no space left (disk full or file size limit)";
    }
    rd_err_set(eb, st, "%s: %s: %s (LMDB rc %d)", what ? what : "LMDB", path ? path : "(env)", why,
               rc);
    return st;
}

// ---------------------------------------------------------------------------------------------
// Files

int rd_lmdbx_mkdir_p(const char *path, rd_errbuf *eb) {
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return rd_err_set(eb, RD_ERR_ARG, "mkdir: path of %zu bytes (1..%zu)", n, sizeof tmp - 1);
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return rd_err_set(eb, errno == ENOSPC ? RD_ERR_FULL : RD_ERR_IO, "mkdir %s: %s", tmp,
                              strerror(errno));
        tmp[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_IO, "mkdir %s: exists and is not a folder", path);
    return RD_OK;
}

static int io_error(rd_errbuf *eb, const char *what, const char *path) {
    int e = errno;
    return rd_err_set(eb, e == ENOSPC || e == EDQUOT || e == EFBIG ? RD_ERR_FULL : RD_ERR_IO,
                      "%s %s: %s", what, path, strerror(e));
}

int rd_lmdbx_check_replaceable(const char *path, rd_errbuf *eb) {
    struct stat st;
    if (lstat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        return RD_OK;
    const char *what = S_ISLNK(st.st_mode)                          ? "a symbolic link"
                       : S_ISFIFO(st.st_mode)                       ? "a FIFO"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                    : "a special file";
    return rd_err_set(eb, RD_ERR_EXISTS,
                      "%s exists and is not a regular file (%s): not replaced; give the path of "
                      "a regular file",
                      path, what);
}

int rd_lmdbx_write_file_atomic(const char *path, const void *data, size_t len, rd_errbuf *eb) {
    char tmp[4096 + 8];
    if (strlen(path) >= 4096)
        return rd_err_set(eb, RD_ERR_ARG, "path too long: %.64s...", path);
    int chk = rd_lmdbx_check_replaceable(path, eb);
    if (chk != RD_OK)
        return chk;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return io_error(eb, "create", tmp);
    const unsigned char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int rc = io_error(eb, "write", tmp);
            close(fd);
            unlink(tmp);
            return rc;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int rc = io_error(eb, "fsync", tmp);
        close(fd);
        unlink(tmp);
        return rc;
    }
    if (close(fd) != 0) {
        int rc = io_error(eb, "close", tmp);
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        int rc = io_error(eb, "rename to", path);
        unlink(tmp);
        return rc;
    }
    // Make the rename durable: fsync the folder holding it.
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        // Some file systems refuse fsync on folders (EINVAL); the data itself is already synced.
        if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS) {
            int rc = io_error(eb, "fsync folder", dir);
            close(dfd);
            return rc;
        }
        close(dfd);
    }
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Env

// A truncated data.mdb (copied in part, a full disk during a copy) still opens: its meta page
// names pages past the end of the file, and the first read of one through the map is a SIGBUS.
// Check the file against the meta page before anything reads a page.
int rd_lmdbx_check_size(MDB_env *env, const char *path, rd_errbuf *eb) {
    MDB_envinfo info;
    MDB_stat ms;
    struct stat st;
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data.mdb", path);
    if (mdb_env_info(env, &info) == 0 && mdb_env_stat(env, &ms) == 0 && stat(data, &st) == 0 &&
        st.st_size > 0) {
        uint64_t need = ((uint64_t)info.me_last_pgno + 1) * (uint64_t)ms.ms_psize;
        if (need > (uint64_t)st.st_size)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "LMDB env %s: data.mdb is truncated: %lld bytes, but its last page "
                              "ends at byte %llu",
                              path, (long long)st.st_size, (unsigned long long)need);
    }
    return RD_OK;
}

int rd_lmdbx_env_open(const char *path, const rd_lmdbx_opts *o, MDB_env **out, rd_errbuf *eb) {
    RD_ASSERT(path && o && out);
    *out = NULL;
    struct stat st;
    if (o->read_only || !o->create) {
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            return rd_err_set(eb, RD_ERR_NOTFOUND, "LMDB env %s: no such folder", path);
        if (o->read_only) {
            char data[4096 + 16];
            snprintf(data, sizeof data, "%s/data.mdb", path);
            if (stat(data, &st) != 0)
                return rd_err_set(eb, RD_ERR_NOTFOUND, "LMDB env %s: no data.mdb in the folder",
                                  path);
        }
    } else {
        int rc = rd_lmdbx_mkdir_p(path, eb);
        if (rc != RD_OK)
            return rc;
    }
    MDB_env *env = NULL;
    int rc = mdb_env_create(&env);
    if (rc)
        return rd_lmdbx_error(eb, rc, "mdb_env_create", path);
    if (o->max_dbs)
        rc = mdb_env_set_maxdbs(env, o->max_dbs);
    if (!rc && o->max_readers)
        rc = mdb_env_set_maxreaders(env, o->max_readers);
    unsigned flags = MDB_NOTLS;
    if (o->read_only)
        flags |= MDB_RDONLY;
    else if (o->no_sync)
        flags |= MDB_NOSYNC;
    if (!rc)
        rc = mdb_env_open(env, path, flags, 0644);
    if (rc) {
        mdb_env_close(env);
        // LMDB says EINVAL for a file that is not an LMDB env on some paths; MDB_INVALID on most.
        return rd_lmdbx_error(eb, rc, "mdb_env_open", path);
    }
    rc = rd_lmdbx_check_size(env, path, eb);
    if (rc != RD_OK) {
        mdb_env_close(env);
        return rc;
    }
    if (!o->read_only) {
        // Opened with the size recorded in the file; raise it to the requested one (never shrink:
        // a smaller map than the file's would only make the next writes fail).
        MDB_envinfo info;
        mdb_env_info(env, &info);
        uint64_t want = o->map_size;
        uint64_t cap = o->max_map_size ? o->max_map_size : DEFAULT_MAX_MAP;
        if (want > cap)
            want = cap;
        if (want > (uint64_t)info.me_mapsize) {
            rc = mdb_env_set_mapsize(env, (size_t)want);
            if (rc) {
                mdb_env_close(env);
                return rd_lmdbx_error(eb, rc, "mdb_env_set_mapsize", path);
            }
        }
    }
    *out = env;
    return RD_OK;
}

int rd_lmdbx_grow(MDB_env *env, uint64_t max_map_size, const char *path, rd_errbuf *eb) {
    uint64_t cap = max_map_size ? max_map_size : DEFAULT_MAX_MAP;
    MDB_envinfo info;
    int rc = mdb_env_info(env, &info);
    if (rc)
        return rd_lmdbx_error(eb, rc, "mdb_env_info", path);
    uint64_t cur = (uint64_t)info.me_mapsize;
    if (cur >= cap)
        return rd_err_set(eb, RD_ERR_FULL,
                          "LMDB env %s: map is full at %llu bytes (the cap, max_map_size)",
                          path ? path : "(env)", (unsigned long long)cur);
    uint64_t next = cur > cap / 2 ? cap : cur * 2;
    rc = mdb_env_set_mapsize(env, (size_t)next);
    if (rc)
        return rd_lmdbx_error(eb, rc, "mdb_env_set_mapsize (grow)", path);
    return RD_OK;
}

int rd_lmdbx_write(MDB_env *env,
                   uint64_t max_map_size,
                   const char *path,
                   const char *what,
                   rd_lmdbx_write_fn fn,
                   void *ctx,
                   rd_errbuf *eb) {
    int resized = 0;
    for (;;) {
        MDB_txn *txn = NULL;
        int rc = mdb_txn_begin(env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED && resized++ < MAX_RESIZE_RETRIES) {
            // Another process grew the map: adopt its size and start again.
            rc = mdb_env_set_mapsize(env, 0);
            if (rc)
                return rd_lmdbx_error(eb, rc, what, path);
            continue;
        }
        if (rc)
            return rd_lmdbx_error(eb, rc, what, path);
        rc = fn(txn, ctx, eb);
        if (rc == 0)
            rc = mdb_txn_commit(txn); // frees txn whatever the outcome
        else
            mdb_txn_abort(txn);
        if (rc == 0)
            return RD_OK;
        if (rc == MDB_MAP_FULL) {
            // The batch did not fit: nothing of it is committed; grow and run it again.
            int g = rd_lmdbx_grow(env, max_map_size, path, eb);
            if (g != RD_OK) {
                rd_err_prefix(eb, "%s: ", what);
                return g;
            }
            continue;
        }
        if (rd_lmdbx_is_rd_status(rc))
            return rc;
        return rd_lmdbx_error(eb, rc, what, path);
    }
}

int rd_lmdbx_read_begin(MDB_env *env, MDB_txn **txn, const char *path, rd_errbuf *eb) {
    for (int tries = 0;; tries++) {
        int rc;
        if (*txn) {
            rc = mdb_txn_renew(*txn);
        } else {
            MDB_txn *t = NULL;
            rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &t);
            if (rc == 0)
                *txn = t;
        }
        if (rc == 0)
            return RD_OK;
        if (*txn) {
            mdb_txn_abort(*txn);
            *txn = NULL;
        }
        if (rc == MDB_MAP_RESIZED && tries < MAX_RESIZE_RETRIES) {
            // The writer grew the map beyond ours: adopt the size recorded in the file.
            rc = mdb_env_set_mapsize(env, 0);
            if (rc == 0)
                continue;
        }
        return rd_lmdbx_error(eb, rc, "begin read transaction", path);
    }
}
