// test_plot.c — the line-plot renderer and PNG writer (common/plot.c).
//
// The PNG files are decoded back here by an independent reader: chunk walk with CRC-32 check,
// IHDR fields, zlib header and Adler-32, and an inflater for stored and fixed-Huffman deflate
// blocks (the two kinds the writer emits); the decoded raster must equal the rendered one byte
// for byte, in both modes. Pixels: a red series crosses the pixel that rd_plot_map gives for a
// point on its segment; a NaN point breaks the line; a log axis maps powers of 2 evenly. Bad
// input: NaN points skipped, empty series, invalid sizes / ranges, unwritable paths (clear error,
// no file and no temporary left behind), a corrupted byte caught by the CRC.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/alloc.h"
#include "rd/plot.h"
#include "tmp_root.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// An independent PNG reader (only what the writer may produce: 8-bit RGB, filter 0).

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t crc32_ref(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

typedef struct bitin {
    const uint8_t *p;
    size_t n, pos; // pos in bits
    int err;
} bitin;

static uint32_t getbits(bitin *b, int n) { // LSB-first
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        if (b->pos >= b->n * 8) {
            b->err = 1;
            return 0;
        }
        v |= (uint32_t)((b->p[b->pos >> 3] >> (b->pos & 7)) & 1u) << i;
        b->pos++;
    }
    return v;
}

static uint32_t getcode(bitin *b, int n) { // Huffman code bits, MSB first
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 1) | getbits(b, 1);
    return v;
}

static int fixed_symbol(bitin *b) {
    uint32_t v = getcode(b, 7);
    if (v <= 23)
        return 256 + (int)v;
    v = (v << 1) | getbits(b, 1);
    if (v >= 0x30 && v <= 0xbf)
        return (int)(v - 0x30);
    if (v >= 0xc0 && v <= 0xc7)
        return 280 + (int)(v - 0xc0);
    v = (v << 1) | getbits(b, 1);
    if (v >= 0x190 && v <= 0x1ff)
        return 144 + (int)(v - 0x190);
    b->err = 1;
    return -1;
}

