#!/usr/bin/env bash
# out_durable.sh — a command that writes --out into folders it had to make syncs each of them in
# its parent, innermost first, once the output is in place: `export`, `table export`, `plot` and
# `scale-model` synced only the output's own folder, so a crash right after the command said
# "written" could take the output away with the folders made for it. What each command fsyncs is
# logged by an LD_PRELOAD library (tests/fsync_shim.c, RD_FSYNC_SHIM). Likewise `train --out`
# (its run and checkpoint folders). Folders follow the umask.
#
#   bash tests/scripts/out_durable.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: out_durable.sh path/to/recdistill}")"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
SHIM="${RD_FSYNC_SHIM:-$(dirname "$RD")/tests/librd_fsync_shim.so}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
[ -f "$SHIM" ] || { echo "FAIL: $SHIM not built"; exit 1; }
TMP="$(mktemp -d /tmp/rd_test_out_durable_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
TMP="$(realpath "$TMP")" # the log holds resolved paths
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TMP" || exit 1
# An ASan build wants its runtime first in the library list; the shim comes before it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}:verify_asan_link_order=0"

synced() { # name command...: run it with fsyncs logged; its output goes to $TMP/n_<name>/a/b/
    local name="$1"
    shift
    rm -f fsync.log
    RD_FSYNC_LOG="$TMP/fsync.log" LD_PRELOAD="$SHIM" "$@" >out 2>err ||
        fail "$name: exit $?: $(grep -v INFO err | head -3)"
    [ -s fsync.log ] || fail "$name: no fsync logged (is the shim loaded?)"
    # After the last fsync of the output's folder b: a/b, a, $TMP/n_<name>, each one in order.
    local want=("$TMP/n_$name/a/b" "$TMP/n_$name/a" "$TMP/n_$name" "$TMP")
    awk -v w0="${want[0]}" -v w1="${want[1]}" -v w2="${want[2]}" -v w3="${want[3]}" '
        BEGIN { w[0] = w0; w[1] = w1; w[2] = w2; w[3] = w3; k = 0 }
        k < 4 && $0 == w[k] { k++ }
        END { exit k == 4 ? 0 : 1 }' fsync.log ||
        fail "$name: the folders made for --out were not all synced, innermost first; fsyncs: $(tr '\n' ' ' <fsync.log | tail -c 600)"
    echo "ok: $name"
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
OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" -n 2 "$RD" train tiny.yaml --out R >train.out 2>&1 ||
    fail "train: $(grep -v INFO train.out | tail -3)"
CK=$(ls -d R/ckpt/student/step-* | tail -1)
[ -d "$CK" ] || fail "no checkpoint in R/ckpt/student"

synced export "$RD" export tiny.yaml --run R --out n_export/a/b/student.rdsv
synced table_export "$RD" table export "$CK" --table s_item --out n_table_export/a/b/item.tsv
printf 'x,y\n1,2\n2,3\n' >xy.csv
synced plot "$RD" plot xy.csv --x x --y y --out n_plot/a/b/xy.png
synced scale_model "$RD" scale-model --calib "$SRC/docs/scaling/calib-student.yaml" --ps 4 \
    --max-nodes 2 --out n_scale_model/a/b/eff.png
# The folder's fsync after the rename fails (EIO): the command fails, and its output is removed
# again, as when the fsync of a folder made for it fails. `table export`, `score`, `export`,
# `plot` and `scale-model` exited 1 with the file in place (a failed command that left its output).
"$RD" export tiny.yaml --run R --out b.rdsv >/dev/null 2>err || fail "export: $(cat err)"
failing() { # name command...: run it with the fsync of $TMP/f_<name> failing
    local name="$1"
    shift
    rm -rf "f_$name" && mkdir "f_$name"
    RD_FSYNC_FAIL="$TMP/f_$name" LD_PRELOAD="$SHIM" "$@" >out 2>err
    local rc=$?
    [ "$rc" -eq 1 ] || fail "$name, failing folder fsync: exit $rc, not 1: $(tail -3 err)"
    grep -q "fsync folder f_$name: Input/output error" err || fail "$name, failing folder fsync: $(cat err)"
    [ -z "$(ls -A "f_$name")" ] || fail "$name, failing folder fsync left: $(ls -A "f_$name" | tr '\n' ' ')"
    echo "ok: $name, failing folder fsync"
}
failing table_export "$RD" table export "$CK" --table s_item --out f_table_export/x.tsv
failing score "$RD" score b.rdsv --run R --out f_score/s.csv
failing score_json "$RD" score b.rdsv --run R --json f_score_json/s.json
failing export "$RD" export tiny.yaml --run R --out f_export/b.rdsv
failing plot "$RD" plot xy.csv --x x --y y --out f_plot/xy.png
failing scale_model "$RD" scale-model --calib "$SRC/docs/scaling/calib-student.yaml" --ps 4 \
    --max-nodes 2 --out f_scale_model/eff.png
# An existing file replaced: the command still fails; the new file is removed (the old one is
# gone with the rename, as after any failure past it), never another writer's file.
mkdir -p f_keep && echo old >f_keep/x.tsv
RD_FSYNC_FAIL="$TMP/f_keep" LD_PRELOAD="$SHIM" "$RD" table export "$CK" --table s_item --out f_keep/x.tsv >out 2>err &&
    fail "table export over a file, failing folder fsync: exit 0"
[ ! -e f_keep/x.tsv ] || fail "table export over a file, failing folder fsync left: $(head -c 80 f_keep/x.tsv)"

# train --out in folders that do not exist: each folder it makes is synced in its parent (the
# run folder and the checkpoint folder were made by copies of mkdir -p that synced nothing).
rm -f fsync.log
RD_FSYNC_LOG="$TMP/fsync.log" LD_PRELOAD="$SHIM" OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" -n 2 \
    "$RD" train tiny.yaml --out n_train/a/R >train.out 2>&1 || fail "train: $(grep -v INFO train.out | tail -3)"
for d in "$TMP" "$TMP/n_train" "$TMP/n_train/a" "$TMP/n_train/a/R" "$TMP/n_train/a/R/ckpt"; do
    grep -qxF "$d" fsync.log || fail "train --out n_train/a/R: $d never synced after a folder was made in it"
done
echo "ok: train"

# Folders follow the umask, as mkdir -p's do: under umask 002 (a group that shares its runs and
# tables) a checkpoint's folders were 0755, while the run folder around them was 0775.
(umask 002 && OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" -n 2 "$RD" train tiny.yaml --out G \
    >train.out 2>&1) || fail "train under umask 002: $(grep -v INFO train.out | tail -3)"
S=$(ls -d G/ckpt/student/step-* | tail -1)
for d in G G/ckpt G/ckpt/student "$S" $(ls -d "$S"/shard-*); do
    [ "$(stat -c %a "$d")" = 775 ] || fail "umask 002: $d has mode $(stat -c %a "$d"), expected 775"
done
echo "ok: umask"
echo "out_durable: all passed"
