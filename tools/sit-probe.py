#!/usr/bin/env python3
"""sit-probe.py — a click log whose labels only a model reading a user's EARLIER events can
predict, and the IAT config that builds user-order tokens over it: a probe of what the source
model's Source Instance Transformer (SIT) learns (docs/iat.md, "What the SIT learns").

    tools/sit-probe.py [--task prev|recall] [--users U] [--events N] [--items I] [--seed S]
                       [--oracle] OUT
    mpiexec.mpich -n 2 build/recdistill train OUT/config.yaml --out OUT/run
    tools/variant.sh -k 1 OUT/config.yaml OUT/pairs tokens.sit_pairs=true   # a variant of it

Every event has a user, an item (uniform over I items) and a request context ctx (uniform over
0..3); its label is
  prev    the label of the user's previous event, flipped with probability 0.1 (a user's first
          label: 1 with probability 0.3). A SIT that reads earlier labels (tokens.sit_labels)
          predicts it; a model of the event alone cannot (its AUC stays 0.5).
  recall  30 % of a user's events after its 32nd repeat the item of one of its events 4..32
          events back; such a follow-up copies that event's label when that event's ctx was
          even, and is 1 with probability 0.4 otherwise, as is every other event. A model must
          find the earlier event of the same item and read its label and its context: the
          item-ID history gives the label but not the context; the user-order tokens could
          carry the context (it moves nothing in its own event).
--oracle adds the column `deliberate` (1 when ctx is even), a feedback field stored beside each
token (tokens.side), so that the teacher reads with every earlier event what a token would have
to carry for it: the most user-order tokens could give on `recall`.
Events interleave users uniformly in time (one per second). The log is OUT/log.csv (header
user,item,ctx,click,ts); OUT/config.yaml reads it (absolute path) with one PS rank and a teacher
whose tokens come from a user-order source model (1 SIT layer, window 32). The train log prints
the source model's progressive AUC for the batch period, the stream and the holdout (tokenised
without training: the out-of-sample figure).
"""
import argparse
import os
import random
import sys

CONFIG = """# written by tools/sit-probe.py --task {task} --users {users} --events {events} --items {items} --seed {seed}{oracle}
run: {{name: sit-probe-{task}, seed: 42}}
cluster:
  ps_ranks: 1
  jobs:
  - {{name: teacher, role: teacher, model: teacher}}
data:
  source: csv
  input: {input}
  history_max: 256
  schema:
    path: log.csv
    header: true
    columns: [user, item, ctx, click, ts{extra_col}]
    user_column: user
    item_column: item
    time_column: ts
    time_format: unix
    label: "click >= 1"
    fields:
    - {{name: ctx}}{extra_field}
  split: {{batch_fraction: 0.8, holdout_fraction: 0.1, stream_windows: 5}}
ps:
  tables:
  - {{name: t_user, dim: 16, optimizer: {{type: adagrad, lr: 0.1}}}}
  - {{name: t_item, dim: 16, optimizer: {{type: adagrad, lr: 0.1}}}}
  - {{name: k_user, dim: 8, optimizer: {{type: adagrad, lr: 0.1}}}}
  - {{name: k_item, dim: 8, optimizer: {{type: adagrad, lr: 0.1}}}}
models:
- name: teacher
  features:
  - {{field: user, table: t_user}}
  - {{field: item, table: t_item}}
  - {{field: ctx, table: t_item}}
  seq: {{kind: din, length: 256}}
  mlp: [64, 32]
  layer_norm: true
  tokens: {{scheme: 2, length: 16, kind: din, adapter: 16, gate: true, search: 256}}
- name: source
  features:
  - {{field: user, table: k_user}}
  - {{field: item, table: k_item}}
  - {{field: ctx, table: k_item}}
  mlp: [32, 16]
train: {{batch_size: 256, epochs: 3, lr: 2e-3}}
output: {{progress_every_s: 30}}
tokens: {{dim: 16, scheme: 2, sit_layers: 1, window: 32, source_model: source{extra_tok}}}
"""


def positive(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{s} is not a positive integer")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["prev", "recall"], default="recall")
    ap.add_argument("--users", type=positive, default=200)
    ap.add_argument("--events", type=positive, default=300, help="events per user")
    ap.add_argument("--items", type=positive, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--oracle", action="store_true",
                    help="store each event's context parity beside its token (tokens.side)")
    ap.add_argument("out")
    a = ap.parse_args()
    if a.task == "recall" and a.events <= 32:
        sys.exit("sit-probe.py: --task recall needs --events > 32 (follow-ups start after the 32nd)")
    rng = random.Random(a.seed)
    order = sorted((rng.random(), u) for u in range(a.users) for _ in range(a.events))
    state = {}
    hist = {u: [] for u in range(a.users)}
    rows = []
    for ts, (_, u) in enumerate(order):
        ctx = rng.randrange(4)
        if a.task == "prev":
            if u not in state:
                state[u] = rng.random() < 0.3
            elif rng.random() < 0.1:
                state[u] = not state[u]
            item, lab = rng.randrange(a.items), int(state[u])
        else:
            h = hist[u]
            if len(h) >= 32 and rng.random() < 0.3:
                item, c0, l0 = h[-rng.randint(4, 32)]
                lab = l0 if c0 % 2 == 0 else int(rng.random() < 0.4)
            else:
                item, lab = rng.randrange(a.items), int(rng.random() < 0.4)
            h.append((item, ctx, lab))
        extra = f",{int(ctx % 2 == 0)}" if a.oracle else ""
        rows.append(f"{u},{item},{ctx},{lab},{ts + 1000}{extra}\n")
    out = os.path.abspath(a.out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        sys.exit(f"sit-probe.py: {a.out}: cannot make the folder: {e.strerror}")
    header = "user,item,ctx,click,ts" + (",deliberate" if a.oracle else "") + "\n"
    config = CONFIG.format(
        task=a.task, users=a.users, events=a.events, items=a.items, seed=a.seed, input=out,
        oracle=" --oracle" if a.oracle else "",
        extra_col=", deliberate" if a.oracle else "",
        extra_field="\n    - {name: deliberate, kind: feedback}" if a.oracle else "",
        extra_tok=", side: [deliberate]" if a.oracle else "")
    for name, text in (("log.csv", header + "".join(rows)), ("config.yaml", config)):
        tmp = os.path.join(out, name + ".tmp")
        try:
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, os.path.join(out, name))
        except OSError as e:
            if os.path.exists(tmp):
                os.unlink(tmp)
            sys.exit(f"sit-probe.py: {os.path.join(out, name)}: cannot write: {e.strerror}")
    print(f"{out}/log.csv: {len(rows)} events; run:\n"
          f"  mpiexec.mpich -n 2 build/recdistill train {out}/config.yaml --out {out}/run")


if __name__ == "__main__":
    main()
