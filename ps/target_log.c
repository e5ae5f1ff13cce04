// target_log.c — the distillation target log: raw teacher logits in one LMDB env, keyed
// big-endian by (job, sample, pass). See rd/targets.h for the layout and the contract.
//
// Invariants: every key is 20 bytes and every value 20 bytes with a CRC over both, checked on
// every read; a batch is validated completely before its write transaction starts, and the
// transaction is retried after map growth (rd_lmdbx_write), so a batch is all-or-nothing.
// Workload: one append per teacher step (a few thousand records), range reads by students over
// their sample ids; the read transaction is reset/renewed, not recreated.
#include "rd/targets.h"

#include "rd/alloc.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/writer_lock.h"

#include "token_store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAGIC    "RDTGTLOG"
#define HEADER_BYTES 40
#define PATH_CAP     4096
#define DEFAULT_MAP  (UINT64_C(1) << 20)
#define JOB_SEED     0x7461726765746c6fULL // "targetlo"

struct rd_target_log {
    char path[PATH_CAP];
    MDB_env *env;
    MDB_dbi dbi_meta, dbi_targets;
    MDB_txn *rtxn; // reusable read txn (reset between calls)
    MDB_cursor *rcur;
    int writable;
    uint64_t max_map_size;
    struct trec *recs; // append scratch
    size_t recs_cap;
    rd_lmdbx_damage dmg; // a damaged page met (rd/lmdbx.h): every later call is refused
};

// Return the result of `call` run under the damaged-page guard (rd/lmdbx.h).
#define TL_GUARDED(log, eb, call)                                                                  \
    RD_LMDBX_RETURN_GUARDED(&(log)->dmg, "target log ", (log)->path, eb, call)

typedef struct trec {
    unsigned char key[RD_TARGET_KEY_BYTES];
    uint32_t idx;
} trec;

uint64_t rd_target_job_key(const char *job_name) {
    return rd_hash_str(job_name ? job_name : "", JOB_SEED);
}

// ---------------------------------------------------------------------------------------------
// Records

static void pack_key(unsigned char *k, uint64_t job, uint64_t sample, uint32_t pass) {
    rd_lmdbx_put_be64(k, job);
    rd_lmdbx_put_be64(k + 8, sample);
    rd_lmdbx_put_be32(k + 16, pass);
}

static void encode_value(
    unsigned char *v, const unsigned char *key, float logit, int32_t window, uint64_t version) {
    uint32_t lb;
    memcpy(&lb, &logit, 4);
    rd__le32_put(v, lb);
    rd__le32_put(v + 4, (uint32_t)window);
    rd__le64_put(v + 8, version);
    rd__le32_put(v + 16, rd_crc32c(rd_crc32c(0, key, RD_TARGET_KEY_BYTES), v, 16));
}

static int bad_record(const rd_target_log *log, const MDB_val *k, const char *what, rd_errbuf *eb) {
    if (k->mv_size == RD_TARGET_KEY_BYTES) {
        const unsigned char *p = k->mv_data;
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "target log %s: record (job %016" PRIx64 ", sample %" PRIu64
                          ", pass %u): %s",
                          log->path, rd_lmdbx_get_be64(p), rd_lmdbx_get_be64(p + 8),
                          rd_lmdbx_get_be32(p + 16), what);
    }
    return rd_err_set(eb, RD_ERR_CORRUPT, "target log %s: key of %zu bytes: %s", log->path,
                      k->mv_size, what);
}

