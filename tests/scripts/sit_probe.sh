#!/usr/bin/env bash
# sit_probe.sh — tools/sit-probe.py writes the same log for the same arguments, with the labels
# its tasks describe (prev: a user's label repeats its previous one 90 % of the time; recall: an
# event whose item the user met 4..32 events earlier in an even context copies that event's
# label), and a config `recdistill config` accepts; bad arguments write nothing. On a small prev
# log the user-order source model learns the previous label out of sample (holdout progressive
# AUC > 0.8, labels shifted or paired) and cannot without sit_labels (< 0.6); on a recall log it
# finds the earlier event of the same item only with tokens.sit_group: item (> 0.58, else < 0.56).
# tools/sit-probe-tokens.py probes the stored tokens for the context, from the log or (--side) from
# a side value of the store.
#
#   bash tests/scripts/sit_probe.sh build/recdistill
set -u
command -v python3 >/dev/null || { echo "python3 not found: skip"; exit 77; }
RD="${1:?usage: sit_probe.sh path/to/recdistill}"
RD="$(cd "$(dirname "$RD")" && pwd)/$(basename "$RD")"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
P="$SRC/tools/sit-probe.py"
TMP="$(mktemp -d /tmp/rd_test_sit_probe_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1

python3 "$P" --task prev --users 60 --events 150 "$TMP/p" >/dev/null || fail "prev"
python3 "$P" --task prev --users 60 --events 150 "$TMP/p2" >/dev/null || fail "prev again"
cmp -s "$TMP/p/log.csv" "$TMP/p2/log.csv" || fail "the same arguments gave another log"
python3 "$P" --task prev --users 60 --events 150 --seed 8 "$TMP/p3" >/dev/null || fail "seed 8"
! cmp -s "$TMP/p/log.csv" "$TMP/p3/log.csv" || fail "another seed gave the same log"
python3 "$P" --task recall --users 40 --events 400 "$TMP/r" >/dev/null || fail "recall"
for d in p r; do
    "$RD" config "$TMP/$d/config.yaml" >/dev/null 2>"$TMP/err" ||
        fail "$d: recdistill config refused the probe's config: $(cat "$TMP/err")"
done

