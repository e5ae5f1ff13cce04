// tabletool_internal.h — internals of worker/tabletool.c that the unit tests reach.
//
// Defines:
//   rd__tabletool_set_export_group()  the shards a streamed export opens at once
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

#endif // RD_TABLETOOL_INTERNAL_H
