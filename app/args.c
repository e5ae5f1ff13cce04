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

#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/error.h"
#include "rd/hash.h"
#include "rd/numfmt.h"
#include "rd/train_ckpt.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

// "-5", "-0.25", "-.5": a negative number, not an option.
static int is_negative_number(const char *v) {
    return v[0] == '-' &&
           (isdigit((unsigned char)v[1]) || (v[1] == '.' && isdigit((unsigned char)v[2])));
}

static int is_option(const char *a) {
    return a[0] == '-' && a[1] != '\0';
}

// One usage-error line into msg (no newline).
#define USAGE(...) (snprintf(msg, cap, __VA_ARGS__), 2)

int rd_app_parse_msg(int argc,
                     char **argv,
                     int first,
                     rd_app_opt *opts,
                     int n_opts,
                     const char **pos,
                     int max_pos,
                     int *n_pos,
                     char *msg,
                     size_t cap) {
    *n_pos = 0;
    msg[0] = 0;
    for (int k = 0; k < n_opts; k++)
        opts[k].value = NULL;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (!is_option(a)) {
            if (*n_pos >= max_pos)
                return USAGE("unexpected argument '%s'", a);
            pos[(*n_pos)++] = a;
            continue;
        }
        rd_app_opt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (strcmp(a, opts[k].name) == 0)
                o = &opts[k];
        if (!o)
            return USAGE("unknown option '%s'", a);
        if (o->value && o->kind != RD_APP_REPEAT)
            return USAGE("%s given twice", a);
        if (o->kind == RD_APP_FLAG) {
            o->value = o->name;
            continue;
        }
        if (i + 1 >= argc)
            return USAGE("%s needs a value", a);
        const char *v = argv[i + 1];
        if (is_option(v) && !(o->kind == RD_APP_NUMBER && is_negative_number(v)))
            return USAGE("%s needs a value, not the option '%s'", a, v);
        // No option takes an empty value: an unset shell variable ("--resume $CKPT") must not
        // fall back to the default silently (a fresh run, a default folder, every table).
        if (!v[0] && o->kind != RD_APP_TEXT)
            return USAGE("%s: empty value", a);
        o->value = v;
        i++;
    }
    return 0;
}
#undef USAGE

int rd_app_values(int argc, char **argv, int first, const char *name, const char **out, int cap) {
    // rd_app_parse took no option-like argument as a value or a positional argument, so every
    // `name` in argv is that option, and the argument after it its value.
    int n = 0;
    for (int i = first; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) != 0)
            continue;
        if (n >= cap)
            return -1;
        out[n++] = argv[++i];
    }
    return n;
}

int rd_app_sets(const char *prog, int argc, char **argv, const char **sets) {
    int n = rd_app_values(argc, argv, 1, "--set", sets, RD_CONFIG_MAX_SETS);
    if (n < 0)
        fprintf(stderr, "%s: --set given more than %d times\n", prog, RD_CONFIG_MAX_SETS);
    return n;
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
    char msg[512];
    int st =
        rd_app_parse_msg(argc, argv, first, opts, n_opts, pos, max_pos, n_pos, msg, sizeof msg);
    if (st == 2)
        fprintf(stderr, "%s: %s\n", prog, msg);
    return st;
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

const rd_app_sub *
rd_app_sub_find(const char *prog, const rd_app_sub *subs, size_t n_subs, const char *cmd) {
    for (size_t i = 0; i < n_subs; i++)
        if (strcmp(cmd, subs[i].name) == 0)
            return &subs[i];
    fprintf(stderr, "%s: unknown command '%s'\n\n", prog, cmd);
    return NULL;
}

// strtoll/strtoull skip leading blanks and take a sign: " 5" and "+5" passed, and strtoull
// negates a '-' in unsigned arithmetic, so " -5" (which got past the s[0] == '-' test) became
// 18446744073709551611. So the text itself must start with a digit (or '-' and a digit for a
// signed value) before strto* sees it; the rest is theirs to check.
int rd_app_parse_i64(const char *s, int64_t *v) {
    const char *d = s[0] == '-' ? s + 1 : s;
    if (!isdigit((unsigned char)d[0]))
        return -1;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*end || errno)
        return -1;
    *v = x;
    return 0;
}

int rd_app_parse_time(const char *s, int64_t *v) {
    if (rd_app_parse_i64(s, v) == 0)
        return 0;
    int64_t ms;
    if (rd_parse_iso8601(s, strlen(s), &ms) != 0)
        return -1;
    // Up to a whole second (towards +inf, also before 1970): "< 12:00:00.5" keeps 12:00:00.
    int64_t sec = ms / 1000;
    if (ms % 1000 > 0)
        sec++;
    *v = sec;
    return 0;
}

int rd_app_parse_u64(const char *s, uint64_t *v) {
    if (!isdigit((unsigned char)s[0]))
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno)
        return -1;
    *v = x;
    return 0;
}

