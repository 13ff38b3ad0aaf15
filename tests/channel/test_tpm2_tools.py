#!/usr/bin/env python3
"""Unmodified tpm2-tools (tcti-swtpm) against a swtpm-compatible endpoint.

Every test runs once per transport (unix socket and TCP) on a fresh endpoint
from endpoint.make_endpoints (CHANNEL_TARGET=swtpm|vtpmd).  There is no
resource manager on the channel, so transient objects a tool leaves loaded
are flushed explicitly (the TPM has only 3 object slots).

    CHANNEL_TARGET=swtpm python3 tests/channel/test_tpm2_tools.py -v
"""

import hashlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from endpoint import ChannelTestCase, ToolError, flush_transient, tools  # noqa: E402

PCR = 16            # debug PCR: resettable, starts at 0 after Startup(CLEAR)
POLICY_PCR = 23     # application PCR: starts at 0 as well
ZERO = bytes(32)


def digest(tag):
    return hashlib.sha256(tag.encode()).digest()


def pcr_read(ep, d, index):
    """Raw sha256 value of PCR *index* (via tpm2_pcrread -o)."""
    out = os.path.join(d, "pcr%d.bin" % index)
    tools(ep, "tpm2_pcrread", "sha256:%d" % index, "-o", out)
    with open(out, "rb") as f:
        return f.read()


def pcr_extend(ep, index, value):
    tools(ep, "tpm2_pcrextend", "%d:sha256=%s" % (index, value.hex()))


