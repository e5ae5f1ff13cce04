// test_tokens_rpc.c — the token store's MPI path: workers append and fetch through the owning
// PS ranks (rd_token_client -> rd_token_service on rd_server), side by side with an rd_kv client
// on the same communicator.
//
// Usage: mpiexec -n N test_tokens_rpc P   (P PS ranks, N - P workers in one job; testlist runs
// N=2/P=1, where every fetch is received in place, and N=4/P=2, where fetches are split per
// rank and scattered back). The store has 2P shards (shard s is served by PS rank s % P).
// Phases:
//   1. rank 0 creates the store; every PS rank opens its shards and serves them;
//   2. each worker appends its users' records through the client (small max_msg_bytes, so
//      appends are split into many messages), with duplicated timestamps;
//   3. after a job barrier every worker fetches every user at random times (several fetches in
//      flight, one of them overlapped with an rd_kv pull) and compares with a local reference:
//      exactly the last min(L, count) records strictly before t, tokens bit-exact, mask and zero
//      padding right;
//   3b. fetches beyond the reply bound of a second client (max_reply_bytes 4 KiB): fetch_start
//      splits each rank's requests over many messages, with the rows of one unsplit fetch;
//      one request beyond the bound is refused; rd_token_client_fetch's pieces agree;
//   2b. worker 0 asks every PS rank to map its shards for serving (RD_TOKEN_OP_MAP: re-read in
//      2 MiB pages where the node allows it) and checks the summed stats, then sends malformed
//      MAP requests by hand and gets the PS's error texts; the fetches of 3 run after it;
//   4. errors: a NaN token is refused by the PS with its message; bad arguments locally;
//   5. shutdown; each PS rank verifies its shards and counts the records.
// Failures are counted per rank and summed with MPI_Allreduce; rank 0 reports.
#include "ps_test_util.h"

#include "rd/traffic.h"

#include "rd/tokens.h"

#define DIM              8
#define SIDE             2 // side values per record (store version 2)
#define USERS_PER_WORKER 30
#define RECS_PER_USER    40

static int g_errs;

// Records of user u: k = 0..RECS_PER_USER-1 with ts = k / 2 (pairs share a timestamp), id = k.
static int64_t rec_ts(int k) {
    return k / 2;
}

static float tok(uint64_t user, int k, int j) {
    return (float)(rd_mix64(user * 1000003u + (uint64_t)k * 131u + (uint64_t)j) >> 41) / 1024.0f;
}

static float sidev(uint64_t user, int k, int j) {
    return (float)(user % 7) + 0.5f * (float)k - 3.0f * (float)j;
}

static uint64_t user_key(int w, int i) {
    return rd_mix64((uint64_t)(w * 1000 + i) + 99);
}

// ---------------------------------------------------------------------------------------------
// Worker

static void append_phase(rd_token_client *cl, int w) {
    const int n = USERS_PER_WORKER * RECS_PER_USER;
    uint64_t *users = rd_xmalloc((size_t)n * 8), *ids = rd_xmalloc((size_t)n * 8);
    uint64_t *items = rd_xmalloc((size_t)n * 8);
    int64_t *ts = rd_xmalloc((size_t)n * 8);
    float *tokens = rd_xmalloc((size_t)n * DIM * 4), *labels = rd_xmalloc((size_t)n * 4);
    float *side = rd_xmalloc((size_t)n * SIDE * 4);
    // Newest records first: the PS must sort them.
    int m = 0;
    for (int k = RECS_PER_USER - 1; k >= 0; k--)
        for (int i = 0; i < USERS_PER_WORKER; i++) {
            users[m] = user_key(w, i);
            ts[m] = rec_ts(k);
            ids[m] = (uint64_t)k;
            items[m] = (uint64_t)k * 7;
            labels[m] = (float)(k % 2);
            for (int j = 0; j < DIM; j++)
                tokens[(size_t)m * DIM + j] = tok(users[m], k, j);
            for (int j = 0; j < SIDE; j++)
                side[(size_t)m * SIDE + j] = sidev(users[m], k, j);
            m++;
        }
    rd_token_batch b = {(size_t)n, users, ts, ids, tokens, labels, items, NULL, side};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_token_client_append(cl, &b, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "append: %s", eb.msg);
    uint64_t sent = 0, msgs = 0;
    rd_token_client_counters(cl, &sent, NULL, &msgs);
    T_CHECK(&g_errs, msgs > 2, "appends were not split (%llu messages)", (unsigned long long)msgs);
    // Traffic accounting (rd/traffic.h): so far everything is on the append channel, and it
    // equals the client's totals; one reply per request.
    rd_traffic tr;
    memset(&tr, 0, sizeof tr);
    rd_token_client_add_traffic(cl, &tr);
    T_CHECK(&g_errs,
            tr.sent[RD_CHAN_TOKEN_APPEND].msgs == msgs &&
                tr.sent[RD_CHAN_TOKEN_APPEND].bytes == sent &&
                tr.recv[RD_CHAN_TOKEN_APPEND].msgs == msgs &&
                tr.sent[RD_CHAN_TOKEN_FETCH].msgs == 0 && tr.recv[RD_CHAN_TOKEN_FETCH].bytes == 0,
            "append traffic: %llu msgs %llu bytes counted, client %llu / %llu",
            (unsigned long long)tr.sent[RD_CHAN_TOKEN_APPEND].msgs,
            (unsigned long long)tr.sent[RD_CHAN_TOKEN_APPEND].bytes, (unsigned long long)msgs,
            (unsigned long long)sent);
    rd_free(users);
    rd_free(ids);
    rd_free(items);
    rd_free(ts);
    rd_free(tokens);
    rd_free(labels);
    rd_free(side);
}

