// checkpoint.c — per-shard LMDB checkpoints of embedding tables and the MANIFEST that commits
// them (format in rd/checkpoint.h).
//
// Atomicity: a shard is written into <dir>/.shard-NNNNN.tmp with MDB_NOSYNC, committed in one
// transaction, synced (mdb_env_sync force), its CRC recomputed by reading it back (the same code
// rd_ckpt_verify uses, so writer and verifier can never disagree on the order), then renamed to
// shard-NNNNN and the directory fsynced. The MANIFEST (temp + fsync + rename) is written last by
// the client once every shard answered, so a crash at any point leaves either a complete
// checkpoint or one that rd_ckpt_read_manifest rejects.
// Rows are written in key order with MDB_APPEND (sequential B-tree fill, no page splits), so the
// files, and their CRCs, do not depend on the hash map's layout.
#include "rd/checkpoint.h"
#include "rd/alloc.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/optim.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHARD_MAGIC    0x4452485348434452ull // "RDCHSHRD" little-endian
#define MANIFEST_MAGIC 0x494e414d4b434452ull // "RDCKMANI" little-endian

typedef struct shard_rec {
    uint64_t magic;
    uint32_t version;
    uint32_t shard;
    uint32_t n_shards;
    uint32_t n_tables;
    int64_t step;
    uint64_t seed;
    uint64_t reserved;
} shard_rec;

typedef struct table_rec {
    char name[RD_NAME_MAX];
    uint32_t index;
    uint32_t dim;
    uint32_t optim;
    uint32_t slots;
    uint64_t rows;
    uint64_t pending;
    uint64_t admitted;
    uint64_t rejected;
    uint64_t evicted;
    uint64_t pulled;
    uint64_t pushed;
    int64_t now;
} table_rec;

typedef struct pending_rec {
    uint32_t count;
    uint32_t zero;
    int64_t last_seen;
} pending_rec;

_Static_assert(sizeof(shard_rec) == 48, "shard record layout");
_Static_assert(sizeof(table_rec) == 112, "table record layout");
_Static_assert(sizeof(pending_rec) == 16, "pending record layout");

// ---------------------------------------------------------------------------------------------
// Small helpers

int rd_ckpt_shard_path(const char *dir, int shard, char *out, size_t cap) {
    if (!dir || !out || cap == 0)
        return RD_ERR_ARG;
    int n = snprintf(out, cap, "%s/shard-%05d", dir, shard);
    return n < 0 || (size_t)n >= cap ? RD_ERR_RANGE : RD_OK;
}

static void key_be(uint64_t key, unsigned char out[8]) {
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(key >> (56 - 8 * i));
}

static uint64_t key_from_be(const unsigned char *p) {
    uint64_t k = 0;
    for (int i = 0; i < 8; i++)
        k = (k << 8) | p[i];
    return k;
}

static int fsync_dir(const char *dir, rd_errbuf *eb) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return rd_err_set(eb, RD_ERR_IO, "open %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0)
        return rd_err_set(eb, RD_ERR_IO, "fsync %s: %s", dir, strerror(err));
    return RD_OK;
}

// Remove an LMDB env directory left by an interrupted save (only the files LMDB creates).
static void remove_env_dir(const char *path) {
    char f[RD_PATH_MAX * 2 + 32];
    if (snprintf(f, sizeof f, "%s/data.mdb", path) < (int)sizeof f)
        unlink(f);
    if (snprintf(f, sizeof f, "%s/lock.mdb", path) < (int)sizeof f)
        unlink(f);
    rmdir(path);
}

static int dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int lmdb_err(rd_errbuf *eb, int rc, const char *what, const char *path) {
    // A full disk is RD_ERR_FULL with its own words (rd_lmdbx_error tells a short write apart).
    if (rc == ENOSPC || rc == EFBIG || rc == EIO || rc == MDB_MAP_FULL) {
        int st = rd_lmdbx_error(NULL, rc, what, path);
        if (st == RD_ERR_FULL)
            return rd_lmdbx_error(eb, rc, what, path);
    }
    return rd_err_set(eb, RD_ERR_LMDB, "%s %s: %s", what, path, mdb_strerror(rc));
}

// ---------------------------------------------------------------------------------------------
// CRC of an open env (the definition of a shard's checksum)

static int crc_db(MDB_txn *txn, MDB_dbi dbi, uint32_t *crc) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rc;
    MDB_val k, v;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        *crc = rd_crc32c(*crc, k.mv_data, k.mv_size);
        *crc = rd_crc32c(*crc, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

// Open a named db read-only; MDB_NOTFOUND if absent.
static int open_db(MDB_txn *txn, const char *name, MDB_dbi *dbi) {
    return mdb_dbi_open(txn, name, 0, dbi);
}

// CRC over meta, then rows.NNNN / pending.NNNN for each table record in meta (ascending index).
static int crc_env(MDB_txn *txn, uint32_t *out, rd_errbuf *eb, const char *path) {
    uint32_t crc = 0;
    MDB_dbi meta;
    int rc = open_db(txn, "meta", &meta);
    if (rc)
        return rc == MDB_NOTFOUND ? rd_err_set(eb, RD_ERR_CORRUPT, "%s: no meta database", path)
                                  : lmdb_err(eb, rc, "open meta of", path);
    if ((rc = crc_db(txn, meta, &crc)))
        return lmdb_err(eb, rc, "read meta of", path);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, meta, &cur)))
        return lmdb_err(eb, rc, "cursor on", path);
    MDB_val k, v;
    int status = RD_OK;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (k.mv_size != 10 || memcmp(k.mv_data, "table/", 6) != 0)
            continue;
        char idx[5];
        memcpy(idx, (const char *)k.mv_data + 6, 4);
        idx[4] = '\0';
        char name[32];
        MDB_dbi dbi;
        const char *kinds[] = {"rows", "pending"};
        for (int w = 0; w < 2 && status == RD_OK; w++) {
            snprintf(name, sizeof name, "%s.%s", kinds[w], idx);
            int r2 = open_db(txn, name, &dbi);
            if (r2 == MDB_NOTFOUND)
                status = rd_err_set(eb, RD_ERR_CORRUPT, "%s: database %s missing", path, name);
            else if (r2 || (r2 = crc_db(txn, dbi, &crc)))
                status = lmdb_err(eb, r2, "read", path);
        }
        if (status != RD_OK)
            break;
    }
    mdb_cursor_close(cur);
    if (status != RD_OK)
        return status;
    if (rc != MDB_NOTFOUND)
        return lmdb_err(eb, rc, "scan meta of", path);
    *out = crc;
    return RD_OK;
}

