#!/usr/bin/env bash
# runtime_id.sh — the run-time identity (app/build_id.c rd_app_runtime_id, docs/reliability.md
# "Build identity"): the MPI library, OpenBLAS (version, config, the CPU kernel it picked), libc,
# LMDB and libyaml a rank runs on. Ranks of one build may differ there (another CPU, another
# install): the launch goes on, but its floats are not bit-for-bit reproducible, and nothing said
# so. Now:
#  - `recdistill --version --runtime` prints the build line, then the run-time line of
#    key=value fields; `recdistill --version` still prints the build line alone.
#  - a launch whose ranks share one run-time identity prints no warning, and report.json has
#    "runtime" (rank 0's line) and "runtime_mixed": false.
#  - a launch with a rank on other libraries trains to exit 0 with exactly one warning from rank
#    0 naming the fields that differ and each run-time line with its ranks and hosts;
#    "runtime_mixed": true. The other rank's libraries are simulated with RD_TEST_RUNTIME_SUFFIX
#    (test only: it appends " test=VALUE" to the run-time line and changes nothing else) and,
#    where OpenBLAS is a DYNAMIC_ARCH build, with OPENBLAS_CORETYPE (another CPU kernel: what
#    another node's CPU gives).
#  - the warning stays bounded: at most 8 run-time lines, the rest counted.
#   runtime_id.sh PATH/TO/recdistill
set -u
RD="${1:?usage: runtime_id.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
export OPENBLAS_NUM_THREADS=1
unset RD_TEST_RUNTIME_SUFFIX OPENBLAS_CORETYPE
TMP="$(mktemp -d /tmp/rd_test_runtime_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
C="$TMP/tiny.yaml" # world size 4: 1 PS rank, three one-rank jobs
cp "$SRC/tests/data/slurm-tiny.yaml" "$C"
fail=0
bad() { echo "FAIL: $*"; fail=1; }
HOST="$(hostname)"
WARN="run one build on different run-time libraries"

LAUNCH_TIMEOUT=120
# shellcheck source=lib/launch.sh
. "$SRC/tests/scripts/lib/launch.sh" # launch, has
# report RUN KEY VALUE: report.json of run RUN has "KEY": VALUE (VALUE as JSON text).
report() {
    grep -qF "\"$2\": $3," "$TMP/$1/report.json" 2>/dev/null ||
        bad "$1: report.json lacks \"$2\": $3: $(grep -F "\"$2\"" "$TMP/$1/report.json" 2>&1)"
}

# 1. --version --runtime: the build line, then the run-time line, every field key=value.
ID="$("$RD" --version)"
"$RD" --version --runtime >"$TMP/v.out" 2>"$TMP/v.err" || bad "--version --runtime: exit $?"
[ "$(wc -l <"$TMP/v.out")" = 2 ] || bad "--version --runtime: not two lines: $(cat "$TMP/v.out")"
[ "$(sed -n 1p "$TMP/v.out")" = "$ID" ] || bad "--version --runtime: first line is not --version's"
RT="$(sed -n 2p "$TMP/v.out")"
keys="$(echo "$RT" | tr ' ' '\n' | sed 's/=.*//' | tr '\n' ' ')"
[ "$keys" = "mpi openblas blas_core blas_config libc lmdb yaml " ] ||
    bad "--version --runtime: fields '$keys' in '$RT'"
echo "$RT" | tr ' ' '\n' | grep -qvE '^[a-z_]+=[^=]' && bad "--version --runtime: a field without a value: '$RT'"
echo "$RT" | grep -qE '(^| )openblas=[0-9]+\.[0-9]+' || bad "--version --runtime: no OpenBLAS version: '$RT'"
# The mpi field names MPICH's device too (MPICH-4.0.2/ch4:ucx): two MPICH builds of one version
# with other devices (ch3 vs ch4, ucx vs ofi) reduce differently, and read as the same library.
if command -v mpichversion >/dev/null 2>&1 && echo "$RT" | grep -qE '(^| )mpi=MPICH-'; then
    DEV="$(mpichversion | sed -n 's/^MPICH Device:[[:space:]]*//p' | head -1)"
    MV="$(mpichversion | sed -n 's/^MPICH Version:[[:space:]]*//p' | head -1)"
    [ -n "$DEV" ] && { echo "$RT" | tr ' ' '\n' | grep -qxF "mpi=MPICH-$MV/$DEV" ||
        bad "--version --runtime: mpi is not MPICH-$MV/$DEV: '$RT'"; }
