// bench_dense.c — dense compute of one worker: teacher and student training steps vs cblas_sgemm.
//
// Measures, in one run on one process:
//   sgemm_gflops         cblas_sgemm alone on exactly the matmuls of one teacher step: every
//                        (M, N, K, transposes) of its forward and backward, each timed on its own
//                        and weighted by how often the step runs it
//   teacher_step_gflops  dense FLOPs of the teacher's forward + backward (rd_model_flops) divided
//                        by the median time of a full dense step (forward, backward, Adam)
//   ratio_sgemm          teacher_step_gflops / sgemm_gflops (target >= 0.6 on the 2-core VM)
//   teacher_samples_per_s, student_samples_per_s, batch, threads
// Warm-up steps are discarded; min / median / avg / max step times are printed (STYLE.md 15);
// rates use the medians (the VM's other tenants make single timings noisy).
//
// Teacher (default): user + item embeddings of dim 64, a 2-layer transformer history branch of
// length 256 (2 heads, width 64, item labels), MLP [256, 128, 64], one tower; `--seq din` puts a
// DIN target attention over the same history in place of the transformer (demo.yaml's teacher).
// Student: dim 16, mean history of length 16, MLP [64, 32], two towers [16] with distillation
// targets. Every history is full (no padded positions); with `--lengths uniform` example b's
// history holds a length drawn uniformly from 1..L, padding after it, as a log's early events do
// (the FLOP and GFLOP/s figures still count full histories then: read samples/s).
//
// usage: bench_dense [--batch 256] [--threads 1] [--iters 7] [--warmup 2] [--seq-len 256]
//                    [--dim 64] [--layers 2] [--heads 2] [--seq transformer|din]
//                    [--lengths full|uniform] [--act relu|gelu] [--json PATH]
#include "bench_args.h"
#include "rd/clock.h"
#include "rd/config.h"
#include "rd/dense_optim.h"
#include "rd/layers.h"
#include "rd/model.h"
#include "rd/rng.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct args {
    size_t batch, iters, warmup, seq_len, dim, layers, heads;
    int threads;
    int seq;     // rd_seq_kind of the teacher's history branch: RD_SEQ_TRANSFORMER | RD_SEQ_DIN
    int uniform; // --lengths uniform: history lengths uniform in 1..L (else full)
    char act[8];
    const char *json;
} args;

static void usage(FILE *out) {
    fprintf(out, "usage: bench_dense [--batch N] [--threads N] [--iters N] [--warmup N] "
                 "[--seq-len N] [--dim N] [--layers N] [--heads N] [--seq transformer|din] "
                 "[--lengths full|uniform] [--act relu|gelu] [--json PATH]\n");
}

