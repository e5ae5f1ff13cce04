#!/usr/bin/env bash
# stream_eval_order.sh — each stream window is scored BEFORE the model trains on it (test, then
# train): the tiny teacher + student run (tests/data/slurm-tiny.yaml, two stream windows of 400
# events) checkpoints at the end of its batch period and of every window
# (ps.checkpoint_every_windows: 1); the student's bundle of the batch period's end scores window
# 0 with the logloss student.metrics.csv reports for window 0, and the bundle of window 0's end
# scores window 1 with the one reported for window 1 (1e-6). A trainer scoring a window after
# training on it reports the figures of a model that has seen the window's labels: both
# comparisons fail.
#
#   bash tests/scripts/stream_eval_order.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: stream_eval_order.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_stream_eval_order_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

C="$SRC/tests/data/slurm-tiny.yaml"
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$C" --out "$TMP/t" --set ps.checkpoint_every_windows=1 \
    >"$TMP/out" 2>"$TMP/err" || fail "train: $(grep -v INFO "$TMP/err" | head -20)"
mapfile -t CK < <(ls -d "$TMP"/t/ckpt/student/step-* | sort)
# The batch period's end, window 0's end, window 1's end (the last step).
[ "${#CK[@]}" -eq 3 ] || fail "expected 3 student checkpoints, got: ${CK[*]}"
for k in 0 1; do
    "$RD" export "$C" --out "$TMP/s$k.rdsv" --data "$TMP/t/data" --ckpt "${CK[$k]}" \
        >"$TMP/e" 2>&1 || fail "export ${CK[$k]}: $(cat "$TMP/e")"
    "$RD" score "$TMP/s$k.rdsv" --data "$TMP/t/data" --split stream --out "$TMP/s$k.csv" \
        >/dev/null 2>"$TMP/e" || fail "score ${CK[$k]}: $(cat "$TMP/e")"
done
python3 - "$TMP" <<'PY' || fail "stream windows are not scored before training on them"
import csv, math, sys
d = sys.argv[1]

def logloss(rows):  # as rd_metrics: probabilities clipped to [1e-7, 1 - 1e-7]
    s = 0.0
    for r in rows:
        p = 1.0 / (1.0 + math.exp(-float(r["logit"])))
        p = min(max(p, 1e-7), 1.0 - 1e-7)
        s -= math.log(p) if r["label"] == "1" else math.log1p(-p)
    return s / len(rows)

rep = {int(r["window"]): r for r in csv.DictReader(open(d + "/t/student.metrics.csv"))
       if r["phase"] == "stream"}
assert sorted(rep) == [0, 1], rep
n0 = int(rep[0]["samples"])
for k in (0, 1):
    rows = list(csv.DictReader(open("%s/s%d.csv" % (d, k))))
    assert len(rows) == n0 + int(rep[1]["samples"]), "the stream split is not the two windows"
    win = rows[:n0] if k == 0 else rows[n0:]
    got, want = logloss(win), float(rep[k]["logloss"])
    other = logloss(rows[n0:] if k == 0 else rows[:n0])
    print("window %d: scored before training on it %.9f, reported %.9f (other window %.9f)"
          % (k, got, want, other))
    assert abs(got - want) < 1e-6, "window %d" % k
PY
echo "ok: every stream window is scored by the model of the end of the phase before it"
