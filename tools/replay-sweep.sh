#!/usr/bin/env bash
# replay-sweep.sh — sweep the student's distillation settings without re-running the teacher: each
# point replays the target log of a finished pipeline run (distill.replay) with the student job
# alone, so it costs one student run (seconds on MovieLens-100K) instead of a teacher run.
#
#   tools/replay-sweep.sh [-c] [-s SEED] CONFIG RUN_DIR OUTDIR [POINT ...]
#   tools/replay-sweep.sh [-c] -k SEEDS [-f FIRST] CONFIG SEEDS_DIR OUTDIR [POINT ...]
#
# CONFIG is the pipeline config RUN_DIR was made with (e.g. configs/ml100k.yaml, run with
# --seed SEED --out RUN_DIR); its first distilled student job is kept, every other job dropped.
# POINT is alpha:temperature (default 0.3:1 1:1 3:1 10:1 1:3 3:3), "noaux" (one tower, the
# distillation term in its loss) or "noaux:alpha:temperature", "noaux_raw" (its undistilled twin),
# or comma-separated tokens: noaux, raw (no distillation), notask (the auxiliary tower learns from
# the teacher alone: distill.aux_task false), a=ALPHA, t=TEMPERATURE, e=EPOCH (first
# batch epoch whose targets are used: distill.start_epoch),
# mlp=64-32 (the student's shared backbone), tower=8 (hidden layers of each tower; tower=0: none).
# Results: one line per point with the student's holdout and warm AUC, next to RUN_DIR's student
# and student_raw. A POINT names files in OUTDIR: one with a '/', or "." / "..", is refused, as is
# a bad token or a run folder (RUN_DIR, a seed's) without report.json (a failed or unfinished run:
# its log is partial), before anything runs (exit 2). SEED, SEEDS and FIRST are decimal.
#
# With -k, SEEDS_DIR holds a tools/seeds.sh sweep (seed-F .. seed-F+K-1, default F = 1): every point
# is replayed on every seed's log, and each distilled point is paired with its undistilled twin
# (the same tokens with "raw" and without a=/t=/e=/notask; added when not listed) replayed on the
# same seed.
# OUTDIR/summary.md gets every point's holdout / warm / stream-mean AUC as mean ± std over the
# seeds, the teacher gap and the student gain (both paired per seed) and eta from the means,
# marked "(gap within its seed spread)" when the mean gap is not above its standard deviation.
# -c only writes and checks each point's replay config (OUTDIR/POINT.yaml; with -k also the
# twins) and runs nothing; RUN_DIR is not read: whether a documented command still makes valid
# configs (tests/scripts/doc_variants.sh).
# Needs python3 with PyYAML (apt-get install python3-yaml).
set -euo pipefail
SEED=1 K=0 FIRST=1 CHECK=0
usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }
# -h and --help (anywhere before a "--") print this text and exit 0.
for a in "$@"; do
    case $a in --) break ;; -h | --help) usage; exit 0 ;; esac
done
while getopts "cs:k:f:h" o; do
    case $o in
        c) CHECK=1 ;;
        s) SEED=$OPTARG ;; k) K=$OPTARG ;; f) FIRST=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] || { usage >&2; exit 2; }
# num OPT VALUE MIN MAX: VALUE, a decimal whole number MIN..MAX, printed without leading zeros;
# a usage error (exit 2) otherwise. Bash arithmetic would read 010 as octal 8, fail on 08, and
# wrap a 20-digit number silently, so the digits are compared as text first (as rd_is_seed in
# slurm/common.sh does). MIN is 0 or 1; MAX is at most 18446744073709551615 (a uint64 seed).
num() {
    local d="${2#"${2%%[!0]*}"}"
    d=${d:-0}
    if [[ ! $2 =~ ^[0-9]+$ ]] || [ "${#d}" -gt "${#4}" ] ||
        { [ "${#d}" -eq "${#4}" ] && [[ $d > $4 ]]; } || { [ "$3" = 1 ] && [ "$d" = 0 ]; }; then
        echo "replay-sweep.sh: $1 '$2': expected a whole number $3..$4" >&2
        exit 2
    fi
    printf '%s' "$d"
}
SEED=$(num -s "$SEED" 0 18446744073709551615) || exit 2
K=$(num -k "$K" 0 100000) || exit 2
FIRST=$(num -f "$FIRST" 0 18446744073709551615) || exit 2
LAST=$(printf '%u' "$((FIRST + K - 1))") # modulo 2^64, unsigned: the seeds are uint64
[ "$K" -eq 0 ] || [[ ! $(printf '%020u' "$LAST") < $(printf '%020u' "$((FIRST))") ]] ||
    { echo "replay-sweep.sh: -f $FIRST -k $K: the last seed would pass 18446744073709551615" >&2; exit 2; }
