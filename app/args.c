// args.c — the option parser every `recdistill` subcommand shares (commands.h).
//
// Before it, each command scanned argv by hand: an option given twice silently took its last
// value, an option's value was taken even when it was another option (`--out --seed` wrote to a
// file named "--seed"), and a -h anywhere, even as a value (`--out -h`), printed the help. Here
// an option is recognised only in an option position, appears at most once, and takes the next
// argument as its value only when that argument is not an option itself — except a negative
// number for options that take numbers (`--before -5`, `--ymin -0.5`). "-" alone is a value
// (stdout for `table export --out -`), never an option.
#include "commands.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// "-5", "-0.25", "-.5": a negative number, not an option.
static int is_negative_number(const char *v) {
    return v[0] == '-' &&
           (isdigit((unsigned char)v[1]) || (v[1] == '.' && isdigit((unsigned char)v[2])));
}

static int is_option(const char *a) {
    return a[0] == '-' && a[1] != '\0';
}

int rd_app_parse(const char *prog,
                 int argc,
                 char **argv,
                 int first,
                 rd_app_opt *opts,
                 int n_opts,
                 const char **pos,
                 int max_pos,
                 int *n_pos) {
    *n_pos = 0;
    for (int k = 0; k < n_opts; k++)
        opts[k].value = NULL;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (!is_option(a)) {
            if (*n_pos >= max_pos) {
                fprintf(stderr, "%s: unexpected argument '%s'\n", prog, a);
                return 2;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        rd_app_opt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (strcmp(a, opts[k].name) == 0)
                o = &opts[k];
        if (!o) {
            fprintf(stderr, "%s: unknown option '%s'\n", prog, a);
            return 2;
        }
        if (o->value) {
            fprintf(stderr, "%s: %s given twice\n", prog, a);
            return 2;
        }
        if (o->kind == RD_APP_FLAG) {
            o->value = o->name;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", prog, a);
            return 2;
        }
        const char *v = argv[i + 1];
        if (is_option(v) && !(o->kind == RD_APP_NUMBER && is_negative_number(v))) {
            fprintf(stderr, "%s: %s needs a value, not the option '%s'\n", prog, a, v);
            return 2;
        }
        o->value = v;
        i++;
    }
    return 0;
}

// Is `name` one of the space-separated words of `list`?
static int in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        size_t w = strcspn(p, " ");
        if (w == n && strncmp(p, name, n) == 0)
            return 1;
        p += w;
    }
    return 0;
}

int rd_app_only(
    const char *prog, const char *sub, const rd_app_opt *opts, int n_opts, const char *taken) {
    for (int k = 0; k < n_opts; k++) {
        if (opts[k].value && !in_list(taken, opts[k].name)) {
            fprintf(stderr, "%s: %s is not an option of %s (%s%s)\n", prog, opts[k].name, sub,
                    taken[0] ? "it takes: " : "it takes no options", taken);
            return 2;
        }
    }
    return 0;
}

int rd_app_parse_i64(const char *s, int64_t *v) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return -1;
    *v = x;
    return 0;
}

int rd_app_parse_u64(const char *s, uint64_t *v) {
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-')
        return -1;
    *v = x;
    return 0;
}
