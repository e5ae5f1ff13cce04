#!/usr/bin/env bash
# bench_cli.sh — the command line and the temporary folders of the bench/ programs:
#  - an option given twice is refused naming it (exit 2, no JSON), in every bench: each took the
#    last value without a word (`bench_ps --dims 8 ... --dims 64` measured 64 alone), where
#    `recdistill` refuses it;
#  - a bench's own temporary folder (in $TMPDIR, else /tmp) is removed however the run ends:
#    bench_serve left /tmp/rd_bench_serve_<pid> (a dataset, a checkpoint, a bundle) behind on
#    every failure, and bench_window, bench_ckpt and bench_serve theirs when stopped by SIGTERM;
#    and after a SIGKILL, which no handler sees: bench_tokens left its folder behind when a rank
#    other than 0 failed, as mpiexec kills the other ranks with SIGKILL after an MPI_Abort.
#
#   bash tests/scripts/bench_cli.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: bench_cli.sh path/to/recdistill}")"
B="$(dirname "$RD")/bench"
[ -x "$B/bench_serve" ] || { echo "no $B (RD_BUILD_BENCH off): skip"; exit 77; }
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_bench_cli_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

# 1. An option given twice: --json in every bench (each takes it), and the issue's --dims.
for name in ckpt dense numfmt prepare ps serve table targets tokens window; do
  run=("$B/bench_$name")
  case "$name" in ps | targets | tokens) run=("$MPIEXEC" -n 1 "$B/bench_$name") ;; esac
  timeout 60 "${run[@]}" --json "$TMP/a.json" --json "$TMP/b.json" > /dev/null 2> "$TMP/twice.err"
  rc=$?
  [ $rc -eq 2 ] || fail "bench_$name with --json given twice exited $rc, expected 2: $(cat "$TMP/twice.err")"
  grep -q -- "--json given twice" "$TMP/twice.err" ||
    fail "bench_$name --json twice: $(cat "$TMP/twice.err")"
  if [ -e "$TMP/a.json" ] || [ -e "$TMP/b.json" ]; then fail "bench_$name --json twice wrote JSON"; fi
done
timeout 60 "$MPIEXEC" -n 2 "$B/bench_ps" --ps 1 --dims 8 --steps 2 --dims 64 > /dev/null 2> "$TMP/dims.err"
rc=$?
[ $rc -eq 2 ] || fail "bench_ps --dims 8 ... --dims 64 exited $rc, expected 2: $(cat "$TMP/dims.err")"
grep -q "bench_ps: --dims given twice" "$TMP/dims.err" || fail "bench_ps --dims twice: $(cat "$TMP/dims.err")"
[ "$(grep -c "given twice" "$TMP/dims.err")" -eq 1 ] || fail "bench_ps: the message from more than one rank"
# Flags too (bench_prepare's, bench_tokens'); options given once still run.
timeout 60 "$B/bench_prepare" --skip-ml --skip-ml > /dev/null 2> "$TMP/flag.err"
rc=$?
[ $rc -eq 2 ] || fail "bench_prepare --skip-ml twice exited $rc: $(cat "$TMP/flag.err")"
grep -q -- "--skip-ml given twice" "$TMP/flag.err" || fail "bench_prepare --skip-ml twice: $(cat "$TMP/flag.err")"
timeout 60 "$MPIEXEC" -n 1 "$B/bench_tokens" --sync --sync > /dev/null 2> "$TMP/flag.err"
rc=$?
[ $rc -eq 2 ] || fail "bench_tokens --sync twice exited $rc: $(cat "$TMP/flag.err")"
grep -q -- "--sync given twice" "$TMP/flag.err" || fail "bench_tokens --sync twice: $(cat "$TMP/flag.err")"
timeout 60 "$B/bench_numfmt" --floats 1000 --reps 1 > /dev/null 2> "$TMP/ok.err" ||
  fail "bench_numfmt with options given once: $(cat "$TMP/ok.err")"

# 2. The temporary folder of a failed bench_serve: the dataset it prepares cannot be written (no
# file may grow: ulimit -f 0, SIGXFSZ ignored so that the write fails), exit 1.
mkdir "$TMP/t1"
# (exec: $! is the pid of bench_serve itself, which named its folder before)
(trap '' XFSZ; ulimit -f 0; TMPDIR="$TMP/t1" exec "$B/bench_serve" --iters 10 --warmup 0) \
  > "$TMP/serve1.out" 2>&1 &
