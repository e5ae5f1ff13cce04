// rd/tabletool.h — offline maintenance of PS table checkpoints (`recdistill table ...`): read a
// checkpoint shard by shard, inspect, edit rows, and write it back out with any number of
// shards.
//
// Defines:
//   rd_tabletool                opaque: a checkpoint, every shard's CRC checked against the
//                               MANIFEST; held in memory (one rd_table per (shard, table)) or
//                               streamed (shards read again one at a time, edits replayed)
//   rd_tabletool_open/close     every shard held (rd_tabletool_table works: serve, tests)
//   rd_tabletool_open_stream()  one shard at a time (the `recdistill table` commands)
//   rd_tabletool_counts()       rows and pending keys of a table, after the edits so far
//   rd_tabletool_manifest()     the checkpoint's MANIFEST
//   rd_tabletool_find()         a table's position in the manifest by name
//   rd_tabletool_table()        the rd_table of (shard, table)
//   rd_tabletool_hist           log2 histograms of age and update count
//   rd_tabletool_stats()        rows, pending keys, bytes, histograms of one table
//   rd_tabletool_evict()        drop rows older than a stream time and/or updated fewer times
//   rd_tabletool_export()/import()  rows and pending counts as TSV or binary (exact round trip)
//   rd_tabletool_set_admission()    a table's admit_count from the config (import checks it)
//   rd_tabletool_write()        write the (edited) checkpoint to a new directory with P' shards
//                               (reshard, compact, and the output of evict / import)
//
// A rewrite never changes the input: it writes a fresh <out>.partial.<host>.<pid>.<hex> beside
// <out> (every shard env, then the MANIFEST, then a copy of dense.bin when the input is a training
// checkpoint) and renames it to <out>, which must not exist. Rows go to shard rd_shard_of(key, P')
// with their slots, last-seen time and count unchanged, and pending admission counts follow their
// key, so a PS of P' ranks that loads the result serves exactly the rows that P ranks served
// (initial values of missing keys depend on the key and seed only: rd/table.h). With P' == P each
// new shard gets the old shard's cumulative counters and clock, so a compacted checkpoint has the
// same shard CRCs; with P' != P the counters are summed into shard 0 and every shard gets the
// latest clock.
//
// Memory: rd_tabletool_open holds the whole checkpoint (one table per shard). A checkpoint opened
// with rd_tabletool_open_stream holds about one input shard plus one output shard at any time,
// plus 16 bytes a row of an import (its rows wait in an unlinked temporary file in $TMPDIR, else
// beside the checkpoint), whatever the number of shards: open reads every shard once (CRC,
// records, counters, about one shard in memory); stats reads them twice more; export merges P
// cursors that read each shard's rows in key order from its map, each after checking the shard's
// CRC in its own read transaction (pages dropped after that pass and every 16 MiB; one descriptor
// a cursor: `recdistill table` raises the soft RLIMIT_NOFILE to the hard one). When the soft
// limit leaves fewer than P descriptors free (less a reserve of 16), the export merges the shards
// in groups of G (the free descriptors less the reserve, at least 2) into key-ordered runs of an
// unlinked temporary file (where an import's goes), then groups of G runs into a fresh file until
// G or fewer are left, and those into the output: the same bytes, the disk space of the table's
// rows (twice while runs are merged again), and no byte of the output before every run is
// written (a full disk is RD_ERR_IO naming the folder, nothing written); a
// rewrite with P' == P reads, edits and writes one shard at a time, and one with P' != P builds
// each output shard from the matching keys of every input shard (P x P' reads). A shard (or output
// shard) whose estimated size exceeds the memory limit (rd_mem_limit, or the one given) is refused
// with RD_ERR_NOMEM naming it, before it is read. Measured 2026-12-04 (2-core shared VM, Release,
// `/usr/bin/time -v`) on a 3-shard checkpoint of 1.74 M rows, 274 MB: peak RSS before -> after:
// stats 425 -> 211 MB, export 425 -> 256 MB, evict 741 -> 264 MB, compact 840 -> 304 MB, reshard to
// 5 / 2 shards 794 / 945 -> 210 / 459 MB, import 840 -> 538 MB (and 538 -> 329 MB with the
// temporary file; docs/tools.md "Memory of the table tools").
//
// Arguments: every function returning a status refuses a NULL handle, path, file or required
// output, and a table index out of range, with RD_ERR_ARG and "FUNCTION: invalid argument: ..."
// (RD_ARG_CHECK, rd/error.h), before it touches anything; rd_tabletool_manifest and _find give
// NULL and -1 for a NULL handle.
#ifndef RD_TABLETOOL_H
#define RD_TABLETOOL_H

#include <stdint.h>
#include <stdio.h>