CONFIG=$1 RUN=$2 OUT=$3
# A relative path that starts with '-' is read as a path, not as an option (by mkdir, cd and
# recdistill: "mkdir: invalid option").
case $CONFIG in -*) CONFIG=./$CONFIG ;; esac
case $RUN in -*) RUN=./$RUN ;; esac
case $OUT in -*) OUT=./$OUT ;; esac
shift 3
POINTS=${*:-"0.3:1 1:1 3:1 10:1 1:3 3:3"}
set -f # $POINTS is split into words, never expanded as a glob (a POINT "*" named cwd's files)
RD=${RD:-build/recdistill}
command -v python3 >/dev/null && python3 -c "import yaml" 2>/dev/null ||
    { echo "replay-sweep.sh: needs python3 with PyYAML (apt-get install python3-yaml)" >&2; exit 2; }
[ -x "$RD" ] || { echo "replay-sweep.sh: $RD: no recdistill binary (build it, or set RD)" >&2; exit 2; }
# The config and the run folder are checked first (a missing file or bad YAML is named with its
# line, not a Python traceback), and a failed sweep removes the OUTDIR it made while still empty.
"$RD" config "$CONFIG" >/dev/null || { echo "replay-sweep.sh: $CONFIG: not a valid config (see above)" >&2; exit 2; }
[ "$CHECK" -eq 1 ] || [ -d "$RUN" ] || { echo "replay-sweep.sh: $RUN: no such run folder" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

# The undistilled twin of a point: its tokens without a= / t= / e=, plus raw.
twin() {
    python3 - "$1" <<'PY'
import sys
p = sys.argv[1]
legacy = {"noaux": "noaux", "noaux_raw": "noaux,raw"}
if p in legacy:
    toks = legacy[p].split(",")
elif ":" in p:
    parts = p.split(":")
    toks = ["noaux"] if parts[0] == "noaux" else []
else:
    toks = p.split(",")
toks = [t for t in toks if not t.startswith(("a=", "t=", "e=")) and t not in ("raw", "notask")]
print(",".join(toks + ["raw"]))
PY
}

# Write OUTDIR-local config $2 for point $3 replaying log $4.
mkconfig() {
    python3 - "$CONFIG" "$1" "$2" "$3" <<'PY'
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
    toks = ["noaux"] + (["raw"] if p == "noaux_raw" else [])
elif ":" in p:
    parts = p.split(":")
    if parts[0] == "noaux":
        parts = parts[1:]
        toks = ["noaux"]
    else:
        toks = []
    if len(parts) != 2:
        sys.exit("replay-sweep.sh: point '%s': expected [noaux:]alpha:temperature" % p)
    toks += ["a=" + parts[0], "t=" + parts[1]]
else:
    toks = p.split(",")
for t in toks:
    k, _, v = t.partition("=")
    try:
        if t == "noaux":
            model["two_towers"] = False
            d["aux_tower"] = False
        elif t == "notask":
            d["aux_task"] = False
        elif t == "raw":
            job.pop("distill", None); job.pop("teacher", None); d["replay"] = False
        elif k == "a":
            d["alpha"] = float(v)
        elif k == "t":
            d["temperature"] = float(v)
        elif k == "e":
            d["start_epoch"] = int(v)
        elif k == "mlp":
            model["mlp"] = [int(x) for x in v.split("-")]
        elif k == "tower":
            model["tower"] = [] if v == "0" else [int(x) for x in v.split("-")]
        else:
            raise ValueError
    except ValueError:
        sys.exit("replay-sweep.sh: point '%s': unknown or bad token '%s'" % (p, t))
c["cluster"]["jobs"] = [job]
# An undistilled twin reads none of distill: (the config refuses it set): keep it at its defaults.
c["distill"] = d if job.get("distill") else {}
c.setdefault("run", {}).pop("out_dir", None)
yaml.safe_dump(c, open(dst, "w"), sort_keys=False)
PY
}

# Ranks of a point's launch: its PS ranks and the student job's (a student with ranks: 2 failed
# every point when the launch had ps_ranks + 1).
world() {
    python3 -c "import yaml, sys; c = yaml.safe_load(open(sys.argv[1]))['cluster']
print(int(c.get('ps_ranks', 1)) + int(c['jobs'][0].get('ranks', 1)))" "$1"
}

# Replay point $1 of run dir $2 with seed $3 into $4 (.yaml, .log, run folder).
replay() {
    local p=$1 run=$2 seed=$3 dst=$4
    [ -d "$run/targets" ] || { echo "replay-sweep.sh: $run/targets: no target log" >&2; exit 2; }
    if [ -s "$dst/report.json" ]; then return 0; fi
    # An absolute log path: a relative one under the config's default run folder (runs/demo/...
    # of the README's run) would be moved with the run folder to --out by `train`.
    mkconfig "$dst.yaml" "$p" "$(cd "$run" && pwd)/targets"
    "$RD" config "$dst.yaml" >/dev/null || { echo "replay-sweep.sh: point $p is not a valid config" >&2; exit 1; }
    mpiexec.mpich -n "$(world "$dst.yaml")" "$RD" train \
        "$dst.yaml" --seed "$seed" --out "$dst" >"$dst.log" 2>&1 ||
        { echo "replay-sweep.sh: point $p failed; see $dst.log" >&2; exit 1; }
}

jobname() { python3 -c "import yaml, sys; print(yaml.safe_load(open(sys.argv[1]))['cluster']['jobs'][0]['name'])" "$1"; }
# The teacher whose targets the points replay, for the summary's gap: the first distilled
# student's `teacher:` in CONFIG, else its first teacher job, as mkconfig picks it (an
# undistilled point, "raw", has none in its own config).
teachername() {
    python3 -c "import yaml, sys
c = yaml.safe_load(open(sys.argv[1]))['cluster']['jobs']
d = [j for j in c if j.get('role') == 'student' and j.get('distill')]
print((d[0].get('teacher') if d else None) or next(j['name'] for j in c if j.get('role') == 'teacher'))" "$1"
}

# Every POINT is checked before anything is made or removed: its name becomes a file and a
# folder directly in OUTDIR (which single-run mode empties before replaying the point), so a
# name with a '/', ".", ".." or an empty one is refused (a POINT ../x removed x next to OUTDIR),
# and its tokens are parsed by mkconfig on CONFIG, into /dev/null.
for p in $POINTS; do
    case $p in
        */* | . | .. | '') echo "replay-sweep.sh: point '$p': not a name for a file in OUTDIR" >&2; exit 2 ;;
    esac
    mkconfig /dev/null "$p" /nonexistent/targets || exit 2
done
# -c: each point's config (and with -k its twin's), as replay() writes it, checked; nothing runs.
if [ "$CHECK" -eq 1 ]; then
    mkdir -p "$OUT"
    n=0 done_=" "
    for p in $POINTS; do
        for q in "$p" $([ "$K" -eq 0 ] || twin "$p"); do
            case $done_ in *" $q "*) continue ;; esac
            done_="$done_$q "
            mkconfig "$OUT/$q.yaml" "$q" "$RUN/targets"
            "$RD" config "$OUT/$q.yaml" >/dev/null ||
                { echo "replay-sweep.sh: point $q is not a valid config ($OUT/$q.yaml)" >&2; exit 1; }
            n=$((n + 1))
        done
    done
    echo "replay-sweep.sh: $n point configs written and checked in $OUT (-c: nothing run)"
    exit 0
fi
# Every run folder to replay is a finished run, checked before OUTDIR is made: one without
# report.json (a seed that failed or is still running) has a partial target log and metrics. A
# sweep replayed it, then left that seed out of the slices where its teacher had no AUC, while
# the summary's header still counted it.
for ((i = 0; i < (K > 0 ? K : 1); i++)); do
    r=$RUN
    [ "$K" -eq 0 ] || printf -v r '%s/seed-%u' "$RUN" "$((FIRST + i))"
    [ -d "$r/targets" ] || { echo "replay-sweep.sh: $r/targets: no target log" >&2; exit 2; }
    [ -s "$r/report.json" ] ||
        { echo "replay-sweep.sh: $r: no report.json (a failed or unfinished run)" >&2; exit 2; }
done
[ -e "$OUT" ] || trap 'rmdir "$OUT" 2>/dev/null || true' EXIT
mkdir -p "$OUT"

if [ "$K" -eq 0 ]; then
    row() { # label log
        awk -v l="$1" '$2 == "holdout" && h == "" { h = $3 } $2 == "warm" && w == "" { w = $3 }
                       END { printf "%-14s holdout AUC %s  warm AUC %s\n", l, h, w }' \
            <(grep -E "^$3 +(holdout|warm) " "$2")
    }
    for p in $POINTS; do
        # A point checked above is one name directly in OUTDIR: nothing outside it goes.
        case $p in */* | . | .. | '') exit 2 ;; esac
        rm -rf "${OUT:?}/$p"
        replay "$p" "$RUN" "$SEED" "$OUT/$p"
        row "$p" "$OUT/$p.log" "$(jobname "$OUT/$p.yaml")"
    done
    for j in student student_raw "$(teachername "$CONFIG")"; do
        [ -f "$RUN/$j.metrics.csv" ] && awk -F, -v j="$j" '$1 == "holdout" { h = $3 } $1 == "holdout_warm" { w = $3 }
            END { printf "%-14s holdout AUC %.4f  warm AUC %.4f  (the live run)\n", j, h, w }' "$RUN/$j.metrics.csv"
    done
    exit 0
