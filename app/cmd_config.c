// cmd_config.c — `recdistill config CONFIG`: load and validate a run configuration and print the
// effective configuration (every default filled in, derived paths resolved) as YAML on stdout.
//
// Exit codes: 0 valid, 1 invalid or unreadable (the message, "file:line:col: key.path: problem",
// goes to stderr), 2 usage error. Runs without MPI (no MPI_Init): it only reads the file.
#include "commands.h"

#include "rd/alloc.h"
#include "rd/config.h"

#include <stdio.h>
#include <string.h>

static void config_usage(FILE *out) {
    fprintf(out,
            "usage: recdistill config CONFIG.yaml\n"
            "\n"
            "Check a run configuration and print the effective configuration (all defaults\n"
            "filled in, derived paths resolved) as YAML on stdout. The output is itself a valid\n"
            "configuration.\n"
            "\n"
            "exit status: 0 valid, 1 invalid (message on stderr), 2 usage error\n");
}

int rd_cmd_config(int argc, char **argv) {
    if (rd_app_wants_help(argc, argv)) {
        config_usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        config_usage(stderr);
        return 2;
    }
    // rd_config is large (hundreds of KB): keep it off the stack.
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_config_load(argv[1], cfg, &eb);
    if (rc != RD_OK) {
        fprintf(stderr, "recdistill config: %s\n", eb.msg[0] ? eb.msg : rd_strerror(rc));
        rd_free(cfg);
        return 1;
    }
    rd_config_print(cfg, stdout);
    rd_free(cfg);
    return 0;
}
