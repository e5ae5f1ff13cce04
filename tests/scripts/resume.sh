#!/usr/bin/env bash
# resume.sh — `recdistill train CONFIG --resume CKPT` continues exactly (synchronous PS):
# a run resumed from a checkpoint in the middle of a batch epoch, or in the middle of a stream
# window, ends with the SAME final checkpoint as the uninterrupted run (dense.bin and the PS
# MANIFEST with every shard's CRC byte-identical) and the same holdout metrics; a checkpoint
# resharded from 2 to 1 and to 3 PS shards (`table reshard`) and resumed on that many PS ranks
# ends with identical dense parameters and identical rows. kill -9 of every rank while the job
# checkpoints every 2 steps leaves only whole step-N directories, and resuming from the newest ends
# exactly like the uninterrupted run. Bad input: a missing checkpoint, a
# checkpoint of another model config (the message names the model, the table or the seed that
# differs), another job rank count, batch size, train.order, data.split or dataset, a checkpoint
# of 2 shards on 1 PS rank — every rank exits non-zero with a clear message and writes no checkpoint; a root
# without one job's checkpoints fails before any job writes. A checkpoint of an older build
# (dense.bin version 1) still resumes exactly, with one warning. A student replaying a target log
# alone (distill.replay) resumes byte-identical to an uninterrupted replay; a teacher and its live
# student resume each from its newest checkpoint, in the same phase or phases apart (the teacher
# done while the student is in its batch epoch, the student done while the teacher is): they
# begin the phases at the earlier one, the teacher sends again from its target log what it sent
# from there up to its checkpoint, the student drops what it trained on before its own, and they
# end byte-identical too (also after kill -9 of every rank), or, when the log lacks the teacher's
# targets, from the newest phase start both have; a log missing targets the checkpoint needs is
# refused; when their ranks do not see the checkpoint root rank 0
# checked, they say what the path is.
#
#   bash tests/scripts/resume.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: resume.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_resume_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" "$@"; }
LIB="$(cd "$(dirname "$0")" && pwd)/lib"
# shellcheck source=lib/pair_yaml.sh
. "$LIB/pair_yaml.sh" # pair_yaml
cd "$TMP" || exit 1

config() { # $1 = PS ranks, $2 = mlp width
    cat <<YAML
run: {name: tiny, seed: 5}
cluster:
  ps_ranks: $1
  jobs:
    - {name: student, role: student, model: small}
data:
  source: synthetic
  dir: $TMP/data
  history_max: 16
  synthetic: {events: 6000, users: 60, items: 300}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 3}
ps:
  checkpoint_every: 20
  checkpoint_keep: 100
  tables:
    - {name: s_user, dim: 4, admit_count: 2}
    - {name: s_item, dim: 4, optimizer: {type: adam, lr: 0.01}}
models:
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_item}
      - {field: hour, table: s_user}
    seq: {kind: mean, length: 8}
    mlp: [$2]
    two_towers: true
train: {batch_size: 64, epochs: 2}
output: {progress_every_s: 0}
YAML
}
config 2 16 > p2.yaml
config 1 16 > p1.yaml
config 3 16 > p3.yaml
config 2 12 > other.yaml

run -n 3 "$RD" train p2.yaml --out A >A.out 2>A.err || fail "train A: $(cat A.err)"
CK=A/ckpt/student
FINAL="$(ls -d $CK/step-* | tail -1)"
F="$(basename "$FINAL")"
[ "$F" = "step-000000000162" ] || fail "unexpected final checkpoint $F"
grep -Eq "^student +holdout +0\.[0-9]" A.out || fail "no holdout row in the final table: $(cat A.out)"
holdout() { # the student's holdout row of the final table (fails the test when there is none)
    local r
    r=$(grep -E "^student +holdout +0\.[0-9]" "$1" | head -1)
    [ -n "$r" ] || fail "no holdout row in $1: $(tail -5 "$1")"
    echo "$r"
}

# --- same P: bit-identical ------------------------------------------------------------------------
for st in 000000000040 000000000140 000000000160; do
    rm -rf B
    run -n 3 "$RD" train p2.yaml --out B --resume $CK/step-$st >B.out 2>B.err || fail "resume $st: $(cat B.err)"
    grep -q "resumed from .*step-$st" B.out || fail "no resume line: $(cat B.out)"
    cmp -s "$FINAL/dense.bin" "B/ckpt/student/$F/dense.bin" || fail "resume from $st: dense.bin differs"
    cmp -s "$FINAL/MANIFEST" "B/ckpt/student/$F/MANIFEST" || fail "resume from $st: tables differ (MANIFEST CRCs)"
    [ "$(holdout A.out)" = "$(holdout B.out)" ] || fail "resume from $st: holdout differs"
    # Every stream window's metrics, those evaluated before the checkpoint too (its windows.tsv):
    # the metrics file equals the uninterrupted run's but for the throughput column.
    cut -d, -f1-7 A/student.metrics.csv > a.csv && cut -d, -f1-7 B/student.metrics.csv > b.csv
    cmp -s a.csv b.csv || fail "resume from $st: metrics differ: $(diff a.csv b.csv)"
    grep -q "^stream,0,0\.[0-9]" b.csv || fail "resume from $st: no window 0 metrics: $(cat b.csv)"
    # Throughput and traffic are the resumed launch's: its samples over its seconds, its bytes
    # over its samples; every stream window has a throughput (a checkpoint at a window's last
    # step recorded 0 for it, and samples_per_s divided the whole timeline by the launch's time).
    python3 - A/report.json B/report.json B/student.metrics.csv <<'PY' || fail "resume from $st: throughput"
import csv, json, sys
a = json.load(open(sys.argv[1]))["jobs"]["student"]
b = json.load(open(sys.argv[2]))["jobs"]["student"]
assert a["launch_samples"] == a["train_samples"] == b["train_samples"], (a, b)
assert 0 < b["launch_samples"] < b["train_samples"], b
assert abs(b["samples_per_s"] - b["launch_samples"] / b["train_s"]) <= 1e-3 * b["samples_per_s"], b  # train_s has 6 decimals
assert b["comm"]["samples"] == b["launch_samples"], b["comm"]
rows = [r for r in csv.DictReader(open(sys.argv[3])) if r["phase"] == "stream"]
assert rows and all(float(r["samples_per_s"]) > 0 for r in rows), rows
PY
done
# A checkpoint whose dense.bin is of another step than its tables: refused at start-up, before
# the run folder's earlier report is removed (the job refused it only after).
rm -rf mix M && cp -a "$FINAL" mix && cp $CK/step-000000000040/dense.bin mix/ && cp -a A M
run -n 3 "$RD" train p2.yaml --out M --resume mix >M.out 2>M.err && fail "a mixed checkpoint resumed"
grep -q -- "--resume: mix: tables of step 162, dense.bin of step 40" M.err || fail "mixed checkpoint: $(cat M.err)"
[ -s M/report.json ] || fail "a refused resume removed the earlier report"
rm -rf mix M
# A checkpoint with a shard missing (a partial copy) or cut short, or a damaged windows.tsv:
# refused at start-up, naming the shard or file, before a new run folder is made (the PS ranks
# refused the shard, and the job the windows.tsv, only after the run folder, its data and its
# lock were made).
for cut in missing short windows; do
    rm -rf ns NS && cp -a "$FINAL" ns
    if [ $cut = missing ]; then
        rm -rf ns/shard-00001; re="checkpoint shard ns/shard-00001 does not exist"
    elif [ $cut = short ]; then
        truncate -s 8192 ns/shard-00001/data.mdb; re=".*ns/shard-00001"
    else
        [ -s ns/windows.tsv ] || fail "the final checkpoint has no windows.tsv"
        printf 'garbage\n' >ns/windows.tsv; re="ns/windows.tsv:1: "
    fi
    run -n 3 "$RD" train p2.yaml --out NS --resume ns >NS.out 2>NS.err && fail "a checkpoint with its shard $cut resumed"
    grep -Eq -- "--resume: $re" NS.err || fail "shard $cut: $(cat NS.err)"
    [ ! -e NS ] || fail "shard $cut: a refused resume left a run folder: $(ls -R NS | head)"
