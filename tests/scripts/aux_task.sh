#!/usr/bin/env bash
# aux_task.sh — `distill.aux_task: false` (the student's auxiliary tower learns from the teacher's
# targets alone, without its task loss) changes the distilled student and nothing else: the tiny
# teacher + student + student_raw run (tests/data/slurm-tiny.yaml) trained with it and without
# it ends with the teacher's and student_raw's dense.bin byte-identical (neither distils) and the
# student's different (dense.bin, holdout logloss). The flag holds before the targets start too
# (distill.start_window 1: the student at the end of the batch period differs). A trainer that
# dropped the flag, in the phases with targets or in those without, trains the same student twice.
#
#   bash tests/scripts/aux_task.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: aux_task.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_aux_task_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

C="$SRC/tests/data/slurm-tiny.yaml"
train() { # OUT [--set ...]
    local out="$1"
    shift
    timeout 120 "$MPIEXEC" -n 4 "$RD" train "$C" --out "$out" "$@" >"$TMP/out" 2>"$TMP/err" ||
        fail "train $*: $(grep -v INFO "$TMP/err" | head -20)"
}
train "$TMP/on"
train "$TMP/off" --set distill.aux_task=false
grep -q "aux_task: false" "$TMP/off/config.effective.yaml" || fail "the --set did not apply"
dense() { ls -d "$1"/ckpt/"$2"/step-* | tail -1; }
for job in teacher student_raw; do
    cmp -s "$(dense "$TMP/on" $job)/dense.bin" "$(dense "$TMP/off" $job)/dense.bin" ||
        fail "$job (not distilled) changed with distill.aux_task"
done
cmp -s "$(dense "$TMP/on" student)/dense.bin" "$(dense "$TMP/off" student)/dense.bin" &&
    fail "distill.aux_task: false trained the same student as true"
python3 - "$TMP/on/report.json" "$TMP/off/report.json" <<'PY' || fail "holdout"
import json, sys
on, off = (json.load(open(p))["holdout"] for p in sys.argv[1:3])
print("student holdout logloss: aux_task true %.9f, false %.9f" % (on["student"]["logloss"],
                                                                   off["student"]["logloss"]))
for job in ("teacher", "student_raw"):
    assert on[job] == off[job], job
assert on["student"]["logloss"] != off["student"]["logloss"], "the student did not change"
PY
# It holds in every phase of the student, also before its targets start: with
# distill.start_window 1, the student checkpointed at the end of the batch period (no target
# yet) differs between aux_task true and false.
train "$TMP/late_on" --set distill.start_window=1 --set ps.checkpoint_every_windows=1
train "$TMP/late_off" --set distill.start_window=1 --set ps.checkpoint_every_windows=1 \
    --set distill.aux_task=false
first() { ls -d "$1"/ckpt/student/step-* | head -1; }
[ "$(basename "$(first "$TMP/late_on")")" = "$(basename "$(first "$TMP/late_off")")" ] ||
    fail "the two runs checkpoint at other steps"
cmp -s "$(first "$TMP/late_on")/dense.bin" "$(first "$TMP/late_off")/dense.bin" &&
    fail "before the targets start, distill.aux_task: false trained the same student as true"
echo "ok: distill.aux_task: false changes the distilled student alone, in every phase"
