#!/usr/bin/env bash
# terminate.sh — a tool terminated mid-output leaves nothing behind: `recdistill tokens compact`
# of a store large enough to take seconds is sent SIGTERM (a Slurm time limit, scancel) and then
# SIGINT (Ctrl-C) while it copies into its <out>.partial.* folder. Each time the process ends by
# that signal (exit status 128 + N), the partial folder is gone and no --out was made. A SIGKILL
# leaves its folder; the next run of the same command removes it (its process no longer runs),
# says so, and completes. (rd_lmdbx_pending_add, rd_lmdbx_mkdir_partial, rd/lmdbx.h; the store
# comes from bench_tokens --keep.)
#
#   bash tests/scripts/terminate.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: terminate.sh path/to/recdistill}")"
BENCH="$(dirname "$RD")/bench/bench_tokens"
[ -x "$BENCH" ] || { echo "no $BENCH (RD_BUILD_BENCH off): skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_terminate_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# About 300 MB of records: the compaction (verify, then the copy) takes a second or more.
timeout 300 "$BENCH" --users 1200 --per-user 512 --dim 64 --L 8 --batch 8 --iters 1 \
    --rounds 1 --warmup 0 --huge-pages off --dir "$TMP/b" --keep > "$TMP/bench.txt" 2>&1 ||
    { cat "$TMP/bench.txt"; fail "bench_tokens --keep"; }
STORE="$TMP/b/store"
[ -f "$STORE/MANIFEST" ] || fail "no store kept in $TMP/b"

for sig in TERM INT; do
    # A background job of a script starts with SIGINT ignored (and an ignored signal is left
    # alone by design): give it the default action back, as a foreground command has.
    env --default-signal=INT "$RD" tokens compact "$STORE" --out "$TMP/c/copy" > "$TMP/out" \
        2> "$TMP/err" &
    pid=$!
    # Wait for its partial folder (made after the verify pass), then signal at once.
    seen=0
    for _ in $(seq 1 6000); do
        if compgen -G "$TMP/c/copy.partial.*" > /dev/null; then
            seen=1
            break
        fi
        kill -0 $pid 2> /dev/null || break
        sleep 0.005
    done
    [ $seen = 1 ] || { wait $pid; fail "SIG$sig: no partial folder seen (exit $?): $(cat "$TMP/err")"; }
    kill -s $sig $pid
    wait $pid
    rc=$?
    want=$((128 + $(kill -l $sig)))
    [ $rc -ne 0 ] || fail "SIG$sig: the copy finished before the signal (store too small here?)"
    [ $rc -eq $want ] || fail "SIG$sig: exit status $rc, expected $want: $(cat "$TMP/err")"
    left=$(compgen -G "$TMP/c/copy.partial.*" || true)
    [ -z "$left" ] || fail "SIG$sig left $left behind"
    [ ! -e "$TMP/c/copy" ] || fail "SIG$sig: --out was made"
    echo "SIG$sig during the copy: exit $rc, partial folder removed"
done

# SIGKILL leaves no chance to clean up: the partial folder stays ...
"$RD" tokens compact "$STORE" --out "$TMP/c/copy" > "$TMP/out" 2> "$TMP/err" &
pid=$!
for _ in $(seq 1 6000); do
    compgen -G "$TMP/c/copy.partial.*" > /dev/null && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.005
done
kill -s KILL $pid
wait $pid 2> /dev/null
killed=$(compgen -G "$TMP/c/copy.partial.*" || true)
[ -n "$killed" ] || fail "SIGKILL: no partial folder left (did the copy finish first?)"

# ... until the next build of the same --out on this host, which removes it (the process that
# made it no longer runs) and says so; left alone, that run completes and its copy verifies.
"$RD" tokens compact "$STORE" --out "$TMP/c/copy" > "$TMP/out" 2> "$TMP/err" ||
    fail "compact: $(cat "$TMP/err")"
grep -q "removed .*copy.partial.*which no longer runs" "$TMP/err" ||
    fail "the killed run's partial folder was not reported: $(cat "$TMP/err")"
[ ! -e "$killed" ] || fail "the killed run's partial folder $killed is still there"
echo "SIGKILL during the copy: partial folder left, removed by the next run"
"$RD" tokens verify "$TMP/c/copy" > "$TMP/out" 2> "$TMP/err" || fail "verify: $(cat "$TMP/err")"
[ -z "$(compgen -G "$TMP/c/copy.partial.*" || true)" ] || fail "a completed run left a partial"
echo "terminate.sh: ok"
