#!/usr/bin/env bash
# sweep.sh — a scaling sweep: one multi-node training run (slurm/train-multinode.sbatch) per
# point of nodes x ranks per role x PS ranks x batch size, all submitted at once; waits for them and
# gathers every run's report.json into one CSV, a text table and PNG plots of throughput and of
# communication per sample against world size (drawn by `recdistill plot`).
#
#   slurm/sweep.sh SWEEP.spec           # on the login node, or inside a job that drives it
#   slurm/sweep.sh --gather OUT_DIR     # gather again (e.g. after a timeout) without submitting
#
# SWEEP.spec: `key: values` lines, '#' starts a comment. Relative paths are relative to the
# directory sweep.sh runs in (where the runs' relative paths resolve too).
#   config: configs/demo.yaml   # required: the base config
#   nodes:  1 2 4               # nodes per run (RD_NODES of train-multinode); default 2
#   ranks:  1 2 4               # ranks of EVERY worker job (cluster.jobs[].ranks); default: as is
#   teacher_ranks: 1 2          # or per role: ranks of every teacher job ...
#   student_ranks: 1 4          # ... and of every student job (crossed); not with `ranks`
#   ps:     1 2                 # cluster.ps_ranks; default: as is
#   points: 2:1:1 4:3:1 8:6:2   # instead of the crossed ranks/ps keys: zipped teacher ranks :
#                               # student ranks : PS ranks per point (weak scaling: grow them
#                               # together); '-' = as in the config
#   batch:  256 1024            # train.batch_size; default: as is
#   out:    runs/sweep-demo     # sweep folder; default runs/sweep-<spec file name>
#   timeout: 3600               # seconds to wait for all runs; default 0 = no limit
# A point whose nodes exceed its world size is skipped (said on stderr).
#
# The sweep folder gets: configs/<point>.yaml (the derived configs), data/ (the dataset, prepared
# once and shared by every point), <point>/ (each run folder), runs.tsv (point, job id, sizes),
# sweep.csv (one row per point: the sizes, Slurm state and exit code, and every number of its
# report.json, nested keys joined with '.', lists left out; ranks_per_job lists the jobs' ranks in
# config order, "2/1/1"; series names the point's line in the plots, "nodes=2" or, when points of
# one node count share a world size, "nodes=2 batch=256" and so on), sweep.txt (the table),
# sweep.png (total samples/s against world size, a line per series), sweep-comm.png (bytes per
# trained sample) and sweep.gp (the same throughput plot as a gnuplot script, for those who
# restyle it).
#
# Exit status: 0 every run completed with a report; 1 a bad spec/config, a failed submission or
# a failed run (the CSV is still written for the others); 2 usage error.
set -euo pipefail

WAIT_MAX_S=30 # ADAPT: longest sleep between two squeue polls (seconds)

