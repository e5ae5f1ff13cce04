// commands.h — the subcommands of `recdistill`. Each lives in cmd_<name>.c and is registered in
// the table of main.c. A command returns the process exit code (0 ok, 1 failure, 2 usage error)
// and prints its own --help.
#ifndef RD_APP_COMMANDS_H
#define RD_APP_COMMANDS_H

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
int rd_cmd_tokens(int argc, char **argv);
int rd_cmd_scale_model(int argc, char **argv);
int rd_cmd_plot(int argc, char **argv);

/** 1 if argv holds -h or --help. */
int rd_app_wants_help(int argc, char **argv);

#endif
