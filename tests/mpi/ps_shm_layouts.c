// ps_shm_layouts.c — the shared-memory data path (ps.shm auto) trains exactly like MPI alone.
//
// Needs 5 ranks. The toy loop of ps_sync_layouts (40 sync steps, 4 tables: SGD, Adagrad with
// admission, Adam with TTL eviction, FTRL; Zipf keys; tiny ps.max_msg_bytes so that requests
// are split; random delays before pushes) runs in five sessions:
//   1 PS + 2 workers (ranks 0..2): shm off, shm auto, shm auto with a 4 KiB region (so that
//   some requests fit the region and the others fall back to MPI, in the same steps);
//   3 PS + 2 workers (all ranks): shm off, shm auto.
// Each session saves a checkpoint. Rank 0 checks that every table of every checkpoint is
// identical bit for bit (rows, optimizer slots, counts, last-seen, pending admissions) to the
// shm-off checkpoint of the same layout and to a single-process reference, and that every value
// each worker pulled (CRC over the run) is the same in all sessions and in the reference.
// The traffic counters tell which path was taken: with shm off a pull is answered by two
// messages (header, values), with shm by one; the 4 KiB session must have both kinds.
#include "ps_test_util.h"

#include "rd/optim.h"
#include "rd/traffic.h"

#define STEPS    40
#define DRAWS    96
#define SESSIONS 5

static void make_cfg(rd_config *cfg, int P, int shm, uint64_t shm_bytes) {
    const char *names[] = {"train"};
    int ranks[] = {2};
    t_config(cfg, P, 1, names, ranks);
    cfg->ps.max_msg_bytes = 4096;
    cfg->ps.shm = shm;
    cfg->ps.shm_bytes = shm_bytes;
    t_table(cfg, "u_sgd", 4, RD_OPT_SGD, 0.05f);
    rd_table_config *t = t_table(cfg, "i_adagrad", 16, RD_OPT_ADAGRAD, 0.05f);
    t->admit_count = 2;
    t = t_table(cfg, "c_adam", 8, RD_OPT_ADAM, 0.01f);
    t->ttl = 50;
    t_table(cfg, "x_ftrl", 8, RD_OPT_FTRL, 0.1f);
}

typedef struct ctx {
    const t_zipf *z;
    char ckpt[300];
    uint32_t crc[2];
    uint64_t pull_sent, pull_recv; // worker 0's pull messages
} ctx;

static int worker(rd_kv *kv, const rd_comm *comm, const rd_config *cfg, void *p) {
    ctx *c = p;
    int errs = 0;
    int w = comm->job_rank;
    t_train tr = {0, STEPS, DRAWS, c->z, 300, 0};
    errs += t_train_loop(kv, cfg, w, &tr);
    c->crc[w] = tr.pulled_crc;
    t_barrier(comm->job);
    if (w == 0) {
        rd_traffic t;
        memset(&t, 0, sizeof t);
        rd_kv_add_traffic(kv, &t);
        c->pull_sent = t.sent[RD_CHAN_PS_PULL].msgs;
        c->pull_recv = t.recv[RD_CHAN_PS_PULL].msgs;
        rd_errbuf eb;
        rd_errbuf_clear(&eb);
        int rc = rd_kv_save(kv, c->ckpt, NULL, 0, &eb);
        T_CHECK(&errs, rc == RD_OK, "save %s: %s", c->ckpt, eb.msg);
    }
    return errs;
}

static void share(ctx *c) {
    uint32_t in[2] = {c->crc[0], c->crc[1]};
    MPI_Request r;
    RD_MPI_CHECK(MPI_Iallreduce(in, c->crc, 2, MPI_UINT32_T, MPI_BOR, MPI_COMM_WORLD, &r));
    t_wait(&r);
    uint64_t m[2] = {c->pull_sent, c->pull_recv};
    RD_MPI_CHECK(MPI_Iallreduce(m, &c->pull_sent, 1, MPI_UINT64_T, MPI_BOR, MPI_COMM_WORLD, &r));
    t_wait(&r);
    RD_MPI_CHECK(
        MPI_Iallreduce(m + 1, &c->pull_recv, 1, MPI_UINT64_T, MPI_BOR, MPI_COMM_WORLD, &r));
    t_wait(&r);
}

