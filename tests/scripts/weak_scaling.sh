#!/usr/bin/env bash
# weak_scaling.sh — communication per trained sample stays flat under weak scaling: the config
# of the sweep in docs/scaling.md (configs/weak-scaling.yaml, batch 256 per worker rank, fewer
# events) at world 4 (1 PS, 2 teacher, 1 student ranks) and world 16 (2 PS, 8 teacher, 6
# student ranks), launched with mpiexec (oversubscribed). Checks, from report.json "comm":
#   - total bytes per sample within +-10 % around the mean of the two sizes;
#   - ps_pull, ps_push and targets each within 5 % (per-rank batches are the same size);
#   - allreduce bytes per sample grow as 2 (W - 1) / W predicts: the measured ratio of the two
#     sizes within 15 % of the ratio computed from each job's ranks and gradient slab.
#
#   bash tests/scripts/weak_scaling.sh build/recdistill
set -u
RD="${1:?usage: weak_scaling.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_weak_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

base="$SRC/configs/weak-scaling.yaml"
[ -f "$base" ] || fail "$base missing"
# Fewer events than the sweep (the test must stay short), same shape. The dataset is prepared once.
sed -e 's/events: 100000/events: 40000/' "$base" >"$TMP/base.yaml"
grep -q "events: 40000" "$TMP/base.yaml" || fail "could not derive the config"
sed -e "s|^  ps_ranks: 1|  ps_ranks: 1|" -e 's/model: teacher}/model: teacher, ranks: 2}/' \
    -e "s|^  synthetic:|  dir: $TMP/data\n  synthetic:|" "$TMP/base.yaml" >"$TMP/w4.yaml"
sed -e "s|^  ps_ranks: 1|  ps_ranks: 2|" -e 's/model: teacher}/model: teacher, ranks: 8}/' \
    -e 's/distill: true}/distill: true, ranks: 6}/' \
    -e "s|^  synthetic:|  dir: $TMP/data\n  synthetic:|" "$TMP/base.yaml" >"$TMP/w16.yaml"
for w in 4 16; do
    n="$("$RD" config --layout "$TMP/w$w.yaml" | sed -n 's/^world_size=//p')"
    [ "$n" = "$w" ] || fail "w$w.yaml has world size '$n': $("$RD" config "$TMP/w$w.yaml" 2>&1 | head -5)"
done
"$RD" prepare "$TMP/w4.yaml" >/dev/null 2>"$TMP/err" || fail "prepare: $(cat "$TMP/err")"
for w in 4 16; do
    timeout 600 "$MPIEXEC" -n "$w" "$RD" train "$TMP/w$w.yaml" --out "$TMP/r$w" >"$TMP/out$w" 2>"$TMP/err$w" ||
        fail "train w$w: $(tail -5 "$TMP/err$w")"
done
python3 - "$TMP/r4/report.json" "$TMP/r16/report.json" <<'PY' || fail "weak scaling"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def bps(r, ch):
    return r["comm"][ch]["bytes_per_sample"]
def rel(x, y):
    return abs(y - x) / x
print("bytes/sample  world 4 -> 16")
for ch in ("ps_pull", "ps_push", "ps_ctl", "targets", "allreduce"):
    print(f"  {ch:10s} {bps(a, ch):8.1f} {bps(b, ch):8.1f}")
ta, tb = a["comm"]["total"]["bytes_per_sample"], b["comm"]["total"]["bytes_per_sample"]
print(f"  {'total':10s} {ta:8.1f} {tb:8.1f}  ({100 * (tb - ta) / ta:+.1f}%)")
ok = True
# Flat within +-10 % around the mean of the two sizes (docs/scaling.md uses the same measure).
mean = (ta + tb) / 2
if max(abs(ta - mean), abs(tb - mean)) / mean > 0.10:
    print(f"total bytes per sample spread over 10% around the mean {mean:.1f}"); ok = False
for ch in ("ps_pull", "ps_push", "targets"):
    if rel(bps(a, ch), bps(b, ch)) > 0.05:
        print(f"{ch} changed by {100 * rel(bps(a, ch), bps(b, ch)):.1f}% (> 5%)"); ok = False
def structural(r):
    # The 2 (W - 1) / W factors weighted by each job's slab (from the world-4 run's teacher).
    return sum(2 * (j["ranks"] - 1) / j["ranks"] * j["params"] for j in r["jobs"].values())
ra = bps(b, "allreduce") / bps(a, "allreduce")
rp = structural(b) / structural(a)
print(f"allreduce ratio measured {ra:.3f}, 2(W-1)/W-weighted params ratio {rp:.3f}")
if rel(rp, ra) > 0.15:
    print("allreduce growth does not follow 2 (W - 1) / W"); ok = False
sys.exit(0 if ok else 1)
PY
echo "weak_scaling.sh: ok"
