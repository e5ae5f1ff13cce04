// tokentool.c — store compaction, fetch printing and the user listing for `recdistill tokens`
// (rd/tokentool.h).
#include "rd/tokentool.h"

#include "rd/alloc.h"
#include "rd/lmdbx.h"
#include "rd/writer_lock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int copy_small(const char *from, const char *to, rd_errbuf *eb) {
    FILE *f = NULL;
    int o = rd_lmdbx_fopen_regular(from, &f);
    if (o != 0)
        return rd_err_set(eb, o < 0 && errno == ENOENT ? RD_ERR_NOTFOUND : RD_ERR_IO, "%s: %s",
                          from, o > 0 ? "not a regular file" : strerror(errno));
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    int bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad)
        return rd_err_set(eb, RD_ERR_IO, "%s: read error (or larger than a MANIFEST)", from);
    return rd_lmdbx_write_file_atomic(to, buf, n, eb);
}

// rm -r of a directory of shard directories (two levels), for cleanup after a failure.
static void remove_partial(const char *part, int n_shards) {
    char p[4200];
    for (int s = 0; s < n_shards; s++) {
        snprintf(p, sizeof p, "%s/shard-%04d/data.mdb", part, s);
        unlink(p);
        snprintf(p, sizeof p, "%s/shard-%04d/lock.mdb", part, s);
        unlink(p);
        snprintf(p, sizeof p, "%s/shard-%04d", part, s);
        rmdir(p);
    }
    snprintf(p, sizeof p, "%s/MANIFEST", part);
    unlink(p);
    snprintf(p, sizeof p, "%s/DATASET", part);
    unlink(p);
    rmdir(part);
}

static int
compact_locked(const char *dir, const char *out, const rd_token_store_info *sinfo, rd_errbuf *eb);

int rd_tokentool_compact(const char *dir, const char *out, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, dir != NULL);
    RD_ARG_CHECK(eb, out != NULL);
    rd_token_store_info info;
    int rc = rd_token_store_read_manifest(dir, &info, eb);
    if (rc != RD_OK)
        return rc;
    // A copy taken while a launch builds into the store (or gc deletes from it) would be a cut
    // through that build, shard by shard: the copier takes the store's writer lock, so it waits
    // for no one and is refused while a writer holds the store.
    int lock = -1;
    if ((rc = rd_token_store_lock(dir, "tokens compact", &lock, eb)) != RD_OK) {
        // A store this process may not write (a read-only mount, another user's folder) could
        // not even get its lock file opened for writing, and the copy only reads it: hold the
        // lock file shared instead, which still refuses the copy while a writer holds it (and
        // keeps writers out until it is done). No lock file to hold: no writer ever locked it.
        if (rc != RD_ERR_IO || access(dir, W_OK) == 0 || (errno != EROFS && errno != EACCES))
            return rc;
        rd_errbuf_clear(eb);
        char holder[256];
        int held = rd_writer_lock_shared(dir, NULL, &lock, holder, sizeof holder);
        if (held == 1)
            return rd_err_set(eb, RD_ERR_STATE,
                              "token store %s is in use by another writer (%s): one launch or "
                              "tool writes it at a time; wait for it to end",
                              dir, holder[0] ? holder : "holder unknown");
    }
    rc = compact_locked(dir, out, &info, eb);
    rd_token_store_unlock(lock);
    return rc;
}

