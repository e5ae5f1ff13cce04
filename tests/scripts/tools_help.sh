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
echo "tools_help: ok ($n usages)"
