// bench_args.h — option values of the bench/ programs: the whole argument must be a plain
// decimal number in the option's range, and a bad one is refused naming the option and the range
// ("bench_ps: --zipf: expected a number in 0..100, got '-1'"). Plain decimal: digits, an optional
// fraction and an optional exponent (`1e6`, `2.5e3`; an integer option takes such a value only
// when it is a whole number); no leading space, no `+`, no hex (`0x10`), no `inf`/`nan`, no
// trailing junk (`--events 1e3x` is refused, not read as 1000); a `-` only where the range
// allows negative values (a count is never signed). Also the check that --json PATH can be
// written, made before a benchmark runs (possibly for minutes) rather than after.
//
// Every function prints its message to `err` (NULL: silent, for the MPI ranks other than 0) and
// returns 0 or -1. The conventions of every bench: -h/--help prints the usage on stdout and
// exits 0; a bad option or value prints the reason and the usage on stderr and exits 2.
// Also the helpers every bench's figures use: qsort's comparison of doubles, the median of the
// sorted values (medians and extremes over repetitions) and the calling thread's CPU time.
// An option given twice is refused (bench_once), as `recdistill`'s subcommands refuse it. The
// temporary folder a bench makes for itself is removed however it ends (bench_tmp_own): a
// return, exit(), a signal that would end it (SIGINT, SIGTERM, SIGHUP, SIGABRT, SIGXFSZ), or a
// SIGKILL (a guard process removes it then).
#ifndef RD_BENCH_ARGS_H
#define RD_BENCH_ARGS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/** The options of one command line met so far, for bench_once. */
typedef struct bench_seen {
    const char *name[64];
    int n;
} bench_seen;

/** Option `a` (an argument in an option position) was not given before on this command line: 0;
 *  else -1 after "PROG: OPT given twice" on err (NULL: silent). Every parser took the last
 *  value of an option given twice without a word (`bench_ps --dims 8 ... --dims 64` measured 64
 *  alone), where `recdistill` refuses it (app/args.c). Call it for each option before reading
 *  it; an unknown option is refused at its first appearance, so only known ones are counted. */
static inline int bench_once(bench_seen *s, FILE *err, const char *prog, const char *a) {
    for (int k = 0; k < s->n; k++)
        if (strcmp(s->name[k], a) == 0) {
            if (err)
                fprintf(err, "%s: %s given twice\n", prog, a);
            return -1;
        }
    if (s->n < (int)(sizeof s->name / sizeof s->name[0]))
        s->name[s->n++] = a;
    return 0;
}

// ---- the bench's own temporary folder --------------------------------------------------------

/** The folder bench_tmp_own recorded ("" none) and the process that made it: a child of fork
 *  (bench_prepare's runs) that dies must not remove its parent's folder. */
static char bench_tmp_path[4096];
static pid_t bench_tmp_pid;

/** Remove name (in the folder dfd) and, if it is a folder, everything in it, with calls that
 *  are safe in a signal handler (no malloc, no stdio: openat, getdents64, unlinkat); symbolic
 *  links are removed, never followed. depth bounds the recursion (and the stack: 4 KiB a level). */
static inline void bench_rmtree_at(int dfd, const char *name, int depth) {
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT || depth > 64)
        return;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    // Entries are removed while the folder is read: read it again from the start until a pass
    // finds nothing but "." and "..", as a removal may move the entries not yet read.
    for (int again = 1, pass = 0; again && pass < 1000; pass++) {
        again = 0;
        lseek(fd, 0, SEEK_SET);
        char buf[4096];
        long n;
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
            for (long off = 0; off < n;) {
                // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name
                unsigned short reclen;
                memcpy(&reclen, buf + off + 16, sizeof reclen);
                const char *e = buf + off + 19;
                off += reclen;
                if (strcmp(e, ".") == 0 || strcmp(e, "..") == 0)
                    continue;
                bench_rmtree_at(fd, e, depth + 1);
                again = 1;
            }
    }
    close(fd);
    unlinkat(dfd, name, AT_REMOVEDIR);
}

/** rm -r path (symbolic links removed, never followed). @return 0 when path is gone, -1 when
 *  something is left. bench_tokens and bench_targets ran system("rm -rf '<path>'"): a path with
 *  a quote in it split into other words (a --dir "/w/x'a b'y" removed /w/xa and ./by/store and
 *  left its own store), and a path longer than the command buffer was cut. */
