// rd/clock.h — the monotonic clock every timing in the program reads.
//
// Defines:
//   rd_mono_s()   CLOCK_MONOTONIC in seconds (double): durations, rates, deadlines
//   rd_mono_ns()  CLOCK_MONOTONIC in nanoseconds (int64): stamps compared across processes of
//                 one host, backoff
//
// CLOCK_MONOTONIC does not jump with the wall clock (NTP steps, an operator's `date -s`), so a
// duration measured with it is never negative; it is read through the vDSO, tens of nanoseconds
// and no system call. Wall-clock times (timestamps written to files) use CLOCK_REALTIME directly.
#ifndef RD_CLOCK_H
#define RD_CLOCK_H

#include <stdint.h>
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

#ifdef __cplusplus
}
#endif
#endif
