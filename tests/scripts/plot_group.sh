#!/usr/bin/env bash
# plot_group.sh — `recdistill plot --group COL` tells series apart by the whole value of COL.
#  - Values were cut to 63 bytes: series whose names differ only after that (run folders or
#    config paths under one long prefix) were drawn as one line, without a word. Now compared in
#    full; a value longer than 255 bytes is refused, naming the row.
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

[ "$fail" -eq 0 ] && echo "plot_group: ok"
exit "$fail"
