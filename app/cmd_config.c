// cmd_config.c — `recdistill config CONFIG`: load and validate a run configuration and print the
// effective configuration (every default filled in, derived paths resolved) as YAML on stdout.
//
// `recdistill config --layout CONFIG` prints instead the rank layout and the paths that launch
// scripts need (slurm/*.sbatch), one `key=value` per line, so that a shell reads it without a
// YAML parser.
//
// Exit codes: 0 valid, 1 invalid or unreadable (the message, "file:line:col: key.path: problem",
// goes to stderr), 2 usage error. Runs without MPI (no MPI_Init): it only reads the file.
#include "commands.h"

#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/dataset.h"

#include <stdio.h>
#include <string.h>

static void config_usage(FILE *out) {
    fprintf(out,
            "usage: recdistill config [--layout] CONFIG.yaml [--set PATH=VALUE ...]\n"
            "\n"
            "Check a run configuration and print the effective configuration (all defaults\n"
            "filled in, derived paths resolved) as YAML on stdout. The output is itself a valid\n"
            "configuration.\n"
            "\n"
            "  --layout  print the launch layout instead, one key=value per line:\n"
            "            world_size, ps_ranks, n_jobs; per job i (config order; ranks are\n"
            "            laid out PS first): job<i>_name, _role, _ranks, _first_rank,\n"
            "            _distill, _teacher; then run_name, out_dir, data_dir, target_log,\n"
            "            replay, batch_size, data_hash (the data_config_hash a dataset\n"
            "            prepared from this config records in its meta.yaml; read by the\n"
            "            launch scripts in slurm/)\n" RD_APP_SET_HELP "\n"
            "exit status: 0 valid, 1 invalid (message on stderr), 2 usage error\n");
}

// One key=value per line. Names are restricted to [A-Za-z0-9_.-] by the loader; paths are printed
// as they are (a shell reader splits at the first '=').
static void print_layout(const rd_config *cfg, FILE *f) {
    const rd_cluster_config *c = &cfg->cluster;
    fprintf(f, "world_size=%d\nps_ranks=%d\nn_jobs=%d\n", rd_config_world_size(cfg), c->ps_ranks,
            c->n_jobs);
    int first = c->ps_ranks;
    for (int i = 0; i < c->n_jobs; i++) {
        const rd_job_config *j = &c->jobs[i];
        fprintf(f, "job%d_name=%s\njob%d_role=%s\njob%d_ranks=%d\njob%d_first_rank=%d\n", i,
                j->name, i, j->role == RD_JOB_TEACHER ? "teacher" : "student", i, j->ranks, i,
                first);
        fprintf(f, "job%d_distill=%d\njob%d_teacher=%s\n", i, j->distill, i, j->teacher);
        first += j->ranks;
    }
    fprintf(f, "run_name=%s\nout_dir=%s\ndata_dir=%s\ntarget_log=%s\nreplay=%d\nbatch_size=%d\n",
            cfg->run.name, cfg->run.out_dir, cfg->data.dir, cfg->distill.target_log,
            cfg->distill.replay, cfg->train.batch_size);
    // As meta.yaml writes it: a script tells a prepared data.dir of another data config (slurm/
    // sweep.sh, whose shared dataset outlives a change of the base config) without training.
    fprintf(f, "data_hash=0x%016llx\n",
            (unsigned long long)rd_dataset_config_hash(&cfg->data, cfg->run.seed));
}

int rd_cmd_config(int argc, char **argv) {
    rd_app_opt opts[] = {{"--layout", RD_APP_FLAG, NULL}, {"--set", RD_APP_REPEAT, NULL}};
    const char *path = NULL;
    int n_pos = 0;
    int st = rd_app_parse("recdistill config", argc, argv, 1, opts, 2, &path, 1, &n_pos);
    const char *sets[RD_CONFIG_MAX_SETS];
    int n_sets = st == 0 ? rd_app_sets("recdistill config", argc, argv, sets) : 0;
    if (n_sets < 0)
        st = 2;
    if (st == 1) {
        config_usage(stdout);
        return 0;
    }
    if (st != 0 || n_pos != 1) {
        config_usage(stderr);
        return 2;
    }
    int layout = opts[0].value != NULL;
    // rd_config is large (hundreds of KB): keep it off the stack.
    rd_config *cfg = rd_xmalloc(sizeof *cfg);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_config_load_sets(path, sets, n_sets, cfg, &eb);
    if (rc != RD_OK) {
        fprintf(stderr, "recdistill config: %s\n", eb.msg[0] ? eb.msg : rd_strerror(rc));
        rd_free(cfg);
        return 1;
    }
    rd_app_config_warnings("config", cfg);
    if (layout) {
        print_layout(cfg, stdout);
    } else {
        for (int i = 0; i < n_sets; i++) // YAML comments: the output stays a valid config
            printf("# --set %s\n", sets[i]);
        rd_config_print(cfg, stdout);
    }
    rd_free(cfg);
    return 0;
}
