// rd/config.h — the run configuration: one YAML file parsed once into plain structs.
//
// Defines:
//   rd_config and its per-module sub-structs:
//     rd_run_config      (run:)       name, output folder, seed, log level
//     rd_cluster_config  (cluster:)   PS ranks and the worker jobs (teacher, students)
//     rd_data_config     (data:)      source (synthetic | movielens100k | movielens1m | csv),
//                                     schema, synthetic generator, time split, negative sampling
//     rd_ps_config       (ps:)        embedding tables, optimizers, admission/eviction, checkpoints
//     rd_model_config    (models:)    named model architectures built at start-up
//     rd_train_config    (train:)     batch phase and dense optimizer
//     rd_tokens_config   (tokens:)    IAT instance-token store and source model
//     rd_distill_config  (distill:)   Rec-Distill: alpha, towers, debiasing, transport, target log
//     rd_output_config   (output:)    metrics files and plots
//   rd_config_defaults()  fill every field with its documented default
//   rd_config_load()      parse + validate a YAML file (errors name file:line:column and key path)
//   rd_config_parse_string()  same from memory (tests, fuzzing)
//   rd_config_validate()  range checks of every field + cross-field checks (also run by load)
//   rd_config_warnings()  settings of a valid config that have no effect (printed, not refused)
//   rd_config_check_model/table()  the same range and string checks of one models[] / ps.tables[]
//                         entry read from a file (a serving bundle), not from YAML
//   rd_config_resolve()   fill derived defaults left empty (paths under run.out_dir, ...)
//   rd_config_print()     the effective config as YAML (rank 0 prints it at start-up)
//   rd_config_bcast()     rank `root` -> all ranks, as bytes
//   rd_config_find_model/table/job()  lookups by name
//
// YAML layout: top-level keys run, cluster, data, ps, models, train, tokens, distill, output; each
// YAML key is the field name unless a comment says `YAML: key`. A count field `n_x` is never
// written: it is the length of the YAML list `x`. configs/reference.yaml shows every key.
// Booleans (int 0/1) accept true/false/yes/no/on/off/1/0; integers accept 1_000, 0x10 and exact
// float notation (2e5); byte sizes also accept KiB/MiB/GiB/TiB suffixes ("64MiB"). Strings and
// enum names are case-sensitive. Relative paths are relative to the working directory unless a
// comment says otherwise. Range errors, unknown keys, etc. are RD_ERR_CONFIG with
// "file:line:col: key.path: problem".
//
// Invariant: no pointers anywhere in rd_config — only fixed-size arrays — so it can be sent with
// MPI_Bcast as raw bytes (STYLE.md 7). Modules receive a const pointer to their own sub-struct and
// never read YAML or the environment themselves.
#ifndef RD_CONFIG_H
#define RD_CONFIG_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_NAME_MAX          32    // names: jobs, tables, models, fields, columns (incl. NUL)
#define RD_PATH_MAX          1024  // file system paths (incl. NUL)
#define RD_MAX_JOBS          8     // worker jobs in one launch
#define RD_MAX_TABLES        32    // embedding tables on the PS group
#define RD_MAX_MODELS        8     // model architectures
#define RD_COLUMN_MAX        128   // column names of logs and side tables (incl. NUL)
#define RD_MAX_COLUMNS       256   // columns a schema lists (a header line may name more)
#define RD_MAX_FIELDS        32    // features of the schema (categorical + multi + numeric)
#define RD_MAX_SIDE          4     // side tables joined by key
#define RD_MAX_LABEL_VALUES  8     // data.schema.label.values
#define RD_MAX_LAYERS        8     // hidden layers of one MLP
#define RD_SPLIT_MAX_WINDOWS 10000 // data.split.stream_windows
#define RD_MAX_EPOCHS        1000  // train.epochs
#define RD_MAX_FEATURES      32    // features one model embeds
#define RD_MAX_STATS         8     // windows of seq.stats
#define RD_MAX_TOKEN_SIDE    16    // feedback fields stored with each token (= RD_TOKEN_MAX_SIDE)
#define RD_STATS_PRIOR       10 // pseudo-events of the global mean in seq.stats_residual's item means

// Limits of the paths a run derives (bytes, without the NUL). rd_config_validate checks each
// against the longest path the run will make, so that no launch trains and then fails to write.
// A checkpoint is written into "<ps.checkpoint_dir>/<job>/.step-NNNNNNNNNNNN.partial", whose
// path the PS ranks receive in a fixed RD_PATH_MAX - 16 byte field (rd_kv_save).
#define RD_CKPT_PARTIAL_MAX (RD_PATH_MAX - 17)
// data.dir: the dataset is built in "<data.dir>.tmp-<pid>.<host>" beside it (rd_dataset_prepare).
#define RD_DATA_DIR_MAX (RD_PATH_MAX - 33)

// ---------------------------------------------------------------------------------------------
// run:

typedef struct rd_run_config {
    char name[RD_NAME_MAX]; // run name, letters/digits/_-. only, not starting with '.' (as every
                            // name: a path component); default "run"
    char
        out_dir[RD_PATH_MAX]; // run folder for metrics, reports, checkpoints; default "runs/<name>"
    uint64_t seed;            // master seed; every RNG stream splits from it; default 42
    char log_level[8];        // error | warn | info | debug; default "info"
} rd_run_config;

// ---------------------------------------------------------------------------------------------
// cluster:

typedef enum rd_job_role {
    RD_JOB_TEACHER = 0, // trains the big model, emits distillation targets
    RD_JOB_STUDENT = 1, // trains a small model; receives targets when distill = true
} rd_job_role;

