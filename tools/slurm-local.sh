#!/usr/bin/env bash
# slurm-local.sh — a real Slurm cluster on this one host, for testing slurm/*.sbatch: a private
# munged, one slurmctld and N slurmd "virtual nodes" (n1..nN, all on 127.0.0.1, one port each).
#
#   tools/slurm-local.sh up     [--nodes N] [--cpus C] [--dir D] [--port P] [--proctrack T]
#   tools/slurm-local.sh down   [--dir D] [--purge]
#   tools/slurm-local.sh status [--dir D]
#   tools/slurm-local.sh env    [--dir D]        # prints: export SLURM_CONF=D/etc/slurm.conf
#
# Defaults: N=4 nodes, C=4 CPUs per node (may exceed the real cores: config_overrides),
# D=/var/tmp/slurm-local, P=16817 (slurmctld; slurmd of node i listens on P+i), T=linuxproc
# (ProctrackType proctrack/T: linuxproc or pgid; with pgid a suspend stops the tasks' process
# group only, as on clusters that track jobs so).
#
# Everything lives in D: the config (D/etc/slurm.conf), munge key and socket (D/munge), state,
# spool, logs, and the PIDs this script started (D/pids). Clients find the cluster through
# SLURM_CONF (`eval "$(tools/slurm-local.sh env)"`); `up` also links /etc/slurm/slurm.conf to it
# when that file does not exist yet, so plain `sinfo` works too, and `down` removes only that link.
# Several clusters (different D and P) can run side by side; they share nothing.
#
# Must run as root (slurmd runs jobs as the submitting user). Installs slurmctld, slurmd,
# slurm-client and munge with apt when missing. `up` is idempotent: a running cluster with the same
# config is left alone; a changed config (or a partly dead cluster) is restarted. `down` stops
# exactly the PIDs recorded in D/pids (checked against /proc/PID/cmdline, never by name), after
# cancelling this cluster's jobs through its own slurmctld (their slurmstepd would outlive slurmd).
#
# Exit status: 0 ok, 1 failure (message on stderr), 2 usage error. `status`: 0 up, 3 down.
set -euo pipefail

die() {
    echo "slurm-local: $*" >&2
    exit 1
}
usage() {
    sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
# A bad option value is a usage error (exit 2), as an unknown option is.
bad_value() {
    echo "slurm-local: $*" >&2
    usage
}

cmd="${1:-}"
[ -n "$cmd" ] || usage
shift
NODES=4
CPUS=4
DIR=/var/tmp/slurm-local
PORT=16817
PROCTRACK=linuxproc
PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES="${2:-}"; shift 2 || usage ;;
        --cpus) CPUS="${2:-}"; shift 2 || usage ;;
        --dir) DIR="${2:-}"; shift 2 || usage ;;
        --port) PORT="${2:-}"; shift 2 || usage ;;
        --proctrack) PROCTRACK="${2:-}"; shift 2 || usage ;;
        --purge) PURGE=1; shift ;;
        -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "slurm-local: unknown argument '$1'" >&2; usage ;;
    esac
