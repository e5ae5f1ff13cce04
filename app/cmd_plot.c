// cmd_plot.c — `recdistill plot CSV --x COL --y COL[,COL...] [--group COL] --out PLOT.png`: draw
// columns of a CSV file (a header row, then one row per point; e.g. slurm/sweep.sh's sweep.csv
// or a metrics file) as a line plot with rd_plot. One series per y column, or, with --group,
// one series per distinct value of that column (of the single y column). Points are sorted by x
// within a series; an empty or non-numeric cell is a skipped point (it breaks the line).
//
// Exit codes: 0 ok, 1 failure (unreadable CSV, unknown column, no numeric point, unwritable
// plot: nothing written), 2 usage error (also --out naming the input CSV).
#include "commands.h"

#include "rd/alloc.h"
#include "rd/csv.h"
#include "rd/lmdbx.h"
#include "rd/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ROWS  100000
#define MAX_GROUP 255 // bytes of a --group value, compared in full

static void usage(FILE *out) {
    fprintf(out,
            "usage: recdistill plot CSV --x COL --y COL[,COL...] [--group COL] --out PLOT.png\n"
            "                      [--title TEXT] [--xlabel TEXT] [--ylabel TEXT] [--log-x]\n"
            "                      [--log-y] [--ymin V] [--ymax V]\n"
            "\n"
            "Draw CSV columns (header row first) as a PNG line plot: one series per --y column,\n"
            "or one per distinct value of --group (values of up to %d bytes; then a single --y\n"
            "column). Points are sorted by x; empty or non-numeric cells are skipped and break\n"
            "the line, as are values <= 0 on a log axis (said on stderr; none left is an\n"
            "error). At most %d series and %d rows.\n"
            "\n"
            "exit status: 0 ok, 1 failure (message on stderr), 2 usage error\n",
            MAX_GROUP, RD_PLOT_MAX_SERIES, MAX_ROWS);
}

typedef struct pt {
    double x, y;
} pt;

static int cmp_pt(const void *a, const void *b) {
    double x = ((const pt *)a)->x, y = ((const pt *)b)->x;
    return (x > y) - (x < y);
}

// The header's column `name` of csv, or -1 with the reason on stderr: no such column, or two of
// that name (the first was taken, and a plot of the other's values drawn under its name).
static int col_index(const rd_csv_field *f, size_t n, const char *name, const char *csv) {
    size_t len = strlen(name);
    int at = -1;
    for (size_t i = 0; i < n; i++) {
        if (f[i].len != len || memcmp(f[i].ptr, name, len) != 0)
            continue;
        if (at >= 0) {
            fprintf(stderr,
                    "recdistill plot: %s: columns %d and %zu are both named '%s': which one to "
                    "draw is unknown (rename one)\n",
                    csv, at + 1, i + 1, name);
            return -1;
        }
        at = (int)i;
    }
    if (at < 0)
        fprintf(stderr, "recdistill plot: %s: no column '%s'\n", csv, name);
    return at;
}

static double cell(const rd_csv_field *f, size_t n, int col) {
    double v;
    if (col < 0 || (size_t)col >= n || rd_csv_parse_double(&f[col], &v) != 0)
        return (double)NAN;
    return v;
}

int rd_app_write_png(rd_plot *p, const char *path, rd_errbuf *eb) {
    char created[4096];
    created[0] = 0;
    if (strlen(path) >= sizeof created)
        return rd_err_set(eb, RD_ERR_ARG, "%.64s...: path too long", path);
    int rc = rd_lmdbx_mkdir_parents(path, created, sizeof created, eb);
    if (rc != RD_OK)
        return rc;
    if ((rc = rd_plot_write_png(p, path, eb)) == RD_OK &&
        (rc = rd_lmdbx_fsync_parents(path, created, eb)) != RD_OK)
        unlink(path); // the folders made for it are not durable: no plot
    if (rc != RD_OK)
        rd_lmdbx_rmdir_created(path, created);
    return rc;
}

