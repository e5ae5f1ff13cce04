// fuzz_wire.c — the parameter-server wire decoders on arbitrary bytes: the 64-byte header
// (rd_msg_decode, rd_msg_check_request, rd_msg_check_reply), then the payload codecs that the
// header's op leads to: shared-memory descriptors (rd_msg_check_shm), ATTACH payloads
// (rd__shm_attach_decode), SAVE/LOAD requests (rd__ckpt_req_decode), SAVE/LOAD replies
// (rd__shard_info_decode) and packed token fetch replies (rd_token_fetch_reply_view, with
// (n, L, dim, fields) taken from the header's count, table, dim and flags).
#include "fuzz.h"

#include "../../ps/ps_internal.h"
#include "rd/msg.h"
#include "rd/tokens.h"

#include <stdlib.h>
#include <string.h>

int rd_fuzz_check(const uint8_t *data, size_t size) {
    rd_msg_header h;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int rc = rd_msg_decode(data, size, &h, &eb);
    if (rc != RD_OK)
        return rc;
    char name[32];
    (void)rd_msg_op_name(h.op, name, sizeof name);
    (void)rd_msg_check_reply(&h, h.op, h.req_id, &eb);
    rc = rd_msg_check_request(&h, (uint64_t)1 << 20, &eb);
    const uint8_t *pl = data + RD_MSG_HEADER_BYTES;
    size_t pl_len = size - RD_MSG_HEADER_BYTES;
    if (rc == RD_OK && (h.op == RD_OP_SAVE || h.op == RD_OP_LOAD)) {
        rd__ckpt_req r;
        rc = rd__ckpt_req_decode(pl, pl_len, &r, &eb);
    }
    if (rc == RD_OK && (h.flags & RD_MSG_FLAG_SHM)) {
        // A descriptor against a region with the id it names (the other checks do the work).
        rd_msg_shm d;
        rd_msg_shm_decode(pl, &d);
        rc = rd_msg_check_shm(&h, &d, d.region, (uint64_t)1 << 30, (uint64_t)1 << 20, &eb);
    }
    if (rc == RD_OK && h.op == RD_OP_ATTACH) {
        rd__shm_attach a;
        rc = rd__shm_attach_decode(pl, pl_len, &a, &eb);
    }
    // Replies carry their own payloads; decode them whatever the request check said.
    rd_ckpt_shard_info info;
    int rc2 = rd__shard_info_decode(pl, pl_len, &info, &eb);
    // The token fetch view needs 8-byte alignment: copy.
    void *al = malloc(pl_len ? pl_len : 1);
    if (al) {
        memcpy(al, pl, pl_len);
        rd_token_fetch_out view;
        memset(&view, 0, sizeof view);
        size_t n = (size_t)(h.count % 4096), L = (size_t)(h.table % 512 + 1),
               dim = (size_t)(h.dim % 256 + 1);
        (void)rd_token_fetch_reply_view(al, pl_len, n, L, dim, (size_t)(h.flags >> 8) % 18,
                                        h.flags & 0xff, &view, &eb);
        free(al);
    }
    (void)rc2;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd_fuzz_check(data, size);
    return 0;
}
