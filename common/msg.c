// msg.c — encode/decode/validate the 64-byte PS message header.
//
// Invariant: nothing here trusts a number it read. Every size is compared with the bytes that
// were actually received, products are computed by division (count <= payload / per_key) so they
// cannot overflow, and failures say what was received. The byte order is written explicitly
// (little-endian) so the format does not depend on struct padding.
#include "rd/msg.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Encode / decode

void rd_msg_encode(const rd_msg_header *h, unsigned char out[RD_MSG_HEADER_BYTES]) {
    rd_le_put32(out + 0, h->magic);
    rd_le_put16(out + 4, h->version);
    rd_le_put16(out + 6, h->op);
    rd_le_put32(out + 8, (uint32_t)h->status);
    rd_le_put32(out + 12, h->table);
    rd_le_put64(out + 16, h->count);
    rd_le_put32(out + 24, h->dim);
    rd_le_put32(out + 28, h->flags);
    rd_le_put64(out + 32, h->req_id);
    rd_le_put64(out + 40, h->payload_bytes);
    rd_le_put64(out + 48, (uint64_t)h->step);
    rd_le_put64(out + 56, (uint64_t)h->stream_time);
}

int rd_msg_decode(const void *buf, size_t len, rd_msg_header *h, rd_errbuf *eb) {
    memset(h, 0, sizeof *h);
    if (!buf || len < RD_MSG_HEADER_BYTES)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "message of %zu bytes is shorter than the %d-byte header", len,
                          RD_MSG_HEADER_BYTES);
    const unsigned char *p = buf;
    h->magic = rd_le_get32(p + 0);
    if (h->magic != RD_MSG_MAGIC)
        return rd_err_set(eb, RD_ERR_PROTO, "bad magic 0x%08" PRIx32 " (expected 0x%08x)", h->magic,
                          RD_MSG_MAGIC);
    h->version = rd_le_get16(p + 4);
    h->op = rd_le_get16(p + 6);
    h->status = (int32_t)rd_le_get32(p + 8);
    h->table = rd_le_get32(p + 12);
    h->count = rd_le_get64(p + 16);
    h->dim = rd_le_get32(p + 24);
    h->flags = rd_le_get32(p + 28);
    h->req_id = rd_le_get64(p + 32);
    h->payload_bytes = rd_le_get64(p + 40);
    h->step = (int64_t)rd_le_get64(p + 48);
    h->stream_time = (int64_t)rd_le_get64(p + 56);
    if (h->version != RD_MSG_VERSION)
        return rd_err_set(eb, RD_ERR_VERSION, "message version %u, this build speaks %d",
                          (unsigned)h->version, RD_MSG_VERSION);
    if (h->payload_bytes != (uint64_t)(len - RD_MSG_HEADER_BYTES))
        return rd_err_set(eb, RD_ERR_PROTO,
                          "header says %" PRIu64 " payload bytes, %zu were received",
                          h->payload_bytes, len - RD_MSG_HEADER_BYTES);
    return RD_OK;
}

const char *rd_msg_op_name(unsigned op, char *buf, size_t cap) {
    static const char *names[] = {"?",    "PULL", "PUSH",     "CLOCK", "STATS",
                                  "SAVE", "LOAD", "SHUTDOWN", "ATTACH"};
    if (op >= 1 && op <= RD_OP_BUILTIN_MAX)
        return names[op];
    if (!buf || cap == 0)
        return "?";
    if (op >= RD_OP_USER_MIN && op <= RD_OP_USER_MAX)
        snprintf(buf, cap, "USER(%u)", op);
    else
        snprintf(buf, cap, "UNKNOWN(%u)", op);
    return buf;
}

// ---------------------------------------------------------------------------------------------
// Validation