static int parse_args(int argc, char **argv, args *a) {
    *a = (args){.batch = 256,
                .iters = 5,
                .warmup = 2,
                .seq_len = 256,
                .dim = 64,
                .layers = 2,
                .heads = 2,
                .threads = 1,
                .seq = RD_SEQ_TRANSFORMER,
                .json = NULL};
    snprintf(a->act, sizeof a->act, "relu");
    bench_seen seen = {0};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t *dst = NULL, lo = 1, hi = 1u << 20;
        if (strcmp(k, "-h") != 0 && strcmp(k, "--help") != 0 &&
            bench_once(&seen, stderr, "bench_dense", k) != 0)
            return -1;
        if (strcmp(k, "--batch") == 0)
            dst = &a->batch;
        else if (strcmp(k, "--iters") == 0)
            dst = &a->iters;
        else if (strcmp(k, "--warmup") == 0)
            lo = 0, dst = &a->warmup;
        else if (strcmp(k, "--seq-len") == 0)
            hi = 4096, dst = &a->seq_len;
        else if (strcmp(k, "--dim") == 0)
            hi = 1024, dst = &a->dim;
        else if (strcmp(k, "--layers") == 0)
            hi = 64, dst = &a->layers;
        else if (strcmp(k, "--heads") == 0)
            hi = 64, dst = &a->heads;
        // The values of bench_args.h, as every bench takes them: strtoull read ' 5' as 5 and
        // '-1' as 2^64 - 1, and refused the `1e3` the other benches take.
        long long x = 0;
        if (dst) {
            if (bench_int(stderr, "bench_dense", k, v, (long long)lo, (long long)hi, &x) != 0)
                return -1;
            *dst = (size_t)x;
            i++;
        } else if (strcmp(k, "--threads") == 0) {
            if (bench_int(stderr, "bench_dense", k, v, 1, 256, &x) != 0)
                return -1;
            a->threads = (int)x;
            i++;
        } else if (strcmp(k, "--seq") == 0) {
            if (v && strcmp(v, "transformer") == 0) {
                a->seq = RD_SEQ_TRANSFORMER;
            } else if (v && strcmp(v, "din") == 0) {
                a->seq = RD_SEQ_DIN;
            } else {
                fprintf(stderr, "bench_dense: --seq: expected transformer|din, got '%s'\n",
                        v ? v : "(nothing)");
                return -1;
            }
            i++;
        } else if (strcmp(k, "--lengths") == 0) {
            if (v && (strcmp(v, "full") == 0 || strcmp(v, "uniform") == 0)) {
                a->uniform = strcmp(v, "uniform") == 0;
            } else {
                fprintf(stderr, "bench_dense: --lengths: expected full|uniform, got '%s'\n",
                        v ? v : "(nothing)");
                return -1;
            }
            i++;
        } else if (strcmp(k, "--act") == 0) {
            rd_act_kind kind;
            if (!v || rd_act_parse(v, &kind) != RD_OK ||
                (kind != RD_ACT_RELU && kind != RD_ACT_GELU)) {
                fprintf(stderr, "bench_dense: --act: expected relu|gelu, got '%s'\n",
                        v ? v : "(nothing)");
                return -1;
            }
            snprintf(a->act, sizeof a->act, "%s", v);
            i++;
        } else if (strcmp(k, "--json") == 0) {
            if (!v) {
                fprintf(stderr, "bench_dense: --json needs a path\n");
                return -1;
            }
            a->json = v;
            i++;
        } else if (strcmp(k, "-h") == 0 || strcmp(k, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "bench_dense: unknown option '%s'\n", k);
            usage(stderr);
            return -1;
        }
    }
    if (a->json && bench_json_ok(stderr, "bench_dense", a->json) != 0)
        return -1;
    if (a->dim % a->heads != 0) {
        fprintf(stderr, "bench_dense: --heads %zu must divide --dim %zu\n", a->heads, a->dim);
        return -1;
    }
    // A floor of the teacher's activations, known from the options: per example and history
    // position, at least 4 x dim floats a transformer layer plus its heads' attention row
    // (2 x dim for a DIN). Sizes far past the machine's memory ran into "bench_dense: out of
    // memory" (exit 1, naming no option) or, when the allocation was granted lazily, the OOM
    // killer.
    double per = a->seq == RD_SEQ_DIN
                     ? 2.0 * (double)a->dim
                     : (double)a->layers * (4.0 * (double)a->dim + (double)(a->heads * a->seq_len));
    double need = 4.0 * (double)a->batch * (double)a->seq_len * per;
    unsigned long long phys = bench_phys_bytes();
    if (phys && need > (double)phys) {
        fprintf(stderr,
                "bench_dense: --batch %zu (with --seq-len %zu, --dim %zu, --layers %zu, --heads "
                "%zu) needs at least %.0f bytes of memory, more than the %llu bytes this machine "
                "has\n",
                a->batch, a->seq_len, a->dim, a->layers, a->heads, need, phys);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Models and synthetic batches

static const char *FIELDS[2] = {"user", "item"};

static void teacher_config(rd_model_config *mc, const args *a) {
    memset(mc, 0, sizeof *mc);
    snprintf(mc->name, sizeof mc->name, "teacher");
    for (int f = 0; f < 2; f++) {
        snprintf(mc->features[f].field, RD_NAME_MAX, "%s", FIELDS[f]);
        snprintf(mc->features[f].table, RD_NAME_MAX, "t_%s", FIELDS[f]);
        mc->features[f].pooling = RD_POOL_MEAN;
    }
    mc->n_features = 2;
    mc->seq = (rd_seq_config){.kind = a->seq,
                              .length = (int)a->seq_len,
                              .layers = (int)a->layers,
                              .heads = (int)a->heads,
                              .with_labels = 1};
    mc->n_mlp = 3;
    mc->mlp[0] = 256;
    mc->mlp[1] = 128;
    mc->mlp[2] = 64;
    snprintf(mc->activation, sizeof mc->activation, "%s", a->act);
}

static void student_config(rd_model_config *mc, const args *a) {
    memset(mc, 0, sizeof *mc);
    snprintf(mc->name, sizeof mc->name, "student");
    for (int f = 0; f < 2; f++) {
        snprintf(mc->features[f].field, RD_NAME_MAX, "%s", FIELDS[f]);
        snprintf(mc->features[f].table, RD_NAME_MAX, "s_%s", FIELDS[f]);
        mc->features[f].pooling = RD_POOL_MEAN;
    }
    mc->n_features = 2;
    mc->seq = (rd_seq_config){
        .kind = RD_SEQ_MEAN, .length = 16, .layers = 1, .heads = 1, .with_labels = 1};
    mc->n_mlp = 2;
    mc->mlp[0] = 64;
    mc->mlp[1] = 32;
    mc->n_tower = 1;
    mc->tower[0] = 16;
    mc->two_towers = 1;
    snprintf(mc->activation, sizeof mc->activation, "%s", a->act);
}

typedef struct bbatch {
    rd_batch b;
    float *rows[2], *drows[2];
    int32_t *idx[2], *seq;
    uint8_t *lab, *has;
    float *labels, *teacher;
} bbatch;

static void *xcalloc(size_t n, size_t s) {
    void *p = calloc(n ? n : 1, s);
    if (!p) {
        fprintf(stderr, "bench_dense: out of memory\n");
        exit(1);
    }
    return p;
}

// Unique rows: B per feature table, 4096 history items (the item table doubles as history).
static void make_batch(bbatch *t, const rd_model *m, size_t B, int uniform, uint64_t seed) {
    memset(t, 0, sizeof *t);
    rd_rng r;
    rd_rng_seed(&r, seed);
    size_t U = B > 4096 ? B : 4096;
    for (int k = 0; k < m->n_tables; k++) {
        size_t n = U * m->tables[k].dim;
        t->rows[k] = xcalloc(n, sizeof(float));
        t->drows[k] = xcalloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++)
            t->rows[k][i] = 0.05f * (float)rd_rng_normal(&r);
        t->b.rows[k] = t->rows[k];
        t->b.drows[k] = t->drows[k];
        t->b.n_rows[k] = U;
    }
    for (int f = 0; f < m->n_features; f++) {
        t->idx[f] = xcalloc(B, sizeof(int32_t));
        for (size_t i = 0; i < B; i++)
            t->idx[f][i] = (int32_t)rd_rng_below(&r, U);
        t->b.feat_idx[f] = t->idx[f];
        t->b.feat_slots[f] = 1;
    }
    size_t L = m->seq_length;
    t->seq = xcalloc(B * L, sizeof(int32_t));
    t->lab = xcalloc(B * L, 1);
    for (size_t i = 0; i < B * L; i++) {
        t->seq[i] = (int32_t)rd_rng_below(&r, U);
        t->lab[i] = (uint8_t)rd_rng_below(&r, 2);
    }
    if (uniform && L > 0) // example b: the first 1..L positions hold events, padding after
        for (size_t b = 0; b < B; b++)
            for (size_t j = 1 + (size_t)rd_rng_below(&r, L); j < L; j++)
                t->seq[b * L + j] = -1;
    t->b.seq_idx = t->seq;
    t->b.seq_labels = t->lab;
    t->labels = xcalloc(B, sizeof(float));
    t->teacher = xcalloc(B, sizeof(float));
    t->has = xcalloc(B, 1);
    for (size_t i = 0; i < B; i++) {
        t->labels[i] = (float)rd_rng_below(&r, 2);
        t->teacher[i] = (float)rd_rng_normal(&r);
        t->has[i] = 1;
    }
    t->b.B = B;
    t->b.labels = t->labels;
    if (m->two_towers) {
        t->b.teacher_logits = t->teacher;
        t->b.has_target = t->has;
        t->b.alpha = 1.0f;
        t->b.temperature = 1.0f;
    }
}

