// test_args.c — the command-line parser every subcommand shares (app/args.c, app/commands.h):
// options and positional arguments (rd_app_parse_msg, rd_app_parse), repeated options
// (rd_app_values, rd_app_sets), options of a sibling subcommand (rd_app_only), the number and
// time parsers (rd_app_parse_i64/_u64/_double/_time), what a folder argument is
// (rd_app_path_kind, rd_app_wrong_folder) and "-" where no stdout is possible
// (rd_app_out_not_stdout). The launch-wide agreement (rd_app_agree) runs under MPI and is
// checked by tests/scripts/mpmd_args.sh.
//
// args.c is part of the program, not of a library: it is compiled into this test
// (tests/CMakeLists.txt), with the build and run-time identities it also refers to stubbed below.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "commands.h"
#include "rd/config.h"
#include "rd/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The identities of app/build_id.c, read only by rd_app_agree (not run here).
const char *rd_app_build_id(void) {
    return "recdistill test";
}
const char *rd_app_runtime_id(void) {
    return "test=1";
}

// ---------------------------------------------------------------------------------------------
// rd_app_parse_msg

enum { O_OUT, O_SEED, O_FLAG, O_TITLE, O_SET, N_OPTS };

static void opts_init(rd_app_opt *o) {
    o[O_OUT] = (rd_app_opt){"--out", RD_APP_STRING, NULL};
    o[O_SEED] = (rd_app_opt){"--seed", RD_APP_NUMBER, NULL};
    o[O_FLAG] = (rd_app_opt){"--per-shard", RD_APP_FLAG, NULL};
    o[O_TITLE] = (rd_app_opt){"--title", RD_APP_TEXT, NULL};
    o[O_SET] = (rd_app_opt){"--set", RD_APP_REPEAT, NULL};
}

typedef struct parsed {
    int st;
    rd_app_opt o[N_OPTS];
    const char *pos[2];
    int n_pos;
    char msg[512];
    char text[32][64]; // argv's strings (values and positional arguments point here)
} parsed;

