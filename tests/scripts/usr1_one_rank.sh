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
# Every rank is held in MPI_Init before anything trains (lib/hold.sh: hold_gate, hold_ps), the
# signal sent and left pending, then all go on. (Holding ranks one by one once each had its
# handlers let the others train meanwhile: under load a job trained to its end before the signal
# came, and the test failed with the signal rightly passed on too late.)
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
. "$HERE/lib/hold.sh" # pid_wrapper, term_caught, hold_wrapper, hold_gate, hold_ps, sig_bit
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1
HW="$(hold_wrapper "$TMP")"
JOBS="teacher student student_raw"

# launch RUN: the launch in the background (PID: timeout's), every rank held in MPI_Init.
launch() {
    hold_gate "$TMP"
    timeout 120 "$MPIEXEC" -n 6 "$HW" train "$SRC/tests/data/slurm-tiny.yaml" --out "$TMP/$1" \
        --set cluster.ps_ranks=2 --set cluster.jobs.0.ranks=2 >"$1.out" 2>"$1.err" &
    PID=$!
    hold_ps "train $SRC/tests/data/slurm-tiny.yaml --out $TMP/$1 " 6 "$PID"
}

# usr1 RUN R...: SIGUSR1 to the held world ranks R of RUN, pending on each before all go on.
usr1() {
    local run="$1" r p q i
    shift
    for r in "$@"; do
        q=""
        for p in $HELD; do
            grep -qzE "^PMI_RANK=$r\$" "/proc/$p/environ" 2>/dev/null && q="$p"
        done
        [ -n "$q" ] || fail "$run: no held rank with PMI_RANK=$r among $HELD"
        kill -USR1 "$q"
        for ((i = 0; i < 3000; i++)); do
            { sig_bit SigPnd "$q" 10 || sig_bit ShdPnd "$q" 10; } && break
            sleep 0.01
        done
    done
    release_ps
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

# 1. The teacher's second rank: the teacher's rank 0 checkpoints, no other job.
launch W
usr1 W 3
ended W teacher
grep -q "job 'teacher': SIGUSR1 on rank 1 of the job, passed on to its rank 0" W.err ||
    fail "W: the teacher's rank 1 did not pass the signal on: $(grep -v INFO W.err | tail -n 5)"
echo "W: SIGUSR1 to the teacher's rank 1: one checkpoint of the teacher, exit 0"

# 2. PS shard 1: every job's rank 0 checkpoints.
launch P
usr1 P 1
ended P teacher student student_raw
grep -q "PS shard 1: SIGUSR1 passed on to the rank 0 of 3 job(s)" P.err ||
    fail "P: PS shard 1 did not pass the signal on: $(grep -v INFO P.err | tail -n 5)"
echo "P: SIGUSR1 to PS shard 1: one checkpoint of every job, exit 0"

# 3. Every rank (as Slurm's --signal sends it): still one checkpoint per job.
launch A
usr1 A 0 1 2 3 4 5
ended A teacher student student_raw
echo "A: SIGUSR1 to every rank: one checkpoint of every job, exit 0"
echo "ok"
