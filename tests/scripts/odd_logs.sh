#!/usr/bin/env bash
# odd_logs.sh — valid but degenerate interaction logs run the whole pipeline (teacher, distilled
# student, student_raw on one PS rank) to a report, exit 0, and say why a figure is missing
# instead of printing nan:
#   same_ts        every event in the same second (the split cuts inside one timestamp)
#   one_user       a single user
#   tiny           30 events: stream windows of 0-1 events, a holdout of 3
#   oneclass_tail  only positives after the batch period: no AUC on the stream or the holdout
#                  (its teacher also reads instance tokens: no source-model AUC either)
#   many_windows   100 stream windows: every one is in the metrics files and the stream slice
# Each log also has a numeric field with `standardize: true` (its meta.yaml figures are
# checked). report.json must parse, hold null (never NaN) where a figure is undefined, and the
# printed eta lines must read "n/a" with the reason, as the table must where it has no figure.
#
#   bash tests/scripts/odd_logs.sh build/recdistill
set -u
RD="${1:?usage: odd_logs.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_odd_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

python3 - "$TMP" <<'EOF'
import random, sys
d = sys.argv[1]
random.seed(1)
def write(name, rows):
    with open(f"{d}/{name}.csv", "w") as f:
        f.write("ts,uid,iid,clicked,price\n")
        for r in rows:
            f.write(",".join(map(str, r)) + "\n")
U = lambda n: f"u{random.randrange(n)}"
I = lambda n: f"i{random.randrange(n)}"
Y = lambda: int(random.random() < 0.4)
P = lambda: round(1000 + random.random() * 100000, 2)
write("same_ts", [(1000, U(20), I(50), Y(), P()) for _ in range(2000)])
write("one_user", [(1000 + i, "u1", I(50), Y(), P()) for i in range(2000)])
write("tiny", [(1000 + i, U(5), I(10), Y(), P()) for i in range(30)])
write("oneclass_tail", [(1000 + i, U(20), I(50), 1 if i >= 1600 else Y(), P())
                        for i in range(2000)])
write("many_windows", [(1000 + i, U(20), I(50), Y(), P()) for i in range(3000)])
EOF

for f in same_ts one_user tiny oneclass_tail many_windows; do
    windows=5
    [ "$f" = many_windows ] && windows=100
    cat >"$TMP/$f.yaml" <<EOF
run: {name: $f, seed: 1}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
    - {name: student, role: student, model: small, distill: true}
    - {name: student_raw, role: student, model: small_raw, init_as: student}
data:
  source: csv
  input: $TMP
  split: {batch_fraction: 0.5, holdout_fraction: 0.1, stream_windows: $windows}
  schema:
    path: $f.csv
    header: true
    user_column: uid
    item_column: iid
    time_column: ts
    label: "clicked >= 1"
    fields:
      - {name: price, kind: numeric, standardize: true}
ps:
  tables:
    - {name: t, dim: 8}
    - {name: s, dim: 4}
    - {name: r, dim: 4, init_as: s}
models:
  - {name: big, features: [{field: user, table: t}, {field: item, table: t}],
     seq: {kind: mean, length: 8}, mlp: [16]}
  - {name: small, features: [{field: user, table: s}, {field: item, table: s}], mlp: [8],
     two_towers: true}
  - {name: small_raw, features: [{field: user, table: r}, {field: item, table: r}], mlp: [8],
     two_towers: true}
EOF
    # oneclass_tail's teacher also reads instance tokens: the token build's progress line of the
    # one-class holdout said "progressive AUC nan".
    if [ "$f" = oneclass_tail ]; then
        sed -i -e 's/^    - {name: r, dim: 4, init_as: s}$/&\n    - {name: k, dim: 4}/' \
            -e 's/seq: {kind: mean, length: 8}, mlp: \[16\]}/seq: {kind: mean, length: 8}, mlp: [16],\n     tokens: {scheme: 1, length: 4, kind: mean, adapter: 4}}/' "$TMP/$f.yaml"
        printf '  - {name: src, features: [{field: user, table: k}, {field: item, table: k}], mlp: [4]}\ntokens: {dim: 4, scheme: 1, source_model: src}\n' >>"$TMP/$f.yaml"
        grep -q "tokens: {scheme: 1" "$TMP/$f.yaml" || fail "could not add the branch to $f.yaml"
        grep -q "name: k, dim: 4" "$TMP/$f.yaml" || fail "could not add table k to $f.yaml"
    fi
    out="$TMP/run_$f"
    timeout 300 "$MPIEXEC" -n 4 "$RD" train "$TMP/$f.yaml" --out "$out" >"$TMP/$f.out" \
        2>"$TMP/$f.err"
    rc=$?
    [ $rc -eq 0 ] || fail "$f: exit $rc: $(tail -5 "$TMP/$f.err")"
    [ -f "$out/report.json" ] || fail "$f: no report.json"
    grep '^eta ' "$TMP/$f.out" | grep -q nan && fail "$f: an eta line prints nan"
    # The table prints n/a where a slice leaves a figure undefined (it printed nan, unexplained).
    grep -qw nan "$TMP/$f.out" && fail "$f: the printed table holds nan: $(grep -w nan "$TMP/$f.out")"
    [ "$(grep -c '^eta ' "$TMP/$f.out")" -eq 3 ] || fail "$f: expected three eta lines"
    [ "$f" != oneclass_tail ] ||
        grep -q "holdout (no training), .* progressive AUC n/a (one class)" "$TMP/$f.out" ||
        fail "$f: no token build line with n/a: $(grep 'tokens:' "$TMP/$f.out")"
    grep '^eta ' "$TMP/$f.out" | grep -vq "n/a\|[0-9]\.[0-9][0-9][0-9] " &&
        fail "$f: an eta line is neither a figure nor n/a: $(grep '^eta ' "$TMP/$f.out")"
    python3 - "$f" "$out/report.json" "$TMP/$f.out" "$out/data/meta.yaml" "$windows" "$out" <<'EOF' ||
import csv, json, math, sys
name, path, printed, meta, windows, out = sys.argv[1:7]
text = open(path).read()
assert "NaN" not in text and "Infinity" not in text, "non-JSON number in report.json"
r = json.loads(text)
lines = [l for l in open(printed) if l.startswith("eta ")]
for sl, line in zip(("holdout", "warm", "stream"), lines):
    e = r["eta"][sl]
    if e["eta"] is None:
        assert "n/a" in line, (sl, line)
        if e["teacher_gap"] is None:
            assert "no AUC on this slice" in line, (sl, line)
        else:
            assert e["teacher_gap"] <= 0 and "no gap over student_raw" in line, (sl, line)
    else:
        assert math.isfinite(e["eta"]) and e["teacher_gap"] > 0, (sl, e)
if name == "oneclass_tail":
    assert r["eta"]["holdout"]["eta"] is None and r["eta"]["holdout"]["teacher_gap"] is None
m = open(meta).read()
assert "standardized: {mean: " in m, "meta.yaml lacks the standardized figures"
for job in ("teacher", "student", "student_raw"):
    rows = [x for x in csv.DictReader(open(f"{out}/{job}.metrics.csv")) if x["phase"] == "stream"]
    assert len(rows) == int(windows), (job, len(rows), windows)
    assert len(r["jobs"][job]["windows"]) == int(windows), (job, "report windows")
    n = sum(int(x["samples"]) for x in rows)
    assert r["stream"][job]["samples"] == n, (job, r["stream"][job]["samples"], n)
EOF
        fail "$f: report check"
    echo "$f: ok ($(grep '^eta holdout' "$TMP/$f.out"))"
done
echo "odd_logs: ok"
