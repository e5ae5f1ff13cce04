#!/usr/bin/env bash
# tools_args.sh — the argument checks of the sweep scripts, run against a stand-in recdistill and
# mpiexec.mpich that only record what they were asked to run (a few seconds in all):
#   - seeds.sh, variant.sh, ablations.sh and replay-sweep.sh read their numbers as decimal (bash
#     arithmetic took -s 010 for seed 8 and -s 08 for an error), refuse one past the uint64 seed
#     range (99999999999999999999 ran seed 7766279631452241919) or a sweep running past it, with
#     exit 2 and no OUTDIR, and run seeds up to 18446744073709551615;
#   - ablations.sh refuses iat_temporal / iat_user on a config without tokens: (it was a Python
#     KeyError), an empty -v (it printed an empty table, exit 0) and an unknown variant;
#   - replay-sweep.sh refuses a POINT that is no file name in OUTDIR or has a bad token before it
#     makes or removes anything (POINT ../x removed x beside OUTDIR).
#
#   bash tests/scripts/tools_args.sh build/recdistill
set -u
command -v python3 >/dev/null && python3 -c "import yaml" 2>/dev/null ||
    { echo "python3 with PyYAML not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
RDREAL="${1:-}"
[ -n "$RDREAL" ] && [ -x "$RDREAL" ] || { echo "usage: tools_args.sh path/to/recdistill: skip"; exit 77; }
RDREAL="$(realpath "$RDREAL")"
TMP="$(mktemp -d /tmp/rd_test_tools_args_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The stand-ins. mpiexec.mpich logs its -n and runs the rest; recdistill accepts every config
# and "trains" a run folder with the metrics seeds.sh summarises, logging its --seed.
mkdir -p "$TMP/bin"
cat >"$TMP/bin/mpiexec.mpich" <<'EOF'
#!/usr/bin/env bash
[ "$1" = -n ] && { echo "$2" >>"$RD_FAKE_LOG.ranks"; shift 2; }
exec "$@"
EOF
cat >"$TMP/fake-rd" <<'EOF'
#!/usr/bin/env bash
if [ "$1" = config ]; then # --layout: the world size the test sets (RD_FAKE_WORLD)
    [ "$2" = --layout ] && [ -n "${RD_FAKE_WORLD:-4}" ] && echo "world_size=${RD_FAKE_WORLD:-4}"
    [ "${RD_FAKE_WORLD-4}" = bad ] && { echo "bad.yaml:3:1: cluster.jobs: required" >&2; exit 1; }
    exit 0
fi
[ "$1" = train ] || exit 1
shift 2
while [ $# -gt 0 ]; do
    case $1 in --seed) seed=$2 ;; --out) out=$2 ;; esac
    shift 2
done
echo "$seed" >>"$RD_FAKE_LOG.seeds"
mkdir -p "$out"
for j in teacher student student_raw; do
    printf 'phase,window,auc,gauc,logloss\nholdout,-1,0.7,0.6,0.5\nholdout_warm,-1,0.7,0.6,0.5\n' \
        >"$out/$j.metrics.csv"
    echo "$j holdout 0.7000"
done
echo '{}' >"$out/report.json"
EOF
chmod +x "$TMP/bin/mpiexec.mpich" "$TMP/fake-rd"
export PATH="$TMP/bin:$PATH" RD_FAKE_LOG="$TMP/log" RD="$TMP/fake-rd"
CFG="$SRC/configs/demo.yaml" # no tokens: section, a distilled student
seeds_run() { { tr '\n' ' ' <"$TMP/log.seeds"; } 2>/dev/null; rm -f "$TMP/log.seeds" "$TMP/log.ranks"; }

# refuse WHAT TEXT CMD...: exit 2, TEXT on stderr, no traceback, no OUTDIR ($TMP/o) made.
refuse() {
    local what=$1 want=$2
    shift 2
    (cd "$SRC" && "$@" >"$TMP/out" 2>"$TMP/err")
    local rc=$?
    [ $rc -eq 2 ] || fail "$what: exit $rc, expected 2: $(cat "$TMP/err")"
    grep -qF -- "$want" "$TMP/err" || fail "$what: expected '$want': $(cat "$TMP/err")"
    ! grep -q Traceback "$TMP/err" || fail "$what: a Python traceback"
    [ ! -e "$TMP/o" ] || fail "$what: made its OUTDIR"
    [ -z "$(seeds_run)" ] || fail "$what: ran a seed"
}