static inline int bench_rmtree(const char *path) {
    struct stat st;
    bench_rmtree_at(AT_FDCWD, path, 0);
    return lstat(path, &st) == 0 ? -1 : 0;
}

// The guard: a child forked when the first folder is recorded, in a session of its own, that
// keeps only its end of a socket pair. The bench writes "P<path>\n" when it records a folder and
// "K\n" when the folder is gone or kept; the kernel closes the bench's end however the bench
// ends, and at that end of file the guard removes the folder it was last told of. It is what
// cleans up after a SIGKILL: mpiexec kills every other rank that way when one rank calls
// MPI_Abort (bench_tokens and bench_targets left their folder behind when a rank other than 0
// failed), and a bench killed by the OOM killer or `kill -9` could not run a handler either.
// The session of its own keeps it out of the process-group kill of the launcher.
static int bench_guard_fd = -1;

static inline void bench_guard_say(char tag, const char *path) {
    if (bench_guard_fd < 0)
        return;
    char line[sizeof bench_tmp_path + 2];
    size_t n = 0;
    line[n++] = tag;
    for (const char *c = path; c && *c && n < sizeof line - 1; c++)
        line[n++] = *c;
    line[n++] = '\n';
    // MSG_NOSIGNAL: a guard killed by hand gives EPIPE here, not a SIGPIPE that ends the bench.
    for (const char *c = line; n > 0;) {
        ssize_t k = send(bench_guard_fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        c += k;
        n -= (size_t)k;
    }
}

// The guard's life: plain system calls only (it may be forked from a threaded MPI process).
static inline void bench_guard_run(int fd) {
    setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    // Nothing else of the bench stays open here: not its output pipes (the launcher waits for
    // them to close), not its MPI sockets, not its LMDB files.
    long max = sysconf(_SC_OPEN_MAX);
    for (long k = 0; k < (max > 0 && max < 65536 ? max : 65536); k++)
        if (k != fd)
            close((int)k);
    static char path[sizeof bench_tmp_path];
    static char line[sizeof bench_tmp_path + 2];
    size_t have = 0, n = 0;
    path[0] = '\0';
    char buf[512];
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        for (ssize_t i = 0; i < k; i++) {
            if (buf[i] != '\n') {
                if (n < sizeof line - 1)
                    line[n++] = buf[i];
                continue;
            }
            line[n] = '\0';
            if (line[0] == 'P' && n > 1) {
                memcpy(path, line + 1, n);
                have = 1;
            } else if (line[0] == 'K') {
                have = 0;
            }
            n = 0;
        }
    }
    if (have)
        bench_rmtree_at(AT_FDCWD, path, 0);
    _exit(0);
}

/** Start the guard (above) once per process; without it (no socket pair, no fork) the folder is
 * still removed at exit and on the signals a handler can catch. */
static inline void bench_guard_start(void) {
    static pid_t started_by;
    if (started_by == getpid())
        return;
    started_by = getpid();
    int p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0)
        return;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        close(p[1]);
        bench_guard_run(p[0]);
    }
    close(p[0]);
    bench_guard_fd = p[1];
}

/** Remove the recorded folder (in the process that made it) and forget it. */
static inline void bench_tmp_remove(void) {
    if (bench_tmp_path[0] && getpid() == bench_tmp_pid) {
        int e = errno;
        bench_rmtree_at(AT_FDCWD, bench_tmp_path, 0);
        bench_guard_say('K', NULL);
        errno = e;
    }
    bench_tmp_path[0] = '\0';
}

static inline void bench_tmp_on_signal(int sig) {
    bench_tmp_remove();
    signal(sig, SIG_DFL); // then end as the signal would have (exit 128 + sig, or a core)
    raise(sig);
}

/** Record path, a folder this process made for its own use, to be removed however the bench
 *  ends: at exit (a return from main, exit() in a failure path) and on SIGINT, SIGTERM,
 *  SIGHUP, SIGABRT (rd_xmalloc, RD_ASSERT) and SIGXFSZ (a file size limit), after which the
 *  signal ends the process as it would have. A signal the bench was started with ignored stays
 *  ignored. bench_serve left its /tmp folder (a dataset, a checkpoint, a bundle) behind on every
 *  failure. One folder per process; a folder asked for by the user (--dir, --out) is never
 *  given here. Removing it at the end of a run is harmless: bench_tmp_remove finds nothing. */