static void free_batch(bbatch *t) {
    for (int k = 0; k < 2; k++) {
        free(t->rows[k]);
        free(t->drows[k]);
        free(t->idx[k]);
    }
    free(t->seq);
    free(t->lab);
    free(t->has);
    free(t->labels);
    free(t->teacher);
}

typedef struct timing {
    double min, avg, max, median;
} timing;

static double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Time `iters` dense steps (forward, backward, Adam) after `warmup` discarded ones.
static timing time_steps(const rd_model_config *mc,
                         const rd_table_config *tables,
                         int n_tables,
                         const args *a,
                         double *flops_per_example,
                         size_t *n_params) {
    rd_model_opts o = {.tables = tables,
                       .n_tables = n_tables,
                       .max_batch = a->batch,
                       .opt_slots = rd_dense_optim_slots(RD_DENSE_ADAM),
                       .seed = 1};
    rd_model *m = NULL;
    rd_errbuf eb;
    rd_errbuf_clear(&eb);
    if (rd_model_create(mc, &o, &m, &eb) != RD_OK) {
        fprintf(stderr, "bench_dense: %s\n", eb.msg);
        exit(1);
    }
    double ff, fb;
    rd_model_flops(m, &ff, &fb);
    *flops_per_example = ff + fb;
    *n_params = rd_model_param_count(m);
    bbatch t;
    make_batch(&t, m, a->batch, a->uniform, 3);
    rd_train_config tc = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    snprintf(tc.optimizer, sizeof tc.optimizer, "adam");
    rd_dense_optim opt;
    if (rd_dense_optim_init(&opt, &tc, &eb) != RD_OK) {
        fprintf(stderr, "bench_dense: %s\n", eb.msg);
        exit(1);
    }
    timing tm = {1e30, 0.0, 0.0, 0.0};
    double *dts = xcalloc(a->iters, sizeof(double));
    for (size_t it = 0; it < a->warmup + a->iters; it++) {
        double t0 = rd_mono_s();
        if (rd_model_forward(m, &t.b, &eb) != RD_OK || rd_model_backward(m, &t.b, &eb) != RD_OK) {
            fprintf(stderr, "bench_dense: %s\n", eb.msg);
            exit(1);
        }
        rd_dense_optim_step(&opt, m->params, m->grads, m->opt_state, m->n_slab);
        double dt = rd_mono_s() - t0;
        if (it < a->warmup)
            continue;
        tm.min = dt < tm.min ? dt : tm.min;
        tm.max = dt > tm.max ? dt : tm.max;
        tm.avg += dt / (double)a->iters;
        dts[it - a->warmup] = dt;
    }
    tm.median = median(dts, a->iters);
    free(dts);
    free_batch(&t);
    rd_model_destroy(m);
    return tm;
}

