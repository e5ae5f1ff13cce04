// rd/scalemodel.h — a performance model of synchronous data-parallel training on the sharded PS,
// calibrated from measured per-sample compute and bytes, projecting step time, throughput and
// efficiency to many nodes for a given network bandwidth and latency (docs/scaling.md).
//
// Defines:
//   rd_scale_calib            measured inputs (plain struct; loaded from a `key: value` file)
//   rd_scale_calib_load()     parse and validate a calibration file
//   rd_scale_net              the network and layout to project for
//   rd_scale_point            one projected node count: the terms of a step and the totals
//   rd_scale_eval()           evaluate the model at one node count
//   rd_scale_term_name()      "compute", "ps_network", "ps_server", "allreduce"
//
// The model (per synchronous step; W = nodes * workers_per_node worker ranks, P = PS shards,
// B = batch per worker, U = B * keys_per_sample unique keys a worker pulls and pushes):
//   compute    B * compute_us_per_sample                                  (dense fwd + bwd + opt)
//   shards hit S = P * (1 - (1 - 1/P)^U)   (distinct shards U hashed keys land on)
//   ps_network 3 lat + workers_per_node * B * ps_bytes_per_sample / bw + (5 S + 2 P) msg_overhead
//              (pull round trip + push; the node's NIC carries all its workers' rows; 5 messages
//              per shard touched: pull request + header + values, push request + ack; and a
//              clock + ack to every shard)
//   ps_server  2 * keys_max * ps_key_ns + W (5 S / P + 2) msg_overhead + bytes_max / bw
//              keys_max = W (U - H) / P + W ceil(H / P): the busiest shard's keys per step when
//              H hot keys are in every worker's batch (hashing spreads the rest evenly);
//              bytes_max = keys_max * ps_bytes_per_sample / keys_per_sample
//   allreduce  2 log2(W) lat + 2 (W - 1) / W * 4 dense_params / bw        (0 for W = 1)
//   step       overlap: max(compute, ps_network, ps_server) + allreduce
//              no overlap: compute + ps_network + ps_server + allreduce
//   throughput W * B / step; efficiency = throughput / (nodes * throughput of 1 node with 1 PS
//              shard, same network and overlap).
// The bottleneck of a point is its largest term among those that add to the step.
#ifndef RD_SCALEMODEL_H
#define RD_SCALEMODEL_H

#include <stdint.h>

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_scale_calib {
    double compute_us_per_sample;    // dense step time per sample of one worker rank, us
    double batch_per_worker;         // samples per worker step (train.batch_size)
    double dense_params;             // floats averaged by the allreduce each step
    double ps_bytes_per_sample;      // ps_pull + ps_push wire bytes per trained sample
    double ctl_bytes_per_sample;     // ps_ctl wire bytes per sample (informative; in the table)
    double targets_bytes_per_sample; // distillation target bytes per sample (student NIC)
    double keys_per_sample;          // unique keys pulled per sample per worker step
    double ps_key_ns;                // PS server time per key of a pull or a push, ns
    double msg_overhead_us;          // software cost of one message at either end, us
    double hot_keys;                 // keys present in every worker's batch (0 = none)
} rd_scale_calib;

typedef enum rd_scale_term {
    RD_SCALE_COMPUTE = 0,
    RD_SCALE_PS_NETWORK = 1,
    RD_SCALE_PS_SERVER = 2,
    RD_SCALE_ALLREDUCE = 3,
    RD_SCALE_TERMS = 4,
} rd_scale_term;

typedef struct rd_scale_net {
    double bw_gbps;       // network bandwidth per node, GB/s (bytes: 12.5 = 100 Gb/s)
    double lat_us;        // one-way latency, us
    int workers_per_node; // worker ranks per node (>= 1)
    double ps_per_node;   // PS shards per node (P = max(1, round(nodes * ps_per_node)))
    int fixed_ps;         // > 0: P fixed at this many shards whatever the node count
    int overlap;          // 1: next pull overlapped with compute (the trainer's default)
} rd_scale_net;

typedef struct rd_scale_point {
    int nodes, workers, ps;
    double shards_hit; // S
    double term_us[RD_SCALE_TERMS];
    double step_us;
    double samples_per_s;
    double efficiency;       // vs nodes * (throughput of 1 node with 1 PS shard)
    int bottleneck;          // rd_scale_term
    double bytes_per_sample; // wire bytes per sample of one worker (PS + allreduce share)
} rd_scale_point;

/**
 * Load a calibration file: `key: value` lines (the field names of rd_scale_calib), '#' comments,
 * every key required exactly once except hot_keys and ctl_bytes_per_sample and
 * targets_bytes_per_sample (default 0).
 * Upper bounds (far beyond real measurements; they keep the model finite): dense_params 1e13,
 * every other key 1e9 (us, bytes, keys, samples or ns per its unit).
 * @return RD_OK, RD_ERR_IO (cannot read), RD_ERR_PARSE ("FILE:LINE: ..." for an unknown or
 *         duplicate key, a value that is not a finite number >= 0, a missing key; positive
 *         required for batch_per_worker, keys_per_sample, compute_us_per_sample),
 *         RD_ERR_RANGE ("FILE:LINE: compute_us_per_sample: '1e308' is out of range (0, 1e9]")
 */
int rd_scale_calib_load(const char *path, rd_scale_calib *c, rd_errbuf *eb);

/**
 * Evaluate the model at `nodes` (>= 1); the efficiency compares with the model at 1 node and
 * 1 PS shard.
 * @return RD_OK, RD_ERR_ARG (nodes < 1, bw <= 0, lat < 0, workers_per_node < 1), RD_ERR_RANGE
 *         (a figure of the point is not finite, or the step time is not > 0: "scale model at N
 *         nodes: step_us is inf: ..."); never a point with an inf or NaN figure
 */
int rd_scale_eval(const rd_scale_calib *c,
                  const rd_scale_net *net,
                  int nodes,
                  rd_scale_point *out,
                  rd_errbuf *eb);

const char *rd_scale_term_name(int term);

#ifdef __cplusplus
}
#endif
#endif // RD_SCALEMODEL_H
