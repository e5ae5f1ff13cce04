#!/usr/bin/env bash
# prepare.sh — `recdistill prepare CONFIG [--out DIR]` end to end: usage and exit codes, the
# printed statistics, determinism (two runs give identical bytes), atomic failure (bad input
# exits 1 with file:line on stderr and leaves neither the folder nor a temporary one), and the
# MovieLens-100K preset when RD_SHARED_DATA has it.
#
#   bash tests/scripts/prepare.sh build/recdistill
set -u
RD="${1:?usage: prepare.sh path/to/recdistill}"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_prepare_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# --- usage --------------------------------------------------------------------------------
"$RD" prepare --help | grep -q "usage: recdistill prepare" || fail "--help"
"$RD" prepare >/dev/null 2>&1; [ $? -eq 2 ] || fail "no argument must exit 2"
"$RD" prepare a.yaml b.yaml >/dev/null 2>&1; [ $? -eq 2 ] || fail "two configs must exit 2"
"$RD" prepare "$TMP/missing.yaml" >/dev/null 2>"$TMP/err"; [ $? -eq 1 ] || fail "missing config"
grep -q "missing.yaml" "$TMP/err" || fail "missing config message: $(cat "$TMP/err")"

common() { # common config lines (a job and a model so that the config validates)
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
EOF
}

# --- synthetic: statistics and determinism -------------------------------------------------
{ common; cat <<EOF
data:
  source: synthetic
  synthetic: {events: 20000, users: 50, items: 500}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 4}
EOF
} > "$TMP/syn.yaml"
"$RD" prepare "$TMP/syn.yaml" --out "$TMP/syn_a" > "$TMP/out" 2>"$TMP/err" || fail "synthetic: $(cat "$TMP/err")"
for w in "events       20000" "users        50" "label rate" "batch      \[0, 16000)" \
         "stream 3   \[17500, 18000)" "holdout    \[18000, 20000)" "vocabulary   user 50" \
         "topic 32" "events/s"; do
    grep -q "$w" "$TMP/out" || fail "synthetic output lacks '$w':
$(cat "$TMP/out")"
done
"$RD" prepare "$TMP/syn.yaml" --out "$TMP/syn_b" >/dev/null 2>&1 || fail "second run"
cmp -s "$TMP/syn_a/events.bin" "$TMP/syn_b/events.bin" || fail "events.bin differs between runs"
cmp -s "$TMP/syn_a/meta.yaml" "$TMP/syn_b/meta.yaml" || fail "meta.yaml differs between runs"
# The ceiling: the true probability's holdout AUC, lower without the memory term, the same
# without the remembered exposure's context (there are no contexts here).
awk '/^  ceiling:/ {c = 1} c && /^    auc:/ {a = $2} c && /auc_without_memory:/ {m = $2}
     c && /auc_without_context:/ {x = $2}
     END {exit !(a > 0.6 && a < 1 && m > 0.5 && m < a && x == a)}' "$TMP/syn_a/meta.yaml" ||
    fail "meta.yaml lacks a sane synthetic ceiling: $(grep -A5 ceiling "$TMP/syn_a/meta.yaml")"
# Negative sampling at prepare: the printed summary and meta.yaml name each class's keep rate.
{ common; cat <<EOF
data:
  source: synthetic
  synthetic: {events: 20000, users: 50, items: 500}
  split: {batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 4}
  negatives: {rate: 0.5, pos_rate: 0.75}
EOF
} > "$TMP/syn_ns.yaml"
"$RD" prepare "$TMP/syn_ns.yaml" --out "$TMP/syn_ns" > "$TMP/out" 2>"$TMP/err" || fail "sampled: $(cat "$TMP/err")"
grep -Eq "^sampling     kept [0-9]+ of 20000 events \(negatives rate 0\.5, positives rate 0\.75\)$" "$TMP/out" ||
    fail "sampled prepare summary: $(grep sampling "$TMP/out")"
grep -Eq "^  pos_rate: 0\.75 " "$TMP/syn_ns/meta.yaml" && grep -Eq "^  rate: 0\.5 " "$TMP/syn_ns/meta.yaml" ||
    fail "sampled meta.yaml: $(grep -B2 -A2 pos_rate "$TMP/syn_ns/meta.yaml")"
# Running again over an existing dataset folder replaces it.
"$RD" prepare "$TMP/syn.yaml" --out "$TMP/syn_a" >/dev/null 2>&1 || fail "replace"
# --out onto a folder that is not a dataset: refused, naming --out (the message named only
# data.dir, a key the user had not written), and the folder is left as it was.
mkdir -p "$TMP/notds" && echo keep > "$TMP/notds/notes.txt"
"$RD" prepare "$TMP/syn.yaml" --out "$TMP/notds" >/dev/null 2>"$TMP/err"; [ $? -eq 1 ] || fail "--out onto a non-dataset folder must exit 1"
grep -q -- "--out $TMP/notds (the dataset folder, data.dir): data.dir $TMP/notds exists and is not a dataset folder" "$TMP/err" || fail "--out onto a non-dataset folder: $(cat "$TMP/err")"
[ "$(cat "$TMP/notds/notes.txt")" = keep ] || fail "a refused prepare changed the folder"
cmp -s "$TMP/syn_a/events.bin" "$TMP/syn_b/events.bin" || fail "replaced dataset differs"

# --- CSV: a bad line fails cleanly ----------------------------------------------------------
mkdir -p "$TMP/in"
cp "$SRC/tests/data/users.csv" "$TMP/in/"
printf 'ts,uid,iid,clicked\n10,9,a,1\n11,10,b,1\n12,9,c,maybe\n' > "$TMP/in/clicks.csv"
{ common; cat <<EOF
data:
  source: csv
  input: $TMP/in
  schema:
    path: clicks.csv
    user_column: uid
    item_column: iid
    time_column: ts
    label: "clicked >= 1"
    side:
      - {name: users, path: users.csv, header: true, key_column: uid, join_column: uid}
    fields:
      - {name: country, side: users}
EOF
} > "$TMP/csv.yaml"
"$RD" prepare "$TMP/csv.yaml" --out "$TMP/csv_out" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "bad csv must exit 1"
grep -q "clicks.csv:4: column 'clicked': non-numeric label value 'maybe'" "$TMP/err" \
    || fail "bad csv message: $(cat "$TMP/err")"
[ ! -e "$TMP/csv_out" ] || fail "a failed prepare left $TMP/csv_out"
compgen -G "$TMP/*tmp-*" > /dev/null && fail "a failed prepare left a temporary folder"
# Fixed, it succeeds.
printf 'ts,uid,iid,clicked\n10,9,a,1\n11,10,b,1\n12,9,c,0\n' > "$TMP/in/clicks.csv"
"$RD" prepare "$TMP/csv.yaml" --out "$TMP/csv_out" > "$TMP/out" 2>"$TMP/err" || fail "csv: $(cat "$TMP/err")"
grep -q "country 2" "$TMP/out" || fail "csv vocabulary: $(cat "$TMP/out")"

