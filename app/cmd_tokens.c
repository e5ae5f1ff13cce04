// cmd_tokens.c — `recdistill tokens <stats|users|fetch|gc|verify|compact> STORE ...`: maintenance
// of an instance-token store (rd/tokens.h, rd/tokentool.h).
//
// stats, users, fetch, verify and compact open the store READ-ONLY: LMDB readers take a snapshot
// and never block the writer, so they are safe while a training job appends (each shard's answer is
// one consistent snapshot: an append batch is seen whole or not at all). gc opens every shard
// for writing and deletes in bounded transactions; it (and compact, whose copy would cut through
// a build) takes the store's writer lock (rd_token_store_lock) and is refused while a launch
// builds into the store.
//
// Exit codes: 0 success, 1 failure (message on stderr), 2 usage error.
#include "commands.h"

#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/lmdbx.h"
#include "rd/tokens.h"
#include "rd/tokentool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void tokens_usage(FILE *out) {
    fprintf(
        out,
        "usage: recdistill tokens <command> STORE [options]\n"
        "\n"
        "STORE is an instance-token store directory (MANIFEST + shard-NNNN/).\n"
        "\n"
        "  stats   STORE [--per-shard]            records, users, bytes, time range\n"
        "  users   STORE [--limit N]              the store's user keys (the KEY of fetch\n"
        "                                         --user), each with its record count, first\n"
        "                                         and last time and shard; the first N users\n"
        "                                         in key order (default 20)\n"
        "  fetch   STORE --user KEY --before T --n L   the last L tokens of user KEY strictly\n"
        "                                         before time T (the training path's answer);\n"
        "                                         --user-id ID instead names the user by the\n"
        "                                         raw id of a CSV or MovieLens log (or the\n"
        "                                         number of a synthetic log's user); --before-id\n"
        "                                         I also returns the records at T with an id\n"
        "                                         below I (tokens.same_time earlier); a user\n"
        "                                         with no record before T: the header line\n"
        "                                         only, \"no tokens for user KEY\" on stderr,\n"
        "                                         exit 0\n"
        "  gc      STORE --before T               delete every record with time < T, of every\n"
        "                                         user (gc takes no --user)\n"
        "  (T: unix seconds, or ISO 8601 such as 2024-03-01 or 2024-03-01T12:00:00+02:00; no\n"
        "   zone = UTC)\n"
        "  verify  STORE                          MANIFEST, shard headers, every key and\n"
        "                                         record CRC\n"
        "  compact STORE --out DIR                compacted copy (the input is untouched;\n"
        "                                         DIR may not lie inside STORE)\n"
        "\n"
        "stats, users, fetch and verify are read-only and safe while a job appends; gc and "
        "compact\n"
        "are refused while a launch writes the store.\n"
        "exit status: 0 ok, 1 failure (message on stderr), 2 usage error\n");
}

// What every subcommand reads, as messages name it.
#define TOKEN_STORE_EXPECTED                                                                       \
    "an instance-token store, a folder holding MANIFEST and shard-NNNN/ such as <run "             \
    "folder>/tokens or tokens.store_dir"

// STORE could not be opened: when it is a folder but no token store at all (a table
// checkpoint, a run folder, ...), say what it is and what was expected instead of "token store
// MANIFEST X: 65 bytes, expected 64". A damaged store keeps the reader's message, and so do a
// missing path and a file ("token store X: no such folder", "token store X is not a folder (a
// store is a folder holding ...)").
static void explain_not_store(const char *dir, rd_errbuf *eb) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return;
    rd_token_store_info in;
    rd_errbuf local;
    rd_errbuf_clear(&local);
    char msg[sizeof eb->msg];
    if (rd_token_store_read_manifest(dir, &in, &local) != RD_OK &&
        rd_app_wrong_folder(dir, RD_APP_PATH_TOKEN_STORE, TOKEN_STORE_EXPECTED, msg, sizeof msg)) {
        rd_errbuf_clear(eb);
        rd_err_set(eb, RD_ERR_NOTFOUND, "%s", msg);
    }
}

static void print_stats(const char *what, const rd_token_stats *t) {
    printf("%s: %llu records, %llu users, %llu payload bytes, %llu file bytes, %llu map bytes",
           what, (unsigned long long)t->entries, (unsigned long long)t->users,
           (unsigned long long)t->payload_bytes, (unsigned long long)t->file_bytes,
           (unsigned long long)t->map_bytes);
    if (t->entries)
        printf(", time %lld..%lld", (long long)t->t_min, (long long)t->t_max);
    printf("\n");
}

