#!/usr/bin/env bash
# lmdb_damage.sh — tools/lmdb-damage-sweep.py on a tiny token store: random damage of a shard
# file (bit flips, random, zeroed and half-random pages) must make `tokens verify`, `stats` and
# `compact` end in a clear error or ok, never a signal, a hang or partial output (the guard of
# rd/lmdbx.h, docs/reliability.md). Keeps the sweep tool itself from going stale. The store is
# built by bench_tokens, so this skips where benchmarks are not built (the ASan build).
#
#   bash tests/scripts/lmdb_damage.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: lmdb_damage.sh path/to/recdistill}")"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
BENCH="$(dirname "$RD")/bench/bench_tokens"
[ -x "$BENCH" ] || { echo "no $BENCH (RD_BUILD_BENCH off): skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_damage_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

OPENBLAS_NUM_THREADS=1 timeout 120 "$BENCH" --users 60 --per-user 64 --dim 8 --L 16 --batch 8 \
  --iters 1 --rounds 1 --warmup 0 --dir "$TMP/d" --keep > "$TMP/bench.txt" 2>&1 ||
  { cat "$TMP/bench.txt"; fail "bench_tokens could not build the store"; }
[ -f "$TMP/d/store/shard-0000/data.mdb" ] || fail "no store built"

timeout 600 python3 "$SRC/tools/lmdb-damage-sweep.py" "$RD" "$TMP/d/store" --trials 3 --seed 7 \
  > "$TMP/sweep.txt" 2>&1
rc=$?
cat "$TMP/sweep.txt"
[ $rc -eq 0 ] || fail "the sweep saw defects (exit $rc)"
grep -q "lmdb-damage-sweep.py: 0 defects" "$TMP/sweep.txt" || fail "no '0 defects' line"
# Every mode ran every tool.
for m in bits page zero header ptrs; do
  grep -q "^$m " "$TMP/sweep.txt" || fail "mode $m did not run"
done
# The input store is only copied, never changed.
"$RD" tokens verify "$TMP/d/store" > /dev/null 2>&1 || fail "the sweep changed its input store"
# Bad arguments: exit 2 with the reason.
python3 "$SRC/tools/lmdb-damage-sweep.py" "$RD" "$TMP/d/store" --trials x > "$TMP/bad.txt" 2>&1
[ $? -eq 2 ] || fail "--trials x: expected exit 2"
grep -q "not a number" "$TMP/bad.txt" || fail "--trials x: no reason"
python3 "$SRC/tools/lmdb-damage-sweep.py" "$RD" "$TMP/nowhere" > "$TMP/bad.txt" 2>&1
[ $? -eq 2 ] || fail "missing store: expected exit 2"
echo "lmdb_damage.sh: ok"
