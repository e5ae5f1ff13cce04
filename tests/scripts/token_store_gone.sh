#!/usr/bin/env bash
# token_store_gone.sh — the run's token store removed (rm -rf) while the run has it open. The PS
# rank's LMDB env went on working on the unlinked files: the run appended its tokens, fetched
# them back, and ended with exit 0 and a report while its tokens were gone with the folder. Now
# the PS rank checks that each shard's data file is still the one it opened after each append and
# before each fetch's reads (ps/token_store.c), and the run fails: non-zero exit, a message
# naming the store, no report.json.
# World size 2: one PS rank, the token teacher (it builds the store, then reads it). The teacher
# is held (SIGSTOP) once it has its signal handlers, before it appends anything, until the PS
# rank has the store open and the store is removed.
#
#   bash tests/scripts/token_store_gone.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: token_store_gone.sh path/to/recdistill}")"
export RD # run by lib/hold.sh's wrapper
HERE="$(cd "$(dirname "$0")" && pwd)"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_store_gone_XXXXXX)"
HELD=""
# A launch still running (a failed check) is ended before its folder is removed.
trap '[ -z "$HELD" ] || kill -CONT $HELD 2>/dev/null; kill $(jobs -p) 2>/dev/null; wait; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=lib/hold.sh
. "$HERE/lib/hold.sh" # pid_wrapper, term_caught
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1
RDP="$(pid_wrapper "$TMP")"

cat >iat.yaml <<EOF
run: {name: gone, seed: 3}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
data:
  source: synthetic
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
    tokens: {scheme: 1, length: 8, kind: transformer, layers: 1, heads: 2, adapter: 8}
    mlp: [16]
  - name: src
    features:
      - {field: user, table: k_user}
      - {field: item, table: k_item}
    mlp: [16]
tokens: {dim: 8, scheme: 1, sit_layers: 1, window: 4, source_model: src}
train: {batch_size: 64}
output: {progress_every_s: 0}
EOF

# rank_pid R: wait until world rank R has its signal handlers; its pid on stdout.
rank_pid() {
    local i p=""
    for ((i = 0; i < 3000; i++)); do
        [ -z "$p" ] && [ -s "$PIDS/$1" ] && read -r p <"$PIDS/$1"
        [ -n "$p" ] && term_caught "$p" && { echo "$p"; return 0; }
        kill -0 "$PID" 2>/dev/null || fail "the run ended before rank $1 had its handlers: $(tail -n 5 G.err)"
        sleep 0.01
    done
    fail "rank $1 has no SIGTERM handler after 30 s"
}

# attempt DELAY: one launch; the teacher is stopped DELAY s after it has its handlers. Sets rc.
attempt() {
    rm -rf "$TMP/pids" G G.out G.err
    export PIDS="$TMP/pids"
    mkdir -p "$PIDS"
    timeout 120 "$MPIEXEC" -n 2 "$RDP" train iat.yaml --out G >G.out 2>G.err &
    PID=$!
    T="$(rank_pid 1)" || exit 1
    sleep "$1"
    kill -STOP "$T" && HELD="$T"
    PS="$(rank_pid 0)" || exit 1
    STORE="$TMP/G/tokens"
    for ((i = 0; i < 3000; i++)); do # the PS rank has the store's shard open
        has_open "$PS" "$STORE/shard-0000/data.mdb" && break
        sleep 0.01
    done
    has_open "$PS" "$STORE/shard-0000/data.mdb" ||
        fail "the PS rank has no $STORE/shard-0000/data.mdb open after 30 s"
    rm -rf "$STORE"
    kill -CONT "$T"
    HELD=""
    wait "$PID"
    rc=$?
    [ "$rc" -ne 0 ] || fail "exit 0 with the token store removed (the run wrote its tokens into the void)"
    [ "$rc" -ne 124 ] || fail "the launch hung after the store was removed"
    [ ! -e G/report.json ] || fail "a report.json with the token store removed"
}
# has_open PID FILE: 0 when PID has FILE open.
has_open() {
    local f
    for f in "/proc/$1/fd/"*; do
        [ "$(readlink "$f" 2>/dev/null)" = "$2" ] && return 0
    done
    return 1
}
# The teacher takes its handlers just before it sets up its trainer, which reads the store's
# MANIFEST. Stopped before that (a slow, loaded host: ASan), it finds the store gone itself and
# fails naming it ("token store G/tokens: no such folder"): right, but not the PS rank's check
# this test is for. Then the launch is run again with the stop later, up to three times.
for delay in 0 0.5 1.5; do
    attempt "$delay"
    grep -q "token store G/tokens: G/tokens/shard-0000/data.mdb is gone since the store was opened" G.err &&
        break
    grep -q "setting up the trainer: .*token store G/tokens: no such folder" G.err ||
        fail "no message naming the store: $(grep -v INFO G.err | tail -n 5)"
    echo "the teacher found the store gone while it set up (stopped ${delay} s after its handlers): again"
done
grep -q "token store G/tokens: G/tokens/shard-0000/data.mdb is gone since the store was opened" G.err ||
    echo "note: the teacher's set-up found the store gone in every attempt; the PS rank's check was not reached"
echo "the token store removed while open: exit $rc, named, no report"
echo "ok"