// Expected result of fetch(user of worker w, t, L) in row r of out.
// bid: the request's before id (0 = strictly before t): records at t with a lower id count too.
static void
check_row(const rd_token_fetch_out *o, size_t r, size_t L, int w, int i, int64_t t, uint64_t bid) {
    uint64_t u = user_key(w, i);
    int count = 0; // records with a key below (t, bid): the records are in key order
    for (int k = 0; k < RECS_PER_USER; k++)
        if (rec_ts(k) < t || (rec_ts(k) == t && (uint64_t)k < bid))
            count++;
    int want = count < (int)L ? count : (int)L;
    T_CHECK(&g_errs, o->n_found[r] == (uint32_t)want, "user %d/%d t %lld: found %u, want %d", w, i,
            (long long)t, o->n_found[r], want);
    if (o->n_found[r] != (uint32_t)want)
        return;
    for (int s = 0; s < (int)L; s++) {
        size_t at = r * L + (size_t)s;
        if (s < want) {
            int k = count - want + s;
            T_CHECK(&g_errs, o->ts == NULL || o->ts[at] == rec_ts(k), "ts %lld, want %lld",
                    o->ts ? (long long)o->ts[at] : 0LL, (long long)rec_ts(k));
            T_CHECK(&g_errs,
                    o->ts == NULL || o->ts[at] < t ||
                        (o->ts[at] == t && o->ids && o->ids[at] < bid),
                    "leak: ts %lld >= t %lld", o->ts ? (long long)o->ts[at] : 0LL, (long long)t);
            T_CHECK(&g_errs, o->ids == NULL || o->ids[at] == (uint64_t)k, "id");
            T_CHECK(&g_errs, o->items == NULL || o->items[at] == (uint64_t)k * 7, "item");
            T_CHECK(&g_errs, o->labels == NULL || o->labels[at] == (float)(k % 2), "label");
            T_CHECK(&g_errs, o->mask == NULL || o->mask[at] == 1, "mask");
            for (int j = 0; o->side && j < SIDE; j++)
                T_CHECK(&g_errs, o->side[at * SIDE + (size_t)j] == sidev(u, k, j), "side value");
            for (int j = 0; j < DIM; j++)
                T_CHECK(&g_errs, o->tokens[at * DIM + (size_t)j] == tok(u, k, j), "token");
        } else {
            T_CHECK(&g_errs, o->mask == NULL || o->mask[at] == 0, "padding mask");
            for (int j = 0; j < DIM; j++)
                T_CHECK(&g_errs, o->tokens[at * DIM + (size_t)j] == 0.0f, "padding token");
            for (int j = 0; o->side && j < SIDE; j++)
                T_CHECK(&g_errs, o->side[at * SIDE + (size_t)j] == 0.0f, "padding side value");
        }
    }
}

typedef struct fetch_buf {
    rd_token_fetch_out o;
} fetch_buf;

static void fb_init(fetch_buf *f, size_t R, size_t L, int full) {
    memset(f, 0, sizeof *f);
    f->o.tokens = rd_xmalloc(R * L * DIM * 4);
    f->o.n_found = rd_xmalloc(R * 4);
    memset(f->o.tokens, 0x7f, R * L * DIM * 4); // poison: padding must be written
    if (full) {
        f->o.labels = rd_xmalloc(R * L * 4);
        f->o.items = rd_xmalloc(R * L * 8);
        f->o.ts = rd_xmalloc(R * L * 8);
        f->o.ids = rd_xmalloc(R * L * 8);
        f->o.mask = rd_xmalloc(R * L);
        f->o.side = rd_xmalloc(R * L * SIDE * 4);
        memset(f->o.side, 0x7f, R * L * SIDE * 4);
    }
}

static void fb_free(fetch_buf *f) {
    rd_free(f->o.tokens);
    rd_free(f->o.n_found);
    rd_free(f->o.labels);
    rd_free(f->o.items);
    rd_free(f->o.ts);
    rd_free(f->o.ids);
    rd_free(f->o.mask);
    rd_free(f->o.side);
}

