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

#include "rd/hash.h"
#include "rd/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_MAP    (UINT64_C(1) << 40) // 1 TiB of address space, not of disk
#define MAX_RESIZE_RETRIES 64
#define LMDB_DEFAULT_MAP   (UINT64_C(1) << 20) // the map of a new env without mdb_env_set_mapsize

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
    // Out of descriptors: say the limit, which an env of each shard of a store adds up against.
    char nofile[96] = "";
    struct rlimit rl;
    if ((rc == EMFILE || rc == ENFILE) && getrlimit(RLIMIT_NOFILE, &rl) == 0)
        snprintf(nofile, sizeof nofile,
                 rc == EMFILE ? " (this process may open %llu files: ulimit -n)"
                              : " (the system's open files; this process may open %llu)",
                 (unsigned long long)rl.rlim_cur);
    rd_err_set(eb, st, "%s: %s: %s%s (LMDB rc %d)", what ? what : "LMDB", path ? path : "(env)",
               why, nofile, rc);
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
        if (mkdir(tmp, 0777) == 0) {
            // A new folder's entry lives in its parent: synced there, or a crash could lose the
            // folder (and the LMDB env or file made in it) although their own data was synced.
            int rc = rd_lmdbx_fsync_parent(tmp, eb);
            if (rc != RD_OK)
                return rc;
        } else if (errno != EEXIST) {
            return rd_err_set(eb, errno == ENOSPC ? RD_ERR_FULL : RD_ERR_IO, "mkdir %s: %s", tmp,
                              strerror(errno));
        }
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

int rd_lmdbx_fopen_regular(const char *path, FILE **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return 1;
    }
    // Blocking reads again: O_NONBLOCK was only for open() (a regular file ignores it today,
    // but stdio must not see EAGAIN should that change, e.g. on a network file system).
    int fl = fcntl(fd, F_GETFL);
    FILE *f = fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0 ? NULL : fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *out = f;
    return 0;
}

// The absolute path `path` will have once it exists: its deepest existing ancestor resolved by
// realpath (symlinks, "..", bind of the working directory), then the missing components appended
// as written, "." dropped and ".." taking one back (a folder created on the way is a real one, so
// its ".." is its parent). Returns 0, or -1 when the path is empty or does not fit.
static int resolve_future(const char *path, char *res, size_t cap) {
    char buf[8192];
    if (!path[0])
        return -1;
    if (path[0] == '/') {
        if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
            return -1;
    } else {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd) ||
            snprintf(buf, sizeof buf, "%s/%s", cwd, path) >= (int)sizeof buf)
            return -1;
    }
    // Cut at the last '/' until the prefix resolves ("/" always does).
    size_t cut = strlen(buf);
    char rp[PATH_MAX];
    for (;;) {
        char c = buf[cut];
        buf[cut] = '\0';
        const char *r = realpath(cut ? buf : "/", rp);
        buf[cut] = c;
        if (r)
            break;
        while (cut > 0 && buf[cut - 1] != '/')
            cut--;
        while (cut > 0 && buf[cut - 1] == '/')
            cut--;
    }
    size_t n = strlen(rp);
    if (n >= cap)
        return -1;
    memcpy(res, rp, n + 1);
    for (char *p = buf + cut; *p;) {
        while (*p == '/')
            p++;
        char *e = p;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
            // nothing
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 1 && res[n - 1] != '/')
                n--;
            if (n > 1)
                n--; // the '/' too, except the root's
            res[n] = '\0';
        } else {
            if (n + 1 + len >= cap)
                return -1;
            if (n > 1 || res[0] != '/')
                res[n++] = '/';
            memcpy(res + n, p, len);
            n += len;
            res[n] = '\0';
        }
        p = e;
    }
    return 0;
}

int rd_lmdbx_check_out_not_input(
    const char *opt, const char *out, const char *what, const char *in, rd_errbuf *eb) {
    struct stat so, si;
    int in_exists = stat(in, &si) == 0;
    // The same file under another name (a hard link, a symlink, "./x" for "x").
    if (in_exists && !S_ISDIR(si.st_mode) && stat(out, &so) == 0 && so.st_dev == si.st_dev &&
        so.st_ino == si.st_ino)
        return rd_err_set(eb, RD_ERR_ARG, "%s %s is %s %s: nothing written", opt, out, what, in);
    char ro[8192], ri[8192];
    if (resolve_future(out, ro, sizeof ro) != 0 || resolve_future(in, ri, sizeof ri) != 0)
        return rd_err_set(eb, RD_ERR_ARG,
                          "%s %s: cannot resolve it (or %s %s) to compare the two: empty, too "
                          "long, or the working folder is gone",
                          opt, out, what, in);
    size_t ni = strlen(ri);
    if (strcmp(ro, ri) == 0)
        return rd_err_set(eb, RD_ERR_ARG, "%s %s is %s %s: nothing written", opt, out, what, in);
    // Inside: a folder input (existing or not: a file input has nothing inside it).
    if ((!in_exists || S_ISDIR(si.st_mode)) && strncmp(ro, ri, ni) == 0 &&
        (ro[ni] == '/' || (ni == 1 && ri[0] == '/')))
        return rd_err_set(eb, RD_ERR_ARG, "%s %s is inside %s %s: nothing written", opt, out, what,
                          in);
    return RD_OK;
}

int rd_lmdbx_fsync_path(const char *path, rd_errbuf *eb) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return io_error(eb, "open to fsync", path);
    int rc = RD_OK;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = io_error(eb, "fsync", path);
    close(fd);
    return rc;
}

int rd_lmdbx_fsync_parent(const char *path, rd_errbuf *eb) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd < 0)
        return RD_OK; // nothing to sync through: the data itself is already synced
    // Some file systems refuse fsync on folders (EINVAL); the data itself is already synced.
    int rc = RD_OK;
    if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS)
        rc = io_error(eb, "fsync folder", dir);
    close(dfd);
    return rc;
}