// Check and decode one record.
static int decode(const rd_target_log *log,
                  const MDB_val *k,
                  const MDB_val *v,
                  float *logit,
                  int32_t *window,
                  uint64_t *version,
                  rd_errbuf *eb) {
    if (k->mv_size != RD_TARGET_KEY_BYTES)
        return bad_record(log, k, "key is not 20 bytes", eb);
    if (v->mv_size != RD_TARGET_VALUE_BYTES) {
        char what[64];
        snprintf(what, sizeof what, "value of %zu bytes, expected %d", v->mv_size,
                 RD_TARGET_VALUE_BYTES);
        return bad_record(log, k, what, eb);
    }
    const unsigned char *p = v->mv_data;
    if (rd__le32_get(p + 16) != rd_crc32c(rd_crc32c(0, k->mv_data, RD_TARGET_KEY_BYTES), p, 16))
        return bad_record(log, k, "CRC mismatch", eb);
    uint32_t lb = rd__le32_get(p);
    float lf;
    memcpy(&lf, &lb, 4);
    // The sender refuses a non-finite logit before it is sent or logged: one here was written by
    // something else, and a replaying student would fail later naming neither log nor record.
    if (!isfinite(lf))
        return bad_record(log, k, "the logit is not a finite number", eb);
    if (logit)
        *logit = lf;
    if (window)
        *window = (int32_t)rd__le32_get(p + 4);
    if (version)
        *version = rd__le64_get(p + 8);
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Header

static void header_encode(unsigned char *h) {
    memset(h, 0, HEADER_BYTES);
    memcpy(h, LOG_MAGIC, 8);
    rd__le32_put(h + 8, RD_TARGET_LOG_VERSION);
    rd__le32_put(h + 12, RD_TARGET_KEY_BYTES);
    rd__le32_put(h + 16, RD_TARGET_VALUE_BYTES);
    rd__le64_put(h + 24, (uint64_t)time(NULL));
    rd__le32_put(h + 36, rd_crc32c(0, h, 36));
}

static int header_check(const rd_target_log *log, const MDB_val *v, rd_errbuf *eb) {
    const unsigned char *h = v->mv_data;
    if (v->mv_size != HEADER_BYTES || memcmp(h, LOG_MAGIC, 8) != 0)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "target log %s: header record of %zu bytes with a bad magic (not a "
                          "target log)",
                          log->path, v->mv_size);
    uint32_t version = rd__le32_get(h + 8);
    if (version != RD_TARGET_LOG_VERSION)
        return rd_err_set(eb, RD_ERR_VERSION,
                          "target log %s: log version %u, this build reads version %d", log->path,
                          version, RD_TARGET_LOG_VERSION);
    if (rd__le32_get(h + 36) != rd_crc32c(0, h, 36))
        return rd_err_set(eb, RD_ERR_CORRUPT, "target log %s: header CRC mismatch", log->path);
    uint32_t kb = rd__le32_get(h + 12), vb = rd__le32_get(h + 16);
    if (kb != RD_TARGET_KEY_BYTES || vb != RD_TARGET_VALUE_BYTES)
        return rd_err_set(eb, RD_ERR_VERSION,
                          "target log %s: records of %u + %u bytes, this build uses %d + %d",
                          log->path, kb, vb, RD_TARGET_KEY_BYTES, RD_TARGET_VALUE_BYTES);
    return RD_OK;
}

static int create_cb(MDB_txn *txn, void *ctx, rd_errbuf *eb) {
    (void)ctx;
    (void)eb;
    MDB_dbi meta, targets;
    int rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta);
    if (!rc)
        rc = mdb_dbi_open(txn, "targets", MDB_CREATE, &targets);
    if (rc)
        return rc;
    MDB_val k = {6, (void *)"header"}, v;
    if (mdb_get(txn, meta, &k, &v) == 0)
        return MDB_KEYEXIST; // a log already lives here
    unsigned char h[HEADER_BYTES];
    header_encode(h);
    v.mv_size = HEADER_BYTES;
    v.mv_data = h;
    return mdb_put(txn, meta, &k, &v, MDB_NOOVERWRITE);
}

// ---------------------------------------------------------------------------------------------
// Create / open / close

static int
open_env(rd_target_log *log, int writable, int create, const rd_target_log_opts *o, rd_errbuf *eb) {
    rd_lmdbx_opts lo = {0};
    lo.read_only = !writable;
    lo.create = create;
    lo.no_sync = o ? o->no_sync : 0;
    lo.map_size = o && o->map_size ? o->map_size : (create ? DEFAULT_MAP : 0);
    lo.max_map_size = o ? o->max_map_size : 0;
    lo.max_dbs = 4;
    return rd_lmdbx_env_open(log->path, &lo, &log->env, eb);
}

// Open the databases and check the header (the env is open).
static int attach_unguarded(rd_target_log *log, rd_errbuf *eb) {
    MDB_txn *txn = NULL;
    int rc = rd_lmdbx_read_begin(log->env, &txn, log->path, eb);
    if (rc != RD_OK)
        return rc;
    int mrc = mdb_dbi_open(txn, "meta", 0, &log->dbi_meta);
    if (!mrc)
        mrc = mdb_dbi_open(txn, "targets", 0, &log->dbi_targets);
    if (mrc) {
        mdb_txn_abort(txn);
        if (mrc == MDB_NOTFOUND)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "target log %s: no meta/targets database (not a target log)",
                              log->path);
        return rd_lmdbx_error(eb, mrc, "open target log databases", log->path);
    }
    MDB_val k = {6, (void *)"header"}, v;
    mrc = mdb_get(txn, log->dbi_meta, &k, &v);
    if (mrc) {
        mdb_txn_abort(txn);
        if (mrc == MDB_NOTFOUND)
            return rd_err_set(eb, RD_ERR_CORRUPT, "target log %s: no header record", log->path);
        return rd_lmdbx_error(eb, mrc, "read target log header", log->path);
    }
    rc = header_check(log, &v, eb);
    mrc = mdb_txn_commit(txn); // keeps the database handles for the env's lifetime
    if (rc != RD_OK)
        return rc;
    return rd_lmdbx_error(eb, mrc, "open target log databases", log->path);
}

