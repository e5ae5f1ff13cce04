// test_config.c — the YAML configuration module (common/config.c).
//
// Covers: documented defaults; every error kind with its exact "file:line:col: key.path:" prefix;
// the value syntaxes (booleans, integer forms, byte sizes, label rules); derived defaults; the
// cross-field checks (as messages of rd_config_validate on structs built in code, and with
// locations when loading); print -> parse round trips compared with memcmp; every
// configs/*.yaml loads; configs/reference.yaml names every key; file errors and out-of-memory;
// and a fuzz loop of ~2000 random and mutated variants of configs/reference.yaml.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/rng.h"

#include "../common/config_internal.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

// ---------------------------------------------------------------------------------------------
// Helpers

// A minimal valid configuration that error cases extend.
#define BASE                                                                                       \
    "cluster:\n"                                                                                   \
    "  jobs:\n"                                                                                    \
    "    - name: w\n"                                                                              \
    "      role: teacher\n"                                                                        \
    "      model: m\n"                                                                             \
    "ps:\n"                                                                                        \
    "  tables:\n"                                                                                  \
    "    - name: e\n"                                                                              \
    "      dim: 8\n"                                                                               \
    "models:\n"                                                                                    \
    "  - name: m\n"                                                                                \
    "    features:\n"                                                                              \
    "      - field: user\n"                                                                        \
    "        table: e\n"
// BASE has 14 lines; text appended after it starts at line 15.

// A teacher and a two-tower student that distils from it, each with its own table: the keys of
// distill: are refused without a distilling job. 11 lines.
#define BASE_STUDENT                                                                               \
    "cluster:\n"                                                                                   \
    "  jobs:\n"                                                                                    \
    "    - {name: w, role: teacher, model: m}\n"                                                   \
    "    - {name: s, role: student, model: sm, distill: true}\n"                                   \
    "ps:\n"                                                                                        \
    "  tables:\n"                                                                                  \
    "    - {name: e, dim: 8}\n"                                                                    \
    "    - {name: f, dim: 8}\n"                                                                    \
    "models:\n"                                                                                    \
    "  - {name: m, features: [{field: user, table: e}]}\n"                                         \
    "  - {name: sm, two_towers: true, features: [{field: user, table: f}]}\n"

static rd_config *new_cfg(void) {
    rd_config *c = calloc(1, sizeof *c);
    assert_non_null(c);
    return c;
}

static int parse(const char *yaml, rd_config *cfg, rd_errbuf *eb) {
    return rd_config_parse_string(yaml, strlen(yaml), "t.yaml", cfg, eb);
}

// Mismatches of expect_error in the running test (all are reported, then the test fails).
static int g_mismatches;

// Parse `yaml` and expect RD_ERR_CONFIG with a message starting with `prefix` and containing
// `part` (may be NULL).
static void expect_error(const char *yaml, const char *prefix, const char *part) {
    rd_config *c = new_cfg();
    rd_errbuf eb;
    int rc = parse(yaml, c, &eb);
    if (rc != RD_ERR_CONFIG || eb.code != RD_ERR_CONFIG ||
        strncmp(eb.msg, prefix, strlen(prefix)) != 0 || (part && !strstr(eb.msg, part))) {
        print_error("YAML:\n%s\nrc=%d msg: %s\nexpected prefix: %s\nand part: %s\n\n", yaml, rc,
                    eb.msg, prefix, part ? part : "(none)");
        g_mismatches++;
    }
    free(c);
}

static int reset_mismatches(void **state) {
    (void)state;
    g_mismatches = 0;
    return 0;
}

static int check_mismatches(void **state) {
    (void)state;
    return g_mismatches == 0 ? 0 : -1;
}

static void expect_ok(const char *yaml, rd_config *c) {
    rd_errbuf eb;
    int rc = parse(yaml, c, &eb);
    if (rc != RD_OK) {
        print_error("YAML:\n%s\nrc=%d msg: %s\n", yaml, rc, eb.msg);
        fail();
    }
}

static char *print_to_string(const rd_config *c, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    assert_non_null(f);
    rd_config_print(c, f);
    fclose(f);
    return buf;
}

// print -> parse -> memcmp (source_path is not part of the YAML).
static void expect_round_trip(const rd_config *c) {
    size_t len = 0;
    char *text = print_to_string(c, &len);
    rd_config *a = new_cfg(), *b = new_cfg();
    memcpy(a, c, sizeof *a);
    memset(a->source_path, 0, sizeof a->source_path);
    rd_errbuf eb;
    int rc = rd_config_parse_string(text, len, "printed", b, &eb);
    if (rc != RD_OK) {
        print_error("printed config does not parse: %s\n%s\n", eb.msg, text);
        fail();
    }
    if (memcmp(a, b, sizeof *a) != 0) {
        const unsigned char *pa = (const unsigned char *)a, *pb = (const unsigned char *)b;
        size_t i = 0;
        while (pa[i] == pb[i])
            i++;
        print_error("round trip differs at byte %zu\n%s\n", i, text);
        fail();
    }
    // Printing the re-parsed struct gives the same text as printing the original.
    size_t len1 = 0, len2 = 0;
    char *text1 = print_to_string(a, &len1);
    char *text2 = print_to_string(b, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(text1, text2, len1);
    free(text1);
    free(text2);
    free(text);
    free(a);
    free(b);
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static const char *source_dir(void) {
    const char *d = getenv("RD_SOURCE_DIR");
    return d ? d : "..";
}

// ---------------------------------------------------------------------------------------------
// Defaults

static void test_defaults(void **state) {
    (void)state;
    rd_config *c = new_cfg();
    memset(c, 0xab, sizeof *c);
    rd_config_defaults(c);
    assert_string_equal(c->source_path, "");
    assert_string_equal(c->run.name, "run");
    assert_string_equal(c->run.out_dir, "runs/run");
    assert_int_equal(c->run.seed, 42);
    assert_string_equal(c->run.log_level, "info");
    assert_int_equal(c->cluster.ps_ranks, 1);
    assert_int_equal(c->cluster.n_jobs, 0);
    assert_int_equal(c->cluster.blas_threads, 1);
    assert_int_equal(c->cluster.poll_us_max, 200);
    assert_int_equal(c->cluster.freeze_timeout_s, 600);
    assert_int_equal(c->data.source, RD_DATA_SYNTHETIC);
    assert_string_equal(c->data.input, "");
    assert_string_equal(c->data.dir, "runs/run/data");
    assert_int_equal(c->data.history_max, 256);
    assert_string_equal(c->data.schema.delimiter, ",");
    assert_int_equal(c->data.schema.header, 1);
    assert_int_equal(c->data.schema.quoting, 1);
    assert_string_equal(c->data.schema.time_format, "unix");
    assert_int_equal(c->data.schema.label_op, RD_LABEL_GE);
    assert_true(c->data.schema.label_threshold == 1.0);
    assert_int_equal(c->data.synthetic.events, 200000);
    assert_int_equal(c->data.synthetic.users, 2000);
    assert_int_equal(c->data.synthetic.items, 5000);
    assert_int_equal(c->data.synthetic.topics, 32);
    assert_int_equal(c->data.synthetic.dim, 16);
    assert_true(c->data.synthetic.drift == 0.02);
    assert_true(c->data.synthetic.long_range == 1.0);
    assert_int_equal(c->data.synthetic.memory_span, 400);
    assert_true(c->data.synthetic.base_ctr == 0.3);
    assert_int_equal(c->data.synthetic.seed, 0);
    assert_true(c->data.split.batch_fraction == 0.8);
    assert_true(c->data.split.holdout_fraction == 0.1);
    assert_int_equal(c->data.split.stream_windows, 5);
    assert_true(c->data.negatives.rate == 1.0);
    assert_true(c->data.negatives.pos_rate == 1.0);
    assert_int_equal(c->ps.n_tables, 0);
    assert_int_equal(c->ps.sync, 1);
    assert_int_equal(c->ps.staleness, 0);
    assert_int_equal(c->ps.max_msg_bytes, 64u << 20);
    assert_string_equal(c->ps.checkpoint_dir, "runs/run/ckpt");
    assert_int_equal(c->ps.checkpoint_every, 0);
    assert_int_equal(c->ps.checkpoint_keep, 2);
    assert_int_equal(c->n_models, 0);
    assert_int_equal(c->train.batch_size, 256);
    assert_int_equal(c->train.epochs, 1);
    assert_int_equal(c->train.order, RD_ORDER_TIME);
    assert_string_equal(c->train.optimizer, "adam");
    assert_true(c->train.lr == 1e-3f);
    assert_true(c->train.beta1 == 0.9f);
    assert_true(c->train.beta2 == 0.999f);
    assert_true(c->train.eps == 1e-8f);
    assert_true(c->train.weight_decay == 0.0f);
    assert_int_equal(c->train.eval_every, 100);
    assert_int_equal(c->tokens.dim, 64);
    assert_string_equal(c->tokens.store_dir, "runs/run/tokens");
    assert_string_equal(c->tokens.dtype, "fp32");
    assert_int_equal(c->tokens.scheme, 2);
    assert_int_equal(c->tokens.sit_layers, 2);
    assert_int_equal(c->tokens.window, 32);
    assert_string_equal(c->tokens.source_model, "");
    assert_int_equal(c->tokens.map_size, 64u << 20);
    assert_int_equal(c->tokens.append_batch, 4096);
    assert_true(c->distill.alpha == 1.0f);
    assert_true(c->distill.temperature == 1.0f);
    assert_int_equal(c->distill.aux_tower, 1);
    assert_int_equal(c->distill.aux_task, 1);
    assert_int_equal(c->distill.debias, 1);
    assert_true(c->distill.bias == 0.0f);
    assert_int_equal(c->distill.start_window, -1);
    assert_int_equal(c->distill.start_epoch, 0);
    assert_int_equal(c->distill.max_in_flight, 8);
    assert_int_equal(c->distill.batch, 1024);
    assert_int_equal(c->distill.wait_ms, 2000);
    assert_string_equal(c->distill.target_log, "runs/run/targets");
    assert_int_equal(c->distill.replay, 0);
    assert_string_equal(c->output.metrics_format, "csv");
    assert_int_equal(c->output.plot, 1);
    assert_int_equal(c->output.progress_every_s, 10);
    // Padding and unused array entries are zero: two calls over different garbage agree.
    rd_config *d = new_cfg();
    memset(d, 0x5c, sizeof *d);
    rd_config_defaults(d);
    assert_memory_equal(c, d, sizeof *c);
    free(d);
    free(c);
}

// Defaults of entries created from YAML lists, and the derived defaults.
static void test_entry_defaults_and_resolve(void **state) {
    (void)state;
    rd_config *c = new_cfg();
    expect_ok(BASE "run:\n  name: exp1\n"
                   "data:\n  source: movielens100k\n",
              c);
    assert_string_equal(c->run.out_dir, "runs/exp1");
    assert_string_equal(c->data.dir, "runs/exp1/data");
    assert_string_equal(c->ps.checkpoint_dir, "runs/exp1/ckpt");
    assert_string_equal(c->tokens.store_dir, "runs/exp1/tokens");
    assert_string_equal(c->distill.target_log, "runs/exp1/targets");
    assert_string_equal(c->data.input, "../shared/data/movielens-100k");
    // --out moves the paths under the old run folder, each keeping its own name under it; one
    // that climbs out through "..", and one elsewhere, stay; a control character is refused.
    {
        rd_config *m = new_cfg();
        expect_ok("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                  "ps:\n  checkpoint_dir: runs/x/checkpoints\n  tables:\n    - {name: e, dim: 8}\n"
                  "models:\n  - {name: m, features: [{field: user, table: e}]}\n"
                  "run:\n  name: x\n  out_dir: runs/x\n"
                  "data:\n  dir: runs/x/../shared/d\ntokens:\n  store_dir: /scratch/tok\n",
                  m);
        rd_errbuf meb;
        rd_errbuf_clear(&meb);
        assert_int_equal(rd_config_move_out_dir(m, "NEW", &meb), RD_OK);
        assert_string_equal(m->run.out_dir, "NEW");
        assert_string_equal(m->ps.checkpoint_dir, "NEW/checkpoints");
        assert_string_equal(m->data.dir, "runs/x/../shared/d");
        assert_string_equal(m->tokens.store_dir, "/scratch/tok");
        assert_string_equal(m->distill.target_log, "NEW/targets");
        assert_int_equal(rd_config_move_out_dir(m, "a\nworld_size=1", &meb), RD_ERR_ARG);
        assert_non_null(strstr(meb.msg, "control character (byte 0x0a)"));
        free(m);
    }
    const rd_job_config *j = &c->cluster.jobs[0];
    assert_int_equal(j->ranks, 1);
    assert_int_equal(j->distill, 0);
    const rd_table_config *t = &c->ps.tables[0];
    assert_string_equal(j->init_as, ""); // "" = initialise under the own name
    assert_string_equal(t->init_as, "");
    assert_int_equal(t->optim.kind, RD_OPT_ADAGRAD);
    assert_true(t->optim.lr == 0.05f);
    assert_true(t->optim.beta1 == 0.9f);
    assert_true(t->optim.beta2 == 0.999f);
    assert_true(t->optim.eps == 1e-8f);
    assert_true(t->optim.initial_accumulator == 0.1f);
    assert_true(t->optim.l1 == 0.0f && t->optim.l2 == 0.0f && t->optim.beta == 1.0f);
    assert_true(t->init_std == 0.01f);
    assert_int_equal(t->admit_count, 1);
    assert_int_equal(t->ttl, 0);
    assert_int_equal(t->capacity, 4096);
    const rd_model_config *m = &c->models[0];
    assert_int_equal(m->features[0].pooling, RD_POOL_MEAN);
    assert_int_equal(m->seq.kind, RD_SEQ_NONE);
    assert_int_equal(m->seq.length, 16);
    assert_int_equal(m->seq.layers, 1);
    assert_int_equal(m->seq.heads, 2);
    assert_int_equal(m->seq.dim, 0);
    assert_int_equal(m->seq.with_labels, 1);
    assert_int_equal(m->seq.view, RD_SEQ_NONE);
    assert_int_equal(m->seq.view_length, 16);
    assert_int_equal(m->seq.view_by_label, 0);
    assert_int_equal(m->tokens.scheme, 0);
    assert_int_equal(m->tokens.length, 64);
    assert_int_equal(m->tokens.kind, RD_SEQ_TRANSFORMER);
    assert_int_equal(m->tokens.adapter, 64);
    assert_int_equal(m->tokens.n_stats, 0);
    assert_int_equal(m->tokens.same_time, 0);
    assert_int_equal(m->n_mlp, 0);
    assert_int_equal(m->n_tower, 0);
    assert_int_equal(m->two_towers, 0);
    assert_string_equal(m->activation, "relu");
    // A field's defaults (a MovieLens source refuses a schema: its preset fills it).
    expect_ok(BASE "data:\n  schema:\n    fields:\n      - name: g\n", c);
    const rd_field_config *f = &c->data.schema.fields[0];
    assert_string_equal(f->column, "g"); // column defaults to the field name
    assert_int_equal(f->kind, RD_FIELD_CATEGORICAL);
    assert_int_equal(f->max_len, 8);
    assert_string_equal(f->sep, "|");
    assert_int_equal(f->log1p, 0);

    // movielens1m has its own input default; synthetic none. Explicit paths are kept.
    expect_ok(BASE "data:\n  source: movielens1m\n  dir: /tmp/d\n", c);
    assert_string_equal(c->data.input, "../shared/data/movielens-1m");
    assert_string_equal(c->data.dir, "/tmp/d");
    expect_ok(BASE "run:\n  out_dir: /scratch/x\n", c);
    assert_string_equal(c->run.out_dir, "/scratch/x");
    assert_string_equal(c->data.dir, "/scratch/x/data");
    assert_string_equal(c->data.input, "");

    // A distilled student joins the first teacher; a sequence branch takes the item's table.
    expect_ok("cluster:\n  jobs:\n"
              "    - {name: t1, role: teacher, model: m}\n"
              "    - {name: t2, role: teacher, model: m2}\n"
              "    - {name: s, role: student, model: s, distill: true}\n"
              "ps:\n  tables:\n    - {name: e, dim: 8}\n    - {name: e2, dim: 4}\n"
              "    - {name: e3, dim: 8}\n"
              "models:\n"
              "  - name: m\n    features:\n      - {field: user, table: e}\n"
              "  - name: m2\n    features:\n      - {field: user, table: e3}\n"
              "  - name: s\n    features:\n      - {field: item, table: e2}\n"
              "    seq: {kind: mean}\n    two_towers: true\n",
              c);
    assert_string_equal(c->cluster.jobs[2].teacher, "t1");
    assert_string_equal(c->cluster.jobs[0].teacher, "");
    assert_string_equal(c->models[2].seq.table, "e2");
    assert_string_equal(c->models[0].seq.table, ""); // kind none: untouched
    free(c);
}

// ---------------------------------------------------------------------------------------------
// Value syntaxes

static void test_value_forms(void **state) {
    (void)state;
    rd_config *c = new_cfg();
    expect_ok(BASE_STUDENT "data:\n  synthetic:\n    events: 2e5\n    drift: 1e-3\n"
                           "output:\n  plot: Off\n  progress_every_s: +7\n"
                           "distill:\n  aux_task: 0\n  debias: YES\n  bias: 2.5\n"
                           "tokens:\n  map_size: 1GiB\n  window: 1_000\n  sit_layers: 0x10\n"
                           "train:\n  lr: 3\n",
              c);
    assert_int_equal(c->data.synthetic.events, 200000);
    assert_true(c->data.synthetic.drift == 1e-3);
    assert_int_equal(c->output.plot, 0);
    assert_int_equal(c->output.progress_every_s, 7);
    assert_int_equal(c->distill.aux_task, 0);
    assert_int_equal(c->distill.debias, 1);
    assert_true(c->distill.bias == 2.5f);
    assert_int_equal(c->tokens.map_size, 1u << 30);
    assert_int_equal(c->tokens.window, 1000);
    assert_int_equal(c->tokens.sit_layers, 16);
    assert_true(c->train.lr == 3.0f);
    expect_ok("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
              "models:\n  - {name: m, features: [{field: item, table: e}]}\n"
              "ps:\n  sync: no\n  max_msg_bytes: 2 MiB\n  staleness: 0x10\n"
              "  checkpoint_every: 1_000\n  tables:\n    - {name: e, dim: 8}\n",
              c);
    assert_int_equal(c->ps.sync, 0);
    assert_int_equal(c->ps.max_msg_bytes, 2u << 20);
    assert_int_equal(c->ps.staleness, 16);
    assert_int_equal(c->ps.checkpoint_every, 1000);

    // Label: rule string (several spellings) and map form.
    static const struct {
        const char *rule;
        const char *col;
        int op;
        double thr;
    } rules[] = {
        {"\"rating >= 4\"", "rating", RD_LABEL_GE, 4},
        {"'clicked>0'", "clicked", RD_LABEL_GT, 0},
        {"\"x == -1.5\"", "x", RD_LABEL_EQ, -1.5},
        {"\"my col != 2\"", "my col", RD_LABEL_NE, 2},
        {"\"s<=1e3\"", "s", RD_LABEL_LE, 1000},
        {"\"s < 0.25\"", "s", RD_LABEL_LT, 0.25},
        {"\"s = 3\"", "s", RD_LABEL_EQ, 3},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        char y[512];
        snprintf(y, sizeof y, BASE "data:\n  schema:\n    label: %s\n", rules[i].rule);
        expect_ok(y, c);
        assert_string_equal(c->data.schema.label_column, rules[i].col);
        assert_int_equal(c->data.schema.label_op, rules[i].op);
        assert_true(c->data.schema.label_threshold == rules[i].thr);
    }
    expect_ok(BASE "data:\n  schema:\n    quoting: false\n", c);
    assert_int_equal(c->data.schema.quoting, 0);
    expect_ok(BASE "data:\n  schema:\n    label: {column: r, op: \"<\", threshold: 2}\n", c);
    assert_string_equal(c->data.schema.label_column, "r");
    assert_int_equal(c->data.schema.label_op, RD_LABEL_LT);
    assert_true(c->data.schema.label_threshold == 2.0);
    assert_int_equal(c->data.schema.n_label_values, 0);
    // Text labels (an event-type column): the rule with a quoted value, and the map with values.
    expect_ok(BASE "data:\n  schema:\n    label: 'event == \"buy\"'\n", c);
    assert_string_equal(c->data.schema.label_column, "event");
    assert_int_equal(c->data.schema.label_op, RD_LABEL_EQ);
    assert_int_equal(c->data.schema.n_label_values, 1);
    assert_string_equal(c->data.schema.label_values[0], "buy");
    expect_ok(BASE "data:\n  schema:\n    label: \"kind != 'page view'\"\n", c);
    assert_string_equal(c->data.schema.label_column, "kind");
    assert_int_equal(c->data.schema.label_op, RD_LABEL_NE);
    assert_string_equal(c->data.schema.label_values[0], "page view");
    expect_ok(BASE "data:\n  schema:\n    label: {column: ev, values: [click, \"add to cart\"]}\n",
              c);
    assert_int_equal(c->data.schema.label_op, RD_LABEL_EQ); // implied by values
    assert_int_equal(c->data.schema.n_label_values, 2);
    assert_string_equal(c->data.schema.label_values[1], "add to cart");
    expect_round_trip(c); // printed without a threshold, which values exclude
    expect_ok(BASE "data:\n  schema:\n    label: {column: ev, op: \"!=\", values: [view]}\n", c);
    assert_int_equal(c->data.schema.label_op, RD_LABEL_NE);
    expect_round_trip(c);

    // Strings: escapes, tab delimiter, UTF-8; null and empty values.
    expect_ok(BASE
              "data:\n  schema:\n    delimiter: \"\\t\"\n    path: \"caf\\u00e9 \\\"q\\\".csv\"\n"
              "  input: ~\n",
              c);
    assert_string_equal(c->data.schema.delimiter, "\t");
    assert_string_equal(c->data.schema.path, "caf\xc3\xa9 \"q\".csv");
    assert_string_equal(c->data.input, "");
    // Empty maps and lists keep defaults / are empty.
    expect_ok(BASE "train:\noutput: {}\n", c);
    assert_int_equal(c->train.batch_size, 256);
    free(c);
}

// Delimiters by name: data.schema.delimiter and side[].delimiter take tab, comma, semicolon,
// pipe and space (in any case, quoted or not) as the one byte each names; "tab" fitted the
// 3-byte member and was read as a three-byte separator. Literal separators and the "\t"
// spellings are unchanged, and a name is printed back as its byte.
#define DELIM_CSV                                                                                  \
    BASE "data:\n  source: csv\n  schema:\n    path: log.csv\n    user_column: u\n"                \
         "    item_column: i\n    time_column: t\n    label: l >= 1\n"

static void test_delimiter_names(void **state) {
    (void)state;
    static const struct {
        const char *yaml; // the value as written in the YAML
        const char *want; // the delimiter it gives
    } cases[] = {
        {"tab", "\t"},    {"TAB", "\t"},  {"\"tab\"", "\t"}, {"comma", ","},     {"semicolon", ";"},
        {"pipe", "|"},    {"Space", " "}, {"\"\\t\"", "\t"}, {"'\\t'", "\\t"},   {"\";\"", ";"},
        {"\"::\"", "::"}, {"\"|\"", "|"}, {"tabs", NULL},    {"\"tab \"", NULL}, {"colon", NULL},
    };
    rd_config *c = new_cfg();
    char y[2048];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(y, sizeof y,
                 DELIM_CSV "    delimiter: %s\n"
                           "    side:\n      - {name: users, path: u.csv, key_column: id, "
                           "join_column: u, header: true, delimiter: %s}\n",
                 cases[k].yaml, cases[k].yaml);
        if (!cases[k].want) {
            // Not a name and longer than a delimiter: refused, saying what to write.
            expect_error(y, "t.yaml:", "string too long");
            expect_error(y, "t.yaml:", "one of the names tab, comma, semicolon, pipe, space");
            continue;
        }
        expect_ok(y, c);
        assert_string_equal(c->data.schema.delimiter, cases[k].want);
        assert_string_equal(c->data.schema.side[0].delimiter, cases[k].want);
        expect_round_trip(c);
    }
    // A multi field's value separator takes the same names ("tab" was a three-byte separator
    // that split no value); a literal one stays as written.
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(y, sizeof y, DELIM_CSV "    fields:\n      - {name: tags, kind: multi, sep: %s}\n",
                 cases[k].yaml);
        if (!cases[k].want) {
            expect_error(y, "t.yaml:", "data.schema.fields[0].sep: string too long");
            expect_error(y, "t.yaml:", "one of the names tab, comma, semicolon, pipe, space");
            continue;
        }
        expect_ok(y, c);
        assert_string_equal(c->data.schema.fields[0].sep, cases[k].want);
        expect_round_trip(c);
    }
    // A --set override is parsed as YAML too.
    rd_errbuf eb;
    snprintf(y, sizeof y, DELIM_CSV);
    const char *sets[] = {"data.schema.delimiter=pipe"};
    assert_int_equal(rd_config_parse_string_sets(y, strlen(y), "t.yaml", sets, 1, c, &eb), RD_OK);
    assert_string_equal(c->data.schema.delimiter, "|");
    free(c);
}

