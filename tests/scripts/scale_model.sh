#!/usr/bin/env bash
# scale_model.sh — communication accounting end to end and the tools built on it:
#   - `recdistill train` (1 PS, a 2-rank teacher and a distilled student) writes report.json
#     "comm" whose figures are consistent: jobs sum to the total, both ends of the targets
#     channel agree (sent = received), per sample = wire bytes / trained samples, the allreduce
#     channel holds exactly the ring cost of the teacher's dense parameters per step, and the
#     PS channels are non-zero while the token channels are zero (no token branch);
#   - tools/scale-calib.py turns it into a calibration, `recdistill scale-model` prints the
#     projection and writes valid PNG plots (checked by an independent decoder in python, and
#     by `file`/`pngcheck` when installed);
#   - `recdistill plot` draws CSV columns; bad input (unknown column, no numbers, unwritable
#     path, bad calibration, usage errors) gives a clear message, a non-zero exit and no file.
#
#   bash tests/scripts/scale_model.sh build/recdistill
set -u
RD="${1:?usage: scale_model.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
MPIEXEC="$(command -v mpiexec.mpich || true)"
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_scale_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A PNG check independent of the writer: chunk CRCs, zlib (python's inflater), Adler-32, size.
pngok() { # path width height
    python3 - "$@" <<'EOF'
import struct, sys, zlib
path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = open(path, "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "signature"
i, idat, seen = 8, b"", []
while i < len(d):
    n, = struct.unpack(">I", d[i:i + 4]); t = d[i + 4:i + 8]; body = d[i + 8:i + 8 + n]
    crc, = struct.unpack(">I", d[i + 8 + n:i + 12 + n])
    assert zlib.crc32(t + body) & 0xffffffff == crc, f"CRC of {t}"
    seen.append(t)
    if t == b"IHDR":
        assert struct.unpack(">IIBBBBB", body) == (w, h, 8, 2, 0, 0, 0), body
    if t == b"IDAT":
        idat += body
    i += 12 + n
assert seen[0] == b"IHDR" and seen[-1] == b"IEND", seen
raw = zlib.decompress(idat)  # checks the Adler-32 too
assert len(raw) == h * (3 * w + 1), len(raw)
assert all(raw[y * (3 * w + 1)] == 0 for y in range(h)), "filter bytes"
EOF
}
extra_png_checks() {
    if command -v file >/dev/null; then
        file "$1" | grep -q "PNG image data, $2 x $3, 8-bit/color RGB" || fail "file(1): $(file "$1")"
    fi
    if command -v pngcheck >/dev/null; then
        pngcheck -q "$1" >/dev/null || fail "pngcheck: $(pngcheck "$1")"
    fi
}

# --- usage -------------------------------------------------------------------------------------
"$RD" scale-model --help | grep -q "usage: recdistill scale-model" || fail "scale-model --help"
"$RD" plot --help | grep -q "usage: recdistill plot" || fail "plot --help"
"$RD" scale-model >/dev/null 2>&1; [ $? -eq 2 ] || fail "scale-model without --calib must exit 2"
"$RD" scale-model --calib x --bw -1 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--bw -1 must exit 2"
"$RD" plot a.csv --x a >/dev/null 2>&1; [ $? -eq 2 ] || fail "plot without --y/--out must exit 2"
"$RD" --help | grep -q "scale-model" || fail "scale-model is not in the command list"

# --- bad calibration -----------------------------------------------------------------------------
printf 'compute_us_per_sample: 1\nbatch_per_worker: 0\n' >"$TMP/bad.yaml"
"$RD" scale-model --calib "$TMP/bad.yaml" --out "$TMP/bad.png" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "bad calibration must exit 1"
grep -q "bad.yaml:2: batch_per_worker" "$TMP/err" || fail "bad calibration message: $(cat "$TMP/err")"
[ ! -e "$TMP/bad.png" ] || fail "bad calibration wrote a plot"
"$RD" scale-model --calib "$TMP/nowhere.yaml" >/dev/null 2>"$TMP/err" && fail "missing calibration accepted"
grep -q "nowhere.yaml: cannot read" "$TMP/err" || fail "missing calibration message: $(cat "$TMP/err")"

# --- two plots: the second target is checked before the first is written -------------------------
# --out-throughput a device or a folder failed only after --out was renamed into place, which
# stayed behind (a failed command's partial output). Both are refused before anything is written.
CAL="$SRC/docs/scaling/calib-student.yaml"
mkdir -p "$TMP/adir"
for tp in /dev/full "$TMP/adir" "$TMP/afile0/x.png"; do
    echo x >"$TMP/afile0"
    "$RD" scale-model --calib "$CAL" --out "$TMP/first/eff.png" --out-throughput "$tp" >/dev/null 2>"$TMP/err"
    [ $? -eq 1 ] || fail "--out-throughput $tp must exit 1"
    grep -q "nothing written" "$TMP/err" || fail "--out-throughput $tp message: $(cat "$TMP/err")"
    [ ! -e "$TMP/first" ] || fail "--out-throughput $tp left --out behind: $(ls -R "$TMP/first")"
done
"$RD" scale-model --calib "$CAL" --out "$TMP/adir" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "--out a folder must exit 1"
grep -q -- "--out $TMP/adir is a folder" "$TMP/err" || fail "--out folder message: $(cat "$TMP/err")"

# --- a training run: report.json "comm" ----------------------------------------------------------
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
cat >"$TMP/run.yaml" <<EOF
run: {name: comm, seed: 9}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: big, ranks: 2}
    - {name: student, role: student, model: small, distill: true}
data:
  source: synthetic
  history_max: 8
  synthetic: {events: 4000, users: 200, items: 400}
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
    mlp: [16]
  - name: small
    features:
      - {field: user, table: s_user}
      - {field: item, table: s_item}
    mlp: [8]
    two_towers: true
    tower: [4]
train: {batch_size: 64, epochs: 1}
distill: {alpha: 0.5}
output: {progress_every_s: 0}
EOF
timeout 300 "$MPIEXEC" -n 4 "$RD" train "$TMP/run.yaml" --out "$TMP/run" >"$TMP/out" 2>"$TMP/err" ||
    fail "train: $(cat "$TMP/err")"
R="$TMP/run/report.json"
python3 - "$R" <<'EOF' || fail "report.json comm: $(python3 -m json.tool "$R" | head -120)"
import json, sys
r = json.load(open(sys.argv[1]))
c = r["comm"]
chans = ["ps_pull", "ps_push", "ps_ctl", "ps_ckpt", "token_fetch", "token_append", "targets",
         "allreduce"]
both = {"targets", "allreduce"}
samples = sum(j["launch_samples"] for j in r["jobs"].values())
assert all(j["launch_samples"] == j["train_samples"] for j in r["jobs"].values())  # not resumed
assert c["samples"] == samples > 0, (c["samples"], samples)
total = 0
for ch in chans:
    x = c[ch]
    wire = x["bytes_sent"] if ch in both else x["bytes_sent"] + x["bytes_recv"]
    assert x["wire_bytes"] == wire, ch
    assert abs(x["bytes_per_sample"] - wire / samples) < 1e-3, ch
    # The run total is the sum of the jobs.
    for k in ("msgs_sent", "bytes_sent", "msgs_recv", "bytes_recv"):
        assert x[k] == sum(j["comm"][ch][k] for j in r["jobs"].values()), (ch, k)
    total += wire
assert c["total"]["wire_bytes"] == total
# Both ends of the targets channel are counted: the teacher's data messages are the student's
# received ones and the student's credits the teacher's received ones.
t, s = r["jobs"]["teacher"]["comm"]["targets"], r["jobs"]["student"]["comm"]["targets"]
assert t["bytes_sent"] > 0 and t["bytes_sent"] == s["bytes_recv"] and t["msgs_sent"] == s["msgs_recv"]
assert s["bytes_sent"] == t["bytes_recv"] and s["bytes_sent"] == 16 * s["msgs_sent"]
# Every target is 20 bytes plus a 40-byte header per message.
sent = r["jobs"]["teacher"]["targets"]["sent"]
assert t["bytes_sent"] >= 20 * sent and (t["bytes_sent"] - 20 * sent) % 40 == 0, (t, sent)
# Allreduce: the 2-rank teacher moves 2 (W - 1) / W * 4 * n bytes per rank per step in
# 2 (W - 1) = 2 messages, n = its gradient slab: the parameters plus the 64-byte alignment
# padding of each tensor (at most 15 floats per tensor); the 1-rank student none.
a = r["jobs"]["teacher"]["comm"]["allreduce"]
P = r["jobs"]["teacher"]["params"]
steps = a["msgs_sent"] // (2 * 2)  # 2 ranks x 2 messages per step
assert steps > 0 and a["msgs_sent"] == 4 * steps and a["bytes_sent"] % (2 * steps) == 0, a
n = a["bytes_sent"] // (2 * steps) // 4  # floats per rank per step (2 (W-1) / W = 1)
assert P <= n <= P + 15 * 32, (a, P, n)
assert a["bytes_recv"] == a["bytes_sent"]
assert r["jobs"]["student"]["comm"]["allreduce"]["bytes_sent"] == 0
# PS traffic exists; no token branch in these models.
for ch in ("ps_pull", "ps_push", "ps_ctl"):
    assert c[ch]["bytes_sent"] > 0 and c[ch]["bytes_recv"] > 0, ch
assert c["token_fetch"]["wire_bytes"] == 0 and c["token_append"]["wire_bytes"] == 0
# A pull request is a 64-byte header, a 32-byte shared-memory descriptor (ps.shm auto, one
# node) and 8 bytes per key; it is answered by one header message, the values cross through
# the shared region (counted in bytes_recv, without a message).
p = c["ps_pull"]
assert (p["bytes_sent"] - 96 * p["msgs_sent"]) % 8 == 0 and p["msgs_recv"] == p["msgs_sent"], p
EOF

# --- calibration + projection ----------------------------------------------------------------------
printf '{"teacher_samples_per_s": 1000.0, "student_samples_per_s": 50000.0}\n' >"$TMP/dense.json"
printf '{"rows": [{"dim": 8, "keys_per_s_per_ps": 2.0e7}]}\n' >"$TMP/ps.json"
python3 "$SRC/tools/scale-calib.py" --report "$R" --job student --batch 64 \
    --bench-dense "$TMP/dense.json" --dense-model student --bench-ps "$TMP/ps.json" \
    >"$TMP/calib.yaml" 2>"$TMP/err" || fail "scale-calib: $(cat "$TMP/err")"
grep -q "^compute_us_per_sample: 20.0000" "$TMP/calib.yaml" || fail "calib compute: $(cat "$TMP/calib.yaml")"
grep -q "^ps_key_ns: 50.000" "$TMP/calib.yaml" || fail "calib ps_key_ns: $(cat "$TMP/calib.yaml")"
python3 "$SRC/tools/scale-calib.py" --report "$R" --job nobody --batch 64 --compute-us 1 \
    --ps-key-ns 1 >/dev/null 2>"$TMP/err" && fail "scale-calib accepted an unknown job"
grep -q "no job 'nobody'" "$TMP/err" || fail "scale-calib message: $(cat "$TMP/err")"
# Malformed inputs: exit 1 and one line naming the file and the key, not a Python traceback (a
# JSON list, or a bench_ps row of 0 keys/s: a ZeroDivisionError). A later option overrides.
calib_bad() { # the expected message, then the options that make the input bad
    local want=$1
    shift
    python3 "$SRC/tools/scale-calib.py" --report "$R" --job student --batch 64 \
        --bench-dense "$TMP/dense.json" --dense-model student --bench-ps "$TMP/ps.json" "$@" \
        >/dev/null 2>"$TMP/err"
    local rc=$?
    { [ $rc -eq 1 ] && grep -qxF "scale-calib: $want" "$TMP/err"; } ||
        fail "scale-calib $*: exit $rc: $(cat "$TMP/err")"
}
echo '[]' >"$TMP/list.json"
printf '{"rows": [{"dim": 8, "keys_per_s_per_ps": 0}]}\n' >"$TMP/ps0.json"
printf '{"student_samples_per_s": "fast"}\n' >"$TMP/dstr.json"
calib_bad "$TMP/list.json: not a JSON object" --report "$TMP/list.json"
calib_bad "$TMP/list.json: not a JSON object" --bench-dense "$TMP/list.json"
calib_bad "$TMP/ps0.json: keys_per_s_per_ps at dim 8: 0 is not a positive number" --bench-ps "$TMP/ps0.json"
calib_bad "$TMP/dstr.json: student_samples_per_s: \"fast\" is not a positive number" \
    --bench-dense "$TMP/dstr.json"

"$RD" scale-model --calib "$TMP/calib.yaml" --bw 12.5 --lat 2 --out "$TMP/eff.png" \
    --out-throughput "$TMP/tp.png" >"$TMP/model.txt" 2>"$TMP/err" || fail "scale-model: $(cat "$TMP/err")"
[ "$(grep -c '^ *[0-9]' "$TMP/model.txt")" -eq 9 ] || fail "1..256 nodes = 9 rows: $(cat "$TMP/model.txt")"
grep -q "^first bottleneck: " "$TMP/model.txt" || fail "no bottleneck line: $(cat "$TMP/model.txt")"
awk '$1 == 1 && $10 != "100.0" {exit 1}' "$TMP/model.txt" || fail "1 node must be 100%: $(cat "$TMP/model.txt")"
for f in eff tp; do
    pngok "$TMP/$f.png" 800 500 || fail "$f.png is not a valid PNG"
    extra_png_checks "$TMP/$f.png" 800 500
    [ "$(stat -c %s "$TMP/$f.png")" -lt 100000 ] || fail "$f.png is over 100 KB"
done
"$RD" scale-model --calib "$TMP/calib.yaml" --max-nodes 8 >"$TMP/m8.txt" || fail "--max-nodes 8"
[ "$(grep -c '^ *[0-9]' "$TMP/m8.txt")" -eq 4 ] || fail "--max-nodes 8: $(cat "$TMP/m8.txt")"
# Any node count: the powers of 2 below it, then itself (a --max-nodes 100 stopped at 64 nodes,
# and said "none up to 64 nodes"). The largest, 32768, and one below it fit the table (16 rows).
for m in 100:1,2,4,8,16,32,64,100 3:1,2,3 1:1 32767:16 32768:16; do
    max="${m%%:*}" want="${m#*:}"
    "$RD" scale-model --calib "$TMP/calib.yaml" --max-nodes "$max" --out "$TMP/m.png" >"$TMP/m.txt" ||
        fail "--max-nodes $max: $(cat "$TMP/m.txt")"
    got="$(awk '/^ *[0-9]/ {printf "%s%s", s, $1; s = ","}' "$TMP/m.txt")"
    rows="$(grep -c '^ *[0-9]' "$TMP/m.txt")"
    case "$want" in
        *,* | 1) [ "$got" = "$want" ] || fail "--max-nodes $max: rows $got, expected $want" ;;
        *) [ "$rows" -eq "$want" ] || fail "--max-nodes $max: $rows rows, expected $want" ;;
    esac
    [ "${got##*,}" = "$max" ] || fail "--max-nodes $max: the last row is ${got##*,} nodes"
    if grep -q "^first bottleneck: none" "$TMP/m.txt"; then
        grep -q "^first bottleneck: none up to $max nodes" "$TMP/m.txt" ||
            fail "--max-nodes $max: $(tail -1 "$TMP/m.txt")"
    fi
