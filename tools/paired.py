#!/usr/bin/env python3
"""paired.py — compare two variants of one experiment seed by seed: for each slice (holdout, its
warm slice, the mean over the stream windows) the AUC of one job in variant B minus variant A on
the seeds both have, as mean ± std (sample std over seeds), how many seeds are above zero, and
the relative change against A's mean.

    tools/paired.py [-j JOB] [-m METRIC] [--seeds] A_DIR[,A_DIR...] B_DIR[,B_DIR...]

Each DIR holds the seed-S/report.json run folders of tools/seeds.sh (or tools/ablations.sh's
OUT/<variant>); a comma joins several folders of one variant (a sweep extended with -s). JOB
defaults to teacher, METRIC to auc (gauc, logloss work too). --seeds prints every seed's pair.
A seed run in both folders of one variant, or a report without the job, is an error.
"""
import json, math, os, re, sys


def die(msg):
    sys.stderr.write("paired.py: %s\n" % msg)
    sys.exit(2)


def load(dirs, job, metric):
    """{seed: {slice: value}} of one variant."""
    out = {}
    for d in dirs.split(","):
        if not os.path.isdir(d):
            die("%s: no such folder" % d)
        for name in sorted(os.listdir(d)):
            m = re.fullmatch(r"seed-(\d+)", name)
            path = os.path.join(d, name, "report.json")
            if not m or not os.path.isfile(path):
                continue
            seed = int(m.group(1))
            if seed in out:
                die("seed %d is in two folders of %s" % (seed, dirs))
            try:
                with open(path) as f:
                    r = json.load(f)
            except (OSError, ValueError) as e:
                die("%s: %s" % (path, e))
            vals = {}
            for sl in ("holdout", "warm", "stream"):
                v = ((r.get(sl) or {}).get(job) or {}).get(metric)
                if sl == "holdout" and v is None:
                    die("%s: no %s.%s.%s" % (path, sl, job, metric))
                vals[sl] = v
            out[seed] = vals
    if not out:
        die("%s: no seed-S/report.json" % dirs)
    return out


def main(argv):
    job, metric, show = "teacher", "auc", False
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-j", "-m") and i + 1 < len(argv):
            if a == "-j":
                job = argv[i + 1]
            else:
                metric = argv[i + 1]
            i += 2
            continue
        if a == "--seeds":
            show = True
        elif a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        elif a.startswith("-"):
            die("unknown option %s (see --help)" % a)
        else:
            args.append(a)
        i += 1
    if len(args) != 2:
        die("expected two variants, A and B (see --help)")
    A, B = load(args[0], job, metric), load(args[1], job, metric)
    seeds = sorted(set(A) & set(B))
    if not seeds:
        die("no seed is in both variants")
    print("%s %s, B − A over %d paired seeds (%d..%d); A = %s, B = %s"
          % (job, metric, len(seeds), seeds[0], seeds[-1], args[0], args[1]))
    for sl in ("holdout", "warm", "stream"):
        pairs = [(s, A[s][sl], B[s][sl]) for s in seeds
                 if A[s][sl] is not None and B[s][sl] is not None]
        if not pairs:
            continue
        d = [b - a for _, a, b in pairs]
        n = len(d)
        mean = sum(d) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else float("nan")
        ma = sum(a for _, a, _ in pairs) / n
        mb = sum(b for _, _, b in pairs) / n
        up = sum(1 for x in d if x > 0)
        print("  %-8s A %.4f  B %.4f  B−A %+.4f ± %.4f (%+.2f %%, se %.4f), %d of %d seeds above"
              % (sl, ma, mb, mean, sd, 100.0 * mean / ma, sd / math.sqrt(n) if n > 1 else
                 float("nan"), up, n))
        if show:
            print("           " + " ".join("%d:%+.4f" % (s, b - a) for s, a, b in pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
