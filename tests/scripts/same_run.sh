#!/usr/bin/env bash
# same_run.sh — what a run's figures do not depend on (README.md, "Quick start"): one config and
# seed, trained once as an SPMD launch from the test folder into a relative --out, and once as an
# MPMD launch (one segment per job) from another working directory, into another --out, under
# another run.name, with OPENBLAS_NUM_THREADS=2 (cluster.blas_threads sets the threads), give
# the same metrics (every column but samples_per_s), the same holdout, warm and stream figures
# and target counts in report.json, and the same dataset bytes (events.bin, meta.yaml).
# The same traffic too, on every channel of report.json's "comm" (the whole launch's and each
# job's) but ps_ckpt and targets: the checkpoint SAVE requests carry the checkpoint folder's
# path, so they and the total move by a byte per character of that path per request, and by
# nothing else (they were counted on ps_ctl, which then differed between the two runs); the
# students' credits on targets follow the timing of the jobs.
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
# The checkpoint folders, as the runs resolved them (config.effective.yaml).
ckpt_dir() { sed -n 's/^  checkpoint_dir: "\(.*\)"$/\1/p' "$1/config.effective.yaml"; }
CA=$(ckpt_dir A) CB=$(ckpt_dir $B)
if [ -z "$CA" ] || [ -z "$CB" ] || [ "${#CA}" = "${#CB}" ]; then
    fail "checkpoint folders '$CA' and '$CB': not found, or of the same length"
fi
python3 - A/report.json $B/report.json "$((${#CB} - ${#CA}))" <<'PY' || fail "report.json figures differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
grow = int(sys.argv[3])  # bytes more per SAVE request in B
assert a["run"] == "pair" and b["run"] == "renamed", (a["run"], b["run"])
for k in ("popularity", "holdout", "warm", "stream", "eta", "targets"):
    if a.get(k) != b.get(k):
        sys.exit(f"{k}: {a.get(k)} != {b.get(k)}")
def same_comm(where, ca, cb):
    if ca.keys() != cb.keys():
        sys.exit(f"{where}: channels {sorted(ca)} != {sorted(cb)}")
    for ch in ca:
        # targets: how many credits a student sends back follows the timing of the two jobs.
        if ch in ("ps_ckpt", "targets", "total", "samples"):
            continue
        if ca[ch] != cb[ch]:
            sys.exit(f"{where}.{ch}: {ca[ch]} != {cb[ch]}")
    ka, kb = ca["ps_ckpt"], cb["ps_ckpt"]
    saves = ka["msgs_sent"]
    if saves < 1 or {k: ka[k] for k in ("msgs_sent", "msgs_recv", "bytes_recv")} != \
            {k: kb[k] for k in ("msgs_sent", "msgs_recv", "bytes_recv")}:
        sys.exit(f"{where}.ps_ckpt: {ka} against {kb}")
    if kb["bytes_sent"] - ka["bytes_sent"] != grow * saves:
        sys.exit(f"{where}.ps_ckpt: {ka['bytes_sent']} and {kb['bytes_sent']} bytes sent: not "
                 f"{grow} more per request ({saves})")
    timing = cb["targets"]["wire_bytes"] - ca["targets"]["wire_bytes"]
    if cb["total"]["wire_bytes"] - ca["total"]["wire_bytes"] != grow * saves + timing:
        sys.exit(f"{where}.total: {ca['total']} against {cb['total']}")
same_comm("comm", a["comm"], b["comm"])
for j in a["jobs"]:
    same_comm(f"jobs.{j}.comm", a["jobs"][j]["comm"], b["jobs"][j]["comm"])
PY
echo "same_run: OK"
