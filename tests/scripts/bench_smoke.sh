#!/usr/bin/env bash
# bench_smoke.sh — every benchmark under bench/ (bench_tokens has its own script) runs at a tiny
# size, exits 0, and writes JSON that parses and holds its headline figure, finite and positive;
# an unknown option exits 2 without JSON. No figure is judged here (this machine is shared and
# noisy): this keeps the tools that check the speed targets from rotting.
#
#   bash tests/scripts/bench_smoke.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: bench_smoke.sh path/to/recdistill}")"
B="$(dirname "$RD")/bench"
[ -x "$B/bench_dense" ] || { echo "no $B (RD_BUILD_BENCH off): skip"; exit 77; }
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_bench_smoke_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

# name | launcher ("" or "mpi") | tiny arguments | python expression over j that must hold
CASES=(
  "dense||--batch 8 --iters 1 --warmup 0 --seq-len 8 --dim 8 --layers 1 --heads 1|j['sgemm_gflops'] > 0 and j['teacher_samples_per_s'] > 0 and j['student_samples_per_s'] > 0"
  "dense||--batch 8 --iters 1 --warmup 0 --seq-len 8 --dim 8 --seq din|j['seq'] == 'din' and j['sgemm_gflops'] > 0 and j['teacher_samples_per_s'] > 0"
  "dense||--batch 8 --iters 1 --warmup 0 --seq-len 8 --dim 8 --layers 1 --heads 1 --lengths uniform|j['lengths'] == 'uniform' and j['teacher_samples_per_s'] > 0"
  "table||--dim 8 --draws 2000 --batches 2 --reps 2 --vocab 1000|j['pull_ns'] > 0 and j['push_ns'] > 0 and j['dedup_ns'] > 0"
  "prepare||--events 20000 --reps 1 --warmup 0 --skip-ml --out $TMP/prep|j['cases'][0]['events'] == 20000 and j['cases'][0]['events_per_s']['avg'] > 0"
  # Both cases, each run more than once, as README's command: the MovieLens case's ids.csv was
  # left in the bench's dataset folder, and every later run was refused ("not a dataset folder").
  "prepare||--events 1000 --reps 2 --warmup 1 --ml100k $SRC/tests/data/ml100k-mini --out $TMP/prepml|[c['name'] for c in j['cases']] == ['movielens100k', 'synthetic'] and all(c['reps'] == 2 for c in j['cases'])"
  # The JSON says how many requests each figure is of: 256 candidates run a quarter of --iters.
  # p99 is the nearest rank: of 10 requests (256 candidates) the slowest; it was the 9th.
  # What a server is sized by is in the JSON, not only printed: the bundle's bytes, the memory an
  # open scorer holds, the candidates a second (the JSON had none of the three).
  "serve||--iters 40 --warmup 1 --dir $TMP/serve|all(j['candidates'][n]['qps'] > 0 for n in ('1', '16', '256')) and j['tokens'] == 0 and [j['candidates'][n]['requests'] for n in ('1', '16', '256')] == [40, 40, 10] and j['candidates']['256']['p99_us'] == j['candidates']['256']['max_us'] and j['bundle_bytes'] == __import__('os').path.getsize('$TMP/serve/student.rdsv') and j['max_candidates'] == 256 and j['open_bytes'] > 0 and j['open_peak_bytes'] > 0 and j['threads'] == 1 and j['thread_bytes'] > 0 and abs(j['candidates']['16']['candidates_per_s'] - 16 * j['candidates']['16']['qps']) < 1"
  # Several serving threads at once, each with its scorer and token store handle: every thread's
  # requests are pooled, and what each further scorer holds is in the JSON.
  "serve||--iters 10 --warmup 1 --threads 2 --tokens 8 --dir $TMP/servethr|j['threads'] == 2 and j['thread_bytes'] > 0 and [j['candidates'][n]['requests'] for n in ('1', '16', '256')] == [20, 20, 20] and all(j['candidates'][n]['qps'] > 0 and j['candidates'][n]['fetch_p50_us'] > 0 for n in ('1', '16', '256'))"
  "serve||--iters 10 --warmup 1 --tokens 8 --dir $TMP/servetok|j['tokens'] == 8 and all(j['candidates'][n]['qps'] > 0 and 0 < j['candidates'][n]['fetch_p50_us'] <= j['candidates'][n]['p50_us'] for n in ('1', '16', '256'))"
  "ps|mpi|--ps 1 --dims 8 --steps 5 --warmup 1 --draws 500 --vocab 2000|j['rows'][0]['dim'] == 8 and j['rows'][0]['ps_row_gbps'] > 0 and j['rows'][0]['memcpy_gbps'] > 0"
  "window||--events 2000 --windows 50 --lookups 1000 --reps 1|j['search_ns'] > 0 and j['scan_ns'] > 0 and j['windows'] == 50"
  "numfmt||--floats 2000 --reps 1|j['fast_mfloats_per_s'] > 0 and j['snprintf_mfloats_per_s'] > 0 and j['floats'] == 2000"
  # The optimizer under the key bench_ps and bench_table write it as (bench_ckpt's was "optim").
  "ckpt||--rows 3000 --dim 8 --tables 2 --reps 2 --dir $TMP|j['rows'] == 3000 and j['tables'] == 2 and j['optimizer'] == 'adam' and 'optim' not in j and j['write_s'] > 0 and j['read_s'] > 0 and j['rows_per_s'] > 0"
  "targets|mpi|--teachers 1 --targets 5000 --batches 64,256 --reps 1 --warmup 0|len(j['results']) == 2 and all(r['targets_per_s_median'] > 0 for r in j['results'])"
)
for c in "${CASES[@]}"; do
  IFS='|' read -r name launch args check <<< "$c"
  run=("$B/bench_$name")
  [ "$launch" = mpi ] && run=("$MPIEXEC" -n 2 "$B/bench_$name")
  # shellcheck disable=SC2086
  timeout 300 "${run[@]}" $args --json "$TMP/$name.json" > "$TMP/$name.txt" 2>&1 ||
    { cat "$TMP/$name.txt"; fail "bench_$name exited non-zero"; }
  python3 - "$TMP/$name.json" "$check" "$name" <<'PY' || fail "bench_$name: JSON check failed: $check"
