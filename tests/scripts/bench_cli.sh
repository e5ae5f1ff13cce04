#!/usr/bin/env bash
# bench_cli.sh — the command line and the temporary folders of the bench/ programs:
#  - an option given twice is refused naming it (exit 2, no JSON), in every bench: each took the
#    last value without a word (`bench_ps --dims 8 ... --dims 64` measured 64 alone), where
#    `recdistill` refuses it;
#  - a bench's own temporary folder (in $TMPDIR, else /tmp) is removed however the run ends:
#    bench_serve left /tmp/rd_bench_serve_<pid> (a dataset, a checkpoint, a bundle) behind on
#    every failure, and bench_window, bench_ckpt and bench_serve theirs when stopped by SIGTERM.
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
echo "bench_cli: ok"
