#!/usr/bin/env bash
# distill_ranges.sh — distill keys at the ends of their documented ranges train and report:
# distill.temperature 1000 (with alpha 1 and 1e6) is a valid setting whose T^2-scaled
# distillation term starts near T^2 ln 2 = 6.9e5 nats per example; the untrained-loss check
# refused it as "numerically broken" (exit 1, no report) before its bound took T^2 into account.
# A teacher rerun with no live student over a log of an earlier launch warns that the log keeps
# the earlier teacher's targets (a replay would read them).
#
#   bash tests/scripts/distill_ranges.sh build/recdistill
set -u
RD="${1:?usage: distill_ranges.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_distillranges_XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
sed -e 's/name: slurm-tiny/name: distillranges/' "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/a.yaml"

# train OUT N [--set ...]: a launch that must succeed with every target joined.
train() {
    local out="$1" n="$2"
    shift 2
    timeout 120 "$MPIEXEC" -n "$n" "$RD" train "$TMP/a.yaml" --out "$TMP/$out" "$@" \
        >"$TMP/$out.out" 2>"$TMP/$out.err" ||
        fail "$out ($*): $(grep -v INFO "$TMP/$out.err" | tail -5)"
    [ -f "$TMP/$out/report.json" ] || fail "$out: no report.json"
}

# 1. Temperature at the top of its range.
for a in 1 1000000; do
    train t1000_a$a 4 --set distill.temperature=1000 --set distill.alpha=$a
    python3 - "$TMP/t1000_a$a" <<'PY' || fail "temperature 1000, alpha $a: counters"
import json, sys
t = json.load(open(sys.argv[1] + "/student.targets.json"))
assert t["joined"] == 3600 and t["late"] == 0 and t["missing"] == 0, t
PY
done
# 2. A teacher rerun without a live distilled student (here: the teacher alone) writes no
#    targets and leaves those of the earlier launch in its log: said, since a replay would read
#    them as this run's.
train t1000_a1 2 --set 'cluster.jobs=[{name: teacher, role: teacher, model: teacher}]'
grep -q "the target log .* holds targets of an earlier launch of teacher 'teacher'; this launch sends none" \
    "$TMP/t1000_a1.err" || fail "teacher-only rerun over a log: no warning: $(grep -v INFO "$TMP/t1000_a1.err" | tail -3)"
train alone 2 --set 'cluster.jobs=[{name: teacher, role: teacher, model: teacher}]'
grep -q "holds targets of an earlier launch" "$TMP/alone.err" && fail "a teacher-only run without a log warned"
echo "ok"
