#!/usr/bin/env bash
# tools_paths.sh — tools/seeds.sh, variant.sh, ablations.sh and replay-sweep.sh with the paths a
# shared cluster's users have, run from another folder than the config's: spaces, quotes, '$',
# é and 中, a backslash, and a relative path starting with '-' (given after "--"). Real runs of a
# 2- and 3-rank synthetic config of 3000 events (a few seconds in all).
#  - seeds.sh passed OUTDIR to awk with -v, which takes escapes: an OUTDIR "s \t é" named a file
#    with a tab in it, awk could not open it, exit 2 after every seed had run, no summary.
#  - an OUTDIR (or CONFIG, RUN_DIR; bench-ps-ab.sh's build folders and OUT_DIR; valgrind-unit.sh's
#    BUILD_DIR) starting with '-' was read as an option by mkdir, cd, mpiexec and valgrind
#    ("mkdir: invalid option -- 'o'").
#  - tools/slurm-local.sh env printed SLURM_CONF unquoted for `eval`: a --dir with a '$', ';' or
#    '&' ran as shell; `up` wrote a --dir with a blank, ',' or '%' into slurm.conf as it is
#    (now refused, exit 2, before anything is made).
#
#   bash tests/scripts/tools_paths.sh build/recdistill
set -u
command -v python3 >/dev/null && python3 -c "import yaml" 2>/dev/null ||
    { echo "python3 with PyYAML not found: skip"; exit 77; }
command -v mpiexec.mpich >/dev/null || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
RD="${1:?usage: tools_paths.sh path/to/recdistill}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
TMP="$(mktemp -d /tmp/rd_test_tools_paths_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
export RD OPENBLAS_NUM_THREADS=1
run() { timeout 120 "$@"; }

D="$TMP/d \$x \"q\" é 中"
mkdir -p "$D/cwd"
# A teacher and a distilled student (3 ranks); -t teacher -d student keep seeds.sh to them.
cat >"$D/-c.yaml" <<'EOF'
run: {name: paths, seed: 5}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
    - {name: student, role: student, model: small, distill: true}
data:
  source: synthetic
  history_max: 8
  synthetic: {events: 3000, users: 60, items: 300}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}
ps:
  tables:
    - {name: t_user, dim: 8}
    - {name: t_item, dim: 8}
    - {name: s_user, dim: 4}
    - {name: s_item, dim: 4}
models:
  - name: big
    features: [{field: user, table: t_user}, {field: item, table: t_item}]
    seq: {kind: mean, length: 8}
    mlp: [16]
  - name: small
    features: [{field: user, table: s_user}, {field: item, table: s_item}]
    seq: {kind: mean, length: 8}
    mlp: [8]
    two_towers: true
train: {batch_size: 64, epochs: 1}
distill: {alpha: 0.5}
output: {metrics_format: csv, progress_every_s: 0}
EOF
cd "$D/cwd" || exit 1

# 1. seeds.sh: an OUTDIR with a backslash, and one starting with '-'.
for o in '../s \t é' '-s2 $y'; do
    run "$SRC/tools/seeds.sh" -k 1 -s 5 -t teacher -d student -- ../-c.yaml "$o" >"$TMP/out" 2>&1 ||
        bad "seeds.sh OUTDIR '$o': exit $?: $(tail -3 "$TMP/out")"
    [ -s "./$o/summary.md" ] && [ -s "./$o/summary.csv" ] && [ -s "./$o/seed-5/report.json" ] ||
        bad "seeds.sh OUTDIR '$o': no summary or run: $(ls -a "./$o" 2>&1)"
done

# 2. variant.sh and ablations.sh (-c: write and check the configs) with a CONFIG and an OUTDIR
# starting with '-' (CONFIG given from another folder too).
run "$SRC/tools/variant.sh" -c -- ../-c.yaml "-v é" train.epochs=2 >"$TMP/out" 2>&1 ||
    bad "variant.sh: exit $?: $(cat "$TMP/out")"
grep -q "epochs: 2" "./-v é/config.yaml" 2>/dev/null || bad "variant.sh: no ./-v é/config.yaml: $(cat "$TMP/out")"
cp ../-c.yaml ./-c.yaml
run "$SRC/tools/ablations.sh" -c -v "base alpha3" -- -c.yaml "-a 中" >"$TMP/out" 2>&1 ||
    bad "ablations.sh: exit $?: $(cat "$TMP/out")"
[ -s "./-a 中/alpha3.yaml" ] || bad "ablations.sh: no ./-a 中/alpha3.yaml: $(cat "$TMP/out")"

