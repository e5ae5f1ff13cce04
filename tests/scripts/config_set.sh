#!/usr/bin/env bash
# config_set.sh — `--set PATH=VALUE` on the commands that read a CONFIG (config, prepare, train,
# export): an override gives what the same change written into the file gives.
#  - config: the same effective configuration as the edited file (and --layout its world size);
#    a later --set over an earlier one; errors name the override, exit 1, nothing on stdout.
#  - train: a run with overrides trains as the run of the edited file (metrics identical but
#    the throughput columns) and its report.json lists them ("config_sets"); its
#    config.effective.yaml trains the same run again; the ranks of an MPMD
#    launch must agree on them (exit 2 naming --set); a bad override ends every rank (exit 1).
#  - prepare: the dataset of the overridden data section. export: a model overridden otherwise
#    than in train is refused (the checkpoint records the config's hash).
#  - the Slurm submitters: sized with the overrides, a bad one refused at submission, and the
#    batch body passes them on to train.
#   config_set.sh PATH/TO/recdistill
set -u
RD="${1:?usage: config_set.sh path/to/recdistill}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
export OPENBLAS_NUM_THREADS=1
TMP="$(mktemp -d /tmp/rd_test_cfgset_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || exit 1
fail=0
say() { echo "FAIL: $*"; fail=1; }

cp "$SRC/tests/data/slurm-tiny.yaml" base.yaml
# The same changes written into the file (sed on lines of slurm-tiny.yaml).
sed -e 's/  synthetic: {events: 4000,/  synthetic: {events: 3000,/' \
    -e 's/    seq: {kind: mean, length: 8}/    seq: {kind: din, length: 8, heads: 4}/' \
    -e 's/    - {name: s_emb, dim: 4}/    - {name: s_emb, dim: 6}/' base.yaml >edited.yaml
grep -q "events: 3000" edited.yaml && grep -q "kind: din" edited.yaml &&
    grep -q "s_emb, dim: 6" edited.yaml || { echo "FAIL: slurm-tiny.yaml changed: adapt the sed"; exit 1; }
SETS=(--set data.synthetic.events=3000 --set models.teacher.seq.kind=din
      --set models.teacher.seq.heads=4 --set 'ps.tables[s_emb].dim=6')

# 1. config: the effective configuration of the edited file (but the comment lines on top).
"$RD" config base.yaml "${SETS[@]}" >set.out 2>set.err || say "config with --set: $(cat set.err)"
"$RD" config edited.yaml >edited.out || say "config of the edited file"
diff <(grep -v '^#' set.out) <(grep -v '^#' edited.out) >/dev/null || say "config --set differs from the edited file"
grep -q '^# --set ps.tables\[s_emb\].dim=6$' set.out || say "config does not list its overrides"
"$RD" config set.out >/dev/null || say "the printed configuration with --set lines is not valid"
# A list entry by index, a whole map replaced (its other keys back to their defaults), the last
# of two overrides of one key.
"$RD" config base.yaml --set models.0.mlp='[4, 2]' --set 'models.student_raw={name: student_raw, features: [{field: item, table: r_emb}]}' \
    --set train.lr=0.5 --set train.lr=0.25 >o.out 2>o.err || say "config overrides: $(cat o.err)"
grep -q '^    mlp: \[4, 2\]$' o.out || say "models.0.mlp not set"
grep -q '^  lr: 0.25$' o.out || say "the later train.lr did not win"
awk '/^  - name: "student_raw"$/{s=1} s&&/two_towers/{print; exit}' o.out | grep -q 'false' ||
    say "the replaced model kept two_towers"
# Keys whose default is empty (lists, strings, list entries) are reset too: a replaced seq kept
# the file's stats and stats_feedback, and a replaced list its first entry's init_as.
sed -e 's/    seq: {kind: mean, length: 8}/    seq: {kind: mean, length: 8, stats: [2, 4], table: t_emb}/' \
    -e 's/    - {name: r_emb, dim: 4}/    - {name: r_emb, dim: 4, init_as: s_emb}/' base.yaml >stats.yaml
grep -q "stats: \[2, 4\]" stats.yaml && grep -q "init_as: s_emb" stats.yaml ||
    { echo "FAIL: slurm-tiny.yaml changed: adapt the sed"; exit 1; }
"$RD" config stats.yaml --set 'models.teacher.seq={kind: din, length: 8}' \
    --set 'ps.tables.r_emb={name: r_emb, dim: 4}' >st.out 2>st.err || say "config: $(cat st.err)"
"$RD" config base.yaml --set models.teacher.seq.kind=din >din.out || say "config of the din seq"
diff <(grep -v '^#' st.out) <(grep -v '^#' din.out) >/dev/null ||
    say "a replaced seq (or table) kept keys the file wrote: $(diff <(grep -v '^#' st.out) <(grep -v '^#' din.out) | head -6)"
# A label replaced as a whole: a threshold over label values leaves none of them.
"$RD" config "$SRC/configs/schema-example.yaml" --set 'data.schema.label={column: rating, values: ["5"]}' \
    --set 'data.schema.label={column: rating, threshold: 3}' >lb.out 2>lb.err ||
    say "a label threshold over label values: $(cat lb.err)"
