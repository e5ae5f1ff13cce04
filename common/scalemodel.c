// scalemodel.c — the calibrated performance model of rd/scalemodel.h: the calibration file
// parser and the evaluation of one node count. Pure arithmetic, no MPI, no allocation.
#include "rd/scalemodel.h"

#include "rd/lmdbx.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Calibration file

typedef struct field {
    const char *name;
    size_t off;
    int required;        // 1 required, 0 optional (default 0)
    int positive;        // 1 must be > 0
    double max;          // largest value accepted (far beyond any real machine or model)
    const char *max_txt; // max as written in messages and docs
} field;

// Upper bounds keep every term of the model finite (a huge input made the step inf and the
// efficiency NaN, printed with exit 0); each is orders of magnitude beyond a real measurement.
#define FIELD(n, req, pos, mx)                                                                     \
    { #n, offsetof(rd_scale_calib, n), req, pos, mx, #mx }
static const field fields[] = {
    FIELD(compute_us_per_sample, 1, 1, 1e9), FIELD(batch_per_worker, 1, 1, 1e9),
    FIELD(dense_params, 1, 0, 1e13),         FIELD(ps_bytes_per_sample, 1, 0, 1e9),
    FIELD(ctl_bytes_per_sample, 0, 0, 1e9),  FIELD(targets_bytes_per_sample, 0, 0, 1e9),
    FIELD(keys_per_sample, 1, 1, 1e9),       FIELD(ps_key_ns, 1, 0, 1e9),
    FIELD(msg_overhead_us, 1, 0, 1e9),       FIELD(hot_keys, 0, 0, 1e9),
};
#undef FIELD
#define N_FIELDS (sizeof fields / sizeof fields[0])

// One line of f into buf (cap bytes, NUL-terminated, its '\n' kept if it fits): 0 at the end
// of the file with nothing read. *cut: the line was longer and its rest was read and dropped, so
// that its tail is not read as the next line; *nul: the line holds a NUL byte.
static int read_line(FILE *f, char *buf, size_t cap, int *cut, int *nul) {
    size_t n = 0;
    int ch, any = 0;
    *cut = *nul = 0;
    while ((ch = fgetc(f)) != EOF) {
        any = 1;
        if (ch == 0)
            *nul = 1;
        if (n + 1 < cap)
            buf[n++] = (char)ch;
        else
            *cut = 1;
        if (ch == '\n')
            break;
    }
    buf[n] = 0;
    return any;
}

int rd_scale_calib_load(const char *path, rd_scale_calib *c, rd_errbuf *eb) {
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f); // a FIFO as --calib hung in fopen()
    if (o != 0) {
        const char *why = o > 0 ? "not a regular file" : strerror(errno); // before rd_err_path
        return rd_err_set(eb, RD_ERR_IO, "%s: cannot read: %s", rd_err_path(path).s, why);
    }
    memset(c, 0, sizeof *c);
    int seen[N_FIELDS] = {0};
    char line[512];
    int lineno = 0, rc = RD_OK, cut, nul;
    while (rc == RD_OK && read_line(f, line, sizeof line, &cut, &nul)) {
        lineno++;
        // A NUL byte ends the line's text early: with fgets, a '#' before it made the line look
        // cut, and the rest of the *next* line was dropped as its tail (a key lost, no word).
        if (nul) {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%d: a NUL byte in the line (not a text file?)",
                            path, lineno);
            break;
        }
        // A line longer than the buffer (its rest dropped by read_line): fine inside a comment;
        // a key: value must fit.
        char *hash = strchr(line, '#');
        if (cut && !hash) {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%d: line longer than %zu bytes", path, lineno,
                            sizeof line - 2);
            break;
        }
        if (hash)
            *hash = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strlen(p);
        while (len && (p[len - 1] == '\n' || p[len - 1] == '\r' || p[len - 1] == ' ' ||
                       p[len - 1] == '\t'))
            p[--len] = 0;
        if (!*p)
            continue;
        char *colon = strchr(p, ':');
        if (!colon) {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%d: expected 'key: value', got '%s'", path,
                            lineno, p);
            break;
        }
        *colon = 0;
        char *key = p, *val = colon + 1;
        size_t kl = strlen(key);
        while (kl && (key[kl - 1] == ' ' || key[kl - 1] == '\t'))
            key[--kl] = 0;
        while (*val == ' ' || *val == '\t')
            val++;
        size_t k = 0;
        while (k < N_FIELDS && strcmp(fields[k].name, key) != 0)
            k++;
        if (k == N_FIELDS) {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%d: unknown key '%s'", path, lineno, key);
            break;
        }
        if (seen[k]) {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%d: duplicate key '%s'", path, lineno, key);
            break;
        }
        char *end = NULL;
        errno = 0;
        double v = strtod(val, &end);
        // Decimal only: strtod also reads hex ("0x10" is 16), which no calibration writes.
        if (!*val || *end || strspn(val, "0123456789.eE+-") != strlen(val) || errno ||
            !isfinite(v) || v < 0 || (fields[k].positive && v <= 0)) {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%d: %s: '%s' is not a finite number %s", path,
                            lineno, key, val, fields[k].positive ? "> 0" : ">= 0");
            break;
        }
        if (v > fields[k].max) {
            rc = rd_err_set(eb, RD_ERR_RANGE, "%s:%d: %s: '%s' is out of range %s, %s]", path,
                            lineno, key, val, fields[k].positive ? "(0" : "[0", fields[k].max_txt);
            break;
        }
        *(double *)(void *)((char *)c + fields[k].off) = v;
        seen[k] = 1;
    }
    if (rc == RD_OK && ferror(f))
        rc = rd_err_set(eb, RD_ERR_IO, "%s: read error", path);
    fclose(f);
    for (size_t k = 0; rc == RD_OK && k < N_FIELDS; k++)
        if (fields[k].required && !seen[k])
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s: missing key '%s'", path, fields[k].name);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Model