// ---------------------------------------------------------------------------------------------
// cblas_sgemm alone on the teacher's matmul shapes

typedef struct gemm_shape {
    int ta, tb; // transposed A / B
    size_t M, N, K;
    double count; // times per step
} gemm_shape;

#define MAX_SHAPES 64

typedef struct shape_list {
    gemm_shape s[MAX_SHAPES];
    int n;
} shape_list;

static void add_shape(shape_list *l, int ta, int tb, size_t M, size_t N, size_t K, double count) {
    for (int i = 0; i < l->n; i++) {
        gemm_shape *g = &l->s[i];
        if (g->ta == ta && g->tb == tb && g->M == M && g->N == N && g->K == K) {
            g->count += count;
            return;
        }
    }
    if (l->n < MAX_SHAPES)
        l->s[l->n++] = (gemm_shape){ta, tb, M, N, K, count};
}

// A linear layer (rows x C -> OC): forward out = inp W^T, backward dinp = dout W and
// dW = dout^T inp (rd_linear_forward / rd_linear_backward).
static void add_linear(shape_list *l, size_t rows, size_t C, size_t OC, int dinp) {
    add_shape(l, 0, 1, rows, OC, C, 1);
    if (dinp)
        add_shape(l, 0, 0, rows, C, OC, 1);
    add_shape(l, 1, 0, OC, C, rows, 1);
}