fi

# Multi-seed mode: the points plus their twins, every one on every seed.
ALL=""
for p in $POINTS; do
    t=$(twin "$p")
    for q in "$p" "$t"; do
        case " $ALL " in *" $q "*) ;; *) ALL="$ALL $q" ;; esac
    done
done
for ((i = 0; i < K; i++)); do
    printf -v s '%u' "$((FIRST + i))"
    for p in $ALL; do
        mkdir -p "$OUT/seed-$s"
        replay "$p" "$RUN/seed-$s" "$s" "$OUT/seed-$s/$p"
    done
    echo "seed $s: done"
done

python3 - "$RUN" "$OUT" "$FIRST" "$K" "$POINTS" "$(teachername "$CONFIG")" <<'PY'
import csv, math, os, statistics as st, subprocess, sys, yaml
run, out, first, k, points = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
seeds = range(first, first + k)

def auc(v):  # "nan" (a slice with one class) is no AUC
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None

def metrics(path):
    if not os.path.exists(path):
        sys.exit("replay-sweep.sh: %s: no metrics file (is the job's teacher in that run?)" % path)
    r, stream = {"holdout": None, "warm": None}, []
    for row in csv.DictReader(open(path)):
        if row["phase"] == "holdout": r["holdout"] = auc(row["auc"])
        elif row["phase"] == "holdout_warm": r["warm"] = auc(row["auc"])
        elif row["phase"] == "stream" and auc(row["auc"]) is not None: stream.append(auc(row["auc"]))
    r["stream"] = sum(stream) / len(stream) if stream else None
    return r

