#!/usr/bin/env bash
# rerun.sh — a run into a folder that an earlier run used replaces that run's outputs; nothing of
# the earlier run remains looking like part of the new one (docs/reliability.md, run folder
# rules):
#  - every launch (fresh or --resume) removes the earlier report.json and auc_windows.png before
#    any job trains, so a failed launch shows no report, and every <job>.metrics.<csv|jsonl>
#    (other job names too); other files stay;
#  - a fresh run removes every earlier checkpoint of its jobs: its checkpoint folders list exactly
#    what a run into a clean folder lists (the earlier run checkpointed at other, lower steps);
#  - a fresh live teacher drops its job's earlier records from the target log: a replay after the
#    rerun finds only the new teacher's targets and reports the same missing count as in a clean
#    folder.
#
#   bash tests/scripts/rerun.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: rerun.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_rerun_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" "$@"; }
# shellcheck source=lib/pair_yaml.sh
. "$(cd "$(dirname "$0")" && pwd)/lib/pair_yaml.sh" # pair_yaml
cd "$TMP" || exit 1

# Run 1: a teacher (mlp [16], 3 epochs, a checkpoint every 20 steps) and its distilled student.
pair_yaml name=tl data="$TMP/data" ckpt_every=20 epochs=3 distill= \
    teacher_seq="{kind: mean, length: 8}" student_tower="[4]" plot=true > t3.yaml || fail "could not write t3.yaml"
# Run 2: another teacher (mlp [32]), 1 epoch, only the final checkpoint.
sed -e 's/epochs: 3}/epochs: 1}/' -e 's/mlp: \[16\]/mlp: [32]/' \
    -e 's/checkpoint_every: 20/checkpoint_every: 0/' t3.yaml > t1.yaml
# The student alone, 3 epochs, replaying the teacher's target log.
grep -v "name: teacher, role: teacher" t3.yaml |
    sed -e 's/distill: true}/distill: true, teacher: teacher}/' \
        -e 's/^output:/distill: {replay: true}\noutput:/' > replay.yaml
grep -q "replay: true" replay.yaml && grep -q "mlp: \[32\]" t1.yaml || fail "could not write the configs"
targets() { # $1 = run folder: the "missing" and "replayed" counts of its report
    python3 -c "import json,sys;t=json.load(open(sys.argv[1]+'/report.json'))['targets'];print(t['missing'],t['replayed'])" "$1"
}

run -n 3 "$RD" train t3.yaml --out R >R1.out 2>err || fail "run 1: $(cat err)"
for f in report.json auc_windows.png teacher.metrics.csv student.metrics.csv; do
    [ -f "R/$f" ] || fail "run 1 wrote no $f: $(ls R)"
done
[ "$(ls R/ckpt/student | wc -l)" -ge 3 ] || fail "run 1 checkpoints: $(ls R/ckpt/student)"
# Files of other runs in the folder: another job's metrics (removed by a fresh run) and files
# that only look alike (kept).
echo old > R/gone.metrics.jsonl
echo keep > R/notes.txt
echo keep > R/student.metrics.csv.bak
mkdir R/dir.metrics.csv

# --- 06: a launch refused at its start changes nothing; one that fails later shows no earlier report
# A resume from a checkpoint that is not there is refused before anything is removed (a mistyped
# path must not cost the earlier run's report).
run -n 3 "$RD" train t3.yaml --out R --resume nowhere >o 2>e && fail "a resume from nowhere succeeded"
grep -q "nowhere: No such file or directory" e || fail "resume from nowhere: $(cat e)"
[ -f R/report.json ] && [ -f R/auc_windows.png ] && [ -f R/student.metrics.csv ] &&
    [ -f R/gone.metrics.jsonl ] || fail "a refused resume removed outputs: $(ls R)"
! grep -q "removed" o || fail "a refused resume removed something: $(cat o)"
# So is a resume on another PS layout (the trainers would refuse it only after the removal); the
# message names the tool that reshards the checkpoint.
sed 's/ps_ranks: 1/ps_ranks: 2/' t3.yaml > t3p.yaml
run -n 4 "$RD" train t3p.yaml --out R --resume R/ckpt >o 2>e && fail "a resume on 2 PS ranks succeeded"
grep -q "has 1 PS shards but this run has 2 PS ranks.*table reshard" e || fail "resume on 2 PS: $(cat e)"
[ -f R/report.json ] && [ -f R/auc_windows.png ] || fail "a resume on 2 PS removed outputs: $(ls R)"
! grep -q "removed" o || fail "a resume on 2 PS removed something: $(cat o)"
# A launch refused before it starts (its target log path is a file: the folder probe) changes
# nothing in the folder.
run -n 3 "$RD" train t3.yaml --out F >/dev/null 2>err || fail "run F: $(cat err)"
mv F/targets F/targets.d && echo x > F/targets && echo old > F/other.metrics.csv
run -n 3 "$RD" train t3.yaml --out F >o 2>e && fail "a run with a file as its target log succeeded"
grep -q "target log (distill.target_log) F/targets is not a folder" e || fail "target log file: $(cat e)"
[ -f F/report.json ] && [ -f F/other.metrics.csv ] || fail "a launch refused at its start removed outputs: $(ls F)"
rm F/targets && mv F/targets.d F/targets
# A launch whose data config no longer matches data.dir is refused at its start too: the
# earlier run's outputs stay.
sed 's/events: 4000,/events: 3000,/' t3.yaml > t3b.yaml
grep -q "events: 3000," t3b.yaml || fail "t3b.yaml was not derived"
run -n 3 "$RD" train t3b.yaml --out F >o 2>e && fail "a run on another data config succeeded"
grep -q "prepared from another data configuration" e || fail "another data config: $(cat e)"
[ -f F/report.json ] && [ -f F/other.metrics.csv ] || fail "a refused launch removed outputs: $(ls F)"
! grep -q "removed" o || fail "a refused launch removed something: $(cat o)"
# A fresh launch that fails once it works (here: preparing a dataset from a log without its label
# column) shows no earlier report: every job's metrics go too.
printf 'user,item,ts,click\nu1,i1,1,1\nu2,i2,2,0\n' > log.csv
sed -e 's|^  source: synthetic$|  source: csv\n  input: .\n  schema: {path: log.csv, user_column: user, item_column: item, time_column: ts, label: "clik >= 1"}|' \
    -e "s|dir: $TMP/data$|dir: $TMP/data_csv|" t3.yaml > t3c.yaml
