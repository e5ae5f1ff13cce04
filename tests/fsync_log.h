// fsync_log.h — for the unit tests that check what a call makes durable, and in which order.
// Defines this test binary's fsync(), which records the path of each file or folder synced
// while g_fsync_log is on (in order, up to RD_FSYNC_LOG_MAX) and forwards to the system call,
// so the library's fsyncs and LMDB's go through it. Include it in one file of a test binary.
#ifndef RD_TESTS_FSYNC_LOG_H
#define RD_TESTS_FSYNC_LOG_H

#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RD_FSYNC_LOG_MAX 256

static int g_fsync_log;
static char g_fsynced[RD_FSYNC_LOG_MAX][512];
static int g_n_fsynced;

int fsync(int fd) {
    if (g_fsync_log && g_n_fsynced < RD_FSYNC_LOG_MAX) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, g_fsynced[g_n_fsynced], sizeof g_fsynced[0] - 1);
        g_fsynced[g_n_fsynced][n > 0 ? n : 0] = '\0';
        g_n_fsynced++;
    }
    return (int)syscall(SYS_fsync, fd);
}

#endif // RD_TESTS_FSYNC_LOG_H