done
rm -rf ns NS
# A checkpoint root resumes each job from its newest checkpoint.
rm -rf B
mkdir -p root/student && cp -r $CK/step-000000000100 root/student/
run -n 3 "$RD" train p2.yaml --out B --resume root >B.out 2>B.err || fail "resume root: $(cat B.err)"
grep -q "resumed from root/student/step-000000000100" B.out || fail "root resume: $(cat B.out)"
cmp -s "$FINAL/dense.bin" "B/ckpt/student/$F/dense.bin" || fail "root resume: dense.bin differs"

# --- resharded to 1 and 3 PS ranks ---------------------------------------------------------------
for P in 1 3; do
    rm -rf R$P C$P
    "$RD" table reshard $CK/step-000000000060 --shards $P --out R$P >/dev/null || fail "reshard $P"
    cmp -s $CK/step-000000000060/windows.tsv R$P/windows.tsv || fail "reshard $P: windows.tsv not copied along"
    run -n $((P + 1)) "$RD" train p$P.yaml --out C$P --resume R$P >C.out 2>C.err || fail "resume on $P: $(cat C.err)"
    cmp -s "$FINAL/dense.bin" "C$P/ckpt/student/$F/dense.bin" || fail "P=$P: dense.bin differs"
    for t in s_user s_item; do
        "$RD" table export "$FINAL" --table $t --out a.tsv && "$RD" table export "C$P/ckpt/student/$F" --table $t --out c.tsv || fail "export"
        cmp -s a.tsv c.tsv || fail "P=$P: rows of $t differ"
    done
    [ "$(holdout A.out)" = "$(holdout C.out)" ] || fail "P=$P: holdout differs"
done

# --- kill -9 of every rank while it checkpoints: every step-N left is whole, resume is exact -------
# The run must still be going when it is killed: 162 steps of this config take well under a
# second on an idle machine, so it trains on 24000 events (about 650 steps; its own data.dir:
# train refuses a folder prepared from another data config), and the kill comes
# as soon as two checkpoints are whole (counted with a glob: the rotation deletes old ones while
# ls would list them).
sed -e 's/events: 6000/events: 24000/' -e "s|dir: $TMP/data|dir: $TMP/data_kill|" \
    -e 's/checkpoint_every: 20/checkpoint_every: 2/' \
    -e 's/checkpoint_keep: 100/checkpoint_keep: 3/' p2.yaml > kill.yaml
run -n 3 "$RD" train kill.yaml --out KQ >/dev/null 2>err || fail "uninterrupted: $(cat err)"
run -n 3 "$RD" train kill.yaml --out "$TMP/K" >K0.out 2>K0.err &
for _ in $(seq 1 1200); do
    [ "$(compgen -G 'K/ckpt/student/step-*' | wc -l)" -ge 2 ] && break
    sleep 0.02
done
pids=$(pgrep -f "^$RD train kill.yaml --out $TMP/K\$")
[ -n "$pids" ] || fail "the run ended before it could be killed: $(ls K/ckpt/student 2>&1 | tail -n 3) $(cat K0.out K0.err | tail -n 3)"
kill -9 $pids
wait
for d in K/ckpt/student/step-*; do
    "$RD" table verify "$d" | grep -q "dense.bin ok" || fail "after kill -9: $d is not whole"
done
run -n 3 "$RD" train kill.yaml --out "$TMP/K" --resume K/ckpt >K.out 2>err || fail "resume after kill: $(cat err)"
grep -q "resumed from" K.out || fail "no resume after kill"
f=$(ls KQ/ckpt/student | tail -1)
cmp -s "KQ/ckpt/student/$f/dense.bin" "K/ckpt/student/$f/dense.bin" &&
    cmp -s "KQ/ckpt/student/$f/MANIFEST" "K/ckpt/student/$f/MANIFEST" || fail "kill -9 + resume differs"
ls -a K/ckpt/student | grep -q '^\.step-' && fail "crash leftovers not cleaned"

# --- cadence by stream windows and by seconds -------------------------------------------------------
# 3 windows of 200 events = 4 steps each after 150 batch steps: window ends at steps 154, 158, 162
# (the last one is also the final checkpoint). Resuming from a window end is exact too.
sed -e 's/checkpoint_every: 20/checkpoint_every: 0\n  checkpoint_every_windows: 1/' p2.yaml > win.yaml
run -n 3 "$RD" train win.yaml --out W >W.out 2>err || fail "window cadence: $(cat err)"
[ "$(ls W/ckpt/student | tr '\n' ' ')" = "step-000000000154 step-000000000158 step-000000000162 " ] ||
    fail "window cadence wrote: $(ls W/ckpt/student)"
rm -rf B
run -n 3 "$RD" train win.yaml --out B --resume W/ckpt/student/step-000000000158 >B.out 2>err ||
    fail "resume from a window end: $(cat err)"
cmp -s "W/ckpt/student/$F/dense.bin" "B/ckpt/student/$F/dense.bin" || fail "window resume: dense.bin differs"
[ "$(holdout A.out)" = "$(holdout W.out)" ] || fail "window cadence changed the training"
# Every second of job rank 0's clock, with 0.1 s steps: several checkpoints, each whole.
sed -e 's/checkpoint_every: 20/checkpoint_every: 0\n  checkpoint_every_s: 1/' p2.yaml > sec.yaml
run -n 3 "$RD" train sec.yaml --out S >/dev/null 2>err || fail "time cadence: $(cat err)"
[ "$(ls -d S/ckpt/student/step-* | wc -l)" -ge 1 ] || fail "time cadence wrote nothing"
for d in S/ckpt/student/step-*; do
    "$RD" table verify "$d" | grep -q "dense.bin ok" || fail "time cadence: $d is not whole"
done

# --- bad input --------------------------------------------------------------------------------
bad() { # $1 = message regex, rest = launch
    local re="$1"; shift
    run "$@" >o 2>e; local rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$*: exit $rc"
    grep -Eq -e "$re" e || fail "$*: message: $(cat e)"
}
# Resumed from the final checkpoint (after the last window), the run only scores the holdout: the
# same holdout, and every window's metrics from the checkpoint.
rm -rf B
run -n 3 "$RD" train p2.yaml --out B --resume $FINAL >B.out 2>B.err || fail "resume from the final checkpoint: $(cat B.err)"
[ "$(holdout A.out)" = "$(holdout B.out)" ] || fail "resume from the final checkpoint: holdout differs"
cut -d, -f1-7 B/student.metrics.csv > b.csv
cmp -s a.csv b.csv || fail "resume from the final checkpoint: metrics differ: $(diff a.csv b.csv)"
# old_dense VERSION DENSE: rewrite a dense.bin of this build (version 3) as an older build wrote
# it (lib/old_dense.py): version 2, the build before (the identity record, no data.split), or
# version 1 (no identity record either), its CRC recomputed.
old_dense() {
    python3 "$LIB/old_dense.py" "$1" "$2" || fail "could not write a version-$1 $2"
}
# A checkpoint inside window 2 records windows 0-2; without its windows.tsv the run resumes with
# one warning and those windows NaN: of an older build (dense.bin version 2) it says so, of this
# one (version 3, always written with it) that the file was lost in a copy (it said "an older
# build" of both). A damaged one is refused by name and line.
ls $CK/step-000000000160/windows.tsv >/dev/null || fail "no windows.tsv in $CK/step-000000000160"
[ "$(wc -l < $CK/step-000000000160/windows.tsv)" = 4 ] || fail "windows.tsv: $(cat $CK/step-000000000160/windows.tsv)"
rm -rf NW B && cp -r $CK/step-000000000160 NW && rm NW/windows.tsv
run -n 3 "$RD" train p2.yaml --out B --resume NW >B.out 2>B.err || fail "resume without windows.tsv: $(cat B.err)"
grep -q "holds no windows.tsv (lost in a copy? dense.bin version 3 is always written with it: copy it along to keep them).*3 stream window" B.err ||
    fail "no lost-windows.tsv warning: $(cat B.err)"