int main(int argc, char **argv) {
    int rank, size;
    if (t_mpi_start(&argc, &argv, &rank, &size) != 0)
        return 1;
    if (size != 5)
        return t_mpi_refuse(rank, 77, "ps_shm_layouts needs 5 ranks");
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    int errs = 0;
    char dir[256];
    t_tmpdir(dir, sizeof dir, "shm");
    t_zipf z;
    t_zipf_init(&z, 400, 1.05);
    // P, shm, region bytes; sessions 0..2 compare with session 0, 3..4 with session 3.
    static const struct {
        int P, shm;
        uint64_t bytes;
        const char *name;
    } S[SESSIONS] = {{1, RD_SHM_OFF, 256u << 20, "1 PS, shm off"},
                     {1, RD_SHM_AUTO, 256u << 20, "1 PS, shm auto"},
                     {1, RD_SHM_AUTO, 4096, "1 PS, shm auto, 4 KiB region"},
                     {3, RD_SHM_OFF, 256u << 20, "3 PS, shm off"},
                     {3, RD_SHM_AUTO, 256u << 20, "3 PS, shm auto"}};
    ctx c[SESSIONS];
    rd_config *cfg = rd_xcalloc(1, sizeof *cfg);
    for (int k = 0; k < SESSIONS; k++) {
        memset(&c[k], 0, sizeof c[k]);
        c[k].z = &z;
        snprintf(c[k].ckpt, sizeof c[k].ckpt, "%s/s%d", dir, k);
        make_cfg(cfg, S[k].P, S[k].shm, S[k].bytes);
        MPI_Comm sub = S[k].P == 1 ? t_first_ranks(3) : MPI_COMM_WORLD;
        if (sub != MPI_COMM_NULL) {
            errs += t_session(sub, cfg, worker, &c[k]);
            if (sub != MPI_COMM_WORLD)
                MPI_Comm_free(&sub);
        }
        t_barrier(MPI_COMM_WORLD);
        share(&c[k]);
    }

    if (rank == 0) {
        make_cfg(cfg, 1, RD_SHM_OFF, 256u << 20);
        rd_table *ref[RD_MAX_TABLES];
        t_make_tables(cfg, ref);
        uint32_t crc_ref[2] = {0, 0};
        t_reference(cfg, ref, 2, &z, DRAWS, 0, STEPS, crc_ref);
        for (int k = 0; k < SESSIONS; k++) {
            for (int w = 0; w < 2; w++)
                T_CHECK(&errs, c[k].crc[w] == crc_ref[w], "%s: worker %d pulled other values",
                        S[k].name, w);
            T_CHECK(&errs, rd_ckpt_verify(c[k].ckpt, &eb) == RD_OK, "verify %s: %s", S[k].name,
                    eb.msg);
            // The path taken: 2 reply messages per pull by MPI, 1 through shared memory.
            uint64_t sent = c[k].pull_sent, recv = c[k].pull_recv;
            if (S[k].shm == RD_SHM_OFF)
                T_CHECK(&errs, recv == 2 * sent, "%s: %llu pull replies for %llu pulls", S[k].name,
                        (unsigned long long)recv, (unsigned long long)sent);
            else if (S[k].bytes > 4096)
                T_CHECK(&errs, recv == sent, "%s: %llu pull replies for %llu pulls", S[k].name,
                        (unsigned long long)recv, (unsigned long long)sent);
            else
                T_CHECK(&errs, recv > sent && recv < 2 * sent,
                        "%s: %llu pull replies for %llu pulls (expected a mix)", S[k].name,
                        (unsigned long long)recv, (unsigned long long)sent);
            T_CHECK(&errs, sent > STEPS, "%s: only %llu pulls", S[k].name,
                    (unsigned long long)sent);
        }
        for (int t = 0; t < cfg->ps.n_tables; t++) {
            const char *name = cfg->ps.tables[t].name;
            rd_table *tab[SESSIONS][RD_MAX_TABLES];
            for (int k = 0; k < SESSIONS; k++) {
                t_make_tables(cfg, tab[k]);
                T_CHECK(&errs, rd_ckpt_load_table(c[k].ckpt, name, tab[k][t], &eb) == RD_OK,
                        "%s: %s", S[k].name, eb.msg);
            }
            for (int k = 0; k < SESSIONS; k++) {
                char what[128];
                int base = S[k].P == 1 ? 0 : 3;
                if (k != base) {
                    snprintf(what, sizeof what, "table %s, %s vs %s", name, S[k].name,
                             S[base].name);
                    errs += t_same_tables(tab[k][t], tab[base][t], what);
                }
                snprintf(what, sizeof what, "table %s, %s vs reference", name, S[k].name);
                errs += t_same_tables(tab[k][t], ref[t], what);
            }
            T_CHECK(&errs, rd_table_size(ref[t]) > 10, "table %s has only %zu rows", name,
                    rd_table_size(ref[t]));
            for (int k = 0; k < SESSIONS; k++)
                for (int i = 0; i < cfg->ps.n_tables; i++)
                    rd_table_destroy(tab[k][i]);
        }
        for (int t = 0; t < cfg->ps.n_tables; t++)
            rd_table_destroy(ref[t]);
        T_CHECK(&errs, t_rmtree(dir) == 0, "%s stays", dir);
    }
    t_zipf_free(&z);
    rd_free(cfg);
    int rc = t_finish("ps_shm_layouts", errs);
    rd_mpi_finalize(rc);
    return rc;
}
