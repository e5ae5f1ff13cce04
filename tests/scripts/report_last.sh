#!/usr/bin/env bash
# report_last.sh — report.json is the last file a run writes: a launch that fails after its
# training, while world rank 0 writes its final outputs, ends non-zero with no report.json
# (docs/reliability.md, run folder rules). The plot was written after the report, so a plot that
# could not be written (a full disk, a folder in its place) ended the launch with exit 1 beside a
# report.json that claimed the run had succeeded.
#  1. A folder appears under the plot's name while the teacher holds its FIN (the run folder's
#     earlier outputs were cleared by then): exit 1, the message names auc_windows.png, no
#     report.json.
#
#   bash tests/scripts/report_last.sh build/recdistill
set -u
RD="${1:?usage: report_last.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_report_last_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

# 1. The teacher holds its FIN 3 s after its holdout (a test hook): the launch cannot reach its
#    final outputs before that, and the folder is made as soon as the hold begins.
RD_TEST_FIN_DELAY_MS=3000 timeout 120 "$MPIEXEC" -n 4 "$RD" train "$SRC/tests/data/slurm-tiny.yaml" \
    --out "$TMP/R" --set output.plot=true >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 1 600); do
    grep -q "holding the FIN" "$TMP/err" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
done
grep -q "holding the FIN" "$TMP/err" || fail "the teacher did not hold its FIN: $(grep -v INFO "$TMP/err" | head)"
mkdir "$TMP/R/auc_windows.png" || fail "could not make the folder in the plot's place"
wait "$PID"
rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    fail "a launch whose plot could not be written: exit $rc (124: timeout)"
fi
grep -q "auc_windows.png exists and is a folder" "$TMP/err" ||
    fail "the message does not name the plot: $(grep -v INFO "$TMP/err" | head)"
[ ! -e "$TMP/R/report.json" ] || fail "a failed launch left report.json: $(head -c 300 "$TMP/R/report.json")"
echo "plot unwritable: exit $rc, no report.json"
echo "ok"