typedef struct rd_negsample_config {
    double rate;     // keep this fraction of negatives (q_-), (0,1]; 1 = no sampling;
                     // default 1. Cross-debias turns the keep rates into Rec-Distill's
                     // r_s / p_X = pos_rate / rate (rd_debias_from_sampling, rd/distill.h)
    double pos_rate; // fraction of positives kept (q_+), (0,1]; default 1. It enters the
                     // calibration through r_s, not as Eq. 12's r_+ (which stays 1)
} rd_negsample_config;

typedef struct rd_job_config {
    char name[RD_NAME_MAX];        // job name, unique, required (e.g. "teacher", "student_raw")
    int role;                      // rd_job_role; YAML: teacher | student; required
    int ranks;                     // worker ranks of this job, 1..65536; default 1
    char model[RD_NAME_MAX];       // name of an entry of models:; required
    int distill;                   // student only: 1 = learn from the teacher's targets; default 0
    char teacher[RD_NAME_MAX];     // student with distill: the job whose targets it joins; default
                                   // the first teacher job; an error without distill
    char init_as[RD_NAME_MAX];     // initialise the dense parameters as job NAME would (the same
                                   // draws for the same shapes): a no-distillation twin started
                                   // from its distilled student's point; "" = own name
    rd_negsample_config negatives; // this job's own negative sampling of its training records,
                                   // on top of data.negatives (which every job reads): each
                                   // record is kept or not by a hash of (run seed, record id),
                                   // the same on every rank and in every replay; jobs at the
                                   // same rates keep the same records, a lower rate a subset.
                                   // Evaluation reads every record. Default rate 1, pos_rate 1
} rd_job_config;

typedef struct rd_cluster_config {
    int ps_ranks;                    // parameter-server ranks P, 1..4096; default 1
    int n_jobs;                      // number of entries in jobs (at least 1)
    rd_job_config jobs[RD_MAX_JOBS]; // YAML: jobs: list of maps. Worker jobs; ranks are laid
                                     // out PS first, then jobs in this order (MPMD launch)
    int blas_threads;                // OpenBLAS threads per rank, 1..256; default 1
    int poll_us_max;                 // max backoff of polling loops, 1..1e6 us; default 200
    int freeze_timeout_s;            // a rank stopped (SIGSTOP) or in one uninterruptible kernel
                                     // wait this long is named and killed, which ends the launch
                                     // (rd/watch.h); 0 = never; 0..604800; default 600
} rd_cluster_config;

// ---------------------------------------------------------------------------------------------
// data:

typedef enum rd_data_source {
    RD_DATA_SYNTHETIC = 0,     // built-in long-range generator (data.synthetic)
    RD_DATA_MOVIELENS100K = 1, // u.data, u.user, u.item in data.input
    RD_DATA_MOVIELENS1M = 2,   // ratings.dat, users.dat, movies.dat ("::"-separated)
    RD_DATA_CSV = 3,           // any CSV/TSV log described by data.schema
} rd_data_source;

typedef enum rd_field_kind {
    RD_FIELD_CATEGORICAL = 0, // one value -> one key
    RD_FIELD_MULTI = 1,       // several values separated by `sep` -> up to max_len keys
    RD_FIELD_NUMERIC = 2,     // a float (optionally log1p-transformed)
    RD_FIELD_FEEDBACK = 3,    // a float known only once the event has happened (an explicit
                              // rating, a dwell time): never a model input for its own event;
                              // models read it over a user's earlier events (seq.stats_feedback)
} rd_field_kind;

/** 1 for the kinds stored as one float per record (numeric, feedback), 0 for key slots. */
static inline int rd_field_is_float(int kind) {
    return kind == RD_FIELD_NUMERIC || kind == RD_FIELD_FEEDBACK;
}

/** data.schema.fields[].missing: what a missing numeric value becomes. */
typedef enum rd_missing_fill {
    RD_MISSING_ERROR = 0, // refuse the row (file:line)
    RD_MISSING_ZERO = 1,  // 0
    RD_MISSING_MEAN = 2,  // the batch period's mean of the present values (no leakage)
} rd_missing_fill;

/** data.schema.side[].missing: a join key absent from the side table. */
typedef enum rd_side_missing {
    RD_SIDE_MISSING_ERROR = 0, // refuse the log (file:line, key)
    RD_SIDE_MISSING_EMPTY = 1, // the table's fields take missing values
} rd_side_missing;

typedef enum rd_label_op {
    RD_LABEL_GE = 0, // label = value >= threshold
    RD_LABEL_GT = 1,
    RD_LABEL_EQ = 2,
    RD_LABEL_NE = 3,
    RD_LABEL_LE = 4,
    RD_LABEL_LT = 5,
} rd_label_op;

typedef struct rd_field_config {
    char name[RD_NAME_MAX];     // feature name (used in keys and in models.features); required,
                                // unique, not "user" or "item"
    char column[RD_COLUMN_MAX]; // column that holds it (in the log, or in side table `side`);
                                // default: the field name. Not the log's label column, unless
                                // kind is feedback
    char side[RD_NAME_MAX];     // "" = the interaction log; else the name of a side table
    int kind;                   // rd_field_kind; YAML: categorical | multi | numeric | feedback;
                                // default categorical
    int max_len;                // multi: max values kept per event, 1..64; default 8
    char sep[4];                // multi: value separator; default "|"
    int log1p;                  // numeric, feedback: apply log1p(max(x,0)) before storing;
                                // default 0
    int flags;                  // categorical: 1 = value is a 0/1 flag column (multi-hot from
                                // several columns, e.g. MovieLens genres); default 0
    int standardize;            // numeric: 1 = store (x - mean) / std, mean and std of the batch
                                // period's events (after log1p), recorded in the dataset
                                // (rd_dataset_field) and in serving bundles; default 0
    int missing;                // rd_missing_fill; YAML: error | zero | mean. numeric, feedback:
                                // what a missing value (empty, NA, N/A, NaN, null, None, any case)
                                // becomes: error = refuse the row, zero = 0 (the raw value, before
                                // log1p/standardize), mean = the mean of the field's present
                                // values over the batch period's events (stored values, after
                                // log1p; 0 when none). A side table's `missing: empty` gives its
                                // numeric fields this fill too. Default error
} rd_field_config;

