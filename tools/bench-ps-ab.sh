#!/bin/sh
# bench-ps-ab.sh — A/B runs of bench_ps, alternating two builds, on the issue-3 setting
# (dim 64, 1 PS + 1 worker, 400 timed steps). Prints one line per run (ratio_memcpy, memcpy
# GB/s, PS row GB/s, the 1-minute load average before the run) and the median ratio of each
# build. The machine is shared: alternating spreads slow phases of other jobs over both builds.
#
# Usage: tools/bench-ps-ab.sh OLD_BUILD_DIR NEW_BUILD_DIR [RUNS_EACH=6] [OUT_DIR=runs/bench-ps-ab]
set -eu
old=$1
new=$2
n=${3:-6}
out=${4:-runs/bench-ps-ab}
mkdir -p "$out"
for b in "$old" "$new"; do
    [ -x "$b/bench/bench_ps" ] || { echo "no $b/bench/bench_ps" >&2; exit 2; }
done
i=1
while [ "$i" -le "$n" ]; do
    for side in old new; do
        if [ "$side" = old ]; then b=$old; else b=$new; fi
        load=$(cut -d' ' -f1 /proc/loadavg)
        j="$out/$side-$i.json"
        UCX_TLS=self,sm mpiexec.mpich -n 2 "$b/bench/bench_ps" --ps 1 --dims 64 --steps 400 \
            --json "$j" > /dev/null
        python3 - "$j" "$side" "$i" "$load" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["rows"][0]
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
    v = [json.load(open("%s/%s-%d.json" % (d, side, i)))["rows"][0]["ratio_memcpy"]
         for i in range(1, n + 1)]
    print("%s: median ratio_memcpy %.3f over %d runs (min %.3f, max %.3f)"
          % (side, statistics.median(v), n, min(v), max(v)))
PY
