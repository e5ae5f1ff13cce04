#!/usr/bin/env python3
"""make_seeds.py — (re)write the small committed seed corpora of tests/fuzz/corpus/ and the wire
cases of tests/bad/wire/. Configs and CSVs are copied from tests/; the dataset seed needs a
prepared events.bin, the serving-bundle seed (and the bundles of tests/bad/serve/) a bundle
written by `recdistill export` (pass their paths; a bundle is recognised by its .rdsv name).
Run from the repository root:

    python3 tests/fuzz/make_seeds.py [path/to/events.bin] [path/to/bundle.rdsv]

Dataset seeds are named by format version: `tiny` (version 1, a tiny synthetic run; kept, since
version 1 is still read) and `tiny-v2`. The bundle seed `tiny` is the bundle given (version 2),
`tiny-v1` the same bundle rewritten in version 1 (without the numeric input table), `tiny-v3` the
same bundle rewritten in version 3 (each numeric input with a missing mode and fill: the first
`missing: mean`, its fill the input's standardization mean, the rest `missing: error`) and
`tiny-v4` that version-3 seed in version 4 (the token store fields, 0: no token branch; written on
every run from the committed `tiny-v3`, with two bad cases whose token fields lie), and `tiny-v5`
that seed in version 5 (an empty item attribute map after the rows, with two bad cases: a map for a
model that searches no tokens, a count the file cannot hold). The committed
version-2 seeds come from tests/data/clicks.csv with a log1p + standardized numeric field (`price`)
and the multi-valued `tags` (1 PS, one student with user and item on one dim-2 table, mlp [4]:
`recdistill prepare`, `train` with 2 ranks, `export`). The cases of tests/bad/serve/ are written
from the bundle given, at offsets of rd_model_config below (a bundle of another config layout is
refused before its lie is read: ctest `bad_serve` requires ERR_CORRUPT of every case).
The committed bundle seeds and bad cases are of the config layout before models[].dropout (its
rd_model_config without dropout, tokens.query and tokens.label, worker/serve.c mc_added), which the reader
still takes: rewriting them with a
newer bundle would leave that path untested (ctest fuzz_seeds_valid_serve opens them): keep
copies of these under other names then.
"""
import os, shutil, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C = os.path.join(ROOT, "tests", "fuzz", "corpus")
BAD = os.path.join(ROOT, "tests", "bad", "wire")
MAGIC, VERSION = 0x53504452, 1

def hdr(op, table=0, count=0, dim=0, flags=0, req_id=1, payload=b"", status=0, magic=MAGIC,
        version=VERSION, payload_bytes=None, step=0, t=0):
    pb = len(payload) if payload_bytes is None else payload_bytes
    return struct.pack("<IHHiIQIIQQqq", magic, version, op, status, table, count, dim, flags,
                       req_id, pb, step, t) + payload

def ckpt_req(path, tables, flags=0, crc=0, n_tables=None, plen=None):
    p = path.encode()
    n = len(tables) if n_tables is None else n_tables
    return struct.pack("<IIII", n, len(p) if plen is None else plen, flags, crc) + p + \
        b"".join(struct.pack("<I", t) for t in tables)

