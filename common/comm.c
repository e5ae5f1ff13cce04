// comm.c — MPI start-up and the rank layout of a launch (PS ranks first, then each job's ranks
// in config order), split once into the communicators of rd_comm.
//
// Invariant: the layout depends only on world rank numbers and the config, never on MPI_APPNUM,
// so an MPMD mpiexec launch, srun --multi-prog and a Slurm heterogeneous step give the same roles.
// Polling (rd_backoff): MPICH busy-polls inside blocking calls, which on a 2-core machine takes a
// whole core away from the rank doing real work; every wait loop of the program tests and then
// yields or sleeps with exponential backoff.
#include "rd/comm.h"
#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/log.h"
#include "rd/watch.h"

#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// MPI start-up

static const char *thread_level_name(int level) {
    switch (level) {
        case MPI_THREAD_SINGLE:
            return "MPI_THREAD_SINGLE";
        case MPI_THREAD_FUNNELED:
            return "MPI_THREAD_FUNNELED";
        case MPI_THREAD_SERIALIZED:
            return "MPI_THREAD_SERIALIZED";
        case MPI_THREAD_MULTIPLE:
            return "MPI_THREAD_MULTIPLE";
        default:
            return "unknown";
    }
}

// The exit watchdog. MPI_Finalize can hang inside the library: with Debian 12's MPICH 4.0.2 and
// UCX 1.13, over UCX's TCP transport (UCX_TLS=tcp,self here; between nodes on an Ethernet
// cluster), one rank often stays in UCX's progress loop at exit while the others wait for it in
// the PMI barrier. Measured (docs/reliability.md): a two-rank program whose last waits poll with
// sleeps hangs in 6 of 6 runs, and the tiny three-job `recdistill train` in 4 of 6. With
// UCX_RNDV_SCHEME=put_zcopy it happens on one host under the default UCX_TLS too (the
// rendezvous then takes the TCP lane). So rd_mpi_finalize first waits for every rank on a
// communicator of its own (each rank's work is then done), and then finalizes under an alarm:
// past RD_FINALIZE_TIMEOUT_S seconds the rank says so and exits with the status the program was
// going to return.
#define RD_FINALIZE_TIMEOUT_DEFAULT 30

static MPI_Comm g_fin_comm = MPI_COMM_NULL; // dup of MPI_COMM_WORLD made by rd_mpi_init
static unsigned g_fin_timeout = RD_FINALIZE_TIMEOUT_DEFAULT;
static volatile sig_atomic_t g_fin_status;
static char g_fin_msg[400];
static size_t g_fin_len;

// Async-signal-safe: write(2) and _exit. The rank's sentinel (rd/watch.h) is told that this end
// is on purpose, so that neither this exit nor the launcher's SIGKILL of the ranks still in
// MPI_Finalize is reported as a rank that died.
static void fin_alarm(int sig) {
    (void)sig;
    rd__watch_failing();
    ssize_t w = write(STDERR_FILENO, g_fin_msg, g_fin_len);
    (void)w;
    _exit(g_fin_status);
}

// RD_FINALIZE_TIMEOUT_S: whole seconds, 0 = wait forever; unset = the default.
static int parse_fin_timeout(rd_errbuf *eb) {
    const char *v = getenv("RD_FINALIZE_TIMEOUT_S");
    g_fin_timeout = RD_FINALIZE_TIMEOUT_DEFAULT;
    if (!v)
        return RD_OK;
    char *end = NULL;
    errno = 0;
    unsigned long t = strtoul(v, &end, 10);
    if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || t > 86400)
        return rd_err_set(eb, RD_ERR_ARG,
                          "environment variable RD_FINALIZE_TIMEOUT_S='%.40s': expected whole "
                          "seconds 0..86400 (0 = no limit on MPI_Finalize)",
                          v);
    g_fin_timeout = (unsigned)t;
    return RD_OK;
}

