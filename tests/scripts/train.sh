#!/usr/bin/env bash
# train.sh — `mpiexec -n N recdistill train CONFIG [--out DIR]` end to end on a tiny synthetic
# config: usage and exit codes, a wrong world size, a bad config and missing input (every rank
# exits non-zero with one message, no hang), a three-job launch (teacher, student, student_raw on
# one PS rank) with its report.json and per-job metrics files, the jsonl metrics format, and an
# async-PS run with a user-order batch phase; live distillation (every target the teacher sent is
# received or counted late, the student joins them, student_raw is untouched, and the targets
# change the student: it differs from a paired twin initialised as it is), the student alone
# replaying the recorded target log (targets replayed, holdout AUC within 0.01 of the live one),
# and two teacher and two student ranks in user order (the owner rule).
#
#   bash tests/scripts/train.sh build/recdistill
set -u
. "$(cd "$(dirname "$0")" && pwd)/lib/flock.sh" # hold_lock, release_lock
RD="${1:?usage: train.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_train_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Every launch is bounded: a hang is a failure, not a stuck CI job.
run() { timeout 300 "$MPIEXEC" "$@"; }

# --- usage --------------------------------------------------------------------------------
"$RD" train --help | grep -q "usage: mpiexec -n N recdistill train" || fail "--help"
"$RD" train >/dev/null 2>&1; [ $? -eq 2 ] || fail "no argument must exit 2"
"$RD" train a.yaml b.yaml >/dev/null 2>&1; [ $? -eq 2 ] || fail "two configs must exit 2"
"$RD" --help | grep -q "train" || fail "train is not in the command list"

config() { # $1 = metrics format, $2 = data source block
    cat <<EOF
run: {name: tiny, seed: 5}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
    - {name: student, role: student, model: small, distill: true}
    - {name: student_raw, role: student, model: small_raw}
$2
ps:
  tables:
    - {name: t_user, dim: 8}
    - {name: t_item, dim: 8}
    - {name: s_user, dim: 4}
    - {name: s_item, dim: 4}
    - {name: r_user, dim: 4}
    - {name: r_item, dim: 4}
models:
  - name: big
    features:
      - {field: user, table: t_user}
      - {field: item, table: t_item}
      - {field: weekday, table: t_user}
    seq: {kind: transformer, length: 16, layers: 1, heads: 2}
    mlp: [32, 16]
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_item}
    seq: {kind: mean, length: 8}
    mlp: [16]
    two_towers: true
  - name: small_raw
    features:
      - {field: user, table: r_user}
      - {field: item, table: r_item}
    seq: {kind: mean, length: 8}
    mlp: [16]
    two_towers: true
train: {batch_size: 64, epochs: 1}
distill: {alpha: 0.5}
output: {metrics_format: $1, progress_every_s: 0}
EOF
}
SYN="data:
  source: synthetic
  history_max: 16
  synthetic: {events: 6000, users: 60, items: 300}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 3}"
config csv "$SYN" > "$TMP/ok.yaml"
config jsonl "$SYN" > "$TMP/jsonl.yaml"

# --- wrong world size: one message, a usage error (exit 2 on every rank), nothing hangs --------
run -n 3 "$RD" train "$TMP/ok.yaml" --out "$TMP/w" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 2 ] || fail "wrong world size: exit $rc, a usage error is 2"
grep -q "launch has 3 ranks but the config needs 4" "$TMP/err" || fail "world size message: $(cat "$TMP/err")"
[ "$(grep -c "recdistill train" "$TMP/err")" -eq 1 ] || fail "world size: one message expected: $(cat "$TMP/err")"
[ ! -e "$TMP/w" ] || fail "wrong world size left a run folder"

# --- bad config ------------------------------------------------------------------------------
sed 's/batch_size: 64/batch_size: -1/' "$TMP/ok.yaml" > "$TMP/bad.yaml"
run -n 4 "$RD" train "$TMP/bad.yaml" --out "$TMP/b" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "bad config: exit $rc"
grep -q "bad.yaml:.*batch_size" "$TMP/err" || fail "bad config message: $(cat "$TMP/err")"

# --- missing input data ------------------------------------------------------------------
config csv "data:
  source: movielens100k
  input: $TMP/nowhere
  history_max: 16" > "$TMP/missing.yaml"
run -n 4 "$RD" train "$TMP/missing.yaml" --out "$TMP/m" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "missing data: exit $rc"
grep -q "nowhere" "$TMP/err" || fail "missing data message: $(cat "$TMP/err")"