static const char *const term_names[RD_SCALE_TERMS] = {"compute", "ps_network", "ps_server",
                                                       "allreduce"};

const char *rd_scale_term_name(int term) {
    return term >= 0 && term < RD_SCALE_TERMS ? term_names[term] : "?";
}

static int shards_of(const rd_scale_net *net, int nodes) {
    if (net->fixed_ps > 0)
        return net->fixed_ps;
    long p = lround((double)nodes * net->ps_per_node);
    return p < 1 ? 1 : (int)p;
}

static void
eval_point(const rd_scale_calib *c, const rd_scale_net *net, int nodes, rd_scale_point *o) {
    memset(o, 0, sizeof *o);
    const double B = c->batch_per_worker, lat = net->lat_us;
    const double bw = net->bw_gbps * 1e3; // bytes per microsecond
    const int W = nodes * net->workers_per_node, P = shards_of(net, nodes);
    const double U = B * c->keys_per_sample;
    const double S = P == 1 ? 1.0 : (double)P * (1.0 - pow(1.0 - 1.0 / (double)P, U));
    const double H = c->hot_keys < U ? c->hot_keys : U;
    o->nodes = nodes;
    o->workers = W;
    o->ps = P;
    o->shards_hit = S;

    double *t = o->term_us;
    t[RD_SCALE_COMPUTE] = B * c->compute_us_per_sample;
    t[RD_SCALE_PS_NETWORK] = 3.0 * lat +
                             (double)net->workers_per_node * B * c->ps_bytes_per_sample / bw +
                             (5.0 * S + 2.0 * (double)P) * c->msg_overhead_us;
    // The busiest shard: its even share of the ordinary keys plus every worker's request for
    // each hot key it holds.
    double keys_max = (double)W * (U - H) / (double)P + (double)W * ceil(H / (double)P);
    double bytes_per_key = c->ps_bytes_per_sample / c->keys_per_sample;
    t[RD_SCALE_PS_SERVER] = 2.0 * keys_max * c->ps_key_ns * 1e-3 +
                            (double)W * (5.0 * S / (double)P + 2.0) * c->msg_overhead_us +
                            keys_max * bytes_per_key / bw;
    if (W > 1)
        t[RD_SCALE_ALLREDUCE] = 2.0 * log2((double)W) * lat +
                                2.0 * (double)(W - 1) / (double)W * 4.0 * c->dense_params / bw;
    if (net->overlap) {
        double m = t[RD_SCALE_COMPUTE];
        int arg = RD_SCALE_COMPUTE;
        for (int k = RD_SCALE_PS_NETWORK; k <= RD_SCALE_PS_SERVER; k++)
            if (t[k] > m) {
                m = t[k];
                arg = k;
            }
        o->step_us = m + t[RD_SCALE_ALLREDUCE];
        o->bottleneck = t[RD_SCALE_ALLREDUCE] > m ? RD_SCALE_ALLREDUCE : arg;
    } else {
        int arg = 0;
        for (int k = 0; k < RD_SCALE_TERMS; k++) {
            o->step_us += t[k];
            if (t[k] > t[arg])
                arg = k;
        }
        o->bottleneck = arg;
    }
    o->samples_per_s = (double)W * B / o->step_us * 1e6;
    o->bytes_per_sample =
        c->ps_bytes_per_sample + c->ctl_bytes_per_sample + c->targets_bytes_per_sample +
        (W > 1 ? 2.0 * (double)(W - 1) / (double)W * 4.0 * c->dense_params / B : 0.0);
}

