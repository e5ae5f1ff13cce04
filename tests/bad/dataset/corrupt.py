#!/usr/bin/env python3
"""corrupt.py DATASET_DIR HOW — damage a prepared dataset folder in place (tests/bad/dataset/cases).

HOW: empty | truncate_header | truncate_half | drop_last_byte | trailing_bytes | bad_magic |
     version | header_byte | record_byte | index_byte | directory | fifo | garbage
"""
import os, shutil, sys

d, how = sys.argv[1], sys.argv[2]
p = os.path.join(d, "events.bin")
b = bytearray(open(p, "rb").read())
n = len(b)

def flip(i):
    b[i] ^= 0x5A

if how == "empty":
    b = bytearray()
elif how == "truncate_header":
    b = b[:40]
elif how == "truncate_half":
    b = b[: n // 2]
elif how == "drop_last_byte":
    b = b[:-1]
elif how == "trailing_bytes":
    b += b"\0" * 64
elif how == "bad_magic":
    b[0:8] = b"NOTRDSET"
elif how == "version":
    b[8] = 99
elif how == "header_byte":
    flip(24)
elif how == "record_byte":
    flip(n // 3)
elif how == "index_byte":
    flip(n - 100)
elif how == "garbage":
    b = bytearray(os.urandom(n))
elif how == "directory":
    os.remove(p)
    os.mkdir(p)
    sys.exit(0)
elif how == "fifo":  # open() of a FIFO without a writer blocked the training ranks for ever
    os.remove(p)
    os.mkfifo(p)
    sys.exit(0)
else:
    sys.exit("unknown HOW " + how)
open(p, "wb").write(b)
