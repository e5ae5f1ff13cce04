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
# RD_VALGRIND_SKIP= when you have the time). Exit: 0 clean, 1 errors, 77 valgrind missing.
set -u
BUILD="${1:-build}"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
command -v valgrind >/dev/null || { echo "valgrind not found: skip"; exit 77; }
SKIP="${RD_VALGRIND_SKIP-test_synth}"
export OPENBLAS_NUM_THREADS=1
VG=(valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --num-callers=30)
failed=()
run() { # name cmd...
    local name="$1" t0 t1 rc
    shift
    t0=$(date +%s)
    "${VG[@]}" "$@" >"/tmp/rd_vg_$$.log" 2>&1
    rc=$?
    t1=$(date +%s)
    if [ $rc -eq 0 ]; then
        echo "clean  $name ($((t1 - t0)) s)"
    else
        echo "FAILED $name (exit $rc, $((t1 - t0)) s):"
        grep -E '==[0-9]+==|FAILED|ERROR' "/tmp/rd_vg_$$.log" | head -40
        failed+=("$name")
    fi
}
for src in "$SRC"/tests/test_*.c; do
    name="$(basename "$src" .c)"
    case " $SKIP " in *" $name "*) echo "skip   $name"; continue ;; esac
    exe="$BUILD/tests/$name"
    [ -x "$exe" ] || { echo "FAILED $name: $exe not built"; failed+=("$name"); continue; }
    # Tests that need the shared MovieLens data find it as under ctest.
    RD_SOURCE_DIR="$SRC" RD_SHARED_DATA="${RD_SHARED_DATA:-$SRC/../shared/data}" run "$name" "$exe"
done
for t in config csv dataset wire; do
    exe="$BUILD/tests/fuzz/fuzz_${t}_replay"
    [ -x "$exe" ] || continue
    run "fuzz_${t}_replay" "$exe" "$SRC/tests/fuzz/corpus/$t"
    [ -d "$SRC/tests/bad/$t" ] && run "bad_$t" "$exe" --expect-error "$SRC/tests/bad/$t"
done
rm -f "/tmp/rd_vg_$$.log"
if [ ${#failed[@]} -ne 0 ]; then
    echo "valgrind-unit.sh: ${#failed[@]} failed: ${failed[*]}"
    exit 1
fi
echo "valgrind-unit.sh: ok"
