#!/usr/bin/env bash
# bench_cli.sh — the command line of the bench/ programs:
#  - an option given twice is refused naming it (exit 2, no JSON), in every bench: each took the
#    last value without a word (`bench_ps --dims 8 ... --dims 64` measured 64 alone), where
#    `recdistill` refuses it.
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

echo "bench_cli: ok"
