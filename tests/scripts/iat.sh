#!/usr/bin/env bash
# iat.sh — IAT end to end in `recdistill train`: the teacher job builds the run's token store
# (source model over the batch period, the stream and the holdout; every token appended through
# the PS rank that owns its user) and its model reads the user's tokens fetched through the PS.
# Checks: the store's layout, one token per event and pass, the exact number of fetches, the same
# holdout AUC with 1 and 2 PS ranks (neither the store nor the tables depend on P), both schemes,
# a student job that waits for the store while the teacher builds it, a store of another dim
# answered with a clear error, the built store mapped for serving in 2 MiB pages (and nothing
# changed with tokens.huge_pages off), the token teacher exported for serving (and refused
# without its store), and side values (tokens.side: a CSV log's rating stored
# with each token, fetched back equal, and a reused store without them refused). The token
# teacher's holdout AUC stays within a plausible margin of the same teacher without tokens (a
# token of the event itself leaking in fails there). A resume of the token-reading job with
# other token-build settings is refused. The target search
# (models[].tokens.search) reads only the request item's tokens, or those of its series
# (search_by); the source model's SIT can be grouped by series (tokens.sit_group_by). The store
# is the same when the teacher's batch is split over 2 ranks. With tokens.batch_tokens final the
# trained source model rewrites the batch period's tokens. Token fetch buffers beyond the
# memory limit are refused at set-up naming train.batch_size and models[].tokens.search.
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

# Run PREFIX1.yaml with 1 PS rank and PREFIX2.yaml with 2 (into PREFIX1/ and PREFIX2/): the
# teacher's holdout AUC must not depend on the PS count. Sets PAIR_AUC to it.
pair_runs() { # $1 = path prefix, $2 = what is checked
    run -n 2 "$RD" train "${1}1.yaml" --out "${1}1" >"$TMP/out" 2>"$TMP/err" ||
        fail "$2, 1 PS: $(cat "$TMP/err")"
    run -n 3 "$RD" train "${1}2.yaml" --out "${1}2" >"$TMP/out" 2>"$TMP/err" ||
        fail "$2, 2 PS: $(cat "$TMP/err")"
    local x1 x2
    x1=$(auc "${1}1/report.json" teacher)
    x2=$(auc "${1}2/report.json" teacher)
    echo "$2: holdout AUC 1 PS $x1, 2 PS $x2"
    [ "$x1" = "$x2" ] || fail "$2: AUC depends on the PS count ($x1 vs $x2)"
    PAIR_AUC=$x1
}

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

# A sanity bound on what tokens can add here: the same teacher without tokens on the same data.
# The tokens summarise each user's earlier events; with 100 events per user (fewer than the
# synthetic model's long-range memory signal needs, rd/synth.h) they carry little the teacher's
# own history does not, and the holdout's 600 events give its AUC a standard error of about
# 0.025. So a token teacher more than 0.10 (4 standard errors) above the no-token one is reading
# what it should not: the event's own token, which holds its label (seen: 0.54 -> 0.99).
# Without a reader, a source model given with no tokens.scheme written anywhere is a forgotten
# switch, which the config refuses: drop the tokens: section too, as tools/ablations.sh's
# iat_none does (no store was built either way).
config 1 2 "" "" | grep -v "^    tokens: {scheme" | grep -v "^tokens:" > "$TMP/none.yaml"
grep -q "^    tokens:" "$TMP/none.yaml" && fail "none.yaml still reads tokens"
run -n 2 "$RD" train "$TMP/none.yaml" --out "$TMP/none" >"$TMP/out" 2>"$TMP/err" ||
    fail "no tokens: $(cat "$TMP/err")"
a_none=$(auc "$TMP/none/report.json" teacher)
MARGIN=0.10
plausible() { # $1 = token teacher's holdout AUC, $2 = what
    python3 -c "import sys; sys.exit(0 if $1 <= $a_none + $MARGIN else 1)" ||
        fail "$2: holdout AUC $1 is more than $MARGIN above the no-token teacher's $a_none: \
the tokens leak the event itself (or its label)"
}

