#!/usr/bin/env bash
# writer_locks.sh — one writer launch per target log and per token store (ps/writer_lock.c):
#   - while another process holds <distill.target_log>/writer.lock, a live teacher->student launch
#     is refused before training (exit 1, the log named, no report), the log keeps the holder's
#     state; once the holder is gone the launch runs;
#   - likewise a launch that builds into a held tokens.store_dir (no MANIFEST made: nothing
#     partial), and tokens gc on a held store (nothing deleted) while stats still read it;
#   - two launches creating one fresh store at once: never "folder exists and is not empty"; each
#     exits 0 or is refused by the lock naming the store;
#   - a store of another dtype is refused like dim ("the store has fp16 tokens, tokens.dtype is
#     fp32").
#
#   bash tests/scripts/writer_locks.sh build/recdistill
set -u
RD="${1:?usage: writer_locks.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v flock >/dev/null || { echo "flock(1) not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_writer_locks_XXXXXX)"
HOLDER=""
trap '[ -n "$HOLDER" ] && kill $HOLDER 2>/dev/null; rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" "$@"; }
hold() { # hold the lock file $1 in a background process until release
    mkdir -p "$(dirname "$1")"
    rm -f "$TMP/held"
    # The subshell becomes the holder (fd 9): killing it releases the lock. It waits for the lock
    # (a launch that just ended may still be letting go of it) and says when it has it.
    ( exec 9>>"$1"; flock -w 60 9 || exit 1; touch "$TMP/held"; exec sleep 600 ) & HOLDER=$!
    for _ in $(seq 1 600); do
        [ -e "$TMP/held" ] && return 0
        kill -0 "$HOLDER" 2>/dev/null || break
        sleep 0.1
    done
    fail "could not hold $1"
}
release() { kill $HOLDER 2>/dev/null; wait $HOLDER 2>/dev/null; HOLDER=""; }

# ---- 1. target log
sed -e "s#^\(\s*\)out_dir:.*#\1out_dir: $TMP/run#" "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/live.yaml"
grep -q '^distill:' "$TMP/live.yaml" && fail "slurm-tiny.yaml has a distill section: adapt the test"
printf 'distill: {target_log: %s}\n' "$TMP/targets" >> "$TMP/live.yaml"
sed -i "s#^\(\s*\)dir:.*#\1dir: $TMP/data#" "$TMP/live.yaml"
N=$("$RD" config --layout "$TMP/live.yaml" | sed -n 's/^world_size=//p')
[ -n "$N" ] || fail "no world_size from config --layout"
hold "$TMP/targets/writer.lock"
run -n "$N" "$RD" train "$TMP/live.yaml" --out "$TMP/l1" >"$TMP/l1.log" 2>&1 && fail "launch on a held target log exited 0"
grep -q "target log $TMP/targets is in use by another writer" "$TMP/l1.log" || { cat "$TMP/l1.log"; fail "refusal does not name the log"; }
[ -f "$TMP/l1/report.json" ] && fail "a refused launch wrote a report"
[ -f "$TMP/targets/data.mdb" ] && fail "a refused launch created the log"
release
run -n "$N" "$RD" train "$TMP/live.yaml" --out "$TMP/l2" >"$TMP/l2.log" 2>&1 || { cat "$TMP/l2.log"; fail "launch after the holder ended"; }
[ -f "$TMP/targets/data.mdb" ] || fail "the launch wrote no target log"
grep -q "pid" "$TMP/targets/writer.lock" || fail "the lock file does not name its holder"

# ---- 2. token store
iat() { # $1 dtype, $2 store
    cat <<YAML
run: {name: locks, seed: 3, out_dir: $TMP/iatrun}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
data:
  source: synthetic
  dir: $TMP/iatdata
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
tokens: {dim: 8, dtype: $1, scheme: 2, sit_layers: 1, window: 4, source_model: src, store_dir: $2}
train: {batch_size: 64, epochs: 1}
output: {progress_every_s: 0, plot: false}
YAML
}
iat fp32 "$TMP/store" > "$TMP/a.yaml"
iat fp16 "$TMP/store" > "$TMP/a16.yaml"
hold "$TMP/store/writer.lock"
run -n 2 "$RD" train "$TMP/a.yaml" --out "$TMP/s1" >"$TMP/s1.log" 2>&1 && fail "launch on a held store exited 0"
grep -q "token store $TMP/store is in use by another writer" "$TMP/s1.log" || { cat "$TMP/s1.log"; fail "refusal does not name the store"; }
[ -f "$TMP/store/MANIFEST" ] && fail "a refused launch created the store"
release
run -n 2 "$RD" train "$TMP/a.yaml" --out "$TMP/s2" >"$TMP/s2.log" 2>&1 || { cat "$TMP/s2.log"; fail "build after the holder ended"; }
before=$("$RD" tokens stats "$TMP/store" | sed -n 's/^total: \([0-9]*\) records.*/\1/p')
[ "${before:-0}" -gt 0 ] || fail "no tokens built"
hold "$TMP/store/writer.lock"
"$RD" tokens gc "$TMP/store" --before 9999999999 >"$TMP/gc.log" 2>&1 && fail "gc on a held store exited 0"
grep -q "in use by another writer" "$TMP/gc.log" || { cat "$TMP/gc.log"; fail "gc refusal"; }
after=$("$RD" tokens stats "$TMP/store" | sed -n 's/^total: \([0-9]*\) records.*/\1/p')
[ "$after" = "$before" ] || fail "a refused gc deleted records ($before -> $after)"
release
# A store and a training checkpoint mixed up: each named for what it is (the MANIFEST of a table
# checkpoint read as a damaged store's, and a lock file was left in the checkpoint).
CKS=$(ls -d "$TMP"/s2/ckpt/teacher/step-* | tail -1)
iat fp32 "$CKS" >"$TMP/ck.yaml"
run -n 2 "$RD" train "$TMP/ck.yaml" --out "$TMP/s4" >"$TMP/s4.log" 2>&1 && fail "a table checkpoint as the token store"
grep -q "token store $CKS: is a table checkpoint (.*), not a token store" "$TMP/s4.log" ||
    { cat "$TMP/s4.log"; fail "checkpoint as store: message"; }