static int open_env_ro(const char *path, MDB_env **env, rd_errbuf *eb) {
    if (!dir_exists(path))
        return rd_err_set(eb, RD_ERR_NOTFOUND, "checkpoint shard %s does not exist", path);
    int rc = rd_lmdbx_check_nonempty(path, eb);
    if (rc != RD_OK)
        return rc;
    rc = mdb_env_create(env);
    if (rc)
        return lmdb_err(eb, rc, "mdb_env_create for", path);
    // A damaged page met while reading becomes an error of the guarded read (with_shard_txn),
    // and so does an assertion of LMDB about it.
    rd_lmdbx_guard_install();
    rd_lmdbx_guard_env(*env);
    mdb_env_set_maxdbs(*env, 2 * RD_MAX_TABLES + 2);
    rc = mdb_env_open(*env, path, MDB_RDONLY | MDB_NOLOCK, 0644);
    if (rc) {
        mdb_env_close(*env);
        *env = NULL;
        return lmdb_err(eb, rc, "open", path);
    }
    // A shard cut short by a partial copy would SIGBUS on its first read past the end.
    if ((rc = rd_lmdbx_check_size(*env, path, eb)) != RD_OK) {
        mdb_env_close(*env);
        *env = NULL;
        return rc;
    }
    return RD_OK;
}

// A read of one shard: fn(txn, path, ctx, eb) inside a read transaction.
typedef int (*shard_fn)(MDB_txn *txn, const char *path, void *ctx, rd_errbuf *eb);

static int txn_call(MDB_env *env, const char *path, shard_fn fn, void *ctx, rd_errbuf *eb) {
    MDB_txn *txn;
    int lrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (lrc)
        return lmdb_err(eb, lrc, "read transaction on", path);
    int rc = fn(txn, path, ctx, eb);
    mdb_txn_abort(txn);
    return rc;
}

// Open the shard at path read-only and run fn in a read transaction under a guard: a damaged
// page that makes LMDB fault or assert is RD_ERR_CORRUPT "<path>: damaged LMDB file ...", not
// a crash (rd/lmdbx.h "Damaged pages"). After a fault the transaction is left as it was and the
// env is only closed (NOLOCK: no reader slot to release).
static int with_shard_txn(const char *path, shard_fn fn, void *ctx, rd_errbuf *eb) {
    MDB_env *env;
    int rc = open_env_ro(path, &env, eb);
    if (rc != RD_OK)
        return rc;
    int faulted;
    RD_LMDBX_GUARDED(rc, faulted, path, eb, txn_call(env, path, fn, ctx, eb));
    (void)faulted;
    mdb_env_close(env);
    return rc;
}

static int crc_fn(MDB_txn *txn, const char *path, void *ctx, rd_errbuf *eb) {
    return crc_env(txn, ctx, eb, path);
}

int rd_ckpt_shard_crc(const char *dir, int shard, uint32_t *crc, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, crc != NULL);
    char path[RD_PATH_MAX * 2];
    if (rd_ckpt_shard_path(dir, shard, path, sizeof path) != RD_OK)
        return rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long: %s", dir);
    return with_shard_txn(path, crc_fn, crc, eb);
}

// ---------------------------------------------------------------------------------------------
// Write a shard

typedef struct key_row {
    uint64_t key;
    uint64_t idx;
} key_row;

static int cmp_key_row(const void *a, const void *b) {
    uint64_t x = ((const key_row *)a)->key, y = ((const key_row *)b)->key;
    return x < y ? -1 : x > y;
}

static size_t env_size_estimate(rd_table *const *tables, int n) {
    size_t total = 1u << 20;
    for (int i = 0; i < n; i++) {
        size_t val = rd_table_row_floats(tables[i]) * sizeof(float) + 16;
        size_t per = val > 1500 ? ((val + 64 + 4095) / 4096) * 4096 : 2 * (val + 32);
        total += rd_table_size(tables[i]) * per + rd_table_pending_size(tables[i]) * 96 + 65536;
    }
    return (total + 4095) & ~(size_t)4095;
}

// One write transaction holding every record of the shard.
static int write_records(MDB_env *env,
                         int shard,
                         int n_shards,
                         int64_t step,
                         uint64_t seed,
                         rd_table *const *tables,
                         int n_tables,
                         rd_ckpt_shard_info *info,
                         const char *path,
                         rd_errbuf *eb,
                         int *map_full) {
    MDB_txn *txn = NULL;
    key_row *order = NULL;
    int status = RD_OK, rc;
    *map_full = 0;
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)))
        return lmdb_err(eb, rc, "write transaction on", path);
    MDB_dbi meta;
    if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta)))
        goto lmdb_fail;

    shard_rec sr;
    memset(&sr, 0, sizeof sr);
    sr.magic = SHARD_MAGIC;
    sr.version = RD_CKPT_VERSION;
    sr.shard = (uint32_t)shard;
    sr.n_shards = (uint32_t)n_shards;
    sr.n_tables = (uint32_t)n_tables;
    sr.step = step;
    sr.seed = seed;
    MDB_val k = {5, (void *)"shard"}, v = {sizeof sr, &sr};
    if ((rc = mdb_put(txn, meta, &k, &v, 0)))
        goto lmdb_fail;

    for (int ti = 0; ti < n_tables; ti++) {
        rd_table *t = tables[ti];
        const rd_table_config *tc = rd_table_config_of(t);
        rd_table_stats st;
        rd_table_get_stats(t, &st);
        table_rec tr;
        memset(&tr, 0, sizeof tr);
        snprintf(tr.name, sizeof tr.name, "%s", tc->name);
        tr.index = (uint32_t)rd_table_index(t);
        tr.dim = (uint32_t)tc->dim;
        tr.optim = (uint32_t)tc->optim.kind;
        tr.slots = (uint32_t)rd_optim_slots(tc->optim.kind);
        tr.rows = st.rows;
        tr.pending = st.pending;
        tr.admitted = st.admitted;
        tr.rejected = st.rejected;
        tr.evicted = st.evicted;
        tr.pulled = st.pulled;
        tr.pushed = st.pushed;
        tr.now = st.now;
        char name[32];
        snprintf(name, sizeof name, "table/%04u", tr.index);
        k.mv_size = strlen(name);
        k.mv_data = name;
        v.mv_size = sizeof tr;
        v.mv_data = &tr;
        if ((rc = mdb_put(txn, meta, &k, &v, MDB_NOOVERWRITE)))
            goto lmdb_fail;

        // Rows in key order.
        MDB_dbi rows, pend;
        snprintf(name, sizeof name, "rows.%04u", tr.index);
        if ((rc = mdb_dbi_open(txn, name, MDB_CREATE, &rows)))
            goto lmdb_fail;
        snprintf(name, sizeof name, "pending.%04u", tr.index);
        if ((rc = mdb_dbi_open(txn, name, MDB_CREATE, &pend)))
            goto lmdb_fail;
        size_t n = rd_table_size(t);
        size_t np = rd_table_pending_size(t);
        size_t need = n > np ? n : np;
        order = rd_malloc((need ? need : 1) * sizeof *order);
        if (!order) {
            status = rd_err_set(eb, RD_ERR_NOMEM, "%s: no memory to sort %zu keys", path, need);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            rd_table_row_at(t, i, &order[i].key, NULL, NULL);
            order[i].idx = i;
        }
        qsort(order, n, sizeof *order, cmp_key_row);
        size_t fbytes = rd_table_row_floats(t) * sizeof(float);
        for (size_t i = 0; i < n; i++) {
            int64_t ls;
            uint64_t cnt;
            unsigned char kb[8];
            const float *row = rd_table_row_at(t, order[i].idx, NULL, &ls, &cnt);
            key_be(order[i].key, kb);
            k.mv_size = 8;
            k.mv_data = kb;
            v.mv_size = fbytes + 16;
            v.mv_data = NULL;
            // Reserve the value in place and fill it: no staging copy of the row.
            if ((rc = mdb_put(txn, rows, &k, &v, MDB_APPEND | MDB_RESERVE)))
                goto lmdb_fail;
            unsigned char *dst = v.mv_data;
            memcpy(dst, row, fbytes);
            memcpy(dst + fbytes, &ls, 8);
            memcpy(dst + fbytes + 8, &cnt, 8);
        }
        // Pending admission counts in key order. The map's iteration order is stable while it
        // is not modified, so the cursor of each entry is a valid way back to it after sorting.
        size_t cursor = 0, m = 0;
        uint64_t pk;
        uint32_t pc;
        int64_t pls;
        while (m < need && rd_table_pending_next(t, &cursor, &pk, &pc, &pls)) {
            order[m].key = pk;
            order[m].idx = cursor - 1; // slot index of the entry
            m++;
        }
        qsort(order, m, sizeof *order, cmp_key_row);
        for (size_t i = 0; i < m; i++) {
            size_t c2 = (size_t)order[i].idx;
            pending_rec pr = {0, 0, 0};
            RD_ASSERT(rd_table_pending_next(t, &c2, &pk, &pc, &pls) && pk == order[i].key);
            pr.count = pc;
            pr.last_seen = pls;
            unsigned char kb[8];
            key_be(order[i].key, kb);
            k.mv_size = 8;
            k.mv_data = kb;
            v.mv_size = sizeof pr;
            v.mv_data = &pr;
            if ((rc = mdb_put(txn, pend, &k, &v, MDB_APPEND)))
                goto lmdb_fail;
        }
        rd_free(order);
        order = NULL;
        if (info) {
            info->rows[ti] = n;
            info->pending[ti] = m;
        }
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc)
        goto lmdb_fail;
    if (info)
        info->n_tables = (uint32_t)n_tables;
    return RD_OK;