static int
compact_locked(const char *dir, const char *out, const rd_token_store_info *sinfo, rd_errbuf *eb) {
    rd_token_store_info info = *sinfo;
    int rc;
    struct stat st;
    if (stat(out, &st) == 0)
        return rd_err_set(eb, RD_ERR_EXISTS, "%s exists: give a new directory", out);
    // Verify the source first: LMDB's compacting walk trusts the page structure, and on a
    // damaged page it can overrun its own buffers (a heap corruption, not a fault a guard can
    // catch). One read pass more; a damaged store is refused with verify's message.
    rd_token_open_opts oo = {0};
    oo.mode = RD_TOKEN_READ_ONLY;
    rd_token_store *vs = NULL;
    rc = rd_token_store_open(dir, &oo, &vs, eb);
    if (rc == RD_OK)
        rc = rd_token_store_verify(vs, NULL, eb);
    rd_token_store_destroy(vs);
    // The DATASET record is copied as it is: a damaged one, which `tokens verify` refuses, is
    // refused here too, before anything is written (compact exited 0 with a copy that did not
    // verify). A store not bound to a dataset yet has none, which is fine.
    if (rc == RD_OK) {
        rd_token_dataset ds;
        rc = rd_token_store_read_dataset(dir, &ds, eb);
        if (rc == RD_ERR_NOTFOUND) {
            rd_errbuf_clear(eb);
            rc = RD_OK;
        }
    }
    if (rc != RD_OK) {
        rd_err_prefix(eb, "compact: the source store does not verify: ");
        return rc;
    }
    // Missing parents of --out are created as before, but removed again when the run fails
    // (only those this run made); the copy is built in a folder of its own beside --out.
    char part[4096], created[4096];
    if (strlen(out) + 96 > sizeof part)
        return rd_err_set(eb, RD_ERR_ARG, "output path too long");
    if ((rc = rd_lmdbx_mkdir_parents(out, created, sizeof created, eb)) != RD_OK)
        return rc;
    if ((rc = rd_lmdbx_mkdir_partial(out, part, sizeof part, eb)) != RD_OK) {
        rd_lmdbx_rmdir_created(out, created);
        return rc;
    }
    for (uint32_t s = 0; rc == RD_OK && s < info.n_shards; s++) {
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/shard-%04u", dir, s);
        snprintf(dst, sizeof dst, "%s/shard-%04u", part, s);
        if ((rc = rd_lmdbx_mkdir_p(dst, eb)) != RD_OK)
            break;
        rd_lmdbx_opts lo = {.read_only = 1, .max_dbs = 4};
        MDB_env *env = NULL;
        if ((rc = rd_lmdbx_env_open(src, &lo, &env, eb)) != RD_OK)
            break;
        // One read snapshot: the copy is consistent even while the writer commits. LMDB walks
        // the source's pages in this thread (and writes in one of its own): a damaged page is
        // an error, not a crash (rd/lmdbx.h). After one, the walk's writer thread stays blocked
        // until the process exits, and the env is closed with its snapshot still registered.
        int lrc = 0, faulted = 0;
        RD_LMDBX_GUARDED(lrc, faulted, src, eb, mdb_env_copy2(env, dst, MDB_CP_COMPACT));
        if (faulted) {
            rd_err_prefix(eb, "token store ");
            rc = lrc;
        } else if (lrc) {
            // The copy is written under --out: a full disk there is named, not only the source.
            char what[4300];
            snprintf(what, sizeof what, "compacting copy of %s into --out", src);
            rc = rd_lmdbx_error(eb, lrc, what, out);
        }
        rd_lmdbx_env_close(env);
        // The copy must be on disk before the MANIFEST and the rename below publish it: a crash
        // after them must not leave a store whose shards are empty or cut short.
        if (rc == RD_OK) {
            char data[4300];
            snprintf(data, sizeof data, "%s/data.mdb", dst);
            rc = rd_lmdbx_fsync_path(data, eb);
            if (rc == RD_OK)
                rc = rd_lmdbx_fsync_path(dst, eb);
        }
    }
    if (rc == RD_OK) {
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/MANIFEST", dir);
        snprintf(dst, sizeof dst, "%s/MANIFEST", part);
        rc = copy_small(src, dst, eb);
    }
    if (rc == RD_OK) {
        // The dataset the tokens belong to, when the store is bound to one.
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/DATASET", dir);
        snprintf(dst, sizeof dst, "%s/DATASET", part);
        rc = copy_small(src, dst, eb);
        if (rc == RD_ERR_NOTFOUND) {
            rd_errbuf_clear(eb);
            rc = RD_OK;
        }
    }
    if (rc == RD_OK && rename(part, out) != 0)
        rc =
            errno == EEXIST || errno == ENOTEMPTY
                ? rd_err_set(eb, RD_ERR_EXISTS, "%s exists (written meanwhile by another run)", out)
                : rd_err_set(eb, RD_ERR_IO, "rename %s to %s: %s", part, out, strerror(errno));
    int renamed = rc == RD_OK;
    if (renamed)
        rc = rd_lmdbx_fsync_parents(out, created, eb); // the rename, and folders made for it
    if (rc != RD_OK && !renamed) {
        remove_partial(part, (int)info.n_shards);
        rd_lmdbx_rmdir_created(out, created);
    }
    rd_lmdbx_pending_forget(part);
    return rc;
}