# User order as in the paper (batch period in windows of one user), user order with the batch
# period in time order and the SIT reading earlier labels, the temporal scheme, and user order
# with the windows of all users interleaved (batch_order: windows).
n=0
for variant in "2:, batch_order: user, sit_labels: false" 2 1 "2:, batch_order: windows"; do
    scheme=${variant%%:*}
    tag=$((++n))
    extra=${variant#"$scheme"}
    extra=${extra#:}
    config 1 $scheme "" "$extra" > "$TMP/p1.yaml"
    config 2 $scheme "" "$extra" > "$TMP/p2.yaml"
    # Kept per variant: the plain one (tag 2) is also the 1 x 64 run and the no-search run below.
    cp "$TMP/p1.yaml" "$TMP/p1-$tag.yaml"
    run -n 2 "$RD" train "$TMP/p1.yaml" --out "$TMP/p1-$tag" >"$TMP/p1-$tag.out" 2>"$TMP/err" ||
        fail "scheme $scheme, 1 PS: $(cat "$TMP/err")"
    grep -q "tokens: holdout (no training), 600 tokens written" "$TMP/p1-$tag.out" ||
        fail "build lines: $(cat "$TMP/p1-$tag.out")"
    grep -q "tokens: store of .* on 1 PS rank(s) mapped for serving: " "$TMP/p1-$tag.out" ||
        fail "no 'mapped for serving' line: $(cat "$TMP/p1-$tag.out")"
    run -n 3 "$RD" train "$TMP/p2.yaml" --out "$TMP/p2-$tag" >"$TMP/out" 2>"$TMP/err" ||
        fail "scheme $scheme, 2 PS: $(cat "$TMP/err")"
    check "$TMP/p1-$tag/report.json" $W $F
    check "$TMP/p2-$tag/report.json" $W $F
    [ -f "$TMP/p1-$tag/tokens/MANIFEST" ] || fail "no store MANIFEST"
    ls -d "$TMP/p2-$tag/tokens/shard-"* | wc -l | grep -qx 2 || fail "2 PS ranks: not 2 shards"
    a1=$(auc "$TMP/p1-$tag/report.json" teacher)
    a2=$(auc "$TMP/p2-$tag/report.json" teacher)
    echo "scheme $scheme$extra: holdout AUC 1 PS $a1, 2 PS $a2 (no tokens $a_none)"
    [ "$a1" = "$a2" ] || fail "scheme $scheme: AUC depends on the PS count ($a1 vs $a2)"
    plausible "$a1" "scheme $scheme$extra"
done

# The token teacher exports for serving: the bundle records the run's store, which the server
# reads read-only (tests/mpi/serve_tokens.c scores through it); without the store the export is
# refused, naming tokens.store_dir, and writes nothing.
"$RD" export "$TMP/p1-2.yaml" --job teacher --run "$TMP/p1-2" --out "$TMP/teacher.rdsv" \
    >"$TMP/out" 2>"$TMP/err" || fail "export of the token teacher: $(cat "$TMP/err")"
grep -q "^instance tokens: 12 per candidate (of up to 12 a request carries), dim 8, 0 side values, 0 summaries computed by the scorer; served from the store $TMP/p1-2/tokens (id [0-9a-f]*), read-only$" \
    "$TMP/out" || fail "export: no token line: $(cat "$TMP/out")"
mv "$TMP/p1-2/tokens" "$TMP/p1-2/tokens.away"
"$RD" export "$TMP/p1-2.yaml" --job teacher --run "$TMP/p1-2" --out "$TMP/teacher2.rdsv" \
    >"$TMP/out" 2>"$TMP/err" && fail "export without the token store succeeded"
grep -q "tokens.store_dir" "$TMP/err" || fail "export without the store: $(cat "$TMP/err")"
[ ! -e "$TMP/teacher2.rdsv" ] || fail "export without the store left a bundle"
mv "$TMP/p1-2/tokens.away" "$TMP/p1-2/tokens"

# tokens.batch_tokens final: after its batch epochs the source model writes the batch period's
# 4800 tokens again without training (a build line of its own, the tokens counted twice, the
# events trained on unchanged); still the same with 1 and 2 PS ranks, and no leak of the event.
config 1 2 "" ", batch_tokens: final" > "$TMP/f1.yaml"
config 2 2 "" ", batch_tokens: final" > "$TMP/f2.yaml"
pair_runs "$TMP/f" "batch_tokens final"
grep -q "tokens: batch period rewritten by the trained model (no training), 4800 tokens written" \
    "$TMP/out" || fail "batch_tokens final: no rewrite line: $(cat "$TMP/out")"
check "$TMP/f1/report.json" $((W + 4800)) $F
check "$TMP/f2/report.json" $((W + 4800)) $F
plausible "$PAIR_AUC" "batch_tokens final"

# The store does not depend on how the teacher job's batch is split over its ranks: the source
# model trains on the job's global batch (1 rank x 64 = 2 ranks x 32), so its build lines agree.
# The 1 x 64 run is the plain scheme-2 run above (p1-2): the same config, not run again.
config 1 2 "" > "$TMP/g1.yaml"
cmp -s "$TMP/g1.yaml" "$TMP/p1-2.yaml" || fail "g1.yaml is not the config of run p1-2"
sed -e 's/{name: teacher, role: teacher, model: big}/{name: teacher, role: teacher, model: big, ranks: 2}/' \
    -e 's/batch_size: 64/batch_size: 32/' "$TMP/g1.yaml" > "$TMP/g2.yaml"
grep -q "ranks: 2}" "$TMP/g2.yaml" && grep -q "batch_size: 32" "$TMP/g2.yaml" || fail "g2.yaml was not derived"
run -n 3 "$RD" train "$TMP/g2.yaml" --out "$TMP/g2" >"$TMP/g2.out" 2>"$TMP/err" || fail "2 x 32: $(cat "$TMP/err")"
b1=$(grep "tokens: .* written, source model" "$TMP/p1-2.out" | sed 's/ ([0-9.]* s)$//')
b2=$(grep "tokens: .* written, source model" "$TMP/g2.out" | sed 's/ ([0-9.]* s)$//')
[ "$(printf '%s\n' "$b1" | wc -l)" -eq 3 ] || fail "build lines of 1 x 64: $b1"
[ "$b1" = "$b2" ] || fail "the token build depends on the teacher's ranks: $b1 // $b2"

# A checkpoint of a job that reads tokens records the token-build settings: a resume with the
# same ones is accepted, one with another tokens.window (or sit_layers, scheme, ...) is refused
# before any job builds or trains, naming the checkpoint.
ck=$(ls -d "$TMP/p1-4/ckpt/teacher/step-"* | tail -1)
[ -d "$ck" ] || fail "no teacher checkpoint in $TMP/p1-4"
run -n 2 "$RD" train "$TMP/p1.yaml" --out "$TMP/rs" --resume "$ck" >"$TMP/out" 2>"$TMP/err" ||
    fail "resume with the same token settings: $(cat "$TMP/err")"
sed 's/window: 4, source_model/window: 8, source_model/' "$TMP/p1.yaml" > "$TMP/rw.yaml"
grep -q "window: 8, source_model" "$TMP/rw.yaml" || fail "could not write the tokens.window config"
run -n 2 "$RD" train "$TMP/rw.yaml" --out "$TMP/rw" --resume "$ck" >"$TMP/out" 2>"$TMP/err" &&
    fail "a resume with another tokens.window was accepted"
grep -q "step-[0-9]* was trained on tokens built with other settings" "$TMP/err" ||
    fail "resume, other tokens.window: $(cat "$TMP/err")"
[ ! -e "$TMP/rw/ckpt" ] || fail "a refused resume left checkpoints"

# A job whose token fetches cannot fit this process's memory (2 x 2^20 examples x 4096 fetched
# tokens of d = 256: about 16 TiB) is refused at set-up, before any step, naming the keys.
config 1 1 "" | sed -e 's/batch_size: 64/batch_size: 1048576/' \
    -e 's/length: 12, kind/length: 12, search: 4096, kind/' -e 's/{dim: 8, scheme/{dim: 256, scheme/' \
    > "$TMP/huge.yaml"
grep -q "search: 4096" "$TMP/huge.yaml" && grep -q "dim: 256" "$TMP/huge.yaml" ||
    fail "could not write huge.yaml"
run -n 2 "$RD" train "$TMP/huge.yaml" --out "$TMP/huge" >"$TMP/out" 2>"$TMP/err" &&
    fail "token buffers beyond the memory limit were accepted"
grep -q "its token buffers .* need about .* GiB, more than .*: lower train.batch_size or models\[0\].tokens.search" "$TMP/err" ||
    fail "token buffers beyond the memory limit: $(cat "$TMP/err")"

# The built store is mapped for serving (tokens.huge_pages auto, the default; rd/tokens.h): the
# report says what each run's PS ranks did, and with huge_pages off nothing is done and the run
# is the same to the bit.
python3 - "$TMP/p1-2/report.json" "$TMP/p2-2/report.json" <<'PY' || fail "tokens.map"
import json, sys
for path, shards in zip(sys.argv[1:], (1, 2)):
    m = json.load(open(path))["jobs"]["teacher"]["tokens"]["map"]
    assert m["shards"] == shards and m["used_bytes"] > 0 and 0 <= m["reread"] <= shards, m
    assert m["huge_kb"] <= m["resident_kb"] and m["seconds"] >= 0 and m["note"], m
    if m["note"] == "re-read":
        assert m["reread"] == shards and m["resident_kb"] * 1024 >= m["used_bytes"], m
PY
config 1 2 "" ", huge_pages: off" > "$TMP/off.yaml"
run -n 2 "$RD" train "$TMP/off.yaml" --out "$TMP/off" >"$TMP/out" 2>"$TMP/err" ||
    fail "huge_pages off: $(cat "$TMP/err")"
grep -q "mapped for serving" "$TMP/out" && fail "huge_pages off: the store was mapped"
python3 -c 'import json, sys; assert "map" not in json.load(open(sys.argv[1]))["jobs"]["teacher"]["tokens"]' \
    "$TMP/off/report.json" || fail "huge_pages off: report has tokens.map"
a_on=$(auc "$TMP/p1-2/report.json" teacher)
a_off=$(auc "$TMP/off/report.json" teacher)
[ "$a_on" = "$a_off" ] || fail "huge_pages changes the holdout AUC ($a_on vs $a_off)"

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
# A store serves one dataset (its keys hold the events' ids): the run records it in the store
# (tokens stats shows it); the same config built again into that store gives the same teacher,
# and a run on other events (another generator seed) is refused naming both, without a report.
"$RD" tokens stats "$TMP/off/tokens" >"$TMP/out" 2>"$TMP/err" || fail "stats: $(cat "$TMP/err")"
grep -q "^dataset: 6000 events, records CRC [0-9a-f]\{8\}$" "$TMP/out" ||
    fail "stats has no dataset line: $(cat "$TMP/out")"
config 1 2 "" ", huge_pages: off, store_dir: $TMP/off/tokens" > "$TMP/again.yaml"
run -n 2 "$RD" train "$TMP/again.yaml" --out "$TMP/again" >"$TMP/out" 2>"$TMP/err" ||
    fail "the same dataset into its store: $(cat "$TMP/err")"
[ "$(auc "$TMP/again/report.json" teacher)" = "$a_off" ] || fail "rebuilt store: another teacher"
sed 's/synthetic: {events: 6000, users: 60, items: 300}/synthetic: {events: 6000, users: 60, items: 300, seed: 99}/' \
    "$TMP/again.yaml" > "$TMP/other.yaml"
grep -q "seed: 99}" "$TMP/other.yaml" || fail "other.yaml was not derived"
run -n 2 "$RD" train "$TMP/other.yaml" --out "$TMP/other" >"$TMP/out" 2>"$TMP/err" &&
    fail "a store of another dataset accepted"
grep -q "recdistill train: token store $TMP/off/tokens holds the tokens of another dataset (6000 events, records CRC [0-9a-f]*; this run's dataset has 6000 events, CRC [0-9a-f]*)" "$TMP/err" ||
    fail "other dataset message: $(cat "$TMP/err")"
[ ! -e "$TMP/other/report.json" ] || fail "failed run left a report"
# Side values (tokens.side): a CSV log whose rating is a feedback field. The store records one
# side value per token, and the teacher reads it; the holdout AUC is the same with 1 and 2 PS
# ranks (fetches of side values through either), and the values fetched are the ratings.
python3 - "$TMP/log.csv" <<'PY'
import random, sys
r = random.Random(5)
with open(sys.argv[1], "w") as f:
    f.write("u,i,t,r\n")
    for k in range(6000):
        u, i = r.randrange(60), r.randrange(300)
        t = 1000000 + 7 * k
        f.write(f"u{u},i{i},{t},{t // 7 % 5 + 1}\n")  # the rating is a function of the time
PY
side_config() { # $1 = ps ranks, $2 = tokens.side
    config "$1" 2 "" "" | python3 -c '
import sys
text = sys.stdin.read()
text = text.replace("""  source: synthetic
  history_max: 16
  synthetic: {events: 6000, users: 60, items: 300}""", """  source: csv
  input: TMPDIR
  history_max: 16
  schema: {path: log.csv, user_column: u, item_column: i, time_column: t, label: "r >= 4",
           fields: [{name: r, kind: feedback}]}""").replace("TMPDIR", sys.argv[1])
text = text.replace("source_model: src}", "source_model: src, side: " + sys.argv[2] + "}")
sys.stdout.write(text)' "$TMP" "$2"
}
# --user-id on a synthetic store: its users are numbered and keyed by number, so "3" is user
# number 3 (said on stderr); it used to hash the text "3" and find nothing.
"$RD" tokens fetch "$TMP/p1-2/tokens" --user-id 3 --before 4000000000 --n 4 >"$TMP/out" \
    2>"$TMP/err" || fail "fetch --user-id 3 (synthetic): $(cat "$TMP/err")"
grep -q "n_found 4 " "$TMP/out" || fail "fetch --user-id 3 (synthetic): $(cat "$TMP/out")"
grep -q "user number 3 of a synthetic log" "$TMP/err" || fail "no note: $(cat "$TMP/err")"
side_config 1 "[r]" > "$TMP/s1.yaml"
side_config 2 "[r]" > "$TMP/s2.yaml"
pair_runs "$TMP/s" "side values"
a1=$PAIR_AUC
"$RD" tokens stats "$TMP/s1/tokens" >"$TMP/out" 2>"$TMP/err" || fail "stats: $(cat "$TMP/err")"
grep -q "version 2, 1 side values" "$TMP/out" || fail "stats: $(cat "$TMP/out")"
# A compacted copy inside the store it copies (it was written there, exit 0): a usage error.
"$RD" tokens compact "$TMP/s1/tokens" --out "$TMP/s1/tokens/inner" >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || fail "tokens compact --out inside the store must exit 2"
grep -q "is inside the input store" "$TMP/err" || fail "compact inside: $(cat "$TMP/err")"
! ls -d "$TMP/s1/tokens/inner"* >/dev/null 2>&1 || fail "compact inside the store wrote into it"
"$RD" tokens fetch "$TMP/s2/tokens" --user-id u7 --before 2000000 --n 500 >"$TMP/out" \
    2>"$TMP/err" || fail "fetch: $(cat "$TMP/err")"
python3 - "$TMP/out" "$TMP/log.csv" <<'PY' || fail "fetched side values"
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0].startswith("# user ") and lines[0].endswith(" side 1"), lines[0]
rows = [l.split("\t") for l in lines[1:]]
want = sum(1 for l in open(sys.argv[2]).read().splitlines()[1:] if l.split(",")[0] == "u7")
assert len(rows) == want > 50, (len(rows), want)
for r in rows:
    ts, label, side = int(r[1]), float(r[3]), float(r[5])
    assert side == ts // 7 % 5 + 1, r[:6]
    assert label == (1.0 if side >= 4 else 0.0), r[:6]
PY
# With residuals: a second side value, the rating minus the item's mean rating before the event
# (shrunk toward the mean of all earlier ratings with 10 pseudo-events, as seq.stats_residual).
side_config 1 "[r], side_residual: true" > "$TMP/sr.yaml"
run -n 2 "$RD" train "$TMP/sr.yaml" --out "$TMP/sr" >"$TMP/out" 2>"$TMP/err" ||
    fail "side residuals: $(cat "$TMP/err")"
"$RD" tokens fetch "$TMP/sr/tokens" --user-id u7 --before 2000000 --n 500 >"$TMP/out" \
    2>"$TMP/err" || fail "fetch: $(cat "$TMP/err")"
python3 - "$TMP/out" "$TMP/log.csv" <<'PY' || fail "fetched side residuals"
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0].endswith(" side 2"), lines[0]
mean_before, s, c, g_sum, n = {}, {}, {}, 0.0, 0
for l in open(sys.argv[2]).read().splitlines()[1:]:  # time order: every t is distinct
    u, i, t, r = l.split(",")
    g = g_sum / n if n else 0.0
    if u == "u7":
        mean_before[int(t)] = (s.get(i, 0.0) + 10 * g) / (c.get(i, 0) + 10)
    s[i] = s.get(i, 0.0) + float(r); c[i] = c.get(i, 0) + 1; g_sum += float(r); n += 1
