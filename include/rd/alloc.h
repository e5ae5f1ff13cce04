// rd/alloc.h — allocation with a swappable allocator (for out-of-memory injection in tests).
//
// Defines:
//   rd_malloc/rd_calloc/rd_realloc/rd_free   fallible: return NULL on failure (callers return
//                                            RD_ERR_NOMEM)
//   rd_xmalloc/rd_xcalloc/rd_xrealloc        infallible: abort the job on out-of-memory
//   rd_aligned_alloc/rd_aligned_free         64-byte aligned slabs for BLAS/SIMD
//   rd_xstrdup
//   rd_allocator, rd_alloc_set()             replace the allocator (tests inject failures)
#ifndef RD_ALLOC_H
#define RD_ALLOC_H

#include <stddef.h>

#define RD_ALIGN 64

typedef struct rd_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} rd_allocator;

/** Replace the allocator (NULL restores libc). Call before any allocation you want to affect,
 *  never while memory from the previous allocator is still to be freed by the new one unless
 *  both share a heap (tests wrap libc, so they do). */
void rd_alloc_set(const rd_allocator *a);

void *rd_malloc(size_t size);
void *rd_calloc(size_t n, size_t size);
void *rd_realloc(void *ptr, size_t size);
void rd_free(void *ptr);

void *rd_xmalloc(size_t size);
void *rd_xcalloc(size_t n, size_t size);
void *rd_xrealloc(void *ptr, size_t size);
char *rd_xstrdup(const char *s);

/** 64-byte aligned, size rounded up to a multiple of 64. Free with rd_aligned_free.
 *  @return NULL on failure. */
void *rd_aligned_alloc(size_t size);
/** Infallible variant. */
void *rd_aligned_xalloc(size_t size);
void rd_aligned_free(void *ptr);

#endif // RD_ALLOC_H
