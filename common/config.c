// config.c — the YAML run configuration: a table-driven loader, range checker, cross-checker,
// printer and broadcaster for rd_config (include/rd/config.h).
//
// How it works:
//   1. rd_config_parse_string fills the struct with the raw defaults of the descriptor tables
//      (config_internal.h), loads the YAML text into a libyaml document and walks the document
//      and the descriptor tables side by side. Every key, value type, list length and string
//      length is checked there, so a bad value is reported with the file:line:col of its node.
//   2. Derived defaults (paths under run.out_dir, data.input of the MovieLens presets, a field's
//      column, a student's teacher, a sequence branch's table) are resolved.
//   3. rd_config_validate runs the same range checks again over the struct (so configs built in
//      code are checked too) and then the cross-field checks. While loading, the document is
//      still alive, so even these messages point at the line of the offending key: the key path
//      is looked up in the document.
//
// Invariants: the struct holds no pointers (MPI_Bcast as bytes); rd_config_defaults memsets the
// whole struct first so that padding bytes are deterministic and print -> parse round trips
// compare equal with memcmp. Never crashes on any input: the walk is driven by the descriptor
// tables (finite depth), so even self-referencing YAML aliases terminate.
//
// Workload: one parse per run on rank 0 (a few KB of YAML); nothing here is performance-critical.
#include "rd/config.h"
#include "rd/alloc.h"
#include "rd/dataset.h"
#include "rd/lmdbx.h"
#include "rd/numfmt.h"

#include "config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#define CK_MAX_KEYS 48         // rows of the largest table (checked at parse time)
#define CK_MAX_FILE (1u << 20) // refuse configs above 1 MiB (real ones are a few KB)

_Static_assert(sizeof(rd_config) < (size_t)INT_MAX, "rd_config must fit one MPI_Bcast count");

// ---------------------------------------------------------------------------------------------
// Allowed names. Index = enum value, so the order must match rd/config.h.

static const char *const job_roles[] = {"teacher", "student", NULL};
static const char *const debias_sides[] = {"student", "teacher", NULL};
static const char *const data_sources[] = {"synthetic", "movielens100k", "movielens1m", "csv",
                                           NULL};
static const char *const field_kinds[] = {"categorical", "multi", "numeric", "feedback", NULL};
static const char *const label_ops[] = {">=", ">", "==", "!=", "<=", "<", NULL};
static const char *const opt_kinds[] = {"sgd", "adagrad", "adam", "ftrl", NULL};
static const char *const poolings[] = {"sum", "mean", NULL};
static const char *const shm_modes[] = {"auto", "off", NULL};
static const char *const seq_kinds[] = {"none", "mean", "din", "transformer", NULL};
static const char *const same_time_modes[] = {"exclude", "earlier", NULL};
static const char *const token_queries[] = {"request", "request_seq", NULL}; // rd_token_use.query
static const char *const token_labels[] = {"embed", "none", NULL};           // rd_token_use.label
static const char *const orders[] = {"time", "user", NULL};
static const char *const batch_orders[] = {"time", "user", "windows", NULL}; // rd_order
static const char *const huge_modes[] = {"off", "auto", NULL};  // RD_TOKEN_HUGE_* order
static const char *const sit_groups[] = {"user", "item", NULL}; // rd_sit_group
static const char *const batch_tokens_modes[] = {"first_pass", "final", NULL}; // rd_batch_tokens
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const time_formats[] = {"unix", "unix_ms", "iso8601", NULL};
static const char *const encodings[] = {"utf-8", "latin-1", NULL};
static const char *const missing_fills[] = {"error", "zero", "mean", NULL}; // rd_missing_fill
static const char *const side_missings[] = {"error", "empty", NULL};        // rd_side_missing
static const char *const activations[] = {"relu", "gelu", NULL};
static const char *const dense_opts[] = {"sgd", "adam", "adamw", NULL};
static const char *const dtypes[] = {"fp32", "fp16", NULL};
static const char *const metric_formats[] = {"csv", "jsonl", NULL};

// ---------------------------------------------------------------------------------------------
// Row macros. OFF() fails to compile when the member does not have the C type the row claims
// (arrays decay to pointers in _Generic's controlling expression).

#define OFF(T, m, ty) _Generic(((T *)0)->m, ty : offsetof(T, m))
#define MSIZE(T, m)   sizeof(((T *)0)->m)
#define MCOUNT(T, m)  ((int)(sizeof(((T *)0)->m) / sizeof(((T *)0)->m[0])))
#define REQ           CK_REQUIRED
#define NUM_INF       1e300

#define K_INT(T, k, m, lo_, hi_, fl, def_)                                                         \
    {                                                                                              \
        .key = k, .type = CK_INT, .off = OFF(T, m, int), .flags = CK_RANGE | (fl), .lo = lo_,      \
        .hi = hi_, .def = def_                                                                     \
    }
#define K_I64(T, k, m, lo_, hi_, fl, def_)                                                         \
    {                                                                                              \
        .key = k, .type = CK_INT64, .off = OFF(T, m, int64_t), .flags = CK_RANGE | (fl),           \
        .lo = lo_, .hi = hi_, .def = def_                                                          \
    }
#define K_U64(T, k, m, lo_, hi_, fl, def_)                                                         \
    {                                                                                              \
        .key = k, .type = CK_UINT64, .off = OFF(T, m, uint64_t), .flags = CK_RANGE | (fl),         \
        .lo = lo_, .hi = hi_, .def = def_                                                          \
    }
#define K_FLT(T, k, m, lo_, hi_, fl, def_)                                                         \
    {                                                                                              \
        .key = k, .type = CK_FLOAT, .off = OFF(T, m, float), .flags = CK_RANGE | (fl), .lo = lo_,  \
        .hi = hi_, .def = def_                                                                     \
    }
#define K_DBL(T, k, m, lo_, hi_, fl, def_)                                                         \
    {                                                                                              \
        .key = k, .type = CK_DOUBLE, .off = OFF(T, m, double), .flags = CK_RANGE | (fl),           \
        .lo = lo_, .hi = hi_, .def = def_                                                          \
    }
#define K_BOOL(T, k, m, def_)                                                                      \
    { .key = k, .type = CK_BOOL, .off = OFF(T, m, int), .def = def_ }
#define K_STR(T, k, m, fl, def_)                                                                   \
    {                                                                                              \
        .key = k, .type = CK_STR, .off = OFF(T, m, char *), .size = MSIZE(T, m), .flags = (fl),    \
        .def = def_                                                                                \
    }
#define K_CHOICE(T, k, m, nm, def_)                                                                \
    {                                                                                              \
        .key = k, .type = CK_STR, .off = OFF(T, m, char *), .size = MSIZE(T, m), .names = nm,      \
        .def = def_                                                                                \
    }
#define K_ENUM(T, k, m, nm, fl, def_)                                                              \
    { .key = k, .type = CK_ENUM, .off = OFF(T, m, int), .flags = (fl), .names = nm, .def = def_ }
#define K_INTS(T, k, m, cnt, lo_, hi_)                                                             \
    {                                                                                              \
        .key = k, .type = CK_INT_LIST, .off = OFF(T, m, int *), .size = sizeof(int),               \
        .count_off = OFF(T, cnt, int), .max_count = MCOUNT(T, m), .flags = CK_RANGE, .lo = lo_,    \
        .hi = hi_                                                                                  \
    }
#define K_STRS(T, k, m, cnt)                                                                       \
    {                                                                                              \
        .key = k, .type = CK_STR_LIST, .off = OFF(T, m, char(*)[RD_NAME_MAX]),                     \
        .size = MSIZE(T, m[0]), .count_off = OFF(T, cnt, int), .max_count = MCOUNT(T, m)           \
    }
#define K_COLS(T, k, m, cnt)                                                                       \
    {                                                                                              \
        .key = k, .type = CK_STR_LIST, .off = OFF(T, m, char(*)[RD_COLUMN_MAX]),                   \
        .size = MSIZE(T, m[0]), .count_off = OFF(T, cnt, int), .max_count = MCOUNT(T, m)           \
    }
#define K_MAP(T, k, m, ST, sub_)                                                                   \
    { .key = k, .type = CK_MAP, .off = OFF(T, m, ST), .sub = &sub_ }
#define K_MAPS(T, k, m, ST, cnt, sub_)                                                             \
    {                                                                                              \
        .key = k, .type = CK_MAP_LIST, .off = OFF(T, m, ST *), .size = sizeof(ST),                 \
        .count_off = OFF(T, cnt, int), .max_count = MCOUNT(T, m), .sub = &sub_                     \
    }
#define TABLE(var, T, rows) static const ck_struct var = {#T, rows, sizeof(rows) / sizeof(rows[0])}

// ---------------------------------------------------------------------------------------------
// Descriptor tables, leaves first. Ranges are inclusive unless CK_EXCL_LO / CK_EXCL_HI.

static const ck_key run_keys[] = {
    K_STR(rd_run_config, "name", name, 0, "run"),
    K_STR(rd_run_config, "out_dir", out_dir, 0, NULL), // resolved: runs/<name>
    K_U64(rd_run_config, "seed", seed, 0, 1.9e19, 0, "42"),
    K_CHOICE(rd_run_config, "log_level", log_level, log_levels, "info"),
};
TABLE(run_desc, rd_run_config, run_keys);

static const ck_key negsample_keys[] = {
    K_DBL(rd_negsample_config, "rate", rate, 0, 1, CK_EXCL_LO, "1"),
    K_DBL(rd_negsample_config, "pos_rate", pos_rate, 0, 1, CK_EXCL_LO, "1"),
};
TABLE(negsample_desc, rd_negsample_config, negsample_keys);

static const ck_key job_keys[] = {
    K_STR(rd_job_config, "name", name, REQ, NULL),
    K_ENUM(rd_job_config, "role", role, job_roles, REQ, NULL),
    K_INT(rd_job_config, "ranks", ranks, 1, 65536, 0, "1"),
    K_STR(rd_job_config, "model", model, REQ, NULL),
    K_BOOL(rd_job_config, "distill", distill, "false"),
    K_STR(rd_job_config, "teacher", teacher, 0, NULL), // resolved: first teacher job
    K_STR(rd_job_config, "init_as", init_as, 0, NULL), // "" = the job's own name
    K_MAP(rd_job_config, "negatives", negatives, rd_negsample_config, negsample_desc),
};
TABLE(job_desc, rd_job_config, job_keys);

static const ck_key cluster_keys[] = {
    K_INT(rd_cluster_config, "ps_ranks", ps_ranks, 1, 4096, 0, "1"),
    K_MAPS(rd_cluster_config, "jobs", jobs, rd_job_config, n_jobs, job_desc),
    K_INT(rd_cluster_config, "blas_threads", blas_threads, 1, 256, 0, "1"),
    K_INT(rd_cluster_config, "poll_us_max", poll_us_max, 1, 1000000, 0, "200"),
    K_INT(rd_cluster_config, "freeze_timeout_s", freeze_timeout_s, 0, 604800, 0, "600"),
};
TABLE(cluster_desc, rd_cluster_config, cluster_keys);

static const ck_key field_keys[] = {
    K_STR(rd_field_config, "name", name, REQ, NULL),
    K_STR(rd_field_config, "column", column, 0, NULL), // resolved: the field name
    K_STR(rd_field_config, "side", side, 0, NULL),
    K_ENUM(rd_field_config, "kind", kind, field_kinds, 0, "categorical"),
    K_INT(rd_field_config, "max_len", max_len, 1, 64, 0, "8"),
    K_STR(rd_field_config, "sep", sep, CK_DELIM, "|"),
    K_BOOL(rd_field_config, "log1p", log1p, "false"),
    K_BOOL(rd_field_config, "flags", flags, "false"),
    K_BOOL(rd_field_config, "standardize", standardize, "false"),
    K_ENUM(rd_field_config, "missing", missing, missing_fills, 0, "error"),
};
TABLE(field_desc, rd_field_config, field_keys);

static const ck_key side_keys[] = {
    K_STR(rd_side_config, "name", name, REQ, NULL),
    K_STR(rd_side_config, "path", path, REQ, NULL),
    K_STR(rd_side_config, "delimiter", delimiter, CK_DELIM, ","),
    K_BOOL(rd_side_config, "header", header, "false"),
    K_COLS(rd_side_config, "columns", columns, n_columns),
    K_STR(rd_side_config, "key_column", key_column, REQ, NULL),
    K_STR(rd_side_config, "join_column", join_column, REQ, NULL),
    K_CHOICE(rd_side_config, "encoding", encoding, encodings, "utf-8"),
    K_ENUM(rd_side_config, "missing", missing, side_missings, 0, "error"),
};
TABLE(side_desc, rd_side_config, side_keys);

// data.schema.label: offsets are those of rd_schema_config (the label row sits at offset 0).
static const ck_key label_keys[] = {
    K_STR(rd_schema_config, "column", label_column, 0, NULL),
    K_ENUM(rd_schema_config, "op", label_op, label_ops, 0, ">="),
    K_DBL(rd_schema_config, "threshold", label_threshold, -NUM_INF, NUM_INF, 0, "1"),
    K_STRS(rd_schema_config, "values", label_values, n_label_values),
};
TABLE(label_desc, rd_schema_config, label_keys);

static const ck_key schema_keys[] = {
    K_STR(rd_schema_config, "path", path, 0, NULL),
    K_STR(rd_schema_config, "delimiter", delimiter, CK_DELIM, ","),
    K_BOOL(rd_schema_config, "header", header, "true"),
    K_BOOL(rd_schema_config, "quoting", quoting, "true"),
    K_CHOICE(rd_schema_config, "encoding", encoding, encodings, "utf-8"),
    K_BOOL(rd_schema_config, "drop_repeats", drop_repeats, "false"),
    K_COLS(rd_schema_config, "columns", columns, n_columns),
    K_STR(rd_schema_config, "user_column", user_column, 0, NULL),
    K_STR(rd_schema_config, "item_column", item_column, 0, NULL),
    K_STR(rd_schema_config, "time_column", time_column, 0, NULL),
    K_CHOICE(rd_schema_config, "time_format", time_format, time_formats, "unix"),
    {.key = "label", .type = CK_LABEL, .off = 0, .sub = &label_desc},
    K_MAPS(rd_schema_config, "fields", fields, rd_field_config, n_fields, field_desc),
    K_MAPS(rd_schema_config, "side", side, rd_side_config, n_side, side_desc),
};
TABLE(schema_desc, rd_schema_config, schema_keys);

static const ck_key synthetic_keys[] = {
    K_U64(rd_synthetic_config, "events", events, 1e3, 1e9, 0, "200000"),
    K_INT(rd_synthetic_config, "users", users, 1, 1e8, 0, "2000"),
    K_INT(rd_synthetic_config, "items", items, 1, 1e8, 0, "5000"),
    K_INT(rd_synthetic_config, "topics", topics, 1, 4096, 0, "32"),
    K_INT(rd_synthetic_config, "dim", dim, 1, 1024, 0, "16"),
    K_DBL(rd_synthetic_config, "drift", drift, 0, 1, 0, "0.02"),
    K_DBL(rd_synthetic_config, "long_range", long_range, 0, 1e6, 0, "1.0"),
    K_INT(rd_synthetic_config, "memory_span", memory_span, 1, 1e6, 0, "400"),
    K_DBL(rd_synthetic_config, "base_ctr", base_ctr, 0, 1, CK_EXCL_LO | CK_EXCL_HI, "0.3"),
    K_INT(rd_synthetic_config, "contexts", contexts, 0, 64, 0, "0"),
    K_INT(rd_synthetic_config, "feedback", feedback, 0, 4, 0, "0"),
    K_DBL(rd_synthetic_config, "context_effect", context_effect, 0, 10, 0, "0.5"),
    K_DBL(rd_synthetic_config, "memory_rate", memory_rate, 0, 1, 0, "0.25"),
    K_U64(rd_synthetic_config, "seed", seed, 0, 1.9e19, 0, "0"),
};
TABLE(synthetic_desc, rd_synthetic_config, synthetic_keys);

static const ck_key split_keys[] = {
    K_DBL(rd_split_config, "batch_fraction", batch_fraction, 0, 1, CK_EXCL_LO | CK_EXCL_HI, "0.8"),
    K_DBL(rd_split_config, "holdout_fraction", holdout_fraction, 0, 1, CK_EXCL_HI, "0.1"),
    K_INT(rd_split_config, "stream_windows", stream_windows, 1, RD_SPLIT_MAX_WINDOWS, 0, "5"),
};
TABLE(split_desc, rd_split_config, split_keys);

static const ck_key data_keys[] = {
    K_ENUM(rd_data_config, "source", source, data_sources, 0, "synthetic"),
    K_STR(rd_data_config, "input", input, 0, NULL), // resolved for the MovieLens sources
    K_STR(rd_data_config, "dir", dir, 0, NULL),     // resolved: <run.out_dir>/data
    K_INT(rd_data_config, "history_max", history_max, 1, 4096, 0, "256"),
    K_MAP(rd_data_config, "schema", schema, rd_schema_config, schema_desc),
    K_MAP(rd_data_config, "synthetic", synthetic, rd_synthetic_config, synthetic_desc),
    K_MAP(rd_data_config, "split", split, rd_split_config, split_desc),
    K_MAP(rd_data_config, "negatives", negatives, rd_negsample_config, negsample_desc),
};
TABLE(data_desc, rd_data_config, data_keys);

static const ck_key optim_keys[] = {
    K_ENUM(rd_optim_config, "type", kind, opt_kinds, 0, "adagrad"),
    K_FLT(rd_optim_config, "lr", lr, 0, 1e3, CK_EXCL_LO, "0.05"),
    K_FLT(rd_optim_config, "beta1", beta1, 0, 1, CK_EXCL_HI, "0.9"),
    K_FLT(rd_optim_config, "beta2", beta2, 0, 1, CK_EXCL_HI, "0.999"),
    K_FLT(rd_optim_config, "eps", eps, 0, 1, CK_EXCL_LO, "1e-8"),
    K_FLT(rd_optim_config, "initial_accumulator", initial_accumulator, 0, 1e6, 0, "0.1"),
    K_FLT(rd_optim_config, "l1", l1, 0, 1e6, 0, "0"),
    K_FLT(rd_optim_config, "l2", l2, 0, 1e6, 0, "0"),
    K_FLT(rd_optim_config, "beta", beta, 0, 1e6, 0, "1"),
};
TABLE(optim_desc, rd_optim_config, optim_keys);

static const ck_key table_keys[] = {
    K_STR(rd_table_config, "name", name, REQ, NULL),
    K_INT(rd_table_config, "dim", dim, 1, 1024, REQ, NULL),
    K_MAP(rd_table_config, "optimizer", optim, rd_optim_config, optim_desc),
    K_FLT(rd_table_config, "init_std", init_std, 0, 10, 0, "0.01"),
    K_INT(rd_table_config, "admit_count", admit_count, 1, 1e9, 0, "1"),
    K_I64(rd_table_config, "ttl", ttl, 0, 9.2e18, 0, "0"),
    K_U64(rd_table_config, "capacity", capacity, 1, 1099511627776.0, 0, "4096"),
    K_STR(rd_table_config, "init_as", init_as, 0, NULL), // "" = the table's own name
};
TABLE(table_desc, rd_table_config, table_keys);

static const ck_key ps_keys[] = {
    K_MAPS(rd_ps_config, "tables", tables, rd_table_config, n_tables, table_desc),
    K_BOOL(rd_ps_config, "sync", sync, "true"),
    K_INT(rd_ps_config, "staleness", staleness, 0, 1e6, 0, "0"),
    K_U64(rd_ps_config, "max_msg_bytes", max_msg_bytes, 4096, 1099511627776.0, CK_BYTES, "64MiB"),
    K_ENUM(rd_ps_config, "shm", shm, shm_modes, 0, "auto"),
    K_U64(rd_ps_config, "shm_bytes", shm_bytes, 1048576, 1099511627776.0, CK_BYTES, "256MiB"),
    K_STR(rd_ps_config, "checkpoint_dir", checkpoint_dir, 0, NULL), // resolved: <out>/ckpt
    K_INT(rd_ps_config, "checkpoint_every", checkpoint_every, 0, INT_MAX, 0, "0"),
    K_INT(rd_ps_config, "checkpoint_keep", checkpoint_keep, 1, 1000, 0, "2"),
    K_INT(rd_ps_config, "checkpoint_every_s", checkpoint_every_s, 0, 31536000, 0, "0"),
    K_INT(rd_ps_config, "checkpoint_every_windows", checkpoint_every_windows, 0, 10000, 0, "0"),
};
TABLE(ps_desc, rd_ps_config, ps_keys);

static const ck_key feature_keys[] = {
    K_STR(rd_feature_use, "field", field, REQ, NULL),
    K_STR(rd_feature_use, "table", table, REQ, NULL),
    K_ENUM(rd_feature_use, "pooling", pooling, poolings, 0, "mean"),
};
TABLE(feature_desc, rd_feature_use, feature_keys);

static const ck_key seq_keys[] = {
    K_ENUM(rd_seq_config, "kind", kind, seq_kinds, 0, "none"),
    K_INT(rd_seq_config, "length", length, 1, 4096, 0, "16"),
    K_STR(rd_seq_config, "table", table, 0, NULL), // resolved: the table of feature "item"
    K_INT(rd_seq_config, "layers", layers, 1, 64, 0, "1"),
    K_INT(rd_seq_config, "heads", heads, 1, 64, 0, "2"),
    K_INT(rd_seq_config, "dim", dim, 0, 4096, 0, "0"),
    K_BOOL(rd_seq_config, "with_labels", with_labels, "true"),
    K_ENUM(rd_seq_config, "view", view, seq_kinds, 0, "none"),
    K_INT(rd_seq_config, "view_length", view_length, 0, 4096, 0, "16"), // >= 1 with a view
    K_BOOL(rd_seq_config, "view_by_label", view_by_label, "false"),
    K_INTS(rd_seq_config, "stats", stats, n_stats, 1, 4096),
    K_STR(rd_seq_config, "stats_feedback", stats_feedback, 0, NULL),
    K_BOOL(rd_seq_config, "stats_residual", stats_residual, "false"),
};
TABLE(seq_desc, rd_seq_config, seq_keys);

