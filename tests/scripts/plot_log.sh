#!/usr/bin/env bash
# plot_log.sh — `recdistill plot` with a log axis and values <= 0, which a log axis cannot place.
#  - --log-y of a column with nothing above 0 (a sweep's allreduce bytes per sample at one rank
#    a job) wrote an empty plot and exit 0, saying "(2 points)".
#  - --log-y of a column with some zeros left those points out of the plot without a word, and
#    counted them in "(N points)".
#   plot_log.sh PATH/TO/recdistill
set -u
bin="${1:?usage: plot_log.sh path/to/recdistill}"
tmp="$(mktemp -d /tmp/rd_test_plot_log_XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

printf 'world_size,allreduce,total\n4,0,130\n8,22.4,160\n16,28,170\n' >"$tmp/s.csv"

# Nothing above 0 on the log axis: exit 1, the reason, no PNG.
head -n 2 "$tmp/s.csv" >"$tmp/one.csv"
"$bin" plot "$tmp/one.csv" --x world_size --y allreduce --log-y --out "$tmp/one.png" \
    >"$tmp/one.out" 2>"$tmp/one.err" </dev/null
rc=$?
[ "$rc" -eq 1 ] || bad "--log-y of zeros only: exit $rc, not 1: $(cat "$tmp/one.out" "$tmp/one.err")"
grep -q "every point (1) has a value <= 0 on the log axis (--log-y): nothing to draw" "$tmp/one.err" ||
    bad "--log-y of zeros only: $(cat "$tmp/one.err")"
[ ! -e "$tmp/one.png" ] || bad "--log-y of zeros only wrote a plot"

# Some zeros: drawn without them, said on stderr, and not counted.
"$bin" plot "$tmp/s.csv" --x world_size --y allreduce --log-y --out "$tmp/a.png" \
    >"$tmp/a.out" 2>"$tmp/a.err" </dev/null || bad "--log-y with one zero: exit $?: $(cat "$tmp/a.err")"
grep -q "(2 points)" "$tmp/a.out" || bad "--log-y with one zero: $(cat "$tmp/a.out")"
grep -q "1 point(s) with a value <= 0 left out: a log axis (--log-y) has no place for them" "$tmp/a.err" ||
    bad "--log-y with one zero: no word of the point left out: $(cat "$tmp/a.err")"
[ -s "$tmp/a.png" ] || bad "--log-y with one zero wrote no plot"

# Every value positive: no word on stderr.
"$bin" plot "$tmp/s.csv" --x world_size --y total --log-x --log-y --out "$tmp/t.png" \
    >"$tmp/t.out" 2>"$tmp/t.err" </dev/null || bad "--log-x --log-y: exit $?: $(cat "$tmp/t.err")"
grep -q "(3 points)" "$tmp/t.out" || bad "--log-x --log-y: $(cat "$tmp/t.out")"
[ ! -s "$tmp/t.err" ] || bad "--log-x --log-y of positive values: $(cat "$tmp/t.err")"

# Without a log axis a zero is a point like any other.
"$bin" plot "$tmp/s.csv" --x world_size --y allreduce --out "$tmp/l.png" >"$tmp/l.out" 2>&1 </dev/null ||
    bad "linear axis: exit $?: $(cat "$tmp/l.out")"
grep -q "(3 points)" "$tmp/l.out" || bad "linear axis: $(cat "$tmp/l.out")"

[ "$fail" -eq 0 ] && echo "plot_log: ok"
exit "$fail"
