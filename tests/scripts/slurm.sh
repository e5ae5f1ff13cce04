#!/usr/bin/env bash
# slurm.sh — every script in slurm/ against a REAL Slurm: brings up a private one-host cluster
# (tools/slurm-local.sh: munged, slurmctld, 4 slurmd virtual nodes) in a temporary folder,
# submits each script with the tiny config tests/data/slurm-tiny.yaml (world size 4), waits with a
# deadline, checks exit codes, report.json, where the ranks ran, a run resumed from a checkpoint
# (byte-identical to the uninterrupted one), the sweep's CSV, and the clear failures of bad input
# (nothing submitted); then tears the cluster down by its PIDs.
#
#   bash tests/scripts/slurm.sh build/recdistill
#
# Skips (exit 77) when not root or when Slurm is missing and cannot be installed. Runs one at a
# time on a host (flock), since every build directory's ctest may start it.
set -u
RD="${1:?usage: slurm.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
skip() {
    echo "SKIP: $*"
    exit 77
}

# --- a private cluster (4 nodes of 8 CPUs), this test's folder, the lock ----------------------
# shellcheck source=lib/slurm_cluster.sh
. "$SRC/tests/scripts/lib/slurm_cluster.sh"
slurm_cluster_up main 4 8
# The whole test: about 60-90 s on an idle host, 210 s on 2 busy cores; 460-530 s on 2 cores
# with six busy loops and other sessions' tests (300 s was hit there, 2 runs of 2: a job still
# PENDING, then the dead-slurmd check). A hang guard under ctest's 900 s, not a speed check.
DEADLINE=$((T_START + 720))
"$SRC/tools/slurm-local.sh" up --nodes 4 --cpus 8 --dir "$CL" --port "$PORT" 2>&1 |
    grep -q "already up" || fail "second up is not a no-op"
"$SRC/tools/slurm-local.sh" status --dir "$CL" >"$TMP/status.log" 2>&1 ||
    fail "status after up: $(cat "$TMP/status.log")"
grep -q "4 *idle *n\[1-4\]" "$TMP/status.log" || fail "sinfo: $(cat "$TMP/status.log")"
echo "cluster up in $((SECONDS - T_START)) s (port $PORT)"

# --- configs: the tiny one under several run names ----------------------------------------------
W="$TMP/work"
mkdir -p "$W"
cd "$W" || fail "cd $W"
export RD_BIN="$RD" OMP_NUM_THREADS=1
TINY="$SRC/tests/data/slurm-tiny.yaml"
named() { # name -> config file with run.name = name
    sed "s/^  name: slurm-tiny$/  name: $1/" "$TINY" >"$W/$1.yaml"
    grep -q "^  name: $1$" "$W/$1.yaml" || fail "could not rename the run in $TINY"
    echo "$W/$1.yaml"
}
# Replay: the two students only, reading the hetjob run's target log; the distilled student names
# the teacher job of that earlier launch.
sed -e "s/^  name: slurm-tiny$/  name: replay/" -e '/role: teacher/d' \
    -e 's/, distill: true/, distill: true, teacher: teacher/' "$TINY" >"$W/replay.yaml"
printf '\ndistill:\n  replay: true\n  target_log: runs/het/targets\n' >>"$W/replay.yaml"
printf 'run: {name: bad\n' >"$W/bad.yaml"

submit() { # script config [VAR=value...] [-- train options...] -> job id on stdout
    local script="$1" cfg="$2" out
    local -a envs=() opts=()
    shift 2
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    [ $# -gt 0 ] && { shift; opts=("$@"); }
    out="$(env "${envs[@]}" "$SRC/slurm/$script" "$cfg" "${opts[@]}" 2>"$W/submit.err")" ||
        fail "$script $cfg ${opts[*]}: $(cat "$W/submit.err")"
    [[ "$out" =~ ^submitted\ ([0-9]+)\ (.*)$ ]] || fail "$script printed '$out'"
    echo "${BASH_REMATCH[1]}"
}
state_of() { # job id -> "STATE EXIT" (het jobs: the first component)
    scontrol show job -o "$1" 2>/dev/null | head -n 1 |
        sed -n 's/.*JobState=\([^ ]*\).* ExitCode=\([^ ]*\).*/\1 \2/p'
}
wait_job() { # job id -> waits, then checks COMPLETED 0:0
    local id="$1" st
    while :; do
        st="$(state_of "$id")"
        case "$st" in
            COMPLETED* | FAILED* | CANCELLED* | TIMEOUT* | NODE_FAIL* | OUT_OF_MEMORY* | BOOT_FAIL*) break ;;
        esac
        [ "$SECONDS" -lt "$DEADLINE" ] || { scancel "$id"; fail "job $id still '$st' at the deadline"; }
        sleep 0.2
    done
    [ "$st" = "COMPLETED 0:0" ] || fail "job $id: $st: $(cat "$W"/slurm-*-"$id".out 2>/dev/null)"
}
check_report() { # run name, jobs... : report.json names every job with a throughput
    local f="$W/runs/$1/report.json" j
    shift
    [ -s "$f" ] || fail "no $f"
    for j in "$@"; do
        jq -e ".jobs.\"$j\".samples_per_s > 0 and .jobs.\"$j\".train_samples > 0" "$f" >/dev/null ||
            fail "$f: job $j has no throughput: $(cat "$f")"
    done
}
nodes_of() { # run name, role -> distinct nodes that role ran on
    awk -v r="$2" '$3 == r {print $4}' "$W/runs/$1/placement.txt" | sort -u | tr '\n' ' '
}

