#!/usr/bin/env python3
"""corrupt.py LOG_DIR HOW — damage an LMDB env folder (a target log) in place
(tests/bad/lmdb/cases).

HOW: missing | empty_dir | file_not_dir | garbage | truncated | zero_meta | header_byte |
     value_byte | wrong_kind (an LMDB env of another program: no recdistill header) |
     zero_leaf (the middle live leaf page of the targets database zeroed: LMDB notices) |
     leaf_ptrs (the node offsets of the last live leaf page pointed 64 KiB ahead, past the end
     of the file: LMDB does not check them, and the read is a SIGBUS, which the damaged-page
     guard of rd/lmdbx.h turns into an error)
"""
import os, shutil, struct, sys

d, how = sys.argv[1], sys.argv[2]
data = os.path.join(d, "data.mdb")
PAGE = 4096

def live_leaves(b, dbname):
    """Page numbers of the live leaf pages of named database `dbname`, in key order (walked from
    the newest meta page: LMDB 0.9 layout, 64-bit)."""
    def u16(o): return struct.unpack_from("<H", b, o)[0]
    def u64(o): return struct.unpack_from("<Q", b, o)[0]
    metas = []
    for pg in (0, 1):
        m = pg * PAGE + 16
        # magic, version, address, mapsize, 2 x MDB_db (48 bytes), last_pg, txnid
        metas.append((u64(m + 24 + 2 * 48 + 8), u64(m + 24 + 48 + 40)))
    main_root = max(metas)[1]
    def walk(pg, out):
        o = pg * PAGE
        flags, lower = u16(o + 10), u16(o + 12)
        ptrs = [u16(o + 16 + 2 * i) for i in range((lower - 16) // 2)]
        if flags & 1:  # branch: child pgno in lo, hi, flags
            for p in ptrs:
                n = o + p
                walk(u16(n) | u16(n + 2) << 16 | u16(n + 4) << 32, out)
        elif flags & 2:
            out.append(pg)
        return out
    for leaf in walk(main_root, []):
        o = leaf * PAGE
        for i in range((u16(o + 12) - 16) // 2):
            n = o + u16(o + 16 + 2 * i)
            ks = u16(n + 6)
            if b[n + 8:n + 8 + ks] == dbname.encode():
                return walk(u64(n + 8 + ks + 40), [])
    sys.exit("no database " + dbname)

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
elif how in ("zero_leaf", "leaf_ptrs"):
    def f(b):
        leaves = live_leaves(b, "targets")
        if len(leaves) < 3:
            sys.exit("the targets database has fewer than 3 leaf pages")
        if how == "zero_leaf":
            o = leaves[len(leaves) // 2] * PAGE
            b[o:o + PAGE] = bytes(PAGE)
        else:
            o = max(leaves) * PAGE
            if o + 0xFFF0 < len(b):
                sys.exit("leaf_ptrs: the last live leaf is not within 64 KiB of the end of the file")
            lower = struct.unpack_from("<H", b, o + 12)[0]
            for i in range((lower - 16) // 2):
                struct.pack_into("<H", b, o + 16 + 2 * i, 0xFFF0)
        return b
    rewrite(f)
else:
    sys.exit("unknown HOW " + how)
