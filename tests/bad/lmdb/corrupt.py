#!/usr/bin/env python3
"""corrupt.py LOG_DIR HOW — damage an LMDB env folder (a target log) in place
(tests/bad/lmdb/cases).

HOW: missing | empty_dir | file_not_dir | garbage | truncated | zero_meta | header_byte |
     value_byte | wrong_kind (an LMDB env of another program: no recdistill header)
"""
import os, shutil, struct, sys

d, how = sys.argv[1], sys.argv[2]
data = os.path.join(d, "data.mdb")
PAGE = 4096

def rewrite(fn):
    b = bytearray(open(data, "rb").read())
    b = fn(b)
    open(data, "wb").write(b)

if how == "missing":
    shutil.rmtree(d)
elif how == "empty_dir":
    shutil.rmtree(d)
    os.mkdir(d)
elif how == "file_not_dir":
    shutil.rmtree(d)
    open(d, "w").write("not a folder\n")
elif how == "garbage":
    open(data, "wb").write(os.urandom(16 * PAGE))
elif how == "truncated":
    rewrite(lambda b: b[: 2 * PAGE])
elif how == "zero_meta":
    rewrite(lambda b: bytearray(2 * PAGE) + b[2 * PAGE:])
elif how == "header_byte":
    def f(b):
        i = b.find(b"RDTGTLOG")
        if i < 0:
            sys.exit("no header record found")
        b[i + 12] ^= 0x5A  # a field of the header record, after the magic: its CRC fails
        return b
    rewrite(f)
elif how == "value_byte":
    # Rewrite the env through the LMDB tools with one byte of one target value changed (a valid
    # LMDB file whose record CRC fails): mdb_dump -a, edit, mdb_load each database.
    import subprocess
    dump = subprocess.run(["mdb_dump", "-a", d], check=True, capture_output=True, text=True).stdout
    lines = dump.split("\n")
    i = lines.index("database=targets")
    j = lines.index("HEADER=END", i) + 2  # key line, then its value line
    v = lines[j]
    lines[j] = v[:5] + ("0" if v[5] != "0" else "1") + v[6:]
    shutil.rmtree(d)
    os.mkdir(d)
    sections, cur = [], []
    for ln in lines:
        cur.append(ln)
        if ln == "DATA=END":
            sections.append("\n".join(cur) + "\n")
            cur = []
    for sec in sections:
        name = [l for l in sec.split("\n") if l.startswith("database=")][0].split("=", 1)[1]
        subprocess.run(["mdb_load", "-s", name, d], input=sec, check=True, text=True,
                       stderr=subprocess.DEVNULL)
elif how == "wrong_kind":
    shutil.rmtree(d)
    os.mkdir(d)
    # An empty but valid LMDB env written by the lmdb tools (mdb_load), if available.
    rc = os.system("printf 'VERSION=3\\nformat=bytevalue\\ntype=btree\\nHEADER=END\\n 6b6579\\n 76616c\\nDATA=END\\n' | mdb_load -f /dev/stdin '%s' 2>/dev/null" % d)
    if rc != 0:
        sys.exit(0)
else:
    sys.exit("unknown HOW " + how)