grep -q "^stream,0,nan" B/student.metrics.csv || fail "without windows.tsv: $(cat B/student.metrics.csv)"
rm -rf NWV2 B && cp -r NW NWV2 && old_dense 2 NWV2/dense.bin
run -n 3 "$RD" train p2.yaml --out B --resume NWV2 >B.out 2>B.err || fail "resume of version 2 without windows.tsv: $(cat B.err)"
grep -q "holds no windows.tsv (an older build).*3 stream window" B.err || fail "no older-build windows.tsv warning: $(cat B.err)"
# `table verify` agrees: absent is fine of version 2, a problem of version 3 (it said ok).
"$RD" table verify NWV2 >/dev/null 2>B.err || fail "verify of version 2 without windows.tsv: $(cat B.err)"
"$RD" table verify NW >/dev/null 2>B.err && fail "verify of version 3 without windows.tsv said ok"
grep -q "NW/windows.tsv: missing.*3 stream window" B.err || fail "verify of NW: $(cat B.err)"
grep -q "^stream,0,nan" B/student.metrics.csv || fail "version 2 without windows.tsv: $(cat B/student.metrics.csv)"
rm -rf B && cp -r $CK/step-000000000160 NW2 && sed -i '3s/^1\t[0-9]*/1\tx/' NW2/windows.tsv
bad "NW2/windows.tsv:3: not a window-metrics line" -n 3 "$RD" train p2.yaml --out B --resume NW2
rm -rf B && cp -r $CK/step-000000000160 NW3 && sed -i '4d' NW3/windows.tsv
bad "NW3/windows.tsv: 2 window\(s\), the checkpoint is in window 2 \(expected 3\)" -n 3 "$RD" train p2.yaml --out B --resume NW3
# Not CRC-protected: values no evaluation gives are refused too (an AUC of -5 was reported).
rm -rf B && cp -r $CK/step-000000000160 NW4 && sed -i '2s/^\(0\t[0-9]*\t[0-9]*\t[0-9]*\t\)[^\t]*/\1-5/' NW4/windows.tsv
grep -q "^0.*	-5	1	" NW4/windows.tsv || fail "could not edit NW4/windows.tsv: $(cat NW4/windows.tsv)"
bad "NW4/windows.tsv:2: window 0: auc outside \[0, 1\]" -n 3 "$RD" train p2.yaml --out B --resume NW4
rm -rf B && cp -r $CK/step-000000000160 NW5 && sed -i '3s/^\(1\t[0-9]*\t[0-9]*\t[0-9]*\t\)[^\t]*/\1nan/' NW5/windows.tsv
bad "NW5/windows.tsv:3: window 1: auc is NaN but auc_valid is 1" -n 3 "$RD" train p2.yaml --out B --resume NW5
# A batch-period checkpoint (no window evaluated: the header alone) with its windows.tsv emptied
# or given a window it cannot have: refused as `table verify` refuses it, before the run folder.
rm -rf B && cp -r $CK/step-000000000040 NW6 && [ "$(wc -l < NW6/windows.tsv)" = 1 ] ||
    fail "batch-period windows.tsv: $(cat NW6/windows.tsv)"
: > NW6/windows.tsv
bad "NW6/windows.tsv: empty \(no header\)" -n 3 "$RD" train p2.yaml --out B --resume NW6
[ ! -e B ] || fail "a refused batch-period windows.tsv left the run folder B"
cp -r $CK/step-000000000040 NW7 && sed -n 2p $CK/step-000000000160/windows.tsv >> NW7/windows.tsv
bad "NW7/windows.tsv: 1 window\(s\), the checkpoint is in window -1 \(expected 0\)" -n 3 "$RD" train p2.yaml --out B --resume NW7
[ ! -e B ] || fail "a refused batch-period windows.tsv left the run folder B"
rm -rf B NW NW2 NW3 NW4 NW5 NW6 NW7
# What a resume may change (docs/tools.md): the dense optimizer's numbers and adam -> adamw, a
# table's lr. The run takes them from the checkpoint on, so its end differs from A's; sgd has
# no Adam moments to continue and is refused.
sed -e 's/train: {batch_size: 64, epochs: 2}/train: {batch_size: 64, epochs: 2, optimizer: adamw, lr: 0.0005}/' \
    -e 's/optimizer: {type: adam, lr: 0.01}/optimizer: {type: adam, lr: 0.002}/' p2.yaml > lr.yaml
grep -q "adamw, lr: 0.0005" lr.yaml && grep -q "adam, lr: 0.002" lr.yaml || fail "could not edit lr.yaml"
rm -rf B && run -n 3 "$RD" train lr.yaml --out B --resume $CK/step-000000000040 >B.out 2>B.err ||
    fail "resume with other learning rates: $(cat B.err)"
grep -q "resumed from .*step-000000000040" B.out || fail "lr resume: $(cat B.out)"
cmp -s "$FINAL/dense.bin" "B/ckpt/student/$F/dense.bin" && fail "lr resume ended as the uninterrupted run"
sed -e 's/train: {batch_size: 64, epochs: 2}/train: {batch_size: 64, epochs: 2, optimizer: sgd}/' p2.yaml > sgd.yaml
bad "step-000000000040 was trained with train.optimizer adam \(2 state floats a parameter\); this run.s sgd \(0\) cannot continue that state \(resume with adam or adamw, or start a new run\)" -n 3 "$RD" train sgd.yaml --out X --resume $CK/step-000000000040
[ ! -e X ] || fail "the refused sgd resume left the run folder X"
rm -rf B X
bad "nowhere: No such file or directory" -n 3 "$RD" train p2.yaml --out X --resume nowhere
bad "step-000000000040: model 'small' differs .*config hash" -n 3 "$RD" train other.yaml --out X --resume $CK/step-000000000040
# The config hash names the part that differs: the seed, a table.
# (The run seed seeds the synthetic data too: its own data.dir.)
sed -e "s|dir: $TMP/data|dir: $TMP/data_seed6|" p2.yaml > seed6.yaml
bad "step-000000000040: written with run.seed 5, this run has 6 " -n 3 "$RD" train seed6.yaml --out X --resume $CK/step-000000000040 --seed 6
sed -e 's/{name: s_user, dim: 4, admit_count: 2}/{name: s_user, dim: 4, admit_count: 3}/' p2.yaml > admit.yaml
bad "step-000000000040: table 's_user' differs \(its dim and optimizer are the same: init_std, admit_count, ttl or init_as\)" -n 3 "$RD" train admit.yaml --out X --resume $CK/step-000000000040
grep -q "s_item" e && fail "the table message names s_item too: $(cat e)"
# The field the MANIFEST records is named (it said "differs (dim/optimizer/...)" for any of them).
sed -e 's/{name: s_user, dim: 4, admit_count: 2}/{name: s_user, dim: 8, admit_count: 2}/' p2.yaml > dim8.yaml
bad "step-000000000040: table 's_user' is dim 4 in the checkpoint, 8 in this run" -n 3 "$RD" train dim8.yaml --out X --resume $CK/step-000000000040
sed -e 's/{name: s_item, dim: 4, optimizer: {type: adam,/{name: s_item, dim: 4, optimizer: {type: adagrad,/' p2.yaml > opt.yaml
bad "step-000000000040: table 's_item' has optimizer adam in the checkpoint, adagrad in this run" -n 3 "$RD" train opt.yaml --out X --resume $CK/step-000000000040
# "Step k of the phase" only means the same examples for the same job ranks, batch size and
# order: each of them refused before any training, naming both partitions.
sed -e 's/{name: student, role: student, model: small}/{name: student, role: student, model: small, ranks: 2}/' p2.yaml > ranks2.yaml
bad "step-000000000040 was written with 1 rank x batch 64 in time order; this run has 2 x 64 in time order" -n 4 "$RD" train ranks2.yaml --out X --resume $CK/step-000000000040
sed -e 's/batch_size: 64/batch_size: 32/' p2.yaml > b32.yaml
bad "this run has 1 x 32 in time order" -n 3 "$RD" train b32.yaml --out X --resume $CK/step-000000000040
sed -e 's/epochs: 2}/epochs: 2, order: user}/' p2.yaml > user.yaml
grep -q "order: user" user.yaml || fail "could not write the user-order config"
bad "this run has 1 x 64 in user order" -n 3 "$RD" train user.yaml --out X --resume $CK/step-000000000040
# Another dataset (another synthetic seed, in its own data.dir): refused, naming both.
sed -e "s|dir: $TMP/data|dir: $TMP/data_other|" -e 's/items: 300}/items: 300, seed: 9}/' p2.yaml > otherdata.yaml
grep -q "seed: 9" otherdata.yaml || fail "could not write the other-data config"
bad "step-000000000040 was trained on another dataset \(6000 events, records CRC-32C 0x[0-9a-f]+\) than the one in $TMP/data_other \(6000 events, 0x" -n 3 "$RD" train otherdata.yaml --out X --resume $CK/step-000000000040
# Another data.split (its own data.dir, as a user's new run would have): the batch period and
# the stream windows hold other examples, and the checkpoint in window 2 of 3 resumed under 2
# windows ended at once, reporting the old split's windows as its own. Refused, naming both.
sed -e "s|dir: $TMP/data|dir: $TMP/data_split|" -e 's/stream_windows: 3}/stream_windows: 2}/' p2.yaml > split2.yaml
grep -q "stream_windows: 2" split2.yaml || fail "could not write the split config"
bad "step-000000000160 was written with data.split batch_fraction 0.8, holdout_fraction 0.1, stream_windows 3; this run has 0.8, 0.1, 2" -n 3 "$RD" train split2.yaml --out X --resume $CK/step-000000000160
# Another train.epochs: the checkpoint in the stream (after 2 batch epochs) resumed into the
# stream of a run of 3, which then never trained its third batch epoch. Refused, naming both.
sed -e 's/epochs: 2}/epochs: 3}/' p2.yaml > e3.yaml
grep -q "epochs: 3}" e3.yaml || fail "could not write the epochs config"
bad "step-000000000160 is in the stream \(window 2\) of a run of train.epochs 2; this run has train.epochs 3" -n 3 "$RD" train e3.yaml --out X --resume $CK/step-000000000160
for y in admit dim8 opt ranks2 b32 user otherdata split2 e3; do
    [ ! -e X/ckpt ] || fail "$y: a refused resume left checkpoints: $(ls -R X/ckpt | head)"
