#!/usr/bin/env python3
"""Validate every builder/parser in tpmcmd.py against a real swtpm.

Starts swtpm instances (TPM 2.0 and TPM 1.2) on random 127.0.0.1 ports in
23000-23999, sends the raw packets over the TCP data socket and checks
response codes and parsed values.  swtpm is always killed and its state
directory removed (try/finally).

Usage: python3 tests/integration/tpmcmd_selftest.py [-v]
Exit status 0 on success; 77 (skip) if swtpm is not installed.
"""

import hashlib
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tpmcmd as T  # noqa: E402

VERBOSE = "-v" in sys.argv

# swtpm control-channel commands (swtpm's tpm_ioctl.h)
CMD_INIT = 0x02

# TPM 1.2 TPM_RESULT
TPM12_INVALID_POSTINIT = 0x26


def log(*a):
    if VERBOSE:
        print(*a, flush=True)


# --------------------------------------------------------------------------
# swtpm harness
# --------------------------------------------------------------------------


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports():
    """Two adjacent free ports (data, ctrl) in 23000-23999."""
    for _ in range(200):
        p = random.randrange(23000, 23998)
        if _port_free(p) and _port_free(p + 1):
            return p, p + 1
    raise RuntimeError("no free port pair in 23000-23999")


class Swtpm:
    """A swtpm socket instance talking raw TPM packets over TCP."""

    def __init__(self, tpm2=True, flags="not-need-init"):
        self.tpm2 = tpm2
        self.flags = flags
        self.dir = None
        self.proc = None
        self.sock = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="tpmcmd-swtpm-")
        for attempt in range(5):
            self.port, self.ctrl_port = _pick_ports()
            argv = ["swtpm", "socket"]
            if self.tpm2:
                argv.append("--tpm2")
            argv += ["--tpmstate", "dir=" + self.dir,
                     "--server", "type=tcp,port=%d,bindaddr=127.0.0.1"
                     % self.port,
                     "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1"
                     % self.ctrl_port,
                     "--flags", self.flags,
                     "--log", "file=%s/swtpm.log" % self.dir]
            with open(os.path.join(self.dir, "stderr.log"), "ab") as err:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                             stdout=err, stderr=err)
            if self._connect():
                log("swtpm%s pid %d on 127.0.0.1:%d/%d"
                    % (" --tpm2" if self.tpm2 else " (1.2)", self.proc.pid,
                       self.port, self.ctrl_port))
                return self
            self._kill()  # port race or start failure: retry
        with open(os.path.join(self.dir, "stderr.log"), "rb") as err:
            msg = err.read().decode(errors="replace")
        self.stop()
        raise RuntimeError("could not start swtpm: " + msg)

    def _connect(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port),
                                                     timeout=30)
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def _recv_exact(self, sock, n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("swtpm closed the connection")
            buf += chunk
        return buf

    def send(self, cmd):
        """Send a raw command; return the raw response (header + body)."""
        # the builder's size field must match the packet length
        assert struct.unpack(">I", cmd[2:6])[0] == len(cmd), T.hexs(cmd)
        # round trip through the hex helpers, as the tests do
        cmd = T.from_hex(T.hexs(cmd))
        self.sock.sendall(cmd)
        hdr = self._recv_exact(self.sock, 10)
        total = struct.unpack(">I", hdr[2:6])[0]
        resp = hdr + self._recv_exact(self.sock, total - 10)
        log("  >", T.hexs(cmd)[:120])
        log("  <", T.hexs(resp)[:120])
        return resp

    def ctrl(self, cmd, payload=b""):
        """Send a control-channel command; return its UINT32 result."""
        with socket.create_connection(("127.0.0.1", self.ctrl_port),
                                      timeout=10) as s:
            s.sendall(struct.pack(">I", cmd) + payload)
            return struct.unpack(">I", self._recv_exact(s, 4))[0]

    def reinit(self):
        """CMD_INIT (like swtpm_ioctl -i): simulate a power cycle."""
        if self.sock:
            self.sock.close()
        res = self.ctrl(CMD_INIT, struct.pack(">I", 0))
        assert res == 0, "CMD_INIT failed: %d" % res
        assert self._connect(), "reconnect after CMD_INIT failed"

    def _kill(self):
        if self.sock:
            self.sock.close()
            self.sock = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self):
        self._kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def on_p256(x, y):
    x, y = int.from_bytes(x, "big"), int.from_bytes(y, "big")
    return (y * y - (x * x * x - 3 * x + P256_B)) % P256_P == 0


