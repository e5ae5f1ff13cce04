#!/usr/bin/env bash
# seeds.sh — run one config over paired seeds and summarise: every AUC as mean ± std over the
# seeds, the teacher gap (teacher − student_raw, paired per seed) with its spread, the student's
# gain, and eta from the means — for the holdout, its warm slice and the stream windows' mean.
# An eta whose paired gap is not larger than its standard deviation over the seeds is marked
# "(gap within its seed spread: not meaningful)" in summary.md (summary.csv keeps the number).
#
#   tools/seeds.sh [-n RANKS] [-s FIRST] [-k COUNT] [-t TEACHER] [-d STUDENT] [-r RAW] CONFIG OUTDIR
#
# Seeds FIRST .. FIRST+COUNT-1 (default 1..10) run one after the other as
#   mpiexec.mpich -n RANKS build/recdistill train CONFIG --seed S --out OUTDIR/seed-S
# (RANKS default: the config's world size, from `recdistill config --layout`; RD=path/to/recdistill
# overrides build/recdistill). A seed whose run folder
# already holds report.json is not run again, so an interrupted sweep resumes. The summary is
# printed and written to OUTDIR/summary.md and OUTDIR/summary.csv; it reads the runs'
# <job>.metrics.csv files (awk only). Job names default to teacher, student, student_raw; jobs
# the config does not have are left out (and then eta too).
# RANKS, FIRST and COUNT are decimal (-s 010 is seed 10): RANKS 1..4096, seeds
# 0..18446744073709551615 (run.seed is a uint64), COUNT 1..100000; anything else is exit 2.
set -euo pipefail
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
# -h and --help (anywhere before a "--") print this text and exit 0.
for a in "$@"; do
    case $a in --) break ;; -h | --help) usage; exit 0 ;; esac
done
N= FIRST=1 COUNT=10 T=teacher S=student R=student_raw
while getopts "n:s:k:t:d:r:h" o; do
    case $o in
        n) N=$OPTARG ;; s) FIRST=$OPTARG ;; k) COUNT=$OPTARG ;;
        t) T=$OPTARG ;; d) S=$OPTARG ;; r) R=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { usage >&2; exit 2; }
CONFIG=$1 OUT=$2
# A relative path that starts with '-' is read as a path, not as an option (by mkdir, cd and
# recdistill: "mkdir: invalid option").
case $CONFIG in -*) CONFIG=./$CONFIG ;; esac
case $OUT in -*) OUT=./$OUT ;; esac
RD=${RD:-build/recdistill}
# num OPT VALUE MIN MAX: VALUE, a decimal whole number MIN..MAX, printed without leading zeros;
# a usage error (exit 2) otherwise. Bash arithmetic would read 010 as octal 8, fail on 08, and
# wrap a 20-digit number silently, so the digits are compared as text first (as rd_is_seed in
# slurm/common.sh does). MIN is 0 or 1; MAX is at most 18446744073709551615 (a uint64 seed).
num() {
    local d="${2#"${2%%[!0]*}"}"
    d=${d:-0}
    if [[ ! $2 =~ ^[0-9]+$ ]] || [ "${#d}" -gt "${#4}" ] ||
        { [ "${#d}" -eq "${#4}" ] && [[ $d > $4 ]]; } || { [ "$3" = 1 ] && [ "$d" = 0 ]; }; then
        echo "seeds.sh: $1 '$2': expected a whole number $3..$4" >&2
        exit 2
    fi
    printf '%s' "$d"
}
[ -z "$N" ] || N=$(num -n "$N" 1 4096) || exit 2
FIRST=$(num -s "$FIRST" 0 18446744073709551615) || exit 2
COUNT=$(num -k "$COUNT" 0 100000) || exit 2
[ "$COUNT" -ge 1 ] || { echo "seeds.sh: -k $COUNT: at least one seed" >&2; exit 2; }
# The seeds are uint64 (run.seed): bash's signed 64-bit sums are taken modulo 2^64 and printed
# unsigned, and a sweep that would run past 18446744073709551615 is refused.
LAST=$(printf '%u' "$((FIRST + COUNT - 1))")
[[ ! $(printf '%020u' "$LAST") < $(printf '%020u' "$((FIRST))") ]] ||
    { echo "seeds.sh: -s $FIRST -k $COUNT: the last seed would pass 18446744073709551615" >&2; exit 2; }