// Does the store hold any record of user key `user` (*known)?
static int user_known(rd_token_store *s, uint64_t user, int *known, rd_errbuf *eb) {
    rd_token_store_info in;
    rd_token_store_info_get(s, &in);
    float *tok = rd_xmalloc(in.dim * sizeof *tok);
    uint32_t nf = 0;
    rd_token_fetch_out o = {.tokens = tok, .n_found = &nf};
    int rc = rd_token_store_fetch(s, user, INT64_MAX, 1, &o, eb);
    rd_free(tok);
    *known = rc == RD_OK && nf > 0;
    return rc;
}

// --user-id of a synthetic log: its users are numbered 0..n-1 and keyed by number
// (rd_feature_key_u64), not by the text of a CSV or MovieLens id, so "3" found nothing in such a
// store. A decimal id the store does not hold as text is tried as that number (said on stderr).
static int user_id_key(rd_token_store *s, const char *id, uint64_t *user, rd_errbuf *eb) {
    int known = 0;
    uint64_t n = 0;
    int rc = user_known(s, *user, &known, eb);
    if (rc != RD_OK || known || id[0] < '0' || id[0] > '9' || rd_app_parse_u64(id, &n) != 0)
        return rc;
    uint64_t num = rd_feature_key_u64("user", n);
    if ((rc = user_known(s, num, &known, eb)) == RD_OK && known) {
        fprintf(stderr,
                "recdistill tokens fetch: --user-id %s: no user '%s' of a CSV or MovieLens log "
                "here; user number %llu of a synthetic log (key %llu)\n",
                id, id, (unsigned long long)n, (unsigned long long)num);
        *user = num;
    }
    return rc;
}

// `tokens fetch` found nothing: say so on stderr (the answer itself, a header line, is right),
// telling a user the store does not hold from one with records only at or after T.
static int say_no_tokens(
    rd_token_store *s, uint64_t user, const char *user_id, int64_t before, rd_errbuf *eb) {
    int known = 0;
    int rc = user_known(s, user, &known, eb);
    if (rc != RD_OK)
        return rc;
    char id[160] = "";
    if (user_id)
        snprintf(id, sizeof id, " (--user-id %.120s)", user_id);
    if (!known)
        fprintf(stderr,
                "recdistill tokens fetch: no tokens for user %llu%s: the store holds no record "
                "of this user (`recdistill tokens users STORE` lists its users)\n",
                (unsigned long long)user, id);
    else
        fprintf(stderr,
                "recdistill tokens fetch: no tokens for user %llu%s before %lld: its records "
                "are later (`recdistill tokens users STORE` gives their times)\n",
                (unsigned long long)user, id, (long long)before);
    return RD_OK;
}

