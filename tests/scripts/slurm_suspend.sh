#!/usr/bin/env bash
# slurm_suspend.sh — a job that Slurm suspends is not a frozen job, on a REAL Slurm that tracks
# jobs by process group (ProctrackType=proctrack/pgid, tools/slurm-local.sh --proctrack pgid).
# There `scontrol suspend` (and gang scheduling, PreemptMode=SUSPEND) stops the ranks but not their
# sentinels, which left the ranks' process group: the sentinels saw stopped ranks while they ran
# on schedule themselves, and a suspend longer than cluster.freeze_timeout_s killed the job
# (measured before the change: a 20 s suspend of slurm/train-1node.sbatch with the timeout at 5 s,
# every rank named frozen, "train exited 137"). A sentinel whose stopped rank reaches the timeout
# now asks Slurm (scontrol) whether the job is suspended.
#  1. a suspend of more than twice the timeout, then a resume: the job runs on, nothing named;
#  2. a stray SIGSTOP of one rank in the running job still ends it, naming that rank.
#
#   bash tests/scripts/slurm_suspend.sh build/recdistill
#
# Skips (exit 77) when not root or when Slurm is missing and cannot be installed. Shares the
# host's Slurm-test lock with slurm.sh (lib/slurm_cluster.sh).
set -u
RD="${1:?usage: slurm_suspend.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
fail() {
    echo "FAIL: $*" >&2
    [ -z "${LOG:-}" ] || { echo "--- job log:" >&2; grep -v INFO "$LOG" | tail -n 15 >&2; }
    exit 1
}
skip() {
    echo "SKIP: $*"
    exit 77
}
command -v mpiexec.mpich >/dev/null || skip "mpiexec.mpich not found"

# shellcheck source=lib/slurm_cluster.sh
. "$SRC/tests/scripts/lib/slurm_cluster.sh"
slurm_cluster_up suspend 1 8 pgid
grep -q "^ProctrackType=proctrack/pgid$" "$SLURM_CONF" || fail "the cluster does not track by pgid"
# A hang guard under ctest's timeout, not a speed check: about 60 s idle.
DEADLINE=$((T_START + 420))
TIMEOUT_S=5
W="$TMP/work"
mkdir -p "$W"
cd "$W" || fail "cd $W"
export RD_BIN="$RD" OPENBLAS_NUM_THREADS=1

# The tiny teacher + students run made minutes long, with the short freeze timeout.
sed -e 's/^  name: slurm-tiny$/  name: susp/' -e 's/events: 4000/events: 100000/' \
    -e 's/  eval_every: 1000/  eval_every: 1000\n  epochs: 50/' \
    -e "s/^  ps_ranks: 1\$/  ps_ranks: 1\n  freeze_timeout_s: $TIMEOUT_S/" \
    "$SRC/tests/data/slurm-tiny.yaml" >"$W/susp.yaml"
{ grep -q "^  freeze_timeout_s: $TIMEOUT_S$" "$W/susp.yaml" && grep -q "^  epochs: 50$" "$W/susp.yaml"; } ||
    fail "could not derive susp.yaml"
out="$("$SRC/slurm/train-1node.sbatch" "$W/susp.yaml" 2>"$W/submit.err")" ||
    fail "submit: $(cat "$W/submit.err")"
[[ "$out" =~ ^submitted\ ([0-9]+)\  ]] || fail "train-1node.sbatch printed '$out'"
JOB="${BASH_REMATCH[1]}"
LOG="$W/slurm-rd-train-1node-$JOB.out"
state() { scontrol show job -o "$JOB" 2>/dev/null | sed -n 's/.*JobState=\([^ ]*\).*/\1/p'; }

# The ranks: the recdistill processes whose parent is the step's slurmstepd (their sentinels are
# their children).
rank_pids() {
    local p pp
    for p in $(pgrep -x recdistill); do
        pp=$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')
        [ -n "$pp" ] && [ "$(ps -o comm= -p "$pp" 2>/dev/null)" = slurmstepd ] && echo "$p"
    done
}
# Training runs (the PS serves): about a minute of it is left, idle, more under load.
until [ -f "$LOG" ] && grep -q "PS shard 0 of 1" "$LOG"; do
    case "$(state)" in PENDING | RUNNING | CONFIGURING) ;; *) fail "job $JOB is $(state) before training ran" ;; esac
    [ "$SECONDS" -lt "$DEADLINE" ] || { scancel "$JOB"; fail "job $JOB: training never ran"; }
    sleep 0.2
done
PIDS="$(rank_pids | tr '\n' ' ')"
[ "$(echo "$PIDS" | wc -w)" -eq 4 ] || fail "not 4 ranks under slurmstepd: '$PIDS'"

# 1. Suspended for more than twice the timeout, then resumed.
HOLD_S=$((2 * TIMEOUT_S + 3))
scontrol suspend "$JOB" || fail "scontrol suspend $JOB"
for _ in $(seq 50); do
    n=0
    for p in $PIDS; do [ "$(ps -o stat= -p "$p" | cut -c1)" = T ] && n=$((n + 1)); done
    [ "$n" -eq 4 ] && break
    sleep 0.1
done
[ "$n" -eq 4 ] || fail "the suspend stopped $n of 4 ranks"
sleep "$HOLD_S"
[ "$(state)" = SUSPENDED ] || fail "job $JOB is $(state) during the suspend"
scontrol resume "$JOB" || fail "scontrol resume $JOB"
sleep 2
[ "$(state)" = RUNNING ] || fail "job $JOB is $(state) after a suspend of $HOLD_S s and a resume"
grep -q "has not run for" "$LOG" && fail "a suspended rank was called frozen"
echo "suspend of $HOLD_S s (freeze_timeout_s $TIMEOUT_S), resume: job $JOB runs on"

# 2. A stray stop of one rank in the running job.
victim="$(echo "$PIDS" | awk '{print $2}')"
kill -STOP "$victim"
until case "$(state)" in RUNNING | COMPLETING) false ;; *) true ;; esac; do
    [ "$SECONDS" -lt "$DEADLINE" ] || { kill -CONT "$victim"; scancel "$JOB"; fail "a stopped rank did not end the job"; }
    sleep 0.2
done
kill -CONT "$victim" 2>/dev/null
[ "$(grep -c "has not run for" "$LOG")" -ge 1 ] || fail "the stopped rank is not named"
grep -q "pid $victim on host .*has not run for [0-9]* s: it is stopped (State T" "$LOG" ||
    fail "the line does not name pid $victim"
echo "stray SIGSTOP of pid $victim: job $JOB $(state), $(grep -c 'has not run for' "$LOG") line(s)"
echo "slurm_suspend.sh: ok in $((SECONDS - T_START)) s"