int rd_app_parse_double(const char *s, double *v) {
    const char *d = s[0] == '-' ? s + 1 : s;
    if (!isdigit((unsigned char)d[0]) && !(d[0] == '.' && isdigit((unsigned char)d[1])))
        return -1;
    if (d[0] == '0' && (d[1] == 'x' || d[1] == 'X'))
        return -1;
    char *end = NULL;
    errno = 0;
    double x = strtod(s, &end);
    // ERANGE also flags an underflow to a tiny or zero value, which is a number; an overflow is
    // HUGE_VAL and fails isfinite.
    if (*end || !isfinite(x))
        return -1;
    *v = x;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Launch-wide agreement on the command line (commands that run under MPI)
//
// An MPMD launch (`mpiexec -n P recdistill train A : -n W recdistill train B`) gives each segment
// its own argv. A segment that ended before MPI_Init (a usage error) left the other ranks in
// MPI_Init for ever (MPICH's hydra waits for every process of the launch to initialise), and the
// arguments of the segments other than rank 0's were silently ignored (or, for --resume, read per
// rank). So a command that runs under MPI parses without printing, calls MPI_Init whatever the
// outcome, and every rank's outcome and arguments are gathered here: world rank 0 prints each
// message once, naming the ranks, and every rank gets the same verdict and exits with it.

enum { AGREE_MSG = 240, AGREE_SHOWN = 160 };

typedef struct agree_rec {
    int32_t status;    // 0 ok, 1 --help, 2 usage error
    int32_t appnum;    // MPI_APPNUM: the mpiexec segment, from 0 (-1 unknown)
    uint64_t msg_hash; // of msg
    char msg[AGREE_MSG];
    int32_t n_args;
    int32_t pad;
    uint64_t hash[RD_APP_AGREE_MAX];
    char shown[RD_APP_AGREE_MAX][AGREE_SHOWN];
} agree_rec;

// The ranks r with sel[r] as text (rd_fmt_rank_set), with their mpiexec segments when the launch
// has several (multi).
static void
rank_set(const int32_t *appnum, const char *sel, int n, int multi, char *buf, size_t cap) {
    rd_fmt_rank_set(sel, multi ? appnum : NULL, n, buf, cap);
}

// World rank 0: the verdict over every rank's record, with its messages on stderr. header heads
// the list of the arguments that differ.
static int judge(const char *prog, const char *header, const agree_rec *all, int n) {
    int multi = 0, n_err = 0, n_help = 0;
    int32_t *appnum = rd_xcalloc((size_t)n, sizeof *appnum);
    for (int r = 0; r < n; r++) {
        appnum[r] = all[r].appnum;
        multi |= all[r].appnum != all[0].appnum;
        n_err += all[r].status == 2;
        n_help += all[r].status == 1;
    }
    char *sel = rd_xcalloc((size_t)n, 1), *done = rd_xcalloc((size_t)n, 1);
    char set[600];
    int verdict = RD_APP_AGREE_OK;
    if (n_err > 0) {
        // Each distinct message once, with the ranks that have it (none named when every rank
        // has it: the single-process case reads as before).
        for (int r = 0; r < n; r++) {
            if (all[r].status != 2 || done[r])
                continue;
            int cnt = 0;
            for (int q = 0; q < n; q++) {
                sel[q] = q >= r && all[q].status == 2 && all[q].msg_hash == all[r].msg_hash &&
                         strcmp(all[q].msg, all[r].msg) == 0;
                done[q] |= sel[q];
                cnt += sel[q];
            }
            if (cnt == n) {
                fprintf(stderr, "%s: %s\n", prog, all[r].msg);
            } else {
                rank_set(appnum, sel, n, multi, set, sizeof set);
                fprintf(stderr, "%s: %s: %s\n", prog, set, all[r].msg);
            }
        }
        if (n_err < n)
            fprintf(stderr,
                    "%s: every rank of the launch stops (a usage error on any rank ends "
                    "them all)\n",
                    prog);
        verdict = RD_APP_AGREE_USAGE;
    } else if (n_help > 0) {
        verdict = RD_APP_AGREE_HELP;
        if (n_help < n) {
            for (int q = 0; q < n; q++)
                sel[q] = all[q].status == 1;
            rank_set(appnum, sel, n, multi, set, sizeof set);
            fprintf(stderr,
                    "%s: --help was given on %s only: every rank of a launch must be given the "
                    "same arguments\n",
                    prog, set);
            verdict = RD_APP_AGREE_MISMATCH;
        }
    } else {
        int said = 0;
        for (int k = 0; k < all[0].n_args; k++) {
            int differ = 0;
            for (int r = 1; r < n; r++)
                differ |= all[r].n_args != all[0].n_args || all[r].hash[k] != all[0].hash[k];
            if (!differ)
                continue;
            if (!said)
                fprintf(stderr, "%s: %s:\n", prog, header);
            said = 1;
            const char *name = all[0].shown[k];
            fprintf(stderr, "  %.*s differs:\n", (int)strcspn(name, "\t"), name);
            memset(done, 0, (size_t)n);
            for (int r = 0; r < n; r++) {
                if (done[r])
                    continue;
                for (int q = 0; q < n; q++) {
                    sel[q] = q >= r && !done[q] && all[q].hash[k] == all[r].hash[k];
                    done[q] |= sel[q];
                }
                rank_set(appnum, sel, n, multi, set, sizeof set);
                // shown[k] is "NAME\tVALUE": the name heads the group, the value per group.
                const char *tab = strchr(all[r].shown[k], '\t');
                fprintf(stderr, "    %s: %s\n", set, tab ? tab + 1 : all[r].shown[k]);
            }
            verdict = RD_APP_AGREE_MISMATCH;
        }
    }
    rd_free(sel);
    rd_free(done);
    rd_free(appnum);
    return verdict;
}

// ---------------------------------------------------------------------------------------------
// The build check: the first exchange of every launch (rd_app_agree, phase 1)
//
// MPMD segments, Slurm het-job components or nodes with their own install may run two builds of
// recdistill. Nothing compared them: a wire or file layout that differs showed up late (a PROTO
// error at the first evaluation, after the whole batch phase), model code that differs not at
// all. So every rank sends its build identity (rd_app_build_id), host and executable path first.
//
// hello_rec is frozen: two builds must make the same first collective, whatever else changed.
// Its size and its first fields are those of agree_rec as it was before this check (1272 bytes:
// status, appnum, msg_hash, msg, n_args, hash[6], then shown[6][160], where hello keeps its own
// fields). A rank 0 of such an older build thus reads a new rank as a usage error whose message
// names the new build, and every rank still exits 2 together; a new rank 0 reads an old rank as
// a build without identity. Change nothing here; a later build adds fields in `spare` only.

enum { HELLO_SIZE = 1272, HELLO_MSG = 240, HELLO_ID = 256, HELLO_HOST = 128, HELLO_EXE = 560 };
#define HELLO_MAGIC "RDBUILD1"

typedef struct hello_rec {
    int32_t status;        // 2: what an older rank 0 takes for a usage error (above)
    int32_t appnum;        // MPI_APPNUM: the mpiexec segment, from 0 (-1 unknown)
    uint64_t msg_hash;     // rd_hash_str(msg, 0), as an older rank 0 groups messages
    char msg[HELLO_MSG];   // "runs another build of recdistill: <id>", for an older rank 0
    int32_t n_args;        // 0
    int32_t pad;           // 0
    uint64_t old_hash[6];  // 0
    char magic[8];         // HELLO_MAGIC, not NUL-terminated: absent in an older build's record
    char id[HELLO_ID];     // rd_app_build_id()
    char host[HELLO_HOST]; // gethostname
    char exe[HELLO_EXE];   // /proc/self/exe ("" when unknown)
    char spare[8];         // 0
} hello_rec;
_Static_assert(sizeof(hello_rec) == HELLO_SIZE, "hello_rec is frozen: never change its size");

// What rank 0 shows of a record's build: its identity, or that it has none.
static const char *hello_id(const hello_rec *h) {
    return memcmp(h->magic, HELLO_MAGIC, 8) == 0 ? h->id : NULL;
}

// Is `field` one whole space-separated field of `line`?
static int has_field(const char *line, const char *field) {
    size_t n = strlen(field);
    for (const char *p = line; (p = strstr(p, field)) != NULL; p++)
        if ((p == line || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
            return 1;
    return 0;
}

// Append to buf (", "-separated, each once) the names of the fields of line a that line b lacks:
// the key of a key=value field ("src", "wire", "openblas", ...), else the field itself
// (" fuzzing"). A build identity (build_line) begins "recdistill VERSION": its first field is
// skipped and its second named "version". Called both ways, so that a field only one of the two
// lines has is named too. For the build identities (judge_builds) and the run-time identities
// (judge_runtimes) alike.
static void
fields_diff(const char *a, const char *b, int build_line, char *buf, size_t cap, size_t *len) {
    char ta[RD_APP_RUNTIME_MAX > HELLO_ID ? RD_APP_RUNTIME_MAX : HELLO_ID];
    snprintf(ta, sizeof ta, "%s", a);
    char *save = NULL;
    int i = 0;
    for (char *f = strtok_r(ta, " ", &save); f; f = strtok_r(NULL, " ", &save), i++) {
        if ((build_line && i == 0) || has_field(b, f))
            continue;
        const char *eq = strchr(f, '=');
        char key[48];
        if (build_line && i == 1)
            snprintf(key, sizeof key, "version");
        else
            snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - f) : (int)strlen(f), f);
        char listed[600];
        snprintf(listed, sizeof listed, ", %s", buf);
        char *at = strstr(listed, key);
        int dup = 0;
        while (at && !dup) { // already listed as a whole key?
            dup = at[-1] == ' ' && (at[strlen(key)] == ',' || at[strlen(key)] == 0);
            at = strstr(at + 1, key);
        }
        if (!dup)
            rd_fmt_append(buf, cap, len, "%s%s", *len ? ", " : "", key);
    }
}

// World rank 0: 0 when every rank runs this build, else the report (stderr) and 1.
static int judge_builds(const char *prog, const hello_rec *all, int n) {
    const char *mine = rd_app_build_id();
    int same = 1, multi = 0;
    for (int r = 0; r < n; r++) {
        const char *id = hello_id(&all[r]);
        same &= id != NULL && strcmp(id, mine) == 0;
        multi |= all[r].appnum != all[0].appnum;
    }
    if (same)
        return 0;
    int32_t *appnum = rd_xcalloc((size_t)n, sizeof *appnum);
    char *sel = rd_xcalloc((size_t)n, 1), *done = rd_xcalloc((size_t)n, 1);
    char *where = rd_xcalloc((size_t)n, 1);
    for (int r = 0; r < n; r++)
        appnum[r] = all[r].appnum;
    fprintf(stderr,
            "%s: the ranks of this launch run different builds of recdistill; every rank must run "
            "the same build (the same sources, wire and file format versions, floating-point "
            "mode and ABI: `recdistill --version`), wherever it is installed:\n",
            prog);
    char set[600], diff[512] = "";
    size_t dlen = 0;
    int nb = 0;
    for (int r = 0; r < n; r++) {
        if (done[r])
            continue;
        const char *id = hello_id(&all[r]);
        for (int q = 0; q < n; q++) {
            const char *iq = hello_id(&all[q]);
            sel[q] = !done[q] && (id ? iq && strcmp(iq, id) == 0 : !iq);
            done[q] |= sel[q];
        }
        fprintf(stderr, "  build %d: %s\n", ++nb,
                id ? id : "(no build identity: a build from before this check)");
        if (id && strcmp(id, mine) != 0) {
            fields_diff(mine, id, 1, diff, sizeof diff, &dlen);
            fields_diff(id, mine, 1, diff, sizeof diff, &dlen);
        }
        // The build's ranks, by host and executable path.
        memset(where, 0, (size_t)n);
        for (int q = r; q < n; q++) {
            if (!sel[q] || where[q])
                continue;
            char *ss = rd_xcalloc((size_t)n, 1);
            for (int p = q; p < n; p++) {
                // A build from before the check sent no host and path (those bytes are its
                // argument record): its ranks are one set.
                ss[p] = sel[p] && !where[p] &&
                        (!id || (strcmp(all[p].host, all[q].host) == 0 &&
                                 strcmp(all[p].exe, all[q].exe) == 0));
                where[p] |= ss[p];
            }
            rank_set(appnum, ss, n, multi, set, sizeof set);
            if (id)
                fprintf(stderr, "    %s on %s: %s\n", set, all[q].host[0] ? all[q].host : "?",
                        all[q].exe[0] ? all[q].exe : "(executable path unknown)");
            else
                fprintf(stderr, "    %s\n", set);
            rd_free(ss);
        }
    }
    if (diff[0])
        fprintf(stderr, "  they differ in: %s\n", diff);
    rd_free(where);
    rd_free(done);
    rd_free(sel);
    rd_free(appnum);
    return 1;
}

// 1. Every rank's build; 0 when they all run this one, else RD_APP_AGREE_MISMATCH (printed by
//    world rank 0). Collective, with the same verdict on every rank.
static int agree_build(const char *prog, int rank, int size, int appnum) {
    hello_rec *mine = rd_xcalloc(1, sizeof *mine);
    mine->status = 2;
    mine->appnum = appnum;
    snprintf(mine->msg, sizeof mine->msg, "runs another build of recdistill: %s",
             rd_app_build_id());
    mine->msg_hash = rd_hash_str(mine->msg, 0);
    memcpy(mine->magic, HELLO_MAGIC, 8);
    snprintf(mine->id, sizeof mine->id, "%s", rd_app_build_id());
    gethostname(mine->host, sizeof mine->host - 1);
    ssize_t k = readlink("/proc/self/exe", mine->exe, sizeof mine->exe - 1);
    mine->exe[k > 0 ? k : 0] = 0;
    hello_rec *all = rank == 0 ? rd_xcalloc((size_t)size, sizeof *all) : NULL;
    RD_MPI_CHECK(MPI_Gather(mine, (int)sizeof *mine, MPI_BYTE, all, (int)sizeof *mine, MPI_BYTE, 0,
                            MPI_COMM_WORLD));
    int verdict = RD_APP_AGREE_OK;
    if (rank == 0) {
        for (int r = 0; r < size; r++) { // another build's strings are bytes until proven else
            all[r].id[HELLO_ID - 1] = all[r].host[HELLO_HOST - 1] = all[r].exe[HELLO_EXE - 1] = 0;
        }
        verdict = judge_builds(prog, all, size) ? RD_APP_AGREE_MISMATCH : RD_APP_AGREE_OK;
        fflush(stderr);
    }
    // An older rank 0 sends its own verdict (a usage error, 2): any non-zero one refuses.
    RD_MPI_CHECK(MPI_Bcast(&verdict, 1, MPI_INT, 0, MPI_COMM_WORLD));
    rd_free(all);
    rd_free(mine);
    return verdict == RD_APP_AGREE_OK ? RD_APP_AGREE_OK : RD_APP_AGREE_MISMATCH;
}

// ---------------------------------------------------------------------------------------------
// The run-time check: after the arguments agree (rd_app_agree, phase 3)
//
// Ranks of one build may still run on other libraries: a node with another CPU (OpenBLAS picks
// its kernels by CPU), another OpenBLAS, MPI, glibc (libm), LMDB or libyaml install. The launch
// is valid, but its float results are not bit-for-bit reproducible against a launch on one kind
// of node, which users comparing scaling runs need to know. So a launch whose ranks differ in
// rd_app_runtime_id gets one warning from world rank 0, never a refusal. Every rank runs this
// build (phase 1), so this exchange may have any layout.

enum { RUNTIME_GROUPS_SHOWN = 8, RUNTIME_HOSTS_SHOWN = 4 };

typedef struct runtime_rec {
    int32_t appnum;                // MPI_APPNUM: the mpiexec segment, from 0 (-1 unknown)
    int32_t rank;                  // world rank
    char line[RD_APP_RUNTIME_MAX]; // rd_app_runtime_id()
    char host[HELLO_HOST];         // gethostname
} runtime_rec;

// Order of the records: by run-time line, then host, then rank.
static int runtime_cmp(const void *pa, const void *pb) {
    const runtime_rec *a = *(const runtime_rec *const *)pa, *b = *(const runtime_rec *const *)pb;
    int c = strcmp(a->line, b->line);
    if (!c)
        c = strcmp(a->host, b->host);
    return c ? c : (a->rank > b->rank) - (a->rank < b->rank);
}

// A run of equal records (one run-time line, or one line and host) in the sorted order, by its
// lowest rank: the groups are shown in rank order, rank 0's first.
typedef struct runtime_run {
    int start, end, first_rank;
} runtime_run;

static int run_cmp(const void *pa, const void *pb) {
    const runtime_run *a = pa, *b = pb;
    return (a->first_rank > b->first_rank) - (a->first_rank < b->first_rank);
}

// World rank 0, when the ranks' run-time lines differ: one warning on stderr, naming the fields
// that differ, then each line with its ranks per host. Bounded on any launch: sorted once
// (n log n), at most RUNTIME_GROUPS_SHOWN lines with RUNTIME_HOSTS_SHOWN hosts each, the rest
// counted.
static void judge_runtimes(const char *prog, const runtime_rec *all, int n) {
    const runtime_rec **by = rd_xcalloc((size_t)n, sizeof *by);
    int32_t *appnum = rd_xcalloc((size_t)n, sizeof *appnum);
    char *sel = rd_xcalloc((size_t)n, 1);
    runtime_run *groups = rd_xcalloc((size_t)n, sizeof *groups);
    runtime_run *hosts = rd_xcalloc((size_t)n, sizeof *hosts);
    int multi = 0;
    for (int r = 0; r < n; r++) {
        by[r] = &all[r];
        appnum[r] = all[r].appnum;
        multi |= all[r].appnum != all[0].appnum;
    }
    qsort(by, (size_t)n, sizeof *by, runtime_cmp);
    int ng = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || strcmp(by[i]->line, by[i - 1]->line) != 0)
            groups[ng++] = (runtime_run){i, i, by[i]->rank};
        runtime_run *g = &groups[ng - 1];
        g->end = i + 1;
        if (by[i]->rank < g->first_rank)
            g->first_rank = by[i]->rank;
    }
    qsort(groups, (size_t)ng, sizeof *groups, run_cmp);
    // The fields in which a line differs from rank 0's (groups[0]), both ways.
    const char *line0 = by[groups[0].start]->line;
    char diff[512] = "", set[600];
    size_t dlen = 0;
    for (int g = 1; g < ng; g++) {
        fields_diff(line0, by[groups[g].start]->line, 0, diff, sizeof diff, &dlen);
        fields_diff(by[groups[g].start]->line, line0, 0, diff, sizeof diff, &dlen);
    }
    fprintf(stderr,
            "%s: warning: the ranks of this launch run one build on different run-time libraries "
            "(they differ in: %s); the launch goes on, but its float results (BLAS kernels, MPI "
            "reductions, libm) are not bit-for-bit reproducible against a launch on one kind of "
            "node (`recdistill --version --runtime`):\n",
            prog, diff[0] ? diff : "?");
    for (int g = 0; g < ng && g < RUNTIME_GROUPS_SHOWN; g++) {
        fprintf(stderr, "  runtime %d: %s\n", g + 1, by[groups[g].start]->line);
        // The group's hosts, each with its ranks (sorted by host, then rank, within the group).
        int nh = 0;
        for (int i = groups[g].start; i < groups[g].end; i++) {
            if (i == groups[g].start || strcmp(by[i]->host, by[i - 1]->host) != 0)
                hosts[nh++] = (runtime_run){i, i, by[i]->rank};
            hosts[nh - 1].end = i + 1;
        }
        qsort(hosts, (size_t)nh, sizeof *hosts, run_cmp);
        for (int h = 0; h < nh && h < RUNTIME_HOSTS_SHOWN; h++) {
            for (int i = hosts[h].start; i < hosts[h].end; i++)
                sel[by[i]->rank] = 1;
            rank_set(appnum, sel, n, multi, set, sizeof set);
            for (int i = hosts[h].start; i < hosts[h].end; i++)
                sel[by[i]->rank] = 0;
            const char *host = by[hosts[h].start]->host;
            fprintf(stderr, "    %s on %s\n", set, host[0] ? host : "?");
        }
        if (nh > RUNTIME_HOSTS_SHOWN)
            fprintf(stderr, "    ... and %d more hosts\n", nh - RUNTIME_HOSTS_SHOWN);
    }
    if (ng > RUNTIME_GROUPS_SHOWN) {
        int rest = 0;
        for (int g = RUNTIME_GROUPS_SHOWN; g < ng; g++)
            rest += groups[g].end - groups[g].start;
        fprintf(stderr, "  ... and %d more runtimes (%d ranks)\n", ng - RUNTIME_GROUPS_SHOWN, rest);
    }
    rd_free(hosts);
    rd_free(groups);
    rd_free(sel);
    rd_free(appnum);
    rd_free(by);
}

