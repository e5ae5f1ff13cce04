// token_store.c — the IAT instance-token store: one LMDB env per shard, keys (user, time, id)
// big-endian, fetch of the last L records strictly before t by a backward cursor walk.
//
// Invariants:
// - A record's key is exactly 24 bytes and its value exactly value_bytes; both are checked on
//   every read (a corrupted or foreign record is an RD_ERR_CORRUPT naming it, never a crash).
// - Only the shards owned by this handle are writable; every append is validated completely
//   before the first write transaction starts.
// - Read transactions live in the handle and are reset at the end of each call and renewed at
//   the next (mdb_txn_renew + mdb_cursor_renew), so a fetch batch costs no malloc and no reader
//   slot churn, and no transaction of this process is active when a write grows the map.
//
// Workload: fetch is the hot path (the teacher reads 256..2048 tokens per example). For each
// request it is one MDB_SET_RANGE on (user, t, 0) and then at most L MDB_PREV steps, each
// decoding one record straight into the caller's arrays (fp32: one memcpy of d floats). Appends
// arrive in batches of thousands and are sorted per shard, so a bulk load in key order uses
// MDB_APPEND (no page splits in the middle of the tree).
#include "rd/tokens.h"

#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/log.h"
#include "rd/writer_lock.h"

#include "token_store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_MAGIC  "RDTOKMAN"
#define HEADER_MAGIC    "RDTOKSHD"
#define MANIFEST_BYTES  64
#define HEADER_BYTES    64
#define DIR_MAX         3900 // leaves room for "/shard-NNNN/data.mdb"
#define DEFAULT_BATCH   4096
#define DEFAULT_MAP     (UINT64_C(1) << 20)
#define TXN_PAYLOAD_CAP (UINT64_C(64) << 20) // bytes of records per write transaction

typedef struct tk_shard {
    MDB_env *env;       // NULL when this handle does not open the shard
    MDB_dbi dbi_tokens; // "tokens"
    MDB_dbi dbi_meta;   // "meta"
    MDB_txn *rtxn;      // reusable read transaction (reset between calls), or NULL
    MDB_cursor *rcur;   // cursor of rtxn on dbi_tokens, renewed with it
    int live;           // rtxn is active in the current call
    int writable;
    dev_t dev; // the data file opened (shard_present; read-only handles: reader_check)
    ino_t ino;
} tk_shard;

// One record of an append, sorted by (shard, key, position in the batch).
typedef struct tk_rec {
    uint64_t user, tsk, id; // tsk = timestamp in unsigned order
    uint32_t idx;           // position in the batch
    uint32_t shard;
} tk_rec;

struct rd_token_store {
    char dir[DIR_MAX];
    char witness[DIR_MAX + 48]; // <dir>/shard-0000/data.mdb: read-only handles (reader_check)
    rd_token_store_info info;
    int mode;
    int ps_rank, n_ps;
    uint64_t max_map_size;
    size_t append_batch;
    int verify_crc;
    size_t tok_bytes;   // dim * element size
    size_t tok_off;     // offset of the token in a value: 16 + 4 * n_side
    size_t value_bytes; // RD_TOKEN_VALUE_FIXED + 4 * n_side + tok_bytes
    tk_shard *shards;   // (n_shards)
    int *live;          // (n_shards) shards with an active read txn in the current call
    int n_live;
    tk_rec *recs; // append scratch (grows once to the largest batch)
    size_t recs_cap;
    float *tokbuf; // (dim) decode scratch for iterate
    // Damaged pages (rd/lmdbx.h guard): `where` names the shard being read or written, for the
    // message; after a fault the handle refuses every call with the first message.
    char where[DIR_MAX + 32];
    int where_shard; // the shard `where` names, or -1
    rd_lmdbx_damage dmg;
};

// ---------------------------------------------------------------------------------------------
// Small helpers

static int host_is_little_endian(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static int finite_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return (x & 0x7f800000u) != 0x7f800000u;
}

static void shard_path(const rd_token_store *s, const char *dir, int shard, char *buf, size_t cap) {
    (void)s;
    snprintf(buf, cap, "%s/shard-%04d", dir, shard);
}

static void
pack_key(unsigned char k[RD_TOKEN_KEY_BYTES], uint64_t user, uint64_t tsk, uint64_t id) {
    rd_lmdbx_put_be64(k, user);
    rd_lmdbx_put_be64(k + 8, tsk);
    rd_lmdbx_put_be64(k + 16, id);
}

// Name shard `shard` in the message of a damaged page met from now on.
static void set_where(rd_token_store *s, int shard) {
    if (s->where_shard != shard) {
        shard_path(s, s->dir, shard, s->where, sizeof s->where);
        s->where_shard = shard;
    }
}

// Return the result of `call` run under the damaged-page guard (rd/lmdbx.h).
#define TK_GUARDED(s, eb, call)                                                                    \
    RD_LMDBX_RETURN_GUARDED(&(s)->dmg, "token store ", (s)->where, eb, call)

static size_t elem_size(int dtype) {
    return dtype == RD_TOKEN_FP16 ? 2 : 4;
}

// ---------------------------------------------------------------------------------------------
// dtype and binary16

int rd_token_dtype_parse(const char *name, int *dtype) {
    if (!dtype)
        return RD_ERR_ARG;
    if (name && strcmp(name, "fp32") == 0) {
        *dtype = RD_TOKEN_FP32;
        return RD_OK;
    }
    if (name && strcmp(name, "fp16") == 0) {
        *dtype = RD_TOKEN_FP16;
        return RD_OK;
    }
    return RD_ERR_ARG;
}

const char *rd_token_dtype_name(int dtype) {
    return dtype == RD_TOKEN_FP32 ? "fp32" : dtype == RD_TOKEN_FP16 ? "fp16" : "unknown";
}

uint16_t rd_token_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        if (ax > 0x7f800000u) // NaN: keep it a (quiet) NaN with the top payload bits
            return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
        return (uint16_t)(sign | 0x7c00u);
    }
    // 65520 = 65504 + half an ulp: ties to even go up to infinity (65504 has an odd mantissa).
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    uint32_t e = ax >> 23;
    if (e < 113) {
        // Result is a half subnormal (or zero): value = m * 2^(e-150), unit 2^-24.
        if (e < 102)
            return (uint16_t)sign; // below 2^-25: rounds to zero
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; // 14..24
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u)))
            r++; // may carry into the smallest normal (0x0400): the encoding is still right
        return (uint16_t)(sign | r);
    }
    // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits.
    uint32_t h = (ax - 0x38000000u) >> 13;
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; // a carry into the exponent is the correct rounding
    return (uint16_t)(sign | h);
}

float rd_token_f16_to_f32(uint16_t hbits) {
    uint32_t h = hbits;
    uint32_t sign = (h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0) {
        if (m == 0) {
            x = sign;
        } else {
            // Subnormal m * 2^-24: normalise so that the leading one is the implicit bit.
            uint32_t sh = 0;
            while (!(m & 0x400u)) {
                m <<= 1;
                sh++;
            }
            x = sign | ((113u - sh) << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

// ---------------------------------------------------------------------------------------------
// MANIFEST and shard header records

static void manifest_encode(const rd_token_store_info *in, unsigned char out[MANIFEST_BYTES]) {
    memset(out, 0, MANIFEST_BYTES);
    memcpy(out, MANIFEST_MAGIC, 8);
    rd__le32_put(out + 8, in->version);
    rd__le32_put(out + 12, in->n_shards);
    rd__le32_put(out + 16, in->dim);
    rd__le32_put(out + 20, in->dtype);
    rd__le32_put(out + 24, in->value_bytes);
    rd__le32_put(out + 28, RD_TOKEN_KEY_BYTES);
    rd__le64_put(out + 32, (uint64_t)in->created);
    rd__le64_put(out + 40, in->store_id);
    rd__le32_put(out + 48, in->n_side); // 0 (reserved) in version 1
    rd__le32_put(out + 60, rd_crc32c(0, out, 60));
}

// Checks shared by the MANIFEST and the shard header: dim, dtype, shard count, value size.
static int layout_sane(const rd_token_store_info *i) {
    return i->n_shards >= 1 && i->n_shards <= RD_TOKEN_MAX_SHARDS && i->dim >= 1 &&
           i->dim <= RD_TOKEN_MAX_DIM && (i->dtype == RD_TOKEN_FP32 || i->dtype == RD_TOKEN_FP16) &&
           i->n_side <= RD_TOKEN_MAX_SIDE && (i->version >= 2 || i->n_side == 0) &&
           i->value_bytes ==
               RD_TOKEN_VALUE_FIXED + 4 * i->n_side + i->dim * elem_size((int)i->dtype);
}

static int manifest_decode(
    const unsigned char *p, size_t len, const char *path, rd_token_store_info *out, rd_errbuf *eb) {
    if (len != MANIFEST_BYTES)
        return rd_err_set(eb, RD_ERR_CORRUPT, "token store MANIFEST %s: %zu bytes, expected %d",
                          path, len, MANIFEST_BYTES);
    if (memcmp(p, MANIFEST_MAGIC, 8) != 0)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "token store MANIFEST %s: bad magic (not a token-store manifest)", path);
    out->version = rd__le32_get(p + 8);
    if (out->version < 1 || out->version > RD_TOKEN_STORE_VERSION)
        return rd_err_set(eb, RD_ERR_VERSION,
                          "token store MANIFEST %s: store version %u, this build reads versions "
                          "1..%d",
                          path, out->version, RD_TOKEN_STORE_VERSION);
    uint32_t crc = rd__le32_get(p + 60);
    if (crc != rd_crc32c(0, p, 60))
        return rd_err_set(eb, RD_ERR_CORRUPT, "token store MANIFEST %s: CRC mismatch", path);
    out->n_shards = rd__le32_get(p + 12);
    out->dim = rd__le32_get(p + 16);
    out->dtype = rd__le32_get(p + 20);
    out->value_bytes = rd__le32_get(p + 24);
    out->created = (int64_t)rd__le64_get(p + 32);
    out->store_id = rd__le64_get(p + 40);
    out->n_side = rd__le32_get(p + 48);
    if (!layout_sane(out) || rd__le32_get(p + 28) != RD_TOKEN_KEY_BYTES)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "token store MANIFEST %s: impossible layout (version %u, n_shards %u, "
                          "dim %u, dtype %u, %u side values, value %u bytes)",
                          path, out->version, out->n_shards, out->dim, out->dtype, out->n_side,
                          out->value_bytes);
    return RD_OK;
}

static void
header_encode(const rd_token_store_info *in, int shard, unsigned char out[HEADER_BYTES]) {
    memset(out, 0, HEADER_BYTES);
    memcpy(out, HEADER_MAGIC, 8);
    rd__le32_put(out + 8, in->version);
    rd__le32_put(out + 12, (uint32_t)shard);
    rd__le32_put(out + 16, in->n_shards);
    rd__le32_put(out + 20, in->dim);
    rd__le32_put(out + 24, in->dtype);
    rd__le32_put(out + 28, in->value_bytes);
    rd__le64_put(out + 32, (uint64_t)in->created);
    rd__le64_put(out + 40, in->store_id);
    rd__le32_put(out + 48, in->n_side);
    rd__le32_put(out + 60, rd_crc32c(0, out, 60));
}

// Check a shard's header record against the MANIFEST.
static int header_check(
    const MDB_val *v, const rd_token_store_info *m, int shard, const char *path, rd_errbuf *eb) {
    const unsigned char *p = v->mv_data;
    if (v->mv_size != HEADER_BYTES || memcmp(p, HEADER_MAGIC, 8) != 0 ||
        rd__le32_get(p + 60) != rd_crc32c(0, p, 60))
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "token shard %s: header record is damaged (size %zu, bad magic or CRC)",
                          path, v->mv_size);
    uint32_t version = rd__le32_get(p + 8), sid = rd__le32_get(p + 12);
    uint32_t ns = rd__le32_get(p + 16), dim = rd__le32_get(p + 20);
    uint32_t dtype = rd__le32_get(p + 24), vb = rd__le32_get(p + 28);
    uint64_t store_id = rd__le64_get(p + 40);
    uint32_t n_side = rd__le32_get(p + 48);
    if (version != m->version || dim != m->dim || dtype != m->dtype || ns != m->n_shards ||
        vb != m->value_bytes || n_side != m->n_side)
        return rd_err_set(eb, RD_ERR_VERSION,
                          "token shard %s: header says version %u, dim %u %s, %u shards, %u side "
                          "values, but the MANIFEST says version %u, dim %u %s, %u shards, %u side "
                          "values",
                          path, version, dim, rd_token_dtype_name((int)dtype), ns, n_side,
                          m->version, m->dim, rd_token_dtype_name((int)m->dtype), m->n_shards,
                          m->n_side);
    if (sid != (uint32_t)shard || store_id != m->store_id)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "token shard %s: header belongs to shard %u of store %016" PRIx64
                          " (expected shard %d of store %016" PRIx64 ")",
                          path, sid, store_id, shard, m->store_id);
    return RD_OK;
}

