// cmd_train.c — `mpiexec -n N recdistill train CONFIG [--out DIR] [--seed N]`: the whole
// launch. PS ranks serve the embedding tables; the ranks of every job (teacher, students) train
// their model concurrently on the shared PS (rd/trainer.h); at the end each job's rank 0 prints its
// table and world rank 0 writes <run.out_dir>/report.json (with "comm": bytes and messages per
// channel, rd/traffic.h).
//
// Phases (every rank):
//   0. MPI_Init comes first, whatever the command line: a rank that stopped before it (a usage
//      error on one segment of an MPMD launch) left the other ranks in MPI_Init for ever. Then
//      the ranks agree (rd_app_agree): ranks that run different builds of recdistill (another
//      segment's binary, a node's own install: rd_app_build_id) end every rank with exit 2 and
//      one report by rank 0 naming each build; then a usage error on any rank, or a CONFIG
//      (path or content), --out, --seed or --resume that differs between ranks, ends every rank
//      with exit 2 and one report by rank 0 naming the ranks and mpiexec segments. So rank 0's
//      arguments are every rank's, and each segment of an MPMD launch must be given the same ones.
//   1. rank 0 loads the config; the status, then the config, are broadcast (bad config: rank 0
//      prints one line, every rank exits 1).
//   2. the world size must equal rd_config_world_size (else one message from rank 0, exit 1).
//   3. rank 0 creates run.out_dir and removes an earlier run's results there (report.json, the
//      plot, config.effective.yaml, every <job>.metrics.<csv|jsonl> and <job>.targets.json, also
//      when it resumes): clear_earlier_outputs. When data.dir
//      holds no dataset, it prepares it (else verifies the existing one in full, CRCs included,
//      and that it was prepared from this data config: rd_dataset_check_config); the others wait
//      on a polled broadcast of the status (a failure: every rank exits 1).
//   4. roles: PS ranks rd_ps_serve; workers rd_trainer_create / run / destroy (run waits until
//      every worker is set up and resumed before any job writes an output). A failure on any
//      rank from here on is printed by that rank and ends the launch with MPI_Abort (the other
//      ranks may be inside collectives or the PS loop, which nothing else could interrupt).
//   5. each job's rank 0 sends its rd_trainer_result to world rank 0, which writes every job's
//      metrics and targets files, config.effective.yaml, the plot and, last, report.json (each to
//      a temporary name, then renamed): a launch that fails before its end leaves none of them
//      (run_results), only its checkpoints.
//
// Signals: SIGUSR1 (Slurm's --signal before a time limit, kill -USR1 of mpiexec) asks each job for
// a checkpoint after its next step; training goes on (rd_trainer_request_checkpoint). SIGTERM
// (scancel, Slurm's preemption, a kill of mpiexec), once the roles run, does the same and then
// ends the run (rd_trainer_request_stop, rd_server_request_stop); before that it ends the rank
// as it did.
//
// Exit codes: 0 success, 1 failure (a non-zero exit of mpiexec after MPI_Abort), 2 usage error,
// 143 ended on SIGTERM after every job's checkpoint (or the grace time), the signal having come
// before report.json was written (stop_before_report).
#include "commands.h"

#include "rd/alloc.h"
#include "rd/checkpoint.h"
#include "rd/clock.h"
#include "rd/comm.h"
#include "rd/config.h"
#include "rd/dataset.h"
#include "rd/hash.h"
#include "rd/layers.h"
#include "rd/lmdbx.h"
#include "rd/log.h"
#include "rd/report.h"
#include "rd/server.h"
#include "rd/targets.h"
#include "rd/tokens.h"
#include "rd/traffic.h"
#include "rd/train_ckpt.h"
#include "rd/trainer.h"
#include "rd/watch.h"
#include "rd/writer_lock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { TAG_RESULT = RD_TAG_USER + 1 };

static void train_usage(FILE *out) {
    fprintf(
        out,
        "usage: mpiexec -n N recdistill train CONFIG.yaml [--out DIR] [--seed N] [--resume DIR]\n"
        "                                   [--set PATH=VALUE ...]\n"
        "\n"
        "Train every job of the config concurrently: ranks [0, ps_ranks) serve the embedding\n"
        "tables, then the ranks of cluster.jobs in config order train their models (batch\n"
        "phase, stream windows with progressive validation, holdout). N must equal\n"
        "`recdistill config --layout CONFIG` world_size.\n"
        "\n"
        "  --out DIR   run folder instead of run.out_dir; the paths under run.out_dir move\n"
        "              with it (data.dir, ps.checkpoint_dir, tokens.store_dir, target_log,\n"
        "              default or set there; a replay's log too)\n"
        "  --seed N    run.seed instead of the config's (model and embedding initialisation;\n"
        "              also the synthetic data's seed unless data.synthetic.seed is set, so a\n"
        "              synthetic run with another --seed also trains on other data)\n"
        "  --resume DIR  continue from a checkpoint: a step-N directory of the (single) job, or\n"
        "              a checkpoint root holding <job>/step-N (each job takes its newest; a\n"
        "              teacher and its live students, the newest phase start they all "
        "have)\n" RD_APP_SET_HELP
        "              (before --seed and --out; N is the world size with the overrides:\n"
        "              `recdistill config --layout CONFIG --set ...`)\n"
        "\n"
        "The dataset at data.dir is prepared first when it does not exist. The run folder gets\n"
        "<job>.metrics.<csv|jsonl> (one line per stream window, holdout, warm slice and\n"
        "popularity baseline), <job>.targets.json (jobs that send or receive targets),\n"
        "auc_windows.png (output.plot), the checkpoints, config.effective.yaml (the config\n"
        "as run: overrides, --seed and --out applied, defaults filled in) and report.json.\n"
        "All but the checkpoints are written at the end, report.json last, and only by a run\n"
        "that succeeds: a launch that fails or ends on SIGTERM leaves none of them (an earlier\n"
        "run's are removed at the start), only its checkpoints for --resume.\n"
        "\n"
        "Signals (to every rank, as Slurm and mpiexec send them): SIGUSR1 asks every job for a\n"
        "checkpoint after its next step, and training goes on. SIGTERM (scancel, preemption)\n"
        "does the same, then ends the run once every job has one (at most RD_STOP_GRACE_S\n"
        "seconds, default 20, after the signal): resume it with --resume.\n"
        "\n"
        "exit status: 0 ok, 1 failure on any rank (message on stderr), 2 usage error (a\n"
        "launch of another N included), 143 ended on SIGTERM (one before report.json is\n"
        "written)\n");
}

static void bcast_polled(void *buf, int count, MPI_Datatype dt, MPI_Comm c, int poll_us) {
    MPI_Request r;
    RD_MPI_CHECK(MPI_Ibcast(buf, count, dt, 0, c, &r));
    rd_comm_wait(&r, poll_us);
}

RD_NORETURN static void die(const rd_comm *comm, const char *what, const rd_errbuf *eb, int rc) {
    if (rc == RD_ERR_REPORTED) {
        // Another rank reports the failure (rd_trainer_agree) and ends the launch: its
        // MPI_Abort ends this rank too, without a second copy of its message or of MPICH's abort
        // line. Should it not come, this rank ends the launch itself after the wait.
        rd__watch_failing(); // an end the reporting rank explains: not a death
        struct timespec ts = {5, 0};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        rd_abort_launch();
    }
    fprintf(stderr, "recdistill train: rank %d: %s: %s\n", comm ? comm->rank : 0, what,
            eb && eb->msg[0] ? eb->msg : rd_strerror(rc));
    fflush(stderr);
    rd_abort_launch(); // the message above explains the end: the sentinel must not call it a death
}

// A test hook's milliseconds from the environment (tests/scripts/fin_wait.sh): 0 when unset;
// a value that is not a whole number of 1 .. 3600000 ms is ignored with a warning (rank 0).
static int test_hook_ms(const char *name, int rank) {
    const char *v = getenv(name);
    if (!v || !v[0])
        return 0;
    char *end = NULL;
    errno = 0;
    long ms = strtol(v, &end, 10);
    if (errno || *end || ms < 1 || ms > 3600000) {
        if (rank == 0)
            fprintf(stderr,
                    "recdistill train: warning: %s='%.40s' ignored (a test hook: whole "
                    "milliseconds, 1..3600000)\n",
                    name, v);
        return 0;
    }
    return (int)ms;
}

// Tell this rank's sentinel who we are, the launch-wide token of its marker file (rank 0's host,
// pid and start time, broadcast) and the freeze timeout.
static void identify(rd_watch *watch, const rd_comm *comm, const rd_config *cfg) {
    char token[96] = "";
    if (comm->rank == 0) {
        char host[48] = "";
        gethostname(host, sizeof host - 1);
        snprintf(token, sizeof token, "%s-%ld-%lld", host, (long)getpid(), (long long)time(NULL));
    }
    RD_MPI_CHECK(MPI_Bcast(token, (int)sizeof token, MPI_CHAR, 0, comm->world));
    char who[256];
    if (comm->role_kind == RD_ROLE_PS) {
        snprintf(who, sizeof who, "rank %d (role ps: parameter-server shard %d of %d)", comm->rank,
                 comm->ps_index, comm->n_ps);
    } else {
        const rd_job_config *j = &cfg->cluster.jobs[comm->job_index];
        snprintf(who, sizeof who, "rank %d (role %s: job '%s' rank %d of %d)", comm->rank,
                 j->role == RD_JOB_TEACHER ? "teacher" : "student", j->name, comm->job_rank,
                 comm->job_size);
    }
    rd_watch_identify(watch, who, token);
    // From here on a frozen rank (stopped, or stuck in the kernel) ends the launch, naming itself,
    // instead of holding every rank that waits on it until the time limit.
    rd_watch_freeze(watch, cfg->cluster.freeze_timeout_s);
}

// The first folder of `path` (itself or a parent) that does not exist yet into `first` ("" when
// the whole path exists): what a failed launch may remove again (rmdir_made).
static void first_missing(const char *path, char *first, size_t cap) {
    char buf[RD_PATH_MAX];
    first[0] = 0;
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf || access(buf, F_OK) == 0)
        return;
    snprintf(first, cap, "%s", buf);
    for (char *p = buf + strlen(buf); p > buf; p--) {
        if (*p != '/')
            continue;
        *p = 0;
        if (buf[0] == 0 || access(buf, F_OK) == 0)
            break;
        snprintf(first, cap, "%s", buf);
    }
}