// 3. Every rank's run-time identity. Collective; returns 1 on every rank when they differ
//    (world rank 0 has printed the warning), else 0. The common case, one identity, costs one
//    allreduce of two words: the records are gathered only when the hashes differ.
static int agree_runtime(const char *prog, int rank, int size, int appnum) {
    const char *line = rd_app_runtime_id();
    uint64_t h = rd_hash_str(line, 0), mm[2] = {h, ~h}; // max(h) and ~min(h)
    RD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD));
    if (mm[0] == ~mm[1])
        return 0;
    runtime_rec *mine = rd_xcalloc(1, sizeof *mine);
    mine->appnum = appnum;
    mine->rank = rank;
    snprintf(mine->line, sizeof mine->line, "%s", line);
    gethostname(mine->host, sizeof mine->host - 1);
    runtime_rec *all = rank == 0 ? rd_xcalloc((size_t)size, sizeof *all) : NULL;
    RD_MPI_CHECK(MPI_Gather(mine, (int)sizeof *mine, MPI_BYTE, all, (int)sizeof *mine, MPI_BYTE, 0,
                            MPI_COMM_WORLD));
    if (rank == 0) {
        judge_runtimes(prog, all, size);
        fflush(stderr);
    }
    rd_free(all);
    rd_free(mine);
    return 1;
}