[ -r "$CONFIG" ] || { echo "seeds.sh: $CONFIG: cannot read the config" >&2; exit 2; }
[ -x "$RD" ] || { echo "seeds.sh: $RD: not built (cmake --build build)" >&2; exit 2; }
# Without -n, the launch the config itself needs (a fixed 4 failed every seed of any other layout:
# "the launch has 4 ranks but the config needs 6"), read when a seed is to run: a sweep whose
# seeds are all done only summarises them.
world_size() {
    [ -z "$N" ] || return 0
    N=$("$RD" config --layout "$CONFIG" 2>/dev/null | sed -n 's/^world_size=//p') || N=
    [[ $N =~ ^[1-9][0-9]*$ ]] || {
        echo "seeds.sh: $CONFIG: cannot read its world size (recdistill config --layout $CONFIG:" \
            "$("$RD" config --layout "$CONFIG" 2>&1 | tail -1)); give -n RANKS" >&2
        exit 2
    }
}
for ((i = 0; i < COUNT; i++)); do # a seed to run: its launch size first, before OUTDIR is made
    printf -v s '%u' "$((FIRST + i))"
    [ -s "$OUT/seed-$s/report.json" ] || { world_size; break; }
done
mkdir -p "$OUT"
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

for ((i = 0; i < COUNT; i++)); do
    printf -v s '%u' "$((FIRST + i))"
    d="$OUT/seed-$s"
    if [ -s "$d/report.json" ]; then
        echo "seed $s: done before ($d)"
        continue
    fi
    echo "seed $s: running"
    t0=$(date +%s)
    if ! mpiexec.mpich -n "$N" "$RD" train "$CONFIG" --seed "$s" --out "$d" >"$OUT/seed-$s.log" 2>&1; then
        echo "seeds.sh: seed $s failed; see $OUT/seed-$s.log" >&2
        tail -5 "$OUT/seed-$s.log" >&2
        exit 1
    fi
    echo "seed $s: $(($(date +%s) - t0)) s"
done