int rd_mpi_init(int *argc, char ***argv, int required, rd_errbuf *eb) {
    int inited = 0, provided = MPI_THREAD_SINGLE;
    RD_MPI_CHECK(MPI_Initialized(&inited));
    if (!inited)
        RD_MPI_CHECK(MPI_Init_thread(argc, argv, required, &provided));
    else
        RD_MPI_CHECK(MPI_Query_thread(&provided));
    int rank = 0;
    RD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    rd_log_set_rank(rank, rd_log_get_role());
    if (g_fin_comm == MPI_COMM_NULL)
        RD_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &g_fin_comm));
    if (provided < required)
        return rd_err_set(eb, RD_ERR_MPI, "MPI provides thread level %s, %s is required",
                          thread_level_name(provided), thread_level_name(required));
    return parse_fin_timeout(eb);
}

void rd_mpi_finalize(int status) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return;
    fflush(NULL); // the alarm exits with _exit
    struct sigaction old;
    int armed = 0;
    if (g_fin_comm != MPI_COMM_NULL) {
        MPI_Request r;
        RD_MPI_CHECK(MPI_Ibarrier(g_fin_comm, &r));
        rd_comm_wait(&r, 2000);
        // Every rank is here: one more barrier, polled without sleeping, keeps the transport
        // progressing right up to MPI_Finalize. That alone avoids most hangs when every rank
        // has a core (a throwaway two-rank program over TCP with put_zcopy: 0 of 12 runs hung,
        // against 3 of 12), not with four ranks on two cores (2 of 8).
        RD_MPI_CHECK(MPI_Ibarrier(g_fin_comm, &r));
        for (int done = 0; !done;)
            RD_MPI_CHECK(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
        RD_MPI_CHECK(MPI_Comm_free(&g_fin_comm));
        if (g_fin_timeout > 0) {
            int rank = 0;
            MPI_Comm_rank(MPI_COMM_WORLD, &rank);
            int n = snprintf(g_fin_msg, sizeof g_fin_msg,
                             "rank %d: MPI_Finalize did not return within %u s after every rank "
                             "reached it (a hang inside MPICH/UCX at exit, seen over UCX's TCP "
                             "transport): exiting with status %d "
                             "(RD_FINALIZE_TIMEOUT_S sets the limit, 0 = none)\n",
                             rank, g_fin_timeout, status);
            g_fin_len = n < 0 ? 0 : (size_t)n < sizeof g_fin_msg ? (size_t)n : sizeof g_fin_msg - 1;
            g_fin_status = status;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = fin_alarm;
            sigemptyset(&sa.sa_mask);
            if (sigaction(SIGALRM, &sa, &old) == 0) {
                armed = 1;
                alarm(g_fin_timeout);
            }
        }
    }
    MPI_Finalize();
    if (armed) {
        alarm(0);
        sigaction(SIGALRM, &old, NULL);
    }
}

// ---------------------------------------------------------------------------------------------
// Layout

