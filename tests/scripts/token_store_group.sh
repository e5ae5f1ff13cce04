#!/usr/bin/env bash
# token_store_group.sh — a token store shared by a team: built with umask 002 in a setgid folder
# of the team's group, another member of the group reads it (`tokens stats|users|fetch|verify`),
# copies it (`tokens compact`) and collects it (`tokens gc`). Every LMDB env was created 0644
# whatever the umask (and so was writer.lock), so a member who is not the owner could not even
# read it: a reader registers in the shard's lock.mdb and needs to write that file
# ("mdb_env_open: STORE/shard-0000: Permission denied"). Their modes now follow the umask, as the
# folders' did. A store built with umask 022 stays the owner's; its refusal says why (lock.mdb).
# Needs root (to run the second user); skips otherwise.
#
#   bash tests/scripts/token_store_group.sh build/recdistill
set -u
RD="$(realpath "${1:?usage: token_store_group.sh path/to/recdistill}")"
MPIEXEC="$(command -v mpiexec.mpich || true)"
[ -n "$MPIEXEC" ] || { echo "mpiexec.mpich not found: skip"; exit 77; }
command -v setpriv >/dev/null || { echo "setpriv(1) not found: skip"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "not root (a second user is needed): skip"; exit 77; }
# The second user: nobody, in a group of its own that owns the shared folder.
UID2=65534
GID2=$(id -g "$UID2" 2>/dev/null) || { echo "no user $UID2: skip"; exit 77; }
TMP="$(mktemp -d /tmp/rd_test_token_group_XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
chmod 755 "$TMP"
cd "$TMP" || exit 1
as2() { setpriv --reuid="$UID2" --regid="$GID2" --clear-groups "$@"; }
# The binary's folders must be reachable by the second user.
as2 test -x "$RD" || { echo "$RD is not executable by uid $UID2: skip"; exit 77; }

cat > c.yaml <<EOF
run: {name: grp, seed: 7, out_dir: $TMP/run}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: teacher}
data:
  source: synthetic
  dir: $TMP/data
  history_max: 8
  synthetic: {events: 2000, users: 10, items: 50, topics: 4, dim: 4}
  split: {batch_fraction: 0.7, holdout_fraction: 0.1, stream_windows: 1}
ps:
  tables:
    - {name: t_emb, dim: 4}
    - {name: k_emb, dim: 4}
models:
  - name: teacher
    features:
      - {field: user, table: t_emb}
      - {field: item, table: t_emb}
    mlp: [4]
    tokens: {scheme: 1, length: 4, kind: mean, adapter: 4}
  - name: source
    features:
      - {field: user, table: k_emb}
      - {field: item, table: k_emb}
    mlp: [4]
train: {batch_size: 64, eval_every: 1000}
output: {plot: false, progress_every_s: 0}
tokens: {dim: 4, scheme: 1, source_model: source}
EOF

# --- built with umask 002 in the group's setgid folder: the group reads, copies and collects ----
mkdir -m 2775 team && chgrp "$GID2" team
(umask 002 && OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" -n 2 "$RD" train c.yaml \
    --set tokens.store_dir="$TMP/team/store" >train.out 2>train.err) ||
    fail "train: $(cat train.err)"
S=team/store
[ -s $S/shard-0000/lock.mdb ] || fail "no lock.mdb in $S/shard-0000"
as2 test -w $S/shard-0000/lock.mdb || fail "lock.mdb is not writable by the group: $(ls -l $S/shard-0000)"
want=$("$RD" tokens stats $S | grep '^total:')
got=$(as2 "$RD" tokens stats $S 2>err | grep '^total:') || fail "stats by the group: $(cat err)"
if [ -z "$want" ] || [ "$want" != "$got" ]; then
    fail "stats by the group: '$got', by the owner: '$want'"
fi
as2 "$RD" tokens verify $S >/dev/null 2>err || fail "verify by the group: $(cat err)"
line=$(as2 "$RD" tokens users $S --limit 1 2>err | sed -n 2p) || fail "users by the group: $(cat err)"
read -r user n _ tmax _ <<<"$line"
if [ -z "${user:-}" ] || [ "${n:-0}" -le 0 ]; then fail "users by the group: '$line'"; fi
as2 "$RD" tokens fetch $S --user "$user" --before $((tmax + 1)) --n 4 >f2 2>err ||
    fail "fetch by the group: $(cat err)"
"$RD" tokens fetch $S --user "$user" --before $((tmax + 1)) --n 4 >f1 || fail "fetch by the owner"
cmp -s f1 f2 || fail "the group fetched other tokens than the owner"
as2 "$RD" tokens compact $S --out team/copy >/dev/null 2>err || fail "compact by the group: $(cat err)"
"$RD" tokens verify team/copy >/dev/null || fail "the group's copy does not verify"
as2 "$RD" tokens gc $S --before "$tmax" >gc.out 2>err || fail "gc by the group: $(cat err)"
grep -q "^deleted [1-9][0-9]* records before $tmax" gc.out || fail "gc by the group: $(cat gc.out)"
"$RD" tokens verify $S >/dev/null || fail "the store does not verify after the group's gc"

# --- built with umask 022: the owner's alone, and the refusal says why ---------------------------
mkdir -m 2775 solo && chgrp "$GID2" solo
(umask 022 && OPENBLAS_NUM_THREADS=1 timeout 300 "$MPIEXEC" -n 2 "$RD" train c.yaml --out run2 \
    --set tokens.store_dir="$TMP/solo/store" >train.out 2>train.err) ||
    fail "train (umask 022): $(cat train.err)"
as2 "$RD" tokens stats solo/store >out 2>err && fail "stats of a store without group write: accepted"
grep -q "solo/store/shard-0000: Permission denied: a reader registers its snapshot in the env's lock.mdb" err ||
    fail "refusal: $(cat err)"
echo "ok"