int rd_msg_check_request(const rd_msg_header *h, uint64_t max_payload, rd_errbuf *eb) {
    char nb[24];
    const char *name = rd_msg_op_name(h->op, nb, sizeof nb);
    int builtin = h->op >= 1 && h->op <= RD_OP_BUILTIN_MAX;
    int user = h->op >= RD_OP_USER_MIN && h->op <= RD_OP_USER_MAX;
    if (!builtin && !user)
        return rd_err_set(eb, RD_ERR_UNSUPPORTED, "unknown op %u", (unsigned)h->op);
    // PULL may carry SHM and READ, PUSH SHM; everything else no flag at all.
    const uint32_t allowed = h->op == RD_OP_PULL   ? RD_MSG_FLAG_SHM | RD_MSG_FLAG_READ
                             : h->op == RD_OP_PUSH ? RD_MSG_FLAG_SHM
                                                   : 0u;
    const int shm = (h->flags & RD_MSG_FLAG_SHM) != 0;
    if ((h->flags & ~allowed) != 0 || h->status != RD_OK)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "%s request with flags 0x%x and status %d (both must "
                          "be 0, or flags 0x%x on PULL, 0x%x on PUSH)",
                          name, (unsigned)h->flags, (int)h->status,
                          RD_MSG_FLAG_SHM | RD_MSG_FLAG_READ, RD_MSG_FLAG_SHM);
    if (h->payload_bytes > max_payload)
        return rd_err_set(eb, RD_ERR_RANGE,
                          "%s payload of %" PRIu64 " bytes exceeds ps.max_msg_bytes (%" PRIu64 ")",
                          name, h->payload_bytes, max_payload);
    if (user)
        return RD_OK;
    // The reply would go to a tag owned by another client of rd_comm.kv (token store).
    if (rd_msg_slot_reserved(rd_msg_slot(h->req_id)))
        return rd_err_set(eb, RD_ERR_PROTO,
                          "%s request id %" PRIu64 " uses reply slot %u, reserved for other "
                          "clients (rd_kv slots are 0..%d)",
                          name, h->req_id, rd_msg_slot(h->req_id), RD_MSG_SLOT_KV_END - 1);
    if (shm) {
        // The payload is a descriptor; the keys and gradients are in the sender's region and
        // rd_msg_check_shm checks their size. Bound count here so that size cannot overflow.
        if (h->payload_bytes != RD_MSG_SHM_DESC_BYTES)
            return rd_err_set(eb, RD_ERR_PROTO,
                              "shared-memory %s with a payload of %" PRIu64
                              " bytes (the descriptor has %d)",
                              name, h->payload_bytes, RD_MSG_SHM_DESC_BYTES);
        if (h->dim < 1 || h->dim > RD_MSG_MAX_DIM)
            return rd_err_set(eb, RD_ERR_PROTO, "%s with dim %u (must be 1..%d)", name,
                              (unsigned)h->dim, RD_MSG_MAX_DIM);
        uint64_t per = h->op == RD_OP_PULL ? 8u : 8u + 4u * (uint64_t)h->dim;
        if (h->count == 0 || h->count > max_payload / per)
            return rd_err_set(eb, RD_ERR_RANGE,
                              "shared-memory %s of %" PRIu64 " keys at dim %u: 1..%" PRIu64
                              " keys fit ps.max_msg_bytes (%" PRIu64 ")",
                              name, h->count, (unsigned)h->dim, max_payload / per, max_payload);
        return RD_OK;
    }
    switch (h->op) {
        case RD_OP_PULL:
            if (h->count == 0 || h->payload_bytes % 8 != 0 || h->payload_bytes / 8 != h->count)
                return rd_err_set(eb, RD_ERR_PROTO,
                                  "PULL of %" PRIu64 " keys needs 8 payload bytes per key (at "
                                  "least one key), got %" PRIu64,
                                  h->count, h->payload_bytes);
            if (h->dim < 1 || h->dim > RD_MSG_MAX_DIM)
                return rd_err_set(eb, RD_ERR_PROTO, "PULL with dim %u (must be 1..%d)",
                                  (unsigned)h->dim, RD_MSG_MAX_DIM);
            return RD_OK;
        case RD_OP_PUSH: {
            if (h->dim < 1 || h->dim > RD_MSG_MAX_DIM)
                return rd_err_set(eb, RD_ERR_PROTO, "PUSH with dim %u (must be 1..%d)",
                                  (unsigned)h->dim, RD_MSG_MAX_DIM);
            uint64_t per = 8u + 4u * (uint64_t)h->dim;
            if (h->count == 0 || h->payload_bytes % per != 0 || h->payload_bytes / per != h->count)
                return rd_err_set(eb, RD_ERR_PROTO,
                                  "PUSH of %" PRIu64 " keys at dim %u needs %" PRIu64
                                  " bytes per key (>= 1 key), got %" PRIu64 " payload bytes",
                                  h->count, (unsigned)h->dim, per, h->payload_bytes);
            return RD_OK;
        }
        case RD_OP_CLOCK:
        case RD_OP_STATS:
        case RD_OP_SHUTDOWN:
            if (h->payload_bytes != 0 || h->count != 0)
                return rd_err_set(eb, RD_ERR_PROTO,
                                  "%s carries no payload (count %" PRIu64 ", %" PRIu64 " bytes)",
                                  name, h->count, h->payload_bytes);
            return RD_OK;
        case RD_OP_SAVE:
        case RD_OP_LOAD:
            if (h->payload_bytes == 0)
                return rd_err_set(eb, RD_ERR_PROTO, "%s without a directory", name);
            return RD_OK;
        case RD_OP_ATTACH:
            if (h->payload_bytes != RD_MSG_ATTACH_BYTES || h->count != 0)
                return rd_err_set(eb, RD_ERR_PROTO,
                                  "ATTACH needs a %d-byte payload and count 0 (got %" PRIu64
                                  " bytes, count %" PRIu64 ")",
                                  RD_MSG_ATTACH_BYTES, h->payload_bytes, h->count);
            return RD_OK;
        default:
            return rd_err_set(eb, RD_ERR_UNSUPPORTED, "unknown op %u", (unsigned)h->op);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared-memory descriptors

void rd_msg_shm_encode(const rd_msg_shm *d, unsigned char out[RD_MSG_SHM_DESC_BYTES]) {
    rd_le_put64(out + 0, d->region);
    rd_le_put64(out + 8, d->req_off);
    rd_le_put64(out + 16, d->req_bytes);
    rd_le_put64(out + 24, d->reply_off);
}

void rd_msg_shm_decode(const unsigned char in[RD_MSG_SHM_DESC_BYTES], rd_msg_shm *d) {
    d->region = rd_le_get64(in + 0);
    d->req_off = rd_le_get64(in + 8);
    d->req_bytes = rd_le_get64(in + 16);
    d->reply_off = rd_le_get64(in + 24);
}

// [off, off + bytes) is aligned, past the reserved start and inside [0, size): no overflow.
static int range_ok(uint64_t off, uint64_t bytes, uint64_t size) {
    return off % RD_MSG_SHM_ALIGN == 0 && off >= RD_MSG_SHM_RESERVED && off <= size &&
           bytes <= size - off;
}

int rd_msg_check_shm(const rd_msg_header *h,
                     const rd_msg_shm *d,
                     uint64_t region,
                     uint64_t region_bytes,
                     uint64_t max_payload,
                     rd_errbuf *eb) {
    char nb[24];
    const char *name = rd_msg_op_name(h->op, nb, sizeof nb);
    if (h->op != RD_OP_PULL && h->op != RD_OP_PUSH)
        return rd_err_set(eb, RD_ERR_PROTO, "shared-memory descriptor on a %s request", name);
    if (d->region != region)
        return rd_err_set(eb, RD_ERR_STATE,
                          "%s names shared-memory region %016" PRIx64
                          ", the sender attached region %016" PRIx64,
                          name, d->region, region);
    if (h->dim < 1 || h->dim > RD_MSG_MAX_DIM)
        return rd_err_set(eb, RD_ERR_PROTO, "%s with dim %u (must be 1..%d)", name,
                          (unsigned)h->dim, RD_MSG_MAX_DIM);
    const uint64_t per = h->op == RD_OP_PULL ? 8u : 8u + 4u * (uint64_t)h->dim;
    if (h->count == 0 || h->count > max_payload / per)
        return rd_err_set(eb, RD_ERR_RANGE, "%s of %" PRIu64 " keys (1..%" PRIu64 " fit)", name,
                          h->count, max_payload / per);
    if (d->req_bytes != per * h->count)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "%s of %" PRIu64 " keys at dim %u needs %" PRIu64
                          " request bytes in shared memory, the descriptor says %" PRIu64,
                          name, h->count, (unsigned)h->dim, per * h->count, d->req_bytes);
    if (!range_ok(d->req_off, d->req_bytes, region_bytes))
        return rd_err_set(
            eb, RD_ERR_RANGE,
            "%s request at [%" PRIu64 ", +%" PRIu64 ") is not a %d-aligned range of the %" PRIu64
            "-byte shared-memory region past its first %d bytes",
            name, d->req_off, d->req_bytes, RD_MSG_SHM_ALIGN, region_bytes, RD_MSG_SHM_RESERVED);
    if (h->op == RD_OP_PUSH) {
        if (d->reply_off != 0)
            return rd_err_set(eb, RD_ERR_PROTO, "PUSH with a reply offset (%" PRIu64 ")",
                              d->reply_off);
        return RD_OK;
    }
    if (h->count > UINT64_MAX / (4u * (uint64_t)h->dim))
        return rd_err_set(eb, RD_ERR_RANGE, "PULL reply of %" PRIu64 " keys at dim %u overflows",
                          h->count, (unsigned)h->dim);
    const uint64_t reply = h->count * h->dim * 4u;
    if (!range_ok(d->reply_off, reply, region_bytes))
        return rd_err_set(eb, RD_ERR_RANGE,
                          "PULL reply at [%" PRIu64 ", +%" PRIu64
                          ") is not a %d-aligned range of the %" PRIu64
                          "-byte shared-memory region past its first %d bytes",
                          d->reply_off, reply, RD_MSG_SHM_ALIGN, region_bytes, RD_MSG_SHM_RESERVED);
    if (d->reply_off < d->req_off + d->req_bytes && d->req_off < d->reply_off + reply)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "PULL reply [%" PRIu64 ", +%" PRIu64 ") overlaps its keys [%" PRIu64
                          ", +%" PRIu64 ")",
                          d->reply_off, reply, d->req_off, d->req_bytes);
    return RD_OK;
}

int rd_msg_check_reply(const rd_msg_header *reply, unsigned op, uint64_t req_id, rd_errbuf *eb) {
    if (!(reply->flags & RD_MSG_FLAG_REPLY))
        return rd_err_set(eb, RD_ERR_PROTO, "reply without the reply flag");
    if (reply->op != op || reply->req_id != req_id)
        return rd_err_set(eb, RD_ERR_PROTO,
                          "reply for op %u request %" PRIu64 " received for op %u request %" PRIu64,
                          (unsigned)reply->op, reply->req_id, op, req_id);
    return RD_OK;
}
