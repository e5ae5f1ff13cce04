#!/usr/bin/env bash
# token_store_gone.sh — the run's token store removed (rm -rf) while the run has it open. The PS
# rank's LMDB env went on working on the unlinked files: the run appended its tokens, fetched
# them back, and ended with exit 0 and a report while its tokens were gone with the folder. Now
# the PS rank checks that each shard's data file is still the one it opened after each append and
# before each fetch's reads (ps/token_store.c), and the run fails: non-zero exit, a message
# naming the store, no report.json.
# World size 2: one PS rank, the token teacher (it builds the store, then reads it). The teacher
# is held (SIGSTOP) once it prints its first token-build step (its set-up, which reads the
# store's MANIFEST, is over; it appends and fetches for a second more), until the store is
# removed. The stop used to come a fixed delay after the teacher had its signal handlers: on a
# loaded host the teacher's set-up then found the store gone itself; on a fast one the whole run
# was over before the delay was.
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
  synthetic: {events: 20000, users: 100, items: 400}
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
train: {batch_size: 64, eval_every: 1} # a progress line at every token-build step
output: {progress_every_s: 1}
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

# has_open PID FILE: 0 when PID has FILE open.
has_open() {
    local f
    for f in "/proc/$1/fd/"*; do
        [ "$(readlink "$f" 2>/dev/null)" = "$2" ] && return 0
    done
    return 1
}

export PIDS="$TMP/pids"
mkdir -p "$PIDS"
timeout 120 "$MPIEXEC" -n 2 "$RDP" train iat.yaml --out G >G.out 2>G.err &
PID=$!
T="$(rank_pid 1)" || exit 1
for ((i = 0; i < 6000; i++)); do # the teacher's first token-build step
    grep -q '^\[teacher\] tokens: batch period, step 1,' G.out && break
    kill -0 "$PID" 2>/dev/null || fail "the run ended before its first token-build step: $(tail -n 5 G.err)"
    sleep 0.01
done
kill -STOP "$T" && HELD="$T"
grep -q '^\[teacher\] tokens: batch period, step 1,' G.out ||
    fail "no token-build step after 60 s: $(tail -n 5 G.out)"
grep -q '^\[teacher\] stream window 1:' G.out &&
    fail "the teacher had read its last tokens before it was stopped (a host this fast needs a longer run)"
PS="$(rank_pid 0)" || exit 1
STORE="$TMP/G/tokens"
has_open "$PS" "$STORE/shard-0000/data.mdb" ||
    fail "the PS rank has no $STORE/shard-0000/data.mdb open"
rm -rf "$STORE"
kill -CONT "$T"
HELD=""
wait "$PID"
rc=$?
[ "$rc" -ne 0 ] || fail "exit 0 with the token store removed (the run wrote its tokens into the void)"
[ "$rc" -ne 124 ] || fail "the launch hung after the store was removed"
[ ! -e G/report.json ] || fail "a report.json with the token store removed"
grep -q "token store G/tokens: G/tokens/shard-0000/data.mdb is gone since the store was opened" G.err ||
    fail "no message naming the store: $(grep -v INFO G.err | tail -n 5)"
echo "the token store removed while open: exit $rc, named, no report"
echo "ok"
