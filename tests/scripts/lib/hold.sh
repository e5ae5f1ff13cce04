# lib/hold.sh — hold a launch at a known point, to signal it there (ckpt_signal.sh,
# slurm_limit.sh, slurm.sh). Sourced, not run (tests/CMakeLists.txt makes tests of
# tests/scripts/*.sh only). The caller defines fail() and $RD (the recdistill binary, absolute).
#
# A poll of /proc cannot catch a tiny run between its start and its end on a loaded machine, so
# the launch runs its ranks through a wrapper (hold_wrapper): world rank 0 (the PS) starts at
# once, the other ranks stop themselves before they exec recdistill. Rank 0 then waits in
# MPI_Init for them, with its SIGUSR1 handler installed: hold_ps stops it there, lets the others
# go on, and once they have their handlers (they wait in MPI_Init for the stopped rank 0), stops
# them too. Nothing has trained yet and nothing can; a signal sent then is pending on every rank
# when release_ps lets them go on.

HELD=""      # the held ranks
PS_PID=""    # world rank 0 of the last hold_ps
HOLD_GATE="" # the gate of the last hold_gate

# hold_wrapper DIR: write DIR/rd-held, a stand-in for $RD that runs it; while DIR/rd-held.gate
# exists (hold_gate; hold_ps removes it), the ranks of a `train` other than world rank 0
# (PMI_RANK under mpiexec, SLURM_PROCID under srun) stop themselves first. Prints its path.
hold_wrapper() {
    cat >"$1/rd-held" <<EOF
#!/bin/sh
if [ "\${1:-}" = train ] && [ -e "$1/rd-held.gate" ]; then
    r="\${PMI_RANK:-\${SLURM_PROCID:-}}"
    [ -z "\$r" ] || [ "\$r" = 0 ] || kill -STOP \$\$
fi
exec "$RD" "\$@"
EOF
    chmod +x "$1/rd-held"
    echo "$1/rd-held"
}

# hold_gate DIR: the next launch through DIR/rd-held is held (hold_ps removes the gate).
hold_gate() {
    HOLD_GATE="$1/rd-held.gate"
    : >"$HOLD_GATE"
}

# rank_procs PATTERN: the ranks of a launch: the processes running $RD whose command line matches
# PATTERN (pgrep -f), without their sentinels (children of a rank).
rank_procs() {
    local p pp rd
    rd="$(readlink -f "$RD")"
    for p in $(pgrep -f -- "$1"); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$rd" ] || continue
        pp="$(awk '$1 == "PPid:" {print $2}' "/proc/$p/status" 2>/dev/null)"
        [ -n "$pp" ] && [ "$(readlink "/proc/$pp/exe" 2>/dev/null)" != "$rd" ] && echo "$p"
    done
}

# sig_bit FIELD PID SIGNAL: 0 when the /proc status mask FIELD (SigCgt, SigPnd, ShdPnd) of PID
# holds signal number SIGNAL.
sig_bit() {
    local m
    m="$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$2/status" 2>/dev/null)"
    [ -n "$m" ] && [ $((0x$m & (1 << ($3 - 1)))) -ne 0 ]
}

# hold_ps PATTERN RANKS RUNNING_PID: every rank of a launch started through hold_wrapper after
# hold_gate held before it trained (above); HELD lists them. RUNNING_PID is the launch's process: its end before
# that fails the test.
hold_ps() {
    local i p w="" ranks=""
    PS_PID=""
    for ((i = 0; i < 3000; i++)); do
        for p in $(rank_procs "$1"); do
            # World rank 0: PMI_RANK under mpiexec, SLURM_PROCID under srun.
            grep -qzE '^(PMI_RANK|SLURM_PROCID)=0$' "/proc/$p/environ" 2>/dev/null &&
                sig_bit SigCgt "$p" 10 || continue
            kill -STOP "$p" && PS_PID=$p
            break 2
        done
        kill -0 "$3" 2>/dev/null || fail "the launch ($1) ended before its rank 0 started"
        sleep 0.01
    done
    [ -n "$PS_PID" ] || fail "no rank 0 with a SIGUSR1 handler after 30 s ($1)"
    # The other ranks, stopped by the wrapper before their exec: on.
    for ((i = 0; i < 3000; i++)); do
        # shellcheck disable=SC2046
        w="$(pgrep -f -- "^/bin/sh [^ ]*/rd-held $1")" && kill -CONT $w 2>/dev/null
        ranks=""
        for p in $(rank_procs "$1"); do sig_bit SigCgt "$p" 10 && ranks="$ranks $p"; done
        if [ "$(wc -w <<<"$ranks")" -ge "$2" ]; then
            for p in $ranks; do [ "$p" = "$PS_PID" ] || kill -STOP "$p"; done
            HELD="${ranks# }"
            rm -f "$HOLD_GATE"
            return 0
        fi
        kill -0 "$3" 2>/dev/null || fail "the launch ($1) ended before its ranks started"
        sleep 0.01
    done
    fail "$(wc -w <<<"$ranks") of $2 ranks have a SIGUSR1 handler after 30 s ($1)"
}

# until_pending: wait until SIGUSR1 is pending on every held rank (it came through mpiexec, srun
# or a batch script).
until_pending() {
    local i p n
    for ((i = 0; i < 3000; i++)); do
        n=0
        for p in $HELD; do
            { sig_bit SigPnd "$p" 10 || sig_bit ShdPnd "$p" 10; } || n=$((n + 1))
        done
        [ "$n" -eq 0 ] && return 0
        sleep 0.01
    done
    fail "SIGUSR1 did not reach $n of the held ranks ($HELD) in 30 s"
}

release_ps() {
    # shellcheck disable=SC2086
    kill -CONT $HELD
    HELD=""
}

# hold_again: rank 0 held again (a run that must not end before what follows).
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

# pid_wrapper DIR: write DIR/rd-pid, a stand-in for $RD that records the pid of each rank of a
# `train` (its own, kept by the exec) in $PIDS/<world rank> (PMI_RANK under mpiexec,
# SLURM_PROCID under srun) when PIDS is set. Prints its path. Polling /proc with pgrep is too slow
# to catch a run whose training lasts well under a second; these files are read with builtins.
pid_wrapper() {
    cat >"$1/rd-pid" <<EOF
#!/bin/sh
r="\${PMI_RANK:-\${SLURM_PROCID:-}}"
if [ "\${1:-}" = train ] && [ -n "\$r" ] && [ -n "\${PIDS:-}" ]; then
    echo \$\$ >"\$PIDS/\$r.tmp" && mv "\$PIDS/\$r.tmp" "\$PIDS/\$r"
fi
exec "$RD" "\$@"
EOF
    chmod +x "$1/rd-pid"
    echo "$1/rd-pid"
}

# term_caught PID: 0 when PID runs recdistill and has a SIGTERM handler (SigCgt bit 15: `train`
# installs it when its roles start). Builtins only, as pid_wrapper's files are read.
term_caught() {
    local k v c=""
    read -r c <"/proc/$1/comm" 2>/dev/null
    [ "$c" = recdistill ] || return 1
    while read -r k v; do
        [ "$k" = SigCgt: ] && { [ $((0x$v & (1 << 14))) -ne 0 ]; return; }
    done <"/proc/$1/status" 2>/dev/null
    return 1
}
