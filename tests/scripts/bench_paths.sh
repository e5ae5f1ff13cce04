#!/usr/bin/env bash
# bench_paths.sh — the bench/ programs' folders named by awkward paths:
#  - bench_prepare's MovieLens folder named by a long path (700 bytes, with spaces, é and 中;
#    data.input holds up to 1023): --ml100k DIR and RD_SHARED_DATA were cut at 592 and 496
#    bytes, so such a DIR was refused as "no <the cut path>" (exit 2) and RD_SHARED_DATA's case
#    was skipped. One over the limit is refused naming it.
#  - bench_tokens (--dir, with and without --compact) and bench_targets (--log 1, in TMPDIR)
#    removed their folders with system("rm -rf '<path>'"): a --dir "W/x'a b'y" removed W/xa and
#    ./by/store, folders of someone else, and left its own store. A --dir over 1023 bytes was
#    cut at 511 (the store built in the folder the cut path named): refused.
#
#   bash tests/scripts/bench_paths.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: bench_paths.sh path/to/recdistill}")"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
B="$(dirname "$RD")/bench"
[ -x "$B/bench_prepare" ] || { echo "no $B (RD_BUILD_BENCH off): skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_bench_paths_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# A folder of 700 bytes in all, its movielens-100k the test's mini MovieLens.
long="$TMP/ml é 中"
while [ "${#long}" -lt 680 ]; do long="$long/$(printf 'd%.0s' {1..100}) \$x"; done
mkdir -p "$long" && ln -s "$SRC/tests/data/ml100k-mini" "$long/movielens-100k" || exit 1
ml="$long/movielens-100k"
[ "${#ml}" -gt 600 ] && [ "${#ml}" -lt 1000 ] || { echo "setup: ${#ml} bytes"; exit 1; }

timeout 120 "$B/bench_prepare" --ml100k "$ml" --skip-synth --reps 1 --warmup 0 --json "$TMP/a é.json" \
    >"$TMP/out" 2>&1 || bad "--ml100k <${#ml} bytes>: exit $?: $(cat "$TMP/out")"
grep -q '"movielens100k"' "$TMP/a é.json" 2>/dev/null || bad "--ml100k <${#ml} bytes>: no case in the JSON: $(cat "$TMP/out")"
RD_SHARED_DATA="$long" timeout 120 "$B/bench_prepare" --skip-synth --reps 1 --warmup 0 >"$TMP/out" 2>&1 ||
    bad "RD_SHARED_DATA <${#long} bytes>: exit $?: $(cat "$TMP/out")"
grep -q "^movielens100k  *[0-9]" "$TMP/out" || bad "RD_SHARED_DATA <${#long} bytes>: the case did not run: $(cat "$TMP/out")"

# Past data.input's 1023 bytes: refused, naming the path, nothing run.
over="$ml$(printf '/x%.0s' {1..200})"
timeout 60 "$B/bench_prepare" --ml100k "$over" --skip-synth --json "$TMP/b.json" >"$TMP/out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -qF -- "--ml100k: path too long (at most 1023 bytes): $over" "$TMP/out" && [ ! -e "$TMP/b.json" ] ||
    bad "--ml100k <${#over} bytes>: exit $rc: $(head -2 "$TMP/out")"

# bench_tokens and bench_targets with quotes in their folder: their own store or log removed,
# the folders the quotes' words would name kept.
if command -v mpiexec.mpich >/dev/null; then
    q="$TMP/x'a b'y"
    mkdir -p "$q" "$TMP/xa" "$TMP/cwd/by/store"
    touch "$TMP/xa/keep" "$TMP/cwd/by/store/keep"
    cd "$TMP/cwd" || exit 1
    for c in "" --compact; do
        timeout 120 mpiexec.mpich -n 2 "$B/bench_tokens" --users 20 --per-user 8 --dim 4 --L 4 --batch 4 \
            --iters 2 --rounds 1 --warmup 0 ${c:+"$c"} --dir "$q" >"$TMP/out" 2>&1 ||
            bad "bench_tokens --dir '$q' $c: exit $?: $(tail -3 "$TMP/out")"
        [ -z "$(ls -A "$q")" ] || bad "bench_tokens --dir '$q' $c left: $(ls -A "$q")"
    done
    TMPDIR="$q" timeout 120 mpiexec.mpich -n 2 "$B/bench_targets" --log 1 --reps 1 --warmup 0 --batches 64 \
        --targets 1000 >"$TMP/out" 2>&1 || bad "bench_targets --log 1, TMPDIR '$q': exit $?: $(tail -3 "$TMP/out")"
    [ -z "$(ls -A "$q")" ] || bad "bench_targets with TMPDIR '$q' left: $(ls -A "$q")"
    [ -f "$TMP/xa/keep" ] && [ -f "$TMP/cwd/by/store/keep" ] ||
        bad "a bench removed folders its --dir or TMPDIR does not name: $TMP/xa or $TMP/cwd/by/store"
    over="$TMP/$(printf 'z%.0s' {1..1100})"
    timeout 60 mpiexec.mpich -n 2 "$B/bench_tokens" --dir "$over" >"$TMP/out" 2>&1
    rc=$?
    [ $rc -eq 2 ] && grep -q "bench_tokens: --dir: path too long (at most 1023 bytes)" "$TMP/out" ||
        bad "bench_tokens --dir <1100 bytes>: exit $rc: $(head -1 "$TMP/out")"
fi
exit "$fail"
