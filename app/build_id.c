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
#include "commands.h"

#include "rd/checkpoint.h"
#include "rd/dataset.h"
#include "rd/msg.h"
#include "rd/serve.h"
#include "rd/targets.h"
#include "rd/tokens.h"
#include "rd/train_ckpt.h"

#include "rd_build_src.h" // generated: RD_BUILD_SRC_DIGEST, RD_BUILD_VERSION

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
