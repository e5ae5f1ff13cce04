// test_kv.c — the worker-side key preparation of the PS client (rd/kv.h) that needs no MPI:
// rd_kv_dedup against a plain reference (qsort, then a scan) over batches that repeat a few
// keys, batches of distinct keys, keys that differ only in their high or only in their low bytes,
// batches whose distinct keys grow the hash table several times, and every refusal.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/error.h"
#include "rd/hash.h"
#include "rd/kv.h"
#include "rd/rng.h"

#include <stdlib.h>
#include <string.h>

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// rd_kv_dedup(keys) must give the sorted distinct keys of the reference and an inverse that maps
// every position back to its key.
static void check_dedup(const uint64_t *keys, size_t n) {
    uint64_t *ref = malloc((n ? n : 1) * sizeof *ref);
    assert_non_null(ref);
    memcpy(ref, keys, n * sizeof *ref);
    qsort(ref, n, sizeof *ref, cmp_u64);
    size_t nr = 0;
    for (size_t i = 0; i < n; i++)
        if (nr == 0 || ref[nr - 1] != ref[i])
            ref[nr++] = ref[i];
    size_t sb = rd_kv_dedup_scratch_bytes(n);
    void *scratch = malloc(sb);
    uint64_t *uniq = malloc((n ? n : 1) * sizeof *uniq);
    uint32_t *inv = malloc((n ? n : 1) * sizeof *inv);
    assert_true(scratch && uniq && inv);
    size_t nu = 12345;
    assert_int_equal(rd_kv_dedup(keys, n, uniq, inv, &nu, scratch, sb), RD_OK);
    assert_int_equal(nu, nr);
    assert_memory_equal(uniq, ref, nr * sizeof *ref);
    for (size_t i = 0; i < n; i++) {
        assert_true(inv[i] < nu);
        assert_true(uniq[inv[i]] == keys[i]);
    }
    free(ref);
    free(scratch);
    free(uniq);
    free(inv);
}

static void test_dedup_repeats(void **state) {
    (void)state;
    rd_rng r;
    rd_rng_seed(&r, 7);
    // A teacher step's history: 65,536 keys over a vocabulary of 2,000 (hashed table keys), and
    // smaller batches over vocabularies from 1 key to far more keys than the batch.
    static const size_t shapes[][2] = {{65536, 2000}, {1, 1},          {2, 1},   {5000, 3},
                                       {4096, 4096},  {3000, 1000000}, {100, 50}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s][0], v = shapes[s][1];
        uint64_t *k = malloc(n * sizeof *k);
        assert_non_null(k);
        for (size_t i = 0; i < n; i++)
            k[i] = rd_table_key(42, 1 + rd_rng_below(&r, v));
        check_dedup(k, n);
        free(k);
    }
}

static void test_dedup_distinct(void **state) {
    (void)state;
    // Every key distinct: the table doubles from its smallest size up to 2n slots. Keys that
    // differ only in the high bytes, only in the low bytes, and in reverse order.
    size_t n = 20000;
    uint64_t *k = malloc(n * sizeof *k);
    assert_non_null(k);
    for (size_t i = 0; i < n; i++)
        k[i] = (uint64_t)(i + 1) << 44;
    check_dedup(k, n);
    for (size_t i = 0; i < n; i++)
        k[i] = 0xABCD000000000000ull | (uint64_t)(n - i);
    check_dedup(k, n);
    for (size_t i = 0; i < n; i++) // the same keys twice over, the second pass reversed
        k[i] = i < n / 2 ? 1 + i : n - i;
    check_dedup(k, n);
    // A batch that repeats itself over the first 4,096 keys (so that no sort of the whole batch is
    // chosen) and then brings 16,000 new keys: the table doubles from 1,024 to 32,768 slots.
    for (size_t i = 0; i < n; i++)
        k[i] = i < 4096 ? 1 + i % 100 : (uint64_t)i * 0x10001u;
    check_dedup(k, n);
    k[0] = UINT64_MAX;
    k[1] = 1;
    k[2] = UINT64_MAX;
    check_dedup(k, 3);
    check_dedup(k, 0);
    free(k);
}

static void test_dedup_refusals(void **state) {
    (void)state;
    uint64_t keys[4] = {5, 3, 5, 9}, uniq[4];
    uint32_t inv[4];
    size_t nu = 7, sb = rd_kv_dedup_scratch_bytes(4);
    void *scratch = malloc(sb);
    assert_non_null(scratch);
    // Too little scratch, or none.
    assert_int_equal(rd_kv_dedup(keys, 4, uniq, inv, &nu, scratch, sb - 1), RD_ERR_ARG);
    assert_int_equal(nu, 0);
    assert_int_equal(rd_kv_dedup(keys, 4, uniq, inv, &nu, NULL, sb), RD_ERR_ARG);
    // Missing arrays.
    assert_int_equal(rd_kv_dedup(NULL, 4, uniq, inv, &nu, scratch, sb), RD_ERR_ARG);
    assert_int_equal(rd_kv_dedup(keys, 4, NULL, inv, &nu, scratch, sb), RD_ERR_ARG);
    assert_int_equal(rd_kv_dedup(keys, 4, uniq, NULL, &nu, scratch, sb), RD_ERR_ARG);
    // Key 0 (the PS's "no key"), anywhere in the batch.
    keys[3] = 0;
    nu = 7;
    assert_int_equal(rd_kv_dedup(keys, 4, uniq, inv, &nu, scratch, sb), RD_ERR_ARG);
    assert_int_equal(nu, 0);
    keys[3] = 9;
    // ... also far into a big batch, whether the batch goes through the hash table (its first
    // keys repeat) or is sorted whole (its first keys are distinct).
    size_t n = 10000, bsb = rd_kv_dedup_scratch_bytes(n);
    uint64_t *big = malloc(n * sizeof *big), *bu = malloc(n * sizeof *bu);
    uint32_t *bi = malloc(n * sizeof *bi);
    void *bs = malloc(bsb);
    assert_true(big && bu && bi && bs);
    for (int distinct = 0; distinct < 2; distinct++) {
        for (size_t i = 0; i < n; i++)
            big[i] = distinct ? 1 + i : 1 + i % 7;
        big[n - 2] = 0;
        nu = 7;
        assert_int_equal(rd_kv_dedup(big, n, bu, bi, &nu, bs, bsb), RD_ERR_ARG);
        assert_int_equal(nu, 0);
    }
    free(big);
    free(bu);
    free(bi);
    free(bs);
    assert_int_equal(rd_kv_dedup(keys, 4, uniq, inv, &nu, scratch, sb), RD_OK);
    assert_int_equal(nu, 3);
    assert_true(uniq[0] == 3 && uniq[1] == 5 && uniq[2] == 9);
    assert_true(inv[0] == 1 && inv[1] == 0 && inv[2] == 1 && inv[3] == 2);
    // The scratch a batch needs grows with it, and covers the bigger batch's table.
    assert_true(rd_kv_dedup_scratch_bytes(100000) > rd_kv_dedup_scratch_bytes(1000));
    assert_true(rd_kv_dedup_scratch_bytes(100000) <= 80 * 100000);
    free(scratch);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_repeats),
        cmocka_unit_test(test_dedup_distinct),
        cmocka_unit_test(test_dedup_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
