#!/usr/bin/env bash
# slurm_paths.sh — the slurm/ scripts with paths a shared cluster's users have: spaces, quotes,
# '$', a backslash and non-ASCII letters (é, 中, an emoji) in the working directory, the config's
# name, data.input, the CSV log and side table, and run.out_dir. No cluster is needed: the
# submitters run with RD_DRY_RUN=1 and a `sinfo` that reaches no controller, and the batch body's
# checkpoint root is asked of slurm/common.sh directly.
#  - common.sh read config values from `recdistill config`, which writes every non-ASCII character
#    as a \u escape, with only the quotes removed: a data.input "ml é" that exists was refused at
#    submission ("data.input 'ml \u00e9' not found"), a CSV log "log 中.csv" too, an array job
#    whose run folder has an "é" was refused (its checkpoints taken for lying outside
#    run.out_dir), and the checkpoint root of a requeued or time-limited job was a folder named
#    ".../\u00e9/..." (none there: the restarted job started again, removing its checkpoints).
#  - RD_SBATCH_ARGS="--chdir=DIR WITH BLANK" submitted the job to run in "DIR" (split at the
#    blank): refused, naming the stray word. Its words were globbed too: "--comment=a*" went to
#    sbatch as the names of the matching files of the current folder.
#  - the dry run's command, read back by the shell, gives the config and working directory as
#    they are.
#  - end to end, a batch body restarted by Slurm in a run folder with an "é" resumes from its
#    checkpoints (a fake srun runs the step through mpiexec).
#   slurm_paths.sh PATH/TO/recdistill
set -u
RD="${1:?usage: slurm_paths.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
TMP="$(mktemp -d /tmp/rd_test_slurm_paths_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
mkdir -p "$TMP/bin"
printf '#!/bin/sh\necho "sinfo: error: Could not establish a configuration source" >&2\nexit 1\n' >"$TMP/bin/sinfo"
chmod +x "$TMP/bin/sinfo"
export PATH="$TMP/bin:$PATH" RD_BIN="$RD" RD_DRY_RUN=1
TINY="$SRC/tests/data/slurm-tiny.yaml"
W="$TMP/wd \$x \"q\" é 中"
mkdir -p "$W"
cd "$W" || exit 1

# 1. A MovieLens source whose data.input has an "é" (relative to the working directory).
mkdir -p "ml é" && touch "ml é/u.data"
sed 's/^  source: synthetic$/  source: movielens100k\n  input: "ml é"/' "$TINY" >"c é.yaml"
"$SRC/slurm/train-1node.sbatch" "c é.yaml" >"$TMP/ml.out" 2>"$TMP/ml.err" ||
    bad "data.input 'ml é' refused: $(cat "$TMP/ml.err")"
# The missing one is still refused, named as written.
sed 's/^  source: synthetic$/  source: movielens100k\n  input: "ml ë"/' "$TINY" >"c ë.yaml"
"$SRC/slurm/train-1node.sbatch" "c ë.yaml" >/dev/null 2>"$TMP/ml.err" && bad "a missing data.input 'ml ë' was accepted"
grep -q "data.input 'ml ë' (source movielens100k) not found from the job's working directory $W" "$TMP/ml.err" ||
    bad "missing data.input message: $(cat "$TMP/ml.err")"

# 2. The dry run's command read back: RD_CONFIG, the config argument and --chdir as they are.
line="$(cat "$TMP/ml.out")"
eval "words=($line)" || bad "dry-run command does not parse: $line"
[ "${words[0]:-}" = "RD_BIN=$RD" ] && [ "${words[2]:-}" = "RD_CONFIG=$W/c é.yaml" ] &&
    [ "${words[-1]:-}" = "$W/c é.yaml" ] && [ "${words[5]:-}" = "--chdir=$W" ] ||
    bad "dry-run command: $line"