rows = [l.split("\t") for l in lines[1:]]
assert len(rows) == len(mean_before), (len(rows), len(mean_before))
for row in rows:
    ts, side, resid = int(row[1]), float(row[5]), float(row[6])
    assert abs(resid - (side - mean_before[ts])) < 1e-5, row[:7]
PY
# Without the side values the teacher differs (it reads them), with them the run is repeatable.
side_config 1 "[]" > "$TMP/s0.yaml"
run -n 2 "$RD" train "$TMP/s0.yaml" --out "$TMP/s0" >"$TMP/out" 2>"$TMP/err" ||
    fail "no side values: $(cat "$TMP/err")"
a0=$(auc "$TMP/s0/report.json" teacher)
[ "$a0" != "$a1" ] || fail "side values change nothing ($a0)"
# A store without side values, reused by a config that names one: a clear error, no report.
python3 - "$TMP/s1.yaml" "$TMP/s0/tokens" > "$TMP/reuse.yaml" <<'PY'
import sys
t = open(sys.argv[1]).read()
print(t.replace("side: [r]}", "side: [r], store_dir: " + sys.argv[2] + "}"))
PY
run -n 2 "$RD" train "$TMP/reuse.yaml" --out "$TMP/reuse" >"$TMP/out" 2>"$TMP/err" &&
    fail "a store without side values accepted"
