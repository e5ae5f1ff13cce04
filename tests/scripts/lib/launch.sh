# lib/launch.sh — launch helpers shared by the scripts that start whole launches and read what
# rank 0 printed (mpmd_args.sh, runtime_id.sh). Sourced, not run: tests/CMakeLists.txt makes a
# test of each tests/scripts/*.sh, not of lib/. The caller defines $TMP (a scratch folder),
# $MPIEXEC and bad() (records a failure); LAUNCH_TIMEOUT (seconds, default 60) bounds each launch.

# launch EXPECTED-RC NAME mpiexec-args...: run under a timeout, output in $TMP/NAME.err.
launch() {
    local want="$1" name="$2" limit="${LAUNCH_TIMEOUT:-60}"
    shift 2
    timeout "$limit" "$MPIEXEC" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    local got=$?
    if [ "$got" = 124 ]; then
        bad "$name: the launch hung (killed after $limit s): $(head -3 "$TMP/$name.err")"
    elif [ "$got" != "$want" ]; then
        bad "$name: exit $got, expected $want: $(head -5 "$TMP/$name.err")"
    fi
}
# has NAME PATTERN [COUNT]: the launch's stderr has PATTERN (exactly COUNT times when given).
has() {
    local n
    n=$(grep -cF -- "$2" "$TMP/$1.err")
    if [ "$n" = 0 ]; then
        bad "$1: stderr lacks '$2': $(head -8 "$TMP/$1.err")"
    elif [ -n "${3:-}" ] && [ "$n" != "$3" ]; then
        bad "$1: '$2' printed $n times, expected $3"
    fi
}
