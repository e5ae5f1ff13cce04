#!/usr/bin/env bash
# replay_teacher.sh — a replaying launch (distill.replay: true) that keeps the teacher job of the
# pipeline config trains that teacher for nothing: it sends and logs no target, and no eta is
# measured against it. Before anything trains, rank 0 says so once, naming the job and the ranks
# the launch needs without it (before the fix: not a word). The replay itself is unchanged (every
# target of the log replayed). The replay without the teacher job, and the live pipeline, get no
# such warning; `recdistill config` says it too.
#
#   bash tests/scripts/replay_teacher.sh build/recdistill
set -u
RD="${1:?usage: replay_teacher.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_replayteacher_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
WARN="teacher job 'teacher' trains for nothing: distill.replay is true"

sed -e 's/name: slurm-tiny/name: replayteacher/' "$SRC/tests/data/slurm-tiny.yaml" >"$TMP/a.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n' >>"$TMP/a.yaml"
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TMP/a.yaml" --out "$TMP/a" >"$TMP/out" 2>"$TMP/err" ||
    fail "the pipeline run: $(grep -v INFO "$TMP/err" | head -20)"
grep -q "trains for nothing" "$TMP/err" && fail "the live pipeline was warned: $(grep warning "$TMP/err")"

# The pipeline config replaying its log, teacher job kept (rt.yaml, 4 ranks), and without it
# (r.yaml, 3 ranks: what the warning advises).
python3 - "$TMP/a.yaml" "$TMP/a/targets" "$TMP/rt.yaml" "$TMP/r.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("distill: true}", "distill: true, teacher: teacher}")
s = s.replace("distill:\n", "distill:\n  replay: true\n  target_log: %s\n" % sys.argv[2])
open(sys.argv[3], "w").write(s)
open(sys.argv[4], "w").write(s.replace("    - {name: teacher, role: teacher, model: teacher}\n", ""))
PY
grep -q "role: teacher" "$TMP/r.yaml" && fail "the replay config still has the teacher job"

timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TMP/rt.yaml" --out "$TMP/rt" >"$TMP/out" 2>"$TMP/err" ||
    fail "replay with the teacher job: $(grep -v INFO "$TMP/err" | head -20)"
[ "$(grep -c "$WARN" "$TMP/err")" -eq 1 ] ||
    fail "replay with the teacher job: not one warning: $(grep -v INFO "$TMP/err" | head -5)"
grep -q "^recdistill train: warning: .*cluster.jobs\[0\]: $WARN, so the distilled students read their targets from distill.target_log, and this teacher sends none, logs none and no eta is measured against it; remove it from cluster.jobs and launch 3 ranks instead of 4" "$TMP/err" ||
    fail "the warning's text: $(grep warning "$TMP/err")"
# Up front: before any rank has started its role.
first="$(grep -n -m1 -e "$WARN" -e 'INFO' "$TMP/err")"
case "$first" in *"$WARN"*) ;; *) fail "the warning came after the roles started: $first" ;; esac
python3 - "$TMP/a" "$TMP/rt" <<'PY' || fail "replay with the teacher job: counters"
import json, sys
live = json.load(open(sys.argv[1] + "/student.targets.json"))
rep = json.load(open(sys.argv[2] + "/student.targets.json"))
assert rep["replayed"] == live["joined"] > 0 and rep["missing"] == 0, (live, rep)
PY

timeout 120 "$MPIEXEC" -n 3 "$RD" train "$TMP/r.yaml" --out "$TMP/r" >"$TMP/out" 2>"$TMP/err" ||
    fail "replay without the teacher job: $(grep -v INFO "$TMP/err" | head -20)"
grep -q "trains for nothing" "$TMP/err" && fail "replay without the teacher job was warned"
cmp -s "$TMP/rt/student.targets.json" "$TMP/r/student.targets.json" ||
    fail "the replay's counters differ with and without the teacher job"

"$RD" config "$TMP/rt.yaml" >/dev/null 2>"$TMP/err" || fail "config: $(cat "$TMP/err")"
grep -q "^recdistill config: warning: .*$WARN" "$TMP/err" || fail "config: no warning: $(cat "$TMP/err")"
echo "ok"