int rd_tokentool_print_fetch(rd_token_store *s,
                             uint64_t user,
                             int64_t before_t,
                             const uint64_t *before_id,
                             size_t L,
                             FILE *f,
                             uint32_t *n_found,
                             rd_errbuf *eb) {
    if (n_found)
        *n_found = 0;
    // Before the buffers of L slots are sized: an L past the store's limit would be refused by
    // the fetch only after L * dim had been allocated (or had overflowed).
    RD_ARG_CHECK(eb, s != NULL);
    RD_ARG_CHECK(eb, f != NULL);
    RD_ARG_CHECK(eb, L >= 1 && L <= RD_TOKEN_MAX_L);
    rd_token_store_info in;
    rd_token_store_info_get(s, &in);
    size_t d = in.dim, S = in.n_side;
    float *tok = rd_xmalloc(L * d * sizeof *tok), *lab = rd_xmalloc(L * sizeof *lab);
    float *side = S ? rd_xmalloc(L * S * sizeof *side) : NULL;
    uint64_t *items = rd_xmalloc(L * sizeof *items), *ids = rd_xmalloc(L * sizeof *ids);
    int64_t *ts = rd_xmalloc(L * sizeof *ts);
    uint8_t *mask = rd_xmalloc(L);
    uint32_t nf = 0;
    rd_token_fetch_out o = {.tokens = tok,
                            .labels = lab,
                            .items = items,
                            .ts = ts,
                            .ids = ids,
                            .mask = mask,
                            .n_found = &nf,
                            .side = side};
    int rc = rd_token_store_fetch_batch(s, 1, &user, &before_t, before_id, L, &o, eb);
    if (rc == RD_OK) {
        fprintf(f, "# user %llu before %lld", (unsigned long long)user, (long long)before_t);
        if (before_id)
            fprintf(f, " id %llu", (unsigned long long)*before_id);
        fprintf(f, " L %zu n_found %u dim %zu", L, nf, d);
        if (S)
            fprintf(f, " side %zu", S);
        fputc('\n', f);
        for (uint32_t i = 0; i < nf; i++) {
            fprintf(f, "%u\t%lld\t%llu\t%.9g\t%llu", i, (long long)ts[i],
                    (unsigned long long)ids[i], (double)lab[i], (unsigned long long)items[i]);
            for (size_t j = 0; j < S; j++)
                fprintf(f, "\t%.9g", (double)side[i * S + j]);
            for (size_t j = 0; j < d; j++)
                fprintf(f, "\t%.9g", (double)tok[i * d + j]);
            fputc('\n', f);
        }
    }
    rd_free(tok);
    rd_free(lab);
    rd_free(side);
    rd_free(items);
    rd_free(ids);
    rd_free(ts);
    rd_free(mask);
    if (n_found)
        *n_found = rc == RD_OK ? nf : 0;
    return rc;
}

// ---------------------------------------------------------------------------------------------
// User listing

typedef struct {
    FILE *f;
    uint64_t limit, listed;
    int have;         // a user is open in (user, n, t_min, t_max)
    int shard;        // its shard
    uint64_t user, n; // its key and records so far
    int64_t t_min, t_max;
} users_ctx;

static void users_flush(users_ctx *c) {
    if (!c->have)
        return;
    fprintf(c->f, "%llu\t%llu\t%lld\t%lld\t%d\n", (unsigned long long)c->user,
            (unsigned long long)c->n, (long long)c->t_min, (long long)c->t_max, c->shard);
    c->listed++;
    c->have = 0;
}

// Records come in key order, user first, so a user's records are consecutive (and one user lives
// in one shard): a new key closes the previous user's line.
static int users_visit(const rd_token_record *r, void *vc) {
    users_ctx *c = vc;
    if (c->have && r->user == c->user) {
        c->n++;
        c->t_min = r->ts < c->t_min ? r->ts : c->t_min;
        c->t_max = r->ts > c->t_max ? r->ts : c->t_max;
        return 0;
    }
    users_flush(c);
    if (c->listed >= c->limit)
        return 1; // a further user exists: stop
    c->have = 1;
    c->shard = r->shard;
    c->user = r->user;
    c->n = 1;
    c->t_min = c->t_max = r->ts;
    return 0;
}

int rd_tokentool_print_users(
    rd_token_store *s, uint64_t limit, FILE *f, uint64_t *listed, int *more, rd_errbuf *eb) {
    RD_ARG_CHECK(eb, s != NULL);
    RD_ARG_CHECK(eb, f != NULL);
    RD_ARG_CHECK(eb, limit > 0);
    users_ctx c;
    memset(&c, 0, sizeof c);
    c.f = f;
    c.limit = limit;
    fprintf(f, "# user\trecords\tt_min\tt_max\tshard\n");
    int rc = rd_token_store_iterate(s, -1, users_visit, &c, eb);
    int stopped = rc == 1;
    if (stopped)
        rc = RD_OK;
    if (rc == RD_OK)
        users_flush(&c);
    if (listed)
        *listed = c.listed;
    if (more)
        *more = stopped;
    return rc;
}
