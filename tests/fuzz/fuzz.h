// fuzz.h — shared by the libFuzzer targets of tests/fuzz/ and their replay driver.
//
// Each fuzz_<name>.c defines LLVMFuzzerTestOneInput over one untrusted-input entry point of the
// library, and rd_fuzz_check(), the same work returning the rd_status the entry point gave (so
// that the bad-input corpus can require a rejection, not just "no crash"). With -DRD_FUZZ=ON
// (clang) they link against libFuzzer; in every other build they link against replay.c, which
// runs them over files (regression: the seed corpus, the crashes found, tests/bad/).
#ifndef RD_TESTS_FUZZ_H
#define RD_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/** Run one input; @return the status of the entry point (RD_OK = accepted). */
int rd_fuzz_check(const uint8_t *data, size_t size);

#endif