grep -q "clik" t3c.yaml || fail "t3c.yaml was not derived"
run -n 3 "$RD" train t3c.yaml --out F >o 2>e && fail "a run on a log without its label column succeeded"
grep -q "no column 'clik'" e || fail "no label column: $(cat e)"
grep -q "run folder F: removed .* outputs of an earlier run: report.json, auc_windows.png, " o ||
    fail "no line saying what was removed: $(cat o)"
ls F | grep -Eq '^report\.json$|\.metrics\.|\.png$' && fail "a failed fresh run left earlier outputs: $(ls F)"

# --- 08 + 09: a fresh rerun replaces the checkpoints and the teacher's targets ------------------
run -n 3 "$RD" train t1.yaml --out C >C.out 2>err || fail "clean run: $(cat err)"
run -n 3 "$RD" train t1.yaml --out R >R2.out 2>err || fail "rerun: $(cat err)"
for j in teacher student; do
    [ "$(ls R/ckpt/$j)" = "$(ls C/ckpt/$j)" ] ||
        fail "job $j: the rerun's checkpoints are $(ls R/ckpt/$j | tr '\n' ' '), a clean run's $(ls C/ckpt/$j | tr '\n' ' ')"
    grep -Eq "^\[$j\] removed [0-9]+ checkpoints of an earlier run from R/ckpt/$j \(step " R2.out ||
        fail "no line saying which checkpoints of $j were removed: $(cat R2.out)"
done
grep -q "run folder R: removed [0-9]* outputs of an earlier run: .*gone.metrics.jsonl" R2.out || fail "removed outputs: $(cat R2.out)"
grep -q "run folder R: removed [0-9]* outputs of an earlier run: .*student.targets.json" R2.out ||
    fail "the earlier targets.json were not removed: $(cat R2.out)"
[ ! -e R/gone.metrics.jsonl ] || fail "another job's metrics file stayed: $(ls R)"
[ -f R/notes.txt ] && [ -f R/student.metrics.csv.bak ] && [ -d R/dir.metrics.csv ] ||
    fail "a file that is no metrics file was removed: $(ls R)"
[ -f R/report.json ] && [ -f R/student.metrics.csv ] || fail "the rerun wrote no report: $(ls R)"
run -n 2 "$RD" train replay.yaml --out R >/dev/null 2>err || fail "replay in R: $(cat err)"
run -n 2 "$RD" train replay.yaml --out C >/dev/null 2>err || fail "replay in C: $(cat err)"
tr_r=$(targets R) tr_c=$(targets C)
[ "${tr_c%% *}" -gt 0 ] || fail "a 3-epoch replay of a 1-epoch teacher misses nothing: $tr_c"
# ... and says so on stderr, with the counts (not only in report.json).
grep -q "distill.replay: ${tr_c%% *} of [0-9]* samples found no target of teacher 'teacher'" err ||
    fail "no warning for a replay with missing targets: $(grep -v INFO err | head -3)"
# A replay naming a teacher that wrote nothing into the log (a typo) is refused before training.
sed -e 's/teacher: teacher}/teacher: teachr}/' -e 's|distill: {replay: true}|distill: {replay: true, target_log: C/targets}|' \
    replay.yaml > typo.yaml
grep -q "teacher: teachr}" typo.yaml && grep -q "target_log: C/targets" typo.yaml || fail "could not write the typo config"
run -n 2 "$RD" train typo.yaml --out T >/dev/null 2>err && fail "a replay of teacher 'teachr' succeeded"
grep -q "holds no targets of teacher 'teachr' (student job 'student' names it)" err ||
    fail "replay of an unknown teacher: $(grep -v INFO err | head -3)"
# A replay of a log that is not there is refused at start-up: no run folder is left behind.
sed 's|distill: {replay: true}|distill: {replay: true, target_log: nowhere/targets}|' replay.yaml > nolog.yaml
grep -q "nowhere/targets" nolog.yaml || fail "could not write the no-log config"
run -n 2 "$RD" train nolog.yaml --out NL/run >/dev/null 2>err && fail "a replay of a missing log succeeded"
grep -q "distill.replay: target log nowhere/targets: no such log" err || fail "replay of a missing log: $(grep -v INFO err | head -3)"
[ ! -e NL ] || fail "a replay of a missing log left its run folder: $(find NL)"
[ "$tr_r" = "$tr_c" ] || fail "replay after a rerun (missing, replayed) $tr_r, in a clean folder $tr_c"
[ ! -e R/teacher.metrics.csv ] || fail "the replay kept the earlier teacher's metrics: $(ls R)"
grep -Eq "^\[teacher\] target log R/targets: removed [0-9]+ targets of an earlier run of job 'teacher'" R2.out ||
    fail "no line saying which targets were removed: $(cat R2.out)"
echo "rerun.sh: ok"