static inline void bench_tmp_own(const char *path) {
    static int registered;
    if (snprintf(bench_tmp_path, sizeof bench_tmp_path, "%s", path) >= (int)sizeof bench_tmp_path) {
        bench_tmp_path[0] = '\0';
        return;
    }
    bench_tmp_pid = getpid();
    bench_guard_start();
    bench_guard_say('P', bench_tmp_path);
    if (registered++)
        return;
    atexit(bench_tmp_remove);
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGABRT, SIGXFSZ};
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = bench_tmp_on_signal;
        sigemptyset(&sa.sa_mask);
        if (sigaction(sigs[k], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            sigaction(sigs[k], &sa, NULL);
    }
}

/** Keep the recorded folder after all (bench_tokens --keep): forget it. */
static inline void bench_tmp_keep(void) {
    if (bench_tmp_path[0] && getpid() == bench_tmp_pid)
        bench_guard_say('K', NULL);
    bench_tmp_path[0] = '\0';
}

/** Make a new folder "$TMPDIR/rd_<name>_XXXXXX" (TMPDIR unset or empty: /tmp) into out and own
 *  it (bench_tmp_own). @return 0, or -1 after a message naming the folder on stderr. */
static inline int bench_tmp_make(const char *prog, const char *name, char *out, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    if (snprintf(out, cap, "%s/rd_%s_XXXXXX", tmp && *tmp ? tmp : "/tmp", name) >= (int)cap) {
        fprintf(stderr, "%s: TMPDIR too long: %s\n", prog, tmp);
        return -1;
    }
    if (!mkdtemp(out)) {
        fprintf(stderr, "%s: cannot make a temporary folder %s: %s\n", prog, out, strerror(errno));
        return -1;
    }
    bench_tmp_own(out);
    return 0;
}

/** path is a folder holding something (0: missing, not a folder, or empty): a run that builds
 *  in it would meet an earlier run's files. */
static inline int bench_dir_used(const char *path) {
    DIR *d = opendir(path);
    int used = 0;
    for (struct dirent *e; d && (e = readdir(d)) && !used;)
        used = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return used;
}

/** This program was started once, not as one of N > 1 processes of mpiexec (PMI_SIZE, MPICH's
 *  hydra and srun; OMPI_COMM_WORLD_SIZE, Open MPI): the benchmarks without MPI ran as N copies
 *  that each printed a table, measured on cores the others were using, and renamed their JSON
 *  over one another's, exit 0. The first process says so; every one returns -1. */
static inline int bench_one_process(FILE *err, const char *prog) {
    static const char *const size_vars[] = {"PMI_SIZE", "OMPI_COMM_WORLD_SIZE"};
    static const char *const rank_vars[] = {"PMI_RANK", "OMPI_COMM_WORLD_RANK"};
    for (int k = 0; k < 2; k++) {
        const char *n = getenv(size_vars[k]), *r = getenv(rank_vars[k]);
        if (!n || atol(n) <= 1)
            continue;
        if (err && (!r || atol(r) == 0))
            fprintf(err,
                    "%s: started as one of %ld processes (%s): it is not an MPI program, and "
                    "the copies would measure each other and write one --json; run it once "
                    "(without mpiexec, or mpiexec -n 1)\n",
                    prog, atol(n), size_vars[k]);
        return -1;
    }
    return 0;
}

/** qsort's comparison of doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/** The median of x[0..n), sorted ascending, n >= 1: the middle value, or the mean of the two
 *  middle values when n is even (as bench_table, bench_dense and bench_tokens take it). x[n / 2]
 *  alone, the upper one, made the "median" of two reps their slower one in bench_window and their
 *  faster one in bench_numfmt. */
