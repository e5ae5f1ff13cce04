// watch.c — the per-rank sentinel of rd/watch.h.
//
// The rank writes short lines into a pipe: "I<identity>\n", "T<token>\n", "Z<seconds>\n" (the
// freeze timeout), "F\n" (failing: it will call MPI_Abort after printing its own error), "X\n"
// (orderly exit). The sentinel, a forked child that keeps only the pipe's read end and stderr,
// reads until end of file. The kernel closes the write end when the rank ends in any way, so an
// end of file without "X" is an abrupt end. Once a freeze timeout is set, the sentinel also
// looks at its rank in /proc once a second (freeze_check).
//
// The write end is also kept in a process-wide variable (for rd__watch_failing) so that rd__fatal
// and RD_MPI_CHECK, which end the launch from anywhere, can say "F" first. It is the only mutable
// global besides the logger state, set once per process.
#include "rd/watch.h"

#include "rd/clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

// ---------------------------------------------------------------------------------------------
// The freeze watch (rd_watch_freeze). A frozen rank is alive, so its pipe stays open, but it no
// longer runs: every rank that exchanges with it then waits (PS loops, pulls, allreduces, the
// target exchange) until the launch's time limit. The sentinel reads its rank's
// /proc/<pid>/status once per FREEZE_TICK_MS and counts the rank frozen while it is
//   - stopped (State T: SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU), or
//   - in uninterruptible sleep (State D) without a context switch since the previous look: one
//     single wait of the kernel (a dead NFS server, a hung device), the criterion of the kernel's
//     own hung-task detector. A rank busy with I/O that makes progress switches at every wait.
// A rank computing (a long step, an evaluation, a checkpoint write) is R or S and never frozen,
// however long it takes: nothing here depends on the rank's own loop. A rank held by a debugger or
// strace (TracerPid) is left alone. The time counts only while the sentinel itself ran on
// schedule: a gap of more than FREEZE_GAP_MS between two looks (the whole job suspended, its
// sentinels with it, by Slurm or a cgroup freezer; a host swapping hard) starts the count again.
enum { FREEZE_TICK_MS = 1000, FREEZE_GAP_MS = 3000 };

typedef struct freeze_state {
    int64_t last_ns;       // the previous look (0: none yet)
    int64_t since_ns;      // when the rank was first seen frozen in this spell (0: not frozen)
    char prev_state;       // its State at the previous look
    unsigned long long cs; // its context switches (voluntary + involuntary) then
} freeze_state;

typedef struct proc_status {
    char state;            // 'R', 'S', 'D', 'T', 't', ...; 0 when unreadable
    long tracer;           // TracerPid
    unsigned long long cs; // voluntary_ctxt_switches + nonvoluntary_ctxt_switches (main thread)
} proc_status;

static void proc_status_read(pid_t pid, proc_status *ps) {
    ps->state = 0;
    ps->tracer = 0;
    ps->cs = 0;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "State:", 6) == 0)
            ps->state = line[6 + strspn(line + 6, " \t")];
        else if (strncmp(line, "TracerPid:", 10) == 0)
            ps->tracer = strtol(line + 10, NULL, 10);
        else if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0)
            ps->cs += strtoull(line + 24, NULL, 10);
        else if (strncmp(line, "nonvoluntary_ctxt_switches:", 27) == 0)
            ps->cs += strtoull(line + 27, NULL, 10);
        line = next;
    }
}

// One look at the rank. Returns 1 when it has been frozen for timeout_s seconds, with the reason
// ("it is stopped (...)") in why.
static int
freeze_check(freeze_state *fz, pid_t pid, int64_t now, int timeout_s, char *why, size_t cap) {
    proc_status ps;
    proc_status_read(pid, &ps);
    if (fz->last_ns && now - fz->last_ns > (int64_t)FREEZE_GAP_MS * 1000000)
        fz->since_ns = 0; // the sentinel did not run either: count from here
    fz->last_ns = now;
    int frozen = ps.tracer == 0 &&
                 (ps.state == 'T' || (ps.state == 'D' && fz->prev_state == 'D' && ps.cs == fz->cs));
    if (ps.state == 'D' && frozen && fz->since_ns == 0)
        fz->since_ns = now - (int64_t)FREEZE_TICK_MS * 1000000; // D since the previous look
    else if (frozen && fz->since_ns == 0)
        fz->since_ns = now;
    else if (!frozen)
        fz->since_ns = 0;
    fz->prev_state = ps.state;
    fz->cs = ps.cs;
    if (!frozen || now - fz->since_ns < (int64_t)timeout_s * 1000000000)
        return 0;
    long secs = (long)((now - fz->since_ns) / 1000000000);
    if (ps.state == 'T') {
        snprintf(why, cap,
                 "has not run for %ld s: it is stopped (State T: SIGSTOP, SIGTSTP or a job-control "
                 "stop)",
                 secs);
    } else {
        char wchan[96] = "";
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/wchan", (long)pid);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, wchan, sizeof wchan - 1);
            close(fd);
            wchan[n > 0 ? n : 0] = '\0';
            wchan[strcspn(wchan, "\n")] = '\0';
        }
        if (wchan[0] && strcmp(wchan, "0") != 0)
            snprintf(why, cap,
                     "has been in one uninterruptible wait of the kernel for %ld s (State D, in "
                     "%s: a dead network file system or a hung device)",
                     secs, wchan);
        else
            snprintf(why, cap,
                     "has been in one uninterruptible wait of the kernel for %ld s (State D: a "
                     "dead network file system or a hung device)",
                     secs);
    }
    return 1;
}

