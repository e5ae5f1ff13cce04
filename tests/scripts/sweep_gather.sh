#!/usr/bin/env bash
# sweep_gather.sh — slurm/sweep.sh --gather on a sweep folder made by hand (runs.tsv and each
# point's report.json), without a cluster: scontrol and sacct on PATH fail as they do when Slurm
# has forgotten the jobs and keeps no accounting, so every state comes from the reports.
#  - Points of one node count that share a world size (the spec's `batch: 256 1024`, crossed with
#    the ranks) were drawn as one line per node count, zigzagging between the batch sizes at each
#    world size. Each line is now one node count and batch size (then PS ranks, ranks per job:
#    whatever tells such points apart), named in sweep.csv's `series` column.
#  - a relative OUT_DIR starting with '-' was read as an option by mv, cat and grep.
#   sweep_gather.sh PATH/TO/recdistill
set -u
RD="${1:?usage: sweep_gather.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
command -v python3 >/dev/null || { echo "python3 missing: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_sweep_gather_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
mkdir -p "$TMP/bin"
for t in scontrol sacct squeue sinfo; do
    printf '#!/bin/sh\necho "%s: error: no controller" >&2\nexit 1\n' "$t" >"$TMP/bin/$t"
    chmod +x "$TMP/bin/$t"
done
export PATH="$TMP/bin:$PATH" RD_BIN="$RD"

# sweep OUT POINT:NODES:RANKS:PS:BATCH:WORLD:SAMPLES_PER_S ...: a sweep folder whose points each
# left a report.json (two jobs, half the throughput each).
sweep() {
    local out="$1" p point n r ps b w t
    shift
    mkdir -p "$out"
    printf 'point\tjobid\tnodes\tranks_per_job\tps_ranks\tbatch_size\tworld_size\trun_dir\n' >"$out/runs.tsv"
    for p in "$@"; do
        IFS=: read -r point n r ps b w t <<<"$p"
        mkdir -p "$out/$point"
        printf '{"wall_s": 1.5, "jobs": {"teacher": {"samples_per_s": %s}, "student": {"samples_per_s": %s}},
 "comm": {"total": {"bytes_per_sample": 200.0}, "ps_pull": {"bytes_per_sample": 100.0}}}\n' \
            "$((t / 2))" "$((t / 2))" >"$out/$point/report.json"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$point" "1$w$b" "$n" "$r/$r" "$ps" "$b" "$w" \
            "$out/$point" >>"$out/runs.tsv"
    done
}
# blocks OUT: sweep.dat's lines, "TITLE: x x x" (one per block)
blocks() {
    awk '/^# / { if (t != "") print t ":" xs; t = substr($0, 3); sub(/: world_size.*/, "", t); xs = ""; next }
         NF == 2 { xs = xs " " $1 } END { if (t != "") print t ":" xs }' "$1/sweep.dat"
}

# 1. nodes 1 2 x ranks 1 2 x batch 32 64: two points at each (nodes, world size).
A="$TMP/a"
sweep "$A" n1-r1-p1-b32:1:1:1:32:3:1000 n1-r1-p1-b64:1:1:1:64:3:3000 \
    n1-r2-p1-b32:1:2:1:32:5:1800 n1-r2-p1-b64:1:2:1:64:5:5000 \
    n2-r1-p1-b32:2:1:1:32:3:1100 n2-r1-p1-b64:2:1:1:64:3:3100 \
    n2-r2-p1-b32:2:2:1:32:5:2000 n2-r2-p1-b64:2:2:1:64:5:6000
"$SRC/slurm/sweep.sh" --gather "$A" >"$TMP/a.out" 2>"$TMP/a.err" ||
    bad "gather exited $?: $(cat "$TMP/a.out" "$TMP/a.err")"