lmdb_fail:
    if (rc == MDB_MAP_FULL)
        *map_full = 1;
    status = lmdb_err(eb, rc, "write", path);
fail:
    rd_free(order);
    if (txn)
        mdb_txn_abort(txn);
    return status;
}

int rd_ckpt_write_shard(const char *dir,
                        int shard,
                        int n_shards,
                        int64_t step,
                        uint64_t seed,
                        rd_table *const *tables,
                        int n_tables,
                        rd_ckpt_shard_info *info,
                        rd_errbuf *eb) {
    RD_ARG_CHECK(eb, tables || n_tables == 0);
    if (!dir || !*dir || shard < 0 || n_shards < 1 || shard >= n_shards || n_tables < 0 ||
        n_tables > RD_MAX_TABLES)
        return rd_err_set(eb, RD_ERR_ARG,
                          "rd_ckpt_write_shard: bad arguments (shard %d of %d, "
                          "%d tables)",
                          shard, n_shards, n_tables);
    char final_path[RD_PATH_MAX * 2], tmp_path[RD_PATH_MAX * 2 + 16];
    if (rd_ckpt_shard_path(dir, shard, final_path, sizeof final_path) != RD_OK)
        return rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long: %s", dir);
    snprintf(tmp_path, sizeof tmp_path, "%s/.shard-%05d.tmp", dir, shard);
    int rc = rd_lmdbx_mkdir_p(dir, eb);
    if (rc != RD_OK)
        return rc;
    if (dir_exists(final_path))
        return rd_err_set(eb, RD_ERR_EXISTS,
                          "%s already exists: write each checkpoint into a fresh directory",
                          final_path);
    // Left by an interrupted save: removed only if it is a real folder. A symlink planted under
    // this name is removed itself, never followed into the folder it names.
    struct stat tst;
    if (lstat(tmp_path, &tst) == 0) {
        if (S_ISDIR(tst.st_mode))
            remove_env_dir(tmp_path);
        else
            unlink(tmp_path);
    }

    size_t mapsize = env_size_estimate(tables, n_tables);
    for (int attempt = 0;; attempt++) {
        if (mkdir(tmp_path, 0777) != 0)
            return rd_err_set(eb, RD_ERR_IO, "mkdir %s: %s", tmp_path, strerror(errno));
        MDB_env *env;
        int lrc = mdb_env_create(&env);
        if (lrc)
            return lmdb_err(eb, lrc, "mdb_env_create for", tmp_path);
        mdb_env_set_maxdbs(env, 2 * (MDB_dbi)n_tables + 2);
        mdb_env_set_mapsize(env, mapsize);
        lrc = mdb_env_open(env, tmp_path, MDB_NOLOCK | MDB_NOSYNC, 0644);
        if (lrc) {
            mdb_env_close(env);
            remove_env_dir(tmp_path);
            return lmdb_err(eb, lrc, "open", tmp_path);
        }
        int map_full = 0;
        rd_errbuf local;
        rd_errbuf_clear(&local);
        rc = write_records(env, shard, n_shards, step, seed, tables, n_tables, info, tmp_path,
                           &local, &map_full);
        if (rc == RD_OK && (lrc = mdb_env_sync(env, 1)))
            rc = lmdb_err(&local, lrc, "sync", tmp_path);
        uint32_t crc = 0;
        if (rc == RD_OK) {
            MDB_txn *txn;
            if ((lrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))) {
                rc = lmdb_err(&local, lrc, "read back", tmp_path);
            } else {
                rc = crc_env(txn, &crc, &local, tmp_path);
                mdb_txn_abort(txn);
            }
        }
        mdb_env_close(env);
        if (rc != RD_OK) {
            remove_env_dir(tmp_path);
            if (map_full && attempt < 8) {
                mapsize *= 2;
                continue;
            }
            return rd_err_set(eb, local.code, "%s", local.msg);
        }
        if (info)
            info->crc = crc;
        break;
    }
    if (rename(tmp_path, final_path) != 0) {
        int err = errno;
        remove_env_dir(tmp_path);
        return rd_err_set(eb, RD_ERR_IO, "rename %s -> %s: %s", tmp_path, final_path,
                          strerror(err));
    }
    return fsync_dir(dir, eb);
}