static void fetch_phase(rd_token_client *cl, rd_kv *kv, int W, int me, int P, int n_shards) {
    const int R = W * USERS_PER_WORKER;
    uint64_t *users = rd_xmalloc((size_t)R * 8);
    int64_t *ts = rd_xmalloc((size_t)R * 8);
    uint64_t *bid = rd_xmalloc((size_t)R * 8);
    int *ww = rd_xmalloc((size_t)R * sizeof *ww), *ii = rd_xmalloc((size_t)R * sizeof *ii);
    rd_rng r;
    rd_rng_seed(&r, 1000 + (uint64_t)me);
    const size_t Ls[3] = {1, 16, 64};
    fetch_buf fb[3];
    int h[3];
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    for (int round = 0; round < 4; round++) {
        // Three fetches in flight at once, different L; the second one without optional arrays.
        for (int q = 0; q < R; q++) {
            ww[q] = q % W;
            ii[q] = q / W;
            users[q] = user_key(ww[q], ii[q]);
            ts[q] = round == 0 && q % 5 == 0 ? INT64_MAX : (int64_t)rd_rng_below(&r, 24) - 1;
            bid[q] = round >= 2 ? rd_rng_below(&r, RECS_PER_USER + 2) : 0;
        }
        // Rounds 2 and 3 send before ids: the records of the request's own time below its id too.
        const uint64_t *ids_arg = round >= 2 ? bid : NULL;
        for (int f = 0; f < 3; f++) {
            fb_init(&fb[f], (size_t)R, Ls[f], f != 1);
            int rc = rd_token_client_fetch_start(cl, (size_t)R, users, ts, ids_arg, Ls[f], &fb[f].o,
                                                 &h[f], &eb);
            T_CHECK(&g_errs, rc == RD_OK, "fetch_start: %s", eb.msg);
        }
        // The caller's request arrays are copied at start: scribbling on them is harmless.
        int64_t *saved = rd_xmalloc((size_t)R * 8);
        uint64_t *saved_b = rd_xmalloc((size_t)R * 8);
        memcpy(saved, ts, (size_t)R * 8);
        memcpy(saved_b, bid, (size_t)R * 8);
        memset(ts, 0, (size_t)R * 8);
        memset(bid, 0xff, (size_t)R * 8);
        // An rd_kv pull on the same communicator while the fetches are in flight.
        uint64_t keys[3] = {11, 12, 13};
        float vals[3 * 4];
        int kts;
        int rc = rd_kv_pull(kv, 0, keys, 3, vals, &kts);
        T_CHECK(&g_errs, rc == RD_OK, "kv pull: %s", rd_kv_errmsg(kv));
        if (rc == RD_OK) {
            rc = rd_kv_wait(kv, kts);
            T_CHECK(&g_errs, rc == RD_OK, "kv wait: %s", rd_kv_errmsg(kv));
        }
        // Complete out of order.
        for (int f = 2; f >= 0; f--) {
            rc = rd_token_client_wait(cl, h[f], &eb);
            T_CHECK(&g_errs, rc == RD_OK, "fetch wait: %s", eb.msg);
            for (int q = 0; q < R && rc == RD_OK; q++)
                check_row(&fb[f].o, (size_t)q, Ls[f], ww[q], ii[q], saved[q], saved_b[q]);
            fb_free(&fb[f]);
        }
        rd_free(saved);
        rd_free(saved_b);
    }
    // Users of a single PS rank only (P > 1): one message, received in place.
    if (P > 1) {
        int n1 = 0;
        for (int q = 0; q < R; q++) {
            int w = q % W, i = q / W;
            uint64_t u = user_key(w, i);
            if (rd_token_ps_rank_of_shard(rd_token_shard_of_user(u, n_shards), P) == P - 1) {
                users[n1] = u;
                ts[n1] = 7;
                ww[n1] = w;
                ii[n1] = i;
                n1++;
            }
        }
        T_CHECK(&g_errs, n1 > 0, "no user on the last PS rank");
        fb_init(&fb[0], (size_t)n1, 8, 1);
        int rc = rd_token_client_fetch(cl, (size_t)n1, users, ts, NULL, 8, &fb[0].o, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "single-rank fetch: %s", eb.msg);
        for (int q = 0; q < n1 && rc == RD_OK; q++)
            check_row(&fb[0].o, (size_t)q, 8, ww[q], ii[q], 7, 0);
        fb_free(&fb[0]);
    }
    // Too many fetches in flight; bad arguments.
    fb_init(&fb[0], 1, 4, 0);
    int hs[RD_TOKEN_CLIENT_MAX_INFLIGHT + 1];
    int started = 0;
    for (int k = 0; k <= RD_TOKEN_CLIENT_MAX_INFLIGHT; k++) {
        rd_errbuf_clear(&eb);
        int rc = rd_token_client_fetch_start(cl, 1, users, ts, NULL, 4, &fb[0].o, &hs[k], &eb);
        if (k < RD_TOKEN_CLIENT_MAX_INFLIGHT) {
            T_CHECK(&g_errs, rc == RD_OK, "start %d: %s", k, eb.msg);
            started += rc == RD_OK;
        } else {
            T_CHECK(&g_errs, rc == RD_ERR_FULL, "start beyond the limit gave %d", rc);
        }
    }
    for (int k = 0; k < started; k++)
        T_CHECK(&g_errs, rd_token_client_wait(cl, hs[k], &eb) == RD_OK, "wait: %s", eb.msg);
    T_CHECK(&g_errs, rd_token_client_wait(cl, hs[0], &eb) == RD_ERR_ARG, "second wait");
    T_CHECK(&g_errs, rd_token_client_fetch(cl, 1, users, ts, NULL, 0, &fb[0].o, &eb) == RD_ERR_ARG,
            "L = 0");
    fb_free(&fb[0]);
    rd_free(users);
    rd_free(ts);
    rd_free(bid);
    rd_free(ww);
    rd_free(ii);
}

