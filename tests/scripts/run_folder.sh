#!/usr/bin/env bash
# run_folder.sh — what train and prepare find out about their folders before any work, and what
# they leave when stopped:
#   1. `train --out F` (F a regular file), ps.checkpoint_dir or data.dir a regular file: "... F is
#      not a folder" at once, nothing trained, nothing made;
#   2. a run folder whose checkpoint path (<out>/ckpt/<job>/.step-NNNNNNNNNNNN.partial) or data.dir
#      is over its limit: refused before anything is made (no run folder left), the message naming
#      the path, its length and the limit (it used to train to the end, then abort);
#   3. an unwritable run folder or checkpoint folder (a read-only bind mount as root, else mode
#      555): refused at start-up, naming the folder, nothing trained;
#   1b. a launch that fails on its data (prepare) leaves no run folder it created (nor the target
#       log and its lock file a distillation launch made); a launch into a run folder another
#       launch holds (<out>/run.lock) is refused before it removes anything, and so is one whose
#       checkpoint folder another holds, also through a symlink <out>/ckpt -> that folder;
#   4. `prepare` stopped by SIGTERM: the "<data.dir>.tmp-<pid>.<host>" folder is removed; a train
#      launch stopped by SIGTERM while it prepares removes it too, or (rank 0 SIGKILLed by the
#      launcher first) the next prepare does; after a SIGKILL the next prepare removes the dead
#      process's folder, and leaves another host's and a running process's alone.
#
#   bash tests/scripts/run_folder.sh build/recdistill
set -u
. "$(cd "$(dirname "$0")" && pwd)/lib/flock.sh" # hold_lock, release_lock
RD="${1:?usage: run_folder.sh path/to/recdistill}"
case "$RD" in /*) ;; *) RD="$PWD/$RD" ;; esac
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skipped"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_runfolder_XXXXXX)"
MNT=""
cleanup() {
    [ -z "$MNT" ] || umount "$MNT" 2>/dev/null
    chmod -R u+w "$TMP" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
cd "$TMP" || exit 1
export OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 120 "$MPIEXEC" -n 2 "$RD" train "$@" </dev/null >out 2>err; }
# expect_refused MESSAGE: the last train exited 1 at start-up, saying MESSAGE, having trained nothing.
expect_refused() {
    local rc=$?
    [ $rc -eq 1 ] || fail "exit $rc, expected 1: $(grep -v INFO err | head -3)"
    grep -qF -- "$1" err || fail "message lacks '$1': $(grep -v INFO err | head -3)"
    ! grep -q 'stream window\|preparing the dataset' out || fail "work was done before the refusal"
    echo "ok: $(grep -F -- "$1" err | head -1 | cut -c1-160)"
}

cat >c.yaml <<'YAML'
run: {name: tiny, seed: 5}
cluster:
  ps_ranks: 1
  jobs:
    - {name: student, role: student, model: small}
data:
  source: synthetic
  history_max: 16
  synthetic: {events: 6000, users: 60, items: 300}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 3}
ps:
  tables:
    - {name: s_user, dim: 4}
models:
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_user}
    mlp: [16]
train: {batch_size: 64, epochs: 1}
output: {progress_every_s: 0, plot: false}
YAML
with_ps() { sed "s|^ps:|ps:\n  $1|" c.yaml; }
with_data() { sed "s|^data:|data:\n  $1|" c.yaml; }

# --- 1. a regular file where a folder belongs
echo x >F
run c.yaml --out F
expect_refused "run folder F is not a folder"
[ "$(cat F)" = x ] || fail "F was changed"
with_ps "checkpoint_dir: $TMP/F" >ck.yaml
run ck.yaml --out R1
expect_refused "checkpoint folder (ps.checkpoint_dir) $TMP/F is not a folder"
[ ! -e R1 ] || fail "a refused launch left its run folder R1"
with_data "dir: $TMP/F" >dd.yaml
run dd.yaml --out R2
expect_refused "dataset folder (data.dir) $TMP/F is not a folder"
[ ! -e R2 ] || fail "a refused launch left its run folder R2"

# A launch whose data fails to prepare (here a CSV without the label column) removes the run
# folder it created, parents included, and leaves a folder that existed before.
printf 'user,item,ts,click\nu1,i1,1,1\nu2,i2,2,0\n' >log.csv
sed -e 's|^  source: synthetic$|  source: csv\n  input: .\n  schema: {path: log.csv, user_column: user, item_column: item, time_column: ts, label: "clik >= 1"}|' \
    c.yaml >nolabel.yaml
grep -q 'clik' nolabel.yaml || fail "could not write the no-label config"
run nolabel.yaml --out N1/a/b && fail "a launch without its label column succeeded"
grep -q "no column 'clik'" err || fail "no-label message: $(grep -v INFO err | head -3)"
[ ! -e N1 ] || fail "a launch that failed on its data left $(find N1 | head -3)"
mkdir -p N2/keep
run nolabel.yaml --out N2/keep/run && fail "a launch without its label column succeeded"
[ -d N2/keep ] && [ ! -e N2/keep/run ] || fail "N2: $(find N2)"

# The same with a teacher and a distilled student: the target log the launch created (its
# writer.lock) went to the left-overs, and with it the run folder it sits in.
cat >dist.yaml <<'YAML'
run: {name: dist, seed: 5}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
    - {name: student, role: student, model: small, distill: true}
data:
  source: csv
  input: .
  schema: {path: log.csv, user_column: user, item_column: item, time_column: ts, label: "clik >= 1"}
ps:
  tables:
    - {name: t, dim: 4}
    - {name: s, dim: 4}
models:
  - {name: big, features: [{field: user, table: t}, {field: item, table: t}], mlp: [16]}
  - {name: small, features: [{field: user, table: s}, {field: item, table: s}], mlp: [8], two_towers: true}
train: {batch_size: 64, epochs: 1}
output: {progress_every_s: 0, plot: false}
YAML
timeout 120 "$MPIEXEC" -n 3 "$RD" train dist.yaml --out N3 </dev/null >out 2>err &&
    fail "a distillation launch without its label column succeeded"
grep -q "no column 'clik'" err || fail "dist no-label message: $(grep -v INFO err | head -3)"
[ ! -e N3 ] || fail "a distillation launch that failed on its data left $(find N3 | head -5)"

# A second launch into a run folder in use (here its run.lock held by flock(1)) is refused
# before it removes anything: two launches removed each other's checkpoints and reports.
if command -v flock >/dev/null; then
    mkdir -p R5 && echo earlier >R5/report.json
    hold_lock R5/run.lock
    run c.yaml --out R5
    expect_refused "run folder R5 is in use by another writer"
    release_lock
    [ "$(cat R5/report.json)" = earlier ] || fail "a refused launch removed the folder's report"
    run c.yaml --out R5 || fail "R5 after the lock was released: $(grep -v INFO err | head -3)"
    # The same for a checkpoint folder outside the run folder (two launches on one removed each
    # other's live checkpoints); a refused launch leaves no run folder.
    mkdir -p CK && with_ps "checkpoint_dir: $TMP/CK" >ckx.yaml
    hold_lock CK/writer.lock
    run ckx.yaml --out R6
    expect_refused "checkpoint folder (ps.checkpoint_dir) $TMP/CK is in use by another writer"
    [ ! -e R6 ] || fail "a launch refused by its checkpoint folder left its run folder"
    release_lock
    run ckx.yaml --out R6 || fail "R6 after the lock was released: $(grep -v INFO err | head -3)"
    ls CK/student | grep -q '^step-' || fail "R6 wrote no checkpoint into CK"
    # A run folder whose ckpt is a symlink to a shared folder: its checkpoints are outside the
    # run folder as the file system has it, so the shared folder's lock holds (it was taken for
    # inside, no lock was taken, and two such launches removed each other's live checkpoints).
    mkdir -p R8 && ln -s "$TMP/CK" R8/ckpt
    hold_lock CK/writer.lock
    run c.yaml --out R8
    expect_refused "checkpoint folder (ps.checkpoint_dir) R8/ckpt is in use by another writer"
    release_lock
    # A launch that fails on its data removes the checkpoint folder it made (and its lock).
    sed "s|^ps:|ps:\n  checkpoint_dir: $TMP/CK2/sub|" nolabel.yaml >ckn.yaml
    run ckn.yaml --out R7 && fail "a launch without its label column succeeded"
    grep -q "no column 'clik'" err || fail "ckn message: $(grep -v INFO err | head -3)"
    [ ! -e CK2 ] && [ ! -e R7 ] || fail "a failed launch left $(find CK2 R7 2>/dev/null | head -3)"
fi

# --- 2. paths over their limits, said before anything is made (limits of RD_PATH_MAX 1024; the
# paths are made of 200-byte components, as a file name is at most 255 bytes)
long() {
    local n=$1 b="$TMP/L/"
    printf '%s' "$b"
    awk -v n=$((n - ${#b})) 'BEGIN { for (i = 0; i < n; i++) printf "%s", (i % 200 == 199 && i < n - 1) ? "/" : "x" }'
}
OUT=$(long 968) # <out>/ckpt/student/.step-N.partial: 1008 bytes, over 1007
[ ${#OUT} -eq 968 ] || fail "long 968 made ${#OUT} bytes"
run c.yaml --out "$OUT"
expect_refused "ps.checkpoint_dir: job 'student' checkpoints into '$OUT/ckpt/student/.step-000000000000.partial', 1008 bytes: longer than the limit of 1007 bytes"
[ ! -e "$TMP/L" ] || fail "a refused launch left $(find "$TMP/L" | head -3)"
OUT=$(long 990) # <out>/data: 995 bytes, over 991 (with the checkpoint folder elsewhere)
with_ps "checkpoint_dir: $TMP/ck" >ck2.yaml
run ck2.yaml --out "$OUT"
expect_refused "data.dir: '$OUT/data' is 995 bytes: longer than the limit of 991 bytes"
[ ! -e "$TMP/L" ] && [ ! -e "$TMP/ck" ] || fail "a refused launch left folders behind"
OUT=$(long 960) # just under every limit: trains to its report; its checkpoint verifies and exports
run c.yaml --out "$OUT" || fail "a 960-byte run folder: $(grep -v INFO err | tail -3)"
[ -s "$OUT/report.json" ] && ls "$OUT/ckpt/student" | grep -q '^step-' ||
    fail "a 960-byte run folder wrote no report or checkpoint"
CK=$(ls -d "$OUT"/ckpt/student/step-* | tail -1)
"$RD" table verify "$CK" >/dev/null 2>err || fail "table verify in a 960-byte run folder: $(head -3 err)"
"$RD" export c.yaml --out "$OUT/student.rdsv" --run "$OUT" >/dev/null 2>err ||
    fail "export from a 960-byte run folder: $(head -3 err)"
[ -s "$OUT/student.rdsv" ] || fail "export from a 960-byte run folder wrote no bundle"
echo "ok: a 960-byte run folder trains, checkpoints, verifies and exports"
rm -rf "$TMP/L"

# --- 3. unwritable folders
mkdir -p src/sub
if [ "$(id -u)" -eq 0 ]; then
    mkdir -p ro
    if mount --bind src ro 2>/dev/null && mount -o remount,bind,ro ro 2>/dev/null; then
        MNT="$TMP/ro"
        WHY="Read-only file system"
    else
        umount ro 2>/dev/null
        echo "root without mount: unwritable-folder cases skipped"
        WHY=""
    fi
else
    mv src ro && chmod 555 ro ro/sub
    WHY="Permission denied"
fi
if [ -n "$WHY" ]; then
    run c.yaml --out ro
    expect_refused "run folder ro: cannot write in folder ro: $WHY"
    run c.yaml --out ro/sub/run
    expect_refused "run folder ro/sub/run: cannot write in folder ro/sub: $WHY"
    with_ps "checkpoint_dir: $TMP/ro/ck" >ck3.yaml
    run ck3.yaml --out W
    expect_refused "checkpoint folder (ps.checkpoint_dir) $TMP/ro/ck: cannot write in folder $TMP/ro: $WHY"
    [ ! -e W ] || fail "a refused launch left its run folder W"
    ! ls -a ro ro/sub | grep -q probe || fail "a probe file was left"
fi

# --- 4. stopped prepares
sed 's/events: 6000/events: 3000000/' c.yaml >big.yaml
host=$(hostname | tr -c 'a-zA-Z0-9\n' '-' | cut -c1-40)
# wait_tmp PATTERN: until a temporary dataset folder exists (at most 60 s).
wait_tmp() {
    for _ in $(seq 600); do
        # A moment more (the folder is registered for removal before its mkdir; the wait is kept).
        compgen -G "$1" >/dev/null && sleep 0.3 && return 0
        sleep 0.1
    done
    fail "no temporary folder $1 appeared"
}
"$RD" prepare big.yaml --out P/data >/dev/null 2>&1 &
pid=$!
wait_tmp "P/data.tmp-$pid.$host"
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || fail "prepare after SIGTERM: exit $rc, expected 143"
[ -z "$(ls -A P)" ] || fail "SIGTERM during prepare left: $(ls -A P)"
echo "ok: SIGTERM during prepare removes its temporary folder"

timeout 120 "$MPIEXEC" -n 2 "$RD" train big.yaml --out Q </dev/null >/dev/null 2>&1 &
pid=$!
wait_tmp "Q/data.tmp-*"
kill -TERM $pid
wait $pid
for _ in $(seq 100); do # the ranks end after mpiexec
    compgen -G "Q/data.tmp-*" >/dev/null || break
    sleep 0.1
done
# Rank 0 removes its folder when the launcher forwards the SIGTERM; but when another rank dies
# first, the launcher SIGKILLs rank 0, which may come before its handler ran (seen on a loaded
# machine). Then the folder is a dead process's, and the next prepare beside it removes it.
if compgen -G "Q/data.tmp-*" >/dev/null; then
    left=$(ls -A Q)
    "$RD" prepare c.yaml --out Q/data >out 2>err || fail "prepare after the launch: $(tail -3 err)"
    ! compgen -G "Q/data.tmp-*" >/dev/null ||
        fail "SIGTERM of a train launch during prepare left $left, and the next prepare kept it"
    echo "ok: SIGTERM of a train launch during prepare: rank 0 was killed before its handler ran; the next prepare removed $left"
else
    echo "ok: SIGTERM of a train launch during prepare removes the temporary folder"
fi

"$RD" prepare big.yaml --out K/data >/dev/null 2>&1 &
pid=$!
wait_tmp "K/data.tmp-$pid.$host"
kill -KILL $pid
wait $pid
[ -d "K/data.tmp-$pid.$host" ] || fail "SIGKILL left no temporary folder (the test cannot tell)"
mkdir "K/data.tmp-999999.otherhost" "K/data.tmp-$$.$host" # another host's; a running process's
"$RD" prepare c.yaml --out K/data >out 2>err || fail "prepare after a SIGKILL: $(grep -v INFO err | tail -3)"
[ ! -e "K/data.tmp-$pid.$host" ] || fail "the dead prepare's temporary folder was not removed"
grep -qF "removed K/data.tmp-$pid.$host: temporary dataset folder of process $pid" err ||
    fail "no warning names the removed folder: $(head -3 err)"
[ -d "K/data.tmp-999999.otherhost" ] && [ -d "K/data.tmp-$$.$host" ] ||
    fail "another host's or a running process's temporary folder was removed"
[ -s K/data/events.bin ] || fail "no dataset after the cleanup"
echo "ok: a later prepare removes a dead process's temporary folder, and only that"
# --- 5. report.json stays valid JSON whatever the config's path holds: a quote, a backslash and
# a byte that is not UTF-8 (the config path was written unescaped).
odd="$TMP/q\"b\\s$(printf '\351')x"
mkdir -p "$odd" && cp c.yaml "$odd/c.yaml"
run "$odd/c.yaml" --out J || fail "a config under $odd: $(grep -v INFO err | tail -3)"
python3 - J/report.json "$odd/c.yaml" <<'PY' || fail "report.json of a config under an odd path"
import json, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))
want = sys.argv[2].encode("utf-8", "surrogateescape").decode("latin-1")
assert r["config"] == want, (r["config"], want)
PY
echo "ok: report.json names a config under an odd path as valid JSON"
echo "run_folder.sh: ok"