grep -A4 '^    label:' lb.out | grep -q '^      threshold: 3$' || say "label not replaced: $(grep -A4 '^    label:' lb.out)"
# --layout follows the overrides.
ws=$("$RD" config --layout base.yaml --set cluster.ps_ranks=3 | sed -n 's/^world_size=//p')
[ "$ws" = 6 ] || say "config --layout with ps_ranks=3: world size '$ws', expected 6"

# Errors: named, exit 1, nothing on stdout.
bad() { # expected-message override...
    local want="$1"
    shift
    "$RD" config base.yaml "$@" >b.out 2>b.err
    local rc=$?
    [ "$rc" = 1 ] || say "config $*: exit $rc, expected 1"
    grep -qF -- "$want" b.err || say "config $*: message lacks '$want': $(cat b.err)"
    [ -s b.out ] && say "config $*: output on stdout"
}
bad "--set train.lrr=1: train.lrr: unknown key (did you mean 'lr'?)" --set train.lrr=1
bad "--set train.lr=abc: train.lr: expected a finite number, got 'abc'" --set train.lr=abc
bad "--set train.lr=-1: train.lr: value -1 out of range" --set train.lr=-1
bad "'models' has no entry named 'nosuch' (its entries: teacher, student, student_raw)" --set models.nosuch.mlp='[3]'
bad "'models' has 3 entries: no index 7" --set models.7.mlp='[3]'
bad "expected PATH=VALUE" --set train.lr
bad "'train.lr' holds a value, not a map" --set train.lr.x=1
bad "--set models.teacher.seq={length: 4}: models[0].seq: length given, but seq.kind is not set" \
    --set 'models.teacher.seq={length: 4}'
bad "--set cluster.jobs=[]: cluster.jobs: at least one worker job is needed" --set 'cluster.jobs=[]'
bad "--set train.lr=[:" --set 'train.lr=['
"$RD" config base.yaml --set '' >b.out 2>b.err
[ $? = 2 ] && grep -q -- "--set: empty value" b.err || say "--set '': $(cat b.err)"

# 2. train: the run of the edited file, and its report lists the overrides.
"$MPIEXEC" -n 4 "$RD" train base.yaml --out run_set "${SETS[@]}" >t1.log 2>&1 || { say "train --set"; tail t1.log; }
"$MPIEXEC" -n 4 "$RD" train edited.yaml --out run_ed >t2.log 2>&1 || { say "train of the edited file"; tail t2.log; }
for j in teacher student student_raw; do
    # Every column but the throughput (samples_per_s) is a function of the training alone.
    c=$(head -1 run_ed/$j.metrics.csv | tr ',' '\n' | grep -n '^samples_per_s$' | cut -d: -f1)
    [ -n "$c" ] || { say "$j.metrics.csv has no samples_per_s column"; continue; }
    cmp -s <(cut -d, -f"$c" --complement run_set/$j.metrics.csv) \
        <(cut -d, -f"$c" --complement run_ed/$j.metrics.csv) || say "$j: --set trained otherwise than the edited file"
done
grep -qF '"config_sets": ["data.synthetic.events=3000", "models.teacher.seq.kind=din", "models.teacher.seq.heads=4", "ps.tables[s_emb].dim=6"]' \
    run_set/report.json || say "report.json lacks config_sets: $(grep config run_set/report.json)"
grep -q config_sets run_ed/report.json && say "report.json of a run without --set has config_sets"
# heads under seq.kind din has no effect: valid (an ablation switching the kind keeps it), said
# once by rank 0, by train as by config.
for l in t1.log t2.log; do
    [ "$(grep -c "recdistill train: warning: .*models\[0\].seq: heads 4 has no effect: model 'teacher' reads its history with target attention (seq.kind din)" $l)" = 1 ] ||
        say "$l: not one warning of the teacher's heads: $(grep -c warning $l) warning lines"
done
"$RD" config edited.yaml >w.out 2>w.err || say "config of the edited file: $(cat w.err)"
grep -q "^recdistill config: warning: edited.yaml: models\[0\].seq: heads 4 has no effect" w.err ||
    say "config: no warning of heads under din: $(cat w.err)"
# The run folder keeps the config as run (overrides applied, listed on top): trained again from
# it, the run is the same.
head -5 run_set/config.effective.yaml | grep -qx -- '# --set ps.tables\[s_emb\].dim=6' ||
    say "config.effective.yaml does not list the overrides: $(head -4 run_set/config.effective.yaml)"
"$MPIEXEC" -n 4 "$RD" train run_set/config.effective.yaml --out run_again >t5.log 2>&1 || { say "train of config.effective.yaml"; tail t5.log; }
for j in teacher student student_raw; do
    c=$(head -1 run_set/$j.metrics.csv | tr ',' '\n' | grep -n '^samples_per_s$' | cut -d: -f1)
    cmp -s <(cut -d, -f"$c" --complement run_set/$j.metrics.csv) \
        <(cut -d, -f"$c" --complement run_again/$j.metrics.csv) || say "$j: the run of its config.effective.yaml differs"
