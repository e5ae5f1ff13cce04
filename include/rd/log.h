// rd/log.h — leveled logging with a "[r3 ps] file:line" prefix, and rank-0 metric records.
//
// Defines:
//   rd_log_level        RD_LOG_LEVEL_{ERROR,WARN,INFO,DEBUG}
//   rd_log_init()       set level, rank and role once in main (the only mutable global state)
//   RD_LOG_ERROR/WARN/INFO/DEBUG(fmt, ...)   check the level before formatting
//   rd_log_metric()     "key:value key:value" records, written by rank 0 only
//   rd_log_level_parse()
#ifndef RD_LOG_H
#define RD_LOG_H

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rd_log_level {
    RD_LOG_LEVEL_ERROR = 0,
    RD_LOG_LEVEL_WARN = 1,
    RD_LOG_LEVEL_INFO = 2,
    RD_LOG_LEVEL_DEBUG = 3,
} rd_log_level;

/** Set once in main (and again after the role is known). role may be NULL ("-"). */
void rd_log_init(rd_log_level level, int rank, const char *role);
/** Update only rank and role (after MPI_Init / the role split). */
void rd_log_set_rank(int rank, const char *role);
rd_log_level rd_log_get_level(void);
int rd_log_get_rank(void);
const char *rd_log_get_role(void);

/** @return RD_OK and *out set, or RD_ERR_ARG for an unknown name ("error|warn|info|debug"). */
int rd_log_level_parse(const char *name, rd_log_level *out);

void rd__log(rd_log_level level, const char *file, int line, const char *fmt, ...) RD_PRINTF(4, 5);

#define RD__LOG(lvl, ...)                                                                          \
    do {                                                                                           \
        if ((int)(lvl) <= (int)rd_log_get_level())                                                 \
            rd__log((lvl), __FILE__, __LINE__, __VA_ARGS__);                                       \
    } while (0)
#define RD_LOG_ERROR(...) RD__LOG(RD_LOG_LEVEL_ERROR, __VA_ARGS__)
#define RD_LOG_WARN(...)  RD__LOG(RD_LOG_LEVEL_WARN, __VA_ARGS__)
#define RD_LOG_INFO(...)  RD__LOG(RD_LOG_LEVEL_INFO, __VA_ARGS__)
#define RD_LOG_DEBUG(...) RD__LOG(RD_LOG_LEVEL_DEBUG, __VA_ARGS__)

/** Write one metric record line to stdout ("key:value ..."), only on rank 0. */
void rd_log_metric(const char *fmt, ...) RD_PRINTF(1, 2);

#ifdef __cplusplus
}
#endif
#endif // RD_LOG_H