# ---- seeds.sh: decimal, bounded numbers ----------------------------------------------------------
(cd "$SRC" && tools/seeds.sh -n 02 -s 010 -k 02 "$CFG" "$TMP/s1" >"$TMP/out" 2>&1) || fail "seeds.sh -s 010: $(cat "$TMP/out")"
[ "$(seeds_run)" = "10 11 " ] && [ -d "$TMP/s1/seed-10" ] || fail "seeds.sh -s 010 -k 02: ran $(ls "$TMP/s1")"
(cd "$SRC" && tools/seeds.sh -n 1 -s 08 -k 1 "$CFG" "$TMP/s2" >"$TMP/out" 2>&1) || fail "seeds.sh -s 08: $(cat "$TMP/out")"
[ "$(seeds_run)" = "8 " ] || fail "seeds.sh -s 08: $(cat "$TMP/out")"
# One seed has no spread: the summary prints its values with (n=1), never "± 0.0000" (which reads
# as a measured zero spread), and summary.csv leaves its std empty.
grep -q "± 0.0000" "$TMP/s2/summary.md" && fail "seeds.sh -k 1 prints a spread: $(cat "$TMP/s2/summary.md")"
grep -q "| holdout | teacher | 0.7000 (n=1) |" "$TMP/s2/summary.md" &&
    grep -q "| holdout | +0.0000 (n=1) | +0.0000 (n=1) |" "$TMP/s2/summary.md" ||
    fail "seeds.sh -k 1 summary: $(cat "$TMP/s2/summary.md")"
grep -q "^holdout,teacher,0.700000,,0.600000,,0.500000,,1$" "$TMP/s2/summary.csv" ||
    fail "seeds.sh -k 1 summary.csv: $(cat "$TMP/s2/summary.csv")"
(cd "$SRC" && tools/seeds.sh -n 1 -s 18446744073709551614 -k 2 "$CFG" "$TMP/s3" >"$TMP/out" 2>&1) ||
    fail "seeds.sh at the top of the seed range: $(cat "$TMP/out")"
[ "$(seeds_run)" = "18446744073709551614 18446744073709551615 " ] || fail "seeds.sh top seeds: $(ls "$TMP/s3")"
grep -q "^2 paired seeds" "$TMP/out" || fail "seeds.sh top seeds summary: $(cat "$TMP/out")"
refuse "seeds.sh -s 2^67" "-s '99999999999999999999': expected a whole number 0..18446744073709551615" \
    tools/seeds.sh -s 99999999999999999999 -k 1 "$CFG" "$TMP/o"
refuse "seeds.sh -s 2^64" "expected a whole number 0..18446744073709551615" \
    tools/seeds.sh -s 18446744073709551616 -k 1 "$CFG" "$TMP/o"
refuse "seeds.sh past the last seed" "the last seed would pass 18446744073709551615" \
    tools/seeds.sh -s 18446744073709551615 -k 2 "$CFG" "$TMP/o"
# Without -n, seeds.sh launches the config's own world size (it launched 4 ranks, and every seed of
# a config of another layout failed); a config whose layout cannot be read is a usage error.
(cd "$SRC" && RD_FAKE_WORLD=6 tools/seeds.sh -k 1 "$CFG" "$TMP/w6" >"$TMP/out" 2>&1) || fail "seeds.sh world 6: $(cat "$TMP/out")"
[ "$(cat "$TMP/log.ranks")" = 6 ] || fail "seeds.sh without -n launched $(cat "$TMP/log.ranks") ranks, not the layout's 6"
seeds_run >/dev/null
RD_FAKE_WORLD=bad refuse "seeds.sh, layout unreadable" "cannot read its world size (recdistill config --layout" \
    tools/seeds.sh -k 1 "$CFG" "$TMP/o"
# -h prints the whole usage text, not cut mid-sentence (the -n line that grew by one line cut it).
[ "$(cd "$SRC" && tools/seeds.sh -h | tail -1)" = "the config does not have are left out (and then eta too)." ] ||
    fail "seeds.sh -h ends: $(cd "$SRC" && tools/seeds.sh -h | tail -1)"
