// comm_traffic.c — the communication accounting (rd/traffic.h) against what the protocol says
// (4 ranks).
//
// Session A: 1 PS + 1 worker (world ranks {0, 1}). N steps of pull / push / clock of batches with
// duplicates, deduplicated by rd_kv_dedup: the worker's ps_pull, ps_push and ps_ctl counters
// must equal exactly the sizes predicted from the unique-key counts and the wire format
// (64-byte header per message; a pull request carries 8 bytes per key and is answered by a
// header message plus a values message of 4 * dim bytes per key; a push carries 8 + 4 * dim
// bytes per key and is answered by a header; a clock is a header each way per PS rank).
// Session A runs twice: with ps.shm off (all by MPI), then with ps.shm auto (same node: each
// pull/push message is the header + a 32-byte descriptor, its keys, gradients and values cross
// through the shared-memory region and are counted all the same; a pull is answered by one
// header message; one ATTACH each way on ps_ctl). Session B runs with ps.shm off.
// Session B: 2 PS + 2 workers (all 4 ranks). The same unique keys of every step, split between
// the two workers in two different ways (parity of the position, then halves): summed over the
// workers with rd_traffic_reduce, the payload bytes (bytes minus 64 per message) of pull and push
// must equal session A's, whatever the split, and the messages must be one per (worker, shard)
// that got keys. The dense allreduce of n floats over the 2 workers must count 2 (W - 1)
// messages and 2 (W - 1) * 4n / W bytes each way, and average correctly.
// A control: a deliberately wrong prediction (one key fewer) must not match, so the comparison
// can fail.
#include "ps_test_util.h"

#include "rd/dense_optim.h"
#include "rd/traffic.h"

#define N_STEPS 5
#define BATCH   96
#define DIM     8
#define HDR     RD_MSG_HEADER_BYTES

static int g_errs;

// The unique keys of step s (the same in every session): a batch of BATCH draws from 300 keys
// (duplicates on purpose), deduplicated.
static size_t step_keys(int s, uint64_t *uniq) {
    uint64_t raw[BATCH];
    uint32_t inv[BATCH];
    rd_rng r;
    rd_rng_seed(&r, 77 + (uint64_t)s);
    for (size_t i = 0; i < BATCH; i++)
        raw[i] = 1 + rd_rng_below(&r, 300);
    size_t nu = 0;
    size_t sb = rd_kv_dedup_scratch_bytes(BATCH);
    void *scratch = rd_xmalloc(sb);
    RD_ASSERT(rd_kv_dedup(raw, BATCH, uniq, inv, &nu, scratch, sb) == RD_OK);
    rd_free(scratch);
    return nu;
}

// ---------------------------------------------------------------------------------------------
// Session A: exact prediction.

