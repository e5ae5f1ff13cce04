// schema.c — the CSV/TSV source of `prepare`: a YAML schema (rd_schema_config) says which columns
// are user, item, time and label, which are features, and which side tables to join by key; the
// MovieLens 100K and 1M formats are presets of it.
//
// Pipeline: (1) load every side table into a hash map key -> row, with the row's feature values
// already turned into keys/floats; (2) stream the interaction log, checking every row (column
// count, numbers, timestamps, join keys) and keeping one compact event per row; (3) sort the events
// by (time, user id, item id, line), with ids in natural order (numbers by value, before other
// strings); (4) feed them to the dataset builder in that order.
//
// Workload: the log is held in memory for the sort (about 8 bytes per key slot + 4 per numeric
// field + 40 bytes per event), side tables likewise. MovieLens-100K takes a fraction of a second.
//
// Conventions: an empty categorical value is a missing value (key 0); an empty multi value yields
// no keys; numeric, timestamp and label columns must hold numbers. A "flags" field covers
// `max_len` consecutive 0/1 columns starting at `column`; its keys are the names of the columns
// holding 1 (how MovieLens-100K stores genres). Bytes are hashed as they are (no transcoding).
#include "dataset_internal.h"

#include "rd/alloc.h"
#include "rd/clock.h"
#include "rd/csv.h"
#include "rd/hash.h"
#include "rd/log.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------------------------------------
// Presets

static void set_cols(char (*dst)[RD_COLUMN_MAX], int *n, const char *const *names) {
    *n = 0;
    for (; names[*n]; (*n)++)
        snprintf(dst[*n], RD_COLUMN_MAX, "%s", names[*n]);
}

static void add_field(rd_schema_config *sc,
                      const char *name,
                      const char *column,
                      const char *side,
                      int kind,
                      int max_len,
                      int flags) {
    rd_field_config *f = &sc->fields[sc->n_fields++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->column, sizeof f->column, "%s", column);
    snprintf(f->side, sizeof f->side, "%s", side);
    f->kind = kind;
    f->max_len = max_len;
    snprintf(f->sep, sizeof f->sep, "|");
    f->flags = flags;
}

static void set_side(rd_side_config *sd,
                     const char *name,
                     const char *path,
                     const char *delim,
                     const char *const *cols,
                     const char *key) {
    memset(sd, 0, sizeof *sd);
    snprintf(sd->name, sizeof sd->name, "%s", name);
    snprintf(sd->path, sizeof sd->path, "%s", path);
    snprintf(sd->delimiter, sizeof sd->delimiter, "%s", delim);
    set_cols(sd->columns, &sd->n_columns, cols);
    snprintf(sd->key_column, sizeof sd->key_column, "%s", key);
    snprintf(sd->join_column, sizeof sd->join_column, "%s", key);
    snprintf(sd->encoding, sizeof sd->encoding, "latin-1");
}

int rd_schema_preset(int source, rd_schema_config *sc, rd_errbuf *eb) {
    if (source != RD_DATA_MOVIELENS100K && source != RD_DATA_MOVIELENS1M)
        return rd_err_set(eb, RD_ERR_ARG, "no schema preset for data source %d", source);
    memset(sc, 0, sizeof *sc);
    static const char *const log_cols[] = {"user_id", "item_id", "rating", "timestamp", NULL};
    set_cols(sc->columns, &sc->n_columns, log_cols);
    snprintf(sc->user_column, sizeof sc->user_column, "user_id");
    snprintf(sc->item_column, sizeof sc->item_column, "item_id");
    snprintf(sc->time_column, sizeof sc->time_column, "timestamp");
    snprintf(sc->time_format, sizeof sc->time_format, "unix");
    snprintf(sc->label_column, sizeof sc->label_column, "rating");
    sc->label_op = RD_LABEL_GE;
    sc->label_threshold = 4;
    sc->header = 0;
    sc->n_side = 2;
    if (source == RD_DATA_MOVIELENS100K) {
        static const char *const users[] = {"user_id", "age", "gender", "occupation", "zip", NULL};
        static const char *const items[] = {
            "item_id",     "title",     "release_date", "video_release_date", "imdb_url", "unknown",
            "action",      "adventure", "animation",    "children",           "comedy",   "crime",
            "documentary", "drama",     "fantasy",      "film_noir",          "horror",   "musical",
            "mystery",     "romance",   "sci_fi",       "thriller",           "war",      "western",
            NULL};
        snprintf(sc->path, sizeof sc->path, "u.data");
        snprintf(sc->delimiter, sizeof sc->delimiter, "\t");
        set_side(&sc->side[0], "users", "u.user", "|", users, "user_id");
        set_side(&sc->side[1], "items", "u.item", "|", items, "item_id");
    } else {
        static const char *const users[] = {"user_id", "gender", "age", "occupation", "zip", NULL};
        static const char *const items[] = {"item_id", "title", "genres", NULL};
        snprintf(sc->path, sizeof sc->path, "ratings.dat");
        snprintf(sc->delimiter, sizeof sc->delimiter, "::");
        set_side(&sc->side[0], "users", "users.dat", "::", users, "user_id");
        set_side(&sc->side[1], "items", "movies.dat", "::", items, "item_id");
    }
    // The fields, in this order in both: the users' columns are named alike (in another order in
    // the file), and only the genres differ: 19 0/1 columns of u.item from "unknown" on (100K),
    // one '|'-separated column of movies.dat (1M).
    add_field(sc, "age", "age", "users", RD_FIELD_CATEGORICAL, 8, 0);
    add_field(sc, "gender", "gender", "users", RD_FIELD_CATEGORICAL, 8, 0);
    add_field(sc, "occupation", "occupation", "users", RD_FIELD_CATEGORICAL, 8, 0);
    add_field(sc, "zip", "zip", "users", RD_FIELD_CATEGORICAL, 8, 0);
    if (source == RD_DATA_MOVIELENS100K)
        add_field(sc, "genres", "unknown", "items", RD_FIELD_CATEGORICAL, 19, 1);
    else
        add_field(sc, "genres", "genres", "items", RD_FIELD_MULTI, 6, 0);
    add_field(sc, "rating", "rating", "", RD_FIELD_FEEDBACK, 8, 0);
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Value parsing

// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong form, no surrogate,
// nothing above U+10FFFF) at p, of the n bytes there: 1 for ASCII, 0 when it is not one.
static size_t utf8_seq(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (len == 0 || len > n)
        return 0;
    // The second byte's range excludes the overlong forms (e0, f0), the surrogates (ed) and
    // code points above U+10FFFF (f4).
    unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if ((p[k] & 0xc0) != 0x80)
            return 0;
    return len;
}

// A printable excerpt of a field for messages: printable ASCII and whole UTF-8 characters (a
// user 'üser_1' is shown so, where it read '??ser_1'); control bytes, C1 controls and bytes that
// are not UTF-8 as '?'.
static const char *show(const rd_csv_field *f, char *buf, size_t n) {
    const unsigned char *p = (const unsigned char *)f->ptr;
    size_t k = 0, i = 0;
    while (i < f->len && k + 4 < n) {
        size_t L = p[i] < 0x80 ? 1 : utf8_seq(p + i, f->len - i);
        int c1 = L == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0; // U+0080..U+009F
        if (L > 1 && !c1 && k + L + 4 <= n) {
            memcpy(buf + k, p + i, L);
            k += L;
            i += L;
            continue;
        }
        if (L > 1 && !c1) // a whole character that no longer fits: cut here
            break;
        buf[k++] = (p[i] >= 32 && p[i] < 127) ? (char)p[i] : '?';
        i += L > 1 ? L : 1;
    }
    if (i < f->len) {
        buf[k++] = '.';
        buf[k++] = '.';
        buf[k++] = '.';
    }
    buf[k] = '\0';
    return buf;
}

// The offset of the first byte of f that is not part of a well-formed UTF-8 sequence, or f->len
// when every byte is.
static size_t utf8_bad_at(const rd_csv_field *f) {
    const unsigned char *p = (const unsigned char *)f->ptr;
    size_t i = 0;
    while (i < f->len) {
        size_t L = utf8_seq(p + i, f->len - i);
        if (L == 0)
            return i;
        i += L;
    }
    return f->len;
}

// A text value (an id, a join key, a categorical value, a label text) that is not UTF-8. Text is
// hashed as its bytes, and the config's label values, a Latin-1 side table (converted) and a
// serving client's strings are UTF-8: a Latin-1 "Caf\xe9" would silently be another key than
// "Café" there, never joining nor serving as that text.
static int not_utf8(rd_errbuf *eb,
                    const char *file,
                    uint64_t line,
                    const char *col,
                    const rd_csv_field *f,
                    size_t at,
                    const char *hint) {
    char sv[48];
    return rd_err_set(eb, RD_ERR_PARSE,
                      "%s:%llu: column '%s': value '%s' is not UTF-8 (byte 0x%02x at offset %zu); "
                      "%s",
                      file, (unsigned long long)line, col, show(f, sv, sizeof sv),
                      (unsigned)(unsigned char)f->ptr[at], at, hint);
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char **p, const char *e, int n, int64_t *v) {
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (*p >= e || **p < '0' || **p > '9')
            return -1;
        *v = *v * 10 + (**p - '0');
        (*p)++;
    }
    return 0;
}