// Parse the NULL-ended argv after a program and a subcommand name (first = 2), at most 2
// positional arguments.
static void parse_argv(parsed *p, const char *const *args) {
    char *argv[32];
    int argc = 0;
    snprintf(p->text[argc], sizeof p->text[argc], "recdistill");
    argv[argc] = p->text[argc], argc++;
    snprintf(p->text[argc], sizeof p->text[argc], "sub");
    argv[argc] = p->text[argc], argc++;
    for (; *args; args++) {
        snprintf(p->text[argc], sizeof p->text[argc], "%s", *args);
        argv[argc] = p->text[argc], argc++;
    }
    opts_init(p->o);
    memset(p->msg, 'x', sizeof p->msg); // cleared by the parser
    p->n_pos = -1;
    p->st =
        rd_app_parse_msg(argc, argv, 2, p->o, N_OPTS, p->pos, 2, &p->n_pos, p->msg, sizeof p->msg);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_usage(const char *const *args, const char *msg) {
    parsed p;
    parse_argv(&p, args);
    if (p.st != 2 || strcmp(p.msg, msg) != 0)
        fail_msg("status %d, message '%s'; expected 2, '%s'", p.st, p.msg, msg);
}

static void test_parse_good(void **state) {
    (void)state;
    parsed p;
    // Nothing: no option, no positional argument, an empty message.
    parse_argv(&p, (const char *const[]){NULL});
    assert_int_equal(p.st, 0);
    assert_int_equal(p.n_pos, 0);
    assert_string_equal(p.msg, "");
    for (int k = 0; k < N_OPTS; k++)
        assert_null(p.o[k].value);

    // Options anywhere, positional arguments in order, a flag's value is its name.
    parse_argv(&p, ARGS("a.yaml", "--out", "dir", "--per-shard", "--seed", "7", "b"));
    assert_int_equal(p.st, 0);
    assert_int_equal(p.n_pos, 2);
    assert_string_equal(p.pos[0], "a.yaml");
    assert_string_equal(p.pos[1], "b");
    assert_string_equal(p.o[O_OUT].value, "dir");
    assert_string_equal(p.o[O_SEED].value, "7");
    assert_string_equal(p.o[O_FLAG].value, "--per-shard");
    assert_null(p.o[O_TITLE].value);
    assert_null(p.o[O_SET].value);

    // A negative number is a value of a number option ("-5", "-0.25", "-.5").
    for (int k = 0; k < 3; k++) {
        const char *v = (const char *[]){"-5", "-0.25", "-.5"}[k];
        parse_argv(&p, ARGS("--seed", v));
        assert_int_equal(p.st, 0);
        assert_string_equal(p.o[O_SEED].value, v);
    }
    // "-" alone is a value and a positional argument, never an option.
    parse_argv(&p, ARGS("--out", "-", "-"));
    assert_int_equal(p.st, 0);
    assert_string_equal(p.o[O_OUT].value, "-");
    assert_int_equal(p.n_pos, 1);
    assert_string_equal(p.pos[0], "-");
    // A text option may be empty.
    parse_argv(&p, ARGS("--title", ""));
    assert_int_equal(p.st, 0);
    assert_string_equal(p.o[O_TITLE].value, "");
    // A repeatable option: the last value.
    parse_argv(&p, ARGS("--set", "a=1", "x", "--set", "b=2"));
    assert_int_equal(p.st, 0);
    assert_string_equal(p.o[O_SET].value, "b=2");
    assert_int_equal(p.n_pos, 1);

    // -h and --help as options: 1, also after other arguments.
    parse_argv(&p, ARGS("-h"));
    assert_int_equal(p.st, 1);
    parse_argv(&p, ARGS("a.yaml", "--out", "d", "--help"));
    assert_int_equal(p.st, 1);
    // ... but not as a positional argument after "-" or as part of another word.
    parse_argv(&p, ARGS("-hx"));
    assert_int_equal(p.st, 2);

    // The values of an earlier parse are reset.
    parse_argv(&p, ARGS("--out", "d"));
    assert_int_equal(p.st, 0);
    char a0[] = "recdistill", a1[] = "sub";
    char *argv2[] = {a0, a1, NULL};
    const char *pos[2];
    int n_pos = -1;
    char msg[64];
    assert_int_equal(rd_app_parse_msg(2, argv2, 2, p.o, N_OPTS, pos, 2, &n_pos, msg, sizeof msg),
                     0);
    assert_null(p.o[O_OUT].value);
    assert_int_equal(n_pos, 0);
}

static void test_parse_errors(void **state) {
    (void)state;
    expect_usage(ARGS("--bogus"), "unknown option '--bogus'");
    expect_usage(ARGS("-x"), "unknown option '-x'");
    expect_usage(ARGS("--out=dir"), "unknown option '--out=dir'");
    expect_usage(ARGS("--"), "unknown option '--'");
    // A negative number is not an option's stand-in where a positional argument goes.
    expect_usage(ARGS("-5"), "unknown option '-5'");
    expect_usage(ARGS("a", "b", "c"), "unexpected argument 'c'");
    expect_usage(ARGS("--out", "a", "--out", "b"), "--out given twice");
    expect_usage(ARGS("--per-shard", "--per-shard"), "--per-shard given twice");
    expect_usage(ARGS("--out"), "--out needs a value");
    expect_usage(ARGS("--seed"), "--seed needs a value");
    expect_usage(ARGS("--set"), "--set needs a value");
    expect_usage(ARGS("--out", "--seed", "5"), "--out needs a value, not the option '--seed'");
    expect_usage(ARGS("--out", "-h"), "--out needs a value, not the option '-h'");
    // Only a number option takes a negative number, and only a number: not "-x" nor "-.".
    expect_usage(ARGS("--out", "-5"), "--out needs a value, not the option '-5'");
    expect_usage(ARGS("--seed", "-x"), "--seed needs a value, not the option '-x'");
    expect_usage(ARGS("--seed", "-."), "--seed needs a value, not the option '-.'");
    expect_usage(ARGS("--title", "-t"), "--title needs a value, not the option '-t'");
    // Empty values: only a text option takes one.
    expect_usage(ARGS("--out", ""), "--out: empty value");
    expect_usage(ARGS("--seed", ""), "--seed: empty value");
    expect_usage(ARGS("--set", ""), "--set: empty value");
    // The first error is the one said (the --help after it is not reached).
    expect_usage(ARGS("--bogus", "--help"), "unknown option '--bogus'");

    // A message longer than the buffer is cut, NUL-terminated.
    char *argv[] = {(char *)"p", (char *)"--a-very-long-unknown-option-name", NULL};
    rd_app_opt o[N_OPTS];
    opts_init(o);
    const char *pos[1];
    int n_pos;
    char msg[16];
    assert_int_equal(rd_app_parse_msg(2, argv, 1, o, N_OPTS, pos, 1, &n_pos, msg, sizeof msg), 2);
    assert_int_equal(strlen(msg), sizeof msg - 1);
    assert_memory_equal(msg, "unknown option ", 15);
}

// rd_app_parse prints the usage error as "<prog>: <message>" on stderr; a help request or a good
// command line prints nothing.
static void test_parse_prints(void **state) {
    (void)state;
    char path[] = "/tmp/rd_test_args_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    rd_app_opt o[N_OPTS];
    opts_init(o);
    const char *pos[1];
    int n_pos;
    char *bad[] = {(char *)"x", (char *)"--out", NULL};
    char *help[] = {(char *)"x", (char *)"--help", NULL};
    char *good[] = {(char *)"x", (char *)"--out", (char *)"d", NULL};
    int st_bad = rd_app_parse("recdistill sub", 2, bad, 1, o, N_OPTS, pos, 1, &n_pos);
    int st_help = rd_app_parse("recdistill sub", 2, help, 1, o, N_OPTS, pos, 1, &n_pos);
    int st_good = rd_app_parse("recdistill sub", 3, good, 1, o, N_OPTS, pos, 1, &n_pos);
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    assert_int_equal(st_bad, 2);
    assert_int_equal(st_help, 1);
    assert_int_equal(st_good, 0);
    char text[256] = "";
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    text[n] = 0;
    assert_string_equal(text, "recdistill sub: --out needs a value\n");
}

// ---------------------------------------------------------------------------------------------
// rd_app_values, rd_app_sets, rd_app_only

static void test_values(void **state) {
    (void)state;
    char *argv[] = {(char *)"recdistill", (char *)"train",  (char *)"--set",
                    (char *)"a=1",        (char *)"c.yaml", (char *)"--set",
                    (char *)"b=2",        (char *)"--out",  (char *)"--set"};
    // The last "--set" is the value of... nothing: rd_app_parse refuses it, and values never
    // reads past argv's end.
    const char *out[4];
    assert_int_equal(rd_app_values(9, argv, 1, "--set", out, 4), 2);
    assert_string_equal(out[0], "a=1");
    assert_string_equal(out[1], "b=2");
    assert_int_equal(rd_app_values(9, argv, 1, "--seed", out, 4), 0);
    assert_int_equal(rd_app_values(9, argv, 1, "--set", out, 1), -1);
    assert_int_equal(rd_app_values(9, argv, 1, "--set", out, 2), 2);
    // From `first` on only.
    assert_int_equal(rd_app_values(9, argv, 4, "--set", out, 4), 1);
    assert_string_equal(out[0], "b=2");

    // rd_app_sets: up to RD_CONFIG_MAX_SETS, then -1 (with a line on stderr).
    enum { N = RD_CONFIG_MAX_SETS + 1 };
    char *many[2 + 2 * N];
    char vals[N][16];
    many[0] = (char *)"recdistill";
    many[1] = (char *)"config";
    for (int i = 0; i < N; i++) {
        snprintf(vals[i], sizeof vals[i], "k%d=1", i);
        many[2 + 2 * i] = (char *)"--set";
        many[3 + 2 * i] = vals[i];
    }
    const char *sets[RD_CONFIG_MAX_SETS];
    assert_int_equal(rd_app_sets("recdistill config", 2 + 2 * (N - 1), many, sets),
                     RD_CONFIG_MAX_SETS);
    assert_string_equal(sets[RD_CONFIG_MAX_SETS - 1], vals[RD_CONFIG_MAX_SETS - 1]);
    assert_int_equal(rd_app_sets("recdistill config", 2 + 2 * N, many, sets), -1);
}

static void test_only(void **state) {
    (void)state;
    rd_app_opt o[N_OPTS];
    opts_init(o);
    // Nothing given: any list takes it.
    assert_int_equal(rd_app_only("p", "gc", o, N_OPTS, ""), 0);
    o[O_OUT].value = "d";
    o[O_SEED].value = "1";
    assert_int_equal(rd_app_only("p", "gc", o, N_OPTS, "--out --seed"), 0);
    assert_int_equal(rd_app_only("p", "gc", o, N_OPTS, "  --seed   --out  "), 0);
    // A name is a whole word of the list: "--out" is not in "--outx" nor in "--ou".
    assert_int_equal(rd_app_only("p", "gc", o, N_OPTS, "--outx --seed"), 2);
    assert_int_equal(rd_app_only("p", "gc", o, N_OPTS, "--ou --seed"), 2);
    assert_int_equal(rd_app_only("p", "gc", o, N_OPTS, "--seed"), 2);
    assert_int_equal(rd_app_only("p", "gc", o, N_OPTS, ""), 2);
}

// ---------------------------------------------------------------------------------------------
// Numbers and times

static void test_parse_i64(void **state) {
    (void)state;
    int64_t v = 0;
    static const struct {
        const char *s;
        int64_t v;
    } good[] = {{"0", 0},
                {"-0", 0},
                {"42", 42},
                {"-5", -5},
                {"007", 7}, // decimal, not octal
                {"9223372036854775807", INT64_MAX},
                {"-9223372036854775808", INT64_MIN}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = 12345;
        if (rd_app_parse_i64(good[i].s, &v) != 0 || v != good[i].v)
            fail_msg("'%s': %lld", good[i].s, (long long)v);
    }
    static const char *const bad[] = {"",
                                      "-",
                                      " 5",
                                      "+5",
                                      "5 ",
                                      "5x",
                                      "--5",
                                      "- 5",
                                      "0x10",
                                      "1e3",
                                      "1.0",
                                      "9223372036854775808",
                                      "-9223372036854775809",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 12345;
        if (rd_app_parse_i64(bad[i], &v) != -1 || v != 12345)
            fail_msg("'%s' accepted (%lld)", bad[i], (long long)v);
    }
}

static void test_parse_u64(void **state) {
    (void)state;
    uint64_t v = 0;
    assert_int_equal(rd_app_parse_u64("0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(rd_app_parse_u64("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(rd_app_parse_u64("010", &v), 0);
    assert_true(v == 10);
    static const char *const bad[] = {"",    "-5",  " -5", " 5",   "+5",
                                      "5 ",  "5x",  "-0",  "0x10", "18446744073709551616",
                                      "1e3", "1.5", "-"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 12345;
        if (rd_app_parse_u64(bad[i], &v) != -1 || v != 12345)
            fail_msg("'%s' accepted (%llu)", bad[i], (unsigned long long)v);
    }
}

static void test_parse_double(void **state) {
    (void)state;
    static const struct {
        const char *s;
        double v;
    } good[] = {
        {"0", 0},     {"1.5", 1.5},   {"-0.25", -0.25}, {".5", 0.5},    {"-.5", -0.5},
        {"1e3", 1e3}, {"2E-2", 2e-2}, {"1.", 1.0},      {"1e-400", 0.0}}; // an underflow is a (tiny
                                                                          // or zero) number
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        double v = 12345;
        if (rd_app_parse_double(good[i].s, &v) != 0 || v != good[i].v)
            fail_msg("'%s': %g", good[i].s, v);
    }
    static const char *const bad[] = {
        "",    "-",    ".",        "-.",   " 1",   "+1",    "1 ",    "1x",     "1e", "nan",
        "inf", "-inf", "infinity", "0x10", "-0x1", "0X1p3", "1e999", "-1e999", "1,5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 12345;
        if (rd_app_parse_double(bad[i], &v) != -1 || v != 12345)
            fail_msg("'%s' accepted (%g)", bad[i], v);
    }
}

static void test_parse_time(void **state) {
    (void)state;
    int64_t v = 0;
    // Seconds since the epoch, as rd_app_parse_i64.
    assert_int_equal(rd_app_parse_time("1700000000", &v), 0);
    assert_true(v == 1700000000);
    assert_int_equal(rd_app_parse_time("-5", &v), 0);
    assert_true(v == -5);
    // ISO 8601, rounded up to a whole second (also before 1970).
    assert_int_equal(rd_app_parse_time("1970-01-01T00:00:10Z", &v), 0);
    assert_true(v == 10);
    assert_int_equal(rd_app_parse_time("1970-01-01T00:00:10.5Z", &v), 0);
    assert_true(v == 11);
    assert_int_equal(rd_app_parse_time("1969-12-31T23:59:58.5Z", &v), 0);
    assert_true(v == -1);
    assert_int_equal(rd_app_parse_time("1969-12-31T23:59:59.5Z", &v), 0);
    assert_true(v == 0);
    static const char *const bad[] = {
        "", "yesterday", "1.5", " 5", "+5", "2024-13-01T00:00:00Z", "9223372036854775808"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 12345;
        if (rd_app_parse_time(bad[i], &v) != -1 || v != 12345)
            fail_msg("'%s' accepted (%lld)", bad[i], (long long)v);
    }
}

// ---------------------------------------------------------------------------------------------
// Folder arguments

static char g_dir[64];

static void mk(const char *rel, int dir) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    if (dir) {
        assert_int_equal(mkdir(p, 0755), 0);
    } else {
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fclose(f);
    }
}

static int kind_of(const char *rel, char *what, size_t cap) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    return rd_app_path_kind(p, what, cap);
}

