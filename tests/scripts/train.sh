#!/usr/bin/env bash
# train.sh — `mpiexec -n N recdistill train CONFIG [--out DIR]` end to end on a tiny synthetic
# config: usage and exit codes, a wrong world size, a bad config and missing input (every rank
# exits non-zero with one message, no hang), a three-job launch (teacher, student, student_raw on
# one PS rank) with its report.json and per-job metrics files, the jsonl metrics format, and an
# async-PS run with a user-order batch phase.
#
#   bash tests/scripts/train.sh build/recdistill
set -u
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

# --- wrong world size: one message, every rank exits non-zero, nothing hangs ----------------
run -n 3 "$RD" train "$TMP/ok.yaml" --out "$TMP/w" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "wrong world size: exit $rc"
grep -q "launch has 3 ranks but the config needs 4" "$TMP/err" || fail "world size message: $(cat "$TMP/err")"
[ "$(grep -c "recdistill train" "$TMP/err")" -eq 1 ] || fail "world size: one message expected: $(cat "$TMP/err")"
[ ! -e "$TMP/w/report.json" ] || fail "wrong world size left a report"

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

# --- a feature the dataset does not have: a failure inside the workers aborts every rank -------
sed 's/field: weekday/field: colour/' "$TMP/ok.yaml" > "$TMP/feat.yaml"
run -n 4 "$RD" train "$TMP/feat.yaml" --out "$TMP/f" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "unknown feature: exit $rc"
grep -q "feature 'colour' is not a field of the dataset" "$TMP/err" || fail "unknown feature message: $(cat "$TMP/err")"
[ ! -e "$TMP/f/report.json" ] || fail "failed run left a report"

# --- three jobs on one PS rank --------------------------------------------------------------
run -n 4 "$RD" train "$TMP/ok.yaml" --out "$TMP/run" >"$TMP/out" 2>"$TMP/err" || fail "train: $(cat "$TMP/err")"
R="$TMP/run/report.json"
[ -s "$R" ] || fail "no report.json"
for job in teacher student student_raw; do
    grep -q "== $job (model" "$TMP/out" || fail "no final table of $job"
    [ -s "$TMP/run/$job.metrics.csv" ] || fail "no metrics file of $job"
    head -1 "$TMP/run/$job.metrics.csv" | grep -q "^phase,window,auc,gauc,logloss,calibration,samples,samples_per_s$" || fail "csv header"
    [ "$(grep -c '^stream,' "$TMP/run/$job.metrics.csv")" -eq 3 ] || fail "3 stream lines expected"
    grep -q '^holdout,-1,0\.[0-9]' "$TMP/run/$job.metrics.csv" || fail "holdout line of $job"
    grep -q '^holdout_warm,' "$TMP/run/$job.metrics.csv" || fail "warm line of $job"
    grep -q '^popularity_holdout,' "$TMP/run/$job.metrics.csv" || fail "popularity line of $job"
done
if command -v python3 >/dev/null; then
    python3 - "$R" <<'EOF' || fail "report.json content: $(cat "$R")"
import json, sys
r = json.load(open(sys.argv[1]))
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
assert r["jobs"]["teacher"]["params"] > r["jobs"]["student"]["params"]
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
echo "train.sh: ok"