// The matmuls of one teacher step, mirroring rd_model (model.c / layers.c).
static void teacher_shapes(shape_list *l, const args *a) {
    size_t B = a->batch, L = a->seq_len, C = a->dim, NH = a->heads, hs = C / NH, BL = B * L;
    size_t E = 2 * a->dim;
    l->n = 0;
    add_linear(l, BL, C, C, 1); // history in-projection (table dim = width)
    if (a->seq == RD_SEQ_DIN) {
        // Attention MLP over [q, k, q - k, q * k] (H = C), first layer folded (rd_din_forward):
        // the query's share once per example, [k, q * k] per position.
        add_linear(l, B, E, C, 1); // query from the request
        add_linear(l, B, C, C, 1);
        add_linear(l, BL, 2 * C, C, 1);
        add_linear(l, BL, C, 1, 1); // the score
        size_t W = E + C;
        add_linear(l, B, W, 256, 1);
        add_linear(l, B, 256, 128, 1);
        add_linear(l, B, 128, 64, 1);
        add_linear(l, B, 64, 1, 1);
        return;
    }
    for (size_t k = 0; k < a->layers; k++) {
        add_linear(l, BL, C, 3 * C, 1);
        add_linear(l, BL, C, C, 1);
        add_linear(l, BL, C, 4 * C, 1);
        add_linear(l, BL, 4 * C, C, 1);
        double bh = (double)(B * NH);
        add_shape(l, 0, 1, L, L, hs, bh); // S = Q K^T
        add_shape(l, 0, 0, L, hs, L, bh); // O = P V
        add_shape(l, 0, 1, L, L, hs, bh); // dP = dO V^T
        add_shape(l, 1, 0, L, hs, L, bh); // dV = P^T dO
        add_shape(l, 0, 0, L, hs, L, bh); // dQ = dS K
        add_shape(l, 1, 0, L, hs, L, bh); // dK = dS^T Q
    }
    add_linear(l, B, E, C, 1);      // request query
    add_linear(l, BL, C, 2 * C, 1); // keys / values of the target attention
    add_linear(l, B, C, C, 1);      // its output projection
    size_t W = E + C;
    add_linear(l, B, W, 256, 1);
    add_linear(l, B, 256, 128, 1);
    add_linear(l, B, 128, 64, 1);
    add_linear(l, B, 64, 1, 1);
}

// GFLOP/s of cblas_sgemm over the step's matmul mix: sum of FLOPs / sum of count x time.
static double sgemm_mix_gflops(const shape_list *l, double *flops_step) {
    size_t maxa = 1, maxb = 1, maxc = 1;
    for (int i = 0; i < l->n; i++) {
        const gemm_shape *g = &l->s[i];
        maxa = g->M * g->K > maxa ? g->M * g->K : maxa;
        maxb = g->K * g->N > maxb ? g->K * g->N : maxb;
        maxc = g->M * g->N > maxc ? g->M * g->N : maxc;
    }
    float *A = xcalloc(maxa, sizeof(float)), *Bm = xcalloc(maxb, sizeof(float));
    float *Cm = xcalloc(maxc, sizeof(float));
    rd_rng r;
    rd_rng_seed(&r, 9);
    for (size_t i = 0; i < maxa; i++)
        A[i] = rd_rng_uniformf(&r) - 0.5f;
    for (size_t i = 0; i < maxb; i++)
        Bm[i] = rd_rng_uniformf(&r) - 0.5f;
    double total_t = 0.0, total_f = 0.0;
    for (int i = 0; i < l->n; i++) {
        const gemm_shape *g = &l->s[i];
        int M = (int)g->M, N = (int)g->N, K = (int)g->K;
        int lda = g->ta ? M : K, ldb = g->tb ? K : N;
        double f = 2.0 * (double)g->M * (double)g->N * (double)g->K;
        // Repeat until ~30 ms per shape so that tiny gemms are timed reliably; keep the best of
        // three rounds (what a warmed-up step sees).
        size_t reps = (size_t)(3e7 / (f + 1e4)) + 1;
        double best = 1e30;
        for (int round = 0; round < 3; round++) {
            double t0 = rd_mono_s();
            for (size_t k = 0; k < reps; k++)
                cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,
                            g->tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda, Bm, ldb, 1.0f,
                            Cm, N);
            double dt = (rd_mono_s() - t0) / (double)reps;
            best = dt < best ? dt : best;
        }
        total_t += g->count * best;
        total_f += g->count * f;
    }
    free(A);
    free(Bm);
    free(Cm);
    *flops_step = total_f;
    return total_f / total_t * 1e-9;
}