# 3. A CSV source: log and side table with non-ASCII names and a quote, in a data.input with one.
mkdir -p 'in "中"/parts'
printf 'ts,u,i,y\n1,a,x,1\n2,b,y,0\n' >'in "中"/parts/log 中.csv'
printf 'u,age\na,3\nb,4\n' >'in "中"/users é.csv'
csv_cfg() { # $1 log path, $2 side table path
    sed -e 's|^  source: synthetic$|  source: csv\n  input: '"'"'in "中"'"'"'\n  schema:\n    path: "'"$1"'"\n    user_column: u\n    item_column: i\n    time_column: ts\n    label: "y >= 1"\n    side: [{name: users, path: "'"$2"'", header: true, key_column: u, join_column: u}]|' \
        -e '/^  synthetic:/d' "$TINY" >csv.yaml
}
csv_cfg "parts/log 中.csv" "users é.csv"
"$SRC/slurm/train-1node.sbatch" csv.yaml >/dev/null 2>"$TMP/csv.err" || bad "csv: present files refused: $(cat "$TMP/csv.err")"
csv_cfg "parts/log *.csv" "users é.csv"
"$SRC/slurm/train-1node.sbatch" csv.yaml >/dev/null 2>"$TMP/csv.err" || bad "csv: a matching pattern refused: $(cat "$TMP/csv.err")"
csv_cfg "parts/log 中.csv" "users ë.csv"
"$SRC/slurm/train-1node.sbatch" csv.yaml >/dev/null 2>"$TMP/csv.err" && bad "csv: a missing side table was accepted"
grep -qF "data.schema.side[0].path: no file '$W/in \"中\"/users ë.csv'" "$TMP/csv.err" ||
    bad "csv: missing side table message: $(cat "$TMP/csv.err")"

# 4. An array job whose run folder has an "é": its checkpoints lie under it (refused before).
RD_SBATCH_ARGS="--array=1-2" "$SRC/slurm/train-1node.sbatch" "$TINY" --set 'run.out_dir="runs é"' \
    >/dev/null 2>"$TMP/arr.err" || bad "array job with run.out_dir 'runs é' refused: $(cat "$TMP/arr.err")"

# 4b. RD_SBATCH_ARGS is split at blanks: a --chdir folder with a blank became two words, the job
# submitted to run in the folder before the blank. Refused, naming the stray word; options with
# their values as the next word still pass.
mkdir -p "$TMP/sub"
RD_SBATCH_ARGS="--chdir=$TMP/sub dir" "$SRC/slurm/train-1node.sbatch" "$TINY" >"$TMP/sb.out" 2>"$TMP/sb.err" &&
    bad "RD_SBATCH_ARGS with a split --chdir was submitted: $(cat "$TMP/sb.out")"
grep -q "RD_SBATCH_ARGS: 'dir' is neither an sbatch option nor the value of one" "$TMP/sb.err" ||
    bad "split --chdir message: $(cat "$TMP/sb.err")"
RD_SBATCH_ARGS="--partition debug -t 10 --chdir=$TMP/sub" "$SRC/slurm/train-1node.sbatch" "$TINY" \
    >"$TMP/sb.out" 2>"$TMP/sb.err" || bad "RD_SBATCH_ARGS with separate values refused: $(cat "$TMP/sb.err")"

# 4c. RD_SBATCH_ARGS's words are not matched against file names: in a folder holding files
# "--comment=ab" and "--partition=dx", "--comment=a* --partition=d*" went to sbatch as the files'
# names (every component of the het job's) and the partition checked was "dx".
mkdir -p "$TMP/glob" && touch "$TMP/glob/--comment=ab" "$TMP/glob/--partition=dx"
for s in train-multinode distill-hetjob; do
    (cd "$TMP/glob" && RD_SBATCH_ARGS="--comment=a* --partition=d*" "$SRC/slurm/$s.sbatch" "$TINY") \
        >"$TMP/gl.out" 2>"$TMP/gl.err" || bad "$s: RD_SBATCH_ARGS with a '*' refused: $(cat "$TMP/gl.err")"
    eval "words=($(cat "$TMP/gl.out"))" || bad "$s: dry-run command does not parse: $(cat "$TMP/gl.out")"
    n=0 m=0 # --comment=a* words, component separators
    for a in "${words[@]}"; do
        case "$a" in
            "--comment=a*") n=$((n + 1)) ;;
            --comment=*) n=-99 ;;
            :) m=$((m + 1)) ;;
        esac
    done
    [ "$n" -eq $((m + 1)) ] || bad "$s: --comment=a* not given as it is to each component: $(cat "$TMP/gl.out")"
    grep -q "partition d\*" "$TMP/gl.err" || bad "$s: the partition checked is not 'd*': $(cat "$TMP/gl.err")"
done

# 5. The checkpoint root of the batch body (read by a requeued job and before a time limit), for a
# run.out_dir with every awkward character, and the scalars read back as written.
want="$W/r é 中 😀 \"q\" b\\s \$y"
got="$(
    . "$SRC/slurm/common.sh"
    rd_init "$SRC/slurm/train-1node.sbatch"
    q="${want//\\/\\\\}"
    # shellcheck disable=SC2034 # read by common.sh
    RD_SET_ARGS=(--set "run.out_dir=\"${q//\"/\\\"}\"")
    # shellcheck disable=SC2034
    RD_CONFIG="$TINY" RD_OUT_ARG=""
    rd_layout "$RD_CONFIG"
    rd_ckpt_root
    rd_config_value data source "$RD_CONFIG"
    rd_config_value run seed "$RD_CONFIG"
)"
[ "$got" = "$want/ckpt"$'\n'"synthetic"$'\n'"7" ] || bad "checkpoint root / config values: '$got', expected '$want/ckpt', synthetic, 7"

