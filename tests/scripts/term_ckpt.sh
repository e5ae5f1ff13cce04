#!/usr/bin/env bash
# term_ckpt.sh — SIGTERM (scancel, Slurm's preemption, a kill of mpiexec) ends `recdistill train`
# after a checkpoint of every job. Slurm sends it to every process of the step and SIGKILL some
# seconds later (KillWait, 30 s by default); before, the ranks died of it at once and the run
# resumed from its last periodic checkpoint, if any. Now every job's rank 0 writes a checkpoint
# after its next step and tells PS shard 0, the jobs train on (a live student needs the teacher's
# next targets), and shard 0 ends the run (exit 143) once every job has one, or RD_STOP_GRACE_S
# seconds after the signal.
#  1. SIGTERM to mpiexec (which passes it on to every rank): exit 143, one "checkpoint on
#     SIGTERM" line per job, before the final step of an unsignalled run, and the PS's line; no
#     report.json;
#  2. resumed from those checkpoints: ends byte-identical to the unsignalled run;
#  3. SIGTERM to the teacher's rank alone, RD_STOP_GRACE_S=1: the teacher checkpoints, the PS
#     says it did not get the signal, and ends the run a second later naming the job without a
#     checkpoint since the signal (exit 143);
#  4. the batch body of slurm/train-1node.sbatch (a fake srun) sent SIGTERM, as scancel sends it
#     (to the steps as well): it passes it on to the step, waits for it and ends with its 143.
# The signal cannot come after the run's end: once its SIGTERM handler is in place (from the
# roles on), each rank is stopped (SIGSTOP) until the signal is pending on each.
#
#   bash tests/scripts/term_ckpt.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: term_ckpt.sh path/to/recdistill}")"
HERE="$(cd "$(dirname "$0")" && pwd)"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_term_ckpt_XXXXXX)"
HELD=""
trap '[ -z "$HELD" ] || kill -CONT $HELD 2>/dev/null; rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=lib/pair_yaml.sh
. "$(cd "$(dirname "$0")" && pwd)/lib/pair_yaml.sh" # pair_yaml
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1
# shellcheck source=lib/hold.sh
. "$HERE/lib/hold.sh"

pair_yaml name=term data="$TMP/data" events=30000 users=60 items=300 batch=32 > live.yaml ||
    fail "could not write live.yaml"
JOBS="teacher student"

timeout 300 "$MPIEXEC" -n 3 "$RD" train live.yaml --out U >U.out 2>U.err || fail "unsignalled run: $(cat U.err)"
final() { ls -d "$1"/ckpt/"$2"/step-* | tail -1; }