static const ck_key token_use_keys[] = {
    K_INT(rd_token_use, "scheme", scheme, 0, 2, 0, "0"),
    K_INT(rd_token_use, "length", length, 1, 4096, 0, "64"),
    K_ENUM(rd_token_use, "kind", kind, seq_kinds, 0, "transformer"),
    K_INT(rd_token_use, "layers", layers, 1, 64, 0, "1"),
    K_INT(rd_token_use, "heads", heads, 1, 64, 0, "2"),
    K_INT(rd_token_use, "adapter", adapter, 1, 65536, 0, "64"),
    K_BOOL(rd_token_use, "gate", gate, "false"),
    K_INTS(rd_token_use, "stats", stats, n_stats, 1, 4096),
    K_ENUM(rd_token_use, "same_time", same_time, same_time_modes, 0, "exclude"),
    K_INT(rd_token_use, "search", search, 0, 4096, 0, "0"),
    K_BOOL(rd_token_use, "norm", norm, "false"),
    K_STR(rd_token_use, "search_by", search_by, 0, "item"),
    K_ENUM(rd_token_use, "query", query, token_queries, 0, "request"),
    K_ENUM(rd_token_use, "label", label, token_labels, 0, "embed"),
};
TABLE(token_use_desc, rd_token_use, token_use_keys);

static const ck_key model_keys[] = {
    K_STR(rd_model_config, "name", name, REQ, NULL),
    K_MAPS(rd_model_config, "features", features, rd_feature_use, n_features, feature_desc),
    K_MAP(rd_model_config, "seq", seq, rd_seq_config, seq_desc),
    K_MAP(rd_model_config, "tokens", tokens, rd_token_use, token_use_desc),
    K_INTS(rd_model_config, "mlp", mlp, n_mlp, 1, 65536),
    K_INTS(rd_model_config, "tower", tower, n_tower, 1, 65536),
    K_BOOL(rd_model_config, "two_towers", two_towers, "false"),
    K_BOOL(rd_model_config, "layer_norm", layer_norm, "false"),
    K_CHOICE(rd_model_config, "activation", activation, activations, "relu"),
    K_FLT(rd_model_config, "dropout", dropout, 0, 1, CK_EXCL_HI, "0"),
};
TABLE(model_desc, rd_model_config, model_keys);

static const ck_key train_keys[] = {
    K_INT(rd_train_config, "batch_size", batch_size, 1, 1 << 20, 0, "256"),
    K_INT(rd_train_config, "epochs", epochs, 0, RD_MAX_EPOCHS, 0, "1"),
    K_ENUM(rd_train_config, "order", order, orders, 0, "time"),
    K_CHOICE(rd_train_config, "optimizer", optimizer, dense_opts, "adam"),
    K_FLT(rd_train_config, "lr", lr, 0, 1e3, CK_EXCL_LO, "1e-3"),
    K_FLT(rd_train_config, "beta1", beta1, 0, 1, CK_EXCL_HI, "0.9"),
    K_FLT(rd_train_config, "beta2", beta2, 0, 1, CK_EXCL_HI, "0.999"),
    K_FLT(rd_train_config, "eps", eps, 0, 1, CK_EXCL_LO, "1e-8"),
    K_FLT(rd_train_config, "weight_decay", weight_decay, 0, 1e3, 0, "0"),
    K_INT(rd_train_config, "eval_every", eval_every, 1, INT_MAX, 0, "100"),
};
TABLE(train_desc, rd_train_config, train_keys);

static const ck_key tokens_keys[] = {
    K_INT(rd_tokens_config, "dim", dim, 1, 4096, 0, "64"),
    K_STR(rd_tokens_config, "store_dir", store_dir, 0, NULL), // resolved: <out>/tokens
    K_CHOICE(rd_tokens_config, "dtype", dtype, dtypes, "fp32"),
    K_INT(rd_tokens_config, "scheme", scheme, 1, 2, 0, "2"),
    K_INT(rd_tokens_config, "sit_layers", sit_layers, 0, 64, 0, "2"),
    K_INT(rd_tokens_config, "window", window, 1, 4096, 0, "32"),
    K_ENUM(rd_tokens_config, "batch_order", batch_order, batch_orders, 0, "time"),
    K_BOOL(rd_tokens_config, "sit_labels", sit_labels, "true"),
    K_STR(rd_tokens_config, "source_model", source_model, 0, NULL),
    K_STRS(rd_tokens_config, "side", side, n_side),
    K_BOOL(rd_tokens_config, "side_residual", side_residual, "false"),
    K_U64(rd_tokens_config, "map_size", map_size, 1048576.0, 17592186044416.0, CK_BYTES, "64MiB"),
    K_INT(rd_tokens_config, "append_batch", append_batch, 1, 1 << 24, 0, "4096"),
    K_ENUM(rd_tokens_config, "huge_pages", huge_pages, huge_modes, 0, "auto"),
    K_BOOL(rd_tokens_config, "sit_pairs", sit_pairs, "false"),
    K_BOOL(rd_tokens_config, "sit_item_code", sit_item_code, "false"),
    K_ENUM(rd_tokens_config, "sit_group", sit_group, sit_groups, 0, "user"),
    K_STR(rd_tokens_config, "sit_group_by", sit_group_by, 0, "item"),
    K_ENUM(rd_tokens_config, "batch_tokens", batch_tokens, batch_tokens_modes, 0, "first_pass"),
    K_BOOL(rd_tokens_config, "two_pass", two_pass, "false"),
};
TABLE(tokens_desc, rd_tokens_config, tokens_keys);

static const ck_key distill_keys[] = {
    K_FLT(rd_distill_config, "alpha", alpha, 0, 1e6, 0, "1"),
    K_FLT(rd_distill_config, "temperature", temperature, 0.01, 1e3, 0, "1"),
    K_BOOL(rd_distill_config, "aux_tower", aux_tower, "true"),
    K_BOOL(rd_distill_config, "aux_task", aux_task, "true"),
    K_BOOL(rd_distill_config, "debias", debias, "true"),
    K_FLT(rd_distill_config, "bias", bias, 0, 1e3, 0, "0"),
    K_INT(rd_distill_config, "start_window", start_window, -1, 1e6, 0, "-1"),
    K_INT(rd_distill_config, "start_epoch", start_epoch, 0, 1e6, 0, "0"),
    K_INT(rd_distill_config, "max_in_flight", max_in_flight, 1, 65536, 0, "8"),
    K_INT(rd_distill_config, "batch", batch, 1, 1 << 20, 0, "1024"),
    K_INT(rd_distill_config, "wait_ms", wait_ms, 0, 1e7, 0, "2000"),
    K_STR(rd_distill_config, "target_log", target_log, 0, NULL), // resolved: <out>/targets
    K_BOOL(rd_distill_config, "replay", replay, "false"),
    K_ENUM(rd_distill_config, "debias_teacher", debias_teacher, debias_sides, 0, "student"),
};
TABLE(distill_desc, rd_distill_config, distill_keys);

static const ck_key output_keys[] = {
    K_CHOICE(rd_output_config, "metrics_format", metrics_format, metric_formats, "csv"),
    K_BOOL(rd_output_config, "plot", plot, "true"),
    K_INT(rd_output_config, "progress_every_s", progress_every_s, 0, 86400, 0, "10"),
};
TABLE(output_desc, rd_output_config, output_keys);

static const ck_key root_keys[] = {
    K_MAP(rd_config, "run", run, rd_run_config, run_desc),
    K_MAP(rd_config, "cluster", cluster, rd_cluster_config, cluster_desc),
    K_MAP(rd_config, "data", data, rd_data_config, data_desc),
    K_MAP(rd_config, "ps", ps, rd_ps_config, ps_desc),
    K_MAPS(rd_config, "models", models, rd_model_config, n_models, model_desc),
    K_MAP(rd_config, "train", train, rd_train_config, train_desc),
    K_MAP(rd_config, "tokens", tokens, rd_tokens_config, tokens_desc),
    K_MAP(rd_config, "distill", distill, rd_distill_config, distill_desc),
    K_MAP(rd_config, "output", output, rd_output_config, output_desc),
};
const ck_struct rd__config_root = {"rd_config", root_keys,
                                   sizeof(root_keys) / sizeof(root_keys[0])};

// ---------------------------------------------------------------------------------------------
// Small text helpers.

// Copy `len` bytes of s into out as a printable, quoted excerpt (for messages).
static const char *excerpt(const char *s, size_t len, char *out, size_t cap) {
    size_t o = 0;
    const size_t limit = 48;
    out[o++] = '\'';
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        if (i == limit) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o++] = '\'';
    out[o] = '\0';
    return out;
}

static const char *type_text(ck_type t) {
    switch (t) {
        case CK_INT:
        case CK_INT64:
            return "an integer";
        case CK_UINT64:
            return "a non-negative integer";
        case CK_FLOAT:
        case CK_DOUBLE:
            return "a number";
        case CK_BOOL:
            return "a boolean (true/false)";
        case CK_STR:
        case CK_ENUM:
            return "a string";
        case CK_INT_LIST:
            return "a list of integers";
        case CK_STR_LIST:
            return "a list of strings";
        case CK_MAP:
            return "a map";
        case CK_MAP_LIST:
            return "a list of maps";
        case CK_LABEL:
            return "a map {column, op, threshold} or a rule like \"rating >= 4\"";
    }
    return "a value";
}

static const char *node_text(const yaml_node_t *n) {
    switch (n->type) {
        case YAML_MAPPING_NODE:
            return "a map";
        case YAML_SEQUENCE_NODE:
            return "a list";
        case YAML_SCALAR_NODE:
            return "a scalar";
        default:
            return "nothing";
    }
}

// Format a range bound: integers without exponent when they are exact.
static void bound_text(double v, char *out, size_t cap) {
    if (v <= -NUM_INF) {
        snprintf(out, cap, "-inf");
    } else if (v >= NUM_INF) {
        snprintf(out, cap, "inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, cap, "%.0f", v);
    } else {
        snprintf(out, cap, "%g", v);
    }
}

static int names_count(const char *const *names) {
    int n = 0;
    while (names[n])
        n++;
    return n;
}

static void names_list(const char *const *names, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; names[i] && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? ", " : "", names[i]);
}

// ---------------------------------------------------------------------------------------------
// Scalar conversion and checks (shared by the YAML walk, the defaults and the validator).

// Parse an integer magnitude: decimal or 0x hex, '_' separators, or a number in float notation
// with an integral value (2e5). Optional binary size suffix with CK_BYTES.
static int parse_integer(const char *s, size_t len, int bytes, int *neg, uint64_t *mag) {
    char buf[80];
    size_t n = 0;
    if (len == 0 || len >= sizeof buf)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (s[i] != '_')
            buf[n++] = s[i];
    buf[n] = '\0';
    if (strlen(buf) != n) // embedded NUL
        return -1;
    uint64_t mult = 1;
    if (bytes) {
        static const struct {
            const char *sfx;
            uint64_t mult;
        } sfx[] = {
            {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
        for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
            size_t sl = strlen(sfx[i].sfx);
            if (n > sl && strcmp(buf + n - sl, sfx[i].sfx) == 0) {
                mult = sfx[i].mult;
                n -= sl;
                while (n > 0 && buf[n - 1] == ' ')
                    n--;
                buf[n] = '\0';
                break;
            }
        }
    }
    const char *p = buf;
    *neg = 0;
    if (*p == '+' || *p == '-')
        *neg = (*p++ == '-');
    uint64_t v = 0;
    int ok = 1;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && p[2]) {
        for (p += 2; *p && ok; p++) {
            int d = isdigit((unsigned char)*p)    ? *p - '0'
                    : isxdigit((unsigned char)*p) ? tolower((unsigned char)*p) - 'a' + 10
                                                  : -1;
            if (d < 0)
                return -1; // not a hex digit (0xZZ, 0x1p4): not a number, no overflow
            if (v > (UINT64_MAX >> 4))
                ok = 0;
            else
                v = v * 16 + (uint64_t)d;
        }
    } else if (*p && strspn(p, "0123456789") == strlen(p)) {
        for (; *p && ok; p++) {
            uint64_t d = (uint64_t)(*p - '0');
            if (v > (UINT64_MAX - d) / 10)
                ok = 0;
            else
                v = v * 10 + d;
        }
    } else {
        // Float notation, accepted only for exact integers (events: 2e5).
        char *end = NULL;
        errno = 0;
        double d = strtod(buf, &end);
        // Beyond 2^53 a double no longer holds every integer: 9007199254740993.0 read as
        // ...992. Such values are written as plain integers.
        if (end == buf || *end != '\0' || errno || !isfinite(d) || d != floor(d) ||
            fabs(d) >= 9007199254740992.0)
            return -1;
        *neg = d < 0;
        v = (uint64_t)fabs(d);
    }
    if (!ok)
        return -2; // too large
    if (mult > 1 && v > UINT64_MAX / mult)
        return -2;
    *mag = v * mult;
    return 0;
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

// The shortest %g text of v that reads back as the same value: as a float when as_float (a
// float key's value, 0.001 rather than its double widening 0.001000000047), else as a double.
static void shortest_text(double v, int as_float, char *out, size_t cap) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        double back = strtod(out, NULL);
        if (as_float ? (float)back == (float)v : back == v)
            return;
    }
}

// Range check of a number against a row. A float key's bounds are taken at float precision, so
// a documented bound (distill.temperature 0.01, stored as 0.0099999998f) is inside its range.
// @return 0 ok, -1 with `why` filled.
static int
check_range(const ck_key *k, double v, int as_float, const char *shown, char *why, size_t wn) {
    if (!(k->flags & CK_RANGE))
        return 0;
    double klo = k->lo, khi = k->hi;
    if (as_float) {
        if (fabs(klo) < (double)FLT_MAX)
            klo = (double)(float)klo;
        if (fabs(khi) < (double)FLT_MAX)
            khi = (double)(float)khi;
    }
    int lo_ok = (k->flags & CK_EXCL_LO) ? v > klo : v >= klo;
    int hi_ok = (k->flags & CK_EXCL_HI) ? v < khi : v <= khi;
    if (lo_ok && hi_ok)
        return 0;
    char lo[32], hi[32];
    bound_text(k->lo, lo, sizeof lo);
    bound_text(k->hi, hi, sizeof hi);
    snprintf(why, wn, "value %s out of range %c%s, %s%c", shown,
             (k->flags & CK_EXCL_LO) ? '(' : '[', lo, hi, (k->flags & CK_EXCL_HI) ? ')' : ']');
    return -1;
}

// Check the stored value of a scalar of type t at dst against row k (ranges, enum bounds,
// string termination and allowed values). Used after parsing and by rd_config_validate.
static int check_scalar(const ck_key *k, ck_type t, const void *dst, char *why, size_t wn) {
    char shown[64];
    switch (t) {
        case CK_INT: {
            int v;
            memcpy(&v, dst, sizeof v);
            snprintf(shown, sizeof shown, "%d", v);
            return check_range(k, (double)v, 0, shown, why, wn);
        }
        case CK_INT64: {
            int64_t v;
            memcpy(&v, dst, sizeof v);
            snprintf(shown, sizeof shown, "%lld", (long long)v);
            return check_range(k, (double)v, 0, shown, why, wn);
        }
        case CK_UINT64: {
            uint64_t v;
            memcpy(&v, dst, sizeof v);
            snprintf(shown, sizeof shown, "%llu", (unsigned long long)v);
            return check_range(k, (double)v, 0, shown, why, wn);
        }
        case CK_FLOAT:
        case CK_DOUBLE: {
            double v;
            if (t == CK_FLOAT) {
                float f;
                memcpy(&f, dst, sizeof f);
                v = (double)f;
            } else {
                memcpy(&v, dst, sizeof v);
            }
            if (!isfinite(v)) {
                snprintf(why, wn, "not a finite number");
                return -1;
            }
            shortest_text(v, t == CK_FLOAT, shown, sizeof shown);
            return check_range(k, v, t == CK_FLOAT, shown, why, wn);
        }
        case CK_BOOL: {
            int v;
            memcpy(&v, dst, sizeof v);
            if (v != 0 && v != 1) {
                snprintf(why, wn, "boolean holds %d (must be 0 or 1)", v);
                return -1;
            }
            return 0;
        }
        case CK_ENUM: {
            int v;
            memcpy(&v, dst, sizeof v);
            if (v < 0 || v >= names_count(k->names)) {
                char allowed[256];
                names_list(k->names, allowed, sizeof allowed);
                snprintf(why, wn, "enum value %d out of range (allowed: %s)", v, allowed);
                return -1;
            }
            return 0;
        }
        case CK_STR: {
            const char *s = dst;
            if (!memchr(s, '\0', k->size)) {
                snprintf(why, wn, "string is not NUL-terminated within %zu bytes", k->size);
                return -1;
            }
            if ((k->flags & CK_REQUIRED) && s[0] == '\0') {
                snprintf(why, wn, "must not be empty");
                return -1;
            }
            if (k->names) {
                for (int i = 0; k->names[i]; i++)
                    if (strcmp(s, k->names[i]) == 0)
                        return 0;
                char allowed[256], ex[80];
                names_list(k->names, allowed, sizeof allowed);
                snprintf(why, wn, "unknown value %s (allowed: %s)",
                         excerpt(s, strlen(s), ex, sizeof ex), allowed);
                return -1;
            }
            return 0;
        }
        default:
            return 0;
    }
}

// Delimiters by name (CK_DELIM rows: data.schema.delimiter, side[].delimiter, and a multi
// field's fields[].sep), as the byte each names. The member holds 3 bytes, so "tab" fitted and
// was taken as a three-byte separator that split no line of a TSV (or no value of a field).
// Only these whole names (in any case) are read so: single characters, "::" and "\\t" as two
// characters (which the CSV source reads as a tab) stay as written.
static const struct {
    const char *name;
    const char *byte;
} delimiter_names[] = {
    {"tab", "\t"}, {"comma", ","}, {"semicolon", ";"}, {"pipe", "|"}, {"space", " "}};
#define N_DELIMITER_NAMES (sizeof delimiter_names / sizeof delimiter_names[0])

// Convert one scalar text into the field at dst (type t: the row's type, or the element type of
// a list row). `quoted` = the YAML scalar was quoted (1) or tagged as a string (2, `!!str 4`);
// `null` = it was an empty/null plain scalar.
// @return 0 ok, -1 with `why` filled.
static int parse_scalar(const ck_key *k,
                        ck_type t,
                        const char *s,
                        size_t len,
                        int quoted,
                        int null,
                        void *dst,
                        char *why,
                        size_t wn) {
    char ex[80];
    if (t == CK_STR) {
        if (null) {
            len = 0;
            s = "";
        }
        if (memchr(s, '\0', len)) {
            snprintf(why, wn, "string contains a NUL character");
            return -1;
        }
        // Other control characters but the tab (a TSV delimiter): a line break in a path made
        // `config --layout`'s key=value lines say what the config did not (world_size=1), and no
        // name, path or value here has a use for one.
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                snprintf(why, wn, "string contains a control character (byte 0x%02x at %zu)", c, i);
                return -1;
            }
        }
        for (size_t d = 0; (k->flags & CK_DELIM) && d < N_DELIMITER_NAMES; d++)
            if (len == strlen(delimiter_names[d].name) &&
                strncasecmp(s, delimiter_names[d].name, len) == 0) {
                s = delimiter_names[d].byte;
                len = 1;
                break;
            }
        if (len >= k->size) {
            snprintf(why, wn, "string too long (%zu bytes; at most %zu)%s", len, k->size - 1,
                     (k->flags & CK_DELIM) ? ": a delimiter or separator is 1 to 3 bytes "
                                             "(\",\", \"\\t\", \"::\") or one of the names "
                                             "tab, comma, semicolon, pipe, space"
                                           : "");
            return -1;
        }
        memset(dst, 0, k->size);
        memcpy(dst, s, len);
        return check_scalar(k, t, dst, why, wn);
    }
    if (null) {
        snprintf(why, wn, "expected %s, got nothing (null)", type_text(t));
        return -1;
    }
    if (t == CK_ENUM) {
        for (int i = 0; k->names[i]; i++) {
            if (strlen(k->names[i]) == len && memcmp(k->names[i], s, len) == 0) {
                memcpy(dst, &i, sizeof i);
                return 0;
            }
        }
        char allowed[256];
        names_list(k->names, allowed, sizeof allowed);
        snprintf(why, wn, "unknown value %s (allowed: %s)", excerpt(s, len, ex, sizeof ex),
                 allowed);
        return -1;
    }
    if (quoted) {
        snprintf(why, wn, "expected %s, got the %s %s%s", type_text(t),
                 quoted == 2 ? "string" : "quoted string", excerpt(s, len, ex, sizeof ex),
                 quoted == 2 ? " (explicit string tag)" : "");
        return -1;
    }
    if (memchr(s, '\0', len)) {
        snprintf(why, wn, "expected %s, got text with a NUL character", type_text(t));
        return -1;
    }
    switch (t) {
        case CK_BOOL: {
            int v;
            if (parse_bool(s, &v)) {
                snprintf(why, wn, "expected a boolean (true/false/yes/no/on/off), got %s",
                         excerpt(s, len, ex, sizeof ex));
                return -1;
            }
            memcpy(dst, &v, sizeof v);
            return 0;
        }
        case CK_INT:
        case CK_INT64:
        case CK_UINT64: {
            int neg = 0;
            uint64_t mag = 0;
            int rc = parse_integer(s, len, (k->flags & CK_BYTES) != 0, &neg, &mag);
            if (rc == -1) {
                snprintf(why, wn, "expected %s%s, got %s", type_text(t),
                         (k->flags & CK_BYTES) ? " (optionally with KiB/MiB/GiB/TiB)" : "",
                         excerpt(s, len, ex, sizeof ex));
                return -1;
            }
            int fits;
            if (rc == 0 && t == CK_UINT64)
                fits = !neg || mag == 0;
            else if (rc == 0 && t == CK_INT64)
                fits = neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX;
            else if (rc == 0)
                fits = neg ? mag <= (uint64_t)INT_MAX + 1 : mag <= (uint64_t)INT_MAX;
            else
                fits = 0;
            if (!fits) {
                snprintf(why, wn, "value %s does not fit %s", excerpt(s, len, ex, sizeof ex),
                         t == CK_INT     ? "a 32-bit int"
                         : t == CK_INT64 ? "a 64-bit int"
                                         : "a non-negative 64-bit int");
                return -1;
            }
            if (t == CK_UINT64) {
                memcpy(dst, &mag, sizeof mag);
            } else if (t == CK_INT64) {
                int64_t v = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag)
                                : (int64_t)mag;
                memcpy(dst, &v, sizeof v);
            } else {
                int v = neg ? (int)(-(int64_t)mag) : (int)mag;
                memcpy(dst, &v, sizeof v);
            }
            return check_scalar(k, t, dst, why, wn);
        }
        case CK_FLOAT:
        case CK_DOUBLE: {
            char buf[80];
            if (len == 0 || len >= sizeof buf) {
                snprintf(why, wn, "expected a number, got %s", excerpt(s, len, ex, sizeof ex));
                return -1;
            }
            memcpy(buf, s, len);
            buf[len] = '\0';
            char *end = NULL;
            if (t == CK_FLOAT) {
                float v = strtof(buf, &end);
                // ERANGE with a finite result is an underflow (1e-38): valid, kept as rounded.
                if (end == buf || *end != '\0' || !isfinite(v)) {
                    snprintf(why, wn, "expected a finite number, got %s",
                             excerpt(s, len, ex, sizeof ex));
                    return -1;
                }
                // The range holds for the value as written (1000.00001 rounded to 1000 and
                // passed lr's (0, 1000]), and for the float it is stored as (0.99999999 is
                // 1.0f, outside beta1's [0, 1): said so, not as "value 1").
                if (check_range(k, strtod(buf, NULL), 0, buf, why, wn) != 0)
                    return -1;
                memcpy(dst, &v, sizeof v);
                if (check_scalar(k, t, dst, why, wn) != 0) {
                    size_t wl = strlen(why);
                    snprintf(why + wl, wn - wl, " (%s as a 32-bit float)", buf);
                    return -1;
                }
                return 0;
            } else {
                double v = strtod(buf, &end);
                if (end == buf || *end != '\0' || !isfinite(v)) {
                    snprintf(why, wn, "expected a finite number, got %s",
                             excerpt(s, len, ex, sizeof ex));
                    return -1;
                }
                memcpy(dst, &v, sizeof v);
            }
            return check_scalar(k, t, dst, why, wn);
        }
        default:
            snprintf(why, wn, "internal: scalar parser called for type %d", (int)t);
            return -1;
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults.

