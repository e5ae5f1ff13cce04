#!/usr/bin/env bash
# token_store_dir.sh — a tokens.store_dir that is not a folder of its own: the dataset's folder
# (data.dir), a folder inside it or holding it, or the run folder itself. Each launch is refused
# before anything is made (exit 1, no run folder, no dataset folder, no lock file left behind),
# the message naming both keys and the way out. They used to be refused later with the wrong cure:
# "data.dir D exists and is not a dataset folder (it holds 'writer.lock'); remove it" (the lock
# file the launch had just made) or "token store R: folder exists and is not empty but has no
# MANIFEST ...: remove it or choose another folder" for the run folder the launch had made.
# A store inside the run folder (the default, <run>/tokens) still runs.
#
#   bash tests/scripts/token_store_dir.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: token_store_dir.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_token_store_dir_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TMP" || exit 1

config() { # $1 = run folder, $2 = data.dir, $3 = tokens.store_dir ("" = the run's own)
    cat <<EOF
run: {name: sd, seed: 7, out_dir: $1}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: teacher}
data:
  source: synthetic
  dir: $2
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
tokens: {dim: 4, scheme: 1, source_model: source${3:+, store_dir: $3}}
EOF
}
run() { OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" -n 2 "$RD" train "$1" >"$1.out" 2>"$1.err"; }

refused() { # $1 = case, $2 = run folder, $3 = data.dir, $4 = store_dir, $5 = expected message
    config "$2" "$3" "$4" > "$1.yaml"
    run "$1.yaml" && fail "$1: accepted"
    grep -qF "$5" "$1.yaml.err" || fail "$1: no '$5' in: $(cat "$1.yaml.err")"
    grep -qF "give tokens.store_dir a folder of its own" "$1.yaml.err" ||
        fail "$1: no way out in: $(cat "$1.yaml.err")"
    grep -q "remove it" "$1.yaml.err" && fail "$1: tells to remove a folder: $(cat "$1.yaml.err")"
    for d in "$2" "$3" "$4"; do
        [ -e "$d" ] && fail "$1: $d was left behind: $(ls -la "$d")"
    done
    return 0
}

refused same_as_data "$TMP/r1" "$TMP/d1" "$TMP/d1" "tokens.store_dir $TMP/d1 is data.dir $TMP/d1"
refused inside_data "$TMP/r2" "$TMP/d2" "$TMP/d2/tokens" \
    "tokens.store_dir $TMP/d2/tokens is inside data.dir $TMP/d2"
refused holds_data "$TMP/r3" "$TMP/s3/data" "$TMP/s3" \
    "data.dir $TMP/s3/data is inside tokens.store_dir $TMP/s3"
refused run_folder "$TMP/r4" "$TMP/d4" "$TMP/r4" "the run folder $TMP/r4 is tokens.store_dir $TMP/r4"

# The default store, inside the run folder, runs.
config "$TMP/r5" "$TMP/d5" "" > ok.yaml
run ok.yaml || fail "the default store: $(cat ok.yaml.err)"
[ -e "$TMP/r5/tokens/MANIFEST" ] || fail "the default store: no $TMP/r5/tokens/MANIFEST"
echo "ok"