. "$(dirname "$0")/common.sh"
usage() {
    echo "usage: slurm/sweep.sh [-h|--help] SWEEP.spec | slurm/sweep.sh --gather OUT_DIR"
}
case "${1:-}" in
    -h | --help)
        usage
        echo "One multi-node run per point of the spec, then one CSV/table/plot (docs/slurm.md)."
        exit 0
        ;;
    --gather) [ $# -eq 2 ] || { usage >&2; exit 2; } ;;
    "" | -*) usage >&2; exit 2 ;;
    *) [ $# -eq 1 ] || { usage >&2; exit 2; } ;;
esac
rd_init "$0"
command -v python3 >/dev/null || rd_die "python3 is needed to gather report.json files"

# ---------------------------------------------------------------------------------------------
# Gather: runs.tsv + every report.json -> sweep.csv, sweep.txt, sweep.png

gather() {
    local out="$1" failed=0
    [ -f "$out/runs.tsv" ] || rd_die "$out/runs.tsv not found: not a sweep folder"
    # Slurm's view of each job: state and exit code (scontrol while the job is remembered,
    # MinJobAge; sacct when accounting is on). A job Slurm has forgotten keeps the state an
    # earlier gather recorded (states.tsv); with none recorded, a run that left its report.json
    # counts as COMPLETED (exit code unknown), since train writes the report last.
    declare -A old_state=() old_code=()
    local point jobid rest state code line n run_dir s c lines
    if [ -f "$out/states.tsv" ]; then
        while IFS=$'\t' read -r point s c; do
            [ "$s" = UNKNOWN ] || { old_state["$point"]="$s"; old_code["$point"]="$c"; }
        done <"$out/states.tsv"
    fi
    : >"$out/states.tsv.new"
    while IFS=$'\t' read -r point jobid n rest; do
        [ "$point" = point ] && continue
        state='' code=''
        if line="$(scontrol show job -o "$jobid" 2>/dev/null)" && [ -n "$line" ]; then
            state="$(sed -n 's/.*JobState=\([^ ]*\).*/\1/p' <<<"$line")"
            code="$(sed -n 's/.* ExitCode=\([^ ]*\).*/\1/p' <<<"$line")"
        elif line="$(sacct -n -P -X -j "$jobid" -o State,ExitCode 2>/dev/null | head -n 1)" &&
            [ -n "$line" ]; then
            state="${line%%|*}" code="${line#*|}"
        fi
        if [ -z "$state" ] && [ -n "${old_state[$point]:-}" ]; then
            state="${old_state[$point]}" code="${old_code[$point]}"
        elif [ -z "$state" ]; then
            run_dir="${rest##*$'\t'}"
            if [ -s "$run_dir/report.json" ]; then
                state=COMPLETED code=
                rd_note "$point: job $jobid is no longer known to Slurm; COMPLETED from its report.json"
            fi
        fi
        printf '%s\t%s\t%s\n' "$point" "${state:-UNKNOWN}" "${code:-}" >>"$out/states.tsv.new"
    done <"$out/runs.tsv"
    mv "$out/states.tsv.new" "$out/states.tsv"

    python3 - "$out" <<'PY' || failed=1
import csv, json, math, os, sys
out = sys.argv[1]
runs = list(csv.DictReader(open(os.path.join(out, "runs.tsv")), delimiter="\t"))
states = {}
for line in open(os.path.join(out, "states.tsv")):
    p, s, c = (line.rstrip("\n").split("\t") + ["", ""])[:3]
    states[p] = (s, c)

def flatten(prefix, v, row):
    if isinstance(v, dict):
        for k, x in v.items():
            flatten(prefix + "." + k if prefix else k, x, row)
    elif isinstance(v, bool):
        row[prefix] = int(v)
    elif isinstance(v, (int, float)):
        row[prefix] = v
    # strings and lists are left out: one row per run, one number per column

fixed = ["point", "jobid", "state", "exit_code", "nodes", "ranks_per_job", "ps_ranks",
         "batch_size", "world_size"]
rows, extra, bad = [], [], 0
for r in runs:
    row = {k: r.get(k, "") for k in fixed}
    row["state"], row["exit_code"] = states.get(r["point"], ("UNKNOWN", ""))
    rep = os.path.join(r["run_dir"], "report.json")
    try:
        flatten("", json.load(open(rep)), row)
    except (OSError, ValueError) as e:
        print(f"sweep: {r['point']}: no report ({rep}: {e})", file=sys.stderr)
        bad += 1
    if row["state"] != "COMPLETED" or row["exit_code"] not in ("0:0", ""):
        print(f"sweep: {r['point']}: job {row['jobid']} {row['state']} exit {row['exit_code']}"
              f" (log: slurm-rd-train-multi-{row['jobid']}.out)", file=sys.stderr)
        bad += 1
    # Sum of the jobs' throughputs: the figure a weak-scaling sweep plots.
    tp = [v for k, v in row.items() if k.startswith("jobs.") and k.endswith(".samples_per_s")]
    if tp:
        row["total_samples_per_s"] = sum(tp)
    for k in row:
        if k not in fixed and k not in extra:
            extra.append(k)
    rows.append(row)

# The plots' lines: one per node count, as long as no two points of one node count share a world
# size. A batch (or PS count, or rank split) crossed with the ranks gives points that do: one
# line per node count then zigzagged between them at one x, mixing batch sizes into one curve.
# So the sizes that tell such points apart are added to the line's key, in this order, until
# every (line, world size) is one point (nodes, batch, PS ranks and ranks per job name a point).
line_keys, short = ["nodes"], {"batch_size": "batch", "ps_ranks": "ps", "ranks_per_job": "ranks"}
for k in ["batch_size", "ps_ranks", "ranks_per_job"]:
    seen = [tuple(r[c] for c in line_keys) + (r["world_size"],) for r in rows]
    if len(set(seen)) == len(seen):
        break
    if len({r[k] for r in rows}) > 1:
        line_keys.append(k)
for row in rows:
    row["series"] = " ".join(f"{short.get(c, c)}={row[c]}" for c in line_keys)
fixed.append("series")
with open(os.path.join(out, "sweep-lines"), "w") as f:  # the plots' --group column
    f.write(("nodes" if line_keys == ["nodes"] else "series") + "\n")

cols = fixed + extra
with open(os.path.join(out, "sweep.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols, restval="")
    w.writeheader()
    w.writerows(rows)

# Text table: the sizes, wall time, each job's throughput, holdout AUC.
tput = [c for c in extra if c.startswith("jobs.") and c.endswith(".samples_per_s")]
aucs = [c for c in extra if c.startswith("holdout.") and c.endswith(".auc")]
show = ["point", "state", "nodes", "world_size", "ps_ranks", "ranks_per_job", "batch_size"]
show += [c for c in ["wall_s"] if c in extra] + tput + aucs
# Communication per trained sample (report.json "comm"): the total and every channel in use.
comm_cols = [c for c in extra if c.startswith("comm.") and c.endswith(".bytes_per_sample")]
comm_used = [c for c in comm_cols if c != "comm.total.bytes_per_sample" and
             any(isinstance(r.get(c), (int, float)) and r.get(c) > 0 for r in rows)]
show += [c for c in ["comm.total.bytes_per_sample"] if c in extra] + comm_used
def fmt(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (f"{v:.4f}" if abs(v) < 10 else f"{v:.0f}")
    return str(v)
def head(c):
    if c.startswith("comm."):
        return c[5:].replace(".bytes_per_sample", " B/sample")
    return c.replace("jobs.", "").replace(".samples_per_s", " samples/s").replace("holdout.", "")
table = [[head(c) for c in show]] + [[fmt(r.get(c, "")) for c in show] for r in rows]
wid = [max(len(t[i]) for t in table) for i in range(len(show))]
with open(os.path.join(out, "sweep.txt"), "w") as f:
    for t in table:
        f.write("  ".join(s.rjust(wid[i]) for i, s in enumerate(t)) + "\n")
    # Spread of the comm bytes per sample over the points (weak scaling: should stay flat).
    for c in (["comm.total.bytes_per_sample"] if "comm.total.bytes_per_sample" in extra else []) + comm_used:
        v = [r[c] for r in rows if isinstance(r.get(c), (int, float))]
        if len(v) >= 2 and sum(v) > 0:
            mean = sum(v) / len(v)
            ratio = f"{max(v) / min(v):.3f}" if min(v) > 0 else "inf (a point has none)"
            f.write(f"{head(c)}: min {min(v):.1f} max {max(v):.1f} mean {mean:.1f}: "
                    f"spread {100 * (max(v) - mean) / mean:+.1f}% / {100 * (min(v) - mean) / mean:+.1f}% "
                    f"around the mean, max/min {ratio}\n")
# Columns of the communication plot: with one node count, the total and every channel in use;
# with several, the total (one line per node count).
with open(os.path.join(out, "sweep-comm.y"), "w") as f:
    one = len({r["series"] for r in rows}) <= 1
    cc = (["comm.total.bytes_per_sample"] + comm_used) if one else ["comm.total.bytes_per_sample"]
    f.write(("" if one else "group ") + ",".join(c for c in cc if c in extra) + "\n")
# Plot data: total samples/s of all jobs against world size, one block per line of the plot
# (node count, and the sizes that tell apart points of one world size: above); sweep.gp draws it
# (when gnuplot is there).
def line_order(r):
    return tuple(int(r[c]) if c != "ranks_per_job" else r[c] for c in line_keys)
line_vals = []
for r in sorted(rows, key=line_order):
    if r["series"] not in line_vals:
        line_vals.append(r["series"])
blocks = []
with open(os.path.join(out, "sweep.dat"), "w") as f:
    for s in line_vals:
        pts = sorted((int(r["world_size"]), sum(r[c] for c in tput))
                     for r in rows if r["series"] == s and tput and all(c in r for c in tput))
        if not pts:
            continue
        f.write(f"# {s}: world_size total_samples_per_s\n")
        for w_, t in pts:
            f.write(f"{w_} {t:.1f}\n")
        f.write("\n\n")
        blocks.append(s)
with open(os.path.join(out, "sweep.gp"), "w") as f:
    f.write(f"set terminal png size 900,600 noenhanced\nset output '{out}/sweep.png'\n")
    f.write("set title 'recdistill scaling sweep: training throughput (all jobs together)'\n")
    f.write("set xlabel 'world size (MPI ranks)'\nset ylabel 'samples/s'\nset key left top\n")
    f.write("set grid\nset offsets graph 0.05, graph 0.05, graph 0.05, 0\n")
    if blocks:
        f.write("plot " + ", ".join(
            f"'{out}/sweep.dat' index {i} using 1:2 with linespoints pt 7 title '{n}'"
            for i, n in enumerate(blocks)) + "\n")
sys.exit(1 if bad else 0)
PY
    cat "$out/sweep.txt"
    echo "csv: $out/sweep.csv"
    # Plots with recdistill's own PNG writer (no gnuplot needed); sweep.gp stays for gnuplot users.
    if ! grep -q "^plot " "$out/sweep.gp"; then
        echo "plot: none (no run reported a throughput)"
    elif lines="$(cat "$out/sweep-lines")" &&
        "$RD_BIN" plot "$out/sweep.csv" --x world_size --y total_samples_per_s --group "$lines" \
        --out "$out/sweep.png" --title "scaling sweep: training throughput" \
        --xlabel "world size (MPI ranks)" --ylabel "samples/s (all jobs)" >/dev/null 2>"$out/plot.err"; then
        echo "plot: $out/sweep.png"
        local ycols group=()
        ycols="$(cat "$out/sweep-comm.y" 2>/dev/null)"
        case "$ycols" in "group "*) ycols="${ycols#group }" group=(--group "$lines") ;; esac
        [ -n "$ycols" ] && "$RD_BIN" plot "$out/sweep.csv" --x world_size --y "$ycols" "${group[@]}" \
            --out "$out/sweep-comm.png" --title "scaling sweep: communication per sample" \
            --xlabel "world size (MPI ranks)" --ylabel "bytes per trained sample" --ymin 0 \
            >/dev/null 2>>"$out/plot.err" && echo "plot: $out/sweep-comm.png"
    else
        rd_note "recdistill plot failed ($(head -n 3 "$out/plot.err")): no plot; the table above has the figures"
    fi
    return "$failed"
}

if [ "$1" = --gather ]; then
    # A relative OUT_DIR that starts with '-' is a path, not an option (of mv, cat, recdistill plot).
    case $2 in -*) set -- "$1" "./$2" ;; esac
    gather "$2" || exit 1
    exit 0
fi
SPEC="$1"
[ -f "$SPEC" ] || rd_die "sweep spec '$SPEC' not found"

# ---------------------------------------------------------------------------------------------
# 1. Read the spec.

declare -A S=() LN=() # key -> its values; key -> its spec line
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line="${line%%#*}"
    [[ "$line" =~ ^[[:space:]]*$ ]] && continue
    [[ "$line" =~ ^[[:space:]]*([a-z_]+):[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]] ||
        rd_die "$SPEC:$lineno: expected 'key: value(s)', got '$line'"
    key="${BASH_REMATCH[1]}" val="${BASH_REMATCH[2]}"
    case "$key" in
        config | out | timeout) [[ "$val" != *" "* ]] || rd_die "$SPEC:$lineno: $key takes one value" ;;
        points)
            for v in $val; do
                [[ "$v" =~ ^([1-9][0-9]*|-):([1-9][0-9]*|-):[1-9][0-9]*$ ]] ||
                    rd_die "$SPEC:$lineno: points: '$v' is not TEACHER_RANKS:STUDENT_RANKS:PS (positive integers or '-' for the ranks)"
            done ;;
        nodes | ranks | teacher_ranks | student_ranks | ps | batch)
            for v in $val; do
                [[ "$v" =~ ^[1-9][0-9]*$ ]] || rd_die "$SPEC:$lineno: $key: '$v' is not a positive integer"
            done ;;
        *) rd_die "$SPEC:$lineno: unknown key '$key' (config, nodes, ranks, teacher_ranks, student_ranks, ps, points, batch, out, timeout)" ;;
    esac
    # A repeated value would repeat its points: the same derived config and run folder submitted
    # several times, concurrent jobs writing one folder.
    if [[ "$key" =~ ^(points|nodes|ranks|teacher_ranks|student_ranks|ps|batch)$ ]]; then
        seen=" "
        for v in $val; do
            [[ "$seen" != *" $v "* ]] ||
                rd_die "$SPEC:$lineno: $key: '$v' is given twice (each value makes its own runs: a repeated one would submit the same run folder twice)"
            seen="$seen$v "
        done
    fi
    [ -z "${S[$key]:-}" ] || rd_die "$SPEC:$lineno: duplicate key '$key'"
    S[$key]="$val" LN[$key]=$lineno