int main(int argc, char **argv) {
    args a;
    if (parse_args(argc, argv, &a) != 0)
        return 2;
    if (bench_one_process(stderr, "bench_dense") != 0)
        return 2;
    rd_blas_set_threads(a.threads);

    rd_table_config tables[4] = {{.name = "t_user", .dim = (int)a.dim},
                                 {.name = "t_item", .dim = (int)a.dim},
                                 {.name = "s_user", .dim = 16},
                                 {.name = "s_item", .dim = 16}};
    rd_model_config tmc, smc;
    teacher_config(&tmc, &a);
    student_config(&smc, &a);

    shape_list shapes;
    teacher_shapes(&shapes, &a);
    double gemm_flops_step;
    double sgemm_gflops = sgemm_mix_gflops(&shapes, &gemm_flops_step);

    double tflops, sflops;
    size_t tparams, sparams;
    timing tt = time_steps(&tmc, tables, 4, &a, &tflops, &tparams);
    args sa = a;
    sa.iters = a.iters * 20;
    sa.warmup = a.warmup * 5;
    timing st = time_steps(&smc, tables, 4, &sa, &sflops, &sparams);

    // Step rates from the median step time (min / avg / max are printed and written too).
    double step_flops = tflops * (double)a.batch;
    double teacher_gflops = step_flops / tt.median * 1e-9;
    double ratio = teacher_gflops / sgemm_gflops;
    double tsps = (double)a.batch / tt.median, ssps = (double)a.batch / st.median;

    const char *seq = a.seq == RD_SEQ_DIN ? "din" : "transformer";
    printf("bench_dense: batch %zu, %d BLAS thread(s), teacher %s L=%zu (%s) d=%zu layers=%zu "
           "heads=%zu act=%s (%zu params), student (%zu params)\n",
           a.batch, a.threads, seq, a.seq_len, a.uniform ? "lengths uniform in 1..L" : "full",
           a.dim, a.layers, a.heads, a.act, tparams, sparams);
    printf("  teacher dense FLOPs per step %.3g (model count) vs %.3g (matmul mix)\n", step_flops,
           gemm_flops_step);
    printf("  %-24s %12s %12s %12s %12s\n", "step time (s)", "min", "median", "avg", "max");
    printf("  %-24s %12.4f %12.4f %12.4f %12.4f\n", "teacher", tt.min, tt.median, tt.avg, tt.max);
    printf("  %-24s %12.5f %12.5f %12.5f %12.5f\n", "student", st.min, st.median, st.avg, st.max);
    printf("  %-24s %12s\n", "metric", "value");
    printf("  %-24s %12.2f\n", "sgemm_gflops", sgemm_gflops);
    printf("  %-24s %12.2f\n", "teacher_step_gflops", teacher_gflops);
    printf("  %-24s %12.3f\n", "ratio_sgemm", ratio);
    printf("  %-24s %12.1f\n", "teacher_samples_per_s", tsps);
    printf("  %-24s %12.1f\n", "student_samples_per_s", ssps);
    if (a.json) {
        bench_json bj;
        FILE *f = bench_json_open(&bj, "bench_dense", a.json);
        if (!f)
            return 1;
        fprintf(f,
                "{\"bench\": \"dense\", \"sgemm_gflops\": %.3f, \"teacher_step_gflops\": %.3f, "
                "\"ratio_sgemm\": %.4f, "
                "\"teacher_samples_per_s\": %.2f, \"student_samples_per_s\": %.2f, "
                "\"batch\": %zu, \"threads\": %d, \"teacher_step_s\": {\"min\": %.5f, \"median\": "
                "%.5f, \"avg\": %.5f, \"max\": %.5f}, \"student_step_s\": {\"min\": %.6f, "
                "\"median\": %.6f, \"avg\": %.6f, \"max\": %.6f}, \"seq_len\": %zu, \"dim\": %zu, "
                "\"layers\": %zu, \"heads\": %zu, \"seq\": \"%s\", \"lengths\": \"%s\", "
                "\"activation\": \"%s\"}\n",
                sgemm_gflops, teacher_gflops, ratio, tsps, ssps, a.batch, a.threads, tt.min,
                tt.median, tt.avg, tt.max, st.min, st.median, st.avg, st.max, a.seq_len, a.dim,
                a.layers, a.heads, seq, a.uniform ? "uniform" : "full", a.act);
        if (bench_json_commit(&bj, "bench_dense") != 0)
            return 1;
    }
    return 0;
}