import json, math, sys
j = json.load(open(sys.argv[1]))
# Every file names its benchmark, as a dashboard reading a folder of them tells them apart:
# bench_dense's and bench_ckpt's had no "bench" key.
assert j.get("bench") == sys.argv[3], ("bench", j.get("bench"))
def finite(x):
    if isinstance(x, dict):
        return all(finite(v) for v in x.values())
    if isinstance(x, list):
        return all(finite(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)
assert finite(j), "a figure is not finite"
assert eval(sys.argv[2], {"j": j})
PY
  timeout 60 "${run[@]}" --bogus 1 --json "$TMP/bad-$name.json" > "$TMP/bad-$name.txt" 2>&1
  rc=$?
  [ $rc -eq 2 ] || fail "bench_$name --bogus exited $rc, expected 2"
  [ ! -e "$TMP/bad-$name.json" ] || fail "bench_$name --bogus wrote JSON"
  # A JSON that cannot be written in full (no file may grow: ulimit -f 0) is exit 1, and the file
  # of an earlier run stays as it was (a plain fopen left it empty with exit 0). Not for the MPI
  # benchmarks: the limit stops MPICH's shared-memory files first (SIGBUS).
  if [ "$launch" != mpi ]; then
    echo '{"earlier": 1}' > "$TMP/prev-$name.json"
    # (the output goes through a pipe: the limit would stop its writes to a file too)
    # shellcheck disable=SC2086
    (trap '' XFSZ; ulimit -f 0; timeout 300 "${run[@]}" $args --json "$TMP/prev-$name.json") 2>&1 |
      cat > "$TMP/xfsz-$name.txt"
    rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] || fail "bench_$name: a JSON it could not write exited 0"
    case "$name" in
      prepare | serve | window | ckpt) ;; # they write a dataset or shard first, which the limit stops before the JSON
      *) grep -q -- "--json: cannot write" "$TMP/xfsz-$name.txt" ||
           fail "bench_$name: no reason for the unwritten JSON: $(tail -3 "$TMP/xfsz-$name.txt")" ;;
    esac
    [ "$(cat "$TMP/prev-$name.json")" = '{"earlier": 1}' ] || fail "bench_$name: the earlier JSON changed"
    ls "$TMP"/prev-"$name".json.tmp.* > /dev/null 2>&1 && fail "bench_$name left a temporary JSON"
  fi
  echo "bench_$name: ok"
done

