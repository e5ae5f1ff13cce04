// ps_shm.c — same-node shared-memory regions between a worker's rd_kv and the PS ranks, and the
// small allocator of request ranges inside a region. The protocol is in rd/msg.h (ATTACH,
// RD_MSG_FLAG_SHM), the formats in ps_internal.h.
//
// Why a memfd opened through /proc/<pid>/fd: it has no name, so nothing is left behind in
// /dev/shm when a rank dies, and the peer needs the same permission as the kernel copies
// (process_vm_readv) MPI already uses between these ranks. The identity check (host name, boot
// id, then the id and size written in the region itself) makes sure the peer maps the region
// it was told about, not a file of an unrelated process with the same pid elsewhere.
#define _GNU_SOURCE // memfd_create
#include "ps_internal.h"

#include "rd/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_MAGIC 0x4745524d48534452ull // bytes "RDSHMREG"

// This node's identity: host name and kernel boot id ("" when unreadable).
static void node_identity(char host[RD__SHM_HOST], char boot[RD__SHM_BOOT]) {
    memset(host, 0, RD__SHM_HOST);
    memset(boot, 0, RD__SHM_BOOT);
    if (gethostname(host, RD__SHM_HOST - 1) != 0)
        host[0] = '\0';
    host[RD__SHM_HOST - 1] = '\0';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, RD__SHM_BOOT, f))
            boot[0] = '\0';
        fclose(f);
        boot[strcspn(boot, "\n")] = '\0';
    }
}

int rd__shm_create(
    uint64_t bytes, uint64_t id, rd__shm_region *r, rd__shm_attach *a, rd_errbuf *eb) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
    if (bytes < 2 * RD_MSG_SHM_RESERVED || bytes > (uint64_t)SIZE_MAX / 2)
        return rd_err_set(eb, RD_ERR_ARG, "shared-memory region of %" PRIu64 " bytes", bytes);
    int fd = memfd_create("rd-kv-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return rd_err_set(eb, RD_ERR_IO, "memfd_create: %s", strerror(errno));
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int e = errno;
        close(fd);
        return rd_err_set(eb, RD_ERR_IO, "ftruncate of a %" PRIu64 "-byte memfd: %s", bytes,
                          strerror(e));
    }
    // Sealed at its size: a peer that mapped it can never be made to touch pages past the end
    // of the file (SIGBUS) by someone shrinking it.
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int e = errno;
        close(fd);
        return rd_err_set(eb, RD_ERR_IO, "sealing a memfd: %s", strerror(e));
    }
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        return rd_err_set(eb, RD_ERR_IO, "mmap of a %" PRIu64 "-byte memfd: %s", bytes,
                          strerror(e));
    }
    r->base = p;
    r->bytes = bytes;
    r->id = id;
    r->fd = fd;
    rd_le_put64(r->base, SHM_MAGIC);
    rd_le_put64(r->base + 8, id);
    rd_le_put64(r->base + 16, bytes);
    memset(a, 0, sizeof *a);
    a->pid = (uint32_t)getpid();
    a->fd = (uint32_t)fd;
    a->bytes = bytes;
    a->id = id;
    node_identity(a->host, a->boot);
    return RD_OK;
}

int rd__shm_map(const rd__shm_attach *a, rd__shm_region *r, rd_errbuf *eb) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
    char host[RD__SHM_HOST], boot[RD__SHM_BOOT];
    node_identity(host, boot);
    if (!host[0] || !boot[0] || strcmp(host, a->host) != 0 || strcmp(boot, a->boot) != 0)
        return rd_err_set(eb, RD_ERR_UNSUPPORTED,
                          "the region is on node %s (boot %s), this rank is on %s (boot %s)",
                          a->host, a->boot, host, boot);
    if (a->bytes < 2 * RD_MSG_SHM_RESERVED || a->bytes > (uint64_t)SIZE_MAX / 2)
        return rd_err_set(eb, RD_ERR_PROTO, "shared-memory region of %" PRIu64 " bytes", a->bytes);
    char path[64];
    snprintf(path, sizeof path, "/proc/%" PRIu32 "/fd/%" PRIu32, a->pid, a->fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return rd_err_set(eb, RD_ERR_IO, "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != a->bytes) {
        close(fd);
        return rd_err_set(eb, RD_ERR_PROTO, "%s is not a %" PRIu64 "-byte region", path, a->bytes);
    }
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        close(fd);
        return rd_err_set(eb, RD_ERR_PROTO, "%s is not sealed against shrinking", path);
    }
    void *p = mmap(NULL, (size_t)a->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd); // the mapping keeps the memory
    if (p == MAP_FAILED)
        return rd_err_set(eb, RD_ERR_IO, "mmap %s: %s", path, strerror(e));
    const unsigned char *b = p;
    if (rd_le_get64(b) != SHM_MAGIC || rd_le_get64(b + 8) != a->id ||
        rd_le_get64(b + 16) != a->bytes) {
        munmap(p, (size_t)a->bytes);
        return rd_err_set(eb, RD_ERR_PROTO,
                          "%s does not hold region %016" PRIx64 " (its header differs)", path,
                          a->id);
    }
    r->base = p;
    r->bytes = a->bytes;
    r->id = a->id;
    return RD_OK;
}