int rd_token_store_read_manifest(const char *dir, rd_token_store_info *info, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, info != NULL);
    memset(info, 0, sizeof *info);
    RD_ARG_CHECK(eb, dir != NULL);
    memset(info, 0, sizeof *info);
    if (strlen(dir) >= DIR_MAX)
        return rd_err_set(eb, RD_ERR_ARG, "token store path is longer than %d bytes", DIR_MAX - 1);
    char path[DIR_MAX + 16];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    struct stat st;
    if (stat(dir, &st) != 0)
        return rd_err_set(eb, RD_ERR_NOTFOUND, "token store %s: no such folder", dir);
    if (!S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "token store %s is not a folder (a store is a folder holding a MANIFEST "
                          "and shard-NNNN/)",
                          dir);
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f); // a FIFO here must not block the reader
    if (o != 0) {
        int missing = o < 0 && errno == ENOENT;
        return rd_err_set(eb, missing ? RD_ERR_NOTFOUND : RD_ERR_IO,
                          "token store %s: cannot open MANIFEST (%s)%s", dir,
                          o > 0 ? "not a regular file" : strerror(errno),
                          missing ? "; not a token store, or its creation did not finish" : "");
    }
    unsigned char buf[MANIFEST_BYTES + 1];
    size_t n = fread(buf, 1, sizeof buf, f);
    int err = ferror(f);
    fclose(f);
    if (err)
        return rd_err_set(eb, RD_ERR_IO, "token store %s: error reading MANIFEST", dir);
    return manifest_decode(buf, n, path, info, eb);
}

// ---------------------------------------------------------------------------------------------
// DATASET: "RDTOKDS1" | u64 n_events | u32 records_crc | u32 CRC-32C of the first 20 bytes

#define DATASET_MAGIC "RDTOKDS1"
#define DATASET_BYTES 24

int rd_token_store_read_dataset(const char *dir, rd_token_dataset *ds, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, ds != NULL);
    char path[DIR_MAX + 16];
    if (strlen(dir) >= DIR_MAX)
        return rd_err_set(eb, RD_ERR_ARG, "token store path is longer than %d bytes", DIR_MAX - 1);
    snprintf(path, sizeof path, "%s/DATASET", dir);
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f);
    if (o != 0)
        return rd_err_set(eb, o < 0 && errno == ENOENT ? RD_ERR_NOTFOUND : RD_ERR_IO,
                          "%s: cannot open: %s", path,
                          o > 0 ? "not a regular file" : strerror(errno));
    unsigned char b[DATASET_BYTES + 1];
    size_t n = fread(b, 1, sizeof b, f);
    int err = ferror(f);
    fclose(f);
    if (err)
        return rd_err_set(eb, RD_ERR_IO, "%s: read error", path);
    uint32_t crc;
    if (n == DATASET_BYTES)
        memcpy(&crc, b + 20, 4);
    if (n != DATASET_BYTES || memcmp(b, DATASET_MAGIC, 8) != 0 || rd_crc32c(0, b, 20) != crc)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s: not a dataset record of a token store (%zu bytes, expected %d "
                          "with magic and CRC)",
                          path, n, DATASET_BYTES);
    memcpy(&ds->n_events, b + 8, 8);
    memcpy(&ds->records_crc, b + 16, 4);
    return RD_OK;
}

int rd_token_store_bind_dataset(const char *dir,
                                const rd_token_dataset *ds,
                                int *had_record,
                                rd_errbuf *eb) {
    if (had_record)
        *had_record = 1;
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, ds != NULL);
    rd_token_store_info info;
    int rc = rd_token_store_read_manifest(dir, &info, eb);
    if (rc != RD_OK)
        return rc;
    char path[DIR_MAX + 16], tmp[DIR_MAX + 64];
    snprintf(path, sizeof path, "%s/DATASET", dir);
    rd_token_dataset have;
    rc = rd_token_store_read_dataset(dir, &have, eb);
    if (rc == RD_ERR_NOTFOUND) {
        // Not bound: write the record beside its place, then link it in. link() fails if another
        // run bound the store meanwhile; that run's record is then compared like any other.
        rd_errbuf_clear(eb);
        unsigned char b[DATASET_BYTES];
        memcpy(b, DATASET_MAGIC, 8);
        memcpy(b + 8, &ds->n_events, 8);
        memcpy(b + 16, &ds->records_crc, 4);
        uint32_t crc = rd_crc32c(0, b, 20);
        memcpy(b + 20, &crc, 4);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(tmp, sizeof tmp, "%s/DATASET.new.%ld.%ld", dir, (long)getpid(), (long)ts.tv_nsec);
        if ((rc = rd_lmdbx_write_file_atomic(tmp, b, sizeof b, eb)) != RD_OK)
            return rc;
        int lerr = link(tmp, path) == 0 ? 0 : errno;
        unlink(tmp);
        if (lerr == 0) {
            if (had_record)
                *had_record = 0;
            return RD_OK;
        }
        if (lerr != EEXIST)
            return rd_err_set(eb, RD_ERR_IO, "%s: cannot create: %s", path, strerror(lerr));
        rc = rd_token_store_read_dataset(dir, &have, eb);
    }
    if (rc != RD_OK)
        return rc;
    if (have.n_events != ds->n_events || have.records_crc != ds->records_crc)
        return rd_err_set(
            eb, RD_ERR_CONFIG,
            "token store %s holds the tokens of another dataset (%" PRIu64
            " events, records CRC %08x; this run's dataset has %" PRIu64
            " events, CRC %08x): a store serves one dataset, as its keys hold the "
            "events' ids; point tokens.store_dir at a new folder, or remove the store",
            dir, have.n_events, have.records_crc, ds->n_events, ds->records_crc);
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Create / open / destroy

typedef struct header_ctx {
    const rd_token_store_info *info;
    int shard;
} header_ctx;

static int write_header_cb(MDB_txn *txn, void *vctx, rd_errbuf *eb) {
    (void)eb;
    header_ctx *c = vctx;
    MDB_dbi meta, tokens;
    int rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta);
    if (!rc)
        rc = mdb_dbi_open(txn, "tokens", MDB_CREATE, &tokens);
    if (rc)
        return rc;
    unsigned char h[HEADER_BYTES];
    header_encode(c->info, c->shard, h);
    MDB_val k = {6, (void *)"header"}, v = {HEADER_BYTES, h};
    return mdb_put(txn, meta, &k, &v, 0);
}

static int check_opts_common(uint64_t map_size, uint64_t max_map, int append_batch, rd_errbuf *eb) {
    if (append_batch < 0 || append_batch > (1 << 24))
        return rd_err_set(eb, RD_ERR_ARG, "token store: append_batch %d out of range 0..2^24",
                          append_batch);
    if (max_map && map_size > max_map)
        return rd_err_set(eb, RD_ERR_ARG,
                          "token store: map_size %" PRIu64 " is above max_map_size %" PRIu64,
                          map_size, max_map);
    if (max_map && max_map < (UINT64_C(64) << 10))
        return rd_err_set(eb, RD_ERR_ARG, "token store: max_map_size %" PRIu64 " below 64 KiB",
                          max_map);
    return RD_OK;
}

int rd_token_store_create(const char *dir,
                          const rd_token_store_opts *o,
                          rd_token_store **out,
                          rd_errbuf *eb) {
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, o != NULL);
    // The message is this call's (rd_err_set keeps the first one): a serving process opens
    // stores again with the errbuf of an earlier failure (rd/serve.h's calls clear it too).
    rd_errbuf_clear(eb);
    *out = NULL;
    if (!host_is_little_endian())
        return rd_err_set(eb, RD_ERR_UNSUPPORTED,
                          "token store: big-endian hosts are not supported");
    if (strlen(dir) == 0 || strlen(dir) >= DIR_MAX)
        return rd_err_set(eb, RD_ERR_ARG, "token store: path length %zu out of range 1..%d",
                          strlen(dir), DIR_MAX - 1);
    if (o->dim < 1 || o->dim > RD_TOKEN_MAX_DIM)
        return rd_err_set(eb, RD_ERR_ARG, "token store %s: dim %d out of range 1..%d", dir, o->dim,
                          RD_TOKEN_MAX_DIM);
    if (o->dtype != RD_TOKEN_FP32 && o->dtype != RD_TOKEN_FP16)
        return rd_err_set(eb, RD_ERR_ARG,
                          "token store %s: dtype %d is neither fp32 (%d) nor fp16 "
                          "(%d)",
                          dir, o->dtype, RD_TOKEN_FP32, RD_TOKEN_FP16);
    if (o->n_shards < 1 || o->n_shards > RD_TOKEN_MAX_SHARDS)
        return rd_err_set(eb, RD_ERR_ARG, "token store %s: n_shards %d out of range 1..%d", dir,
                          o->n_shards, RD_TOKEN_MAX_SHARDS);
    if (o->n_side < 0 || o->n_side > RD_TOKEN_MAX_SIDE)
        return rd_err_set(eb, RD_ERR_ARG, "token store %s: n_side %d out of range 0..%d", dir,
                          o->n_side, RD_TOKEN_MAX_SIDE);
    if (o->version < 0 || o->version > RD_TOKEN_STORE_VERSION || (o->version == 1 && o->n_side))
        return rd_err_set(eb, RD_ERR_ARG,
                          "token store %s: version %d is not writable (0, 1 without side values, "
                          "or %d)",
                          dir, o->version, RD_TOKEN_STORE_VERSION);
    int rc = check_opts_common(o->map_size, o->max_map_size, o->append_batch, eb);
    if (rc != RD_OK)
        return rc;
    // The folder must be new or empty: never mix two stores.
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        int busy = 0, manifest = 0;
        // The writer's lock file may be there: the creator takes the lock first.
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                !rd_writer_lock_name(e->d_name)) {
                busy = 1;
                manifest |= strcmp(e->d_name, "MANIFEST") == 0;
            }
        closedir(d);
        if (manifest) // "has no MANIFEST" said of a store misled whoever read it
            return rd_err_set(eb, RD_ERR_EXISTS,
                              "token store %s: the folder already holds a store (its MANIFEST): "
                              "open it, or remove it or choose another folder to create one",
                              dir);
        if (busy)
            return rd_err_set(eb, RD_ERR_EXISTS,
                              "token store %s: folder exists and is not empty but has no MANIFEST "
                              "(not a token store, or a creation that did not finish): remove it "
                              "or choose another folder",
                              dir);
    } else if (errno != ENOENT) {
        return rd_err_set(eb, RD_ERR_IO, "token store %s: %s", dir, strerror(errno));
    }
    rc = rd_lmdbx_mkdir_p(dir, eb);
    if (rc != RD_OK)
        return rc;
    rd_token_store_info info = {o->version ? (uint32_t)o->version : RD_TOKEN_STORE_VERSION,
                                (uint32_t)o->n_shards,
                                (uint32_t)o->dim,
                                (uint32_t)o->dtype,
                                (uint32_t)(RD_TOKEN_VALUE_FIXED + 4 * (size_t)o->n_side +
                                           (size_t)o->dim * elem_size(o->dtype)),
                                (int64_t)time(NULL),
                                0,
                                (uint32_t)o->n_side};
    // A store id tells shards of different stores apart (e.g. folders copied across stores).
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    info.store_id = rd_mix64(((uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec) ^
                             rd_hash_str(dir, (uint64_t)getpid()));
    rd_lmdbx_opts lo = {0};
    lo.create = 1;
    lo.no_sync = o->no_sync;
    lo.map_size = o->map_size ? o->map_size : DEFAULT_MAP;
    lo.max_map_size = o->max_map_size;
    lo.max_dbs = 4;
    char path[DIR_MAX + 32];
    for (int i = 0; i < o->n_shards; i++) {
        shard_path(NULL, dir, i, path, sizeof path);
        MDB_env *env = NULL;
        rc = rd_lmdbx_env_open(path, &lo, &env, eb);
        if (rc != RD_OK)
            return rc;
        header_ctx hc = {&info, i};
        rc = rd_lmdbx_write(env, o->max_map_size, path, "write shard header", write_header_cb, &hc,
                            eb);
        if (rc == RD_OK && o->no_sync)
            mdb_env_sync(env, 1); // the header must survive whatever the store's sync mode
        rd_lmdbx_env_close(env);
        if (rc != RD_OK)
            return rc;
    }
    // The MANIFEST goes last: its presence means the store is complete.
    unsigned char m[MANIFEST_BYTES];
    manifest_encode(&info, m);
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    rc = rd_lmdbx_write_file_atomic(path, m, sizeof m, eb);
    if (rc != RD_OK)
        return rc;
    rd_token_open_opts oo = {0};
    oo.mode = RD_TOKEN_WRITE;
    oo.map_size = o->map_size;
    oo.max_map_size = o->max_map_size;
    oo.append_batch = o->append_batch;
    oo.no_sync = o->no_sync;
    return rd_token_store_open(dir, &oo, out, eb);
}

// "DATASET.new.<pid>.<nanoseconds>", the record rd_token_store_bind_dataset writes beside
// DATASET and links in (its first len bytes of `name`). @return the pid, or 0 for another name.
static long dataset_new_pid(const char *name, size_t len) {
    static const char pre[] = "DATASET.new.";
    if (len <= sizeof pre - 1 || strncmp(name, pre, sizeof pre - 1) != 0)
        return 0;
    const char *p = name + sizeof pre - 1, *end = name + len, *dot = p;
    while (dot < end && *dot >= '0' && *dot <= '9')
        dot++;
    if (dot == p || dot - p > 10 || *p == '0' || dot == end || *dot != '.' || dot + 1 == end)
        return 0;
    for (const char *q = dot + 1; q < end; q++)
        if (*q < '0' || *q > '9')
            return 0;
    return strtol(p, NULL, 10);
}

