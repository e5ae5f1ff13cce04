#!/usr/bin/env bash
# cli_options.sh — options a subcommand does not take are usage errors, not silently ignored:
# `tokens gc --user-id U` used to delete every user's records, `table reshard --table X` ignored
# the table. Also `train --out ''` (an unset shell variable) and train's --help on --seed. No
# store or checkpoint is needed: the option check comes before anything is opened.
#   cli_options.sh PATH/TO/recdistill
set -u
bin="$(realpath "${1:?usage: cli_options.sh path/to/recdistill}")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # expected-exit stderr-pattern command...
    local want="$1" pat="$2"
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $*: exit $got, expected $want: $(cat "$tmp/err")"
        fail=1
    elif [ -n "$pat" ] && ! grep -q -- "$pat" "$tmp/err"; then
        echo "FAIL: $*: stderr lacks '$pat': $(cat "$tmp/err")"
        fail=1
    fi
}
S="$tmp/nostore"

# tokens: each subcommand refuses the others' options, naming the option and the subcommand.
check 2 "tokens gc: --user-id is not an option of gc" "$bin" tokens gc "$S" --before 5 --user-id u1
check 2 "tokens gc: --user is not an option of gc" "$bin" tokens gc "$S" --before 5 --user 3
check 2 "tokens stats: --n is not an option of stats" "$bin" tokens stats "$S" --n 4
check 2 "tokens verify: --per-shard is not an option of verify" "$bin" tokens verify "$S" --per-shard
check 2 "tokens compact: --before is not an option of compact" "$bin" tokens compact "$S" --out "$tmp/c" --before 1
check 2 "tokens fetch: --out is not an option of fetch" "$bin" tokens fetch "$S" --user 1 --before 2 --n 3 --out x
check 2 "tokens stats: --before-id is not an option of stats" "$bin" tokens stats "$S" --before-id 4
# ... and still takes its own (the store is missing: exit 1, past the option check).
check 1 "" "$bin" tokens gc "$S" --before 5
check 1 "" "$bin" tokens fetch "$S" --user-id u1 --before 2 --n 3 --before-id 7
check 1 "" "$bin" tokens stats "$S" --per-shard
# An option given twice is refused, not the last one taken (catches args.c skipping that check).
check 2 "--before given twice" "$bin" tokens gc "$S" --before 5 --before 6
check 2 "--out given twice" "$bin" tokens compact "$S" --out "$tmp/c" --out "$tmp/d"

# table: likewise.
check 2 "table reshard: --table is not an option of reshard" "$bin" table reshard "$S" --shards 2 --out "$tmp/o" --table t
check 2 "table stats: --out is not an option of stats" "$bin" table stats "$S" --out x
check 2 "table verify: --table is not an option of verify" "$bin" table verify "$S" --table t
check 2 "table export: --shards is not an option of export" "$bin" table export "$S" --table t --out - --shards 2
check 2 "table import: --format is not an option of import" "$bin" table import "$S" --table t --in f --out "$tmp/o" --format bin
check 2 "table compact: --min-count is not an option of compact" "$bin" table compact "$S" --out "$tmp/o" --min-count 1
check 2 "table evict: --in is not an option of evict" "$bin" table evict "$S" --out "$tmp/o" --older-than 1 --in f
check 1 "" "$bin" table evict "$S" --out "$tmp/o" --table t --older-than 1 --min-count 2
check 1 "" "$bin" table export "$S" --table t --out - --format tsv

# An unknown subcommand is a usage error naming it, with the usage; each known one gets past the
# check (the store or checkpoint is missing: exit 1).
check 2 "recdistill tokens: unknown command 'frob'" "$bin" tokens frob "$S" --before 5
check 2 "usage: recdistill tokens" "$bin" tokens frob "$S"
check 2 "recdistill table: unknown command 'frob'" "$bin" table frob "$S" --out "$tmp/o"
check 2 "usage: recdistill table" "$bin" table frob "$S"
for c in stats users verify; do
    check 1 "" "$bin" tokens "$c" "$S"
done
check 1 "" "$bin" tokens compact "$S" --out "$tmp/c"
for c in stats verify; do
    check 1 "" "$bin" table "$c" "$S"
done
check 1 "" "$bin" table compact "$S" --out "$tmp/o"
check 1 "" "$bin" table reshard "$S" --shards 2 --out "$tmp/o"

