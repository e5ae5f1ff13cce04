// plot.c — line plots rendered into an RGB raster with a built-in 5x8 font, and a small PNG
// encoder (rd/plot.h).
//
// Rendering: the plot area is the figure minus margins for the title, tick labels and axis
// labels; data ranges come from the finite points (plus 4% padding) unless fixed; ticks are
// "nice" steps (1, 2, 5 x 10^k) on linear axes — never below 1 on an axis whose data are all
// whole numbers — and powers of 2 (or 10 when the range spans more than 2^12) on log axes. Lines
// are 2 pixels wide (Bresenham, clipped to the plot area), drawn after the grid and before the
// legend. Nothing here allocates except the PNG buffers.
//
// PNG (RFC 2083 / ISO 15948): signature, IHDR, one IDAT, IEND; each chunk carries a CRC-32
// (IEEE polynomial, reflected) over its type and data. IDAT holds a zlib stream (RFC 1950:
// 0x78 0x01 header, deflate data, Adler-32 of the raw bytes, big-endian). The raw bytes are each
// row prefixed by filter type 0. Deflate (RFC 1951) is either stored blocks of <= 65535 bytes or
// one fixed-Huffman block whose matches are limited to three candidates — the previous byte, the
// previous pixel (distance 3) and the byte one row above — which is what flat-colour plots repeat.
#include "rd/plot.h"

#include "rd/alloc.h"
#include "rd/lmdbx.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Font: glyphs of ASCII 32..126, 8 rows of 5 bits (bit 4 = leftmost column): capitals and
// digits in rows 0..6, lowercase x-height in rows 2..6 with descenders in row 7. Drawn for this
// project.

#define GLYPH_W 5
#define GLYPH_H 8
#define ADVANCE 6 // glyph width + 1 column of spacing

static const uint8_t font5x8[95][8] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, // ' '
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00}, // '!'
    {0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, // '"'
    {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a, 0x00}, // '#'
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04, 0x00}, // '$'
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00}, // '%'
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d, 0x00}, // '&'
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00}, // '''
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00}, // '('
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00}, // ')'
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00, 0x00}, // '*'
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00, 0x00}, // '+'
    {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08, 0x00}, // ','
    {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00}, // '-'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x00}, // '.'
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00}, // '/'
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e, 0x00}, // '0'
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00}, // '1'
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f, 0x00}, // '2'
    {0x1e, 0x01, 0x01, 0x0e, 0x01, 0x01, 0x1e, 0x00}, // '3'
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02, 0x00}, // '4'
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e, 0x00}, // '5'
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e, 0x00}, // '6'
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00}, // '7'
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e, 0x00}, // '8'
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c, 0x00}, // '9'
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00, 0x00}, // ':'
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08, 0x00}, // ';'
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00}, // '<'
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00, 0x00}, // '='
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00}, // '>'
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00}, // '?'
    {0x0e, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0e, 0x00}, // '@'
    {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00}, // 'A'
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e, 0x00}, // 'B'
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e, 0x00}, // 'C'
    {0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e, 0x00}, // 'D'
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f, 0x00}, // 'E'
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10, 0x00}, // 'F'
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f, 0x00}, // 'G'
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00}, // 'H'
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00}, // 'I'
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c, 0x00}, // 'J'
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00}, // 'K'
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f, 0x00}, // 'L'
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00}, // 'M'
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00}, // 'N'
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00}, // 'O'
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10, 0x00}, // 'P'
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d, 0x00}, // 'Q'
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11, 0x00}, // 'R'
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e, 0x00}, // 'S'
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, // 'T'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00}, // 'U'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00}, // 'V'
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a, 0x00}, // 'W'
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11, 0x00}, // 'X'
    {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04, 0x00}, // 'Y'
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f, 0x00}, // 'Z'
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e, 0x00}, // '['
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00}, // backslash
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e, 0x00}, // ']'
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00}, // '^'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x00}, // '_'
    {0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, // '`'
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f, 0x00}, // 'a'
    {0x10, 0x10, 0x1e, 0x11, 0x11, 0x11, 0x1e, 0x00}, // 'b'
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e, 0x00}, // 'c'
    {0x01, 0x01, 0x0f, 0x11, 0x11, 0x11, 0x0f, 0x00}, // 'd'
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e, 0x00}, // 'e'
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08, 0x00}, // 'f'
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e}, // 'g'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, // 'h'
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e, 0x00}, // 'i'
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0c}, // 'j'
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00}, // 'k'
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00}, // 'l'
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x15, 0x15, 0x00}, // 'm'
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, // 'n'
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e, 0x00}, // 'o'
    {0x00, 0x00, 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10}, // 'p'
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x01}, // 'q'
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00}, // 'r'
    {0x00, 0x00, 0x0f, 0x10, 0x0e, 0x01, 0x1e, 0x00}, // 's'
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06, 0x00}, // 't'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0x00}, // 'u'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00}, // 'v'
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a, 0x00}, // 'w'
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x00}, // 'x'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}, // 'y'
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f, 0x00}, // 'z'
    {0x03, 0x04, 0x04, 0x08, 0x04, 0x04, 0x03, 0x00}, // '{'
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, // '|'
    {0x18, 0x04, 0x04, 0x02, 0x04, 0x04, 0x18, 0x00}, // '}'
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00}, // '~'
};