# --- bad input: clear errors, nothing submitted -------------------------------------------------
before="$(squeue -h | wc -l)"
for s in train-1node.sbatch train-multinode.sbatch distill-hetjob.sbatch student-replay.sbatch; do
    "$SRC/slurm/$s" "$W/bad.yaml" >/dev/null 2>"$W/err" && fail "$s accepted a bad config"
    grep -q "bad config: .*bad.yaml:" "$W/err" || fail "$s bad-config message: $(cat "$W/err")"
    "$SRC/slurm/$s" "$W/missing.yaml" >/dev/null 2>"$W/err" && fail "$s accepted a missing config"
    grep -q "missing.yaml" "$W/err" || fail "$s missing-config message: $(cat "$W/err")"
    "$SRC/slurm/$s" >/dev/null 2>&1
    [ $? -eq 2 ] || fail "$s without a config must exit 2"
done
"$SRC/slurm/student-replay.sbatch" "$(named notreplay)" >/dev/null 2>"$W/err" &&
    fail "student-replay accepted a config without replay"
grep -q "distill.replay: true" "$W/err" || fail "replay message: $(cat "$W/err")"
"$SRC/slurm/student-replay.sbatch" "$W/replay.yaml" >/dev/null 2>"$W/err" &&
    fail "student-replay accepted a missing target log"
grep -q "target log .*runs/het/targets.* does not exist" "$W/err" || fail "target log message: $(cat "$W/err")"
sed 's/, distill: true, teacher: teacher//' "$W/replay.yaml" >"$W/replay_nodistill.yaml"
"$SRC/slurm/student-replay.sbatch" "$W/replay_nodistill.yaml" >/dev/null 2>"$W/err" &&
    fail "student-replay accepted a replay without a distilled student"
grep -q "distill.replay: true, but no student job has distill: true" "$W/err" ||
    fail "replay without a distilled student message: $(cat "$W/err")"
sed '/role: teacher/d; s/, distill: true//' "$(named noteacher)" >"$W/noteacher2.yaml"
"$SRC/slurm/distill-hetjob.sbatch" "$W/noteacher2.yaml" >/dev/null 2>"$W/err" &&
    fail "distill-hetjob accepted a config without a teacher"
grep -q "needs a teacher job" "$W/err" || fail "hetjob message: $(cat "$W/err")"
RD_BIN=/nonexistent "$SRC/slurm/train-1node.sbatch" "$TINY" >/dev/null 2>"$W/err" &&
    fail "a missing binary was accepted"
grep -q "/nonexistent.*not found" "$W/err" || fail "missing binary message: $(cat "$W/err")"
printf 'config: %s\nranks: 1\nteacher_ranks: 2\n' "$TINY" >"$W/both.spec"
"$SRC/slurm/sweep.sh" "$W/both.spec" >/dev/null 2>"$W/err" && fail "sweep accepted ranks + teacher_ranks"
grep -q "either ranks or teacher_ranks" "$W/err" || fail "sweep spec message: $(cat "$W/err")"
printf 'config: %s\nnodes: 1 x\n' "$TINY" >"$W/badval.spec"
"$SRC/slurm/sweep.sh" "$W/badval.spec" >/dev/null 2>"$W/err" && fail "sweep accepted nodes: x"
grep -q "badval.spec:2: nodes: 'x' is not a positive integer" "$W/err" || fail "sweep value message: $(cat "$W/err")"
# Dry run: the `ranks:` form; 3 nodes for a 4- or 7-rank world are fine, 8 are skipped.
printf 'config: %s\nnodes: 3 8\nranks: 1 2\nout: runs/dry\n' "$TINY" >"$W/dry.spec"
RD_DRY_RUN=1 "$SRC/slurm/sweep.sh" "$W/dry.spec" >"$W/dry.out" 2>"$W/err" || fail "dry sweep: $(cat "$W/err")"
[ "$(grep -c "^RD_BIN=.* sbatch .*train-multinode.sbatch" "$W/dry.out")" -eq 2 ] || fail "dry sweep: $(cat "$W/dry.out" "$W/err")"
grep -q "skip n8-r1-p1-b64: 8 nodes for 4 ranks" "$W/err" || fail "dry sweep skip: $(cat "$W/err")"
grep -q -- "--nodes=3 --ntasks=7 .*n3-r2-p1-b64.yaml" "$W/dry.out" || fail "dry sweep sizes: $(cat "$W/dry.out")"
[ ! -e "$W/runs/dry/data" ] || fail "a dry sweep prepared the dataset"
# Dry run: the zipped `points:` form (weak scaling), and its conflicts and bad values.
printf 'config: %s
nodes: 2
points: 1:1:1 2:1:2 -:2:1
out: runs/dryp
' "$TINY" >"$W/dryp.spec"
RD_DRY_RUN=1 "$SRC/slurm/sweep.sh" "$W/dryp.spec" >"$W/dryp.out" 2>"$W/err" || fail "dry points sweep: $(cat "$W/err")"
[ "$(grep -c "^RD_BIN=.* sbatch .*train-multinode.sbatch" "$W/dryp.out")" -eq 3 ] || fail "dry points: $(cat "$W/dryp.out" "$W/err")"
grep -q -- "--ntasks=6 .*n2-t2-s1-p2-b64.yaml" "$W/dryp.out" || fail "dry points sizes: $(cat "$W/dryp.out")"
grep -q -- "--ntasks=6 .*n2-s2-p1-b64.yaml" "$W/dryp.out" || fail "dry points '-': $(cat "$W/dryp.out")"
printf 'config: %s
points: 1:1:1
ps: 2
' "$TINY" >"$W/pboth.spec"
"$SRC/slurm/sweep.sh" "$W/pboth.spec" >/dev/null 2>"$W/err" && fail "sweep accepted points + ps"
grep -q "either points or" "$W/err" || fail "points conflict message: $(cat "$W/err")"
printf 'config: %s
points: 1:1
' "$TINY" >"$W/pbad.spec"
"$SRC/slurm/sweep.sh" "$W/pbad.spec" >/dev/null 2>"$W/err" && fail "sweep accepted points: 1:1"
grep -q "pbad.spec:2: points: '1:1'" "$W/err" || fail "points value message: $(cat "$W/err")"
# Command line of the submitters: --help is the usage on stdout (exit 0), a stray option or a bad
# train option after CONFIG is a usage error (exit 2), and a missing folder gives one line.
for s in train-1node.sbatch train-multinode.sbatch distill-hetjob.sbatch student-replay.sbatch; do
    "$SRC/slurm/$s" --help >"$W/out" 2>&1 || fail "$s --help exited $?"
    grep -q "^usage: slurm/$s .*CONFIG.yaml \[--out DIR\] \[--seed N\] \[--resume DIR\]" "$W/out" ||
        fail "$s --help: $(cat "$W/out")"
    for bad in "-x $TINY" "$TINY --seed x" "$TINY --out" "$TINY --bogus 1" "$TINY --out a --out b"; do
        # shellcheck disable=SC2086
        "$SRC/slurm/$s" $bad >/dev/null 2>"$W/err"
        [ $? -eq 2 ] || fail "$s $bad must be a usage error: $(cat "$W/err")"
    done
    "$SRC/slurm/$s" /nonexistent/x.yaml >/dev/null 2>"$W/err" && fail "$s accepted /nonexistent/x.yaml"
    [ "$(wc -l <"$W/err")" -eq 1 ] || fail "$s: a missing folder must give one line: $(cat "$W/err")"
