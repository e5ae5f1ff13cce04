#!/usr/bin/env bash
# finalize_watchdog.sh — a hang inside MPI_Finalize must not hang the launch (rd_mpi_finalize,
# rd/comm.h). With Debian 12's MPICH 4.0.2 and UCX 1.13, UCX's TCP transport (UCX_TLS=tcp,self;
# between nodes on an Ethernet cluster) often leaves a rank in UCX's progress loop at exit;
# UCX_RNDV_SCHEME=put_zcopy makes it more likely. Without the watchdog `recdistill train` never
# returns after writing its report. Checked here, under that setting with
# RD_FINALIZE_TIMEOUT_S=3:
#   - three tiny three-job runs each end within the bound, have their report and print no "died
#     without an orderly exit" line (the watchdog tells the rank sentinel the exit is deliberate);
#     each exits 0, or 9 when hydra's clean-up killed a rank whose alarm had not fired yet (the
#     first rank to leave without finishing MPI_Finalize makes hydra end the others), or 255
#     when hydra trips over a rank that left while it answered the PMI barrier (seen once in
#     8 runs), or 1 when every rank's alarm fired and each rank exited 0 (seen once in CI);
#     every alarm must report status 0; how many ranks needed the watchdog is printed;
#   - a run that fails (a config error, after MPI is up) never exits 0: the watchdog exits with
#     the status the program was going to return (1; 9 when hydra killed a rank first, 255 as
#     above);
#   - a malformed RD_FINALIZE_TIMEOUT_S is refused once, by name, with exit 1.
#
#   bash tests/scripts/finalize_watchdog.sh build/recdistill
set -u
RD="${1:?usage: finalize_watchdog.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_finwd_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

# The UCX setting that hangs MPI_Finalize; a bound far above the 3 s limit.
hang_env=(env UCX_TLS=tcp,self UCX_RNDV_SCHEME=put_zcopy RD_FINALIZE_TIMEOUT_S=3)
run() { timeout 120 "${hang_env[@]}" "$MPIEXEC" "$@"; }

# The transport must come up at all (a host without a usable TCP interface cannot run this).
if ! timeout 60 env UCX_TLS=tcp,self RD_FINALIZE_TIMEOUT_S=3 "$MPIEXEC" -n 4 "$RD" train \
    "$SRC/tests/data/slurm-tiny.yaml" --out "$TMP/probe" >"$TMP/probe.out" 2>"$TMP/probe.err"; then
    if [ ! -f "$TMP/probe/report.json" ]; then
        echo "UCX over TCP does not start here: skip ($(tail -2 "$TMP/probe.err" | tr '\n' ' '))"
        exit 77
    fi
fi

fired=0
for i in 1 2 3; do
    t0=$(date +%s)
    run -n 4 "$RD" train "$SRC/tests/data/slurm-tiny.yaml" --out "$TMP/run$i" \
        >"$TMP/out$i" 2>"$TMP/err$i"
    rc=$?
    [ $rc -ne 124 ] || fail "run $i hung past 120 s: $(tail -3 "$TMP/err$i")"
    n=$(grep -c "MPI_Finalize did not return within 3 s" "$TMP/err$i")
    ok0=$(grep "MPI_Finalize did not return within 3 s" "$TMP/err$i" | grep -c "exiting with status 0")
    [ "$ok0" -eq "$n" ] || fail "run $i: a watchdog exit with a status other than 0: $(grep 'did not return' "$TMP/err$i")"
    # 1: seen once in CI when the alarm fired on all four ranks, each exiting 0 (hydra's own
    # verdict on ranks that left MPI_Finalize unfinished); accepted only then.
    [ $rc -eq 0 ] || [ $rc -eq 9 ] || [ $rc -eq 255 ] || { [ $rc -eq 1 ] && [ "$n" -eq 4 ]; } ||
        fail "run $i exited $rc: $(tail -5 "$TMP/err$i")"
    [ -f "$TMP/run$i/report.json" ] || fail "run $i wrote no report"
    grep -q "died without an orderly exit" "$TMP/err$i" &&
        fail "run $i: a watchdog exit was reported as a dead rank: $(grep died "$TMP/err$i")"
    fired=$((fired + n))
    echo "run $i: exit $rc after $(($(date +%s) - t0)) s, watchdog fired on $n of 4 ranks"
done
echo "watchdog fired on $fired of 12 ranks in 3 runs"

# A failing run keeps its failure status.
sed 's/mlp: \[16\]/mlp: [0]/' "$SRC/tests/data/slurm-tiny.yaml" >"$TMP/bad.yaml"
grep -q "mlp: \[0\]" "$TMP/bad.yaml" || fail "config edit"
run -n 4 "$RD" train "$TMP/bad.yaml" --out "$TMP/bad" >"$TMP/bad.out" 2>"$TMP/bad.err"
rc=$?
# 9: hydra killed ranks whose alarm had not fired; 255: hydra's proxy wrote to a rank that had
# just left (seen once in CI under load, docs/reliability.md). Never 0.
[ $rc -eq 1 ] || [ $rc -eq 9 ] || [ $rc -eq 255 ] ||
    fail "a config error under the hanging setting exited $rc, not 1 (or 9, 255): $(tail -3 "$TMP/bad.err")"
grep -q "mlp" "$TMP/bad.err" || fail "the config error was not printed: $(cat "$TMP/bad.err")"

# A malformed limit.
for v in abc -5 1.5 "" 99999999; do
    timeout 60 env RD_FINALIZE_TIMEOUT_S="$v" "$MPIEXEC" -n 2 "$RD" train \
        "$SRC/tests/data/slurm-tiny.yaml" --out "$TMP/env" >"$TMP/env.out" 2>"$TMP/env.err"
    rc=$?
    [ $rc -eq 1 ] || fail "RD_FINALIZE_TIMEOUT_S='$v' exited $rc, not 1"
    [ "$(grep -c "RD_FINALIZE_TIMEOUT_S='$v'" "$TMP/env.err")" -eq 1 ] ||
        fail "RD_FINALIZE_TIMEOUT_S='$v': expected one message naming it: $(cat "$TMP/env.err")"
    [ ! -e "$TMP/env/report.json" ] || fail "RD_FINALIZE_TIMEOUT_S='$v' still trained"
done
echo "finalize_watchdog: ok"
