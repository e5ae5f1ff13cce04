// dataset.c — the binary dataset format: builder (streaming writer, per-user index, header,
// meta.yaml, atomic install) and reader (mmap, verification, splits, iteration, history).
//
// Workload: written once by `recdistill prepare` (10^5 .. 10^8 events, streamed: memory is
// bounded by the number of users, items and distinct field values, never by the events), then
// mapped read-only by every rank of every job, possibly many times per run.
//
// Invariants:
//   - records are appended in time order; record i has id i; dense user/item indices are given
//     in order of first appearance among kept events;
//   - the index sections are derived from the records alone (counting sort by user, stable);
//   - nothing is visible at dc->dir until every byte is written and fsynced: the folder is built
//     under "<dir>.tmp-<pid>.<host>" and renamed (or atomically exchanged with an old dataset);
//     a SIGTERM/SIGINT/SIGHUP removes that folder (rd_lmdbx_pending_add), and the next build
//     beside it removes those of this host's processes that no longer run (a SIGKILL, a crash);
//   - every byte of events.bin is covered by a CRC-32C (header, records, index).
#include "dataset_internal.h"

#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/csv.h"
#include "rd/hash.h"
#include "rd/lmdbx.h"
#include "rd/log.h"
#include "rd/synth.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the dataset format is little-endian; big-endian hosts are not supported"
#endif

_Static_assert(sizeof(rd_record) == 48, "rd_record is the 48-byte record prefix");

// ---------------------------------------------------------------------------------------------
// On-disk header (little-endian). Followed by n_fields disk_field entries, (n_windows + 1)
// uint64 window boundaries and (version 2) n_fields disk_xform entries, zero-padded to
// header_size (a multiple of 64).

#define HDR_ENDIAN 0x01020304u

#define CFG_HASH_KEY "data_config_hash: "

typedef struct disk_header {
    char magic[8];        // RD_DATASET_MAGIC
    uint32_t version;     // RD_DATASET_VERSION
    uint32_t header_size; // bytes before the first record
    uint32_t record_size; // bytes per record
    uint32_t n_slots;     // key slots per record
    uint32_t n_numeric;   // floats per record
    uint32_t n_fields;    // field table entries
    uint32_t n_windows;   // K stream windows
    int32_t source;       // rd_data_source
    uint64_t n_events, n_users, n_items, n_positives;
    int64_t ts_min, ts_max;
    uint64_t raw_events, raw_positives;
    double neg_rate, pos_rate;
    uint64_t batch_end, holdout_begin;
    uint64_t records_off, user_off_off, user_rec_off, user_pos_off, file_size;
    uint32_t records_crc, index_crc, header_crc, endian;
} disk_header;

typedef struct disk_field {
    char name[RD_NAME_MAX];
    uint32_t kind, offset, width;
    uint32_t transform; // version 2: RD_XFORM_LOG1P | RD_XFORM_STANDARDIZE; version 1: 0
    uint64_t vocab;
} disk_field;

typedef struct disk_xform {
    double mean, std; // RD_XFORM_STANDARDIZE: stored = (x - mean) / std; else 0, 1
} disk_xform;

_Static_assert(sizeof(disk_header) == 192, "header layout is part of the format");
_Static_assert(sizeof(disk_field) == 56, "field layout is part of the format");
_Static_assert(sizeof(disk_xform) == 16, "transform layout is part of the format");

static uint64_t round_up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

static uint32_t record_size_of(uint32_t n_slots, uint32_t n_numeric) {
    return (uint32_t)round_up(sizeof(rd_record) + 8ull * n_slots + 4ull * n_numeric, 8);
}

static uint32_t header_size_of(uint32_t version, uint32_t n_fields, uint32_t n_windows) {
    return (uint32_t)round_up(sizeof(disk_header) + sizeof(disk_field) * n_fields +
                                  8ull * (n_windows + 1) +
                                  (version >= 2 ? sizeof(disk_xform) * n_fields : 0),
                              64);
}

float rd_field_transform(uint32_t transform, double mean, double std, double x) {
    if (transform & RD_XFORM_LOG1P)
        x = log1p(x > 0 ? x : 0);
    float v = (float)x;
    if (transform & RD_XFORM_STANDARDIZE)
        v = (float)(((double)v - mean) / std);
    return v;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

int rd__layout_add(rd__layout *lay, const char *name, int kind, uint32_t width) {
    if (lay->n_fields >= RD_MAX_FIELDS)
        return -1;
    rd_dataset_field *f = &lay->fields[lay->n_fields];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->kind = kind;
    if (rd_field_is_float(kind)) {
        f->offset = lay->n_numeric;
        f->width = 1;
        lay->n_numeric++;
    } else {
        f->offset = lay->n_slots;
        f->width = width;
        lay->n_slots += width;
    }
    return lay->n_fields++;
}

void rd__yaml_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 32 || *p == 127)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int rd__u64map_init(rd__u64map *m, uint64_t cap_hint) {
    uint64_t cap = 16;
    while (cap < 2 * cap_hint)
        cap *= 2;
    m->keys = rd_calloc(cap, sizeof *m->keys);
    m->vals = rd_malloc(cap * sizeof *m->vals);
    m->cap = cap;
    m->n = 0;
    if (!m->keys || !m->vals) {
        rd__u64map_free(m);
        return RD_ERR_NOMEM;
    }
    return RD_OK;
}

void rd__u64map_free(rd__u64map *m) {
    rd_free(m->keys);
    rd_free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->n = 0;
}

static int u64map_grow(rd__u64map *m) {
    rd__u64map nm;
    if (rd__u64map_init(&nm, m->cap) != RD_OK) // cap_hint = old cap -> doubles
        return RD_ERR_NOMEM;
    for (uint64_t i = 0; i < m->cap; i++) {
        uint64_t k = m->keys[i];
        if (!k)
            continue;
        uint64_t j = rd_mix64(k) & (nm.cap - 1);
        while (nm.keys[j])
            j = (j + 1) & (nm.cap - 1);
        nm.keys[j] = k;
        nm.vals[j] = m->vals[i];
    }
    nm.n = m->n;
    rd__u64map_free(m);
    *m = nm;
    return RD_OK;
}

uint32_t *rd__u64map_put(rd__u64map *m, uint64_t key, uint32_t val_if_new, int *inserted) {
    RD_ASSERT(key != 0);
    *inserted = 0;
    uint64_t j = rd_mix64(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == key)
            return &m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    if (2 * (m->n + 1) > m->cap) {
        if (u64map_grow(m) != RD_OK)
            return NULL;
        j = rd_mix64(key) & (m->cap - 1);
        while (m->keys[j])
            j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = key;
    m->vals[j] = val_if_new;
    m->n++;
    *inserted = 1;
    return &m->vals[j];
}

uint32_t *rd__u64map_get(const rd__u64map *m, uint64_t key) {
    if (!key || !m->cap)
        return NULL;
    uint64_t j = rd_mix64(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == key)
            return &m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

// Drop the pages of map[off, off + len) from this process (whole pages inside the range only).
// For a shared file mapping this only unmaps: the data, dirty or not, stays in the page cache and
// reaches the file. It keeps the resident set of a pass over a large file small.
static void drop_pages(const uint8_t *map, uint64_t off, uint64_t len) {
    uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t a = round_up(off, pg), b = (off + len) / pg * pg;
    if (b > a)
        madvise((void *)(uintptr_t)(map + a), (size_t)(b - a), MADV_DONTNEED);
}

#define PASS_CHUNK ((uint64_t)32 << 20) // bytes per step of the sequential passes

static uint32_t crc_pass(uint32_t crc, const uint8_t *map, uint64_t off, uint64_t len) {
    for (uint64_t done = 0; done < len;) {
        uint64_t k = len - done < PASS_CHUNK ? len - done : PASS_CHUNK;
        crc = rd_crc32c(crc, map + off + done, (size_t)k);
        drop_pages(map, off + done, k);
        done += k;
    }
    return crc;
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

// Parent folder of `path` into `out` ("." if none).
static void parent_of(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

// What is at `path`: 0 nothing, 1 a dataset folder (only events.bin / meta.yaml inside, and
// events.bin present), 2 something else (name of an offending entry in `why`).
static int classify_dir(const char *path, char *why, size_t wn) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, wn, "it is not a folder");
        return 2;
    }
    DIR *d = opendir(path);
    if (!d) {
        snprintf(why, wn, "it cannot be listed: %s", strerror(errno));
        return 2;
    }
    int has_events = 0, other = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strcmp(de->d_name, RD_DATASET_FILE) == 0)
            has_events = 1;
        else if (strcmp(de->d_name, RD_DATASET_META) != 0 &&
                 strcmp(de->d_name, RD_DATASET_IDS) != 0 &&
                 strcmp(de->d_name, RD_DATASET_LINES) != 0 && !other) {
            other = 1;
            snprintf(why, wn, "it holds '%s'", de->d_name);
        }
    }
    closedir(d);
    if (other)
        return 2;
    if (!has_events) {
        snprintf(why, wn, "it holds no %s", RD_DATASET_FILE);
        return 2;
    }
    return 1;
}

// Remove a folder holding only the dataset's own files (never anything else).
static void remove_dataset_dir(const char *path) {
    char f[RD_PATH_MAX * 2 + 32];
    snprintf(f, sizeof f, "%s/%s", path, RD_DATASET_FILE);
    unlink(f);
    snprintf(f, sizeof f, "%s/%s", path, RD_DATASET_META);
    unlink(f);
    snprintf(f, sizeof f, "%s/%s", path, RD_DATASET_IDS);
    unlink(f);
    snprintf(f, sizeof f, "%s/%s", path, RD_DATASET_LINES);
    unlink(f);
    rmdir(path);
}

// Remove the temporary folders that earlier builds of `dir` left beside it when they were
// killed without a chance to clean up (SIGKILL, a crash, a node failure): "<dir>.tmp-<pid>.<host>"
// of THIS host whose process no longer runs (kill(pid, 0) says ESRCH), as rd_lmdbx_mkdir_partial
// does for its ".partial" folders. Another host's (a shared file system), a running process's,
// a reused pid's and anything named otherwise are left alone, and only the dataset's own files
// are removed (remove_dataset_dir): a folder holding anything else stays.
static void remove_stale_tmps(const char *dir, const char *host) {
    const char *base = strrchr(dir, '/');
    char parent[RD_PATH_MAX];
    if (base)
        snprintf(parent, sizeof parent, "%.*s", (int)(base > dir ? base - dir : 1), dir);
    else
        snprintf(parent, sizeof parent, ".");
    base = base ? base + 1 : dir;
    char prefix[RD_PATH_MAX + 8];
    int pl = snprintf(prefix, sizeof prefix, "%s.tmp-", base);
    if (pl <= 0 || (size_t)pl >= sizeof prefix)
        return;
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)pl) != 0)
            continue;
        const char *p = e->d_name + pl;
        char *end = NULL;
        long pid = strtol(p, &end, 10);
        if (end == p || *p == '-' || *p == '+' || *end != '.' || strcmp(end + 1, host) != 0 ||
            !rd_lmdbx_pid_gone(pid))
            continue;
        char path[RD_PATH_MAX * 2];
        if (snprintf(path, sizeof path, "%s/%s", parent, e->d_name) >= (int)sizeof path)
            continue;
        remove_dataset_dir(path);
        if (access(path, F_OK) == 0)
            RD_LOG_WARN("left %s: temporary dataset folder of process %ld of this host, which no "
                        "longer runs, but it holds more than the dataset's files",
                        path, pid);
        else
            RD_LOG_WARN("removed %s: temporary dataset folder of process %ld of this host, which "
                        "no longer runs",
                        path, pid);
    }
    closedir(d);
}

// ---------------------------------------------------------------------------------------------
// Builder

struct rd__builder {
    rd__layout lay;
    rd_split_config split;
    char dir[RD_PATH_MAX];
    char tmp[RD_PATH_MAX + 64]; // "<dir>.tmp-<pid>.<host>"
    char events_path[RD_PATH_MAX + 96];
    int fd;
    int have_tmp;
    int finished;
    uint32_t record_size, header_size;
    uint8_t *rec;  // scratch record
    uint8_t *wbuf; // write buffer
    size_t wlen, wcap;
    size_t crc_skip; // placeholder header bytes at the start of the first buffer
    uint32_t records_crc;
    uint64_t n, n_pos, raw, raw_pos;
    int64_t ts_min, ts_max;
    double neg_rate, pos_rate;
    uint64_t ns_seed;  // negative-sampling hash seed
    uint64_t cfg_hash; // rd_dataset_config_hash of the config it is built from
    rd__u64map users, items;
    rd__u64map vocab[RD_MAX_FIELDS];
    uint64_t *user_count; // events per dense user
    uint64_t user_cap;
    // fields[].standardize: which layout fields, and the mean and std applied (finish)
    int stdz[RD_MAX_FIELDS];
    double stdz_mean[RD_MAX_FIELDS], stdz_sd[RD_MAX_FIELDS];
    uint64_t stdz_n; // events the statistics are over (the batch period)
    // fields[].missing: mean: the fill, the values filled and the present values it is over
    double fill_val[RD_MAX_FIELDS];
    uint64_t fill_n[RD_MAX_FIELDS], fill_over[RD_MAX_FIELDS];
    // The source's locator of a record's input line (rd__builder_set_where), or NULL.
    rd__builder_where_fn where;
    void *where_ctx;
};

void rd__builder_set_where(rd__builder *b, rd__builder_where_fn where, void *ctx) {
    b->where = where;
    b->where_ctx = ctx;
}