# The command line of every bench, as bench_dense's: --help is the usage on stdout (exit 0); a
# bad value names the option and its range (exit 2), trailing junk and a negative --zipf are
# refused, and an unwritable --json is refused before the benchmark runs.
for name in ckpt dense prepare ps serve table targets tokens window; do
  run=("$B/bench_$name")
  case "$name" in ps | targets | tokens) run=("$MPIEXEC" -n 1 "$B/bench_$name") ;; esac
  timeout 60 "${run[@]}" --help > "$TMP/help.out" 2> "$TMP/help.err" ||
    fail "bench_$name --help exited $?: $(cat "$TMP/help.err")"
  grep -q "usage: .*bench_$name" "$TMP/help.out" || fail "bench_$name --help: no usage on stdout"
  [ ! -s "$TMP/help.err" ] || fail "bench_$name --help wrote to stderr: $(cat "$TMP/help.err")"
  timeout 60 "${run[@]}" --json /nonexistent/dir/x.json > /dev/null 2> "$TMP/json.err" &
  pid=$!
  wait "$pid"
  rc=$?
  [ $rc -eq 2 ] || fail "bench_$name with an unwritable --json exited $rc, expected 2 at once"
  grep -q -- "--json: cannot write '/nonexistent/dir/x.json'" "$TMP/json.err" ||
    fail "bench_$name --json message: $(cat "$TMP/json.err")"