grep -q "the store has 0 side values per token, tokens.side and tokens.side_residual ask for 1" "$TMP/err" ||
    fail "side mismatch message: $(cat "$TMP/err")"
[ ! -e "$TMP/reuse/report.json" ] || fail "failed run left a report"
# Summaries of the fetched tokens (models[].tokens.stats) as dense inputs: computed from what
# each fetch returns, so they too are the same with 1 and 2 PS ranks, and they change the model.
for p in 1 2; do
    sed 's/adapter: 8}/adapter: 8, stats: [2, 8]}/' "$TMP/s$p.yaml" >"$TMP/st$p.yaml"
    grep -q "stats: \[2, 8\]" "$TMP/st$p.yaml" || fail "tokens.stats not set in the config"
done
pair_runs "$TMP/st" "token summaries"
[ "$PAIR_AUC" != "$a1" ] || fail "token summaries change nothing ($PAIR_AUC)"
# The token branch's query built from the request and the history branch's output
# (models[].tokens.query: request_seq): the same with 1 and 2 PS ranks, and it changes the model.
for p in 1 2; do
    sed 's/adapter: 8}/adapter: 8, query: request_seq}/' "$TMP/s$p.yaml" >"$TMP/tq$p.yaml"
    grep -q "query: request_seq" "$TMP/tq$p.yaml" || fail "tokens.query not set in the config"