// A launch that failed before training removes the run folder (and its parents) it created, as
// long as they are empty: no empty run folder is left behind. Folders that existed stay.
static void rmdir_made(const char *path, const char *first) {
    if (!first[0])
        return;
    char buf[RD_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    size_t stop = strlen(first);
    for (;;) {
        if (rmdir(buf) != 0 || strlen(buf) <= stop)
            return;
        char *slash = strrchr(buf, '/');
        if (!slash)
            return;
        *slash = 0;
    }
}

// mkdir -p `path`, each folder made synced in its parent (rd_lmdbx_mkdir_p): its message,
// "mkdir <the folder>: <why>", in msg.
static int mkdir_p(const char *path, char *msg, size_t cap) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_lmdbx_mkdir_p(path, &eb);
    if (rc != RD_OK)
        snprintf(msg, cap, "%s", eb.msg);
    return rc;
}

// Can the run make `path` (a folder) and write in it? Probed on the deepest folder that exists on
// the way to it (`path` itself when it exists), by creating and removing a file there, so that a
// read-only mount, a full quota or another owner's folder fails the launch now rather than at its
// first checkpoint or metrics write, after the whole training; nothing is left. An entry on the
// way that is not a folder (`--out F` with F a regular file) is said as such. `what` names the
// folder in the message ("run folder"). 0, or -1 with the message in msg.
// A CSV log or side table that is a stream (data.schema.path /dev/stdin, a pipe, a FIFO, a
// device): `recdistill prepare` reads one, but train cannot. Under mpiexec standard input goes to
// rank 0 only, and hydra ends the whole launch ("process reading stdin too slowly") when it is not
// read at once. Refused before anything is made, with the way that works. 0 = none.
static int stream_input(const rd_config *cfg, char *msg, size_t cap) {
    if (cfg->data.source != RD_DATA_CSV)
        return 0;
    const rd_schema_config *sc = &cfg->data.schema;
    for (int i = -1; i < sc->n_side; i++) {
        const char *p = i < 0 ? sc->path : sc->side[i].path;
        char full[2 * RD_PATH_MAX + 2];
        if (p[0] == '/' || !cfg->data.input[0])
            snprintf(full, sizeof full, "%s", p);
        else
            snprintf(full, sizeof full, "%s/%s", cfg->data.input, p);
        struct stat st;
        if (stat(full, &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
            continue; // a missing file or a pattern is prepare's to name
        snprintf(msg, cap,
                 "%s (%s) is a stream (a pipe, FIFO or device), which train cannot read (mpiexec "
                 "gives standard input to rank 0 only): prepare the dataset from it first, e.g. "
                 "`zcat LOG.gz | recdistill prepare CONFIG --out DIR`, then train with --set "
                 "data.dir=DIR",
                 i < 0 ? "data.schema.path" : "data.schema.side[].path", full);
        return 1;
    }
    return 0;
}

static int probe_folder(const char *what, const char *path, char *msg, size_t cap) {
    char dir[RD_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    struct stat st;
    while (stat(dir, &st) != 0) {
        char *s = strrchr(dir, '/');
        if ((errno != ENOENT && errno != ENOTDIR) || strcmp(dir, ".") == 0 ||
            strcmp(dir, "/") == 0) {
            snprintf(msg, cap, "%s %s: %s: %s", what, path, dir, strerror(errno));
            return -1;
        }
        if (!s)
            snprintf(dir, sizeof dir, ".");
        else if (s == dir)
            s[1] = '\0';
        else
            *s = '\0';
    }
    if (!S_ISDIR(st.st_mode)) {
        if (strcmp(dir, path) == 0)
            snprintf(msg, cap, "%s %s is not a folder", what, path);
        else
            snprintf(msg, cap, "%s %s: %s is not a folder", what, path, dir);
        return -1;
    }
    char probe[RD_PATH_MAX + 64];
    snprintf(probe, sizeof probe, "%s/.recdistill-probe.%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(msg, cap, "%s %s: cannot write in folder %s: %s", what, path, dir,
                 strerror(errno));
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

// 1 if this launch creates or appends to distill.target_log: a live teacher with a distilled
// student (a replay only reads it).
static int writes_target_log(const rd_config *cfg) {
    if (cfg->distill.replay || !cfg->distill.target_log[0])
        return 0;
    for (int i = 0; i < cfg->cluster.n_jobs; i++)
        if (cfg->cluster.jobs[i].role == RD_JOB_STUDENT && cfg->cluster.jobs[i].distill &&
            rd_config_find_job(cfg, cfg->cluster.jobs[i].teacher))
            return 1;
    return 0;
}

// The run's folders: the run folder, data.dir, ps.checkpoint_dir, distill.target_log (written, or
// read by a replay) and tokens.store_dir (IAT). No two of the last four may be one folder (each
// has its writer lock file or its own contents), and nothing may lie inside the dataset's
// folder, the target log's or the store's, which hold only what the program puts there (the run
// folder and the checkpoint folder may hold the others, as the run folder does by default). Such
// layouts were refused late and wrongly: "in use by another writer" (the launch's own lock),
// "not a dataset folder (it holds 'writer.lock'); remove it", a store "not empty but has no
// MANIFEST", a log folder that "holds other files" after the dataset was prepared. Compared by
// real path, before anything is made. 0, or -1 with the message in msg.
static int folders_distinct(const rd_config *cfg, char *msg, size_t cap) {
    const struct {
        const char *key, *path;
        int used, sole; // sole: holds nothing of another
    } f[] = {
        {"the run folder", cfg->run.out_dir, 1, 0},
        {"data.dir", cfg->data.dir, 1, 1},
        {"ps.checkpoint_dir", cfg->ps.checkpoint_dir, 1, 0},
        {"distill.target_log", cfg->distill.target_log,
         writes_target_log(cfg) || cfg->distill.replay, 1},
        {"tokens.store_dir", cfg->tokens.store_dir, rd_config_token_job(cfg) >= 0, 1},
    };
    const size_t n = sizeof f / sizeof f[0];
    for (size_t j = 1; j < n; j++)
        for (size_t i = 0; i < j; i++) {
            if (!f[i].used || !f[j].used || !f[i].path[0] || !f[j].path[0])
                continue;
            // j is i or inside it; i is j or inside it (both: one folder).
            rd_errbuf ej, ei;
            rd_errbuf_clear(&ej);
            rd_errbuf_clear(&ei);
            int j_in = rd_lmdbx_check_out_not_input(f[j].key, f[j].path, f[i].key, f[i].path,
                                                    &ej) != RD_OK;
            int i_in = rd_lmdbx_check_out_not_input(f[i].key, f[i].path, f[j].key, f[j].path,
                                                    &ei) != RD_OK;
            const char *m = NULL;
            if (i_in && j_in) // one folder: only the run folder may be the checkpoint folder
                m = i > 0 ? ej.msg : f[j].sole ? ei.msg : NULL;
            else if (i_in && f[j].sole)
                m = ei.msg;
            else if (j_in && f[i].sole)
                m = ej.msg;
            if (m) {
                snprintf(msg, cap, "%.2048s; give %s a folder of its own", m, f[j].key);
                return -1;
            }
        }
    return 0;
}

// The writer locks rank 0 took (run_folder_ready, target_log_ready): a failed launch removes only
// lock files it holds (remove_made).
static int g_run_locked, g_log_locked;
static int g_store_existed;              // token_store_ready found a MANIFEST
static int g_store_locked, g_store_made; // it took the store's lock; token_store_bind made it
static int g_ckpt_locked;                // it took the lock of a checkpoint folder outside

// Who this launch is, in a writer lock file: "recdistill train, run folder D".
static void writer_name(const rd_config *cfg, char *buf, size_t cap) {
    snprintf(buf, cap, "recdistill train, run folder %.200s", cfg->run.out_dir);
}

// The launch is the one writer of distill.target_log (rd_target_log_lock, by rank 0): a second
// launch writing the log would drop this one's targets as "an earlier run" and mix its own in.
// Taken in phase 3 before an earlier run's outputs are removed (a launch refused here removes
// nothing). The lock is
// never released by hand: it lasts as long as rank 0, which is the whole launch, and the kernel
// drops it when the process ends however it ends (so a crashed launch leaves no stale lock).
static int target_log_ready(const rd_config *cfg, char *msg, size_t cap) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char who[256];
    writer_name(cfg, who, sizeof who);
    int fd = -1;
    int rc = rd_target_log_lock(cfg->distill.target_log, who, &fd, &eb);
    g_log_locked = rc == RD_OK;
    if (rc != RD_OK) {
        int k = snprintf(msg, cap, "distill.target_log: %s", eb.msg[0] ? eb.msg : rd_strerror(rc));
        if (k < 0 || (size_t)k >= cap)
            msg[cap - 1] = 0;
    }
    return rc;
}

// msg = "token store DIR: " + the message (unless it names the store already).
static void store_msg(const rd_config *cfg, const rd_errbuf *eb, int rc, char *msg, size_t cap) {
    const char *m = eb->msg[0] ? eb->msg : rd_strerror(rc);
    int named = strncmp(m, "token store ", 12) == 0;
    int k = snprintf(msg, cap, "%s%s%s%s", named ? "" : "token store ",
                     named ? "" : cfg->tokens.store_dir, named ? "" : ": ", m);
    if (k < 0 || (size_t)k >= cap) // cut: keep what fits
        msg[cap - 1] = 0;
}

// IAT: the run's token store exists with the config's layout before the PS ranks open their
// shards. A new store gets one shard per PS rank; an existing one (shared with other runs) must
// have tokens.dim and tokens.dtype, as many side values as tokens.side names, and a shard count
// that is a multiple of the PS ranks. The launch is the store's one writer: rank 0 takes the
// store's writer lock (rd_token_store_lock) before it looks for the MANIFEST, so a concurrent
// launch (or tokens gc / compact) is refused naming the holder, and the check-then-create of a
// new store cannot race another creator. The lock is kept, as target_log_ready's, until rank 0
// ends (released by the kernel however the launch ends); it is released here only on failure.
// It is one of the start-up checks: nothing is removed or prepared before it (a refusal after
// them lost the earlier run's report and left a prepared dataset). The new store is made, and
// bound to the dataset, by token_store_bind after the prepare.
static int token_store_ready(const rd_config *cfg, int *lock_out, char *msg, size_t cap) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    const char *dir = cfg->tokens.store_dir;
    char who[256];
    writer_name(cfg, who, sizeof who);
    rd_token_store_opts o;
    int lock = -1;
    int rc = rd_token_store_opts_from_config(&cfg->tokens, cfg->cluster.ps_ranks, &o, &eb);
    // The store has a folder of its own: not the run folder (nor one holding it), which was
    // refused later as a folder "not empty but has no MANIFEST", with "remove it". Against the
    // dataset's, checkpoint and target log folders: folders_distinct, earlier.
    if (rc == RD_OK && (rc = rd_lmdbx_check_out_not_input("the run folder", cfg->run.out_dir,
                                                          "tokens.store_dir", dir, &eb)) != RD_OK) {
        char m[RD_ERR_MSG_MAX];
        snprintf(m, sizeof m, "%s", eb.msg);
        rd_errbuf_clear(&eb);
        rc = rd_err_set(&eb, RD_ERR_CONFIG, "%s; give tokens.store_dir a folder of its own", m);
    }
    // A folder of another kind (a table checkpoint, a dataset) is said as such before its lock
    // file is made in it: its MANIFEST read as a damaged store's ("65 bytes, expected 64").
    char what[RD_PATH_MAX * 3];
    int kind = rd_app_path_kind(dir, what, sizeof what);
    if (rc == RD_OK &&
        (kind == RD_APP_PATH_TABLE_CKPT || kind == RD_APP_PATH_FILE || kind == RD_APP_PATH_DATASET))
        rc = rd_err_set(&eb, RD_ERR_CONFIG,
                        "is %s, not a token store (tokens.store_dir names the store's own folder)",
                        what);
    char why[RD_ERR_MSG_MAX];
    if (rc == RD_OK && mkdir_p(dir, why, sizeof why) != RD_OK)
        rc = rd_err_set(&eb, RD_ERR_IO, "cannot create it: %s", why);
    if (rc == RD_OK)
        rc = rd_token_store_lock(dir, who, &lock, &eb);
    rd_token_store_info info;
    if (rc == RD_OK) {
        rc = rd_token_store_read_manifest(dir, &info, &eb);
        g_store_existed = rc != RD_ERR_NOTFOUND;
    }
    if (rc == RD_ERR_NOTFOUND) { // a new store: made by token_store_bind, after the prepare
        rd_errbuf_clear(&eb);
        rc = RD_OK;
    } else if (rc == RD_OK) {
        if ((int)info.dim != cfg->tokens.dim)
            rc = rd_err_set(&eb, RD_ERR_VERSION, "the store has dim %u, tokens.dim is %d", info.dim,
                            cfg->tokens.dim);
        if (rc == RD_OK && (int)info.dtype != o.dtype)
            rc = rd_err_set(&eb, RD_ERR_VERSION,
                            "the store has %s tokens, tokens.dtype is %s (a store keeps the dtype "
                            "it was created with)",
                            rd_token_dtype_name((int)info.dtype), rd_token_dtype_name(o.dtype));
        if (rc == RD_OK && (int)info.n_side != rd_tokens_side_width(&cfg->tokens))
            rc = rd_err_set(&eb, RD_ERR_VERSION,
                            "the store has %u side values per token, tokens.side and "
                            "tokens.side_residual ask for %d (a store keeps the side values it was "
                            "created with)",
                            info.n_side, rd_tokens_side_width(&cfg->tokens));
        if (rc == RD_OK && info.n_shards % (uint32_t)cfg->cluster.ps_ranks != 0) {
            // Shard s is served by PS rank s % P, so P must divide the shard count: say which
            // ps_ranks would serve this store, and the other way out (a store of P shards).
            char fits[160];
            int off = 0, skipped = 0;
            for (uint32_t p = 1; p <= info.n_shards; p++) {
                if (info.n_shards % p != 0)
                    continue;
                if (p != info.n_shards && off > (int)sizeof fits - 32) {
                    skipped = 1; // keep room for the last one, the store's own count
                    continue;
                }
                off += snprintf(fits + off, sizeof fits - (size_t)off, "%s%s%u", off ? ", " : "",
                                skipped ? "..., " : "", p);
            }
            rc = rd_err_set(&eb, RD_ERR_VERSION,
                            "the store has %u shards, not a multiple of the %d PS ranks "
                            "(cluster.ps_ranks): shard s is served by PS rank s %% ps_ranks, so "
                            "ps_ranks must divide %u (%s); or give tokens.store_dir a new folder, "
                            "where the run builds a store of %d shards (one per PS rank)",
                            info.n_shards, cfg->cluster.ps_ranks, info.n_shards, fits,
                            cfg->cluster.ps_ranks);
        }
    }
    if (rc != RD_OK) {
        rd_token_store_unlock(lock);
        lock = -1;
        store_msg(cfg, &eb, rc, msg, cap);
    }
    g_store_locked = lock >= 0;
    *lock_out = lock;
    return rc;
}

// The store serves one dataset (its keys hold the events' ids): bound to this run's, prepared by
// now, or refused when it holds another's. Called after token_store_ready, under its lock
// (released here on failure).
static int token_store_bind(const rd_config *cfg, int lock, char *msg, size_t cap) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = RD_OK;
    if (!g_store_existed) { // one shard per PS rank
        rd_token_store_opts o;
        rd_token_store *s = NULL;
        if ((rc = rd_token_store_opts_from_config(&cfg->tokens, cfg->cluster.ps_ranks, &o, &eb)) ==
            RD_OK)
            rc = rd_token_store_create(cfg->tokens.store_dir, &o, &s, &eb);
        rd_token_store_destroy(s);
        g_store_made = rc == RD_OK;
    }
    if (rc == RD_OK) {
        rd_dataset *ds = NULL;
        rc = rd_dataset_open(cfg->data.dir, RD_DATASET_NOVERIFY, &ds, &eb);
        if (rc == RD_OK) {
            const rd_dataset_info *di = rd_dataset_get_info(ds);
            rd_token_dataset td = {.n_events = di->n_events, .records_crc = di->records_crc};
            int had = 1;
            rc = rd_token_store_bind_dataset(cfg->tokens.store_dir, &td, &had, &eb);
            if (rc == RD_OK && g_store_existed && !had)
                fprintf(stderr,
                        "recdistill train: warning: token store %s had no dataset record (an "
                        "earlier build made it): it is bound to this run's dataset now, but "
                        "tokens it holds of another dataset cannot be detected\n",
                        cfg->tokens.store_dir);
        }
        rd_dataset_close(ds);
    }
    if (rc != RD_OK) {
        rd_token_store_unlock(lock);
        store_msg(cfg, &eb, rc, msg, cap);
    }
    return rc;
}

// A per-job output file of some job: "<job>.metrics.csv" or "<job>.metrics.jsonl", and the
// target counters "<job>.targets.json" (rd/trainer.h).
static int is_metrics_name(const char *name) {
    static const char *const ext[] = {".metrics.csv", ".metrics.jsonl", ".targets.json"};
    size_t n = strlen(name);
    for (size_t k = 0; k < sizeof ext / sizeof ext[0]; k++) {
        size_t e = strlen(ext[k]);
        if (n > e && strcmp(name + n - e, ext[k]) == 0)
            return 1;
    }
    return 0;
}

// Is job jc in live distillation (a distilled student, or a teacher with distilled students,
// and no replay)? Such a job resumes from its newest checkpoint that can be read, passing over a
// damaged one with a warning (the trainer's resume_common_start), not from the newest alone.
static int live_job(const rd_config *cfg, const rd_job_config *jc) {
    if (cfg->distill.replay)
        return 0;
    if (jc->role != RD_JOB_TEACHER)
        return jc->distill;
    for (int j = 0; j < cfg->cluster.n_jobs; j++) {
        const rd_job_config *sj = &cfg->cluster.jobs[j];
        if (sj->role == RD_JOB_STUDENT && sj->distill && strcmp(sj->teacher, jc->name) == 0)
            return 1;
    }
    return 0;
}

// The newest checkpoint of <root>/<job> whose dense.bin can be read (the one a job in live
// distillation resumes from): into dir and *ck. `rc` (its message in the caller's errbuf) is why
// the newest cannot be read, returned when none can.
static int newest_readable(
    const char *root, const char *job, char *dir, size_t cap, rd_train_pos *ck, int rc) {
    int64_t *steps = NULL;
    size_t n = 0;
    rd_errbuf leb;
    rd_errbuf_clear(&leb);
    if (rd_train_ckpt_list(root, job, &steps, &n, &leb) != RD_OK)
        n = 0;
    for (size_t i = n; i-- > 0;) {
        char p[RD_PATH_MAX * 2];
        rd_errbuf_clear(&leb);
        if (rd_train_ckpt_path(root, job, steps[i], p, sizeof p) != RD_OK ||
            rd_train_ckpt_read_pos(p, ck, &leb) != RD_OK)
            continue;
        snprintf(dir, cap, "%s", p);
        rc = RD_OK;
        break;
    }
    rd_free(steps);
    return rc;
}

// One run folder holds one run: before any job trains, the report, plot and effective config of
// an earlier run in run.out_dir are removed, and every job's metrics and targets file (other job
// names or another metrics_format included), so a launch that is killed or fails never leaves an
// earlier run's results looking like its own. A resumed run removes them too (it used to keep the
// metrics and targets files, which it rewrites at its end: a resume that failed left the earlier
// launch's beside no report); resume reads only the checkpoints. Prints one line naming what was
// removed (nothing when there was nothing).
// --resume, checked by rank 0 before anything of an earlier run is removed: every job has a
// checkpoint there (RESUME itself when it is one, else the newest under <RESUME>/<job>) of that
// job, the same model config, dataset, partition and token settings. The trainers check again
// (and a live pair may resume from an older checkpoint of the same timeline); this only makes a
// mistyped path or a wrong --seed fail before the earlier run's report goes.
static int
check_resume(const rd_config *cfg, const char *resume, const rd_dataset_info *info, rd_errbuf *eb) {
    char probe[RD_PATH_MAX * 2 + 16], dir[RD_PATH_MAX * 2];
    snprintf(probe, sizeof probe, "%s/%s", resume, RD_TRAIN_CKPT_DENSE);
    int folder = access(probe, R_OK) == 0;
    for (int j = 0; j < cfg->cluster.n_jobs; j++) {
        const rd_job_config *jc = &cfg->cluster.jobs[j];
        const rd_model_config *mc = rd_config_find_model(cfg, jc->model);
        int rc = RD_OK;
        if (folder)
            snprintf(dir, sizeof dir, "%s", resume);
        else if ((rc = rd_train_ckpt_latest(resume, jc->name, dir, sizeof dir, eb)) != RD_OK)
            return rc;
        rd_train_pos ck, run;
        if ((rc = rd_train_ckpt_read_pos(dir, &ck, eb)) != RD_OK && !folder && live_job(cfg, jc))
            rc = newest_readable(resume, jc->name, dir, sizeof dir, &ck, rc);
        if (rc != RD_OK)
            return rc;
        if (strcmp(ck.job, jc->name) != 0)
            return rd_err_set(eb, RD_ERR_SCHEMA, "%s is a checkpoint of job '%s', not of '%s'", dir,
                              ck.job, jc->name);
        memset(&run, 0, sizeof run);
        snprintf(run.job, sizeof run.job, "%s", jc->name);
        snprintf(run.model, sizeof run.model, "%s", mc ? mc->name : "");
        rd_train_ckpt_ident(cfg, jc, mc, info, jc->ranks, &run);
        // (info NULL: the dataset is not prepared yet, and is checked by the trainers.)
        if ((rc = rd_train_ckpt_check(
                 dir, &ck, &run, cfg->data.dir,
                 RD_TRAIN_CKPT_CHECK_CONFIG | (info ? RD_TRAIN_CKPT_CHECK_DATA : 0) |
                     RD_TRAIN_CKPT_CHECK_PARTITION | RD_TRAIN_CKPT_CHECK_TOKENS |
                     RD_TRAIN_CKPT_CHECK_OPTIMIZER,
                 eb)) != RD_OK ||
            (rc = rd_train_ckpt_check_epochs(dir, &ck, cfg->train.epochs, eb)) != RD_OK)
            return rc;
        // The PS layout: the trainers refuse it too, but only after the earlier run's outputs
        // went.
        rd_ckpt_manifest *man = rd_xmalloc(sizeof *man); // about 50 KiB
        rc = rd_ckpt_read_manifest(dir, man, eb);
        uint32_t shards = man->n_shards;
        int64_t tables_step = man->step;
        rd_free(man);
        if (rc != RD_OK)
            return rc;
        // Tables and dense state of one cut (a dense.bin copied in from another step): the job
        // refused it only after the earlier run's report was gone.
        if (tables_step != ck.step)
            return rd_err_set(eb, RD_ERR_CORRUPT, "%s: tables of step %lld, dense.bin of step %lld",
                              dir, (long long)tables_step, (long long)ck.step);
        if (shards != (uint32_t)cfg->cluster.ps_ranks)
            return rd_err_set(eb, RD_ERR_SCHEMA,
                              "%s has %u PS shards but this run has %d PS ranks (restore needs "
                              "the same layout: `recdistill table reshard %s --shards %d --out "
                              "DIR` writes one that fits)",
                              dir, shards, cfg->cluster.ps_ranks, dir, cfg->cluster.ps_ranks);
        // Every shard present and of this cut (its records, not its rows): a shard missing from
        // a copied checkpoint failed only in the PS ranks, after the run folder was made.
        if ((rc = rd_ckpt_check_shards(dir, eb)) != RD_OK)
            return rc;
        // The stream windows' metrics (no CRC): a damaged windows.tsv, in the batch period too,
        // is refused here, as `table verify` refuses it, not after the run folder is made.
        int n_win = -1;
        if ((rc = rd_trainer_windows_check(dir, ck.window, ck.range_step, &n_win, eb)) != RD_OK)
            return rc;
    }
    return RD_OK;
}

// An existing dataset is checked once, in full (records and index CRCs), here: the trainers map
// it without the check, and a damaged record would otherwise train silently or trip an
// assertion deep in the index code. Then that it was prepared from this data config, and that a
// --resume checkpoint fits (check_resume).
static int check_existing(const rd_config *cfg, const char *resume, char *msg, size_t cap) {
    rd_errbuf veb;
    rd_errbuf_clear(&veb);
    rd_dataset *ds = NULL;
    int rc = rd_dataset_open(cfg->data.dir, 0, &ds, &veb);
    if (rc == RD_OK)
        rc = rd_dataset_check_config(cfg->data.dir, &cfg->data, cfg->run.seed, &veb);
    if (rc == RD_OK && resume && resume[0] &&
        (rc = check_resume(cfg, resume, rd_dataset_get_info(ds), &veb)) != RD_OK &&
        strncmp(veb.msg, "--resume", 8) != 0)
        rd_err_prefix(&veb, "--resume: ");
    rd_dataset_close(ds);
    if (rc != RD_OK)
        snprintf(msg, cap, "%s", veb.msg[0] ? veb.msg : rd_strerror(rc));
    return rc;
}

// A --resume checkpoint checked before the dataset is prepared (the dataset itself is checked
// by the trainers): a refused resume leaves no prepared dataset behind in a new run folder.
static int check_resume_early(const rd_config *cfg, const char *resume, char *msg, size_t cap) {
    rd_errbuf veb;
    rd_errbuf_clear(&veb);
    int rc = check_resume(cfg, resume, NULL, &veb);
    if (rc != RD_OK && strncmp(veb.msg, "--resume", 8) != 0)
        rd_err_prefix(&veb, "--resume: ");
    if (rc != RD_OK)
        snprintf(msg, cap, "%s", veb.msg[0] ? veb.msg : rd_strerror(rc));
    return rc;
}

// A launch whose students replay a target log (distill.replay) needs that log: a missing or
// unreadable one is refused before anything of an earlier run is removed.
static int check_replay_log(const rd_config *cfg, char *msg, size_t cap) {
    int replays = 0;
    for (int j = 0; j < cfg->cluster.n_jobs; j++)
        replays |= cfg->cluster.jobs[j].role == RD_JOB_STUDENT && cfg->cluster.jobs[j].distill;
    if (!replays || !cfg->distill.replay)
        return RD_OK;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_target_log *log = NULL;
    int rc = rd_target_log_open(cfg->distill.target_log, 0, NULL, &log, &eb);
    rd_target_log_close(log);
    if (rc != RD_OK) {
        snprintf(msg, cap, "distill.replay: %.4000s", eb.msg[0] ? eb.msg : rd_strerror(rc));
        return rc;
    }
    // A log still being written holds only the targets sent so far: a replay of it trained with
    // most targets missing and ended with exit 0. A replay reads a finished log. And it stays
    // finished while the replay reads it: the lock is held shared until rank 0 ends (the kernel
    // drops it however the launch ends), so a teacher launch writing the log meanwhile, which
    // would drop its job's targets and write new ones under the replay (a mix of two teacher
    // runs, the rest missing), is refused instead. Other replays share it. Taken before the
    // students open the log (they do after this check's broadcast).
    static int replay_lock = -1; // never released by hand (see above)
    char holder[256];
    if (replay_lock < 0 && rd_writer_lock_shared(cfg->distill.target_log, NULL, &replay_lock,
                                                 holder, sizeof holder) == 1) {
        snprintf(msg, cap,
                 "distill.replay: target log %.400s is still being written (%.250s): a replay "
                 "reads a finished log; start it when that launch has ended",
                 cfg->distill.target_log, holder[0] ? holder : "holder unknown");
        return RD_ERR_STATE;
    }
    return RD_OK;
}

// The launch is the one writer of its run folder: <run.out_dir>/run.lock (rd_writer_lock), taken
// by rank 0 before an earlier run's outputs are removed, so a second launch into the same folder
// is refused naming the holder before it removes or writes anything (two launches removed each
// other's checkpoints and mixed their reports). Kept until rank 0 ends, like the others.
#define RUN_LOCK_FILE "run.lock"
static int run_folder_ready(const rd_config *cfg, char *msg, size_t cap) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char who[256];
    writer_name(cfg, who, sizeof who);
    int fd = -1;
    int rc = rd_writer_lock(cfg->run.out_dir, RUN_LOCK_FILE, "run folder", who, &fd, &eb);
    if (rc != RD_OK)
        snprintf(msg, cap, "%s", eb.msg[0] ? eb.msg : rd_strerror(rc));
    g_run_locked = rc == RD_OK;
    return rc;
}

