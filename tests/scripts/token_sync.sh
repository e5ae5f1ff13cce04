#!/usr/bin/env bash
# token_sync.sh — when a training run makes its token store durable. The PS rank committed every
# step's appends with a disk flush (fdatasync of the shard's data file at each commit, LMDB's
# default): at scale most of the PS rank's time (a 4 KiB leaf page a token) and the token build
# grew faster than the log (docs/scaling.md, section 4). It now commits without a flush and
# flushes its shards before each checkpoint of its tables (so that a checkpoint never claims
# tokens a host crash could take) and once at the end of the run. What the ranks flush is logged
# by the LD_PRELOAD library tests/fsync_shim.c (fsync and fdatasync):
#  1. checkpoints every 10 steps: the shard's data file is flushed a handful of times (the
#     store's creation, each SAVE, the end), not at every one of the hundreds of commits;
#  2. its last flush comes after the last checkpoint's files: the tokens appended after it (the
#     holdout's) are durable at the end of the run;
#  3. the run's results are those of a run without the shim (the flush changes no byte).
#
#   bash tests/scripts/token_sync.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: token_sync.sh path/to/recdistill}")"
SHIM="${RD_FSYNC_SHIM:-$(dirname "$RD")/tests/librd_fsync_shim.so}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
[ -f "$SHIM" ] || { echo "FAIL: $SHIM not built"; exit 1; }
TMP="$(mktemp -d /tmp/rd_test_token_sync_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
TMP="$(realpath "$TMP")" # the log holds resolved paths
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1
# An ASan build wants its runtime first in the library list; the shim comes before it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}:verify_asan_link_order=0"

# One PS rank and a token teacher: 12,800 events in steps of 64 make about 200 append commits.
cat >iat.yaml <<EOF
run: {name: tsync, seed: 3}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
data:
  source: synthetic
  history_max: 16
  synthetic: {events: 12800, users: 100, items: 400}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}
ps:
  checkpoint_every: 10
  checkpoint_keep: 2
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
    tokens: {scheme: 1, length: 8, kind: mean}
    mlp: [16]
  - name: src
    features:
      - {field: user, table: k_user}
      - {field: item, table: k_item}
    mlp: [16]
tokens: {dim: 8, scheme: 1, window: 4, source_model: src}
train: {batch_size: 64}
EOF

RD_FSYNC_LOG="$TMP/fsync.log" LD_PRELOAD="$SHIM" timeout 300 "$MPIEXEC" -n 2 "$RD" train iat.yaml \
    --out "$TMP/run" </dev/null >out 2>err || fail "train: exit $?: $(grep -v INFO err | tail -5)"
[ -s fsync.log ] || fail "no fsync logged (is the shim loaded?)"
SHARD="$TMP/run/tokens/shard-0000/data.mdb"
[ -f "$SHARD" ] || fail "no $SHARD"
n_tok="$(grep -o 'tokens: [a-z ()]*, [0-9]* tokens written' out | awk '{s += $(NF - 2)} END {print s + 0}')"
[ "$n_tok" -ge 12000 ] || fail "the run wrote $n_tok tokens: $(grep 'tokens:' out)"
n_save="$(grep -c 'INFO saved shard' err)"
[ "$n_save" -ge 3 ] || fail "only $n_save checkpoints saved"
n_flush="$(grep -cxF "$SHARD" fsync.log)"
echo "$n_tok tokens, $n_save checkpoints: the shard flushed $n_flush times"

# 1. A handful of flushes: creation (its header: a commit, the file), one per SAVE, the end.
[ "$n_flush" -ge 1 ] || fail "the shard was never flushed"
[ "$n_flush" -le $((n_save + 6)) ] ||
    fail "the shard was flushed $n_flush times for $n_save checkpoints: at every commit?"

# 2. The last flush of the shard after the last checkpoint's files were synced.
last_shard="$(grep -nxF "$SHARD" fsync.log | tail -n 1 | cut -d: -f1)"
last_ckpt="$(grep -n "^$TMP/run/ckpt/" fsync.log | tail -n 1 | cut -d: -f1)"
[ -n "$last_ckpt" ] || fail "no checkpoint file synced: $(head -5 fsync.log)"
[ "$last_shard" -gt "$last_ckpt" ] ||
    fail "the shard's last flush (line $last_shard) is before the last checkpoint's (line $last_ckpt): the tokens after it are not durable"

# 3. The same run without the shim: the same report figures.
timeout 300 "$MPIEXEC" -n 2 "$RD" train iat.yaml --out "$TMP/run2" </dev/null >out2 2>err2 ||
    fail "train without the shim: $(grep -v INFO err2 | tail -5)"
auc() { grep -o '"auc": *[0-9.e+-]*' "$1" | head -n 3 | tr '\n' ' '; }
[ "$(auc "$TMP/run/report.json")" = "$(auc "$TMP/run2/report.json")" ] ||
    fail "the shim changed the results: $(auc "$TMP/run/report.json") vs $(auc "$TMP/run2/report.json")"
echo "token_sync.sh: ok"
