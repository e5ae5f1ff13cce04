#!/usr/bin/env bash
# score.sh — `recdistill score` end to end:
#   1. the tiny teacher + student run (tests/data/slurm-tiny.yaml, 4 ranks): the student's and
#      the teacher's bundles score the holdout with the AUC, GAUC and sample count `train`
#      reported for each job (report.json); --out writes one CSV row per record, --json the
#      summary; the report's warm slice holds the holdout events whose user has >= 20 earlier
#      events; the splits cover the dataset (batch + stream + holdout = all); --limit N scores
#      N records; --out - puts the CSV on stdout and the summary on stderr; the synthetic data
#      has no raw ids: user_id and item_id are empty, and the summary says so;
#   2. a CSV log with a standardised numeric field: a folder prepared from other data (the same
#      log with another split, so other statistics) is standardised again with the bundle's and
#      scores every record as the training folder does; one with other prices is scored too;
#      one whose field has another transform (no log1p) is refused, naming it, nothing written;
#      every CSV row carries the log's own user and item ids (ids.csv of the dataset), which
#      join it to exactly one row of the log (user, item, time, label), ids with a comma or a
#      quote included; an ids.csv of another dataset is refused, nothing written; a log in
#      milliseconds, in two parts, that repeats (user, item, second): each row names its log
#      file and line (lines.csv of the dataset), which join it to exactly that row of the log
#      (ts is the log's time in unix seconds); a lines.csv of another dataset is refused;
#      an output over the log (a part of it, under another name) is refused, the log intact;
#   3. a model reading instance tokens searched by series (configs/synthetic-iat-series.yaml,
#      made small): with --run the bundle reads the run's store and scores the holdout with the
#      reported AUC; without a store it is refused, with another run's store it stops at the
#      first record (the store is not the model's) and leaves no output; an output inside
#      the store (over its MANIFEST) is refused, the store intact;
#   4. bad arguments: usage errors exit 2, bad inputs exit 1 naming them, nothing written.
#
#   bash tests/scripts/score.sh build/recdistill
set -u
RD="${1:?usage: score.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_score_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

drun() { # N config out [--set ...]: one launch, 120 s at most (a hang is a failure)
    local n="$1" cfg="$2" out="$3"
    shift 3
    timeout 120 "$MPIEXEC" -n "$n" "$RD" train "$cfg" --out "$out" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [ $rc -eq 0 ] || fail "train $cfg (exit $rc): $(grep -v INFO "$TMP/err" | head -20)"
}
# expect CODE PATTERN cmd...: the command exits CODE and its stderr holds PATTERN (grep -E)
expect() {
    local code="$1" pat="$2"
    shift 2
    timeout 60 "$@" >"$TMP/o" 2>"$TMP/e"
    local rc=$?
    [ $rc -eq "$code" ] || fail "$* : exit $rc, expected $code: $(cat "$TMP/e")"
    [ -z "$pat" ] || grep -Eq -- "$pat" "$TMP/e" || fail "$* : stderr lacks '$pat': $(cat "$TMP/e")"
}
# same JOB JSON REPORT: the summary of `score --json` equals the report's holdout figures of JOB
same() {
    python3 - "$@" <<'PY' || fail "score of $1 differs from the report"
import json, sys
job, js, rep = sys.argv[1:4]
s = json.load(open(js))
h = json.load(open(rep))["holdout"][job]
print("%s: score AUC %.6f GAUC %.6f n %d; report AUC %.6f GAUC %.6f n %d"
      % (job, s["auc"], s["gauc"], s["records"], h["auc"], h["gauc"], h["samples"]))
assert s["records"] == h["samples"], "record counts differ"
# The logits equal the trainer's up to the rounding of its batched matmuls (the logloss says so
# to 1e-9); scores tied in one and not in the other move the AUC by a few 1e-5 (a two-tower
# student over user and item only has many ties) and a user's GAUC a little more.
assert abs(s["logloss"] - h["logloss"]) < 1e-7, "logloss differs"
assert abs(s["auc"] - h["auc"]) < 1e-3 and abs(s["gauc"] - h["gauc"]) < 5e-3, "AUC differs"
PY
}