int rd_comm_create(MPI_Comm base, const rd_config *cfg, rd_comm **out, rd_errbuf *eb) {
    RD_ASSERT(cfg && out);
    *out = NULL;
    const rd_cluster_config *cc = &cfg->cluster;
    int size = 0, rank = 0;
    RD_MPI_CHECK(MPI_Comm_size(base, &size));
    RD_MPI_CHECK(MPI_Comm_rank(base, &rank));

    // 1. Checks that only use the size and the config, so every rank returns the same code
    //    before any collective call.
    if (cc->ps_ranks < 1 || cc->ps_ranks > 4096)
        return rd_err_set(eb, RD_ERR_CONFIG, "cluster.ps_ranks: %d is outside 1..4096",
                          cc->ps_ranks);
    if (cc->n_jobs < 1 || cc->n_jobs > RD_MAX_JOBS)
        return rd_err_set(eb, RD_ERR_CONFIG, "cluster.jobs: %d jobs, need 1..%d", cc->n_jobs,
                          RD_MAX_JOBS);
    for (int j = 0; j < cc->n_jobs; j++)
        if (cc->jobs[j].ranks < 1)
            return rd_err_set(eb, RD_ERR_CONFIG, "cluster.jobs[%d] (%s): ranks %d < 1", j,
                              cc->jobs[j].name, cc->jobs[j].ranks);
    int need = rd_config_world_size(cfg);
    if (need != size) {
        char detail[512];
        int off = snprintf(detail, sizeof detail, "ps_ranks %d", cc->ps_ranks);
        for (int j = 0; j < cc->n_jobs && off > 0 && off < (int)sizeof detail; j++)
            off += snprintf(detail + off, sizeof detail - (size_t)off, " + %s %d", cc->jobs[j].name,
                            cc->jobs[j].ranks);
        // One rank is how a launch without mpiexec looks, and each task of an srun without
        // --mpi=pmi2 (every rank of it a world of its own): say so, it is the usual cause. A
        // process a launcher started (mpiexec -n 1, srun --mpi=pmi2 -n 1) has its PMI
        // environment: there the launcher was simply given too few.
        // RD_ERR_ARG, not RD_ERR_CONFIG: the config is valid, the launch (base) does not fit it,
        // which the command reports as a usage error (exit 2, docs/tools.md).
        int no_launcher = !getenv("PMI_RANK") && !getenv("PMI_FD") && !getenv("PMIX_RANK");
        return rd_err_set(eb, RD_ERR_ARG,
                          "the launch has %d rank%s but the config needs %d (%s); start it with "
                          "mpiexec -n %d (or the matching MPMD/srun layout)%s",
                          size, size == 1 ? "" : "s", need, detail, need,
                          size == 1 && no_launcher
                              ? ": this process is a world of its own (started without "
                                "mpiexec, or by srun without --mpi=pmi2)"
                              : "");
    }

    rd_comm *c = rd_calloc(1, sizeof *c);
    if (!c)
        return rd_err_set(eb, RD_ERR_NOMEM, "rd_comm_create: out of memory");
    c->rank = rank;
    c->size = size;
    c->n_ps = cc->ps_ranks;
    c->n_jobs = cc->n_jobs;
    for (int i = 0; i < c->n_ps; i++)
        c->ps_world[i] = i;
    int first = c->n_ps;
    for (int j = 0; j < c->n_jobs; j++) {
        c->job_first[j] = first;
        c->job_ranks[j] = cc->jobs[j].ranks;
        snprintf(c->job_name[j], RD_NAME_MAX, "%s", cc->jobs[j].name);
        first += cc->jobs[j].ranks;
    }
    int job = -1, index = -1;
    RD_ASSERT(rd_comm_job_of(c, rank, &job, &index) == RD_OK);
    c->role_kind = job < 0 ? RD_ROLE_PS : RD_ROLE_WORKER;
    c->job_index = job;
    c->ps_index = job < 0 ? index : -1;

    // 2. Communicators, split once. Keys keep the world order inside every group.
    RD_MPI_CHECK(MPI_Comm_dup(base, &c->world));
    RD_MPI_CHECK(MPI_Comm_dup(base, &c->kv));
    RD_MPI_CHECK(MPI_Comm_set_errhandler(c->kv, MPI_ERRORS_RETURN));
    RD_MPI_CHECK(MPI_Comm_split(base, c->role_kind, rank, &c->role));
    RD_MPI_CHECK(MPI_Comm_split(base, job + 1, rank, &c->job));
    RD_MPI_CHECK(MPI_Comm_rank(c->job, &c->job_rank));
    RD_MPI_CHECK(MPI_Comm_size(c->job, &c->job_size));
    RD_ASSERT(job < 0 ? c->job_rank == index : c->job_rank == index);
    *out = c;
    return RD_OK;
}

void rd_comm_destroy(rd_comm *comm) {
    if (!comm)
        return;
    MPI_Comm *all[] = {&comm->world, &comm->kv, &comm->role, &comm->job};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (*all[i] != MPI_COMM_NULL && *all[i] != 0)
            RD_MPI_CHECK(MPI_Comm_free(all[i]));
    rd_free(comm);
}

