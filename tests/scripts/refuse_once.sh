#!/usr/bin/env bash
# refuse_once.sh — a refusal that every worker rank of `mpiexec -n 3 recdistill train` sees (a
# job of two ranks) is printed once, by the lowest rank that saw it, and the launch still ends
# non-zero, promptly, with no report and no rank called dead. Before the fix each rank printed it
# (two copies here, N under -n N). Two such refusals: one at the trainer's set-up (a job's negative
# sampling keeps no positive of the batch period) and one while the target logs are opened (a
# replay naming a teacher the log does not hold).
#
#   bash tests/scripts/refuse_once.sh build/recdistill
set -u
RD="${1:?usage: refuse_once.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_refuseonce_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

# refused NAME CONFIG TEXT: `mpiexec -n 3 train CONFIG` fails within 60 s, TEXT on exactly one
# line of its output, from rank 1 (the lowest worker rank), and no report.
refused() {
    local t0 ms rc n
    t0=$(date +%s%N)
    timeout 60 "$MPIEXEC" -n 3 "$RD" train "$2" --out "$TMP/$1" >"$TMP/$1.out" 2>"$TMP/$1.err"
    rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "$1: exit $rc after $ms ms"
    [ "$rc" -ne 124 ] || fail "$1: the launch hung"
    [ "$rc" -ne 0 ] || fail "$1: exit 0"
    n="$(cat "$TMP/$1.out" "$TMP/$1.err" | grep -c -- "$3")"
    [ "$n" -eq 1 ] || fail "$1: the refusal printed $n times: $(grep -v INFO "$TMP/$1.err")"
    grep -q "^recdistill train: rank 1: .*$3" "$TMP/$1.err" ||
        fail "$1: not from rank 1: $(grep -v INFO "$TMP/$1.err")"
    grep -q "died without an orderly exit" "$TMP/$1.err" &&
        fail "$1: a rank was called dead: $(grep died "$TMP/$1.err")"
    grep -q "failed before training" "$TMP/$1.err" &&
        fail "$1: another rank's line: $(grep -v INFO "$TMP/$1.err")"
    [ ! -e "$TMP/$1/report.json" ] || fail "$1: a report was written"
}

# 1. Set-up (rd_trainer_create): one job of two ranks whose sampling keeps no positive.
python3 - "$SRC/tests/data/slurm-tiny.yaml" "$TMP/classes.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
jobs = ("    - {name: teacher, role: teacher, model: teacher}\n"
        "    - {name: student, role: student, model: student, distill: true}\n"
        "    - {name: student_raw, role: student, model: student_raw}\n")
assert jobs in s
s = s.replace(jobs, "    - {name: solo, role: student, model: student_raw, ranks: 2,\n"
                    "       negatives: {rate: 1.0, pos_rate: 0.000001}}\n")
open(sys.argv[2], "w").write(s)
PY
"$RD" config "$TMP/classes.yaml" >/dev/null 2>"$TMP/err" || fail "classes.yaml: $(cat "$TMP/err")"
refused classes "$TMP/classes.yaml" "job 'solo': its sampling (negatives rate 1, pos_rate 1e-06) keeps negatives only"

# 2. The target logs (rd_trainer_run's start): a replay by a job of two ranks naming a teacher the
#    log does not hold. The log comes from the pipeline run.
sed -e 's/name: slurm-tiny/name: refuseonce/' "$SRC/tests/data/slurm-tiny.yaml" >"$TMP/a.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n' >>"$TMP/a.yaml"
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TMP/a.yaml" --out "$TMP/a" >"$TMP/out" 2>"$TMP/err" ||
    fail "the pipeline run: $(grep -v INFO "$TMP/err" | head -20)"
python3 - "$TMP/a.yaml" "$TMP/a/targets" "$TMP/r.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("    - {name: teacher, role: teacher, model: teacher}\n", "")
s = s.replace("    - {name: student_raw, role: student, model: student_raw}\n", "")
s = s.replace("distill: true}", "distill: true, teacher: nosuch, ranks: 2}")
s = s.replace("distill:\n", "distill:\n  replay: true\n  target_log: %s\n" % sys.argv[2])
open(sys.argv[3], "w").write(s)
PY
refused replay "$TMP/r.yaml" "holds no targets of teacher 'nosuch'"
echo "ok"
