#!/usr/bin/env bash
# slurm_dry.sh — the slurm/ submitters' checks that need no cluster (RD_DRY_RUN=1 prints the
# sbatch command instead of submitting), on a host whose `sinfo` reaches no controller (a fake
# sinfo on PATH fails the way sinfo does without slurm.conf or with slurmctld down). The real
# cluster runs are tests/scripts/slurm.sh.
#  - distill-hetjob.sbatch exited 1 with no word when sinfo failed, even in a dry run.
#  - sweep.sh submitted a repeated point (nodes: 1 1, points: 2:1:1 2:1:1) several times into
#    one run folder: a repeated value is now refused, naming the spec line.
#  - --seed takes run.seed's range (uint64) in the submitters too.
#  - sweep.sh run inside a Slurm job ran each point's submitter as a batch body (SLURM_JOB_ID).
#  - a submitter run inside an interactive allocation (salloc) took itself for the batch body (1d).
#  - sweep.sh given student (teacher) ranks for a config without a student (teacher) job
#    submitted the same run once per value, under names of different sizes.
#  - a job with more tasks on a node than the partition's nodes have CPUs was refused by sbatch
#    with Slurm's own message, naming neither the counts nor the setting to change (2c).
#  - a batch body in an allocation smaller than the config's layout said the counts but not the
#    keys that set them, nor where the count came from (6).
#  - a CSV source's missing log or side table was accepted at submission (found by prepare once
#    the job had its nodes), and a dataset prepared under --out DIR was not taken as prepared.
#   slurm_dry.sh PATH/TO/recdistill
set -u
RD="${1:?usage: slurm_dry.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
command -v python3 >/dev/null || { echo "python3 missing: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_slurm_dry_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
mkdir -p "$TMP/bin"
cat >"$TMP/bin/sinfo" <<'EOF'
#!/bin/sh
echo "sinfo: error: Could not establish a configuration source" >&2
exit 1
EOF
chmod +x "$TMP/bin/sinfo"
export PATH="$TMP/bin:$PATH" RD_BIN="$RD" RD_DRY_RUN=1
TINY="$SRC/tests/data/slurm-tiny.yaml"
cd "$TMP" || exit 1

# 1. distill-hetjob without a controller: a note on stderr, the sbatch command, exit 0.
"$SRC/slurm/distill-hetjob.sbatch" "$TINY" >"$TMP/het.out" 2>"$TMP/het.err" ||
    bad "distill-hetjob dry run without a controller exited $?: $(cat "$TMP/het.out" "$TMP/het.err")"
grep -q "sinfo cannot reach a Slurm controller (sinfo: error: Could not establish a configuration source): not checking the node count" \
    "$TMP/het.err" || bad "distill-hetjob: no note about sinfo: $(cat "$TMP/het.err")"
grep -q "sbatch .*distill-hetjob.sbatch" "$TMP/het.out" || bad "distill-hetjob printed no command: $(cat "$TMP/het.out")"

# 1b. RD_BIN naming a folder: the binary is named, not the config ("bad config: ... Is a
# directory" before).
RD_BIN="$TMP" "$SRC/slurm/train-1node.sbatch" "$TINY" >"$TMP/dir.out" 2>"$TMP/dir.err" &&
    bad "RD_BIN=<a folder> was accepted"
grep -q "recdistill binary '$TMP' not found or not executable" "$TMP/dir.err" ||
    bad "RD_BIN=<a folder>: $(cat "$TMP/dir.err")"

# 1c. --resume of a folder that does not exist: refused at submission (it failed only once the job
# had its nodes).
"$SRC/slurm/train-1node.sbatch" "$TINY" --resume "$TMP/nowhere" >"$TMP/res.out" 2>"$TMP/res.err"
[ $? -eq 2 ] || bad "--resume of a missing folder: exit not 2: $(cat "$TMP/res.err")"
grep -q "\-\-resume: '$TMP/nowhere' is not a folder" "$TMP/res.err" ||
    bad "--resume of a missing folder: $(cat "$TMP/res.err")"

# 1d. Inside an interactive allocation (salloc, srun --pty: SLURM_JOB_ID set, but not the
# ENVIRONMENT=BATCH of a batch script) a submitter submits, from any folder, and does not pass the
# allocation's variables on to the new job. It took itself for the batch body: "no common.sh in
# '<cwd>/slurm'" from another folder, else a run inside the allocation or "the allocation has 2
# task(s) ... submit with 'slurm/train-1node.sbatch CONFIG'".
mkdir -p "$TMP/bin3" "$TMP/elsewhere"
cat >"$TMP/bin3/sbatch" <<'EOF'
#!/bin/sh
env >"$FAKE_SBATCH_ENV"
echo 4321
EOF
chmod +x "$TMP/bin3/sbatch"
for script in train-1node train-multinode distill-hetjob; do
    (cd "$TMP/elsewhere" && env -u RD_DRY_RUN -u ENVIRONMENT PATH="$TMP/bin3:$PATH" \
        FAKE_SBATCH_ENV="$TMP/salloc.env" SLURM_JOB_ID=555 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=4 \
        SLURM_OVERCOMMIT=1 SLURM_CONF=/nowhere/slurm.conf \
        "$SRC/slurm/$script.sbatch" "$TINY" --out "$TMP/salloc-run") >"$TMP/salloc.out" 2>"$TMP/salloc.err" ||
        bad "$script inside an allocation: exit $?: $(cat "$TMP/salloc.err")"
    grep -qx "submitted 4321 $TMP/salloc-run" "$TMP/salloc.out" ||
        bad "$script inside an allocation did not submit: $(cat "$TMP/salloc.out" "$TMP/salloc.err")"
    ! grep -E "^SLURM_(JOB_ID|NTASKS|CPUS_PER_TASK|OVERCOMMIT)=" "$TMP/salloc.env" ||
        bad "$script passed the allocation's variables on to the new job"
    grep -qx "SLURM_CONF=/nowhere/slurm.conf" "$TMP/salloc.env" || bad "$script dropped SLURM_CONF"
    [ ! -e "$TMP/salloc-run" ] || bad "$script inside an allocation made the run folder"
    rm -f "$TMP/salloc.env"
done

# 2. sweep.sh: repeated values are refused before anything is derived or submitted.
spec() { # NAME LINES...
    local name="$1"
    shift
    printf 'config: %s\n' "$TINY" >"$TMP/$name.spec"
    printf '%s\n' "$@" "out: runs/$name" >>"$TMP/$name.spec"
}
refused() { # NAME PATTERN
    "$SRC/slurm/sweep.sh" "$TMP/$1.spec" >"$TMP/$1.out" 2>"$TMP/$1.err"
    local rc=$?
    [ "$rc" = 1 ] || bad "sweep $1: exit $rc, expected 1: $(cat "$TMP/$1.out" "$TMP/$1.err")"
    grep -qF -- "$2" "$TMP/$1.err" || bad "sweep $1: stderr lacks '$2': $(cat "$TMP/$1.err")"
    grep -q "sbatch" "$TMP/$1.out" && bad "sweep $1 printed a submission"
    [ ! -e "$TMP/runs/$1/configs" ] || bad "sweep $1 derived configs before refusing"
}
spec dup_points "nodes: 1 1" "points: 2:1:1 2:1:1"
refused dup_points "dup_points.spec:2: nodes: '1' is given twice"
spec dup_points2 "nodes: 1" "points: 2:1:1 1:1:1 2:1:1"
refused dup_points2 "dup_points2.spec:3: points: '2:1:1' is given twice"
spec dup_batch "nodes: 1" "batch: 64 32 64"
refused dup_batch "batch: '64' is given twice"
spec dup_ranks "nodes: 1" "teacher_ranks: 1 2" "student_ranks: 2 2"
refused dup_ranks "student_ranks: '2' is given twice"
spec dup_ps "ps: 1 1"
refused dup_ps "ps: '1' is given twice"
# Ranks of a role the config has no job of: each value ran the same point again under another
# name (a teacher-only config swept with student_ranks: 1 2 submitted one run twice).
grep -v "role: student" "$TINY" >"$TMP/teacher-only.yaml"
role_spec() { # NAME LINE
    printf 'config: %s\nnodes: 1\n%s\nout: runs/%s\n' "$TMP/teacher-only.yaml" "$2" "$1" >"$TMP/$1.spec"
}
role_spec no_student "student_ranks: 1 2"
refused no_student "no_student.spec:3: student_ranks: $TMP/teacher-only.yaml has no student job (its jobs: teacher (teacher))"
role_spec no_student_pt "points: 2:-:1 1:2:1"
refused no_student_pt "no_student_pt.spec:3: points: '1:2:1' gives student ranks, but $TMP/teacher-only.yaml has no student job"
role_spec teacher_pt "points: 2:-:1 1:-:2"
"$SRC/slurm/sweep.sh" "$TMP/teacher_pt.spec" >"$TMP/teacher_pt.out" 2>"$TMP/teacher_pt.err" ||
    bad "sweep of a teacher-only config with '-' student ranks: $(cat "$TMP/teacher_pt.err")"
[ "$(grep -c "sbatch .*train-multinode.sbatch" "$TMP/teacher_pt.out")" = 2 ] ||
    bad "sweep teacher_pt: $(cat "$TMP/teacher_pt.out")"
# Distinct values: one submission per point, each into its own folder.
spec ok "nodes: 1 2" "points: 2:1:1 1:1:1"
"$SRC/slurm/sweep.sh" "$TMP/ok.spec" >"$TMP/ok.out" 2>"$TMP/ok.err" || bad "sweep ok: $(cat "$TMP/ok.err")"
[ "$(grep -c "sbatch .*train-multinode.sbatch" "$TMP/ok.out")" = 4 ] || bad "sweep ok: $(cat "$TMP/ok.out")"
[ "$(grep -o "configs/[^ ]*\.yaml\$" "$TMP/ok.out" | sort -u | wc -l)" = 4 ] || bad "sweep ok: points share a config"
# Inside a Slurm job (a batch job that drives the sweep): the points are still submitted, not run
# in the sweep's own allocation (each was refused there: "the allocation has 1 task(s)").
spec injob "nodes: 1 2" "points: 2:1:1 1:1:1"
ENVIRONMENT=BATCH SLURM_JOB_ID=4242 SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1 "$SRC/slurm/sweep.sh" "$TMP/injob.spec" \
    >"$TMP/injob.out" 2>"$TMP/injob.err" || bad "sweep inside a job: $(cat "$TMP/injob.err")"
[ "$(grep -c "sbatch .*train-multinode.sbatch" "$TMP/injob.out")" = 4 ] ||
    bad "sweep inside a job: $(cat "$TMP/injob.out" "$TMP/injob.err")"
# A checkpoint folder named outside out_dir (spaces and all) is one per point: points run at once,
# and two launches on one folder removed each other's checkpoints.
sed "s|^ps:|ps:\n  checkpoint_dir: \"$TMP/scratch ck\"|" "$TINY" >"$TMP/ck.yaml"
printf 'config: %s\nps: 1 2\nout: runs/ck\n' "$TMP/ck.yaml" >"$TMP/ck.spec"
(cd "$TMP" && "$SRC/slurm/sweep.sh" "$TMP/ck.spec" >"$TMP/ck.out" 2>"$TMP/ck.err") || bad "sweep ck: $(cat "$TMP/ck.err")"
for p in -p1- -p2-; do
    c=$(ls "$TMP"/runs/ck/configs/*"$p"*.yaml 2>/dev/null | head -1)
    [ -n "$c" ] && [ "$("$RD" config "$c" | sed -n 's/^  checkpoint_dir: //p')" = "\"$TMP/scratch ck/$(basename "$c" .yaml)\"" ] ||
        bad "sweep ck: point $p: $(grep checkpoint_dir "$c" 2>&1) ($(ls "$TMP"/runs/ck/configs))"
done

# A replay's target log is an input: it stays as named (a per-point subfolder was never written).
sed -e 's/    - {name: teacher, role: teacher, model: teacher}//' \
    -e 's/{name: student, role: student, model: student, distill: true}/{name: student, role: student, model: student, distill: true, teacher: teacher}/' \
    "$TINY" >"$TMP/rp.yaml"
printf 'distill:\n  replay: true\n  target_log: "%s/shared log"\n' "$TMP" >>"$TMP/rp.yaml"
printf 'config: %s\nps: 1\nout: runs/rp\n' "$TMP/rp.yaml" >"$TMP/rp.spec"
(cd "$TMP" && "$SRC/slurm/sweep.sh" "$TMP/rp.spec" >"$TMP/rp.out" 2>"$TMP/rp.err") || bad "sweep rp: $(cat "$TMP/rp.err")"
c=$(ls "$TMP"/runs/rp/configs/*-p1-*.yaml 2>/dev/null | head -1)
[ -n "$c" ] && [ "$("$RD" config "$c" | sed -n 's/^  target_log: //p')" = "\"$TMP/shared log\"" ] ||
    bad "sweep rp: the replay's target log moved: $(grep target_log "$c" 2>&1)"

# 2b. A partition with fewer nodes than a job needs: refused at submission (Slurm accepts it and
# leaves it PENDING for ever), for train-multinode, student-replay's sizing and a sweep, before
# anything is submitted. A fake sinfo answers "part*" with 2 nodes.
mkdir -p "$TMP/bin2"
cat >"$TMP/bin2/sinfo" <<'EOF'
#!/bin/sh
case "$*" in *%P*) echo "part*" ;; *%D*) echo 2 ;; esac
EOF
chmod +x "$TMP/bin2/sinfo"
PATH="$TMP/bin2:$PATH" RD_NODES=3 "$SRC/slurm/train-multinode.sbatch" "$TINY" >"$TMP/n.out" 2>"$TMP/n.err"
[ $? = 1 ] && grep -q "the run needs 3 nodes, partition part has 2" "$TMP/n.err" && ! grep -q sbatch "$TMP/n.out" ||
    bad "train-multinode RD_NODES=3 on 2 nodes: $(cat "$TMP/n.out" "$TMP/n.err")"
PATH="$TMP/bin2:$PATH" RD_NODES=2 "$SRC/slurm/train-multinode.sbatch" "$TINY" >"$TMP/n.out" 2>"$TMP/n.err" ||
    bad "train-multinode RD_NODES=2 on 2 nodes: $(cat "$TMP/n.err")"
# More nodes than ranks: the job gets one node a rank, and says so (it did so silently: a scaling
# run asked for 5 nodes and got 4 without a word).
RD_NODES=5 "$SRC/slurm/train-multinode.sbatch" "$TINY" >"$TMP/n.out" 2>"$TMP/n.err" &&
    grep -q -- "--nodes=4 --ntasks=4 " "$TMP/n.out" &&
    grep -qF "RD_NODES=5 is more than the run's 4 ranks: the job gets 4 nodes, one rank each" "$TMP/n.err" ||
    bad "train-multinode RD_NODES=5 for 4 ranks: $(cat "$TMP/n.out" "$TMP/n.err")"
printf 'config: %s\nnodes: 1 3\nout: runs/n3\n' "$TINY" >"$TMP/n3.spec"
PATH="$TMP/bin2:$PATH" "$SRC/slurm/sweep.sh" "$TMP/n3.spec" >"$TMP/n3.out" 2>"$TMP/n3.err"
[ $? = 1 ] && grep -q "the sweep has points on 3 nodes, partition part has 2" "$TMP/n3.err" &&
    ! grep -q "sbatch" "$TMP/n3.out" || bad "sweep nodes: 1 3 on 2 nodes: $(cat "$TMP/n3.out" "$TMP/n3.err")"
# 2c. More tasks on a node than its CPUs: sbatch refused the job with Slurm's "Requested node
# configuration is not available" alone, naming neither the counts nor what to change. Each
# submitter now says how many tasks it puts on a node, the partition's CPUs a node and the
# setting that fits. A fake sinfo answers "part*", 8 nodes of 4 CPUs.
mkdir -p "$TMP/bin3"
cat >"$TMP/bin3/sinfo" <<'EOF2'
#!/bin/sh
case "$*" in *%P*) echo "part*" ;; *%D*) echo 8 ;; *%c*) printf '4\n4\n' ;; esac
EOF2
chmod +x "$TMP/bin3/sinfo"
cpus() { # NAME EXPECTED-STATUS PATTERN SCRIPT ARGS...: a dry submission against bin3's sinfo
    local name="$1" want="$2" pat="$3" rc
    shift 3
    PATH="$TMP/bin3:$PATH" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    rc=$?
    [ "$rc" = "$want" ] || bad "cpus $name: exit $rc, expected $want: $(cat "$TMP/$name.out" "$TMP/$name.err")"
    [ -z "$pat" ] || grep -qF -- "$pat" "$TMP/$name.err" || bad "cpus $name: stderr lacks '$pat': $(cat "$TMP/$name.err")"
    if [ "$want" = 0 ]; then
        grep -q "sbatch " "$TMP/$name.out" || bad "cpus $name: no sbatch command: $(cat "$TMP/$name.out")"
    else
        grep -q "sbatch " "$TMP/$name.out" && bad "cpus $name: submitted: $(cat "$TMP/$name.out")"
    fi
}
cpus one_fits 0 "" "$SRC/slurm/train-1node.sbatch" "$TINY"
cpus one_5 1 "the 1-node script runs all 5 ranks (PS + job ranks) on one node: 5 task(s) on a node, but the nodes of partition part have at most 4 CPUs: use slurm/train-multinode.sbatch (RD_TASKS_PER_NODE=4)" \
    "$SRC/slurm/train-1node.sbatch" "$TINY" --set cluster.ps_ranks=2
RD_SBATCH_ARGS=--overcommit cpus one_over 0 "" "$SRC/slurm/train-1node.sbatch" "$TINY" --set cluster.ps_ranks=2
RD_SBATCH_ARGS=--cpus-per-task=2 cpus one_cpt 1 "on one node (--cpus-per-task=2 each): 4 task(s) on a node, but the nodes of partition part have at most 4 CPUs: use slurm/train-multinode.sbatch (RD_TASKS_PER_NODE=2)" \
    "$SRC/slurm/train-1node.sbatch" "$TINY"
cpus multi_8 0 "" "$SRC/slurm/train-multinode.sbatch" "$TINY" --set cluster.jobs.teacher.ranks=5
cpus multi_9 1 "the run deals its 9 ranks over 2 node(s): 5 task(s) on a node, but the nodes of partition part have at most 4 CPUs: set RD_TASKS_PER_NODE=4" \
    "$SRC/slurm/train-multinode.sbatch" "$TINY" --set cluster.jobs.teacher.ranks=6
cpus het_6 1 "the het job's component 2 (student, 6 rank(s) on 1 node(s)) (RD_TASKS_PER_NODE=8): 6 task(s) on a node, but the nodes of partition part have at most 4 CPUs: set RD_TASKS_PER_NODE=4" \
    "$SRC/slurm/distill-hetjob.sbatch" "$TINY" --set cluster.jobs.student.ranks=6
mkdir -p "$TMP/rlog"
sed -e 's/    - {name: teacher, role: teacher, model: teacher}//' \
    -e 's/{name: student, role: student, model: student, distill: true}/{name: student, role: student, model: student, distill: true, teacher: teacher}/' \
    "$TINY" >"$TMP/rc.yaml"
printf 'distill:\n  replay: true\n  target_log: %s/rlog\n' "$TMP" >>"$TMP/rc.yaml"
cpus replay_3 0 "" "$SRC/slurm/student-replay.sbatch" "$TMP/rc.yaml"
cpus replay_6 1 "the replay deals its 6 ranks over 1 node(s) (RD_TASKS_PER_NODE=8): 6 task(s) on a node, but the nodes of partition part have at most 4 CPUs: set RD_TASKS_PER_NODE=4 (or a larger RD_NODES: at most 4 ranks a node)" \
    "$SRC/slurm/student-replay.sbatch" "$TMP/rc.yaml" --set cluster.jobs.student.ranks=4
RD_TASKS_PER_NODE=4 cpus replay_6b 0 "" "$SRC/slurm/student-replay.sbatch" "$TMP/rc.yaml" --set cluster.jobs.student.ranks=4
# RD_NODES sizes the replay as it does train-multinode (it was ignored: 1 node, refused above).
RD_NODES=2 cpus replay_6n 0 "" "$SRC/slurm/student-replay.sbatch" "$TMP/rc.yaml" --set cluster.jobs.student.ranks=4
grep -q -- "--nodes=2 --ntasks=6 --ntasks-per-node=3" "$TMP/replay_6n.out" ||
    bad "replay with RD_NODES=2: $(cat "$TMP/replay_6n.out")"
RD_NODES=0 cpus replay_n0 1 "RD_NODES must be a positive integer" "$SRC/slurm/student-replay.sbatch" "$TMP/rc.yaml"
# A relative --resume is the job's: under RD_SBATCH_ARGS's --chdir, not the submitting folder.
mkdir -p "$TMP/J/runs/x/ckpt" "$TMP/runs/y/ckpt"
RD_SBATCH_ARGS="--chdir=$TMP/J" "$SRC/slurm/train-1node.sbatch" "$TINY" --resume runs/x/ckpt >/dev/null 2>"$TMP/r.err" ||
    bad "--resume under --chdir: $(cat "$TMP/r.err")"
RD_SBATCH_ARGS="--chdir=$TMP/J" "$SRC/slurm/train-1node.sbatch" "$TINY" --resume runs/y/ckpt >/dev/null 2>"$TMP/r.err"
[ $? = 2 ] && grep -q "'runs/y/ckpt' is not a folder in the job's working directory $TMP/J" "$TMP/r.err" ||
    bad "--resume of the submitting folder under --chdir: $(cat "$TMP/r.err")"

# 3. --seed: the whole uint64 range of run.seed, no more.
"$SRC/slurm/train-1node.sbatch" "$TINY" --seed 18446744073709551615 >"$TMP/s.out" 2>"$TMP/s.err" ||
    bad "train-1node --seed 2^64-1: $(cat "$TMP/s.err")"
"$SRC/slurm/train-1node.sbatch" "$TINY" --seed 18446744073709551616 >/dev/null 2>"$TMP/s.err"
[ $? = 2 ] && grep -q "is not a non-negative integer (0..18446744073709551615)" "$TMP/s.err" ||
    bad "train-1node --seed 2^64: $(cat "$TMP/s.err")"
# An array task's seed is base + task id modulo 2^64, printed unsigned (bash's signed arithmetic
# made a base >= 2^63 negative).
(
    . "$SRC/slurm/common.sh"
    rd_is_seed 9223372036854775808 && rd_is_seed 0 && ! rd_is_seed 18446744073709551616 &&
        ! rd_is_seed -1 || exit 1
    seed=9223372036854775808
    [ "$(printf '%u' "$((seed + 5))")" = 9223372036854775813 ]
) || bad "rd_is_seed / unsigned seed sum"
grep -q "printf '%u'" "$SRC/slurm/common.sh" || bad "rd_train does not print the array seed unsigned"

# 4. An array job whose checkpoint folder or live target log lies outside run.out_dir: the tasks
# ran at once into that one folder, and all but one were refused by its writer lock once they had
# their nodes. Refused at submission, and by a task submitted by hand before it makes anything; a
# replay's target log (an input) and the default folders are fine.
sed "s|^ps:\$|ps:\n  checkpoint_dir: $TMP/ck_ext|" "$TINY" >"$TMP/ack.yaml"
sed "s|^ps:\$|distill:\n  target_log: $TMP/log_ext\nps:|" "$TINY" >"$TMP/alog.yaml"
for c in ack:ps.checkpoint_dir:ck_ext alog:distill.target_log:log_ext; do
    IFS=: read -r name key dir <<<"$c"
    RD_SBATCH_ARGS="--array=1-2" "$SRC/slurm/train-1node.sbatch" "$TMP/$name.yaml" >"$TMP/a.out" 2>"$TMP/a.err"
    [ $? = 1 ] && ! grep -q sbatch "$TMP/a.out" &&
        grep -q "array job's tasks run at once.*$key '$TMP/$dir' lies outside run.out_dir 'runs/slurm-tiny'" "$TMP/a.err" ||
        bad "array with $key outside the run folder: $(cat "$TMP/a.out" "$TMP/a.err")"
    (cd "$TMP" && env -u RD_DRY_RUN ENVIRONMENT=BATCH SLURM_JOB_ID=9 SLURM_ARRAY_TASK_ID=1 SLURM_NTASKS=4 \
        SLURM_JOB_CPUS_PER_NODE=4 RD_SLURM_DIR="$SRC/slurm" RD_CONFIG="$TMP/$name.yaml" \
        bash "$SRC/slurm/train-1node.sbatch" "$TMP/$name.yaml" >"$TMP/a.out" 2>"$TMP/a.err")
    [ $? = 1 ] && grep -q "$key '$TMP/$dir' lies outside run.out_dir" "$TMP/a.err" &&
        [ ! -e "$TMP/runs/slurm-tiny/task-1" ] ||
        bad "array task by hand with $key outside the run folder: $(cat "$TMP/a.out" "$TMP/a.err")"
done
RD_SBATCH_ARGS="--array=1-2" "$SRC/slurm/train-1node.sbatch" "$TINY" >/dev/null 2>"$TMP/a.err" ||
    bad "array with the default folders: $(cat "$TMP/a.err")"
RD_SBATCH_ARGS="--array=1-2" "$SRC/slurm/student-replay.sbatch" "$TMP/rp.yaml" >/dev/null 2>"$TMP/a.err" ||
    true # the replay's log does not exist here: only the array check must not be what refuses it
grep -q "array job's tasks run at once" "$TMP/a.err" && bad "array replay refused for its input log: $(cat "$TMP/a.err")"

# 5. cluster.blas_threads B > 1: every task asks for B CPUs (--cpus-per-task=B, every component of
# a het job), unless RD_SBATCH_ARGS gives its own; the steps get them (SRUN_CPUS_PER_TASK: srun does
# not take the job's since Slurm 22.05). Each task had one CPU, and B OpenBLAS threads on it.
sed 's/^cluster:$/cluster:\n  blas_threads: 4/' "$TINY" >"$TMP/blas4.yaml"
for s in train-1node train-multinode distill-hetjob; do
    RD_TASKS_PER_NODE=2 "$SRC/slurm/$s.sbatch" "$TMP/blas4.yaml" >"$TMP/b.out" 2>"$TMP/b.err" ||
        bad "$s with blas_threads 4: exit $?: $(cat "$TMP/b.err")"
    want=1
    [ "$s" != distill-hetjob ] || want=4 # one per component: PS, teacher, student, student_raw
    [ "$(grep -o -- "--cpus-per-task=4 " "$TMP/b.out" | wc -l)" = "$want" ] ||
        bad "$s with blas_threads 4: not $want --cpus-per-task=4: $(cat "$TMP/b.out")"
    grep -q "cluster.blas_threads is 4: each rank gets 4 CPUs" "$TMP/b.err" || bad "$s: not said: $(cat "$TMP/b.err")"
done
RD_SBATCH_ARGS="-c 2" "$SRC/slurm/train-multinode.sbatch" "$TMP/blas4.yaml" >"$TMP/b.out" 2>&1 || bad "-c 2: $(cat "$TMP/b.out")"
grep -q -- "--cpus-per-task" "$TMP/b.out" && bad "-c 2 of RD_SBATCH_ARGS overridden: $(cat "$TMP/b.out")"
"$SRC/slurm/train-multinode.sbatch" "$TINY" >"$TMP/b.out" 2>&1 || bad "blas_threads 1: $(cat "$TMP/b.out")"
grep -q -- "--cpus-per-task" "$TMP/b.out" && bad "blas_threads 1 asked for CPUs: $(cat "$TMP/b.out")"
# ... nor over a --cpus-per-task of the het script's COMPONENT_ARGS (its place for het options).
mkdir -p "$TMP/hs"
cp "$SRC/slurm/common.sh" "$TMP/hs/"
sed 's/^COMPONENT_ARGS=(--time=04:00:00)/COMPONENT_ARGS=(--time=04:00:00 --cpus-per-task=2)/' \
    "$SRC/slurm/distill-hetjob.sbatch" >"$TMP/hs/distill-hetjob.sbatch"
RD_TASKS_PER_NODE=2 bash "$TMP/hs/distill-hetjob.sbatch" "$TMP/blas4.yaml" >"$TMP/b.out" 2>&1 ||
    bad "het with COMPONENT_ARGS -c: $(cat "$TMP/b.out")"
[ "$(grep -o -- "--cpus-per-task=2 " "$TMP/b.out" | wc -l)" = 4 ] && ! grep -q -- "--cpus-per-task=4" "$TMP/b.out" ||
    bad "het with COMPONENT_ARGS --cpus-per-task=2: $(cat "$TMP/b.out")"
mkdir -p "$TMP/fsrun"
cat >"$TMP/fsrun/srun" <<'EOF'
#!/usr/bin/env bash
case " $* " in
    *" --mpi=pmi2 "*) echo "${SRUN_CPUS_PER_TASK:-unset}" >"$FSRUN_LOG"; exit 1 ;;
esac
for i in 0 1 2 3; do echo "$i n1"; done
EOF
chmod +x "$TMP/fsrun/srun"
(cd "$TMP" && env -u RD_DRY_RUN PATH="$TMP/fsrun:$PATH" FSRUN_LOG="$TMP/fsrun.log" ENVIRONMENT=BATCH \
    SLURM_JOB_ID=9 SLURM_NTASKS=4 SLURM_JOB_CPUS_PER_NODE=16 SLURM_CPUS_PER_TASK=4 \
    RD_SLURM_DIR="$SRC/slurm" RD_CONFIG="$TMP/blas4.yaml" \
    bash "$SRC/slurm/train-1node.sbatch" "$TMP/blas4.yaml" >"$TMP/b.out" 2>&1)
[ "$(cat "$TMP/fsrun.log" 2>/dev/null)" = 4 ] ||
    bad "the training step's SRUN_CPUS_PER_TASK: '$(cat "$TMP/fsrun.log" 2>/dev/null)': $(cat "$TMP/b.out")"

# 6. A batch body whose allocation is smaller than the config's layout (a job sized by hand):
# exit 1 before any step, naming the tasks it has, the ranks it needs and the keys that set them
# ("the allocation has 2 task(s) but the config needs 4 (PS ranks + job ranks)" named none). A fake
# srun records any step. The teacher of slurm-tiny gets 2 ranks here: 5 in all.
mkdir -p "$TMP/nosrun"
cat >"$TMP/nosrun/srun" <<'EOF'
#!/bin/sh
echo "srun $*" >>"$NOSRUN_LOG"
exit 1
EOF
chmod +x "$TMP/nosrun/srun"
sed 's/{name: teacher, role: teacher, model: teacher}/{name: teacher, role: teacher, model: teacher, ranks: 2}/' \
    "$TINY" >"$TMP/five.yaml"
want="the allocation has 2 task(s) (SLURM_NTASKS=2) but the config needs 5, one per rank: cluster.ps_ranks 1 + cluster.jobs\[0\].ranks 2 (teacher) + cluster.jobs\[1\].ranks 1 (student) + cluster.jobs\[2\].ranks 1 (student_raw)"
for s in train-1node train-multinode; do
    for ntasks in 2 ""; do
        (cd "$TMP" && env -u RD_DRY_RUN PATH="$TMP/nosrun:$PATH" NOSRUN_LOG="$TMP/nosrun.log" ENVIRONMENT=BATCH \
            SLURM_JOB_ID=9 ${ntasks:+SLURM_NTASKS=$ntasks} SLURM_JOB_NUM_NODES=1 SLURM_JOB_CPUS_PER_NODE=2 \
            RD_SLURM_DIR="$SRC/slurm" RD_CONFIG="$TMP/five.yaml" \
            bash "$SRC/slurm/$s.sbatch" "$TMP/five.yaml" >"$TMP/small.out" 2>"$TMP/small.err")
        rc=$?
        [ $rc = 1 ] || bad "$s in an allocation of '$ntasks' tasks for 5 ranks: exit $rc, expected 1: $(cat "$TMP/small.err")"
        if [ -n "$ntasks" ]; then
            grep -q "$want" "$TMP/small.err" || bad "$s, 2 tasks for 5 ranks: $(cat "$TMP/small.err")"
        else
            grep -q "has no task count (SLURM_NTASKS='': submitted without --ntasks?) but the config needs 5" "$TMP/small.err" ||
                bad "$s without SLURM_NTASKS: $(cat "$TMP/small.err")"
        fi
        grep -q "sbatch --ntasks=5" "$TMP/small.err" || bad "$s: the fix not named: $(cat "$TMP/small.err")"
        [ ! -e "$TMP/nosrun.log" ] || bad "$s ran a step in too small an allocation: $(cat "$TMP/nosrun.log")"
        [ ! -e "$TMP/runs/slurm-tiny" ] || bad "$s made its run folder in too small an allocation"
    done
done
# The het job: a component with fewer tasks than its job's ranks names that job's key.
(cd "$TMP" && env -u RD_DRY_RUN PATH="$TMP/nosrun:$PATH" NOSRUN_LOG="$TMP/nosrun.log" ENVIRONMENT=BATCH \
    SLURM_JOB_ID=9 SLURM_HET_SIZE=4 SLURM_NTASKS_HET_GROUP_0=1 SLURM_NTASKS_HET_GROUP_1=1 \
    SLURM_NTASKS_HET_GROUP_2=1 SLURM_NTASKS_HET_GROUP_3=1 RD_SLURM_DIR="$SRC/slurm" RD_CONFIG="$TMP/five.yaml" \
    bash "$SRC/slurm/distill-hetjob.sbatch" "$TMP/five.yaml" >"$TMP/small.out" 2>"$TMP/small.err")
rc=$?
[ $rc = 1 ] || bad "het job with a small component: exit $rc, expected 1: $(cat "$TMP/small.err")"
grep -q "het component 1 (teacher) has 1 task(s) (SLURM_NTASKS_HET_GROUP_1) but the config needs 2 (cluster.jobs\[0\].ranks 2)" \
    "$TMP/small.err" || bad "het job with a small component: $(cat "$TMP/small.err")"
[ ! -e "$TMP/nosrun.log" ] || bad "the het job ran a step: $(cat "$TMP/nosrun.log")"

# A CSV source's log and side tables are checked at submission as data.input is: a misspelt log
# name was accepted, and found only once the job had its nodes, by prepare. A dataset prepared
# under --out DIR (data.dir derived from run.out_dir) is enough, as it is for train.
mkdir -p "$TMP/csvin/parts"
printf 'ts,u,i,y\n1,a,x,1\n2,b,y,0\n' >"$TMP/csvin/parts/p-1.csv"
printf 'u,age\na,3\nb,4\n' >"$TMP/csvin/users.csv"
csv_cfg() { # $1 log path, $2 side table path
    sed -e 's|^  source: synthetic$|  source: csv\n  input: csvin\n  schema:\n    path: "'"$1"'"\n    user_column: u\n    item_column: i\n    time_column: ts\n    label: "y >= 1"\n    side: [{name: users, path: "'"$2"'", header: true, key_column: u, join_column: u}]|' \
        -e '/^  synthetic:/d' "$TINY" >"$TMP/csv.yaml"
}
csv_cfg "parts/p-1.csv" users.csv
"$SRC/slurm/train-1node.sbatch" "$TMP/csv.yaml" >/dev/null 2>"$TMP/csv.err" || bad "csv: a present log refused: $(cat "$TMP/csv.err")"
csv_cfg "parts/p-*.csv" users.csv
"$SRC/slurm/train-1node.sbatch" "$TMP/csv.yaml" >/dev/null 2>"$TMP/csv.err" || bad "csv: a matching pattern refused: $(cat "$TMP/csv.err")"
csv_cfg "parts/p1.csv" users.csv
"$SRC/slurm/train-1node.sbatch" "$TMP/csv.yaml" >/dev/null 2>"$TMP/csv.err" && bad "csv: a missing log was accepted"
grep -q "data.schema.path: no file '$TMP/csvin/parts/p1.csv' (data.input 'csvin' from the job's working directory $TMP), and data.dir 'runs/slurm-tiny/data' is not prepared there" "$TMP/csv.err" ||
    bad "csv: missing log message: $(cat "$TMP/csv.err")"
csv_cfg "parts/q-*.csv" users.csv
"$SRC/slurm/train-1node.sbatch" "$TMP/csv.yaml" >/dev/null 2>"$TMP/csv.err" && bad "csv: a pattern matching nothing was accepted"
grep -q "data.schema.path 'parts/q-\*.csv' matches no file in data.input 'csvin'" "$TMP/csv.err" ||
    bad "csv: empty pattern message: $(cat "$TMP/csv.err")"
csv_cfg "parts/p-1.csv" user.csv
"$SRC/slurm/train-1node.sbatch" "$TMP/csv.yaml" >/dev/null 2>"$TMP/csv.err" && bad "csv: a missing side table was accepted"
grep -q "data.schema.side\[0\].path: no file '$TMP/csvin/user.csv'" "$TMP/csv.err" ||
    bad "csv: missing side table message: $(cat "$TMP/csv.err")"
mkdir -p "$TMP/out csv/data" && touch "$TMP/out csv/data/meta.yaml"
mv "$TMP/csvin" "$TMP/csvin.gone"
"$SRC/slurm/train-1node.sbatch" "$TMP/csv.yaml" --out "out csv" >/dev/null 2>"$TMP/csv.err" ||
    bad "csv: a dataset prepared under --out refused: $(cat "$TMP/csv.err")"
"$SRC/slurm/train-1node.sbatch" "$TMP/csv.yaml" >/dev/null 2>"$TMP/csv.err" &&
    bad "csv: a missing data.input accepted without --out's dataset"

[ "$fail" = 0 ] && echo "slurm_dry: ok"
exit "$fail"
