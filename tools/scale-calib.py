#!/usr/bin/env python3
"""scale-calib.py — write the calibration file of `recdistill scale-model` from measurements.

    tools/scale-calib.py --report RUN/report.json --job teacher --batch 256 \
        --bench-dense bench_dense.json --dense-model teacher --bench-ps bench_ps.json \
        [--ps-dim 64] [--msg-overhead-us 1.0] [--hot-keys 0] > calib.yaml

Sources (each value is written with a comment naming where it came from):
  compute_us_per_sample     bench_dense --json: 1e6 / <dense-model>_samples_per_s
                            (or --compute-us directly)
  batch_per_worker          --batch (train.batch_size of the run)
  dense_params              report.json jobs.<job>.params
  ps_bytes_per_sample       report.json jobs.<job>.comm: ps_pull + ps_push bytes_per_sample
  ctl_bytes_per_sample      report.json jobs.<job>.comm.ps_ctl.bytes_per_sample (CLOCK, STATS,
                            ATTACH, SHUTDOWN; the checkpoints' SAVE and LOAD are on ps_ckpt)
  targets_bytes_per_sample  report.json jobs.<job>.comm.targets: (bytes_sent + bytes_recv) /
                            samples (what crosses this job's NIC: a teacher sends, a student
                            receives)
  keys_per_sample           pull request payload / 8 / samples: (bytes_sent - 64 * msgs_sent
                            - 32 * shm_pulls) / 8 / samples. A pull through shared memory
                            (ps.shm: auto on one node, the default) counts a 32-byte descriptor
                            in its request and gets one reply message (the values cross through
                            the region); without it, two (header, values). So shm_pulls =
                            2 * msgs_sent - msgs_recv, and the result is the same with shm on or
                            off (it used to count the descriptor as 4 keys per message).
  ps_key_ns                 bench_ps --json: 1e9 / keys_per_s_per_ps of the row with dim
                            --ps-dim (the job's table width; default: rows[0], whose dim the
                            comment names) (or --ps-key-ns)
  msg_overhead_us           --msg-overhead-us (default 1.0: see docs/scaling.md)
  hot_keys                  --hot-keys (default 0)
Exit status: 0 ok, 1 a missing or malformed input (message on stderr), 2 usage error.
"""
import argparse
import json
import math
import sys


def die(msg):
    print(f"scale-calib: {msg}", file=sys.stderr)
    sys.exit(1)


def load(path):
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError) as e:
        die(f"{path}: {e}")
    if not isinstance(j, dict):  # a list or a number gave a traceback (exit 1 all the same)
        die(f"{path}: not a JSON object")
    return j


