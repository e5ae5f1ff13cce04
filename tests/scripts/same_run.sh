#!/usr/bin/env bash
# same_run.sh — what a run's figures do not depend on (README.md, "Quick start"): one config and
# seed, trained once as an SPMD launch from the test folder into a relative --out, and once as an
# MPMD launch (one segment per job) from another working directory, into another --out, under
# another run.name, with OPENBLAS_NUM_THREADS=2 (cluster.blas_threads sets the threads), give
# the same metrics (every column but samples_per_s), the same holdout, warm and stream figures
# and target counts in report.json, and the same dataset bytes (events.bin, meta.yaml).
#
#   bash tests/scripts/same_run.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: same_run.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_same_run_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=lib/pair_yaml.sh
. "$(cd "$(dirname "$0")" && pwd)/lib/pair_yaml.sh" # pair_yaml
cd "$TMP" || exit 1

# data.dir left to the run folder (<out>/data): each launch prepares its own dataset.
pair_yaml data=unused teacher_seq="{kind: mean, length: 8}" | grep -v "^  dir: unused$" > p.yaml ||
    fail "could not write p.yaml"
grep -q "dir:" p.yaml && fail "p.yaml still sets data.dir"

OPENBLAS_NUM_THREADS=1 timeout 120 "$MPIEXEC" -n 3 "$RD" train p.yaml --out A >A.out 2>A.err ||
    fail "run A: $(tail -5 A.err)"
mkdir -p w/x other || exit 1
(cd w/x && OPENBLAS_NUM_THREADS=2 timeout 120 "$MPIEXEC" \
    -n 1 "$RD" train ../../p.yaml --out "$TMP/other/B" --set run.name=renamed : \
    -n 1 "$RD" train ../../p.yaml --out "$TMP/other/B" --set run.name=renamed : \
    -n 1 "$RD" train ../../p.yaml --out "$TMP/other/B" --set run.name=renamed) >B.out 2>B.err ||
    fail "run B: $(tail -5 B.err)"
B=other/B

for f in events.bin meta.yaml; do
    cmp -s "A/data/$f" "$B/data/$f" || fail "the dataset's $f differs"
done
nometrics() { # $1 = metrics CSV: every column but samples_per_s
    local c
    c=$(head -1 "$1" | tr ',' '\n' | grep -n '^samples_per_s$' | cut -d: -f1)
    [ -n "$c" ] || fail "$1 has no samples_per_s column"
    cut -d, -f"$c" --complement "$1"
}
for j in teacher student; do
    nometrics A/$j.metrics.csv > a.csv && nometrics $B/$j.metrics.csv > b.csv || exit 1
    cmp -s a.csv b.csv || fail "$j metrics differ: $(diff a.csv b.csv | head -4)"
done
python3 - A/report.json $B/report.json <<'PY' || fail "report.json figures differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["run"] == "pair" and b["run"] == "renamed", (a["run"], b["run"])
for k in ("popularity", "holdout", "warm", "stream", "eta", "targets"):
    if a.get(k) != b.get(k):
        sys.exit(f"{k}: {a.get(k)} != {b.get(k)}")
PY
echo "same_run: OK"