# --- a feature the data source does not have: refused by the config check, before the dataset
# is prepared (it used to fail inside the workers, after preparing it)
sed 's/field: weekday/field: colour/' "$TMP/ok.yaml" > "$TMP/feat.yaml"
run -n 4 "$RD" train "$TMP/feat.yaml" --out "$TMP/f" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "unknown feature: exit $rc"
grep -q "models\[[0-9]\]\.features\[[0-9]\]\.field: the synthetic source has no field 'colour'" "$TMP/err" ||
    fail "unknown feature message: $(cat "$TMP/err")"
[ ! -e "$TMP/f/report.json" ] || fail "failed run left a report"
[ ! -e "$TMP/f/data" ] || fail "a config error prepared a dataset"

# --- a model that reads no embedding table (dense inputs only): refused by the config check ---
# (it used to train to the end and then abort in its checkpoint: "0 tables requested"; then the
# workers refused it after the dataset was prepared)
perl -0pe 's/  - name: small_raw\n    features:\n.*?\n.*?\n    seq: \{kind: mean, length: 8\}\n/  - name: small_raw\n    features: []\n    seq: {stats: [1, 4]}\n/s' \
    "$TMP/ok.yaml" > "$TMP/notab.yaml"
grep -q "features: \[\]" "$TMP/notab.yaml" || fail "notab.yaml was not derived"
run -n 4 "$RD" train "$TMP/notab.yaml" --out "$TMP/nt" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "model without tables: exit $rc"
grep -q "cluster.jobs\[2\].model: job 'student_raw' trains model 'small_raw', which reads no embedding table" "$TMP/err" ||
    fail "model without tables message: $(cat "$TMP/err")"
# Refused before anything is written, not even the dataset.
[ ! -e "$TMP/nt" ] || [ -z "$(ls -A "$TMP/nt")" ] || fail "model without tables: the launch left $(ls "$TMP/nt")"

# --- divergence: a NaN loss, or a table serving NaN / inf rows, stops the launch naming the cause --
# (it used to train on and write a report of AUC 0.5, exit 0, or die with an empty message)
python3 - "$TMP/div.csv" <<'PY'
import random, sys
r = random.Random(7)
ctr = [r.random() ** 2 for _ in range(80)]  # clicks driven by the item
with open(sys.argv[1], "w") as f:
    f.write("ts,u,i,y,price\n")
    for k in range(3000):
        u, i = r.randrange(40), r.randrange(80)
        f.write(f"{100000 + k},u{u},i{i},{int(r.random() < ctr[i])},{r.random() * 100:.2f}\n")
PY
diverge() { # $1 = train: map, $2 = optimizer of table e
    cat <<EOF
run: {name: div, seed: 1}
cluster: {ps_ranks: 1, jobs: [{name: solo, role: student, model: m}]}
data:
  source: csv
  input: $TMP
  split: {batch_fraction: 0.6, holdout_fraction: 0.2, stream_windows: 2}
  schema: {path: div.csv, user_column: u, item_column: i, time_column: ts, label: "y >= 1",
           fields: [{name: price, kind: numeric, standardize: true}]}
ps: {tables: [{name: e, dim: 8, optimizer: $2}]}
models: [{name: m, features: [{field: user, table: e}, {field: item, table: e}], mlp: [16]}]
train: $1
output: {progress_every_s: 0}
EOF
}
diverge "{batch_size: 64, epochs: 10, optimizer: sgd, lr: 1000}" "{type: adagrad, lr: 0.2}" > "$TMP/div1.yaml"
diverge "{batch_size: 64, epochs: 10}" "{type: ftrl, lr: 1000, beta: 0}" > "$TMP/div2.yaml"
for k in 1 2; do
    run -n 2 "$RD" train "$TMP/div$k.yaml" --out "$TMP/div$k" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "divergence $k: exit $rc"
    [ ! -e "$TMP/div$k/report.json" ] || fail "divergence $k left a report"
    if [ $k -eq 1 ]; then
        grep -q "solo: training diverged at step [0-9]*: the loss is \(NaN\|inf\|[0-9.e+]* nats per example\) (train.lr 1000, train.optimizer sgd); lower the learning rate" "$TMP/err" ||
            fail "divergence message: $(cat "$TMP/err")"
    else
        grep -q "solo: training, step [0-9]*: table 'e' served a row holding \(NaN\|inf\): its optimizer diverged (ps.tables\[0\].optimizer: ftrl, lr 1000); lower its lr" "$TMP/err" ||
            fail "table divergence message: $(cat "$TMP/err")"
    fi
done

