#!/usr/bin/env bash
# folder_overlap.sh — the run's folders of their own: data.dir, ps.checkpoint_dir,
# distill.target_log and tokens.store_dir. Two of them set to one folder, or a folder inside the
# dataset's, the target log's or the store's, is refused at start-up (exit 1, nothing made: no
# run folder, no dataset, no lock file), the message naming both keys, the folders and the way
# out. Before, each failed late and wrongly: "token store X is in use by another writer" (the
# launch's own checkpoint lock), "data.dir X exists and is not a dataset folder (it holds
# 'writer.lock'); remove it", "the folder holds other files but no log" after the dataset was
# prepared, a store equal to or nested with data.dir or the run folder "remove it" about a folder
# the launch had itself just written into. The layouts that worked still run: the store and the
# target log inside the checkpoint folder, a checkpoint folder that is the run folder, and the
# default store inside the run folder.
#
#   bash tests/scripts/folder_overlap.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: folder_overlap.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_folder_overlap_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TMP" || exit 1

# $1 = run folder, $2 = data.dir, $3 = ps.checkpoint_dir, $4 = distill.target_log,
# $5 = tokens.store_dir ("" = the default under the run folder)
config() {
    cat <<EOF
run: {name: ov, seed: 7, out_dir: $1}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: teacher}
    - {name: student, role: student, model: student, distill: true}
data:
  source: synthetic
  dir: $2
  history_max: 8
  synthetic: {events: 2000, users: 10, items: 50, topics: 4, dim: 4}
  split: {batch_fraction: 0.7, holdout_fraction: 0.1, stream_windows: 1}
ps:
  checkpoint_dir: "$3"
  tables:
    - {name: t_emb, dim: 4}
    - {name: k_emb, dim: 4}
    - {name: s_emb, dim: 4}
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
  - name: student
    features:
      - {field: user, table: s_emb}
      - {field: item, table: s_emb}
    mlp: [4]
    two_towers: true
train: {batch_size: 64, eval_every: 1000}
distill: {wait_ms: 60000, target_log: "$4"}
output: {plot: false, progress_every_s: 0}
tokens: {dim: 4, scheme: 1, source_model: source, store_dir: "$5"}
EOF
}
run() { OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" -n 3 "$RD" train "$1" >"$1.out" 2>"$1.err"; }

# $1 = case, $2 = expected message, $3 = the key of the way out; then config()'s five folders
refused() {
    local name="$1" want="$2" key="$3"
    shift 3
    config "$@" >"$name.yaml"
    run "$name.yaml" && fail "$name: accepted"
    grep -qF "$want" "$name.yaml.err" || fail "$name: no '$want' in: $(cat "$name.yaml.err")"
    grep -qF "give $key a folder of its own" "$name.yaml.err" ||
        fail "$name: no way out in: $(cat "$name.yaml.err")"
    grep -qE "remove it|in use by another writer|empty it" "$name.yaml.err" &&
        fail "$name: the old, wrong message: $(cat "$name.yaml.err")"
    [ "$(ls -A "$TMP/f" 2>/dev/null)" = "" ] || fail "$name: left behind: $(ls -R "$TMP/f")"
    return 0
}

F="$TMP/f"
refused ckpt_is_store "tokens.store_dir $F/x is ps.checkpoint_dir $F/x" tokens.store_dir \
    "$F/r" "$F/d" "$F/x" "" "$F/x"
refused ckpt_is_data "ps.checkpoint_dir $F/x is data.dir $F/x" ps.checkpoint_dir \
    "$F/r" "$F/x" "$F/x" "" ""
refused log_is_ckpt "distill.target_log $F/x is ps.checkpoint_dir $F/x" distill.target_log \
    "$F/r" "$F/d" "$F/x" "$F/x" ""
refused store_is_log "tokens.store_dir $F/x is distill.target_log $F/x" tokens.store_dir \
    "$F/r" "$F/d" "" "$F/x" "$F/x"
refused log_is_data "distill.target_log $F/x is data.dir $F/x" distill.target_log \
    "$F/r" "$F/x" "" "$F/x" ""
refused ckpt_in_store "ps.checkpoint_dir $F/x/ck is inside tokens.store_dir $F/x" \
    tokens.store_dir "$F/r" "$F/d" "$F/x/ck" "" "$F/x"
refused ckpt_in_data "ps.checkpoint_dir $F/d/ck is inside data.dir $F/d" ps.checkpoint_dir \
    "$F/r" "$F/d" "$F/d/ck" "" ""
refused ckpt_in_log "ps.checkpoint_dir $F/l/ck is inside distill.target_log $F/l" \
    distill.target_log "$F/r" "$F/d" "$F/l/ck" "$F/l" ""
refused run_is_log "the run folder $F/r is distill.target_log $F/r" distill.target_log \
    "$F/r" "$F/d" "" "$F/r" ""
# The store against the dataset's folder and the run folder (these were refused with "remove it"
# about a folder the launch had just written into: its lock file, or the run folder it made).
refused store_is_data "tokens.store_dir $F/d is data.dir $F/d" tokens.store_dir \
    "$F/r" "$F/d" "" "" "$F/d"
refused store_in_data "tokens.store_dir $F/d/tokens is inside data.dir $F/d" tokens.store_dir \
    "$F/r" "$F/d" "" "" "$F/d/tokens"
refused data_in_store "data.dir $F/s/data is inside tokens.store_dir $F/s" tokens.store_dir \
    "$F/r" "$F/s/data" "" "" "$F/s"
refused store_is_run "the run folder $F/r is tokens.store_dir $F/r" tokens.store_dir \
    "$F/r" "$F/d" "" "" "$F/r"
# By another name: a symlink to the checkpoint folder as the store.
mkdir -p "$TMP/real" && ln -s "$TMP/real" "$TMP/link"
config "$F/r" "$F/d" "$TMP/real" "" "$TMP/link" >link.yaml
run link.yaml && fail "link: accepted"
grep -qF "tokens.store_dir $TMP/link is ps.checkpoint_dir $TMP/real" link.yaml.err ||
    fail "link: $(cat link.yaml.err)"
[ "$(ls -A "$TMP/real")" = "" ] || fail "link: left in the folder: $(ls -A "$TMP/real")"

# What worked before still runs: the store and the target log inside the checkpoint folder, and
# the checkpoint folder as the run folder.
config "$TMP/ok1" "$TMP/d1" "$TMP/ck" "$TMP/ck/log" "$TMP/ck/tokens" >ok1.yaml
run ok1.yaml || fail "store and log inside the checkpoint folder: $(cat ok1.yaml.err)"
for p in tokens/MANIFEST log/data.mdb teacher; do
    [ -e "$TMP/ck/$p" ] || fail "ok1: no $TMP/ck/$p: $(find "$TMP/ck" -maxdepth 2 | head -30)"
done
config "$TMP/ok2" "$TMP/d2" "$TMP/ok2" "" "" >ok2.yaml
run ok2.yaml || fail "checkpoint folder = run folder: $(cat ok2.yaml.err)"
for p in report.json teacher tokens/MANIFEST; do
    [ -e "$TMP/ok2/$p" ] || fail "ok2: no $TMP/ok2/$p: $(find "$TMP/ok2" -maxdepth 1)"
done
echo "folder_overlap: ok"
