#!/usr/bin/env bash
# iat.sh — IAT end to end in `recdistill train`: the teacher job builds the run's token store
# (source model over the batch period, the stream and the holdout; every token appended through
# the PS rank that owns its user) and its model reads the user's tokens fetched through the PS.
# Checks: the store's layout, one token per event and pass, the exact number of fetches, the same
# holdout AUC with 1 and 2 PS ranks (neither the store nor the tables depend on P), both schemes,
# a student job that waits for the store while the teacher builds it, and a store of another dim
# answered with a clear error.
#
#   bash tests/scripts/iat.sh build/recdistill
set -u
RD="${1:?usage: iat.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_iat_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" "$@"; }

config() { # $1 = ps ranks, $2 = scheme, $3 = extra jobs, $4 = extra tokens: keys
    cat <<EOF
run: {name: iat-tiny, seed: 3}
cluster:
  ps_ranks: $1
  jobs:
    - {name: teacher, role: teacher, model: big}
$3
data:
  source: synthetic
  history_max: 16
  synthetic: {events: 6000, users: 60, items: 300}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 3}
ps:
  tables:
    - {name: t_user, dim: 8}
    - {name: t_item, dim: 8}
    - {name: k_user, dim: 4}
    - {name: k_item, dim: 4}
    - {name: s_user, dim: 4}
    - {name: s_item, dim: 4}
models:
  - name: big
    features:
      - {field: user, table: t_user}
      - {field: item, table: t_item}
    seq: {kind: mean, length: 8}
    tokens: {scheme: $2, length: 12, kind: transformer, layers: 1, heads: 2, adapter: 8}
    mlp: [16]
  - name: src
    features:
      - {field: user, table: k_user}
      - {field: item, table: k_item}
    mlp: [16]
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_item}
    mlp: [8]
tokens: {dim: 8, scheme: $2, sit_layers: 1, window: 4, source_model: src${4:-}}
train: {batch_size: 64, epochs: 2}
output: {progress_every_s: 0}
EOF
}

auc() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['holdout'][sys.argv[2]]['auc'])" "$@"; }

check() { # report, tokens written, fetches
    python3 - "$@" <<'PY' || fail "report $1"
import json, sys
r = json.load(open(sys.argv[1]))
t = r["jobs"]["teacher"]["tokens"]
assert t["built"] is True, t
assert t["tokens_written"] == int(sys.argv[2]), t
assert t["fetched_requests"] == int(sys.argv[3]), t
assert 0 < t["fetched_tokens"] <= 12 * t["fetched_requests"], t
assert t["source_events"] == 2 * 4800 + 600, t
assert 0.3 < r["holdout"]["teacher"]["auc"] < 1.0
PY
}
# Tokens: 4800 batch (first of the 2 epochs only) + 600 stream + 600 holdout. Fetches: training
# 2 x 4800 + 600, evaluation 600 stream + 600 holdout.
W=$((4800 + 600 + 600))
F=$((2 * 4800 + 600 + 600 + 600))

# User order as in the paper (batch period in windows of one user), user order with the batch
# period in time order and the SIT reading earlier labels, and the temporal scheme.
n=0
for variant in "2:, batch_order: user, sit_labels: false" 2 1; do
    scheme=${variant%%:*}
    tag=$((++n))
    extra=${variant#"$scheme"}
    extra=${extra#:}
    config 1 $scheme "" "$extra" > "$TMP/p1.yaml"
    config 2 $scheme "" "$extra" > "$TMP/p2.yaml"
    run -n 2 "$RD" train "$TMP/p1.yaml" --out "$TMP/p1-$tag" >"$TMP/out" 2>"$TMP/err" ||
        fail "scheme $scheme, 1 PS: $(cat "$TMP/err")"
    grep -q "tokens: holdout (no training), 600 tokens written" "$TMP/out" ||
        fail "build lines: $(cat "$TMP/out")"
    run -n 3 "$RD" train "$TMP/p2.yaml" --out "$TMP/p2-$tag" >"$TMP/out" 2>"$TMP/err" ||
        fail "scheme $scheme, 2 PS: $(cat "$TMP/err")"
    check "$TMP/p1-$tag/report.json" $W $F
    check "$TMP/p2-$tag/report.json" $W $F
    [ -f "$TMP/p1-$tag/tokens/MANIFEST" ] || fail "no store MANIFEST"
    ls -d "$TMP/p2-$tag/tokens/shard-"* | wc -l | grep -qx 2 || fail "2 PS ranks: not 2 shards"
    a1=$(auc "$TMP/p1-$tag/report.json" teacher)
    a2=$(auc "$TMP/p2-$tag/report.json" teacher)
    echo "scheme $scheme$extra: holdout AUC 1 PS $a1, 2 PS $a2"
    [ "$a1" = "$a2" ] || fail "scheme $scheme: AUC depends on the PS count ($a1 vs $a2)"
done

# A student job without tokens waits for the store, then trains as usual.
config 1 2 "    - {name: student, role: student, model: small}" > "$TMP/two.yaml"
run -n 3 "$RD" train "$TMP/two.yaml" --out "$TMP/two" >"$TMP/out" 2>"$TMP/err" ||
    fail "two jobs: $(cat "$TMP/err")"
python3 - "$TMP/two/report.json" <<'PY' || fail "two jobs report"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["jobs"]["teacher"]["tokens"]["built"] is True
assert "tokens" not in r["jobs"]["student"]
assert 0.3 < r["holdout"]["student"]["auc"] < 1.0
PY

# The store left by a run with another dim: a clear error, no report.
sed -e 's/tokens: {dim: 8,/tokens: {dim: 6,/' "$TMP/p1.yaml" > "$TMP/dim.yaml"
rm -f "$TMP/p1-3/report.json"
run -n 2 "$RD" train "$TMP/dim.yaml" --out "$TMP/p1-3" >"$TMP/out" 2>"$TMP/err" &&
    fail "dim mismatch accepted"
grep -q "token store .*tokens: the store has dim 8, tokens.dim is 6" "$TMP/err" ||
    fail "dim message: $(cat "$TMP/err")"
[ ! -e "$TMP/p1-3/report.json" ] || fail "failed run left a report"
echo "iat.sh: ok"
