// log.c — the logger. Its state (level, rank, role) is the one mutable global of the program,
// set once in main and after the role split (STYLE.md 8).
#include "rd/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static struct {
    rd_log_level level;
    int rank;
    char role[24];
} g_log = {RD_LOG_LEVEL_INFO, 0, "-"};

void rd_log_init(rd_log_level level, int rank, const char *role) {
    g_log.level = level;
    rd_log_set_rank(rank, role);
}

void rd_log_set_rank(int rank, const char *role) {
    g_log.rank = rank;
    snprintf(g_log.role, sizeof g_log.role, "%s", role ? role : "-");
}

rd_log_level rd_log_get_level(void) {
    return g_log.level;
}

int rd_log_get_rank(void) {
    return g_log.rank;
}

const char *rd_log_get_role(void) {
    return g_log.role;
}

int rd_log_level_parse(const char *name, rd_log_level *out) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (rd_log_level)i;
            return RD_OK;
        }
    }
    return RD_ERR_ARG;
}

void rd__log(rd_log_level level, const char *file, int line, const char *fmt, ...) {
    static const char *tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    // One fprintf per line so that lines of different ranks do not interleave mid-line.
    fprintf(stderr, "[r%d %s] %s:%d %s %s\n", g_log.rank, g_log.role, base, line, tags[level], msg);
}

void rd_log_metric(const char *fmt, ...) {
    if (g_log.rank != 0)
        return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stdout, "%s\n", msg);
    fflush(stdout);
}