static inline double bench_median_sorted(const double *x, size_t n) {
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/** Seconds of the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID): on a shared machine this
 *  leaves out the time the thread waited for a core. */
static inline double bench_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/** Whether v is a plain decimal number: `-`? digits (`.` digits)? ((`e`|`E`) (`+`|`-`)? digits)?,
 *  and nothing else. strtod alone also takes a leading space, `+`, hex (`0x10`), `inf` and `nan`:
 *  `--reps 0x10` ran 16 reps. The `-` is taken only when minus_ok (a range with negative
 *  values). */
static inline int bench_decimal(const char *v, int minus_ok) {
    const char *p = v;
    if (*p == '-' && minus_ok)
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (*p < '0' || *p > '9')
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

/** An integer in lo..hi, plain decimal (bench_decimal), also in exponent form (`1e6`); the value
 *  must be given (v != NULL). */
static inline int bench_int(FILE *err,
                            const char *prog,
                            const char *opt,
                            const char *v,
                            long long lo,
                            long long hi,
                            long long *out) {
    char *end = NULL;
    double x = v && bench_decimal(v, lo < 0) ? strtod(v, &end) : (double)NAN;
    if (!v || !end || *end || !isfinite(x) || x != floor(x) || x < (double)lo || x > (double)hi) {
        if (err)
            fprintf(err, "%s: %s: expected an integer in %lld..%lld, got '%s'\n", prog, opt, lo, hi,
                    v ? v : "(nothing)");
        return -1;
    }
    *out = (long long)x;
    return 0;
}

/** A finite number in lo..hi, plain decimal (bench_decimal); the value must be given
 *  (v != NULL). */
static inline int bench_num(FILE *err,
                            const char *prog,
                            const char *opt,
                            const char *v,
                            double lo,
                            double hi,
                            double *out) {
    char *end = NULL;
    double x = v && bench_decimal(v, lo < 0) ? strtod(v, &end) : (double)NAN;
    if (!v || !end || *end || !isfinite(x) || x < lo || x > hi) {
        if (err)
            fprintf(err, "%s: %s: expected a number in %g..%g, got '%s'\n", prog, opt, lo, hi,
                    v ? v : "(nothing)");
        return -1;
    }
    *out = x;
    return 0;
}

/** A comma list of 1..max_n integers in lo..hi (`--dims 8,16,64`), each as bench_int takes it,
 *  into out[0..*n). An empty entry (`8,,16`, a leading or trailing comma, an empty value) is
 *  refused naming the option: strtok skipped it, and the run measured fewer cases than asked. */
static inline int bench_int_list(FILE *err,
                                 const char *prog,
                                 const char *opt,
                                 const char *v,
                                 long long lo,
                                 long long hi,
                                 int max_n,
                                 long long *out,
                                 int *n) {
    *n = 0;
    for (const char *p = v; p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        if (len == 0) {
            if (err)
                fprintf(err,
                        "%s: %s: an empty entry in '%s' (expected integers in %lld..%lld, "
                        "separated by single commas)\n",
                        prog, opt, v, lo, hi);
            return -1;
        }
        if (*n >= max_n) {
            if (err)
                fprintf(err, "%s: %s: at most %d entries, got '%s'\n", prog, opt, max_n, v);
            return -1;
        }
        if (len >= sizeof item) { // no number in range is this long: refuse it as it is
            if (err)
                fprintf(err, "%s: %s: expected an integer in %lld..%lld, got '%.*s'\n", prog, opt,
                        lo, hi, (int)len, p);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (bench_int(err, prog, opt, item, lo, hi, &out[*n]) != 0)
            return -1;
        (*n)++;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

/** Bytes of physical memory of this machine (sysconf(_SC_PHYS_PAGES) * page size), 0 if unknown. */
static inline unsigned long long bench_phys_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (unsigned long long)pages * (unsigned long long)page : 0;
}

/** The memory a run needs, computed from its options before it starts, fits in the machine's:
 *  else `what` (the options it follows from, "--vocab 1099511627776 (...)") is refused with the
 *  bytes needed and the bytes the machine has. rd_xmalloc aborted (exit 134) only once the run
 *  allocated, or the OOM killer stopped it. An unknown size of memory (0) passes. */
static inline int bench_mem_ok(FILE *err,
                               const char *prog,
                               const char *what,
                               unsigned long long need,
                               unsigned long long phys) {
    if (phys == 0 || need <= phys)
        return 0;
    if (err)
        fprintf(err,
                "%s: %s needs %llu bytes of memory, more than the %llu bytes this machine has\n",
                prog, what, need, phys);
    return -1;
}

/** The file --json PATH names: PATH itself, or where PATH leads when it is a symbolic link (the
 *  JSON is written beside that file and renamed over it: renamed over PATH, it replaced a
 *  results link with a regular file). A dangling link leads to the file it names, made if its
 *  folder exists. @return 0, or -1 with errno set (ELOOP, ENAMETOOLONG, a readlink error). */
static inline int bench_json_target(const char *path, char *out, size_t cap) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode)) {
        if (snprintf(out, cap, "%s", path) >= (int)cap)
            return errno = ENAMETOOLONG, -1;
        return 0;
    }
    char *real = realpath(path, NULL);
    if (real) {
        int n = snprintf(out, cap, "%s", real);
        free(real);
        return n >= (int)cap ? (errno = ENAMETOOLONG, -1) : 0;
    }
    // A dangling link (realpath needs every component to exist): follow it by hand, a relative
    // target from the folder of the link that names it, until a name that is not a link.
    char cur[4096], link[4096];
    if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur)
        return errno = ENAMETOOLONG, -1;
    for (int hop = 0; hop < 40; hop++) {
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) {
            if (snprintf(out, cap, "%s", cur) >= (int)cap)
                return errno = ENAMETOOLONG, -1;
            return 0;
        }
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0)
            return -1;
        link[n] = '\0';
        const char *slash = strrchr(cur, '/');
        if (link[0] == '/' || !slash) {
            memcpy(cur, link, (size_t)n + 1);
        } else {
            size_t dir = (size_t)(slash - cur) + 1; // keep "folder/"
            if (dir + (size_t)n >= sizeof cur)
                return errno = ENAMETOOLONG, -1;
            memcpy(cur + dir, link, (size_t)n + 1);
        }
    }
    return errno = ELOOP, -1;
}