// A suffix nobody can predict for a temporary name: ".<pid>.<8 hex digits>" from the pid, the
// clock, an address of the caller's frame and the attempt. Names are created exclusively (O_EXCL,
// mkdir), so a collision only costs a retry.
static void unique_suffix(char *buf, size_t cap, const void *salt, int attempt) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec * 1000000007ULL ^
                    (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)salt;
    uint64_t r = rd_mix64(seed + (uint64_t)attempt);
    snprintf(buf, cap, ".%ld.%08x", (long)getpid(), (unsigned)(r & 0xffffffffu));
}

// ---------------------------------------------------------------------------------------------
// Outputs in progress, removed when the process is terminated (see rd/lmdbx.h)
//
// A fixed table of paths (no allocation): a slot goes 0 (free) -> 1 (being filled) -> 2
// (registered) -> 0. The handler reads only slots in state 2 and uses only async-signal-safe
// calls (unlink, openat, getdents64, unlinkat, close, raise), so it may run between any two
// instructions of the main program, LMDB's copy included.

#define PENDING_MAX 16

typedef struct pending {
    volatile sig_atomic_t state;
    char path[4200];
} pending;

static pending g_pending[PENDING_MAX];
static volatile sig_atomic_t g_term_installed;

#if defined(__linux__)
#include <sys/syscall.h>

// Remove `name` under dirfd: a file, or a folder and what it holds (depth <= 8, no link is
// followed). Signal-safe: raw getdents64, no malloc, no stdio.
static void rm_tree_at(int dirfd, const char *name, int depth) {
    if (unlinkat(dirfd, name, 0) == 0 || (errno != EISDIR && errno != EPERM) || depth > 8)
        return;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[2048];
    for (int pass = 0; pass < 64; pass++) { // entries removed while reading: read again
        int removed = 0;
        long n;
        lseek(fd, 0, SEEK_SET);
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[]
                unsigned short reclen;
                memcpy(&reclen, buf + off + 16, sizeof reclen);
                const char *nm = buf + off + 19;
                off += reclen;
                if (reclen == 0)
                    break;
                if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')))
                    continue;
                rm_tree_at(fd, nm, depth + 1);
                removed++;
            }
        }
        if (!removed)
            break;
    }
    close(fd);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}
#else
static void rm_tree_at(int dirfd, const char *name, int depth) {
    (void)dirfd;
    (void)depth;
    if (unlink(name) != 0)
        rmdir(name);
}
#endif

static void on_terminate(int sig) {
    int saved = errno;
    for (int i = 0; i < PENDING_MAX; i++)
        if (g_pending[i].state == 2)
            rm_tree_at(AT_FDCWD, g_pending[i].path, 0);
    errno = saved;
    // SA_RESETHAND put the default action back: the signal, pending until this returns,
    // then ends the process as it would have without the handler (exit status 128 + sig).
    raise(sig);
}

static void install_terminate(void) {
    if (g_term_installed)
        return;
    g_term_installed = 1;
    // SIGPIPE too: a tool whose output or log goes into a pipe that closed early (`recdistill
    // prepare C 2>&1 | head`) died by it mid-build and left its partial folder behind.
    static const int sigs[4] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};
    for (int k = 0; k < 4; k++) {
        struct sigaction old, sa;
        if (sigaction(sigs[k], NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
            old.sa_handler != SIG_DFL)
            continue; // ignored (nohup) or handled by someone else: left alone
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_terminate;
        sa.sa_flags = SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[k], &sa, NULL);
    }
}

int rd_lmdbx_pending_covers(int sig) {
    struct sigaction cur;
    return sigaction(sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
           cur.sa_handler == on_terminate;
}

int rd_lmdbx_pending_add(const char *path) {
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof g_pending[0].path)
        return -1;
    install_terminate();
    for (int i = 0; i < PENDING_MAX; i++) {
        sig_atomic_t expect = 0;
        if (!__atomic_compare_exchange_n(&g_pending[i].state, &expect, 1, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;
        memcpy(g_pending[i].path, path, n + 1);
        __atomic_store_n(&g_pending[i].state, 2, __ATOMIC_RELEASE);
        return i;
    }
    return -1;
}

void rd_lmdbx_pending_forget(const char *path) {
    if (!path || !path[0])
        return;
    for (int i = 0; i < PENDING_MAX; i++)
        if (__atomic_load_n(&g_pending[i].state, __ATOMIC_ACQUIRE) == 2 &&
            strcmp(g_pending[i].path, path) == 0) {
            __atomic_store_n(&g_pending[i].state, 0, __ATOMIC_RELEASE);
            return;
        }
}

int rd_lmdbx_outfile_open(const char *path, rd_lmdbx_outfile *of, rd_errbuf *eb) {
    memset(of, 0, sizeof *of);
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof of->path)
        return rd_err_set(eb, RD_ERR_ARG, "output path of %zu bytes (1..%zu): %.64s...", n,
                          sizeof of->path - 1, path);
    // "runs/x/" names a folder (existing or not): refused by name, not as the failed create of
    // "runs/x/.tmp.<pid>.<hex>" that it led to.
    if (path[n - 1] == '/')
        return rd_err_set(eb, RD_ERR_ARG,
                          "%s ends with '/': give the path of a file (a folder is no output here)",
                          path);
    int rc = rd_lmdbx_check_replaceable(path, eb);
    if (rc != RD_OK)
        return rc;
    // A folder is refused now, not at the rename (EISDIR): the caller has not done its work yet
    // (`score --out DIR` scored every record first), nor committed another output of the same
    // command (score's CSV stayed when its --json was a folder).
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_EXISTS,
                          "%s exists and is a folder: not replaced; give the path of a file", path);
    memcpy(of->path, path, n + 1);
    // A name nobody can predict, created exclusively: a file or symlink planted under it is
    // never opened (O_EXCL fails on any existing entry, dangling symlinks included), and two
    // writers into one path each get their own.
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 100; attempt++) {
        char sfx[40];
        unique_suffix(sfx, sizeof sfx, of, attempt);
        snprintf(of->tmp, sizeof of->tmp, "%s.tmp%s", path, sfx);
        // Registered before it exists (a signal between the open and the registration left
        // it); a name that was taken is forgotten again.
        (void)rd_lmdbx_pending_add(of->tmp);
        fd = open(of->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            rd_lmdbx_pending_forget(of->tmp);
            errno = e;
        }
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) { // the output's folder is missing: said so
            const char *slash = strrchr(path, '/');
            int dl = slash ? (slash == path ? 1 : (int)(slash - path)) : 1;
            rc = rd_err_set(eb, RD_ERR_IO, "cannot write %s: no folder %.*s (%s)", path, dl,
                            slash ? path : ".", strerror(errno));
        } else {
            rc = io_error(eb, "create temporary file", of->tmp);
        }
        of->tmp[0] = '\0';
        return rc;
    }
    if (!(of->f = fdopen(fd, "wb"))) {
        rc = io_error(eb, "open", of->tmp);
        close(fd);
        unlink(of->tmp);
        rd_lmdbx_pending_forget(of->tmp);
        of->tmp[0] = '\0';
        return rc;
    }
    return RD_OK;
}