def ok(resp, what):
    """Assert rc == 0 via tpmcmd.check (raises TpmError with rc in hex)."""
    return T.check(resp, what)


def expect_rc(resp, want, what):
    got = T.rc(resp)
    assert got == want, "%s: rc 0x%x (%s), expected 0x%x" % (
        what, got, T.rc_str(got), want)


def transient_handles(tpm):
    handles, _ = T.parse_handles(tpm.send(T.get_capability_handles()))
    return handles


# --------------------------------------------------------------------------
# TPM 2.0 tests
# --------------------------------------------------------------------------


def test_tpm2_basic(tpm):
    # before Startup every command fails with TPM_RC_INITIALIZE
    expect_rc(tpm.send(T.get_random(8)), T.TPM_RC_INITIALIZE,
              "GetRandom before Startup")
    ok(tpm.send(T.startup(clear=True)), "Startup(CLEAR)")
    expect_rc(tpm.send(T.startup(clear=True)), T.TPM_RC_INITIALIZE,
              "second Startup")
    ok(tpm.send(T.self_test(full=True)), "SelfTest(full)")
    ok(tpm.send(T.self_test(full=False)), "SelfTest(partial)")

    r1 = T.parse_get_random(tpm.send(T.get_random(16)))
    r2 = T.parse_get_random(tpm.send(T.get_random(32)))
    assert len(r1) == 16 and len(r2) == 32 and r1 != r2[:16]

    # check() raises a TpmError carrying the rc
    try:
        T.check(tpm.send(T.flush_context(0x80FFFFFF)), "FlushContext(bogus)")
    except T.TpmError as e:
        assert e.rc is not None and "rc=0x" in str(e), str(e)
        log("  expected error:", e)
    else:
        raise AssertionError("FlushContext(bogus) did not fail")


def test_tpm2_capability(tpm):
    props, _ = T.parse_tpm_properties(
        tpm.send(T.get_capability_tpm_properties(T.PT_FIXED, 64)))
    assert props[T.TPM_PT_FAMILY_INDICATOR] == 0x322E3000, props  # "2.0\0"
    assert props[T.TPM_PT_PCR_COUNT] == 24, props
    mfr = struct.pack(">I", props[T.TPM_PT_MANUFACTURER])
    log("  manufacturer %r, level %d, revision %d" % (
        mfr, props[T.TPM_PT_LEVEL], props[T.TPM_PT_REVISION]))
    cap = T.parse_get_capability(
        tpm.send(T.get_capability(T.TPM_CAP_TPM_PROPERTIES,
                                  T.TPM_PT_FAMILY_INDICATOR, 1)))
    assert cap.capability == T.TPM_CAP_TPM_PROPERTIES and cap.more_data
    banks = dict(T.parse_pcr_selections(tpm.send(T.get_capability_pcrs())))
    log("  PCR banks:", {hex(k): len(v) for k, v in banks.items()})
    assert len(banks.get(T.TPM_ALG_SHA256, [])) == 24
    return banks


def test_tpm2_pcr(tpm, banks):
    pcr = 10
    before = T.parse_pcr_read(tpm.send(T.pcr_read(pcr, "sha256")))
    assert before.digest == bytes(32), before  # fresh PCR 10 is zero
    assert before.selection == [(T.TPM_ALG_SHA256, [pcr])]
    d = hashlib.sha256(b"tpmcmd selftest").digest()
    ok(tpm.send(T.pcr_extend(pcr, d)), "PCR_Extend sha256")
    after = T.parse_pcr_read(tpm.send(T.pcr_read(pcr)))
    assert after.digest == T.pcr_extend_expected(before.digest, d), after
    assert after.digest == hashlib.sha256(before.digest + d).digest()
    assert after.update_counter == before.update_counter + 1, (before, after)

    if banks.get(T.TPM_ALG_SHA1):
        old1 = T.parse_pcr_read(tpm.send(T.pcr_read(pcr, "sha1"))).digest
        d1 = hashlib.sha1(b"sha1 bank").digest()
        ok(tpm.send(T.pcr_extend(pcr, d1, alg="sha1")), "PCR_Extend sha1")
        new1 = T.parse_pcr_read(tpm.send(T.pcr_read(pcr, "sha1"))).digest
        assert new1 == hashlib.sha1(old1 + d1).digest()
        # both banks in one command
        old256 = T.parse_pcr_read(tpm.send(T.pcr_read(pcr))).digest
        ok(tpm.send(T.pcr_extend_multi(pcr, {"sha1": d1, "sha256": d})),
           "PCR_Extend sha1+sha256")
        assert T.parse_pcr_read(tpm.send(T.pcr_read(pcr, "sha1"))).digest \
            == hashlib.sha1(new1 + d1).digest()
        assert T.parse_pcr_read(tpm.send(T.pcr_read(pcr))).digest \
            == hashlib.sha256(old256 + d).digest()
        log("  sha1 bank validated")
    else:
        log("  sha1 bank not allocated; skipped")
    return T.parse_pcr_read(tpm.send(T.pcr_read(pcr))).digest