[ ! -e "$CKS/writer.lock" ] || fail "a lock file was left in the checkpoint"
run -n 2 "$RD" train "$TMP/a.yaml" --out "$TMP/s4" --resume "$TMP/store" >"$TMP/s4.log" 2>&1 && fail "a store as --resume"
grep -q -- "--resume: $TMP/store is an instance-token store (.*), not a training checkpoint" "$TMP/s4.log" ||
    { cat "$TMP/s4.log"; fail "store as --resume: message"; }
# A launch into a finished run folder, refused by its store, removes nothing of that run (it
# removed the report and metrics first).
hold "$TMP/store/writer.lock"
run -n 2 "$RD" train "$TMP/a.yaml" --out "$TMP/s2" >"$TMP/s2b.log" 2>&1 && fail "launch on a held store exited 0"
grep -q "token store $TMP/store is in use by another writer" "$TMP/s2b.log" || { cat "$TMP/s2b.log"; fail "s2b refusal"; }
[ -s "$TMP/s2/report.json" ] && [ -s "$TMP/s2/teacher.metrics.csv" ] ||
    fail "a launch refused by its store removed the earlier run's outputs: $(ls "$TMP/s2")"
release
# Another dtype: refused like dim, before anything is made (no run folder left).
run -n 2 "$RD" train "$TMP/a16.yaml" --out "$TMP/s3" >"$TMP/s3.log" 2>&1 && fail "an fp16 config reused an fp32 store"
grep -q "the store has fp32 tokens, tokens.dtype is fp16" "$TMP/s3.log" || { cat "$TMP/s3.log"; fail "dtype refusal"; }
[ ! -e "$TMP/s3" ] || fail "a launch refused by its store left its run folder: $(find "$TMP/s3" | head -3)"
# A new store whose launch then fails to prepare its data leaves no store folder behind.
printf 'u,i,t,y\n1,2,3,1\n' >"$TMP/log.csv"
sed -e "s|^  source: synthetic\$|  source: csv\n  input: $TMP\n  schema: {path: log.csv, user_column: u, item_column: i, time_column: t, label: \"clik >= 1\"}|" \
    -e "s|dir: $TMP/iatdata|dir: $TMP/iatdata_bad|" "$TMP/a.yaml" | sed "s|store_dir: $TMP/store|store_dir: $TMP/nostore/sub|" >"$TMP/bad.yaml"
grep -q clik "$TMP/bad.yaml" && grep -q "$TMP/nostore/sub" "$TMP/bad.yaml" || fail "could not write bad.yaml"
run -n 2 "$RD" train "$TMP/bad.yaml" --out "$TMP/s5" >"$TMP/s5.log" 2>&1 && fail "a launch without its label column succeeded"
grep -q "no column 'clik'" "$TMP/s5.log" || { cat "$TMP/s5.log"; fail "s5 message"; }
[ ! -e "$TMP/nostore" ] || fail "a failed launch left the store folder it made: $(find "$TMP/nostore")"
# Two launches creating one fresh store at once.
iat fp32 "$TMP/fresh" > "$TMP/f.yaml"
run -n 2 "$RD" train "$TMP/f.yaml" --out "$TMP/f1" >"$TMP/f1.log" 2>&1 & p1=$!
run -n 2 "$RD" train "$TMP/f.yaml" --out "$TMP/f2" >"$TMP/f2.log" 2>&1 & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
grep -q "not empty" "$TMP/f1.log" "$TMP/f2.log" && fail "a racing creator was told the folder is not empty"
for k in 1 2; do
    eval rc=\$r$k
    [ "$rc" = 0 ] || grep -q "token store $TMP/fresh is in use by another writer" "$TMP/f$k.log" ||
        { cat "$TMP/f$k.log"; fail "racing launch $k failed otherwise (rc $rc)"; }
done
[ "$r1" = 0 ] || [ "$r2" = 0 ] || fail "neither racing launch built the store"
"$RD" tokens verify "$TMP/fresh" >/dev/null || fail "the raced store does not verify"
echo "writer_locks: ok"
