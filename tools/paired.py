#!/usr/bin/env python3
"""paired.py — compare two variants of one experiment seed by seed: for each slice (holdout, its
warm slice, the mean over the stream windows) the AUC of one job in variant B minus variant A on
the seeds both have, as mean ± std (sample std over seeds), how many seeds are above zero, and
the relative change against A's mean.

    tools/paired.py [-j JOB] [-m METRIC] [--seeds] [--allow-missing] A_DIR[,A_DIR...] B_DIR[,B_DIR...]

Each DIR holds the seed-S/report.json run folders of tools/seeds.sh (or tools/ablations.sh's
OUT/<variant>); a comma joins several folders of one variant (a sweep extended with -s). JOB
defaults to teacher, METRIC to auc (gauc, logloss work too). --seeds prints every seed's pair.
A seed run in both folders of one variant (or twice under two names, seed-01 and seed-1), a
report without the job, or a holdout metric that is missing or not a number is an error (exit 2);
on the warm and stream slices a null or NaN value (undefined on that slice) leaves that seed's
pair out of the slice. Where A's mean is 0 the relative change is printed as undefined.
A seed-S folder without report.json (a failed or unfinished run) is an error too: dropping it
would bias the comparison towards the seeds that ran. --allow-missing skips such folders with a
warning on stderr instead. Seeds found in only one variant are left out of the pairs and listed
on stderr.
"""
import json, math, os, re, sys


def die(msg):
    sys.stderr.write("paired.py: %s\n" % msg)
    sys.exit(2)


def warn(msg):
    sys.stderr.write("paired.py: warning: %s\n" % msg)


def number(v, where):
    """A metric value: None when undefined (null, NaN, inf), else a float; anything else dies."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        die("%s is not a number (%s)" % (where, json.dumps(v)))
    return float(v) if math.isfinite(v) else None


def load(dirs, job, metric, allow_missing):
    """{seed: {slice: value}} of one variant."""
    out, where = {}, {}
    for d in dirs.split(","):
        if not os.path.isdir(d):
            die("%s: no such folder" % d)
        for name in sorted(os.listdir(d)):
            m = re.fullmatch(r"seed-(\d+)", name)
            if not m:
                continue
            path = os.path.join(d, name, "report.json")
            if not os.path.isfile(path):
                if not allow_missing:
                    die("%s: no report.json (a failed or unfinished run; --allow-missing skips it)"
                        % os.path.join(d, name))
                warn("%s: no report.json, skipped" % os.path.join(d, name))
                continue
            seed = int(m.group(1))
            if seed in out:
                # seed-01 and seed-1 are one seed under two names: "in two folders" sent the
                # reader looking for a second folder of the variant.
                if os.path.basename(where[seed]) != name:
                    die("%s and %s are the same seed %d"
                        % (where[seed], os.path.join(d, name), seed))
                die("seed %d is in two folders of %s" % (seed, dirs))
            where[seed] = os.path.join(d, name)
            try:
                with open(path) as f:
                    r = json.load(f)
            except (OSError, ValueError) as e:
                die("%s: %s" % (path, e))
            if not isinstance(r, dict):
                die("%s: not a report (a JSON object)" % path)
            vals = {}
            for sl in ("holdout", "warm", "stream"):
                v = r.get(sl) if isinstance(r.get(sl), dict) else {}
                v = v.get(job) if isinstance(v.get(job), dict) else {}
                if sl == "holdout" and v.get(metric) is None:
                    # A null is a figure undefined on that seed's holdout (an AUC of one class),
                    # not a missing key: "no holdout.teacher.auc" sent the reader to the job name.
                    die("%s: %s.%s.%s is %s" % (path, sl, job, metric,
                        "null (undefined on that seed's holdout: one class, or no event)"
                        if metric in v else "missing"))
                v = v.get(metric)
                vals[sl] = number(v, "%s: %s.%s.%s" % (path, sl, job, metric))
                if sl == "holdout" and vals[sl] is None:  # NaN or inf, as null above
                    die("%s: %s.%s.%s is not a number" % (path, sl, job, metric))
            out[seed] = vals
    if not out:
        die("%s: no seed-S/report.json" % dirs)
    return out


def main(argv):
    opts, show, allow_missing = {}, False, False
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-j", "-m"):
            # A job or metric name never starts with '-': "-j --seeds" lacks the value.
            if i + 1 >= len(argv) or not argv[i + 1] or argv[i + 1].startswith("-"):
                die("%s needs a value (see --help)" % a)
            if a in opts:
                die("%s given twice" % a)
            opts[a] = argv[i + 1]
            i += 2
            continue
        if a == "--seeds":
            show = True
        elif a == "--allow-missing":
            allow_missing = True
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
    job, metric = opts.get("-j", "teacher"), opts.get("-m", "auc")
    A = load(args[0], job, metric, allow_missing)
    B = load(args[1], job, metric, allow_missing)
    seeds = sorted(set(A) & set(B))
    for name, only in (("A", set(A) - set(B)), ("B", set(B) - set(A))):
        if only:
            warn("seed%s %s only in %s (%s), not paired" % (
                "s" if len(only) > 1 else "", " ".join(map(str, sorted(only))), name,
                args[0] if name == "A" else args[1]))
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
        # The relative change against a zero mean of A is undefined: said so in words, as the
        # spread of one pair is left out, not a division by zero (a traceback).
        rel = "%+.2f %%" % (100.0 * mean / ma) if ma != 0 else "% undefined: A's mean is 0"
        if n > 1:
            print("  %-8s A %.4f  B %.4f  B−A %+.4f ± %.4f (%s, se %.4f), %d of %d seeds above"
                  % (sl, ma, mb, mean, sd, rel, sd / math.sqrt(n), up, n))
        else:  # one pair has no spread: no ± (it printed "± nan, se nan")
            print("  %-8s A %.4f  B %.4f  B−A %+.4f (n=1, %s), %d of %d seeds above"
                  % (sl, ma, mb, mean, rel, up, n))
        if show:
            print("           " + " ".join("%d:%+.4f" % (s, b - a) for s, a, b in pairs))
    return 0


if __name__ == "__main__":
    try:
        rc = main(sys.argv[1:])
        sys.stdout.flush()
    except OSError as e:  # stdout to a full disk or a closed pipe: one line, not a traceback
        # Python flushes stdout again at exit: point it at /dev/null so that fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.stderr.write("paired.py: writing the output: %s\n" % (e.strerror or e))
        rc = 1
    sys.exit(rc)
