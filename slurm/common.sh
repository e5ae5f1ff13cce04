# common.sh — shared by slurm/*.sbatch and slurm/sweep.sh (sourced, not run).
#
# Every script is both the submitter and the batch body:
#   slurm/<script>.sbatch CONFIG      run on a login node: reads the config's rank layout, sizes
#                                     the job (tasks, nodes, het components) and submits itself
#                                     with sbatch; prints "submitted <jobid> <run folder>".
#   (inside the job)                  checks that the allocation matches the config, then
#                                     `srun --mpi=pmi2 ... recdistill train CONFIG`.
# sbatch runs a spooled copy of the script, so the submitter passes what the body needs through
# the environment: RD_BIN (the recdistill binary), RD_SLURM_DIR (this folder), RD_CONFIG (absolute),
# exported and passed with --export=ALL (inside --export=ALL,K=V a comma in a path would split it).
# A script submitted by hand (sbatch slurm/x.sbatch CONFIG) finds this folder through the job's
# recorded command (scontrol show job: Command=), else under the submit directory, unless
# RD_SLURM_DIR is set (sbatch --export=ALL,RD_SLURM_DIR=<repo>/slurm).
#
# Arguments: SCRIPT [-h|--help] CONFIG [--out DIR] [--seed N] [--resume DIR]. The options after
# CONFIG go to `recdistill train` (checked at submission): --resume continues a run stopped by a
# time limit from its newest checkpoint (docs/slurm.md, "Time limits and resuming").
#
# Array jobs (RD_SBATCH_ARGS="--array=1-3"): each task trains into its own folder
# <run folder>/task-<SLURM_ARRAY_TASK_ID> with run seed <base seed> + <task id> (base seed: --seed,
# else the config's run.seed), so that tasks never share files and are independent repeats.
#
# Environment a user may set (all optional):
#   RD_BIN          recdistill binary; default <repo>/build/recdistill
#   RD_SLURM_DIR    this folder, for a job submitted by hand whose script Slurm cannot name
#   RD_TASKS_PER_NODE, RD_NODES, RD_DISTRIBUTION   see each script's ADAPT block
#   RD_SBATCH_ARGS  extra sbatch options for the submission, e.g. "--partition=debug --time=10"
#                   (the het-job script gives them to every component)
#   RD_DRY_RUN=1    print the sbatch command (shell-quoted, after the variables it exports)
#                   instead of submitting
#   RD_TEST_ONLY=1  ask the controller whether the job could run (sbatch --test-only) instead of
#                   submitting; exit 1 with Slurm's reason when not (slurm/sweep.sh uses it)
#   RD_REQUEUE_AT_LIMIT=1  submit with --requeue, and requeue the job once every job of the config
#                   has written the checkpoint asked for by the SIGUSR1 that Slurm sends before
#                   the time limit (#SBATCH --signal): the next attempt resumes from it, so a run
#                   longer than the limit goes on in slices by itself (rd_limit_checkpoint)
#
# Exit status of the submitters: 0 submitted, 1 bad config / missing binary / sbatch failed,
# 2 usage error. Of the batch bodies: the exit status of `recdistill train` (0 ok), or 1 when the
# allocation does not fit the config (too few tasks for cluster.ps_ranks + the cluster.jobs[i].ranks,
# the message names each; het components that do not match them) or the run left no report.json.

rd_die() {
    echo "recdistill-slurm: error: $*" >&2
    exit 1
}
rd_note() {
    echo "recdistill-slurm: $*" >&2
}

