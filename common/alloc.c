// alloc.c — allocator indirection. Aligned blocks store the raw pointer just before the aligned
// address so that they can be released through the same swappable free.
#include "rd/alloc.h"
#include "rd/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static rd_allocator g_alloc = {malloc, realloc, free};

void rd_alloc_set(const rd_allocator *a) {
    if (a) {
        g_alloc = *a;
    } else {
        g_alloc.malloc_fn = malloc;
        g_alloc.realloc_fn = realloc;
        g_alloc.free_fn = free;
    }
}

void *rd_malloc(size_t size) {
    return g_alloc.malloc_fn(size ? size : 1);
}

void *rd_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = rd_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *rd_realloc(void *ptr, size_t size) {
    return g_alloc.realloc_fn(ptr, size ? size : 1);
}

void rd_free(void *ptr) {
    if (ptr)
        g_alloc.free_fn(ptr);
}

void *rd_xmalloc(size_t size) {
    void *p = rd_malloc(size);
    RD_ASSERT_MSG(p != NULL, "out of memory allocating %zu bytes", size);
    return p;
}

void *rd_xcalloc(size_t n, size_t size) {
    void *p = rd_calloc(n, size);
    RD_ASSERT_MSG(p != NULL, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *rd_xrealloc(void *ptr, size_t size) {
    void *p = rd_realloc(ptr, size);
    RD_ASSERT_MSG(p != NULL, "out of memory reallocating %zu bytes", size);
    return p;
}

char *rd_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = rd_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *rd_aligned_alloc(size_t size) {
    size_t rounded = (size + RD_ALIGN - 1) / RD_ALIGN * RD_ALIGN;
    if (rounded < size || rounded > SIZE_MAX - RD_ALIGN - sizeof(void *))
        return NULL;
    unsigned char *raw = rd_malloc(rounded + RD_ALIGN + sizeof(void *));
    if (!raw)
        return NULL;
    uintptr_t a = ((uintptr_t)(raw + sizeof(void *)) + RD_ALIGN - 1) & ~(uintptr_t)(RD_ALIGN - 1);
    ((void **)a)[-1] = raw;
    return (void *)a;
}

void *rd_aligned_xalloc(size_t size) {
    void *p = rd_aligned_alloc(size);
    RD_ASSERT_MSG(p != NULL, "out of memory allocating %zu aligned bytes", size);
    return p;
}

void rd_aligned_free(void *ptr) {
    if (ptr)
        rd_free(((void **)ptr)[-1]);
}
