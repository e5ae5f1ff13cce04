#!/usr/bin/env python3
"""old_dense.py VERSION FILE: rewrite FILE, a dense.bin of this build (version 3, its CRC-32C
checked first), in place as an older build wrote it, its CRC-32C recomputed:
  2  the build before: the identity record, no data.split record;
  1  no identity record either.
The layout is worker/train_ckpt.c's: a version-1 header of HDR_V1 bytes (the version a u32 at
byte 8), then the identity record (IDENT_V2), then data.split (SPLIT_V3), then the dense state,
then the CRC-32C of all before it. Used by resume.sh. Exit 1 with a message on a FILE that is
not a whole version-3 dense.bin.
"""
import struct
import sys

NAME_MAX, CKPT_TABLES = 32, 32  # RD_NAME_MAX, RD_TRAIN_CKPT_TABLES
HDR_V1 = 192
IDENT_V2 = 4 + 8 + 16 + 24 + 4 + CKPT_TABLES * (NAME_MAX + 8)
SPLIT_V3 = 8 + 8 + 4 + 4


def crc32c(b):
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    c = 0xFFFFFFFF
    for x in b:
        c = t[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def main(argv):
    if len(argv) != 2 or argv[0] not in ("1", "2"):
        sys.exit("usage: old_dense.py 1|2 FILE")
    version, path = int(argv[0]), argv[1]
    d = open(path, "rb").read()
    if (len(d) < HDR_V1 + IDENT_V2 + SPLIT_V3 + 4 or struct.unpack_from("<I", d, 8)[0] != 3
            or struct.unpack_from("<I", d, len(d) - 4)[0] != crc32c(d[:-4])):
        sys.exit("old_dense.py: %s: not a whole dense.bin of version 3" % path)
    keep = HDR_V1 if version == 1 else HDR_V1 + IDENT_V2
    d = d[:8] + struct.pack("<I", version) + d[12:keep] + d[HDR_V1 + IDENT_V2 + SPLIT_V3:-4]
    open(path, "wb").write(d + struct.pack("<I", crc32c(d)))


if __name__ == "__main__":
    main(sys.argv[1:])
