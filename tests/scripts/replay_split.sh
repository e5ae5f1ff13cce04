#!/usr/bin/env bash
# replay_split.sh — a student replaying a target log with another split of the same events
# (another data.split.batch_fraction: same event count and records CRC, so the log's dataset
# check passes) is refused, naming the sample and both phases: the log's key (sample, pass) does
# not name the phase (every stream window is pass 0, as the first batch epoch is), and the
# targets of the teacher's batch period were joined into the student's stream windows. The same
# replay with the teacher's split replays every target.
#
#   bash tests/scripts/replay_split.sh build/recdistill
set -u
RD="${1:?usage: replay_split.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_replaysplit_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

sed -e 's/name: slurm-tiny/name: replaysplit/' "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/a.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n' >> "$TMP/a.yaml"
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TMP/a.yaml" --out "$TMP/a" >"$TMP/out" 2>"$TMP/err" ||
    fail "the pipeline run: $(grep -v INFO "$TMP/err" | head -20)"
python3 - "$TMP/a.yaml" "$TMP/a/targets" "$TMP/r.yaml" "$TMP/r5.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("    - {name: teacher, role: teacher, model: teacher}\n", "")
s = s.replace("    - {name: student_raw, role: student, model: student_raw}\n", "")
s = s.replace("distill: true}", "distill: true, teacher: teacher}")
s = s.replace("distill:\n", "distill:\n  replay: true\n  target_log: %s\n" % sys.argv[2])
open(sys.argv[3], "w").write(s)
open(sys.argv[4], "w").write(s.replace("batch_fraction: 0.7", "batch_fraction: 0.5"))
PY
grep -q "role: teacher" "$TMP/r.yaml" && fail "replay config still has the teacher job"
grep -q "batch_fraction: 0.5" "$TMP/r5.yaml" || fail "the other-split config edit did not apply"

# The teacher's split: every target replayed.
timeout 120 "$MPIEXEC" -n 2 "$RD" train "$TMP/r.yaml" --out "$TMP/r" >"$TMP/out" 2>"$TMP/err" ||
    fail "replay with the teacher's split: $(grep -v INFO "$TMP/err" | head -20)"
python3 - "$TMP/a" "$TMP/r" <<'PY' || fail "replay with the teacher's split: counters"
import json, sys
live = json.load(open(sys.argv[1] + "/student.targets.json"))
rep = json.load(open(sys.argv[2] + "/student.targets.json"))
print("live joined %d; replay replayed %d, missing %d" % (live["joined"], rep["replayed"],
                                                         rep["missing"]))
assert rep["replayed"] == live["joined"] > 0 and rep["missing"] == 0
PY

# Another split: refused (before the fix: exit 0, every target "replayed").
if timeout 120 "$MPIEXEC" -n 2 "$RD" train "$TMP/r5.yaml" --out "$TMP/r5" >"$TMP/out" 2>"$TMP/err"; then
    fail "a replay with another data split was taken: $(cat "$TMP/r5/student.targets.json" 2>/dev/null)"
fi
grep -Eq "target replay: the teacher logged the target of sample [0-9]+ in its batch period, but this student trains on it in stream window 0: the teacher's run split the data otherwise" "$TMP/err" ||
    fail "replay with another split: $(grep -v INFO "$TMP/err" | head -5)"
echo "ok"
