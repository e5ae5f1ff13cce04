// rd/msg.h — the wire format of parameter-server requests and replies.
//
// Defines:
//   rd_msg_op                ops: PULL PUSH CLOCK STATS SAVE LOAD SHUTDOWN, and the range of ops
//                            left to other modules (token store) [RD_OP_USER_MIN, RD_OP_USER_MAX]
//   rd_msg_header            64-byte header in front of every message (requests and replies)
//   rd_msg_encode()          header -> 64 little-endian bytes
//   rd_msg_decode()          bytes -> header; checks magic, version and the received length
//   rd_msg_check_request()   op-specific consistency of count / dim / payload size, bounded by
//                            ps.max_msg_bytes; never trusts a size, never overflows
//   rd_msg_check_reply()     a reply matches the request it answers
//   rd_msg_shm, rd_msg_shm_encode/decode(), rd_msg_check_shm()  the descriptor of a request whose
//                            payload sits in a same-node shared-memory region (RD_MSG_FLAG_SHM)
//   rd_msg_op_name()
//   rd_le_put16/32/64(), rd_le_get16/32/64()  little-endian fields of these formats
//   RD_MSG_SLOT_*, rd_msg_slot()  the reply slot carried in the low 12 bits of req_id, and the
//                            slots reserved for clients other than rd_kv (token store)
//
// Layout (little-endian, 64 bytes):
//   0 u32 magic "RDPS"   4 u16 version   6 u16 op   8 i32 status (rd_status; replies)
//   12 u32 table         16 u64 count    24 u32 dim 28 u32 flags
//   32 u64 req_id        40 u64 payload_bytes        48 i64 step (sender clock)
//   56 i64 stream_time (seconds)
// A request is ONE message: header + payload, contiguous (validated as a whole).
// Payloads (after the header):
//   PULL     request: count u64 keys                  reply: count*dim f32 values, sent as a
//            second message on RD_TAG_PS_DATA_BASE + slot (flag RD_MSG_FLAG_SPLIT; the header
//            message has no payload and count/dim give the size of the second one) so that
//            the values land directly in the caller's array with one copy
//   PUSH     request: count u64 keys, count*dim f32   reply: none
//   CLOCK    request: none (step = the step it ends, stream_time = time reached)  reply: none
//   STATS    request: none (table, or RD_MSG_ALL_TABLES)  reply: table statistics (ps module)
//   SAVE / LOAD  request: checkpoint directory + table list (ps module)  reply: shard info
//   SHUTDOWN request: none                            reply: none
//   ATTACH   request: RD_MSG_ATTACH_BYTES naming the sender's shared-memory region (ps module)
//            reply: none (an error reply when the PS cannot map it: then the client uses MPI)
// Shared-memory requests (flag RD_MSG_FLAG_SHM, PULL and PUSH only, after an ATTACH): the
//   message payload is a RD_MSG_SHM_DESC_BYTES descriptor (rd_msg_shm); the keys (and gradients)
//   are at [req_off, req_off + req_bytes) of the sender's region, laid out as the MPI payload
//   would be. A PULL's values are written by the server at [reply_off, + count*dim*4) and its
//   reply is the header alone with RD_MSG_FLAG_SHM (no data message). The server reads the
//   request and writes the reply region only until it sends the reply.
//   any op, error reply: status < 0, payload = UTF-8 error text (not NUL-terminated)
// Reply slots: a reply goes to tag RD_TAG_PS_REPLY_BASE + rd_msg_slot(req_id) (PULL values to
// RD_TAG_PS_DATA_BASE + slot). Several clients share rd_comm.kv in one process, so the 4096 slots
// are partitioned: rd_kv owns [0, RD_MSG_SLOT_KV_END); [RD_MSG_SLOT_KV_END, RD_MSG_SLOTS) is
// reserved for other clients, of which rd_token_client uses [RD_MSG_SLOT_TOKEN_FIRST,
// RD_MSG_SLOTS) (slot 4095 - k for its in-flight slot k). A built-in op (PULL ... SHUTDOWN) with
// a reserved slot is rejected by rd_msg_check_request, and its error reply goes to
// RD_TAG_PS_BADMSG: answering on the reserved tag would hand it to another client.
// This decoder is exposed to arbitrary bytes from the network (and fuzzed): every function
// checks sizes against the received length before reading.
#ifndef RD_MSG_H
#define RD_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