# No option takes an empty value (an unset shell variable): an empty --out fell back to
# run.out_dir, an empty --resume started a fresh run, an empty --table meant every table.
check 2 "recdistill train: --out: empty value" "$bin" train "$tmp/none.yaml" --out ''
check 2 "recdistill train: --resume: empty value" "$bin" train "$tmp/none.yaml" --resume ''
check 2 "--data: empty value" "$bin" export "$tmp/none.yaml" --out "$tmp/o.rdsv" --data ''
check 2 "--table: empty value" "$bin" table evict "$S" --out "$tmp/o" --table '' --min-count 2
check 2 "--seed: empty value" "$bin" train "$tmp/none.yaml" --seed ''
# ... except the texts of a plot: an empty --title or --xlabel is no title or label.
printf 'x,y\n1,2\n2,3\n' > "$tmp/t.csv"
check 0 "" "$bin" plot "$tmp/t.csv" --x x --y y --title '' --xlabel '' --ylabel '' --out "$tmp/t.png"
# plot: an empty name in --y ("b," from a loop that joins names) was skipped without a word.
printf 'x,y\n1,2\n2,3\n' > "$tmp/xy.csv"
check 2 "--y: an empty column name in 'y,'" "$bin" plot "$tmp/xy.csv" --x x --y y, --out "$tmp/p.png"
check 2 "--y: an empty column name in 'y,,y'" "$bin" plot "$tmp/xy.csv" --x x --y y,,y --out "$tmp/p.png"
[ ! -e "$tmp/p.png" ] || { echo "FAIL: a refused plot wrote its --out"; fail=1; }
"$bin" train --help >"$tmp/out" 2>&1 || { echo "FAIL: train --help exited $?"; fail=1; }
tr -s ' \n' ' ' <"$tmp/out" | grep -q "also the synthetic data's seed unless data.synthetic.seed is set" ||
    { echo "FAIL: train --help does not say --seed re-seeds synthetic data"; fail=1; }

# Integers: strtoull/strtoll skipped leading blanks and took a sign, so `--seed " -5"` trained
# with seed 2^64-5 and `--shards " 5"` passed. The first character must be a digit ('-' and a
# digit where a negative value is allowed).
for v in " -5" " 5" "+5" "	7" "5 " "0x10" "-"; do
    check 2 "--seed: '$v' is not a non-negative integer" "$bin" train "$tmp/none.yaml" --seed "$v"
    check 2 "--seed: '$v' is not a non-negative integer" "$bin" export "$tmp/none.yaml" --out "$tmp/o.rdsv" --seed "$v"
    check 2 "--shards: '$v' is not in 1..4096" "$bin" table reshard "$S" --shards "$v" --out "$tmp/o"
    check 2 "--limit: '$v' is not a positive number of users" "$bin" tokens users "$S" --limit "$v"
    check 2 "--user: '$v' is not a user key" "$bin" tokens fetch "$S" --user "$v" --before 1 --n 2
done
for v in " -5" " 5" "+5" "+-5" "-"; do
    check 2 "--older-than: '$v' is not a time (unix seconds, or ISO 8601" "$bin" table evict "$S" --older-than "$v" --out "$tmp/o"
    check 2 "--before: '$v' is not a time (unix seconds, or ISO 8601" "$bin" tokens gc "$S" --before "$v"
done
# ... nor are malformed ISO 8601 times (a bad day, month, hour or zone, a date alone cut short).
for v in "2024-02-30" "2024-13-01" "2024-03-01T25:00" "2024-03-01T12:00+2" "2024-03" "2024-03-01X"; do
    check 2 "--older-than: '$v' is not a time" "$bin" table evict "$S" --older-than "$v" --out "$tmp/o"
    check 2 "--before: '$v' is not a time" "$bin" tokens fetch "$S" --user 1 --before "$v" --n 2
