# common.sh — shared by slurm/*.sbatch and slurm/sweep.sh (sourced, not run).
#
# Every script is both the submitter and the batch body:
#   slurm/<script>.sbatch CONFIG      run on a login node: reads the config's rank layout, sizes
#                                     the job (tasks, nodes, het components) and submits itself
#                                     with sbatch; prints "submitted <jobid> <run folder>".
#   (inside the job)                  checks that the allocation matches the config, then
#                                     `srun --mpi=pmi2 ... recdistill train CONFIG`.
# sbatch runs a spooled copy of the script, so the submitter passes what the body needs through
# the environment: RD_BIN (the recdistill binary), RD_SLURM_DIR (this folder), RD_CONFIG (absolute).
# A script submitted by hand (sbatch slurm/x.sbatch CONFIG) finds this folder through the job's
# recorded command (scontrol show job: Command=), else under the submit directory, unless
# RD_SLURM_DIR is set (sbatch --export=ALL,RD_SLURM_DIR=<repo>/slurm).
#
# Environment a user may set (all optional):
#   RD_BIN          recdistill binary; default <repo>/build/recdistill
#   RD_SLURM_DIR    this folder, for a job submitted by hand whose script Slurm cannot name
#   RD_TASKS_PER_NODE, RD_NODES, RD_DISTRIBUTION   see each script's ADAPT block
#   RD_SBATCH_ARGS  extra sbatch options for the submission, e.g. "--partition=debug --time=10"
#                   (the het-job script gives them to every component)
#   RD_DRY_RUN=1    print the sbatch command instead of submitting
#
# Exit status of the submitters: 0 submitted, 1 bad config / missing binary / sbatch failed,
# 2 usage error. Of the batch bodies: the exit status of `recdistill train` (0 ok), or 1 when the
# allocation does not fit the config or the run left no report.json.

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
    RD_SLURM_DIR="$(cd "${RD_SLURM_DIR:-$(dirname "$1")}" && pwd)" ||
        rd_die "cannot enter the folder of the slurm/ scripts '${RD_SLURM_DIR:-$(dirname "$1")}'"
    export RD_SLURM_DIR
    : "${RD_BIN:=$(cd "$RD_SLURM_DIR/.." && pwd)/build/recdistill}"
    case "$RD_BIN" in
        /*) ;;
        *) RD_BIN="$(pwd)/$RD_BIN" ;;
    esac
    export RD_BIN
    [ -x "$RD_BIN" ] || rd_die "recdistill binary '$RD_BIN' not found or not executable (build it, or set RD_BIN)"
}

# rd_layout CONFIG: validate the config and read its launch layout into the associative array
# RD_L (keys of `recdistill config --layout`). A bad config stops here with the loader's message.
declare -A RD_L
rd_layout() {
    local cfg="$1" out k v
    [ -f "$cfg" ] || rd_die "config '$cfg' not found"
    if ! out="$("$RD_BIN" config --layout "$cfg" 2>&1)"; then
        rd_die "bad config: $out"
    fi
    RD_L=()
    while IFS='=' read -r k v; do
        [ -n "$k" ] && RD_L["$k"]="$v"
    done <<<"$out"
    [[ "${RD_L[world_size]:-}" =~ ^[0-9]+$ ]] && [ "${RD_L[world_size]}" -ge 2 ] ||
        rd_die "config '$cfg': world size '${RD_L[world_size]:-?}' (need PS ranks + job ranks >= 2)"
}

# rd_abs PATH: absolute path (the file must exist).
rd_abs() {
    local d
    d="$(cd "$(dirname "$1")" && pwd)" || return 1
    echo "$d/$(basename "$1")"
}

# rd_run_dir: the run folder of RD_L, absolute (relative out_dir is relative to the directory
# the job runs in, which is the submit directory).
rd_run_dir() {
    case "${RD_L[out_dir]}" in
        /*) echo "${RD_L[out_dir]}" ;;
        *) echo "${SLURM_SUBMIT_DIR:-$(pwd)}/${RD_L[out_dir]}" ;;
    esac
}

rd_ceil_div() {
    echo $((($1 + $2 - 1) / $2))
}

# rd_submit SCRIPT CONFIG SBATCH_OPTIONS...: submit SCRIPT (this script, from its own path) with
# the options, passing RD_* through the environment; prints "submitted <jobid> <run folder>".
rd_submit() {
    local script="$1" cfg="$2"
    shift 2
    local -a cmd=(sbatch --parsable --chdir="$(pwd)"
        --export="ALL,RD_BIN=$RD_BIN,RD_SLURM_DIR=$RD_SLURM_DIR,RD_CONFIG=$cfg")
    # shellcheck disable=SC2206
    [ -n "${RD_SBATCH_ARGS:-}" ] && cmd+=($RD_SBATCH_ARGS)
    cmd+=("$@" "$script" "$cfg")
    if [ "${RD_DRY_RUN:-0}" = 1 ]; then
        echo "${cmd[*]}"
        return 0
    fi
    command -v sbatch >/dev/null || rd_die "sbatch not found (is this a Slurm login node?)"
    local out
    out="$("${cmd[@]}" 2>&1)" || rd_die "sbatch failed: $out"
    local id="${out%%;*}"
    [[ "$id" =~ ^[0-9]+$ ]] || rd_die "sbatch printed no job id: $out"
    echo "submitted $id $(rd_run_dir)"
}

# rd_check_tasks NEED: the allocation (SLURM_NTASKS) must hold NEED tasks.
rd_check_tasks() {
    local need="$1" have="${SLURM_NTASKS:-0}"
    [ "$have" -ge "$need" ] ||
        rd_die "the allocation has $have task(s) but the config needs $need (PS ranks + job ranks): submit with '$RD_SCRIPT_NAME CONFIG', which sizes the job, or sbatch --ntasks=$need"
}

# rd_placement NTASKS [SRUN_OPTIONS...]: print and save which node runs which rank and role
# (<run folder>/placement.txt), with a cheap non-MPI step of the same layout as the training step.
rd_placement() {
    local n="$1"
    shift
    local dir
    dir="$(rd_run_dir)"
    mkdir -p "$dir"
    # shellcheck disable=SC2016
    srun --mpi=none "$@" bash -c 'echo "$SLURM_PROCID $SLURMD_NODENAME"' 2>"$dir/placement.err" |
        sort -n | while read -r rank node; do
        echo "rank $rank $(rd_role_of "$rank") $node"
    done >"$dir/placement.txt.tmp" || true
    mv "$dir/placement.txt.tmp" "$dir/placement.txt"
    [ "$(wc -l <"$dir/placement.txt")" -eq "$n" ] ||
        rd_die "placement step ran $(wc -l <"$dir/placement.txt") of $n tasks: $(cat "$dir/placement.txt" "$dir/placement.err")"
    rm -f "$dir/placement.err"
    sed 's/^/  /' "$dir/placement.txt"
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

# rd_train SRUN_OPTIONS...: the training step, then check that it left its report.
rd_train() {
    local dir rc=0
    dir="$(rd_run_dir)"
    # OPENBLAS/OMP threads: one per rank unless the user asked otherwise (cluster.blas_threads
    # sets OpenBLAS's own count inside recdistill).
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    # --kill-on-bad-exit: a rank that dies (kill -9, OOM, crash) ends the step at once; without
    # it srun leaves the other ranks spinning in MPI until the time limit (tests/scripts/
    # rank_death.sh, docs/reliability.md).
    rd_note "job ${SLURM_JOB_ID:-?}: srun --mpi=pmi2 --kill-on-bad-exit=1 $* $RD_BIN train $RD_CONFIG"
    local t0=$SECONDS
    srun --mpi=pmi2 --kill-on-bad-exit=1 "$@" "$RD_BIN" train "$RD_CONFIG" || rc=$?
    rd_note "job ${SLURM_JOB_ID:-?}: train exited $rc after $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || exit "$rc"
    [ -s "$dir/report.json" ] || rd_die "train exited 0 but left no $dir/report.json"
    echo "report: $dir/report.json"
}
