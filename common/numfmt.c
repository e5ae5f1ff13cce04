// numfmt.c — a float as "%.9g" without printf, a double that reads back exactly, and a set of
// MPI ranks as text (rd/numfmt.h).
#include "rd/numfmt.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// 10^(i - 60), i = 0..120, each the double nearest the power (the compiler rounds the literals).
static const double pow10_tab[121] = {
    1e-60, 1e-59, 1e-58, 1e-57, 1e-56, 1e-55, 1e-54, 1e-53, 1e-52, 1e-51, 1e-50, 1e-49, 1e-48,
    1e-47, 1e-46, 1e-45, 1e-44, 1e-43, 1e-42, 1e-41, 1e-40, 1e-39, 1e-38, 1e-37, 1e-36, 1e-35,
    1e-34, 1e-33, 1e-32, 1e-31, 1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22,
    1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9,
    1e-8,  1e-7,  1e-6,  1e-5,  1e-4,  1e-3,  1e-2,  1e-1,  1e0,   1e1,   1e2,   1e3,   1e4,
    1e5,   1e6,   1e7,   1e8,   1e9,   1e10,  1e11,  1e12,  1e13,  1e14,  1e15,  1e16,  1e17,
    1e18,  1e19,  1e20,  1e21,  1e22,  1e23,  1e24,  1e25,  1e26,  1e27,  1e28,  1e29,  1e30,
    1e31,  1e32,  1e33,  1e34,  1e35,  1e36,  1e37,  1e38,  1e39,  1e40,  1e41,  1e42,  1e43,
    1e44,  1e45,  1e46,  1e47,  1e48,  1e49,  1e50,  1e51,  1e52,  1e53,  1e54,  1e55,  1e56,
    1e57,  1e58,  1e59,  1e60};

static double pow10_of(int k) {
    return pow10_tab[k + 60];
}

size_t rd_fmt_double(double x, char out[RD_FMT_DOUBLE_MAX]) {
    int n = 0;
    // 17 significant digits always read back (IEEE binary64); fewer are kept when they do, so
    // that a value such as 0.25 or 20000 is not written as 0.25000000000000000.
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, RD_FMT_DOUBLE_MAX, "%.*g", prec, x);
        if (!isfinite(x) || strtod(out, NULL) == x)
            break;
    }
    return n > 0 ? (size_t)n : 0;
}

size_t rd_fmt_float9_naive(float x, char out[RD_FMT_FLOAT_MAX]) {
    int n = snprintf(out, RD_FMT_FLOAT_MAX, "%.9g", (double)x);
    return n > 0 ? (size_t)n : 0;
}

// d (> 0, a float's value) scaled to 9 digits: d * 10^k rounded to an integer in *m.
// @return 0, or -1 when the scaled value is too near a half for the double rounding to be sure.
static int scaled(double d, int k, double *m) {
    double v = k >= 0 ? d * pow10_of(k) : d / pow10_of(-k);
    double fr = v - floor(v);
    if (fabs(fr - 0.5) < 1e-6)
        return -1;
    *m = rint(v);
    return 0;
}

size_t rd_fmt_float9(float x, char out[RD_FMT_FLOAT_MAX]) {
    if (!isfinite(x))
        return rd_fmt_float9_naive(x, out);
    char *p = out;
    double d = (double)x;
    if (signbit(x)) {
        *p++ = '-';
        d = -d;
    }
    if (d == 0.0) {
        *p++ = '0';
        *p = 0;
        return (size_t)(p - out);
    }
    // e = floor(log10(d)): from the binary exponent, then one comparison (d in [2^(b-1), 2^b)
    // spans less than one decade). Floats lie in [1.4e-45, 3.4e38]: e in -46..38.
    int b;
    (void)frexp(d, &b);
    int e = (int)floor((double)(b - 1) * 0.30102999566398120);
    if (d >= pow10_of(e + 1))
        e++;
    double m;
    if (scaled(d, 8 - e, &m) != 0)
        return rd_fmt_float9_naive(x, out);
    if (m >= 1e9) { // 9.999999995e(e) rounds up to the next decade
        m = 1e8;
        e++;
    }
    char dg[9];
    uint32_t u = (uint32_t)m;
    for (int i = 8; i >= 0; i--) {
        dg[i] = (char)('0' + u % 10);
        u /= 10;
    }
    int nd = 9; // significant digits kept: trailing zeros dropped, as %g does
    while (nd > 1 && dg[nd - 1] == '0')
        nd--;
    if (e < -4 || e >= 9) { // d.ddde+XX (at least two exponent digits)
        *p++ = dg[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, dg + 1, (size_t)nd - 1);
            p += nd - 1;
        }
        *p++ = 'e';
        int ee = e;
        *p++ = ee < 0 ? '-' : '+';
        ee = ee < 0 ? -ee : ee;
        *p++ = (char)('0' + ee / 10);
        *p++ = (char)('0' + ee % 10);
    } else if (e >= 0) { // ddd.ddd
        memcpy(p, dg, (size_t)e + 1);
        p += e + 1;
        if (nd > e + 1) {
            *p++ = '.';
            memcpy(p, dg + e + 1, (size_t)(nd - e - 1));
            p += nd - e - 1;
        }
    } else { // 0.000ddd
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < -e - 1; i++)
            *p++ = '0';
        memcpy(p, dg, (size_t)nd);
        p += nd;
    }
    *p = 0;
    return (size_t)(p - out);
}

