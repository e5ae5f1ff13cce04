// synth.c — the synthetic long-range click generator (model in rd/synth.h) and the synthetic
// source of `prepare`.
//
// Workload: 10^3 .. 10^9 events, generated in one streaming pass in time order (no sort), at a
// few hundred nanoseconds per event; state is per user and per item only.
//
// Determinism: every random draw comes from an rd_rng stream split from the seed by purpose:
// WORLD (topics, items), USER_INIT + u (user u's initial interests), USER_RATE + u (activity),
// EVENTS (the event process) and CALIB (the calibration run), so changing one part (e.g. the
// number of events) leaves the others' draws untouched.
#include "rd/synth.h"

#include "dataset_internal.h"
#include "rd/alloc.h"
#include "rd/hash.h"
#include "rd/metrics.h"
#include "rd/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Model constants (documented in rd/synth.h)

#define SERIES_LEN    4            // items per series
#define N_INTEREST    3            // topics in a user's long-term mixture
#define MAX_MEM       64           // pending memories per user (new ones are dropped when full)
#define P_POPULAR     0.35         // exposure mix of ordinary events
#define P_INTEREST    0.40         // (the rest, 0.25, explores uniformly)
#define P_SHORT_TOPIC 0.40         // interest exposures from the last clicked topic
#define P_SAME_ITEM   0.50         // follow-ups that re-show the remembered item itself
#define A_LT          3.0f         // weight of <p_u, v_i>
#define A_ST          2.0f         // weight of <s_u, v_i>
#define A_MEM         3.0f         // weight of the memory sign (times long_range)
#define FB_NOISE      0.5          // standard deviation of the engagement's noise
#define RHO           0.5f         // short-term pull toward a clicked item
#define Q_STD         0.5          // item quality spread
#define ITEM_NOISE    0.6          // item vector scatter around its topic
#define TOPIC_ZIPF    0.7          // topic popularity exponent
#define ITEM_ZIPF     1.0          // item popularity exponent
#define RATE_SIGMA    0.8          // log-normal spread of user activity
#define T0            1600000000LL // first timestamp (2020-09-13)
#define MEAN_GAP_S    1.0          // mean seconds between consecutive events
#define CALIB_EVENTS  200000
#define CALIB_ITERS   8 // at most; stops when the mean is within 1e-3 of base_ctr

enum { S_WORLD = 1, S_EVENTS = 2, S_CALIB = 3, S_USER_INIT = 1u << 28, S_USER_RATE = 2u << 28 };

typedef struct alias {
    uint32_t n;
    double *prob;
    uint32_t *al;
} alias;

typedef struct memory {
    uint32_t item;
    uint32_t created; // user step of the remembered exposure
    uint32_t due;     // user step at which it comes back
    int32_t sign;     // +1 clicked, -1 not
    int32_t weight;   // 1, or 0 for an exposure in a passive context (it leaves no trace)
} memory;

typedef struct user_state {
    uint32_t step;
    int32_t last_topic; // -1: no click yet
    uint32_t topics[N_INTEREST];
    float w[N_INTEREST];
    uint32_t n_mem;
    memory mem[MAX_MEM];
} user_state;

struct rd_synth {
    rd_synthetic_config cfg;
    uint64_t seed;
    uint32_t T, D, NU, NI, n_series;
    uint32_t span, gap;
    float *c;         // c is (T, D): topic vectors
    float *v;         // v is (NI, D): item vectors
    float *q;         // q is (NI,): item quality
    uint32_t *topic;  // (NI,)
    uint32_t *series; // (NI,)
    uint32_t *sstart; // (n_series,): first entry of the series in titems
    uint8_t *slen;    // (n_series,)
    uint32_t *titems; // items grouped by topic
    uint32_t *toff;   // (T + 1,)
    alias pop;        // items by popularity
    alias *tpop;      // (T,) items of a topic by popularity (indices into its titems slice)
    alias topic_pop;  // topics by popularity
    alias act;        // users by activity (current run)
    float *p;         // p is (NU, D): long-term interest
    float *s;         // s is (NU, D): short-term interest
    user_state *us;   // (NU,)
    rd_rng rng;       // event stream of the current run
    double t_cum;
    uint64_t produced, total;
    double bias;
};

// ---------------------------------------------------------------------------------------------
// Alias tables (Vose)

static void alias_free(alias *a) {
    rd_free(a->prob);
    rd_free(a->al);
    a->prob = NULL;
    a->al = NULL;
    a->n = 0;
}

