#!/bin/sh
# bench-ps-ab.sh — A/B runs of bench_ps, alternating two builds, on the issue-3 setting
# (dim 64, 1 PS + 1 worker, 400 timed steps). Prints one line per run (ratio_memcpy, memcpy
# GB/s, PS row GB/s, the 1-minute load average before the run) and the median ratio of each
# build. The machine is shared: alternating spreads slow phases of other jobs over both builds.
#
# Usage: tools/bench-ps-ab.sh OLD_BUILD_DIR NEW_BUILD_DIR [RUNS_EACH=6] [OUT_DIR=runs/bench-ps-ab]
# Extra bench_ps arguments per side in OLD_ARGS / NEW_ARGS (e.g. the same build twice with
# OLD_ARGS="--shm 0" NEW_ARGS="--shm 1"). DIMS (default 64) is passed to --dims; the figures
# are those of the last dim listed (DIMS=8,16,64 is the issue's full command).
set -eu
case ${1:-} in -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
[ $# -ge 2 ] || { sed -n '7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
old=$1
new=$2
n=${3:-6}
out=${4:-runs/bench-ps-ab}
# A relative path that starts with '-' is read as a path, not as an option (by mkdir, mpiexec).
case $old in -*) old=./$old ;; esac
case $new in -*) new=./$new ;; esac
case $out in -*) out=./$out ;; esac
case $n in
    '' | *[!0-9]* | 0*) echo "bench-ps-ab.sh: RUNS_EACH '$n': expected a positive whole number" >&2; exit 2 ;;
esac
for b in "$old" "$new"; do
    [ -x "$b/bench/bench_ps" ] || { echo "bench-ps-ab.sh: no $b/bench/bench_ps (a build folder with benchmarks?)" >&2; exit 2; }
done
mkdir -p "$out" || { echo "bench-ps-ab.sh: OUT_DIR '$out': cannot make it" >&2; exit 2; }
i=1
while [ "$i" -le "$n" ]; do
    for side in old new; do
        if [ "$side" = old ]; then b=$old; x=${OLD_ARGS:-}; else b=$new; x=${NEW_ARGS:-}; fi
        load=$(cut -d' ' -f1 /proc/loadavg)
        j="$out/$side-$i.json"
        # shellcheck disable=SC2086 # $x: word splitting wanted
        UCX_TLS=self,sm OPENBLAS_NUM_THREADS=1 mpiexec.mpich -n 2 "$b/bench/bench_ps" --ps 1 \
            --dims "${DIMS:-64}" --steps 400 $x --json "$j" > /dev/null
        python3 - "$j" "$side" "$i" "$load" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["rows"][-1]
print("%s %2s load %5s  ratio_memcpy %.3f  memcpy %.2f GB/s  ps_row %.3f GB/s  B/key %.2f"
      % (sys.argv[2], sys.argv[3], sys.argv[4], r["ratio_memcpy"], r["memcpy_gbps"],
         r["ps_row_gbps"], r["bytes_per_key"]))
PY
    done
    i=$((i + 1))
done
python3 - "$out" "$n" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
for side in ("old", "new"):
    rows = [json.load(open("%s/%s-%d.json" % (d, side, i)))["rows"][-1] for i in range(1, n + 1)]
    v = [r["ratio_memcpy"] for r in rows]
    g = [r["ps_row_gbps"] for r in rows]
    print("%s: median ratio_memcpy %.3f over %d runs (min %.3f, max %.3f); median ps_row %.3f GB/s"
          % (side, statistics.median(v), n, min(v), max(v), statistics.median(g)))
PY
