#!/usr/bin/env bash
# valgrind-unit.sh — valgrind memcheck over the non-MPI unit tests (tests/test_<module>.c, which
# never call MPI_Init) and the fuzz replay drivers over their seed corpora and tests/bad/. Any
# invalid read/write, use of uninitialised memory, bad free, or definite/indirect leak fails the
# run (valgrind --error-exitcode), as does a failing test.
#
#   tools/valgrind-unit.sh [BUILD_DIR]        (default: build; a plain -O2/-O3 build, not ASan)
#
# RD_VALGRIND_SKIP: space-separated test names left out (default "test_synth": its statistical
# checks generate millions of events, about 20 minutes under memcheck; run it with
# RD_VALGRIND_SKIP= when you have the time). RD_VALGRIND_JOBS: tests run at once (default 2).
# Exit: 0 clean, 1 errors, 77 valgrind missing.
#
# OpenBLAS is pinned to its Sandybridge (AVX) kernels: valgrind does not emulate AVX-512, so
# OpenBLAS would pick its Haswell kernels under valgrind, and with those test_model's bitwise
# "batch prefix" check fails (also natively: OPENBLAS_CORETYPE=Haswell build/tests/test_model).
set -u
case ${1:-} in -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
BUILD="${1:-build}"
# A relative BUILD_DIR that starts with '-' is a path, not an option (valgrind read
# "-b/tests/test_x" as one: "Bad option").
case $BUILD in -*) BUILD=./$BUILD ;; esac
SRC="$(cd "$(dirname "$0")/.." && pwd)"
command -v valgrind >/dev/null || { echo "valgrind not found: skip"; exit 77; }
SKIP="${RD_VALGRIND_SKIP-test_synth}"
JOBS="${RD_VALGRIND_JOBS:-2}"
export OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Sandybridge}"
# Tests that read unmapped memory on purpose (the damaged-page guard) skip that part.
export RD_UNDER_VALGRIND=1
LOGS="$(mktemp -d /tmp/rd_vg_XXXXXX)"
trap 'rm -rf "$LOGS"' EXIT
VG=(valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --num-callers=30)
failed=()
# run NAME CMD...: in the background (at most JOBS at once); the verdict lands in $LOGS/NAME.rc.
run() {
    local name="$1"
    shift
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
    (
        t0=$(date +%s)
        "${VG[@]}" "$@" >"$LOGS/$name.log" 2>&1
        echo "$? $(( $(date +%s) - t0 ))" >"$LOGS/$name.rc"
    ) &
}
names=()
for src in "$SRC"/tests/test_*.c; do
    name="$(basename "$src" .c)"
    case " $SKIP " in *" $name "*) echo "skip   $name"; continue ;; esac
    exe="$BUILD/tests/$name"
    [ -x "$exe" ] || { echo "FAILED $name: $exe not built"; failed+=("$name"); continue; }
    # Tests that need the shared MovieLens data find it as under ctest.
    names+=("$name")
    RD_SOURCE_DIR="$SRC" RD_SHARED_DATA="${RD_SHARED_DATA:-$SRC/../shared/data}" run "$name" "$exe"
done
for t in config csv dataset wire; do
    exe="$BUILD/tests/fuzz/fuzz_${t}_replay"
    [ -x "$exe" ] || continue
    names+=("fuzz_${t}_replay")
    run "fuzz_${t}_replay" "$exe" "$SRC/tests/fuzz/corpus/$t"
done
if [ -x "$BUILD/tests/fuzz/fuzz_wire_replay" ]; then
    names+=(bad_wire)
    run bad_wire "$BUILD/tests/fuzz/fuzz_wire_replay" --expect-error "$SRC/tests/bad/wire"
fi
wait
for name in "${names[@]}"; do
    read -r rc secs <"$LOGS/$name.rc"
    if [ "$rc" -eq 0 ]; then
        echo "clean  $name ($secs s)"
    else
        echo "FAILED $name (exit $rc, $secs s):"
        grep -E '==[0-9]+==|FAILED|ERROR' "$LOGS/$name.log" | head -40
        failed+=("$name")
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "valgrind-unit.sh: ${#failed[@]} failed: ${failed[*]}"
    exit 1
fi
echo "valgrind-unit.sh: ok"