// The files of a store written through a temporary one (rd_lmdbx_outfile).
static int store_outfile(const char *name, size_t len) {
    return (len == 8 && strncmp(name, "MANIFEST", 8) == 0) ||
           (len == 7 && strncmp(name, "DATASET", 7) == 0) || dataset_new_pid(name, len) > 0;
}

// What writers killed mid-write (SIGKILL, the OOM killer) left in the store's folder: the
// temporaries of MANIFEST and DATASET, and DATASET.new.<pid>.<ns> records never linked in, of
// processes of this host that no longer run. Called by the lock's holder only.
static void remove_stale(const char *dir) {
    rd_lmdbx_remove_stale_outfiles(dir, store_outfile);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = dataset_new_pid(e->d_name, strlen(e->d_name));
        struct stat st;
        if (pid <= 0 || !rd_lmdbx_pid_gone(pid) ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            unlinkat(dirfd(d), e->d_name, 0) != 0)
            continue;
        RD_LOG_WARN("removed %s/%s: dataset record of process %ld of this host, which no longer "
                    "runs (killed before it linked the record in)",
                    dir, e->d_name, pid);
    }
    closedir(d);
}

int rd_token_store_lock(const char *dir, const char *what, int *fd, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, fd != NULL);
    *fd = -1;
    RD_ARG_CHECK(eb, dir != NULL);
    *fd = -1;
    if (strlen(dir) == 0 || strlen(dir) >= DIR_MAX)
        return rd_err_set(eb, RD_ERR_ARG, "token store: path length %zu out of range 1..%d",
                          strlen(dir), DIR_MAX - 1);
    struct stat st;
    if (stat(dir, &st) != 0)
        return rd_err_set(eb, RD_ERR_IO, "token store %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rd_err_set(eb, RD_ERR_IO, "token store %s is not a folder", dir);
    int rc = rd_writer_lock(dir, NULL, "token store", what, fd, eb);
    if (rc == RD_OK)
        remove_stale(dir); // the one writer now: no live writer's temporary is there
    return rc;
}

void rd_token_store_unlock(int fd) {
    rd_writer_unlock(fd);
}

static pthread_mutex_t g_dbi_open_mu = PTHREAD_MUTEX_INITIALIZER;

// The databases and the header check of shard i (its env is open), under open_shard's guard.
static int open_shard_dbs(rd_token_store *s, int i, const char *path, rd_errbuf *eb) {
    tk_shard *sh = &s->shards[i];
    MDB_txn *txn = NULL;
    int rc = rd_lmdbx_read_begin_shared(sh->env, &txn, path, 0, NULL, eb);
    if (rc != RD_OK)
        return rc;
    int mrc = mdb_dbi_open(txn, "meta", 0, &sh->dbi_meta);
    if (!mrc)
        mrc = mdb_dbi_open(txn, "tokens", 0, &sh->dbi_tokens);
    if (mrc) {
        rd_lmdbx_read_end_shared(sh->env, &txn, RD_LMDBX_READ_ABORT);
        if (mrc == MDB_NOTFOUND)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "token shard %s: no meta/tokens database (not a token-store shard)",
                              path);
        return rd_lmdbx_error(eb, mrc, "open token databases", path);
    }
    MDB_val k = {6, (void *)"header"}, v;
    mrc = mdb_get(txn, sh->dbi_meta, &k, &v);
    if (mrc) {
        rd_lmdbx_read_end_shared(sh->env, &txn, RD_LMDBX_READ_ABORT);
        if (mrc == MDB_NOTFOUND)
            return rd_err_set(eb, RD_ERR_CORRUPT, "token shard %s: no header record", path);
        return rd_lmdbx_error(eb, mrc, "read shard header", path);
    }
    rc = header_check(&v, &s->info, i, path, eb);
    // Committing a read transaction keeps the database handles open for the env's lifetime.
    mrc = rd_lmdbx_read_end_shared(sh->env, &txn, RD_LMDBX_READ_COMMIT);
    if (rc != RD_OK)
        return rc;
    if (mrc)
        return rd_lmdbx_error(eb, mrc, "open token databases", path);
    return RD_OK;
}

// A writable shard's data file is the one it opened. An open LMDB env goes on working on a data
// file that was unlinked: a store folder removed (rm -rf) or replaced while a run appended to it
// went unnoticed, the run fetched back what it had appended since and ended with exit 0, its
// tokens gone with the folder. One stat of the path (about a microsecond, against an append's
// write transaction or a fetch's reads: bench/bench_tokens) after each shard's appends and
// before each shard's reads of a call.
static int shard_present(rd_token_store *s, int i, const char *path, rd_errbuf *eb) {
    const tk_shard *sh = &s->shards[i];
    char file[DIR_MAX + 48];
    snprintf(file, sizeof file, "%s/data.mdb", path);
    struct stat st;
    int gone = stat(file, &st) != 0;
    if (!gone && st.st_dev == sh->dev && st.st_ino == sh->ino)
        return RD_OK;
    return rd_err_set(eb, RD_ERR_IO,
                      "token store %s: %s is %s since the store was opened (its folder removed or "
                      "replaced?): the tokens written to it are lost",
                      s->dir, file, gone ? "gone" : "another file");
}

// Open shard i of s: env, named databases (in a read transaction), header check.
static int open_shard(rd_token_store *s, int i, const rd_token_open_opts *o, rd_errbuf *eb) {
    char path[DIR_MAX + 32];
    shard_path(s, s->dir, i, path, sizeof path);
    rd_lmdbx_opts lo = {0};
    lo.read_only = o->mode == RD_TOKEN_READ_ONLY;
    lo.no_sync = o->no_sync;
    lo.map_size = o->map_size;
    lo.max_map_size = o->max_map_size;
    lo.max_dbs = 4;
    tk_shard *sh = &s->shards[i];
    int rc = rd_lmdbx_env_open(path, &lo, &sh->env, eb);
    if (rc != RD_OK) {
        if (rc == RD_ERR_NOTFOUND)
            rd_err_prefix(eb, "token store %s is missing shard %d: ", s->dir, i);
        return rc;
    }
    set_where(s, i);
    int faulted = 0;
    // mdb_dbi_open must not run in two transactions of one process at once, and the handles of
    // a server's threads share each shard's env (rd_lmdbx_env_open).
    pthread_mutex_lock(&g_dbi_open_mu);
    RD_LMDBX_GUARDED(rc, faulted, s->where, eb, open_shard_dbs(s, i, path, eb));
    pthread_mutex_unlock(&g_dbi_open_mu);
    if (faulted)
        rd_err_prefix(eb, "token store ");
    if (rc != RD_OK)
        return rc;
    sh->writable = o->mode == RD_TOKEN_WRITE;
    mdb_filehandle_t fd;
    struct stat st;
    if (mdb_env_get_fd(sh->env, &fd) != 0 || fstat(fd, &st) != 0)
        return rd_err_set(eb, RD_ERR_IO, "token store %s: shard %d: %s", s->dir, i,
                          strerror(errno));
    sh->dev = st.st_dev;
    sh->ino = st.st_ino;
    if (sh->writable && (rc = shard_present(s, i, path, eb)) != RD_OK) // removed meanwhile
        return rc;
    return RD_OK;
}

int rd_token_store_open(const char *dir,
                        const rd_token_open_opts *o,
                        rd_token_store **out,
                        rd_errbuf *eb) {
    // The message is this call's (rd_err_set keeps the first one): a serving process opens
    // stores again with the errbuf of an earlier failure (rd/serve.h's calls clear it too).
    rd_errbuf_clear(eb);
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, o != NULL);
    if (!host_is_little_endian())
        return rd_err_set(eb, RD_ERR_UNSUPPORTED,
                          "token store: big-endian hosts are not supported");
    if (o->mode != RD_TOKEN_READ_ONLY && o->mode != RD_TOKEN_WRITE)
        return rd_err_set(eb, RD_ERR_ARG, "token store %s: unknown mode %d", dir, o->mode);
    if (o->mode == RD_TOKEN_WRITE && (o->n_ps < 0 || o->n_ps > 65536 ||
                                      (o->n_ps > 0 && (o->ps_rank < 0 || o->ps_rank >= o->n_ps))))
        return rd_err_set(eb, RD_ERR_ARG, "token store %s: PS rank %d of %d is not valid", dir,
                          o->ps_rank, o->n_ps);
    int rc = check_opts_common(o->map_size, o->max_map_size, o->append_batch, eb);
    if (rc != RD_OK)
        return rc;
    rd_token_store_info info;
    rc = rd_token_store_read_manifest(dir, &info, eb);
    if (rc != RD_OK)
        return rc;
    if ((o->expect_dim > 0 && (uint32_t)o->expect_dim != info.dim) ||
        (o->expect_dtype > 0 && (uint32_t)o->expect_dtype != info.dtype))
        return rd_err_set(
            eb, RD_ERR_VERSION, "token store %s has dim %u %s tokens, but dim %d %s was expected",
            dir, info.dim, rd_token_dtype_name((int)info.dtype),
            o->expect_dim > 0 ? o->expect_dim : (int)info.dim,
            rd_token_dtype_name(o->expect_dtype > 0 ? o->expect_dtype : (int)info.dtype));
    rd_token_store *s = rd_calloc(1, sizeof *s);
    if (!s)
        return rd_err_set(eb, RD_ERR_NOMEM, "token store %s: out of memory", dir);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->witness, sizeof s->witness, "%s/shard-0000/data.mdb", dir);
    snprintf(s->where, sizeof s->where, "%s", dir);
    s->where_shard = -1;
    s->info = info;
    s->mode = o->mode;
    s->ps_rank = o->n_ps > 0 ? o->ps_rank : 0;
    s->n_ps = o->n_ps;
    s->max_map_size = o->max_map_size;
    s->append_batch = o->append_batch > 0 ? (size_t)o->append_batch : DEFAULT_BATCH;
    s->verify_crc = o->verify_crc;
    s->tok_bytes = (size_t)info.dim * elem_size((int)info.dtype);
    s->tok_off = 16 + 4 * (size_t)info.n_side;
    s->value_bytes = info.value_bytes;
    s->shards = rd_calloc(info.n_shards, sizeof *s->shards);
    s->live = rd_calloc(info.n_shards, sizeof *s->live);
    s->tokbuf = rd_calloc(info.dim + info.n_side, sizeof(float)); // token, then side values
    if (!s->shards || !s->live || !s->tokbuf) {
        rd_token_store_destroy(s);
        return rd_err_set(eb, RD_ERR_NOMEM, "token store %s: out of memory", dir);
    }
    for (int i = 0; i < (int)info.n_shards; i++) {
        if (o->mode == RD_TOKEN_WRITE && o->n_ps > 0 && i % o->n_ps != o->ps_rank)
            continue;
        rc = open_shard(s, i, o, eb);
        if (rc != RD_OK) {
            rd_token_store_destroy(s);
            return rc;
        }
    }
    *out = s;
    return RD_OK;
}

void rd_token_store_destroy(rd_token_store *s) {
    if (!s)
        return;
    if (s->shards) {
        for (uint32_t i = 0; i < s->info.n_shards; i++) {
            tk_shard *sh = &s->shards[i];
            if (sh->rcur)
                mdb_cursor_close(sh->rcur);
            if (sh->live) // left live by a call that faulted: release its remap lock too
                rd_lmdbx_read_end_shared(sh->env, &sh->rtxn, RD_LMDBX_READ_ABORT);
            if (sh->rtxn)
                mdb_txn_abort(sh->rtxn);
            if (sh->env)
                rd_lmdbx_env_close(sh->env);
        }
    }
    rd_free(s->shards);
    rd_free(s->live);
    rd_free(s->recs);
    rd_free(s->tokbuf);
    rd_free(s);
}

int rd_token_store_sync(rd_token_store *s, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    for (uint32_t i = 0; s->shards && i < s->info.n_shards; i++) {
        tk_shard *sh = &s->shards[i];
        if (!sh->env || !sh->writable)
            continue;
        int mrc = mdb_env_sync(sh->env, 1);
        if (mrc != 0)
            return rd_err_set(eb, RD_ERR_IO, "token store %s: shard %u: cannot flush to disk: %s",
                              s->dir, i, mdb_strerror(mrc));
    }
    return RD_OK;
}

// Close shard sh's cursor, read transaction and env (not live: between calls).
static void shard_close(tk_shard *sh) {
    if (sh->rcur)
        mdb_cursor_close(sh->rcur);
    if (sh->rtxn)
        mdb_txn_abort(sh->rtxn);
    if (sh->env)
        rd_lmdbx_env_close(sh->env);
    memset(sh, 0, sizeof *sh);
}