// The databases and the header check, under the guard (a damaged file can fault already here).
static int attach(rd_target_log *log, rd_errbuf *eb) {
    TL_GUARDED(log, eb, attach_unguarded(log, eb));
}

static int log_new(const char *path, rd_target_log **out, rd_errbuf *eb) {
    *out = NULL;
    if (!path || !path[0] || strlen(path) >= PATH_CAP - 16)
        return rd_err_set(eb, RD_ERR_ARG, "target log: path is empty or longer than %d bytes",
                          PATH_CAP - 17);
    rd_target_log *log = rd_calloc(1, sizeof *log);
    if (!log)
        return rd_err_set(eb, RD_ERR_NOMEM, "target log %s: out of memory", path);
    snprintf(log->path, sizeof log->path, "%s", path);
    *out = log;
    return RD_OK;
}

int rd_target_log_create(const char *path,
                         const rd_target_log_opts *o,
                         rd_target_log **out,
                         rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    rd_target_log *log;
    int rc = log_new(path, &log, eb);
    if (rc != RD_OK)
        return rc;
    char data[PATH_CAP + 16];
    snprintf(data, sizeof data, "%s/data.mdb", path);
    struct stat st;
    if (stat(data, &st) == 0) {
        rd_target_log_close(log);
        return rd_err_set(eb, RD_ERR_EXISTS,
                          "target log %s: an LMDB env already exists there (open it instead)",
                          path);
    }
    log->writable = 1;
    log->max_map_size = o ? o->max_map_size : 0;
    rc = open_env(log, 1, 1, o, eb);
    if (rc == RD_OK)
        rc = rd_lmdbx_write(log->env, log->max_map_size, log->path, "create target log", create_cb,
                            NULL, eb);
    if (rc == RD_OK)
        rc = attach(log, eb);
    if (rc != RD_OK) {
        rd_target_log_close(log);
        return rc;
    }
    *out = log;
    return RD_OK;
}

int rd_target_log_open(const char *path,
                       int writable,
                       const rd_target_log_opts *o,
                       rd_target_log **out,
                       rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    rd_target_log *log;
    int rc = log_new(path, &log, eb);
    if (rc != RD_OK)
        return rc;
    char data[PATH_CAP + 16];
    snprintf(data, sizeof data, "%s/data.mdb", path);
    struct stat st;
    if (stat(data, &st) != 0) {
        rd_target_log_close(log);
        return rd_err_set(eb, RD_ERR_NOTFOUND, "target log %s: no such log (no data.mdb)", path);
    }
    log->writable = writable != 0;
    log->max_map_size = o ? o->max_map_size : 0;
    rc = open_env(log, log->writable, 0, o, eb);
    if (rc == RD_OK)
        rc = attach(log, eb);
    if (rc != RD_OK) {
        rd_target_log_close(log);
        return rc;
    }
    *out = log;
    return RD_OK;
}

// Remove a folder that holds an LMDB env (data.mdb, lock.mdb, and the writer's lock file) and
// nothing else. Only the launch that holds the writer lock removes its log (a creation undone),
// and a process that locks the unlinked file notices it (writer_lock.c), so unlinking the lock
// file here is safe.
static void remove_env_dir(const char *dir) {
    char p[PATH_CAP + 112];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/writer.lock", dir);
    unlink(p);
    rmdir(dir);
}

// 1 if folder `dir` holds nothing but the writer's lock file (and an LMDB lock.mdb): the folder
// rd_target_log_lock made for a log that is not created yet.
static int holds_only_lock(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int only = 1;
    struct dirent *e;
    while (only && (e = readdir(d)) != NULL)
        only = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
               strcmp(e->d_name, "lock.mdb") == 0 || rd_writer_lock_name(e->d_name);
    closedir(d);
    return only;
}

int rd_target_log_lock(const char *path, const char *what, int *fd, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, fd != NULL);
    *fd = -1;
    if (!path || !path[0] || strlen(path) >= PATH_CAP - 16)
        return rd_err_set(eb, RD_ERR_ARG, "target log: path is empty or longer than %d bytes",
                          PATH_CAP - 17);
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_EXISTS, "target log %s: exists and is not a folder", path);
    int rc = rd_lmdbx_mkdir_p(path, eb);
    if (rc != RD_OK)
        return rc;
    return rd_writer_lock(path, NULL, "target log", what, fd, eb);
}