// ISO 8601: YYYY-MM-DD[(T|t| )hh:mm[:ss[.fff...]][ UTC]][Z|z|(+|-)hh[[:]mm]], or the basic
// YYYYMMDD[(T|t)hhmm[ss[.fff...]]][ UTC|Z|z|(+|-)hh[[:]mm]] -> milliseconds since epoch.
static int parse_iso8601(const rd_csv_field *f, int64_t *ms) {
    const char *p = f->ptr, *e = f->ptr + f->len;
    while (p < e && *p == ' ')
        p++;
    while (e > p && e[-1] == ' ')
        e--;
    int64_t y, mo, d, hh = 0, mi = 0, ss = 0, frac = 0;
    if (digits(&p, e, 4, &y) || p >= e)
        return -1;
    // The basic format (ISO 8601 section 4.1.2.2, 4.2.2.2): YYYYMMDD[Thhmm[ss[.fff]]] with its
    // zone, e.g. 20231114T221320Z (compact exports, iCalendar). Its time is basic too, and it
    // needs the T: a date is not run on into a time.
    int basic = *p >= '0' && *p <= '9';
    if (basic) {
        if (digits(&p, e, 2, &mo) || digits(&p, e, 2, &d))
            return -1;
    } else if (*p++ != '-' || digits(&p, e, 2, &mo) || p >= e || *p++ != '-' ||
               digits(&p, e, 2, &d)) {
        return -1;
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return -1;
    int64_t off = 0;
    // RFC 3339 (section 5.6) lets the separator and the UTC designator be lowercase.
    int timed = p < e && (*p == 'T' || *p == 't' || (*p == ' ' && !basic));
    if (timed) {
        p++;
        if (digits(&p, e, 2, &hh) || (!basic && (p >= e || *p++ != ':')) || digits(&p, e, 2, &mi))
            return -1;
        if (p < e && (basic ? *p >= '0' && *p <= '9' : *p == ':')) {
            p += !basic;
            if (digits(&p, e, 2, &ss))
                return -1;
            if (p < e && (*p == '.' || *p == ',')) {
                p++;
                int nd = 0;
                while (p < e && *p >= '0' && *p <= '9') {
                    if (nd < 3)
                        frac = frac * 10 + (*p - '0');
                    nd++;
                    p++;
                }
                if (nd == 0)
                    return -1;
                for (int k = nd; k < 3; k++)
                    frac *= 10;
            }
        }
        if (hh > 23 || mi > 59 || ss > 60)
            return -1;
    }
    // The zone, after the time or after a date alone (an XML Schema xs:date such as
    // "2023-03-01Z" or "2023-03-01+02:00": the start of that day in that zone). " UTC" after
    // a time is Z: the text form of a TIMESTAMP in BigQuery's CSV exports ("2023-11-14
    // 22:13:20.123456 UTC"), refused before as "bad iso8601 timestamp".
    if (p < e && (*p == 'Z' || *p == 'z')) {
        p++;
    } else if (timed && e - p == 4 && memcmp(p, " UTC", 4) == 0) {
        p += 4;
    } else if (p < e && (*p == '+' || *p == '-')) {
        int sign = *p++ == '-' ? -1 : 1;
        int64_t oh, om = 0;
        if (digits(&p, e, 2, &oh))
            return -1;
        // +hh:mm, +hhmm, or +hh alone (ISO 8601 allows it; PostgreSQL prints "-05").
        if (p < e && *p == ':') {
            p++;
            if (digits(&p, e, 2, &om))
                return -1;
        } else if (p < e && digits(&p, e, 2, &om)) {
            return -1;
        }
        if (oh > 23 || om > 59)
            return -1;
        off = sign * (oh * 3600 + om * 60);
    }
    if (p != e)
        return -1;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - off;
    *ms = secs * 1000 + frac;
    return 0;
}

int rd_parse_iso8601(const char *s, size_t n, int64_t *ms) {
    rd_csv_field f = {.ptr = s, .len = n};
    int64_t v;
    if (parse_iso8601(&f, &v) != 0)
        return -1;
    *ms = v;
    return 0;
}

// Warning thresholds of prepare: a numeric input beyond this magnitude, and the event times a
// log's timestamps are expected in (unix seconds: 1971-01-01 .. 2200-01-01, end excluded).
#define RD_SCHEMA_NUMERIC_WARN 1000.0
#define RD_SCHEMA_TS_LO_S      31536000LL
#define RD_SCHEMA_TS_HI_S      7258118400LL

// Columns of a file with a header line (a schema's own list holds at most RD_MAX_COLUMNS).
#define RD_SCHEMA_MAX_HEADER 65536

#define TS_MIN_S (-62135596800LL) // 0001-01-01
#define TS_MAX_S 253402300799LL   // 9999-12-31T23:59:59

enum { TF_UNIX = 0, TF_UNIX_MS = 1, TF_ISO = 2 };

// A plain decimal time ("1600000000.123", unix; "1600000000123.5", unix_ms) to milliseconds,
// exactly: floor(value * 10^shift). Through a double, "1083080910.1690" * 1000 was
// 1083080910168.99998 and its floor lost the millisecond, which orders the events of a second.
// @return 0, -1 out of range, 1 not a plain decimal (an exponent: left to strtod).
static int parse_decimal_ms(const rd_csv_field *f, int shift, int64_t *ms) {
    const char *p = f->ptr, *e = f->ptr + f->len;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    int neg = 0;
    if (p < e && (*p == '-' || *p == '+'))
        neg = *p++ == '-';
    int64_t v = 0;
    int nd = 0, nf = 0, rest = 0;
    for (; p < e && *p >= '0' && *p <= '9'; p++, nd++) {
        // Under 10^15 after this digit, so under 10^18 after the scaling below (no overflow):
        // far past TS_MAX_S in seconds (2.5e11) and in milliseconds (2.5e14) alike.
        if (v >= 100000000000000LL)
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (p < e && *p == '.') {
        for (p++; p < e && *p >= '0' && *p <= '9'; p++) {
            if (nf < shift)
                v = v * 10 + (*p - '0'), nf++;
            else
                rest |= *p != '0';
            nd++;
        }
    }
    if (p != e || nd == 0)
        return 1;
    for (; nf < shift; nf++)
        v *= 10;
    *ms = neg ? -v - rest : v;
    return 0;
}

static int parse_time(const rd_csv_field *f, int tf, int64_t *ms) {
    int64_t v;
    if (tf == TF_ISO) {
        // The range of the unix formats holds once the UTC offset is applied too:
        // "9999-12-31T23:59:59-01:00" is in year 10000.
        if (parse_iso8601(f, ms) != 0)
            return -1;
        return *ms < TS_MIN_S * 1000 || *ms > TS_MAX_S * 1000 + 999 ? -1 : 0;
    }
    if (rd_csv_parse_i64(f, &v) == 0) {
        if (tf == TF_UNIX) {
            if (v < TS_MIN_S || v > TS_MAX_S)
                return -1;
            *ms = v * 1000;
        } else {
            if (v < TS_MIN_S * 1000 || v > TS_MAX_S * 1000)
                return -1;
            *ms = v;
        }
        return 0;
    }
    int dr = parse_decimal_ms(f, tf == TF_UNIX ? 3 : 0, ms);
    if (dr == 0)
        return *ms < TS_MIN_S * 1000 || *ms > TS_MAX_S * 1000 + 999 ? -1 : 0;
    if (dr < 0)
        return -1;
    double dv;
    if (rd_csv_parse_double(f, &dv) != 0)
        return -1;
    double scale = tf == TF_UNIX ? 1000.0 : 1.0;
    double m = floor(dv * scale);
    if (!(m >= (double)TS_MIN_S * 1000.0 && m <= (double)TS_MAX_S * 1000.0))
        return -1;
    *ms = (int64_t)m;
    return 0;
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

// Spellings of rd_label_op, in its order.
static const char *const label_ops[] = {">=", ">", "==", "!=", "<=", "<"};

static int label_of(int op, double v, double t) {
    switch (op) {
        case RD_LABEL_GE:
            return v >= t;
        case RD_LABEL_GT:
            return v > t;
        case RD_LABEL_EQ:
            return v == t;
        case RD_LABEL_NE:
            return v != t;
        case RD_LABEL_LE:
            return v <= t;
        default:
            return v < t;
    }
}

// label.values: 1 when the field's bytes equal one of the values (op ==) or none (op !=).
static int label_of_text(const rd_schema_config *sc, const rd_csv_field *f) {
    int in = 0;
    for (int i = 0; i < sc->n_label_values && !in; i++) {
        size_t n = strnlen(sc->label_values[i], sizeof sc->label_values[i]);
        in = f->len == n && (n == 0 || memcmp(f->ptr, sc->label_values[i], n) == 0);
    }
    return sc->label_op == RD_LABEL_NE ? !in : in;
}

// The label rule for messages, e.g. rating >= 4, or event == ["click", "buy"].
static void label_rule_text(const rd_schema_config *sc, char *out, size_t cap) {
    const char *op = label_ops[sc->label_op >= 0 && sc->label_op <= 5 ? sc->label_op : 0];
    if (sc->n_label_values == 0) {
        snprintf(out, cap, "%s %s %g", sc->label_column, op, sc->label_threshold);
        return;
    }
    size_t o = (size_t)snprintf(out, cap, "%s %s [", sc->label_column, op);
    for (int i = 0; i < sc->n_label_values && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", i ? ", " : "", sc->label_values[i]);
    if (o < cap)
        snprintf(out + o, cap - o, "]");
}

// ---------------------------------------------------------------------------------------------
// Field plans

// A categorical or multi value read with spaces or tabs around it, kept to name one in a
// warning (warn_spaced): its file (borrowed, as field_plan.miss_file), line and text.
typedef struct spaced_ex {
    const char *file;
    uint64_t line;
    char text[48];
} spaced_ex;
#define SPACED_EX_MAX 256 // examples kept per field (the first distinct values)

typedef struct field_plan {
    const rd_field_config *cfg;
    int side;          // -1 = log, else side table index
    int col;           // column in its file
    int kind;          // RD_FIELD_CATEGORICAL, MULTI (also flags), NUMERIC
    int flags;         // 0/1 flag columns
    uint32_t width;    // slots
    uint32_t offset;   // slot (or numeric index) in the record
    uint32_t soff;     // slot (or numeric index) inside the side row
    int index;         // in data.schema.fields (for key paths in messages)
    uint64_t filled;   // fields[].missing: missing values filled (rows of its file)
    uint64_t cut_file; // multi: such rows in the file being read (a part of the log, or the side
                       // table), told per file: the warning names the part, not the pattern
    uint64_t cut_line; // multi: the line of the first of them in that file
    uint64_t neg;      // log1p: values below 0 of its file, stored as log1p(0) = 0
    // multi: rows that repeat a value ("x|x|y"), each value being kept once; the first such row's
    // file (borrowed, as miss_file) and line, so that prepare says so once (tell_multi_repeats)
    uint64_t dup;
    const char *dup_file;
    uint64_t dup_line;
    // The first missing value (filled) and the first value below 0 (neg), so that the messages
    // name a file and line, not the log's pattern: the file (a part of the log, or the side
    // table; borrowed from csv_ctx, which outlives the plan's use) and its line there.
    const char *miss_file, *neg_file;
    uint64_t miss_line, neg_line;
    uint64_t present; // rows of its file holding a value (not empty, not a missing spelling)
    // Categorical and multi values read with spaces or tabs around them: the key of the text
    // inside (-> the index of its example in ex, SPACED_EX_MAX when none was kept), so that
    // prepare names a value that is another's text with spaces around it (warn_spaced). Made
    // at the first such value: a log without them pays two byte tests a value.
    rd__u64map spaced;
    spaced_ex *ex;
    uint32_t n_ex;
} field_plan;

typedef struct side_table {
    const rd_side_config *cfg;
    char path[RD_PATH_MAX * 2 + 2];
    int join_col; // column of the log
    int n_cols;
    uint32_t n_slots, n_num;
    rd__u64map rows; // key hash -> row
    uint64_t *keys;  // rows x n_slots
    float *nums;     // rows x n_num
    uint64_t *line;  // input line of each row (duplicate-key messages)
    uint64_t n_rows, cap_rows;
    uint64_t unmatched; // missing: empty: log rows whose key has no row here
    // The first unmatched log row's key and line (what a join that matches nothing shows), and
    // the keys of this table with spaces around them: a log id never matches one of those (ids
    // are compared byte for byte), the first with its line.
    char miss_key[48];
    const char *miss_file; // borrowed: a path of the log's file list (log_parts)
    uint64_t miss_line;
    uint64_t spaced;
    char spaced_key[48];
    uint64_t spaced_line;
    // Rows repeating an earlier row of their key in every column the fields read (an export
    // joined twice, a denormalised table): kept once, counted, the first with both lines.
    uint64_t *row_hash; // (rows) hash of the columns the fields read
    uint64_t repeats, repeat_line, repeat_of;
} side_table;

typedef struct csv_ctx {
    const rd_data_config *dc;
    rd_schema_config sc;
    int quote;
    char log_path[RD_PATH_MAX * 2 + 2]; // the log: a file, or a glob pattern of its parts
    size_t log_lit;                     // bytes of log_path from data.input: never a pattern
    glob_t parts;                       // the files of a pattern (have_parts), in name order
    int have_parts;                     // glob ran: parts must be freed
    int quiet_parts;                    // log_parts says nothing of skipped parts (a second walk)
    char *one_part[1];                  // the list of a log that is one file
    char **part_list;                   // the non-empty parts of a pattern (pointers into parts)
    uint64_t *part_base;                // (parts) lines of the parts before each: an event's
                                        // line (ev_meta.line) less it is its line in its part
    int n_cols;
    char (*cols)[RD_COLUMN_MAX]; // log column names (n_cols)
    int c_user, c_item, c_time, c_label, tf;
    rd__layout lay;
    field_plan plan[RD_MAX_FIELDS];
    int n_plan;
    side_table side[RD_MAX_SIDE];
    int n_side;
    int text_cols[3 + RD_MAX_SIDE + RD_MAX_FIELDS]; // log columns read as text: checked UTF-8
    int n_text;
    uint64_t dropped; // data.schema.drop_repeats: rows dropped as repeats of an earlier row
} csv_ctx;

static int is_space_byte(char c) {
    return c == ' ' || c == '\t';
}

// "; N of its keys have spaces around them ..." when the side table has such keys (a log key
// that is not found may be one of them written without the spaces); else, when the key `k` not
// found is an integer that the table holds as a decimal ("12" beside "12.0", an integer column
// written as floats: pandas does so to a column with gaps), or the other way round, that; else "".
static void spaced_hint(const side_table *st, const rd_csv_field *k, char *out, size_t n) {
    out[0] = 0;
    if (st->spaced) {
        snprintf(out, n,
                 "; %llu of its keys have spaces around them, e.g. '%s' on line %llu, and ids are "
                 "compared byte for byte",
                 (unsigned long long)st->spaced, st->spaced_key,
                 (unsigned long long)st->spaced_line);
        return;
    }
    if (!k || k->len == 0 || k->len > 40)
        return;
    size_t i = k->ptr[0] == '-' ? 1 : 0, d = 0;
    while (i < k->len && k->ptr[i] >= '0' && k->ptr[i] <= '9')
        i++, d++;
    if (d == 0)
        return;
    char alt[48];
    size_t an;
    if (i == k->len) { // an integer: is it there as a decimal?
        memcpy(alt, k->ptr, k->len);
        memcpy(alt + k->len, ".0", 2);
        an = k->len + 2;
    } else if (k->len - i >= 2 && k->ptr[i] == '.') {
        for (size_t j = i + 1; j < k->len; j++)
            if (k->ptr[j] != '0')
                return;
        an = i; // a decimal of zeros after the point: is it there as an integer?
        memcpy(alt, k->ptr, an);
    } else {
        return;
    }
    if (!rd__u64map_get(&st->rows, rd_hash64(alt, an, 0x5e1d)))
        return;
    snprintf(out, n,
             "; the table holds it as '%.*s': ids are compared byte for byte, and one side "
             "writes the integer ids as decimals (a float column, as pandas writes an integer "
             "column with gaps): write both as integers",
             (int)an, alt);
}

static void resolve_path(const char *input, const char *p, char *out, size_t n) {
    if (p[0] == '/' || !input[0])
        snprintf(out, n, "%s", p);
    else
        snprintf(out, n, "%s/%s", input, p);
}

// The log's path, and how much of it is data.input: a folder named "logs [2020]" is a name, not
// a pattern (its '[' made "*.csv" under it match nothing).
static void resolve_log_path(csv_ctx *cx, const char *input, const char *p) {
    resolve_path(input, p, cx->log_path, sizeof cx->log_path);
    cx->log_lit = (p[0] == '/' || !input[0]) ? 0 : strlen(input) + 1;
    if (cx->log_lit > strlen(cx->log_path))
        cx->log_lit = strlen(cx->log_path);
}

// glob() with GLOB_ERR stopped at a folder it could not read (GLOB_ABORTED, with no word of which
// one or why). The usual cause is the folder that holds the pattern's first glob character (a
// wrong data.input, a typo in the path): name it with its errno. Failing that, the folder was a
// deeper one ("*/day.csv" with a folder that cannot be read).
static int glob_folder_error(const char *pattern, size_t lit, rd_errbuf *eb) {
    char dir[RD_PATH_MAX * 2 + 2]; // as csv_ctx.log_path
    size_t cut = lit + strcspn(pattern + lit, "*?[");
    while (cut > 0 && pattern[cut - 1] != '/')
        cut--;
    if (cut == 0)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(cut > 1 ? cut - 1 : 1), pattern);
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return rd_err_set(eb, e == ENOENT || e == ENOTDIR ? RD_ERR_NOTFOUND : RD_ERR_IO,
                          "data.schema.path: cannot read the folder '%s' (%s) to list the "
                          "files of '%s'",
                          dir, strerror(e), pattern);
    }
    closedir(d);
    return rd_err_set(eb, RD_ERR_IO,
                      "data.schema.path: cannot list the files of '%s': a folder under '%s' "
                      "that the pattern reads cannot be read",
                      pattern, dir);
}

// The files of the log: log_path itself (also when a file of that very name exists), or, when it
// holds a glob character (* ? [), every non-empty regular file it matches, in name order (a
// folder of part files, one per day or per writer). Empty files are skipped (a writer with no
// rows leaves one); a match that is not a regular file, or no match at all, is an error naming
// the pattern.
// A part that holds no text: nothing but a UTF-8 byte-order mark and line ends (the mark a
// Windows tool writes into an empty export, the lone newline of an empty partition). It is
// skipped as an empty file is; read as a part, it refused the whole log as "empty input: no
// header line". The whole file is read, however long: the check stopped at 4 KiB, so a part of
// more line ends than that was refused so. A part with text stops it at its first byte of text.
static int blank_part(const char *path) {
    unsigned char b[4096];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0; // opening it again names the cause
    int blank = 1;
    size_t n;
    for (int first = 1; blank && (n = fread(b, 1, sizeof b, f)) > 0; first = 0) {
        size_t i = first && n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
        for (; i < n && blank; i++)
            blank = b[i] == '\n' || b[i] == '\r';
    }
    if (ferror(f))
        blank = 0; // read as a part, the error is named
    fclose(f);
    return blank;
}

static int log_parts(csv_ctx *cx, char ***files, size_t *n, rd_errbuf *eb) {
    struct stat lit;
    if (!strpbrk(cx->log_path + cx->log_lit, "*?[") || stat(cx->log_path, &lit) == 0) {
        cx->one_part[0] = cx->log_path; // a file named so
        *files = cx->one_part;
        *n = 1;
        return RD_OK;
    }
    // The data.input part is matched as it is spelled: its glob characters escaped.
    char pat[2 * sizeof cx->log_path];
    size_t k = 0;
    for (size_t i = 0; cx->log_path[i] && k + 2 < sizeof pat; i++) {
        if (i < cx->log_lit && strchr("*?[\\", cx->log_path[i]))
            pat[k++] = '\\';
        pat[k++] = cx->log_path[i];
    }
    pat[k] = '\0';
    int g = glob(pat, GLOB_ERR, NULL, &cx->parts);
    cx->have_parts = 1; // globfree after any return of glob, partial results included
    if (g == GLOB_NOMATCH || (g == 0 && cx->parts.gl_pathc == 0))
        return rd_err_set(eb, RD_ERR_NOTFOUND, "data.schema.path: no file matches '%s'",
                          cx->log_path);
    if (g == GLOB_ABORTED)
        return glob_folder_error(cx->log_path, cx->log_lit, eb);
    if (g != 0)
        return rd_err_set(eb, RD_ERR_IO, "data.schema.path: cannot list the files of '%s': %s",
                          cx->log_path, g == GLOB_NOSPACE ? "out of memory" : "read error");
    k = 0;
    if (!(cx->part_list = rd_malloc(cx->parts.gl_pathc * sizeof *cx->part_list)))
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < cx->parts.gl_pathc; i++) {
        struct stat st;
        const char *p = cx->parts.gl_pathv[i];
        if (stat(p, &st) != 0)
            return rd_err_set(eb, RD_ERR_IO, "%s (matched by '%s'): %s", p, cx->log_path,
                              strerror(errno));
        if (!S_ISREG(st.st_mode))
            return rd_err_set(eb, RD_ERR_SCHEMA,
                              "%s (matched by '%s'): not a regular file (narrow the pattern)", p,
                              cx->log_path);
        if (st.st_size > 0 && !blank_part(p))
            cx->part_list[k++] = cx->parts.gl_pathv[i];
        else if (!cx->quiet_parts)
            RD_LOG_INFO("%s: empty file%s, skipped (matched by '%s')", p,
                        st.st_size > 0 ? " (no text but line ends, or a byte-order mark)" : "",
                        cx->log_path);
    }
    if (k == 0)
        return rd_err_set(eb, RD_ERR_EMPTY, "%s: empty input: all %zu matching files are empty",
                          cx->log_path, cx->parts.gl_pathc);
    *files = cx->part_list;
    *n = k;
    return RD_OK;
}

int rd__input_stamp_file(const char *path, int stamp_content, rd__input_stamp *out, rd_errbuf *eb) {
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(path, &st) != 0)
        return rd_err_set(eb, errno == ENOENT ? RD_ERR_NOTFOUND : RD_ERR_IO, "%s: %s", path,
                          strerror(errno));
    out->size = (uint64_t)st.st_size;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (!stamp_content)
        return RD_OK;
    FILE *f = fopen(path, "rb");
    if (!f)
        return rd_err_set(eb, RD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char *buf = rd_malloc(1 << 20);
    if (!buf) {
        fclose(f);
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    }
    size_t got;
    uint32_t crc = 0;
    while ((got = fread(buf, 1, 1 << 20, f)) > 0)
        crc = rd_crc32c(crc, buf, got);
    int bad = ferror(f);
    fclose(f);
    rd_free(buf);
    if (bad)
        return rd_err_set(eb, RD_ERR_IO, "%s: read error", path);
    out->crc = crc;
    return RD_OK;
}

static int write_stamp(const char *path, void *ctx, rd_errbuf *eb) {
    rd__input_stamp st;
    int rc = rd__input_stamp_file(path, 1, &st, eb);
    if (rc != RD_OK)
        return rc;
    fprintf((FILE *)ctx,
            "  - {size: %llu, mtime_ns: %lld, crc32c: 0x%08x, path: ", (unsigned long long)st.size,
            (long long)st.mtime_ns, st.crc);
    rd__yaml_str((FILE *)ctx, path);
    fprintf((FILE *)ctx, "}\n");
    return RD_OK;
}

int rd__schema_each_input(const rd_data_config *dc,
                          int (*fn)(const char *path, void *ctx, rd_errbuf *eb),
                          void *ctx,
                          rd_errbuf *eb) {
    csv_ctx *cx = rd_calloc(1, sizeof *cx);
    if (!cx)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    int rc = RD_OK;
    cx->dc = dc;
    cx->quiet_parts = 1; // the read of the log says which parts it skips
    if (dc->source == RD_DATA_CSV)
        cx->sc = dc->schema;
    else
        rc = rd_schema_preset(dc->source, &cx->sc, eb);
    char **files = NULL;
    size_t n = 0;
    if (rc == RD_OK) {
        resolve_log_path(cx, dc->input, cx->sc.path);
        rc = log_parts(cx, &files, &n, eb);
    }
    for (size_t k = 0; rc == RD_OK && k < n; k++)
        rc = fn(files[k], ctx, eb);
    for (int s = 0; rc == RD_OK && s < cx->sc.n_side && s < RD_MAX_SIDE; s++) {
        char side[sizeof cx->log_path];
        resolve_path(dc->input, cx->sc.side[s].path, side, sizeof side);
        rc = fn(side, ctx, eb);
    }
    if (cx->have_parts)
        globfree(&cx->parts);
    rd_free(cx->part_list);
    rd_free(cx);
    return rc;
}

static void delim_of(const char *d, char *out) {
    // Accept the two-character spelling "\t" from configs that did not unescape it.
    if (strcmp(d, "\\t") == 0)
        snprintf(out, 4, "\t");
    else
        snprintf(out, 4, "%s", d[0] ? d : ",");
}

// The column named `name`: its index, -1 if none, -2 if the header names two or more columns
// so (which one the schema means is unknown; missing_col says so).
static int find_col(char (*cols)[RD_COLUMN_MAX], int n, const char *name) {
    int at = -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(cols[i], name) != 0)
            continue;
        if (at >= 0)
            return -2;
        at = i;
    }
    return at;
}

// A column the config names (at key path `key`) that `file` does not have, or names more than once.
// The columns are listed quoted, control bytes and bytes that are not UTF-8 as \xNN, so that what
// makes a header name differ from the wanted one shows: spaces around it (a "uid, iid" header),
// a stray CR (a line end converted twice), a tab, a Latin-1 letter. enc_key: the file's
// encoding key when it is read as UTF-8 (NULL when Latin-1), named when a column is the name
// in Latin-1.
// A column name for a message, control bytes and bytes that are not UTF-8 as \xNN (a stray CR, a
// Latin-1 letter), into out (cap >= 4 * RD_COLUMN_MAX). @return the bytes written
static size_t esc_name(char *out, size_t cap, const char *name) {
    const unsigned char *c = (const unsigned char *)name;
    size_t k = 0;
    out[0] = '\0';
    for (size_t j = 0, len = strlen(name); j < len && k + 5 <= cap;) {
        size_t L = utf8_seq(c + j, len - j);
        if (L == 0 || (L == 1 && (c[j] < 32 || c[j] == 127))) {
            k += (size_t)snprintf(out + k, cap - k, "\\x%02x", c[j]);
            j++;
        } else {
            memcpy(out + k, name + j, L);
            k += L;
            out[k] = '\0';
            j += L;
        }
    }
    return k;
}

// The delimiters a file read with the wrong one most likely uses (missing_col, columns_error),
// and how a message shows each.
static const char *const seps[] = {"\t", ",", ";", "|", "::", " "};
static const char *const sep_shown[] = {"\\t", ",", ";", "|", "::", " "};
#define N_SEPS ((int)(sizeof seps / sizeof seps[0]))

static int missing_col(rd_errbuf *eb,
                       const char *file,
                       const char *key,
                       const char *name,
                       char (*cols)[RD_COLUMN_MAX],
                       int n,
                       const char *enc_key) {
    // A name the header gives to several columns: the schema cannot say which one it reads.
    int first = -1, second = -1, times = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(cols[i], name) != 0)
            continue;
        if (times == 0)
            first = i;
        else if (times == 1)
            second = i;
        times++;
    }
    if (times > 1)
        return rd_err_set(eb, RD_ERR_SCHEMA,
                          "%s: column '%s' is named %d times in the header line of %s (columns %d "
                          "and %d%s): the schema cannot tell which one it reads; rename all but "
                          "one in the file",
                          key, name, times, file, first + 1, second + 1, times > 2 ? ", ..." : "");
    char list[800];
    size_t k = 0;
    list[0] = '\0';
    int near = -1;  // a column that is the name once spaces and control bytes around it go
    int latin = -1; // a column that is the name read as Latin-1
    int shown = 0;
    for (; shown < n && k + 4 * RD_COLUMN_MAX + 16 < sizeof list; shown++) {
        int i = shown;
        k += (size_t)snprintf(list + k, sizeof list - k, "%s'", i ? ", " : "");
        k += esc_name(list + k, sizeof list - k, cols[i]);
        k += (size_t)snprintf(list + k, sizeof list - k, "'");
    }
    if (shown < n)
        snprintf(list + k, sizeof list - k, ", ... (%d in all)", n);
    size_t nl = strlen(name);
    for (int i = 0; i < n && near < 0; i++) {
        const char *c = cols[i], *e = c + strlen(c);
        while (c < e && (unsigned char)*c <= ' ')
            c++;
        while (e > c && (unsigned char)e[-1] <= ' ')
            e--;
        if ((size_t)(e - c) == nl && memcmp(c, name, nl) == 0)
            near = i;
    }
    for (int i = 0; enc_key && i < n && latin < 0; i++) {
        char u[2 * RD_COLUMN_MAX];
        size_t m = 0;
        for (const unsigned char *c = (const unsigned char *)cols[i]; *c; c++) {
            if (*c >= 0x80)
                u[m++] = (char)(0xc0 | (*c >> 6));
            u[m++] = (char)(*c >= 0x80 ? 0x80 | (*c & 0x3f) : *c);
        }
        if (m == nl && m > strlen(cols[i]) && memcmp(u, name, nl) == 0)
            latin = i;
    }
    // A column that holds the name between the separators of another delimiter (a TSV or a
    // ';' file read as ','): its header came as one column, or a few.
    int other = -1, other_col = -1;
    for (int si = 0; si < N_SEPS && other < 0; si++) {
        size_t sl = strlen(seps[si]);
        for (int i = 0; i < n && other < 0; i++) {
            const char *c = cols[i], *e = c + strlen(c);
            if (!strstr(c, seps[si]))
                continue;
            while (c <= e) {
                const char *t = strstr(c, seps[si]);
                const char *te = t ? t : e;
                if ((size_t)(te - c) == nl && memcmp(c, name, nl) == 0) {
                    other = si;
                    other_col = i;
                    break;
                }
                if (!t)
                    break;
                c = t + sl;
            }
        }
    }
    char hint[2 * RD_COLUMN_MAX + 160] = "";
    if (near >= 0)
        snprintf(hint, sizeof hint,
                 "; column %d has spaces or control bytes around '%s' in the file, which are "
                 "part of its name",
                 near + 1, name);
    else if (latin >= 0)
        snprintf(hint, sizeof hint,
                 "; column %d is '%s' read as Latin-1: if the file is Latin-1, set %s: latin-1",
                 latin + 1, name, enc_key);
    else if (other >= 0)
        snprintf(hint, sizeof hint,
                 "; column %d holds '%s' between '%s' separators: the file looks "
                 "'%s'-separated, set its delimiter (data.schema.delimiter, or the side "
                 "table's) to \"%s\"",
                 other_col + 1, name, sep_shown[other], sep_shown[other], sep_shown[other]);
    return rd_err_set(eb, RD_ERR_SCHEMA, "%s: no column '%s' in %s (columns: %s)%s", key, name,
                      file, list, hint);
}