# An input out of scale breaks the untrained model: the first step names the field, not the lr.
awk -F, 'NR == 1 { print; next } { printf "%s,%s,%s,%s,%.6e\n", $1, $2, $3, $4, $5 * 1e7 }' \
    "$TMP/div.csv" > "$TMP/big.csv"
diverge "{batch_size: 64, epochs: 1, lr: 1e-9}" "{type: adagrad, lr: 1e-9}" |
    sed -e 's/path: div.csv/path: big.csv/' -e 's/, standardize: true//' > "$TMP/div3.yaml"
grep -q "path: big.csv" "$TMP/div3.yaml" && ! grep -q standardize "$TMP/div3.yaml" ||
    fail "div3.yaml was not derived"
run -n 2 "$RD" train "$TMP/div3.yaml" --out "$TMP/div3" >"$TMP/out" 2>"$TMP/err" &&
    fail "a model with an input of 1e9 trained"
[ ! -e "$TMP/div3/report.json" ] || fail "input out of scale left a report"
grep -q "solo: the untrained model's loss is [0-9.e+]* nats per example at the first step, before any update, so no learning rate is the cause: numeric input 'price' (|x| up to [0-9.e+]*) of this batch is out of scale; set standardize: true (or log1p: true) on it in the schema" "$TMP/err" ||
    fail "input out of scale: $(cat "$TMP/err")"

# A standardized input whose batch period is constant meets values of |z| up to 10^6 in the
# stream: prepare warns, and the divergence names the field rather than the learning rate.
awk -F, 'NR == 1 { print; next } { printf "%s,%s,%s,%s,%s\n", $1, $2, $3, $4, NR <= 1801 ? "5" : $5 * 1e4 }' \
    "$TMP/div.csv" > "$TMP/shift.csv"
diverge "{batch_size: 64, epochs: 1}" "{type: adagrad, lr: 0.2}" |
    sed -e 's/path: div.csv/path: shift.csv/' > "$TMP/div4.yaml"
grep -q "path: shift.csv" "$TMP/div4.yaml" || fail "div4.yaml was not derived"
run -n 2 "$RD" train "$TMP/div4.yaml" --out "$TMP/div4" >"$TMP/out" 2>"$TMP/err" &&
    fail "a model with a standardized input of |z| 1e6 trained"
[ ! -e "$TMP/div4/report.json" ] || fail "input out of scale in the stream left a report"
grep -q "WARN field 'price': standardized with the batch period's mean 5 and std 1 (1: the batch period holds one value), a later event (at .*) standardizes to |z| = [0-9.e+]*: the models train on values within a few units" "$TMP/err" ||
    fail "no warning of prepare for a standardized input out of scale later: $(cat "$TMP/err")"
grep -q "solo: training diverged at step [0-9]*: the loss is .*, and numeric input 'price' (|x| up to [0-9.e+]*) of this batch is out of scale (as the model reads it, after log1p and standardize): set log1p: true on it" "$TMP/err" ||
    fail "input out of scale in the stream: $(cat "$TMP/err")"

# --- one class only: a job whose own sampling keeps positives only, and a dataset sampled so --------
diverge "{batch_size: 64, epochs: 1}" "{type: adagrad, lr: 0.2}" |
    sed 's/{name: solo, role: student, model: m}/{name: solo, role: student, model: m, negatives: {rate: 1e-9}}/' > "$TMP/one1.yaml"
grep -q "rate: 1e-9" "$TMP/one1.yaml" || fail "one1.yaml was not derived"
run -n 2 "$RD" train "$TMP/one1.yaml" --out "$TMP/one1" >"$TMP/out" 2>"$TMP/err" && fail "a job of one class trained"
grep -q "job 'solo': its sampling (negatives rate 1e-09, pos_rate 1) keeps positives only of the batch period's [0-9]* events: training needs both classes" "$TMP/err" ||
    fail "one-class job message: $(cat "$TMP/err")"
[ ! -e "$TMP/one1/report.json" ] || fail "one-class job left a report"
diverge "{batch_size: 64, epochs: 1}" "{type: adagrad, lr: 0.2}" |
    sed 's/^  source: csv$/  source: csv\n  negatives: {rate: 1e-9}/' > "$TMP/one2.yaml"
grep -q "negatives: {rate: 1e-9}" "$TMP/one2.yaml" || fail "one2.yaml was not derived"
"$RD" prepare "$TMP/one2.yaml" --out "$TMP/one2" >"$TMP/out" 2>"$TMP/err" && fail "a dataset of one class was prepared"
grep -q "all [0-9]* events kept have label 1 ([0-9]* of 3000 before negative sampling, data.negatives rate 1e-09, pos_rate 1): training needs both classes" "$TMP/err" ||
    fail "one-class dataset message: $(cat "$TMP/err")"