void rd_target_log_unlock(int fd) {
    rd_writer_unlock(fd);
}

void rd_target_log_remove(const char *path) {
    if (path && path[0] && strlen(path) < PATH_CAP)
        remove_env_dir(path);
}

int rd_target_log_open_or_create(const char *path,
                                 const rd_target_log_opts *o,
                                 rd_target_log **out,
                                 int *created,
                                 rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    if (created)
        *created = 0;
    int rc = rd_target_log_open(path, 1, o, out, eb);
    if (rc != RD_ERR_NOTFOUND)
        return rc;
    rd_errbuf_clear(eb);
    if (strlen(path) + 96 >= PATH_CAP)
        return rd_err_set(eb, RD_ERR_ARG, "target log %s: path longer than %d bytes", path,
                          PATH_CAP - 97);
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_EXISTS, "target log %s: exists and is not a folder", path);
    // Build it beside its place and rename it there: a concurrent creator (another teacher job
    // of the launch) either finds the whole log or none, never an env without its header.
    char made[PATH_CAP], part[PATH_CAP + 96];
    if ((rc = rd_lmdbx_mkdir_parents(path, made, sizeof made, eb)) != RD_OK)
        return rc;
    if ((rc = rd_lmdbx_mkdir_partial(path, part, sizeof part, eb)) != RD_OK) {
        rd_lmdbx_rmdir_created(path, made);
        return rc;
    }
    rd_target_log *fresh = NULL;
    rc = rd_target_log_create(part, o, &fresh, eb);
    rd_target_log_close(fresh);
    int lost = 0; // another process put its log into place first
    if (rc == RD_OK && rename(part, path) != 0) {
        if (errno != ENOTEMPTY && errno != EEXIST) {
            rc = rd_err_set(eb, RD_ERR_IO, "target log %s: rename %s into place: %s", path, part,
                            strerror(errno));
        } else if (holds_only_lock(path)) {
            // The folder of the launch's writer lock (rd_target_log_lock): link the finished
            // data.mdb in (link fails if another teacher job of the launch was first; LMDB makes
            // a fresh lock.mdb at the first open).
            char from[PATH_CAP + 112], to[PATH_CAP + 16];
            snprintf(from, sizeof from, "%s/data.mdb", part);
            snprintf(to, sizeof to, "%s/data.mdb", path);
            if (link(from, to) != 0) {
                if (errno == EEXIST)
                    lost = 1;
                else
                    rc = rd_err_set(eb, RD_ERR_IO, "target log %s: link %s into place: %s", path,
                                    from, strerror(errno));
            }
            remove_env_dir(part); // its data.mdb lives on under `path` when the link succeeded
        } else {
            lost = 1;
        }
    }
    if (rc != RD_OK || lost)
        remove_env_dir(part);
    rd_lmdbx_pending_forget(part);
    // The log's folder (its data.mdb renamed or linked in), the rename into place and the
    // folders made for the log are synced in their parents, or a crash could lose a log whose
    // pages were synced (no_sync env: at the checkpoints, which sync data.mdb only).
    if (rc == RD_OK && !lost && (rc = rd_lmdbx_fsync_path(path, eb)) == RD_OK)
        rc = rd_lmdbx_fsync_parents(path, made, eb);
    if (rc != RD_OK) {
        rd_lmdbx_rmdir_created(path, made);
        return rc;
    }
    rc = rd_target_log_open(path, 1, o, out, eb);
    if (rc == RD_OK && created)
        *created = !lost;
    if (rc == RD_ERR_NOTFOUND) { // the rename failed on a folder that holds something else
        rd_errbuf_clear(eb);
        return rd_err_set(eb, RD_ERR_EXISTS,
                          "target log %s: the folder holds other files but no log (data.mdb): "
                          "empty it or choose another distill.target_log",
                          path);
    }
    return rc;
}

void rd_target_log_close(rd_target_log *log) {
    if (!log)
        return;
    if (log->rcur)
        mdb_cursor_close(log->rcur);
    if (log->rtxn)
        mdb_txn_abort(log->rtxn);
    if (log->env)
        rd_lmdbx_env_close(log->env);
    rd_free(log->recs);
    rd_free(log);
}

// ---------------------------------------------------------------------------------------------
// Append

static int trec_cmp(const void *a, const void *b) {
    const trec *x = a, *y = b;
    int c = memcmp(x->key, y->key, RD_TARGET_KEY_BYTES);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx; // the later duplicate is written last
}

typedef struct append_ctx {
    rd_target_log *log;
    const rd_target_batch *b;
} append_ctx;

