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

int rd_err_set(rd_errbuf *eb, int code, const char *fmt, ...) {
    if (eb && eb->code == RD_OK) {
        eb->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(eb->msg, sizeof eb->msg, fmt, ap);
        va_end(ap);
    }
    return code;
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
    char old[sizeof eb->msg];
    memcpy(old, eb->msg, sizeof old);
    // Truncation of a long message is acceptable; using the result tells GCC it was considered.
    if (snprintf(eb->msg, sizeof eb->msg, "%s%s", pre, old) >= (int)sizeof eb->msg)
        eb->msg[sizeof eb->msg - 1] = '\0';
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
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1); // MPI_Abort returned, which it must not: end this rank at least
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
