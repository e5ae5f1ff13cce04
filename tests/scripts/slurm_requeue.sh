#!/usr/bin/env bash
# slurm_requeue.sh — a batch job that Slurm restarts (preemption with PreemptMode=REQUEUE, a node
# failure, `scontrol requeue`: the same script and arguments again, SLURM_RESTART_COUNT=1)
# continues from its own checkpoints. It used to run as a fresh job: train removed every
# checkpoint the first attempt had written and started again from step 0.
# No cluster is needed: the batch body of slurm/train-1node.sbatch runs with the environment
# Slurm gives it and a fake `srun` on PATH (the placement step per task; the training step through
# mpiexec.mpich). tests/scripts/slurm.sh runs the scripts on a real cluster.
#  1. the first attempt checkpoints every 10 steps; the checkpoints after step 30 and the report
#     are removed, as an attempt stopped after step 30 leaves them;
#  2. restarted: the job resumes every job from step 30 (nothing removed) and ends byte-identical
#     to the uninterrupted run (final dense.bin and MANIFEST);
#  3. restarted when only some jobs have a checkpoint: exit 1 naming them, checkpoints kept;
#  4. restarted with no checkpoint at all: a fresh start, said so;
#  5. a submission from inside a restarted job does not pass SLURM_RESTART_COUNT on.
#
#   bash tests/scripts/slurm_requeue.sh build/recdistill
set -u
RD="${1:?usage: slurm_requeue.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_slurm_requeue_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# A fake srun: the training step (--mpi=pmi2) through mpiexec, any other step once per task with
# SLURM_PROCID and SLURMD_NODENAME set.
# shellcheck source=lib/fake_srun.sh
. "$SRC/tests/scripts/lib/fake_srun.sh"
fake_srun "$TMP/bin" timeout 300
export PATH="$TMP/bin:$PATH" RD_BIN="$RD" RD_SLURM_DIR="$SRC/slurm" OPENBLAS_NUM_THREADS=1 UCX_TLS=self,sm

W="$TMP/work"
mkdir -p "$W"
cd "$W" || fail "cd $W"
# The teacher and the undistilled student, checkpointing every 10 steps, keeping them all.
sed -e 's/^  name: slurm-tiny$/  name: rq/' -e '/distill: true/d' \
    -e 's/^ps:$/ps:\n  checkpoint_every: 10\n  checkpoint_keep: 100/' \
    "$SRC/tests/data/slurm-tiny.yaml" >"$W/rq.yaml"
grep -q "^  checkpoint_every: 10$" "$W/rq.yaml" || fail "could not derive rq.yaml"
CFG="$W/rq.yaml"
attempt() { # RESTART_COUNT LOG: the batch body as Slurm runs it in a 1-node, 3-task job
    env ENVIRONMENT=BATCH SLURM_JOB_ID=77 SLURM_NTASKS=3 SLURM_JOB_NUM_NODES=1 SLURM_JOB_CPUS_PER_NODE=3 \
        SLURM_SUBMIT_DIR="$W" SLURM_RESTART_COUNT="$1" RD_CONFIG="$CFG" \
        bash "$SRC/slurm/train-1node.sbatch" "$CFG" >"$2" 2>&1
}

# 1. The first attempt, then what a stop after step 30 leaves.
attempt 0 "$W/a1.log" || fail "first attempt: $(tail -n 20 "$W/a1.log")"
CK="$W/runs/rq/ckpt"
for j in teacher student_raw; do
    [ -d "$CK/$j/step-000000000030" ] || fail "no step-30 checkpoint of $j: $(ls "$CK/$j")"
done
FIN="$(basename "$(ls -d "$CK/teacher"/step-* | tail -n 1)")"
[ "$FIN" != step-000000000030 ] || fail "the run ends at step 30: nothing to resume"
cp -r "$CK/teacher/$FIN" "$W/final"
for d in "$CK"/*/step-*; do
    [[ "$(basename "$d")" > step-000000000030 ]] && rm -rf "$d"
done
rm -f "$W/runs/rq/report.json"

# 2. Restarted: resumes from step 30 and ends as the uninterrupted run.
attempt 1 "$W/a2.log" || fail "restarted attempt: $(tail -n 20 "$W/a2.log")"
grep -q "restarted by Slurm (restart 1): resuming from $CK" "$W/a2.log" ||
    fail "the restarted job does not say it resumes: $(head -n 20 "$W/a2.log")"
for j in teacher student_raw; do
    grep -q "\[$j\] resumed from .*ckpt/$j/step-000000000030" "$W/a2.log" ||
        fail "$j did not resume from step 30: $(grep -E "resumed|removed" "$W/a2.log")"
done
grep -q "removed .* checkpoints of an earlier run" "$W/a2.log" &&
    fail "the restarted job removed its checkpoints: $(grep removed "$W/a2.log")"
cmp -s "$W/final/dense.bin" "$CK/teacher/$FIN/dense.bin" || fail "restarted: dense.bin differs"
cmp -s "$W/final/MANIFEST" "$CK/teacher/$FIN/MANIFEST" || fail "restarted: tables differ"
[ -s "$W/runs/rq/report.json" ] || fail "restarted: no report.json"

# 3. Only the teacher has a checkpoint: train can resume all jobs or none. Refused, kept.
rm -rf "$CK/student_raw" "$W/runs/rq/report.json"
n_before="$(ls -d "$CK/teacher"/step-* | wc -l)"
attempt 1 "$W/a3.log" && fail "a restart with a partial checkpoint set ran: $(tail -n 5 "$W/a3.log")"
grep -q "under $CK only teacher have a checkpoint (not student_raw)" "$W/a3.log" ||
    fail "partial checkpoint message: $(cat "$W/a3.log")"
[ "$(ls -d "$CK/teacher"/step-* | wc -l)" = "$n_before" ] || fail "the refused restart removed checkpoints"
[ ! -e "$W/runs/rq/report.json" ] || fail "the refused restart wrote a report"

# 4. No checkpoint at all: nothing to lose, a fresh start.
rm -rf "$CK"
attempt 1 "$W/a4.log" || fail "restart without checkpoints: $(tail -n 20 "$W/a4.log")"
grep -q "no checkpoint under $CK: starting again" "$W/a4.log" || fail "fresh restart: $(head -n 5 "$W/a4.log")"
[ -s "$W/runs/rq/report.json" ] || fail "fresh restart: no report.json"
# 5. A submission made inside a restarted job (a sweep driven by a batch job) does not hand its
#    SLURM_RESTART_COUNT to the new job (--export=ALL): that job would take itself for a restart.
cat >"$TMP/bin/sbatch" <<EOF
#!/usr/bin/env bash
echo "restart=\${SLURM_RESTART_COUNT:-unset}" >"$W/sbatch.env"
echo 12
EOF
printf '#!/bin/sh\nexit 1\n' >"$TMP/bin/sinfo"
chmod +x "$TMP/bin/sbatch" "$TMP/bin/sinfo"
SLURM_RESTART_COUNT=2 "$SRC/slurm/train-1node.sbatch" "$CFG" >"$W/sub.out" 2>&1 ||
    fail "submission: $(cat "$W/sub.out")"
grep -qx "restart=unset" "$W/sbatch.env" || fail "sbatch saw $(cat "$W/sbatch.env")"
echo "slurm_requeue.sh: ok"