// ---------------------------------------------------------------------------------------------
// Error kinds, each with its exact location and key path.

static void test_errors_syntax(void **state) {
    (void)state;
    expect_error("run:\n  name: [x\n",
                 "t.yaml:3:1: yaml: while parsing a flow sequence started "
                 "at line 2: did not find expected ',' or ']'",
                 NULL);
    expect_error("run:\n  name: x\n bad: 1\n", "t.yaml:3:2: yaml: ", NULL);
    expect_error("run: {name: x}\n---\nrun: {name: y}\n",
                 "t.yaml:2:1: yaml: only one YAML document is allowed per file", NULL);
    expect_error("run: \"unterminated\n", "t.yaml:", "yaml:");
    expect_error("run:\n\tname: x\n", "t.yaml:2:1: yaml: ", NULL);
    expect_error("- 1\n- 2\n", "t.yaml:1:1: (top level): expected a map, got a list", NULL);
    expect_error("just text\n", "t.yaml:1:1: (top level): expected a map, got a scalar", NULL);
    // Nesting guard.
    char deep[400];
    memset(deep, '[', 100);
    snprintf(deep + 100, sizeof deep - 100, "%s", "\n");
    expect_error(deep, "t.yaml:1:65: yaml: nested deeper than 64 levels", NULL);
    expect_error("{? [a]: 1}\n", "t.yaml:1:", "keys must be plain strings, got a list");
    expect_error("run: &r {name: *r}\n", "t.yaml:1:6: run.name: expected a string, got a map",
                 NULL);
}

static void test_errors_keys(void **state) {
    (void)state;
    // Unknown key with a suggestion, and without (the known keys are listed).
    expect_error(BASE "run:\n  nmae: x\n",
                 "t.yaml:16:3: run.nmae: unknown key (did you mean 'name'?)", NULL);
    expect_error(BASE "ps:\n", "t.yaml:15:1: ps: duplicate key (first given at line 6)", NULL);
    expect_error("zzz: 1\n" BASE,
                 "t.yaml:1:1: zzz: unknown key (known keys: run, cluster, data, ps, models, train, "
                 "tokens, distill, output)",
                 NULL);
    expect_error(BASE "train:\n  learning_rate: 1\n",
                 "t.yaml:16:3: train.learning_rate: unknown key (known keys: ", "eval_every");
    expect_error("models:\n  - name: m\n    mpl: [1]\n",
                 "t.yaml:3:5: models[0].mpl: unknown key (did you mean 'mlp'?)", NULL);
    expect_error(
        "ps:\n  tables:\n    - name: e\n      dim: 8\n      optimizer:\n        typ: sgd\n",
        "t.yaml:6:9: ps.tables[0].optimizer.typ: unknown key (did you mean 'type'?)", NULL);
    // Duplicate key inside a list entry.
    expect_error("ps:\n  tables:\n    - name: e\n      dim: 8\n      dim: 9\n",
                 "t.yaml:5:7: ps.tables[0].dim: duplicate key (first given at line 4)", NULL);
    // Missing required keys: reported at the map that lacks them.
    expect_error("ps:\n  tables:\n    - name: e\n",
                 "t.yaml:3:7: ps.tables[0]: missing required key 'dim'", NULL);
    expect_error("cluster:\n  jobs:\n    - {name: a, model: m}\n",
                 "t.yaml:3:7: cluster.jobs[0]: missing required key 'role'", NULL);
    expect_error("models:\n  - name: m\n    features:\n      - {table: e}\n",
                 "t.yaml:4:9: models[0].features[0]: missing required key 'field'", NULL);
    expect_error("cluster:\n  jobs:\n    -\n",
                 "t.yaml:3:6: cluster.jobs[0]: expected a map, got a "
                 "scalar",
                 NULL);
    expect_error("data:\n  schema:\n    side:\n      - {name: u, path: p, key_column: k}\n",
                 "t.yaml:4:9: data.schema.side[0]: missing required key 'join_column'", NULL);
    // Required strings must not be empty.
    expect_error("ps:\n  tables:\n    - name: \"\"\n      dim: 8\n",
                 "t.yaml:3:13: ps.tables[0].name: must not be empty", NULL);
}

