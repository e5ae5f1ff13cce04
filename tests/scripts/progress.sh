#!/usr/bin/env bash
# progress.sh — the trainer's progress lines: one every train.eval_every steps of each phase
# (batch epochs, stream windows), whatever output.progress_every_s (here a day, so that no line is
# due to time), plus the "done" line of each batch epoch; output.progress_every_s 0 prints none.
# A regression test: eval_every was parsed and documented but read by nothing. The token build's
# parts print theirs too.
#
#   bash tests/scripts/progress.sh build/recdistill
set -u
RD="${1:?usage: progress.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_progress_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

# One PS rank and one worker; 4000 events: 2400 in the batch period (batch 64: 38 steps an
# epoch, two epochs) and two stream windows of 400 (7 steps each).
config() { # $1 = eval_every, $2 = progress_every_s
    cat <<EOF2
run: {name: prog, seed: 3}
cluster:
  ps_ranks: 1
  jobs: [{name: solo, role: student, model: m}]
data:
  source: synthetic
  history_max: 8
  synthetic: {events: 4000, users: 40, items: 200}
  split: {batch_fraction: 0.6, holdout_fraction: 0.2, stream_windows: 2}
ps: {tables: [{name: e, dim: 4}]}
models: [{name: m, features: [{field: user, table: e}, {field: item, table: e}], mlp: [8]}]
train: {batch_size: 64, epochs: 2, eval_every: $1}
output: {plot: false, progress_every_s: $2}
EOF2
}
steps() { # the "step s/S" of every progress line, one per line
    grep -o '^\[solo\] [a-z]* [a-z]* [0-9]*/[0-9]* step [0-9]*/[0-9]*' "$1" | sed 's/.* step //'
}
for e in 5 10 1000; do
    config "$e" 86400 >"$TMP/e$e.yaml"
    timeout 300 "$MPIEXEC" -n 2 "$RD" train "$TMP/e$e.yaml" --out "$TMP/r$e" >"$TMP/out$e" \
        2>"$TMP/err$e" || fail "eval_every $e: $(cat "$TMP/err$e")"
done
# Each phase's steps, from a run that prints every one of them (eval_every 1 would too).
b=$(sed -n 's/.*batch epoch 1\/2 step [0-9]*\/\([0-9]*\).*/\1/p' "$TMP/out5" | head -1)
w=$(sed -n 's/.*stream window 1\/2 step [0-9]*\/\([0-9]*\).*/\1/p' "$TMP/out5" | head -1)
[ -n "$b" ] && [ -n "$w" ] || fail "no step lines with eval_every 5: $(cat "$TMP/out5")"
for e in 5 10 1000; do
    want=$((2 * (b / e) + 2 * (w / e)))
    got=$(steps "$TMP/out$e" | wc -l)
    [ "$got" -eq "$want" ] ||
        fail "eval_every $e: $got step lines, expected $want ($b batch, $w window steps a phase)"
    bad=$(steps "$TMP/out$e" | awk -F/ -v e="$e" '$1 % e != 0' | head -1)
    [ -z "$bad" ] || fail "eval_every $e: a line at step $bad"
    [ "$(grep -c '^\[solo\] batch epoch [12]/2 done' "$TMP/out$e")" -eq 2 ] ||
        fail "eval_every $e: the epoch lines: $(cat "$TMP/out$e")"
done
[ "$(steps "$TMP/out5" | wc -l)" -gt "$(steps "$TMP/out10" | wc -l)" ] || fail "5 vs 10"

# progress_every_s 0: no progress line at all, the eval_every ones included.
config 5 0 >"$TMP/off.yaml"
timeout 300 "$MPIEXEC" -n 2 "$RD" train "$TMP/off.yaml" --out "$TMP/off" >"$TMP/outoff" \
    2>"$TMP/erroff" || fail "progress off: $(cat "$TMP/erroff")"