# --- 1. the tiny run -------------------------------------------------------------------------
C="$SRC/tests/data/slurm-tiny.yaml"
drun 4 "$C" "$TMP/t"
"$RD" export "$C" --run "$TMP/t" --out "$TMP/student.rdsv" >/dev/null 2>"$TMP/e" ||
    fail "export student: $(cat "$TMP/e")"
"$RD" export "$C" --run "$TMP/t" --job teacher --out "$TMP/teacher.rdsv" >/dev/null 2>"$TMP/e" ||
    fail "export teacher: $(cat "$TMP/e")"
for job in student teacher; do
    "$RD" score "$TMP/$job.rdsv" --run "$TMP/t" --out "$TMP/$job.csv" --json "$TMP/$job.json" \
        >"$TMP/$job.sum" 2>"$TMP/e" || fail "score $job: $(cat "$TMP/e")"
    grep -q "^scored [0-9]* records (holdout split of $TMP/t/data)" "$TMP/$job.sum" ||
        fail "score $job summary: $(cat "$TMP/$job.sum")"
    grep -q "^AUC 0\.[0-9]*  GAUC" "$TMP/$job.sum" || fail "no AUC line: $(cat "$TMP/$job.sum")"
    same "$job" "$TMP/$job.json" "$TMP/t/report.json"
    n=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['records'])" "$TMP/$job.json")
    [ "$(head -1 "$TMP/$job.csv")" = "record,user_key,item_key,ts,label,logit,score,user_id,item_id,log_file,log_line" ] ||
        fail "CSV header: $(head -1 "$TMP/$job.csv")"
    [ "$(($(wc -l <"$TMP/$job.csv") - 1))" -eq "$n" ] || fail "$job: CSV rows != $n records"
    grep -q "^no raw ids in $TMP/t/data (no ids.csv: a synthetic source" "$TMP/$job.sum" ||
        fail "score $job: the summary does not say the ids are missing: $(cat "$TMP/$job.sum")"
    grep -q "^no log lines in $TMP/t/data (no lines.csv: a synthetic source" "$TMP/$job.sum" ||
        fail "score $job: the summary does not say the log lines are missing: $(cat "$TMP/$job.sum")"
done
# The CSV's scores are the sigmoid of its logits, its labels 0/1, its records the holdout's.
python3 - "$TMP/student.csv" <<'PY' || fail "student CSV"
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rec = [int(r["record"]) for r in rows]
assert rec == list(range(rec[0], rec[0] + len(rec))), "records not consecutive"
for r in rows:
    assert r["user_id"] == r["item_id"] == r["log_file"] == r["log_line"] == "", r  # synthetic
    assert r["label"] in ("0", "1")
    s = 1 / (1 + math.exp(-float(r["logit"])))
    assert abs(s - float(r["score"])) < 1e-6, r
assert len(set(r["logit"] for r in rows)) > 10, "the scores do not vary"
PY
# The splits: batch + stream + holdout = all; --limit; --out - (CSV on stdout).
for s in batch stream all; do
    "$RD" score "$TMP/student.rdsv" --data "$TMP/t/data" --split "$s" --json "$TMP/$s.json" \
        >/dev/null 2>"$TMP/e" || fail "score --split $s: $(cat "$TMP/e")"
done
# The warm slice of the report (train, both jobs and the popularity baseline): the holdout
# events whose user has >= 20 earlier events in the log (RD_TRAINER_WARM_MIN), counted here from
# the records of --split all in log order.
"$RD" score "$TMP/student.rdsv" --data "$TMP/t/data" --split all --out "$TMP/all.csv" \
    >/dev/null 2>"$TMP/e" || fail "score --split all --out: $(cat "$TMP/e")"
python3 - "$TMP" <<'PY' || fail "warm slice"
import csv, json, sys
d = sys.argv[1]
pos, seen = {}, {}
for r in csv.DictReader(open(d + "/all.csv")):
    u = r["user_key"]
    pos[int(r["record"])] = seen.get(u, 0)
    seen[u] = seen.get(u, 0) + 1