// A "flags" field whose max_len flag columns run past the file's last column.
static int flags_past_end(rd_errbuf *eb, const char *file, const field_plan *fp, int n_cols) {
    return rd_err_set(eb, RD_ERR_SCHEMA,
                      "%s: data.schema.fields[%d]: field '%s' (flags: true) covers max_len = %u "
                      "flag columns from '%s' (column %d), which run past the last column (%d): "
                      "set data.schema.fields[%d].max_len to the number of flag columns",
                      file, fp->index, fp->cfg->name, fp->width, fp->cfg->column, fp->col + 1,
                      n_cols, fp->index);
}

// A "flags" field whose flag columns repeat a name: each flag's key is its column's name, so the
// two columns would be one flag. (A header may repeat the name of a column nobody reads; these
// are read.) @return RD_OK, or the error naming both columns.
static int
flags_repeat(rd_errbuf *eb, const char *file, const field_plan *fp, char (*cols)[RD_COLUMN_MAX]) {
    for (uint32_t a = 1; a < fp->width; a++)
        for (uint32_t b = 0; b < a; b++) {
            const char *na = cols[fp->col + (int)a], *nb = cols[fp->col + (int)b];
            if (strcmp(na, nb) != 0)
                continue;
            return rd_err_set(eb, RD_ERR_SCHEMA,
                              "%s: data.schema.fields[%d]: field '%s' (flags: true) reads flag "
                              "columns %d and %d, both named '%s': a flag's key is its column's "
                              "name, so the two would be one flag; rename one in the file",
                              file, fp->index, fp->cfg->name, fp->col + (int)b + 1,
                              fp->col + (int)a + 1, na);
        }
    return RD_OK;
}

// A row of a Latin-1 file as UTF-8: every byte >= 0x80 is the code point of the same value, two
// bytes in UTF-8. The fields are copied into *buf and *out points at them (both grown as
// needed, freed by the caller). @return 0, or -1 when out of memory.
typedef struct latin1_row {
    char *buf;
    size_t cap;
    rd_csv_field *fields;
    size_t n_cap;
} latin1_row;

static int latin1_to_utf8(latin1_row *lr, const rd_csv_field *f, size_t nf) {
    size_t need = 0;
    for (size_t i = 0; i < nf; i++) {
        need += f[i].len;
        for (size_t j = 0; j < f[i].len; j++)
            need += (unsigned char)f[i].ptr[j] >= 0x80;
    }
    if (need + 1 > lr->cap) {
        char *nb = rd_realloc(lr->buf, need + 1);
        if (!nb)
            return -1;
        lr->buf = nb;
        lr->cap = need + 1;
    }
    if (nf > lr->n_cap) {
        rd_csv_field *nfl = rd_realloc(lr->fields, nf * sizeof *nfl);
        if (!nfl)
            return -1;
        lr->fields = nfl;
        lr->n_cap = nf;
    }
    size_t k = 0;
    for (size_t i = 0; i < nf; i++) {
        lr->fields[i].ptr = lr->buf + k;
        for (size_t j = 0; j < f[i].len; j++) {
            unsigned char c = (unsigned char)f[i].ptr[j];
            if (c < 0x80) {
                lr->buf[k++] = (char)c;
            } else {
                lr->buf[k++] = (char)(0xc0 | (c >> 6));
                lr->buf[k++] = (char)(0x80 | (c & 0x3f));
            }
        }
        lr->fields[i].len = (size_t)(lr->buf + k - lr->fields[i].ptr);
    }
    return 0;
}

// The column names of header row f (line `line` of `file`); checks they agree with the schema's
// list, if any (read_columns).
static int header_names(const char *file,
                        uint64_t line,
                        const rd_csv_field *f,
                        size_t nf,
                        int n_cfg,
                        const char *cfg_cols,
                        const char *cfg_key,
                        char (**out)[RD_COLUMN_MAX],
                        int *n_out,
                        rd_errbuf *eb) {
    // A header names the columns, so unlike a schema's list (RD_MAX_COLUMNS) it may be wide: the
    // columns nobody reads cost nothing.
    if (nf > RD_SCHEMA_MAX_HEADER)
        return rd_err_set(eb, RD_ERR_SCHEMA, "%s:%llu: %zu columns, more than the %d supported",
                          file, (unsigned long long)line, nf, RD_SCHEMA_MAX_HEADER);
    *out = rd_malloc(nf * RD_COLUMN_MAX);
    if (!*out)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nf; i++) {
        // An empty name (the index column pandas writes) or one longer than any config name
        // can hold names a column no schema can refer to: keep it unnamed ("" matches no
        // configured column) instead of refusing the file.
        if (f[i].len == 0 || f[i].len >= RD_COLUMN_MAX) {
            (*out)[i][0] = '\0';
            continue;
        }
        // A name may repeat (an export of a join: two "id" or "created_at" columns): only a
        // column the schema reads must be named once, which find_col checks. Refusing every
        // repeat refused logs whose repeated columns nobody reads, and comparing each name with
        // all before it took seconds on a header of 65536 columns.
        memcpy((*out)[i], f[i].ptr, f[i].len);
        (*out)[i][f[i].len] = '\0';
    }
    *n_out = (int)nf;
    if (n_cfg > 0) {
        // Name the first column that differs: with a header, the list may only repeat it (it
        // does not rename the file's columns).
        for (int i = 0; i < n_cfg || i < (int)nf; i++) {
            const char *h = i < (int)nf ? (*out)[i] : NULL;
            const char *c = i < n_cfg ? cfg_cols + (size_t)i * RD_COLUMN_MAX : NULL;
            if (h && c && strncmp(c, h, RD_COLUMN_MAX) == 0)
                continue;
            char hq[RD_COLUMN_MAX + 48], cq[RD_COLUMN_MAX + 2];
            if (h && !h[0]) // kept unnamed above
                snprintf(hq, sizeof hq, "unnamed (empty, or %d bytes or longer)", RD_COLUMN_MAX);
            else
                snprintf(hq, sizeof hq, "'%s'", h ? h : "");
            snprintf(cq, sizeof cq, "'%.*s'", RD_COLUMN_MAX - 1, c ? c : "");
            return rd_err_set(eb, RD_ERR_SCHEMA,
                              "%s:%llu: the header line does not match %s: column %d is %s in "
                              "the header, %s in %s (%zu header columns, %d listed; with a "
                              "header line the list must repeat its names, it cannot rename "
                              "them)",
                              file, (unsigned long long)line, cfg_key, i + 1, h ? hq : "absent",
                              c ? cq : "absent", cfg_key, nf, n_cfg);
        }
    }
    return RD_OK;
}

// Column names from the header row (header = 1) or the schema's list; checks they agree. The
// header of a Latin-1 file (latin1 = 1) is Latin-1 too: its names are converted to UTF-8 as its
// rows are, so that the config's (UTF-8) names find them, and a flags field's keys, made of
// them, are the same text's keys.
static int read_columns(rd_csv_reader *r,
                        int header,
                        int latin1,
                        int n_cfg,
                        const char *cfg_cols,
                        const char *cfg_key,
                        char (**out)[RD_COLUMN_MAX],
                        int *n_out,
                        rd_errbuf *eb) {
    const char *file = rd_csv_name(r);
    if (!header) {
        *out = rd_malloc((size_t)(n_cfg ? n_cfg : 1) * RD_COLUMN_MAX);
        if (!*out)
            return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        memcpy(*out, cfg_cols, (size_t)n_cfg * RD_COLUMN_MAX);
        for (int i = 0; i < n_cfg; i++)
            (*out)[i][RD_COLUMN_MAX - 1] = '\0';
        *n_out = n_cfg;
        if (n_cfg == 0)
            return rd_err_set(eb, RD_ERR_SCHEMA,
                              "%s: the file has no header line and the schema lists no columns",
                              file);
        return RD_OK;
    }
    const rd_csv_field *f;
    size_t nf;
    int rc = rd_csv_next(r, &f, &nf, eb);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return rd_err_set(eb, RD_ERR_EMPTY, "%s: empty input: no header line", file);
    uint64_t line = rd_csv_line(r);
    latin1_row lr;
    memset(&lr, 0, sizeof lr);
    if (latin1 && latin1_to_utf8(&lr, f, nf) != 0)
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    else
        rc = header_names(file, line, latin1 ? lr.fields : f, nf, n_cfg, cfg_cols, cfg_key, out,
                          n_out, eb);
    rd_free(lr.buf);
    rd_free(lr.fields);
    return rc;
}

static int bad_value(
    rd_errbuf *eb, rd_csv_reader *r, const char *col, const char *what, const rd_csv_field *f) {
    char sv[48];
    return rd_err_set(eb, RD_ERR_PARSE, "%s:%llu: column '%s': %s '%s'", rd_csv_name(r),
                      (unsigned long long)rd_csv_line(r), col, what, show(f, sv, sizeof sv));
}

// A timestamp parse_time refused, with a hint when it reads as another time_format: seconds
// beyond year 9999 that would be a date as milliseconds, or an ISO date under a numeric format.
static int
bad_time(rd_errbuf *eb, rd_csv_reader *r, const char *col, int tf, const rd_csv_field *f) {
    char sv[48];
    const char *what = tf == TF_ISO       ? "bad iso8601 timestamp"
                       : tf == TF_UNIX_MS ? "bad unix_ms timestamp"
                                          : "bad unix timestamp";
    const char *hint = "";
    int64_t v, ms;
    if (tf == TF_UNIX && rd_csv_parse_i64(f, &v) == 0 && v > TS_MAX_S &&
        parse_time(f, TF_UNIX_MS, &ms) == 0)
        hint = " (beyond year 9999 as seconds: if the column holds milliseconds, set "
               "time_format: unix_ms)";
    else if (tf == TF_UNIX_MS && rd_csv_parse_i64(f, &v) == 0 && v / 1000 > TS_MAX_S)
        hint = " (beyond year 9999 as milliseconds: microseconds or nanoseconds? time_format "
               "reads seconds (unix) or milliseconds (unix_ms): divide the column by 1000 or "
               "1000000 before prepare)";
    else if (tf != TF_ISO && parse_time(f, TF_ISO, &ms) == 0)
        hint = " (it reads as an ISO 8601 date: set time_format: iso8601)";
    else if (tf == TF_ISO && parse_iso8601(f, &ms) == 0)
        hint = " (outside 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z once its UTC offset is "
               "applied)";
    else if (tf == TF_ISO && parse_time(f, TF_UNIX, &ms) == 0)
        hint = " (it reads as a number: set time_format: unix or unix_ms)";
    else if (tf == TF_ISO)
        hint = " (expected YYYY-MM-DD[(T| )hh:mm[:ss[.fff]]][Z|(+|-)hh[[:]mm]], T and Z in "
               "either case, or ' UTC' for Z after a time; or the basic form "
               "YYYYMMDD[Thhmm[ss[.fff]]][Z|(+|-)hh[mm]])";
    return rd_err_set(eb, RD_ERR_PARSE, "%s:%llu: column '%s': %s '%s'%s", rd_csv_name(r),
                      (unsigned long long)rd_csv_line(r), col, what, show(f, sv, sizeof sv), hint);
}