def put(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# --- wire: good seeds --------------------------------------------------------------------------
W = os.path.join(C, "wire")
keys = b"".join(struct.pack("<Q", k) for k in (3, 5, 9))
put(W, "pull", hdr(1, count=3, dim=4, payload=keys))
put(W, "push", hdr(2, count=2, dim=2, payload=struct.pack("<QQffff", 3, 5, .1, .2, .3, .4)))
put(W, "clock", hdr(3, step=4))
put(W, "stats", hdr(4, table=0xffffffff))
put(W, "save", hdr(5, payload=ckpt_req("/tmp/ckpt", [0, 1])))
put(W, "load", hdr(6, payload=ckpt_req("/tmp/ckpt", [0], flags=1, crc=7)))
put(W, "shutdown", hdr(7))
put(W, "reply_shard_info", hdr(5, flags=1, payload=struct.pack("<II", 0, 1) + bytes(16)))
put(W, "user_op", hdr(40, count=2, payload=bytes(16)))
# shared memory: a descriptor (region, request offset, length, reply offset) and an ATTACH
put(W, "pull_shm", hdr(1, count=3, dim=4, flags=4, payload=struct.pack("<QQQQ", 7, 64, 24, 128)))
put(W, "push_shm", hdr(2, count=2, dim=2, flags=4, payload=struct.pack("<QQQQ", 7, 64, 32, 0)))
put(W, "attach", hdr(8, payload=struct.pack("<IIQQ", 1234, 5, 1 << 20, 7) +
                     b"host".ljust(64, b"\0") + b"boot".ljust(40, b"\0")))

# --- wire: bad cases (each must be rejected by decode or check_request) ---------------------------
put(BAD, "empty", b"")
put(BAD, "short_header", hdr(1)[:40])
put(BAD, "bad_magic", hdr(1, count=1, payload=keys[:8], magic=0x12345678))
put(BAD, "bad_version", hdr(1, count=1, payload=keys[:8], version=9))
put(BAD, "payload_longer_than_message", hdr(1, count=3, payload=keys, payload_bytes=1 << 40))
put(BAD, "payload_shorter_than_message", hdr(1, count=3, payload=keys, payload_bytes=8))
put(BAD, "pull_count_mismatch", hdr(1, count=4, dim=4, payload=keys))
put(BAD, "pull_dim_zero", hdr(1, count=3, payload=keys))
put(BAD, "pull_count_overflow", hdr(1, count=(1 << 61) + 3, payload=keys))
put(BAD, "push_dim_zero", hdr(2, count=1, dim=0, payload=struct.pack("<Q", 3)))
put(BAD, "push_dim_huge", hdr(2, count=1, dim=1 << 20, payload=struct.pack("<Qf", 3, 1.0)))
put(BAD, "push_size_overflow", hdr(2, count=1 << 62, dim=1024, payload=bytes(16)))
put(BAD, "unknown_op", hdr(12))
put(BAD, "op_zero", hdr(0))
put(BAD, "request_with_status", hdr(3, status=-4))
put(BAD, "request_with_reply_flag", hdr(3, flags=1))
put(BAD, "clock_with_payload", hdr(3, payload=b"x" * 8))
put(BAD, "reserved_slot", hdr(1, count=3, payload=keys, req_id=4095))
put(BAD, "too_big", hdr(40, payload=bytes(64), payload_bytes=(1 << 20) + 1))
put(BAD, "save_empty", hdr(5))
put(BAD, "save_path_len_past_end", hdr(5, payload=ckpt_req("/tmp/c", [0], plen=4000)))
put(BAD, "save_no_tables", hdr(5, payload=ckpt_req("/tmp/c", [])))
put(BAD, "save_too_many_tables", hdr(5, payload=ckpt_req("/tmp/c", list(range(40)))))
put(BAD, "save_duplicate_tables", hdr(5, payload=ckpt_req("/tmp/c", [1, 1])))
put(BAD, "save_nul_in_path", hdr(5, payload=ckpt_req("/tmp\0/c", [0])))
put(BAD, "save_empty_path", hdr(5, payload=ckpt_req("", [0])))
put(BAD, "load_trailing_bytes", hdr(6, payload=ckpt_req("/tmp/c", [0]) + b"zz"))
put(BAD, "shm_flag_on_clock", hdr(3, flags=4))
put(BAD, "shm_descriptor_short", hdr(1, count=2, dim=8, flags=4, payload=bytes(24)))
put(BAD, "shm_pull_count_zero", hdr(1, count=0, dim=8, flags=4, payload=bytes(32)))
put(BAD, "attach_short", hdr(8, payload=bytes(100)))

# --- config and csv seeds: copies of committed inputs -------------------------------------------
for name in ("slurm-tiny.yaml",):
    shutil.copy(os.path.join(ROOT, "tests", "data", name), os.path.join(C, "config", name))
for name in ("reference.yaml", "schema-example.yaml"):
    shutil.copy(os.path.join(ROOT, "configs", name), os.path.join(C, "config", name))
put(os.path.join(C, "config"), "merge_keys.yaml",
    b"cluster: {jobs: [{name: w, role: student, model: m}]}\n"
    b"ps:\n  tables:\n    - &t {name: a, dim: 8, optimizer: {type: adam, lr: 0.01}}\n"
    b"    - {<<: *t, name: b}\n"
    b"models:\n  - &m {name: m, features: [{field: user, table: a}], mlp: [8]}\n"
    b"  - {<<: [*m, {mlp: [4]}], name: n, features: [{field: item, table: b}]}\n"
    b"train: {<<: {lr: 0.5, epochs: 2}, lr: 0.25}\n")
clicks = open(os.path.join(ROOT, "tests", "data", "clicks.csv"), "rb").read()
users = open(os.path.join(ROOT, "tests", "data", "users.csv"), "rb").read()
put(os.path.join(C, "csv"), "clicks_quoted", bytes([4]) + clicks)
put(os.path.join(C, "csv"), "users_plain", bytes([0]) + users)
put(os.path.join(C, "csv"), "tsv_quoted", bytes([5]) + b'a\tb\n"x\ty"\t2\n"q""q"\t\n')
put(os.path.join(C, "csv"), "ml_colons", bytes([3]) + b"1::2::5::881250949\n3::4::1::8\n")
put(os.path.join(C, "csv"), "pipes_short_lines", bytes([10]) + b"1|F|0|0|1\n" * 3)

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF

def reseal(b, off, val):
    """Bundle b with bytes val at off and its trailing CRC-32C recomputed: well-formed, lying."""
    b = bytearray(b)
    b[off:off + len(val)] = val
    b[-4:] = struct.pack("<I", crc32c(bytes(b[:-4])))
    return bytes(b)

args = sys.argv[1:]
bundle = [a for a in args if a.endswith(".rdsv")]
events = [a for a in args if not a.endswith(".rdsv")]

# --- dataset seed: a prepared events.bin -------------------------------------------------------
def seed_name(version):
    return "tiny" if version == 1 else "tiny-v%d" % version

if events:
    ev = open(events[0], "rb").read()
    put(os.path.join(C, "dataset"), seed_name(struct.unpack_from("<I", ev, 8)[0]), ev)

# --- serving bundle: the seed, and CRC-resealed bundles whose content lies (tests/bad/serve/) ----
if bundle:
    sv = open(bundle[0], "rb").read()
    version, mcs, tcs, nt = struct.unpack_from("<IIII", sv, 8)
    assert version == 2, "give a bundle of format version 2"
    # Offsets inside rd_model_config (include/rd/config.h; all fields 4-byte aligned).
    assert mcs == 2548, "rd_model_config changed: update the offsets below"
    MC = 56 + 2 * 32                     # after the header, job and model names
    NSTATS, MLP = 2280, 2464             # seq.n_stats, mlp[0]
    nf_off = MC + mcs + nt * tcs
    nf, = struct.unpack_from("<I", sv, nf_off)
    w_off, nn_off = nf_off + 4, nf_off + 4 + 4 * nf
    SB = os.path.join(ROOT, "tests", "bad", "serve")
    u32 = lambda v: struct.pack("<I", v)
    put(SB, "width_huge", reseal(sv, w_off, u32(0xFFFFFFFF)))   # was an abort (137 GB malloc)
    put(SB, "width_zero", reseal(sv, w_off, u32(0)))
    put(SB, "numeric_huge", reseal(sv, nn_off, u32(0xFFFFFFFF)))
    put(SB, "n_stats_past_array", reseal(sv, MC + NSTATS, u32(1000)))
    put(SB, "mlp_huge", reseal(sv, MC + MLP, u32(0x7FFFFFFF)))
    put(SB, "name_unterminated", reseal(sv, MC, b"A" * 32))
    put(SB, "n_features_huge", reseal(sv, nf_off, u32(0xFFFFFFFF)))
    put(SB, "table_dim_zero", reseal(sv, MC + mcs + 32, u32(0)))  # table 0: name[32], dim
    n_in, = struct.unpack_from("<I", sv, nn_off + 4)
    cut = 4 + n_in * (32 + 4 + 16) + 4   # the input table and the f32 logit shift
    v1 = bytearray(sv[:nn_off + 4] + sv[nn_off + 4 + cut:])
    v1[8:12] = struct.pack("<I", 1)
    put(os.path.join(C, "serve"), "tiny", sv)
    put(os.path.join(C, "serve"), "tiny-v1", reseal(bytes(v1), 8, struct.pack("<I", 1)))
    if n_in:  # version 2: n_inputs, then per input field[32], u32 transform, f64 mean, f64 std
        x0 = nn_off + 8
        put(SB, "inputs_huge", reseal(sv, nn_off + 4, u32(0xFFFFFFFF)))
        put(SB, "inputs_more_than_numeric", reseal(sv, nn_off + 4, u32(n_in + 1)))
        put(SB, "input_name_unterminated", reseal(sv, x0, b"B" * 32))
        put(SB, "input_transform_flags", reseal(sv, x0 + 32, u32(0x10)))
        put(SB, "input_std_zero", reseal(sv, x0 + 32 + 4 + 8, struct.pack("<d", 0.0)))
        put(SB, "input_mean_nan", reseal(sv, x0 + 32 + 4, struct.pack("<d", float("nan"))))
    if n_in:  # version 3: per input, after std, u32 missing (0 error, 1 zero, 2 mean), f64 fill
        x0 = nn_off + 8
        v3 = bytearray(sv[:x0])
        for j in range(n_in):
            e = sv[x0 + j * 52:x0 + (j + 1) * 52]
            mean, = struct.unpack_from("<d", e, 36)
            v3 += e + (struct.pack("<Id", 2, mean) if j == 0 else struct.pack("<Id", 0, 0.0))
        v3 += sv[x0 + n_in * 52:]
        v3[8:12] = struct.pack("<I", 3)
        v3 = reseal(bytes(v3), 8, struct.pack("<I", 3))
        put(os.path.join(C, "serve"), "tiny-v3", v3)
        put(SB, "input_missing_mode", reseal(v3, x0 + 52, u32(7)))
        put(SB, "input_fill_nan", reseal(v3, x0 + 56, struct.pack("<d", float("nan"))))
    shift_off = nn_off + 8 + n_in * (32 + 4 + 16)
    put(SB, "logit_shift_nan", reseal(sv, shift_off, struct.pack("<f", float("nan"))))
    put(SB, "logit_shift_huge", reseal(sv, shift_off, struct.pack("<f", 1e30)))

# --- serving bundle, version 4 (the token store fields: u32 token dim, u32 side values, u64 store
# id after the logit shift), derived from the committed version-3 seed: its model has no token
# branch, so the fields are 0; the same fields non-zero are a lie (tests/bad/serve/).
V3 = os.path.join(C, "serve", "tiny-v3")
if os.path.exists(V3):
    b3 = open(V3, "rb").read()
    version, mcs, tcs, nt = struct.unpack_from("<IIII", b3, 8)
    assert version == 3, "tiny-v3 is not a version-3 bundle"
    nf_off = 56 + 2 * 32 + mcs + nt * tcs
    nf, = struct.unpack_from("<I", b3, nf_off)
    nn_off = nf_off + 4 + 4 * nf
    n_in, = struct.unpack_from("<I", b3, nn_off + 4)
    tok_off = nn_off + 8 + n_in * (32 + 4 + 16 + 12) + 4  # after the f32 logit shift
    v4 = bytearray(b3[:tok_off] + bytes(16) + b3[tok_off:])
    v4 = reseal(bytes(v4), 8, struct.pack("<I", 4))
    put(os.path.join(C, "serve"), "tiny-v4", v4)
    SB = os.path.join(ROOT, "tests", "bad", "serve")
    put(SB, "token_dim_without_branch", reseal(v4, tok_off, struct.pack("<I", 16)))
    put(SB, "token_store_id_without_branch", reseal(v4, tok_off + 8, struct.pack("<Q", 7)))
    # --- version 5: the item attribute map of a token search by an item attribute after the
    # rows (u64 count, then u64 item key | u64 value pairs, ascending); 0 items without one. A map
    # for this model (no token branch) is a lie, and so is a count the file cannot hold.
    v5 = reseal(v4[:-4] + struct.pack("<Q", 0) + v4[-4:], 8, struct.pack("<I", 5))
    put(os.path.join(C, "serve"), "tiny-v5", v5)
    pair = struct.pack("<QQ", 3, 9)
    put(SB, "item_map_without_search",
        reseal(v5[:-12] + struct.pack("<Q", 1) + pair + v5[-4:], 0, b"RDSERVE1"))
    put(SB, "item_map_huge", reseal(v5, len(v5) - 12, struct.pack("<Q", 1 << 60)))
