// rd/checkpoint.h — embedding-table checkpoints: one LMDB environment per PS shard plus a
// manifest, written atomically.
//
// Defines:
//   rd_ckpt_manifest        what a checkpoint holds: P, step, seed, tables (name, dim, optimizer,
//                           slots, row totals), per-shard CRC-32C and row counts
//   rd_ckpt_shard_info      what one shard wrote (CRC, rows and pending keys per table)
//   rd_ckpt_write_shard()   PS side of SAVE: one shard's tables into <dir>/shard-NNNNN
//   rd_ckpt_read_shard()    PS side of LOAD: into empty tables, verifying the CRC
//   rd_ckpt_read_shard_part()  the same, keeping only the keys of one part of a new sharding
//   rd_ckpt_cursor          one table's rows (or pending counts) of one shard in key order,
//                           read from the map without loading them (the table tools' export)
//   rd_ckpt_write_manifest / rd_ckpt_read_manifest   <dir>/MANIFEST (the commit point)
//   rd_ckpt_verify()        manifest + every shard: CRCs, layout, row totals
//   rd_ckpt_check_shards()  manifest + every shard's records (no CRC, no row read): quick
//   rd_ckpt_shard_crc()     recompute one shard's CRC
//   rd_ckpt_load_table()    merge one table from all shards into one rd_table (tests, tools,
//                           any P)
//
// Layout of a checkpoint directory:
//   MANIFEST         binary: magic "RDCKMANI", version, P, step, seed, tables, per-shard CRCs,
//                    trailing CRC-32C of the file. Written last (temp file + fsync + rename):
//                    a directory without MANIFEST is an incomplete checkpoint.
//   shard-00000/     LMDB env (data.mdb, opened with MDB_NOLOCK so no lock file is written),
//   shard-00001/ ... named databases:
//       meta          "shard" -> shard record (magic, version, shard, P, step, seed, n_tables);
//                     "table/NNNN" -> table record (name, index, dim, optimizer, slots, rows,
//                     pending, cumulative counters, clock)
//       rows.NNNN     8-byte big-endian key -> [dim*(1+S) f32 | last_seen i64 | count u64]
//       pending.NNNN  8-byte big-endian key -> [count u32 | 0 u32 | last_seen i64]
//                     (NNNN = the table's index in cfg.ps.tables)
//   Each shard env is written into .shard-NNNNN.tmp, synced, then renamed: a shard directory is
//   complete or absent. Values are little-endian host floats (x86_64 / aarch64).
// Shard CRC: CRC-32C over (key bytes, value bytes) of meta, then of each table's rows.NNNN and
// pending.NNNN in ascending table index, each database in key order. It does not depend on
// the in-memory order of the hash map.
//
// Arguments: every function taking an rd_errbuf refuses a NULL path, name, table, cursor or
// required output (a NULL table array with n_tables > 0) with RD_ERR_ARG and "FUNCTION: invalid
// argument: ..." (RD_ARG_CHECK, rd/error.h) before it reads anything; a cursor output is set to
// NULL first. rd_ckpt_shard_path gives RD_ERR_ARG for a NULL dir or out. A cursor is used by
// one thread at a time.
#ifndef RD_CHECKPOINT_H
#define RD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "rd/config.h"
#include "rd/error.h"
#include "rd/table.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_CKPT_VERSION    1
#define RD_CKPT_MAX_SHARDS 4096

typedef struct rd_ckpt_table {
    char name[RD_NAME_MAX]; // table name
    uint32_t index;         // index in cfg.ps.tables at save time
    uint32_t dim;
    uint32_t optim;   // rd_opt_kind
    uint32_t slots;   // optimizer slot vectors per row
    uint64_t rows;    // rows over all shards
    uint64_t pending; // keys awaiting admission over all shards
} rd_ckpt_table;

/** A large struct (about 50 KiB): allocate it on the heap. */
typedef struct rd_ckpt_manifest {
    uint32_t version;  // RD_CKPT_VERSION
    uint32_t n_shards; // P
    int64_t step;      // steps completed when the cut was taken
    uint64_t seed;     // cfg.run.seed (initial values of future rows depend on it)
    uint32_t n_tables;
    rd_ckpt_table tables[RD_MAX_TABLES];
    uint32_t shard_crc[RD_CKPT_MAX_SHARDS];  // CRC-32C of each shard (see above)
    uint64_t shard_rows[RD_CKPT_MAX_SHARDS]; // rows of each shard, all tables
} rd_ckpt_manifest;

