#!/usr/bin/env bash
# slurm_limit.sh — the checkpoint before a time limit, in the batch scripts. Slurm sends SIGUSR1
# to the batch shell some minutes before the limit (#SBATCH --signal=B:USR1@300); the shell
# passes it to the training step, where every job writes a checkpoint after its next step and
# trains on; with RD_REQUEUE_AT_LIMIT=1 the shell then waits for those checkpoints and requeues
# the job, whose next attempt resumes from them. Before, the signal ended the batch shell (its
# default action) and so the job.
# No cluster is needed: the batch body of slurm/train-1node.sbatch runs with the environment Slurm
# gives it, a fake `srun` (the training step through mpiexec, which passes SIGUSR1 on to every
# rank) and a fake `scontrol` that logs what it is asked.
#  1. RD_REQUEUE_AT_LIMIT=1: the batch shell takes the signal, every job writes a checkpoint, the
#     job asks to be requeued (scontrol requeue <job id>); the test then ends the step as Slurm
#     would, and the batch shell waits for its own end rather than exit with the step's status
#     (which, under load, could reach the controller after the requeue and end the job FAILED);
#  2. the restarted attempt (SLURM_RESTART_COUNT=1) resumes every job from the signal's
#     checkpoint and ends byte-identical to the uninterrupted attempt;
#  3. without RD_REQUEUE_AT_LIMIT: the checkpoints, no requeue; a failing scontrol requeue is
#     said and the attempt goes on;
#  4. a SIGUSR1 before the training step runs does not end the script; RD_REQUEUE_AT_LIMIT is
#     checked at submission, and a requeue-at-limit job is submitted with --requeue.
#
#   bash tests/scripts/slurm_limit.sh build/recdistill
set -u
RD="${1:?usage: slurm_limit.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
RD="$(realpath "$RD")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_slurm_limit_XXXXXX)"
BODY=""
# On a failure: the held PS rank goes on, and a signalled attempt still running is ended.
trap '[ -z "${HELD:-}" ] || kill -CONT $HELD 2>/dev/null; [ -z "$BODY" ] || pkill -KILL -f "train $TMP/" 2>/dev/null; rm -rf "$TMP"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# shellcheck source=lib/hold.sh
. "$SRC/tests/scripts/lib/hold.sh"

# A fake srun: the training step (--mpi=pmi2) is mpiexec itself (the batch shell's SIGUSR1
# reaches it, as it reaches srun), any other step once per task.
# shellcheck source=lib/fake_srun.sh
. "$SRC/tests/scripts/lib/fake_srun.sh"
fake_srun "$TMP/bin"
cat >"$TMP/bin/scontrol" <<EOF
#!/usr/bin/env bash
echo "\$*" >>"$TMP/scontrol.log"
[ "\${FAKE_SCONTROL_FAILS:-0}" = 0 ] || { echo "scontrol: error: Requested operation is presently disabled" >&2; exit 1; }
EOF
chmod +x "$TMP/bin/scontrol"
# The binary through the hold wrapper (lib/hold.sh): a signalled attempt's ranks are held before
# they train, until the signal is pending on each.
export PATH="$TMP/bin:$PATH" RD_BIN="$(hold_wrapper "$TMP")" RD_SLURM_DIR="$SRC/slurm" OPENBLAS_NUM_THREADS=1 UCX_TLS=self,sm
unset RD_REQUEUE_AT_LIMIT SLURM_RESTART_COUNT

W="$TMP/work"
mkdir -p "$W"
cd "$W" || fail "cd $W"
# Batches of 16, not 64: about 230 steps, so that the run rarely ends before the test holds it
# again after the signal's checkpoints (see signalled).
sed -e 's/^  name: slurm-tiny$/  name: lim/' -e 's/^  batch_size: 64$/  batch_size: 16/' \
    "$SRC/tests/data/slurm-tiny.yaml" >"$W/lim.yaml"
grep -q "^  name: lim$" "$W/lim.yaml" && grep -q "^  batch_size: 16$" "$W/lim.yaml" ||
    fail "could not derive lim.yaml"