void rd_lmdbx_outfile_abort(rd_lmdbx_outfile *of) {
    if (!of)
        return;
    if (of->f)
        fclose(of->f);
    of->f = NULL;
    if (of->tmp[0]) {
        unlink(of->tmp);
        rd_lmdbx_pending_forget(of->tmp);
    }
    of->tmp[0] = '\0';
}

// Move the complete temporary file to of->path, which must not exist: link(2) fails with
// EEXIST on any entry there (a file another run made since the caller checked, a dangling
// symlink), where rename(2) would replace it. A file system without hard links takes
// renameat2(RENAME_NOREPLACE); one without that either, a check and rename (a narrow race).
static int place_new(const rd_lmdbx_outfile *of, rd_errbuf *eb) {
    int rc = link(of->tmp, of->path);
    if (rc != 0 && errno != EEXIST) {
#if defined(SYS_renameat2)
        rc = (int)syscall(SYS_renameat2, AT_FDCWD, of->tmp, AT_FDCWD, of->path, 1 /*NOREPLACE*/);
        if (rc == 0)
            return RD_OK;
#endif
        if (errno != EEXIST) {
            struct stat st;
            if (lstat(of->path, &st) == 0)
                errno = EEXIST;
            else
                rc = rename(of->tmp, of->path);
            if (rc == 0)
                return RD_OK;
        }
    }
    if (rc != 0 && errno == EEXIST)
        return rd_err_set(eb, RD_ERR_EXISTS,
                          "%s exists (written meanwhile by another run): give a new file name",
                          of->path);
    if (rc != 0)
        return io_error(eb, "link to", of->path);
    unlink(of->tmp); // the target holds the file now
    return RD_OK;
}

// Flags of outfile_commit.
enum {
    COMMIT_NEW = 1,    // the target must not exist (place_new)
    COMMIT_REMOVE = 2, // a failure after the rename removes the file placed (a command's --out)
};

static int outfile_commit(rd_lmdbx_outfile *of, int flags, rd_errbuf *eb);

int rd_lmdbx_outfile_commit(rd_lmdbx_outfile *of, rd_errbuf *eb) {
    return outfile_commit(of, 0, eb);
}

int rd_lmdbx_outfile_commit_out(rd_lmdbx_outfile *of, rd_errbuf *eb) {
    return outfile_commit(of, COMMIT_REMOVE, eb);
}

int rd_lmdbx_outfile_commit_new(rd_lmdbx_outfile *of, rd_errbuf *eb) {
    return outfile_commit(of, COMMIT_NEW | COMMIT_REMOVE, eb);
}

static int outfile_commit(rd_lmdbx_outfile *of, int flags, rd_errbuf *eb) {
    if (!of->f)
        return rd_err_set(eb, RD_ERR_ARG, "%s: output file not open", of->path);
    const int no_replace = flags & COMMIT_NEW;
    // The file's identity, to tell it at of->path after the rename from another writer's.
    struct stat mine;
    const int known = fstat(fileno(of->f), &mine) == 0;
    // A failed fwrite/fprintf of the caller (a full disk) sticks in ferror; the errno it set is
    // most likely still the one at entry, else the cause is reported as EIO.
    int rc = RD_OK, e0 = errno;
    if (fflush(of->f) != 0) {
        rc = io_error(eb, "write", of->tmp);
    } else if (ferror(of->f)) {
        errno = e0 ? e0 : EIO;
        rc = io_error(eb, "write", of->tmp);
    } else if (fsync(fileno(of->f)) != 0) {
        rc = io_error(eb, "fsync", of->tmp);
    }
    int cerr = fclose(of->f);
    of->f = NULL;
    if (rc == RD_OK && cerr != 0)
        rc = io_error(eb, "close", of->tmp);
    // Checked again: the target may have been replaced by a FIFO or a link since the open.
    if (rc == RD_OK && !no_replace)
        rc = rd_lmdbx_check_replaceable(of->path, eb);
    if (rc == RD_OK && no_replace)
        rc = place_new(of, eb);
    else if (rc == RD_OK && rename(of->tmp, of->path) != 0)
        rc = io_error(eb, "rename to", of->path);
    if (rc != RD_OK) {
        rd_lmdbx_outfile_abort(of);
        return rc;
    }
    rd_lmdbx_pending_forget(of->tmp);
    of->tmp[0] = '\0';
    rc = rd_lmdbx_fsync_parent(of->path, eb);
    // In place but not durable (EIO from the folder's fsync): a command's output goes again, so
    // that a failed command leaves none (`table export`, `score` and `export` exited 1 with the
    // file there). Only while the entry is still this file: another writer's since is kept.
    struct stat now;
    if (rc != RD_OK && (flags & COMMIT_REMOVE) && known && lstat(of->path, &now) == 0 &&
        now.st_dev == mine.st_dev && now.st_ino == mine.st_ino)
        unlink(of->path);
    return rc;
}

// Cut the last component (and the slashes before it) off `p` in place. @return 0 when nothing
// is left to cut ("a", "/", "").
static int cut_last(char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') // trailing slashes name the same folder
        p[--n] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash)
        return 0;
    while (slash > p && slash[-1] == '/')
        slash--;
    if (slash == p)
        return 0; // the parent is "/": never created, never removed
    *slash = '\0';
    return 1;
}