done
# A checkpoint of an older build (dense.bin version 1: no identity record) still resumes, with one
# warning that these cannot be checked, and ends like the uninterrupted run.
rm -rf V1 B && cp -r $CK/step-000000000040 V1
old_dense 1 V1/dense.bin
run -n 3 "$RD" train p2.yaml --out B --resume V1 >B.out 2>B.err || fail "resume of a version-1 dense.bin: $(cat B.err)"
[ "$(grep -c "dense.bin version 1 of an older build.*cannot be checked" B.err)" = 1 ] || fail "version 1: not one warning: $(cat B.err)"
cmp -s "$FINAL/dense.bin" "B/ckpt/student/$F/dense.bin" || fail "resume from version 1: dense.bin differs"
# A checkpoint of the build before (dense.bin version 2: the identity record, no data.split)
# still resumes, with one warning that its split cannot be checked (it resumed silently, its
# position read under whatever split the run had), and ends like the uninterrupted run.
rm -rf V2 B && cp -r $CK/step-000000000040 V2 && old_dense 2 V2/dense.bin
run -n 3 "$RD" train p2.yaml --out B --resume V2 >B.out 2>B.err || fail "resume of a version-2 dense.bin: $(cat B.err)"
[ "$(grep -c "dense.bin version 2 of an older build.*stream_windows 3), which cannot be checked" B.err)" = 1 ] ||
    fail "version 2: not one warning: $(cat B.err)"
grep -q "version 1" B.err && fail "version 2 warned as version 1: $(cat B.err)"
cmp -s "$FINAL/dense.bin" "B/ckpt/student/$F/dense.bin" || fail "resume from version 2: dense.bin differs"
bad "shard|P|layout" -n 2 "$RD" train p1.yaml --out X --resume $CK/step-000000000040
# Two jobs, and the checkpoint root holds only the first one's: the launch fails naming the
# second, and the first, whose resume went well, trains nothing and writes nothing (every job is
# set up and resumed before any job writes). The second job has tables of its own (a table has
# one writer in a launch).
sed -e 's/^    - {name: student, role: student, model: small}$/&\n    - {name: second, role: student, model: second}/' \
    -e 's/^    - {name: s_item, .*}$/&\n    - {name: s2_user, dim: 4}\n    - {name: s2_item, dim: 4}/' \
    -e 's/^train:/  - name: second\n    features:\n      - {field: user, table: s2_user}\n      - {field: item, table: s2_item}\n    mlp: [8]\n&/' \
    p2.yaml > two.yaml
grep -q "name: second" two.yaml || fail "could not write the two-job config"
bad "root: no checkpoint of job .second. inside" -n 4 "$RD" train two.yaml --out X2 --resume root
[ ! -e X2/ckpt ] && ! ls X2/*.metrics.* >/dev/null 2>&1 || fail "a failed resume left outputs: $(ls -R X2)"
# The shared data.dir was prepared for 6000 events: a config asking for 7000 must not train on it.
sed -e 's/events: 6000/events: 7000/' p2.yaml > more.yaml
bad "data.dir .*/data holds a dataset prepared from another data configuration" -n 3 "$RD" train more.yaml --out X
# --- a student replaying a target log alone resumes exactly ----------------------------------------
# Its targets come from the log by (sample, pass): a resumed replay ends byte-identical to an
# uninterrupted one (dense.bin, tables, holdout).
pair_yaml name=tl data="$TMP/data_replay" ckpt_every=20 \
    distill="{target_log: $TMP/targets, wait_ms: 600000}" > live.yaml || fail "could not write live.yaml"
grep -v "name: teacher, role: teacher" live.yaml | sed -e 's/distill: true}/distill: true, teacher: teacher}/' \
    -e "s|^distill: {target_log: $TMP/targets, wait_ms: 600000}|distill: {target_log: $TMP/targets, wait_ms: 600000, replay: true}|" > replay.yaml
