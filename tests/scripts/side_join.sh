#!/usr/bin/env bash
# side_join.sh — a side table that the log never joins says why. Its keys written with spaces
# around them ("i3 , c1" from a hand-made CSV) never match the log's ids (compared byte for
# byte): with missing: error the "key not found" message names them, and with missing: empty a
# join that matches no log row at all is a warning naming both columns and an example key of
# each side, not an info line of counts (every event then silently lacked the table's fields).
# A join that matches some rows keeps its info line. Integer keys on one side written as decimals
# on the other ("12" and "12.0") are named too. Rows repeating an earlier row of their key in
# every column the fields read are kept once with a warning; other repeated keys are refused, and
# so is a repeated header line (tables joined by cat) or one read as data (header: false).
#
#   bash tests/scripts/side_join.sh build/recdistill
set -u
RD="${1:?usage: side_join.sh path/to/recdistill}"
TMP="$(mktemp -d /tmp/rd_test_side_join_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$TMP/in"
{ echo "u,i,t,y"; for k in $(seq 0 59); do echo "u$((k % 7)),i$((k % 9)),$((1000 + k)),$((k % 3 == 0))"; done; } \
    > "$TMP/in/log.csv"
{ echo "iid,cat"; for i in $(seq 0 8); do echo "i$i , c$((i % 3))"; done; } > "$TMP/in/spaced.csv"
{ echo "iid,cat"; for i in 0 1 2; do echo "i$i,c$i"; done; } > "$TMP/in/some.csv"
cfg() { # side file, missing mode
    cat <<EOF
run: {name: t, seed: 3}
cluster: {jobs: [{name: s, role: student, model: m}]}
ps: {tables: [{name: t, dim: 4}]}
models: [{name: m, features: [{field: user, table: t}, {field: cat, table: t}]}]
data:
  source: csv
  input: $TMP/in
  split: {batch_fraction: 0.6, holdout_fraction: 0.2, stream_windows: 2}
  schema:
    path: log.csv
    user_column: u
    item_column: i
    time_column: t
    label: "y >= 1"
    side:
      - {name: items, path: $1, header: true, key_column: iid, join_column: i, missing: $2}
    fields:
      - {name: cat, side: items}
EOF
}

# missing: error: refused, and the message says the table's keys have spaces around them.
cfg spaced.csv error > "$TMP/e.yaml"
"$RD" prepare "$TMP/e.yaml" --out "$TMP/e" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "spaced keys, missing: error: exit $rc, $(cat "$TMP/err")"
grep -q "log.csv:2: column 'i': key 'i0' not found in side table 'items' (.*spaced.csv; 9 of its keys have spaces around them, e.g. 'i0 ' on line 2, and ids are compared byte for byte; set data.schema.side\[0\].missing: empty" "$TMP/err" \
    || fail "missing: error message: $(cat "$TMP/err")"
[ ! -e "$TMP/e" ] || fail "a refused prepare left its folder"

# missing: empty, no row joins: a warning naming the columns, a key of each side.
cfg spaced.csv empty > "$TMP/m.yaml"
"$RD" prepare "$TMP/m.yaml" --out "$TMP/m" >/dev/null 2>"$TMP/err" || fail "missing: empty: $(cat "$TMP/err")"
grep -q "WARN side table 'items' (.*spaced.csv): none of the 60 log rows has a row there (log column 'i', e.g. 'i0' on $TMP/in/log.csv:2, never matches its key column 'iid'; 9 of its keys have spaces around them, e.g. 'i0 ' on line 2, and ids are compared byte for byte): its fields are missing values on every event; check data.schema.side\[0\].join_column and key_column" "$TMP/err" \
    || fail "no-join warning: $(cat "$TMP/err")"

# Some rows join: the count, as info, no warning.
cfg some.csv empty > "$TMP/s.yaml"
"$RD" prepare "$TMP/s.yaml" --out "$TMP/s" >/dev/null 2>"$TMP/err" || fail "partial join: $(cat "$TMP/err")"
grep -q "INFO side table 'items' (.*some.csv): 39 of 60 log rows have no row there" "$TMP/err" \
    || fail "partial join info: $(cat "$TMP/err")"
grep -q "WARN" "$TMP/err" && fail "a partial join warns: $(cat "$TMP/err")"
# Integer ids on one side, the same ids written as decimals on the other ("12" and "12.0": pandas
# writes an integer column with gaps as floats): named in both messages, either way round.
mkdir -p "$TMP/num"
{ echo "u,i,t,y"; for k in $(seq 0 59); do echo "u$((k % 7)),$((k % 9)),$((1000 + k)),$((k % 3 == 0))"; done; } \
    > "$TMP/num/log.csv"
{ echo "iid,cat"; for i in $(seq 0 8); do echo "$i.0,c$((i % 3))"; done; } > "$TMP/num/dec.csv"
cfg dec.csv error | sed "s|  input: $TMP/in|  input: $TMP/num|" > "$TMP/nd.yaml"
"$RD" prepare "$TMP/nd.yaml" --out "$TMP/nd" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "decimal keys, missing: error: exit $rc, $(cat "$TMP/err")"
grep -q "log.csv:2: column 'i': key '0' not found in side table 'items' (.*dec.csv; the table holds it as '0.0': ids are compared byte for byte, and one side writes the integer ids as decimals" "$TMP/err" \
    || fail "decimal keys, missing: error: $(cat "$TMP/err")"
