// commands.h — the subcommands of `recdistill`. Each lives in cmd_<name>.c and is registered in
// the table of main.c. A command returns the process exit code (0 ok, 1 failure, 2 usage error)
// and prints its own --help.
#ifndef RD_APP_COMMANDS_H
#define RD_APP_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

typedef struct rd_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); // argv[0] is the command name
} rd_command;

int rd_cmd_prepare(int argc, char **argv);
int rd_cmd_config(int argc, char **argv);
int rd_cmd_train(int argc, char **argv);
int rd_cmd_table(int argc, char **argv);
int rd_cmd_export(int argc, char **argv);
int rd_cmd_score(int argc, char **argv);
int rd_cmd_tokens(int argc, char **argv);
int rd_cmd_scale_model(int argc, char **argv);
int rd_cmd_plot(int argc, char **argv);

struct rd_plot;
struct rd_errbuf;
/** Write a plot as rd_plot_write_png does, making the missing parent folders of `path` first and
 *  removing them again when the PNG cannot be written (plot and scale-model --out). */
int rd_app_write_png(struct rd_plot *p, const char *path, struct rd_errbuf *eb);

/** How an option of rd_app_parse takes its value. */
typedef enum rd_app_opt_kind {
    RD_APP_FLAG = 0, // no value (--per-shard)
    RD_APP_STRING,   // the next argument, which must not be an option ("-" alone is a value)
    RD_APP_NUMBER,   // the next argument, which may also be a negative number (--before -5)
    RD_APP_TEXT,     // as STRING, and may be empty (a plot's --title ''); no other kind may
    RD_APP_REPEAT,   // as STRING, and may be given again (--set A=1 --set B=2): value is the
                     // last one; rd_app_values lists them all
} rd_app_opt_kind;

/** One option of a command. The command converts and range-checks the value itself. */
typedef struct rd_app_opt {
    const char *name;  // "--out"
    int kind;          // rd_app_opt_kind
    const char *value; // set by rd_app_parse: the value (a flag: its name); NULL if not given
} rd_app_opt;

/**
 * Parse argv[first..argc): the options of `opts` anywhere, the other arguments (at most
 * max_pos) into pos in order. A usage error prints one line "<prog>: ..." on stderr naming the
 * argument: an unknown option, an option given twice ("--out given twice"), an option without
 * its value or followed by another option ("--out needs a value, not the option '-h'"), one
 * positional argument too many.
 * @param[in,out] opts  every value reset, then set for the options given
 * @param[out] pos      borrowed pointers into argv
 * @return 0 parsed; 1 -h or --help given as an option (print the help, exit 0); 2 usage error
 */
int rd_app_parse(const char *prog,
                 int argc,
                 char **argv,
                 int first,
                 rd_app_opt *opts,
                 int n_opts,
                 const char **pos,
                 int max_pos,
                 int *n_pos);

/** The values of a repeatable option `name` (RD_APP_REPEAT) in argv[first..argc), in order, after
 *  rd_app_parse accepted argv (so each occurrence in an option position is followed by its value).
 *  @return how many (at most cap are stored), or -1 when there are more than cap */
int rd_app_values(int argc, char **argv, int first, const char *name, const char **out, int cap);

/** The --set values of argv (rd_app_values, at most RD_CONFIG_MAX_SETS of config.h, into sets,
 *  which has that many entries) for a command that does not run under MPI: their count, or -1
 *  after printing "<prog>: --set given more than N times" on stderr. */
int rd_app_sets(const char *prog, int argc, char **argv, const char **sets);

/** The --help lines of --set, shared by the commands that read a CONFIG. */
#define RD_APP_SET_HELP                                                                            \
    "  --set PATH=VALUE  override one key of CONFIG (repeatable, applied in order):\n"             \
    "              PATH a dotted key path (train.lr, models.teacher.seq.kind,\n"                   \
    "              ps.tables.t_item.dim: list entries by name or index), VALUE YAML\n"             \
    "              (0.01, din, '[64, 32]', '{kind: mean, length: 16}'), replacing what\n"          \
    "              the file has there\n"

/** rd_app_parse without printing: a usage error's line (without "<prog>: ") goes into msg. For
 *  commands that run under MPI, whose ranks must first agree (rd_app_agree). */
int rd_app_parse_msg(int argc,
                     char **argv,
                     int first,
                     rd_app_opt *opts,
                     int n_opts,
                     const char **pos,
                     int max_pos,
                     int *n_pos,
                     char *msg,
                     size_t cap);

/** This binary's build identity (app/build_id.c): one line, "recdistill 0.1.0 src=<digest>
 *  wire=1 ... fp=ieee abi=le64". Two ranks of a launch must have the same (rd_app_agree). A
 *  static string. */
const char *rd_app_build_id(void);