static int alias_build(alias *a, const double *w, uint32_t n) {
    alias_free(a);
    a->n = n;
    a->prob = rd_malloc(n * sizeof *a->prob);
    a->al = rd_malloc(n * sizeof *a->al);
    uint32_t *small = rd_malloc(n * sizeof *small), *large = rd_malloc(n * sizeof *large);
    if (!a->prob || !a->al || !small || !large) {
        rd_free(small);
        rd_free(large);
        return RD_ERR_NOMEM;
    }
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += w[i];
    uint32_t ns = 0, nl = 0;
    for (uint32_t i = 0; i < n; i++) {
        a->prob[i] = w[i] * n / sum;
        a->al[i] = i;
        if (a->prob[i] < 1.0)
            small[ns++] = i;
        else
            large[nl++] = i;
    }
    while (ns && nl) {
        uint32_t s = small[--ns], l = large[nl - 1];
        a->al[s] = l;
        a->prob[l] -= 1.0 - a->prob[s];
        if (a->prob[l] < 1.0) {
            nl--;
            small[ns++] = l;
        }
    }
    while (nl)
        a->prob[large[--nl]] = 1.0;
    while (ns)
        a->prob[small[--ns]] = 1.0;
    rd_free(small);
    rd_free(large);
    return RD_OK;
}

static uint32_t alias_draw(const alias *a, rd_rng *r) {
    uint32_t i = (uint32_t)rd_rng_below(r, a->n);
    return rd_rng_uniform(r) < a->prob[i] ? i : a->al[i];
}

// ---------------------------------------------------------------------------------------------
// World and users

static void normalize(float *x, uint32_t d) {
    double n2 = 0;
    for (uint32_t k = 0; k < d; k++)
        n2 += (double)x[k] * (double)x[k];
    float inv = n2 > 0 ? (float)(1.0 / sqrt(n2)) : 0.0f;
    for (uint32_t k = 0; k < d; k++)
        x[k] *= inv;
}

static void user_mix(rd_synth *g, uint32_t u) {
    float *p = g->p + (size_t)u * g->D;
    const user_state *st = &g->us[u];
    memset(p, 0, g->D * sizeof *p);
    for (int j = 0; j < N_INTEREST; j++) {
        const float *c = g->c + (size_t)st->topics[j] * g->D;
        for (uint32_t k = 0; k < g->D; k++)
            p[k] += st->w[j] * c[k];
    }
}

static void user_init(rd_synth *g, uint32_t u) {
    rd_rng r;
    rd_rng_split(&r, g->seed, S_USER_INIT + (uint64_t)u);
    user_state *st = &g->us[u];
    memset(st, 0, sizeof *st);
    st->last_topic = -1;
    double w[N_INTEREST], sum = 0;
    for (int j = 0; j < N_INTEREST; j++) {
        st->topics[j] = alias_draw(&g->topic_pop, &r);
        w[j] = -log(1.0 - rd_rng_uniform(&r)); // Dirichlet(1, 1, 1) via normalized Exp(1)
        sum += w[j];
    }
    for (int j = 0; j < N_INTEREST; j++)
        st->w[j] = (float)(w[j] / sum);
    user_mix(g, u);
    memset(g->s + (size_t)u * g->D, 0, g->D * sizeof(float));
}

static double user_rate(const rd_synth *g, uint32_t u) {
    rd_rng r;
    rd_rng_split(&r, g->seed, S_USER_RATE + (uint64_t)u);
    return exp(RATE_SIGMA * rd_rng_normal(&r));
}

static int build_activity(rd_synth *g, uint32_t nu) {
    double *w = rd_malloc(nu * sizeof *w);
    if (!w)
        return RD_ERR_NOMEM;
    for (uint32_t u = 0; u < nu; u++)
        w[u] = user_rate(g, u);
    int rc = alias_build(&g->act, w, nu);
    rd_free(w);
    return rc;
}

