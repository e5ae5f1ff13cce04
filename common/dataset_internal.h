// dataset_internal.h — the dataset builder shared by the sources (schema.c: CSV and MovieLens,
// synth.c: the generator) and dataset.c, which owns the file format.
//
// A source describes its record layout (rd__layout), then feeds events in time order to
// rd__builder_add, which applies negative sampling, assigns dense user/item indices by first
// appearance, counts the vocabulary of every field, and streams the records to the temporary
// folder. rd__builder_finish computes the splits, writes the per-user index, the header, CRCs and
// meta.yaml, fsyncs, and renames the folder into place. Destroying an unfinished builder removes
// the temporary folder, so a failing source leaves nothing behind.
#ifndef RD_DATASET_INTERNAL_H
#define RD_DATASET_INTERNAL_H

#include "rd/dataset.h"

#include <stdint.h>
#include <stdio.h>

typedef struct rd__layout {
    int source; // rd_data_source
    int n_fields;
    rd_dataset_field fields[RD_MAX_FIELDS]; // vocab is filled by the builder
    uint32_t n_slots;                       // sum of widths of key fields
    uint32_t n_numeric;                     // numeric fields
    // fields[].missing: mean: the source stores NaN for a missing value of these float fields,
    // and rd__builder_finish replaces it with the mean of the field's present values over the
    // batch period (1 = fill; 0 for every other field, which must hold finite values only)
    uint8_t fill_mean[RD_MAX_FIELDS];
} rd__layout;

/** Add a field to the layout (kind RD_FIELD_CATEGORICAL / MULTI take `width` slots, NUMERIC one
 *  float). @return its index, or -1 if RD_MAX_FIELDS is reached. */
int rd__layout_add(rd__layout *lay, const char *name, int kind, uint32_t width);

typedef struct rd__event {
    int64_t ts;        // unix seconds; non-decreasing across calls
    uint64_t user_key; // raw-id keys (never 0)
    uint64_t item_key;
    float label;          // 0 or 1
    uint64_t sample;      // stable identity of the event in the input (line, generator index):
                          // negative sampling hashes it, so the kept set does not depend on order
    const uint64_t *keys; // n_slots keys (0 = empty); may be NULL when n_slots = 0
    const float *nums;    // n_numeric floats; may be NULL when n_numeric = 0
} rd__event;

typedef struct rd__builder rd__builder;

/** Create the temporary folder "<dc->dir>.tmp-<pid>" and start events.bin.
 *  @return RD_OK, RD_ERR_IO, RD_ERR_EXISTS, RD_ERR_CONFIG, RD_ERR_NOMEM */
int rd__builder_create(const rd_data_config *dc,
                       const rd__layout *lay,
                       uint64_t seed,
                       rd__builder **out,
                       rd_errbuf *eb);

/** Append one event (dropped by negative sampling with probability 1 - rate of its class).
 *  @return RD_OK, RD_ERR_IO (write failed), RD_ERR_RANGE (2^32-1 users or items), RD_ERR_NOMEM */
int rd__builder_add(rd__builder *b, const rd__event *ev, rd_errbuf *eb);

/** Events accepted so far (after sampling) and offered so far (before). */
uint64_t rd__builder_count(const rd__builder *b);
uint64_t rd__builder_raw_count(const rd__builder *b);

/** Where record `rec` (its index among the events kept, in time order) came from, as "FILE:LINE",
 *  into out (cap bytes); 0 when known, else -1 (out is then empty). `field` is the layout field
 *  the message is about, or -1: a field read from a side table is named by the side table's row
 *  (FILE:LINE of the side table) rather than the event's line. */
typedef int (*rd__builder_where_fn)(void *ctx, uint64_t rec, int field, char *out, size_t cap);

/** Let the builder's messages about one record (fields[].standardize) name its input file and
 *  line: the source keeps what `where` needs until rd__builder_finish returns. ctx is borrowed. */
void rd__builder_set_where(rd__builder *b, rd__builder_where_fn where, void *ctx);

/** Write file `name` of the folder being built (RD_DATASET_IDS: a name the builder knows, so
 *  that a failed build removes it too): fn writes its content to f and returns 0, or -1 on an
 *  error of its own (out of memory); the file is flushed and fsynced before this returns, and
 *  rd__builder_finish renames it into place with the rest. Call before rd__builder_finish.
 *  @return RD_OK, RD_ERR_IO (cannot create or write, disk full), RD_ERR_NOMEM (fn failed) */
int rd__builder_write_file(
    rd__builder *b, const char *name, int (*fn)(FILE *f, void *ctx), void *ctx, rd_errbuf *eb);

/** Finish: index, header, meta.yaml (with `source_yaml`, the source's own section: YAML text at
 *  top level, may be NULL), fsync, rename into dc->dir.
 *  @return RD_OK, RD_ERR_EMPTY (no events kept), RD_ERR_IO, RD_ERR_EXISTS, RD_ERR_NOMEM */
int rd__builder_finish(rd__builder *b, const char *source_yaml, rd_errbuf *eb);

/** Free; an unfinished builder's temporary folder is removed. Accepts NULL. */
void rd__builder_destroy(rd__builder *b);

/** Sources (schema.c, synth.c). Both write dc->dir through a builder. */
int rd__prepare_csv(const rd_data_config *dc, uint64_t seed, rd_errbuf *eb);

/** One input file of a CSV or MovieLens source as it was read (meta.yaml "inputs:"). */
typedef struct rd__input_stamp {
    uint64_t size;
    int64_t mtime_ns;
    uint32_t crc; // CRC-32C of the content
} rd__input_stamp;

/** Call fn on each input file of a CSV / MovieLens data config, in reading order: the log (or
 *  its non-empty parts, in name order), then each side table. Stops at fn's first error.
 *  @return RD_OK, fn's error, or RD_ERR_NOTFOUND / RD_ERR_IO / RD_ERR_EMPTY when the files
 *          cannot be listed (as prepare would say) */
int rd__schema_each_input(const rd_data_config *dc,
                          int (*fn)(const char *path, void *ctx, rd_errbuf *eb),
                          void *ctx,
                          rd_errbuf *eb);

/** CRC-32C of a file's content, and its size and modification time. */
int rd__input_stamp_file(const char *path, int stamp_content, rd__input_stamp *out, rd_errbuf *eb);
int rd__prepare_synthetic(const rd_data_config *dc, uint64_t seed, rd_errbuf *eb);

/** Write `s` as a double-quoted YAML scalar (escapes quotes, backslashes, control bytes). */
void rd__yaml_str(FILE *f, const char *s);

// ---------------------------------------------------------------------------------------------
// A small open-addressing map uint64 key (never 0) -> uint32 value, for vocabularies and dense
// indices. Grows at 50% load; memory ~ 24 bytes x 2 x entries.

typedef struct rd__u64map {
    uint64_t *keys; // 0 = free
    uint32_t *vals;
    uint64_t cap; // power of two
    uint64_t n;
} rd__u64map;

int rd__u64map_init(rd__u64map *m, uint64_t cap_hint);
void rd__u64map_free(rd__u64map *m);
/** Find key; if absent insert it with value `val_if_new` and set *inserted = 1.
 *  @return pointer to the value slot (valid until the next insert), NULL on out-of-memory. */
uint32_t *rd__u64map_put(rd__u64map *m, uint64_t key, uint32_t val_if_new, int *inserted);
/** @return pointer to the value or NULL if absent. */
uint32_t *rd__u64map_get(const rd__u64map *m, uint64_t key);

#endif // RD_DATASET_INTERNAL_H
