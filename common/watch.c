// watch.c — the per-rank sentinel of rd/watch.h.
//
// The rank writes short lines into a pipe: "I<identity>\n", "T<token>\n", "F\n" (failing: it will
// call MPI_Abort after printing its own error), "X\n" (orderly exit). The sentinel, a forked child
// that keeps only the pipe's read end and stderr, reads until end of file. The kernel closes the
// write end when the rank ends in any way, so an end of file without "X" is an abrupt end.
//
// The write end is also kept in a process-wide variable (for rd__watch_failing) so that rd__fatal
// and RD_MPI_CHECK, which end the launch from anywhere, can say "F" first. It is the only mutable
// global besides the logger state, set once per process.
#include "rd/watch.h"

#include "rd/clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct rd_watch {
    int fd;    // write end of the pipe
    pid_t pid; // the sentinel
};

static int watch_fd = -1;

static void write_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

// ---------------------------------------------------------------------------------------------
// The sentinel (child side). Only async-signal-safe-ish plain syscalls and snprintf: it was forked
// from a single-threaded process before MPI_Init, so the C library is in a consistent state.

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

// Arbitration between the sentinels of one host. Each sentinel whose rank ended abruptly leaves
// "<dir>/recdistill-<token>.<pid>" holding the CLOCK_MONOTONIC time at which it saw the end (0 for
// a rank that announced its own failure), waits WATCH_SETTLE_MS for the others, and only the
// earliest one prints. Measured on a loaded 2-core host: the launcher's SIGKILLs reach the other
// ranks within a millisecond, before any sentinel runs, so "is a peer gone already?" tells
// nothing; the order in which the sentinels wake does follow the order of the deaths.
enum { WATCH_SETTLE_MS = 200, WATCH_LINGER_MS = 3000, WATCH_STALE_S = 60 };
#define WATCH_DIR "/dev/shm"

// Remove the stamps that sentinels killed within their WATCH_LINGER_MS left behind: kill -9 of
// every process of a launch (`pkill -9 -f "recdistill train"`), or a Slurm step whose processes
// are ended together, reaches a sentinel after it stamped and before it removed the stamp (1 in
// 3 such kills here). No later launch reads one (its token differs), but nothing removed them:
// one more file in /dev/shm per such kill, for as long as the host runs. A stamp lives
// WATCH_SETTLE_MS + WATCH_LINGER_MS, so one of this user's last written WATCH_STALE_S ago is
// garbage; younger ones (sentinels arbitrating now) and other names are left alone.
static void stamps_sweep(void) {
    DIR *d = opendir(WATCH_DIR);
    if (!d)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uid_t me = geteuid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        // "recdistill-<token>.<pid>": the token of letters, digits, '-' and '_'
        if (strncmp(e->d_name, "recdistill-", 11) != 0)
            continue;
        const char *dot = strrchr(e->d_name, '.');
        if (!dot || !dot[1] || strspn(dot + 1, "0123456789") != strlen(dot + 1))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != me || st.st_size > 64 || now.tv_sec - st.st_mtime <= WATCH_STALE_S)
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

// Write my stamp; return 1 if it was written.
static int stamp_write(const char *prefix, long pid, int64_t t, char *path, size_t cap) {
    snprintf(path, cap, "%s.%ld", prefix, pid);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0)
        return 0;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%lld\n", (long long)t);
    write_all(fd, buf, (size_t)n);
    close(fd);
    return 1;
}

// 1 if no stamp of this launch is earlier than (t, pid).
static int stamp_first(const char *name_prefix, long pid, int64_t t) {
    DIR *d = opendir(WATCH_DIR);
    if (!d)
        return 1;
    size_t plen = strlen(name_prefix);
    int first = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, name_prefix, plen) != 0 || e->d_name[plen] != '.')
            continue;
        long other = strtol(e->d_name + plen + 1, NULL, 10);
        if (other == pid)
            continue;
        char path[512], buf[64];
        snprintf(path, sizeof path, "%s/%s", WATCH_DIR, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        long long ot = strtoll(buf, NULL, 10);
        if (ot < t || (ot == t && other < pid))
            first = 0;
    }
    closedir(d);
    return first;
}

