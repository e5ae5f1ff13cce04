// traffic.c — per-channel message and byte counters (rd/traffic.h): names, sums, the polled
// reduction to one rank, the allreduce cost model and the report's "comm" object.
//
// Invariants: counters only grow; a struct is plain uint64_t fields, so it is reduced over MPI as
// an array of 4 * RD_CHAN_COUNT uint64_t.
#include "rd/traffic.h"

#include "rd/comm.h"
#include "rd/error.h"
#include "rd/numfmt.h"

#include <string.h>

static const char *const chan_names[RD_CHAN_COUNT] = {
    "ps_pull",     "ps_push",      "ps_ctl",  "ps_ckpt",
    "token_fetch", "token_append", "targets", "allreduce",
};

const char *rd_traffic_chan_name(int chan) {
    return chan >= 0 && chan < RD_CHAN_COUNT ? chan_names[chan] : "?";
}

void rd_traffic_count(rd_traffic *t, int chan, int dir, uint64_t msgs, uint64_t bytes) {
    if (!t)
        return;
    RD_ASSERT(chan >= 0 && chan < RD_CHAN_COUNT && (dir == 0 || dir == 1));
    rd_traffic_dir *d = dir == 0 ? &t->sent[chan] : &t->recv[chan];
    d->msgs += msgs;
    d->bytes += bytes;
}

void rd_traffic_add(rd_traffic *dst, const rd_traffic *src) {
    for (int c = 0; c < RD_CHAN_COUNT; c++) {
        dst->sent[c].msgs += src->sent[c].msgs;
        dst->sent[c].bytes += src->sent[c].bytes;
        dst->recv[c].msgs += src->recv[c].msgs;
        dst->recv[c].bytes += src->recv[c].bytes;
    }
}

int rd_traffic_both_ends(int chan) {
    return chan == RD_CHAN_TARGETS || chan == RD_CHAN_ALLREDUCE;
}

uint64_t rd_traffic_wire_bytes(const rd_traffic *t, int chan) {
    RD_ASSERT(chan >= 0 && chan < RD_CHAN_COUNT);
    if (rd_traffic_both_ends(chan))
        return t->sent[chan].bytes;
    return t->sent[chan].bytes + t->recv[chan].bytes;
}

static uint64_t wire_msgs(const rd_traffic *t, int chan) {
    if (rd_traffic_both_ends(chan))
        return t->sent[chan].msgs;
    return t->sent[chan].msgs + t->recv[chan].msgs;
}

void rd_traffic_reduce(
    const rd_traffic *mine, rd_traffic *sum, int root, MPI_Comm comm, int poll_us_max) {
    // Both structs are arrays of uint64_t (static assert below); a separate receive buffer
    // keeps *sum untouched on non-root ranks.
    _Static_assert(sizeof(rd_traffic) == 4 * RD_CHAN_COUNT * sizeof(uint64_t),
                   "rd_traffic must be plain uint64_t counters");
    rd_traffic in = *mine, out;
    memset(&out, 0, sizeof out);
    MPI_Request r;
    RD_MPI_CHECK(MPI_Ireduce(&in, &out, 4 * RD_CHAN_COUNT, MPI_UINT64_T, MPI_SUM, root, comm, &r));
    rd_comm_wait(&r, poll_us_max);
    int me;
    RD_MPI_CHECK(MPI_Comm_rank(comm, &me));
    if (me == root)
        *sum = out;
}

void rd_traffic_allreduce_cost(uint64_t n, int W, uint64_t *msgs, uint64_t *bytes) {
    if (W <= 1) {
        *msgs = 0;
        *bytes = 0;
        return;
    }
    uint64_t w = (uint64_t)W;
    *msgs = 2 * (w - 1);
    *bytes = 2 * (w - 1) * 4 * n / w;
}

// v / samples in full (rd_fmt_double): "%.3f" left one significant digit of a message count per
// sample at a large batch (ps_ctl at 2048 a step: 0.001 for 0.00111), and 0.000 beyond.
static void per_sample(FILE *f, uint64_t v, uint64_t samples) {
    char buf[RD_FMT_DOUBLE_MAX];
    if (samples == 0) {
        fputs("null", f);
    } else {
        rd_fmt_double((double)v / (double)samples, buf);
        fputs(buf, f);
    }
}

void rd_traffic_write_json(FILE *f, const rd_traffic *t, uint64_t samples, const char *indent) {
    uint64_t tot_bytes = 0, tot_msgs = 0;
    fprintf(f, "{\n%s  \"samples\": %llu,\n", indent, (unsigned long long)samples);
    for (int c = 0; c < RD_CHAN_COUNT; c++) {
        uint64_t wb = rd_traffic_wire_bytes(t, c), wm = wire_msgs(t, c);
        tot_bytes += wb;
        tot_msgs += wm;
        fprintf(f,
                "%s  \"%s\": {\"msgs_sent\": %llu, \"bytes_sent\": %llu, \"msgs_recv\": %llu, "
                "\"bytes_recv\": %llu, \"wire_bytes\": %llu, \"bytes_per_sample\": ",
                indent, chan_names[c], (unsigned long long)t->sent[c].msgs,
                (unsigned long long)t->sent[c].bytes, (unsigned long long)t->recv[c].msgs,
                (unsigned long long)t->recv[c].bytes, (unsigned long long)wb);
        per_sample(f, wb, samples);
        fputs(", \"msgs_per_sample\": ", f);
        per_sample(f, wm, samples);
        fputs("},\n", f);
    }
    fprintf(f,
            "%s  \"total\": {\"wire_bytes\": %llu, \"msgs\": %llu, \"bytes_per_sample\": ", indent,
            (unsigned long long)tot_bytes, (unsigned long long)tot_msgs);
    per_sample(f, tot_bytes, samples);
    fputs(", \"msgs_per_sample\": ", f);
    per_sample(f, tot_msgs, samples);
    fprintf(f, "}\n%s}", indent);
}
