#!/usr/bin/env bash
# paired.sh — tools/paired.py, the seed-by-seed comparison the IAT and distillation experiments
# report: on hand-written report.json folders it pairs only the seeds both variants have, joins
# the folders of an extended sweep, gives the mean, sample std, relative change and seeds above
# zero that a hand computation gives, lists on stderr the seeds only one variant has, and refuses
# what it cannot pair (a seed in two folders of one variant or under two names, seed-01 and
# seed-1, a report without the job, one variant, empty folders, a seed-S folder without
# report.json unless --allow-missing, a metric that is not a number, -j without a value or twice)
# with one line, never a traceback; an output that cannot be written is one line too. A relative
# change against a zero mean of A is printed as undefined.
#
#   bash tests/scripts/paired.sh [path/to/recdistill (unused)]
set -u
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
P="$SRC/tools/paired.py"
TMP="$(mktemp -d /tmp/rd_test_paired_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# report DIR SEED HOLDOUT STREAM: a report.json with the teacher's holdout / warm / stream AUC.
report() {
    mkdir -p "$1/seed-$2"
    printf '{"holdout": {"teacher": {"auc": %s}}, "warm": {"teacher": {"auc": %s}},
"stream": {"teacher": {"auc": %s}}}\n' "$3" "$3" "$4" > "$1/seed-$2/report.json"
}
# A: seeds 1-3 in a/, 4 in a2/ (an extended sweep); B: seeds 1-4 and 5 (A has no seed 5).
report "$TMP/a" 1 0.70 0.71; report "$TMP/a" 2 0.72 0.73; report "$TMP/a" 3 0.74 0.70
report "$TMP/a2" 4 0.70 0.70
report "$TMP/b" 1 0.71 0.72; report "$TMP/b" 2 0.71 0.74; report "$TMP/b" 3 0.77 0.71
report "$TMP/b" 4 0.72 0.70; report "$TMP/b" 5 0.90 0.90
# One paired seed has no spread: the difference is printed with (n=1), not "± nan" or "± 0".
out1="$(python3 "$P" "$TMP/a2" "$TMP/b" 2>/dev/null)" || fail "paired.py, one seed: $out1"
echo "$out1" | grep -q "holdout  A 0.7000  B 0.7200  B−A +0.0200 (n=1, +2.86 %), 1 of 1 seeds above" ||
    fail "one paired seed: $out1"
echo "$out1" | grep -q "±" && fail "one paired seed prints a spread: $out1"
out="$(python3 "$P" --seeds "$TMP/a,$TMP/a2" "$TMP/b" 2>"$TMP/err")" || fail "paired.py: $out $(cat "$TMP/err")"
echo "$out"
# B's seed 5 is not paired, and said so (it was dropped silently).
grep -qx "paired.py: warning: seed 5 only in B ($TMP/b), not paired" "$TMP/err" || fail "unpaired seed: $(cat "$TMP/err")"
# holdout differences +0.01 -0.01 +0.03 +0.02: mean +0.0125, sample std 0.01708, A mean 0.715,
# +1.75 %, 3 of 4 above; stream +0.01 +0.01 +0.01 0: mean +0.0075, 3 of 4 above.
echo "$out" | grep -q "over 4 paired seeds (1..4)" || fail "seed pairing"
echo "$out" | grep -q "holdout  A 0.7150  B 0.7275  B−A +0.0125 ± 0.0171 (+1.75 %, se 0.0085), 3 of 4 seeds above" ||
    fail "holdout figures"
echo "$out" | grep -q "stream   A 0.7100  B 0.7175  B−A +0.0075 ± 0.0050 (+1.06 %, se 0.0025), 3 of 4 seeds above" ||
    fail "stream figures"
echo "$out" | grep -q "1:+0.0100 2:-0.0100 3:+0.0300 4:+0.0200" || fail "per-seed line"

# Refusals: exit 2 and a message naming the problem.
refuse() { # WHAT EXPECTED-TEXT ARGS...
    local what=$1 want=$2
    shift 2
    local o
    if o="$(python3 "$P" "$@" 2>&1)"; then fail "$what: accepted"; fi
    echo "$o" | grep -qF -- "$want" || fail "$what: $o"
    ! echo "$o" | grep -q Traceback || fail "$what: a traceback: $o"
}
report "$TMP/dup" 2 0.5 0.5
refuse "seed twice" "seed 2 is in two folders" "$TMP/a,$TMP/dup" "$TMP/b"
# seed-01 and seed-1 are one seed under two names: said so (it read "in two folders" of a variant
# given as one folder), in one folder or across two.
report "$TMP/pad" 01 0.5 0.5; report "$TMP/pad" 1 0.5 0.5
refuse "seed-01 and seed-1" "$TMP/pad/seed-01 and $TMP/pad/seed-1 are the same seed 1" "$TMP/pad" "$TMP/b"
report "$TMP/pad2" 02 0.5 0.5
refuse "seed-2 and seed-02" "$TMP/a/seed-2 and $TMP/pad2/seed-02 are the same seed 2" "$TMP/a,$TMP/pad2" "$TMP/b"
# A mean of A of 0 makes the relative change undefined: printed as such, with the other figures
# (it divided by zero: a traceback after the first line).
report "$TMP/za" 1 0 0.5; report "$TMP/za" 2 0 0.5
out="$(python3 "$P" "$TMP/za" "$TMP/b" 2>&1)" || fail "A's mean 0: $out"
echo "$out" | grep -q "holdout  A 0.0000  B 0.7100  B−A +0.7100 ± 0.0000 (% undefined: A's mean is 0, se 0.0000), 2 of 2 seeds above" ||
    fail "A's mean 0: $out"