// 3b. Fetches whose replies exceed a second client's max_reply_bytes (4 KiB): fetch_start splits
// each PS rank's requests into as many messages as that takes (one request per message at
// L = 40), and the rows, masks and counts are byte for byte those of one unsplit fetch of the
// main client; the message count is what the bound implies. Three split fetches are in flight
// at once (each holds back its later messages, FETCH_WINDOW per rank); a fetch whose single
// request exceeds the bound is refused naming L; rd_token_client_fetch (the IAT builder's
// pieces) still gives the same rows; a client destroyed with a split fetch outstanding returns.
static int same_bytes(const void *a, const void *b, size_t bytes) {
    return (a == NULL && b == NULL) || (a && b && memcmp(a, b, bytes) == 0);
}

static void same_rows(const rd_token_fetch_out *x,
                      const rd_token_fetch_out *y,
                      size_t R,
                      size_t L,
                      const char *what) {
    const size_t nl = R * L;
    T_CHECK(&g_errs, same_bytes(x->n_found, y->n_found, R * 4), "%s: counts differ", what);
    T_CHECK(&g_errs, same_bytes(x->tokens, y->tokens, nl * DIM * 4), "%s: tokens differ", what);
    T_CHECK(&g_errs, same_bytes(x->mask, y->mask, nl), "%s: masks differ", what);
    T_CHECK(&g_errs, same_bytes(x->labels, y->labels, nl * 4), "%s: labels differ", what);
    T_CHECK(&g_errs, same_bytes(x->items, y->items, nl * 8), "%s: items differ", what);
    T_CHECK(&g_errs, same_bytes(x->ts, y->ts, nl * 8), "%s: ts differ", what);
    T_CHECK(&g_errs, same_bytes(x->ids, y->ids, nl * 8), "%s: ids differ", what);
    T_CHECK(&g_errs, same_bytes(x->side, y->side, nl * SIDE * 4), "%s: side values differ", what);
}

// Messages a fetch of `users` at L takes under max_reply_bytes `cap` (as the client splits).
static uint64_t
split_msgs(const uint64_t *users, size_t R, size_t L, unsigned fields, uint64_t cap, int P) {
    size_t per = R;
    while (per > 1 && rd_token_fetch_reply_bytes(per, L, DIM, SIDE, fields) > cap)
        per--;
    uint64_t msgs = 0;
    for (int r = 0; r < P; r++) {
        size_t cnt = 0;
        for (size_t q = 0; q < R; q++)
            cnt += rd_token_ps_rank_of_shard(rd_token_shard_of_user(users[q], 2 * P), P) == r;
        msgs += (cnt + per - 1) / per;
    }
    return msgs;
}

