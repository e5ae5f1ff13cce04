#!/usr/bin/env bash
# term_late.sh — SIGTERM (scancel, a preemption) after the last checkpoint opportunity. Before,
# a signal that came once every job had written its final checkpoint (the holdout evaluation,
# the end of the distillation, the report) was answered by nobody: the run went on to its report
# and exit 0 (or, with a slow evaluation, ended at the grace time naming the jobs as without a
# checkpoint), while a signal a step earlier ended it with 143. Now (docs/tools.md, "On the way
# out: SIGTERM") a SIGTERM before report.json is written ends the run with 143 and no report,
# the final checkpoints answering it; once report.json is written the run is complete, and a
# SIGTERM does not change its exit status 0:
#  1. while the teacher holds its FIN (a test hook: after its final checkpoint and holdout
#     evaluation; the student waits for the FIN): exit 143, no report, the final checkpoint named;
#     resumed from the checkpoints, the run only evaluates, and ends with exit 0 and a report;
#  2. while rank 0 holds its report (a test hook: every job has ended): exit 143, no report;
#  3. after report.json is written (a test hook holds rank 0 there): exit 0, the report whole.
# The signal goes to every rank, as Slurm sends it. RD_STOP_GRACE_S=60: not what ends the run.
#
#   bash tests/scripts/term_late.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: term_late.sh path/to/recdistill}")"
export RD # run by lib/hold.sh's wrapper
HERE="$(cd "$(dirname "$0")" && pwd)"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_term_late_XXXXXX)"
# A launch still running (a failed check) is ended before its folder is removed.
trap 'kill $(jobs -p) 2>/dev/null; wait; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=lib/hold.sh
. "$HERE/lib/hold.sh" # pid_wrapper
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1 RD_STOP_GRACE_S=60
RDP="$(pid_wrapper "$TMP")"
YAML="$SRC/tests/data/slurm-tiny.yaml"

# launch RUN [ENV=V...]: the launch in the background (PID: timeout's), its ranks' pids under $PIDS.
launch() {
    local run="$1"
    shift
    export PIDS="$TMP/pids.$run"
    mkdir -p "$PIDS"
    env "$@" timeout 120 "$MPIEXEC" -n 4 "$RDP" train "$YAML" --out "$run" >"$run.out" 2>"$run.err" &
    PID=$!
}

# term_at RUN TEXT: once RUN's stderr has TEXT (30 s at most), SIGTERM to each of its ranks.
term_at() {
    local i r p
    for ((i = 0; i < 3000; i++)); do
        grep -q -- "$2" "$1.err" && break
        kill -0 "$PID" 2>/dev/null || fail "$1 ended before '$2': $(grep -v INFO "$1.err" | tail -n 5)"
        sleep 0.01
    done
    grep -q -- "$2" "$1.err" || fail "$1: no '$2' after 30 s"
    for r in 0 1 2 3; do
        if ! read -r p <"$PIDS/$r" || ! kill -TERM "$p"; then
            fail "$1: rank $r is gone"
        fi
    done
}

# ended RUN: exit 143, no report.json, the PS's end line.
ended() {
    wait "$PID"
    local rc=$?
    [ "$rc" -eq 143 ] || fail "$1: exit $rc after SIGTERM, not 143 (0: the run went on to its report): $(grep -v INFO "$1.err" | tail -n 5)"
    [ ! -e "$1/report.json" ] || fail "$1: a report.json after SIGTERM"
    grep -q "^\[ps\] SIGTERM: .*ending the run.*(exit status 143)" "$1.out" || fail "$1: the PS's end line: $(cat "$1.out")"
}

# 1. The teacher holds its FIN.
launch F RD_TEST_FIN_DELAY_MS=8000
term_at F "job 'teacher': holding the FIN for 8000 ms"
ended F
grep -q "^\[teacher\] checkpoint on SIGTERM: .*(the final one)" F.out ||
    fail "F: the teacher's final checkpoint not named: $(cat F.out)"
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$YAML" --out F --resume F/ckpt >F2.out 2>F2.err ||
    fail "F: resumed from the final checkpoints: exit $?: $(grep -v INFO F2.err | tail -n 5)"
[ -f F/report.json ] || fail "F: resumed, no report.json"
echo "F: SIGTERM while the teacher holds its FIN: exit 143, no report; resumed: a report"

# 2. Rank 0 holds its report: every job has ended.
launch R RD_TEST_REPORT_DELAY_MS=8000
term_at R "holding the report for 8000 ms"
ended R
echo "R: SIGTERM before the report: exit 143, no report"

# 3. After report.json: the run is complete.
launch E RD_TEST_END_DELAY_MS=8000
term_at E "holding the end for 8000 ms"
wait "$PID" || fail "E: exit $? after SIGTERM once report.json was written, not 0: $(grep -v INFO E.err | tail -n 5)"
python3 -c "import json, sys; json.load(open(sys.argv[1]))" E/report.json || fail "E: report.json is not whole"
echo "E: SIGTERM after the report: exit 0, the report whole"
echo "ok"