fi
[ "$(echo "$ID" | wc -l)" = 1 ] || bad "--version: more than the build line: $ID"
"$RD" --version --bogus >/dev/null 2>"$TMP/vb.err"
[ $? = 2 ] && grep -qF -- "--version takes only --runtime, not '--bogus'" "$TMP/vb.err" ||
    bad "--version --bogus: not a usage error: $(cat "$TMP/vb.err")"
# An extra argument after --runtime is named as the one refused (it named --runtime itself).
"$RD" --version --runtime extra >/dev/null 2>"$TMP/vr.err"
[ $? = 2 ] && grep -qF -- "--version takes only --runtime, not 'extra'" "$TMP/vr.err" ||
    bad "--version --runtime extra: $(cat "$TMP/vr.err")"
# The test-only suffix appends a field and changes nothing else (not the build line).
S="$(RD_TEST_RUNTIME_SUFFIX='odd one' "$RD" --version --runtime)"
[ "$S" = "$(printf '%s\n%s test=odd_one' "$ID" "$RT")" ] || bad "RD_TEST_RUNTIME_SUFFIX: '$S'"

# 2. One run-time identity on every rank: no warning, "runtime_mixed": false.
launch 0 same -n 4 "$RD" train "$C" --out "$TMP/same"
grep -qF "$WARN" "$TMP/same.err" && bad "same: a warning for one run-time identity: $(cat "$TMP/same.err")"
report same runtime "\"$RT\""
report same runtime_mixed false

# 3. One rank on other libraries: trains (exit 0), one warning naming the differing field and
#    each run-time line with its ranks and host; "runtime_mixed": true, "runtime" rank 0's line.
launch 0 mixed -n 3 "$RD" train "$C" --out "$TMP/mixed" : \
    -n 1 env RD_TEST_RUNTIME_SUFFIX=odd "$RD" train "$C" --out "$TMP/mixed"
has mixed "recdistill train: warning: the ranks of this launch $WARN (they differ in: test);" 1
has mixed "warning:" 1
has mixed "  runtime 1: $RT" 1
has mixed "    ranks 0-2 (mpiexec segment 1) on $HOST" 1
has mixed "  runtime 2: $RT test=odd" 1
has mixed "    rank 3 (mpiexec segment 2) on $HOST" 1
report mixed runtime "\"$RT\""
report mixed runtime_mixed true
grep -q "^report: " "$TMP/mixed.out" || bad "mixed: did not train to its report: $(tail -3 "$TMP/mixed.out")"

# 3b. Another CPU kernel of OpenBLAS (what a node with another CPU gets), where the library
#     picks its kernel at run time (DYNAMIC_ARCH) and honours OPENBLAS_CORETYPE.
CORE="$(echo "$RT" | tr ' ' '\n' | sed -n 's/^blas_core=//p')"
OTHER_CORE=Prescott
[ "$CORE" = Prescott ] && OTHER_CORE=Nehalem
if [ "$(OPENBLAS_CORETYPE=$OTHER_CORE "$RD" --version --runtime | tail -1)" != "$RT" ]; then
    launch 0 cores -n 2 "$RD" train "$C" --out "$TMP/cores" : \
        -n 2 env OPENBLAS_CORETYPE=$OTHER_CORE "$RD" train "$C" --out "$TMP/cores"
    has cores "$WARN (they differ in: blas_core, blas_config);" 1
    has cores "    ranks 2, 3 (mpiexec segment 2) on $HOST" 1
    report cores runtime_mixed true
else
    echo "runtime_id: OPENBLAS_CORETYPE changes nothing here (not DYNAMIC_ARCH): 3b skipped"
fi

# 4. Bounded: ten ranks with ten run-time lines show 8, and count the rest.
B="$TMP/ten.yaml" # world size 10: the teacher job on 7 ranks
sed 's/{name: teacher, role: teacher, model: teacher}/{name: teacher, role: teacher, model: teacher, ranks: 7}/' \
    "$C" >"$B"
segs=()
for k in 0 1 2 3 4 5 6 7 8 9; do
    [ "$k" = 0 ] || segs+=(:)
    segs+=(-n 1 env RD_TEST_RUNTIME_SUFFIX=r$k "$RD" train "$B" --out "$TMP/ten")
done
launch 0 ten "${segs[@]}"
has ten "$WARN" 1
has ten "  runtime 8: $RT test=r7" 1
grep -qF "  runtime 9:" "$TMP/ten.err" && bad "ten: more than 8 run-time lines shown"
has ten "  ... and 2 more runtimes (2 ranks)" 1
report ten runtime_mixed true

[ "$fail" = 0 ] && echo "runtime_id: ok"
exit "$fail"
