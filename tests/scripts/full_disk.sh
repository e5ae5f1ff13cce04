#!/usr/bin/env bash
# full_disk.sh — a real ENOSPC: `recdistill prepare` and `recdistill train` writing into a 1 MiB
# tmpfs. Each must exit 1 with a message naming the file and the cause, leave no partial output
# (no dataset folder, no temporary folder, no report.json), and a dataset prepared before the disk
# filled stays valid; `score` whose --json fills the disk after its --out CSV was placed removes
# the CSV. Needs to mount a tmpfs (root); otherwise it reruns the prepare check under
# `ulimit -f` (EFBIG instead of ENOSPC). tests/test_fulldisk.c covers the token store, MDB_MAP_FULL
# and checkpoints under RLIMIT_FSIZE.
#
#   bash tests/scripts/full_disk.sh build/recdistill
set -u
RD="${1:?usage: full_disk.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_full_XXXXXX)"
MNT="$TMP/disk"
mkdir -p "$MNT"
MOUNTED=0
cleanup() { [ $MOUNTED -eq 1 ] && umount "$MNT" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 200k synthetic events: about 30 MB of dataset, far more than the disk.
sed -e 's/events: 4000/events: 200000/' "$SRC/tests/data/slurm-tiny.yaml" > "$TMP/big.yaml"

if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=1m rd_full "$MNT" 2>/dev/null; then
    MOUNTED=1
    # --- prepare onto a full disk ---------------------------------------------------------------
    "$RD" prepare "$TMP/big.yaml" --out "$MNT/data" >/dev/null 2>"$TMP/err"
    rc=$?
    [ $rc -eq 1 ] || fail "prepare on a full disk: exit $rc"
    grep -q "$MNT/data.*No space left on device" "$TMP/err" || fail "prepare message: $(cat "$TMP/err")"
    [ -z "$(ls -A "$MNT")" ] || fail "prepare left output on the full disk: $(ls -A "$MNT")"
    echo "prepare: $(cat "$TMP/err")"

    # --- a small dataset fits; a second, bigger prepare over it fails and keeps it ----------------
    "$RD" prepare "$SRC/tests/data/slurm-tiny.yaml" --out "$MNT/data" >/dev/null 2>"$TMP/err" ||
        fail "small prepare: $(cat "$TMP/err")"
    sum=$(md5sum "$MNT/data/events.bin")
    "$RD" prepare "$TMP/big.yaml" --out "$MNT/data" >/dev/null 2>"$TMP/err" && fail "replace on a full disk must fail"
    [ "$(md5sum "$MNT/data/events.bin")" = "$sum" ] || fail "the existing dataset changed"
    [ "$(ls -A "$MNT")" = "data" ] || fail "temporary output left: $(ls -A "$MNT")"

    # --- scale-model whose second plot does not fit: the first is removed again -------------------
    # Both targets pass the checks made before writing; the disk fills only while the second
    # plot is written, after the first was renamed into place (and its parent folder made).
    head -c 2M /dev/zero >"$MNT/filler" 2>/dev/null
    "$RD" scale-model --calib "$SRC/docs/scaling/calib-student.yaml" --out "$TMP/sm/eff.png" \
        --out-throughput "$MNT/tp.png" >/dev/null 2>"$TMP/err"
    rc=$?
    [ $rc -eq 1 ] || fail "scale-model with a full disk for --out-throughput: exit $rc"
    grep -q "No space left on device" "$TMP/err" || fail "scale-model message: $(cat "$TMP/err")"
    [ ! -e "$TMP/sm" ] || fail "scale-model left --out behind: $(ls -R "$TMP/sm")"
    [ ! -e "$MNT/tp.png" ] && ! ls "$MNT"/tp.png.tmp* >/dev/null 2>&1 || fail "scale-model left a plot on the full disk"
    rm -f "$MNT/filler"
    echo "scale-model: $(head -1 "$TMP/err")"

    # --- train whose run folder is on the full disk ------------------------------------------------
    if command -v mpiexec.mpich >/dev/null; then
        rm -rf "$MNT/data"
        timeout 120 mpiexec.mpich -n 4 "$RD" train "$TMP/big.yaml" --out "$MNT/run" >/dev/null 2>"$TMP/err"
        rc=$?
        [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "train on a full disk: exit $rc"
        grep -q "No space left on device" "$TMP/err" || fail "train message: $(grep -v INFO "$TMP/err" | tail -3)"
        [ ! -e "$MNT/run/report.json" ] || fail "train left a report"
        [ ! -e "$MNT/run/data" ] || fail "train left a dataset: $(ls -A "$MNT/run")"
        echo "train: $(grep -v INFO "$TMP/err" | head -1)"
        # --- score whose --json does not fit after its --out CSV was placed: the CSV goes too ----
        rm -rf "$MNT/run"
        timeout 120 mpiexec.mpich -n 4 "$RD" train "$SRC/tests/data/slurm-tiny.yaml" --out "$TMP/run" \
            >/dev/null 2>"$TMP/err" || fail "train of the tiny run: $(grep -v INFO "$TMP/err" | tail -3)"
        "$RD" export "$SRC/tests/data/slurm-tiny.yaml" --run "$TMP/run" --out "$TMP/s.rdsv" \
            >/dev/null 2>"$TMP/err" || fail "export: $(cat "$TMP/err")"
        head -c 2M /dev/zero >"$MNT/filler" 2>/dev/null
        "$RD" score "$TMP/s.rdsv" --run "$TMP/run" --out "$TMP/sc/s.csv" --json "$MNT/s.json" \
            >/dev/null 2>"$TMP/err"
        rc=$?
        [ $rc -eq 1 ] || fail "score with a full disk for --json: exit $rc"
        grep -q "s.json.*No space left on device" "$TMP/err" || fail "score message: $(cat "$TMP/err")"
        [ ! -e "$TMP/sc" ] || fail "score left its --out CSV behind: $(ls -R "$TMP/sc")"
        [ "$(ls -A "$MNT")" = filler ] || fail "score left output on the full disk: $(ls -A "$MNT")"
        rm -f "$MNT/filler"
        echo "score: $(head -1 "$TMP/err")"
    fi
else
    echo "cannot mount a tmpfs: prepare under ulimit -f instead"
    ( ulimit -f 512; trap '' XFSZ; exec "$RD" prepare "$TMP/big.yaml" --out "$TMP/data" ) >/dev/null 2>"$TMP/err"
    rc=$?
    [ $rc -eq 1 ] || fail "prepare over the file size limit: exit $rc"
    grep -q "$TMP/data.*File too large" "$TMP/err" || fail "prepare message: $(cat "$TMP/err")"
    [ -z "$(ls -A "$TMP" | grep -v -e big.yaml -e err -e disk)" ] || fail "partial output: $(ls -A "$TMP")"
fi
echo "full_disk.sh: ok"