def point(p, s):
    d = os.path.join(out, "seed-%d" % s, p)
    job = yaml.safe_load(open(d + ".yaml"))["cluster"]["jobs"][0]["name"]
    return metrics(os.path.join(d, job + ".metrics.csv"))

def twin(p):
    legacy = {"noaux": "noaux", "noaux_raw": "noaux,raw"}
    if p in legacy: toks = legacy[p].split(",")
    elif ":" in p: toks = ["noaux"] if p.split(":")[0] == "noaux" else []
    else: toks = p.split(",")
    keep = [t for t in toks if not t.startswith(("a=", "t=", "e=")) and t not in ("raw", "notask")]
    return ",".join(keep + ["raw"])  # as twin() above

# One seed has no spread: "(n=1)", not "± 0.0000" (a measured zero spread), as tools/seeds.sh.
def ms(x): return "%.4f ± %.4f" % (st.mean(x), st.stdev(x)) if len(x) > 1 else "%.4f (n=1)" % x[0]
def pm(x): return "%+.4f ± %.4f" % (st.mean(x), st.stdev(x)) if len(x) > 1 else "%+.4f (n=1)" % x[0]

# The teacher the points replay: their student's `teacher:` (not a job named "teacher").
tname = sys.argv[6]
teacher = {s: metrics(os.path.join(run, "seed-%d" % s, tname + ".metrics.csv")) for s in seeds}
lines = ["%d paired seeds (%d..%d), replayed from %s; teacher %s" % (k, first, first + k - 1, run, tname), "",
         "| point | slice | teacher | student | twin (raw) | teacher gap | student gain | η |",
         "|---|---|---|---|---|---|---|---|"]
for p in points:
    tw = twin(p)
    for sl in ("holdout", "warm", "stream"):
        # Seeds where the slice has an AUC for all three (an empty warm slice has none).
        trip = [(teacher[s][sl], point(p, s)[sl], point(tw, s)[sl]) for s in seeds]
        trip = [t for t in trip if None not in t]
        if not trip:
            lines.append("| %s | %s | undefined | undefined | undefined | | | undef. (no AUC) |" % (
                p if sl == "holdout" else "", sl))
            continue
        T, S, R = ([t[i] for t in trip] for i in range(3))
        # A slice over fewer seeds than the header's says which (its figures were read as over k).
        name = sl if len(trip) == k else "%s (%d of %d seeds)" % (sl, len(trip), k)
        gap = [a - b for a, b in zip(T, R)]
        gain = [a - b for a, b in zip(S, R)]
        eta = st.mean(gain) / st.mean(gap) if st.mean(gap) > 0 else float("nan")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            p if sl == "holdout" else "", name, ms(T), ms(S), ms(R), pm(gap), pm(gain),
            ("%.2f" % eta + (" (gap within its seed spread)"
                             if len(gap) > 1 and st.mean(gap) <= st.stdev(gap) else ""))
            if st.mean(gap) > 0 else "undef. (gap <= 0)"))
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
