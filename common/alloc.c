// alloc.c — allocator indirection. Aligned blocks store the raw pointer just before the aligned
// address so that they can be released through the same swappable free. rd_mem_limit reads the
// node's memory and the cgroup limit (the budget large-allocation checks compare against).
// rd_alloc_advise_huge asks for transparent huge pages on large blocks (the model's slabs, the
// PS tables, message buffers).
#include "rd/alloc.h"
#include "rd/error.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

// The kernel's default THP mode here is "madvise": a block gets huge pages only when asked. Only
// the aligned interior can be backed by them; the ragged ends stay on 4 KiB pages.
size_t rd_alloc_advise_huge(void *p, size_t bytes) {
#if defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (hi <= lo)
        return 0;
    (void)madvise((void *)lo, (size_t)(hi - lo), MADV_HUGEPAGE);
    return (size_t)(hi - lo);
#else
    (void)p;
    (void)bytes;
    return 0;
#endif
}

// ---------------------------------------------------------------------------------------------
// The memory a process may use

// A limit file's value: a number of bytes, or "max" (v2) / a value near 2^63 (v1) for none.
static unsigned long long read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (buf[0] < '0' || buf[0] > '9')
        return 0; // "max", or unreadable
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf || v >= (1ULL << 62))
        return 0;
    return v;
}

// Whether a cgroup v1 memory directory accounts its descendants (memory.use_hierarchy = 1). A
// file that is missing or unreadable counts as hierarchical: since Linux 5.11 every v1 memory
// cgroup is, and the file reads 1.
static int v1_hierarchical(const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/memory.use_hierarchy", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    int c = fgetc(f);
    fclose(f);
    return c != '0';
}

// The smallest limit from dir up to root. Under v2 each ancestor's limit applies to its
// descendants. Under v1 (`v1` set) a parent's limit applies to a child only when the parent has
// memory.use_hierarchy = 1 (the kernel links the child's page counter to the parent's only
// then), so the walk stops below the first ancestor without it.
static unsigned long long walk_limits(const char *root, const char *rel, const char *file, int v1) {
    char dir[1024];
    int w = snprintf(dir, sizeof dir, "%s%s", root, rel);
    if (w < 0 || (size_t)w >= sizeof dir)
        return 0;
    size_t rlen = strlen(root);
    unsigned long long best = 0;
    for (;;) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, file);
        unsigned long long v = read_limit(path);
        if (v && (!best || v < best))
            best = v;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < rlen)
            break;
        *slash = '\0';
        if (strlen(dir) < rlen)
            break;
        if (v1 && !v1_hierarchical(dir))
            break;
    }
    return best;
}

unsigned long long rd__cgroup_mem_limit(const char *root, const char *proc_cgroup) {
    unsigned long long best = 0;
    for (const char *line = proc_cgroup; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        // "hierarchy-id:controllers:path"
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2) {
            char ctl[256], rel[900];
            size_t nc = (size_t)(c2 - c1 - 1), nr = len - (size_t)(c2 + 1 - line);
            if (nc < sizeof ctl && nr < sizeof rel) {
                memcpy(ctl, c1 + 1, nc);
                ctl[nc] = '\0';
                memcpy(rel, c2 + 1, nr);
                rel[nr] = '\0';
                if (strcmp(rel, "/") == 0)
                    rel[0] = '\0';
                unsigned long long v = 0;
                if (nc == 0) { // v2: one unified hierarchy
                    v = walk_limits(root, rel, "memory.max", 0);
                } else {
                    int mem = 0; // "memory" among the comma-separated controllers
                    for (const char *tok = ctl; *tok;) {
                        size_t tl = strcspn(tok, ",");
                        mem |= tl == 6 && memcmp(tok, "memory", 6) == 0;
                        tok += tl + (tok[tl] == ',');
                    }
                    if (mem) {
                        char r1[512];
                        snprintf(r1, sizeof r1, "%s/memory", root);
                        v = walk_limits(r1, rel, "memory.limit_in_bytes", 1);
                    }
                }
                if (v && (!best || v < best))
                    best = v;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return best;
}

unsigned long long rd_mem_limit(const char **what) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    unsigned long long phys =
        pages > 0 && psz > 0 ? (unsigned long long)pages * (unsigned long long)psz : 0;
    unsigned long long cg = 0;
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        cg = rd__cgroup_mem_limit("/sys/fs/cgroup", buf);
    }
    int use_cg = cg && (!phys || cg < phys);
    if (what)
        *what = use_cg ? "the memory limit of this process's cgroup" : "this node's memory";
    return use_cg ? cg : phys;
}
