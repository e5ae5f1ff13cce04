// test_csv.c — the streaming delimited-text reader (rd/csv.h): dialect (quotes, delimiters
// including "::", CRLF, empty lines, BOM, missing final newline), positions in messages, the
// refill logic of file readers across window boundaries (compared with the memory reader),
// strict number parsing, out-of-memory injection, and a fuzz loop of random and mutated input.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/csv.h"
#include "rd/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Helpers: read every row of a buffer into one string "f1/f2;f1;..." (fields joined by '/',
// rows ended by ';', each row prefixed with its line number "L:").

typedef struct rows_out {
    char text[8192];
    int rc; // last return of rd_csv_next (0 at a clean end)
    rd_errbuf eb;
} rows_out;

static void drain(rd_csv_reader *r, rows_out *o) {
    const rd_csv_field *f;
    size_t n;
    size_t k = 0;
    o->text[0] = '\0';
    rd_errbuf_clear(&o->eb);
    while ((o->rc = rd_csv_next(r, &f, &n, &o->eb)) == 1) {
        k += (size_t)snprintf(o->text + k, sizeof o->text - k,
                              "%llu:", (unsigned long long)rd_csv_line(r));
        for (size_t i = 0; i < n; i++)
            k += (size_t)snprintf(o->text + k, sizeof o->text - k, "%s%.*s", i ? "/" : "",
                                  (int)f[i].len, f[i].ptr);
        k += (size_t)snprintf(o->text + k, sizeof o->text - k, ";");
        assert_true(k < sizeof o->text);
    }
}

static void parse_mem(const char *data, const char *delim, int quote, rows_out *o) {
    rd_csv_options opt;
    memset(&opt, 0, sizeof opt);
    snprintf(opt.delimiter, sizeof opt.delimiter, "%s", delim);
    opt.quote = quote;
    rd_csv_reader *r = NULL;
    assert_int_equal(rd_csv_open_mem("mem.csv", data, strlen(data), &opt, &r, NULL), RD_OK);
    drain(r, o);
    rd_csv_close(r);
}

// ---------------------------------------------------------------------------------------------
// Dialect

static void test_basic_comma(void **state) {
    (void)state;
    rows_out o;
    parse_mem("a,b,c\n1,2,3\n", ",", '"', &o);
    assert_int_equal(o.rc, 0);
    assert_string_equal(o.text, "1:a/b/c;2:1/2/3;");
    parse_mem("x,,\n,\n", ",", '"', &o); // empty fields are kept
    assert_string_equal(o.text, "1:x//;2:/;");
}

static void test_quotes(void **state) {
    (void)state;
    rows_out o;
    parse_mem("\"a,b\",\"say \"\"hi\"\"\",c\n", ",", '"', &o);
    assert_int_equal(o.rc, 0);
    assert_string_equal(o.text, "1:a,b/say \"hi\"/c;");
    // A quoted field may span lines; the row keeps its first line, the next row is counted on.
    parse_mem("1,\"two\nlines\",3\n4,5,6\n", ",", '"', &o);
    assert_string_equal(o.text, "1:1/two\nlines/3;3:4/5/6;");
    // A quote inside an unquoted field is an ordinary byte; "" is an empty quoted field.
    parse_mem("5'2\",x\"y,\"\"\n", ",", '"', &o);
    assert_string_equal(o.text, "1:5'2\"/x\"y/;");
    // Without quoting, quotes are data (MovieLens titles).
    parse_mem("\"a,b\"\n", ",", 0, &o);
    assert_string_equal(o.text, "1:\"a/b\";");
}