CFG="$W/lim.yaml"
CK="$W/runs/lim/ckpt"
JOBS="teacher student student_raw"
body() { # RESTART_COUNT LOG: the batch body as Slurm runs it in a 1-node, 4-task job
    exec env ENVIRONMENT=BATCH SLURM_JOB_ID=78 SLURM_NTASKS=4 SLURM_JOB_NUM_NODES=1 SLURM_JOB_CPUS_PER_NODE=4 \
        SLURM_SUBMIT_DIR="$W" SLURM_RESTART_COUNT="$1" RD_CONFIG="$CFG" \
        bash "$SRC/slurm/train-1node.sbatch" "$CFG" >"$2" 2>&1
}
# signalled LOG: the first attempt in the background, SIGUSR1 to its batch shell while its ranks
# are held (lib/hold.sh), then its end.
signalled() {
    rm -rf "$W/runs" "$TMP/scontrol.log"
    hold_gate "$TMP"
    (body 0 "$1") &
    local b=$! i m
    BODY=$b
    hold_ps "train $CFG" 4 "$b"
    kill -USR1 "$b"
    until_pending
    release_ps
    # Held again once every job has the signal's checkpoint, until the batch shell saw them (or,
    # without a requeue, for a second): the run cannot end before.
    until_ckpts "$CK" $JOBS
    hold_again
    if [ "${RD_REQUEUE_AT_LIMIT:-0}" = 1 ]; then
        for ((i = 0; i < 3000; i++)); do
            grep -q "every job has a checkpoint since the signal" "$1" && break
            sleep 0.01
        done
    else
        sleep 1
    fi
    if [ "${RD_REQUEUE_AT_LIMIT:-0}" = 1 ] && [ "${FAKE_SCONTROL_FAILS:-0}" = 0 ]; then
        # What Slurm does on the requeue: it ends the step (SIGCONT, SIGTERM), and the batch shell,
        # which waits for that instead of ending the job with the step's status.
        m="$(pgrep -P "$b" -f mpiexec)" || fail "$1: no training step under the batch shell"
        release_ps
        kill -TERM $m
        for ((i = 0; i < 3000; i++)); do
            grep -q "requeued: waiting for Slurm to end this attempt" "$1" && break
            sleep 0.01
        done
        [ "$i" -lt 3000 ] || fail "$1: the requeued attempt does not wait for its end: $(tail -n 5 "$1")"
        kill -TERM "$b"
        wait "$b"
        [ $? -eq 143 ] || fail "$1: the requeued attempt ended by itself: $(tail -n 5 "$1")"
        # Ended by that SIGTERM, the step leaves no report. But this run is small (~230 steps): under
        # load it may finish between its SIGUSR1 checkpoints and hold_again (its final checkpoints
        # are then newer than the signal too, and the shell requeues all the same), or have no
        # step left to take when the SIGTERM comes (then every job ends as usual). Its report then
        # stays, written by the run, not after a stop (1 run in 10-25 under two busy loops with
        # batches of 64).
        if [ -e "$W/runs/lim/report.json" ]; then
            if ! grep -q "^report: runs/lim/report.json" "$1" || grep -q "^\[ps\] SIGTERM" "$1"; then
                fail "$1: a report after the requeue, though the run did not finish: $(tail -n 5 "$1")"
            fi
        fi
    else
        release_ps
        wait "$b" || fail "$1: the signalled attempt exited $?: $(tail -n 20 "$1")"
        [ -s "$W/runs/lim/report.json" ] || fail "$1: no report.json"
    fi
    local j
    grep -q "SIGUSR1 (the time limit is near): every job writes a checkpoint after its next step" "$1" ||
        fail "$1: the batch shell did not pass the signal on: $(cat "$1")"
    for j in $JOBS; do
        [ "$(grep -c "^\[$j\] checkpoint on SIGUSR1: " "$1")" -eq 1 ] ||
            fail "$1: not one checkpoint line of $j: $(grep checkpoint "$1")"
    done
}

# The uninterrupted attempt: the final checkpoints to compare with.
(body 0 "$W/u.log") || fail "uninterrupted attempt: $(tail -n 20 "$W/u.log")"
mkdir -p "$W/final"
for j in $JOBS; do
    f="$(ls -d "$CK/$j"/step-* | tail -n 1)"
    cp -r "$f" "$W/final/$j"
    echo "${f##*/}" >"$W/final/$j.name"
done

# 1. Requeue at the limit.
export RD_REQUEUE_AT_LIMIT=1
signalled "$W/a1.log"
grep -q "every job has a checkpoint since the signal (.*): requeueing the job; the next attempt resumes from them" "$W/a1.log" ||
    fail "a1: no requeue note: $(grep recdistill-slurm "$W/a1.log")"
[ "$(cat "$TMP/scontrol.log" 2>/dev/null)" = "requeue 78" ] || fail "a1: scontrol was asked: $(cat "$TMP/scontrol.log" 2>/dev/null)"

