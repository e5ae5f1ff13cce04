// csv.c — streaming reader of delimited text with file:line positions (see rd/csv.h).
//
// Workload: interaction logs of up to billions of rows, read once, front to back. The reader keeps
// one growing window of the file (1 MiB to start) and parses one row at a time out of it; a row
// that does not fit is retried after the window is compacted and refilled, so memory is bounded
// by the longest row (max_line), never by the file.
//
// Invariants: buf[beg, end) holds unparsed bytes; `line` is the line number of buf[beg]; the
// fields returned point into `out`, which only the next call rewrites.
#include "rd/csv.h"

#include "rd/alloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CSV_CHUNK    (1u << 20)
#define CSV_MAX_LINE ((size_t)64 << 20)
#define CSV_NAME_MAX 512

struct rd_csv_reader {
    char name[CSV_NAME_MAX];
    FILE *fp;          // NULL for memory readers
    char *own;         // the window (file readers); NULL for memory readers
    const char *buf;   // own, or the caller's buffer
    size_t cap;        // bytes allocated in own
    size_t beg, end;   // unparsed bytes are buf[beg, end)
    int eof;           // no more bytes will arrive after buf[end)
    int started;       // BOM check done
    int failed;        // sticky error state
    uint64_t line;     // line number of buf[beg]
    uint64_t row_line; // line of the row last returned
    char delim[4];
    size_t dlen;
    int quote;
    size_t max_line;
    // The quoted field the parse of the current row stopped in (column, 1-based; 0 = none) and
    // the newlines it held by then: a row past max_line inside an open quote is most likely a
    // quote that is never closed (a stray '"' swallowing the rest of a large file), said so.
    size_t open_col;
    uint64_t open_lines;
    char *out; // field bytes of the current row, unquoted
    size_t out_len, out_cap;
    size_t *starts; // field start offsets into out (n + 1 entries used)
    rd_csv_field *fields;
    size_t f_cap;
};

// ---------------------------------------------------------------------------------------------
// Opening and closing

static int
init_common(rd_csv_reader *r, const char *name, const rd_csv_options *opt, rd_errbuf *eb) {
    snprintf(r->name, sizeof r->name, "%s", name ? name : "<input>");
    const char *d = (opt && opt->delimiter[0]) ? opt->delimiter : ",";
    size_t dl = strnlen(d, sizeof opt->delimiter);
    if (dl == 0 || dl > 3 || memchr(d, '\n', dl) || memchr(d, '\r', dl))
        return rd_err_set(eb, RD_ERR_ARG, "%s: invalid delimiter (1 to 3 bytes, no newline)",
                          r->name);
    if (opt && opt->quote && memchr(d, opt->quote, dl))
        return rd_err_set(eb, RD_ERR_ARG, "%s: the quote character is part of the delimiter",
                          r->name);
    memcpy(r->delim, d, dl);
    r->delim[dl] = '\0';
    r->dlen = dl;
    r->quote = opt ? opt->quote : 0;
    r->max_line = (opt && opt->max_line) ? opt->max_line : CSV_MAX_LINE;
    r->line = 1;
    r->out_cap = 256;
    r->f_cap = 16;
    r->out = rd_malloc(r->out_cap);
    r->starts = rd_malloc((r->f_cap + 1) * sizeof *r->starts);
    r->fields = rd_malloc(r->f_cap * sizeof *r->fields);
    if (!r->out || !r->starts || !r->fields)
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory", r->name);
    return RD_OK;
}