done <"$SPEC"
[ -n "${S[config]:-}" ] || rd_die "$SPEC: 'config:' is required"
[[ "${S[timeout]:-0}" =~ ^[0-9]+$ ]] || rd_die "$SPEC: timeout must be seconds"
BASE="$(rd_abs "${S[config]}")" || rd_die "$SPEC: config '${S[config]}' not found"
[ -f "$BASE" ] || rd_die "$SPEC: config '${S[config]}' not found"
rd_layout "$BASE"
declare -A B=()
for k in "${!RD_L[@]}"; do B[$k]="${RD_L[$k]}"; done
OUT="${S[out]:-runs/sweep-$(basename "${SPEC%.*}")}"
case "$OUT" in /*) ;; *) OUT="$(pwd)/$OUT" ;; esac
NODES_L="${S[nodes]:-2}"
# Rank settings as "teacher:student" pairs ("same" = as in the config).
RANK_PAIRS=()
if [ -n "${S[ranks]:-}" ]; then
    [ -z "${S[teacher_ranks]:-}${S[student_ranks]:-}" ] ||
        rd_die "$SPEC: give either ranks or teacher_ranks/student_ranks, not both"
    for r in ${S[ranks]}; do RANK_PAIRS+=("$r:$r"); done
else
    for t in ${S[teacher_ranks]:-same}; do
        for u in ${S[student_ranks]:-same}; do RANK_PAIRS+=("$t:$u"); done
    done
fi
PS_L="${S[ps]:-${B[ps_ranks]}}"
BATCH_L="${S[batch]:-${B[batch_size]}}"
# Points as "teacher:student:ps" triples: zipped from `points`, else ranks x ps crossed.
TRIPLES=()
if [ -n "${S[points]:-}" ]; then
    [ -z "${S[ranks]:-}${S[teacher_ranks]:-}${S[student_ranks]:-}${S[ps]:-}" ] ||
        rd_die "$SPEC: give either points or ranks/teacher_ranks/student_ranks/ps, not both"
    for v in ${S[points]}; do
        t="${v%%:*}" rest="${v#*:}"
        u="${rest%%:*}" p="${rest#*:}"
        TRIPLES+=("${t/-/same}:${u/-/same}:$p")
    done
else
    for pair in "${RANK_PAIRS[@]}"; do
        for p in $PS_L; do TRIPLES+=("$pair:$p"); done
    done
fi
# Ranks of a role the config has no job of would change nothing: every value would run the same
# point again under another name (a teacher-only config swept with student_ranks: 1 2 ran one run
# twice, labelled as two student sizes).
declare -A HAVE=()
jobs_txt="" n_jobs="${B[n_jobs]}"
for ((i = 0; i < n_jobs; i++)); do
    HAVE[${B[job${i}_role]}]=1
    jobs_txt="$jobs_txt${jobs_txt:+, }${B[job${i}_name]} (${B[job${i}_role]})"
done
for role in teacher student; do
    [ -z "${HAVE[$role]:-}" ] || continue
    [ -z "${S[${role}_ranks]:-}" ] ||
        rd_die "$SPEC:${LN[${role}_ranks]}: ${role}_ranks: ${S[config]} has no $role job (its jobs: $jobs_txt): every value would run the same point again; drop the key"
    for v in ${S[points]:-}; do
        t="${v%%:*}" rest="${v#*:}"
        [ "$role" = teacher ] || t="${rest%%:*}"
        [ "$t" = - ] ||
            rd_die "$SPEC:${LN[points]}: points: '$v' gives $role ranks, but ${S[config]} has no $role job (its jobs: $jobs_txt): write '-' for them"
    done
done
mkdir -p "$OUT/configs"

# ---------------------------------------------------------------------------------------------
# 2. Derive one config per point from the base's effective config (every default written out):
#    run name/out_dir per point, the shared dataset, the sizes; paths derived from the base's
#    out_dir are emptied so that they follow the point's out_dir, and a checkpoint folder or
#    target log named elsewhere gets one subfolder per point (a replay's target log, an input,
#    stays).

"$RD_BIN" config "$BASE" >"$OUT/configs/base.effective.yaml" 2>"$OUT/configs/base.err" ||
    rd_die "bad config: $(cat "$OUT/configs/base.err")"
# A replaying student reads distill.target_log (an input, written by an earlier teacher run): it
# stays where it is; a live run writes it, one per point.
REPLAY="$(rd_config_value distill replay "$OUT/configs/base.effective.yaml")"
# The paths reach awk through the environment: -v would take the escapes of a path with a
# backslash in it. A value of the effective config is read whole and its YAML escapes undone
# (unq: a path with a space was cut at it, and one with an "é" kept its \u00e9, so neither was
# seen to lie under the base's out_dir: every point kept the base run folder's checkpoint folder,
# target log and token store), and written back quoted with its backslashes and quotes escaped
# (mawk's gsub wrote a backslash unescaped).
derive() { # point teacher_ranks student_ranks ps batch -> stdout
    RD_SW_NAME="$1" RD_SW_OUTDIR="$OUT/$1" RD_SW_DATA="$OUT/data" RD_SW_BASE_OUT="${B[out_dir]}/" \
        LC_ALL=C awk -v tranks="$2" -v sranks="$3" -v ps="$4" -v batch="$5" -v replay="$REPLAY" "$RD_AWK_UNQ"'
        BEGIN { name = ENVIRON["RD_SW_NAME"]; outdir = ENVIRON["RD_SW_OUTDIR"]
                data = ENVIRON["RD_SW_DATA"]; base_out = ENVIRON["RD_SW_BASE_OUT"] }
        function q(s,   o, i, c) { o = ""
            for (i = 1; i <= length(s); i++) { c = substr(s, i, 1)
                if (c == "\\" || c == "\"") o = o "\\" c
                else if (c == "\t") o = o "\\t"; else if (c == "\n") o = o "\\n"
                else if (c == "\r") o = o "\\r"; else o = o c }
            return "\"" o "\"" }
        function val(   v) { # the value of this key line, its quotes and escapes undone
            v = $0; sub(/^ *[a-z_]+: */, "", v); return unq(v) }
        function derived() { return index(val(), base_out) == 1 }
        /^[a-z_]+:/ { sec = $1; sub(/:.*/, "", sec) }
        sec == "run" && /^  name:/ { print "  name: " q(name); next }
        sec == "run" && /^  out_dir:/ { print "  out_dir: " q(outdir); next }
        sec == "cluster" && /^  ps_ranks:/ { print "  ps_ranks: " ps; next }
        sec == "cluster" && /^      role:/ { role = $2 }
        sec == "cluster" && /^      ranks:/ && role == "teacher" && tranks != "same" {
            print "      ranks: " tranks; next }
        sec == "cluster" && /^      ranks:/ && role == "student" && sranks != "same" {
            print "      ranks: " sranks; next }
        sec == "data" && /^  dir:/ { print "  dir: " q(data); next }
        sec == "train" && /^  batch_size:/ { print "  batch_size: " batch; next }
        sec == "ps" && /^  checkpoint_dir:/ && derived() { print "  checkpoint_dir: \"\""; next }
        sec == "tokens" && /^  store_dir:/ && derived() { print "  store_dir: \"\""; next }
        sec == "distill" && /^  target_log:/ && replay == "true" { print; next }
        sec == "distill" && /^  target_log:/ && derived() { print "  target_log: \"\""; next }
        # A checkpoint folder or target log named outside out_dir (fast scratch, say) is one
        # per point under it: points run at once, and each launch owns its folders.
        sec == "ps" && /^  checkpoint_dir:/ { print "  checkpoint_dir: " q(val() "/" name); next }
        sec == "distill" && /^  target_log:/ && val() != "" {
            print "  target_log: " q(val() "/" name); next }
        { print }' "$OUT/configs/base.effective.yaml"
}