// Shard i of a read-only handle anew, from the files now at its path: on success the old env
// is released (other handles of this process that still share it keep it until they look);
// on failure the shard is left as it was.
static int shard_reopen(rd_token_store *s, int i, rd_errbuf *eb) {
    tk_shard old = s->shards[i];
    memset(&s->shards[i], 0, sizeof s->shards[i]);
    rd_token_open_opts o = {0};
    o.mode = RD_TOKEN_READ_ONLY;
    int rc = open_shard(s, i, &o, eb);
    if (rc != RD_OK) {
        shard_close(&s->shards[i]);
        s->shards[i] = old;
        return rc;
    }
    shard_close(&old);
    return RD_OK;
}

static int same_layout(const rd_token_store_info *a, const rd_token_store_info *b) {
    return a->store_id == b->store_id && a->version == b->version && a->n_shards == b->n_shards &&
           a->dim == b->dim && a->dtype == b->dtype && a->value_bytes == b->value_bytes &&
           a->n_side == b->n_side && a->created == b->created;
}

// Shard 0's data file is no longer the one this handle reads (reader_check): the store was
// removed (an error until it is back), the same store is there in new files (a compacted copy
// moved into its place, a restored backup: every shard whose data file changed is reopened,
// shard 0 last so that a failure is retried by the next call, and reads go on), or another store
// is (an error naming both ids: its tokens are not the ones this handle served).
static int reader_refresh(rd_token_store *s, const char *file, int err, rd_errbuf *eb) {
    if (err)
        return rd_err_set(eb, RD_ERR_IO,
                          "token store %s: %s is %s since this handle opened the store (the store "
                          "removed?): its removed files are not read; the same store moved back "
                          "into its place (e.g. a `tokens compact` copy) is read again",
                          s->dir, file, err == ENOENT ? "gone" : strerror(err));
    rd_token_store_info now;
    rd_errbuf local;
    rd_errbuf_clear(&local);
    int rc = rd_token_store_read_manifest(s->dir, &now, &local);
    if (rc != RD_OK)
        return rd_err_set(eb, RD_ERR_IO,
                          "token store %s was replaced since this handle opened it, and the "
                          "new one cannot be read: %s",
                          s->dir, local.msg);
    if (!same_layout(&now, &s->info))
        return rd_err_set(
            eb, RD_ERR_IO,
            "token store %s was replaced by another store since this handle opened it (id "
            "%016llx, %u shards of dim %u %s with %u side values; this handle read id %016llx, "
            "%u shards of dim %u %s with %u side values): its tokens are not the ones this "
            "handle served; close the handle and open the store again if that is intended",
            s->dir, (unsigned long long)now.store_id, now.n_shards, now.dim,
            rd_token_dtype_name((int)now.dtype), now.n_side, (unsigned long long)s->info.store_id,
            s->info.n_shards, s->info.dim, rd_token_dtype_name((int)s->info.dtype), s->info.n_side);
    for (uint32_t k = 1; k <= s->info.n_shards; k++) {
        uint32_t i = k % s->info.n_shards; // 1, 2, ..., n - 1, then 0
        tk_shard *sh = &s->shards[i];
        char data[DIR_MAX + 48];
        snprintf(data, sizeof data, "%s/shard-%04u/data.mdb", s->dir, i);
        struct stat ds;
        if (stat(data, &ds) != 0)
            return rd_err_set(eb, RD_ERR_IO,
                              "token store %s: %s is %s since this handle opened the store (the "
                              "store removed or replaced?)",
                              s->dir, data, errno == ENOENT ? "gone" : strerror(errno));
        if (ds.st_dev == sh->dev && ds.st_ino == sh->ino)
            continue;
        if ((rc = shard_reopen(s, (int)i, eb)) != RD_OK) {
            rd_err_prefix(eb,
                          "token store %s was replaced by a copy of itself, whose shard %u "
                          "cannot be opened: ",
                          s->dir, i);
            return rc;
        }
    }
    return RD_OK;
}

// A read-only handle reads the store that is at its folder now. An open LMDB env goes on
// reading its data file after the file was unlinked: a serving process kept answering from a
// store removed with rm -rf, and after a compacted copy was moved into the store's place it
// never saw another token appended to it. Appends and gc change a shard's data file in place;
// rm -rf, a copy moved in (tokens compact writes a new folder) and a store created anew replace
// every shard's. So shard 0's data file stands for the store: one stat per call (about a
// microsecond of a fetch's few: bench_serve --tokens), and the other shards only when it
// changed. Its (dev, ino) cannot be a new file's: the handle's env holds the old file open, so
// its inode is not reused (a MANIFEST, which nothing holds open, got its removed predecessor's
// inode number back on ext4). Writable handles check their shards themselves (shard_present)
// and are never reopened: what they wrote would be lost unseen.
static int reader_check(rd_token_store *s, rd_errbuf *eb) {
    if (s->mode != RD_TOKEN_READ_ONLY)
        return RD_OK;
    struct stat st;
    int err = stat(s->witness, &st) != 0 ? errno : 0;
    if (!err && st.st_dev == s->shards[0].dev && st.st_ino == s->shards[0].ino)
        return RD_OK;
    return reader_refresh(s, s->witness, err, eb);
}

int rd_token_store_opts_from_config(const rd_tokens_config *tc,
                                    int n_shards,
                                    rd_token_store_opts *o,
                                    rd_errbuf *eb) {
    RD_ARG_CHECK(eb, o != NULL);
    memset(o, 0, sizeof *o);
    RD_ARG_CHECK(eb, tc != NULL);
    int dtype = 0;
    if (rd_token_dtype_parse(tc->dtype, &dtype) != RD_OK)
        return rd_err_set(eb, RD_ERR_CONFIG, "tokens.dtype: \"%.8s\" is neither fp32 nor fp16",
                          tc->dtype);
    o->dim = tc->dim;
    o->dtype = dtype;
    o->n_shards = n_shards;
    o->map_size = tc->map_size;
    o->append_batch = tc->append_batch;
    o->n_side = rd_tokens_side_width(tc);
    return RD_OK;
}

_Static_assert(RD_MAX_TOKEN_SIDE == RD_TOKEN_MAX_SIDE, "tokens.side fits a store's side values");

void rd_token_store_info_get(const rd_token_store *s, rd_token_store_info *info) {
    if (!info)
        return;
    if (!s) {
        memset(info, 0, sizeof *info);
        return;
    }
    *info = s->info;
}

MDB_env *rd__token_store_shard_env(rd_token_store *s, int shard) {
    return rd_token_store_has_shard(s, shard) ? s->shards[shard].env : NULL;
}

int rd__token_store_shard_writable(const rd_token_store *s, int shard) {
    return rd_token_store_has_shard(s, shard) && s->shards[shard].writable;
}

const char *rd__token_store_dir(const rd_token_store *s) {
    return s->dir;
}

int rd_token_store_has_shard(const rd_token_store *s, int shard) {
    return s && shard >= 0 && (uint32_t)shard < s->info.n_shards && s->shards[shard].env != NULL;
}

// ---------------------------------------------------------------------------------------------
// Records

// Encode one record's value at dst (value_bytes bytes; dst may be unaligned).
static void encode_value(const rd_token_store *s,
                         unsigned char *dst,
                         const unsigned char key[RD_TOKEN_KEY_BYTES],
                         const rd_token_batch *b,
                         size_t i) {
    float label = b->labels ? b->labels[i] : 0.0f;
    uint32_t lb;
    memcpy(&lb, &label, 4);
    rd__le32_put(dst, lb);
    rd__le32_put(dst + 4, b->flags ? b->flags[i] : 0u);
    rd__le64_put(dst + 8, b->items ? b->items[i] : 0u);
    size_t S = s->info.n_side;
    if (b->side)
        memcpy(dst + 16, b->side + i * S, 4 * S); // little-endian host (checked at open)
    else
        memset(dst + 16, 0, 4 * S);
    const float *tok = b->tokens + i * s->info.dim;
    unsigned char *td = dst + s->tok_off;
    if (s->info.dtype == RD_TOKEN_FP32) {
        memcpy(td, tok, s->tok_bytes);
    } else {
        for (size_t j = 0; j < s->info.dim; j++) {
            uint16_t h = rd_token_f32_to_f16(tok[j]);
            td[2 * j] = (unsigned char)h;
            td[2 * j + 1] = (unsigned char)(h >> 8);
        }
    }
    size_t body = s->value_bytes - 4;
    uint32_t crc = rd_crc32c(rd_crc32c(0, key, RD_TOKEN_KEY_BYTES), dst, body);
    rd__le32_put(dst + body, crc);
}

// Report a bad record.
static int
bad_record(const rd_token_store *s, int shard, const MDB_val *k, rd_errbuf *eb, const char *what) {
    if (k->mv_size == RD_TOKEN_KEY_BYTES) {
        const unsigned char *p = k->mv_data;
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "token store %s shard %d: record (user %" PRIu64 ", ts %" PRId64
                          ", id %" PRIu64 "): %s",
                          s->dir, shard, rd_lmdbx_get_be64(p),
                          rd_lmdbx_key_i64(rd_lmdbx_get_be64(p + 8)), rd_lmdbx_get_be64(p + 16),
                          what);
    }
    return rd_err_set(eb, RD_ERR_CORRUPT, "token store %s shard %d: key of %zu bytes: %s", s->dir,
                      shard, k->mv_size, what);
}

static int value_crc_ok(const rd_token_store *s, const MDB_val *k, const MDB_val *v) {
    size_t body = s->value_bytes - 4;
    const unsigned char *p = v->mv_data;
    uint32_t crc = rd_crc32c(rd_crc32c(0, k->mv_data, RD_TOKEN_KEY_BYTES), p, body);
    return crc == rd__le32_get(p + body);
}

// Decode the token of a value into dst (dim floats).
static void decode_token(const rd_token_store *s, const unsigned char *val, float *dst) {
    if (s->info.dtype == RD_TOKEN_FP32) {
        memcpy(dst, val + s->tok_off, s->tok_bytes);
    } else {
        const unsigned char *p = val + s->tok_off;
        for (size_t j = 0; j < s->info.dim; j++)
            dst[j] = rd_token_f16_to_f32((uint16_t)(p[2 * j] | (p[2 * j + 1] << 8)));
    }
}

// ---------------------------------------------------------------------------------------------
// Append

static int rec_cmp(const void *a, const void *b) {
    const tk_rec *x = a, *y = b;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    if (x->tsk != y->tsk)
        return x->tsk < y->tsk ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx; // later duplicates are written last and win
}

typedef struct append_ctx {
    rd_token_store *s;
    int shard;
    const rd_token_batch *b;
    const tk_rec *recs;
    size_t n;
} append_ctx;

static int append_cb(MDB_txn *txn, void *vctx, rd_errbuf *eb) {
    (void)eb;
    append_ctx *c = vctx;
    rd_token_store *s = c->s;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, s->shards[c->shard].dbi_tokens, &cur);
    if (rc)
        return rc;
    unsigned char last[RD_TOKEN_KEY_BYTES];
    int have_last = 0, last_unknown = 0;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0) {
        if (k.mv_size == RD_TOKEN_KEY_BYTES) {
            memcpy(last, k.mv_data, RD_TOKEN_KEY_BYTES);
            have_last = 1;
        } else {
            last_unknown = 1; // a foreign key: never use MDB_APPEND in this shard
        }
    } else if (rc != MDB_NOTFOUND) {
        mdb_cursor_close(cur);
        return rc;
    }
    for (size_t i = 0; i < c->n; i++) {
        const tk_rec *r = &c->recs[i];
        unsigned char kb[RD_TOKEN_KEY_BYTES];
        pack_key(kb, r->user, r->tsk, r->id);
        unsigned flags = MDB_RESERVE;
        // MDB_APPEND only while keys are beyond the current last key: it skips the tree search
        // and fills pages completely; anything else is an ordinary (overwriting) put.
        if (!last_unknown && (!have_last || memcmp(kb, last, RD_TOKEN_KEY_BYTES) > 0))
            flags |= MDB_APPEND;
        k.mv_size = RD_TOKEN_KEY_BYTES;
        k.mv_data = kb;
        v.mv_size = s->value_bytes;
        v.mv_data = NULL;
        rc = mdb_cursor_put(cur, &k, &v, flags);
        if (rc) {
            mdb_cursor_close(cur);
            return rc;
        }
        encode_value(s, v.mv_data, kb, c->b, r->idx);
        if (!have_last || memcmp(kb, last, RD_TOKEN_KEY_BYTES) > 0)
            memcpy(last, kb, RD_TOKEN_KEY_BYTES);
        have_last = 1;
    }
    mdb_cursor_close(cur);
    return 0;
}

