# shellcheck shell=bash disable=SC2034 # TMP, CL, PORT and T_START are set for the caller
# lib/slurm_cluster.sh — a private one-host Slurm for a test (tools/slurm-local.sh: munged,
# slurmctld, N slurmd virtual nodes) in a fresh folder under /var/tmp, torn down by its PIDs when
# the test exits (slurm.sh, slurm_suspend.sh). Sourced, not run (tests/CMakeLists.txt makes tests
# of tests/scripts/*.sh only). The caller sets $SRC and defines fail() and skip().

# slurm_cluster_up NAME NODES CPUS [PROCTRACK]: skips (exit 77) when not root, or when Slurm is
# missing and cannot be installed. Takes the host's Slurm-test lock (one such test at a time on a
# host: every build directory's ctest may start them), stops the clusters of tests that were
# killed before their cleanup, brings a cluster up (proctrack/PROCTRACK: linuxproc by default)
# and sets TMP (the test's folder), CL (the cluster's folder inside it), PORT (slurmctld's) and
# T_START ($SECONDS once the lock is held: the wait for it is another test's time), exports
# SLURM_CONF and installs the EXIT trap that ends it all.
slurm_cluster_up() {
    local name="$1" nodes="$2" cpus="$3" proctrack="${4:-linuxproc}" old i pat
    [ "$(id -u)" -eq 0 ] || skip "not root (slurmd and munged need root)"
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
        ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
        command -v apt-get >/dev/null || skip "Slurm is not installed and apt-get is missing"
        "$SRC/tools/install-deps.sh" --slurm >/dev/null 2>&1 ||
            skip "Slurm is not installed and tools/install-deps.sh --slurm failed"
    fi
    command -v flock >/dev/null || skip "flock missing"
    command -v jq >/dev/null || skip "jq missing (tools/install-deps.sh --slurm installs it)"
    command -v python3 >/dev/null || skip "python3 missing (tools/install-deps.sh --slurm installs it)"
    exec 9>/var/tmp/rd-slurm-test.lock
    flock -w 600 9 || skip "another Slurm test held the lock for 10 minutes"
    # Holding the lock, no other Slurm test runs: a cluster folder left in /var/tmp is of a test
    # that was killed before its cleanup (a CI run stopped with kill -9), and its daemons may
    # still run on their ports. Stop them. (Daemons started by a test before this one did not
    # inherit fd 9 and held the lock, so a killed test made every later one wait 10 minutes and
    # skip.)
    for old in /var/tmp/rd_test_slurm_*; do
        [ -d "$old/cluster" ] || continue
        "$SRC/tools/slurm-local.sh" down --dir "$old/cluster" --purge >/dev/null 2>&1 || true
        rm -rf "$old"
    done
    T_START=$SECONDS
    TMP="$(mktemp -d "/var/tmp/rd_test_slurm_${name}_XXXXXX")"
    chmod 0755 "$TMP" # munged (user munge) must reach the cluster folder inside
    CL="$TMP/cluster"
    # A port base with nothing listening on it or the node ports after it.
    PORT=17817
    while :; do
        pat="$PORT"
        for i in $(seq 1 "$nodes"); do pat="$pat|$((PORT + i))"; done
        ss -ltn 2>/dev/null | awk '{print $4}' | grep -qE ":($pat)\$" || break
        PORT=$((PORT + 10))
        [ "$PORT" -lt 18817 ] || fail "no free port range found"
    done
    trap slurm_cluster_down EXIT
    # fd 9 (the lock) closed for the daemons: the lock ends with this test, even if it is killed.
    "$SRC/tools/slurm-local.sh" up --nodes "$nodes" --cpus "$cpus" --dir "$CL" --port "$PORT" \
        --proctrack "$proctrack" >"$TMP/up.log" 2>&1 9>&- ||
        fail "slurm-local up: $(cat "$TMP/up.log")"
    export SLURM_CONF="$CL/etc/slurm.conf"
}

slurm_cluster_down() {
    "$SRC/tools/slurm-local.sh" down --dir "$CL" --purge >/dev/null 2>&1 ||
        echo "warning: slurm-local down failed" >&2
    rm -rf "$TMP"
}