done
"$SRC/slurm/sweep.sh" --help >"$W/out" 2>&1 || fail "sweep.sh --help exited $?"
grep -q "^usage: slurm/sweep.sh" "$W/out" || fail "sweep.sh --help: $(cat "$W/out")"
"$SRC/slurm/sweep.sh" -x >/dev/null 2>&1
[ $? -eq 2 ] || fail "sweep.sh -x must exit 2"
RD_DISTRIBUTION=bogus "$SRC/slurm/train-multinode.sbatch" "$TINY" >/dev/null 2>"$W/err" &&
    fail "train-multinode accepted RD_DISTRIBUTION=bogus"
grep -q "RD_DISTRIBUTION 'bogus' is not an srun --distribution" "$W/err" || fail "distribution message: $(cat "$W/err")"
env -u SLURM_HOSTFILE RD_DISTRIBUTION=arbitrary "$SRC/slurm/train-multinode.sbatch" "$TINY" >/dev/null 2>"$W/err" &&
    fail "train-multinode accepted RD_DISTRIBUTION=arbitrary without SLURM_HOSTFILE"
grep -q "RD_DISTRIBUTION=arbitrary needs SLURM_HOSTFILE" "$W/err" || fail "arbitrary message: $(cat "$W/err")"
# A het job of 5 components (PS, a 2-rank teacher on 2 nodes, two students) needs 5 nodes; the
# cluster has 4: refused at submission instead of PENDING for ever.
sed 's/{name: teacher, role: teacher, model: teacher}/{name: teacher, role: teacher, model: teacher, ranks: 2}/' \
    "$(named big)" >"$W/big5.yaml"
RD_TASKS_PER_NODE=1 "$SRC/slurm/distill-hetjob.sbatch" "$W/big5.yaml" >/dev/null 2>"$W/err" &&
    fail "distill-hetjob accepted a 5-node het job on 4 nodes"
grep -q "needs 5 nodes (one per component.*partition debug has 4" "$W/err" || fail "het nodes message: $(cat "$W/err")"
# Inputs are checked as the job will see them: relative to its working directory.
sed 's/^  source: synthetic$/  source: movielens100k\n  input: ..\/shared\/ml/' "$(named mlin)" >"$W/mlin2.yaml"
"$SRC/slurm/train-1node.sbatch" "$W/mlin2.yaml" >/dev/null 2>"$W/err" && fail "a missing data.input was accepted"
grep -q "data.input '../shared/ml' (source movielens100k) not found from the job's working directory $W" "$W/err" ||
    fail "data.input message: $(cat "$W/err")"
mkdir -p "$W/shared/ml" "$W/in"
RD_DRY_RUN=1 RD_SBATCH_ARGS="--chdir=$W/in" "$SRC/slurm/train-1node.sbatch" "$W/mlin2.yaml" >/dev/null 2>"$W/err" ||
    fail "data.input present from --chdir refused: $(cat "$W/err")"
RD_SBATCH_ARGS="--array=1-2" "$SRC/slurm/train-1node.sbatch" "$TINY" --resume "$W" >/dev/null 2>"$W/err" &&
    fail "an array job with --resume was accepted"
grep -q "resume each task as its own job" "$W/err" || fail "array resume message: $(cat "$W/err")"
# The dry run is a shell command: a path with a space and a comma survives it, and the variables
# travel in the environment (--export=ALL), not inside --export's comma list.
mkdir -p "$W/sp ace,c"
cp "$TINY" "$W/sp ace,c/my cfg.yaml"
(cd "$W/sp ace,c" && RD_DRY_RUN=1 "$SRC/slurm/train-1node.sbatch" "my cfg.yaml" --seed 3) >"$W/dry1.out" 2>"$W/err" ||
    fail "dry run with a space: $(cat "$W/err")"