static void split_phase(const rd_comm *comm,
                        rd_token_client *ref,
                        const rd_token_store_info *info,
                        int W,
                        int me,
                        int P) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_client_opts co = {(int)info->n_shards, (int)info->dim, 100, 8 << 10,
                               (int)info->n_side,   4 << 10};
    rd_token_client *cl = NULL;
    int rc = rd_token_client_create(comm, &co, &cl, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "client: %s", eb.msg);
    if (rc != RD_OK)
        return;
    const int R = W * USERS_PER_WORKER;
    uint64_t *users = rd_xmalloc((size_t)R * 8), *bid = rd_xmalloc((size_t)R * 8);
    int64_t *ts = rd_xmalloc((size_t)R * 8);
    rd_rng r;
    rd_rng_seed(&r, 2000 + (uint64_t)me);
    // Users interleaved over the PS ranks in caller order; found counts from 0 to L.
    for (int q = 0; q < R; q++) {
        users[q] = user_key(q % W, q / W);
        ts[q] = (int64_t)rd_rng_below(&r, 24) - 1;
        bid[q] = rd_rng_below(&r, RECS_PER_USER + 2);
    }
    // L = 1: many requests per message; 16: three; 40: one (and no optional arrays at 16).
    const size_t Ls[3] = {1, 16, 40};
    fetch_buf sp[3], un[3];
    int h[3];
    // The reference first: two clients on one communicator share reply tags, so the main
    // client's fetches must not overlap this one's.
    for (int f = 0; f < 3; f++) {
        fb_init(&un[f], (size_t)R, Ls[f], f != 1);
        int hu = -1;
        int urc =
            rd_token_client_fetch_start(ref, (size_t)R, users, ts, bid, Ls[f], &un[f].o, &hu, &eb);
        T_CHECK(&g_errs, urc == RD_OK, "unsplit fetch_start: %s", eb.msg);
        if (urc == RD_OK)
            T_CHECK(&g_errs, rd_token_client_wait(ref, hu, &eb) == RD_OK, "unsplit: %s", eb.msg);
    }
    uint64_t msgs0 = 0, msgs1 = 0, want = 0;
    rd_token_client_counters(cl, NULL, NULL, &msgs0);
    for (int f = 0; f < 3; f++) {
        fb_init(&sp[f], (size_t)R, Ls[f], f != 1);
        want += split_msgs(users, (size_t)R, Ls[f], rd_token_fetch_fields(&sp[f].o),
                           co.max_reply_bytes, P);
        uint64_t before = 0, after = 0;
        rd_token_client_counters(cl, NULL, NULL, &before);
        rc =
            rd_token_client_fetch_start(cl, (size_t)R, users, ts, bid, Ls[f], &sp[f].o, &h[f], &eb);
        T_CHECK(&g_errs, rc == RD_OK, "split fetch_start L = %zu: %s", Ls[f], eb.msg);
        // At L = 40 (one request per message) fetch_start sends only the window of each rank.
        rd_token_client_counters(cl, NULL, NULL, &after);
        if (f == 2)
            T_CHECK(&g_errs, after - before == (uint64_t)(RD_TOKEN_CLIENT_FETCH_WINDOW * P),
                    "fetch_start sent %llu messages, want the window %d x %d PS ranks",
                    (unsigned long long)(after - before), RD_TOKEN_CLIENT_FETCH_WINDOW, P);
    }
    int64_t *ts0 = rd_xmalloc((size_t)R * 8);
    memcpy(ts0, ts, (size_t)R * 8);
    memset(ts, 0, (size_t)R * 8); // copied at start: scribbling on it is harmless
    for (int f = 2; f >= 0; f--) {
        if (rc == RD_OK) {
            rc = rd_token_client_wait(cl, h[f], &eb);
            T_CHECK(&g_errs, rc == RD_OK, "split wait L = %zu: %s", Ls[f], eb.msg);
        }
        char what[64];
        snprintf(what, sizeof what, "split fetch at L = %zu", Ls[f]);
        if (rc == RD_OK)
            same_rows(&sp[f].o, &un[f].o, (size_t)R, Ls[f], what);
        for (int q = 0; q < R && rc == RD_OK && f == 2; q++)
            check_row(&sp[f].o, (size_t)q, Ls[f], q % W, q / W, ts0[q], bid[q]);
    }
    memcpy(ts, ts0, (size_t)R * 8);
    rd_free(ts0);
    rd_token_client_counters(cl, NULL, NULL, &msgs1);
    T_CHECK(&g_errs, msgs1 - msgs0 == want && want > (uint64_t)(3 * P) + (uint64_t)R,
            "split fetches took %llu messages, want %llu (over %d)",
            (unsigned long long)(msgs1 - msgs0), (unsigned long long)want, 3 * P + R);
    // One request that cannot fit: refused, naming L, by both entry points.
    fetch_buf big;
    fb_init(&big, 1, 64, 1);
    T_CHECK(&g_errs, rd_token_fetch_reply_bytes(1, 64, DIM, SIDE, RD_TOKEN_FIELDS_ALL) > 4096,
            "one request at L = 64 fits 4 KiB");
    int hb = -1;
    rd_errbuf_clear(&eb);
    rc = rd_token_client_fetch_start(cl, 1, users, ts, NULL, 64, &big.o, &hb, &eb);
    T_CHECK(&g_errs,
            rc == RD_ERR_RANGE && hb == -1 && strstr(eb.msg, "one request of L = 64") &&
                strstr(eb.msg, "max_reply_bytes"),
            "one request too long: rc %d, '%s'", rc, eb.msg);
    rd_errbuf_clear(&eb);
    rc = rd_token_client_fetch(cl, 1, users, ts, NULL, 64, &big.o, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_RANGE && strstr(eb.msg, "L is too long"),
            "fetch of one request too long: rc %d, '%s'", rc, eb.msg);
    fb_free(&big);
    // The blocking fetch in pieces: the same rows again.
    fetch_buf pc;
    fb_init(&pc, (size_t)R, 16, 1);
    rc = rd_token_client_fetch(cl, (size_t)R, users, ts, bid, 16, &pc.o, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "fetch in pieces: %s", eb.msg);
    fb_init(&big, (size_t)R, 16, 1);
    if (rc == RD_OK)
        rc = rd_token_client_fetch(ref, (size_t)R, users, ts, bid, 16, &big.o, &eb);
    if (rc == RD_OK)
        same_rows(&pc.o, &big.o, (size_t)R, 16, "fetch in pieces");
    fb_free(&pc);
    fb_free(&big);
    for (int f = 0; f < 3; f++) {
        fb_free(&un[f]);
        if (f != 0)
            fb_free(&sp[f]);
    }
    // Destroyed with a split fetch outstanding: the sent messages complete, the rest are never
    // sent, nothing is written to sp[0] any more.
    rc = rd_token_client_fetch_start(cl, (size_t)R, users, ts, bid, 40, &sp[0].o, &h[0], &eb);
    T_CHECK(&g_errs, rc == RD_OK, "last fetch_start: %s", eb.msg);
    rd_token_client_destroy(cl);
    fb_free(&sp[0]);
    // A request bound too: max_msg_bytes 200 holds 7 requests with before ids (24 + 24 x 7
    // bytes), so each rank's requests go 7 to a message, with the same rows.
    co.max_msg_bytes = 200;
    co.max_reply_bytes = 0;
    rc = rd_token_client_create(comm, &co, &cl, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "client: %s", eb.msg);
    if (rc == RD_OK) {
        fb_init(&pc, (size_t)R, 16, 1);
        uint64_t m0 = 0, m1 = 0, want7 = 0;
        for (int q = 0; q < P; q++) {
            size_t cnt = 0;
            for (int k = 0; k < R; k++)
                cnt += rd_token_ps_rank_of_shard(rd_token_shard_of_user(users[k], 2 * P), P) == q;
            want7 += (cnt + 6) / 7;
        }
        rd_token_client_counters(cl, NULL, NULL, &m0);
        rc = rd_token_client_fetch(cl, (size_t)R, users, ts, bid, 16, &pc.o, &eb);
        rd_token_client_counters(cl, NULL, NULL, &m1);
        T_CHECK(&g_errs, rc == RD_OK && m1 - m0 == want7,
                "fetch under max_msg_bytes 200: rc %d (%s), %llu messages, want %llu", rc, eb.msg,
                (unsigned long long)(m1 - m0), (unsigned long long)want7);
        fb_init(&big, (size_t)R, 16, 1);
        int rrc = rd_token_client_fetch(ref, (size_t)R, users, ts, bid, 16, &big.o, &eb);
        if (rc == RD_OK && rrc == RD_OK)
            same_rows(&pc.o, &big.o, (size_t)R, 16, "fetch under max_msg_bytes");
        fb_free(&pc);
        fb_free(&big);
    }
    rd_token_client_destroy(cl);
    rd_free(users);
    rd_free(bid);
    rd_free(ts);
}

