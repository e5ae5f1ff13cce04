// rd/synth.h — a seeded, streaming generator of click logs whose labels depend on long-range user
// history, so that a model reading hundreds of past events beats one reading a dozen.
//
// Defines:
//   rd_synth_event     one generated event (plus ground truth that tests may inspect)
//   rd_synth_create()  build items, topics and users from an rd_synthetic_config and a seed,
//                      and calibrate the click bias to base_ctr
//   rd_synth_next()    the next event in time order
//   rd_synth_seed()    the generator seed of a run (synthetic.seed, or derived from run.seed)
//   rd_synth_bias()    the calibrated bias
//   rd_synth_item_topic() / rd_synth_item_series()
//   rd_synth_destroy()
//
// The generative model (constants in synth.c):
//   - Topics k have unit vectors c_k in R^dim. Items belong to one topic (topic popularity is
//     Zipf) and, within it, to a "series" of 4 consecutive items; each has a vector near c_k,
//     a quality q_i ~ N(0, 0.5^2) and a Zipf(1) popularity.
//   - Users have an activity rate (log-normal; events interleave users in time, timestamps
//     increase by exponential gaps of mean 1 s), a persistent long-term interest p_u (a Dirichlet
//     mixture of 3 topics, one of which is replaced with probability drift/20 per event: slow
//     drift), and a short-term interest s_u that decays by (1 - drift) per event and moves halfway
//     to each clicked item (fast drift).
//   - Exposures: popular items (35%), items of the user's long- or short-term topics (40%),
//     uniform exploration (25%); and follow-ups: memory_rate (default 25%) of ordinary exposures
//     become a memory (item, clicked or not) that comes back as a follow-up exposure of the same
//     series (the same item half of the time) between memory_span/8 and memory_span of the user's
//     own events later (at most 64 pending per user). With 1000 events per user about 16% of events
//     are follow-ups.
//   - Click ~ Bernoulli(sigmoid(b + q_i + 3 <p_u, v_i> + 2 <s_u, v_i> + 3 long_range m)), with
//     m = +1 / -1 on a follow-up whose remembered exposure was / was not clicked, else 0; b is
//     bisected on a calibration run so that the mean click probability is base_ctr.
//   - Contexts (data.synthetic.contexts = C > 0; default 0, and then no draw is made, so the events
//     are exactly those without the option): each event has a request context c, uniform over
//     0..C-1 and written as the categorical field "ctx". Even contexts are deliberate (search),
//     odd ones passive (autoplay): the click logit gets +e / -e (e = data.synthetic.
//     context_effect, default 0.5), and an exposure in a passive context still becomes a memory
//     and comes back, but its sign no longer moves the click (m = 0). The item history with
//     labels cannot tell which remembered exposures count; a model that sees the past events'
//     contexts (e.g. IAT's instance tokens) can. With e = 0 the context does not move the
//     event's own click at all: it matters only to later events (a model compressing each
//     event for its own label has no reason to keep it; one trained across a user's events has).
//   - Feedback (data.synthetic.feedback = 1; default 0, and then no draw is made): each event
//     also has "engagement", a feedback field (known once the event happened, like a rating or a
//     watch time): 3 <p_u, v_i> + 2 <s_u, v_i> + N(0, 0.5^2), the user's affinity for the item
//     as the click model weighs it, without the item's quality, the memory and the context. A
//     click says only whether the logit won a coin flip; the engagement of past events says how
//     much the user liked them, so a model that reads it over the history (token side values,
//     seq.stats_feedback) can estimate the user's interests from fewer events.
//     With feedback = 2 (a diagnostic; needs contexts) "engagement" is instead the event's
//     context kind, 1 deliberate and 0 passive, and no draw is made (the events are those of
//     feedback 0): an oracle of what a token store that kept the context would give, read as a
//     token side value (tokens.side: [engagement]). Two more oracles, also without a draw:
//     feedback = 3 marks the exposures the user will remember (1 when the event became a pending
//     memory, else 0: which earlier event a follow-up recalls), and feedback = 4 (needs
//     contexts) only those of them whose memory counts (a deliberate context): which event, and
//     whether its context lets it matter.
//   So the strongest per-event signal (m) sits 50..400 user events back: invisible to a short
//   history, plain in a long one; the long-term mix needs long histories to estimate, and drifts.
//   The signal needs users with several times memory_span events (events / users): with fewer,
//   memories rarely come due. Measured with 300 users x 1000 events: the true probabilities give
//   AUC 0.864, and 0.823 without the memory term.
//
// Memory: O(users x (8 dim + 1.1 KiB) + items x (4 dim + 40) bytes); no per-event state.
// Deterministic:
// the same config and seed give the same events on any machine with IEEE doubles.
#ifndef RD_SYNTH_H
#define RD_SYNTH_H