# 6. sweep.sh's derived configs. A base run.out_dir with a space or an "é": the points' checkpoint
# folder, target log and token store follow each point's run folder (they stayed in the base's,
# one token store for every point running at once). A checkpoint folder outside it, with a
# backslash and a quote: one subfolder per point, the name kept (the backslash lost before).
sweep() { # $1 the base config's run line, $2 its ps.checkpoint_dir ("" = derived)
    { echo "$1"; sed -n '/^run:/,/^  seed:/d; p' "$TINY"; } >sw.yaml
    [ -z "$2" ] || sed -i "s|^ps:\$|ps:\n  checkpoint_dir: $2|" sw.yaml
    printf 'config: sw.yaml\nnodes: 1\nbatch: 32\nout: sweep_é\n' >sw.spec
    rm -rf sweep_é
    "$SRC/slurm/sweep.sh" sw.spec >/dev/null 2>"$TMP/sw.err" || bad "sweep.sh dry run: $(cat "$TMP/sw.err")"
}
derived_has() { # the derived config's KEY line must be VALUE
    grep -qxF "  $1: $2" sweep_é/configs/n1-p1-b32.yaml ||
        bad "sweep point config: $1 is $(grep "^  $1:" sweep_é/configs/n1-p1-b32.yaml), not $2"
}
for o in "runs/my run" "runs é"; do
    sweep "run: {name: sw, seed: 7, out_dir: \"$o\"}" ""
    derived_has checkpoint_dir '""'
    derived_has target_log '""'
    derived_has store_dir '""'
done
sweep "run: {name: sw, seed: 7}" '"/scratch/ck é \\\\ \\" x"'
derived_has checkpoint_dir '"/scratch/ck é \\ \" x/n1-p1-b32"'

# 7. End to end: the batch body restarted by Slurm (SLURM_RESTART_COUNT=1) in a run folder with
# an "é", under a fake srun (tests/scripts/lib/fake_srun.sh), resumes from its checkpoints. It
# looked under ".../runs \u00e9/ckpt", found none, started again, and train removed them.
# shellcheck disable=SC2034 # read by fake_srun
if MPIEXEC="$(command -v mpiexec.mpich)"; then
    # shellcheck source=lib/fake_srun.sh
    . "$SRC/tests/scripts/lib/fake_srun.sh"
    fake_srun "$TMP/srun" timeout 300
    sed -e 's/^  name: slurm-tiny$/  name: rq\n  out_dir: "runs é"/' -e '/distill: true/d' \
        -e 's/^ps:$/ps:\n  checkpoint_every: 10\n  checkpoint_keep: 100/' "$TINY" >rq.yaml
    attempt() { # RESTART_COUNT LOG
        env -u RD_DRY_RUN PATH="$TMP/srun:$PATH" OPENBLAS_NUM_THREADS=1 ENVIRONMENT=BATCH SLURM_JOB_ID=77 \
            SLURM_NTASKS=3 SLURM_JOB_NUM_NODES=1 SLURM_JOB_CPUS_PER_NODE=3 SLURM_SUBMIT_DIR="$W" \
            SLURM_RESTART_COUNT="$1" RD_CONFIG="$W/rq.yaml" RD_SLURM_DIR="$SRC/slurm" \
            bash "$SRC/slurm/train-1node.sbatch" "$W/rq.yaml" >"$2" 2>&1
    }
    attempt 0 "$TMP/a1.log" || bad "first attempt: $(tail -n 5 "$TMP/a1.log")"
    rm -rf "runs é/ckpt"/*/step-00000000004* "runs é/ckpt"/*/step-00000000005* "runs é/report.json"
    attempt 1 "$TMP/a2.log" || bad "restarted attempt: $(tail -n 5 "$TMP/a2.log")"
    grep -q "restarted by Slurm (restart 1): resuming from $W/runs é/ckpt" "$TMP/a2.log" &&
        grep -q "\[teacher\] resumed from .*/step-000000000030" "$TMP/a2.log" ||
        bad "the restarted job in 'runs é' did not resume: $(grep -E "restarted|resumed|removed" "$TMP/a2.log")"
fi

exit "$fail"