// ---------------------------------------------------------------------------------------------
// Read a shard

static int read_table_rec(MDB_txn *txn, MDB_dbi meta, uint32_t index, table_rec *tr) {
    char name[32];
    snprintf(name, sizeof name, "table/%04u", index);
    MDB_val k = {strlen(name), name}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc)
        return rc;
    if (v.mv_size != sizeof *tr)
        return MDB_CORRUPTED;
    memcpy(tr, v.mv_data, sizeof *tr);
    tr->name[RD_NAME_MAX - 1] = '\0';
    return 0;
}

static int
read_shard_rec(MDB_txn *txn, MDB_dbi meta, shard_rec *sr, const char *path, rd_errbuf *eb) {
    MDB_val k = {5, (void *)"shard"}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: no shard record", path);
    if (rc)
        return lmdb_err(eb, rc, "read shard record of", path);
    if (v.mv_size != sizeof *sr)
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: shard record of %zu bytes (expected %zu)", path,
                          v.mv_size, sizeof *sr);
    memcpy(sr, v.mv_data, sizeof *sr);
    if (sr->magic != SHARD_MAGIC)
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: bad shard magic", path);
    if (sr->version != RD_CKPT_VERSION)
        return rd_err_set(eb, RD_ERR_VERSION, "%s: checkpoint version %u, this build reads %d",
                          path, sr->version, RD_CKPT_VERSION);
    return RD_OK;
}

// Load rows.NNNN and pending.NNNN of table record `tr` into t: all of them, or (n_parts > 1) those
// whose key has rd_shard_of(key, n_parts) == part. Every record is read and checked either way.
static int load_table_dbs(MDB_txn *txn,
                          const table_rec *tr,
                          rd_table *t,
                          int part,
                          int n_parts,
                          const char *path,
                          rd_errbuf *eb) {
    char name[32];
    MDB_dbi rows, pend;
    snprintf(name, sizeof name, "rows.%04u", tr->index);
    int rc = open_db(txn, name, &rows);
    if (rc)
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: database %s: %s", path, name, mdb_strerror(rc));
    snprintf(name, sizeof name, "pending.%04u", tr->index);
    rc = open_db(txn, name, &pend);
    if (rc)
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: database %s: %s", path, name, mdb_strerror(rc));
    size_t fbytes = rd_table_row_floats(t) * sizeof(float);
    float *buf = rd_aligned_alloc(fbytes);
    if (!buf)
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory", path);
    MDB_cursor *cur;
    MDB_val k, v;
    int status = RD_OK;
    uint64_t n_rows = 0, n_pend = 0;
    if ((rc = mdb_cursor_open(txn, rows, &cur))) {
        rd_aligned_free(buf);
        return lmdb_err(eb, rc, "cursor on", path);
    }
    while (status == RD_OK && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (k.mv_size != 8 || v.mv_size != fbytes + 16) {
            status = rd_err_set(eb, RD_ERR_CORRUPT,
                                "%s: table %s: row record of %zu+%zu bytes (expected 8+%zu)", path,
                                tr->name, k.mv_size, v.mv_size, fbytes + 16);
            break;
        }
        int64_t ls;
        uint64_t cnt;
        memcpy(buf, v.mv_data, fbytes);
        memcpy(&ls, (const unsigned char *)v.mv_data + fbytes, 8);
        memcpy(&cnt, (const unsigned char *)v.mv_data + fbytes + 8, 8);
        uint64_t key = key_from_be(k.mv_data);
        int prc = n_parts > 1 && rd_shard_of(key, n_parts) != part
                      ? (key == 0 ? RD_ERR_ARG : RD_OK)
                      : rd_table_put(t, key, buf, ls, cnt);
        if (prc != RD_OK)
            status = rd_err_set(eb, prc, "%s: table %s: cannot insert row (%s)", path, tr->name,
                                rd_strerror(prc));
        n_rows++;
    }
    mdb_cursor_close(cur);
    rd_aligned_free(buf);
    if (status == RD_OK && rc != MDB_NOTFOUND)
        status = lmdb_err(eb, rc, "read rows of", path);
    if (status != RD_OK)
        return status;
    if ((rc = mdb_cursor_open(txn, pend, &cur)))
        return lmdb_err(eb, rc, "cursor on", path);
    while (status == RD_OK && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        pending_rec pr;
        if (k.mv_size != 8 || v.mv_size != sizeof pr) {
            status =
                rd_err_set(eb, RD_ERR_CORRUPT, "%s: table %s: bad pending record", path, tr->name);
            break;
        }
        memcpy(&pr, v.mv_data, sizeof pr);
        uint64_t key = key_from_be(k.mv_data);
        int prc = n_parts > 1 && rd_shard_of(key, n_parts) != part
                      ? (key == 0 || pr.count == 0 ? RD_ERR_ARG : RD_OK)
                      : rd_table_pending_put(t, key, pr.count, pr.last_seen);
        if (prc != RD_OK)
            status = rd_err_set(eb, prc == RD_ERR_ARG ? RD_ERR_CORRUPT : prc,
                                "%s: table %s: bad pending entry (%s)", path, tr->name,
                                rd_strerror(prc));
        n_pend++;
    }
    mdb_cursor_close(cur);
    if (status == RD_OK && rc != MDB_NOTFOUND)
        status = lmdb_err(eb, rc, "read pending of", path);
    if (status == RD_OK && (n_rows != tr->rows || n_pend != tr->pending))
        status = rd_err_set(eb, RD_ERR_CORRUPT,
                            "%s: table %s holds %" PRIu64 " rows / %" PRIu64
                            " pending, its record says %" PRIu64 " / %" PRIu64,
                            path, tr->name, n_rows, n_pend, tr->rows, tr->pending);
    return status;
}

static int
check_table_matches(const table_rec *tr, const rd_table *t, const char *path, rd_errbuf *eb) {
    const rd_table_config *tc = rd_table_config_of(t);
    if (strcmp(tr->name, tc->name) != 0 || tr->dim != (uint32_t)tc->dim ||
        tr->optim != (uint32_t)tc->optim.kind ||
        tr->slots != (uint32_t)rd_optim_slots(tc->optim.kind))
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s: table #%u is %s (dim %u, %s) but this run has %s (dim %d, %s)", path,
                          tr->index, tr->name, tr->dim, rd_optim_name((int)tr->optim), tc->name,
                          tc->dim, rd_optim_name(tc->optim.kind));
    return RD_OK;
}

typedef struct read_shard_ctx {
    int shard, n_shards;
    rd_table *const *tables;
    int n_tables;
    const uint32_t *expect_crc;
    int64_t *step;
    rd_ckpt_shard_info *info;
    int part, n_parts; // only the keys with rd_shard_of(key, n_parts) == part (n_parts 1: all)
} read_shard_ctx;