# --- CSV: a compressed log is refused, saying how to stream it; streamed through a pipe (path
#     /dev/stdin) it gives the dataset of the plain file --------------------------------------
if command -v gzip >/dev/null; then
    gzip -c "$TMP/in/clicks.csv" >"$TMP/in/clicks.csv.gz"
    sed 's#    path: clicks.csv#    path: clicks.csv.gz#' "$TMP/csv.yaml" >"$TMP/gz.yaml"
    "$RD" prepare "$TMP/gz.yaml" --out "$TMP/gz_out" >/dev/null 2>"$TMP/err"
    [ $? -eq 1 ] || fail "a gzip log must exit 1"
    grep -qF "clicks.csv.gz:1: a gzip-compressed file, not text: decompress it first, or give /dev/stdin as its path and run \`gzip -dc FILE | recdistill prepare CONFIG\`" \
        "$TMP/err" || fail "gzip log message: $(cat "$TMP/err")"
    [ ! -e "$TMP/gz_out" ] || fail "a refused gzip log left $TMP/gz_out"
    sed 's#    path: clicks.csv#    path: /dev/stdin#' "$TMP/csv.yaml" >"$TMP/stdin.yaml"
    grep -q "path: /dev/stdin" "$TMP/stdin.yaml" || fail "could not derive stdin.yaml"
    gzip -dc "$TMP/in/clicks.csv.gz" | "$RD" prepare "$TMP/stdin.yaml" --out "$TMP/stdin_out" \
        >"$TMP/out" 2>"$TMP/err" || fail "a log streamed on stdin: $(cat "$TMP/err")"
    cmp -s "$TMP/csv_out/events.bin" "$TMP/stdin_out/events.bin" ||
        fail "the streamed log gives other events than the file"
    [ "$(sed -n 2p "$TMP/stdin_out/lines.csv")" = "/dev/stdin,2" ] ||
        fail "lines.csv of the streamed log: $(head -3 "$TMP/stdin_out/lines.csv")"
fi

# --- CSV: values that parse but are likely wrong are named on stderr (the dataset is built) --
# A raw numeric column of large values (prices in cents) saturates every model that reads it; a
# unix_ms log whose values are seconds lands in January 1970.
printf 'ts,uid,iid,clicked,price,dwell\n1600000000,9,a,1,1500000,2e4\n1600000100,10,b,0,20,3\n' > "$TMP/in/big.csv"
{ common; cat <<EOF
data:
  source: csv
  input: $TMP/in
  schema:
    path: big.csv
    user_column: uid
    item_column: iid
    time_column: ts
    time_format: unix_ms
    label: "clicked >= 1"
    fields:
      - {name: price, kind: numeric}
      - {name: dwell, kind: feedback}
EOF
} > "$TMP/big.yaml"
"$RD" prepare "$TMP/big.yaml" --out "$TMP/big_out" > "$TMP/out" 2>"$TMP/err" || fail "big: $(cat "$TMP/err")"
grep -q "big.csv:2: numeric field 'price' reaches 1.5e+06 (on this line)" "$TMP/err" \
    || fail "no warning for a large numeric field: $(cat "$TMP/err")"
grep -q "big.csv:2: feedback field 'dwell' reaches 20000" "$TMP/err" \
    || fail "no warning for a large feedback field: $(cat "$TMP/err")"
grep -qF "big.csv:2: column 'ts': time_format unix_ms: 2 of the log's 2 rows have a time before 1971 (this line is the first: 1600000000 reads as 1970-01-19T12:26:40Z); read as seconds most fall in 1971 .. 2199: set time_format: unix (the events keep their order" "$TMP/err" \
    || fail "no warning for seconds read as unix_ms: $(cat "$TMP/err")"
# A log in parts: these messages, and the missing values' count, name the part and line of the
# row meant (the first of the largest value, of the latest time, of the first missing value),
# not the log's pattern; a side table's field names the side table's row.
mkdir -p "$TMP/in/bigp"
printf 'ts,uid,iid,clicked,price,dwell\n1600000000,9,a,1,15,2\n1600000100,10,b,0,,3\n' > "$TMP/in/bigp/p1.csv"
printf 'ts,uid,iid,clicked,price,dwell\n1600000200,9,c,0,20,3\n1600000300,10,a,1,1500000,NA\n1600000400,9,b,0,2,1\n' > "$TMP/in/bigp/p2.csv"
printf 'uid,score\n9,1\n10,7e6\n' > "$TMP/in/bigp/users.csv"
sed 's|    path: big.csv|    path: bigp/p*.csv|; s|- {name: price, kind: numeric}|- {name: price, kind: numeric, missing: zero}|; s|- {name: dwell, kind: feedback}|- {name: dwell, kind: feedback, missing: mean}\n      - {name: score, side: users, kind: numeric}\n    side:\n      - {name: users, path: bigp/users.csv, header: true, key_column: uid, join_column: uid}|' "$TMP/big.yaml" > "$TMP/bigp.yaml"
"$RD" prepare "$TMP/bigp.yaml" --out "$TMP/bigp_out" > "$TMP/out" 2>"$TMP/err" || fail "bigp: $(cat "$TMP/err")"
for w in "bigp/p2.csv:3: numeric field 'price' reaches 1.5e+06 (on this line)" \
         "bigp/users.csv:3: numeric field 'score' reaches 7e+06 (on this line)" \
         "bigp/p1.csv:2: column 'ts': time_format unix_ms: 5 of the log's 5 rows have a time before 1971 (this line is the first: 1600000000 reads as 1970-01-19T12:26:40Z); read as seconds" \
         "bigp/p1.csv:3: field 'price': 1 missing value (this line is the first; missing: zero)" \
         "bigp/p2.csv:3: field 'dwell': 1 missing value (this line is the first; missing: mean"; do
    grep -qF "$w" "$TMP/err" || fail "bigp: no '$w': $(cat "$TMP/err")"
