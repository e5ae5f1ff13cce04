// rd/clock.h — the monotonic clock every timing in the program reads.
//
// Defines:
//   rd_mono_s()   CLOCK_MONOTONIC in seconds (double): durations, rates, deadlines
//   rd_mono_ns()  CLOCK_MONOTONIC in nanoseconds (int64): stamps compared across processes of
//                 one host, backoff
//   rd_fmt_utc()  a unix time in seconds as ISO 8601 UTC ("2026-12-06T19:40:00Z") for messages
//
// CLOCK_MONOTONIC does not jump with the wall clock (NTP steps, an operator's `date -s`), so a
// duration measured with it is never negative; it is read through the vDSO, tens of nanoseconds
// and no system call. Wall-clock times (timestamps written to files) use CLOCK_REALTIME directly.
#ifndef RD_CLOCK_H
#define RD_CLOCK_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline double rd_mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int64_t rd_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/** ts (unix seconds) as "YYYY-MM-DDTHH:MM:SSZ" into out (n bytes), the year in four digits as
 *  ISO 8601 (and data.schema's iso8601) has it: strftime's %Y writes year 1 as "1". "?" when
 *  the time cannot be represented or does not fit. */
static inline void rd_fmt_utc(int64_t ts, char *out, size_t n) {
    time_t t = (time_t)ts;
    struct tm tm;
    int k = gmtime_r(&t, &tm) ? snprintf(out, n, "%04d", tm.tm_year + 1900) : -1;
    if (k < 0 || (size_t)k >= n || !strftime(out + k, n - (size_t)k, "-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, n, "?");
}

#ifdef __cplusplus
}
#endif
#endif