refuse "seeds.sh -k 100001" "-k '100001': expected a whole number" tools/seeds.sh -k 100001 "$CFG" "$TMP/o"
refuse "seeds.sh -k 00" "at least one seed" tools/seeds.sh -k 00 "$CFG" "$TMP/o"
refuse "seeds.sh -n 0" "-n '0': expected a whole number 1..4096" tools/seeds.sh -n 0 "$CFG" "$TMP/o"
refuse "seeds.sh -s 1e3" "-s '1e3'" tools/seeds.sh -s 1e3 "$CFG" "$TMP/o"
# The summary marks an eta whose paired gap is within its spread over the seeds (the runs exist,
# so nothing is run): holdout gaps +0.010, -0.005, +0.020 (mean 0.008 < std 0.013), stream gaps
# +0.010, +0.011, +0.011.
for s in 1 2 3; do
    mkdir -p "$TMP/sp/seed-$s" && echo '{}' >"$TMP/sp/seed-$s/report.json"
    set -- $(sed -n "${s}p" <<'EOF'
0.71 0.705 0.70 0.75 0.745 0.74
0.70 0.70 0.705 0.751 0.746 0.74
0.72 0.71 0.70 0.752 0.746 0.741
EOF
)
    for j in teacher:$1:$4 student:$2:$5 student_raw:$3:$6; do
        IFS=: read -r name h st <<<"$j"
        printf 'phase,window,auc,gauc,logloss\nstream,0,%s,0.6,0.5\nholdout,-1,%s,0.6,0.5\n' \
            "$st" "$h" >"$TMP/sp/seed-$s/$name.metrics.csv"
    done
done
(cd "$SRC" && tools/seeds.sh -k 3 "$CFG" "$TMP/sp" >"$TMP/out" 2>&1) || fail "seeds.sh summary: $(cat "$TMP/out")"
[ -z "$(seeds_run)" ] || fail "seeds.sh ran seeds whose runs exist"
grep -q "^| holdout | +0.0083 ± 0.0126 | .* (gap within its seed spread: not meaningful) |$" "$TMP/out" ||
    fail "holdout eta not marked: $(cat "$TMP/out")"
grep -q "^| stream | +0.0107 ± 0.0006 | +0.0053 ± 0.0006 | 0.500 |$" "$TMP/out" ||
    fail "stream eta: $(cat "$TMP/out")"

# A value over fewer seeds than were run (undefined on the others: a holdout with one class)
# says so; it read as a mean over all of them. Seed 2's holdout has no AUC; the ablations table
# over a variant whose holdout has none on any seed says "undefined" (it printed "0.0000 (n=1)").
for s in 1 2 3; do
    for d in "$TMP/sn" "$TMP/an/base"; do
        mkdir -p "$d/seed-$s" && echo '{}' >"$d/seed-$s/report.json"
        h=0.7$s
        [ "$d" = "$TMP/an/base" ] || [ $s = 2 ] && h=nan
        for j in teacher student student_raw; do
            printf 'phase,window,auc,gauc,logloss\nholdout,-1,%s,0.6,0.5\nholdout_warm,-1,0.7%s,0.6,0.5\n' \
                "$h" "$s" >"$d/seed-$s/$j.metrics.csv"
        done
    done
done
(cd "$SRC" && tools/seeds.sh -k 3 "$CFG" "$TMP/sn" >"$TMP/out" 2>&1) || fail "seeds.sh, one seed undefined: $(cat "$TMP/out")"
{ grep -qF "| holdout | teacher | 0.7200 ± 0.0141 (2 of 3 seeds) |" "$TMP/out" &&
    grep -qF "| warm | teacher | 0.7200 ± 0.0100 |" "$TMP/out" &&
    grep -qF "| holdout | +0.0000 ± 0.0000 (2 of 3 seeds) |" "$TMP/out"; } ||
    fail "seeds.sh, one seed undefined: $(cat "$TMP/out")"
(cd "$SRC" && tools/ablations.sh -k 3 -v base "$CFG" "$TMP/an" >"$TMP/out" 2>&1) || fail "ablations.sh: $(cat "$TMP/out")"
grep -qF "| base | undefined | 0.7200 ± 0.0100 | undefined | undefined |" "$TMP/an/ablations.md" ||
    fail "ablations.sh, holdout undefined: $(cat "$TMP/an/ablations.md")"