// Bytes of the storage of key k (a scalar, a string, a list's array), for a zero default.
static size_t default_bytes(const ck_key *k) {
    switch (k->type) {
        case CK_INT:
        case CK_BOOL:
        case CK_ENUM:
            return sizeof(int);
        case CK_INT64:
            return sizeof(int64_t);
        case CK_UINT64:
            return sizeof(uint64_t);
        case CK_FLOAT:
            return sizeof(float);
        case CK_DOUBLE:
            return sizeof(double);
        case CK_STR:
            return k->size;
        case CK_INT_LIST:
            return (size_t)k->max_count * sizeof(int);
        case CK_STR_LIST:
        case CK_MAP_LIST:
            return (size_t)k->max_count * k->size;
        case CK_MAP:
        case CK_LABEL:
            break;
    }
    return 0;
}

static void apply_defaults(const ck_struct *st, void *base) {
    RD_ASSERT(st->n_keys <= CK_MAX_KEYS);
    for (size_t i = 0; i < st->n_keys; i++) {
        const ck_key *k = &st->keys[i];
        char *dst = (char *)base + k->off;
        if (k->type == CK_MAP || k->type == CK_LABEL) {
            apply_defaults(k->sub, dst);
        } else if (k->def) {
            char why[256] = "";
            int rc = parse_scalar(k, k->type, k->def, strlen(k->def), 0, 0, dst, why, sizeof why);
            RD_ASSERT_MSG(rc == 0, "bad default '%s' for %s.%s: %s", k->def, st->name, k->key, why);
        } else {
            // No default text: zero / empty. Written out, not assumed from a memset of the whole
            // config: an override (--set) applies the defaults over what the file wrote, and a
            // list, a string or a list entry left holding the file's value would survive an
            // override that leaves it out (`--set models.m.seq={kind: din}` kept the file's
            // seq.stats and stats_feedback, and the model trained with them).
            memset(dst, 0, default_bytes(k));
            if (k->type == CK_INT_LIST || k->type == CK_STR_LIST || k->type == CK_MAP_LIST)
                memset((char *)base + k->count_off, 0, sizeof(int));
        }
    }
}

// Fill every field with its table default and leave derived fields empty (resolved later).
static void defaults_raw(rd_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    apply_defaults(&rd__config_root, cfg);
}

// ---------------------------------------------------------------------------------------------
// The YAML walk.

// The keys a config wrote (the file, including the overrides tools/variant.sh and
// tools/ablations.sh write into it), as opposed to those left at their table defaults: one entry
// per YAML key parsed, naming the struct it filled (its byte offset in rd_config) and the row of
// its table. A row pointer names the table and the key at once, and the offset tells apart the
// instances of one table (models[0].seq from models[1].seq). Grown with rd_realloc as keys come;
// a config has a few hundred keys, at most some thousands (the tables bound every list), so a
// linear lookup is fine. Kept only while loading: rd_config itself holds no pointers (it is
// broadcast as bytes), and configs built in code have no such record.
typedef struct ck_written_key {
    size_t off;      // byte offset in rd_config of the struct the key filled
    const ck_key *k; // its row
} ck_written_key;

typedef struct ck_written {
    ck_written_key *keys; // n entries of cap, owned (rd_free)
    size_t n, cap;
} ck_written;

typedef struct pctx {
    yaml_document_t *doc;
    const char *name; // file name for messages
    rd_errbuf *eb;
    const char *root; // the rd_config being filled: offsets in `written` are relative to it
    ck_written *written;
    char path[256]; // key path of the node being parsed ("ps.tables[1].optimizer")
    // The scalars with an explicit tag (`!!str 4`, `! 4`, `!!int 64`), as start offset
    // (yaml_mark_t.index) * 8 + TAG_* kind, ascending: libyaml's document gives every untagged
    // scalar the same str tag, so only the event stream tells them apart (see prescan).
    const size_t *str_tagged;
    size_t n_str_tagged;
    const char *set_arg; // parsing an override's VALUE: "PATH=VALUE" (messages name it), or NULL
} pctx;

static size_t path_push(pctx *c, const char *fmt, ...) RD_PRINTF(2, 3);
static size_t path_push(pctx *c, const char *fmt, ...) {
    size_t old = strlen(c->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->path + old, sizeof c->path - old, fmt, ap);
    va_end(ap);
    return old;
}

static size_t path_push_key(pctx *c, const char *key) {
    return c->path[0] ? path_push(c, ".%s", key) : path_push(c, "%s", key);
}

static void path_pop(pctx *c, size_t old) {
    c->path[old] = '\0';
}

static int perr(pctx *c, yaml_mark_t mark, const char *fmt, ...) RD_PRINTF(3, 4);
static int perr(pctx *c, yaml_mark_t mark, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->set_arg)
        return rd_err_set(c->eb, RD_ERR_CONFIG, "--set %s: %s: %s", c->set_arg,
                          c->path[0] ? c->path : "(top level)", msg);
    return rd_err_set(c->eb, RD_ERR_CONFIG, "%s:%zu:%zu: %s: %s", c->name, mark.line + 1,
                      mark.column + 1, c->path[0] ? c->path : "(top level)", msg);
}

static int is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

static int is_quoted(const yaml_node_t *n) {
    return n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
}

// The explicit tag of a scalar: TAG_NONE, or TAG_STR (text, as if quoted: "!!str 4" is the
// string "4", "!!str null" the string "null"), TAG_INT, TAG_FLOAT, TAG_BOOL, TAG_NULL.
enum { TAG_NONE = 0, TAG_STR, TAG_INT, TAG_FLOAT, TAG_BOOL, TAG_NULL };
static int scalar_tag(const pctx *c, const yaml_node_t *n) {
    size_t lo = 0, hi = c->n_str_tagged, at = n->start_mark.index;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->str_tagged[mid] / 8 < at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n_str_tagged && c->str_tagged[lo] / 8 == at ? (int)(c->str_tagged[lo] % 8)
                                                               : TAG_NONE;
}

static int is_str_tagged(const pctx *c, const yaml_node_t *n) {
    return scalar_tag(c, n) == TAG_STR;
}

// A core tag other than !!str must agree with the key's type (`name: !!int abc` passed as the
// string "abc"): 0, or -1 with why.
static int tag_fits(int tag, ck_type t, char *why, size_t wn) {
    static const char *const names[] = {"", "!!str", "!!int", "!!float", "!!bool", "!!null"};
    int ok = tag == TAG_NONE || tag == TAG_STR || tag == TAG_NULL ||
             (tag == TAG_INT && (t == CK_INT || t == CK_INT64 || t == CK_UINT64)) ||
             (tag == TAG_FLOAT && (t == CK_FLOAT || t == CK_DOUBLE)) ||
             (tag == TAG_BOOL && t == CK_BOOL);
    if (!ok)
        snprintf(why, wn, "tagged %s, but this key takes %s", names[tag], type_text(t));
    return ok ? 0 : -1;
}

// Edit distance (optimal string alignment: insert, delete, substitute, swap two neighbours;
// case-insensitive) between two short strings, for "did you mean".
static size_t edit_distance(const char *a, size_t la, const char *b) {
    size_t lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ai = tolower((unsigned char)a[i - 1]), bj = tolower((unsigned char)b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ai != bj);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == bj && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

// The key of st closest to the kl bytes at ks when it is close enough to suggest (one edit, two
// edits on keys of 4+ bytes, or a third of the key), else NULL.
static const char *closest_key(const ck_struct *st, const char *ks, size_t kl) {
    size_t best = 99, besti = 0;
    for (size_t i = 0; i < st->n_keys; i++) {
        size_t d = edit_distance(ks, kl, st->keys[i].key);
        if (d < best) {
            best = d;
            besti = i;
        }
    }
    return best <= 1 || (best == 2 && kl >= 4) || best * 3 <= kl ? st->keys[besti].key : NULL;
}

static int unknown_key(pctx *c, const ck_struct *st, const yaml_node_t *kn) {
    const char *ks = (const char *)kn->data.scalar.value;
    size_t kl = kn->data.scalar.length;
    char ex[80];
    excerpt(ks, kl, ex, sizeof ex);
    // Strip the quotes of the excerpt to show the key inside the path.
    size_t exl = strlen(ex);
    ex[exl - 1] = '\0';
    size_t old = path_push_key(c, ex + 1);
    const char *near = closest_key(st, ks, kl);
    int rc;
    if (near) {
        rc = perr(c, kn->start_mark, "unknown key (did you mean '%s'?)", near);
    } else {
        char known[400];
        size_t o = 0;
        known[0] = '\0';
        for (size_t i = 0; i < st->n_keys && o < sizeof known; i++)
            o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", i ? ", " : "",
                                  st->keys[i].key);
        rc = perr(c, kn->start_mark, "unknown key (known keys: %s)", known);
    }
    path_pop(c, old);
    return rc;
}

// ---- YAML merge keys.
//
// `<<: *base` (or `<<: [*a, *b]`) in a map brings in the keys of the merged maps that the map does
// not write itself, an earlier merged map before a later one: YAML 1.1's merge key, which PyYAML
// and most YAML tools read, so a config can write a table's or a model's settings once and change
// a key or two in the others (`- {<<: *student, name: student_raw}`). libyaml loads `<<` as a
// plain key; the merge is done here, for parsing and for locating a key in messages. Only a plain
// `<<` merges: quoted ("<<") or tagged (!!str <<) it is a key of that name (an unknown one).

typedef struct ck_pair {
    const yaml_node_t *k, *v;
} ck_pair;

// A map's effective pairs, in a fixed array: a struct has at most CK_MAX_KEYS keys, so among
// CK_MAX_KEYS + 1 pairs (the map's own, then merged ones of keys not seen yet) one is unknown or
// given twice, and parse_struct stops at that one; the pairs after it are not needed.
typedef struct ck_pairs {
    ck_pair p[CK_MAX_KEYS + 1];
    size_t n;
} ck_pairs;

enum { CK_MERGE_DEPTH = 16 }; // merged maps that merge maps ..., at most this deep

static int is_merge_key(const pctx *c, const yaml_node_t *kn) {
    return kn->type == YAML_SCALAR_NODE && kn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           kn->data.scalar.length == 2 && memcmp(kn->data.scalar.value, "<<", 2) == 0 &&
           (!c || scalar_tag(c, kn) == TAG_NONE);
}

static int pairs_have(const ck_pairs *out, const yaml_node_t *kn) {
    if (kn->type != YAML_SCALAR_NODE)
        return 0;
    for (size_t i = 0; i < out->n; i++)
        if (out->p[i].k->type == YAML_SCALAR_NODE &&
            out->p[i].k->data.scalar.length == kn->data.scalar.length &&
            memcmp(out->p[i].k->data.scalar.value, kn->data.scalar.value, kn->data.scalar.length) ==
                0)
            return 1;
    return 0;
}

// Append the effective pairs of mapping `map` to out (up to its capacity): its own (all of them
// when !merged, so that parse_struct sees and refuses a duplicate; when merged, only keys not in
// out yet), then those of each map its `<<` merges. c may be NULL (no tags known: every plain `<<`
// merges). 0, or -1 with *bad and *why (a `<<` that is not a map or a list of maps, given twice,
// or nested too deep, a broken document).
static int pairs_collect(yaml_document_t *doc,
                         const pctx *c,
                         const yaml_node_t *map,
                         int merged,
                         int depth,
                         ck_pairs *out,
                         const yaml_node_t **bad,
                         const char **why) {
    const yaml_node_t *merge = NULL;
    for (const yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = yaml_document_get_node(doc, pr->key);
        const yaml_node_t *vn = yaml_document_get_node(doc, pr->value);
        if (!kn || !vn) {
            *bad = map;
            *why = "broken YAML document";
            return -1;
        }
        if (is_merge_key(c, kn)) {
            if (merge) {
                *bad = kn;
                *why = "'<<' (a YAML merge key) given twice in one map: merge a list, "
                       "<<: [*a, *b]";
                return -1;
            }
            merge = vn;
            continue;
        }
        if (merged && pairs_have(out, kn))
            continue; // the merging map's own key, or an earlier merged map's, wins
        if (out->n < sizeof out->p / sizeof out->p[0])
            out->p[out->n++] = (ck_pair){kn, vn};
    }
    if (!merge)
        return 0;
    if (depth >= CK_MERGE_DEPTH) {
        *bad = merge;
        *why = "'<<' (a YAML merge key): merged maps nested more than 16 deep";
        return -1;
    }
    size_t n = merge->type == YAML_SEQUENCE_NODE
                   ? (size_t)(merge->data.sequence.items.top - merge->data.sequence.items.start)
                   : 1;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *m =
            merge->type == YAML_SEQUENCE_NODE
                ? yaml_document_get_node(doc, merge->data.sequence.items.start[i])
                : merge;
        if (!m || m->type != YAML_MAPPING_NODE) {
            *bad = m ? m : merge;
            *why = "'<<' (a YAML merge key) takes a map (<<: *name) or a list of maps "
                   "(<<: [*a, *b])";
            return -1;
        }
        int rc = pairs_collect(doc, c, m, 1, depth + 1, out, bad, why);
        if (rc)
            return rc;
    }
    return 0;
}

// The effective pairs of mapping `node` (pairs_collect) into out: RD_OK or the error, with the
// file position.
static int map_pairs(pctx *c, const yaml_node_t *node, ck_pairs *out) {
    out->n = 0;
    const yaml_node_t *bad = node;
    const char *why = "";
    if (pairs_collect(c->doc, c, node, 0, 0, out, &bad, &why) == 0)
        return RD_OK;
    return perr(c, bad->start_mark, "%s", why);
}

static int parse_struct(pctx *c, const ck_struct *st, void *base, const yaml_node_t *node);

// "rating >= 4" -> label_column, label_op, label_threshold of the schema at base;
// 'event == "buy"' (== or != and a quoted text) -> label_column, label_op, label_values[0].
static int parse_label_rule(pctx *c, void *base, const yaml_node_t *node) {
    rd_schema_config *sc = base;
    const char *s = (const char *)node->data.scalar.value;
    size_t len = node->data.scalar.length;
    char ex[80];
    const char *op = NULL;
    size_t opi = 0;
    for (; opi < len; opi++)
        if (strchr("<>=!", s[opi]) && s[opi] != '\0')
            break;
    size_t oplen = 0;
    int opv = -1;
    if (opi < len) {
        op = s + opi;
        static const struct {
            const char *text;
            int op;
        } ops[] = {{">=", RD_LABEL_GE}, {"<=", RD_LABEL_LE}, {"==", RD_LABEL_EQ},
                   {"!=", RD_LABEL_NE}, {">", RD_LABEL_GT},  {"<", RD_LABEL_LT},
                   {"=", RD_LABEL_EQ}};
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            size_t ol = strlen(ops[i].text);
            if (len - opi >= ol && memcmp(op, ops[i].text, ol) == 0) {
                opv = ops[i].op;
                oplen = ol;
                break;
            }
        }
    }
    size_t cb = 0, ce = opi;
    while (cb < ce && isspace((unsigned char)s[cb]))
        cb++;
    while (ce > cb && isspace((unsigned char)s[ce - 1]))
        ce--;
    char num[64];
    size_t nb = opi + oplen, ne = len;
    while (nb < ne && isspace((unsigned char)s[nb]))
        nb++;
    while (ne > nb && isspace((unsigned char)s[ne - 1]))
        ne--;
    char *end = NULL;
    double thr = 0;
    // A quoted text after the operator: the label is 1 when the column holds exactly that text.
    int text = opv >= 0 && ne > nb + 1 && (s[nb] == '"' || s[nb] == '\'') && s[ne - 1] == s[nb];
    if (text) {
        if (opv != RD_LABEL_EQ && opv != RD_LABEL_NE)
            return perr(c, node->start_mark, "a label rule on a text value takes == or !=, got %s",
                        excerpt(s, len, ex, sizeof ex));
        size_t vb = nb + 1, ve = ne - 1;
        if (ve - vb >= sizeof sc->label_values[0] || memchr(s + vb, '\0', ve - vb))
            return perr(c, node->start_mark,
                        "label value too long (%zu bytes; at most %zu) or not text in %s", ve - vb,
                        sizeof sc->label_values[0] - 1, excerpt(s, len, ex, sizeof ex));
        if (ce == cb || ce - cb >= sizeof sc->label_column || memchr(s + cb, '\0', ce - cb))
            return perr(c, node->start_mark, "expected a label column before the operator in %s",
                        excerpt(s, len, ex, sizeof ex));
        memset(sc->label_column, 0, sizeof sc->label_column);
        memcpy(sc->label_column, s + cb, ce - cb);
        memset(sc->label_values, 0, sizeof sc->label_values);
        memcpy(sc->label_values[0], s + vb, ve - vb);
        sc->n_label_values = 1;
        sc->label_op = opv;
        return RD_OK;
    }
    int ok = opv >= 0 && ce > cb && ne > nb && ne - nb < sizeof num &&
             !memchr(s + cb, '\0', ce - cb) && !memchr(s + nb, '\0', ne - nb);
    if (ok) {
        memcpy(num, s + nb, ne - nb);
        num[ne - nb] = '\0';
        errno = 0;
        thr = strtod(num, &end);
        ok = end != num && *end == '\0' && isfinite(thr) && errno == 0;
    }
    if (!ok)
        return perr(c, node->start_mark,
                    "expected a rule 'COLUMN OP NUMBER' (OP one of >= > == != <= <), "
                    "'COLUMN == \"TEXT\"' (or !=), or a map {column, op, threshold} or "
                    "{column, values: [TEXT, ...]}, got %s",
                    excerpt(s, len, ex, sizeof ex));
    if (ce - cb >= sizeof sc->label_column)
        return perr(c, node->start_mark, "label column name too long (%zu bytes; at most %zu)",
                    ce - cb, sizeof sc->label_column - 1);
    memset(sc->label_column, 0, sizeof sc->label_column);
    memcpy(sc->label_column, s + cb, ce - cb);
    sc->label_op = opv;
    sc->label_threshold = thr;
    return RD_OK;
}

static int parse_value(pctx *c, const ck_key *k, void *base, const yaml_node_t *node) {
    char *dst = (char *)base + k->off;
    char why[512];
    switch (k->type) {
        case CK_LABEL: {
            if (node->type == YAML_SCALAR_NODE && !is_null(node))
                return parse_label_rule(c, base, node);
            int rc = parse_struct(c, k->sub, dst, node);
            rd_schema_config *sc = base;
            if (rc != RD_OK || sc->n_label_values == 0 || node->type != YAML_MAPPING_NODE)
                return rc;
            // label.values: the op is == unless the map says != ; threshold has no meaning.
            int have_op = 0;
            ck_pairs ps;
            if ((rc = map_pairs(c, node, &ps)) != RD_OK)
                return rc;
            for (size_t i = 0; i < ps.n; i++) {
                const yaml_node_t *kn = ps.p[i].k;
                if (kn->type != YAML_SCALAR_NODE)
                    continue;
                const char *key = (const char *)kn->data.scalar.value;
                if (strcmp(key, "threshold") == 0)
                    return perr(c, kn->start_mark,
                                "label.threshold and label.values exclude each other (values: "
                                "the label is 1 when the column's text is one of them)");
                have_op |= strcmp(key, "op") == 0;
            }
            if (!have_op)
                sc->label_op = RD_LABEL_EQ;
            else if (sc->label_op != RD_LABEL_EQ && sc->label_op != RD_LABEL_NE)
                return perr(c, node->start_mark,
                            "label.values takes op \"==\" (one of them) or \"!=\" (none of "
                            "them), got \"%s\"",
                            label_ops[sc->label_op]);
            return RD_OK;
        }
        case CK_MAP:
            return parse_struct(c, k->sub, dst, node);
        case CK_MAP_LIST:
        case CK_INT_LIST:
        case CK_STR_LIST: {
            int *count = (int *)(void *)((char *)base + k->count_off);
            memset(dst, 0, k->size * (size_t)k->max_count);
            *count = 0;
            if (is_null(node))
                return RD_OK;
            if (node->type != YAML_SEQUENCE_NODE)
                return perr(c, node->start_mark, "expected %s, got %s", type_text(k->type),
                            node_text(node));
            const yaml_node_item_t *it = node->data.sequence.items.start;
            size_t n = (size_t)(node->data.sequence.items.top - it);
            for (size_t i = 0; i < n; i++) {
                const yaml_node_t *item = yaml_document_get_node(c->doc, it[i]);
                if (!item)
                    return perr(c, node->start_mark, "broken YAML document");
                if (i >= (size_t)k->max_count)
                    return perr(c, item->start_mark, "too many entries (%zu given; at most %d)", n,
                                k->max_count);
                size_t old = path_push(c, "[%zu]", i);
                char *elem = dst + i * k->size;
                int rc = RD_OK;
                if (k->type == CK_MAP_LIST) {
                    if (item->type != YAML_MAPPING_NODE) {
                        rc = perr(c, item->start_mark, "expected a map, got %s", node_text(item));
                    } else {
                        apply_defaults(k->sub, elem);
                        rc = parse_struct(c, k->sub, elem, item);
                    }
                } else if (item->type != YAML_SCALAR_NODE) {
                    rc = perr(c, item->start_mark, "expected %s, got %s",
                              k->type == CK_INT_LIST ? "an integer" : "a string", node_text(item));
                } else {
                    ck_type et = k->type == CK_INT_LIST ? CK_INT : CK_STR;
                    int tag = scalar_tag(c, item), tagged = tag == TAG_STR;
                    if (tag_fits(tag, et, why, sizeof why) ||
                        parse_scalar(k, et, (const char *)item->data.scalar.value,
                                     item->data.scalar.length, tagged ? 2 : is_quoted(item),
                                     (is_null(item) && !tagged) || tag == TAG_NULL, elem, why,
                                     sizeof why))
                        rc = perr(c, item->start_mark, "%s", why);
                }
                if (rc)
                    return rc;
                path_pop(c, old);
                *count = (int)i + 1;
            }
            return RD_OK;
        }
        default:
            if (node->type != YAML_SCALAR_NODE)
                return perr(c, node->start_mark, "expected %s, got %s", type_text(k->type),
                            node_text(node));
            int tag = scalar_tag(c, node), tagged = tag == TAG_STR;
            if (tag_fits(tag, k->type, why, sizeof why) ||
                parse_scalar(k, k->type, (const char *)node->data.scalar.value,
                             node->data.scalar.length, tagged ? 2 : is_quoted(node),
                             (is_null(node) && !tagged) || tag == TAG_NULL, dst, why, sizeof why))
                return perr(c, node->start_mark, "%s", why);
            return RD_OK;
    }
}

