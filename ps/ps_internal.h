// ps_internal.h — private helpers shared by the PS server (server.c) and its client (kv.c):
// payload formats of STATS / SAVE / LOAD, the datatype used to drain a message of an
// unexpected size without allocating it, and huge-page advice for large message buffers.
//
// Payload formats (little-endian hosts; all fields fixed-size):
//   checkpoint request (SAVE, LOAD):  u32 n_tables | u32 path_len | u32 flags | u32 crc |
//                                     path bytes (no NUL) | u32 table index[n_tables]
//                                     flags bit 0: crc is the expected shard CRC (LOAD)
//                                     bits 1-3 (LOAD, at most one): the phase of an
//                                     all-or-nothing load: STAGE (read and verify into
//                                     tables kept aside; the job's step requests wait),
//                                     then COMMIT (install them) or ABORT (drop them).
//                                     No phase bit: read and install at once (one shard).
//   shard info reply (SAVE, LOAD):    u32 crc | u32 n_tables | {u64 rows, u64 pending}[n_tables]
//   stats reply:                      {u32 index | u32 0 | 9 x u64 rd_table_stats fields}[n]
#ifndef RD_PS_INTERNAL_H
#define RD_PS_INTERNAL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rd/checkpoint.h"
#include "rd/config.h"
#include "rd/error.h"
#include "rd/msg.h"
#include "rd/table.h"

#define RD__CKPT_FLAG_CRC    0x1u
#define RD__CKPT_FLAG_STAGE  0x2u
#define RD__CKPT_FLAG_COMMIT 0x4u
#define RD__CKPT_FLAG_ABORT  0x8u
#define RD__CKPT_PHASES      (RD__CKPT_FLAG_STAGE | RD__CKPT_FLAG_COMMIT | RD__CKPT_FLAG_ABORT)
#define RD__STATS_RECORD     80 // bytes per table in a STATS reply

typedef struct rd__ckpt_req {
    char dir[RD_PATH_MAX];
    uint32_t n_tables;
    uint32_t tables[RD_MAX_TABLES];
    uint32_t flags;
    uint32_t crc;
} rd__ckpt_req;

/** Bytes of an encoded checkpoint request. */
size_t rd__ckpt_req_bytes(const rd__ckpt_req *r);
/** Encode into out (rd__ckpt_req_bytes(r) bytes). */
void rd__ckpt_req_encode(const rd__ckpt_req *r, unsigned char *out);
/** Decode and validate (path 1..RD_PATH_MAX-1 bytes without NUL, 1..RD_MAX_TABLES unique
 *  tables, exact size, known flags with at most one phase bit). @return RD_OK or RD_ERR_PROTO */
int rd__ckpt_req_decode(const void *buf, size_t len, rd__ckpt_req *r, rd_errbuf *eb);

size_t rd__shard_info_bytes(uint32_t n_tables);
void rd__shard_info_encode(const rd_ckpt_shard_info *info, unsigned char *out);
int rd__shard_info_decode(const void *buf, size_t len, rd_ckpt_shard_info *info, rd_errbuf *eb);

void rd__stats_encode(uint32_t index, const rd_table_stats *st, unsigned char *out);
void rd__stats_decode(const unsigned char *in, uint32_t *index, rd_table_stats *st);

/** A committed datatype receiving a message of `bytes` bytes: the first min(bytes, 64) into
 *  hdr, the rest overwritten into `bounce` (bounce_bytes, a multiple of 64) — a way to drain
 *  an oversized message without allocating its size. The overlapping blocks are deliberate:
 *  the drained bytes are discarded. */
void rd__drain_type(
    MPI_Count bytes, void *hdr, void *bounce, size_t bounce_bytes, MPI_Datatype *out);

/** Ask for transparent huge pages (rd_alloc_advise_huge) on a large message buffer
 *  (no-op below 4 MiB; advisory, failures ignored). Large requests and replies move by CMA
 *  (process_vm_readv), which pins and walks the peer's pages one page-table entry at a time:
 *  huge pages make that walk 512 times shorter and spare TLB misses on both sides. */
void rd__advise_huge(void *p, size_t bytes);

// ---------------------------------------------------------------------------------------------
// Same-node shared memory (ps_shm.c). A worker's rd_kv creates one region (an anonymous memfd)
// and announces it to each PS rank with an ATTACH request; a PS rank on the same node (same
// host name and boot id) opens it through /proc/<pid>/fd/<fd>, checks its size and the id
// written in its first bytes, and maps it. Requests then carry an rd_msg_shm descriptor.
//   region header (the first RD_MSG_SHM_RESERVED bytes): u64 magic "RDSHMREG" | u64 id | u64 bytes
//   ATTACH payload (RD_MSG_ATTACH_BYTES): u32 pid | u32 fd | u64 bytes | u64 id |
//                                         char host[64] | char boot_id[40] (NUL-padded)

#define RD__SHM_HOST 64
#define RD__SHM_BOOT 40

typedef struct rd__shm_region {
    unsigned char *base; // NULL when not mapped
    uint64_t bytes;
    uint64_t id;
    int fd; // the creator's memfd; -1 on the mapping side
} rd__shm_region;

typedef struct rd__shm_attach {
    uint32_t pid, fd;
    uint64_t bytes, id;
    char host[RD__SHM_HOST];
    char boot[RD__SHM_BOOT];
} rd__shm_attach;

/** Create a region of `bytes` (>= 2 * RD_MSG_SHM_RESERVED) with identity `id` and fill *a with
 *  its announcement. @return RD_OK, RD_ERR_IO (memfd_create/ftruncate/mmap failed: eb says) */
int rd__shm_create(
    uint64_t bytes, uint64_t id, rd__shm_region *r, rd__shm_attach *a, rd_errbuf *eb);
/** Map the region announced in *a (creator side or peer). @return RD_OK, RD_ERR_UNSUPPORTED
 *  (another node), RD_ERR_IO (cannot open or map it), RD_ERR_PROTO (size or id differ, or
 *  the file is not sealed against shrinking) */
int rd__shm_map(const rd__shm_attach *a, rd__shm_region *r, rd_errbuf *eb);
/** Unmap (and close the creator's fd). Accepts an unmapped region. */
void rd__shm_unmap(rd__shm_region *r);

void rd__shm_attach_encode(const rd__shm_attach *a, unsigned char out[RD_MSG_ATTACH_BYTES]);
/** @return RD_OK or RD_ERR_PROTO (wrong length, unterminated strings) */
int rd__shm_attach_decode(const void *buf, size_t len, rd__shm_attach *a, rd_errbuf *eb);

/** First-fit allocator of a region's bytes [RD_MSG_SHM_RESERVED, bytes), RD_MSG_SHM_ALIGN
 *  granularity, for the few requests in flight (a sorted array of used ranges). */
typedef struct rd__shm_arena {
    uint64_t bytes;
    uint64_t *off, *len; // (cap) used ranges, sorted by offset
    size_t n, cap;
} rd__shm_arena;

void rd__shm_arena_init(rd__shm_arena *a, uint64_t bytes);
void rd__shm_arena_free_all(rd__shm_arena *a);
/** @return RD_OK and *off, or RD_ERR_FULL (no gap of `bytes`), RD_ERR_NOMEM */
int rd__shm_alloc(rd__shm_arena *a, uint64_t bytes, uint64_t *off);
/** Release the range starting at off. @return RD_OK or RD_ERR_NOTFOUND */
int rd__shm_release(rd__shm_arena *a, uint64_t off);

#endif // RD_PS_INTERNAL_H