static void error_phase(rd_token_client *cl, int w) {
    uint64_t u = user_key(w, 0), id = 999;
    int64_t t = 1000;
    float bad[DIM] = {0};
    bad[3] = NAN;
    rd_token_batch b = {1, &u, &t, &id, bad, NULL, NULL, NULL, NULL};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_token_client_append(cl, &b, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_ARG, "NaN append gave %d (%s)", rc, eb.msg);
    T_CHECK(&g_errs, strstr(eb.msg, "not finite") != NULL && strstr(eb.msg, "PS rank") != NULL,
            "error text: %s", eb.msg);
}

// An error reply whose text happens to be exactly as long as the expected fetch reply is
// received into the staging buffer; its text must still reach the caller. A client that counts
// 3 shards (the store has 4) sends user u to a PS rank that does not own it, which answers
// "token fetch: user U is in shard S, owned by PS rank R; this handle (PS rank Q of 2) does not
// open it": 104 bytes for a 5-digit user, the size of a reply of one request of L = 2 with
// labels (24 + 2 x 8 x 4 + 2 x 4 + 4 + 2, padded to 104). Needs P = 2.
static void errtext_phase(const rd_comm *comm, const rd_token_store_info *info, int P) {
    if (P != 2)
        return;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_client_opts co = {
        (int)info->n_shards - 1, (int)info->dim, 100, 8 << 10, (int)info->n_side, 0};
    rd_token_client *cl = NULL;
    int rc = rd_token_client_create(comm, &co, &cl, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "client: %s", eb.msg);
    if (rc != RD_OK)
        return;
    uint64_t u = 10000;
    while (rd_token_ps_rank_of_shard(rd_token_shard_of_user(u, co.n_shards), P) ==
           rd_token_ps_rank_of_shard(rd_token_shard_of_user(u, (int)info->n_shards), P))
        u++;
    const size_t L = 2;
    T_CHECK(&g_errs,
            u < 100000 &&
                rd_token_fetch_reply_bytes(1, L, info->dim, 0, RD_TOKEN_FIELD_LABELS) == 104,
            "errtext phase set-up: user %llu", (unsigned long long)u);
    int64_t t = 5;
    float tokens[2 * DIM], labels[2];
    uint32_t nf = 0;
    rd_token_fetch_out o = {tokens, labels, NULL, NULL, NULL, NULL, &nf, NULL};
    rd_errbuf_clear(&eb);
    rc = rd_token_client_fetch(cl, 1, &u, &t, NULL, L, &o, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_ARG && strstr(eb.msg, "does not open it") != NULL,
            "fetch of another rank's user gave %d (%s)", rc, eb.msg);
    rd_token_client_destroy(cl);
}

