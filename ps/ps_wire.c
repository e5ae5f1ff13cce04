// ps_wire.c — payload codecs of STATS / SAVE / LOAD and the datatype that drains oversized
// messages (see ps_internal.h). Decoders treat their input as untrusted.
#include "ps_internal.h"

#include "rd/alloc.h"

#include <string.h>

size_t rd__ckpt_req_bytes(const rd__ckpt_req *r) {
    return 16 + strlen(r->dir) + 4 * (size_t)r->n_tables;
}

void rd__ckpt_req_encode(const rd__ckpt_req *r, unsigned char *out) {
    uint32_t len = (uint32_t)strlen(r->dir);
    memcpy(out, &r->n_tables, 4);
    memcpy(out + 4, &len, 4);
    memcpy(out + 8, &r->flags, 4);
    memcpy(out + 12, &r->crc, 4);
    memcpy(out + 16, r->dir, len);
    memcpy(out + 16 + len, r->tables, 4 * (size_t)r->n_tables);
}

int rd__ckpt_req_decode(const void *buf, size_t len, rd__ckpt_req *r, rd_errbuf *eb) {
    memset(r, 0, sizeof *r);
    const unsigned char *p = buf;
    if (len < 16)
        return rd_err_set(eb, RD_ERR_PROTO, "checkpoint request of %zu bytes (< 16)", len);
    uint32_t plen;
    memcpy(&r->n_tables, p, 4);
    memcpy(&plen, p + 4, 4);
    memcpy(&r->flags, p + 8, 4);
    memcpy(&r->crc, p + 12, 4);
    if (r->n_tables < 1 || r->n_tables > RD_MAX_TABLES)
        return rd_err_set(eb, RD_ERR_PROTO, "checkpoint request for %u tables (1..%d)", r->n_tables,
                          RD_MAX_TABLES);
    if (plen < 1 || plen >= RD_PATH_MAX)
        return rd_err_set(eb, RD_ERR_PROTO, "checkpoint directory of %u bytes (1..%d)", plen,
                          RD_PATH_MAX - 1);
    uint32_t phase = r->flags & RD__CKPT_PHASES;
    if ((r->flags & ~(RD__CKPT_FLAG_CRC | RD__CKPT_PHASES)) != 0 || (phase & (phase - 1)) != 0)
        return rd_err_set(eb, RD_ERR_PROTO, "checkpoint request flags 0x%x", r->flags);
    if (len != 16 + (size_t)plen + 4 * (size_t)r->n_tables)
        return rd_err_set(eb, RD_ERR_PROTO, "checkpoint request of %zu bytes, expected %zu", len,
                          16 + (size_t)plen + 4 * (size_t)r->n_tables);
    if (memchr(p + 16, '\0', plen))
        return rd_err_set(eb, RD_ERR_PROTO, "checkpoint directory contains a NUL byte");
    memcpy(r->dir, p + 16, plen);
    r->dir[plen] = '\0';
    memcpy(r->tables, p + 16 + plen, 4 * (size_t)r->n_tables);
    for (uint32_t i = 0; i < r->n_tables; i++)
        for (uint32_t j = 0; j < i; j++)
            if (r->tables[i] == r->tables[j])
                return rd_err_set(eb, RD_ERR_PROTO, "table %u listed twice", r->tables[i]);
    return RD_OK;
}

size_t rd__shard_info_bytes(uint32_t n_tables) {
    return 8 + 16 * (size_t)n_tables;
}

void rd__shard_info_encode(const rd_ckpt_shard_info *info, unsigned char *out) {
    memcpy(out, &info->crc, 4);
    memcpy(out + 4, &info->n_tables, 4);
    for (uint32_t i = 0; i < info->n_tables; i++) {
        memcpy(out + 8 + 16 * i, &info->rows[i], 8);
        memcpy(out + 16 + 16 * i, &info->pending[i], 8);
    }
}

int rd__shard_info_decode(const void *buf, size_t len, rd_ckpt_shard_info *info, rd_errbuf *eb) {
    memset(info, 0, sizeof *info);
    if (len < 8)
        return rd_err_set(eb, RD_ERR_PROTO, "shard info of %zu bytes", len);
    memcpy(&info->crc, buf, 4);
    memcpy(&info->n_tables, (const unsigned char *)buf + 4, 4);
    if (info->n_tables > RD_MAX_TABLES || len != rd__shard_info_bytes(info->n_tables))
        return rd_err_set(eb, RD_ERR_PROTO, "shard info for %u tables in %zu bytes", info->n_tables,
                          len);
    const unsigned char *p = (const unsigned char *)buf + 8;
    for (uint32_t i = 0; i < info->n_tables; i++) {
        memcpy(&info->rows[i], p + 16 * i, 8);
        memcpy(&info->pending[i], p + 16 * i + 8, 8);
    }
    return RD_OK;
}

void rd__stats_encode(uint32_t index, const rd_table_stats *st, unsigned char *out) {
    uint64_t f[RD_TABLE_STATS_FIELDS] = {st->rows,     st->pending,  st->bytes,
                                         st->admitted, st->rejected, st->evicted,
                                         st->pulled,   st->pushed,   (uint64_t)st->now};
    uint32_t zero = 0;
    memcpy(out, &index, 4);
    memcpy(out + 4, &zero, 4);
    memcpy(out + 8, f, sizeof f);
}

void rd__stats_decode(const unsigned char *in, uint32_t *index, rd_table_stats *st) {
    uint64_t f[RD_TABLE_STATS_FIELDS];
    memcpy(index, in, 4);
    memcpy(f, in + 8, sizeof f);
    st->rows = f[0];
    st->pending = f[1];
    st->bytes = f[2];
    st->admitted = f[3];
    st->rejected = f[4];
    st->evicted = f[5];
    st->pulled = f[6];
    st->pushed = f[7];
    st->now = (int64_t)f[8];
}

void rd__drain_type(
    MPI_Count bytes, void *hdr, void *bounce, size_t bounce_bytes, MPI_Datatype *out) {
    MPI_Count rest = bytes > 64 ? bytes - 64 : 0;
    MPI_Count chunks = (rest + (MPI_Count)bounce_bytes - 1) / (MPI_Count)bounce_bytes;
    if (chunks < 1)
        chunks = 1;
    MPI_Datatype vec;
    RD_MPI_CHECK(MPI_Type_create_hvector_c(chunks, (MPI_Count)bounce_bytes, 0, MPI_BYTE, &vec));
    MPI_Count bl[2] = {64, 1};
    MPI_Aint a0, a1;
    RD_MPI_CHECK(MPI_Get_address(hdr, &a0));
    RD_MPI_CHECK(MPI_Get_address(bounce, &a1));
    MPI_Count disp[2] = {(MPI_Count)a0, (MPI_Count)a1};
    MPI_Datatype types[2] = {MPI_BYTE, vec};
    RD_MPI_CHECK(MPI_Type_create_struct_c(2, bl, disp, types, out));
    RD_MPI_CHECK(MPI_Type_commit(out));
    RD_MPI_CHECK(MPI_Type_free(&vec));
}

// ---------------------------------------------------------------------------------------------
// Message buffers

void rd__advise_huge(void *p, size_t bytes) {
    if (bytes >= (size_t)4 << 20)
        rd_alloc_advise_huge(p, bytes);
}
