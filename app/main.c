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
    {"scale-model", "project throughput and efficiency to many nodes (calibrated model)",
     rd_cmd_scale_model},
    {"plot", "draw columns of a CSV file as a PNG line plot", rd_cmd_plot},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *out) {
    fprintf(out, "usage: recdistill <command> [args]   (recdistill <command> --help)\n\n"
                 "commands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

// Started by a process manager with other processes (mpiexec's PMI, Open MPI's launcher)?
static int in_parallel_launch(void) {
    const char *vars[] = {"PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"};
    for (size_t k = 0; k < sizeof vars / sizeof vars[0]; k++) {
        const char *v = getenv(vars[k]);
        if (v && atoi(v) > 1)
            return 1;
    }
    return 0;
}

// No command, an unknown one or the top-level help on one rank of a parallel launch (an MPMD
// segment with a typo: `mpiexec -n 2 recdistill train C : -n 2 recdistill trian C`): exiting
// before MPI_Init would leave the other ranks in MPI_Init for ever, so this rank initialises MPI
// and joins the agreement of `train` (rd_app_agree), which ends every rank with one report.
// status: 1 help, 2 usage error (msg).
static int end_in_launch(int argc, char **argv, int status, const char *msg) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_mpi_init(&argc, &argv, MPI_THREAD_SINGLE, &eb) != RD_OK) {
        fprintf(stderr, "recdistill: %s\n", eb.msg);
        rd_mpi_finalize(2);
        return 2;
    }
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int v = rd_app_agree("recdistill", status, msg, NULL, 0);
    int code = v == RD_APP_AGREE_HELP ? 0 : 2;
    if (rank == 0)
        usage(code == 0 ? stdout : stderr);
    rd_mpi_finalize(code);
    return code;
}

int main(int argc, char **argv) {
    rd_log_init(RD_LOG_LEVEL_INFO, 0, "main");
    if (argc < 2) {
        if (in_parallel_launch())
            return end_in_launch(argc, argv, 2, "no command given");
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (in_parallel_launch())
            return end_in_launch(argc, argv, 1, "");
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    if (in_parallel_launch()) {
        char msg[200];
        snprintf(msg, sizeof msg, "unknown command '%.100s'", argv[1]);
        return end_in_launch(argc, argv, 2, msg);
    }
    fprintf(stderr, "recdistill: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