# rd_init SCRIPT_PATH: set RD_SLURM_DIR (where the script found this file; else the folder of
# SCRIPT_PATH) and RD_BIN, both absolute, and check the binary.
rd_init() {
    RD_SLURM_DIR="$(cd -- "${RD_SLURM_DIR:-$(dirname -- "$1")}" 2>/dev/null && pwd)" ||
        rd_die "cannot enter the folder of the slurm/ scripts '${RD_SLURM_DIR:-$(dirname "$1")}'"
    export RD_SLURM_DIR
    : "${RD_BIN:=$(cd -- "$RD_SLURM_DIR/.." && pwd)/build/recdistill}"
    case "$RD_BIN" in
        /*) ;;
        *) RD_BIN="$(pwd)/$RD_BIN" ;;
    esac
    export RD_BIN
    # From the start of a batch body: SIGUSR1's default action would end the script (rd_on_usr1).
    trap rd_on_usr1 USR1
    trap rd_on_term TERM
    rd_check_requeue_at_limit
    rd_in_batch_job || rd_check_sbatch_args
    [ -f "$RD_BIN" ] && [ -x "$RD_BIN" ] || rd_die "recdistill binary '$RD_BIN' not found or not executable (build it, or set RD_BIN)"
}

# rd_sbatch_words VAR: the words of RD_SBATCH_ARGS into the array VAR: split at blanks (spaces,
# tabs, newlines), backslashes kept, and never matched against file names. An unquoted
# ${RD_SBATCH_ARGS} was globbed too: --comment=a* became the names of the files in the current
# directory that matched it.
rd_sbatch_words() {
    IFS=$' \t\n' read -r -d '' -a "$1" <<<"${RD_SBATCH_ARGS:-}" || true
}

# rd_check_sbatch_args: RD_SBATCH_ARGS is one string, split at blanks, so a value with a blank in
# it became two words: RD_SBATCH_ARGS="--chdir=/scratch/my runs" submitted the job to run in
# /scratch/my (its relative paths resolved there) and gave sbatch "runs" as its script. A word
# that is no option and follows no option that takes its value as the next word is refused.
rd_check_sbatch_args() {
    local a prev=""
    local -a args
    rd_sbatch_words args
    for a in "${args[@]+"${args[@]}"}"; do
        case "$a" in
            -*) prev="$a" ;;
            *)
                case "$prev" in
                    "" | --*=* | -[!-]?*)
                        rd_die "RD_SBATCH_ARGS: '$a' is neither an sbatch option nor the value of one: RD_SBATCH_ARGS is split at blanks, so a value with a blank in it (a --chdir folder) cannot be given there; submit from that folder instead (the job runs in the folder it is submitted from)" ;;
                esac
                prev="" ;;
        esac
    done
}

# rd_layout CONFIG: validate the config and read its launch layout into the associative array
# RD_L (keys of `recdistill config --layout`). A bad config stops here with the loader's message.
# The config's overrides (--set PATH=VALUE after CONFIG, rd_args) apply to every read of it.
declare -A RD_L
RD_SET_ARGS=()
rd_layout() {
    local cfg="$1" out k v
    [ -f "$cfg" ] || rd_die "config '$cfg' not found"
    if ! out="$("$RD_BIN" config --layout "$cfg" "${RD_SET_ARGS[@]+"${RD_SET_ARGS[@]}"}" 2>&1)"; then
        rd_die "bad config: $out"
    fi
    RD_L=()
    while IFS='=' read -r k v; do
        [ -n "$k" ] && RD_L["$k"]="$v"
    done <<<"$out"
    [[ "${RD_L[world_size]:-}" =~ ^[0-9]+$ ]] && [ "${RD_L[world_size]}" -ge 2 ] ||
        rd_die "config '$cfg': world size '${RD_L[world_size]:-?}' (need PS ranks + job ranks >= 2)"
}

# rd_abs PATH: absolute path (the file must exist). Quiet: the caller says what is missing.
rd_abs() {
    local d
    [ -e "$1" ] || return 1
    d="$(cd -- "$(dirname -- "$1")" 2>/dev/null && pwd)" || return 1
    echo "$d/$(basename -- "$1")"
}

# rd_usage_text: the usage of RD_SCRIPT_NAME.
rd_usage_text() {
    cat <<EOF
usage: $RD_SCRIPT_NAME [-h|--help] CONFIG.yaml [--out DIR] [--seed N] [--resume DIR] [--set PATH=VALUE ...]

Sizes a Slurm job for the config's rank layout and submits it (the same file is the batch
script). The options after CONFIG go to 'recdistill train': --out DIR (run folder instead of
run.out_dir), --seed N (run.seed), --resume DIR (continue from a checkpoint root such as
runs/NAME/ckpt, e.g. after a time limit), --set PATH=VALUE (repeatable: override a key of
CONFIG, e.g. --set cluster.ps_ranks=4; the job is sized with the overrides). Environment: RD_BIN, RD_SBATCH_ARGS (an --array gives
each task <run folder>/task-N and seed + N), RD_TASKS_PER_NODE, RD_NODES, RD_DISTRIBUTION,
RD_DRY_RUN=1. See docs/slurm.md.

Exit status: submitting, 0 submitted, 1 bad config, missing binary or sbatch failed, 2 usage
error. The job: the status of 'recdistill train', or 1 when the allocation does not fit the
config (fewer tasks than cluster.ps_ranks + the cluster.jobs[i].ranks; the message names each)
or the run left no report.json.
EOF
}

# rd_args "$@": parse the script's arguments into RD_CFG_ARG and RD_TRAIN_ARGS (an array), with
# RD_OUT_ARG / RD_SEED_ARG / RD_RESUME_ARG set when given. -h/--help prints the usage (exit 0);
# an option before CONFIG, an unknown train option, a missing or bad value: usage error (exit 2).
rd_args() {
    RD_CFG_ARG="" RD_OUT_ARG="" RD_SEED_ARG="" RD_RESUME_ARG=""
    RD_TRAIN_ARGS=() RD_SET_ARGS=()
    local bad="" var
    case "${1:-}" in
        -h | --help)
            rd_usage_text
            exit 0
            ;;
        "") bad="no CONFIG given" ;;
        -*) bad="unknown option '$1'" ;;
        *) RD_CFG_ARG="$1" ;;
    esac
    [ -n "$bad" ] || shift
    while [ -z "$bad" ] && [ $# -gt 0 ]; do
        case "$1" in
            --out | --seed | --resume)
                if [ $# -lt 2 ]; then
                    bad="$1 needs a value"
                    break
                fi
                case "$1:$2" in
                    --out: | --resume:) bad="$1: empty path" ;;
                    # Checked here, not once the job has its nodes: the run folder and its
                    # checkpoints are on a file system the submit host sees too.
                    # A relative one is the job's: against RD_SBATCH_ARGS's --chdir if given.
                    --resume:*) [ -d "$(rd_in_workdir "$2")" ] || bad="--resume: '$2' is not a folder$( [ "$(rd_workdir)" = "$(pwd)" ] || echo " in the job's working directory $(rd_workdir)") (a checkpoint root such as runs/NAME/ckpt, or one step-N folder)" ;;
                    --seed:*) rd_is_seed "$2" || bad="--seed: '$2' is not a non-negative integer (0..18446744073709551615)" ;;
                esac
                var="RD_${1#--}_ARG"
                var="${var^^}"
                [ -n "$bad" ] || [ -z "${!var}" ] || bad="$1 given twice"
                [ -z "$bad" ] || break
                printf -v "$var" '%s' "$2"
                RD_TRAIN_ARGS+=("$1" "$2")
                shift 2
                ;;
            --set)
                # Repeatable; recdistill checks the override (rd_layout, at submission).
                if [ $# -lt 2 ] || [ -z "$2" ]; then
                    bad="--set needs a value PATH=VALUE"
                    break
                fi
                RD_SET_ARGS+=("$1" "$2")
                RD_TRAIN_ARGS+=("$1" "$2")
                shift 2
                ;;
            -h | --help)
                rd_usage_text
                exit 0
                ;;
            *) bad="unexpected argument '$1' after CONFIG (train options: --out DIR, --seed N, --resume DIR, --set PATH=VALUE)" ;;
        esac
    done
    if [ -n "$bad" ]; then
        echo "recdistill-slurm: usage error: $bad" >&2
        rd_usage_text | head -n 1 >&2
        exit 2
    fi
}

# rd_sbatch_opt NAME SHORT: the value of an sbatch option in RD_SBATCH_ARGS (--NAME=V, --NAME V,
# -S V, -SV; the last one given), else nothing.
rd_sbatch_opt() {
    local name="$1" short="$2" v="" a prev=""
    local -a args
    rd_sbatch_words args
    for a in "${args[@]+"${args[@]}"}"; do
        if [ "$prev" = "--$name" ] || [ "$prev" = "-$short" ]; then
            v="$a" prev=""
            continue
        fi
        case "$a" in
            "--$name="*) v="${a#--"$name"=}" ;;
            "--$name" | "-$short") ;;
            "-$short"?*) v="${a#-"$short"}" ;;
        esac
        prev="$a"
    done
    echo "$v"
}

# rd_check_nodes NEED PARTITION WHAT HINT: the partition (PARTITION, else RD_SBATCH_ARGS's
# --partition/-p, else SBATCH_PARTITION, else the default partition) must have NEED nodes: Slurm
# accepts a job that can never start (PartitionNodeLimit) and leaves it PENDING for ever. Dies
# with "WHAT, partition P has N: HINT"; without sinfo or a controller it says why it cannot check.
rd_check_nodes() {
    local need="$1" part="$2" what="$3" hint="$4" have
    [ -n "$part" ] || part="$(rd_sbatch_opt partition p)"
    [ -n "$part" ] || part="${SBATCH_PARTITION:-}"
    command -v sinfo >/dev/null || { rd_note "sinfo not found: not checking the partition's node count"; return 0; }
    if [ -z "$part" ]; then
        # sinfo fails when no controller answers (no slurm.conf, slurmctld down): under
        # `set -e -o pipefail` that used to end the script here with exit 1 and no word.
        local parts
        if ! parts="$(sinfo -h -o %P 2>&1)"; then
            rd_note "sinfo cannot reach a Slurm controller ($(head -n 1 <<<"$parts")): not checking the node count"
            return 0
        fi
        part="$(sed -n 's/\*$//p' <<<"$parts" | head -n 1)"
        [ -n "$part" ] || { rd_note "no default partition found: not checking the node count"; return 0; }
    fi
    local counts
    counts="$(sinfo -h -p "$part" -o %D 2>/dev/null)" ||
        { rd_note "sinfo failed (no Slurm controller reachable?): not checking the node count of partition $part"; return 0; }
    have="$(awk '{n += $1} END {print n + 0}' <<<"$counts")"
    [ "$have" -ge "$need" ] || rd_die "$what, partition $part has $have: $hint"
}

# rd_check_cpus PER_NODE PARTITION WHAT HINT: the partition's largest node (PARTITION, else as
# rd_check_nodes finds it) must have the CPUs of PER_NODE tasks (times RD_SBATCH_ARGS's
# --cpus-per-task): sbatch refuses a job that puts more tasks on a node with "Requested node
# configuration is not available", which names neither the counts nor what to change. Dies with
# "WHAT: PER_NODE task(s) on a node, but the nodes of partition P have at most C CPUs: HINT",
# where HINT may use {C} for that count. Not checked with --overcommit (Slurm then runs several
# tasks on a CPU), or when sinfo cannot say (rd_check_nodes has said why).
rd_check_cpus() {
    local per="$1" part="$2" what="$3" hint="$4" cpt max a
    local -a args
    rd_sbatch_words args
    for a in "${args[@]+"${args[@]}"}"; do
        case "$a" in --overcommit | -O) return 0 ;; esac
    done
    cpt="$(rd_sbatch_opt cpus-per-task c)"
    [[ "$cpt" =~ ^[1-9][0-9]*$ ]] || cpt=1
    [ -n "$part" ] || part="$(rd_sbatch_opt partition p)"
    [ -n "$part" ] || part="${SBATCH_PARTITION:-}"
    command -v sinfo >/dev/null || return 0
    if [ -z "$part" ]; then
        part="$(sinfo -h -o %P 2>/dev/null | sed -n 's/\*$//p' | head -n 1)" || return 0
        [ -n "$part" ] || return 0
    fi
    # One line per node (-N): the CPUs Slurm allocates from.
    max="$(sinfo -h -N -p "$part" -o %c 2>/dev/null | awk '$1 ~ /^[0-9]+$/ && $1 > m {m = $1} END {print m + 0}')" ||
        return 0
    [ "$max" -gt 0 ] || return 0
    [ $((per * cpt)) -le "$max" ] && return 0
    local c=$((max / cpt))
    [ "$c" -ge 1 ] || c=1
    [ "$cpt" -eq 1 ] || what="$what (--cpus-per-task=$cpt each)"
    rd_die "$what: $per task(s) on a node, but the nodes of partition $part have at most $max CPUs: ${hint//\{C\}/$c}"
}

# rd_in_batch_job: is this shell the batch script of a Slurm job (which Slurm starts with
# ENVIRONMENT=BATCH besides SLURM_JOB_ID)? Each script is then the batch body; otherwise it submits.
# The shell of an interactive allocation (salloc, srun --pty) has SLURM_JOB_ID too: a script run
# there took itself for the batch body, looked for common.sh under the allocation's working
# directory ("no common.sh in '<cwd>/slurm'") or ran inside the allocation, refused for too few
# tasks ("submit with 'slurm/train-1node.sbatch CONFIG'", which was what had been typed).
rd_in_batch_job() {
    [ -n "${SLURM_JOB_ID:-}" ] && [ "${ENVIRONMENT:-}" = BATCH ]
}

# rd_workdir: the directory the job runs in, absolute. Inside a job: the current directory (Slurm
# starts the batch script in the job's working directory: --chdir, else the submit directory).
# In the submitter: RD_SBATCH_ARGS's --chdir/-D if any, else the current directory (rd_submit
# passes --chdir=$(pwd)).
rd_workdir() {
    local d
    if rd_in_batch_job; then
        pwd
        return
    fi
    d="$(rd_sbatch_opt chdir D)"
    [ -n "$d" ] || d="$(pwd)"
    case "$d" in /*) ;; *) d="$(pwd)/$d" ;; esac
    echo "$d"
}

# rd_in_workdir PATH: PATH made absolute against the job's working directory.
rd_in_workdir() {
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$(rd_workdir)/$1" ;;
    esac
}

# RD_AWK_UNQ: awk functions for the scalars `recdistill config` prints. unq(V) is the value of
# the YAML scalar V: a double-quoted one with its escapes undone (\" \\ \t \n \r \xHH, and \uXXXX
# \UXXXXXXXX written back as UTF-8: the printer escapes every non-ASCII character), any other as
# it is. Run under LC_ALL=C, where %c of 0..255 is that one byte. Only the quotes used to be
# removed: a path with an "é" in it was read as "\u00e9", so a submission was refused for a
# data.input that exists, and a requeued job looked for its checkpoints in a folder named
# "...\u00e9..." (none there: it started again, removing them).
# shellcheck disable=SC2016
RD_AWK_UNQ='
function rd_hex(h,   i, v) { v = 0; h = tolower(h)
    for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
    return v }
function rd_utf8(c) {
    if (c < 128) return sprintf("%c", c)
    if (c < 2048) return sprintf("%c%c", 192 + int(c / 64), 128 + c % 64)
    if (c < 65536) return sprintf("%c%c%c", 224 + int(c / 4096), 128 + int(c / 64) % 64, 128 + c % 64)
    return sprintf("%c%c%c%c", 240 + int(c / 262144), 128 + int(c / 4096) % 64, 128 + int(c / 64) % 64, 128 + c % 64) }
function unq(v,   o, i, c) {
    if (v !~ /^".*"$/) return v
    v = substr(v, 2, length(v) - 2); o = ""
    for (i = 1; i <= length(v); i++) {
        c = substr(v, i, 1)
        if (c != "\\") { o = o c; continue }
        c = substr(v, ++i, 1)
        if (c == "t") o = o "\t"; else if (c == "n") o = o "\n"; else if (c == "r") o = o "\r"
        else if (c == "x") { o = o sprintf("%c", rd_hex(substr(v, i + 1, 2))); i += 2 }
        else if (c == "u") { o = o rd_utf8(rd_hex(substr(v, i + 1, 4))); i += 4 }
        else if (c == "U") { o = o rd_utf8(rd_hex(substr(v, i + 1, 8))); i += 8 }
        else o = o c
    }
    return o }
'

# rd_config_value SECTION KEY CONFIG: a scalar of CONFIG's effective configuration
# (`recdistill config`: top-level SECTION, its two-space-indented KEY), its YAML quotes and
# escapes undone (unq). awk reads to the end: an early exit would kill the writer with SIGPIPE,
# which pipefail reports.
rd_config_value() {
    "$RD_BIN" config "$3" "${RD_SET_ARGS[@]+"${RD_SET_ARGS[@]}"}" 2>/dev/null | LC_ALL=C awk -v s="$1:" -v k="$2:" "$RD_AWK_UNQ"'
        /^[^ #]/ { in_s = ($1 == s); next }
        in_s && !done && /^  [^ ]/ && $1 == k { v = $0; sub(/^  [^:]*: */, "", v); print unq(v); done = 1 }'
}