eval "dry=($(cat "$W/dry1.out"))"
[ "${dry[2]#RD_CONFIG=}" = "$W/sp ace,c/my cfg.yaml" ] && [ "${dry[-3]}" = "$W/sp ace,c/my cfg.yaml" ] &&
    [ "${dry[-1]}" = 3 ] && [[ " ${dry[*]} " == *" --export=ALL "* ]] || fail "dry run quoting: $(cat "$W/dry1.out")"
# A sweep with a point Slurm cannot place (12 ranks on 1 node of 8 CPUs) is refused before any
# point is submitted: it stopped at that point's submission, the points before it running on.
printf 'config: %s\nnodes: 1 2\nteacher_ranks: 1 9\nout: runs/unfit\n' "$TINY" >"$W/unfit.spec"
"$SRC/slurm/sweep.sh" "$W/unfit.spec" >/dev/null 2>"$W/err" && fail "sweep accepted a point on 1 node of 8 CPUs with 12 ranks"
grep -q "unfit.spec: point n1-t9-p1-b64 (1 node(s), 12 ranks) cannot run here, nothing submitted: the run deals its 12 ranks over 1 node(s): 12 task(s) on a node, but the nodes of partition debug have at most 8 CPUs: set RD_TASKS_PER_NODE=8" \
    "$W/err" || fail "unfit sweep message: $(cat "$W/err")"
[ ! -e "$W/runs/unfit/runs.tsv" ] && [ ! -e "$W/runs/unfit/data" ] || fail "the refused sweep submitted or prepared: $(ls "$W/runs/unfit")"
[ "$(squeue -h | wc -l)" -eq "$before" ] || fail "a failed submission left a job: $(squeue)"

# --- submit every script -------------------------------------------------------------------------
end_state() { # JOB NAME: wait until the job has ended, then print its state
    local st
    while :; do
        st="$(state_of "$1")"
        case "$st" in FAILED* | COMPLETED*) break ;; esac
        [ "$SECONDS" -lt "$DEADLINE" ] || fail "$2 still '$st'"
        sleep 0.2
    done
    echo "$st"
}
t0=$SECONDS
j1="$(submit train-1node.sbatch "$(named one)")"
j2="$(submit train-multinode.sbatch "$(named multi)" RD_TASKS_PER_NODE=2)"
j3="$(submit distill-hetjob.sbatch "$(named het)" RD_TASKS_PER_NODE=2)"
# A job sized by hand with too few tasks fails inside with a clear message (exit 1). It is
# submitted as a user would, from a run folder without slurm/ and without RD_SLURM_DIR: the
# spooled script finds common.sh through the job's recorded command.
named short >/dev/null
jbad="$(env -u RD_SLURM_DIR sbatch --parsable --ntasks=2 --output="$W/slurm-short-%j.out" \
    "$SRC/slurm/train-1node.sbatch" "$W/short.yaml")" || fail "sbatch of the short job"
# Sized by hand with enough tasks, but not on one node (the 1-node script's step needs all 4 on
# one): it failed in srun after making its run folder. Now refused at once, and no folder.
named split >/dev/null
jsplit="$(sbatch --parsable --nodes=2 --ntasks=4 --ntasks-per-node=2 --output="$W/slurm-split-%j.out" \
    "$SRC/slurm/train-1node.sbatch" "$W/split.yaml")" || fail "sbatch of the split job"
# --overcommit (SLURM_JOB_CPUS_PER_NODE=1, the step runs 4 tasks on it) is a legitimate 1-node
# job: it was refused by the CPU count.
named overc >/dev/null
jovercommit="$(sbatch --parsable --nodes=1 --ntasks=4 --overcommit --output="$W/slurm-overc-%j.out" \
    "$SRC/slurm/train-1node.sbatch" "$W/overc.yaml")" || fail "sbatch of the overcommit job"
# A placement step that fails (a hand-made job with --distribution=arbitrary and no
# SLURM_HOSTFILE) leaves no run folder, nor its temporary files.
named arb >/dev/null
jarb="$(env -u SLURM_HOSTFILE sbatch --parsable --nodes=2 --ntasks=4 --export=ALL,RD_DISTRIBUTION=arbitrary \
    --output="$W/slurm-arb-%j.out" "$SRC/slurm/train-multinode.sbatch" "$W/arb.yaml")" ||
    fail "sbatch of the arbitrary job"
# A wrong RD_SLURM_DIR: the job stops at once and says how to point at the scripts.
jdir="$(RD_SLURM_DIR="$W/nowhere" sbatch --parsable --ntasks=4 --output="$W/slurm-nodir-%j.out" \
    "$SRC/slurm/train-1node.sbatch" "$W/short.yaml")" || fail "sbatch of the no-dir job"
# An array job, from a folder with a comma in its path (the config's path goes through the
# environment): each task trains in <run>/task-N with seed 7 + N.
mkdir -p "$W/c,d"
sed "s/^  name: slurm-tiny$/  name: arr/" "$TINY" >"$W/c,d/arr.yaml"
jarr="$(cd "$W/c,d" && submit train-1node.sbatch arr.yaml RD_SBATCH_ARGS=--array=1-2)"
# By hand with another working directory (--chdir) and train options after the config: the run
# folder is relative to the job's working directory, where the job looks for report.json.
mkdir -p "$W/chd"
named chd >/dev/null
jchd="$(sbatch --parsable --ntasks=4 --chdir="$W/chd" --output="$W/slurm-chd-%j.out" \
    "$SRC/slurm/train-1node.sbatch" "$W/chd.yaml" --out runs/chd-out --seed 11)" || fail "sbatch of the chdir job"