static int build_world(rd_synth *g) {
    rd_rng r;
    rd_rng_split(&r, g->seed, S_WORLD);
    uint32_t T = g->T, D = g->D, NI = g->NI;
    double *w = rd_malloc((T > NI ? T : NI) * sizeof *w);
    uint32_t *perm = rd_malloc(NI * sizeof *perm);
    uint32_t *fill = rd_calloc(T, sizeof *fill);
    g->c = rd_malloc((size_t)T * D * sizeof *g->c);
    g->v = rd_malloc((size_t)NI * D * sizeof *g->v);
    g->q = rd_malloc(NI * sizeof *g->q);
    g->topic = rd_malloc(NI * sizeof *g->topic);
    g->series = rd_malloc(NI * sizeof *g->series);
    g->titems = rd_malloc(NI * sizeof *g->titems);
    g->toff = rd_calloc(T + 1, sizeof *g->toff);
    g->tpop = rd_calloc(T, sizeof *g->tpop);
    int rc = RD_ERR_NOMEM;
    if (!w || !perm || !fill || !g->c || !g->v || !g->q || !g->topic || !g->series || !g->titems ||
        !g->toff || !g->tpop)
        goto done;
    // Topics: unit vectors, Zipf popularity.
    for (size_t k = 0; k < (size_t)T * D; k++)
        g->c[k] = (float)rd_rng_normal(&r);
    for (uint32_t t = 0; t < T; t++) {
        normalize(g->c + (size_t)t * D, D);
        w[t] = pow(t + 1.0, -TOPIC_ZIPF);
    }
    if ((rc = alias_build(&g->topic_pop, w, T)) != RD_OK)
        goto done;
    // Items: topic, vector, quality, popularity rank (a random permutation).
    for (uint32_t i = 0; i < NI; i++) {
        uint32_t t = alias_draw(&g->topic_pop, &r);
        g->topic[i] = t;
        g->toff[t + 1]++;
        float *vi = g->v + (size_t)i * D;
        const float *ct = g->c + (size_t)t * D;
        float sc = (float)(ITEM_NOISE / sqrt((double)D));
        for (uint32_t k = 0; k < D; k++)
            vi[k] = ct[k] + sc * (float)rd_rng_normal(&r);
        normalize(vi, D);
        g->q[i] = (float)(Q_STD * rd_rng_normal(&r));
        perm[i] = i;
    }
    for (uint32_t i = NI; i > 1; i--) { // Fisher-Yates
        uint32_t j = (uint32_t)rd_rng_below(&r, i);
        uint32_t tmp = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = tmp;
    }
    for (uint32_t t = 0; t < T; t++)
        g->toff[t + 1] += g->toff[t];
    for (uint32_t i = 0; i < NI; i++) {
        uint32_t t = g->topic[i];
        g->titems[g->toff[t] + fill[t]++] = i;
    }
    // Series: runs of SERIES_LEN consecutive items of a topic.
    uint32_t ns = 0;
    for (uint32_t t = 0; t < T; t++)
        ns += (g->toff[t + 1] - g->toff[t] + SERIES_LEN - 1) / SERIES_LEN;
    g->n_series = ns;
    g->sstart = rd_malloc((ns ? ns : 1) * sizeof *g->sstart);
    g->slen = rd_malloc((ns ? ns : 1) * sizeof *g->slen);
    if (!g->sstart || !g->slen) {
        rc = RD_ERR_NOMEM;
        goto done;
    }
    uint32_t sid = 0;
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t a = g->toff[t]; a < g->toff[t + 1]; a += SERIES_LEN, sid++) {
            uint32_t len = g->toff[t + 1] - a < SERIES_LEN ? g->toff[t + 1] - a : SERIES_LEN;
            g->sstart[sid] = a;
            g->slen[sid] = (uint8_t)len;
            for (uint32_t k = 0; k < len; k++)
                g->series[g->titems[a + k]] = sid;
        }
    // Popularity: global and within each topic.
    for (uint32_t i = 0; i < NI; i++)
        w[i] = pow(perm[i] + 1.0, -ITEM_ZIPF);
    if ((rc = alias_build(&g->pop, w, NI)) != RD_OK)
        goto done;
    for (uint32_t t = 0; t < T; t++) {
        uint32_t n = g->toff[t + 1] - g->toff[t];
        if (n == 0)
            continue;
        for (uint32_t k = 0; k < n; k++)
            w[k] = pow(perm[g->titems[g->toff[t] + k]] + 1.0, -ITEM_ZIPF);
        if ((rc = alias_build(&g->tpop[t], w, n)) != RD_OK)
            goto done;
    }
    rc = RD_OK;
done:
    rd_free(w);
    rd_free(perm);
    rd_free(fill);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// The event process

static uint32_t pick_interest_item(rd_synth *g, user_state *st, rd_rng *r) {
    uint32_t t;
    if (st->last_topic >= 0 && rd_rng_uniform(r) < P_SHORT_TOPIC) {
        t = (uint32_t)st->last_topic;
    } else {
        float x = rd_rng_uniformf(r);
        int j = 0;
        while (j < N_INTEREST - 1 && x >= st->w[j]) {
            x -= st->w[j];
            j++;
        }
        t = st->topics[j];
    }
    if (g->toff[t + 1] == g->toff[t]) // a topic without items: fall back to popularity
        return alias_draw(&g->pop, r);
    return g->titems[g->toff[t] + alias_draw(&g->tpop[t], r)];
}

// Even contexts are deliberate (search, a followed link), odd ones passive (autoplay, a feed
// scrolled past).
static int ctx_deliberate(int ctx) {
    return (ctx & 1) == 0;
}

