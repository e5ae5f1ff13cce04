// test_config_bcast.c — rd_config_bcast: rank `root` loads a configuration and broadcasts it as
// bytes; every rank loads the same file itself and compares the two structs with memcmp (the
// struct holds no pointers and its padding is deterministic). Two rounds: configs/demo.yaml from
// rank 0, configs/reference.yaml from the last rank. Errors are summed with MPI_Allreduce and
// rank 0 reports. Run: mpiexec.mpich -n 3 test_config_bcast
#include "rd/alloc.h"
#include "rd/config.h"
#include "rd/log.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int round_trip(const char *file, int root, int rank) {
    const char *src = getenv("RD_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/%s", src ? src : "..", file);
    rd_config *sent = rd_xcalloc(1, sizeof *sent);
    rd_config *mine = rd_xcalloc(1, sizeof *mine);
    rd_errbuf eb;
    int errors = 0;
    // Non-root ranks start from garbage: the broadcast must overwrite every byte.
    if (rank != root)
        memset(sent, 0xa5, sizeof *sent);
    else if (rd_config_load(path, sent, &eb) != RD_OK) {
        fprintf(stderr, "[r%d] %s\n", rank, eb.msg);
        errors++;
    }
    rd_config_bcast(sent, root, MPI_COMM_WORLD);
    if (rd_config_load(path, mine, &eb) != RD_OK) {
        fprintf(stderr, "[r%d] %s\n", rank, eb.msg);
        errors++;
    } else if (memcmp(sent, mine, sizeof *mine) != 0) {
        fprintf(stderr, "[r%d] %s: broadcast config differs from the local load\n", rank, file);
        errors++;
    } else if (rd_config_validate(sent, &eb) != RD_OK) {
        fprintf(stderr, "[r%d] %s: broadcast config does not validate: %s\n", rank, file, eb.msg);
        errors++;
    }
    // Lookups work on the received copy.
    if (!errors && !rd_config_find_model(sent, sent->cluster.jobs[0].model)) {
        fprintf(stderr, "[r%d] %s: model lookup failed on the received config\n", rank, file);
        errors++;
    }
    rd_free(sent);
    rd_free(mine);
    return errors;
}

int main(int argc, char **argv) {
    RD_MPI_CHECK(MPI_Init(&argc, &argv));
    int rank = 0, size = 1;
    RD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    RD_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    rd_log_init(RD_LOG_LEVEL_INFO, rank, "test");
    int errors = round_trip("demo.yaml", 0, rank);
    errors += round_trip("reference.yaml", size - 1, rank);
    int total = 0;
    RD_MPI_CHECK(MPI_Allreduce(&errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (rank == 0) {
        if (total == 0)
            printf("test_config_bcast: %d ranks, %zu-byte config: No Errors\n", size,
                   sizeof(rd_config));
        else
            printf("test_config_bcast: %d errors\n", total);
    }
    RD_MPI_CHECK(MPI_Finalize());
    return total == 0 ? 0 : 1;
}
