#!/usr/bin/env bash
# replay_race.sh — a target log is not rewritten while a replay reads it. A teacher launch that
# writes the log drops its job's earlier targets and writes new ones; started while a student
# replays that log, it did (exit 0), and the replay joined the first teacher's targets, then
# none, then the second teacher's: a mix of two teacher runs and the rest missing (192 missing
# in this script's run on the build before), exit 0. A replaying launch now holds the log's
# writer.lock shared until it ends: the writing launch is refused, naming the reason, and the
# replay joins every target of the log it started on. Once the replay has ended the same launch
# writes the log.
#
#   bash tests/scripts/replay_race.sh build/recdistill
set -u
RD="${1:?usage: replay_race.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_replayrace_XXXXXX)"
RPID=
trap '[ -z "$RPID" ] || kill "$RPID" 2>/dev/null; wait; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

# The pipeline (teacher, student, student_raw) writing $TMP/log; a small batch so that the replay
# below, with a wide student, takes several seconds.
sed -e 's/name: slurm-tiny/name: replayrace/' -e 's/events: 4000,/events: 12000,/' \
    -e 's/  batch_size: 64/  batch_size: 16/' "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/a.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n  target_log: %s\n' "$TMP/log" >> "$TMP/a.yaml"
grep -q 'events: 12000' "$TMP/a.yaml" || fail "config edit did not apply"
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TMP/a.yaml" --out "$TMP/a" >"$TMP/out" 2>"$TMP/err" ||
    fail "the pipeline run: $(grep -v INFO "$TMP/err" | head -20)"
# The replay: the student alone, wide (slow); the writer: the pipeline again with another teacher.
python3 - "$TMP/a.yaml" "$TMP/r.yaml" "$TMP/w.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
r = s.replace("    - {name: teacher, role: teacher, model: teacher}\n", "")
r = r.replace("    - {name: student_raw, role: student, model: student_raw}\n", "")
r = r.replace("distill: true}", "distill: true, teacher: teacher}")
r = r.replace("distill:\n", "distill:\n  replay: true\n")
r = r.replace("    mlp: [8]\n", "    mlp: [2048, 2048]\n", 1)
open(sys.argv[2], "w").write(r)
open(sys.argv[3], "w").write(s.replace("    mlp: [16]\n", "    mlp: [24]\n", 1))
PY
grep -q "mlp: \[2048, 2048\]" "$TMP/r.yaml" && grep -q "mlp: \[24\]" "$TMP/w.yaml" ||
    fail "replay / writer config edits did not apply"

timeout 300 "$MPIEXEC" -n 2 "$RD" train "$TMP/r.yaml" --out "$TMP/r" >"$TMP/rout" 2>"$TMP/rerr" &
RPID=$!
# Rank 0 checks the log (and now locks it) before it prepares the dataset: once that line is out,
# the replay holds the log and has most of its training ahead.
# The writer starts as soon as the replay holds the lock (an exclusive flock then fails), not
# after a fixed wait that a fast machine could outlast.
for _ in $(seq 300); do grep -q "preparing the dataset" "$TMP/rout" 2>/dev/null && break; sleep 0.1; done
grep -q "preparing the dataset" "$TMP/rout" || fail "the replay did not start: $(cat "$TMP/rerr")"
if command -v flock >/dev/null; then
    flock -n -x "$TMP/log/writer.lock" true 2>/dev/null &&
        fail "the replay does not hold $TMP/log/writer.lock"
fi
kill -0 "$RPID" 2>/dev/null || fail "the replay ended before the writer started: make it slower"
if timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TMP/w.yaml" --out "$TMP/w" >"$TMP/wout" 2>"$TMP/werr"; then
    wait "$RPID"; RPID=
    fail "a teacher launch wrote the target log while a replay read it: $(grep removed "$TMP/wout"); replay: $(cat "$TMP/r/student.targets.json" 2>/dev/null)"
fi
grep -q "target log $TMP/log is being read by another launch (a replay of it" "$TMP/werr" ||
    fail "writer refused, but: $(grep -v INFO "$TMP/werr" | head -5)"
kill -0 "$RPID" 2>/dev/null || echo "note: the replay ended while the writer was refused"
wait "$RPID" || fail "the replay failed: $(grep -v INFO "$TMP/rerr" | head -10)"
RPID=
python3 - "$TMP/a" "$TMP/r" <<'PY' || fail "the replay's targets"
import json, sys
live = json.load(open(sys.argv[1] + "/student.targets.json"))
rep = json.load(open(sys.argv[2] + "/student.targets.json"))
print("live joined %d; replay replayed %d, missing %d" % (live["joined"], rep["replayed"],
                                                         rep["missing"]))
assert rep["replayed"] == live["joined"] > 0 and rep["missing"] == 0
PY
# The replay has ended: its lock with it.
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TMP/w.yaml" --out "$TMP/w" >"$TMP/wout" 2>"$TMP/werr" ||
    fail "the writer after the replay: $(grep -v INFO "$TMP/werr" | head -5)"
grep -q "removed .* targets of an earlier run of job 'teacher'" "$TMP/wout" ||
    fail "the writer after the replay did not rewrite the log: $(cat "$TMP/wout")"
echo "ok"