echo "$out" | grep -q "stream   A 0.5000  B 0.7300  B−A +0.2300 ± 0.0141 (+46.00 %, se 0.0100), 2 of 2 seeds above" ||
    fail "A's mean 0, the stream slice: $out"
rm -r "$TMP/za/seed-2"
out="$(python3 "$P" "$TMP/za" "$TMP/b" 2>&1)" || fail "A's mean 0, one seed: $out"
echo "$out" | grep -q "holdout  A 0.0000  B 0.7100  B−A +0.7100 (n=1, % undefined: A's mean is 0), 1 of 1 seeds above" ||
    fail "A's mean 0, one seed: $out"
mkdir -p "$TMP/nojob/seed-1" && echo '{"holdout": {"student": {"auc": 0.6}}}' > "$TMP/nojob/seed-1/report.json"
refuse "no job" "holdout.teacher.auc is missing" "$TMP/nojob" "$TMP/b"
# A null holdout AUC (a holdout of one class) is said to be undefined, not missing.
echo '{"holdout": {"teacher": {"auc": null}}}' > "$TMP/nojob/seed-1/report.json"
refuse "null holdout" "holdout.teacher.auc is null (undefined on that seed's holdout" "$TMP/nojob" "$TMP/b"
echo '{"holdout": {"teacher": {"auc": NaN}}}' > "$TMP/nojob/seed-1/report.json"
refuse "NaN holdout" "holdout.teacher.auc is not a number" "$TMP/nojob" "$TMP/b"
echo '{"holdout": ' > "$TMP/nojob/seed-1/report.json"
refuse "broken json" "report.json" "$TMP/nojob" "$TMP/b"
refuse "one variant" "expected two variants" "$TMP/a"
mkdir -p "$TMP/empty"
refuse "empty folder" "no seed-S/report.json" "$TMP/empty" "$TMP/b"
refuse "missing folder" "no such folder" "$TMP/none" "$TMP/b"
report "$TMP/c" 9 0.5 0.5
refuse "no common seed" "no seed is in both variants" "$TMP/a" "$TMP/c"
# A seed whose run failed (seed-3/ with only a log) is an error naming it: dropped, the
# comparison read like a complete one over the seeds that ran. --allow-missing skips it, with a
# warning, and then the seed is unpaired and listed too.
mkdir -p "$TMP/bf" && cp -r "$TMP/b/seed-1" "$TMP/b/seed-2" "$TMP/bf/" && mkdir "$TMP/bf/seed-3" && echo crashed >"$TMP/bf/seed-3/log"
refuse "failed seed" "$TMP/bf/seed-3: no report.json" "$TMP/a" "$TMP/bf"
out="$(python3 "$P" --allow-missing "$TMP/a" "$TMP/bf" 2>"$TMP/err")" || fail "--allow-missing: $(cat "$TMP/err")"
echo "$out" | grep -q "over 2 paired seeds (1..2)" || fail "--allow-missing: $out"
grep -q "warning: $TMP/bf/seed-3: no report.json, skipped" "$TMP/err" && grep -q "seed 3 only in A" "$TMP/err" ||
    fail "--allow-missing warnings: $(cat "$TMP/err")"
# Options: a missing value, a value that is another option, an option twice.
refuse "-j without a value" "-j needs a value" "$TMP/a" "$TMP/b" -j
refuse "-m without a value" "-m needs a value" "$TMP/a" "$TMP/b" -m
refuse "-j then an option" "-j needs a value" -j --seeds "$TMP/a" "$TMP/b"
refuse "-j twice" "-j given twice" -j teacher -j student "$TMP/a" "$TMP/b"
# A metric that is not a number: one line naming the file and the key.
report "$TMP/s" 1 '"abc"' 0.7
refuse "a string metric" "$TMP/s/seed-1/report.json: holdout.teacher.auc is not a number (\"abc\")" "$TMP/s" "$TMP/b"
report "$TMP/s" 1 0.7 true
refuse "a boolean metric" "stream.teacher.auc is not a number (true)" "$TMP/s" "$TMP/b"
# An output that cannot be written: one line, exit 1.
if [ -w /dev/full ]; then
    python3 "$P" "$TMP/a" "$TMP/b" >/dev/full 2>"$TMP/err"
    rc=$?
    [ $rc -eq 1 ] && grep -qx "paired.py: writing the output: No space left on device" "$TMP/err" ||
        fail "stdout to /dev/full: exit $rc: $(cat "$TMP/err")"
fi
echo "paired.sh: ok"