// The built store mapped for serving on every PS rank (RD_TOKEN_OP_MAP): the ranks' stats come
// back summed; the fetch phase that follows checks the content through the re-read pages.
static void map_phase(const rd_comm *comm, rd_token_client *cl, int n_shards) {
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_map_stats st;
    int rc = rd_token_client_map_huge(cl, RD_TOKEN_HUGE_AUTO, &st, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "map: %s", eb.msg);
    T_CHECK(&g_errs,
            st.shards == (uint32_t)n_shards && st.used_bytes > 0 && st.reread <= st.shards &&
                st.note < RD_TOKEN_HUGE_NOTE_COUNT && st.huge_kb <= st.resident_kb &&
                st.seconds >= 0,
            "map stats: %u shards (want %d), %u re-read, note %u, %llu bytes, %lld/%lld kB",
            st.shards, n_shards, st.reread, st.note, (unsigned long long)st.used_bytes,
            (long long)st.huge_kb, (long long)st.resident_kb);
    if (st.note == RD_TOKEN_HUGE_REREAD)
        T_CHECK(&g_errs, st.reread == st.shards && (uint64_t)st.resident_kb * 1024 >= st.used_bytes,
                "map: %u of %u shards re-read, %lld kB resident for %llu bytes", st.reread,
                st.shards, (long long)st.resident_kb, (unsigned long long)st.used_bytes);
    rc = rd_token_client_map_huge(cl, RD_TOKEN_HUGE_OFF, &st, &eb);
    T_CHECK(&g_errs, rc == RD_OK && st.note == RD_TOKEN_HUGE_NOTE_OFF && st.reread == 0,
            "map off: rc %d, note %u", rc, st.note);
    rc = rd_token_client_map_huge(cl, 9, &st, &eb);
    T_CHECK(&g_errs, rc == RD_ERR_ARG, "map mode 9 gave %d", rc);
    // Malformed MAP requests straight to PS rank 0 (reply slot 2048, unused by both clients):
    // a short payload and an unknown mode are answered with an error that names them.
    static const struct {
        unsigned char payload[8];
        size_t len;
        const char *want;
    } bad[2] = {{{0x52, 0x44, 0x54, 0x4d}, 4, "token map: request of 4 bytes"},
                {{0x52, 0x44, 0x54, 0x4d, 5, 0, 0, 0}, 8, "token map: unknown mode 5"}};
    for (int k = 0; k < 2; k++) {
        unsigned char req[RD_MSG_HEADER_BYTES + 8];
        rd_msg_header h;
        memset(&h, 0, sizeof h);
        h.magic = RD_MSG_MAGIC;
        h.version = RD_MSG_VERSION;
        h.op = RD_TOKEN_OP_MAP;
        h.req_id = ((uint64_t)(77 + k) << 12) | 2048u;
        h.payload_bytes = bad[k].len;
        rd_msg_encode(&h, req);
        memcpy(req + RD_MSG_HEADER_BYTES, bad[k].payload, bad[k].len);
        MPI_Request sr;
        RD_MPI_CHECK(MPI_Isend(req, (int)(RD_MSG_HEADER_BYTES + bad[k].len), MPI_BYTE,
                               comm->ps_world[0], RD_TAG_PS_REQUEST, comm->kv, &sr));
        t_wait(&sr);
        unsigned char rep[RD_MSG_HEADER_BYTES + 600];
        MPI_Request rr;
        RD_MPI_CHECK(MPI_Irecv(rep, (int)sizeof rep, MPI_BYTE, comm->ps_world[0],
                               RD_TAG_PS_REPLY_BASE + 2048, comm->kv, &rr));
        MPI_Status rs;
        rd_backoff b;
        rd_backoff_reset(&b, 200);
        for (int done = 0; !done;) {
            RD_MPI_CHECK(MPI_Test(&rr, &done, &rs));
            if (!done)
                rd_backoff_wait(&b);
        }
        int n = 0;
        MPI_Get_count(&rs, MPI_BYTE, &n);
        rd_msg_header r;
        rc = rd_msg_decode(rep, (size_t)n, &r, NULL);
        size_t tl = n > RD_MSG_HEADER_BYTES ? (size_t)n - RD_MSG_HEADER_BYTES : 0;
        char text[601];
        memcpy(text, rep + RD_MSG_HEADER_BYTES, tl);
        text[tl] = '\0';
        T_CHECK(&g_errs, rc == RD_OK && r.status == RD_ERR_PROTO && strstr(text, bad[k].want),
                "bad map request %d: status %d, text '%s'", k, (int)r.status, text);
    }
}