static void test_errors_types(void **state) {
    (void)state;
    expect_error(BASE "run:\n  seed: abc\n",
                 "t.yaml:16:9: run.seed: expected a non-negative integer, got 'abc'", NULL);
    expect_error(BASE "run:\n  seed: -1\n",
                 "t.yaml:16:9: run.seed: value '-1' does not fit a non-negative 64-bit int", NULL);
    expect_error(BASE "cluster2: 1\n",
                 "t.yaml:15:1: cluster2: unknown key (did you mean "
                 "'cluster'?)",
                 NULL);
    expect_error("cluster:\n  ps_ranks: \"4\"\n",
                 "t.yaml:2:13: cluster.ps_ranks: expected an integer, got the quoted string '4'",
                 NULL);
    expect_error("cluster:\n  ps_ranks: 2.5\n",
                 "t.yaml:2:13: cluster.ps_ranks: expected an integer, got '2.5'", NULL);
    expect_error("cluster:\n  ps_ranks: 99999999999\n",
                 "t.yaml:2:13: cluster.ps_ranks: value '99999999999' does not fit a 32-bit int",
                 NULL);
    expect_error("cluster:\n  ps_ranks:\n",
                 "t.yaml:2:12: cluster.ps_ranks: expected an integer, "
                 "got nothing (null)",
                 NULL);
    expect_error("cluster:\n  ps_ranks: [1]\n",
                 "t.yaml:2:13: cluster.ps_ranks: expected an integer, got a list", NULL);
    expect_error("run:\n  name: {a: 1}\n", "t.yaml:2:9: run.name: expected a string, got a map",
                 NULL);
    expect_error("run: 5\n", "t.yaml:1:6: run: expected a map, got a scalar", NULL);
    expect_error("ps:\n  sync: maybe\n",
                 "t.yaml:2:9: ps.sync: expected a boolean (true/false/yes/no/on/off), got 'maybe'",
                 NULL);
    expect_error("train:\n  lr: fast\n",
                 "t.yaml:2:7: train.lr: expected a finite number, got "
                 "'fast'",
                 NULL);
    expect_error("train:\n  lr: .nan\n", "t.yaml:2:7: train.lr: expected a finite number", NULL);
    expect_error("train:\n  lr: 1e99\n", "t.yaml:2:7: train.lr: expected a finite number", NULL);
    expect_error("models:\n  - name: m\n    mlp: 64\n",
                 "t.yaml:3:10: models[0].mlp: expected a list of integers, got a scalar", NULL);
    expect_error("models:\n  - name: m\n    mlp: [64, x]\n",
                 "t.yaml:3:15: models[0].mlp[1]: expected an integer, got 'x'", NULL);
    expect_error("models:\n  - name: m\n    mlp: [[1]]\n",
                 "t.yaml:3:11: models[0].mlp[0]: expected an integer, got a list", NULL);
    expect_error("cluster:\n  jobs: {name: a}\n",
                 "t.yaml:2:9: cluster.jobs: expected a list of maps, got a map", NULL);
    expect_error("ps:\n  tables:\n    - name: e\n      dim: 8\n      optimizer: adam\n",
                 "t.yaml:5:18: ps.tables[0].optimizer: expected a map, got a scalar", NULL);
    expect_error("data:\n  schema:\n    label: rating\n",
                 "t.yaml:3:12: data.schema.label: expected a rule 'COLUMN OP NUMBER'", NULL);
    expect_error("data:\n  schema:\n    label: \">= 4\"\n",
                 "t.yaml:3:12: data.schema.label: expected a rule", NULL);
    expect_error("data:\n  schema:\n    label: \"r >= x\"\n",
                 "t.yaml:3:12: data.schema.label: expected a rule", NULL);
    expect_error("data:\n  schema:\n    label: [r]\n",
                 "t.yaml:3:12: data.schema.label: expected a map, got a list", NULL);
    expect_error(
        "data:\n  schema:\n    label: 'ev >= \"buy\"'\n",
        "t.yaml:3:12: data.schema.label: a label rule on a text value takes == or !=", NULL);
    expect_error("data:\n  schema:\n    label: ev == buy\n",
                 "t.yaml:3:12: data.schema.label: expected a rule", "'COLUMN == \"TEXT\"'");
    expect_error("data:\n  schema:\n    label: '== \"buy\"'\n",
                 "t.yaml:3:12: data.schema.label: expected a label column before the operator",
                 NULL);
    expect_error("data:\n  schema:\n    label: 'ev == \"0123456789012345678901234567890123\"'\n",
                 "t.yaml:3:12: data.schema.label: label value too long (34 bytes; at most 31)",
                 NULL);
    expect_error("data:\n  schema:\n    label: {column: ev, values: [a], threshold: 1}\n",
                 "t.yaml:3:38: data.schema.label: label.threshold and label.values exclude each "
                 "other",
                 NULL);
    expect_error("data:\n  schema:\n    label: {column: ev, op: \">=\", values: [a]}\n",
                 "t.yaml:3:12: data.schema.label: label.values takes op \"==\"", NULL);
    expect_error("data:\n  schema:\n    label: {column: ev, values: [a, b, c, d, e, f, g, h, i]}\n",
                 "t.yaml:3:", "data.schema.label.values");
    expect_error("run:\n  name: \"a\\0b\"\n",
                 "t.yaml:2:9: run.name: string contains a NUL character", NULL);
    expect_error("ps:\n  max_msg_bytes: 64 MB\n",
                 "t.yaml:2:18: ps.max_msg_bytes: expected a non-negative integer (optionally with "
                 "KiB/MiB/GiB/TiB), got '64 MB'",
                 NULL);
    // An explicit string tag makes a string, as quotes do: an error where a number or a boolean
    // belongs (libyaml's document tags plain scalars !!str too; the loader tells them apart).
    expect_error(BASE "train:\n  batch_size: !!str 64\n",
                 "t.yaml:16:15: train.batch_size: expected an integer, got the string '64' "
                 "(explicit string tag)",
                 NULL);
    expect_error(BASE "train:\n  batch_size: ! 64\n",
                 "t.yaml:16:15: train.batch_size: expected an integer, got the string '64'", NULL);
    expect_error(BASE "train:\n  lr: &x !!str 0.1\n  beta1: *x\n",
                 "t.yaml:16:7: train.lr: expected a number, got the string '0.1'", NULL);
    expect_error(BASE "output:\n  plot: !!str false\n",
                 "t.yaml:16:9: output.plot: expected a boolean", "got the string 'false'");
    expect_error(BASE "    mlp: [8, !!str 4]\n",
                 "t.yaml:15:14: models[0].mlp[1]: expected an integer, got the string '4'", NULL);
    expect_error("ps:\n  tables:\n    - {name: e, dim: !!str 8}\n",
                 "t.yaml:3:22: ps.tables[0].dim: expected an integer, got the string '8' "
                 "(explicit string tag)",
                 NULL);
    {
        // ... while an integer tag is an integer, and a string key takes a tagged string (even
        // "null", which plain would be nothing).
        rd_config *c = new_cfg();
        expect_ok(BASE "train:\n  batch_size: !!int 64\nrun:\n  name: !!str null\n"
                       "data:\n  schema:\n    path: !!str 12\n",
                  c);
        assert_int_equal(c->train.batch_size, 64);
        assert_string_equal(c->run.name, "null");
        assert_string_equal(c->data.schema.path, "12");
        free(c);
    }
    // A malformed hex number is not a number (it was "does not fit a 32-bit int"), and float
    // notation stops where a double stops holding every integer (2^53: 9007199254740993.0 was
    // read as ...992).
    expect_error(BASE "train:\n  epochs: 0xZZ\n",
                 "t.yaml:16:11: train.epochs: expected an integer, got '0xZZ'", NULL);
    expect_error(BASE "run:\n  seed: 9007199254740993.0\n",
                 "t.yaml:16:9: run.seed: expected a non-negative integer", NULL);
    // A core tag must agree with the key's type, and other tags are refused: they were ignored
    // (`name: !!int abc` passed; `out_dir: !!binary ...`, PyYAML's bytes, kept the base64 text).
    expect_error(BASE "run:\n  name: !!int abc\n",
                 "t.yaml:16:9: run.name: tagged !!int, but this key takes a string", NULL);
    expect_error(BASE "train:\n  beta1: !!int 0.5\n",
                 "t.yaml:16:10: train.beta1: tagged !!int, but this key takes a number", NULL);
    expect_error(BASE "run:\n  out_dir: !!binary cnVucy94\n",
                 "t.yaml:16:12: yaml: tag !!binary is not supported", NULL);
    expect_error(BASE "run:\n  seed: !custom 5\n",
                 "t.yaml:16:9: yaml: tag !custom is not supported", NULL);
    expect_error(BASE "    mlp: !!set [8]\n", "t.yaml:15:10: yaml: tag !!set is not supported",
                 NULL);
}

static void test_errors_values(void **state) {
    (void)state;
    // Out of range (inclusive and exclusive bounds).
    expect_error("cluster:\n  ps_ranks: 0\n",
                 "t.yaml:2:13: cluster.ps_ranks: value 0 out of range [1, 4096]", NULL);
    expect_error("ps:\n  tables:\n    - name: e\n      dim: 1025\n",
                 "t.yaml:4:12: ps.tables[0].dim: value 1025 out of range [1, 1024]", NULL);
    expect_error("data:\n  negatives:\n    rate: 0\n",
                 "t.yaml:3:11: data.negatives.rate: value 0 out of range (0, 1]", NULL);
    expect_error("data:\n  split:\n    holdout_fraction: 1\n",
                 "t.yaml:3:23: data.split.holdout_fraction: value 1 out of range [0, 1)", NULL);
    expect_error("data:\n  synthetic:\n    events: 999\n",
                 "t.yaml:3:13: data.synthetic.events: value 999 out of range [1000, 1000000000]",
                 NULL);
    expect_error("ps:\n  max_msg_bytes: 1KiB\n",
                 "t.yaml:2:18: ps.max_msg_bytes: value 1024 out of range [4096, 1099511627776]",
                 NULL);
    expect_error("distill:\n  start_window: -2\n",
                 "t.yaml:2:17: distill.start_window: value -2 out of range [-1, 1000000]", NULL);
    expect_error("models:\n  - name: m\n    mlp: [1, 0]\n",
                 "t.yaml:3:14: models[0].mlp[1]: value 0 out of range [1, 65536]", NULL);
    // Unknown enum values list the allowed ones (enums and string choices).
    expect_error("data:\n  source: movielens\n",
                 "t.yaml:2:11: data.source: unknown value 'movielens' (allowed: synthetic, "
                 "movielens100k, movielens1m, csv)",
                 NULL);
    expect_error("cluster:\n  jobs:\n    - {name: a, role: techer, model: m}\n",
                 "t.yaml:3:23: cluster.jobs[0].role: unknown value 'techer' (allowed: teacher, "
                 "student)",
                 NULL);
    expect_error("run:\n  log_level: verbose\n",
                 "t.yaml:2:14: run.log_level: unknown value 'verbose' (allowed: error, warn, info, "
                 "debug)",
                 NULL);
    expect_error("ps:\n  tables:\n    - {name: e, dim: 8, optimizer: {type: rmsprop}}\n",
                 "t.yaml:3:43: ps.tables[0].optimizer.type: unknown value 'rmsprop'", NULL);
    // A byte the YAML reader refuses is placed where it is (every one was said at 1:1), and a
    // control character in a string (an escaped line break in a path) is refused.
    expect_error("run:\n  name: a\x01b\n", "t.yaml:2:10: yaml: control characters are not allowed",
                 NULL);
    expect_error("run:\n  out_dir: \"a\\nworld_size=1\"\n",
                 "t.yaml:2:12: run.out_dir: string contains a control character (byte 0x0a at 1)",
                 NULL);
    // String too long.
    expect_error("run:\n  name: abcdefghijabcdefghijabcdefghijab\n",
                 "t.yaml:2:9: run.name: string too long (32 bytes; at most 31)", NULL);
    expect_error("data:\n  schema:\n    delimiter: \"abcd\"\n",
                 "t.yaml:3:16: data.schema.delimiter: string too long (4 bytes; at most 3)", NULL);
    // Column names may be longer than other names (a CRM export's
    // "customer_identifier_from_crm_system"), up to RD_COLUMN_MAX - 1 bytes.
    {
        char yc[1024], col[RD_COLUMN_MAX + 1], want[160];
        memset(col, 'c', RD_COLUMN_MAX);
        col[RD_COLUMN_MAX] = '\0';
        snprintf(yc, sizeof yc, "data:\n  schema:\n    columns: [a, %s]\n", col);
        snprintf(want, sizeof want,
                 "t.yaml:3:18: data.schema.columns[1]: string too long (%d bytes; at most %d)",
                 RD_COLUMN_MAX, RD_COLUMN_MAX - 1);
        expect_error(yc, want, NULL);
        col[RD_COLUMN_MAX - 1] = '\0';
        snprintf(yc, sizeof yc,
                 BASE
                 "data:\n  source: csv\n  schema:\n    path: x.csv\n    columns: [u, i, t, %s]\n"
                 "    header: false\n    user_column: u\n    item_column: i\n    time_column: t\n"
                 "    label: %s >= 1\n",
                 col, col);
        rd_config *cc = new_cfg();
        expect_ok(yc, cc);
        assert_string_equal(cc->data.schema.label_column, col);
        free(cc);
    }
    // Too many list entries: reported at the first entry too many.
    char y[4096];
    size_t o = (size_t)snprintf(y, sizeof y, "cluster:\n  jobs:\n");
    for (int i = 0; i < RD_MAX_JOBS + 1; i++)
        o += (size_t)snprintf(y + o, sizeof y - o, "    - {name: j%d, role: student, model: m}\n",
                              i);
    expect_error(y, "t.yaml:11:7: cluster.jobs: too many entries (9 given; at most 8)", NULL);
    o = (size_t)snprintf(y, sizeof y, "models:\n  - name: m\n    mlp: [");
    for (int i = 0; i < RD_MAX_LAYERS + 2; i++)
        o += (size_t)snprintf(y + o, sizeof y - o, "%s8", i ? ", " : "");
    snprintf(y + o, sizeof y - o, "]\n");
    expect_error(y, "t.yaml:3:35: models[0].mlp: too many entries (10 given; at most 8)", NULL);
}

// Cross-field checks through the loader: located at the offending key.
static void test_errors_cross(void **state) {
    (void)state;
    expect_error("run:\n  name: x\n", "t.yaml:1:1: cluster.jobs: at least one worker job is needed",
                 NULL);
    expect_error("", "t.yaml:1:1: cluster.jobs: at least one worker job is needed", NULL);
    expect_error(BASE "run:\n  name: \"a b\"\n",
                 "t.yaml:16:9: run.name: invalid name 'a b' (use letters, digits, '_', '-', '.')",
                 NULL);
    // Names are path components: "." and ".." would leave their folder, ".x" hides a file.
    expect_error(BASE "run:\n  name: \"..\"\n",
                 "t.yaml:16:9: run.name: invalid name '..': a name must not start with '.'", NULL);
    expect_error(BASE "run:\n  name: .\n",
                 "t.yaml:16:9: run.name: invalid name '.': a name must not start with '.'", NULL);
    expect_error(BASE "run:\n  name: .hidden\n", "t.yaml:16:9: run.name: invalid name '.hidden'",
                 NULL);
    expect_error("cluster:\n  jobs:\n    - {name: .., role: teacher, model: m}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:3:14: cluster.jobs[0].name: invalid name '..': a name must not start "
                 "with '.'",
                 NULL);
    expect_error(BASE "  - name: ..\n",
                 "t.yaml:15:11: models[1].name: invalid name '..': a name must not start with '.'",
                 NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: ..., dim: 8}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:6:14: ps.tables[0].name: invalid name '...': a name must not start "
                 "with '.'",
                 NULL);
    {
        rd_config *c = new_cfg();
        expect_ok(BASE "run:\n  name: a..b.\n", c); // a dot inside or at the end is fine
        assert_string_equal(c->run.name, "a..b.");
        free(c);
    }
    // One table, one writer: two jobs of a launch naming one table (a feature's, or a history
    // branch's) are refused with the table and both jobs named.
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: a, role: student, model: m1}\n"
                 "    - {name: b, role: student, model: m2}\n"
                 "ps:\n  tables:\n    - {name: emb, dim: 4}\n    - {name: own, dim: 4}\n"
                 "models:\n"
                 "  - name: m1\n    features:\n      - {field: user, table: emb}\n"
                 "  - name: m2\n    features:\n      - {field: user, table: own}\n"
                 "      - {field: item, table: emb}\n",
                 "t.yaml:4:39: cluster.jobs[1].model: table 'emb' is used by job 'a' (model 'm1') "
                 "and job 'b' (model 'm2')",
                 "init_as");
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: a, role: student, model: m}\n"
                 "    - {name: b, role: student, model: m}\n"
                 "ps:\n  tables:\n    - {name: emb, dim: 4}\n"
                 "models:\n  - name: m\n    features:\n      - {field: user, table: emb}\n",
                 "t.yaml:4:39: cluster.jobs[1].model: table 'emb' is used by job 'a' (model 'm') "
                 "and job 'b' (model 'm')",
                 NULL);
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: a, role: student, model: m1}\n"
                 "    - {name: b, role: student, model: m2}\n"
                 "ps:\n  tables:\n    - {name: e1, dim: 4}\n    - {name: e2, dim: 4}\n"
                 "    - {name: hist, dim: 4}\n"
                 "models:\n"
                 "  - name: m1\n    features:\n      - {field: user, table: e1}\n"
                 "    seq: {kind: mean, table: hist}\n"
                 "  - name: m2\n    features:\n      - {field: user, table: e2}\n"
                 "    seq: {kind: mean, table: hist}\n",
                 "t.yaml:4:39: cluster.jobs[1].model: table 'hist' is used by job 'a'", NULL);
    // Job checks.
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: zz}\n",
                 "t.yaml:3:39: cluster.jobs[0].model: no model named 'zz' in models", NULL);
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: w, role: teacher, model: m}\n"
                 "    - {name: w, role: student, model: m}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:4:14: cluster.jobs[1].name: duplicate job name 'w'", NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m, distill: true}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:3:51: cluster.jobs[0].distill: only student jobs can distill", NULL);
    expect_error("cluster:\n  jobs:\n    - {name: s, role: student, model: m, distill: true}\n"
                 "models:\n  - name: m\n    two_towers: true\n",
                 "t.yaml:3:7: cluster.jobs[0].teacher: a distilled student needs a teacher job, "
                 "and there is none",
                 NULL);
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: a, role: student, model: m}\n"
                 "    - {name: s, role: student, model: m, distill: true, teacher: a}\n"
                 "models:\n  - name: m\n    two_towers: true\n",
                 "t.yaml:4:66: cluster.jobs[1].teacher: 'a' is not a teacher job", NULL);
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: t, role: teacher, model: m}\n"
                 "    - {name: s, role: student, model: m, distill: true}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:4:39: cluster.jobs[1].model: model 'm' distils into its auxiliary tower",
                 NULL);
    // The converse: aux_tower false with a two-tower model was distilled into the aux tower.
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: t, role: teacher, model: m}\n"
                 "    - {name: s, role: student, model: m, distill: true}\n"
                 "models:\n  - name: m\n    two_towers: true\ndistill:\n  aux_tower: false\n",
                 "t.yaml:4:39: cluster.jobs[1].model: model 'm' has two_towers: true but "
                 "distill.aux_tower is false",
                 NULL);
    // `teacher` belongs to a distilled student: elsewhere nothing reads it, and a student meant
    // to distill would silently learn from the labels alone.
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: t, role: teacher, model: m}\n"
                 "    - {name: s, role: student, model: m, teacher: nobody}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:4:51: cluster.jobs[1].teacher: 'nobody' is set, but job 's' does not "
                 "distill (distill: false)",
                 NULL);
    expect_error("cluster:\n  jobs:\n"
                 "    - {name: t, role: teacher, model: m}\n"
                 "    - {name: s, role: student, model: m, teacher: t}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:4:51: cluster.jobs[1].teacher: 't' is set, but job 's' does not distill",
                 NULL);
    expect_error("cluster:\n  jobs:\n    - {name: t, role: teacher, model: m, teacher: t}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:3:51: cluster.jobs[0].teacher: 't' is set, but job 't' does not distill",
                 NULL);
    // Replay feeds distilled students only: without one it would train on labels, replaying 0.
    expect_error("cluster:\n  jobs:\n    - {name: s, role: student, model: m}\n"
                 "models:\n  - {name: m, seq: {stats: [1]}}\ndistill:\n  replay: true\n",
                 "t.yaml:7:11: distill.replay: true, but no student job has distill: true", NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m, init_as: zz}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:3:51: cluster.jobs[0].init_as: no job named 'zz' to initialise as", NULL);
    // Table and model checks.
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8, init_as: zz}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:6:34: ps.tables[0].init_as: no table named 'zz' to initialise as", NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n    - {name: f, dim: 4, init_as: e}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:7:34: ps.tables[1].init_as: table 'e' has dim 8, this one 4", NULL);
    expect_error(BASE "  - name: m\n", "t.yaml:15:11: models[1].name: duplicate model name 'm'",
                 NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n    - {name: e, dim: 4}\n"
                 "models:\n  - name: m\n",
                 "t.yaml:7:14: ps.tables[1].name: duplicate table name 'e'", NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "models:\n  - name: m\n    features:\n      - {field: user, table: nope}\n",
                 "t.yaml:7:30: models[0].features[0].table: no table named 'nope' in ps.tables",
                 NULL);
    expect_error(BASE "      - field: user\n        table: e\n",
                 "t.yaml:15:16: models[0].features[1].field: field 'user' is embedded twice", NULL);
    // Features name fields the data source has (what the trainer resolves them against).
