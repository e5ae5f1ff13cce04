// build_id.c — the build identity of this recdistill binary: what every rank of a launch must
// share (rd_app_agree refuses a launch whose ranks run different builds, docs/reliability.md
// "Build identity").
//
// One line of space-separated key=value fields:
//   recdistill 0.1.0 src=<16 hex> wire=1 ckpt=1 train-ckpt=2 target-log=1 tokens=2 dataset=2
//   serve=3 fp=ieee abi=le64
// - src: the digest of the program's sources (cmake/build_id.cmake), so the same commit built on
//   two machines, in other folders, with another compiler version or -O level, is one build,
//   while any edit of a compiled source (model code, a config field, a message layout) is
//   another. Not __DATE__/__TIME__ or a git hash: a rebuild, or a commit that only touches docs,
//   must not refuse a launch.
// - wire..serve: the versions of the wire protocol and of every file layout the ranks share. The
//   digest already changes with them; they are spelt out so that the refusal says what differs.
// - fp: the floating-point mode the compiler was allowed. "fast-math" (__FAST_MATH__) reorders
//   and contracts float sums and compiles the NaN scans away; "ieee+fma" is clang on a target
//   with FMA, which fuses a*b+c by default (-ffp-contract=on); GCC in ISO C mode (C_EXTENSIONS
//   OFF) does not fuse. Ranks whose floats round differently drift apart: the dense replicas of
//   one job apply the same allreduced gradient to weights that are no longer the same.
//   -O2/-O3, NDEBUG and the sanitizers do not change a float result and are left out.
// - abi: byte order and pointer width. Wire headers and checkpoints are native structs.
// - " fuzzing" is appended for FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION builds (dataset CRCs
//   relaxed).
//
// The line sits in the binary between the markers "RD_BUILD_ID{" and "\0}", once, so a test can
// find it and change a copy of the binary (tests/scripts/mpmd_args.sh). No environment variable
// or option changes it.
//
// The run-time identity (rd_app_runtime_id) is the other half: the shared libraries this process
// loaded, which are not part of the build. Two nodes with other CPUs or other installs run one
// build, but OpenBLAS picks its kernels by CPU, and another MPI, libm or OpenBLAS version may
// round a reduction or an sgemm differently: their float results are not bit-for-bit
// reproducible. rd_app_agree warns about a launch whose ranks differ there; it never refuses it.
#include "commands.h"

#include "rd/checkpoint.h"
#include "rd/comm.h"
#include "rd/dataset.h"
#include "rd/msg.h"
#include "rd/serve.h"
#include "rd/targets.h"
#include "rd/tokens.h"
#include "rd/train_ckpt.h"

#include "rd_build_src.h" // generated: RD_BUILD_SRC_DIGEST, RD_BUILD_VERSION

#include <cblas.h> // OpenBLAS's: openblas_get_config, openblas_get_corename
#include <ctype.h>
#include <lmdb.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

#define STR2(x) #x
#define STR(x)  STR2(x)

#if defined(__FAST_MATH__)
#define BUILD_FP "fast-math"
#elif defined(__clang__) &&                                                                        \
    (defined(__FMA__) || defined(__FP_FAST_FMAF) || defined(__ARM_FEATURE_FMA))
#define BUILD_FP "ieee+fma"
#else
#define BUILD_FP "ieee"
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BUILD_ORDER "be"
#else
#define BUILD_ORDER "le"
#endif
#if defined(__SIZEOF_POINTER__) && __SIZEOF_POINTER__ == 4
#define BUILD_WIDTH "32"
#else
#define BUILD_WIDTH "64"
#endif

#if defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
#define BUILD_FUZZ " fuzzing"
#else
#define BUILD_FUZZ ""
#endif

#define BUILD_MARK "RD_BUILD_ID{"