typedef struct rd_side_config {
    char name[RD_NAME_MAX]; // side table name, e.g. "users"; required
    char path[RD_PATH_MAX]; // file, relative to data.input when not absolute; required
    char delimiter[4];      // "," "\t" "|" "::" ...; default ","
    int header;             // 1 = first line names the columns; default 0
    int n_columns;          // number of names in columns (when header = 0)
    char columns[RD_MAX_COLUMNS][RD_COLUMN_MAX]; // YAML: columns: [..]; names in file order
    char key_column[RD_COLUMN_MAX];  // column joined with join_column of the log; required
    char join_column[RD_COLUMN_MAX]; // column of the log holding the key (e.g. "user"); required
    char encoding[12];               // "utf-8" | "latin-1"; default "utf-8"
    int missing; // rd_side_missing; YAML: error | empty. A log row whose join key has no row
                 // here: error = refuse the log; empty = join missing values (categorical and
                 // multi fields: no key, as an empty value; numeric ones: their fields[].missing
                 // fill, which must then not be error). Default error
} rd_side_config;

typedef struct rd_schema_config {
    char path[RD_PATH_MAX]; // interaction log, relative to data.input when not absolute (csv:
                            // required)
    char delimiter[4];      // default ","  (write "\t" in double quotes for TSV)
    int header;             // 1 = first line holds column names; default 1
    int quoting;            // 1 = RFC-4180 quotes: a field that starts with '"' runs to the
                            // closing quote (may hold delimiters); 0 = quotes are ordinary
                            // bytes ("::" or "|" files whose text starts with a quote); for the
                            // log and its side tables; default 1
    int n_columns;          // number of names in columns (required when header = 0)
    char columns[RD_MAX_COLUMNS][RD_COLUMN_MAX]; // YAML: columns: [..]
    char user_column[RD_COLUMN_MAX];             // csv: required (and in columns when header = 0)
    char item_column[RD_COLUMN_MAX];             // csv: required
    char time_column[RD_COLUMN_MAX];             // csv: required
    char time_format[12]; // "unix" (seconds) | "unix_ms" | "iso8601"; default "unix"
    // YAML: label: "rating >= 4"  (rule COLUMN OP NUMBER, OP one of >= > == != <= < =)
    //   or  label: {column: rating, op: ">=", threshold: 4}
    //   or a text rule (label_values, at the end of the struct)
    char label_column[RD_COLUMN_MAX]; // YAML: label.column; csv: required
    int label_op;                     // YAML: label.op; rd_label_op; default ">="
    double label_threshold;           // YAML: label.threshold; default 1 (a 0/1 label column)
    int n_fields;
    rd_field_config fields[RD_MAX_FIELDS]; // YAML: fields: list of maps; features besides the
                                           // user and item ids
    int n_side;
    rd_side_config side[RD_MAX_SIDE]; // YAML: side: list of maps
    // A label from a text column (an event type): YAML label: 'event == "buy"', or
    // label: {column: event, values: [click, buy]} (op "==", implied: the label is 1 when the
    // column's text is one of the values, exact bytes) or {column, op: "!=", values} (none of
    // them); threshold is then unused. 0 values = the numeric rule above.
    int n_label_values;
    char label_values[RD_MAX_LABEL_VALUES][RD_NAME_MAX];
    char encoding[12]; // the log's text: "utf-8" | "latin-1" (converted to UTF-8 before it is
                       // hashed, as a Latin-1 side table is); default "utf-8"
    int drop_repeats;  // 1 = drop the rows that repeat an earlier row exactly (every column
                       // of the log the same: a doubled export, overlapping parts); 0 = keep
                       // them (prepare warns); default 0
} rd_schema_config;

typedef struct rd_synthetic_config {
    uint64_t events;       // total events, 1e3 .. 1e9; default 200000
    int users;             // default 2000
    int items;             // default 5000
    int topics;            // latent interest topics; default 32
    int dim;               // latent dimension; default 16
    double drift;          // per-event drift of the short-term interest, 0..1; default 0.02
    double long_range;     // weight of long-range (hundreds of events back) signals; default 1.0
    int memory_span;       // how far back long-range events still matter, events; default 400
    double base_ctr;       // target mean click rate before sampling, (0,1); default 0.3
                           // (users, items 1..1e8; topics 1..4096; dim 1..1024;
                           // long_range 0..1e6; memory_span 1..1e6)
    int contexts;          // per-event request context ("ctx" field) with this many values, 0..64;
                           // 0 = none (the events are then those of a generator without it); see
                           // rd/synth.h for what a context changes. Default 0
    uint64_t seed;         // 0 = derive from run.seed; default 0
    int feedback;          // 1 = each event also has "engagement", a feedback field (rd/synth.h);
                           // 2 = "engagement" holds the event's context kind instead (a diagnostic
                           // oracle; needs contexts); 0 = none (the events are then those of a
                           // generator without it). Default 0
    double context_effect; // with contexts: click-logit offset of a context, + deliberate,
                           // - passive, 0..10; 0 = a context changes only whether the exposure
                           // is remembered (rd/synth.h). Default 0.5
    double memory_rate;    // share of ordinary exposures that become a memory (come back as a
                           // follow-up), 0..1; default 0.25
} rd_synthetic_config;