# The ranks run through a wrapper that records their pids (lib/hold.sh).
RDP="$(pid_wrapper "$TMP")"
# hold RUN [SET...]: RUN in the background (PID: timeout's), each of its three ranks stopped
# (SIGSTOP) once it has its SIGTERM handler; RANK0..RANK2 are their pids.
hold() {
    local run="$1"
    shift
    export PIDS="$TMP/pids.$run"
    mkdir -p "$PIDS"
    timeout 300 "$MPIEXEC" -n 3 "$RDP" train live.yaml --out "$run" "$@" >"$run.out" 2>"$run.err" &
    PID=$!
    hold_ranks "$run"
}
# hold_ranks RUN: hold's wait, for a launch started in the background (PID) with $PIDS set.
hold_ranks() {
    local run="$1" i r p n st
    HELD=""
    # shellcheck disable=SC2034 # set and read by name (RANK$r)
    RANK0="" RANK1="" RANK2=""
    for ((i = 0; i < 2000000; i++)); do
        n=0
        for r in 1 2 0; do
            p="RANK$r"
            if [ -z "${!p}" ]; then
                [ -s "$PIDS/$r" ] && read -r "RANK$r" <"$PIDS/$r"
                continue
            fi
            if [[ " $HELD " == *" ${!p} "* ]]; then
                n=$((n + 1))
            elif { [ "$r" != 0 ] || [ "$n" -eq 2 ]; } && term_caught "${!p}"; then
                # World rank 0 (the PS) last: stopped right after it installed its handler, the
                # workers would not get the broadcast before theirs.
                kill -STOP "${!p}" && HELD="$HELD ${!p}"
            fi
        done
        [ "$n" -eq 3 ] && { HELD="${HELD# }"; return 0; }
        # Not kill -0: a loop of builtins does not reap the launch, whose zombie would answer it.
        st=""
        read -r _ _ st _ <"/proc/$PID/stat" 2>/dev/null
        [ -n "$st" ] && [ "$st" != Z ] ||
            fail "$run ended before its ranks had a SIGTERM handler (held:$HELD): $(cat "$run.err")"
    done
    fail "$run: not every rank has a SIGTERM handler (held:$HELD)"
}
# taken PID: 0 when SIGTERM is pending on the stopped process PID or taken by one of its threads.
# A signal to a process goes to any of its threads that does not block it, the MPI library's
# included; one that arrived before the SIGSTOP took effect is taken first (the lower number),
# and the thread stops with the handler's frame set up, not yet run (SIGTERM blocked meanwhile).
taken() {
    local t
    sig_bit ShdPnd "$1" 15 && return 0
    for t in /proc/"$1"/task/*; do
        t="${t##*/}"
        sig_bit SigPnd "$1/task/$t" 15 || sig_bit SigBlk "$1/task/$t" 15 && return 0
    done
    return 1
}
# pending PID...: wait until each stopped process has taken SIGTERM (taken).
pending() {
    local i p n r t
    for ((i = 0; i < 3000; i++)); do
        n=0
        for p in "$@"; do taken "$p" || n=$((n + 1)); done
        [ "$n" -eq 0 ] && return 0
        sleep 0.01
    done
    local why=""
    for p in "$@"; do
        for r in 0 1 2; do [ "$(eval echo "\$RANK$r")" = "$p" ] && why="$why rank $r (pid $p):"; done
        for t in /proc/"$p"/task/*; do
            why="$why task ${t##*/} $(grep -E '^(State|SigPnd|ShdPnd|SigBlk)' "$t/status" 2>/dev/null | tr -s '\t\n' '  ');"
        done
    done
    fail "SIGTERM did not reach $n of the held ranks in 30 s:$why"
}
release() {
    # shellcheck disable=SC2086
    kill -CONT $HELD
    HELD=""
}
# 1. SIGTERM to mpiexec.
hold S
echo "S: ranks held ($HELD)"
MPID="$(pgrep -P "$PID")"
[ -n "$MPID" ] && [ "$(readlink "/proc/$MPID/exe")" = "$(readlink -f "$MPIEXEC")" ] ||
    fail "S: no mpiexec under timeout (pid $PID)"
kill -TERM "$MPID"
# shellcheck disable=SC2086
pending $HELD # mpiexec passes it on through its proxy
release
echo "S: signalled, released"
wait "$PID"
rc=$?
[ "$rc" -eq 143 ] || fail "S exited $rc after SIGTERM, not 143: $(tail -n 20 S.err)"
grep -q "^\[ps\] SIGTERM: every job has a checkpoint since the signal: ending the run (exit status 143); resume it with --resume S/ckpt$" S.out ||
    fail "S: no end line of the PS: $(cat S.out)"
[ ! -e S/report.json ] || fail "S: a report.json after SIGTERM"
for j in $JOBS; do
    [ "$(grep -c "^\[$j\] checkpoint on SIGTERM: " S.out)" -eq 1 ] ||
        fail "S: not one checkpoint line of $j: $(grep checkpoint S.out)"
    ck="$(sed -n "s/^\[$j\] checkpoint on SIGTERM: //p" S.out)"
    [ -f "$ck/MANIFEST" ] || fail "S: $j: $ck is not a complete checkpoint"
    [ "$(basename "$ck")" \< "$(basename "$(final U "$j")")" ] ||
        fail "S: $j: the signal's checkpoint $ck is not before the unsignalled run's final one"
done
grep -q "died\|BAD TERMINATION" S.err S.out && fail "S: a rank reported as died: $(cat S.err)"

# 2. Resumed: the end of the unsignalled run, byte for byte.
echo "R: resuming"
timeout 300 "$MPIEXEC" -n 3 "$RD" train live.yaml --out S --resume S/ckpt >R.out 2>R.err ||
    fail "resume after SIGTERM: $(cat R.err)"