# rd_blas_cpus CONFIG [ARGS]: a config with cluster.blas_threads B > 1 runs B OpenBLAS threads in
# each rank, so each task asks for B CPUs (--cpus-per-task=B added to RD_SBATCH_ARGS, which the
# checks of CPUs per node read too), unless RD_SBATCH_ARGS (or ARGS: the het script's
# COMPONENT_ARGS) gives --cpus-per-task itself. Slurm gave each
# task one CPU: on a cluster that binds tasks to their CPUs (task/affinity, task/cgroup) the B
# threads of a rank shared one core, and a sweep of blas_threads measured no gain, silently.
rd_blas_cpus() {
    local b
    b="$(rd_config_value cluster blas_threads "$1")"
    [[ "$b" =~ ^[0-9]+$ ]] && [ "$b" -gt 1 ] || return 0
    [ -z "$(RD_SBATCH_ARGS="${2:-} ${RD_SBATCH_ARGS:-}" rd_sbatch_opt cpus-per-task c)" ] || return 0
    RD_SBATCH_ARGS="${RD_SBATCH_ARGS:+$RD_SBATCH_ARGS }--cpus-per-task=$b"
    rd_note "cluster.blas_threads is $b: each rank gets $b CPUs (--cpus-per-task=$b; give --cpus-per-task in RD_SBATCH_ARGS to change it)"
}

