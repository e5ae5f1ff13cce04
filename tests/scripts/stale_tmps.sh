#!/usr/bin/env bash
# stale_tmps.sh — the temporary files a SIGKILLed writer (Slurm, the OOM killer) leaves between
# its create and its rename are removed by the folder's next owner, and nothing else is:
#   1. run folder: a launch (holding <out>/run.lock) removes "<output>.tmp.<pid>.<8 hex>" of its
#      outputs (report.json, config.effective.yaml, <job>.metrics.csv, ...) whose process no
#      longer runs, each named in a warning; a running process's, a user's file of another name
#      and names the library never writes stay;
#   2. token store: a launch that takes the store's writer lock removes the temporaries of
#      MANIFEST and DATASET and an unlinked DATASET.new.<pid>.<ns> record of a gone process; a
#      running process's and a user's files stay.
# A process killed at that point is simulated: the files are made under the pid of a process
# that ran and ended (the names are the library's, rd_lmdbx_outfile_tmp_name; test_tokens
# checks that they parse back from a real temporary).
#
#   bash tests/scripts/stale_tmps.sh build/recdistill
set -u
RD="${1:?usage: stale_tmps.sh path/to/recdistill}"
case "$RD" in /*) ;; *) RD="$PWD/$RD" ;; esac
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skipped"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_stale_tmps_XXXXXX)"
LIVE=""
cleanup() {
    [ -z "$LIVE" ] || kill "$LIVE" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" -n 2 "$RD" train "$@" </dev/null >out 2>err; }

# A pid that ran and is gone, and one that runs for the whole test.
sh -c 'exit 0' &
DEAD=$!
wait "$DEAD"
kill -0 "$DEAD" 2>/dev/null && fail "pid $DEAD still runs"
sleep 600 &
LIVE=$!

# expect_gone / expect_kept DIR NAME...
expect_gone() {
    local d=$1 n
    shift
    for n in "$@"; do
        [ ! -e "$d/$n" ] || fail "$d/$n was left: $(grep -v INFO err | head -3)"
        grep -qF "removed $d/$n: " err || fail "no warning names $d/$n: $(grep WARN err | head -3)"
    done
}
expect_kept() {
    local d=$1 n
    shift
    for n in "$@"; do
        [ -e "$d/$n" ] || fail "$d/$n was removed"
    done
}

# ---- 1. run folder
cat >c.yaml <<YAML
run: {name: tiny, seed: 5}
cluster:
  ps_ranks: 1
  jobs:
    - {name: student, role: student, model: small}
data:
  source: synthetic
  dir: $TMP/data
  history_max: 16
  synthetic: {events: 3000, users: 40, items: 200}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}
ps:
  tables:
    - {name: s_user, dim: 4}
models:
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_user}
    mlp: [16]
train: {batch_size: 64, epochs: 1}
output: {progress_every_s: 0, plot: false}
YAML
mkdir run
GONE=("report.json.tmp.$DEAD.0badc0de" "config.effective.yaml.tmp.$DEAD.12345678"
      "student.metrics.csv.tmp.$DEAD.abcdef01" "old_job.targets.json.tmp.$DEAD.00000000")
KEPT=("report.json.tmp.$LIVE.0badc0de" "notes.txt.tmp.$DEAD.0badc0de"
      "report.json.tmp.$DEAD.0BADC0DE" "report.json.tmp.$DEAD.0badc0de.bak" "report.json.tmp.x"
      "my.csv")
for n in "${GONE[@]}" "${KEPT[@]}"; do echo left >"run/$n"; done
mkdir "run/student.metrics.csv.tmp.$DEAD.0badc0de" # a folder: nobody's temporary file
run c.yaml --out run || fail "launch: exit $?: $(grep -v INFO err | tail -3)"
[ -s run/report.json ] || fail "no report"
expect_gone run "${GONE[@]}"
expect_kept run "${KEPT[@]}" "student.metrics.csv.tmp.$DEAD.0badc0de"
echo "ok: run folder: ${#GONE[@]} stale temporaries removed, ${#KEPT[@]} + a folder kept"

# ---- 2. token store
cat >t.yaml <<YAML
run: {name: stale, seed: 3}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
data:
  source: synthetic
  dir: $TMP/tdata
  history_max: 16
  synthetic: {events: 3000, users: 40, items: 200}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}
ps:
  tables:
    - {name: t_user, dim: 8}
    - {name: t_item, dim: 8}
    - {name: k_user, dim: 4}
    - {name: k_item, dim: 4}
models:
  - name: big
    features:
      - {field: user, table: t_user}
      - {field: item, table: t_item}
    tokens: {scheme: 2, length: 8, kind: transformer, layers: 1, heads: 2, adapter: 8}
    mlp: [16]
  - name: src
    features:
      - {field: user, table: k_user}
      - {field: item, table: k_item}
    mlp: [16]
tokens: {dim: 8, dtype: fp32, scheme: 2, sit_layers: 1, window: 4, source_model: src, store_dir: $TMP/store}
train: {batch_size: 64, epochs: 1}
output: {progress_every_s: 0, plot: false}
YAML
run t.yaml --out s1 || fail "store build: exit $?: $(grep -v INFO err | tail -3)"
{ [ -f store/MANIFEST ] && [ -f store/DATASET ]; } || fail "no store built: $(ls store)"
GONE=("MANIFEST.tmp.$DEAD.0badc0de" "DATASET.tmp.$DEAD.0badc0de" "DATASET.new.$DEAD.123456789"
      "DATASET.new.$DEAD.123456789.tmp.$DEAD.0badc0de")
KEPT=("DATASET.new.$LIVE.5" "MANIFEST.tmp.$LIVE.0badc0de" "shard-0000.tmp.$DEAD.0badc0de"
      "DATASET.new.$DEAD.12x" "README")
for n in "${GONE[@]}" "${KEPT[@]}"; do echo left >"store/$n"; done
run t.yaml --out s2 || fail "launch on the store: exit $?: $(grep -v INFO err | tail -3)"
expect_gone "$TMP/store" "${GONE[@]}"
expect_kept "$TMP/store" "${KEPT[@]}" MANIFEST DATASET
echo "ok: token store: ${#GONE[@]} stale temporaries removed, ${#KEPT[@]} kept"