#define FEAT                                                                                       \
    "cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"                                \
    "ps:\n  tables:\n    - {name: e, dim: 8}\n"                                                    \
    "models:\n  - name: m\n    features:\n"
    expect_error(FEAT "      - {field: ctx, table: e}\n",
                 "t.yaml:10:17: models[0].features[0].field: the synthetic source has no field "
                 "'ctx' (data.synthetic.contexts is 0",
                 NULL);
    expect_error(FEAT "      - {field: colour, table: e}\n",
                 "t.yaml:10:17: models[0].features[0].field: the synthetic source has no field "
                 "'colour' (have: user, item, hour, weekday, topic, series)",
                 NULL);
    expect_error(FEAT "      - {field: engagement, table: e}\n",
                 "t.yaml:10:17: models[0].features[0].field: the synthetic source has no field "
                 "'engagement' (data.synthetic.feedback is 0",
                 NULL);
    expect_error(FEAT "      - {field: engagement, table: e}\ndata: {synthetic: {feedback: 1}}\n",
                 "t.yaml:10:17: models[0].features[0].field: field 'engagement' is feedback", NULL);
    expect_error(FEAT "      - {field: rating, table: e}\ndata: {source: movielens1m}\n",
                 "t.yaml:10:17: models[0].features[0].field: field 'rating' is feedback", NULL);
    expect_error(FEAT "      - {field: tags, table: e}\ndata: {source: movielens100k}\n",
                 "t.yaml:10:17: models[0].features[0].field: the MovieLens preset has no field "
                 "'tags' (have: user, item, hour, weekday, age, gender, occupation, zip, genres)",
                 NULL);
    {
        static const char *const ok[] = {
            FEAT "      - {field: topic, table: e}\n      - {field: series, table: e}\n"
                 "      - {field: hour, table: e}\n      - {field: weekday, table: e}\n",
            FEAT "      - {field: ctx, table: e}\ndata: {synthetic: {contexts: 4}}\n",
            FEAT "      - {field: genres, table: e}\n      - {field: zip, table: e}\n"
                 "data: {source: movielens100k}\n",
            FEAT "      - {field: age, table: e}\n      - {field: genres, table: e}\n"
                 "data: {source: movielens1m}\n",
        };
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
            rd_config *c = new_cfg();
            expect_ok(ok[i], c);
            free(c);
        }
    }
#undef FEAT
    // A model needs an input (the trainer refuses an empty backbone only after preparing data).
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "models:\n  - name: m\n    features: []\n    mlp: [4]\n",
                 "t.yaml:6:15: models[0].features: model 'm' has no input", NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "models:\n  - name: m\n    seq: {with_labels: false}\n",
                 "t.yaml:5:5: models[0].features: model 'm' has no input", NULL);
    // Targets in flight per teacher rank are bounded (the student's join table grows with them).
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - {name: m, features: [{field: item, table: e}]}\n"
                 "distill:\n  max_in_flight: 64\n  batch: 65536\n",
                 "t.yaml:11:10: distill.batch: max_in_flight 64 x batch 65536 = 4194304 targets in "
                 "flight per teacher rank, above 1048576",
                 NULL);
    // A tiny temperature scales the distillation gradient to nothing: refused. A float key's value
    // is shown as written (the shortest text that reads back as the stored float), not as its
    // double widening ("value 0.001000000047").
    expect_error("distill:\n  temperature: 1e-30\n",
                 "t.yaml:2:16: distill.temperature: value 1e-30 out of range [0.01, 1000]", NULL);
    expect_error("distill:\n  temperature: 0.001\n",
                 "t.yaml:2:16: distill.temperature: value 0.001 out of range [0.01, 1000]", NULL);
    // ... and a double key's value as the shortest text that reads back as the stored double.
    expect_error("data:\n  synthetic:\n    base_ctr: 1.0000001\n",
                 "t.yaml:3:15: data.synthetic.base_ctr: value 1.0000001 out of range (0, 1)", NULL);
    // A float above an exclusive bound only by less than float precision is stored as the bound.
    expect_error("train:\n  beta1: 0.99999999\n",
                 "t.yaml:2:10: train.beta1: value 1 out of range [0, 1)", NULL);
    // A float key's bounds are compared at float precision: the documented lower bound 0.01 is
    // stored as 0.0099999998f, below the double 0.01, and was refused ("value 0.009999999776
    // out of range [0.01, 1000]"). The upper bound is in range too.
    {
        rd_config *c = new_cfg();
        expect_ok(BASE_STUDENT "distill:\n  temperature: 0.01\n", c);
        assert_true(c->distill.temperature == 0.01f);
        expect_ok(BASE_STUDENT "distill:\n  temperature: 1000\n", c);
        assert_true(c->distill.temperature == 1000.0f);
        free(c);
    }
    // distill.bias below 0 would make the calibration f exceed 1: refused where it is written.
    expect_error("distill:\n  bias: -1\n",
                 "t.yaml:2:9: distill.bias: value -1 out of range [0, 1000]", NULL);
    // An underflowing but valid number (below the smallest normal float) is a number.
    {
        rd_config *c = new_cfg();
        expect_ok("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                  "ps:\n  tables:\n    - {name: e, dim: 8, optimizer: {eps: 1e-38}}\n"
                  "models:\n  - {name: m, features: [{field: item, table: e}]}\n",
                  c);
        assert_true(c->ps.tables[0].optim.eps > 0 && c->ps.tables[0].optim.eps < 1e-37f);
        free(c);
    }
    // tokens.heads must divide the token branch's width (tokens.adapter), as seq.heads must.
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - name: m\n    features: [{field: item, table: e}]\n"
                 "    tokens: {scheme: 2, kind: transformer, heads: 3, adapter: 16}\n"
                 "  - {name: src, features: [{field: item, table: e}]}\n"
                 "tokens: {scheme: 2, source_model: src}\n",
                 "t.yaml:10:51: models[0].tokens.heads: 3 heads do not divide the branch width 16",
                 NULL);
    // History statistics alone are an input (the "no input" error above is not said), but a
    // job's model must also embed something: its sparse state and checkpoints live on the PS.
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "models:\n  - name: m\n    features: []\n    seq: {stats: [4]}\n",
                 "t.yaml:3:39: cluster.jobs[0].model: job 'w' trains model 'm', which reads no "
                 "embedding table (no feature and no seq branch)",
                 NULL);
    {
        // A model no job trains may embed nothing (e.g. one kept for later).
        rd_config *c = new_cfg();
        expect_ok("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                  "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                  "models:\n  - {name: m, features: [{field: item, table: e}]}\n"
                  "  - {name: spare, seq: {stats: [4]}}\n",
                  c);
        free(c);
    }
    expect_error(BASE "    seq: {kind: mean}\n",
                 "t.yaml:15:10: models[0].seq.table: not set, and the model embeds no 'item' "
                 "feature",
                 NULL);
    expect_error(BASE "    seq: {kind: mean, table: e, length: 300}\n",
                 "t.yaml:15:41: models[0].seq.length: 300 exceeds data.history_max (256)", NULL);
    expect_error(BASE "    seq: {kind: transformer, table: e, length: 8, view: mean, "
                      "view_length: 9}\n",
                 "t.yaml:15:", "models[0].seq.view_length: 9 exceeds seq.length (8)");
    expect_error(BASE "    seq: {kind: din, table: e, view: transformer}\n",
                 "t.yaml:15:", "models[0].seq.view: a view is mean or din");
    expect_error(BASE "    seq: {kind: transformer, table: e, view_by_label: true}\n",
                 "t.yaml:15:", "models[0].seq.view_by_label: needs seq.view mean or din");
    expect_error(BASE "    seq: {kind: din, table: e, view: mean, view_length: 2, "
                      "view_by_label: true, with_labels: false}\n",
                 "t.yaml:15:", "models[0].seq.view_by_label: needs seq.with_labels");
    expect_error(BASE "    seq: {stats: [4, 4]}\n", "t.yaml:15:",
                 "models[0].seq.stats[1]: 4: the windows must be ascending and distinct");
    expect_error(BASE "    seq: {stats: [300]}\n",
                 "t.yaml:15:", "models[0].seq.stats[0]: 300 exceeds data.history_max (256)");
    expect_error(BASE "    seq: {stats_feedback: r}\n",
                 "t.yaml:15:", "models[0].seq.stats_feedback: needs seq.stats");
    expect_error(BASE "    seq: {stats: [2], stats_residual: true}\n",
                 "t.yaml:15:", "models[0].seq.stats_residual: needs seq.stats_feedback");
    expect_error(BASE "    tokens: {scheme: 2}\ntokens: {scheme: 2, source_model: m}\n",
                 "t.yaml:", "tokens.source_model: model 'm' reads instance tokens itself");
    expect_error(BASE "    dropout: 0.2\n", "t.yaml:15:",
                 "models[0].dropout: 0.2 needs an mlp (it drops the backbone MLP's outputs)");
    expect_error(BASE "    mlp: [4]\n    dropout: 1\n", "t.yaml:16:", "models[0].dropout");
    expect_error(BASE "    mlp: [4]\n    dropout: -0.1\n", "t.yaml:16:", "models[0].dropout");
    expect_error(BASE "    mlp: [4]\n    dropout: 0.1\ntokens: {source_model: m}\n", "t.yaml:",
                 "tokens.source_model: model 'm' has dropout 0.1: the tokens a source model "
                 "stores come from its training pass");
    expect_error(BASE "    seq: {stats: [2]}\ntokens: {source_model: m}\n", "t.yaml:",
                 "tokens.source_model: model 'm' has seq.stats: a source model compresses one "
                 "event");
    expect_error(BASE "    seq: {stats: [2], stats_feedback: rating}\n", "t.yaml:15:",
                 "models[0].seq.stats_feedback: the synthetic source has a feedback field "
                 "('engagement') only with data.synthetic.feedback: 1");
    expect_error(BASE "    seq: {stats: [2], stats_feedback: stars}\n"
                      "data: {source: movielens100k}\n",
                 "t.yaml:15:",
                 "models[0].seq.stats_feedback: 'stars': the MovieLens presets' feedback field");
    expect_error(BASE "    seq: {view: din}\n", "t.yaml:15:",
                 "models[0].seq.view: a second view of the history needs a history branch");
    expect_error(BASE "    seq: {kind: transformer, table: e, heads: 3}\n",
                 "t.yaml:15:47: models[0].seq.heads: 3 heads do not divide the branch width 8",
                 NULL);
    expect_error(BASE "    tokens: {scheme: 1}\n",
                 "t.yaml:15:22: models[0].tokens.scheme: reads scheme 1 tokens but tokens.scheme "
                 "builds scheme 2",
                 NULL);
    expect_error(BASE "    tokens: {scheme: 2}\n",
                 "t.yaml:15:22: models[0].tokens.scheme: the model reads instance tokens but "
                 "tokens.source_model is not set",
                 NULL);
    expect_error(BASE "    tokens: {scheme: 2, kind: none}\n",
                 "t.yaml:15:31: models[0].tokens.kind: a model that reads tokens needs", NULL);
    expect_error(BASE "    tokens: {stats: [4]}\n", "t.yaml:",
                 "models[0].tokens.stats[0]: needs tokens.scheme (the model reads no tokens)");
    expect_error(BASE "    tokens: {scheme: 2, length: 8, stats: [4, 16]}\n",
                 "t.yaml:", "models[0].tokens.stats[1]: 16 exceeds tokens.length (8)");
    expect_error(BASE "    tokens: {scheme: 2, stats: [4, 4]}\n", "t.yaml:",
                 "models[0].tokens.stats[1]: 4: the windows must be ascending and distinct");
    expect_error(BASE "    tokens: {scheme: 2, stats: [0]}\n", "t.yaml:", "tokens.stats");
    expect_error(BASE "    tokens: {scheme: 2, same_time: before}\n",
                 "t.yaml:", "tokens.same_time");
    expect_error(BASE "tokens:\n  source_model: ghost\n",
                 "t.yaml:16:17: tokens.source_model: no model named 'ghost' in models", NULL);
    // Data checks.
    expect_error(BASE "data:\n  split: {batch_fraction: 0.9, holdout_fraction: 0.1}\n",
                 "t.yaml:16:10: data.split: batch_fraction + holdout_fraction = 1 must be < 1",
                 NULL);
    expect_error(BASE "distill:\n  start_epoch: 1\n  start_window: 0\n", "t.yaml:",
                 "distill.start_epoch: 1: batch epochs use no targets when "
                 "distill.start_window is 0");
    expect_error(BASE "distill:\n  aux_tower: false\n  aux_task: false\n",
                 "t.yaml:", "distill.aux_task: false needs distill.aux_tower: true");
    rd_config *c = new_cfg();
    expect_ok(BASE_STUDENT "distill:\n  aux_task: false\n", c);
    assert_int_equal(c->distill.aux_task, 0);
    free(c);
    expect_error(BASE "distill:\n  start_epoch: 1\n",
                 "t.yaml:", "distill.start_epoch: 1 is not a batch epoch (train.epochs is 1)");
    expect_error(BASE "distill:\n  start_window: 5\n",
                 "t.yaml:16:17: distill.start_window: 5 is not a stream window (there are 5)",
                 NULL);
    expect_error(
        BASE "data:\n  source: csv\n",
        "t.yaml:16:3: data.schema.path: a csv source needs the path of the interaction log", NULL);
}