done
# ISO 8601 times get past the option check (exit 1: no store).
check 1 "" "$bin" table evict "$S" --older-than 2024-03-01T12:00:00Z --out "$tmp/o"
check 1 "" "$bin" tokens gc "$S" --before "2024-03-01 12:00:00.5+02:00"
# ... and the negative values where they are allowed get past the option check (exit 1: no store).
check 1 "" "$bin" table evict "$S" --older-than -9223372036854775807 --out "$tmp/o"
check 1 "" "$bin" tokens gc "$S" --before -5
# ... while the whole range stays: export --seed took only 0..2^63-1 where train takes any uint64
# (past the option check, the config is missing: exit 1).
check 1 "cannot open" "$bin" export "$tmp/none.yaml" --out "$tmp/o.rdsv" --seed 18446744073709551615
check 1 "cannot open" "$bin" export "$tmp/none.yaml" --out "$tmp/o.rdsv" --seed 9223372036854775808
check 2 "--seed: '18446744073709551616' is not a non-negative integer" "$bin" export "$tmp/none.yaml" --out "$tmp/o.rdsv" --seed 18446744073709551616
# table evict: 0 and INT64_MIN were the "not given" sentinels, so a given `--min-count 0` was
# "missing --older-than T or --min-count N". Bounds that evict nothing are refused by name.
check 2 "table evict: --min-count 0 evicts nothing" "$bin" table evict "$S" --min-count 0 --out "$tmp/o"
check 2 "table evict: --min-count 0 evicts nothing" "$bin" table evict "$S" --min-count 0 --older-than 5 --out "$tmp/o"
check 2 "table evict: --older-than -9223372036854775808 evicts nothing" "$bin" table evict "$S" --older-than -9223372036854775808 --out "$tmp/o"
check 2 "table evict: missing --older-than T or --min-count N" "$bin" table evict "$S" --out "$tmp/o"

# scale-model: --ps-per-node and --ps are alternatives; --ps-per-node 0 printed "0 PS
# shard(s)/node" over a table of one shard.
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
CAL="$SRC/docs/scaling/calib-student.yaml"
check 2 "give --ps-per-node or --ps, not both" "$bin" scale-model --calib "$CAL" --ps-per-node 2 --ps 4 --max-nodes 2
check 2 "--ps-per-node: '0' is not a number in (0, 64]" "$bin" scale-model --calib "$CAL" --ps-per-node 0 --max-nodes 2
check 0 "" "$bin" scale-model --calib "$CAL" --ps-per-node 0.5 --max-nodes 4
grep -q "0.5 PS shard(s)/node" "$tmp/out" || { echo "FAIL: scale-model header: $(cat "$tmp/out")"; fail=1; }
check 0 "" "$bin" scale-model --calib "$CAL" --ps 4 --max-nodes 2
# Float options: strtod skipped a leading blank and took '+', 'inf', 'nan' and hex floats, so
# "--ymin ' 0.5'" (a quoting slip) or "--ps-per-node 0x1p1" passed as numbers.
for v in " 0.5" "+0.5" "0x1p-1" "nan" "inf" "1e999" "0.5 " "."; do
    check 2 "--ps-per-node: '$v' is not a number" "$bin" scale-model --calib "$CAL" --ps-per-node "$v" --max-nodes 2
    check 2 "--ymin: '$v' is not a number" "$bin" plot "$tmp/xy.csv" --x x --y y --ymin "$v" --out "$tmp/p.png"
done
check 0 "" "$bin" scale-model --calib "$CAL" --ps-per-node .5 --max-nodes 2
check 0 "" "$bin" plot "$tmp/xy.csv" --x x --y y --ymin -.5 --ymax 1e1 --out "$tmp/p.png"
rm -f "$tmp/p.png"
# A fixed y range the plot cannot have is a usage error, refused before the CSV is read: it was
# exit 1 from the plot library, after reading, as "plot '': fixed y range [1, 0] ...".
check 2 "plot: --ymin 1 --ymax 0: the y range needs min < max" "$bin" plot "$tmp/xy.csv" --x x --y y --ymin 1 --ymax 0 --out "$tmp/p.png"
check 2 "plot: --ymin 5 --ymax 5: the y range needs min < max" "$bin" plot "$tmp/xy.csv" --x x --y y --ymin 5 --ymax 5 --out "$tmp/p.png"
check 2 "plot: --ymin -1: a log y axis (--log-y) needs a positive bound" "$bin" plot "$tmp/xy.csv" --x x --y y --log-y --ymin -1 --out "$tmp/p.png"
check 2 "plot: --ymax 0: a log y axis (--log-y) needs a positive bound" "$bin" plot "$tmp/xy.csv" --x x --y y --log-y --ymax 0 --out "$tmp/p.png"
[ ! -e "$tmp/p.png" ] || { echo "FAIL: a refused y range left $tmp/p.png"; fail=1; }
# A PNG to "-" made a file named "-" (exit 0); missing parents of a scale-model --out were an
# error where plot makes them.
here="$PWD"
cd "$tmp" || exit 1
check 2 "--out -: a PNG is written to a file, not stdout" "$bin" scale-model --calib "$CAL" --max-nodes 2 --out -
check 2 "--out-throughput -: a PNG is written to a file" "$bin" scale-model --calib "$CAL" --max-nodes 2 --out-throughput -
check 2 "--out -: a PNG is written to a file, not stdout" "$bin" plot "$tmp/xy.csv" --x x --y y --out -
# The same for the outputs that are files or folders of the other commands (they made "./-").
check 2 "export: --out -: a serving bundle is written to a file, not stdout" "$bin" export x.yaml --out -
for c in "reshard --shards 2" compact "evict --older-than 1" "import --table t --in f"; do
    # shellcheck disable=SC2086
    check 2 "table ${c%% *}: --out -: a checkpoint is written to a folder, not stdout" "$bin" table $c "$S" --out -