hold = [int(r["record"]) for r in csv.DictReader(open(d + "/student.csv"))]
want = sum(pos[i] >= 20 for i in hold)
rep = json.load(open(d + "/t/report.json"))
got = {j: rep["warm"][j]["samples"] for j in ("student", "teacher")}
got["popularity"] = rep["popularity"]["warm"]["samples"]
print("warm: %d of %d holdout events (users with >= 20 earlier ones); report %s" % (want, len(hold), got))
assert 0 < want < len(hold), "the warm slice is empty or the whole holdout: the check could not fail"
assert all(v == want for v in got.values()), "warm slice counts differ"
PY
python3 - "$TMP" <<'PY' || fail "split counts"
import json, sys
n = {s: json.load(open("%s/%s.json" % (sys.argv[1], s)))["records"] for s in ("batch", "stream", "all")}
h = json.load(open(sys.argv[1] + "/student.json"))["records"]
print("splits: batch %d, stream %d, holdout %d, all %d" % (n["batch"], n["stream"], h, n["all"]))
assert n["batch"] + n["stream"] + h == n["all"] == 4000 and min(n.values()) > 0
PY
"$RD" score "$TMP/student.rdsv" --data "$TMP/t/data" --limit 7 --out - >"$TMP/lim.csv" 2>"$TMP/lim.err" ||
    fail "score --limit 7 --out -: $(cat "$TMP/lim.err")"
[ "$(wc -l <"$TMP/lim.csv")" -eq 8 ] || fail "--limit 7 --out -: $(cat "$TMP/lim.csv")"
grep -q "^scored 7 records" "$TMP/lim.err" || fail "--out -: the summary belongs on stderr"
# One record has one class: the figures undefined on it say n/a (and why), never "nan".
"$RD" score "$TMP/student.rdsv" --data "$TMP/t/data" --limit 1 >"$TMP/one.sum" 2>"$TMP/e" ||
    fail "score --limit 1: $(cat "$TMP/e")"
grep -q "^AUC n/a  GAUC n/a (0 users)  logloss [0-9.]*  calibration [0-9n/a.]*  mean score [0-9.]*  positives [01]$" \
    "$TMP/one.sum" && grep -q "^(n/a: undefined on these records: AUC needs both classes" "$TMP/one.sum" &&
    ! grep -qi nan "$TMP/one.sum" || fail "score --limit 1: $(cat "$TMP/one.sum")"
echo "ok: the tiny run's bundles score the holdout as train reported"

# --- 2. numeric inputs of other data -----------------------------------------------------------
python3 - "$TMP" <<'PY'
import os, random, sys
d = sys.argv[1]
rng = random.Random(5)
rows = []
for k in range(3000):
    u, i = rng.randrange(60), rng.randrange(120)
    price = round(rng.lognormvariate(1.0, 0.8), 2)
    y = int(rng.random() < (0.6 if (u + i) % 3 == 0 else 0.2) * (1.2 if price < 3 else 0.8))
    rows.append((1000 + k, u, i, y, price))
for name, f in (("log", 1.0), ("other", 3.0)):
    os.makedirs("%s/%s" % (d, name))
    with open("%s/%s/log.csv" % (d, name), "w") as out:
        out.write("t,u,i,y,price\n")
        for t, u, i, y, p in rows:
            # Some items' ids hold a comma or a quote (quoted, as RFC 4180 has it).
            iid = {0: '"i0, large"', 1: '"i1 ""x"""'}.get(i, "i%d" % i)
            out.write("%d,%d,%s,%d,%.2f\n" % (t, u, iid, y, p * f))
PY
cat >"$TMP/csv.yaml" <<EOF
run: {name: scorecsv, seed: 3}
cluster:
  ps_ranks: 1
  jobs: [{name: student, role: student, model: small}]
data:
  source: csv
  input: $TMP/log
  history_max: 8
  schema:
    path: log.csv
    user_column: u
    item_column: i
    time_column: t
    label: "y >= 1"
    fields: [{name: price, kind: numeric, log1p: true, standardize: true}]
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 1}
ps:
  tables: [{name: e, dim: 4}]
models:
  - name: small
    features: [{field: user, table: e}, {field: item, table: e}]
    seq: {kind: mean, length: 8}
    mlp: [8]
train: {batch_size: 64}
output: {progress_every_s: 0, plot: false}
EOF
drun 2 "$TMP/csv.yaml" "$TMP/c"
"$RD" export "$TMP/csv.yaml" --run "$TMP/c" --out "$TMP/csv.rdsv" >/dev/null 2>"$TMP/e" ||
    fail "export csv: $(cat "$TMP/e")"
