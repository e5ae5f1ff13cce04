// token_map.c — serving a token store from 2 MiB pages (rd_token_store_map_huge, rd/tokens.h).
//
// For each shard env this handle opens: find LMDB's mapping of data.mdb in /proc/self/maps
// (LMDB does not say where it mapped the file unless MDB_FIXEDMAP), advise it MADV_HUGEPAGE,
// and, when the node allows it, flush the env, drop this process's page-table entries over the
// used part and the file's clean cached pages, and read the used part back through the advised
// mapping with MADV_POPULATE_READ. Afterwards /proc/self/smaps says how much of each mapping is
// resident and how much of it is mapped by PMD entries (2 MiB pages).
//
// Safety: LMDB maps data.mdb MAP_SHARED and read-only (the store never uses MDB_WRITEMAP), so
// dropping page-table entries loses nothing: the next access faults the page in from the page
// cache or the file. POSIX_FADV_DONTNEED only evicts clean pages that no process maps; dirty
// pages are written back first or kept. The call runs between fetches on the handle's thread
// (a handle is used by one thread at a time), so no read transaction is walking the map then.
#define _GNU_SOURCE
#include "rd/tokens.h"

#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/lmdbx.h"

#include "token_store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#if defined(__linux__)
#include <sys/mman.h>
#include <sys/vfs.h>
#define RD_HAVE_MAP_HUGE 1
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 // Linux 5.14; older kernels answer EINVAL
#endif
#define RD_TMPFS_MAGIC 0x01021994
#else
#define RD_HAVE_MAP_HUGE 0
#endif

static const char *const note_text[RD_TOKEN_HUGE_NOTE_COUNT] = {
    "re-read",
    "mode off",
    "transparent huge pages off on this node",
    "store on tmpfs (its mount decides the page size)",
    "shards larger than half of the available memory",
    "mapping of a shard not found",
    "kernel without MADV_HUGEPAGE / MADV_POPULATE_READ",
};

const char *rd_token_huge_note_text(uint32_t note) {
    return note < RD_TOKEN_HUGE_NOTE_COUNT ? note_text[note] : "unknown";
}

// Both builds: empty stats, and the mode checked.
static int start(const rd_token_store *s, int mode, rd_token_map_stats *st, rd_errbuf *eb) {
    // rd_token_store_map_huge's argument checks (RD_ARG_CHECK would name this function).
    if (!st || !s)
        return rd_err_set(eb, RD_ERR_ARG, "rd_token_store_map_huge: invalid argument: %s",
                          !st ? "st != NULL" : "s != NULL");
    memset(st, 0, sizeof *st);
    st->resident_kb = st->huge_kb = -1;
    if (mode != RD_TOKEN_HUGE_OFF && mode != RD_TOKEN_HUGE_AUTO)
        return rd_err_set(eb, RD_ERR_ARG,
                          "token store %s: huge-page mode %d is neither off nor auto",
                          rd__token_store_dir(s), mode);
    return RD_OK;
}

#if RD_HAVE_MAP_HUGE

// 1 if transparent huge pages may be used when asked (enabled: [always] or [madvise]).
static int thp_enabled(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f)
        return 0;
    char line[128] = "";
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    return ok && (strstr(line, "[always]") || strstr(line, "[madvise]"));
}

// MemAvailable in bytes, or -1 if unknown.
static int64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

// The start of this process's mapping of (dev, ino) at offset 0 spanning `len` bytes, or NULL.
static char *find_map(dev_t dev, ino_t ino, size_t len) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return NULL;
    char line[4600];
    char *found = NULL;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long a, b, off, in;
        unsigned mj, mn;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &a, &b, perms, &off, &mj, &mn, &in) == 7 &&
            off == 0 && (ino_t)in == ino && major(dev) == mj && minor(dev) == mn && b - a == len)
            found = (char *)(uintptr_t)a;
        // A longer line (a long path) continues: skip the rest of it.
        while (strchr(line, '\n') == NULL && fgets(line, sizeof line, f))
            ;
    }
    fclose(f);
    return found;
}

// Add the Rss and PMD-mapped kB of the mappings starting at starts[0..n) (/proc/self/smaps).
static void map_usage(char *const *starts, int n, int64_t *rss_kb, int64_t *huge_kb) {
    *rss_kb = *huge_kb = -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return;
    char line[4600];
    int in = 0;
    long long rss = 0, huge = 0, v;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char c;
        if (sscanf(line, "%lx-%lx %c", &a, &b, &c) == 3) {
            in = 0;
            for (int i = 0; i < n; i++)
                in |= starts[i] == (char *)(uintptr_t)a;
        } else if (in) {
            if (sscanf(line, "Rss: %lld kB", &v) == 1)
                rss += v;
            else if (sscanf(line, "FilePmdMapped: %lld kB", &v) == 1 ||
                     sscanf(line, "ShmemPmdMapped: %lld kB", &v) == 1)
                huge += v;
        }
        while (strchr(line, '\n') == NULL && fgets(line, sizeof line, f))
            ;
    }
    fclose(f);
    *rss_kb = rss;
    *huge_kb = huge;
}

// Keep the first reason met.
static void note(rd_token_map_stats *st, uint32_t why) {
    if (st->note == RD_TOKEN_HUGE_REREAD)
        st->note = why;
}