done
pair_runs "$TMP/tq" "token query from the request and the history"
[ "$PAIR_AUC" != "$a1" ] || fail "tokens.query request_seq changes nothing ($PAIR_AUC)"
# Same-second events (models[].tokens.same_time): a log whose users rate four items a second. With
# `earlier` the teacher also reads the tokens of its own second's earlier events (dataset order),
# so it fetches more for the same requests, the same with 1 and 2 PS ranks; `exclude` (the
# default, strictly before the event's time) is the run without the key, to the last digit.
mkdir -p "$TMP/ties"
awk -F, 'NR == 1 { print; next } { g = int((NR - 2) / 4); $1 = "u" (g * 7) % 60; $3 = 1000000 + 7 * g; print }' OFS=, \
    "$TMP/log.csv" >"$TMP/ties/log.csv"
for mode in none exclude earlier; do
    for p in 1 2; do
        sed -e "s|input: $TMP$|input: $TMP/ties|" "$TMP/s$p.yaml" |
            if [ $mode = none ]; then cat; else sed "s/adapter: 8}/adapter: 8, same_time: $mode}/"; fi \
                >"$TMP/ti-$mode-$p.yaml"
        grep -q "input: $TMP/ties" "$TMP/ti-$mode-$p.yaml" || fail "tie log not set in the config"
    done
    [ $mode = earlier ] ||
        run -n 2 "$RD" train "$TMP/ti-$mode-1.yaml" --out "$TMP/ti-$mode-1" >"$TMP/out" \
            2>"$TMP/err" || fail "same_time $mode: $(cat "$TMP/err")"