// The csv schema checks.
static void test_errors_csv(void **state) {
    (void)state;
#define CSV                                                                                        \
    BASE "data:\n"                                                                                 \
         "  source: csv\n"                                                                         \
         "  schema:\n"                                                                             \
         "    path: log.csv\n"                                                                     \
         "    header: false\n"
    // CSV has 19 lines; the schema map starts at line 18, column 5.
    rd_config *c = new_cfg();
    expect_ok(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                  "    time_column: t\n    label: l >= 1\n",
              c);
    free(c);
    expect_error(CSV "    user_column: u\n",
                 "t.yaml:18:5: data.schema.columns: a file without a header line (header: false) "
                 "needs the list of columns",
                 NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n",
                 "t.yaml:18:5: data.schema.label.column: required for a csv source", NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: x\n"
                     "    time_column: t\n    label: l >= 1\n",
                 "t.yaml:22:18: data.schema.item_column: column 'x' is not in data.schema.columns",
                 NULL);
    // One column as two of user, item and time gives events of one user, item or instant.
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: u\n"
                     "    time_column: t\n    label: l >= 1\n",
                 "t.yaml:22:18: data.schema.item_column: column 'u' is the user_column too", NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: i\n    label: l >= 1\n",
                 "t.yaml:23:18: data.schema.time_column: column 'i' is the item_column too", NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: {column: l, values: [a, b, a]}\n",
                 "t.yaml:", "data.schema.label.values[2]: duplicate value 'a'");
    expect_error(CSV "    columns: [u, i, u]\n",
                 "t.yaml:20:21: data.schema.columns[2]: duplicate column 'u'", NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: g, column: zz}\n",
                 "t.yaml:26:27: data.schema.fields[0].column: column 'zz' is not in "
                 "data.schema.columns",
                 NULL);
    // A field on the label column makes each event's label one of its own inputs (AUC 1).
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: g, column: l, kind: numeric}\n",
                 "t.yaml:26:27: data.schema.fields[0].column: field 'g' reads 'l', the label "
                 "column: a field cannot read its own event's label (use kind: feedback",
                 NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: t}\n      - {name: l}\n",
                 "t.yaml:27:9: data.schema.fields[1].column: field 'l' reads 'l', the label column",
                 NULL);
    expect_error(CSV "    columns: [u, i, t, ev]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: 'ev == \"buy\"'\n"
                     "    fields:\n      - {name: kind, column: ev, kind: multi}\n",
                 "t.yaml:26:30: data.schema.fields[0].column: field 'kind' reads 'ev', the label "
                 "column",
                 NULL);
    {
        // ... but a feedback field reads it over earlier events only, and a side table's column
        // of the same name is another column.
        rd_config *cc = new_cfg();
        expect_ok(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                      "    time_column: t\n    label: l >= 1\n"
                      "    side:\n      - {name: users, path: u.csv, key_column: id, "
                      "join_column: u, columns: [id, l]}\n"
                      "    fields:\n      - {name: r, column: l, kind: feedback}\n"
                      "      - {name: ul, column: l, side: users}\n",
                  cc);
        free(cc);
    }
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: t}\n      - {name: t}\n",
                 "t.yaml:27:16: data.schema.fields[1].name: duplicate field name 't'", NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: user, column: u}\n",
                 "t.yaml:26:16: data.schema.fields[0].name: 'user' is reserved", NULL);
    // A field's name follows the rule of the other names (it keys meta.yaml's vocab section,
    // written unquoted: "x: 1 #" read back as x).
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: \"x: 1 #\", column: l}\n",
                 "t.yaml:26:16: data.schema.fields[0].name: invalid name 'x: 1 #'", NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: .hidden, column: l}\n",
                 "t.yaml:26:16: data.schema.fields[0].name: invalid name '.hidden': a name must "
                 "not start with '.'",
                 NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: g, side: users}\n",
                 "t.yaml:26:25: data.schema.fields[0].side: no side table named 'users'", NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    side:\n      - {name: users, path: u.csv, key_column: id, "
                     "join_column: u}\n"
                     "    fields:\n      - {name: g, side: users}\n",
                 "t.yaml:26:9: data.schema.side[0].columns: a side file without a header line "
                 "needs the list of columns",
                 NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    side:\n      - {name: users, path: u.csv, key_column: id, "
                     "join_column: q, columns: [id, g]}\n",
                 "t.yaml:26:65: data.schema.side[0].join_column: column 'q' is not in "
                 "data.schema.columns",
                 NULL);
    expect_error(CSV "    columns: [u, i, t, l]\n    user_column: u\n    item_column: i\n"
                     "    time_column: t\n    label: l >= 1\n"
                     "    side:\n      - {name: users, path: u.csv, key_column: id, "
                     "join_column: u, columns: [id, g]}\n"
                     "    fields:\n      - {name: h, side: users}\n",
                 "t.yaml:28:9: data.schema.fields[0].column: column 'h' is not in the columns of "
                 "side table 'users'",
                 NULL);
#undef CSV
    // Features of a csv model must name schema fields (or user/item).
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - name: m\n    features:\n      - {field: age, table: e}\n"
                 "data:\n  source: csv\n  schema:\n    path: p\n    user_column: u\n"
                 "    item_column: i\n    time_column: t\n    label: l >= 1\n",
                 "t.yaml:10:17: models[0].features[0].field: no field named 'age' in "
                 "data.schema.fields",
                 NULL);
    // A numeric field enters the model directly; embedding it is an error (as in the trainer).
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - name: m\n    features:\n      - {field: x, table: e}\n"
                 "data:\n  source: csv\n  schema:\n    path: p\n    user_column: u\n"
                 "    item_column: i\n    time_column: t\n    label: l >= 1\n"
                 "    fields:\n      - {name: x, kind: numeric}\n",
                 "t.yaml:10:17: models[0].features[0].field: field 'x' is numeric: numeric fields "
                 "enter every model directly",
                 NULL);
    {
        // ... so with one, a model without features has an input (it is refused only because
        // a job's model must embed something).
        expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                     "models:\n  - name: m\n"
                     "data:\n  source: csv\n  schema:\n    path: p\n    user_column: u\n"
                     "    item_column: i\n    time_column: t\n    label: l >= 1\n"
                     "    fields:\n      - {name: x, kind: numeric}\n",
                     "t.yaml:3:39: cluster.jobs[0].model: job 'w' trains model 'm', which reads "
                     "no embedding table",
                     NULL);
    }
    // A feedback field is known only after its event: never a feature, only history statistics.
#define FB_CSV                                                                                     \
    "data:\n  source: csv\n  schema:\n    path: p\n    user_column: u\n"                           \
    "    item_column: i\n    time_column: t\n    label: l >= 1\n"                                  \
    "    fields:\n      - {name: r, kind: feedback}\n      - {name: x, kind: numeric}\n"
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - name: m\n    features:\n      - {field: r, table: e}\n" FB_CSV,
                 "t.yaml:10:17: models[0].features[0].field: field 'r' is feedback (known only "
                 "after the event): it cannot be a feature",
                 NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - name: m\n    features:\n      - {field: user, table: e}\n"
                 "    seq: {stats: [4], stats_feedback: x}\n" FB_CSV,
                 "t.yaml:11:", "models[0].seq.stats_feedback: field 'x' is not of kind feedback");
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - name: m\n    features:\n      - {field: user, table: e}\n"
                 "    seq: {stats: [4], stats_feedback: nope}\n" FB_CSV,
                 "t.yaml:11:", "models[0].seq.stats_feedback: no field named 'nope'");
    {
        const char *y =
            "cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
            "ps:\n  tables:\n    - {name: e, dim: 8}\n"
            "models:\n  - name: m\n    features:\n      - {field: user, table: e}\n"
            "    seq: {stats: [1, 4, 16], stats_feedback: r, stats_residual: true}\n" FB_CSV;
        rd_config *cc = new_cfg();
        rd_errbuf eb = {0};
        int rc = parse(y, cc, &eb);
        if (rc != RD_OK)
            fprintf(stderr, "%s\n", eb.msg);
        assert_int_equal(rc, RD_OK);
        assert_int_equal(cc->models[0].seq.n_stats, 3);
        assert_int_equal(cc->models[0].seq.stats[2], 16);
        assert_string_equal(cc->models[0].seq.stats_feedback, "r");
        assert_int_equal(cc->models[0].seq.stats_residual, 1);
        assert_int_equal(cc->data.schema.fields[0].kind, RD_FIELD_FEEDBACK);
        free(cc);
    }
    // tokens.side: feedback fields stored with each token.
#define TOK_M                                                                                      \
    "cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"                                \
    "ps:\n  tables:\n    - {name: e, dim: 8}\n"                                                    \
    "models:\n  - name: m\n    features:\n      - {field: user, table: e}\n"
    expect_error(TOK_M "tokens: {side: [x]}\n" FB_CSV,
                 "t.yaml:", "tokens.side[0]: field 'x' is not of kind feedback");
    expect_error(TOK_M "tokens: {side: [r, nope]}\n" FB_CSV,
                 "t.yaml:", "tokens.side[1]: no field named 'nope' in data.schema.fields");
    expect_error(TOK_M "tokens: {side: [r, r]}\n" FB_CSV,
                 "t.yaml:", "tokens.side[1]: 'r' is listed twice");
    expect_error(TOK_M "tokens: {side: [rating]}\ndata: {source: synthetic}\n", "t.yaml:",
                 "tokens.side[0]: the synthetic source has a feedback field ('engagement') only "
                 "with data.synthetic.feedback: 1");
    expect_error(TOK_M "tokens: {side: [rating]}\ndata: {source: synthetic, synthetic: {feedback: "
                       "1}}\n",
                 "t.yaml:",
                 "tokens.side[0]: 'rating': the synthetic source's feedback field is "
                 "'engagement'");
    expect_error(TOK_M "data: {source: synthetic, synthetic: {feedback: 2}}\n", "t.yaml:",
                 "data.synthetic.feedback: 2 (the context kind as the feedback field) needs "
                 "data.synthetic.contexts");
    expect_error(TOK_M "data: {source: synthetic, synthetic: {feedback: 4}}\n", "t.yaml:",
                 "data.synthetic.feedback: 4 (the remembered deliberate exposures as the feedback "
                 "field) needs data.synthetic.contexts");
    expect_error(TOK_M "tokens: {side: [stars]}\ndata: {source: movielens100k}\n", "t.yaml:",
                 "tokens.side[0]: 'stars': the MovieLens presets' feedback field is 'rating'");
    {
        rd_config *cc = new_cfg();
        rd_errbuf eb = {0};
        int rc = parse(TOK_M "tokens: {side: [r]}\n" FB_CSV, cc, &eb);
        if (rc != RD_OK)
            fprintf(stderr, "%s\n", eb.msg);
        assert_int_equal(rc, RD_OK);
        assert_int_equal(cc->tokens.n_side, 1);
        assert_string_equal(cc->tokens.side[0], "r");
        assert_int_equal(rd_tokens_side_width(&cc->tokens), 1);
        free(cc);
        cc = new_cfg();
        assert_int_equal(parse(TOK_M "tokens: {side: [r], side_residual: true}\n" FB_CSV, cc, &eb),
                         RD_OK);
        assert_int_equal(rd_tokens_side_width(&cc->tokens), 2);
        free(cc);
    }
    expect_error(TOK_M "tokens: {side_residual: true}\n" FB_CSV,
                 "t.yaml:", "tokens.side_residual: needs tokens.side");
    expect_error(TOK_M "tokens: {sit_labels: false, sit_pairs: true}\n" FB_CSV,
                 "t.yaml:", "tokens.sit_pairs: needs tokens.sit_labels");
    // search_by / sit_group_by: an attribute of the item, named where it applies.
    expect_error(TOK_M "    tokens: {search_by: x}\n" FB_CSV,
                 "t.yaml:", "models[0].tokens.search_by: needs tokens.search");
    expect_error(TOK_M "tokens: {sit_group_by: x}\n" FB_CSV,
                 "t.yaml:", "tokens.sit_group_by: needs tokens.sit_group: item");
    expect_error(TOK_M "tokens: {sit_group: item, sit_group_by: user}\n" FB_CSV,
                 "t.yaml:", "tokens.sit_group_by: 'user' is not an attribute of the item");
    expect_error(TOK_M "tokens: {sit_group: item, sit_group_by: nope}\n" FB_CSV,
                 "t.yaml:", "tokens.sit_group_by: no field named 'nope' in data.schema.fields");
    expect_error(TOK_M "tokens: {sit_group: item, sit_group_by: x}\n" FB_CSV,
                 "t.yaml:", "tokens.sit_group_by: field 'x' is numeric");
    expect_error(TOK_M "tokens: {sit_group: item, sit_group_by: r}\n" FB_CSV,
                 "t.yaml:", "tokens.sit_group_by: field 'r' is feedback");
    // A key of the item needs one value per event: not a multi field, not flag columns.
    expect_error(TOK_M "tokens: {sit_group: item, sit_group_by: g}\n" FB_CSV
                       "      - {name: g, kind: multi}\n",
                 "t.yaml:",
                 "tokens.sit_group_by: field 'g' holds several values per event (kind multi): a "
                 "key of the item needs one");
    expect_error(TOK_M "tokens: {sit_group: item, sit_group_by: genres}\n"
                       "data: {source: movielens100k}\n",
                 "t.yaml:",
                 "tokens.sit_group_by: field 'genres' holds several values per event (flag "
                 "columns): a key of the item needs one");
    {
        rd_config *cc = new_cfg();
        rd_errbuf eb = {0};
        assert_int_equal(parse(TOK_M "tokens: {sit_group: item}\n" FB_CSV, cc, &eb), RD_OK);
        assert_string_equal(cc->tokens.sit_group_by, "item"); // the defaults
        assert_string_equal(cc->models[0].tokens.search_by, "item");
        assert_true(rd_field_is_item(cc->tokens.sit_group_by) && rd_field_is_item(""));
        assert_false(rd_field_is_item("items") || rd_field_is_item("ite"));
        free(cc);
    }
    // tokens.query request_seq reads the history branch's output: it needs one, and a branch
    // kind that reads a query.
#define TOK_Q(model_keys)                                                                          \
    TOK_M model_keys "  - name: s\n    features:\n      - {field: user, table: e}\n"               \
                     "tokens: {scheme: 2, source_model: s}\n" FB_CSV
    expect_error(TOK_Q("    tokens: {scheme: 2, query: request_seq}\n"), "t.yaml:",
                 "models[0].tokens.query: request_seq reads the item-ID history branch, but "
                 "seq.kind is none");
    expect_error(TOK_Q("    seq: {kind: mean, table: e}\n"
                       "    tokens: {scheme: 2, kind: mean, query: request_seq}\n"),
                 "t.yaml:", "models[0].tokens.query: request_seq with tokens.kind mean");
    {
        rd_config *cc = new_cfg();
        rd_errbuf eb = {0};
        int rc = parse(TOK_Q("    seq: {kind: mean, table: e}\n"
                             "    tokens: {scheme: 2, query: request_seq}\n"),
                       cc, &eb);
        if (rc != RD_OK)
            fprintf(stderr, "%s\n", eb.msg);
        assert_int_equal(rc, RD_OK);
        assert_int_equal(cc->models[0].tokens.query, 1);
        assert_int_equal(cc->models[1].tokens.query, 0); // the default: request
        free(cc);
    }
    // tokens.label: embed (the default) | none.
    expect_error(TOK_Q("    tokens: {scheme: 2, label: drop}\n"),
                 "t.yaml:", "models[0].tokens.label");
    {
        rd_config *cc = new_cfg();
        rd_errbuf eb = {0};
        int rc = parse(TOK_Q("    tokens: {scheme: 2, label: none}\n"), cc, &eb);
        if (rc != RD_OK)
            fprintf(stderr, "%s\n", eb.msg);
        assert_int_equal(rc, RD_OK);
        assert_int_equal(cc->models[0].tokens.label, 1);
        assert_int_equal(cc->models[1].tokens.label, 0); // the default: embed
        free(cc);
    }