// A checkpoint folder outside the run folder (ps.checkpoint_dir on scratch, or one named by two
// configs) has a lock of its own, as the run folder: a launch removes the earlier checkpoints of
// its jobs there and writes its own, so two launches on one folder removed each other's live
// checkpoints and then failed. One inside the run folder is covered by run.lock.
// A path with its deepest existing folder resolved (symlinks, "..") and the rest as written.
static void resolve_existing(const char *path, char *out, size_t cap) {
    char head[RD_PATH_MAX + 1], real[PATH_MAX];
    snprintf(head, sizeof head, "%s", path);
    size_t tail = strlen(head);
    for (;;) {
        if (realpath(head, real)) {
            snprintf(out, cap, "%s%s", real, path + tail);
            return;
        }
        char *slash = strrchr(head, '/');
        if (!slash || slash == head) {
            snprintf(out, cap, "%s", path);
            return;
        }
        *slash = '\0';
        tail = (size_t)(slash - head);
    }
}

// Inside means inside as the file system has it: a run folder whose ckpt is a symlink to a
// shared folder (or a checkpoint_dir spelled run/../shared) holds no run.lock for it, and two
// such launches removed each other's live checkpoints.
static int ckpt_folder_outside(const rd_config *cfg) {
    size_t n = strlen(cfg->run.out_dir);
    const char *d = cfg->ps.checkpoint_dir;
    if (!(strncmp(d, cfg->run.out_dir, n) == 0 && d[n] == '/'))
        return 1;
    char dreal[RD_PATH_MAX + PATH_MAX], ro[RD_PATH_MAX + PATH_MAX];
    resolve_existing(d, dreal, sizeof dreal);
    resolve_existing(cfg->run.out_dir, ro, sizeof ro);
    size_t m = strlen(ro);
    return !(strncmp(dreal, ro, m) == 0 && dreal[m] == '/');
}