typedef struct rd_ckpt_shard_info {
    uint32_t crc;
    uint32_t n_tables;
    uint64_t rows[RD_MAX_TABLES];    // per table, in the order the tables were given
    uint64_t pending[RD_MAX_TABLES]; // per table
} rd_ckpt_shard_info;

/** "<dir>/shard-NNNNN" into out (cap bytes).
 *  @return RD_OK, RD_ERR_RANGE (does not fit), RD_ERR_ARG (dir or out NULL, cap 0) */
int rd_ckpt_shard_path(const char *dir, int shard, char *out, size_t cap);

/**
 * Write one shard: rows, optimizer slots, last-seen times, counts, pending admission counts and
 * counters of `tables`, atomically (temp env + sync + rename). Creates `dir` if needed.
 * @param[in]  tables    n_tables tables (any order; recorded by their index)
 * @param[out] info      CRC and counts (may be NULL)
 * @return RD_OK, RD_ERR_EXISTS (the shard directory exists: pick a fresh checkpoint dir),
 *         RD_ERR_IO (mkdir/rename/fsync), RD_ERR_LMDB, RD_ERR_NOMEM, RD_ERR_ARG
 */
int rd_ckpt_write_shard(const char *dir,
                        int shard,
                        int n_shards,
                        int64_t step,
                        uint64_t seed,
                        rd_table *const *tables,
                        int n_tables,
                        rd_ckpt_shard_info *info,
                        rd_errbuf *eb);

/**
 * Read one shard into `tables`, which must be empty and created from the same table configs
 * (name, dim, optimizer are checked against the shard; every given table must be in it).
 * Nothing is changed in the tables on failure... except rows already inserted: callers load into
 * fresh tables and swap them in only on success.
 * @param[in]  expect_crc  the manifest's CRC for this shard, or NULL to skip the check
 * @param[out] step        the shard's step (may be NULL)
 * Every read of a shard (here, rd_ckpt_shard_crc, rd_ckpt_verify, rd_ckpt_load_table) runs
 * under the guard of rd/lmdbx.h: a damaged page that makes LMDB fault or assert is
 * RD_ERR_CORRUPT "<shard>: damaged LMDB file (...)", not a crash.
 * @return RD_OK, RD_ERR_NOTFOUND (no shard dir), RD_ERR_CORRUPT (CRC, bad record, damaged page),
 *         RD_ERR_SCHEMA (table missing or different), RD_ERR_VERSION, RD_ERR_LMDB, RD_ERR_NOMEM
 */
int rd_ckpt_read_shard(const char *dir,
                       int shard,
                       int n_shards,
                       rd_table *const *tables,
                       int n_tables,
                       const uint32_t *expect_crc,
                       int64_t *step,
                       rd_ckpt_shard_info *info,
                       rd_errbuf *eb);

/**
 * rd_ckpt_read_shard (step and info not returned) that inserts only the rows and pending counts
 * whose key has rd_shard_of(key, n_parts) == part; every record is still read and checked (and
 * the CRC, when expect_crc is given). Counters and clock are set as by rd_ckpt_read_shard.
 * @return as rd_ckpt_read_shard; RD_ERR_ARG (part outside 0..n_parts-1)
 */
int rd_ckpt_read_shard_part(const char *dir,
                            int shard,
                            int n_shards,
                            rd_table *const *tables,
                            int n_tables,
                            const uint32_t *expect_crc,
                            int part,
                            int n_parts,
                            rd_errbuf *eb);

/** One record a cursor read. */
typedef struct rd_ckpt_record {
    uint64_t key;
    const float *row; // row_floats floats (NULL for a pending count); valid until the next call
    int64_t last_seen;
    uint64_t count; // updates of a row, or sightings of a pending key
} rd_ckpt_record;

typedef struct rd_ckpt_cursor rd_ckpt_cursor;