done
grep -q "p\*.csv" "$TMP/err" && fail "bigp: a message names the pattern: $(cat "$TMP/err")"
sed -i 's/time_format: unix_ms/time_format: unix/; s/kind: numeric}/kind: numeric, log1p: true}/; s/kind: feedback}/kind: feedback, log1p: true}/' "$TMP/big.yaml"
"$RD" prepare "$TMP/big.yaml" --out "$TMP/big_out" > "$TMP/out" 2>"$TMP/err" || fail "big: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "warning on a sound log: $(cat "$TMP/err")"
# Timestamps of the other unit: a unix column of milliseconds (those of 1971 .. 1978 parse as
# seconds, in the years 2200 .. 9999) and a unix_ms column of microseconds (year 7040) passed
# without a word. Most rows decide (one row out of range does not warn); a sound unix_ms log
# and a toy unix log of small numbers get no warning.
printf 'ts,uid,iid,clicked,price,dwell\n1600000000,9,a,1,1,2\n200000000000,10,b,0,2,3\n200000000500,9,c,0,2,3\n' > "$TMP/in/unit.csv"
sed 's/big.csv/unit.csv/' "$TMP/big.yaml" > "$TMP/unit.yaml"
"$RD" prepare "$TMP/unit.yaml" --out "$TMP/unit_out" > "$TMP/out" 2>"$TMP/err" || fail "unit: $(cat "$TMP/err")"
grep -qF "unit.csv:3: column 'ts': time_format unix: 2 of the log's 3 rows have a time in 2200 or later (this line is the first: 200000000000 reads as 8307-10-01T19:33:20Z); read as milliseconds most fall in 1971 .. 2199: set time_format: unix_ms (the events keep their order; the dataset is built with these dates)" "$TMP/err" \
    || fail "no warning for milliseconds read as unix: $(cat "$TMP/err")"
printf 'ts,uid,iid,clicked,price,dwell\n1600000000000,9,a,1,1,2\n160000000000000,10,b,0,2,3\n160000000000999,9,c,0,2,3\n' > "$TMP/in/unit.csv"
sed -i 's/time_format: unix/time_format: unix_ms/' "$TMP/unit.yaml"
"$RD" prepare "$TMP/unit.yaml" --out "$TMP/unit_out" > "$TMP/out" 2>"$TMP/err" || fail "unit_ms: $(cat "$TMP/err")"
grep -qF "unit.csv:3: column 'ts': time_format unix_ms: 2 of the log's 3 rows have a time in 2200 or later (this line is the first: 160000000000000 reads as 7040-03-13T20:26:40Z); read as microseconds most fall in 1971 .. 2199: divide the column by 1000 and keep time_format: unix_ms" "$TMP/err" \
    || fail "no warning for a unix_ms log of year 7040: $(cat "$TMP/err")"
printf 'ts,uid,iid,clicked,price,dwell\n1600000000000,9,a,1,1,2\n1600000000100,10,b,0,2,3\n160000000000000,9,c,0,2,3\n' > "$TMP/in/unit.csv"
"$RD" prepare "$TMP/unit.yaml" --out "$TMP/unit_out" > "$TMP/out" 2>"$TMP/err" || fail "unit_ms sound: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "warning on a sound unix_ms log: $(cat "$TMP/err")"
printf 'ts,uid,iid,clicked,price,dwell\n10,9,a,1,1,2\n11,10,b,0,2,3\n' > "$TMP/in/unit.csv"
sed -i 's/time_format: unix_ms/time_format: unix/' "$TMP/unit.yaml"
"$RD" prepare "$TMP/unit.yaml" --out "$TMP/unit_out" > "$TMP/out" 2>"$TMP/err" || fail "unit toy: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "warning on a toy unix log: $(cat "$TMP/err")"
# log1p stores log1p(max(x, 0)): a signed column lost its negative values without a word.
printf 'ts,uid,iid,clicked,price,dwell\n1600000000,9,a,1,-3,-2e4\n1600000100,10,b,0,20,-1\n1600000200,10,c,0,-0.5,3\n' > "$TMP/in/neg.csv"
sed 's/big.csv/neg.csv/' "$TMP/big.yaml" > "$TMP/neg.yaml"
"$RD" prepare "$TMP/neg.yaml" --out "$TMP/neg_out" > "$TMP/out" 2>"$TMP/err" || fail "neg: $(cat "$TMP/err")"
grep -q "neg.csv:2: numeric field 'price': 2 values below 0 (this line is the first), stored as 0 by log1p: true (it takes log1p(max(x, 0))); for a signed column drop log1p (data.schema.fields\[0\].log1p: false) and set standardize: true" "$TMP/err" \
    || fail "no warning for negative values under log1p: $(cat "$TMP/err")"
grep -q "neg.csv:2: feedback field 'dwell': 2 values below 0 (this line is the first), stored as 0" "$TMP/err" \
    || fail "no warning for negative feedback values under log1p: $(cat "$TMP/err")"
# Rows that repeat an earlier row exactly (a doubled export, parts that overlap): kept, but a
# copy's history holds the copy before it and its label. Named, with the count, across parts.
mkdir -p "$TMP/in/rep"
printf 'ts,uid,iid,clicked\n10,9,a,1\n11,10,b,0\n11,10,b,1\n12,9,c,0\n' > "$TMP/in/rep/p1.csv"
printf 'ts,uid,iid,clicked\n11,10,b,0\n12,9,c,0\n13,9,a,1\n' > "$TMP/in/rep/p2.csv"
{ common; cat <<EOF
data:
  source: csv
  input: $TMP/in
  schema:
    path: rep/p*.csv
    user_column: uid
    item_column: iid
    time_column: ts
    label: "clicked >= 1"
EOF
} > "$TMP/rep.yaml"
"$RD" prepare "$TMP/rep.yaml" --out "$TMP/rep_out" > "$TMP/out" 2>"$TMP/err" || fail "rep: $(cat "$TMP/err")"
grep -q "rep/p2.csv:2 repeats $TMP/in/rep/p1.csv:3 exactly (every column), and 2 of the log's 7 rows repeat an earlier row" "$TMP/err" \
    || fail "no warning for repeated rows: $(cat "$TMP/err")"
grep -q "events       7" "$TMP/out" || fail "repeated rows are kept: $(cat "$TMP/out")"
grep -q "set data.schema.drop_repeats: true" "$TMP/err" || fail "the warning names drop_repeats: $(cat "$TMP/err")"
# data.schema.drop_repeats drops them (the first copy stays), says how many, and meta.yaml too;
# another dataset than the one that kept them (its config hash differs).
sed 's/^    path: rep\/p\*.csv$/    path: rep\/p*.csv\n    drop_repeats: true/' "$TMP/rep.yaml" > "$TMP/rep_drop.yaml"
grep -q "drop_repeats: true" "$TMP/rep_drop.yaml" || fail "rep_drop.yaml was not derived"
"$RD" prepare "$TMP/rep_drop.yaml" --out "$TMP/rep_drop" > "$TMP/out" 2>"$TMP/err" || fail "rep_drop: $(cat "$TMP/err")"
grep -q "dropped 2 rows that repeat an earlier row exactly (data.schema.drop_repeats; the first $TMP/in/rep/p2.csv:2, a repeat of $TMP/in/rep/p1.csv:3): 5 events left" "$TMP/err" \
    || fail "drop_repeats message: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "drop_repeats still warns: $(cat "$TMP/err")"
