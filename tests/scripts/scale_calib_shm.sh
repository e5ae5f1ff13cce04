#!/usr/bin/env bash
# scale_calib_shm.sh — tools/scale-calib.py counts the same keys per sample whether the pulls
# went through shared memory (ps.shm: auto, the default on one node) or not. It used to take a
# pull request as a 64 B header + 8 B per key, but through shared memory each request also counts
# a 32 B descriptor: the same training calibrated +5.7 % keys per sample on 1 PS shard and +17 %
# on 3 (fewer keys per request). One teacher + distilled student config is trained with ps.shm
# auto and off, on 1 and 3 PS shards (identical training: same keys), and the four calibrations
# must agree exactly. Also --ps-dim picks the bench_ps row of that width.
#   scale_calib_shm.sh PATH/TO/recdistill
set -u
RD="${1:?usage: scale_calib_shm.sh path/to/recdistill}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v python3 >/dev/null || { echo "python3 missing: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
export OPENBLAS_NUM_THREADS=1
TMP="$(mktemp -d /tmp/rd_test_calib_shm_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# cfg PS SHM: a tiny teacher + distilled student (one rank each) on PS shards.
cfg() {
    cat >"$TMP/p$1-$2.yaml" <<EOF
run: {name: calib-shm, seed: 7}
cluster:
  ps_ranks: $1
  jobs:
    - {name: teacher, role: teacher, model: teacher}
    - {name: student, role: student, model: student, distill: true}
data:
  source: synthetic
  history_max: 8
  synthetic: {events: 4000, users: 40, items: 200, topics: 4, dim: 4}
  split: {batch_fraction: 0.7, holdout_fraction: 0.1, stream_windows: 2}
ps:
  shm: $2
  tables:
    - {name: t_emb, dim: 8}
    - {name: s_emb, dim: 4}
models:
  - name: teacher
    features:
      - {field: user, table: t_emb}
      - {field: item, table: t_emb}
    seq: {kind: mean, length: 8}
    mlp: [16]
  - name: student
    features:
      - {field: user, table: s_emb}
      - {field: item, table: s_emb}
    mlp: [8]
    two_towers: true
    tower: [4]
train: {batch_size: 64, eval_every: 1000}
output: {plot: false, progress_every_s: 0}
EOF
}
declare -A K=()
for ps in 1 3; do
    for shm in auto off; do
        cfg "$ps" "$shm"
        timeout 300 "$MPIEXEC" -n $((ps + 2)) "$RD" train "$TMP/p$ps-$shm.yaml" --out "$TMP/r$ps-$shm" \
            >"$TMP/out" 2>"$TMP/err" || fail "train ps $ps shm $shm: $(tail -5 "$TMP/err")"
        # Each PS shard's log of a checkpoint names the shard count (it said "saved shard 2 of 1
        # tables", the job's table count where the shard count belongs).
        grep -q "saved shard $((ps - 1)) of $ps (1 table) at step " "$TMP/err" ||
            fail "ps $ps: no 'saved shard $((ps - 1)) of $ps (1 table)' line: $(grep 'saved shard' "$TMP/err")"
        python3 "$SRC/tools/scale-calib.py" --report "$TMP/r$ps-$shm/report.json" --job student \
            --batch 64 --compute-us 1 --ps-key-ns 100 >"$TMP/c$ps-$shm.yaml" 2>"$TMP/err" ||
            fail "scale-calib: $(cat "$TMP/err")"
        K[$ps-$shm]="$(sed -n 's/^keys_per_sample: \([0-9.]*\) .*/\1/p' "$TMP/c$ps-$shm.yaml")"
    done
done
# The shared-memory runs did use it (else this test would prove nothing).
grep -q "keys_per_sample: .*(0 of " "$TMP/c1-auto.yaml" && fail "ps.shm auto used no shared memory: $(cat "$TMP/c1-auto.yaml")"
grep -q "keys_per_sample: .*(0 of " "$TMP/c3-off.yaml" || fail "ps.shm off used shared memory: $(cat "$TMP/c3-off.yaml")"
[ -n "${K[1-off]}" ] || fail "no keys_per_sample: $(cat "$TMP/c1-off.yaml")"
for k in 1-auto 3-auto 3-off; do
    [ "${K[$k]}" = "${K[1-off]}" ] ||
        fail "keys_per_sample differs: 1 PS shm off ${K[1-off]}, $k ${K[$k]}"
done

# --ps-dim: the row of that width, named in the comment; an absent width is an error.
printf '{"rows": [{"dim": 8, "keys_per_s_per_ps": 2.0e7}, {"dim": 64, "keys_per_s_per_ps": 1.0e7}]}\n' >"$TMP/ps.json"
R="$TMP/r1-auto/report.json"
python3 "$SRC/tools/scale-calib.py" --report "$R" --job student --batch 64 --compute-us 1 \
    --bench-ps "$TMP/ps.json" --ps-dim 64 >"$TMP/c.yaml" || fail "scale-calib --ps-dim 64"
grep -q "^ps_key_ns: 100.000 .* at dim 64" "$TMP/c.yaml" || fail "--ps-dim 64: $(cat "$TMP/c.yaml")"
python3 "$SRC/tools/scale-calib.py" --report "$R" --job student --batch 64 --compute-us 1 \
    --bench-ps "$TMP/ps.json" >"$TMP/c.yaml" || fail "scale-calib default row"
grep -q "^ps_key_ns: 50.000 .* at dim 8" "$TMP/c.yaml" || fail "default row: $(cat "$TMP/c.yaml")"
python3 "$SRC/tools/scale-calib.py" --report "$R" --job student --batch 64 --compute-us 1 \
    --bench-ps "$TMP/ps.json" --ps-dim 16 >/dev/null 2>"$TMP/err" && fail "--ps-dim 16 accepted"
grep -q "no row with dim 16" "$TMP/err" || fail "--ps-dim 16 message: $(cat "$TMP/err")"
# Values the model cannot use are refused at once (they gave exit 0 and a calibration file that
# scale-model then rejected).
for bad in "--batch nan" "--batch 0" "--batch -5" "--msg-overhead-us -1" "--hot-keys -3" "--compute-us 0"; do
    # shellcheck disable=SC2086
    python3 "$SRC/tools/scale-calib.py" --report "$R" --job student --batch 64 --compute-us 1 \
        --bench-ps "$TMP/ps.json" $bad >/dev/null 2>"$TMP/err" && fail "scale-calib $bad accepted"
    grep -q "argument ${bad%% *}: .*expected a finite number" "$TMP/err" || fail "scale-calib $bad: $(cat "$TMP/err")"
done
echo "scale_calib_shm: ok (keys_per_sample ${K[1-off]} in all four layouts)"