static int agree_as(const char *prog,
                    const char *header,
                    int status,
                    const char *msg,
                    const rd_app_arg *args,
                    int n_args) {
    int rank = 0, size = 1, flag = 0;
    int *appnum = NULL;
    RD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    RD_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    RD_MPI_CHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_APPNUM, &appnum, &flag));
    agree_rec *mine = rd_xcalloc(1, sizeof *mine);
    mine->appnum = flag && appnum ? *appnum : -1;
    mine->status = status;
    snprintf(mine->msg, sizeof mine->msg, "%s", msg ? msg : "");
    mine->msg_hash = rd_hash_str(mine->msg, 0);
    mine->n_args = n_args < RD_APP_AGREE_MAX ? n_args : RD_APP_AGREE_MAX;
    for (int k = 0; k < mine->n_args; k++) {
        mine->hash[k] = args[k].hash;
        // A value too long for the record keeps its end: two paths with a long common start
        // (/gpfs/projects/.../run_a, .../run_b) differ there, and were shown alike.
        const char *v = args[k].shown;
        size_t room = sizeof mine->shown[k] - strlen(args[k].name) - 2, vl = strlen(v);
        if (strlen(args[k].name) + 2 < sizeof mine->shown[k] / 2 && vl > room)
            snprintf(mine->shown[k], sizeof mine->shown[k], "%s\t...%s", args[k].name,
                     v + vl - (room - 3));
        else
            snprintf(mine->shown[k], sizeof mine->shown[k], "%s\t%s", args[k].name, v);
    }
    agree_rec *all = rank == 0 ? rd_xcalloc((size_t)size, sizeof *all) : NULL;
    RD_MPI_CHECK(MPI_Gather(mine, (int)sizeof *mine, MPI_BYTE, all, (int)sizeof *mine, MPI_BYTE, 0,
                            MPI_COMM_WORLD));
    int verdict = RD_APP_AGREE_OK;
    if (rank == 0) {
        verdict = judge(prog, header, all, size);
        fflush(stderr);
    }
    RD_MPI_CHECK(MPI_Bcast(&verdict, 1, MPI_INT, 0, MPI_COMM_WORLD));
    rd_free(all);
    rd_free(mine);
    return verdict;
}

