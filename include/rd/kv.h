// rd/kv.h — the worker-side client of the sharded embedding parameter server (ps-lite style
// push / pull / wait, in C over MPI).
//
// Defines:
//   rd_kv                 opaque client, one per worker rank
//   rd_kv_create/destroy
//   rd_kv_table(), rd_kv_dim()       table lookups (index = position in cfg.ps.tables)
//   rd_kv_dedup()         batch keys -> sorted unique keys + inverse index (call before pull/push)
//   rd_kv_pull()          non-blocking: rows of unique sorted keys -> vals, returns a timestamp
//   rd_kv_push()          non-blocking: gradients of unique sorted keys, returns a timestamp
//   rd_kv_clock()         end of this worker's step (sync: the server applies the step when all
//                         workers of the job clocked it)
//   rd_kv_wait() / rd_kv_wait_all()  complete requests (polls with backoff: never spins a core)
//   rd_kv_test()          non-blocking completion check
//   rd_kv_set_time() / rd_kv_time()  stream time carried by the next requests (last-seen, TTL
//                         eviction)
//   rd_kv_set_read()      the next pulls are reads (evaluation): no last-seen, no admission
//   rd_kv_step() / rd_kv_set_step()
//   rd_kv_stats()         table statistics summed over the shards (and per shard)
//   rd_kv_save() / rd_kv_load()   consistent checkpoints of PS tables (rd/checkpoint.h)
//   rd_kv_shutdown()      tell every PS rank this worker is done (rd_ps_serve returns when all did)
//   rd_kv_errmsg(), rd_kv_get_counters()
//   rd_kv_add_traffic()   this client's messages and bytes on ps_pull / ps_push / ps_ctl
//
// Sharding: key k lives on PS rank rd_shard_of(k, P) — by HASH, not by key range. ps-lite splits
// [0, 2^64) into P contiguous ranges, so small or clustered ids pile onto one server (the "hot
// range" problem, dmlc/ps-lite#119); hashing spreads any key set evenly and makes a key's shard
// independent of the other keys. A pull/push is split per shard (one message per shard, split
// further only if it would exceed ps.max_msg_bytes). Each request is gathered into one
// contiguous [header | keys | grads] buffer (so MPI moves it with a single copy, CMA on one
// node); with P = 1 a pull's values are received straight into the caller's vals.
//
// Same-node shared memory (ps.shm auto, the default): at its first pull or push the client
// creates one region of ps.shm_bytes (an anonymous memfd; virtual, pages are used as requests
// need them) and asks each PS rank it talks to to map it (ATTACH, once per PS rank, blocking).
// A PS rank on this node maps it; one on another node refuses and keeps getting MPI requests.
// With a mapped region, a request's keys (and gradients) are written straight into a range of
// the region, and only the 64-byte header plus a 32-byte descriptor go through MPI; the server
// reads them in place and writes a pull's values into a second range, and its reply is a header
// alone; the client then copies the values into vals (scatters them, P > 1). Ranges are freed
// when the request is waited on. A request that does not fit the free part of the region goes
// through MPI. The counters and traffic count the bytes that cross between the processes,
// whichever way they travel (header + descriptor + keys + gradients; header + values).
//
// A typical synchronous training step (ps.sync = 1) of worker w, overlapping the next batch:
//     rd_kv_dedup(batch_keys, n, uniq, inv, &nu, scratch, scratch_bytes);
//     rd_kv_pull(kv, t, uniq, nu, vals, &ts_pull);       // step s
//     rd_kv_wait(kv, ts_pull);
//     ... forward/backward with vals, gradients summed per unique key into grads ...
//     rd_kv_push(kv, t, uniq, grads, nu, &ts_push);
//     rd_kv_set_time(kv, batch_end_time);
//     rd_kv_clock(kv, NULL);                             // step s is over for this worker
//     ... dedup the next batch, issue its pull (step s+1: the server answers it once every
//         worker's step s is applied), then rd_kv_wait(kv, ts_push) before touching grads ...
// In async mode (ps.sync = 0) pushes are applied on arrival and pulls of step s+1 are answered
// at once (or once every worker clocked s+1-staleness steps with ps.staleness > 0).
//
// Buffers: keys and grads given to pull/push must stay unchanged, and vals must not be read,
// until rd_kv_wait on the returned timestamp returns (ps-lite ZPush semantics). The client
// never writes keys or grads. Every timestamp must be waited on once (256 may be outstanding).
// Errors: functions return RD_OK or a negative rd_status; rd_kv_errmsg() holds the detail of
// the last failure (including the server's error text). Not thread-safe: one thread per rd_kv.
#ifndef RD_KV_H
#define RD_KV_H

#include <stddef.h>
#include <stdint.h>