[ ! -e "$TMP/one2" ] || fail "a one-class prepare left $TMP/one2"

# --- three jobs on one PS rank --------------------------------------------------------------
run -n 4 "$RD" train "$TMP/ok.yaml" --out "$TMP/run" >"$TMP/out" 2>"$TMP/err" || fail "train: $(cat "$TMP/err")"
R="$TMP/run/report.json"
[ -s "$R" ] || fail "no report.json"
head -c 8 "$TMP/run/auc_windows.png" | od -An -tx1 | tr -d ' \n' | grep -qx "89504e470d0a1a0a" ||
    fail "no PNG plot of the windows' AUC"
for job in teacher student student_raw; do
    grep -q "^$job  *holdout  *0\.[0-9]" "$TMP/out" || fail "no final table row of $job"
    [ -s "$TMP/run/$job.metrics.csv" ] || fail "no metrics file of $job"
    head -1 "$TMP/run/$job.metrics.csv" | grep -q "^phase,window,auc,gauc,logloss,calibration,samples,samples_per_s$" || fail "csv header"
    [ "$(grep -c '^stream,' "$TMP/run/$job.metrics.csv")" -eq 3 ] || fail "3 stream lines expected"
    grep -q '^holdout,-1,0\.[0-9]' "$TMP/run/$job.metrics.csv" || fail "holdout line of $job"
    grep -q '^holdout_warm,' "$TMP/run/$job.metrics.csv" || fail "warm line of $job"
    grep -q '^popularity_holdout,' "$TMP/run/$job.metrics.csv" || fail "popularity line of $job"
    # Throughput is measured for the holdout pass only: the warm slice (scored in that pass) and
    # the popularity baseline carry nan, not a copy of the holdout's figure (nor 0).
    awk -F, '$1 == "holdout" && !($8 > 0) {exit 1}
             ($1 == "holdout_warm" || $1 ~ /^popularity_/) && $8 != "nan" {exit 1}' \
        "$TMP/run/$job.metrics.csv" || fail "samples_per_s of the derived rows of $job: $(tail -4 "$TMP/run/$job.metrics.csv")"
done
if command -v python3 >/dev/null; then
    python3 - "$R" "$TMP/run" <<'EOF' || fail "report.json content: $(cat "$R")"
import csv, json, math, sys
def bad(c):
    raise ValueError("not JSON: " + c)
r = json.load(open(sys.argv[1]), parse_constant=bad)  # NaN / Infinity are not JSON: null
for job in ("teacher", "student", "student_raw"):
    for part in ("holdout", "warm"):
        m = r[part][job]
        for k in ("auc", "gauc", "logloss", "calibration"):
            assert isinstance(m[k], float), (part, job, k)
        assert 0.3 < m["auc"] < 1.0
    assert r["holdout"][job]["samples"] == 600
    j = r["jobs"][job]
    assert j["params"] > 0 and j["flops_per_sample"] > 0 and j["wall_s"] > 0
    assert j["samples_per_s"] > 0 and j["train_samples"] == 4800 + 600
    assert len(j["windows"]) == 3
    s = r["stream"][job]
    aucs = [w["auc"] for w in j["windows"] if w["auc"] is not None]
    assert abs(s["auc"] - sum(aucs) / len(aucs)) < 1e-12, (s, aucs)
    # The metrics file holds the report's figures to the last digit (both read back exactly).
    rows = list(csv.DictReader(open("%s/%s.metrics.csv" % (sys.argv[2], job))))
    win = [x for x in rows if x["phase"] == "stream"]
    ho = [x for x in rows if x["phase"] == "holdout"]
    for a, b in list(zip(win, j["windows"])) + [(ho[0], r["holdout"][job])]:
        for k in ("auc", "gauc", "logloss", "calibration"):
            v = float(a[k])
            assert (b[k] is None and math.isnan(v)) or v == b[k], (job, k, a, b)
    assert s["samples"] == sum(w["samples"] for w in j["windows"])
    assert r["flops_per_sample"][job] == j["flops_per_sample"] and r["params"][job] == j["params"]