"$RD" score "$TMP/csv.rdsv" --run "$TMP/c" --json "$TMP/csv.json" >/dev/null 2>"$TMP/e" ||
    fail "score csv: $(cat "$TMP/e")"
same student "$TMP/csv.json" "$TMP/c/report.json"
# The same log with another split: other batch-period statistics, so every stored price
# differs; standardised again, each record scores as in the training folder (to float rounding).
sed 's/batch_fraction: 0.8/batch_fraction: 0.5/' "$TMP/csv.yaml" >"$TMP/split.yaml"
grep -q "batch_fraction: 0.5" "$TMP/split.yaml" || fail "could not write the other-split config"
"$RD" prepare "$TMP/split.yaml" --out "$TMP/splitdata" >/dev/null 2>"$TMP/e" || fail "prepare split: $(cat "$TMP/e")"
for d in c/data splitdata; do
    "$RD" score "$TMP/csv.rdsv" --data "$TMP/$d" --split all --out "$TMP/${d%%/*}.csv" \
        --json "$TMP/${d%%/*}.json" >"$TMP/${d%%/*}.sum" 2>"$TMP/e" || fail "score $d: $(cat "$TMP/e")"
done
grep -q "^1 numeric input standardised again: $TMP/splitdata was prepared from other data" \
    "$TMP/splitdata.sum" || fail "other split: $(cat "$TMP/splitdata.sum")"
! grep -q "standardised again" "$TMP/c.sum" || fail "the training folder was standardised again"
python3 - "$TMP" <<'PY' || fail "the other split's scores"
import csv, json, sys
d = sys.argv[1]
a = list(csv.DictReader(open(d + "/c.csv")))
b = list(csv.DictReader(open(d + "/splitdata.csv")))
assert len(a) == len(b) == 3000
md = max(abs(float(x["logit"]) - float(y["logit"])) for x, y in zip(a, b))
assert all(x["record"] == y["record"] and x["label"] == y["label"] for x, y in zip(a, b))
assert json.load(open(d + "/splitdata.json"))["numeric_restandardised"] == 1
print("another split of the same log, standardised again: max |logit difference| %.3g" % md)
assert md < 1e-4, md
# Every row joins back to the log by its raw ids: exactly one log row has its user, item, time
# and label (the times are unique in this log, so the join is one to one).
log = {}
for r in csv.DictReader(open(d + "/log/log.csv")):
    log.setdefault((r["u"], r["i"], r["t"]), []).append(r)
assert json.load(open(d + "/c.json"))["raw_ids"] is True
joined = set()
for r in a:
    hit = log.get((r["user_id"], r["item_id"], r["ts"]), [])
    assert len(hit) == 1, ("no single log row for", r)
    assert int(hit[0]["y"]) >= 1 if r["label"] == "1" else int(hit[0]["y"]) < 1, (r, hit)
    joined.add((r["user_id"], r["item_id"], r["ts"]))