// ---------------------------------------------------------------------------------------------
// A set of ranks

void rd_fmt_append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (w > 0)
        *len = (size_t)w < cap - *len ? *len + (size_t)w : cap - 1;
}

// A list of entries, ", "-separated, appended to buf: each entry is written whole or not at all,
// and once one does not fit, the rest are counted as ", ... (N more)" (units: ranks, or
// segments). Each entry written keeps room for the count of those after it and for `reserve`
// bytes that follow the list, so the count always fits where the list stops.
typedef struct list_out {
    char *buf;
    size_t cap, len;
    size_t reserve; // bytes kept for what follows the list
    int total;      // units in the list
    int done;       // units written
    int n;          // entries written
    int cut;        // an entry did not fit: the rest are counted
} list_out;

static void list_add(list_out *l, int units, const char *text) {
    if (l->cut)
        return;
    const int left = l->total - l->done - units; // units after this entry
    char more[48];
    size_t after = left > 0 ? (size_t)snprintf(more, sizeof more, ", ... (%d more)", left) : 0;
    if (l->len + (l->n ? 2 : 0) + strlen(text) + after + l->reserve >= l->cap) {
        l->cut = 1;
        return;
    }
    rd_fmt_append(l->buf, l->cap, &l->len, "%s%s", l->n ? ", " : "", text);
    l->done += units;
    l->n++;
}

static void list_end(list_out *l) {
    if (l->cut)
        rd_fmt_append(l->buf, l->cap, &l->len, "%s... (%d more)", l->n ? ", " : "",
                      l->total - l->done);
}

// The smallest segment above `last` among the ranks of sel, or -1.
static int next_segment(const char *sel, const int32_t *appnum, int n, int last) {
    int next = -1;
    for (int r = 0; r < n; r++)
        if (sel[r] && appnum[r] > last && (next < 0 || appnum[r] < next))
            next = appnum[r];
    return next;
}

void rd_fmt_rank_set(const char *sel, const int32_t *appnum, int n, char *buf, size_t cap) {
    buf[0] = 0;
    int cnt = 0;
    for (int r = 0; r < n; r++)
        cnt += sel[r] != 0;
    // 1. The segments, ascending (appnum is small), into their own buffer: the ranks' list
    //    keeps room for them, so they always end the text.
    char seg[192];
    seg[0] = 0;
    size_t seg_len = 0;
    if (appnum) {
        int nseg = 0;
        for (int last = -1, a = 0; a <= n && (last = next_segment(sel, appnum, n, last)) >= 0; a++)
            nseg++;
        size_t seg_cap = cap / 3 < sizeof seg ? cap / 3 : sizeof seg;
        if (nseg > 0 && seg_cap > 0)
            rd_fmt_append(seg, seg_cap, &seg_len, " (mpiexec segment%s ", nseg > 1 ? "s" : "");
        // The words, the count alone and ")" must fit, or the suffix is left out: cut there, it
        // read " (mpiexec segmen" or "... (8 mo", the parenthesis left open.
        if (nseg > 0 && seg_len + (size_t)snprintf(NULL, 0, "... (%d more)", nseg) + 1 >= seg_cap) {
            seg[0] = 0;
            seg_len = 0;
        } else if (nseg > 0) {
            list_out l = {seg, seg_cap, seg_len, 1, nseg, 0, 0, 0};
            for (int last = -1, a = 0; a <= n && (last = next_segment(sel, appnum, n, last)) >= 0;
                 a++) {
                char e[16];
                snprintf(e, sizeof e, "%d", last + 1);
                list_add(&l, 1, e);
            }
            list_end(&l);
            seg_len = l.len;
            rd_fmt_append(seg, seg_cap, &seg_len, ")");
        }
    }
    // 2. The ranks: runs of three or more as a range, one entry; a pair as two.
    size_t len = 0;
    rd_fmt_append(buf, cap, &len, "rank%s ", cnt == 1 ? "" : "s");
    // Room for the count alone and the suffix, or the suffix is left out (the ranks come first).
    if (cnt > 0 && len + (size_t)snprintf(NULL, 0, "... (%d more)", cnt) + seg_len >= cap) {
        seg[0] = 0;
        seg_len = 0;
    }
    list_out l = {buf, cap, len, seg_len, cnt, 0, 0, 0};
    for (int r = 0; r < n; r++) {
        if (!sel[r])
            continue;
        int e = r;
        while (e + 1 < n && sel[e + 1])
            e++;
        char t[32];
        if (e >= r + 2) {
            snprintf(t, sizeof t, "%d-%d", r, e);
            list_add(&l, e - r + 1, t);
        } else {
            for (int q = r; q <= e; q++) {
                snprintf(t, sizeof t, "%d", q);
                list_add(&l, 1, t);
            }
        }
        r = e;
    }
    list_end(&l);
    len = l.len;
    rd_fmt_append(buf, cap, &len, "%s", seg);
}
