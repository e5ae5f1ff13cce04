#!/usr/bin/env bash
# plot_group.sh — `recdistill plot --group COL` tells series apart by the whole value of COL.
#  - Values were cut to 63 bytes: series whose names differ only after that (run folders or
#    config paths under one long prefix) were drawn as one line, without a word. Now compared in
#    full; a value longer than 255 bytes is refused, naming the row.
#  - Two columns of the name asked for: the first was drawn; now refused, naming both.
#   plot_group.sh PATH/TO/recdistill
set -u
bin="${1:?usage: plot_group.sh path/to/recdistill}"
tmp="$(mktemp -d /tmp/rd_test_plot_group_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
long="$(printf '/scratch/sweeps/%070d' 0)" # 86 bytes

# Nine series that differ in their last byte: more than a plot draws (8), so refused (they were
# one series).
{
    echo "x,y,run"
    for i in 1 2 3 4 5 6 7 8 9; do echo "1,$i,$long$i"; echo "2,$((i + 1)),$long$i"; done
} >"$tmp/nine.csv"
"$bin" plot "$tmp/nine.csv" --x x --y y --group run --out "$tmp/nine.png" >"$tmp/o" 2>"$tmp/e" </dev/null
rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "more than 8 values of 'run'" "$tmp/e"; then
    bad "nine long group values: exit $rc: $(cat "$tmp/o" "$tmp/e")"
fi

# Eight: drawn, 16 points.
grep -v "$long"9 "$tmp/nine.csv" >"$tmp/eight.csv"
"$bin" plot "$tmp/eight.csv" --x x --y y --group run --out "$tmp/eight.png" >"$tmp/o" 2>"$tmp/e" </dev/null ||
    bad "eight long group values: exit $?: $(cat "$tmp/e")"
grep -q "(16 points)" "$tmp/o" || bad "eight long group values: $(cat "$tmp/o")"

# A value longer than 255 bytes: refused, naming the data row.
{
    echo "x,y,run"
    echo "1,1,a"
    printf '2,2,%0300d\n' 0
} >"$tmp/huge.csv"
"$bin" plot "$tmp/huge.csv" --x x --y y --group run --out "$tmp/huge.png" >"$tmp/o" 2>"$tmp/e" </dev/null
rc=$?
if [ "$rc" -ne 1 ] || [ -e "$tmp/huge.png" ] ||
    ! grep -q "huge.csv: data row 2: a value of 'run' longer than 255 bytes" "$tmp/e"; then
    bad "a 300-byte group value: exit $rc: $(cat "$tmp/o" "$tmp/e")"
fi

# Two columns of one name (the group's or a y column's): refused, naming both, no PNG; the first
# of them was drawn under the name.
printf 'x,y,run,y\n1,1,a,5\n2,2,a,6\n' >"$tmp/dup.csv"
for args in "--y y" "--y x --group y"; do
    # shellcheck disable=SC2086 # the options are words
    "$bin" plot "$tmp/dup.csv" --x x $args --out "$tmp/dup.png" >"$tmp/o" 2>"$tmp/e" </dev/null
    rc=$?
    if [ "$rc" -ne 1 ] || [ -e "$tmp/dup.png" ] ||
        ! grep -q "dup.csv: columns 2 and 4 are both named 'y'" "$tmp/e"; then
        bad "two columns named y ($args): exit $rc: $(cat "$tmp/o" "$tmp/e")"
    fi
done

[ "$fail" -eq 0 ] && echo "plot_group: ok"
exit "$fail"