int rd__builder_create(const rd_data_config *dc,
                       const rd__layout *lay,
                       uint64_t seed,
                       rd__builder **out,
                       rd_errbuf *eb) {
    *out = NULL;
    if (!dc->dir[0])
        return rd_err_set(eb, RD_ERR_CONFIG, "data.dir: the dataset folder is not set");
    if (strlen(dc->dir) > RD_DATA_DIR_MAX)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "data.dir %s: %zu bytes, longer than the limit of %d bytes, which "
                          "leaves room for the temporary folder %s.tmp-<pid>.<host> the dataset "
                          "is built in",
                          dc->dir, strlen(dc->dir), RD_DATA_DIR_MAX, dc->dir);
    const rd_split_config *sp = &dc->split;
    if (!(sp->batch_fraction > 0 && sp->batch_fraction < 1) || !(sp->holdout_fraction >= 0) ||
        sp->batch_fraction + sp->holdout_fraction >= 1 || sp->stream_windows < 1 ||
        sp->stream_windows > 10000)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "data.split: need 0 < batch_fraction, 0 <= holdout_fraction, sum < 1, "
                          "1 <= stream_windows <= 10000 (got %g, %g, %d)",
                          sp->batch_fraction, sp->holdout_fraction, sp->stream_windows);
    const rd_negsample_config *ng = &dc->negatives;
    if (!(ng->rate > 0 && ng->rate <= 1) || !(ng->pos_rate > 0 && ng->pos_rate <= 1))
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "data.negatives: rate and pos_rate must be in (0, 1] (got %g, %g)",
                          ng->rate, ng->pos_rate);
    char why[300];
    if (classify_dir(dc->dir, why, sizeof why) == 2)
        return rd_err_set(eb, RD_ERR_EXISTS,
                          "data.dir %s exists and is not a dataset folder (%s); remove it or "
                          "choose another data.dir",
                          dc->dir, why);

    rd__builder *b = rd_calloc(1, sizeof *b);
    if (!b)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    int rc = RD_OK;
    b->fd = -1;
    b->lay = *lay;
    b->split = *sp;
    b->neg_rate = ng->rate;
    b->pos_rate = ng->pos_rate;
    b->ns_seed = rd_mix64(seed ^ 0x6e65675f73616d70ULL);
    b->cfg_hash = rd_dataset_config_hash(dc, seed);
    for (int f = 0; f < lay->n_fields; f++) {
        b->stdz[f] = lay->fields[f].kind == RD_FIELD_NUMERIC &&
                     (lay->fields[f].transform & RD_XFORM_STANDARDIZE);
        b->lay.fields[f].mean = 0;
        b->lay.fields[f].std = 1;
    }
    snprintf(b->dir, sizeof b->dir, "%s", dc->dir);
    size_t dl = strlen(b->dir);
    while (dl > 1 && b->dir[dl - 1] == '/')
        b->dir[--dl] = '\0';
    char host[48];
    rd_lmdbx_host_tag(host, sizeof host);
    snprintf(b->tmp, sizeof b->tmp, "%s.tmp-%ld.%s", b->dir, (long)getpid(), host);
    snprintf(b->events_path, sizeof b->events_path, "%s/%s", b->tmp, RD_DATASET_FILE);
    b->record_size = record_size_of(lay->n_slots, lay->n_numeric);
    b->header_size =
        header_size_of(RD_DATASET_VERSION, (uint32_t)lay->n_fields, (uint32_t)sp->stream_windows);
    b->wcap = (size_t)4 << 20;
    b->rec = rd_calloc(1, b->record_size);
    b->wbuf = rd_malloc(b->wcap);
    b->user_cap = 1024;
    b->user_count = rd_calloc(b->user_cap, sizeof *b->user_count);
    if (!b->rec || !b->wbuf || !b->user_count || rd__u64map_init(&b->users, 1024) != RD_OK ||
        rd__u64map_init(&b->items, 1024) != RD_OK) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        goto fn_fail;
    }
    for (int f = 0; f < lay->n_fields; f++)
        if (!rd_field_is_float(lay->fields[f].kind) && rd__u64map_init(&b->vocab[f], 64) != RD_OK) {
            rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
            goto fn_fail;
        }

    char parent[RD_PATH_MAX];
    parent_of(b->dir, parent, sizeof parent);
    if ((rc = rd_lmdbx_mkdir_p(parent, eb)) != RD_OK)
        goto fn_fail;
    remove_stale_tmps(b->dir, host);
    // A SIGTERM (scancel, a Slurm time limit), SIGINT or SIGHUP removes it (rd/lmdbx.h):
    // registered before the mkdir, as a signal between the two left the folder behind.
    (void)rd_lmdbx_pending_add(b->tmp);
    if (mkdir(b->tmp, 0777) != 0) {
        // A leftover of an earlier process with our pid: remove it if it is only ours.
        if (errno == EEXIST && classify_dir(b->tmp, why, sizeof why) == 1) {
            remove_dataset_dir(b->tmp);
            if (mkdir(b->tmp, 0777) == 0)
                goto made;
        }
        int e = errno;
        rd_lmdbx_pending_forget(b->tmp); // not ours to remove
        rc = rd_err_set(eb, RD_ERR_IO, "cannot create folder %s: %s", b->tmp, strerror(e));
        goto fn_fail;
    }
made:
    b->have_tmp = 1;
    b->fd = open(b->events_path, O_RDWR | O_CREAT | O_TRUNC, 0666);
    if (b->fd < 0) {
        rc = rd_err_set(eb, RD_ERR_IO, "cannot create %s: %s", b->events_path, strerror(errno));
        goto fn_fail;
    }
    // Placeholder header; the real one is written by finish.
    memset(b->wbuf, 0, b->header_size);
    b->wlen = b->header_size;
    b->crc_skip = b->header_size;
    b->ts_min = INT64_MAX;
    b->ts_max = INT64_MIN;
    *out = b;
    return RD_OK;
fn_fail:
    rd__builder_destroy(b);
    return rc;
}

// Write the buffer out; the record CRC covers everything but the placeholder header.
static int flush_buf(rd__builder *b, rd_errbuf *eb) {
    if (b->wlen == 0)
        return RD_OK;
    b->records_crc = rd_crc32c(b->records_crc, b->wbuf + b->crc_skip, b->wlen - b->crc_skip);
    b->crc_skip = 0;
    if (write_all(b->fd, b->wbuf, b->wlen) != 0)
        return rd_err_set(eb, RD_ERR_IO, "cannot write %s: %s", b->events_path, strerror(errno));
    b->wlen = 0;
    return RD_OK;
}

uint64_t rd__builder_count(const rd__builder *b) {
    return b->n;
}

uint64_t rd__builder_raw_count(const rd__builder *b) {
    return b->raw;
}

int rd__builder_add(rd__builder *b, const rd__event *ev, rd_errbuf *eb) {
    RD_ASSERT(!b->finished);
    RD_ASSERT(ev->label == 0.0f || ev->label == 1.0f);
    RD_ASSERT(b->n == 0 || ev->ts >= b->ts_max); // sources feed events in time order
    int pos = ev->label > 0.5f;
    b->raw++;
    b->raw_pos += (uint64_t)pos;
    double rate = pos ? b->pos_rate : b->neg_rate;
    if (rate < 1.0) {
        uint64_t h = rd_mix64(b->ns_seed ^ rd_mix64(ev->sample));
        double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
        if (u >= rate)
            return RD_OK;
    }
    int ins = 0;
    uint32_t *uidx = rd__u64map_put(&b->users, ev->user_key, (uint32_t)b->users.n, &ins);
    if (!uidx)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory (users)");
    if (ins && b->users.n >= UINT32_MAX)
        return rd_err_set(eb, RD_ERR_RANGE, "more than %u distinct users", UINT32_MAX - 1);
    uint32_t u = *uidx;
    uint32_t *iidx = rd__u64map_put(&b->items, ev->item_key, (uint32_t)b->items.n, &ins);
    if (!iidx)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory (items)");
    if (ins && b->items.n >= UINT32_MAX)
        return rd_err_set(eb, RD_ERR_RANGE, "more than %u distinct items", UINT32_MAX - 1);
    if (u >= b->user_cap) {
        uint64_t nc = b->user_cap * 2;
        uint64_t *ncnt = rd_realloc(b->user_count, nc * sizeof *ncnt);
        if (!ncnt)
            return rd_err_set(eb, RD_ERR_NOMEM, "out of memory (users)");
        memset(ncnt + b->user_cap, 0, (nc - b->user_cap) * sizeof *ncnt);
        b->user_count = ncnt;
        b->user_cap = nc;
    }
    b->user_count[u]++;

    rd_record *r = (rd_record *)b->rec;
    memset(b->rec, 0, b->record_size);
    r->id = b->n;
    r->ts = ev->ts;
    r->user = u;
    r->item = *iidx;
    r->label = ev->label;
    r->weight = (float)(1.0 / rate);
    r->user_key = ev->user_key;
    r->item_key = ev->item_key;
    uint64_t *keys = (uint64_t *)(b->rec + sizeof(rd_record));
    float *nums = (float *)(keys + b->lay.n_slots);
    if (b->lay.n_slots)
        memcpy(keys, ev->keys, 8ull * b->lay.n_slots);
    if (b->lay.n_numeric)
        memcpy(nums, ev->nums, 4ull * b->lay.n_numeric);
    for (int f = 0; f < b->lay.n_fields; f++) {
        const rd_dataset_field *fd = &b->lay.fields[f];
        if (rd_field_is_float(fd->kind))
            continue;
        for (uint32_t s = 0; s < fd->width; s++) {
            uint64_t k = keys[fd->offset + s];
            if (k && !rd__u64map_put(&b->vocab[f], k, 0, &ins))
                return rd_err_set(eb, RD_ERR_NOMEM, "out of memory (vocabulary of %s)", fd->name);
        }
    }
    if (b->wlen + b->record_size > b->wcap) {
        int rc = flush_buf(b, eb);
        if (rc != RD_OK)
            return rc;
    }
    memcpy(b->wbuf + b->wlen, b->rec, b->record_size);
    b->wlen += b->record_size;
    if (b->n == 0)
        b->ts_min = ev->ts;
    b->ts_max = ev->ts;
    b->n++;
    b->n_pos += (uint64_t)pos;
    return RD_OK;
}

// Split boundaries (see rd/dataset.h): wb[0] = b, wb[K] = h.
static void compute_splits(uint64_t n, const rd_split_config *sp, uint64_t *wb) {
    uint64_t K = (uint64_t)sp->stream_windows;
    double bd = llround((double)n * sp->batch_fraction);
    double hd = llround((double)n * sp->holdout_fraction);
    uint64_t b = bd < 0 ? 0 : (uint64_t)bd;
    uint64_t hc = hd < 0 ? 0 : (uint64_t)hd;
    if (b > n)
        b = n;
    uint64_t h = hc > n ? 0 : n - hc;
    if (h < b)
        h = b;
    for (uint64_t w = 0; w <= K; w++)
        wb[w] = b + (h - b) * w / K;
}

static const char *kind_name(int kind) {
    switch (kind) {
        case RD_FIELD_CATEGORICAL:
            return "categorical";
        case RD_FIELD_MULTI:
            return "multi";
        case RD_FIELD_NUMERIC:
            return "numeric";
        case RD_FIELD_FEEDBACK:
            return "feedback";
        default:
            return "?";
    }
}

static const char *source_name(int s) {
    switch (s) {
        case RD_DATA_SYNTHETIC:
            return "synthetic";
        case RD_DATA_MOVIELENS100K:
            return "movielens100k";
        case RD_DATA_MOVIELENS1M:
            return "movielens1m";
        case RD_DATA_CSV:
            return "csv";
        default:
            return "?";
    }
}

static void yaml_range(FILE *f,
                       const char *indent,
                       const char *name,
                       uint64_t beg,
                       uint64_t end,
                       const uint8_t *recs,
                       uint32_t rs) {
    fprintf(f, "%s%s: {begin: %llu, end: %llu, events: %llu", indent, name, (unsigned long long)beg,
            (unsigned long long)end, (unsigned long long)(end - beg));
    if (end > beg) {
        const rd_record *r0 = (const rd_record *)(recs + beg * rs);
        const rd_record *r1 = (const rd_record *)(recs + (end - 1) * rs);
        fprintf(f, ", ts_first: %lld, ts_last: %lld", (long long)r0->ts, (long long)r1->ts);
    }
    fprintf(f, "}\n");
}

