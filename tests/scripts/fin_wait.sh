#!/usr/bin/env bash
# fin_wait.sh — a distilled student waits for its teacher's FIN (end of its targets) without a
# time limit: a teacher slow to finish (held RD_TEST_FIN_DELAY_MS after its holdout, well past
# the distillation calls' limit, shortened to RD_TEST_DISTILL_TIMEOUT_MS + distill.wait_ms) ends
# a launch with exit 0 whose student equals the one of the same run without the hold (metrics
# and target counters, every target joined). Before 2026-12-06 the student gave up after that
# limit ("close: FIN from 0 of 1 teachers after ... ms") and ended the launch. And a teacher that
# dies while its student waits for the FIN ends the launch promptly, non-zero, with no report and
# a line naming a dead rank: the wait has no limit, but it is no hang. The student says when its
# wait begins and how long it took: the teacher is killed only once its student waits, and the
# held run fails unless its student waited past the old limit.
#
#   bash tests/scripts/fin_wait.sh build/recdistill
set -u
RD="${1:?usage: fin_wait.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_finwait_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
LIMIT_MS=1000 # the distillation calls' limit in this test: with wait_ms, 6 s
HOLD_MS=9000  # the teacher's hold before its FIN: past that limit

sed -e 's/name: slurm-tiny/name: finwait/' "$SRC/tests/data/slurm-tiny.yaml" >"$TMP/a.yaml"
printf 'distill:\n  wait_ms: 5000\n  batch: 64\n' >>"$TMP/a.yaml"

# 1. The reference: the same run, the teacher not held.
RD_TEST_DISTILL_TIMEOUT_MS=$LIMIT_MS timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TMP/a.yaml" \
    --out "$TMP/ref" >"$TMP/ref.out" 2>"$TMP/ref.err" ||
    fail "the reference run: $(grep -v INFO "$TMP/ref.err" | head -20)"

# 2. The teacher held before its FIN: the student waits, and ends as the reference did.
t0=$(date +%s%N)
RD_TEST_DISTILL_TIMEOUT_MS=$LIMIT_MS RD_TEST_FIN_DELAY_MS=$HOLD_MS timeout 120 "$MPIEXEC" -n 4 \
    "$RD" train "$TMP/a.yaml" --out "$TMP/slow" >"$TMP/slow.out" 2>"$TMP/slow.err" ||
    fail "a teacher slow to finish: $(grep -v INFO "$TMP/slow.err" | head -20)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "teacher held $HOLD_MS ms before its FIN: exit 0 after $ms ms"
grep -q "job 'teacher': holding the FIN for $HOLD_MS ms" "$TMP/slow.err" ||
    fail "the teacher was not held: $(grep -v INFO "$TMP/slow.err" | head -5)"
[ "$ms" -ge "$HOLD_MS" ] || fail "the launch ended after $ms ms, before the teacher's hold did"
# The student's own measure of its wait: past the old limit, or this run did not test it (a
# student that reached its wait late, on a loaded host, would pass with the limit back).
wait_ms=$(sed -n "s/.*job 'student': the FIN of job 'teacher' after \([0-9]*\) ms.*/\1/p" "$TMP/slow.err")
[ -n "$wait_ms" ] || fail "no line of the student's wait for the FIN: $(grep -v INFO "$TMP/slow.err" | head -5)"
echo "the student waited $wait_ms ms for the FIN"
[ "$wait_ms" -gt $((LIMIT_MS + 5000)) ] ||
    fail "the student waited $wait_ms ms for the FIN, not past the old limit of $((LIMIT_MS + 5000)) ms"
grep -q "warning" "$TMP/slow.err" && fail "a warning: $(grep warning "$TMP/slow.err")"
for f in student.targets.json teacher.targets.json; do
    cmp -s "$TMP/ref/$f" "$TMP/slow/$f" || fail "$f differs from the reference: $(diff "$TMP/ref/$f" "$TMP/slow/$f")"
