#!/usr/bin/env bash
# bench_tokens.sh — the token-store benchmark on a tiny store: it runs with 1 rank (no PS path)
# and with 2 (1 PS + 1 worker), writes JSON with every key the issue names (ratio_scan null with
# 1 rank), and refuses bad arguments with its usage and exit 2. Figures are not checked here
# (this machine is shared); only that they are finite and positive.
#
#   bash tests/scripts/bench_tokens.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: bench_tokens.sh path/to/recdistill}")"
BENCH="$(dirname "$RD")/bench/bench_tokens"
[ -x "$BENCH" ] || { echo "no $BENCH (RD_BUILD_BENCH off): skip"; exit 77; }
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_bench_tokens_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
TINY=(--users 40 --per-user 96 --dim 8 --L 32 --batch 16 --iters 3 --rounds 3 --warmup 1)

# 1 and 2 ranks on the store as built (1 rank without the huge-page re-read); 2 ranks on its
# compacted copy (--compact).
for run in 1 2 2c; do
  n=${run%c}
  extra=()
  [ "$run" = 2c ] && extra=(--compact)
  [ "$run" = 1 ] && extra=(--huge-pages off)
  timeout 300 "$MPIEXEC" -n "$n" "$BENCH" "${TINY[@]}" "${extra[@]}" --dir "$TMP/d$run" \
    --json "$TMP/r$run.json" > "$TMP/out$run.txt" 2>&1 ||
    { cat "$TMP/out$run.txt"; fail "bench_tokens -n $n ${extra[*]} exited $?"; }
  [ -z "$(ls -A "$TMP/d$run")" ] || fail "$run left its store behind without --keep: $(ls "$TMP/d$run")"
  python3 - "$TMP/r$run.json" "$n" "$run" <<'PY' || fail "$run: bad JSON"
import json, math, sys
j = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert j["compacted"] is (sys.argv[3] == "2c"), j["compacted"]
assert (j["compact_s"] is None) == (sys.argv[3] != "2c"), j["compact_s"]
keys = ["lmdb_scan_gbps", "rpc_fetch_gbps", "direct_fetch_gbps", "ratio_scan", "append_tokens_per_s"]
for k in keys:
    assert k in j, k
for k in ["lmdb_scan_gbps", "direct_fetch_gbps", "append_tokens_per_s"]:
    assert math.isfinite(j[k]) and j[k] > 0, (k, j[k])
assert j["rounds"] == 3 and j["ranks"] == n
# The build's write amplification: bytes handed to write(2) per token appended (/proc/self/io),
# at least the record itself (76 B of key and value at d = 8): LMDB writes whole 4 KiB pages.
w = j["append_write_bytes"]
assert w is None or (math.isfinite(w) and w >= 76), w
if sys.platform.startswith("linux"):
    assert w is not None, "append_write_bytes is null on Linux"
# What the PS rank did with the built store before serving it (rd_token_store_map_huge).
hp = j["huge_pages"]
assert hp["mode"] == ("off" if sys.argv[3] == "1" else "auto"), hp
assert hp["shards"] == 1 and 0 <= hp["reread"] <= 1 and hp["seconds"] >= 0, hp
assert (hp["note"] == "mode off") == (sys.argv[3] == "1"), hp
lo, hi = j["lmdb_scan_gbps_range"]
assert lo <= j["lmdb_scan_gbps"] <= hi
if n == 1:
    assert j["rpc_fetch_gbps"] is None and j["ratio_scan"] is None and j["rpc_fetch_gbps_range"] is None
    # (its seconds per batch were [0, 0, 0]: batches that took no time)
    assert j["rpc_batch_s"] is None, j["rpc_batch_s"]
