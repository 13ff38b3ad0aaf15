#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/<name>.

Every seed is a small valid input in the target's input layout (see the comment at the top of
each tests/fuzz/fuzz_*.cc). Deterministic and stdlib-only; run it again after changing a layout:
    python3 tests/fuzz/make_seeds.py
Seeds that would need AES-GCM (sealed blobs, export bundles in their raw modes) have correct
headers and an unauthenticated tag; the structure-aware modes seal their input themselves.
"""
import hashlib
import hmac
import json
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
MAC_KEY = bytes([0x42]) * 32  # fuzz_state.cc's fixed key
UUID = bytes.fromhex("6f1c2d3e4a5b4c6d8e7f0123456789ab")
UUID2 = bytes.fromhex("0a1b2c3d4e5f4a6b8c7d8e9fa0b1c2d3")

u8 = lambda v: struct.pack(">B", v)
u16 = lambda v: struct.pack(">H", v)
u32 = lambda v: struct.pack(">I", v)
u64 = lambda v: struct.pack(">Q", v)

seeds = {}


def seed(target, name, data):
    assert len(data) < 4096, (target, name)
    seeds.setdefault(target, {})[name] = data


# TPM commands.
def tpm2(code, body=b"", tag=0x8001):
    return u16(tag) + u32(10 + len(body)) + u32(code) + body


def tpm12(ordinal, body=b"", tag=0x00C1):
    return u16(tag) + u32(10 + len(body)) + u32(ordinal) + body


GETRANDOM2 = tpm2(0x17B, u16(8))
STARTUP2 = tpm2(0x144, u16(0))
PCREXTEND2 = tpm2(0x182, u32(0) + u32(9) + u32(0x40000009) + u16(0) + u8(0) + u16(0) + u32(1) + u16(0xB) + bytes(32),
                  tag=0x8002)
STARTUP12 = tpm12(0x99, u16(1))
GETRANDOM12 = tpm12(0x46, u32(8))

# 1. fuzz_tpm_packet: u8 flags (bit 0: TPM 1.2, bit 1: +64 KiB), u16 limit, packet.
seed("fuzz_tpm_packet", "tpm2_getrandom", u8(0) + u16(4096) + GETRANDOM2)
seed("fuzz_tpm_packet", "tpm2_startup", u8(0) + u16(4096) + STARTUP2)
seed("fuzz_tpm_packet", "tpm2_pcr_extend_sessions", u8(0) + u16(1024) + PCREXTEND2)
seed("fuzz_tpm_packet", "tpm12_startup", u8(1) + u16(4096) + STARTUP12)
seed("fuzz_tpm_packet", "tpm12_getrandom_auth_tags", u8(1) + u16(4096) + GETRANDOM12)
seed("fuzz_tpm_packet", "over_limit", u8(0) + u16(11) + GETRANDOM2)
seed("fuzz_tpm_packet", "big_limit", u8(2) + u16(0) + GETRANDOM2)
seed("fuzz_tpm_packet", "size_field_lies", u8(0) + u16(4096) + GETRANDOM2[:5] + b"\x20" + GETRANDOM2[6:])


# 2. fuzz_swtpm_ctrl: the buffered bytes of a control connection.
def ctrl(code, body=b""):
    return u32(code) + body


CTRL = {
    "get_capability": ctrl(0x01),
    "init": ctrl(0x02, u32(1)),
    "shutdown": ctrl(0x03),
    "get_tpmestablished": ctrl(0x04),
    "set_locality_1byte": ctrl(0x05, u8(3)),
    "set_locality_qemu": ctrl(0x05, u8(2) + bytes(3)),
    "hash_start": ctrl(0x06),
    "hash_data": ctrl(0x07, u32(5) + b"crtm!"),
    "hash_end": ctrl(0x08),
    "cancel": ctrl(0x09),
    "store_volatile": ctrl(0x0A),
    "reset_tpmestablished": ctrl(0x0B, u8(3) + bytes(3)),
    "get_stateblob": ctrl(0x0C, u32(1) + u32(1) + u32(0)),
    "set_stateblob": ctrl(0x0D, u32(1) + u32(2) + u32(6) + b"\x00\x01\x02\x03\x04\x05"),
    "stop": ctrl(0x0E),
    "get_config": ctrl(0x0F),
    "set_datafd": ctrl(0x10),
    "set_buffersize": ctrl(0x11, u32(4096)),
    "get_info": ctrl(0x12, u64(3) + u32(0)),
}
for name, data in CTRL.items():
    seed("fuzz_swtpm_ctrl", name, data)
seed("fuzz_swtpm_ctrl", "qemu_startup_sequence",
     CTRL["get_capability"] + CTRL["set_buffersize"] + CTRL["init"] + CTRL["set_locality_qemu"])

# 3. fuzz_tpm_stream: u8 chunk seed, u16 maximum packet, stream.
SEND = lambda loc, pkt: u32(8) + u8(loc) + u32(len(pkt)) + pkt
seed("fuzz_tpm_stream", "raw_one", u8(1) + u16(4096) + GETRANDOM2)
seed("fuzz_tpm_stream", "raw_two", u8(2) + u16(4096) + STARTUP2 + GETRANDOM2)
seed("fuzz_tpm_stream", "send_command", u8(3) + u16(4096) + SEND(0, STARTUP2))
seed("fuzz_tpm_stream", "send_command_locality3_then_raw", u8(4) + u16(4096) + SEND(3, PCREXTEND2) + GETRANDOM2)
seed("fuzz_tpm_stream", "tpm12_raw", u8(5) + u16(4096) + STARTUP12 + GETRANDOM12)
seed("fuzz_tpm_stream", "too_large", u8(6) + u16(11) + GETRANDOM2)
seed("fuzz_tpm_stream", "partial", u8(7) + u16(4096) + GETRANDOM2[:7])


# 4. fuzz_control_message: u8 chunk seed, u8 flags (bit 0: u16 line limit follows), stream.
def req(rid, method, params=None, v=1):
    d = {"v": v, "id": rid, "method": method}
    if params is not None:
        d["params"] = params
    return (json.dumps(d, separators=(",", ":")) + "\n").encode()


U = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"
seed("fuzz_control_message", "hello", u8(1) + u8(0) + req(1, "hello"))
seed("fuzz_control_message", "exec", u8(2) + u8(0) +
     req(7, "exec", {"uuid": U, "command": "80 01 00 00 00 0c 00 00 01 7b 00 08", "locality": 3}))
seed("fuzz_control_message", "add", u8(3) + u8(0) +
     req("a", "add", {"uuid": U, "tpm": "1.2", "auto_startup": True, "max_command_size": 4096}))
seed("fuzz_control_message", "pipelined_crlf", u8(4) + u8(0) +
     req(1, "list").replace(b"\n", b"\r\n") + b"\n" + req(None, "remove", {"uuid": U, "force": True}) +
     req(2, "power", {"uuid": U, "action": "reset"}))
seed("fuzz_control_message", "bad_requests", u8(5) + u8(0) + b"not json\n" + req(3, "show", v=2) +
     b'{"id":[1],"method":"x"}\n{"id":4,"method":"x","params":[1]}\n')
seed("fuzz_control_message", "small_limit", u8(6) + u8(1) + u16(24) + req(1, "status") + req(2, "x" * 40))
# Regression: nesting beyond parse_request's limit (a deep copy overflowed the stack).
seed("fuzz_control_message", "deep_params", u8(8) + u8(0) +
     b'{"id":9,"method":"exec","params":{"a":' + b"[" * 70 + b"]" * 70 + b"}}\n")
seed("fuzz_control_message", "response", u8(7) + u8(0) +
     b'{"v":1,"id":7,"error":{"code":"not_found","message":"no instance"}}\n')


# 5. fuzz_state: u8 mode, then the mode's input.
def record(tpm="2.0", permanent=b"\x01\x02\x03\x04", volatile=b"", savestate=b"", channels="", created=1767225600,
           **extra):
    meta = json.dumps(dict({"uuid": U, "tpm": tpm, "created": created, "auto_startup": False,
                            "max_command_size": 4096, "powered_on": True, "channels": channels}, **extra),
                      separators=(",", ":")).encode()
    out = b"VTPMREC1"
    for part in (meta, permanent, volatile, savestate):
        out += u32(len(part)) + part
    return out + hashlib.sha256(out).digest()


REC = record()
REC12 = record("1.2", bytes(range(64)), b"\xaa" * 16, b"\x55" * 8, '{"swtpm_path":"/run/vtpm/x"}')
NONCE = bytes(range(12))


def sealed_header(body_len, gen=3, epoch=1, tpm=2, flags=0):
    return b"VTPMSEAL" + u16(1) + u8(tpm) + u8(flags) + UUID + u64(gen) + u32(epoch) + NONCE + u32(body_len)


def manifest_body(counter, entries):
    out = b"VTPMMANI" + u16(1) + u16(0) + u64(counter) + u32(len(entries))
    for uuid, gen, flags in entries:
        out += uuid + u64(gen) + u32(1) + u32(flags) + bytes([7]) * 32 + hashlib.sha256(uuid).digest()
    return out


ENTRIES = [(UUID2, 5, 0), (UUID, 3, 1)]
seed("fuzz_state", "0_sealed_raw", u8(0) + sealed_header(len(REC)) + REC + bytes(16))
seed("fuzz_state", "0_sealed_in_file", u8(0) + sealed_header(len(REC)) + REC + bytes(16) + bytes(2500))
seed("fuzz_state", "1_sealed_record", u8(1) + u8(0) + UUID + u64(3) + u32(1) + NONCE + u8(0) + u32(77) + REC)
seed("fuzz_state", "1_sealed_record_undigested", u8(1) + u8(4) + UUID + u64(4) + u32(1) + NONCE + u8(0) + u32(78) +
     REC[:-32])
# Regression: generation 2^64-1 with the manifest at the same generation (open_blob overflowed).
seed("fuzz_state", "1_sealed_generation_top", u8(1) + u8(0) + UUID + u64(2**64 - 1) + u32(1) + NONCE + u8(0) + u32(9) +
     REC)
seed("fuzz_state", "1_sealed_record12_stale", u8(1) + u8(3) + UUID + u64(9) + u32(1) + NONCE + u8(1) + u32(5) + REC12)
body = manifest_body(42, ENTRIES)
seed("fuzz_state", "2_manifest_raw", u8(2) + body + hmac.new(MAC_KEY, body, hashlib.sha256).digest())
seed("fuzz_state", "3_manifest_body", u8(3) + u8(0) + body)
seed("fuzz_state", "3_manifest_empty", u8(3) + u8(0) + manifest_body(1, []))
seed("fuzz_state", "3_manifest_padded", u8(3) + u8(200) + body)
seed("fuzz_state", "4_manifest_entries", u8(4) + body[12:20] + body[24:])
seed("fuzz_state", "4_manifest_entries_inline", u8(4) + u64(7) + body[24:])
seed("fuzz_state", "5_record", u8(5) + REC)
seed("fuzz_state", "5_record12", u8(5) + REC12)
seed("fuzz_state", "6_export_raw", u8(6) + b"VTPMXPRT" + u16(1) + u16(0) + bytes(32) + NONCE + u32(len(REC)) + REC +
     bytes(16))
seed("fuzz_state", "7_export_record", u8(7) + bytes([9]) * 32 + NONCE + REC12)
seed("fuzz_state", "8_record_undigested", u8(8) + REC[:-32])
seed("fuzz_state", "8_record12_undigested", u8(8) + REC12[:-32])
# Regression: a float where the record wants an integer (undefined cast in decode_record).
seed("fuzz_state", "8_record_float_created", u8(8) + record(created=1e30)[:-32])
seed("fuzz_state", "8_record_limits", u8(8) + record(max_queued=64, max_rate=1e20)[:-32])
seed("fuzz_state", "9_export_undigested", u8(9) + bytes([9]) * 32 + NONCE + REC[:-32])


# 6. fuzz_engine_messages: u8 mode (0 job, 1 completion, 2 pipe stream).
def blob(b):
    return u32(len(b)) + b


def opt(b):
    return u8(0) if b is None else u8(1) + blob(b)


def job(jid, kind, command=b"", version=20, perm=b"", vol=b"", save=b"", locality=0):
    return (b"J" + u64(jid) + UUID + u8(kind) + u8(locality) + blob(command) + u8(version) + u32(4096) + u8(0) +
            blob(perm) + blob(vol) + blob(save))


def completion(jid, kind, ok=True, error=11, message=b"", response=b"", perm=None, save=None, vol=None):
    return (b"C" + u64(jid) + UUID + u8(kind) + u8(1 if ok else 0) + u8(error) + blob(message) + blob(response) +
            opt(perm) + opt(save) + opt(vol) + u64(12) + u64(34) + u64(56) + u8(1))


RESP = u16(0x8001) + u32(20) + u32(0) + u16(8) + bytes(8)
seed("fuzz_engine_messages", "job_execute", u8(0) + job(1, 2, GETRANDOM2, locality=3))
seed("fuzz_engine_messages", "job_attach12", u8(0) + job(2, 1, version=12, perm=b"\x01" * 40, save=b"\x02" * 8))
seed("fuzz_engine_messages", "completion_execute", u8(1) + completion(1, 2, response=RESP))
seed("fuzz_engine_messages", "completion_detach", u8(1) + completion(3, 4, perm=b"\x01" * 40, save=b"", vol=b"\x03" * 24))
seed("fuzz_engine_messages", "completion_error", u8(1) + completion(4, 2, ok=False, error=0, message=b"bad packet"))
c1, c2 = completion(5, 2, response=RESP), completion(6, 10, response=u32(0) + u8(1))
seed("fuzz_engine_messages", "pipe_stream", u8(2) + u32(len(c1)) + c1 + u32(len(c2)) + c2 + u32(len(c1)) + c1[:9])

# 7. fuzz_config: u8 mode (bit 0 clear: JSON file, set: argv split at NULs).
seed("fuzz_config", "json_small", u8(0) + b'{"state_dir": "/var/lib/vtpmd", "tpm12_workers_max": 32}')
seed("fuzz_config", "json_all", u8(0) + json.dumps({
    "state_dir": "/srv/vtpm", "control_socket": "/run/vtpmd/c.sock", "log_level": "debug", "root_of_trust": "file",
    "root_key_file": "/etc/vtpmd/root.key", "engine_worker": "/usr/libexec/vtpmd-engine", "tpm12_workers_max": 0,
    "tpm12_slice_ms": "250", "tpm12_linger_ms": 1000, "tpm12_selftest_key_cache": "off",
    "default_max_command_size": 65536}).encode())
seed("fuzz_config", "json_bad_value", u8(0) + b'{"tpm12_slice_ms": -1}')
seed("fuzz_config", "argv", u8(1) + b"\0".join([b"--state-dir", b"/tmp/x", b"--log-level=warn",
                                                 b"--tpm12-linger-ms", b"7", b"--default-max-command-size=2048"]))
seed("fuzz_config", "argv_help", u8(1) + b"--help\0--version")
seed("fuzz_config", "argv_cache_off", u8(1) + b"--tpm12-selftest-key-cache\0off\0--root-key-file=/k")
seed("fuzz_config", "argv_hardening", u8(1) + b"--allow-core-dumps\0--seccomp\0log\0--default-max-state-size=65536")
seed("fuzz_config", "json_hardening", u8(0) + b'{"allow_core_dumps": true, "seccomp": "off", "default_max_state_size": 4096}')

# Guest endpoint parameters (attach/add), as a control request carries them.
seed("fuzz_endpoint_spec", "swtpm_path", b'{"uuid": "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab", "swtpm_path": "/run/vtpm/a"}')
seed("fuzz_endpoint_spec", "swtpm_port", b'{"swtpm_port": 2321, "bind": "0.0.0.0"}')
seed("fuzz_endpoint_spec", "each", json.dumps({"ctrl": "/run/vtpm/c", "data": "/run/vtpm/d", "ctrl_port": 2322,
                                               "data_port": 2321, "bind": "::1", "mode": 0o660}).encode())
seed("fuzz_endpoint_spec", "edges", b'{"swtpm_port": 65535, "mode": 512, "ctrl": "relative"}')
seed("fuzz_endpoint_spec", "saved", b'{"ctrl":"/run/vtpm/x.ctrl","data":"/run/vtpm/x","mode":384}')

# The file root's files: flags, key, counter value, counter bytes, then a sealed master key.
ROOT_KEY = bytes(range(32))
seed("fuzz_file_root", "valid_counter", u8(2) + u8(32) + ROOT_KEY + u64(3) + u8(0) + bytes(60))
seed("fuzz_file_root", "empty_counter", u8(0) + u8(32) + ROOT_KEY + u64(0) + u8(0) + bytes(12) + bytes(48))
seed("fuzz_file_root", "forged_counter", u8(0) + u8(32) + ROOT_KEY + u64(0) + u8(40) + u64(7) + bytes(32) + bytes(60))
seed("fuzz_file_root", "short_key", u8(0) + u8(31) + ROOT_KEY[:31] + u64(0) + u8(0))
seed("fuzz_file_root", "shared_key", u8(1) + u8(32) + ROOT_KEY + u64(0) + u8(0))
seed("fuzz_file_root", "created", u8(4) + u8(0) + u64(1) + u8(8) + u64(1) + bytes(60))

# fuzz_tpmif: u8 mode; even: the shared page (u32 length in host order = little-endian here,
# u8 state, u8 locality, u8 pad, u8 nr_extra_pages, grant refs, packet); odd: u32 max + value.
def page(packet, state=1, locality=0, extra=b"", length=None):
    n = len(packet) if length is None else length
    return u8(0) + struct.pack("<I", n) + u8(state) + u8(locality) + u8(0) + u8(len(extra) // 4) + extra + packet


TPM12_GETRANDOM = u16(0x00C1) + u32(14) + u32(0x46) + u32(16)
seed("fuzz_tpmif", "submit_getrandom", page(TPM12_GETRANDOM))
seed("fuzz_tpmif", "locality3", page(TPM12_GETRANDOM, locality=3))
seed("fuzz_tpmif", "extra_pages", page(TPM12_GETRANDOM, extra=u32(8) + u32(9)))
seed("fuzz_tpmif", "length_past_page", page(TPM12_GETRANDOM, length=5000))
seed("fuzz_tpmif", "length_short", page(TPM12_GETRANDOM[:9]))
seed("fuzz_tpmif", "value_ring_ref", u8(1) + u32(0xFFFFFFFE) + b"8")
seed("fuzz_tpmif", "value_state", u8(1) + u32(6) + b"4")
seed("fuzz_tpmif", "value_garbage", u8(1) + u32(0xFFFF) + b"12abc\n")

# Replaces the hand-made seeds; inputs a fuzzer found and that were committed
# (named by their SHA-1, as libFuzzer names them) stay.
found = re.compile(r"[0-9a-f]{40}")
for target in os.listdir(CORPUS) if os.path.isdir(CORPUS) else []:
    for name in os.listdir(os.path.join(CORPUS, target)):
        if not found.fullmatch(name):
            os.unlink(os.path.join(CORPUS, target, name))
for target, files in sorted(seeds.items()):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(CORPUS, target, name), "wb") as f:
            f.write(data)
print("make_seeds: %d seeds for %d targets in %s" % (sum(map(len, seeds.values())), len(seeds), CORPUS))