int rd_lmdbx_mkdir_parents(const char *path, char *created, size_t cap, rd_errbuf *eb) {
    char dir[4096];
    if (cap)
        created[0] = '\0';
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof dir || n >= cap)
        return rd_err_set(eb, RD_ERR_ARG, "path of %zu bytes (1..%zu): %.64s...", n,
                          (cap < sizeof dir ? cap : sizeof dir) - 1, path);
    memcpy(dir, path, n + 1);
    if (!cut_last(dir))
        return RD_OK; // a relative name or a child of "/": its folder exists
    size_t dn = strlen(dir);
    for (size_t i = 1; i <= dn; i++) {
        if (dir[i] != '/' && dir[i] != '\0')
            continue;
        if (dir[i - 1] == '/')
            continue; // "a//b": the same folder again
        char c = dir[i];
        dir[i] = '\0';
        if (mkdir(dir, 0777) == 0) {
            if (!created[0])
                memcpy(created, dir, i + 1); // the outermost one: everything below is new too
        } else {
            struct stat st;
            int e = errno;
            if (e != EEXIST || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                int rc = e == EEXIST ? rd_err_set(eb, RD_ERR_IO,
                                                  "mkdir %s: exists and is not a folder", dir)
                                     : rd_err_set(eb, e == ENOSPC ? RD_ERR_FULL : RD_ERR_IO,
                                                  "mkdir %s: %s", dir, strerror(e));
                rd_lmdbx_rmdir_created(path, created);
                created[0] = '\0';
                return rc;
            }
        }
        dir[i] = c;
    }
    return RD_OK;
}

int rd_lmdbx_fsync_parents(const char *path, const char *created, rd_errbuf *eb) {
    int rc = rd_lmdbx_fsync_parent(path, eb);
    if (rc != RD_OK || !created || !created[0])
        return rc;
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return RD_OK; // mkdir_parents refused such a path: it created nothing
    size_t cl = strlen(created);
    while (rc == RD_OK && cut_last(dir) && strlen(dir) >= cl) {
        rc = rd_lmdbx_fsync_parent(dir, eb);
        if (strcmp(dir, created) == 0)
            break;
    }
    return rc;
}

void rd_lmdbx_rmdir_created(const char *path, const char *created) {
    if (!created || !created[0])
        return;
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return;
    size_t cl = strlen(created);
    // Innermost first; rmdir removes a folder only when it is empty, so anything another
    // process put there meanwhile keeps its folders.
    while (cut_last(dir) && strlen(dir) >= cl) {
        rmdir(dir);
        if (strcmp(dir, created) == 0)
            break;
    }
}

void rd_lmdbx_host_tag(char *buf, size_t cap) {
    char h[256] = "";
    if (gethostname(h, sizeof h - 1) != 0 || !h[0])
        snprintf(h, sizeof h, "host");
    size_t k = 0;
    for (size_t i = 0; h[i] && k + 1 < cap && k < 40; i++) {
        unsigned char c = (unsigned char)h[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        buf[k++] = ok ? (char)c : '-';
    }
    buf[k] = '\0';
}

int rd_lmdbx_pid_gone(long pid) {
    // Above INT_MAX no process has it; cut to a pid_t it could be 1 (alive) or INT_MIN (ESRCH).
    if (pid <= 0 || pid > INT_MAX || (pid_t)pid == getpid())
        return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH; // else running (or not ours: alive)
}

// Remove what earlier builds of `out` (its first n bytes) left beside it when they were killed
// without a chance to clean up (SIGKILL, a crash): "<out>.partial.<host>.<pid>.<8 hex>" folders
// of THIS host whose process no longer runs (kill(pid, 0) says ESRCH). Another host's, a running
// process's (or a reused pid's) are left alone.
static void remove_stale_partials(const char *out, size_t n, const char *host) {
    char dir[4096], prefix[4200];
    size_t slash = n;
    while (slash > 0 && out[slash - 1] != '/')
        slash--;
    if (slash == 0)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash > 1 ? slash - 1 : 1), out);
    int pl =
        snprintf(prefix, sizeof prefix, "%.*s.partial.%s.", (int)(n - slash), out + slash, host);
    if (pl <= 0 || (size_t)pl >= sizeof prefix)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)pl) != 0)
            continue;
        const char *p = e->d_name + pl;
        char *end = NULL;
        long pid = strtol(p, &end, 10);
        if (end == p || *end != '.' || strlen(end + 1) != 8 ||
            strspn(end + 1, "0123456789abcdef") != 8 || !rd_lmdbx_pid_gone(pid))
            continue;
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rm_tree_at(AT_FDCWD, path, 0);
        RD_LOG_WARN("removed %s: partial output of process %ld of this host, which no longer "
                    "runs",
                    path, pid);
    }
    closedir(d);
}

int rd_lmdbx_mkdir_partial(const char *out, char *part, size_t cap, rd_errbuf *eb) {
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        n--;
    if (n == 0 || n + 88 > cap)
        return rd_err_set(eb, RD_ERR_ARG, "output path of %zu bytes (1..%zu): %.64s...", n,
                          cap > 88 ? cap - 88 : 0, out);
    char host[48];
    rd_lmdbx_host_tag(host, sizeof host);
    remove_stale_partials(out, n, host);
    for (int attempt = 0; attempt < 100; attempt++) {
        char sfx[40];
        unique_suffix(sfx, sizeof sfx, part, attempt);
        snprintf(part, cap, "%.*s.partial.%s%s", (int)n, out, host, sfx);
        // Registered before the mkdir: a signal between the two left the folder behind (the
        // handler removes what exists; the name is this process's own).
        (void)rd_lmdbx_pending_add(part);
        // mkdir is exclusive: it fails on any existing entry, a planted symlink included.
        if (mkdir(part, 0777) == 0)
            return RD_OK;
        int e = errno;
        rd_lmdbx_pending_forget(part);
        errno = e;
        if (errno != EEXIST)
            break;
    }
    int rc = io_error(eb, "mkdir", part);
    part[0] = '\0';
    return rc;
}

