// writer_lock.c — the one-writer lock of a folder that holds shared or run state (a token store,
// a target log, a run folder; rd/writer_lock.h): <folder>/writer.lock (or another name), locked
// with flock(LOCK_EX | LOCK_NB) and holding a line that names its holder ("host H pid P since T:
// WHAT").
//
// Invariants: the lock lives exactly as long as its file descriptor, so a launch that ends, is
// killed or crashes releases it with its process (the kernel drops the lock): a lock is never
// stale on the host that took it, and there is nothing to clean up by hand. A second attempt
// fails at once (no waiting: a refused launch says who holds the folder). The file itself stays
// (removing it would let two processes lock two different inodes of one name); a process that
// wins the lock on a file that was meanwhile unlinked or replaced notices it (fstat vs stat) and
// tries again on the new file.
//
// NFS: Linux NFS clients implement flock() as a whole-file byte-range lock that the server
// arbitrates (NFSv4, or NFSv3 with lockd), so launches on different hosts exclude each other too,
// and a crashed client's lock is freed by the server when its lease expires (NFSv4: about 90 s).
// A mount with `nolock` or `local_lock=flock|all` keeps locks on one host: there, launches on
// different hosts are not excluded (docs/reliability.md).
//
// Workload: one acquire per launch or tool run.
#include "rd/writer_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// <dir>/<file> (file NULL: the default name) into path; -1 when it does not fit.
static int lock_path(const char *dir, const char *file, char *path, size_t cap) {
    int n = snprintf(path, cap, "%s/%s", dir, file ? file : RD_WRITER_LOCK_FILE);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

// The holder line of a lock file, without its newline ("" when it cannot be read).
static void read_holder(int fd, char *buf, size_t cap) {
    buf[0] = 0;
    // The holder writes its line right after it takes the lock: a reader that comes in between
    // sees an empty file, so look again briefly.
    for (int attempt = 0; attempt < 20; attempt++) {
        ssize_t n = pread(fd, buf, cap - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            buf[strcspn(buf, "\n")] = 0;
            return;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int rd_writer_lock(const char *dir,
                   const char *file,
                   const char *kind,
                   const char *what,
                   int *fd_out,
                   rd_errbuf *eb) {
    *fd_out = -1;
    char path[4200];
    if (lock_path(dir, file, path, sizeof path) != 0)
        return rd_err_set(eb, RD_ERR_ARG, "%s %s: path too long for its lock file", kind, dir);
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0)
            return rd_err_set(eb, RD_ERR_IO, "%s %s: cannot open its lock file %s: %s", kind, dir,
                              path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            if (err != EWOULDBLOCK && err != EAGAIN) {
                close(fd);
                return rd_err_set(eb, RD_ERR_IO, "%s %s: cannot lock %s: %s", kind, dir, path,
                                  strerror(err));
            }
            // Held shared only (rd_writer_lock_shared: a launch reading the folder, which must
            // not be rewritten under it) when a shared lock can be taken now: the file's line is
            // then the last writer's, not the holder's.
            if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
                close(fd);
                return rd_err_set(eb, RD_ERR_STATE,
                                  "%s %s is being read by another launch (a replay of it; lock "
                                  "file %s): it is not written while it is read; wait for that "
                                  "launch to end, or use another folder",
                                  kind, dir, path);
            }
            char holder[256];
            read_holder(fd, holder, sizeof holder);
            close(fd);
            return rd_err_set(eb, RD_ERR_STATE,
                              "%s %s is in use by another writer (%s; lock file %s): one launch "
                              "or tool writes it at a time; wait for it to end, or use another "
                              "folder",
                              kind, dir, holder[0] ? holder : "holder unknown", path);
        }
        // Locked: make sure it is the file that now bears the name (a remover may have unlinked
        // it between our open and flock, and someone else may lock its successor).
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_dev != b.st_dev ||
            a.st_ino != b.st_ino) {
            close(fd);
            continue;
        }
        char host[128] = "";
        gethostname(host, sizeof host - 1);
        char since[32] = "";
        time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm))
            strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
        char line[512];
        int n = snprintf(line, sizeof line, "host %s pid %ld since %s: %s\n", host, (long)getpid(),
                         since, what ? what : "writer");
        if (n < 0 || n >= (int)sizeof line)
            n = (int)strlen(line);
        // Informative only (the lock is the flock): a failed write leaves "holder unknown".
        if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != (ssize_t)n) {
        }
        *fd_out = fd;
        return RD_OK;
    }
    return rd_err_set(eb, RD_ERR_STATE, "%s %s: its lock file %s keeps being replaced", kind, dir,
                      path);
}

void rd_writer_unlock(int fd) {
    if (fd >= 0)
        close(fd); // drops the flock
}

int rd_writer_lock_shared(
    const char *dir, const char *file, int *fd_out, char *holder, size_t cap) {
    *fd_out = -1;
    if (holder && cap)
        holder[0] = 0;
    char path[4200];
    if (lock_path(dir, file, path, sizeof path) != 0)
        return -1;
    for (int attempt = 0; attempt < 8; attempt++) {
        // O_NONBLOCK: a FIFO planted as the lock file must not block in open().
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0666);
        if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
            fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
            return -1;
        if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
            int held = errno == EWOULDBLOCK || errno == EAGAIN ? 1 : -1;
            if (held == 1 && holder && cap)
                read_holder(fd, holder, cap);
            close(fd);
            return held;
        }
        // The file that bears the name now (as rd_writer_lock: a remover may have replaced it).
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_dev != b.st_dev ||
            a.st_ino != b.st_ino) {
            close(fd);
            continue;
        }
        *fd_out = fd;
        return 0;
    }
    return -1;
}

int rd_writer_lock_name(const char *name) {
    return strcmp(name, RD_WRITER_LOCK_FILE) == 0;
}