static void gen_event(rd_synth *g, rd_rng *r, rd_synth_event *ev) {
    uint32_t D = g->D;
    uint32_t u = alias_draw(&g->act, r);
    user_state *st = &g->us[u];
    float *p = g->p + (size_t)u * D;
    float *s = g->s + (size_t)u * D;
    uint32_t step = st->step;
    g->t_cum += -log(1.0 - rd_rng_uniform(r)) * MEAN_GAP_S;

    // Exposure: a due memory comes back first; otherwise the ordinary mix.
    int kind = -1, sign = 0, weight = 0;
    uint32_t item = 0, age = 0;
    for (uint32_t j = 0; j < st->n_mem; j++) {
        memory *m = &st->mem[j];
        if (m->due > step)
            continue;
        kind = RD_SYNTH_FOLLOWUP;
        sign = m->sign;
        weight = m->weight;
        age = step - m->created;
        uint32_t sid = g->series[m->item];
        item = rd_rng_uniform(r) < P_SAME_ITEM
                   ? m->item
                   : g->titems[g->sstart[sid] + (uint32_t)rd_rng_below(r, g->slen[sid])];
        *m = st->mem[--st->n_mem];
        break;
    }
    if (kind < 0) {
        double x = rd_rng_uniform(r);
        if (x < P_POPULAR) {
            kind = RD_SYNTH_POPULAR;
            item = alias_draw(&g->pop, r);
        } else if (x < P_POPULAR + P_INTEREST) {
            kind = RD_SYNTH_INTEREST;
            item = pick_interest_item(g, st, r);
        } else {
            kind = RD_SYNTH_EXPLORE;
            item = (uint32_t)rd_rng_below(r, g->NI);
        }
    }

    // The request context (drawn only when the config asks for contexts, so that without them
    // the random stream, and so every event, is that of the generator before contexts existed).
    int ctx = -1;
    double ctx_offset = 0.0;
    if (g->cfg.contexts > 0) {
        ctx = (int)rd_rng_below(r, (uint64_t)g->cfg.contexts);
        ctx_offset = ctx_deliberate(ctx) ? g->cfg.context_effect : -g->cfg.context_effect;
    }

    // Click probability.
    float decay = 1.0f - (float)g->cfg.drift;
    const float *vi = g->v + (size_t)item * D;
    float dl = 0.0f, ds = 0.0f;
    for (uint32_t k = 0; k < D; k++) {
        s[k] *= decay;
        dl += p[k] * vi[k];
        ds += s[k] * vi[k];
    }
    double x = g->bias + (double)g->q[item] + (double)(A_LT * dl) + (double)(A_ST * ds) +
               (double)A_MEM * g->cfg.long_range * sign * weight + ctx_offset;
    double prob = 1.0 / (1.0 + exp(-x));
    double x_no_mem = x - (double)A_MEM * g->cfg.long_range * sign * weight;
    int click = rd_rng_uniform(r) < prob;
    // Engagement: drawn only with the option (see the contexts above).
    float engagement = 0.0f;
    if (g->cfg.feedback == 2) // the oracle: the context kind, no draw
        engagement = ctx >= 0 && ctx_deliberate(ctx) ? 1.0f : 0.0f;
    else if (g->cfg.feedback == 1)
        engagement =
            (float)((double)(A_LT * dl) + (double)(A_ST * ds) + FB_NOISE * rd_rng_normal(r));

    // State updates.
    if (click) {
        for (uint32_t k = 0; k < D; k++)
            s[k] = (1.0f - RHO) * s[k] + RHO * vi[k];
        st->last_topic = (int32_t)g->topic[item];
    }
    if (kind != RD_SYNTH_FOLLOWUP && rd_rng_uniform(r) < g->cfg.memory_rate &&
        st->n_mem < MAX_MEM) {
        memory *m = &st->mem[st->n_mem++];
        m->item = item;
        m->created = step;
        m->due = step + g->gap + (uint32_t)rd_rng_below(r, g->span - g->gap + 1);
        m->sign = click ? 1 : -1;
        m->weight = ctx < 0 || ctx_deliberate(ctx) ? 1 : 0;
        // The oracles of which exposure is remembered (no draw: the events are feedback 0's).
        if (g->cfg.feedback == 3 || (g->cfg.feedback == 4 && m->weight))
            engagement = 1.0f;
    }
    if (rd_rng_uniform(r) < g->cfg.drift / 20.0) { // slow drift of the long-term mixture
        st->topics[rd_rng_below(r, N_INTEREST)] = alias_draw(&g->topic_pop, r);
        user_mix(g, u);
    }
    st->step++;

    ev->ts = T0 + (int64_t)floor(g->t_cum);
    ev->user = u;
    ev->item = item;
    ev->topic = g->topic[item];
    ev->series = g->series[item];
    ev->label = click ? 1.0f : 0.0f;
    ev->kind = kind;
    ev->ctx = ctx;
    ev->mem_sign = sign;
    ev->mem_weight = weight;
    ev->mem_age = age;
    ev->step = step;
    ev->p = (float)prob;
    ev->p_no_memory = (float)(1.0 / (1.0 + exp(-x_no_mem)));
    ev->p_no_context = ev->p;
    if (kind == RD_SYNTH_FOLLOWUP && g->cfg.contexts > 0) {
        // The exposure's context was deliberate (weight 1) with the share of even contexts.
        double share = (double)((g->cfg.contexts + 1) / 2) / (double)g->cfg.contexts;
        double x_mem = x_no_mem + (double)A_MEM * g->cfg.long_range * sign;
        ev->p_no_context =
            (float)(share / (1.0 + exp(-x_mem)) + (1.0 - share) / (1.0 + exp(-x_no_mem)));
    }
    ev->engagement = engagement;
}