static int ckpt_folder_ready(const rd_config *cfg, char *msg, size_t cap) {
    if (!ckpt_folder_outside(cfg))
        return RD_OK;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    char who[256];
    writer_name(cfg, who, sizeof who);
    int fd = -1, rc = RD_OK;
    char why[RD_ERR_MSG_MAX];
    if (mkdir_p(cfg->ps.checkpoint_dir, why, sizeof why) != RD_OK)
        rc = rd_err_set(&eb, RD_ERR_IO,
                        "checkpoint folder (ps.checkpoint_dir) %s: cannot create it: %s",
                        cfg->ps.checkpoint_dir, why);
    else
        rc = rd_writer_lock(cfg->ps.checkpoint_dir, RD_WRITER_LOCK_FILE,
                            "checkpoint folder (ps.checkpoint_dir)", who, &fd, &eb);
    if (rc != RD_OK)
        snprintf(msg, cap, "%s", eb.msg[0] ? eb.msg : rd_strerror(rc));
    g_ckpt_locked = rc == RD_OK;
    return rc;
}

// A launch that failed before training removes what it made: the lock files in the folders it
// created (the run folder, the target log), then those folders while they are empty
// (rmdir_made). A folder that existed keeps its lock file (an empty file, as every lock file).
static void remove_made(const rd_config *cfg,
                        const char *made,
                        const char *log_made,
                        const char *store_made,
                        const char *ckpt_made) {
    char path[RD_PATH_MAX + 32];
    if (ckpt_made[0] && g_ckpt_locked) {
        snprintf(path, sizeof path, "%s/%s", cfg->ps.checkpoint_dir, RD_WRITER_LOCK_FILE);
        unlink(path);
        rmdir_made(cfg->ps.checkpoint_dir, ckpt_made);
    }
    if (store_made[0] && g_store_locked && !g_store_made) { // its writer.lock, no store yet
        snprintf(path, sizeof path, "%s/%s", cfg->tokens.store_dir, RD_WRITER_LOCK_FILE);
        unlink(path);
        rmdir_made(cfg->tokens.store_dir, store_made);
    }
    if (log_made[0] && g_log_locked) {
        snprintf(path, sizeof path, "%s/%s", cfg->distill.target_log, RD_WRITER_LOCK_FILE);
        unlink(path);
        rmdir_made(cfg->distill.target_log, log_made);
    }
    if (made[0]) {
        if (g_run_locked) {
            snprintf(path, sizeof path, "%s/%s", cfg->run.out_dir, RUN_LOCK_FILE);
            unlink(path);
        }
        rmdir_made(cfg->run.out_dir, made);
    }
}

