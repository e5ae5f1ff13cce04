#!/usr/bin/env bash
# ablations.sh — the distillation ablations of one config, each over paired seeds (tools/seeds.sh):
#   base          the config as it is
#   no_aux        no auxiliary tower: the students have one tower and the distillation term is
#                 added to its loss (distill.aux_tower false, models' two_towers false)
#   mid_stream    targets used only from the middle stream window on (distill.start_window K/2)
#   sampled       negatives kept at 0.3 (data.negatives.rate), cross-debias on
#   sampled_raw   the same sampled data, cross-debias off (the teacher's logits taken as they are)
#   alpha3 / t2   distill.alpha 3; distill.temperature 2
# and the IAT comparison (issue 5) for a config whose models read tokens:
#   iat_none      no token branch (the hand-crafted item-ID sequence only)
#   iat_temporal  temporal-order tokens (tokens.scheme 1, every reader too)
#   iat_user      user-order tokens (tokens.scheme 2)
#
#   tools/ablations.sh [-c] [-n RANKS] [-s FIRST] [-k SEEDS] [-v "VARIANT ..."] [-d DATASEED] CONFIG OUTDIR
#
# -c only writes and checks the variant configs and runs nothing (tests/scripts/doc_variants.sh).
# Seeds FIRST .. FIRST+SEEDS-1 (default 1..3), as tools/seeds.sh runs them; a later -s extends a
# sweep with new seeds in another OUTDIR. RANKS defaults to the config's world size (`recdistill config --layout`).
#
# -d fixes data.synthetic.seed in every variant, so that on synthetic data only the training
# seed varies between the paired seeds (without it the generator follows run.seed too).
# Numbers are decimal (-s 010 is seed 10). -v takes at least one of the names above;
# iat_temporal and iat_user need a config with a tokens: section. Bad values are exit 2.
#
# Variant configs are written to OUTDIR/<variant>.yaml (python3 with PyYAML edits them; Debian:
# apt-get install python3-yaml) and checked with `recdistill config`; each variant's runs and
# summary go to OUTDIR/<variant>/ (seeds.sh resumes what is done). OUTDIR/ablations.md collects
# the holdout η, teacher gap and student gain of every variant.
set -euo pipefail
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }
# -h and --help (anywhere before a "--") print this text and exit 0.
for a in "$@"; do
    case $a in --) break ;; -h | --help) usage; exit 0 ;; esac
done
N= S=1 K=3 VARIANTS="base no_aux mid_stream sampled sampled_raw alpha3 t2" DSEED=0 CHECK=0
while getopts "cn:s:k:v:d:h" o; do
    case $o in
        c) CHECK=1 ;; n) N=$OPTARG ;; s) S=$OPTARG ;; k) K=$OPTARG ;; v) VARIANTS=$OPTARG ;; d) DSEED=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { usage >&2; exit 2; }
# num OPT VALUE MIN MAX: VALUE, a decimal whole number MIN..MAX, printed without leading zeros;
# a usage error (exit 2) otherwise (bash arithmetic would read 010 as octal and wrap a 20-digit
# number; as tools/seeds.sh, which checks -n, -s and -k again). MIN is 0 or 1.
num() {
    local d="${2#"${2%%[!0]*}"}"
    d=${d:-0}
    if [[ ! $2 =~ ^[0-9]+$ ]] || [ "${#d}" -gt "${#4}" ] ||
        { [ "${#d}" -eq "${#4}" ] && [[ $d > $4 ]]; } || { [ "$3" = 1 ] && [ "$d" = 0 ]; }; then
        echo "ablations.sh: $1 '$2': expected a whole number $3..$4" >&2
        exit 2
    fi
    printf '%s' "$d"
}
[ -z "$N" ] || N=$(num -n "$N" 1 4096) || exit 2
S=$(num -s "$S" 1 18446744073709551615) || exit 2
K=$(num -k "$K" 1 100000) || exit 2
DSEED=$(num -d "$DSEED" 0 18446744073709551615) || exit 2
LAST=$(printf '%u' "$((S + K - 1))") # modulo 2^64, unsigned: the seeds are uint64
[[ ! $(printf '%020u' "$LAST") < $(printf '%020u' "$((S))") ]] ||
    { echo "ablations.sh: -s $S -k $K: the last seed would pass 18446744073709551615" >&2; exit 2; }
# -v: at least one variant, each a known one (an empty list ran nothing and printed an empty
# table with exit 0; an unknown name failed after the variants before it were written).
KNOWN="base no_aux mid_stream sampled sampled_raw alpha3 t2 iat_none iat_temporal iat_user"
[ -n "${VARIANTS//[[:space:]]/}" ] || { echo "ablations.sh: -v: no variant given (known: $KNOWN)" >&2; exit 2; }
for v in $VARIANTS; do
    case " $KNOWN " in
        *" $v "*) ;;
        *) echo "ablations.sh: -v: unknown variant '$v' (known: $KNOWN)" >&2; exit 2 ;;
    esac
done
CONFIG=$1 OUT=$2
# A relative path that starts with '-' is read as a path, not as an option (by mkdir, cd and
# recdistill: "mkdir: invalid option").
case $CONFIG in -*) CONFIG=./$CONFIG ;; esac
case $OUT in -*) OUT=./$OUT ;; esac
RD=${RD:-build/recdistill}
HERE=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null && python3 -c "import yaml" 2>/dev/null ||
    { echo "ablations.sh: needs python3 with PyYAML (apt-get install python3-yaml)" >&2; exit 2; }