int rd_cmd_plot(int argc, char **argv) {
    rd_app_opt opts[] = {{"--x", RD_APP_STRING, NULL},     {"--y", RD_APP_STRING, NULL},
                         {"--group", RD_APP_STRING, NULL}, {"--out", RD_APP_STRING, NULL},
                         {"--title", RD_APP_TEXT, NULL},   {"--xlabel", RD_APP_TEXT, NULL},
                         {"--ylabel", RD_APP_TEXT, NULL},  {"--ymin", RD_APP_NUMBER, NULL},
                         {"--ymax", RD_APP_NUMBER, NULL},  {"--log-x", RD_APP_FLAG, NULL},
                         {"--log-y", RD_APP_FLAG, NULL}};
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *csv = NULL;
    int n_pos = 0;
    int ps = rd_app_parse("recdistill plot", argc, argv, 1, opts, n_opts, &csv, 1, &n_pos);
    if (ps == 1) {
        usage(stdout);
        return 0;
    }
    if (ps != 0) {
        usage(stderr);
        return 2;
    }
    const char *xcol = opts[0].value, *ycols = opts[1].value, *group = opts[2].value;
    const char *out = opts[3].value, *title = opts[4].value ? opts[4].value : "";
    const char *xlabel = opts[5].value, *ylabel = opts[6].value;
    int log_x = opts[9].value != NULL, log_y = opts[10].value != NULL;
    double ymin = (double)NAN, ymax = (double)NAN;
    for (int k = 7; k <= 8; k++) {
        const char *v = opts[k].value;
        if (!v)
            continue;
        double d = 0.0;
        if (rd_app_parse_double(v, &d) != 0) {
            fprintf(stderr, "recdistill plot: %s: '%s' is not a number\n", opts[k].name, v);
            return 2;
        }
        *(k == 7 ? &ymin : &ymax) = d;
    }
    // The fixed range is checked here, before the CSV is read: it is the command line that is
    // wrong (the plot library refused it too, but as a failure, exit 1).
    if (!isnan(ymin) && !isnan(ymax) && !(ymin < ymax)) {
        fprintf(stderr, "recdistill plot: --ymin %s --ymax %s: the y range needs min < max\n",
                opts[7].value, opts[8].value);
        return 2;
    }
    for (int k = 7; k <= 8 && log_y; k++)
        if (opts[k].value && !(*(k == 7 ? &ymin : &ymax) > 0)) {
            fprintf(stderr,
                    "recdistill plot: %s %s: a log y axis (--log-y) needs a positive bound\n",
                    opts[k].name, opts[k].value);
            return 2;
        }
    if (!csv || !xcol || !ycols || !out) {
        usage(stderr);
        return 2;
    }
    // The y column names.
    char ybuf[1024];
    const char *yname[RD_PLOT_MAX_SERIES];
    int ny = 0;
    if (snprintf(ybuf, sizeof ybuf, "%s", ycols) >= (int)sizeof ybuf) {
        fprintf(stderr, "recdistill plot: --y: list too long\n");
        return 2;
    }
    size_t yl = strlen(ybuf);
    if (yl && (ybuf[0] == ',' || ybuf[yl - 1] == ',' || strstr(ybuf, ",,"))) {
        // strtok would skip the empty name: "b," plotted b alone without a word.
        fprintf(stderr, "recdistill plot: --y: an empty column name in '%s'\n", ybuf);
        return 2;
    }
    for (char *s = strtok(ybuf, ","); s; s = strtok(NULL, ",")) {
        if (ny == RD_PLOT_MAX_SERIES) {
            fprintf(stderr, "recdistill plot: --y: at most %d columns\n", RD_PLOT_MAX_SERIES);
            return 2;
        }
        yname[ny++] = s;
    }
    if (ny == 0 || (group && ny != 1)) {
        fprintf(stderr, "recdistill plot: --y: %s\n",
                ny == 0 ? "no column" : "--group takes a single --y column");
        return 2;
    }

    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // The PNG is renamed over --out: naming the CSV there would replace the data by its plot.
    if (rd_app_out_not_stdout("recdistill plot", "--out", out, "a PNG is written to a file") != 0)
        return 2;
    if (rd_lmdbx_check_out_not_input("--out", out, "the input file", csv, &eb) != RD_OK) {
        fprintf(stderr, "recdistill plot: %s\n", eb.msg);
        return 2;
    }
    rd_csv_options opt = {.delimiter = ",", .quote = '"', .max_line = 0};
    rd_csv_reader *r = NULL;
    if (rd_csv_open(csv, &opt, &r, &eb) != RD_OK) {
        fprintf(stderr, "recdistill plot: %s\n", eb.msg);
        return 1;
    }
    int rc = 1;
    pt *pts[RD_PLOT_MAX_SERIES] = {0};
    double *xs[RD_PLOT_MAX_SERIES] = {0}, *ys[RD_PLOT_MAX_SERIES] = {0};
    size_t npts[RD_PLOT_MAX_SERIES] = {0};
    char gname[RD_PLOT_MAX_SERIES][MAX_GROUP + 1];
    int ng = 0;
    int xi = -1, yi[RD_PLOT_MAX_SERIES], gi = -1;
    const rd_csv_field *f;
    size_t nf, rows = 0;
    int st = rd_csv_next(r, &f, &nf, &eb);
    if (st <= 0) {
        if (st < 0)
            fprintf(stderr, "recdistill plot: %s\n", eb.msg);
        else
            fprintf(stderr, "recdistill plot: %s: empty file (no header row)\n", csv);
        goto fn_fail;
    }
    if ((xi = col_index(f, nf, xcol, csv)) < 0)
        goto fn_fail;
    for (int k = 0; k < ny; k++)
        if ((yi[k] = col_index(f, nf, yname[k], csv)) < 0)
            goto fn_fail;
    if (group && (gi = col_index(f, nf, group, csv)) < 0)
        goto fn_fail;
    for (int k = 0; k < RD_PLOT_MAX_SERIES; k++)
        pts[k] = rd_xmalloc(MAX_ROWS * sizeof **pts);
    if (!group)
        ng = ny;
    while ((st = rd_csv_next(r, &f, &nf, &eb)) == 1) {
        if (++rows > MAX_ROWS) {
            fprintf(stderr, "recdistill plot: %s: more than %d rows\n", csv, MAX_ROWS);
            goto fn_fail;
        }
        double x = cell(f, nf, xi);
        if (!group) {
            for (int k = 0; k < ny; k++)
                pts[k][npts[k]++] = (pt){x, cell(f, nf, yi[k])};
            continue;
        }
        // The whole value names the series: values were cut to 63 bytes, and two that differ
        // only after those (run folders or config paths of one long prefix) were drawn as one
        // line, without a word. A longer value than the series names hold is refused.
        char g[MAX_GROUP + 1] = "";
        size_t gl = (size_t)gi < nf ? f[gi].len : 0;
        if (gl > MAX_GROUP) {
            fprintf(stderr,
                    "recdistill plot: %s: data row %zu: a value of '%s' longer than %d bytes\n",
                    csv, rows, group, MAX_GROUP);
            goto fn_fail;
        }
        if (gl)
            memcpy(g, f[gi].ptr, gl);
        g[gl] = 0;
        int k = 0;
        while (k < ng && strcmp(gname[k], g) != 0)
            k++;
        if (k == ng) {
            if (ng == RD_PLOT_MAX_SERIES) {
                fprintf(stderr, "recdistill plot: %s: more than %d values of '%s'\n", csv,
                        RD_PLOT_MAX_SERIES, group);
                goto fn_fail;
            }
            snprintf(gname[ng++], sizeof gname[0], "%s", g);
        }
        pts[k][npts[k]++] = (pt){x, cell(f, nf, yi[0])};
    }
    if (st < 0) {
        fprintf(stderr, "recdistill plot: %s\n", eb.msg);
        goto fn_fail;
    }
    // Sort each series by x and split into arrays; count the points the plot can draw. A log axis
    // has no place for a value <= 0: rd_plot leaves such a point out, so it is not counted, and
    // said (an --log-y of a channel that is 0 at one rank, or of nothing but zeros, drew fewer
    // points than "plot: ... (N points)" said, or an empty plot, without a word).
    size_t valid = 0, off_log = 0;
    rd_plot p;
    rd_plot_init(&p);
    snprintf(p.title, sizeof p.title, "%s", title);
    snprintf(p.xlabel, sizeof p.xlabel, "%s", xlabel ? xlabel : xcol);
    snprintf(p.ylabel, sizeof p.ylabel, "%s", ylabel ? ylabel : (ny == 1 ? yname[0] : ""));
    p.log_x = log_x;
    p.log_y = log_y;
    p.ymin = ymin;
    p.ymax = ymax;
    for (int k = 0; k < ng; k++) {
        qsort(pts[k], npts[k], sizeof **pts, cmp_pt);
        xs[k] = rd_xmalloc((npts[k] ? npts[k] : 1) * sizeof(double));
        ys[k] = rd_xmalloc((npts[k] ? npts[k] : 1) * sizeof(double));
        for (size_t i = 0; i < npts[k]; i++) {
            xs[k][i] = pts[k][i].x;
            ys[k][i] = pts[k][i].y;
            if (isfinite(xs[k][i]) && isfinite(ys[k][i])) {
                if ((log_x && xs[k][i] <= 0) || (log_y && ys[k][i] <= 0))
                    off_log++;
                else
                    valid++;
            }
        }
        // The label whole: rd_plot keeps a long one's head and tail, and draws what fits the
        // legend. It was cut here to 95 bytes ending in "...", and that again to 63 by rd_plot,
        // so the series of group values longer than that (run folders of one prefix) had one
        // and the same legend line.
        if (group) {
            size_t len = strlen(group) + 3 + strlen(gname[k]) + 1;
            char *label = rd_xmalloc(len);
            snprintf(label, len, "%s = %s", group, gname[k]);
            rd_plot_add(&p, label, xs[k], ys[k], npts[k]);
            rd_free(label);
        } else {
            rd_plot_add(&p, yname[k], xs[k], ys[k], npts[k]);
        }
    }
    const char *log_axes = log_x && log_y ? "--log-x or --log-y" : log_x ? "--log-x" : "--log-y";
    if (valid == 0) {
        if (off_log)
            fprintf(stderr,
                    "recdistill plot: %s: every point (%zu) has a value <= 0 on the log axis "
                    "(%s): nothing to draw\n",
                    csv, off_log, log_axes);
        else
            fprintf(stderr,
                    "recdistill plot: %s: no row has numbers in both '%s' and the y column\n", csv,
                    xcol);
        goto fn_fail;
    }
    if (off_log)
        fprintf(stderr,
                "recdistill plot: %s: %zu point(s) with a value <= 0 left out: a log axis (%s) "
                "has no place for them\n",
                csv, off_log, log_axes);
    // Missing parent folders of --out are made (as the other tools' --out), and removed again
    // when the PNG cannot be written.
    if (rd_app_write_png(&p, out, &eb) != RD_OK) {
        fprintf(stderr, "recdistill plot: %s\n", eb.msg);
        goto fn_fail;
    }
    printf("plot: %s (%zu points)\n", out, valid);
    rc = 0;
fn_fail:
    for (int k = 0; k < RD_PLOT_MAX_SERIES; k++) {
        rd_free(pts[k]);
        rd_free(xs[k]);
        rd_free(ys[k]);
    }
    rd_csv_close(r);
    return rc;
}