grep -q "events       5" "$TMP/out" || fail "drop_repeats: $(cat "$TMP/out")"
grep -q "^  dropped_rows: 2$" "$TMP/rep_drop/meta.yaml" || fail "meta.yaml lacks dropped_rows"
h1=$(grep data_config_hash "$TMP/rep_out/meta.yaml"); h2=$(grep data_config_hash "$TMP/rep_drop/meta.yaml")
[ "$h1" != "$h2" ] || fail "drop_repeats does not change the dataset's config hash"
# The counts prepare prints of the rows (missing values, values below 0 under log1p, rows
# without a side row, multi values cut) are those of the rows kept: they counted the dropped
# copies too (3 missing, 3 below 0, 2 of 7 without a side row, 3 cut).
mkdir -p "$TMP/in/repc"
printf 'ts,uid,iid,clicked,price,tags\n10,9,a,1,,x|y|z\n11,10,b,0,-1,x\n11,10,b,0,-1,x\n11,10,b,0,-1,x\n12,77,c,1,,x|y|z\n12,77,c,1,,x|y|z\n13,9,a,0,2,x\n' > "$TMP/in/repc/l.csv"
printf 'uid,country\n9,fr\n10,de\n' > "$TMP/in/repc/users.csv"
sed 's|    path: rep/p\*.csv|    path: repc/l.csv|' "$TMP/rep_drop.yaml" > "$TMP/repc.yaml"
cat >> "$TMP/repc.yaml" <<EOF
    side:
      - {name: users, path: repc/users.csv, header: true, key_column: uid, join_column: uid, missing: empty}
    fields:
      - {name: country, side: users}
      - {name: price, kind: numeric, missing: zero, log1p: true, standardize: true}
      - {name: tags, kind: multi, max_len: 2}
EOF
"$RD" prepare "$TMP/repc.yaml" --out "$TMP/repc_out" > "$TMP/out" 2>"$TMP/err" || fail "repc: $(cat "$TMP/err")"
for w in "dropped 3 rows that repeat" "events       4" \
         "repc/users.csv): 1 of 4 log rows (after dropping repeats) have no row there" \
         "repc/l.csv:2: field 'price': 2 missing values (this line is the first; counted after dropping repeats; missing: zero)" \
         "repc/l.csv:3: numeric field 'price': 1 value below 0 (this line is the first; counted after dropping repeats)" \
         "repc/l.csv:2: multi field 'tags': 2 rows hold more than max_len"; do
    cat "$TMP/err" "$TMP/out" | grep -qF "$w" || fail "repc: no '$w': $(cat "$TMP/err")"
done
# A field with no value on any row (a column left blank, a side table without that data) is
# legal but gives the models nothing: named with its file(s) (it passed without a word).
mkdir -p "$TMP/in/emp"
printf 'ts,uid,iid,clicked,price,cat,tags\n10,9,a,1,,,\n11,10,b,0,NA,,\n' > "$TMP/in/emp/p1.csv"
printf 'ts,uid,iid,clicked,price,cat,tags\n12,9,c,1,,,\n' > "$TMP/in/emp/p2.csv"
printf 'uid,country\n9,\n10,\n' > "$TMP/in/emp/users.csv"
sed 's|    path: rep/p\*.csv|    path: emp/p*.csv|' "$TMP/rep.yaml" > "$TMP/emp.yaml"
cat >> "$TMP/emp.yaml" <<EOF
    side:
      - {name: users, path: emp/users.csv, header: true, key_column: uid, join_column: uid}
    fields:
      - {name: country, side: users}
      - {name: price, kind: numeric, missing: zero}
      - {name: cat, kind: categorical}
      - {name: tags, kind: multi}
EOF
"$RD" prepare "$TMP/emp.yaml" --out "$TMP/emp_out" > "$TMP/out" 2>"$TMP/err" || fail "emp: $(cat "$TMP/err")"
for w in "emp/users.csv: field 'country' has no value on any row: column 'country' is empty on all 2 rows of the side table" \
         "emp/p*.csv (all 2 files of the log): field 'price' has no value on any row: column 'price' is empty (or a missing-value spelling) on all 3 rows" \
         "emp/p*.csv (all 2 files of the log): field 'cat' has no value on any row" \
         "emp/p*.csv (all 2 files of the log): field 'tags' has no value on any row"; do
    grep -qF "$w" "$TMP/err" || fail "emp: no '$w': $(cat "$TMP/err")"
done
printf 'ts,uid,iid,clicked,price,cat,tags\n12,9,c,1,,,x\n' > "$TMP/in/emp/p2.csv"
"$RD" prepare "$TMP/emp.yaml" --out "$TMP/emp_out" > "$TMP/out" 2>"$TMP/err" || fail "emp: $(cat "$TMP/err")"
grep -q "field 'tags' has no value" "$TMP/err" && fail "emp: a field with one value: $(cat "$TMP/err")"
# A log refused for one class still shows the whole-log warnings counted before the refusal
# (they were printed after it, so never), and a text label column empty on every row is named
# as the cause (the refusal gave the rule and the class alone).
mkdir -p "$TMP/in/one"
printf 'ts,uid,iid,ev,cat\n10,9,a,,\n11,10,b,,\n' > "$TMP/in/one/l.csv"
sed 's|    path: rep/p\*.csv|    path: one/l.csv|; s|    label: "clicked >= 1"|    label: '"'"'ev == "click"'"'"'|' \
    "$TMP/rep.yaml" > "$TMP/one.yaml"
cat >> "$TMP/one.yaml" <<EOF
    fields:
      - {name: cat, kind: categorical}
EOF
"$RD" prepare "$TMP/one.yaml" --out "$TMP/one_out" > "$TMP/out" 2>"$TMP/err"; [ $? -eq 1 ] || fail "one: a log of one class must exit 1: $(cat "$TMP/err")"
for w in "one/l.csv: field 'cat' has no value on any row: column 'cat' is empty on all 2 rows" \
         "one/l.csv: label rule 'ev == [\"click\"]' gives label 0 to all 2 events (column 'ev' is empty on every row)"; do
    grep -qF "$w" "$TMP/err" || fail "one: no '$w': $(cat "$TMP/err")"
done
# The per-file "multi values cut" lines of a refused log in parts, with drop_repeats as without
# (with it they were told only once the repeats were dropped, after the refusal: never). Both
# count every row read, copies included: nothing was dropped.
mkdir -p "$TMP/in/onecut"
printf 'ts,uid,iid,clicked,tags\n10,9,a,1,x|y|z\n11,10,b,1,x\n' > "$TMP/in/onecut/p1.csv"
printf 'ts,uid,iid,clicked,tags\n12,9,c,1,x\n13,10,a,1,x|y|z\n13,10,a,1,x|y|z\n' > "$TMP/in/onecut/p2.csv"
sed 's|    path: rep/p\*.csv|    path: onecut/p*.csv|' "$TMP/rep.yaml" > "$TMP/onecut.yaml"
cat >> "$TMP/onecut.yaml" <<EOF
    fields:
      - {name: tags, kind: multi, max_len: 2}