typedef struct rd_split_config {
    double batch_fraction;   // first fraction of events (time order) = batch period, (0,1);
                             // default 0.8
    double holdout_fraction; // last fraction = holdout window, [0,1); default 0.1; the two sum
                             // to < 1 (the rest is split into the stream windows)
    int stream_windows;      // K windows between batch and holdout, 1..10000; default 5
} rd_split_config;

typedef struct rd_data_config {
    int source;              // rd_data_source; YAML: synthetic | movielens100k | movielens1m | csv;
                             // default synthetic
    char input[RD_PATH_MAX]; // input folder (MovieLens, CSV); default for movielens100k
                             // "../shared/data/movielens-100k", for movielens1m
                             // "../shared/data/movielens-1m", else ""
    char dir[RD_PATH_MAX];   // prepared dataset folder; default "<run.out_dir>/data"
    int history_max;         // longest user history any model reads, 1..4096 events; default
                             // 256; every models[].seq.length must be <= it
    rd_schema_config schema; // csv (and the presets, which fill it)
    rd_synthetic_config synthetic;
    rd_split_config split;
    rd_negsample_config negatives;
} rd_data_config;

// ---------------------------------------------------------------------------------------------
// ps:

typedef enum rd_opt_kind {
    RD_OPT_SGD = 0,
    RD_OPT_ADAGRAD = 1,
    RD_OPT_ADAM = 2,
    RD_OPT_FTRL = 3,
} rd_opt_kind;

typedef struct rd_optim_config {
    int kind;    // rd_opt_kind; YAML: type: sgd | adagrad | adam | ftrl; default adagrad
    float lr;    // learning rate (ftrl: alpha), (0, 1000]; default 0.05
    float beta1; // adam, [0,1); default 0.9
    float beta2; // adam, [0,1); default 0.999
    float eps;   // adam/adagrad, (0,1]; default 1e-8
    float initial_accumulator; // adagrad, 0..1e6; default 0.1
    float l1;                  // ftrl, 0..1e6; default 0
    float l2;                  // ftrl (and weight decay for others), 0..1e6; default 0
    float beta;                // ftrl, >= 0; default 1
} rd_optim_config;

typedef struct rd_table_config {
    char name[RD_NAME_MAX]; // unique table name; required
    int dim;                // embedding dim, 1..1024; required
    rd_optim_config optim;  // server-side optimizer; YAML: optimizer: {type: adagrad, lr: ...}
    float init_std;         // N(0, init_std) initialisation from the key, 0..10; default 0.01
    int admit_count;        // create a row after this many sightings; 1 = always; default 1
    int64_t ttl;            // evict rows unseen for this long in stream time (seconds); 0 = never;
                            // default 0
    uint64_t capacity;      // initial rows per shard (grows), 1..2^40; default 4096
    char init_as[RD_NAME_MAX]; // draw initial rows as table NAME does (same dim required);
                               // "" = own name
} rd_table_config;

typedef enum rd_shm_mode {
    RD_SHM_AUTO = 0, // use a shared-memory region with every PS rank on this node that maps it
    RD_SHM_OFF = 1,  // every payload goes through MPI
} rd_shm_mode;

typedef struct rd_ps_config {
    int n_tables;
    rd_table_config tables[RD_MAX_TABLES]; // YAML: tables: list of maps
    int sync;                              // 1 = every push applied before the next pull; default 1
    int staleness;          // async: max steps a worker may run ahead; 0 = unbounded; default 0
    uint64_t max_msg_bytes; // largest accepted request, 4 KiB..1 TiB; default 64 MiB
    int shm;                // rd_shm_mode: same-node shared-memory data path; default auto
    uint64_t shm_bytes;     // shared-memory region per worker (virtual; pages are used as
                            // requests need them), 1 MiB..1 TiB; default 256 MiB
    char checkpoint_dir[RD_PATH_MAX]; // default "<run.out_dir>/ckpt"
    int checkpoint_every;             // steps between checkpoints; 0 = only at the end; default 0
    int checkpoint_keep;              // checkpoints retained; default 2
    int checkpoint_every_s;           // also when this many seconds passed since the last one
                                      // (job rank 0's clock, checked between steps); 0 = off
    int checkpoint_every_windows;     // also after the last step of every N-th stream window;
                                      // 0 = off
} rd_ps_config;

// ---------------------------------------------------------------------------------------------
// models:

typedef enum rd_pooling {
    RD_POOL_SUM = 0,
    RD_POOL_MEAN = 1,
} rd_pooling;

typedef enum rd_seq_kind {
    RD_SEQ_NONE = 0,        // no sequence branch
    RD_SEQ_MEAN = 1,        // mean of the history embeddings
    RD_SEQ_DIN = 2,         // target attention (DIN)
    RD_SEQ_TRANSFORMER = 3, // self-attention blocks with a query built from the request
} rd_seq_kind;

typedef struct rd_feature_use {
    char field[RD_NAME_MAX]; // "user" / "item", "hour" / "weekday", or a categorical or multi
                             // field of the data source; required (checked against the source's
                             // fields: the synthetic generator's, a MovieLens preset's or
                             // data.schema.fields)
    char table[RD_NAME_MAX]; // PS table that embeds it; required
    int pooling;             // multi-valued fields: rd_pooling; YAML sum | mean; default mean
} rd_feature_use;