static int write_meta(rd__builder *b,
                      const disk_header *h,
                      const uint64_t *wb,
                      const uint8_t *recs,
                      const char *source_yaml,
                      rd_errbuf *eb) {
    char path[sizeof b->tmp + 16];
    snprintf(path, sizeof path, "%s/%s", b->tmp, RD_DATASET_META);
    FILE *f = fopen(path, "w");
    if (!f)
        return rd_err_set(eb, RD_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    char t0[40], t1[40];
    rd_fmt_utc(h->ts_min, t0, sizeof t0);
    rd_fmt_utc(h->ts_max, t1, sizeof t1);
    uint32_t rs = h->record_size;
    fprintf(f, "# recdistill dataset, written by `recdistill prepare`. events.bin holds the "
               "records;\n# this file describes them (see include/rd/dataset.h).\n");
    fprintf(f,
            "format: {file: %s, magic: \"RDDSET\\r\\n\", version: %u, bytes: %llu, "
            "header_size: %u, header_crc32c: 0x%08x, records_crc32c: 0x%08x, "
            "index_crc32c: 0x%08x}\n",
            RD_DATASET_FILE, h->version, (unsigned long long)h->file_size, h->header_size,
            h->header_crc, h->records_crc, h->index_crc);
    fprintf(f, "source: %s\n", source_name(h->source));
    fprintf(f,
            "%s0x%016llx   # of the data config and seeds it was built from "
            "(rd_dataset_check_config)\n",
            CFG_HASH_KEY, (unsigned long long)b->cfg_hash);
    fprintf(f, "events: %llu\nusers: %llu\nitems: %llu\npositives: %llu\nlabel_rate: %.6f\n",
            (unsigned long long)h->n_events, (unsigned long long)h->n_users,
            (unsigned long long)h->n_items, (unsigned long long)h->n_positives,
            (double)h->n_positives / (double)h->n_events);
    fprintf(f, "time: {min: %lld, max: %lld, min_utc: \"%s\", max_utc: \"%s\"}\n",
            (long long)h->ts_min, (long long)h->ts_max, t0, t1);
    fprintf(f,
            "negatives:\n  rate: %.17g          # q_-: fraction of negatives kept\n"
            "  pos_rate: %.17g      # q_+: fraction of positives kept\n"
            "  events_before: %llu\n  positives_before: %llu\n  negatives_before: %llu\n"
            "  positives_kept: %llu\n  negatives_kept: %llu\n",
            h->neg_rate, h->pos_rate, (unsigned long long)h->raw_events,
            (unsigned long long)h->raw_positives,
            (unsigned long long)(h->raw_events - h->raw_positives),
            (unsigned long long)h->n_positives, (unsigned long long)(h->n_events - h->n_positives));
    fprintf(f,
            "layout:\n  record_size: %u\n  prefix: [id u64 @0, ts i64 @8, user u32 @16, "
            "item u32 @20, label f32 @24, weight f32 @28, user_key u64 @32, item_key u64 "
            "@40]\n  slots: %u                # uint64 keys at byte %zu\n"
            "  numeric: %u              # float32 at byte %zu\n",
            rs, h->n_slots, sizeof(rd_record), h->n_numeric,
            sizeof(rd_record) + 8 * (size_t)h->n_slots);
    fprintf(f, "fields:\n");
    if (b->lay.n_fields == 0)
        fprintf(f, "  []\n");
    for (int i = 0; i < b->lay.n_fields; i++) {
        const rd_dataset_field *fd = &b->lay.fields[i];
        fprintf(f, "  - {name: ");
        rd__yaml_str(f, fd->name);
        fprintf(f, ", kind: %s, %s: %u, width: %u, vocab: %llu", kind_name(fd->kind),
                rd_field_is_float(fd->kind) ? "index" : "slot", fd->offset, fd->width,
                (unsigned long long)fd->vocab);
        if (fd->transform & RD_XFORM_LOG1P)
            fprintf(f, ", log1p: true");
        if (b->stdz[i])
            fprintf(f, ", standardized: {mean: %.17g, std: %.17g, over_events: %llu}",
                    b->stdz_mean[i], b->stdz_sd[i], (unsigned long long)b->stdz_n);
        if (b->lay.fill_mean[i])
            fprintf(f, ", missing_mean: {value: %.17g, filled: %llu, over_values: %llu}",
                    b->fill_val[i], (unsigned long long)b->fill_n[i],
                    (unsigned long long)b->fill_over[i]);
        fprintf(f, "}\n");
    }
    fprintf(f, "vocab:\n  user: %llu\n  item: %llu\n", (unsigned long long)h->n_users,
            (unsigned long long)h->n_items);
    for (int i = 0; i < b->lay.n_fields; i++)
        if (!rd_field_is_float(b->lay.fields[i].kind))
            fprintf(f, "  %s: %llu\n", b->lay.fields[i].name,
                    (unsigned long long)b->lay.fields[i].vocab);
    fprintf(f,
            "split:\n  batch_fraction: %.17g\n  holdout_fraction: %.17g\n"
            "  stream_windows: %u\n",
            b->split.batch_fraction, b->split.holdout_fraction, h->n_windows);
    yaml_range(f, "  ", "batch", 0, wb[0], recs, rs);
    fprintf(f, "  stream:\n");
    for (uint32_t w = 0; w < h->n_windows; w++) {
        char nm[32];
        snprintf(nm, sizeof nm, "- w%u", w);
        yaml_range(f, "    ", nm, wb[w], wb[w + 1], recs, rs);
    }
    yaml_range(f, "  ", "holdout", wb[h->n_windows], h->n_events, recs, rs);
    if (source_yaml)
        fputs(source_yaml, f);
    int bad = ferror(f) != 0;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad)
        return rd_err_set(eb, RD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return RD_OK;
}

// Put the finished temporary folder at b->dir: a plain rename when nothing is there, an atomic
// exchange (renameat2 RENAME_EXCHANGE) with an old dataset folder otherwise.
static int install(rd__builder *b, rd_errbuf *eb) {
    char why[300];
    int what = classify_dir(b->dir, why, sizeof why);
    if (what == 2)
        return rd_err_set(eb, RD_ERR_EXISTS, "data.dir %s exists and is not a dataset folder (%s)",
                          b->dir, why);
    if (what == 0) {
        if (rename(b->tmp, b->dir) != 0)
            return rd_err_set(eb, RD_ERR_IO, "cannot rename %s to %s: %s", b->tmp, b->dir,
                              strerror(errno));
    } else {
        int rc = -1;
#if defined(SYS_renameat2)
        rc = (int)syscall(SYS_renameat2, AT_FDCWD, b->tmp, AT_FDCWD, b->dir, 2 /*EXCHANGE*/);
#endif
        if (rc == 0) {
            remove_dataset_dir(b->tmp); // the old dataset now lives under the temporary name
        } else {
            // No exchange on this file system: move the old one aside, then rename.
            char old[RD_PATH_MAX + 48];
            snprintf(old, sizeof old, "%s.old-%ld", b->dir, (long)getpid());
            if (rename(b->dir, old) != 0)
                return rd_err_set(eb, RD_ERR_IO, "cannot move %s aside: %s", b->dir,
                                  strerror(errno));
            if (rename(b->tmp, b->dir) != 0) {
                int e = errno;
                if (rename(old, b->dir) != 0)
                    RD_LOG_ERROR("could not restore %s from %s", b->dir, old);
                return rd_err_set(eb, RD_ERR_IO, "cannot rename %s to %s: %s", b->tmp, b->dir,
                                  strerror(e));
            }
            remove_dataset_dir(old);
        }
    }
    b->have_tmp = 0;
    rd_lmdbx_pending_forget(b->tmp);
    char parent[RD_PATH_MAX];
    parent_of(b->dir, parent, sizeof parent);
    if (fsync_path(parent) != 0)
        RD_LOG_WARN("fsync of folder %s failed: %s", parent, strerror(errno));
    return RD_OK;
}

// fields[].missing: mean: the mean of each such field's present (non-NaN) values over the batch
// period's records replaces its missing ones (NaN, as the source stored them) in every record,
// so the stream and holdout are filled with what training saw and nothing of the later periods
// leaks into the fill. No present value in the batch period gives 0. Then every float of every
// record must be finite: a non-finite value never reaches the dataset. The record CRC is
// recomputed when a value changed.
static int fill_missing(rd__builder *b, uint8_t *recs, uint64_t n, rd_errbuf *eb) {
    const size_t rs = b->record_size, noff = sizeof(rd_record) + 8 * (size_t)b->lay.n_slots;
    uint64_t nb = n;
    int any = 0;
    for (int f = 0; f < b->lay.n_fields; f++)
        any |= b->lay.fill_mean[f] && rd_field_is_float(b->lay.fields[f].kind);
    if (any) {
        uint64_t *wb = rd_malloc(((size_t)b->split.stream_windows + 1) * sizeof *wb);
        if (!wb)
            return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        compute_splits(n, &b->split, wb);
        nb = wb[0];
        rd_free(wb);
    }
    int changed = 0;
    for (int f = 0; f < b->lay.n_fields; f++) {
        const rd_dataset_field *fd = &b->lay.fields[f];
        if (!rd_field_is_float(fd->kind))
            continue;
        const size_t off = noff + 4 * (size_t)fd->offset;
        int fill = b->lay.fill_mean[f];
        double sum = 0;
        uint64_t over = 0;
        for (uint64_t i = 0; fill && i < nb; i++) {
            float x;
            memcpy(&x, recs + i * rs + off, 4);
            if (!isnan(x)) {
                sum += (double)x;
                over++;
            }
        }
        float m = over ? (float)(sum / (double)over) : 0.0f;
        b->fill_val[f] = (double)m;
        b->fill_over[f] = over;
        for (uint64_t i = 0; i < n; i++) {
            float x;
            memcpy(&x, recs + i * rs + off, 4);
            if (fill && isnan(x)) {
                memcpy(recs + i * rs + off, &m, 4);
                b->fill_n[f]++;
                changed = 1;
            } else if (!isfinite(x)) {
                rd_record r;
                memcpy(&r, recs + i * rs, sizeof r);
                char when[32];
                rd_fmt_utc(r.ts, when, sizeof when);
                return rd_err_set(eb, RD_ERR_RANGE,
                                  "field '%s': the value of the event at %s (record %llu of the "
                                  "log in time order) is not finite",
                                  fd->name, when, (unsigned long long)i);
            }
        }
        if (fill)
            RD_LOG_INFO("field '%s': %llu missing values filled with %g, the mean of its %llu "
                        "present values in the batch period",
                        fd->name, (unsigned long long)b->fill_n[f], (double)m,
                        (unsigned long long)over);
    }
    if (changed)
        b->records_crc = rd_crc32c(0, recs, (size_t)(n * rs));
    return RD_OK;
}

// A standardized value of the stream or holdout beyond this magnitude is warned about (the
// threshold of prepare's warning on raw numeric fields).
#define RD_DATASET_Z_WARN 1000.0

// fields[].standardize: the mean and (population) standard deviation of each such field over the
// batch period's records (the split of the events kept), then every record's value replaced by
// (x - mean) / std, the stream and holdout with the batch period's figures (nothing of the later
// periods leaks into what the models see). A constant field (std not above 1e-12 of its largest
// magnitude) or an empty batch period keeps std 1. The record CRC is recomputed over the rewritten
// records.
static int standardize(rd__builder *b, uint8_t *recs, uint64_t n, rd_errbuf *eb) {
    int any = 0;
    for (int f = 0; f < b->lay.n_fields; f++)
        any |= b->stdz[f];
    if (!any)
        return RD_OK;
    uint64_t *wb = rd_malloc(((size_t)b->split.stream_windows + 1) * sizeof *wb);
    if (!wb)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    compute_splits(n, &b->split, wb);
    uint64_t nb = wb[0];
    rd_free(wb);
    const size_t rs = b->record_size, noff = sizeof(rd_record) + 8 * (size_t)b->lay.n_slots;
    b->stdz_n = nb;
    for (int f = 0; f < b->lay.n_fields; f++) {
        if (!b->stdz[f])
            continue;
        const size_t off = noff + 4 * (size_t)b->lay.fields[f].offset;
        double sum = 0, mean = 0, ss = 0, amax = 0;
        for (uint64_t i = 0; i < nb; i++) {
            float x;
            memcpy(&x, recs + i * rs + off, 4);
            sum += (double)x;
        }
        mean = nb ? sum / (double)nb : 0.0;
        for (uint64_t i = 0; i < nb; i++) {
            float x;
            memcpy(&x, recs + i * rs + off, 4);
            ss += ((double)x - mean) * ((double)x - mean);
            amax = fmax(amax, fabs((double)x));
        }
        double sd = nb ? sqrt(ss / (double)nb) : 1.0;
        // Constant: no spread beyond rounding of its own magnitude (relative, so that a field of
        // real variation at a tiny scale, 1e-30, is standardized too).
        const int constant = !(sd > 1e-12 * amax);
        if (constant)
            sd = 1.0;
        b->stdz_mean[f] = mean;
        b->stdz_sd[f] = sd;
        b->lay.fields[f].mean = mean;
        b->lay.fields[f].std = sd;
        uint64_t far_i = 0; // the later event standardized farthest from 0
        double far_z = 0.0;
        for (uint64_t i = 0; i < n; i++) {
            float x;
            memcpy(&x, recs + i * rs + off, 4);
            float z = rd_field_transform(RD_XFORM_STANDARDIZE, mean, sd, (double)x);
            if (i >= nb && fabs((double)z) > far_z) {
                far_z = fabs((double)z);
                far_i = i;
            }
            if (!isfinite(z)) {
                // The builder does not keep the records' input lines (its memory does not grow
                // with the events); a source that does (the CSV log, held for its sort) names
                // the file and line through `where`. The time and value find it in any case.
                rd_record r;
                memcpy(&r, recs + i * rs, sizeof r);
                char when[32], at[3 * RD_PATH_MAX + 96];
                rd_fmt_utc(r.ts, when, sizeof when);
                at[0] = '\0';
                if (b->where && b->where(b->where_ctx, i, f, at, sizeof at - 2) == 0)
                    strcat(at, ": ");
                else
                    at[0] = '\0';
                return rd_err_set(eb, RD_ERR_RANGE,
                                  "%sfield '%s': the event at %s (record %llu of the log in time "
                                  "order) has %g, which standardized with the batch period's "
                                  "mean %g and std %g is not finite: the batch period's spread "
                                  "is too small for this value (rescale the column, or set "
                                  "log1p: true)",
                                  at, b->lay.fields[f].name, when, (unsigned long long)i, (double)x,
                                  mean, sd);
            }
            memcpy(recs + i * rs + off, &z, 4);
        }
        // A batch period that barely varies (or not at all: std 1 then) against later values
        // far from it: the models trained on inputs within a few units and meet these in the
        // stream or holdout. A constant 5.0 before values up to 1e6 stopped training at the
        // first stream step with "lower the learning rate". Finite, so legal: say so here.
        if (far_z > RD_DATASET_Z_WARN) {
            rd_record r;
            memcpy(&r, recs + far_i * rs, sizeof r);
            char when[32];
            rd_fmt_utc(r.ts, when, sizeof when);
            RD_LOG_WARN("field '%s': standardized with the batch period's mean %g and std %g%s, "
                        "a later event (at %s, record %llu in time order) standardizes to |z| = "
                        "%.3g: the "
                        "models train on values within a few units and this one saturates "
                        "them; the batch period does not cover the column's later range "
                        "(set log1p: true, rescale the column, or start the batch period where "
                        "it varies)",
                        b->lay.fields[f].name, mean, sd,
                        constant ? " (1: the batch period holds one value)" : "", when,
                        (unsigned long long)far_i, far_z);
        }
    }
    b->records_crc = rd_crc32c(0, recs, (size_t)(n * rs));
    return RD_OK;
}

// A batch period of one class (a log whose negatives were logged only from some date on, a
// label rule that holds for every early event) or of no events passed without a word: the
// models' batch epochs then learn a constant and the popularity baseline's item rates are all
// 0 or 1, while prepare printed only the whole log's label rate. Say so (it is legal: the
// stream windows train on both classes).
static void warn_batch_period(const rd__builder *b, const uint8_t *recs, uint64_t n) {
    uint64_t wb[2];
    rd_split_config one = b->split;
    one.stream_windows = 1; // wb[0], the batch period's end, does not depend on the windows
    compute_splits(n, &one, wb);
    if (wb[0] == 0) {
        RD_LOG_WARN("the batch period holds no events (data.split.batch_fraction %g of %llu "
                    "events): the models train on the stream windows only",
                    b->split.batch_fraction, (unsigned long long)n);
        return;
    }
    uint64_t pos = 0;
    for (uint64_t i = 0; i < wb[0]; i++) {
        rd_record r;
        memcpy(&r, recs + i * b->record_size, sizeof r);
        pos += r.label > 0.5f;
    }
    if (pos == 0 || pos == wb[0]) {
        char t[32];
        rd_record r;
        memcpy(&r, recs + (wb[0] - 1) * b->record_size, sizeof r);
        rd_fmt_utc(r.ts, t, sizeof t);
        RD_LOG_WARN("every event of the batch period (the first %llu of %llu, up to %s) has "
                    "label %d: its epochs train the models on one class, and the popularity "
                    "baseline's item rates are all %d; if the log lacks the other class before "
                    "some date (negatives logged only later), start it there",
                    (unsigned long long)wb[0], (unsigned long long)n, t, pos ? 1 : 0, pos ? 1 : 0);
    }
}

// A field that gives the label away trains every model to read it: the event type the label
// is derived from, a dwell time logged only for clicks, an add-to-cart flag declared as a feature
// instead of kind: feedback. Such a run ends with a holdout AUC near 1 and nothing said. Over the
// batch period, a group of events all of one class is warned about when it holds at least 1% of
// the events (and RD_LEAK_MIN of them) and chance would have put at least RD_LEAK_EXPECT events
// of the other class in it: one value of a categorical or multi field (or its empty value), or
// for a numeric field the values beyond every value of the other class, or its missing ones.
// Feedback fields are never model inputs, so they are not checked. One warning per field, for
// its largest such group; the first event of the group is named by its input line when the
// source knows it. Runs before the missing-value fill, so that a missing value is still NaN.
#define RD_LEAK_MIN    100
#define RD_LEAK_EXPECT 20.0

typedef struct leak_group {
    uint64_t n;     // events of the group (all of one class)
    int label;      // that class
    uint64_t first; // its first event (record index)
    char what[160]; // the group, for the message
} leak_group;

static int leak_pure(uint64_t n0, uint64_t n1, uint64_t nb, const uint64_t cls[2]) {
    const uint64_t n = n0 + n1;
    if ((n0 && n1) || n < RD_LEAK_MIN || n * 100 < nb)
        return -1;
    const int label = n1 ? 1 : 0;
    const double other = (double)cls[!label] / (double)nb;
    return (double)n * other >= RD_LEAK_EXPECT ? label : -1;
}

static void leak_keep(leak_group *best,
                      uint64_t n0,
                      uint64_t n1,
                      uint64_t nb,
                      const uint64_t cls[2],
                      uint64_t first,
                      const char *what) {
    const int label = leak_pure(n0, n1, nb, cls);
    if (label < 0 || n0 + n1 <= best->n)
        return;
    best->n = n0 + n1;
    best->label = label;
    best->first = first;
    snprintf(best->what, sizeof best->what, "%s", what);
}

static int rec_label(const uint8_t *rec) {
    rd_record r;
    memcpy(&r, rec, sizeof r);
    return r.label > 0.5f;
}

// A numeric field's groups: its missing values, and the values above (below) every value of the
// events of the other class.
static void leak_numeric(const rd__builder *b,
                         const uint8_t *recs,
                         uint64_t nb,
                         int f,
                         const uint64_t cls[2],
                         leak_group *best) {
    const size_t rs = b->record_size, noff = sizeof(rd_record) + 8 * (size_t)b->lay.n_slots;
    const size_t off = noff + 4 * (size_t)b->lay.fields[f].offset;
    double lo[2] = {(double)INFINITY, (double)INFINITY},
           hi[2] = {-(double)INFINITY, -(double)INFINITY};
    uint64_t nan_n[2] = {0, 0}, nan_first = UINT64_MAX;
    for (uint64_t i = 0; i < nb; i++) {
        float x;
        memcpy(&x, recs + i * rs + off, 4);
        const int y = rec_label(recs + i * rs);
        if (isnan(x)) {
            nan_n[y]++;
            if (nan_first == UINT64_MAX)
                nan_first = i;
            continue;
        }
        lo[y] = fmin(lo[y], (double)x);
        hi[y] = fmax(hi[y], (double)x);
    }
    leak_keep(best, nan_n[0], nan_n[1], nb, cls, nan_first, "is missing");
    // above[y]: events of class y above every value of the other class; below[y] likewise.
    uint64_t above[2] = {0, 0}, below[2] = {0, 0};
    uint64_t above_first[2] = {UINT64_MAX, UINT64_MAX}, below_first[2] = {UINT64_MAX, UINT64_MAX};
    for (uint64_t i = 0; i < nb; i++) {
        float x;
        memcpy(&x, recs + i * rs + off, 4);
        if (isnan(x))
            continue;
        const int y = rec_label(recs + i * rs);
        if (isfinite(hi[!y]) && (double)x > hi[!y] && above[y]++ == 0)
            above_first[y] = i;
        if (isfinite(lo[!y]) && (double)x < lo[!y] && below[y]++ == 0)
            below_first[y] = i;
    }
    const char *l1p = (b->lay.fields[f].transform & RD_XFORM_LOG1P) ? " (after log1p)" : "";
    for (int y = 0; y < 2; y++) {
        char what[160];
        snprintf(what, sizeof what, "is above %.9g%s, the largest value of the label-%d events",
                 hi[!y], l1p, !y);
        leak_keep(best, y ? 0 : above[0], y ? above[1] : 0, nb, cls, above_first[y], what);
        snprintf(what, sizeof what, "is below %.9g%s, the smallest value of the label-%d events",
                 lo[!y], l1p, !y);
        leak_keep(best, y ? 0 : below[0], y ? below[1] : 0, nb, cls, below_first[y], what);
    }
}

// A categorical or multi field's groups: each of its values, and its empty value (no key).
static int leak_keys(const rd__builder *b,
                     const uint8_t *recs,
                     uint64_t nb,
                     int f,
                     const uint64_t cls[2],
                     leak_group *best) {
    const rd_dataset_field *fd = &b->lay.fields[f];
    const size_t rs = b->record_size, koff = sizeof(rd_record) + 8 * (size_t)fd->offset;
    rd__u64map m;
    if (rd__u64map_init(&m, b->vocab[f].n) != RD_OK)
        return RD_ERR_NOMEM;
    const uint64_t nv = b->vocab[f].n + 1; // + the empty value, index 0
    uint64_t *cnt = rd_calloc(2 * nv, sizeof *cnt), *first = rd_malloc(nv * sizeof *first);
    if (!cnt || !first) {
        rd_free(cnt);
        rd_free(first);
        rd__u64map_free(&m);
        return RD_ERR_NOMEM;
    }
    for (uint64_t v = 0; v < nv; v++)
        first[v] = UINT64_MAX;
    int rc = RD_OK;
    for (uint64_t i = 0; i < nb && rc == RD_OK; i++) {
        const uint8_t *rec = recs + i * rs;
        const int y = rec_label(rec);
        int any = 0;
        for (uint32_t s = 0; s < fd->width; s++) {
            uint64_t k;
            memcpy(&k, rec + koff + 8 * s, 8);
            if (!k)
                continue;
            int ins;
            uint32_t *v = rd__u64map_put(&m, k, (uint32_t)(m.n + 1), &ins);
            if (!v || *v >= nv) { // out of memory, or a key the vocabulary did not count
                rc = v ? RD_OK : RD_ERR_NOMEM;
                goto done;
            }
            cnt[2 * *v + (uint64_t)y]++;
            if (first[*v] == UINT64_MAX)
                first[*v] = i;
            any = 1;
        }
        if (!any) {
            cnt[(uint64_t)y]++;
            if (first[0] == UINT64_MAX)
                first[0] = i;
        }
    }
    for (uint64_t v = 0; v < nv; v++)
        leak_keep(best, cnt[2 * v], cnt[2 * v + 1], nb, cls, first[v],
                  v ? "holds the value of this line" : "is empty");
done:
    rd_free(cnt);
    rd_free(first);
    rd__u64map_free(&m);
    return rc;
}

static void warn_label_fields(const rd__builder *b, const uint8_t *recs, uint64_t n) {
    uint64_t wb[2];
    rd_split_config one = b->split;
    one.stream_windows = 1;
    compute_splits(n, &one, wb);
    const uint64_t nb = wb[0];
    uint64_t cls[2] = {0, 0};
    for (uint64_t i = 0; i < nb; i++)
        cls[rec_label(recs + i * b->record_size)]++;
    if (!cls[0] || !cls[1])
        return;
    for (int f = 0; f < b->lay.n_fields; f++) {
        const rd_dataset_field *fd = &b->lay.fields[f];
        leak_group best = {0};
        if (fd->kind == RD_FIELD_NUMERIC)
            leak_numeric(b, recs, nb, f, cls, &best);
        else if (fd->kind == RD_FIELD_CATEGORICAL || fd->kind == RD_FIELD_MULTI) {
            if (leak_keys(b, recs, nb, f, cls, &best) != RD_OK) {
                RD_LOG_WARN("field '%s': out of memory checking whether it gives the label away",
                            fd->name);
                continue;
            }
        }
        if (!best.n)
            continue;
        char at[3 * RD_PATH_MAX + 96];
        at[0] = '\0';
        if (b->where && b->where(b->where_ctx, best.first, -1, at, sizeof at - 2) == 0)
            strcat(at, ": ");
        else
            at[0] = '\0';
        RD_LOG_WARN("%sfield '%s' gives the label away: in %llu of the batch period's %llu "
                    "events (this line is the first) it %s, and every one of them has label %d, "
                    "though %.1f%% of the period's events have label %d: a model reading it "
                    "learns the label, not the user. A value known only after the event (a dwell "
                    "time, an add-to-cart or purchase flag, the event type the label comes from) "
                    "must not be a feature: declare a number kind: feedback (read over earlier "
                    "events only), or leave the column out of data.schema.fields",
                    at, fd->name, (unsigned long long)best.n, (unsigned long long)nb, best.what,
                    best.label, 100.0 * (double)cls[!best.label] / (double)nb, !best.label);
    }
}

int rd__builder_finish(rd__builder *b, const char *source_yaml, rd_errbuf *eb) {
    RD_ASSERT(!b->finished);
    int rc = RD_OK;
    uint8_t *map = MAP_FAILED;
    uint64_t *cursor = NULL;
    size_t file_size = 0;
    if (b->n == 0)
        return rd_err_set(eb, RD_ERR_EMPTY, "no events: %s",
                          b->raw ? "every event was dropped by negative sampling"
                                 : "the input holds no data rows");
    // One class only (after negative sampling, or from the generator): nothing to learn, no AUC
    // to report. The CSV reader refuses a label rule that gives one class before sampling.
    if (b->n_pos == 0 || b->n_pos == b->n)
        return rd_err_set(eb, RD_ERR_EMPTY,
                          "all %llu events kept have label %d (%llu of %llu before negative "
                          "sampling, data.negatives rate %g, pos_rate %g): training needs both "
                          "classes%s",
                          (unsigned long long)b->n, b->n_pos ? 1 : 0,
                          (unsigned long long)(b->n_pos ? b->raw_pos : b->raw - b->raw_pos),
                          (unsigned long long)b->raw, b->neg_rate, b->pos_rate,
                          b->lay.source == RD_DATA_SYNTHETIC
                              ? " (data.synthetic.base_ctr near 0 or 1 gives one)"
                              : "; raise the sampling rate that dropped the other class");
    // 1. Flush the records.
    if ((rc = flush_buf(b, eb)) != RD_OK)
        return rc;

    // 2. Layout of the file.
    uint64_t n = b->n, U = b->users.n, K = (uint64_t)b->split.stream_windows;
    disk_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, RD_DATASET_MAGIC, 8);
    h.version = RD_DATASET_VERSION;
    h.header_size = b->header_size;
    h.record_size = b->record_size;
    h.n_slots = b->lay.n_slots;
    h.n_numeric = b->lay.n_numeric;
    h.n_fields = (uint32_t)b->lay.n_fields;
    h.n_windows = (uint32_t)K;
    h.source = b->lay.source;
    h.n_events = n;
    h.n_users = U;
    h.n_items = b->items.n;
    h.n_positives = b->n_pos;
    h.ts_min = b->ts_min;
    h.ts_max = b->ts_max;
    h.raw_events = b->raw;
    h.raw_positives = b->raw_pos;
    h.neg_rate = b->neg_rate;
    h.pos_rate = b->pos_rate;
    h.records_off = b->header_size;
    h.user_off_off = h.records_off + n * b->record_size;
    h.user_rec_off = h.user_off_off + (U + 1) * 8;
    h.user_pos_off = h.user_rec_off + n * 8;
    h.file_size = h.user_pos_off + round_up(n * 4, 8);
    h.endian = HDR_ENDIAN;
    h.records_crc = b->records_crc;
    file_size = (size_t)h.file_size;

    // 3. Reserve the index space (so a full disk is an error, not a SIGBUS) and map the file.
    int e = posix_fallocate(b->fd, (off_t)h.user_off_off, (off_t)(h.file_size - h.user_off_off));
    if (e != 0) {
        rc = rd_err_set(eb, RD_ERR_IO, "cannot extend %s to %llu bytes: %s", b->events_path,
                        (unsigned long long)h.file_size, strerror(e));
        goto fn_fail;
    }
    map = mmap(NULL, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0);
    if (map == MAP_FAILED) {
        rc = rd_err_set(eb, RD_ERR_IO, "cannot map %s: %s", b->events_path, strerror(errno));
        goto fn_fail;
    }
    warn_label_fields(b, map + h.records_off, n);
    if ((rc = fill_missing(b, map + h.records_off, n, eb)) != RD_OK)
        goto fn_fail;
    if ((rc = standardize(b, map + h.records_off, n, eb)) != RD_OK)
        goto fn_fail;
    h.records_crc = b->records_crc;
    const uint8_t *recs = map + h.records_off;
    warn_batch_period(b, recs, n);
    uint64_t *user_off = (uint64_t *)(map + h.user_off_off);
    uint64_t *user_rec = (uint64_t *)(map + h.user_rec_off);
    uint32_t *user_pos = (uint32_t *)(map + h.user_pos_off);

    // 4. Per-user index: counting sort of the record indices by user (stable = time order).
    cursor = rd_malloc((U ? U : 1) * sizeof *cursor);
    if (!cursor) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (user index of %llu users)",
                        (unsigned long long)U);
        goto fn_fail;
    }
    uint64_t acc = 0;
    for (uint64_t u = 0; u < U; u++) {
        if (b->user_count[u] > UINT32_MAX) {
            rc = rd_err_set(eb, RD_ERR_RANGE, "user %llu has more than 2^32-1 events",
                            (unsigned long long)u);
            goto fn_fail;
        }
        user_off[u] = acc;
        cursor[u] = acc;
        acc += b->user_count[u];
    }
    user_off[U] = acc;
    RD_ASSERT(acc == n);
    uint64_t per_chunk = PASS_CHUNK / b->record_size + 1;
    for (uint64_t i0 = 0; i0 < n; i0 += per_chunk) {
        uint64_t i1 = i0 + per_chunk < n ? i0 + per_chunk : n;
        for (uint64_t i = i0; i < i1; i++) {
            uint32_t u = ((const rd_record *)(recs + i * b->record_size))->user;
            RD_ASSERT(u < U);
            user_pos[i] = (uint32_t)(cursor[u] - user_off[u]);
            user_rec[cursor[u]++] = i;
        }
        // Records and positions are visited in order: let their pages go (user_rec is written
        // at random and stays mapped until the CRC pass).
        drop_pages(map, h.records_off + i0 * b->record_size, (i1 - i0) * b->record_size);
        drop_pages(map, h.user_pos_off + i0 * 4, (i1 - i0) * 4);
    }
    if (n % 2)
        user_pos[n] = 0; // padding
    h.index_crc = crc_pass(0, map, h.user_off_off, h.file_size - h.user_off_off);

    // 5. Header: fixed part, field table (with vocabulary sizes), window boundaries.
    uint8_t *hb = rd_calloc(1, b->header_size);
    if (!hb) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        goto fn_fail;
    }
    for (int f = 0; f < b->lay.n_fields; f++) {
        rd_dataset_field *fd = &b->lay.fields[f];
        fd->vocab = rd_field_is_float(fd->kind) ? 0 : b->vocab[f].n;
        disk_field df;
        memset(&df, 0, sizeof df);
        memcpy(df.name, fd->name, sizeof df.name);
        df.name[RD_NAME_MAX - 1] = '\0';
        df.kind = (uint32_t)fd->kind;
        df.offset = fd->offset;
        df.width = fd->width;
        df.transform = fd->transform & (RD_XFORM_LOG1P | RD_XFORM_STANDARDIZE);
        df.vocab = fd->vocab;
        memcpy(hb + sizeof h + (size_t)f * sizeof df, &df, sizeof df);
    }
    uint64_t *wb = (uint64_t *)(hb + sizeof h + (size_t)b->lay.n_fields * sizeof(disk_field));
    compute_splits(n, &b->split, wb);
    for (int f = 0; f < b->lay.n_fields; f++) {
        disk_xform dx = {b->lay.fields[f].mean, b->lay.fields[f].std};
        memcpy((uint8_t *)(wb + K + 1) + (size_t)f * sizeof dx, &dx, sizeof dx);
    }
    h.batch_end = wb[0];
    h.holdout_begin = wb[K];
    memcpy(hb, &h, sizeof h);
    h.header_crc = rd_crc32c(0, hb, b->header_size);
    memcpy(hb, &h, sizeof h);
    memcpy(map, hb, b->header_size);
    rc = write_meta(b, &h, wb, recs, source_yaml, eb);
    rd_free(hb);
    if (rc != RD_OK)
        goto fn_fail;

    // 6. Durability: file contents, then the folder entries, then the rename.
    if (msync(map, file_size, MS_SYNC) != 0 || fsync(b->fd) != 0) {
        rc = rd_err_set(eb, RD_ERR_IO, "cannot sync %s: %s", b->events_path, strerror(errno));
        goto fn_fail;
    }
    munmap(map, file_size);
    map = MAP_FAILED;
    close(b->fd);
    b->fd = -1;
    if (fsync_path(b->tmp) != 0) {
        rc = rd_err_set(eb, RD_ERR_IO, "cannot sync folder %s: %s", b->tmp, strerror(errno));
        goto fn_fail;
    }
    if ((rc = install(b, eb)) != RD_OK)
        goto fn_fail;
    b->finished = 1;
    rd_free(cursor);
    return RD_OK;
