// cmd_scale_model.c — `recdistill scale-model --calib FILE [--bw GBPS] [--lat US] ...`: project
// step time, throughput and efficiency of synchronous training from 1 to N nodes with the
// calibrated model of rd/scalemodel.h; print the table, name the first bottleneck, and write the
// projection plots with rd_plot. No MPI: runs on a login node.
//
// Exit codes: 0 ok, 1 failure (bad calibration file, unwritable plot), 2 usage error.
#include "commands.h"

#include "rd/lmdbx.h"
#include "rd/plot.h"
#include "rd/scalemodel.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_POINTS 16 // 1, 2, 4, ... 2^15 nodes, or 2^14 and a --max-nodes between 2^14 and 2^15

static void usage(FILE *out) {
    fprintf(
        out,
        "usage: recdistill scale-model --calib FILE [--bw GBPS] [--lat US] [--max-nodes N]\n"
        "                              [--workers-per-node N] [--ps-per-node X | --ps N]\n"
        "                              [--hot-keys K] [--msg-overhead-us U] [--batch B]\n"
        "                              [--no-overlap] [--out PLOT.png]\n"
        "                              [--out-throughput PLOT.png]\n"
        "\n"
        "Project one synchronous training step (compute, PS network, busiest PS shard,\n"
        "dense allreduce) at 1, 2, 4, ... nodes up to N, and at N itself, with the model\n"
        "calibrated by FILE (`key: value` lines, see docs/scaling.md), and print throughput\n"
        "and efficiency.\n"
        "Calibration values are at most 1e9 (dense_params 1e13); a projection whose figures\n"
        "are not finite is an error.\n"
        "\n"
        "  --calib FILE          measured inputs (compute_us_per_sample, batch_per_worker, ...)\n"
        "  --bw GBPS             network bandwidth per node in GB/s (default 12.5 = 100 Gb/s;\n"
        "                        1e-6..1e6)\n"
        "  --lat US              one-way latency in microseconds (default 2; 0..1e9)\n"
        "  --max-nodes N         largest node count, any in 1..32768 (default 256)\n"
        "  --workers-per-node N  worker ranks per node (default 1; 1..4096)\n"
        "  --ps-per-node X       PS shards per node (default 1; 0 < X <= 64, rounded, at least\n"
        "                        1 in all); or --ps N: a fixed shard count (1..1e6), not both\n"
        "  --hot-keys K          keys in every worker's batch (default: the calibration's;\n"
        "                        0..1e9)\n"
        "  --msg-overhead-us U   software cost per message (default: the calibration's; 0..1e9)\n"
        "  --batch B             samples per worker step (default: the calibration's; 1..1e9)\n"
        "  --no-overlap          the PS round trip does not overlap compute\n"
        "  --out PLOT.png        efficiency against nodes: this setting and its variants\n"
        "  --out-throughput PLOT.png  samples/s against nodes, model and linear scaling\n"
        "\n"
        "exit status: 0 ok, 1 failure (message on stderr), 2 usage error\n");
}