static void test_delimiters(void **state) {
    (void)state;
    rows_out o;
    parse_mem("1\t2\t3\n", "\t", 0, &o);
    assert_string_equal(o.text, "1:1/2/3;");
    parse_mem("1|Toy Story (1995)|0|1\n", "|", 0, &o);
    assert_string_equal(o.text, "1:1/Toy Story (1995)/0/1;");
    // Multi-byte "::": a single ':' is data; ":::" splits at the first two.
    parse_mem("1::Film: The Sequel::Comedy|Drama\na:::b\n", "::", 0, &o);
    assert_string_equal(o.text, "1:1/Film: The Sequel/Comedy|Drama;2:a/:b;");
    parse_mem("a::\n::b\n", "::", 0, &o);
    assert_string_equal(o.text, "1:a/;2:/b;");
    parse_mem("\"x::y\"::z\n", "::", '"', &o);
    assert_string_equal(o.text, "1:x::y/z;");
}

static void test_crlf_empty_lines_bom(void **state) {
    (void)state;
    rows_out o;
    parse_mem("a,b\r\n\r\n\n1,2\r\n", ",", '"', &o);
    assert_int_equal(o.rc, 0);
    assert_string_equal(o.text, "1:a/b;4:1/2;");
    parse_mem("\xEF\xBB\xBFh1,h2\n\n\nv1,v2", ",", '"', &o); // BOM, no final newline
    assert_string_equal(o.text, "1:h1/h2;4:v1/v2;");
    parse_mem("\"q\"\r\nz\r", ",", '"', &o);
    assert_string_equal(o.text, "1:q;2:z;");
    parse_mem("", ",", '"', &o);
    assert_int_equal(o.rc, 0);
    assert_string_equal(o.text, "");
    parse_mem("\n\r\n\n", ",", '"', &o);
    assert_string_equal(o.text, "");
}

// ---------------------------------------------------------------------------------------------
// Errors