assert len(joined) == len(a) == 3000
assert any(r["item_id"] == "i0, large" for r in a) and any(r["item_id"] == 'i1 "x"' for r in a)
print("every scored row joins one log row by its raw user and item ids")
PY
# An ids.csv that is not the dataset's (another log's ids) is refused, nothing written.
cp -r "$TMP/c/data" "$TMP/badids"
printf 'kind,id\nuser,nobody\nitem,nothing\n' >"$TMP/badids/ids.csv"
expect 1 "record [0-9]*: its user \(key 0x[0-9a-f]*\) is not in $TMP/badids/ids.csv: that file is not this dataset's" \
    "$RD" score "$TMP/csv.rdsv" --data "$TMP/badids" --out "$TMP/w.csv" --json "$TMP/w.json"
{ [ ! -e "$TMP/w.csv" ] && [ ! -e "$TMP/w.json" ]; } || fail "a score with foreign ids left output"
# Without --out the ids are not read: the summary scores as before.
"$RD" score "$TMP/csv.rdsv" --data "$TMP/badids" >/dev/null 2>"$TMP/e" || fail "score without --out read the ids: $(cat "$TMP/e")"
# Other prices: scored (standardised again); another schema of the field: refused.
sed "s|input: $TMP/log$|input: $TMP/other|" "$TMP/csv.yaml" >"$TMP/other.yaml"
grep -q "input: $TMP/other$" "$TMP/other.yaml" || fail "could not write the other config"
"$RD" prepare "$TMP/other.yaml" --out "$TMP/otherdata" >/dev/null 2>"$TMP/e" || fail "prepare other: $(cat "$TMP/e")"
"$RD" score "$TMP/csv.rdsv" --data "$TMP/otherdata" >"$TMP/other.sum" 2>"$TMP/e" || fail "score other: $(cat "$TMP/e")"
grep -q "^1 numeric input standardised again" "$TMP/other.sum" || fail "other prices: $(cat "$TMP/other.sum")"
sed 's/log1p: true, //' "$TMP/other.yaml" >"$TMP/nolog.yaml"
grep -q "{name: price, kind: numeric, standardize: true}" "$TMP/nolog.yaml" || fail "could not write the no-log1p config"
"$RD" prepare "$TMP/nolog.yaml" --out "$TMP/nologdata" >/dev/null 2>"$TMP/e" || fail "prepare nolog: $(cat "$TMP/e")"
expect 1 "numeric input 'price' is stored standardised, the bundle's model read it after log1p standardised: the folder was prepared with another schema" \
    "$RD" score "$TMP/csv.rdsv" --data "$TMP/nologdata" --out "$TMP/x.csv" --json "$TMP/x.json"
{ [ ! -e "$TMP/x.csv" ] && [ ! -e "$TMP/x.json" ]; } || fail "a refused score left output"
echo "ok: a folder of other data is standardised again, one of another schema refused"
# Joined back by the log's own line: a log in milliseconds (time_format: unix_ms), in two part
# files, that repeats events in one second, the same user, item and millisecond twice with two
# labels, a blank line and an id of two lines. (user_id, item_id, ts) names several rows of it:
# ts is unix seconds, whatever the log's format; log_file and log_line name each record's row.
python3 - "$TMP" <<'PY'
import os, random, sys
d = sys.argv[1] + "/dup"
os.makedirs(d)
rng = random.Random(9)
for part in ("part-a.csv", "part-b.csv"):
    with open("%s/%s" % (d, part), "w", newline="") as out:
        out.write("t,u,i,y,price\n")
        for k in range(400):
            t = 1700000000000 + rng.randrange(40) * 250  # 10 s, 4 events a second
            u, i = rng.randrange(3), rng.randrange(3)
            iid = '"i\n%d"' % i if i == 2 else "i%d" % i  # "i\n2": a row of two lines
            out.write("%d,%d,%s,%d,%.2f\n" % (t, u, iid, rng.random() < 0.4, rng.uniform(1, 9)))
            if k == 200:
                out.write("\n")
            if k % 50 == 0:  # the same event again, the other label
                out.write("%d,%d,%s,%d,1.00\n" % (t, u, iid, 0))
                out.write("%d,%d,%s,%d,1.00\n" % (t, u, iid, 1))
PY
sed -e "s|input: $TMP/log$|input: $TMP/dup|" -e 's|path: log.csv|path: "part-*.csv"\n    time_format: unix_ms|' \
    "$TMP/csv.yaml" >"$TMP/dup.yaml"
grep -q "time_format: unix_ms" "$TMP/dup.yaml" || fail "could not write the unix_ms config"
"$RD" prepare "$TMP/dup.yaml" --out "$TMP/dupdata" >/dev/null 2>"$TMP/e" || fail "prepare dup: $(cat "$TMP/e")"
"$RD" score "$TMP/csv.rdsv" --data "$TMP/dupdata" --split all --out "$TMP/dup.csv" --json "$TMP/dup.json" \
    >/dev/null 2>"$TMP/e" || fail "score dup: $(cat "$TMP/e")"