assert r["jobs"]["teacher"]["params"] > r["jobs"]["student"]["params"]
e = r["eta"]
assert (e["teacher"], e["student"], e["student_raw"]) == ("teacher", "student", "student_raw"), e
for part in ("holdout", "warm", "stream"):
    h = e[part]
    # eta recomputed from the AUCs printed beside it is the printed eta, exactly (six decimals
    # gave 0.766548 back for a printed 0.766537).
    gap = h["teacher_auc"] - h["student_raw_auc"]
    assert h["teacher_gap"] == gap and h["student_gain"] == h["student_auc"] - h["student_raw_auc"], h
    if gap > 0:
        assert h["eta"] == (h["student_auc"] - h["student_raw_auc"]) / gap, h
    else:
        assert h["eta"] is None, h
    for role in ("teacher", "student", "student_raw"):
        assert h[role + "_auc"] == r[part][e[role]]["auc"], (part, role)
assert 0.3 < r["popularity"]["holdout"]["auc"] < 1.0
assert r["popularity"]["warm"]["samples"] <= 600
EOF
else
    for k in '"holdout"' '"warm"' '"popularity"' '"flops_per_sample"' '"samples_per_s"' '"params"'; do
        grep -q "$k" "$R" || fail "report.json lacks $k"
    done
fi
# The dataset was prepared by the run: a second run reuses it.
[ -s "$TMP/run/data/events.bin" ] || fail "dataset not prepared under the run folder"

# --- jsonl metrics ---------------------------------------------------------------------------
run -n 4 "$RD" train "$TMP/jsonl.yaml" --out "$TMP/run" >/dev/null 2>"$TMP/err" || fail "jsonl: $(cat "$TMP/err")"
grep -q '^{"phase": "holdout", "window": -1, "auc": 0\.' "$TMP/run/student.metrics.jsonl" || fail "jsonl holdout line"
# --- async PS and user-order batch phase -----------------------------------------------------
sed -e 's/^ps:$/ps:\n  sync: false/' -e 's/epochs: 1}/epochs: 1, order: user}/' "$TMP/ok.yaml" > "$TMP/async.yaml"
grep -q "sync: false" "$TMP/async.yaml" && grep -q "order: user" "$TMP/async.yaml" || fail "async config"
run -n 4 "$RD" train "$TMP/async.yaml" --out "$TMP/async" >"$TMP/out" 2>"$TMP/err" || fail "async: $(cat "$TMP/err")"
grep -q "async mode" "$TMP/err" || fail "async: PS not in async mode"
grep -q '"train_samples": 5400' "$TMP/async/report.json" || fail "async: train_samples"

# --- distillation: teacher -> student targets, live and replayed ----------------------------------
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
command -v python3 >/dev/null || { echo "python3 not found: distillation checks skipped"; echo "train.sh: ok"; exit 0; }
D="$TMP/d"; mkdir -p "$D"
# field FILE KEY...: a value of a JSON file (python3 reads it; a missing key prints nothing).
field() {
    python3 - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    d = d[k] if isinstance(d, dict) and k in d else None
print("" if d is None else d)
PY
}

drun() { # N config out: the launch, 120 s at most (a hang is a failure)
    timeout 120 "$MPIEXEC" -n "$1" "$RD" train "$2" --out "$3" >"$D/out" 2>"$D/err"
    local rc=$?
    [ $rc -eq 0 ] || fail "train $2 (exit $rc): $(grep -v INFO "$D/err" | head -20)"
    if grep -q "WARN\|ERROR" "$D/err"; then fail "train $2 warned: $(grep "WARN\|ERROR" "$D/err")"; fi
}

# --- live: teacher + student (distill) + student_raw --------------------------------------------
sed -e 's/name: slurm-tiny/name: train-tiny/' "$SRC/tests/data/slurm-tiny.yaml" > "$D/live.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n' >> "$D/live.yaml"
drun 4 "$D/live.yaml" "$D/live"
T="$D/live/teacher.targets.json" S="$D/live/student.targets.json"
[ -f "$D/live/report.json" ] || fail "no report.json"
[ -f "$D/live/student.metrics.csv" ] || fail "no student metrics"
[ -f "$T" ] && [ -f "$S" ] || fail "no targets files: $(ls "$D/live")"
[ -e "$D/live/student_raw.targets.json" ] && fail "student_raw has targets"
sent=$(field "$T" sent) logged=$(field "$T" logged)
recv=$(field "$S" received) late=$(field "$S" late) joined=$(field "$S" joined)
missing=$(field "$S" missing)
echo "live: sent $sent logged $logged received $recv late $late joined $joined missing $missing"
[ "$sent" -gt 0 ] || fail "teacher sent no targets"
[ "$sent" -eq $((recv + late)) ] || fail "sent $sent != received $recv + late $late"
python3 - "$D/live/report.json" "$sent" "$recv" "$late" <<'PY' || fail "report.json targets disagree"
import json, sys
r = json.load(open(sys.argv[1]))
t = r["targets"]
assert (t["sent"], t["received"], t["late"]) == tuple(map(int, sys.argv[2:5])), t
assert r["jobs"]["teacher"]["targets"]["role"] == "teacher"
assert r["jobs"]["student"]["targets"]["joined"] > 0
assert "targets" not in r["jobs"]["student_raw"]
PY
[ "$logged" -eq "$sent" ] || fail "logged $logged != sent $sent"
[ "$joined" -gt 0 ] || fail "student joined no targets"
# Every training example of the student got a target or was counted missing.
tsamples=$(field "$D/live/report.json" jobs student train_samples)
[ $((joined + missing)) -eq "$tsamples" ] || fail "joined + missing != student train_samples $tsamples"
auc_live=$(field "$D/live/report.json" holdout student auc)
[ -n "$auc_live" ] || fail "no student holdout auc"