static void test_errors_name_line(void **state) {
    (void)state;
    rows_out o;
    parse_mem("a,b\n1,2\n3,\"open\n4,5\n", ",", '"', &o);
    assert_int_equal(o.rc, RD_ERR_PARSE);
    assert_non_null(strstr(o.eb.msg, "mem.csv:3:"));
    assert_non_null(strstr(o.eb.msg, "unterminated"));
    parse_mem("a,b\n\n\"x\"y,2\n", ",", '"', &o);
    assert_int_equal(o.rc, RD_ERR_PARSE);
    assert_non_null(strstr(o.eb.msg, "mem.csv:3:"));
    assert_non_null(strstr(o.eb.msg, "after the closing quote"));

    // A NUL byte (binary or damaged input) is an error naming the line and column.
    {
        static const char nul[] = "a,b\n1,2\n3,x\0y\n";
        rd_csv_options o2 = {.delimiter = ",", .quote = '"'};
        rd_csv_reader *rn = NULL;
        assert_int_equal(rd_csv_open_mem("nul.csv", nul, sizeof nul - 1, &o2, &rn, NULL), RD_OK);
        drain(rn, &o);
        assert_int_equal(o.rc, RD_ERR_PARSE);
        assert_non_null(strstr(o.eb.msg, "nul.csv:3: NUL byte in column 2"));
        rd_csv_close(rn);
    }

    // Row length limit.
    rd_csv_options opt = {.delimiter = ",", .quote = '"', .max_line = 16};
    rd_csv_reader *r = NULL;
    const char *data = "short,row\nthis,row,is,much,longer,than,sixteen\n";
    assert_int_equal(rd_csv_open_mem("lim.csv", data, strlen(data), &opt, &r, NULL), RD_OK);
    drain(r, &o);
    assert_int_equal(o.rc, RD_ERR_PARSE);
    assert_non_null(strstr(o.eb.msg, "lim.csv:2:"));
    // The reader stays failed.
    const rd_csv_field *f;
    size_t n;
    assert_true(rd_csv_next(r, &f, &n, NULL) < 0);
    rd_csv_close(r);

    // A row past the limit inside a quoted field that is still open is named as what it most
    // likely is, a quote never closed (a stray '"' in a large file said only "row longer than
    // 67108864 bytes", where a small file said "unterminated quoted field"): its line, column
    // and the newlines it holds.
    const char *open_q = "a,b\n1,\"open\n2,3\n4,5\n6,7\n8,\"9\n";
    assert_int_equal(rd_csv_open_mem("q.csv", open_q, strlen(open_q), &opt, &r, NULL), RD_OK);
    drain(r, &o);
    assert_int_equal(o.rc, RD_ERR_PARSE);
    assert_non_null(strstr(o.eb.msg, "q.csv:2: quoted field (column 2) still open after 16 bytes "
                                     "and 4 newlines: an unterminated quote?"));
    rd_csv_close(r);
    // The same from a file, where the reader's window reaches the limit first.
    {
        char path[] = "/tmp/rd_test_csv_openq_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        FILE *fp = fdopen(fd, "w");
        assert_non_null(fp);
        fputs("a,b\n1,2\n3,\"open\n", fp);
        for (int i = 0; i < 400000; i++)
            fputs("4,5,6,7,8\n", fp);
        fclose(fp);
        rd_csv_options fo = {.delimiter = ",", .quote = '"', .max_line = 4096};
        rd_errbuf feb;
        rd_errbuf_clear(&feb);
        assert_int_equal(rd_csv_open(path, &fo, &r, &feb), RD_OK);
        const rd_csv_field *ff;
        size_t fn;
        int frc;
        while ((frc = rd_csv_next(r, &ff, &fn, &feb)) > 0)
            ;
        assert_int_equal(frc, RD_ERR_PARSE);
        assert_non_null(strstr(feb.msg, ":3: quoted field (column 2) still open after 4096 bytes"));
        assert_non_null(strstr(feb.msg, "an unterminated quote?"));
        rd_csv_close(r);
        unlink(path);
    }
    // An unquoted row past the limit keeps its message.
    const char *plain = "a,b\n\"q\",\"x\"\nthis,row,is,much,longer,than,sixteen\n";
    assert_int_equal(rd_csv_open_mem("p.csv", plain, strlen(plain), &opt, &r, NULL), RD_OK);
    drain(r, &o);
    assert_int_equal(o.rc, RD_ERR_PARSE);
    assert_non_null(strstr(o.eb.msg, "p.csv:3: row longer than 16 bytes"));
    rd_csv_close(r);

    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_csv_open("/nonexistent/dir/x.csv", NULL, &r, &eb), RD_ERR_IO);
    assert_null(r);
    assert_non_null(strstr(eb.msg, "/nonexistent/dir/x.csv"));
    rd_csv_options bad = {.delimiter = "\n"};
    assert_int_equal(rd_csv_open_mem("d", "x", 1, &bad, &r, NULL), RD_ERR_ARG);

    // A folder: named as such at the open (its first read used to fail as "x:1: read error").
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_csv_open("/tmp", NULL, &r, &eb), RD_ERR_IO);
    assert_null(r);
    assert_non_null(strstr(eb.msg, "/tmp: not a regular file (a folder)"));
}