class Tpm2ToolsBody:
    KIND = None

    def setUp(self):
        self.ep = self.endpoint(self.KIND)
        self.d = self.tmpdir()

    def path(self, name):
        return os.path.join(self.d, name)

    # ------------------------------------------------------------------
    def test_getrandom(self):
        """tpm2_getrandom returns the requested number of bytes (env TCTI)."""
        out = tools(self.ep, "tpm2_getrandom", "--hex", "32").stdout.strip()
        self.assertEqual(len(bytes.fromhex(out.decode())), 32)
        out2 = tools(self.ep, "tpm2_getrandom", "--hex", "32").stdout.strip()
        self.assertNotEqual(out, out2)

    def test_getrandom_dash_T(self):
        """The same with the TCTI given as -T instead of the environment."""
        out = self.path("rnd.bin")
        tools(self.ep, "tpm2_getrandom", "-T", self.ep.tcti(), "-o", out, "16",
              extra_env={"TPM2TOOLS_TCTI": "swtpm:path=/nonexistent"})
        self.assertEqual(os.path.getsize(out), 16)

    def test_pcrextend_pcrread_chain(self):
        """PCR 16 follows the sha256 extend chain new = H(old || digest)."""
        self.assertEqual(pcr_read(self.ep, self.d, PCR), ZERO)
        expect = ZERO
        for tag in ("one", "two", "three"):
            dg = digest(tag)
            pcr_extend(self.ep, PCR, dg)
            expect = hashlib.sha256(expect + dg).digest()
            self.assertEqual(pcr_read(self.ep, self.d, PCR), expect)
        # the text output agrees as well
        txt = tools(self.ep, "tpm2_pcrread", "sha256:%d" % PCR).stdout.decode()
        self.assertIn("0x" + expect.hex().upper(), txt)
        # and an untouched PCR is still zero
        self.assertEqual(pcr_read(self.ep, self.d, POLICY_PCR), ZERO)

    def test_seal_unseal_pcr_policy(self):
        """Seal under a PCR policy; unseal passes, fails after an extend."""
        ep, p = self.ep, self.path
        secret = b"channel-sealed-secret\n"
        with open(p("secret"), "wb") as f:
            f.write(secret)
        pcr_extend(ep, POLICY_PCR, digest("boot"))
        tools(ep, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", p("prim.ctx"))
        flush_transient(ep)
        tools(ep, "tpm2_pcrread", "sha256:%d" % POLICY_PCR, "-o", p("pcr.bin"))
        tools(ep, "tpm2_createpolicy", "--policy-pcr", "-l",
              "sha256:%d" % POLICY_PCR, "-f", p("pcr.bin"), "-L", p("pol.dat"))
        flush_transient(ep)
        tools(ep, "tpm2_create", "-C", p("prim.ctx"), "-L", p("pol.dat"),
              "-i", p("secret"), "-u", p("seal.pub"), "-r", p("seal.priv"))
        flush_transient(ep)
        tools(ep, "tpm2_load", "-C", p("prim.ctx"), "-u", p("seal.pub"),
              "-r", p("seal.priv"), "-c", p("seal.ctx"))
        flush_transient(ep)
        auth = "pcr:sha256:%d" % POLICY_PCR
        out = tools(ep, "tpm2_unseal", "-c", p("seal.ctx"), "-p", auth).stdout
        self.assertEqual(out, secret)
        flush_transient(ep)
        # PCR changes -> policy no longer satisfied
        pcr_extend(ep, POLICY_PCR, digest("tampered"))
        r = tools(ep, "tpm2_unseal", "-c", p("seal.ctx"), "-p", auth, check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertNotIn(secret, r.stdout)
        self.assertIn("0x99D", r.stderr.decode(), "expected TPM_RC_POLICY_FAIL")
        flush_transient(ep)

    def test_nv_define_write_read(self):
        """An ordinary NV index: define, write, read back."""
        ep = self.ep
        idx = "0x1500016"
        data = b"vtpmd-channel-nv-test-0123456789"[:32]
        with open(self.path("data"), "wb") as f:
            f.write(data)
        tools(ep, "tpm2_nvdefine", idx, "-C", "o", "-s", "32",
              "-a", "ownerread|ownerwrite")
        tools(ep, "tpm2_nvwrite", idx, "-C", "o", "-i", self.path("data"))
        out = tools(ep, "tpm2_nvread", idx, "-C", "o", "-s", "32").stdout
        self.assertEqual(out, data)
        listing = tools(ep, "tpm2_nvreadpublic").stdout.decode()
        self.assertIn(idx, listing)

    def test_nv_counter_increment(self):
        """A counter NV index incremented twice reads 2."""
        ep = self.ep
        idx = "0x1500017"
        tools(ep, "tpm2_nvdefine", idx, "-C", "o", "-s", "8",
              "-a", "nt=counter|ownerread|ownerwrite")
        tools(ep, "tpm2_nvincrement", idx, "-C", "o")
        tools(ep, "tpm2_nvincrement", idx, "-C", "o")
        out = tools(ep, "tpm2_nvread", idx, "-C", "o", "-s", "8").stdout
        self.assertEqual(int.from_bytes(out, "big"), 2)

    def test_quote_checkquote(self):
        """A signing key quotes PCRs; tpm2_checkquote verifies the quote and
        rejects it for a different nonce."""
        ep, p = self.ep, self.path
        pcr_extend(ep, PCR, digest("measured"))
        tools(ep, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", p("prim.ctx"))
        flush_transient(ep)
        tools(ep, "tpm2_create", "-C", p("prim.ctx"), "-G", "ecc256:ecdsa-sha256",
              "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
              "-u", p("ak.pub"), "-r", p("ak.priv"))
        flush_transient(ep)
        tools(ep, "tpm2_load", "-C", p("prim.ctx"), "-u", p("ak.pub"),
              "-r", p("ak.priv"), "-c", p("ak.ctx"))
        flush_transient(ep)
        tools(ep, "tpm2_readpublic", "-c", p("ak.ctx"), "-f", "pem",
              "-o", p("ak.pem"))
        flush_transient(ep)
        nonce = os.urandom(16).hex()
        tools(ep, "tpm2_quote", "-c", p("ak.ctx"), "-l", "sha256:%d,%d" % (PCR, POLICY_PCR),
              "-q", nonce, "-m", p("quote.msg"), "-s", p("quote.sig"),
              "-o", p("quote.pcrs"), "-g", "sha256")
        flush_transient(ep)
        check = ["tpm2_checkquote", "-u", p("ak.pem"), "-m", p("quote.msg"),
                 "-s", p("quote.sig"), "-f", p("quote.pcrs"), "-g", "sha256"]
        tools(ep, *(check + ["-q", nonce]))
        r = tools(ep, *(check + ["-q", os.urandom(16).hex()]), check=False)
        self.assertNotEqual(r.returncode, 0, "checkquote accepted a wrong nonce")
        # the quoted PCR values are the live ones
        with open(p("quote.pcrs"), "rb") as f:
            blob = f.read()
        self.assertIn(pcr_read(ep, self.d, PCR), blob)

    def test_quote_with_ek_ak(self):
        """The tpm2_createek/createak path (policy sessions on the EK) quotes
        and verifies as well."""
        ep, p = self.ep, self.path
        tools(ep, "tpm2_createek", "-c", p("ek.ctx"), "-G", "ecc", "-u", p("ek.pub"))
        flush_transient(ep)
        tools(ep, "tpm2_createak", "-C", p("ek.ctx"), "-c", p("ak.ctx"), "-G", "ecc",
              "-g", "sha256", "-s", "ecdsa", "-u", p("ak.pub"), "-f", "pem",
              "-n", p("ak.name"))
        flush_transient(ep)
        nonce = os.urandom(8).hex()
        tools(ep, "tpm2_quote", "-c", p("ak.ctx"), "-l", "sha256:0,%d" % PCR,
              "-q", nonce, "-m", p("q.msg"), "-s", p("q.sig"), "-o", p("q.pcrs"),
              "-g", "sha256")
        flush_transient(ep)
        tools(ep, "tpm2_checkquote", "-u", p("ak.pub"), "-m", p("q.msg"),
              "-s", p("q.sig"), "-f", p("q.pcrs"), "-g", "sha256", "-q", nonce)


class UnixTpm2ToolsTest(Tpm2ToolsBody, ChannelTestCase):
    KIND = "unix"


class TcpTpm2ToolsTest(Tpm2ToolsBody, ChannelTestCase):
    KIND = "tcp"


if __name__ == "__main__":
    unittest.main()
