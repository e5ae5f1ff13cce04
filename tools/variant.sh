#!/usr/bin/env bash
# variant.sh — one variant of a config over paired seeds: keep some of its jobs, override some
# keys, run the result with tools/seeds.sh (mean ± std per job; gap, gain and eta when the
# teacher, student and student_raw jobs are all kept).
#
#   tools/variant.sh [-c] [-j "JOB ..."] [-k SEEDS] [-s FIRST] CONFIG OUTDIR [KEY=VALUE ...]
#
# -c only writes and checks the variant (OUTDIR/config.yaml) and runs nothing: whether a
# documented command still makes a valid config (tests/scripts/doc_variants.sh).
# -j keeps only the named cluster jobs, in their order (default: all). A teacher kept alone from
# configs/ml100k.yaml is the pipeline's teacher: same job name, index and tables, so the same
# initial point and the same run (its targets go nowhere); with no distilled student kept, the
# distill: settings are dropped (target_log and replay aside), as nothing reads them.
# KEY is a dotted path into the YAML: a map key, a list index, or the name of a list element
# that has a `name` (models.teacher.seq.view, ps.tables.t_item.optimizer.lr, train.epochs);
# VALUE is YAML (din, 3, "[64, 32]", "{kind: mean, length: 16}"). A missing map key is added;
# a missing path, list index or name is an error.
# The variant is written to OUTDIR/config.yaml, checked with `recdistill config`, and run over
# seeds FIRST .. FIRST+SEEDS-1 (default 1..3) with the world size it needs:
#   tools/seeds.sh -n RANKS -s FIRST -k SEEDS OUTDIR/config.yaml OUTDIR
# SEEDS and FIRST are decimal (-s 010 is seed 10): SEEDS 1..100000, seeds 0..18446744073709551615.
# Needs python3 with PyYAML (apt-get install python3-yaml).
set -euo pipefail
JOBS="" K=3 FIRST=1 CHECK=0
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
# -h and --help (anywhere before a "--") print this text and exit 0.
for a in "$@"; do
    case $a in --) break ;; -h | --help) usage; exit 0 ;; esac
done
while getopts "cj:k:s:h" o; do
    case $o in
        c) CHECK=1 ;; j) JOBS=$OPTARG ;; k) K=$OPTARG ;; s) FIRST=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { usage >&2; exit 2; }
# num OPT VALUE MIN MAX: VALUE, a decimal whole number MIN..MAX, printed without leading zeros;
# a usage error (exit 2) otherwise (bash arithmetic would read 010 as octal and wrap a 20-digit
# number; as tools/seeds.sh, which checks them again). MIN is 0 or 1.
num() {
    local d="${2#"${2%%[!0]*}"}"
    d=${d:-0}
    if [[ ! $2 =~ ^[0-9]+$ ]] || [ "${#d}" -gt "${#4}" ] ||
        { [ "${#d}" -eq "${#4}" ] && [[ $d > $4 ]]; } || { [ "$3" = 1 ] && [ "$d" = 0 ]; }; then
        echo "variant.sh: $1 '$2': expected a whole number $3..$4" >&2
        exit 2
    fi
    printf '%s' "$d"
}
K=$(num -k "$K" 1 100000) || exit 2
FIRST=$(num -s "$FIRST" 0 18446744073709551615) || exit 2
LAST=$(printf '%u' "$((FIRST + K - 1))") # modulo 2^64, unsigned: the seeds are uint64
[[ ! $(printf '%020u' "$LAST") < $(printf '%020u' "$((FIRST))") ]] ||
    { echo "variant.sh: -s $FIRST -k $K: the last seed would pass 18446744073709551615" >&2; exit 2; }
