#!/usr/bin/env python3
"""sit-probe-tokens.py — how much of each event's request context its stored token holds, on a
tools/sit-probe.py log: a linear probe (least squares of "ctx is even" on the token's d values
and a constant) fitted on the tokens of the even-numbered users and scored, as an AUC, on those
of the odd-numbered ones. 0.5 = the tokens hold nothing of it.

    tools/sit-probe-tokens.py [--rd build/recdistill] PROBE RUN
    tools/sit-probe-tokens.py [--rd build/recdistill] --side K RUN

PROBE is the folder tools/sit-probe.py wrote (its log.csv), RUN a run folder of its config (its
tokens/ store). Every user's tokens are read with `recdistill tokens fetch --user-id`.
With --side K the target is instead the store's own side value K of each token (> 0.5 or not),
over every user of the store, the users split by the parity of their position in key order:
e.g. a synthetic run with data.synthetic.feedback 2 and tokens.side [engagement], whose side
value is the event's context kind (deliberate or passive).
"""
import argparse
import csv
import os
import subprocess
import sys


def die(msg):
    sys.exit(f"sit-probe-tokens.py: {msg}")


def run(cmd):
    """cmd's completed process; a recdistill that cannot be started is an error naming --rd."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        die(f"--rd {cmd[0]}: cannot run it: {e.strerror} (build it, or give --rd or RD)")


def read_log(path):
    ctx, users = {}, []
    try:
        with open(path, newline="") as f:
            rows = csv.DictReader(f)
            if not rows.fieldnames or not {"user", "ctx", "ts"} <= set(rows.fieldnames):
                die(f"{path}: not a sit-probe.py log (needs the columns user, ctx, ts)")
            for n, r in enumerate(rows, 2):
                try:
                    ctx[int(r["ts"])] = int(r["ctx"])
                    users.append(int(r["user"]))
                except ValueError:
                    die(f"{path}:{n}: user, ctx and ts must be integers")
    except OSError as e:
        die(f"{path}: {e.strerror}")
    if not ctx:
        die(f"{path}: no events")
    return ctx, sorted(set(users))


def tokens_of(rd, store, user, by="--user-id"):
    """(ts, side values, d values) of every token of a user."""
    p = run([rd, "tokens", "fetch", store, by, str(user), "--before", "9223372036854775807",
             "--n", "4096"])
    if p.returncode != 0:
        die(f"recdistill tokens fetch {store} {by} {user}: {p.stderr.strip()}")
    out, n_side = [], 0
    for line in p.stdout.splitlines():
        if line.startswith("#"):  # "# user U before T L n n_found N dim D side S"
            h = line.split()
            if "side" in h:
                n_side = int(h[h.index("side") + 1])
            continue
        f = line.split("\t")  # slot, ts, id, label, item, side values, d values
        v = [float(x) for x in f[5:]]
        out.append((int(f[1]), v[:n_side], v[n_side:]))
    return out


def store_users(rd, store):
    p = run([rd, "tokens", "users", store, "--limit", "100000000"])
    if p.returncode != 0:
        die(f"recdistill tokens users {store}: {p.stderr.strip()}")
    return [line.split("\t")[0] for line in p.stdout.splitlines() if not line.startswith("#")]


def solve(A, b):
    n = len(b)
    M = [A[j][:] + [b[j]] for j in range(n)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(M[r][c]))
        M[c], M[p] = M[p], M[c]
        if abs(M[c][c]) < 1e-12:
            continue
        for r in range(n):
            if r != c and M[r][c] != 0.0:
                f = M[r][c] / M[c][c]
                for k in range(c, n + 1):
                    M[r][k] -= f * M[c][k]
    return [M[j][n] / M[j][j] if abs(M[j][j]) >= 1e-12 else 0.0 for j in range(n)]


def auc(scored):
    scored.sort()
    pos = sum(y for _, y in scored)
    neg = len(scored) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks, i = 0.0, 0
    while i < len(scored):  # average ranks over ties
        j = i
        while j < len(scored) and scored[j][0] == scored[i][0]:
            j += 1
        ranks += sum(y for _, y in scored[i:j]) * (i + 1 + j) / 2.0
        i = j
    return (ranks - pos * (pos + 1) / 2.0) / (pos * neg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rd", default=os.environ.get("RD", "build/recdistill"))
    ap.add_argument("--side", type=int, default=None, metavar="K",
                    help="probe the store's side value K instead of a probe log's context")
    ap.add_argument("paths", nargs="+", metavar="PROBE RUN | RUN")
    a = ap.parse_args()
    # Usage errors exit 2 with the usage, as argparse's own (the wrong number of folders exited
    # 1, the code of a failed probe).
    if len(a.paths) != (1 if a.side is not None else 2):
        ap.error("give PROBE RUN, or --side K RUN")
    if a.side is not None and a.side < 0:
        ap.error(f"--side {a.side}: K is a side value's index, 0 or more")
    store = os.path.join(a.paths[-1], "tokens")
    if store.startswith("-"):  # a path, not an option of recdistill's ("unknown option")
        store = os.path.join(".", store)
    if not os.path.isdir(store):
        die(f"{store}: no token store (a run folder?)")
    X, Y, U = [], [], []
    if a.side is None:
        ctx, users = read_log(os.path.join(a.paths[0], "log.csv"))
        for u in users:
            for ts, _, tok in tokens_of(a.rd, store, u):
                if ts not in ctx:
                    die(f"{store}: user {u} has a token at time {ts} that is not in the log")
                X.append([1.0] + tok)
                Y.append(1.0 if ctx[ts] % 2 == 0 else 0.0)
                U.append(u)
        what = "'ctx even'"
    else:
        for n, key in enumerate(store_users(a.rd, store)):
            for _, side, tok in tokens_of(a.rd, store, key, "--user"):
                if a.side < 0 or a.side >= len(side):
                    die(f"{store}: --side {a.side}, but its tokens have {len(side)} side values")
                X.append([1.0] + tok)
                Y.append(1.0 if side[a.side] > 0.5 else 0.0)
                U.append(n)
        what = f"side value {a.side} > 0.5"
    if not X:
        die(f"{store}: no tokens")
    d = len(X[0])
    A = [[0.0] * d for _ in range(d)]
    b = [0.0] * d
    for x, y, u in zip(X, Y, U):
        if u % 2:
            continue
        for j in range(d):
            b[j] += x[j] * y
            row = A[j]
            for k in range(d):
                row[k] += x[j] * x[k]
    w = solve(A, b)
    test = [(sum(p * q for p, q in zip(w, x)), int(y)) for x, y, u in zip(X, Y, U) if u % 2]
    print(f"{store}: {len(X)} tokens of d {d - 1}; linear probe of {what} on the odd users' "
          f"tokens: AUC {auc(test):.4f}")


if __name__ == "__main__":
    main()
