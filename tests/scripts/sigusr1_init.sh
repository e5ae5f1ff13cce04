#!/usr/bin/env bash
# sigusr1_init.sh — a SIGUSR1 taken inside MPI_Init still asks for a checkpoint. MPICH installs a
# SIGUSR1 handler of its own in MPI_Init (signal(), keeping the one it replaced from the return
# value, and calling it). A signal taken at the return of that system call, before MPICH had stored
# the replaced handler, ran MPICH's with nothing to call: the request was lost and the job trained
# to its end without the checkpoint. tests/scripts/slurm_limit.sh failed so once in CI: its ranks
# are stopped with SIGSTOP at any instant of MPI_Init, and a pending SIGUSR1 is taken when they go
# on. `recdistill train` now runs MPI_Init with SIGUSR1 blocked.
# strace delivers the signal at exactly that instant: the teacher's rank (world rank 1) runs under
# `strace -e inject=rt_sigaction:signal=SIGUSR1:when=N`, N being the rt_sigaction call by which the
# MPI library replaced recdistill's handler, found by a first run under strace without injection.
#  1. the injected signal is taken once, after that call (the trace shows it);
#  2. the teacher writes its "checkpoint on SIGUSR1" after its first step, the run ends with 0.
# Skipped without strace, where ptrace is not allowed, or with an MPI library that installs no
# SIGUSR1 handler of its own.
#
#   bash tests/scripts/sigusr1_init.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: sigusr1_init.sh path/to/recdistill}")"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
STRACE="$(command -v strace || true)"
[ -n "$STRACE" ] || { echo "strace not found (tools/install-deps.sh installs it): skip"; exit 77; }
"$STRACE" -o /dev/null true 2>/dev/null || { echo "strace cannot trace here (ptrace not allowed): skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_sigusr1_init_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1

# World rank 1 (the teacher: rank 0 is the PS) under strace; STRACE_ARGS says how.
cat >"$TMP/traced" <<EOF
#!/bin/sh
if [ "\${PMI_RANK:-}" = 1 ]; then
    # shellcheck disable=SC2086
    exec "$STRACE" -o "$TMP/trace.txt" -e trace=rt_sigaction \$STRACE_ARGS "$RD" "\$@"
fi
exec "$RD" "\$@"
EOF
chmod +x "$TMP/traced"
run() { # OUT LOG: a run of slurm-tiny into OUT
    "$MPIEXEC" -n 4 "$TMP/traced" train "$SRC/tests/data/slurm-tiny.yaml" --out "$1" >"$2" 2>&1
}

# The probe: which rt_sigaction call of the teacher's rank replaced recdistill's SIGUSR1 handler.
# The first SIGUSR1 handler set is recdistill's (checkpoint_signal_install); the next set whose
# old action is that handler is the library's.
STRACE_ARGS="" run "$TMP/probe" "$TMP/probe.log" || fail "probe run: $(tail -n 20 "$TMP/probe.log")"
n="$(awk '
    /^rt_sigaction\(/ { k++ }
    /^rt_sigaction\(SIGUSR1, \{sa_handler=0x/ {
        split($0, a, "sa_handler=")
        h = a[2]; sub(/,.*/, "", h)
        if (ours == "") { ours = h; next }
        if (h != ours && index(a[3], ours) == 1) { print k; exit }
    }' "$TMP/trace.txt")"
if [ -z "$n" ]; then
    echo "the MPI library installs no SIGUSR1 handler over recdistill's in MPI_Init: skip"
    exit 77
fi

# 1, 2: the signal at the return of that call.
STRACE_ARGS="-e inject=rt_sigaction:signal=SIGUSR1:when=$n" run "$TMP/sig" "$TMP/sig.log" ||
    fail "the signalled run exited $?: $(tail -n 20 "$TMP/sig.log")"
# Taken once, after call n (at its return unless blocked then).
[ "$(awk -v n="$n" '/^rt_sigaction\(/ { k++ } /^--- SIGUSR1 / { print (k >= n) ? "after" : "before" }' \
    "$TMP/trace.txt")" = after ] ||
    fail "the signal was not taken once after call $n: $(grep -n -e "^--- SIGUSR1" -e "^rt_sigaction(SIGUSR1" "$TMP/trace.txt")"
grep -q "^\[teacher\] checkpoint on SIGUSR1: .*/ckpt/teacher/step-000000000001$" "$TMP/sig.log" ||
    fail "the teacher lost the SIGUSR1 taken in MPI_Init: $(grep checkpoint "$TMP/sig.log")"
for j in student student_raw; do
    grep -q "^\[$j\] checkpoint on SIGUSR1" "$TMP/sig.log" && fail "$j checkpointed on a signal sent to the teacher only"
done
echo "sigusr1_init.sh: ok (signal injected after rt_sigaction call $n)"