python3 - "$TMP/p/log.csv" "$TMP/r/log.csv" <<'PYEOF' || fail "the labels are not those of the tasks"
import csv, sys
def users(path):
    u = {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    ts = [int(r["ts"]) for r in rows]
    assert ts == sorted(ts) and len(set(ts)) == len(ts), "timestamps not increasing"
    for r in rows:
        u.setdefault(r["user"], []).append((int(r["item"]), int(r["ctx"]), int(r["click"])))
    return rows, u
rows, u = users(sys.argv[1])
assert len(rows) == 60 * 150 and len(u) == 60, (len(rows), len(u))
same = sum(h[i][2] == h[i - 1][2] for h in u.values() for i in range(1, len(h)))
pairs = sum(len(h) - 1 for h in u.values())
assert 0.86 < same / pairs < 0.94, ("prev: repeat rate", same / pairs)
rows, u = users(sys.argv[2])
hit = n = 0
for h in u.values():
    for j in range(32, len(h)):
        for lag in range(4, 33):
            i = j - lag
            if h[i][0] == h[j][0] and h[i][1] % 2 == 0:
                n += 1
                hit += h[i][2] == h[j][2]
                break
assert n > 500 and hit / n > 0.85, ("recall: copies", n, hit / n)
print("labels ok: prev repeats %.3f, recall copies %.3f of %d" % (same / pairs, hit / n, n))
PYEOF

# Bad arguments: exit non-zero, a message, no folder.
bad() { # WHAT EXPECTED-TEXT ARGS...
    local what=$1 want=$2
    shift 2
    python3 "$P" "$@" >"$TMP/out" 2>"$TMP/err" && fail "$what: accepted"
    grep -q -- "$want" "$TMP/err" || fail "$what: no '$want' in: $(cat "$TMP/err")"
    [ ! -e "$TMP/bad" ] || fail "$what: wrote $TMP/bad"
}
bad "task" "invalid choice" --task nope "$TMP/bad"
bad "users 0" "not a positive integer" --users 0 "$TMP/bad"
bad "short recall" "needs --events > 32" --task recall --events 20 "$TMP/bad"
bad "no folder" "required" --task prev

# What is checked is the source model alone: its progressive AUC and the tokens it stores. The
# probe's teacher (DIN over 256 events, MLP [64, 32]) only has to read tokens for the store to be
# built, and it took half of each run (recall: 6.0 s, 3.2 s with this one). Here it is a small one;
# the source model, its data and its seed are the probe's, and so are its build lines (AUCs, loss)
# and the tokens it stores, to the last digit.
LITE='s/seq: {kind: din, length: 256}/seq: {kind: mean, length: 8}/; s/mlp: \[64, 32\]/mlp: [8]/'
auc() { # NAME SED-EXPR [TASK]: the holdout progressive AUC of the source model of a variant
    sed -e "$2" -e "$LITE" "$TMP/${3:-p}/config.yaml" >"$TMP/$1.yaml"
    grep -q "mlp: \[8\]" "$TMP/$1.yaml" && grep -q "seq: {kind: mean, length: 8}" "$TMP/$1.yaml" ||
        fail "$1: the teacher was not made small"
    timeout 300 mpiexec.mpich -n 2 "$RD" train "$TMP/$1.yaml" --out "$TMP/run_$1" >"$TMP/$1.log" 2>&1 ||
        fail "$1: train failed: $(tail -5 "$TMP/$1.log")"
    sed -n 's/.*holdout (no training).*progressive AUC \([0-9.]*\).*/\1/p' "$TMP/$1.log"
}
# The source model learns the previous label out of sample (labels shifted or paired), and not
# without labels.
a=$(auc shifted 's/source_model: source}/source_model: source}/')
b=$(auc pairs 's/source_model: source}/source_model: source, sit_pairs: true}/')
c=$(auc none 's/source_model: source}/source_model: source, sit_labels: false}/')
echo "source holdout AUC: shifted $a, pairs $b, without labels $c"
python3 -c "import sys; a, b, c = map(float, sys.argv[1:]); sys.exit(not (a > 0.8 and b > 0.8 and c < 0.6))" \
    "$a" "$b" "$c" || fail "the SIT did not learn the previous label (or learnt it without labels)"
# recall: the SIT over the user's events does not find the earlier event of the same item; over
# those of the request's item (tokens.sit_group: item) the label is at a fixed offset and it does.
d=$(auc r_user 's/source_model: source}/source_model: source}/' r)
e=$(auc r_item 's/source_model: source}/source_model: source, sit_group: item}/' r)
echo "recall, source holdout AUC: sit_group user $d, item $e"
python3 -c "import sys; d, e = map(float, sys.argv[1:]); sys.exit(not (d < 0.56 and e > 0.58))" \
    "$d" "$e" || fail "recall: sit_group item should find the earlier event of the item, user not"
# tools/sit-probe-tokens.py: a linear probe of the stored tokens for the context, an AUC.
out=$(python3 "$SRC/tools/sit-probe-tokens.py" --rd "$RD" "$TMP/p" "$TMP/run_shifted" 2>&1) ||
    fail "sit-probe-tokens.py: $out"
echo "$out"
echo "$out" | grep -Eq "$(( 60 * 150 )) tokens of d 16; .* AUC 0\.[0-9]{4}$" || fail "sit-probe-tokens.py: $out"
python3 "$SRC/tools/sit-probe-tokens.py" --rd "$RD" "$TMP/p" "$TMP/p" >/dev/null 2>"$TMP/err" &&
    fail "sit-probe-tokens.py: a folder without tokens accepted"
grep -q "no token store" "$TMP/err" || fail "sit-probe-tokens.py: $(cat "$TMP/err")"
# --side K: the target is the store's own side value K (an --oracle log stores `deliberate`, the
# context's parity, beside each token); a K the store does not have is an error.
python3 "$P" --task prev --users 30 --events 100 --oracle "$TMP/o" >/dev/null || fail "oracle log"
timeout 300 mpiexec.mpich -n 2 "$RD" train "$TMP/o/config.yaml" --out "$TMP/run_o" >"$TMP/o.log" 2>&1 ||
    fail "oracle run: $(tail -5 "$TMP/o.log")"
out=$(python3 "$SRC/tools/sit-probe-tokens.py" --rd "$RD" --side 0 "$TMP/run_o" 2>&1) ||
    fail "sit-probe-tokens.py --side 0: $out"
echo "$out"
echo "$out" | grep -Eq "$(( 30 * 100 )) tokens of d 16; linear probe of side value 0 > 0.5 .* AUC 0\.[0-9]{4}$" ||
    fail "sit-probe-tokens.py --side 0: $out"
# A relative RUN starting with '-' (after "--") is a folder: recdistill took "-o/tokens" for an
# option ("unknown option").
ln -s run_o "$TMP/-o"
out2=$(cd "$TMP" && python3 "$SRC/tools/sit-probe-tokens.py" --rd "$RD" --side 0 -- -o 2>&1) ||
    fail "sit-probe-tokens.py --side 0 -- -o: $out2"
[ "${out2#./-o/tokens: }" = "${out#"$TMP"/run_o/tokens: }" ] || fail "sit-probe-tokens.py -- -o: $out2, not $out"
python3 "$SRC/tools/sit-probe-tokens.py" --rd "$RD" --side 1 "$TMP/run_o" >/dev/null 2>"$TMP/err" &&
    fail "sit-probe-tokens.py --side 1 accepted"
grep -q -- "--side 1, but its tokens have 1 side values" "$TMP/err" || fail "--side 1: $(cat "$TMP/err")"
python3 "$SRC/tools/sit-probe-tokens.py" --rd "$RD" --side 0 "$TMP/o" "$TMP/run_o" >/dev/null 2>"$TMP/err" &&
    fail "sit-probe-tokens.py --side with a probe accepted"
grep -q "give PROBE RUN, or --side K RUN" "$TMP/err" || fail "--side and PROBE: $(cat "$TMP/err")"
# Bad places and programs: one line naming them, exit 1, no Python traceback.
python3 "$SRC/tools/sit-probe-tokens.py" --rd "$TMP/no-such-rd" --side 0 "$TMP/run_o" >/dev/null 2>"$TMP/err" &&
    fail "sit-probe-tokens.py with a missing --rd accepted"
grep -q -- "--rd $TMP/no-such-rd: cannot run it" "$TMP/err" && ! grep -q Traceback "$TMP/err" ||
    fail "missing --rd: $(cat "$TMP/err")"
echo x >"$TMP/file"
python3 "$P" --task prev --users 2 --events 5 "$TMP/file" >/dev/null 2>"$TMP/err" && fail "a file as OUT accepted"
grep -q "$TMP/file: cannot make the folder" "$TMP/err" && ! grep -q Traceback "$TMP/err" ||
    fail "a file as OUT: $(cat "$TMP/err")"
python3 "$P" --task prev --users 2 --events 5 "$TMP/file/sub" >/dev/null 2>"$TMP/err" && fail "OUT under a file accepted"
grep -q "$TMP/file/sub: cannot make the folder: Not a directory" "$TMP/err" || fail "OUT under a file: $(cat "$TMP/err")"
echo "sit_probe: ok"
