// tabletool_internal.h — internals of worker/tabletool.c that the unit tests reach.
//
// Defines:
//   rd__tabletool_set_export_group()  the shards a streamed export opens at once
//   rd__tabletool_ref_idx_max()       the largest row index an export's sort keeps
#ifndef RD_TABLETOOL_INTERNAL_H
#define RD_TABLETOOL_INTERNAL_H

#include <stdint.h>

#include "rd/tabletool.h"

/**
 * Merge at most g shards at once in the exports of tt (streamed), through temporary run files
 * when g < P, as when RLIMIT_NOFILE leaves fewer than P descriptors (rd/tabletool.h "Memory").
 * @param[in] g  2 or more; 0 = from RLIMIT_NOFILE (the default)
 */
void rd__tabletool_set_export_group(rd_tabletool *tt, uint32_t g);

/**
 * The largest row index (in a shard's table, or in an import's rows) that an export's sort by key
 * keeps: a table or an import of more rows would export other rows in their place. It is 2^64 - 1
 * (a shard's table grows past 2^32 rows); tests check it without building such a table.
 */
uint64_t rd__tabletool_ref_idx_max(void);

#endif // RD_TABLETOOL_INTERNAL_H