// Lines ended by CR alone (classic Mac OS): the whole file read as one row gave "duplicate header
// column" further up. Said at line 1, quoted or not, whatever the delimiter; a lone CR inside a
// field of an LF file stays an ordinary byte.
static void test_cr_only_line_ends(void **state) {
    (void)state;
    rows_out o;
    static const char *const cr[] = {"ts,uid,iid\r100,1,a\r101,2,b\r",
                                     "\"ts\",\"uid\"\r\"1\",\"2\"\r", "\ra,b\rc,d",
                                     "1::2::3\r4::5::6\r"};
    for (size_t i = 0; i < sizeof cr / sizeof cr[0]; i++) {
        parse_mem(cr[i], i == 3 ? "::" : ",", i == 1 ? '"' : 0, &o);
        if (o.rc != RD_ERR_PARSE ||
            !strstr(o.eb.msg, "mem.csv:1: line ends are CR only (old Mac): convert to LF or CRLF"))
            fail_msg("case %zu: rc %d, '%s'", i, o.rc, o.eb.msg);
    }
    // Compressed logs, by their magic bytes (a small gzip file with a CR and no LF read as
    // CR-only text, a larger one failed on a NUL byte), and a small binary file with a NUL.
    static const struct {
        const char *data;
        size_t len;
        const char *msg;
    } bin[] = {
        {"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\r3", 12,
         "mem.csv:1: a gzip-compressed file, not text: decompress it first, or give /dev/stdin "
         "as its path and run `gzip -dc FILE | recdistill prepare CONFIG`"},
        {"\x28\xb5\x2f\xfd\x04\x00", 6,
         "a zstd-compressed file, not text: decompress it first, or "
         "give /dev/stdin as its path and run `zstd -dc FILE |"},
        {"\xfd"
         "7zXZ\x00\x00",
         7,
         "a xz-compressed file, not text: decompress it first, or give /dev/stdin as its path "
         "and run `xz -dc FILE |"},
        {"BZh91AY&SY\r", 11,
         "a bzip2-compressed file, not text: decompress it first, or give "
         "/dev/stdin as its path and run `bzip2 -dc FILE |"},
        {"PK\x03\x04\x14\x00", 6,
         "a zip-compressed file, not text: decompress it first, or give "
         "/dev/stdin as its path and run `unzip -p FILE |"},
        {"ab\x00c\rd", 6, "mem.csv:1: NUL byte (a binary or damaged file?)"},
        // UTF-16 and UTF-32 text (a spreadsheet's "Unicode text"), with a byte-order
        // mark or without: not "a binary or damaged file".
        {"\xff\xfeu\x00,\x00i\x00\n\x00", 10,
         "mem.csv:1: UTF-16LE text, not UTF-8 (or Latin-1): convert it first, e.g. iconv -f "
         "UTF-16LE -t UTF-8"},
        {"\xfe\xff\x00u\x00,\x00i\x00\n", 10, "mem.csv:1: UTF-16BE text, not UTF-8"},
        {"u\x00,\x00i\x00\n\x00", 8, "mem.csv:1: UTF-16LE text, not UTF-8"},
        {"\xff\xfe\x00\x00u\x00\x00\x00\n\x00\x00\x00", 12, "mem.csv:1: UTF-32LE text, not UTF-8"}};
    for (size_t i = 0; i < sizeof bin / sizeof bin[0]; i++) {
        rd_csv_options opt = {.delimiter = ","};
        rd_csv_reader *r = NULL;
        assert_int_equal(rd_csv_open_mem("mem.csv", bin[i].data, bin[i].len, &opt, &r, NULL),
                         RD_OK);
        drain(r, &o);
        rd_csv_close(r);
        if (o.rc != RD_ERR_PARSE || !strstr(o.eb.msg, bin[i].msg))
            fail_msg("binary case %zu: rc %d, '%s'", i, o.rc, o.eb.msg);
    }
    // A text line that starts like bzip2's magic is text.
    parse_mem("BZh,x\n1,2\n", ",", 0, &o);
    assert_int_equal(o.rc, 0);
    // A Latin-1 text may start with the bytes of a UTF-16 byte-order mark ("\xff\xfe" is "ÿþ"):
    // without a NUL byte after them it is text (UTF-16 writes one in every comma and line end).
    parse_mem("\xff\xfe,x\n1,2\n", ",", 0, &o);
    assert_int_equal(o.rc, 0);
    parse_mem("\xfe\xff"
              "a,x\n1,2\n",
              ",", 0, &o);
    assert_int_equal(o.rc, 0);
    // Binary bytes beside NUL bytes (little-endian 16-bit numbers) are not UTF-16 text.
    {
        rd_csv_options opt = {.delimiter = ","};
        rd_csv_reader *r = NULL;
        assert_int_equal(rd_csv_open_mem("mem.csv", "\x01\x00\x02\x00\n", 5, &opt, &r, NULL),
                         RD_OK);
        drain(r, &o);
        rd_csv_close(r);
    }
    if (o.rc != RD_ERR_PARSE || !strstr(o.eb.msg, "NUL byte"))
        fail_msg("binary 16-bit numbers: rc %d, '%s'", o.rc, o.eb.msg);
    parse_mem("a,b\rc\n1,2\n", ",", '"', &o);
    assert_int_equal(o.rc, 0);
    assert_string_equal(o.text, "1:a/b\rc;2:1/2;");
    parse_mem("a,b\n1,2\r3,4\n", ",", 0, &o);
    assert_int_equal(o.rc, 0);
    assert_string_equal(o.text, "1:a/b;2:1/2\r3/4;");
}