CONFIG=$1 OUT=$2
# A relative path that starts with '-' is read as a path, not as an option (by mkdir, cd and
# recdistill: "mkdir: invalid option").
case $CONFIG in -*) CONFIG=./$CONFIG ;; esac
case $OUT in -*) OUT=./$OUT ;; esac
shift 2
[ -r "$CONFIG" ] || { echo "variant.sh: $CONFIG: cannot read the config" >&2; exit 2; }
RD=${RD:-build/recdistill}
HERE=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null && python3 -c "import yaml" 2>/dev/null ||
    { echo "variant.sh: needs python3 with PyYAML (apt-get install python3-yaml)" >&2; exit 2; }
[ -x "$RD" ] || { echo "variant.sh: $RD: no recdistill binary (build it, or set RD)" >&2; exit 2; }
# The config is checked first (a missing file or bad YAML is named with its line, not a Python
# traceback), and a failed run removes the OUTDIR it made while that is still empty.
"$RD" config "$CONFIG" >/dev/null || { echo "variant.sh: $CONFIG: not a valid config (see above)" >&2; exit 2; }
[ -e "$OUT" ] || trap 'rmdir "$OUT" 2>/dev/null || true' EXIT
mkdir -p "$OUT"

RANKS=$(python3 - "$CONFIG" "$OUT/config.yaml" "$JOBS" "$@" <<'PY'
import sys, yaml
src, dst, jobs = sys.argv[1:4]
c = yaml.safe_load(open(src))
def die(msg): # a bad -j or KEY=VALUE: a usage error
    print(f"variant.sh: {msg}", file=sys.stderr)
    sys.exit(2)
if jobs.split():
    have = {j["name"]: j for j in c["cluster"]["jobs"]}
    for n in jobs.split():
        if n not in have:
            die(f"-j: no job '{n}' in {src} (have: {' '.join(have)})")
    c["cluster"]["jobs"] = [j for j in c["cluster"]["jobs"] if j["name"] in jobs.split()]
    # With no distilled student kept, nothing reads distill: (the config refuses its keys set
    # then): keep only target_log and replay, which it allows, as tools/replay-sweep.sh does.
    if not any(j.get("distill") for j in c["cluster"]["jobs"]) and isinstance(c.get("distill"), dict):
        c["distill"] = {k: v for k, v in c["distill"].items() if k in ("target_log", "replay")}
for kv in sys.argv[4:]:
    if "=" not in kv:
        die(f"'{kv}': expected KEY=VALUE")
    key, val = kv.split("=", 1)
    try:
        val = yaml.safe_load(val)
    except yaml.YAMLError as e:
        die(f"'{kv}': the value is not YAML: {e}")
    node, parts = c, key.split(".")
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if p.isdigit() and int(p) < len(node):
                k = int(p)
            else:
                idx = [n for n, e in enumerate(node) if isinstance(e, dict) and e.get("name") == p]
                if not idx:
                    die(f"'{key}': no element '{p}' at {where}")
                k = idx[0]
        elif isinstance(node, dict):
            if p not in node and not last:
                die(f"'{key}': no key '{p}' at {where}")
            k = p
        else:
            die(f"'{key}': {'.'.join(parts[:i])} is a scalar")
        if last:
            node[k] = val
        else:
            node = node[k]
yaml.safe_dump(c, open(dst, "w"), default_flow_style=None, sort_keys=False)
cl = c["cluster"]
print(cl.get("ps_ranks", 1) + sum(j.get("ranks", 1) for j in cl["jobs"]))
PY
)
"$RD" config "$OUT/config.yaml" >/dev/null || { echo "variant.sh: $OUT/config.yaml is not valid" >&2; exit 2; }
[ "$CHECK" = 0 ] || { echo "variant.sh: $OUT/config.yaml is valid, $RANKS ranks (-c: not run)"; exit 0; }
echo "variant.sh: $OUT/config.yaml, $RANKS ranks, seeds $FIRST..$LAST"
RD=$RD "$HERE/seeds.sh" -n "$RANKS" -s "$FIRST" -k "$K" "$OUT/config.yaml" "$OUT"
