#!/usr/bin/env bash
# mpmd_args.sh — the ranks of an MPMD launch (`mpiexec -n P recdistill train C : -n W recdistill
# train C`) agree on the command line after MPI_Init:
#  - a usage error on one segment (a typo'd option, no CONFIG, an unknown command) used to exit
#    before MPI_Init, and the other ranks waited in MPI_Init for ever (MPICH hydra): now every
#    rank ends with exit 2 and one message naming the ranks and the segment. Each launch runs
#    under `timeout 60`, so a regression fails (rc 124) instead of hanging ctest.
#  - arguments that differ between segments (CONFIG, --out, --seed, --resume) used to be silently
#    ignored (rank 0's counted; --resume was read per rank, so workers started fresh): now they
#    are refused naming the option and the ranks, before anything is made.
#  - --seed takes the whole uint64 range of run.seed (it stopped at 2^63 - 1).
#  - segments started in different working directories (mpiexec -wdir) resolve the config's
#    relative paths into different folders: one run became two (rank 0's data, locks and
#    report.json in one, the jobs' checkpoints, metrics and unlocked target log in the other,
#    table shards and dense.bin of each checkpoint apart) with exit 0. Now refused naming the
#    directories; with absolute paths (--out) the launch trains into one folder.
#  - segments that cut a role group in two (roles follow rank numbers, not segments) are warned
#    about, naming the group and the segments.
#  - a command that does not use MPI (config, prepare, table, tokens, ...) as a segment of a
#    launch with train exited before MPI_Init, and the train ranks waited in MPI_Init for ever:
#    now it joins the agreement and the launch ends (exit 2) naming its ranks and segment. Run
#    on every rank of a launch of several processes it is refused too (it would run N times at
#    once on the same files); a launch of one process runs it as before.
#  - the segments of a launch may run two builds of recdistill (another install path, a node
#    with its own build): nothing compared them, and a mixed launch trained (a wire or layout
#    difference failing late, model code differing silently). Now every rank's build identity
#    (`recdistill --version`) is compared first: another build is refused on every rank, exit 2,
#    rank 0 naming each build with its ranks, segment, host and path; a copy of the same binary
#    at another path is the same build and trains.
#   mpmd_args.sh PATH/TO/recdistill
set -u
RD="${1:?usage: mpmd_args.sh path/to/recdistill}"
case "$RD" in /*) ;; *) RD="$(pwd)/$RD" ;; esac # the -wdir launches below start elsewhere
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
SRC="${RD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
export OPENBLAS_NUM_THREADS=1
TMP="$(mktemp -d /tmp/rd_test_mpmd_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
C="$TMP/tiny.yaml" # world size 4: 1 PS rank, three one-rank jobs
cp "$SRC/tests/data/slurm-tiny.yaml" "$C"
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# shellcheck source=lib/launch.sh
. "$SRC/tests/scripts/lib/launch.sh" # launch, has

# 1. Usage errors on one segment end the whole launch, reported once.
launch 2 typo_last -n 2 "$RD" train "$C" --out "$TMP/r1" : -n 2 "$RD" train "$C" --sed 3
has typo_last "recdistill train: ranks 2, 3 (mpiexec segment 2): unknown option '--sed'" 1
launch 2 typo_first -n 1 "$RD" train --bogus : -n 3 "$RD" train "$C"
has typo_first "recdistill train: rank 0 (mpiexec segment 1): unknown option '--bogus'" 1
launch 2 no_config -n 2 "$RD" train "$C" : -n 2 "$RD" train
has no_config "ranks 2, 3 (mpiexec segment 2): no CONFIG given" 1
launch 2 bad_seed -n 3 "$RD" train "$C" : -n 1 "$RD" train "$C" --seed -4
has bad_seed "rank 3 (mpiexec segment 2): --seed: '-4' is not a non-negative integer" 1
launch 2 unknown_cmd -n 1 "$RD" train "$C" : -n 3 "$RD" trian "$C"
has unknown_cmd "ranks 1-3 (mpiexec segment 2): unknown command 'trian'" 1
launch 2 no_cmd -n 3 "$RD" train "$C" : -n 1 "$RD"
has no_cmd "rank 3 (mpiexec segment 2): no command given" 1
launch 2 help_some -n 3 "$RD" train "$C" : -n 1 "$RD" train "$C" --help
has help_some "--help was given on rank 3 (mpiexec segment 2) only" 1
# The same error on every rank: the message once, without rank names (as without mpiexec).
launch 2 typo_all -n 4 "$RD" train "$C" --sed 3
has typo_all "recdistill train: unknown option '--sed'" 1
[ -e "$TMP/r1" ] && bad "a refused launch made its run folder"

# 2. Arguments that differ between segments are refused, naming the option and the ranks.
launch 2 out_seed -n 1 "$RD" train "$C" --out "$TMP/a" : -n 3 "$RD" train "$C" --out "$TMP/b" --seed 9
has out_seed "--out differs:" 1
has out_seed "rank 0 (mpiexec segment 1): $TMP/a"
has out_seed "ranks 1-3 (mpiexec segment 2): $TMP/b"
has out_seed "--seed differs:" 1
[ -e "$TMP/a" ] || [ -e "$TMP/b" ] && bad "out_seed: a refused launch made a run folder"
launch 2 missing_cfg -n 1 "$RD" train "$C" --out "$TMP/a" : -n 3 "$RD" train "$TMP/none.yaml" --out "$TMP/a"
has missing_cfg "CONFIG (the file's content) differs:"
has missing_cfg "ranks 1-3 (mpiexec segment 2): cannot read it: No such file or directory"
sed 's/seed: 7/seed: 8/' "$C" >"$TMP/other.yaml"
launch 2 other_cfg -n 2 "$RD" train "$C" : -n 2 "$RD" train "$TMP/other.yaml"
has other_cfg "CONFIG (the file's content) differs:"

# Two builds: OTHER is a copy of the binary with another source digest in its build identity
# (the line between the markers "RD_BUILD_ID{" and "\0}" of app/build_id.c, changed in place:
# what another commit, built anywhere, has). SAME is a plain copy at another path: the same
# build. No option or environment variable changes a binary's identity.
mkdir -p "$TMP/other" "$TMP/same"
OTHER="$TMP/other/recdistill" SAME="$TMP/same/recdistill"
cp "$RD" "$OTHER" && cp "$RD" "$SAME" || bad "cannot copy $RD"
python3 - "$OTHER" <<'EOF_PY' || bad "cannot give the copy $OTHER another build identity"
import sys
path = sys.argv[1]
b = bytearray(open(path, "rb").read())
mark = b"RD_BUILD_ID{"
if b.count(mark) != 1:
    sys.exit("the build identity's marker is in the binary %d times, not once" % b.count(mark))
at = b.index(b" src=", b.index(mark)) + len(b" src=")
b[at] = ord("0") if b[at] != ord("0") else ord("1")
open(path, "wb").write(b)
EOF_PY
# VER: a copy whose identity differs in the version alone (a field without a key).
VER="$TMP/ver/recdistill"
mkdir -p "$TMP/ver" && cp "$RD" "$VER" || bad "cannot copy $RD"
python3 - "$VER" <<'EOF_PY' || bad "cannot give the copy $VER another version"
import sys
path = sys.argv[1]
b = bytearray(open(path, "rb").read())
at = b.index(b" ", b.index(b" ", b.index(b"RD_BUILD_ID{")) + 1) - 1  # the version's last byte
b[at] = ord("7") if b[at] != ord("7") else ord("8")
open(path, "wb").write(b)
EOF_PY

# 3. The same arguments on every segment: trains; --seed takes 2^64 - 1 (run.seed's range), and
#    the same path spelled another way (./) is the same CONFIG. The second segment runs a copy of
#    the binary at another path: the same build (its identity is in report.json).
launch 0 same -n 1 "$RD" train "$C" --out "$TMP/run" --seed 18446744073709551615 : \
    -n 3 "$SAME" train "$TMP/./tiny.yaml" --out "$TMP/run" --seed 18446744073709551615
grep -q '"seed": 18446744073709551615' "$TMP/run/report.json" 2>/dev/null ||
    bad "same: report.json lacks the --seed 18446744073709551615"
grep -qF "\"build\": \"$("$RD" --version)\"" "$TMP/run/report.json" 2>/dev/null ||
    bad "same: report.json lacks the build identity '$("$RD" --version)'"
grep -q "different builds" "$TMP/same.err" && bad "same: copies of one binary taken for two builds"
# --resume only on the PS segment used to train the workers from scratch, exit 0.
launch 2 resume_one -n 1 "$RD" train "$C" --out "$TMP/run" --resume "$TMP/run/ckpt" : \
    -n 3 "$RD" train "$C" --out "$TMP/run"
has resume_one "--resume differs:" 1
has resume_one "ranks 1-3 (mpiexec segment 2): (not given)"
[ -e "$TMP/run/report.json" ] || bad "resume_one: the refused launch removed the earlier report.json"
"$RD" train "$C" --seed 18446744073709551616 >/dev/null 2>"$TMP/seed.err"
[ $? = 2 ] && grep -q "is not a non-negative integer (0..18446744073709551615)" "$TMP/seed.err" ||
    bad "--seed 2^64 is not a usage error: $(cat "$TMP/seed.err")"

# 3b. Segments in different working directories. The same relative CONFIG name there names two
#     files: the message shows both (it showed "c.yaml" twice).
mkdir -p "$TMP/wa" "$TMP/wb"
cp "$C" "$TMP/wa/c.yaml" && cp "$C" "$TMP/wb/c.yaml"
launch 2 wdir_cfg -n 1 -wdir "$TMP/wa" "$RD" train c.yaml : -n 3 -wdir "$TMP/wb" "$RD" train c.yaml
has wdir_cfg "rank 0 (mpiexec segment 1): c.yaml ($TMP/wa/c.yaml)" 1
has wdir_cfg "ranks 1-3 (mpiexec segment 2): c.yaml ($TMP/wb/c.yaml)" 1
# One CONFIG whose run.out_dir (runs/slurm-tiny) is relative, its data.dir absolute (the split
# run then trained to exit 0): refused before anything is made.
sed "s|^data:|data:\n  dir: $TMP/wdata|" "$C" >"$TMP/wdata.yaml"
launch 2 wdir_rel -n 1 -wdir "$TMP/wa" "$RD" train "$TMP/wdata.yaml" : \
    -n 3 -wdir "$TMP/wb" "$RD" train "$TMP/wdata.yaml"
has wdir_rel "the ranks of this launch run in different working directories, so the run's relative paths (run.out_dir 'runs/slurm-tiny', ...)" 1
has wdir_rel "rank 0 (mpiexec segment 1): $TMP/wa" 1
has wdir_rel "ranks 1-3 (mpiexec segment 2): $TMP/wb" 1
[ -e "$TMP/wa/runs" ] || [ -e "$TMP/wb/runs" ] || [ -e "$TMP/wdata" ] &&
    bad "wdir_rel: a refused launch made a run or data folder"
rm -rf "$TMP/wa/runs" "$TMP/wb/runs"
# Directories with a long common start (deeper than the 160-byte record) are told apart by
# their ends (both were shown as the same cut start).
LONG="$TMP$(printf '/a_rather_long_folder_name_%02d' 1 2 3 4 5 6)"
mkdir -p "$LONG/wa" "$LONG/wb"
launch 2 wdir_long -n 1 -wdir "$LONG/wa" "$RD" train "$TMP/wdata.yaml" : \
    -n 3 -wdir "$LONG/wb" "$RD" train "$TMP/wdata.yaml"
has wdir_long "$(printf %s "$LONG/wa" | tail -c 100)" 1
has wdir_long "$(printf %s "$LONG/wb" | tail -c 100)" 1
# One directory under two names on a node (a bind mount) is one directory: it trains (root only).
mkdir -p "$TMP/bind_a" "$TMP/bind_b"
if [ "$(id -u)" = 0 ] && mount --bind "$TMP/bind_a" "$TMP/bind_b" 2>/dev/null; then
    launch 0 wdir_bind -n 1 -wdir "$TMP/bind_a" "$RD" train "$TMP/wdata.yaml" : \
        -n 3 -wdir "$TMP/bind_b" "$RD" train "$TMP/wdata.yaml"
    umount "$TMP/bind_b" || umount -l "$TMP/bind_b"
    [ -s "$TMP/bind_a/runs/slurm-tiny/report.json" ] || bad "wdir_bind: no report.json"
fi
rm -rf "$TMP/wdata"
# Every path absolute (--out): one run folder, wherever the ranks start.
launch 0 wdir_abs -n 1 -wdir "$TMP/wa" "$RD" train "$C" --out "$TMP/wrun" : \
    -n 3 -wdir "$TMP/wb" "$RD" train "$C" --out "$TMP/wrun"
for f in report.json teacher.metrics.csv student.metrics.csv student_raw.metrics.csv; do
    [ -s "$TMP/wrun/$f" ] || bad "wdir_abs: no $f in the run folder"
done
[ -e "$TMP/wa/runs" ] || [ -e "$TMP/wb/runs" ] && bad "wdir_abs: a launch with --out wrote under a working directory"

# 3c. Segments that cut a role group (here the 2-rank teacher: ranks 1-2) train as well, with a
#     warning that per-segment options do not follow the roles; whole groups per segment: none.
sed 's/{name: teacher, role: teacher, model: teacher}/{name: teacher, role: teacher, model: teacher, ranks: 2}/' \
    "$C" >"$TMP/t2.yaml"
launch 0 seg_cut -n 2 "$RD" train "$TMP/t2.yaml" --out "$TMP/s1" : -n 3 "$RD" train "$TMP/t2.yaml" --out "$TMP/s1"
has seg_cut "warning: ranks 1-2 (job 'teacher') are split over mpiexec segments 1-2: ranks take their roles from their numbers" 1
launch 0 seg_whole -n 1 "$RD" train "$TMP/t2.yaml" --out "$TMP/s2" : -n 2 "$RD" train "$TMP/t2.yaml" --out "$TMP/s2" : \
    -n 2 "$RD" train "$TMP/t2.yaml" --out "$TMP/s2"
grep -q "are split over mpiexec segments" "$TMP/seg_whole.err" && bad "seg_whole: a warning for whole groups per segment"
grep -q "are split over mpiexec segments" "$TMP/same.err" && bad "same: a warning for -n 1 : -n 3"

# 4. Without mpiexec: --help still works (exit 0, on stdout), a usage error still exits 2.
"$RD" train --help >"$TMP/help.out" 2>&1 && grep -q "usage: mpiexec -n N recdistill train" "$TMP/help.out" ||
    bad "train --help without mpiexec: $(head -3 "$TMP/help.out")"
"$RD" train >/dev/null 2>"$TMP/none.err"
[ $? = 2 ] && grep -q "recdistill train: no CONFIG given" "$TMP/none.err" || bad "train without CONFIG: $(head -2 "$TMP/none.err")"

# A world of one process (no mpiexec, or srun without --mpi=pmi2) for a 4-rank config: said so.
"$RD" train "$C" --out "$TMP/solo" >/dev/null 2>"$TMP/solo.err"
[ $? = 2 ] && grep -q "the launch has 1 rank but the config needs 4 (ps_ranks 1 + teacher 1 + student 1 + student_raw 1); start it with mpiexec -n 4 (or the matching MPMD/srun layout): this process is a world of its own (started without mpiexec, or by srun without --mpi=pmi2)" "$TMP/solo.err" ||
    bad "one process for a 4-rank config: $(head -3 "$TMP/solo.err")"

# mpiexec -n 1 started it: too few ranks, not a world of its own (it was said to be).
launch 2 one_rank -n 1 "$RD" train "$C" --out "$TMP/one"
has one_rank "the launch has 1 rank but the config needs 4" 1
grep -q "world of its own" "$TMP/one_rank.err" && bad "mpiexec -n 1: said to be started without mpiexec"

# 5. A command that does not use MPI, in a launch of more than one process.
NOMPI="does not use MPI: it runs as one process, on its own (without mpiexec or srun)"
launch 2 mix_config -n 3 "$RD" train "$C" --out "$TMP/m1" : -n 1 "$RD" config "$C"
has mix_config "recdistill train: rank 3 (mpiexec segment 2): 'config' $NOMPI, not as one of the 4 processes" 1
has mix_config "every rank of the launch stops" 1
launch 2 mix_first -n 1 "$RD" prepare "$C" : -n 3 "$RD" train "$C" --out "$TMP/m2"
has mix_first "recdistill: rank 0 (mpiexec segment 1): 'prepare' $NOMPI" 1
launch 2 mix_tools -n 2 "$RD" train "$C" --out "$TMP/m3" : -n 1 "$RD" table stats "$TMP" : \
    -n 1 "$RD" tokens stats "$TMP"
has mix_tools "rank 2 (mpiexec segment 2): 'table' $NOMPI" 1
has mix_tools "rank 3 (mpiexec segment 3): 'tokens' $NOMPI" 1
for m in m1 m2 m3; do [ -e "$TMP/$m" ] && bad "a refused mixed launch made its run folder $m"; done
# Every rank the same command: refused once, without rank names; nothing runs.
launch 2 all_config -n 2 "$RD" config "$C"
has all_config "recdistill: 'config' $NOMPI, not as one of the 2 processes of a parallel launch" 1
grep -q "^run:" "$TMP/all_config.out" && bad "all_config: the refused launch printed the configuration"
launch 2 all_help -n 2 "$RD" table --help
has all_help "'table' $NOMPI" 1
# One process under mpiexec: runs as before.
launch 0 one_config -n 1 "$RD" config "$C"
grep -q "^run:" "$TMP/one_config.out" || bad "one_config: no configuration printed: $(head -3 "$TMP/one_config.err")"

# 6. Two builds in one launch: refused on every rank before anything is made (no run folder),
#    whichever segment has rank 0, rank 0 naming each build, its ranks, segment, host and path.
ID="$("$RD" --version)" OTHER_ID="$("$OTHER" --version)"
[ -n "$ID" ] && [ "$ID" != "$OTHER_ID" ] || bad "--version: '$ID' and '$OTHER_ID' (the copy)"
HOST="$(hostname)"
launch 2 builds -n 2 "$RD" train "$C" --out "$TMP/b1" : -n 2 "$OTHER" train "$C" --out "$TMP/b1"
has builds "recdistill train: the ranks of this launch run different builds of recdistill" 1
has builds "  build 1: $ID" 1
has builds "    ranks 0, 1 (mpiexec segment 1) on $HOST: $(readlink -f "$RD")" 1
has builds "  build 2: $OTHER_ID" 1
has builds "    ranks 2, 3 (mpiexec segment 2) on $HOST: $(readlink -f "$OTHER")" 1
has builds "  they differ in: src" 1
launch 2 builds_first -n 1 "$OTHER" train "$C" --out "$TMP/b2" : -n 3 "$RD" train "$C" --out "$TMP/b2"
has builds_first "  build 1: $OTHER_ID" 1
has builds_first "    ranks 1-3 (mpiexec segment 2) on $HOST: $(readlink -f "$RD")" 1
# Builds that differ in the version alone: the line says so (it named key=value fields only).
launch 2 builds_ver -n 2 "$RD" train "$C" --out "$TMP/b5" : -n 2 "$VER" train "$C" --out "$TMP/b5"
has builds_ver "  build 2: $("$VER" --version)" 1
has builds_ver "  they differ in: version" 1
# Three segments, two of them the same build at two paths: one build, two places.
launch 2 builds_three -n 1 "$RD" train "$C" --out "$TMP/b3" : -n 1 "$OTHER" train "$C" \
    --out "$TMP/b3" : -n 2 "$SAME" train "$C" --out "$TMP/b3"
has builds_three "    rank 0 (mpiexec segment 1) on $HOST: $(readlink -f "$RD")" 1
has builds_three "    ranks 2, 3 (mpiexec segment 3) on $HOST: $(readlink -f "$SAME")" 1
has builds_three "    rank 1 (mpiexec segment 2) on $HOST: $(readlink -f "$OTHER")" 1
# The build check comes first: another build's usage error (or a command that does not use MPI)
# is not reached, and the launch still ends together.
launch 2 builds_usage -n 3 "$RD" train "$C" --out "$TMP/b4" : -n 1 "$OTHER" trian "$C"
has builds_usage "different builds of recdistill" 1
for b in b1 b2 b3 b4 b5; do [ -e "$TMP/$b" ] && bad "a launch of two builds made its run folder $b"; done

[ "$fail" = 0 ] && echo "mpmd_args: ok"
exit "$fail"