grep -q "replay: true" replay.yaml || fail "could not write the replay config"
run -n 3 "$RD" train live.yaml --out L >L.out 2>L.err || fail "live run: $(cat L.err)"
# --- a teacher and its live student resume together, each from its newest checkpoint --------------
# Each job takes its own newest checkpoint, in whatever phase (batch epoch or stream window) it is:
# both begin the phase sequence at the earlier of the two. The teacher first sends again, from
# its target log, every target it sent from that phase up to its checkpoint (whole phases when it
# is phases ahead); the student drops those of the records it trained on before its own (counted
# duplicates), all of them in the phases before its checkpoint's when it is the one ahead. Both
# end byte-identical to the uninterrupted run, every target joined, none unused or late.
positions() { # $1 = job folder: "step epoch window range_step" per checkpoint
    python3 - "$1" <<'PY'
import glob, os, struct, sys
for d in sorted(glob.glob(sys.argv[1] + "/step-*")):
    b = open(d + "/dense.bin", "rb").read(96)
    step, epoch, window, rs = struct.unpack_from("<qiiq", b, 68)
    print(int(os.path.basename(d)[5:]), epoch, window, rs)
PY
}
trained() { # $1 = checkpoint: the examples its job had trained on (rd_train_pos.trained)
    python3 -c 'import struct, sys; print(struct.unpack_from("<Q", open(sys.argv[1] + "/dense.bin", "rb").read(100), 92)[0])' "$1"
}
positions L/ckpt/teacher > tpos && positions L/ckpt/student > spos
cmp -s tpos spos || fail "the teacher and the student have different schedules: $(cat tpos spos)"
# The start of batch epoch 1 (of 2) and of stream window 1; two checkpoints inside epoch 1 and
# one inside window 1.
E1=$(awk '$2 == 1 && $3 == -1 && $4 == 0 {print $1}' tpos); W1T=$(awk '$2 == 2 && $3 == 1 && $4 == 0 {print $1}' tpos)
MIDS=$(awk '$2 == 1 && $3 == -1 && $4 > 0 {print $1}' spos | sed -n 1p)
MIDS2=$(awk '$2 == 1 && $3 == -1 && $4 > 0 {print $1}' spos | sed -n 2p)
MIDW=$(awk '$2 == 2 && $3 == 1 && $4 > 0 {print $1; exit}' spos)
W0S=$(awk '$2 == 2 && $3 == 0 {print $1; exit}' spos)
[ -n "$W0S" ] || fail "no student checkpoint in stream window 1: $(cat spos)"
[ -n "$E1" ] && [ -n "$W1T" ] && [ -n "$MIDS" ] && [ -n "$MIDS2" ] && [ -n "$MIDW" ] ||
    fail "no phase-start checkpoints or none inside epoch 1 / window 1: $(cat tpos)"
root() { # $1 = folder, $2 = the teacher's newest step, $3 = the student's: L's checkpoints up to them
    rm -rf "$1" && mkdir -p "$1/teacher" "$1/student"
    for st in $(awk -v w="$2" '$1 <= w {print $1}' tpos); do cp -r L/ckpt/teacher/step-$(printf %012d $st) "$1/teacher/"; done
    for st in $(awk -v w="$3" '$1 <= w {print $1}' spos); do cp -r L/ckpt/student/step-$(printf %012d $st) "$1/student/"; done
}
same_as_L() { # $1 = run folder, $2 = what[, $3 = root]: final checkpoints and student metrics as L's
    for j in teacher student; do
        LF="$(ls -d L/ckpt/$j/step-* | tail -1)" XF="$1/ckpt/$j/$(basename "$LF")"
        # A job resumed from its final checkpoint trains nothing and writes none: the root's.
        [ -e "$XF" ] || [ -z "${3:-}" ] || XF="$3/$j/$(basename "$LF")"
        cmp -s "$LF/dense.bin" "$XF/dense.bin" || fail "$2: $j dense.bin differs"
        cmp -s "$LF/MANIFEST" "$XF/MANIFEST" || fail "$2: $j tables differ"
    done
    cut -d, -f1-7 L/student.metrics.csv > a.csv && cut -d, -f1-7 "$1/student.metrics.csv" > b.csv
    cmp -s a.csv b.csv || fail "$2: student metrics differ: $(diff a.csv b.csv)"
}
# "teacher student": inside epoch 1 with the student behind, then ahead; inside window 1 with the
# student at its start, then the teacher; the teacher at the start of window 1 and then inside
# it, the student inside epoch 1 (the teacher two phases ahead: it sends epoch 1 and window 0
# again whole); the teacher done (its final checkpoint) and the student inside epoch 1 (three
# phases ahead, as a teacher is when its student is slow and the join table absorbs its targets);
# the student ahead by phases: inside window 1, or done, and the teacher inside or at the start
# of epoch 1 (the student begins and ends the phases it is past with the teacher, dropping their
# targets).
E1END=$(awk '$2 == 2 && $3 == 0 && $4 == 0 {print $1}' tpos)
TF=$(tail -n 1 tpos | cut -d' ' -f1) SF=$(tail -n 1 spos | cut -d' ' -f1)
phase_start() { # $1 = step: the student's checkpoint at the start of that step's phase
    awk -v s="$1" '$1 == s {e = $2; w = $3} END {print e, w}' spos | {
        read -r e w
        awk -v e="$e" -v w="$w" '$2 == e && $3 == w && $4 == 0 {print $1}' spos
    }
}
for pair in "$MIDS2 $MIDS" "$MIDS $MIDS2" "$MIDW $W1T" "$W1T $MIDW" "$W1T $MIDS" "$MIDW $MIDS" \
    "$TF $MIDS" "$MIDS $MIDW" "$MIDS $W0S" "$E1 $SF"; do
    set -- $pair
    root LR "$1" "$2"
    rm -rf X3
    run -n 3 "$RD" train live.yaml --out X3 --resume LR >X3.out 2>X3.err || fail "live resume $pair: $(cat X3.err)"
    T=$1 S=$2
    grep -q "\[teacher\] resumed from LR/teacher/step-$(printf %012d $T) " X3.out &&
        grep -q "\[student\] resumed from LR/student/step-$(printf %012d $S) " X3.out ||
        fail "live resume $pair: not from teacher $T / student $S: $(cat X3.out)"
    same_as_L X3 "live resume $pair" LR
    if [ "$pair" = "$TF $MIDS" ]; then
        grep -q "\[teacher\] a job in live distillation resumes in batch epoch 2/2: the teacher first sends its students again, from its target log, every target of batch epoch 2/2 to stream window 2/2" X3.out ||
            fail "live resume $pair: the teacher did not say what it sends again: $(cat X3.out)"
    fi
    # One phase ahead: the phase is named alone (it read "batch epoch 2/2 to batch epoch 2/2").
    if [ "$pair" = "$MIDS $W0S" ]; then
        grep -q "\[student\] a job in live distillation resumes in batch epoch 2/2: the student first goes through batch epoch 2/2 with its teacher, dropping their targets" X3.out ||
            fail "live resume $pair: the student did not name the one phase it goes through: $(cat X3.out)"
    fi
    # The records the student trained on from the start of the earlier job's phase up to its
    # checkpoint: their targets came again and were dropped (duplicates), and no target was
    # missing, late or unused.
    [ "$T" -lt "$S" ] && P=$T || P=$S
    P0=$(phase_start "$P")
    [ -n "$P0" ] || fail "live resume $pair: no student checkpoint at the start of the phase of step $P"
    CONSUMED=$(($(trained L/ckpt/student/step-$(printf %012d $S)) - $(trained L/ckpt/student/step-$(printf %012d $P0))))
    python3 - L X3 "$CONSUMED" <<'PY' || fail "live resume $pair: targets"
import json, sys
for d in sys.argv[1:3]:
    t = json.load(open(d + "/student.targets.json"))
    assert t["missing"] == 0 and t["late"] == 0 and t["unused"] == 0, (d, t)
t = json.load(open(sys.argv[2] + "/student.targets.json"))
assert t["duplicates"] == int(sys.argv[3]), (t, sys.argv[3])
PY
done
# The same with a join table smaller than the teacher's lead: distill.max_in_flight 2 x batch 64
# takes 128 targets a student rank, and the teacher, done, is three phases (3,600 targets) ahead
# of a student at the start of epoch 1 or inside it: its resend waits for the student's credits
# as its training did. The transport settings change no result: the resumes end as L, nothing late or missing.
sed -e 's|wait_ms: 600000}|wait_ms: 600000, max_in_flight: 2, batch: 64}|' live.yaml > small.yaml
grep -q "max_in_flight: 2, batch: 64}" small.yaml || fail "could not write small.yaml"
for pair in "$TF $MIDS" "$TF $E1"; do
    set -- $pair
    root LR "$1" "$2"
    rm -rf X4
    run -n 3 "$RD" train small.yaml --out X4 --resume LR >X4.out 2>X4.err ||
        fail "live resume $pair, small join table: $(cat X4.err)"
    same_as_L X4 "live resume $pair, small join table" LR
    S=$2 P0=$(phase_start "$2")
    CONSUMED=$(($(trained L/ckpt/student/step-$(printf %012d $S)) - $(trained L/ckpt/student/step-$(printf %012d $P0))))
    python3 - X4 "$CONSUMED" <<'PY' || fail "live resume $pair, small join table: targets"