int rd_lmdbx_outfile_tmp_name(const char *name, size_t *target_len, long *pid) {
    // "<target>.tmp.<pid>.<8 hex>" as unique_suffix makes it: a pid of 1..10 digits with no
    // leading zero, 8 lowercase hex digits, a target of at least one byte.
    size_t n = strlen(name);
    if (n < sizeof "x.tmp.1.01234567" - 1)
        return 0;
    const char *hex = name + n - 8;
    if (hex[-1] != '.' || strspn(hex, "0123456789abcdef") != 8)
        return 0;
    const char *end = hex - 1, *d = end;
    while (d > name && d[-1] >= '0' && d[-1] <= '9')
        d--;
    if (d == end || end - d > 10 || *d == '0' || d - name < 6 || memcmp(d - 5, ".tmp.", 5) != 0)
        return 0;
    long p = strtol(d, NULL, 10);
    if (p <= 0)
        return 0;
    if (target_len)
        *target_len = (size_t)(d - 5 - name);
    if (pid)
        *pid = p;
    return 1;
}

int rd_lmdbx_remove_stale_outfiles(const char *dir, int (*ours)(const char *target, size_t len)) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t tl;
        long pid;
        if (!rd_lmdbx_outfile_tmp_name(e->d_name, &tl, &pid) || (ours && !ours(e->d_name, tl)) ||
            !rd_lmdbx_pid_gone(pid))
            continue;
        // A regular file only: a folder or a symlink under such a name is nobody's temporary.
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            unlinkat(dirfd(d), e->d_name, 0) != 0)
            continue;
        removed++;
        RD_LOG_WARN("removed %s/%s: temporary file of process %ld of this host, which no longer "
                    "runs (killed before its rename)",
                    dir, e->d_name, pid);
    }
    closedir(d);
    return removed;
}

static int write_file(const char *path, const void *data, size_t len, int flags, rd_errbuf *eb) {
    rd_lmdbx_outfile of;
    int rc = rd_lmdbx_outfile_open(path, &of, eb);
    if (rc != RD_OK)
        return rc;
    if (len && fwrite(data, 1, len, of.f) != len) {
        rc = io_error(eb, "write", of.tmp);
        rd_lmdbx_outfile_abort(&of);
        return rc;
    }
    return outfile_commit(&of, flags, eb);
}

int rd_lmdbx_write_file_atomic(const char *path, const void *data, size_t len, rd_errbuf *eb) {
    return write_file(path, data, len, 0, eb);
}

int rd_lmdbx_write_file_out(const char *path, const void *data, size_t len, rd_errbuf *eb) {
    return write_file(path, data, len, COMMIT_REMOVE, eb);
}

int rd_lmdbx_write_file_new(const char *path, const void *data, size_t len, rd_errbuf *eb) {
    return write_file(path, data, len, COMMIT_NEW | COMMIT_REMOVE, eb);
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

// A data.mdb of 0 bytes (a copy that never started, a truncate, a full disk at creation) makes
// mdb_env_open fail with EBADF ("Bad file descriptor") when read-only, and a writable open
// would quietly make a new, empty env of it: say what it is before LMDB sees it. A data.mdb that
// is not a regular file is refused too: a read-only mdb_env_open of a FIFO blocks in open() for
// ever (`tokens stats`, `table stats` hung), and of a folder or device it fails with a bare errno.
int rd_lmdbx_check_nonempty(const char *path, rd_errbuf *eb) {
    char data[4096 + 16];
    struct stat st;
    snprintf(data, sizeof data, "%s/data.mdb", path);
    if (stat(data, &st) != 0)
        return RD_OK; // missing: not this function's concern
    if (!S_ISREG(st.st_mode)) {
        const char *what = S_ISFIFO(st.st_mode)                         ? "a FIFO"
                           : S_ISDIR(st.st_mode)                        ? "a folder"
                           : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                        : "a special file";
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: not a regular file (%s): not an LMDB env", data,
                          what);
    }
    if (st.st_size == 0)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s: empty file (0 bytes): not an LMDB env (truncated or never written)",
                          data);
    return RD_OK;
}

// The envs this process has open (rd/lmdbx.h: one env per file and process), by the device and
// inode of their data.mdb, with the number of handles sharing each. An entry made by another
// pid was inherited through fork(): the child holds none of its parent's record locks and must
// not use its parent's env, so it opens its own. Single-threaded, as every store handle is.
typedef struct open_env {
    MDB_env *env;
    dev_t dev;
    ino_t ino;
    pid_t pid;
    int read_only;
    unsigned refs;
} open_env;

static open_env *g_open;
static size_t g_open_n, g_open_cap;
// Threads of one process open and close handles of one env at once (a server's threads each
// with their own token-store handle): the table is changed under this mutex only.
static pthread_mutex_t g_open_mu = PTHREAD_MUTEX_INITIALIZER;

// The remap lock of an env (its LMDB userctx, made by rd_lmdbx_env_open): read transactions of
// rd_lmdbx_read_begin_shared hold it shared from begin to end; adopting a map that another
// process grew (mdb_env_set_mapsize, which unmaps and maps the file again) holds it exclusive,
// so no thread of this process reads the old mapping while it goes. Reader-preferring (glibc's
// default), and a thread waits for it exclusive only while it holds no other read: a batched
// fetch holds reads of several shards, and two threads each waiting to remap a shard the other
// reads (or, with writer preference, readers queued behind those waits) would deadlock. Nobody
// starves a remap: every new read of the env fails with MDB_MAP_RESIZED until it is done, so
// its readers only drain.
typedef struct remap_lock {
    pthread_rwlock_t lk;
} remap_lock;