static int session_a(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *ctx) {
    (void)comm;
    (void)ctx;
    int errs = 0;
    const int shm = cfg->ps.shm == RD_SHM_AUTO;
    const uint64_t D = shm ? RD_MSG_SHM_DESC_BYTES : 0; // per pull/push request message
    uint64_t uniq[BATCH];
    float vals[BATCH * DIM], grads[BATCH * DIM];
    uint64_t total_u = 0;
    for (int s = 0; s < N_STEPS; s++) {
        size_t nu = step_keys(s, uniq);
        total_u += nu;
        int tp, tq;
        T_CHECK(&errs, rd_kv_pull(kv, 0, uniq, nu, vals, &tp) == RD_OK, "pull");
        T_CHECK(&errs, rd_kv_wait(kv, tp) == RD_OK, "pull wait: %s", rd_kv_errmsg(kv));
        for (size_t i = 0; i < nu * DIM; i++)
            grads[i] = 0.01f * vals[i];
        T_CHECK(&errs, rd_kv_push(kv, 0, uniq, grads, nu, &tq) == RD_OK, "push");
        int tc;
        T_CHECK(&errs, rd_kv_clock(kv, &tc) == RD_OK, "clock");
        T_CHECK(&errs, rd_kv_wait(kv, tq) == RD_OK, "push wait: %s", rd_kv_errmsg(kv));
        T_CHECK(&errs, rd_kv_wait(kv, tc) == RD_OK, "clock wait: %s", rd_kv_errmsg(kv));
    }
    rd_traffic t;
    memset(&t, 0, sizeof t);
    rd_kv_add_traffic(kv, &t);
    const uint64_t n = N_STEPS;
    // Pull: N requests of 64 (+ D) + 8u, 2N replies (header, then values 4 * DIM * u); with
    // shared memory N header replies, the values through the region.
    T_CHECK(&errs, t.sent[RD_CHAN_PS_PULL].msgs == n, "pull msgs sent %llu",
            (unsigned long long)t.sent[RD_CHAN_PS_PULL].msgs);
    T_CHECK(&errs, t.sent[RD_CHAN_PS_PULL].bytes == n * (HDR + D) + 8 * total_u,
            "pull bytes sent %llu, predicted %llu (shm %d)",
            (unsigned long long)t.sent[RD_CHAN_PS_PULL].bytes,
            (unsigned long long)(n * (HDR + D) + 8 * total_u), shm);
    T_CHECK(&errs, t.recv[RD_CHAN_PS_PULL].msgs == (shm ? n : 2 * n), "pull msgs recv %llu",
            (unsigned long long)t.recv[RD_CHAN_PS_PULL].msgs);
    T_CHECK(&errs, t.recv[RD_CHAN_PS_PULL].bytes == n * HDR + 4 * DIM * total_u,
            "pull bytes recv %llu, predicted %llu",
            (unsigned long long)t.recv[RD_CHAN_PS_PULL].bytes,
            (unsigned long long)(n * HDR + 4 * DIM * total_u));
    // Control: one key fewer must not match.
    T_CHECK(&errs, t.sent[RD_CHAN_PS_PULL].bytes != n * (HDR + D) + 8 * (total_u - 1), "control");
    // Push: N requests of 64 + (8 + 4 DIM) u, N header replies.
    T_CHECK(&errs, t.sent[RD_CHAN_PS_PUSH].msgs == n && t.recv[RD_CHAN_PS_PUSH].msgs == n,
            "push msgs %llu / %llu", (unsigned long long)t.sent[RD_CHAN_PS_PUSH].msgs,
            (unsigned long long)t.recv[RD_CHAN_PS_PUSH].msgs);
    T_CHECK(&errs, t.sent[RD_CHAN_PS_PUSH].bytes == n * (HDR + D) + (8 + 4 * DIM) * total_u,
            "push bytes sent %llu", (unsigned long long)t.sent[RD_CHAN_PS_PUSH].bytes);
    T_CHECK(&errs, t.recv[RD_CHAN_PS_PUSH].bytes == n * HDR, "push bytes recv %llu",
            (unsigned long long)t.recv[RD_CHAN_PS_PUSH].bytes);
    // Clock: a header each way per step (one PS rank); shm: one ATTACH (+ its payload) each way.
    const uint64_t a = shm ? 1 : 0;
    T_CHECK(&errs,
            t.sent[RD_CHAN_PS_CTL].msgs == n + a &&
                t.sent[RD_CHAN_PS_CTL].bytes == (n + a) * HDR + a * RD_MSG_ATTACH_BYTES &&
                t.recv[RD_CHAN_PS_CTL].msgs == n + a &&
                t.recv[RD_CHAN_PS_CTL].bytes == (n + a) * HDR,
            "ctl %llu msgs %llu bytes sent, %llu / %llu recv",
            (unsigned long long)t.sent[RD_CHAN_PS_CTL].msgs,
            (unsigned long long)t.sent[RD_CHAN_PS_CTL].bytes,
            (unsigned long long)t.recv[RD_CHAN_PS_CTL].msgs,
            (unsigned long long)t.recv[RD_CHAN_PS_CTL].bytes);
    // Nothing on the other channels; the wire total is sent + received (PS side not counted).
    for (int c = RD_CHAN_TOKEN_FETCH; c < RD_CHAN_COUNT; c++)
        T_CHECK(&errs, t.sent[c].bytes == 0 && t.recv[c].bytes == 0, "%s not zero",
                rd_traffic_chan_name(c));
    T_CHECK(&errs,
            rd_traffic_wire_bytes(&t, RD_CHAN_PS_PULL) ==
                t.sent[RD_CHAN_PS_PULL].bytes + t.recv[RD_CHAN_PS_PULL].bytes,
            "wire bytes of pull");
    return errs;
}

// ---------------------------------------------------------------------------------------------
// Session B: split-independence of the payload, messages per (worker, shard), allreduce.

