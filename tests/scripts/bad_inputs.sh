#!/usr/bin/env bash
# bad_inputs.sh — the bad-input corpus of tests/bad/, through the program as a user runs it:
# configs (recdistill config and prepare), schemas and CSV logs (prepare), binary datasets
# (train over a damaged events.bin), LMDB stores (train replaying a damaged target log) and
# command lines. Every case must: exit with the expected non-zero code (never a signal, never the
# timeout), print a message naming what and where (a fixed string from the case list), and leave
# no partial output (no dataset folder, no temporary folder, no report.json). Wire messages are
# checked by the ctest `bad_wire` (tests/fuzz/replay.c over tests/bad/wire/). tests/bad/README.md
# describes the case lists.
#
#   bash tests/scripts/bad_inputs.sh build/recdistill
set -u
RD="${1:?usage: bad_inputs.sh path/to/recdistill}"
case "$RD" in /*) ;; *) RD="$PWD/$RD" ;; esac
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
BAD="$SRC/tests/bad"
TMP="$(mktemp -d /tmp/rd_test_bad_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
MPIEXEC="$(command -v mpiexec.mpich || true)"
n_cases=0 n_fail=0
fail() { echo "FAIL: $*" >&2; exit 1; }
bad() { echo "FAIL [$1]: $2" >&2; n_fail=$((n_fail + 1)); }

# check NAME EXPECTED_RC MESSAGE OUTDIR -- CMD...: run CMD in $TMP (60 s at most) and check the
# promises. EXPECTED_RC "any" = any non-zero exit that is not a signal.
check() {
    local name="$1" want="$2" msg="$3" out="$4"
    shift 5
    n_cases=$((n_cases + 1))
    (cd "$TMP" && exec timeout 60 "$@") </dev/null >"$TMP/stdout" 2>"$TMP/stderr"
    local rc=$?
    if [ $rc -eq 124 ]; then bad "$name" "hang (timeout)"; return; fi
    if [ $rc -ge 128 ] || grep -q "AddressSanitizer\|runtime error\|Segmentation\|core dumped\|BAD TERMINATION" "$TMP/stderr" "$TMP/stdout"; then
        bad "$name" "crash (exit $rc): $(grep -v INFO "$TMP/stderr" | head -5)"; return
    fi
    if [ "$want" = any ]; then
        [ $rc -ne 0 ] || { bad "$name" "exit 0"; return; }
    elif [ $rc -ne "$want" ]; then
        bad "$name" "exit $rc, expected $want: $(grep -v INFO "$TMP/stderr" | head -3)"; return
    fi
    grep -aqF -- "$msg" "$TMP/stderr" || { bad "$name" "message lacks '$msg': $(grep -v INFO "$TMP/stderr" | head -3)"; return; }
    if [ -n "$out" ]; then
        [ ! -e "$out/report.json" ] || bad "$name" "left $out/report.json"
        [ ! -e "$out/events.bin" ] || bad "$name" "left a dataset at $out"
        if ls -d "$out".tmp-* "$out"/data.tmp-* >/dev/null 2>&1; then bad "$name" "left a temporary folder"; fi
    fi
    echo "ok $name (exit $rc): $(grep -aF -- "$msg" "$TMP/stderr" | head -1 | cut -c1-150)"
}

# --- configs: recdistill config, then recdistill prepare (no dataset may appear) -------------------
while IFS='|' read -r file msg; do
    [ -n "$file" ] || continue
    cp "$BAD/config/$file" "$TMP/$file"
    check "config/$file" 1 "$msg" "" -- "$RD" config "$file"
    check "prepare config/$file" 1 "$msg" "$TMP/cfg_out" -- "$RD" prepare "$file" --out "$TMP/cfg_out"
done < "$BAD/config/cases"

# --- CSV logs and side tables, and schemas: recdistill prepare ----------------------------------------
csv_config() { # $1 = schema block file (or empty for the default schema)
    cat <<EOF
run: {name: t, seed: 3}
cluster:
  jobs:
    - {name: s, role: student, model: m}
ps:
  tables:
    - {name: t, dim: 4}
models:
  - name: m
    features:
      - {field: user, table: t}
data:
  source: csv
  input: $TMP/in
  split: {batch_fraction: 0.5, holdout_fraction: 0.2, stream_windows: 1}
  schema:
EOF
    if [ -n "$1" ]; then
        cat "$1"
    else
        printf '%s\n' '    path: clicks.csv' '    user_column: uid' '    item_column: iid' \
            '    time_column: ts' '    label: "clicked >= 1"' '    side:' \
            '      - {name: users, path: users.csv, header: true, key_column: uid, join_column: uid}' \
            '    fields:' '      - {name: country, side: users}' \
            '      - {name: tags, kind: multi, max_len: 3}' '      - {name: price, kind: numeric}'
    fi
}
fresh_input() {
    rm -rf "$TMP/in"; mkdir -p "$TMP/in"
    cp "$SRC/tests/data/clicks.csv" "$SRC/tests/data/users.csv" "$TMP/in/"
}
csv_config "" > "$TMP/csv.yaml"
fresh_input
"$RD" prepare "$TMP/csv.yaml" --out "$TMP/csv_ok" >/dev/null 2>&1 || fail "the good CSV does not prepare"
while IFS='|' read -r file msg; do
    [ -n "$file" ] || continue
    fresh_input
    case "$file" in side/*) cp "$BAD/csv/$file" "$TMP/in/users.csv" ;; *) cp "$BAD/csv/$file" "$TMP/in/clicks.csv" ;; esac
    check "csv/$file" 1 "$msg" "$TMP/csv_out" -- "$RD" prepare "$TMP/csv.yaml" --out "$TMP/csv_out"
done < "$BAD/csv/cases"
while IFS='|' read -r file msg; do
    [ -n "$file" ] || continue
    fresh_input
    csv_config "$BAD/schema/$file" > "$TMP/schema.yaml"
    check "schema/$file" 1 "$msg" "$TMP/schema_out" -- "$RD" prepare "$TMP/schema.yaml" --out "$TMP/schema_out"
done < "$BAD/schema/cases"

# --- command lines (run in $TMP: relative paths name files that do not exist) ----------------------
while IFS='|' read -r want msg args; do
    case "$want" in ''|'#'*) continue ;; esac
    # shellcheck disable=SC2086
    check "cmdline: ${args:0:60}" "$want" "$msg" "" -- "$RD" $args
done < "$BAD/cmdline/cases"

# --- binary datasets and LMDB target logs: recdistill train ------------------------------------------
if [ -z "$MPIEXEC" ] || ! command -v python3 >/dev/null; then
    echo "mpiexec.mpich or python3 not found: dataset and LMDB cases skipped"
else
    TINY="$SRC/tests/data/slurm-tiny.yaml"
    # A live run: its dataset and target log are the good originals.
    timeout 120 "$MPIEXEC" -n 4 "$RD" train "$TINY" --out "$TMP/live" </dev/null >/dev/null 2>"$TMP/err" ||
        fail "live run: $(grep -v INFO "$TMP/err" | tail -3)"
    [ -s "$TMP/live/data/events.bin" ] && [ -d "$TMP/live/targets" ] || fail "live run left no dataset/target log"
    while IFS='|' read -r name how msg; do
        case "$name" in ''|'#'*) continue ;; esac
        out="$TMP/ds_$name"
        rm -rf "$out"; mkdir -p "$out"; cp -r "$TMP/live/data" "$out/data"
        python3 "$BAD/dataset/corrupt.py" "$out/data" "$how" || fail "dataset/corrupt.py $how"
        check "dataset/$name" any "$msg" "$out" -- "$MPIEXEC" -n 4 "$RD" train "$TINY" --out "$out"
    done < "$BAD/dataset/cases"
    # The student alone, replaying a target log.
    python3 - "$TINY" "$TMP/replay.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("    - {name: teacher, role: teacher, model: teacher}\n", "")
s = s.replace("    - {name: student_raw, role: student, model: student_raw}\n", "")
s = s.replace("distill: true}", "distill: true, teacher: teacher}")
s += "distill:\n  replay: true\n  target_log: TARGET_LOG\n"
open(sys.argv[2], "w").write(s)
PY
    while IFS='|' read -r name how msg; do
        case "$name" in ''|'#'*) continue ;; esac
        out="$TMP/tl_$name" log="$TMP/tl_$name.log"
        rm -rf "$out" "$log"; mkdir -p "$out"; cp -r "$TMP/live/data" "$out/data"
        cp -r "$TMP/live/targets" "$log"
        python3 "$BAD/lmdb/corrupt.py" "$log" "$how" || fail "lmdb/corrupt.py $how"
        sed "s#TARGET_LOG#$log#" "$TMP/replay.yaml" > "$TMP/replay_$name.yaml"
        check "lmdb/$name" any "$msg" "$out" -- "$MPIEXEC" -n 2 "$RD" train "$TMP/replay_$name.yaml" --out "$out"
    done < "$BAD/lmdb/cases"
    # A log or side table that is a stream: prepare reads one (tests/scripts/prepare.sh), train
    # cannot. A FIFO nobody writes hung train in open() until its timeout; refused by name now.
    fresh_input
    mkfifo "$TMP/in/stream.csv" || fail "mkfifo"
    sed 's#    path: clicks.csv#    path: stream.csv#' "$TMP/csv.yaml" >"$TMP/stream_log.yaml"
    sed 's#path: users.csv#path: stream.csv#' "$TMP/csv.yaml" >"$TMP/stream_side.yaml"
    check "train: the log is a FIFO" 1 "data.schema.path ($TMP/in/stream.csv) is a stream (a pipe, FIFO or device), which train cannot read" \
        "$TMP/stream_out" -- "$MPIEXEC" -n 2 "$RD" train "$TMP/stream_log.yaml" --out "$TMP/stream_out"
    check "train: a side table is a FIFO" 1 "data.schema.side[].path ($TMP/in/stream.csv) is a stream" \
        "$TMP/stream_out" -- "$MPIEXEC" -n 2 "$RD" train "$TMP/stream_side.yaml" --out "$TMP/stream_out"
    [ ! -e "$TMP/stream_out" ] || bad "train: a stream" "left the run folder $TMP/stream_out"
fi

echo "bad_inputs.sh: $n_cases cases, $n_fail failed"
[ $n_fail -eq 0 ] || exit 1
echo "bad_inputs.sh: ok"