// ---------------------------------------------------------------------------------------------
// File readers refill their window: rows straddling the 1 MiB boundary (also a "::" delimiter and
// a CRLF cut in two) must parse exactly as from memory.

static char *temp_file(const char *data, size_t len) {
    char *path = malloc(64);
    snprintf(path, 64, "/tmp/rd_test_csv_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

static void compare_file_mem(const char *data, size_t len, const char *delim, int quote) {
    rd_csv_options opt;
    memset(&opt, 0, sizeof opt);
    snprintf(opt.delimiter, sizeof opt.delimiter, "%s", delim);
    opt.quote = quote;
    char *path = temp_file(data, len);
    rd_csv_reader *a = NULL, *b = NULL;
    assert_int_equal(rd_csv_open(path, &opt, &a, NULL), RD_OK);
    assert_int_equal(rd_csv_open_mem(path, data, len, &opt, &b, NULL), RD_OK);
    uint64_t rows = 0;
    for (;;) {
        const rd_csv_field *fa, *fb;
        size_t na, nb;
        int ra = rd_csv_next(a, &fa, &na, NULL);
        int rb = rd_csv_next(b, &fb, &nb, NULL);
        assert_int_equal(ra, rb);
        if (ra != 1)
            break;
        rows++;
        assert_int_equal(rd_csv_line(a), rd_csv_line(b));
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++) {
            assert_int_equal(fa[i].len, fb[i].len);
            assert_memory_equal(fa[i].ptr, fb[i].ptr, fa[i].len);
        }
    }
    assert_true(rows > 0);
    rd_csv_close(a);
    rd_csv_close(b);
    unlink(path);
    free(path);
}

static void test_file_refill(void **state) {
    (void)state;
    size_t cap = (size_t)3 << 20;
    char *buf = malloc(cap);
    rd_rng rng;
    rd_rng_seed(&rng, 5);
    // Rows of varying length, with quoted multi-line fields and CRLF, every byte offset mod 1 MiB
    // is hit by some row boundary pattern.
    for (int variant = 0; variant < 3; variant++) {
        size_t k = 0;
        uint64_t row = 0;
        const char *delim = variant == 1 ? "::" : ",";
        while (k + 5000 < cap) {
            int nf = 1 + (int)rd_rng_below(&rng, 6);
            for (int i = 0; i < nf; i++) {
                if (i)
                    k += (size_t)sprintf(buf + k, "%s", delim);
                if (variant == 2 && rd_rng_below(&rng, 4) == 0)
                    k += (size_t)sprintf(buf + k, "\"q\"\"%llu\nx\"", (unsigned long long)row);
                else {
                    int len = (int)rd_rng_below(&rng, variant == 0 ? 3000 : 40);
                    for (int j = 0; j < len; j++)
                        buf[k++] = (char)('a' + (j + (int)row) % 26);
                }
            }
            k += (size_t)sprintf(buf + k, rd_rng_below(&rng, 3) == 0 ? "\r\n" : "\n");
            if (rd_rng_below(&rng, 10) == 0)
                buf[k++] = '\n';
            row++;
        }
        compare_file_mem(buf, k, delim, variant == 2 ? '"' : 0);
    }
    // One row longer than the initial window (2.5 MiB) must grow it.
    size_t k = 0;
    k += (size_t)sprintf(buf + k, "head,x\n");
    memset(buf + k, 'z', (size_t)5 << 19);
    k += (size_t)5 << 19;
    k += (size_t)sprintf(buf + k, ",tail\nlast,row");
    compare_file_mem(buf, k, ",", '"');
    free(buf);
}

// A quoted field whose closing quote is the last byte of the first 1 MiB window, followed by a
// two-byte delimiter cut in two by the window: the reader must refill, not take the lone ':' for
// "an unexpected character after the closing quote". (Catches dropping the partial-delimiter
// P_MORE after a closing quote in parse_row.)
static void test_quote_then_split_delim(void **state) {
    (void)state;
    size_t cap = ((size_t)1 << 20) + 64;
    char *buf = malloc(cap);
    // Row 1 is padding of L bytes + '\n'; row 2 is "q"::b with its first ':' at 1 MiB - 1.
    size_t L = ((size_t)1 << 20) - 5;
    memset(buf, 'a', L);
    size_t k = L;
    k += (size_t)sprintf(buf + k, "\n\"q\"::b\n");
    assert_int_equal(buf[((size_t)1 << 20) - 1], ':');
    assert_int_equal(buf[((size_t)1 << 20) - 2], '"');
    compare_file_mem(buf, k, "::", '"');
    rd_csv_options opt;
    memset(&opt, 0, sizeof opt);
    snprintf(opt.delimiter, sizeof opt.delimiter, "::");
    opt.quote = '"';
    char *path = temp_file(buf, k);
    rd_csv_reader *r = NULL;
    assert_int_equal(rd_csv_open(path, &opt, &r, NULL), RD_OK);
    const rd_csv_field *f;
    size_t n;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_csv_next(r, &f, &n, &eb), 1);
    assert_int_equal(rd_csv_next(r, &f, &n, &eb), 1);
    assert_int_equal(n, 2);
    assert_int_equal(f[0].len, 1);
    assert_memory_equal(f[0].ptr, "q", 1);
    assert_int_equal(f[1].len, 1);
    assert_memory_equal(f[1].ptr, "b", 1);
    assert_int_equal(rd_csv_next(r, &f, &n, &eb), 0);
    rd_csv_close(r);
    unlink(path);
    free(path);
    free(buf);
}

