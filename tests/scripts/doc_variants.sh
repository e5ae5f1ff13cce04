#!/usr/bin/env bash
# doc_variants.sh — documented variant commands still make valid configs. The docs record their
# experiments as tools/variant.sh, tools/ablations.sh and tools/replay-sweep.sh commands over the
# committed configs; a config check added later refused some of them (docs/iat.md's no-token
# teacher with history statistics: 'models.teacher.tokens.scheme=0' beside the token summaries
# the config gained; every `variant.sh -j teacher` of configs/ml100k.yaml: its distill: section
# with no student kept). Each command here is run with -c: the variant is written and checked with `recdistill
# config`, nothing trains. Also: -c runs nothing, and a variant the config refuses still fails.
#
#   bash tests/scripts/doc_variants.sh path/to/recdistill
set -u
RD="$(cd "$(dirname "${1:?usage: doc_variants.sh path/to/recdistill}")" && pwd)/$(basename "$1")"
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
if ! command -v python3 >/dev/null || ! python3 -c "import yaml" 2>/dev/null; then
    echo "python3 with PyYAML not found: skip"
    exit 77
fi
TMP="$(mktemp -d /tmp/rd_test_docvar_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
n=0
# check WHERE TOOL ARGS...: the documented command (OUTDIR a fresh folder) passes -c.
check() {
    local where=$1 tool=$2
    shift 2
    n=$((n + 1))
    (cd "$SRC" && RD="$RD" "tools/$tool" -c "$@") >"$TMP/out" 2>&1 ||
        fail "$where: tools/$tool $*: $(cat "$TMP/out")"
}

# docs/iat.md, "Ratings as token side values": (c) + side values, its residual, and (a').
check "iat.md side" variant.sh -k 10 configs/ml100k-iat.yaml "$TMP/side" 'tokens.side=[rating]'
check "iat.md side_residual" variant.sh -k 10 configs/ml100k-iat.yaml "$TMP/resid" \
    'tokens.side=[rating]' 'tokens.side_residual=true'
check "iat.md (a')" variant.sh -k 10 configs/ml100k-iat.yaml "$TMP/a1" 'models.teacher.tokens.scheme=0' \
    'models.teacher.tokens.stats=[]' 'models.teacher.seq.stats=[1, 4, 16, 64, 256]' \
    'models.teacher.seq.stats_feedback=rating' 'models.teacher.seq.stats_residual=true'
grep -q "scheme: 0" "$TMP/a1/config.yaml" || fail "(a'): the variant does not switch the tokens off"
# docs/iat.md, "Two-pass training of the source model": its four (c) variants and (b).
check "iat.md two_pass" variant.sh -k 5 configs/ml100k-iat.yaml "$TMP/tp" tokens.two_pass=true
grep -q "two_pass: true" "$TMP/tp/config.yaml" || fail "two_pass: the variant does not set it"
check "iat.md windows" variant.sh -k 5 configs/ml100k-iat.yaml "$TMP/tw" tokens.batch_order=windows
check "iat.md windows two_pass" variant.sh -k 5 configs/ml100k-iat.yaml "$TMP/twp" \
    tokens.batch_order=windows tokens.two_pass=true
check "iat.md (b) two_pass" variant.sh -k 5 configs/ml100k-iat.yaml "$TMP/tb" tokens.scheme=1 \
    models.teacher.tokens.scheme=1
# The section's pairing runs, and the ablations the IAT sections are built on.
check "iat.md pairing" ablations.sh -n 2 -k 1 -v "iat_none iat_user" configs/ml100k-iat.yaml "$TMP/p"
check "iat.md ml100k" ablations.sh -n 2 -k 2 -v "iat_none iat_temporal iat_user" \
    configs/ml100k-iat.yaml "$TMP/miat"
check "iat.md summaries" variant.sh -k 5 configs/synthetic-iat.yaml "$TMP/sum" \
    'models.teacher.tokens.stats=[1, 4, 16, 64, 256]'
check "iat.md windows" variant.sh -k 10 configs/ml100k-iat.yaml "$TMP/win" 'tokens.batch_order=windows'
check "iat.md series" ablations.sh -n 2 -k 10 -v iat_temporal configs/synthetic-iat-series.yaml \
    "$TMP/ser"
check "iat.md series oracle" variant.sh -k 10 "$TMP/ser/iat_temporal.yaml" "$TMP/or2" \
    data.synthetic.feedback=2 "tokens.side=[engagement]"
check "iat.md query (c)" variant.sh -k 5 configs/ml100k-iat.yaml "$TMP/qc" tokens.scheme=2 \
    models.teacher.tokens.scheme=2 models.teacher.tokens.query=request_seq