done
pair_runs "$TMP/ti-earlier-" "same_time earlier"
python3 - "$TMP" <<'PY' || fail "same_time"
import json, sys
r = {k: json.load(open(f"{sys.argv[1]}/ti-{k}/report.json")) for k in
     ("none-1", "exclude-1", "earlier-1", "earlier-2")}
t = {k: v["jobs"]["teacher"]["tokens"] for k, v in r.items()}
a = {k: v["holdout"]["teacher"]["auc"] for k, v in r.items()}
print("same_time: fetched tokens exclude %d, earlier %d of %d requests; AUC none %s exclude %s "
      "earlier %s (2 PS %s)" % (t["exclude-1"]["fetched_tokens"], t["earlier-1"]["fetched_tokens"],
      t["earlier-1"]["fetched_requests"], a["none-1"], a["exclude-1"], a["earlier-1"], a["earlier-2"]))
assert t["exclude-1"]["fetched_requests"] == t["earlier-1"]["fetched_requests"]
assert t["earlier-1"]["fetched_tokens"] > t["exclude-1"]["fetched_tokens"]
assert t["exclude-1"]["fetched_tokens"] == t["none-1"]["fetched_tokens"]
assert a["none-1"] == a["exclude-1"], "same_time: exclude is not the default"
assert a["earlier-1"] == a["earlier-2"], "same_time earlier depends on the PS count"
assert a["earlier-1"] != a["exclude-1"], "same_time earlier changes nothing"
PY
# Target search (models[].tokens.search, SIM's hard search): the teacher fetches the latest 200
# tokens and reads the 12 latest of those of the request's own item. The same with 1 and 2 PS
# ranks, the same number of fetches as without it and fewer tokens read; with one item in the
# whole log every token matches, and a search over 12 is the run without it to the last digit.
# The run without the search is the plain scheme-2 run above (p1-2): the same config.
config 1 2 "" "" >"$TMP/nos1.yaml"
config 2 2 "" "" >"$TMP/nos2.yaml"
cmp -s "$TMP/nos1.yaml" "$TMP/p1-2.yaml" || fail "nos1.yaml is not the config of run p1-2"
ln -s "$TMP/p1-2" "$TMP/nos1"
for p in 1 2; do
    sed 's/adapter: 8}/adapter: 8, search: 200}/' "$TMP/nos$p.yaml" >"$TMP/se$p.yaml"
    grep -q "search: 200}" "$TMP/se$p.yaml" || fail "tokens.search not set in the config"