static int append_cb(MDB_txn *txn, void *vctx, rd_errbuf *eb) {
    (void)eb;
    append_ctx *c = vctx;
    rd_target_log *log = c->log;
    const rd_target_batch *b = c->b;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, log->dbi_targets, &cur);
    if (rc)
        return rc;
    unsigned char last[RD_TARGET_KEY_BYTES];
    int have_last = 0, unknown = 0;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == RD_TARGET_KEY_BYTES) {
        memcpy(last, k.mv_data, RD_TARGET_KEY_BYTES);
        have_last = 1;
    } else if (rc == 0) {
        unknown = 1;
    } else if (rc != MDB_NOTFOUND) {
        mdb_cursor_close(cur);
        return rc;
    }
    for (size_t j = 0; j < b->n; j++) {
        trec *r = &log->recs[j];
        unsigned flags = MDB_RESERVE;
        int beyond = !have_last || memcmp(r->key, last, RD_TARGET_KEY_BYTES) > 0;
        if (!unknown && beyond)
            flags |= MDB_APPEND;
        k.mv_size = RD_TARGET_KEY_BYTES;
        k.mv_data = r->key;
        v.mv_size = RD_TARGET_VALUE_BYTES;
        v.mv_data = NULL;
        rc = mdb_cursor_put(cur, &k, &v, flags);
        if (rc) {
            mdb_cursor_close(cur);
            return rc;
        }
        size_t i = r->idx;
        encode_value(v.mv_data, r->key, b->logits[i], b->windows ? b->windows[i] : -1,
                     b->versions ? b->versions[i] : 0);
        if (beyond)
            memcpy(last, r->key, RD_TARGET_KEY_BYTES);
        have_last = 1;
    }
    mdb_cursor_close(cur);
    return 0;
}

static int append_unguarded(rd_target_log *log, const rd_target_batch *b, rd_errbuf *eb) {
    RD_ASSERT(log && b);
    if (b->n == 0)
        return RD_OK;
    if (!log->writable)
        return rd_err_set(eb, RD_ERR_ARG, "target log %s is open read-only: cannot append",
                          log->path);
    if (!b->samples || !b->logits)
        return rd_err_set(eb, RD_ERR_ARG, "target log append: samples and logits are required");
    if (b->n > UINT32_MAX)
        return rd_err_set(eb, RD_ERR_ARG, "target log append: %zu records in one batch", b->n);
    for (size_t i = 0; i < b->n; i++) {
        uint32_t x;
        memcpy(&x, &b->logits[i], 4);
        if ((x & 0x7f800000u) == 0x7f800000u)
            return rd_err_set(eb, RD_ERR_ARG,
                              "target log append: logit of record %zu (sample %" PRIu64
                              ") is not finite",
                              i, b->samples[i]);
    }
    if (log->recs_cap < b->n) {
        trec *r = rd_realloc(log->recs, b->n * sizeof *r);
        if (!r)
            return rd_err_set(eb, RD_ERR_NOMEM, "target log append: out of memory");
        log->recs = r;
        log->recs_cap = b->n;
    }
    int sorted = 1;
    for (size_t i = 0; i < b->n; i++) {
        pack_key(log->recs[i].key, b->job, b->samples[i], b->pass);
        log->recs[i].idx = (uint32_t)i;
        if (i && sorted && memcmp(log->recs[i - 1].key, log->recs[i].key, RD_TARGET_KEY_BYTES) >= 0)
            sorted = 0;
    }
    if (!sorted)
        qsort(log->recs, b->n, sizeof *log->recs, trec_cmp);
    append_ctx c = {log, b};
    return rd_lmdbx_write(log->env, log->max_map_size, log->path, "target log append", append_cb,
                          &c, eb);
}

int rd_target_log_append(rd_target_log *log, const rd_target_batch *b, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, log != NULL);
    RD_ARG_CHECK(eb, b != NULL);
    TL_GUARDED(log, eb, append_unguarded(log, b, eb));
}

// ---------------------------------------------------------------------------------------------
// Dropping one job's records

typedef struct drop_ctx {
    rd_target_log *log;
    uint64_t job;
    uint64_t n; // records deleted by the last run of the callback
} drop_ctx;

