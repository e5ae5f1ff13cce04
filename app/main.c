// main.c — `recdistill <command> [args]`: dispatch to the subcommands of commands.h.
#include "commands.h"

#include "rd/log.h"

#include <stdio.h>
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

int main(int argc, char **argv) {
    rd_log_init(RD_LOG_LEVEL_INFO, 0, "main");
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "recdistill: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