int rd_cmd_tokens(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        tokens_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    // The options each subcommand takes (in the order of its usage line); any other is refused.
    static const rd_app_sub subs[] = {{"stats", "--per-shard"},
                                      {"users", "--limit"},
                                      {"fetch", "--user --user-id --before --n --before-id"},
                                      {"gc", "--before"},
                                      {"verify", ""},
                                      {"compact", "--out"}};
    const rd_app_sub *sub =
        rd_app_sub_find("recdistill tokens", subs, sizeof subs / sizeof subs[0], cmd);
    if (!sub) {
        tokens_usage(stderr);
        return 2;
    }
    char prog[64];
    snprintf(prog, sizeof prog, "recdistill tokens %s", cmd);
    // --user-id takes a raw id of the log, which may look like a negative number.
    rd_app_opt opts[] = {{"--user", RD_APP_NUMBER, NULL},      {"--user-id", RD_APP_NUMBER, NULL},
                         {"--before", RD_APP_NUMBER, NULL},    {"--n", RD_APP_NUMBER, NULL},
                         {"--out", RD_APP_STRING, NULL},       {"--per-shard", RD_APP_FLAG, NULL},
                         {"--before-id", RD_APP_NUMBER, NULL}, {"--limit", RD_APP_NUMBER, NULL}};
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *dir = NULL;
    int n_pos = 0;
    int st = rd_app_parse(prog, argc, argv, 2, opts, n_opts, &dir, 1, &n_pos);
    if (st == 1) {
        tokens_usage(stdout);
        return 0;
    }
    if (st != 0)
        return 2;
    if (rd_app_only(prog, cmd, opts, n_opts, sub->taken) != 0)
        return 2;
    const char *out = opts[4].value;
    uint64_t user = 0, L = 0;
    int64_t before = 0;
    int have_user = 0, have_before = opts[2].value != NULL, per_shard = opts[5].value != NULL;
    if (opts[0].value && opts[1].value) {
        fprintf(stderr, "%s: give --user or --user-id, not both\n", prog);
        return 2;
    }
    if (opts[0].value) {
        if (rd_app_parse_u64(opts[0].value, &user) || user == 0) {
            fprintf(stderr, "%s: --user: '%s' is not a user key\n", prog, opts[0].value);
            return 2;
        }
        have_user = 1;
    }
    if (opts[1].value) {
        const char *id = opts[1].value;
        if (!id[0]) {
            fprintf(stderr, "%s: --user-id: empty id\n", prog);
            return 2;
        }
        user = rd_feature_key("user", id, strlen(id)); // as the dataset keys a raw user id
        have_user = 1;
    }
    if (have_before && rd_app_parse_time(opts[2].value, &before)) {
        fprintf(stderr,
                "%s: --before: '%s' is not a time (unix seconds, or ISO 8601 such as "
                "2024-03-01T12:00:00Z)\n",
                prog, opts[2].value);
        return 2;
    }
    // An instance id is its event's index in the dataset: 0 is the first event's.
    uint64_t before_id = 0;
    if (opts[6].value && rd_app_parse_u64(opts[6].value, &before_id)) {
        fprintf(stderr, "%s: --before-id: '%s' is not an instance id (0..2^64-1)\n", prog,
                opts[6].value);
        return 2;
    }
    uint64_t limit = 20;
    if (opts[7].value && (rd_app_parse_u64(opts[7].value, &limit) || limit == 0)) {
        fprintf(stderr, "%s: --limit: '%s' is not a positive number of users\n", prog,
                opts[7].value);
        return 2;
    }
    if (opts[3].value && (rd_app_parse_u64(opts[3].value, &L) || L < 1 || L > RD_TOKEN_MAX_L)) {
        fprintf(stderr, "%s: --n: '%s' is not in 1..%d\n", prog, opts[3].value, RD_TOKEN_MAX_L);
        return 2;
    }
    const char *missing = !dir                                      ? "STORE"
                          : strcmp(cmd, "fetch") == 0 && !have_user ? "--user KEY"
                          : (strcmp(cmd, "fetch") == 0 || strcmp(cmd, "gc") == 0) && !have_before
                              ? "--before T"
                          : strcmp(cmd, "fetch") == 0 && L == 0 ? "--n L"
                          : strcmp(cmd, "compact") == 0 && !out ? "--out DIR"
                                                                : NULL;
    if (missing) {
        fprintf(stderr, "recdistill tokens %s: missing %s (recdistill tokens --help)\n", cmd,
                missing);
        return 2;
    }
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    // Every command opens every shard (two descriptors each): a store of ~510 shards or more
    // failed with "Too many open files" under the usual soft limit of 1024.
    rd_app_raise_nofile();
    // A copy inside the store it copies would add a folder to the input (and be copied again by
    // the next compact): refused before anything is written.
    if (strcmp(cmd, "compact") == 0 &&
        rd_app_out_not_stdout(prog, "--out", out, "a token store is written to a folder") != 0)
        return 2;
    if (strcmp(cmd, "compact") == 0 &&
        rd_lmdbx_check_out_not_input("--out", out, "the input store", dir, &eb) != RD_OK) {
        fprintf(stderr, "%s: %s\n", prog, eb.msg);
        return 2;
    }
    int rc = RD_OK;
    if (strcmp(cmd, "compact") == 0) {
        rc = rd_tokentool_compact(dir, out, &eb);
        if (rc != RD_OK)
            explain_not_store(dir, &eb);
        if (rc == RD_OK)
            printf("compacted copy of %s: %s\n", dir, out);
    } else {
        rd_token_open_opts oo;
        memset(&oo, 0, sizeof oo);
        oo.mode = strcmp(cmd, "gc") == 0 ? RD_TOKEN_WRITE : RD_TOKEN_READ_ONLY;
        oo.verify_crc = 1;
        rd_token_store *s = NULL;
        rc = rd_token_store_open(dir, &oo, &s, &eb);
        if (rc != RD_OK)
            explain_not_store(dir, &eb);
        if (rc == RD_OK) {
            rd_token_store_info in;
            rd_token_store_info_get(s, &in);
            if (strcmp(cmd, "stats") == 0) {
                rd_token_stats tot;
                rd_token_stats *ps = per_shard ? rd_xcalloc(in.n_shards, sizeof *ps) : NULL;
                rc = rd_token_store_stats(s, &tot, ps, &eb);
                rd_token_dataset td;
                int drc = rc == RD_OK ? rd_token_store_read_dataset(dir, &td, &eb) : rc;
                if (drc == RD_ERR_NOTFOUND) // not bound yet (or made by an earlier build)
                    rd_errbuf_clear(&eb);
                else
                    rc = drc;
                rd_token_gc_info gi;
                if (rc == RD_OK)
                    rc = rd_token_store_gc_info(s, &gi, &eb);
                if (rc == RD_OK) {
                    printf("store %s: %u shards, dim %u %s, version %u, %u side values\n", dir,
                           in.n_shards, in.dim, rd_token_dtype_name((int)in.dtype), in.version,
                           in.n_side);
                    if (drc == RD_OK)
                        printf("dataset: %llu events, records CRC %08x\n",
                               (unsigned long long)td.n_events, td.records_crc);
                    else
                        printf("dataset: not recorded\n");
                    // What a reader of the store must know: records before a time are gone.
                    if (gi.n_gc) {
                        char at[32], bt[32];
                        rd_fmt_utc(gi.last_at, at, sizeof at);
                        rd_fmt_utc(gi.before_t, bt, sizeof bt);
                        printf("gc: %llu records deleted by %u gc%s, the last at %s; records "
                               "before %lld (%s) are gone\n",
                               (unsigned long long)gi.deleted, gi.n_gc, gi.n_gc > 1 ? "s" : "", at,
                               (long long)gi.before_t, bt);
                    } else {
                        printf("gc: none recorded\n");
                    }
                    print_stats("total", &tot);
                    for (uint32_t k = 0; ps && k < in.n_shards; k++) {
                        char what[32];
                        snprintf(what, sizeof what, "shard %u", k);
                        print_stats(what, &ps[k]);
                    }
                }
                rd_free(ps);
            } else if (strcmp(cmd, "users") == 0) {
                // The list goes to stdout only once the walk ended well: a damaged shard met
                // after the first users printed them and then failed (a partial list, exit 1).
                uint64_t listed = 0;
                int more = 0;
                char *text = NULL;
                size_t len = 0;
                FILE *ms = open_memstream(&text, &len);
                if (!ms)
                    rc = rd_err_set(&eb, RD_ERR_NOMEM, "no memory for the list of users");
                if (rc == RD_OK)
                    rc = rd_tokentool_print_users(s, limit, ms, &listed, &more, &eb);
                if (ms && fclose(ms) != 0 && rc == RD_OK)
                    rc = rd_err_set(&eb, RD_ERR_NOMEM, "no memory for the list of users");
                if (rc == RD_OK)
                    fwrite(text, 1, len, stdout);
                free(text); // open_memstream's buffer comes from libc malloc
                if (rc == RD_OK && more)
                    printf("# first %llu users listed; more follow (--limit N lists more)\n",
                           (unsigned long long)listed);
                else if (rc == RD_OK)
                    printf("# %llu users\n", (unsigned long long)listed);
            } else if (strcmp(cmd, "fetch") == 0) {
                uint32_t nf = 0;
                if (opts[1].value)
                    rc = user_id_key(s, opts[1].value, &user, &eb);
                if (rc == RD_OK)
                    rc =
                        rd_tokentool_print_fetch(s, user, before, opts[6].value ? &before_id : NULL,
                                                 (size_t)L, stdout, &nf, &eb);
                if (rc == RD_OK && nf == 0)
                    rc = say_no_tokens(s, user, opts[1].value, before, &eb);
            } else if (strcmp(cmd, "gc") == 0) {
                // gc deletes: as the store's one writer, refused while a launch builds into it.
                uint64_t n = 0;
                int lock = -1;
                rc = rd_token_store_lock(dir, "tokens gc", &lock, &eb);
                if (rc == RD_OK)
                    rc = rd_token_store_gc(s, before, &n, &eb);
                rd_token_store_unlock(lock);
                if (rc == RD_OK)
                    printf("deleted %llu records before %lld\n", (unsigned long long)n,
                           (long long)before);
            } else {
                uint64_t n = 0;
                rc = rd_token_store_verify(s, &n, &eb);
                rd_token_dataset td;
                if (rc == RD_OK &&
                    (rc = rd_token_store_read_dataset(dir, &td, &eb)) == RD_ERR_NOTFOUND) {
                    rd_errbuf_clear(&eb);
                    rc = RD_OK;
                }
                if (rc == RD_OK)
                    printf("ok: %s: %llu records checked, %u shards\n", dir, (unsigned long long)n,
                           in.n_shards);
            }
            rd_token_store_destroy(s);
        }
    }
    if (rc != RD_OK) {
        fprintf(stderr, "recdistill tokens %s: %s\n", cmd, eb.msg[0] ? eb.msg : rd_strerror(rc));
        return 1;
    }
    return 0;
}
