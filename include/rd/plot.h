// rd/plot.h — a dependency-free line-plot writer: a few series of (x, y) points rendered into an
// RGB raster with axes, ticks, grid, labels, a legend and a title in a built-in 5x8 bitmap font,
// written as a PNG file (zlib stream, CRC-32 per chunk, Adler-32) atomically.
//
// Defines:
//   RD_PLOT_MAX_SERIES        series per plot (8)
//   RD_PLOT_LABEL_MAX         bytes a series label keeps, with its terminating NUL (512)
//   rd_plot_series            one named series: borrowed x / y arrays, colour
//   rd_plot                   the figure: title, axis labels, size, log axes, fixed ranges
//   rd_plot_init()            defaults (800 x 500, linear axes, auto ranges)
//   rd_plot_add()             append a series
//   rd_plot_render()          draw into a caller's RGB raster (tests check pixels)
//   rd_plot_map()             data point -> pixel of the last render's layout
//   rd_plot_write_png()       render + encode + write atomically (temp file + rename)
//   rd_png_encode()           RGB raster -> PNG bytes in memory (stored or fixed-Huffman deflate)
//   rd_png_write()            RGB raster -> PNG file, atomically
//
// Points: a point whose x or y is not finite (NaN, inf) — or not positive on a log axis — is
// skipped and breaks its line (the segments on either side are not joined). An empty series (or
// one with no valid point) still gets its legend entry. A plot without any valid point draws the
// axes over the range [0, 1].
// Ticks: 1, 2 or 5 x 10^k apart on a linear axis; an axis whose valid points all have whole-number
// values (stream windows, steps) gets a step of at least 1, so no fractional tick labels an
// integer quantity (unless a fixed range narrower than 1 leaves no two whole numbers inside).
// Text: printable ASCII (other bytes are drawn as '?'); titles are drawn at twice the size.
// Legend: a label wider than the plot area leaves room for is drawn shortened in the middle
// ("runs/sweep-a...-seed-3"), so that labels differing only at their end (run folders of one long
// prefix) stay apart; the box always fits in the plot area.
// PNG: 8-bit RGB, no interlace, filter type 0 on every row. The zlib stream uses either stored
// blocks (compress = 0: simplest, about 3 bytes per pixel) or one block of fixed-Huffman codes
// whose matches repeat the previous pixel or the row above (compress = 1, the default: a plot is
// mostly flat colour, so this gives ~40x smaller files than stored blocks with a few lines of
// code). Both are plain RFC 1950/1951 streams any PNG reader accepts.
#ifndef RD_PLOT_H
#define RD_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_PLOT_MAX_SERIES 8
#define RD_PLOT_MAX_SIDE   8192 // largest width / height in pixels
#define RD_PLOT_LABEL_MAX  512  // bytes of a series label, NUL included

typedef struct rd_plot_series {
    char label[RD_PLOT_LABEL_MAX]; // legend text; a longer one is kept as its head "..." its tail
    const double *x; // (n) borrowed: must stay valid until the plot is rendered / written
    const double *y; // (n) borrowed
    size_t n;
    uint32_t rgb; // 0xRRGGBB; 0 = the palette colour of its index (0 black is not available)
    int markers;  // 1 = a 5x5 square at every valid point
} rd_plot_series;

typedef struct rd_plot {
    char title[128];
    char xlabel[96];
    char ylabel[96];
    int width, height; // pixels (default 800 x 500; at least 160 x 120)
    int log_x, log_y;  // 1 = logarithmic axis (ticks at powers of 2 or 10)
    double xmin, xmax; // fixed x bounds; NaN = from the data (default); either may be fixed
    double ymin, ymax; // fixed y bounds; NaN = from the data (default)
    int compress;      // 1 = fixed-Huffman deflate (default), 0 = stored blocks
    int n_series;
    rd_plot_series series[RD_PLOT_MAX_SERIES];
    // Layout of the last rd_plot_render (read by rd_plot_map): plot area and data ranges.
    int area_x0, area_y0, area_x1, area_y1;
    double lo_x, hi_x, lo_y, hi_y;
} rd_plot;

/** Defaults: 800 x 500, linear axes, automatic ranges, compression on, no series. */
void rd_plot_init(rd_plot *p);

/**
 * Append a series (x, y borrowed: they must outlive the render / write). label is copied: up to
 * RD_PLOT_LABEL_MAX - 1 bytes whole, a longer one as its head, "..." and its tail in that many.
 * @return RD_OK, RD_ERR_FULL (RD_PLOT_MAX_SERIES already), RD_ERR_ARG (n > 0 with NULL x or y)
 */
int rd_plot_add(rd_plot *p, const char *label, const double *x, const double *y, size_t n);

/**
 * Draw the plot into rgb (height rows of width * 3 bytes, top row first) of p->width x
 * p->height, and record the layout in p (rd_plot_map).
 * @return RD_OK, RD_ERR_ARG (size out of range, a fixed range with min >= max or not positive on
 *         a log axis)
 */
int rd_plot_render(rd_plot *p, uint8_t *rgb, rd_errbuf *eb);

/** Pixel (column *px, row *py) of data point (x, y) in the layout of the last render.
 *  @return 1 if (x, y) is valid and inside the plot area, else 0 (*px, *py still set when
 *  finite). */
int rd_plot_map(const rd_plot *p, double x, double y, int *px, int *py);

/**
 * Render and write `path` as PNG: the bytes go to a temporary file beside it, which is renamed
 * over path only when complete (a failed write leaves no partial file and an existing file
 * untouched).
 * @return RD_OK, RD_ERR_ARG (as rd_plot_render), RD_ERR_IO (cannot create / write / rename,
 *         with the path and the reason in eb), RD_ERR_NOMEM
 */
int rd_plot_write_png(rd_plot *p, const char *path, rd_errbuf *eb);

/**
 * Encode an RGB raster as a PNG in memory.
 * @param[in]  rgb       (height, width, 3) bytes, top row first
 * @param[in]  compress  0 stored deflate blocks, 1 fixed-Huffman with repeat matches
 * @param[out] out       rd_malloc'd bytes; free with rd_free
 * @param[out] out_len
 * @return RD_OK, RD_ERR_ARG (size 0 or above RD_PLOT_MAX_SIDE), RD_ERR_NOMEM
 */
int rd_png_encode(
    const uint8_t *rgb, int width, int height, int compress, uint8_t **out, size_t *out_len);

/** rd_png_encode, then write `path` atomically (as rd_plot_write_png).
 *  @return RD_OK, RD_ERR_ARG, RD_ERR_IO, RD_ERR_NOMEM */
int rd_png_write(
    const char *path, const uint8_t *rgb, int width, int height, int compress, rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_PLOT_H
