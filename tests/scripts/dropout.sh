#!/usr/bin/env bash
# dropout.sh — models[].dropout in the trainer:
#  1. a teacher with dropout sends the logits of its whole network (no mask): its first step's
#     targets (teacher version 0, the initial parameters) equal those of the same teacher without
#     dropout, byte for byte, while its training differs (later targets and its metrics);
#  2. the masks are a function of the step and rank: a student with dropout resumed from a
#     checkpoint ends with the dense parameters and metrics of the uninterrupted run, and two
#     runs are identical; a resume with another dropout rate is refused (the model differs);
#  3. dropout without an mlp is refused before anything runs, naming the key.
#
#   bash tests/scripts/dropout.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: dropout.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v mdb_dump >/dev/null || { echo "mdb_dump (lmdb-utils) not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_dropout_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" "$@"; }
cd "$TMP" || exit 1

pair() { # $1 = the teacher's dropout
    cat <<YAML
run: {name: drop, seed: 4}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big}
    - {name: student, role: student, model: small, distill: true}
data:
  source: synthetic
  dir: $TMP/data
  history_max: 16
  synthetic: {events: 4000, users: 50, items: 200}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}
ps:
  tables:
    - {name: t_user, dim: 8}
    - {name: t_item, dim: 8}
    - {name: s_user, dim: 4}
    - {name: s_item, dim: 4}
models:
  - name: big
    features:
      - {field: user, table: t_user}
      - {field: item, table: t_item}
    seq: {kind: mean, length: 8}
    mlp: [32, 16]
    dropout: $1
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_item}
    mlp: [8]
    two_towers: true
train: {batch_size: 64, epochs: 2}
output: {progress_every_s: 0}
YAML
}

# The target log's records as "sample pass version logit-bytes" (hex, sorted by key).
targets() {
    mdb_dump -s targets "$1" | awk '
        /^HEADER=END/ { body = 1; next }
        body && /^ / { if (k == "") { k = $1 } else { print k, $1; k = "" } }' |
        awk '{ key = $1; val = $2
               # key: job (16 hex) | sample (16) | pass (8); value: logit (8) | window (8) |
               # version (16, little-endian) | crc (8)
               print substr(key, 17, 16), substr(key, 33, 8), substr(val, 17, 16), substr(val, 1, 8) }'
}
holdout() { grep -E "^$2 +holdout +0\.[0-9]" "$1" | head -1; }

pair 0 >p0.yaml
pair 0.5 >p5.yaml
run -n 3 "$RD" train p0.yaml --out A >A.out 2>A.err || fail "teacher without dropout: $(cat A.err)"
run -n 3 "$RD" train p5.yaml --out B >B.out 2>B.err || fail "teacher with dropout: $(cat B.err)"
[ -d A/targets ] && [ -d B/targets ] || fail "no target log in the run folders: $(ls A B)"
targets A/targets >a.tsv
targets B/targets >b.tsv
[ -s a.tsv ] || fail "no targets read from A/targets"
[ "$(wc -l <a.tsv)" = "$(wc -l <b.tsv)" ] || fail "A and B logged different numbers of targets"
zero="0000000000000000"
awk -v z=$zero '("" $3) == ("" z)' a.tsv >a0.tsv
awk -v z=$zero '("" $3) == ("" z)' b.tsv >b0.tsv
[ -s a0.tsv ] || fail "no target of teacher version 0: $(head -3 a.tsv)"
cmp -s a0.tsv b0.tsv || fail "the first step's targets differ with dropout (they must be the unmasked logits): $(diff a0.tsv b0.tsv | head -4)"
! cmp -s a.tsv b.tsv || fail "every target is the same with and without dropout: dropout did nothing"
[ -n "$(holdout A.out teacher)" ] || fail "no teacher holdout row: $(tail -5 A.out)"
[ "$(holdout A.out teacher)" != "$(holdout B.out teacher)" ] ||
    fail "the teacher's holdout is the same with dropout 0.5: $(holdout B.out teacher)"

# --- resume: the masks of step s are those of the uninterrupted run --------------------------------
cat >s.yaml <<YAML
run: {name: drops, seed: 6}
cluster:
  ps_ranks: 1
  jobs:
    - {name: student, role: student, model: small}
data:
  source: synthetic
  dir: $TMP/data_s
  history_max: 16
  synthetic: {events: 4000, users: 50, items: 200}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 2}
ps:
  checkpoint_every: 20
  checkpoint_keep: 100
  tables:
    - {name: s_user, dim: 4}
    - {name: s_item, dim: 4}
models:
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_item}
    seq: {kind: mean, length: 8}
    mlp: [16, 8]
    dropout: 0.3
train: {batch_size: 64, epochs: 2}
output: {progress_every_s: 0}
YAML
run -n 2 "$RD" train s.yaml --out S >S.out 2>S.err || fail "student with dropout: $(cat S.err)"
run -n 2 "$RD" train s.yaml --out S2 >S2.out 2>S2.err || fail "second run: $(cat S2.err)"
FINAL="$(ls -d S/ckpt/student/step-* | tail -1)"
F="$(basename "$FINAL")"
cmp -s "$FINAL/dense.bin" "S2/ckpt/student/$F/dense.bin" || fail "two runs with dropout differ"
run -n 2 "$RD" train s.yaml --out R --resume S/ckpt/student/step-000000000040 >R.out 2>R.err ||
    fail "resume: $(cat R.err)"
grep -q "resumed from .*step-000000000040" R.out || fail "no resume line: $(cat R.out)"
cmp -s "$FINAL/dense.bin" "R/ckpt/student/$F/dense.bin" || fail "resumed with dropout: dense.bin differs"
[ "$(holdout S.out student)" = "$(holdout R.out student)" ] || fail "resumed with dropout: holdout differs"
sed 's/dropout: 0.3/dropout: 0.2/' s.yaml >s2.yaml
run -n 2 "$RD" train s2.yaml --out Q --resume S/ckpt/student/step-000000000040 >Q.out 2>Q.err &&
    fail "resumed with another dropout rate"
grep -q "model 'small' differs (.*dropout)" Q.err || fail "another dropout on resume: $(cat Q.err)"
sed 's/dropout: 0.3/dropout: 0/' s.yaml >s0.yaml
run -n 2 "$RD" train s0.yaml --out Z >Z.out 2>Z.err || fail "student without dropout: $(cat Z.err)"
! cmp -s "$FINAL/dense.bin" "Z/ckpt/student/$F/dense.bin" || fail "dropout 0.3 trained as dropout 0"

# --- bad input: refused before anything runs ---------------------------------------------------------
sed -e 's/    mlp: \[16, 8\]//' s.yaml >bad.yaml
run -n 2 "$RD" train bad.yaml --out X >X.out 2>X.err && fail "dropout without an mlp trained"
grep -q "models\[0\].dropout: 0.3 needs an mlp" X.err || fail "dropout without mlp: $(cat X.err)"
[ ! -e X/report.json ] || fail "a refused run wrote a report"
echo "dropout.sh: ok"
