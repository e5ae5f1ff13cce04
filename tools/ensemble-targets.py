#!/usr/bin/env python3
"""ensemble-targets.py — an ensemble teacher for a replaying student: write a target log whose
logits are the mean of several teachers' (e.g. the same teacher config run with other seeds on
the same data), to be replayed with distill.replay / tools/replay-sweep.sh.

    tools/ensemble-targets.py [--data DATA_DIR] OUT LOG LOG [LOG ...]

Each LOG is a target log (distill.target_log, a run folder's targets/). A record (teacher job,
sample, pass) is written when every LOG has it; its logit is the mean of theirs, its window and
teacher version those of the first LOG, its CRC-32C recomputed; the first LOG's meta records
(header, teachers' sampling) are copied, after checking that every log's teacher read the same
dataset (event count, records' CRC) with the same sampling rates. Every record read is checked
(size, CRC), the logs must agree on each record's stream window (else they are not of one data
split), and OUT must not exist: it is written beside itself and renamed when whole, so a failure
leaves no OUT.
--data DATA_DIR (the run folder's data/, from `recdistill prepare`) prints the AUC of each LOG's
and of the mean logits over the stream windows' records (each scored by the teacher in its
training pass before its update on it, so a fair test): what the ensemble adds as a teacher.
Needs mdb_dump and mdb_load (lmdb-utils) and, with --data, python3 with PyYAML.
Exit 0 on success, 2 on a usage error or bad input (the message names the file and record).
"""
import os, shutil, struct, subprocess, sys, tempfile

KEY_BYTES, VAL_BYTES = 20, 20


def die(msg):
    sys.stderr.write("ensemble-targets.py: %s\n" % msg)
    sys.exit(2)


def crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_T = crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = CRC_T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def dump(path, db):
    """(header lines, [(key hex, value hex)]) of database db of the LMDB env at path."""
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "data.mdb")):
        die("%s: not a target log (no data.mdb in a folder)" % path)
    try:
        p = subprocess.run(["mdb_dump", "-s", db, path], capture_output=True, text=True)
    except FileNotFoundError:
        die("mdb_dump not found (apt-get install lmdb-utils)")
    if p.returncode != 0:
        die("%s: mdb_dump -s %s failed: %s" % (path, db, p.stderr.strip() or "no message"))
    head, kv, body = [], [], False
    for line in p.stdout.split("\n"):
        if not body:
            head.append(line)
            body = line.startswith("HEADER=END")
        elif line.startswith(" "):
            kv.append(line[1:])
    if not body or len(kv) % 2:
        die("%s: mdb_dump -s %s gave an incomplete dump" % (path, db))
    return head, list(zip(kv[0::2], kv[1::2]))


def records(path):
    """{key bytes: (logit, window, value bytes)} of a log, every record checked."""
    _, kv = dump(path, "targets")
    out = {}
    for kh, vh in kv:
        try:
            k, v = bytes.fromhex(kh), bytes.fromhex(vh)
        except ValueError:
            die("%s: a record that is not hex in the dump" % path)
        if len(k) != KEY_BYTES or len(v) != VAL_BYTES:
            die("%s: a record of %d + %d bytes (a target log's are %d + %d)"
                % (path, len(k), len(v), KEY_BYTES, VAL_BYTES))
        crc = struct.unpack_from("<I", v, 16)[0]
        if crc != crc32c(v[:16], crc32c(k)):
            die("%s: sample %d pass %d: CRC mismatch (damaged record)"
                % (path, int.from_bytes(k[8:16], "big"), int.from_bytes(k[16:20], "big")))
        logit, window = struct.unpack_from("<fi", v, 0)
        out[k] = (logit, window, v)
    if not out:
        die("%s: the log holds no target" % path)
    return out