static int read_shard_fn(MDB_txn *txn, const char *path, void *vctx, rd_errbuf *eb) {
    const read_shard_ctx *c = vctx;
    int rc = RD_OK, lrc;
    MDB_dbi meta;
    shard_rec sr;
    if (c->expect_crc) {
        uint32_t crc = 0;
        if ((rc = crc_env(txn, &crc, eb, path)) != RD_OK)
            return rc;
        if (crc != *c->expect_crc)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "%s: CRC-32C 0x%08x does not match the manifest (0x%08x)", path, crc,
                              *c->expect_crc);
    }
    if (open_db(txn, "meta", &meta))
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: no meta database", path);
    if ((rc = read_shard_rec(txn, meta, &sr, path, eb)) != RD_OK)
        return rc;
    if (sr.shard != (uint32_t)c->shard || sr.n_shards != (uint32_t)c->n_shards)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s is shard %u of %u, expected shard %d of %d (LOAD restores into the "
                          "same number of PS ranks)",
                          path, sr.shard, sr.n_shards, c->shard, c->n_shards);
    for (int i = 0; i < c->n_tables && rc == RD_OK; i++) {
        table_rec tr;
        rd_table *t = c->tables[i];
        uint32_t index = (uint32_t)rd_table_index(t);
        lrc = read_table_rec(txn, meta, index, &tr);
        if (lrc == MDB_NOTFOUND)
            return rd_err_set(eb, RD_ERR_SCHEMA, "%s: table %s (#%u) is not in this checkpoint",
                              path, rd_table_config_of(t)->name, index);
        if (lrc)
            return rd_err_set(eb, RD_ERR_CORRUPT, "%s: table record #%u: %s", path, index,
                              mdb_strerror(lrc));
        if ((rc = check_table_matches(&tr, t, path, eb)) != RD_OK)
            return rc;
        if ((rc = load_table_dbs(txn, &tr, t, c->part, c->n_parts, path, eb)) != RD_OK)
            return rc;
        rd_table_stats st;
        memset(&st, 0, sizeof st);
        st.admitted = tr.admitted;
        st.rejected = tr.rejected;
        st.evicted = tr.evicted;
        st.pulled = tr.pulled;
        st.pushed = tr.pushed;
        st.now = tr.now;
        rd_table_set_counters(t, &st);
        if (c->info) {
            c->info->rows[i] = tr.rows;
            c->info->pending[i] = tr.pending;
        }
    }
    if (c->step)
        *c->step = sr.step;
    if (c->info) {
        c->info->n_tables = (uint32_t)c->n_tables;
        c->info->crc = c->expect_crc ? *c->expect_crc : 0;
    }
    return RD_OK;
}

int rd_ckpt_read_shard(const char *dir,
                       int shard,
                       int n_shards,
                       rd_table *const *tables,
                       int n_tables,
                       const uint32_t *expect_crc,
                       int64_t *step,
                       rd_ckpt_shard_info *info,
                       rd_errbuf *eb) {
    RD_ARG_CHECK(eb, tables || n_tables == 0);
    char path[RD_PATH_MAX * 2];
    if (!dir || rd_ckpt_shard_path(dir, shard, path, sizeof path) != RD_OK)
        return rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long or empty");
    read_shard_ctx c = {shard, n_shards, tables, n_tables, expect_crc, step, info, 0, 1};
    return with_shard_txn(path, read_shard_fn, &c, eb);
}

int rd_ckpt_read_shard_part(const char *dir,
                            int shard,
                            int n_shards,
                            rd_table *const *tables,
                            int n_tables,
                            const uint32_t *expect_crc,
                            int part,
                            int n_parts,
                            rd_errbuf *eb) {
    RD_ARG_CHECK(eb, tables || n_tables == 0);
    char path[RD_PATH_MAX * 2];
    if (n_parts < 1 || part < 0 || part >= n_parts)
        return rd_err_set(eb, RD_ERR_ARG, "rd_ckpt_read_shard_part: part %d of %d", part, n_parts);
    if (!dir || rd_ckpt_shard_path(dir, shard, path, sizeof path) != RD_OK)
        return rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long or empty");
    read_shard_ctx c = {shard, n_shards, tables, n_tables, expect_crc, NULL, NULL, part, n_parts};
    return with_shard_txn(path, read_shard_fn, &c, eb);
}

// ---------------------------------------------------------------------------------------------
// Manifest

#define MANIFEST_HEAD  40
#define MANIFEST_TABLE 64
#define MANIFEST_SHARD 16

static size_t manifest_bytes(uint32_t n_tables, uint32_t n_shards) {
    return MANIFEST_HEAD + (size_t)n_tables * MANIFEST_TABLE + (size_t)n_shards * MANIFEST_SHARD +
           4;
}

int rd_ckpt_write_manifest(const char *dir, const rd_ckpt_manifest *m, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, dir != NULL);
    if (!m || m->n_shards < 1 || m->n_shards > RD_CKPT_MAX_SHARDS || m->n_tables > RD_MAX_TABLES)
        return rd_err_set(eb, RD_ERR_ARG, "manifest: bad shard/table counts");
    size_t len = manifest_bytes(m->n_tables, m->n_shards);
    unsigned char *buf = rd_calloc(1, len);
    if (!buf)
        return rd_err_set(eb, RD_ERR_NOMEM, "manifest: out of memory");
    unsigned char *p = buf;
    uint64_t magic = MANIFEST_MAGIC;
    uint32_t version = RD_CKPT_VERSION;
    memcpy(p, &magic, 8);
    memcpy(p + 8, &version, 4);
    memcpy(p + 12, &m->n_shards, 4);
    memcpy(p + 16, &m->step, 8);
    memcpy(p + 24, &m->seed, 8);
    memcpy(p + 32, &m->n_tables, 4);
    p += MANIFEST_HEAD;
    for (uint32_t i = 0; i < m->n_tables; i++, p += MANIFEST_TABLE) {
        const rd_ckpt_table *t = &m->tables[i];
        memcpy(p, t->name, RD_NAME_MAX);
        p[RD_NAME_MAX - 1] = '\0';
        memcpy(p + 32, &t->index, 4);
        memcpy(p + 36, &t->dim, 4);
        memcpy(p + 40, &t->optim, 4);
        memcpy(p + 44, &t->slots, 4);
        memcpy(p + 48, &t->rows, 8);
        memcpy(p + 56, &t->pending, 8);
    }
    for (uint32_t s = 0; s < m->n_shards; s++, p += MANIFEST_SHARD) {
        memcpy(p, &m->shard_crc[s], 4);
        memcpy(p + 8, &m->shard_rows[s], 8);
    }
    uint32_t crc = rd_crc32c(0, buf, len - 4);
    memcpy(p, &crc, 4);

    int rc = rd_lmdbx_mkdir_p(dir, eb);
    char fin[RD_PATH_MAX * 2];
    if (rc == RD_OK && snprintf(fin, sizeof fin, "%s/MANIFEST", dir) >= (int)sizeof fin)
        rc = rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long: %s", dir);
    // A unique temporary file beside it, fsynced, renamed, folder fsynced (rd/lmdbx.h): the
    // MANIFEST is the commit point of the checkpoint.
    if (rc == RD_OK)
        rc = rd_lmdbx_write_file_atomic(fin, buf, len, eb);
    rd_free(buf);
    return rc;
}