[ -x "$RD" ] || { echo "ablations.sh: $RD: no recdistill binary (build it, or set RD)" >&2; exit 2; }
# The config is checked first (a missing file or bad YAML is named with its line, not a Python
# traceback), and a failed run removes the OUTDIR it made while that is still empty.
"$RD" config "$CONFIG" >/dev/null || { echo "ablations.sh: $CONFIG: not a valid config (see above)" >&2; exit 2; }
# iat_temporal and iat_user set tokens.scheme: a config without a tokens: section cannot have
# them (it was a Python KeyError). Checked before OUTDIR is made.
for v in $VARIANTS; do
    case $v in iat_temporal | iat_user) ;; *) continue ;; esac
    python3 -c "import sys, yaml
sys.exit(0 if isinstance((yaml.safe_load(open(sys.argv[1])) or {}).get('tokens'), dict) else 1)" "$CONFIG" ||
        { echo "ablations.sh: variant $v: $CONFIG has no tokens: section (the IAT variants compare its token schemes; iat_none needs none)" >&2; exit 2; }
done
[ -e "$OUT" ] || trap 'rmdir "$OUT" 2>/dev/null || true' EXIT
mkdir -p "$OUT"

for v in $VARIANTS; do
    python3 - "$CONFIG" "$OUT/$v.yaml" "$v" "$DSEED" <<'PY'
import sys, yaml
src, dst, v, dseed = sys.argv[1:5]
c = yaml.safe_load(open(src))
if int(dseed) > 0:
    c.setdefault("data", {}).setdefault("synthetic", {})["seed"] = int(dseed)
d = c.setdefault("distill", {}) or {}
c["distill"] = d
students = [j["model"] for j in c["cluster"]["jobs"] if j.get("role") == "student"]
K = c.get("data", {}).get("split", {}).get("stream_windows", 5)
if v == "base":
    pass
elif v == "no_aux":
    d["aux_tower"] = False
    for m in c["models"]:
        if m["name"] in students:
            m["two_towers"] = False
elif v == "mid_stream":
    d["start_window"] = K // 2
    d.pop("start_epoch", None)  # a batch epoch to start from means nothing once the stream starts it
elif v in ("sampled", "sampled_raw"):
    c["data"]["negatives"] = {"rate": 0.3}
    d["debias"] = v == "sampled"
elif v in ("iat_none", "iat_temporal", "iat_user"):
    scheme = {"iat_none": 0, "iat_temporal": 1, "iat_user": 2}[v]
    for m in c["models"]:
        if (m.get("tokens") or {}).get("scheme", 0) > 0:
            if scheme:
                m["tokens"]["scheme"] = scheme
            else:
                del m["tokens"]
    if scheme:
        c["tokens"]["scheme"] = scheme
    else:
        c.pop("tokens", None)
elif v == "alpha3":
    d["alpha"] = 3.0
elif v == "t2":
    d["temperature"] = 2.0
else:  # the list was checked above
    sys.exit("ablations.sh: unknown variant '%s'" % v)
# run.name holds at most 31 bytes (a path component): the config's name is shortened so that
# "-<variant>" always fits (the name only labels the run: runs/<name>, the report's title).
base = str(c.get("run", {}).get("name", "run"))[: 31 - len(v) - 1]
c.setdefault("run", {})["name"] = "%s-%s" % (base, v)
c["run"].pop("out_dir", None)
yaml.safe_dump(c, open(dst, "w"), sort_keys=False)
PY
    "$RD" config "$OUT/$v.yaml" >/dev/null || { echo "ablations.sh: variant $v is not a valid config" >&2; exit 1; }
done
[ "$CHECK" = 0 ] || { echo "ablations.sh: $VARIANTS: valid configs in $OUT (-c: not run)"; exit 0; }

for v in $VARIANTS; do
    echo "== $v"
    RD=$RD "$HERE/seeds.sh" ${N:+-n "$N"} -s "$S" -k "$K" "$OUT/$v.yaml" "$OUT/$v" >/dev/null
done

{
    echo "| variant | teacher AUC | teacher warm AUC | teacher gap | student gain | η (holdout) | η (warm) | η (stream) |"
    echo "|---|---|---|---|---|---|---|---|"
    for v in $VARIANTS; do
        awk -F, -v v="$v" -v K="$K" '
            # n, the last field of the summary.csv of seeds.sh, is how many seeds have the value:
            # none is undefined (it printed "0.0000 (n=1)"), one has no spread (an empty std), and
            # fewer than K are said.
            function pm(fmt, m, sd, n) { if (n == 0) return "undefined"
                if (sd == "") return sprintf(fmt " (n=1%s)", m, n < K ? " of " K : "")
                return sprintf(fmt " ± %.4f", m, sd) (n < K ? sprintf(" (%d of %d seeds)", n, K) : "") }
            $2 == "gap" && $1 == "holdout" { gap = pm("%+.4f", $3, $4, $NF) }
            $2 == "gain" && $1 == "holdout" { gain = pm("%+.4f", $3, $4, $NF) }
            $2 == "eta" { e[$1] = $3 == "" ? "undef." : sprintf("%.3f", $3) }
            $1 == "holdout" && $2 == "teacher" { t = pm("%.4f", $3, $4, $NF) }
            $1 == "warm" && $2 == "teacher" { w = pm("%.4f", $3, $4, $NF) }
            END { printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", v, t, w, gap, gain,
                         e["holdout"], e["warm"], e["stream"] }' \
            "$OUT/$v/summary.csv"
    done
} >"$OUT/ablations.md"
cat "$OUT/ablations.md"