#undef TOK_Q
#undef TOK_M
#undef FB_CSV
    // ... but hour and weekday come from the timestamp of every source.
    {
        const char *y = "cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                        "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                        "models:\n  - name: m\n    features:\n      - {field: hour, table: e}\n"
                        "      - {field: weekday, table: e}\n"
                        "data:\n  source: csv\n  schema:\n    path: p\n    user_column: u\n"
                        "    item_column: i\n    time_column: t\n    label: l >= 1\n";
        rd_config *cc = new_cfg();
        rd_errbuf eb = {0};
        assert_int_equal(parse(y, cc, &eb), RD_OK);
        free(cc);
    }
    // A replaying student names the teacher job of an earlier launch; it need not be here, but a
    // job of that name that is not a teacher is still an error.
    {
        const char *y =
            "cluster:\n  jobs:\n    - {name: s, role: student, model: m, distill: true, "
            "teacher: teacher}\n"
            "ps:\n  tables:\n    - {name: e, dim: 8}\n"
            "models:\n  - name: m\n    two_towers: true\n"
            "    features: [{field: item, table: e}]\n"
            "distill:\n  replay: true\n";
        rd_config *cc = new_cfg();
        rd_errbuf eb = {0};
        assert_int_equal(parse(y, cc, &eb), RD_OK);
        free(cc);
    }
    expect_error("cluster:\n  jobs:\n    - {name: s, role: student, model: m, distill: true}\n"
                 "models:\n  - name: m\n    two_towers: true\ndistill:\n  replay: true\n",
                 "t.yaml:3:7: cluster.jobs[0].teacher: a replaying student needs `teacher:`", NULL);
}

// ---------------------------------------------------------------------------------------------
// rd_config_validate on structs built in code (no location: "key.path: problem").

static void build_valid(rd_config *c) {
    rd_config_defaults(c);
    c->cluster.n_jobs = 1;
    snprintf(c->cluster.jobs[0].name, RD_NAME_MAX, "w");
    c->cluster.jobs[0].role = RD_JOB_TEACHER;
    c->cluster.jobs[0].ranks = 2;
    snprintf(c->cluster.jobs[0].model, RD_NAME_MAX, "m");
    c->cluster.jobs[0].negatives.rate = c->cluster.jobs[0].negatives.pos_rate = 1;
    c->n_models = 1;
    snprintf(c->models[0].name, RD_NAME_MAX, "m");
    c->models[0].seq.length = 16;
    c->models[0].seq.layers = 1;
    c->models[0].seq.heads = 2;
    c->models[0].tokens.length = 64;
    c->models[0].tokens.layers = 1;
    c->models[0].tokens.heads = 2;
    c->models[0].tokens.adapter = 64;
    snprintf(c->models[0].activation, sizeof c->models[0].activation, "relu");
    c->models[0].seq.n_stats = 1; // an input: the user's event count and mean label
    c->models[0].seq.stats[0] = 1;
    // A job's model must embed something: one table (its defaults as the parser fills them) and
    // the item feature.
    rd_config *t = new_cfg();
    rd_errbuf eb;
    assert_int_equal(parse("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                           "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                           "models:\n  - {name: m, features: [{field: item, table: e}]}\n",
                           t, &eb),
                     RD_OK);
    c->ps.n_tables = 1;
    c->ps.tables[0] = t->ps.tables[0];
    c->models[0].n_features = 1;
    c->models[0].features[0] = t->models[0].features[0];
    free(t);
}

static void expect_invalid(const rd_config *c, const char *msg) {
    rd_errbuf eb;
    assert_int_equal(rd_config_validate(c, &eb), RD_ERR_CONFIG);
    if (strncmp(eb.msg, msg, strlen(msg)) != 0) {
        print_error("got: %s\nexpected: %s\n", eb.msg, msg);
        fail();
    }
}

static void test_validate_struct(void **state) {
    (void)state;
    rd_config *c = new_cfg();
    rd_errbuf eb;
    rd_config_defaults(c);
    expect_invalid(c, "cluster.jobs: at least one worker job is needed");
    build_valid(c);
    assert_int_equal(rd_config_validate(c, &eb), RD_OK);
    assert_int_equal(rd_config_world_size(c), 3);
    assert_ptr_equal(rd_config_find_job(c, "w"), &c->cluster.jobs[0]);
    assert_ptr_equal(rd_config_find_model(c, "m"), &c->models[0]);
    assert_null(rd_config_find_model(c, "w"));
    assert_null(rd_config_find_table(c, "m"));
    assert_null(rd_config_find_job(c, NULL));

    // The range checks of the tables run on structs too.
    build_valid(c);
    c->cluster.jobs[0].ranks = 0;
    expect_invalid(c, "cluster.jobs[0].ranks: value 0 out of range [1, 65536]");
    build_valid(c);
    c->train.lr = NAN;
    expect_invalid(c, "train.lr: not a finite number");
    build_valid(c);
    c->data.source = 7;
    expect_invalid(c, "data.source: enum value 7 out of range");
    build_valid(c);
    c->ps.sync = 2;
    expect_invalid(c, "ps.sync: boolean holds 2");
    build_valid(c);
    snprintf(c->train.optimizer, sizeof c->train.optimizer, "lamb");
    expect_invalid(c, "train.optimizer: unknown value 'lamb' (allowed: sgd, adam, adamw)");
    build_valid(c);
    memset(c->run.log_level, 'x', sizeof c->run.log_level);
    expect_invalid(c, "run.log_level: string is not NUL-terminated within 8 bytes");
    build_valid(c);
    c->models[0].n_mlp = 9;
    expect_invalid(c, "models[0].mlp: entry count 9 out of range [0, 8]");
    build_valid(c);
    c->models[0].n_mlp = 1;
    c->models[0].mlp[0] = -3;
    expect_invalid(c, "models[0].mlp[0]: value -3 out of range [1, 65536]");
    build_valid(c);
    c->cluster.jobs[0].name[0] = '\0';
    expect_invalid(c, "cluster.jobs[0].name: must not be empty");
    build_valid(c);
    c->run.out_dir[0] = '\0';
    expect_invalid(c, "run.out_dir: must not be empty");
    // rd_config_resolve fills it again.
    assert_int_equal(rd_config_resolve(c, &eb), RD_OK);
    assert_string_equal(c->run.out_dir, "runs/run");
    assert_int_equal(rd_config_validate(c, &eb), RD_OK);
    // A derived path that does not fit.
    build_valid(c);
    memset(c->run.out_dir, 'd', RD_PATH_MAX - 2);
    c->run.out_dir[RD_PATH_MAX - 2] = '\0';
    c->data.dir[0] = '\0';
    assert_int_equal(rd_config_resolve(c, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "data.dir: derived path"));
    // Every derived path is checked against its own limit, with the path and its length named:
    // the checkpoint folder with the job name (trained to the end, then refused at the final
    // checkpoint before), and data.dir, which leaves room for its temporary folder.
    build_valid(c);
    char dir[RD_PATH_MAX];
    size_t jl = strlen(c->cluster.jobs[0].name);
    size_t dl = RD_CKPT_PARTIAL_MAX - jl - strlen("/.step-000000000000.partial") - 1;
    memset(dir, 'c', dl);
    dir[0] = '/';
    dir[dl] = '\0';
    memcpy(c->ps.checkpoint_dir, dir, dl + 1);
    assert_int_equal(rd_config_validate(c, &eb), RD_OK); // exactly at the limit
    c->ps.checkpoint_dir[dl] = 'c';
    c->ps.checkpoint_dir[dl + 1] = '\0';
    expect_invalid(c, "ps.checkpoint_dir: job 'w' checkpoints into '/ccc");
    assert_int_equal(rd_config_validate(c, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "/w/.step-000000000000.partial'"));
    char lim[96];
    snprintf(lim, sizeof lim, "%d bytes: longer than the limit of %d bytes",
             RD_CKPT_PARTIAL_MAX + 1, RD_CKPT_PARTIAL_MAX);
    assert_non_null(strstr(eb.msg, lim));
    build_valid(c);
    memset(c->data.dir, 'd', RD_DATA_DIR_MAX);
    c->data.dir[0] = '/';
    c->data.dir[RD_DATA_DIR_MAX] = '\0';
    assert_int_equal(rd_config_validate(c, &eb), RD_OK);
    c->data.dir[RD_DATA_DIR_MAX] = 'd';
    c->data.dir[RD_DATA_DIR_MAX + 1] = '\0';
    expect_invalid(c, "data.dir: '/ddd");
    assert_int_equal(rd_config_validate(c, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, ".tmp-<pid>.<host>"));
    free(c);
}

// ---------------------------------------------------------------------------------------------
// Round trips and the shipped configs.

// A config built in code prints to YAML that loads back identically.
static void test_round_trip(void **state) {
    (void)state;
    rd_config *c = new_cfg();
    build_valid(c);
    rd_errbuf eb;
    assert_int_equal(rd_config_validate(c, &eb), RD_OK);
    expect_round_trip(c);
    free(c);
}

static void test_round_trip_values(void **state) {
    (void)state;
    rd_config *c = new_cfg();
    expect_ok(BASE_STUDENT
              "run:\n  name: r.t-1\n  seed: 18446744073709551615\n"
              "data:\n  schema:\n    delimiter: \"\\t\"\n"
              "    path: \"we\\u00efrd \\\"q\\\" \\\\ \\u2028 \\U0001F600 x\"\n"
              "    columns: [\"a b\", \"c:d\", \"#e\", \"- f\", \"null\", \"yes\", \"\"]\n"
              "    label: {column: \"rating, x\", op: \"!=\", threshold: -0.1}\n"
              "  synthetic: {drift: 0.1234567890123, long_range: 3e-300, base_ctr: 0.7}\n"
              "train: {lr: 0.1, eps: 1.17549435e-38, weight_decay: 123.456789}\n"
              "distill: {bias: -0.0, alpha: 1e-7}\n"
              "tokens: {map_size: 17592186044416}\n",
              c);
    assert_string_equal(c->data.schema.columns[4], "null");
    assert_string_equal(c->data.schema.columns[6], "");
    assert_int_equal(c->run.seed, UINT64_MAX);
    expect_round_trip(c);
    free(c);
}

// Every configs/*.yaml loads, validates and round-trips.
static void test_shipped_configs(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/configs", source_dir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0, seen_reference = 0, seen_demo = 0;
    struct dirent *e;
    rd_config *c = new_cfg();
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".yaml") != 0)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rd_errbuf eb;
        int rc = rd_config_load(path, c, &eb);
        if (rc != RD_OK) {
            print_error("%s: %s\n", path, eb.msg);
            fail();
        }
        assert_string_equal(c->source_path, path);
        char warn[1024];
        if (rd_config_warnings(c, warn, sizeof warn) != 0) {
            print_error("%s: %s", path, warn);
            fail();
        }
        expect_round_trip(c);
        seen_reference |= strcmp(e->d_name, "reference.yaml") == 0;
        seen_demo |= strcmp(e->d_name, "demo.yaml") == 0;
        n++;
    }
    closedir(d);
    assert_true(n >= 4);
    assert_true(seen_reference && seen_demo);
    // demo.yaml is the 4-rank default job described in its header.
    char path[2048];
    snprintf(path, sizeof path, "%s/demo.yaml", dir);
    rd_errbuf eb;
    assert_int_equal(rd_config_load(path, c, &eb), RD_OK);
    assert_int_equal(rd_config_world_size(c), 4);
    assert_int_equal(c->data.synthetic.events, 120000);
    const rd_model_config *t = rd_config_find_model(c, "teacher");
    const rd_model_config *s = rd_config_find_model(c, "student");
    assert_non_null(t);
    assert_non_null(s);
    assert_int_equal(t->seq.kind, RD_SEQ_DIN);
    assert_int_equal(t->seq.length, 256);
    assert_true(t->layer_norm); // the teacher that learns the memory effect on every seed
    assert_int_equal(s->seq.kind, RD_SEQ_MEAN);
    assert_int_equal(s->seq.length, 16);
    assert_string_equal(rd_config_find_job(c, "student")->teacher, "teacher");
    free(c);
}

// Walk a descriptor table and the YAML document of configs/reference.yaml together: every key
// must be present (in the first entry of each list).
static int find_key(yaml_document_t *doc, yaml_node_t *map, const char *key, yaml_node_t **out) {
    if (!map || map->type != YAML_MAPPING_NODE)
        return 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0) {
            *out = yaml_document_get_node(doc, p->value);
            return 1;
        }
    }
    return 0;
}

static int
check_mentions(yaml_document_t *doc, yaml_node_t *map, const ck_struct *st, const char *path) {
    int missing = 0;
    for (size_t i = 0; i < st->n_keys; i++) {
        const ck_key *k = &st->keys[i];
        yaml_node_t *v = NULL;
        char sub[256];
        snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", k->key);
        if (!find_key(doc, map, k->key, &v)) {
            print_error("configs/reference.yaml does not mention %s\n", sub);
            missing++;
            continue;
        }
        if (k->type == CK_MAP || (k->type == CK_LABEL && v->type == YAML_MAPPING_NODE)) {
            missing += check_mentions(doc, v, k->sub, sub);
        } else if (k->type == CK_MAP_LIST) {
            if (v->type != YAML_SEQUENCE_NODE ||
                v->data.sequence.items.top == v->data.sequence.items.start) {
                print_error("configs/reference.yaml: %s has no example entry\n", sub);
                missing++;
                continue;
            }
            missing += check_mentions(
                doc, yaml_document_get_node(doc, v->data.sequence.items.start[0]), k->sub, sub);
        }
    }
    return missing;
}

static void test_reference_names_every_key(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/reference.yaml", source_dir());
    size_t len = 0;
    char *text = read_text(path, &len);
    assert_non_null(text);
    yaml_parser_t parser;
    yaml_document_t doc;
    assert_true(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    assert_true(yaml_parser_load(&parser, &doc));
    int missing = check_mentions(&doc, yaml_document_get_root_node(&doc), &rd__config_root, "");
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    assert_int_equal(missing, 0);
    // And every row either has a default, is required, or is a derived/optional string/list.
    // (A row with a bad default text would already have aborted rd_config_defaults.)
}

// ---------------------------------------------------------------------------------------------
// Files and out-of-memory.

static void test_load_files(void **state) {
    (void)state;
    rd_config *c = new_cfg();
    rd_errbuf eb;
    assert_int_equal(rd_config_load("/nonexistent/dir/x.yaml", c, &eb), RD_ERR_IO);
    assert_string_equal(eb.msg, "/nonexistent/dir/x.yaml: cannot open: No such file or directory");
    assert_int_equal(rd_config_load("/", c, &eb), RD_ERR_IO);
    assert_string_equal(eb.msg, "/: not a regular file");
    // A file with an error reports its own path.
    char tmp[] = "/tmp/rd_test_config_XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("run:\n  seed: x\n", f);
    fclose(f);
    assert_int_equal(rd_config_load(tmp, c, &eb), RD_ERR_CONFIG);
    char want[256];
    snprintf(want, sizeof want, "%s:2:9: run.seed: expected", tmp);
    assert_int_equal(strncmp(eb.msg, want, strlen(want)), 0);
    unlink(tmp);
    // A stale message in the caller's buffer does not hide the new one.
    rd_err_set(&eb, RD_ERR_IO, "old");
    assert_int_equal(parse("run: 1\n", c, &eb), RD_ERR_CONFIG);
    assert_int_equal(strncmp(eb.msg, "t.yaml:1:6: run:", 16), 0);
    // NULL error buffers are accepted.
    assert_int_equal(parse("run: 1\n", c, NULL), RD_ERR_CONFIG);
    // Oversized input.
    size_t big = (1u << 20) + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, '#', big);
    assert_int_equal(rd_config_parse_string(huge, big, "big.yaml", c, &eb), RD_ERR_CONFIG);
    assert_non_null(strstr(eb.msg, "too large"));
    free(huge);
    free(c);
}

static int g_fail_malloc;
static void *failing_malloc(size_t n) {
    return g_fail_malloc ? NULL : malloc(n);
}
static void *failing_realloc(void *p, size_t n) {
    return g_fail_malloc ? NULL : realloc(p, n);
}

static void test_load_oom(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/demo.yaml", source_dir());
    rd_config *c = new_cfg();
    rd_errbuf eb;
    rd_allocator a = {failing_malloc, failing_realloc, free};
    rd_alloc_set(&a);
    g_fail_malloc = 1;
    int rc = rd_config_load(path, c, &eb);
    g_fail_malloc = 0;
    rd_alloc_set(NULL);
    assert_int_equal(rc, RD_ERR_NOMEM);
    assert_non_null(strstr(eb.msg, "out of memory"));
    assert_int_equal(rd_config_load(path, c, &eb), RD_OK);
    free(c);
}

