// rd/error.h — status codes, error detail buffers and always-on assertions.
//
// Defines:
//   rd_status          negative error codes (RD_OK = 0), X-macro table RD_STATUS_MAP
//   rd_strerror()      code -> static text
//   rd_errbuf          caller-owned buffer holding one detailed message ("file:line:col: ...")
//   rd_err_set()       fill an rd_errbuf and return the code (for `return rd_err_set(...)`)
//   rd_err_path()      a path shortened for a message (head ... tail), so its cause fits
//   RD_ARG_CHECK(eb, c) a public function's argument check: RD_ERR_ARG naming the function
//   RD_ASSERT(c)       broken invariant: prints rank, file:line and aborts the whole MPI job
//   RD_MPI_CHECK(call) every MPI call goes through it; failure aborts the job
//   RD_RESTRICT        `restrict` of a prototype, spelled for C and for C++
//
// Three tiers (STYLE.md 4): recoverable failures return rd_status and describe themselves in an
// rd_errbuf; broken invariants assert; out-of-memory and MPI errors abort.
#ifndef RD_ERROR_H
#define RD_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RD_STATUS_MAP(X)                                                                           \
    X(OK, 0, "success")                                                                            \
    X(ERR_NOMEM, -1, "out of memory")                                                              \
    X(ERR_IO, -2, "I/O error")                                                                     \
    X(ERR_CONFIG, -3, "invalid configuration")                                                     \
    X(ERR_PARSE, -4, "malformed input")                                                            \
    X(ERR_SCHEMA, -5, "schema mismatch")                                                           \
    X(ERR_CORRUPT, -6, "corrupted data (bad magic or checksum)")                                   \
    X(ERR_VERSION, -7, "unsupported version or layout")                                            \
    X(ERR_ARG, -8, "invalid argument")                                                             \
    X(ERR_RANGE, -9, "value out of range")                                                         \
    X(ERR_NOTFOUND, -10, "not found")                                                              \
    X(ERR_EXISTS, -11, "already exists")                                                           \
    X(ERR_LMDB, -12, "LMDB error")                                                                 \
    X(ERR_MPI, -13, "MPI error")                                                                   \
    X(ERR_PROTO, -14, "malformed message")                                                         \
    X(ERR_FULL, -15, "no space left")                                                              \
    X(ERR_TIMEOUT, -16, "timed out")                                                               \
    X(ERR_UNSUPPORTED, -17, "unsupported operation")                                               \
    X(ERR_STATE, -18, "invalid state")                                                             \
    X(ERR_EMPTY, -19, "empty input")                                                               \
    X(ERR_DIVERGED, -20, "training diverged (NaN or inf)")                                         \
    X(ERR_REPORTED, -21, "failed; another rank reported why")

typedef enum rd_status {
#define RD__STATUS_ENUM(name, code, text) RD_##name = code,
    RD_STATUS_MAP(RD__STATUS_ENUM)
#undef RD__STATUS_ENUM
} rd_status;

/** @return static, never-NULL text for a status code (unknown codes give "unknown error"). */
const char *rd_strerror(int status);

/** A detailed error message. Callers own it (usually on the stack); callees fill it on failure.
 *  Functions taking `rd_errbuf *eb` accept NULL (detail discarded). */
/** Bytes of an error message (incl. NUL): room for two paths of RD_PATH_MAX and their context. */
#define RD_ERR_MSG_MAX 4096

typedef struct rd_errbuf {
    int code;                 // the rd_status that was set, RD_OK if none
    char msg[RD_ERR_MSG_MAX]; // "what: where: why", NUL-terminated
} rd_errbuf;

/** Clear an error buffer. */
void rd_errbuf_clear(rd_errbuf *eb);

#if defined(__GNUC__)
#define RD_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define RD_NORETURN                 __attribute__((noreturn))
#else
#define RD_PRINTF(fmt_idx, arg_idx)
#define RD_NORETURN
#endif

// `restrict` in a public prototype: C++ has no such keyword (g++ and clang++ spell it __restrict).
// In C it stays `restrict`, so a C caller gets the same prototype and -Wrestrict checks as before.
#if !defined(__cplusplus)
#define RD_RESTRICT restrict
#elif defined(__GNUC__)
#define RD_RESTRICT __restrict
#else
#define RD_RESTRICT
#endif

/** Set `eb` (if not NULL) to code + formatted message. Keeps the first error if one is already set.
 *  @return code, so that `return rd_err_set(eb, RD_ERR_IO, "...")` reads naturally. */