python3 - "$TMP" <<'PY' || fail "the scores do not join back to the log's rows"
import collections, csv, json, sys
d = sys.argv[1]
log = {}  # (file, line the row starts on) -> row
for part in ("part-a.csv", "part-b.csv"):
    text = open("%s/dup/%s" % (d, part), newline="").read()
    # Lines by hand: a row starts after the newline that ends the one before (quotes included).
    rows, buf, first, inq = [], "", 1, False
    for n, raw in enumerate(text.split("\n")[:-1], start=1):
        if not buf:
            first = n
        buf += raw + "\n"
        inq ^= raw.count('"') % 2 == 1
        if not inq:
            if buf.strip():
                rows.append((first, next(csv.reader([buf]))))
            buf = ""
    hdr = rows[0][1]
    assert rows[0][0] == 1 and hdr == ["t", "u", "i", "y", "price"], rows[0]
    for n, r in rows[1:]:
        log[(part, n)] = dict(zip(hdr, r))
rows = list(csv.DictReader(open(d + "/dup.csv", newline="")))
assert json.load(open(d + "/dup.json"))["log_lines"] is True
assert len(rows) == len(log), (len(rows), len(log))
seen = set()
for r in rows:
    k = (r["log_file"], int(r["log_line"]))
    assert k in log and k not in seen, ("no single log row for", r)
    seen.add(k)
    g = log[k]
    assert (g["u"], g["i"], g["y"]) == (r["user_id"], r["item_id"], r["label"]), (r, g)
    assert int(g["t"]) // 1000 == int(r["ts"]), (r, g)  # ts: unix seconds, the log's ms cut
amb = collections.Counter((r["user_id"], r["item_id"], r["ts"]) for r in rows)
assert max(amb.values()) > 2, "no repeated (user, item, second): the check could not fail"
assert any("\n" in r["item_id"] for r in rows)
print("%d scored rows join %d log rows one to one by (log_file, log_line); (user_id, item_id, ts) "
      "names up to %d rows" % (len(rows), len(seen), max(amb.values())))
PY
# A lines.csv that is not the dataset's (short, or a row that is not file,line) is refused,
# naming it, nothing written; without --out it is not read.
cp -r "$TMP/dupdata" "$TMP/badlines"
head -5 "$TMP/dupdata/lines.csv" >"$TMP/badlines/lines.csv"
expect 1 "record 4: $TMP/badlines/lines.csv: 4 rows, the dataset holds [0-9]* records: the file is not this dataset's" \
    "$RD" score "$TMP/csv.rdsv" --data "$TMP/badlines" --split all --out "$TMP/w.csv" --json "$TMP/w.json"
{ [ ! -e "$TMP/w.csv" ] && [ ! -e "$TMP/w.json" ]; } || fail "a score with a short lines.csv left output"
{ head -3 "$TMP/dupdata/lines.csv"; echo "part-a.csv,x"; } >"$TMP/badlines/lines.csv"
expect 1 "record 2: $TMP/badlines/lines.csv:4: expected a row \"FILE,LINE\"" \
    "$RD" score "$TMP/csv.rdsv" --data "$TMP/badlines" --split all --out - --json "$TMP/w.json"
[ ! -e "$TMP/w.json" ] || fail "a score with a bad lines.csv left output"
"$RD" score "$TMP/csv.rdsv" --data "$TMP/badlines" >/dev/null 2>"$TMP/e" || fail "score without --out read the lines: $(cat "$TMP/e")"
# An output over the log the dataset was prepared from (its file, a part, under another name):
# refused before anything is written, the log intact. It was replaced by the scores.
cp "$TMP/log/log.csv" "$TMP/log.bak"
cp "$TMP/dup/part-b.csv" "$TMP/part-b.bak"
expect 1 "--out $TMP/log/log.csv is the dataset's input file $TMP/log/log.csv: nothing written" \
    "$RD" score "$TMP/csv.rdsv" --data "$TMP/c/data" --out "$TMP/log/log.csv"
expect 1 "--json $TMP/dup/../dup/part-b.csv is the dataset's input file $TMP/dup/part-b.csv: nothing written" \
    "$RD" score "$TMP/csv.rdsv" --data "$TMP/dupdata" --out "$TMP/w.csv" --json "$TMP/dup/../dup/part-b.csv"
{ cmp -s "$TMP/log.bak" "$TMP/log/log.csv" && cmp -s "$TMP/part-b.bak" "$TMP/dup/part-b.csv" &&
    [ ! -e "$TMP/w.csv" ]; } || fail "a score over the dataset's log wrote something"
echo "ok: the scores join back to the log's own rows (file and line), times in milliseconds and repeats included"