wait_job "$j1"
wait_job "$j2"
wait_job "$j3"
wait_job "${jarr}_1"
wait_job "${jarr}_2"
st="$(end_state "$jchd" "chdir job")"
[ "$st" = "COMPLETED 0:0" ] || fail "the --chdir job: $st: $(cat "$W/slurm-chd-$jchd.out")"
echo "1-node, multi-node, het, array and --chdir jobs done in $((SECONDS - t0)) s"
for t in 1 2; do
    f="$W/c,d/runs/arr/task-$t/report.json"
    [ -s "$f" ] || fail "array task $t left no $f: $(ls -R "$W/c,d/runs" 2>&1)"
    jq -e ".seed == $((7 + t))" "$f" >/dev/null || fail "array task $t seed: $(jq .seed "$f")"
done
[ ! -e "$W/c,d/runs/arr/report.json" ] || fail "an array task wrote the shared run folder"
jq -e '.seed == 11' "$W/chd/runs/chd-out/report.json" >/dev/null ||
    fail "chdir job: no report with seed 11 in $W/chd/runs/chd-out: $(cat "$W/slurm-chd-$jchd.out")"
st="$(end_state "$jbad" "short job")"
[ "$st" = "FAILED 1:0" ] || fail "the short job must fail with exit 1, got '$st'"
grep -q "allocation has 2 task(s) (SLURM_NTASKS=2) but the config needs 4, one per rank: cluster.ps_ranks 1 + cluster.jobs\[0\].ranks 1 (teacher)" "$W/slurm-short-$jbad.out" ||
    fail "short job message: $(cat "$W/slurm-short-$jbad.out")"
st="$(end_state "$jsplit" "split job")"
[ "$st" = "FAILED 1:0" ] || fail "the split job must fail with exit 1, got '$st'"
grep -q "the 1-node script runs all 4 ranks (cluster.ps_ranks 1 + .*) on one node, but the allocation has at most 2 CPU(s) on a node" \
    "$W/slurm-split-$jsplit.out" || fail "split job message: $(cat "$W/slurm-split-$jsplit.out")"
[ ! -e "$W/runs/split" ] || fail "the refused split job left its run folder: $(ls -A "$W/runs/split")"
st="$(end_state "$jovercommit" "overcommit job")"
[ "$st" = "COMPLETED 0:0" ] || fail "the overcommit job must complete, got '$st': $(cat "$W/slurm-overc-$jovercommit.out")"
[ -s "$W/runs/overc/report.json" ] || fail "the overcommit job left no report.json"
st="$(end_state "$jarb" "arbitrary job")"
[ "$st" = "FAILED 1:0" ] || fail "the arbitrary job must fail with exit 1, got '$st'"
grep -q "placement step ran 0 of 4 tasks" "$W/slurm-arb-$jarb.out" ||
    fail "arbitrary job message: $(cat "$W/slurm-arb-$jarb.out")"
[ ! -e "$W/runs/arb" ] || fail "a failed placement step left its run folder: $(ls -A "$W/runs/arb")"
st="$(end_state "$jdir" "no-dir job")"
[ "$st" = "FAILED 1:0" ] || fail "the no-dir job must fail with exit 1, got '$st'"
grep -q "no common.sh in '$W/nowhere'.*RD_SLURM_DIR=<repo>/slurm" "$W/slurm-nodir-$jdir.out" ||
    fail "no-dir job message: $(cat "$W/slurm-nodir-$jdir.out")"

check_report one teacher student student_raw
check_report multi teacher student student_raw
check_report het teacher student student_raw
[ "$(wc -w <<<"$(awk '{print $4}' "$W/runs/one/placement.txt" | sort -u)")" -eq 1 ] ||
    fail "1-node run spans several nodes: $(cat "$W/runs/one/placement.txt")"
[ "$(awk '{print $4}' "$W/runs/multi/placement.txt" | sort -u | wc -l)" -eq 2 ] ||
    fail "multi-node run must span 2 nodes: $(cat "$W/runs/multi/placement.txt")"
[ "$(nodes_of multi ps)" != "$(nodes_of multi teacher)" ] ||
    fail "multi-node: PS and teacher on the same node: $(cat "$W/runs/multi/placement.txt")"
# Het job: the four components (ps, teacher, student, student_raw) on four distinct nodes, ranks
# in config order.
[ "$(awk '{print $4}' "$W/runs/het/placement.txt" | sort -u | wc -l)" -eq 4 ] ||
    fail "het job components must have their own nodes: $(cat "$W/runs/het/placement.txt")"
[ "$(awk '{print $3}' "$W/runs/het/placement.txt" | tr '\n' ' ')" = "ps teacher student student_raw " ] ||
    fail "het job rank order: $(cat "$W/runs/het/placement.txt")"
grep -q -- "--mpi=pmi2" "$W/slurm-rd-distill-het-$j3.out" || fail "het job did not use --mpi=pmi2"

# --- student-only replay of the het run's target log -----------------------------------------------
if [ ! -e "$W/runs/het/targets" ]; then
    # train does not write a target log yet (distillation transport not landed): stand in for it,
    # so that the submission path is tested; the check above proves a missing log is refused.
    echo "note: runs/het/targets not written by train yet; replaying an empty stand-in"
    mkdir -p "$W/runs/het/targets"
fi
j4="$(submit student-replay.sbatch "$W/replay.yaml" RD_TASKS_PER_NODE=2)"
wait_job "$j4"
check_report replay student student_raw
jq -e '.jobs | has("teacher") | not' "$W/runs/replay/report.json" >/dev/null ||
    fail "replay run trained a teacher"