cfg dec.csv empty | sed "s|  input: $TMP/in|  input: $TMP/num|" > "$TMP/ne.yaml"
"$RD" prepare "$TMP/ne.yaml" --out "$TMP/ne" >/dev/null 2>"$TMP/err" || fail "decimal keys, missing: empty: $(cat "$TMP/err")"
grep -q "never matches its key column 'iid'; the table holds it as '0.0'" "$TMP/err" \
    || fail "decimal keys, no-join warning: $(cat "$TMP/err")"
# The other way round: the log writes decimals, the table integers.
sed -i 's/^\([^,]*\),\([0-9]\),/\1,\2.0,/' "$TMP/num/log.csv"
{ echo "iid,cat"; for i in $(seq 0 8); do echo "$i,c$((i % 3))"; done; } > "$TMP/num/dec.csv"
"$RD" prepare "$TMP/nd.yaml" --out "$TMP/nd" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "decimal log keys: exit $rc, $(cat "$TMP/err")"
grep -q "log.csv:2: column 'i': key '0.0' not found in side table 'items' (.*dec.csv; the table holds it as '0':" "$TMP/err" \
    || fail "decimal log keys: $(cat "$TMP/err")"
# Rows that repeat an earlier row of their key in every column the fields read (here 'cat'; the
# unread 'note' may differ) are kept once, with one warning naming the first repeat and its
# original, and give the same dataset as the table without them; a repeated key whose 'cat'
# differs is refused, naming both lines.
{ echo "iid,cat,note"; for i in $(seq 0 8); do echo "i$i,c$((i % 3)),n$i"; done; } > "$TMP/in/once.csv"
{ cat "$TMP/in/once.csv"; echo "i3,c0,other"; echo "i5,c2,n5"; } > "$TMP/in/rep.csv"
{ cat "$TMP/in/once.csv"; echo "i3,c1,n3"; } > "$TMP/in/diff.csv"
for t in once rep diff; do cfg $t.csv error > "$TMP/$t.yaml"; done
"$RD" prepare "$TMP/once.yaml" --out "$TMP/once" >/dev/null 2>"$TMP/err" || fail "once: $(cat "$TMP/err")"
"$RD" prepare "$TMP/rep.yaml" --out "$TMP/rep" >/dev/null 2>"$TMP/err" ||
    fail "a side table with repeated rows: $(cat "$TMP/err")"
grep -q "WARN .*rep.csv:11: side table 'items': 2 row(s) repeat an earlier row of the same key in every column its fields read (this line is the first, repeating line 5): each key is kept once" "$TMP/err" ||
    fail "repeated rows warning: $(cat "$TMP/err")"
for f in "$TMP/once"/*; do
    b=$(basename "$f")
    [ "$b" = meta.yaml ] || cmp -s "$f" "$TMP/rep/$b" || fail "repeated rows changed $b"
done
"$RD" prepare "$TMP/diff.yaml" --out "$TMP/diff" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "a repeated key with another value: exit $rc, $(cat "$TMP/err")"
grep -q "diff.csv:11: duplicate key 'i3' in column 'iid' with other values (first on line 5)" "$TMP/err" ||
    fail "a repeated key with another value: $(cat "$TMP/err")"
[ ! -e "$TMP/diff" ] || fail "a refused prepare left its folder"
# Tables joined by cat: the second header line was kept as a row keyed 'iid'. Refused, naming
# the line; so is a header line read as data (header: false), which asks for header: true.
{ cat "$TMP/in/once.csv"; cat "$TMP/in/once.csv"; } > "$TMP/in/joined.csv"
cfg joined.csv error > "$TMP/joined.yaml"
"$RD" prepare "$TMP/joined.yaml" --out "$TMP/joined" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "a side table with a repeated header line: exit $rc, $(cat "$TMP/err")"
grep -q "joined.csv:11: the row repeats the header line ('iid' in column 'iid', 'cat' in column 'cat'): the table looks like several files joined one after another" "$TMP/err" ||
    fail "a side table with a repeated header line: $(cat "$TMP/err")"
[ ! -e "$TMP/joined" ] || fail "a refused prepare left its folder"
cfg once.csv error | sed 's/header: true,/header: false, columns: [iid, cat, note],/' > "$TMP/nohdr.yaml"
"$RD" prepare "$TMP/nohdr.yaml" --out "$TMP/nohdr" >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "a side header line read as data: exit $rc, $(cat "$TMP/err")"
grep -q "once.csv:1: the first row holds the column names ('iid' in column 'iid', 'cat' in column 'cat'): the table has a header line, but data.schema.side\[0\].header is false; set header: true" "$TMP/err" ||
    fail "a side header line read as data: $(cat "$TMP/err")"
[ ! -e "$TMP/nohdr" ] || fail "a refused prepare left its folder"
echo "side_join: ok"
