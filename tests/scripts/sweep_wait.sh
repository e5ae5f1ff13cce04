#!/usr/bin/env bash
# sweep_wait.sh — slurm/sweep.sh waiting for its points, against a fake Slurm on PATH (sbatch
# hands out job ids and runs nothing; squeue follows a script; scontrol and sacct know nothing),
# so no cluster is needed.
#  - A squeue that failed once (a busy controller: "Socket timed out on send/recv operation")
#    counted as "no job left": the sweep gathered at once, called every running point failed
#    ("no report"), and exited 1 while the jobs ran on. It now polls again, and only "Invalid job
#    id" (Slurm has forgotten every job) ends the wait.
#  - A sweep run again into its folder after a change of the base config's data (events, split,
#    seed) used the dataset the first one prepared: every point was submitted and stopped at
#    start-up ("holds a dataset prepared from another data configuration"). The sweep now
#    prepares it again, saying so, when its data_config_hash is not the config's.
#  - Run again into its folder, a sweep whose new jobs Slurm forgot without a trace (cancelled
#    while pending, MinJobAge, no accounting) listed every point COMPLETED with the figures of
#    the earlier sweep's runs (its states.tsv and report.json files). They are removed first.
#   sweep_wait.sh PATH/TO/recdistill
set -u
RD="${1:?usage: sweep_wait.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac
command -v python3 >/dev/null || { echo "python3 missing: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_sweep_wait_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
mkdir -p "$TMP/bin"
for t in sinfo scontrol sacct; do
    printf '#!/bin/sh\necho "%s: error: no controller" >&2\nexit 1\n' "$t" >"$TMP/bin/$t"
done
# sbatch: --test-only accepts; a submission prints the next job id (--parsable).
cat >"$TMP/bin/sbatch" <<'EOF'
#!/usr/bin/env bash
for a in "$@"; do
    [ "$a" != --test-only ] || { echo "sbatch: Job 1 to start at now" >&2; exit 0; }
done
n=$(($(cat "$FAKE/jobs" 2>/dev/null || echo 100) + 1))
echo "$n" >"$FAKE/jobs"
echo "$n"
EOF
# squeue: its answers in turn, from $FAKE/plan ("fail": the controller does not answer; "run":
# every job is running; "end": every run left its report.json, no job is listed; "gone": Slurm
# has forgotten every job; "lost": forgotten, and no run left a report).
cat >"$TMP/bin/squeue" <<'EOF'
#!/usr/bin/env bash
k=$(($(cat "$FAKE/polls" 2>/dev/null || echo 0) + 1))
echo "$k" >"$FAKE/polls"
step="$(sed -n "${k}p" "$FAKE/plan")"
[ -n "$step" ] || step="$(tail -n 1 "$FAKE/plan")"
finish() {
    awk -F'\t' 'NR > 1 { print $8 }' "$FAKE/out/runs.tsv" | while read -r d; do
        mkdir -p "$d"
        echo '{"wall_s": 1, "jobs": {"teacher": {"samples_per_s": 100}}}' >"$d/report.json"
    done
}
case "$step" in
    fail) echo "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation" >&2; exit 1 ;;
    run) for j in $(tr , ' ' <<<"${*: -3:1}"); do echo "$j"; done ;;
    end) finish ;;
    gone) finish; echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;;
    lost) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;;
esac
EOF
chmod +x "$TMP/bin/"*
export PATH="$TMP/bin:$PATH" RD_BIN="$RD" FAKE="$TMP"
cd "$TMP" || exit 1