# rd_check_inputs CONFIG: before submitting, the data the job reads must be where the job will
# look: relative paths of a config are relative to the job's working directory, not to the
# config. A prepared data.dir (meta.yaml; under --out DIR when data.dir derives from run.out_dir)
# is enough; else data.input, for a source reading files, and for a CSV source the log
# (data.schema.path, a pattern matching some file) and each side table in it.
rd_check_inputs() {
    local cfg="$1" ddir dir input src wd q
    wd="$(rd_workdir)"
    [ -d "$wd" ] || rd_die "the job's working directory '$wd' does not exist"
    ddir="${RD_L[data_dir]}"
    if [ -n "$RD_OUT_ARG" ]; then # --out moves a data.dir derived from run.out_dir, as in train
        q="${RD_OUT_ARG//\\/\\\\}"
        q="${q//\"/\\\"}"
        ddir="$("$RD_BIN" config --layout "$cfg" "${RD_SET_ARGS[@]+"${RD_SET_ARGS[@]}"}" \
            --set "run.out_dir=\"$q\"" 2>/dev/null | sed -n 's/^data_dir=//p')"
        [ -n "$ddir" ] || ddir="${RD_L[data_dir]}"
    fi
    dir="$(rd_in_workdir "$ddir")"
    [ ! -f "$dir/meta.yaml" ] || return 0
    src="$(rd_config_value data source "$cfg")"
    input="$(rd_config_value data input "$cfg")"
    [ "$src" != synthetic ] && [ -n "$input" ] || return 0
    [ -e "$(rd_in_workdir "$input")" ] ||
        rd_die "data.input '$input' (source $src) not found from the job's working directory $wd, and data.dir '$ddir' is not prepared there: relative config paths are relative to the working directory, so submit from the folder they start from (the checkout for configs/ml100k*.yaml), give --chdir=DIR in RD_SBATCH_ARGS, or make them absolute"
    [ "$src" = csv ] || return 0
    # The log and its side tables, relative to data.input: a misspelt file name was found only
    # once the job had its nodes, by prepare.
    local key path in_dir
    in_dir="$(rd_in_workdir "$input")"
    while IFS=$'\t' read -r key path; do
        [ -n "$path" ] || continue
        case "$path" in
            *[*?[]*) (cd "$in_dir" 2>/dev/null && compgen -G "$path" >/dev/null) ||
                rd_die "$key '$path' matches no file in data.input '$input' (from the job's working directory $wd), and data.dir '$ddir' is not prepared there" ;;
            *) case "$path" in /*) ;; *) path="$in_dir/$path" ;; esac
                [ -f "$path" ] ||
                rd_die "$key: no file '$path' (data.input '$input' from the job's working directory $wd), and data.dir '$ddir' is not prepared there" ;;
        esac
    done < <(rd_schema_paths "$cfg")
}

# rd_schema_paths CONFIG: "KEY<tab>PATH" for data.schema.path and each data.schema.side[N].path of
# CONFIG's effective configuration, the YAML quotes and escapes undone.
rd_schema_paths() {
    "$RD_BIN" config "$1" "${RD_SET_ARGS[@]+"${RD_SET_ARGS[@]}"}" 2>/dev/null | LC_ALL=C awk "$RD_AWK_UNQ"'
        function val(v) { sub(/^[^:]*: */, "", v); return unq(v) }
        /^[^ #]/ { in_d = ($1 == "data:"); in_s = 0; next }
        in_d && /^  [^ ]/ { in_s = ($1 == "schema:"); side = 0; next }
        in_s && /^    side:/ { side = 1; n = -1; next }
        in_s && /^    [^ ]/ { side = 0 }
        in_s && !side && /^    path:/ { print "data.schema.path\t" val($0) }
        in_s && side && /^      - / { n++ }
        in_s && side && /^        path:/ { print "data.schema.side[" n "].path\t" val($0) }'
}