done
# A slower network can only lower the efficiency at 256 nodes.
e_fast="$(awk '$1 == 256 {print $10}' "$TMP/model.txt")"
"$RD" scale-model --calib "$TMP/calib.yaml" --bw 0.125 --lat 50 >"$TMP/slow.txt" || fail "slow network"
e_slow="$(awk '$1 == 256 {print $10}' "$TMP/slow.txt")"
awk -v a="$e_fast" -v b="$e_slow" 'BEGIN {exit !(b < a)}' || fail "slow network efficiency $e_slow >= $e_fast"
# Unwritable plot (a file where its folder belongs): exit 1, message naming the path. Missing
# folders are made, as plot makes them.
echo x >"$TMP/afile"
"$RD" scale-model --calib "$TMP/calib.yaml" --out "$TMP/afile/x.png" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "unwritable plot must exit 1"
grep -q "afile" "$TMP/err" || fail "unwritable plot message: $(cat "$TMP/err")"
"$RD" scale-model --calib "$TMP/calib.yaml" --out "$TMP/no/such/dir/x.png" >/dev/null 2>"$TMP/err" ||
    fail "scale-model into missing folders: $(cat "$TMP/err")"
[ -s "$TMP/no/such/dir/x.png" ] || fail "scale-model into missing folders wrote nothing"
# A plot path naming the calibration (which the rename replaced by a PNG, exit 0), or both plots
# on one path: a usage error, and nothing written.
cp "$TMP/calib.yaml" "$TMP/calib.keep"
for opt in --out --out-throughput; do
    "$RD" scale-model --calib "$TMP/calib.yaml" $opt "$TMP/./calib.yaml" >/dev/null 2>"$TMP/err"
    [ $? -eq 2 ] || fail "$opt = --calib must exit 2"
    grep -q -- "$opt $TMP/./calib.yaml is the calibration file" "$TMP/err" || fail "$opt = --calib message: $(cat "$TMP/err")"