typedef struct rd_seq_config {
    int kind;                // rd_seq_kind; YAML none | mean | din | transformer; default none
    int length;              // events of history read, 1..4096 (<= data.history_max); default 16
    char table[RD_NAME_MAX]; // table embedding history items (and labels); default: item's table
    int layers;              // transformer blocks, 1..64; default 1
    int heads;               // attention heads, 1..64; must divide the width; default 2
    int dim;                 // model width inside the branch (0 = table dim); default 0
    int with_labels;         // add an embedding of each history event's label; default 1
    int view;                // a second view of the same history beside the branch's output:
                             // rd_seq_kind, YAML none | mean | din; default none
    int view_length;         // the view reads the view_length most recent events, 1..length;
                             // default 16
    int view_by_label;       // the view's input is [x * y | x * (1 - y)]: liked and disliked
                             // events apart (needs with_labels); default 0
    int n_stats;
    int stats[RD_MAX_STATS]; // history statistics as dense inputs: log1p of the user's count of
                             // earlier events, then for each window k the mean label of the k
                             // latest earlier events (each 1..data.history_max, ascending); works
                             // with seq.kind none too; default [] (none)
    char stats_feedback[RD_NAME_MAX]; // a feedback field of the dataset: each window also gives
                                      // its mean (needs stats); default "" (none)
    int stats_residual; // each window also gives the mean residual of the feedback: value minus
                        // the item's mean value over its events before that one (shrunk to the
                        // running global mean with weight RD_STATS_PRIOR); a user's harshness.
                        // Needs stats_feedback; default 0
} rd_seq_config;

typedef struct rd_token_use {
    int scheme;  // 0 = off, 1 = temporal-order tokens, 2 = user-order tokens; default 0; when
                 // > 0 it must equal tokens.scheme and tokens.source_model must be set
    int length;  // tokens fetched (L), 1..4096; default 64
    int kind;    // rd_seq_kind of the branch over tokens (YAML names as seq.kind); default
                 // transformer
    int layers;  // 1..64; default 1
    int heads;   // 1..64; default 2
    int adapter; // adapter MLP width, 1..65536; default 64
    int gate;    // 1 = the branch output is scaled per channel by a learned gate that starts at 0,
                 // so the model starts as without tokens; default 0
    int n_stats;
    int stats[RD_MAX_STATS]; // summaries of the fetched tokens as dense inputs (rd_token_summary):
                             // log1p of the count fetched, then for each window k the mean label
                             // and the mean of each side value (tokens.side) of the k latest
                             // tokens (each 1..length, ascending); default [] (none)
    int same_time; // which tokens of the event's own timestamp are read: 0 = none (strictly before
                   // its time), 1 = those of events earlier in the dataset's order (instance id),
                   // as the item history reads a log's same-second events; YAML exclude |
                   // earlier; default exclude
    int search;    // target search (SIM's hard search): 0 = off, the branch reads the `length`
                   // latest tokens; N > 0 = the latest N tokens are fetched and the branch reads
                   // the `length` latest of those whose item key is the request's item (the same
                   // item shown before, with its label; `stats` summarise those), length <=
                   // N <= 4096; default 0
    int norm;      // 1 = each fetched token is standardised before the adapter (its mean over the
                   // d values removed, divided by their std: a layer norm without weights).
                   // Sigmoid tokens sit near 0.5 with a small spread that the adapter otherwise
                   // has to learn to amplify; default 0
    char search_by[RD_NAME_MAX]; // what tokens.search matches: "item" (the default) or a
                                 // categorical attribute of the item (a field with one value per
                                 // item: a category, a series; SIM's search by category). A
                                 // token is picked when its event's item has the request's value
    int query; // what the branch's query (din | transformer) is built from: 0 = the request
               // features x_req; 1 = x_req and the item-ID history branch's output (IAT's
               // F_compress(concat(X_seq, X_non-seq)): a query that knows the user's recent
               // sequence), needs a seq branch; YAML request | request_seq; default request
    int label; // what the branch reads of each token's stored label: 0 = a learned embedding of
               // it, added to the token's side input (YAML embed, the default); 1 = nothing
               // (YAML none): the branch reads the token's values and side values alone, an
               // ablation of what the compression holds beyond the label. tokens.stats still
               // summarise the labels
} rd_token_use;

// Serving bundles store this struct as the build lays it out: a member added to it (or to a
// struct inside it) is listed in worker/serve.c's mc_added, so bundles of earlier builds still
// open.
typedef struct rd_model_config {
    char name[RD_NAME_MAX]; // unique model name; required
    int n_features;
    rd_feature_use features[RD_MAX_FEATURES]; // YAML: features: list of {field, table, pooling}
    rd_seq_config seq;   // hand-crafted item-ID sequence branch (YAML map seq:)
    rd_token_use tokens; // IAT instance-token branch (YAML map tokens:)
    int n_mlp;
    int mlp[RD_MAX_LAYERS]; // backbone hidden sizes, e.g. [256, 128, 64]; each 1..65536;
                            // default []
    int n_tower;
    int tower[RD_MAX_LAYERS]; // hidden sizes of each tower (students with two towers); default []
    int two_towers;           // 1 = main + auxiliary tower (distilled students); default 0
    int layer_norm;           // layer norm on the backbone input; default 0
    char activation[8];       // relu | gelu; default relu
    float dropout;            // dropout rate on every backbone MLP layer's output while training,
                              // in [0, 1); default 0 (needs an mlp)
} rd_model_config;

// ---------------------------------------------------------------------------------------------
// train:

typedef enum rd_order {
    RD_ORDER_TIME = 0,    // global time order
    RD_ORDER_USER = 1,    // grouped by user, time-sorted within a user
    RD_ORDER_WINDOWS = 2, // tokens.batch_order only: windows of T consecutive events of one
                          // user, every user's windows interleaved in the order they start
} rd_order;

