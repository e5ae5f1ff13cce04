#!/usr/bin/env bash
# usr1_one_rank.sh — SIGUSR1 (a checkpoint request: Slurm's --signal, kill -USR1) to one rank
# alone is not lost. Only a job's rank 0 writes checkpoints (docs/tools.md, "On request: SIGUSR1"),
# so the signal taken by any other rank was dropped: no checkpoint, and the run went on as if
# nothing had asked. Now such a rank passes it on, and the run goes on to its end (exit 0, a
# report) with one checkpoint on SIGUSR1 per job asked, before the final one:
#  1. to a worker that is not its job's rank 0: that job's rank 0 checkpoints, no other job;
#  2. to a PS shard other than 0: every job's rank 0 checkpoints;
#  3. to every rank (as Slurm's --signal sends it): still one checkpoint per job, though the
#     teacher's rank 0 also hears of it from its other rank and from both PS shards.
# World size 6: PS shards 0-1, a two-rank teacher (ranks 2-3), its student (4), student_raw (5).
# The ranks that must not train before the signal has been taken are held (SIGSTOP) once they
# have their signal handlers (the roles started, nothing trained).
#
#   bash tests/scripts/usr1_one_rank.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: usr1_one_rank.sh path/to/recdistill}")"
export RD # run by lib/hold.sh's wrapper
HERE="$(cd "$(dirname "$0")" && pwd)"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_usr1_one_XXXXXX)"
HELD=""
# A launch still running (a failed check) is ended before its folder is removed.
trap '[ -z "$HELD" ] || kill -CONT $HELD 2>/dev/null; kill $(jobs -p) 2>/dev/null; wait; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=lib/hold.sh
. "$HERE/lib/hold.sh" # pid_wrapper, term_caught
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1
RDP="$(pid_wrapper "$TMP")"
JOBS="teacher student student_raw"

# rank_pid RUN R: wait until world rank R of RUN has its signal handlers; its pid on stdout.
rank_pid() {
    local i p=""
    for ((i = 0; i < 3000; i++)); do
        [ -z "$p" ] && [ -s "$PIDS/$2" ] && read -r p <"$PIDS/$2"
        [ -n "$p" ] && term_caught "$p" && { echo "$p"; return 0; }
        kill -0 "$PID" 2>/dev/null || fail "$1 ended before rank $2 had its handlers: $(tail -n 5 "$1.err")"
        sleep 0.01
    done
    fail "$1: rank $2 has no SIGTERM handler after 30 s"
}

# launch RUN: the launch in the background (PID: timeout's), its ranks' pids under $PIDS.
launch() {
    export PIDS="$TMP/pids.$1"
    mkdir -p "$PIDS"
    timeout 120 "$MPIEXEC" -n 6 "$RDP" train "$SRC/tests/data/slurm-tiny.yaml" --out "$1" \
        --set cluster.ps_ranks=2 --set cluster.jobs.0.ranks=2 >"$1.out" 2>"$1.err" &
    PID=$!
}

# hold RUN R...: world ranks R of RUN stopped once they have their handlers (HELD: their pids).
hold() {
    local run="$1" r p
    shift
    for r in "$@"; do
        p="$(rank_pid "$run" "$r")" || exit 1
        kill -STOP "$p" && HELD="$HELD $p"
    done
}

release() {
    # shellcheck disable=SC2086 # a list of pids
    kill -CONT $HELD
    HELD=""
}

# wait_log RUN TEXT: until RUN's stderr has TEXT (30 s at most).
wait_log() {
    local i
    for ((i = 0; i < 3000; i++)); do
        grep -q -- "$2" "$1.err" && return 0
        kill -0 "$PID" 2>/dev/null || fail "$1 ended before '$2': $(grep -v INFO "$1.err" | tail -n 5)"
        sleep 0.01
    done
    fail "$1: no '$2' after 30 s: $(tail -n 5 "$1.err")"
}

# ended RUN JOB...: exit 0 with a report; one checkpoint on SIGUSR1 of each JOB, before its final
# checkpoint, none of the other jobs.
ended() {
    local run="$1" j n line ck last
    shift
    wait "$PID" || fail "$run: exit $? after SIGUSR1: $(grep -v INFO "$run.err" | tail -n 5)"
    [ -f "$run/report.json" ] || fail "$run: no report.json"
    for j in $JOBS; do
        n="$(grep -c "^\[$j\] checkpoint on SIGUSR1: " "$run.out")"
        if [[ " $* " == *" $j "* ]]; then
            [ "$n" -eq 1 ] || fail "$run: $n checkpoints of $j on SIGUSR1, not 1 (0: the signal was lost): $(cat "$run.out")"
            line="$(grep "^\[$j\] checkpoint on SIGUSR1: " "$run.out")"
            ck="${line#*SIGUSR1: }"
            last="$(find "$run/ckpt/$j" -maxdepth 1 -name 'step-*' | sort | tail -n 1)"
            [ -f "$ck/MANIFEST" ] || fail "$run: $j: $ck is not a complete checkpoint"
            [ "$(basename "$ck")" \< "$(basename "$last")" ] ||
                fail "$run: $j: the signal's checkpoint $ck is not before the final one $last"
        else
            [ "$n" -eq 0 ] || fail "$run: $n checkpoints of $j on SIGUSR1, which it was not asked for"
        fi
    done
}

# 1. The teacher's second rank. Its rank 0 is held before it trains, so the training is all ahead
#    when the signal has been taken.
launch W
hold W 2
T1="$(rank_pid W 3)" || exit 1
kill -USR1 "$T1"
sleep 0.2
release
ended W teacher
grep -q "job 'teacher': SIGUSR1 on rank 1 of the job, passed on to its rank 0" W.err ||
    fail "W: the teacher's rank 1 did not pass the signal on: $(grep -v INFO W.err | tail -n 5)"
echo "W: SIGUSR1 to the teacher's rank 1: one checkpoint of the teacher, exit 0"

# 2. PS shard 1, every worker held until the shard has passed the signal on.
launch P
hold P 2 3 4 5
S1="$(rank_pid P 1)" || exit 1
kill -USR1 "$S1"
wait_log P "PS shard 1: SIGUSR1 passed on to the rank 0 of 3 job(s)"
release
ended P teacher student student_raw
echo "P: SIGUSR1 to PS shard 1: one checkpoint of every job, exit 0"

# 3. Every rank, each held until all have it.
launch A
hold A 5 4 3 2 1 0 # the PS rank 0 last: it broadcasts the start to the others
# shellcheck disable=SC2086 # a list of pids
kill -USR1 $HELD
release
ended A teacher student student_raw
echo "A: SIGUSR1 to every rank: one checkpoint of every job, exit 0"
echo "ok"