#include "rd/comm.h"
#include "rd/config.h"
#include "rd/error.h"
#include "rd/table.h"
#include "rd/traffic.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_KV_MAX_HANDLES 256 // outstanding timestamps per client

typedef struct rd_kv rd_kv;

typedef struct rd_kv_counters {
    uint64_t messages;    // requests sent
    uint64_t bytes_sent;  // request bytes incl. 64-byte headers
    uint64_t bytes_recv;  // reply bytes incl. headers
    uint64_t keys_pulled; // keys in completed pulls
    uint64_t keys_pushed; // keys in completed pushes
} rd_kv_counters;

/**
 * @param[in]  comm  layout; must be a worker rank. Borrowed: must outlive the client.
 * @param[in]  cfg   run config (ps tables, sync, max_msg_bytes, cluster.poll_us_max). Borrowed.
 * @param[out] out   free with rd_kv_destroy
 * @return RD_OK, RD_ERR_ARG (not a worker rank), RD_ERR_CONFIG (no tables), RD_ERR_NOMEM
 */
int rd_kv_create(const rd_comm *comm, const rd_config *cfg, rd_kv **out, rd_errbuf *eb);
/** Free the client. Outstanding requests are waited for first. Accepts NULL. Does not send
 *  SHUTDOWN (call rd_kv_shutdown). */
void rd_kv_destroy(rd_kv *kv);

/** @return the index of table `name`, or RD_ERR_NOTFOUND. */
int rd_kv_table(const rd_kv *kv, const char *name);
/** @return the dim of table `table`, or RD_ERR_RANGE. */
int rd_kv_dim(const rd_kv *kv, int table);

/** Scratch bytes rd_kv_dedup needs for n keys (at most 80 per key, and 12 KiB). */
size_t rd_kv_dedup_scratch_bytes(size_t n);
/**
 * Sort and deduplicate a batch's keys: uniq[0..*n_uniq) strictly increasing, and keys[i] ==
 * uniq[inverse[i]]. Expected linear time: a hash table finds the distinct keys, a radix sort
 * orders them (a batch's keys repeat a lot: the distinct ones are what costs).
 * @param[out] uniq     (n) capacity
 * @param[out] inverse  (n)
 * @return RD_OK, RD_ERR_ARG (key 0, n >= 2^32, scratch too small)
 */
int rd_kv_dedup(const uint64_t *keys,
                size_t n,
                uint64_t *uniq,
                uint32_t *inverse,
                size_t *n_uniq,
                void *scratch,
                size_t scratch_bytes);

/**
 * Start pulling the rows of `keys` (strictly increasing, non-zero) of `table` into vals.
 * @param[out] vals  (n, dim); valid after rd_kv_wait(ts) returns RD_OK
 * @param[out] ts    timestamp to wait on
 * @return RD_OK (request sent), RD_ERR_ARG (bad table, unsorted/duplicate/zero keys; nothing
 *         sent), RD_ERR_FULL (too many outstanding requests), RD_ERR_STATE (after shutdown).
 *         Server-side failures are reported by rd_kv_wait.
 */
int rd_kv_pull(rd_kv *kv, int table, const uint64_t *keys, size_t n, float *vals, int *ts);

/**
 * Start pushing gradients (n, dim) of `keys` (strictly increasing, non-zero). In sync mode the
 * server sums them with the other workers' gradients of the same step and applies the optimizer
 * when every worker has clocked the step. Same return codes as rd_kv_pull.
 */
int rd_kv_push(rd_kv *kv, int table, const uint64_t *keys, const float *grads, size_t n, int *ts);

/**
 * End this worker's current step: a CLOCK to every PS rank carrying the step and the stream
 * time, then step += 1. ts may be NULL: the request is then completed by later calls and an
 * error surfaces at the next rd_kv_wait / rd_kv_wait_all.
 */
int rd_kv_clock(rd_kv *kv, int *ts);

/** Wait for the request `ts` (polling with backoff). @return RD_OK, the server's status for it
 *  (e.g. RD_ERR_NOTFOUND, RD_ERR_PROTO, RD_ERR_NOMEM, RD_ERR_STATE), RD_ERR_PROTO for a
 *  malformed reply, or an error kept from a detached clock. Waiting twice returns RD_OK. */
int rd_kv_wait(rd_kv *kv, int ts);
/** Non-blocking: progress request `ts`; *done = 1 when it completed (it is then released and
 *  its status returned, as rd_kv_wait would), else *done = 0 and RD_OK. */
int rd_kv_test(rd_kv *kv, int ts, int *done);
/** Wait for every outstanding request. @return the first error, or RD_OK. */
int rd_kv_wait_all(rd_kv *kv);