typedef struct split_ctx {
    uint64_t payload_pull[2]; // summed over workers, per split: bytes sent - 64 * msgs
    uint64_t payload_push[2];
    uint64_t msgs_pull[2];
    uint64_t expect_msgs[2]; // (worker, shard) pairs with keys, summed over steps and workers
} split_ctx;

static int session_b(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *ctx) {
    (void)cfg;
    split_ctx *sc = ctx;
    int errs = 0;
    const int me = comm->job_rank, W = comm->job_size;
    uint64_t uniq[BATCH], mine[BATCH];
    float vals[BATCH * DIM], grads[BATCH * DIM];
    rd_traffic before;
    memset(&before, 0, sizeof before);
    for (int split = 0; split < 2; split++) {
        uint64_t exp_msgs = 0;
        for (int s = 0; s < N_STEPS; s++) {
            size_t nu = step_keys(s, uniq), nm = 0;
            for (size_t i = 0; i < nu; i++) {
                int owner = split == 0 ? (int)(i % 2) : (i < nu / 3 ? 0 : 1);
                if (owner == me)
                    mine[nm++] = uniq[i];
            }
            int has[2] = {0, 0};
            for (size_t i = 0; i < nm; i++)
                has[rd_shard_of(mine[i], comm->n_ps)] = 1;
            exp_msgs += (uint64_t)(has[0] + has[1]);
            int tp, tq;
            T_CHECK(&errs, rd_kv_pull(kv, 0, mine, nm, vals, &tp) == RD_OK, "pull");
            T_CHECK(&errs, rd_kv_wait(kv, tp) == RD_OK, "pull wait: %s", rd_kv_errmsg(kv));
            for (size_t i = 0; i < nm * DIM; i++)
                grads[i] = 0.01f;
            T_CHECK(&errs, rd_kv_push(kv, 0, mine, grads, nm, &tq) == RD_OK, "push");
            T_CHECK(&errs, rd_kv_clock(kv, NULL) == RD_OK, "clock");
            T_CHECK(&errs, rd_kv_wait(kv, tq) == RD_OK, "push wait: %s", rd_kv_errmsg(kv));
        }
        T_CHECK(&errs, rd_kv_wait_all(kv) == RD_OK, "wait_all: %s", rd_kv_errmsg(kv));
        // This split's traffic = counters now - counters before it.
        rd_traffic now, d, sum;
        memset(&now, 0, sizeof now);
        rd_kv_add_traffic(kv, &now);
        d = now;
        for (int c = 0; c < RD_CHAN_COUNT; c++) {
            d.sent[c].msgs -= before.sent[c].msgs;
            d.sent[c].bytes -= before.sent[c].bytes;
            d.recv[c].msgs -= before.recv[c].msgs;
            d.recv[c].bytes -= before.recv[c].bytes;
        }
        before = now;
        // Stash the expected message count in an unused channel so that it is summed too.
        d.sent[RD_CHAN_TOKEN_FETCH].msgs = exp_msgs;
        memset(&sum, 0, sizeof sum);
        rd_traffic_reduce(&d, &sum, 0, comm->job, 100);
        if (me == 0) {
            sc->msgs_pull[split] = sum.sent[RD_CHAN_PS_PULL].msgs;
            sc->payload_pull[split] =
                sum.sent[RD_CHAN_PS_PULL].bytes - HDR * sum.sent[RD_CHAN_PS_PULL].msgs;
            sc->payload_push[split] =
                sum.sent[RD_CHAN_PS_PUSH].bytes - HDR * sum.sent[RD_CHAN_PS_PUSH].msgs;
            sc->expect_msgs[split] = sum.sent[RD_CHAN_TOKEN_FETCH].msgs;
            // Values come back for exactly the keys asked for (two reply messages per request:
            // a header, then the values without one).
            T_CHECK(&errs, sum.recv[RD_CHAN_PS_PULL].msgs == 2 * sum.sent[RD_CHAN_PS_PULL].msgs,
                    "split %d: pull replies", split);
            T_CHECK(&errs,
                    sum.recv[RD_CHAN_PS_PULL].bytes - HDR * sum.sent[RD_CHAN_PS_PULL].msgs ==
                        sc->payload_pull[split] / 8 * 4 * DIM,
                    "split %d: pull values bytes", split);
        }
    }

    // Dense allreduce over the job (W = 2): cost and the average.
    enum { NF = 37 };
    float g[NF];
    for (int i = 0; i < NF; i++)
        g[i] = (float)(me + 1) * (float)i;
    rd_traffic at;
    memset(&at, 0, sizeof at);
    rd_dense_allreduce_counted(g, NF, comm->job, &at);
    uint64_t m = 0, b = 0;
    rd_traffic_allreduce_cost(NF, W, &m, &b);
    T_CHECK(&errs, m == 2 && b == 2 * 4 * NF / 2, "cost model %llu msgs %llu bytes",
            (unsigned long long)m, (unsigned long long)b);
    T_CHECK(&errs,
            at.sent[RD_CHAN_ALLREDUCE].msgs == m && at.recv[RD_CHAN_ALLREDUCE].msgs == m &&
                at.sent[RD_CHAN_ALLREDUCE].bytes == b && at.recv[RD_CHAN_ALLREDUCE].bytes == b,
            "allreduce counted %llu / %llu", (unsigned long long)at.sent[RD_CHAN_ALLREDUCE].msgs,
            (unsigned long long)at.sent[RD_CHAN_ALLREDUCE].bytes);
    for (int i = 0; i < NF; i++)
        T_CHECK(&errs, fabsf(g[i] - 1.5f * (float)i) <= 1e-5f * (1.0f + (float)i),
                "allreduce value %d: %g", i, (double)g[i]);
    return errs;
}