#include "rd/checkpoint.h"
#include "rd/error.h"
#include "rd/table.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_TABLETOOL_HIST 64 // log2 buckets

typedef struct rd_tabletool rd_tabletool;

/** Export formats. */
enum { RD_TABLETOOL_TSV = 0, RD_TABLETOOL_BIN = 1 };

/** Histograms of one table: bucket b counts rows whose value v has floor(log2(v + 1)) == b. */
typedef struct rd_tabletool_hist {
    uint64_t rows, pending;
    uint64_t row_bytes;                // rows * (key + floats + last_seen + count), as stored
    int64_t newest, oldest;            // last_seen range (INT64_MIN / INT64_MAX when empty)
    uint64_t age[RD_TABLETOOL_HIST];   // age = newest - last_seen (stream seconds)
    uint64_t count[RD_TABLETOOL_HIST]; // updates applied to the row
} rd_tabletool_hist;

/**
 * Load checkpoint `dir`: MANIFEST, then every shard (CRC checked), all held in memory.
 * @param[out] out  free with rd_tabletool_close
 * @return RD_OK, RD_ERR_NOTFOUND (no dir / MANIFEST / shard), RD_ERR_CORRUPT, RD_ERR_VERSION,
 *         RD_ERR_SCHEMA, RD_ERR_LMDB, RD_ERR_NOMEM
 */
int rd_tabletool_open(const char *dir, rd_tabletool **out, rd_errbuf *eb);
/**
 * Open checkpoint `dir` to work on it one shard at a time: the MANIFEST, then every shard read
 * once (CRC, records, counters; same errors as rd_tabletool_open) and let go. Every later call
 * reads the shards again (and may fail as a read does: the same codes). rd_tabletool_table is
 * not available.
 * @param[in] mem_limit  bytes a shard may take in memory; 0 = rd_mem_limit()
 * @return as rd_tabletool_open; RD_ERR_NOMEM when a shard would not fit in mem_limit (named,
 *         before it is read)
 */
int rd_tabletool_open_stream(const char *dir,
                             unsigned long long mem_limit,
                             rd_tabletool **out,
                             rd_errbuf *eb);
void rd_tabletool_close(rd_tabletool *tt);

const rd_ckpt_manifest *rd_tabletool_manifest(const rd_tabletool *tt);
/** @return the table's position in the manifest, or -1. */
int rd_tabletool_find(const rd_tabletool *tt, const char *name);
/** Borrowed until rd_tabletool_close (or an import of that table, which replaces it). Only for
 *  a checkpoint opened with rd_tabletool_open: NULL for a streamed one (it asserted), a NULL tt
 *  or a shard or table out of range. */
rd_table *rd_tabletool_table(rd_tabletool *tt, int shard, int table);
/** Rows and pending admission counts of `table` (-1 = every table) over all shards, after the
 *  edits so far (no read). Either pointer may be NULL (tt NULL: 0 and 0). */
void rd_tabletool_counts(const rd_tabletool *tt, int table, uint64_t *rows, uint64_t *pending);

/**
 * Statistics of table `table` (position in the manifest) over all shards. The first call after
 * an open or an edit computes those of every table (streamed: two reads of every shard).
 * @return RD_OK, or an error of reading a shard (streamed)
 */
int rd_tabletool_stats(rd_tabletool *tt, int table, rd_tabletool_hist *h, rd_errbuf *eb);

/**
 * Remove rows of `table` (-1 = every table) with last_seen < older_than (INT64_MIN = no age
 * rule) or count < min_count (0 = no count rule); the age rule also drops pending admission
 * counts last seen before older_than.
 * Streamed: every shard is read to count what goes, and the rule is applied again to each
 * shard read later.
 * @param[out] removed  rows removed (may be NULL)
 * @return RD_OK or RD_ERR_NOMEM; streamed, an error of reading a shard
 */
int rd_tabletool_evict(rd_tabletool *tt,
                       int table,
                       int64_t older_than,
                       uint64_t min_count,
                       uint64_t *removed,
                       rd_errbuf *eb);

