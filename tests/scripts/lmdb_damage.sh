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
# gc writes: it verifies first and refuses a damaged store, deleting nothing. It used to go
# ahead: deletions committed before it met the damage (a failed gc that changed the store), and
# LMDB's delete overran a heap buffer on a damaged page header. The header of each page in turn
# is replaced; gc must fail cleanly with the file unchanged, or succeed (a page it never reads).
NP=$(( $(stat -c %s "$TMP/d/store/shard-0000/data.mdb") / 4096 ))
refused=0
for pg in $(seq 2 $((NP - 1))); do
    rm -rf "$TMP/dmg"; cp -r "$TMP/d/store" "$TMP/dmg"
    python3 - "$TMP/dmg/shard-0000/data.mdb" "$pg" <<'PY' || fail "could not damage the copy"
import sys
p, pg = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[pg * 4096:pg * 4096 + 16] = bytes((i * 37 + 5) % 256 for i in range(16))
open(p, "wb").write(b)
PY
    cp "$TMP/dmg/shard-0000/data.mdb" "$TMP/dmg.before"
    timeout 60 "$RD" tokens gc "$TMP/dmg" --before 100000 > "$TMP/gc.out" 2> "$TMP/gc.err"
    rc=$?
    [ $rc -eq 0 ] && continue
    [ $rc -eq 1 ] || fail "gc, page $pg damaged: exit $rc: $(cat "$TMP/gc.err")"
    cmp -s "$TMP/dmg/shard-0000/data.mdb" "$TMP/dmg.before" ||
        fail "gc, page $pg damaged: failed but changed the store: $(cat "$TMP/gc.err")"
    grep -q "does not verify (nothing deleted)" "$TMP/gc.err" && refused=$((refused + 1))
done
[ $refused -gt 0 ] || fail "no damaged page made gc refuse the store after verifying it"
echo "gc on $((NP - 2)) damaged copies: $refused refused after verify, none changed"
# The input store is only copied, never changed.
"$RD" tokens verify "$TMP/d/store" > /dev/null 2>&1 || fail "the sweep changed its input store"
# RECDISTILL named as a file of the current folder is that file: the sweep ran the name
# through PATH (a traceback when none was there; here a stand-in that fails every call).
mkdir -p "$TMP/path" && printf '#!/bin/sh\nexit 99\n' > "$TMP/path/$(basename "$RD")" && chmod +x "$TMP/path/$(basename "$RD")"
(cd "$(dirname "$RD")" && PATH="$TMP/path:$PATH" timeout 120 python3 "$SRC/tools/lmdb-damage-sweep.py" \
  "$(basename "$RD")" "$TMP/d/store" --trials 1 --modes zero) > "$TMP/name.txt" 2>&1 ||
  fail "RECDISTILL given as a bare file name: $(tail -5 "$TMP/name.txt")"
grep -q "lmdb-damage-sweep.py: 0 defects" "$TMP/name.txt" || fail "bare file name: $(cat "$TMP/name.txt")"
# Bad arguments: exit 2 with the reason.
python3 "$SRC/tools/lmdb-damage-sweep.py" "$RD" "$TMP/d/store" --trials x > "$TMP/bad.txt" 2>&1
[ $? -eq 2 ] || fail "--trials x: expected exit 2"
grep -q "not a number" "$TMP/bad.txt" || fail "--trials x: no reason"
python3 "$SRC/tools/lmdb-damage-sweep.py" "$RD" "$TMP/nowhere" > "$TMP/bad.txt" 2>&1
[ $? -eq 2 ] || fail "missing store: expected exit 2"
echo "lmdb_damage.sh: ok"