static int store_append_unguarded(rd_token_store *s, const rd_token_batch *b, rd_errbuf *eb) {
    RD_ASSERT(s && b);
    if (b->n == 0)
        return RD_OK;
    if (!b->users || !b->ts || !b->ids || !b->tokens)
        return rd_err_set(eb, RD_ERR_ARG, "token append: users, ts, ids and tokens are required");
    if (b->n > UINT32_MAX)
        return rd_err_set(eb, RD_ERR_ARG, "token append: %zu records in one batch (max %u)", b->n,
                          UINT32_MAX);
    if (s->mode != RD_TOKEN_WRITE)
        return rd_err_set(eb, RD_ERR_ARG, "token store %s is open read-only: cannot append",
                          s->dir);
    const size_t n = b->n, dim = s->info.dim;
    const int ns = (int)s->info.n_shards;
    // 1. Validate everything before writing anything.
    for (size_t i = 0; i < n; i++) {
        int sh = rd_token_shard_of_user(b->users[i], ns);
        if (!s->shards[sh].writable) {
            int owner = s->n_ps > 0 ? rd_token_ps_rank_of_shard(sh, s->n_ps) : 0;
            return rd_err_set(eb, RD_ERR_ARG,
                              "token append: record %zu (user %" PRIu64 ") belongs to shard %d, "
                              "owned by PS rank %d, not by this handle (PS rank %d of %d)",
                              i, b->users[i], sh, owner, s->ps_rank, s->n_ps);
        }
        const float *tok = b->tokens + i * dim;
        for (size_t j = 0; j < dim; j++) {
            if (!finite_bits(tok[j]))
                return rd_err_set(eb, RD_ERR_ARG,
                                  "token append: record %zu (user %" PRIu64 ", ts %" PRId64
                                  "): token element %zu is not finite",
                                  i, b->users[i], b->ts[i], j);
            // A finite value that fp16 rounds to infinity would be stored as one: fetch would
            // hand it to the model and verify would report the record as damaged.
            if (s->info.dtype == RD_TOKEN_FP16 &&
                (rd_token_f32_to_f16(tok[j]) & 0x7fffu) == 0x7c00u)
                return rd_err_set(eb, RD_ERR_ARG,
                                  "token append: record %zu (user %" PRIu64 ", ts %" PRId64
                                  "): token element %zu = %g is beyond the range of this fp16 "
                                  "store (|x| <= 65504)",
                                  i, b->users[i], b->ts[i], j, (double)tok[j]);
        }
        if (b->labels && !finite_bits(b->labels[i]))
            return rd_err_set(eb, RD_ERR_ARG,
                              "token append: record %zu (user %" PRIu64 "): label is not finite", i,
                              b->users[i]);
        for (size_t j = 0; b->side && j < s->info.n_side; j++)
            if (!finite_bits(b->side[i * s->info.n_side + j]))
                return rd_err_set(eb, RD_ERR_ARG,
                                  "token append: record %zu (user %" PRIu64
                                  "): side value %zu is not finite",
                                  i, b->users[i], j);
    }
    // 2. Sort by (shard, key) so that each shard gets increasing keys.
    if (s->recs_cap < n) {
        tk_rec *r = rd_realloc(s->recs, n * sizeof *r);
        if (!r)
            return rd_err_set(eb, RD_ERR_NOMEM, "token append: out of memory for %zu records", n);
        s->recs = r;
        s->recs_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        tk_rec *r = &s->recs[i];
        r->user = b->users[i];
        r->tsk = rd_lmdbx_i64_key(b->ts[i]);
        r->id = b->ids[i];
        r->idx = (uint32_t)i;
        r->shard = (uint32_t)rd_token_shard_of_user(b->users[i], ns);
    }
    qsort(s->recs, n, sizeof *s->recs, rec_cmp);
    // 3. One write transaction per shard and chunk (chunks bound the dirty pages of a txn).
    size_t chunk = s->append_batch;
    size_t cap = (size_t)(TXN_PAYLOAD_CAP / (s->value_bytes + RD_TOKEN_KEY_BYTES + 16));
    if (chunk > cap)
        chunk = cap;
    char path[DIR_MAX + 32];
    for (size_t g0 = 0; g0 < n;) {
        uint32_t sh = s->recs[g0].shard;
        size_t g1 = g0;
        while (g1 < n && s->recs[g1].shard == sh)
            g1++;
        shard_path(s, s->dir, (int)sh, path, sizeof path);
        set_where(s, (int)sh);
        for (size_t c0 = g0; c0 < g1; c0 += chunk) {
            append_ctx ctx = {s, (int)sh, b, s->recs + c0, g1 - c0 < chunk ? g1 - c0 : chunk};
            int rc = rd_lmdbx_write(s->shards[sh].env, s->max_map_size, path, "token append",
                                    append_cb, &ctx, eb);
            if (rc != RD_OK)
                return rc;
        }
        int rc = shard_present(s, (int)sh, path, eb);
        if (rc != RD_OK)
            return rc;
        g0 = g1;
    }
    return RD_OK;
}

int rd_token_store_append(rd_token_store *s, const rd_token_batch *b, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    RD_ARG_CHECK(eb, b != NULL);
    TK_GUARDED(s, eb, store_append_unguarded(s, b, eb));
}

// ---------------------------------------------------------------------------------------------
// Fetch

static void release_reads(rd_token_store *s);

// Make shard sh's read transaction and cursor live for the current call. A batched fetch keeps
// the shards it has read live; when shard sh's map must be adopted (the writer grew it) and
// another thread of this process reads sh, waiting here while holding those reads could
// deadlock (rd_lmdbx_read_begin_shared), so they are ended first and sh is read anew. Callers
// keep no pointer into a live read across this call (fetch_one copies a user's tokens out).
static int shard_read(rd_token_store *s, int sh, rd_errbuf *eb) {
    tk_shard *t = &s->shards[sh];
    set_where(s, sh);
    if (t->live)
        return RD_OK;
    char path[DIR_MAX + 32];
    shard_path(s, s->dir, sh, path, sizeof path);
    int busy = 0, rc;
    if (t->writable && (rc = shard_present(s, sh, path, eb)) != RD_OK)
        return rc;
    rc = rd_lmdbx_read_begin_shared(t->env, &t->rtxn, path, s->n_live > 0, &busy, eb);
    if (rc != RD_OK && busy) {
        release_reads(s);
        set_where(s, sh);
        rc = rd_lmdbx_read_begin_shared(t->env, &t->rtxn, path, 0, NULL, eb);
    }
    if (rc != RD_OK)
        return rc;
    int mrc = t->rcur ? mdb_cursor_renew(t->rtxn, t->rcur)
                      : mdb_cursor_open(t->rtxn, t->dbi_tokens, &t->rcur);
    if (mrc) {
        rd_lmdbx_read_end_shared(t->env, &t->rtxn, RD_LMDBX_READ_RESET);
        return rd_lmdbx_error(eb, mrc, "open read cursor", path);
    }
    t->live = 1;
    s->live[s->n_live++] = sh;
    return RD_OK;
}

// End the current call: reset every live read transaction (keeps them for renewal).
static void release_reads(rd_token_store *s) {
    for (int i = 0; i < s->n_live; i++) {
        tk_shard *t = &s->shards[s->live[i]];
        rd_lmdbx_read_end_shared(t->env, &t->rtxn, RD_LMDBX_READ_RESET);
        t->live = 0;
    }
    s->n_live = 0;
}

// Decode the record (k, v) of `user` into slot `slot` of row `row` of out.
static inline void decode_into(const rd_token_store *s,
                               const MDB_val *k,
                               const MDB_val *v,
                               const rd_token_fetch_out *out,
                               size_t row,
                               size_t L,
                               size_t slot) {
    const unsigned char *kp = k->mv_data, *vp = v->mv_data;
    size_t at = row * L + slot;
    decode_token(s, vp, out->tokens + at * s->info.dim);
    if (out->labels) {
        uint32_t lb = rd__le32_get(vp);
        memcpy(&out->labels[at], &lb, 4);
    }
    if (out->items)
        out->items[at] = rd__le64_get(vp + 8);
    if (out->side && s->info.n_side)
        memcpy(out->side + at * s->info.n_side, vp + 16, 4 * s->info.n_side);
    if (out->ts)
        out->ts[at] = rd_lmdbx_key_i64(rd_lmdbx_get_be64(kp + 8));
    if (out->ids)
        out->ids[at] = rd_lmdbx_get_be64(kp + 16);
}

// Move slots [from, from + cnt) of a row to [0, cnt) (cnt < L here, so the ranges may overlap).
static void shift_row(const rd_token_store *s,
                      const rd_token_fetch_out *out,
                      size_t row,
                      size_t L,
                      size_t from,
                      size_t cnt) {
    size_t d = s->info.dim, base = row * L;
    memmove(out->tokens + base * d, out->tokens + (base + from) * d, cnt * d * sizeof(float));
    if (out->labels)
        memmove(out->labels + base, out->labels + base + from, cnt * sizeof(float));
    if (out->items)
        memmove(out->items + base, out->items + base + from, cnt * sizeof(uint64_t));
    if (out->ts)
        memmove(out->ts + base, out->ts + base + from, cnt * sizeof(int64_t));
    if (out->ids)
        memmove(out->ids + base, out->ids + base + from, cnt * sizeof(uint64_t));
    size_t S = s->info.n_side;
    if (out->side && S)
        memmove(out->side + base * S, out->side + (base + from) * S, cnt * S * sizeof(float));
}

// Zero slots [cnt, L) of a row and write its mask and count.
static void finish_row(
    const rd_token_store *s, const rd_token_fetch_out *out, size_t row, size_t L, size_t cnt) {
    size_t d = s->info.dim, base = row * L, pad = L - cnt;
    if (pad) {
        memset(out->tokens + (base + cnt) * d, 0, pad * d * sizeof(float));
        if (out->labels)
            memset(out->labels + base + cnt, 0, pad * sizeof(float));
        if (out->items)
            memset(out->items + base + cnt, 0, pad * sizeof(uint64_t));
        if (out->ts)
            memset(out->ts + base + cnt, 0, pad * sizeof(int64_t));
        if (out->ids)
            memset(out->ids + base + cnt, 0, pad * sizeof(uint64_t));
        size_t S = s->info.n_side;
        if (out->side && S)
            memset(out->side + (base + cnt) * S, 0, pad * S * sizeof(float));
    }
    if (out->mask) {
        memset(out->mask + base, 1, cnt);
        memset(out->mask + base + cnt, 0, pad);
    }
    out->n_found[row] = (uint32_t)cnt;
}

// One request: the records of `user` before `before_t`, newest found first, written from the
// back of the row (slot L-1 down) and moved to the front when fewer than L were found.
static int fetch_one(rd_token_store *s,
                     int sh,
                     uint64_t user,
                     int64_t before_t,
                     uint64_t before_id,
                     size_t L,
                     const rd_token_fetch_out *out,
                     size_t row,
                     rd_errbuf *eb) {
    MDB_cursor *cur = s->shards[sh].rcur;
    unsigned char kb[RD_TOKEN_KEY_BYTES];
    // Every key below (user, t, id) is the user's and earlier; with id 0, every one has time < t.
    pack_key(kb, user, rd_lmdbx_i64_key(before_t), before_id);
    MDB_val k = {RD_TOKEN_KEY_BYTES, kb}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    else if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    size_t cnt = 0;
    while (rc == 0 && cnt < L) {
        if (k.mv_size != RD_TOKEN_KEY_BYTES)
            return bad_record(s, sh, &k, eb, "key is not 24 bytes");
        if (rd_lmdbx_get_be64(k.mv_data) != user)
            break;
        if (v.mv_size != s->value_bytes) {
            char what[96];
            snprintf(what, sizeof what, "value of %zu bytes, expected %zu", v.mv_size,
                     s->value_bytes);
            return bad_record(s, sh, &k, eb, what);
        }
        if (s->verify_crc && !value_crc_ok(s, &k, &v))
            return bad_record(s, sh, &k, eb, "CRC mismatch");
        decode_into(s, &k, &v, out, row, L, L - 1 - cnt);
        cnt++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        char path[DIR_MAX + 32];
        shard_path(s, s->dir, sh, path, sizeof path);
        return rd_lmdbx_error(eb, rc, "token fetch cursor", path);
    }
    if (cnt < L && cnt > 0)
        shift_row(s, out, row, L, L - cnt, cnt);
    finish_row(s, out, row, L, cnt);
    return RD_OK;
}

static int store_fetch_batch_unguarded(rd_token_store *s,
                                       size_t n,
                                       const uint64_t *users,
                                       const int64_t *before_t,
                                       const uint64_t *before_id,
                                       size_t L,
                                       const rd_token_fetch_out *out,
                                       rd_errbuf *eb) {
    RD_ASSERT(s && out);
    if (L < 1 || L > RD_TOKEN_MAX_L)
        return rd_err_set(eb, RD_ERR_ARG, "token fetch: L = %zu out of range 1..%d", L,
                          RD_TOKEN_MAX_L);
    if (n == 0)
        return RD_OK;
    if (!users || !before_t || !out->tokens || !out->n_found)
        return rd_err_set(
            eb, RD_ERR_ARG,
            "token fetch: users, before_t, out->tokens and out->n_found are required");
    const int ns = (int)s->info.n_shards;
    int rc = reader_check(s, eb);
    for (size_t i = 0; i < n && rc == RD_OK; i++) {
        int sh = rd_token_shard_of_user(users[i], ns);
        if (!s->shards[sh].env) {
            rc = rd_err_set(eb, RD_ERR_ARG,
                            "token fetch: user %" PRIu64 " is in shard %d, owned by PS rank %d; "
                            "this handle (PS rank %d of %d) does not open it",
                            users[i], sh, s->n_ps > 0 ? rd_token_ps_rank_of_shard(sh, s->n_ps) : 0,
                            s->ps_rank, s->n_ps);
            break;
        }
        rc = shard_read(s, sh, eb);
        if (rc == RD_OK)
            rc = fetch_one(s, sh, users[i], before_t[i], before_id ? before_id[i] : 0, L, out, i,
                           eb);
    }
    release_reads(s);
    return rc;
}