fn_fail:
    if (map != MAP_FAILED)
        munmap(map, file_size);
    rd_free(cursor);
    return rc;
}

int rd__builder_write_file(
    rd__builder *b, const char *name, int (*fn)(FILE *f, void *ctx), void *ctx, rd_errbuf *eb) {
    // remove_dataset_dir removes the known names
    RD_ASSERT(strcmp(name, RD_DATASET_IDS) == 0 || strcmp(name, RD_DATASET_LINES) == 0);
    char path[sizeof b->tmp + 16];
    snprintf(path, sizeof path, "%s/%s", b->tmp, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return rd_err_set(eb, RD_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    if (fn(f, ctx) != 0) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory writing %s", path);
    }
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad)
        return rd_err_set(eb, RD_ERR_IO, "cannot write %s: %s", path, strerror(e));
    return RD_OK;
}

void rd__builder_destroy(rd__builder *b) {
    if (!b)
        return;
    if (b->fd >= 0)
        close(b->fd);
    if (b->have_tmp) {
        remove_dataset_dir(b->tmp);
        rd_lmdbx_pending_forget(b->tmp);
    }
    rd_free(b->rec);
    rd_free(b->wbuf);
    rd_free(b->user_count);
    rd__u64map_free(&b->users);
    rd__u64map_free(&b->items);
    for (int f = 0; f < RD_MAX_FIELDS; f++)
        rd__u64map_free(&b->vocab[f]);
    rd_free(b);
}