# --- a stopped run resumed through Slurm ----------------------------------------------------------
# The teacher alone, checkpointing every 10 steps, on 2 nodes; a second job on 2 nodes resumes from
# a root holding only its step-30 checkpoint (as a job stopped after it would leave) and must end
# exactly as the uninterrupted one: the same final dense.bin and table CRCs, the same metrics.
sed -e 's/^  name: slurm-tiny$/  name: res/' -e '/role: student/d' \
    -e 's/^ps:$/ps:\n  checkpoint_every: 10\n  checkpoint_keep: 100/' "$TINY" >"$W/res.yaml"
grep -q "^  checkpoint_every: 10$" "$W/res.yaml" || fail "could not derive res.yaml from $TINY"
jres="$(submit train-multinode.sbatch "$W/res.yaml" RD_TASKS_PER_NODE=1)"
wait_job "$jres"
RCK="$W/runs/res/ckpt/teacher"
RFIN="$(ls -d "$RCK"/step-* | tail -n 1)"
[ -d "$RCK/step-000000000030" ] && [ "$RFIN" != "$RCK/step-000000000030" ] ||
    fail "res: no step-30 checkpoint before the last one: $(ls "$RCK")"
mkdir -p "$W/resroot/teacher" && cp -r "$RCK/step-000000000030" "$W/resroot/teacher/"
jres2="$(submit train-multinode.sbatch "$W/res.yaml" RD_TASKS_PER_NODE=1 -- --out runs/res2 \
    --resume "$W/resroot")"
wait_job "$jres2"
grep -q "resumed from .*resroot/teacher/step-000000000030" "$W"/slurm-*-"$jres2".out ||
    fail "the resumed job says nothing of its checkpoint: $(cat "$W"/slurm-*-"$jres2".out)"
R2FIN="$W/runs/res2/ckpt/teacher/$(basename "$RFIN")"
cmp -s "$RFIN/dense.bin" "$R2FIN/dense.bin" || fail "resumed through Slurm: dense.bin differs"
cmp -s "$RFIN/MANIFEST" "$R2FIN/MANIFEST" || fail "resumed through Slurm: tables differ (MANIFEST CRCs)"
cut -d, -f1-7 "$W/runs/res/teacher.metrics.csv" >"$W/res1.csv"
cut -d, -f1-7 "$W/runs/res2/teacher.metrics.csv" >"$W/res2.csv"
cmp -s "$W/res1.csv" "$W/res2.csv" || fail "resumed through Slurm: metrics differ: $(diff "$W/res1.csv" "$W/res2.csv")"
[ "$(awk '{print $4}' "$W/runs/res2/placement.txt" | sort -u | wc -l)" -eq 2 ] ||
    fail "the resumed run must span 2 nodes: $(cat "$W/runs/res2/placement.txt")"
echo "a run stopped after step 30 resumed through Slurm on 2 nodes, exactly"

# --- the time limit's SIGUSR1, and a requeue that resumes -----------------------------------------
# The teacher alone, no checkpoint cadence, long enough to be running when the signal comes;
# submitted with RD_REQUEUE_AT_LIMIT=1 (so with --requeue). `scancel --signal=USR1 --batch` sends
# what #SBATCH --signal=B:USR1@N sends before the limit: the batch shell passes it to srun, which
# hands it to the tasks; the teacher checkpoints, the shell requeues the job (scontrol), and the
# restarted job resumes from that checkpoint and completes. The ranks are held (SIGSTOP) before
# they train until the signal reached them (lib/hold.sh), so the run cannot end before, and rank
# 0 again from the checkpoint on, so that the run ends by the requeue.
# shellcheck source=lib/hold.sh
. "$SRC/tests/scripts/lib/hold.sh"
sed -e 's/^  name: slurm-tiny$/  name: lim/' -e '/role: student/d' \
    -e 's/^  batch_size: 64$/  batch_size: 64\n  epochs: 25/' "$TINY" >"$W/lim.yaml"
grep -q "^  epochs: 25$" "$W/lim.yaml" || fail "could not derive lim.yaml from $TINY"
hold_gate "$W"
jlim="$(submit train-1node.sbatch "$W/lim.yaml" RD_REQUEUE_AT_LIMIT=1 RD_BIN="$(hold_wrapper "$W")")"
hold_ps "train $W/lim.yaml" 2 "$$"
scancel --signal=USR1 --batch "$jlim" || fail "scancel --signal=USR1 --batch $jlim"
until_pending
release_ps
# Held again once the signal's checkpoint is there: the run waits for the requeue to end it.
tlim=$SECONDS
until_ckpts "$W/runs/lim/ckpt" teacher
hold_again
# Slurm holds a requeued job back (BeginTime: AuthInfo's cred_expire, 10 s on this cluster),
# so that the attempt it ended can finish on its nodes. (Started at once with scontrol update
# StartTime=now, it failed under load: "Killing non-startable batch JobId: Job credential
# revoked", exit 1 and nothing in its log.)
st="$(end_state "$jlim" "requeued job")"
HELD="" # killed by the requeue
[ "$st" = "COMPLETED 0:0" ] || fail "lim: job $jlim: $st: $(scontrol show job "$jlim" 2>&1 | grep -E "JobState|Restarts|Reason|ExitCode|Requeue"): $(cat "$W"/slurm-*-"$jlim".out 2>/dev/null)"
LOUT="$W/slurm-rd-train-1node-$jlim.out"
grep -q "SIGUSR1 (the time limit is near): every job writes a checkpoint after its next step" "$LOUT" ||
    fail "lim: the batch shell did not pass SIGUSR1 on: $(cat "$LOUT")"
