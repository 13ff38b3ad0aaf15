#!/usr/bin/env python3
"""swtpm_ioctl against the control channel of a swtpm-compatible endpoint.

Runs once per transport (unix: DATA.ctrl, tcp: port+1) on fresh endpoints
from endpoint.make_endpoints (CHANNEL_TARGET=swtpm|vtpmd).

Semantics pinned here are swtpm's (wire compatibility is the goal):

* CMD_INIT (-i) is TPM_Init only: afterwards the TPM needs TPM2_Startup
  (``--flags startup-clear`` of swtpm only applies at process start), unless
  a volatile state is resumed (state loaded with --load volatile).
* State migration is QEMU's sequence: source GET_STATEBLOB permanent +
  volatile while running; destination CMD_STOP, SET_STATEBLOB x2, CMD_INIT
  -> the TPM resumes (PCRs, NV, no Startup needed).

    CHANNEL_TARGET=swtpm python3 tests/channel/test_swtpm_ioctl.py -v
"""

import hashlib
import json
import os
import re
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from endpoint import (CMD_SET_LOCALITY, TARGET, ChannelTestCase,  # noqa: E402
                      ctrl_command, ioctl, quirk, tools)

PCR = 16
NV_IDX = "0x1500016"
NV_CTR = "0x1500017"
NV_DATA = b"migrated-nv-data"       # 16 bytes
TPM_RC_INITIALIZE = "0x100"
TPM_BAD_LOCALITY = 0x3D


def getrandom_ok(ep):
    return tools(ep, "tpm2_getrandom", "--hex", "8", check=False).returncode == 0


def pcr_value(ep):
    out = tools(ep, "tpm2_pcrread", "sha256:%d" % PCR).stdout.decode()
    m = re.search(r"%d\s*:\s*0x([0-9A-Fa-f]{64})" % PCR, out)
    assert m, out
    return bytes.fromhex(m.group(1))


PERSISTENT = "0x81000010"


def workload(test, ep, d):
    """Extend PCR 16, define+write an NV index, bump a counter to 3.
    Returns the expected PCR value."""
    dg = hashlib.sha256(b"state to migrate").digest()
    tools(ep, "tpm2_pcrextend", "%d:sha256=%s" % (PCR, dg.hex()))
    with open(os.path.join(d, "nv"), "wb") as f:
        f.write(NV_DATA)
    tools(ep, "tpm2_nvdefine", NV_IDX, "-C", "o", "-s", str(len(NV_DATA)),
          "-a", "ownerread|ownerwrite")
    tools(ep, "tpm2_nvwrite", NV_IDX, "-C", "o", "-i", os.path.join(d, "nv"))
    tools(ep, "tpm2_nvdefine", NV_CTR, "-C", "o", "-s", "8",
          "-a", "nt=counter|ownerread|ownerwrite")
    for _ in range(3):
        tools(ep, "tpm2_nvincrement", NV_CTR, "-C", "o")
    # A key: an ECC primary made persistent, plus a transient one (which
    # lives in the volatile state).
    ctx = os.path.join(d, "primary.ctx")
    tools(ep, "tpm2_createprimary", "-C", "o", "-G", "ecc256", "-c", ctx)
    tools(ep, "tpm2_evictcontrol", "-C", "o", "-c", ctx, PERSISTENT)
    test.key_name = tools(ep, "tpm2_readpublic", "-c", PERSISTENT).stdout
    expect = hashlib.sha256(bytes(32) + dg).digest()
    test.assertEqual(pcr_value(ep), expect)
    return expect


def check_migrated(test, ep, pcr, with_volatile=True):
    if with_volatile:
        test.assertEqual(pcr_value(ep), pcr, "PCR not carried over")
    test.assertEqual(tools(ep, "tpm2_nvread", NV_IDX, "-C", "o", "-s",
                           str(len(NV_DATA))).stdout, NV_DATA)
    ctr = tools(ep, "tpm2_nvread", NV_CTR, "-C", "o", "-s", "8").stdout
    test.assertEqual(int.from_bytes(ctr, "big"), 3)
    test.assertEqual(tools(ep, "tpm2_readpublic", "-c", PERSISTENT).stdout, test.key_name, "key not carried over")
    test.assertTrue(getrandom_ok(ep))


