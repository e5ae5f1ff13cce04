#!/usr/bin/env bash
# slurm_placement.sh — the batch scripts' placement step (<run folder>/placement.txt) around a
# training step that fails at start-up. No cluster is needed: the batch body of
# slurm/train-1node.sbatch runs with the environment Slurm gives it and a fake `srun` (lib/
# fake_srun.sh: the training step through mpiexec).
#  1. A job refused by train at start-up (here a --resume checkpoint of 1 PS shard on 2 PS ranks)
#     left its run folder with placement.txt and train's run.lock: under mpiexec the same launch
#     leaves no run folder. Now the folders the job made go again (the placement stays in the
#     job's log); a run folder that was there before keeps what it held.
#  2. A job into a run folder that a running launch writes (run.lock held) replaced that launch's
#     placement.txt with its own, then was refused by train. Now it stops before its placement
#     step, naming the holder, and the running launch's placement.txt is left alone.
#
#   bash tests/scripts/slurm_placement.sh build/recdistill
set -u
RD="${1:?usage: slurm_placement.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v flock >/dev/null || { echo "flock not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_slurm_placement_XXXXXX)"
HOLDER=""
trap '[ -z "$HOLDER" ] || kill "$HOLDER" 2>/dev/null; rm -rf "$TMP"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# shellcheck source=lib/fake_srun.sh
. "$SRC/tests/scripts/lib/fake_srun.sh"
fake_srun "$TMP/bin" timeout 120
export PATH="$TMP/bin:$PATH" RD_BIN="$RD" RD_SLURM_DIR="$SRC/slurm" OPENBLAS_NUM_THREADS=1 UCX_TLS=self,sm
unset RD_REQUEUE_AT_LIMIT SLURM_RESTART_COUNT

W="$TMP/work"
mkdir -p "$W"
cd "$W" || fail "cd $W"
CFG="$W/tiny.yaml" # world size 4 (1 PS rank); 5 with --set cluster.ps_ranks=2
sed -e 's/^  name: slurm-tiny$/  name: place/' "$SRC/tests/data/slurm-tiny.yaml" >"$CFG"
grep -q "^  name: place$" "$CFG" || fail "could not derive tiny.yaml"
body() { # NTASKS LOG ARGS...: the batch body as Slurm runs it in a 1-node job of NTASKS tasks
    local n="$1" log="$2"
    shift 2
    env ENVIRONMENT=BATCH SLURM_JOB_ID=91 SLURM_NTASKS="$n" SLURM_JOB_NUM_NODES=1 SLURM_JOB_CPUS_PER_NODE="$n" \
        SLURM_SUBMIT_DIR="$W" RD_CONFIG="$CFG" \
        bash "$SRC/slurm/train-1node.sbatch" "$CFG" "$@" >"$log" 2>&1
}

# A run to resume from: its placement.txt stays.
body 4 "$W/ok.log" --out runs/ok || fail "the first run: $(tail -n 20 "$W/ok.log")"
[ -s runs/ok/report.json ] || fail "the first run left no report.json"
[ "$(wc -l <runs/ok/placement.txt)" -eq 4 ] || fail "placement.txt of the first run: $(cat runs/ok/placement.txt)"

# 1. Refused at start-up: the run folder (and the parents) the job made go.
REFUSED="has 1 PS shards but this run has 2 PS ranks"
body 5 "$W/r1.log" --out runs/new/deep/bad --set cluster.ps_ranks=2 --resume runs/ok/ckpt &&
    fail "a resume onto 2 PS ranks of a 1-shard checkpoint was not refused"
grep -q "$REFUSED" "$W/r1.log" || fail "r1: not refused for its layout: $(tail -n 5 "$W/r1.log")"
grep -q "^  rank 4 student_raw n1$" "$W/r1.log" || fail "r1: the placement is not in the log: $(cat "$W/r1.log")"
[ ! -e runs/new ] || fail "a job refused at start-up left its run folder: $(find runs/new)"
grep -q "train made nothing in .*runs/new/deep/bad: removed the run folder this job made" "$W/r1.log" ||
    fail "r1: the removal is not said: $(grep recdistill-slurm "$W/r1.log")"
# A run folder that was there before keeps what it held (and this job's placement).
mkdir -p runs/pre && echo kept >runs/pre/notes.txt
body 5 "$W/r2.log" --out runs/pre --set cluster.ps_ranks=2 --resume runs/ok/ckpt &&
    fail "r2: not refused"
grep -q "$REFUSED" "$W/r2.log" || fail "r2: not refused for its layout: $(tail -n 5 "$W/r2.log")"
[ "$(cat runs/pre/notes.txt 2>/dev/null)" = kept ] || fail "r2: the earlier run folder lost its files: $(ls -A runs/pre)"
# A job that trained and failed later keeps everything: the dataset it prepared, its placement.
body 4 "$W/r3.log" --out runs/late --set train.lr=1000 && fail "r3: train.lr 1000 did not diverge"
grep -q "training diverged at step" "$W/r3.log" || fail "r3: did not fail in training: $(tail -n 5 "$W/r3.log")"
if [ ! -s runs/late/data/meta.yaml ] || [ ! -s runs/late/placement.txt ]; then
    fail "r3: a job that failed in training lost its run folder's files: $(find runs/late)"
fi

# 2. A run folder another launch writes: the job stops before its placement step.
mkdir -p runs/busy
echo "host far pid 4242 since 2026-01-01T00:00:00Z: recdistill train, run folder runs/busy" >runs/busy/run.lock
printf 'rank 0 ps far\nrank 1 teacher far\nrank 2 student far\nrank 3 student_raw far\n' >runs/busy/placement.txt
cp runs/busy/placement.txt "$W/busy.placement"
# The holder: a process with the lock on an open descriptor, as train's rank 0 holds it.
(
    exec 8>>runs/busy/run.lock
    flock 8 || exit 1
    exec sleep 300
) &
HOLDER=$!
for ((i = 0; i < 500; i++)); do
    flock -n runs/busy/run.lock true || break
    sleep 0.01
done
[ "$i" -lt 500 ] || fail "could not hold runs/busy/run.lock"
body 4 "$W/b.log" --out runs/busy && fail "a job into a run folder in use ran"
grep -q "run folder .*runs/busy is in use by another writer (host far pid 4242 since 2026-01-01T00:00:00Z: recdistill train, run folder runs/busy; lock file .*runs/busy/run.lock)" "$W/b.log" ||
    fail "b: the holder is not named: $(cat "$W/b.log")"
cmp -s runs/busy/placement.txt "$W/busy.placement" ||
    fail "a job refused by the run lock replaced the running launch's placement.txt: $(cat runs/busy/placement.txt)"
grep -q "srun --mpi=pmi2" "$W/b.log" && fail "b: the training step ran: $(cat "$W/b.log")"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null
HOLDER=""
# Once that launch has ended (its lock free), a job runs into the folder as before.
rm -f runs/busy/placement.txt
body 4 "$W/b2.log" --out runs/busy || fail "b2: the folder after its holder ended: $(tail -n 20 "$W/b2.log")"
[ "$(wc -l <runs/busy/placement.txt)" -eq 4 ] || fail "b2: no placement.txt"
echo "slurm_placement.sh: ok"