def positive(v, where):
    """v, a finite number > 0 (a figure we divide by); else a message naming where it is."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        die(f"{where}: {json.dumps(v)} is not a positive number")
    return float(v)


def number(lo, lo_open=False):
    """An argparse type: a finite number >= lo (> lo when lo_open)."""
    def parse(v):
        try:
            x = float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{v}' is not a number")
        if not math.isfinite(x) or x < lo or (lo_open and x == lo):
            raise argparse.ArgumentTypeError(f"'{v}': expected a finite number {'>' if lo_open else '>='} {lo:g}")
        return x
    return parse


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", required=True)
    ap.add_argument("--job", required=True)
    ap.add_argument("--batch", type=number(0, True), required=True)
    ap.add_argument("--bench-dense")
    ap.add_argument("--dense-model", choices=["teacher", "student"], default="teacher")
    ap.add_argument("--compute-us", type=number(0, True))
    ap.add_argument("--bench-ps")
    ap.add_argument("--ps-key-ns", type=number(0))
    ap.add_argument("--ps-dim", type=int, help="the bench_ps row of this dim (the job's table width)")
    ap.add_argument("--msg-overhead-us", type=number(0), default=1.0)
    ap.add_argument("--hot-keys", type=number(0), default=0.0)
    a = ap.parse_args()

    rep = load(a.report)
    jobs = rep.get("jobs") if isinstance(rep.get("jobs"), dict) else {}
    job = jobs.get(a.job)
    if not isinstance(job, dict):
        die(f"{a.report}: no job '{a.job}' (jobs: {', '.join(jobs)})")
    if not isinstance(job.get("params"), int):
        die(f"{a.report}: jobs.{a.job}.params missing or not a whole number")
    comm = job.get("comm")
    if not isinstance(comm, dict):
        die(f"{a.report}: job '{a.job}' has no 'comm' object (a report of an older recdistill?)")
    samples = comm.get("samples") or 0
    if samples <= 0:
        die(f"{a.report}: job '{a.job}' trained no sample")

    def bps(ch):
        v = comm.get(ch, {}).get("bytes_per_sample")
        if v is None:
            die(f"{a.report}: jobs.{a.job}.comm.{ch}.bytes_per_sample missing")
        return float(v)

    t = comm.get("targets", {})
    tgt = (t.get("bytes_sent", 0) + t.get("bytes_recv", 0)) / samples
    pull = comm.get("ps_pull")
    if not isinstance(pull, dict) or not all(
            isinstance(pull.get(f), int) for f in ("msgs_sent", "msgs_recv", "bytes_sent")):
        die(f"{a.report}: jobs.{a.job}.comm.ps_pull: no msgs_sent, msgs_recv and bytes_sent")
    sent, recv = pull["msgs_sent"], pull["msgs_recv"]
    if sent <= 0 or recv < sent or recv > 2 * sent:
        die(f"{a.report}: jobs.{a.job}.comm.ps_pull: {sent} requests and {recv} replies "
            "(each pull gets 1 reply message through shared memory, 2 without)")
    shm_pulls = 2 * sent - recv
    keys = (pull["bytes_sent"] - 64 * sent - 32 * shm_pulls) / 8.0 / samples
    if a.compute_us is not None:
        compute, csrc = a.compute_us, "--compute-us"
    elif a.bench_dense:
        bd = load(a.bench_dense)
        k = f"{a.dense_model}_samples_per_s"
        if bd.get(k) is None:
            die(f"{a.bench_dense}: no {k}")
        sps = positive(bd[k], f"{a.bench_dense}: {k}")
        compute, csrc = 1e6 / sps, f"{a.bench_dense}: 1e6 / {k} ({sps:.1f})"
    else:
        die("give --bench-dense or --compute-us")
    if a.ps_key_ns is not None:
        key_ns, ksrc = a.ps_key_ns, "--ps-key-ns"
    elif a.bench_ps:
        bp = load(a.bench_ps)
        try:
            rows = [r for r in bp["rows"] if a.ps_dim is None or r.get("dim") == a.ps_dim]
            kps, dim = rows[0]["keys_per_s_per_ps"], rows[0].get("dim", "?")
        except (KeyError, IndexError, TypeError, AttributeError):
            die(f"{a.bench_ps}: no row" + (f" with dim {a.ps_dim}" if a.ps_dim else "") +
                " with keys_per_s_per_ps")
        kps = positive(kps, f"{a.bench_ps}: keys_per_s_per_ps at dim {dim}")
        key_ns, ksrc = 1e9 / kps, f"{a.bench_ps}: 1e9 / keys_per_s_per_ps ({kps:.3g}) at dim {dim}"
    else:
        die("give --bench-ps or --ps-key-ns")

    out = [
        f"# calibration of recdistill scale-model (tools/scale-calib.py), job '{a.job}' of {a.report}",
        f"compute_us_per_sample: {compute:.4f}  # {csrc}",
        f"batch_per_worker: {a.batch:g}  # --batch",
        f"dense_params: {job['params']}  # jobs.{a.job}.params",
        f"ps_bytes_per_sample: {bps('ps_pull') + bps('ps_push'):.3f}  # comm ps_pull + ps_push",
        f"ctl_bytes_per_sample: {bps('ps_ctl'):.3f}  # comm ps_ctl",
        f"targets_bytes_per_sample: {tgt:.3f}  # comm targets, sent + received",
        f"keys_per_sample: {keys:.4f}  # pull request payload / 8 / samples "
        f"({shm_pulls} of {sent} pulls through shared memory)",
        f"ps_key_ns: {key_ns:.3f}  # {ksrc}",
        f"msg_overhead_us: {a.msg_overhead_us:g}  # --msg-overhead-us",
        f"hot_keys: {a.hot_keys:g}  # --hot-keys",
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