# rd_check_array CONFIG: an array job (--array/-a in RD_SBATCH_ARGS) gives each task its own run folder
# and seed (rd_train); --resume has no per-task meaning there, so it is refused.
rd_check_array() {
    [ -n "$(rd_sbatch_opt array a)" ] || return 0
    [ -z "$RD_RESUME_ARG" ] ||
        rd_die "--resume with an array job: resume each task as its own job (CONFIG --out RUN/task-N --seed BASE+N --resume RUN/task-N/ckpt)"
    rd_check_array_dirs "$1"
    rd_note "array job: task N trains into $(rd_run_dir)/task-N with run seed ${RD_SEED_ARG:-<run.seed>}+N"
}

# rd_check_array_dirs CONFIG: an array's tasks run at once, each in <run folder>/task-N, where
# --out moves every path under run.out_dir. A checkpoint folder (ps.checkpoint_dir) or the target
# log of a live distillation (distill.target_log) named outside run.out_dir does not move: every
# task wrote the same one, and all but the first were refused by its writer lock once they had
# their nodes (or, run one after another, each removed the checkpoints of the one before).
rd_check_array_dirs() {
    local out="${RD_L[out_dir]}" key v
    for key in "ps checkpoint_dir" "distill target_log"; do
        [ "$key" != "distill target_log" ] || [ "${RD_L[replay]}" = 0 ] || continue
        # shellcheck disable=SC2086
        v="$(rd_config_value $key "$1")"
        case "$v" in
            "" | "$out"/*) ;;
            *) rd_die "an array job's tasks run at once, each in its own <run folder>/task-N, but ${key/ /.} '$v' lies outside run.out_dir '$out', so every task would write that one (all but one refused by its lock): leave it under the run folder, or submit each repeat as its own job with its own ${key/ /.}" ;;
        esac
    done
}

# rd_run_dir: the run folder, absolute: --out if given, else RD_L's out_dir; a relative one is
# relative to the job's working directory (rd_workdir). Inside an array task: <that>/task-<id>
# (rd_train passes it as --out).
rd_run_dir() {
    local d
    d="$(rd_in_workdir "${RD_OUT_ARG:-${RD_L[out_dir]}}")"
    [ -z "${SLURM_ARRAY_TASK_ID:-}" ] || ! rd_in_batch_job || d="$d/task-$SLURM_ARRAY_TASK_ID"
    echo "$d"
}

rd_ceil_div() {
    echo $((($1 + $2 - 1) / $2))
}

# rd_submit SCRIPT CONFIG SBATCH_OPTIONS...: submit SCRIPT (this script, from its own path) with
# the options, then CONFIG and the train options (RD_TRAIN_ARGS); RD_BIN, RD_SLURM_DIR and
# RD_CONFIG reach the job through the exported environment. Prints "submitted <jobid> <run folder>".
rd_submit() {
    local script="$1" cfg="$2"
    shift 2
    export RD_CONFIG="$cfg" RD_BIN RD_SLURM_DIR
    # A submission from inside a requeued job (a sweep driven by a batch job) would pass its
    # SLURM_RESTART_COUNT on with --export=ALL (Slurm sets it only in a restarted job), and the new
    # job would take itself for a restarted one (rd_requeue_resume).
    unset SLURM_RESTART_COUNT
    # Likewise the variables of the job or interactive allocation it is submitted from (salloc
    # -c 4 --overcommit exported SLURM_CPUS_PER_TASK and SLURM_OVERCOMMIT, which the new job's
    # srun and placement checks then read as its own); Slurm sets the new job's. Only the
    # client's configuration and a hostfile for RD_DISTRIBUTION=arbitrary are kept.
    local v
    for v in $(compgen -e); do
        case "$v" in SLURM_CONF | SLURM_HOSTFILE) ;; SLURM_*) unset "$v" ;; esac
    done
    local -a cmd=(sbatch --parsable --chdir="$(pwd)" --export=ALL) extra
    rd_sbatch_words extra
    cmd+=("${extra[@]+"${extra[@]}"}")
    # A job Slurm may requeue: without it `scontrol requeue` is refused on clusters whose
    # JobRequeue is 0.
    [ "${RD_REQUEUE_AT_LIMIT:-0}" = 0 ] || cmd+=(--requeue)
    cmd+=("$@" "$script" "$cfg" "${RD_TRAIN_ARGS[@]+"${RD_TRAIN_ARGS[@]}"}")
    if [ "${RD_DRY_RUN:-0}" = 1 ]; then
        printf 'RD_BIN=%q RD_SLURM_DIR=%q RD_CONFIG=%q' "$RD_BIN" "$RD_SLURM_DIR" "$cfg"
        printf ' %q' "${cmd[@]}"
        printf '\n'
        return 0
    fi
    command -v sbatch >/dev/null || rd_die "sbatch not found (is this a Slurm login node?)"
    local out
    if [ "${RD_TEST_ONLY:-0}" = 1 ]; then
        # sbatch --test-only: the controller checks the request against the partition's nodes
        # (CPUs per node, limits) and says when it would start; nothing is submitted.
        out="$(sbatch --test-only "${cmd[@]:1}" 2>&1)" || rd_die "sbatch --test-only refused the job: $out"
        echo "tested $(rd_run_dir): $out"
        return 0
    fi
    out="$("${cmd[@]}" 2>&1)" || rd_die "sbatch failed: $out"
    local id="${out%%;*}"
    [[ "$id" =~ ^[0-9]+$ ]] || rd_die "sbatch printed no job id: $out"
    echo "submitted $id $(rd_run_dir)"
}

# rd_ranks_text: where the world size of the config (RD_L) comes from, key by key:
# "cluster.ps_ranks 1 + cluster.jobs[0].ranks 2 (teacher) + cluster.jobs[1].ranks 1 (student)".
rd_ranks_text() {
    local i n="${RD_L[n_jobs]}" t="cluster.ps_ranks ${RD_L[ps_ranks]}"
    for ((i = 0; i < n; i++)); do
        t+=" + cluster.jobs[$i].ranks ${RD_L[job${i}_ranks]} (${RD_L[job${i}_name]})"
    done
    echo "$t"
}

# rd_check_tasks NEED: the allocation (SLURM_NTASKS) must hold NEED tasks. Exit 1 when not,
# saying how many tasks the job has, how many ranks the config needs and which keys set them
# (the message named neither the keys nor the variable the count was read from).
rd_check_tasks() {
    local need="$1" have="${SLURM_NTASKS:-}"
    [[ "$have" =~ ^[0-9]+$ ]] && [ "$have" -ge "$need" ] && return 0
    if [[ "$have" =~ ^[0-9]+$ ]]; then
        have="has $have task(s) (SLURM_NTASKS=$have)"
    else
        have="has no task count (SLURM_NTASKS='$have': submitted without --ntasks?)"
    fi
    rd_die "too few tasks: the allocation $have but the config needs $need, one per rank: $(rd_ranks_text)${RD_SET_ARGS[0]+ (with the --set overrides)}; submit with '$RD_SCRIPT_NAME CONFIG', which sizes the job, or sbatch --ntasks=$need, or lower those keys"
}

# rd_check_one_node NEED: one node of the allocation must hold NEED tasks (the 1-node script's
# step is srun --nodes=1 --ntasks=NEED). A job sized by hand across nodes (sbatch -N 2 -n 8) has
# enough tasks but not on one node: its step failed in srun ("More processors requested than
# permitted") after the run folder was made. SLURM_JOB_CPUS_PER_NODE reads "7,1" or "4(x2)".
# A task takes at least one CPU: fewer CPUs than ranks on every node can never run the step (with
# --cpus-per-task the step may need more, which srun then says). Except in a job given
# --overcommit (SLURM_OVERCOMMIT=1): Slurm then allocates one CPU per node ("1") and its steps
# run several tasks on each CPU, so the count says nothing of what a node holds.
rd_check_one_node() {
    local need="$1" spec="${SLURM_JOB_CPUS_PER_NODE:-}" max=0 part n
    local -a parts
    [ -n "$spec" ] || return 0
    [ "${SLURM_OVERCOMMIT:-0}" = 0 ] || return 0
    IFS=, read -ra parts <<<"$spec"
    for part in "${parts[@]}"; do
        n="${part%%(*}"
        [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt "$max" ] && max="$n"
    done
    [ "$max" -ge "$need" ] ||
        rd_die "the 1-node script runs all $need ranks ($(rd_ranks_text)) on one node, but the allocation has at most $max CPU(s) on a node (SLURM_JOB_CPUS_PER_NODE=$spec): submit with '$RD_SCRIPT_NAME CONFIG', which asks for --nodes=1 --ntasks=$need, or use slurm/train-multinode.sbatch"
}

# rd_check_run_lock DIR: stop (before anything is written) when another launch writes the run
# folder DIR: `recdistill train` holds DIR/run.lock (flock) for its whole launch, and would refuse
# this job at start-up, after its placement step had replaced the running launch's placement.txt
# with this job's. The lock is tried without waiting (flock -n), the way train takes it; without
# flock(1) on the node, train's own check stands alone.
rd_check_run_lock() {
    local lock="$1/run.lock"
    [ -f "$lock" ] && command -v flock >/dev/null || return 0
    flock -n "$lock" true 2>/dev/null && return 0
    rd_die "run folder $1 is in use by another writer ($(head -c 512 "$lock" 2>/dev/null | head -n 1); lock file $lock): one launch writes it at a time; wait for it to end, or use another folder (--out)"
}

# rd_placement NTASKS [SRUN_OPTIONS...]: print and save which node runs which rank and role
# (<run folder>/placement.txt), with a cheap non-MPI step of the same layout as the training step.
# When the step fails, the job stops and leaves none of this: its temporary files go, and so do
# the run folder and the parents it made (a refused job leaves no run folder). RD_PLACED_TOP is
# then the first folder of the run folder's path that this job made ("" when the run folder was
# there before): rd_unplace removes them again when train makes nothing.
RD_PLACED_TOP=""
rd_placement() {
    local n="$1"
    shift
    local dir top d
    # An array task (also one submitted by hand with sbatch --array) stops before it makes
    # anything when its tasks would share a checkpoint folder or target log.
    [ -z "${SLURM_ARRAY_TASK_ID:-}" ] || rd_check_array_dirs "$RD_CONFIG"
    dir="$(rd_run_dir)"
    rd_check_run_lock "$dir"
    top="$dir" # the first folder of the run folder's path that does not exist yet ("" if none)
    while [ -n "$top" ] && [ ! -e "$top" ] && [ ! -e "$(dirname -- "$top")" ]; do
        top="$(dirname -- "$top")"
    done
    [ -e "$top" ] && top=""
    mkdir -p "$dir"
    # shellcheck disable=SC2016
    # Temporary names of this job alone: jobs sharing a folder must not take each other's.
    local tmp="$dir/.placement.${SLURM_JOB_ID:-0}.$$"
    # The steps' CPUs per task are the job's (rd_blas_cpus, or --cpus-per-task of the submission):
    # srun does not take them from the allocation since Slurm 22.05, unless told so.
    [ -z "${SLURM_CPUS_PER_TASK:-}" ] || export SRUN_CPUS_PER_TASK="${SRUN_CPUS_PER_TASK:-$SLURM_CPUS_PER_TASK}"
    srun --mpi=none "$@" bash -c 'echo "$SLURM_PROCID $SLURMD_NODENAME"' 2>"$tmp.err" |
        sort -n | while read -r rank node; do
        echo "rank $rank $(rd_role_of "$rank") $node"
    done >"$tmp" || true
    if [ "$(wc -l <"$tmp")" -ne "$n" ]; then
        local why
        why="placement step ran $(wc -l <"$tmp") of $n tasks: $(cat "$tmp" "$tmp.err")"
        rm -f "$tmp" "$tmp.err"
        if [ -n "$top" ]; then # made here: empty folders from the run folder up to top
            d="$dir"
            while rmdir -- "$d" 2>/dev/null && [ "$d" != "$top" ]; do d="$(dirname -- "$d")"; done
        fi
        rd_die "$why"
    fi
    mv "$tmp" "$dir/placement.txt"
    rm -f "$tmp.err"
    RD_PLACED_TOP="$top"
    sed 's/^/  /' "$dir/placement.txt"
}

# rd_unplace: after a training step that failed, remove the run folder rd_placement made when
# train made nothing in it (refused at start-up: a --resume checkpoint of another layout, a token
# store of another shard count, ...), as `recdistill train` under mpiexec leaves no run folder
# then. Only placement.txt and train's empty run.lock may be there; anything else (a dataset,
# checkpoints, metrics) keeps the folder whole. The placement stays in the job's log.
rd_unplace() {
    local dir d
    [ -n "$RD_PLACED_TOP" ] || return 0
    dir="$(rd_run_dir)"
    [ -d "$dir" ] || return 0
    [ -z "$(find "$dir" -mindepth 1 -maxdepth 1 ! -name placement.txt ! -name run.lock -print -quit)" ] ||
        return 0
    if [ -e "$dir/run.lock" ]; then # removed under its lock, as train removes it
        command -v flock >/dev/null || return 0
        flock -n "$dir/run.lock" rm -f -- "$dir/run.lock" 2>/dev/null || return 0
    fi
    rm -f -- "$dir/placement.txt"
    d="$dir"
    while rmdir -- "$d" 2>/dev/null && [ "$d" != "$RD_PLACED_TOP" ]; do d="$(dirname -- "$d")"; done
    rd_note "job ${SLURM_JOB_ID:-?}: train made nothing in $dir: removed the run folder this job made"
}

# rd_role_of RANK: "ps" or the job name owning the world rank (PS first, then jobs in order).
rd_role_of() {
    local r="$1" i
    if [ "$r" -lt "${RD_L[ps_ranks]}" ]; then
        echo ps
        return
    fi
    for ((i = 0; i < ${RD_L[n_jobs]}; i++)); do
        local first="${RD_L[job${i}_first_rank]}" n="${RD_L[job${i}_ranks]}"
        if [ "$r" -lt $((first + n)) ]; then
            echo "${RD_L[job${i}_name]}"
            return
        fi
    done
    echo "?"
}

# rd_steps_use_own_layout: job steps get their layout from the options the scripts pass, not from
# the submission's per-node limit (srun reads SLURM_NTASKS_PER_NODE and warns when an uneven
# world does not match it).
rd_steps_use_own_layout() {
    unset SLURM_NTASKS_PER_NODE
}

# rd_is_seed S: S is a run.seed, a decimal uint64 (0..18446744073709551615).
rd_is_seed() {
    local d="${1#"${1%%[!0]*}"}" # without leading zeros (bash would read them as octal)
    [[ "$1" =~ ^[0-9]+$ ]] || return 1
    [ "${#d}" -lt 20 ] || { [ "${#d}" -eq 20 ] && [[ ! "$d" > 18446744073709551615 ]]; }
}

# rd_ckpt_root: the checkpoint root the training step writes, absolute: ps.checkpoint_dir, moved
# into the run folder of --out (or of an array task) when it lies under run.out_dir, as train
# moves it.
rd_ckpt_root() {
    local ck out="${RD_L[out_dir]}"
    ck="$(rd_config_value ps checkpoint_dir "$RD_CONFIG")"
    [ -n "$ck" ] || ck="$out/ckpt"
    case "$ck" in
        "$out"/*) echo "$(rd_run_dir)/${ck#"$out"/}" ;;
        *) rd_in_workdir "$ck" ;;
    esac
}

# rd_requeue_resume: a job Slurm has requeued (preemption with PreemptMode=REQUEUE, a node
# failure, scontrol requeue: SLURM_RESTART_COUNT >= 1) runs this script again with the arguments
# of its submission. Without --resume, train took that for a fresh run and removed every
# checkpoint (and the target log) the earlier attempt had written, then started again from step 0.
# So a restarted job resumes from its own checkpoint root when every job has a complete
# checkpoint there (replacing a --resume of the submission: the root holds newer ones), starts
# again when none has (nothing to lose), and otherwise stops, keeping what is there: train cannot
# resume some jobs and start the others. Prints the resume root, or nothing.
rd_requeue_resume() {
    local n="${SLURM_RESTART_COUNT:-0}" root i name have=() missing=()
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || return 0
    root="$(rd_ckpt_root)"
    for ((i = 0; i < ${RD_L[n_jobs]}; i++)); do
        name="${RD_L[job${i}_name]}"
        if compgen -G "$root/$name/step-*" >/dev/null; then have+=("$name"); else missing+=("$name"); fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        rd_note "job ${SLURM_JOB_ID:-?} restarted by Slurm (restart $n): resuming from $root"
        echo "$root"
    elif [ "${#have[@]}" -eq 0 ]; then
        if [ -n "$RD_RESUME_ARG" ]; then
            rd_note "job ${SLURM_JOB_ID:-?} restarted by Slurm (restart $n): no checkpoint under $root yet: resuming from --resume $RD_RESUME_ARG again"
        else
            rd_note "job ${SLURM_JOB_ID:-?} restarted by Slurm (restart $n): no checkpoint under $root: starting again"
        fi
    else
        rd_die "job ${SLURM_JOB_ID:-?} restarted by Slurm (restart $n), but under $root only ${have[*]} have a checkpoint (not ${missing[*]}): train resumes every job or none, and a fresh start would remove those checkpoints; resubmit without --resume to start again, or give a root holding every job"
    fi
}

# rd_check_requeue_at_limit: RD_REQUEUE_AT_LIMIT is unset, 0 or 1 (rd_init checks it, for the
# submission and the batch body); another value stops the script.
rd_check_requeue_at_limit() {
    case "${RD_REQUEUE_AT_LIMIT:-0}" in
        0 | 1) ;;
        *) rd_die "RD_REQUEUE_AT_LIMIT='$RD_REQUEUE_AT_LIMIT': 1 (requeue the job once it has checkpointed before its time limit) or 0" ;;
    esac
}

# The checkpoint before a time limit. The scripts ask Slurm for a SIGUSR1 to the batch shell some
# minutes before the limit (#SBATCH --signal=B:USR1@300). rd_on_usr1 passes it to the training
# step (srun hands it to every task): each job writes a checkpoint after its next step and
# trains on (rd/trainer.h, rd_trainer_request_checkpoint). With RD_REQUEUE_AT_LIMIT=1,
# rd_limit_checkpoint then waits until every job has written it and requeues the job: Slurm ends
# this attempt and runs the script again, which resumes from those checkpoints
# (rd_requeue_resume). Without it the checkpoints wait for a resubmission with --resume.
RD_STEP_PID=""
RD_USR1=0
RD_LIMIT_BEFORE=""
RD_REQUEUED=0 # scontrol requeue accepted: Slurm ends this attempt
rd_on_usr1() {
    if [ -n "$RD_STEP_PID" ] && kill -0 "$RD_STEP_PID" 2>/dev/null; then
        rd_note "job ${SLURM_JOB_ID:-?}: SIGUSR1 (the time limit is near): every job writes a checkpoint after its next step"
        RD_USR1=1
        RD_LIMIT_BEFORE="$(rd_newest_ckpts "$(rd_ckpt_root)")"
        kill -USR1 "$RD_STEP_PID" 2>/dev/null || true
    else
        rd_note "job ${SLURM_JOB_ID:-?}: SIGUSR1 (the time limit is near) while no training step runs: no checkpoint to ask for"
    fi
}
# SIGTERM (scancel, a preemption; Slurm sends it to the steps too): while the training step runs,
# passed on to it (whose ranks write a checkpoint of every job, then end with 143) and waited
# for, so that this script ends with the step's status; otherwise it ends the script as before.
rd_on_term() {
    if [ -n "$RD_STEP_PID" ] && kill -0 "$RD_STEP_PID" 2>/dev/null; then
        rd_note "job ${SLURM_JOB_ID:-?}: SIGTERM: every job writes a checkpoint after its next step, then the run ends"
        kill -TERM "$RD_STEP_PID" 2>/dev/null || true
    else
        trap - TERM
        kill -TERM $$
    fi
}
# rd_newest_ckpts ROOT: "job step-N" for each job of the config with a complete checkpoint under
# ROOT, the newest (step folders sort by name).
rd_newest_ckpts() {
    local i name d
    for ((i = 0; i < ${RD_L[n_jobs]}; i++)); do
        name="${RD_L[job${i}_name]}"
        d="$(compgen -G "$1/$name/step-*" | LC_ALL=C sort | tail -n 1)" || true
        [ -z "$d" ] || echo "$name ${d##*/}"
    done
}