# The distillation term is used, not only joined: with student_raw a paired twin of the student
# (the same dense and embedding initialisation, the same schedule and data: bitwise the same
# metrics without distillation, see twin_init.sh), the two differ only through the targets. A
# trainer that joins the targets but weighs them by 0 (distill.alpha ignored) ends with the
# student's metrics equal to student_raw's.
sed -e 's/model: student_raw}/model: student_raw, init_as: student}/' \
    -e 's/{name: r_emb, dim: 4}/{name: r_emb, dim: 4, init_as: s_emb}/' "$D/live.yaml" > "$D/twin.yaml"
grep -q "init_as: student}" "$D/twin.yaml" && grep -q "init_as: s_emb" "$D/twin.yaml" ||
    fail "twin.yaml was not derived"
drun 4 "$D/twin.yaml" "$D/twin"
python3 - "$D/twin/report.json" <<'PY' || fail "the distilled student equals its undistilled twin"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["jobs"]["student"]["targets"]["joined"] > 0
st, raw = r["holdout"]["student"], r["holdout"]["student_raw"]
diff = {k: (st[k], raw[k]) for k in ("auc", "logloss", "calibration") if st[k] != raw[k]}
print("twin: student holdout auc %.6f logloss %.6f, student_raw auc %.6f logloss %.6f" %
      (st["auc"], st["logloss"], raw["auc"], raw["logloss"]))
assert diff, "holdout auc, logloss and calibration all equal: the targets had no effect"
PY

# student_raw is unaffected by distillation: the same launch without a distilled student (and
# without the distill: section appended above, which the config refuses when nothing distils).
sed -e 's/model: student, distill: true}/model: student}/' -e '/^distill:$/,$d' "$D/live.yaml" > "$D/nod.yaml"
drun 4 "$D/nod.yaml" "$D/nod"
[ "$(field "$D/nod/report.json" holdout student_raw auc)" = \
  "$(field "$D/live/report.json" holdout student_raw auc)" ] || fail "student_raw changed"
[ -e "$D/nod/teacher.targets.json" ] && fail "teacher without students has targets"

# --- distill.start_epoch 1 with two epochs: the first epoch's targets are not used ----------------
# Trained samples of the used phases (epoch 2 + stream) are each joined or missing: as many as the
# one-epoch live run trained in all.
sed -e 's/  eval_every: 1000/  eval_every: 1000\n  epochs: 2/' -e 's/^distill:$/distill:\n  start_epoch: 1/' \
    "$D/live.yaml" > "$D/se.yaml"
grep -q "start_epoch: 1" "$D/se.yaml" && grep -q "  epochs: 2" "$D/se.yaml" || fail "start_epoch config"
drun 4 "$D/se.yaml" "$D/se"
S="$D/se/student.targets.json"
j=$(field "$S" joined) m=$(field "$S" missing) u=$(field "$S" unused) l=$(field "$S" late)
echo "start_epoch 1: joined $j missing $m unused $u late $l (live trained $tsamples)"
[ $((j + m)) -eq "$tsamples" ] || fail "start_epoch: joined $j + missing $m != $tsamples"
# The student waits for the teacher's end of each unused phase: the first epoch's targets all
# arrive within it and are unused (a late one would mean the student ran ahead).
nb=$(( $(field "$D/se/report.json" jobs student train_samples) - tsamples ))
[ "$u" -eq "$nb" ] || fail "start_epoch: unused $u != first-epoch samples $nb (late $l)"