def test_tpm2_objects(tpm):
    res = T.parse_create_primary(tpm.send(T.create_primary_ecc_p256()))
    assert res.handle >> 24 == T.TPM_HT_TRANSIENT, hex(res.handle)
    assert len(res.ecc_x) == 32 and len(res.ecc_y) == 32
    assert on_p256(res.ecc_x, res.ecc_y), "ECC point not on P-256"
    assert res.public.attributes == T.STORAGE_KEY_ATTRS
    assert res.name == struct.pack(">H", T.TPM_ALG_SHA256) + \
        hashlib.sha256(res.public.raw).digest()
    # primary keys are deterministic: same template -> same key
    res2 = T.parse_create_primary(tpm.send(T.create_primary_ecc_p256()))
    assert (res2.ecc_x, res2.ecc_y) == (res.ecc_x, res.ecc_y)
    assert res2.handle != res.handle
    ok(tpm.send(T.flush_context(res2.handle)), "FlushContext")

    sig = T.parse_create_primary(tpm.send(T.create_primary_ecc_p256(
        hierarchy=T.TPM_RH_ENDORSEMENT, signing=True)))
    assert on_p256(sig.ecc_x, sig.ecc_y)
    ok(tpm.send(T.flush_context(sig.handle)), "FlushContext")

    t0 = time.monotonic()
    rsa = T.parse_create_primary(tpm.send(T.create_primary_rsa2048()))
    log("  RSA-2048 CreatePrimary took %.0f ms"
        % ((time.monotonic() - t0) * 1000))
    assert len(rsa.rsa_modulus) == 256 and rsa.rsa_modulus[0] & 0x80
    assert rsa.public.rsa_exponent == 65537
    ok(tpm.send(T.flush_context(rsa.handle)), "FlushContext rsa")

    # context save / flush / load
    ctx = T.parse_context_save(tpm.send(T.context_save(res.handle)))
    assert ctx.hierarchy == T.TPM_RH_OWNER and len(ctx.blob) > 0, ctx
    assert ctx.saved_handle >> 24 == T.TPM_HT_TRANSIENT, hex(ctx.saved_handle)
    ok(tpm.send(T.flush_context(res.handle)), "FlushContext")
    assert res.handle not in transient_handles(tpm)
    loaded = T.parse_context_load(tpm.send(T.context_load(ctx)))
    assert loaded in transient_handles(tpm)
    # loading from the raw bytes (as a test would after hex transport)
    ok(tpm.send(T.flush_context(loaded)), "FlushContext")
    loaded = T.parse_context_load(tpm.send(T.context_load(ctx.raw)))
    ok(tpm.send(T.flush_context(loaded)), "FlushContext")
    assert transient_handles(tpm) == []


def test_tpm2_sessions(tpm):
    hmac = T.parse_start_auth_session(
        tpm.send(T.start_auth_session("hmac")))
    assert hmac.handle >> 24 == T.TPM_HT_HMAC_SESSION, hex(hmac.handle)
    # libtpms sizes nonceTPM like nonceCaller (16 bytes by default)
    assert len(hmac.nonce_tpm) in (16, 32), hmac
    pol = T.parse_start_auth_session(tpm.send(
        T.start_auth_session(T.TPM_SE_POLICY, nonce_caller=bytes(16))))
    assert pol.handle >> 24 == T.TPM_HT_POLICY_SESSION, hex(pol.handle)
    handles, _ = T.parse_handles(tpm.send(T.get_capability_handles(
        T.TPM_HT_HMAC_SESSION << 24)))
    assert hmac.handle in handles and pol.handle in handles, handles
    ctx = T.parse_context_save(tpm.send(T.context_save(hmac.handle)))
    assert ctx.saved_handle >> 24 == T.TPM_HT_HMAC_SESSION
    assert T.parse_context_load(tpm.send(T.context_load(ctx))) == hmac.handle
    ok(tpm.send(T.flush_context(hmac.handle)), "FlushContext hmac")
    ok(tpm.send(T.flush_context(pol.handle)), "FlushContext policy")