// Bisect the bias so that the mean click probability of a calibration run matches base_ctr. The
// run uses the first users with the events per user of the real run, capped at twice the memory
// span (by then memories and short-term interests have reached their steady state), so that it
// covers as many users as possible: their interests differ, and a few users would bias the mean.
static int calibrate(rd_synth *g) {
    uint64_t ce = g->total < CALIB_EVENTS ? g->total : CALIB_EVENTS;
    uint64_t epu = g->total / g->NU;
    if (epu > 2ull * g->span)
        epu = 2ull * g->span;
    if (epu < 1)
        epu = 1;
    uint64_t cu = ce / epu;
    if (cu < 1)
        cu = 1;
    if (cu > g->NU)
        cu = g->NU;
    int rc = build_activity(g, (uint32_t)cu);
    if (rc != RD_OK)
        return rc;
    // Fixed-point iteration on the logit: the mean click probability behaves like
    // sigmoid(bias + c), so shifting the bias by logit(target) - logit(mean) converges in a few
    // steps. Every step replays the same calibration run (same users, same random stream).
    double target = g->cfg.base_ctr;
    g->bias = log(target / (1 - target));
    rd_synth_event ev;
    for (int it = 0; it < CALIB_ITERS; it++) {
        for (uint32_t u = 0; u < cu; u++)
            user_init(g, u);
        rd_rng r;
        rd_rng_split(&r, g->seed, S_CALIB);
        g->t_cum = 0;
        double sum = 0;
        for (uint64_t e = 0; e < ce; e++) {
            gen_event(g, &r, &ev);
            sum += (double)ev.p;
        }
        double mean = sum / (double)ce;
        mean = mean < 1e-9 ? 1e-9 : mean > 1 - 1e-9 ? 1 - 1e-9 : mean;
        double step = log(target / (1 - target)) - log(mean / (1 - mean));
        g->bias += step;
        if (fabs(mean - target) < 1e-3)
            break;
    }
    for (uint32_t u = 0; u < cu; u++)
        user_init(g, u);
    g->t_cum = 0;
    return build_activity(g, g->NU);
}

// ---------------------------------------------------------------------------------------------
// Public API

static int check_cfg(const rd_synthetic_config *c, rd_errbuf *eb) {
    const char *bad = NULL;
    if (c->events < 1 || c->events > (uint64_t)4e9 * 4)
        bad = "events: must be in 1 .. 1.6e10";
    else if (c->users < 1)
        bad = "users: must be >= 1";
    else if (c->items < 1)
        bad = "items: must be >= 1";
    else if (c->topics < 1 || c->topics > 4096)
        bad = "topics: must be in 1 .. 4096";
    else if (c->dim < 1 || c->dim > 1024)
        bad = "dim: must be in 1 .. 1024";
    else if (!(c->drift >= 0 && c->drift <= 1))
        bad = "drift: must be in [0, 1]";
    else if (!(c->long_range >= 0 && c->long_range <= 1e6))
        bad = "long_range: must be in [0, 1e6]";
    else if (c->memory_span < 1 || c->memory_span > 1000000)
        bad = "memory_span: must be in 1 .. 1e6";
    else if (!(c->base_ctr > 0 && c->base_ctr < 1))
        bad = "base_ctr: must be in (0, 1)";
    else if (c->contexts < 0 || c->contexts > 64)
        bad = "contexts: must be in 0 .. 64";
    else if (!(c->context_effect >= 0 && c->context_effect <= 10))
        bad = "context_effect: must be in [0, 10]";
    else if (!(c->memory_rate >= 0 && c->memory_rate <= 1))
        bad = "memory_rate: must be in [0, 1]";
    else if (c->feedback < 0 || c->feedback > 4)
        bad = "feedback: must be 0, 1, 2, 3 or 4";
    else if (c->feedback == 2 && c->contexts == 0)
        bad = "feedback: 2 (the context kind as the feedback field) needs contexts";
    else if (c->feedback == 4 && c->contexts == 0)
        bad = "feedback: 4 (the remembered deliberate exposures as the feedback field) needs "
              "contexts";
    if (bad)
        return rd_err_set(eb, RD_ERR_CONFIG, "data.synthetic.%s", bad);
    return RD_OK;
}