int main(int argc, char **argv) {
    RD_MPI_CHECK(MPI_Init(&argc, &argv));
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rd_log_init(RD_LOG_LEVEL_WARN, rank, NULL);
    if (size != 4) {
        if (rank == 0)
            fprintf(stderr, "comm_traffic needs 4 ranks\n");
        MPI_Finalize();
        return 1;
    }
    static rd_config cfg;

    // A: world ranks {0, 1}.
    static const char *const names1[] = {"w"};
    int ranks1[] = {1};
    t_config(&cfg, 1, 1, names1, ranks1);
    t_table(&cfg, "t", DIM, RD_OPT_SGD, 0.1f);
    MPI_Comm two = t_first_ranks(2);
    if (two != MPI_COMM_NULL) {
        cfg.ps.shm = RD_SHM_OFF;
        g_errs += t_session(two, &cfg, session_a, NULL);
        cfg.ps.shm = RD_SHM_AUTO;
        g_errs += t_session(two, &cfg, session_a, NULL);
        MPI_Comm_free(&two);
    }
    t_barrier(MPI_COMM_WORLD);

    // A's payload, computed again on every rank for the comparison with B.
    uint64_t uniq[BATCH], total_u = 0;
    for (int s = 0; s < N_STEPS; s++)
        total_u += step_keys(s, uniq);

    // B: all 4 ranks, 2 PS + 2 workers.
    int ranks2[] = {2};
    t_config(&cfg, 2, 1, names1, ranks2);
    cfg.ps.shm = RD_SHM_OFF;
    t_table(&cfg, "t", DIM, RD_OPT_SGD, 0.1f);
    split_ctx sc;
    memset(&sc, 0, sizeof sc);
    g_errs += t_session(MPI_COMM_WORLD, &cfg, session_b, &sc);
    if (rank == 2) { // job rank 0 of session B
        for (int k = 0; k < 2; k++) {
            T_CHECK(&g_errs, sc.payload_pull[k] == 8 * total_u,
                    "split %d: pull payload %llu, session A %llu", k,
                    (unsigned long long)sc.payload_pull[k], (unsigned long long)(8 * total_u));
            T_CHECK(&g_errs, sc.payload_push[k] == (8 + 4 * DIM) * total_u,
                    "split %d: push payload %llu, session A %llu", k,
                    (unsigned long long)sc.payload_push[k],
                    (unsigned long long)((8 + 4 * DIM) * total_u));
            T_CHECK(&g_errs, sc.msgs_pull[k] == sc.expect_msgs[k] && sc.msgs_pull[k] > N_STEPS,
                    "split %d: %llu pull messages, %llu (worker, shard) pairs", k,
                    (unsigned long long)sc.msgs_pull[k], (unsigned long long)sc.expect_msgs[k]);
        }
    }
    int rc = t_finish("comm_traffic", g_errs);
    MPI_Finalize();
    return rc;
}