static void test_path_kind(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/rd_test_args_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    char what[1024];
    mk("file", 0);
    mk("empty", 1);
    mk("other", 1);
    mk("other/x", 0);
    mk("ckpt", 1);
    mk("ckpt/MANIFEST", 0);
    mk("ckpt/shard-00000", 1);
    mk("store", 1);
    mk("store/MANIFEST", 0);
    mk("store/shard-0000", 1);
    mk("store/shard-0000/data.mdb", 0);
    mk("data", 1);
    mk("data/" RD_DATASET_FILE, 0);
    mk("manifest", 1);
    mk("manifest/MANIFEST", 0);
    mk("targets", 1);
    mk("targets/data.mdb", 0);
    mk("run", 1);
    mk("run/report.json", 0);
    // A checkpoint root with one job (a complete step has its MANIFEST), the job's own folder,
    // and a run folder holding that root as ckpt/ and a token store.
    mk("root", 1);
    mk("root/teacher", 1);
    mk("root/teacher/step-000000000010", 1);
    mk("root/teacher/step-000000000010/MANIFEST", 0);
    mk("root/teacher/step-000000000020", 1); // incomplete: no MANIFEST
    mk("root/teacher/step-30", 1);           // not a name train writes
    mk("root/teacher/step-30/MANIFEST", 0);
    mk("run2", 1);
    mk("run2/ckpt", 1);
    mk("run2/ckpt/s", 1);
    mk("run2/ckpt/s/step-000000000005", 1);
    mk("run2/ckpt/s/step-000000000005/MANIFEST", 0);
    mk("run2/tokens", 1);
    mk("run2/tokens/MANIFEST", 0);
    mk("run2/data", 1);
    static const struct {
        const char *rel;
        int kind;
        const char *part; // in `what`
    } cases[] = {
        {"missing", RD_APP_PATH_MISSING, "No such file or directory"},
        {"file", RD_APP_PATH_FILE, "a file"},
        {"empty", RD_APP_PATH_OTHER, "an empty folder"},
        {"other", RD_APP_PATH_OTHER, "a folder without a MANIFEST"},
        {"ckpt", RD_APP_PATH_TABLE_CKPT, "a table checkpoint"},
        {"store", RD_APP_PATH_TOKEN_STORE, "an instance-token store"},
        {"store/shard-0000", RD_APP_PATH_OTHER, "one shard's LMDB environment"},
        {"data", RD_APP_PATH_DATASET, "a dataset folder"},
        {"manifest", RD_APP_PATH_OTHER, "a MANIFEST but no shard folder"},
        {"targets", RD_APP_PATH_OTHER, "distillation target log"},
        {"run", RD_APP_PATH_OTHER, "a run folder of `recdistill train`"},
        {"root", RD_APP_PATH_OTHER,
         "a checkpoint root (<job>/step-N folders of 1 job inside, e.g. "},
        {"root", RD_APP_PATH_OTHER, "/root/teacher/step-000000000010)"},
        {"root/teacher", RD_APP_PATH_OTHER,
         "one job's checkpoint folder (step-N folders inside; its newest is "},
        {"root/teacher", RD_APP_PATH_OTHER, "/root/teacher/step-000000000010)"},
        {"run2", RD_APP_PATH_OTHER, "a run folder of `recdistill train` (its checkpoints: "},
        {"run2", RD_APP_PATH_OTHER, "/run2/ckpt/<job>/step-N, e.g. "},
        {"run2", RD_APP_PATH_OTHER, "/run2/ckpt/s/step-000000000005; its token store: "},
        {"run2", RD_APP_PATH_OTHER, "/run2/tokens)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int k = kind_of(cases[i].rel, what, sizeof what);
        if (k != cases[i].kind || !strstr(what, cases[i].part))
            fail_msg("%s: kind %d, '%s'", cases[i].rel, k, what);
    }
    // /dev/null: a special file.
    assert_int_equal(rd_app_path_kind("/dev/null", what, sizeof what), RD_APP_PATH_FILE);
    assert_string_equal(what, "a special file");

    // rd_app_wrong_folder: 0 for the kind wanted, else one message naming both.
    char msg[512], p[256];
    snprintf(p, sizeof p, "%s/ckpt", g_dir);
    assert_int_equal(
        rd_app_wrong_folder(p, RD_APP_PATH_TABLE_CKPT, "a table checkpoint", msg, sizeof msg), 0);
    snprintf(p, sizeof p, "%s/store", g_dir);
    assert_int_equal(
        rd_app_wrong_folder(p, RD_APP_PATH_TABLE_CKPT, "a table checkpoint", msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "/store is an instance-token store"));
    assert_non_null(strstr(msg, ", not a table checkpoint"));
    snprintf(p, sizeof p, "%s/file", g_dir);
    assert_int_equal(rd_app_wrong_folder(p, RD_APP_PATH_TOKEN_STORE, "a store", msg, sizeof msg),
                     1);
    assert_non_null(strstr(msg, "/file is a file, not a folder (expected a store)"));
    snprintf(p, sizeof p, "%s/missing", g_dir);
    assert_int_equal(rd_app_wrong_folder(p, RD_APP_PATH_TOKEN_STORE, "a store", msg, sizeof msg),
                     1);
    assert_non_null(strstr(msg, "/missing: No such file or directory (expected a store)"));

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    assert_int_equal(system(cmd), 0);
}

static void test_out_not_stdout(void **state) {
    (void)state;
    assert_int_equal(rd_app_out_not_stdout("p", "--out", NULL, "a PNG"), 0);
    assert_int_equal(rd_app_out_not_stdout("p", "--out", "x.png", "a PNG"), 0);
    assert_int_equal(rd_app_out_not_stdout("p", "--out", "-x", "a PNG"), 0);
    assert_int_equal(rd_app_out_not_stdout("p", "--out", "-", "a PNG is written to a file"), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),     cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_prints),   cmocka_unit_test(test_values),
        cmocka_unit_test(test_only),           cmocka_unit_test(test_parse_i64),
        cmocka_unit_test(test_parse_u64),      cmocka_unit_test(test_parse_double),
        cmocka_unit_test(test_parse_time),     cmocka_unit_test(test_path_kind),
        cmocka_unit_test(test_out_not_stdout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
