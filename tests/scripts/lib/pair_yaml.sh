# shellcheck shell=bash
# lib/pair_yaml.sh — the small live pipeline that several scripts train (ckpt_signal.sh,
# term_ckpt.sh, resume.sh, rerun.sh): a teacher (mlp [16], table t_emb) and its distilled
# two-tower student (mlp [8], table s_emb) on 1 PS rank (world size 3), synthetic data. Sourced,
# not run: tests/CMakeLists.txt makes a test of each tests/scripts/*.sh, not of lib/.
#
# pair_yaml KEY=VALUE ...: print the config on stdout. Keys (default):
#   name (pair)        run.name                data (required)   data.dir
#   events (4000)      users (40)   items (200)   the synthetic log
#   ckpt_every ('')    ps.checkpoint_every ('' = no step cadence); checkpoint_keep is 100
#   batch (64)         epochs (2)              train.batch_size, train.epochs
#   distill ('{wait_ms: 600000}')   the distill: map ('' = none: the defaults)
#   teacher_seq ('')   the teacher's seq: map ('' = no history branch)
#   student_tower ('') the student's tower: list ('' = none)
#   plot (false)       output.plot
# An unknown key or a missing data= is an error (status 2, nothing printed).
pair_yaml() {
    local name=pair data="" events=4000 users=40 items=200 ckpt_every="" batch=64 epochs=2
    local distill="{wait_ms: 600000}" teacher_seq="" student_tower="" plot=false kv
    for kv in "$@"; do
        case ${kv%%=*} in
            name | data | events | users | items | ckpt_every | batch | epochs | distill | \
                teacher_seq | student_tower | plot) local "$kv" ;;
            *) echo "pair_yaml: unknown key '${kv%%=*}'" >&2; return 2 ;;
        esac
    done
    [ -n "$data" ] || { echo "pair_yaml: data= is required" >&2; return 2; }
    cat <<YAML
run: {name: $name, seed: 7}
cluster:
  ps_ranks: 1
  jobs:
    - {name: teacher, role: teacher, model: teacher}
    - {name: student, role: student, model: student, distill: true}
data:
  source: synthetic
  dir: $data
  history_max: 8
  synthetic: {events: $events, users: $users, items: $items, topics: 4, dim: 4}
  split: {batch_fraction: 0.7, holdout_fraction: 0.1, stream_windows: 2}
ps:
YAML
    [ -z "$ckpt_every" ] || echo "  checkpoint_every: $ckpt_every"
    cat <<YAML
  checkpoint_keep: 100
  tables:
    - {name: t_emb, dim: 8}
    - {name: s_emb, dim: 4}
models:
  - name: teacher
    features:
      - {field: user, table: t_emb}
      - {field: item, table: t_emb}
YAML
    [ -z "$teacher_seq" ] || echo "    seq: $teacher_seq"
    cat <<YAML
    mlp: [16]
  - name: student
    features:
      - {field: user, table: s_emb}
      - {field: item, table: s_emb}
    mlp: [8]
    two_towers: true
YAML
    [ -z "$student_tower" ] || echo "    tower: $student_tower"
    echo "train: {batch_size: $batch, epochs: $epochs}"
    [ -z "$distill" ] || echo "distill: $distill"
    echo "output: {plot: $plot, progress_every_s: 0}"
}