done
check 2 "tokens compact: --out -: a token store is written to a folder, not stdout" "$bin" tokens compact "$S" --out -
cd "$here" || exit 1
# A printed result that could not be written (stdout on a full disk) is a failure, not exit 0
# with a cut file (tokens users|fetch|stats|verify, table stats|verify printed into /dev/full).
if [ -w /dev/full ]; then
    "$bin" config "$(dirname "$0")/../../configs/demo.yaml" >/dev/full 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "recdistill config: standard output: write error.*: the output is incomplete" "$tmp/err" ||
        { echo "FAIL: config >/dev/full: exit $rc: $(cat "$tmp/err")"; fail=1; }
fi
# The help too: `recdistill --help` and `train --help` exited 0 with the help lost (the other
# subcommands' --help already failed on a write error).
if [ -w /dev/full ]; then
    for h in --help -h help "train --help" "config --help"; do
        # shellcheck disable=SC2086
        "$bin" $h >/dev/full 2>"$tmp/err"
        rc=$?
        [ $rc -eq 1 ] && grep -q "standard output: write error" "$tmp/err" ||
            { echo "FAIL: recdistill $h >/dev/full: exit $rc: $(cat "$tmp/err")"; fail=1; }
    done
fi
# A FIFO where a file is read whole (CONFIG, --calib, a MANIFEST): fopen() blocked for ever
# before the S_ISREG check (config, prepare, export, train; train's every rank hashed CONFIG;
# score opens its bundle as rd_serve_open does).
# Refused at once: "not a regular file", exit 1.
if command -v mkfifo >/dev/null; then
    mkfifo "$tmp/cfg.fifo"
    mkdir -p "$tmp/ck/shard-00000" "$tmp/st/shard-0000"
    mkfifo "$tmp/ck/MANIFEST" "$tmp/st/MANIFEST"
    # @ marks the config's place (a mktemp name may hold any letter, never an @).
    for c in "config @" "prepare @ --out $tmp/p" "export @ --out $tmp/x.rdsv" "train @" \
        "scale-model --calib @" "table stats $tmp/ck" "tokens stats $tmp/st" \
        "score @ --data $tmp --out $tmp/s.csv"; do
        # shellcheck disable=SC2086
        check 1 "not a regular file" timeout 10 "$bin" ${c/@/$tmp/cfg.fifo}
    done
    [ ! -e "$tmp/p" ] && [ ! -e "$tmp/x.rdsv" ] && [ ! -e "$tmp/s.csv" ] || { echo "FAIL: a refused FIFO config left output"; fail=1; }
fi
# A 5000-byte path filled the 4 KiB message and its cause was cut off ("recdistill config:
# aaaa...a"). The path is shortened (head ...(N bytes)... tail), and any message still too long
# keeps its tail.
L="$(printf 'a%.0s' $(seq 5000))"
check 1 "...(4740 bytes)...a*: path too long (5000 bytes, at most 1023)" "$bin" config "$L"
check 1 ": path too long (5000 bytes" "$bin" prepare "$L"
check 1 ": path too long (5000 bytes" "$bin" train "$L"
check 1 "...(4740 bytes)...a*: File name too long (expected a table checkpoint" "$bin" table stats "$L"
check 1 "...(4740 bytes)...a*: cannot read: File name too long" "$bin" scale-model --calib "$L"
check 1 "bytes cut\]...a*: cannot open: File name too long" "$bin" plot "$L" --x a --y b --out "$tmp/p.png"
[ ! -e "$tmp/-" ] || { echo "FAIL: a file named '-' was written"; fail=1; }
check 0 "" "$bin" scale-model --calib "$CAL" --max-nodes 2 --out "$tmp/new/sub/eff.png"
[ -s "$tmp/new/sub/eff.png" ] || { echo "FAIL: scale-model --out into new folders wrote nothing"; fail=1; }

[ "$fail" -eq 0 ] && echo "cli_options.sh: all checks passed"
exit "$fail"