# One line per (seed, job, slice): seed job slice auc gauc logloss ("nan" where undefined: a
# slice or window with one class has no AUC; the stream mean skips such windows per metric, as
# report.json does). <job>.metrics.csv, or <job>.metrics.jsonl (output.metrics_format: jsonl).
rows="$OUT/.rows"
: >"$rows"
for ((i = 0; i < COUNT; i++)); do
    printf -v s '%u' "$((FIRST + i))"
    for job in "$T" "$S" "$R"; do
        f="$OUT/seed-$s/$job.metrics.csv"
        [ -r "$f" ] || f="$OUT/seed-$s/$job.metrics.jsonl"
        [ -r "$f" ] || continue # a config without that job (e.g. a teacher alone)
        awk -F, -v s="$s" -v j="$job" -v jsonl="${f##*.}" '
            function ok(v) { return v != "" && tolower(v) !~ /nan|inf|null/ }
            function jv(k,   r) { # the value of key k of a JSON line, "nan" for null
                if (!match($0, "\"" k "\": *[^,}]*")) return "nan"
                r = substr($0, RSTART, RLENGTH); sub(/^[^:]*: */, "", r); gsub(/"/, "", r)
                return r == "null" ? "nan" : r }
            jsonl == "jsonl" { ph = jv("phase"); au = jv("auc"); ga = jv("gauc"); lo = jv("logloss") }
            jsonl != "jsonl" { ph = $1; au = $3; ga = $4; lo = $5 }
            ph == "holdout" { print s, j, "holdout", au, ga, lo }
            ph == "holdout_warm" { print s, j, "warm", au, ga, lo }
            ph == "stream" { if (ok(au)) { a += au; na++ }; if (ok(ga)) { g += ga; ng++ }
                             if (ok(lo)) { l += lo; nl++ } }
            # The stream means in full (print would round them to OFMT, six significant
            # digits: a paired gap of 0.0010004 became 0.001 and its eta 0.5 for 0.4998).
            function full(t, n) { return n ? sprintf("%.17g", t / n) : "nan" }
            END { if (na + ng + nl) print s, j, "stream", full(a, na), full(g, ng), full(l, nl) }' "$f" >>"$rows"
    done
done
[ -s "$rows" ] || {
    echo "seeds.sh: no metrics in $OUT/seed-*/ for jobs $T, $S, $R (-t/-d/-r name the jobs)" >&2
    rm -f "$rows"
    exit 1
}

# The output paths reach awk through the environment: -v takes escapes, so an OUTDIR with a
# backslash ("runs\t1") named another file (a tab in it), which awk could not open.
RD_MD="$OUT/summary.md" RD_CSV="$OUT/summary.csv" awk -v T="$T" -v S="$S" -v R="$R" -v K="$COUNT" '
    BEGIN { md = ENVIRON["RD_MD"]; csv = ENVIRON["RD_CSV"] }
    function mean(x, n,   i, t) { t = 0; for (i = 1; i <= n; i++) t += x[i]; return t / n }
    function sd(x, n,   i, m, t) { if (n < 2) return 0; m = mean(x, n); t = 0
        for (i = 1; i <= n; i++) t += (x[i] - m) ^ 2; return sqrt(t / (n - 1)) }
    # One seed has no spread: its value is printed with (n=1), not as "± 0.0000" (a measured zero
    # spread), and its std in summary.csv is empty. A value over fewer than the K seeds (undefined
    # on the others) says so: it read as a mean over all K.
    function of(n) { return n < K ? sprintf(" of %d", K) : "" }
    function ms(x, n) { if (n > 1) return sprintf("%.4f ± %.4f", mean(x, n), sd(x, n)) \
                                          (n < K ? sprintf(" (%d of %d seeds)", n, K) : "")
        return n ? sprintf("%.4f (n=1%s)", mean(x, n), of(n)) : "undefined" }
    function mc(x, n) { if (n > 1) return sprintf("%.6f,%.6f", mean(x, n), sd(x, n))
        return n ? sprintf("%.6f,", mean(x, n)) : "," }
    function pm(x, n) { if (n > 1) return sprintf("%+.4f ± %.4f", mean(x, n), sd(x, n)) \
                                          (n < K ? sprintf(" (%d of %d seeds)", n, K) : "")
        return n ? sprintf("%+.4f (n=1%s)", mean(x, n), of(n)) : "undefined" }
    function ok(v) { return v != "" && tolower(v) !~ /nan|inf|null/ }
    # Each mean is over the seeds where the value is defined (n beside it in summary.csv); the
    # paired differences over the seeds where both are.
    { key = $2 SUBSEP $3; seeds[$1] = 1; seen[$2] = 1
      if (ok($4)) { i = ++cnt[key]; auc[key, i] = $4; byseed[$1, $2, $3] = $4; has[$1, $2, $3] = 1 }
      if (ok($5)) { i = ++cg[key]; gauc[key, i] = $5 }
      if (ok($6)) { i = ++cl[key]; ll[key, i] = $6 } }
    END {
        ns = 0; for (s in seeds) ns++
        printf "%d paired seeds\n\n", ns > md
        printf "| slice | job | AUC | GAUC | logloss |\n|---|---|---|---|---|\n" >> md
        print "slice,job,auc_mean,auc_std,gauc_mean,gauc_std,logloss_mean,logloss_std,n" > csv
        split("holdout warm stream", sl, " "); split(T " " S " " R, jb, " ")
        for (a = 1; a <= 3; a++) for (b = 1; b <= 3; b++) {
            key = jb[b] SUBSEP sl[a]; n = cnt[key]; ny = cg[key]; nz = cl[key]
            if (!seen[jb[b]]) { missing = 1; continue } # a config without that job
            for (i = 1; i <= n; i++) x[i] = auc[key, i]
            for (i = 1; i <= ny; i++) y[i] = gauc[key, i]
            for (i = 1; i <= nz; i++) z[i] = ll[key, i]
            if (n) m[a, b] = mean(x, n); else undef[a] = 1
            printf "| %s | %s | %s | %s | %s |\n", sl[a], jb[b], ms(x, n), ms(y, ny), ms(z, nz) >> md
            printf "%s,%s,%s,%s,%s,%d\n", sl[a], jb[b], mc(x, n), mc(y, ny), mc(z, nz), n >> csv
        }
        if (missing) exit
        printf "\n| slice | teacher gap (T − raw) | student gain (S − raw) | eta (from the means) |\n|---|---|---|---|\n" >> md
        for (a = 1; a <= 3; a++) {
            n = 0; nh = 0
            for (s in seeds) {
                if (!has[s, T, sl[a]] || !has[s, R, sl[a]]) continue
                g[++n] = byseed[s, T, sl[a]] - byseed[s, R, sl[a]]
                if (has[s, S, sl[a]]) h[++nh] = byseed[s, S, sl[a]] - byseed[s, R, sl[a]] }
            if (undef[a]) { why = "undefined (no AUC on this slice)"; e = "" }
            else { gap = m[a, 1] - m[a, 3]; gain = m[a, 2] - m[a, 3]
                   why = gap > 0 ? sprintf("%.3f", gain / gap) : "undefined (gap <= 0)"
                   # eta is a ratio of two small differences: it means something only when the
                   # paired gap stands beyond its spread over the seeds (as issue 6 reads it).
                   if (gap > 0 && n >= 2 && mean(g, n) <= sd(g, n))
                       why = why " (gap within its seed spread: not meaningful)"
                   e = gap > 0 ? sprintf("%.6f", gain / gap) : "" }
            printf "| %s | %s | %s | %s |\n", sl[a], pm(g, n), pm(h, nh), why >> md
            printf "%s,gap,%s,,,,,%d\n%s,gain,%s,,,,,%d\n%s,eta,%s,,,,,,%d\n", sl[a], mc(g, n), n,
                   sl[a], mc(h, nh), nh, sl[a], e, n >> csv
        }
    }' "$rows"
rm -f "$rows"
cat "$OUT/summary.md"