static const uint32_t palette[RD_PLOT_MAX_SERIES] = {
    0xd62728, // red
    0x1f77b4, // blue
    0x2ca02c, // green
    0xff7f0e, // orange
    0x9467bd, // purple
    0x8c564b, // brown
    0x17becf, // cyan
    0x7f7f7f, // grey
};

// ---------------------------------------------------------------------------------------------
// Raster helpers

typedef struct canvas {
    uint8_t *rgb;
    int w, h;
    int cx0, cy0, cx1, cy1; // clip rectangle, inclusive
} canvas;

static void put(canvas *c, int x, int y, uint32_t col) {
    if (x < c->cx0 || x > c->cx1 || y < c->cy0 || y > c->cy1)
        return;
    uint8_t *p = c->rgb + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = (uint8_t)(col >> 16);
    p[1] = (uint8_t)(col >> 8);
    p[2] = (uint8_t)col;
}

static void fill_rect(canvas *c, int x0, int y0, int x1, int y1, uint32_t col) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            put(c, x, y, col);
}

static void hline(canvas *c, int x0, int x1, int y, uint32_t col) {
    fill_rect(c, x0 < x1 ? x0 : x1, y, x0 < x1 ? x1 : x0, y, col);
}

static void vline(canvas *c, int x, int y0, int y1, uint32_t col) {
    fill_rect(c, x, y0 < y1 ? y0 : y1, x, y0 < y1 ? y1 : y0, col);
}

// A 2-pixel-wide segment (Bresenham, each step stamps a 2x2 pen).
static void line2(canvas *c, int x0, int y0, int x1, int y1, uint32_t col) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        fill_rect(c, x0, y0, x0 + 1, y0 + 1, col);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

static const uint8_t *glyph(char ch) {
    unsigned u = (unsigned char)ch;
    if (u < 32 || u > 126)
        u = '?';
    return font5x8[u - 32];
}

static int text_width(const char *s, int scale) {
    size_t n = strlen(s);
    return n ? (int)n * ADVANCE * scale - scale : 0;
}

// s into out (cap bytes, at least 8) whole when it fits, else as its head, "..." and its tail,
// cap - 1 bytes in all: the end of a label (a seed, a variant after a common path) tells series
// apart as often as its start. A cut that kept the head only (64 bytes) drew two run folders of
// one long prefix as two identical legend lines.
static void fit_middle(char *out, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n < cap) {
        memcpy(out, s, n + 1);
        return;
    }
    size_t keep = cap - 1 - 3, head = (keep + 1) / 2, tail = keep - head;
    memcpy(out, s, head);
    memcpy(out + head, "...", 3);
    memcpy(out + head + 3, s + n - tail, tail + 1);
}

// Horizontal text with its top-left corner at (x, y).
static void text(canvas *c, int x, int y, const char *s, int scale, uint32_t col) {
    for (; *s; s++, x += ADVANCE * scale) {
        const uint8_t *g = glyph(*s);
        for (int r = 0; r < GLYPH_H; r++)
            for (int k = 0; k < GLYPH_W; k++)
                if (g[r] & (1u << (GLYPH_W - 1 - k)))
                    fill_rect(c, x + k * scale, y + r * scale, x + k * scale + scale - 1,
                              y + r * scale + scale - 1, col);
    }
}