// The file the run's effective configuration is written to (write_effective_config).
#define RD_EFFECTIVE_CONFIG "config.effective.yaml"

// A run output world rank 0 writes through a temporary file (run_results): report.json, the plot,
// config.effective.yaml, a job's metrics and targets files (the first len bytes of `name`).
static int is_run_output(const char *name, size_t len) {
    char t[256];
    if (len >= sizeof t)
        return 0;
    memcpy(t, name, len);
    t[len] = '\0';
    return strcmp(t, "report.json") == 0 || strcmp(t, "auc_windows.png") == 0 ||
           strcmp(t, RD_EFFECTIVE_CONFIG) == 0 || is_metrics_name(t);
}

static int clear_earlier_outputs(const rd_config *cfg, char *msg, size_t cap) {
    const char *dir = cfg->run.out_dir;
    // The temporaries of those outputs ("report.json.tmp.<pid>.<hex>") that an earlier launch's
    // rank 0, killed before its renames (SIGKILL, the OOM killer), left: this launch holds
    // run.lock, so no other launch writes here, and a running process's are kept.
    rd_lmdbx_remove_stale_outfiles(dir, is_run_output);
    char names[512] = "";
    size_t len = 0;
    int n = 0, rc = RD_OK;
    char path[RD_PATH_MAX + 256];
    // A name removed: listed (the list stops growing when it would not fit, the count goes on).
    const char *fixed[] = {"report.json", "auc_windows.png", RD_EFFECTIVE_CONFIG};
    DIR *d = NULL;
    for (size_t k = 0; rc == RD_OK; k++) {
        const char *name;
        if (k < sizeof fixed / sizeof fixed[0]) {
            name = fixed[k];
        } else {
            if (!d && !(d = opendir(dir))) {
                rc = RD_ERR_IO;
                snprintf(msg, cap, "%s: cannot list the run folder: %s", dir, strerror(errno));
                break;
            }
            struct dirent *e = readdir(d);
            if (!e)
                break;
            if (!is_metrics_name(e->d_name))
                continue;
            name = e->d_name;
        }
        snprintf(path, sizeof path, "%s/%s", dir, name);
        struct stat sb;
        if (lstat(path, &sb) != 0 || (k >= sizeof fixed / sizeof fixed[0] && !S_ISREG(sb.st_mode)))
            continue; // absent (or a metrics-like name that is no file: not ours)
        if (unlink(path) != 0) {
            rc = RD_ERR_IO;
            snprintf(msg, cap, "%s: cannot remove this output of an earlier run: %s", path,
                     strerror(errno));
            break;
        }
        n++;
        int w = snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "", name);
        if (w > 0 && (size_t)w < sizeof names - len)
            len += (size_t)w;
        else
            names[len] = 0;
    }
    if (d)
        closedir(d);
    if (n > 0) {
        printf("run folder %s: removed %d output%s of an earlier run: %s%s\n", dir, n,
               n == 1 ? "" : "s", names, rc == RD_OK ? "" : " (then failed)");
        fflush(stdout);
    }
    return rc;
}

// ---------------------------------------------------------------------------------------------

// The parse outcome of this rank's command line (rd_cmd_train), settled across ranks after
// MPI_Init (agree).
typedef struct train_args {
    int status;                                   // 0 ok, 1 --help, 2 usage error (msg)
    char msg[512];                                // the usage error
    const char *config, *out, *resume, *seed_arg; // borrowed from argv; NULL: not given
    uint64_t seed;                                // --seed, when seed_arg
    const char *sets[RD_CONFIG_MAX_SETS];         // --set PATH=VALUE, in order (argv)
    int n_sets;
} train_args;

// The run's effective configuration, written beside report.json (before it: the report is the
// last file a run writes): the config file with the --set overrides, --seed and --out applied
// and every default filled in, the overrides listed on top. `train` of it trains the same run.
static int write_effective_config(const rd_config *cfg, const train_args *ta, rd_errbuf *eb) {
    char path[RD_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", cfg->run.out_dir, RD_EFFECTIVE_CONFIG);
    rd_lmdbx_outfile of;
    int rc = rd_lmdbx_outfile_open(path, &of, eb);
    if (rc != RD_OK)
        return rc;
    for (int i = 0; i < ta->n_sets; i++)
        fprintf(of.f, "# --set %s\n", ta->sets[i]);
    rd_config_print(cfg, of.f);
    return rd_lmdbx_outfile_commit(&of, eb);
}

// What a rank's CONFIG is: its real path, and a hash of its bytes (an MPMD segment, or another
// node, may see another file under the same name). A file that cannot be read gets a hash of
// the error, so ranks that all fail agree (rank 0 then reports it as before) and a rank that
// fails alone differs.
static void config_identity(const char *config,
                            char *path,
                            size_t path_cap,
                            uint64_t *path_hash,
                            char *content,
                            size_t content_cap,
                            uint64_t *content_hash) {
    char real[PATH_MAX];
    const char *p = realpath(config, real) ? real : config;
    // The given path, and the file it names when that reads otherwise: two MPMD segments given
    // one relative name from different working directories differ by the latter alone.
    int k = strcmp(p, config) != 0 ? snprintf(path, path_cap, "%s (%s)", config, p)
                                   : snprintf(path, path_cap, "%s", config);
    if (k < 0 || (size_t)k >= path_cap) // cut: the hash still tells the ranks apart
        path[path_cap - 1] = 0;
    *path_hash = rd_hash_str(p, 1);
    // Every rank reads it, before rank 0's rd_config_load: a FIFO must not block them either.
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(config, &f);
    if (o != 0) {
        snprintf(content, content_cap, "cannot read it: %s",
                 o > 0 ? "not a regular file" : strerror(errno));
        *content_hash = rd_hash_str(content, 2);
        return;
    }
    uint64_t h = 3;
    char buf[8192];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        h = rd_hash64(buf, n, h);
        total += n;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        snprintf(content, content_cap, "cannot read it");
        *content_hash = rd_hash_str(content, 2);
        return;
    }
    snprintf(content, content_cap, "%zu bytes, hash %016llx", total, (unsigned long long)h);
    *content_hash = h;
}

// 0. Every rank's command line, settled: a usage error anywhere, or arguments that differ
//    between ranks (the segments of an MPMD launch each have their own), end every rank with
//    exit 2 and one report by world rank 0 (rd_app_agree). Returns -1 to go on, else the exit code.
//    runtime_mixed: whether the ranks' run-time libraries differ (a warning, rd_app_agree).
static int agree(const train_args *ta, int rank, int *runtime_mixed) {
    char cpath[RD_PATH_MAX], ccontent[128], seed[32], sets[512];
    rd_app_arg args[6];
    int n = 0;
    if (ta->status == 0) {
        uint64_t hp = 0, hc = 0;
        config_identity(ta->config, cpath, sizeof cpath, &hp, ccontent, sizeof ccontent, &hc);
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)ta->seed);
        args[n++] = (rd_app_arg){"CONFIG (its path)", cpath, hp};
        args[n++] = (rd_app_arg){"CONFIG (the file's content)", ccontent, hc};
        args[n++] = (rd_app_arg){"--out", ta->out ? ta->out : "(not given)",
                                 ta->out ? rd_hash_str(ta->out, 4) : 4};
        args[n++] = (rd_app_arg){"--seed", ta->seed_arg ? seed : "(not given)",
                                 ta->seed_arg ? rd_mix64(ta->seed) ^ 5 : 5};
        args[n++] = (rd_app_arg){"--resume", ta->resume ? ta->resume : "(not given)",
                                 ta->resume ? rd_hash_str(ta->resume, 6) : 6};
        // Every --set, in order (the order decides which of two on one key wins).
        uint64_t hs = 7;
        size_t o = 0;
        sets[0] = '\0';
        for (int i = 0; i < ta->n_sets; i++) {
            hs = rd_hash_str(ta->sets[i], hs + 1);
            if (o < sizeof sets)
                o += (size_t)snprintf(sets + o, sizeof sets - o, "%s%s", i ? " " : "", ta->sets[i]);
        }
        args[n++] = (rd_app_arg){"--set", ta->n_sets ? sets : "(not given)", hs};
    }
    int v = rd_app_agree("recdistill train", ta->status, ta->msg, args, n, runtime_mixed);
    switch (v) {
        case RD_APP_AGREE_OK:
            return -1;
        case RD_APP_AGREE_HELP:
            // Only rank 0 printed: its write error (help to a full disk) is the launch's exit 1.
            if (rank == 0) {
                train_usage(stdout);
                return rd_app_stdout_written("train", NULL);
            }
            return 0;
        case RD_APP_AGREE_USAGE:
            if (rank == 0)
                train_usage(stderr);
            return 2;
        default:
            return 2;
    }
}

