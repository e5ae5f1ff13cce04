#!/usr/bin/env bash
# twin_init.sh — `init_as` (jobs and tables): a student job whose dense parameters and embedding
# tables are initialised as another job's and tables' follows it exactly (the same schedule on the
# same data gives bitwise the same metrics, though the two jobs train separate tables on the PS),
# and without init_as the same two jobs differ (so the comparison can fail). This is what makes
# student_raw a paired twin of the distilled student (configs/demo.yaml): only the distillation
# differs between them. init_as follows a chain: a job c initialised as b, itself initialised as
# a, starts where b does (before, c started from b's own name: a twin of a student initialised as
# another job did not share its initial point, and the eta pair still called it comparable), and
# so do tables; an init_as chain that loops is refused by the config check (tests/bad/config).
#
#   bash tests/scripts/twin_init.sh build/recdistill
set -u
RD="${1:?usage: twin_init.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_twin_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" "$@"; }

config() { # $1 = 1: job b's dense init as a's; $2 = 1: b's tables initialised as a's
    local job="" tu="" ti=""
    [ "$1" = 1 ] && job=", init_as: a"
    [ "$2" = 1 ] && tu=", init_as: a_user" ti=", init_as: a_item"
    cat <<EOF
run: {name: twin, seed: 3}
cluster:
  ps_ranks: 1
  jobs:
    - {name: a, role: student, model: ma}
    - {name: b, role: student, model: mb$job}
data:
  source: synthetic
  history_max: 16
  synthetic: {events: 4000, users: 40, items: 200}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}
ps:
  tables:
    - {name: a_user, dim: 4}
    - {name: a_item, dim: 4}
    - {name: b_user, dim: 4$tu}
    - {name: b_item, dim: 4$ti}
models:
  - name: ma
    features:
      - {field: user, table: a_user}
      - {field: item, table: a_item}
    seq: {kind: mean, length: 8}
    mlp: [8]
    two_towers: true
  - name: mb
    features:
      - {field: user, table: b_user}
      - {field: item, table: b_item}
    seq: {kind: mean, length: 8}
    mlp: [8]
    two_towers: true
train: {batch_size: 64, epochs: 1}
output: {progress_every_s: 0}
EOF
}

# holdout and stream rows of a job's metrics (without the throughput column)
rows() { awk -F, '$1 == "holdout" || $1 == "stream" { print $1, $2, $3, $4, $5, $6 }' "$1"; }

config 1 1 >"$TMP/twin.yaml"
"$RD" config "$TMP/twin.yaml" | grep -Eq 'init_as: "?a_user' || fail "init_as not in the effective config"
run -n 3 "$RD" train "$TMP/twin.yaml" --out "$TMP/twin" >"$TMP/out" 2>"$TMP/err" ||
    fail "twin run: $(cat "$TMP/err")"
[ -n "$(rows "$TMP/twin/a.metrics.csv")" ] || fail "no metrics rows for job a"
diff <(rows "$TMP/twin/a.metrics.csv") <(rows "$TMP/twin/b.metrics.csv") >"$TMP/diff" ||
    fail "twins differ: $(cat "$TMP/diff")"

config 0 0 >"$TMP/apart.yaml"
run -n 3 "$RD" train "$TMP/apart.yaml" --out "$TMP/apart" >"$TMP/out" 2>"$TMP/err" ||
    fail "run without init_as: $(cat "$TMP/err")"
! diff -q <(rows "$TMP/apart/a.metrics.csv") <(rows "$TMP/apart/b.metrics.csv") >/dev/null ||
    fail "without init_as the two jobs start alike: the test cannot tell twins apart"

# Only the dense init (job) or only the tables: not twins either.
config 1 0 >"$TMP/half.yaml"
run -n 3 "$RD" train "$TMP/half.yaml" --out "$TMP/half" >"$TMP/out" 2>"$TMP/err" ||
    fail "run with the job's init_as only: $(cat "$TMP/err")"
! diff -q <(rows "$TMP/half/a.metrics.csv") <(rows "$TMP/half/b.metrics.csv") >/dev/null ||
    fail "the job's init_as alone made the tables start alike"
# With dropout in both models the twins draw the same masks (the key comes from the init_as
# name), so they stay alike; a job that is no twin draws its own.
sed 's/^    mlp: \[8\]$/    mlp: [8]\n    dropout: 0.25/' "$TMP/twin.yaml" >"$TMP/drop.yaml"
[ "$(grep -c 'dropout: 0.25' "$TMP/drop.yaml")" = 2 ] || fail "could not write the dropout config"
run -n 3 "$RD" train "$TMP/drop.yaml" --out "$TMP/drop" >"$TMP/out" 2>"$TMP/err" ||
    fail "twins with dropout: $(cat "$TMP/err")"
diff <(rows "$TMP/drop/a.metrics.csv") <(rows "$TMP/drop/b.metrics.csv") >"$TMP/diff" ||
    fail "twins with dropout differ: $(cat "$TMP/diff")"
! diff -q <(rows "$TMP/twin/a.metrics.csv") <(rows "$TMP/drop/a.metrics.csv") >/dev/null ||
    fail "dropout 0.25 changed nothing"
# A chain: job c and its tables initialised as b's, which are initialised as a's. c must follow a
# (and b) exactly, as a distilled student's declared twin does when the student itself is
# initialised as another job.
python3 - "$TMP/twin.yaml" "$TMP/chain.yaml" <<'PY' || fail "could not write the chain config"
import sys
s = open(sys.argv[1]).read()
s = s.replace("    - {name: b, role: student, model: mb, init_as: a}\n",
              "    - {name: b, role: student, model: mb, init_as: a}\n"
              "    - {name: c, role: student, model: mc, init_as: b}\n")
s = s.replace("    - {name: b_item, dim: 4, init_as: a_item}\n",
              "    - {name: b_item, dim: 4, init_as: a_item}\n"
              "    - {name: c_user, dim: 4, init_as: b_user}\n"
              "    - {name: c_item, dim: 4, init_as: b_item}\n")
m = s[s.index("  - name: mb"):s.index("train:")]
s = s.replace("train:", m.replace("mb", "mc").replace("b_user", "c_user").replace("b_item", "c_item")
              + "train:")
assert s.count("init_as: b}") == 1 and "name: mc" in s
open(sys.argv[2], "w").write(s)
PY
run -n 4 "$RD" train "$TMP/chain.yaml" --out "$TMP/chain" >"$TMP/out" 2>"$TMP/err" ||
    fail "init_as chain: $(cat "$TMP/err")"
diff <(rows "$TMP/chain/a.metrics.csv") <(rows "$TMP/chain/c.metrics.csv") >"$TMP/diff" ||
    fail "a job initialised as b (itself initialised as a) does not start where b does: $(cat "$TMP/diff")"
echo "twin_init: OK"
