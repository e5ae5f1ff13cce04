#!/usr/bin/env bash
# ckpt_signal.sh — SIGUSR1 asks `recdistill train` for a checkpoint now: every job's rank 0 writes
# one after its next training step, whatever the cadence (none here), and the run goes on
# undisturbed. This is what Slurm's `--signal=USR1@N` (every process of the step) or a user's
# `kill -USR1` of mpiexec (which passes it on to every rank) gives a job some minutes before its
# time limit. It used to end every rank (SIGUSR1's default action).
#  1. the signal to every process of the launch (the ranks, the PS rank and their sentinels, as
#     Slurm sends it): exit 0, one "checkpoint on SIGUSR1" line per job naming a checkpoint
#     before the final one, which exists; the final checkpoints and the student's metrics are
#     byte-identical to those of an unsignalled run;
#  2. resumed from those checkpoints alone (the teacher and its live student, as a job killed at
#     its time limit right after them leaves it): ends byte-identical to the unsignalled run;
#  3. the signal to mpiexec only: the same as 1;
#  4. sent twice in a row: the run ends as well, with one or two checkpoints per job for it.
# The run cannot end before the signal arrives: its ranks are held with SIGSTOP before they
# train, from when they can take the signal until it is pending on each (tests/scripts/lib/hold.sh).
#
#   bash tests/scripts/ckpt_signal.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: ckpt_signal.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_ckpt_signal_XXXXXX)"
trap '[ -z "${HELD:-}" ] || kill -CONT $HELD 2>/dev/null; rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=lib/pair_yaml.sh
. "$(cd "$(dirname "$0")" && pwd)/lib/pair_yaml.sh" # pair_yaml
cd "$TMP" || exit 1

pair_yaml name=sig data="$TMP/data" events=6000 users=60 items=300 batch=32 > live.yaml ||
    fail "could not write live.yaml"

timeout 300 "$MPIEXEC" -n 3 "$RD" train "$TMP/live.yaml" --out U >U.out 2>U.err || fail "unsignalled run: $(cat U.err)"
final() { ls -d "$1"/ckpt/"$2"/step-* | tail -1; }
[ "$(ls -d U/ckpt/teacher/step-* | wc -l)" -eq 1 ] ||
    fail "without a cadence only the final checkpoint: $(ls U/ckpt/teacher)"
same_final() { # $1 = run folder, $2 = what
    local j a b
    for j in teacher student; do
        a="$(final U "$j")" b="$1/ckpt/$j/$(basename "$(final U "$j")")"
        cmp -s "$a/dense.bin" "$b/dense.bin" || fail "$2: $j dense.bin differs from the unsignalled run's"
        cmp -s "$a/MANIFEST" "$b/MANIFEST" || fail "$2: $j tables differ from the unsignalled run's"
    done
    cut -d, -f1-7 U/student.metrics.csv > a.csv && cut -d, -f1-7 "$1/student.metrics.csv" > b.csv
    cmp -s a.csv b.csv || fail "$2: student metrics differ: $(diff a.csv b.csv)"
}

# shellcheck source=lib/hold.sh
. "$(dirname "$0")/lib/hold.sh"
HW="$(hold_wrapper "$TMP")"
# Every process of run $1 running recdistill: its ranks and their sentinels.
procs() {
    local p
    for p in $(pgrep -f -- "train $TMP/live.yaml --out $1\$"); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$RD" ] && echo "$p"
    done
}
# start RUN: the run in the background (PID: timeout's), every rank held before it trained
# (lib/hold.sh).
start() {
    hold_gate "$TMP"
    timeout 300 "$MPIEXEC" -n 3 "$HW" train "$TMP/live.yaml" --out "$1" >"$1.out" 2>"$1.err" &
    PID=$!
    hold_ps "train $TMP/live.yaml --out $1\$" 3 "$PID"
}
# check RUN: exit 0, one line per job naming a checkpoint before the final one, which exists.
check() {
    wait "$PID" || fail "$1 exited $? after SIGUSR1: $(cat "$1.err")"
    local j line ck
    for j in teacher student; do
        [ "$(grep -c "^\[$j\] checkpoint on SIGUSR1: " "$1.out")" -eq 1 ] ||
            fail "$1: not one checkpoint line of $j: $(cat "$1.out")"
        line="$(grep "^\[$j\] checkpoint on SIGUSR1: " "$1.out")"
        ck="${line#*SIGUSR1: }"
        [ -f "$ck/MANIFEST" ] || fail "$1: $j: $ck is not a complete checkpoint"
        [ "$(basename "$ck")" \< "$(basename "$(final U "$j")")" ] ||
            fail "$1: $j: the signal's checkpoint $ck is not before the final one"
        eval "CK_$j=\$ck"
    done
    same_final "$1" "$1"
}

# 1. Every process of the launch, as Slurm's --signal (without B:) sends it.
start S
for p in $(procs S); do kill -USR1 "$p"; done
release_ps
check S
[ -z "$(procs S)" ] || fail "S left processes behind: $(procs S)"

# 2. Resumed from the signal's checkpoints alone: S as a job killed at its time limit right after
#    them leaves it (its final checkpoints and report gone; its target log holds more).
cp -r S X && rm -f X/report.json
for j in teacher student; do
    rm -rf "X/ckpt/$j/$(basename "$(final U "$j")")"
    ck="CK_$j"
    [ "$(ls "X/ckpt/$j")" = "$(basename "${!ck}")" ] || fail "X: $j: $(ls "X/ckpt/$j")"
done
timeout 300 "$MPIEXEC" -n 3 "$RD" train "$TMP/live.yaml" --out X --resume X/ckpt >X.out 2>X.err ||
    fail "resume from the signal's checkpoints: $(cat X.err)"
same_final X "resumed from the signal's checkpoints"

# 3. mpiexec only: it passes the signal on to every rank.
start M
MPID="$(pgrep -P "$PID")"
[ -n "$MPID" ] && [ "$(readlink "/proc/$MPID/exe")" = "$(readlink -f "$MPIEXEC")" ] ||
    fail "M: no mpiexec under timeout (pid $PID)"
kill -USR1 "$MPID"
until_pending # mpiexec passes it on through its proxy
release_ps
check M

# 4. Twice in a row, to every process.
start T
for p in $(procs T); do kill -USR1 "$p"; done
for p in $(procs T); do kill -USR1 "$p"; done
release_ps
wait "$PID" || fail "T exited $? after two SIGUSR1: $(cat T.err)"
for j in teacher student; do
    n="$(grep -c "^\[$j\] checkpoint on SIGUSR1: " T.out)"
    [ "$n" -ge 1 ] && [ "$n" -le 2 ] || fail "T: $n checkpoint lines of $j: $(cat T.out)"
done
same_final T T
echo "ckpt_signal: OK"