// A number in lo..hi (a whole one when `integer`); prints the usage error itself.
static int
parse_bounded(const char *opt, const char *s, double lo, double hi, int integer, double *out) {
    double v = 0.0;
    if (rd_app_parse_double(s, &v) != 0 || v < lo || v > hi || (integer && v != floor(v))) {
        fprintf(stderr, "recdistill scale-model: %s: '%s' is not %s in %.15g..%.15g\n", opt, s,
                integer ? "an integer" : "a number", lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

// Could a plot be written at `path`? Checked for both plots before either is written: the
// second failing after the first was renamed into place left that one behind (a failed command
// with half its output). Refused: a folder, a FIFO, device or symlink (the rename would replace
// the node, rd_lmdbx_check_replaceable), and a deepest existing ancestor that is not a folder or
// not writable (the missing parents are made when the plot is written, as plot makes them).
// What can still fail later (a full disk) is undone by the caller.
static int check_plot_target(const char *opt, const char *path, rd_errbuf *eb) {
    struct stat st;
    int rc = rd_lmdbx_check_replaceable(path, eb);
    if (rc != RD_OK) {
        rd_err_prefix(eb, "%s ", opt);
        return rc;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_IO, "%s %s is a folder: give the path of a PNG file", opt,
                          path);
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return rd_err_set(eb, RD_ERR_ARG, "%s %.200s...: path too long", opt, path);
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (!slash) {
            snprintf(dir, sizeof dir, ".");
        } else if (slash == dir) {
            dir[1] = 0;
        } else {
            *slash = 0;
        }
        if (stat(dir, &st) == 0)
            break;
        // A missing folder is made later; a file on the way is found on the next turn.
        if ((errno != ENOENT && errno != ENOTDIR) || strcmp(dir, ".") == 0 || strcmp(dir, "/") == 0)
            return rd_err_set(eb, RD_ERR_IO, "%s %s: cannot reach %s: %s", opt, path, dir,
                              strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_IO, "%s %s: %s exists and is not a folder", opt, path, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return rd_err_set(eb, RD_ERR_IO, "%s %s: cannot write in %s: %s", opt, path, dir,
                          strerror(errno));
    return RD_OK;
}

// Evaluate 1, 2, 4, ... up to max_nodes, and max_nodes itself when it is not a power of 2 (the
// model takes any node count): a --max-nodes 100 stopped at 64 nodes, and "first bottleneck:
// none up to 64 nodes" answered a question about 100. Returns the number of points or -1.
static int project(const rd_scale_calib *c,
                   const rd_scale_net *net,
                   int max_nodes,
                   rd_scale_point *pts,
                   rd_errbuf *eb) {
    int n = 0, nodes = 1;
    for (; nodes <= max_nodes && n < MAX_POINTS; nodes *= 2)
        if (rd_scale_eval(c, net, nodes, &pts[n++], eb) != RD_OK)
            return -1;
    // Room is left: below 2^15 (the largest --max-nodes) the powers are at most 15 points.
    if (n > 0 && n < MAX_POINTS && pts[n - 1].nodes != max_nodes &&
        rd_scale_eval(c, net, max_nodes, &pts[n++], eb) != RD_OK)
        return -1;
    return n;
}

static int efficiency_plot(const char *path,
                           const rd_scale_calib *c,
                           const rd_scale_net *net,
                           int max_nodes,
                           rd_errbuf *eb) {
    // This setting, then one change at a time: no overlap, 10x less bandwidth, 10x the
    // latency, 64 hot keys (keys in every worker's batch), 8x fewer PS shards, and a 4x larger
    // batch per worker (the same messages carry 4x the samples).
    static const char *const names[] = {"this setting", "no overlap",  "bandwidth / 10",
                                        "latency x 10", "64 hot keys", "PS shards / 8",
                                        "batch x 4"};
    enum { NV = 7 };
    double x[MAX_POINTS], y[NV][MAX_POINTS];
    rd_scale_point pts[MAX_POINTS];
    int n = 0;
    for (int v = 0; v < NV; v++) {
        rd_scale_net nv = *net;
        rd_scale_calib cv = *c;
        if (v == 1)
            nv.overlap = 0;
        else if (v == 2)
            nv.bw_gbps /= 10;
        else if (v == 3)
            nv.lat_us *= 10;
        else if (v == 4)
            cv.hot_keys = 64;
        else if (v == 5 && nv.fixed_ps > 0)
            nv.fixed_ps = nv.fixed_ps / 8 > 0 ? nv.fixed_ps / 8 : 1;
        else if (v == 5)
            nv.ps_per_node /= 8;
        else if (v == 6)
            cv.batch_per_worker *= 4;
        if ((n = project(&cv, &nv, max_nodes, pts, eb)) < 0)
            return RD_ERR_ARG;
        for (int i = 0; i < n; i++) {
            x[i] = pts[i].nodes;
            y[v][i] = 100.0 * pts[i].efficiency;
        }
    }
    rd_plot p;
    rd_plot_init(&p);
    snprintf(p.title, sizeof p.title, "Projected efficiency (%.3g GB/s, %.3g us)", net->bw_gbps,
             net->lat_us);
    snprintf(p.xlabel, sizeof p.xlabel, "nodes");
    snprintf(p.ylabel, sizeof p.ylabel, "efficiency %% of linear");
    p.log_x = 1;
    p.ymin = 0;
    p.ymax = 105;
    for (int v = 0; v < NV; v++)
        rd_plot_add(&p, names[v], x, y[v], (size_t)n);
    return rd_app_write_png(&p, path, eb);
}

static int throughput_plot(
    const char *path, const rd_scale_point *pts, int n, const rd_scale_net *net, rd_errbuf *eb) {
    double x[MAX_POINTS], ym[MAX_POINTS], yl[MAX_POINTS];
    for (int i = 0; i < n; i++) {
        x[i] = pts[i].nodes;
        ym[i] = pts[i].samples_per_s / 1e6;
        yl[i] = pts[0].samples_per_s * pts[i].nodes / 1e6;
    }
    rd_plot p;
    rd_plot_init(&p);
    snprintf(p.title, sizeof p.title, "Projected throughput (%.3g GB/s, %.3g us)", net->bw_gbps,
             net->lat_us);
    snprintf(p.xlabel, sizeof p.xlabel, "nodes");
    snprintf(p.ylabel, sizeof p.ylabel, "million samples/s");
    p.log_x = 1;
    p.log_y = 1;
    rd_plot_add(&p, "linear scaling", x, yl, (size_t)n);
    rd_plot_add(&p, "model", x, ym, (size_t)n);
    return rd_app_write_png(&p, path, eb);
}

int rd_cmd_scale_model(int argc, char **argv) {
    rd_app_opt opts[] = {{"--calib", RD_APP_STRING, NULL},
                         {"--out", RD_APP_STRING, NULL},
                         {"--out-throughput", RD_APP_STRING, NULL},
                         {"--no-overlap", RD_APP_FLAG, NULL},
                         {"--bw", RD_APP_NUMBER, NULL},
                         {"--lat", RD_APP_NUMBER, NULL},
                         {"--max-nodes", RD_APP_NUMBER, NULL},
                         {"--workers-per-node", RD_APP_NUMBER, NULL},
                         {"--ps-per-node", RD_APP_NUMBER, NULL},
                         {"--ps", RD_APP_NUMBER, NULL},
                         {"--hot-keys", RD_APP_NUMBER, NULL},
                         {"--msg-overhead-us", RD_APP_NUMBER, NULL},
                         {"--batch", RD_APP_NUMBER, NULL}};
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    int n_pos = 0;
    int st = rd_app_parse("recdistill scale-model", argc, argv, 1, opts, n_opts, NULL, 0, &n_pos);
    if (st == 1) {
        usage(stdout);
        return 0;
    }
    if (st != 0) {
        usage(stderr);
        return 2;
    }
    const char *calib = opts[0].value, *out = opts[1].value, *out_tp = opts[2].value;
    rd_scale_net net = {.bw_gbps = 12.5,
                        .lat_us = 2.0,
                        .workers_per_node = 1,
                        .ps_per_node = 1,
                        .fixed_ps = 0,
                        .overlap = opts[3].value == NULL};
    double max_nodes = 256, hot = -1, ovh = -1, batch = -1, v;
    // Alternatives: --ps fixes the shard count, so a --ps-per-node beside it would be ignored.
    for (int k = 0; k < n_opts; k++)
        if (strcmp(opts[k].name, "--ps") == 0 && opts[k].value)
            for (int j = 0; j < n_opts; j++)
                if (strcmp(opts[j].name, "--ps-per-node") == 0 && opts[j].value) {
                    fprintf(stderr, "recdistill scale-model: give --ps-per-node or --ps, not "
                                    "both\n");
                    return 2;
                }
    for (int k = 4; k < n_opts; k++) {
        const char *a = opts[k].name, *val = opts[k].value;
        if (!val)
            continue;
        if (strcmp(a, "--bw") == 0) {
            if (parse_bounded(a, val, 1e-6, 1e6, 0, &net.bw_gbps))
                return 2;
        } else if (strcmp(a, "--lat") == 0) {
            if (parse_bounded(a, val, 0, 1e9, 0, &net.lat_us))
                return 2;
        } else if (strcmp(a, "--max-nodes") == 0) {
            if (parse_bounded(a, val, 1, 32768, 1, &max_nodes))
                return 2;
        } else if (strcmp(a, "--workers-per-node") == 0) {
            if (parse_bounded(a, val, 1, 4096, 1, &v))
                return 2;
            net.workers_per_node = (int)v;
        } else if (strcmp(a, "--ps-per-node") == 0) {
            // 0 would print "0 PS shard(s)/node" over a table of 1 shard (the model keeps at
            // least one): a positive share only; one shard in all is --ps 1.
            if (parse_bounded(a, val, 0, 64, 0, &net.ps_per_node))
                return 2;
            if (net.ps_per_node <= 0) {
                fprintf(stderr,
                        "recdistill scale-model: --ps-per-node: '%s' is not a number in (0, 64] "
                        "(for one shard in all, give --ps 1)\n",
                        val);
                return 2;
            }
        } else if (strcmp(a, "--ps") == 0) {
            if (parse_bounded(a, val, 1, 1e6, 1, &v))
                return 2;
            net.fixed_ps = (int)v;
        } else if (strcmp(a, "--hot-keys") == 0) {
            if (parse_bounded(a, val, 0, 1e9, 0, &hot))
                return 2;
        } else if (strcmp(a, "--msg-overhead-us") == 0) {
            if (parse_bounded(a, val, 0, 1e9, 0, &ovh))
                return 2;
        } else if (strcmp(a, "--batch") == 0) {
            if (parse_bounded(a, val, 1, 1e9, 0, &batch))
                return 2;
        }
    }
    if (!calib) {
        usage(stderr);
        return 2;
    }
    // Each plot is renamed over its path: over the calibration it would replace the input, and
    // two plots on one path would leave only the second.
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_app_out_not_stdout("recdistill scale-model", "--out", out,
                              "a PNG is written to a file") != 0 ||
        rd_app_out_not_stdout("recdistill scale-model", "--out-throughput", out_tp,
                              "a PNG is written to a file") != 0)
        return 2;
    if ((out && rd_lmdbx_check_out_not_input("--out", out, "the calibration file", calib, &eb)) ||
        (out_tp && rd_lmdbx_check_out_not_input("--out-throughput", out_tp, "the calibration file",
                                                calib, &eb)) ||
        (out && out_tp &&
         rd_lmdbx_check_out_not_input("--out", out, "the same path as --out-throughput", out_tp,
                                      &eb))) {
        fprintf(stderr, "recdistill scale-model: %s\n", eb.msg);
        return 2;
    }
    if ((out && check_plot_target("--out", out, &eb) != RD_OK) ||
        (out_tp && check_plot_target("--out-throughput", out_tp, &eb) != RD_OK)) {
        fprintf(stderr, "recdistill scale-model: %s: nothing written\n", eb.msg);
        return 1;
    }
    rd_scale_calib c;
    if (rd_scale_calib_load(calib, &c, &eb) != RD_OK) {
        fprintf(stderr, "recdistill scale-model: %s\n", eb.msg);
        return 1;
    }
    if (hot >= 0)
        c.hot_keys = hot;
    if (ovh >= 0)
        c.msg_overhead_us = ovh;
    if (batch >= 1)
        c.batch_per_worker = batch;
    rd_scale_point pts[MAX_POINTS];
    int n = project(&c, &net, (int)max_nodes, pts, &eb);
    if (n < 0) {
        fprintf(stderr, "recdistill scale-model: %s\n", eb.msg);
        return 1;
    }

    printf("# scale model: %.3g GB/s, %.3g us, %d worker(s)/node, ", net.bw_gbps, net.lat_us,
           net.workers_per_node);
    if (net.fixed_ps)
        printf("%d PS shard(s)", net.fixed_ps);
    else
        printf("%.3g PS shard(s)/node", net.ps_per_node);
    printf(", %s, batch %g/worker, %g hot keys\n", net.overlap ? "overlap" : "no overlap",
           c.batch_per_worker, c.hot_keys);
    printf("%6s %7s %6s %10s %10s %10s %10s %10s %13s %7s  %s\n", "nodes", "workers", "ps",
           "compute_us", "psnet_us", "psserv_us", "allred_us", "step_us", "samples/s", "eff%",
           "bottleneck");
    int first = -1;
    for (int i = 0; i < n; i++) {
        const rd_scale_point *p = &pts[i];
        printf("%6d %7d %6d %10.1f %10.1f %10.1f %10.1f %10.1f %13.0f %7.1f  %s\n", p->nodes,
               p->workers, p->ps, p->term_us[RD_SCALE_COMPUTE], p->term_us[RD_SCALE_PS_NETWORK],
               p->term_us[RD_SCALE_PS_SERVER], p->term_us[RD_SCALE_ALLREDUCE], p->step_us,
               p->samples_per_s, 100.0 * p->efficiency, rd_scale_term_name(p->bottleneck));
        if (first < 0 && (p->bottleneck != RD_SCALE_COMPUTE || p->efficiency < 0.9))
            first = i;
    }
    if (first < 0) {
        printf("first bottleneck: none up to %d nodes (compute-bound, efficiency %.1f%%)\n",
               pts[n - 1].nodes, 100.0 * pts[n - 1].efficiency);
    } else {
        // Name the term that costs the most time beyond the compute at that point: with overlap,
        // the PS terms only cost what exceeds the compute, while the allreduce always adds.
        const rd_scale_point *p = &pts[first];
        const double *t = p->term_us;
        int arg = t[RD_SCALE_PS_SERVER] > t[RD_SCALE_PS_NETWORK] ? RD_SCALE_PS_SERVER
                                                                 : RD_SCALE_PS_NETWORK;
        if (net.overlap) {
            double excess = t[arg] - t[RD_SCALE_COMPUTE];
            if (!(excess > t[RD_SCALE_ALLREDUCE]))
                arg = RD_SCALE_ALLREDUCE;
        } else if (t[RD_SCALE_ALLREDUCE] > t[arg]) {
            arg = RD_SCALE_ALLREDUCE;
        }
        printf("first bottleneck: %s at %d nodes (efficiency %.1f%%, %s %.1f us vs compute "
               "%.1f us per step)\n",
               rd_scale_term_name(arg), p->nodes, 100.0 * p->efficiency, rd_scale_term_name(arg),
               p->term_us[arg], p->term_us[RD_SCALE_COMPUTE]);
    }
    // The parents of --out are made here, not by rd_app_write_png, so that a failure of
    // --out-throughput can remove them again together with the --out plot: a failed command
    // leaves neither plot.
    char created[4096];
    created[0] = 0;
    // The folders made for --out are synced in theirs once the plot is in place, or a crash
    // could lose the path to a plot the command reported.
    if (out && (rd_lmdbx_mkdir_parents(out, created, sizeof created, &eb) != RD_OK ||
                efficiency_plot(out, &c, &net, (int)max_nodes, &eb) != RD_OK ||
                rd_lmdbx_fsync_parents(out, created, &eb) != RD_OK)) {
        unlink(out); // nothing there unless the sync failed
        rd_lmdbx_rmdir_created(out, created);
        fprintf(stderr, "recdistill scale-model: %s\n", eb.msg);
        return 1;
    }
    // Until the second plot is in place, a SIGTERM / SIGINT removes the first as a failure of
    // the second does (rd_lmdbx_pending_add): a Ctrl-C at its commit left --out alone.
    int held = out && out_tp && rd_lmdbx_pending_add(out) >= 0;
    if (out_tp && throughput_plot(out_tp, pts, n, &net, &eb) != RD_OK) {
        fprintf(stderr, "recdistill scale-model: %s\n", eb.msg);
        if (out) {
            if (unlink(out) != 0)
                fprintf(stderr, "recdistill scale-model: cannot remove %s: %s\n", out,
                        strerror(errno));
            if (held)
                rd_lmdbx_pending_forget(out);
            rd_lmdbx_rmdir_created(out, created);
            fprintf(stderr, "recdistill scale-model: %s removed again: no plot written\n", out);
        }
        return 1;
    }
    if (held)
        rd_lmdbx_pending_forget(out);
    if (out)
        printf("plot: %s\n", out);
    if (out_tp)
        printf("plot: %s\n", out_tp);
    return 0;
}