#include "rd/config.h"
#include "rd/error.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rd_synth_kind {
    RD_SYNTH_POPULAR = 0,  // globally popular item
    RD_SYNTH_INTEREST = 1, // item of one of the user's interest topics
    RD_SYNTH_EXPLORE = 2,  // uniformly random item
    RD_SYNTH_FOLLOWUP = 3, // an item of a series remembered from long ago
} rd_synth_kind;

typedef struct rd_synth_event {
    uint64_t index;  // 0, 1, ... in generation (= time) order
    int64_t ts;      // unix seconds, non-decreasing
    uint32_t user;   // 0..users-1
    uint32_t item;   // 0..items-1
    uint32_t topic;  // the item's topic
    uint32_t series; // the item's series
    float label;     // 0 or 1
    // Ground truth (not written to datasets): what a perfect model would know.
    int kind;           // rd_synth_kind
    int ctx;            // the request context, 0..contexts-1 (a dataset field), or -1 without
    int mem_sign;       // follow-ups: +1 (remembered exposure clicked) or -1; else 0
    int mem_weight;     // follow-ups: 1, or 0 when the remembered exposure's context was passive
    uint32_t mem_age;   // follow-ups: user events since the remembered exposure; else 0
    uint32_t step;      // the user's event count before this event
    float p;            // true click probability
    float p_no_memory;  // the click probability without the memory term (= p off follow-ups)
    float p_no_context; // the click probability of a model that knows the remembered click but
                        // not its exposure's context: the mean of p over that context (= p off
                        // follow-ups and without contexts)
    float engagement;   // data.synthetic.feedback: the "engagement" feedback value (1), the
                        // context kind (2: 1 deliberate, 0 passive), 1 for an exposure that
                        // became a memory (3), one that became a memory that counts (4); else 0
} rd_synth_event;

typedef struct rd_synth rd_synth;

/**
 * @param[in]  cfg   generator parameters (events, users, items, topics, dim, drift, long_range,
 *                   memory_span, base_ctr; cfg->seed is ignored: pass the effective seed)
 * @param[in]  seed  the seed of every random stream
 * @param[out] out   generator; free with rd_synth_destroy
 * @return RD_OK, RD_ERR_CONFIG ("data.synthetic.x: ..." for an out-of-range parameter),
 *         RD_ERR_NOMEM (also, before anything is allocated, when the state would exceed the
 *         memory this process may use: the message names data.synthetic.users)
 */
int rd_synth_create(const rd_synthetic_config *cfg, uint64_t seed, rd_synth **out, rd_errbuf *eb);
/** The bytes rd_synth_create allocates for cfg (users' memories and vectors, items), which it
 *  compares with rd_mem_limit() first. */
double rd__synth_state_bytes(const rd_synthetic_config *cfg);

/** @return 1 and the next event in *ev, or 0 after cfg->events events. */
int rd_synth_next(rd_synth *g, rd_synth_event *ev);

/** The generator seed of a run: cfg->seed, or one derived from run.seed when it is 0. */
uint64_t rd_synth_seed(const rd_synthetic_config *cfg, uint64_t run_seed);

/** The calibrated logit bias b. */
double rd_synth_bias(const rd_synth *g);

uint32_t rd_synth_item_topic(const rd_synth *g, uint32_t item);
uint32_t rd_synth_item_series(const rd_synth *g, uint32_t item);
/** Number of series. */
uint32_t rd_synth_n_series(const rd_synth *g);

/** Accepts NULL. */
void rd_synth_destroy(rd_synth *g);

#ifdef __cplusplus
}
#endif
#endif // RD_SYNTH_H