done
# The values are read as decimal (10#: bash arithmetic took --port 016817 for octal and failed,
# and --nodes 010 for 8 ports), after at most 9 digits (a longer one wraps silently).
[[ "$NODES" =~ ^[0-9]{1,9}$ ]] && NODES=$((10#$NODES)) && [ "$NODES" -ge 1 ] && [ "$NODES" -le 64 ] ||
    bad_value "--nodes must be 1..64 (got '$NODES')"
[[ "$CPUS" =~ ^[0-9]{1,9}$ ]] && CPUS=$((10#$CPUS)) && [ "$CPUS" -ge 1 ] && [ "$CPUS" -le 256 ] ||
    bad_value "--cpus must be 1..256 (got '$CPUS')"
[[ "$PORT" =~ ^[0-9]{1,9}$ ]] && PORT=$((10#$PORT)) && [ "$PORT" -ge 1024 ] && [ $((PORT + NODES)) -le 65535 ] ||
    bad_value "--port must be 1024..65535-N (got '$PORT')"
case "$PROCTRACK" in
    linuxproc | pgid) ;;
    *) bad_value "--proctrack must be linuxproc or pgid (got '$PROCTRACK')" ;;
esac
case "$DIR" in
    /*) ;;
    *) DIR="$(pwd)/$DIR" ;;
esac
DIR="${DIR%/}"
# D is written into slurm.conf unquoted, where a blank ends a value, '#' starts a comment, ','
# separates AuthInfo's options, '%' is a node-name escape (SlurmdSpoolDir D/spool/%n) and quotes
# and backslashes are the parser's: such a D was written as it is, for the daemons to read as
# other folders or as a bad config. Refused before anything is made or started.
case "$DIR" in
    *[[:space:]\#,%\"\'\\]*)
        bad_value "--dir '$DIR': slurm.conf cannot hold a folder with a blank, '#', ',', '%', a quote or a backslash in its path: give another --dir" ;;
esac
CONF="$DIR/etc/slurm.conf"
PIDS="$DIR/pids"

# ---------------------------------------------------------------------------------------------
# PIDs we started: D/pids/<name>.pid holds "<pid> <binary>". A PID counts as ours only while
# /proc/PID/cmdline still names that binary and this cluster's directory (guards against reuse).

pid_of() { # name -> prints the live PID or nothing
    local f="$PIDS/$1.pid" pid bin
    [ -f "$f" ] || return 0
    read -r pid bin <"$f" || return 0
    [ -n "${pid:-}" ] && is_running "$pid" || return 0
    local cl
    cl="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$cl" in
        *"$bin"*"$DIR"*) echo "$pid" ;;
    esac
}

is_running() { # pid: alive and not a zombie (PID 1 here may be slow to reap orphans)
    local st
    st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)" || return 1
    st="${st%% *}"
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

daemon_names() { # every daemon name of the current config
    echo munged slurmctld
    local i
    for i in $(seq 1 "$NODES"); do echo "slurmd-n$i"; done
}

recorded_names() { # every name with a pid file
    local f
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] || continue
        basename "$f" .pid
    done
}

stop_all() { # stop every recorded daemon: slurmd first, then slurmctld, then munged
    local group names name pid alive t
    for group in 'slurmd-*' slurmctld munged; do
        names=()
        for name in $(recorded_names); do
            # shellcheck disable=SC2254
            case "$name" in $group) names+=("$name") ;; esac
        done
        [ "${#names[@]}" -gt 0 ] || continue
        alive=()
        for name in "${names[@]}"; do
            pid="$(pid_of "$name")"
            if [ -n "$pid" ]; then
                kill -TERM "$pid" 2>/dev/null || true
                alive+=("$pid")
            fi
        done
        # Wait up to 20 s (polling with a growing sleep), then SIGKILL what is left.
        t=0
        while [ "${#alive[@]}" -gt 0 ] && [ "$t" -lt 200 ]; do
            local still=()
            for pid in "${alive[@]}"; do
                is_running "$pid" && still+=("$pid")
            done
            alive=("${still[@]+"${still[@]}"}")
            [ "${#alive[@]}" -gt 0 ] || break
            sleep 0.1
            t=$((t + 1))
        done
        for pid in "${alive[@]+"${alive[@]}"}"; do
            echo "slurm-local: PID $pid did not stop on SIGTERM; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        done
        for name in "${names[@]}"; do rm -f "$PIDS/$name.pid"; done
    done
}

running_count() { # prints "<alive> <expected>" for the current config
    local n=0 e=0 name
    for name in $(daemon_names); do
        e=$((e + 1))
        [ -n "$(pid_of "$name")" ] && n=$((n + 1))
    done
    echo "$n $e"
}

conf_nodes() { # NODES of an existing config (for down/status without --nodes)
    [ -f "$CONF" ] || return 0
    sed -n 's/^# slurm-local: nodes=\([0-9]*\).*/\1/p' "$CONF"
}

# ---------------------------------------------------------------------------------------------

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (slurmd and munged need it)"
}

install_packages() {
    local p missing=()
    for p in slurmctld slurmd slurm-client munge; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get"
    echo "slurm-local: installing ${missing[*]}" >&2
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
}

write_conf() { # writes $CONF.new
    local host="$1" last=$((PORT + NODES))
    cat >"$CONF.new" <<EOF
# slurm-local: nodes=$NODES cpus=$CPUS port=$PORT — written by tools/slurm-local.sh; do not edit
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long a requeued job waits before it starts again (default 120 s): for the
# attempt the requeue ended to finish on its nodes (tests/scripts/slurm.sh requeues a job).
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/$PROCTRACK
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# No default MPI plugin on purpose: scripts must say srun --mpi=pmi2 (without it MPICH ranks
# silently become singletons), and a script that forgets it fails its world-size check here.
MpiDefault=none
ReturnToService=2
# Lets CPUs= exceed the real cores (else the nodes go INVAL).
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
# Heterogeneous jobs are started only by the backfill scheduler (default interval 30 s).
SchedulerParameters=bf_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
SlurmctldDebug=info
SlurmdDebug=info
NodeName=n[1-$NODES] NodeHostname=$host NodeAddr=127.0.0.1 Port=[$((PORT + 1))-$last] CPUs=$CPUS RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start_daemon() { # name binary args... : start in its own session, record "<pid> <binary>"
    local name="$1" bin="$2"
    shift 2
    setsid "$bin" "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo "$! $bin" >"$PIDS/$name.pid"
}

start_munged() {
    local m="$DIR/munge"
    mkdir -p "$m"
    if [ ! -s "$m/munge.key" ]; then
        # A key of our own: this cluster trusts nothing else on the host.
        dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 status=none
    fi
    chown -R munge:munge "$m"
    chmod 0755 "$m" # the socket in it must be reachable by every user
    chmod 0755 "$DIR"
    setpriv --reuid=munge --regid=munge --init-groups test -x "$m" ||
        die "user munge cannot reach $m: make the folders above $DIR searchable (chmod o+x)"
    chmod 0600 "$m/munge.key"
    rm -f "$m/munge.socket" "$m/munge.socket.lock"
    # setpriv execs munged directly (no fork), so $! is munged itself.
    start_daemon munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged \
        -F --socket="$m/munge.socket" --key-file="$m/munge.key" --pid-file="$m/munged.pid" \
        --seed-file="$m/munged.seed" --log-file="$m/munged.log"
    # The recorded binary must match the exec'd one.
    local pid
    read -r pid _ <"$PIDS/munged.pid"
    echo "$pid /usr/sbin/munged" >"$PIDS/munged.pid"
    local t=0
    while [ ! -S "$m/munge.socket" ]; do
        is_running "$pid" || die "munged exited at start: $(tail -n 5 "$m/munged.log" "$DIR/log/munged.out" 2>/dev/null)"
        [ "$t" -lt 100 ] || die "munged did not create its socket in 10 s"
        sleep 0.1
        t=$((t + 1))
    done
}

wait_nodes_ready() {
    local t=0 states bad name
    while :; do
        for name in $(daemon_names); do
            [ -n "$(pid_of "$name")" ] ||
                die "$name exited at start: $(tail -n 5 "$DIR/log/$name.out" "$DIR/log/$name.log" 2>/dev/null)"
        done
        states="$(SLURM_CONF="$CONF" sinfo -h -N -o '%N %t' 2>/dev/null || true)"
        if [ -n "$states" ]; then
            bad="$(echo "$states" | awk '$2 != "idle" && $2 != "alloc" && $2 != "mix" {print $1 ":" $2}' | sort -u)"
            [ -z "$bad" ] && [ "$(echo "$states" | awk '{print $1}' | sort -u | wc -l)" -eq "$NODES" ] && return 0
            # Nodes left DOWN/DRAINED by an earlier unclean stop: resume them.
            local n
            for n in $(echo "$states" | awk '$2 ~ /^(down|drain|drng|fail)/ && $2 !~ /\*$/ {print $1}' | sort -u); do
                SLURM_CONF="$CONF" scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true
            done
        fi
        [ "$t" -lt 300 ] || die "nodes not ready after 30 s: $(echo "$states" | tr '\n' ' ') (logs: $DIR/log)"
        sleep 0.1
        t=$((t + 1))
    done
}

link_default_conf() {
    mkdir -p /etc/slurm
    if [ ! -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
        ln -s "$CONF" /etc/slurm/slurm.conf
    elif [ -L /etc/slurm/slurm.conf ] && [ ! -e /etc/slurm/slurm.conf ]; then
        # A dangling link left by an earlier cluster of this script.
        case "$(readlink /etc/slurm/slurm.conf)" in
            */etc/slurm.conf) ln -sfn "$CONF" /etc/slurm/slurm.conf ;;
        esac
    fi
}

unlink_default_conf() {
    if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
}

cmd_up() {
    need_root
    install_packages
    local host
    host="$(hostname)"
    if ! getent hosts "$host" >/dev/null; then
        echo "slurm-local: adding '127.0.0.1 $host' to /etc/hosts (the host name must resolve)" >&2
        echo "127.0.0.1 $host" >>/etc/hosts
    fi
    mkdir -p "$DIR"/{etc,state,spool,run,log,pids}
    write_conf "$host"
    local alive expected
    read -r alive expected < <(running_count)
    if cmp -s "$CONF.new" "$CONF" && [ "$alive" -eq "$expected" ]; then
        rm -f "$CONF.new"
        wait_nodes_ready
        echo "slurm-local: already up ($NODES nodes, $DIR)"
        return 0
    fi
    # Changed config, or a partly dead cluster: restart everything of ours.
    if [ -n "$(recorded_names)" ]; then
        echo "slurm-local: restarting ($alive of $expected daemons alive; config $(cmp -s "$CONF.new" "$CONF" && echo same || echo changed))" >&2
        cancel_jobs
        stop_all
    fi
    mv "$CONF.new" "$CONF"
    # Our ports must be free (another cluster, or anything else listening there).
    if command -v ss >/dev/null; then
        local p busy=""
        for p in $(seq "$PORT" $((PORT + NODES))); do
            ss -ltnH "sport = :$p" 2>/dev/null | grep -q . && busy="$busy $p"
        done
        [ -z "$busy" ] || die "port(s)$busy already in use: choose another --port"
    fi
    # A changed node list makes the saved state stale; jobs do not survive a restart here anyway.
    rm -rf "$DIR/state" "$DIR/spool"
    mkdir -p "$DIR/state" "$DIR/spool"
    local i
    for i in $(seq 1 "$NODES"); do mkdir -p "$DIR/spool/n$i"; done

    start_munged
    start_daemon slurmctld /usr/sbin/slurmctld -D -i -f "$CONF"
    for i in $(seq 1 "$NODES"); do
        start_daemon "slurmd-n$i" /usr/sbin/slurmd -D -N "n$i" -f "$CONF"
    done
    wait_nodes_ready
    link_default_conf
    echo "slurm-local: up: $NODES nodes x $CPUS CPUs, slurmctld on port $PORT, state in $DIR"
    printf 'slurm-local: clients need: export SLURM_CONF=%q\n' "$CONF"
}

# Jobs run under slurmstepd, which outlives slurmd: cancel every job of this (private) cluster
# while slurmctld is still up, and wait until they are gone (KillWait=5 s, then SIGKILL).
cancel_jobs() {
    [ -n "$(pid_of slurmctld)" ] || return 0
    local ids t=0
    ids="$(SLURM_CONF="$CONF" squeue -h -o %i 2>/dev/null | tr '\n' ' ')"
    [ -n "${ids// /}" ] || return 0
    echo "slurm-local: cancelling job(s) $ids" >&2
    # shellcheck disable=SC2086
    SLURM_CONF="$CONF" scancel $ids 2>/dev/null || true
    while [ -n "$(SLURM_CONF="$CONF" squeue -h -o %i 2>/dev/null)" ]; do
        if [ "$t" -ge 300 ]; then
            echo "slurm-local: warning: jobs still listed after 30 s: $(SLURM_CONF="$CONF" squeue -h -o '%i %T' | tr '\n' ' ')" >&2
            break
        fi
        sleep 0.1
        t=$((t + 1))
    done
}

cmd_down() {
    need_root
    if [ -d "$PIDS" ]; then
        cancel_jobs
        stop_all
    fi
    unlink_default_conf
    if [ "$PURGE" -eq 1 ]; then
        case "$DIR" in
            / | /var | /var/tmp | /tmp | /etc | /usr | /root) die "refusing to purge '$DIR'" ;;
        esac
        [ ! -e "$DIR" ] || [ -f "$CONF" ] || [ -d "$PIDS" ] ||
            die "refusing to purge '$DIR': not a slurm-local directory"
        rm -rf "$DIR"
    fi
    echo "slurm-local: down ($DIR)"
}

cmd_status() {
    local n
    n="$(conf_nodes)"
    if [ -z "$n" ]; then
        echo "slurm-local: down (no config in $DIR)"
        exit 3
    fi
    NODES="$n"
    local name pid alive expected
    read -r alive expected < <(running_count)
    for name in $(daemon_names); do
        pid="$(pid_of "$name")"
        printf '  %-12s %s\n' "$name" "${pid:-not running}"
    done
    if [ "$alive" -eq "$expected" ]; then
        SLURM_CONF="$CONF" sinfo 2>&1 | sed 's/^/  /'
        printf 'slurm-local: up (%s daemons; export SLURM_CONF=%q)\n' "$alive" "$CONF"
        exit 0
    fi
    echo "slurm-local: down ($alive of $expected daemons alive; run up to restart)"
    exit 3
}

case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) printf 'export SLURM_CONF=%q\n' "$CONF" ;; # for eval: a '$' or ';' in D stays as it is
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) echo "slurm-local: unknown command '$cmd'" >&2; usage ;;
esac