done
pair_runs "$TMP/se" "tokens.search 200"
sed 's/items: 300}/items: 1}/' "$TMP/nos1.yaml" >"$TMP/one.yaml"
sed 's/adapter: 8}/adapter: 8, search: 12}/' "$TMP/one.yaml" >"$TMP/ones.yaml"
grep -q "items: 1}" "$TMP/ones.yaml" && grep -q "search: 12}" "$TMP/ones.yaml" ||
    fail "one-item configs not derived"
for c in one ones; do
    run -n 2 "$RD" train "$TMP/$c.yaml" --out "$TMP/$c" >"$TMP/out" 2>"$TMP/err" ||
        fail "$c: $(cat "$TMP/err")"
done
python3 - "$TMP" <<'PY' || fail "tokens.search"
import json, sys
r = {k: json.load(open(f"{sys.argv[1]}/{k}/report.json")) for k in ("nos1", "se1", "one", "ones")}
t = {k: v["jobs"]["teacher"]["tokens"] for k, v in r.items()}
a = {k: v["holdout"]["teacher"]["auc"] for k, v in r.items()}
print("search: fetched tokens %d without, %d with (%d requests); one item: AUC %s without, %s with"
      % (t["nos1"]["fetched_tokens"], t["se1"]["fetched_tokens"], t["se1"]["fetched_requests"],
         a["one"], a["ones"]))
assert t["se1"]["fetched_requests"] == t["nos1"]["fetched_requests"]
assert 0 < t["se1"]["fetched_tokens"] < t["nos1"]["fetched_tokens"]
assert a["se1"] != a["nos1"], "tokens.search changes nothing"
assert t["one"]["fetched_tokens"] == t["ones"]["fetched_tokens"]
assert a["one"] == a["ones"], "one item: the search is not the plain fetch"
PY
# Search by an attribute of the item (models[].tokens.search_by: series; the synthetic items come
# in series of 4): the same with 1 and 2 PS ranks; every token of the request's item is of its
# series, so at least as many tokens are read as by the item and fewer than without the search;
# `search_by: item` is the default to the last digit. The source model's SIT grouped by series
# (tokens.sit_group_by) builds other tokens than grouped by item, the same with 1 and 2 PS ranks.
for p in 1 2; do
    sed 's/search: 200}/search: 200, search_by: series}/' "$TMP/se$p.yaml" >"$TMP/sb$p.yaml"
    grep -q "search_by: series}" "$TMP/sb$p.yaml" || fail "search_by not set in the config"
    config "$p" 2 "" ", sit_group: item, sit_group_by: series" >"$TMP/gs$p.yaml"