// Record that the config wrote key k of the struct at base (any value, null too: the key is
// there). No-op without a record (c->written NULL).
static int written_add(pctx *c, const void *base, const ck_key *k) {
    ck_written *w = c->written;
    if (!w)
        return RD_OK;
    if (w->n == w->cap) {
        size_t ncap = w->cap ? 2 * w->cap : 64;
        ck_written_key *nk = rd_realloc(w->keys, ncap * sizeof *nk);
        if (!nk)
            return rd_err_set(c->eb, RD_ERR_NOMEM, "%s: out of memory recording the keys written",
                              c->name);
        w->keys = nk;
        w->cap = ncap;
    }
    RD_ASSERT((const char *)base >= c->root);
    w->keys[w->n++] = (ck_written_key){(size_t)((const char *)base - c->root), k};
    return RD_OK;
}

// One key of a map parsed into the struct at base (parse_struct); seen: the 1-based line of each
// key's first occurrence.
static int parse_key(pctx *c,
                     const ck_struct *st,
                     void *base,
                     const yaml_node_t *kn,
                     const yaml_node_t *vn,
                     size_t *seen) {
    if (kn->type != YAML_SCALAR_NODE)
        return perr(c, kn->start_mark, "keys must be plain strings, got %s", node_text(kn));
    const char *ks = (const char *)kn->data.scalar.value;
    size_t kl = kn->data.scalar.length;
    size_t idx = st->n_keys;
    for (size_t i = 0; i < st->n_keys; i++) {
        if (strlen(st->keys[i].key) == kl && memcmp(st->keys[i].key, ks, kl) == 0) {
            idx = i;
            break;
        }
    }
    if (idx == st->n_keys)
        return unknown_key(c, st, kn);
    size_t old = path_push_key(c, st->keys[idx].key);
    if (seen[idx]) {
        int rc = perr(c, kn->start_mark, "duplicate key (first given at line %zu)", seen[idx]);
        path_pop(c, old);
        return rc;
    }
    seen[idx] = kn->start_mark.line + 1;
    int rc = written_add(c, base, &st->keys[idx]);
    if (rc == RD_OK)
        rc = parse_value(c, &st->keys[idx], base, vn);
    if (rc)
        return rc;
    path_pop(c, old);
    return RD_OK;
}

static int parse_struct(pctx *c, const ck_struct *st, void *base, const yaml_node_t *node) {
    RD_ASSERT(st->n_keys <= CK_MAX_KEYS);
    size_t seen[CK_MAX_KEYS] = {0}; // 1-based line of the key's first occurrence
    if (is_null(node)) {
        for (size_t i = 0; i < st->n_keys; i++)
            if (st->keys[i].flags & CK_REQUIRED)
                return perr(c, node->start_mark, "missing required key '%s'", st->keys[i].key);
        return RD_OK;
    }
    if (node->type != YAML_MAPPING_NODE)
        return perr(c, node->start_mark, "expected a map, got %s", node_text(node));
    ck_pairs ps;
    int rc = map_pairs(c, node, &ps);
    for (size_t i = 0; i < ps.n && rc == RD_OK; i++)
        rc = parse_key(c, st, base, ps.p[i].k, ps.p[i].v, seen);
    if (rc)
        return rc;
    for (size_t i = 0; i < st->n_keys; i++)
        if ((st->keys[i].flags & CK_REQUIRED) && !seen[i])
            return perr(c, node->start_mark, "missing required key '%s'", st->keys[i].key);
    return RD_OK;
}

// An override applied (--set): the argument as given and the key path it resolved to, in the
// validator's form ("models[0].seq.kind").
typedef struct ck_set {
    const char *arg;
    char path[256];
} ck_set;

// ---------------------------------------------------------------------------------------------
// Validation context: messages carry file:line:col when the YAML document is available.

typedef struct vctx {
    rd_errbuf *eb;
    const char *name;           // file name ("" = none)
    const yaml_document_t *doc; // NULL when validating a struct built in code
    const char *root;           // the rd_config that `written` describes (with written)
    const ck_written *written;  // the keys the config wrote; NULL when validating a struct
                                // built in code (nothing is known about what was written)
    const struct ck_set *sets;  // the overrides applied (messages under their paths name them)
    int n_sets;
} vctx;

// Find the node of a key path ("cluster.jobs[1].model") in the document; falls back to the
// deepest ancestor that exists.
static yaml_mark_t locate(const yaml_document_t *doc, const char *path) {
    yaml_document_t *d = (yaml_document_t *)(uintptr_t)doc; // libyaml's getters are not const
    yaml_node_t *node = yaml_document_get_root_node(d);
    yaml_mark_t mark = {0, 0, 0};
    if (!node)
        return mark;
    mark = node->start_mark;
    const char *p = path;
    while (*p) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            char *end = NULL;
            unsigned long idx = strtoul(p + 1, &end, 10);
            if (!end || *end != ']' || node->type != YAML_SEQUENCE_NODE)
                break;
            p = end + 1;
            yaml_node_item_t *it = node->data.sequence.items.start;
            if (idx >= (unsigned long)(node->data.sequence.items.top - it))
                break;
            node = yaml_document_get_node(d, it[idx]);
            if (!node)
                break;
            mark = node->start_mark;
            continue;
        }
        size_t kl = strcspn(p, ".[");
        if (node->type != YAML_MAPPING_NODE)
            break;
        // The map's own keys and those it merges (a key from a merged map is found at the
        // merged map, as a value reached through an alias is at the anchor).
        const yaml_node_t *next = NULL, *bad = NULL;
        const char *why = NULL;
        ck_pairs ps;
        ps.n = 0;
        if (pairs_collect(d, NULL, node, 0, 0, &ps, &bad, &why) == 0)
            for (size_t i = 0; i < ps.n && !next; i++)
                if (ps.p[i].k->type == YAML_SCALAR_NODE && ps.p[i].k->data.scalar.length == kl &&
                    memcmp(ps.p[i].k->data.scalar.value, p, kl) == 0)
                    next = ps.p[i].v;
        if (!next)
            break;
        node = (yaml_node_t *)(uintptr_t)next;
        mark = node->start_mark;
        p += kl;
    }
    return mark;
}