/**
 * Open a cursor on rows.NNNN (pending 0) or pending.NNNN (pending 1) of the table with index
 * `index` in <dir>/shard-NNNNN; the records come in ascending key order. With expect_crc, the
 * shard's CRC is checked first, in the read transaction the cursor then reads from (one more
 * pass over the shard, its pages dropped after it); NULL: not checked. Reads run under
 * the guard of rd/lmdbx.h, and the map's pages are dropped every 16 MiB of records, so a scan
 * of a shard of any size keeps a bounded resident set.
 * @param[in] row_floats  floats per row (dim * (1 + slots)), checked against the table record
 * @param[in] expect_crc  the shard's CRC from the MANIFEST, or NULL
 * @param[out] out        free with rd_ckpt_cursor_close
 * @return RD_OK, RD_ERR_NOTFOUND (no shard), RD_ERR_SCHEMA (no such table, other layout),
 *         RD_ERR_CORRUPT (also: CRC mismatch), RD_ERR_LMDB, RD_ERR_NOMEM
 */
int rd_ckpt_cursor_open(const char *dir,
                        int shard,
                        uint32_t index,
                        size_t row_floats,
                        int pending,
                        const uint32_t *expect_crc,
                        rd_ckpt_cursor **out,
                        rd_errbuf *eb);
/** Next record into *r. @return 1 a record, 0 the end, or a negative rd_status (eb says what):
 *  RD_ERR_CORRUPT (bad record, damaged page), RD_ERR_LMDB, RD_ERR_ARG (c or r NULL) */
int rd_ckpt_cursor_next(rd_ckpt_cursor *c, rd_ckpt_record *r, rd_errbuf *eb);
/** Close a cursor of rd_ckpt_cursor_open. Accepts NULL. */
void rd_ckpt_cursor_close(rd_ckpt_cursor *c);

/** Recompute the CRC of <dir>/shard-NNNNN.
 *  @return RD_OK, RD_ERR_NOTFOUND, RD_ERR_CORRUPT (damaged page), RD_ERR_LMDB */
int rd_ckpt_shard_crc(const char *dir, int shard, uint32_t *crc, rd_errbuf *eb);

/** Write <dir>/MANIFEST atomically. @return RD_OK, RD_ERR_IO, RD_ERR_ARG */
int rd_ckpt_write_manifest(const char *dir, const rd_ckpt_manifest *m, rd_errbuf *eb);
/** Read and validate <dir>/MANIFEST (size, magic, version, CRC, ranges). m is zeroed first.
 *  @return RD_OK, RD_ERR_NOTFOUND, RD_ERR_IO, RD_ERR_CORRUPT, RD_ERR_VERSION, RD_ERR_ARG (dir or
 *          m NULL, path too long) */
int rd_ckpt_read_manifest(const char *dir, rd_ckpt_manifest *m, rd_errbuf *eb);

/** Full check of a checkpoint: the manifest, each shard's CRC, its shard record (P, index, step,
 *  seed, tables) and the row totals. @return RD_OK or the first problem (eb names the shard). */
int rd_ckpt_verify(const char *dir, rd_errbuf *eb);

/** rd_ckpt_verify without the reads that grow with the tables (each shard's CRC, every row's
 *  values): the manifest, and in each shard its shard record (P, index, step, seed, tables), its
 *  table records and their row counts against the manifest. Opens every shard, so a missing,
 *  foreign or mismatched one is found before a resume creates anything.
 *  @return RD_OK or the first problem (eb names the shard) */
int rd_ckpt_check_shards(const char *dir, rd_errbuf *eb);

/**
 * Merge table `name` of every shard of the checkpoint into `dst` (created from a config with the
 * same dim and optimizer; normally empty): rows with slots, last-seen, counts and pending counts.
 * Works for any P (tests compare runs with different P; tools reshard with it).
 * @return RD_OK, RD_ERR_NOTFOUND (no such table), RD_ERR_SCHEMA, RD_ERR_CORRUPT, RD_ERR_LMDB, ...
 */
int rd_ckpt_load_table(const char *dir, const char *name, rd_table *dst, rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_CHECKPOINT_H