EOF
sed 's|^    path: onecut/p\*.csv$|    path: onecut/p*.csv\n    drop_repeats: true|' "$TMP/onecut.yaml" > "$TMP/onecut_drop.yaml"
grep -q "drop_repeats: true" "$TMP/onecut_drop.yaml" || fail "onecut_drop.yaml was not derived"
for y in onecut onecut_drop; do
    "$RD" prepare "$TMP/$y.yaml" --out "$TMP/${y}_out" > "$TMP/out" 2>"$TMP/err"; [ $? -eq 1 ] || fail "$y: a log of one class must exit 1: $(cat "$TMP/err")"
    for w in "onecut/p1.csv:2: multi field 'tags': 1 row holds more than max_len = 2 values (this line is the first)" \
             "onecut/p2.csv:3: multi field 'tags': 2 rows hold more than max_len = 2 values (this line is the first)" \
             "onecut/p*.csv: label rule 'clicked >= 1' gives label 1 to all 5 events"; do
        grep -qF "$w" "$TMP/err" || fail "$y: no '$w': $(cat "$TMP/err")"
    done
done
# A standardized side-table field whose value the batch period cannot scale is refused naming
# the side table's row (file:line), not only the log line of the event it was joined to (the
# message named the log line alone, where the value is not).
mkdir -p "$TMP/in/std"
printf 'ts,uid,iid,clicked\n1,u1,a,1\n2,u2,b,0\n3,u1,c,0\n4,u2,a,1\n5,u1,b,1\n6,u2,c,0\n7,u1,a,0\n8,u2,b,1\n9,u3,c,1\n10,u3,a,0\n' > "$TMP/in/std/l.csv"
printf 'uid,score\nu1,1e-30\nu3,1e30\nu2,2e-30\n' > "$TMP/in/std/users.csv"
sed 's|    path: rep/p\*.csv|    path: std/l.csv|' "$TMP/rep.yaml" > "$TMP/std.yaml"
cat >> "$TMP/std.yaml" <<EOF
    side:
      - {name: users, path: std/users.csv, header: true, key_column: uid, join_column: uid}
    fields:
      - {name: score, side: users, kind: numeric, standardize: true}
EOF
"$RD" prepare "$TMP/std.yaml" --out "$TMP/std_out" > "$TMP/out" 2>"$TMP/err"; [ $? -eq 1 ] || fail "std: an unscalable value must exit 1"
grep -qF "std/users.csv:3 (side table 'users', the row joined to the event of $TMP/in/std/l.csv:10): field 'score': the event at" "$TMP/err" \
    || fail "std: the side table's row is not named: $(cat "$TMP/err")"
# The row named is the one joined by the event's key, not the first row of another key that
# holds the same values: the key column is no field here, and users.csv:3 (u9) named for the
# event of u3 (users.csv:4) sent the user to the wrong row.
printf 'uid,score\nu1,1e-30\nu9,1e30\nu3,1e30\nu2,2e-30\n' > "$TMP/in/std/users.csv"
"$RD" prepare "$TMP/std.yaml" --out "$TMP/std_out" > "$TMP/out" 2>"$TMP/err"; [ $? -eq 1 ] || fail "std twin: an unscalable value must exit 1"
grep -qF "std/users.csv:4 (side table 'users', the row joined to the event of $TMP/in/std/l.csv:10): field 'score': the event at" "$TMP/err" \
    || fail "std twin: not the row joined (users.csv:4, key u3): $(cat "$TMP/err")"
# A different label or field value is no repeat.
printf 'ts,uid,iid,clicked\n14,10,b,0\n12,9,c,1\n13,9,a,1\n' > "$TMP/in/rep/p2.csv"
"$RD" prepare "$TMP/rep.yaml" --out "$TMP/rep_out" > "$TMP/out" 2>"$TMP/err" || fail "rep: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "warning on a log without repeats: $(cat "$TMP/err")"
# Every column counts, not only those read: a label value of the same class (2 beside 1 for
# "clicked >= 1") or another value of an unread column is another row, not a repeat (drop_repeats
# dropped it as one).
printf 'ts,uid,iid,clicked,order\n10,9,a,1,o1\n10,9,a,2,o1\n10,9,a,1,o2\n' > "$TMP/in/rep/p1.csv"
printf 'ts,uid,iid,clicked,order\n11,9,a,0,o3\n' > "$TMP/in/rep/p2.csv"
"$RD" prepare "$TMP/rep_drop.yaml" --out "$TMP/rep_drop2" > "$TMP/out" 2>"$TMP/err" || fail "rep_drop2: $(cat "$TMP/err")"
grep -q "events       4" "$TMP/out" || fail "drop_repeats dropped rows that differ in a column: $(cat "$TMP/err")"
grep -q "dropped" "$TMP/err" && fail "drop_repeats dropped rows that differ in a column: $(cat "$TMP/err")"
# But the dataset stores those rows as one event (the unread column and the label value of one
# class aside), so a copy's history holds the other with its label as a repeat's does: named
# with the count, drop_repeats or not (a retried click logged under a new request id).
grep -q "rep/p1.csv:3 is stored as the same event as $TMP/in/rep/p1.csv:2 (the same time, user, item, label and fields: the rows differ only in columns the schema does not read, or in label values of one class), and 2 of the log's 4 events are such a copy of an earlier row" "$TMP/err" \
    || fail "no warning for rows stored as one event: $(cat "$TMP/err")"
"$RD" prepare "$TMP/rep.yaml" --out "$TMP/rep_twin" > "$TMP/out" 2>"$TMP/err" || fail "rep_twin: $(cat "$TMP/err")"
grep -q "and 2 of the log's 4 events are such a copy of an earlier row: each is kept as an event" "$TMP/err" \
    || fail "no warning for rows stored as one event without drop_repeats: $(cat "$TMP/err")"
grep -q "repeats .* exactly" "$TMP/err" && fail "rows stored as one event named as exact repeats: $(cat "$TMP/err")"
# A log exported twice whose run of one (time, user, item) holds more than 64 rows: every copy is
# found, however far back its first (only the last copy was, of 71, with a scan of the 64 rows
# before each), and the count is the same with and without drop_repeats.
{ echo ts,uid,iid,clicked,order; for i in $(seq 1 70); do echo "10,9,a,1,o$i"; done; echo 11,10,b,0,x; } > "$TMP/in/rep/p1.csv"
cp "$TMP/in/rep/p1.csv" "$TMP/in/rep/p2.csv"
# (order read as a field: the rows of the run are distinct events too)
printf '    fields:\n      - {name: order, column: order, kind: categorical}\n' > "$TMP/rep_fields"
cat "$TMP/rep.yaml" "$TMP/rep_fields" > "$TMP/rep3.yaml"
cat "$TMP/rep_drop.yaml" "$TMP/rep_fields" > "$TMP/rep_drop3.yaml"
"$RD" prepare "$TMP/rep3.yaml" --out "$TMP/rep_out3" > "$TMP/out" 2>"$TMP/err" || fail "rep3: $(cat "$TMP/err")"
grep -q "rep/p2.csv:2 repeats $TMP/in/rep/p1.csv:2 exactly (every column), and 71 of the log's 142 rows repeat" "$TMP/err" \
    || fail "repeats beyond 64 rows back: $(cat "$TMP/err")"
