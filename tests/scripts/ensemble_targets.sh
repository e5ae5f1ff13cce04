#!/usr/bin/env bash
# ensemble_targets.sh — tools/ensemble-targets.py: the mean of two teachers' target logs is a
# target log a student replays (every target found, none missing); each logit is the mean of
# the two (to float rounding), the mean of a log with itself is that log record for record, and
# --data prints the stream-window AUC of each log and of the mean. Bad input (OUT exists, a log
# missing or not a log, a damaged record, logs of other teachers) exits 2 with the file named and
# leaves no OUT.
#
#   bash tests/scripts/ensemble_targets.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: ensemble_targets.sh path/to/recdistill}")"
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
T="$SRC/tools/ensemble-targets.py"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v mdb_dump >/dev/null && command -v mdb_load >/dev/null ||
    { echo "mdb_dump / mdb_load (lmdb-utils) not found: skip"; exit 77; }
python3 -c "import yaml" 2>/dev/null || { echo "python3 without PyYAML: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_ensemble_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" "$@"; }
cd "$TMP" || exit 1

config() { # $1 = the teacher's mlp width, $2 = the teacher job's name
    cat <<YAML
run: {name: ens, seed: 8}
cluster:
  ps_ranks: 1
  jobs:
    - {name: $2, role: teacher, model: teacher}
    - {name: student, role: student, model: student, distill: true, teacher: $2}
data:
  source: synthetic
  dir: $TMP/data
  history_max: 8
  synthetic: {events: 3000, users: 40, items: 150}
  split: {batch_fraction: 0.7, holdout_fraction: 0.1, stream_windows: 2}
ps:
  tables:
    - {name: t_emb, dim: 8}
    - {name: s_emb, dim: 4}
models:
  - name: teacher
    features:
      - {field: user, table: t_emb}
      - {field: item, table: t_emb}
    seq: {kind: mean, length: 8}
    mlp: [$1]
  - name: student
    features:
      - {field: user, table: s_emb}
      - {field: item, table: s_emb}
    mlp: [8]
    two_towers: true
train: {batch_size: 64, epochs: 2}
output: {progress_every_s: 0}
YAML
}
config 16 teacher >a.yaml
config 32 teacher >b.yaml
config 16 other >c.yaml
# The same teacher on another dataset (more events, its own data folder).
sed -e 's/events: 3000/events: 3100/' -e "s|dir: $TMP/data$|dir: $TMP/data_d|" a.yaml >d.yaml
grep -q "events: 3100" d.yaml && grep -q "data_d" d.yaml || fail "could not write d.yaml"
for v in a b c d; do
    run -n 3 "$RD" train $v.yaml --out $v >$v.out 2>$v.err || fail "run $v: $(cat $v.err)"
done
records() { mdb_dump -s targets "$1" | awk '/^HEADER=END/ { b = 1; next } b && /^ /'; }
[ -n "$(records a/targets)" ] || fail "run a logged no target"

# The mean of a log with itself is the log, record for record.
python3 "$T" AA a/targets a/targets >aa.out 2>aa.err || fail "a with a: $(cat aa.err)"
records a/targets >a.rec && records AA >aa.rec || fail "could not dump a/targets and AA"
cmp -s a.rec aa.rec || fail "the mean of a log with itself differs from it"

# The mean of two teachers: each logit the mean of theirs; --data prints the AUCs.
python3 "$T" --data data AB a/targets b/targets >ab.out 2>ab.err || fail "a with b: $(cat ab.err)"
grep -q "^AB: [0-9]* records, the mean of 2 logs" ab.out || fail "no summary: $(cat ab.out)"
grep -Eq "^ +mean of the 2 +0\.[0-9]{4}$" ab.out || fail "no AUC of the mean: $(cat ab.out)"
grep -Eq "^ +a/targets +0\.[0-9]{4}$" ab.out || fail "no AUC of log a: $(cat ab.out)"
python3 - a/targets b/targets AB <<'PYEOF' || fail "the logits are not the means"
import struct, subprocess, sys
def recs(p):
    out = subprocess.run(["mdb_dump", "-s", "targets", p], capture_output=True, text=True).stdout
    lines = out.split("HEADER=END\n", 1)[1].split("\n")
    kv = [l[1:] for l in lines if l.startswith(" ")]
    return {k: struct.unpack("<f", bytes.fromhex(v)[:4])[0] for k, v in zip(kv[0::2], kv[1::2])}