# rd_limit_checkpoint BEFORE: after a SIGUSR1 with RD_REQUEUE_AT_LIMIT=1, wait until every job
# has a newer checkpoint than in BEFORE (rd_newest_ckpts' lines at the signal), then requeue the
# job (scontrol requeue). Returns when requeued, or when the step ended first (then it needs no
# requeue; a job whose training was over writes none: the attempt ends as it would have).
rd_limit_checkpoint() {
    local before="$1" root now i name b n out all
    root="$(rd_ckpt_root)"
    while kill -0 "$RD_STEP_PID" 2>/dev/null; do
        now="$(rd_newest_ckpts "$root")"
        all=1
        for ((i = 0; i < ${RD_L[n_jobs]}; i++)); do
            name="${RD_L[job${i}_name]}"
            b="$(awk -v j="$name" '$1 == j {print $2}' <<<"$before")"
            n="$(awk -v j="$name" '$1 == j {print $2}' <<<"$now")"
            [ -n "$n" ] && [ "$n" != "$b" ] || all=0
        done
        if [ "$all" = 1 ]; then
            rd_note "job ${SLURM_JOB_ID:-?}: every job has a checkpoint since the signal ($(tr '\n' ' ' <<<"$now")under $root): requeueing the job; the next attempt resumes from them"
            if out="$(scontrol requeue "${SLURM_JOB_ID:-}" 2>&1)"; then
                RD_REQUEUED=1
            else
                rd_note "job ${SLURM_JOB_ID:-?}: scontrol requeue failed ($out): this attempt goes on to its time limit; resume with --resume $root"
            fi
            return 0
        fi
        sleep 0.5
    done
}

