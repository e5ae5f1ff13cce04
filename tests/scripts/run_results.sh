#!/usr/bin/env bash
# run_results.sh — a run folder holds results only beside report.json (docs/reliability.md, run
# folder rules). The jobs wrote their own <job>.metrics.csv and <job>.targets.json as they ended,
# and rank 0 config.effective.yaml and the plot before the report, so a launch that ended
# afterwards without report.json left complete-looking results; a harvester that takes a folder
# with results for a finished run took them. Now world rank 0 writes every result once every job
# has ended, report.json last, and removes those written when the launch ends before it. The
# launches (tests/data/slurm-tiny.yaml, 4 ranks: PS, teacher, student, student_raw):
#  1. SIGTERM while rank 0 holds its report (every job has ended; test hook
#     RD_TEST_REPORT_DELAY_MS): exit 143, no result file, the checkpoints kept; resumed from them:
#     exit 0 and every result; resumed again into that finished folder and ended the same way:
#     exit 143, and the finished launch's results are gone too;
#  2. the teacher's rank killed (SIGKILL) while it holds its FIN (RD_TEST_FIN_DELAY_MS; the other
#     jobs have ended): non-zero exit, no result file;
#  3. the plot cannot be written (a folder under its name, made while the teacher holds its FIN):
#     exit 1, no result file (the folder stays: it is not the run's).
# The holds last 20 s: the signal needs to land inside them (a loaded VM), and each check waits
# up to 60 s for the line that says the hold began.
#
#   bash tests/scripts/run_results.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: run_results.sh path/to/recdistill}")"
export RD # run by lib/hold.sh's wrapper
HERE="$(cd "$(dirname "$0")" && pwd)"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_run_results_XXXXXX)"
# A launch still running (a failed check) is ended before its folder is removed.
trap 'kill $(jobs -p) 2>/dev/null; wait; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=lib/hold.sh
. "$HERE/lib/hold.sh" # pid_wrapper
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1 RD_STOP_GRACE_S=60
RDP="$(pid_wrapper "$TMP")"
YAML="$SRC/tests/data/slurm-tiny.yaml"
HOLD=20000

# launch RUN [ENV=V...]: the launch in the background (PID: timeout's), its ranks' pids under
# $PIDS, the plot on, the train arguments in EXTRA after its own.
EXTRA=()
launch() {
    local run="$1"
    shift
    export PIDS="$TMP/pids.$run"
    # Nothing of an earlier launch of RUN may be read as this one's: its stderr (truncated by the
    # background job only once it runs, so wait_for matched the earlier launch's line) and its
    # pid files (dead ranks, or pids reused by then: pid_max is 32768 here; case 1b once ended
    # with exit 0, its ranks never signalled).
    rm -rf "$PIDS"
    mkdir -p "$PIDS"
    : >"$run.out"
    : >"$run.err"
    env "$@" timeout 300 "$MPIEXEC" -n 4 "$RDP" train "$YAML" --out "$run" --set output.plot=true \
        "${EXTRA[@]}" >"$run.out" 2>"$run.err" &
    PID=$!
}

# wait_for RUN TEXT: until RUN's stderr has TEXT (60 s at most).
wait_for() {
    local i
    for ((i = 0; i < 3000; i++)); do
        grep -q -- "$2" "$1.err" && return 0
        kill -0 "$PID" 2>/dev/null || fail "$1 ended before '$2': $(grep -v INFO "$1.err" | tail -n 5)"
        sleep 0.02
    done
    fail "$1: no '$2' after 60 s"
}

# signal RUN SIG RANK...: SIG to each of RUN's ranks RANK.
signal() {
    local run="$1" sig="$2" r p
    shift 2
    for r in "$@"; do
        if ! read -r p <"$PIDS/$r" || ! kill -"$sig" "$p"; then
            fail "$run: rank $r is gone"
        fi
    done
}

