// test_comm.c — the comm module's pieces that need no MPI launch: the MPI library's name of the
// run-time identity (rd_mpi_library_name). The communicators and the rank layout are tested
// under mpiexec (tests/mpi/).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rd/comm.h"

#include <string.h>

// MPICH 4.0.2's text, as MPI_Get_library_version gives it (abridged after the device line).
#define MPICH_TEXT(dev)                                                                            \
    "MPICH Version:\t4.0.2\nMPICH Release date:\tThu Apr  7 12:34:45 CDT 2022\nMPICH "             \
    "ABI:\t14:2:2\n"                                                                               \
    "MPICH Device:\t" dev "\nMPICH configure:\t--with-device=" dev " --with-pm=hydra\n"

static void test_library_name(void **state) {
    (void)state;
    char out[160];
    // Two builds of one version with other devices are told apart.
    rd_mpi_library_name(MPICH_TEXT("ch4:ofi"), out, sizeof out);
    assert_string_equal(out, "MPICH-4.0.2/ch4:ofi");
    rd_mpi_library_name(MPICH_TEXT("ch3:nemesis"), out, sizeof out);
    assert_string_equal(out, "MPICH-4.0.2/ch3:nemesis");
    rd_mpi_library_name("MPICH Version:      4.1\r\nMPICH Device:  ch4:ucx  \r\n", out, sizeof out);
    assert_string_equal(out, "MPICH-4.1/ch4:ucx");
    // MVAPICH2 prints MPICH's lines under its own name.
    rd_mpi_library_name("MVAPICH2 Version:\t2.3.7\nMVAPICH2 Device:\tch3:mrail\n", out, sizeof out);
    assert_string_equal(out, "MVAPICH2-2.3.7/ch3:mrail");
    // No device line: the version alone, as before. Another name's device line is not read.
    rd_mpi_library_name("MPICH Version:\t3.3\n", out, sizeof out);
    assert_string_equal(out, "MPICH-3.3");
    rd_mpi_library_name("MPICH Version:\t3.3\nOther Device:\tx\n", out, sizeof out);
    assert_string_equal(out, "MPICH-3.3");
    // Other libraries: the first line, up to a comma.
    rd_mpi_library_name("Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4\n", out,
                        sizeof out);
    assert_string_equal(out, "Open MPI v4.1.4");
    rd_mpi_library_name("Intel(R) MPI Library 2021.6 for Linux* OS\n\n", out, sizeof out);
    assert_string_equal(out, "Intel(R) MPI Library 2021.6 for Linux* OS");
    rd_mpi_library_name("", out, sizeof out);
    assert_string_equal(out, "");
    // Cut to fit.
    char small[8];
    rd_mpi_library_name(MPICH_TEXT("ch4:ofi"), small, sizeof small);
    assert_string_equal(small, "MPICH-4");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