# sweep PLAN...: a two-point sweep of slurm-tiny (CONFIG, if set) whose squeue answers PLAN in
# turn; KEEP=1 keeps the sweep folder of the last one.
sweep() {
    [ "${KEEP:-0}" = 1 ] || rm -rf "$TMP/out"
    rm -rf "$TMP/polls" "$TMP/jobs"
    printf '%s\n' "$@" >"$TMP/plan"
    printf 'config: %s\nnodes: 1\nranks: 1 2\nout: %s\ntimeout: 120\n' \
        "${CONFIG:-$SRC/tests/data/slurm-tiny.yaml}" "$TMP/out" >"$TMP/w.spec"
    "$SRC/slurm/sweep.sh" "$TMP/w.spec" >"$TMP/w.out" 2>"$TMP/w.err"
}

# 1. The first poll fails, the jobs then run, then end: the sweep waits for them.
sweep fail run end
rc=$?
[ "$rc" -eq 0 ] || bad "a failed squeue poll: exit $rc: $(cat "$TMP/w.out" "$TMP/w.err")"
grep -q "squeue failed (squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation): polling again" \
    "$TMP/w.err" || bad "a failed squeue poll: not said: $(cat "$TMP/w.err")"
[ "$(cat "$TMP/polls")" = 3 ] || bad "a failed squeue poll: $(cat "$TMP/polls") polls, not 3"
grep -q "n1-r2-p1-b64  COMPLETED" "$TMP/out/sweep.txt" || bad "sweep.txt: $(cat "$TMP/out/sweep.txt")"
[ ! -e "$TMP/out/squeue.err" ] || bad "squeue.err left in the sweep folder"

# 2. Slurm has forgotten every job ("Invalid job id"): they have ended, the wait is over.
sweep run gone
rc=$?
[ "$rc" -eq 0 ] || bad "jobs Slurm forgot: exit $rc: $(cat "$TMP/w.out" "$TMP/w.err")"
[ "$(cat "$TMP/polls")" = 2 ] || bad "jobs Slurm forgot: $(cat "$TMP/polls") polls, not 2"

# 3. The same sweep again after the config's event count changed: the dataset is prepared again.
hash_of() { sed -n 's/^data_config_hash: \(0x[0-9a-f]*\).*/\1/p' "$TMP/out/data/meta.yaml"; }
sed 's/events: 4000/events: 5000/' "$SRC/tests/data/slurm-tiny.yaml" >"$TMP/tiny5k.yaml"
want="$("$RD" config --layout "$TMP/tiny5k.yaml" | sed -n 's/^data_hash=//p')"
old="$(hash_of)"
if [ -z "$old" ] || [ "$old" = "$want" ]; then bad "hashes: first sweep '$old', changed config '$want'"; fi
KEEP=1 CONFIG="$TMP/tiny5k.yaml" sweep end
rc=$?
[ "$rc" -eq 0 ] || bad "sweep after a data change: exit $rc: $(cat "$TMP/w.out" "$TMP/w.err")"
[ "$(hash_of)" = "$want" ] || bad "sweep after a data change kept the dataset of $(hash_of), not $want"
grep -q "out/data was prepared from another data configuration (data_config_hash $old, $want for $TMP/tiny5k.yaml): preparing it again" \
    "$TMP/w.err" || bad "sweep after a data change: not said: $(cat "$TMP/w.err")"
# ... and not when the data config is the same (only the ranks or the batch changed).
KEEP=1 CONFIG="$TMP/tiny5k.yaml" sweep end
grep -q "preparing" "$TMP/w.err" && bad "the same data config prepared again: $(cat "$TMP/w.err")"

# 4. A sweep run again into the folder of a completed one, whose jobs never leave a trace.
sweep end || bad "first sweep: $(cat "$TMP/w.out" "$TMP/w.err")"
KEEP=1 sweep lost
rc=$?
[ "$rc" -eq 1 ] || bad "a rerun whose jobs left nothing: exit $rc, not 1: $(cat "$TMP/w.out")"
grep -q COMPLETED "$TMP/out/sweep.txt" && bad "a rerun whose jobs left nothing: $(cat "$TMP/out/sweep.txt")"

[ "$fail" -eq 0 ] && echo "sweep_wait: ok"
exit "$fail"