// Delete every record whose key starts with the job's 8 bytes. Re-runnable: rd_lmdbx_write runs
// it again from scratch after map growth, so the count restarts with it.
static int drop_cb(MDB_txn *txn, void *vctx, rd_errbuf *eb) {
    drop_ctx *c = vctx;
    c->n = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->log->dbi_targets, &cur);
    if (rc)
        return rc;
    unsigned char kb[RD_TARGET_KEY_BYTES];
    pack_key(kb, c->job, 0, 0);
    MDB_val k = {RD_TARGET_KEY_BYTES, kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size != RD_TARGET_KEY_BYTES) {
            mdb_cursor_close(cur);
            return bad_record(c->log, &k, "key is not 20 bytes", eb);
        }
        if (rd_lmdbx_get_be64(k.mv_data) != c->job)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        c->n++;
        // Seek again rather than rely on where a delete leaves the cursor (LMDB 0.9 differs
        // between its last record of a page, of the tree, and an emptied tree).
        k.mv_size = RD_TARGET_KEY_BYTES;
        k.mv_data = kb;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

static int
drop_job_unguarded(rd_target_log *log, uint64_t job, uint64_t *n_dropped, rd_errbuf *eb) {
    if (n_dropped)
        *n_dropped = 0;
    if (!log->writable)
        return rd_err_set(eb, RD_ERR_ARG, "target log %s is open read-only: cannot drop records",
                          log->path);
    drop_ctx c = {.log = log, .job = job};
    int rc = rd_lmdbx_write(log->env, log->max_map_size, log->path, "drop a job's targets", drop_cb,
                            &c, eb);
    if (rc == RD_OK && n_dropped)
        *n_dropped = c.n;
    return rc;
}

int rd_target_log_drop_job(rd_target_log *log, uint64_t job, uint64_t *n_dropped, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, log != NULL);
    TL_GUARDED(log, eb, drop_job_unguarded(log, job, n_dropped, eb));
}

// ---------------------------------------------------------------------------------------------
// Reads

static int read_begin(rd_target_log *log, rd_errbuf *eb) {
    int rc = rd_lmdbx_read_begin(log->env, &log->rtxn, log->path, eb);
    if (rc != RD_OK)
        return rc;
    int mrc = log->rcur ? mdb_cursor_renew(log->rtxn, log->rcur)
                        : mdb_cursor_open(log->rtxn, log->dbi_targets, &log->rcur);
    if (mrc) {
        mdb_txn_reset(log->rtxn);
        return rd_lmdbx_error(eb, mrc, "open target log cursor", log->path);
    }
    return RD_OK;
}

static int read_range_unguarded(rd_target_log *log,
                                uint64_t job,
                                uint64_t lo,
                                uint64_t hi,
                                int64_t pass,
                                const rd_target_out *out,
                                size_t cap,
                                size_t *n_out,
                                rd_errbuf *eb) {
    RD_ASSERT(log && out && n_out);
    *n_out = 0;
    if (!out->samples || !out->logits)
        return rd_err_set(eb, RD_ERR_ARG, "target log read: samples and logits are required");
    if (pass < RD_TARGET_ANY_PASS || pass > (int64_t)UINT32_MAX)
        return rd_err_set(eb, RD_ERR_ARG, "target log read: pass %" PRId64 " out of range", pass);
    if (lo >= hi)
        return RD_OK;
    int rc = read_begin(log, eb);
    if (rc != RD_OK)
        return rc;
    unsigned char kb[RD_TARGET_KEY_BYTES];
    pack_key(kb, job, lo, 0);
    MDB_val k = {RD_TARGET_KEY_BYTES, kb}, v;
    size_t n = 0;
    int mrc = mdb_cursor_get(log->rcur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0) {
        if (k.mv_size != RD_TARGET_KEY_BYTES) {
            rc = bad_record(log, &k, "key is not 20 bytes", eb);
            break;
        }
        const unsigned char *p = k.mv_data;
        uint64_t kjob = rd_lmdbx_get_be64(p), sample = rd_lmdbx_get_be64(p + 8);
        uint32_t kpass = rd_lmdbx_get_be32(p + 16);
        if (kjob != job || sample >= hi)
            break;
        if (pass == RD_TARGET_ANY_PASS || kpass == (uint32_t)pass) {
            if (n < cap) {
                float logit;
                int32_t window;
                uint64_t version;
                rc = decode(log, &k, &v, &logit, &window, &version, eb);
                if (rc != RD_OK)
                    break;
                out->samples[n] = sample;
                out->logits[n] = logit;
                if (out->passes)
                    out->passes[n] = kpass;
                if (out->versions)
                    out->versions[n] = version;
                if (out->windows)
                    out->windows[n] = window;
            }
            n++;
        }
        mrc = mdb_cursor_get(log->rcur, &k, &v, MDB_NEXT);
    }
    mdb_txn_reset(log->rtxn);
    if (rc != RD_OK)
        return rc;
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        return rd_lmdbx_error(eb, mrc, "target log read cursor", log->path);
    *n_out = n;
    if (n > cap)
        return rd_err_set(eb, RD_ERR_RANGE,
                          "target log read: %zu records in samples [%" PRIu64 ", %" PRIu64
                          "), room for %zu",
                          n, lo, hi, cap);
    return RD_OK;
}

