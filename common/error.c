// error.c — status text, error buffers and the fatal paths behind RD_ASSERT / RD_MPI_CHECK.
//
// The fatal path must end the whole job: a bare abort() on one rank leaves the others spinning in
// MPI calls, so when MPI is initialised we call MPI_Abort on COMM_WORLD.
#include "rd/error.h"
#include "rd/log.h"
#include "rd/watch.h"

#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *rd_strerror(int status) {
    switch (status) {
#define RD__STATUS_CASE(name, code, text)                                                          \
    case code:                                                                                     \
        return text;
        RD_STATUS_MAP(RD__STATUS_CASE)
#undef RD__STATUS_CASE
        default:
            return "unknown error";
    }
}

void rd_errbuf_clear(rd_errbuf *eb) {
    if (eb) {
        eb->code = RD_OK;
        eb->msg[0] = '\0';
    }
}

// msg (len bytes, len >= cap) into dst: its head, "...[N bytes cut]...", and its last
// RD_ERR_TAIL_KEPT bytes. The marker takes at most 40 bytes, so the head is what is left of cap.
static void cut_middle(char *dst, size_t cap, const char *msg, size_t len) {
    size_t tail = RD_ERR_TAIL_KEPT, head = cap - 1 - tail - 40;
    char mark[48];
    int m = snprintf(mark, sizeof mark, "...[%zu bytes cut]...", len - head - tail);
    memmove(dst, msg, head);
    memcpy(dst + head, mark, (size_t)m);
    memmove(dst + head + (size_t)m, msg + len - tail, tail);
    dst[head + (size_t)m + tail] = '\0';
}

int rd_err_set(rd_errbuf *eb, int code, const char *fmt, ...) {
    if (eb && eb->code == RD_OK) {
        eb->code = code;
        va_list ap, again;
        va_start(ap, fmt);
        va_copy(again, ap);
        int n = vsnprintf(eb->msg, sizeof eb->msg, fmt, ap);
        va_end(ap);
        // Too long: format again in full (malloc, not rd_xmalloc: an error path must not abort;
        // without memory the plain cut stays) and keep its head and its tail.
        char *full = n >= (int)sizeof eb->msg ? malloc((size_t)n + 1) : NULL;
        if (full) {
            vsnprintf(full, (size_t)n + 1, fmt, again);
            cut_middle(eb->msg, sizeof eb->msg, full, (size_t)n);
            free(full);
        }
        va_end(again);
    }
    return code;
}

rd_err_path_text rd_err_path(const char *path) {
    rd_err_path_text t;
    size_t len = path ? strlen(path) : 0;
    if (!path)
        snprintf(t.s, sizeof t.s, "(null)");
    else if (len <= RD_ERR_PATH_WHOLE)
        snprintf(t.s, sizeof t.s, "%s", path);
    else
        snprintf(t.s, sizeof t.s, "%.*s...(%zu bytes)...%s", RD_ERR_PATH_HEAD, path,
                 len - RD_ERR_PATH_HEAD - RD_ERR_PATH_TAIL, path + len - RD_ERR_PATH_TAIL);
    return t;
}

void rd_err_prefix(rd_errbuf *eb, const char *fmt, ...) {
    if (!eb)
        return;
    char pre[RD_ERR_MSG_MAX / 2]; // a context may name a path
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    // A message that already starts with this context keeps one copy of it: a layer that names
    // itself in its own message and a caller that adds the same name would otherwise print
    // "--resume: --resume: ..." (the one place to stop that, rather than a check at each call).
    size_t n = strlen(pre);
    if (n > 0 && strncmp(eb->msg, pre, n) == 0)
        return;
    // Both parts fit in twice the buffer; a result too long keeps its head and its tail (the
    // cause), as rd_err_set does.
    char both[2 * sizeof eb->msg];
    int len = snprintf(both, sizeof both, "%s%s", pre, eb->msg);
    if (len < 0)
        return;
    if ((size_t)len < sizeof eb->msg)
        memcpy(eb->msg, both, (size_t)len + 1);
    else
        cut_middle(eb->msg, sizeof eb->msg, both,
                   (size_t)len < sizeof both ? (size_t)len : sizeof both - 1);
}

void rd__abort_watchdog(unsigned seconds) {
    // Default action (terminate), unblocked, whatever the process or MPI set before: the alarm
    // must end this process even when MPI_Abort never returns.
    signal(SIGALRM, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    alarm(seconds);
}

void rd_abort_launch(void) {
    rd_abort_launch_status(1);
}

void rd_abort_launch_status(int status) {
    if (status < 1 || status > 255)
        status = 1;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    fflush(stdout);
    fflush(stderr);
    rd__watch_failing(); // the message above names the failure: no "died" line from the sentinel
    if (!inited || finalized)
        abort();
    // MPI_Abort has been seen (once, in CI under load) never to return nor end the launch. The
    // alarm bounds that: this rank then dies by SIGALRM, which the launcher reports as an
    // abnormal end and answers by killing the other ranks.
    rd__abort_watchdog(RD_ABORT_WATCHDOG_S);
    // Give the launcher's proxy time to forward our last stderr lines: MPI_Abort makes it kill
    // every rank at once, and a message still in the pipe is then lost (seen with hydra about 1
    // abort in 12 on a loaded host).
    struct timespec ts = {0, 250 * 1000 * 1000};
    nanosleep(&ts, NULL);
    MPI_Abort(MPI_COMM_WORLD, status);
    _exit(status); // MPI_Abort returned, which it must not: end this rank at least
}

void rd__fatal(const char *file, int line, const char *fmt, ...) {
    char msg[RD_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[r%d %s] %s:%d FATAL: %s\n", rd_log_get_rank(), rd_log_get_role(), file, line,
            msg);
    rd_abort_launch();
}

void rd__mpi_fail(const char *file, int line, const char *call, int rc) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", rc);
    fprintf(stderr, "[r%d %s] %s:%d FATAL: %s failed: %s\n", rd_log_get_rank(), rd_log_get_role(),
            file, line, call, text);
    rd_abort_launch();
}
