# lib/fake_srun.sh — a stand-in for srun, to run the batch body of a slurm/ script without a
# cluster (slurm_requeue.sh, slurm_limit.sh). Sourced, not run (tests/CMakeLists.txt makes tests
# of tests/scripts/*.sh only). The caller sets $MPIEXEC.

# fake_srun DIR [PREFIX...]: write DIR/srun. The training step (--mpi=pmi2) runs as
# `exec PREFIX... $MPIEXEC -n NTASKS COMMAND...` (a PREFIX such as `timeout 300` bounds it; with
# none, mpiexec is the process the batch shell signals, as srun is); any other step runs
# COMMAND once per task with SLURM_PROCID and SLURMD_NODENAME set.
fake_srun() {
    local dir="$1" prefix=""
    shift
    [ $# -eq 0 ] || prefix="$(printf '%q ' "$@")"
    mkdir -p "$dir"
    cat >"$dir/srun" <<EOS
#!/usr/bin/env bash
n=1 mpi=none
while [ \$# -gt 0 ]; do
    case "\$1" in
        --ntasks=*) n="\${1#--ntasks=}" ;;
        --mpi=*) mpi="\${1#--mpi=}" ;;
        -*) ;;
        *) break ;;
    esac
    shift
done
if [ "\$mpi" = pmi2 ]; then
    exec $prefix"$MPIEXEC" -n "\$n" "\$@"
fi
for ((i = 0; i < n; i++)); do SLURM_PROCID=\$i SLURMD_NODENAME=n1 "\$@" || exit 1; done
EOS
    chmod +x "$dir/srun"
}