// The spellings of a missing numeric value (fields[].missing), compared without case after
// trimming spaces and tabs: an empty field (pandas writes NaN so), NA and N/A (R, spreadsheets),
// NaN, null and None (SQL and Python dumps). "inf" is not one of them: it is refused as ever.
static int is_missing_value(const rd_csv_field *v) {
    static const char *const names[] = {"", "na", "n/a", "nan", "null", "none"};
    // Spaces and tabs around it are trimmed, as rd_csv_parse_double trims them around a number:
    // a tab alone is as empty as a space alone.
    const char *p = v->ptr, *e = v->ptr + v->len;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t n = (size_t)(e - p);
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (strlen(names[k]) != n)
            continue;
        size_t i = 0;
        while (i < n && (p[i] | 0x20) == names[k][i])
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

// What a missing value of float field fp is stored as: 0, or NaN for the dataset builder to
// replace by the batch period's mean (rd__layout.fill_mean).
static float missing_fill(const field_plan *fp) {
    return fp->cfg->missing == RD_MISSING_MEAN ? NAN : 0.0f;
}

// Note categorical or multi value [p, p + n) of field fp at the current row of r in `file`
// when spaces or tabs surround it: the key of the text inside. A split at ',' of "rock, pop"
// gives " pop", which the model learns apart from the "pop" that opens other rows: two keys,
// two embeddings, for one genre. @return 0, -1 out of memory
static int note_value(field_plan *fp, const char *file, rd_csv_reader *r, const char *p, size_t n) {
    if (n == 0 || (p[0] != ' ' && p[0] != '\t' && p[n - 1] != ' ' && p[n - 1] != '\t'))
        return 0;
    const char *b = p, *e = p + n;
    while (b < e && (*b == ' ' || *b == '\t'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    if (b == e)
        return 0; // spaces only: no text to be another value
    if (!fp->spaced.keys && rd__u64map_init(&fp->spaced, 64) != RD_OK)
        return -1;
    uint64_t k = rd_feature_key(fp->cfg->name, b, (size_t)(e - b));
    int ins = 0;
    uint32_t *slot = rd__u64map_put(&fp->spaced, k ? k : 1, SPACED_EX_MAX, &ins);
    if (!slot)
        return -1;
    if (!ins || fp->n_ex == SPACED_EX_MAX)
        return 0;
    if (!fp->ex && !(fp->ex = rd_malloc(SPACED_EX_MAX * sizeof *fp->ex)))
        return -1;
    spaced_ex *x = &fp->ex[fp->n_ex];
    x->file = file;
    x->line = rd_csv_line(r);
    size_t c = n < sizeof x->text - 1 ? n : sizeof x->text - 1;
    memcpy(x->text, p, c);
    x->text[c] = '\0';
    *slot = fp->n_ex++;
    return 0;
}

// Fill the slots / floats of one field from a row (of the log or of a side table). `file` is the
// file being read (borrowed, kept for messages: it must outlive the plan's use).
static int fill_field(field_plan *fp,
                      const char *file,
                      rd_csv_reader *r,
                      const rd_csv_field *row,
                      char (*cols)[RD_COLUMN_MAX],
                      uint64_t *keys,
                      float *nums,
                      rd_errbuf *eb) {
    const char *name = fp->cfg->name;
    const rd_csv_field *v = &row[fp->col];
    if (rd_field_is_float(fp->kind)) {
        double x;
        if (rd_csv_parse_double(v, &x) != 0) {
            if (!is_missing_value(v)) {
                double inf;
                // strtod reads inf and infinity (any case): an overflow, not an absent value,
                // so no fill applies; say so rather than call it non-numeric.
                char tmp[16];
                snprintf(tmp, sizeof tmp, "%.*s", (int)(v->len < 15 ? v->len : 15), v->ptr);
                int is_inf = v->len < 15 && sscanf(tmp, "%lf", &inf) == 1 && isinf(inf);
                return bad_value(eb, r, cols[fp->col],
                                 is_inf   ? "infinite value (not a missing value; refused)"
                                 : v->len ? "non-numeric value"
                                          : "empty value",
                                 v);
            }
            if (fp->cfg->missing == RD_MISSING_ERROR) {
                char sv[48], why[96];
                snprintf(why, sizeof why, "%s value", v->len ? "missing" : "empty");
                return rd_err_set(eb, RD_ERR_PARSE,
                                  "%s:%llu: column '%s': %s '%s' (to fill missing values, set "
                                  "data.schema.fields[%d].missing: zero or mean)",
                                  rd_csv_name(r), (unsigned long long)rd_csv_line(r), cols[fp->col],
                                  why, show(v, sv, sizeof sv), fp->index);
            }
            nums[0] = missing_fill(fp);
            if (fp->filled++ == 0) {
                fp->miss_file = file;
                fp->miss_line = rd_csv_line(r);
            }
            return RD_OK;
        }
        if (fp->cfg->log1p) {
            if (x < 0 && fp->neg++ == 0) { // counted, so that prepare says how many it clipped
                fp->neg_file = file;
                fp->neg_line = rd_csv_line(r);
            }
            // A serving request carries the raw value as a float (rd_serve_request.numeric with
            // numeric_raw), so log1p reads the value rounded to float, as the scorer's
            // rd_field_transform does: of the double of the text, the stored value of "123.45"
            // was one float step away from what a served raw 123.45f gives. A value beyond the
            // float range, which no request can carry, keeps its double.
            if (fabs(x) <= (double)FLT_MAX)
                x = (double)(float)x;
            x = log1p(x > 0 ? x : 0);
        }
        if (fabs(x) > (double)FLT_MAX)
            return bad_value(eb, r, cols[fp->col], "value out of float range", v);
        nums[0] = (float)x;
        fp->present++;
        return RD_OK;
    }
    if (fp->flags) {
        uint32_t k = 0, cells = 0;
        for (uint32_t j = 0; j < fp->width; j++) {
            const rd_csv_field *fl = &row[fp->col + (int)j];
            int64_t b;
            if (fl->len == 0)
                continue;
            cells++;
            if (rd_csv_parse_i64(fl, &b) != 0 || (b != 0 && b != 1))
                return bad_value(eb, r, cols[fp->col + (int)j], "flag column holds", fl);
            if (b)
                keys[k++] =
                    rd_feature_key(name, cols[fp->col + (int)j], strlen(cols[fp->col + (int)j]));
        }
        fp->present += cells > 0; // a 0 is a value (none of the flags), an empty cell is not
        return RD_OK;
    }
    if (fp->kind == RD_FIELD_CATEGORICAL) {
        keys[0] = v->len ? rd_feature_key(name, v->ptr, v->len) : 0;
        fp->present += v->len > 0;
        if (note_value(fp, file, r, v->ptr, v->len) != 0)
            return rd_err_set(eb, RD_ERR_NOMEM, "out of memory (field '%s')", name);
        return RD_OK;
    }
    // Multi-valued: split by sep, skip empty parts, keep each distinct value once (a set: "x|x|y"
    // is {x, y}, as a tag list means, where a repeat weighed x double in mean and sum pooling),
    // and keep the first `width` distinct values. Values are compared by key, as the model sees
    // them; a row holds at most 64, so the scan of the kept ones is short.
    const char *sep = fp->cfg->sep[0] ? fp->cfg->sep : "|";
    size_t sl = strlen(sep);
    const char *p = v->ptr, *e = v->ptr + v->len;
    uint32_t k = 0;
    int repeat = 0;
    while (p <= e) {
        const char *q = p;
        while (q < e && !((size_t)(e - q) >= sl && memcmp(q, sep, sl) == 0))
            q++;
        if (q > p) {
            const uint64_t key = rd_feature_key(name, p, (size_t)(q - p));
            uint32_t j = 0;
            while (j < k && keys[j] != key)
                j++;
            if (j < k) {
                repeat = 1;
            } else if (k == fp->width) { // a value past max_len: counted, so that prepare says so
                if (fp->cut_file++ == 0)
                    fp->cut_line = rd_csv_line(r);
                break;
            } else {
                keys[k++] = key;
                if (note_value(fp, file, r, p, (size_t)(q - p)) != 0)
                    return rd_err_set(eb, RD_ERR_NOMEM, "out of memory (field '%s')", name);
            }
        }
        if (q >= e)
            break;
        p = q + sl;
    }
    if (repeat && fp->dup++ == 0) {
        fp->dup_file = file;
        fp->dup_line = rd_csv_line(r);
    }
    fp->present += k > 0;
    return RD_OK;
}

// Rows whose multi field repeated a value ("x|x|y"), over every row read of its file or files:
// one line, since each value was kept once (the rule, not a defect of the row), naming the first.
static void tell_multi_repeats(const field_plan *fp) {
    if (fp->dup == 0)
        return;
    RD_LOG_INFO("%s:%llu: multi field '%s': %llu %s a value more than once (this line is the "
                "first); each distinct value is kept once",
                fp->dup_file ? fp->dup_file : "?", (unsigned long long)fp->dup_line, fp->cfg->name,
                (unsigned long long)fp->dup, fp->dup == 1 ? "row repeats" : "rows repeat");
}

// Rows of the file just read (`path`: the log's part, or the side table) whose multi field held
// more than max_len values: a warning naming the file and the first such line (the dataset is
// built all the same: the values are legal, the rest of each is dropped).
static void warn_cut(field_plan *fp, const char *path) {
    if (fp->cut_file == 0)
        return;
    RD_LOG_WARN("%s:%llu: multi field '%s': %llu %s more than max_len = %u values (this line is "
                "the first); only the first %u of each are kept (raise "
                "data.schema.fields[%d].max_len, at most 64, to keep more)",
                path, (unsigned long long)fp->cut_line, fp->cfg->name,
                (unsigned long long)fp->cut_file, fp->cut_file == 1 ? "row holds" : "rows hold",
                fp->width, fp->width, fp->index);
    fp->cut_file = 0;
}

// The values of field fp read with spaces or tabs around them whose text is also a value of
// an event (its key is in the event's slots of the field: keys, n events of ns slots): a
// warning with their count and the first kept example (the dataset is built all the same: ids
// and values are text, compared byte for byte). Marks fp->spaced (bit 31 of a value).
static void warn_spaced(field_plan *fp, const uint64_t *keys, uint64_t n, uint32_t ns) {
    if (!fp->spaced.keys || rd_field_is_float(fp->kind))
        return;
    const uint32_t seen = 0x80000000u;
    for (uint64_t e = 0; e < n; e++)
        for (uint32_t j = 0; j < fp->width; j++) {
            const uint64_t k = keys[e * ns + fp->offset + j];
            uint32_t *v = k ? rd__u64map_get(&fp->spaced, k) : NULL;
            if (v)
                *v |= seen;
        }
    uint64_t twins = 0;
    uint32_t best = SPACED_EX_MAX;
    for (uint64_t j = 0; j < fp->spaced.cap; j++) {
        if (!fp->spaced.keys[j] || !(fp->spaced.vals[j] & seen))
            continue;
        twins++;
        const uint32_t x = fp->spaced.vals[j] & ~seen;
        best = x < best ? x : best;
    }
    if (twins == 0)
        return;
    char at[RD_PATH_MAX * 2 + 128] = "";
    if (best < SPACED_EX_MAX) {
        const spaced_ex *x = &fp->ex[best];
        rd_csv_field v = {x->text, strlen(x->text)};
        char sv[64];
        snprintf(at, sizeof at, " ('%s' at %s:%llu is the first)", show(&v, sv, sizeof sv), x->file,
                 (unsigned long long)x->line);
    }
    char fix[256];
    if (fp->kind == RD_FIELD_MULTI && !fp->flags)
        snprintf(fix, sizeof fix,
                 "if the separator has spaces beside it (\"rock, pop\" split at ','), remove "
                 "them from the log or set data.schema.fields[%d].sep to the separator with "
                 "its spaces",
                 fp->index);
    else
        snprintf(fix, sizeof fix, "remove the spaces from the log");
    RD_LOG_WARN("%s field '%s': %llu %s read with spaces around %s beside the same text "
                "without%s: values are compared byte for byte, so the model learns each as two "
                "values; %s",
                fp->kind == RD_FIELD_MULTI && !fp->flags ? "multi" : "categorical", fp->cfg->name,
                (unsigned long long)twins, twins == 1 ? "value is" : "values are",
                twins == 1 ? "it" : "them", at, fix);
}

// ---------------------------------------------------------------------------------------------
// Side tables

static void side_free(side_table *st) {
    rd__u64map_free(&st->rows);
    rd_free(st->keys);
    rd_free(st->nums);
    rd_free(st->line);
    rd_free(st->row_hash);
}

// Hash of the columns side table s's fields read in row f (each length-prefixed): two rows of a
// key with the same hash give the same features (64 bits: two rows that differ collide with
// probability 2^-64, far below a disk's undetected error rate).
static uint64_t side_row_hash(const csv_ctx *cx, int s, const rd_csv_field *f) {
    uint64_t h = 0x5e1d0a11ULL;
    for (int i = 0; i < cx->n_plan; i++) {
        const field_plan *fp = &cx->plan[i];
        if (fp->side != s)
            continue;
        int w = fp->flags ? (int)fp->width : 1;
        for (int j = 0; j < w; j++) {
            const rd_csv_field *v = &f[fp->col + j];
            uint64_t len = v->len;
            h = rd_hash64(&len, sizeof len, h);
            h = rd_hash64(v->ptr, v->len, h);
        }
    }
    return h;
}

// The separator of seps[] (not `delim`) at which the row of fields f, put back together with
// `delim`, splits into `want` columns; -1 if none does (or out of memory: no hint then). A row
// that `delim` did split is not tried at ' ': a short row of text with spaces would match.
static int other_sep(const rd_csv_field *f, size_t nf, const char *delim, int want) {
    const size_t dl = strlen(delim);
    size_t len = 0;
    for (size_t i = 0; i < nf; i++)
        len += f[i].len + (i ? dl : 0);
    char *row = rd_malloc(len + 1);
    if (!row)
        return -1;
    size_t at = 0;
    for (size_t i = 0; i < nf; i++) {
        if (i) {
            memcpy(row + at, delim, dl);
            at += dl;
        }
        if (f[i].len)
            memcpy(row + at, f[i].ptr, f[i].len);
        at += f[i].len;
    }
    row[at] = '\0';
    int found = -1;
    for (int si = 0; si < N_SEPS && found < 0; si++) {
        if (strcmp(seps[si], delim) == 0 || (nf > 1 && strcmp(seps[si], " ") == 0))
            continue;
        const size_t sl = strlen(seps[si]);
        long pieces = 1;
        for (const char *c = strstr(row, seps[si]); c; c = strstr(c + sl, seps[si]))
            pieces++;
        if (pieces == want)
            found = si;
    }
    rd_free(row);
    return found;
}

// A row with the wrong number of columns. A field that holds a carriage return not before a
// newline is named: in a file of "\n" lines, a line ended by a lone "\r" (mixed line endings,
// text pasted from another system) joins the next one, and the count alone did not say why. A
// row that another common separator splits into the expected columns names the delimiter
// setting (`dkey`, whose value is `delim`): with header: false no column name is looked up, so
// a TSV read as ',' (or, before delimiter names were read, `delimiter: tab` as three bytes) was
// only "expected 7 columns, found 1".
static int columns_error(rd_errbuf *eb,
                         const char *file,
                         uint64_t line,
                         int want,
                         const rd_csv_field *f,
                         size_t nf,
                         const char *delim,
                         const char *dkey) {
    for (size_t i = 0; i < nf; i++) {
        int lone = 0; // a "\r\n" inside a quoted field ends a line of its text
        for (size_t k = 0; k < f[i].len && !lone; k++)
            lone = f[i].ptr[k] == '\r' && (k + 1 == f[i].len || f[i].ptr[k + 1] != '\n');
        if (lone)
            return rd_err_set(eb, RD_ERR_PARSE,
                              "%s:%llu: expected %d columns, found %zu; field %zu holds a "
                              "carriage return (\\r) that ends no line: if the file mixes line "
                              "endings, make every line end in \\n (or \\r\\n)",
                              file, (unsigned long long)line, want, nf, i + 1);
    }
    const int si = other_sep(f, nf, delim, want);
    if (si >= 0)
        return rd_err_set(eb, RD_ERR_PARSE,
                          "%s:%llu: expected %d columns, found %zu; the line splits into %d at "
                          "'%s': the file looks '%s'-separated, but %s is \"%s\": set it to "
                          "\"%s\"",
                          file, (unsigned long long)line, want, nf, want, sep_shown[si],
                          sep_shown[si], dkey, strcmp(delim, "\t") == 0 ? "\\t" : delim,
                          sep_shown[si]);
    return rd_err_set(eb, RD_ERR_PARSE, "%s:%llu: expected %d columns, found %zu", file,
                      (unsigned long long)line, want, nf);
}

// Whether a field holds exactly `name` (a column's name).
static int field_is(const rd_csv_field *f, const char *name) {
    size_t n = strnlen(name, RD_COLUMN_MAX);
    return n && f->len == n && memcmp(f->ptr, name, n) == 0;
}

static int load_side(csv_ctx *cx, int s, rd_errbuf *eb) {
    side_table *st = &cx->side[s];
    const rd_side_config *sd = st->cfg;
    rd_csv_options o;
    memset(&o, 0, sizeof o);
    delim_of(sd->delimiter, o.delimiter);
    o.quote = cx->quote;
    rd_csv_reader *r = NULL;
    char(*cols)[RD_COLUMN_MAX] = NULL;
    // Keys and values of a Latin-1 table are hashed as UTF-8, as the log's (and any config's)
    // text is, so that "Caf\xe9" here joins "Caf\xc3\xa9" there.
    int latin1 = strcmp(sd->encoding, "latin-1") == 0;
    latin1_row lr;
    memset(&lr, 0, sizeof lr);
    int rc = rd_csv_open(st->path, &o, &r, eb);
    if (rc != RD_OK)
        goto done;
    char key[64];
    snprintf(key, sizeof key, "data.schema.side[%d].columns", s);
    rc = read_columns(r, sd->header, latin1, sd->n_columns, &sd->columns[0][0], key, &cols,
                      &st->n_cols, eb);
    if (rc != RD_OK)
        goto done;
    char enc_key[48]; // named by a missing column's message when the table is read as UTF-8
    snprintf(enc_key, sizeof enc_key, "data.schema.side[%d].encoding", s);
    int kc = find_col(cols, st->n_cols, sd->key_column);
    if (kc < 0) {
        snprintf(key, sizeof key, "data.schema.side[%d].key_column", s);
        rc = missing_col(eb, st->path, key, sd->key_column, cols, st->n_cols,
                         latin1 ? NULL : enc_key);
        goto done;
    }
    // Resolve the columns of this table's fields.
    for (int i = 0; i < cx->n_plan; i++) {
        field_plan *fp = &cx->plan[i];
        if (fp->side != s)
            continue;
        fp->col = find_col(cols, st->n_cols, fp->cfg->column);
        if (fp->col < 0) {
            snprintf(key, sizeof key, "data.schema.fields[%d].column", fp->index);
            rc = missing_col(eb, st->path, key, fp->cfg->column, cols, st->n_cols,
                             latin1 ? NULL : enc_key);
            goto done;
        }
        if (fp->flags && fp->col + (int)fp->width > st->n_cols) {
            rc = flags_past_end(eb, st->path, fp, st->n_cols);
            goto done;
        }
        if (fp->flags && (rc = flags_repeat(eb, st->path, fp, cols)) != RD_OK)
            goto done;
    }
    if (rd__u64map_init(&st->rows, 1024) != RD_OK) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        goto done;
    }
    const rd_csv_field *f;
    size_t nf;
    while ((rc = rd_csv_next(r, &f, &nf, eb)) == 1) {
        if ((int)nf != st->n_cols) {
            char dkey[48];
            snprintf(dkey, sizeof dkey, "data.schema.side[%d].delimiter", s);
            rc = columns_error(eb, st->path, rd_csv_line(r), st->n_cols, f, nf, o.delimiter, dkey);
            goto done;
        }
        if (latin1) {
            if (latin1_to_utf8(&lr, f, nf) != 0) {
                rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (side table %s)", sd->name);
                goto done;
            }
            f = lr.fields;
        } else {
            // The key and the text fields, as the log's: a Latin-1 table read as UTF-8 would
            // join none of its non-ASCII keys (silently, with missing: empty).
            for (int i = -1; i < cx->n_plan; i++) {
                const field_plan *fp = i < 0 ? NULL : &cx->plan[i];
                if (fp && (fp->side != s || rd_field_is_float(fp->kind) || fp->flags))
                    continue;
                int c = fp ? fp->col : kc;
                size_t at = utf8_bad_at(&f[c]);
                if (at < f[c].len) {
                    char hint[96];
                    snprintf(hint, sizeof hint,
                             "if the table is Latin-1, set data.schema.side[%d].encoding: latin-1",
                             s);
                    rc = not_utf8(eb, st->path, rd_csv_line(r), cols[c], &f[c], at, hint);
                    goto done;
                }
            }
        }
        if (st->n_rows == st->cap_rows) {
            uint64_t nc = st->cap_rows ? st->cap_rows * 2 : 1024;
            uint64_t *nk = rd_realloc(st->keys, nc * (st->n_slots ? st->n_slots : 1) * 8);
            if (nk)
                st->keys = nk;
            float *nn = rd_realloc(st->nums, nc * (st->n_num ? st->n_num : 1) * 4);
            if (nn)
                st->nums = nn;
            uint64_t *nl = rd_realloc(st->line, nc * 8);
            if (nl)
                st->line = nl;
            uint64_t *nh = rd_realloc(st->row_hash, nc * 8);
            if (nh)
                st->row_hash = nh;
            if (!nk || !nn || !nl || !nh) {
                rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (side table %s)", sd->name);
                goto done;
            }
            st->cap_rows = nc;
        }
        // A row of column names: with a header, one repeated further down (tables joined by
        // cat), kept before as a row keyed by the key column's name; without, the file's own
        // header line. The key column and a column a field reads (if any) must hold their names.
        if (sd->header || st->n_rows + st->repeats == 0) {
            int names = field_is(&f[kc], cols[kc]), other = -1;
            for (int i = 0; names && i < cx->n_plan && other < 0; i++)
                if (cx->plan[i].side == s && !cx->plan[i].flags &&
                    field_is(&f[cx->plan[i].col], cols[cx->plan[i].col]))
                    other = cx->plan[i].col;
            int reads = 0;
            for (int i = 0; i < cx->n_plan; i++)
                reads |= cx->plan[i].side == s && !cx->plan[i].flags;
            if (names && (other >= 0 || !reads)) {
                int c2 = other >= 0 ? other : kc;
                rc = sd->header
                         ? rd_err_set(eb, RD_ERR_PARSE,
                                      "%s:%llu: the row repeats the header line ('%s' in column "
                                      "'%s', '%s' in column '%s'): the table looks like several "
                                      "files joined one after another; remove the repeated "
                                      "header lines",
                                      st->path, (unsigned long long)rd_csv_line(r), cols[kc],
                                      cols[kc], cols[c2], cols[c2])
                         : rd_err_set(eb, RD_ERR_SCHEMA,
                                      "%s:%llu: the first row holds the column names ('%s' in "
                                      "column '%s', '%s' in column '%s'): the table has a header "
                                      "line, but data.schema.side[%d].header is false; set "
                                      "header: true",
                                      st->path, (unsigned long long)rd_csv_line(r), cols[kc],
                                      cols[kc], cols[c2], cols[c2], s);
                goto done;
            }
        }
        uint64_t row = st->n_rows;
        const rd_csv_field *kv = &f[kc];
        if (kv->len == 0) {
            rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%llu: column '%s': empty key", st->path,
                            (unsigned long long)rd_csv_line(r), sd->key_column);
            goto done;
        }
        int ins;
        uint32_t *slot = rd__u64map_put(&st->rows, rd_hash64(kv->ptr, kv->len, 0x5e1d), 0, &ins);
        if (!slot) {
            rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (side table %s)", sd->name);
            goto done;
        }
        uint64_t rh = side_row_hash(cx, s, f);
        if (!ins && st->row_hash[*slot] == rh) { // the same features again: kept once
            if (st->repeats++ == 0) {
                st->repeat_line = rd_csv_line(r);
                st->repeat_of = st->line[*slot];
            }
            continue;
        }
        if (!ins) {
            char sv[48];
            rc = rd_err_set(eb, RD_ERR_SCHEMA,
                            "%s:%llu: duplicate key '%s' in column '%s' with other values "
                            "(first on line %llu)",
                            st->path, (unsigned long long)rd_csv_line(r), show(kv, sv, sizeof sv),
                            sd->key_column, (unsigned long long)st->line[*slot]);
            goto done;
        }
        st->row_hash[row] = rh;
        if (row >= UINT32_MAX) {
            rc = rd_err_set(eb, RD_ERR_RANGE, "%s: more than 2^32-1 rows", st->path);
            goto done;
        }
        *slot = (uint32_t)row;
        st->line[row] = rd_csv_line(r);
        if (is_space_byte(kv->ptr[0]) || is_space_byte(kv->ptr[kv->len - 1])) {
            if (!st->spaced++) {
                show(kv, st->spaced_key, sizeof st->spaced_key);
                st->spaced_line = rd_csv_line(r);
            }
        }
        uint64_t *keys = st->keys + row * st->n_slots;
        float *nums = st->nums + row * st->n_num;
        memset(keys, 0, st->n_slots * 8ull);
        for (int i = 0; i < cx->n_plan; i++) {
            field_plan *fp = &cx->plan[i];
            if (fp->side != s)
                continue;
            rc = fill_field(fp, st->path, r, f, cols,
                            keys + (rd_field_is_float(fp->kind) ? 0 : fp->soff),
                            nums + (rd_field_is_float(fp->kind) ? fp->soff : 0), eb);
            if (rc != RD_OK)
                goto done;
        }
        st->n_rows++;
    }
    if (rc < 0)
        goto done;
    rc = RD_OK;
    if (st->n_rows == 0)
        rc = rd_err_set(eb, RD_ERR_EMPTY, "%s: empty input: side table '%s' has no rows", st->path,
                        sd->name);
    if (rc == RD_OK && st->repeats)
        RD_LOG_WARN("%s:%llu: side table '%s': %llu row(s) repeat an earlier row of the same key "
                    "in every column its fields read (this line is the first, repeating line "
                    "%llu): each key is kept once",
                    st->path, (unsigned long long)st->repeat_line, sd->name,
                    (unsigned long long)st->repeats, (unsigned long long)st->repeat_of);
done:
    rd_free(lr.buf);
    rd_free(lr.fields);
    rd_free(cols);
    rd_csv_close(r);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Interned ids and the sort

typedef struct intern {
    rd__u64map map; // feature key -> id
    uint64_t *key;  // id -> feature key
    uint64_t *soff; // id -> offset of its bytes in arena (n + 1 entries)
    char *arena;
    uint64_t n, cap, alen, acap;
    uint32_t *rank; // natural-order rank of each id
    // Ids that spell another id's number with leading zeros ("007" beside "7"; intern_rank):
    // how many, and the first such pair (ids).
    uint64_t twins, twin_zero, twin_canon;
} intern;

static void intern_free(intern *t) {
    rd__u64map_free(&t->map);
    rd_free(t->key);
    rd_free(t->soff);
    rd_free(t->arena);
    rd_free(t->rank);
}

// @return id, or -1 on out-of-memory.
static int64_t intern_put(intern *t, const char *field, const rd_csv_field *v) {
    uint64_t k = rd_feature_key(field, v->ptr, v->len);
    int ins;
    uint32_t *slot = rd__u64map_put(&t->map, k, (uint32_t)t->n, &ins);
    if (!slot)
        return -1;
    if (!ins)
        return *slot;
    if (t->n + 2 > t->cap) {
        uint64_t nc = t->cap ? t->cap * 2 : 1024;
        uint64_t *nk = rd_realloc(t->key, nc * 8);
        if (nk)
            t->key = nk;
        uint64_t *no = rd_realloc(t->soff, (nc + 1) * 8);
        if (no)
            t->soff = no;
        if (!nk || !no)
            return -1;
        t->cap = nc;
        if (t->n == 0)
            t->soff[0] = 0;
    }
    if (t->alen + v->len > t->acap) {
        uint64_t nc = t->acap ? t->acap : 4096;
        while (nc < t->alen + v->len)
            nc *= 2;
        char *na = rd_realloc(t->arena, nc);
        if (!na)
            return -1;
        t->arena = na;
        t->acap = nc;
    }
    memcpy(t->arena + t->alen, v->ptr, v->len);
    t->alen += v->len;
    t->key[t->n] = k;
    t->soff[t->n + 1] = t->alen;
    return (int64_t)t->n++;
}

// Natural order: canonical unsigned integers (no sign, no leading zero) by value, before any
// other string; other strings bytewise.
static int canon_uint(const char *s, size_t n, uint64_t *v) {
    if (n == 0 || n > 19 || (n > 1 && s[0] == '0'))
        return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *v = x;
    return 1;
}

typedef struct id_sort {
    uint64_t num;  // value of a canonical integer id
    const char *s; // bytes of any other id
    uint64_t len;
    uint32_t is_str;
    uint32_t id;
} id_sort;

static int cmp_ids(const void *a, const void *b) {
    const id_sort *x = a, *y = b;
    if (x->is_str != y->is_str)
        return x->is_str ? 1 : -1;
    if (!x->is_str)
        return x->num < y->num ? -1 : x->num > y->num;
    int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int intern_rank(intern *t) {
    id_sort *ids = rd_malloc((t->n ? t->n : 1) * sizeof *ids);
    t->rank = rd_malloc((t->n ? t->n : 1) * 4);
    if (!ids || !t->rank) {
        rd_free(ids);
        return -1;
    }
    for (uint64_t i = 0; i < t->n; i++) {
        id_sort *e = &ids[i];
        e->s = t->arena + t->soff[i];
        e->len = t->soff[i + 1] - t->soff[i];
        e->is_str = !canon_uint(e->s, (size_t)e->len, &e->num);
        e->id = (uint32_t)i;
    }
    qsort(ids, t->n, sizeof *ids, cmp_ids);
    for (uint64_t i = 0; i < t->n; i++)
        t->rank[ids[i].id] = (uint32_t)i;
    // Ids are text: "007" and "7" are two ids, as two zip codes or SKUs are. A column holding
    // both spellings of one number more likely lost its zeros on some rows (a spreadsheet
    // round trip): counted here, so that prepare says so. The canonical integers come first in
    // ids, sorted by value.
    uint64_t n_canon = 0;
    while (n_canon < t->n && !ids[n_canon].is_str)
        n_canon++;
    for (uint64_t i = n_canon; i < t->n; i++) {
        const id_sort *e = &ids[i];
        size_t z = 0;
        while (z < e->len && e->s[z] == '0')
            z++;
        uint64_t v = 0;
        if (z == 0 || (z < e->len ? !canon_uint(e->s + z, (size_t)(e->len - z), &v) : 0))
            continue; // no leading zero, or not a number after them
        uint64_t lo = 0, hi = n_canon;
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (ids[mid].num < v)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n_canon && ids[lo].num == v && t->twins++ == 0) {
            t->twin_zero = e->id;
            t->twin_canon = ids[lo].id;
        }
    }
    rd_free(ids);
    return 0;
}

typedef struct ev_meta {
    int64_t ts_ms;
    uint32_t urank, irank;
    uint64_t line; // the input line, counted on across the log's parts (csv_ctx.part_base)
    uint64_t idx;  // into the per-event arrays
} ev_meta;

// The part of the log that input line `line` (counted across the parts) is in: part k's lines
// follow part k-1's, base[k] lines come before part k (base[] never decreases), and the line's
// part is the last whose base is below it. By bisection: it is asked per record (write_lines)
// and per row cut (recount_kept), and a Spark or Hive export has thousands of parts (a scan of
// the parts made drop_repeats with a multi field cut O(events x parts): 30% of prepare's time
// on 2,000 parts).
static size_t part_of(const uint64_t *base, size_t n, uint64_t line) {
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        const size_t mid = lo + (hi - lo) / 2;
        if (base[mid] < line)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

// File and line of input line `line` counted across the parts (part_of).
static uint64_t
part_line(char **files, const uint64_t *base, size_t n, uint64_t line, const char **file) {
    const size_t k = part_of(base, n, line);
    *file = files[k];
    return line - base[k];
}

// The input file and line of the builder's record `rec` (rd__builder_set_where): the line of the
// rec-th event kept, which the build loop moves to meta[rec] (kept events are in time order too).
// A field of a side table is named by the side table's row joined to the event. The event keeps
// the values it was joined to, not the row (a row index an event and side table would grow the
// log's store for a message), so the event's line is read again and its join value looked up as
// the first pass did. Matching the values instead named the first row holding them, which is
// another key's row when two rows agree in every field read and the key column is no field.
typedef struct line_where {
    const ev_meta *meta; // meta[rec]: line and idx of the rec-th event kept
    uint64_t n_kept;
    char **files;
    const uint64_t *base;
    size_t n_files;
    const csv_ctx *cx;
    const rd_csv_options *o; // the log's reader options (borrowed, outlive the build)
    int latin1;              // the log is Latin-1: its rows are converted as the first pass did
} line_where;

enum { SIDE_NO_ROW = -1, SIDE_UNREAD = -2 };

// The row of side table s joined to the log row at file:line (its line in its part), read again
// from the file: >= 0 the row, SIDE_NO_ROW the key has no row there (missing: empty),
// SIDE_UNREAD the line cannot be read again (the file changed or cannot be opened).
static int64_t side_row_of(const line_where *w, int s, const char *file, uint64_t line) {
    const side_table *st = &w->cx->side[s];
    rd_csv_reader *r = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_csv_open(file, w->o, &r, &eb) != RD_OK)
        return SIDE_UNREAD;
    latin1_row lr;
    memset(&lr, 0, sizeof lr);
    int64_t out = SIDE_UNREAD;
    const rd_csv_field *f;
    size_t nf;
    while (rd_csv_next(r, &f, &nf, &eb) == 1) {
        if (rd_csv_line(r) < line)
            continue;
        if (rd_csv_line(r) > line || (int)nf != w->cx->n_cols)
            break;
        if (w->latin1) {
            if (latin1_to_utf8(&lr, f, nf) != 0)
                break;
            f = lr.fields;
        }
        const rd_csv_field *jv = &f[st->join_col];
        const uint32_t *row = rd__u64map_get(&st->rows, rd_hash64(jv->ptr, jv->len, 0x5e1d));
        out = row ? (int64_t)*row : SIDE_NO_ROW;
        break;
    }
    rd_free(lr.buf);
    rd_free(lr.fields);
    rd_csv_close(r);
    return out;
}

static int where_line(void *vctx, uint64_t rec, int field, char *out, size_t cap) {
    const line_where *w = vctx;
    if (rec >= w->n_kept || w->n_files == 0)
        return -1;
    const char *file = NULL;
    uint64_t line = part_line(w->files, w->base, w->n_files, w->meta[rec].line, &file);
    // Layout field `field` is plan[field] (plan_fields adds them in plan order).
    const field_plan *fp = field >= 0 && field < w->cx->n_plan ? &w->cx->plan[field] : NULL;
    if (fp && fp->side >= 0) {
        const side_table *st = &w->cx->side[fp->side];
        int64_t row = side_row_of(w, fp->side, file, line);
        if (row >= 0)
            snprintf(out, cap, "%s:%llu (side table '%s', the row joined to the event of %s:%llu)",
                     st->path, (unsigned long long)st->line[row], st->cfg->name, file,
                     (unsigned long long)line);
        else if (row == SIDE_NO_ROW)
            snprintf(out, cap, "%s:%llu (no row of side table '%s': its missing fill)", file,
                     (unsigned long long)line, st->cfg->name);
        else
            snprintf(out, cap,
                     "%s:%llu (the event joined to side table '%s', %s: the line could not be "
                     "read again to name its row)",
                     file, (unsigned long long)line, st->cfg->name, st->path);
        return 0;
    }
    snprintf(out, cap, "%s:%llu", file, (unsigned long long)line);
    return 0;
}

// The raw ids file of the dataset (RD_DATASET_IDS, rd/dataset.h): "kind,id", then every user's
// id and every item's, in order of first appearance in the log (the interned order). An id holding
// a comma, a quote or a line break is quoted (RFC 4180), so that any id reads back as it was.
typedef struct ids_ctx {
    const intern *users, *items;
} ids_ctx;

static int write_ids(FILE *f, void *vctx) {
    const ids_ctx *c = vctx;
    fputs("kind,id\n", f);
    for (int k = 0; k < 2; k++) {
        const intern *t = k ? c->items : c->users;
        for (uint64_t i = 0; i < t->n; i++) {
            fputs(k ? "item," : "user,", f);
            rd_csv_write_value(f, t->arena + t->soff[i], (size_t)(t->soff[i + 1] - t->soff[i]));
            fputc('\n', f);
        }
    }
    return 0;
}

// The log lines file of the dataset (RD_DATASET_LINES, rd/dataset.h): "file,line", then each
// record's file (its path under data.input: the bytes of data.input and its '/' cut, as the
// config names it; the whole path when data.schema.path is absolute) and its line there, in
// record order. meta[0 .. n) hold the lines (counted across the parts) of the events kept, in
// record order (the build loop moves them there).
typedef struct lines_ctx {
    const ev_meta *meta;
    uint64_t n;
    char **files;
    const uint64_t *base;
    size_t n_files;
    size_t cut; // csv_ctx.log_lit
} lines_ctx;

static int write_lines(FILE *f, void *vctx) {
    const lines_ctx *c = vctx;
    fputs("file,line\n", f);
    for (uint64_t i = 0; i < c->n; i++) {
        const char *file;
        const uint64_t line = part_line(c->files, c->base, c->n_files, c->meta[i].line, &file);
        const size_t fl = strlen(file);
        const size_t cut = c->cut < fl ? c->cut : 0;
        rd_csv_write_value(f, file + cut, fl - cut);
        char num[24], *e = num + sizeof num, *d = e; // ",LINE\n" without fprintf: 100M rows
        *--d = '\n';
        uint64_t v = line;
        do
            *--d = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        *--d = ',';
        fwrite(d, 1, (size_t)(e - d), f);
    }
    return 0;
}

static int cmp_ev(const void *a, const void *b) {
    const ev_meta *x = a, *y = b;
    if (x->ts_ms != y->ts_ms)
        return x->ts_ms < y->ts_ms ? -1 : 1;
    if (x->urank != y->urank)
        return x->urank < y->urank ? -1 : 1;
    if (x->irank != y->irank)
        return x->irank < y->irank ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

// ---------------------------------------------------------------------------------------------
// The source

static void write_schema_yaml(FILE *f, const csv_ctx *cx) {
    const rd_schema_config *sc = &cx->sc;
    fprintf(f, "schema:\n  path: ");
    rd__yaml_str(f, cx->log_path);
    fprintf(f, "\n  delimiter: ");
    char d[4];
    delim_of(sc->delimiter, d);
    rd__yaml_str(f, d);
    fprintf(f, "\n  quoting: %s\n  header: %s\n", cx->quote ? "true" : "false",
            sc->header ? "true" : "false");
    if (sc->drop_repeats)
        fprintf(f, "  drop_repeats: true\n  dropped_rows: %llu\n", (unsigned long long)cx->dropped);
    fprintf(f, "  columns: [");
    for (int i = 0; i < cx->n_cols; i++) {
        fprintf(f, "%s", i ? ", " : "");
        rd__yaml_str(f, cx->cols[i]);
    }
    fprintf(f, "]\n  user_column: ");
    rd__yaml_str(f, sc->user_column);
    fprintf(f, "\n  item_column: ");
    rd__yaml_str(f, sc->item_column);
    fprintf(f, "\n  time_column: ");
    rd__yaml_str(f, sc->time_column);
    fprintf(f, "\n  time_format: %s\n", sc->time_format[0] ? sc->time_format : "unix");
    fprintf(f, "  label: {column: ");
    rd__yaml_str(f, sc->label_column);
    fprintf(f, ", op: \"%s\"",
            label_ops[sc->label_op >= 0 && sc->label_op <= 5 ? sc->label_op : 0]);
    if (sc->n_label_values > 0) {
        fputs(", values: [", f);
        for (int i = 0; i < sc->n_label_values && i < RD_MAX_LABEL_VALUES; i++) {
            if (i)
                fputs(", ", f);
            rd__yaml_str(f, sc->label_values[i]);
        }
        fputs("]}\n", f);
    } else {
        fprintf(f, ", threshold: %.17g}\n", sc->label_threshold);
    }
    fprintf(f, "  side:%s\n", cx->n_side ? "" : " []");
    for (int s = 0; s < cx->n_side; s++) {
        const side_table *st = &cx->side[s];
        fprintf(f, "    - {name: ");
        rd__yaml_str(f, st->cfg->name);
        fprintf(f, ", path: ");
        rd__yaml_str(f, st->path);
        fprintf(f, ", key_column: ");
        rd__yaml_str(f, st->cfg->key_column);
        fprintf(f, ", join_column: ");
        rd__yaml_str(f, st->cfg->join_column);
        fprintf(f, ", rows: %llu", (unsigned long long)st->n_rows);
        if (st->cfg->missing == RD_SIDE_MISSING_EMPTY)
            fprintf(f, ", missing: empty, log_rows_without_row: %llu",
                    (unsigned long long)st->unmatched);
        fprintf(f, "}\n");
    }
    fprintf(f, "  fields:%s\n", cx->n_plan ? "" : " []");
    for (int i = 0; i < cx->n_plan; i++) {
        const field_plan *fp = &cx->plan[i];
        fprintf(f, "    - {name: ");
        rd__yaml_str(f, fp->cfg->name);
        fprintf(f, ", column: ");
        rd__yaml_str(f, fp->cfg->column);
        fprintf(f, ", side: ");
        rd__yaml_str(f, fp->cfg->side);
        fprintf(f, ", kind: %s%s",
                fp->flags                       ? "flags"
                : fp->kind == RD_FIELD_MULTI    ? "multi"
                : fp->kind == RD_FIELD_NUMERIC  ? "numeric"
                : fp->kind == RD_FIELD_FEEDBACK ? "feedback"
                                                : "categorical",
                fp->cfg->log1p && rd_field_is_float(fp->kind) ? ", log1p: true" : "");
        if (fp->cfg->standardize && fp->kind == RD_FIELD_NUMERIC)
            fprintf(f, ", standardize: true");
        if (fp->cfg->missing != RD_MISSING_ERROR && rd_field_is_float(fp->kind))
            fprintf(f, ", missing: %s, missing_values: %llu",
                    fp->cfg->missing == RD_MISSING_MEAN ? "mean" : "zero",
                    (unsigned long long)fp->filled);
        if (fp->kind == RD_FIELD_MULTI && !fp->flags) {
            fprintf(f, ", sep: ");
            rd__yaml_str(f, fp->cfg->sep);
        }
        fprintf(f, ", width: %u}\n", fp->width);
    }
}

// Build the plan (layout) and open side tables. The layout puts key fields first in schema
// order, then numeric fields.
static int plan_fields(csv_ctx *cx, rd_errbuf *eb) {
    rd_schema_config *sc = &cx->sc;
    memset(&cx->lay, 0, sizeof cx->lay);
    cx->lay.source = cx->dc->source;
    if (sc->n_fields < 0 || sc->n_fields > RD_MAX_FIELDS || sc->n_side < 0 ||
        sc->n_side > RD_MAX_SIDE)
        return rd_err_set(eb, RD_ERR_CONFIG, "data.schema: bad number of fields or side tables");
    cx->n_side = sc->n_side;
    for (int s = 0; s < sc->n_side; s++) {
        cx->side[s].cfg = &sc->side[s];
        resolve_path(cx->dc->input, sc->side[s].path, cx->side[s].path, sizeof cx->side[s].path);
    }
    // Key fields first, then numeric, then feedback: feedback values are the tail of a record's
    // floats, so the model inputs are its first n_numeric - n_feedback floats.
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < sc->n_fields; i++) {
            const rd_field_config *fc = &sc->fields[i];
            int fpass = fc->flags                       ? 0
                        : fc->kind == RD_FIELD_NUMERIC  ? 1
                        : fc->kind == RD_FIELD_FEEDBACK ? 2
                                                        : 0;
            if (fpass != pass)
                continue;
            field_plan *fp = &cx->plan[cx->n_plan];
            memset(fp, 0, sizeof *fp);
            fp->cfg = fc;
            fp->index = i;
            fp->flags = fc->flags && !rd_field_is_float(fc->kind);
            fp->kind = fp->flags ? RD_FIELD_MULTI : fc->kind;
            if (fp->kind < RD_FIELD_CATEGORICAL || fp->kind > RD_FIELD_FEEDBACK)
                return rd_err_set(eb, RD_ERR_CONFIG, "data.schema.fields[%d]: bad kind %d", i,
                                  fc->kind);
            if (fp->kind == RD_FIELD_MULTI && (fc->max_len < 1 || fc->max_len > 64))
                return rd_err_set(eb, RD_ERR_CONFIG,
                                  "data.schema.fields[%d].max_len: %d is outside 1..64", i,
                                  fc->max_len);
            if (!fc->name[0] || !strcmp(fc->name, "user") || !strcmp(fc->name, "item"))
                return rd_err_set(eb, RD_ERR_CONFIG,
                                  "data.schema.fields[%d].name: empty or reserved ('%s')", i,
                                  fc->name);
            for (int j = 0; j < cx->n_plan; j++)
                if (!strcmp(cx->plan[j].cfg->name, fc->name))
                    return rd_err_set(eb, RD_ERR_CONFIG,
                                      "data.schema.fields[%d].name: duplicate field '%s'", i,
                                      fc->name);
            fp->width = fp->kind == RD_FIELD_MULTI ? (uint32_t)fc->max_len : 1;
            fp->side = -1;
            if (fc->side[0]) {
                for (int s = 0; s < sc->n_side; s++)
                    if (!strcmp(sc->side[s].name, fc->side))
                        fp->side = s;
                if (fp->side < 0)
                    return rd_err_set(eb, RD_ERR_CONFIG,
                                      "data.schema.fields[%d].side: no side table '%s'", i,
                                      fc->side);
                side_table *st = &cx->side[fp->side];
                if (rd_field_is_float(fp->kind)) {
                    fp->soff = st->n_num;
                    st->n_num++;
                } else {
                    fp->soff = st->n_slots;
                    st->n_slots += fp->width;
                }
            }
            int idx = rd__layout_add(&cx->lay, fc->name, fp->kind, fp->width);
            RD_ASSERT(idx == cx->n_plan); // layout field k is plan[k] (where_line)
            fp->offset = cx->lay.fields[idx].offset;
            if (rd_field_is_float(fp->kind)) {
                cx->lay.fields[idx].transform = (fc->log1p ? RD_XFORM_LOG1P : 0u) |
                                                (fc->standardize ? RD_XFORM_STANDARDIZE : 0u);
                cx->lay.fill_mean[idx] = fc->missing == RD_MISSING_MEAN;
            }
            cx->n_plan++;
        }
    }
    return RD_OK;
}

typedef struct ev_store {
    ev_meta *meta;
    uint64_t *keys;
    float *nums;
    uint8_t *label;
    uint64_t *rowh; // a hash of the row's every column as read (find_repeats)
    // data.schema.drop_repeats: tb bytes an event of tally bits (TALLY_*), what the row added to
    // the counts prepare prints, so that they are counted again over the rows kept (0: none)
    uint8_t *tally;
    uint32_t tb;
    uint64_t n, cap;
} ev_store;

// The tally bits of an event: log field i's missing value (3i), value below 0 under log1p
// (3i + 1) and multi values past max_len (3i + 2); no row in side table s (3 n_plan + s). Sized
// by the schema, not by RD_MAX_FIELDS: 13 bytes an event whatever the schema was 10 to 15% more
// memory for the log's store on a schema of a few fields, where one byte holds the bits.
#define TALLY_MISS(i)        (3 * (i))
#define TALLY_NEG(i)         (3 * (i) + 1)
#define TALLY_CUT(i)         (3 * (i) + 2)
#define TALLY_UNM(n_plan, s) (3 * (n_plan) + (s))

uint32_t rd__schema_tally_bytes(int n_plan, int n_side) {
    return (uint32_t)(3 * n_plan + n_side + 7) / 8;
}

static void tally_set(uint8_t *t, int bit) {
    t[bit / 8] |= (uint8_t)(1u << (bit % 8));
}

static int tally_get(const uint8_t *t, int bit) {
    return (t[bit / 8] >> (bit % 8)) & 1;
}

// Bytes an event of the log costs until the dataset is built: its meta record (twice: the sort's
// scratch), key slots, numbers and label, and the builder's per-user index (8 + 4).
static double ev_bytes(uint32_t ns, uint32_t nn, uint32_t tb) {
    return 2.0 * sizeof(ev_meta) + 8.0 * ns + 4.0 * nn + 1.0 + 8.0 + 12.0 + tb;
}

uint64_t rd__schema_log_cap(uint64_t cap, double per_event, double limit) {
    uint64_t nc = cap ? cap * 2 : 4096;
    if (limit <= 0 || per_event <= 0)
        return nc;
    double room = limit / per_event; // events that fit at all
    if (room < (double)nc)
        nc = room > (double)cap ? (uint64_t)room : cap;
    return nc;
}

// Grow the store (doubling, but never past what `limit` bytes hold).
// @return 0, -1 out of memory, -2 no room under the limit
static int ev_grow(ev_store *es, uint32_t ns, uint32_t nn, double limit) {
    uint64_t nc = rd__schema_log_cap(es->cap, ev_bytes(ns, nn, es->tb), limit);
    if (nc <= es->cap)
        return -2;
    ev_meta *m = rd_realloc(es->meta, nc * sizeof *m);
    if (m)
        es->meta = m;
    uint64_t *k = rd_realloc(es->keys, nc * (ns ? ns : 1) * 8);
    if (k)
        es->keys = k;
    float *f = rd_realloc(es->nums, nc * (nn ? nn : 1) * 4);
    if (f)
        es->nums = f;
    uint8_t *l = rd_realloc(es->label, nc);
    if (l)
        es->label = l;
    uint64_t *h = rd_realloc(es->rowh, nc * 8);
    if (h)
        es->rowh = h;
    uint8_t *t = es->tb ? rd_realloc(es->tally, nc * es->tb) : NULL;
    if (t)
        es->tally = t;
    if (!m || !k || !f || !l || !h || (es->tb && !t))
        return -1;
    es->cap = nc;
    return 0;
}

// Close the current part and open the next one, whose columns must be the first part's.
static int next_part(csv_ctx *cx,
                     const rd_schema_config *sc,
                     const rd_csv_options *o,
                     const char *path,
                     const char *first,
                     rd_csv_reader **r,
                     rd_errbuf *eb) {
    rd_csv_close(*r);
    *r = NULL;
    int rc = rd_csv_open(path, o, r, eb);
    if (rc != RD_OK)
        return rc;
    char(*cols)[RD_COLUMN_MAX] = NULL;
    int nc = 0;
    if ((rc = read_columns(*r, sc->header, strcmp(sc->encoding, "latin-1") == 0, sc->n_columns,
                           &sc->columns[0][0], "data.schema.columns", &cols, &nc, eb)) != RD_OK) {
        rd_free(cols); // a refused header may have been read into it
        return rc;
    }
    for (int i = 0; i < nc || i < cx->n_cols; i++)
        if (i >= nc || i >= cx->n_cols || strcmp(cols[i], cx->cols[i]) != 0) {
            char a[4 * RD_COLUMN_MAX], b[4 * RD_COLUMN_MAX];
            esc_name(a, sizeof a, i < nc ? cols[i] : "(none)");
            esc_name(b, sizeof b, i < cx->n_cols ? cx->cols[i] : "(none)");
            rc = rd_err_set(eb, RD_ERR_SCHEMA,
                            "%s: column %d is '%s', but '%s' in %s (the parts of one log need "
                            "one header)",
                            path, i + 1, a, b, first);
            break;
        }
    rd_free(cols);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Ids that differ only by leading zeros (intern_rank counts them)

static void warn_twins(const char *log, const char *col, const char *what, const intern *t) {
    if (t->twins == 0)
        return;
    rd_csv_field z = {t->arena + t->soff[t->twin_zero],
                      (size_t)(t->soff[t->twin_zero + 1] - t->soff[t->twin_zero])};
    rd_csv_field c = {t->arena + t->soff[t->twin_canon],
                      (size_t)(t->soff[t->twin_canon + 1] - t->soff[t->twin_canon])};
    char sz[48], sc[48];
    RD_LOG_WARN("%s: column '%s': %llu %s the number of another id with leading zeros "
                "('%s' beside '%s'): ids are text, so these are different %s; if some rows "
                "lost their zeros (a spreadsheet round trip), make the column consistent",
                log, col, (unsigned long long)t->twins, t->twins == 1 ? "id spells" : "ids spell",
                show(&z, sz, sizeof sz), show(&c, sc, sizeof sc), what);
}

// Ids that spell a missing value. An id of spaces alone is as empty as an empty one (refused
// with it). An export's spelling of a missing id (NULL, \N, NaN, None, NA, N/A) is a text like
// any other, so every row holding it became one user (or item) without a word: anonymous
// sessions merged into one huge history. Counted per column (the first row and its spelling
// kept) and named once the log is read.
static int blank_id(const rd_csv_field *v) {
    for (size_t i = 0; i < v->len; i++)
        if (v->ptr[i] != ' ' && v->ptr[i] != '\t')
            return 0;
    return 1;
}

// Rows of a kind a warning counts, and the first one's line (across the parts) and spelling.
typedef struct first_seen {
    uint64_t n, line;
    char first[48];
} first_seen;

// Count value v of the row at `line`. @return 1 when it is the first (recorded).
static int note_seen(first_seen *z, const rd_csv_field *v, uint64_t line) {
    if (z->n++ > 0)
        return 0;
    z->line = line;
    size_t k = v->len < sizeof z->first - 1 ? v->len : sizeof z->first - 1;
    memcpy(z->first, v->ptr, k);
    z->first[k] = '\0';
    return 1;
}

typedef first_seen null_ids;

static void count_null_id(null_ids *z, const rd_csv_field *v, uint64_t line) {
    if ((v->len == 2 && v->ptr[0] == '\\' && v->ptr[1] == 'N') || is_missing_value(v))
        note_seen(z, v, line);
}

static void warn_null_ids(const null_ids *z,
                          const char *col,
                          const char *what,
                          uint64_t rows,
                          char **files,
                          const uint64_t *base,
                          size_t n_files) {
    if (z->n == 0)
        return;
    const char *file = NULL;
    uint64_t line = part_line(files, base, n_files, z->line, &file);
    RD_LOG_WARN("%s:%llu: column '%s': %llu of the log's %llu rows hold '%s' or another spelling "
                "of a missing value (this line is the first): ids are text, so each spelling is "
                "one %s holding all of its rows; if these ids are missing, drop the rows or give "
                "them ids of their own",
                file, (unsigned long long)line, col, (unsigned long long)z->n,
                (unsigned long long)rows, z->first, what);
}

// A text label (label.values) equal to one of the values once case and spaces around it are
// ignored, but not byte for byte: a column of booleans from two exporters ("true" and "True"),
// or " click". Such rows got the other label without a word; counted (the first row, its
// spelling and the value it resembles kept) and named once the log is read.
typedef struct label_near {
    first_seen seen;
    int value; // index of the label value the first resembles
} label_near;

static void
count_label_near(label_near *z, const rd_schema_config *sc, const rd_csv_field *v, uint64_t line) {
    const char *p = v->ptr, *e = v->ptr + v->len;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t n = (size_t)(e - p);
    int near = -1;
    for (int i = 0; i < sc->n_label_values; i++) {
        const char *lv = sc->label_values[i];
        size_t ln = strnlen(lv, sizeof sc->label_values[i]);
        if (v->len == ln && (ln == 0 || memcmp(v->ptr, lv, ln) == 0))
            return; // an exact match
        if (near >= 0 || ln != n || n == 0)
            continue;
        size_t k = 0;
        while (k < n && ((p[k] >= 'A' && p[k] <= 'Z') ? p[k] | 0x20 : p[k]) ==
                            ((lv[k] >= 'A' && lv[k] <= 'Z') ? lv[k] | 0x20 : lv[k]))
            k++;
        if (k == n)
            near = i;
    }
    if (near >= 0 && note_seen(&z->seen, v, line))
        z->value = near;
}

static void warn_label_near(const label_near *z,
                            const rd_schema_config *sc,
                            const char *col,
                            uint64_t rows,
                            char **files,
                            const uint64_t *base,
                            size_t n_files) {
    if (z->seen.n == 0)
        return;
    const char *file = NULL;
    uint64_t line = part_line(files, base, n_files, z->seen.line, &file);
    RD_LOG_WARN("%s:%llu: column '%s': %llu of the log's %llu rows hold '%s' (this line is the "
                "first) or another spelling that matches label value '%s' only when case and "
                "spaces around it are ignored: label.values are compared byte for byte, so these "
                "rows get label %d; if they mean '%s', add their spellings to "
                "data.schema.label.values",
                file, (unsigned long long)line, col, (unsigned long long)z->seen.n,
                (unsigned long long)rows, z->seen.first, sc->label_values[z->value],
                sc->label_op == RD_LABEL_NE ? 1 : 0, sc->label_values[z->value]);
}

// ---------------------------------------------------------------------------------------------
// Repeated rows

// Rows that repeat an earlier row exactly (every column of the log the same, so the same time,
// user, item, label and value of every field read, side-table joins included) are kept: two
// identical events can be real. But a copy's user history holds the copy before it, label
// included (rd_dataset_history takes equal times in record order), so that a model reading the
// history (seq, seq.stats, tokens) reads the event's own label: on a log of random labels with
// every row twice, a teacher reading seq.stats [1, 4] ranked the holdout far above chance, and
// about at chance on the log without the copies. Prepare says so, or drops them
// (data.schema.drop_repeats). After
// the sort a row's copies sit in its run of equal (time, user, item), in line order. A run of
// more than one row is sorted by the hash of its whole row (es->rowh), so that every repeat is
// found however far back its first copy is (a doubled export of a run of 100 rows puts each
// copy 100 rows after its first), at O(r log r) for a run of r rows; rows of equal hash are
// compared field by field too. The count does not depend on drop.
//
// A row that differs from an earlier one only in columns nobody reads (a request or row id, an
// export time), or in label values of one class (2 beside 1 under "clicked >= 1"), is no repeat,
// but the dataset stores the same event twice and the history leaks the same way: a model reading
// the history (seq, seq.stats, tokens) sees the copy's label just before the event, and scores
// better on such a log than it could on the real one. These twins are counted in a second
// pass over the run, by the hash of what the dataset stores (label, field keys, numeric values),
// and warned about; they stay, whatever drop_repeats says, since they are not the same row.

typedef struct repeats {
    uint64_t n;           // rows that repeat an earlier row
    uint64_t line, first; // the first such row and the row it repeats (input lines, all parts)
    uint64_t n_twin;      // rows, no repeat, that the dataset stores as an earlier row again
    uint64_t twin_line, twin_first; // the first such row and the row it is stored as
} repeats;

static int
same_row(const ev_store *es, const ev_meta *a, const ev_meta *b, uint32_t ns, uint32_t nn) {
    return es->rowh[a->idx] == es->rowh[b->idx] && es->label[a->idx] == es->label[b->idx] &&
           (ns == 0 || memcmp(es->keys + a->idx * ns, es->keys + b->idx * ns, ns * 8ull) == 0) &&
           (nn == 0 || memcmp(es->nums + a->idx * nn, es->nums + b->idx * nn, nn * 4ull) == 0);
}

// What the dataset stores of a row besides its time, user and item (same_stored compares it).
static uint64_t stored_hash(const ev_store *es, const ev_meta *a, uint32_t ns, uint32_t nn) {
    uint64_t h = rd_hash64(&es->label[a->idx], 1, 0x73746f7265642121ULL);
    if (ns)
        h = rd_hash64(es->keys + a->idx * ns, ns * 8ull, h);
    if (nn)
        h = rd_hash64(es->nums + a->idx * nn, nn * 4ull, h);
    return h;
}

static int
same_stored(const ev_store *es, const ev_meta *a, const ev_meta *b, uint32_t ns, uint32_t nn) {
    return es->label[a->idx] == es->label[b->idx] &&
           (ns == 0 || memcmp(es->keys + a->idx * ns, es->keys + b->idx * ns, ns * 8ull) == 0) &&
           (nn == 0 || memcmp(es->nums + a->idx * nn, es->nums + b->idx * nn, nn * 4ull) == 0);
}

typedef struct run_row {
    uint64_t h;   // es->rowh of the row (stored_hash in find_repeats' second pass)
    uint64_t pos; // in es->meta (line order within the run)
} run_row;

static int cmp_run_row(const void *a, const void *b) {
    const run_row *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

// es sorted by cmp_ev. With drop, the repeats leave es (its meta; the per-event arrays keep
// their rows, unreferenced). @return 0, -1 out of memory
static int find_repeats(ev_store *es, uint32_t ns, uint32_t nn, int drop, repeats *rp) {
    rp->n = rp->line = rp->first = 0;
    rp->n_twin = rp->twin_line = rp->twin_first = 0;
    run_row *rr = NULL;
    uint8_t *rep = NULL; // per row of the run: 1 = repeats an earlier row
    uint64_t cap = 0, k = 0;
    for (uint64_t s = 0, e; s < es->n; s = e) {
        const ev_meta *m0 = &es->meta[s];
        for (e = s + 1; e < es->n && es->meta[e].ts_ms == m0->ts_ms &&
                        es->meta[e].urank == m0->urank && es->meta[e].irank == m0->irank;
             e++)
            ;
        const uint64_t r = e - s;
        if (r == 1) {
            es->meta[k++] = es->meta[s];
            continue;
        }
        if (r > cap) {
            run_row *nr = rd_realloc(rr, r * sizeof *rr);
            if (nr)
                rr = nr;
            uint8_t *np = rd_realloc(rep, r);
            if (np)
                rep = np;
            if (!nr || !np) {
                rd_free(rr);
                rd_free(rep);
                return -1;
            }
            cap = r;
        }
        for (uint64_t i = 0; i < r; i++) {
            rr[i].h = es->rowh[es->meta[s + i].idx];
            rr[i].pos = i;
            rep[i] = 0;
        }
        qsort(rr, r, sizeof *rr, cmp_run_row);
        // In a group of equal hash (line order), a row repeats the first earlier row of the
        // group that is no repeat itself and equals it.
        for (uint64_t g = 0, ge; g < r; g = ge) {
            for (ge = g + 1; ge < r && rr[ge].h == rr[g].h; ge++)
                ;
            for (uint64_t i = g + 1; i < ge; i++) {
                const ev_meta *mi = &es->meta[s + rr[i].pos];
                for (uint64_t j = g; j < i; j++) {
                    const ev_meta *mj = &es->meta[s + rr[j].pos];
                    if (rep[rr[j].pos] || !same_row(es, mj, mi, ns, nn))
                        continue;
                    rep[rr[i].pos] = 1;
                    if (rp->n++ == 0 || mi->line < rp->line) {
                        rp->line = mi->line;
                        rp->first = mj->line;
                    }
                    break;
                }
            }
        }
        // 2. The twins: rows, no repeat, stored as an earlier row of the run. In a group of
        // equal stored hash the first row (in line order) is no repeat, since the row it would
        // repeat stores the same and comes earlier; the others are compared with the group's
        // rows before them that are no repeat.
        for (uint64_t i = 0; i < r; i++) {
            rr[i].h = stored_hash(es, &es->meta[s + i], ns, nn);
            rr[i].pos = i;
        }
        qsort(rr, r, sizeof *rr, cmp_run_row);
        for (uint64_t g = 0, ge; g < r; g = ge) {
            for (ge = g + 1; ge < r && rr[ge].h == rr[g].h; ge++)
                ;
            for (uint64_t i = g + 1; i < ge; i++) {
                if (rep[rr[i].pos])
                    continue;
                const ev_meta *mi = &es->meta[s + rr[i].pos];
                for (uint64_t j = g; j < i; j++) {
                    const ev_meta *mj = &es->meta[s + rr[j].pos];
                    if (rep[rr[j].pos] || !same_stored(es, mj, mi, ns, nn))
                        continue;
                    if (rp->n_twin++ == 0 || mi->line < rp->twin_line) {
                        rp->twin_line = mi->line;
                        rp->twin_first = mj->line;
                    }
                    break;
                }
            }
        }
        for (uint64_t i = 0; i < r; i++)
            if (!rep[i] || !drop)
                es->meta[k++] = es->meta[s + i];
    }
    es->n = k;
    rd_free(rr);
    rd_free(rep);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Timestamp units

// Rows of the log whose time, in ms as read, falls in the expected years.
static uint64_t count_plausible(const ev_store *es, int64_t num, int64_t den) {
    const int64_t lo = RD_SCHEMA_TS_LO_S * 1000, hi = RD_SCHEMA_TS_HI_S * 1000;
    uint64_t n = 0;
    for (uint64_t e = 0; e < es->n; e++) {
        // |ts_ms| <= 2.6e14 (year 9999), so times 1000 does not overflow.
        const int64_t t = floor_div(es->meta[e].ts_ms * num, den);
        n += t >= lo && t < hi;
    }
    return n;
}

// Timestamps that parse in the declared unit but most likely are of another: a unix_ms column of
// seconds lands in January 1970, a unix column of milliseconds (those of 1971 .. 1978: later ones
// are refused, beyond year 9999) in the years 2200 .. 9999, a unix_ms column of microseconds
// centuries ahead. The events keep their order, so the run is usable: a warning, not an error,
// when most rows of the log fall outside 1971 .. 2199 (a unix log of small numbers, before 1971,
// is a toy log, not a unit mistake), naming the first such row (in input order, over every row
// read) and the unit in which most rows would fit, if one does.
static void warn_time_unit(const csv_ctx *cx, const ev_store *es, char **files, size_t n_files) {
    if (cx->tf == TF_ISO || es->n == 0)
        return;
    const int64_t lo = RD_SCHEMA_TS_LO_S * 1000, hi = RD_SCHEMA_TS_HI_S * 1000;
    uint64_t n_early = 0, n_late = 0, at_early = 0, at_late = 0;
    for (uint64_t e = 0; e < es->n; e++) {
        const int64_t t = es->meta[e].ts_ms;
        if (t < lo && n_early++ == 0)
            at_early = e;
        if (t >= hi && n_late++ == 0)
            at_late = e;
    }
    const int late = n_late > es->n / 2;
    if (!late && (cx->tf == TF_UNIX || n_early <= es->n / 2))
        return;
    const uint64_t at = late ? at_late : at_early;
    const int64_t t = es->meta[at].ts_ms;
    // The value as the column holds it, and the unit that fits most rows: as milliseconds
    // (unix), as seconds (unix_ms before 1971), as microseconds (unix_ms from 2200 on).
    char value[40], date[32], fit[160];
    if (cx->tf == TF_UNIX_MS)
        snprintf(value, sizeof value, "%lld", (long long)t);
    else if (t % 1000 == 0)
        snprintf(value, sizeof value, "%lld", (long long)(t / 1000));
    else
        snprintf(value, sizeof value, "%lld.%03lld", (long long)(t / 1000), (long long)(t % 1000));
    rd_fmt_utc(floor_div(t, 1000), date, sizeof date);
    const uint64_t half = es->n / 2;
    if (cx->tf == TF_UNIX && count_plausible(es, 1, 1000) > half)
        snprintf(fit, sizeof fit,
                 "; read as milliseconds most fall in 1971 .. 2199: set time_format: unix_ms");
    else if (cx->tf == TF_UNIX_MS && !late && count_plausible(es, 1000, 1) > half)
        snprintf(fit, sizeof fit,
                 "; read as seconds most fall in 1971 .. 2199: set time_format: unix");
    else if (cx->tf == TF_UNIX_MS && late && count_plausible(es, 1, 1000) > half)
        snprintf(fit, sizeof fit,
                 "; read as microseconds most fall in 1971 .. 2199: divide the column by 1000 "
                 "and keep time_format: unix_ms");
    else if (cx->tf == TF_UNIX)
        snprintf(fit, sizeof fit, "; read as milliseconds they do not either: check the column");
    else
        snprintf(fit, sizeof fit, "; read as %s they do not either: check the column",
                 late ? "microseconds" : "seconds");
    const char *file = NULL;
    uint64_t fline = part_line(files, cx->part_base, n_files, es->meta[at].line, &file);
    RD_LOG_WARN("%s:%llu: column '%s': time_format %s: %llu of the log's %llu rows have a time %s "
                "(this line is the first: %s reads as %s)%s (the events keep their order; the "
                "dataset is built with these dates)",
                file, (unsigned long long)fline, cx->cols[cx->c_time],
                cx->tf == TF_UNIX ? "unix" : "unix_ms",
                (unsigned long long)(late ? n_late : n_early), (unsigned long long)es->n,
                late ? "in 2200 or later" : "before 1971", value, date, fit);
}

// ---------------------------------------------------------------------------------------------
// Counts of the rows read

// data.schema.drop_repeats: the counts of the log's rows (missing values, values below 0 under
// log1p, rows without a side row, multi values cut) counted again over the rows kept, from each
// event's tally bits, so that what prepare prints is what the dataset holds (they counted the
// dropped copies too). The first line of each stays: a dropped row repeats an earlier row, which
// is kept and counted the same. The multi fields' cuts, told per part, are told here. Side
// tables' own counts (their rows) do not change.
static int recount_kept(csv_ctx *cx, const ev_store *es, char **files, size_t n_files) {
    int any_cut = 0;
    for (int i = 0; i < cx->n_plan; i++)
        if (cx->plan[i].side < 0) {
            cx->plan[i].filled = cx->plan[i].neg = 0;
            any_cut |= cx->plan[i].cut_file > 0;
        }
    for (int s = 0; s < cx->n_side; s++)
        cx->side[s].unmatched = 0;
    // Per field and part: rows cut, and the first such line (all parts). One pass over the kept
    // events, each event's tally read once (they are in time order, not in the tally's).
    const size_t np = (size_t)cx->n_plan * n_files;
    uint64_t *cut = any_cut ? rd_calloc(np, sizeof *cut) : NULL;
    uint64_t *first = any_cut ? rd_calloc(np, sizeof *first) : NULL;
    if (any_cut && (!cut || !first)) {
        rd_free(cut);
        rd_free(first);
        return -1;
    }
    for (uint64_t e = 0; e < es->n; e++) {
        const uint8_t *t = es->tally + es->meta[e].idx * es->tb;
        for (int i = 0; i < cx->n_plan; i++) {
            field_plan *fp = &cx->plan[i];
            if (fp->side >= 0)
                continue;
            fp->filled += (uint64_t)tally_get(t, TALLY_MISS(i));
            fp->neg += (uint64_t)tally_get(t, TALLY_NEG(i));
            if (fp->cut_file > 0 && tally_get(t, TALLY_CUT(i))) {
                size_t k = (size_t)i * n_files + part_of(cx->part_base, n_files, es->meta[e].line);
                if (cut[k]++ == 0 || es->meta[e].line < first[k])
                    first[k] = es->meta[e].line;
            }
        }
        for (int s = 0; s < cx->n_side; s++)
            cx->side[s].unmatched += (uint64_t)tally_get(t, TALLY_UNM(cx->n_plan, s));
    }
    // The multi fields' cuts, told per part as the first pass told them.
    for (int i = 0; i < cx->n_plan; i++) {
        field_plan *fp = &cx->plan[i];
        if (fp->side >= 0 || fp->cut_file == 0)
            continue;
        for (size_t k = 0; k < n_files; k++) {
            const uint64_t c = cut[(size_t)i * n_files + k];
            const char *f;
            fp->cut_file = c;
            fp->cut_line =
                c ? part_line(files, cx->part_base, n_files, first[(size_t)i * n_files + k], &f)
                  : 0;
            warn_cut(fp, files[k]);
        }
        fp->cut_file = 0;
    }
    rd_free(cut);
    rd_free(first);
    return 0;
}

// What the missing-value options and log1p did, over the `n_rows` rows of the log kept.
static void tell_counts(const csv_ctx *cx, uint64_t n_rows, size_t n_files) {
    // Counted over the rows kept: said so when repeats were dropped (data.schema.drop_repeats).
    const char *kept = cx->dropped ? "; counted after dropping repeats" : "";
    const char *kept_rows = cx->dropped ? " (after dropping repeats)" : "";
    // What the missing-value options did, so that a log mostly without side rows or values shows.
    for (int s = 0; s < cx->n_side; s++) {
        const side_table *st = &cx->side[s];
        if (st->cfg->missing != RD_SIDE_MISSING_EMPTY)
            continue;
        if (n_rows > 0 && st->unmatched == n_rows && st->n_rows > 0) {
            // Not one row joined: the join names the wrong columns, or the two sides write
            // their ids differently. missing: empty would otherwise hide it as a count.
            char sp[384];
            rd_csv_field mk = {st->miss_key, strnlen(st->miss_key, sizeof st->miss_key)};
            spaced_hint(st, &mk, sp, sizeof sp);
            RD_LOG_WARN("side table '%s' (%s): none of the %llu log rows%s has a row there (log "
                        "column '%s', e.g. '%s' on %s:%llu, never matches its key "
                        "column '%s'%s): its fields are missing values on every event; check "
                        "data.schema.side[%d].join_column and key_column",
                        st->cfg->name, st->path, (unsigned long long)n_rows, kept_rows,
                        st->cfg->join_column, st->miss_key, st->miss_file ? st->miss_file : "?",
                        (unsigned long long)st->miss_line, st->cfg->key_column, sp, s);
            continue;
        }
        RD_LOG_INFO("side table '%s' (%s): %llu of %llu log rows%s have no row there (missing: "
                    "empty; their fields of it are missing values)",
                    st->cfg->name, st->path, (unsigned long long)st->unmatched,
                    (unsigned long long)n_rows, kept_rows);
    }
    // The count is over the whole log (or side table); the first missing value is named by its
    // file and line, a part of the log rather than its pattern.
    for (int i = 0; i < cx->n_plan; i++) {
        const field_plan *fp = &cx->plan[i];
        if (fp->cfg->missing == RD_MISSING_ERROR || !rd_field_is_float(fp->kind))
            continue;
        const char *how = fp->cfg->missing == RD_MISSING_MEAN ? "mean, filled when the dataset "
                                                                "is built"
                                                              : "zero";
        if (fp->filled == 0)
            RD_LOG_INFO("field '%s': no missing values in %s (missing: %s)", fp->cfg->name,
                        fp->side >= 0 ? cx->side[fp->side].path : cx->log_path, how);
        else
            RD_LOG_INFO("%s:%llu: field '%s': %llu missing %s (this line is the first%s; "
                        "missing: %s)",
                        fp->miss_file, (unsigned long long)fp->miss_line, fp->cfg->name,
                        (unsigned long long)fp->filled, fp->filled == 1 ? "value" : "values",
                        fp->side < 0 ? kept : "", how);
    }
    // A field empty on every row of its file (a column name that is not the one meant, a
    // column the export left blank, a side table without that data): legal, but the models get
    // nothing from it, and nothing said so.
    for (int i = 0; i < cx->n_plan; i++) {
        const field_plan *fp = &cx->plan[i];
        if (fp->present > 0)
            continue;
        char where[RD_PATH_MAX * 2 + 64];
        if (fp->side >= 0)
            snprintf(where, sizeof where, "%s", cx->side[fp->side].path);
        else if (n_files > 1)
            snprintf(where, sizeof where, "%s (all %zu files of the log)", cx->log_path, n_files);
        else
            snprintf(where, sizeof where, "%s", cx->log_path);
        RD_LOG_WARN("%s: field '%s' has no value on any row: column '%s' is empty%s on all %llu "
                    "rows%s; the models get nothing from it (check that "
                    "data.schema.fields[%d].column names the column meant, or remove the field)",
                    where, fp->cfg->name, fp->cfg->column[0] ? fp->cfg->column : fp->cfg->name,
                    rd_field_is_float(fp->kind) ? " (or a missing-value spelling)" : "",
                    (unsigned long long)(fp->side >= 0 ? cx->side[fp->side].n_rows : n_rows),
                    fp->side >= 0 ? " of the side table" : "", fp->index);
    }
    for (int i = 0; i < cx->n_plan; i++) {
        const field_plan *fp = &cx->plan[i];
        // log1p stores log1p(max(x, 0)): a signed column (a delta, a score) lost its sign, or
        // all of itself, without a word.
        if (fp->neg > 0)
            RD_LOG_WARN("%s:%llu: %s field '%s': %llu %s below 0 (this line is the first%s), "
                        "stored as 0 by log1p: true (it "
                        "takes log1p(max(x, 0))); for a signed column drop log1p "
                        "(data.schema.fields[%d].log1p: false)%s",
                        fp->neg_file, (unsigned long long)fp->neg_line,
                        fp->kind == RD_FIELD_NUMERIC ? "numeric" : "feedback", fp->cfg->name,
                        (unsigned long long)fp->neg, fp->neg == 1 ? "value" : "values",
                        fp->side < 0 ? kept : "", fp->index,
                        fp->kind == RD_FIELD_NUMERIC ? " and set standardize: true" : "");
    }
}

int rd__prepare_csv(const rd_data_config *dc, uint64_t seed, rd_errbuf *eb) {
    csv_ctx *cx = rd_calloc(1, sizeof *cx);
    if (!cx)
        return rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
    int rc = RD_OK;
    rd_csv_reader *r = NULL;
    rd__builder *b = NULL;
    ev_store es;
    memset(&es, 0, sizeof es);
    intern users, items;
    memset(&users, 0, sizeof users);
    memset(&items, 0, sizeof items);
    char *yaml = NULL;
    size_t yaml_len = 0;
    latin1_row log_lr; // a Latin-1 log's row as UTF-8 (below)
    memset(&log_lr, 0, sizeof log_lr);
    cx->dc = dc;
    if (dc->source == RD_DATA_CSV) {
        cx->sc = dc->schema;
        cx->quote = cx->sc.quoting ? '"' : 0;
    } else {
        if ((rc = rd_schema_preset(dc->source, &cx->sc, eb)) != RD_OK)
            goto done;
        cx->quote = 0; // MovieLens files are not quoted (titles hold stray quotes)
    }
    rd_schema_config *sc = &cx->sc;
    if (!sc->path[0]) {
        rc = rd_err_set(eb, RD_ERR_CONFIG, "data.schema.path: the interaction log is not set");
        goto done;
    }
    resolve_log_path(cx, dc->input, sc->path);
    const char *tfs = sc->time_format[0] ? sc->time_format : "unix";
    if (!strcmp(tfs, "unix"))
        cx->tf = TF_UNIX;
    else if (!strcmp(tfs, "unix_ms"))
        cx->tf = TF_UNIX_MS;
    else if (!strcmp(tfs, "iso8601"))
        cx->tf = TF_ISO;
    else {
        rc = rd_err_set(eb, RD_ERR_CONFIG, "data.schema.time_format: unknown format '%s'", tfs);
        goto done;
    }
    if (sc->label_op < RD_LABEL_GE || sc->label_op > RD_LABEL_LT) {
        rc = rd_err_set(eb, RD_ERR_CONFIG, "data.schema.label.op: bad operator %d", sc->label_op);
        goto done;
    }
    if (sc->n_label_values < 0 || sc->n_label_values > RD_MAX_LABEL_VALUES ||
        (sc->n_label_values > 0 && sc->label_op != RD_LABEL_EQ && sc->label_op != RD_LABEL_NE)) {
        rc = rd_err_set(eb, RD_ERR_CONFIG,
                        "data.schema.label: %d values with operator %s (values take == or !=)",
                        sc->n_label_values, label_ops[sc->label_op]);
        goto done;
    }
    if ((rc = plan_fields(cx, eb)) != RD_OK)
        goto done;

    // 1. The log's columns (needed to resolve the join columns), then the side tables.
    char **files = NULL;
    size_t n_files = 0;
    if ((rc = log_parts(cx, &files, &n_files, eb)) != RD_OK)
        goto done;
    rd_csv_options o;
    memset(&o, 0, sizeof o);
    delim_of(sc->delimiter, o.delimiter);
    o.quote = cx->quote;
    if ((rc = rd_csv_open(files[0], &o, &r, eb)) != RD_OK)
        goto done;
    if ((rc = read_columns(r, sc->header, strcmp(sc->encoding, "latin-1") == 0, sc->n_columns,
                           &sc->columns[0][0], "data.schema.columns", &cx->cols, &cx->n_cols,
                           eb)) != RD_OK)
        goto done;
    // A missing column's message names the encoding key when the log is read as UTF-8.
    const char *log_enc = strcmp(sc->encoding, "latin-1") == 0 ? NULL : "data.schema.encoding";
    const char *req_names[] = {"data.schema.user_column", "data.schema.item_column",
                               "data.schema.time_column", "data.schema.label.column"};
    const char *req[] = {sc->user_column, sc->item_column, sc->time_column, sc->label_column};
    int *req_idx[] = {&cx->c_user, &cx->c_item, &cx->c_time, &cx->c_label};
    for (int i = 0; i < 4; i++) {
        *req_idx[i] = req[i][0] ? find_col(cx->cols, cx->n_cols, req[i]) : -1;
        if (*req_idx[i] < 0) {
            rc = req[i][0] ? missing_col(eb, files[0], req_names[i], req[i], cx->cols, cx->n_cols,
                                         log_enc)
                           : rd_err_set(eb, RD_ERR_CONFIG, "%s: not set", req_names[i]);
            goto done;
        }
    }
    for (int s = 0; s < cx->n_side; s++) {
        side_table *st = &cx->side[s];
        st->join_col = find_col(cx->cols, cx->n_cols, st->cfg->join_column);
        if (st->join_col < 0) {
            char key[64];
            snprintf(key, sizeof key, "data.schema.side[%d].join_column", s);
            rc =
                missing_col(eb, files[0], key, st->cfg->join_column, cx->cols, cx->n_cols, log_enc);
            goto done;
        }
        if ((rc = load_side(cx, s, eb)) != RD_OK)
            goto done;
    }
    for (int i = 0; i < cx->n_plan; i++) {
        field_plan *fp = &cx->plan[i];
        if (fp->side >= 0)
            continue;
        fp->col = find_col(cx->cols, cx->n_cols, fp->cfg->column);
        if (fp->col < 0) {
            char key[64];
            snprintf(key, sizeof key, "data.schema.fields[%d].column", fp->index);
            rc = missing_col(eb, files[0], key, fp->cfg->column, cx->cols, cx->n_cols, log_enc);
            goto done;
        }
        if (fp->flags && fp->col + (int)fp->width > cx->n_cols) {
            rc = flags_past_end(eb, files[0], fp, cx->n_cols);
            goto done;
        }
        if (fp->flags && (rc = flags_repeat(eb, files[0], fp, cx->cols)) != RD_OK)
            goto done;
    }

    // The log's columns read as text (ids, join keys, categorical values, a label text), each
    // checked to be UTF-8 on every row.
    cx->n_text = 0;
    cx->text_cols[cx->n_text++] = cx->c_user;
    cx->text_cols[cx->n_text++] = cx->c_item;
    if (sc->n_label_values > 0)
        cx->text_cols[cx->n_text++] = cx->c_label;
    for (int s = 0; s < cx->n_side; s++)
        cx->text_cols[cx->n_text++] = cx->side[s].join_col;
    for (int i = 0; i < cx->n_plan; i++) {
        const field_plan *fp = &cx->plan[i];
        if (fp->side < 0 && !rd_field_is_float(fp->kind) && !fp->flags)
            cx->text_cols[cx->n_text++] = fp->col;
    }

    // 2. Stream the log.
    if (rd__u64map_init(&users.map, 1024) != RD_OK || rd__u64map_init(&items.map, 1024) != RD_OK) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint32_t ns = cx->lay.n_slots, nn = cx->lay.n_numeric;
    es.tb = sc->drop_repeats ? rd__schema_tally_bytes(cx->n_plan, cx->n_side) : 0;
    const rd_csv_field *f;
    size_t nf;
    // A Latin-1 log: each row is converted to UTF-8 before anything reads it (as a Latin-1 side
    // table's), so that its text hashes as the same text in UTF-8 does everywhere else.
    const int log_latin1 = strcmp(sc->encoding, "latin-1") == 0;
    // The log is held in memory until it is sorted: its store grows no further than the memory
    // this process may use, and a log beyond it is an error naming the line reached (a 10^7-event
    // log took 2.25 GB; an OOM kill would come after reading most of a larger one).
    const char *mem_what = NULL;
    const double mem_limit = (double)rd_mem_limit(&mem_what);
    // Record ids (the input line) run on across the parts: part k's lines come after part k-1's.
    uint64_t line_base = 0;
    uint64_t n_label_empty = 0; // a text label column's empty values (the one-class refusal)
    null_ids null_users = {0}, null_items = {0}; // ids spelling a missing value
    label_near near_labels = {0}; // text labels that match a value but for case or spaces
    // A numeric label column's range, and whether any value had a fraction: a log of scores or
    // probabilities under the default rule (>= 1) is one class, and the refusal says why.
    double lab_min = (double)INFINITY, lab_max = -(double)INFINITY;
    int lab_frac = 0;
    cx->part_base = rd_malloc((n_files ? n_files : 1) * sizeof *cx->part_base);
    if (!cx->part_base) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t part = 0; part < n_files; part++) {
        const char *cur = files[part];
        cx->part_base[part] = line_base;
        if (part > 0 && (rc = next_part(cx, sc, &o, cur, files[0], &r, eb)) != RD_OK)
            goto done;
        int first_row = 1;
        while ((rc = rd_csv_next(r, &f, &nf, eb)) == 1) {
            uint64_t line = rd_csv_line(r);
            if ((int)nf != cx->n_cols) {
                rc = columns_error(eb, cur, line, cx->n_cols, f, nf, o.delimiter,
                                   "data.schema.delimiter");
                goto done;
            }
            if (log_latin1) {
                if (latin1_to_utf8(&log_lr, f, nf) != 0) {
                    rc = rd_err_set(eb, RD_ERR_NOMEM, "%s:%llu: out of memory", cur,
                                    (unsigned long long)line);
                    goto done;
                }
                f = log_lr.fields;
            }
            // A row of column names: with header: false, the file's header line; with a header,
            // one repeated further down (exports joined by cat). The time column's name never
            // reads as a time, so such a row was refused all the same, as "bad unix timestamp
            // 'ts'", which did not say why. The time column and one more must hold their names.
            if (sc->header || first_row) {
                const int named[] = {cx->c_time, cx->c_user, cx->c_item, cx->c_label};
                int same = 0, hit[2] = {0, 0};
                for (int k = 0; k < 4; k++) {
                    int c = named[k];
                    size_t cl = c >= 0 ? strnlen(cx->cols[c], RD_COLUMN_MAX) : 0;
                    if (c >= 0 && cl && f[c].len == cl && memcmp(f[c].ptr, cx->cols[c], cl) == 0) {
                        if (same < 2)
                            hit[same] = c;
                        same++;
                    } else if (k == 0) {
                        break;
                    }
                }
                if (same >= 2 && !sc->header) {
                    rc = rd_err_set(eb, RD_ERR_SCHEMA,
                                    "%s:%llu: the first row holds the column names ('%s' in column "
                                    "'%s', '%s' in column '%s'): the file has a header line, but "
                                    "data.schema.header is false; set header: true",
                                    cur, (unsigned long long)line, cx->cols[hit[0]],
                                    cx->cols[hit[0]], cx->cols[hit[1]], cx->cols[hit[1]]);
                    goto done;
                }
                if (same >= 2) {
                    rc = rd_err_set(eb, RD_ERR_PARSE,
                                    "%s:%llu: the row repeats the header line ('%s' in column "
                                    "'%s', '%s' in column '%s'): the file looks like several "
                                    "exports joined one after another; remove the repeated header "
                                    "lines, or keep the exports as separate files read as parts "
                                    "(data.schema.path: a pattern such as \"part-*.csv\")",
                                    cur, (unsigned long long)line, cx->cols[hit[0]],
                                    cx->cols[hit[0]], cx->cols[hit[1]], cx->cols[hit[1]]);
                    goto done;
                }
            }
            first_row = 0;
            int grown = es.n == es.cap ? ev_grow(&es, ns, nn, mem_limit) : 0;
            if (grown == -2) {
                const double G = 1073741824.0;
                rc =
                    rd_err_set(eb, RD_ERR_NOMEM,
                               "%s:%llu: prepare holds the log in memory to sort it by time, "
                               "about %.0f bytes an event here (%u key slots, %u numbers): the "
                               "%llu events read so far take %.1f GiB, and more do not fit in "
                               "%s (%.1f GiB); prepare on a node with more memory, or narrow "
                               "the fields (data.schema.fields: fewer, or a smaller max_len)",
                               cur, (unsigned long long)line, ev_bytes(ns, nn, es.tb), ns, nn,
                               (unsigned long long)es.n, (double)es.n * ev_bytes(ns, nn, es.tb) / G,
                               mem_what, mem_limit / G);
                goto done;
            }
            if (grown != 0) {
                rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory after %llu events",
                                (unsigned long long)es.n);
                goto done;
            }
            ev_meta *m = &es.meta[es.n];
            uint64_t *keys = es.keys + es.n * ns;
            float *nums = es.nums + es.n * nn;
            if (blank_id(&f[cx->c_user]) || blank_id(&f[cx->c_item])) {
                int c = blank_id(&f[cx->c_user]) ? cx->c_user : cx->c_item;
                rc = rd_err_set(eb, RD_ERR_PARSE, "%s:%llu: column '%s': empty id%s", cur,
                                (unsigned long long)line, cx->cols[c],
                                f[c].len ? " (spaces only)" : "");
                goto done;
            }
            count_null_id(&null_users, &f[cx->c_user], line_base + line);
            count_null_id(&null_items, &f[cx->c_item], line_base + line);
            for (int i = 0; i < cx->n_text; i++) {
                const rd_csv_field *tv = &f[cx->text_cols[i]];
                size_t at = utf8_bad_at(tv);
                if (at < tv->len) {
                    rc = not_utf8(eb, cur, line, cx->cols[cx->text_cols[i]], tv, at,
                                  "the log is read as UTF-8: if it is Latin-1, set "
                                  "data.schema.encoding: latin-1 (or convert it with iconv)");
                    goto done;
                }
            }
            if (parse_time(&f[cx->c_time], cx->tf, &m->ts_ms) != 0) {
                rc = bad_time(eb, r, cx->cols[cx->c_time], cx->tf, &f[cx->c_time]);
                goto done;
            }
            if (sc->n_label_values > 0) {
                es.label[es.n] = (uint8_t)label_of_text(sc, &f[cx->c_label]);
                count_label_near(&near_labels, sc, &f[cx->c_label], line_base + line);
                n_label_empty += f[cx->c_label].len == 0;
            } else {
                double lv;
                if (f[cx->c_label].len == 0) {
                    // A text rule suggested for '' would be 'y == ""': say what is wrong.
                    char label_rule[RD_COLUMN_MAX + 64];
                    label_rule_text(sc, label_rule, sizeof label_rule);
                    rc = rd_err_set(eb, RD_ERR_PARSE,
                                    "%s:%llu: column '%s': empty label value (the rule '%s' needs "
                                    "a number on every row)",
                                    rd_csv_name(r), (unsigned long long)rd_csv_line(r),
                                    cx->cols[cx->c_label], label_rule);
                    goto done;
                }
                if (rd_csv_parse_double(&f[cx->c_label], &lv) != 0) {
                    char sv[48];
                    rc = rd_err_set(
                        eb, RD_ERR_PARSE,
                        "%s:%llu: column '%s': non-numeric label value '%s' (a text "
                        "label column takes label.values, or a rule like '%s == \"%s\"')",
                        rd_csv_name(r), (unsigned long long)rd_csv_line(r), cx->cols[cx->c_label],
                        show(&f[cx->c_label], sv, sizeof sv), cx->cols[cx->c_label], sv);
                    goto done;
                }
                es.label[es.n] = (uint8_t)label_of(sc->label_op, lv, sc->label_threshold);
                lab_min = lv < lab_min ? lv : lab_min;
                lab_max = lv > lab_max ? lv : lab_max;
                lab_frac |= lv != floor(lv);
            }
            int64_t uid = intern_put(&users, "user", &f[cx->c_user]);
            int64_t iid = intern_put(&items, "item", &f[cx->c_item]);
            if (uid < 0 || iid < 0) {
                rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (ids)");
                goto done;
            }
            m->urank = (uint32_t)uid; // the id for now; replaced by its rank before the sort
            m->irank = (uint32_t)iid;
            m->line = line_base + line;
            m->idx = es.n;
            // Every column as read (Latin-1 converted), the unread ones too: a repeat is the
            // same row, not only the same event (find_repeats).
            uint64_t rh = 0x7265706561747321ULL;
            for (size_t c = 0; c < nf; c++)
                rh = rd_hash64(f[c].ptr, f[c].len, rh ^ (uint64_t)c);
            es.rowh[es.n] = rh;
            uint8_t *tl = es.tb ? es.tally + es.n * es.tb : NULL;
            if (tl)
                memset(tl, 0, es.tb);
            memset(keys, 0, ns * 8ull);
            for (int s = 0; s < cx->n_side; s++) {
                side_table *st = &cx->side[s];
                const rd_csv_field *jv = &f[st->join_col];
                uint32_t *row = rd__u64map_get(&st->rows, rd_hash64(jv->ptr, jv->len, 0x5e1d));
                if (!row && st->cfg->missing == RD_SIDE_MISSING_EMPTY) {
                    // Key fields stay 0 (no key, as an empty value); numeric ones take their
                    // fill (config validation requires one).
                    if (!st->unmatched++) {
                        show(jv, st->miss_key, sizeof st->miss_key);
                        st->miss_file = cur;
                        st->miss_line = line;
                    }
                    if (tl)
                        tally_set(tl, TALLY_UNM(cx->n_plan, s));
                    for (int i = 0; i < cx->n_plan; i++) {
                        const field_plan *fp = &cx->plan[i];
                        if (fp->side == s && rd_field_is_float(fp->kind))
                            nums[fp->offset] = missing_fill(fp);
                    }
                    continue;
                }
                if (!row) {
                    char sv[48], sp[384];
                    spaced_hint(st, jv, sp, sizeof sp);
                    rc = rd_err_set(eb, RD_ERR_SCHEMA,
                                    "%s:%llu: column '%s': key '%s' not found in side table '%s' "
                                    "(%s%s; set data.schema.side[%d].missing: empty to join "
                                    "missing values instead)",
                                    cur, (unsigned long long)line, cx->cols[st->join_col],
                                    show(jv, sv, sizeof sv), st->cfg->name, st->path, sp, s);
                    goto done;
                }
                for (int i = 0; i < cx->n_plan; i++) {
                    const field_plan *fp = &cx->plan[i];
                    if (fp->side != s)
                        continue;
                    if (rd_field_is_float(fp->kind))
                        nums[fp->offset] = st->nums[(uint64_t)*row * st->n_num + fp->soff];
                    else
                        memcpy(keys + fp->offset,
                               st->keys + (uint64_t)*row * st->n_slots + fp->soff,
                               fp->width * 8ull);
                }
            }
            for (int i = 0; i < cx->n_plan; i++) {
                field_plan *fp = &cx->plan[i];
                if (fp->side >= 0)
                    continue;
                const uint64_t miss0 = fp->filled, neg0 = fp->neg, cut0 = fp->cut_file;
                rc = fill_field(fp, cur, r, f, cx->cols,
                                keys + (rd_field_is_float(fp->kind) ? 0 : fp->offset),
                                nums + (rd_field_is_float(fp->kind) ? fp->offset : 0), eb);
                if (rc != RD_OK)
                    goto done;
                if (tl && fp->filled != miss0)
                    tally_set(tl, TALLY_MISS(i));
                if (tl && fp->neg != neg0)
                    tally_set(tl, TALLY_NEG(i));
                if (tl && fp->cut_file != cut0)
                    tally_set(tl, TALLY_CUT(i));
            }
            es.n++;
        }
        if (rc < 0)
            goto done;
        line_base += rd_csv_line(r);
        for (int i = 0; es.tb == 0 && i < cx->n_plan; i++) // (drop_repeats: once rows dropped)
            if (cx->plan[i].side < 0)
                warn_cut(&cx->plan[i], cur);
    }
    if (rc < 0)
        goto done;
    rc = RD_OK;
    if (es.n == 0) {
        rc = rd_err_set(eb, RD_ERR_EMPTY, "%s: empty input: no data rows", cx->log_path);
        goto done;
    }
    // Values that parse but are likely not what the log meant: warn, naming the field, and
    // build the dataset all the same (they are legal).
    // (The log's fields were told part by part, as each part was read.)
    for (int i = 0; i < cx->n_plan; i++)
        if (cx->plan[i].side >= 0)
            warn_cut(&cx->plan[i], cx->side[cx->plan[i].side].path);
    for (int i = 0; i < cx->n_plan; i++)
        tell_multi_repeats(&cx->plan[i]);
    for (int i = 0; i < cx->n_plan; i++) {
        const field_plan *fp = &cx->plan[i];
        if (!rd_field_is_float(fp->kind) || (fp->cfg->standardize && fp->kind == RD_FIELD_NUMERIC))
            continue; // standardized fields are rescaled by the dataset builder
        // The first event (in input order) of the largest magnitude: its line, or for a side
        // table's field the first row of the table holding that value (the event's is a copy).
        double big = 0.0;
        uint64_t at = 0;
        for (uint64_t e = 0; e < es.n; e++) {
            double a = fabs((double)es.nums[e * nn + fp->offset]);
            if (a > big) {
                big = a;
                at = e;
            }
        }
        if (!(big > RD_SCHEMA_NUMERIC_WARN))
            continue;
        const char *file = NULL;
        uint64_t fline = 0;
        if (fp->side >= 0) {
            const side_table *st = &cx->side[fp->side];
            file = st->path;
            for (uint64_t row = 0; row < st->n_rows; row++)
                if (fabs((double)st->nums[row * st->n_num + fp->soff]) == big) {
                    fline = st->line[row];
                    break;
                }
        } else {
            fline = part_line(files, cx->part_base, n_files, es.meta[at].line, &file);
        }
        RD_LOG_WARN("%s:%llu: %s field '%s' reaches %g (on this line): the models read %s as "
                    "they are, and inputs this large saturate them (set %slog1p: true, or "
                    "rescale the column)",
                    file, (unsigned long long)fline,
                    fp->kind == RD_FIELD_NUMERIC ? "numeric" : "feedback", fp->cfg->name, big,
                    fp->kind == RD_FIELD_NUMERIC ? "numeric fields"
                                                 : "its means (seq.stats_feedback)",
                    fp->kind == RD_FIELD_NUMERIC ? "standardize: true, or " : "");
    }
    warn_time_unit(cx, &es, files, n_files);
    warn_null_ids(&null_users, cx->cols[cx->c_user], "user", es.n, files, cx->part_base, n_files);
    warn_null_ids(&null_items, cx->cols[cx->c_item], "item", es.n, files, cx->part_base, n_files);
    warn_label_near(&near_labels, sc, cx->cols[cx->c_label], es.n, files, cx->part_base, n_files);
    // A log with one class only (purchases or clicks without their impressions, or a label rule
    // that no event meets) has nothing for a classifier to learn and no AUC to report: refuse
    // it here, naming the rule, rather than train it into a report of nulls. A text label
    // column empty on every row (a column left blank by the export) is named as the cause.
    uint64_t n_pos = 0;
    for (uint64_t i = 0; i < es.n; i++)
        n_pos += es.label[i];
    const int one_class = n_pos == 0 || n_pos == es.n;
    const int too_many = users.n >= UINT32_MAX || items.n >= UINT32_MAX;
    // A refused log still gets the whole-log counts and warnings (missing values, values below
    // 0 under log1p, a field empty on every row), over every row read: they may explain the
    // refusal (the one class of a log whose fields are all empty), and were not printed at all.
    // With drop_repeats the multi fields' cuts were kept back to be told per part once the
    // repeats are dropped (recount_kept), which a refused log never reaches: told here over
    // every row read, as without drop_repeats (nothing is dropped yet, so all rows are kept).
    if (one_class || too_many) {
        if (es.tb && recount_kept(cx, &es, files, n_files) != 0) {
            rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (repeated rows)");
            goto done;
        }
        tell_counts(cx, es.n, n_files);
    }
    if (one_class) {
        char rule[RD_COLUMN_MAX + RD_NAME_MAX * RD_MAX_LABEL_VALUES + 64];
        label_rule_text(sc, rule, sizeof rule);
        char empty[RD_COLUMN_MAX + 160] = "";
        if (sc->n_label_values > 0 && n_label_empty == es.n)
            snprintf(empty, sizeof empty, " (column '%s' is empty on every row)",
                     cx->cols[cx->c_label]);
        else if (sc->n_label_values == 0 && lab_frac && lab_min >= 0 && lab_max <= 1)
            snprintf(empty, sizeof empty,
                     " (column '%s' holds %.6g to %.6g: scores or probabilities? set "
                     "data.schema.label.threshold, e.g. 0.5)",
                     cx->cols[cx->c_label], lab_min, lab_max);
        else if (sc->n_label_values == 0)
            snprintf(empty, sizeof empty, " (column '%s' holds %.6g to %.6g)",
                     cx->cols[cx->c_label], lab_min, lab_max);
        rc = rd_err_set(eb, RD_ERR_SCHEMA,
                        "%s: label rule '%s' gives label %d to all %llu events%s: training "
                        "needs both classes (a log of positives only needs its negatives, e.g. "
                        "the impressions that were not clicked)",
                        cx->log_path, rule, n_pos ? 1 : 0, (unsigned long long)es.n, empty);
        goto done;
    }
    if (too_many) {
        rc = rd_err_set(eb, RD_ERR_RANGE, "%s: more than 2^32-1 distinct users or items",
                        cx->log_path);
        goto done;
    }

    // 3. Sort by (time, user, item, line) with ids in natural order.
    if (intern_rank(&users) != 0 || intern_rank(&items) != 0) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (sort)");
        goto done;
    }
    warn_twins(cx->log_path, cx->cols[cx->c_user], "users", &users);
    warn_twins(cx->log_path, cx->cols[cx->c_item], "items", &items);
    for (int i = 0; i < cx->n_plan; i++)
        warn_spaced(&cx->plan[i], es.keys, es.n, ns);
    for (uint64_t i = 0; i < es.n; i++) {
        es.meta[i].urank = users.rank[es.meta[i].urank];
        es.meta[i].irank = items.rank[es.meta[i].irank];
    }
    // The ranks replaced the ids: keep the keys reachable through the ranks.
    uint64_t *ukey = rd_malloc(users.n * 8), *ikey = rd_malloc(items.n * 8);
    if (!ukey || !ikey) {
        rd_free(ukey);
        rd_free(ikey);
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (sort)");
        goto done;
    }
    for (uint64_t i = 0; i < users.n; i++)
        ukey[users.rank[i]] = users.key[i];
    for (uint64_t i = 0; i < items.n; i++)
        ikey[items.rank[i]] = items.key[i];
    qsort(es.meta, es.n, sizeof *es.meta, cmp_ev);
    repeats rp;
    if (find_repeats(&es, ns, nn, sc->drop_repeats, &rp) != 0) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (repeated rows)");
        goto done;
    }
    cx->dropped = sc->drop_repeats ? rp.n : 0;
    if (rp.n > 0 && sc->drop_repeats) {
        const char *f1, *f0;
        uint64_t l1 = part_line(files, cx->part_base, n_files, rp.line, &f1);
        uint64_t l0 = part_line(files, cx->part_base, n_files, rp.first, &f0);
        RD_LOG_INFO("dropped %llu %s an earlier row exactly (data.schema."
                    "drop_repeats; the first %s:%llu, a repeat of %s:%llu): %llu events left",
                    (unsigned long long)rp.n, rp.n == 1 ? "row that repeats" : "rows that repeat",
                    f1, (unsigned long long)l1, f0, (unsigned long long)l0,
                    (unsigned long long)es.n);
    } else if (rp.n > 0) {
        const char *f1, *f0;
        uint64_t l1 = part_line(files, cx->part_base, n_files, rp.line, &f1);
        uint64_t l0 = part_line(files, cx->part_base, n_files, rp.first, &f0);
        RD_LOG_WARN("%s:%llu repeats %s:%llu exactly (every column), and %llu of the log's %llu "
                    "rows %s an earlier row: each is kept "
                    "as an event, but its user history then holds the copy before it, label "
                    "included, which a model reading the history (seq, seq.stats, tokens) learns "
                    "as the event's own label; if the export repeated them, set "
                    "data.schema.drop_repeats: true (or remove them from the log)",
                    f1, (unsigned long long)l1, f0, (unsigned long long)l0,
                    (unsigned long long)rp.n, (unsigned long long)es.n,
                    rp.n == 1 ? "repeats" : "repeat");
    }
    if (rp.n_twin > 0) {
        const char *f1, *f0;
        uint64_t l1 = part_line(files, cx->part_base, n_files, rp.twin_line, &f1);
        uint64_t l0 = part_line(files, cx->part_base, n_files, rp.twin_first, &f0);
        RD_LOG_WARN("%s:%llu is stored as the same event as %s:%llu (the same time, user, item, "
                    "label and fields: the rows differ only in columns the schema does not read, "
                    "or in label values of one class), and %llu of the log's %llu events %s "
                    "such a copy of an earlier row: each is kept as an event, but its user "
                    "history then holds the copy before it, label included, which a model "
                    "reading the history (seq, seq.stats, tokens) learns as the event's own "
                    "label; data.schema.drop_repeats removes only rows repeated in every "
                    "column: if these rows are one event logged twice (a retry under another "
                    "request id), keep one row per time, user and item in the log",
                    f1, (unsigned long long)l1, f0, (unsigned long long)l0,
                    (unsigned long long)rp.n_twin, (unsigned long long)es.n,
                    rp.n_twin == 1 ? "is" : "are");
    }

    // The counts of the rows, over the rows kept.
    if (es.tb && recount_kept(cx, &es, files, n_files) != 0) {
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory (repeated rows)");
        goto done;
    }
    tell_counts(cx, es.n, n_files);

    // 4. Build.
    FILE *ms = open_memstream(&yaml, &yaml_len);
    if (!ms) {
        rd_free(ukey);
        rd_free(ikey);
        rc = rd_err_set(eb, RD_ERR_NOMEM, "out of memory");
        goto done;
    }
    write_schema_yaml(ms, cx);
    // The files as read, so that a later run can tell that the folder went stale
    // (rd_dataset_check_config).
    fprintf(ms,
            "inputs:                   # size, modification time and CRC-32C of each file read\n");
    rc = rd__schema_each_input(dc, write_stamp, ms, eb);
    fclose(ms);
    if (rc != RD_OK) {
        rd_free(ukey);
        rd_free(ikey);
        goto done;
    }
    rc = rd__builder_create(dc, &cx->lay, seed, &b, eb);
    // The builder's messages about a record name its file and line: the lines of the events it
    // keeps (negative sampling drops some) move to the front of es.meta as they are added, over
    // entries already read (kept <= i), so no memory is added for them.
    line_where lw = {es.meta, 0, files, cx->part_base, n_files, cx, &o, log_latin1};
    if (rc == RD_OK)
        rd__builder_set_where(b, where_line, &lw);
    for (uint64_t i = 0; rc == RD_OK && i < es.n; i++) {
        const ev_meta *m = &es.meta[i];
        rd__event ev;
        ev.ts = floor_div(m->ts_ms, 1000);
        ev.user_key = ukey[m->urank];
        ev.item_key = ikey[m->irank];
        ev.label = es.label[m->idx] ? 1.0f : 0.0f;
        ev.sample = m->line;
        ev.keys = es.keys + m->idx * ns;
        ev.nums = es.nums + m->idx * nn;
        rc = rd__builder_add(b, &ev, eb);
        if (rc == RD_OK && rd__builder_count(b) > lw.n_kept) { // (m is copied first: kept <= i)
            const uint64_t idx = m->idx;
            es.meta[lw.n_kept].line = ev.sample;
            es.meta[lw.n_kept++].idx = idx;
        }
    }
    rd_free(ukey);
    rd_free(ikey);
    // The records keep only a hash of each id: the ids themselves, so that scores can be
    // joined to the log (rd_dataset_ids_load).
    ids_ctx ic = {&users, &items};
    if (rc == RD_OK)
        rc = rd__builder_write_file(b, RD_DATASET_IDS, write_ids, &ic, eb);
    // And the log line of each record: (user, item, time) is not one row of a log that repeats
    // an event in one second, or times in milliseconds cut to seconds.
    lines_ctx lc = {es.meta, lw.n_kept, files, cx->part_base, n_files, cx->log_lit};
    if (rc == RD_OK)
        rc = rd__builder_write_file(b, RD_DATASET_LINES, write_lines, &lc, eb);
    if (rc == RD_OK)
        rc = rd__builder_finish(b, yaml, eb);
done:
    rd_free(log_lr.buf);
    rd_free(log_lr.fields);
    rd__builder_destroy(b);
    rd_csv_close(r);
    if (cx->have_parts)
        globfree(&cx->parts);
    rd_free(cx->part_list);
    rd_free(cx->part_base);
    rd_free(es.meta);
    rd_free(es.keys);
    rd_free(es.nums);
    rd_free(es.label);
    rd_free(es.rowh);
    rd_free(es.tally);
    intern_free(&users);
    intern_free(&items);
    for (int s = 0; s < RD_MAX_SIDE; s++)
        side_free(&cx->side[s]);
    for (int i = 0; i < RD_MAX_FIELDS; i++) {
        rd__u64map_free(&cx->plan[i].spaced);
        rd_free(cx->plan[i].ex);
    }
    rd_free(cx->cols);
    rd_free(cx);
    free(yaml); // open_memstream's buffer comes from libc malloc
    return rc;
}
