#!/usr/bin/env python3
"""lmdb-damage-sweep.py — damage copies of a token store's or a table checkpoint's shard file at
random and count how the read-only tools end: a clear error (exit 1), ok (the damage hit unused
pages or values that no check reads), or a defect: killed by a signal, a hang, another exit code,
or partial output.

usage: tools/lmdb-damage-sweep.py RECDISTILL STORE [--trials N] [--seed S] [--modes M,...]
                                  [--keep DIR]

  RECDISTILL  the recdistill binary (build/recdistill)
  STORE       a token store folder (MANIFEST + shard-NNNN/) or a table checkpoint (MANIFEST +
              shard-NNNNN/, a step-N folder written by `recdistill train`); it is only copied,
              never changed. A small store: mpiexec.mpich -n 1 build/bench/bench_tokens
              --users 300 --per-user 200 --L 64 --batch 32 --iters 2 --rounds 1 --dir D --keep
              (D/store)
  --modes     bits (40 random bit flips), page (one page of random bytes), zero (one page of
              zeros), header (the 16-byte header of one page), ptrs (48 bytes of one page's node
              offsets); default all
  --keep DIR  copy each damaged store that showed a defect to DIR/<mode>-<trial> (DIR is
              created; its stderr beside it), to reproduce it
Each trial damages shard 0 of a fresh copy and runs, on a token store, `tokens verify`, `tokens
stats` and `tokens compact --out`; on a table checkpoint, `table verify`, `table stats`, `table
compact --out` and `table reshard --shards 2 --out` (an --out must not exist when it fails);
20 s timeout each.
Exit status: 0 when no defect was seen, 1 otherwise, 2 on a usage error.
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

MODES = ("bits", "page", "zero", "header", "ptrs")
PAGE = 4096


def usage(msg):
    print("lmdb-damage-sweep.py: %s\n%s" % (msg, __doc__.split("\n\n")[1]), file=sys.stderr)
    sys.exit(2)


def damage(path, mode, rnd):
    b = bytearray(open(path, "rb").read())
    if len(b) < 4 * PAGE:
        sys.exit("lmdb-damage-sweep.py: %s: fewer than 4 pages" % path)
    o = rnd.randrange(2, len(b) // PAGE) * PAGE  # never the two meta pages
    if mode == "bits":
        for _ in range(40):
            p = rnd.randrange(2 * PAGE, len(b))
            b[p] ^= 1 << rnd.randrange(8)
    elif mode == "page":
        b[o:o + PAGE] = bytes(rnd.randrange(256) for _ in range(PAGE))
    elif mode == "zero":
        b[o:o + PAGE] = bytes(PAGE)
    elif mode == "header":
        b[o:o + 16] = bytes(rnd.randrange(256) for _ in range(16))
    elif mode == "ptrs":
        b[o + 16:o + 64] = bytes(rnd.randrange(256) for _ in range(48))
    open(path, "wb").write(b)


def main():
    args = sys.argv[1:]
    trials, seed, modes, keep = 40, 1, list(MODES), None
    pos = []
    if "-h" in args or "--help" in args:
        print(__doc__.strip())
        sys.exit(0)
    while args:
        a = args.pop(0)
        if a in ("--trials", "--seed", "--modes", "--keep"):
            if not args:
                usage("%s needs a value" % a)
            v = args.pop(0)
            try:
                if a == "--trials":
                    trials = int(v)
                elif a == "--seed":
                    seed = int(v)
            except ValueError:
                usage("%s: not a number: %s" % (a, v))
            if a == "--keep":
                keep = v
            if a == "--modes":
                modes = v.split(",")
                for m in modes:
                    if m not in MODES:
                        usage("unknown mode %s (one of %s)" % (m, ",".join(MODES)))
        elif a.startswith("-"):
            usage("unknown option %s" % a)
        else:
            pos.append(a)
    if len(pos) != 2 or trials < 1:
        usage("need RECDISTILL and STORE, and --trials >= 1")
    rd, store = pos
    if not (os.path.isfile(rd) and os.access(rd, os.X_OK)):
        usage("%s: not an executable recdistill binary" % rd)
    # The file checked, not a namesake on PATH (subprocess looks a name without a '/' up there).
    rd = os.path.abspath(rd)
    if os.path.isfile(os.path.join(store, "shard-0000", "data.mdb")):
        tool, shard = "tokens", "shard-0000"
        cmds = lambda c, o: (["verify", c], ["stats", c], ["compact", c, "--out", o])
    elif os.path.isfile(os.path.join(store, "shard-00000", "data.mdb")):
        tool, shard = "table", "shard-00000"
        cmds = lambda c, o: (["verify", c], ["stats", c], ["compact", c, "--out", o],
                             ["reshard", c, "--shards", "2", "--out", o])
    else:
        usage("%s: no shard-0000/data.mdb (token store) or shard-00000/data.mdb (table "
              "checkpoint)" % store)
    rnd = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="rd_damage_")
    counts, defects = {}, []
    try:
        for mode in modes:
            for t in range(trials):
                copy = os.path.join(tmp, "store")
                out = os.path.join(tmp, "compacted")
                shutil.rmtree(copy, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(store, copy)
                damage(os.path.join(copy, shard, "data.mdb"), mode, rnd)
                for cmd in cmds(copy, out):
                    shutil.rmtree(out, ignore_errors=True)
                    try:
                        r = subprocess.run([rd, tool] + cmd, capture_output=True, timeout=20)
                        rc = r.returncode
                    except subprocess.TimeoutExpired:
                        rc = "hang"
                    if rc == 0:
                        end = "ok"
                    elif rc == 1 and r.stderr.strip():
                        end = "error"
                        if "--out" in cmd and os.path.exists(out):
                            end = "partial output"
                    else:
                        end = "signal %d" % -rc if isinstance(rc, int) and rc < 0 else "exit %s" % rc
                    key = (mode, cmd[0], end)
                    counts[key] = counts.get(key, 0) + 1
                    if end not in ("ok", "error"):
                        defects.append("%s trial %d: %s %s: %s" % (mode, t, tool, cmd[0], end))
                        if keep:
                            kd = os.path.join(keep, "%s-%d" % (mode, t))
                            shutil.rmtree(kd, ignore_errors=True)
                            os.makedirs(keep, exist_ok=True)
                            # the damaged input (compact's failed output is not kept)
                            shutil.copytree(copy, kd)
                            err = r.stderr if rc != "hang" else b"(timeout)\n"
                            open(kd + ".%s.stderr" % cmd[0], "wb").write(err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for mode in modes:
        line = ", ".join("%s %s %d" % (c, e, n) for (m, c, e), n in sorted(counts.items())
                         if m == mode)
        print("%-6s (%d trials): %s" % (mode, trials, line))
    for d in defects:
        print("DEFECT", d)
    print("lmdb-damage-sweep.py: %d defects" % len(defects))
    sys.exit(1 if defects else 0)


if __name__ == "__main__":
    main()
