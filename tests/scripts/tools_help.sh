#!/usr/bin/env bash
# tools_help.sh — every tools/*.sh prints its usage on stdout and exits 0 for both -h and --help
# (no stray code line in the text; nothing else runs: install-deps.sh installs nothing), and
# exits 2 for an unknown option. tools/install-deps.sh installs, without options, python3 and
# PyYAML, which test scripts and tools/variant.sh, ablations.sh and replay-sweep.sh need; those
# three refuse a missing or malformed config with exit 2 and leave no OUTDIR.
#
#   bash tests/scripts/tools_help.sh build/recdistill
set -u
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d /tmp/rd_test_tools_help_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

n=0
for t in "$SRC"/tools/*.sh; do
    name=$(basename "$t")
    for o in -h --help; do
        (cd "$TMP" && timeout 20 "$t" "$o" >"$TMP/out" 2>"$TMP/err" </dev/null)
        rc=$?
        [ $rc -eq 0 ] || fail "$name $o: exit $rc: $(cat "$TMP/err")"
        [ -s "$TMP/out" ] || fail "$name $o: no usage on stdout"
        [ ! -s "$TMP/err" ] || fail "$name $o: stderr: $(cat "$TMP/err")"
        ! grep -Eq '^(set -|#!)' "$TMP/out" || fail "$name $o: a code line in the usage: $(cat "$TMP/out")"
        grep -qi "usage\|${name%.sh}" "$TMP/out" || fail "$name $o: no usage line: $(cat "$TMP/out")"
        n=$((n + 1))
    done
done
# Unknown options are usage errors (exit 2), the usage on stderr.
for t in seeds variant ablations replay-sweep; do
    (cd "$TMP" && "$SRC/tools/$t.sh" -Z >"$TMP/out" 2>"$TMP/err")
    [ $? -eq 2 ] || fail "$t.sh -Z: expected exit 2"
    [ -s "$TMP/err" ] && [ ! -s "$TMP/out" ] || fail "$t.sh -Z: the usage belongs on stderr"
done
"$SRC/tools/install-deps.sh" --bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "install-deps.sh --bogus: expected exit 2"
# The default package list: python3 and PyYAML without --slurm or --ci.
pk=$(sed -n '/^pkgs=(/,/)/p' "$SRC/tools/install-deps.sh")
for p in python3 python3-yaml; do
    grep -Eq "(^|[( ])$p([ )]|$)" <<<"$pk" || fail "install-deps.sh: $p is not in the default list"
done
# A missing or malformed config: exit 2 with recdistill config's message (file, line), not a
# Python traceback, and no OUTDIR left behind.
RD="${1:-}"
if [ -n "$RD" ] && [ -x "$RD" ]; then
    RD="$(realpath "$RD")"
    printf 'run: [unclosed\n' >"$TMP/bad.yaml"
    for cmd in "variant.sh -k 1 CFG OUT" "ablations.sh -k 1 -v iat_none CFG OUT" \
        "replay-sweep.sh CFG $TMP OUT 1:1"; do
        for cfg in "$TMP/nonexistent.yaml" "$TMP/bad.yaml"; do
            c=${cmd//CFG/$cfg}
            # shellcheck disable=SC2086
            (cd "$TMP" && RD="$RD" "$SRC"/tools/${c//OUT/$TMP/o} >"$TMP/out" 2>"$TMP/err")
            rc=$?
            [ $rc -eq 2 ] || fail "tools/$c: exit $rc, expected 2: $(cat "$TMP/err")"
            grep -q "recdistill config: $cfg\\|$cfg: cannot read the config" "$TMP/err" ||
                fail "tools/$c: $(cat "$TMP/err")"
            ! grep -q Traceback "$TMP/err" || fail "tools/$c: a Python traceback"
            [ ! -e "$TMP/o" ] || fail "tools/$c: left its OUTDIR"
        done
    done
fi
# A bad value is a usage error too (it was exit 1, or exit 0 with an empty summary).
"$SRC/tools/slurm-local.sh" up --nodes abc >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] && grep -q -- "--nodes must be 1..64" "$TMP/err" || fail "slurm-local.sh --nodes abc: $(cat "$TMP/err")"
(cd "$TMP" && "$SRC/tools/seeds.sh" -k 0 x.yaml o >/dev/null 2>"$TMP/err")
[ $? -eq 2 ] && grep -q "at least one seed" "$TMP/err" && [ ! -e "$TMP/o" ] ||
    fail "seeds.sh -k 0: $(cat "$TMP/err")"
# bench-ps-ab.sh: a bad RUNS_EACH or build folder is a usage error, before any folder is made.
(cd "$TMP" && "$SRC/tools/bench-ps-ab.sh" a b 0 o >/dev/null 2>"$TMP/err")
[ $? -eq 2 ] && grep -q "RUNS_EACH '0': expected a positive whole number" "$TMP/err" && [ ! -e "$TMP/o" ] ||
    fail "bench-ps-ab.sh RUNS_EACH 0: $(cat "$TMP/err")"
(cd "$TMP" && "$SRC/tools/bench-ps-ab.sh" a b 2 o >/dev/null 2>"$TMP/err")
[ $? -eq 2 ] && grep -q "no a/bench/bench_ps" "$TMP/err" && [ ! -e "$TMP/o" ] ||
    fail "bench-ps-ab.sh without builds: $(cat "$TMP/err")"
# seeds.sh's summary from finished runs (a seed with report.json is not run again): a stream
# window without an AUC (one class) is skipped as report.json skips it, not averaged as NaN; a
# run written with output.metrics_format: jsonl is read too; no metrics at all is an error.
S="$TMP/sw"
mkdir -p "$S/seed-1" "$S/seed-2" && : >"$TMP/x.yaml"
for s in 1 2; do
    echo '{}' >"$S/seed-$s/report.json"
    for j in teacher:0.80 student:0.74 student_raw:0.70; do
        a=${j#*:}
        a=$(awk -v a="$a" -v s=$s 'BEGIN { printf "%.4f", a + 0.01 * s }')
        rows="stream,0,$a,0.6,0.5,1,10,1
stream,1,nan,nan,0.4,nan,10,1
stream,2,$a,0.6,0.6,1,10,1
holdout,-1,$a,0.6,0.5,1,10,1
holdout_warm,-1,nan,nan,0.5,nan,10,1"
        if [ $s = 1 ]; then
            { echo "phase,window,auc,gauc,logloss,calibration,samples,samples_per_s"; echo "$rows"; } \
                >"$S/seed-$s/${j%%:*}.metrics.csv"
        else
            echo "$rows" | awk -F, '{ printf "{\"phase\": \"%s\", \"window\": %s, \"auc\": %s, \"gauc\": %s, \"logloss\": %s}\n", $1, $2, ($3 == "nan" ? "null" : $3), ($4 == "nan" ? "null" : $4), $5 }' \
                >"$S/seed-$s/${j%%:*}.metrics.jsonl"
        fi
    done
done
(cd "$TMP" && RD=/bin/true "$SRC/tools/seeds.sh" -k 2 x.yaml "$S" >"$TMP/out" 2>"$TMP/err") ||
    fail "seeds.sh over finished runs: $(cat "$TMP/err")"
grep -q "^2 paired seeds" "$TMP/out" || fail "seeds.sh: $(cat "$TMP/out")"
grep -q "| stream | teacher | 0.8150 ± 0.0071 | 0.6000 ± 0.0000 | 0.5000 ± 0.0000 |" "$TMP/out" ||
    fail "seeds.sh stream row: $(cat "$TMP/out")"
grep -q "| stream | +0.1000 ± 0.0000 | +0.0400 ± 0.0000 | 0.400 |" "$TMP/out" ||
    fail "seeds.sh stream eta: $(cat "$TMP/out")"
grep -q "| warm | undefined | undefined | undefined (no AUC on this slice) |" "$TMP/out" ||
    fail "seeds.sh empty warm slice: $(cat "$TMP/out")"
! grep -qi nan "$TMP/out" || fail "seeds.sh printed nan: $(cat "$TMP/out")"
mkdir -p "$TMP/sn/seed-1" && echo '{}' >"$TMP/sn/seed-1/report.json"
(cd "$TMP" && RD=/bin/true "$SRC/tools/seeds.sh" -k 1 x.yaml "$TMP/sn" >"$TMP/out" 2>"$TMP/err")
[ $? -eq 1 ] && grep -q "no metrics in" "$TMP/err" || fail "seeds.sh without metrics: $(cat "$TMP/err")"
# sit-probe-tokens.py: a wrong number of folders or a negative --side is a usage error (it was
# exit 1, as a failed probe), the usage on stderr, before any store is read.
for a in "$TMP" "--side 0 $TMP $TMP" "--side -1 $TMP"; do
    # shellcheck disable=SC2086
    python3 "$SRC/tools/sit-probe-tokens.py" --rd /bin/false $a >"$TMP/out" 2>"$TMP/err"
    rc=$?
    [ $rc -eq 2 ] && grep -q "usage: sit-probe-tokens.py" "$TMP/err" &&
        grep -q "give PROBE RUN\|--side -1: K is a side value's index" "$TMP/err" ||
        fail "sit-probe-tokens.py $a: exit $rc: $(cat "$TMP/err")"
done
echo "tools_help: ok ($n usages)"