import json, sys
t = json.load(open(sys.argv[1] + "/student.targets.json"))
assert t["missing"] == 0 and t["late"] == 0 and t["unused"] == 0, t
assert t["duplicates"] == int(sys.argv[2]) and t["joined"] > 0, (t, sys.argv[2])
PY
done
# Two pairs in one launch (teacher -> student, teacher2 -> student2), each job resumed from its
# own newest checkpoint in a different phase: all four begin at the earliest phase of them all
# (inside epoch 1: the teachers resend from its start), and every job ends as in the
# uninterrupted launch; each student drops, as duplicates, exactly what it trained on from that
# phase's start to its checkpoint.
cat > pairs.yaml <<YAML
run: {name: tl, seed: 7}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: teacher}
    - {name: student, role: student, model: student, distill: true, teacher: teacher}
    - {name: teacher2, role: teacher, model: teacher2}
    - {name: student2, role: student, model: student2, distill: true, teacher: teacher2}
data:
  source: synthetic
  dir: $TMP/data_replay
  history_max: 8
  synthetic: {events: 4000, users: 40, items: 200, topics: 4, dim: 4}
  split: {batch_fraction: 0.7, holdout_fraction: 0.1, stream_windows: 2}
ps:
  checkpoint_every: 20
  checkpoint_keep: 100
  tables:
    - {name: t_emb, dim: 8}
    - {name: s_emb, dim: 4}
    - {name: t2_emb, dim: 8}
    - {name: s2_emb, dim: 4}
models:
  - name: teacher
    features:
      - {field: user, table: t_emb}
      - {field: item, table: t_emb}
    mlp: [16]
  - name: student
    features:
      - {field: user, table: s_emb}
      - {field: item, table: s_emb}
    mlp: [8]
    two_towers: true
  - name: teacher2
    features:
      - {field: user, table: t2_emb}
      - {field: item, table: t2_emb}
    mlp: [12]
  - name: student2
    features:
      - {field: user, table: s2_emb}
      - {field: item, table: s2_emb}
    mlp: [6]
    two_towers: true
train: {batch_size: 64, epochs: 2}
distill: {target_log: $TMP/targets2, wait_ms: 600000}
output: {plot: false, progress_every_s: 0}
YAML
run -n 5 "$RD" train pairs.yaml --out L2 >L2.out 2>L2.err || fail "two pairs: $(cat L2.err)"
for j in teacher student student2 teacher2; do
    positions L2/ckpt/$j | cmp -s - tpos || fail "two pairs: job $j has another schedule than L's"
done
rm -rf PR && mkdir PR
for js in "teacher $TF" "student $MIDS" "teacher2 $MIDW" "student2 $W1T"; do
    set -- $js
    mkdir -p PR/$1
    for st in $(awk -v w="$2" '$1 <= w {print $1}' tpos); do cp -r L2/ckpt/$1/step-$(printf %012d $st) PR/$1/; done
done
rm -rf X6
run -n 5 "$RD" train pairs.yaml --out X6 --resume PR >X6.out 2>X6.err || fail "two pairs resume: $(cat X6.err)"
for j in teacher student teacher2 student2; do
    LF="$(ls -d L2/ckpt/$j/step-* | tail -1)"
    XF="X6/ckpt/$j/$(basename "$LF")"
    [ -e "$XF" ] || XF="PR/$j/$(basename "$LF")" # a job resumed from its final checkpoint
    cmp -s "$LF/dense.bin" "$XF/dense.bin" && cmp -s "$LF/MANIFEST" "$XF/MANIFEST" ||
        fail "two pairs resume: job $j differs from the uninterrupted launch"
done
for j in student student2; do
    cut -d, -f1-7 L2/$j.metrics.csv > a.csv && cut -d, -f1-7 X6/$j.metrics.csv > b.csv
    cmp -s a.csv b.csv || fail "two pairs resume: $j metrics differ: $(diff a.csv b.csv)"
done
P0=$(phase_start "$MIDS")
for js in "student $MIDS" "student2 $W1T"; do
    set -- $js
    CONSUMED=$(($(trained L2/ckpt/$1/step-$(printf %012d $2)) - $(trained L2/ckpt/$1/step-$(printf %012d $P0))))
    python3 - X6/$1.targets.json "$CONSUMED" <<'PY' || fail "two pairs resume: $1 targets"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["missing"] == 0 and t["late"] == 0 and t["unused"] == 0, t
assert t["duplicates"] == int(sys.argv[2]) and t["joined"] > 0, (t, sys.argv[2])
PY
done
# Each job says what it goes through before its checkpoint (the last pair: the student, done,
# goes through epoch 1 and both windows with the teacher).
grep -q "\[student\] a job in live distillation resumes in batch epoch 2/2: the student first goes through batch epoch 2/2 to stream window 2/2 with its teacher, dropping their targets" X3.out ||
    fail "the student did not say which phases it goes through first: $(cat X3.out)"
# Without the teacher's targets in its log (another --out with the default log, a removed log),
# the pair resumes from the newest phase start both have, and says why; a root without a common
# phase start is then refused.
rm -rf OL && mkdir OL && sed -e "s|target_log: $TMP/targets,|target_log: $TMP/OL/targets,|" live.yaml > other_log.yaml
grep -q "OL/targets" other_log.yaml || fail "could not write the config with another target log"
# A damaged checkpoint is passed over for the job's older one, and the job says so (the steps it
# trains again are otherwise unexplained); the pair still ends byte-identical. Here (a log of its
# own: the runs below write OL/targets) the student's start of window 1 (not its newest: that one
# is checked before the launch) is damaged: both resume from the start of window 0.
rm -rf NL && sed -e "s|target_log: $TMP/targets,|target_log: $TMP/NL/targets,|" live.yaml > no_log.yaml
root LR "$MIDW" "$MIDW"
python3 - "LR/student/step-$(printf %012d $W1T)/dense.bin" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 2] ^= 0xFF; open(sys.argv[1], "wb").write(b)
PY
rm -rf X3
run -n 3 "$RD" train no_log.yaml --out X3 --resume LR >X3.out 2>X3.err || fail "live resume past a damaged checkpoint: $(cat X3.err)"
for j in teacher student; do
    grep -q "\[$j\] resumed from LR/$j/step-$(printf %012d $E1END) " X3.out || fail "past a damaged checkpoint: $j not from $E1END: $(cat X3.out)"
done
grep -q "WARN --resume: LR/student/step-$(printf %012d $W1T) cannot be resumed from (.*damaged" X3.err ||
    fail "the damaged checkpoint passed over was not named: $(cat X3.err)"
same_as_L X3 "live resume past a damaged checkpoint"
# With the teacher's targets in the log, a job whose NEWEST checkpoint is damaged takes its older
# one, with the warning, and the pair still ends byte-identical: rank 0's early --resume check
# (app/cmd_train.c) must not refuse the root over the damaged newest (it did).
root LR "$TF" "$MIDW"
SPREV=$(awk -v s="$MIDW" '$1 < s {p = $1} END {print p}' spos)
python3 - "LR/student/step-$(printf %012d $MIDW)/dense.bin" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) - 10] ^= 0xFF; open(sys.argv[1], "wb").write(b)
PY
rm -rf X3
run -n 3 "$RD" train live.yaml --out X3 --resume LR >X3.out 2>X3.err || fail "live resume past a damaged newest checkpoint: $(cat X3.err)"
grep -q "\[student\] resumed from LR/student/step-$(printf %012d $SPREV) " X3.out &&
    grep -q "\[teacher\] resumed from LR/teacher/step-$(printf %012d $TF) " X3.out ||
    fail "past a damaged newest checkpoint: not from teacher $TF / student $SPREV: $(cat X3.out)"
grep -q "WARN --resume: LR/student/step-$(printf %012d $MIDW) cannot be resumed from (.*damaged" X3.err ||
    fail "the damaged newest checkpoint passed over was not named: $(cat X3.err)"
