#!/usr/bin/env bash
# freeze.sh — a frozen rank ends the launch (cluster.freeze_timeout_s, the rank's sentinel,
# rd/watch.h). SIGSTOP of one rank (the teacher, then the PS) of `mpiexec -n 4 recdistill train`
# with freeze_timeout_s 5: the launch must end non-zero within the timeout and a bound, with
# exactly one line naming the stopped rank, its role, host and state, no rank reported dead and
# no report. Before the freeze watch the launch waited for the stopped rank until `timeout` ended
# it. Then the other side: stops shorter than the timeout, and a whole run of several timeouts,
# with checkpoints, on a machine made busier than its cores (spinning processes), fire nothing.
#
#   bash tests/scripts/freeze.sh build/recdistill
set -u
RD="${1:?usage: freeze.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_freeze_XXXXXX)"
STOPPED=""  # pids this script stopped: continued on any exit, so nothing stays behind
SPINNERS="" # the load of the healthy run
LAUNCH=""
cleanup() {
    local p
    for p in $STOPPED; do kill -CONT "$p" 2>/dev/null; done
    for p in $SPINNERS; do kill "$p" 2>/dev/null; done
    [ -z "$LAUNCH" ] || kill "$LAUNCH" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
TIMEOUT_S=5

# A run long enough (minutes) that the stop lands in the middle of training.
sed -e 's/events: 4000/events: 100000/' -e 's/  eval_every: 1000/  eval_every: 1000\n  epochs: 50/' \
    "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/long.yaml"
grep -q "epochs: 50" "$TMP/long.yaml" || fail "config edit"

# The pid of world rank $2 of the launch whose --out is $1: the process started by hydra's proxy
# (its sentinel is a child of it, with the same command line).
rank_pid() {
    local p r pp
    for p in $(pgrep -f -- "--out $1\$"); do
        pp=$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')
        [ -n "$pp" ] || continue
        [ "$(ps -o comm= -p "$pp" 2>/dev/null)" = hydra_pmi_proxy ] || continue
        r=$(tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | sed -n 's/^PMI_RANK=//p')
        [ "$r" = "$2" ] && { echo "$p"; return 0; }
    done
    return 1
}

# start NAME CONFIG SECONDS: a launch of CONFIG with the short timeout, under `timeout SECONDS`,
# in the background ($LAUNCH); output in $TMP/NAME.err. Waits until training runs (the PS serves
# and the first job is at work), at most 60 s.
start() {
    timeout "$3" "$MPIEXEC" -n 4 "$RD" train "$2" --set cluster.freeze_timeout_s=$TIMEOUT_S \
        --out "$TMP/$1" >"$TMP/$1.out" 2>"$TMP/$1.err" &
    LAUNCH=$!
    for _ in $(seq 600); do
        grep -q "PS shard 0 of 1" "$TMP/$1.err" && return 0
        kill -0 "$LAUNCH" 2>/dev/null || break
        sleep 0.1
    done
    fail "$1: training never started: $(tail -5 "$TMP/$1.err")"
}

# finish: wait for $LAUNCH; its exit status in RC, the milliseconds since T0 in MS.
finish() {
    wait "$LAUNCH"
    RC=$?
    LAUNCH=""
    MS=$((($(date +%s%N) - T0) / 1000000))
}

# 1. A stopped rank: named and killed; the launch ends non-zero.
stop_case() { # RANK ROLE-TEXT
    local name="stop$1" pid
    start "$name" "$TMP/long.yaml" 120
    pid=$(rank_pid "$TMP/$name" "$1") || fail "$name: no pid of rank $1"
    sleep 1
    T0=$(date +%s%N)
    kill -STOP "$pid"
    STOPPED="$STOPPED $pid"
    finish
    echo "SIGSTOP of rank $1 ($2): launch ended after $MS ms, exit $RC"
    [ "$RC" -ne 124 ] || fail "$name: the launch hung until timeout ended it"
    [ "$RC" -ne 0 ] || fail "$name: exit 0"
    [ "$MS" -ge $((TIMEOUT_S * 1000)) ] || fail "$name: ended after $MS ms, before the timeout"
    [ "$MS" -lt $(((TIMEOUT_S + 30) * 1000)) ] || fail "$name: took $MS ms"
    [ ! -e "$TMP/$name/report.json" ] || fail "$name: a report was written"
    [ "$(grep -c 'has not run for' "$TMP/$name.err")" -eq 1 ] ||
        fail "$name: not exactly one frozen line: $(grep -v INFO "$TMP/$name.err" | tail -5)"
    grep -q "^recdistill: rank $1 (role $2.*), pid $pid on host $(hostname), has not run for [0-9]* s: it is stopped (State T.*(cluster.freeze_timeout_s: $TIMEOUT_S; 0 turns this off)" \
        "$TMP/$name.err" || fail "$name: the line does not name rank $1: $(grep 'has not run' "$TMP/$name.err")"
    # Its victims (the ranks the launcher then ends) are not news on this host.
    ! grep -q "died without an orderly exit" "$TMP/$name.err" ||
        fail "$name: a rank was reported dead too: $(grep died "$TMP/$name.err")"
    ! kill -0 "$pid" 2>/dev/null || fail "$name: the stopped rank still exists"
}
stop_case 1 "teacher: job 'teacher'"
stop_case 0 "ps: parameter-server shard 0"

# 2. Stops shorter than the timeout (a test holding a rank, an admin's look) are harmless, even
#    when together they last longer: the watch counts a freeze only while it lasts. Three stops
#    of 2 s, 3 s apart: the watch looks once a second, and a gap of more than 3 s between its
#    looks restarts its count, so it cannot miss the rank running between two stops.
start short "$TMP/long.yaml" 120
pid=$(rank_pid "$TMP/short" 2) || fail "short: no pid of rank 2"
STOPPED="$STOPPED $pid"
for i in 1 2 3; do
    kill -STOP "$pid"
    sleep 2
    kill -CONT "$pid"
    [ "$i" = 3 ] || sleep 3
done
sleep 2
kill -0 "$LAUNCH" 2>/dev/null ||
    fail "short: the launch ended after three short stops: $(grep -v INFO "$TMP/short.err" | tail -3)"
grep -q "has not run for" "$TMP/short.err" && fail "short: a short stop fired: $(grep 'has not run' "$TMP/short.err")"
kill "$LAUNCH" 2>/dev/null
wait "$LAUNCH" 2>/dev/null
LAUNCH=""

# 2b. A job that Slurm suspends (scontrol suspend, gang scheduling) has its ranks stopped; where
#     Slurm tracks jobs by process group (proctrack/pgid) their sentinels, which left the group,
#     go on running and saw stopped ranks: a suspend longer than the timeout killed the job. A
#     sentinel whose stopped rank reaches the timeout now asks `scontrol -o show job
#     $SLURM_JOB_ID` first. A fake scontrol answers SUSPENDED, then RUNNING (a stray SIGSTOP in
#     a job that runs). tests/scripts/slurm_suspend.sh does the same on a real Slurm.
mkdir -p "$TMP/bin"
printf '%s\n' '#!/bin/sh' \
    "echo \"\$*\" >>'$TMP/scontrol.asked'" \
    "echo \"JobId=4242 JobName=t UserId=u(0) JobState=\$(cat '$TMP/slurm.state') Reason=None\"" \
    >"$TMP/bin/scontrol"
chmod +x "$TMP/bin/scontrol"
echo SUSPENDED >"$TMP/slurm.state"
PATH="$TMP/bin:$PATH" timeout 120 "$MPIEXEC" -genv SLURM_JOB_ID 4242 -n 4 "$RD" train "$TMP/long.yaml" \
    --set cluster.freeze_timeout_s=$TIMEOUT_S --out "$TMP/susp" >"$TMP/susp.out" 2>"$TMP/susp.err" &
LAUNCH=$!
for _ in $(seq 600); do
    grep -q "PS shard 0 of 1" "$TMP/susp.err" && break
    kill -0 "$LAUNCH" 2>/dev/null || fail "susp: the launch ended: $(tail -5 "$TMP/susp.err")"
    sleep 0.1
done
pids=""
for r in 0 1 2 3; do
    p=$(rank_pid "$TMP/susp" "$r") || fail "susp: no pid of rank $r"
    pids="$pids $p"
done
STOPPED="$STOPPED $pids"
HOLD_S=$((2 * TIMEOUT_S + 3))
# shellcheck disable=SC2086 # one word per pid
kill -STOP $pids
sleep "$HOLD_S"
# shellcheck disable=SC2086
kill -CONT $pids
sleep 2
kill -0 "$LAUNCH" 2>/dev/null ||
    fail "susp: a Slurm suspend of $HOLD_S s ended the launch: $(grep -v INFO "$TMP/susp.err" | tail -3)"
grep -q "has not run for" "$TMP/susp.err" &&
    fail "susp: a suspended rank was called frozen: $(grep 'has not run' "$TMP/susp.err")"
grep -q "^-o show job 4242$" "$TMP/scontrol.asked" 2>/dev/null || fail "susp: scontrol was never asked"
echo "Slurm suspend of $HOLD_S s (scontrol: SUSPENDED): nothing fired; scontrol asked $(wc -l <"$TMP/scontrol.asked") times"
echo RUNNING >"$TMP/slurm.state"
pid=$(rank_pid "$TMP/susp" 1) || fail "susp: no pid of rank 1"
T0=$(date +%s%N)
kill -STOP "$pid"
finish
echo "SIGSTOP of rank 1 in a job Slurm says runs: launch ended after $MS ms, exit $RC"
{ [ "$RC" -ne 124 ] && [ "$RC" -ne 0 ]; } || fail "susp: a stray stop in a running job: exit $RC"
grep -q "^recdistill: rank 1 (role teacher.*, pid $pid on host .*has not run for [0-9]* s: it is stopped" \
    "$TMP/susp.err" || fail "susp: the stray stop is not named: $(grep -v INFO "$TMP/susp.err" | tail -3)"

# 3. A healthy run of several timeouts on a machine busier than its cores (three spinners per
#    core), with the same short timeout: steps, evaluations, checkpoints and the waits between
#    ranks are never a freeze. (Only a single kernel wait of 5 s, in State D, could fire here:
#    a disk stalled that long is what the watch is for.)
ncpu=$(nproc)
for _ in $(seq $((3 * ncpu))); do
    (while :; do :; done) &
    SPINNERS="$SPINNERS $!"
done
sed -e 's/events: 4000/events: 100000/' -e 's/  eval_every: 1000/  eval_every: 1000\n  epochs: 5/' \
    "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/busy.yaml"
T0=$(date +%s%N)
timeout 600 "$MPIEXEC" -n 4 "$RD" train "$TMP/busy.yaml" --set cluster.freeze_timeout_s=$TIMEOUT_S \
    --set ps.checkpoint_every=100 --out "$TMP/busy" >/dev/null 2>"$TMP/busy.err"
RC=$?
MS=$((($(date +%s%N) - T0) / 1000000))
for p in $SPINNERS; do kill "$p" 2>/dev/null; done
SPINNERS=""
echo "healthy run under load ($((3 * ncpu)) spinners on $ncpu cores): exit $RC after $MS ms"
[ "$RC" -eq 0 ] || fail "healthy run under load: exit $RC: $(grep -v INFO "$TMP/busy.err" | tail -5)"
grep -q "has not run for\|uninterruptible wait" "$TMP/busy.err" && fail "healthy run: the watch fired"
[ -e "$TMP/busy/report.json" ] || fail "healthy run: no report"
compgen -G "$TMP/busy/ckpt/teacher/step-*" >/dev/null || fail "healthy run: no checkpoint of the teacher"
echo "freeze.sh: ok"