int rd_app_agree(const char *prog,
                 int status,
                 const char *msg,
                 const rd_app_arg *args,
                 int n_args,
                 int *runtime_mixed) {
    // 1. The same build on every rank, before anything else is compared or made (the first
    //    collective of every launch; rd_app_agree_values comes later, among ranks of one build).
    int rank = 0, size = 1, flag = 0;
    int *appnum = NULL;
    RD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    RD_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    RD_MPI_CHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_APPNUM, &appnum, &flag));
    if (runtime_mixed)
        *runtime_mixed = 0;
    if (agree_build(prog, rank, size, flag && appnum ? *appnum : -1) != RD_APP_AGREE_OK)
        return RD_APP_AGREE_MISMATCH;
    // 2. The same arguments.
    int v = agree_as(prog,
                     "the ranks of this launch were given different arguments; every rank must be "
                     "given the same (in an MPMD launch, repeat them on every mpiexec segment)",
                     status, msg, args, n_args);
    // 3. The run-time libraries, compared (a warning) only for a launch that goes on: a refused
    //    one ends with its own message. Every rank has the same verdict, so all or none run it.
    if (v == RD_APP_AGREE_OK) {
        int mixed = agree_runtime(prog, rank, size, flag && appnum ? *appnum : -1);
        if (runtime_mixed)
            *runtime_mixed = mixed;
    }
    return v;
}