// ---------------------------------------------------------------------------------------------
// Branch settings written without the branch's switch (models[].seq.kind, models[].tokens.scheme,
// and tokens.source_model without a token reader): the loader records which keys a config wrote,
// so a forgotten switch is refused while a switch written to off (the documented ablations
// `seq.kind=none`, `models.teacher.tokens.scheme=0`) keeps its settings.

// BASE plus a token source model `src` on its own table (BASE's model m is models[0]). 20 lines.
#define BASE_SRC                                                                                   \
    "cluster:\n"                                                                                   \
    "  jobs:\n"                                                                                    \
    "    - {name: w, role: teacher, model: m}\n"                                                   \
    "ps:\n"                                                                                        \
    "  tables:\n"                                                                                  \
    "    - {name: e, dim: 8}\n"                                                                    \
    "    - {name: k, dim: 8}\n"                                                                    \
    "models:\n"                                                                                    \
    "  - name: src\n"                                                                              \
    "    features: [{field: item, table: k}]\n"                                                    \
    "  - name: m\n"                                                                                \
    "    features: [{field: item, table: e}]\n"

// rd_config_warnings: layers/heads under a branch kind that reads neither are valid (an ablation
// switching seq.kind keeps them) but said; under transformer, or at their defaults, nothing.
static void test_config_warnings(void **state) {
    (void)state;
    static const struct {
        const char *tail; // appended to BASE
        int n;
        const char *part; // in the text (NULL: empty)
    } cases[] = {
        {"    seq: {kind: din, length: 16, table: e, layers: 3}\n", 1,
         "models[0].seq: layers 3 has no effect: model 'm' reads its history with target "
         "attention (seq.kind din); only seq.kind transformer has layers and heads\n"},
        {"    seq: {kind: mean, length: 16, table: e, layers: 2, heads: 4}\n", 1,
         "models[0].seq: layers 2 and heads 4 have no effect: model 'm' reads its history with "
         "mean pooling (seq.kind mean)"},
        {"    seq: {kind: transformer, length: 16, table: e, layers: 3, heads: 4}\n", 0, NULL},
        {"    seq: {kind: din, length: 16, table: e, layers: 1, heads: 2}\n", 0, NULL},
        {"    seq: {kind: none, layers: 3}\n", 0, NULL},
    };
    rd_config *c = new_cfg();
    char text[2048], yaml[2048];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(yaml, sizeof yaml, "%s%s", BASE, cases[k].tail);
        rd_errbuf eb;
        if (parse(yaml, c, &eb) != RD_OK)
            fail_msg("case %zu: %s", k, eb.msg);
        int n = rd_config_warnings(c, text, sizeof text);
        if (n != cases[k].n || (cases[k].part ? !strstr(text, cases[k].part) : text[0] != '\0'))
            fail_msg("case %zu: %d warnings: '%s'", k, n, text);
    }
    // A token branch under kind din: named by its path; a small buffer is cut, NUL-terminated.
    snprintf(yaml, sizeof yaml,
             "%s"
             "    tokens: {scheme: 1, kind: din, heads: 4}\n"
             "  - {name: src, features: [{field: item, table: e2}]}\n"
             "tokens: {source_model: src, scheme: 1, dim: 8}\n",
             BASE);
    char *t = strstr(yaml, "      dim: 8\n");
    assert_non_null(t);
    char fixed[2048];
    snprintf(fixed, sizeof fixed, "%.*s      dim: 8\n    - {name: e2, dim: 8}\n%s", (int)(t - yaml),
             yaml, t + strlen("      dim: 8\n"));
    rd_errbuf eb;
    if (parse(fixed, c, &eb) != RD_OK)
        fail_msg("tokens: %s", eb.msg);
    assert_int_equal(rd_config_warnings(c, text, sizeof text), 1);
    assert_non_null(strstr(text, "models[0].tokens: heads 4 has no effect: model 'm' reads its "
                                 "tokens with target attention (tokens.kind din)"));
    char small[24];
    assert_int_equal(rd_config_warnings(c, small, sizeof small), 1);
    assert_int_equal(strlen(small), sizeof small - 1);

    // A teacher job of a replaying launch: it trains, but sends and logs nothing. Said with the
    // ranks the launch needs without it (1 PS + 2 teacher + 1 student = 4, 2 without); nothing
    // without replay, nor in the replay config without the teacher job (tools/replay-sweep.sh).
    static const char pipeline[] =
        "cluster:\n"
        "  ps_ranks: 1\n"
        "  jobs:\n"
        "    - {name: big, role: teacher, model: t, ranks: 2}\n"
        "    - {name: small, role: student, model: s, distill: true, teacher: big}\n"
        "data: {source: synthetic}\n"
        "ps: {tables: [{name: te, dim: 8}, {name: se, dim: 8}]}\n"
        "models:\n"
        "  - {name: t, features: [{field: item, table: te}]}\n"
        "  - {name: s, features: [{field: item, table: se}]}\n"
        "distill: {aux_tower: false, replay: %s}\n";
    const char *teacher_line = "    - {name: big, role: teacher, model: t, ranks: 2}\n";
    for (int replay = 0; replay <= 2; replay++) {
        snprintf(yaml, sizeof yaml, pipeline, replay ? "true" : "false");
        if (replay == 2) { // the replay config without the teacher job
            char *tl = strstr(yaml, teacher_line);
            assert_non_null(tl);
            memmove(tl, tl + strlen(teacher_line), strlen(tl + strlen(teacher_line)) + 1);
        }
        if (parse(yaml, c, &eb) != RD_OK)
            fail_msg("replay %d: %s", replay, eb.msg);
        int n = rd_config_warnings(c, text, sizeof text);
        if (n != (replay == 1) ||
            (replay == 1 ? !strstr(text, "cluster.jobs[0]: teacher job 'big' trains for nothing: "
                                         "distill.replay is true") ||
                               !strstr(text, "launch 2 ranks instead of 4")
                         : text[0] != '\0'))
            fail_msg("replay %d: %d warnings: '%s'", replay, n, text);
    }
    free(c);
}

// rd_config_warnings: the SIT's keys (tokens.sit_layers .. two_pass) away from their defaults
// while the source model builds no SIT (tokens.scheme 1, or tokens.sit_layers 0) are valid (an
// ablation switching tokens.scheme keeps them: tools/ablations.sh iat_temporal) but said, each
// named; at their defaults, or under a SIT, nothing.
static void test_config_warnings_sit(void **state) {
    (void)state;
    static const struct {
        int scheme;
        const char *tokens; // the top-level tokens: keys after scheme
        int n;
        const char *part; // in the text (NULL: empty)
    } cases[] = {
        {1, "", 0, NULL},
        {1, "sit_layers: 2, window: 32, batch_order: time, sit_labels: true, two_pass: false", 0,
         NULL},
        {1, "sit_layers: 1, window: 16", 1,
         "tokens.sit_layers, tokens.window have no effect: tokens.scheme 1 (temporal order) "
         "builds its tokens in time-ordered batches, with no user windows and no Source Instance "
         "Transformer; only tokens.scheme 2 reads them\n"},
        {1, "batch_order: windows", 1, "tokens.batch_order has no effect: tokens.scheme 1"},
        {1, "sit_labels: false", 1, "tokens.sit_labels has no effect"},
        {1, "sit_pairs: true", 1, "tokens.sit_pairs has no effect"},
        {1, "sit_item_code: true", 1, "tokens.sit_item_code has no effect"},
        {1, "sit_group: item, sit_group_by: series", 1,
         "tokens.sit_group, tokens.sit_group_by have no effect"},
        {1, "two_pass: true", 1, "tokens.two_pass has no effect"},
        // Keys of the token store, not of the SIT: read under either scheme.
        {1, "dim: 16, batch_tokens: final, side_residual: false", 0, NULL},
        {2, "sit_layers: 1, window: 16, batch_order: windows, sit_pairs: true, two_pass: true", 0,
         NULL},
        {2, "sit_layers: 0, window: 16, batch_order: windows", 0, NULL},
        {2, "sit_layers: 0, sit_labels: false, two_pass: true", 1,
         "tokens.sit_labels, tokens.two_pass have no effect: tokens.sit_layers is 0, so the "
         "source model has no Source Instance Transformer to read them\n"},
        {2, "sit_layers: 0, sit_item_code: true", 1, "tokens.sit_item_code has no effect"},
    };
    rd_config *c = new_cfg();
    char text[2048], yaml[4096];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(yaml, sizeof yaml,
                 BASE_SRC "    tokens: {scheme: %d, length: 4, kind: mean, adapter: 4}\n"
                          "data: {source: synthetic}\n"
                          "tokens: {source_model: src, scheme: %d%s%s}\n",
                 cases[k].scheme, cases[k].scheme, cases[k].tokens[0] ? ", " : "", cases[k].tokens);
        rd_errbuf eb;
        if (parse(yaml, c, &eb) != RD_OK)
            fail_msg("case %zu: %s", k, eb.msg);
        int n = rd_config_warnings(c, text, sizeof text);
        if (n != cases[k].n || (cases[k].part ? !strstr(text, cases[k].part) : text[0] != '\0'))
            fail_msg("case %zu: %d warnings: '%s'", k, n, text);
    }
    free(c);
}

// The ranges configs/reference.yaml states where it once stated none or another (optimizer.beta
// said ">= 0"): both edges of each, as config.c enforces them.
static void test_documented_edges(void **state) {
    (void)state;
    static const struct {
        const char *key, *yaml_in, *yaml_out, *range;
    } edges[] = {
        {"ps.tables[0].optimizer.beta",
         "ps:\n  tables:\n    - {name: e, dim: 8, optimizer: "
         "{type: ftrl, beta: 1e6}}\n",
         "ps:\n  tables:\n    - {name: e, dim: 8, optimizer: {type: ftrl, beta: 1000001}}\n",
         "[0, 1000000]"},
        {"data.synthetic.memory_span", "data:\n  synthetic: {memory_span: 1000000}\n",
         "data:\n  synthetic: {memory_span: 1000001}\n", "[1, 1000000]"},
        {"ps.tables[0].admit_count", "ps:\n  tables:\n    - {name: e, dim: 8, admit_count: 1e9}\n",
         "ps:\n  tables:\n    - {name: e, dim: 8, admit_count: 1000000001}\n", "[1, 1000000000]"},
        {"ps.checkpoint_every_s", "ps:\n  checkpoint_every_s: 31536000\n",
         "ps:\n  checkpoint_every_s: 31536001\n", "[0, 31536000]"},
        {"ps.checkpoint_every_windows", "ps:\n  checkpoint_every_windows: 10000\n",
         "ps:\n  checkpoint_every_windows: 10001\n", "[0, 10000]"},
        {"models[0].seq.dim", "models:\n  - {name: m, seq: {dim: 4096}}\n",
         "models:\n  - {name: m, seq: {dim: 4097}}\n", "[0, 4096]"},
        {"models[0].tower[0]", "models:\n  - {name: m, tower: [65536]}\n",
         "models:\n  - {name: m, tower: [65537]}\n", "[1, 65536]"},
        {"distill.start_epoch", "distill: {start_epoch: 1000000}\n",
         "distill: {start_epoch: 1000001}\n", "[0, 1000000]"},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        // Parsed alone (no cross checks): the range is the parser's.
        rd_config *c = new_cfg();
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int rc = parse(edges[i].yaml_in, c, &eb);
        if (rc != RD_OK && strstr(eb.msg, "out of range")) {
            print_error("%s: the documented edge is refused: %s\n", edges[i].key, eb.msg);
            g_mismatches++;
        }
        char part[160];
        snprintf(part, sizeof part, "%s: value", edges[i].key);
        expect_error(edges[i].yaml_out, "t.yaml:", part);
        snprintf(part, sizeof part, "out of range %s", edges[i].range);
        expect_error(edges[i].yaml_out, "t.yaml:", part);
        free(c);
    }
}

// Keys that another setting leaves unread: set away from their default, refused by name; at
// their default (as a printed config writes them), accepted.
static void test_unread_settings(void **state) {
    (void)state;
    rd_config *c = new_cfg();

    // distill.bias and distill.debias_teacher shape the calibration, which debias: false drops.
    expect_error(BASE_STUDENT "distill:\n  debias: false\n  bias: 2\n",
                 "t.yaml:14:9: distill.bias: set, but distill.debias is false",
                 "or set distill.debias: true");
    expect_error(BASE_STUDENT "distill:\n  debias: false\n  debias_teacher: teacher\n",
                 "t.yaml:14:19: distill.debias_teacher: set, but distill.debias is false", NULL);
    expect_ok(BASE_STUDENT "distill: {debias: false, bias: 0, debias_teacher: student}\n", c);
    assert_false(c->distill.debias);
    expect_ok(BASE_STUDENT "distill: {debias: true, bias: 2, debias_teacher: teacher}\n", c);
    assert_int_equal(c->distill.debias_teacher, RD_DEBIAS_TEACHER);

    // ps.shm_bytes sizes the shared-memory region, which ps.shm: off never makes.
#define SHM_CFG(ps_keys)                                                                           \
    "cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"                                \
    "ps:\n" ps_keys "  tables:\n    - {name: e, dim: 8}\n"                                         \
    "models:\n  - {name: m, features: [{field: user, table: e}]}\n"
    expect_error(SHM_CFG("  shm: off\n  shm_bytes: 1GiB\n"),
                 "t.yaml:6:14: ps.shm_bytes: set, but ps.shm is off", "or set ps.shm: auto");
    expect_ok(SHM_CFG("  shm: off\n  shm_bytes: 256MiB\n"), c);
    assert_int_equal(c->ps.shm, RD_SHM_OFF);
    expect_ok(SHM_CFG("  shm: auto\n  shm_bytes: 1GiB\n"), c);
    assert_int_equal(c->ps.shm_bytes, 1ull << 30);
#undef SHM_CFG

    // data.schema.fields[].sep splits a multi field's values, max_len bounds them or counts flag
    // columns: a categorical field with a sep kept "a,b" as one key.
#define FIELD_CSV(field) DELIM_CSV "    fields:\n      - " field "\n"
    expect_error(FIELD_CSV("{name: g, sep: \",\"}"),
                 "t.yaml:24:24: data.schema.fields[0].sep: set, but field 'g' is categorical: "
                 "only a multi field's values are split (kind: multi)",
                 NULL);
    expect_error(FIELD_CSV("{name: g, max_len: 16}"),
                 "t.yaml:24:28: data.schema.fields[0].max_len: set, but field 'g' is categorical",
                 NULL);
    expect_error(FIELD_CSV("{name: x, kind: numeric, max_len: 2}"),
                 "t.yaml:24:43: data.schema.fields[0].max_len: set, but field 'x' is numeric",
                 NULL);
    expect_error(FIELD_CSV("{name: g, flags: true, max_len: 3, sep: \",\"}"),
                 "t.yaml:24:49: data.schema.fields[0].sep: set, but field 'g' is categorical with "
                 "flag columns",
                 NULL);
    expect_ok(FIELD_CSV("{name: g, flags: true, max_len: 3}"), c);
    assert_int_equal(c->data.schema.fields[0].max_len, 3);
    expect_ok(FIELD_CSV("{name: g, kind: multi, sep: \",\", max_len: 3}"), c);
    assert_string_equal(c->data.schema.fields[0].sep, ",");
    expect_ok(FIELD_CSV("{name: g, sep: \"|\", max_len: 8}"), c);
#undef FIELD_CSV

    free(c);
}