done
cmp -s "$TMP/calib.yaml" "$TMP/calib.keep" || fail "--out = --calib changed the calibration"
"$RD" scale-model --calib "$TMP/calib.yaml" --out "$TMP/same.png" --out-throughput "$TMP/x/../same.png" \
    >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || fail "--out = --out-throughput must exit 2"
grep -q "is the same path as --out-throughput" "$TMP/err" || fail "--out = --out-throughput message: $(cat "$TMP/err")"
[ ! -e "$TMP/same.png" ] || fail "--out = --out-throughput wrote a plot"

# --- recdistill plot -----------------------------------------------------------------------------
printf 'world_size,nodes,bps,other\n4,1,250.5,x\n8,1,260,\n16,2,270,3\n8,2,,1\n' >"$TMP/s.csv"
"$RD" plot "$TMP/s.csv" --x world_size --y bps --group nodes --out "$TMP/s.png" --ymin 0 \
    >"$TMP/out" 2>"$TMP/err" || fail "plot: $(cat "$TMP/err")"
grep -q "(3 points)" "$TMP/out" || fail "plot count: $(cat "$TMP/out")"
pngok "$TMP/s.png" 800 500 || fail "s.png is not a valid PNG"
extra_png_checks "$TMP/s.png" 800 500
"$RD" plot "$TMP/s.csv" --x world_size --y bps,other --out "$TMP/s2.png" >/dev/null ||
    fail "plot of two columns"