def jobs(path, meta_kv):
    """{job key hex: (neg rate, pos rate, events or None, records crc or None)} of a log's
    teacher records (meta "job" | be64 key: RDTGJOB1 without the dataset, RDTGJOB2 with it)."""
    out = {}
    for kh, vh in meta_kv:
        k, v = bytes.fromhex(kh), bytes.fromhex(vh)
        if not k.startswith(b"job") or len(k) != 11:
            continue
        if v[:8] == b"RDTGJOB2" and len(v) >= 48:
            neg, pos, _salt, events, rcrc = struct.unpack_from("<ddQQI", v, 8)
            out[k[3:].hex()] = (neg, pos, events, rcrc)
        elif v[:8] == b"RDTGJOB1" and len(v) >= 32:
            neg, pos = struct.unpack_from("<dd", v, 8)
            out[k[3:].hex()] = (neg, pos, None, None)
        else:
            die("%s: a teacher record of the meta database is neither RDTGJOB1 nor RDTGJOB2" % path)
    return out


def labels(data_dir):
    """{record id: label} of a prepared dataset folder (meta.yaml + events.bin)."""
    try:
        import yaml
    except ImportError:
        die("--data needs PyYAML (apt-get install python3-yaml)")
    meta = os.path.join(data_dir, "meta.yaml")
    try:
        with open(meta) as f:
            m = yaml.safe_load(f)
        fmt, lay = m["format"], m["layout"]
        hs, rs, n = int(fmt["header_size"]), int(lay["record_size"]), int(m["events"])
        prefix = " ".join(lay["prefix"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        die("%s: not a prepared dataset's meta.yaml (%s)" % (meta, e))
    if "id u64 @0" not in prefix or "label f32 @24" not in prefix or rs < 28:
        die("%s: record layout %s is not the one this tool reads (id @0, label @24)"
            % (meta, prefix))
    path = os.path.join(data_dir, fmt.get("file", "events.bin"))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        die("%s: %s" % (path, e.strerror))
    if len(raw) < hs + n * rs:
        die("%s: %d bytes, %d records of %d after a %d-byte header need %d"
            % (path, len(raw), n, rs, hs, hs + n * rs))
    out = {}
    for i in range(n):
        rid, = struct.unpack_from("<Q", raw, hs + i * rs)
        lab, = struct.unpack_from("<f", raw, hs + i * rs + 24)
        out[rid] = lab
    return out


def auc(scores, ys):
    """ROC AUC with tied scores sharing their mean rank; None without both classes."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = [r for r, y in zip(ranks, ys) if y > 0.5]
    n1, n0 = len(pos), len(ys) - len(pos)
    if n1 == 0 or n0 == 0:
        return None
    return (sum(pos) - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def main(argv):
    data = None
    args = list(argv)
    if any(a in ("-h", "--help") for a in args):
        sys.stdout.write(__doc__.split("\n\n", 1)[1] if "\n\n" in __doc__ else __doc__)
        sys.exit(0)
    if len(args) >= 2 and args[0] == "--data":
        data = args[1]
        args = args[2:]
    if len(args) < 3 or any(a.startswith("-") for a in args):
        die("usage: ensemble-targets.py [--data DATA_DIR] OUT LOG LOG [LOG ...]")
    out, logs = args[0], args[1:]
    if os.path.lexists(out):
        die("%s exists: give a new folder for the ensemble log" % out)
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        die("%s: no such folder for OUT" % parent)
    # The teachers must have read the same dataset with the same sampling: their job records
    # (the first log's are copied into OUT) agree on the rates, the event count and the records'
    # CRC wherever both logs say them.
    metas = [dump(p, "meta") for p in logs]
    js = [jobs(p, m[1]) for p, m in zip(logs, metas)]
    for p, j in zip(logs[1:], js[1:]):
        for key, a in js[0].items():
            b = j.get(key)
            if b is None:
                continue
            if a[:2] != b[:2]:
                die("%s: its teacher sampled %g / %g of the negatives / positives, %s's %g / %g: "
                    "their targets are of other records" % (p, b[0], b[1], logs[0], a[0], a[1]))
            if a[2] is not None and b[2] is not None and a[2:] != b[2:]:
                die("%s: its teacher trained on another dataset than %s's (%d events, records "
                    "CRC %08x against %d, %08x): not one data split"
                    % (p, logs[0], b[2], b[3], a[2], a[3]))
    recs = [records(p) for p in logs]
    common = [k for k in recs[0] if all(k in r for r in recs[1:])]
    if not common:
        die("the logs share no record (teacher job, sample, pass): not runs of one config (the "
            "teacher job's name is part of each record's key: it must be the same in every run)")
    for k in common:
        w = recs[0][k][1]
        for p, r in zip(logs[1:], recs[1:]):
            if r[k][1] != w:
                die("%s: sample %d is in stream window %d, in %s window %d: not one data split"
                    % (p, int.from_bytes(k[8:16], "big"), r[k][1], logs[0], w))
    # --data is checked before OUT is written: a failure leaves no OUT (a run that stopped
    # after writing it would block its own rerun with "OUT exists").
    lab = stream = None
    if data is not None:
        lab = labels(data)
        stream = [k for k in common if recs[0][k][1] >= 0]
        miss = [k for k in stream if int.from_bytes(k[8:16], "big") not in lab]
        if miss:
            die("%s: sample %d of the logs is not a record of this dataset"
                % (data, int.from_bytes(miss[0][8:16], "big")))
    meta_head, meta_kv = metas[0]
    head, _ = dump(logs[0], "targets")
    # The header (its lines up to HEADER=END) with a map size for the records.
    lines = [h for h in head if not h.startswith("mapsize=") and h != "HEADER=END"]
    lines += ["mapsize=%d" % max(1 << 20, 4 * 96 * len(common)), "HEADER=END"]
    for k in common:
        v = bytearray(recs[0][k][2])
        mean = sum(r[k][0] for r in recs) / len(recs)
        v[0:4] = struct.pack("<f", mean)
        v[16:20] = struct.pack("<I", crc32c(bytes(v[:16]), crc32c(k)))
        lines.append(" " + k.hex())
        lines.append(" " + bytes(v).hex())
    lines.append("DATA=END")
    mlines = list(meta_head)
    for kh, vh in meta_kv:
        mlines += [" " + kh, " " + vh]
    mlines.append("DATA=END")
    tmp, done = None, False
    try:
        tmp = tempfile.mkdtemp(prefix=".ensemble-", dir=parent)
        for db, text in (("targets", lines), ("meta", mlines)):
            p = subprocess.run(["mdb_load", "-s", db, tmp], input="\n".join(text) + "\n",
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError("mdb_load -s %s: %s" % (db, p.stderr.strip()))
        _, kv = dump(tmp, "targets")
        if len(kv) != len(common):
            raise RuntimeError("%d records written, %d read back" % (len(common), len(kv)))
        os.rename(tmp, out)
        done = True
    except (OSError, RuntimeError) as e:
        die("writing %s: %s" % (out, e))
    finally:  # also when die() exits: no half-written folder is left
        if not done and tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d records, the mean of %d logs (%s)" % (out, len(common), len(logs),
                                                       ", ".join(logs)))
    left = sum(len(r) for r in recs) - len(common) * len(recs)
    if left:
        print("  %d records of single logs left out (not in every log)" % left)
    if data is not None:
        if not stream:
            print("  no stream-window record: no AUC to print")
            return
        ys = [lab[int.from_bytes(k[8:16], "big")] for k in stream]
        fmt = lambda a: "n/a (one class)" if a is None else "%.4f" % a
        print("  stream-window AUC over %d records (the teacher's training-pass logits):"
              % len(stream))
        for p, r in zip(logs, recs):
            print("    %-40s %s" % (p, fmt(auc([r[k][0] for k in stream], ys))))
        means = [sum(r[k][0] for r in recs) / len(recs) for k in stream]
        print("    %-40s %s" % ("mean of the %d" % len(recs), fmt(auc(means, ys))))


if __name__ == "__main__":
    main(sys.argv[1:])
