#!/usr/bin/env bash
# Install what recdistill needs on Debian 12 (as root). Installs only what is missing, so a second
# run costs a second. Usage: tools/install-deps.sh [--slurm]
set -euo pipefail
pkgs=(build-essential cmake pkg-config mpich libmpich-dev libopenblas-dev liblmdb-dev lmdb-utils
      libyaml-dev libcmocka-dev)
if [ "${1:-}" = "--slurm" ]; then
    # A local Slurm cluster (tools/slurm-local.sh) and what slurm/sweep.sh and
    # tests/scripts/slurm.sh read JSON with.
    pkgs+=(slurmctld slurmd slurm-client munge python3 jq)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