check "iat.md query (b)" variant.sh -k 5 configs/ml100k-iat.yaml "$TMP/qb" tokens.scheme=1 \
    models.teacher.tokens.scheme=1 models.teacher.tokens.query=request_seq
check "iat.md deeper token branch (c)" variant.sh -k 3 configs/ml100k-iat.yaml "$TMP/l2c" \
    models.teacher.tokens.layers=2
check "iat.md deeper token branch (b)" variant.sh -k 3 configs/ml100k-iat.yaml "$TMP/l2b" \
    models.teacher.tokens.layers=2 tokens.scheme=1 models.teacher.tokens.scheme=1
check "iat.md longer SIT window (c)" variant.sh -k 10 configs/ml100k-iat.yaml "$TMP/w64" \
    tokens.sit_layers=2 tokens.window=64
check "iat.md longer SIT window (b)" variant.sh -k 10 configs/ml100k-iat.yaml "$TMP/w64b" \
    tokens.scheme=1 models.teacher.tokens.scheme=1
check "iat.md tokens of dim 64 (c)" variant.sh -k 16 configs/ml100k-iat.yaml "$TMP/d64c" tokens.dim=64
check "iat.md tokens of dim 64 (b)" variant.sh -k 16 configs/ml100k-iat.yaml "$TMP/d64b" \
    tokens.dim=64 tokens.scheme=1 models.teacher.tokens.scheme=1
check "iat.md token values alone (c)" variant.sh -k 10 configs/ml100k-iat.yaml "$TMP/vc" \
    models.teacher.tokens.label=none 'models.teacher.tokens.stats=[]' 'tokens.side=[]' \
    tokens.side_residual=false
check "iat.md token values alone (b)" variant.sh -k 10 configs/ml100k-iat.yaml "$TMP/vb" \
    models.teacher.tokens.label=none 'models.teacher.tokens.stats=[]' 'tokens.side=[]' \
    tokens.side_residual=false tokens.scheme=1 models.teacher.tokens.scheme=1
check "iat.md token values alone (a)" ablations.sh -n 2 -s 1 -k 10 -v iat_none \
    configs/ml100k-iat.yaml "$TMP/va"

# docs/iat.md, "The whole pipeline": the token students, without history, and with the 16-item
# history in place of the tokens.
check "iat.md pipeline" variant.sh -k 3 configs/ml100k-iat-distill.yaml "$TMP/pipe"
check "iat.md pipeline, no history" variant.sh -k 3 configs/ml100k-iat-distill.yaml "$TMP/pnone" \
    models.student.tokens.scheme=0 models.student_raw.tokens.scheme=0
check "iat.md pipeline, item history" variant.sh -k 3 configs/ml100k-iat-distill.yaml "$TMP/phist" \
    models.student.tokens.scheme=0 models.student_raw.tokens.scheme=0 \
    'models.student.seq={kind: mean, length: 16, table: s_item}' \
    'models.student_raw.seq={kind: mean, length: 16, table: r_item}'
# docs/distillation.md and README.md: a teacher kept alone from configs/ml100k.yaml (its
# distill: section is dropped with the students), the layer-norm and seq.stats variants, and
# the one-epoch runs with the distillation of before start_epoch.
check "distillation.md teacher" variant.sh -j teacher -k 2 configs/ml100k.yaml "$TMP/t" \
    models.teacher.layer_norm=true
grep -q "alpha" "$TMP/t/config.yaml" && fail "-j teacher kept distill.alpha: $(grep -A3 distill "$TMP/t/config.yaml")"
check "distillation.md teacher stats" variant.sh -j teacher -k 2 configs/ml100k-stats.yaml \
    "$TMP/ts" models.teacher.dropout=0.1
check "distillation.md layer_norm" variant.sh -k 10 configs/demo.yaml "$TMP/ln" \
    models.student.layer_norm=true models.student_raw.layer_norm=true
check "distillation.md seq.stats" variant.sh -k 10 configs/ml100k.yaml "$TMP/ss" \
    "models.student.seq.stats=[1, 4, 16]" "models.student_raw.seq.stats=[1, 4, 16]"
check "distillation.md one epoch" variant.sh -k 3 configs/ml100k.yaml "$TMP/e1" train.epochs=1 \
    distill.alpha=1 distill.start_epoch=0
check "distillation.md ablations" ablations.sh -k 10 -v "no_aux mid_stream sampled sampled_raw" \
    configs/demo.yaml "$TMP/abl"
# README.md: the teacher's statistics taken away step by step (without, label statistics only,
# + mean rating), the demo's sampled students with cross-debias, and the one-tower ablation
# on MovieLens-100K.
check "README.md no stats" variant.sh -j teacher -k 2 configs/ml100k.yaml "$TMP/ns" \
    "models.teacher.seq.stats=[]" models.teacher.seq.stats_residual=false \
    'models.teacher.seq.stats_feedback=""'