# --- 3. instance tokens searched by series -----------------------------------------------------
S=(--set data.synthetic.events=3000 --set train.epochs=1 --set data.history_max=32
    --set models.teacher.seq.length=32 --set models.teacher.tokens.search=32 --set tokens.window=8)
I="$SRC/configs/synthetic-iat-series.yaml"
drun 2 "$I" "$TMP/i" "${S[@]}"
"$RD" export "$I" --run "$TMP/i" --job teacher --out "$TMP/iat.rdsv" "${S[@]}" >"$TMP/exp" 2>"$TMP/e" ||
    fail "export iat: $(cat "$TMP/e")"
grep -q "token search by item attribute 'series'" "$TMP/exp" || fail "export iat: $(cat "$TMP/exp")"
"$RD" score "$TMP/iat.rdsv" --run "$TMP/i" --json "$TMP/iat.json" >"$TMP/iat.sum" 2>"$TMP/e" ||
    fail "score iat: $(cat "$TMP/e")"
grep -q "^instance tokens from $TMP/i/tokens: [1-9][0-9]* of the records had some" "$TMP/iat.sum" ||
    fail "score iat: $(cat "$TMP/iat.sum")"
same teacher "$TMP/iat.json" "$TMP/i/report.json"
expect 1 "reads instance tokens: give its token store" "$RD" score "$TMP/iat.rdsv" --data "$TMP/i/data"
# An output inside the token store (over its MANIFEST, or beside a shard's LMDB files): refused,
# the store intact. It was written there.
cp "$TMP/i/tokens/MANIFEST" "$TMP/manifest.bak"
expect 1 "--out $TMP/i/tokens/MANIFEST is inside the token store $TMP/i/tokens: nothing written" \
    "$RD" score "$TMP/iat.rdsv" --run "$TMP/i" --out "$TMP/i/tokens/MANIFEST"
expect 1 "--json $TMP/i/tokens/shard-0000/s.json is inside the token store $TMP/i/tokens: nothing written" \
    "$RD" score "$TMP/iat.rdsv" --data "$TMP/i/data" --store "$TMP/i/tokens" --json "$TMP/i/tokens/shard-0000/s.json"
{ cmp -s "$TMP/manifest.bak" "$TMP/i/tokens/MANIFEST" && [ ! -e "$TMP/i/tokens/shard-0000/s.json" ]; } ||
    fail "a score into the token store wrote something"
drun 2 "$I" "$TMP/i2" "${S[@]}" --seed 8
expect 1 "record [0-9]*: fetch tokens: the store .* is not the one model 'teacher' was trained on" \
    "$RD" score "$TMP/iat.rdsv" --data "$TMP/i/data" --store "$TMP/i2/tokens" --out "$TMP/y.csv" \
    --json "$TMP/y.json"
{ [ ! -e "$TMP/y.csv" ] && [ ! -e "$TMP/y.json" ]; } || fail "a failed score left output"
# A `tokens gc` after the export deletes tokens the model was trained with: it then reads fewer,
# and its scores differ from training's with nothing to say why. The store records its gcs, and
# score warns once on stderr (it said nothing); not for the store as trained, nor for a gc that
# deleted nothing.
"$RD" tokens compact "$TMP/i/tokens" --out "$TMP/igc" >/dev/null 2>"$TMP/e" || fail "compact: $(cat "$TMP/e")"
"$RD" tokens gc "$TMP/igc" --before -9000000000000000000 >/dev/null 2>"$TMP/e" || fail "gc nothing: $(cat "$TMP/e")"
expect 0 "" "$RD" score "$TMP/iat.rdsv" --data "$TMP/i/data" --store "$TMP/igc"
grep -q "garbage-collected" "$TMP/e" && fail "score warns of a gc that deleted nothing: $(cat "$TMP/e")"
"$RD" tokens stats "$TMP/igc" >"$TMP/st" 2>"$TMP/e" || fail "tokens stats: $(cat "$TMP/e")"
grep -qx "gc: none recorded" "$TMP/st" || fail "tokens stats of a store never collected: $(cat "$TMP/st")"
read -r t0 t1 < <(sed -n 's/^total: .*, time \(-\{0,1\}[0-9]*\)\.\.\(-\{0,1\}[0-9]*\)$/\1 \2/p' "$TMP/st")
[ -n "${t1:-}" ] || fail "no time range in tokens stats: $(cat "$TMP/st")"
mid=$(((t0 + t1) / 2))
"$RD" tokens gc "$TMP/igc" --before "$mid" >"$TMP/o" 2>"$TMP/e" || fail "gc: $(cat "$TMP/e")"
"$RD" tokens stats "$TMP/igc" >"$TMP/st" 2>"$TMP/e" || fail "tokens stats: $(cat "$TMP/e")"
grep -Eq "^gc: [1-9][0-9]* records deleted by 1 gc, the last at [0-9-]+T[0-9:]+Z; records before $mid \(" "$TMP/st" ||
    fail "tokens stats does not say the gc: $(cat "$TMP/st")"
