// count_alloc.h — the most heap bytes the library held at once during a call, for the unit tests
// and benchmarks that measure it (test_embed, bench_serve). An allocator that wraps libc's
// (rd_alloc_set: every allocation of the library goes through it) counts each block's usable
// size: exact and the same run to run, unlike the heap's high-water mark or the resident set.
// Blocks it makes are libc's, so they may be freed after count_alloc_end() by free().
//
//   count_alloc_begin();
//   int rc = rd_serve_open(...);
//   count_alloc_end();
//   ... g_count_held (still held), g_count_peak (the most held at once)
#ifndef RD_TESTS_COUNT_ALLOC_H
#define RD_TESTS_COUNT_ALLOC_H

#include "rd/alloc.h"

#include <malloc.h>
#include <stdlib.h>

static long long g_count_held, g_count_peak; // bytes, since count_alloc_begin()

static void *count_alloc_malloc(size_t n) {
    void *p = malloc(n);
    if (p) {
        g_count_held += (long long)malloc_usable_size(p);
        g_count_peak = g_count_held > g_count_peak ? g_count_held : g_count_peak;
    }
    return p;
}

static void *count_alloc_realloc(void *p, size_t n) {
    long long before = p ? (long long)malloc_usable_size(p) : 0;
    void *q = realloc(p, n);
    if (q) {
        g_count_held += (long long)malloc_usable_size(q) - before;
        g_count_peak = g_count_held > g_count_peak ? g_count_held : g_count_peak;
    }
    return q;
}

// A block made before count_alloc_begin() and freed while counting lowers g_count_held below
// what the counted calls hold: count around calls that free only their own blocks.
static void count_alloc_free(void *p) {
    if (p)
        g_count_held -= (long long)malloc_usable_size(p);
    free(p);
}

/** Zero g_count_held and g_count_peak and route the library's allocations through the counter. */
static void count_alloc_begin(void) {
    static const rd_allocator counting = {count_alloc_malloc, count_alloc_realloc,
                                          count_alloc_free};
    g_count_held = g_count_peak = 0;
    rd_alloc_set(&counting);
}

/** Give the library libc's allocator back; the counts stay as they were. */
static void count_alloc_end(void) {
    rd_alloc_set(NULL);
}

#endif // RD_TESTS_COUNT_ALLOC_H