# 2. What the requeue leaves (Slurm ended the attempt after the signal's checkpoints), restarted.
for j in $JOBS; do
    line="$(grep "^\[$j\] checkpoint on SIGUSR1: " "$W/a1.log")"
    sig="$(basename "${line#*SIGUSR1: }")"
    [ -d "$CK/$j/$sig" ] || fail "a1: $j: no $CK/$j/$sig"
    [[ "$sig" < "$(cat "$W/final/$j.name")" ]] || fail "a1: $j: $sig is not before the final checkpoint"
    for d in "$CK/$j"/step-*; do [[ "${d##*/}" > "$sig" ]] && rm -rf "$d"; done
    echo "$sig" >"$W/$j.sig"
done
rm -f "$W/runs/lim/report.json"
(body 1 "$W/a2.log") || fail "restarted attempt: $(tail -n 20 "$W/a2.log")"
grep -q "restarted by Slurm (restart 1): resuming from $CK" "$W/a2.log" ||
    fail "a2: the restarted job does not say it resumes: $(grep recdistill-slurm "$W/a2.log")"
for j in $JOBS; do
    grep -q "\[$j\] resumed from .*ckpt/$j/$(cat "$W/$j.sig")" "$W/a2.log" ||
        fail "a2: $j did not resume from the signal's checkpoint: $(grep -E "resumed" "$W/a2.log")"
    n="$(cat "$W/final/$j.name")"
    cmp -s "$W/final/$j/dense.bin" "$CK/$j/$n/dense.bin" || fail "a2: $j dense.bin differs from the uninterrupted attempt's"
    cmp -s "$W/final/$j/MANIFEST" "$CK/$j/$n/MANIFEST" || fail "a2: $j tables differ from the uninterrupted attempt's"
done
[ -s "$W/runs/lim/report.json" ] || fail "a2: no report.json"

# 3. No requeue without RD_REQUEUE_AT_LIMIT; a refused requeue is said.
unset RD_REQUEUE_AT_LIMIT
signalled "$W/a3.log"
[ ! -e "$TMP/scontrol.log" ] || fail "a3: scontrol asked without RD_REQUEUE_AT_LIMIT: $(cat "$TMP/scontrol.log")"
grep -q "requeueing" "$W/a3.log" && fail "a3: a requeue note without RD_REQUEUE_AT_LIMIT"
export RD_REQUEUE_AT_LIMIT=1 FAKE_SCONTROL_FAILS=1
signalled "$W/a4.log"
grep -q "scontrol requeue failed (scontrol: error: Requested operation is presently disabled): this attempt goes on to its time limit; resume with --resume $CK" "$W/a4.log" ||
    fail "a4: the failed requeue is not said: $(grep recdistill-slurm "$W/a4.log")"
unset FAKE_SCONTROL_FAILS RD_REQUEUE_AT_LIMIT

# 4. A SIGUSR1 while no step runs; the submission.
out="$(bash -c '. "$1/slurm/common.sh"; rd_init "$1/slurm/train-1node.sbatch"; kill -USR1 $$; echo alive' _ "$SRC" 2>&1)"
case "$out" in *"while no training step runs: no checkpoint to ask for"*alive) ;;
    *) fail "a SIGUSR1 before the step: $out" ;;
esac
out="$(RD_DRY_RUN=1 RD_REQUEUE_AT_LIMIT=1 "$SRC/slurm/train-1node.sbatch" "$CFG" 2>&1)" || fail "dry run: $out"
grep -q -- " --requeue " <<<"$out" || fail "a requeue-at-limit job is submitted without --requeue: $out"
out="$(RD_DRY_RUN=1 "$SRC/slurm/train-1node.sbatch" "$CFG" 2>&1)" || fail "dry run: $out"
grep -q -- "--requeue" <<<"$out" && fail "a job is submitted with --requeue unasked: $out"
out="$(RD_DRY_RUN=1 RD_REQUEUE_AT_LIMIT=yes "$SRC/slurm/train-1node.sbatch" "$CFG" 2>&1)" &&
    fail "RD_REQUEUE_AT_LIMIT=yes accepted: $out"
grep -q "RD_REQUEUE_AT_LIMIT='yes': 1 (requeue the job once it has checkpointed before its time limit) or 0" <<<"$out" ||
    fail "RD_REQUEUE_AT_LIMIT=yes: $out"
echo "slurm_limit.sh: ok"