// Inflate a zlib stream into out (cap bytes). Returns the length or -1.
static long inflate_ref(const uint8_t *z, size_t zn, uint8_t *out, size_t cap) {
    static const int lb[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                               31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int le[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                               2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const int db[30] = {1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
                               33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
                               1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    static const int de[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                               6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
    if (zn < 6 || (z[0] & 0x0f) != 8 || ((z[0] << 8) | z[1]) % 31 != 0)
        return -1;
    bitin b = {z + 2, zn - 6, 0, 0};
    size_t o = 0;
    int final = 0;
    while (!final && !b.err) {
        final = (int)getbits(&b, 1);
        int type = (int)getbits(&b, 2);
        if (type == 0) {
            b.pos = (b.pos + 7) & ~(size_t)7;
            size_t at = b.pos / 8;
            if (at + 4 > b.n)
                return -1;
            size_t len = b.p[at] | (size_t)b.p[at + 1] << 8;
            size_t nlen = b.p[at + 2] | (size_t)b.p[at + 3] << 8;
            if ((len ^ 0xffff) != nlen || at + 4 + len > b.n || o + len > cap)
                return -1;
            memcpy(out + o, b.p + at + 4, len);
            o += len;
            b.pos = (at + 4 + len) * 8;
        } else if (type == 1) {
            for (;;) {
                int s = fixed_symbol(&b);
                if (b.err || s > 285)
                    return -1;
                if (s < 256) {
                    if (o >= cap)
                        return -1;
                    out[o++] = (uint8_t)s;
                    continue;
                }
                if (s == 256)
                    break;
                int len = lb[s - 257] + (int)getbits(&b, le[s - 257]);
                int dc = (int)getcode(&b, 5);
                if (dc > 29)
                    return -1;
                size_t dist = (size_t)(db[dc] + (int)getbits(&b, de[dc]));
                if (dist > o || o + (size_t)len > cap)
                    return -1;
                for (int i = 0; i < len; i++, o++)
                    out[o] = out[o - dist];
            }
        } else {
            return -1; // dynamic Huffman: never written by rd_png_encode
        }
    }
    if (b.err)
        return -1;
    // Adler-32 of the output, big-endian after the deflate data.
    uint32_t a = 1, c = 0;
    for (size_t i = 0; i < o; i++) {
        a = (a + out[i]) % 65521;
        c = (c + a) % 65521;
    }
    size_t end = 2 + (b.pos + 7) / 8;
    if (end + 4 != zn || be32(z + end) != ((c << 16) | a))
        return -1;
    return (long)o;
}

// Decode a PNG file into a fresh RGB raster. Returns 0 or a negative code naming the failure:
// -1 I/O, -2 signature, -3 CRC, -4 IHDR, -5 zlib/inflate/Adler, -6 filter, -7 no IEND.
static int png_read(const char *path, uint8_t **rgb, int *w, int *h) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)n);
    if (fread(d, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(d);
        return -1;
    }
    fclose(f);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int rc = 0;
    uint8_t *idat = NULL;
    size_t idat_n = 0;
    int seen_end = 0;
    *w = *h = 0;
    if (n < 8 || memcmp(d, sig, 8) != 0)
        rc = -2;
    for (size_t i = 8; rc == 0 && i + 12 <= (size_t)n && !seen_end;) {
        uint32_t len = be32(d + i);
        if (i + 12 + len > (size_t)n) {
            rc = -3;
            break;
        }
        const uint8_t *type = d + i + 4, *body = d + i + 8;
        if (crc32_ref(type, len + 4) != be32(body + len)) {
            rc = -3;
            break;
        }
        if (memcmp(type, "IHDR", 4) == 0) {
            if (len != 13 || body[8] != 8 || body[9] != 2 || body[10] || body[11] || body[12])
                rc = -4;
            *w = (int)be32(body);
            *h = (int)be32(body + 4);
        } else if (memcmp(type, "IDAT", 4) == 0) {
            idat = realloc(idat, idat_n + len);
            memcpy(idat + idat_n, body, len);
            idat_n += len;
        } else if (memcmp(type, "IEND", 4) == 0) {
            seen_end = 1;
        }
        i += 12 + len;
    }
    if (rc == 0 && !seen_end)
        rc = -7;
    if (rc == 0 && (*w <= 0 || *h <= 0))
        rc = -4;
    if (rc == 0) {
        size_t stride = (size_t)*w * 3 + 1, raw_n = stride * (size_t)*h;
        uint8_t *raw = malloc(raw_n);
        long got = inflate_ref(idat, idat_n, raw, raw_n);
        if (got != (long)raw_n) {
            rc = -5;
        } else {
            *rgb = malloc(raw_n);
            for (int y = 0; y < *h && rc == 0; y++) {
                if (raw[(size_t)y * stride] != 0)
                    rc = -6;
                memcpy(*rgb + (size_t)y * (stride - 1), raw + (size_t)y * stride + 1, stride - 1);
            }
            if (rc != 0)
                free(*rgb);
        }
        free(raw);
    }
    free(idat);
    free(d);
    return rc;
}

static uint32_t pixel(const uint8_t *rgb, int w, int x, int y) {
    const uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

// Is there a pixel of colour col within r pixels of (x, y)?
static int near_colour(const uint8_t *rgb, int w, int h, int x, int y, int r, uint32_t col) {
    for (int yy = y - r; yy <= y + r; yy++)
        for (int xx = x - r; xx <= x + r; xx++)
            if (xx >= 0 && yy >= 0 && xx < w && yy < h && pixel(rgb, w, xx, yy) == col)
                return 1;
    return 0;
}

static char g_dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/rd_test_plot_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            if (rmdir(p) != 0)
                unlink(p);
        }
        closedir(d);
    }
    if (rmdir(g_dir) != 0) { // a test wrote more than the files and empty folders removed above
        fprintf(stderr, "test_plot: %s stays: %s\n", g_dir, strerror(errno));
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Tests

#define RED 0xff0000u

// A red rising line and a blue falling one; write, decode, compare with the render.
static void test_roundtrip_and_pixels(void **state) {
    (void)state;
    static const double x[] = {0, 1, 2, 3, 4}, yr[] = {0, 1, 2, 3, 4}, yb[] = {4, 3, 2, 1, 0};
    for (int compress = 0; compress <= 1; compress++) {
        rd_plot p;
        rd_plot_init(&p);
        p.compress = compress;
        snprintf(p.title, sizeof p.title, "roundtrip %d", compress);
        snprintf(p.xlabel, sizeof p.xlabel, "step");
        snprintf(p.ylabel, sizeof p.ylabel, "value");
        assert_int_equal(rd_plot_add(&p, "red", x, yr, 5), RD_OK);
        p.series[0].rgb = RED;
        assert_int_equal(rd_plot_add(&p, "blue", x, yb, 5), RD_OK);
        p.series[1].rgb = 0x0000ffu;
        char path[512];
        snprintf(path, sizeof path, "%s/p%d.png", g_dir, compress);
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_plot_write_png(&p, path, &eb), RD_OK);

        uint8_t *img = NULL;
        int w = 0, h = 0;
        assert_int_equal(png_read(path, &img, &w, &h), 0);
        assert_int_equal(w, 800);
        assert_int_equal(h, 500);
        uint8_t *ref = rd_xmalloc((size_t)w * (size_t)h * 3);
        assert_int_equal(rd_plot_render(&p, ref, &eb), RD_OK);
        assert_memory_equal(img, ref, (size_t)w * (size_t)h * 3);

        // The red series crosses the pixels of points on its segments (away from the legend
        // and from the blue line's crossing at x = 2).
        int px, py, qx, qy;
        assert_int_equal(rd_plot_map(&p, 3.5, 3.5, &px, &py), 1);
        assert_true(near_colour(img, w, h, px, py, 1, RED));
        assert_int_equal(rd_plot_map(&p, 0.5, 0.5, &qx, &qy), 1);
        assert_true(near_colour(img, w, h, qx, qy, 1, RED));
        // Larger y is higher in the image (smaller row), larger x further right: a plot drawn
        // upside down (rd_plot_map and the drawing agree with each other) must not pass.
        assert_true(py < qy && px > qx);
        assert_int_equal(rd_plot_map(&p, 0.5, 0.5, &px, &py), 1);
        // ... and not pixels far from it (the blue line's point at x = 3.5).
        assert_int_equal(rd_plot_map(&p, 3.5, 0.5, &px, &py), 1);
        assert_false(near_colour(img, w, h, px, py, 3, RED));
        assert_true(near_colour(img, w, h, px, py, 1, 0x0000ffu));
        // Top-left corner is background, the title band has ink.
        assert_int_equal(pixel(img, w, 0, 0), 0xffffffu);
        int ink = 0;
        for (int y = 8; y < 28; y++)
            for (int xx = 0; xx < w; xx++)
                ink += pixel(img, w, xx, y) == 0x202020u;
        assert_true(ink > 50);
        rd_free(ref);
        free(img);
        // Stored blocks hold ~3 bytes per pixel; the compressed file is far smaller.
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if (compress)
            assert_true(st.st_size < 100 * 1000);
        else
            assert_true(st.st_size > 800 * 500 * 3);
    }
}

// A constant series gets a range of +-10% of its value around it (plus the 4% padding), not +-1
// whatever its scale. (Catches the spread of a one-valued axis ignoring the value.)
static void test_constant_series_range(void **state) {
    (void)state;
    static const double x[] = {0, 1, 2}, y[] = {100, 100, 100};
    rd_plot p;
    rd_plot_init(&p);
    assert_int_equal(rd_plot_add(&p, "flat", x, y, 3), RD_OK);
    uint8_t *img = rd_xmalloc((size_t)p.width * (size_t)p.height * 3);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    assert_true(fabs(p.lo_y - (90.0 - 0.04 * 20.0)) < 1e-9);
    assert_true(fabs(p.hi_y - (110.0 + 0.04 * 20.0)) < 1e-9);
    rd_free(img);
}

// A NaN point is skipped and breaks the line; an empty series and an all-NaN plot are fine.
static void test_nan_and_empty(void **state) {
    (void)state;
    static const double x[] = {0, 1, 2, 3, 4}, y[] = {0, 1, (double)NAN, 3, 4};
    static const double xn[] = {(double)NAN, 1}, yn[] = {1, (double)INFINITY};
    rd_plot p;
    rd_plot_init(&p);
    assert_int_equal(rd_plot_add(&p, "gap", x, y, 5), RD_OK);
    p.series[0].rgb = RED;
    p.series[0].markers = 0;
    assert_int_equal(rd_plot_add(&p, "empty", NULL, NULL, 0), RD_OK);
    uint8_t *img = rd_xmalloc(800 * 500 * 3);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    int px, py;
    // Joined segments exist on both sides of the gap ...
    assert_int_equal(rd_plot_map(&p, 3.5, 3.5, &px, &py), 1);
    assert_true(near_colour(img, 800, 500, px, py, 1, RED));
    // ... but the line 1 -> 3 across the NaN is not drawn.
    assert_int_equal(rd_plot_map(&p, 2.0, 2.0, &px, &py), 1);
    assert_false(near_colour(img, 800, 500, px, py, 4, RED));
    assert_int_equal(rd_plot_map(&p, 2.0, (double)NAN, &px, &py), 0);

    // No valid point at all: axes over [0, 1] (with padding), still written.
    rd_plot q;
    rd_plot_init(&q);
    assert_int_equal(rd_plot_add(&q, "nothing", xn, yn, 2), RD_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/empty.png", g_dir);
    assert_int_equal(rd_plot_write_png(&q, path, &eb), RD_OK);
    assert_true(q.lo_x < 0 && q.hi_x > 1 && q.lo_y < 0 && q.hi_y > 1);
    uint8_t *dec = NULL;
    int w, h;
    assert_int_equal(png_read(path, &dec, &w, &h), 0);
    free(dec);
    rd_free(img);
}

// Log x axis: powers of 2 are evenly spaced; x <= 0 is skipped.
// Long legend labels. rd_plot_add kept 63 bytes (recdistill plot cut them to 95 before that),
// so series whose labels differ only past there (run folders of one long prefix) had one and the
// same legend line, and a label wider than the plot area drew a box cut by the frame.
static void test_long_labels(void **state) {
    (void)state;
    static const double x[] = {0, 1}, y[] = {0, 1};
    // A 300-byte label is kept whole.
    char a[301], b[301];
    memset(a, 'r', 299);
    a[299] = '1';
    a[300] = '\0';
    memcpy(b, a, sizeof a);
    b[299] = '2';
    rd_plot p;
    rd_plot_init(&p);
    assert_int_equal(rd_plot_add(&p, a, x, y, 2), RD_OK);
    assert_string_equal(p.series[0].label, a);
    // One longer than a series holds: its head, "..." and its tail, RD_PLOT_LABEL_MAX - 1 bytes.
    char *huge = rd_xmalloc(2000);
    memset(huge, 'h', 1000);
    memset(huge + 1000, 't', 999);
    huge[1999] = '\0';
    rd_plot q;
    rd_plot_init(&q);
    assert_int_equal(rd_plot_add(&q, huge, x, y, 2), RD_OK);
    const char *l = q.series[0].label;
    size_t n = strlen(l);
    assert_int_equal(n, RD_PLOT_LABEL_MAX - 1);
    assert_true(l[0] == 'h' && l[n - 1] == 't');
    assert_non_null(strstr(l, "h...t"));
    rd_free(huge);

    // Drawn: labels a and b (the same but their last byte) against a and a: the legends differ,
    // and nothing of the legend reaches the frame's right side (the box fits the area).
    rd_plot pa, pb;
    rd_plot_init(&pa);
    rd_plot_init(&pb);
    assert_int_equal(rd_plot_add(&pa, a, x, y, 2), RD_OK);
    assert_int_equal(rd_plot_add(&pa, b, x, y, 2), RD_OK);
    assert_int_equal(rd_plot_add(&pb, a, x, y, 2), RD_OK);
    assert_int_equal(rd_plot_add(&pb, a, x, y, 2), RD_OK);
    uint8_t *ia = rd_xmalloc(800 * 500 * 3), *ib = rd_xmalloc(800 * 500 * 3);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_render(&pa, ia, &eb), RD_OK);
    assert_int_equal(rd_plot_render(&pb, ib, &eb), RD_OK);
    assert_true(memcmp(ia, ib, 800 * 500 * 3) != 0);
    for (int yy = pa.area_y0 + 1; yy < pa.area_y1; yy++) {
        const uint8_t *px = ia + ((size_t)yy * 800 + (size_t)pa.area_x1 - 1) * 3;
        assert_false(px[0] == 0x20 && px[1] == 0x20 && px[2] == 0x20);
    }
    rd_free(ia);
    rd_free(ib);
}

static void test_log_axis(void **state) {
    (void)state;
    static const double x[] = {-1, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256};
    static const double y[] = {5, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    rd_plot p;
    rd_plot_init(&p);
    p.log_x = 1;
    assert_int_equal(rd_plot_add(&p, "log", x, y, 11), RD_OK);
    uint8_t *img = rd_xmalloc(800 * 500 * 3);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    int x1, x2, x4, y1, y2, y4;
    assert_int_equal(rd_plot_map(&p, 1, 1, &x1, &y1), 1);
    assert_int_equal(rd_plot_map(&p, 2, 2, &x2, &y2), 1);
    assert_int_equal(rd_plot_map(&p, 4, 3, &x4, &y4), 1);
    assert_true(abs((x2 - x1) - (x4 - x2)) <= 1);
    assert_int_equal(rd_plot_map(&p, 0, 1, &x1, &y1), 0);
    // The x range starts near log2(1) = 0: the skipped points did not stretch it.
    assert_true(p.lo_x > -1 && p.lo_x < 0);
    rd_free(img);
}

// Columns of the x tick marks: the 4-pixel ink stubs below the frame (row area_y1 + 2, where
// nothing else is drawn), left to right.
static int x_tick_columns(const rd_plot *p, const uint8_t *img, int *cols, int cap) {
    int n = 0;
    for (int x = p->area_x0; x <= p->area_x1 && n < cap; x++)
        if (pixel(img, p->width, x, p->area_y1 + 2) == 0x202020u)
            cols[n++] = x;
    return n;
}

// Integer x data (stream windows 0, 1, 2) get ticks at whole numbers only, not 0, 0.2, 0.4 ...;
// fractional data over the same range keep the finer steps, and a fixed range narrower than one
// unit still gets ticks.
static void test_integer_ticks(void **state) {
    (void)state;
    static const double xi[] = {0, 1, 2}, xf[] = {0, 0.5, 2}, y[] = {0.61, 0.64, 0.62};
    uint8_t *img = rd_xmalloc(800 * 500 * 3);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    rd_plot p;
    rd_plot_init(&p);
    assert_int_equal(rd_plot_add(&p, "windows", xi, y, 3), RD_OK);
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    int cols[64], n = x_tick_columns(&p, img, cols, 64);
    assert_int_equal(n, 3);
    for (int k = 0; k < 3; k++) {
        int px, py;
        assert_int_equal(rd_plot_map(&p, k, 0.62, &px, &py), 1);
        assert_int_equal(cols[k], px);
    }
    // The y axis (fractional AUCs) keeps its fine steps: more than two grid lines.
    int grid_rows = 0;
    for (int yy = p.area_y0 + 1; yy < p.area_y1; yy++)
        grid_rows += pixel(img, 800, p.area_x0 + 1, yy) == 0xe4e4e4u;
    assert_true(grid_rows >= 3);

    rd_plot_init(&p);
    assert_int_equal(rd_plot_add(&p, "fractional", xf, y, 3), RD_OK);
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    assert_true(x_tick_columns(&p, img, cols, 64) > 3);

    rd_plot_init(&p);
    p.xmin = 0.3;
    p.xmax = 0.9;
    assert_int_equal(rd_plot_add(&p, "narrow", xi, y, 3), RD_OK);
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    assert_true(x_tick_columns(&p, img, cols, 64) >= 2);
    rd_free(img);
}

static void test_bad_input(void **state) {
    (void)state;
    static const double x[] = {1, 2}, y[] = {1, 2};
    rd_plot p;
    rd_plot_init(&p);
    rd_errbuf eb;
    assert_int_equal(rd_plot_add(&p, "a", NULL, y, 2), RD_ERR_ARG);
    for (int i = 0; i < RD_PLOT_MAX_SERIES; i++)
        assert_int_equal(rd_plot_add(&p, "s", x, y, 2), RD_OK);
    assert_int_equal(rd_plot_add(&p, "one too many", x, y, 2), RD_ERR_FULL);
    uint8_t *img = rd_xmalloc(800 * 500 * 3);
    // Fixed range with min >= max, and a non-positive bound on a log axis.
    p.ymin = 3;
    p.ymax = 3;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "y range"));
    p.ymin = 0;
    p.ymax = 3;
    p.log_y = 1;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_ERR_ARG);
    p.log_y = 0;
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    // One bound fixed, the other from the data (y data is 1..2, padded).
    p.ymin = 0;
    p.ymax = (double)NAN;
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    assert_true(p.lo_y == 0 && p.hi_y > 2 && p.hi_y < 2.1);
    p.ymin = 5; // above every point: a unit range from it
    assert_int_equal(rd_plot_render(&p, img, &eb), RD_OK);
    assert_true(p.lo_y == 5 && p.hi_y == 6);
    p.ymin = (double)NAN;
    // Size out of range.
    p.width = 10;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_write_png(&p, "/tmp/never.png", &eb), RD_ERR_ARG);
    assert_non_null(strstr(eb.msg, "size"));
    p.width = 800;
    // Unwritable: a missing directory (nothing created), and a path that is a directory
    // (refused before any temporary file is made, as a FIFO is).
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_write_png(&p, "/nonexistent_rd_dir/x.png", &eb), RD_ERR_IO);
    assert_non_null(strstr(eb.msg, "/nonexistent_rd_dir/x.png"));
    char sub[512];
    snprintf(sub, sizeof sub, "%s/isdir.png", g_dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_write_png(&p, sub, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "isdir.png exists and is a folder"));
    // A FIFO (or a device such as /dev/null, or a symlink to one) is not replaced by a file:
    // the rename would swap the node itself (as root, /dev/null became a PNG).
    char fifo[512], link[512];
    snprintf(fifo, sizeof fifo, "%s/fifo.png", g_dir);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_write_png(&p, fifo, &eb), RD_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "not a regular file"));
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    snprintf(link, sizeof link, "%s/null.png", g_dir);
    assert_int_equal(symlink("/dev/null", link), 0);
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_plot_write_png(&p, link, &eb), RD_ERR_EXISTS);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);
    // Values whose span overflows a double: an error naming the axis, not a blank plot.
    {
        static const double hx[] = {1, 2}, hy[] = {1e308, -1e308}, bx[] = {-1.7e308, 1.7e308};
        rd_plot q;
        rd_plot_init(&q);
        assert_int_equal(rd_plot_add(&q, "huge y", hx, hy, 2), RD_OK);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_plot_render(&q, img, &eb), RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, "plot: the y values (-1e+308 .. 1e+308) span more than"));
        rd_plot_init(&q);
        assert_int_equal(rd_plot_add(&q, "huge x", bx, y, 2), RD_OK);
        rd_errbuf_clear(&eb);
        assert_int_equal(rd_plot_render(&q, img, &eb), RD_ERR_ARG);
        assert_non_null(strstr(eb.msg, "the x values"));
    }
    // Encoder arguments.
    uint8_t *out = NULL;
    size_t n = 0;
    assert_int_equal(rd_png_encode(img, 0, 10, 1, &out, &n), RD_ERR_ARG);
    assert_int_equal(rd_png_encode(img, 10, RD_PLOT_MAX_SIDE + 1, 1, &out, &n), RD_ERR_ARG);
    rd_free(img);
}