done
# The metrics without their last column, the throughput.
for r in ref slow; do cut -d, -f1-7 "$TMP/$r/student.metrics.csv" >"$TMP/$r.csv"; done
[ "$(wc -l <"$TMP/ref.csv")" -ge 4 ] || fail "the reference metrics: $(cat "$TMP/ref.csv")"
cmp -s "$TMP/ref.csv" "$TMP/slow.csv" || fail "the student's metrics differ from the reference: $(diff "$TMP/ref.csv" "$TMP/slow.csv")"
python3 - "$TMP/slow" <<'PY' || fail "a teacher slow to finish: counters"
import json, sys
s = json.load(open(sys.argv[1] + "/student.targets.json"))
t = json.load(open(sys.argv[1] + "/teacher.targets.json"))
print("teacher sent %d; student joined %d, late %d, missing %d" % (t["sent"], s["joined"], s["late"],
                                                                   s["missing"]))
assert t["sent"] == s["received"] == s["joined"] > 0 and s["late"] == s["missing"] == 0
PY

# 3. The teacher killed while held (its student waits for the FIN): the launch ends within 30 s,
#    non-zero, with no report and a line naming a dead rank.
RD_TEST_DISTILL_TIMEOUT_MS=$LIMIT_MS RD_TEST_FIN_DELAY_MS=60000 timeout 120 "$MPIEXEC" -n 4 \
    "$RD" train "$TMP/a.yaml" --out "$TMP/dead" >"$TMP/dead.out" 2>"$TMP/dead.err" &
launch=$!
pid=""
for _ in $(seq 600); do
    grep -q "job 'teacher': holding the FIN" "$TMP/dead.err" && break
    kill -0 "$launch" 2>/dev/null || fail "the launch ended before its teacher was held: $(grep -v INFO "$TMP/dead.err" | tail -5)"
    sleep 0.1
done
grep -q "job 'teacher': holding the FIN" "$TMP/dead.err" || { kill "$launch"; fail "the teacher was not held within 60 s"; }
# World rank 1 (the teacher): the process hydra's proxy started (its sentinel is a child of it).
for p in $(pgrep -f -- "--out $TMP/dead\$"); do
    pp=$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')
    [ -n "$pp" ] && [ "$(ps -o comm= -p "$pp" 2>/dev/null)" = hydra_pmi_proxy ] || continue
    [ "$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^PMI_RANK=//p')" = 1 ] && pid=$p
done
[ -n "$pid" ] || { kill "$launch"; fail "no teacher process"; }
# The student waits for the FIN (it says so as it begins): kill the teacher only then.
for _ in $(seq 600); do
    grep -q "job 'student': waiting for the FIN of job 'teacher'" "$TMP/dead.err" && break
    kill -0 "$launch" 2>/dev/null || fail "the launch ended before its student waited for the FIN: $(grep -v INFO "$TMP/dead.err" | tail -5)"
    sleep 0.1
done
grep -q "job 'student': waiting for the FIN of job 'teacher'" "$TMP/dead.err" ||
    { kill "$launch"; fail "the student did not wait for the FIN within 60 s"; }
t0=$(date +%s%N)
kill -9 "$pid"
wait "$launch"
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "teacher killed while its student waited for the FIN: exit $rc after $ms ms"
[ "$rc" -ne 124 ] || fail "teacher killed: the launch hung"
[ "$rc" -ne 0 ] || fail "teacher killed: exit 0"
[ "$ms" -lt 30000 ] || fail "teacher killed: the launch took $ms ms to end"
[ ! -e "$TMP/dead/report.json" ] || fail "teacher killed: a report was written"
[ "$(grep -c 'died without an orderly exit' "$TMP/dead.err")" -eq 1 ] ||
    fail "teacher killed: not one line naming a dead rank: $(grep -v INFO "$TMP/dead.err" | tail -5)"
grep -o "recdistill: rank [0-9] (role [a-z_]*" "$TMP/dead.err"
echo "ok"