for j in $JOBS; do
    grep -q "\[$j\] resumed from S/ckpt/$j/" R.out || fail "R: $j did not resume: $(grep -i resum R.out)"
    a="$(final U "$j")" b="S/ckpt/$j/$(basename "$(final U "$j")")"
    cmp -s "$a/dense.bin" "$b/dense.bin" || fail "R: $j dense.bin differs from the unsignalled run's"
    cmp -s "$a/MANIFEST" "$b/MANIFEST" || fail "R: $j tables differ from the unsignalled run's"
done
cut -d, -f1-7 U/student.metrics.csv >a.csv && cut -d, -f1-7 S/student.metrics.csv >b.csv
cmp -s a.csv b.csv || fail "R: student metrics differ: $(diff a.csv b.csv)"

# 3. The teacher's rank alone; the grace time. More epochs: the run outlasts it.
export RD_STOP_GRACE_S=1
hold G --set train.epochs=40
echo "G: ranks held ($HELD)"
kill -TERM "$RANK1"
pending "$RANK1"
release
SECONDS=0
wait "$PID"
rc=$?
unset RD_STOP_GRACE_S
[ "$rc" -eq 143 ] || fail "G exited $rc, not 143: $(tail -n 20 G.err)"
[ "$(grep -c "^\[teacher\] checkpoint on SIGTERM: " G.out)" -eq 1 ] || fail "G: the teacher did not checkpoint: $(cat G.out)"
grep -q "^\[student\] checkpoint on SIGTERM" G.out && fail "G: the student checkpointed on a signal it did not get"
grep -q "a job checkpointed on SIGTERM, which this rank did not get: the run ends once every job has" G.err G.out ||
    fail "G: the PS does not say it did not get the signal: $(cat G.err)"
grep -q "^\[ps\] SIGTERM: no checkpoint of student since the signal after 1 s (RD_STOP_GRACE_S): it resumes from its earlier checkpoint: ending the run (exit status 143); resume it with --resume G/ckpt$" G.out ||
    fail "G: no grace end line of the PS: $(grep '\[ps\]' G.out)"
# 4. The batch body of slurm/train-1node.sbatch (a fake srun: mpiexec) sent SIGTERM, as scancel
#    sends it: it passes the signal on to the training step and ends with the step's 143.
SRC="${RD_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}"
# shellcheck source=lib/fake_srun.sh
. "$HERE/lib/fake_srun.sh"
fake_srun "$TMP/bin"
mkdir -p B
export PIDS="$TMP/pids.B"
mkdir -p "$PIDS"
(exec env PATH="$TMP/bin:$PATH" RD_BIN="$RDP" RD_SLURM_DIR="$SRC/slurm" ENVIRONMENT=BATCH SLURM_JOB_ID=79 \
    SLURM_NTASKS=3 SLURM_JOB_NUM_NODES=1 SLURM_JOB_CPUS_PER_NODE=3 SLURM_SUBMIT_DIR="$TMP/B" \
    RD_CONFIG="$TMP/live.yaml" bash -c 'cd B && exec bash "$0" "$1" --set train.epochs=40' \
    "$SRC/slurm/train-1node.sbatch" "$TMP/live.yaml" >B.log 2>&1) &
PID=$!
hold_ranks B
echo "B: ranks held ($HELD)"
kill -TERM "$PID"
# shellcheck disable=SC2086
pending $HELD
release
wait "$PID"
rc=$?
[ "$rc" -eq 143 ] || fail "B: the batch body exited $rc after SIGTERM, not 143: $(tail -n 20 B.log)"
grep -q "recdistill-slurm: job 79: SIGTERM: every job writes a checkpoint after its next step, then the run ends" B.log ||
    fail "B: the batch body did not pass SIGTERM on: $(grep recdistill-slurm B.log)"
grep -q "recdistill-slurm: job 79: train exited 143 after" B.log || fail "B: $(grep recdistill-slurm B.log)"
for j in $JOBS; do
    [ "$(grep -c "^\[$j\] checkpoint on SIGTERM: " B.log)" -eq 1 ] || fail "B: not one checkpoint line of $j: $(grep checkpoint B.log)"
done
echo "term_ckpt.sh: ok"
