#!/usr/bin/env bash
# Install what recdistill needs on Debian 12 (as root). Installs only what is missing, so a second
# run costs a second. Usage: tools/install-deps.sh [--slurm] [--ci]
#   (no option) the build, every test (some test scripts run python3 or g++, one strace) and the
#               tools (tools/variant.sh, ablations.sh, replay-sweep.sh: python3 with PyYAML)
#   --slurm     also a local Slurm cluster (tools/slurm-local.sh) and jq
#   --ci        also what .ci/run needs beyond the tests: valgrind, clang and its libFuzzer runtime
#   -h, --help  this text
set -euo pipefail
# g++ comes with build-essential; it is named because the C++ checks of tests/scripts/install.sh
# (every public header, a serving client) and serve_client.sh are skipped without it.
pkgs=(build-essential g++ cmake pkg-config mpich libmpich-dev libopenblas-dev liblmdb-dev
      lmdb-utils libyaml-dev libcmocka-dev python3 python3-yaml strace)
for a in "$@"; do
    case $a in
        -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        # A local Slurm cluster (tools/slurm-local.sh) and what slurm/sweep.sh and
        # tests/scripts/slurm.sh read JSON with (python3 is in the base list).
        --slurm) pkgs+=(slurmctld slurmd slurm-client munge jq) ;;
        # What .ci/run needs beyond the tests: valgrind (tools/valgrind-unit.sh) and clang with
        # its libFuzzer runtime (RD_FUZZ=ON).
        --ci) pkgs+=(valgrind clang libclang-rt-14-dev) ;;
        *) echo "install-deps: unknown option '$a' (--slurm, --ci, --help)" >&2; exit 2 ;;
    esac
done
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