# --- replay: the student alone, from the live run's target log ---------------------------------
python3 - "$D/live.yaml" "$D/replay.yaml" "$D/live/targets" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("    - {name: teacher, role: teacher, model: teacher}\n", "")
s = s.replace("    - {name: student_raw, role: student, model: student_raw}\n", "")
s = s.replace("distill: true}", "distill: true, teacher: teacher}")
s = s.replace("distill:\n", "distill:\n  replay: true\n  target_log: %s\n" % sys.argv[3])
open(sys.argv[2], "w").write(s)
PY
drun 2 "$D/replay.yaml" "$D/replay"
R="$D/replay/student.targets.json"
[ -f "$R" ] || fail "no replay targets file"
replayed=$(field "$R" replayed)
auc_replay=$(field "$D/replay/report.json" holdout student auc)
echo "replay: replayed $replayed, student auc live $auc_live replay $auc_replay"
[ "$replayed" -gt 0 ] || fail "nothing replayed"
[ "$replayed" -eq "$joined" ] || fail "replayed $replayed != live joined $joined"
python3 -c "import sys; sys.exit(0 if abs($auc_live - $auc_replay) <= 0.01 else 1)" ||
    fail "replay auc $auc_replay differs from live $auc_live"
# A replay of a log that does not exist fails cleanly.
sed -e "s#target_log: .*#target_log: $D/none#" "$D/replay.yaml" > "$D/bad.yaml"
timeout 120 "$MPIEXEC" -n 2 "$RD" train "$D/bad.yaml" --out "$D/bad" >/dev/null 2>"$D/err" &&
    fail "replay of a missing log must fail"
grep -q "none" "$D/err" || fail "missing log message: $(cat "$D/err")"
# A replay on other data (another run seed draws other synthetic events) is refused: the log
# records the dataset its teacher trained on, and its sample ids would join unrelated events.
timeout 120 "$MPIEXEC" -n 2 "$RD" train "$D/replay.yaml" --seed 8 --out "$D/other" >/dev/null \
    2>"$D/err" && fail "replay of a log of other data must fail"
grep -q "for another dataset" "$D/err" || fail "other-data replay message: $(cat "$D/err")"
# tools/replay-sweep.sh on a run in the config's default run folder (runs/train-tiny, as the
# README's runs/demo): the log path it wrote into the point's config lay under that folder and
# was moved with it to the point's --out ("no such log").
mkdir -p "$D/cwd/runs" && cp -r "$D/live" "$D/cwd/runs/train-tiny"
(cd "$D/cwd" && RD="$RD" timeout 300 bash "$SRC/tools/replay-sweep.sh" -s 7 "$D/live.yaml" \
    runs/train-tiny "$D/cwd/rs" 1:1 > "$D/rs.out" 2> "$D/rs.err") ||
    fail "replay-sweep on the default run folder: $(cat "$D/rs.err" "$D"/cwd/rs/*.log 2>/dev/null | tail -5)"
grep -q "^1:1 .*holdout AUC 0\.[0-9]" "$D/rs.out" || fail "replay-sweep output: $(cat "$D/rs.out")"
# A student of two ranks: the points launched ps_ranks + 1 ranks and every one failed.
sed 's/{name: student, role: student, model: student, distill: true}/{name: student, role: student, model: student, distill: true, ranks: 2}/' \
    "$D/live.yaml" > "$D/live2.yaml"
grep -q "distill: true, ranks: 2" "$D/live2.yaml" || fail "could not write live2.yaml"
# An undistilled point listed first ("raw": its config names no teacher) took the live run's
# teacher line with it (a traceback, and with -k no summary).
(cd "$D/cwd" && RD="$RD" timeout 300 bash "$SRC/tools/replay-sweep.sh" -s 7 "$D/live2.yaml" \
    runs/train-tiny "$D/cwd/rs2" raw 1:1 > "$D/rs.out" 2> "$D/rs.err") ||
    fail "replay-sweep with a 2-rank student: $(cat "$D/rs.err" "$D"/cwd/rs2/*.log 2>/dev/null | tail -5)"
grep -q "^1:1 .*holdout AUC 0\.[0-9]" "$D/rs.out" || fail "replay-sweep 2 ranks output: $(cat "$D/rs.out")"
grep -q "^teacher .*(the live run)" "$D/rs.out" && ! grep -q Traceback "$D/rs.err" ||
    fail "replay-sweep raw first: $(cat "$D/rs.out" "$D/rs.err")"
# A replay of a log still being written (its writer.lock held: here by flock(1)) is refused; it
# used to train with most targets missing and exit 0.
if command -v flock >/dev/null; then
    hold_lock "$D/live/targets/writer.lock"
    timeout 120 "$MPIEXEC" -n 2 "$RD" train "$D/replay.yaml" --out "$D/busy" >/dev/null \
        2>"$D/err" && fail "replay of a log being written must fail"
    release_lock
    grep -q "is still being written" "$D/err" || fail "busy-log replay message: $(cat "$D/err")"
    [ ! -e "$D/busy" ] || fail "a refused replay left its run folder: $(find "$D/busy" | head -3)"