int rd_target_log_read_range(rd_target_log *log,
                             uint64_t job,
                             uint64_t lo,
                             uint64_t hi,
                             int64_t pass,
                             const rd_target_out *out,
                             size_t cap,
                             size_t *n_out,
                             rd_errbuf *eb) {
    RD_ARG_CHECK(eb, n_out != NULL);
    *n_out = 0;
    RD_ARG_CHECK(eb, log != NULL);
    RD_ARG_CHECK(eb, out != NULL);
    TL_GUARDED(log, eb, read_range_unguarded(log, job, lo, hi, pass, out, cap, n_out, eb));
}

static int get_unguarded(rd_target_log *log,
                         uint64_t job,
                         uint64_t sample,
                         uint32_t pass,
                         float *logit,
                         uint64_t *version,
                         int32_t *window,
                         rd_errbuf *eb) {
    RD_ASSERT(log);
    int rc = read_begin(log, eb);
    if (rc != RD_OK)
        return rc;
    unsigned char kb[RD_TARGET_KEY_BYTES];
    pack_key(kb, job, sample, pass);
    MDB_val k = {RD_TARGET_KEY_BYTES, kb}, v;
    int mrc = mdb_get(log->rtxn, log->dbi_targets, &k, &v);
    if (mrc == 0)
        rc = decode(log, &k, &v, logit, window, version, eb);
    mdb_txn_reset(log->rtxn);
    if (mrc == MDB_NOTFOUND)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "target log %s: no target for job %016" PRIx64 ", sample %" PRIu64
                          ", pass %u",
                          log->path, job, sample, pass);
    if (mrc)
        return rd_lmdbx_error(eb, mrc, "target log get", log->path);
    return rc;
}

int rd_target_log_get(rd_target_log *log,
                      uint64_t job,
                      uint64_t sample,
                      uint32_t pass,
                      float *logit,
                      uint64_t *version,
                      int32_t *window,
                      rd_errbuf *eb) {
    RD_ARG_CHECK(eb, log != NULL);
    TL_GUARDED(log, eb, get_unguarded(log, job, sample, pass, logit, version, window, eb));
}

static int count_unguarded(rd_target_log *log, uint64_t *n, rd_errbuf *eb) {
    RD_ASSERT(log && n);
    *n = 0;
    int rc = read_begin(log, eb);
    if (rc != RD_OK)
        return rc;
    MDB_stat st;
    int mrc = mdb_stat(log->rtxn, log->dbi_targets, &st);
    mdb_txn_reset(log->rtxn);
    if (mrc)
        return rd_lmdbx_error(eb, mrc, "target log stat", log->path);
    *n = st.ms_entries;
    return RD_OK;
}

int rd_target_log_sync(rd_target_log *log, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, log != NULL);
    if (!log->writable)
        return rd_err_set(eb, RD_ERR_ARG, "target log %s: sync of a read-only handle", log->path);
    int mrc = mdb_env_sync(log->env, 1);
    return mrc ? rd_lmdbx_error(eb, mrc, "sync target log", log->path) : RD_OK;
}

int rd_target_log_count(rd_target_log *log, uint64_t *n, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, log != NULL);
    RD_ARG_CHECK(eb, n != NULL);
    TL_GUARDED(log, eb, count_unguarded(log, n, eb));
}

// ---------------------------------------------------------------------------------------------
// A teacher job's sampling (meta record "job" | be64 job key)

// Version 1 (40 bytes): magic "RDTGJOB1" | f64 neg | f64 pos | u64 salt | u32 crc (over the
// first 32) | u32 0. Version 2 (56 bytes) adds the dataset the teacher trained on:
// magic "RDTGJOB2" | f64 neg | f64 pos | u64 salt | u64 events | u32 records crc | u32 0 |
// u32 crc (over the first 48) | u32 0. Both are read; version 2 is written.
#define JOB_META_MAGIC1 "RDTGJOB1"
#define JOB_META_BYTES1 40
#define JOB_META_MAGIC  "RDTGJOB2"
#define JOB_META_BYTES  56

static void job_meta_key(unsigned char k[11], uint64_t job) {
    memcpy(k, "job", 3);
    rd_lmdbx_put_be64(k + 3, job);
}

typedef struct job_put_ctx {
    uint64_t job;
    unsigned char v[JOB_META_BYTES];
    MDB_dbi meta;
} job_put_ctx;