// A file that starts with a UTF-8 BOM: the BOM is not part of the first column's name, also
// when read from a file (whose window is empty until the first refill). (Catches the BOM check
// running before the first read.)
static void test_file_bom(void **state) {
    (void)state;
    static const char data[] = "\xEF\xBB\xBFuser,item\n1,2\n";
    char *path = temp_file(data, sizeof data - 1);
    rd_csv_options opt = {.delimiter = ",", .quote = '"'};
    rd_csv_reader *r = NULL;
    assert_int_equal(rd_csv_open(path, &opt, &r, NULL), RD_OK);
    const rd_csv_field *f;
    size_t n;
    assert_int_equal(rd_csv_next(r, &f, &n, NULL), 1);
    assert_int_equal(n, 2);
    assert_int_equal(f[0].len, 4);
    assert_memory_equal(f[0].ptr, "user", 4);
    rd_csv_close(r);
    unlink(path);
    free(path);
}

// ---------------------------------------------------------------------------------------------
// Numbers

static int i64(const char *s, int64_t *v) {
    rd_csv_field f = {s, strlen(s)};
    return rd_csv_parse_i64(&f, v);
}

static int dbl(const char *s, double *v) {
    rd_csv_field f = {s, strlen(s)};
    return rd_csv_parse_double(&f, v);
}

