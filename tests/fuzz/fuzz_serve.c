// fuzz_serve.c — the serving bundle reader (rd_serve_open: header, embedded model and table
// configs, feature widths, numeric count, dense parameters, table rows) on arbitrary bytes, and
// when a bundle is accepted, one scoring request of each size 1 and 4 built from its layout
// (keys, history and numeric inputs all present), each sent once with stored and once with raw
// numeric values (numeric_raw: the bundle's transforms), and once raw with the first candidate's
// first input missing (NaN: the fill of a version-3 bundle, else refused). The whole input is the
// bundle file.
// Fuzzing builds define FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which makes the reader ignore a
// CRC mismatch, so that mutations reach the checks behind it (a replay in a normal build stops most
// mutated inputs at the CRC; the committed regressions carry a valid CRC).
#include "fuzz.h"

#include "rd/alloc.h"
#include "rd/serve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[96];

static void score(rd_serve *sv) {
    rd_serve_info in;
    rd_serve_get_info(sv, &in);
    const size_t n = 4, K = in.keys_per_candidate, L = in.hist_len, nn = in.n_numeric;
    uint64_t *keys = rd_xcalloc(n * K + 1, sizeof *keys);
    uint64_t *hist = rd_xcalloc(L + 1, sizeof *hist);
    uint8_t *hl = rd_xcalloc(L + 1, 1);
    float *num = rd_xcalloc(n * nn + 1, sizeof *num), scores[4], logits[4];
    for (size_t i = 0; i < n * K; i++)
        keys[i] = i % 3 ? 1000003 * i + 7 : 0;
    for (size_t i = 0; i < L; i++) {
        hist[i] = i % 2 ? 77 * i + 1 : 0;
        hl[i] = (uint8_t)(i % 2);
    }
    for (size_t i = 0; i < n * nn; i++)
        num[i] = (float)((int)(i % 7) - 2) * 1.5f;
    for (size_t s = 1; s <= n; s += n - 1)
        for (int raw = 0; raw < 3; raw++) {
            if (nn && raw == 2)
                num[0] = NAN;
            rd_serve_request rq = {.n = s,
                                   .keys = keys,
                                   .hist_items = L ? hist : NULL,
                                   .hist_labels = L ? hl : NULL,
                                   .numeric = nn ? num : NULL,
                                   .numeric_raw = raw > 0};
            rd_errbuf eb;
            rd_errbuf_clear(&eb);
            (void)rd_serve_score(sv, &rq, scores, logits, &eb);
            if (nn && raw == 2)
                num[0] = -3.0f;
        }
    rd_free(keys);
    rd_free(hist);
    rd_free(hl);
    rd_free(num);
}

int rd_fuzz_check(const uint8_t *data, size_t size) {
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/rd_fuzz_serve_%ld.rdsv", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return RD_ERR_IO;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size)
        return RD_ERR_IO;
    rd_serve *sv = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_serve_open(path, 4, &sv, &eb);
    if (rc == RD_OK) {
        score(sv);
        rd_serve_close(sv);
    }
    unlink(path);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd_fuzz_check(data, size);
    return 0;
}