// Little-endian fields of the wire formats (headers, descriptors, ATTACH payloads): byte by byte,
// so they read the same on any host and at any alignment.
static inline void rd_le_put16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline void rd_le_put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void rd_le_put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint16_t rd_le_get16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t rd_le_get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static inline uint64_t rd_le_get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#define RD_MSG_MAGIC        0x53504452u // bytes "RDPS"
#define RD_MSG_VERSION      1
#define RD_MSG_HEADER_BYTES 64
#define RD_MSG_MAX_DIM      1024        // largest embedding dim on the wire (= config limit)
#define RD_MSG_ALL_TABLES   0xffffffffu // STATS over every table
#define RD_MSG_ERRTEXT_MAX  512         // longest error text in an error reply

#define RD_MSG_SLOT_BITS        12   // req_id & RD_MSG_SLOT_MASK = slot
#define RD_MSG_SLOTS            4096 // reply slots per client process
#define RD_MSG_SLOT_MASK        (RD_MSG_SLOTS - 1)
#define RD_MSG_SLOTS_RESERVED   256                                    // top slots kept from rd_kv
#define RD_MSG_SLOT_KV_END      (RD_MSG_SLOTS - RD_MSG_SLOTS_RESERVED) // rd_kv: [0, 3840)
#define RD_MSG_SLOT_TOKEN_FIRST (RD_MSG_SLOTS - 16) // rd_token_client: [4080, 4096)

#define RD_MSG_FLAG_REPLY 0x1u // set on replies
#define RD_MSG_FLAG_SPLIT 0x2u // reply: the payload follows as a second message (data tag)
#define RD_MSG_FLAG_SHM                                                                            \
    0x4u // request: the payload is an rd_msg_shm descriptor; PULL reply:
         // the values are in the sender's shared-memory region
#define RD_MSG_FLAG_READ                                                                           \
    0x8u // PULL request: a read (evaluation): the rows or initial values, without the sightings
         // of a training pull (last-seen, admission count, new row, `pulled`); rd_kv_set_read

#define RD_MSG_SHM_DESC_BYTES 32  // an encoded rd_msg_shm
#define RD_MSG_SHM_ALIGN      64  // request and reply offsets are multiples of this
#define RD_MSG_SHM_RESERVED   64  // bytes at the start of a region that no request may use
#define RD_MSG_ATTACH_BYTES   128 // payload of an ATTACH request

typedef enum rd_msg_op {
    RD_OP_PULL = 1,
    RD_OP_PUSH = 2,
    RD_OP_CLOCK = 3,
    RD_OP_STATS = 4,
    RD_OP_SAVE = 5,
    RD_OP_LOAD = 6,
    RD_OP_SHUTDOWN = 7,
    RD_OP_ATTACH = 8, // map the sender's shared-memory region (same node)
    RD_OP_BUILTIN_MAX = 8,
    RD_OP_USER_MIN = 32,  // first op other modules may register (rd_server_register)
    RD_OP_USER_MAX = 255, // last one
} rd_msg_op;

typedef struct rd_msg_header {
    uint32_t magic;         // RD_MSG_MAGIC
    uint16_t version;       // RD_MSG_VERSION
    uint16_t op;            // rd_msg_op
    int32_t status;         // RD_OK in requests; rd_status in replies
    uint32_t table;         // table index in cfg.ps.tables (or RD_MSG_ALL_TABLES)
    uint64_t count;         // keys (or items) in the payload
    uint32_t dim;           // floats per key in the payload (0 when none)
    uint32_t flags;         // RD_MSG_FLAG_*
    uint64_t req_id;        // chosen by the client, echoed by the reply
    uint64_t payload_bytes; // bytes after the header; must equal the received length - 64
    int64_t step;           // the sender's step (clock)
    int64_t stream_time;    // the sender's stream time in seconds
} rd_msg_header;

/** Where a shared-memory request's payload and reply are, in the sender's region. */
typedef struct rd_msg_shm {
    uint64_t region;    // id of the region (must be the one the sender attached)
    uint64_t req_off;   // keys (PULL) or keys + gradients (PUSH)
    uint64_t req_bytes; // 8 * count (PULL) or (8 + 4 * dim) * count (PUSH)
    uint64_t reply_off; // PULL: count * dim floats written here; PUSH: 0
} rd_msg_shm;