int rd_token_store_fetch_batch(rd_token_store *s,
                               size_t n,
                               const uint64_t *users,
                               const int64_t *before_t,
                               const uint64_t *before_id,
                               size_t L,
                               const rd_token_fetch_out *out,
                               rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    RD_ARG_CHECK(eb, out != NULL);
    TK_GUARDED(s, eb, store_fetch_batch_unguarded(s, n, users, before_t, before_id, L, out, eb));
}

int rd_token_store_fetch(rd_token_store *s,
                         uint64_t user,
                         int64_t before_t,
                         size_t L,
                         const rd_token_fetch_out *out,
                         rd_errbuf *eb) {
    return rd_token_store_fetch_batch(s, 1, &user, &before_t, NULL, L, out, eb);
}

// ---------------------------------------------------------------------------------------------
// gc

// The gc record: meta key "gc" of a shard, written in every write transaction of a gc that
// deletes records (so no deletion is ever committed without it), and read by
// rd_token_store_gc_info. A store made before it has no such key, and a build before it ignores
// the key (open reads only "header"; verify checks the record; compact copies every key):
//   "RDTOKGC1" | i64 at (unix s of the last gc that deleted here) | i64 before_t (the largest
//   cutoff of those gcs) | u64 deleted (records deleted by them) | u32 gcs | u32 CRC-32C
#define GC_MAGIC "RDTOKGC1"
#define GC_BYTES 40

static void gc_rec_put(unsigned char *b, const rd_token_gc_info *g) {
    memcpy(b, GC_MAGIC, 8);
    memcpy(b + 8, &g->last_at, 8);
    memcpy(b + 16, &g->before_t, 8);
    memcpy(b + 24, &g->deleted, 8);
    memcpy(b + 32, &g->n_gc, 4);
    uint32_t crc = rd_crc32c(0, b, GC_BYTES - 4);
    memcpy(b + 36, &crc, 4);
}

// Decode a shard's gc record. @return 1, or 0 when it is not one (size, magic, CRC).
static int gc_rec_get(const MDB_val *v, rd_token_gc_info *g) {
    const unsigned char *b = v->mv_data;
    uint32_t crc;
    if (v->mv_size != GC_BYTES || memcmp(b, GC_MAGIC, 8) != 0)
        return 0;
    memcpy(&crc, b + 36, 4);
    if (crc != rd_crc32c(0, b, GC_BYTES - 4))
        return 0;
    memset(g, 0, sizeof *g);
    memcpy(&g->last_at, b + 8, 8);
    memcpy(&g->before_t, b + 16, 8);
    memcpy(&g->deleted, b + 24, 8);
    memcpy(&g->n_gc, b + 32, 4);
    return 1;
}

typedef struct gc_ctx {
    rd_token_store *s;
    int shard;
    int64_t before_t;
    int64_t at;        // wall clock of this gc (unix s)
    int counted;       // this gc is already counted in the shard's record (an earlier commit)
    uint64_t before_k; // before_t in key order
    uint64_t start_user;
    int start_set; // 0: start at the first record
    size_t max_del;
    // results of the last run of the callback (valid once the txn committed)
    size_t deleted;
    int finished;
    uint64_t next_user;
} gc_ctx;

// This transaction's deletions added to the shard's gc record, in the same transaction.
static int gc_record(MDB_txn *txn, const gc_ctx *c, rd_errbuf *eb) {
    MDB_dbi meta = c->s->shards[c->shard].dbi_meta;
    MDB_val k = {2, (void *)"gc"}, v;
    rd_token_gc_info g;
    memset(&g, 0, sizeof g);
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc == 0 && !gc_rec_get(&v, &g)) {
        char path[DIR_MAX + 32];
        shard_path(c->s, c->s->dir, c->shard, path, sizeof path);
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "token shard %s: its gc record is damaged (%zu bytes, expected %d with "
                          "magic and CRC)",
                          path, v.mv_size, GC_BYTES);
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (c->at > g.last_at)
        g.last_at = c->at;
    if (g.n_gc == 0 || c->before_t > g.before_t)
        g.before_t = c->before_t;
    g.deleted += c->deleted;
    g.n_gc += !c->counted;
    unsigned char b[GC_BYTES];
    gc_rec_put(b, &g);
    v.mv_size = GC_BYTES;
    v.mv_data = b;
    return mdb_put(txn, meta, &k, &v, 0);
}

static int gc_cb(MDB_txn *txn, void *vctx, rd_errbuf *eb) {
    gc_ctx *c = vctx;
    c->deleted = 0;
    c->finished = 0;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, c->s->shards[c->shard].dbi_tokens, &cur);
    if (rc)
        return rc;
    unsigned char kb[RD_TOKEN_KEY_BYTES];
    MDB_val k, v;
    if (c->start_set) {
        pack_key(kb, c->start_user, 0, 0);
        k.mv_size = RD_TOKEN_KEY_BYTES;
        k.mv_data = kb;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    while (rc == 0) {
        if (k.mv_size != RD_TOKEN_KEY_BYTES) {
            mdb_cursor_close(cur);
            return bad_record(c->s, c->shard, &k, eb, "key is not 24 bytes");
        }
        uint64_t user = rd_lmdbx_get_be64(k.mv_data);
        uint64_t tk = rd_lmdbx_get_be64((const unsigned char *)k.mv_data + 8);
        if (tk < c->before_k) {
            if (c->deleted == c->max_del) {
                c->next_user = user; // resume here in the next transaction
                mdb_cursor_close(cur);
                return gc_record(txn, c, eb);
            }
            // Delete, then find the successor by key: unambiguous whatever page the deletion
            // left the cursor on.
            memcpy(kb, k.mv_data, RD_TOKEN_KEY_BYTES);
            rc = mdb_cursor_del(cur, 0);
            if (rc)
                break;
            c->deleted++;
            k.mv_size = RD_TOKEN_KEY_BYTES;
            k.mv_data = kb;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            continue;
        }
        // The rest of this user's history is recent: jump to the next user.
        if (user == UINT64_MAX) {
            rc = MDB_NOTFOUND;
            break;
        }
        pack_key(kb, user + 1, 0, 0);
        k.mv_size = RD_TOKEN_KEY_BYTES;
        k.mv_data = kb;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        c->finished = 1;
        rc = 0;
    }
    if (rc == 0 && c->deleted > 0)
        rc = gc_record(txn, c, eb);
    return rc;
}

static int
store_gc_unguarded(rd_token_store *s, int64_t before_t, uint64_t *n_deleted, rd_errbuf *eb) {
    RD_ASSERT(s);
    if (n_deleted)
        *n_deleted = 0;
    if (s->mode != RD_TOKEN_WRITE)
        return rd_err_set(eb, RD_ERR_ARG, "token store %s is open read-only: cannot gc", s->dir);
    uint64_t total = 0;
    char path[DIR_MAX + 32];
    for (uint32_t sh = 0; sh < s->info.n_shards; sh++) {
        if (!s->shards[sh].writable)
            continue;
        shard_path(s, s->dir, (int)sh, path, sizeof path);
        set_where(s, (int)sh);
        gc_ctx c = {0};
        c.s = s;
        c.shard = (int)sh;
        c.before_t = before_t;
        c.at = (int64_t)time(NULL);
        c.before_k = rd_lmdbx_i64_key(before_t);
        c.max_del = s->append_batch;
        for (;;) {
            int rc =
                rd_lmdbx_write(s->shards[sh].env, s->max_map_size, path, "token gc", gc_cb, &c, eb);
            if (rc != RD_OK) {
                if (n_deleted)
                    *n_deleted = total;
                return rc;
            }
            total += c.deleted;
            c.counted |= c.deleted > 0; // committed with its record
            if (c.finished)
                break;
            c.start_user = c.next_user;
            c.start_set = 1;
        }
    }
    if (n_deleted)
        *n_deleted = total;
    return RD_OK;
}

int rd_token_store_gc(rd_token_store *s, int64_t before_t, uint64_t *n_deleted, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    if (n_deleted)
        *n_deleted = 0;
    // Verify first: deleting walks and rewrites the B-tree, and on a damaged page LMDB can
    // overrun its own buffers (a heap corruption the guard cannot undo). One read pass more; a
    // damaged store is refused with verify's message and nothing deleted.
    if (s->mode == RD_TOKEN_WRITE) {
        int rc = rd_token_store_verify(s, NULL, eb);
        if (rc != RD_OK) {
            rd_err_prefix(eb, "the store does not verify (nothing deleted): ");
            return rc;
        }
    }
    TK_GUARDED(s, eb, store_gc_unguarded(s, before_t, n_deleted, eb));
}

static int store_gc_info_unguarded(rd_token_store *s, rd_token_gc_info *info, rd_errbuf *eb) {
    memset(info, 0, sizeof *info);
    int rc0 = reader_check(s, eb);
    if (rc0 != RD_OK)
        return rc0;
    for (uint32_t sh = 0; sh < s->info.n_shards; sh++) {
        tk_shard *t = &s->shards[sh];
        if (!t->env)
            continue;
        int rc = shard_read(s, (int)sh, eb);
        if (rc != RD_OK)
            return rc;
        MDB_val k = {2, (void *)"gc"}, v;
        int mrc = mdb_get(t->rtxn, t->dbi_meta, &k, &v);
        rd_token_gc_info g;
        int good = mrc == 0 && gc_rec_get(&v, &g);
        size_t bytes = mrc == 0 ? v.mv_size : 0;
        release_reads(s);
        char path[DIR_MAX + 32];
        shard_path(s, s->dir, (int)sh, path, sizeof path);
        if (mrc == MDB_NOTFOUND) // never collected (or a store made before the record)
            continue;
        if (mrc)
            return rd_lmdbx_error(eb, mrc, "read the gc record of", path);
        if (!good)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "token shard %s: its gc record is damaged (%zu bytes, expected %d "
                              "with magic and CRC)",
                              path, bytes, GC_BYTES);
        if (g.last_at > info->last_at)
            info->last_at = g.last_at;
        if (info->n_gc == 0 || g.before_t > info->before_t)
            info->before_t = g.before_t;
        if (g.n_gc > info->n_gc)
            info->n_gc = g.n_gc;
        info->deleted += g.deleted;
    }
    return RD_OK;
}

int rd_token_store_gc_info(rd_token_store *s, rd_token_gc_info *info, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, info != NULL);
    memset(info, 0, sizeof *info);
    RD_ARG_CHECK(eb, s != NULL);
    TK_GUARDED(s, eb, store_gc_info_unguarded(s, info, eb));
}

// ---------------------------------------------------------------------------------------------
// stats / verify / iterate

static void stats_empty(rd_token_stats *st) {
    memset(st, 0, sizeof *st);
    st->t_min = INT64_MAX;
    st->t_max = INT64_MIN;
}