static int verr(const vctx *v, const char *path, const char *fmt, ...) RD_PRINTF(3, 4);
static int verr(const vctx *v, const char *path, const char *fmt, ...) {
    char msg[RD_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    // A key at or under an override's path took its value from the command line: the last such
    // override is named (a later one replaced what an earlier one set).
    for (int i = v->n_sets - 1; i >= 0; i--) {
        size_t n = strlen(v->sets[i].path);
        if (strncmp(path, v->sets[i].path, n) == 0 &&
            (path[n] == '\0' || path[n] == '.' || path[n] == '['))
            return rd_err_set(v->eb, RD_ERR_CONFIG, "--set %s: %s: %s", v->sets[i].arg, path, msg);
    }
    if (v->doc) {
        yaml_mark_t m = locate(v->doc, path);
        return rd_err_set(v->eb, RD_ERR_CONFIG, "%s:%zu:%zu: %s: %s", v->name, m.line + 1,
                          m.column + 1, path, msg);
    }
    if (v->name && v->name[0])
        return rd_err_set(v->eb, RD_ERR_CONFIG, "%s: %s: %s", v->name, path, msg);
    return rd_err_set(v->eb, RD_ERR_CONFIG, "%s: %s", path, msg);
}

// Range, enum and string checks of every field, driven by the tables.
static int
check_struct(const vctx *v, const ck_struct *st, const void *base, char *path, size_t cap) {
    size_t plen = strlen(path);
    char why[512];
    for (size_t i = 0; i < st->n_keys; i++) {
        const ck_key *k = &st->keys[i];
        const char *dst = (const char *)base + k->off;
        snprintf(path + plen, cap - plen, "%s%s", plen ? "." : "", k->key);
        int rc = RD_OK;
        switch (k->type) {
            case CK_MAP:
            case CK_LABEL:
                rc = check_struct(v, k->sub, dst, path, cap);
                break;
            case CK_MAP_LIST:
            case CK_INT_LIST:
            case CK_STR_LIST: {
                int n;
                memcpy(&n, (const char *)base + k->count_off, sizeof n);
                if (n < 0 || n > k->max_count) {
                    rc = verr(v, path, "entry count %d out of range [0, %d]", n, k->max_count);
                    break;
                }
                size_t l2 = strlen(path);
                for (int j = 0; j < n && rc == RD_OK; j++) {
                    snprintf(path + l2, cap - l2, "[%d]", j);
                    const char *elem = dst + (size_t)j * k->size;
                    if (k->type == CK_MAP_LIST)
                        rc = check_struct(v, k->sub, elem, path, cap);
                    else if (check_scalar(k, k->type == CK_INT_LIST ? CK_INT : CK_STR, elem, why,
                                          sizeof why))
                        rc = verr(v, path, "%s", why);
                }
                break;
            }
            default:
                if (check_scalar(k, k->type, dst, why, sizeof why))
                    rc = verr(v, path, "%s", why);
                break;
        }
        path[plen] = '\0';
        if (rc)
            return rc;
    }
    return RD_OK;
}

// Is field `k` of the struct at `base` at its table default? Lists are at their default when
// empty (no list has another), maps when every key of theirs is. With a NULL `path` it only
// answers; else, when it answers 0, path holds the key path of the first key that is not (below
// the path it held). For keys that a setting makes meaningless: a value other than the default
// was written by hand, and would do nothing.
static int at_default(const ck_key *k, const void *base, char *path, size_t cap) {
    const char *dst = (const char *)base + k->off;
    size_t plen = path ? strlen(path) : 0;
    if (path)
        snprintf(path + plen, cap - plen, "%s%s", plen ? "." : "", k->key);
    int same = 1;
    switch (k->type) {
        case CK_MAP:
        case CK_LABEL:
            for (size_t i = 0; i < k->sub->n_keys && same; i++)
                same = at_default(&k->sub->keys[i], dst, path, cap);
            if (!same)
                return 0; // the path names the sub-key
            break;
        case CK_MAP_LIST:
        case CK_INT_LIST:
        case CK_STR_LIST: {
            int n;
            memcpy(&n, (const char *)base + k->count_off, sizeof n);
            same = n == 0;
            break;
        }
        default: {
            // The largest scalar is a path (RD_PATH_MAX bytes); every number fits 8.
            union {
                char text[RD_PATH_MAX];
                double align;
            } def;
            memset(&def, 0, sizeof def);
            char why[256];
            if (k->def &&
                parse_scalar(k, k->type, k->def, strlen(k->def), 0, 0, &def, why, sizeof why) != 0)
                RD_ASSERT_MSG(0, "bad default '%s' for %s: %s", k->def, k->key, why);
            size_t n = k->type == CK_STR      ? k->size
                       : k->type == CK_INT64  ? sizeof(int64_t)
                       : k->type == CK_UINT64 ? sizeof(uint64_t)
                       : k->type == CK_DOUBLE ? sizeof(double)
                       : k->type == CK_FLOAT  ? sizeof(float)
                                              : sizeof(int);
            same = k->type == CK_STR ? strncmp(dst, def.text, n) == 0 : memcmp(dst, &def, n) == 0;
            break;
        }
    }
    if (path && same)
        path[plen] = '\0';
    return same;
}

// The key of table `st` named `key` (it must exist).
static const ck_key *key_of(const ck_struct *st, const char *key) {
    for (size_t i = 0; i < st->n_keys; i++)
        if (strcmp(st->keys[i].key, key) == 0)
            return &st->keys[i];
    RD_ASSERT_MSG(0, "no key '%s' in %s", key, st->name);
    return NULL;
}

// Whether the config wrote key `key` of table st in the struct at base (a part of the config
// being validated): 1 or 0, or -1 without a record of the written keys (a struct built in code).
static int was_written(const vctx *v, const void *base, const ck_struct *st, const char *key) {
    if (!v->written)
        return -1;
    const ck_key *k = key_of(st, key);
    RD_ASSERT((const char *)base >= v->root && (const char *)base < v->root + sizeof(rd_config));
    size_t off = (size_t)((const char *)base - v->root);
    for (size_t i = 0; i < v->written->n; i++)
        if (v->written->keys[i].k == k && v->written->keys[i].off == off)
            return 1;
    return 0;
}

// The keys of `keys` (NULL-ended) that the config wrote in the struct at base, as "a, b" in out
// (cap bytes; a list that does not fit ends in "..."). @return how many.
static int written_list(const vctx *v,
                        const void *base,
                        const ck_struct *st,
                        const char *const *keys,
                        char *out,
                        size_t cap) {
    int n = 0;
    size_t o = 0;
    out[0] = '\0';
    for (; *keys; keys++) {
        if (was_written(v, base, st, *keys) != 1)
            continue;
        int w = snprintf(out + o, cap - o, "%s%s", n ? ", " : "", *keys);
        if (w < 0 || (size_t)w >= cap - o) {
            snprintf(out + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
            o = cap - 1;
        } else {
            o += (size_t)w;
        }
        n++;
    }
    return n;
}

// ---------------------------------------------------------------------------------------------
// Derived defaults.

static int set_path(
    const vctx *v, char *dst, size_t cap, const char *dir, const char *leaf, const char *what) {
    int n = snprintf(dst, cap, "%s/%s", dir, leaf);
    if (n < 0 || (size_t)n >= cap) {
        memset(dst, 0, cap);
        return verr(v, what,
                    "derived path '%s/%s' is too long (at most %zu bytes); set it "
                    "explicitly or shorten run.out_dir",
                    dir, leaf, cap - 1);
    }
    return RD_OK;
}

static int resolve_impl(rd_config *cfg, const vctx *v) {
    int rc;
    if (cfg->run.out_dir[0] == '\0') {
        int n = snprintf(cfg->run.out_dir, sizeof cfg->run.out_dir, "runs/%s", cfg->run.name);
        if (n < 0 || (size_t)n >= sizeof cfg->run.out_dir)
            return verr(v, "run.out_dir", "derived path too long");
    }
    const char *out = cfg->run.out_dir;
    if (!cfg->data.dir[0] &&
        (rc = set_path(v, cfg->data.dir, sizeof cfg->data.dir, out, "data", "data.dir")))
        return rc;
    if (!cfg->ps.checkpoint_dir[0] &&
        (rc = set_path(v, cfg->ps.checkpoint_dir, sizeof cfg->ps.checkpoint_dir, out, "ckpt",
                       "ps.checkpoint_dir")))
        return rc;
    if (!cfg->tokens.store_dir[0] &&
        (rc = set_path(v, cfg->tokens.store_dir, sizeof cfg->tokens.store_dir, out, "tokens",
                       "tokens.store_dir")))
        return rc;
    if (!cfg->distill.target_log[0] &&
        (rc = set_path(v, cfg->distill.target_log, sizeof cfg->distill.target_log, out, "targets",
                       "distill.target_log")))
        return rc;
    if (!cfg->data.input[0]) {
        if (cfg->data.source == RD_DATA_MOVIELENS100K)
            snprintf(cfg->data.input, sizeof cfg->data.input, "../shared/data/movielens-100k");
        else if (cfg->data.source == RD_DATA_MOVIELENS1M)
            snprintf(cfg->data.input, sizeof cfg->data.input, "../shared/data/movielens-1m");
    }
    // A table's init_as names the table whose rows it draws (init stream and key salt); when
    // that table draws another's in turn, this one draws the same: the chain's root, written
    // here so that every reader of the salt (PS, model, serving bundle, table tools) agrees.
    // A cycle is left as written: validation refuses it.
    for (int i = 0; i < cfg->ps.n_tables && i < RD_MAX_TABLES; i++) {
        rd_table_config *t = &cfg->ps.tables[i];
        const rd_table_config *r = t;
        for (int k = 0;
             k <= cfg->ps.n_tables && r && r->init_as[0] && strcmp(r->init_as, r->name) != 0; k++)
            r = rd_config_find_table(cfg, r->init_as);
        if (r && r != t && (!r->init_as[0] || strcmp(r->init_as, r->name) == 0))
            snprintf(t->init_as, sizeof t->init_as, "%s", r->name);
    }
    rd_schema_config *sc = &cfg->data.schema;
    for (int i = 0; i < sc->n_fields && i < RD_MAX_FIELDS; i++)
        if (!sc->fields[i].column[0]) {
            // A copy, not snprintf: gcc -O0 with sanitizers reads the two members of one struct
            // as overlapping (-Wrestrict). The name is shorter than a column (RD_NAME_MAX).
            rd_field_config *fc = &sc->fields[i];
            size_t n = strnlen(fc->name, sizeof fc->name);
            if (n >= sizeof fc->column)
                n = sizeof fc->column - 1;
            memcpy(fc->column, fc->name, n);
            fc->column[n] = '\0';
        }
    // A distilled student without `teacher:` joins the first teacher job.
    const char *first_teacher = NULL;
    for (int i = 0; i < cfg->cluster.n_jobs && i < RD_MAX_JOBS; i++)
        if (cfg->cluster.jobs[i].role == RD_JOB_TEACHER && !first_teacher)
            first_teacher = cfg->cluster.jobs[i].name;
    for (int i = 0; i < cfg->cluster.n_jobs && i < RD_MAX_JOBS; i++) {
        rd_job_config *j = &cfg->cluster.jobs[i];
        if (j->role == RD_JOB_STUDENT && j->distill && !j->teacher[0] && first_teacher)
            memcpy(j->teacher, first_teacher, sizeof j->teacher);
    }
    // A sequence branch without `table:` embeds history items with the table of feature "item".
    for (int m = 0; m < cfg->n_models && m < RD_MAX_MODELS; m++) {
        rd_model_config *mc = &cfg->models[m];
        if (mc->seq.kind == RD_SEQ_NONE || mc->seq.table[0])
            continue;
        for (int f = 0; f < mc->n_features && f < RD_MAX_FEATURES; f++) {
            if (strcmp(mc->features[f].field, "item") == 0) {
                memcpy(mc->seq.table, mc->features[f].table, sizeof mc->seq.table);
                break;
            }
        }
    }
    return RD_OK;
}

// Does the path after a prefix ("/rest") step out of it through a ".." component?
static int climbs_out(const char *rest) {
    for (const char *p = rest; (p = strstr(p, "..")) != NULL; p += 2)
        if ((p == rest || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
            return 1;
    return 0;
}

int rd_config_move_out_dir(rd_config *cfg, const char *dir, rd_errbuf *eb) {
    if (strlen(dir) >= sizeof cfg->run.out_dir)
        return rd_err_set(eb, RD_ERR_ARG, "path too long (at most %zu bytes)",
                          sizeof cfg->run.out_dir - 1);
    for (const unsigned char *c = (const unsigned char *)dir; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return rd_err_set(eb, RD_ERR_ARG, "path contains a control character (byte 0x%02x)",
                              *c);
    char old[RD_PATH_MAX];
    snprintf(old, sizeof old, "%s", cfg->run.out_dir);
    char *paths[] = {cfg->data.dir, cfg->ps.checkpoint_dir, cfg->tokens.store_dir,
                     cfg->distill.target_log};
    const char *keys[] = {"data.dir", "ps.checkpoint_dir", "tokens.store_dir",
                          "distill.target_log"};
    size_t ol = strlen(old);
    // A path under the old folder moves with it, keeping its own name under it (a
    // checkpoint_dir "<old>/checkpoints" became "<new>/ckpt", the default's name); one that
    // climbs out of it through ".." stays where it points.
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        if (strncmp(paths[k], old, ol) != 0 || paths[k][ol] != '/' || climbs_out(paths[k] + ol))
            continue;
        char moved[RD_PATH_MAX * 2];
        int n = snprintf(moved, sizeof moved, "%s%s", dir, paths[k] + ol);
        if (n < 0 || (size_t)n >= RD_PATH_MAX)
            return rd_err_set(eb, RD_ERR_ARG,
                              "%s moves with the run folder to '%s', %d bytes: longer than the "
                              "limit of %d bytes",
                              keys[k], moved, n, RD_PATH_MAX - 1);
        memcpy(paths[k], moved, (size_t)n + 1);
    }
    snprintf(cfg->run.out_dir, sizeof cfg->run.out_dir, "%s", dir);
    int rc = rd_config_resolve(cfg, eb);
    // The paths derived from the new folder must fit their limits too (checkpoint folders with
    // the job names, the dataset's temporary folder), before anything is made.
    return rc == RD_OK ? rd_config_validate(cfg, eb) : rc;
}

int rd_config_resolve(rd_config *cfg, rd_errbuf *eb) {
    vctx v = {eb, "", NULL, NULL, NULL, NULL, 0};
    rd_errbuf_clear(eb);
    return resolve_impl(cfg, &v);
}

// ---------------------------------------------------------------------------------------------
// Cross-field checks.

// Names that end up in paths and logs: letters, digits, '_', '-', '.', not starting with '.'.
// Each is a path component (runs/<run.name>, <out>/ckpt/<job>, a table's files), where "." and
// ".." would name the folder itself or its parent, and ".x" a hidden file.
// @return 0 ok, 1 bad character (or empty), 2 a leading '.'.
static int bad_name(const char *s) {
    if (!s[0])
        return 1;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return 1;
    return s[0] == '.' ? 2 : 0;
}

// Is s one of the n names of a list of fixed-size names (names, columns)?
static int in_names(const char *list, size_t stride, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (strcmp(list + (size_t)i * stride, s) == 0)
            return 1;
    return 0;
}
#define IN_LIST(list, n, s) in_names(&(list)[0][0], sizeof(list)[0], (n), (s))

static int check_name(const vctx *v, const char *path, const char *s) {
    int bad = bad_name(s);
    if (bad == 2)
        return verr(v, path,
                    "invalid name '%s': a name must not start with '.' (it is a path component; "
                    "'.' and '..' would put files outside their folder)",
                    s);
    if (bad)
        return verr(v, path, "invalid name '%s' (use letters, digits, '_', '-', '.')", s);
    return RD_OK;
}

static int check_csv_schema(const rd_config *cfg, const vctx *v) {
    const rd_schema_config *sc = &cfg->data.schema;
    char p[128];
    if (!sc->path[0])
        return verr(v, "data.schema.path", "a csv source needs the path of the interaction log");
    if (!sc->delimiter[0])
        return verr(v, "data.schema.delimiter", "must not be empty");
    if (!sc->header && sc->n_columns == 0)
        return verr(v, "data.schema.columns",
                    "a file without a header line (header: false) needs the list of columns");
    for (int i = 0; i < sc->n_columns; i++) {
        snprintf(p, sizeof p, "data.schema.columns[%d]", i);
        if (!sc->columns[i][0])
            return verr(v, p, "column name must not be empty");
        if (IN_LIST(sc->columns, i, sc->columns[i]))
            return verr(v, p, "duplicate column '%s'", sc->columns[i]);
    }
    static const char *const req_keys[] = {"user_column", "item_column", "time_column",
                                           "label.column"};
    const char *req_vals[] = {sc->user_column, sc->item_column, sc->time_column, sc->label_column};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "data.schema.%s", req_keys[i]);
        if (!req_vals[i][0])
            return verr(v, p, "required for a csv source");
        if (!sc->header && !IN_LIST(sc->columns, sc->n_columns, req_vals[i]))
            return verr(v, p, "column '%s' is not in data.schema.columns", req_vals[i]);
        // The ids and the time come from three columns: one column as two of them would make
        // every event of one user, one item or one instant (the label may read any column).
        for (int j = 0; j < i && i < 3; j++)
            if (strcmp(req_vals[i], req_vals[j]) == 0)
                return verr(v, p, "column '%s' is the %s too", req_vals[i], req_keys[j]);
    }
    if (sc->n_label_values > 0 && sc->label_op != RD_LABEL_EQ && sc->label_op != RD_LABEL_NE)
        return verr(v, "data.schema.label.op", "label.values takes == or !=, not %s",
                    label_ops[sc->label_op >= 0 && sc->label_op <= 5 ? sc->label_op : 0]);
    for (int i = 0; i < sc->n_label_values; i++) {
        snprintf(p, sizeof p, "data.schema.label.values[%d]", i);
        if (IN_LIST(sc->label_values, i, sc->label_values[i]))
            return verr(v, p, "duplicate value '%s'", sc->label_values[i]);
    }
    for (int s = 0; s < sc->n_side; s++) {
        const rd_side_config *sd = &sc->side[s];
        snprintf(p, sizeof p, "data.schema.side[%d].name", s);
        for (int t = 0; t < s; t++)
            if (strcmp(sc->side[t].name, sd->name) == 0)
                return verr(v, p, "duplicate side table '%s'", sd->name);
        snprintf(p, sizeof p, "data.schema.side[%d].delimiter", s);
        if (!sd->delimiter[0])
            return verr(v, p, "must not be empty");
        if (!sd->header) {
            snprintf(p, sizeof p, "data.schema.side[%d].columns", s);
            if (sd->n_columns == 0)
                return verr(v, p, "a side file without a header line needs the list of columns");
            snprintf(p, sizeof p, "data.schema.side[%d].key_column", s);
            if (!IN_LIST(sd->columns, sd->n_columns, sd->key_column))
                return verr(v, p, "column '%s' is not in data.schema.side[%d].columns",
                            sd->key_column, s);
        }
        snprintf(p, sizeof p, "data.schema.side[%d].join_column", s);
        if (!sc->header && !IN_LIST(sc->columns, sc->n_columns, sd->join_column))
            return verr(v, p, "column '%s' is not in data.schema.columns", sd->join_column);
    }
    for (int f = 0; f < sc->n_fields; f++) {
        const rd_field_config *fc = &sc->fields[f];
        snprintf(p, sizeof p, "data.schema.fields[%d].name", f);
        // A field's name keys its vocabulary in the dataset's meta.yaml (written unquoted) and is
        // what models name: the rule of the other names.
        int rc = check_name(v, p, fc->name);
        if (rc != RD_OK)
            return rc;
        if (strcmp(fc->name, "user") == 0 || strcmp(fc->name, "item") == 0)
            return verr(v, p, "'%s' is reserved for the id features", fc->name);
        for (int g = 0; g < f; g++)
            if (strcmp(sc->fields[g].name, fc->name) == 0)
                return verr(v, p, "duplicate field name '%s'", fc->name);
        if (fc->standardize && fc->kind != RD_FIELD_NUMERIC) {
            snprintf(p, sizeof p, "data.schema.fields[%d].standardize", f);
            return verr(v, p, "only numeric fields are standardized ('%s' is %s)", fc->name,
                        fc->kind == RD_FIELD_FEEDBACK ? "a feedback field"
                        : fc->kind == RD_FIELD_MULTI  ? "multi-valued"
                                                      : "categorical");
        }
        if (fc->missing != RD_MISSING_ERROR && !rd_field_is_float(fc->kind)) {
            snprintf(p, sizeof p, "data.schema.fields[%d].missing", f);
            return verr(v, p,
                        "only numeric and feedback fields take a fill ('%s' is %s: an empty "
                        "value there is already a missing value, no key)",
                        fc->name, fc->kind == RD_FIELD_MULTI ? "multi-valued" : "categorical");
        }
        // The dataset builder applies log1p to float values only and reads flag columns only for
        // key fields: a categorical field's log1p did nothing, and a numeric or feedback field
        // with flags: true was laid out among the key fields, so that prepare wrote a dataset
        // whose feedback values were not the last floats and train stopped on it.
        if (fc->log1p && !rd_field_is_float(fc->kind)) {
            snprintf(p, sizeof p, "data.schema.fields[%d].log1p", f);
            return verr(v, p, "only numeric and feedback values take log1p ('%s' is %s)", fc->name,
                        fc->kind == RD_FIELD_MULTI ? "multi-valued" : "categorical");
        }
        if (fc->flags && rd_field_is_float(fc->kind)) {
            snprintf(p, sizeof p, "data.schema.fields[%d].flags", f);
            return verr(v, p,
                        "flag columns are keys of a categorical field ('%s' is %s: one "
                        "number per event)",
                        fc->name, fc->kind == RD_FIELD_FEEDBACK ? "a feedback field" : "numeric");
        }
        if (fc->kind == RD_FIELD_MULTI && !fc->sep[0]) {
            snprintf(p, sizeof p, "data.schema.fields[%d].sep", f);
            return verr(v, p, "a multi-valued field needs a separator");
        }
        // sep splits the values of a multi field read from one column, and max_len bounds a
        // multi field's values or counts a field's flag columns (common/schema.c plan_fields):
        // elsewhere neither is read. A categorical field with `sep: ","` kept "rock,pop" as one
        // key, where kind: multi was meant.
        char at[256] = "";
        snprintf(at, sizeof at, "data.schema.fields[%d]", f);
        int split = fc->kind == RD_FIELD_MULTI && !fc->flags;
        int width = fc->kind == RD_FIELD_MULTI || (fc->kind == RD_FIELD_CATEGORICAL && fc->flags);
        if (!split && !at_default(key_of(&field_desc, "sep"), fc, at, sizeof at))
            return verr(v, at,
                        "set, but field '%s' is %s%s: only a multi field's values are split "
                        "(kind: multi)",
                        fc->name, field_kinds[fc->kind], fc->flags ? " with flag columns" : "");
        if (!width && !at_default(key_of(&field_desc, "max_len"), fc, at, sizeof at))
            return verr(v, at,
                        "set, but field '%s' is %s: max_len bounds a multi field's values or "
                        "counts flag columns (flags: true)",
                        fc->name, field_kinds[fc->kind]);
        snprintf(p, sizeof p, "data.schema.fields[%d].column", f);
        if (!fc->column[0])
            return verr(v, p, "must not be empty");
        // The label of an event as an input of that same event hands the model its answer (AUC
        // 1). A feedback field reads the column over earlier events only (seq.stats_feedback).
        if (!fc->side[0] && fc->kind != RD_FIELD_FEEDBACK &&
            strcmp(fc->column, sc->label_column) == 0)
            return verr(v, p,
                        "field '%s' reads '%s', the label column: a field cannot read its own "
                        "event's label (use kind: feedback to read it over earlier events)",
                        fc->name, fc->column);
        if (fc->side[0]) {
            const rd_side_config *sd = NULL;
            for (int s = 0; s < sc->n_side; s++)
                if (strcmp(sc->side[s].name, fc->side) == 0)
                    sd = &sc->side[s];
            if (!sd) {
                snprintf(p, sizeof p, "data.schema.fields[%d].side", f);
                return verr(v, p, "no side table named '%s' in data.schema.side", fc->side);
            }
            if (!sd->header && !IN_LIST(sd->columns, sd->n_columns, fc->column))
                return verr(v, p, "column '%s' is not in the columns of side table '%s'",
                            fc->column, sd->name);
            // A log row without a side row gets this field's fill: there must be one.
            if (sd->missing == RD_SIDE_MISSING_EMPTY && rd_field_is_float(fc->kind) &&
                fc->missing == RD_MISSING_ERROR) {
                snprintf(p, sizeof p, "data.schema.fields[%d].missing", f);
                return verr(v, p,
                            "numeric field '%s' of side table '%s' (missing: empty) needs a fill "
                            "for the rows without a side row: zero or mean",
                            fc->name, sd->name);
            }
        } else if (!sc->header && !IN_LIST(sc->columns, sc->n_columns, fc->column)) {
            return verr(v, p, "column '%s' is not in data.schema.columns", fc->column);
        }
    }
    return RD_OK;
}

// `name` (at config path p) must be a feedback field of the data source.
static int
check_feedback_name(const rd_config *cfg, const vctx *v, const char *p, const char *name) {
    if (cfg->data.source == RD_DATA_SYNTHETIC) {
        if (!cfg->data.synthetic.feedback)
            return verr(v, p,
                        "the synthetic source has a feedback field ('engagement') only with "
                        "data.synthetic.feedback: 1");
        if (strcmp(name, "engagement") != 0)
            return verr(v, p, "'%s': the synthetic source's feedback field is 'engagement'", name);
        return 0;
    }
    if ((cfg->data.source == RD_DATA_MOVIELENS100K || cfg->data.source == RD_DATA_MOVIELENS1M) &&
        strcmp(name, "rating") != 0)
        return verr(v, p, "'%s': the MovieLens presets' feedback field is 'rating'", name);
    if (cfg->data.source == RD_DATA_CSV) {
        const rd_schema_config *sc = &cfg->data.schema;
        for (int s = 0; s < sc->n_fields; s++)
            if (strcmp(sc->fields[s].name, name) == 0)
                return sc->fields[s].kind == RD_FIELD_FEEDBACK
                           ? 0
                           : verr(v, p, "field '%s' is not of kind feedback", name);
        return verr(v, p, "no field named '%s' in data.schema.fields", name);
    }
    return 0;
}

// The fields a prepared dataset will have besides user, item, hour and weekday, as the dataset
// builders lay them out: the synthetic generator (common/synth.c, rd__prepare_synthetic), the
// MovieLens presets (rd_schema_preset) and data.schema.fields for csv. The trainer resolves a
// model's features against them (worker/trainer.c, resolve_features); checking here makes
// `recdistill config` refuse what train would refuse only after preparing the dataset.
typedef struct src_fields {
    int n;
    char name[RD_MAX_FIELDS][RD_NAME_MAX];
    int kind[RD_MAX_FIELDS];  // rd_field_kind
    int multi[RD_MAX_FIELDS]; // several values per event: a multi field, or flag columns
    int n_inputs;             // numeric fields: dense inputs of every model
} src_fields;

static void src_add(src_fields *sf, const char *name, int kind, int flags) {
    if (sf->n >= RD_MAX_FIELDS)
        return;
    snprintf(sf->name[sf->n], RD_NAME_MAX, "%s", name);
    sf->multi[sf->n] = kind == RD_FIELD_MULTI || (kind == RD_FIELD_CATEGORICAL && flags);
    sf->kind[sf->n++] = kind;
    sf->n_inputs += kind == RD_FIELD_NUMERIC;
}

static void source_fields(const rd_config *cfg, src_fields *sf) {
    memset(sf, 0, sizeof *sf);
    const rd_schema_config *sc = &cfg->data.schema;
    rd_schema_config preset;
    if (cfg->data.source == RD_DATA_SYNTHETIC) {
        src_add(sf, "topic", RD_FIELD_CATEGORICAL, 0);
        src_add(sf, "series", RD_FIELD_CATEGORICAL, 0);
        if (cfg->data.synthetic.contexts > 0)
            src_add(sf, "ctx", RD_FIELD_CATEGORICAL, 0);
        if (cfg->data.synthetic.feedback)
            src_add(sf, "engagement", RD_FIELD_FEEDBACK, 0);
        return;
    }
    if (cfg->data.source == RD_DATA_MOVIELENS100K || cfg->data.source == RD_DATA_MOVIELENS1M) {
        rd_errbuf eb;
        if (rd_schema_preset(cfg->data.source, &preset, &eb) != RD_OK)
            return;
        sc = &preset;
    }
    for (int f = 0; f < sc->n_fields && f < RD_MAX_FIELDS; f++)
        src_add(sf, sc->fields[f].name, sc->fields[f].kind, sc->fields[f].flags);
}

// Field `name` of a model feature (at config path p) must exist and be embeddable.
static int check_feature_field(
    const rd_config *cfg, const src_fields *sf, const vctx *v, const char *p, const char *name) {
    if (strcmp(name, "user") == 0 || strcmp(name, "item") == 0)
        return RD_OK;
    // A dataset field shadows hour/weekday, as in the trainer.
    for (int s = 0; s < sf->n; s++) {
        if (strcmp(sf->name[s], name) != 0)
            continue;
        if (sf->kind[s] == RD_FIELD_FEEDBACK)
            return verr(v, p,
                        "field '%s' is feedback (known only after the event): it cannot be a "
                        "feature; read it through seq.stats_feedback",
                        name);
        if (sf->kind[s] == RD_FIELD_NUMERIC)
            return verr(v, p,
                        "field '%s' is numeric: numeric fields enter every model directly as "
                        "dense inputs, do not embed them",
                        name);
        return RD_OK;
    }
    if (strcmp(name, "hour") == 0 || strcmp(name, "weekday") == 0)
        return RD_OK;
    char have[512];
    size_t len = (size_t)snprintf(have, sizeof have, "user, item, hour, weekday");
    for (int s = 0; s < sf->n && len < sizeof have; s++)
        if (sf->kind[s] != RD_FIELD_FEEDBACK && sf->kind[s] != RD_FIELD_NUMERIC)
            len += (size_t)snprintf(have + len, sizeof have - len, ", %s", sf->name[s]);
    switch (cfg->data.source) {
        case RD_DATA_CSV:
            return verr(v, p,
                        "no field named '%s' in data.schema.fields (or user, item, hour, "
                        "weekday)",
                        name);
        case RD_DATA_SYNTHETIC:
            if (strcmp(name, "ctx") == 0 && cfg->data.synthetic.contexts <= 0)
                return verr(v, p,
                            "the synthetic source has no field 'ctx' (data.synthetic.contexts is "
                            "0; have: %s)",
                            have);
            if (strcmp(name, "engagement") == 0 && !cfg->data.synthetic.feedback)
                return verr(v, p,
                            "the synthetic source has no field 'engagement' (data.synthetic."
                            "feedback is 0; with 1 it is feedback, never a feature; have: %s)",
                            have);
            return verr(v, p, "the synthetic source has no field '%s' (have: %s)", name, have);
        default:
            return verr(v, p, "the MovieLens preset has no field '%s' (have: %s)", name, have);
    }
}

// A search or grouping key of the item (tokens.search_by, tokens.sit_group_by) at path p: an
// embeddable field with one value per event (the dataset check, rd_dataset_item_attr, also
// refuses one that varies within an item, which only the data shows).
static int check_item_key_field(
    const rd_config *cfg, const src_fields *sf, const vctx *v, const char *p, const char *name) {
    int rc = check_feature_field(cfg, sf, v, p, name);
    if (rc)
        return rc;
    for (int s = 0; s < sf->n; s++)
        if (strcmp(sf->name[s], name) == 0 && sf->multi[s])
            return verr(v, p,
                        "field '%s' holds several values per event (%s): a key of the item "
                        "needs one",
                        name, sf->kind[s] == RD_FIELD_MULTI ? "kind multi" : "flag columns");
    return RD_OK;
}

// ---- Branch settings written without the branch's switch.
//
// A history branch is on by models[].seq.kind and a token branch by models[].tokens.scheme; both
// default to off (none, 0). Settings of a branch written while its switch was never written are
// a forgotten switch: `seq: {length: 64, layers: 2}` without a kind trained no history branch,
// and `tokens: {length: 64}` without a scheme no token branch, and nothing said so. A switch
// written to its off value keeps its settings: that is how ablations switch a branch off
// (`tools/variant.sh ... seq.kind=none`, docs/distillation.md; `models.teacher.tokens.scheme=0`,
// docs/iat.md), and how a printed config (every key written) reads. An earlier check went by
// values (a setting away from its default while the switch is off) and refused those ablations
// too (docs/reliability.md, "Taken back after review"). The seq.stats keys are not settings of
// the branch: they work without one. Without a record of the written keys (a struct built in
// code, rd_config_validate) nothing is known, and these checks pass.
static const char *const seq_settings[] = {"length",      "table", "layers",      "heads",
                                           "dim",         "view",  "view_length", "view_by_label",
                                           "with_labels", NULL};
static const char *const token_settings[] = {"length",    "kind",  "layers",    "heads",  "adapter",
                                             "gate",      "stats", "same_time", "search", "norm",
                                             "search_by", "query", "label",     NULL};

static int check_forgotten_switches(const rd_model_config *mc, int m, const vctx *v) {
    char p[128], given[256];
    if (!v->written)
        return RD_OK;
    if (was_written(v, &mc->seq, &seq_desc, "kind") == 0 &&
        written_list(v, &mc->seq, &seq_desc, seq_settings, given, sizeof given) > 0) {
        snprintf(p, sizeof p, "models[%d].seq", m);
        return verr(v, p,
                    "%s given, but seq.kind is not set (its default is none: model '%s' would "
                    "train no history branch): set seq.kind (mean | din | transformer), or "
                    "seq.kind: none to keep the branch off",
                    given, mc->name);
    }
    // The view is the history branch's own switch (default none), view_length its setting.
    if (was_written(v, &mc->seq, &seq_desc, "view") == 0 &&
        was_written(v, &mc->seq, &seq_desc, "view_length") == 1) {
        snprintf(p, sizeof p, "models[%d].seq.view_length", m);
        return verr(v, p,
                    "%d given, but seq.view is not set (its default is none: model '%s' reads "
                    "no second view of its history): set seq.view (mean | din), or seq.view: "
                    "none to keep the view off",
                    mc->seq.view_length, mc->name);
    }
    if (was_written(v, &mc->tokens, &token_use_desc, "scheme") == 0 &&
        written_list(v, &mc->tokens, &token_use_desc, token_settings, given, sizeof given) > 0) {
        snprintf(p, sizeof p, "models[%d].tokens", m);
        return verr(v, p,
                    "%s given, but tokens.scheme is not set (its default is 0: model '%s' would "
                    "read no instance tokens): set tokens.scheme (1 temporal | 2 user, as the "
                    "top-level tokens.scheme), or tokens.scheme: 0 to keep the branch off",
                    given, mc->name);
    }
    return RD_OK;
}

// 1 if some job's model writes its tokens.scheme (any value: 0 switches its token branch off on
// purpose), 0 if none does, -1 without a record of the written keys.
static int job_writes_token_scheme(const rd_config *cfg, const vctx *v) {
    if (!v->written)
        return -1;
    for (int j = 0; j < cfg->cluster.n_jobs; j++) {
        const rd_model_config *mc = rd_config_find_model(cfg, cfg->cluster.jobs[j].model);
        if (mc && was_written(v, &mc->tokens, &token_use_desc, "scheme") == 1)
            return 1;
    }
    return 0;
}

static int check_models(const rd_config *cfg, const vctx *v) {
    char p[128];
    src_fields sf;
    source_fields(cfg, &sf);
    for (int m = 0; m < cfg->n_models; m++) {
        const rd_model_config *mc = &cfg->models[m];
        int rc;
        snprintf(p, sizeof p, "models[%d].name", m);
        if ((rc = check_name(v, p, mc->name)))
            return rc;
        for (int o = 0; o < m; o++)
            if (strcmp(cfg->models[o].name, mc->name) == 0)
                return verr(v, p, "duplicate model name '%s'", mc->name);
        for (int f = 0; f < mc->n_features; f++) {
            const rd_feature_use *fu = &mc->features[f];
            snprintf(p, sizeof p, "models[%d].features[%d].table", m, f);
            if (!rd_config_find_table(cfg, fu->table))
                return verr(v, p, "no table named '%s' in ps.tables", fu->table);
            snprintf(p, sizeof p, "models[%d].features[%d].field", m, f);
            for (int g = 0; g < f; g++)
                if (strcmp(mc->features[g].field, fu->field) == 0)
                    return verr(v, p, "field '%s' is embedded twice", fu->field);
            if ((rc = check_feature_field(cfg, &sf, v, p, fu->field)))
                return rc;
        }
        if (mc->dropout > 0.0f && mc->n_mlp == 0) {
            snprintf(p, sizeof p, "models[%d].dropout", m);
            return verr(v, p, "%g needs an mlp (it drops the backbone MLP's outputs)",
                        (double)mc->dropout);
        }
        const rd_seq_config *sq = &mc->seq;
        for (int k = 0; k < sq->n_stats; k++) {
            snprintf(p, sizeof p, "models[%d].seq.stats[%d]", m, k);
            if (sq->stats[k] > cfg->data.history_max)
                return verr(v, p, "%d exceeds data.history_max (%d)", sq->stats[k],
                            cfg->data.history_max);
            if (k > 0 && sq->stats[k] <= sq->stats[k - 1])
                return verr(v, p, "%d: the windows must be ascending and distinct", sq->stats[k]);
        }
        if (sq->stats_residual && !sq->stats_feedback[0]) {
            snprintf(p, sizeof p, "models[%d].seq.stats_residual", m);
            return verr(v, p, "needs seq.stats_feedback (the value whose residual it averages)");
        }
        if (sq->stats_feedback[0]) {
            snprintf(p, sizeof p, "models[%d].seq.stats_feedback", m);
            if (!sq->n_stats)
                return verr(v, p, "needs seq.stats (the windows it is averaged over)");
            if ((rc = check_feedback_name(cfg, v, p, sq->stats_feedback)))
                return rc;
        }
        // Target attention and the transformer's request-built query read the request's
        // embedded features: a model without any cannot build one (the model refused it only
        // when its job's ranks were set up, after the launch had started).
        if (mc->n_features == 0) {
            const char *which = NULL, *kind = NULL;
            if (sq->kind == RD_SEQ_DIN || sq->kind == RD_SEQ_TRANSFORMER)
                which = "seq.kind", kind = sq->kind == RD_SEQ_DIN ? "din" : "transformer";
            else if (sq->kind != RD_SEQ_NONE && sq->view == RD_SEQ_DIN)
                which = "seq.view", kind = "din";
            else if (mc->tokens.scheme > 0 &&
                     (mc->tokens.kind == RD_SEQ_DIN || mc->tokens.kind == RD_SEQ_TRANSFORMER))
                which = "tokens.kind", kind = mc->tokens.kind == RD_SEQ_DIN ? "din" : "transformer";
            if (which) {
                snprintf(p, sizeof p, "models[%d].%s", m, which);
                return verr(v, p,
                            "%s needs a query from the request, but model '%s' embeds no feature "
                            "(features is empty): embed one (e.g. {field: item, table: ...}), "
                            "or use mean",
                            kind, mc->name);
            }
        }
        if (sq->kind == RD_SEQ_NONE && sq->view != RD_SEQ_NONE) {
            snprintf(p, sizeof p, "models[%d].seq.view", m);
            return verr(v, p,
                        "a second view of the history needs a history branch (seq.kind is "
                        "none)");
        }
        if (sq->kind != RD_SEQ_NONE) {
            snprintf(p, sizeof p, "models[%d].seq.table", m);
            if (!sq->table[0])
                return verr(v, p,
                            "not set, and the model embeds no 'item' feature to take the "
                            "table from");
            const rd_table_config *t = rd_config_find_table(cfg, sq->table);
            if (!t)
                return verr(v, p, "no table named '%s' in ps.tables", sq->table);
            snprintf(p, sizeof p, "models[%d].seq.length", m);
            if (sq->length > cfg->data.history_max)
                return verr(v, p, "%d exceeds data.history_max (%d)", sq->length,
                            cfg->data.history_max);
            if (sq->view != RD_SEQ_NONE) {
                snprintf(p, sizeof p, "models[%d].seq.view", m);
                if (sq->view != RD_SEQ_MEAN && sq->view != RD_SEQ_DIN)
                    return verr(v, p, "a view is mean or din (transformer: use seq.kind)");
                snprintf(p, sizeof p, "models[%d].seq.view_length", m);
                if (sq->view_length < 1)
                    return verr(v, p, "%d: a view reads at least 1 event", sq->view_length);
                if (sq->view_length > sq->length)
                    return verr(v, p, "%d exceeds seq.length (%d)", sq->view_length, sq->length);
                snprintf(p, sizeof p, "models[%d].seq.view_by_label", m);
                if (sq->view_by_label && !sq->with_labels)
                    return verr(v, p, "needs seq.with_labels (the batch carries no labels)");
            } else if (sq->view_by_label) {
                snprintf(p, sizeof p, "models[%d].seq.view_by_label", m);
                return verr(v, p, "needs seq.view mean or din (it shapes that view)");
            }
            int width = sq->dim ? sq->dim : t->dim;
            if (sq->kind == RD_SEQ_TRANSFORMER && width % sq->heads != 0) {
                snprintf(p, sizeof p, "models[%d].seq.heads", m);
                return verr(v, p, "%d heads do not divide the branch width %d", sq->heads, width);
            }
        }
        const rd_token_use *tu = &mc->tokens;
        if (tu->scheme > 0 && tu->kind == RD_SEQ_TRANSFORMER && tu->adapter % tu->heads != 0) {
            snprintf(p, sizeof p, "models[%d].tokens.heads", m);
            return verr(v, p, "%d heads do not divide the branch width %d (tokens.adapter)",
                        tu->heads, tu->adapter);
        }
        for (int k = 0; k < tu->n_stats; k++) {
            snprintf(p, sizeof p, "models[%d].tokens.stats[%d]", m, k);
            if (tu->scheme == 0)
                return verr(v, p, "needs tokens.scheme (the model reads no tokens)");
            if (tu->stats[k] > tu->length)
                return verr(v, p, "%d exceeds tokens.length (%d)", tu->stats[k], tu->length);
            if (k > 0 && tu->stats[k] <= tu->stats[k - 1])
                return verr(v, p, "%d: the windows must be ascending and distinct", tu->stats[k]);
        }
        if (tu->search > 0) {
            snprintf(p, sizeof p, "models[%d].tokens.search", m);
            if (tu->scheme == 0)
                return verr(v, p, "needs tokens.scheme (the model reads no tokens)");
            if (tu->search < tu->length)
                return verr(v, p,
                            "%d is below tokens.length (%d): the search keeps at most length "
                            "of the tokens it searches",
                            tu->search, tu->length);
        }
        if (!rd_field_is_item(tu->search_by)) {
            snprintf(p, sizeof p, "models[%d].tokens.search_by", m);
            if (tu->search == 0)
                return verr(v, p, "needs tokens.search (the search it keys)");
            if (strcmp(tu->search_by, "user") == 0)
                return verr(v, p,
                            "'user' is not an attribute of the item: every token of the "
                            "user would match; leave tokens.search off instead");
            if ((rc = check_item_key_field(cfg, &sf, v, p, tu->search_by)))
                return rc;
        }
        if (tu->scheme > 0) {
            snprintf(p, sizeof p, "models[%d].tokens.kind", m);
            if (tu->kind == RD_SEQ_NONE)
                return verr(v, p, "a model that reads tokens needs a branch kind other than none");
            snprintf(p, sizeof p, "models[%d].tokens.scheme", m);
            if (tu->scheme != cfg->tokens.scheme)
                return verr(v, p, "reads scheme %d tokens but tokens.scheme builds scheme %d",
                            tu->scheme, cfg->tokens.scheme);
            if (!cfg->tokens.source_model[0])
                return verr(v, p,
                            "the model reads instance tokens but tokens.source_model is not "
                            "set");
            snprintf(p, sizeof p, "models[%d].tokens.query", m);
            if (tu->query == 1 && mc->seq.kind == RD_SEQ_NONE)
                return verr(v, p,
                            "request_seq reads the item-ID history branch, but seq.kind is none "
                            "(set seq.kind, or query: request)");
            if (tu->query == 1 && tu->kind == RD_SEQ_MEAN)
                return verr(v, p,
                            "request_seq with tokens.kind mean: a mean reads no query (want din "
                            "| transformer, or query: request)");
        }
        // The backbone reads the embedded features, the dataset's numeric fields, the history
        // branch and statistics and the token branch and summaries: with none of them the model
        // has no input (the trainer refuses it: "empty backbone input").
        if (mc->n_features == 0 && sf.n_inputs == 0 && mc->seq.kind == RD_SEQ_NONE &&
            mc->seq.n_stats == 0 && tu->scheme == 0 && tu->n_stats == 0) {
            snprintf(p, sizeof p, "models[%d].features", m);
            return verr(v, p,
                        "model '%s' has no input: no feature, no seq branch or seq.stats, no "
                        "token branch, and the data source has no numeric field",
                        mc->name);
        }
        // After the value checks above, whose messages are more precise where they apply (a
        // view, token stats or a search with its branch off).
        if ((rc = check_forgotten_switches(mc, m, v)))
            return rc;
    }
    if (cfg->tokens.source_model[0] && !rd_config_find_model(cfg, cfg->tokens.source_model))
        return verr(v, "tokens.source_model", "no model named '%s' in models",
                    cfg->tokens.source_model);
    for (int k = 0; k < cfg->tokens.n_side; k++) {
        snprintf(p, sizeof p, "tokens.side[%d]", k);
        int rc = check_feedback_name(cfg, v, p, cfg->tokens.side[k]);
        if (rc)
            return rc;
        for (int j = 0; j < k; j++)
            if (strcmp(cfg->tokens.side[j], cfg->tokens.side[k]) == 0)
                return verr(v, p, "'%s' is listed twice", cfg->tokens.side[k]);
    }
    if (cfg->tokens.sit_pairs && !cfg->tokens.sit_labels)
        return verr(v, "tokens.sit_pairs",
                    "needs tokens.sit_labels (the pairs are where the labels go)");
    if (!rd_field_is_item(cfg->tokens.sit_group_by)) {
        const char *f = cfg->tokens.sit_group_by;
        if (cfg->tokens.sit_group != RD_SIT_GROUP_ITEM)
            return verr(v, "tokens.sit_group_by",
                        "needs tokens.sit_group: item (the groups it keys)");
        if (strcmp(f, "user") == 0)
            return verr(v, "tokens.sit_group_by",
                        "'user' is not an attribute of the item: use tokens.sit_group: user");
        int rc = check_item_key_field(cfg, &sf, v, "tokens.sit_group_by", f);
        if (rc)
            return rc;
    }
    if (cfg->tokens.side_residual && !cfg->tokens.n_side)
        return verr(v, "tokens.side_residual",
                    "needs tokens.side (the fields it takes residuals of)");
    if (rd_tokens_side_width(&cfg->tokens) > RD_MAX_TOKEN_SIDE)
        return verr(
            v, "tokens.side_residual",
            "%d side fields with their residuals make %d side values per token (at most %d)",
            cfg->tokens.n_side, rd_tokens_side_width(&cfg->tokens), RD_MAX_TOKEN_SIDE);
    const rd_model_config *src =
        cfg->tokens.source_model[0] ? rd_config_find_model(cfg, cfg->tokens.source_model) : NULL;
    if (src && src->tokens.scheme != 0)
        return verr(v, "tokens.source_model",
                    "model '%s' reads instance tokens itself (its tokens.scheme is %d): the "
                    "source model writes the tokens and cannot read them",
                    src->name, src->tokens.scheme);
    if (src && src->seq.n_stats)
        return verr(v, "tokens.source_model",
                    "model '%s' has seq.stats: a source model compresses one event and reads no "
                    "history",
                    src->name);
    if (src && src->dropout > 0.0f)
        return verr(v, "tokens.source_model",
                    "model '%s' has dropout %g: the tokens a source model stores come from its "
                    "training pass, which runs without dropout (set its dropout to 0)",
                    src->name, (double)src->dropout);
    // The source model trains only to build the store for a job whose model reads tokens
    // (rd_config_token_job). tokens.source_model given with no such job, while no job's model
    // writes its tokens.scheme either, is the same forgotten switch as above: the run would
    // train no IAT stage and say nothing. A job's model with tokens.scheme: 0 written is an
    // ablation that switches the token branch off on purpose (docs/iat.md), and passes.
    if (src && rd_config_token_job(cfg) < 0 &&
        was_written(v, &cfg->tokens, &tokens_desc, "source_model") == 1 &&
        job_writes_token_scheme(cfg, v) == 0)
        return verr(v, "tokens.source_model",
                    "'%s' given, but no job's model reads instance tokens and none sets "
                    "tokens.scheme, so no token store would be built and the source model would "
                    "never train: give a job's model a token branch (models[].tokens.scheme 1 or "
                    "2), write its tokens.scheme: 0 to keep the branch off, or remove "
                    "tokens.source_model",
                    src->name);
    return RD_OK;
}

// 1 if model `mc` embeds with table `name` (a feature's table or the history branch's).
static int model_uses_table(const rd_model_config *mc, const char *name) {
    for (int f = 0; f < mc->n_features && f < RD_MAX_FEATURES; f++)
        if (strcmp(mc->features[f].table, name) == 0)
            return 1;
    return mc->seq.kind != RD_SEQ_NONE && strcmp(mc->seq.table, name) == 0;
}

// One table, one writer: two jobs pushing into one table interleave their updates in an order
// that changes from run to run (sync training stops being reproducible), and --resume loads the
// table once per job, from checkpoints of different steps, the last load winning. Tables pass
// from one launch to the next through checkpoints (init_as, the table tools) instead.
static int check_shared_tables(const rd_config *cfg, const vctx *v) {
    const rd_cluster_config *cl = &cfg->cluster;
    for (int t = 0; t < cfg->ps.n_tables; t++) {
        const char *name = cfg->ps.tables[t].name;
        int first = -1;
        for (int i = 0; i < cl->n_jobs; i++) {
            const rd_model_config *mc = rd_config_find_model(cfg, cl->jobs[i].model);
            if (!mc || !model_uses_table(mc, name))
                continue;
            if (first < 0) {
                first = i;
                continue;
            }
            char p[64];
            snprintf(p, sizeof p, "cluster.jobs[%d].model", i);
            return verr(v, p,
                        "table '%s' is used by job '%s' (model '%s') and job '%s' (model '%s'): a "
                        "PS table has one writer in a launch (two jobs' updates interleave, and "
                        "--resume would load it once per job); give each job its own tables, and "
                        "pass rows between launches through checkpoints (init_as, recdistill "
                        "table)",
                        name, cl->jobs[first].name, cl->jobs[first].model, cl->jobs[i].name,
                        cl->jobs[i].model);
        }
    }
    return RD_OK;
}

// Every path the run derives must fit its limit (rd/config.h), said here rather than when the
// path is first made: a checkpoint folder is often made only after the whole training. The
// other derived paths fit by construction: metrics and report files have buffers for the
// longest run.out_dir and job name (static assertions in worker/), and their temporary names,
// the token store's shards and the target log's partial folders have 4 KiB.
static int check_derived_paths(const rd_config *cfg, const vctx *v) {
    // Each job's partial folder, "<dir>/<job>/.step-NNNNNNNNNNNN.partial" (rd_kv_save).
    static const char partial[] = "/.step-000000000000.partial";
    const rd_cluster_config *cl = &cfg->cluster;
    for (int i = 0; i < cl->n_jobs; i++) {
        const char *job = cl->jobs[i].name;
        size_t n = strlen(cfg->ps.checkpoint_dir) + 1 + strlen(job) + sizeof partial - 1;
        if (n > RD_CKPT_PARTIAL_MAX)
            return verr(v, "ps.checkpoint_dir",
                        "job '%s' checkpoints into '%s/%s%s', %zu bytes: longer than the limit "
                        "of %d bytes; shorten ps.checkpoint_dir (or run.out_dir) or the job name",
                        job, cfg->ps.checkpoint_dir, job, partial, n, RD_CKPT_PARTIAL_MAX);
    }
    size_t n = strlen(cfg->data.dir);
    if (n > RD_DATA_DIR_MAX)
        return verr(v, "data.dir",
                    "'%s' is %zu bytes: longer than the limit of %d bytes, which leaves room for "
                    "the temporary folder '%s.tmp-<pid>.<host>' the dataset is built in; shorten "
                    "data.dir (or run.out_dir)",
                    cfg->data.dir, n, RD_DATA_DIR_MAX, cfg->data.dir);
    return RD_OK;
}

// Each source reads its own part of data:. A MovieLens preset fills the schema itself (a label
// "rating >= 3" under data.schema left the label at rating >= 4), and the generator reads no
// input folder: a key set where its source does not look would be accepted and do nothing.
// Values equal to the defaults pass (a printed config holds them all). Left alone: data.schema
// under source synthetic (configs/reference.yaml, a template, shows its example schema there)
// and data.synthetic under a file source (a config switched from the generator to files keeps
// the generator's line, and nobody expects it to change a file).
static int check_unread_data(const rd_config *cfg, const vctx *v) {
    const rd_data_config *dc = &cfg->data;
    const char *src = data_sources[dc->source];
    char path[256] = "data";
    if ((dc->source == RD_DATA_MOVIELENS100K || dc->source == RD_DATA_MOVIELENS1M) &&
        !at_default(key_of(&data_desc, "schema"), dc, path, sizeof path))
        return verr(v, path,
                    "set, but data.source %s does not read data.schema (the MovieLens preset "
                    "fills the schema itself: its files, fields, and the label rating >= 4): "
                    "remove it, or read the files with source: csv and a full data.schema",
                    src);
    if (dc->source == RD_DATA_SYNTHETIC && dc->input[0])
        return verr(v, "data.input",
                    "'%s' is set, but data.source synthetic reads no input folder (the generator "
                    "makes its events): remove it, or set data.source to the files' source",
                    dc->input);
    return RD_OK;
}

// The optimizer keys that each type does not read (ps/optim.c, worker/dense_optim.c): one set
// away from its default would be accepted and do nothing (an ftrl l1 under adagrad, an Adam
// beta under sgd), so name it.
static const char *const ps_optim_unread[][7] = {
    [RD_OPT_SGD] = {"beta1", "beta2", "eps", "initial_accumulator", "l1", "beta", NULL},
    [RD_OPT_ADAGRAD] = {"beta1", "beta2", "l1", "beta", NULL},
    [RD_OPT_ADAM] = {"initial_accumulator", "l1", "beta", NULL},
    [RD_OPT_FTRL] = {"beta1", "beta2", "eps", "initial_accumulator", NULL},
};

static int check_unread_optim(const rd_config *cfg, const vctx *v) {
    char path[256];
    for (int i = 0; i < cfg->ps.n_tables; i++) {
        const rd_optim_config *oc = &cfg->ps.tables[i].optim;
        for (const char *const *k = ps_optim_unread[oc->kind]; *k; k++) {
            snprintf(path, sizeof path, "ps.tables[%d].optimizer", i);
            if (!at_default(key_of(&optim_desc, *k), oc, path, sizeof path))
                return verr(v, path, "set, but optimizer type %s does not read %s: remove it",
                            opt_kinds[oc->kind], *k);
        }
    }
    // The dense optimizer: sgd reads lr and weight_decay only.
    static const char *const sgd_unread[] = {"beta1", "beta2", "eps", NULL};
    if (strcmp(cfg->train.optimizer, "sgd") == 0)
        for (const char *const *k = sgd_unread; *k; k++) {
            snprintf(path, sizeof path, "train");
            if (!at_default(key_of(&train_desc, *k), &cfg->train, path, sizeof path))
                return verr(v, path,
                            "set, but train.optimizer sgd does not read %s (adam and adamw "
                            "do): remove it",
                            *k);
        }
    return RD_OK;
}

// distill: is read by distilled students (and their teachers, for what they send): without a
// job that has distill: true, nothing distils, and a key set there did nothing — the student
// meant to distil trained on labels only. target_log (a derived path, and a replay's input) and
// replay (checked above) aside.
static int check_unread_distill(const rd_config *cfg, const vctx *v) {
    for (int i = 0; i < cfg->cluster.n_jobs; i++)
        if (cfg->cluster.jobs[i].distill)
            return RD_OK;
    char path[256];
    for (size_t i = 0; i < distill_desc.n_keys; i++) {
        const ck_key *k = &distill_desc.keys[i];
        if (strcmp(k->key, "target_log") == 0 || strcmp(k->key, "replay") == 0)
            continue;
        snprintf(path, sizeof path, "distill");
        if (!at_default(k, &cfg->distill, path, sizeof path))
            return verr(v, path,
                        "set, but no student job has distill: true, so nothing distils: give "
                        "the student distill: true (and a two-tower model), or remove it");
    }
    return RD_OK;
}

// bias and debias_teacher shape the calibration the teacher's logits go through; with debias
// false there is none (worker/debias.c: the identity), and either key did nothing.
static int check_unread_debias(const rd_config *cfg, const vctx *v) {
    static const char *const calib[] = {"bias", "debias_teacher", NULL};
    if (cfg->distill.debias)
        return RD_OK;
    char path[256];
    for (const char *const *k = calib; *k; k++) {
        snprintf(path, sizeof path, "distill");
        if (!at_default(key_of(&distill_desc, *k), &cfg->distill, path, sizeof path))
            return verr(v, path,
                        "set, but distill.debias is false (the teacher's logits are taken "
                        "raw, through no calibration): remove it, or set distill.debias: true");
    }
    return RD_OK;
}

static int validate_impl(const rd_config *cfg, const vctx *v) {
    char path[256] = "";
    char p[128];
    int rc = check_struct(v, &rd__config_root, cfg, path, sizeof path);
    if (rc)
        return rc;
    if ((rc = check_name(v, "run.name", cfg->run.name)))
        return rc;
    if (!cfg->run.out_dir[0])
        return verr(v, "run.out_dir", "must not be empty (rd_config_resolve fills it)");

    // ---- cluster
    const rd_cluster_config *cl = &cfg->cluster;
    if (cl->n_jobs < 1)
        return verr(v, "cluster.jobs", "at least one worker job is needed");
    for (int i = 0; i < cl->n_jobs; i++) {
        const rd_job_config *j = &cl->jobs[i];
        snprintf(p, sizeof p, "cluster.jobs[%d].name", i);
        if ((rc = check_name(v, p, j->name)))
            return rc;
        for (int o = 0; o < i; o++)
            if (strcmp(cl->jobs[o].name, j->name) == 0)
                return verr(v, p, "duplicate job name '%s'", j->name);
        snprintf(p, sizeof p, "cluster.jobs[%d].init_as", i);
        if (j->init_as[0] && strcmp(j->init_as, j->name) != 0 &&
            !rd_config_find_job(cfg, j->init_as))
            return verr(v, p, "no job named '%s' to initialise as", j->init_as);
        if (!rd_config_job_init_name(cfg, j))
            return verr(v, p,
                        "'%s' never reaches a job that starts from its own parameters (one "
                        "whose init_as is empty): the init_as chain of job '%s' loops",
                        j->init_as, j->name);
        snprintf(p, sizeof p, "cluster.jobs[%d].model", i);
        const rd_model_config *mc = rd_config_find_model(cfg, j->model);
        if (!mc)
            return verr(v, p, "no model named '%s' in models", j->model);
        snprintf(p, sizeof p, "cluster.jobs[%d].distill", i);
        if (j->distill && j->role != RD_JOB_STUDENT)
            return verr(v, p, "only student jobs can distill");
        // `teacher` is the teacher of a distilled student; anywhere else nothing reads it, and
        // a job meant to distill would silently train on labels only.
        if (!j->distill && j->teacher[0]) {
            snprintf(p, sizeof p, "cluster.jobs[%d].teacher", i);
            return verr(v, p,
                        "'%s' is set, but job '%s' does not distill (distill: false): add "
                        "distill: true, or remove teacher",
                        j->teacher, j->name);
        }
        if (j->distill) {
            snprintf(p, sizeof p, "cluster.jobs[%d].teacher", i);
            // In replay mode the teacher ran in an earlier launch: `teacher` names the job whose
            // recorded targets the student reads from distill.target_log, and need not be here.
            const rd_job_config *t = rd_config_find_job(cfg, j->teacher);
            if (!j->teacher[0])
                return verr(v, p,
                            cfg->distill.replay
                                ? "a replaying student needs `teacher:` (the job that wrote the "
                                  "target log)"
                                : "a distilled student needs a teacher job, and there is none");
            if (t ? t->role != RD_JOB_TEACHER : !cfg->distill.replay)
                return verr(v, p, "'%s' is not a teacher job", j->teacher);
            if (cfg->distill.aux_tower && !mc->two_towers) {
                snprintf(p, sizeof p, "cluster.jobs[%d].model", i);
                return verr(v, p,
                            "model '%s' distils into its auxiliary tower (distill.aux_tower) "
                            "but has two_towers: false",
                            mc->name);
            }
            // The converse: a second tower that the distillation would not reach was still
            // distilled into (the model distils into its aux tower whenever it has one).
            if (!cfg->distill.aux_tower && mc->two_towers) {
                snprintf(p, sizeof p, "cluster.jobs[%d].model", i);
                return verr(v, p,
                            "model '%s' has two_towers: true but distill.aux_tower is false "
                            "(distil into the one tower): give the distilled student's model "
                            "two_towers: false for the one-tower ablation",
                            mc->name);
            }
        }
    }
    if (rd_config_world_size(cfg) < 0)
        return verr(v, "cluster", "the total number of ranks overflows");
    // Replay feeds recorded targets to distilled students; without one, the run would train on
    // labels only and report "replayed: 0".
    if (cfg->distill.replay) {
        int distilled = 0;
        for (int i = 0; i < cl->n_jobs; i++)
            distilled += cl->jobs[i].distill != 0;
        if (!distilled)
            return verr(v, "distill.replay",
                        "true, but no student job has distill: true, so nothing reads the target "
                        "log (give the replaying student distill: true and teacher: <the job "
                        "that wrote the log>)");
    }

    // ---- ps
    for (int i = 0; i < cfg->ps.n_tables; i++) {
        const rd_table_config *t = &cfg->ps.tables[i];
        snprintf(p, sizeof p, "ps.tables[%d].name", i);
        if ((rc = check_name(v, p, t->name)))
            return rc;
        for (int o = 0; o < i; o++)
            if (strcmp(cfg->ps.tables[o].name, t->name) == 0)
                return verr(v, p, "duplicate table name '%s'", t->name);
        snprintf(p, sizeof p, "ps.tables[%d].init_as", i);
        if (t->init_as[0] && strcmp(t->init_as, t->name) != 0) {
            const rd_table_config *o = rd_config_find_table(cfg, t->init_as);
            if (!o)
                return verr(v, p, "no table named '%s' to initialise as", t->init_as);
            if (o->dim != t->dim)
                return verr(v, p, "table '%s' has dim %d, this one %d: rows cannot start alike",
                            o->name, o->dim, t->dim);
            if (o->init_as[0] && strcmp(o->init_as, o->name) != 0) // resolve_impl left a cycle
                return verr(v, p,
                            "'%s' never reaches a table that draws its own rows (one whose "
                            "init_as is empty): the init_as chain of table '%s' loops",
                            t->init_as, t->name);
        }
    }

    if ((rc = check_unread_optim(cfg, v)))
        return rc;
    // The shared-memory region is made only with ps.shm auto (ps/kv.c): with off, its size is
    // read by nothing, and a size set for a large model's requests would quietly not apply.
    snprintf(path, sizeof path, "ps");
    if (cfg->ps.shm == RD_SHM_OFF &&
        !at_default(key_of(&ps_desc, "shm_bytes"), &cfg->ps, path, sizeof path))
        return verr(v, path,
                    "set, but ps.shm is off (every payload goes through MPI, and no region is "
                    "made): remove it, or set ps.shm: auto");
    // Synchronous training applies every push before the next pull: no worker runs ahead, and
    // the server reads the staleness bound only in async mode (ps/server.c eligible()).
    if (cfg->ps.sync && cfg->ps.staleness > 0)
        return verr(v, "ps.staleness",
                    "%d is set, but ps.sync is true (no worker runs ahead, and the bound is read "
                    "only with sync: false): remove it, or set ps.sync: false",
                    cfg->ps.staleness);

    // ---- models, tokens
    if ((rc = check_models(cfg, v)))
        return rc;

    // ---- data
    if (cfg->data.source == RD_DATA_SYNTHETIC && cfg->data.synthetic.feedback == 2 &&
        cfg->data.synthetic.contexts == 0)
        return verr(v, "data.synthetic.feedback",
                    "2 (the context kind as the feedback field) needs data.synthetic.contexts");
    if (cfg->data.source == RD_DATA_SYNTHETIC && cfg->data.synthetic.feedback == 4 &&
        cfg->data.synthetic.contexts == 0)
        return verr(v, "data.synthetic.feedback",
                    "4 (the remembered deliberate exposures as the feedback field) needs "
                    "data.synthetic.contexts");
    // context_effect is the click offset of a request context: the generator reads it only with
    // contexts (common/synth.c). Written without data.synthetic.contexts it did nothing (and
    // changed the data config hash, not the data). contexts: 0 written keeps it, as a switch set
    // to off keeps its settings (an ablation of a contexts config).
    if (cfg->data.source == RD_DATA_SYNTHETIC &&
        was_written(v, &cfg->data.synthetic, &synthetic_desc, "context_effect") == 1 &&
        was_written(v, &cfg->data.synthetic, &synthetic_desc, "contexts") == 0)
        return verr(v, "data.synthetic.context_effect",
                    "given, but data.synthetic.contexts is not set (its default is 0: the events "
                    "have no request context for it to offset): set contexts, or contexts: 0 to "
                    "keep them off");
    const rd_split_config *sp = &cfg->data.split;
    if (!(sp->batch_fraction + sp->holdout_fraction < 1.0))
        return verr(v, "data.split",
                    "batch_fraction + holdout_fraction = %g must be < 1 (the rest is the stream "
                    "windows)",
                    sp->batch_fraction + sp->holdout_fraction);
    if (!cfg->distill.aux_task && !cfg->distill.aux_tower)
        return verr(v, "distill.aux_task",
                    "false needs distill.aux_tower: true (a single tower always learns the "
                    "labels)");
    if (cfg->distill.start_epoch > 0 && cfg->distill.start_window >= 0)
        return verr(v, "distill.start_epoch",
                    "%d: batch epochs use no targets when distill.start_window is %d (>= 0)",
                    cfg->distill.start_epoch, cfg->distill.start_window);
    if (cfg->distill.start_epoch > 0 && cfg->distill.start_epoch >= cfg->train.epochs)
        return verr(v, "distill.start_epoch", "%d is not a batch epoch (train.epochs is %d)",
                    cfg->distill.start_epoch, cfg->train.epochs);
    // A student holds a join table of 8 entries (32 bytes each) per target a teacher rank may
    // have in flight, and receive buffers for all of them: bound what that can cost.
    if ((int64_t)cfg->distill.max_in_flight * cfg->distill.batch > RD_DISTILL_MAX_IN_FLIGHT)
        return verr(v, "distill.batch",
                    "max_in_flight %d x batch %d = %lld targets in flight per teacher rank, above "
                    "%d (a student would hold about %lld MB per teacher rank to join them)",
                    cfg->distill.max_in_flight, cfg->distill.batch,
                    (long long)cfg->distill.max_in_flight * cfg->distill.batch,
                    RD_DISTILL_MAX_IN_FLIGHT,
                    (long long)cfg->distill.max_in_flight * cfg->distill.batch * 8 * 32 >> 20);
    if (cfg->distill.start_window >= sp->stream_windows)
        return verr(v, "distill.start_window", "%d is not a stream window (there are %d)",
                    cfg->distill.start_window, sp->stream_windows);
    if ((cfg->data.source == RD_DATA_MOVIELENS100K || cfg->data.source == RD_DATA_MOVIELENS1M) &&
        !cfg->data.input[0])
        return verr(v, "data.input", "the MovieLens sources need an input folder");
    if (cfg->data.source == RD_DATA_CSV && (rc = check_csv_schema(cfg, v)))
        return rc;
    if ((rc = check_unread_data(cfg, v)))
        return rc;
    if (!cfg->data.dir[0])
        return verr(v, "data.dir", "must not be empty (rd_config_resolve fills it)");
    // Last, so that every more specific error is said first. A job's sparse state and its
    // checkpoints live on the PS: a model that embeds nothing (only dense inputs) cannot
    // checkpoint, and the workers refuse it; say so here, before any dataset is prepared.
    for (int i = 0; i < cfg->cluster.n_jobs; i++) {
        const rd_job_config *j = &cfg->cluster.jobs[i];
        const rd_model_config *mc = rd_config_find_model(cfg, j->model);
        if (mc && mc->n_features == 0 && mc->seq.kind == RD_SEQ_NONE) {
            char jp[64];
            snprintf(jp, sizeof jp, "cluster.jobs[%d].model", i);
            return verr(v, jp,
                        "job '%s' trains model '%s', which reads no embedding table (no feature "
                        "and no seq branch): embed at least one feature, e.g. {field: item, "
                        "table: ...}",
                        j->name, mc->name);
        }
    }
    if ((rc = check_shared_tables(cfg, v)))
        return rc;
    if ((rc = check_derived_paths(cfg, v)))
        return rc;
    if ((rc = check_unread_distill(cfg, v)))
        return rc;
    return check_unread_debias(cfg, v);
}

int rd_config_validate(const rd_config *cfg, rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    vctx v = {eb, cfg->source_path, NULL, NULL, NULL, NULL, 0};
    return validate_impl(cfg, &v);
}

static int check_one(const ck_struct *st, const void *base, const char *what, rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    vctx v = {eb, what, NULL, NULL, NULL, NULL, 0};
    char path[256] = "";
    return check_struct(&v, st, base, path, sizeof path);
}

int rd_config_check_model(const rd_model_config *mc, const char *what, rd_errbuf *eb) {
    return check_one(&model_desc, mc, what, eb);
}

int rd_config_check_table(const rd_table_config *tc, const char *what, rd_errbuf *eb) {
    return check_one(&table_desc, tc, what, eb);
}

// ---------------------------------------------------------------------------------------------
// Loading.

void rd_config_defaults(rd_config *cfg) {
    defaults_raw(cfg);
    vctx v = {NULL, "", NULL, NULL, NULL, NULL, 0};
    int rc = resolve_impl(cfg, &v);
    RD_ASSERT(rc == RD_OK);
}

// Syntax error text of a failed libyaml parser.
static int yaml_fail(
    const yaml_parser_t *parser, const char *text, size_t len, const char *name, rd_errbuf *eb) {
    int code = parser->error == YAML_MEMORY_ERROR ? RD_ERR_NOMEM : RD_ERR_CONFIG;
    yaml_mark_t m = parser->problem_mark;
    // A reader error (a control byte, invalid UTF-8) has no mark, only a byte offset: its line
    // and column (in characters, as libyaml counts) from the text (every one said 1:1).
    if (parser->error == YAML_READER_ERROR && parser->problem_offset <= len) {
        m.line = m.column = 0;
        for (size_t i = 0; i < parser->problem_offset; i++) {
            if (text[i] == '\n') {
                m.line++;
                m.column = 0;
            } else if (((unsigned char)text[i] & 0xc0) != 0x80) { // a UTF-8 lead or ASCII
                m.column++;
            }
        }
    }
    if (parser->context)
        return rd_err_set(eb, code, "%s:%zu:%zu: yaml: %s started at line %zu: %s", name,
                          m.line + 1, m.column + 1, parser->context, parser->context_mark.line + 1,
                          parser->problem ? parser->problem : "syntax error");
    return rd_err_set(eb, code, "%s:%zu:%zu: yaml: %s", name, m.line + 1, m.column + 1,
                      parser->problem ? parser->problem : "syntax error");
}

// libyaml's scanner costs O(depth) per token, so pathological nesting ("[[[[..." 100k deep)
// takes minutes. A first pass over the events stops at CK_MAX_DEPTH, long before that matters;
// no configuration nests deeper than 6. The same pass records where the scalars with an explicit
// string tag start (`dim: !!str 4`): the document API cannot tell them from plain scalars, and a
// string where a number belongs is an error (reference.yaml). *tagged (ascending marks, count
// *n_tagged) is allocated with rd_realloc: the caller frees it with rd_free, also on error.
#define CK_MAX_DEPTH 64
static int prescan(const char *text,
                   size_t len,
                   const char *name,
                   rd_errbuf *eb,
                   size_t **tagged,
                   size_t *n_tagged) {
    *tagged = NULL;
    *n_tagged = 0;
    size_t cap = 0;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: cannot initialise the YAML parser", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int depth = 0, rc = RD_OK;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = yaml_fail(&parser, text, len, name, eb);
            break;
        }
        yaml_event_type_t type = ev.type;
        yaml_mark_t mark = ev.start_mark;
        const char *tag =
            type == YAML_SCALAR_EVENT           ? (const char *)ev.data.scalar.tag
            : type == YAML_SEQUENCE_START_EVENT ? (const char *)ev.data.sequence_start.tag
            : type == YAML_MAPPING_START_EVENT  ? (const char *)ev.data.mapping_start.tag
                                                : NULL;
        int kind = TAG_NONE;
        if (type == YAML_SCALAR_EVENT && tag) {
            static const struct {
                const char *tag;
                int kind;
            } core[] = {{YAML_STR_TAG, TAG_STR},   {"!", TAG_STR},
                        {YAML_INT_TAG, TAG_INT},   {YAML_FLOAT_TAG, TAG_FLOAT},
                        {YAML_BOOL_TAG, TAG_BOOL}, {YAML_NULL_TAG, TAG_NULL}};
            for (size_t i = 0; i < sizeof core / sizeof core[0] && !kind; i++)
                if (strcmp(tag, core[i].tag) == 0)
                    kind = core[i].kind;
        }
        // Any other tag was ignored, the text read by the key's type (`out_dir: !!binary
        // cnVucy94` kept its base64 text: PyYAML writes bytes that way).
        if (tag && !kind &&
            !(type == YAML_SEQUENCE_START_EVENT && strcmp(tag, YAML_SEQ_TAG) == 0) &&
            !(type == YAML_MAPPING_START_EVENT && strcmp(tag, YAML_MAP_TAG) == 0)) {
            const char *y = "tag:yaml.org,2002:";
            int core_ns = strncmp(tag, y, strlen(y)) == 0;
            rc = rd_err_set(eb, RD_ERR_CONFIG,
                            "%s:%zu:%zu: yaml: tag %s%s is not supported (a key's type decides "
                            "how its value is read; !!str, !!int, !!float, !!bool and !!null may "
                            "say it)",
                            name, mark.line + 1, mark.column + 1, core_ns ? "!!" : "",
                            core_ns ? tag + strlen(y) : tag);
            yaml_event_delete(&ev);
            break;
        }
        yaml_event_delete(&ev);
        if (kind) {
            if (*n_tagged == cap) {
                size_t ncap = cap ? 2 * cap : 16;
                size_t *nt = rd_realloc(*tagged, ncap * sizeof *nt);
                if (!nt) {
                    rc = rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory reading the YAML", name);
                    break;
                }
                *tagged = nt;
                cap = ncap;
            }
            (*tagged)[(*n_tagged)++] = mark.index * 8 + (size_t)kind;
        }
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            if (++depth > CK_MAX_DEPTH) {
                rc = rd_err_set(eb, RD_ERR_CONFIG, "%s:%zu:%zu: yaml: nested deeper than %d levels",
                                name, mark.line + 1, mark.column + 1, CK_MAX_DEPTH);
                break;
            }
        } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (type == YAML_STREAM_END_EVENT) {
            break;
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}

// ---- Overrides: `recdistill <command> CONFIG --set PATH=VALUE` (rd_config_load_sets).

// Forget what the config wrote in the struct `st` at byte offset `off` of rd_config and below it
// (nested maps, every entry of its lists): an override replaces that part as a whole, and a key
// the file wrote there must not count as written (a forgotten switch: `--set
// models.m.seq={length: 8}` over a file's seq with a kind).
static void written_drop(ck_written *w, const ck_struct *st, size_t off);

// written_drop of what key k of the struct at offset `off` holds: its map, or every list entry.
static void written_drop_under(ck_written *w, const ck_key *k, size_t off) {
    if (k->type == CK_MAP || k->type == CK_LABEL)
        written_drop(w, k->sub, off + k->off);
    else if (k->type == CK_MAP_LIST)
        for (int e = 0; e < k->max_count; e++)
            written_drop(w, k->sub, off + k->off + (size_t)e * k->size);
}

static void written_drop(ck_written *w, const ck_struct *st, size_t off) {
    size_t o = 0;
    for (size_t i = 0; i < w->n; i++)
        if (!(w->keys[i].off == off && w->keys[i].k >= st->keys &&
              w->keys[i].k < st->keys + st->n_keys))
            w->keys[o++] = w->keys[i];
    w->n = o;
    for (size_t i = 0; i < st->n_keys; i++)
        written_drop_under(w, &st->keys[i], off);
}

// Append to the resolved path of rec (rl bytes long): its new length (cut at its capacity).
static size_t rec_add(ck_set *rec, size_t rl, const char *fmt, ...) RD_PRINTF(3, 4);
static size_t rec_add(ck_set *rec, size_t rl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->path + rl, sizeof rec->path - rl, fmt, ap);
    va_end(ap);
    return strlen(rec->path);
}