void rd__shm_unmap(rd__shm_region *r) {
    if (r->base)
        munmap(r->base, (size_t)r->bytes);
    if (r->fd >= 0)
        close(r->fd);
    r->base = NULL;
    r->bytes = 0;
    r->fd = -1;
}

void rd__shm_attach_encode(const rd__shm_attach *a, unsigned char out[RD_MSG_ATTACH_BYTES]) {
    memset(out, 0, RD_MSG_ATTACH_BYTES);
    rd_le_put32(out + 0, a->pid);
    rd_le_put32(out + 4, a->fd);
    rd_le_put64(out + 8, a->bytes);
    rd_le_put64(out + 16, a->id);
    memcpy(out + 24, a->host, RD__SHM_HOST);
    memcpy(out + 24 + RD__SHM_HOST, a->boot, RD__SHM_BOOT);
}

_Static_assert(24 + RD__SHM_HOST + RD__SHM_BOOT == RD_MSG_ATTACH_BYTES, "ATTACH payload layout");

int rd__shm_attach_decode(const void *buf, size_t len, rd__shm_attach *a, rd_errbuf *eb) {
    memset(a, 0, sizeof *a);
    if (len != RD_MSG_ATTACH_BYTES)
        return rd_err_set(eb, RD_ERR_PROTO, "ATTACH payload of %zu bytes (expected %d)", len,
                          RD_MSG_ATTACH_BYTES);
    const unsigned char *p = buf;
    a->pid = rd_le_get32(p);
    a->fd = rd_le_get32(p + 4);
    a->bytes = rd_le_get64(p + 8);
    a->id = rd_le_get64(p + 16);
    memcpy(a->host, p + 24, RD__SHM_HOST);
    memcpy(a->boot, p + 24 + RD__SHM_HOST, RD__SHM_BOOT);
    if (a->host[RD__SHM_HOST - 1] != '\0' || a->boot[RD__SHM_BOOT - 1] != '\0')
        return rd_err_set(eb, RD_ERR_PROTO, "ATTACH host name or boot id not NUL-terminated");
    return RD_OK;
}

// ---------------------------------------------------------------------------------------------
// Allocator

void rd__shm_arena_init(rd__shm_arena *a, uint64_t bytes) {
    memset(a, 0, sizeof *a);
    a->bytes = bytes;
}

void rd__shm_arena_free_all(rd__shm_arena *a) {
    rd_free(a->off);
    rd_free(a->len);
    a->off = a->len = NULL;
    a->n = a->cap = 0;
}

int rd__shm_alloc(rd__shm_arena *a, uint64_t bytes, uint64_t *off) {
    const uint64_t al = RD_MSG_SHM_ALIGN;
    if (bytes == 0)
        bytes = al;
    if (bytes > a->bytes)
        return RD_ERR_FULL;
    bytes = (bytes + al - 1) / al * al;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        uint64_t *no = rd_realloc(a->off, nc * sizeof *no);
        if (!no)
            return RD_ERR_NOMEM;
        a->off = no;
        uint64_t *nl = rd_realloc(a->len, nc * sizeof *nl);
        if (!nl)
            return RD_ERR_NOMEM;
        a->len = nl;
        a->cap = nc;
    }
    uint64_t at = RD_MSG_SHM_RESERVED;
    size_t i = 0;
    for (; i <= a->n; i++) {
        uint64_t end = i < a->n ? a->off[i] : a->bytes;
        if (end >= at && end - at >= bytes)
            break;
        if (i < a->n)
            at = a->off[i] + a->len[i];
    }
    if (i > a->n)
        return RD_ERR_FULL;
    memmove(a->off + i + 1, a->off + i, (a->n - i) * sizeof *a->off);
    memmove(a->len + i + 1, a->len + i, (a->n - i) * sizeof *a->len);
    a->off[i] = at;
    a->len[i] = bytes;
    a->n++;
    *off = at;
    return RD_OK;
}

int rd__shm_release(rd__shm_arena *a, uint64_t off) {
    for (size_t i = 0; i < a->n; i++)
        if (a->off[i] == off) {
            memmove(a->off + i, a->off + i + 1, (a->n - i - 1) * sizeof *a->off);
            memmove(a->len + i, a->len + i + 1, (a->n - i - 1) * sizeof *a->len);
            a->n--;
            return RD_OK;
        }
    return RD_ERR_NOTFOUND;
}
