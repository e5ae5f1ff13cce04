#!/usr/bin/env bash
# out_signal.sh — a file output interrupted by SIGTERM or SIGINT leaves nothing behind: neither
# its temporary file nor, for a command with two outputs, the first one already renamed into
# place. The signal is raised at the fsync of a chosen file by the LD_PRELOAD library
# (tests/fsync_shim.c, RD_FSYNC_RAISE), so it lands at that exact point:
#   - `score --out CSV --json JSON` at the JSON's commit (after the CSV's rename) left the CSV,
#     and `scale-model --out A --out-throughput B` at B's commit left A; a failure there removed
#     them, a signal did not;
#   - `table export`, `export` and `table compact` (one output each) at their commit.
# Each is killed by the signal (exit 128 + SIG) and its folder holds what it held before.
#
#   bash tests/scripts/out_signal.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: out_signal.sh path/to/recdistill}")"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
SHIM="${RD_FSYNC_SHIM:-$(dirname "$RD")/tests/librd_fsync_shim.so}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
[ -f "$SHIM" ] || { echo "FAIL: $SHIM not built"; exit 1; }
TMP="$(mktemp -d /tmp/rd_test_out_signal_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1
# An ASan build wants its runtime first in the library list; the shim comes before it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}:verify_asan_link_order=0"

# interrupted SIG TEXT name command...: run it in a fresh folder o/ with SIG raised at the fsync
# of a file whose path holds TEXT; it must die by SIG and leave o/ empty.
interrupted() {
    local sig="$1" text="$2" name="$3"
    shift 3
    rm -rf o && mkdir o
    RD_FSYNC_RAISE="$sig:$text" LD_PRELOAD="$SHIM" "$@" >out 2>err
    local rc=$?
    [ "$rc" -eq $((128 + sig)) ] || fail "$name, signal $sig at $text: exit $rc, not $((128 + sig)): $(tail -3 err)"
    [ -z "$(ls -A o)" ] || fail "$name, signal $sig at $text left: $(ls -A o | tr '\n' ' ')"
    echo "ok: $name, signal $sig"
}

cat > tiny.yaml <<YAML
run: {name: tiny, seed: 5}
cluster:
  ps_ranks: 1
  jobs:
    - {name: student, role: student, model: small}
data:
  source: synthetic
  history_max: 8
  synthetic: {events: 3000, users: 40, items: 200}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}
ps:
  tables:
    - {name: s_user, dim: 4}
    - {name: s_item, dim: 4}
models:
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_item}
    mlp: [8]
train: {batch_size: 64, epochs: 1}
output: {progress_every_s: 0}
YAML
timeout 300 "$MPIEXEC" -n 2 "$RD" train tiny.yaml --out R >train.out 2>&1 ||
    fail "train: $(grep -v INFO train.out | tail -3)"
CK=$(ls -d R/ckpt/student/step-* | tail -1)
[ -d "$CK" ] || fail "no checkpoint in R/ckpt/student"
"$RD" export tiny.yaml --run R --out b.rdsv >/dev/null 2>err || fail "export: $(cat err)"
# The shim raises the signal where asked: an uninterrupted run of each command writes its files.
RD_FSYNC_RAISE="15:no such path" LD_PRELOAD="$SHIM" "$RD" score b.rdsv --run R --out s.csv --json s.json >/dev/null 2>err ||
    fail "score: $(cat err)"
[ -s s.csv ] && [ -s s.json ] || fail "score wrote no CSV and JSON"
CAL="$SRC/docs/scaling/calib-student.yaml"

for sig in 15 2; do
    interrupted $sig o/s.json.tmp. "score --out --json" "$RD" score b.rdsv --run R --out o/s.csv --json o/s.json
    interrupted $sig o/s.csv.tmp. "score --out" "$RD" score b.rdsv --run R --out o/s.csv --json o/s.json
    interrupted $sig o/tp.png.tmp. "scale-model --out --out-throughput" \
        "$RD" scale-model --calib "$CAL" --out o/eff.png --out-throughput o/tp.png
    interrupted $sig o/x.tsv.tmp. "table export" "$RD" table export "$CK" --table s_item --out o/x.tsv
    interrupted $sig o/b.rdsv.tmp. "export" "$RD" export tiny.yaml --run R --out o/b.rdsv
    interrupted $sig o/c.partial. "table compact" "$RD" table compact "$CK" --out o/c
done
echo "out_signal.sh: ok"