int rd_app_agree_values(const char *prog, const char *header, const rd_app_arg *args, int n_args) {
    return agree_as(prog, header, 0, NULL, args, n_args);
}

// ---------------------------------------------------------------------------------------------
// What a folder argument is (commands given the wrong kind of folder)

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has(const char *dir, const char *name, int want_dir) {
    char p[RD_PATH_MAX * 2 + 64];
    struct stat st;
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p)
        return 0;
    return stat(p, &st) == 0 && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

// The newest complete step-N of <root>/<job> into out ("" when none).
static void newest_step(const char *root, const char *job, char *out, size_t cap) {
    int64_t *steps = NULL;
    size_t n = 0;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    out[0] = 0;
    if (rd_train_ckpt_list(root, job, &steps, &n, &eb) == RD_OK && n > 0 &&
        rd_train_ckpt_path(root, job, steps[n - 1], out, cap) != RD_OK)
        out[0] = 0;
    rd_free(steps);
}

// A job of the checkpoint root `root` (a sub-folder holding step-N) into job, and how many.
static int root_jobs(const char *root, char *job, size_t cap) {
    DIR *d = opendir(root);
    int n = 0;
    job[0] = 0;
    if (!d)
        return 0;
    char step[RD_PATH_MAX * 2];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        newest_step(root, e->d_name, step, sizeof step);
        if (!step[0])
            continue;
        if (n++ == 0)
            snprintf(job, cap, "%s", step);
    }
    closedir(d);
    return n;
}