static remap_lock *remap_lock_new(void) {
    remap_lock *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    if (pthread_rwlock_init(&r->lk, NULL) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

// Close an env of rd_lmdbx_env_open (or one it failed to finish) and free its remap lock.
static void env_close_free(MDB_env *env) {
    remap_lock *r = mdb_env_get_userctx(env);
    mdb_env_close(env);
    if (r) {
        pthread_rwlock_destroy(&r->lk);
        free(r);
    }
}

static open_env *open_env_find(const char *path) {
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data.mdb", path);
    struct stat st;
    if (stat(data, &st) != 0)
        return NULL;
    pid_t me = getpid();
    for (size_t i = 0; i < g_open_n; i++)
        if (g_open[i].dev == st.st_dev && g_open[i].ino == st.st_ino && g_open[i].pid == me)
            return &g_open[i];
    return NULL;
}

static int open_env_add(MDB_env *env, int read_only, const char *path, rd_errbuf *eb) {
    int fd = -1;
    struct stat st;
    if (mdb_env_get_fd(env, &fd) != 0 || fstat(fd, &st) != 0)
        return io_error(eb, "stat the data file of", path);
    if (g_open_n == g_open_cap) {
        size_t cap = g_open_cap ? 2 * g_open_cap : 8;
        open_env *n = realloc(g_open, cap * sizeof *n);
        if (!n)
            return rd_err_set(eb, RD_ERR_NOMEM, "LMDB env %s: out of memory", path);
        g_open = n;
        g_open_cap = cap;
    }
    g_open[g_open_n++] = (open_env){env, st.st_dev, st.st_ino, getpid(), read_only, 1};
    return RD_OK;
}

void rd_lmdbx_env_close(MDB_env *env) {
    if (!env)
        return;
    pthread_mutex_lock(&g_open_mu);
    for (size_t i = 0; i < g_open_n; i++)
        if (g_open[i].env == env) {
            if (--g_open[i].refs > 0) {
                pthread_mutex_unlock(&g_open_mu);
                return; // another handle of this process still uses it
            }
            g_open[i] = g_open[--g_open_n];
            break;
        }
    if (g_open_n == 0) {
        free(g_open);
        g_open = NULL;
        g_open_cap = 0;
    }
    env_close_free(env);
    pthread_mutex_unlock(&g_open_mu);
}

// Free the reader-table slots of processes that no longer run (LMDB's mdb_reader_check: a
// process's liveness is its lock on lock.mdb, dropped by the kernel however it ended). Best
// effort: an env without a lock table (a read-only file system) has none. @return slots freed.
static int clear_stale_readers(MDB_env *env) {
    int dead = 0;
    if (mdb_reader_check(env, &dead) != 0)
        return 0;
    return dead;
}

static int env_open_locked(const char *path, const rd_lmdbx_opts *o, MDB_env **out, rd_errbuf *eb);

int rd_lmdbx_env_open(const char *path, const rd_lmdbx_opts *o, MDB_env **out, rd_errbuf *eb) {
    RD_ASSERT(path && o && out);
    pthread_mutex_lock(&g_open_mu); // find-or-open and the table change are one step
    int rc = env_open_locked(path, o, out, eb);
    pthread_mutex_unlock(&g_open_mu);
    return rc;
}

static int env_open_locked(const char *path, const rd_lmdbx_opts *o, MDB_env **out, rd_errbuf *eb) {
    *out = NULL;
    struct stat st;
    char data_path[4096 + 16];
    int fresh = 0; // LMDB makes data.mdb in the folder: synced there once it exists
    if (o->read_only || !o->create) {
        if (stat(path, &st) != 0)
            return rd_err_set(eb, RD_ERR_NOTFOUND, "LMDB env %s: no such folder", path);
        if (!S_ISDIR(st.st_mode))
            return rd_err_set(eb, RD_ERR_NOTFOUND, "LMDB env %s is not a folder", path);
        if (o->read_only) {
            char data[4096 + 16];
            snprintf(data, sizeof data, "%s/data.mdb", path);
            if (stat(data, &st) != 0)
                return rd_err_set(eb, RD_ERR_NOTFOUND, "LMDB env %s: no data.mdb in the folder",
                                  path);
        }
        int rc = rd_lmdbx_check_nonempty(path, eb);
        if (rc != RD_OK)
            return rc;
    } else {
        int rc = rd_lmdbx_mkdir_p(path, eb);
        if (rc != RD_OK)
            return rc;
        snprintf(data_path, sizeof data_path, "%s/data.mdb", path);
        fresh = stat(data_path, &st) != 0 && errno == ENOENT;
    }
    open_env *held = open_env_find(path);
    if (held && held->read_only && !o->read_only)
        return rd_err_set(eb, RD_ERR_EXISTS,
                          "LMDB env %s is open read-only in this process: close that handle "
                          "before opening it for writing",
                          path);
    if (held) { // share it (its map size applies; writers grow it as they need)
        held->refs++;
        *out = held->env;
        return RD_OK;
    }
    MDB_env *env = NULL;
    int rc = mdb_env_create(&env);
    if (rc)
        return rd_lmdbx_error(eb, rc, "mdb_env_create", path);
    remap_lock *rl = remap_lock_new();
    if (!rl) {
        env_close_free(env);
        return rd_err_set(eb, RD_ERR_NOMEM, "LMDB env %s: out of memory", path);
    }
    mdb_env_set_userctx(env, rl);
    rd_lmdbx_guard_env(env);
    if (o->max_dbs)
        rc = mdb_env_set_maxdbs(env, o->max_dbs);
    if (!rc && o->max_readers)
        rc = mdb_env_set_maxreaders(env, o->max_readers);
    unsigned flags = MDB_NOTLS;
    if (o->read_only)
        flags |= MDB_RDONLY;
    else if (o->no_sync)
        flags |= MDB_NOSYNC;
    if (!rc && !o->read_only && o->max_map_size && o->max_map_size < LMDB_DEFAULT_MAP) {
        // A new env starts at LMDB's default map (1 MiB), which the code below never lowers: a
        // cap under it would not hold. Start such an env at the cap instead.
        char data[4096 + 16];
        snprintf(data, sizeof data, "%s/data.mdb", path);
        if (stat(data, &st) != 0 && errno == ENOENT)
            rc = mdb_env_set_mapsize(env, (size_t)o->max_map_size);
    }
    // 0666 less the umask, as the folders are made: with a team's umask 002 in a setgid folder
    // the group's readers can register in lock.mdb (a reader writes there) and its writers
    // write. A fixed 0644 made them the owner's alone, and nobody else could even read the env.
    if (!rc)
        rc = mdb_env_open(env, path, flags, 0666);
    if (rc == EACCES && o->read_only) {
        env_close_free(env);
        return rd_err_set(eb, RD_ERR_IO,
                          "mdb_env_open: %s: %s: a reader registers its snapshot in the env's "
                          "lock.mdb, so it needs write access to that file (an env built with "
                          "umask 002 in a group's folder gives it to the group; or chmod g+w "
                          "lock.mdb) (LMDB rc %d)",
                          path, strerror(EACCES), EACCES);
    }
    if (rc) {
        env_close_free(env);
        // LMDB says EINVAL for a file that is not an LMDB env on some paths; MDB_INVALID on most.
        return rd_lmdbx_error(eb, rc, "mdb_env_open", path);
    }
    rc = rd_lmdbx_check_size(env, path, eb);
    if (rc != RD_OK) {
        env_close_free(env);
        return rc;
    }
    // A process that died reading (SIGKILL, a crash) left its slot in lock.mdb, which LMDB
    // clears only when an opener finds nobody else holding the env: while a launch or a server
    // keeps it open, the slots add up to MDB_READERS_FULL for every new reader, and one left
    // inside a read pins its snapshot's pages. Clear those of dead processes at every open.
    clear_stale_readers(env);
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
                env_close_free(env);
                return rd_lmdbx_error(eb, rc, "mdb_env_set_mapsize", path);
            }
        }
    }
    // A new env's files are entries of its folder, which LMDB never syncs: a crash could lose
    // the env although its commits were durable (not for no_sync envs: scratch data).
    if (fresh && !o->no_sync && (rc = rd_lmdbx_fsync_path(path, eb)) != RD_OK) {
        env_close_free(env);
        return rc;
    }
    rc = open_env_add(env, o->read_only, path, eb);
    if (rc != RD_OK) {
        env_close_free(env);
        return rc;
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
        // A reader that died inside a read pins its snapshot: no page freed since is reused, and
        // a writer that keeps the env open (a PS rank's token shards, a teacher's target log)
        // grew the file by every commit's copied pages for as long as nobody else opened it.
        // One lock and a liveness check per reader slot, against a commit of thousands of
        // records.
        clear_stale_readers(env);
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

static int read_begin_error(MDB_env *env, int rc, const char *path, rd_errbuf *eb) {
    if (rc == MDB_READERS_FULL) {
        unsigned slots = 0;
        mdb_env_get_maxreaders(env, &slots);
        return rd_err_set(eb, RD_ERR_LMDB,
                          "begin read transaction: %s: all %u reader slots of its lock.mdb "
                          "are taken by live processes reading it at once (LMDB rc %d)",
                          path ? path : "(env)", slots, rc);
    }
    return rd_lmdbx_error(eb, rc, "begin read transaction", path);
}

// Begin a read-only transaction, or renew *txn when it is a reset one. @return 0, or the LMDB
// code with *txn aborted and NULL.
static int txn_start(MDB_env *env, MDB_txn **txn) {
    int rc;
    if (*txn) {
        rc = mdb_txn_renew(*txn);
    } else {
        MDB_txn *t = NULL;
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &t);
        if (rc == 0)
            *txn = t;
    }
    if (rc != 0 && *txn) {
        mdb_txn_abort(*txn);
        *txn = NULL;
    }
    return rc;
}