same_as_L X3 "live resume past a damaged newest checkpoint" LR
root LR3 "$W1T" "$MIDS"
rm -rf LR4 && mkdir -p LR4/teacher LR4/student && cp -r L/ckpt/teacher/step-$(printf %012d $E1) LR4/teacher/
cp -r L/ckpt/student/step-$(printf %012d $MIDS) LR4/student/
rm -rf X3
bad "no checkpoint at the start of a phase that every such job has one for" -n 3 "$RD" train other_log.yaml --out X3 --resume LR4
[ ! -e X3/ckpt ] || fail "a refused live resume left checkpoints"
run -n 3 "$RD" train other_log.yaml --out X3 --resume LR3 >X3.out 2>X3.err || fail "live resume without the log: $(cat X3.err)"
for j in teacher student; do
    grep -q "\[$j\] resumes from LR3/$j/step-$(printf %012d $E1), the newest checkpoint at the start of a phase" X3.out ||
        fail "$j did not resume from the start of epoch 1: $(cat X3.out)"
done
grep -q "\[teacher\] distill.target_log .*OL/targets holds no targets of job 'teacher'" X3.out ||
    fail "the teacher did not say why the pair resumes from a phase start: $(cat X3.out)"
same_as_L X3 "live resume without the log"
grep -q "\[teacher\] distill.target_log .*OL/targets holds no targets of job 'teacher' for this dataset (there is no log)" X3.out ||
    fail "the teacher did not say that there was no log: $(cat X3.out)"
# A damaged log is not a missing one: the teacher's line says why it could not read it (the
# launch then fails opening it, and the line must not have blamed a missing record).
rm -rf DL && mkdir -p DL/targets && head -c 65536 /dev/zero > DL/targets/data.mdb
sed -e "s|target_log: $TMP/targets,|target_log: $TMP/DL/targets,|" live.yaml > damaged_log.yaml
rm -rf X3
bad "distill.target_log .*DL/targets: .*(MDB_INVALID|damaged|not an LMDB)" -n 3 "$RD" train damaged_log.yaml --out X3 --resume LR3
grep -Eq "\[teacher\] distill.target_log .*DL/targets holds no targets of job 'teacher' for this dataset \(.*(MDB_INVALID|damaged|not an LMDB).*\)" o ||
    fail "the teacher's line about a damaged log does not say why: $(cat o)"
# A log that holds the teacher's targets but not all that it sent before its checkpoint (here:
# OL/targets, written from epoch 1 on, for a checkpoint inside epoch 0): refused before any job
# trains, naming the checkpoint, the log and the record.
root LR2 "$(awk '$2 == 0 && $4 > 0 {print $1}' tpos | tail -1)" "$(awk '$2 == 0 && $4 > 0 {print $1}' spos | head -1)"
rm -rf X3
bad "teacher: --resume: LR2/teacher/step-[0-9]+ is inside batch epoch 1/2, .*distill.target_log .*OL/targets: the log holds no target of record [0-9]+ \(pass 0\)" \
    -n 3 "$RD" train other_log.yaml --out X3 --resume LR2
[ ! -e X3/ckpt ] || fail "a refused live resume left checkpoints"
# The teacher at the start of a phase, phases ahead of a student inside epoch 0 (so it resends
# whole phases from the log): the message says where the checkpoint is, and its remedy is one
# that works. Taking the checkpoints inside phases out (the advice before) still resends whole
# phases; a target log without the teacher's targets makes the jobs resume from a common
# phase start.
root LR6 "$W1T" "$(awk '$2 == 0 && $4 > 0 {print $1}' spos | head -1)"
rm -rf X3
bad "teacher: --resume: LR6/teacher/step-$(printf %012d $W1T) is at the start of stream window 2/2, .*OL/targets: the log holds no target of record [0-9]+ \(pass 0\) .*; to resume without them, name a distill.target_log that holds no targets of job 'teacher'" \
    -n 3 "$RD" train other_log.yaml --out X3 --resume LR6
[ ! -e X3/ckpt ] || fail "a refused live resume left checkpoints"
# Jobs of different rank counts in user order, the teacher sampling its records (so the two walk
# their records in different orders and the teacher sends no target of some): the same, with the
# teacher ahead inside epoch 1 and the student ahead inside window 1.
sed -e 's/model: teacher}/model: teacher, ranks: 2, negatives: {rate: 0.6}}/' \
    -e 's/distill: true}/distill: true, ranks: 3}/' -e 's/checkpoint_every: 20/checkpoint_every: 7/' \
    -e 's/train: {batch_size: 64, epochs: 2}/train: {batch_size: 32, epochs: 2, order: user}/' \
    -e "s|target_log: $TMP/targets,|target_log: $TMP/targets_u,|" live.yaml > ulive.yaml
grep -q "order: user" ulive.yaml && grep -q "ranks: 3" ulive.yaml && grep -q targets_u ulive.yaml ||
    fail "could not write the user-order config"
run -n 6 "$RD" train ulive.yaml --out U >U.out 2>U.err || fail "live run in user order: $(cat U.err)"
positions U/ckpt/teacher > utpos && positions U/ckpt/student > uspos
UT=$(awk '$2 == 1 && $3 == -1 && $4 > 0 {print $1}' utpos | tail -1); US=$(awk '$2 == 1 && $3 == -1 && $4 > 0 {print $1}' uspos | head -1)
UW=$(awk '$2 == 2 && $3 == 1 && $4 > 0 {print $1}' uspos | tail -1); UWT=$(awk '$2 == 2 && $3 == 1 && $4 == 0 {print $1}' utpos)
[ -n "$UT" ] && [ -n "$US" ] && [ "$UT" != "$US" ] && [ -n "$UW" ] && [ -n "$UWT" ] ||
    fail "user order: no checkpoints inside epoch 1 / window 1: $(cat utpos uspos)"
for pair in "$UT $US" "$UWT $UW"; do
    set -- $pair
    rm -rf UR X5 && mkdir -p UR/teacher UR/student
    for st in $(awk -v w="$1" '$1 <= w {print $1}' utpos); do cp -r U/ckpt/teacher/step-$(printf %012d $st) UR/teacher/; done
    for st in $(awk -v w="$2" '$1 <= w {print $1}' uspos); do cp -r U/ckpt/student/step-$(printf %012d $st) UR/student/; done
    run -n 6 "$RD" train ulive.yaml --out X5 --resume UR >X5.out 2>X5.err || fail "user-order live resume $pair: $(cat X5.err)"
    grep -q "\[teacher\] resumed from UR/teacher/step-$(printf %012d $1) " X5.out &&
        grep -q "\[student\] resumed from UR/student/step-$(printf %012d $2) " X5.out ||
        fail "user-order live resume $pair: not from those checkpoints: $(cat X5.out)"
    for j in teacher student; do
        LF="$(ls -d U/ckpt/$j/step-* | tail -1)"
        cmp -s "$LF/dense.bin" "X5/ckpt/$j/$(basename "$LF")/dense.bin" || fail "user-order live resume $pair: $j dense.bin differs"
        cmp -s "$LF/MANIFEST" "X5/ckpt/$j/$(basename "$LF")/MANIFEST" || fail "user-order live resume $pair: $j tables differ"
    done
    python3 - X5 <<'PY' || fail "user-order live resume $pair: targets"
