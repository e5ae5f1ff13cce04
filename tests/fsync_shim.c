// fsync_shim.c — an LD_PRELOAD library for the script tests that check what a command makes
// durable (tests/scripts/out_durable.sh): while RD_FSYNC_LOG names a file, each fsync() or
// fdatasync() of the process appends the path of the file or folder synced to it, one per line,
// then goes on to the system call. The unit tests do the same in-process with tests/fsync_log.h.
// RD_FSYNC_RAISE="SIG:TEXT" (SIG a signal number) raises SIG at each fsync of a file
// whose path holds TEXT, before the system call: a signal arriving at that exact point of a
// command (tests/scripts/out_signal.sh). RD_FSYNC_FAIL=PATH makes the fsync of exactly PATH
// fail with EIO, without syncing (a failing disk; tests/scripts/out_durable.sh).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

// The path of descriptor fd (NUL-terminated, at most cap - 2 bytes), or -1.
static ssize_t fd_path(int fd, char *path, size_t cap) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, cap - 2);
    if (n > 0)
        path[n] = '\0';
    return n;
}

// fsync() and fdatasync() alike (LMDB flushes its data file with fdatasync): sysno is the call.
static int sync_fd(int fd, long sysno) {
    const char *sig = getenv("RD_FSYNC_RAISE");
    const char *colon = sig ? strchr(sig, ':') : NULL;
    if (colon && colon[1]) {
        char path[4097];
        if (fd_path(fd, path, sizeof path) > 0 && strstr(path, colon + 1))
            raise(atoi(sig));
    }
    const char *bad = getenv("RD_FSYNC_FAIL");
    if (bad && bad[0]) {
        char path[4097];
        if (fd_path(fd, path, sizeof path) > 0 && strcmp(path, bad) == 0) {
            errno = EIO;
            return -1;
        }
    }
    const char *log = getenv("RD_FSYNC_LOG");
    if (log && log[0]) {
        char link[64], path[4097];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        if (n > 0) {
            path[n++] = '\n';
            // O_APPEND: one write per line, whole, whatever the ranks or threads.
            int lf = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (lf >= 0) {
                if (write(lf, path, (size_t)n) != n)
                    (void)0; // the test then misses a line and says so
                close(lf);
            }
        }
    }
    return (int)syscall(sysno, fd);
}

int fsync(int fd) {
    return sync_fd(fd, SYS_fsync);
}

int fdatasync(int fd) {
    return sync_fd(fd, SYS_fdatasync);
}