points=()
printf 'point\tjobid\tnodes\tranks_per_job\tps_ranks\tbatch_size\tworld_size\trun_dir\n' >"$OUT/runs.tsv.new"
for n in $NODES_L; do
    for triple in "${TRIPLES[@]}"; do
        tr="${triple%%:*}" rest="${triple#*:}"
        sr="${rest%%:*}" p="${rest#*:}"
        for b in $BATCH_L; do
            point="n$n"
            if [ -n "${S[ranks]:-}" ]; then
                point="$point-r$tr"
            else
                [ "$tr" = same ] || point="$point-t$tr"
                [ "$sr" = same ] || point="$point-s$sr"
            fi
            point="$point-p$p-b$b"
            cfg="$OUT/configs/$point.yaml"
            derive "$point" "$tr" "$sr" "$p" "$b" >"$cfg"
            rd_layout "$cfg"
            # The derived config must say what the point asks (guards the rewrite above).
            [ "${RD_L[ps_ranks]}" = "$p" ] && [ "${RD_L[batch_size]}" = "$b" ] &&
                [ "${RD_L[out_dir]}" = "$OUT/$point" ] ||
                rd_die "derived config $cfg does not match point $point"
            for ((i = 0; i < ${RD_L[n_jobs]}; i++)); do
                want="$tr"
                [ "${RD_L[job${i}_role]}" = teacher ] || want="$sr"
                [ "$want" = same ] || [ "${RD_L[job${i}_ranks]}" = "$want" ] ||
                    rd_die "derived config $cfg: job $i has ${RD_L[job${i}_ranks]} ranks, not $want"
            done
            w="${RD_L[world_size]}"
            if [ "$n" -gt "$w" ]; then
                rd_note "skip $point: $n nodes for $w ranks"
                continue
            fi
            # Two points with one name would share a config and a run folder (the spec parser
            # refuses repeated values; this guards the naming).
            for q in "${points[@]}"; do
                [ "$q" != "$point" ] || rd_die "$SPEC: point $point comes twice: its runs would share one run folder"
            done
            points+=("$point")
            rr="${RD_L[job0_ranks]}" # the jobs' ranks in config order: "2/1/1"
            for ((i = 1; i < ${RD_L[n_jobs]}; i++)); do rr="$rr/${RD_L[job${i}_ranks]}"; done
            printf '%s\t-\t%s\t%s\t%s\t%s\t%s\t%s\n' "$point" "$n" "$rr" "$p" "$b" "$w" \
                "$OUT/$point" >>"$OUT/runs.tsv.new"
        done
    done