static int job_put_cb(MDB_txn *txn, void *ctx, rd_errbuf *eb) {
    (void)eb;
    job_put_ctx *c = ctx;
    unsigned char kb[11];
    job_meta_key(kb, c->job);
    MDB_val k = {sizeof kb, kb}, v = {JOB_META_BYTES, c->v};
    return mdb_put(txn, c->meta, &k, &v, 0);
}

int rd_target_log_put_job(rd_target_log *log,
                          uint64_t job,
                          const rd_target_job_info *ji,
                          rd_errbuf *eb) {
    RD_ARG_CHECK(eb, log != NULL);
    RD_ARG_CHECK(eb, ji != NULL);
    if (!log->writable)
        return rd_err_set(eb, RD_ERR_ARG, "target log %s: opened read-only", log->path);
    if (!(ji->neg_rate > 0 && ji->neg_rate <= 1) || !(ji->pos_rate > 0 && ji->pos_rate <= 1))
        return rd_err_set(eb, RD_ERR_ARG, "target log %s: sampling rates %g / %g are not in (0, 1]",
                          log->path, ji->neg_rate, ji->pos_rate);
    if (!ji->has_data)
        return rd_err_set(eb, RD_ERR_ARG, "target log %s: the job record needs its dataset",
                          log->path);
    job_put_ctx c = {.job = job, .meta = log->dbi_meta};
    uint64_t nb, pb;
    memcpy(&nb, &ji->neg_rate, 8);
    memcpy(&pb, &ji->pos_rate, 8);
    memcpy(c.v, JOB_META_MAGIC, 8);
    rd__le64_put(c.v + 8, nb);
    rd__le64_put(c.v + 16, pb);
    rd__le64_put(c.v + 24, ji->salt);
    rd__le64_put(c.v + 32, ji->data_events);
    rd__le32_put(c.v + 40, ji->data_crc);
    rd__le32_put(c.v + 44, 0);
    rd__le32_put(c.v + 48, rd_crc32c(0, c.v, 48));
    rd__le32_put(c.v + 52, 0);
    return rd_lmdbx_write(log->env, log->max_map_size, log->path, "write the job's sampling",
                          job_put_cb, &c, eb);
}

// Decode a job record of either version into ji; 0 when it is damaged.
static int job_decode(const unsigned char *p, size_t n, rd_target_job_info *ji) {
    memset(ji, 0, sizeof *ji);
    size_t body;
    if (n == JOB_META_BYTES && memcmp(p, JOB_META_MAGIC, 8) == 0)
        body = 48;
    else if (n == JOB_META_BYTES1 && memcmp(p, JOB_META_MAGIC1, 8) == 0)
        body = 32;
    else
        return 0;
    if (rd__le32_get(p + body) != rd_crc32c(0, p, body))
        return 0;
    uint64_t nb = rd__le64_get(p + 8), pb = rd__le64_get(p + 16);
    memcpy(&ji->neg_rate, &nb, 8);
    memcpy(&ji->pos_rate, &pb, 8);
    ji->salt = rd__le64_get(p + 24);
    if (body == 48) {
        ji->data_events = rd__le64_get(p + 32);
        ji->data_crc = rd__le32_get(p + 40);
        ji->has_data = 1;
    }
    return 1;
}

static int
get_job_unguarded(rd_target_log *log, uint64_t job, rd_target_job_info *ji, rd_errbuf *eb) {
    int rc = read_begin(log, eb);
    if (rc != RD_OK)
        return rc;
    unsigned char kb[11];
    job_meta_key(kb, job);
    MDB_val k = {sizeof kb, kb}, v;
    int mrc = mdb_get(log->rtxn, log->dbi_meta, &k, &v);
    if (mrc == 0) {
        if (!job_decode(v.mv_data, v.mv_size, ji)) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT,
                            "target log %s: damaged sampling record of job %016" PRIx64, log->path,
                            job);
        } else if (!(ji->neg_rate > 0 && ji->neg_rate <= 1) ||
                   !(ji->pos_rate > 0 && ji->pos_rate <= 1)) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT,
                            "target log %s: sampling record of job %016" PRIx64
                            " with rates %g / %g outside (0, 1]",
                            log->path, job, ji->neg_rate, ji->pos_rate);
        }
    }
    mdb_txn_reset(log->rtxn);
    if (mrc == MDB_NOTFOUND)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "target log %s: no sampling record of job %016" PRIx64, log->path, job);
    if (mrc)
        return rd_lmdbx_error(eb, mrc, "target log: read the job's sampling", log->path);
    return rc;
}

int rd_target_log_get_job(rd_target_log *log, uint64_t job, rd_target_job_info *ji, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, log != NULL);
    RD_ARG_CHECK(eb, ji != NULL);
    TL_GUARDED(log, eb, get_job_unguarded(log, job, ji, eb));
}
