#!/usr/bin/env bash
# load32.sh — 32 ranks oversubscribed on this machine's cores: 4 PS ranks, a 12-rank teacher and
# two 8-rank students (live distillation) complete the tiny pipeline without deadlock, in the
# synchronous and the asynchronous PS mode, each launch bounded by 300 s; every job reports its
# holdout AUC and every target the teacher sent is received or counted late. Wall times go to
# stdout (docs/reliability.md quotes them).
#
#   bash tests/scripts/load32.sh build/recdistill
set -u
RD="${1:?usage: load32.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_load_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

sed -e 's/ps_ranks: 1/ps_ranks: 4/' -e 's/model: teacher}/model: teacher, ranks: 12}/' \
    -e 's/distill: true}/distill: true, ranks: 8}/' -e 's/model: student_raw}/model: student_raw, ranks: 8}/' \
    "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/sync.yaml"
sed -e 's/^ps:$/ps:\n  sync: false/' "$TMP/sync.yaml" > "$TMP/async.yaml"
"$RD" config --layout "$TMP/sync.yaml" | grep -q "^world_size=32$" || fail "layout is not 32 ranks"
grep -q "sync: false" "$TMP/async.yaml" || fail "async config"

for mode in sync async; do
    t0=$(date +%s%N)
    timeout 300 "$MPIEXEC" -n 32 "$RD" train "$TMP/$mode.yaml" --out "$TMP/$mode" </dev/null \
        >"$TMP/out" 2>"$TMP/err"
    rc=$?
    t1=$(date +%s%N)
    [ $rc -ne 124 ] || fail "$mode: 32 ranks did not finish in 300 s (deadlock?)"
    [ $rc -eq 0 ] || fail "$mode: exit $rc: $(grep -v INFO "$TMP/err" | tail -5)"
    for job in teacher student student_raw; do
        grep -Eq "^$job +holdout +0\.[0-9]" "$TMP/out" || fail "$mode: no table row of $job"
    done
    [ -s "$TMP/$mode/report.json" ] || fail "$mode: no report.json"
    if command -v python3 >/dev/null; then
        python3 - "$TMP/$mode/report.json" <<'PY' || fail "$mode: report.json: $(cat "$TMP/$mode/report.json")"
import json, sys
r = json.load(open(sys.argv[1]))
for job in ("teacher", "student", "student_raw"):
    assert 0.3 < r["holdout"][job]["auc"] < 1.0, job
t = r["targets"]
assert t["sent"] > 0 and t["sent"] == t["received"] + t["late"], t
PY
    fi
    echo "load32 $mode: 32 ranks on $(nproc) cores, wall $(( (t1 - t0) / 1000000 )) ms"
done
echo "load32.sh: ok"