// ---------------------------------------------------------------------------------------------
// Prepare: dispatch on the source.

int rd_dataset_prepare(const rd_data_config *dc, uint64_t run_seed, rd_errbuf *eb) {
    switch (dc->source) {
        case RD_DATA_SYNTHETIC:
            return rd__prepare_synthetic(dc, run_seed, eb);
        case RD_DATA_MOVIELENS100K:
        case RD_DATA_MOVIELENS1M:
        case RD_DATA_CSV:
            return rd__prepare_csv(dc, run_seed, eb);
        default:
            return rd_err_set(eb, RD_ERR_CONFIG, "data.source: unknown source %d", dc->source);
    }
}

// ---------------------------------------------------------------------------------------------
// Reader

struct rd_dataset {
    char path[RD_PATH_MAX + 64];
    const uint8_t *map;
    size_t map_len;
    rd_dataset_info info;
    rd_dataset_field fields[RD_MAX_FIELDS];
    const uint64_t *wb; // n_windows + 1 boundaries
    const uint8_t *recs;
    const uint64_t *user_off;
    const uint64_t *user_rec;
    const uint32_t *user_pos;
};

static int corrupt(rd_errbuf *eb, const char *path, const char *what) {
    return rd_err_set(eb, RD_ERR_CORRUPT, "%s: %s", path, what);
}

// Fuzzing builds (RD_FUZZ=ON) ignore checksum mismatches, so that mutated files reach the
// structural checks and the accessors behind them; never defined in a production build.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define RD__FUZZING 1
#else
#define RD__FUZZING 0
#endif

// Records against the user index: every record's user and item in range, every user's list
// strictly ascending, naming records of that user, with user_pos the position in the list.
static int check_index(const rd_dataset *ds, const disk_header *h, const char *p, rd_errbuf *eb) {
    uint64_t n = h->n_events, U = h->n_users;
    char why[256];
    for (uint64_t i = 0; i < n; i++) {
        const rd_record *r = (const rd_record *)(ds->recs + i * h->record_size);
        if (r->user >= U || r->item >= h->n_items || r->id != i) {
            snprintf(why, sizeof why,
                     "record %llu: user %u, item %u or id %llu out of range (users %llu, items "
                     "%llu)",
                     (unsigned long long)i, r->user, r->item, (unsigned long long)r->id,
                     (unsigned long long)U, (unsigned long long)h->n_items);
            return corrupt(eb, p, why);
        }
    }
    for (uint64_t u = 0; u < U; u++) {
        for (uint64_t k = ds->user_off[u]; k < ds->user_off[u + 1]; k++) {
            uint64_t i = ds->user_rec[k];
            uint64_t pos = k - ds->user_off[u];
            int bad = i >= n || (k > ds->user_off[u] && i <= ds->user_rec[k - 1]);
            if (!bad) {
                const rd_record *r = (const rd_record *)(ds->recs + i * h->record_size);
                bad = r->user != u || ds->user_pos[i] != pos;
            }
            if (bad) {
                snprintf(why, sizeof why,
                         "inconsistent user index: user %llu, position %llu (record %llu)",
                         (unsigned long long)u, (unsigned long long)pos, (unsigned long long)i);
                return corrupt(eb, p, why);
            }
        }
    }
    return RD_OK;
}

int rd_dataset_open(const char *dir, int flags, rd_dataset **out, rd_errbuf *eb) {
    rd_errbuf_clear(eb); // the message is this call's (rd_err_set keeps the first one)
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, dir != NULL);
    rd_dataset *ds = rd_calloc(1, sizeof *ds);
    if (!ds)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    int rc = RD_OK;
    int fd = -1;
    char why[256];
    snprintf(ds->path, sizeof ds->path, "%s/%s", dir, RD_DATASET_FILE);
    const char *p = ds->path;
    // O_NONBLOCK: a FIFO in place of events.bin must not block open(); it is refused below.
    fd = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        rc = rd_err_set(eb, RD_ERR_IO, "%s: cannot open: %s", p, strerror(errno));
        goto fn_fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = rd_err_set(eb, RD_ERR_IO, "%s: cannot stat: %s", p, strerror(errno));
        goto fn_fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = rd_err_set(eb, RD_ERR_IO, "%s: not a regular file", p);
        goto fn_fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < sizeof(disk_header)) {
        snprintf(why, sizeof why, "truncated: %llu bytes, smaller than the %zu-byte header",
                 (unsigned long long)size, sizeof(disk_header));
        rc = corrupt(eb, p, why);
        goto fn_fail;
    }
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        rc = rd_err_set(eb, RD_ERR_IO, "%s: cannot map: %s", p, strerror(errno));
        goto fn_fail;
    }
    close(fd);
    fd = -1;
    ds->map = m;
    ds->map_len = (size_t)size;

    disk_header h;
    memcpy(&h, ds->map, sizeof h);
    if (memcmp(h.magic, RD_DATASET_MAGIC, 8) != 0) {
        rc = corrupt(eb, p, "bad magic: not a recdistill dataset file");
        goto fn_fail;
    }
    if (h.endian != HDR_ENDIAN || h.version < 1 || h.version > RD_DATASET_VERSION) {
        rc = rd_err_set(eb, RD_ERR_VERSION,
                        "%s: unsupported format version %u (this build reads versions 1 to %d)", p,
                        h.version, RD_DATASET_VERSION);
        goto fn_fail;
    }
    if (h.n_fields > RD_MAX_FIELDS || h.n_windows < 1 || h.n_windows > 10000 ||
        h.header_size != header_size_of(h.version, h.n_fields, h.n_windows) ||
        h.header_size > size) {
        rc = corrupt(eb, p,
                     size < h.header_size ? "truncated inside the header"
                                          : "inconsistent header (sizes)");
        goto fn_fail;
    }
    {
        disk_header hz = h;
        hz.header_crc = 0;
        uint32_t crc = rd_crc32c(0, &hz, sizeof hz);
        crc = rd_crc32c(crc, ds->map + sizeof hz, h.header_size - sizeof hz);
        if (crc != h.header_crc && !RD__FUZZING) {
            snprintf(why, sizeof why, "header checksum mismatch (stored 0x%08x, computed 0x%08x)",
                     h.header_crc, crc);
            rc = corrupt(eb, p, why);
            goto fn_fail;
        }
    }
    // Sizes and offsets, checked without overflow.
    uint64_t n = h.n_events, U = h.n_users;
    uint64_t lim = (uint64_t)1 << 40;
    if (n == 0 || n > lim || U == 0 || U > n || h.n_items == 0 || h.n_items > n ||
        h.n_positives > n || h.n_slots > 4096 || h.n_numeric > 4096 ||
        h.record_size != record_size_of(h.n_slots, h.n_numeric) || h.ts_min > h.ts_max ||
        h.records_off != h.header_size || h.user_off_off != h.records_off + n * h.record_size ||
        h.user_rec_off != h.user_off_off + (U + 1) * 8 ||
        h.user_pos_off != h.user_rec_off + n * 8 ||
        h.file_size != h.user_pos_off + round_up(n * 4, 8) || h.raw_events < n ||
        !(h.neg_rate > 0 && h.neg_rate <= 1) || !(h.pos_rate > 0 && h.pos_rate <= 1)) {
        rc = corrupt(eb, p, "inconsistent header (counts or offsets)");
        goto fn_fail;
    }
    if (size != h.file_size) {
        snprintf(why, sizeof why, "%s: file has %llu bytes, the header says %llu",
                 size < h.file_size ? "truncated" : "trailing bytes", (unsigned long long)size,
                 (unsigned long long)h.file_size);
        rc = corrupt(eb, p, why);
        goto fn_fail;
    }
    // Field table and windows.
    for (uint32_t f = 0; f < h.n_fields; f++) {
        disk_field df;
        memcpy(&df, ds->map + sizeof h + f * sizeof df, sizeof df);
        uint32_t cap = rd_field_is_float((int)df.kind) ? h.n_numeric : h.n_slots;
        if (memchr(df.name, '\0', sizeof df.name) == NULL || df.name[0] == '\0' ||
            df.kind > RD_FIELD_FEEDBACK || df.width == 0 || df.offset > cap ||
            df.width > cap - df.offset || (rd_field_is_float((int)df.kind) && df.width != 1)) {
            rc = corrupt(eb, p, "inconsistent field table");
            goto fn_fail;
        }
        rd_dataset_field *fld = &ds->fields[f];
        memcpy(fld->name, df.name, sizeof fld->name);
        fld->kind = (int)df.kind;
        fld->offset = df.offset;
        fld->width = df.width;
        fld->vocab = df.vocab;
        fld->mean = 0;
        fld->std = 1;
        fld->transform = h.version < 2 ? RD_XFORM_UNKNOWN : df.transform;
        if (h.version >= 2) {
            disk_xform dx;
            memcpy(&dx,
                   ds->map + sizeof h + h.n_fields * sizeof df + 8ull * (h.n_windows + 1) +
                       f * sizeof dx,
                   sizeof dx);
            int stdz = (df.transform & RD_XFORM_STANDARDIZE) != 0;
            if ((df.transform & ~(RD_XFORM_LOG1P | RD_XFORM_STANDARDIZE)) != 0 ||
                (df.transform != 0 && !rd_field_is_float((int)df.kind)) ||
                (stdz && !(isfinite(dx.mean) && isfinite(dx.std) && dx.std > 0)) ||
                (!stdz && (dx.mean != 0 || dx.std != 1))) {
                snprintf(why, sizeof why, "field '%s': inconsistent transform (flags 0x%x)",
                         df.name, df.transform);
                rc = corrupt(eb, p, why);
                goto fn_fail;
            }
            fld->mean = dx.mean;
            fld->std = dx.std;
        }
    }
    ds->wb = (const uint64_t *)(ds->map + sizeof h + h.n_fields * sizeof(disk_field));
    if (ds->wb[0] != h.batch_end || ds->wb[h.n_windows] != h.holdout_begin)
        rc = corrupt(eb, p, "inconsistent split table");
    for (uint32_t w = 0; rc == RD_OK && w < h.n_windows; w++)
        if (ds->wb[w] > ds->wb[w + 1] || ds->wb[w + 1] > n)
            rc = corrupt(eb, p, "inconsistent split table");
    if (rc != RD_OK)
        goto fn_fail;
    ds->recs = ds->map + h.records_off;
    ds->user_off = (const uint64_t *)(ds->map + h.user_off_off);
    ds->user_rec = (const uint64_t *)(ds->map + h.user_rec_off);
    ds->user_pos = (const uint32_t *)(ds->map + h.user_pos_off);

    if (!(flags & RD_DATASET_NOVERIFY)) {
        uint32_t crc = crc_pass(0, ds->map, h.records_off, n * h.record_size);
        if (crc != h.records_crc && !RD__FUZZING) {
            snprintf(why, sizeof why,
                     "record checksum mismatch (stored 0x%08x, computed 0x%08x): the file is "
                     "corrupted",
                     h.records_crc, crc);
            rc = corrupt(eb, p, why);
            goto fn_fail;
        }
        crc = crc_pass(0, ds->map, h.user_off_off, h.file_size - h.user_off_off);
        if (crc != h.index_crc && !RD__FUZZING) {
            snprintf(why, sizeof why,
                     "index checksum mismatch (stored 0x%08x, computed 0x%08x): the file is "
                     "corrupted",
                     h.index_crc, crc);
            rc = corrupt(eb, p, why);
            goto fn_fail;
        }
    }
    // The user offsets are cheap to check even without the CRC: they bound every list access.
    if (ds->user_off[0] != 0 || ds->user_off[U] != n) {
        rc = corrupt(eb, p, "inconsistent user index");
        goto fn_fail;
    }
    for (uint64_t u = 0; u < U; u++)
        if (ds->user_off[u] > ds->user_off[u + 1]) {
            rc = corrupt(eb, p, "inconsistent user index");
            goto fn_fail;
        }
    // A verified file is also checked for consistency: a file whose CRCs match but whose index
    // disagrees with its records (a bug in a writer, a crafted file) would otherwise trip the
    // assertions of the accessors. O(n), a fraction of the CRC pass.
    if (!(flags & RD_DATASET_NOVERIFY) && (rc = check_index(ds, &h, p, eb)) != RD_OK)
        goto fn_fail;

    // Feedback values must be the tail of the floats: the model inputs are the first ones.
    uint32_t n_fb = 0;
    for (uint32_t f = 0; f < h.n_fields; f++)
        n_fb += ds->fields[f].kind == RD_FIELD_FEEDBACK;
    for (uint32_t f = 0; f < h.n_fields; f++) {
        const rd_dataset_field *fl = &ds->fields[f];
        int bad = n_fb > h.n_numeric ||
                  (fl->kind == RD_FIELD_FEEDBACK && fl->offset < h.n_numeric - n_fb) ||
                  (fl->kind == RD_FIELD_NUMERIC && fl->offset >= h.n_numeric - n_fb);
        if (bad) {
            rc = corrupt(eb, p,
                         "inconsistent field table (feedback values are not the last floats)");
            goto fn_fail;
        }
    }

    rd_dataset_info *in = &ds->info;
    in->version = h.version;
    in->n_feedback = n_fb;
    in->record_size = h.record_size;
    in->n_slots = h.n_slots;
    in->n_numeric = h.n_numeric;
    in->n_fields = h.n_fields;
    in->n_windows = h.n_windows;
    in->source = h.source;
    in->n_events = n;
    in->n_users = U;
    in->n_items = h.n_items;
    in->n_positives = h.n_positives;
    in->ts_min = h.ts_min;
    in->ts_max = h.ts_max;
    in->raw_events = h.raw_events;
    in->raw_positives = h.raw_positives;
    in->neg_rate = h.neg_rate;
    in->pos_rate = h.pos_rate;
    in->file_bytes = h.file_size;
    in->records_crc = h.records_crc;
    in->index_crc = h.index_crc;
    *out = ds;
    return RD_OK;
fn_fail:
    if (fd >= 0)
        close(fd);
    rd_dataset_close(ds);
    return rc;
}

void rd_dataset_close(rd_dataset *ds) {
    if (!ds)
        return;
    if (ds->map)
        munmap((void *)(uintptr_t)ds->map, ds->map_len);
    rd_free(ds);
}

const rd_dataset_info *rd_dataset_get_info(const rd_dataset *ds) {
    return ds ? &ds->info : NULL;
}

const rd_dataset_field *rd_dataset_fields(const rd_dataset *ds) {
    return ds ? ds->fields : NULL;
}