int rd_ckpt_read_manifest(const char *dir, rd_ckpt_manifest *m, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, m != NULL);
    char path[RD_PATH_MAX * 2];
    memset(m, 0, sizeof *m);
    RD_ARG_CHECK(eb, dir != NULL);
    if (snprintf(path, sizeof path, "%s/MANIFEST", dir) >= (int)sizeof path)
        return rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long");
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f); // a FIFO here must not block the reader
    if (o != 0)
        return rd_err_set(eb, o < 0 && errno == ENOENT ? RD_ERR_NOTFOUND : RD_ERR_IO,
                          "%s: %s (not a complete checkpoint)", path,
                          o > 0 ? "not a regular file" : strerror(errno));
    size_t maxlen = manifest_bytes(RD_MAX_TABLES, RD_CKPT_MAX_SHARDS);
    unsigned char *buf = rd_malloc(maxlen + 1);
    if (!buf) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t len = fread(buf, 1, maxlen + 1, f);
    int ioerr = ferror(f);
    fclose(f);
    int rc = RD_OK;
    uint64_t magic = 0;
    uint32_t version = 0;
    if (ioerr)
        rc = rd_err_set(eb, RD_ERR_IO, "read %s failed", path);
    else if (len < MANIFEST_HEAD + 4 || len > maxlen)
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: %zu bytes is not a manifest", path, len);
    if (rc == RD_OK) {
        memcpy(&magic, buf, 8);
        memcpy(&version, buf + 8, 4);
        memcpy(&m->n_shards, buf + 12, 4);
        memcpy(&m->step, buf + 16, 8);
        memcpy(&m->seed, buf + 24, 8);
        memcpy(&m->n_tables, buf + 32, 4);
        m->version = version;
        if (magic != MANIFEST_MAGIC)
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: bad magic", path);
        else if (version != RD_CKPT_VERSION)
            rc = rd_err_set(eb, RD_ERR_VERSION, "%s: version %u, this build reads %d", path,
                            version, RD_CKPT_VERSION);
        else if (m->n_shards < 1 || m->n_shards > RD_CKPT_MAX_SHARDS || m->n_tables > RD_MAX_TABLES)
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: %u shards / %u tables out of range", path,
                            m->n_shards, m->n_tables);
        else if (len != manifest_bytes(m->n_tables, m->n_shards))
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: %zu bytes, expected %zu", path, len,
                            manifest_bytes(m->n_tables, m->n_shards));
    }
    if (rc == RD_OK) {
        uint32_t crc;
        memcpy(&crc, buf + len - 4, 4);
        if (crc != rd_crc32c(0, buf, len - 4))
            rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: checksum mismatch", path);
    }
    if (rc == RD_OK) {
        const unsigned char *p = buf + MANIFEST_HEAD;
        for (uint32_t i = 0; i < m->n_tables && rc == RD_OK; i++, p += MANIFEST_TABLE) {
            rd_ckpt_table *t = &m->tables[i];
            memcpy(t->name, p, RD_NAME_MAX);
            memcpy(&t->index, p + 32, 4);
            memcpy(&t->dim, p + 36, 4);
            memcpy(&t->optim, p + 40, 4);
            memcpy(&t->slots, p + 44, 4);
            memcpy(&t->rows, p + 48, 8);
            memcpy(&t->pending, p + 56, 8);
            if (t->name[RD_NAME_MAX - 1] != '\0' || t->name[0] == '\0' || t->dim < 1 ||
                t->dim > 1024 || rd_optim_slots((int)t->optim) < 0 ||
                t->slots != (uint32_t)rd_optim_slots((int)t->optim) || t->index >= RD_MAX_TABLES)
                rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: table entry %u is invalid", path, i);
            for (uint32_t j = 0; j < i && rc == RD_OK; j++)
                if (m->tables[j].index == t->index || strcmp(m->tables[j].name, t->name) == 0)
                    rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: table %s listed twice", path, t->name);
        }
        for (uint32_t s = 0; s < m->n_shards && rc == RD_OK; s++, p += MANIFEST_SHARD) {
            memcpy(&m->shard_crc[s], p, 4);
            memcpy(&m->shard_rows[s], p + 8, 8);
        }
    }
    rd_free(buf);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Verify and merge