line="$(grep "^\[teacher\] checkpoint on SIGUSR1: " "$LOUT")" || fail "lim: no checkpoint on SIGUSR1: $(cat "$LOUT")"
LCK="$(basename "${line#*SIGUSR1: }")"
grep -q "requeueing the job; the next attempt resumes from them" "$LOUT" || fail "lim: no requeue: $(cat "$LOUT")"
grep -q "restarted by Slurm (restart 1): resuming from $W/runs/lim/ckpt" "$LOUT" ||
    fail "lim: the requeued job did not resume: $(cat "$LOUT")"
# The requeue ends the step with SIGTERM, on which every job writes one more checkpoint before
# the run ends (docs/slurm.md): when it came, the next attempt resumes from that one.
RCK="$LCK"
if line="$(grep "^\[teacher\] checkpoint on SIGTERM: " "$LOUT")"; then
    RCK="$(basename "${line#*SIGTERM: }")"
    [[ "$RCK" > "$LCK" ]] || fail "lim: the requeue's checkpoint $RCK is not after the signal's $LCK"
fi
grep -q "\[teacher\] resumed from .*ckpt/teacher/$RCK" "$LOUT" ||
    fail "lim: not resumed from the newest checkpoint $RCK (the signal's: $LCK): $(grep -E "resumed|checkpoint on" "$LOUT")"
check_report lim teacher
echo "a job signalled before its time limit checkpointed, requeued itself and resumed in $((SECONDS - tlim)) s"

# --- scancel: every job checkpoints on SIGTERM, then the run ends --------------------------------
# Once every rank has its SIGTERM handler (from the roles on: lib/hold.sh's pid_wrapper records
# the ranks, term_caught reads their handlers), the job is cancelled. Slurm sends SIGTERM to the
# batch shell and every task, and SIGKILL KillWait (5 s here) later; the run ends well before.
sed -e 's/^  name: slurm-tiny$/  name: term/' \
    -e 's/^  batch_size: 64$/  batch_size: 64\n  epochs: 200/' "$TINY" >"$W/term.yaml"
grep -q "^  epochs: 200$" "$W/term.yaml" || fail "could not derive term.yaml from $TINY"
mkdir -p "$W/pids.term"
jterm="$(submit train-1node.sbatch "$W/term.yaml" RD_BIN="$(pid_wrapper "$W")" PIDS="$W/pids.term" RD_STOP_GRACE_S=3)"
TOUT="$W/slurm-rd-train-1node-$jterm.out"
for ((i = 0; ; i++)); do
    n=0
    for r in 0 1 2 3; do
        p=""
        [ -s "$W/pids.term/$r" ] && read -r p <"$W/pids.term/$r"
        [ -n "$p" ] && term_caught "$p" && n=$((n + 1))
    done
    [ "$n" -eq 4 ] && break
    if [ $((i % 200)) -eq 0 ]; then
        case "$(state_of "$jterm")" in
            PENDING* | RUNNING* | CONFIGURING* | "") ;;
            *) fail "term: job $jterm ended before its ranks had a SIGTERM handler: $(state_of "$jterm"): $(cat "$TOUT" 2>/dev/null)" ;;
        esac
        [ "$SECONDS" -lt "$DEADLINE" ] || { scancel "$jterm"; fail "term: job $jterm: no SIGTERM handler on every rank at the deadline"; }
    fi
done
scancel "$jterm" || fail "scancel $jterm"
until grep -q "^\[ps\] SIGTERM: " "$TOUT" 2>/dev/null; do
    [ "$SECONDS" -lt "$DEADLINE" ] || fail "term: job $jterm: no end of the run after scancel: $(cat "$TOUT" 2>/dev/null)"
    sleep 0.2
done
grep -q "^\[ps\] SIGTERM: every job has a checkpoint since the signal: ending the run (exit status 143); resume it with --resume " "$TOUT" ||
    fail "term: $(grep "^\[ps\]" "$TOUT")"
for j in teacher student student_raw; do
    line="$(grep "^\[$j\] checkpoint on SIGTERM: " "$TOUT")" || fail "term: $j did not checkpoint on SIGTERM: $(cat "$TOUT")"
    [ -f "${line#*SIGTERM: }/MANIFEST" ] || fail "term: $j: ${line#*SIGTERM: } is not a complete checkpoint"
done
[ ! -e "$W/runs/term/report.json" ] || fail "term: a report after scancel"
echo "a cancelled job checkpointed every job before it ended"

# --- scaling sweep ---------------------------------------------------------------------------------
cat >"$W/tiny.spec" <<EOF
# a small sweep over the tiny config
config: $TINY
nodes: 1 2
teacher_ranks: 1 2   # the teacher job
student_ranks: 1     # both student jobs
ps: 1 2
batch: 64
out: runs/sweep
timeout: 200
EOF
t0=$SECONDS
"$SRC/slurm/sweep.sh" "$W/tiny.spec" >"$W/sweep.log" 2>&1 || fail "sweep: $(cat "$W/sweep.log")"
echo "sweep of 8 points done in $((SECONDS - t0)) s"
CSV="$W/runs/sweep/sweep.csv"
[ "$(wc -l <"$CSV")" -eq 9 ] || fail "sweep.csv must have 8 rows: $(cat "$CSV")"
head -n 1 "$CSV" | grep -q "^point,jobid,state,exit_code,nodes,ranks_per_job,ps_ranks,batch_size,world_size,.*jobs.teacher.samples_per_s" ||
    fail "sweep.csv header: $(head -n 1 "$CSV")"
# Every row: completed, and world size = ps + the jobs' ranks ("t/s/s").
awk -F, 'NR > 1 { split($6, r, "/"); if ($3 != "COMPLETED" || $4 != "0:0" || $9 != $7 + r[1] + r[2] + r[3]) bad++ }
         END {exit bad > 0}' "$CSV" || fail "sweep rows: $(cat "$CSV")"