int rd_lmdbx_read_begin(MDB_env *env, MDB_txn **txn, const char *path, rd_errbuf *eb) {
    int cleared = 0;
    for (int tries = 0;; tries++) {
        int rc = txn_start(env, txn);
        if (rc == 0)
            return RD_OK;
        if (rc == MDB_MAP_RESIZED && tries < MAX_RESIZE_RETRIES) {
            // The writer grew the map beyond ours: adopt the size recorded in the file.
            rc = mdb_env_set_mapsize(env, 0);
            if (rc == 0)
                continue;
        }
        // Full of slots since this env was opened: those of processes that died reading are
        // freed and the read tried again; live readers only is a real limit, said as such.
        if (rc == MDB_READERS_FULL && !cleared++ && clear_stale_readers(env) > 0)
            continue;
        return read_begin_error(env, rc, path, eb);
    }
}

int rd_lmdbx_read_begin_shared(
    MDB_env *env, MDB_txn **txn, const char *path, int holding, int *busy, rd_errbuf *eb) {
    if (busy)
        *busy = 0;
    remap_lock *rl = mdb_env_get_userctx(env);
    if (!rl)
        return rd_lmdbx_read_begin(env, txn, path, eb);
    int cleared = 0;
    for (int tries = 0;; tries++) {
        pthread_rwlock_rdlock(&rl->lk);
        int rc = txn_start(env, txn);
        if (rc == 0)
            return RD_OK; // held shared until rd_lmdbx_read_end_shared
        pthread_rwlock_unlock(&rl->lk);
        if (rc == MDB_READERS_FULL && !cleared++ && clear_stale_readers(env) > 0)
            continue; // as rd_lmdbx_read_begin
        if (rc != MDB_MAP_RESIZED || tries >= MAX_RESIZE_RETRIES)
            return read_begin_error(env, rc, path, eb);
        // The writer grew the map: adopt its size while no thread of this process reads the
        // old mapping (another thread may have adopted it meanwhile: then this remaps again,
        // harmlessly). A thread that holds other reads may only try: it must not wait here
        // (see remap_lock), so it tells its caller to end those reads and call again.
        if (holding) {
            if (pthread_rwlock_trywrlock(&rl->lk) != 0) {
                if (busy)
                    *busy = 1;
                return RD_ERR_STATE; // no message: the caller retries, holding nothing
            }
        } else {
            pthread_rwlock_wrlock(&rl->lk);
        }
        rc = mdb_env_set_mapsize(env, 0);
        pthread_rwlock_unlock(&rl->lk);
        if (rc)
            return rd_lmdbx_error(eb, rc, "mdb_env_set_mapsize (adopt the grown map)", path);
    }
}

