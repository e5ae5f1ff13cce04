// rd/traffic.h — communication accounting: messages and bytes per channel, sent and received,
// counted where the traffic is (the KV client, the token client, the target sender/receiver, the
// dense allreduce), summed over ranks and reported in report.json under "comm".
//
// Defines:
//   rd_chan                   the channels (RD_CHAN_PS_PULL ... RD_CHAN_ALLREDUCE)
//   rd_traffic_dir            one direction of one channel: messages and bytes
//   rd_traffic                every channel, both directions (plain struct: sent as bytes)
//   rd_traffic_chan_name()    "ps_pull", "ps_push", ...
//   rd_traffic_count()        add one or more messages to a channel
//   rd_traffic_add()          dst += src
//   rd_traffic_total()        bytes of every channel (sent or received)
//   rd_traffic_reduce()       sum over the ranks of a communicator to one root (polled)
//   rd_traffic_allreduce_cost()  what a bandwidth-optimal allreduce moves per rank
//   rd_traffic_write_json()   the "comm" object of report.json
//
// What is counted: whole MPI messages as the application hands them to MPI, headers included
// (the 64-byte rd_msg header of PS requests and replies, the target and credit headers).
// The transport's own framing (UCX/TCP headers) is not visible and not counted. MPI_Allreduce
// hides the algorithm MPICH picks, so the allreduce channel counts the cost of the
// bandwidth-optimal ring / reduce-scatter + allgather schedule instead: per rank 2 (W - 1)
// messages and 2 (W - 1) / W * n * 4 bytes in each direction for n floats over W ranks (MPICH's
// recursive-doubling choice for short vectors moves log2(W) * n * 4 bytes: more, not less).
// Channels a run does not use stay zero (e.g. token_fetch while the trainer has no token branch).
// "ps_ctl" holds the PS traffic that is neither pull nor push nor checkpoint: CLOCK, STATS, ATTACH,
// SHUTDOWN. "ps_ckpt" holds the checkpoint SAVE and LOAD requests and their replies: a request
// carries the checkpoint folder's path, so its bytes grow with the path (run.out_dir) and its
// messages with the number of checkpoints; apart from it (and the total), the same run reports
// the same traffic wherever its run folder is.
#ifndef RD_TRAFFIC_H
#define RD_TRAFFIC_H

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rd_chan {
    RD_CHAN_PS_PULL = 0,      // worker <-> PS: PULL requests (keys) and replies (rows)
    RD_CHAN_PS_PUSH = 1,      // worker <-> PS: PUSH requests (keys + gradients) and acks
    RD_CHAN_PS_CTL = 2,       // worker <-> PS: CLOCK, STATS, ATTACH, SHUTDOWN
    RD_CHAN_PS_CKPT = 3,      // worker <-> PS: checkpoint SAVE and LOAD (they carry its path)
    RD_CHAN_TOKEN_FETCH = 4,  // worker <-> PS: instance-token fetches
    RD_CHAN_TOKEN_APPEND = 5, // worker <-> PS: instance-token appends
    RD_CHAN_TARGETS = 6,      // teacher <-> student: distillation targets and credits
    RD_CHAN_ALLREDUCE = 7,    // worker <-> worker of one job: dense gradient averaging
    RD_CHAN_COUNT = 8,
} rd_chan;

typedef struct rd_traffic_dir {
    uint64_t msgs;  // messages
    uint64_t bytes; // bytes of those messages, headers included
} rd_traffic_dir;

typedef struct rd_traffic {
    rd_traffic_dir sent[RD_CHAN_COUNT];
    rd_traffic_dir recv[RD_CHAN_COUNT];
} rd_traffic;

/** @return the channel's report name ("ps_pull", ...), or "?" out of range. */
const char *rd_traffic_chan_name(int chan);

/** Count `msgs` messages of `bytes` bytes in all on channel chan; dir 0 = sent, 1 = received.
 *  t may be NULL (nothing counted). */
void rd_traffic_count(rd_traffic *t, int chan, int dir, uint64_t msgs, uint64_t bytes);

/** dst += src, channel by channel. */
void rd_traffic_add(rd_traffic *dst, const rd_traffic *src);

/** @return 1 when both ends of the channel's messages are counted (targets, allreduce: peers
 *  that both run the accounting), 0 when only the worker side is (PS and token channels: the
 *  server does not count). */
int rd_traffic_both_ends(int chan);

/** @return bytes that crossed between processes on channel chan: sent + received for channels
 *  counted at one end only, sent for channels counted at both ends (whose received bytes are
 *  the same messages again). Summed over ranks, this is the channel's network traffic. */
uint64_t rd_traffic_wire_bytes(const rd_traffic *t, int chan);

/**
 * Sum `mine` over the ranks of comm into *sum on `root` (MPI_Ireduce completed by polling with
 * backoff up to poll_us_max microseconds: a rank that waits here does not spin a core). Collective.
 * On the other ranks *sum is left untouched.
 */
void rd_traffic_reduce(
    const rd_traffic *mine, rd_traffic *sum, int root, MPI_Comm comm, int poll_us_max);

/** Cost of one allreduce of n floats over W ranks, per rank and direction, as counted on the
 *  allreduce channel: *msgs = 2 (W - 1) and *bytes = floor(2 (W - 1) * 4 n / W) (the ring's
 *  reduce-scatter plus allgather, W - 1 chunks of n / W floats each). Zero for W <= 1. */
void rd_traffic_allreduce_cost(uint64_t n, int W, uint64_t *msgs, uint64_t *bytes);

/**
 * Write the "comm" object (no key, no trailing comma): "samples" (the divisor), then for each
 * channel {"msgs_sent", "bytes_sent", "msgs_recv", "bytes_recv", "wire_bytes",
 * "bytes_per_sample", "msgs_per_sample"} (per sample = wire bytes, or messages crossing, divided
 * by samples), then "total" with the same per-sample figures over every channel.
 * samples = 0 writes null per sample.
 * @param[in] indent  prefix of every line after the first
 */
void rd_traffic_write_json(FILE *f, const rd_traffic *t, uint64_t samples, const char *indent);

#ifdef __cplusplus
}
#endif
#endif // RD_TRAFFIC_H