"$RD" plot "$TMP/s.csv" --x world_size --y colour --out "$TMP/c.png" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "unknown column must exit 1"
grep -q "no column 'colour'" "$TMP/err" || fail "unknown column message: $(cat "$TMP/err")"
[ ! -e "$TMP/c.png" ] || fail "unknown column wrote a plot"
printf 'a,b\nx,y\n' >"$TMP/t.csv"
"$RD" plot "$TMP/t.csv" --x a --y b --out "$TMP/t.png" >/dev/null 2>"$TMP/err" && fail "no numbers accepted"
grep -q "no row has numbers" "$TMP/err" || fail "no numbers message: $(cat "$TMP/err")"
# A missing parent folder of --out is made (as for the other tools' --out); a parent that is a
# file cannot be, and the message names it.
"$RD" plot "$TMP/s.csv" --x world_size --y bps --out "$TMP/nodir/x.png" >/dev/null 2>"$TMP/err" ||
    fail "plot into a missing folder: $(cat "$TMP/err")"
[ -s "$TMP/nodir/x.png" ] || fail "plot into a missing folder wrote nothing"
"$RD" plot "$TMP/s.csv" --x world_size --y bps --out "$TMP/t.csv/x.png" >/dev/null 2>"$TMP/err" &&
    fail "unwritable plot accepted"
grep -q "t.csv" "$TMP/err" || fail "plot unwritable message: $(cat "$TMP/err")"
# --out naming the input CSV (replaced by the PNG, exit 0): a usage error, the CSV untouched.
cp "$TMP/s.csv" "$TMP/s.keep"
"$RD" plot "$TMP/s.csv" --x world_size --y bps --out "$TMP/s.csv" >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || fail "plot --out = the CSV must exit 2"
grep -q "is the input file $TMP/s.csv: nothing written" "$TMP/err" || fail "plot --out = CSV message: $(cat "$TMP/err")"
cmp -s "$TMP/s.csv" "$TMP/s.keep" || fail "plot --out = the CSV changed it"
# An empty CSV: the message names it.
: >"$TMP/empty.csv"
"$RD" plot "$TMP/empty.csv" --x a --y b --out "$TMP/e.png" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "empty CSV must exit 1"
grep -q "$TMP/empty.csv: empty file (no header row)" "$TMP/err" || fail "empty CSV message: $(cat "$TMP/err")"
echo "scale_model.sh: ok"