int rd_comm_job_of(const rd_comm *comm, int world_rank, int *job, int *index) {
    if (world_rank < 0 || world_rank >= comm->size)
        return RD_ERR_RANGE;
    if (world_rank < comm->n_ps) {
        *job = -1;
        *index = world_rank;
        return RD_OK;
    }
    for (int j = 0; j < comm->n_jobs; j++) {
        if (world_rank < comm->job_first[j] + comm->job_ranks[j]) {
            *job = j;
            *index = world_rank - comm->job_first[j];
            return RD_OK;
        }
    }
    return RD_ERR_RANGE;
}

// ---------------------------------------------------------------------------------------------
// Backoff

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

void rd_backoff_reset(rd_backoff *b, int max_us) {
    b->spins = 32;
    b->us = 1;
    b->max_us = max_us > 0 ? max_us : 1;
    b->hot_until_ns = 0;
}

void rd_backoff_hot(rd_backoff *b, int max_us, int hot_us) {
    rd_backoff_reset(b, max_us);
    if (hot_us > 0)
        b->hot_until_ns = rd_mono_ns() + (int64_t)hot_us * 1000;
}

void rd_backoff_wait(rd_backoff *b) {
    if (b->hot_until_ns) {
        if (rd_mono_ns() < b->hot_until_ns) {
            cpu_relax();
            return;
        }
        b->hot_until_ns = 0;
    }
    if (b->spins > 0) {
        b->spins--;
        sched_yield();
        return;
    }
    struct timespec ts = {0, (long)b->us * 1000L};
    nanosleep(&ts, NULL);
    if (b->us < b->max_us)
        b->us = b->us * 2 > b->max_us ? b->max_us : b->us * 2;
}

void rd_comm_wait(MPI_Request *req, int poll_us_max) {
    rd_backoff b;
    rd_backoff_reset(&b, poll_us_max > 0 ? poll_us_max : 200);
    for (;;) {
        int done = 0;
        RD_MPI_CHECK(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done)
            return;
        rd_backoff_wait(&b);
    }
}

// ---------------------------------------------------------------------------------------------
// The MPI library's name (rd_mpi_library_name)

void rd_mpi_library_name(const char *version, char *out, size_t cap) {
    const char *line = version + strspn(version, " \t\r\n");
    const size_t line_len = strcspn(line, "\r\n");
    const char *tag = NULL;
    for (const char *p = line; p + 8 <= line + line_len; p++)
        if (memcmp(p, "Version:", 8) == 0) {
            tag = p;
            break;
        }
    if (tag) {
        // The name, then the first word after "Version:" ("MPICH Version: 4.0.2" -> MPICH-4.0.2).
        const char *ver = tag + strlen("Version:");
        ver += strspn(ver, " \t");
        int name_len = (int)(tag - line);
        while (name_len > 0 && isspace((unsigned char)line[name_len - 1]))
            name_len--;
        const int ver_len = (int)strcspn(ver, " \t\r\n,");
        if (name_len > 0 && ver_len > 0) {
            // MPICH and its derivatives (MVAPICH2) have a line "<name> Device: ch4:ofi".
            const char *dev = NULL;
            int dev_len = 0;
            for (const char *p = strchr(line, '\n'); p; p = strchr(p + 1, '\n')) {
                const char *q = p + 1;
                if (strncmp(q, line, (size_t)name_len) != 0)
                    continue;
                q += name_len;
                q += strspn(q, " \t");
                if (strncmp(q, "Device:", 7) != 0)
                    continue;
                q += 7;
                q += strspn(q, " \t");
                dev = q;
                dev_len = (int)strcspn(q, " \t\r\n");
                break;
            }
            snprintf(out, cap, "%.*s-%.*s%s%.*s", name_len, line, ver_len, ver,
                     dev_len > 0 ? "/" : "", dev_len, dev ? dev : "");
            return;
        }
    }
    snprintf(out, cap, "%.*s", (int)strcspn(line, "\r\n,"), line);
}
