#!/usr/bin/env bash
# term_one_rank.sh — SIGTERM to one rank alone (a kill of one pid, a launcher that signals one
# process) is not lost. Only a job's rank 0 answers a checkpoint request and only PS shard 0 ends
# the run (docs/tools.md, "On the way out: SIGTERM"), so the signal taken by any other rank was
# dropped: that rank trained or served on, and the launch ended with exit 0 and its report as if
# nothing had asked it to stop. Now such a rank passes the signal on:
#  1. to a worker that is not its job's rank 0: the job's rank 0 checkpoints on SIGTERM, and PS
#     shard 0 ends the run a grace time later (exit 143, no report), naming the student (which
#     did not get the signal; student_raw may end before the grace time);
#  2. to a PS shard other than 0: shard 0 stops as if it got the signal (exit 143, no report).
# World size 6: PS shards 0-1, a two-rank teacher (ranks 2-3), its student (4), student_raw (5).
# The teacher holds its FIN 8 s (a test hook), so no job ends before the grace time of 1 s.
#
#   bash tests/scripts/term_one_rank.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: term_one_rank.sh path/to/recdistill}")"
export RD # run by lib/hold.sh's wrapper
HERE="$(cd "$(dirname "$0")" && pwd)"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_term_one_XXXXXX)"
HELD=""
trap '[ -z "$HELD" ] || kill -CONT $HELD 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=lib/hold.sh
. "$HERE/lib/hold.sh" # pid_wrapper, term_caught
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1 RD_STOP_GRACE_S=1 RD_TEST_FIN_DELAY_MS=8000
RDP="$(pid_wrapper "$TMP")"

# rank_pid RUN R: wait until world rank R of RUN has its SIGTERM handler; its pid on stdout.
rank_pid() {
    local i p=""
    for ((i = 0; i < 3000; i++)); do
        [ -z "$p" ] && [ -s "$PIDS/$2" ] && read -r p <"$PIDS/$2"
        [ -n "$p" ] && term_caught "$p" && { echo "$p"; return 0; }
        kill -0 "$PID" 2>/dev/null || fail "$1 ended before rank $2 had a SIGTERM handler: $(tail -n 5 "$1.err")"
        sleep 0.01
    done
    fail "$1: rank $2 has no SIGTERM handler after 30 s"
}

# launch RUN [ARG...]: the launch in the background (PID: timeout's), its ranks' pids under $PIDS.
launch() {
    export PIDS="$TMP/pids.$1"
    mkdir -p "$PIDS"
    local run="$1"
    shift
    timeout 120 "$MPIEXEC" -n 6 "$RDP" train "$SRC/tests/data/slurm-tiny.yaml" --out "$run" \
        --set cluster.ps_ranks=2 --set cluster.jobs.0.ranks=2 "$@" >"$run.out" 2>"$run.err" &
    PID=$!
}

# ended RUN: the launch ended with 143 and no report.json.
ended() {
    wait "$PID"
    local rc=$?
    [ "$rc" -eq 143 ] || fail "$1: exit $rc after SIGTERM to one rank, not 143 (0: the signal was lost): $(grep -v INFO "$1.err" | tail -n 5)"
    [ ! -e "$1/report.json" ] || fail "$1: a report.json after SIGTERM"
}

# 1. The teacher's second rank. Its rank 0 is held (SIGSTOP) before it trains, so the training
#    is all ahead when the signal has been taken.
# More epochs: rank 1 passes the signal on at its first step and rank 0 takes it at one of its own
# steps, which do not move in step with rank 1's; with the tiny config's 30 steps, under load the
# teacher trained to its end first and its final checkpoint answered the signal.
launch W --set train.epochs=40
T0="$(rank_pid W 2)" || exit 1
kill -STOP "$T0" && HELD="$T0"
T1="$(rank_pid W 3)" || exit 1
kill -TERM "$T1"
sleep 0.2
kill -CONT "$T0"
HELD=""
ended W
grep -q "job 'teacher': SIGTERM on rank 1 of the job, passed on to its rank 0" W.err ||
    fail "W: the teacher's rank 1 did not pass the signal on: $(grep -v INFO W.err | tail -n 5)"
grep -q "^\[teacher\] checkpoint on SIGTERM: " W.out || fail "W: no checkpoint on SIGTERM: $(cat W.out)"
# The PS's end line names the student, which did not get the signal, unless the load let it
# train to its end (a final checkpoint after the signal) while the teacher's rank 0 was held.
grep -q "^\[teacher\] checkpoint on SIGTERM: .*(the final one)" W.out &&
    fail "W: the teacher trained to its end before it took the signal: $(cat W.out)"
grep -qE "SIGTERM: (no checkpoint of .*student.*|every job has a checkpoint) since the signal" W.out ||
    fail "W: the PS's end line: $(cat W.out)"
echo "W: SIGTERM to the teacher's rank 1: its job checkpointed, exit 143"

# 2. PS shard 1.
launch P
S1="$(rank_pid P 1)" || exit 1
kill -TERM "$S1"
ended P
grep -q "PS shard 1 got SIGTERM" P.err || fail "P: shard 0 did not hear of shard 1's signal: $(grep -v INFO P.err | tail -n 5)"
grep -q "^\[ps\] SIGTERM: .*ending the run (exit status 143)" P.out || fail "P: the PS's end line: $(cat P.out)"
echo "P: SIGTERM to PS shard 1: exit 143"
echo "ok"