int rd_err_set(rd_errbuf *eb, int code, const char *fmt, ...) RD_PRINTF(3, 4);

/** At the top of a public function returning rd_status: when `cond` is false (a NULL handle,
 *  path or output, an index out of range) return RD_ERR_ARG with "FUNCTION: invalid argument:
 *  COND" in eb. A caller's mistake is an error it can report, where RD_ASSERT would abort every
 *  rank of the job (or a whole serving process); RD_ASSERT stays for this module's own
 *  invariants. */
#define RD_ARG_CHECK(eb, cond)                                                                     \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return rd_err_set((eb), RD_ERR_ARG, "%s: invalid argument: %s", __func__, #cond);      \
    } while (0)

/** A message longer than RD_ERR_MSG_MAX - 1 bytes (a path of several KiB) keeps its first
 *  bytes and its last RD_ERR_TAIL_KEPT, with "...[N bytes cut]..." between: the cause comes
 *  last ("PATH: path too long"), and a plain cut at 4 KiB left a message of the path alone. */
#define RD_ERR_TAIL_KEPT 512

/** Longest path shown whole by rd_err_path; a longer one is its first RD_ERR_PATH_HEAD bytes,
 *  "...", and its last RD_ERR_PATH_TAIL bytes. */
#define RD_ERR_PATH_HEAD  200
#define RD_ERR_PATH_TAIL  60
#define RD_ERR_PATH_WHOLE 300

typedef struct rd_err_path_text {
    char s[RD_ERR_PATH_WHOLE + 32]; // NUL-terminated
} rd_err_path_text;

/** `path` as an error message shows it: whole when at most RD_ERR_PATH_WHOLE bytes, else its
 *  first RD_ERR_PATH_HEAD bytes, "...(N bytes)...", and its last RD_ERR_PATH_TAIL bytes (the
 *  start says where, the end names the file), so that a path of several KiB leaves room for
 *  the cause. Use as `rd_err_set(eb, c, "%s: cannot open: %s", rd_err_path(p).s, ...)`: the
 *  returned value lives until the end of the full expression (C11 6.2.4p8). NULL shows "(null)". */
rd_err_path_text rd_err_path(const char *path);

/** Prefix an existing message with more context ("while loading X: " + old message). */
void rd_err_prefix(rd_errbuf *eb, const char *fmt, ...) RD_PRINTF(2, 3);

/** Print a fatal message with rank and location, then MPI_Abort (or abort() without MPI). */
RD_NORETURN void rd__fatal(const char *file, int line, const char *fmt, ...) RD_PRINTF(3, 4);

/** End the launch after a fatal error already printed: MPI_Abort on COMM_WORLD when MPI is
 *  initialised (after a short pause that lets the launcher forward stderr), else abort(). A
 *  watchdog alarm of RD_ABORT_WATCHDOG_S seconds is armed first, so the rank dies by SIGALRM if
 *  MPI_Abort hangs. */
RD_NORETURN void rd_abort_launch(void);
/** rd_abort_launch with exit status `status` (1..255) for MPI_Abort, as mpiexec then exits. */
RD_NORETURN void rd_abort_launch_status(int status);

#define RD_ABORT_WATCHDOG_S 20u

/** Reset SIGALRM to its default action, unblock it and arm alarm(seconds). Internal to
 *  rd_abort_launch; public for its test. */
void rd__abort_watchdog(unsigned seconds);

/** Always on, also in release builds. */
#define RD_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            rd__fatal(__FILE__, __LINE__, "assertion failed: %s", #cond);                          \
    } while (0)

#define RD_ASSERT_MSG(cond, ...)                                                                   \
    do {                                                                                           \
        if (!(cond))                                                                               \
            rd__fatal(__FILE__, __LINE__, __VA_ARGS__);                                            \
    } while (0)

/** Abort the job on any MPI error, with the MPI error string. */
#define RD_MPI_CHECK(call)                                                                         \
    do {                                                                                           \
        int rd__mpi_rc = (call);                                                                   \
        if (rd__mpi_rc != 0)                                                                       \
            rd__mpi_fail(__FILE__, __LINE__, #call, rd__mpi_rc);                                   \
    } while (0)

RD_NORETURN void rd__mpi_fail(const char *file, int line, const char *call, int rc);

#ifdef __cplusplus
}
#endif
#endif // RD_ERROR_H
