// fsync_log.h — for the unit tests that check what a call makes durable, and in which order.
// Defines this test binary's fsync(), which records the path of each file or folder synced
// while g_fsync_log is on (in order, up to RD_FSYNC_LOG_MAX) and forwards to the system call,
// so the library's fsyncs and LMDB's go through it. Include it in one file of a test binary.
// While g_fsync_fail holds a path, the fsync of exactly that path fails with EIO instead.
#ifndef RD_TESTS_FSYNC_LOG_H
#define RD_TESTS_FSYNC_LOG_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RD_FSYNC_LOG_MAX 256

static int g_fsync_log;
static char g_fsynced[RD_FSYNC_LOG_MAX][512];
static int g_n_fsynced;
static char g_fsync_fail[512];

int fsync(int fd) {
    if (g_fsync_fail[0]) {
        char link[64], path[512];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        path[n > 0 ? n : 0] = '\0';
        if (strcmp(path, g_fsync_fail) == 0) {
            errno = EIO;
            return -1;
        }
    }
    if (g_fsync_log && g_n_fsynced < RD_FSYNC_LOG_MAX) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, g_fsynced[g_n_fsynced], sizeof g_fsynced[0] - 1);
        g_fsynced[g_n_fsynced][n > 0 ? n : 0] = '\0';
        g_n_fsynced++;
    }
    return (int)syscall(SYS_fsync, fd);
}

// Whether the last three fsyncs are those of an output written into two folders made for it,
// root/a/b: root/a/b, root/a, root (each new folder synced in its parent, innermost first).
// @return NULL when they are, else what differs (a static buffer).
static const char *fsync_log_made_parents(const char *root, const char *a, const char *b) {
    static char msg[9000];
    char want[3][8192];
    snprintf(want[0], sizeof want[0], "%s/%s/%s", root, a, b);
    snprintf(want[1], sizeof want[1], "%s/%s", root, a);
    snprintf(want[2], sizeof want[2], "%s", root);
    if (g_n_fsynced < 3) {
        snprintf(msg, sizeof msg, "%d fsyncs, expected at least 3", g_n_fsynced);
        return msg;
    }
    for (int k = 0; k < 3; k++)
        if (strcmp(g_fsynced[g_n_fsynced - 3 + k], want[k]) != 0) {
            snprintf(msg, sizeof msg, "fsync %d of the last 3 is %.511s, expected %.8191s", k,
                     g_fsynced[g_n_fsynced - 3 + k], want[k]);
            return msg;
        }
    return NULL;
}

// The index of the first fsync of `path` at or after `from`, or -1.
static int fsync_log_find(const char *path, int from) {
    for (int i = from < 0 ? 0 : from; i < g_n_fsynced; i++)
        if (strcmp(g_fsynced[i], path) == 0)
            return i;
    return -1;
}

#endif // RD_TESTS_FSYNC_LOG_H