typedef struct rd_train_config {
    int batch_size;     // examples per worker step, 1..2^20; default 256
    int epochs;         // passes over the batch period, 0..1000; default 1
    int order;          // rd_order; YAML time | user; default time
    char optimizer[8];  // dense: sgd | adam | adamw; default adam
    float lr;           // (0, 1000]; default 1e-3
    float beta1;        // [0,1); default 0.9
    float beta2;        // [0,1); default 0.999
    float eps;          // (0,1]; default 1e-8
    float weight_decay; // 0..1000: sgd, adam: L2 in the gradient; adamw: decoupled; default 0
    int eval_every;     // steps between progress lines, >= 1; default 100
} rd_train_config;

// ---------------------------------------------------------------------------------------------
// tokens:

typedef enum rd_sit_group {
    RD_SIT_GROUP_USER = 0, // tokens.sit_group user: a user's events
    RD_SIT_GROUP_ITEM = 1, // tokens.sit_group item: a user's events of one item
} rd_sit_group;

typedef struct rd_tokens_config {
    int dim;                     // token dimension d, 1..4096; default 64
    char store_dir[RD_PATH_MAX]; // LMDB store folder; default "<run.out_dir>/tokens"
    char dtype[8];               // fp32 | fp16; default fp32
    int scheme;      // which scheme the source model builds: 1 temporal, 2 user; default 2
    int sit_layers;  // Source Instance Transformer layers (user order), 0..64; default 2
    int window;      // T: tokens per user window in the source model, 1..4096; default 32
    int batch_order; // rd_order; YAML time | user | windows: how the user-order source model
                     // walks the batch period: user = users one after the other in windows of T
                     // events (the paper's batch mode), time = time-ordered batches with each
                     // user's previous tokens fetched frozen (the streaming mode of the stream),
                     // windows = windows of T events as in user, those of all users interleaved
                     // by start time (many users per batch, every token of a window trained
                     // through the SIT); default time
    int sit_labels;  // 1 = the SIT also reads each earlier instance's label (position p gets the
                     // label embedding of position p - 1, never its own); default 1
    char source_model[RD_NAME_MAX]; // architecture of the source model (models:); default ""
    uint64_t map_size; // initial LMDB map size per shard, 1 MiB..16 TiB (grows); default
                       // 64 MiB
    int append_batch;  // tokens per write transaction, 1..2^24; default 4096
    int n_side;        // number of names in side
    char side[RD_MAX_TOKEN_SIDE][RD_NAME_MAX]; // feedback fields of the dataset stored with each
                                               // token as side information (a rating, a dwell
                                               // time), read by every token branch; default []
    int side_residual; // 1 = each side field also stores its residual: the value minus the mean
                       // of that field over the item's earlier events (rd_dataset_item_means);
                       // needs side; default 0
    int huge_pages;    // RD_TOKEN_HUGE_* (rd/tokens.h); YAML off | auto: once the store is built,
                       // each PS rank maps its shards in 2 MiB pages (re-reading them when they
                       // fit in half of the node's available memory); default auto
    int sit_pairs;     // 1 = each instance takes two SIT positions: itself (no label), then itself
                       // plus its own label, which only later instances' positions see (the
                       // label then sits with its own token instead of the next one's); needs
                       // sit_labels; default 0
    int sit_item_code; // 1 = each SIT position also adds a fixed code of its instance's item
                       // (RD_SOURCE_ITEM_CODE per dimension, signs from a hash of the item key):
                       // the same item gives the same code, so the SIT can find a user's earlier
                       // events of an item as the teacher's token search does; default 0
    int sit_group;     // rd_sit_group; YAML user | item: the sequence the SIT reads for an
                       // instance: its user's events (of its batch group and the frozen prefix),
                       // or only those of its own item among them (a search by item, as the
                       // teacher's token branch does, within the same T events); default user
    char sit_group_by[RD_NAME_MAX]; // with sit_group item: "item" (the default) or a categorical
                                    // attribute of the item: the SIT of an instance reads its
                                    // user's events whose item has the same value (the same
                                    // series), as models[].tokens.search_by
    int batch_tokens; // rd_batch_tokens; YAML first_pass | final: which model writes the batch
                      // period's tokens: the source model in its first pass (each token before
                      // the update on its own event, as the stream's) or, after its last batch
                      // epoch, the trained model in one more pass without training (in-sample
                      // tokens, as the holdout's are written by the model at its end); default
                      // first_pass
    int two_pass;     // 1 = the user-order source model trains each batch-period step twice: its
                      // groups in time order (writing the tokens, as without), then each group's
                      // events in reverse order, so that a token is also trained to serve its
                      // user's earlier events (IAT's appendix "two-pass" training); the stream and
                      // the holdout stay in time order. Ignored without a SIT (scheme 1, sit_layers
                      // 0); default 0
} rd_tokens_config;

typedef enum rd_batch_tokens {
    RD_BATCH_TOKENS_FIRST_PASS = 0, // tokens.batch_tokens first_pass
    RD_BATCH_TOKENS_FINAL = 1,      // tokens.batch_tokens final
} rd_batch_tokens;

/** Whether a search_by / sit_group_by names the item itself ("" reads as the item too). */
static inline int rd_field_is_item(const char *field) {
    return field[0] == '\0' || strcmp(field, "item") == 0;
}

/** Side values per token that a tokens: section asks for (tokens.side, twice with residuals). */
static inline int rd_tokens_side_width(const rd_tokens_config *t) {
    return t->n_side * (t->side_residual ? 2 : 1);
}

// ---------------------------------------------------------------------------------------------
// distill:

/** Most targets one teacher rank may have in flight to a student (distill.max_in_flight x
 *  distill.batch): the student's join table costs about 256 bytes per such target. */
#define RD_DISTILL_MAX_IN_FLIGHT (1 << 20)

