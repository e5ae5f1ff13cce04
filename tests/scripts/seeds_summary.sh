#!/usr/bin/env bash
# seeds_summary.sh — the figures of tools/seeds.sh's summary against a hand computation, on run
# folders written here (each holds report.json, so no seed is run): every AUC as the mean ± the
# sample standard deviation over the seeds (n − 1, not n), the paired teacher gap and student
# gain, eta from the means (gain / gap), a window without an AUC left out of a seed's stream
# mean, and the stream mean carried at full precision into the summary: awk printed each seed's
# stream mean with its default OFMT (%.6g, six significant digits), so summary.csv's stream eta
# came from rounded means (0.500000 for 0.499800 below).
#
#   bash tests/scripts/seeds_summary.sh [path/to/recdistill (unused)]
set -u
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TMP="$(mktemp -d /tmp/rd_test_seeds_summary_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Seeds 1-3, holdout AUCs (teacher, student, student_raw):
#   1: 0.75 0.73 0.72    2: 0.76 0.735 0.72    3: 0.74 0.725 0.71
# teacher 0.75 ± 0.01 (the population std would be 0.0082), student 0.73 ± 0.005, student_raw
# 0.716667 ± 0.005774; gap 0.03 0.04 0.03 (+0.0333 ± 0.0058), gain 0.01 0.015 0.015
# (+0.0133 ± 0.0029), eta (0.73 − 0.716667) / (0.75 − 0.716667) = 0.4.
# Stream, every seed: teacher windows 0.7010004 and 0.7010004, student 0.7005 twice, student_raw
# 0.7 twice, and a third window without an AUC (one class): nan, left out. Gap 0.0010004, gain
# 0.0005, eta 0.49980008 (six significant digits gave the gap 0.001 and eta 0.5).
for s in 1 2 3; do
    d="$TMP/out/seed-$s"
    mkdir -p "$d" && echo '{}' >"$d/report.json"
    set -- $(sed -n "${s}p" <<'EOF'
0.75 0.73 0.72
0.76 0.735 0.72
0.74 0.725 0.71
EOF
)
    for j in teacher:$1:0.7010004 student:$2:0.7005 student_raw:$3:0.7; do
        IFS=: read -r name h st <<<"$j"
        {
            echo "phase,window,auc,gauc,logloss,calibration,samples,samples_per_s"
            echo "stream,0,$st,0.6,0.5,1,100,10"
            echo "stream,1,$st,0.6,0.5,1,100,10"
            echo "stream,2,nan,nan,0.5,nan,100,10"
            echo "holdout,-1,$h,0.6,0.5,1,100,10"
            echo "holdout_warm,-1,$h,0.6,0.5,1,100,10"
            echo "popularity_holdout,-1,0.6,0.6,0.5,1,100,nan"
            echo "popularity_warm,-1,0.6,0.6,0.5,1,100,nan"
        } >"$d/$name.metrics.csv"
    done
done
(cd "$SRC" && RD=/bin/true tools/seeds.sh -k 3 configs/demo.yaml "$TMP/out" >"$TMP/log" 2>&1) ||
    fail "seeds.sh: $(cat "$TMP/log")"
md="$TMP/out/summary.md" csv="$TMP/out/summary.csv"
for want in "| holdout | teacher | 0.7500 ± 0.0100 |" "| holdout | student | 0.7300 ± 0.0050 |" \
    "| holdout | student_raw | 0.7167 ± 0.0058 |" "| holdout | +0.0333 ± 0.0058 | +0.0133 ± 0.0029 | 0.400 |" \
    "| stream | teacher | 0.7010 ± 0.0000 |" "| stream | +0.0010 ± 0.0000 | +0.0005 ± 0.0000 | 0.500 |"; do
    grep -qF -- "$want" "$md" || fail "summary.md lacks '$want': $(cat "$md")"
done
for want in "holdout,teacher,0.750000,0.010000," "holdout,student_raw,0.716667,0.005774," \
    "holdout,gap,0.033333,0.005774,,,,,3" "holdout,gain,0.013333,0.002887,,,,,3" \
    "holdout,eta,0.400000,,,,,,3" "stream,teacher,0.701000,0.000000," \
    "stream,gap,0.001000,0.000000,,,,,3" "stream,eta,0.499800,,,,,,3"; do
    grep -qF -- "$want" "$csv" || fail "summary.csv lacks '$want': $(cat "$csv")"
done
echo "seeds_summary.sh: ok"