"$RD" prepare "$TMP/rep_drop3.yaml" --out "$TMP/rep_drop3" > "$TMP/out" 2>"$TMP/err" || fail "rep_drop3: $(cat "$TMP/err")"
grep -q "dropped 71 rows that repeat an earlier row exactly .*: 71 events left" "$TMP/err" \
    || fail "drop_repeats beyond 64 rows back: $(cat "$TMP/err")"
# Values are text too: genres written "rock, pop" and split at ',' give " pop" beside the "pop"
# that opens other rows, two keys for one genre; named with the count and the first such value,
# for a multi field and a categorical one, a side table's too (its file and line). Values with
# spaces around them and no twin without are no warning.
mkdir -p "$TMP/in/sp"
printf 'ts,uid,iid,clicked,genres,device\n1,u1,a,1,"rock, pop",web\n2,u2,b,0,"pop, jazz",web \n3,u1,b,1,jazz,ios\n4,u2,a,0," folk",ios\n' > "$TMP/in/sp/l.csv"
printf 'iid,brand\na,acme\nb, acme\n' > "$TMP/in/sp/items.csv"
{ common; cat <<EOF
data:
  source: csv
  input: $TMP/in/sp
  schema:
    path: l.csv
    user_column: uid
    item_column: iid
    time_column: ts
    label: "clicked >= 1"
    side:
      - {name: items, path: items.csv, header: true, key_column: iid, join_column: iid}
    fields:
      - {name: genres, kind: multi, sep: ","}
      - {name: device}
      - {name: brand, side: items}
EOF
} > "$TMP/sp.yaml"
"$RD" prepare "$TMP/sp.yaml" --out "$TMP/sp_out" > "$TMP/out" 2>"$TMP/err" || fail "sp: $(cat "$TMP/err")"
grep -qF "multi field 'genres': 2 values are read with spaces around them beside the same text without (' pop' at $TMP/in/sp/l.csv:2 is the first): values are compared byte for byte" "$TMP/err" \
    || fail "no warning for multi values with spaces around them: $(cat "$TMP/err")"
grep -qF "set data.schema.fields[0].sep to the separator with its spaces" "$TMP/err" \
    || fail "the spaced multi warning names the sep key: $(cat "$TMP/err")"
grep -qF "categorical field 'device': 1 value is read with spaces around it beside the same text without ('web ' at $TMP/in/sp/l.csv:3 is the first)" "$TMP/err" \
    || fail "no warning for categorical values with spaces around them: $(cat "$TMP/err")"
grep -qF "categorical field 'brand': 1 value is read with spaces around it beside the same text without (' acme' at $TMP/in/sp/items.csv:3 is the first)" "$TMP/err" \
    || fail "no warning for a side table's values with spaces around them: $(cat "$TMP/err")"
grep -q "folk" "$TMP/err" && fail "a spaced value without a twin was warned about: $(cat "$TMP/err")"
grep -q "genres 6, device 3, brand 2" "$TMP/out" || fail "sp: the values stay as read: $(cat "$TMP/out")"
# Ids are text: "007" and "7" are two users. A column holding both spellings of one number
# more likely lost its zeros on some rows: named (a column padded throughout is not).
printf 'ts,uid,iid,clicked\n1,007,a,1\n2,7,a,0\n3,0,b,1\n4,000,b,0\n5,0x7,c,1\n6,12,c,0\n' > "$TMP/in/zeros.csv"
sed 's|rep/p\*.csv|zeros.csv|' "$TMP/rep.yaml" > "$TMP/zeros.yaml"
"$RD" prepare "$TMP/zeros.yaml" --out "$TMP/zeros_out" > "$TMP/out" 2>"$TMP/err" || fail "zeros: $(cat "$TMP/err")"
grep -q "zeros.csv: column 'uid': 2 ids spell the number of another id with leading zeros ('000' beside '0'): ids are text, so these are different users" "$TMP/err" \
    || fail "no warning for ids that differ by leading zeros: $(cat "$TMP/err")"
grep -q "users        6" "$TMP/out" || fail "zeros: '007' and '7' are two users: $(cat "$TMP/out")"
printf 'ts,uid,iid,clicked\n1,007,a,1\n2,017,a,0\n3,000,b,1\n' > "$TMP/in/zeros.csv"
"$RD" prepare "$TMP/zeros.yaml" --out "$TMP/zeros_out" > "$TMP/out" 2>"$TMP/err" || fail "zeros: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "warning on ids padded throughout: $(cat "$TMP/err")"
# An id of spaces only is as empty as an empty one: refused (it was one more user, ' ').
printf 'ts,uid,iid,clicked\n1,7,a,1\n2,  ,a,0\n' > "$TMP/in/zeros.csv"
"$RD" prepare "$TMP/zeros.yaml" --out "$TMP/blank_out" > "$TMP/out" 2>"$TMP/err"; [ $? -eq 1 ] || fail "a blank id must exit 1"
grep -q "zeros.csv:3: column 'uid': empty id (spaces only)" "$TMP/err" || fail "blank id: $(cat "$TMP/err")"
[ ! -e "$TMP/blank_out" ] || fail "a refused prepare left its folder"
# An export's spelling of a missing id (NULL, \N, NaN, None, NA) is one user or item holding
# every such row, which passed without a word: named, with the count, the part and line.
mkdir -p "$TMP/in/nul"
printf 'ts,uid,iid,clicked\n1,u1,a,1\n2,u2,b,0\n' > "$TMP/in/nul/p1.csv"
printf 'ts,uid,iid,clicked\n3,u1,a,0\n4,NULL,b,1\n5,\\N,a,0\n6,u2,nan,1\n' > "$TMP/in/nul/p2.csv"
sed 's|rep/p\*.csv|nul/p*.csv|' "$TMP/rep.yaml" > "$TMP/nul.yaml"
"$RD" prepare "$TMP/nul.yaml" --out "$TMP/nul_out" > "$TMP/out" 2>"$TMP/err" || fail "nul: $(cat "$TMP/err")"
for w in "nul/p2.csv:3: column 'uid': 2 of the log's 6 rows hold 'NULL' or another spelling of a missing value (this line is the first): ids are text, so each spelling is one user" \
         "nul/p2.csv:5: column 'iid': 1 of the log's 6 rows hold 'nan' or another spelling of a missing value"; do
    grep -qF "$w" "$TMP/err" || fail "nul: no '$w': $(cat "$TMP/err")"
