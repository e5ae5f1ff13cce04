// rd/alloc.h — allocation with a swappable allocator (for out-of-memory injection in tests).
//
// Defines:
//   rd_malloc/rd_calloc/rd_realloc/rd_free   fallible: return NULL on failure (callers return
//                                            RD_ERR_NOMEM)
//   rd_xmalloc/rd_xcalloc/rd_xrealloc        infallible: abort the job on out-of-memory
//   rd_aligned_alloc/rd_aligned_free         64-byte aligned slabs for BLAS/SIMD
//   rd_alloc_advise_huge()                   ask for transparent huge pages on a large block
//   rd_xstrdup
//   rd_allocator, rd_alloc_set()             replace the allocator (tests inject failures)
//   rd_mem_limit()                           the memory this process may use (node, cgroup)
#ifndef RD_ALLOC_H
#define RD_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

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

/** Ask for transparent huge pages (madvise MADV_HUGEPAGE) on the 2 MiB-aligned interior of
 *  [p, p + bytes): large slabs and tables accessed at random (or pinned page by page by CMA)
 *  otherwise miss the TLB on most accesses with 4 KiB pages. Advisory: a failed madvise is
 *  ignored, and the memory stays valid either way.
 *  @return the bytes of the interior asked for; 0 when there is none (bytes < 2 MiB past the
 *          first 2 MiB boundary) or the system has no MADV_HUGEPAGE */
size_t rd_alloc_advise_huge(void *p, size_t bytes);

/**
 * The bytes this process may use: the smaller of the node's physical memory and the memory limit
 * of its cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`, the smallest on the way from its
 * cgroup up to the root of the hierarchy; under v1 an ancestor's limit counts only while the
 * ancestors up to it have `memory.use_hierarchy` = 1, a missing file counting as 1), which is
 * what a Slurm job step with task/cgroup gets.
 * Checks of large allocations compare their estimate with it, so that a request that cannot be
 * met is an error naming its config keys, not an OOM kill after the memory was touched.
 * @param[out] what  if not NULL: "this node's memory" or "the memory limit of this process's
 *                   cgroup" (static strings), whichever gave the result
 * @return bytes, or 0 when neither is known
 */
unsigned long long rd_mem_limit(const char **what);

/** rd_mem_limit's cgroup part, for tests: the limit under the cgroup file system mounted at
 *  `root` for a process whose /proc/self/cgroup reads `proc_cgroup`; 0 = none found. */
unsigned long long rd__cgroup_mem_limit(const char *root, const char *proc_cgroup);

#ifdef __cplusplus
}
#endif
#endif // RD_ALLOC_H