const rd_dataset_field *rd_dataset_find_field(const rd_dataset *ds, const char *name) {
    if (!ds || !name)
        return NULL;
    for (uint32_t f = 0; f < ds->info.n_fields; f++)
        if (strcmp(ds->fields[f].name, name) == 0)
            return &ds->fields[f];
    return NULL;
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

void rd_dataset_time_fields(int64_t ts, int *hour, int *weekday) {
    int64_t day = floor_div(ts, 86400);
    *hour = (int)((ts - day * 86400) / 3600);
    // 1970-01-01 was a Thursday: (day + 3) mod 7 counts from Monday = 0.
    *weekday = (int)((day + 3) - floor_div(day + 3, 7) * 7);
}

int rd_dataset_feature_src(
    const rd_dataset *ds, const char *field, const char *who, rd_feature_src *out, rd_errbuf *eb) {
    *out = (rd_feature_src){.kind = RD_FEATURE_USER, .offset = 0, .width = 1};
    const rd_dataset_field *df = rd_dataset_find_field(ds, field);
    if (strcmp(field, "user") == 0)
        return RD_OK;
    if (strcmp(field, "item") == 0) {
        out->kind = RD_FEATURE_ITEM;
        return RD_OK;
    }
    if (df) {
        if (df->kind == RD_FIELD_NUMERIC)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "%s: feature '%s' is a numeric field of the dataset; numeric "
                              "fields enter the model directly, do not embed them",
                              who, field);
        if (df->kind == RD_FIELD_FEEDBACK)
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "%s: feature '%s' is feedback (known only after the event): it "
                              "cannot be a feature; read it through seq.stats_feedback",
                              who, field);
        out->kind = RD_FEATURE_FIELD;
        out->offset = df->offset;
        out->width = df->width;
        return RD_OK;
    }
    if (strcmp(field, "hour") == 0 || strcmp(field, "weekday") == 0) {
        out->kind = field[0] == 'h' ? RD_FEATURE_HOUR : RD_FEATURE_WEEKDAY;
        return RD_OK;
    }
    char have[512] = "user, item, hour, weekday";
    size_t len = strlen(have);
    for (uint32_t k = 0; k < ds->info.n_fields && len + 40 < sizeof have; k++)
        len += (size_t)snprintf(have + len, sizeof have - len, ", %s", ds->fields[k].name);
    return rd_err_set(eb, RD_ERR_CONFIG,
                      "%s: feature '%s' is not a field of the dataset (have: %s)", who, field,
                      have);
}

uint64_t
rd_dataset_feature_key(const rd_dataset *ds, const rd_feature_src *fs, uint64_t i, uint32_t slot) {
    const rd_record *r = rd_dataset_record(ds, i);
    switch (fs->kind) {
        case RD_FEATURE_USER:
            return r->user_key;
        case RD_FEATURE_ITEM:
            return r->item_key;
        case RD_FEATURE_HOUR:
        case RD_FEATURE_WEEKDAY: {
            int hour = 0, wd = 0;
            rd_dataset_time_fields(r->ts, &hour, &wd);
            return fs->kind == RD_FEATURE_HOUR ? rd_feature_key_u64("hour", (uint64_t)hour)
                                               : rd_feature_key_u64("weekday", (uint64_t)wd);
        }
        default:
            RD_ASSERT(slot < fs->width);
            return rd_dataset_keys(ds, i)[fs->offset + slot];
    }
}

typedef struct attr_pair {
    uint64_t key, value;
} attr_pair;

static int attr_pair_cmp(const void *a, const void *b) {
    uint64_t x = ((const attr_pair *)a)->key, y = ((const attr_pair *)b)->key;
    return (x > y) - (x < y);
}

int rd_dataset_item_attr(
    const rd_dataset *ds, const char *field, const char *who, rd_item_attr *out, rd_errbuf *eb) {
    memset(out, 0, sizeof *out);
    rd_feature_src fs;
    int rc = rd_dataset_feature_src(ds, field, who, &fs, eb);
    if (rc != RD_OK)
        return rc;
    if (fs.kind == RD_FEATURE_USER)
        return rd_err_set(eb, RD_ERR_CONFIG, "%s: '%s' is not an attribute of the item", who,
                          field);
    if (fs.width != 1)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "%s: field '%s' holds %u values per event; a search key needs one", who,
                          field, fs.width);
    const size_t NI = ds->info.n_items, n = ds->info.n_events;
    uint64_t *key = rd_calloc(NI ? NI : 1, sizeof *key), *val = rd_calloc(NI ? NI : 1, sizeof *val);
    uint64_t *first = rd_malloc((NI ? NI : 1) * sizeof *first); // a record of each item
    if (!key || !val || !first) {
        rd_free(key);
        rd_free(val);
        rd_free(first);
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory for %zu items", who, NI);
    }
    for (size_t k = 0; k < NI; k++)
        first[k] = UINT64_MAX;
    for (uint64_t i = 0; i < n; i++) {
        const rd_record *r = rd_dataset_record(ds, i);
        uint64_t v = rd_dataset_feature_key(ds, &fs, i, 0);
        if (first[r->item] == UINT64_MAX) {
            first[r->item] = i;
            key[r->item] = r->item_key;
            val[r->item] = v;
        } else if (val[r->item] != v) {
            rc = rd_err_set(eb, RD_ERR_CONFIG,
                            "%s: field '%s' is not an attribute of the item: records %llu and %llu "
                            "of one item have different values",
                            who, field, (unsigned long long)first[r->item], (unsigned long long)i);
            break;
        }
    }
    rd_free(first);
    if (rc != RD_OK) {
        rd_free(key);
        rd_free(val);
        return rc;
    }
    // Sort the (key, value) pairs by key.
    attr_pair *pr = rd_malloc((NI ? NI : 1) * sizeof *pr);
    if (!pr) {
        rd_free(key);
        rd_free(val);
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory for %zu items", who, NI);
    }
    for (size_t k = 0; k < NI; k++)
        pr[k] = (attr_pair){key[k], val[k]};
    qsort(pr, NI, sizeof *pr, attr_pair_cmp);
    for (size_t k = 0; k < NI; k++) {
        key[k] = pr[k].key;
        val[k] = pr[k].value;
    }
    rd_free(pr);
    *out = (rd_item_attr){.n = NI, .item_key = key, .value = val};
    return RD_OK;
}

uint64_t rd_item_attr_key(const rd_item_attr *a, uint64_t item_key) {
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->item_key[mid] < item_key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < a->n && a->item_key[lo] == item_key && a->value[lo] ? a->value[lo] : item_key;
}

void rd_item_attr_free(rd_item_attr *a) {
    rd_free(a->item_key);
    rd_free(a->value);
    memset(a, 0, sizeof *a);
}

const rd_record *rd_dataset_record(const rd_dataset *ds, uint64_t i) {
    RD_ASSERT(i < ds->info.n_events);
    return (const rd_record *)(ds->recs + i * ds->info.record_size);
}

const uint64_t *rd_dataset_keys(const rd_dataset *ds, uint64_t i) {
    RD_ASSERT(i < ds->info.n_events);
    return (const uint64_t *)(ds->recs + i * ds->info.record_size + sizeof(rd_record));
}

const float *rd_dataset_nums(const rd_dataset *ds, uint64_t i) {
    RD_ASSERT(i < ds->info.n_events);
    return (const float *)(ds->recs + i * ds->info.record_size + sizeof(rd_record) +
                           8 * (size_t)ds->info.n_slots);
}

rd_range rd_dataset_all(const rd_dataset *ds) {
    return (rd_range){0, ds->info.n_events};
}

rd_range rd_dataset_batch(const rd_dataset *ds) {
    return (rd_range){0, ds->wb[0]};
}

rd_range rd_dataset_window(const rd_dataset *ds, uint32_t w) {
    RD_ASSERT(w < ds->info.n_windows);
    return (rd_range){ds->wb[w], ds->wb[w + 1]};
}

rd_range rd_dataset_holdout(const rd_dataset *ds) {
    return (rd_range){ds->wb[ds->info.n_windows], ds->info.n_events};
}