! grep -q ' step [0-9]*/\| done ' "$TMP/outoff" || fail "progress_every_s 0 printed progress"
# The stream windows' own lines ("stream window w: auc ..."): one a window up to 100 windows
# (two here); beyond, the first and the last, and between them one per progress_every_s (a day
# here: none), the next printed line saying how many were left out. 10,000 windows printed
# 30,000 lines over three jobs.
[ "$(grep -c '^\[solo\] stream window [0-9]*: auc' "$TMP/out5")" -eq 2 ] ||
    fail "2 windows: not one line each: $(grep 'stream window [0-9]*:' "$TMP/out5")"
config 1000 86400 | sed 's/stream_windows: 2/stream_windows: 300/' >"$TMP/many.yaml"
timeout 300 "$MPIEXEC" -n 2 "$RD" train "$TMP/many.yaml" --out "$TMP/many" >"$TMP/outmany" \
    2>"$TMP/errmany" || fail "300 windows: $(cat "$TMP/errmany")"
lines=$(grep '^\[solo\] stream window [0-9]*: auc' "$TMP/outmany")
[ "$(echo "$lines" | wc -l)" -eq 2 ] || fail "300 windows: $(echo "$lines" | wc -l) lines: $lines"
echo "$lines" | head -1 | grep -q '^\[solo\] stream window 0: auc .*events)$' || fail "300 windows, first: $lines"
echo "$lines" | tail -1 | grep -q '^\[solo\] stream window 299: auc .*(298 windows since the last line not printed: every window is in the metrics file)$' ||
    fail "300 windows, last: $lines"
[ "$(grep -c '^stream,' "$TMP/many/solo.metrics.csv")" -eq 300 ] || fail "300 windows: the metrics file"
# The token build (a job reading instance tokens builds the store first): the same lines, every
# eval_every steps of each part. A batch period of millions of events printed nothing until its
# part ended, minutes later.
config 5 86400 | sed -e 's/role: student, model: m}/role: teacher, model: m}/' \
    -e 's/mlp: \[8\]}\]/mlp: [8], tokens: {scheme: 1, length: 4, kind: mean, adapter: 4}},\n  {name: src, features: [{field: user, table: k}, {field: item, table: k}], mlp: [4]}]\ntokens: {dim: 4, scheme: 1, source_model: src}/' \
    -e 's/tables: \[{name: e, dim: 4}\]/tables: [{name: e, dim: 4}, {name: k, dim: 4}]/' >"$TMP/tok.yaml"
if ! grep -q "source_model: src" "$TMP/tok.yaml" || ! grep -q "name: k, dim: 4" "$TMP/tok.yaml"; then
    fail "tok.yaml: $(cat "$TMP/tok.yaml")"
fi
timeout 300 "$MPIEXEC" -n 2 "$RD" train "$TMP/tok.yaml" --out "$TMP/tok" >"$TMP/outtok" \
    2>"$TMP/errtok" || fail "token build: $(cat "$TMP/errtok")"
tok=$(grep '^\[solo\] tokens: [a-z ()]*, step [0-9]*, [0-9]* of [0-9]* events  [0-9]* events/s  ETA' "$TMP/outtok")
echo "$tok" | grep -q '^\[solo\] tokens: batch period, step 5, 320 of 4800 events ' ||
    fail "no token build step line: $(cat "$TMP/outtok")"
echo "$tok" | grep -q '^\[solo\] tokens: stream, step 5, 320 of 800 events ' ||
    fail "no token build step line in the stream: $(cat "$TMP/outtok")"
bad=$(echo "$tok" | sed 's/.*, step \([0-9]*\),.*/\1/' | awk '$1 % 5 != 0' | head -1)
[ -z "$bad" ] || fail "token build: a line at step $bad"
sed 's/progress_every_s: 86400/progress_every_s: 0/' "$TMP/tok.yaml" >"$TMP/tokoff.yaml"
timeout 300 "$MPIEXEC" -n 2 "$RD" train "$TMP/tokoff.yaml" --out "$TMP/tokoff" >"$TMP/outtokoff" \
    2>"$TMP/errtokoff" || fail "token build, progress off: $(cat "$TMP/errtokoff")"
! grep -q 'tokens: .*, step [0-9]*,' "$TMP/outtokoff" || fail "progress_every_s 0 printed token build steps"
echo "progress: ok (batch $b, window $w steps a phase)"
