#!/usr/bin/env bash
# token_store_ro.sh — `tokens compact` of a store this process may not write (a read-only mount;
# likewise another user's folder): the copy only reads the store, so it is made, and it verifies
# with the same records. It was refused ("cannot open its lock file STORE/writer.lock: Read-only
# file system"), as compact takes the store's writer lock to keep writers out while it copies.
# Now it holds the existing lock file shared instead, so a writer that holds the store (through a
# writable view of it) still gets the copy refused, naming the store, with no --out left behind.
# Needs root to bind-mount the store read-only; skips otherwise.
#
#   bash tests/scripts/token_store_ro.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: token_store_ro.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v flock >/dev/null || { echo "flock(1) not found: skip"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "not root (a read-only bind mount is needed): skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_token_ro_XXXXXX)"
MOUNTED=0
HOLDER=""
cleanup() {
    [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
    [ $MOUNTED -eq 1 ] && umount "$TMP/ro"
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TMP" || exit 1

cat > c.yaml <<EOF
run: {name: ro, seed: 7, out_dir: $TMP/run}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: teacher}
data:
  source: synthetic
  dir: $TMP/data
  history_max: 8
  synthetic: {events: 2000, users: 10, items: 50, topics: 4, dim: 4}
  split: {batch_fraction: 0.7, holdout_fraction: 0.1, stream_windows: 1}
ps:
  tables:
    - {name: t_emb, dim: 4}
    - {name: k_emb, dim: 4}
models:
  - name: teacher
    features:
      - {field: user, table: t_emb}
      - {field: item, table: t_emb}
    mlp: [4]
    tokens: {scheme: 1, length: 4, kind: mean, adapter: 4}
  - name: source
    features:
      - {field: user, table: k_emb}
      - {field: item, table: k_emb}
    mlp: [4]
train: {batch_size: 64, eval_every: 1000}
output: {plot: false, progress_every_s: 0}
tokens: {dim: 4, scheme: 1, source_model: source}
EOF
OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" -n 2 "$RD" train c.yaml >train.out 2>train.err ||
    fail "train: $(cat train.err)"
S="$TMP/run/tokens"
[ -e "$S/writer.lock" ] || fail "the launch left no writer.lock in $S"
mkdir ro
if ! mount --bind "$S" ro 2>/dev/null; then
    echo "cannot bind-mount: skip"
    exit 77
fi
MOUNTED=1
mount -o remount,ro,bind ro 2>/dev/null || { echo "cannot remount read-only: skip"; exit 77; }
touch ro/probe 2>/dev/null && fail "the bind mount is writable"

# 1. The read-only store is copied, and the copy holds what the store holds.
"$RD" tokens compact ro --out copy >out 2>err || fail "compact of a read-only store: $(cat err)"
"$RD" tokens verify copy >/dev/null 2>err || fail "the copy does not verify: $(cat err)"
want=$("$RD" tokens stats "$S" | grep '^total:' | cut -d, -f1)
got=$("$RD" tokens stats copy | grep '^total:' | cut -d, -f1)
[ -n "$want" ] && [ "$want" = "$got" ] || fail "copy: '$got', store: '$want'"

# 2. A writer holding the store (through its writable path) still has the copy refused.
( exec 9>>"$S/writer.lock"; flock 9; touch held; exec sleep 600 ) & HOLDER=$!
for _ in $(seq 1 300); do [ -e held ] && break; sleep 0.1; done
[ -e held ] || fail "could not hold $S/writer.lock"
"$RD" tokens compact ro --out copy2 >out 2>err && fail "compact while a writer holds the store: accepted"
grep -qF "token store ro is in use by another writer" err || fail "refusal: $(cat err)"
[ -e copy2 ] && fail "a refused compact left copy2"
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null; HOLDER=""
echo "ok"