/** This process's run-time identity (app/build_id.c): the shared libraries it runs on, one line
 *  of space-separated key=value fields, values without spaces: "mpi=MPICH-4.0.2/ch4:ucx
 *  openblas=0.3.21 blas_core=Zen blas_config=OpenBLAS_0.3.21_DYNAMIC_ARCH_... libc=glibc-2.36
 *  lmdb=0.9.24 yaml=0.2.5" ("unknown" for a value that cannot be had). Ranks of one build may
 *  differ here (rd_app_agree warns: their floats may round differently). The environment
 *  variable RD_TEST_RUNTIME_SUFFIX, for tests only, appends " test=VALUE". Computed on the first
 *  call (before or after MPI_Init); a static string. */
const char *rd_app_runtime_id(void);
#define RD_APP_RUNTIME_MAX 512 // bytes of rd_app_runtime_id(), its NUL included, at most

/** One argument every rank of a launch must agree on (rd_app_agree). */
typedef struct rd_app_arg {
    const char *name;  // "--out", "CONFIG (file content)"
    const char *shown; // the value as the message shows it ("(not given)" when absent)
    uint64_t hash;     // equal on two ranks iff they agree
} rd_app_arg;

#define RD_APP_AGREE_MAX 6
enum {
    RD_APP_AGREE_OK = 0,       // go on
    RD_APP_AGREE_HELP = 1,     // every rank asked for --help: rank 0 prints it, exit 0
    RD_APP_AGREE_USAGE = 2,    // a usage error on some rank (printed): exit 2
    RD_APP_AGREE_MISMATCH = 3, // the ranks' arguments differ (printed): exit 2
};

/**
 * Collective over MPI_COMM_WORLD, after MPI_Init, for commands run under mpiexec: every rank
 * gives its parse outcome (0 ok, 1 --help, 2 usage error with msg) and, when ok, up to
 * RD_APP_AGREE_MAX arguments; world rank 0 prints every distinct usage error once naming the ranks
 * (and mpiexec segments) that have it, or every argument that differs with each group of ranks
 * and its value; every rank returns the same verdict (RD_APP_AGREE_*). So a usage error on one
 * segment of an MPMD launch ends the whole launch instead of leaving the others in MPI_Init.
 * Before the arguments, every rank's build identity (rd_app_build_id), host and executable path
 * are gathered: ranks that run different builds (an MPMD segment or a node with its own install)
 * end with RD_APP_AGREE_MISMATCH on every rank, world rank 0 naming each build and its ranks,
 * segments, hosts and paths. That first exchange has a frozen layout (args.c, hello_rec), so two
 * builds can always reach the verdict together, a build from before the check included.
 * When the verdict is RD_APP_AGREE_OK, the ranks' run-time identities (rd_app_runtime_id) are
 * compared too: when they differ, world rank 0 prints one warning naming the fields that differ
 * and each run-time line with its ranks and hosts, and the launch goes on.
 * @param[out] runtime_mixed  (may be NULL) 1 on every rank when the ranks' run-time identities
 *                            differ, else 0 (also when the verdict is not RD_APP_AGREE_OK)
 */
int rd_app_agree(const char *prog,
                 int status,
                 const char *msg,
                 const rd_app_arg *args,
                 int n_args,
                 int *runtime_mixed);

/**
 * rd_app_agree for values that are not arguments (a rank's working directory): collective over
 * MPI_COMM_WORLD; when some of args differ between ranks, world rank 0 prints "<prog>: <header>:"
 * and, for each one that differs, the groups of ranks (and mpiexec segments) with their values.
 * @return RD_APP_AGREE_OK, or RD_APP_AGREE_MISMATCH on every rank.
 */
int rd_app_agree_values(const char *prog, const char *header, const rd_app_arg *args, int n_args);

/**
 * Refuse options the subcommand does not take: every option of `opts` given on the command line
 * must be named in `taken` (space-separated, "--before --user"; "" = none). Without this, options
 * of a sibling subcommand parse (they share one table) and are silently ignored: `tokens gc
 * --user-id U` deleted every user's records.
 * @return 0 all taken; 2 usage error, after one line "<prog>: <option> is not an option of <sub>
 *         (it takes: ...)" on stderr
 */
int rd_app_only(
    const char *prog, const char *sub, const rd_app_opt *opts, int n_opts, const char *taken);

/** A subcommand of a command that has them (`table`, `tokens`): its name and the options it
 *  takes, for rd_app_only (space-separated, "--table --out"; "" = none). */
typedef struct rd_app_sub {
    const char *name;
    const char *taken;
} rd_app_sub;

/**
 * The entry of `subs` named `cmd`.
 * @return it; NULL after "<prog>: unknown command '<cmd>'" and an empty line on stderr (the
 *         caller prints its usage and exits 2)
 */