expect 0 "warning: token store $TMP/igc was garbage-collected at .*, after $TMP/iat.rdsv was exported .*records before $mid .* model 'teacher' now reads fewer tokens than it was trained with" \
    "$RD" score "$TMP/iat.rdsv" --data "$TMP/i/data" --store "$TMP/igc"
[ "$(grep -c "garbage-collected" "$TMP/e")" -eq 1 ] || fail "the gc warning is not said once: $(cat "$TMP/e")"
expect 0 "" "$RD" score "$TMP/iat.rdsv" --run "$TMP/i"
grep -q "garbage-collected" "$TMP/e" && fail "score warns of a gc of another copy: $(cat "$TMP/e")"
expect 1 "--store .*reads no instance tokens" \
    "$RD" score "$TMP/student.rdsv" --data "$TMP/t/data" --store "$TMP/i/tokens"
echo "ok: a token model searched by series scores the holdout as train reported"

# --- 4. bad arguments ------------------------------------------------------------------------------
B="$TMP/student.rdsv"
expect 2 "missing BUNDLE" "$RD" score
expect 2 "missing --data DIR" "$RD" score "$B"
expect 2 "--split 'test': not one of holdout, stream, batch, all" "$RD" score "$B" --data "$TMP/t/data" --split test
for v in 0 -3 x 1.5; do
    expect 2 "--limit: '$v' is not a positive integer" "$RD" score "$B" --data "$TMP/t/data" --limit "$v"
done
expect 2 "--out and --json are the same file" "$RD" score "$B" --data "$TMP/t/data" --out "$TMP/z" --json "$TMP/z"
expect 1 "--json .*/./z is the --out file" "$RD" score "$B" --data "$TMP/t/data" --out "$TMP/z" --json "$TMP/./z"
expect 2 "--json -" "$RD" score "$B" --data "$TMP/t/data" --json -
expect 2 "--data: empty value" "$RD" score "$B" --data ''
expect 2 "BUNDLE: empty path" "$RD" score '' --data "$TMP/t/data"
expect 1 "No such file" "$RD" score "$TMP/none.rdsv" --data "$TMP/t/data"
expect 1 "not a serving bundle" "$RD" score "$C" --data "$TMP/t/data"
expect 1 "--data .*is a checkpoint root .*, not a dataset folder" "$RD" score "$B" --data "$TMP/t/ckpt"
expect 1 "--out .*s.csv is inside the dataset .*: nothing written" "$RD" score "$B" --data "$TMP/t/data" --out "$TMP/t/data/s.csv"
expect 1 "--json .* is the bundle .*: nothing written" "$RD" score "$B" --data "$TMP/t/data" --json "$B"
# An output that is a folder: refused before scoring (it failed at the rename, after every
# record was scored and the CSV of --out was already in place).
mkdir -p "$TMP/jdir"
expect 1 "jdir exists and is a folder: not replaced" "$RD" score "$B" --data "$TMP/t/data" --out "$TMP/zs.csv" --json "$TMP/jdir"
{ [ ! -e "$TMP/zs.csv" ] && [ -z "$(ls -A "$TMP/jdir")" ]; } || fail "a score with a folder as --json left output"
{ [ ! -e "$TMP/t/data/s.csv" ] && [ ! -e "$TMP/z" ]; } || fail "a refused score left output"
expect 0 "" "$RD" score --help
grep -q "^usage: recdistill score BUNDLE" "$TMP/o" || fail "score --help: $(cat "$TMP/o")"
echo "score.sh: ok"