static int shard_stats(rd_token_store *s, int sh, rd_token_stats *st, rd_errbuf *eb) {
    stats_empty(st);
    tk_shard *t = &s->shards[sh];
    int rc = shard_read(s, sh, eb);
    if (rc != RD_OK)
        return rc;
    MDB_stat ms;
    MDB_envinfo info;
    mdb_stat(t->rtxn, t->dbi_tokens, &ms);
    mdb_env_info(t->env, &info);
    st->entries = ms.ms_entries;
    st->payload_bytes = ms.ms_entries * (uint64_t)(RD_TOKEN_KEY_BYTES + s->value_bytes);
    st->file_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    st->map_bytes = info.me_mapsize;
    // Users and the time range by skipping: first record of a user, then its last one found
    // from the first key of the next user. O(users * log(entries)), not O(entries).
    MDB_cursor *cur = t->rcur;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        if (k.mv_size != RD_TOKEN_KEY_BYTES)
            return bad_record(s, sh, &k, eb, "key is not 24 bytes");
        uint64_t user = rd_lmdbx_get_be64(k.mv_data);
        int64_t t0 = rd_lmdbx_key_i64(rd_lmdbx_get_be64((const unsigned char *)k.mv_data + 8));
        st->users++;
        if (t0 < st->t_min)
            st->t_min = t0;
        unsigned char kb[RD_TOKEN_KEY_BYTES];
        int last_user = user == UINT64_MAX;
        if (!last_user) {
            pack_key(kb, user + 1, 0, 0);
            k.mv_size = RD_TOKEN_KEY_BYTES;
            k.mv_data = kb;
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
        int next_found = !last_user && mrc == 0;
        if (!last_user && mrc != 0 && mrc != MDB_NOTFOUND)
            break;
        mrc = mdb_cursor_get(cur, &k, &v, next_found ? MDB_PREV : MDB_LAST);
        if (mrc)
            break;
        if (k.mv_size != RD_TOKEN_KEY_BYTES)
            return bad_record(s, sh, &k, eb, "key is not 24 bytes");
        int64_t t1 = rd_lmdbx_key_i64(rd_lmdbx_get_be64((const unsigned char *)k.mv_data + 8));
        if (t1 > st->t_max)
            st->t_max = t1;
        if (!next_found) {
            mrc = MDB_NOTFOUND;
            break;
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc != MDB_NOTFOUND) {
        char path[DIR_MAX + 32];
        shard_path(s, s->dir, sh, path, sizeof path);
        return rd_lmdbx_error(eb, mrc, "token stats cursor", path);
    }
    return RD_OK;
}

static int store_stats_unguarded(rd_token_store *s,
                                 rd_token_stats *total,
                                 rd_token_stats *per_shard,
                                 rd_errbuf *eb) {
    RD_ASSERT(s && total);
    stats_empty(total);
    int rc = reader_check(s, eb);
    if (rc != RD_OK)
        return rc;
    for (uint32_t sh = 0; sh < s->info.n_shards; sh++) {
        rd_token_stats st;
        stats_empty(&st);
        if (s->shards[sh].env) {
            rc = shard_stats(s, (int)sh, &st, eb);
            release_reads(s);
            if (rc != RD_OK)
                return rc;
        }
        if (per_shard)
            per_shard[sh] = st;
        total->entries += st.entries;
        total->users += st.users;
        total->payload_bytes += st.payload_bytes;
        total->file_bytes += st.file_bytes;
        total->map_bytes += st.map_bytes;
        if (st.t_min < total->t_min)
            total->t_min = st.t_min;
        if (st.t_max > total->t_max)
            total->t_max = st.t_max;
    }
    return RD_OK;
}

int rd_token_store_stats(rd_token_store *s,
                         rd_token_stats *total,
                         rd_token_stats *per_shard,
                         rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    RD_ARG_CHECK(eb, total != NULL);
    TK_GUARDED(s, eb, store_stats_unguarded(s, total, per_shard, eb));
}

// Walk shard sh in key order; check (verify) and/or call fn for each record.
static int walk_shard(rd_token_store *s,
                      int sh,
                      int check,
                      rd_token_visit_fn fn,
                      void *user,
                      uint64_t *n_seen,
                      rd_errbuf *eb) {
    tk_shard *t = &s->shards[sh];
    int rc = shard_read(s, sh, eb);
    if (rc != RD_OK)
        return rc;
    char path[DIR_MAX + 32];
    shard_path(s, s->dir, sh, path, sizeof path);
    if (check) {
        MDB_val hk = {6, (void *)"header"}, hv;
        int mrc = mdb_get(t->rtxn, t->dbi_meta, &hk, &hv);
        if (mrc == MDB_NOTFOUND)
            return rd_err_set(eb, RD_ERR_CORRUPT, "token shard %s: no header record", path);
        if (mrc)
            return rd_lmdbx_error(eb, mrc, "read shard header", path);
        rc = header_check(&hv, &s->info, sh, path, eb);
        if (rc != RD_OK)
            return rc;
        // The gc record (absent until a gc deletes here) is what stats and readers report as
        // "records before T are gone": a damaged one is a damaged shard, not a verified one.
        MDB_val gk = {2, (void *)"gc"}, gv;
        rd_token_gc_info g;
        mrc = mdb_get(t->rtxn, t->dbi_meta, &gk, &gv);
        if (mrc && mrc != MDB_NOTFOUND)
            return rd_lmdbx_error(eb, mrc, "read the gc record of", path);
        if (mrc == 0 && !gc_rec_get(&gv, &g))
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "token shard %s: its gc record is damaged (%zu bytes, expected %d "
                              "with magic and CRC)",
                              path, gv.mv_size, GC_BYTES);
    }
    unsigned char prev[RD_TOKEN_KEY_BYTES];
    int have_prev = 0;
    uint64_t count = 0;
    MDB_val k, v;
    int mrc = mdb_cursor_get(t->rcur, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        if (k.mv_size != RD_TOKEN_KEY_BYTES)
            return bad_record(s, sh, &k, eb, "key is not 24 bytes");
        if (v.mv_size != s->value_bytes) {
            char what[96];
            snprintf(what, sizeof what, "value of %zu bytes, expected %zu", v.mv_size,
                     s->value_bytes);
            return bad_record(s, sh, &k, eb, what);
        }
        const unsigned char *kp = k.mv_data, *vp = v.mv_data;
        uint64_t u = rd_lmdbx_get_be64(kp);
        if (check) {
            if (have_prev && memcmp(prev, kp, RD_TOKEN_KEY_BYTES) >= 0)
                return bad_record(s, sh, &k, eb, "keys are not strictly increasing");
            if (rd_token_shard_of_user(u, (int)s->info.n_shards) != sh)
                return bad_record(s, sh, &k, eb, "user belongs to another shard");
            if (!value_crc_ok(s, &k, &v))
                return bad_record(s, sh, &k, eb, "CRC mismatch");
        }
        decode_token(s, vp, s->tokbuf);
        uint32_t lb = rd__le32_get(vp);
        float label;
        memcpy(&label, &lb, 4);
        float *side = s->tokbuf + s->info.dim;
        memcpy(side, vp + 16, 4 * s->info.n_side);
        if (check) {
            if (!finite_bits(label))
                return bad_record(s, sh, &k, eb, "label is not finite");
            for (size_t j = 0; j < s->info.dim; j++)
                if (!finite_bits(s->tokbuf[j]))
                    return bad_record(s, sh, &k, eb, "token element is not finite");
            for (size_t j = 0; j < s->info.n_side; j++)
                if (!finite_bits(side[j]))
                    return bad_record(s, sh, &k, eb, "side value is not finite");
        }
        if (fn) {
            rd_token_record r = {sh,
                                 u,
                                 rd_lmdbx_key_i64(rd_lmdbx_get_be64(kp + 8)),
                                 rd_lmdbx_get_be64(kp + 16),
                                 label,
                                 rd__le64_get(vp + 8),
                                 rd__le32_get(vp + 4),
                                 s->tokbuf,
                                 side};
            int frc = fn(&r, user);
            if (frc != 0)
                return frc;
        }
        memcpy(prev, kp, RD_TOKEN_KEY_BYTES);
        have_prev = 1;
        count++;
        mrc = mdb_cursor_get(t->rcur, &k, &v, MDB_NEXT);
    }
    if (mrc != MDB_NOTFOUND)
        return rd_lmdbx_error(eb, mrc, "token scan cursor", path);
    if (check) {
        MDB_stat ms;
        mdb_stat(t->rtxn, t->dbi_tokens, &ms);
        if (ms.ms_entries != count)
            return rd_err_set(eb, RD_ERR_CORRUPT,
                              "token shard %s: %" PRIu64 " records scanned but the tree counts %zu",
                              path, count, ms.ms_entries);
    }
    if (n_seen)
        *n_seen += count;
    return RD_OK;
}

static int store_verify_unguarded(rd_token_store *s, uint64_t *n_checked, rd_errbuf *eb) {
    RD_ASSERT(s);
    uint64_t n = 0;
    int rc = reader_check(s, eb);
    for (uint32_t sh = 0; sh < s->info.n_shards && rc == RD_OK; sh++) {
        if (!s->shards[sh].env)
            continue;
        rc = walk_shard(s, (int)sh, 1, NULL, NULL, &n, eb);
        release_reads(s);
    }
    if (n_checked)
        *n_checked = n;
    return rc;
}

int rd_token_store_verify(rd_token_store *s, uint64_t *n_checked, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    TK_GUARDED(s, eb, store_verify_unguarded(s, n_checked, eb));
}

static int store_iterate_unguarded(
    rd_token_store *s, int shard, rd_token_visit_fn fn, void *user, rd_errbuf *eb) {
    RD_ASSERT(s && fn);
    if (shard >= 0 && !rd_token_store_has_shard(s, shard))
        return rd_err_set(eb, RD_ERR_ARG, "token iterate: shard %d is not open in this handle",
                          shard);
    int rc = reader_check(s, eb);
    for (uint32_t sh = 0; sh < s->info.n_shards && rc == RD_OK; sh++) {
        if (!s->shards[sh].env || (shard >= 0 && (int)sh != shard))
            continue;
        rc = walk_shard(s, (int)sh, 0, fn, user, NULL, eb);
        release_reads(s);
    }
    return rc;
}

int rd_token_store_iterate(
    rd_token_store *s, int shard, rd_token_visit_fn fn, void *user, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    RD_ARG_CHECK(eb, fn != NULL);
    TK_GUARDED(s, eb, store_iterate_unguarded(s, shard, fn, user, eb));
}

