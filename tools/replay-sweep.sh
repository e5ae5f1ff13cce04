#!/usr/bin/env bash
# replay-sweep.sh — sweep the student's distillation settings without re-running the teacher: each
# point replays the target log of a finished pipeline run (distill.replay) with the student job
# alone, so it costs one student run (seconds on MovieLens-100K) instead of a teacher run.
#
#   tools/replay-sweep.sh [-s SEED] CONFIG RUN_DIR OUTDIR [POINT ...]
#
# CONFIG is the pipeline config RUN_DIR was made with (e.g. configs/ml100k.yaml, run with
# --seed SEED --out RUN_DIR); its first distilled student job is kept, every other job dropped.
# POINT is alpha:temperature (default 0.3:1 1:1 3:1 10:1 1:3 3:3), or "noaux" (one tower, the
# distillation term in its loss) with its undistilled twin "noaux_raw". Results: one line per
# point with the student's holdout and warm AUC, next to RUN_DIR's student and student_raw.
# Needs python3 with PyYAML (apt-get install python3-yaml).
set -euo pipefail
SEED=1
while getopts "s:h" o; do
    case $o in
        s) SEED=$OPTARG ;;
        *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
CONFIG=$1 RUN=$2 OUT=$3
shift 3
POINTS=${*:-"0.3:1 1:1 3:1 10:1 1:3 3:3"}
RD=${RD:-build/recdistill}
[ -d "$RUN/targets" ] || { echo "replay-sweep.sh: $RUN/targets: no target log" >&2; exit 2; }
command -v python3 >/dev/null && python3 -c "import yaml" 2>/dev/null ||
    { echo "replay-sweep.sh: needs python3 with PyYAML (apt-get install python3-yaml)" >&2; exit 2; }
mkdir -p "$OUT"
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

row() { # label log
    awk -v l="$1" '$2 == "holdout" && h == "" { h = $3 } $2 == "warm" && w == "" { w = $3 }
                   END { printf "%-14s holdout AUC %s  warm AUC %s\n", l, h, w }' \
        <(grep -E "^$3 +(holdout|warm) " "$2")
}

for p in $POINTS; do
    python3 - "$CONFIG" "$OUT/$p.yaml" "$p" "$RUN/targets" <<'PY'
import sys, yaml
src, dst, p, log = sys.argv[1:5]
c = yaml.safe_load(open(src))
jobs = [j for j in c["cluster"]["jobs"] if j.get("role") == "student" and j.get("distill")]
if not jobs:
    sys.exit("replay-sweep.sh: the config has no distilled student job")
teacher = jobs[0].get("teacher") or next(j["name"] for j in c["cluster"]["jobs"] if j["role"] == "teacher")
job = dict(jobs[0], teacher=teacher)
d = dict(c.get("distill") or {}, replay=True, target_log=log)
model = next(m for m in c["models"] if m["name"] == job["model"])
if p in ("noaux", "noaux_raw"):
    model["two_towers"] = False
    d["aux_tower"] = False
    if p == "noaux_raw":
        job.pop("distill", None); job.pop("teacher", None); d["replay"] = False
else:
    a, t = p.split(":")
    d["alpha"], d["temperature"] = float(a), float(t)
c["cluster"]["jobs"] = [job]
c["distill"] = d
c.setdefault("run", {}).pop("out_dir", None)
yaml.safe_dump(c, open(dst, "w"), sort_keys=False)
PY
    mpiexec.mpich -n $(("$(awk '/ps_ranks:/ {print $2; exit}' "$OUT/$p.yaml")" + 1)) "$RD" train \
        "$OUT/$p.yaml" --seed "$SEED" --out "$OUT/$p" >"$OUT/$p.log" 2>&1 ||
        { echo "replay-sweep.sh: point $p failed; see $OUT/$p.log" >&2; exit 1; }
    job=$(python3 -c "import yaml, sys; print(yaml.safe_load(open(sys.argv[1]))['cluster']['jobs'][0]['name'])" "$OUT/$p.yaml")
    row "$p" "$OUT/$p.log" "$job"
done
for j in student student_raw teacher; do
    [ -f "$RUN/$j.metrics.csv" ] && awk -F, -v j="$j" '$1 == "holdout" { h = $3 } $1 == "holdout_warm" { w = $3 }
        END { printf "%-14s holdout AUC %.4f  warm AUC %.4f  (the live run)\n", j, h, w }' "$RUN/$j.metrics.csv"
done