double rd__synth_state_bytes(const rd_synthetic_config *cfg) {
    double D = cfg->dim > 0 ? (double)cfg->dim : 1.0, T = cfg->topics > 0 ? cfg->topics : 1;
    double per_user = (double)sizeof(user_state) + 2.0 * 4.0 * D;
    double per_item = 4.0 * D + 4 * 4.0 + 2 * sizeof(double) + 2 * 4.0; // v, q/topic/series/
                                                                        // titems, alias tables
    return (double)cfg->users * per_user + (double)cfg->items * per_item + T * (4.0 * D + 64.0);
}

int rd_synth_create(const rd_synthetic_config *cfg, uint64_t seed, rd_synth **out, rd_errbuf *eb) {
    *out = NULL;
    int rc = check_cfg(cfg, eb);
    if (rc != RD_OK)
        return rc;
    rd_synth *g = rd_calloc(1, sizeof *g);
    if (!g)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    g->cfg = *cfg;
    g->seed = seed;
    g->T = (uint32_t)cfg->topics;
    g->D = (uint32_t)cfg->dim;
    g->NU = (uint32_t)cfg->users;
    g->NI = (uint32_t)cfg->items;
    g->total = cfg->events;
    g->span = (uint32_t)cfg->memory_span;
    g->gap = g->span / 8 > 0 ? g->span / 8 : 1;
    if (g->gap > g->span)
        g->gap = g->span;
    // The generator's state lives in memory for the whole prepare: per user its memories and two
    // vectors (1.5 KiB at dim 16: 10^6 users took 1.5 GB), per item a vector and a few indices.
    // Beyond what this process may use it is an error naming the keys, before anything is touched.
    // The advice names the count that holds most of it: items (up to 10^8 as well) can be
    // the cause with few users, and then lowering data.synthetic.users would not help.
    {
        const char *whose = NULL;
        double limit = (double)rd_mem_limit(&whose), need = rd__synth_state_bytes(cfg);
        if (limit > 0 && need > limit) {
            rd_synthetic_config no_items = *cfg, no_users = *cfg;
            no_items.items = 0;
            no_users.users = 0;
            double users_b = need - rd__synth_state_bytes(&no_users);
            double items_b = need - rd__synth_state_bytes(&no_items);
            int by_items = items_b > users_b;
            rd_free(g);
            return rd_err_set(eb, RD_ERR_NOMEM,
                              "data.synthetic: %d users and %d items of dim %d need %.1f GiB of "
                              "generator state (%.1f GiB for the users, %.0f bytes each; %.1f "
                              "GiB for the items), more than %s (%.1f GiB): lower "
                              "data.synthetic.%s (or dim)",
                              cfg->users, cfg->items, cfg->dim, need / 1073741824.0,
                              users_b / 1073741824.0, (double)sizeof(user_state) + 8.0 * cfg->dim,
                              items_b / 1073741824.0, whose, limit / 1073741824.0,
                              by_items ? "items" : "users");
        }
    }
    g->p = rd_malloc((size_t)g->NU * g->D * sizeof *g->p);
    g->s = rd_malloc((size_t)g->NU * g->D * sizeof *g->s);
    g->us = rd_malloc((size_t)g->NU * sizeof *g->us);
    if (!g->p || !g->s || !g->us) {
        rc = rd_err_set(eb, RD_ERR_NOMEM,
                        "out of memory for the state of %d synthetic users (%zu bytes each)",
                        cfg->users, sizeof(user_state) + 8 * (size_t)g->D);
        goto fn_fail;
    }
    if ((rc = build_world(g)) != RD_OK) {
        rc = rd_err_set(eb, rc, "out of memory for %d synthetic items", cfg->items);
        goto fn_fail;
    }
    for (uint32_t u = 0; u < g->NU; u++)
        user_init(g, u);
    if ((rc = calibrate(g)) != RD_OK) {
        rc = rd_err_set(eb, rc, "out of memory (synthetic users)");
        goto fn_fail;
    }
    rd_rng_split(&g->rng, seed, S_EVENTS);
    *out = g;
    return RD_OK;
fn_fail:
    rd_synth_destroy(g);
    return rc;
}

int rd_synth_next(rd_synth *g, rd_synth_event *ev) {
    if (g->produced >= g->total)
        return 0;
    gen_event(g, &g->rng, ev);
    ev->index = g->produced++;
    return 1;
}

uint64_t rd_synth_seed(const rd_synthetic_config *cfg, uint64_t run_seed) {
    return cfg->seed ? cfg->seed : rd_mix64(run_seed ^ 0x73796e7468657469ULL);
}

