// fuzz_csv.c — the CSV/TSV reader (rd_csv_open_mem + rd_csv_next + the number parsers). The first
// byte picks the dialect (delimiter ",", "\t", "|" or "::"; quoting on or off; a short max_line),
// the rest is the file.
#include "fuzz.h"

#include "rd/csv.h"

#include <string.h>

int rd_fuzz_check(const uint8_t *data, size_t size) {
    if (size < 1)
        return RD_ERR_EMPTY;
    static const char *const delims[4] = {",", "\t", "|", "::"};
    rd_csv_options opt;
    memset(&opt, 0, sizeof opt);
    strcpy(opt.delimiter, delims[data[0] & 3]);
    opt.quote = (data[0] & 4) ? '"' : 0;
    opt.max_line = (data[0] & 8) ? 64 : 0;
    rd_csv_reader *r = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_csv_open_mem("fuzz.csv", (const char *)data + 1, size - 1, &opt, &r, &eb);
    if (rc != RD_OK)
        return rc;
    const rd_csv_field *f = NULL;
    size_t n = 0;
    while ((rc = rd_csv_next(r, &f, &n, &eb)) == 1) {
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            double d;
            (void)rd_csv_parse_i64(&f[i], &v);
            (void)rd_csv_parse_double(&f[i], &d);
        }
    }
    rd_csv_close(r);
    return rc < 0 ? rc : RD_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd_fuzz_check(data, size);
    return 0;
}