static void test_numbers(void **state) {
    (void)state;
    int64_t v;
    double d;
    assert_int_equal(i64("881250949", &v), 0);
    assert_int_equal(v, 881250949);
    assert_int_equal(i64(" -42 ", &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(i64("9223372036854775807", &v), 0);
    assert_int_equal(i64("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(i64("9223372036854775808", &v), -1);
    assert_int_equal(i64("", &v), -1);
    assert_int_equal(i64("-", &v), -1);
    assert_int_equal(i64("12x", &v), -1);
    assert_int_equal(i64("1 2", &v), -1);
    assert_int_equal(i64("1.5", &v), -1);
    assert_int_equal(dbl("4", &d), 0);
    assert_true(d == 4.0);
    assert_int_equal(dbl("-2.5e3", &d), 0);
    assert_true(d == -2500.0);
    assert_int_equal(dbl(" 0.25\t", &d), 0);
    assert_true(d == 0.25);
    assert_int_equal(dbl("nan", &d), -1);
    assert_int_equal(dbl("inf", &d), -1);
    assert_int_equal(dbl("1e999", &d), -1);
    // Underflow is a valid number, kept as strtod rounds it (a subnormal here).
    assert_int_equal(dbl("1e-320", &d), 0);
    assert_true(d > 0 && d < 1e-300);
    assert_int_equal(dbl("-1e-400", &d), 0);
    assert_true(d == 0.0);
    assert_int_equal(dbl("0x10", &d), -1);
    assert_int_equal(dbl("abc", &d), -1);
    assert_int_equal(dbl("", &d), -1);
    assert_int_equal(dbl("3.", &d), 0);
    // A high-precision decimal export (65 characters: was refused as non-numeric).
    assert_int_equal(dbl("0.12345678901234567890123456789012345678901234567890123456789012345", &d),
                     0);
    assert_true(fabs(d - 0.12345678901234568) < 1e-16);
    char huge[600];
    memset(huge, '1', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(dbl(huge, &d), -1); // 599 digits: beyond the parser's field (and a double)
}

// ---------------------------------------------------------------------------------------------
// Out-of-memory injection: every allocation failure is a clean RD_ERR_NOMEM.

static long oom_budget;
static void *oom_malloc(size_t n) {
    return oom_budget-- > 0 ? malloc(n) : NULL;
}
static void *oom_realloc(void *p, size_t n) {
    return oom_budget-- > 0 ? realloc(p, n) : NULL;
}
static const rd_allocator oom_alloc = {oom_malloc, oom_realloc, free};

static void test_oom(void **state) {
    (void)state;
    // Enough fields to make the reader grow its field arrays and its output buffer.
    char data[4096];
    size_t k = 0;
    for (int i = 0; i < 40; i++)
        k += (size_t)snprintf(data + k, sizeof data - k, "%sfield%d", i ? "," : "", i);
    k += (size_t)snprintf(data + k, sizeof data - k, "\n\"%0300d\"\n", 7);
    int saw_ok = 0;
    for (long budget = 0; budget < 40; budget++) {
        oom_budget = budget;
        rd_alloc_set(&oom_alloc);
        rd_csv_reader *r = NULL;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int rc = rd_csv_open_mem("oom.csv", data, k, NULL, &r, &eb);
        if (rc == RD_OK) {
            const rd_csv_field *f;
            size_t n;
            while ((rc = rd_csv_next(r, &f, &n, &eb)) == 1)
                ;
            rd_csv_close(r);
        }
        rd_alloc_set(NULL);
        assert_true(rc == 0 || rc == RD_ERR_NOMEM);
        if (rc == RD_ERR_NOMEM)
            assert_non_null(strstr(eb.msg, "oom.csv"));
        saw_ok |= rc == 0;
    }
    assert_true(saw_ok);
}

// ---------------------------------------------------------------------------------------------
// Fuzz: random bytes and mutated valid rows never crash; every error names the input and a line
// that exists.

static void test_fuzz(void **state) {
    (void)state;
    static const char base[] = "user,item,\"ti,tle\",rating\r\n1,2,\"a \"\"b\"\"\",4\n\n"
                               "3::4::x::5\n\"multi\nline\",7,8,9\n";
    static const char alphabet[] = ",\"\n\r:|\tab1 \xEF\xBB\xBF";
    rd_rng rng;
    rd_rng_seed(&rng, 1234);
    char buf[512];
    int errors = 0, oks = 0;
    for (int it = 0; it < 20000; it++) {
        size_t len;
        if (it % 2) {
            len = (size_t)rd_rng_below(&rng, sizeof buf);
            for (size_t i = 0; i < len; i++)
                buf[i] = rd_rng_below(&rng, 2) ? alphabet[rd_rng_below(&rng, sizeof alphabet - 1)]
                                               : (char)rd_rng_below(&rng, 256);
        } else {
            len = sizeof base - 1;
            memcpy(buf, base, len);
            int muts = 1 + (int)rd_rng_below(&rng, 4);
            for (int m = 0; m < muts; m++) {
                size_t pos = (size_t)rd_rng_below(&rng, len);
                buf[pos] = alphabet[rd_rng_below(&rng, sizeof alphabet - 1)];
            }
        }
        static const char *const delims[] = {",", "::", "\t", "|"};
        rd_csv_options opt;
        memset(&opt, 0, sizeof opt);
        snprintf(opt.delimiter, sizeof opt.delimiter, "%s", delims[it % 4]);
        opt.quote = (it / 4) % 2 ? '"' : 0;
        opt.max_line = 200;
        rd_csv_reader *r = NULL;
        assert_int_equal(rd_csv_open_mem("fuzz.csv", buf, len, &opt, &r, NULL), RD_OK);
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        const rd_csv_field *f;
        size_t n;
        int rc;
        uint64_t lines = 1;
        for (size_t i = 0; i < len; i++)
            lines += buf[i] == '\n';
        while ((rc = rd_csv_next(r, &f, &n, &eb)) == 1) {
            assert_true(n >= 1);
            assert_true(rd_csv_line(r) >= 1 && rd_csv_line(r) <= lines);
            size_t total = 0;
            for (size_t i = 0; i < n; i++)
                total += f[i].len;
            assert_true(total <= len);
        }
        if (rc < 0) {
            errors++;
            assert_int_equal(rc, RD_ERR_PARSE);
            assert_memory_equal(eb.msg, "fuzz.csv:", 9);
            unsigned long long l = strtoull(eb.msg + 9, NULL, 10);
            assert_true(l >= 1 && l <= lines);
        } else {
            oks++;
        }
        rd_csv_close(r);
    }
    assert_true(errors > 100 && oks > 100);
}

// rd_csv_write_value: plain values are written as they are, others quoted; every one reads back
// through the reader as the same bytes (a comma, quotes, line breaks, an empty value).
static void test_write_value(void **state) {
    (void)state;
    // "cr\r": a CR at the end of an unquoted value would be read as half of a CRLF line end.
    static const char *vals[] = {"7",     "007", "a,b", "say \"hi\"", "two\nlines",
                                 "cr\rx", "",    "\"",  "cr\r"};
    const size_t nv = sizeof vals / sizeof vals[0];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    for (size_t i = 0; i < nv; i++) {
        fputs("x,", f);
        rd_csv_write_value(f, vals[i], strlen(vals[i]));
        fputc('\n', f);
    }
    assert_int_equal(fclose(f), 0);
    assert_non_null(strstr(buf, "x,7\nx,007\nx,\"a,b\"\n")); // plain ones unquoted
    rd_csv_options opt = {.delimiter = ",", .quote = '"'};
    rd_csv_reader *r = NULL;
    assert_int_equal(rd_csv_open_mem("w.csv", buf, len, &opt, &r, NULL), RD_OK);
    const rd_csv_field *fl;
    size_t n;
    size_t rows = 0;
    while (rd_csv_next(r, &fl, &n, NULL) == 1) {
        assert_int_equal(n, 2);
        assert_true(rows < nv);
        assert_int_equal(fl[1].len, strlen(vals[rows]));
        assert_memory_equal(fl[1].ptr, vals[rows], fl[1].len);
        rows++;
    }
    assert_int_equal(rows, nv);
    rd_csv_close(r);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_comma),
        cmocka_unit_test(test_quotes),
        cmocka_unit_test(test_delimiters),
        cmocka_unit_test(test_crlf_empty_lines_bom),
        cmocka_unit_test(test_errors_name_line),
        cmocka_unit_test(test_cr_only_line_ends),
        cmocka_unit_test(test_file_refill),
        cmocka_unit_test(test_quote_then_split_delim),
        cmocka_unit_test(test_file_bom),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_write_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
