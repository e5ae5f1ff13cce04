#!/usr/bin/env bash
# job_sampling.sh — a job's own negative sampling (cluster.jobs[].negatives) end to end, on the
# tiny teacher + student + student_raw config (tests/data/slurm-tiny.yaml):
#   1. the student and its twin keep 30 % of their negatives, the teacher trains on everything
#      (two student ranks): the twins train on the same records (same count, fewer than the
#      teacher's), the teacher sends no target for a record the student dropped (counted
#      unsampled; sent + unsampled = its training samples), the student gets a target for every
#      record it trains on (joined = its training samples: none missing, none late), report.json
#      names the rates; the teacher's logit goes through the student's calibration (with
#      distill.debias_teacher: teacher, through its own, and the student differs); `export`
#      carries the prior correction log(0.3) into the bundle, whose holdout logloss (`score`) is
#      the one report.json has (the trainer evaluates with it too);
#      export refuses another rate, a folder of another data configuration, and data of the same
#      configuration that is not the checkpoint's training data;
#   2. the teacher keeps 50 % of its negatives and the student all: the records the teacher
#      dropped are never asked for (untargeted), the others all joined, none missing; then both
#      sampled, the student's rates inside the teacher's, two ranks each, two epochs in user
#      order: every record the student trains on has its target;
#   3. the student alone replaying run 1's target log joins as many targets as it did live, and
#      replaying run 2's (a sampled teacher) knows from the log which records the teacher
#      dropped (untargeted as live, none missing);
#   4. a rate outside (0, 1] is a config error naming the key.
#
#   bash tests/scripts/job_sampling.sh build/recdistill
set -u
RD="${1:?usage: job_sampling.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_jobsamp_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

drun() { # N config out: one launch, 120 s at most (a hang is a failure)
    timeout 120 "$MPIEXEC" -n "$1" "$RD" train "$2" --out "$3" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [ $rc -eq 0 ] || fail "train $2 (exit $rc): $(grep -v INFO "$TMP/err" | head -20)"
    if grep -q "WARN\|ERROR" "$TMP/err"; then fail "train $2 warned: $(grep "WARN\|ERROR" "$TMP/err")"; fi
}

# --- 1. students sampled, teacher not -------------------------------------------------------------
sed -e 's/name: slurm-tiny/name: jobsamp/' \
    -e 's/model: student, distill: true}/model: student, distill: true, ranks: 2, negatives: {rate: 0.3}}/' \
    -e 's/model: student_raw}/model: student_raw, init_as: student, negatives: {rate: 0.3}}/' \
    "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/s.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n  debias: true\n' >> "$TMP/s.yaml"
grep -q 'rate: 0.3' "$TMP/s.yaml" || fail "config edit did not apply"
drun 5 "$TMP/s.yaml" "$TMP/s"
python3 - "$TMP/s" <<'PY' || fail "students sampled: counters"
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/report.json"))
j = r["jobs"]
t, s, raw = j["teacher"], j["student"], j["student_raw"]
tt = json.load(open(d + "/teacher.targets.json"))
st = json.load(open(d + "/student.targets.json"))
print("students sampled: teacher trained %d, sent %d, unsampled %d; student trained %d, joined %d,"
      " missing %d, late %d; student_raw trained %d"
      % (t["train_samples"], tt["sent"], tt["unsampled"], s["train_samples"], st["joined"],
         st["missing"], st["late"], raw["train_samples"]))
assert s["negatives"] == {"rate": 0.3, "pos_rate": 1.0}, s.get("negatives")
assert "negatives" not in t
assert s["train_samples"] == raw["train_samples"], "the twins trained on different records"
assert 0 < s["train_samples"] < 0.8 * t["train_samples"], "the student was not sampled"
assert tt["unsampled"] > 0 and tt["sent"] + tt["unsampled"] == t["train_samples"]
assert st["received"] == tt["sent"] and st["late"] == 0 and st["unused"] == 0
assert st["joined"] == s["train_samples"] and st["missing"] == 0 and st["untargeted"] == 0
for k in ("teacher", "student", "student_raw"):
    assert r["holdout"][k]["auc"] is not None
PY
# Under debias the teacher's logit goes through the student's calibration f_S by default
# (distill.debias_teacher: student, Rec-Distill's cross-debias); with debias_teacher: teacher it
# goes through the teacher's own (the identity: the teacher is not sampled). The two train other
# students, and nothing else changes (the teacher and student_raw end byte-identical).
sed -e 's/name: jobsamp/name: jobsamp_dt/' "$TMP/s.yaml" > "$TMP/s_dt.yaml"
printf '  debias_teacher: teacher\n' >> "$TMP/s_dt.yaml"
drun 5 "$TMP/s_dt.yaml" "$TMP/s_dt"
last() { ls -d "$1"/ckpt/"$2"/step-* | tail -1; }
for job in teacher student_raw; do
    cmp -s "$(last "$TMP/s" $job)/dense.bin" "$(last "$TMP/s_dt" $job)/dense.bin" ||
        fail "distill.debias_teacher changed $job"