done
[ "${#points[@]}" -ge 1 ] || rd_die "$SPEC: no point to run"

# ---------------------------------------------------------------------------------------------
# 3. Prepare the dataset once (every point reads the same data), then submit every point.

# Every submitted point's nodes (skipped points aside) must exist in the partition before any is
# submitted: a point beyond it pends for ever, and the sweep with it.
maxn="$(awk -F'\t' 'NR > 1 && $3 > m { m = $3 } END { print m + 0 }' "$OUT/runs.tsv.new")"
rd_check_nodes "$maxn" "" "the sweep has points on $maxn nodes" "drop them from nodes:, or use another partition (RD_SBATCH_ARGS=--partition=P)"
# And Slurm must accept every point (sbatch --test-only: CPUs per node, limits) before any is
# submitted: a point it refused (more ranks on a node than the node has CPUs) stopped the sweep at
# its own submission, with the points before it submitted and running on.
if [ "${RD_DRY_RUN:-0}" != 1 ]; then
    while IFS=$'\t' read -r point jobid n rest; do
        [ "$point" = point ] && continue
        err="$(env -u SLURM_JOB_ID -u SLURM_ARRAY_TASK_ID RD_NODES="$n" RD_TEST_ONLY=1 \
            "$RD_SLURM_DIR/train-multinode.sbatch" "$OUT/configs/$point.yaml" 2>&1 >/dev/null)" ||
            rd_die "$SPEC: point $point ($n node(s), $(cut -f 4 <<<"$rest") ranks) cannot run here, nothing submitted: $(sed 's/^recdistill-slurm: error: //' <<<"$err" | tr '\n' ' ')"
    done <"$OUT/runs.tsv.new"
