#!/usr/bin/env bash
# mpmd_env.sh — an environment variable that one rank refuses at start-up ends every rank of
# the launch, not that rank alone. rd_mpi_init refuses a malformed RD_FINALIZE_TIMEOUT_S after
# MPI_Init; a rank that ended there (one MPMD segment given it with -env) left the other ranks
# waiting for ever in the agreement every rank makes next (rd_app_agree), with no message when
# that rank was not rank 0. Each launch is bounded by `timeout`, so a hang fails (exit 124).
#  1. train on every segment, the variable malformed on the second: exit 1, one message naming
#     the variable and the rank, nothing made;
#  2. the second segment runs a command that does not use MPI (`config`) with the variable
#     malformed: exit 2 (that command is refused in a launch), the variable named, nothing made.
#
#   bash tests/scripts/mpmd_env.sh build/recdistill
set -u
RD="${1:?usage: mpmd_env.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_mpmd_env_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
C="$SRC/tests/data/slurm-tiny.yaml"

# 1. train on both segments.
timeout 60 "$MPIEXEC" -n 3 "$RD" train "$C" --out "$TMP/a" : \
    -n 1 -env RD_FINALIZE_TIMEOUT_S abc "$RD" train "$C" --out "$TMP/a" >"$TMP/a.out" 2>"$TMP/a.err"
rc=$?
[ "$rc" -ne 124 ] || fail "1: the launch hung (one segment refused RD_FINALIZE_TIMEOUT_S)"
[ "$rc" -eq 1 ] || fail "1: exit $rc, not 1: $(cat "$TMP/a.err")"
[ "$(grep -c "rank 3: environment variable RD_FINALIZE_TIMEOUT_S='abc'" "$TMP/a.err")" -eq 1 ] ||
    fail "1: expected one message naming rank 3 and the variable: $(cat "$TMP/a.err")"
[ ! -e "$TMP/a" ] || fail "1: the run folder was made: $(ls "$TMP/a")"
echo "1: train, one segment's RD_FINALIZE_TIMEOUT_S malformed: exit 1"

# 2. A command that does not use MPI on the second segment.
timeout 60 "$MPIEXEC" -n 3 "$RD" train "$C" --out "$TMP/b" : \
    -n 1 -env RD_FINALIZE_TIMEOUT_S abc "$RD" config "$C" >"$TMP/b.out" 2>"$TMP/b.err"
rc=$?
[ "$rc" -ne 124 ] || fail "2: the launch hung (one segment refused RD_FINALIZE_TIMEOUT_S)"
[ "$rc" -eq 2 ] || fail "2: exit $rc, not 2: $(cat "$TMP/b.err")"
grep -q "RD_FINALIZE_TIMEOUT_S='abc'" "$TMP/b.err" || fail "2: the variable is not named: $(cat "$TMP/b.err")"
[ ! -e "$TMP/b" ] || fail "2: the run folder was made: $(ls "$TMP/b")"
echo "2: config beside train, its RD_FINALIZE_TIMEOUT_S malformed: exit 2"
echo "ok"
