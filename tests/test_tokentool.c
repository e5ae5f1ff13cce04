// test_tokentool.c — `recdistill tokens ...` (app/cmd_tokens.c, rd/tokentool.h) on a real store:
//   - while a forked writer appends batches, the read-only commands (stats, verify, fetch,
//     compact) run again and again through the CLI: they never fail, the writer is never blocked
//     (it finishes all its batches), and every answer is a consistent snapshot (the record count
//     is a whole number of batches, never decreasing; fetch returns whole batches only);
//   - afterwards `tokens fetch` prints exactly what rd_token_store_fetch_batch returns (the call
//     a PS rank runs for the training path's RD_TOKEN_OP_FETCH), byte-exact floats;
//   - compact writes a verified copy with the same records; gc deletes exactly the old ones;
//   - bad input: missing store, corrupt MANIFEST, bad arguments (exit 2), an existing --out;
//   - compact --out a/b/c that fails removes the parents it created, and only those.
//   - one writer per store: while another process holds the store's writer lock, a second
//     writer, compact and `tokens gc` are refused naming the store and the holder, and change
//     nothing; stats and verify still read; the lock dies with its (SIGKILLed) holder.
//   - `tokens users` lists the user keys fetch takes (count, times, shard; --limit), and a
//     fetch that finds nothing says "no tokens for user K" on stderr; a damaged record met while
//     listing leaves stdout empty (exit 1), and a shard's data.mdb that is a FIFO or a folder is
//     refused at once by every command.
// The CLI is $RD_BINARY_DIR/recdistill. ctest sets RD_BINARY_DIR, and there a missing CLI fails
// the cases that run it; run by hand without RD_BINARY_DIR they skip, saying why.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fsync_log.h" // fsync() records what is synced (test_compact_durable)
#include "rd/alloc.h"
#include "rd/tokens.h"
#include "rd/tokentool.h"
#include "tmp_root.h"

#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { DIM = 4, BATCH = 40, BATCHES = 150 };
#define USER 777u

static char g_root[256], g_rd[512];

static float tokval(int64_t t, size_t j) {
    return (float)t * 0.001f + (float)j;
}

// Run a shell command; its stdout into out (cap bytes). @return the exit status.
static int run(char *out, size_t cap, const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0, got;
    while (out && n + 1 < cap && (got = fread(out + n, 1, cap - 1 - n, p)) > 0)
        n += got;
    if (out)
        out[n] = 0;
    else
        while (fgetc(p) != EOF)
            ;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void writer(const char *dir) {
    rd_token_open_opts o;
    memset(&o, 0, sizeof o);
    o.mode = RD_TOKEN_WRITE;
    o.no_sync = 1;
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_token_store_open(dir, &o, &s, &eb) != RD_OK)
        _exit(2);
    uint64_t users[BATCH], ids[BATCH];
    int64_t ts[BATCH];
    float tok[BATCH * DIM];
    for (int b = 0; b < BATCHES; b++) {
        for (int i = 0; i < BATCH; i++) {
            int64_t t = (int64_t)b * BATCH + i;
            users[i] = USER;
            ts[i] = t;
            ids[i] = (uint64_t)t;
            for (size_t j = 0; j < DIM; j++)
                tok[i * DIM + j] = tokval(t, j);
        }
        rd_token_batch bt = {BATCH, users, ts, ids, tok, NULL, NULL, NULL, NULL};
        if (rd_token_store_append(s, &bt, &eb) != RD_OK)
            _exit(3);
        usleep(2000);
    }
    rd_token_store_destroy(s);
    _exit(0);
}

static unsigned long long field_after(const char *text, const char *label) {
    const char *p = strstr(text, label);
    return p ? strtoull(p + strlen(label), NULL, 10) : (unsigned long long)-1;
}

// g_rd = $RD_BINARY_DIR/recdistill; 0 when RD_BINARY_DIR is not set (the test run by hand, or by
// tools/valgrind-unit.sh). ctest sets it (tests/CMakeLists.txt), so a recdistill that is not
// there fails the case: a skip would pass under ctest unseen, 7 cases untested.
static int find_cli(void) {
    const char *d = getenv("RD_BINARY_DIR");
    if (!d || !*d)
        return 0;
    int n = snprintf(g_rd, sizeof g_rd, "%s/recdistill", d);
    if (n < 0 || (size_t)n >= sizeof g_rd)
        fail_msg("RD_BINARY_DIR is too long: %s", d);
    if (access(g_rd, X_OK) != 0)
        fail_msg("%s: %s (RD_BINARY_DIR is set, as ctest sets it: build recdistill first)", g_rd,
                 strerror(errno));
    return 1;
}

// A case that runs the CLI: skipped, saying why, where find_cli finds none.
static void need_cli(void) {
    if (!find_cli()) {
        print_message("skipped: RD_BINARY_DIR is not set (ctest sets it to the build folder, "
                      "which holds recdistill)\n");
        skip();
    }
}

// A new empty fp32 store of `shards` shards at dir, open (the caller destroys it).
static rd_token_store *create_store(const char *dir, int shards) {
    rd_token_store_opts co = {DIM, RD_TOKEN_FP32, shards, 0, 0, 4096, 1, 0, 0};
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_OK);
    return s;
}