fi
# A dataset left by an earlier sweep into this folder is used again only when it was prepared from
# this data config: after a change of the base config's data (events, split, seed) every point was
# submitted and each stopped at start-up on the stale dataset ("holds a dataset prepared from
# another data configuration").
prep=1
if [ -f "$OUT/data/meta.yaml" ]; then
    rd_layout "$OUT/configs/${points[0]}.yaml"
    had="$(sed -n 's/^data_config_hash: \(0x[0-9a-f]*\).*/\1/p' "$OUT/data/meta.yaml")"
    if [ -z "$had" ] || [ "$had" = "${RD_L[data_hash]}" ]; then
        prep=0
    else
        rd_note "$OUT/data was prepared from another data configuration (data_config_hash $had, ${RD_L[data_hash]} for ${S[config]}): preparing it again"
    fi
fi
if [ "$prep" = 1 ] && [ "${RD_DRY_RUN:-0}" != 1 ]; then
    rd_note "preparing the shared dataset in $OUT/data"
    "$RD_BIN" prepare "$OUT/configs/${points[0]}.yaml" >"$OUT/prepare.log" 2>&1 ||
        rd_die "prepare failed: $(tail -n 5 "$OUT/prepare.log")"
fi
ids=()
: >"$OUT/runs.tsv"
# A sweep run again into its folder starts without the states an earlier gather recorded and the
# reports its runs left: the gather took them for this sweep's. A point whose new job Slurm had
# forgotten (cancelled while pending, MinJobAge passed, no accounting) was listed COMPLETED with
# the earlier run's figures.
[ "${RD_DRY_RUN:-0}" = 1 ] || rm -f "$OUT/states.tsv"
while IFS=$'\t' read -r point jobid n rest; do
    if [ "$point" = point ]; then
        printf '%s\t%s\t%s\t%s\n' "$point" "$jobid" "$n" "$rest" >>"$OUT/runs.tsv"
        continue
    fi
    [ "${RD_DRY_RUN:-0}" = 1 ] || rm -f "${rest##*$'\t'}/report.json"
    # The submitter side of train-multinode.sbatch, also when the sweep itself runs inside a Slurm
    # job (a batch job driving a long sweep): the script takes SLURM_JOB_ID for "I am the job's
    # batch body", and ran each point inside the sweep's own allocation (too few tasks: refused;
    # enough: trained there, with its output read as the submission).
    sub="$(env -u SLURM_JOB_ID -u SLURM_ARRAY_TASK_ID RD_NODES="$n" \
        "$RD_SLURM_DIR/train-multinode.sbatch" "$OUT/configs/$point.yaml")" ||
        rd_die "submitting $point failed${ids[0]:+ (already submitted: ${ids[*]}; scancel them, or gather later: slurm/sweep.sh --gather $OUT)}"
    if [ "${RD_DRY_RUN:-0}" = 1 ]; then
        echo "$sub"
        continue
    fi
    read -r _ jobid _ <<<"$sub"
    ids+=("$jobid")
    printf '%s\t%s\t%s\t%s\n' "$point" "$jobid" "$n" "$rest" >>"$OUT/runs.tsv"
    echo "sweep: $point -> job $jobid"