typedef struct rd_distill_config {
    float alpha;       // weight of the distillation BCE in the aux tower, 0..1e6; default 1
    float temperature; // tau, 0.01..1000 (1 = plain BCE against sigmoid(z_t)); default 1
    int aux_tower;     // 1 = distill into the auxiliary tower only (the distilled
                       // students' models then need two_towers: true); default 1
    int aux_task;      // 1 = the auxiliary tower learns the hard labels too (Rec-Distill:
                       // task + alpha * distill); 0 = the distillation term alone (ExFM's
                       // auxiliary head); needs aux_tower; default 1
    int debias;        // 1 = cross-debias through the student's calibration f; default 1
    float bias;        // b_s of the calibration; default 0
    int start_window;  // first stream window that uses targets (-1 = also batch phase);
                       // < data.split.stream_windows; default -1
    int start_epoch;   // with start_window -1: first batch epoch whose targets are used (the
                       // teacher's logits of its earlier passes come from a less trained
                       // teacher); < train.epochs; default 0
    int max_in_flight; // target messages in flight per sender, 1..65536; default 8
    int batch;         // targets per message, 1..2^20 (and max_in_flight x batch <= 2^20,
                       // RD_DISTILL_MAX_IN_FLIGHT); default 1024
    int wait_ms;       // bounded wait for a late target, 0..1e7 ms; default 2000
    char target_log[RD_PATH_MAX]; // LMDB target log; default "<run.out_dir>/targets"
    int replay;         // 1 = read targets from target_log instead of a live teacher (needs a job
                        // with distill: true); default 0
    int debias_teacher; // rd_debias_side: whose calibration the teacher's logit goes through
                        // under debias; YAML student | teacher; default student
} rd_distill_config;

/** distill.debias_teacher. */
typedef enum rd_debias_side {
    RD_DEBIAS_STUDENT = 0, // Rec-Distill's cross-debias: the teacher's raw logit through the
                           // student's f_S (T2' = f_S(T1)), compared with f_S(student logit)
    RD_DEBIAS_TEACHER = 1, // each logit through its own job's f: f_T(teacher logit), with the
                           // teacher's keep rates, against f_S(student logit) — both then
                           // estimate the unsampled probability
} rd_debias_side;

// ---------------------------------------------------------------------------------------------
// output:

typedef struct rd_output_config {
    char metrics_format[8]; // csv | jsonl; default csv
    int plot;               // 1 = write a PNG of AUC per window; default 1
    int progress_every_s;   // seconds between progress lines, 0..86400; default 10
} rd_output_config;

// ---------------------------------------------------------------------------------------------
// The whole configuration.

typedef struct rd_config {
    char source_path[RD_PATH_MAX]; // file it was loaded from ("" for strings)
    rd_run_config run;
    rd_cluster_config cluster;
    rd_data_config data;
    rd_ps_config ps;
    int n_models;
    rd_model_config models[RD_MAX_MODELS]; // YAML: models: list of maps
    rd_train_config train;
    rd_tokens_config tokens;
    rd_distill_config distill;
    rd_output_config output;
} rd_config;

/** Fill every field with its documented default (no tables, models or jobs). memsets the whole
 *  struct first (deterministic padding), then resolves the derived paths as rd_config_resolve.
 *  Configs built in code from it fail rd_config_validate until they get a job and its model. */
void rd_config_defaults(rd_config *cfg);

/**
 * Fill derived defaults that are still empty: run.out_dir ("runs/<name>"), data.dir,
 * ps.checkpoint_dir, tokens.store_dir, distill.target_log (under run.out_dir), data.input of the
 * MovieLens sources, a field's column (its name), a distilled student's teacher (the first
 * teacher job) and a sequence branch's table (the table of the model's "item" feature).
 * Idempotent; rd_config_load calls it. Call it after editing run.name / run.out_dir in code
 * and clearing the derived paths you want recomputed.
 * @return RD_OK or RD_ERR_CONFIG (a derived path would not fit RD_PATH_MAX)
 */
int rd_config_resolve(rd_config *cfg, rd_errbuf *eb);

/**
 * Move the run to folder `dir` (`train --out DIR`, `export --run DIR`): run.out_dir becomes dir,
 * and every path under the old run.out_dir (data.dir, ps.checkpoint_dir, tokens.store_dir,
 * distill.target_log: "<old>/REST") becomes "<dir>/REST" (defaults and names set by hand
 * alike); a path that climbs out through a ".." component, and paths set elsewhere, stay. Then
 * resolves and validates (the new paths must fit their limits too).
 * @return RD_OK, RD_ERR_ARG (dir too long, or with a control character) or RD_ERR_CONFIG
 */
int rd_config_move_out_dir(rd_config *cfg, const char *dir, rd_errbuf *eb);

/**
 * Parse and validate a YAML run configuration. Besides rd_config_validate's checks, refuses a
 * branch's settings written while its switch was not (models[].seq keys without seq.kind,
 * models[].tokens keys without tokens.scheme, tokens.source_model with no job's model reading
 * tokens or writing tokens.scheme): only the loader knows which keys the file wrote. A switch
 * written to off (seq.kind: none, tokens.scheme: 0) keeps its settings.
 * @param[in]  path  YAML file
 * @param[out] cfg   filled on success; unspecified on failure
 * @param[out] eb    on failure "path:line:col: key.path: what is wrong" (may be NULL)
 * @return RD_OK, RD_ERR_IO (unreadable), RD_ERR_CONFIG (syntax, unknown key, wrong type,
 *         out-of-range, missing or duplicate key, failed cross-check)
 */
int rd_config_load(const char *path, rd_config *cfg, rd_errbuf *eb);

/** Same as rd_config_load from a buffer; `name` stands for the file name in messages. */
int rd_config_parse_string(
    const char *text, size_t len, const char *name, rd_config *cfg, rd_errbuf *eb);

/** At most this many overrides (`--set`) per load. */
#define RD_CONFIG_MAX_SETS 64