else:
    assert j["rpc_fetch_gbps"] > 0 and j["rpc_fetch_gbps_1"] > 0
    lo, avg, hi = j["rpc_batch_s"]
    assert 0 < lo <= avg <= hi, j["rpc_batch_s"]
    lo, hi = j["rpc_fetch_gbps_range"]
    assert lo <= j["rpc_fetch_gbps"] <= hi
    assert abs(j["ratio_scan"] - j["rpc_fetch_gbps"] / j["lmdb_scan_gbps"]) < 0.01
    # The serving rank's mapping of the store (its file system, resident and huge-page kB).
    assert isinstance(j["store_fs"], str) and j["store_fs"], j["store_fs"]
    m = j["store_map_kb"]
    assert m["resident"] > 0 and 0 <= m["huge"] <= m["resident"], m
PY
done
grep -q "ratio_scan" "$TMP/out2.txt" || fail "no ratio_scan line"
grep -q "the figures below are of the copy" "$TMP/out2c.txt" || fail "--compact: no compact_s line"

# Bad arguments: the reason, the usage, exit 2, no JSON written. Sizes the machine cannot hold
# too: a --batch 2000000000 aborted in rd_xmalloc (exit 1) after the store was built, and left it
# behind; --rounds x --iters beyond INT_MAX wrapped to a negative count of batches.
while IFS='|' read -r args why; do
  # shellcheck disable=SC2086
  timeout 60 "$MPIEXEC" -n 1 "$BENCH" $args --json "$TMP/bad.json" > "$TMP/bad.txt" 2>&1 < /dev/null
  rc=$?
  [ $rc -eq 2 ] || fail "'$args' exited $rc, expected 2"
  grep -q "usage:" "$TMP/bad.txt" || fail "'$args': no usage line"
  grep -qF -- "bench_tokens: $why" "$TMP/bad.txt" || fail "'$args': no reason '$why': $(head -1 "$TMP/bad.txt")"
  [ ! -e "$TMP/bad.json" ] || fail "'$args' wrote JSON"
done <<'EOF'
--rounds 0|--rounds: '0' is not an integer in 1..64
--rounds 65|--rounds: '65' is not an integer in 1..64
--users 3x|--users: '3x' is not an integer
--L 200 --per-user 100|--L 200 is more than --per-user 100
--iters|--iters: '--json' is not an integer
--bogus 1|unknown option '--bogus'
--huge-pages on|--huge-pages: 'on' is neither auto nor off
--batch 2000000000|--batch 2000000000 (with --L 256, --dim 64, --inflight 2) needs
--iters 2000000000 --rounds 2|--warmup 3 + --rounds 2 x --iters 2000000000: 4000000003 batches
EOF
# A --dir holding the store of an earlier --keep run is refused by name, exit 2, and the store is
# left alone: its creation failed, exit 1, calling it a folder "not empty but has no MANIFEST",
# and the run's clean-up (no --keep) then removed the kept store.
mkdir -p "$TMP/kept/store" && echo x > "$TMP/kept/store/MANIFEST"
timeout 60 "$MPIEXEC" -n 1 "$BENCH" "${TINY[@]}" --dir "$TMP/kept" > "$TMP/kept.txt" 2>&1 < /dev/null
rc=$?
[ $rc -eq 2 ] || fail "--dir with a kept store exited $rc, expected 2"
grep -qF -- "bench_tokens: --dir: $TMP/kept/store is not empty (a store an earlier --keep run left?)" \
  "$TMP/kept.txt" || fail "--dir with a kept store: $(head -1 "$TMP/kept.txt")"
[ -e "$TMP/kept/store/MANIFEST" ] || fail "--dir with a kept store removed that store"
# An unwritable --json says why, as every other bench does: it said only "cannot write '/tmp'".
timeout 60 "$MPIEXEC" -n 1 "$BENCH" --json "$TMP" > "$TMP/dir.txt" 2>&1 < /dev/null
rc=$?
[ $rc -eq 2 ] || fail "--json DIR exited $rc, expected 2"
grep -qF -- "bench_tokens: --json: cannot write '$TMP': is a directory" "$TMP/dir.txt" ||
  fail "--json DIR: $(head -1 "$TMP/dir.txt")"
echo "bench_tokens.sh: ok"