def test_tpm2_nv(tpm):
    idx = 0x01500010
    ok(tpm.send(T.nv_define_space(idx, 32)), "NV_DefineSpace")
    expect_rc(tpm.send(T.nv_define_space(idx, 32)), T.TPM_RC_NV_DEFINED,
              "NV_DefineSpace twice")
    pub = T.parse_nv_read_public(tpm.send(T.nv_read_public(idx)))
    assert pub.index == idx and pub.data_size == 32
    assert pub.attributes == T.NV_DEFAULT_ATTRS, hex(pub.attributes)
    expect_rc(tpm.send(T.nv_read(idx, 8)), T.TPM_RC_NV_UNINITIALIZED,
              "NV_Read before write")
    data = bytes(range(32))
    ok(tpm.send(T.nv_write(idx, data)), "NV_Write")
    assert T.parse_nv_read(tpm.send(T.nv_read(idx, 32))) == data
    ok(tpm.send(T.nv_write(idx, b"\xAA\xBB", offset=4)), "NV_Write offset")
    assert T.parse_nv_read(tpm.send(T.nv_read(idx, 8, offset=2))) == \
        bytes([2, 3, 0xAA, 0xBB, 6, 7, 8, 9])
    # AUTHREAD with the index itself as authHandle (empty index auth)
    assert T.parse_nv_read(tpm.send(
        T.nv_read(idx, 4, auth_handle=idx))) == bytes([0, 1, 2, 3])
    pub = T.parse_nv_read_public(tpm.send(T.nv_read_public(idx)))
    assert pub.attributes & T.TPMA_NV_WRITTEN
    ok(tpm.send(T.nv_undefine_space(idx)), "NV_UndefineSpace")
    assert T.rc(tpm.send(T.nv_read_public(idx))) != 0


def test_tpm2_nv_counter(tpm):
    idx = 0x01500011
    ok(tpm.send(T.nv_define_counter(idx)), "NV_DefineSpace(counter)")
    pub = T.parse_nv_read_public(tpm.send(T.nv_read_public(idx)))
    assert pub.index == idx and pub.data_size == 8, pub
    assert pub.attributes == T.NV_COUNTER_ATTRS, hex(pub.attributes)
    assert (pub.attributes >> 4) & 0xF == T.TPM_NT_COUNTER
    assert not pub.attributes & T.TPMA_NV_ORDERLY
    expect_rc(tpm.send(T.nv_read(idx, 8)), T.TPM_RC_NV_UNINITIALIZED,
              "NV_Read of a counter before its first increment")
    # a counter cannot be written, only incremented
    assert T.rc(tpm.send(T.nv_write(idx, bytes(8)))) != 0
    ok(tpm.send(T.nv_increment(idx)), "NV_Increment")
    first = T.parse_nv_counter(tpm.send(T.nv_read(idx, 8)))
    for _ in range(5):
        ok(tpm.send(T.nv_increment(idx)), "NV_Increment")
    assert T.parse_nv_counter(tpm.send(T.nv_read(idx, 8))) == first + 5
    # AUTHWRITE with the index itself as authHandle (empty index auth)
    ok(tpm.send(T.nv_increment(idx, auth_handle=idx)), "NV_Increment(auth)")
    assert T.parse_nv_counter(tpm.send(T.nv_read(idx, 8,
                                                 auth_handle=idx))) \
        == first + 6
    pub = T.parse_nv_read_public(tpm.send(T.nv_read_public(idx)))
    assert pub.attributes & T.TPMA_NV_WRITTEN
    # an ordinary index cannot be incremented
    ordinary = 0x01500012
    ok(tpm.send(T.nv_define_space(ordinary, 8)), "NV_DefineSpace")
    assert T.rc(tpm.send(T.nv_increment(ordinary))) != 0
    ok(tpm.send(T.nv_undefine_space(ordinary)), "NV_UndefineSpace")
    ok(tpm.send(T.nv_undefine_space(idx)), "NV_UndefineSpace(counter)")
    try:
        T.nv_define_counter(idx, attributes=T.NV_DEFAULT_ATTRS)
    except ValueError:
        pass
    else:
        raise AssertionError("nv_define_counter accepted ordinary attrs")