// Every float of every row (embedding and optimizer slots) is finite: a row of NaN or inf is a
// diverged optimizer's, and a model restored from it trains on nothing (verify says so, naming
// the table and the key).
static int check_rows_finite(MDB_txn *txn, const table_rec *tr, const char *path, rd_errbuf *eb) {
    char name[32];
    snprintf(name, sizeof name, "rows.%04u", tr->index);
    MDB_dbi dbi;
    int lrc = open_db(txn, name, &dbi);
    if (lrc)
        return lrc == MDB_NOTFOUND
                   ? rd_err_set(eb, RD_ERR_CORRUPT, "%s: database %s missing", path, name)
                   : lmdb_err(eb, lrc, "open", path);
    MDB_cursor *cur;
    if ((lrc = mdb_cursor_open(txn, dbi, &cur)))
        return lmdb_err(eb, lrc, "cursor on", path);
    size_t nf = (size_t)tr->dim * (1 + (size_t)tr->slots);
    MDB_val k, v;
    int rc = RD_OK;
    while (rc == RD_OK && (lrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (v.mv_size < nf * sizeof(float))
            break; // the layout check is the CRC's and the loader's, not this scan's
        for (size_t f = 0; f < nf; f++) {
            float x;
            memcpy(&x, (const char *)v.mv_data + f * sizeof x, sizeof x);
            if (isfinite(x))
                continue;
            uint64_t key = 0;
            for (size_t b = 0; b < k.mv_size && b < 8; b++)
                key = key << 8 | ((const unsigned char *)k.mv_data)[b];
            rc = rd_err_set(eb, RD_ERR_CORRUPT,
                            "%s: table %s: the row of key %016" PRIx64 " holds %s (value %zu of "
                            "%zu): the table's optimizer diverged before this checkpoint",
                            path, tr->name, key, isnan(x) ? "NaN" : "inf", f, nf);
            break;
        }
    }
    mdb_cursor_close(cur);
    if (rc == RD_OK && lrc && lrc != MDB_NOTFOUND)
        rc = lmdb_err(eb, lrc, "scan", path);
    return rc;
}

typedef struct verify_ctx {
    const rd_ckpt_manifest *m;
    uint32_t s;
    uint64_t *rows, *pend;
    int full; // 1: CRC and every row's values too; 0: the records only (rd_ckpt_check_shards)
} verify_ctx;

static int verify_shard_fn(MDB_txn *txn, const char *path, void *vctx, rd_errbuf *eb) {
    const verify_ctx *c = vctx;
    const rd_ckpt_manifest *m = c->m;
    uint32_t s = c->s, crc = 0;
    uint64_t shard_rows = 0;
    int rc = c->full ? crc_env(txn, &crc, eb, path) : RD_OK;
    if (rc != RD_OK)
        return rc;
    if (c->full && crc != m->shard_crc[s])
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: CRC-32C 0x%08x, the manifest says 0x%08x", path,
                          crc, m->shard_crc[s]);
    MDB_dbi meta;
    shard_rec sr;
    if (open_db(txn, "meta", &meta))
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: no meta database", path);
    if ((rc = read_shard_rec(txn, meta, &sr, path, eb)) != RD_OK)
        return rc;
    if (sr.shard != s || sr.n_shards != m->n_shards || sr.step != m->step || sr.seed != m->seed ||
        sr.n_tables != m->n_tables)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s: shard record (shard %u of %u, step %" PRId64
                          ", %u tables) disagrees with the manifest (shard %u of %u, step %" PRId64
                          ", %u tables)",
                          path, sr.shard, sr.n_shards, sr.step, sr.n_tables, s, m->n_shards,
                          m->step, m->n_tables);
    for (uint32_t i = 0; i < m->n_tables; i++) {
        table_rec tr;
        int lrc = read_table_rec(txn, meta, m->tables[i].index, &tr);
        if (lrc || strcmp(tr.name, m->tables[i].name) != 0 || tr.dim != m->tables[i].dim ||
            tr.optim != m->tables[i].optim)
            return rd_err_set(eb, RD_ERR_CORRUPT, "%s: table %s missing or different", path,
                              m->tables[i].name);
        c->rows[i] += tr.rows;
        c->pend[i] += tr.pending;
        shard_rows += tr.rows;
        if (c->full && (rc = check_rows_finite(txn, &tr, path, eb)) != RD_OK)
            return rc;
    }
    if (shard_rows != m->shard_rows[s])
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: %" PRIu64 " rows, the manifest says %" PRIu64,
                          path, shard_rows, m->shard_rows[s]);
    return RD_OK;
}

static int verify(const char *dir, int full, rd_errbuf *eb) {
    if (!dir)
        return rd_err_set(eb, RD_ERR_ARG, "%s: invalid argument: dir != NULL",
                          full ? "rd_ckpt_verify" : "rd_ckpt_check_shards");
    rd_ckpt_manifest *m = rd_malloc(sizeof *m);
    if (!m)
        return rd_err_set(eb, RD_ERR_NOMEM, "verify: out of memory");
    int rc = rd_ckpt_read_manifest(dir, m, eb);
    uint64_t rows[RD_MAX_TABLES] = {0}, pend[RD_MAX_TABLES] = {0};
    for (uint32_t s = 0; s < m->n_shards && rc == RD_OK; s++) {
        char path[RD_PATH_MAX * 2];
        rd_ckpt_shard_path(dir, (int)s, path, sizeof path);
        verify_ctx c = {m, s, rows, pend, full};
        rc = with_shard_txn(path, verify_shard_fn, &c, eb);
    }
    for (uint32_t i = 0; i < m->n_tables && rc == RD_OK; i++)
        if (rows[i] != m->tables[i].rows || pend[i] != m->tables[i].pending)
            rc = rd_err_set(eb, RD_ERR_CORRUPT,
                            "%s: table %s has %" PRIu64 " rows in its shards, the manifest says "
                            "%" PRIu64,
                            dir, m->tables[i].name, rows[i], m->tables[i].rows);
    rd_free(m);
    return rc;
}

int rd_ckpt_verify(const char *dir, rd_errbuf *eb) {
    return verify(dir, 1, eb);
}

int rd_ckpt_check_shards(const char *dir, rd_errbuf *eb) {
    return verify(dir, 0, eb);
}

typedef struct load_table_ctx {
    const rd_ckpt_table *ct;
    const char *name;
    rd_table *dst;
} load_table_ctx;

static int load_table_fn(MDB_txn *txn, const char *path, void *vctx, rd_errbuf *eb) {
    const load_table_ctx *c = vctx;
    MDB_dbi meta;
    table_rec tr;
    int lrc;
    if ((lrc = open_db(txn, "meta", &meta)) || (lrc = read_table_rec(txn, meta, c->ct->index, &tr)))
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: table %s: %s", path, c->name, mdb_strerror(lrc));
    const rd_table_config *tc = rd_table_config_of(c->dst);
    if (tr.dim != (uint32_t)tc->dim || tr.optim != (uint32_t)tc->optim.kind)
        return rd_err_set(
            eb, RD_ERR_SCHEMA, "%s: table %s is dim %u %s, the destination is dim %d %s", path,
            c->name, tr.dim, rd_optim_name((int)tr.optim), tc->dim, rd_optim_name(tc->optim.kind));
    return load_table_dbs(txn, &tr, c->dst, 0, 1, path, eb);
}

int rd_ckpt_load_table(const char *dir, const char *name, rd_table *dst, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, name != NULL);
    RD_ARG_CHECK(eb, dst != NULL);
    rd_ckpt_manifest *m = rd_malloc(sizeof *m);
    if (!m)
        return rd_err_set(eb, RD_ERR_NOMEM, "load table: out of memory");
    int rc = rd_ckpt_read_manifest(dir, m, eb);
    const rd_ckpt_table *ct = NULL;
    for (uint32_t i = 0; rc == RD_OK && i < m->n_tables; i++)
        if (strcmp(m->tables[i].name, name) == 0)
            ct = &m->tables[i];
    if (rc == RD_OK && !ct)
        rc = rd_err_set(eb, RD_ERR_NOTFOUND, "%s: no table named %s", dir, name);
    for (uint32_t s = 0; rc == RD_OK && s < m->n_shards; s++) {
        char path[RD_PATH_MAX * 2];
        rd_ckpt_shard_path(dir, (int)s, path, sizeof path);
        load_table_ctx c = {ct, name, dst};
        rc = with_shard_txn(path, load_table_fn, &c, eb);
    }
    rd_free(m);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Cursors: one table's records of one shard in key order, straight from the map

struct rd_ckpt_cursor {
    char path[RD_PATH_MAX * 2];
    char name[RD_NAME_MAX]; // the table, for messages
    MDB_env *env;
    MDB_txn *txn;
    MDB_cursor *cur;
    int pending;          // 1: pending.NNNN, 0: rows.NNNN
    size_t fbytes;        // floats of a row, in bytes
    float *buf;           // the current row (the map's copy may be unaligned)
    size_t since_release; // bytes read since the map's pages were last dropped
};