class IoctlBody:
    KIND = None

    def setUp(self):
        self.ep = self.endpoint(self.KIND)
        self.d = self.tmpdir()

    def path(self, name):
        return os.path.join(self.d, name)

    # ------------------------------------------------------------------
    def test_init_then_startup(self):
        """-i succeeds; the TPM then wants TPM2_Startup (0x100), after which
        commands work."""
        self.assertTrue(getrandom_ok(self.ep))
        ioctl(self.ep, "-i")
        r = tools(self.ep, "tpm2_getrandom", "8", "--hex", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(TPM_RC_INITIALIZE, r.stderr.decode())
        tools(self.ep, "tpm2_startup", "-c")
        self.assertTrue(getrandom_ok(self.ep))

    def test_info_specification(self):
        """--info 1 prints JSON with the TPM 2.0 specification."""
        out = ioctl(self.ep, "--info", "1").stdout.decode()
        j = json.loads(out)
        self.assertEqual(j["TPMSpecification"]["family"], "2.0")
        self.assertIn("revision", j["TPMSpecification"])

    def test_info_attributes(self):
        """--info 2 prints JSON with the TPM attributes."""
        out = ioctl(self.ep, "--info", "2").stdout.decode()
        j = json.loads(out)
        self.assertIn("manufacturer", j["TPMAttributes"])
        self.assertIn("version", j["TPMAttributes"])
        self.assertIn("model", j["TPMAttributes"])

    def test_get_config(self):
        """-g prints the configuration flags."""
        out = ioctl(self.ep, "-g").stdout.decode()
        self.assertRegex(out, r"ptm configuration flags: 0x[0-9a-fA-F]+")

    def test_capabilities(self):
        """-c prints a non-zero capability mask."""
        out = ioctl(self.ep, "-c").stdout.decode()
        m = re.search(r"ptm capability is 0x([0-9a-fA-F]+)", out)
        self.assertTrue(m, out)
        self.assertNotEqual(int(m.group(1), 16), 0)

    def test_set_locality_valid(self):
        """-l 0..4 are accepted; the TPM keeps working."""
        for loc in range(5):
            ioctl(self.ep, "-l", str(loc))
        ioctl(self.ep, "-l", "0")
        self.assertTrue(getrandom_ok(self.ep))

    def test_set_locality_invalid(self):
        """Locality 5 is rejected: by swtpm_ioctl itself, and by the server
        when sent raw (TPM_BAD_LOCALITY); the TPM keeps working."""
        r = ioctl(self.ep, "-l", "5", check=False)
        self.assertNotEqual(r.returncode, 0)
        resp = ctrl_command(self.ep, CMD_SET_LOCALITY, bytes([5]))
        self.assertEqual(len(resp), 4, resp)
        self.assertEqual(struct.unpack(">I", resp)[0], TPM_BAD_LOCALITY)
        resp = ctrl_command(self.ep, CMD_SET_LOCALITY, bytes([0]))
        self.assertEqual(struct.unpack(">I", resp)[0], 0)
        self.assertTrue(getrandom_ok(self.ep))

    def test_stop_blocks_commands_until_init(self):
        """After --stop TPM commands fail; after -i (+ Startup) they work."""
        ioctl(self.ep, "--stop")
        self.assertFalse(getrandom_ok(self.ep))
        self.assertFalse(getrandom_ok(self.ep))
        ioctl(self.ep, "-i")
        tools(self.ep, "tpm2_startup", "-c")
        self.assertTrue(getrandom_ok(self.ep))

    def test_hash_sequence_extends_pcr17_and_sets_established(self):
        """-h DATA (HASH_START/DATA/END, the H-CRTM sequence at locality 4)
        resets PCR 17 to the H-CRTM value, sets tpmEstablished; -r 3 clears it."""
        before = tools(self.ep, "tpm2_pcrread", "sha256:17").stdout
        ioctl(self.ep, "-h", "measured by the platform")
        after = tools(self.ep, "tpm2_pcrread", "sha256:17").stdout
        self.assertNotEqual(after, before)
        self.assertIn("tpmEstablished is 1", ioctl(self.ep, "-e").stdout.decode())
        ioctl(self.ep, "-r", "3")
        self.assertIn("tpmEstablished is 0", ioctl(self.ep, "-e").stdout.decode())
        self.assertTrue(getrandom_ok(self.ep))

    def test_get_established(self):
        """-e reports the tpmEstablished bit; -r 3 resets it, -r 0 is refused."""
        out = ioctl(self.ep, "-e").stdout.decode()
        self.assertRegex(out, r"tpmEstablished is [01]")
        ioctl(self.ep, "-r", "3")
        self.assertIn("tpmEstablished is 0", ioctl(self.ep, "-e").stdout.decode())
        self.assertNotEqual(ioctl(self.ep, "-r", "0", check=False).returncode, 0)

    def test_buffer_size(self):
        """-b 0 reports the buffer size and its limits."""
        out = ioctl(self.ep, "-b", "0").stdout.decode()
        self.assertRegex(out, r"TPM buffersize: \d+")

    def test_store_volatile(self):
        """-v (store volatile state) succeeds and the TPM keeps working."""
        ioctl(self.ep, "-v")
        self.assertTrue(getrandom_ok(self.ep))

    def test_migrate_state_running(self):
        """--save permanent/volatile on a running TPM, --stop + --load x2 + -i
        on a second endpoint: PCRs, NV data and counter carried over and the
        TPM resumes without Startup (QEMU's migration sequence)."""
        src, dst = self.ep, self.endpoint(self.KIND)
        pcr = workload(self, src, self.d)
        perm, vol = self.path("perm.bin"), self.path("vol.bin")
        ioctl(src, "--save", "permanent", perm)
        ioctl(src, "--save", "volatile", vol)
        self.assertGreater(os.path.getsize(perm), 0)
        self.assertGreater(os.path.getsize(vol), 0)
        ioctl(dst, "--stop")
        ioctl(dst, "--load", "permanent", perm)
        ioctl(dst, "--load", "volatile", vol)
        ioctl(dst, "-i")
        check_migrated(self, dst, pcr)
        # the source is unaffected
        self.assertEqual(pcr_value(src), pcr)

    @quirk("swtpm", "0.7.1: GET_STATEBLOB after CMD_STOP answers 0xa, "
           "empty file (man page: 'can be executed at any time')")
    def test_migrate_state_after_stop(self):
        """-v, --stop, --save permanent/volatile, then --load into a second
        endpoint + -i: PCRs and NV carried over."""
        src, dst = self.ep, self.endpoint(self.KIND)
        pcr = workload(self, src, self.d)
        perm, vol = self.path("perm.bin"), self.path("vol.bin")
        ioctl(src, "-v")
        ioctl(src, "--stop")
        ioctl(src, "--save", "permanent", perm)
        ioctl(src, "--save", "volatile", vol)
        self.assertGreater(os.path.getsize(perm), 0)
        self.assertGreater(os.path.getsize(vol), 0)
        ioctl(dst, "--stop")
        ioctl(dst, "--load", "permanent", perm)
        ioctl(dst, "--load", "volatile", vol)
        ioctl(dst, "-i")
        check_migrated(self, dst, pcr)

    def test_load_requires_stopped_tpm(self):
        """--load into a running TPM is refused."""
        perm = self.path("perm.bin")
        ioctl(self.ep, "--save", "permanent", perm)
        r = ioctl(self.endpoint(self.KIND), "--load", "permanent", perm, check=False)
        self.assertNotEqual(r.returncode, 0)

    @quirk("swtpm", "0.7.1 leaks one fd (on the state dir's .lock) per CMD_INIT")
    def test_repeated_init_no_fd_leak(self):
        """20 x (-i, Startup) does not grow the server's open fds."""
        pid = self.ep.pid()
        if pid is None:
            self.skipTest("endpoint has no pid")

        def nfds():
            return len(os.listdir("/proc/%d/fd" % pid))
        ioctl(self.ep, "-i")
        tools(self.ep, "tpm2_startup", "-c")
        before = nfds()
        for _ in range(20):
            ioctl(self.ep, "-i")
            tools(self.ep, "tpm2_startup", "-c")
        self.assertTrue(getrandom_ok(self.ep))
        self.assertLess(nfds() - before, 5, "fds grew by %d" % (nfds() - before))

    def test_shutdown(self):
        """-s: afterwards the control channel answers or the process exits.

        TARGET DIFFERENCE: swtpm terminates its process on CMD_SHUTDOWN;
        vtpmd only ends the session (daemon and control channel stay up)."""
        ioctl(self.ep, "-s")
        exited = self.ep.exited(10)
        answers = (not exited and
                   ioctl(self.ep, "-c", check=False).returncode == 0)
        self.assertTrue(exited or answers)
        if TARGET == "swtpm":
            self.assertTrue(exited, "swtpm should exit on -s")
            self.assertFalse(getrandom_ok(self.ep))
        elif TARGET == "vtpmd":
            self.assertTrue(answers, "vtpmd: control channel should still answer")


class UnixIoctlTest(IoctlBody, ChannelTestCase):
    KIND = "unix"


class TcpIoctlTest(IoctlBody, ChannelTestCase):
    KIND = "tcp"


if __name__ == "__main__":
    unittest.main()