// 1b. The ranks resolve the run's relative paths (run.out_dir, and the data, checkpoint, target
//     log and token store folders under it by default) against their own working directory. In
//     an MPMD launch whose segments start in different directories (mpiexec -wdir, a het job's
//     components with their own --chdir) one run became two folders: rank 0 prepared the data,
//     locked the run folder and wrote report.json in one, the job ranks wrote their checkpoints,
//     metrics and target log in the other (unlocked), and the launch exited 0. When the config
//     has such a relative path, every rank must run in one directory (its real path): else every
//     rank ends with exit 2 and rank 0 names the ranks, their segments and directories, before
//     anything is made. A config of absolute paths runs as before (--resume stays per rank: its
//     checkpoints are checked on every rank). Returns -1 to go on, else the exit code.
static int same_workdir(const rd_config *cfg) {
    const struct {
        const char *key, *path;
        int used;
    } paths[] = {
        {"run.out_dir", cfg->run.out_dir, 1},
        {"data.dir", cfg->data.dir, 1},
        {"ps.checkpoint_dir", cfg->ps.checkpoint_dir, 1},
        {"distill.target_log", cfg->distill.target_log,
         writes_target_log(cfg) || cfg->distill.replay},
        {"tokens.store_dir", cfg->tokens.store_dir, rd_config_token_job(cfg) >= 0},
    };
    const char *key = NULL, *rel = NULL;
    for (size_t k = 0; k < sizeof paths / sizeof paths[0] && !key; k++)
        if (paths[k].used && paths[k].path[0] && paths[k].path[0] != '/') {
            key = paths[k].key;
            rel = paths[k].path;
        }
    if (!key)
        return -1;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, "(unknown: %s)", strerror(errno));
    char header[RD_PATH_MAX + 512];
    snprintf(header, sizeof header,
             "the ranks of this launch run in different working directories, so the run's "
             "relative paths (%s '%s', ...) would name different folders on them; start every "
             "rank in one directory (in an MPMD launch, the same -wdir on every segment) or make "
             "the paths absolute (--out DIR)",
             key, rel);
    // One directory may have several names on a node (a bind mount: -wdir /home/u/x and
    // -wdir /gpfs/home/u/x): ranks of one node whose directories are one (device and inode) take
    // the name of the lowest of them, so only directories that differ are refused. Across nodes
    // the names are compared (a device number is the node's own).
    struct {
        uint64_t dev, ino, hash;
    } id = {0, 0, rd_hash_str(cwd, 7)}, *ids = NULL;
    struct stat sb;
    int have = stat(".", &sb) == 0;
    if (have) {
        id.dev = (uint64_t)sb.st_dev;
        id.ino = (uint64_t)sb.st_ino;
    }
    MPI_Comm node = MPI_COMM_NULL;
    int nrank = 0, nsize = 1;
    RD_MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    RD_MPI_CHECK(MPI_Comm_rank(node, &nrank));
    RD_MPI_CHECK(MPI_Comm_size(node, &nsize));
    ids = rd_xcalloc((size_t)nsize, sizeof *ids);
    RD_MPI_CHECK(MPI_Allgather(&id, (int)sizeof id, MPI_BYTE, ids, (int)sizeof id, MPI_BYTE, node));
    uint64_t canon = id.hash;
    for (int r = 0; have && r < nrank; r++)
        if (ids[r].dev == id.dev && ids[r].ino == id.ino && (ids[r].dev | ids[r].ino) != 0) {
            canon = ids[r].hash;
            break;
        }
    rd_free(ids);
    RD_MPI_CHECK(MPI_Comm_free(&node));
    rd_app_arg arg = {"working directory", cwd, canon};
    int v = rd_app_agree_values("recdistill train", header, &arg, 1);
    return v == RD_APP_AGREE_OK ? -1 : 2;
}

// 2b. Roles come from world rank numbers, never from the mpiexec segment (rd/comm.h). A launch
//     whose segments cut a role group (the PS ranks, or one job's ranks) in two runs as well, but
//     what the segments were for (their -hosts, -env, ...) does not follow the roles: say so,
//     naming the group and its segments. A segment may hold several whole groups (-n 1 : -n 3).
static void warn_segments(const rd_comm *comm) {
    int flag = 0, *appnum = NULL, mine = -1;
    RD_MPI_CHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_APPNUM, &appnum, &flag));
    if (flag && appnum)
        mine = *appnum;
    int *all = comm->rank == 0 ? rd_xcalloc((size_t)comm->size, sizeof *all) : NULL;
    RD_MPI_CHECK(MPI_Gather(&mine, 1, MPI_INT, all, 1, MPI_INT, 0, comm->world));
    if (comm->rank == 0) {
        for (int g = -1; g < comm->n_jobs; g++) {
            int first = g < 0 ? 0 : comm->job_first[g], n = g < 0 ? comm->n_ps : comm->job_ranks[g];
            if (n < 2 || all[first] < 0 || all[first] == all[first + n - 1])
                continue; // segments are contiguous in rank order: the ends tell
            char what[RD_NAME_MAX + 16];
            if (g < 0)
                snprintf(what, sizeof what, "the PS");
            else
                snprintf(what, sizeof what, "job '%s'", comm->job_name[g]);
            fprintf(stderr,
                    "recdistill train: warning: ranks %d-%d (%s) are split over mpiexec segments "
                    "%d-%d: "
                    "ranks take their roles from their numbers (PS first, then the jobs in "
                    "config order), not from the segments, so options given per segment "
                    "(-hosts, -env) do not apply per role; give each role group whole segments\n",
                    first, first + n - 1, what, all[first] + 1, all[first + n - 1] + 1);
        }
    }
    rd_free(all);
}

static int train_main(int argc, char **argv, const train_args *ta, rd_watch *watch);

static void on_sigusr1(int sig) {
    (void)sig;
    rd_trainer_request_checkpoint();
    rd_server_request_checkpoint();
}

// The SIGUSR1 handler an MPI library installed over on_sigusr1 in MPI_Init (MPICH 4's does, to
// look for failed processes, and calls the one it replaced), kept and called by on_sigusr1_mpi.
static struct sigaction sigusr1_mpi;

static void on_sigusr1_mpi(int sig, siginfo_t *si, void *uc) {
    rd_trainer_request_checkpoint();
    rd_server_request_checkpoint();
    if (sigusr1_mpi.sa_flags & SA_SIGINFO) {
        if (sigusr1_mpi.sa_sigaction)
            sigusr1_mpi.sa_sigaction(sig, si, uc);
    } else if (sigusr1_mpi.sa_handler != SIG_DFL && sigusr1_mpi.sa_handler != SIG_IGN) {
        sigusr1_mpi.sa_handler(sig);
    }
}

// SIGUSR1 asks for a checkpoint after the next step (rd_trainer_request_checkpoint) instead of
// ending the rank, on every rank (a PS rank, or a worker other than its job's rank 0, passes it
// on to the job's rank 0: rd_server_request_checkpoint): Slurm's --signal=USR1@N reaches every
// process of the step, and mpiexec passes a SIGUSR1 it gets on to each rank. Installed before
// anything else, so that a signal early in the start-up does not kill the rank. SA_RESTART: the
// system calls it interrupts go on (a sleep of a polling loop only ends early).
static void checkpoint_signal_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
}

// MPI_Init with SIGUSR1 blocked: a signal then stays pending until checkpoint_signal_after_mpi_init
// has put on_sigusr1_mpi in place. MPICH installs its handler with signal() and stores the one it
// replaced from signal()'s return value; a SIGUSR1 taken between the two (a rank stopped by
// SIGSTOP at that system call's return, then sent SIGUSR1 and continued, meets that instant for
// sure) ran MPICH's handler with nothing to call, and the request was lost: the job trained to its
// end without the checkpoint (tests/scripts/slurm_limit.sh failed so once in CI). Threads the MPI
// library starts inherit the mask, so the signal reaches the main thread afterwards.
static void checkpoint_signal_block(sigset_t *old) {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, old);
}

// After MPI_Init: a handler the MPI library put in place of on_sigusr1 might not call it (MPICH's
// does), so on_sigusr1_mpi takes its place and calls it. Then the mask from before
// checkpoint_signal_block: a SIGUSR1 that came during MPI_Init runs on_sigusr1_mpi now.
static void checkpoint_signal_after_mpi_init(const sigset_t *old) {
    struct sigaction cur;
    if (sigaction(SIGUSR1, NULL, &cur) == 0 &&
        ((cur.sa_flags & SA_SIGINFO) || cur.sa_handler != on_sigusr1)) {
        sigusr1_mpi = cur;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigusr1_mpi;
        sa.sa_mask = cur.sa_mask;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGUSR1, &sa, NULL);
    }
    sigprocmask(SIG_SETMASK, old, NULL);
}

// This rank took SIGTERM once its role started (stop_before_report).
static volatile sig_atomic_t got_sigterm;

static void on_sigterm_ps(int sig) {
    (void)sig;
    got_sigterm = 1;
    rd_server_request_stop();
}

static void on_sigterm_worker(int sig) {
    (void)sig;
    got_sigterm = 1;
    rd_trainer_request_stop();
}