done
# label.values compare bytes: a boolean column from two exporters ("true" and "True") or a value
# with spaces (" true") gave those rows label 0 without a word. Named; exact spellings are not.
printf 'ts,uid,iid,ev\n1,u1,a,true\n2,u2,b,false\n3,u1,c,True\n4,u2,a, true\n5,u1,b,FALSE\n' > "$TMP/in/nul/bool.csv"
sed 's|nul/p\*.csv|nul/bool.csv|; s|    label: "clicked >= 1"|    label: '"'"'ev == "true"'"'"'|' "$TMP/nul.yaml" > "$TMP/bool.yaml"
"$RD" prepare "$TMP/bool.yaml" --out "$TMP/bool_out" > "$TMP/out" 2>"$TMP/err" || fail "bool: $(cat "$TMP/err")"
grep -qF "nul/bool.csv:4: column 'ev': 2 of the log's 5 rows hold 'True' (this line is the first) or another spelling that matches label value 'true' only when case and spaces around it are ignored: label.values are compared byte for byte, so these rows get label 0" "$TMP/err" \
    || fail "bool: no warning for label values of another case: $(cat "$TMP/err")"
sed -i 's/True/true/; s/, true/,true/' "$TMP/in/nul/bool.csv"
"$RD" prepare "$TMP/bool.yaml" --out "$TMP/bool_out" > "$TMP/out" 2>"$TMP/err" || fail "bool: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "bool: warning on exact label values: $(cat "$TMP/err")"
# data.input is a folder's name, never a pattern: under a folder named "logs [2020]" (a bracket
# in a download or archive name), the parts' pattern matched nothing ("no file matches").
mkdir -p "$TMP/logs [2020]"
printf 'ts,uid,iid,clicked\n10,9,a,1\n11,10,b,0\n' > "$TMP/logs [2020]/p1.csv"
printf 'ts,uid,iid,clicked\n12,9,b,0\n13,10,a,1\n14,9,c,1\n' > "$TMP/logs [2020]/p2.csv"
sed "s|  input: $TMP/in|  input: \"$TMP/logs [2020]\"|; s|rep/p\\*.csv|\"p*.csv\"|" "$TMP/rep.yaml" > "$TMP/brk.yaml"
grep -q 'logs \[2020\]' "$TMP/brk.yaml" || fail "brk.yaml was not derived"
"$RD" prepare "$TMP/brk.yaml" --out "$TMP/brk_out" > "$TMP/out" 2>"$TMP/err" || fail "brk: $(cat "$TMP/err")"
grep -q "events       5" "$TMP/out" || fail "brk: both parts under 'logs [2020]': $(cat "$TMP/out")"
# The first and last second data.schema takes (years 1 and 9999) print as ISO 8601, four-digit
# years ("1-01-01" before); one second later is refused, naming the line.
printf 'ts,uid,iid,clicked\n-62135596800,9,a,1\n-1,10,b,0\n253402300799,9,c,0\n' > "$TMP/in/years.csv"
sed 's|rep/p\*.csv|years.csv|' "$TMP/rep.yaml" > "$TMP/years.yaml"
"$RD" prepare "$TMP/years.yaml" --out "$TMP/years_out" > "$TMP/out" 2>"$TMP/err" || fail "years: $(cat "$TMP/err")"
grep -q "time         0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z  (-62135596800 .. 253402300799)" "$TMP/out" \
    || fail "years: $(cat "$TMP/out")"
grep -q 'min_utc: "0001-01-01T00:00:00Z", max_utc: "9999-12-31T23:59:59Z"' "$TMP/years_out/meta.yaml" \
    || fail "years: meta.yaml: $(grep min_utc "$TMP/years_out/meta.yaml")"
printf 'ts,uid,iid,clicked\n-62135596800,9,a,1\n253402300800,9,c,0\n' > "$TMP/in/years.csv"
"$RD" prepare "$TMP/years.yaml" --out "$TMP/years_out2" > "$TMP/out" 2>"$TMP/err"; [ $? -eq 1 ] || fail "year 10000 must exit 1"
grep -q "years.csv:3: column 'ts': bad unix timestamp '253402300800'" "$TMP/err" || fail "year 10000: $(cat "$TMP/err")"
[ ! -e "$TMP/years_out2" ] || fail "a refused prepare left its folder"
# An ISO 8601 time whose UTC offset takes it past either end is refused as the unix forms are
# (it was taken as year 10000).
printf 'ts,uid,iid,clicked\n0001-01-01T00:30:00-01:00,9,a,1\n9999-12-31T23:59:59-01:00,9,c,0\n' > "$TMP/in/years.csv"
sed 's|    time_column: ts|    time_column: ts\n    time_format: iso8601|' "$TMP/years.yaml" > "$TMP/years_iso.yaml"
"$RD" prepare "$TMP/years_iso.yaml" --out "$TMP/years_out2" > "$TMP/out" 2>"$TMP/err"; [ $? -eq 1 ] || fail "year 10000 (iso8601) must exit 1"
grep -q "years.csv:3: column 'ts': bad iso8601 timestamp '9999-12-31T23:59:59-01:00' (outside 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z once its UTC offset is applied)" "$TMP/err" \
    || fail "year 10000 (iso8601): $(cat "$TMP/err")"
# A batch period of one class (negatives logged only from some date on) trains every batch
# epoch on one label; prepare printed only the whole log's label rate. Warned, built all the same.
{ echo ts,uid,iid,clicked; for i in 1 2 3 4 5 6 7 8; do echo "$i,u$((i % 3)),i$i,1"; done
  echo 9,u1,i1,0; echo 10,u2,i2,1; } > "$TMP/in/late_neg.csv"
sed 's|rep/p\*.csv|late_neg.csv|' "$TMP/rep.yaml" > "$TMP/late_neg.yaml"
"$RD" prepare "$TMP/late_neg.yaml" --out "$TMP/late_out" > "$TMP/out" 2>"$TMP/err" || fail "late_neg: $(cat "$TMP/err")"
grep -q "every event of the batch period (the first 8 of 10, up to 1970-01-01T00:00:08Z) has label 1: its epochs train the models on one class" "$TMP/err" \
    || fail "no warning for a batch period of one class: $(cat "$TMP/err")"
sed -i 's/^3,u0,i3,1$/3,u0,i3,0/' "$TMP/in/late_neg.csv"
"$RD" prepare "$TMP/late_neg.yaml" --out "$TMP/late_out" > "$TMP/out" 2>"$TMP/err" || fail "late_neg: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "warning on a batch period of both classes: $(cat "$TMP/err")"
# A multi field keeps max_len values per row: rows with more lost the rest without a word.
printf 'ts,uid,iid,clicked,tags\n1,9,a,1,x|y|z\n2,10,b,0,x||y\n3,9,c,0,x|y|z|w\n' > "$TMP/in/tags.csv"
{ common; cat <<EOF
data:
  source: csv
  input: $TMP/in
  schema:
    path: tags.csv
    user_column: uid
    item_column: iid
    time_column: ts
    label: "clicked >= 1"
    fields:
      - {name: tags, kind: multi, max_len: 2}
EOF
} > "$TMP/tags.yaml"
"$RD" prepare "$TMP/tags.yaml" --out "$TMP/tags_out" > "$TMP/out" 2>"$TMP/err" || fail "tags: $(cat "$TMP/err")"
grep -q "tags.csv:2: multi field 'tags': 2 rows hold more than max_len = 2 values (this line is the first); only the first 2 of each are kept (raise data.schema.fields\[0\].max_len" "$TMP/err" \
    || fail "no warning for values past max_len: $(cat "$TMP/err")"
