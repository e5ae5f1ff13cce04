#!/usr/bin/env bash
# config_cli.sh — `recdistill config`: exit codes (0 valid, 1 invalid, 2 usage), the message on
# stderr, and that the printed effective configuration is itself a valid configuration that
# prints identically (a fixed point). Usage: config_cli.sh PATH/TO/recdistill
set -u
bin="$1"
src="${RD_SOURCE_DIR:?RD_SOURCE_DIR not set}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # expected-exit description command...
    local want="$1" what="$2"
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"; cat "$tmp/err"; fail=1
    fi
}

for f in "$src"/configs/*.yaml; do
    check 0 "valid $f" "$bin" config "$f"
    cp "$tmp/out" "$tmp/eff.yaml"
    check 0 "printed $f parses" "$bin" config "$tmp/eff.yaml"
    # Identical apart from the first comment line (it names the source file).
    if ! diff <(tail -n +2 "$tmp/eff.yaml") <(tail -n +2 "$tmp/out") >/dev/null; then
        echo "FAIL: printing the printed $f changes it"; fail=1
    fi
done

printf 'run:\n  sed: 1\n' >"$tmp/bad.yaml"
check 1 "unknown key" "$bin" config "$tmp/bad.yaml"
grep -q "bad.yaml:2:3: run.sed: unknown key (did you mean 'seed'?)" "$tmp/err" ||
    { echo "FAIL: message: $(cat "$tmp/err")"; fail=1; }
[ -s "$tmp/out" ] && { echo "FAIL: output on stdout for an invalid config"; fail=1; }
check 1 "missing file" "$bin" config "$tmp/none.yaml"
grep -q "none.yaml: cannot open" "$tmp/err" || { echo "FAIL: missing-file message"; fail=1; }
check 2 "no argument" "$bin" config
check 2 "two arguments" "$bin" config a b
check 2 "unknown option" "$bin" config --bogus
check 0 "--help" "$bin" config --help
grep -q "usage: recdistill config" "$tmp/out" || { echo "FAIL: --help text"; fail=1; }

[ "$fail" = 0 ] && echo "config_cli: all checks passed"
exit "$fail"