[ -z "$(seeds_run)" ] || fail "seeds.sh or ablations.sh ran seeds whose runs exist"

# ---- variant.sh --------------------------------------------------------------------------------
(cd "$SRC" && tools/variant.sh -s 09 -k 01 "$CFG" "$TMP/v1" >"$TMP/out" 2>&1) || fail "variant.sh -s 09: $(cat "$TMP/out")"
[ "$(seeds_run)" = "9 " ] && grep -q "seeds 9..9" "$TMP/out" || fail "variant.sh -s 09: $(cat "$TMP/out")"
refuse "variant.sh past the last seed" "the last seed would pass" \
    tools/variant.sh -s 18446744073709551615 -k 2 "$CFG" "$TMP/o"
refuse "variant.sh -k 08x" "-k '08x'" tools/variant.sh -k 08x "$CFG" "$TMP/o"

# ---- ablations.sh: numbers, then the variants (checked with the real recdistill config) ----------
(cd "$SRC" && tools/ablations.sh -n 1 -s 08 -k 1 -v base "$CFG" "$TMP/a1" >"$TMP/out" 2>&1) ||
    fail "ablations.sh -s 08: $(cat "$TMP/out")"
[ "$(seeds_run)" = "8 " ] && [ -d "$TMP/a1/base/seed-8" ] || fail "ablations.sh -s 08: $(cat "$TMP/out")"
# Its table over one seed prints no spread either (it read seeds.sh's std as "± 0.0000").
grep -q "| base | 0.7000 (n=1) | 0.7000 (n=1) | +0.0000 (n=1) | +0.0000 (n=1) |" "$TMP/a1/ablations.md" ||
    fail "ablations.sh -k 1 table: $(cat "$TMP/a1/ablations.md")"
refuse "ablations.sh -s 0" "-s '0': expected a whole number 1.." tools/ablations.sh -s 0 "$CFG" "$TMP/o"
refuse "ablations.sh -d 2^67" "-d '99999999999999999999'" tools/ablations.sh -d 99999999999999999999 "$CFG" "$TMP/o"
refuse "ablations.sh -k x" "-k 'x'" tools/ablations.sh -k x "$CFG" "$TMP/o"
for v in iat_user iat_temporal "base iat_user"; do
    refuse "ablations.sh -v '$v' without tokens:" "variant ${v#base }: $CFG has no tokens: section" \
        env RD="$RDREAL" tools/ablations.sh -k 1 -v "$v" "$CFG" "$TMP/o"
done
refuse "ablations.sh -v ''" "-v: no variant given" env RD="$RDREAL" tools/ablations.sh -k 1 -v "" "$CFG" "$TMP/o"
refuse "ablations.sh -v ' '" "-v: no variant given" env RD="$RDREAL" tools/ablations.sh -k 1 -v " " "$CFG" "$TMP/o"
refuse "ablations.sh -v bogus" "-v: unknown variant 'bogus'" \
    env RD="$RDREAL" tools/ablations.sh -k 1 -v "base bogus" "$CFG" "$TMP/o"

# ---- replay-sweep.sh: points checked before anything is removed ----------------------------------
mkdir -p "$TMP/run/targets" "$TMP/p"
echo precious >"$TMP/precious.txt"
echo precious >"$TMP/p/keep"
for pt in ../precious.txt .. . ../p "1:1 .." "/tmp" "x/y"; do
    # shellcheck disable=SC2086 # "1:1 .." is two points
    refuse "replay-sweep.sh point '$pt'" "not a name for a file in OUTDIR" \
        env RD="$RDREAL" tools/replay-sweep.sh "$CFG" "$TMP/run" "$TMP/o" $pt
    [ -f "$TMP/precious.txt" ] && [ -f "$TMP/p/keep" ] || fail "replay-sweep.sh point '$pt' removed a file outside OUTDIR"
done
refuse "replay-sweep.sh bad token" "point 'a=x': unknown or bad token 'a=x'" \
    env RD="$RDREAL" tools/replay-sweep.sh "$CFG" "$TMP/run" "$TMP/o" 1:1 a=x
refuse "replay-sweep.sh glob point" "point '*': unknown or bad token '*'" \
    env RD="$RDREAL" tools/replay-sweep.sh "$CFG" "$TMP/run" "$TMP/o" '*'