got="$(blocks "$A")"
want="nodes=1 batch=32: 3 5
nodes=1 batch=64: 3 5
nodes=2 batch=32: 3 5
nodes=2 batch=64: 3 5"
[ "$got" = "$want" ] || bad "sweep.dat lines: got
$got
want
$want"
python3 - "$A/sweep.csv" <<'PY' || fail=1
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows:
    want = f"nodes={r['nodes']} batch={r['batch_size']}"
    if r.get("series") != want:
        print(f"FAIL: {r['point']}: series {r.get('series')!r}, want {want!r}")
        sys.exit(1)
PY
grep -q "^plot: $A/sweep.png" "$TMP/a.out" || bad "no throughput plot: $(cat "$TMP/a.out" "$TMP/a.err")"
grep -q "^plot: $A/sweep-comm.png" "$TMP/a.out" || bad "no comm plot: $(cat "$TMP/a.out" "$TMP/a.err")"
grep -q "title 'nodes=1 batch=64'" "$A/sweep.gp" || bad "sweep.gp: $(cat "$A/sweep.gp")"

# 2. ranks 1 2 x ps 1 4: r1-p4 and r2-p1 both have 7 ranks; the batch is the same everywhere, so
# the PS count tells them apart.
C="$TMP/c"
sweep "$C" n1-r1-p1-b64:1:1:1:64:4:1000 n1-r1-p4-b64:1:1:4:64:7:1500 \
    n1-r2-p1-b64:1:2:1:64:7:1800 n1-r2-p4-b64:1:2:4:64:10:2500
"$SRC/slurm/sweep.sh" --gather "$C" >"$TMP/c.out" 2>"$TMP/c.err" ||
    bad "gather (ps) exited $?: $(cat "$TMP/c.out" "$TMP/c.err")"
got="$(blocks "$C")"
want="nodes=1 ps=1: 4 7
nodes=1 ps=4: 7 10"
[ "$got" = "$want" ] || bad "sweep.dat lines (ps): got
$got
want
$want"

# 3. No two points of a node count share a world size: one line per node count, as before
#    (sweep.png's legend "nodes = 1").
D="$TMP/d"
sweep "$D" n1-r1-p1-b64:1:1:1:64:3:1000 n1-r2-p1-b64:1:2:1:64:5:1800 \
    n2-r1-p1-b64:2:1:1:64:3:1100 n2-r2-p1-b64:2:2:1:64:5:2000
"$SRC/slurm/sweep.sh" --gather "$D" >"$TMP/d.out" 2>"$TMP/d.err" ||
    bad "gather (nodes) exited $?: $(cat "$TMP/d.out" "$TMP/d.err")"
got="$(blocks "$D")"
want="nodes=1: 3 5
nodes=2: 3 5"
[ "$got" = "$want" ] || bad "sweep.dat lines (nodes): got
$got
want
$want"
[ "$(cat "$D/sweep-lines")" = nodes ] || bad "sweep-lines: $(cat "$D/sweep-lines")"

# 4. A relative OUT_DIR starting with '-' is a folder: mv, cat and `recdistill plot` took it for
#    an option ("mv: invalid option -- 'g'"), and the gather failed.
sweep "$TMP/-g" n1-r1-p1-b64:1:1:1:64:3:1000 n1-r2-p1-b64:1:2:1:64:5:1800
(cd "$TMP" && "$SRC/slurm/sweep.sh" --gather -g) >"$TMP/g.out" 2>"$TMP/g.err" ||
    bad "gather of '-g' exited $?: $(cat "$TMP/g.out" "$TMP/g.err")"
[ -s "$TMP/-g/sweep.csv" ] || bad "gather of '-g': no sweep.csv: $(cat "$TMP/g.out" "$TMP/g.err")"
grep -q "^plot: \./-g/sweep.png" "$TMP/g.out" || bad "gather of '-g': no plot: $(cat "$TMP/g.out" "$TMP/g.err")"

[ "$fail" -eq 0 ] && echo "sweep_gather: ok"
exit "$fail"