/** The reply slot of a request id (its low RD_MSG_SLOT_BITS bits). */
static inline unsigned rd_msg_slot(uint64_t req_id) {
    return (unsigned)(req_id & RD_MSG_SLOT_MASK);
}

/** 1 if `slot` belongs to the reserved range [RD_MSG_SLOT_KV_END, RD_MSG_SLOTS) (not rd_kv's). */
static inline int rd_msg_slot_reserved(unsigned slot) {
    return slot >= RD_MSG_SLOT_KV_END && slot < RD_MSG_SLOTS;
}

/** Write `h` as 64 little-endian bytes. */
void rd_msg_encode(const rd_msg_header *h, unsigned char out[RD_MSG_HEADER_BYTES]);

/**
 * Read a header from `len` received bytes.
 * @return RD_OK, RD_ERR_PROTO (shorter than a header, bad magic, payload_bytes != len - 64),
 *         RD_ERR_VERSION (other version). `eb` says which and what was received. On failure
 *         *h still holds whatever fields could be read (zeroed otherwise), so that a reply can
 *         echo req_id when the magic was right.
 */
int rd_msg_decode(const void *buf, size_t len, rd_msg_header *h, rd_errbuf *eb);

/**
 * Op-specific checks of a decoded request: the op is built in or in the user range, status is
 * clear, flags are clear except RD_MSG_FLAG_READ on PULL and RD_MSG_FLAG_SHM on PULL/PUSH (then
 * the payload is exactly
 * RD_MSG_SHM_DESC_BYTES and count/dim are checked as below against the descriptor's size, by
 * rd_msg_check_shm), payload_bytes <= max_payload, a built-in op's req_id slot is not reserved
 * (rd_msg_slot_reserved), and for built-in ops count/dim/payload agree
 * (PULL: 8*count; PUSH: (8 + 4*dim)*count with 1 <= dim <= RD_MSG_MAX_DIM; CLOCK, STATS,
 * SHUTDOWN: empty; SAVE/LOAD: 1..max_payload bytes; ATTACH: RD_MSG_ATTACH_BYTES). Tables are
 * checked by the server, which knows them.
 * @return RD_OK, RD_ERR_PROTO, RD_ERR_UNSUPPORTED (unknown op), RD_ERR_RANGE (too big).
 */
int rd_msg_check_request(const rd_msg_header *h, uint64_t max_payload, rd_errbuf *eb);

/** Write `d` as RD_MSG_SHM_DESC_BYTES little-endian bytes. */
void rd_msg_shm_encode(const rd_msg_shm *d, unsigned char out[RD_MSG_SHM_DESC_BYTES]);
/** Read a descriptor (the caller checked that RD_MSG_SHM_DESC_BYTES bytes are there). */
void rd_msg_shm_decode(const unsigned char in[RD_MSG_SHM_DESC_BYTES], rd_msg_shm *d);

/**
 * A shared-memory descriptor against the region the sender attached (id `region`, `region_bytes`
 * long) and the request header `h` (already accepted by rd_msg_check_request): the region id
 * matches; req_bytes is what count and dim need and at most max_payload; both ranges are
 * RD_MSG_SHM_ALIGN-aligned, start at or after RD_MSG_SHM_RESERVED, end inside the region
 * (no overflow) and do not overlap; a PUSH has reply_off 0.
 * @return RD_OK, RD_ERR_STATE (another region), RD_ERR_PROTO, RD_ERR_RANGE (outside the
 *         region or above max_payload); `eb` names the field and the values.
 */
int rd_msg_check_shm(const rd_msg_header *h,
                     const rd_msg_shm *d,
                     uint64_t region,
                     uint64_t region_bytes,
                     uint64_t max_payload,
                     rd_errbuf *eb);

/** A reply answers request (op, req_id): magic/version already checked by rd_msg_decode; the
 *  reply flag is set and op/req_id match. @return RD_OK or RD_ERR_PROTO. */
int rd_msg_check_reply(const rd_msg_header *reply, unsigned op, uint64_t req_id, rd_errbuf *eb);

/** "PULL", "PUSH", ..., "USER(40)", "UNKNOWN(9)" into a static table or `buf` (>= 16 bytes). */
const char *rd_msg_op_name(unsigned op, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif // RD_MSG_H
