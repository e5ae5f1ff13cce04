// rd/csv.h — a streaming reader of delimited text (CSV, TSV, MovieLens "::" and "|" files) that
// knows where it is: every row carries the file name and the line it starts on, so that callers
// can report "u.data:17: ..." for any bad value.
//
// Defines:
//   rd_csv_options     delimiter (1..3 bytes, e.g. "," "\t" "|" "::"), quoting, line length limit
//   rd_csv_field       one field of the current row: pointer + length (not NUL-terminated)
//   rd_csv_reader      opaque streaming reader (file or memory)
//   rd_csv_open()      open a file;  rd_csv_open_mem(): read from a caller-owned buffer
//   rd_csv_next()      next non-empty row (1), end of input (0), or an error (< 0)
//   rd_csv_line()      line number (1-based) where the current row starts
//   rd_csv_name()      the file name used in messages
//   rd_csv_close()
//   rd_csv_parse_i64() / rd_csv_parse_double()   strict numeric conversion of a field
//
// Dialect: rows end at "\n" or "\r\n" (a lone "\r" before "\n" is dropped); empty lines (also
// "\r" alone) are skipped but counted; a UTF-8 byte-order mark at the start is ignored; the last
// row may lack its newline. With quoting on (quote = '"'), a field that starts with a quote runs
// to the matching quote, may contain delimiters and newlines, and "" inside it stands for one
// quote; a quote inside an unquoted field is an ordinary byte. Bytes are passed through untouched
// (no transcoding: Latin-1 input simply yields Latin-1 bytes).
//
// Errors (RD_ERR_PARSE, message "name:line: ..."): unterminated quoted field, a character after a
// closing quote that is not a delimiter or the end of the row, a row longer than max_line bytes
// (inside a quoted field still open: named with its column as a likely unterminated quote),
// a NUL byte in a field (binary or damaged input), a first line holding a lone "\r" with no "\n"
// after it in the window ("name:1: line ends are CR only (old Mac): convert to LF or CRLF").
// RD_ERR_IO for unreadable files and folders ("name: not a regular file (a folder)"),
// RD_ERR_NOMEM when a buffer cannot grow.
#ifndef RD_CSV_H
#define RD_CSV_H

#include "rd/error.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rd_csv_options {
    char delimiter[4]; // 1..3 bytes, NUL-terminated; default (all zero) ","
    int quote;         // quote character ('"') or 0 = no quoting (MovieLens); default 0 when the
                       // struct is zeroed, so set it explicitly for RFC-4180 CSV
    size_t max_line;   // longest row in bytes; 0 = 64 MiB
} rd_csv_options;

typedef struct rd_csv_field {
    const char *ptr; // not NUL-terminated; valid until the next rd_csv_next or rd_csv_close
    size_t len;
} rd_csv_field;

typedef struct rd_csv_reader rd_csv_reader;

/**
 * Open a delimited text file for streaming.
 * @param[in]  path  file to read
 * @param[in]  opt   dialect (NULL = "," without quoting); copied
 * @param[out] out   the reader; free with rd_csv_close
 * @param[out] eb    "path: why" on failure
 * @return RD_OK, RD_ERR_IO (cannot open; a folder), RD_ERR_ARG (bad delimiter), RD_ERR_NOMEM
 */
int rd_csv_open(const char *path, const rd_csv_options *opt, rd_csv_reader **out, rd_errbuf *eb);

/** Same over `len` bytes at `data`, which must outlive the reader; `name` appears in messages. */
int rd_csv_open_mem(const char *name,
                    const char *data,
                    size_t len,
                    const rd_csv_options *opt,
                    rd_csv_reader **out,
                    rd_errbuf *eb);

/**
 * Read the next non-empty row.
 * @param[out] fields  array of *n fields, owned by the reader, valid until the next call
 * @param[out] n       number of fields (>= 1)
 * @return 1 = a row, 0 = end of input, < 0 = rd_status (RD_ERR_PARSE, RD_ERR_IO, RD_ERR_NOMEM)
 *         with "name:line: what" in eb. After an error the reader stays in the error state.
 */
int rd_csv_next(rd_csv_reader *r, const rd_csv_field **fields, size_t *n, rd_errbuf *eb);

/** 1-based line on which the row last returned by rd_csv_next starts (0 before the first). */
uint64_t rd_csv_line(const rd_csv_reader *r);

/** The name used in messages (the path, or the name given to rd_csv_open_mem). */
const char *rd_csv_name(const rd_csv_reader *r);

/** Close and free. Accepts NULL. */
void rd_csv_close(rd_csv_reader *r);

/** Strict conversions of a whole field (ASCII spaces around the number are allowed).
 *  parse_i64: optional sign and decimal digits, no overflow. parse_double: strtod syntax, finite.
 *  @return 0 on success, -1 if the field is empty, not a number, has trailing bytes or overflows.
 */
int rd_csv_parse_i64(const rd_csv_field *f, int64_t *out);
int rd_csv_parse_double(const rd_csv_field *f, double *out);

/** Write the n bytes at s to f as one CSV value: as they are, or quoted (RFC 4180: "..." with
 *  every quote doubled) when they hold a comma, a quote or a line break, so that any value (a
 *  raw id of a log) reads back as it was. */
void rd_csv_write_value(FILE *f, const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif // RD_CSV_H