done
pair_runs "$TMP/sb" "tokens.search_by series"
pair_runs "$TMP/gs" "tokens.sit_group_by series"
sed 's/search: 200}/search: 200, search_by: item}/' "$TMP/se1.yaml" >"$TMP/sbi.yaml"
config 1 2 "" ", sit_group: item" >"$TMP/gi.yaml"
for c in sbi gi; do
    run -n 2 "$RD" train "$TMP/$c.yaml" --out "$TMP/$c" >"$TMP/out" 2>"$TMP/err" ||
        fail "$c: $(cat "$TMP/err")"
done
python3 - "$TMP" <<'PY' || fail "tokens.search_by"
import json, sys
r = {k: json.load(open(f"{sys.argv[1]}/{k}/report.json")) for k in ("nos1", "se1", "sb1", "sbi", "gs1", "gi")}
t = {k: v["jobs"]["teacher"]["tokens"] for k, v in r.items()}
a = {k: v["holdout"]["teacher"]["auc"] for k, v in r.items()}
print("search_by: tokens read by item %d, by series %d, all %d; AUC %s / %s; sit_group_by: source "
      "AUC by item %s, by series %s" % (t["se1"]["fetched_tokens"], t["sb1"]["fetched_tokens"],
      t["nos1"]["fetched_tokens"], a["se1"], a["sb1"], t["gi"]["source_auc"], t["gs1"]["source_auc"]))
assert t["se1"]["fetched_tokens"] < t["sb1"]["fetched_tokens"] < t["nos1"]["fetched_tokens"]
assert a["sb1"] != a["se1"], "search_by series changes nothing"
assert a["sbi"] == a["se1"], "search_by item is not the default"
assert t["sbi"]["fetched_tokens"] == t["se1"]["fetched_tokens"]
assert t["gs1"]["source_auc"] != t["gi"]["source_auc"], "sit_group_by series changes nothing"
PY
# A field that is not an attribute of the item (the request context varies per event) is refused
# at start with the records that show it, before any training; one that is not a field is a config
# error.
sed -e 's/items: 300}/items: 300, contexts: 2}/' -e 's/search_by: series}/search_by: ctx}/' \
    "$TMP/sb1.yaml" >"$TMP/sbc.yaml"
grep -q "search_by: ctx}" "$TMP/sbc.yaml" || fail "search_by ctx not set"
run -n 2 "$RD" train "$TMP/sbc.yaml" --out "$TMP/sbc" >"$TMP/out" 2>"$TMP/err" &&
    fail "search_by ctx accepted"
grep -q "model 'big': tokens.search_by: field 'ctx' is not an attribute of the item: records" \
    "$TMP/err" || fail "search_by ctx: $(cat "$TMP/err")"
[ ! -e "$TMP/sbc/report.json" ] || fail "search_by ctx: a report was written"
sed 's/search_by: series}/search_by: genre}/' "$TMP/sb1.yaml" >"$TMP/sbg.yaml"
"$RD" config "$TMP/sbg.yaml" >/dev/null 2>"$TMP/err" && fail "search_by genre accepted"
grep -q "models\[0\].tokens.search_by: the synthetic source has no field 'genre'" "$TMP/err" ||
    fail "search_by genre: $(cat "$TMP/err")"
# A search below the branch's length, or without a token branch, is a config error naming the key.
sed 's/adapter: 8}/adapter: 8, search: 11}/' "$TMP/nos1.yaml" >"$TMP/bad1.yaml"
"$RD" config "$TMP/bad1.yaml" >/dev/null 2>"$TMP/err" && fail "search 11 < length 12 accepted"
grep -q "models\[0\].tokens.search: 11 is below tokens.length (12)" "$TMP/err" ||
    fail "search below length: $(cat "$TMP/err")"
echo "iat.sh: ok"