# 3. replay-sweep.sh on the seeds.sh run (RUN_DIR and OUTDIR starting with '-').
run "$SRC/tools/replay-sweep.sh" -s 5 -- ../-c.yaml '-s2 $y/seed-5' "-r \\n 中" noaux >"$TMP/out" 2>&1 ||
    bad "replay-sweep.sh: exit $?: $(cat "$TMP/out")"
grep -q "^noaux  *holdout AUC 0\.[0-9]" "$TMP/out" && [ -s "./-r \\n 中/noaux/report.json" ] ||
    bad "replay-sweep.sh: no replayed point: $(cat "$TMP/out")"
tl="$("$RD" config "./-r \\n 中/noaux.yaml" | python3 -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["distill"]["target_log"])')"
[ "$tl" = "$D/cwd/-s2 \$y/seed-5/targets" ] || bad "replay-sweep.sh: the point's target log is '$tl', not the run's"

# 4. slurm-local.sh: `env` for eval, and a --dir slurm.conf cannot hold (a stand-in `id` says
# "not root": nothing can start whatever the script does).
odd="$TMP/c\$HOME;(x)&é"
conf="$(unset SLURM_CONF; eval "$("$SRC/tools/slurm-local.sh" env --dir "$odd")" && echo "$SLURM_CONF")"
[ "$conf" = "$odd/etc/slurm.conf" ] || bad "slurm-local.sh env --dir '$odd': SLURM_CONF '$conf'"
mkdir -p "$TMP/bin" && printf '#!/bin/sh\necho 1000\n' >"$TMP/bin/id" && chmod +x "$TMP/bin/id"
for d in "$TMP/cl a" "$TMP/cl,a" "$TMP/cl%n"; do
    PATH="$TMP/bin:$PATH" "$SRC/tools/slurm-local.sh" up --dir "$d" >/dev/null 2>"$TMP/err"
    rc=$?
    [ $rc -eq 2 ] && grep -qF "slurm-local: --dir '$d': slurm.conf cannot hold" "$TMP/err" && [ ! -e "$d" ] ||
        bad "slurm-local.sh up --dir '$d': exit $rc: $(head -1 "$TMP/err")"
done

# 5. bench-ps-ab.sh with build folders and an OUT_DIR starting with '-', against a stand-in
# bench_ps (its JSON only) and mpiexec.mpich (runs the rest): "mkdir: invalid option" before.
mkdir -p "./-bld/bench" "$TMP/fake"
cat >"./-bld/bench/bench_ps" <<'EOF'
#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = --json ] && j=$2; shift; done
echo '{"rows": [{"ratio_memcpy": 0.5, "memcpy_gbps": 1, "ps_row_gbps": 0.5, "bytes_per_key": 8}]}' >"$j"
EOF
printf '#!/bin/sh\nshift 2\nexec "$@"\n' >"$TMP/fake/mpiexec.mpich"
chmod +x "./-bld/bench/bench_ps" "$TMP/fake/mpiexec.mpich"
PATH="$TMP/fake:$PATH" run "$SRC/tools/bench-ps-ab.sh" -bld -bld 1 "-ab é" >"$TMP/out" 2>&1 ||
    bad "bench-ps-ab.sh -bld -bld 1 '-ab é': exit $?: $(cat "$TMP/out")"
[ -s "./-ab é/old-1.json" ] && grep -q "^new: median ratio_memcpy 0.500" "$TMP/out" ||
    bad "bench-ps-ab.sh: $(cat "$TMP/out")"

# 6. valgrind-unit.sh with a BUILD_DIR starting with '-' (one test left in, a copy of `true`):
# valgrind read "-vg é/tests/test_args" as an option ("valgrind: no program specified").
if command -v valgrind >/dev/null; then
    mkdir -p "./-vg é/tests" && cp "$(type -P true)" "./-vg é/tests/test_args"
    skip="$(cd "$SRC/tests" && for t in test_*.c; do [ "$t" = test_args.c ] || printf '%s ' "${t%.c}"; done)"
    RD_VALGRIND_SKIP="$skip" run "$SRC/tools/valgrind-unit.sh" "-vg é" >"$TMP/out" 2>&1 ||
        bad "valgrind-unit.sh '-vg é': exit $?: $(cat "$TMP/out")"
    grep -q "^clean  test_args " "$TMP/out" || bad "valgrind-unit.sh '-vg é': $(cat "$TMP/out")"
fi

exit "$fail"