done
# A writable --json file in a folder the benchmark cannot write to is refused at once too: the
# JSON is written beside it and renamed over it, and the check asked only whether the file could
# be written, so the benchmark ran and then exited 1. Root runs the benchmark as nobody here.
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null && id nobody > /dev/null 2>&1; then
  nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  mkdir "$TMP/ro" && echo '{"earlier": 1}' > "$TMP/ro/x.json" && chmod 666 "$TMP/ro/x.json" &&
    chmod 755 "$TMP/ro" && chmod 711 "$TMP"
  if "${nobody[@]}" test -x "$B/bench_numfmt"; then
    for c in "numfmt --floats 1000 --reps 1" "table --dim 8 --draws 100 --batches 1 --reps 1 --vocab 100"; do
      name=${c%% *}
      # shellcheck disable=SC2086 # the arguments after the name: word splitting wanted
      timeout 60 "${nobody[@]}" "$B/bench_$name" ${c#* } --json "$TMP/ro/x.json" > /dev/null 2> "$TMP/ro.err"
      rc=$?
      [ $rc -eq 2 ] || fail "bench_$name, --json in a read-only folder: exit $rc, expected 2 at once"
      grep -q -- "--json: cannot write '$TMP/ro/x.json': Permission denied" "$TMP/ro.err" ||
        fail "bench_$name, --json in a read-only folder: $(cat "$TMP/ro.err")"
      [ "$(cat "$TMP/ro/x.json")" = '{"earlier": 1}' ] || fail "bench_$name changed the JSON"
    done
  fi
fi
badval() { # expected message, then the command
  local want="$1"
  shift
  timeout 60 "$@" > /dev/null 2> "$TMP/bad.err"
  local rc=$?
  [ $rc -eq 2 ] || fail "$* exited $rc, expected 2"
  grep -q -- "$want" "$TMP/bad.err" || fail "$*: message lacks '$want': $(cat "$TMP/bad.err")"
}
badval "--events: expected an integer in 1\.\.[0-9]*, got '1e3x'" "$B/bench_prepare" --skip-ml --events 1e3x
badval "--reps: expected an integer in 1\.\.[0-9]*, got 'abc'" "$B/bench_table" --reps abc
badval "--seq: expected transformer|din, got 'lstm'" "$B/bench_dense" --seq lstm
badval "--lengths: expected full|uniform, got 'some'" "$B/bench_dense" --lengths some
badval "--zipf: expected a number in 0\.\.100, got '-1'" "$B/bench_table" --zipf -1
badval "--zipf: expected a number in 0\.\.100, got '-0.5'" "$MPIEXEC" -n 2 "$B/bench_ps" --zipf -0.5
# A dim over 1024 (the table's limit) was refused, exit 2, with no reason: the range said 1..4096.
badval "--dims: expected an integer in 1\.\.1024, got '2048'" "$MPIEXEC" -n 2 "$B/bench_ps" --dims 8,2048
# A --max-msg that cannot hold one key of a dim is refused before the run: the first push aborted
# the worker (FATAL, exit 1) after the memcpy reference and the warm-up.
badval "--max-msg 4096 cannot hold one key of --dims 1024 (a push sends 8 + 4 x dim = 4104 bytes a key)" \
    "$MPIEXEC" -n 2 "$B/bench_ps" --max-msg 4096 --dims 8,1024
# An empty entry of a comma list is refused naming the option: strtok skipped it, and
# '--dims 8,,16' measured two dims, exit 0.
# --optim as bench_table and bench_ckpt take it (bench_tables.h), said once (by rank 0).
badval "--optim: expected sgd|adagrad|adam|ftrl, got 'lamb'" "$MPIEXEC" -n 2 "$B/bench_ps" --optim lamb
[ "$(grep -c -- "--optim: expected" "$TMP/bad.err")" = 1 ] || fail "bench_ps --optim lamb: $(cat "$TMP/bad.err")"
badval "--dims: an empty entry in '8,,16'" "$MPIEXEC" -n 2 "$B/bench_ps" --dims 8,,16
badval "--dims: an empty entry in '8,'" "$MPIEXEC" -n 2 "$B/bench_ps" --dims 8,
badval "--dims: an empty entry in ''" "$MPIEXEC" -n 2 "$B/bench_ps" --dims ''
badval "--batches: an empty entry in ',64'" "$MPIEXEC" -n 2 "$B/bench_targets" --batches ,64
badval "--batches: an empty entry in '64,,256'" "$MPIEXEC" -n 2 "$B/bench_targets" --batches 64,,256
# A --vocab the machine cannot hold is refused before the run, with the bytes needed and the
# bytes there are: up to 2^40 was taken, and the Zipf table's allocation aborted (exit 134).
badval "--vocab 1099511627776 (with .*) needs [0-9]* bytes of memory, more than the [0-9]* bytes this machine has" \
    "$B/bench_table" --vocab 1099511627776 --json "$TMP/vocab.json"
badval "--vocab 1099511627776 (with .*) needs [0-9]* bytes of memory, more than the [0-9]* bytes this machine has" \
    "$MPIEXEC" -n 2 "$B/bench_ps" --vocab 1099511627776 --json "$TMP/vocab.json"
[ ! -e "$TMP/vocab.json" ] || fail "a --vocab too large for the machine wrote JSON"
# So is a bench_dense batch whose activations cannot be held: "bench_dense: out of memory", exit 1,
# naming no option (or, granted lazily, the OOM killer).
badval "--batch 1048576 (with --seq-len 256, --dim 64, --layers 2, --heads 2) needs at least [0-9]* bytes of memory, more than the [0-9]* bytes this machine has" \
    "$B/bench_dense" --batch 1048576 --iters 1 --warmup 0 --json "$TMP/dense-big.json"
[ ! -e "$TMP/dense-big.json" ] || fail "a --batch too large for the machine wrote JSON"
# So is a --targets whose sample lists the ranks cannot hold: it was taken (up to 2^40), and every
# rank aborted in rd_xmalloc ("out of memory allocating 8000000000000 bytes", exit 1).
badval "--targets 1000000000000 (with .*) needs [0-9]* bytes of memory, more than the [0-9]* bytes this machine has" \
    "$MPIEXEC" -n 2 "$B/bench_targets" --targets 1e12 --reps 1 --warmup 0 --json "$TMP/tgt.json"
[ ! -e "$TMP/tgt.json" ] || fail "a --targets too large for the machine wrote JSON"
# ... and a --rows whose tables cannot be held (up to 2^32 was taken: the fill ran until the OOM
# killer or rd_xmalloc stopped it).
badval "--rows 4294967296 (with --tables 1, --dim 64, adam) needs [0-9]* bytes of memory, more than the [0-9]* bytes this machine has" \
    "$B/bench_ckpt" --rows 4294967296 --reps 1 --json "$TMP/rows.json"
[ ! -e "$TMP/rows.json" ] || fail "a --rows too large for the machine wrote JSON"
badval "--iters: expected an integer in 10\.\.[0-9]*, got '5x'" "$B/bench_serve" --iters 5x
badval "--batches: expected an integer in 1\.\.[0-9]*, got '0'" "$MPIEXEC" -n 2 "$B/bench_targets" --batches 64,0
# --in-flight is the transport's max_in_flight, 1..65536: up to 2^20 was taken, and every rank
# failed an assertion on rd_target_sender_create (FATAL, without the transport's reason).
badval "--in-flight: expected an integer in 1\.\.65536, got '65537'" "$MPIEXEC" -n 2 "$B/bench_targets" --in-flight 65537
badval "--dim: '0' is not an integer" "$MPIEXEC" -n 1 "$B/bench_tokens" --dim 0
# Values are plain decimal, as bench_args.h says: strtod took a leading space, '+' and hex
# (`--reps 0x10` ran 16 reps, exit 0), and a signed zero where a count is expected.
badval "--reps: expected an integer in 1\.\.[0-9]*, got '0x10'" "$B/bench_table" --reps 0x10
badval "--reps: expected an integer in 1\.\.[0-9]*, got ' 5'" "$B/bench_table" --reps ' 5'
badval "--reps: expected an integer in 1\.\.[0-9]*, got '+2'" "$B/bench_table" --reps +2
badval "--zipf: expected a number in 0\.\.100, got '0x1p0'" "$B/bench_table" --zipf 0x1p0
badval "--zipf: expected a number in 0\.\.100, got '-0'" "$B/bench_table" --zipf -0
badval "--warmup: expected an integer in 0\.\.[0-9]*, got '-0'" "$MPIEXEC" -n 2 "$B/bench_ps" --warmup -0
badval "--warmup: expected an integer in 0\.\.[0-9]*, got ' 0'" "$B/bench_dense" --warmup ' 0'
badval "--threads: expected an integer in 1\.\.256, got '0x2'" "$B/bench_dense" --threads 0x2
badval "--dim: ' 8' is not an integer" "$MPIEXEC" -n 1 "$B/bench_tokens" --dim ' 8'
badval "--dim: '+8' is not an integer" "$MPIEXEC" -n 1 "$B/bench_tokens" --dim +8
# ... and the exponent form bench_args.h documents is taken by every bench: bench_dense's own
# parser refused `--batch 1e1` (exit 2) where bench_prepare takes `--events 1e7` (README).
timeout 120 "$B/bench_dense" --batch 1e1 --iters 1 --warmup 0 --seq-len 8 --dim 8 --layers 1 \
    --heads 1 --json "$TMP/dense-1e1.json" > /dev/null 2> "$TMP/dense-1e1.err" ||
    fail "bench_dense --batch 1e1: $(cat "$TMP/dense-1e1.err")"
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["batch"] == 10' "$TMP/dense-1e1.json" ||
    fail "bench_dense --batch 1e1 did not run a batch of 10"
# The median of an even number of reps is the mean of the two middle ones, as bench_table's:
# bench_numfmt took the upper one, so the "median" of 2 reps was their best (and bench_window's
# their slower one), and a 2-rep median compared against a 3-rep one from another build.
timeout 120 "$B/bench_numfmt" --floats 2000 --reps 2 --json "$TMP/med.json" > /dev/null 2>&1 ||
    fail "bench_numfmt --reps 2 exited non-zero"
python3 - "$TMP/med.json" <<'PY' || fail "bench_numfmt --reps 2: the median is the best rep"
import json, sys
j = json.load(open(sys.argv[1]))
pairs = [(j[k], j[k + "_best"]) for k in ("fast_mfloats_per_s", "snprintf_mfloats_per_s")]
assert all(med <= best for med, best in pairs), pairs
assert any(med < best for med, best in pairs), pairs  # equal only if both reps tie, twice
PY
# bench_targets' sender_blocked_ms is the credit wait of the median rep (that of t_min/t_max), so
# a teacher's wait is within its time in that rep: it was the mean over all reps plus the wait of
# the close after them, 402 ms against a median rep of 358 ms with one message in flight.
timeout 300 "$MPIEXEC" -n 2 "$B/bench_targets" --targets 20000 --batches 64 --in-flight 1 \
    --reps 3 --warmup 0 --json "$TMP/blk.json" > /dev/null 2> "$TMP/blk.err" ||
    fail "bench_targets --in-flight 1: $(cat "$TMP/blk.err")"
python3 - "$TMP/blk.json" <<'PY' || fail "bench_targets: sender_blocked_ms beyond its rep"
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
assert 0 <= r["sender_blocked_ms"] <= r["t_max"] * 1e3 * 1.0001 + 1e-3, r
PY
# The benchmarks without MPI, started by mpiexec as 2 processes, say so and exit 2 without JSON:
# two copies ran on the cores each other measured, printed two tables and renamed their JSON over
# one another's, exit 0. mpiexec -n 1 still runs them.
for c in "numfmt --floats 1000 --reps 1" "table --dim 8 --draws 100 --batches 1 --reps 1 --vocab 100" \
    "dense --batch 8 --iters 1 --warmup 0 --seq-len 8 --dim 8 --layers 1 --heads 1" \
    "window --events 2000 --windows 50 --lookups 100 --reps 1" "ckpt --rows 100 --dim 8 --reps 1" \
    "prepare --events 1000 --reps 1 --warmup 0 --skip-ml --out $TMP/mpi-prep" \
    "serve --iters 10 --warmup 0 --dir $TMP/mpi-serve"; do
  name=${c%% *}
  # shellcheck disable=SC2086 # the arguments after the name: word splitting wanted
  badval "bench_$name: started as one of 2 processes (PMI_SIZE): it is not an MPI program" \
    "$MPIEXEC" -n 2 "$B/bench_$name" ${c#* } --json "$TMP/mpi-$name.json"
  [ ! -e "$TMP/mpi-$name.json" ] || fail "bench_$name under mpiexec -n 2 wrote JSON"
done
timeout 60 "$MPIEXEC" -n 1 "$B/bench_numfmt" --floats 1000 --reps 1 --json "$TMP/mpi1.json" \
    > /dev/null 2>&1 || fail "bench_numfmt under mpiexec -n 1 exited non-zero"
[ -s "$TMP/mpi1.json" ] || fail "bench_numfmt under mpiexec -n 1 wrote no JSON"
# An --out folder the user made stays (the run removes only the dataset it wrote there): an empty
# one was removed with it.
mkdir "$TMP/prep-out"
timeout 120 "$B/bench_prepare" --skip-ml --events 1000 --reps 1 --warmup 0 --out "$TMP/prep-out" \
    > /dev/null 2> "$TMP/prep-out.err" || fail "bench_prepare --out: $(cat "$TMP/prep-out.err")"
[ -d "$TMP/prep-out" ] || fail "bench_prepare removed the --out folder it was given"
[ -z "$(ls -A "$TMP/prep-out")" ] || fail "bench_prepare left its dataset in --out: $(ls "$TMP/prep-out")"
# A DIR/ds already there (a dataset of the user's) is refused, not replaced and removed.
mkdir "$TMP/prep-out/ds" && touch "$TMP/prep-out/ds/keep"
badval "ds exists and each rep replaces and removes it" "$B/bench_prepare" --skip-ml --events 1000 \
    --reps 1 --warmup 0 --out "$TMP/prep-out"
[ -e "$TMP/prep-out/ds/keep" ] || fail "bench_prepare removed a DIR/ds it did not make"
# A case left out must be one asked for: a --ml100k DIR without u.data was skipped, exit 0, with
# JSON that lacked the case; so were both cases (an empty "cases" list).
badval "--ml100k: no $TMP/no-ml/u.data" "$B/bench_prepare" --ml100k "$TMP/no-ml" --events 1000 \
    --reps 1 --warmup 0 --json "$TMP/noml.json"
[ ! -e "$TMP/noml.json" ] || fail "bench_prepare --ml100k without u.data wrote JSON"
badval "leave no case to run" "$B/bench_prepare" --skip-ml --skip-synth --json "$TMP/none.json"
[ ! -e "$TMP/none.json" ] || fail "bench_prepare with no case wrote JSON"
# A case that fails (its dataset cannot be made: --out is a file) is exit 1 and writes no JSON: it
# wrote '"cases": []' over the file of an earlier run.
echo x > "$TMP/out-file"
echo '{"earlier": 1}' > "$TMP/prep-fail.json"
timeout 60 "$B/bench_prepare" --skip-ml --events 1000 --reps 1 --warmup 0 --out "$TMP/out-file" \
    --json "$TMP/prep-fail.json" > /dev/null 2> "$TMP/prep-fail.err"
rc=$?
[ $rc -eq 1 ] || fail "bench_prepare with a failed case exited $rc, expected 1"
[ "$(cat "$TMP/prep-fail.json")" = '{"earlier": 1}' ] ||
    fail "bench_prepare with a failed case wrote JSON: $(cat "$TMP/prep-fail.json")"
grep -q -- "--json: a case failed" "$TMP/prep-fail.err" || fail "bench_prepare: $(cat "$TMP/prep-fail.err")"
# bench_ckpt writes its reps in a folder of its own in --dir, and removes only that: it wrote
# DIR/rep-N and removed each whole, so a DIR/rep-0 of the user's lost its files to a good run.
mkdir -p "$TMP/ck/rep-0" && echo mine > "$TMP/ck/rep-0/mine.txt"
timeout 120 "$B/bench_ckpt" --rows 100 --dim 8 --reps 2 --dir "$TMP/ck" > /dev/null 2> "$TMP/ck.err" ||
    fail "bench_ckpt --dir: $(cat "$TMP/ck.err")"
[ "$(cat "$TMP/ck/rep-0/mine.txt" 2> /dev/null)" = mine ] || fail "bench_ckpt removed a file of its --dir"
[ "$(ls -A "$TMP/ck")" = rep-0 ] || fail "bench_ckpt left behind in --dir: $(ls -A "$TMP/ck")"
# An unknown option given last was reported as "missing value of '--bogus'".
badval "--dir: cannot open '$TMP/no-dir'" "$B/bench_ckpt" --dir "$TMP/no-dir"
badval "--optim: expected sgd|adagrad|adam|ftrl, got 'lamb'" "$B/bench_ckpt" --optim lamb
badval "'--bogus': unknown option" "$B/bench_table" --bogus
badval "'--bogus': unknown option" "$B/bench_prepare" --skip-ml --bogus
badval "unknown option '--bogus'" "$B/bench_serve" --bogus
# --data without --bundle was ignored: it benchmarked its own synthetic bundle, exit 0.
badval "--data needs --bundle" "$B/bench_serve" --data "$TMP" --iters 10 --warmup 0 --json "$TMP/sd.json"
[ ! -e "$TMP/sd.json" ] || fail "bench_serve --data without --bundle wrote JSON"
# --dir (where the benchmark builds its own bundle) with --bundle was ignored: it scored the
# bundle, exit 0, and left the --dir folder empty.
mkdir -p "$TMP/sv-data"
badval "--dir '$TMP/sv-dir' and --bundle '$TMP/sv.rdsv' exclude each other" "$B/bench_serve" \
    --dir "$TMP/sv-dir" --bundle "$TMP/sv.rdsv" --data "$TMP/sv-data" --iters 10 --warmup 0 \
    --json "$TMP/sv.json"
[ ! -e "$TMP/sv.json" ] || fail "bench_serve --dir with --bundle wrote JSON"
[ ! -e "$TMP/sv-dir" ] || fail "bench_serve --dir with --bundle made the --dir folder"
# A --dir that holds an earlier run's bundle is refused at once, with the options that score it:
# the run prepared its data again and failed at the checkpoint ("shard-00000 already exists",
# exit 1), so a before/after comparison into one folder never ran twice.
badval "--dir '$TMP/serve' is not empty (an earlier run's bundle?)" "$B/bench_serve" \
    --dir "$TMP/serve" --iters 10 --warmup 0 --json "$TMP/sv2.json"
[ ! -e "$TMP/sv2.json" ] || fail "bench_serve into a used --dir wrote JSON"
timeout 300 "$B/bench_serve" --bundle "$TMP/serve/student.rdsv" --data "$TMP/serve/data" \
    --iters 10 --warmup 0 > /dev/null 2> "$TMP/sv2.err" ||
    fail "bench_serve of the bundle a --dir run left: $(cat "$TMP/sv2.err")"
# The requests are drawn from the holdout: a --data folder without one is refused (it crashed
# with SIGFPE, the draw dividing by its zero records).
"$RD" prepare "$SRC/configs/demo.yaml" --set data.split.holdout_fraction=0 \
    --set data.synthetic.events=2000 --out "$TMP/noholdout" > /dev/null 2> "$TMP/nh.err" ||
    fail "prepare without a holdout: $(cat "$TMP/nh.err")"
badval "--data $TMP/noholdout holds no holdout records" "$B/bench_serve" \
    --bundle "$TMP/serve/student.rdsv" --data "$TMP/noholdout" --iters 10 --json "$TMP/nh.json"
[ ! -e "$TMP/nh.json" ] || fail "bench_serve without holdout records wrote JSON"
# --tokens (the built-in token student) and --store (the store of a given bundle) belong to one
# mode each; a token bundle without its store, or a store for a bundle without tokens, is refused.
badval "--tokens: expected an integer in 1..4096, got '0'" "$B/bench_serve" --tokens 0
badval "--threads: expected an integer in 1..64, got '0'" "$B/bench_serve" --threads 0
badval "--tokens builds the benchmark's own token student: not with --bundle" "$B/bench_serve" \
    --tokens 8 --bundle "$TMP/sv.rdsv" --data "$TMP/sv-data"
badval "--store is the token store of --bundle FILE" "$B/bench_serve" --store "$TMP/sv-data"
badval "servetok/student.rdsv reads instance tokens: give its token store (--store)" \
    "$B/bench_serve" --bundle "$TMP/servetok/student.rdsv" --data "$TMP/servetok/data" --iters 10
badval "--store: $TMP/serve/student.rdsv reads no instance tokens" "$B/bench_serve" \
    --bundle "$TMP/serve/student.rdsv" --data "$TMP/serve/data" --store "$TMP/servetok/run/tokens" \
    --iters 10
timeout 300 "$B/bench_serve" --bundle "$TMP/servetok/student.rdsv" --data "$TMP/servetok/data" \
    --store "$TMP/servetok/run/tokens" --iters 10 --warmup 1 > "$TMP/st.txt" 2>&1 ||
    fail "bench_serve of a token bundle with its store: $(cat "$TMP/st.txt")"
grep -q "tokens: 8 per candidate (dim 16)" "$TMP/st.txt" || fail "bench_serve --store: $(cat "$TMP/st.txt")"
# --seq: the built-in student with a transformer (or DIN) item history and a DIN token branch,
# the candidates sharing both (rd_batch.seq_shared / tok_shared); a bad kind is refused.
badval "--seq: expected mean, din or transformer, got 'lstm'" "$B/bench_serve" --seq lstm
badval "--seq builds the benchmark's own student: not with --bundle" "$B/bench_serve" \
    --seq din --bundle "$TMP/sv.rdsv" --data "$TMP/sv-data"
timeout 300 "$B/bench_serve" --seq transformer --tokens 8 --dir "$TMP/sv-seq" --iters 10 \
    --warmup 1 > "$TMP/sq.txt" 2>&1 || fail "bench_serve --seq transformer: $(cat "$TMP/sq.txt")"
grep -q "history 16" "$TMP/sq.txt" || fail "bench_serve --seq transformer: $(cat "$TMP/sq.txt")"
# A --json PATH that is a symbolic link is written through it: the JSON was renamed over the
# link, which became a regular file, and the results file it pointed to kept the old figures.
# A dangling link makes the file it names when that folder exists; else "cannot write", exit 2.
mkdir -p "$TMP/res"
for name in numfmt table; do
  case "$name" in
    numfmt) small=(--floats 1000 --reps 1) ;;
    table) small=(--dim 8 --draws 100 --batches 1 --reps 1 --vocab 100) ;;
  esac
  echo '{"earlier": 1}' > "$TMP/res/$name.json"
  ln -sfn "res/$name.json" "$TMP/link-$name.json"
  ln -sfn "res/new-$name.json" "$TMP/dangling-$name.json"
  for link in link dangling; do
    timeout 60 "$B/bench_$name" "${small[@]}" --json "$TMP/$link-$name.json" > /dev/null 2> "$TMP/link.err" ||
      fail "bench_$name --json through a $link symlink: $(cat "$TMP/link.err")"
    [ -L "$TMP/$link-$name.json" ] || fail "bench_$name replaced the $link symlink --json with a file"
  done
  [ "$(readlink "$TMP/link-$name.json")" = "res/$name.json" ] || fail "bench_$name moved the symlink"
  for f in "$TMP/res/$name.json" "$TMP/res/new-$name.json"; do
    python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["bench"] == sys.argv[2]' \
      "$f" "$name" || fail "bench_$name did not write its JSON to $f: $(cat "$f")"
  done
  ln -sfn "no-dir/x.json" "$TMP/nowhere-$name.json"
  badval "--json: cannot write '$TMP/nowhere-$name.json'" "$B/bench_$name" "${small[@]}" \
    --json "$TMP/nowhere-$name.json"
  [ -L "$TMP/nowhere-$name.json" ] || fail "bench_$name replaced a dangling --json symlink"
done
ls "$TMP"/res/*.tmp.* "$TMP"/*.json.tmp.* > /dev/null 2>&1 && fail "a temporary JSON was left"
echo "bench_smoke.sh: ok"
