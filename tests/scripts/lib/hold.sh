# lib/hold.sh — hold a launch before it can end, to signal it at a known point (ckpt_signal.sh,
# slurm_limit.sh). Sourced, not run (tests/CMakeLists.txt makes tests of tests/scripts/*.sh only).
# The caller defines fail() and $RD (the recdistill binary, absolute). The PS rank (world rank 0)
# is held with SIGSTOP: no training step completes without it, so a signal sent meanwhile reaches
# the ranks before their training is over, however loaded the machine.

HELD=""    # the PS rank while it is held
PS_PID=""  # the PS rank of the last hold_ps

# rank_procs PATTERN: the processes running $RD whose command line matches PATTERN (pgrep -f):
# the ranks of a launch and their sentinels.
rank_procs() {
    local p
    for p in $(pgrep -f -- "$1"); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$RD" ] && echo "$p"
    done
}

# sig_bit FIELD PID SIGNAL: 0 when the /proc status mask FIELD (SigCgt, SigPnd, ShdPnd) of PID
# holds signal number SIGNAL.
sig_bit() {
    local m
    m="$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$2/status" 2>/dev/null)"
    [ -n "$m" ] && [ $((0x$m & (1 << ($3 - 1)))) -ne 0 ]
}

# hold_ps PATTERN RANKS RUNNING_PID: once the PS rank of the launch has a SIGUSR1 handler, stop
# it (HELD); then wait until RANKS processes have one (every rank: the sentinels ignore it).
# RUNNING_PID is the launch's process: its end before that fails the test.
hold_ps() {
    local i p n=0
    for ((i = 0; i < 3000; i++)); do
        for p in $(rank_procs "$1"); do
            # World rank 0: PMI_RANK under mpiexec, SLURM_PROCID under srun.
            grep -qzE '^(PMI_RANK|SLURM_PROCID)=0$' "/proc/$p/environ" 2>/dev/null &&
                sig_bit SigCgt "$p" 10 || continue
            kill -STOP "$p" && HELD=$p PS_PID=$p
            break 2
        done
        kill -0 "$3" 2>/dev/null || fail "the launch ($1) ended before its PS rank started"
        sleep 0.01
    done
    [ -n "$HELD" ] || fail "no PS rank with a SIGUSR1 handler after 30 s ($1)"
    for ((i = 0; i < 3000; i++)); do
        n=0
        for p in $(rank_procs "$1"); do sig_bit SigCgt "$p" 10 && n=$((n + 1)); done
        [ "$n" -ge "$2" ] && return 0
        sleep 0.01
    done
    fail "$n of $2 ranks have a SIGUSR1 handler after 30 s ($1)"
}

# until_pending: wait until SIGUSR1 is pending on the held PS rank (it came through mpiexec or a
# batch script).
until_pending() {
    local i
    for ((i = 0; i < 3000; i++)); do
        sig_bit SigPnd "$HELD" 10 || sig_bit ShdPnd "$HELD" 10 && return 0
        sleep 0.01
    done
    fail "SIGUSR1 did not reach the PS rank in 30 s"
}

release_ps() {
    kill -CONT "$HELD"
    HELD=""
}

# hold_again: the same PS rank held again (a run that must not end before what follows).
hold_again() {
    kill -STOP "$PS_PID" && HELD=$PS_PID
}

# until_ckpts ROOT JOBS...: wait until every job has a complete checkpoint (its MANIFEST) under
# ROOT/<job>/.
until_ckpts() {
    local root="$1" i j n
    shift
    for ((i = 0; i < 3000; i++)); do
        n=0
        for j in "$@"; do compgen -G "$root/$j/step-*/MANIFEST" >/dev/null && n=$((n + 1)); done
        [ "$n" -eq $# ] && return 0
        sleep 0.01
    done
    fail "no checkpoint of every job ($*) under $root after 30 s"
}
