#!/usr/bin/env bash
# fuzz_seeds.sh — the committed fuzz seeds are what tests/fuzz/make_seeds.py writes today.
# Several seeds are copies of committed inputs (configs/reference.yaml, configs/schema-example.yaml,
# tests/data/*), and they went stale when those changed: the fuzzer then started from configs
# that no longer show the current keys. This runs make_seeds.py (standard library only) in a
# scratch copy of the files it reads and compares every file it writes with the committed one.
# The dataset and serving-bundle seeds need a prepared events.bin or an exported bundle as
# arguments; they are not regenerated here, so they are not compared.
#
# On a difference: python3 tests/fuzz/make_seeds.py (from the repository root), and commit.
#
#   bash tests/scripts/fuzz_seeds.sh [path/to/recdistill (unused)]
set -u
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_seeds_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT

# What make_seeds.py reads, at the same places relative to a root of its own.
mkdir -p "$TMP/tests/fuzz/corpus/config" "$TMP/tests/data" "$TMP/configs"
cp "$SRC/tests/fuzz/make_seeds.py" "$TMP/tests/fuzz/"
cp "$SRC/tests/data/slurm-tiny.yaml" "$SRC/tests/data/clicks.csv" "$SRC/tests/data/users.csv" \
    "$TMP/tests/data/"
cp "$SRC/configs/reference.yaml" "$SRC/configs/schema-example.yaml" "$TMP/configs/"
python3 "$TMP/tests/fuzz/make_seeds.py" >"$TMP/log" 2>&1 || { echo "FAIL: make_seeds.py: $(cat "$TMP/log")"; exit 1; }

n=0 bad=0
while IFS= read -r f; do
    rel="${f#"$TMP"/}"
    n=$((n + 1))
    if [ ! -e "$SRC/$rel" ]; then
        echo "FAIL: $rel: written by make_seeds.py but not committed"; bad=$((bad + 1))
    elif ! cmp -s "$f" "$SRC/$rel"; then
        echo "FAIL: $rel differs from what make_seeds.py writes (stale seed)"; bad=$((bad + 1))
    fi
done < <(find "$TMP/tests/fuzz/corpus" "$TMP/tests/bad" -type f | sort)
[ "$n" -gt 0 ] || { echo "FAIL: make_seeds.py wrote nothing"; exit 1; }
if [ "$bad" -ne 0 ]; then
    echo "fuzz_seeds.sh: $bad of $n seeds stale: run python3 tests/fuzz/make_seeds.py and commit"
    exit 1
fi
echo "fuzz_seeds.sh: $n seeds up to date"