done
cmp -s "$(last "$TMP/s" student)/dense.bin" "$(last "$TMP/s_dt" student)/dense.bin" &&
    fail "distill.debias_teacher student and teacher trained the same student"
# SOURCE_DATE_EPOCH fixes the bundle's creation time: two exports of one checkpoint are the same
# bytes (without it they differ by the second each ran in).
export SOURCE_DATE_EPOCH=1700000000
"$RD" export "$TMP/s.yaml" --out "$TMP/student.rdsv" --data "$TMP/s/data" --ckpt \
    "$(ls -d "$TMP"/s/ckpt/student/step-* | tail -1)" >"$TMP/exp" 2>&1 || fail "export: $(cat "$TMP/exp")"
grep -q "logit shift -1.20397" "$TMP/exp" || fail "export does not carry log(0.3): $(cat "$TMP/exp")"
# The trainer's holdout figures are those of the data every job reads, not of the student's
# sampled space: the bundle (logit + log(0.3)) scores the holdout with the logloss the report
# has. A trainer evaluating without its logit shift reports the sampled space's logloss (the
# AUCs alone could not tell: the shift is monotone).
"$RD" score "$TMP/student.rdsv" --run "$TMP/s" --json "$TMP/score.json" >/dev/null 2>"$TMP/e" ||
    fail "score the sampled student: $(cat "$TMP/e")"
python3 - "$TMP/score.json" "$TMP/s/report.json" <<'PY' || fail "the sampled student's holdout: score and report differ"
import json, sys
s = json.load(open(sys.argv[1]))
h = json.load(open(sys.argv[2]))["holdout"]["student"]
print("sampled student: score logloss %.9f n %d; report logloss %.9f n %d"
      % (s["logloss"], s["records"], h["logloss"], h["samples"]))
assert s["records"] == h["samples"], "record counts differ"
assert abs(s["logloss"] - h["logloss"]) < 1e-6, "logloss differs"
PY
# --ckpt may name the checkpoint root (as train --resume takes): its newest checkpoint of the job.
"$RD" export "$TMP/s.yaml" --out "$TMP/student-root.rdsv" --data "$TMP/s/data" --ckpt "$TMP/s/ckpt" \
    >"$TMP/exp2" 2>&1 || fail "export --ckpt ROOT: $(cat "$TMP/exp2")"
grep -q "from $(ls -d "$TMP"/s/ckpt/student/step-* | tail -1): " "$TMP/exp2" ||
    fail "export --ckpt ROOT did not take the newest checkpoint: $(cat "$TMP/exp2")"
cmp -s "$TMP/student.rdsv" "$TMP/student-root.rdsv" || fail "export --ckpt ROOT wrote another bundle"
# A leading tab was taken (strtoll skips any white space), only a space refused.
for bad in "-5" "12x" "" " 7" "$(printf '\t7')"; do
  if SOURCE_DATE_EPOCH="$bad" "$RD" export "$TMP/s.yaml" --out "$TMP/bad.rdsv" --data "$TMP/s/data" \
    --ckpt "$TMP/s/ckpt" >"$TMP/exp3" 2>&1; then
    fail "export took SOURCE_DATE_EPOCH='$bad'"
  fi
  grep -q "SOURCE_DATE_EPOCH='$bad' is not" "$TMP/exp3" || fail "SOURCE_DATE_EPOCH='$bad': $(cat "$TMP/exp3")"
  [ ! -e "$TMP/bad.rdsv" ] || fail "SOURCE_DATE_EPOCH='$bad' left a bundle"
done
unset SOURCE_DATE_EPOCH
# The checkpoint's config hash covers the job's rates: exported under another rate, the bundle
# would carry the wrong prior correction.
sed 's/negatives: {rate: 0.3}/negatives: {rate: 0.6}/' "$TMP/s.yaml" > "$TMP/s6.yaml"
grep -q 'rate: 0.6' "$TMP/s6.yaml" || fail "could not write the rate-0.6 config"
if "$RD" export "$TMP/s6.yaml" --out "$TMP/s6.rdsv" --data "$TMP/s/data" --ckpt \
    "$(ls -d "$TMP"/s/ckpt/student/step-* | tail -1)" >"$TMP/exp6" 2>&1; then
    fail "a checkpoint trained at rate 0.3 was exported under rate 0.6"