// The key of `st` named by the kl bytes at ks, or NULL.
static const ck_key *key_named(const ck_struct *st, const char *ks, size_t kl) {
    for (size_t i = 0; i < st->n_keys; i++)
        if (strlen(st->keys[i].key) == kl && memcmp(st->keys[i].key, ks, kl) == 0)
            return &st->keys[i];
    return NULL;
}

// One override "PATH=VALUE" applied to cfg (parsed, not yet resolved or validated); rec gets the
// path it resolved to. Errors name the override.
static int
apply_set(const char *arg, rd_config *cfg, ck_written *written, ck_set *rec, rd_errbuf *eb) {
    rec->arg = arg;
    rec->path[0] = '\0';
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "--set %s: expected PATH=VALUE, a key path and a YAML value "
                          "(train.lr=0.01, models.teacher.seq.kind=din)",
                          arg);
    size_t plen = (size_t)(eq - arg);
    const ck_struct *st = &rd__config_root;
    char *base = (char *)cfg;
    const ck_key *k = NULL; // NULL: the path names the struct st at base (a list entry)
    size_t rl = 0;
    const char *p = arg, *end = eq;
#define SET_ERR(...)                                                                               \
    do {                                                                                           \
        char m_[512];                                                                              \
        if (snprintf(m_, sizeof m_, __VA_ARGS__) >= (int)sizeof m_) /* cut: said as "..." */       \
            memcpy(m_ + sizeof m_ - 4, "...", 4);                                                  \
        return rd_err_set(eb, RD_ERR_CONFIG, "--set %s: %s", arg, m_);                             \
    } while (0)
    if (plen >= sizeof rec->path)
        SET_ERR("the key path is longer than %zu bytes", sizeof rec->path - 1);
    while (p < end) {
        if (k) { // a key with more path after it: it must hold a map
            if (k->type != CK_MAP && k->type != CK_LABEL)
                SET_ERR("'%s' holds %s, not a map: nothing under it", rec->path,
                        k->type == CK_MAP_LIST ? "a list" : "a value");
            base += k->off;
            st = k->sub;
            k = NULL;
        }
        size_t kl = strcspn(p, ".[=");
        if (kl == 0)
            SET_ERR("an empty key in the path '%.*s'", (int)plen, arg);
        const ck_key *nk = key_named(st, p, kl);
        if (!nk) {
            const char *near = closest_key(st, p, kl);
            if (near)
                SET_ERR("%s%s%.*s: unknown key (did you mean '%s'?)", rec->path, rl ? "." : "",
                        (int)kl, p, near);
            SET_ERR("%s%s%.*s: unknown key (%s takes: see configs/reference.yaml)", rec->path,
                    rl ? "." : "", (int)kl, p, rl ? rec->path : "the top level");
        }
        rl = rec_add(rec, rl, "%s%s", rl ? "." : "", nk->key);
        k = nk;
        p += kl;
        if (p < end && *p == '.')
            p++;
        else if (p < end && *p != '[')
            SET_ERR("bad key path '%.*s'", (int)plen, arg);
        if (k->type != CK_MAP_LIST || p >= end)
            continue;
        // An entry of a list of maps: [i] / [name], or the next key as an index or a name.
        const char *sel;
        size_t sl;
        if (*p == '[') {
            sel = p + 1;
            const char *close = memchr(sel, ']', (size_t)(end - sel));
            if (!close)
                SET_ERR("'[' without its ']' in '%.*s'", (int)plen, arg);
            sl = (size_t)(close - sel);
            p = close + 1;
            if (p < end && *p != '.')
                SET_ERR("bad key path '%.*s' (a '.' must follow ']')", (int)plen, arg);
            if (p < end)
                p++;
        } else {
            sel = p;
            sl = strcspn(p, ".[=");
            p += sl;
            if (p < end && *p == '.')
                p++;
        }
        if (sl == 0)
            SET_ERR("'%s' needs an entry: its index or its name", rec->path);
        int count;
        memcpy(&count, base + k->count_off, sizeof count);
        char *elems = base + k->off;
        const ck_key *name_key = key_named(k->sub, "name", 4);
        int idx = -1;
        for (int e = 0; name_key && e < count && idx < 0; e++) {
            const char *nm = elems + (size_t)e * k->size + name_key->off;
            if (strlen(nm) == sl && memcmp(nm, sel, sl) == 0)
                idx = e;
        }
        if (idx < 0) {
            int digits = sl <= 9;
            for (size_t i = 0; i < sl && digits; i++)
                digits = isdigit((unsigned char)sel[i]) != 0;
            if (digits)
                idx = atoi(sel); // sl <= 9 digits: fits
            if (idx >= count || idx < 0) {
                char names[200] = "";
                size_t o = 0;
                for (int e = 0; name_key && e < count && o < sizeof names; e++)
                    o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", e ? ", " : "",
                                          elems + (size_t)e * k->size + name_key->off);
                if (digits)
                    SET_ERR("'%s' has %d entr%s: no index %d (an override changes entries, it "
                            "adds none)",
                            rec->path, count, count == 1 ? "y" : "ies", idx);
                SET_ERR("'%s' has no entry named '%.*s'%s%s%s", rec->path, (int)sl, sel,
                        name_key ? " (its entries: " : "", name_key ? names : "",
                        name_key ? ")" : "");
            }
        }
        rl = rec_add(rec, rl, "[%d]", idx);
        st = k->sub;
        base = elems + (size_t)idx * k->size;
        k = NULL;
    }
    // The value: one YAML document (empty: null).
    const char *val = eq + 1;
    size_t vlen = strlen(val);
    size_t *tagged = NULL, n_tagged = 0;
    char vname[96];
    snprintf(vname, sizeof vname, "--set %.80s", arg);
    int rc = prescan(val, vlen, vname, eb, &tagged, &n_tagged);
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_doc = 0;
    if (rc == RD_OK && !yaml_parser_initialize(&parser))
        rc = rd_err_set(eb, RD_ERR_NOMEM, "--set %s: cannot initialise the YAML parser", arg);
    else if (rc == RD_OK) {
        yaml_parser_set_input_string(&parser, (const unsigned char *)(vlen ? val : "~"),
                                     vlen ? vlen : 1);
        if (!yaml_parser_load(&parser, &doc))
            rc = yaml_fail(&parser, val, vlen, vname, eb);
        else
            have_doc = 1;
        yaml_parser_delete(&parser);
    }
    const yaml_node_t *node = have_doc ? yaml_document_get_root_node(&doc) : NULL;
    if (rc == RD_OK && !node)
        rc = rd_err_set(eb, RD_ERR_CONFIG, "--set %s: no value", arg);
    if (rc == RD_OK) {
        pctx c = {.doc = &doc,
                  .name = vname,
                  .eb = eb,
                  .root = (const char *)cfg,
                  .written = written,
                  .str_tagged = tagged,
                  .n_str_tagged = n_tagged,
                  .set_arg = arg};
        snprintf(c.path, sizeof c.path, "%s", rec->path);
        if (!k) { // a whole list entry
            written_drop(written, st, (size_t)(base - (char *)cfg));
            apply_defaults(st, base);
            rc = parse_struct(&c, st, base, node);
        } else {
            written_drop_under(written, k, (size_t)(base - (char *)cfg));
            if (k->type == CK_MAP || k->type == CK_LABEL) // a label rule or map: all of it
                apply_defaults(k->sub, base + k->off);
            rc = written_add(&c, base, k);
            if (rc == RD_OK)
                rc = parse_value(&c, k, base, node);
        }
    }
    if (have_doc)
        yaml_document_delete(&doc);
    rd_free(tagged);
    return rc;
}
#undef SET_ERR