// Text rotated 90 degrees counter-clockwise (reads bottom to top), its baseline column at x and
// its first character's bottom at y.
static void text_up(canvas *c, int x, int y, const char *s, uint32_t col) {
    for (; *s; s++, y -= ADVANCE) {
        const uint8_t *g = glyph(*s);
        for (int r = 0; r < GLYPH_H; r++)
            for (int k = 0; k < GLYPH_W; k++)
                if (g[r] & (1u << (GLYPH_W - 1 - k)))
                    put(c, x + r, y - k, col);
    }
}

// ---------------------------------------------------------------------------------------------
// Axes

static int valid(double v, int log_axis) {
    return isfinite(v) && (!log_axis || v > 0);
}

static double tr(double v, int log_axis) {
    return log_axis ? log2(v) : v;
}

// Range of one axis in transformed units: from the data (plus padding), with either bound
// replaced by a fixed one when given (not NaN).
static int axis_range(const rd_plot *p, int is_x, double *lo, double *hi, rd_errbuf *eb) {
    const int lg = is_x ? p->log_x : p->log_y;
    double fmin = is_x ? p->xmin : p->ymin, fmax = is_x ? p->xmax : p->ymax;
    const char *name = is_x ? "x" : "y";
    if ((!isnan(fmin) && !valid(fmin, lg)) || (!isnan(fmax) && !valid(fmax, lg)) ||
        (!isnan(fmin) && !isnan(fmax) && !(fmin < fmax)))
        return rd_err_set(eb, RD_ERR_ARG,
                          "plot%s%s%s: fixed %s range [%g, %g] must be finite, min < max%s",
                          p->title[0] ? " '" : "", p->title, p->title[0] ? "'" : "", name, fmin,
                          fmax, lg ? " and positive (log axis)" : "");
    double mn = (double)INFINITY, mx = -(double)INFINITY;
    for (int s = 0; s < p->n_series; s++) {
        const rd_plot_series *se = &p->series[s];
        for (size_t i = 0; i < se->n; i++) {
            if (!valid(se->x[i], p->log_x) || !valid(se->y[i], p->log_y))
                continue;
            double v = tr(is_x ? se->x[i] : se->y[i], lg);
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    }
    if (!(mn <= mx)) { // no valid point
        mn = 0;
        mx = 1;
    } else if (mn == mx) {
        double d = fabs(mn) > 0 ? fabs(mn) * 0.1 : 1.0;
        mn -= d;
        mx += d;
    }
    double pad = 0.04 * (mx - mn);
    *lo = isnan(fmin) ? mn - pad : tr(fmin, lg);
    *hi = isnan(fmax) ? mx + pad : tr(fmax, lg);
    if (!(*lo < *hi)) { // one fixed bound beyond all the data: a unit-wide range from it
        if (isnan(fmax))
            *hi = *lo + 1.0;
        else
            *lo = *hi - 1.0;
    }
    // Values near the ends of the double range (|v| ~ 1e308): their span, or the padding around
    // it, overflows, and the axis would get no ticks and no line (a blank plot, exit 0).
    if (!isfinite(*lo) || !isfinite(*hi) || !isfinite(*hi - *lo) || !(*lo < *hi))
        return rd_err_set(eb, RD_ERR_ARG,
                          "plot%s%s%s: the %s values (%g .. %g) span more than a double holds; "
                          "rescale the column",
                          p->title[0] ? " '" : "", p->title, p->title[0] ? "'" : "", name,
                          lg ? exp2(mn) : mn, lg ? exp2(mx) : mx);
    return RD_OK;
}

static double nice_step(double span, int target) {
    double raw = span / (double)target;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

// 1 when every valid point has an integral value on this axis (stream windows, steps, ranks):
// such an axis gets no fractional ticks. A log axis keeps its powers.
static int axis_integral(const rd_plot *p, int is_x) {
    if (is_x ? p->log_x : p->log_y)
        return 0;
    int any = 0;
    for (int s = 0; s < p->n_series; s++) {
        const rd_plot_series *se = &p->series[s];
        for (size_t i = 0; i < se->n; i++) {
            if (!valid(se->x[i], p->log_x) || !valid(se->y[i], p->log_y))
                continue;
            double v = is_x ? se->x[i] : se->y[i];
            if (v != floor(v))
                return 0;
            any = 1;
        }
    }
    return any;
}

// Tick values (in data units) of an axis with transformed range [lo, hi]; returns the count.
// integral: the data are whole numbers, so the step is at least 1 (window 0, 1, 2 rather than
// 0, 0.2, 0.4 ...) unless that leaves fewer than two ticks in the range (a fixed narrow range).
static int
ticks(double lo, double hi, int log_axis, int integral, int target, double *out, int cap) {
    int n = 0;
    if (log_axis) {
        double base = hi - lo > 12 ? log2(10.0) : 1.0; // in log2 units
        for (double e = ceil(lo / base); e * base <= hi + 1e-9 && n < cap; e++)
            out[n++] = pow(2.0, e * base);
        if (n >= 2)
            return n;
        n = 0; // less than one power inside: fall back to linear ticks of the data values
        lo = pow(2.0, lo);
        hi = pow(2.0, hi);
    }
    double st = nice_step(hi - lo, target);
    if (integral && st < 1 && floor(hi) - ceil(lo) >= 1)
        st = 1;
    for (double v = ceil(lo / st) * st; v <= hi + st * 1e-9 && n < cap; v += st)
        out[n++] = fabs(v) < st * 1e-9 ? 0.0 : v;
    return n;
}

static void fmt_tick(char *buf, size_t cap, double v) {
    double a = fabs(v);
    if (a != 0 && (a >= 1e6 || a < 1e-3))
        snprintf(buf, cap, "%.2g", v);
    else
        snprintf(buf, cap, "%.4g", v);
}

// ---------------------------------------------------------------------------------------------
// Public: plot

void rd_plot_init(rd_plot *p) {
    memset(p, 0, sizeof *p);
    p->width = 800;
    p->height = 500;
    p->xmin = p->xmax = p->ymin = p->ymax = (double)NAN;
    p->compress = 1;
}

int rd_plot_add(rd_plot *p, const char *label, const double *x, const double *y, size_t n) {
    if (p->n_series >= RD_PLOT_MAX_SERIES)
        return RD_ERR_FULL;
    if (n > 0 && (!x || !y))
        return RD_ERR_ARG;
    rd_plot_series *s = &p->series[p->n_series++];
    memset(s, 0, sizeof *s);
    fit_middle(s->label, sizeof s->label, label ? label : "");
    s->x = x;
    s->y = y;
    s->n = n;
    s->markers = 1;
    return RD_OK;
}

int rd_plot_map(const rd_plot *p, double x, double y, int *px, int *py) {
    if (!isfinite(x) || !isfinite(y) || (p->log_x && x <= 0) || (p->log_y && y <= 0))
        return 0;
    double tx = tr(x, p->log_x), ty = tr(y, p->log_y);
    double fx = (tx - p->lo_x) / (p->hi_x - p->lo_x), fy = (ty - p->lo_y) / (p->hi_y - p->lo_y);
    double X = p->area_x0 + fx * (p->area_x1 - p->area_x0);
    double Y = p->area_y1 - fy * (p->area_y1 - p->area_y0);
    if (!(fabs(X) < 1e9 && fabs(Y) < 1e9))
        return 0;
    *px = (int)lround(X);
    *py = (int)lround(Y);
    return *px >= p->area_x0 && *px <= p->area_x1 && *py >= p->area_y0 && *py <= p->area_y1;
}

int rd_plot_render(rd_plot *p, uint8_t *rgb, rd_errbuf *eb) {
    if (p->width < 160 || p->height < 120 || p->width > RD_PLOT_MAX_SIDE ||
        p->height > RD_PLOT_MAX_SIDE)
        return rd_err_set(eb, RD_ERR_ARG, "plot '%s': size %d x %d outside 160x120 .. %dx%d",
                          p->title, p->width, p->height, RD_PLOT_MAX_SIDE, RD_PLOT_MAX_SIDE);
    int rc;
    if ((rc = axis_range(p, 1, &p->lo_x, &p->hi_x, eb)) != RD_OK ||
        (rc = axis_range(p, 0, &p->lo_y, &p->hi_y, eb)) != RD_OK)
        return rc;
    canvas c = {rgb, p->width, p->height, 0, 0, p->width - 1, p->height - 1};
    memset(rgb, 0xff, (size_t)p->width * (size_t)p->height * 3);

    // 1. Layout: the y tick labels decide the left margin.
    double yt[64], xt[64];
    int nyt = ticks(p->lo_y, p->hi_y, p->log_y, axis_integral(p, 0), 6, yt, 64);
    int nxt = ticks(p->lo_x, p->hi_x, p->log_x, axis_integral(p, 1), 8, xt, 64);
    int lw = 0;
    char buf[64];
    for (int i = 0; i < nyt; i++) {
        fmt_tick(buf, sizeof buf, yt[i]);
        int w = text_width(buf, 1);
        lw = w > lw ? w : lw;
    }
    p->area_x0 = 8 + (p->ylabel[0] ? 12 : 0) + lw + 6;
    p->area_x1 = p->width - 16;
    p->area_y0 = p->title[0] ? 34 : 12;
    p->area_y1 = p->height - 20 - (p->xlabel[0] ? 14 : 0);
    const uint32_t ink = 0x202020, grid = 0xe4e4e4;

    // 2. Grid, ticks and tick labels.
    int px, py;
    for (int i = 0; i < nxt; i++) {
        rd_plot_map(p, xt[i], p->log_y ? pow(2.0, p->lo_y) : p->lo_y, &px, &py);
        if (px < p->area_x0 || px > p->area_x1)
            continue;
        vline(&c, px, p->area_y0, p->area_y1, grid);
        vline(&c, px, p->area_y1, p->area_y1 + 4, ink);
        fmt_tick(buf, sizeof buf, xt[i]);
        text(&c, px - text_width(buf, 1) / 2, p->area_y1 + 7, buf, 1, ink);
    }
    for (int i = 0; i < nyt; i++) {
        rd_plot_map(p, p->log_x ? pow(2.0, p->lo_x) : p->lo_x, yt[i], &px, &py);
        if (py < p->area_y0 || py > p->area_y1)
            continue;
        hline(&c, p->area_x0, p->area_x1, py, grid);
        hline(&c, p->area_x0 - 4, p->area_x0, py, ink);
        fmt_tick(buf, sizeof buf, yt[i]);
        text(&c, p->area_x0 - 6 - text_width(buf, 1), py - 3, buf, 1, ink);
    }
    // Frame.
    hline(&c, p->area_x0, p->area_x1, p->area_y0, ink);
    hline(&c, p->area_x0, p->area_x1, p->area_y1, ink);
    vline(&c, p->area_x0, p->area_y0, p->area_y1, ink);
    vline(&c, p->area_x1, p->area_y0, p->area_y1, ink);

    // 3. Title and axis labels.
    if (p->title[0])
        text(&c, (p->width - text_width(p->title, 2)) / 2, 10, p->title, 2, ink);
    if (p->xlabel[0])
        text(&c, (p->area_x0 + p->area_x1 - text_width(p->xlabel, 1)) / 2, p->height - 16,
             p->xlabel, 1, ink);
    if (p->ylabel[0])
        text_up(&c, 6, (p->area_y0 + p->area_y1 + text_width(p->ylabel, 1)) / 2, p->ylabel, ink);

    // 4. Series, clipped to the inside of the frame. An invalid point breaks the line.
    canvas in = {rgb,           p->width, p->height, p->area_x0 + 1, p->area_y0 + 1, p->area_x1 - 1,
                 p->area_y1 - 1};
    for (int s = 0; s < p->n_series; s++) {
        const rd_plot_series *se = &p->series[s];
        uint32_t col = se->rgb ? se->rgb : palette[s % RD_PLOT_MAX_SERIES];
        int have = 0, lx = 0, ly = 0;
        for (size_t i = 0; i < se->n; i++) {
            int x, y;
            if (!valid(se->x[i], p->log_x) || !valid(se->y[i], p->log_y)) {
                have = 0;
                continue;
            }
            rd_plot_map(p, se->x[i], se->y[i], &x, &y);
            if (have)
                line2(&in, lx, ly, x, y, col);
            if (se->markers)
                fill_rect(&in, x - 2, y - 2, x + 2, y + 2, col);
            have = 1;
            lx = x;
            ly = y;
        }
    }

    // 5. Legend: a box with a line sample and the label per series, in the corner of the plot
    //    area where it hides the fewest series pixels (top left on ties).
    //    A label wider than the area leaves room for is drawn shortened in the middle (fit_middle):
    //    a box wider than the area was placed at its left and cut by its frame, long labels
    //    losing their ends.
    if (p->n_series > 0) {
        char shown[RD_PLOT_MAX_SERIES][RD_PLOT_LABEL_MAX];
        // The characters a label may have: the area less the box's margins, its line sample and
        // its gaps (8 + 20 + 6 + 8 pixels) and 8 pixels on each side; at least 7 ("ab...yz").
        int room = (p->area_x1 - p->area_x0 - 16 - 42 + 1) / ADVANCE;
        size_t cap = RD_PLOT_LABEL_MAX;
        if (room + 1 < RD_PLOT_LABEL_MAX)
            cap = room < 7 ? 8 : (size_t)room + 1;
        int tw = 0;
        for (int s = 0; s < p->n_series; s++) {
            fit_middle(shown[s], cap, p->series[s].label);
            int w = text_width(shown[s], 1);
            tw = w > tw ? w : tw;
        }
        const int bw = 8 + 20 + 6 + tw + 8, bh = 6 + 12 * p->n_series;
        int x0 = p->area_x0 + 8, y0 = p->area_y0 + 8;
        long best = -1;
        for (int corner = 0; corner < 4; corner++) {
            int cx = corner & 1 ? p->area_x1 - 8 - bw : p->area_x0 + 8;
            int cy = corner & 2 ? p->area_y1 - 8 - bh : p->area_y0 + 8;
            if (cx < p->area_x0 || cy < p->area_y0)
                continue;
            long hidden = 0;
            for (int y = cy; y <= cy + bh && y < p->height; y++)
                for (int x = cx; x <= cx + bw && x < p->width; x++) {
                    const uint8_t *q = rgb + ((size_t)y * (size_t)p->width + (size_t)x) * 3;
                    uint32_t v = (uint32_t)q[0] << 16 | (uint32_t)q[1] << 8 | q[2];
                    hidden += v != 0xffffffu && v != grid && v != ink;
                }
            if (best < 0 || hidden < best) {
                best = hidden;
                x0 = cx;
                y0 = cy;
            }
        }
        int x1 = x0 + bw, y1 = y0 + bh;
        fill_rect(&in, x0, y0, x1, y1, 0xffffff);
        hline(&in, x0, x1, y0, ink);
        hline(&in, x0, x1, y1, ink);
        vline(&in, x0, y0, y1, ink);
        vline(&in, x1, y0, y1, ink);
        for (int s = 0; s < p->n_series; s++) {
            const rd_plot_series *se = &p->series[s];
            uint32_t col = se->rgb ? se->rgb : palette[s % RD_PLOT_MAX_SERIES];
            int ly = y0 + 6 + 12 * s + 3;
            fill_rect(&in, x0 + 8, ly, x0 + 28, ly + 1, col);
            text(&in, x0 + 34, ly - 3, shown[s], 1, ink);
        }
    }
    return RD_OK;
}

int rd_plot_write_png(rd_plot *p, const char *path, rd_errbuf *eb) {
    if (p->width < 160 || p->height < 120 || p->width > RD_PLOT_MAX_SIDE ||
        p->height > RD_PLOT_MAX_SIDE)
        return rd_err_set(eb, RD_ERR_ARG, "plot '%s': size %d x %d outside 160x120 .. %dx%d",
                          p->title, p->width, p->height, RD_PLOT_MAX_SIDE, RD_PLOT_MAX_SIDE);
    uint8_t *rgb = rd_malloc((size_t)p->width * (size_t)p->height * 3);
    if (!rgb)
        return rd_err_set(eb, RD_ERR_NOMEM, "plot %s: no memory for a %dx%d raster", path, p->width,
                          p->height);
    int rc = rd_plot_render(p, rgb, eb);
    if (rc == RD_OK)
        rc = rd_png_write(path, rgb, p->width, p->height, p->compress, eb);
    rd_free(rgb);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// PNG encoder

// CRC-32 (IEEE 802.3, reflected polynomial 0xedb88320), one bit at a time: chunks are small
// next to rendering, and a table would be a mutable global or 256 constants.
static uint32_t png_crc(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 1u) ? 0xedb88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

static uint32_t adler32(const uint8_t *p, size_t n) {
    uint32_t a = 1, b = 0;
    while (n > 0) {
        size_t k = n < 5552 ? n : 5552; // largest run without overflow before the modulo
        n -= k;
        while (k--) {
            a += *p++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

typedef struct obuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
    uint64_t bits; // pending bits, LSB first
    int nbits;
} obuf;

static void ob_need(obuf *o, size_t n) {
    if (o->oom || o->len + n <= o->cap)
        return;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n)
        cap *= 2;
    uint8_t *q = rd_realloc(o->p, cap);
    if (!q) {
        o->oom = 1;
        return;
    }
    o->p = q;
    o->cap = cap;
}

static void ob_bytes(obuf *o, const void *src, size_t n) {
    if (n == 0) // IEND has no data (src NULL): memcpy must not see a null pointer
        return;
    ob_need(o, n);
    if (o->oom)
        return;
    memcpy(o->p + o->len, src, n);
    o->len += n;
}

static void ob_u32be(obuf *o, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    ob_bytes(o, b, 4);
}

// Deflate bit writer: `n` bits of v, least significant first.
static void ob_bits(obuf *o, uint32_t v, int n) {
    o->bits |= (uint64_t)v << o->nbits;
    o->nbits += n;
    while (o->nbits >= 8) {
        uint8_t b = (uint8_t)o->bits;
        ob_bytes(o, &b, 1);
        o->bits >>= 8;
        o->nbits -= 8;
    }
}

static void ob_flush_bits(obuf *o) {
    if (o->nbits > 0)
        ob_bits(o, 0, 8 - o->nbits);
}

// A Huffman code of `len` bits, sent most significant bit first (RFC 1951 3.1.1).
static void ob_code(obuf *o, uint32_t code, int len) {
    uint32_t r = 0;
    for (int i = 0; i < len; i++)
        r |= ((code >> i) & 1u) << (len - 1 - i);
    ob_bits(o, r, len);
}

// Fixed literal/length code of symbol sym (0..287).
static void fixed_sym(obuf *o, int sym) {
    if (sym < 144)
        ob_code(o, 0x30u + (uint32_t)sym, 8);
    else if (sym < 256)
        ob_code(o, 0x190u + (uint32_t)(sym - 144), 9);
    else if (sym < 280)
        ob_code(o, (uint32_t)(sym - 256), 7);
    else
        ob_code(o, 0xc0u + (uint32_t)(sym - 280), 8);
}

static const uint16_t len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static void emit_match(obuf *o, int len, int dist) {
    int i = 28;
    while (len_base[i] > len)
        i--;
    fixed_sym(o, 257 + i);
    ob_bits(o, (uint32_t)(len - len_base[i]), len_extra[i]);
    int d = 29;
    while (dist_base[d] > dist)
        d--;
    ob_code(o, (uint32_t)d, 5);
    ob_bits(o, (uint32_t)(dist - dist_base[d]), dist_extra[d]);
}

static void deflate_stored(obuf *o, const uint8_t *raw, size_t n) {
    size_t off = 0;
    do {
        size_t k = n - off < 65535 ? n - off : 65535;
        uint8_t h[5] = {(uint8_t)(off + k == n), (uint8_t)k, (uint8_t)(k >> 8), (uint8_t)~k,
                        (uint8_t)(~k >> 8)};
        ob_bytes(o, h, 5);
        ob_bytes(o, raw + off, k);
        off += k;
    } while (off < n);
}

static void deflate_fixed(obuf *o, const uint8_t *raw, size_t n, size_t stride) {
    ob_bits(o, 1, 1); // BFINAL
    ob_bits(o, 1, 2); // BTYPE 01: fixed Huffman
    const size_t cand[3] = {1, 3, stride};
    size_t i = 0;
    while (i < n) {
        int best = 0, bdist = 0;
        for (int k = 0; k < 3; k++) {
            size_t d = cand[k];
            if (d == 0 || d > i || d > 32768)
                continue;
            size_t m = 0, lim = n - i < 258 ? n - i : 258;
            while (m < lim && raw[i + m] == raw[i + m - d])
                m++;
            if ((int)m > best) {
                best = (int)m;
                bdist = (int)d;
            }
        }
        if (best >= 3) {
            emit_match(o, best, bdist);
            i += (size_t)best;
        } else {
            fixed_sym(o, raw[i]);
            i++;
        }
    }
    fixed_sym(o, 256); // end of block
    ob_flush_bits(o);
}

static void chunk(obuf *o, const char *type, const uint8_t *data, size_t n) {
    ob_u32be(o, (uint32_t)n);
    size_t start = o->len;
    ob_bytes(o, type, 4);
    ob_bytes(o, data, n);
    if (o->oom)
        return;
    ob_u32be(o, png_crc(0, o->p + start, n + 4));
}

int rd_png_encode(
    const uint8_t *rgb, int width, int height, int compress, uint8_t **out, size_t *out_len) {
    if (width <= 0 || height <= 0 || width > RD_PLOT_MAX_SIDE || height > RD_PLOT_MAX_SIDE || !rgb)
        return RD_ERR_ARG;
    const size_t row = (size_t)width * 3, stride = row + 1, n = stride * (size_t)height;
    uint8_t *raw = rd_malloc(n);
    if (!raw)
        return RD_ERR_NOMEM;
    for (size_t y = 0; y < (size_t)height; y++) {
        raw[y * stride] = 0; // filter type 0 (none)
        memcpy(raw + y * stride + 1, rgb + y * row, row);
    }
    obuf z = {0}, o = {0};
    const uint8_t zhdr[2] = {0x78, 0x01}; // deflate, 32K window, FCHECK: 0x7801 % 31 == 0
    ob_bytes(&z, zhdr, 2);
    if (compress)
        deflate_fixed(&z, raw, n, stride);
    else
        deflate_stored(&z, raw, n);
    ob_u32be(&z, adler32(raw, n));
    rd_free(raw);

    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13] = {(uint8_t)(width >> 24),
                        (uint8_t)(width >> 16),
                        (uint8_t)(width >> 8),
                        (uint8_t)width,
                        (uint8_t)(height >> 24),
                        (uint8_t)(height >> 16),
                        (uint8_t)(height >> 8),
                        (uint8_t)height,
                        8,  // bit depth
                        2,  // colour type: RGB
                        0,  // compression: deflate
                        0,  // filter method 0
                        0}; // no interlace
    ob_bytes(&o, sig, 8);
    chunk(&o, "IHDR", ihdr, sizeof ihdr);
    if (!z.oom)
        chunk(&o, "IDAT", z.p, z.len);
    chunk(&o, "IEND", NULL, 0);
    int oom = z.oom || o.oom;
    rd_free(z.p);
    if (oom) {
        rd_free(o.p);
        return RD_ERR_NOMEM;
    }
    *out = o.p;
    *out_len = o.len;
    return RD_OK;
}

int rd_png_write(
    const char *path, const uint8_t *rgb, int width, int height, int compress, rd_errbuf *eb) {
    uint8_t *png = NULL;
    size_t len = 0;
    int rc = rd_png_encode(rgb, width, height, compress, &png, &len);
    if (rc == RD_ERR_ARG)
        return rd_err_set(eb, rc, "%s: image size %d x %d outside 1 .. %d", path, width, height,
                          RD_PLOT_MAX_SIDE);
    if (rc != RD_OK)
        return rd_err_set(eb, rc, "%s: no memory to encode a %dx%d PNG", path, width, height);
    // A unique temporary file beside the target, renamed over it: never over a FIFO, device or
    // symlink, whose node the rename would replace (rd/lmdbx.h). A plot is an output of its
    // command (plot, scale-model, a run's auc_windows.png): a failed fsync of its folder removes
    // it again.
    rc = rd_lmdbx_write_file_out(path, png, len, eb);
    rd_free(png);
    return rc;
}