/**
 * Stream time (seconds) sent with the next requests; default 0. It stays until set again: a
 * worker with no records of its own in a step clocks it with the time it set last, and the PS
 * takes the latest time among a job's clocks as the "now" of TTL eviction (ps/server.c). So a
 * time set only for reads (evaluation, scoring: rd_kv_set_read, which need none) must not
 * outlive them: the caller saves it with rd_kv_time() and sets it back afterwards, or the
 * job's rows are evicted against a stream time it has not trained to.
 */
void rd_kv_set_time(rd_kv *kv, int64_t stream_time);
/** The stream time set last (rd_kv_set_time), 0 if none. */
int64_t rd_kv_time(const rd_kv *kv);
/**
 * Make the next pulls reads (on != 0: evaluation, scoring) or training pulls (0, the default).
 * A read answers the same values (the key's row, or its initial value) but leaves the table as
 * it was: no last-seen time (so a key only evaluated is not kept from TTL eviction), no admission
 * sighting, no new row, no `pulled` count (RD_MSG_FLAG_READ). Serving reads the same way
 * (rd_table_read). Pushes, clocks and the other requests are unaffected.
 */
void rd_kv_set_read(rd_kv *kv, int on);
/** This worker's step: the number of rd_kv_clock calls since creation (or the loaded step). */
int64_t rd_kv_step(const rd_kv *kv);
/** Set the step (after another rank of the job ran rd_kv_load). */
void rd_kv_set_step(rd_kv *kv, int64_t step);

/**
 * Statistics of `table`, summed over the shards (now = max). Blocking.
 * @param[out] total      sum
 * @param[out] per_shard  (P) or NULL
 */
int rd_kv_stats(rd_kv *kv, int table, rd_table_stats *total, rd_table_stats *per_shard);

/**
 * Checkpoint `tables` (NULL = every table of cfg.ps) into `dir` (a fresh directory; shared by
 * all PS ranks): each shard writes its LMDB env at the consistent cut "steps 0..s-1 applied",
 * s = rd_kv_step(kv) (sync mode: the server waits for that point and has not applied anything
 * of step s yet), then this client writes the MANIFEST. Blocking. Call it from one rank of the
 * job (e.g. job rank 0) between rd_kv_clock and the next step's push; the other workers may go
 * on with step s meanwhile. In async mode the cut is only approximately consistent.
 * @return RD_OK, RD_ERR_ARG, RD_ERR_EXISTS (dir holds this checkpoint already), RD_ERR_IO,
 *         RD_ERR_LMDB, ... with the detail in eb.
 */
int rd_kv_save(rd_kv *kv, const char *dir, const int *tables, int n_tables, rd_errbuf *eb);

/**
 * Restore `tables` (NULL = every table of cfg.ps) from checkpoint `dir` (same number of PS ranks,
 * same table names, dims, optimizers and seed; every shard's CRC is checked) and set this
 * worker's step and the server's step of this job to the checkpoint's step. Blocking. Call it
 * from one rank of the job before any pull, then share *step with the other ranks of the job
 * (rd_kv_set_step) and synchronise them before they pull. All shards or none: each shard first
 * reads and verifies its file into tables kept aside (meanwhile the job's pulls, pushes, clocks
 * and saves wait on that shard), and they are installed only when every shard succeeded;
 * otherwise every shard drops them and the error names the first shard that refused.
 * @return RD_OK, RD_ERR_NOTFOUND (no MANIFEST), RD_ERR_SCHEMA (layout differs), RD_ERR_CONFIG
 *         (seed differs), RD_ERR_CORRUPT (CRC), RD_ERR_STATE (the job is mid-step on some
 *         shard), ...
 */
int rd_kv_load(
    rd_kv *kv, const char *dir, const int *tables, int n_tables, int64_t *step, rd_errbuf *eb);

/** Wait for everything, then send SHUTDOWN to every PS rank and wait for the acks. Every worker
 *  rank of every job must call it once (also those that never used the PS). */
int rd_kv_shutdown(rd_kv *kv);

/** Detail of the last error ("" if none). Valid until the next call on kv. */
const char *rd_kv_errmsg(const rd_kv *kv);
void rd_kv_get_counters(const rd_kv *kv, rd_kv_counters *c);
/** Add this client's traffic so far into *t: every request message (64-byte header + payload)
 *  as sent, every reply message (a pull's header message and its values message count as two)
 *  as received, on RD_CHAN_PS_PULL, RD_CHAN_PS_PUSH or RD_CHAN_PS_CTL by the request's op
 *  (ATTACH on ps_ctl). A shared-memory request counts one message of 64 + 32 bytes plus its
 *  keys and gradients as sent, and its pull reply one header message plus the values (moved
 *  through the region, no message) as received. */
void rd_kv_add_traffic(const rd_kv *kv, rd_traffic *t);

/** Tests only: make `ts` the next timestamp issued (to reach the wrap past INT_MAX). */
void rd__kv_set_next_ts(rd_kv *kv, int ts);

#ifdef __cplusplus
}
#endif
#endif // RD_KV_H