def persistent_handles(tpm):
    handles, more = T.parse_handles(tpm.send(T.get_capability_persistent()))
    assert not more
    assert all(h >> 24 == T.TPM_HT_PERSISTENT for h in handles), handles
    return handles


def test_tpm2_evict_control(tpm):
    before = persistent_handles(tpm)
    key = T.parse_create_primary(tpm.send(T.create_primary_ecc_p256()))
    h1, h2 = 0x81000100, 0x81000101
    ok(tpm.send(T.evict_control(key.handle, h1)), "EvictControl(persist)")
    ok(tpm.send(T.evict_control(key.handle, h2)), "EvictControl(persist 2)")
    # the same handle cannot be persisted twice
    assert T.rc(tpm.send(T.evict_control(key.handle, h1))) != 0
    ok(tpm.send(T.flush_context(key.handle)), "FlushContext")
    assert sorted(persistent_handles(tpm)) == sorted(before + [h1, h2])
    # a persistent object cannot be persisted again: only evicted
    assert T.rc(tpm.send(T.evict_control(h1, 0x81000102))) != 0
    ok(tpm.send(T.evict_control(h1, h1)), "EvictControl(evict)")
    assert sorted(persistent_handles(tpm)) == sorted(before + [h2])
    assert T.rc(tpm.send(T.evict_control(h1, h1))) != 0  # already gone
    # persistent objects survive a power cycle, transient ones do not
    tpm.reinit()
    ok(tpm.send(T.startup(clear=True)), "Startup(CLEAR)")
    assert sorted(persistent_handles(tpm)) == sorted(before + [h2])
    ok(tpm.send(T.evict_control(h2, h2)), "EvictControl(evict 2)")
    assert persistent_handles(tpm) == before


def test_tpm2_clock(tpm):
    c1 = T.parse_read_clock(tpm.send(T.read_clock()))
    time.sleep(0.05)
    c2 = T.parse_read_clock(tpm.send(T.read_clock()))
    assert c2.clock > c1.clock and c2.time > c1.time, (c1, c2)
    assert c2.reset_count == c1.reset_count
    log("  clock:", c2)
    return c2


def test_tpm2_resume(tpm, pcr10, clock):
    """Shutdown(STATE) + power cycle + Startup(STATE) keeps PCR 10."""
    ok(tpm.send(T.shutdown(clear=False)), "Shutdown(STATE)")
    tpm.reinit()
    ok(tpm.send(T.startup(clear=False)), "Startup(STATE)")
    assert T.parse_pcr_read(tpm.send(T.pcr_read(10))).digest == pcr10
    c = T.parse_read_clock(tpm.send(T.read_clock()))
    assert c.restart_count == clock.restart_count + 1, (clock, c)
    ok(tpm.send(T.shutdown(clear=True)), "Shutdown(CLEAR)")
    tpm.reinit()
    ok(tpm.send(T.startup(clear=True)), "Startup(CLEAR)")
    assert T.parse_pcr_read(tpm.send(T.pcr_read(10))).digest == bytes(32)
    c = T.parse_read_clock(tpm.send(T.read_clock()))
    assert c.reset_count == clock.reset_count + 1, (clock, c)
    ok(tpm.send(T.shutdown(clear=True)), "Shutdown(CLEAR)")


def run_tpm2():
    with Swtpm(tpm2=True, flags="not-need-init") as tpm:
        test_tpm2_basic(tpm)
        banks = test_tpm2_capability(tpm)
        pcr10 = test_tpm2_pcr(tpm, banks)
        test_tpm2_objects(tpm)
        test_tpm2_sessions(tpm)
        test_tpm2_nv(tpm)
        test_tpm2_nv_counter(tpm)
        clock = test_tpm2_clock(tpm)
        test_tpm2_resume(tpm, pcr10, clock)
    with Swtpm(tpm2=True, flags="not-need-init") as tpm:
        ok(tpm.send(T.startup(clear=True)), "Startup(CLEAR)")
        test_tpm2_evict_control(tpm)
    # also the common daemon-like configuration (startup-clear by swtpm)
    with Swtpm(tpm2=True, flags="not-need-init,startup-clear") as tpm:
        expect_rc(tpm.send(T.startup()), T.TPM_RC_INITIALIZE,
                  "Startup after startup-clear")
        assert len(T.parse_get_random(tpm.send(T.get_random(8)))) == 8


# --------------------------------------------------------------------------
# TPM 1.2 tests
# --------------------------------------------------------------------------