static void test_forgotten_switches(void **state) {
    (void)state;
    rd_config *c = new_cfg();

    // 1. Settings without their switch: refused, naming the branch's path and the model.
    expect_error(BASE "    seq: {length: 64, layers: 2}\n",
                 "t.yaml:15:10: models[0].seq: length, layers given, but seq.kind is not set",
                 "model 'm' would train no history branch): set seq.kind (mean | din | "
                 "transformer), or seq.kind: none to keep the branch off");
    expect_error(BASE "    seq:\n      table: e\n      with_labels: false\n",
                 "t.yaml:16:7: models[0].seq: table, with_labels given, but seq.kind is not set",
                 NULL);
    expect_error(BASE "    tokens: {length: 64}\n",
                 "t.yaml:15:13: models[0].tokens: length given, but tokens.scheme is not set",
                 "model 'm' would read no instance tokens): set tokens.scheme (1 temporal | 2 "
                 "user, as the top-level tokens.scheme), or tokens.scheme: 0 to keep the branch "
                 "off");
    // Written at its default value, a setting is still written.
    expect_error(BASE "    tokens: {kind: transformer, adapter: 64}\n",
                 "t.yaml:15:13: models[0].tokens: kind, adapter given, but tokens.scheme", NULL);
    // The second model is named by its index and name.
    expect_error(BASE_SRC "    seq: {length: 8}\n",
                 "t.yaml:13:10: models[1].seq: length given, but seq.kind is not set", "model 'm'");
    // A source model with no job's model reading tokens or writing tokens.scheme.
    expect_error(BASE_SRC "tokens: {dim: 8, source_model: src}\n",
                 "t.yaml:13:32: tokens.source_model: 'src' given, but no job's model reads "
                 "instance tokens and none sets tokens.scheme",
                 "write its tokens.scheme: 0 to keep the branch off");
    // A tokens.scheme written on a model that no job trains (here the source model itself)
    // switches no job's token branch off.
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n    - {name: k, dim: 8}\n"
                 "models:\n"
                 "  - {name: src, features: [{field: item, table: k}], tokens: {scheme: 0}}\n"
                 "  - {name: m, features: [{field: item, table: e}]}\n"
                 "tokens: {source_model: src}\n",
                 "t.yaml:11:24: tokens.source_model: 'src' given, but no job's model reads", NULL);

    // The view is a switch of its own: view_length without it read no view.
    expect_error(BASE "    seq: {kind: mean, table: e, view_length: 4}\n",
                 "t.yaml:15:46: models[0].seq.view_length: 4 given, but seq.view is not set",
                 "or seq.view: none to keep the view off");

    // data.synthetic.contexts switches the request contexts on; context_effect is their offset.
    expect_error(BASE "data:\n  synthetic: {context_effect: 2}\n",
                 "t.yaml:16:31: data.synthetic.context_effect: given, but data.synthetic.contexts "
                 "is not set",
                 "or contexts: 0 to keep them off");
    expect_ok(BASE "data:\n  synthetic: {contexts: 0, context_effect: 2}\n", c);
    expect_ok(BASE "data:\n  synthetic: {contexts: 4, context_effect: 2}\n", c);
    assert_true(c->data.synthetic.context_effect == 2.0);

    // 2. The switch written to off, settings kept (the ablations): accepted, branch off.
    expect_ok(BASE "    seq: {kind: none, length: 64, layers: 2, heads: 4, dim: 16}\n", c);
    assert_int_equal(c->models[0].seq.kind, RD_SEQ_NONE);
    assert_int_equal(c->models[0].seq.length, 64);
    expect_ok(BASE "    tokens: {scheme: 0, length: 64, kind: din, adapter: 16}\n", c);
    assert_int_equal(c->models[0].tokens.scheme, 0);
    expect_ok(BASE_SRC "    tokens: {scheme: 0, length: 32}\ntokens: {dim: 8, source_model: src}\n",
              c);
    assert_int_equal(rd_config_token_job(c), -1);
    assert_string_equal(c->tokens.source_model, "src");

    // 3. The switch on with its settings: accepted.
    expect_ok(BASE "    seq: {kind: mean, table: e, view: none, view_length: 4}\n", c);
    assert_int_equal(c->models[0].seq.view, RD_SEQ_NONE);
    expect_ok(BASE "    seq: {kind: transformer, table: e, length: 64, layers: 2, heads: 4}\n", c);
    assert_int_equal(c->models[0].seq.kind, RD_SEQ_TRANSFORMER);
    assert_int_equal(c->models[0].seq.layers, 2);
    expect_ok(BASE_SRC "    tokens: {scheme: 2, length: 16, kind: din}\n"
                       "tokens: {dim: 8, scheme: 2, source_model: src}\n",
              c);
    assert_int_equal(c->models[1].tokens.scheme, 2);
    assert_int_equal(rd_config_token_job(c), 0);

    // 4. Defaults only, an empty branch map, and the seq.stats (no setting of the branch):
    // accepted.
    expect_ok(BASE, c);
    assert_int_equal(c->models[0].seq.kind, RD_SEQ_NONE);
    assert_int_equal(c->models[0].tokens.scheme, 0);
    expect_ok(BASE "    seq: {}\n    tokens: {}\n", c);
    expect_ok(BASE "    seq: {stats: [1, 4]}\n", c);
    expect_ok(BASE "    seq: {kind: mean, table: e, view: mean, view_length: 4}\n", c);
    assert_int_equal(c->models[0].seq.view_length, 4);

    // A printed config writes every key, the switches too: it reads back.
    expect_ok(BASE "    seq: {kind: none, length: 64}\n", c);
    expect_round_trip(c);

    // A struct built in code has no record of written keys: the settings of a branch that is off
    // pass rd_config_validate (as models held in bundles and tests do).
    rd_errbuf eb;
    expect_ok(BASE, c);
    c->models[0].seq.length = 64;
    c->models[0].seq.layers = 2;
    c->models[0].tokens.length = 8;
    assert_int_equal(rd_config_validate(c, &eb), RD_OK);

    // The record is allocated while loading: out of memory is an error, nothing leaks (ASan).
    rd_allocator a = {failing_malloc, failing_realloc, free};
    rd_alloc_set(&a);
    g_fail_malloc = 1;
    int rc = parse(BASE, c, &eb);
    g_fail_malloc = 0;
    rd_alloc_set(NULL);
    assert_int_equal(rc, RD_ERR_NOMEM);
    assert_non_null(strstr(eb.msg, "t.yaml: out of memory recording the keys written"));
    free(c);
}

// ---------------------------------------------------------------------------------------------
// Fuzz: random bytes, and mutations of configs/reference.yaml. Every input must end in RD_OK or
// in an error with a non-empty message; ASan/UBSan builds catch memory errors. Longer campaigns:
// RD_FUZZ_ITERS=200000 RD_FUZZ_SEED=7 ./test_config

static void check_fuzz_result(int rc, const rd_errbuf *eb, const char *text, size_t len) {
    if (rc == RD_OK)
        return;
    if ((rc != RD_ERR_CONFIG && rc != RD_ERR_NOMEM) || eb->msg[0] == '\0' || eb->code != rc) {
        print_error("fuzz input (%zu bytes) gave rc=%d msg='%s'\n%.*s\n", len, rc, eb->msg,
                    (int)(len < 2000 ? len : 2000), text);
        fail();
    }
    assert_int_equal(strncmp(eb->msg, "fuzz:", 5), 0);
}

// YAML merge keys: `<<: *anchor` brings in the keys the map does not write itself, an earlier
// merged map before a later one; errors inside a merged map name the merged key's place.
static void test_merge_keys(void **state) {
    (void)state;
    rd_config *c = new_cfg();
    // The second table takes the first one's keys, with its own name and dim.
    expect_ok("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
              "ps:\n  tables:\n"
              "    - &t {name: e, dim: 8, optimizer: {type: adam, lr: 0.003}, ttl: 5}\n"
              "    - {<<: *t, name: f, dim: 16}\n"
              "models:\n  - {name: m, features: [{field: user, table: e}, "
              "{field: item, table: f}]}\n",
              c);
    assert_int_equal(c->ps.n_tables, 2);
    assert_string_equal(c->ps.tables[1].name, "f");
    assert_int_equal(c->ps.tables[1].dim, 16);
    assert_int_equal(c->ps.tables[1].optim.kind, RD_OPT_ADAM);
    assert_float_equal(c->ps.tables[1].optim.lr, 0.003, 1e-9);
    assert_int_equal(c->ps.tables[1].ttl, 5);
    // A list: the first map wins over the second, the map's own key over both; a merged map
    // may merge in turn.
    expect_ok(BASE "train: {<<: [{lr: 0.5, batch_size: 64}, {<<: {epochs: 3}, lr: 0.25, "
                   "batch_size: 32}], batch_size: 16}\n",
              c);
    assert_float_equal(c->train.lr, 0.5, 1e-9);
    assert_int_equal(c->train.batch_size, 16);
    assert_int_equal(c->train.epochs, 3);
    // A merged key counts as written (the record of written keys: a forgotten switch).
    expect_error(BASE "    seq: {<<: {length: 8}}\n",
                 "t.yaml:15:10: models[0].seq: length given, but seq.kind is not set", NULL);
    // Bad merges.
    expect_error(BASE "train: {<<: 5}\n",
                 "t.yaml:15:13: train: '<<' (a YAML merge key) takes a map (<<: *name) or a list "
                 "of maps",
                 NULL);
    expect_error(BASE "train: {<<: [{lr: 0.5}, [1]]}\n",
                 "t.yaml:15:25: train: '<<' (a YAML merge key) takes a map", NULL);
    expect_error(BASE "train: {<<: {lr: 0.5}, <<: {epochs: 2}}\n",
                 "t.yaml:15:24: train: '<<' (a YAML merge key) given twice in one map", NULL);
    // Errors inside the merged map: at the merged key, with the merging map's path.
    expect_error(BASE "train: {<<: {lrr: 0.5}}\n",
                 "t.yaml:15:14: train.lrr: unknown key (did you mean 'lr'?)", NULL);
    expect_error(BASE "train: {<<: {lr: -1}}\n", "t.yaml:15:18: train.lr: ", NULL);
    // Quoted or tagged, "<<" is a key of that name.
    expect_error(BASE "train: {\"<<\": {lr: 0.5}}\n", "t.yaml:15:9: train.<<: unknown key", NULL);
    expect_error(BASE "train: {!!str <<: {lr: 0.5}}\n", "t.yaml:15:9: train.<<: unknown key", NULL);
    // A value checked after parsing is located through the merge (at the merged map's key).
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - &m {name: m, features: [{field: user, table: nosuch}]}\n"
                 "  - {<<: *m, name: n}\n",
                 "t.yaml:8:50: models[0].features[0].table: no table named 'nosuch'", NULL);
    expect_error("cluster:\n  jobs:\n    - {name: w, role: teacher, model: m}\n"
                 "ps:\n  tables:\n    - {name: e, dim: 8}\n"
                 "models:\n  - {name: m, features: [{field: user, table: e}]}\n"
                 "  - {<<: {features: [{field: user, table: nosuch}]}, name: n}\n",
                 "t.yaml:9:43: models[1].features[0].table: no table named 'nosuch'", NULL);
    free(c);
}

static void test_fuzz(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/reference.yaml", source_dir());
    size_t rlen = 0;
    char *ref = read_text(path, &rlen);
    assert_non_null(ref);
    rd_config *c = new_cfg();
    rd_rng rng;
    const char *iters_env = getenv("RD_FUZZ_ITERS"), *seed_env = getenv("RD_FUZZ_SEED");
    long iters = iters_env ? strtol(iters_env, NULL, 10) : 2000;
    rd_rng_seed(&rng, seed_env ? strtoull(seed_env, NULL, 10) : 20251123);
    static const char tokens[][12] = {":",   "- ",  "[",     "]",    "{", "}",  "\"", "'",
                                      "\n",  "  ",  "&a ",   "*a",   "#", "? ", "|",  ">",
                                      "\t",  "~",   "null",  "1e99", "-", "0x", ",",  "!!str ",
                                      "---", "...", "\\u00", "\xc3", "\0"};
    const size_t ntok = sizeof tokens / sizeof tokens[0];
    char *buf = malloc(rlen * 2 + 4096);
    assert_non_null(buf);
    int ok = 0, bad = 0;
    for (long iter = 0; iter < iters; iter++) {
        size_t len;
        int kind = (int)rd_rng_below(&rng, 6);
        if (kind == 0) {
            // Random bytes, biased towards YAML punctuation.
            len = (size_t)rd_rng_below(&rng, 512);
            for (size_t i = 0; i < len; i++) {
                const char *t = tokens[rd_rng_below(&rng, ntok)];
                buf[i] = rd_rng_below(&rng, 3) ? (char)rd_rng_below(&rng, 256) : t[0];
            }
        } else {
            memcpy(buf, ref, rlen);
            len = rlen;
            int nmut = 1 + (int)rd_rng_below(&rng, kind == 5 ? 40 : 4);
            for (int m = 0; m < nmut; m++) {
                size_t pos = len ? (size_t)rd_rng_below(&rng, len) : 0;
                switch (rd_rng_below(&rng, 6)) {
                    case 0: // flip a byte
                        if (len)
                            buf[pos] = (char)rd_rng_below(&rng, 256);
                        break;
                    case 1: { // insert a token
                        const char *t = tokens[rd_rng_below(&rng, ntok)];
                        size_t tl = t[0] ? strlen(t) : 1;
                        if (len + tl < rlen * 2 + 4000) {
                            memmove(buf + pos + tl, buf + pos, len - pos);
                            memcpy(buf + pos, t, tl);
                            len += tl;
                        }
                        break;
                    }
                    case 2: { // delete a span
                        size_t n = (size_t)rd_rng_below(&rng, 40);
                        if (pos + n > len)
                            n = len - pos;
                        memmove(buf + pos, buf + pos + n, len - pos - n);
                        len -= n;
                        break;
                    }
                    case 3: { // duplicate a line
                        size_t b = pos, e = pos;
                        while (b > 0 && buf[b - 1] != '\n')
                            b--;
                        while (e < len && buf[e] != '\n')
                            e++;
                        size_t n = e - b + (e < len);
                        if (len + n < rlen * 2 + 4000) {
                            memmove(buf + b + n, buf + b, len - b);
                            len += n;
                        }
                        break;
                    }
                    case 4: // truncate
                        len = pos;
                        break;
                    default: { // replace a value's digits with a large or negative number
                        const char *nums[] = {"-1",    "0",         "99999999999999999999",
                                              "1e308", "-0.0",      "4097",
                                              "65537", "2147483648"};
                        const char *t = nums[rd_rng_below(&rng, 8)];
                        size_t tl = strlen(t);
                        while (pos < len && !(buf[pos] >= '0' && buf[pos] <= '9'))
                            pos++;
                        size_t e = pos;
                        while (e < len && buf[e] >= '0' && buf[e] <= '9')
                            e++;
                        if (pos < len && len - (e - pos) + tl < rlen * 2 + 4000) {
                            memmove(buf + pos + tl, buf + e, len - e);
                            memcpy(buf + pos, t, tl);
                            len = len - (e - pos) + tl;
                        }
                        break;
                    }
                }
            }
        }
        rd_errbuf eb;
        int rc = rd_config_parse_string(buf, len, "fuzz", c, &eb);
        check_fuzz_result(rc, &eb, buf, len);
        if (rc == RD_OK) {
            ok++;
            // Whatever was accepted must validate and print back to the same struct.
            assert_int_equal(rd_config_validate(c, &eb), RD_OK);
            expect_round_trip(c);
        } else {
            bad++;
        }
    }
    print_message("fuzz: %d accepted, %d rejected\n", ok, bad);
    assert_true(ok > 0 && bad > 0);
    free(buf);
    free(ref);
    free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_entry_defaults_and_resolve),
        cmocka_unit_test(test_value_forms),
        cmocka_unit_test_setup_teardown(test_delimiter_names, reset_mismatches, check_mismatches),
        cmocka_unit_test_setup_teardown(test_errors_syntax, reset_mismatches, check_mismatches),
        cmocka_unit_test_setup_teardown(test_errors_keys, reset_mismatches, check_mismatches),
        cmocka_unit_test_setup_teardown(test_errors_types, reset_mismatches, check_mismatches),
        cmocka_unit_test_setup_teardown(test_errors_values, reset_mismatches, check_mismatches),
        cmocka_unit_test_setup_teardown(test_errors_cross, reset_mismatches, check_mismatches),
        cmocka_unit_test_setup_teardown(test_errors_csv, reset_mismatches, check_mismatches),
        cmocka_unit_test(test_validate_struct),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_round_trip_values),
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test(test_config_warnings),
        cmocka_unit_test(test_config_warnings_sit),
        cmocka_unit_test(test_reference_names_every_key),
        cmocka_unit_test(test_load_files),
        cmocka_unit_test(test_load_oom),
        cmocka_unit_test_setup_teardown(test_documented_edges, reset_mismatches, check_mismatches),
        cmocka_unit_test_setup_teardown(test_unread_settings, reset_mismatches, check_mismatches),
        cmocka_unit_test_setup_teardown(test_forgotten_switches, reset_mismatches,
                                        check_mismatches),
        cmocka_unit_test(test_merge_keys),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