pid=$!
wait "$pid"
rc=$?
[ $rc -eq 1 ] || fail "bench_serve that cannot write its dataset exited $rc: $(cat "$TMP/serve1.out")"
[ ! -e "/tmp/rd_bench_serve_$pid" ] || { rm -rf "/tmp/rd_bench_serve_$pid"; fail "bench_serve left /tmp/rd_bench_serve_$pid"; }
[ -z "$(ls -A "$TMP/t1")" ] || fail "the failed bench_serve left in \$TMPDIR: $(ls -A "$TMP/t1")"

# 3. Stopped by SIGTERM once its folder has files in it: exit 143 (as the signal ends it), and
# the folder is gone. The runs are sized to last minutes; the signal ends them in seconds.
# killed NAME ARGS...: run bench_NAME with TMPDIR=$TMP/k-NAME, stop it, check.
killed() {
  local name="$1" t="$TMP/k-$1" pid rc i
  shift
  mkdir "$t"
  TMPDIR="$t" "$B/bench_$name" "$@" > "$TMP/k-$name.out" 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do # its folder made, and something written in it
    [ -n "$(find "$t" -mindepth 2 -print -quit 2> /dev/null)" ] && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  [ -n "$(find "$t" -mindepth 2 -print -quit 2> /dev/null)" ] ||
    { kill "$pid" 2> /dev/null; fail "bench_$name made nothing in \$TMPDIR: $(ls -A "$t"; cat "$TMP/k-$name.out")"; }
  sleep 0.3
  kill -TERM "$pid"
  wait "$pid"
  rc=$?
  [ $rc -eq 143 ] || fail "bench_$name stopped by SIGTERM exited $rc, expected 143: $(cat "$TMP/k-$name.out")"
  [ -z "$(ls -A "$t")" ] || fail "bench_$name stopped by SIGTERM left: $(find "$t" | head -5)"
  echo "bench_$name: its folder removed on SIGTERM"
}
killed serve --iters 100000000 --warmup 0
killed window --events 20000000 --reps 1000
killed ckpt --rows 3000000 --dim 8 --reps 1000

# 4. SIGKILL: of the bench itself, and of the rank that does not own the folder (mpiexec then
# kills the owner with SIGKILL). The folder's guard process removes it; give it 30 s.
# wait_made DIR PID: until DIR holds a file (or PID ended).
wait_made() {
  for ((i = 0; i < 600; i++)); do
    [ -n "$(find "$1" -mindepth 2 -print -quit 2> /dev/null)" ] && return 0
    kill -0 "$2" 2> /dev/null || return 1
    sleep 0.1
  done
  return 1
}
# gone DIR WHAT: DIR empty within 30 s, else fail naming WHAT.
gone() {
  for ((i = 0; i < 300; i++)); do
    [ -z "$(ls -A "$1")" ] && return 0
    sleep 0.1
  done
  fail "$2 left: $(find "$1" | head -5)"
}
t="$TMP/k9-serve"
mkdir "$t"
TMPDIR="$t" "$B/bench_serve" --iters 100000000 --warmup 0 > "$TMP/k9-serve.out" 2>&1 &
pid=$!
wait_made "$t" "$pid" || fail "bench_serve made nothing in \$TMPDIR: $(cat "$TMP/k9-serve.out")"
kill -KILL "$pid"
wait "$pid" 2> /dev/null
gone "$t" "bench_serve killed by SIGKILL"
echo "bench_serve: its folder removed after SIGKILL"

t="$TMP/k9-tokens"
mkdir "$t"
TMPDIR="$t" timeout 300 "$MPIEXEC" -n 2 "$B/bench_tokens" --users 2000 --per-user 256 \
  --iters 100000000 < /dev/null > "$TMP/k9-tokens.out" 2>&1 &
pid=$!
wait_made "$t" "$pid" || fail "bench_tokens made nothing in \$TMPDIR: $(cat "$TMP/k9-tokens.out")"
victim=
for ((i = 0; i < 300; i++)); do # rank 1: the process of this launch with PMI_RANK=1
  for p in $(pgrep -f -- "$B/bench_tokens --users 2000"); do
    tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx 'PMI_RANK=1' &&
      tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "TMPDIR=$t" && victim=$p
  done
  [ -n "$victim" ] && break
  sleep 0.1
done
[ -n "$victim" ] || { kill "$pid"; fail "no rank 1 of bench_tokens found"; }
kill -KILL "$victim"
wait "$pid"
rc=$?
[ $rc -ne 0 ] || fail "bench_tokens with rank 1 killed exited 0"
gone "$t" "bench_tokens with its rank 1 killed by SIGKILL (exit $rc)"
echo "bench_tokens: its folder removed after a SIGKILL of rank 1"
echo "bench_cli: ok"