int rd_scale_eval(const rd_scale_calib *c,
                  const rd_scale_net *net,
                  int nodes,
                  rd_scale_point *out,
                  rd_errbuf *eb) {
    if (nodes < 1 || !(net->bw_gbps > 0) || !(net->lat_us >= 0) || net->workers_per_node < 1 ||
        (net->fixed_ps == 0 && !(net->ps_per_node > 0)) || net->fixed_ps < 0)
        return rd_err_set(eb, RD_ERR_ARG,
                          "scale model: nodes %d, bandwidth %g GB/s, latency %g us, %d workers "
                          "per node, %g PS per node: need nodes >= 1, bandwidth > 0, latency >= "
                          "0, workers >= 1, PS per node > 0 (or a fixed PS count)",
                          nodes, net->bw_gbps, net->lat_us, net->workers_per_node,
                          net->ps_per_node);
    // The reference: one node with one PS shard, same network and overlap (a fixed shard
    // count would otherwise make a lone worker fan out to all of them).
    rd_scale_net ref = *net;
    ref.fixed_ps = 1;
    rd_scale_point one;
    eval_point(c, &ref, 1, &one);
    eval_point(c, net, nodes, out);
    out->efficiency = out->samples_per_s / ((double)nodes * one.samples_per_s);
    // Inputs inside their ranges keep every figure finite, but extreme combinations (a tiny
    // batch with a tiny compute time and no network cost) still divide by zero or overflow: an
    // error, never an inf or NaN row.
    const double *fig[] = {&out->term_us[RD_SCALE_COMPUTE],
                           &out->term_us[RD_SCALE_PS_NETWORK],
                           &out->term_us[RD_SCALE_PS_SERVER],
                           &out->term_us[RD_SCALE_ALLREDUCE],
                           &out->step_us,
                           &out->samples_per_s,
                           &out->efficiency,
                           &out->bytes_per_sample};
    static const char *const fig_name[] = {"compute_us",   "ps_network_us",   "ps_server_us",
                                           "allreduce_us", "step_us",         "samples/s",
                                           "efficiency",   "bytes_per_sample"};
    for (size_t i = 0; i < sizeof fig / sizeof fig[0]; i++)
        if (!isfinite(*fig[i]) || (i == 4 && !(*fig[i] > 0)))
            return rd_err_set(eb, RD_ERR_RANGE,
                              "scale model at %d nodes: %s is %g: the inputs are out of the "
                              "model's range (too large or too small)",
                              nodes, fig_name[i], *fig[i]);
    return RD_OK;
}