# A log in parts: the warning names the part that holds such rows and its line, not the pattern
# (which named no file the user could open).
mkdir -p "$TMP/in/tagparts"
printf 'ts,uid,iid,clicked,tags\n1,9,a,1,x|y\n2,10,b,0,x||y\n' > "$TMP/in/tagparts/tags-0.csv"
printf 'ts,uid,iid,clicked,tags\n3,9,c,0,x|y\n4,11,d,1,x|y|z\n5,9,e,0,x|y|z|w\n' > "$TMP/in/tagparts/tags-1.csv"
sed 's|path: tags.csv|path: "tagparts/tags-*.csv"|' "$TMP/tags.yaml" > "$TMP/tagparts.yaml"
"$RD" prepare "$TMP/tagparts.yaml" --out "$TMP/tagparts_out" > "$TMP/out" 2>"$TMP/err" || fail "tag parts: $(cat "$TMP/err")"
grep -q "tagparts/tags-1.csv:3: multi field 'tags': 2 rows hold more than max_len = 2 values (this line is the first)" "$TMP/err" \
    || fail "warning past max_len does not name the part and line: $(cat "$TMP/err")"
grep -q 'tags-\*' "$TMP/err" && fail "warning past max_len names the pattern: $(cat "$TMP/err")"
grep -q "tags-0.csv" "$TMP/err" && fail "warning past max_len names a part without such rows: $(cat "$TMP/err")"
sed -i 's/max_len: 2}/max_len: 3}/' "$TMP/tags.yaml"
"$RD" prepare "$TMP/tags.yaml" --out "$TMP/tags_out" > "$TMP/out" 2>"$TMP/err" || fail "tags: $(cat "$TMP/err")"
grep -q "multi field 'tags': 1 row holds more than max_len = 3 values" "$TMP/err" \
    || fail "warning for one row past max_len: $(cat "$TMP/err")"
sed -i 's/max_len: 3}/max_len: 4}/' "$TMP/tags.yaml"
"$RD" prepare "$TMP/tags.yaml" --out "$TMP/tags_out" > "$TMP/out" 2>"$TMP/err" || fail "tags: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "warning when every value fits: $(cat "$TMP/err")"

# A field that gives the label away (the event type the label comes from, a dwell time logged
# only for clicks, declared as features instead of kind: feedback) trained models to a holdout
# AUC of 1.0000 without a word. Prepare names each such field and the first line of its group.
awk 'BEGIN { print "ts,uid,iid,clicked,ev,dwell,price,device"
             for (i = 1; i <= 400; i++) { c = (i % 3 == 0)
                 printf "%d,u%d,i%d,%d,%s,%s,%d,d%d\n", i, i % 37, i % 53, c, c ? "click" : "view",
                        c ? 10 + i % 50 : "", i % 17, i % 4 } }' > "$TMP/in/leak.csv"
leak_yaml() { # $1: the fields
    { common; cat <<EOF
data:
  source: csv
  input: $TMP/in
  schema:
    path: leak.csv
    user_column: uid
    item_column: iid
    time_column: ts
    label: "clicked >= 1"
    fields: $1
EOF
    } > "$TMP/leak.yaml"
}
leak_yaml "[{name: ev}, {name: dwell, kind: numeric, missing: zero}, {name: price, kind: numeric}, {name: device}]"
"$RD" prepare "$TMP/leak.yaml" --out "$TMP/leak_out" > "$TMP/out" 2>"$TMP/err" || fail "leak: $(cat "$TMP/err")"
grep -q "leak.csv:2: field 'ev' gives the label away: in 214 of the batch period's 320 events (this line is the first) it holds the value of this line, and every one of them has label 0, though 33.1% of the period's events have label 1" "$TMP/err" \
    || fail "leak: no warning for the event type: $(cat "$TMP/err")"
grep -q "leak.csv:2: field 'dwell' gives the label away: in 214 of the batch period's 320 events (this line is the first) it is below 10, the smallest value of the label-1 events, and every one of them has label 0" "$TMP/err" \
    || fail "leak: no warning for the dwell time: $(cat "$TMP/err")"
[ "$(grep -c WARN "$TMP/err")" -eq 2 ] || fail "leak: price or device warned: $(cat "$TMP/err")"
# Missing exactly for one class (missing: mean keeps it NaN until the fill).
leak_yaml "[{name: dwell, kind: numeric, missing: mean}]"
"$RD" prepare "$TMP/leak.yaml" --out "$TMP/leak_out2" > "$TMP/out" 2>"$TMP/err" || fail "leak mean: $(cat "$TMP/err")"
grep -q "leak.csv:2: field 'dwell' gives the label away: in 214 of the batch period's 320 events (this line is the first) it is missing, and every one of them has label 0" "$TMP/err" \
    || fail "leak: no warning for a value missing for one class: $(cat "$TMP/err")"
leak_yaml "[{name: dwell, kind: feedback, missing: zero}, {name: price, kind: numeric}, {name: device}]"
"$RD" prepare "$TMP/leak.yaml" --out "$TMP/leak_out3" > "$TMP/out" 2>"$TMP/err" || fail "leak feedback: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "leak: warning for a feedback field: $(cat "$TMP/err")"

# --- MovieLens-100K -------------------------------------------------------------------------
ML="${RD_SHARED_DATA:-}/movielens-100k"
if [ -n "${RD_SHARED_DATA:-}" ] && [ -f "$ML/u.data" ]; then
    { common; cat <<EOF
data:
  source: movielens100k
  input: $ML
EOF
    } > "$TMP/ml.yaml"
    "$RD" prepare "$TMP/ml.yaml" --out "$TMP/ml" > "$TMP/out" 2>"$TMP/err" || fail "ml100k: $(cat "$TMP/err")"
    for w in "events       100000" "users        943" "items        1682" "label rate   0.5537" \
             "batch      \[0, 80000)" "stream 4   \[88000, 90000)" "holdout    \[90000, 100000)" \
             "genres 19"; do
        grep -q "$w" "$TMP/out" || fail "ml100k output lacks '$w'"
    done
else
    echo "note: MovieLens-100K part skipped: RD_SHARED_DATA not found"
fi
echo "prepare.sh: all checks passed"