# results RUN: the result files in RUN (none, for a launch that ended without report.json).
results() {
    find "$1" -maxdepth 1 -type f \( -name report.json -o -name config.effective.yaml -o \
        -name auc_windows.png -o -name '*.metrics.csv' -o -name '*.metrics.jsonl' -o \
        -name '*.targets.json' \) -printf '%f\n' | sort | tr '\n' ' '
}

# no_results RUN WHAT: RUN's folder holds no result file.
no_results() {
    local r
    r="$(results "$1")"
    [ -z "$r" ] || fail "$1: $2 left results without a report: $r"
}

# 1. SIGTERM while rank 0 holds its report: exit 143, no results, the checkpoints; resumed: all.
launch T RD_TEST_REPORT_DELAY_MS=$HOLD
wait_for T "holding the report for $HOLD ms"
signal T TERM 0 1 2 3
wait "$PID"
rc=$?
[ "$rc" -eq 143 ] || fail "T: exit $rc after SIGTERM, not 143: $(grep -v INFO T.err | tail -n 5)"
no_results T "SIGTERM before the report (exit 143)"
for j in teacher student student_raw; do
    ls -d T/ckpt/$j/step-* >/dev/null 2>&1 || fail "T: no checkpoint of $j to resume from: $(ls -R T/ckpt)"
done
timeout 300 "$MPIEXEC" -n 4 "$RD" train "$YAML" --out T --resume T/ckpt --set output.plot=true \
    >T2.out 2>T2.err || fail "T: resumed: exit $?: $(grep -v INFO T2.err | tail -n 5)"
want="auc_windows.png config.effective.yaml report.json student.metrics.csv student.targets.json student_raw.metrics.csv teacher.metrics.csv teacher.targets.json "
[ "$(results T)" = "$want" ] || fail "T: resumed, the results are: $(results T)"
echo "T: SIGTERM before the report: exit 143, no results; resumed: every result"

# 1b. Resumed again into the finished folder, SIGTERM while rank 0 holds its report: exit 143, and
#     the finished launch's results are gone too (a resume kept its metrics and targets files).
EXTRA=(--resume T/ckpt)
launch T RD_TEST_REPORT_DELAY_MS=$HOLD
EXTRA=()
wait_for T "holding the report for $HOLD ms"
signal T TERM 0 1 2 3
wait "$PID"
rc=$?
[ "$rc" -eq 143 ] || fail "T: resumed again: exit $rc after SIGTERM, not 143: $(grep -v INFO T.err | tail -n 5)"
no_results T "a resume ended by SIGTERM before its report (exit 143)"
echo "T: resumed again, SIGTERM before the report: exit 143, no results (the earlier ones gone)"

# 2. The teacher's rank killed while it holds its FIN.
launch K RD_TEST_FIN_DELAY_MS=$HOLD
wait_for K "job 'teacher': holding the FIN for $HOLD ms"
signal K KILL 1
wait "$PID"
rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    fail "K: exit $rc after the teacher's rank was killed (124: timeout)"
fi
no_results K "a rank killed (exit $rc)"
echo "K: a rank killed: exit $rc, no results"

# 3. A folder under the plot's name: exit 1, no results.
launch P RD_TEST_FIN_DELAY_MS=$HOLD
wait_for P "job 'teacher': holding the FIN for $HOLD ms"
mkdir P/auc_windows.png || fail "P: could not make the folder in the plot's place"
wait "$PID"
rc=$?
[ "$rc" -eq 1 ] || fail "P: exit $rc with a folder in the plot's place, not 1: $(grep -v INFO P.err | tail -n 5)"
grep -q "auc_windows.png exists and is a folder" P.err || fail "P: the message: $(grep -v INFO P.err | tail -n 5)"
no_results P "a plot that could not be written (exit 1)"
[ -d P/auc_windows.png ] || fail "P: the folder under the plot's name was removed"
echo "P: the plot refused: exit 1, no results"
echo "ok"