// The reader must catch corruption (so the round trip above can fail).
static void test_corruption_detected(void **state) {
    (void)state;
    uint8_t rgb[16 * 8 * 3];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7);
    char path[512];
    snprintf(path, sizeof path, "%s/small.png", g_dir);
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    assert_int_equal(rd_png_write(path, rgb, 16, 8, 1, &eb), RD_OK);
    uint8_t *img = NULL;
    int w, h;
    assert_int_equal(png_read(path, &img, &w, &h), 0);
    assert_memory_equal(img, rgb, sizeof rgb);
    free(img);
    // Flip one byte inside IDAT's data: the chunk CRC no longer matches.
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 8 + 25 + 8 + 5, SEEK_SET); // signature, IHDR chunk, IDAT length+type, 5 bytes in
    int c = fgetc(f);
    fseek(f, -1, SEEK_CUR);
    fputc(c ^ 0x40, f);
    fclose(f);
    assert_int_equal(png_read(path, &img, &w, &h), -3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_pixels),  cmocka_unit_test(test_nan_and_empty),
        cmocka_unit_test(test_constant_series_range), cmocka_unit_test(test_log_axis),
        cmocka_unit_test(test_integer_ticks),         cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_corruption_detected),   cmocka_unit_test(test_long_labels),
    };
    return tmp_root_status(cmocka_run_group_tests(tests, setup, teardown), g_dir);
}