/**
 * rd_config_load with overrides (`recdistill <command> CONFIG --set PATH=VALUE`), applied in
 * order after the file is parsed and before it is resolved and validated. PATH is a dotted key
 * path: map keys, and in a list of maps an entry by its name or its index (models.teacher.seq.kind,
 * ps.tables.t_item.optimizer.lr, cluster.jobs.0.ranks; `ps.tables[t_item]` for a name with a
 * '.'); VALUE is YAML (3, din, [64, 32], {kind: mean, length: 16}; empty = null). A value
 * replaces the whole of what the file wrote at PATH (a map's keys that VALUE leaves out take
 * their defaults; a list becomes VALUE), as tools/variant.sh does; a later override wins over an
 * earlier one. A key the file did not write is added (every key of the tables exists); an entry
 * that the list does not hold is an error. Messages about a key at or under an override's PATH
 * name the override ("--set PATH=VALUE: key.path: what is wrong") instead of a file position.
 * @param sets  n_sets strings "PATH=VALUE" (n_sets 0..RD_CONFIG_MAX_SETS; sets may be NULL if 0)
 * @return as rd_config_load; RD_ERR_CONFIG for a bad override
 */
int rd_config_load_sets(
    const char *path, const char *const *sets, int n_sets, rd_config *cfg, rd_errbuf *eb);

/** rd_config_load_sets from a buffer; `name` stands for the file name in messages. */
int rd_config_parse_string_sets(const char *text,
                                size_t len,
                                const char *name,
                                const char *const *sets,
                                int n_sets,
                                rd_config *cfg,
                                rd_errbuf *eb);

/** Range checks of every field (as the loader does) and cross-field checks: unique job, model,
 *  table and field names; jobs' models and models' tables exist; a distilled student's teacher is
 *  a teacher job; at least one job; split fractions; csv columns exist; no PS table is used by
 *  two jobs; every derived path (checkpoint folders with the job names, the dataset's temporary
 *  folder) fits its limit (RD_CKPT_PARTIAL_MAX, RD_DATA_DIR_MAX);
 *  ...
 *  @param[out] eb  "key.path: problem" (the loader adds file:line:col)
 *  @return RD_OK or RD_ERR_CONFIG. */
int rd_config_validate(const rd_config *cfg, rd_errbuf *eb);

/**
 * Range, enum and string checks of one model architecture or one table config, as the loader
 * applies to each models[] / ps.tables[] entry (no cross-field checks): for structs that come
 * from a file rather than from YAML (a serving bundle), before anything sizes memory from them.
 * @param[in] what  names the struct in messages, e.g. "student.rdsv: model"
 * @return RD_OK or RD_ERR_CONFIG ("<what>: mlp[0]: value 2147483647 out of range [1, 65536]",
 *         "<what>: name: string is not NUL-terminated within 32 bytes")
 */
int rd_config_check_model(const rd_model_config *mc, const char *what, rd_errbuf *eb);
int rd_config_check_table(const rd_table_config *tc, const char *what, rd_errbuf *eb);

/**
 * Settings a valid config holds that have no effect, one line each into buf (NUL-terminated,
 * cut at cap): a branch's `layers` or `heads` away from their defaults (1, 2) while its kind is
 * mean or din, which read neither (only transformer does). Not errors: an ablation that switches
 * seq.kind from transformer to mean (`--set models.m.seq.kind=mean`) keeps the file's layers.
 * Likewise the Source Instance Transformer's keys (tokens.sit_layers, window, batch_order,
 * sit_labels, sit_pairs, sit_item_code, sit_group, sit_group_by, two_pass) away from their
 * defaults under tokens.scheme 1, which reads none of them, and the SIT's own (sit_labels,
 * sit_pairs, sit_item_code, sit_group, sit_group_by, two_pass) under tokens.sit_layers 0: the
 * iat_temporal ablation (tools/ablations.sh) sets tokens.scheme alone.
 * Also each teacher job of a replaying launch (distill.replay): it trains, but sends and logs no
 * target, so its ranks are spent for nothing unless its own model is wanted (the line says how
 * many ranks the launch needs without it).
 * @return the number of lines (0: nothing to say)
 */
int rd_config_warnings(const rd_config *cfg, char *buf, size_t cap);

/** Write the effective configuration as YAML to `out` (a FILE *). rd_config_parse_string reads
 *  it back into an identical struct (memcmp-equal, source_path aside). */
void rd_config_print(const rd_config *cfg, void *out);

/** Broadcast from `root` over `comm` as raw bytes (rd_config holds no pointers). */
void rd_config_bcast(rd_config *cfg, int root, MPI_Comm comm);

/** Lookups by name. @return a pointer into cfg (lives as long as cfg), or NULL if absent. */
const rd_model_config *rd_config_find_model(const rd_config *cfg, const char *name);
const rd_table_config *rd_config_find_table(const rd_config *cfg, const char *name);
const rd_job_config *rd_config_find_job(const rd_config *cfg, const char *name);
/** The job whose initial dense parameters `job` takes: init_as followed through other jobs to
 *  the first that leaves it empty (or names itself), so that a twin of a job initialised as
 *  another starts where that job does. @return a name in cfg, or NULL when init_as loops. */
const char *rd_config_job_init_name(const rd_config *cfg, const rd_job_config *job);
/** Total ranks the config needs: ps_ranks + sum of jobs[i].ranks (-1 if it overflows int). */
int rd_config_world_size(const rd_config *cfg);
/** Index of the first job whose model reads instance tokens (models[].tokens.scheme > 0), or -1:
 *  that job builds the run's token store (IAT stage 1) before any job trains. */
int rd_config_token_job(const rd_config *cfg);

#ifdef __cplusplus
}
#endif
#endif // RD_CONFIG_H