int64_t rd_dataset_window_of(const rd_dataset *ds, uint64_t i) {
    // wb[0 .. K] are non-decreasing (empty windows repeat a bound): the window is the last w
    // with wb[w] <= i, if i < wb[K].
    uint32_t K = ds->info.n_windows;
    if (K == 0 || i < ds->wb[0] || i >= ds->wb[K])
        return -1;
    uint32_t lo = 0, hi = K; // wb[lo] <= i < wb[hi]
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ds->wb[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int64_t rd_dataset_window_of_naive(const rd_dataset *ds, uint64_t i) {
    for (uint32_t w = 0; w < ds->info.n_windows; w++) {
        rd_range r = rd_dataset_window(ds, w);
        if (i >= r.begin && i < r.end)
            return w;
    }
    return -1;
}

// First record with ts >= t.
static uint64_t lower_ts(const rd_dataset *ds, int64_t t) {
    uint64_t lo = 0, hi = ds->info.n_events;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (rd_dataset_record(ds, mid)->ts < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

rd_range rd_dataset_time_range(const rd_dataset *ds, int64_t t0, int64_t t1) {
    if (t1 <= t0)
        return (rd_range){0, 0};
    uint64_t b = lower_ts(ds, t0);
    uint64_t e = lower_ts(ds, t1);
    return (rd_range){b, e < b ? b : e};
}

rd_range rd_dataset_shard(rd_range r, int rank, int nranks) {
    RD_ASSERT(nranks >= 1 && rank >= 0 && rank < nranks);
    if (r.end < r.begin)
        r.end = r.begin;
    uint64_t len = r.end - r.begin;
    __extension__ typedef unsigned __int128 u128;
    uint64_t b = r.begin + (uint64_t)((u128)len * (uint64_t)rank / (uint64_t)nranks);
    uint64_t e = r.begin + (uint64_t)((u128)len * (uint64_t)(rank + 1) / (uint64_t)nranks);
    return (rd_range){b, e};
}

// Position of the first entry >= v in the sorted list a[lo, hi).
static uint64_t lower_u64(const uint64_t *a, uint64_t lo, uint64_t hi, uint64_t v) {
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

// User mode: move to the next user (from it->user) owned by this rank with records in range.
static int iter_user_advance(rd_dataset_iter *it) {
    const rd_dataset *ds = it->ds;
    while (it->user < ds->info.n_users) {
        uint64_t u = it->user;
        uint64_t lo = ds->user_off[u], hi = ds->user_off[u + 1];
        int mine = 1;
        if (it->nranks > 1 && lo < hi) {
            uint64_t first = ds->user_rec[lo];
            RD_ASSERT(first < ds->info.n_events);
            mine = rd_shard_of(rd_dataset_record(ds, first)->user_key, it->nranks) == it->rank;
        }
        if (mine && lo < hi) {
            uint64_t a = lower_u64(ds->user_rec, lo, hi, it->range.begin);
            uint64_t b = lower_u64(ds->user_rec, a, hi, it->range.end);
            if (a < b) {
                it->next = a;
                it->stop = b;
                return 1;
            }
        }
        it->user++;
    }
    return 0;
}

void rd_dataset_iter_init(
    rd_dataset_iter *it, const rd_dataset *ds, rd_range range, int mode, int rank, int nranks) {
    RD_ASSERT(nranks >= 1 && rank >= 0 && rank < nranks);
    RD_ASSERT(mode == RD_PART_CONTIGUOUS || mode == RD_PART_STRIDED || mode == RD_PART_USER);
    memset(it, 0, sizeof *it);
    if (range.end > ds->info.n_events)
        range.end = ds->info.n_events;
    if (range.begin > range.end)
        range.begin = range.end;
    it->ds = ds;
    it->range = range;
    it->mode = mode;
    it->rank = rank;
    it->nranks = nranks;
    if (mode == RD_PART_CONTIGUOUS) {
        rd_range s = rd_dataset_shard(range, rank, nranks);
        it->next = s.begin;
        it->stop = s.end;
        it->step = 1;
    } else if (mode == RD_PART_STRIDED) {
        it->next = range.begin + (uint64_t)rank;
        it->stop = range.end;
        it->step = (uint64_t)nranks;
    } else {
        it->user = 0;
        if (!iter_user_advance(it))
            it->next = it->stop = 0;
    }
}

uint64_t rd_sample_salt(uint64_t run_seed) {
    return rd_mix64(run_seed ^ 0x6a6f625f73616d70ULL);
}

int rd_sample_keep(uint64_t salt, double neg_keep, double pos_keep, uint64_t id, int positive) {
    double keep = positive ? pos_keep : neg_keep;
    if (keep >= 1.0)
        return 1;
    double u = (double)(rd_mix64(salt ^ rd_mix64(id + 0x9e3779b97f4a7c15ULL)) >> 11) * 0x1p-53;
    return u < keep;
}

void rd_dataset_iter_sample(rd_dataset_iter *it, uint64_t salt, double neg_keep, double pos_keep) {
    RD_ASSERT(neg_keep > 0 && neg_keep <= 1 && pos_keep > 0 && pos_keep <= 1);
    it->sampled = neg_keep < 1.0 || pos_keep < 1.0;
    it->keep_salt = salt;
    it->keep_neg = neg_keep;
    it->keep_pos = pos_keep;
}

static int iter_next_any(rd_dataset_iter *it, uint64_t *idx);

int rd_dataset_iter_next(rd_dataset_iter *it, uint64_t *idx) {
    if (!it->sampled)
        return iter_next_any(it, idx);
    while (iter_next_any(it, idx))
        if (rd_sample_keep(it->keep_salt, it->keep_neg, it->keep_pos, *idx,
                           rd_dataset_record(it->ds, *idx)->label > 0.5f))
            return 1;
    return 0;
}

static int iter_next_any(rd_dataset_iter *it, uint64_t *idx) {
    if (it->mode != RD_PART_USER) {
        if (it->next >= it->stop)
            return 0;
        *idx = it->next;
        it->next += it->step;
        return 1;
    }
    if (it->next >= it->stop) {
        if (it->user >= it->ds->info.n_users)
            return 0;
        it->user++;
        if (!iter_user_advance(it)) {
            it->next = it->stop = 0;
            return 0;
        }
    }
    uint64_t i = it->ds->user_rec[it->next++];
    RD_ASSERT(i < it->ds->info.n_events);
    *idx = i;
    return 1;
}

const uint64_t *rd_dataset_user_records(const rd_dataset *ds, uint64_t u, uint64_t *n) {
    RD_ASSERT(u < ds->info.n_users);
    *n = ds->user_off[u + 1] - ds->user_off[u];
    return ds->user_rec + ds->user_off[u];
}

uint32_t rd_dataset_user_pos(const rd_dataset *ds, uint64_t i) {
    RD_ASSERT(i < ds->info.n_events);
    return ds->user_pos[i];
}

uint64_t rd_dataset_history_at(const rd_dataset *ds, uint64_t i, size_t L, size_t *n) {
    const rd_record *r = rd_dataset_record(ds, i);
    RD_ASSERT(r->user < ds->info.n_users);
    uint64_t off = ds->user_off[r->user];
    uint64_t p = ds->user_pos[i];
    // Holds for every verified file; guards unverified (RD_DATASET_NOVERIFY) opens.
    RD_ASSERT(off + p < ds->user_off[r->user + 1] && ds->user_rec[off + p] == i);
    uint64_t start = p > L ? p - L : 0;
    *n = (size_t)(p - start);
    return off + start;
}

const uint64_t *rd_dataset_history_view(const rd_dataset *ds, uint64_t i, size_t L, size_t *n) {
    return ds->user_rec + rd_dataset_history_at(ds, i, L, n);
}

void rd_dataset_history_keys(const rd_dataset *ds, uint64_t table_id, uint64_t *key, uint8_t *pos) {
    // List order: the records of one user are far apart in the log, so this pass reads them
    // scattered once, and the histories read the result contiguously ever after.
    for (uint64_t k = 0; k < ds->info.n_events; k++) {
        const rd_record *r = rd_dataset_record(ds, ds->user_rec[k]);
        key[k] = rd_table_key(table_id, r->item_key);
        pos[k] = r->label > 0.5f ? 1 : 0;
    }
}

size_t rd_history_stats_width(const rd_seq_config *sq) {
    if (!sq->n_stats)
        return 0;
    return 1 + (size_t)sq->n_stats *
                   (1 + (sq->stats_feedback[0] ? 1 : 0) + (sq->stats_residual ? 1 : 0));
}

float *rd_dataset_item_means(const rd_dataset *ds, int feedback_index) {
    const rd_dataset_info *in = &ds->info;
    float *out = rd_malloc((in->n_events ? in->n_events : 1) * sizeof(float));
    double *sum = rd_calloc(in->n_items ? in->n_items : 1, sizeof(double));
    uint32_t *cnt = rd_calloc(in->n_items ? in->n_items : 1, sizeof(uint32_t));
    if (!out || !sum || !cnt) {
        rd_free(out);
        out = NULL;
        goto done;
    }
    double g_sum = 0;
    for (uint64_t e = 0; e < in->n_events; e++) {
        const rd_record *r = rd_dataset_record(ds, e);
        RD_ASSERT(r->item < in->n_items);
        double g = e ? g_sum / (double)e : 0.0;
        out[e] =
            (float)((sum[r->item] + RD_STATS_PRIOR * g) / ((double)cnt[r->item] + RD_STATS_PRIOR));
        double x = (double)rd_dataset_nums(ds, e)[feedback_index];
        sum[r->item] += x;
        cnt[r->item]++;
        g_sum += x;
    }
done:
    rd_free(sum);
    rd_free(cnt);
    return out;
}

void rd_dataset_history_stats(const rd_dataset *ds,
                              uint64_t i,
                              const rd_seq_config *sq,
                              int feedback_index,
                              const float *item_mean,
                              float *out) {
    if (!sq->n_stats)
        return;
    // The layout of out is rd_history_stats_width(sq): the caller resolved what sq asks for.
    RD_ASSERT((feedback_index >= 0) == (sq->stats_feedback[0] != '\0'));
    RD_ASSERT(!sq->stats_residual || item_mean);
    size_t nh = 0;
    const uint64_t *h = rd_dataset_history_view(ds, i, (size_t)sq->stats[sq->n_stats - 1], &nh);
    out[0] = (float)log1p((double)rd_dataset_user_pos(ds, i));
    // Windows ascend: one walk from the latest event back, closing each window on the way.
    double sum_y = 0, sum_f = 0, sum_r = 0;
    size_t j = 0;
    int fb = feedback_index >= 0, res = fb && item_mean;
    size_t stride = 1 + (size_t)fb + (size_t)res;
    for (int k = 0; k < sq->n_stats; k++) {
        size_t end = (size_t)sq->stats[k] < nh ? (size_t)sq->stats[k] : nh;
        for (; j < end; j++) {
            uint64_t e = h[nh - 1 - j];
            sum_y += (double)rd_dataset_record(ds, e)->label;
            if (fb) {
                double x = (double)rd_dataset_nums(ds, e)[feedback_index];
                sum_f += x;
                if (res)
                    sum_r += x - (double)item_mean[e];
            }
        }
        float *o = out + 1 + (size_t)k * stride;
        o[0] = end ? (float)(sum_y / (double)end) : 0.0f;
        if (fb)
            o[1] = end ? (float)(sum_f / (double)end) : 0.0f;
        if (res)
            o[2] = end ? (float)(sum_r / (double)end) : 0.0f;
    }
}

int rd_dataset_feedback_index(
    const rd_dataset *ds, const char *what, const char *name, int *index, rd_errbuf *eb) {
    *index = -1;
    const rd_dataset_field *f = rd_dataset_find_field(ds, name);
    if (!f)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s: the dataset has no field '%s' (a folder prepared before feedback "
                          "fields existed must be prepared again)",
                          what, name);
    if (f->kind != RD_FIELD_FEEDBACK)
        return rd_err_set(eb, RD_ERR_SCHEMA, "%s: field '%s' is not of kind feedback", what, name);
    *index = (int)f->offset;
    return RD_OK;
}

int rd_dataset_stats_feedback(
    const rd_dataset *ds, const char *model, const rd_seq_config *sq, int *index, rd_errbuf *eb) {
    *index = -1;
    if (!sq->stats_feedback[0])
        return RD_OK;
    char what[RD_NAME_MAX + 40];
    snprintf(what, sizeof what, "model '%s': seq.stats_feedback", model);
    return rd_dataset_feedback_index(ds, what, sq->stats_feedback, index, eb);
}

void rd_dataset_history(const rd_dataset *ds, uint64_t i, size_t L, uint64_t *out_idx, size_t *n) {
    const uint64_t *v = rd_dataset_history_view(ds, i, L, n);
    if (*n)
        memcpy(out_idx, v, *n * sizeof *out_idx);
}

// ---------------------------------------------------------------------------------------------
// Which config a dataset folder was built from

// The data section of the effective configuration as rd_config_print writes it, with what does
// not change the records blanked (the folder, the history length models read) and the seeds
// that do made explicit: the synthetic generator's (run.seed when synthetic.seed is 0) and
// negative sampling's (run.seed, when it samples).
uint64_t rd_dataset_config_hash(const rd_data_config *dc, uint64_t run_seed) {
    rd_config *c = rd_calloc(1, sizeof *c);
    if (!c)
        return 0;
    rd_config_defaults(c);
    double effect_default = c->data.synthetic.context_effect;
    c->data = *dc;
    memset(c->data.dir, 0, sizeof c->data.dir);
    if (dc->synthetic.contexts == 0) // without contexts the effect changes no record
        c->data.synthetic.context_effect = effect_default;
    c->data.history_max = 1;
    if (!c->data.schema.encoding[0]) // a schema filled in code (a preset) leaves it empty: utf-8
        snprintf(c->data.schema.encoding, sizeof c->data.schema.encoding, "utf-8");
    if (dc->source == RD_DATA_SYNTHETIC && dc->synthetic.seed == 0)
        c->data.synthetic.seed = rd_synth_seed(&dc->synthetic, run_seed);
    int sampled = dc->negatives.rate < 1 || dc->negatives.pos_rate < 1;
    c->run.seed = sampled ? run_seed : 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    uint64_t h = 0;
    if (f) {
        rd_config_print(c, f);
        fclose(f);
        // The data section, and run.seed only when it seeds something (above).
        char *d = text ? strstr(text, "\ndata:") : NULL;
        if (d) {
            const char *e = d + 6;
            while ((e = strchr(e, '\n')) && e[1] && (e[1] == ' ' || e[1] == '#' || e[1] == '\n'))
                e++;
            size_t n = e ? (size_t)(e - d) : strlen(d);
            // Keys added to the data section after the hash existed are left out of it while
            // they hold their default, so that a folder prepared before them keeps its hash.
            // Every occurrence goes (fields[].standardize is printed once per field).
            static const char *const compat[] = {"\n    quoting: true\n",
                                                 "\n    feedback: 0\n",
                                                 "\n        standardize: false\n",
                                                 "\n        missing: error\n",
                                                 "\n      values: []\n",
                                                 "\n    context_effect: 0.5\n",
                                                 "\n    memory_rate: 0.25\n",
                                                 "\n    encoding: \"utf-8\"\n",
                                                 "\n    drop_repeats: false\n", // added 2026-12-04
                                                 NULL};
            for (int k = 0; compat[k]; k++) {
                size_t cl = strlen(compat[k]);
                char *p = d;
                while ((p = strstr(p, compat[k])) && (size_t)(p - d) + cl <= n) {
                    // Keep the leading newline, drop the line.
                    memmove(p + 1, p + cl, strlen(p + cl) + 1);
                    n -= cl - 1;
                }
            }
            h = rd_hash64(d, n, 0x646174615f636667ULL) ^ rd_mix64(c->run.seed);
        }
    }
    free(text); // open_memstream's buffer comes from libc malloc
    rd_free(c);
    return h;
}

// The input files recorded in meta.yaml ("inputs:") against the files the config names now.
typedef struct inputs_ctx {
    const char *dir, *meta;
    rd__input_stamp *rec;
    size_t n_rec, k;
} inputs_ctx;

static int check_one_input(const char *path, void *vctx, rd_errbuf *eb) {
    inputs_ctx *c = vctx;
    if (c->k >= c->n_rec)
        return rd_err_set(eb, RD_ERR_CONFIG,
                          "data.dir %s is stale: %s is an input file that did not exist when the "
                          "folder was prepared from %zu file(s); remove the folder to prepare it "
                          "again, or point data.dir elsewhere",
                          c->dir, path, c->n_rec);
    const rd__input_stamp *r = &c->rec[c->k++];
    rd__input_stamp now;
    int rc = rd__input_stamp_file(path, 0, &now, eb);
    if (rc == RD_OK && now.size == r->size && now.mtime_ns != r->mtime_ns)
        rc = rd__input_stamp_file(path, 1, &now, eb); // touched: compare the content
    else
        now.crc = r->crc;
    if (rc != RD_OK)
        return rc;
    if (now.size == r->size && now.crc == r->crc)
        return RD_OK;
    return rd_err_set(eb, RD_ERR_CONFIG,
                      "data.dir %s is stale: %s changed since the folder was prepared (%llu bytes "
                      "then, %llu now%s); remove the folder to prepare it again, or point "
                      "data.dir elsewhere",
                      c->dir, path, (unsigned long long)r->size, (unsigned long long)now.size,
                      now.size == r->size ? ", other content" : "");
}

static int count_input(const char *path, void *vctx, rd_errbuf *eb) {
    (void)path;
    (void)eb;
    ++*(size_t *)vctx;
    return RD_OK;
}

static int
check_inputs(const char *dir, const char *meta, const rd_data_config *dc, rd_errbuf *eb) {
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(meta, &f);
    if (o != 0)
        return rd_err_set(eb, RD_ERR_IO, "%s: cannot read: %s", meta,
                          o > 0 ? "not a regular file" : strerror(errno));
    inputs_ctx c = {.dir = dir, .meta = meta};
    size_t cap = 0;
    char line[8192];
    int in = 0, rc = RD_OK;
    while (rc == RD_OK && fgets(line, sizeof line, f)) {
        if (!in) {
            in = strncmp(line, "inputs:", 7) == 0;
            continue;
        }
        if (strncmp(line, "  - {", 5) != 0)
            break;
        unsigned long long size;
        long long mt;
        unsigned crc;
        if (sscanf(line, "  - {size: %llu, mtime_ns: %lld, crc32c: 0x%x", &size, &mt, &crc) != 3) {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s: malformed inputs entry '%.60s'", meta, line);
            break;
        }
        if (c.n_rec == cap) {
            cap = cap ? 2 * cap : 16;
            rd__input_stamp *g = rd_realloc(c.rec, cap * sizeof *g);
            if (!g) {
                rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
                break;
            }
            c.rec = g;
        }
        c.rec[c.n_rec++] = (rd__input_stamp){.size = size, .mtime_ns = mt, .crc = crc};
    }
    fclose(f);
    // The files are compared in order, so a file added or removed first shifts every later one:
    // the count is compared before any content (a removed part of a glob blamed the next part).
    size_t n_now = 0;
    if (rc == RD_OK && c.n_rec > 0) {
        rd_errbuf leb;
        rd_errbuf_clear(&leb);
        if (rd__schema_each_input(dc, count_input, &n_now, &leb) == RD_OK && n_now != c.n_rec) {
            rd_free(c.rec);
            return rd_err_set(eb, RD_ERR_CONFIG,
                              "data.dir %s is stale: it was prepared from %zu input file(s), the "
                              "config names %zu now (a file was %s); remove the folder to "
                              "prepare it again, or point data.dir elsewhere",
                              dir, c.n_rec, n_now, n_now > c.n_rec ? "added" : "removed");
        }
    }
    if (rc == RD_OK && c.n_rec > 0) {
        rd_errbuf leb;
        rd_errbuf_clear(&leb);
        rc = rd__schema_each_input(dc, check_one_input, &c, &leb);
        if (rc == RD_ERR_CONFIG)
            rd_err_set(eb, rc, "%s", leb.msg);
        else if (rc != RD_OK)
            rc = RD_OK; // the inputs are gone: the prepared folder is all there is
        else if (c.k < c.n_rec)
            rc = rd_err_set(eb, RD_ERR_CONFIG,
                            "data.dir %s is stale: it was prepared from %zu input files, the "
                            "config names %zu now; remove the folder to prepare it again, or "
                            "point data.dir elsewhere",
                            dir, c.n_rec, c.k);
    }
    rd_free(c.rec);
    return rc;
}

// The path of an inputs entry of meta.yaml ("  - {size: .., path: "..."}"), as rd__yaml_str
// wrote it (\" \\ \t \xHH escaped), into out (NUL-terminated). @return 0, -1 malformed.
static int input_path_of(const char *line, char *out, size_t cap) {
    const char *p = strstr(line, ", path: \"");
    if (!p)
        return -1;
    size_t k = 0;
    for (p += 9; *p && *p != '"'; p++) {
        int c = (unsigned char)*p;
        if (c == '\\') {
            p++;
            if (*p == 't')
                c = '\t';
            else if (*p == 'x' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
                char hex[3] = {p[1], p[2], '\0'};
                c = (int)strtol(hex, NULL, 16);
                p += 2;
            } else if (*p == '"' || *p == '\\')
                c = (unsigned char)*p;
            else
                return -1;
        }
        if (k + 1 >= cap)
            return -1;
        out[k++] = (char)c;
    }
    if (*p != '"' || k == 0)
        return -1;
    out[k] = '\0';
    return 0;
}

int rd_dataset_each_input(const char *dir,
                          int (*fn)(const char *path, void *ctx, rd_errbuf *eb),
                          void *ctx,
                          rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    RD_ARG_CHECK(eb, dir != NULL && fn != NULL);
    char meta[RD_PATH_MAX * 2 + 16];
    int n = snprintf(meta, sizeof meta, "%s/%s", dir, RD_DATASET_META);
    if (n < 0 || (size_t)n >= sizeof meta)
        return rd_err_set(eb, RD_ERR_ARG, "%s: path too long", dir);
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(meta, &f);
    if (o != 0)
        return rd_err_set(eb, RD_ERR_IO, "%s: cannot read: %s", meta,
                          o > 0 ? "not a regular file" : strerror(errno));
    char *line = NULL, path[RD_PATH_MAX * 2 + 2];
    size_t lcap = 0;
    int in = 0, rc = RD_OK;
    while (rc == RD_OK && getline(&line, &lcap, f) > 0) {
        if (!in) {
            in = strncmp(line, "inputs:", 7) == 0;
            continue;
        }
        if (strncmp(line, "  - {", 5) != 0)
            break;
        if (input_path_of(line, path, sizeof path) != 0)
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s: malformed inputs entry '%.60s'", meta, line);
        else
            rc = fn(path, ctx, eb);
    }
    if (rc == RD_OK && ferror(f))
        rc = rd_err_set(eb, RD_ERR_IO, "%s: read error", meta);
    free(line); // getline's buffer comes from libc malloc
    fclose(f);
    return rc;
}

int rd_dataset_check_config(const char *dir,
                            const rd_data_config *dc,
                            uint64_t run_seed,
                            rd_errbuf *eb) {
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, dc != NULL);
    char path[RD_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, RD_DATASET_META);
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f);
    if (o != 0)
        return rd_err_set(eb, RD_ERR_IO, "%s: cannot read: %s", path,
                          o > 0 ? "not a regular file" : strerror(errno));
    char line[512];
    int found = 0;
    unsigned long long there = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, CFG_HASH_KEY, strlen(CFG_HASH_KEY)) == 0) {
            found = sscanf(line + strlen(CFG_HASH_KEY), "0x%llx", &there) == 1 ? 1 : -1;
            break;
        }
    fclose(f);
    if (found == 0)
        return RD_OK; // prepared before the hash existed: nothing to compare
    if (found < 0)
        return rd_err_set(eb, RD_ERR_PARSE, "%s: malformed %s line", path, "data_config_hash");
    uint64_t here = rd_dataset_config_hash(dc, run_seed);
    if (here == 0) // the hash could not be computed: say so rather than claim a mismatch
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory while checking the data config",
                          path);
    if (here == (uint64_t)there)
        return dc->source == RD_DATA_SYNTHETIC ? RD_OK : check_inputs(dir, path, dc, eb);
    return rd_err_set(eb, RD_ERR_CONFIG,
                      "data.dir %s holds a dataset prepared from another data configuration "
                      "(data_config_hash 0x%016llx in %s, 0x%016llx for this config: the source, "
                      "input, schema, synthetic parameters, split or negative sampling differ, or "
                      "the run seed that seeds them); remove the folder to prepare it again, or "
                      "point data.dir elsewhere",
                      dir, there, RD_DATASET_META, (unsigned long long)here);
}