static void hook_sleep(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

// The run's result files, written by world rank 0 once every job has ended (train_main, 5.): every
// job's "<job>.metrics.<csv|jsonl>" and "<job>.targets.json", config.effective.yaml, the plot,
// and last report.json, each under a temporary name and renamed. The jobs used to write their own
// metrics and targets files as they ended, so a launch that failed or took SIGTERM afterwards
// (another job failing, a rank killed, the plot on a full disk) left complete-looking results
// beside no report.json. Those written are listed here and removed when the launch ends before
// report.json: a run folder holds results only with its report (only a launch killed from
// outside while rank 0 writes them, some 40 ms on a tiny run, can leave some). Checkpoints are no
// results: they stay for --resume, which reads nothing else of the run folder.
typedef struct run_results {
    int n, cap;
    char (*path)[RD_PATH_MAX + 64];
} run_results;

static void results_remove(run_results *w) {
    for (int i = w->n; i-- > 0;)
        unlink(w->path[i]);
    w->n = 0;
}

_Static_assert(RD_PATH_MAX + RD_NAME_MAX + sizeof ".metrics.jsonl" <=
                   sizeof((run_results *)0)->path[0],
               "a result path must hold the longest run folder and job name");

// Listed before it is written: a write that fails after its rename (the folder's fsync) leaves it.
// A path that does not fit (never: the assertion above) is "", which the write refuses.
static const char *results_add(run_results *w, const char *dir, const char *name, const char *ext) {
    if (w->n >= w->cap) // never: train_main sizes the list
        return "";
    char *p = w->path[w->n++];
    int k = snprintf(p, sizeof w->path[0], "%s/%s%s", dir, name, ext);
    if (k < 0 || (size_t)k >= sizeof w->path[0])
        p[0] = '\0';
    return p;
}

// SIGTERM after every job has ended (PS shard 0 no longer serves, rd/server.h): the results are
// with rank 0 and nothing is left but the report, which the signal came before. Such a run went on
// to its report and exit 0, a SIGTERM a moment earlier ended it with 143: now it ends with 143
// and no report too, as docs/tools.md says (resumed, it starts from the final checkpoints and only
// evaluates). Every rank says whether it took the signal (a worker's may have come after its job
// shut down); rank 0 asks again right before the report (`last`), its own flag alone. A SIGTERM
// after report.json is written does not change the run's exit status 0: its outputs are complete.
static void
stop_before_report(const rd_comm *comm, const rd_config *cfg, int last, run_results *w) {
    int any = got_sigterm;
    if (!last) {
        MPI_Request r;
        RD_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, comm->world, &r));
        rd_comm_wait(&r, cfg->cluster.poll_us_max);
    }
    if (!any)
        return;
    if (w)
        results_remove(w); // the run ends without its report: no result file stays either
    if (comm->rank == 0) {
        printf("[ps] SIGTERM: every job has ended its training (its final checkpoint is written): "
               "ending the run before its report (exit status 143); resume it with --resume %s\n",
               cfg->ps.checkpoint_dir);
        rd_abort_launch_status(143);
    }
    // Rank 0 ends the launch; should its abort not come, this rank ends it after the wait.
    rd__watch_failing();
    hook_sleep(5000);
    rd_abort_launch_status(143);
}

// A failure while rank 0 writes the results: those written so far go, then the launch ends. The
// last one listed is not removed when it was refused as not replaceable (RD_ERR_EXISTS: a folder,
// a FIFO or a symlink under its name): that entry is not the run's.
RD_NORETURN static void
results_die(const rd_comm *comm, run_results *w, const char *what, const rd_errbuf *eb, int rc) {
    if (rc == RD_ERR_EXISTS && w->n > 0)
        w->n--;
    results_remove(w);
    die(comm, what, eb, rc);
}

// SIGTERM from the roles on: every job's checkpoint, then the end of the run (rd/server.h,
// rd_server_run). Before, while the dataset is prepared or checked, it ends the rank as it did
// (removing a partial dataset folder: rd_lmdbx_pending_add), and every rank with it.
static void stop_signal_install(int ps) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ps ? on_sigterm_ps : on_sigterm_worker;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
}

int rd_cmd_train(int argc, char **argv) {
    checkpoint_signal_install();
    rd_app_opt opts[] = {{"--out", RD_APP_STRING, NULL},
                         {"--resume", RD_APP_STRING, NULL},
                         {"--seed", RD_APP_NUMBER, NULL},
                         {"--set", RD_APP_REPEAT, NULL}};
    // Nothing is printed here: a rank that stopped before MPI_Init would leave the other ranks of
    // an MPMD launch waiting in MPI_Init for ever. train_main reports after MPI_Init (agree).
    train_args *ta = rd_xcalloc(1, sizeof *ta);
    int n_pos = 0;
    ta->status =
        rd_app_parse_msg(argc, argv, 1, opts, 4, &ta->config, 1, &n_pos, ta->msg, sizeof ta->msg);
    ta->out = opts[0].value;
    ta->resume = opts[1].value;
    ta->seed_arg = opts[2].value;
    if (ta->status == 0 &&
        (ta->n_sets = rd_app_values(argc, argv, 1, "--set", ta->sets, RD_CONFIG_MAX_SETS)) < 0) {
        ta->status = 2;
        snprintf(ta->msg, sizeof ta->msg, "--set given more than %d times", RD_CONFIG_MAX_SETS);
    } else if (ta->status == 0 && !ta->config) {
        ta->status = 2;
        snprintf(ta->msg, sizeof ta->msg, "no CONFIG given");
    } else if (ta->status == 0 && ta->seed_arg && rd_app_parse_u64(ta->seed_arg, &ta->seed) != 0) {
        // The range of run.seed in the config: any uint64.
        ta->status = 2;
        snprintf(ta->msg, sizeof ta->msg,
                 "--seed: '%.100s' is not a non-negative integer (0..18446744073709551615)",
                 ta->seed_arg);
    }
    // A sentinel per rank, forked before MPI exists, names a rank that dies abruptly (rd/watch.h).
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_watch *watch = NULL;
    if (ta->status == 0 && rd_watch_start(&watch, &eb) != RD_OK)
        fprintf(stderr, "recdistill train: %s (continuing without it)\n", eb.msg);
    int code = train_main(argc, argv, ta, watch);
    rd_watch_stop(watch);
    rd_free(ta);
    return code;
}