done
# A bad override ends every rank: exit 1, rank 0's message, no run folder.
timeout 120 "$MPIEXEC" -n 4 "$RD" train base.yaml --out run_bad --set train.lr=abc >t3.log 2>&1
rc=$?
[ "$rc" = 1 ] || say "train with a bad --set: exit $rc, expected 1"
grep -qF "recdistill train: --set train.lr=abc: train.lr: expected a finite number" t3.log || say "train bad --set message: $(tail -3 t3.log)"
[ -e run_bad ] && say "train with a bad --set made its run folder"
# The segments of an MPMD launch must give the same overrides.
timeout 120 "$MPIEXEC" -n 1 "$RD" train base.yaml --out run_mp --set train.lr=0.1 : \
    -n 3 "$RD" train base.yaml --out run_mp --set train.lr=0.2 >t4.log 2>&1
rc=$?
[ "$rc" = 2 ] || say "MPMD segments with different --set: exit $rc, expected 2"
grep -q -- "--set" t4.log || say "MPMD --set mismatch not named: $(tail -5 t4.log)"
[ -e run_mp ] && say "MPMD --set mismatch made its run folder"

# 3. prepare: the dataset of the overridden data section.
"$RD" prepare base.yaml --out data_set --set data.synthetic.events=2500 >p.log 2>&1 || say "prepare --set: $(tail -3 p.log)"
grep -qE '^events +2500 ' p.log || say "prepare --set: $(grep ^events p.log)"

# 4. export: a student trained with overrides exports with the same ones; with others it is
#    refused (the model config differs from the checkpoint's).
"$RD" export base.yaml --run run_set --job student --out s.rdsv "${SETS[@]}" >e1.log 2>&1 || say "export --set: $(tail -3 e1.log)"
"$RD" export base.yaml --run run_set --job student --out s2.rdsv --set data.synthetic.events=3000 \
    --set models.teacher.seq.kind=din >e2.log 2>&1 && say "export without the dim override was accepted"
[ -e s2.rdsv ] && say "a refused export left its bundle"

# 5. The Slurm submitters take --set after CONFIG: the job is sized with the overrides and the
#    batch body passes them to train (a fake srun runs the training step through mpiexec; no
#    sinfo reaches a controller here, and RD_DRY_RUN prints the sbatch command).
mkdir -p bin
printf '#!/bin/sh\necho "sinfo: error: Could not establish a configuration source" >&2\nexit 1\n' >bin/sinfo
chmod +x bin/sinfo
# shellcheck source=lib/fake_srun.sh
. "$SRC/tests/scripts/lib/fake_srun.sh"
fake_srun "$TMP/bin" timeout 300
SL=(env PATH="$TMP/bin:$PATH" RD_BIN="$RD" RD_SLURM_DIR="$SRC/slurm")
"${SL[@]}" RD_DRY_RUN=1 "$SRC/slurm/train-1node.sbatch" base.yaml --set cluster.ps_ranks=2 \
    --set 'models.teacher.mlp=[8, 4]' >d.out 2>d.err || say "dry run with --set: $(cat d.err)"
grep -q -- "--ntasks=5 .*train-1node.sbatch $TMP/base.yaml --set cluster.ps_ranks=2 --set models.teacher.mlp=" d.out ||
    say "dry run with --set: $(cat d.out)"
"${SL[@]}" RD_DRY_RUN=1 "$SRC/slurm/train-multinode.sbatch" base.yaml --set cluster.ps_rank=2 >d.out 2>d.err
rc=$?
[ "$rc" = 1 ] && grep -qF "cluster.ps_rank: unknown key (did you mean 'ps_ranks'?)" d.err ||
    say "a bad --set at submission: exit $rc: $(cat d.err)"
"${SL[@]}" RD_DRY_RUN=1 "$SRC/slurm/train-1node.sbatch" base.yaml --set >d.out 2>d.err
[ $? = 2 ] && grep -q -- "--set needs a value" d.err || say "--set without a value: $(cat d.err)"
"${SL[@]}" ENVIRONMENT=BATCH SLURM_JOB_ID=78 SLURM_NTASKS=5 SLURM_JOB_NUM_NODES=1 SLURM_JOB_CPUS_PER_NODE=5 \
    SLURM_SUBMIT_DIR="$TMP" RD_CONFIG="$TMP/base.yaml" OPENBLAS_NUM_THREADS=1 UCX_TLS=self,sm \
    bash "$SRC/slurm/train-1node.sbatch" "$TMP/base.yaml" --out run_sl --set cluster.ps_ranks=2 \
    --set train.lr=0.01 >sl.log 2>&1 || say "batch body with --set: $(tail -5 sl.log)"
grep -qF '"config_sets": ["cluster.ps_ranks=2", "train.lr=0.01"]' run_sl/report.json 2>/dev/null ||
    say "the batch body did not pass --set to train: $(grep -i -- '--set\|error' sl.log | head -3)"

[ "$fail" = 0 ] && echo "config_set: all checks passed"
exit "$fail"