int rd_config_parse_string(
    const char *text, size_t len, const char *name, rd_config *cfg, rd_errbuf *eb) {
    return rd_config_parse_string_sets(text, len, name, NULL, 0, cfg, eb);
}

int rd_config_parse_string_sets(const char *text,
                                size_t len,
                                const char *name,
                                const char *const *sets,
                                int n_sets,
                                rd_config *cfg,
                                rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    if (n_sets < 0 || n_sets > RD_CONFIG_MAX_SETS || (n_sets && !sets))
        return rd_err_set(eb, RD_ERR_ARG, "%d overrides (--set): at most %d", n_sets,
                          RD_CONFIG_MAX_SETS);
    if (!name)
        name = "<string>";
    defaults_raw(cfg);
    if (!text && len)
        return rd_err_set(eb, RD_ERR_ARG, "%s: NULL text", name);
    if (!text)
        text = "";
    if (len > CK_MAX_FILE)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "%s: %zu bytes is too large for a configuration "
                          "(at most %u)",
                          name, len, CK_MAX_FILE);
    size_t *tagged = NULL, n_tagged = 0;
    int rc = prescan(text, len, name, eb, &tagged, &n_tagged);
    if (rc) {
        rd_free(tagged);
        return rc;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        rd_free(tagged);
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: cannot initialise the YAML parser", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_fail(&parser, text, len, name, eb);
        yaml_parser_delete(&parser);
        rd_free(tagged);
        return rc;
    }
    // A second document is an error (one file = one run).
    yaml_document_t doc2;
    if (!yaml_parser_load(&parser, &doc2)) {
        rc = yaml_fail(&parser, text, len, name, eb);
    } else {
        if (yaml_document_get_root_node(&doc2))
            rc = rd_err_set(eb, RD_ERR_CONFIG,
                            "%s:%zu:%zu: yaml: only one YAML document is allowed per file", name,
                            doc2.start_mark.line + 1, doc2.start_mark.column + 1);
        yaml_document_delete(&doc2);
    }
    yaml_parser_delete(&parser);
    ck_written written = {NULL, 0, 0};
    if (rc == RD_OK) {
        pctx c = {.doc = &doc,
                  .name = name,
                  .eb = eb,
                  .root = (const char *)cfg,
                  .written = &written,
                  .str_tagged = tagged,
                  .n_str_tagged = n_tagged};
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root)
            rc = parse_struct(&c, &rd__config_root, cfg, root);
    }
    ck_set recs[RD_CONFIG_MAX_SETS];
    for (int i = 0; i < n_sets && rc == RD_OK; i++) {
        if (!sets[i])
            rc = rd_err_set(eb, RD_ERR_ARG, "override %d (--set) is NULL", i);
        else
            rc = apply_set(sets[i], cfg, &written, &recs[i], eb);
    }
    if (rc == RD_OK) {
        vctx v = {eb, name, &doc, (const char *)cfg, &written, recs, n_sets};
        rc = resolve_impl(cfg, &v);
        if (rc == RD_OK)
            rc = validate_impl(cfg, &v);
    }
    yaml_document_delete(&doc);
    rd_free(written.keys);
    rd_free(tagged);
    return rc;
}