static int train_main(int argc, char **argv, const train_args *ta, rd_watch *watch) {
    const char *config = ta->config, *out = ta->out, *resume = ta->resume;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    sigset_t mask;
    checkpoint_signal_block(&mask);
    // MPI is up when rd_mpi_init returns, also with an error of its own (a malformed
    // RD_FINALIZE_TIMEOUT_S), which may be one rank's alone (an MPMD segment's -env): that rank
    // ended there while the others waited in the agreement below for ever. The error is kept,
    // and settled once the ranks agree.
    rd_errbuf init_eb;
    rd_errbuf_clear(&init_eb);
    int init_rc = rd_mpi_init(&argc, &argv, MPI_THREAD_SINGLE, &init_eb);
    checkpoint_signal_after_mpi_init(&mask);
    double t_start = rd_mono_s();
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rd_log_set_rank(rank, NULL);
    int runtime_mixed = 0; // the ranks' run-time libraries differ (report.json, rd_app_agree)
    int code = agree(ta, rank, &runtime_mixed);
    if (code >= 0) {
        rd_mpi_finalize(code);
        return code;
    }
    // 0b. rd_mpi_init's error on any rank ends every rank with exit 1, printed once, by the
    //     lowest rank that has it.
    int first_bad = init_rc != RD_OK ? rank : size;
    RD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &first_bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (first_bad < size) {
        if (rank == first_bad && rank == 0)
            fprintf(stderr, "recdistill train: %s\n", init_eb.msg);
        else if (rank == first_bad)
            fprintf(stderr, "recdistill train: rank %d: %s\n", rank, init_eb.msg);
        rd_mpi_finalize(1);
        return 1;
    }

    // 1. Config: rank 0 loads, everyone learns the status, then the bytes.
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    int rc = RD_OK;
    if (rank == 0) {
        rc = rd_config_load_sets(config, ta->sets, ta->n_sets, cfg, &eb);
        if (rc == RD_OK)
            rd_app_config_warnings("train", cfg);
        if (rc == RD_OK && ta->seed_arg)
            cfg->run.seed = ta->seed;
        if (rc == RD_OK && out && (rc = rd_config_move_out_dir(cfg, out, &eb)) != RD_OK)
            rd_err_prefix(&eb, "--out: ");
    }
    RD_MPI_CHECK(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (rc != RD_OK) {
        if (rank == 0)
            fprintf(stderr, "recdistill train: %s\n", eb.msg[0] ? eb.msg : rd_strerror(rc));
        rd_free(cfg);
        rd_mpi_finalize(1);
        return 1;
    }
    rd_config_bcast(cfg, 0, MPI_COMM_WORLD);
    if ((code = same_workdir(cfg)) >= 0) {
        rd_free(cfg);
        rd_mpi_finalize(code);
        return code;
    }
    rd_log_level lvl = RD_LOG_LEVEL_INFO;
    rd_log_level_parse(cfg->run.log_level, &lvl);
    rd_log_init(lvl, rank, NULL);
    const int poll = cfg->cluster.poll_us_max;

    // 2. Layout (rd_comm_create returns the same code on every rank).
    rd_comm *comm = NULL;
    if ((rc = rd_comm_create(MPI_COMM_WORLD, cfg, &comm, &eb)) != RD_OK) {
        if (rank == 0)
            fprintf(stderr, "recdistill train: %s: %s\n", config,
                    eb.msg[0] ? eb.msg : rd_strerror(rc));
        rd_free(cfg);
        // A launch of the wrong size (RD_ERR_ARG) is a usage error, as a tool started in a launch
        // of several processes or MPMD segments given other options are: the command line
        // (mpiexec -n) is wrong, not the config or an input.
        code = rc == RD_ERR_ARG ? 2 : 1;
        rd_mpi_finalize(code);
        return code;
    }
    rd_log_set_rank(rank, comm->role_kind == RD_ROLE_PS ? "ps" : comm->job_name[comm->job_index]);
    identify(watch, comm, cfg);
    warn_segments(comm);
    rd_blas_set_threads(cfg->cluster.blas_threads);

    // 3. Run folder and dataset, by rank 0; everyone waits on the status.
    struct {
        int rc;
        char msg[RD_ERR_MSG_MAX];
    } st = {RD_OK, ""};
    char made[RD_PATH_MAX] = "", log_made[RD_PATH_MAX] = "", store_made[RD_PATH_MAX] = "",
         ckpt_made[RD_PATH_MAX] = "";
    int store_lock = -1; // rank 0: the token store's writer lock (token_store_ready)
    if (rank == 0) {
        char probe[RD_PATH_MAX + 16], why[RD_ERR_MSG_MAX];
        snprintf(probe, sizeof probe, "%s/%s", cfg->data.dir, RD_DATASET_FILE);
        // Every folder the run writes, probed before anything is made (an existing dataset is
        // only read, so data.dir is probed only when it is to be prepared).
        int need_data = access(probe, R_OK) != 0;
        first_missing(cfg->run.out_dir, made, sizeof made);
        if (writes_target_log(cfg))
            first_missing(cfg->distill.target_log, log_made, sizeof log_made);
        if (rd_config_token_job(cfg) >= 0)
            first_missing(cfg->tokens.store_dir, store_made, sizeof store_made);
        if (ckpt_folder_outside(cfg))
            first_missing(cfg->ps.checkpoint_dir, ckpt_made, sizeof ckpt_made);
        if (folders_distinct(cfg, st.msg, sizeof st.msg) != 0) {
            st.rc = RD_ERR_CONFIG; // nothing is made
        } else if (need_data && stream_input(cfg, st.msg, sizeof st.msg) != 0) {
            st.rc = RD_ERR_CONFIG; // nothing is made
        } else if (probe_folder("run folder", cfg->run.out_dir, st.msg, sizeof st.msg) != 0 ||
                   probe_folder("checkpoint folder (ps.checkpoint_dir)", cfg->ps.checkpoint_dir,
                                st.msg, sizeof st.msg) != 0 ||
                   (writes_target_log(cfg) &&
                    probe_folder("target log (distill.target_log)", cfg->distill.target_log, st.msg,
                                 sizeof st.msg) != 0) ||
                   (need_data && probe_folder("dataset folder (data.dir)", cfg->data.dir, st.msg,
                                              sizeof st.msg) != 0)) {
            st.rc = RD_ERR_IO;
        } else if (mkdir_p(cfg->run.out_dir, why, sizeof why) != RD_OK) {
            st.rc = RD_ERR_IO;
            snprintf(st.msg, sizeof st.msg, "%s: cannot create the run folder: %.1024s",
                     cfg->run.out_dir, why);
        } else if ((st.rc = run_folder_ready(cfg, st.msg, sizeof st.msg)) != RD_OK) {
            ; // another launch writes this run folder: nothing is removed
        } else if ((st.rc = ckpt_folder_ready(cfg, st.msg, sizeof st.msg)) != RD_OK) {
            ; // another launch writes this checkpoint folder: nothing is removed
        } else if (!need_data &&
                   (st.rc = check_existing(cfg, resume, st.msg, sizeof st.msg)) != RD_OK) {
            ; // the dataset or a --resume checkpoint does not fit: nothing is removed
        } else if (need_data && resume && resume[0] &&
                   (st.rc = check_resume_early(cfg, resume, st.msg, sizeof st.msg)) != RD_OK) {
            ; // a --resume checkpoint that does not fit: refused before the dataset is prepared
        } else if ((st.rc = check_replay_log(cfg, st.msg, sizeof st.msg)) != RD_OK) {
            ; // no target log to replay: nothing is removed
        } else if (writes_target_log(cfg) &&
                   (st.rc = target_log_ready(cfg, st.msg, sizeof st.msg)) != RD_OK) {
            ; // another launch writes the target log: nothing is removed
        } else if (rd_config_token_job(cfg) >= 0 &&
                   (st.rc = token_store_ready(cfg, &store_lock, st.msg, sizeof st.msg)) != RD_OK) {
            ; // the store is in use or of another layout: nothing is removed or prepared
        } else if ((st.rc = clear_earlier_outputs(cfg, st.msg, sizeof st.msg)) != RD_OK) {
            ; // st.msg names the file
        } else if (need_data) {
            printf("preparing the dataset at %s\n", cfg->data.dir);
            fflush(stdout);
            rd_errbuf peb;
            rd_errbuf_clear(&peb);
            st.rc = rd_dataset_prepare(&cfg->data, cfg->run.seed, &peb);
            // prepare's messages name the input file and line already.
            if (st.rc != RD_OK)
                memcpy(st.msg, peb.msg[0] ? peb.msg : rd_strerror(st.rc),
                       peb.msg[0] ? sizeof st.msg : strlen(rd_strerror(st.rc)) + 1);
        }
        if (st.rc == RD_OK && rd_config_token_job(cfg) >= 0)
            st.rc = token_store_bind(cfg, store_lock, st.msg, sizeof st.msg);
    }
    bcast_polled(&st, (int)sizeof st, MPI_BYTE, MPI_COMM_WORLD, poll);
    if (st.rc != RD_OK) {
        if (rank == 0) {
            fprintf(stderr, "recdistill train: %s\n", st.msg);
            remove_made(cfg, made, log_made, store_made, ckpt_made);
        }
        rd_comm_destroy(comm);
        rd_free(cfg);
        rd_mpi_finalize(1);
        return 1;
    }

    // 4. Roles.
    const int hook_timeout_ms = test_hook_ms("RD_TEST_DISTILL_TIMEOUT_MS", rank),
              hook_fin_ms = test_hook_ms("RD_TEST_FIN_DELAY_MS", rank),
              hook_report_ms = test_hook_ms("RD_TEST_REPORT_DELAY_MS", rank),
              hook_end_ms = test_hook_ms("RD_TEST_END_DELAY_MS", rank);
    stop_signal_install(comm->role_kind == RD_ROLE_PS);
    rd_trainer_result *res = rd_xcalloc((size_t)comm->n_jobs, sizeof *res);
    rd_trainer_result *mine = rd_xcalloc(1, sizeof *mine); // ~1.2 MB (the window table)
    if (comm->role_kind == RD_ROLE_PS) {
        if ((rc = rd_ps_serve(comm, cfg)) != RD_OK)
            die(comm, "parameter server", NULL, rc);
    } else {
        rd_trainer *tr = NULL;
        rd_trainer_opts topts = {
            .resume_dir = resume,
            .distill_timeout_ms = hook_timeout_ms,
            .fin_delay_ms = hook_fin_ms,
            .metrics_dir = "", // world rank 0 writes every job's (run_results)
        };
        rc = rd_trainer_create(comm, cfg, &topts, &tr, &eb);
        // Agreed by every worker rank (create has no collective step to hang in), so that a
        // refusal every rank sees (an input of every job) is printed once.
        if ((rc = rd_trainer_agree(comm, poll, rc, &eb)) != RD_OK)
            die(comm, "setting up the trainer", &eb, rc);
        if ((rc = rd_trainer_run(tr, mine, &eb)) != RD_OK)
            die(comm, comm->job_name[comm->job_index], &eb, rc);
        if ((rc = rd_trainer_destroy(tr)) != RD_OK)
            die(comm, "shutting down the KV client", NULL, rc);
    }

    // 5. Results to world rank 0 (a PS rank: it has left its serve loop once every worker shut
    //    down), which writes the report.
    if (comm->role_kind == RD_ROLE_WORKER && comm->job_rank == 0 && rank != 0) {
        MPI_Request r;
        RD_MPI_CHECK(MPI_Isend(mine, (int)sizeof *mine, MPI_BYTE, 0, TAG_RESULT, comm->world, &r));
        rd_comm_wait(&r, poll);
    }
    if (rank == 0) {
        for (int j = 0; j < comm->n_jobs; j++) {
            if (comm->job_first[j] == 0) {
                res[j] = *mine;
                continue;
            }
            MPI_Request r;
            RD_MPI_CHECK(MPI_Irecv(&res[j], (int)sizeof res[j], MPI_BYTE, comm->job_first[j],
                                   TAG_RESULT, comm->world, &r));
            rd_comm_wait(&r, poll);
        }
        if (hook_report_ms > 0) { // a test's rank 0 slow to its report (tests/scripts/term_late.sh)
            RD_LOG_INFO("holding the report for %d ms (RD_TEST_REPORT_DELAY_MS)", hook_report_ms);
            hook_sleep(hook_report_ms);
        }
    }
    stop_before_report(comm, cfg, 0, NULL);
    if (rank == 0) {
        const rd_report_build build = {rd_app_build_id(), rd_app_runtime_id(), runtime_mixed,
                                       ta->sets, ta->n_sets};
        // report.json is the last file a run writes: a failure before it (the plot on a full
        // disk) ends the launch with no report, and with none of the results written before it
        // (run_results), not with them beside exit 1.
        run_results w = {0, 2 * comm->n_jobs + 3, NULL};
        w.path = rd_xcalloc((size_t)w.cap, sizeof *w.path);
        const char *mext =
            strcmp(cfg->output.metrics_format, "jsonl") == 0 ? ".metrics.jsonl" : ".metrics.csv";
        for (int j = 0; j < comm->n_jobs; j++) {
            const char *p = results_add(&w, cfg->run.out_dir, comm->job_name[j], mext);
            if ((rc = rd_trainer_write_metrics(cfg, &res[j], p, &eb)) != RD_OK)
                results_die(comm, &w, "metrics", &eb, rc);
            if (res[j].targets.role == 0)
                continue; // no targets file (rd_trainer_write_targets)
            p = results_add(&w, cfg->run.out_dir, comm->job_name[j], ".targets.json");
            if ((rc = rd_trainer_write_targets(comm->job_name[j], &res[j].targets, p, &eb)) !=
                RD_OK)
                results_die(comm, &w, "targets", &eb, rc);
        }
        results_add(&w, cfg->run.out_dir, RD_EFFECTIVE_CONFIG, "");
        if ((rc = write_effective_config(cfg, ta, &eb)) != RD_OK)
            results_die(comm, &w, "effective configuration", &eb, rc);
        if (cfg->output.plot) {
            results_add(&w, cfg->run.out_dir, "auc_windows.png", "");
            if ((rc = rd_report_plot(cfg, res, comm->n_jobs, &eb)) != RD_OK)
                results_die(comm, &w, "plot", &eb, rc);
        }
        stop_before_report(comm, cfg, 1, &w);
        results_add(&w, cfg->run.out_dir, "report.json", ""); // a failed fsync of its folder
        if ((rc = rd_report_write(cfg, res, comm->n_jobs, rd_mono_s() - t_start, &build, &eb)) !=
            RD_OK)
            results_die(comm, &w, "report", &eb, rc);
        rd_free(w.path);
        rd_report_print(cfg, res, comm->n_jobs);
        printf("report: %s/report.json\n", cfg->run.out_dir);
        fflush(stdout);
        if (hook_end_ms > 0) { // a test's rank 0 slow to end after its report (term_late.sh)
            RD_LOG_INFO("holding the end for %d ms (RD_TEST_END_DELAY_MS)", hook_end_ms);
            hook_sleep(hook_end_ms);
        }
    }
    MPI_Request r;
    RD_MPI_CHECK(MPI_Ibarrier(comm->world, &r));
    rd_comm_wait(&r, poll);
    rd_free(mine);
    rd_free(res);
    rd_comm_destroy(comm);
    rd_free(cfg);
    rd_mpi_finalize(0);
    return 0;
}