check "README.md label stats" variant.sh -j teacher -k 2 configs/ml100k.yaml "$TMP/ls" \
    models.teacher.seq.stats_residual=false 'models.teacher.seq.stats_feedback=""'
check "README.md + mean rating" variant.sh -j teacher -k 2 configs/ml100k.yaml "$TMP/mr" \
    models.teacher.seq.stats_residual=false
check "README.md sampled" variant.sh -k 10 configs/demo.yaml "$TMP/neg" \
    "cluster.jobs.student.negatives={rate: 0.3}" "cluster.jobs.student_raw.negatives={rate: 0.3}" \
    distill.debias=true distill.debias_teacher=teacher
check "README.md no_aux" ablations.sh -k 10 -v no_aux configs/ml100k.yaml "$TMP/naux"
# docs/distillation.md: replay sweeps (replay-sweep.sh -c writes and checks each point's replay
# config, and with -k its undistilled twin's; the run folders are not read): the replay check
# on seed 1, the MovieLens-100K α / T points, the small student's search on ml100k-stats.yaml,
# and a sweep over a variant's config, as the docs chain them.
check "distillation.md replay" replay-sweep.sh -s 1 configs/ml100k.yaml RUN "$TMP/r1" 10:1 1:1
check "distillation.md replay ml100k" replay-sweep.sh -k 10 configs/ml100k.yaml OUT "$TMP/r2" \
    0.3:1 3:1 10:1 1:2 3:2 noaux:1:1 noaux:3:2 noaux:10:1 a=10,e=4 a=10,e=2
check "distillation.md small student" replay-sweep.sh -k 10 configs/ml100k-stats.yaml S "$TMP/r3" \
    noaux,a=10,mlp=8 mlp=8 noaux,a=3,mlp=8 noaux,a=10,mlp=16 noaux,a=10,t=2,mlp=8 \
    noaux,a=10,e=5,mlp=8 noaux,a=10,e=0,mlp=8 mlp=8,e=2,a=30 a=10,e=0 noaux,a=3
check "distillation.md stats_residual" variant.sh -k 10 configs/ml100k-stats.yaml "$TMP/sr" \
    models.student.seq.stats_residual=false models.student_raw.seq.stats_residual=false
check "distillation.md stats_residual replay" replay-sweep.sh -k 10 "$TMP/sr/config.yaml" "$TMP/sr" \
    "$TMP/sr/RS" a=10,e=4 a=3,e=4 noaux:3:1 a=30,e=4,t=2 notask,a=30,e=4 a=30,e=5

# -c runs nothing: no seed folder, no summary.
for f in "$TMP/side"/*; do
    [ "$f" = "$TMP/side/config.yaml" ] || fail "variant.sh -c ran something: $(ls "$TMP/side")"
done
[ -e "$TMP/abl/ablations.md" ] || [ -e "$TMP/abl/base" ] && fail "ablations.sh -c ran something"
[ -e "$TMP/r2/summary.md" ] || [ -e "$TMP/r2/seed-1" ] && fail "replay-sweep.sh -c ran something"
[ -e "$TMP/r2/noaux,raw.yaml" ] || fail "replay-sweep.sh -c -k did not check the twins: $(ls "$TMP/r2")"
# ... and still refuses what the config refuses: an explicitly set distill key with no student,
# and (a') without dropping the summaries, naming the key.
(cd "$SRC" && RD="$RD" tools/variant.sh -c -j teacher -k 2 configs/ml100k.yaml "$TMP/bad1" \
    distill.alpha=3) >"$TMP/out" 2>&1 && fail "-j teacher with distill.alpha=3 accepted"
grep -q "distill.alpha" "$TMP/out" || fail "-j teacher distill.alpha=3: $(cat "$TMP/out")"
(cd "$SRC" && RD="$RD" tools/variant.sh -c -k 1 configs/ml100k-iat.yaml "$TMP/bad2" \
    'models.teacher.tokens.scheme=0') >"$TMP/out" 2>&1 && fail "scheme=0 with tokens.stats accepted"
grep -q "tokens.stats" "$TMP/out" || fail "scheme=0 with tokens.stats: $(cat "$TMP/out")"
(cd "$SRC" && RD="$RD" tools/replay-sweep.sh -c -s 1 configs/ml100k.yaml RUN "$TMP/bad3" \
    a=10,e=9) >"$TMP/out" 2>&1 && fail "replay point e=9 of a 6-epoch config accepted"
grep -q "distill.start_epoch" "$TMP/out" || fail "replay point e=9: $(cat "$TMP/out")"
echo "doc_variants: $n documented commands make valid configs"