const rd_app_sub *
rd_app_sub_find(const char *prog, const rd_app_sub *subs, size_t n_subs, const char *cmd);

/** What rd_app_path_kind found at a path. */
enum {
    RD_APP_PATH_MISSING = 0, // no such path (or stat failed: what = its strerror)
    RD_APP_PATH_FILE,        // not a folder
    RD_APP_PATH_TABLE_CKPT,  // MANIFEST + shard-NNNNN/ (rd/checkpoint.h)
    RD_APP_PATH_TOKEN_STORE, // MANIFEST + shard-NNNN/ (rd/tokens.h)
    RD_APP_PATH_DATASET,     // events.bin of `recdistill prepare` (rd/dataset.h)
    RD_APP_PATH_OTHER,       // any other folder
};

/**
 * What the folder `path` is, from its layout, for the message of a command given the wrong kind
 * of folder: `what` gets a phrase ("an instance-token store (MANIFEST + shard-NNNN/; ...)", "one
 * job's checkpoint folder (...; its newest is P/step-N)", "a run folder of `recdistill train`
 * (its checkpoints: ...)", "a dataset folder ...", "an empty folder"; for a missing path its
 * strerror). @return RD_APP_PATH_*
 */
int rd_app_path_kind(const char *path, char *what, size_t cap);

/**
 * When `path` is not of kind `want` (RD_APP_PATH_*), one message into msg saying what it is and
 * that `expected` (a phrase: "a table checkpoint, a folder holding ...") was expected.
 * @return 1 msg set; 0 path is of that kind (the reader's own message says what is wrong)
 */
int rd_app_wrong_folder(const char *path, int want, const char *expected, char *msg, size_t cap);

/** "-" names stdout for the text outputs (table export --out -); an output that is a file or a
 *  folder would otherwise be made under the name "-". When out is "-": prints "PROG: OPT -:
 *  WHAT, not stdout" (WHAT: "a PNG is written to a file", "a checkpoint is written to a
 *  folder") and returns 2 (a usage error); else 0. */
int rd_app_out_not_stdout(const char *prog, const char *opt, const char *out, const char *what);

/** Raise the soft limit of open files to the hard one (best effort). A tool that opens every
 *  shard of a checkpoint or token store at once holds one or two descriptors per shard (a token
 *  store's LMDB env: data.mdb and lock.mdb), so thousands of shards pass the usual soft limit of
 *  1024 that the hard limit allows to raise. */
void rd_app_raise_nofile(void);

/** What a command printed went through stdio's buffer: a write that failed there (a full disk,
 *  /dev/full, a closed pipe's reader gone) is found only by flushing, after the command said it
 *  succeeded. Flushes stdout; on a write error (now or earlier) prints "recdistill CMD[ SUB]:
 *  standard output: write error (CAUSE): the output is incomplete" (SUB only for table and
 *  tokens). Also for --help: help sent nowhere is a failure too.
 *  @return 0, or 1 (the output is incomplete, so the command failed) */
int rd_app_stdout_written(const char *cmd, const char *sub);

/** A whole argument as a base-10 integer: 0, or -1 when it is empty, out of range or not digits
 *  alone. The first character must be a digit (for rd_app_parse_i64, '-' and a digit): a
 *  leading blank or '+' is refused, and rd_app_parse_u64 refuses any sign (" -5" used to wrap
 *  to 2^64-5). The caller prints the usage error naming the option and value. */
int rd_app_parse_i64(const char *s, int64_t *v);

/** A time option (table evict --older-than, tokens fetch/gc --before) in unix seconds: an integer
 *  as rd_app_parse_i64 takes it, or an ISO 8601 time as a log's iso8601 time_format reads it
 *  ("2024-03-01", "2024-03-01T12:00:00Z", "2024-03-01 12:00:00+02:00"; no zone = UTC). A
 *  fraction of a second rounds up: times are whole seconds, and every option compares "< T".
 *  @return 0, or -1 (v untouched). */
int rd_app_parse_time(const char *s, int64_t *v);

int rd_app_parse_u64(const char *s, uint64_t *v);

/** A finite decimal number, the whole of `s` ("-0.5", ".25", "1e-3"). Like the integer parsers
 *  it refuses what strtod would skip or take silently: a leading blank or '+', and also
 *  "inf"/"nan" and hex floats ("0x1p3"), which are not what an option's number means.
 *  @return 0, or -1 (v untouched). */
int rd_app_parse_double(const char *s, double *v);

struct rd_config;
/** Print rd_config_warnings of a loaded config to stderr, one line each:
 *  "recdistill <cmd>: warning: <config file>: <what>" (config, and train on rank 0). */
void rd_app_config_warnings(const char *cmd, const struct rd_config *cfg);
#endif
