// replay.c — main() of a fuzz target in builds without libFuzzer: run it over files.
//
//   fuzz_<name>_replay [--expect-error | --expect-status NAME | --expect-ok] FILE|DIR ...
//
// Every regular file (directories: their files, not recursive, sorted) goes through
// rd_fuzz_check once. A crash or a sanitizer report ends the process (a test failure). With
// --expect-error every input must also be rejected (a non-OK status): the bad-input corpus.
// --expect-status NAME: rejected with that rd_status (e.g. ERR_CORRUPT), so that a case stays
// the case it was written for (a bundle whose config layout went stale is refused as
// ERR_VERSION before its lie is ever read). --expect-ok: every input must be accepted (the valid
// seeds, which would otherwise go stale unnoticed and fuzz nothing but the first check).
// Exit: 0 ok, 1 an input was accepted under --expect-error or a file could not be read, 2 usage.
#include "fuzz.h"

#include "rd/error.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int status_code(const char *name, int *code) {
#define RD__STATUS_NAME(nm, c, text)                                                               \
    if (strcmp(name, #nm) == 0) {                                                                  \
        *code = c;                                                                                 \
        return 0;                                                                                  \
    }
    RD_STATUS_MAP(RD__STATUS_NAME)
#undef RD__STATUS_NAME
    return -1;
}

static int g_expect_status = 1; // 1 = any non-OK status
static int g_expect_ok;         // --expect-ok

static int run_file(const char *path, int expect_error, int *n_files) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return 1;
    }
    // An exact-size copy, so that ASan sees reads past the end of the input.
    uint8_t *exact = malloc(len ? len : 1);
    memcpy(exact, buf, len);
    free(buf);
    int rc = rd_fuzz_check(exact, len);
    free(exact);
    (*n_files)++;
    if (g_expect_ok && rc != RD_OK) {
        fprintf(stderr, "%s: rejected with status %d (%s), but it is a valid seed\n", path, rc,
                rd_strerror(rc));
        return 1;
    }
    if (expect_error && rc == RD_OK) {
        fprintf(stderr, "%s: accepted, but it is in the bad-input corpus\n", path);
        return 1;
    }
    if (expect_error && g_expect_status != 1 && rc != g_expect_status) {
        fprintf(stderr, "%s: rejected with status %d (%s), expected %d (%s)\n", path, rc,
                rd_strerror(rc), g_expect_status, rd_strerror(g_expect_status));
        return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    int expect_error = 0, bad = 0, n_files = 0, n_args = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expect-error") == 0) {
            expect_error = 1;
            continue;
        }
        if (strcmp(argv[i], "--expect-ok") == 0) {
            g_expect_ok = 1;
            continue;
        }
        if (strcmp(argv[i], "--expect-status") == 0) {
            if (i + 1 >= argc || status_code(argv[i + 1], &g_expect_status) != 0 ||
                g_expect_status == RD_OK) {
                fprintf(stderr, "--expect-status: give a status name such as ERR_CORRUPT\n");
                return 2;
            }
            expect_error = 1;
            i++;
            continue;
        }
        n_args++;
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "%s: not found\n", argv[i]);
            bad = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i], expect_error, &n_files);
            continue;
        }
        DIR *d = opendir(argv[i]);
        char **names = NULL;
        size_t n = 0;
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            names = realloc(names, (n + 1) * sizeof *names);
            names[n] = malloc(strlen(argv[i]) + strlen(e->d_name) + 2);
            sprintf(names[n], "%s/%s", argv[i], e->d_name);
            n++;
        }
        if (d)
            closedir(d);
        if (n)
            qsort(names, n, sizeof *names, cmp_str);
        for (size_t j = 0; j < n; j++) {
            struct stat fs;
            if (stat(names[j], &fs) == 0 && S_ISREG(fs.st_mode))
                bad |= run_file(names[j], expect_error, &n_files);
            free(names[j]);
        }
        free(names);
    }
    if (n_args == 0) {
        fprintf(stderr,
                "usage: %s [--expect-error | --expect-status NAME | --expect-ok] FILE|DIR ...\n",
                argv[0]);
        return 2;
    }
    printf("%s: %d inputs%s, %s\n", argv[0], n_files, expect_error ? " (all must be rejected)" : "",
           bad ? "FAILED" : "ok");
    return bad;
}