refuse "replay-sweep.sh -s 08x" "-s '08x'" tools/replay-sweep.sh -s 08x "$CFG" "$TMP/run" "$TMP/o"
refuse "replay-sweep.sh -f past the last seed" "the last seed would pass" \
    tools/replay-sweep.sh -k 2 -f 18446744073709551615 "$CFG" "$TMP/run" "$TMP/o"
# A run folder without report.json is a failed or unfinished run, its target log and metrics
# partial: refused before OUTDIR is made (a -k sweep replayed such a seed, then left it out of the
# slices its teacher had no AUC on while the summary's header still counted it).
refuse "replay-sweep.sh, a run without report.json" "$TMP/run: no report.json (a failed or unfinished run)" \
    tools/replay-sweep.sh "$CFG" "$TMP/run" "$TMP/o" 1:1
echo '{}' >"$TMP/run/report.json"
(cd "$SRC" && tools/replay-sweep.sh -s 08 "$CFG" "$TMP/run" "$TMP/r1" 1:1 >"$TMP/out" 2>&1) ||
    fail "replay-sweep.sh -s 08: $(cat "$TMP/out")"
[ "$(seeds_run)" = "8 " ] && grep -q "^1:1 .*holdout AUC 0.7000" "$TMP/out" || fail "replay-sweep.sh -s 08: $(cat "$TMP/out")"
# -k: seeds 1 and 2 finished (seed 2's teacher has no warm AUC), seed 3 failed (a log, no report).
for s in 1 2 3; do
    mkdir -p "$TMP/ms/seed-$s/targets"
    [ $s = 3 ] || echo '{}' >"$TMP/ms/seed-$s/report.json"
    w=0.74
    [ $s = 2 ] && w=nan
    printf 'phase,window,auc,gauc,logloss\nholdout,-1,0.75,0.6,0.5\nholdout_warm,-1,%s,0.6,0.5\n' "$w" \
        >"$TMP/ms/seed-$s/teacher.metrics.csv"
done
refuse "replay-sweep.sh -k 3, seed 3 failed" "$TMP/ms/seed-3: no report.json (a failed or unfinished run)" \
    tools/replay-sweep.sh -k 3 "$CFG" "$TMP/ms" "$TMP/o" 1:1
# One seed has no spread: "(n=1)", not "± 0.0000"; a slice over fewer seeds than the header's says so.
(cd "$SRC" && tools/replay-sweep.sh -k 1 "$CFG" "$TMP/ms" "$TMP/k1" 1:1 >"$TMP/out" 2>&1) ||
    fail "replay-sweep.sh -k 1: $(cat "$TMP/out")"
seeds_run >/dev/null
grep -q "± 0.0000" "$TMP/k1/summary.md" && fail "replay-sweep.sh -k 1 prints a spread: $(cat "$TMP/k1/summary.md")"
grep -qF "| 1:1 | holdout | 0.7500 (n=1) | 0.7000 (n=1) | 0.7000 (n=1) | +0.0500 (n=1) | +0.0000 (n=1) | 0.00 |" \
    "$TMP/k1/summary.md" || fail "replay-sweep.sh -k 1 summary: $(cat "$TMP/k1/summary.md")"
(cd "$SRC" && tools/replay-sweep.sh -k 2 "$CFG" "$TMP/ms" "$TMP/k2" 1:1 >"$TMP/out" 2>&1) ||
    fail "replay-sweep.sh -k 2: $(cat "$TMP/out")"
seeds_run >/dev/null
{ grep -qF "| 1:1 | holdout | 0.7500 ± 0.0000 |" "$TMP/k2/summary.md" &&
    grep -qF "|  | warm (1 of 2 seeds) | 0.7400 (n=1) |" "$TMP/k2/summary.md"; } ||
    fail "replay-sweep.sh -k 2 summary: $(cat "$TMP/k2/summary.md")"
# replay-sweep.sh -h prints its whole text (it stopped one line short: the PyYAML line).
[ "$(cd "$SRC" && tools/replay-sweep.sh -h | tail -1)" = "Needs python3 with PyYAML (apt-get install python3-yaml)." ] ||
    fail "replay-sweep.sh -h ends: $(cd "$SRC" && tools/replay-sweep.sh -h | tail -1)"
echo "tools_args: ok"