RD_NORETURN static void sentinel(int rfd, pid_t parent) {
    // Keep only the pipe and stderr: a held stdout or PMI socket would delay the launcher.
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    for (int fd = 0; fd < (int)maxfd; fd++)
        if (fd != rfd && fd != 2)
            close(fd);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        if (devnull > 2)
            close(devnull);
    }
    signal(SIGPIPE, SIG_IGN);
    // A SIGUSR1 asks the rank for a checkpoint (`recdistill train`); Slurm's --signal sends it to
    // every process of the step, the sentinel included, which its default action would end.
    signal(SIGUSR1, SIG_IGN);
    // Out of the rank's process group: launchers end a torn-down rank's whole group, and the
    // sentinel of the rank that died first must live long enough to say so.
    setsid();
    stamps_sweep();

    char ident[512];
    char name_prefix[160] = ""; // "recdistill-<token>"
    char prefix[200] = "";      // WATCH_DIR "/recdistill-<token>"
    snprintf(ident, sizeof ident, "rank %s (during start-up)",
             getenv("PMI_RANK") ? getenv("PMI_RANK") : "?");
    int stopped = 0, failing = 0, have_stamp = 0;
    char mine[256] = "";
    char line[640];
    size_t len = 0;
    for (;;) {
        char c;
        ssize_t k = read(rfd, &c, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        if (c != '\n') {
            if (len + 1 < sizeof line)
                line[len++] = c;
            continue;
        }
        line[len] = '\0';
        len = 0;
        if (line[0] == 'I') {
            copy_str(ident, sizeof ident, line + 1);
        } else if (line[0] == 'T') {
            memcpy(name_prefix, "recdistill-", 12);
            copy_str(name_prefix + 11, sizeof name_prefix - 11, line + 1);
            memcpy(prefix, WATCH_DIR "/", sizeof WATCH_DIR);
            copy_str(prefix + sizeof WATCH_DIR, sizeof prefix - sizeof WATCH_DIR, name_prefix);
        } else if (line[0] == 'F' && !failing) {
            // Stamp at once: the victims of the coming MPI_Abort must find it.
            failing = 1;
            have_stamp = prefix[0] && stamp_write(prefix, (long)parent, 0, mine, sizeof mine);
        } else if (line[0] == 'X') {
            stopped = 1;
        }
    }
    if (stopped) {
        if (have_stamp)
            unlink(mine);
        _exit(0);
    }
    if (!failing) {
        int64_t t = rd_mono_ns();
        have_stamp = prefix[0] && stamp_write(prefix, (long)parent, t, mine, sizeof mine);
        int first = 1;
        if (have_stamp) {
            sleep_ms(WATCH_SETTLE_MS);
            first = stamp_first(name_prefix, (long)parent, t);
        }
        if (first) {
            char host[128] = "?";
            gethostname(host, sizeof host - 1);
            host[sizeof host - 1] = '\0';
            char msg[RD_ERR_MSG_MAX];
            int n = snprintf(msg, sizeof msg,
                             "recdistill: %s, pid %ld on host %s, died without an orderly exit "
                             "(killed by a signal or crashed); the job cannot go on without it\n",
                             ident, (long)parent, host);
            if (n > 0)
                write_all(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        }
    }
    // Let the launcher finish (it waits for our stderr); remove the stamp once the other
    // sentinels of this host have certainly read it.
    close(2);
    if (have_stamp) {
        sleep_ms(WATCH_LINGER_MS);
        unlink(mine);
    }
    _exit(0);
}

// ---------------------------------------------------------------------------------------------
// The rank side.

int rd_watch_start(rd_watch **out, rd_errbuf *eb) {
    *out = NULL;
    int p[2];
    if (pipe(p) != 0)
        return rd_err_set(eb, RD_ERR_IO, "rank sentinel: pipe: %s", strerror(errno));
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return rd_err_set(eb, RD_ERR_IO, "rank sentinel: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(p[1]);
        sentinel(p[0], parent);
    }
    close(p[0]);
    // Nothing the rank starts later (MPI helpers) may hold the write end open.
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    rd_watch *w = malloc(sizeof *w);
    if (!w) {
        close(p[1]);
        waitpid(pid, NULL, 0);
        return rd_err_set(eb, RD_ERR_NOMEM, "rank sentinel: out of memory");
    }
    w->fd = p[1];
    w->pid = pid;
    watch_fd = p[1];
    *out = w;
    return RD_OK;
}

void rd_watch_identify(rd_watch *w, const char *identity, const char *token) {
    if (!w)
        return;
    char buf[768];
    size_t n = 0;
    buf[n++] = 'I';
    for (const char *s = identity; *s && n < 500; s++)
        buf[n++] = *s == '\n' ? ' ' : *s;
    buf[n++] = '\n';
    buf[n++] = 'T';
    for (const char *s = token; *s && n < 700; s++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        buf[n++] = ok ? c : '_';
    }
    buf[n++] = '\n';
    write_all(w->fd, buf, n);
}

void rd_watch_failing(rd_watch *w) {
    if (w)
        write_all(w->fd, "F\n", 2);
}

void rd__watch_failing(void) {
    if (watch_fd >= 0)
        write_all(watch_fd, "F\n", 2);
}

void rd_watch_stop(rd_watch *w) {
    if (!w)
        return;
    write_all(w->fd, "X\n", 2);
    close(w->fd);
    if (watch_fd == w->fd)
        watch_fd = -1;
    // The sentinel exits at once on an orderly end; reap it so no zombie is left.
    waitpid(w->pid, NULL, 0);
    free(w);
}