int rd_token_store_map_huge(rd_token_store *s, int mode, rd_token_map_stats *st, rd_errbuf *eb) {
    int rc0 = start(s, mode, st, eb);
    if (rc0 != RD_OK)
        return rc0;
    const double t0 = rd_mono_s();
    rd_token_store_info info;
    rd_token_store_info_get(s, &info);
    const int n = (int)info.n_shards;
    char **starts = rd_calloc((size_t)n + 1, sizeof *starts);
    if (!starts)
        return rd_err_set(eb, RD_ERR_NOMEM, "token store: out of memory");
    int rc = RD_OK, n_found = 0;
    // 1. Every open shard: its used bytes and its mapping.
    for (int i = 0; i < n && rc == RD_OK; i++) {
        MDB_env *env = rd__token_store_shard_env(s, i);
        if (!env)
            continue;
        st->shards++;
        MDB_envinfo ei;
        MDB_stat ms;
        mdb_filehandle_t fd;
        struct stat fs;
        int mrc = mdb_env_info(env, &ei);
        if (!mrc)
            mrc = mdb_env_stat(env, &ms);
        if (!mrc)
            mrc = mdb_env_get_fd(env, &fd);
        if (mrc) {
            rc = rd_lmdbx_error(eb, mrc, "map the token store for serving", rd__token_store_dir(s));
            break;
        }
        st->used_bytes += ((uint64_t)ei.me_last_pgno + 1) * (uint64_t)ms.ms_psize;
        if (fstat(fd, &fs) == 0)
            starts[i] = find_map(fs.st_dev, fs.st_ino, ei.me_mapsize);
        n_found += starts[i] != NULL;
    }
    if (rc != RD_OK || mode == RD_TOKEN_HUGE_OFF || st->shards == 0) {
        st->note = mode == RD_TOKEN_HUGE_OFF ? RD_TOKEN_HUGE_NOTE_OFF : RD_TOKEN_HUGE_REREAD;
        goto done;
    }
    // 2. May this node map them in 2 MiB pages, and should the shards be read back?
    int64_t avail = mem_available();
    int reread = 1;
    if (!thp_enabled()) {
        st->note = RD_TOKEN_HUGE_NOTE_THP_OFF;
        goto done;
    }
    if (avail >= 0 && st->used_bytes > (uint64_t)avail / 2) {
        note(st, RD_TOKEN_HUGE_NOTE_TOO_BIG);
        reread = 0;
    }
    if (n_found < (int)st->shards)
        note(st, RD_TOKEN_HUGE_NOTE_NO_MAP);
    for (int i = 0; i < n && rc == RD_OK; i++) {
        MDB_env *env = rd__token_store_shard_env(s, i);
        if (!env || !starts[i])
            continue;
        MDB_envinfo ei;
        MDB_stat ms;
        mdb_filehandle_t fd;
        mdb_env_info(env, &ei);
        mdb_env_stat(env, &ms);
        mdb_env_get_fd(env, &fd);
        size_t used = ((size_t)ei.me_last_pgno + 1) * ms.ms_psize;
        if (used > ei.me_mapsize)
            used = ei.me_mapsize;
        if (madvise(starts[i], ei.me_mapsize, MADV_HUGEPAGE) != 0) {
            note(st, RD_TOKEN_HUGE_NOTE_NO_KERNEL);
            continue;
        }
        struct statfs sfs;
        if (fstatfs(fd, &sfs) == 0 && (unsigned long)sfs.f_type == RD_TMPFS_MAGIC) {
            note(st, RD_TOKEN_HUGE_NOTE_TMPFS);
            continue;
        }
        if (!reread)
            continue;
        // Flush first: POSIX_FADV_DONTNEED keeps dirty pages, which would stay small.
        if (rd__token_store_shard_writable(s, i)) {
            int mrc = mdb_env_sync(env, 1);
            if (mrc) {
                rc = rd_lmdbx_error(eb, mrc, "flush before the huge-page re-read",
                                    rd__token_store_dir(s));
                break;
            }
        }
        (void)madvise(starts[i], used, MADV_DONTNEED);
        (void)posix_fadvise(fd, 0, (off_t)used, POSIX_FADV_DONTNEED);
        if (madvise(starts[i], used, MADV_POPULATE_READ) != 0) {
            if (errno == EINVAL || errno == ENOSYS) {
                note(st, RD_TOKEN_HUGE_NOTE_NO_KERNEL); // faults bring the pages back lazily
                continue;
            }
            if (errno == EFAULT) {
                rc = rd_err_set(eb, RD_ERR_IO,
                                "token store %s: shard %d: data.mdb is shorter than its map "
                                "(%zu bytes in use) while reading it back",
                                rd__token_store_dir(s), i, used);
                break;
            }
            // ENOMEM, EAGAIN, EINTR: what was read stays; the rest faults in on use.
            continue;
        }
        st->reread++;
    }
done:
    if (n_found > 0)
        map_usage(starts, n, &st->resident_kb, &st->huge_kb);
    rd_free(starts);
    st->seconds = rd_mono_s() - t0;
    return rc;
}

#else // !RD_HAVE_MAP_HUGE

int rd_token_store_map_huge(rd_token_store *s, int mode, rd_token_map_stats *st, rd_errbuf *eb) {
    int rc0 = start(s, mode, st, eb);
    if (rc0 != RD_OK)
        return rc0;
    st->note = mode == RD_TOKEN_HUGE_OFF ? RD_TOKEN_HUGE_NOTE_OFF : RD_TOKEN_HUGE_NOTE_NO_KERNEL;
    return RD_OK;
}

#endif