// A store of `shards` shards at dir holding one token of USER (at time 10), closed.
static void make_one_token_store(const char *dir, int shards) {
    rd_token_store *s = create_store(dir, shards);
    uint64_t users[1] = {USER}, ids[1] = {1};
    int64_t ts[1] = {10};
    float tok[DIM] = {0};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_batch bt = {1, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    assert_int_equal(rd_token_store_append(s, &bt, &eb), RD_OK);
    rd_token_store_destroy(s);
}

static void test_tokens_cli(void **state) {
    (void)state;
    need_cli();
    char dir[300], out[1 << 16];
    snprintf(dir, sizeof dir, "%s/store", g_root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store *s = create_store(dir, 1);
    rd_token_store_destroy(s); // never fork with an open env
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        writer(dir);

    // 1. Read-only commands while the writer appends.
    int status = 0, done = 0, rounds = 0, grew = 0;
    unsigned long long last = 0;
    while (!done) {
        done = waitpid(pid, &status, WNOHANG) == pid;
        assert_int_equal(run(out, sizeof out, "%s tokens stats %s", g_rd, dir), 0);
        unsigned long long n = field_after(out, "total: ");
        assert_true(n % BATCH == 0); // a whole number of batches: a snapshot
        assert_true(n >= last);
        grew += n > last;
        last = n;
        assert_int_equal(run(out, sizeof out, "%s tokens verify %s", g_rd, dir), 0);
        assert_int_equal(run(out, sizeof out,
                             "%s tokens fetch %s --user %u --before 99999999 --n 7", g_rd, dir,
                             USER),
                         0);
        unsigned long long nf = field_after(out, "n_found ");
        if (nf == 7) { // the newest record ends a batch
            const char *lastline = strrchr(out, '\n');
            while (lastline > out && lastline[-1] != '\n')
                lastline--;
            long long slot, ts;
            assert_int_equal(sscanf(lastline, "%lld\t%lld", &slot, &ts), 2);
            assert_true(ts % BATCH == BATCH - 1);
        }
        if (rounds % 10 == 0) {
            char cp[400];
            snprintf(cp, sizeof cp, "%s/copy%d", g_root, rounds);
            assert_int_equal(run(NULL, 0, "%s tokens compact %s --out %s", g_rd, dir, cp), 0);
            assert_int_equal(run(out, sizeof out, "%s tokens stats %s", g_rd, cp), 0);
            assert_true(field_after(out, "total: ") % BATCH == 0);
        }
        rounds++;
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); // the writer finished every batch
    print_message("tokens CLI: %d rounds during the writes, %d saw new batches\n", rounds, grew);
    assert_true(rounds >= 2);

    // 2. fetch == rd_token_store_fetch_batch (the PS side of the training path's fetch).
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.mode = RD_TOKEN_READ_ONLY;
    assert_int_equal(rd_token_store_open(dir, &oo, &s, &eb), RD_OK);
    const size_t L = 50;
    const int64_t before = 3333;
    float tok[L * DIM];
    int64_t ts[L];
    uint64_t ids[L], user = USER;
    uint32_t nfound = 0;
    rd_token_fetch_out fo = {.tokens = tok, .ts = ts, .ids = ids, .n_found = &nfound};
    assert_int_equal(rd_token_store_fetch_batch(s, 1, &user, &before, NULL, L, &fo, &eb), RD_OK);
    // --before-id: the record at `before` (its id is its time) counts when its id is lower.
    int64_t ts_id[L];
    uint64_t ids_id[L], bid = (uint64_t)before + 1;
    uint32_t nf_id = 0;
    float tok_id[L * DIM];
    rd_token_fetch_out fi = {.tokens = tok_id, .ts = ts_id, .ids = ids_id, .n_found = &nf_id};
    assert_int_equal(rd_token_store_fetch_batch(s, 1, &user, &before, &bid, L, &fi, &eb), RD_OK);
    assert_int_equal(nf_id, L);
    assert_true(ts_id[L - 1] == before && ids_id[L - 1] == (uint64_t)before);
    assert_int_equal(run(out, sizeof out,
                         "%s tokens fetch %s --user %u --before %lld --before-id %llu --n %zu",
                         g_rd, dir, USER, (long long)before, (unsigned long long)bid, L),
                     0);
    assert_non_null(strstr(out, " id 3334 L 50 n_found 50"));
    const char *lastline = strrchr(out, '\n');
    while (lastline > out && lastline[-1] != '\n')
        lastline--;
    long long slot_l, ts_l;
    assert_int_equal(sscanf(lastline, "%lld\t%lld", &slot_l, &ts_l), 2);
    assert_int_equal(ts_l, before); // the newest line is the record at `before` itself
    assert_int_equal(run(out, sizeof out, "%s tokens gc %s --before 1 --before-id 5", g_rd, dir),
                     2);
    // Id 0 is the dataset's first event (the store holds a record of id 0 here): the records at
    // T below it are none, so the answer is the plain fetch's, and the header names the id. It
    // was refused as "not an instance id (1..2^64-1)".
    char plain[4096];
    assert_int_equal(
        run(plain, sizeof plain, "%s tokens fetch %s --user %u --before 5 --n 3", g_rd, dir, USER),
        0);
    assert_int_equal(run(out, sizeof out,
                         "%s tokens fetch %s --user %u --before 5 --before-id 0 --n 3", g_rd, dir,
                         USER),
                     0);
    assert_non_null(strstr(out, " before 5 id 0 L 3 n_found 3"));
    assert_string_equal(strchr(out, '\n'), strchr(plain, '\n'));
    assert_int_equal(run(out, sizeof out,
                         "%s tokens fetch %s --user %u --before 5 --before-id -1 --n 3 2>&1", g_rd,
                         dir, USER),
                     2);
    assert_non_null(strstr(out, "--before-id: '-1' is not an instance id (0..2^64-1)"));
    rd_token_store_destroy(s);
    assert_int_equal(run(out, sizeof out, "%s tokens fetch %s --user %u --before %lld --n %zu",
                         g_rd, dir, USER, (long long)before, L),
                     0);
    assert_int_equal(field_after(out, "n_found "), nfound);
    assert_int_equal(nfound, L);
    char *line = strchr(out, '\n') + 1;
    for (uint32_t i = 0; i < nfound; i++) {
        unsigned slot;
        long long t;
        unsigned long long id, item;
        float lab, v[DIM];
        int k = sscanf(line, "%u\t%lld\t%llu\t%f\t%llu\t%f\t%f\t%f\t%f", &slot, &t, &id, &lab,
                       &item, &v[0], &v[1], &v[2], &v[3]);
        assert_int_equal(k, 9);
        assert_int_equal(t, ts[i]);
        assert_int_equal(id, ids[i]);
        for (size_t j = 0; j < DIM; j++)
            assert_true(v[j] == tok[i * DIM + j]);
        line = strchr(line, '\n') + 1;
    }
    assert_true(ts[nfound - 1] == before - 1);

    // 3. compact (same records, verified) and gc (exactly the old ones).
    char cp[400];
    snprintf(cp, sizeof cp, "%s/final", g_root);
    assert_int_equal(run(NULL, 0, "%s tokens compact %s --out %s", g_rd, dir, cp), 0);
    assert_int_equal(run(out, sizeof out, "%s tokens verify %s", g_rd, cp), 0);
    assert_non_null(strstr(out, "6000 records checked"));
    assert_int_equal(run(out, sizeof out, "%s tokens gc %s --before 1000", g_rd, cp), 0);
    assert_non_null(strstr(out, "deleted 1000 records"));
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s", g_rd, cp), 0);
    assert_int_equal(field_after(out, "total: "), 5000);
    assert_non_null(strstr(out, "time 1000..5999"));
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s", g_rd, dir), 0);
    assert_int_equal(field_after(out, "total: "), 6000); // the input is untouched

    // 4. Bad input.
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s/none 2>&1", g_rd, g_root), 1);
    assert_non_null(strstr(out, "none"));
    assert_int_equal(run(NULL, 0, "%s tokens fetch %s --before 5 --n 3 2>/dev/null", g_rd, dir), 2);
    assert_int_equal(
        run(NULL, 0, "%s tokens fetch %s --user 1 --before 5 --n 0 2>/dev/null", g_rd, dir), 2);
    assert_int_equal(run(NULL, 0, "%s tokens frob %s 2>/dev/null", g_rd, dir), 2);
    assert_int_equal(run(out, sizeof out, "%s tokens compact %s --out %s 2>&1", g_rd, dir, cp), 1);
    assert_non_null(strstr(out, "exists"));
    char man[420];
    snprintf(man, sizeof man, "%s/MANIFEST", cp);
    FILE *f = fopen(man, "r+b");
    assert_non_null(f);
    fseek(f, 20, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    assert_int_equal(run(out, sizeof out, "%s tokens verify %s 2>&1", g_rd, cp), 1);
    assert_non_null(strstr(out, "MANIFEST"));
}

// `tokens compact --out a/b/c` creates the missing parents a/ and a/b/; a compaction that fails
// (here: shard 1 of the store is gone) removes exactly those again, never a folder that existed,
// and leaves no partial copy. A compaction that succeeds keeps them.
static void test_compact_out_parents(void **state) {
    (void)state;
    char dir[300], shard[340], out[400], top[300], keep[300], cmd[700];
    snprintf(dir, sizeof dir, "%s/store2", g_root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store *s = create_store(dir, 2);
    rd_token_store_destroy(s);
    // 1. Success: parents made and kept, a store that verifies.
    snprintf(out, sizeof out, "%s/ok1/ok2/copy", g_root);
    assert_int_equal(rd_tokentool_compact(dir, out, &eb), RD_OK);
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.mode = RD_TOKEN_READ_ONLY;
    assert_int_equal(rd_token_store_open(out, &oo, &s, &eb), RD_OK);
    rd_token_store_destroy(s);
    // 2. Failures after the parents were made.
    snprintf(shard, sizeof shard, "%s/shard-0001", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", shard);
    assert_int_equal(system(cmd), 0);
    struct stat st;
    snprintf(top, sizeof top, "%s/new1", g_root);
    snprintf(out, sizeof out, "%s/new2/copy", top);
    rd_errbuf_clear(&eb);
    assert_int_not_equal(rd_tokentool_compact(dir, out, &eb), RD_OK);
    assert_non_null(strstr(eb.msg, "shard-0001"));
    assert_int_not_equal(lstat(top, &st), 0);
    snprintf(keep, sizeof keep, "%s/keep", g_root);
    assert_int_equal(mkdir(keep, 0755), 0);
    snprintf(out, sizeof out, "%s/a/b/copy", keep);
    assert_int_not_equal(rd_tokentool_compact(dir, out, &eb), RD_OK);
    assert_int_equal(lstat(keep, &st), 0);
    snprintf(out, sizeof out, "%s/a", keep);
    assert_int_not_equal(lstat(out, &st), 0);
    snprintf(out, sizeof out, "%s/copy", keep);
    assert_int_not_equal(rd_tokentool_compact(dir, out, &eb), RD_OK);
    assert_int_equal(lstat(keep, &st), 0);
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", keep);
    assert_int_equal(system(cmd), 0); // no partial copy left
}

// A store whose DATASET record is damaged (empty, cut, garbage) is refused by compact, as verify
// refuses it, with nothing written: compact used to copy it along and exit 0, a copy that did
// not verify. One without a DATASET (not bound to a dataset yet) still compacts.
static void test_compact_damaged_dataset(void **state) {
    (void)state;
    char dir[300], ds[340], out[400], cmd[900];
    snprintf(dir, sizeof dir, "%s/store_ds", g_root);
    snprintf(ds, sizeof ds, "%s/DATASET", dir);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store *s = create_store(dir, 1);
    rd_token_store_destroy(s);
    const char *damage[] = {"", "RDTOKDS1", "RDTOKDS1xxxxxxxxxxxxxxxx"};
    for (int k = 0; k < 3; k++) {
        FILE *f = fopen(ds, "wb");
        assert_non_null(f);
        fputs(damage[k], f);
        fclose(f);
        snprintf(out, sizeof out, "%s/ds_copy%d", g_root, k);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_tokentool_compact(dir, out, &eb), RD_ERR_CORRUPT);
        assert_non_null(strstr(eb.msg, "DATASET"));
        assert_non_null(strstr(eb.msg, "not a dataset record"));
        struct stat st;
        assert_int_not_equal(lstat(out, &st), 0);
        snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -q ds_copy", g_root);
        assert_int_not_equal(system(cmd), 0); // no partial folder either
    }
    assert_int_equal(unlink(ds), 0);
    snprintf(out, sizeof out, "%s/ds_copy_unbound", g_root);
    assert_int_equal(rd_tokentool_compact(dir, out, &eb), RD_OK);
    rd_token_dataset got;
    assert_int_equal(rd_token_store_read_dataset(out, &got, &eb), RD_ERR_NOTFOUND);
    // A bound store's copy is bound to the same dataset (catches compact leaving DATASET out:
    // the copy would then take the tokens of any dataset).
    rd_token_dataset bound = {.n_events = 12345, .records_crc = 0xdecafbadu};
    assert_int_equal(rd_token_store_bind_dataset(dir, &bound, NULL, &eb), RD_OK);
    snprintf(out, sizeof out, "%s/ds_copy_bound", g_root);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tokentool_compact(dir, out, &eb), RD_OK);
    memset(&got, 0, sizeof got);
    assert_int_equal(rd_token_store_read_dataset(out, &got, &eb), RD_OK);
    assert_true(got.n_events == 12345 && got.records_crc == 0xdecafbadu);
}

// A compacted copy is durable once compact returns: every shard's data.mdb (which LMDB's copy
// writes without syncing) is synced before the rename that publishes the copy, and the folder
// holding --out is synced after it. Before, only the MANIFEST and the partial folder were.
static void test_compact_durable(void **state) {
    (void)state;
    char dir[300], out[400], want[600], root[4096];
    snprintf(dir, sizeof dir, "%s/store_dur", g_root);
    rd_token_store *s = create_store(dir, 3);
    rd_token_store_destroy(s);
    snprintf(out, sizeof out, "%s/copy_dur", g_root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    g_n_fsynced = 0;
    g_fsync_log = 1;
    int rc = rd_tokentool_compact(dir, out, &eb);
    g_fsync_log = 0;
    assert_int_equal(rc, RD_OK);
    for (int k = 0; k < 3; k++) {
        snprintf(want, sizeof want, "/shard-%04d/data.mdb", k);
        int seen = 0;
        for (int i = 0; i < g_n_fsynced; i++) {
            size_t n = strlen(g_fsynced[i]), w = strlen(want);
            seen |= n >= w && strcmp(g_fsynced[i] + n - w, want) == 0;
        }
        if (!seen)
            fail_msg("compact did not fsync the copy of shard %d (%d fsyncs)", k, g_n_fsynced);
    }
    assert_non_null(realpath(g_root, root));
    assert_true(g_n_fsynced > 0);
    if (strcmp(g_fsynced[g_n_fsynced - 1], root) != 0)
        fail_msg("compact's last fsync is %s, not the folder of --out %s",
                 g_fsynced[g_n_fsynced - 1], root);
    // --out in folders that do not exist yet: each one made is synced in its parent, innermost
    // first (before, only the innermost was).
    snprintf(out, sizeof out, "%s/dur_new1/dur_new2/copy", g_root);
    rd_errbuf_clear(&eb);
    g_n_fsynced = 0;
    g_fsync_log = 1;
    rc = rd_tokentool_compact(dir, out, &eb);
    g_fsync_log = 0;
    assert_int_equal(rc, RD_OK);
    const char *bad = fsync_log_made_parents(root, "dur_new1", "dur_new2");
    if (bad)
        fail_msg("compact into new folders: %s", bad);
}

// A new store in folders that do not exist yet: each folder made (the store's, its parents,
// each shard's) is synced in its parent, and each shard's folder once LMDB has made its files in
// it. Before, no folder was synced: a crash could lose a store whose commits were durable.
static void test_create_durable(void **state) {
    (void)state;
    char root[4096], dir[4400], want[4500];
    assert_non_null(realpath(g_root, root));
    snprintf(dir, sizeof dir, "%s/cd_new1/cd_new2/store", root);
    rd_token_store_opts co = {DIM, RD_TOKEN_FP32, 2, 0, 0, 4096, 0, 0, 0}; // synced commits
    rd_token_store *s = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    g_n_fsynced = 0;
    g_fsync_log = 1;
    int rc = rd_token_store_create(dir, &co, &s, &eb);
    g_fsync_log = 0;
    assert_int_equal(rc, RD_OK);
    rd_token_store_destroy(s);
    const char *parents[3] = {"", "/cd_new1", "/cd_new1/cd_new2"}; // where each new folder lives
    for (int k = 0; k < 3; k++) {
        snprintf(want, sizeof want, "%s%s", root, parents[k]);
        if (fsync_log_find(want, 0) < 0)
            fail_msg("%s: not synced after a folder was made in it (%d fsyncs)", want, g_n_fsynced);
    }
    for (int k = 0; k < 2; k++) {
        snprintf(want, sizeof want, "%s/shard-%04d", dir, k);
        if (fsync_log_find(want, 0) < 0)
            fail_msg("shard folder %s: not synced after LMDB made its files in it", want);
    }
}

// One writer per store: while a launch (here a child process) holds the store's writer lock,
// another writer (rd_token_store_lock), `tokens gc` and `tokens compact` are refused at once
// with a message naming the store and the holder (host, pid, what) and change nothing (no
// record deleted, no copy made), while stats and verify (readers) still work; the lock dies
// with its holder (SIGKILL: no stale lock) and gc then runs.
static void test_store_writer_lock(void **state) {
    (void)state;
    need_cli();
    char dir[300], copy[320], out[1 << 14];
    snprintf(dir, sizeof dir, "%s/locked", g_root);
    snprintf(copy, sizeof copy, "%s/locked-copy", g_root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store *s = create_store(dir, 2);
    uint64_t users[BATCH], ids[BATCH];
    int64_t ts[BATCH];
    float tok[BATCH * DIM];
    for (int i = 0; i < BATCH; i++) {
        users[i] = USER + (uint64_t)i;
        ts[i] = i;
        ids[i] = (uint64_t)i;
        for (size_t j = 0; j < DIM; j++)
            tok[i * DIM + j] = tokval(i, j);
    }
    rd_token_batch bt = {BATCH, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    assert_int_equal(rd_token_store_append(s, &bt, &eb), RD_OK);
    rd_token_store_destroy(s);
    fflush(NULL);
    int ready[2], quit[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(quit), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        close(ready[0]);
        close(quit[1]);
        int fd = -1;
        if (rd_token_store_lock(dir, "launch A", &fd, &eb) != RD_OK)
            _exit(1);
        char c = 'x';
        if (write(ready[1], &c, 1) != 1)
            _exit(2);
        while (read(quit[0], &c, 1) > 0)
            ;
        _exit(0);
    }
    close(ready[1]);
    close(quit[0]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld ", (long)kid);
    // Another writer.
    int fd = -1;
    assert_int_equal(rd_token_store_lock(dir, "launch B", &fd, &eb), RD_ERR_STATE);
    assert_non_null(strstr(eb.msg, dir));
    assert_non_null(strstr(eb.msg, pid));
    assert_non_null(strstr(eb.msg, "launch A"));
    // compact: refused, no copy.
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_tokentool_compact(dir, copy, &eb), RD_ERR_STATE);
    assert_non_null(strstr(eb.msg, "in use by another writer"));
    struct stat st;
    assert_int_not_equal(lstat(copy, &st), 0);
    // gc through the CLI: exit 1 naming the store and the holder, nothing deleted.
    assert_int_equal(run(out, sizeof out, "%s tokens gc %s --before 1000 2>&1", g_rd, dir), 1);
    assert_non_null(strstr(out, dir));
    assert_non_null(strstr(out, pid));
    assert_non_null(strstr(out, "in use by another writer"));
    // Readers do not block.
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s", g_rd, dir), 0);
    assert_true(field_after(out, "total: ") == BATCH);
    assert_int_equal(run(out, sizeof out, "%s tokens verify %s", g_rd, dir), 0);
    // The holder dies without releasing: the lock goes with it, and gc runs.
    assert_int_equal(kill(kid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    close(quit[1]);
    assert_int_equal(run(out, sizeof out, "%s tokens gc %s --before 1000", g_rd, dir), 0);
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s", g_rd, dir), 0);
    assert_true(field_after(out, "total: ") == 0);
    assert_int_equal(rd_tokentool_compact(dir, copy, &eb), RD_OK);
}

// `tokens users` lists the keys `tokens fetch --user` takes (the only way to find one for a
// synthetic store, whose keys are not hashes of a log's ids), with each user's record count, time
// range and shard, and stops at --limit; a fetch that finds nothing says so on stderr, telling a
// user the store does not hold from one whose records are all later (exit 0 both).
static void test_users_and_empty_fetch(void **state) {
    (void)state;
    need_cli();
    char dir[300], out[1 << 14];
    snprintf(dir, sizeof dir, "%s/users", g_root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store *s = create_store(dir, 2);
    // User 100 + u has u + 1 records at times 1000 * u + 10 .. (u + 1 of them, step 10).
    enum { NU = 5 };
    uint64_t users[BATCH], ids[BATCH];
    int64_t ts[BATCH];
    float tok[BATCH * DIM];
    size_t n = 0;
    for (int u = 0; u < NU; u++)
        for (int k = 0; k <= u; k++, n++) {
            users[n] = 100u + (uint64_t)u;
            ts[n] = 1000 * u + 10 * (k + 1);
            ids[n] = n + 1;
            for (size_t j = 0; j < DIM; j++)
                tok[n * DIM + j] = tokval(ts[n], j);
        }
    rd_token_batch bt = {n, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    assert_int_equal(rd_token_store_append(s, &bt, &eb), RD_OK);
    rd_token_store_destroy(s);

    // 1. Every user, once, with its count, times and shard.
    assert_int_equal(run(out, sizeof out, "%s tokens users %s", g_rd, dir), 0);
    assert_non_null(strstr(out, "# user\trecords\tt_min\tt_max\tshard\n"));
    assert_non_null(strstr(out, "# 5 users\n"));
    for (int u = 0; u < NU; u++) {
        char line[96];
        snprintf(line, sizeof line, "\n%d\t%d\t%d\t%d\t%d\n", 100 + u, u + 1, 1000 * u + 10,
                 1000 * u + 10 * (u + 1), rd_token_shard_of_user(100u + (uint64_t)u, 2));
        assert_non_null(strstr(out, line));
        assert_null(strstr(strstr(out, line) + 1, line));
    }
    // 2. --limit: the first users in key order, and a note that more follow.
    assert_int_equal(run(out, sizeof out, "%s tokens users %s --limit 2", g_rd, dir), 0);
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 1 + 2 + 1);
    assert_non_null(strstr(out, "# first 2 users listed; more follow"));
    assert_int_equal(run(out, sizeof out, "%s tokens users %s --limit 5", g_rd, dir), 0);
    assert_non_null(strstr(out, "# 5 users\n"));
    assert_int_equal(run(NULL, 0, "%s tokens users %s --limit 0 2>/dev/null", g_rd, dir), 2);
    assert_int_equal(run(NULL, 0, "%s tokens users %s --n 3 2>/dev/null", g_rd, dir), 2);
    // The API: the same lines into a FILE.
    rd_token_open_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.mode = RD_TOKEN_READ_ONLY;
    assert_int_equal(rd_token_store_open(dir, &oo, &s, &eb), RD_OK);
    FILE *f = tmpfile();
    assert_non_null(f);
    uint64_t listed = 0;
    int more = -1;
    assert_int_equal(rd_tokentool_print_users(s, 100, f, &listed, &more, &eb), RD_OK);
    assert_int_equal(listed, NU);
    assert_int_equal(more, 0);
    assert_int_equal(rd_tokentool_print_users(s, NU - 1, f, &listed, &more, &eb), RD_OK);
    assert_int_equal(listed, NU - 1);
    assert_int_equal(more, 1);
    fclose(f);
    rd_token_store_destroy(s);

    // 3. A listed key fetches; an unknown one and one asked too early say so on stderr.
    assert_int_equal(
        run(out, sizeof out, "%s tokens fetch %s --user 104 --before 99999 --n 9 2>&1", g_rd, dir),
        0);
    assert_non_null(strstr(out, "n_found 5"));
    assert_null(strstr(out, "no tokens"));
    // An ISO 8601 --before with a fraction is rounded up to the whole second (3999.5 -> 4000:
    // "before 12:00:00.5" keeps 12:00:00). Catches rd_app_parse_time truncating it.
    assert_int_equal(run(out, sizeof out,
                         "%s tokens fetch %s --user 104 --before 1970-01-01T01:06:39.5Z --n 9 "
                         "2>/dev/null",
                         g_rd, dir),
                     0);
    assert_non_null(strstr(out, "# user 104 before 4000 "));
    assert_int_equal(run(out, sizeof out,
                         "%s tokens fetch %s --user 999 --before 99999 --n 9 2>&1 >/dev/null", g_rd,
                         dir),
                     0);
    assert_non_null(strstr(out, "no tokens for user 999: the store holds no record"));
    assert_non_null(strstr(out, "tokens users"));
    assert_int_equal(run(out, sizeof out,
                         "%s tokens fetch %s --user 104 --before 4010 --n 9 2>&1 >/dev/null", g_rd,
                         dir),
                     0);
    assert_non_null(strstr(out, "no tokens for user 104 before 4010: its records are later"));
    assert_int_equal(run(out, sizeof out,
                         "%s tokens fetch %s --user-id u1 --before 99999 --n 9 2>&1", g_rd, dir),
                     0);
    assert_non_null(strstr(out, "n_found 0"));
    assert_non_null(strstr(out, "(--user-id u1): the store holds no record"));
}

// rd_tokentool_print_fetch prints each record's side values (its own, n_side of them) between
// the item and the token. (Catches the side values indexed without the record's row, side[i + j].)
static void test_fetch_side_values(void **state) {
    (void)state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/side", g_root);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_store_opts co = {DIM, RD_TOKEN_FP32, 1, 0, 0, 4096, 1, 2, 0};
    rd_token_store *s = NULL;
    assert_int_equal(rd_token_store_create(dir, &co, &s, &eb), RD_OK);
    enum { N = 3 };
    uint64_t users[N] = {7, 7, 7}, ids[N] = {1, 2, 3};
    int64_t ts[N] = {10, 20, 30};
    float tok[N * DIM], side[N * 2] = {1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f};
    for (size_t i = 0; i < N * DIM; i++)
        tok[i] = 0.25f * (float)i;
    rd_token_batch bt = {N, users, ts, ids, tok, NULL, NULL, NULL, side};
    assert_int_equal(rd_token_store_append(s, &bt, &eb), RD_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    uint32_t nf = 0;
    assert_int_equal(rd_tokentool_print_fetch(s, 7, 100, NULL, 8, f, &nf, &eb), RD_OK);
    fclose(f);
    assert_int_equal(nf, N);
    assert_non_null(strstr(buf, " side 2\n"));
    for (int i = 0; i < N; i++) {
        char want[96];
        // index, ts, id, label, item, then the two side values
        snprintf(want, sizeof want, "\t%d\t%d\t0\t0\t%.9g\t%.9g\t", 10 * (i + 1), i + 1,
                 (double)side[2 * i], (double)side[2 * i + 1]);
        if (!strstr(buf, want))
            fail_msg("record %d: no '%s' in:\n%s", i, want, buf);
    }
    free(buf);
    rd_token_store_destroy(s);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/rd_test_tokentool_XXXXXX");
    return mkdtemp(g_root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    return system(cmd) == 0 ? 0 : -1;
}

// `tokens stats` (and every tokens command) given another kind of folder said "token store
// MANIFEST X/MANIFEST: 65 bytes, expected 64" or "cannot open MANIFEST"; `table stats` given a
// token store said "X/MANIFEST: bad magic". Now each says what the folder is and what it expects.
static void test_wrong_folder(void **state) {
    (void)state;
    need_cli();
    char store[300], ck[300], runf[300], file[300], out[4096], cmd[2400];
    snprintf(store, sizeof store, "%s/wf_store", g_root);
    rd_token_store *s = create_store(store, 1);
    rd_token_store_destroy(s);
    // A table checkpoint's layout (the MANIFEST need not be valid: the layout tells), a run
    // folder holding one job's checkpoint, a file.
    snprintf(ck, sizeof ck, "%s/wf_ck", g_root);
    snprintf(runf, sizeof runf, "%s/wf_run", g_root);
    snprintf(file, sizeof file, "%s/wf_file", g_root);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/shard-00000' '%s/ckpt/job/step-000000000005' && echo x > '%s/MANIFEST' "
             "&& echo x > '%s/dense.bin' && echo x > '%s/ckpt/job/step-000000000005/MANIFEST' && "
             "echo '{}' > '%s/report.json' && echo x > '%s'",
             ck, runf, ck, ck, runf, runf, file);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(run(out, sizeof out, "%s table stats %s 2>&1", g_rd, store), 1);
    assert_non_null(strstr(out, "wf_store is an instance-token store (MANIFEST + shard-NNNN/; "
                                "`recdistill tokens` reads it), not a table checkpoint, a folder "
                                "holding MANIFEST and shard-NNNNN/"));
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s 2>&1", g_rd, ck), 1);
    assert_non_null(strstr(out, "wf_ck is a table checkpoint (MANIFEST + shard-NNNNN/ + dense.bin; "
                                "`recdistill table` reads it), not an instance-token store, a "
                                "folder holding MANIFEST and shard-NNNN/"));
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s 2>&1", g_rd, runf), 1);
    assert_non_null(strstr(out, "wf_run is a run folder of `recdistill train` (its checkpoints: "));
    assert_non_null(strstr(out, "wf_run/ckpt/job/step-000000000005), not an instance-token store"));
    assert_int_equal(run(out, sizeof out, "%s table stats %s/ckpt/job 2>&1", g_rd, runf), 1);
    assert_non_null(strstr(out, "ckpt/job is one job's checkpoint folder (step-N folders inside; "
                                "its newest is "));
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s 2>&1", g_rd, file), 1);
    assert_non_null(strstr(out, "wf_file is not a folder (a store is a folder holding a MANIFEST "
                                "and shard-NNNN/)"));
    assert_int_equal(run(out, sizeof out, "%s table stats %s 2>&1", g_rd, file), 1);
    assert_non_null(strstr(out, "wf_file is a file, not a folder (expected a table checkpoint"));
    assert_int_equal(run(out, sizeof out, "%s tokens verify %s/none 2>&1", g_rd, g_root), 1);
    assert_non_null(strstr(out, "none: no such folder"));
    // A store whose MANIFEST is damaged is still a store: the reader's message stays.
    snprintf(cmd, sizeof cmd,
             "printf 'xx' | dd of='%s/MANIFEST' bs=1 seek=20 conv=notrunc 2>/dev/null", store);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(run(out, sizeof out, "%s tokens stats %s 2>&1", g_rd, store), 1);
    assert_null(strstr(out, "expected an instance-token store"));
    assert_non_null(strstr(out, "MANIFEST"));
}

// A shard whose data.mdb is a FIFO (or a folder) is not an LMDB env: every tokens command refuses
// it at once, naming the file. A read-only mdb_env_open of a FIFO blocked in open() for ever, so
// stats, users, fetch, verify and compact hung (timeout's 124 here); gc said "Illegal seek".
static void test_shard_not_regular(void **state) {
    (void)state;
    need_cli();
    char dir[300], out[4096], cmd[1200];
    snprintf(dir, sizeof dir, "%s/fifo_store", g_root);
    rd_token_store *s = create_store(dir, 2);
    rd_token_store_destroy(s);
    snprintf(cmd, sizeof cmd, "rm '%s/shard-0001/data.mdb' && mkfifo '%s/shard-0001/data.mdb'", dir,
             dir);
    assert_int_equal(system(cmd), 0);
    const char *cmds[] = {"stats", "users", "fetch", "verify", "gc"};
    const char *opts[] = {"", "", "--user 1 --before 9 --n 2", "", "--before 9"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        assert_int_equal(
            run(out, sizeof out, "timeout 30 %s tokens %s %s %s 2>&1", g_rd, cmds[i], dir, opts[i]),
            1);
        assert_non_null(strstr(out, "shard-0001/data.mdb: not a regular file (a FIFO)"));
    }
    assert_int_equal(run(out, sizeof out, "timeout 30 %s tokens compact %s --out %s/fifo_copy 2>&1",
                         g_rd, dir, g_root),
                     1);
    assert_non_null(strstr(out, "shard-0001/data.mdb: not a regular file (a FIFO)"));
    snprintf(cmd, sizeof cmd, "%s/fifo_copy", g_root);
    assert_int_not_equal(access(cmd, F_OK), 0);
    snprintf(cmd, sizeof cmd, "rm '%s/shard-0001/data.mdb' && mkdir '%s/shard-0001/data.mdb'", dir,
             dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(run(out, sizeof out, "timeout 30 %s tokens stats %s 2>&1", g_rd, dir), 1);
    assert_non_null(strstr(out, "shard-0001/data.mdb: not a regular file (a folder)"));
}

// `tokens users` on a store with a damaged record in its last shard: exit 1 and nothing on stdout.
// It printed the users of the shards before the damage, then failed (a partial list).
static void test_users_damaged_no_partial(void **state) {
    (void)state;
    need_cli();
    char dir[300], shard[340], out[4096];
    snprintf(dir, sizeof dir, "%s/users_damaged", g_root);
    rd_token_store *s = create_store(dir, 2);
    uint64_t users[8], ids[8];
    int64_t ts[8];
    float tok[8 * DIM] = {0};
    for (int i = 0; i < 8; i++) {
        users[i] = 500u + (uint64_t)i;
        ts[i] = 10 + i;
        ids[i] = (uint64_t)i;
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_token_batch bt = {8, users, ts, ids, tok, NULL, NULL, NULL, NULL};
    assert_int_equal(rd_token_store_append(s, &bt, &eb), RD_OK);
    rd_token_store_destroy(s);
    int in0 = 0;
    for (int i = 0; i < 8; i++)
        in0 |= rd_token_shard_of_user(users[i], 2) == 0;
    assert_true(in0); // the listing has users to print before it meets shard 1
    // A record of shard 1 whose value has 5 bytes (a record is 20 + 4 * dim + 4 bytes).
    uint64_t bad = 1;
    while (rd_token_shard_of_user(bad, 2) != 1)
        bad++;
    unsigned char key[RD_TOKEN_KEY_BYTES] = {0};
    for (int b = 0; b < 8; b++)
        key[b] = (unsigned char)(bad >> (56 - 8 * b));
    snprintf(shard, sizeof shard, "%s/shard-0001", dir);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, shard, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "tokens", 0, &dbi), 0);
    MDB_val k = {sizeof key, key}, v = {5, (void *)"short"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(run(out, sizeof out, "%s tokens users %s 2>/dev/null", g_rd, dir), 1);
    assert_string_equal(out, "");
    assert_int_equal(run(out, sizeof out, "%s tokens users %s 2>&1 >/dev/null", g_rd, dir), 1);
    assert_non_null(strstr(out, "value of 5 bytes"));
}

// A reader that dies without closing the store (SIGKILL, a crash, the OOM killer) leaves its
// slot in the shard's reader table (lock.mdb), which LMDB clears only when a process opens the
// env with nobody else holding it. While a long-lived process (a launch's PS ranks, a server)
// keeps the store open, such slots added up: after 126 of them every new reader failed with
// MDB_READERS_FULL ("begin read transaction ...: Environment maxreaders limit reached"), the
// tools and the holder alike, and a slot left inside a read kept its snapshot's pages from
// being reused. An open (and a read that finds the table full) now clears the slots of dead
// processes (mdb_reader_check).
static int fetch_one(rd_token_store *s) {
    float tok[DIM];
    uint32_t nf = 0;
    rd_token_fetch_out o = {.tokens = tok, .n_found = &nf};
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_token_store_fetch(s, USER, INT64_MAX, 1, &o, &eb);
    if (rc != RD_OK)
        fprintf(stderr, "fetch: %s\n", eb.msg);
    return rc == RD_OK && nf == 1 ? 0 : 1;
}

static int fetch_in_child(const char *dir, int leave_slot) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rd_token_open_opts o;
        memset(&o, 0, sizeof o);
        o.mode = RD_TOKEN_READ_ONLY;
        rd_token_store *s = NULL;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        if (rd_token_store_open(dir, &o, &s, &eb) != RD_OK) {
            fprintf(stderr, "open: %s\n", eb.msg);
            _exit(2);
        }
        int bad = fetch_one(s);
        if (!leave_slot)
            rd_token_store_destroy(s);
        _exit(bad); // leave_slot: as a killed reader, without closing the env
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_stale_readers(void **state) {
    (void)state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/stale_readers", g_root);
    make_one_token_store(dir, 1);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // The long-lived holder: the env stays open, so its lock table is never reset.
    rd_token_open_opts o;
    memset(&o, 0, sizeof o);
    o.mode = RD_TOKEN_READ_ONLY;
    rd_token_store *hold = NULL;
    assert_int_equal(rd_token_store_open(dir, &o, &hold, &eb), RD_OK);
    for (int i = 0; i < 140; i++) // more than LMDB's 126 reader slots
        assert_int_equal(fetch_in_child(dir, 1), 0);
    assert_int_equal(fetch_in_child(dir, 0), 0); // a new reader (tool, server) still reads
    for (int i = 0; i < 140; i++)
        assert_int_equal(fetch_in_child(dir, 1), 0);
    assert_int_equal(fetch_one(hold), 0); // and so does the holder, its env opened before
    rd_token_store_destroy(hold);
    // Every slot taken by live readers: a new reader is refused, saying so, and reads again
    // once they died (the read that finds the table full clears it).
    enum { LIVE = 130 };
    pid_t live[LIVE];
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    int n_live = 0;
    for (int i = 0; i < LIVE; i++) {
        int ready[2];
        assert_int_equal(pipe(ready), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(gate[1]);
            close(ready[0]);
            rd_token_store *s = NULL;
            char c =
                rd_token_store_open(dir, &o, &s, &eb) == RD_OK && fetch_one(s) == 0 ? 'y' : 'n';
            (void)!write(ready[1], &c, 1);
            (void)!read(gate[0], &c, 1); // held open (a slot each) until killed
            _exit(0);
        }
        close(ready[1]);
        char c = 0;
        assert_int_equal(read(ready[0], &c, 1), 1);
        close(ready[0]);
        live[i] = pid;
        n_live += c == 'y';
    }
    assert_true(n_live >= 100 && n_live < LIVE); // the table filled up
    // Through the command when it is there ($RD_BINARY_DIR: ctest), else in this process
    // (tools/valgrind-unit.sh runs the test without it).
    const int cli = find_cli();
    char out[4096];
    if (cli) {
        assert_int_equal(run(out, sizeof out, "%s tokens verify %s 2>&1", g_rd, dir), 1);
    } else {
        rd_token_store *s = NULL;
        rd_errbuf_clear(&eb);
        assert_int_not_equal(rd_token_store_open(dir, &o, &s, &eb), RD_OK);
        snprintf(out, sizeof out, "%s", eb.msg);
    }
    if (!strstr(out, "reader slots of its lock.mdb are taken by live processes"))
        fprintf(stderr, "verify said: %s\n", out);
    assert_non_null(strstr(out, "reader slots of its lock.mdb are taken by live processes"));
    for (int i = 0; i < LIVE; i++)
        kill(live[i], SIGKILL);
    for (int i = 0; i < LIVE; i++)
        waitpid(live[i], NULL, 0);
    close(gate[0]);
    close(gate[1]);
    if (cli) {
        assert_int_equal(run(out, sizeof out, "%s tokens verify %s 2>&1", g_rd, dir), 0);
    } else {
        rd_token_store *s = NULL;
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_token_store_open(dir, &o, &s, &eb), RD_OK);
        uint64_t n = 0;
        assert_int_equal(rd_token_store_verify(s, &n, &eb), RD_OK);
        assert_int_equal(n, 1);
        rd_token_store_destroy(s);
    }
}

// Every tokens command opens every shard of the store, each an LMDB env of two descriptors
// (data.mdb, lock.mdb): a store of about 510 shards or more failed with "mdb_env_open:
// STORE/shard-0509: Too many open files" under the usual soft limit of 1024, although the hard
// limit allowed more (the table tools raise it; the tokens tools and score did not). They raise
// it now, and when the hard limit itself is too low the message says the limit.
static void test_many_shards(void **state) {
    (void)state;
    need_cli();
    enum { SHARDS = 600 };
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 2 * SHARDS + 64) {
        print_message("skipped: the hard limit of open files (%llu) is too low to open a store of "
                      "%d shards\n",
                      (unsigned long long)rl.rlim_max, SHARDS);
        skip();
    }
    struct rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max; // the store is made with every shard open
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &raised), 0);
    char dir[300], out[4096];
    snprintf(dir, sizeof dir, "%s/many_shards", g_root);
    make_one_token_store(dir, SHARDS);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    const char *cmds[] = {"stats", "verify", "users", "fetch --user 777 --before 11 --n 1"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int st =
            run(out, sizeof out, "ulimit -Sn 1024 && %s tokens %s %s 2>&1", g_rd, cmds[i], dir);
        if (st != 0)
            fail_msg("tokens %s under a soft limit of 1024: %s", cmds[i], out);
    }
    assert_int_equal(run(out, sizeof out,
                         "ulimit -Sn 1024 && %s tokens compact %s --out %s.copy 2>&1", g_rd, dir,
                         dir),
                     0);
    // A hard limit of 1024: refused, naming the shard and the limit.
    assert_int_equal(run(out, sizeof out, "ulimit -n 1024 && %s tokens stats %s 2>&1", g_rd, dir),
                     1);
    if (!strstr(out, "Too many open files (this process may open 1024 files: ulimit -n)"))
        fail_msg("tokens stats under a hard limit of 1024: %s", out);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tokens_cli),
                                       cmocka_unit_test(test_compact_out_parents),
                                       cmocka_unit_test(test_compact_damaged_dataset),
                                       cmocka_unit_test(test_compact_durable),
                                       cmocka_unit_test(test_create_durable),
                                       cmocka_unit_test(test_store_writer_lock),
                                       cmocka_unit_test(test_users_and_empty_fetch),
                                       cmocka_unit_test(test_wrong_folder),
                                       cmocka_unit_test(test_shard_not_regular),
                                       cmocka_unit_test(test_users_damaged_no_partial),
                                       cmocka_unit_test(test_stale_readers),
                                       cmocka_unit_test(test_many_shards),
                                       cmocka_unit_test(test_fetch_side_values)};
    return tmp_root_status(cmocka_run_group_tests(tests, setup, teardown), g_root);
}
