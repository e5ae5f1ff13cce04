// rd/tokentool.h — maintenance helpers of the instance-token store for `recdistill tokens`
// (the store's own API in rd/tokens.h does stats, verify, gc and fetch).
//
// Defines:
//   rd_tokentool_compact()     verify a store (as rd_token_store_verify), then copy it into a
//                              new directory with every shard env compacted (LMDB
//                              MDB_CP_COMPACT: no free pages, each user's records on
//                              neighbouring pages), from one read snapshot per shard, as the
//                              store's one writer (rd_token_store_lock): refused while a
//                              launch builds into it or gc runs, as a copy would cut through
//                              their writes
//   rd_tokentool_print_fetch() the answer of rd_token_store_fetch as TSV
//   rd_tokentool_print_users() the store's user keys (the KEY of `tokens fetch --user`) with
//                              their record counts and time ranges, as TSV
//
// Compaction never changes the input: a fresh <out>.partial.<host>.<pid>.<hex> gets
// shard-NNNN/data.mdb copies, then a copy of the MANIFEST (the store's commit point, written last),
// then the directory is renamed to <out>. The compaction holds the input's writer lock, so no
// launch or gc writes it meanwhile (nor does a writer that ignores the lock exist in this
// project).
#ifndef RD_TOKENTOOL_H
#define RD_TOKENTOOL_H

#include <stdint.h>
#include <stdio.h>

#include "rd/error.h"
#include "rd/tokens.h"

#ifdef __cplusplus
extern "C" {
#endif

// Arguments: each function refuses a NULL store, path or FILE, an L outside 1..RD_TOKEN_MAX_L and a
// limit of 0 with RD_ERR_ARG and "FUNCTION: invalid argument: ..." (RD_ARG_CHECK, rd/error.h)
// before it reads or writes anything; print_users asserted them, which aborted the tool.

/** @return RD_OK, RD_ERR_NOTFOUND / RD_ERR_CORRUPT / RD_ERR_VERSION (input store),
 *  RD_ERR_STATE (another writer holds the input store: the message names it),
 *  RD_ERR_EXISTS (out exists), RD_ERR_IO, RD_ERR_LMDB; nothing is left at `out` on failure */
int rd_tokentool_compact(const char *dir, const char *out, rd_errbuf *eb);

/**
 * Fetch (user, before_t, L) from `s` and print "# user U before T L n_found N" then one line per
 * found record: slot, ts, id, label, item, then the dim token values (%.9g: exact for fp32).
 * before_id NULL fetches strictly before before_t; otherwise also the records at before_t with an
 * instance id below *before_id (rd_token_store_fetch_batch's before_id, what a model with
 * tokens.same_time earlier reads; 0, the dataset's first event, adds none), and the header says
 * "before T id I".
 * @param[in]  L       1..RD_TOKEN_MAX_L
 * @param[out] n_found records printed (may be NULL); 0 for a user the store does not hold
 * @return rd_token_store_fetch_batch's code; RD_ERR_ARG (s or f NULL, L out of range)
 */
int rd_tokentool_print_fetch(rd_token_store *s,
                             uint64_t user,
                             int64_t before_t,
                             const uint64_t *before_id,
                             size_t L,
                             FILE *f,
                             uint32_t *n_found,
                             rd_errbuf *eb);

/**
 * Print "# user records t_min t_max shard", then one line per user of the store, at most `limit`
 * users: its key (what `tokens fetch --user` takes), its record count, the time of its first and
 * last record and its shard. Users come in key order, shard by shard, from one read snapshot per
 * shard.
 * @param[in]  limit  users to print, >= 1
 * @param[out] listed users printed (may be NULL)
 * @param[out] more   1 when the store holds further users after the last one printed (may be
 *                    NULL)
 * @return rd_token_store_iterate's codes; RD_ERR_ARG (s or f NULL, limit 0)
 */
int rd_tokentool_print_users(
    rd_token_store *s, uint64_t limit, FILE *f, uint64_t *listed, int *more, rd_errbuf *eb);

#ifdef __cplusplus
}
#endif
#endif // RD_TOKENTOOL_H