grep -q "^n2-t2-s1-p2-b64,[0-9]*,COMPLETED,0:0,2,2/1/1,2,64,6," "$CSV" ||
    fail "sweep point n2-t2-s1-p2-b64: $(cat "$CSV")"
[ "$(awk '{print $4}' "$W/runs/sweep/n2-t2-s1-p2-b64/placement.txt" | sort -u | wc -l)" -eq 2 ] ||
    fail "sweep point n2 did not span 2 nodes"
jq -e '.jobs.teacher.ranks == 2 and .jobs.student.ranks == 1' \
    "$W/runs/sweep/n2-t2-s1-p2-b64/report.json" >/dev/null || fail "sweep point ranks in report.json"
grep -q "samples/s" "$W/runs/sweep/sweep.txt" || fail "sweep table: $(cat "$W/runs/sweep/sweep.txt")"
grep -q "^plot: " "$W/sweep.log" || fail "sweep says nothing about its plot"
# Communication per sample of every run (report.json "comm"), in the CSV and the table.
head -n 1 "$CSV" | grep -q "comm.total.bytes_per_sample" || fail "sweep.csv lacks comm columns"
grep -q "total B/sample: min" "$W/runs/sweep/sweep.txt" || fail "sweep table lacks the comm spread"
[ -s "$W/runs/sweep/sweep-comm.png" ] || fail "sweep drew no comm plot: $(cat "$W/sweep.log")"
if command -v gnuplot >/dev/null; then
    [ -s "$W/runs/sweep/sweep.png" ] || fail "gnuplot is installed but the sweep drew no plot"
fi
# Gather again after Slurm forgot the jobs (MinJobAge; no accounting here): the recorded states
# stay, and without a record a run with its report.json counts as COMPLETED.
awk -F'\t' -v OFS='\t' 'NR > 1 { $2 = 999000 + NR } {print}' "$W/runs/sweep/runs.tsv" >"$W/runs.tsv.x"
mv "$W/runs.tsv.x" "$W/runs/sweep/runs.tsv"
for pass in recorded report; do
    [ "$pass" = report ] && rm "$W/runs/sweep/states.tsv"
    "$SRC/slurm/sweep.sh" --gather "$W/runs/sweep" >"$W/gather.log" 2>&1 ||
        fail "gather of forgotten jobs ($pass): $(cat "$W/gather.log")"
    awk -F, 'NR > 1 && $3 != "COMPLETED" {bad++} END {exit bad > 0}' "$CSV" ||
        fail "gather of forgotten jobs ($pass) lost their state: $(cat "$CSV")"
done
grep -q "^n2-t2-s1-p2-b64,999[0-9]*,COMPLETED,,2," "$CSV" || fail "state from report.json: $(cat "$CSV")"
# The shared dataset was prepared once, and every run read it.
[ -f "$W/runs/sweep/data/meta.yaml" ] || fail "sweep: no shared dataset"
ls -d "$W"/runs/sweep/n*/data >/dev/null 2>&1 && fail "a sweep point prepared its own dataset"

# --- a rank killed under srun -K: rank_death.sh's srun case, which needs a live cluster -----------
t0=$SECONDS
RD_DEATH_SRUN_ONLY=1 bash "$SRC/tests/scripts/rank_death.sh" "$RD" >"$TMP/death.log" 2>&1 ||
    fail "rank_death.sh (srun case): $(tail -5 "$TMP/death.log")"
echo "$(grep "^srun:" "$TMP/death.log") ($((SECONDS - t0)) s in all)"

# --- a dead daemon is noticed and `up` repairs the cluster -----------------------------------------
read -r pid _ <"$CL/pids/slurmd-n3.pid"
kill "$pid"
# Gone, or a zombie that PID 1 has not reaped yet.
while [ -d "/proc/$pid" ] && [ "$(sed 's/^.*) //; s/ .*//' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
    [ "$SECONDS" -lt "$DEADLINE" ] || fail "slurmd $pid did not stop"
    sleep 0.1
done
"$SRC/tools/slurm-local.sh" status --dir "$CL" >/dev/null 2>&1
[ $? -eq 3 ] || fail "status with a dead slurmd must exit 3"
"$SRC/tools/slurm-local.sh" up --nodes 4 --cpus 8 --dir "$CL" --port "$PORT" >"$TMP/up2.log" 2>&1 9>&- ||
    fail "up after a dead slurmd: $(cat "$TMP/up2.log")"
grep -q "restarting (5 of 6 daemons alive" "$TMP/up2.log" || fail "up did not restart: $(cat "$TMP/up2.log")"

# --- teardown, with a job still running: it is cancelled and leaves no process ------------------------
jrun="$(sbatch --parsable -n1 --output=/dev/null --wrap "sleep 291.5")" || fail "sbatch sleep"
until [ "$(state_of "$jrun")" = "RUNNING 0:0" ]; do
    [ "$SECONDS" -lt "$DEADLINE" ] || fail "sleep job never ran: $(state_of "$jrun")"
    sleep 0.2
done
"$SRC/tools/slurm-local.sh" down --dir "$CL" >"$TMP/down.log" 2>&1 || fail "down: $(cat "$TMP/down.log")"
grep -q "cancelling job(s) $jrun" "$TMP/down.log" || fail "down did not cancel the job: $(cat "$TMP/down.log")"
ps -eo args | grep -q "^sleep 291.5" && fail "down left the job's process running"
"$SRC/tools/slurm-local.sh" status --dir "$CL" >/dev/null 2>&1
[ $? -eq 3 ] || fail "status after down must exit 3"
for f in "$CL"/pids/*.pid; do
    [ -e "$f" ] && fail "down left $f"
done
echo "slurm.sh: all checks passed in $((SECONDS - T_START)) s"