// ---------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int P = argc > 1 ? atoi(argv[1]) : 1;
    if (P < 1 || P >= size) {
        if (rank == 0)
            fprintf(stderr, "usage: mpiexec -n N %s P (1 <= P < N)\n", argv[0]);
        rd_mpi_finalize(2);
        return 2;
    }
    const int W = size - P, n_shards = 2 * P;
    static const char *names[1] = {"teacher"};
    int ranks[1] = {W};
    rd_config cfg;
    t_config(&cfg, P, 1, names, ranks);
    t_table(&cfg, "emb", 4, RD_OPT_SGD, 0.1f);
    char dir[256];
    t_tmpdir(dir, sizeof dir, "tokens_rpc");
    char store[300];
    snprintf(store, sizeof store, "%s/store", dir);
    // 1. Create the store once.
    if (rank == 0) {
        rd_token_store_opts so = {DIM, RD_TOKEN_FP32, n_shards, 64 << 10, 0, 256, 1, SIDE, 0};
        rd_token_store *s = NULL;
        int rc = rd_token_store_create(store, &so, &s, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "create: %s", eb.msg);
        rd_token_store_destroy(s);
    }
    t_barrier(MPI_COMM_WORLD);
    rd_comm *comm = NULL;
    int rc = rd_comm_create(MPI_COMM_WORLD, &cfg, &comm, &eb);
    T_CHECK(&g_errs, rc == RD_OK, "rd_comm_create: %s", eb.msg);
    if (rc == RD_OK && comm->role_kind == RD_ROLE_PS) {
        rd_token_open_opts oo = {0};
        oo.mode = RD_TOKEN_WRITE;
        oo.ps_rank = comm->ps_index;
        oo.n_ps = P;
        oo.no_sync = 1;
        rd_token_store *s = NULL;
        rd_server *srv = NULL;
        rd_token_service *svc = NULL;
        rc = rd_token_store_open(store, &oo, &s, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "open: %s", eb.msg);
        if (rc == RD_OK)
            rc = rd_server_create(comm, &cfg, &srv, &eb);
        if (rc == RD_OK)
            rc = rd_token_service_create(srv, s, &svc, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "server: %s", eb.msg);
        if (rc == RD_OK) {
            rd_token_service *again = NULL;
            T_CHECK(&g_errs, rd_token_service_create(srv, s, &again, &eb) == RD_ERR_EXISTS,
                    "double registration");
            rc = rd_server_run(srv);
            T_CHECK(&g_errs, rc == RD_OK, "run: %s", rd_strerror(rc));
        }
        rd_server_destroy(srv);
        rd_token_service_destroy(svc);
        // 5. This rank's shards hold every record of its users, all valid.
        if (s) {
            uint64_t checked = 0;
            rc = rd_token_store_verify(s, &checked, &eb);
            T_CHECK(&g_errs, rc == RD_OK, "verify: %s", eb.msg);
            rd_token_stats st;
            rc = rd_token_store_stats(s, &st, NULL, &eb);
            uint64_t want = 0;
            for (int w = 0; w < W; w++)
                for (int i = 0; i < USERS_PER_WORKER; i++)
                    if (rd_token_ps_rank_of_shard(rd_token_shard_of_user(user_key(w, i), n_shards),
                                                  P) == comm->ps_index)
                        want += RECS_PER_USER;
            T_CHECK(&g_errs, rc == RD_OK && st.entries == want && checked == want,
                    "PS %d holds %llu records, want %llu", comm->ps_index,
                    (unsigned long long)st.entries, (unsigned long long)want);
        }
        rd_token_store_destroy(s);
    } else if (rc == RD_OK) {
        rd_kv *kv = NULL;
        rd_token_client *cl = NULL;
        rc = rd_kv_create(comm, &cfg, &kv, &eb);
        T_CHECK(&g_errs, rc == RD_OK, "kv: %s", eb.msg);
        rd_token_store_info info;
        int mrc = rd_token_store_read_manifest(store, &info, &eb);
        T_CHECK(&g_errs, mrc == RD_OK, "manifest: %s", eb.msg);
        rd_token_client_opts co = {
            (int)info.n_shards, (int)info.dim, 100, 8 << 10, (int)info.n_side, 0};
        int crc = mrc == RD_OK ? rd_token_client_create(comm, &co, &cl, &eb) : mrc;
        T_CHECK(&g_errs, crc == RD_OK, "client: %s", eb.msg);
        if (rc == RD_OK && crc == RD_OK) {
            // 2. Appends; 3. fetches after every worker appended; 4. errors.
            append_phase(cl, comm->job_rank);
            t_barrier(comm->job);
            if (comm->job_rank == 0)
                map_phase(comm, cl, n_shards);
            t_barrier(comm->job);
            fetch_phase(cl, kv, W, comm->job_rank, P, n_shards); // after the re-read
            error_phase(cl, comm->job_rank);
            split_phase(comm, cl, &info, W, comm->job_rank, P);
            if (comm->job_rank == 0)
                errtext_phase(comm, &info, P);
            // The two token channels add up to the client's totals; fetches were counted.
            rd_traffic tr;
            memset(&tr, 0, sizeof tr);
            rd_token_client_add_traffic(cl, &tr);
            uint64_t bs = 0, br = 0, ms = 0;
            rd_token_client_counters(cl, &bs, &br, &ms);
            const int F = RD_CHAN_TOKEN_FETCH, A = RD_CHAN_TOKEN_APPEND;
            T_CHECK(&g_errs,
                    tr.sent[F].bytes + tr.sent[A].bytes == bs &&
                        tr.recv[F].bytes + tr.recv[A].bytes == br &&
                        tr.sent[F].msgs + tr.sent[A].msgs == ms && tr.sent[F].msgs > 0 &&
                        tr.recv[F].bytes > tr.sent[F].bytes,
                    "token traffic does not add up to the client's counters");
        }
        rd_token_client_destroy(cl);
        if (kv) {
            rc = rd_kv_shutdown(kv);
            T_CHECK(&g_errs, rc == RD_OK, "shutdown: %s", rd_kv_errmsg(kv));
            rd_kv_destroy(kv);
        }
    }
    rd_comm_destroy(comm);
    if (rank == 0)
        printf("test_tokens_rpc P=%d W=%d\n", P, W);
    return t_end("test_tokens_rpc", g_errs, dir);
}