static int store_scan_raw_unguarded(
    rd_token_store *s, int shard, uint64_t *bytes, uint64_t *digest, rd_errbuf *eb) {
    RD_ASSERT(s);
    if (shard >= 0 && !rd_token_store_has_shard(s, shard))
        return rd_err_set(eb, RD_ERR_ARG, "token scan: shard %d is not open in this handle", shard);
    uint64_t n = 0, acc = 0;
    int rc = reader_check(s, eb);
    for (uint32_t sh = 0; sh < s->info.n_shards && rc == RD_OK; sh++) {
        if (!s->shards[sh].env || (shard >= 0 && (int)sh != shard))
            continue;
        rc = shard_read(s, (int)sh, eb);
        if (rc != RD_OK)
            break;
        MDB_cursor *cur = s->shards[sh].rcur;
        MDB_val k, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (mrc == 0) {
            // Every byte, 8 at a time: the memory traffic of a copy-out without the stores. The
            // two loops are written out on purpose: a shared helper made this scan 12 % slower
            // (1.81 against 2.05 GB/s), and a slower reference flatters every fetch ratio.
            const unsigned char *p = v.mv_data;
            size_t i = 0;
            for (; i + 8 <= v.mv_size; i += 8) {
                uint64_t x;
                memcpy(&x, p + i, 8);
                acc ^= x;
            }
            for (; i < v.mv_size; i++)
                acc ^= p[i];
            const unsigned char *kp = k.mv_data;
            for (i = 0; i + 8 <= k.mv_size; i += 8) {
                uint64_t x;
                memcpy(&x, kp + i, 8);
                acc ^= x;
            }
            for (; i < k.mv_size; i++)
                acc ^= kp[i];
            n += k.mv_size + v.mv_size;
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (mrc != MDB_NOTFOUND) {
            char path[DIR_MAX + 32];
            shard_path(s, s->dir, (int)sh, path, sizeof path);
            rc = rd_lmdbx_error(eb, mrc, "token scan cursor", path);
        }
        release_reads(s);
    }
    if (bytes)
        *bytes = n;
    if (digest)
        *digest = acc;
    return rc;
}

int rd_token_store_scan_raw(
    rd_token_store *s, int shard, uint64_t *bytes, uint64_t *digest, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    TK_GUARDED(s, eb, store_scan_raw_unguarded(s, shard, bytes, digest, eb));
}

// ---------------------------------------------------------------------------------------------
// Packed shard entry points

static int mul_ok(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

static size_t round8(size_t x) {
    return (x + 7) & ~(size_t)7;
}

int rd__token_reply_layout_of(
    size_t n, size_t L, size_t dim, size_t n_side, unsigned fields, rd__token_reply_layout *lay) {
    if (n < 1 || n > RD__TOKEN_MAX_REQUESTS || L < 1 || L > RD_TOKEN_MAX_L || dim < 1 ||
        dim > RD_TOKEN_MAX_DIM || n_side > RD_TOKEN_MAX_SIDE ||
        (fields & ~RD_TOKEN_FIELDS_ALL) != 0)
        return 0;
    size_t nl, nld;
    if (!mul_ok(n, L, &nl) || !mul_ok(nl, dim, &nld))
        return 0;
    // Each term is bounded (n <= 2^20, L <= 2^16, dim <= 2^12), so the sums fit in 64 bits.
    memset(lay, 0, sizeof *lay);
    size_t off = RD__TOKEN_FETCH_HEADER;
    if (fields & RD_TOKEN_FIELD_ITEMS) {
        lay->items = off;
        off += 8 * nl;
    }
    if (fields & RD_TOKEN_FIELD_TS) {
        lay->ts = off;
        off += 8 * nl;
    }
    if (fields & RD_TOKEN_FIELD_IDS) {
        lay->ids = off;
        off += 8 * nl;
    }
    lay->tokens = off;
    off += 4 * nld;
    if (fields & RD_TOKEN_FIELD_LABELS) {
        lay->labels = off;
        off += 4 * nl;
    }
    if ((fields & RD_TOKEN_FIELD_SIDE) && n_side) {
        lay->side = off;
        off += 4 * nl * n_side;
    }
    lay->n_found = off;
    off += 4 * n;
    lay->mask = off;
    off += nl;
    lay->total = round8(off);
    return lay->total <= RD__TOKEN_MAX_PACKED;
}

int rd__token_append_layout_of(size_t n, size_t dim, size_t n_side, rd__token_append_layout *lay) {
    if (n < 1 || n > RD__TOKEN_MAX_APPEND || dim < 1 || dim > RD_TOKEN_MAX_DIM ||
        n_side > RD_TOKEN_MAX_SIDE)
        return 0;
    size_t off = RD__TOKEN_REQ_HEADER;
    lay->users = off;
    off += 8 * n;
    lay->ts = off;
    off += 8 * n;
    lay->ids = off;
    off += 8 * n;
    lay->items = off;
    off += 8 * n;
    lay->tokens = off;
    off += 4 * n * dim;
    lay->labels = off;
    off += 4 * n;
    lay->flags = off;
    off += 4 * n;
    lay->side = off;
    off += 4 * n * n_side;
    lay->total = round8(off);
    return 1;
}

size_t
rd_token_pick(const uint64_t *items, size_t n_found, uint64_t key, size_t L, uint32_t *pick) {
    if (!pick)
        return 0;
    size_t n = 0;
    for (size_t k = n_found; k-- > 0 && n < L;)
        if (!items || items[k] == key)
            pick[n++] = (uint32_t)k;
    return n;
}

size_t rd_token_summary_width(int n_windows, size_t n_side) {
    return n_windows > 0 ? 1 + (size_t)n_windows * (1 + n_side) : 0;
}

int rd_token_summary(const int *windows,
                     int n_windows,
                     size_t n,
                     const uint8_t *labels,
                     const float *side,
                     size_t n_side,
                     float *out,
                     rd_errbuf *eb) {
    if (n_windows <= 0)
        return RD_OK;
    // The arguments are the caller's (a model config, a request's fetch): a mistake is an error
    // it can report, checked before anything is written. These asserted, which aborted a
    // serving process or every rank of a launch.
    RD_ARG_CHECK(eb, windows != NULL);
    RD_ARG_CHECK(eb, out != NULL);
    RD_ARG_CHECK(eb, labels || n == 0);
    RD_ARG_CHECK(eb, n_side <= RD_TOKEN_MAX_SIDE);
    RD_ARG_CHECK(eb, side || n_side == 0);
    for (int k = 0; k < n_windows; k++)
        if (windows[k] < 1 || (k > 0 && windows[k] <= windows[k - 1]))
            return rd_err_set(eb, RD_ERR_ARG,
                              "rd_token_summary: invalid argument: windows[%d] = %d (the windows "
                              "must be >= 1, ascending and distinct)",
                              k, windows[k]);
    out[0] = (float)log1p((double)n);
    // Windows ascend: one walk from the latest token back, closing each window on the way.
    double sum_y = 0, sum_s[RD_TOKEN_MAX_SIDE] = {0};
    size_t j = 0;
    for (int k = 0; k < n_windows; k++) {
        size_t end = (size_t)windows[k] < n ? (size_t)windows[k] : n;
        for (; j < end; j++) {
            sum_y += labels[j] ? 1.0 : 0.0;
            for (size_t c = 0; c < n_side; c++)
                sum_s[c] += (double)side[j * n_side + c];
        }
        float *o = out + 1 + (size_t)k * (1 + n_side);
        o[0] = end ? (float)(sum_y / (double)end) : 0.0f;
        for (size_t c = 0; c < n_side; c++)
            o[1 + c] = end ? (float)(sum_s[c] / (double)end) : 0.0f;
    }
    return RD_OK;
}

unsigned rd_token_fetch_fields(const rd_token_fetch_out *out) {
    if (!out)
        return 0;
    return (out->labels ? RD_TOKEN_FIELD_LABELS : 0u) | (out->items ? RD_TOKEN_FIELD_ITEMS : 0u) |
           (out->ts ? RD_TOKEN_FIELD_TS : 0u) | (out->ids ? RD_TOKEN_FIELD_IDS : 0u) |
           (out->side ? RD_TOKEN_FIELD_SIDE : 0u);
}

size_t rd_token_fetch_reply_bytes(size_t n, size_t L, size_t dim, size_t n_side, unsigned fields) {
    rd__token_reply_layout lay;
    return rd__token_reply_layout_of(n, L, dim, n_side, fields, &lay) ? lay.total : 0;
}

// Pointers of a reply's arrays (NULL for absent fields).
static rd_token_fetch_out reply_arrays(unsigned char *p, const rd__token_reply_layout *lay) {
    rd_token_fetch_out o = {(float *)(void *)(p + lay->tokens),
                            lay->labels ? (float *)(void *)(p + lay->labels) : NULL,
                            lay->items ? (uint64_t *)(void *)(p + lay->items) : NULL,
                            lay->ts ? (int64_t *)(void *)(p + lay->ts) : NULL,
                            lay->ids ? (uint64_t *)(void *)(p + lay->ids) : NULL,
                            p + lay->mask,
                            (uint32_t *)(void *)(p + lay->n_found),
                            lay->side ? (float *)(void *)(p + lay->side) : NULL};
    return o;
}

size_t rd_token_append_packed_bytes(size_t n, size_t dim, size_t n_side) {
    rd__token_append_layout lay;
    return rd__token_append_layout_of(n, dim, n_side, &lay) ? lay.total : 0;
}

int rd_token_shard_fetch_batch(rd_token_store *s,
                               size_t n,
                               const uint64_t *users,
                               const int64_t *before_t,
                               const uint64_t *before_id,
                               size_t L,
                               unsigned fields,
                               void *buf,
                               size_t cap,
                               rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    RD_ARG_CHECK(eb, buf != NULL);
    rd__token_reply_layout lay;
    if (!rd__token_reply_layout_of(n, L, s->info.dim, s->info.n_side, fields, &lay))
        return rd_err_set(eb, RD_ERR_ARG,
                          "token fetch: %zu requests of L = %zu (dim %u, fields 0x%x) is out of "
                          "range (n 1..%u, L 1..%d)",
                          n, L, s->info.dim, fields, RD__TOKEN_MAX_REQUESTS, RD_TOKEN_MAX_L);
    if (cap < lay.total)
        return rd_err_set(eb, RD_ERR_ARG, "token fetch: reply buffer of %zu bytes, %zu needed", cap,
                          lay.total);
    if (((uintptr_t)buf & 7u) != 0)
        return rd_err_set(eb, RD_ERR_ARG, "token fetch: reply buffer is not 8-byte aligned");
    unsigned char *p = buf;
    rd__le32_put(p, RD__TOKEN_REPLY_MAGIC);
    rd__le32_put(p + 4, (uint32_t)n);
    rd__le32_put(p + 8, (uint32_t)L);
    rd__le32_put(p + 12, s->info.dim);
    rd__le32_put(p + 16, fields);
    rd__le32_put(p + 20, (fields & RD_TOKEN_FIELD_SIDE) ? s->info.n_side : 0);
    rd_token_fetch_out o = reply_arrays(p, &lay);
    memset(p + lay.mask + n * L, 0, lay.total - (lay.mask + n * L)); // padding
    return rd_token_store_fetch_batch(s, n, users, before_t, before_id, L, &o, eb);
}

int rd_token_fetch_reply_view(const void *buf,
                              size_t len,
                              size_t n,
                              size_t L,
                              size_t dim,
                              size_t n_side,
                              unsigned fields,
                              rd_token_fetch_out *view,
                              rd_errbuf *eb) {
    RD_ARG_CHECK(eb, buf != NULL);
    RD_ARG_CHECK(eb, view != NULL);
    rd__token_reply_layout lay;
    if (!rd__token_reply_layout_of(n, L, dim, n_side, fields, &lay))
        return rd_err_set(eb, RD_ERR_PROTO,
                          "token fetch reply: (n %zu, L %zu, dim %zu, %zu side values, fields "
                          "0x%x) out of range",
                          n, L, dim, n_side, fields);
    if (((uintptr_t)buf & 7u) != 0)
        return rd_err_set(eb, RD_ERR_PROTO, "token fetch reply: buffer is not 8-byte aligned");
    if (len != lay.total)
        return rd_err_set(eb, RD_ERR_PROTO, "token fetch reply of %zu bytes, expected %zu", len,
                          lay.total);
    const unsigned char *p = buf;
    size_t want_side = (fields & RD_TOKEN_FIELD_SIDE) ? n_side : 0;
    if (rd__le32_get(p) != RD__TOKEN_REPLY_MAGIC || rd__le32_get(p + 4) != n ||
        rd__le32_get(p + 8) != L || rd__le32_get(p + 12) != dim || rd__le32_get(p + 16) != fields ||
        rd__le32_get(p + 20) != want_side)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "token fetch reply header (magic %08x, n %u, L %u, dim %u, fields 0x%x, "
                          "%u side values) does not match the request (n %zu, L %zu, dim %zu, "
                          "fields 0x%x, %zu side values)",
                          rd__le32_get(p), rd__le32_get(p + 4), rd__le32_get(p + 8),
                          rd__le32_get(p + 12), rd__le32_get(p + 16), rd__le32_get(p + 20), n, L,
                          dim, fields, want_side);
    rd_token_fetch_out o = reply_arrays((unsigned char *)(uintptr_t)buf, &lay);
    for (size_t i = 0; i < n; i++) {
        uint32_t nf = o.n_found[i];
        if (nf > L)
            return rd_err_set(eb, RD_ERR_PROTO, "token fetch reply: request %zu found %u > L = %zu",
                              i, nf, L);
        for (size_t j = 0; j < L; j++)
            if (o.mask[i * L + j] != (j < nf))
                return rd_err_set(eb, RD_ERR_PROTO,
                                  "token fetch reply: request %zu: mask[%zu] = %u with %u found", i,
                                  j, o.mask[i * L + j], nf);
    }
    *view = o;
    return RD_OK;
}

int rd_token_append_pack(
    const rd_token_batch *b, size_t dim, size_t n_side, void *buf, size_t cap, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, b != NULL);
    RD_ARG_CHECK(eb, buf != NULL);
    rd__token_append_layout lay;
    if (!rd__token_append_layout_of(b->n, dim, n_side, &lay))
        return rd_err_set(eb, RD_ERR_ARG,
                          "token append pack: n %zu, dim %zu or n_side %zu out of range", b->n, dim,
                          n_side);
    if (cap < lay.total)
        return rd_err_set(eb, RD_ERR_ARG, "token append pack: buffer of %zu bytes, %zu needed", cap,
                          lay.total);
    if (!b->users || !b->ts || !b->ids || !b->tokens)
        return rd_err_set(eb, RD_ERR_ARG, "token append pack: users, ts, ids, tokens required");
    unsigned char *p = buf;
    size_t n = b->n;
    rd__le32_put(p, RD__TOKEN_APPEND_MAGIC);
    rd__le32_put(p + 4, (uint32_t)n);
    rd__le32_put(p + 8, (uint32_t)dim);
    rd__le32_put(p + 12, (uint32_t)n_side);
    memcpy(p + lay.users, b->users, 8 * n);
    memcpy(p + lay.ts, b->ts, 8 * n);
    memcpy(p + lay.ids, b->ids, 8 * n);
    if (b->items)
        memcpy(p + lay.items, b->items, 8 * n);
    else
        memset(p + lay.items, 0, 8 * n);
    memcpy(p + lay.tokens, b->tokens, 4 * n * dim);
    if (b->labels)
        memcpy(p + lay.labels, b->labels, 4 * n);
    else
        memset(p + lay.labels, 0, 4 * n);
    if (b->flags)
        memcpy(p + lay.flags, b->flags, 4 * n);
    else
        memset(p + lay.flags, 0, 4 * n);
    if (b->side)
        memcpy(p + lay.side, b->side, 4 * n * n_side);
    else
        memset(p + lay.side, 0, 4 * n * n_side);
    size_t end = lay.side + 4 * n * n_side;
    memset(p + end, 0, lay.total - end);
    return RD_OK;
}

int rd_token_shard_append_packed(rd_token_store *s, const void *buf, size_t len, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    RD_ARG_CHECK(eb, buf != NULL || len == 0);
    if (!buf || len < RD__TOKEN_REQ_HEADER)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "token append: payload of %zu bytes is shorter than "
                          "its %d-byte header",
                          len, RD__TOKEN_REQ_HEADER);
    if (((uintptr_t)buf & 7u) != 0)
        return rd_err_set(eb, RD_ERR_PROTO, "token append: payload is not 8-byte aligned");
    const unsigned char *p = buf;
    uint32_t magic = rd__le32_get(p), n = rd__le32_get(p + 4), dim = rd__le32_get(p + 8);
    uint32_t n_side = rd__le32_get(p + 12);
    if (magic != RD__TOKEN_APPEND_MAGIC)
        return rd_err_set(eb, RD_ERR_PROTO, "token append: bad magic %08x", magic);
    if (dim != s->info.dim)
        return rd_err_set(eb, RD_ERR_PROTO, "token append: dim %u, but the store has dim %u", dim,
                          s->info.dim);
    if (n_side != s->info.n_side)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "token append: %u side values per record, but the store has %u", n_side,
                          s->info.n_side);
    rd__token_append_layout lay;
    if (!rd__token_append_layout_of(n, dim, n_side, &lay))
        return rd_err_set(eb, RD_ERR_PROTO, "token append: %u records out of range 1..%u", n,
                          RD__TOKEN_MAX_APPEND);
    if (len != lay.total)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "token append: payload of %zu bytes, but %u records of dim %u need %zu",
                          len, n, dim, lay.total);
    rd_token_batch b = {n,
                        (const uint64_t *)(const void *)(p + lay.users),
                        (const int64_t *)(const void *)(p + lay.ts),
                        (const uint64_t *)(const void *)(p + lay.ids),
                        (const float *)(const void *)(p + lay.tokens),
                        (const float *)(const void *)(p + lay.labels),
                        (const uint64_t *)(const void *)(p + lay.items),
                        (const uint32_t *)(const void *)(p + lay.flags),
                        (const float *)(const void *)(p + lay.side)};
    return rd_token_store_append(s, &b, eb);
}