int rd_app_path_kind(const char *path, char *what, size_t cap) {
    struct stat st;
    what[0] = 0;
    if (stat(path, &st) != 0) {
        snprintf(what, cap, "%s", strerror(errno));
        return RD_APP_PATH_MISSING;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(what, cap, "%s", S_ISREG(st.st_mode) ? "a file" : "a special file");
        return RD_APP_PATH_FILE;
    }
    char p[RD_PATH_MAX * 2 + 64], q[RD_PATH_MAX * 2 + 64];
    // By the shard folders: a store or checkpoint whose MANIFEST is missing or damaged is still
    // one (its reader's message says what is wrong with it).
    if (has(path, "shard-00000", 1)) {
        snprintf(what, cap,
                 "a table checkpoint (MANIFEST + shard-NNNNN/%s; `recdistill table` reads it)",
                 has(path, RD_TRAIN_CKPT_DENSE, 0) ? " + " RD_TRAIN_CKPT_DENSE : "");
        return RD_APP_PATH_TABLE_CKPT;
    }
    if (has(path, "shard-0000", 1)) {
        snprintf(what, cap,
                 "an instance-token store (MANIFEST + shard-NNNN/; `recdistill tokens` reads it)");
        return RD_APP_PATH_TOKEN_STORE;
    }
    newest_step(path, ".", p, sizeof p);
    if (p[0]) { // <path>/./step-N
        snprintf(what, cap,
                 "one job's checkpoint folder (step-N folders inside; its newest is %s/%s)", path,
                 strrchr(p, '/') + 1);
        return RD_APP_PATH_OTHER;
    }
    int jobs = root_jobs(path, p, sizeof p);
    if (jobs > 0) {
        snprintf(what, cap, "a checkpoint root (<job>/step-N folders of %d job%s inside, e.g. %s)",
                 jobs, jobs == 1 ? "" : "s", p);
        return RD_APP_PATH_OTHER;
    }
    if (has(path, "report.json", 0) || has(path, "ckpt", 1) ||
        (has(path, "tokens", 1) && has(path, "data", 1))) {
        size_t len = 0;
        rd_fmt_append(what, cap, &len, "a run folder of `recdistill train`");
        int nj = snprintf(q, sizeof q, "%s/ckpt", path) < (int)sizeof q && is_dir(q)
                     ? root_jobs(q, p, sizeof p)
                     : 0;
        if (nj > 0)
            rd_fmt_append(what, cap, &len, " (its checkpoints: %s/ckpt/<job>/step-N, e.g. %s", path,
                          p);
        int store =
            snprintf(q, sizeof q, "%s/tokens", path) < (int)sizeof q && has(q, "MANIFEST", 0);
        if (store)
            rd_fmt_append(what, cap, &len, "%s its token store: %s/tokens", nj > 0 ? ";" : " (",
                          path);
        if (nj > 0 || store)
            rd_fmt_append(what, cap, &len, ")");
        return RD_APP_PATH_OTHER;
    }
    if (has(path, RD_DATASET_FILE, 0)) {
        snprintf(what, cap, "a dataset folder (%s of `recdistill prepare`)", RD_DATASET_FILE);
        return RD_APP_PATH_DATASET;
    }
    if (has(path, "MANIFEST", 0)) {
        snprintf(what, cap,
                 "a folder with a MANIFEST but no shard folder (shard-NNNNN/ of a "
                 "table checkpoint, shard-NNNN/ of a token store)");
        return RD_APP_PATH_OTHER;
    }
    if (has(path, "data.mdb", 0)) {
        // An LMDB env alone: a shard of a checkpoint or store given instead of the whole, or a
        // run's target log (which no table or tokens command reads).
        const char *base = strrchr(path, '/');
        base = base && base[1] ? base + 1 : path;
        if (strncmp(base, "shard-", 6) == 0)
            snprintf(what, cap,
                     "one shard's LMDB environment (data.mdb) of a table checkpoint or token "
                     "store: give the folder above it, which holds the MANIFEST");
        else
            snprintf(what, cap,
                     "an LMDB environment (data.mdb) without a MANIFEST, such as a run's "
                     "distillation target log (targets/, read by a replaying student)");
        return RD_APP_PATH_OTHER;
    }
    DIR *d = opendir(path);
    int empty = 1;
    for (struct dirent *e; d && empty && (e = readdir(d)) != NULL;)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    if (d)
        closedir(d);
    snprintf(what, cap, "%s", empty ? "an empty folder" : "a folder without a MANIFEST");
    return RD_APP_PATH_OTHER;
}