int rd_lmdbx_read_end_shared(MDB_env *env, MDB_txn **txn, int how) {
    if (!*txn)
        return 0;
    int rc = 0;
    if (how == RD_LMDBX_READ_RESET) {
        mdb_txn_reset(*txn);
    } else {
        if (how == RD_LMDBX_READ_COMMIT)
            rc = mdb_txn_commit(*txn);
        else
            mdb_txn_abort(*txn);
        *txn = NULL;
    }
    remap_lock *rl = mdb_env_get_userctx(env);
    if (rl)
        pthread_rwlock_unlock(&rl->lk);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Damaged pages: the guard (see rd/lmdbx.h)
//
// One process-wide SIGSEGV/SIGBUS handler (SA_SIGINFO | SA_NODEFER: the signal is not blocked
// while it runs, so the siglongjmp out of it needs no mask restore) and a per-thread stack of
// guards. The handler only reads the thread's innermost guard and jumps; without one it hands
// the signal to the previous disposition.

static _Thread_local rd_lmdbx_guard *g_guard_top;
static struct sigaction g_prev_segv, g_prev_bus;
static int g_guard_installing; // 1 while a thread (re)installs the handler

static void guard_chain(int sig, siginfo_t *si, void *uc) {
    struct sigaction *prev = sig == SIGSEGV ? &g_prev_segv : &g_prev_bus;
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction) {
            prev->sa_sigaction(sig, si, uc);
            return;
        }
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    // The default action: restore it. A hardware fault repeats when the handler returns and
    // then terminates the process with the signal (and a core) as if no handler had run; a
    // signal sent by kill() is raised again.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (!si || si->si_code <= 0)
        raise(sig);
}

static void guard_on_signal(int sig, siginfo_t *si, void *uc) {
    static _Thread_local int chaining;
    rd_lmdbx_guard *g = g_guard_top;
    if (!g) {
        // A handler that was installed after this one and chains back here would loop: the
        // second visit takes the default action instead.
        if (chaining) {
            signal(sig, SIG_DFL);
            return;
        }
        chaining = 1;
        guard_chain(sig, si, uc);
        chaining = 0;
        return;
    }
    g->sig = sig;
    g->addr = si ? si->si_addr : NULL;
    g_guard_top = g->prev;
    siglongjmp(g->jb, 1);
}

static void guard_on_assert(MDB_env *env, const char *msg) {
    (void)env;
    rd_lmdbx_guard *g = g_guard_top;
    if (!g)
        return; // LMDB aborts, as without the guard
    g->sig = 0;
    g->addr = NULL;
    snprintf(g->assert_msg, sizeof g->assert_msg, "%s", msg ? msg : "?");
    g_guard_top = g->prev;
    siglongjmp(g->jb, 1);
}

// Install the handler unless it is in place (two sigaction queries: about 1 µs each on this
// 2-core VM, too much for every guarded call, so env opens and callers do it, not the guards).
// The disposition found is the one a fault outside a guard goes to.
void rd_lmdbx_guard_install(void) {
    struct sigaction cur;
    if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
        cur.sa_sigaction == guard_on_signal && sigaction(SIGBUS, NULL, &cur) == 0 &&
        (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == guard_on_signal)
        return;
    int expect = 0;
    while (!__atomic_compare_exchange_n(&g_guard_installing, &expect, 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
        expect = 0;
        sched_yield();
    }
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = guard_on_signal;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    // On failure (never seen) the guards are inert: faults keep their old disposition.
    if (sigaction(SIGSEGV, &sa, &old) == 0 &&
        !((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == guard_on_signal))
        g_prev_segv = old;
    if (sigaction(SIGBUS, &sa, &old) == 0 &&
        !((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == guard_on_signal))
        g_prev_bus = old;
    __atomic_store_n(&g_guard_installing, 0, __ATOMIC_RELEASE);
}

void rd_lmdbx_guard_push(rd_lmdbx_guard *g, const char *what) {
    g->what = what;
    g->sig = 0;
    g->addr = NULL;
    g->assert_msg[0] = '\0';
    g->prev = g_guard_top;
    g_guard_top = g;
}

void rd_lmdbx_guard_pop(rd_lmdbx_guard *g) {
    RD_ASSERT(g_guard_top == g);
    g_guard_top = g->prev;
}

int rd_lmdbx_guard_fault(rd_lmdbx_guard *g, rd_errbuf *eb) {
    const char *what = g->what ? g->what : "LMDB env";
    if (g->sig)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s: damaged LMDB file (%s at %p while reading its page structure): "
                          "the file was changed or cut outside LMDB; restore it from a copy or "
                          "rebuild it",
                          what, g->sig == SIGBUS ? "SIGBUS" : "SIGSEGV", g->addr);
    return rd_err_set(eb, RD_ERR_CORRUPT,
                      "%s: damaged LMDB file (LMDB assertion: %s): the file was changed or cut "
                      "outside LMDB; restore it from a copy or rebuild it",
                      what, g->assert_msg);
}

void rd_lmdbx_guard_env(MDB_env *env) {
    rd_lmdbx_guard_install();
    // EINVAL when liblmdb was built with NDEBUG (no assertions): nothing to route then.
    (void)mdb_env_set_assert(env, guard_on_assert);
}

int rd_lmdbx_damage_refuse(const rd_lmdbx_damage *d, rd_errbuf *eb) {
    return rd_err_set(eb, RD_ERR_CORRUPT, "%s", d->msg);
}

int rd_lmdbx_damage_record(rd_lmdbx_damage *d, const char *prefix, rd_errbuf *geb, rd_errbuf *eb) {
    if (prefix && *prefix)
        rd_err_prefix(geb, "%s", prefix);
    memcpy(d->msg, geb->msg, sizeof d->msg);
    d->msg[sizeof d->msg - 1] = '\0';
    d->damaged = 1;
    return rd_err_set(eb, RD_ERR_CORRUPT, "%s", d->msg);
}