/** --json PATH can be written: if it exists, a regular file we may write; and in its folder we
 *  can create the file bench_json_open writes first, "<path>.tmp.<pid>" (made and removed
 *  again), also when PATH exists: a writable file in a read-only folder passed the check, and
 *  the benchmark failed only after its run. A symbolic link is checked at the file it leads to
 *  (bench_json_target). */
static inline int bench_json_ok(FILE *err, const char *prog, const char *path) {
    struct stat st;
    const char *why = NULL;
    char tmp[4400], target[4096];
    if (bench_json_target(path, target, sizeof target) != 0)
        why = strerror(errno);
    else if (stat(target, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            why = "is a directory";
        else if (!S_ISREG(st.st_mode)) // the JSON is renamed over it: never over a device
            why = "is not a regular file";
        else if (access(path, W_OK) != 0)
            why = strerror(errno);
    }
    if (!why && snprintf(tmp, sizeof tmp, "%s.tmp.%ld", target, (long)getpid()) >= (int)sizeof tmp)
        why = "path too long";
    if (!why) {
        FILE *f = fopen(tmp, "w");
        if (!f)
            why = strerror(errno);
        else {
            fclose(f);
            remove(tmp);
        }
    }
    if (why && err)
        fprintf(err, "%s: --json: cannot write '%s': %s\n", prog, path, why);
    return why ? -1 : 0;
}

/** --json output, written atomically: bench_json_open opens "<target>.tmp.<pid>", target being
 *  path or, for a symbolic link, the file it leads to (bench_json_target); bench_json_commit
 *  flushes and closes it, checking every write, and renames it over target, so a link keeps
 *  pointing where it did. On any failure (a full disk, a file size limit) the temporary file is
 *  removed, path is left as it was, the reason goes to stderr and the benchmark exits 1: never a
 *  cut or empty JSON with exit 0. */
typedef struct bench_json {
    FILE *f;
    const char *path;
    char target[4096];
    char tmp[4400];
} bench_json;

static inline FILE *bench_json_open(bench_json *j, const char *prog, const char *path) {
    j->path = path;
    j->f = NULL;
    if (bench_json_target(path, j->target, sizeof j->target) != 0)
        fprintf(stderr, "%s: --json: cannot write '%s': %s\n", prog, path, strerror(errno));
    else if (snprintf(j->tmp, sizeof j->tmp, "%s.tmp.%ld", j->target, (long)getpid()) >=
             (int)sizeof j->tmp)
        fprintf(stderr, "%s: --json: path too long: %s\n", prog, path);
    else if (!(j->f = fopen(j->tmp, "w")))
        fprintf(stderr, "%s: --json: cannot write '%s': %s\n", prog, j->tmp, strerror(errno));
    return j->f;
}

static inline int bench_json_commit(bench_json *j, const char *prog) {
    int err = 0;
    if (fflush(j->f) != 0 || ferror(j->f))
        err = errno ? errno : EIO;
    if (fclose(j->f) != 0 && !err)
        err = errno ? errno : EIO;
    j->f = NULL;
    if (!err && rename(j->tmp, j->target) != 0)
        err = errno;
    if (!err)
        return 0;
    remove(j->tmp);
    fprintf(stderr, "%s: --json: cannot write '%s': %s (nothing written)\n", prog, j->path,
            strerror(err));
    return -1;
}

#endif