// Whether Slurm holds this job suspended (`scontrol suspend`, gang scheduling, preemption with
// PreemptMode=SUSPEND). Asked only when a stopped rank (State T) has reached its timeout: where
// Slurm tracks a job by process group (ProctrackType=proctrack/pgid) the suspend stops the ranks
// but not their sentinels, which left the group (their setsid), so the sentinels see stopped
// ranks while they run on schedule themselves. A rank stopped by anyone else (a stray
// `kill -STOP`) is in a job that Slurm says runs, or in no Slurm job at all (no SLURM_JOB_ID):
// frozen, as before. `scontrol -o show job ID` runs with its output in a pipe, for at most
// SLURM_ASK_MS; no answer (no scontrol, a controller that does not answer) is "not suspended".
enum { SLURM_ASK_MS = 10000 };

static int slurm_job_suspended(void) {
    const char *id = getenv("SLURM_JOB_ID");
    if (!id || !id[0] || strlen(id) > 20 || strspn(id, "0123456789") != strlen(id))
        return 0;
    int p[2];
    if (pipe(p) != 0)
        return 0;
    pid_t kid = fork();
    if (kid < 0) {
        close(p[0]);
        close(p[1]);
        return 0;
    }
    if (kid == 0) {
        dup2(p[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2);
        close(p[0]);
        close(p[1]);
        execlp("scontrol", "scontrol", "-o", "show", "job", id, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char buf[16384];
    size_t len = 0;
    int64_t deadline = rd_mono_ns() + (int64_t)SLURM_ASK_MS * 1000000;
    for (;;) {
        int64_t left_ms = (deadline - rd_mono_ns()) / 1000000;
        if (left_ms <= 0)
            break;
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pfd, 1, (int)left_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t k = read(p[0], buf + len, sizeof buf - 1 - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
        if (len == sizeof buf - 1)
            break;
    }
    close(p[0]);
    kill(kid, SIGKILL); // done or out of time: never wait on it
    while (waitpid(kid, NULL, 0) < 0 && errno == EINTR) {
    }
    buf[len] = '\0';
    return strstr(buf, "JobState=SUSPENDED") != NULL;
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
    int freeze_s = 0; // the freeze timeout ("Z"); 0 = not watched
    freeze_state fz = {0};
    char mine[256] = "";
    char line[640];
    size_t len = 0;
    for (;;) {
        if (freeze_s > 0 && !failing) {
            struct pollfd pfd = {.fd = rfd, .events = POLLIN};
            int pr = poll(&pfd, 1, FREEZE_TICK_MS);
            if (pr < 0 && errno == EINTR)
                continue;
            if (pr == 0) {
                char why[256];
                int fire = freeze_check(&fz, parent, rd_mono_ns(), freeze_s, why, sizeof why);
                if (fire && fz.prev_state == 'T' && slurm_job_suspended()) {
                    fire = 0; // suspended by Slurm, not frozen: count again from here
                    fz.since_ns = fz.last_ns = rd_mono_ns();
                }
                if (fire) {
                    // Claim the marker first (time 0, as a failing rank does): the ranks the
                    // launcher kills next are victims, not news.
                    failing = 1;
                    have_stamp =
                        prefix[0] && stamp_write(prefix, (long)parent, 0, mine, sizeof mine);
                    char host[128] = "?";
                    gethostname(host, sizeof host - 1);
                    host[sizeof host - 1] = '\0';
                    char msg[RD_ERR_MSG_MAX];
                    int n = snprintf(msg, sizeof msg,
                                     "recdistill: %s, pid %ld on host %s, %s; every rank that "
                                     "exchanges with it would wait for it until the time limit, "
                                     "so it is killed (SIGKILL) to end the launch "
                                     "(cluster.freeze_timeout_s: %d; 0 turns this off)\n",
                                     ident, (long)parent, host, why, freeze_s);
                    if (n > 0)
                        write_all(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
                    if (getppid() == parent) // still our rank, not a reused pid
                        kill(parent, SIGKILL);
                }
                continue;
            }
        }
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
        if (line[0] == 'Z') {
            long v = strtol(line + 1, NULL, 10);
            freeze_s = v > 0 && v <= RD_WATCH_FREEZE_MAX_S ? (int)v : 0;
            fz = (freeze_state){0};
        } else if (line[0] == 'I') {
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

void rd_watch_freeze(rd_watch *w, int timeout_s) {
    if (!w)
        return;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "Z%d\n", timeout_s);
    if (n > 0 && (size_t)n < sizeof buf)
        write_all(w->fd, buf, (size_t)n);
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