import json, sys
t = json.load(open(sys.argv[1] + "/student.targets.json"))
assert t["missing"] == 0 and t["late"] == 0 and t["unused"] == 0 and t["duplicates"] > 0, t
PY
done
# The ranks of one job see different checkpoints in the agreed phase (a node-local copy of the
# root that lags: here teacher rank 1 runs in another working directory whose root stops one
# checkpoint earlier). They would resume at different steps and fail in the PS ("PULL for step
# ..."); refused before anything trains, naming the job, the root and both steps. Both ranks see
# it; the lowest (world rank 1, the one in UA) reports it (rd_trainer_agree).
UT0=$(awk '$2 == 1 && $3 == -1 && $4 > 0 {print $1}' utpos | tail -2 | head -1)
[ -n "$UT0" ] && [ "$UT0" != "$UT" ] || fail "user order: no two teacher checkpoints inside epoch 1: $(cat utpos)"
rm -rf UA UB X5 && mkdir -p UA/R/teacher UA/R/student UB/R/teacher UB/R/student
for st in $(awk -v w="$UT" '$1 <= w {print $1}' utpos); do cp -r U/ckpt/teacher/step-$(printf %012d $st) UA/R/teacher/; done
for st in $(awk -v w="$UT0" '$1 <= w {print $1}' utpos); do cp -r U/ckpt/teacher/step-$(printf %012d $st) UB/R/teacher/; done
for st in $(awk -v w="$US" '$1 <= w {print $1}' uspos); do
    cp -r U/ckpt/student/step-$(printf %012d $st) UA/R/student/ && cp -r U/ckpt/student/step-$(printf %012d $st) UB/R/student/
done
bad "rank 1: teacher: --resume: the ranks of job 'teacher' do not see the same checkpoints under R: this rank resumes from R/teacher/step-$(printf %012d $UT) \(step $UT\), another from step $UT0 " \
    -n 2 -wdir "$TMP/UA" "$RD" train "$TMP/ulive.yaml" --out "$TMP/X5" --resume R : \
    -n 1 -wdir "$TMP/UB" "$RD" train "$TMP/ulive.yaml" --out "$TMP/X5" --resume R : \
    -n 3 -wdir "$TMP/UA" "$RD" train "$TMP/ulive.yaml" --out "$TMP/X5" --resume R
[ ! -e X5/ckpt ] || fail "a resume whose job ranks disagree left checkpoints: $(ls -R X5/ckpt)"
# kill -9 of every rank of a live pair that checkpoints every 3 steps, keeping 3 (the jobs are
# then wherever they were, the teacher usually steps ahead), with the default target log
# <out>/targets: resumed with the same --out, the pair ends byte-identical to the uninterrupted
# run, every target joined.
sed -e 's/events: 4000/events: 24000/' -e "s|dir: $TMP/data_replay|dir: $TMP/data_lkill|" \
    -e 's/checkpoint_every: 20/checkpoint_every: 3/' -e 's/checkpoint_keep: 100/checkpoint_keep: 3/' \
    -e "s|distill: {target_log: $TMP/targets, wait_ms: 600000}|distill: {wait_ms: 600000}|" live.yaml > lkill.yaml
grep -q "target_log" lkill.yaml && fail "could not write the live kill config"
run -n 3 "$RD" train lkill.yaml --out LKQ >/dev/null 2>err || fail "live uninterrupted: $(cat err)"
run -n 3 "$RD" train lkill.yaml --out "$TMP/LK" >LK0.out 2>LK0.err &
for _ in $(seq 1 1500); do
    last=$(compgen -G 'LK/ckpt/student/step-*' | sort | tail -n 1)
    [ -n "$last" ] && [ $((10#${last##*step-})) -ge 40 ] && break
    sleep 0.02
done
pids=$(pgrep -f "^$RD train lkill.yaml --out $TMP/LK\$")
[ -n "$pids" ] || fail "the live run ended before it could be killed: $(cat LK0.out LK0.err | tail -n 3)"
kill -9 $pids
wait
run -n 3 "$RD" train lkill.yaml --out "$TMP/LK" --resume LK/ckpt >LK.out 2>err || fail "live resume after kill: $(cat err)"
grep -q "\[student\] resumed from" LK.out && grep -q "\[teacher\] resumed from" LK.out || fail "no live resume after kill: $(cat LK.out)"
for j in teacher student; do
    f=$(ls LKQ/ckpt/$j | tail -n 1)
    cmp -s "LKQ/ckpt/$j/$f/dense.bin" "LK/ckpt/$j/$f/dense.bin" &&
        cmp -s "LKQ/ckpt/$j/$f/MANIFEST" "LK/ckpt/$j/$f/MANIFEST" || fail "live kill -9 + resume: $j differs ($(grep resumed LK.out))"
done
python3 - LK <<'PY' || fail "live resume after kill: targets"
import json, sys
t = json.load(open(sys.argv[1] + "/student.targets.json"))
assert t["missing"] == 0 and t["late"] == 0 and t["unused"] == 0, t
PY
# A root with no phase that both jobs have a checkpoint in (the student's only one is inside epoch
# 1, the teacher's inside window 1: retention keeps the newest few, and a teacher runs phases
# ahead of a slow student) was refused, and a job killed at its time limit could never resume:
# with the teacher's targets in its log, the pair resumes from these and ends byte-identical.
rm -rf LR5 && mkdir -p LR5/teacher LR5/student && cp -r L/ckpt/teacher/step-$(printf %012d $MIDW) LR5/teacher/
cp -r L/ckpt/student/step-$(printf %012d $MIDS) LR5/student/
rm -rf X3
run -n 3 "$RD" train live.yaml --out X3 --resume LR5 >X3.out 2>X3.err || fail "live resume with no common phase: $(cat X3.err)"
same_as_L X3 "live resume with no common phase"
root LR "$W1T" "$MIDS"
# The trainers of a live pair look for the checkpoints again: when they do not see what world
# rank 0 checked (a node-local disk; here another working directory per mpiexec segment) they
# said "R/teacher: no complete checkpoint" whatever the path was; now they say what it is, as
# rank 0's check and export do.
rm -rf WA WB X4 && mkdir -p WA WB && cp -r LR WA/R
wrong() { # $1 = message regex: the trainer ranks (segment 2, in WB) see WB/R
    bad "$1" -n 1 -wdir "$TMP/WA" "$RD" train "$TMP/live.yaml" --out "$TMP/X4" --resume R : \
        -n 2 -wdir "$TMP/WB" "$RD" train "$TMP/live.yaml" --out "$TMP/X4" --resume R
    grep -q "no complete checkpoint" e && fail "live resume of WB/R: the old message: $(cat e)"
    [ ! -e X4/ckpt ] || fail "a refused live resume left checkpoints: $(ls -R X4/ckpt)"
}
wrong "rank 1: teacher: --resume: R: No such file or directory \(expected a checkpoint root holding teacher/step-N"
echo x > WB/R
# (the teacher and the student see it; the lowest rank reports it: rd_trainer_agree)
wrong "rank 1: teacher: --resume: R: not a directory \(expected a checkpoint root holding teacher/step-N"
rm WB/R && cp -r LR/teacher WB/R
wrong "rank 1: teacher: --resume: R holds step-N folders itself \(one job's checkpoint folder\)"
run -n 2 "$RD" train replay.yaml --out RP >RP.out 2>RP.err || fail "replay run: $(cat RP.err)"
RF="$(basename "$(ls -d RP/ckpt/student/step-* | tail -1)")"
for st in 000000000020 000000000080; do
    rm -rf RQ
    [ -d RP/ckpt/student/step-$st ] || fail "no replay checkpoint step-$st: $(ls RP/ckpt/student)"
    run -n 2 "$RD" train replay.yaml --out RQ --resume RP/ckpt/student/step-$st >RQ.out 2>RQ.err ||
        fail "resume of the replay student from $st: $(cat RQ.err)"
    grep -q "resumed from .*step-$st" RQ.out || fail "no resume line: $(cat RQ.out)"
    cmp -s "RP/ckpt/student/$RF/dense.bin" "RQ/ckpt/student/$RF/dense.bin" || fail "replay resume from $st: dense.bin differs"
    cmp -s "RP/ckpt/student/$RF/MANIFEST" "RQ/ckpt/student/$RF/MANIFEST" || fail "replay resume from $st: tables differ"
    [ "$(holdout RP.out)" = "$(holdout RQ.out)" ] || fail "replay resume from $st: holdout differs"
done
echo "resume.sh: ok"