fi
[ -e "$D/other/student.metrics.csv" ] && fail "other-data replay left metrics"
# So is a live teacher appending to a log that holds its targets for other data.
sed -e "s#^distill:#distill:\n  target_log: $D/live/targets#" "$D/live.yaml" > "$D/reuse.yaml"
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$D/reuse.yaml" --seed 8 --out "$D/reuse" >/dev/null \
    2>"$D/err" && fail "a teacher writing into a log of other data must fail"
grep -q "for another dataset" "$D/err" || fail "reused-log message: $(cat "$D/err")"
[ -e "$D/reuse/student_raw.metrics.csv" ] || [ -e "$D/reuse/ckpt" ] &&
    fail "a launch that failed at its target log left outputs: $(ls "$D/reuse")"
# A target log that cannot be made (under a regular file) fails the launch before any job
# trains, with the reason; student_raw, which has no target log, writes nothing either.
: > "$D/afile"
sed -e "s#^distill:#distill:\n  target_log: $D/afile/targets#" "$D/live.yaml" > "$D/nolog.yaml"
timeout 120 "$MPIEXEC" -n 4 "$RD" train "$D/nolog.yaml" --out "$D/nolog" >/dev/null 2>"$D/err" &&
    fail "a target log under a regular file must fail"
grep -q "afile.*not a folder" "$D/err" || fail "unmakeable log message: $(cat "$D/err")"
ls "$D/nolog" | grep -qv '^data$' && fail "a launch that failed at its target log left: $(ls "$D/nolog")"

# --- negative sampling: cross-debias on and off ---------------------------------------------------
# Negatives kept at 0.3: the dataset says so, the student projects the teacher's logits through
# its calibration (debias on) or takes them raw (off). Only the distilled student may change.
sed -e 's/^  history_max: 8$/  history_max: 8\n  negatives: {rate: 0.3}/' "$D/live.yaml" > "$D/neg.yaml"
sed -e 's/^distill:$/distill:\n  debias: false/' "$D/neg.yaml" > "$D/negoff.yaml"
grep -q "negatives: {rate: 0.3}" "$D/neg.yaml" && grep -q "debias: false" "$D/negoff.yaml" ||
    fail "sampled configs"
drun 4 "$D/neg.yaml" "$D/neg"
drun 4 "$D/negoff.yaml" "$D/negoff"
python3 - "$D/neg/report.json" "$D/negoff/report.json" "$D/live/report.json" <<'PY' || fail "sampled runs"
import json, sys
on, off, full = (json.load(open(p)) for p in sys.argv[1:4])
# About 0.3 of the negatives are left (base CTR 0.3): far fewer training samples than unsampled.
n_on, n_full = on["jobs"]["student"]["train_samples"], full["jobs"]["student"]["train_samples"]
assert 0.3 * n_full < n_on < 0.75 * n_full, (n_on, n_full)
assert on["jobs"]["student"]["targets"]["joined"] > 0
assert on["holdout"]["student_raw"]["auc"] == off["holdout"]["student_raw"]["auc"]
assert on["holdout"]["teacher"]["auc"] == off["holdout"]["teacher"]["auc"]
assert on["holdout"]["student"]["auc"] != off["holdout"]["student"]["auc"], "debias had no effect"
print("sampled: student auc debias on %.4f off %.4f, raw %.4f" % (
    on["holdout"]["student"]["auc"], off["holdout"]["student"]["auc"],
    on["holdout"]["student_raw"]["auc"]))
PY

# --- two teacher and two student ranks, two epochs in user order -------------------------------
sed -e 's/model: teacher}/model: teacher, ranks: 2}/' -e 's/distill: true}/distill: true, ranks: 2}/' \
    -e 's/  eval_every: 1000/  eval_every: 1000\n  epochs: 2\n  order: user/' \
    "$D/live.yaml" > "$D/multi.yaml"
drun 6 "$D/multi.yaml" "$D/multi"
T="$D/multi/teacher.targets.json" S="$D/multi/student.targets.json"
sent=$(field "$T" sent) recv=$(field "$S" received) late=$(field "$S" late)
echo "multi: sent $sent received $recv late $late joined $(field "$S" joined)"
[ "$sent" -gt 0 ] && [ "$sent" -eq $((recv + late)) ] || fail "multi: sent $sent received $recv late $late"
echo "train.sh: ok"