double rd_synth_bias(const rd_synth *g) {
    return g->bias;
}

uint32_t rd_synth_item_topic(const rd_synth *g, uint32_t item) {
    RD_ASSERT(item < g->NI);
    return g->topic[item];
}

uint32_t rd_synth_item_series(const rd_synth *g, uint32_t item) {
    RD_ASSERT(item < g->NI);
    return g->series[item];
}

uint32_t rd_synth_n_series(const rd_synth *g) {
    return g->n_series;
}

void rd_synth_destroy(rd_synth *g) {
    if (!g)
        return;
    rd_free(g->c);
    rd_free(g->v);
    rd_free(g->q);
    rd_free(g->topic);
    rd_free(g->series);
    rd_free(g->sstart);
    rd_free(g->slen);
    rd_free(g->titems);
    rd_free(g->toff);
    if (g->tpop)
        for (uint32_t t = 0; t < g->T; t++)
            alias_free(&g->tpop[t]);
    rd_free(g->tpop);
    alias_free(&g->pop);
    alias_free(&g->topic_pop);
    alias_free(&g->act);
    rd_free(g->p);
    rd_free(g->s);
    rd_free(g->us);
    rd_free(g);
}

// ---------------------------------------------------------------------------------------------
// The ceiling: what a model that knew the generator would score on the holdout (the last
// holdout_fraction of the kept events, as the dataset splits them): AUC, GAUC and logloss of the
// true click probability, and the AUC without the memory term, so that a run's AUC can be read
// against what the data allow and against what the long-range memories are worth. The holdout's
// events are kept in a ring while the events are generated (negative sampling decides the count
// only at the end); beyond RD_SYNTH_CEILING_MAX holdout events it is not computed.

#define RD_SYNTH_CEILING_MAX (1u << 22)

typedef struct ceil_ev {
    float p, p_no_memory, p_no_context, label;
    uint32_t user;
} ceil_ev;

typedef struct ceiling {
    ceil_ev *ring;
    size_t cap, n; // ring capacity; events pushed
} ceiling;

static void ceiling_push(ceiling *c, const rd_synth_event *ev) {
    if (!c->ring)
        return;
    c->ring[c->n % c->cap] =
        (ceil_ev){ev->p, ev->p_no_memory, ev->p_no_context, ev->label, ev->user};
    c->n++;
}