fi
grep -q "config hash" "$TMP/exp6" || fail "export under rate 0.6: $(cat "$TMP/exp6")"
[ ! -e "$TMP/s6.rdsv" ] || fail "a refused export left $TMP/s6.rdsv"
# The bundle carries its dataset's vocabularies and standardisation: a folder prepared from
# another data configuration (here another split) is refused, as train refuses it.
sed 's/batch_fraction: [0-9.]*/batch_fraction: 0.5/' "$TMP/s.yaml" > "$TMP/sx.yaml"
grep -q 'batch_fraction: 0.5' "$TMP/sx.yaml" || fail "could not write the other-split config"
"$RD" prepare "$TMP/sx.yaml" --out "$TMP/other" >/dev/null 2>&1 || fail "prepare other split"
if "$RD" export "$TMP/s.yaml" --out "$TMP/sx.rdsv" --data "$TMP/other" --ckpt \
    "$(ls -d "$TMP"/s/ckpt/student/step-* | tail -1)" >"$TMP/expx" 2>&1; then
    fail "export took a dataset prepared from another data configuration"
fi
grep -q "another data configuration" "$TMP/expx" && grep -q "export reads the dataset the checkpoint was trained on: give --data" "$TMP/expx" &&
    ! grep -q "remove the folder" "$TMP/expx" || fail "export, other data: $(cat "$TMP/expx")"
[ ! -e "$TMP/sx.rdsv" ] || fail "a refused export left $TMP/sx.rdsv"
# The same data configuration over other events (here another synthetic seed; in practice the log
# of a later period, prepared again): its vocabularies and standardisation are not the ones the
# model was trained with. The checkpoint records its dataset: refused, naming both.
sed 's/topics: 4, dim: 4}/topics: 4, dim: 4, seed: 9}/' "$TMP/s.yaml" > "$TMP/sy.yaml"
grep -q 'seed: 9}' "$TMP/sy.yaml" || fail "could not write the other-events config"
"$RD" prepare "$TMP/sy.yaml" --out "$TMP/other9" >/dev/null 2>&1 || fail "prepare other events"
if "$RD" export "$TMP/sy.yaml" --out "$TMP/sy.rdsv" --data "$TMP/other9" --ckpt \
    "$(ls -d "$TMP"/s/ckpt/student/step-* | tail -1)" >"$TMP/expy" 2>&1; then
    fail "export took a dataset the checkpoint was not trained on"
fi
grep -Eq "export: .*/s/ckpt/student/step-[0-9]+ was trained on another dataset \([0-9]+ events, records CRC-32C 0x[0-9a-f]+\) than the one in $TMP/other9 \(" "$TMP/expy" ||
    fail "export, other events: $(cat "$TMP/expy")"
[ ! -e "$TMP/sy.rdsv" ] || fail "a refused export left $TMP/sy.rdsv"

# --- 2. teacher sampled, students not -------------------------------------------------------------
sed -e 's/name: slurm-tiny/name: jobsamp2/' \
    -e 's/model: teacher}/model: teacher, negatives: {rate: 0.5}}/' \
    "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/t.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n' >> "$TMP/t.yaml"
drun 4 "$TMP/t.yaml" "$TMP/t"
python3 - "$TMP/t" <<'PY' || fail "teacher sampled: counters"
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/report.json"))
t, s = r["jobs"]["teacher"], r["jobs"]["student"]
tt = json.load(open(d + "/teacher.targets.json"))
st = json.load(open(d + "/student.targets.json"))
print("teacher sampled: teacher trained %d, sent %d; student trained %d, joined %d, untargeted %d,"
      " missing %d" % (t["train_samples"], tt["sent"], s["train_samples"], st["joined"],
                       st["untargeted"], st["missing"]))
assert tt["unsampled"] == 0 and tt["sent"] == t["train_samples"] < s["train_samples"]
assert st["untargeted"] > 0 and st["joined"] + st["untargeted"] == s["train_samples"]
assert st["joined"] == tt["sent"] and st["missing"] == 0 and st["late"] == 0
PY

# --- 2b. both sampled, nested (student 0.3 / 0.8 inside teacher 0.6 / 1), two ranks each, two
#         epochs in user order: every student record has its teacher's target -------------------
sed -e 's/name: slurm-tiny/name: jobsamp3/' \
    -e 's/model: student, distill: true}/model: student, distill: true, ranks: 2, negatives: {rate: 0.3, pos_rate: 0.8}}/' \
    -e 's/model: teacher}/model: teacher, ranks: 2, negatives: {rate: 0.6}}/' \
    -e 's/  eval_every: 1000/  eval_every: 1000\n  epochs: 2\n  order: user/' \
    "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/u.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n  debias_teacher: teacher\n' >> "$TMP/u.yaml"
