// ps_drain.c — rd__drain_type, the datatype that drains a message of unexpected size without
// allocating it (the PS server, rd_kv and the token client receive through it).
//
// Run with 1 rank (tests/mpi/testlist): messages of 0 to ~100 KB are sent to self and received
// through the datatype with a 4096-byte bounce buffer (rd_kv's and the token client's size) and a
// 64-byte one. The received element count must be the message size; the header buffer must hold
// its first min(size, 64) bytes; and neither buffer may be written past its end (guard bytes).
#include "../../ps/ps_internal.h"
#include "rd/msg.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GUARD = 64, GUARD_BYTE = 0xA5 };

static int n_errors;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            n_errors++;                                                                            \
        }                                                                                          \
    } while (0)

static int guard_intact(const unsigned char *p) {
    for (size_t i = 0; i < GUARD; i++)
        if (p[i] != GUARD_BYTE)
            return 0;
    return 1;
}

static void drain_one(MPI_Count n, size_t bounce_bytes) {
    unsigned char *msg = malloc((size_t)n + 1);
    for (MPI_Count i = 0; i < n; i++)
        msg[i] = (unsigned char)(i * 7 + 3);
    unsigned char hdr[RD_MSG_HEADER_BYTES + GUARD];
    unsigned char *bounce = malloc(bounce_bytes + GUARD);
    memset(hdr, 0, RD_MSG_HEADER_BYTES);
    memset(hdr + RD_MSG_HEADER_BYTES, GUARD_BYTE, GUARD);
    memset(bounce, 0, bounce_bytes);
    memset(bounce + bounce_bytes, GUARD_BYTE, GUARD);
    MPI_Request req;
    MPI_Isend_c(msg, n, MPI_BYTE, 0, 7, MPI_COMM_WORLD, &req);
    MPI_Datatype dt;
    rd__drain_type(n, hdr, bounce, bounce_bytes, &dt);
    MPI_Status st;
    int rc = MPI_Recv(MPI_BOTTOM, 1, dt, 0, 7, MPI_COMM_WORLD, &st);
    MPI_Type_free(&dt);
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    MPI_Count got = -1;
    MPI_Get_elements_c(&st, MPI_BYTE, &got);
    CHECK(rc == MPI_SUCCESS, "%lld bytes, bounce %zu: MPI_Recv returned %d", (long long)n,
          bounce_bytes, rc);
    CHECK(got == n, "%lld bytes, bounce %zu: received %lld", (long long)n, bounce_bytes,
          (long long)got);
    size_t h = n < RD_MSG_HEADER_BYTES ? (size_t)n : RD_MSG_HEADER_BYTES;
    CHECK(memcmp(hdr, msg, h) == 0, "%lld bytes, bounce %zu: header bytes differ", (long long)n,
          bounce_bytes);
    CHECK(guard_intact(hdr + RD_MSG_HEADER_BYTES), "%lld bytes, bounce %zu: written past header",
          (long long)n, bounce_bytes);
    CHECK(guard_intact(bounce + bounce_bytes), "%lld bytes, bounce %zu: written past bounce",
          (long long)n, bounce_bytes);
    free(bounce);
    free(msg);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    static const MPI_Count sizes[] = {0,    1,    63,   64,   65,    4096,  4159,
                                      4160, 4161, 8256, 8257, 12345, 100000};
    static const size_t bounces[] = {4096, 64};
    for (size_t b = 0; b < sizeof bounces / sizeof bounces[0]; b++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            drain_one(sizes[i], bounces[b]);
    if (n_errors)
        fprintf(stderr, "ps_drain: %d errors\n", n_errors);
    else
        printf("ps_drain: OK\n");
    MPI_Finalize();
    return n_errors ? 1 : 0;
}