# rd_train SRUN_OPTIONS...: the training step with the train options given after CONFIG (an
# array task instead gets --out <its folder> --seed <base + task id>), then check that it left
# its report. A job Slurm restarted resumes from its own checkpoints (rd_requeue_resume).
rd_train() {
    local dir rc=0 seed resume
    local -a targs=("${RD_TRAIN_ARGS[@]+"${RD_TRAIN_ARGS[@]}"}")
    dir="$(rd_run_dir)"
    if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
        [ -z "$RD_RESUME_ARG" ] || rd_die "--resume with an array job: resume each task as its own job"
        seed="${RD_SEED_ARG:-$(rd_config_value run seed "$RD_CONFIG")}"
        rd_is_seed "$seed" || rd_die "cannot read run.seed of $RD_CONFIG"
        # Bash arithmetic is signed 64-bit: a base seed >= 2^63 came out negative, which train
        # refuses. The sum is taken modulo 2^64 and printed unsigned (run.seed is a uint64).
        seed="${seed#"${seed%%[!0]*}"}"
        targs=(--out "$dir" --seed "$(printf '%u' "$((${seed:-0} + SLURM_ARRAY_TASK_ID))")"
            "${RD_SET_ARGS[@]+"${RD_SET_ARGS[@]}"}")
    fi
    resume="$(rd_requeue_resume)" || {
        rd_unplace
        exit 1
    }
    if [ -n "$resume" ]; then
        local -a kept=()
        local k
        for ((k = 0; k < ${#targs[@]}; k += 2)); do
            [ "${targs[k]}" = --resume ] || kept+=("${targs[k]}" "${targs[k + 1]}")
        done
        targs=("${kept[@]+"${kept[@]}"}" --resume "$resume")
    fi
    # OPENBLAS/OMP threads: one per rank unless the user asked otherwise (cluster.blas_threads
    # sets OpenBLAS's own count inside recdistill).
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    # --kill-on-bad-exit: a rank that dies (kill -9, OOM, crash) ends the step at once; without
    # it srun leaves the other ranks spinning in MPI until the time limit (tests/scripts/
    # rank_death.sh, docs/reliability.md).
    rd_note "job ${SLURM_JOB_ID:-?}: srun --mpi=pmi2 --kill-on-bad-exit=1 $* $RD_BIN train $RD_CONFIG ${targs[*]}"
    local t0=$SECONDS
    # In the background, so that the SIGUSR1 trap runs while the step does (a trap waits for a
    # foreground command to end); `wait` returns early (status > 128) when a trapped signal came.
    srun --mpi=pmi2 --kill-on-bad-exit=1 "$@" "$RD_BIN" train "$RD_CONFIG" \
        "${targs[@]+"${targs[@]}"}" &
    RD_STEP_PID=$!
    while :; do
        RD_USR1=0
        rc=0
        wait "$RD_STEP_PID" || rc=$?
        [ "$rc" -gt 128 ] && kill -0 "$RD_STEP_PID" 2>/dev/null || break
        [ "$RD_USR1" = 0 ] || [ "${RD_REQUEUE_AT_LIMIT:-0}" = 0 ] || rd_limit_checkpoint "$RD_LIMIT_BEFORE"
    done
    RD_STEP_PID=""
    rd_note "job ${SLURM_JOB_ID:-?}: train exited $rc after $((SECONDS - t0)) s"
    if [ "$RD_REQUEUED" = 1 ]; then
        # The requeue ends the step, then this script. An exit of ours with the step's status could
        # reach the controller after it had put the job back in the queue, and end the job as
        # FAILED instead (seen under load): the script waits for its end instead.
        rd_note "job ${SLURM_JOB_ID:-?}: requeued: waiting for Slurm to end this attempt"
        local i
        for ((i = 0; i < 600; i++)); do sleep 1; done
        rd_die "job ${SLURM_JOB_ID:-?} was requeued, but Slurm has not ended this attempt in 10 minutes"
    fi
    if [ "$rc" -ne 0 ]; then
        rd_unplace
        exit "$rc"
    fi
    [ -s "$dir/report.json" ] || rd_die "train exited 0 but left no $dir/report.json"
    echo "report: $dir/report.json"
}
