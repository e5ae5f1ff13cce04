// main.c — `recdistill <command> [args]`: dispatch to the subcommands of commands.h.
#include "commands.h"

#include "rd/comm.h"
#include "rd/error.h"
#include "rd/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const rd_command commands[] = {
    {"prepare", "build a binary, time-sorted dataset folder from the config's data source",
     rd_cmd_prepare},
    {"config", "check a config file and print the effective configuration", rd_cmd_config},
    {"train", "train every job of the config on the PS ranks (run under mpiexec)", rd_cmd_train},
    {"table", "inspect, export/import, evict, reshard, verify, compact table checkpoints",
     rd_cmd_table},
    {"tokens", "inspect, fetch from, gc, verify, compact an instance-token store", rd_cmd_tokens},
    {"export", "write the serving bundle of a trained student from a checkpoint", rd_cmd_export},
    {"score", "score a dataset's records through a serving bundle (AUC, logloss, CSV)",
     rd_cmd_score},
    {"scale-model", "project throughput and efficiency to many nodes (calibrated model)",
     rd_cmd_scale_model},
    {"plot", "draw columns of a CSV file as a PNG line plot", rd_cmd_plot},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *out) {
    fprintf(out, "usage: recdistill <command> [args]   (recdistill <command> --help)\n"
                 "       recdistill --version   (the build identity every rank of a launch "
                 "must share)\n"
                 "       recdistill --version --runtime   (and the run-time libraries: MPI, "
                 "OpenBLAS and its CPU kernel, libc, LMDB, libyaml)\n\n"
                 "commands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

// The commands that call MPI_Init themselves (and agree on their command line, rd_app_agree).
// Every other command is one process that never initialises MPI.
static int uses_mpi(const char *name) {
    return strcmp(name, "train") == 0;
}

// Started by a process manager with other processes (mpiexec's PMI, Open MPI's launcher)? The
// number of processes of the launch, 0 when not in one of more than one.
static int in_parallel_launch(void) {
    const char *vars[] = {"PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"};
    for (size_t k = 0; k < sizeof vars / sizeof vars[0]; k++) {
        const char *v = getenv(vars[k]);
        if (v && atoi(v) > 1)
            return atoi(v);
    }
    return 0;
}

// No command, an unknown one or the top-level help on one rank of a parallel launch (an MPMD
// segment with a typo: `mpiexec -n 2 recdistill train C : -n 2 recdistill trian C`): exiting
// before MPI_Init would leave the other ranks in MPI_Init for ever, so this rank initialises MPI
// and joins the agreement of `train` (rd_app_agree), which ends every rank with one report.
// The same for a command that does not use MPI (config, prepare, table, ...) in a launch of more
// than one process: mixed into an MPMD launch with `train` it exited before MPI_Init and the
// train ranks waited for ever; every rank running it (`mpiexec -n 2 recdistill prepare C`)
// would run it N times at once on the same files (prepare, table and tokens edits write them).
// So it is refused either way: the message names its ranks and segments, every rank exits 2.
// status: 1 help, 2 usage error (msg); usage: print the top-level usage on rank 0.
static int end_in_launch(int argc, char **argv, int status, const char *msg, int usage_too) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // MPI is up also when rd_mpi_init fails (a malformed RD_FINALIZE_TIMEOUT_S, maybe on this
    // segment alone): this rank still joins the agreement, which ends every rank with exit 2;
    // ending here left the others waiting in it for ever.
    if (rd_mpi_init(&argc, &argv, MPI_THREAD_SINGLE, &eb) != RD_OK)
        fprintf(stderr, "recdistill: %s\n", eb.msg);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int v = rd_app_agree("recdistill", status, msg, NULL, 0, NULL);
    int code = v == RD_APP_AGREE_HELP ? 0 : 2;
    if (rank == 0 && usage_too) {
        usage(code == 0 ? stdout : stderr);
        if (code == 0)
            code = rd_app_stdout_written(argv[1], NULL);
    }
    rd_mpi_finalize(code);
    return code;
}

int main(int argc, char **argv) {
    rd_log_init(RD_LOG_LEVEL_INFO, 0, "main");
    if (argc < 2) {
        if (in_parallel_launch())
            return end_in_launch(argc, argv, 2, "no command given", 1);
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (in_parallel_launch())
            return end_in_launch(argc, argv, 1, "", 1);
        usage(stdout);
        return rd_app_stdout_written(argv[1], NULL);
    }
    if (strcmp(argv[1], "--version") == 0) {
        // The build identity (app/build_id.c): what train compares across the ranks of a launch.
        if (in_parallel_launch())
            return end_in_launch(argc, argv, 2,
                                 "'--version' runs as one process, on its own (without mpiexec "
                                 "or srun), not in a parallel launch",
                                 0);
        // --runtime adds a second line, the run-time identity (the libraries this process runs
        // on, which ranks of one build may not share); anything else is a usage error, so that a
        // typo does not print the build line alone.
        // The message names the first argument refused: argv[3] after a valid --runtime.
        int runtime = argc >= 3 && strcmp(argv[2], "--runtime") == 0;
        if (argc > 2 + runtime) {
            fprintf(stderr, "recdistill: --version takes only --runtime, not '%s'\n",
                    argv[2 + runtime]);
            return 2;
        }
        printf("%s\n", rd_app_build_id());
        if (runtime)
            printf("%s\n", rd_app_runtime_id());
        return rd_app_stdout_written(argv[1], NULL);
    }
    for (int i = 0; i < n_commands; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        int procs = uses_mpi(argv[1]) ? 0 : in_parallel_launch();
        if (procs > 1) {
            char msg[240];
            snprintf(msg, sizeof msg,
                     "'%s' does not use MPI: it runs as one process, on its own (without mpiexec "
                     "or srun), not as one of the %d processes of a parallel launch; only "
                     "'train' runs under MPI",
                     argv[1], procs);
            return end_in_launch(argc, argv, 2, msg, 0);
        }
        int rc = commands[i].run(argc - 1, argv + 1);
        // train's stdout is its progress log: its results are files, each checked as written
        // (its --help checks its own, rd_cmd_train).
        return rc == 0 && !uses_mpi(argv[1])
                   ? rd_app_stdout_written(argv[1], argc > 2 ? argv[2] : NULL)
                   : rc;
    }
    if (in_parallel_launch()) {
        char msg[200];
        snprintf(msg, sizeof msg, "unknown command '%.100s'", argv[1]);
        return end_in_launch(argc, argv, 2, msg, 1);
    }
    fprintf(stderr, "recdistill: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
