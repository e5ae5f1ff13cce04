// fuzz_dataset.c — the binary dataset reader (rd_dataset_open of events.bin: header, sizes,
// offsets, split boundaries, field table, CRCs) on arbitrary bytes, and when a file is accepted,
// every accessor a trainer uses (records, keys, numbers, splits, iterators in the three
// partitions, per-user lists and histories). The whole input is events.bin, opened with the full
// check (the mode of `recdistill train`'s rank 0); fuzzing builds define
// FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which makes the reader ignore checksum mismatches, so
// that mutations reach the structural checks and the accessors (a replay in a normal build stops
// most mutated inputs at the CRC).
#include "fuzz.h"

#include "rd/alloc.h"
#include "rd/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static int write_file(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    return fclose(f) != 0 || w != size ? -1 : 0;
}

static void walk(const rd_dataset *ds) {
    const rd_dataset_info *in = rd_dataset_get_info(ds);
    const rd_dataset_field *fl = rd_dataset_fields(ds);
    volatile uint64_t sink = 0;
    for (uint32_t i = 0; i < in->n_fields; i++)
        sink += fl[i].vocab + (rd_dataset_find_field(ds, fl[i].name) != NULL);
    rd_range all = rd_dataset_all(ds);
    for (uint64_t i = all.begin; i < all.end && i < 4096; i++) {
        const rd_record *r = rd_dataset_record(ds, i);
        const uint64_t *k = rd_dataset_keys(ds, i);
        const float *x = rd_dataset_nums(ds, i);
        sink += r->user + (in->n_slots ? k[0] : 0) + (in->n_numeric ? (uint64_t)(x[0] != 0) : 0);
        size_t n = 0;
        const uint64_t *h = rd_dataset_history_view(ds, i, 16, &n);
        for (size_t j = 0; j < n; j++)
            sink += rd_dataset_record(ds, h[j])->item;
        sink += rd_dataset_user_pos(ds, i);
    }
    rd_range parts[3] = {rd_dataset_batch(ds), rd_dataset_holdout(ds), all};
    (void)parts;
    for (uint32_t w = 0; w < in->n_windows && w < 64; w++)
        sink += rd_dataset_window(ds, w).end;
    for (int mode = RD_PART_CONTIGUOUS; mode <= RD_PART_USER; mode++) {
        rd_dataset_iter it;
        rd_dataset_iter_init(&it, ds, all, mode, 1, 3);
        uint64_t idx;
        for (int s = 0; s < 4096 && rd_dataset_iter_next(&it, &idx); s++)
            sink += idx;
    }
    for (uint64_t u = 0; u < in->n_users && u < 256; u++) {
        uint64_t n = 0;
        const uint64_t *l = rd_dataset_user_records(ds, u, &n);
        for (uint64_t j = 0; j < n && j < 64; j++)
            sink += l[j];
    }
    rd_range tr = rd_dataset_time_range(ds, in->ts_min, in->ts_max);
    sink += tr.begin;
    // History statistics (seq.stats), with the first feedback field and its item means if any.
    rd_seq_config sq;
    memset(&sq, 0, sizeof sq);
    sq.n_stats = 3;
    sq.stats[0] = 1;
    sq.stats[1] = 4;
    sq.stats[2] = 16;
    int fb = -1;
    for (uint32_t f = 0; f < in->n_fields && fb < 0; f++)
        if (fl[f].kind == RD_FIELD_FEEDBACK) {
            fb = (int)fl[f].offset;
            snprintf(sq.stats_feedback, sizeof sq.stats_feedback, "%s", fl[f].name);
            sq.stats_residual = 1;
        }
    float *im = fb >= 0 ? rd_dataset_item_means(ds, fb) : NULL;
    float st[16];
    for (uint64_t i = all.begin; i < all.end && i < 4096 && (fb < 0 || im); i++) {
        rd_dataset_history_stats(ds, i, &sq, fb, im, st);
        sink += (uint64_t)(st[0] > 0);
    }
    rd_free(im);
    (void)sink;
}

// The scratch folder goes when the process exits normally (replay, libFuzzer's
// -runs/-max_total_time).
static void remove_dir(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, RD_DATASET_FILE);
    unlink(path);
    rmdir(dir);
}

int rd_fuzz_check(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/rd_fuzz_dataset_%ld", (long)getpid());
        char cmd[128];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        if (system(cmd) != 0)
            return RD_ERR_IO;
        atexit(remove_dir);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, RD_DATASET_FILE);
    if (write_file(path, data, size) != 0)
        return RD_ERR_IO;
    rd_dataset *ds = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_dataset_open(dir, 0, &ds, &eb);
    if (rc == RD_OK) {
        walk(ds);
        rd_dataset_close(ds);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd_fuzz_check(data, size);
    return 0;
}
