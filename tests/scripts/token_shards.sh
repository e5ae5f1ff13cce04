#!/usr/bin/env bash
# token_shards.sh — an existing instance-token store served by another number of PS ranks. Shard s
# of a store is served by PS rank s % ps_ranks, so a store of N shards runs on any ps_ranks that
# divides N and is refused on the others:
#  1. a store built by a run on 3 PS ranks, reused (tokens.store_dir) by a run on 1 PS rank: the
#     same store layout and the same holdout AUC as the 3-PS run;
#  2. the same store on 2 PS ranks: refused before anything is made (no run folder), exit non-zero,
#     the message naming cluster.ps_ranks, the counts that would serve it (1, 3) and the other
#     way out, tokens.store_dir (it used to say only "not a multiple of the 2 PS ranks");
#  3. a store of 2 shards on 4 PS ranks (more PS ranks than shards): refused the same way.
#
#   bash tests/scripts/token_shards.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: token_shards.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_token_shards_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" "$@"; }
export OPENBLAS_NUM_THREADS=1
cd "$TMP" || exit 1

config() { # $1 = ps ranks, $2 = run folder, $3 = tokens.store_dir ("" = the run's own)
    cat <<EOF
run: {name: shards, seed: 7, out_dir: $TMP/$2}
cluster:
  ps_ranks: $1
  jobs:
    - {name: teacher, role: teacher, model: teacher}
data:
  source: synthetic
  dir: $TMP/data
  history_max: 16
  synthetic: {events: 3000, users: 20, items: 100, topics: 4, dim: 4}
  split: {batch_fraction: 0.7, holdout_fraction: 0.1, stream_windows: 2}
ps:
  tables:
    - {name: t_emb, dim: 8}
    - {name: k_emb, dim: 4}
models:
  - name: teacher
    features:
      - {field: user, table: t_emb}
      - {field: item, table: t_emb}
    seq: {kind: mean, length: 8}
    mlp: [8]
    tokens: {scheme: 2, length: 8, kind: mean, adapter: 8}
  - name: source
    features:
      - {field: user, table: k_emb}
      - {field: item, table: k_emb}
    mlp: [8]
train: {batch_size: 64, eval_every: 1000}
output: {plot: false, progress_every_s: 0}
tokens: {dim: 8, scheme: 2, sit_layers: 1, window: 8, source_model: source${3:+, store_dir: $3}}
EOF
}
auc() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['holdout']['teacher']['auc'])" "$1"; }

# 1. Built on 3 PS ranks, served by 1.
config 3 p3 "" > p3.yaml
run -n 4 "$RD" train p3.yaml >p3.out 2>p3.err || fail "3 PS ranks: $(cat p3.err)"
ls -d p3/tokens/shard-* | wc -l | grep -qx 3 || fail "3 PS ranks: not 3 shards"
config 1 p1 "$TMP/p3/tokens" > p1.yaml
run -n 2 "$RD" train p1.yaml >p1.out 2>p1.err || fail "3 shards on 1 PS rank: $(cat p1.err)"
ls -d p3/tokens/shard-* | wc -l | grep -qx 3 || fail "1 PS rank changed the store's shards"
a3=$(auc p3/report.json)
a1=$(auc p1/report.json)
[ "$a3" = "$a1" ] || fail "3 shards on 1 PS rank: holdout AUC $a1, on 3 PS ranks $a3"

# 2. The same store on 2 PS ranks: refused up front, on every rank, naming what would work.
config 2 p2 "$TMP/p3/tokens" > p2.yaml
run -n 3 "$RD" train p2.yaml >p2.out 2>p2.err && fail "3 shards on 2 PS ranks: accepted"
for want in "the store has 3 shards, not a multiple of the 2 PS ranks (cluster.ps_ranks)" \
    "ps_ranks must divide 3 (1, 3)" "give tokens.store_dir a new folder" \
    "a store of 2 shards (one per PS rank)"; do
    grep -qF "$want" p2.err || fail "3 shards on 2 PS ranks: no '$want' in: $(cat p2.err)"
done
[ -e p2 ] && fail "3 shards on 2 PS ranks: the run folder was made: $(ls -R p2)"

# 3. A store of 2 shards on 4 PS ranks.
config 2 q2 "" > q2.yaml
run -n 3 "$RD" train q2.yaml >q2.out 2>q2.err || fail "2 PS ranks: $(cat q2.err)"
config 4 q4 "$TMP/q2/tokens" > q4.yaml
run -n 5 "$RD" train q4.yaml >q4.out 2>q4.err && fail "2 shards on 4 PS ranks: accepted"
grep -qF "ps_ranks must divide 2 (1, 2)" q4.err || fail "2 shards on 4 PS ranks: $(cat q4.err)"
[ -e q4 ] && fail "2 shards on 4 PS ranks: the run folder was made"

echo "token_shards: all checks passed (holdout AUC $a1 on 1 and 3 PS ranks)"