#define BUILD_ID                                                                                                                                                   \
    "recdistill " RD_BUILD_VERSION " src=" RD_BUILD_SRC_DIGEST                                                                                                     \
    " wire=" STR(RD_MSG_VERSION) " ckpt=" STR(RD_CKPT_VERSION) " train-ckpt=" STR(RD_TRAIN_CKPT_VERSION) " target-log=" STR(RD_TARGET_LOG_VERSION) " tokens=" STR( \
        RD_TOKEN_STORE_VERSION) " dataset=" STR(RD_DATASET_VERSION) " serve=" STR(RD_SERVE_VERSION) " fp=" BUILD_FP " abi=" BUILD_ORDER                            \
        BUILD_WIDTH BUILD_FUZZ

// The markers around the line stay in the binary with it (an array, not a pointer to a literal).
static const char marked[] = BUILD_MARK BUILD_ID "\0}";

const char *rd_app_build_id(void) {
    return marked + sizeof BUILD_MARK - 1;
}

// ---------------------------------------------------------------------------------------------
// The run-time identity

enum { RUNTIME_VALUE = 160 };

// " key=value" appended to line, value with each run of blanks as one '_' (a value has no
// spaces: the line splits on them), cut to RUNTIME_VALUE bytes; "unknown" when empty.
static void add_field(char *line, size_t cap, const char *key, const char *value) {
    char v[RUNTIME_VALUE];
    size_t n = 0;
    for (const char *p = value ? value : ""; *p && n + 1 < sizeof v; p++) {
        if (isspace((unsigned char)*p) || !isprint((unsigned char)*p)) {
            if (n > 0 && v[n - 1] != '_')
                v[n++] = '_';
        } else {
            v[n++] = *p;
        }
    }
    while (n > 0 && v[n - 1] == '_')
        n--;
    v[n] = 0;
    size_t len = strlen(line);
    if (len + 1 < cap)
        snprintf(line + len, cap - len, "%s%s=%s", len ? " " : "", key, n ? v : "unknown");
}

// The MPI library (rd_mpi_library_name): "MPICH-4.0.2/ch4:ucx", the version and device of an
// MPICH build. Callable before MPI_Init (MPI-3).
static void mpi_library(char *out, size_t cap) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    v[0] = 0;
    if (MPI_Get_library_version(v, &len) != MPI_SUCCESS)
        v[0] = 0;
    v[sizeof v - 1] = 0;
    rd_mpi_library_name(v, out, cap);
}

const char *rd_app_runtime_id(void) {
    // Computed once, on the first call: the libraries a process loaded do not change.
    static char line[RD_APP_RUNTIME_MAX];
    static int done;
    if (done)
        return line;
    char v[RUNTIME_VALUE];
    line[0] = 0;

    mpi_library(v, sizeof v);
    add_field(line, sizeof line, "mpi", v);

    // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64": the version is its second
    // word; the core is the kernel set a DYNAMIC_ARCH build picked for this CPU.
    const char *cfg = openblas_get_config();
    cfg = cfg ? cfg : "";
    const char *ver = cfg + strspn(cfg, " ");
    ver += strcspn(ver, " ");
    ver += strspn(ver, " ");
    snprintf(v, sizeof v, "%.*s", (int)strcspn(ver, " "), ver);
    add_field(line, sizeof line, "openblas", v);
    add_field(line, sizeof line, "blas_core", openblas_get_corename());
    add_field(line, sizeof line, "blas_config", cfg);

#if defined(__GLIBC__)
    snprintf(v, sizeof v, "glibc-%s", gnu_get_libc_version());
#else
    snprintf(v, sizeof v, "unknown");
#endif
    add_field(line, sizeof line, "libc", v);

    int major = 0, minor = 0, patch = 0;
    mdb_version(&major, &minor, &patch);
    snprintf(v, sizeof v, "%d.%d.%d", major, minor, patch);
    add_field(line, sizeof line, "lmdb", v);
    add_field(line, sizeof line, "yaml", yaml_get_version_string());

    // Test only (tests/scripts/runtime_id.sh): one more field, " test=VALUE", so that one launch
    // can have ranks with two run-time identities. It only appends to this line: the build
    // identity, and what the program does, stay the same.
    const char *t = getenv("RD_TEST_RUNTIME_SUFFIX");
    if (t && t[0])
        add_field(line, sizeof line, "test", t);
    done = 1;
    return line;
}