def test_tpm12(tpm):
    resp = tpm.send(T.tpm12_get_random(8))
    assert T.tag(resp) == T.TPM_TAG_RSP_COMMAND
    expect_rc(resp, TPM12_INVALID_POSTINIT, "TPM_GetRandom before Startup")
    T.tpm12_check(tpm.send(T.tpm12_startup_clear()), "TPM_Startup")

    ver = T.parse_tpm12_version(tpm.send(T.tpm12_get_capability_version()))
    assert ver.tag == 0x0030 and (ver.major, ver.minor) == (1, 2), ver
    log("  TPM 1.2 version:", ver)
    npcrs = T.parse_tpm12_prop_u32(tpm.send(T.tpm12_get_capability_prop_pcr()))
    assert npcrs == 24, npcrs
    raw = T.parse_tpm12_get_capability(tpm.send(T.tpm12_get_capability(
        T.TPM12_CAP_PROPERTY, struct.pack(">I", T.TPM12_CAP_PROP_PCR))))
    assert raw == struct.pack(">I", 24)

    pcr = 10
    old = T.parse_tpm12_pcr_read(tpm.send(T.tpm12_pcr_read(pcr)))
    assert old == bytes(20)
    d = hashlib.sha1(b"tpm12 selftest").digest()
    new = T.parse_tpm12_extend(tpm.send(T.tpm12_extend(pcr, d)))
    assert new == hashlib.sha1(old + d).digest()
    assert new == T.pcr_extend_expected(old, d, "sha1")
    assert T.parse_tpm12_pcr_read(tpm.send(T.tpm12_pcr_read(pcr))) == new

    r1 = T.parse_tpm12_get_random(tpm.send(T.tpm12_get_random(20)))
    r2 = T.parse_tpm12_get_random(tpm.send(T.tpm12_get_random(20)))
    assert len(r1) == 20 and r1 != r2

    T.tpm12_check(tpm.send(T.tpm12_save_state()), "TPM_SaveState")
    try:
        T.tpm12_check(tpm.send(T.tpm12_startup_clear()), "TPM_Startup")
    except T.TpmError as e:
        assert e.rc and "rc=0x" in str(e)
    else:
        raise AssertionError("second TPM_Startup did not fail")


def run_tpm12():
    with Swtpm(tpm2=False, flags="not-need-init") as tpm:
        test_tpm12(tpm)


# --------------------------------------------------------------------------


def test_offline():
    """Checks that need no TPM: hex helpers and known-good encodings."""
    assert T.from_hex("0x80 01:00") == b"\x80\x01\x00"
    assert T.hexs(b"\x01\xab") == "01ab"
    # well-known packets (e.g. from tpm2-tools / the TCG spec)
    assert T.hexs(T.startup()) == "80010000000c000001440000"
    assert T.hexs(T.get_random(8)) == "80010000000c0000017b0008"
    assert T.hexs(T.tpm12_startup_clear()) == "00c10000000c000000990001"
    assert T.hexs(T.pcr_read(0)) == \
        "8001000000140000017e00000001000b03010000"
    # NV_Increment(owner, 0x01500020) with an empty password session
    assert T.hexs(T.nv_increment(0x01500020)) == (
        "80020000001f00000134" "40000001" "01500020"
        "00000009" "40000009" "0000" "01" "0000")
    # EvictControl(owner, 0x80000000 -> 0x81000001)
    assert T.hexs(T.evict_control(0x80000000, 0x81000001)) == (
        "80020000002300000120" "40000001" "80000000"
        "00000009" "40000009" "0000" "01" "0000" "81000001")
    # NV_DefineSpace of an 8-byte counter: TPMA_NV 0x02060016
    assert T.NV_COUNTER_ATTRS == 0x02060016
    assert T.hexs(T.nv_define_counter(0x01500020)).endswith(
        "0000" "000e" "01500020" "000b" "02060016" "0000" "0008")
    assert T.hexs(T.get_capability_persistent()) == \
        "8001000000160000017a000000018100000000000040"
    assert T.rc_str(0x9A2) == "TPM_RC_BAD_AUTH (session 1)"
    assert T.rc_str(0x1C4) == "TPM_RC_VALUE (parameter 1)"


def main():
    if not shutil.which("swtpm"):
        print("SKIP: swtpm not installed")
        return 77
    tests = [("offline", test_offline), ("tpm2", run_tpm2),
             ("tpm12", run_tpm12)]
    for name, fn in tests:
        t0 = time.monotonic()
        fn()
        print("PASS %-8s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
    print("all tpmcmd self-tests passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