done <"$OUT/runs.tsv.new"
rm -f "$OUT/runs.tsv.new"
[ "${RD_DRY_RUN:-0}" = 1 ] && exit 0

# ---------------------------------------------------------------------------------------------
# 4. Wait for every job (squeue polled with a growing sleep), then gather.

t0=$SECONDS
sleep_s=1
idlist="$(IFS=,; echo "${ids[*]}")"
while :; do
    # A squeue that fails says nothing about the jobs (a controller busy or restarting: "Socket
    # timed out on send/recv operation"): poll again. It used to count as "no job left", and the
    # sweep gathered at once, reporting every running point as failed, and exited while they ran.
    # Only "Invalid job id" means Slurm has forgotten every job: they have all ended.
    if out="$(squeue -h -j "$idlist" -o %i 2>"$OUT/squeue.err")"; then
        left="$(grep -c . <<<"$out")" || left=0
    elif grep -q "Invalid job id" "$OUT/squeue.err"; then
        left=0
    else
        left="?"
        rd_note "squeue failed ($(head -n 1 "$OUT/squeue.err")): polling again"
    fi
    [ "$left" != 0 ] || break
    if [ "${S[timeout]:-0}" -gt 0 ] && [ $((SECONDS - t0)) -ge "${S[timeout]}" ]; then
        rd_die "timeout after ${S[timeout]} s with $left job(s) left ($idlist); they keep running: gather later with slurm/sweep.sh --gather $OUT, or scancel them"
    fi
    sleep "$sleep_s"
    [ "$sleep_s" -ge "$WAIT_MAX_S" ] || sleep_s=$((sleep_s * 2 > WAIT_MAX_S ? WAIT_MAX_S : sleep_s * 2))
done
rm -f "$OUT/squeue.err"
echo "sweep: ${#ids[@]} run(s) finished in $((SECONDS - t0)) s"
gather "$OUT" || exit 1