typedef struct cursor_open_ctx {
    rd_ckpt_cursor *c;
    uint32_t index;
    const uint32_t *expect_crc;
} cursor_open_ctx;

// Drop the pages of c's map from this process's resident set (file pages, clean: the next access
// reads them again from the page cache).
static void cursor_drop_pages(rd_ckpt_cursor *c) {
    MDB_envinfo ei;
    if (mdb_env_info(c->env, &ei) == 0 && ei.me_mapaddr)
        (void)madvise(ei.me_mapaddr, ei.me_mapsize, MADV_DONTNEED);
    c->since_release = 0;
}

static int cursor_open_fn(MDB_txn *txn, const char *path, void *vctx, rd_errbuf *eb) {
    (void)txn;
    cursor_open_ctx *o = vctx;
    rd_ckpt_cursor *c = o->c;
    MDB_dbi meta, db;
    table_rec tr;
    int lrc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &c->txn);
    if (lrc)
        return lmdb_err(eb, lrc, "read transaction on", path);
    // The CRC is checked in the transaction the cursor reads from: the records it returns are
    // those of a shard that matches the MANIFEST, even if the shard was replaced since it was
    // last read (its rows counted, say, by an earlier open).
    if (o->expect_crc) {
        uint32_t crc = 0;
        int rc = crc_env(c->txn, &crc, eb, path);
        cursor_drop_pages(c);
        if (rc != RD_OK)
            return rc;
        if (crc != *o->expect_crc)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "%s: CRC-32C 0x%08x does not match the manifest (0x%08x)", path, crc,
                              *o->expect_crc);
    }
    if ((lrc = open_db(c->txn, "meta", &meta)) ||
        (lrc = read_table_rec(c->txn, meta, o->index, &tr)))
        return rd_err_set(eb, lrc == MDB_NOTFOUND ? RD_ERR_SCHEMA : RD_ERR_CORRUPT,
                          "%s: table record #%u: %s", path, o->index, mdb_strerror(lrc));
    snprintf(c->name, sizeof c->name, "%s", tr.name);
    if (c->fbytes != (size_t)tr.dim * (1 + tr.slots) * sizeof(float))
        return rd_err_set(eb, RD_ERR_SCHEMA, "%s: table %s is dim %u with %u slots", path, tr.name,
                          tr.dim, tr.slots);
    char name[32];
    snprintf(name, sizeof name, "%s.%04u", c->pending ? "pending" : "rows", o->index);
    if ((lrc = open_db(c->txn, name, &db)))
        return rd_err_set(eb, RD_ERR_CORRUPT, "%s: database %s: %s", path, name, mdb_strerror(lrc));
    if ((lrc = mdb_cursor_open(c->txn, db, &c->cur)))
        return lmdb_err(eb, lrc, "cursor on", path);
    return RD_OK;
}

int rd_ckpt_cursor_open(const char *dir,
                        int shard,
                        uint32_t index,
                        size_t row_floats,
                        int pending,
                        const uint32_t *expect_crc,
                        rd_ckpt_cursor **out,
                        rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, dir != NULL);
    rd_ckpt_cursor *c = rd_calloc(1, sizeof *c);
    if (!c)
        return rd_err_set(eb, RD_ERR_NOMEM, "checkpoint cursor: out of memory");
    c->pending = pending;
    c->fbytes = row_floats * sizeof(float);
    c->buf = rd_aligned_alloc(c->fbytes ? c->fbytes : 1);
    int rc = !c->buf ? rd_err_set(eb, RD_ERR_NOMEM, "checkpoint cursor: out of memory")
             : !dir || rd_ckpt_shard_path(dir, shard, c->path, sizeof c->path) != RD_OK
                 ? rd_err_set(eb, RD_ERR_ARG, "checkpoint path too long or empty")
                 : open_env_ro(c->path, &c->env, eb);
    if (rc == RD_OK) {
        cursor_open_ctx o = {c, index, expect_crc};
        int faulted;
        RD_LMDBX_GUARDED(rc, faulted, c->path, eb, cursor_open_fn(NULL, c->path, &o, eb));
        (void)faulted;
    }
    if (rc != RD_OK) {
        rd_ckpt_cursor_close(c);
        return rc;
    }
    *out = c;
    return RD_OK;
}

static int cursor_step(rd_ckpt_cursor *c, rd_ckpt_record *r, rd_errbuf *eb) {
    MDB_val k, v;
    int lrc = mdb_cursor_get(c->cur, &k, &v, MDB_NEXT);
    if (lrc == MDB_NOTFOUND)
        return 0;
    if (lrc)
        return lmdb_err(eb, lrc, c->pending ? "read pending of" : "read rows of", c->path);
    if (c->pending) {
        pending_rec pr;
        if (k.mv_size != 8 || v.mv_size != sizeof pr)
            return rd_err_set(eb, RD_ERR_CORRUPT, "%s: table %s: bad pending record", c->path,
                              c->name);
        memcpy(&pr, v.mv_data, sizeof pr);
        r->key = key_from_be(k.mv_data);
        r->row = NULL;
        r->last_seen = pr.last_seen;
        r->count = pr.count;
    } else {
        if (k.mv_size != 8 || v.mv_size != c->fbytes + 16)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "%s: table %s: row record of %zu+%zu bytes (expected 8+%zu)", c->path,
                              c->name, k.mv_size, v.mv_size, c->fbytes + 16);
        memcpy(c->buf, v.mv_data, c->fbytes);
        memcpy(&r->last_seen, (const unsigned char *)v.mv_data + c->fbytes, 8);
        memcpy(&r->count, (const unsigned char *)v.mv_data + c->fbytes + 8, 8);
        r->key = key_from_be(k.mv_data);
        r->row = c->buf;
    }
    c->since_release += k.mv_size + v.mv_size;
    return 1;
}

int rd_ckpt_cursor_next(rd_ckpt_cursor *c, rd_ckpt_record *r, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, c != NULL);
    RD_ARG_CHECK(eb, r != NULL);
    int rc, faulted;
    RD_LMDBX_GUARDED(rc, faulted, c->path, eb, cursor_step(c, r, eb));
    (void)faulted;
    // The pages read so far stay mapped, and a scan of a whole shard would count all of them in
    // this process's resident set (file pages, clean, but they are what `time -v` reports): drop
    // them every 16 MiB of records; the next access reads them again from the page cache.
    if (rc == 1 && c->since_release >= ((size_t)16 << 20))
        cursor_drop_pages(c);
    return rc;
}

void rd_ckpt_cursor_close(rd_ckpt_cursor *c) {
    if (!c)
        return;
    if (c->cur)
        mdb_cursor_close(c->cur);
    if (c->txn)
        mdb_txn_abort(c->txn);
    if (c->env)
        mdb_env_close(c->env);
    rd_aligned_free(c->buf);
    rd_free(c);
}