int rd_app_wrong_folder(const char *path, int want, const char *expected, char *msg, size_t cap) {
    char what[RD_PATH_MAX * 3];
    int kind = rd_app_path_kind(path, what, sizeof what);
    if (kind == want)
        return 0;
    // The path shortened: a path of several KiB filled msg, and what it is and what was
    // expected were cut off.
    rd_err_path_text p = rd_err_path(path);
    if (kind == RD_APP_PATH_MISSING)
        snprintf(msg, cap, "%s: %s (expected %s)", p.s, what, expected);
    else if (kind == RD_APP_PATH_FILE)
        snprintf(msg, cap, "%s is %s, not a folder (expected %s)", p.s, what, expected);
    else
        snprintf(msg, cap, "%s is %s, not %s", p.s, what, expected);
    return 1;
}

int rd_app_out_not_stdout(const char *prog, const char *opt, const char *out, const char *what) {
    if (!out || strcmp(out, "-") != 0)
        return 0;
    fprintf(stderr, "%s: %s -: %s, not stdout\n", prog, opt, what);
    return 2;
}

// ---------------------------------------------------------------------------------------------
// Standard output, flushed and checked (main, and train's --help)

void rd_app_raise_nofile(void) {
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &nofile); // best effort: the open then says the limit
    }
}

int rd_app_stdout_written(const char *cmd, const char *sub) {
    int e = fflush(stdout) != 0 ? errno : 0;
    if (!e && !ferror(stdout))
        return 0;
    // The subcommand of table and tokens names what printed; an earlier failed flush's errno is
    // gone, so the cause is said only when this flush failed.
    int named = sub && (strcmp(cmd, "table") == 0 || strcmp(cmd, "tokens") == 0);
    fprintf(
        stderr, "recdistill %s%s%s: standard output: write error%s%s%s: the output is incomplete\n",
        cmd, named ? " " : "", named ? sub : "", e ? " (" : "", e ? strerror(e) : "", e ? ")" : "");
    return 1;
}

void rd_app_config_warnings(const char *cmd, const rd_config *cfg) {
    char buf[4096];
    if (rd_config_warnings(cfg, buf, sizeof buf) == 0)
        return;
    for (char *line = buf, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) { // cut at the buffer's end
            fprintf(stderr, "recdistill %s: warning: %s: %s...\n", cmd, cfg->source_path, line);
            break;
        }
        fprintf(stderr, "recdistill %s: warning: %s: %.*s\n", cmd, cfg->source_path,
                (int)(nl - line), line);
    }
}