/**
 * Write every row of `table`, sorted by key, then its pending admission counts (keys counted
 * for admission, no row yet), sorted by key, to `f`. TSV: a "# table NAME dim D slots S
 * optimizer O rows N pending M" line, then one line per row: key, last_seen, count, then
 * dim * (1 + S) floats printed with 9 significant digits (exact for f32), tab separated; then
 * one line per pending count: "pending", key, last_seen, count. BIN (version 2): magic
 * "RDTBLEXP", u32 version, u32 dim, u32 slots, u32 optimizer, u64 rows, char name[32], u64
 * pending, then per row u64 key, i64 last_seen, u64 count, floats; then per pending count u64
 * key, i64 last_seen, u32 count, u32 0; then a u32 CRC-32C of everything before. Streamed,
 * the shards' rows are merged in key order as they are read (the same bytes), in groups through
 * a temporary file when RLIMIT_NOFILE leaves too few descriptors for every shard (Memory above).
 * @return RD_OK or RD_ERR_IO (also: the temporary file of a grouped merge cannot be created or
 *         written, naming its folder; nothing is then written to f); streamed, an error of
 *         reading a shard, RD_ERR_CORRUPT when a shard's CRC no longer matches the MANIFEST
 *         (checked again as its cursor opens) or the shards no longer hold the rows counted at
 *         open (the output is then incomplete: write it to a temporary file)
 */
int rd_tabletool_export(rd_tabletool *tt, int table, int format, FILE *f, rd_errbuf *eb);

/** What an import brought in. */
typedef struct rd_tabletool_imported {
    uint64_t rows;    // rows imported
    uint64_t pending; // pending admission counts imported
    int has_pending;  // the file records pending counts (0: an export of an older build, format 1)
    uint64_t dropped; // the table's pending counts dropped because the file records none
} rd_tabletool_imported;

/**
 * Replace every row and pending admission count of `table` by those of an export (either
 * format, detected by its first bytes). The whole file is parsed and checked before the table is
 * touched: the export names this table (another table's keys carry another salt and would never
 * be looked up), dim, slots, optimizer, the row and pending counts (a TSV's header line is
 * required), keys non-zero and unique, finite floats, the CRC of a binary file. An export of an
 * older build (format 1, no pending counts) still imports; the table then has no pending
 * counts, and `res->dropped` says how many it had. Streamed, the parsed rows are kept (the
 * keys in memory, the rest in an unlinked temporary file in $TMPDIR, else in the checkpoint's
 * parent folder, or /tmp when that folder refuses it, until rd_tabletool_close) and go to each
 * shard as it is read; a temporary file that cannot be made or written is RD_ERR_IO naming its
 * folder, with the table unchanged.
 * @param[out] res  what was imported (may be NULL)
 * @return RD_OK, RD_ERR_PARSE (line N: what), RD_ERR_CORRUPT (binary CRC / size),
 *         RD_ERR_SCHEMA (another table, dim / slots / optimizer differ; pending admission
 *         counts into a table without admission: rd_tabletool_set_admission), RD_ERR_VERSION,
 *         RD_ERR_IO, RD_ERR_NOMEM
 */
int rd_tabletool_import(rd_tabletool *tt,
                        int table,
                        FILE *f,
                        const char *what,
                        rd_tabletool_imported *res,
                        rd_errbuf *eb);

/**
 * rd_tabletool_import for a table whose keys carry another table's salt: a twin table with
 * `init_as: KEYS_OF` in the config (the checkpoint does not record it) takes the rows exported
 * from table KEYS_OF, and only those. keys_of NULL or "": the table's own name (as
 * rd_tabletool_import).
 */
int rd_tabletool_import_keys_of(rd_tabletool *tt,
                                int table,
                                const char *keys_of,
                                FILE *f,
                                const char *what,
                                rd_tabletool_imported *res,
                                rd_errbuf *eb);

/**
 * What the config says of `table`'s admission, for rd_tabletool_import: a checkpoint does not
 * record admit_count (ps.tables[].admit_count). With admit_count 1 (no admission) the PS never
 * reads a pending admission count of the table, so an import of a file that carries some is
 * refused (RD_ERR_SCHEMA naming its first pending line, the table and `source`). 0 = not known
 * (the default: pending counts import as they are).
 * @param[in] source  where admit_count was read, for the message (copied), e.g.
 *                    "run/config.effective.yaml: ps.tables[1].admit_count"
 * @return RD_OK or RD_ERR_ARG
 */
int rd_tabletool_set_admission(
    rd_tabletool *tt, int table, int admit_count, const char *source, rd_errbuf *eb);

/**
 * Write the checkpoint as it now is into the new directory `out` with `n_shards` shards
 * (0 = the same P). Copies <dir>/dense.bin along when the input has one. Streamed, one output
 * shard at a time (see Memory above).
 * @return RD_OK, RD_ERR_EXISTS (out exists), RD_ERR_ARG (n_shards out of range), RD_ERR_IO,
 *         RD_ERR_LMDB, RD_ERR_NOMEM (streamed: an output shard would not fit in the memory
 *         limit, refused before anything is written), an error of reading a shard (streamed);
 *         on failure nothing is left at `out`
 */
int rd_tabletool_write(rd_tabletool *tt, const char *out, int n_shards, rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_TABLETOOL_H