grep -q 'order: user' "$TMP/u.yaml" || fail "config edit did not apply"
drun 6 "$TMP/u.yaml" "$TMP/u"
python3 - "$TMP/u" <<'PY' || fail "nested sampling: counters"
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/report.json"))
t, s, raw = r["jobs"]["teacher"], r["jobs"]["student"], r["jobs"]["student_raw"]
tt = json.load(open(d + "/teacher.targets.json"))
st = json.load(open(d + "/student.targets.json"))
print("nested: teacher trained %d, sent %d, unsampled %d; student trained %d, joined %d; raw %d"
      % (t["train_samples"], tt["sent"], tt["unsampled"], s["train_samples"], st["joined"],
         raw["train_samples"]))
assert s["train_samples"] < t["train_samples"] < raw["train_samples"]
assert tt["sent"] + tt["unsampled"] == t["train_samples"] and tt["sent"] == s["train_samples"]
assert st["joined"] == s["train_samples"] and st["untargeted"] == 0 and st["missing"] == 0
PY

# --- 3. replay of run 1's log by the student alone ------------------------------------------------
python3 - "$TMP/s.yaml" "$TMP/r.yaml" "$TMP/s/targets" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("    - {name: teacher, role: teacher, model: teacher}\n", "")
s = s.replace("    - {name: student_raw, role: student, model: student_raw, init_as: student, "
              "negatives: {rate: 0.3}}\n", "")
s = s.replace("distill: true,", "distill: true, teacher: teacher,")
s = s.replace("distill:\n", "distill:\n  replay: true\n  target_log: %s\n" % sys.argv[3])
open(sys.argv[2], "w").write(s)
PY
grep -q "role: teacher" "$TMP/r.yaml" && fail "replay config still has the teacher job"
drun 3 "$TMP/r.yaml" "$TMP/r"
python3 - "$TMP/s" "$TMP/r" <<'PY' || fail "replay of a sampled student"
import json, sys
live = json.load(open(sys.argv[1] + "/student.targets.json"))
rep = json.load(open(sys.argv[2] + "/student.targets.json"))
print("replay: live joined %d, replayed %d, missing %d" % (live["joined"], rep["replayed"],
                                                           rep["missing"]))
assert rep["replayed"] == live["joined"] and rep["missing"] == 0
PY

# --- 3b. replay of run 2's log (the teacher sampled) by the student alone: the log says how the
#          teacher sampled, so the records it dropped are untargeted, not missing ---------------
python3 - "$TMP/t.yaml" "$TMP/rt.yaml" "$TMP/t/targets" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("    - {name: teacher, role: teacher, model: teacher, negatives: {rate: 0.5}}\n", "")
s = s.replace("    - {name: student_raw, role: student, model: student_raw}\n", "")
s = s.replace("distill: true}", "distill: true, teacher: teacher}")
s = s.replace("distill:\n", "distill:\n  replay: true\n  target_log: %s\n" % sys.argv[3])
open(sys.argv[2], "w").write(s)
PY
grep -q "role: teacher" "$TMP/rt.yaml" && fail "replay config still has the teacher job"
grep -q "teacher: teacher}" "$TMP/rt.yaml" || fail "replay config edit did not apply"
drun 2 "$TMP/rt.yaml" "$TMP/rt"
python3 - "$TMP/t" "$TMP/rt" <<'PY' || fail "replay of a sampled teacher's log"
import json, sys
live = json.load(open(sys.argv[1] + "/student.targets.json"))
rep = json.load(open(sys.argv[2] + "/student.targets.json"))
print("replay of a sampled teacher: live joined %d untargeted %d; replayed %d untargeted %d "
      "missing %d" % (live["joined"], live["untargeted"], rep["replayed"], rep["untargeted"],
                      rep["missing"]))
assert rep["replayed"] == live["joined"] and rep["untargeted"] == live["untargeted"] > 0
assert rep["missing"] == 0
PY

# --- 4. bad rates ---------------------------------------------------------------------------------
for bad in 0 1.5 -0.2 x; do
    sed -e "s/model: teacher}/model: teacher, negatives: {rate: $bad}}/" \
        "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/bad.yaml"
    "$RD" config "$TMP/bad.yaml" >"$TMP/out" 2>&1 && fail "rate $bad accepted"
    grep -q "negatives.rate" "$TMP/out" || fail "rate $bad: message does not name the key: $(cat "$TMP/out")"
done
echo "job_sampling.sh: ok"