int rd_config_load(const char *path, rd_config *cfg, rd_errbuf *eb) {
    return rd_config_load_sets(path, NULL, 0, cfg, eb);
}

int rd_config_load_sets(
    const char *path, const char *const *sets, int n_sets, rd_config *cfg, rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    if (!path)
        return rd_err_set(eb, RD_ERR_ARG, "rd_config_load: NULL path");
    if (strlen(path) >= sizeof cfg->source_path)
        return rd_err_set(eb, RD_ERR_IO, "%s: path too long (%zu bytes, at most %zu)",
                          rd_err_path(path).s, strlen(path), sizeof cfg->source_path - 1);
    // Never blocks: a FIFO given as CONFIG hung in fopen() before the S_ISREG check was reached.
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f);
    if (o < 0) {
        const char *why = strerror(errno); // before rd_err_path may touch errno
        return rd_err_set(eb, RD_ERR_IO, "%s: cannot open: %s", rd_err_path(path).s, why);
    }
    if (o > 0)
        return rd_err_set(eb, RD_ERR_IO, "%s: not a regular file", rd_err_path(path).s);
    size_t cap = 8192, len = 0;
    char *buf = rd_malloc(cap);
    int rc = RD_OK;
    if (!buf) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory reading the file", path);
        goto fn_fail;
    }
    for (;;) {
        if (len == cap) {
            if (cap > CK_MAX_FILE) {
                rc = rd_err_set(eb, RD_ERR_CONFIG,
                                "%s: file larger than %u bytes: not a "
                                "configuration",
                                path, CK_MAX_FILE);
                goto fn_fail;
            }
            char *nb = rd_realloc(buf, cap * 2);
            if (!nb) {
                rc = rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory reading the file", path);
                goto fn_fail;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                rc = rd_err_set(eb, RD_ERR_IO, "%s: read error: %s", path, strerror(errno));
                goto fn_fail;
            }
            break;
        }
    }
    rc = rd_config_parse_string_sets(buf, len, path, sets, n_sets, cfg, eb);
    if (rc == RD_OK)
        snprintf(cfg->source_path, sizeof cfg->source_path, "%s", path);
fn_fail:
    rd_free(buf);
    fclose(f);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Printing.

// YAML double-quoted string. Non-ASCII code points are written as \u escapes so that line
// separators (U+2028 ...) survive a round trip unchanged.
static void print_str(FILE *out, const char *s, size_t cap) {
    size_t n = strnlen(s, cap);
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            fprintf(out, "\\%c", ch);
        } else if (ch == '\t') {
            fputs("\\t", out);
        } else if (ch == '\n') {
            fputs("\\n", out);
        } else if (ch == '\r') {
            fputs("\\r", out);
        } else if (ch < 0x20 || ch == 0x7f) {
            fprintf(out, "\\x%02x", ch);
        } else if (ch < 0x80) {
            fputc(ch, out);
        } else {
            // Decode one UTF-8 sequence; invalid bytes are escaped one by one.
            int extra = ch >= 0xf0 ? 3 : ch >= 0xe0 ? 2 : ch >= 0xc0 ? 1 : -1;
            uint32_t cp = ch & (extra == 3 ? 0x07 : extra == 2 ? 0x0f : 0x1f);
            int ok = extra > 0 && i + (size_t)extra < n;
            for (int e = 1; ok && e <= extra; e++) {
                if (i + (size_t)e >= n || ((unsigned char)s[i + (size_t)e] & 0xc0) != 0x80)
                    ok = 0;
                else
                    cp = (cp << 6) | ((unsigned char)s[i + (size_t)e] & 0x3f);
            }
            if (ok) {
                if (cp > 0xffff)
                    fprintf(out, "\\U%08x", (unsigned)cp);
                else
                    fprintf(out, "\\u%04x", (unsigned)cp);
                i += (size_t)extra;
            } else {
                fprintf(out, "\\x%02x", ch);
            }
        }
    }
    fputc('"', out);
}

// Shortest decimal text that reads back to the same float / double.
// The shortest text that reads back as v (as a float when as_float), in a form every YAML
// reader takes for a number: an exponent gets a '.' in its mantissa ("1.0e-08", not "1e-08",
// which PyYAML, as YAML 1.1 says, reads as a string: the tools that load a printed config did).
static void print_number(FILE *out, double v, int as_float) {
    char buf[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (as_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    char *e = strchr(buf, 'e');
    if (e && !memchr(buf, '.', (size_t)(e - buf))) {
        char tail[24];
        snprintf(tail, sizeof tail, "%s", e);
        snprintf(e, sizeof buf - (size_t)(e - buf), ".0%s", tail);
    }
    fputs(buf, out);
}

static void print_float(FILE *out, float v) {
    print_number(out, (double)v, 1);
}

static void print_double(FILE *out, double v) {
    print_number(out, v, 0);
}

static int plain_word(const char *s) {
    if (!s[0])
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return 0;
    return 1;
}

static void print_scalar(FILE *out, const ck_key *k, ck_type t, const void *dst) {
    switch (t) {
        case CK_INT:
        case CK_BOOL: {
            int v;
            memcpy(&v, dst, sizeof v);
            if (t == CK_BOOL && (v == 0 || v == 1))
                fputs(v ? "true" : "false", out);
            else
                fprintf(out, "%d", v);
            break;
        }
        case CK_INT64: {
            int64_t v;
            memcpy(&v, dst, sizeof v);
            fprintf(out, "%lld", (long long)v);
            break;
        }
        case CK_UINT64: {
            uint64_t v;
            memcpy(&v, dst, sizeof v);
            fprintf(out, "%llu", (unsigned long long)v);
            break;
        }
        case CK_FLOAT: {
            float v;
            memcpy(&v, dst, sizeof v);
            print_float(out, v);
            break;
        }
        case CK_DOUBLE: {
            double v;
            memcpy(&v, dst, sizeof v);
            print_double(out, v);
            break;
        }
        case CK_ENUM: {
            int v;
            memcpy(&v, dst, sizeof v);
            if (v >= 0 && v < names_count(k->names)) {
                const char *nm = k->names[v];
                if (plain_word(nm))
                    fputs(nm, out);
                else
                    print_str(out, nm, strlen(nm) + 1);
            } else {
                fprintf(out, "%d", v);
            }
            break;
        }
        case CK_STR:
            // Values from a fixed list (log_level: info) read better plain; free text is quoted.
            if (k->names && memchr(dst, '\0', k->size) && plain_word(dst))
                fputs(dst, out);
            else
                print_str(out, dst, k->size);
            break;
        default:
            break;
    }
}

static void print_struct(
    FILE *out, const ck_struct *st, const void *base, int indent, const char *first_prefix) {
    for (size_t i = 0; i < st->n_keys; i++) {
        const ck_key *k = &st->keys[i];
        const char *dst = (const char *)base + k->off;
        // A text label (label.values) has no threshold: printing one would make the printed
        // configuration one that does not load.
        if (st == &label_desc && strcmp(k->key, "threshold") == 0 &&
            ((const rd_schema_config *)base)->n_label_values > 0)
            continue;
        if (indent == 0 && i > 0)
            fputc('\n', out);
        if (i == 0 && first_prefix)
            fputs(first_prefix, out);
        else
            fprintf(out, "%*s", indent, "");
        fprintf(out, "%s:", k->key);
        switch (k->type) {
            case CK_MAP:
            case CK_LABEL:
                fputc('\n', out);
                print_struct(out, k->sub, dst, indent + 2, NULL);
                break;
            case CK_MAP_LIST:
            case CK_INT_LIST:
            case CK_STR_LIST: {
                int n;
                memcpy(&n, (const char *)base + k->count_off, sizeof n);
                if (n < 0)
                    n = 0;
                if (n > k->max_count)
                    n = k->max_count;
                if (k->type != CK_MAP_LIST || n == 0) {
                    fputs(" [", out);
                    for (int j = 0; j < n; j++) {
                        if (j)
                            fputs(", ", out);
                        print_scalar(out, k, k->type == CK_INT_LIST ? CK_INT : CK_STR,
                                     dst + (size_t)j * k->size);
                    }
                    fputs("]\n", out);
                    break;
                }
                fputc('\n', out);
                char prefix[64];
                snprintf(prefix, sizeof prefix, "%*s- ", indent + 2, "");
                for (int j = 0; j < n; j++)
                    print_struct(out, k->sub, dst + (size_t)j * k->size, indent + 4, prefix);
                break;
            }
            default:
                fputc(' ', out);
                print_scalar(out, k, k->type, dst);
                fputc('\n', out);
                break;
        }
    }
}

void rd_config_print(const rd_config *cfg, void *out) {
    FILE *f = out;
    fputs("# recdistill effective configuration", f);
    if (cfg->source_path[0]) {
        fputs(" of ", f);
        print_str(f, cfg->source_path, sizeof cfg->source_path);
    }
    fputs("\n", f);
    print_struct(f, &rd__config_root, cfg, 0, NULL);
    fflush(f);
}

// ---------------------------------------------------------------------------------------------
// MPI and lookups.

void rd_config_bcast(rd_config *cfg, int root, MPI_Comm comm) {
    RD_MPI_CHECK(MPI_Bcast(cfg, (int)sizeof *cfg, MPI_BYTE, root, comm));
}

// One branch's layers/heads under a kind that reads neither: a line into buf at *len.
static int warn_branch_blocks(const char *model,
                              int m,
                              const char *branch,
                              int kind,
                              int layers,
                              int heads,
                              char *buf,
                              size_t cap,
                              size_t *len) {
    if (kind != RD_SEQ_MEAN && kind != RD_SEQ_DIN)
        return 0;
    char what[64] = "";
    if (layers != 1)
        snprintf(what, sizeof what, "layers %d", layers);
    if (heads != 2)
        snprintf(what + strlen(what), sizeof what - strlen(what), "%sheads %d",
                 what[0] ? " and " : "", heads);
    if (!what[0])
        return 0;
    if (*len < cap) {
        int n = snprintf(buf + *len, cap - *len,
                         "models[%d].%s: %s %s no effect: model '%s' reads its %s with %s "
                         "(%s.kind %s); only %s.kind transformer has layers and heads\n",
                         m, branch, what, layers != 1 && heads != 2 ? "have" : "has", model,
                         strcmp(branch, "seq") ? "tokens" : "history",
                         kind == RD_SEQ_MEAN ? "mean pooling" : "target attention", branch,
                         kind == RD_SEQ_MEAN ? "mean" : "din", branch);
        *len += n > 0 ? (size_t)n : 0;
        if (*len >= cap)
            *len = cap;
    }
    return 1;
}

// The source model's settings that only a Source Instance Transformer reads, set away from their
// defaults while the source model builds none: tokens.scheme 1 (temporal order: time-ordered
// batches, no user windows, no SIT; worker/source.c) reads none of sit_scheme_keys, and
// tokens.sit_layers 0 none of sit_own_keys (batch_tokens and the store's keys are read by both).
// Not refused: an ablation switches schemes by tokens.scheme alone and keeps the file's SIT
// (tools/ablations.sh iat_temporal, docs/iat.md's (b) variants over configs/ml100k-iat.yaml);
// written by hand, they did nothing.
static const char *const sit_scheme_keys[] = {
    "sit_layers",    "window",    "batch_order",  "sit_labels", "sit_pairs",
    "sit_item_code", "sit_group", "sit_group_by", "two_pass",   NULL};
static const char *const sit_own_keys[] = {
    "sit_labels", "sit_pairs", "sit_item_code", "sit_group", "sit_group_by", "two_pass", NULL};

static int warn_unread_sit(const rd_tokens_config *tc, char *buf, size_t cap, size_t *len) {
    const char *const *keys = tc->scheme == 1 ? sit_scheme_keys : sit_own_keys;
    if (tc->scheme != 1 && tc->sit_layers != 0)
        return 0;
    char set[256] = "";
    size_t sl = 0;
    int n = 0;
    for (const char *const *k = keys; *k; k++) {
        if (at_default(key_of(&tokens_desc, *k), tc, NULL, 0))
            continue;
        rd_fmt_append(set, sizeof set, &sl, "%stokens.%s", n ? ", " : "", *k);
        n++;
    }
    if (!n)
        return 0;
    if (*len < cap) {
        int w = snprintf(buf + *len, cap - *len,
                         tc->scheme == 1
                             ? "%s %s no effect: tokens.scheme 1 (temporal order) builds its "
                               "tokens in time-ordered batches, with no user windows and no "
                               "Source Instance Transformer; only tokens.scheme 2 reads %s\n"
                             : "%s %s no effect: tokens.sit_layers is 0, so the source model has "
                               "no Source Instance Transformer to read %s\n",
                         set, n == 1 ? "has" : "have", n == 1 ? "it" : "them");
        *len += w > 0 ? (size_t)w : 0;
        if (*len >= cap)
            *len = cap;
    }
    return 1;
}

int rd_config_warnings(const rd_config *cfg, char *buf, size_t cap) {
    size_t len = 0;
    int n = 0;
    if (cap)
        buf[0] = '\0';
    for (int m = 0; m < cfg->n_models && m < RD_MAX_MODELS; m++) {
        const rd_model_config *mc = &cfg->models[m];
        n += warn_branch_blocks(mc->name, m, "seq", mc->seq.kind, mc->seq.layers, mc->seq.heads,
                                buf, cap, &len);
        if (mc->tokens.scheme > 0)
            n += warn_branch_blocks(mc->name, m, "tokens", mc->tokens.kind, mc->tokens.layers,
                                    mc->tokens.heads, buf, cap, &len);
    }
    n += warn_unread_sit(&cfg->tokens, buf, cap, &len);
    // A teacher job of a replaying launch trains in full, but its targets go nowhere: the
    // distilled students read the log's (a teacher sends and logs only to a live student), and
    // the report measures no eta against it. Said before its ranks are spent, with what to drop.
    for (int i = 0; cfg->distill.replay && i < cfg->cluster.n_jobs && i < RD_MAX_JOBS; i++) {
        const rd_job_config *j = &cfg->cluster.jobs[i];
        if (j->role != RD_JOB_TEACHER)
            continue;
        n++;
        if (len < cap) {
            int world = rd_config_world_size(cfg);
            int w = snprintf(buf + len, cap - len,
                             "cluster.jobs[%d]: teacher job '%s' trains for nothing: "
                             "distill.replay is true, so the distilled students read their "
                             "targets from distill.target_log, and this teacher sends none, logs "
                             "none and no eta is measured against it; remove it from cluster.jobs "
                             "and launch %d rank%s instead of %d (keep it only to train this "
                             "teacher for its own metrics and checkpoints)\n",
                             i, j->name, world - j->ranks, world - j->ranks == 1 ? "" : "s", world);
            len += w > 0 ? (size_t)w : 0;
            if (len >= cap)
                len = cap;
        }
    }
    if (cap && len >= cap)
        buf[cap - 1] = '\0';
    return n;
}

const rd_model_config *rd_config_find_model(const rd_config *cfg, const char *name) {
    if (!cfg || !name)
        return NULL;
    for (int i = 0; i < cfg->n_models && i < RD_MAX_MODELS; i++)
        if (strcmp(cfg->models[i].name, name) == 0)
            return &cfg->models[i];
    return NULL;
}

const rd_table_config *rd_config_find_table(const rd_config *cfg, const char *name) {
    if (!cfg || !name)
        return NULL;
    for (int i = 0; i < cfg->ps.n_tables && i < RD_MAX_TABLES; i++)
        if (strcmp(cfg->ps.tables[i].name, name) == 0)
            return &cfg->ps.tables[i];
    return NULL;
}

const rd_job_config *rd_config_find_job(const rd_config *cfg, const char *name) {
    if (!cfg || !name)
        return NULL;
    for (int i = 0; i < cfg->cluster.n_jobs && i < RD_MAX_JOBS; i++)
        if (strcmp(cfg->cluster.jobs[i].name, name) == 0)
            return &cfg->cluster.jobs[i];
    return NULL;
}

const char *rd_config_job_init_name(const rd_config *cfg, const rd_job_config *job) {
    const rd_job_config *j = job;
    for (int k = 0; k <= cfg->cluster.n_jobs; k++) {
        if (!j->init_as[0] || strcmp(j->init_as, j->name) == 0)
            return j->name;
        const rd_job_config *n = rd_config_find_job(cfg, j->init_as);
        if (!n)
            return j->init_as; // not a job of this config (validation refuses it)
        j = n;
    }
    return NULL; // a cycle
}

int rd_config_token_job(const rd_config *cfg) {
    for (int i = 0; i < cfg->cluster.n_jobs && i < RD_MAX_JOBS; i++) {
        const rd_model_config *m = rd_config_find_model(cfg, cfg->cluster.jobs[i].model);
        if (m && m->tokens.scheme > 0)
            return i;
    }
    return -1;
}

int rd_config_world_size(const rd_config *cfg) {
    long long n = cfg->cluster.ps_ranks;
    for (int i = 0; i < cfg->cluster.n_jobs && i < RD_MAX_JOBS; i++)
        n += cfg->cluster.jobs[i].ranks;
    return n > INT_MAX || n < 0 ? -1 : (int)n;
}