// ---------------------------------------------------------------------------------------------
// meta.yaml: a field's missing_mean

// The node of key `key` in mapping node `map`, or NULL.
static yaml_node_t *yaml_map_node(yaml_document_t *doc, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

int rd_dataset_missing_mean(const char *dir, const char *field, double *value, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, field != NULL);
    RD_ARG_CHECK(eb, value != NULL);
    char path[RD_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, RD_DATASET_META);
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(path, &f);
    if (o != 0)
        return rd_err_set(eb, RD_ERR_IO, "%s: cannot read the fill of field '%s': %s", path, field,
                          o > 0 ? "not a regular file" : strerror(errno));
    // The whole file: meta.yaml is small (the vocabulary sizes, not the vocabularies).
    size_t cap = 1 << 14, len = 0;
    char *text = rd_malloc(cap);
    while (text) {
        len += fread(text + len, 1, cap - len, f);
        if (len < cap)
            break;
        char *g = rd_realloc(text, cap * 2);
        if (!g)
            rd_free(text);
        text = g;
        cap *= 2;
    }
    int bad = text && ferror(f);
    fclose(f);
    if (!text)
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory", path);
    if (bad) {
        rd_free(text);
        return rd_err_set(eb, RD_ERR_IO, "%s: read error", path);
    }
    // Only the top-level `fields:` section is parsed. The rest of meta.yaml holds the input
    // files' paths and the schema's texts as their bytes (rd__yaml_str escapes control
    // characters only): a log part named in Latin-1 is not UTF-8, which libyaml refuses, and
    // that must not make the fills unreadable. The fields section holds field names (letters,
    // digits, '_', '-', '.') and numbers; a path's newline is escaped, so a line that starts
    // with `fields:` is the key itself. The section ends at the next top-level key.
    text[len] = '\0'; // len < cap: the loop above stops at a short read
    size_t sec = 0, line0 = 0;
    if (strncmp(text, "fields:", 7) != 0) {
        const char *k = strstr(text, "\nfields:");
        sec = k ? (size_t)(k + 1 - text) : len;
    }
    size_t stop = sec;
    while (stop < len) {
        const char *nl = memchr(text + stop, '\n', len - stop);
        stop = nl ? (size_t)(nl + 1 - text) : len;
        if (stop < len && text[stop] != ' ' && text[stop] != '-' && text[stop] != '#' &&
            text[stop] != '\n')
            break;
    }
    for (size_t i = 0; i < sec; i++)
        line0 += text[i] == '\n';
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        rd_free(text);
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text + sec, stop - sec);
    int rc = RD_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%zu: yaml: %s (reading the fill of field '%s')", path,
                        line0 + parser.problem_mark.line + 1,
                        parser.problem ? parser.problem : "syntax error", field);
        yaml_parser_delete(&parser);
        rd_free(text);
        return rc;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *fields = yaml_map_node(&doc, yaml_document_get_root_node(&doc), "fields");
    yaml_node_t *fd = NULL;
    if (fields && fields->type == YAML_SEQUENCE_NODE)
        for (yaml_node_item_t *it = fields->data.sequence.items.start;
             it < fields->data.sequence.items.top && !fd; it++) {
            yaml_node_t *e = yaml_document_get_node(&doc, *it);
            yaml_node_t *nm = yaml_map_node(&doc, e, "name");
            if (nm && nm->type == YAML_SCALAR_NODE &&
                strcmp((const char *)nm->data.scalar.value, field) == 0)
                fd = e;
        }
    yaml_node_t *mm = yaml_map_node(&doc, fd, "missing_mean");
    yaml_node_t *v = yaml_map_node(&doc, mm, "value");
    if (!fd) {
        rc = rd_err_set(eb, RD_ERR_NOTFOUND, "%s: no field '%s' under fields:", path, field);
    } else if (!v || v->type != YAML_SCALAR_NODE) {
        rc = rd_err_set(eb, RD_ERR_NOTFOUND,
                        "%s: field '%s' records no missing_mean value (the fill of "
                        "`missing: mean`): prepare the dataset again with this build",
                        path, field);
    } else {
        const char *sv = (const char *)v->data.scalar.value;
        char *end = NULL;
        errno = 0;
        double x = strtod(sv, &end);
        if (end == sv || *end != '\0' || errno == ERANGE || !isfinite(x) ||
            fabs(x) > (double)FLT_MAX)
            rc = rd_err_set(eb, RD_ERR_PARSE,
                            "%s: field '%s': missing_mean value '%.40s' is not a finite number",
                            path, field, sv);
        else
            *value = x;
    }
    yaml_document_delete(&doc);
    rd_free(text);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Raw ids (ids.csv): per kind, the keys sorted ascending with each id's place in one arena, so
// that a key is found by binary search. Memory: the ids' bytes plus 24 bytes an id.

typedef struct ids_entry {
    uint64_t key;
    uint64_t off; // into the arena
    uint64_t len;
} ids_entry;

struct rd_dataset_ids {
    ids_entry *e[2]; // users, items
    uint64_t n[2], cap[2];
    char *arena;
    uint64_t alen, acap;
};

static int cmp_ids_entry(const void *a, const void *b) {
    const ids_entry *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

static int ids_add(rd_dataset_ids *v, int kind, const rd_csv_field *id) {
    if (v->n[kind] == v->cap[kind]) {
        uint64_t nc = v->cap[kind] ? v->cap[kind] * 2 : 1024;
        ids_entry *ne = rd_realloc(v->e[kind], nc * sizeof *ne);
        if (!ne)
            return -1;
        v->e[kind] = ne;
        v->cap[kind] = nc;
    }
    if (v->alen + id->len > v->acap) {
        uint64_t nc = v->acap ? v->acap : 65536;
        while (nc < v->alen + id->len)
            nc *= 2;
        char *na = rd_realloc(v->arena, nc);
        if (!na)
            return -1;
        v->arena = na;
        v->acap = nc;
    }
    if (id->len)
        memcpy(v->arena + v->alen, id->ptr, id->len);
    v->e[kind][v->n[kind]++] =
        (ids_entry){rd_feature_key(kind ? "item" : "user", id->ptr, id->len), v->alen, id->len};
    v->alen += id->len;
    return 0;
}

static int field_eq(const rd_csv_field *f, const char *s) {
    return f->len == strlen(s) && memcmp(f->ptr, s, f->len) == 0;
}

int rd_dataset_ids_load(const char *dir, rd_dataset_ids **out, rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, dir != NULL);
    char path[RD_PATH_MAX * 2 + 16];
    snprintf(path, sizeof path, "%s/%s", dir, RD_DATASET_IDS);
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return rd_err_set(eb, RD_ERR_NOTFOUND,
                          "%s: no such file (the dataset keeps no raw ids: a synthetic source, or "
                          "a folder prepared before they were kept; prepare it again)",
                          path);
    rd_csv_options o = {.delimiter = ",", .quote = '"', .max_line = 0};
    rd_csv_reader *r = NULL;
    int rc = rd_csv_open(path, &o, &r, eb);
    if (rc != RD_OK)
        return rc;
    rd_dataset_ids *v = rd_calloc(1, sizeof *v);
    if (!v) {
        rd_csv_close(r);
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    }
    const rd_csv_field *f;
    size_t nf;
    int row = 0;
    while ((rc = rd_csv_next(r, &f, &nf, eb)) == 1) {
        const unsigned long long line = (unsigned long long)rd_csv_line(r);
        if (row++ == 0) {
            if (nf != 2 || !field_eq(&f[0], "kind") || !field_eq(&f[1], "id")) {
                rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s:%llu: not the header line \"kind,id\"",
                                path, line);
                goto fn_fail;
            }
            continue;
        }
        const int kind = nf == 2 && field_eq(&f[0], "user")   ? 0
                         : nf == 2 && field_eq(&f[0], "item") ? 1
                                                              : -1;
        if (kind < 0) {
            rc = rd_err_set(eb, RD_ERR_CORRUPT,
                            "%s:%llu: expected a row \"user,ID\" or \"item,ID\" (%zu columns)",
                            path, line, nf);
            goto fn_fail;
        }
        if (ids_add(v, kind, &f[1]) != 0) {
            rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory reading %s", path);
            goto fn_fail;
        }
    }
    if (rc < 0)
        goto fn_fail;
    if (row == 0) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: empty file (no header line \"kind,id\")", path);
        goto fn_fail;
    }
    for (int k = 0; k < 2; k++)
        if (v->n[k])
            qsort(v->e[k], v->n[k], sizeof *v->e[k], cmp_ids_entry);
    rd_csv_close(r);
    *out = v;
    return RD_OK;
fn_fail:
    rd_csv_close(r);
    rd_dataset_ids_free(v);
    return rc;
}

const char *rd_dataset_ids_find(const rd_dataset_ids *ids, int is_item, uint64_t key, size_t *len) {
    const int k = is_item ? 1 : 0;
    uint64_t lo = 0, hi = ids->n[k];
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (ids->e[k][mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == ids->n[k] || ids->e[k][lo].key != key)
        return NULL;
    *len = (size_t)ids->e[k][lo].len;
    return ids->arena + ids->e[k][lo].off;
}

uint64_t rd_dataset_ids_count(const rd_dataset_ids *ids, int is_item) {
    return ids->n[is_item ? 1 : 0];
}

void rd_dataset_ids_free(rd_dataset_ids *ids) {
    if (!ids)
        return;
    rd_free(ids->e[0]);
    rd_free(ids->e[1]);
    rd_free(ids->arena);
    rd_free(ids);
}

// ---------------------------------------------------------------------------------------------
// Log lines (lines.csv): read as the records are scored, one row a record, never loaded whole.

struct rd_dataset_lines {
    rd_csv_reader *r;
    char path[RD_PATH_MAX * 2 + 16];
    uint64_t n_records;
    uint64_t next; // the record of the next row
};

int rd_dataset_lines_open(const char *dir,
                          uint64_t n_records,
                          rd_dataset_lines **out,
                          rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    RD_ARG_CHECK(eb, out != NULL);
    *out = NULL;
    RD_ARG_CHECK(eb, dir != NULL);
    rd_dataset_lines *l = rd_calloc(1, sizeof *l);
    if (!l)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    l->n_records = n_records;
    int pn = snprintf(l->path, sizeof l->path, "%s/%s", dir, RD_DATASET_LINES);
    if (pn < 0 || (size_t)pn >= sizeof l->path) {
        rd_free(l);
        return rd_err_set(eb, RD_ERR_ARG, "%s: path too long", dir);
    }
    struct stat st;
    if (stat(l->path, &st) != 0 && errno == ENOENT) {
        int rc = rd_err_set(eb, RD_ERR_NOTFOUND,
                            "%s: no such file (the dataset keeps no log lines: a synthetic "
                            "source, or a folder prepared before they were kept; prepare it "
                            "again)",
                            l->path);
        rd_free(l);
        return rc;
    }
    rd_csv_options o = {.delimiter = ",", .quote = '"', .max_line = 0};
    int rc = rd_csv_open(l->path, &o, &l->r, eb);
    const rd_csv_field *f;
    size_t nf;
    if (rc == RD_OK && (rc = rd_csv_next(l->r, &f, &nf, eb)) == 1) {
        rc = nf == 2 && field_eq(&f[0], "file") && field_eq(&f[1], "line")
                 ? RD_OK
                 : rd_err_set(eb, RD_ERR_CORRUPT, "%s:%llu: not the header line \"file,line\"",
                              l->path, (unsigned long long)rd_csv_line(l->r));
    } else if (rc == 0) {
        rc = rd_err_set(eb, RD_ERR_CORRUPT, "%s: empty file (no header line \"file,line\")",
                        l->path);
    }
    if (rc != RD_OK) {
        rd_dataset_lines_close(l);
        return rc;
    }
    *out = l;
    return RD_OK;
}

// The next row: RD_OK with *file, *len and *line, or (*more = 0) the end of the file.
static int lines_next(
    rd_dataset_lines *l, int *more, const char **file, size_t *len, uint64_t *line, rd_errbuf *eb) {
    const rd_csv_field *f;
    size_t nf;
    int rc = rd_csv_next(l->r, &f, &nf, eb);
    if (rc < 0)
        return rc;
    *more = rc == 1;
    if (!*more)
        return RD_OK;
    const unsigned long long at = (unsigned long long)rd_csv_line(l->r);
    int64_t v = 0;
    if (nf != 2 || f[0].len == 0 || rd_csv_parse_i64(&f[1], &v) != 0 || v < 1)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s:%llu: expected a row \"FILE,LINE\" (a file name and a line >= 1; "
                          "%zu columns)",
                          l->path, at, nf);
    if (l->next >= l->n_records)
        return rd_err_set(eb, RD_ERR_CORRUPT,
                          "%s:%llu: more rows than the dataset's %llu records: the file is not "
                          "this dataset's",
                          l->path, at, (unsigned long long)l->n_records);
    *file = f[0].ptr;
    *len = f[0].len;
    *line = (uint64_t)v;
    l->next++;
    return RD_OK;
}

static int lines_short(const rd_dataset_lines *l, rd_errbuf *eb) {
    return rd_err_set(eb, RD_ERR_CORRUPT,
                      "%s: %llu rows, the dataset holds %llu records: the file is not this "
                      "dataset's",
                      l->path, (unsigned long long)l->next, (unsigned long long)l->n_records);
}

int rd_dataset_lines_at(rd_dataset_lines *l,
                        uint64_t rec,
                        const char **file,
                        size_t *len,
                        uint64_t *line,
                        rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    RD_ARG_CHECK(eb, l != NULL && file != NULL && len != NULL && line != NULL);
    RD_ARG_CHECK(eb, rec >= l->next && rec < l->n_records);
    for (;;) {
        int more = 0;
        int rc = lines_next(l, &more, file, len, line, eb);
        if (rc != RD_OK)
            return rc;
        if (!more)
            return lines_short(l, eb);
        if (l->next == rec + 1)
            return RD_OK;
    }
}

int rd_dataset_lines_end(rd_dataset_lines *l, rd_errbuf *eb) {
    rd_errbuf_clear(eb);
    RD_ARG_CHECK(eb, l != NULL);
    for (;;) {
        int more = 0;
        const char *file;
        size_t len;
        uint64_t line;
        int rc = lines_next(l, &more, &file, &len, &line, eb);
        if (rc != RD_OK)
            return rc;
        if (!more)
            return l->next == l->n_records ? RD_OK : lines_short(l, eb);
    }
}

void rd_dataset_lines_close(rd_dataset_lines *l) {
    if (!l)
        return;
    rd_csv_close(l->r);
    rd_free(l);
}