a, b, m = (recs(p) for p in sys.argv[1:4])
assert len(m) == len(a) == len(b) > 0, (len(m), len(a), len(b))
assert any(a[k] != b[k] for k in m), "the two teachers logged the same logits"
for k in m:
    want = (a[k] + b[k]) / 2.0
    assert abs(m[k] - want) <= 1e-6 * (1.0 + abs(want)), (k, m[k], want)
PYEOF

# A student replays the ensemble log: every target found.
grep -v "role: teacher" a.yaml | sed -e "s|^output:|distill: {replay: true, target_log: $TMP/AB}\noutput:|" >replay.yaml
run -n 2 "$RD" train replay.yaml --out R >r.out 2>r.err || fail "replay of the ensemble log: $(cat r.err)"
python3 -c "import json,sys;t=json.load(open('R/report.json'))['targets'];sys.exit(not (t['missing'] == 0 and t['replayed'] > 0))" ||
    fail "the replay missed targets: $(python3 -c "import json;print(json.load(open('R/report.json'))['targets'])")"

# Bad input: exit 2, the file named, no OUT.
bad() { # $1 = what, $2 = expected message (grep -E), $3 = OUT, rest = arguments after OUT
    local what=$1 msg=$2 out=$3
    shift 3
    python3 "$T" "$out" "$@" >bad.out 2>bad.err
    local rc=$?
    [ $rc -eq 2 ] || fail "$what: exit $rc, not 2: $(cat bad.out bad.err)"
    grep -Eq "$msg" bad.err || fail "$what: $(cat bad.err)"
}
bad "OUT exists" "^ensemble-targets.py: AB exists" AB a/targets b/targets
bad "a log missing" "nowhere: not a target log" X1 a/targets nowhere
[ ! -e X1 ] || fail "a failed run left X1"
bad "a folder that is no log" "data: not a target log" X2 a/targets data
bad "logs of other teachers" "share no record .*the teacher job's name" X3 a/targets c/targets
bad "logs of other datasets" "d/targets: its teacher trained on another dataset than a/targets's \\(3100 events" X6 a/targets d/targets
[ ! -e X6 ] || fail "a failed run left X6"
[ ! -e X3 ] || fail "a failed run left X3"
bad "one log" "usage" X4 a/targets
# A damaged record: one logit byte changed, the CRC not.
mkdir D
mdb_dump -s meta a/targets | mdb_load -s meta D 2>/dev/null
mdb_dump -s targets a/targets | awk '/^HEADER=END/ { b = 1; print; next }
    b && /^ / && ++n == 2 { $0 = " " (substr($0, 2, 1) == "0" ? "1" : "0") substr($0, 3) } { print }' |
    mdb_load -s targets D 2>/dev/null || fail "could not write the damaged log"
bad "a damaged record" "D: sample [0-9]+ pass [0-9]+: CRC mismatch" X5 a/targets D
[ ! -e X5 ] || fail "a failed run left X5"
# --data is checked before OUT is written: a folder that is no dataset, or no PyYAML, exits 2
# and leaves no OUT (it used to write OUT first, then fail: the rerun then found "OUT exists").
python3 "$T" --data nodata X6 a/targets b/targets >bad.out 2>bad.err
rc=$?
[ $rc -eq 2 ] || fail "--data nodata: exit $rc, not 2: $(cat bad.out bad.err)"
grep -q "nodata/meta.yaml: not a prepared dataset's meta.yaml" bad.err || fail "--data nodata: $(cat bad.err)"
[ ! -e X6 ] || fail "a failed --data left X6"
mkdir noyaml && echo 'raise ImportError("no PyYAML here")' >noyaml/yaml.py
PYTHONPATH="$TMP/noyaml" python3 "$T" --data data X7 a/targets b/targets >bad.out 2>bad.err
rc=$?
[ $rc -eq 2 ] || fail "--data without PyYAML: exit $rc, not 2: $(cat bad.out bad.err)"
grep -q "^ensemble-targets.py: --data needs PyYAML" bad.err || fail "--data without PyYAML: $(cat bad.err)"
[ ! -e X7 ] || fail "--data without PyYAML left X7"
# OUT in a folder where nothing can be made: one line and exit 2, not a traceback.
python3 "$T" /proc/X8 a/targets b/targets >bad.out 2>bad.err
rc=$?
[ $rc -eq 2 ] || fail "OUT in /proc: exit $rc, not 2: $(cat bad.out bad.err)"
grep -q "^ensemble-targets.py: writing /proc/X8: " bad.err && ! grep -q Traceback bad.err ||
    fail "OUT in /proc: $(cat bad.err)"
ls -a | grep -q "^\.ensemble-" && fail "a temporary folder was left: $(ls -a)"
echo "ensemble_targets.sh: ok"