// Append the ceiling's YAML (indented under synthetic:) to ms; kept = events in the dataset.
static int ceiling_yaml(const ceiling *c, uint64_t kept, double holdout_fraction, FILE *ms) {
    double hd = llround((double)kept * holdout_fraction);
    uint64_t hc = hd < 0 ? 0 : (uint64_t)hd;
    if (!c->ring || hc > c->cap || hc > c->n) {
        fprintf(ms, "  ceiling: {computed: false}   # holdout over %u events\n",
                RD_SYNTH_CEILING_MAX);
        return RD_OK;
    }
    // data.split.holdout_fraction 0 (or a holdout that rounds to no event) is a valid split:
    // there is nothing to score, which rd_metrics_create refuses as an empty input.
    if (hc == 0) {
        fprintf(ms, "  ceiling: {computed: false}   # empty holdout\n");
        return RD_OK;
    }
    // The true probability, then without the memory term, then without the remembered
    // exposure's context (what the context of an earlier event is worth to a later one).
    enum { N_CEIL = 3 };
    rd_metrics *m[N_CEIL] = {NULL, NULL, NULL};
    rd_metrics_result r[N_CEIL];
    int rc = RD_OK;
    for (int k = 0; rc == RD_OK && k < N_CEIL; k++)
        rc = rd_metrics_create(hc, &m[k]);
    for (uint64_t i = c->n - hc; rc == RD_OK && i < c->n; i++) {
        const ceil_ev *e = &c->ring[i % c->cap];
        const float p[N_CEIL] = {e->p, e->p_no_memory, e->p_no_context};
        for (int k = 0; rc == RD_OK && k < N_CEIL; k++)
            rc = rd_metrics_add(m[k], p[k], e->label, e->user);
    }
    for (int k = 0; rc == RD_OK && k < N_CEIL; k++)
        rc = rd_metrics_compute(m[k], &r[k]);
    if (rc == RD_OK) {
        fprintf(ms,
                "  ceiling:   # the true click probability on the holdout (%llu events)\n"
                "    auc: %.6f\n    gauc: %.6f\n    logloss: %.6f\n"
                "    auc_without_memory: %.6f   # the memory term left out\n"
                "    auc_without_context: %.6f   # the remembered exposure's context unknown\n",
                (unsigned long long)hc, r[0].auc, r[0].gauc, r[0].logloss, r[1].auc, r[2].auc);
    }
    for (int k = 0; k < N_CEIL; k++)
        rd_metrics_destroy(m[k]);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// The synthetic source of prepare: fields "topic" and "series" (categorical, item attributes),
// with contexts "ctx" (categorical, the request context of the event), with feedback
// "engagement" (feedback: a float known once the event happened).

// The generator's section of meta.yaml.
static void
synthetic_yaml(FILE *ms, const rd_synthetic_config *sc, uint64_t seed, const rd_synth *g) {
    fprintf(ms,
            "synthetic:\n  events: %llu\n  users: %d\n  items: %d\n  topics: %d\n  dim: %d\n"
            "  drift: %.17g\n  long_range: %.17g\n  memory_span: %d\n  base_ctr: %.17g\n"
            "  contexts: %d\n  feedback: %d\n  context_effect: %.17g\n  memory_rate: %.17g\n"
            "  seed: %llu            # effective seed\n"
            "  bias: %.17g   # calibrated logit bias\n  series: %u\n",
            (unsigned long long)sc->events, sc->users, sc->items, sc->topics, sc->dim, sc->drift,
            sc->long_range, sc->memory_span, sc->base_ctr, sc->contexts, sc->feedback,
            sc->context_effect, sc->memory_rate, (unsigned long long)seed, rd_synth_bias(g),
            rd_synth_n_series(g));
}

int rd__prepare_synthetic(const rd_data_config *dc, uint64_t run_seed, rd_errbuf *eb) {
    const rd_synthetic_config *sc = &dc->synthetic;
    uint64_t seed = rd_synth_seed(sc, run_seed);
    rd_synth *g = NULL;
    rd__builder *b = NULL;
    char *yaml = NULL;
    size_t yaml_len = 0;
    ceiling ce = {0};
    int rc = rd_synth_create(sc, seed, &g, eb);
    if (rc != RD_OK)
        goto done;
    double hmax = ceil((double)sc->events * dc->split.holdout_fraction) + 1.0;
    if (hmax <= RD_SYNTH_CEILING_MAX) {
        ce.cap = (size_t)hmax;
        ce.ring = rd_malloc(ce.cap * sizeof *ce.ring);
        if (!ce.ring) {
            rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (holdout ceiling)");
            goto done;
        }
    }
    rd__layout lay;
    memset(&lay, 0, sizeof lay);
    lay.source = RD_DATA_SYNTHETIC;
    rd__layout_add(&lay, "topic", RD_FIELD_CATEGORICAL, 1);
    rd__layout_add(&lay, "series", RD_FIELD_CATEGORICAL, 1);
    if (sc->contexts > 0)
        rd__layout_add(&lay, "ctx", RD_FIELD_CATEGORICAL, 1);
    if (sc->feedback)
        rd__layout_add(&lay, "engagement", RD_FIELD_FEEDBACK, 1);
    FILE *ms = NULL;
    if ((rc = rd__builder_create(dc, &lay, run_seed, &b, eb)) != RD_OK)
        goto done;
    rd_synth_event ev;
    uint64_t keys[3];
    while (rd_synth_next(g, &ev)) {
        rd__event e;
        keys[0] = rd_feature_key_u64("topic", ev.topic);
        keys[1] = rd_feature_key_u64("series", ev.series);
        if (ev.ctx >= 0)
            keys[2] = rd_feature_key_u64("ctx", (uint64_t)ev.ctx);
        e.ts = ev.ts;
        e.user_key = rd_feature_key_u64("user", ev.user);
        e.item_key = rd_feature_key_u64("item", ev.item);
        e.label = ev.label;
        e.sample = ev.index;
        e.keys = keys;
        e.nums = sc->feedback ? &ev.engagement : NULL;
        uint64_t before = rd__builder_count(b);
        if ((rc = rd__builder_add(b, &e, eb)) != RD_OK)
            goto done;
        if (rd__builder_count(b) != before) // kept (negative sampling may drop it)
            ceiling_push(&ce, &ev);
    }
    ms = open_memstream(&yaml, &yaml_len); // the section again, with the ceiling
    if (!ms) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        goto done;
    }
    synthetic_yaml(ms, sc, seed, g);
    rc = ceiling_yaml(&ce, rd__builder_count(b), dc->split.holdout_fraction, ms);
    if (fclose(ms) != 0 && rc == RD_OK)
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    if (rc != RD_OK) {
        if (!eb->msg[0])
            rd_err_set(eb, rc, "holdout ceiling: %s", rd_strerror(rc));
        goto done;
    }
    rc = rd__builder_finish(b, yaml, eb);
done:
    rd__builder_destroy(b);
    rd_synth_destroy(g);
    rd_free(ce.ring);
    free(yaml); // open_memstream's buffer comes from libc malloc
    return rc;
}