int rd_csv_open(const char *path, const rd_csv_options *opt, rd_csv_reader **out, rd_errbuf *eb) {
    *out = NULL;
    rd_csv_reader *r = rd_calloc(1, sizeof *r);
    if (!r)
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory", path);
    int rc = init_common(r, path, opt, eb);
    if (rc != RD_OK)
        goto fn_fail;
    r->fp = fopen(path, "rb");
    if (!r->fp) {
        rc = rd_err_set(eb, RD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fn_fail;
    }
    // A folder opens on Linux, and its first read fails: "<path>:1: read error" said nothing
    // of the cause. FIFOs and devices stay readable (a log streamed through a pipe).
    struct stat st;
    if (fstat(fileno(r->fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = rd_err_set(eb, RD_ERR_IO, "%s: not a regular file (a folder)", path);
        goto fn_fail;
    }
    r->cap = CSV_CHUNK;
    r->own = rd_malloc(r->cap);
    if (!r->own) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory", path);
        goto fn_fail;
    }
    r->buf = r->own;
    *out = r;
    return RD_OK;
fn_fail:
    rd_csv_close(r);
    return rc;
}

int rd_csv_open_mem(const char *name,
                    const char *data,
                    size_t len,
                    const rd_csv_options *opt,
                    rd_csv_reader **out,
                    rd_errbuf *eb) {
    *out = NULL;
    rd_csv_reader *r = rd_calloc(1, sizeof *r);
    if (!r)
        return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory", name);
    int rc = init_common(r, name, opt, eb);
    if (rc != RD_OK) {
        rd_csv_close(r);
        return rc;
    }
    r->buf = data ? data : "";
    r->end = data ? len : 0;
    r->eof = 1;
    *out = r;
    return RD_OK;
}

void rd_csv_close(rd_csv_reader *r) {
    if (!r)
        return;
    if (r->fp)
        fclose(r->fp);
    rd_free(r->own);
    rd_free(r->out);
    rd_free(r->starts);
    rd_free(r->fields);
    rd_free(r);
}

uint64_t rd_csv_line(const rd_csv_reader *r) {
    return r->row_line;
}

const char *rd_csv_name(const rd_csv_reader *r) {
    return r->name;
}

// ---------------------------------------------------------------------------------------------
// Buffer management

// A row longer than max_line: inside a quoted field still open, name it (its column and the
// lines it spans), as a file too small to reach the limit names its unterminated quote.
static int too_long_error(const rd_csv_reader *r, rd_errbuf *eb) {
    if (r->open_col)
        return rd_err_set(eb, RD_ERR_PARSE,
                          "%s:%llu: quoted field (column %zu) still open after %zu bytes and %llu "
                          "newlines: an unterminated quote? (a '\"' that opens a field runs to the "
                          "next one; if quotes are ordinary bytes here, turn quoting off)",
                          r->name, (unsigned long long)r->line, r->open_col, r->max_line,
                          (unsigned long long)r->open_lines);
    return rd_err_set(eb, RD_ERR_PARSE, "%s:%llu: row longer than %zu bytes", r->name,
                      (unsigned long long)r->line, r->max_line);
}

// Make room and read more bytes. Keeps buf[beg, end) and moves it to the front.
static int refill(rd_csv_reader *r, rd_errbuf *eb) {
    if (r->eof)
        return RD_OK;
    if (r->beg > 0) {
        memmove(r->own, r->own + r->beg, r->end - r->beg);
        r->end -= r->beg;
        r->beg = 0;
    }
    if (r->end == r->cap) {
        if (r->cap > r->max_line + 4)
            return too_long_error(r, eb);
        size_t ncap = r->cap * 2;
        char *nb = rd_realloc(r->own, ncap);
        if (!nb)
            return rd_err_set(eb, RD_ERR_NOMEM, "%s: out of memory for a %zu-byte row", r->name,
                              ncap);
        r->own = nb;
        r->buf = nb;
        r->cap = ncap;
    }
    size_t got = fread(r->own + r->end, 1, r->cap - r->end, r->fp);
    r->end += got;
    if (got == 0) {
        if (ferror(r->fp))
            return rd_err_set(eb, RD_ERR_IO, "%s:%llu: read error", r->name,
                              (unsigned long long)r->line);
        r->eof = 1;
    }
    return RD_OK;
}

static int out_push(rd_csv_reader *r, const char *p, size_t n) {
    if (r->out_len + n > r->out_cap) {
        size_t nc = r->out_cap;
        while (nc < r->out_len + n)
            nc *= 2;
        char *nb = rd_realloc(r->out, nc);
        if (!nb)
            return -1;
        r->out = nb;
        r->out_cap = nc;
    }
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
    return 0;
}

static int field_start(rd_csv_reader *r, size_t nf) {
    if (nf + 1 > r->f_cap) {
        size_t nc = r->f_cap * 2;
        size_t *ns = rd_realloc(r->starts, (nc + 1) * sizeof *ns);
        if (!ns)
            return -1;
        r->starts = ns;
        rd_csv_field *nfld = rd_realloc(r->fields, nc * sizeof *nfld);
        if (!nfld)
            return -1;
        r->fields = nfld;
        r->f_cap = nc;
    }
    r->starts[nf] = r->out_len;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Row parser

enum { P_ROW = 1, P_MORE = 2, P_EOF = 3, P_SKIP = 4 };

// A lone '\r' (not before '\n') at q on the first line, with no '\n' anywhere in the window
// after it: the file's lines end in CR only (classic Mac OS, some spreadsheet exports). Read as
// one huge row, it used to fail later with a misleading "duplicate header column". A lone CR
// inside a field of an LF file (a '\n' follows somewhere) stays an ordinary byte.
static int cr_only(const rd_csv_reader *r, const char *q, const char *e, uint64_t lines) {
    return r->line == 1 && lines == 0 && q + 1 < e && q[1] != '\n' &&
           !memchr(q, '\n', (size_t)(e - q));
}

// The compressed formats a log is often shipped in, by their magic bytes; NULL if none. *cat: the
// command that decompresses one to stdout, for a log streamed through a pipe (path /dev/stdin).
static const char *compressed_kind(const unsigned char *b, size_t n, const char **cat) {
    static const struct {
        const char *name, *magic;
        size_t len;
        const char *cat; // the command that writes it decompressed to stdout
    } k[] = {{"gzip", "\x1f\x8b", 2, "gzip -dc"},
             {"zstd", "\x28\xb5\x2f\xfd", 4, "zstd -dc"},
             {"xz",
              "\xfd"
              "7zXZ",
              5, "xz -dc"},
             {"zip", "PK\x03\x04", 4, "unzip -p"}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (n >= k[i].len && memcmp(b, k[i].magic, k[i].len) == 0) {
            *cat = k[i].cat;
            return k[i].name;
        }
    // bzip2: "BZh", the block size digit, then the block magic (a text line may start "BZh").
    if (n >= 10 && memcmp(b, "BZh", 3) == 0 && b[3] >= '1' && b[3] <= '9' &&
        memcmp(b + 4, "1AY&SY", 6) == 0) {
        *cat = "bzip2 -dc";
        return "bzip2";
    }
    return NULL;
}

// A log saved as UTF-16 or UTF-32 ("Unicode text" of a spreadsheet, PowerShell's default): by its
// byte-order mark, or, without one, by a NUL byte beside each of the first two ASCII bytes. Read
// as UTF-8 it failed on its first NUL byte as "a binary or damaged file", which it is not. The
// iconv name of the encoding, or NULL.
// A UTF-16 mark is also how a Latin-1 text may start ("\xff\xfe" is "ÿþ"): it counts only with a
// NUL byte after it (UTF-16 writes one in every comma and line end) or alone in the file. The
// bytes beside the NULs must be printable ASCII text: little-endian 16-bit binary numbers
// ("\x01\x00\x02\x00") stay "a binary or damaged file".
static int ascii_text(unsigned char c) {
    return (c >= 0x20 && c < 0x7f) || c == '\t' || c == '\n' || c == '\r';
}

static const char *wide_text_kind(const unsigned char *b, size_t n) {
    if (n >= 4 && memcmp(b, "\xff\xfe\x00\x00", 4) == 0)
        return "UTF-32LE";
    if (n >= 4 && memcmp(b, "\x00\x00\xfe\xff", 4) == 0)
        return "UTF-32BE";
    const int nul_after_mark = n == 2 || (n > 2 && memchr(b + 2, '\0', n - 2) != NULL);
    if (n >= 2 && memcmp(b, "\xff\xfe", 2) == 0 && nul_after_mark)
        return "UTF-16LE";
    if (n >= 2 && memcmp(b, "\xfe\xff", 2) == 0 && nul_after_mark)
        return "UTF-16BE";
    if (n >= 4 && ascii_text(b[0]) && !b[1] && ascii_text(b[2]) && !b[3])
        return "UTF-16LE";
    if (n >= 4 && !b[0] && ascii_text(b[1]) && !b[2] && ascii_text(b[3]))
        return "UTF-16BE";
    return NULL;
}

static int cr_only_error(const rd_csv_reader *r, rd_errbuf *eb) {
    // A small binary file with a CR byte and no LF reads as CR-only text: say what it is.
    if (memchr(r->buf, '\0', r->end))
        return rd_err_set(eb, RD_ERR_PARSE, "%s:1: NUL byte (a binary or damaged file?)", r->name);
    return rd_err_set(eb, RD_ERR_PARSE,
                      "%s:1: line ends are CR only (old Mac): convert to LF or CRLF (e.g. "
                      "tr '\\r' '\\n')",
                      r->name);
}

// Parse one row starting at buf[beg]. Returns P_ROW (row in out/starts, *nf fields, *used bytes
// consumed including the newline, *nl newlines consumed), P_MORE (the row is not complete in the
// window: refill and retry), P_EOF, P_SKIP (an empty line of *used bytes), or a negative status.
static int parse_row(rd_csv_reader *r, size_t *nf_out, size_t *used, uint64_t *nl, rd_errbuf *eb) {
    const char *b = r->buf + r->beg;
    const char *e = r->buf + r->end;
    const char *p = b;
    const char *d = r->delim;
    size_t dl = r->dlen;
    uint64_t lines = 0;
    if (p == e)
        return r->eof ? P_EOF : P_MORE;
    // Empty lines: "\n" or "\r\n" (and a lone "\r" at the very end).
    if (*p == '\n') {
        *used = 1;
        *nl = 1;
        return P_SKIP;
    }
    if (*p == '\r') {
        if (p + 1 == e) {
            if (!r->eof)
                return P_MORE;
            *used = 1;
            *nl = 0;
            return P_SKIP;
        }
        if (p[1] == '\n') {
            *used = 2;
            *nl = 1;
            return P_SKIP;
        }
    }
    r->out_len = 0;
    r->open_col = 0;
    size_t nf = 0;
    for (;;) {
        if (field_start(r, nf) != 0)
            goto nomem;
        nf++;
        if ((size_t)(p - b) > r->max_line)
            goto too_long;
        if (r->quote && p < e && *p == (char)r->quote) {
            // Quoted field: runs to the matching quote; "" is a literal quote.
            p++;
            r->open_col = nf;
            for (;;) {
                r->open_lines = lines;
                if (p == e) {
                    if (!r->eof)
                        return P_MORE;
                    return rd_err_set(eb, RD_ERR_PARSE,
                                      "%s:%llu: unterminated quoted field (column %zu): a '\"' "
                                      "that opens a field runs to the next one; if quotes are "
                                      "ordinary bytes here, turn quoting off",
                                      r->name, (unsigned long long)r->line, nf);
                }
                if (*p == (char)r->quote) {
                    if (p + 1 == e && !r->eof)
                        return P_MORE;
                    if (p + 1 < e && p[1] == (char)r->quote) {
                        if (out_push(r, p, 1) != 0)
                            goto nomem;
                        p += 2;
                        continue;
                    }
                    p++;
                    r->open_col = 0;
                    break;
                }
                const char *q = p;
                while (q < e && *q != (char)r->quote) {
                    if (*q == '\n')
                        lines++;
                    q++;
                }
                if (out_push(r, p, (size_t)(q - p)) != 0)
                    goto nomem;
                p = q;
                if ((size_t)(p - b) > r->max_line)
                    goto too_long;
            }
            // After the closing quote: delimiter, end of row, or an error.
            if (p == e) {
                if (!r->eof)
                    return P_MORE;
                break;
            }
            if (*p == '\n') {
                p++;
                lines++;
                break;
            }
            if (*p == '\r') {
                if (p + 1 == e) {
                    if (!r->eof)
                        return P_MORE;
                    p++;
                    break;
                }
                if (p[1] == '\n') {
                    p += 2;
                    lines++;
                    break;
                }
                if (cr_only(r, p, e, lines))
                    return cr_only_error(r, eb);
            }
            if ((size_t)(e - p) < dl && !r->eof && memcmp(p, d, (size_t)(e - p)) == 0)
                return P_MORE;
            if ((size_t)(e - p) >= dl && memcmp(p, d, dl) == 0) {
                p += dl;
                continue;
            }
            return rd_err_set(eb, RD_ERR_PARSE,
                              "%s:%llu: unexpected character '%c' after the closing quote of "
                              "column %zu (a field that starts with '\"' is quoted; if quotes "
                              "are ordinary bytes here, turn quoting off)",
                              r->name, (unsigned long long)(r->line + lines),
                              (*p >= 32 && *p < 127) ? *p : '?', nf);
        }
        // Unquoted field: up to a delimiter or the end of the row.
        const char *q = p;
        int ended = 0; // 1 = end of row, 2 = delimiter
        for (;;) {
            if (q == e) {
                if (!r->eof)
                    return P_MORE;
                ended = 1;
                break;
            }
            char c = *q;
            if (c == '\n') {
                ended = 1;
                break;
            }
            if (c == '\r' && cr_only(r, q, e, lines))
                return cr_only_error(r, eb);
            if (c == d[0]) {
                size_t left = (size_t)(e - q);
                if (left >= dl) {
                    if (memcmp(q, d, dl) == 0) {
                        ended = 2;
                        break;
                    }
                } else if (!r->eof) {
                    return P_MORE;
                }
            }
            q++;
        }
        size_t flen = (size_t)(q - p);
        if (ended == 1 && flen > 0 && p[flen - 1] == '\r')
            flen--; // CRLF
        if (out_push(r, p, flen) != 0)
            goto nomem;
        if (ended == 2) {
            p = q + dl;
            continue;
        }
        p = q;
        if (p < e) { // the newline
            p++;
            lines++;
        }
        break;
    }
    if ((size_t)(p - b) > r->max_line + 2)
        goto too_long;
    r->starts[nf] = r->out_len;
    *nf_out = nf;
    *used = (size_t)(p - b);
    *nl = lines;
    return P_ROW;
nomem:
    return rd_err_set(eb, RD_ERR_NOMEM, "%s:%llu: out of memory", r->name,
                      (unsigned long long)r->line);
too_long:
    r->open_lines = lines;
    return too_long_error(r, eb);
}

int rd_csv_next(rd_csv_reader *r, const rd_csv_field **fields, size_t *n, rd_errbuf *eb) {
    *fields = NULL;
    *n = 0;
    if (r->failed)
        return rd_err_set(eb, RD_ERR_STATE, "%s: reader already failed", r->name);
    for (;;) {
        if (!r->started) {
            if (r->end - r->beg < 3 && !r->eof) {
                int rc = refill(r, eb);
                if (rc != RD_OK) {
                    r->failed = 1;
                    return rc;
                }
                continue;
            }
            if (r->end - r->beg >= 3 && memcmp(r->buf + r->beg, "\xEF\xBB\xBF", 3) == 0)
                r->beg += 3;
            r->started = 1;
            // A compressed log read as text failed on a NUL byte or as CR-only lines.
            const char *cat = NULL;
            const char *kind =
                compressed_kind((const unsigned char *)r->buf + r->beg, r->end - r->beg, &cat);
            if (kind) {
                r->failed = 1;
                return rd_err_set(eb, RD_ERR_PARSE,
                                  "%s:1: a %s-compressed file, not text: decompress it first, or "
                                  "give /dev/stdin as its path and run `%s FILE | recdistill "
                                  "prepare CONFIG`",
                                  r->name, kind, cat);
            }
            const char *wide =
                wide_text_kind((const unsigned char *)r->buf + r->beg, r->end - r->beg);
            if (wide) {
                r->failed = 1;
                return rd_err_set(eb, RD_ERR_PARSE,
                                  "%s:1: %s text, not UTF-8 (or Latin-1): convert it first, e.g. "
                                  "iconv -f %s -t UTF-8",
                                  r->name, wide, wide);
            }
        }
        size_t nf = 0, used = 0;
        uint64_t nl = 0;
        int pr = parse_row(r, &nf, &used, &nl, eb);
        if (pr < 0) {
            r->failed = 1;
            return pr;
        }
        if (pr == P_MORE) {
            int rc = refill(r, eb);
            if (rc != RD_OK) {
                r->failed = 1;
                return rc;
            }
            continue;
        }
        if (pr == P_EOF)
            return 0;
        if (pr == P_SKIP) {
            r->beg += used;
            r->line += nl;
            continue;
        }
        r->row_line = r->line;
        r->beg += used;
        r->line += nl;
        for (size_t i = 0; i < nf; i++) {
            r->fields[i].ptr = r->out + r->starts[i];
            r->fields[i].len = r->starts[i + 1] - r->starts[i];
            // A NUL byte is never text: a binary or damaged file, not a value to hash.
            if (r->fields[i].len && memchr(r->fields[i].ptr, '\0', r->fields[i].len)) {
                r->failed = 1;
                return rd_err_set(eb, RD_ERR_PARSE,
                                  "%s:%llu: NUL byte in column %zu (a binary or damaged file?)",
                                  r->name, (unsigned long long)r->row_line, i + 1);
            }
        }
        *fields = r->fields;
        *n = nf;
        return 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers

static void trim(const rd_csv_field *f, const char **p, const char **e) {
    *p = f->ptr;
    *e = f->ptr + f->len;
    while (*p < *e && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*e > *p && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

int rd_csv_parse_i64(const rd_csv_field *f, int64_t *out) {
    const char *p, *e;
    trim(f, &p, &e);
    int neg = 0;
    if (p < e && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    if (p == e)
        return -1;
    uint64_t v = 0;
    uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t dgt = (uint64_t)(*p - '0');
        if (v > (lim - dgt) / 10)
            return -1;
        v = v * 10 + dgt;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int rd_csv_parse_double(const rd_csv_field *f, double *out) {
    const char *p, *e;
    trim(f, &p, &e);
    size_t len = (size_t)(e - p);
    // Room for any decimal export (a DECIMAL(38, 37) with sign and exponent is ~45 characters;
    // 64 refused a 65-digit fraction as "non-numeric").
    if (len == 0 || len >= 512)
        return -1;
    char tmp[512];
    memcpy(tmp, p, len);
    tmp[len] = '\0';
    // strtod also accepts "inf", "nan" and hex floats; only finite decimal values are wanted.
    for (size_t i = 0; i < len; i++) {
        char c = tmp[i];
        if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
            return -1;
    }
    char *endp = NULL;
    double v = strtod(tmp, &endp);
    // ERANGE with a finite result is an underflow (1e-320): a valid number, kept as strtod
    // rounds it (to a subnormal or 0); an overflow is inf and refused.
    if (endp != tmp + len || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

void rd_csv_write_value(FILE *f, const char *s, size_t n) {
    int quote = 0;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        fwrite(s, 1, n, f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            fputc('"', f);
        fputc(s[i], f);
    }
    fputc('"', f);
}
