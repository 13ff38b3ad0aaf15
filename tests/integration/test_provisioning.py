#!/usr/bin/env python3
"""Provisioning and measured launch (docs/provisioning.md) with standard tools.

vtpmd provisions instances at `vtpmctl add` (PCR banks, EKs from the TCG
templates, EK and platform certificates from its local CA) and measures
them before the guest starts; the guest side is unmodified tpm2-tools over
the swtpm-compatible endpoint, the verifier side is openssl, tpm2_eventlog,
tpm2_checkquote and an independent replay of the event log in Python.
"""

import hashlib
import hmac
import os
import re
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, main, wait_until  # noqa: E402

HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256,
          "sha384": hashlib.sha384, "sha512": hashlib.sha512}
ALG_IDS = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
EK_CERT_INDEX = {"rsa": "0x01c00002", "ecc": "0x01c0000a"}
EK_HANDLE = {"rsa": "0x81010001", "ecc": "0x81010002"}
PLATFORM_CERT_INDEX = "0x01c08000"


def run(argv, env=None, check=True, input=None):  # noqa: A002
    p = subprocess.run(argv, env=env, capture_output=True, input=input, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("%s -> exit %d\nstdout: %s\nstderr: %s" % (
            " ".join(argv), p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
    return p


# ---- a minimal DER reader, for the attribute certificate openssl 3.0 cannot parse
def der_read(data, at=0):
    """(tag, header length, content length) of the TLV at *at*."""
    tag = data[at]
    length = data[at + 1]
    header = 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[at + 2:at + 2 + n], "big")
        header += n
    return tag, header, length


def der_children(data):
    """The TLVs inside the constructed value *data* (its full encoding)."""
    _, header, length = der_read(data)
    out, at, end = [], header, header + length
    while at < end:
        _, h, n = der_read(data, at)
        out.append(data[at:at + h + n])
        at += h + n
    return out


def der_content(tlv):
    _, header, length = der_read(tlv)
    return tlv[header:header + length]


# ---- an independent event-log reader and replay (the verifier's side)
def replay_event_log(blob):
    """{bank: {pcr: value}} from a crypto-agile TCG event log."""
    pcr_index, event_type = struct.unpack_from("<II", blob, 0)
    assert event_type == 3, "first event is not EV_NO_ACTION"
    size, = struct.unpack_from("<I", blob, 28)
    spec = blob[32:32 + size]
    assert spec.startswith(b"Spec ID Event03\0")
    count, = struct.unpack_from("<I", spec, 24)
    sizes = {}
    for i in range(count):
        alg, dsize = struct.unpack_from("<HH", spec, 28 + 4 * i)
        sizes[alg] = dsize
    pcrs = {ALG_IDS[a]: {} for a in sizes}
    at = 32 + size
    events = []
    while at < len(blob):
        pcr, etype, n = struct.unpack_from("<III", blob, at)
        at += 12
        digests = {}
        for _ in range(n):
            alg, = struct.unpack_from("<H", blob, at)
            at += 2
            digests[ALG_IDS[alg]] = blob[at:at + sizes[alg]]
            at += sizes[alg]
        dsize, = struct.unpack_from("<I", blob, at)
        data = blob[at + 4:at + 4 + dsize]
        at += 4 + dsize
        events.append((pcr, etype, digests, data))
        for bank, d in digests.items():
            old = pcrs[bank].get(pcr, bytes(len(d)))
            pcrs[bank][pcr] = HASHES[bank](old + d).digest()
    return pcrs, events


class ProvisioningTestCase(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()
        cls.tmp = tempfile.mkdtemp(prefix="vtpmd-prov-")
        cls.addClassCleanup(lambda: subprocess.run(["rm", "-rf", cls.tmp]))
        cls.ca_pem = os.path.join(cls.tmp, "ca.pem")
        with open(cls.ca_pem, "w") as f:
            f.write(cls.d.ctl_ok("ca-cert"))
        cls.serial = 0

    def path(self, name):
        return os.path.join(self.tmp, "%s-%s" % (self._testMethodName, name))

    def add(self, *flags):
        """Adds a provisioned instance with a swtpm endpoint; (uuid, env)."""
        type(self).serial += 1
        sock = os.path.join(self.d.tmp, "tpm%d" % self.serial)
        uuid = self.d.ctl_ok("add", "--swtpm-path", sock, *flags).strip()
        env = dict(os.environ)
        env["TPM2TOOLS_TCTI"] = "swtpm:path=" + sock
        env["TSS2_LOG"] = "all+NONE"
        return uuid, env

    def tool(self, env, *argv, check=True):
        return run(list(argv), env=env, check=check)

    def pcr_values(self, env, selection):
        """{bank: {pcr: bytes}} from tpm2_pcrread."""
        out = self.tool(env, "tpm2_pcrread", selection).stdout.decode()
        values, bank = {}, None
        for line in out.splitlines():
            m = re.match(r"^\s+(sha\d+):\s*$", line)
            if m:
                bank = m.group(1)
                values[bank] = {}
                continue
            m = re.match(r"^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)", line)
            if m and bank:
                values[bank][int(m.group(1))] = bytes.fromhex(m.group(2))
        return values

    def event_log(self, uuid, name="log.bin"):
        out = self.path(name)
        self.d.ctl_ok("eventlog", uuid, "--output", out)
        with open(out, "rb") as f:
            return out, f.read()


class EkCertificateTest(ProvisioningTestCase):
    def setUp(self):
        self.uuid, self.env = self.add("--ek", "rsa,ecc", "--ek-cert", "--platform-cert")
        self.tool(self.env, "tpm2_startup", "-c")

    def cert_pem(self, der_path):
        pem = der_path + ".pem"
        run(["openssl", "x509", "-inform", "der", "-in", der_path, "-out", pem])
        return pem

    def test_getekcertificate_reads_both_certificates_which_verify(self):
        rsa, ecc = self.path("rsa.der"), self.path("ecc.der")
        self.tool(self.env, "tpm2_getekcertificate", "-o", rsa, "-o", ecc)
        for kind, der in (("rsa", rsa), ("ecc", ecc)):
            nv = self.path(kind + "-nv.der")
            self.tool(self.env, "tpm2_nvread", EK_CERT_INDEX[kind], "-C", "o", "-o", nv)
            with open(der, "rb") as a, open(nv, "rb") as b:
                self.assertEqual(a.read(), b.read(), "getekcertificate and nvread disagree for " + kind)
            out = run(["openssl", "verify", "-CAfile", self.ca_pem, self.cert_pem(der)]).stdout.decode()
            self.assertIn(": OK", out)

    def test_certificates_follow_the_ek_credential_profile(self):
        for kind, usage in (("rsa", "Key Encipherment"), ("ecc", "Key Agreement")):
            der = self.path(kind + ".der")
            self.tool(self.env, "tpm2_nvread", EK_CERT_INDEX[kind], "-C", "o", "-o", der)
            text = run(["openssl", "x509", "-inform", "der", "-in", der, "-noout", "-text"]).stdout.decode()
            self.assertRegex(text, r"Subject: *\n")  # empty subject...
            self.assertRegex(text, r"Subject Alternative Name: critical\s*\n\s*DirName:"
                                   r"/2\.23\.133\.2\.1=id:[0-9A-F]{8}/2\.23\.133\.2\.2=[^/]+/2\.23\.133\.2\.3=id:[0-9A-F]{8}")
            self.assertRegex(text, r"Key Usage: critical\s*\n\s*%s\s*\n" % usage)
            self.assertRegex(text, r"Extended Key Usage:\s*\n\s*2\.23\.133\.8\.1")
            self.assertRegex(text, r"Basic Constraints:\s*\n\s*CA:FALSE")
            self.assertIn("Authority Key Identifier", text)
            self.assertIn("Issuer: CN = vtpmd local EK CA, O = vtpmd", text)
            self.assertIn("Subject Directory Attributes", text)
            # The NV index is the profile's: platform-created, write-locked, readable by owner and with auth.
            attrs = self.tool(self.env, "tpm2_nvreadpublic", EK_CERT_INDEX[kind]).stdout.decode()
            for a in ("ppwrite", "writelocked", "writedefine", "ppread", "ownerread", "authread", "no_da",
                      "platformcreate"):
                self.assertRegex(attrs, r"friendly: .*\b%s\b" % a)

    def test_createek_public_key_matches_the_certificate(self):
        for kind in ("rsa", "ecc"):
            der, pub = self.path(kind + ".der"), self.path(kind + "-ek.pem")
            self.tool(self.env, "tpm2_nvread", EK_CERT_INDEX[kind], "-C", "o", "-o", der)
            self.tool(self.env, "tpm2_createek", "-c", self.path(kind + ".ctx"), "-G", kind, "-u", pub, "-f", "pem")
            self.tool(self.env, "tpm2_flushcontext", "-t")
            cert_key = run(["openssl", "x509", "-inform", "der", "-in", der, "-pubkey", "-noout"]).stdout
            with open(pub, "rb") as f:
                self.assertEqual(f.read(), cert_key, kind + " EK differs from its certificate's key")
            # ...and it is persistent at the TCG handle.
            persisted = self.path(kind + "-persisted.pem")
            self.tool(self.env, "tpm2_readpublic", "-c", EK_HANDLE[kind], "-o", persisted, "-f", "pem")
            with open(persisted, "rb") as f:
                self.assertEqual(f.read(), cert_key)

    def test_certificates_fit_the_smallest_command_size(self):
        uuid, env = self.add("--max-command-size", "1024", "--ek", "rsa", "--ek-cert")
        self.tool(env, "tpm2_startup", "-c")
        der = self.path("small.der")
        self.tool(env, "tpm2_getekcertificate", "-o", der)
        run(["openssl", "verify", "-CAfile", self.ca_pem, self.cert_pem(der)])

    def test_write_locked_certificate_cannot_be_overwritten_by_the_guest(self):
        # Even with platform auth (the platform hierarchy is still enabled here).
        p = run(["tpm2_nvwrite", EK_CERT_INDEX["rsa"], "-C", "p", "-i", "-"], env=self.env, check=False,
                input=b"junk")
        self.assertNotEqual(p.returncode, 0)

    def test_platform_certificate_is_signed_by_the_ca_and_names_the_ek_certificate(self):
        plat, rsa = self.path("platform.der"), self.path("rsa.der")
        self.tool(self.env, "tpm2_nvread", PLATFORM_CERT_INDEX, "-C", "o", "-o", plat)
        self.tool(self.env, "tpm2_nvread", EK_CERT_INDEX["rsa"], "-C", "o", "-o", rsa)
        with open(plat, "rb") as f:
            cert = f.read()
        info, algorithm, signature = der_children(cert)
        # The signature over AttributeCertificateInfo verifies with the CA key.
        ca_pub = self.path("ca-pub.pem")
        run(["openssl", "x509", "-in", self.ca_pem, "-pubkey", "-noout", "-out", ca_pub])
        with open(self.path("info.der"), "wb") as f:
            f.write(info)
        with open(self.path("sig.der"), "wb") as f:
            f.write(der_content(signature)[1:])  # BIT STRING: skip the unused-bits byte
        out = run(["openssl", "dgst", "-sha256", "-verify", ca_pub, "-signature", self.path("sig.der"),
                   self.path("info.der")]).stdout.decode()
        self.assertIn("Verified OK", out)
        self.assertIn(b"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", algorithm)  # ecdsa-with-SHA256
        fields = der_children(info)
        self.assertEqual(der_content(fields[0]), b"\x01")  # v2
        # Holder: baseCertificateID = (CA name, serial of the RSA EK certificate).
        serial = run(["openssl", "x509", "-inform", "der", "-in", rsa, "-noout", "-serial"]).stdout.decode()
        ek_serial = int(serial.strip().split("=")[1], 16)
        holder = der_children(fields[1])[0]
        issuer_serial = der_children(holder)
        self.assertEqual(int.from_bytes(der_content(issuer_serial[1]), "big"), ek_serial)
        # TCG attributes: platform specification, credential type = platform attribute certificate.
        self.assertIn(b"\x06\x05\x67\x81\x05\x02\x11", info)
        self.assertIn(b"\x06\x05\x67\x81\x05\x08\x02", info)
        # The platform serial is the instance UUID.
        self.assertIn(self.uuid.encode(), info)


class PcrBankTest(ProvisioningTestCase):
    def allocated_banks(self, env):
        out = self.tool(env, "tpm2_getcap", "pcrs").stdout.decode()
        banks = []
        for line in out.splitlines():
            m = re.match(r"^\s*-\s*(sha\d+)\s*:\s*\[\s*(.*?)\s*\]", line)
            if m and m.group(2):
                banks.append(m.group(1))
        return banks

    def test_requested_banks_are_the_active_ones(self):
        for banks in (["sha1", "sha384"], ["sha256", "sha384", "sha512"], ["sha1", "sha256", "sha384", "sha512"]):
            uuid, env = self.add("--pcr-banks", ",".join(banks))
            self.tool(env, "tpm2_startup", "-c")
            self.assertEqual(sorted(self.allocated_banks(env)), sorted(banks))
            values = self.pcr_values(env, "+".join("%s:0" % b for b in HASHES))
            self.assertEqual(sorted(b for b, v in values.items() if v), sorted(banks))
            shown = self.d.result("show", uuid=uuid)
            self.assertEqual(shown["provisioning"]["pcr_banks"], banks)

    def test_banks_survive_a_restart_of_the_daemon(self):
        uuid, env = self.add("--pcr-banks", "sha384")
        self.d.stop()
        self.d.start()
        self.tool(env, "tpm2_startup", "-c")
        self.assertEqual(self.allocated_banks(env), ["sha384"])


class MeasuredLaunchTest(ProvisioningTestCase):
    def setUp(self):
        self.uuid, self.env = self.add("--ek", "rsa", "--pcr-banks", "sha1,sha256")
        self.kernel = self.path("vmlinuz")
        with open(self.kernel, "wb") as f:
            f.write(os.urandom(300000))

    def measure_launch(self):
        self.d.ctl_ok("measure", self.uuid, "--pcr", "4", "--file", self.kernel)
        self.d.ctl_ok("measure", self.uuid, "--pcr", "5", "--data", "root=/dev/vda console=ttyS0")
        initrd = b"initrd contents"
        self.d.ctl_ok("measure", self.uuid, "--pcr", "5", "--event", "initrd", "--digest",
                      "sha1:%s,sha256:%s" % (hashlib.sha1(initrd).hexdigest(), hashlib.sha256(initrd).hexdigest()))

    def test_event_log_replays_to_the_pcrs_and_a_quote_verifies(self):
        self.measure_launch()
        log_path, blob = self.event_log(self.uuid)
        replayed, events = replay_event_log(blob)
        self.assertEqual([e[0] for e in events], [4, 5, 5])
        with open(self.kernel, "rb") as f:
            kernel = f.read()
        self.assertEqual(events[0][2]["sha256"], hashlib.sha256(kernel).digest())
        self.assertEqual(events[0][2]["sha1"], hashlib.sha1(kernel).digest())
        self.assertEqual(events[1][3], b"root=/dev/vda console=ttyS0")
        self.assertEqual(events[1][2]["sha256"], hashlib.sha256(b"root=/dev/vda console=ttyS0").digest())
        self.assertEqual(events[2][3], b"initrd")
        # The guest's view (no Startup needed: the TPM was started for the measurements).
        pcrs = self.pcr_values(self.env, "sha1:4,5+sha256:4,5")
        self.assertEqual(pcrs, {b: {4: replayed[b][4], 5: replayed[b][5]} for b in ("sha1", "sha256")})
        # tpm2_eventlog parses the log and computes the same PCRs.
        parsed = self.tool(self.env, "tpm2_eventlog", log_path)
        self.assertEqual(parsed.stderr.decode().strip(), "", "tpm2_eventlog complained")
        text = parsed.stdout.decode()
        for bank in ("sha1", "sha256"):
            section = text[text.index("pcrs:"):]
            section = section[section.index(bank + ":"):]
            for pcr in (4, 5):
                m = re.search(r"^\s+%d\s*:\s*0x([0-9a-fA-F]+)" % pcr, section, re.M)
                self.assertEqual(bytes.fromhex(m.group(1)), replayed[bank][pcr])
        # A quote over the measured PCRs by an AK under the persistent EK verifies.
        ak_pub = self.path("ak.pem")
        self.tool(self.env, "tpm2_createak", "-C", "0x81010001", "-c", self.path("ak.ctx"), "-u", ak_pub, "-f", "pem",
                  "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-n", self.path("ak.name"))
        msg, sig, pcrs_out = self.path("q.msg"), self.path("q.sig"), self.path("q.pcrs")
        self.tool(self.env, "tpm2_quote", "-c", self.path("ak.ctx"), "-l", "sha256:4,5", "-q", "c0ffee", "-m", msg,
                  "-s", sig, "-o", pcrs_out, "-g", "sha256")
        self.tool(self.env, "tpm2_checkquote", "-u", ak_pub, "-m", msg, "-s", sig, "-f", pcrs_out, "-g", "sha256",
                  "-q", "c0ffee")
        with open(pcrs_out, "rb") as f:
            quoted = f.read()
        # The quoted PCR values (after the TPML_PCR_SELECTION) are the replayed ones.
        self.assertIn(replayed["sha256"][4], quoted)
        self.assertIn(replayed["sha256"][5], quoted)
        self.tool(self.env, "tpm2_flushcontext", "-t")

    def test_measure_after_guest_started_is_refused_without_force(self):
        self.measure_launch()
        self.tool(self.env, "tpm2_getrandom", "8")  # the guest runs
        before = self.pcr_values(self.env, "sha256:4,5")
        _, log_before = self.event_log(self.uuid, "before.bin")
        code, out, err = self.d.ctl("measure", self.uuid, "--pcr", "4", "--data", "late")
        self.assertEqual(code, 1)
        self.assertIn("invalid_argument", err)
        self.assertIn("--force", err)
        self.assertEqual(self.pcr_values(self.env, "sha256:4,5"), before)
        self.assertEqual(self.event_log(self.uuid, "after.bin")[1], log_before)
        self.d.ctl_ok("measure", self.uuid, "--pcr", "4", "--data", "late", "--force")
        replayed, events = replay_event_log(self.event_log(self.uuid, "forced.bin")[1])
        self.assertEqual(len(events), 4)
        self.assertEqual(self.pcr_values(self.env, "sha256:4")["sha256"][4], replayed["sha256"][4])

    def test_a_started_guest_stays_started_across_a_clean_restart(self):
        self.measure_launch()
        self.tool(self.env, "tpm2_getrandom", "8")
        self.d.stop()
        self.d.start()  # the volatile state (PCRs, log, the guest's progress) resumes
        code, _, err = self.d.ctl("measure", self.uuid, "--pcr", "4", "--data", "late")
        self.assertEqual(code, 1)
        self.assertIn("--force", err)

    def test_reset_starts_a_new_boot(self):
        self.measure_launch()
        self.tool(self.env, "tpm2_getrandom", "8")
        self.d.ctl_ok("reset", self.uuid)
        _, blob = self.event_log(self.uuid)
        replayed, events = replay_event_log(blob)
        self.assertEqual(events, [])
        self.assertEqual(sorted(replayed), ["sha1", "sha256"])
        # A new launch may be measured again, from PCRs back at zero.
        self.d.ctl_ok("measure", self.uuid, "--pcr", "4", "--data", "second boot")
        replayed, events = replay_event_log(self.event_log(self.uuid, "2.bin")[1])
        self.assertEqual(len(events), 1)
        self.assertEqual(self.pcr_values(self.env, "sha256:4")["sha256"][4], replayed["sha256"][4])

    def test_measurements_survive_a_clean_restart_and_a_crash(self):
        self.measure_launch()
        _, blob = self.event_log(self.uuid)
        pcrs = self.pcr_values(self.env, "sha1:4,5+sha256:4,5")
        self.d.stop()
        self.d.start()
        self.assertEqual(self.event_log(self.uuid, "restarted.bin")[1], blob)
        self.assertEqual(self.pcr_values(self.env, "sha1:4,5+sha256:4,5"), pcrs)
        # measure answers once PCRs and log are durable: a SIGKILL right after keeps both.
        self.d.ctl_ok("reset", self.uuid)
        self.measure_launch()
        _, blob = self.event_log(self.uuid, "again.bin")
        self.d.kill()
        self.d.start()
        self.assertEqual(self.event_log(self.uuid, "crashed.bin")[1], blob)
        replayed, _ = replay_event_log(blob)
        self.assertEqual(self.pcr_values(self.env, "sha256:4,5")["sha256"], {p: replayed["sha256"][p] for p in (4, 5)})

    def test_export_and_import_carry_the_event_log_and_provisioning(self):
        self.measure_launch()
        _, blob = self.event_log(self.uuid)
        key, bundle = self.path("transport.key"), self.path("bundle.vtpmx")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        self.d.ctl_ok("export", self.uuid, "--transport-key", key, "--output", bundle)
        other = self.start_daemon(name="destination")
        other.ctl_ok("import", bundle, "--transport-key", key)
        out = self.path("imported.bin")
        other.ctl_ok("eventlog", self.uuid, "--output", out)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), blob)
        self.assertEqual(other.result("show", uuid=self.uuid)["provisioning"]["ek"][0]["handle"], "0x81010001")

    def test_empty_log_names_the_active_banks(self):
        _, blob = self.event_log(self.uuid)
        replayed, events = replay_event_log(blob)
        self.assertEqual(events, [])
        self.assertEqual(sorted(replayed), ["sha1", "sha256"])
        self.tool(self.env, "tpm2_eventlog", self.path("log.bin"))


class BadInputTest(ProvisioningTestCase):
    def instance_count(self):
        return len(self.d.result("list")["instances"])

    def assertRefused(self, args, code, needle, exit_code=1):
        before = self.instance_count()
        rc, out, err = self.d.ctl(*args)
        self.assertEqual(rc, exit_code, "%s: %s%s" % (args, out, err))
        self.assertIn(needle, err)
        if code:
            self.assertIn(code + ":", err)
        self.assertEqual(self.instance_count(), before, "a refused request created an instance")

    def test_bad_add_options(self):
        self.assertRefused(["add", "--pcr-banks", "sha1,md5"], "invalid_argument", "unknown 'md5'")
        self.assertRefused(["add", "--pcr-banks", "sha256,sha256"], "invalid_argument", "given twice")
        self.assertRefused(["add", "--ek", "dsa"], "invalid_argument", "unknown 'dsa' (known: rsa, ecc)")
        self.assertRefused(["add", "--ek-cert"], "invalid_argument", "needs at least one EK")
        self.assertRefused(["add", "--ek", "rsa", "--platform-cert"], "invalid_argument", "needs ek_certificates")
        self.assertRefused(["add", "--tpm", "1.2", "--ek", "ecc"], "unsupported", "one RSA endorsement key")
        self.assertRefused(["add", "--tpm", "1.2", "--ek", "rsa", "--ek-cert", "--platform-cert"], "unsupported",
                           "TPM 2.0")
        self.assertRefused(["add", "--tpm", "1.2", "--pcr-banks", "sha1"], "unsupported", "TPM 2.0 feature")
        self.assertRefused(["add", "--pcr-banks", ""], None, "empty name", exit_code=2)
        resp = self.d.call("add", pcr_banks="sha256")
        self.assertErrorCode(resp, "invalid_argument")
        resp = self.d.call("add", pcr_banks=[])
        self.assertErrorCode(resp, "invalid_argument")

    def test_bad_measure(self):
        uuid, env = self.add()
        unknown = "00000000-0000-4000-8000-000000000001"
        self.assertRefused(["measure", unknown, "--pcr", "4", "--data", "x"], "not_found", unknown)
        self.assertRefused(["measure", uuid, "--pcr", "4", "--file", "/nonexistent/vmlinuz"], None,
                           "cannot read '/nonexistent/vmlinuz'", exit_code=2)
        self.assertRefused(["measure", uuid, "--pcr", "24", "--data", "x"], None, "--pcr", exit_code=2)
        self.assertRefused(["measure", uuid, "--data", "x"], None, "--pcr N is required", exit_code=2)
        self.assertRefused(["measure", uuid, "--pcr", "4", "--data", "x", "--file", "/etc/hostname"], None,
                           "exactly one of", exit_code=2)
        self.assertRefused(["measure", uuid, "--pcr", "4", "--digest", "sha256:abcd"], "invalid_argument",
                           "has 32 bytes, not 2")
        self.assertRefused(["measure", uuid, "--pcr", "4", "--digest", "md5:" + "00" * 16], "invalid_argument",
                           "unknown bank 'md5'")
        # libtpms' default banks are sha1 and sha256: one digest alone is not enough.
        self.assertRefused(["measure", uuid, "--pcr", "4", "--digest", "sha256:" + "00" * 32], "invalid_argument",
                           "a digest is needed for each (missing sha1)")
        self.assertRefused(["eventlog", unknown], "not_found", unknown)
        tpm12 = self.d.ctl_ok("add", "--tpm", "1.2").strip()
        self.assertRefused(["measure", tpm12, "--pcr", "4", "--data", "x"], "unsupported", "TPM 1.2")
        # Nothing was measured by any of these.
        replayed, events = replay_event_log(self.event_log(uuid)[1])
        self.assertEqual(events, [])
        self.tool(env, "tpm2_startup", "-c", check=False)
        pcrs = self.pcr_values(env, "sha256:4")
        self.assertEqual(pcrs["sha256"][4], bytes(32))


class Tpm12EkTest(ProvisioningTestCase):
    STARTUP = "00c10000000c0000009900 01"

    @staticmethod
    def read_pubek(nonce):
        return "00c10000001e0000007c" + nonce.hex()

    def test_tpm12_ek_is_created_and_readable(self):
        plain = self.d.ctl_ok("add", "--tpm", "1.2").strip()
        self.d.ctl_ok("exec", plain, self.STARTUP)
        nonce = os.urandom(20)
        resp = bytes.fromhex(self.d.ctl_ok("exec", plain, self.read_pubek(nonce)).strip())
        self.assertEqual(struct.unpack(">I", resp[6:10])[0], 0x23, "a fresh TPM 1.2 has no EK (TPM_NO_ENDORSEMENT)")

        uuid = self.d.ctl_ok("add", "--tpm", "1.2", "--ek", "rsa").strip()
        self.assertEqual(self.d.result("show", uuid=uuid)["provisioning"], {"ek": [{"type": "rsa"}]})
        self.d.ctl_ok("exec", uuid, self.STARTUP)  # left awaiting the guest's Startup
        resp = bytes.fromhex(self.d.ctl_ok("exec", uuid, self.read_pubek(nonce)).strip())
        self.assertEqual(struct.unpack(">I", resp[6:10])[0], 0)
        # TPM_PUBKEY: RSA, RSAES-OAEP-SHA1, 2048 bits; checksum = SHA-1(pubkey || nonce).
        pubkey, checksum = resp[10:-20], resp[-20:]
        self.assertEqual(pubkey[:8], bytes.fromhex("0000000100030001"))
        self.assertEqual(struct.unpack(">I", pubkey[12:16])[0], 2048)
        self.assertEqual(len(pubkey[-256:]), 256)
        self.assertEqual(hashlib.sha1(pubkey + nonce).digest(), checksum)
        # The EK persists across a daemon restart, and a second one cannot be made.
        self.d.stop()
        self.d.start()
        self.d.ctl_ok("exec", uuid, self.STARTUP)
        again = bytes.fromhex(self.d.ctl_ok("exec", uuid, self.read_pubek(nonce)).strip())
        self.assertEqual(again[10:-20], pubkey)
        create = "00c10000003600000078" + os.urandom(20).hex() + "00000001000300010000000c000008000000000200000000"
        resp = bytes.fromhex(self.d.ctl_ok("exec", uuid, create).strip())
        self.assertNotEqual(struct.unpack(">I", resp[6:10])[0], 0)


class Tpm12Owner:
    """A TPM 1.2 guest's side of ownership, as TrouSerS does it: TakeOwnership
    with the owner secret encrypted to the EK (RSAES-OAEP, label "TCPA"),
    then owner-authorised commands in OIAP sessions (HMAC-SHA1)."""

    def __init__(self, send):
        self.send = send  # bytes -> bytes
        self.secret = hashlib.sha1(b"owner password").digest()

    @staticmethod
    def rc(resp):
        return struct.unpack(">I", resp[6:10])[0]

    def oiap(self):
        resp = self.send(struct.pack(">HII", 0xC1, 10, 0x0A))
        assert self.rc(resp) == 0, "TPM_OIAP rc %d" % self.rc(resp)
        return struct.unpack(">I", resp[10:14])[0], resp[14:34]

    def authorised(self, ordinal, params):
        """An AUTH1 command: *params* after the ordinal, owner-authorised."""
        handle, nonce_even = self.oiap()
        nonce_odd = os.urandom(20)
        digest = hashlib.sha1(struct.pack(">I", ordinal) + params).digest()
        auth = hmac.new(self.secret, digest + nonce_even + nonce_odd + b"\0", hashlib.sha1).digest()
        body = struct.pack(">I", ordinal) + params + struct.pack(">I", handle) + nonce_odd + b"\0" + auth
        return self.send(struct.pack(">HI", 0xC2, 6 + len(body)) + body)

    def take_ownership(self, ek_modulus):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        ek = rsa.RSAPublicNumbers(65537, int.from_bytes(ek_modulus, "big")).public_key()
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=b"TCPA")
        enc_owner, enc_srk = ek.encrypt(self.secret, oaep), ek.encrypt(bytes(20), oaep)
        # TPM_KEY12 for the SRK: storage, RSA 2048 OAEP, auth always, no PCRs, no key yet.
        srk = (struct.pack(">HHHIB", 0x28, 0, 0x11, 0, 1) + struct.pack(">IHHI", 1, 3, 1, 12) +
               struct.pack(">III", 2048, 2, 0) + struct.pack(">III", 0, 0, 0))
        params = (struct.pack(">HI", 5, len(enc_owner)) + enc_owner + struct.pack(">I", len(enc_srk)) + enc_srk +
                  srk)
        return self.rc(self.authorised(0x0D, params))

    def nv_read(self, index, offset, size, owner=True):
        params = struct.pack(">III", index, offset, size)
        if not owner:
            return self.send(struct.pack(">HII", 0xC1, 22, 0xCF) + params)
        return self.authorised(0xCF, params)


class Tpm12EkCertificateTest(ProvisioningTestCase):
    """The TPM 1.2 EK certificate: TCG PC Client index 0x1000F000, a
    TCG_PCCLIENT_STORED_CERT; NV locked, so the guest reads it as owner."""

    def test_tpm12_ek_certificate_is_readable_by_the_owner_and_verifies(self):
        uuid = self.d.ctl_ok("add", "--tpm", "1.2", "--ek", "rsa", "--ek-cert").strip()
        self.assertEqual(self.d.result("show", uuid=uuid)["provisioning"],
                         {"ek": [{"type": "rsa", "certificate_index": "0x1000f000"}]})
        send = lambda cmd: bytes.fromhex(self.d.ctl_ok("exec", uuid, cmd.hex()).strip())  # noqa: E731
        owner = Tpm12Owner(send)
        self.assertEqual(owner.rc(send(bytes.fromhex(Tpm12EkTest.STARTUP.replace(" ", "")))), 0)
        nonce = os.urandom(20)
        pubek = send(bytes.fromhex(Tpm12EkTest.read_pubek(nonce)))
        self.assertEqual(owner.rc(pubek), 0)
        modulus = pubek[10:-20][-256:]
        # NV is locked: without the owner's authorisation the index is closed.
        self.assertNotEqual(owner.rc(owner.nv_read(0x1000F000, 0, 7, owner=False)), 0)
        self.assertEqual(owner.take_ownership(modulus), 0, "TakeOwnership of the enabled, activated TPM")
        header = owner.nv_read(0x1000F000, 0, 7)
        self.assertEqual(owner.rc(header), 0)
        data = header[14:14 + 7]
        tag, cert_type, size, full_tag = struct.unpack(">HBHH", data)
        self.assertEqual((tag, cert_type, full_tag), (0x1001, 0, 0x1002))
        der = b""
        while len(der) < size - 2:
            n = min(512, size - 2 - len(der))
            chunk = owner.nv_read(0x1000F000, 7 + len(der), n)
            self.assertEqual(owner.rc(chunk), 0)
            der += chunk[14:14 + n]
        path = self.path("ek12.der")
        with open(path, "wb") as f:
            f.write(der)
        pem = path + ".pem"
        run(["openssl", "x509", "-inform", "der", "-in", path, "-out", pem])
        self.assertIn(": OK", run(["openssl", "verify", "-CAfile", self.ca_pem, pem]).stdout.decode())
        text = run(["openssl", "x509", "-in", pem, "-noout", "-text", "-modulus"]).stdout.decode()
        self.assertIn("Modulus=" + modulus.hex().upper(), text)
        self.assertIn("2.23.133.8.1", text)  # tcg-kp-EKCertificate
        self.assertRegex(text, r"DirName:/2\.23\.133\.2\.1=id:49424D00/")
        # tcg-at-tpmSpecification: family "1.2", level 2, revision 116.
        self.assertIn(bytes.fromhex("0c03312e32020102020174"), der)
        # NV is locked and the index owner-writable only: a write without authorisation fails.
        write = struct.pack(">HII", 0xC1, 26, 0xCD) + struct.pack(">III", 0x1000F000, 0, 4) + b"junk"
        self.assertNotEqual(owner.rc(send(write)), 0)

    def test_tpm12_platform_certificate_is_refused(self):
        r = self.d.call("add", tpm="1.2", ek=["rsa"], ek_certificates=True, platform_certificate=True)
        self.assertErrorCode(r, "unsupported")


class InterruptedProvisioningTest(DaemonTestCase):
    def test_an_add_interrupted_by_a_crash_leaves_no_instance(self):
        d = self.start_daemon(name="crashing")
        d.stop()
        # The second durable blob is one of provisioning's NV changes (the first is the new
        # instance itself): the daemon dies between its add and the end of its provisioning.
        d.start(env={"VTPMD_CRASH_AT": "blob-synced:2"})
        code, out, err = d.ctl("add", "--ek", "rsa", "--ek-cert")
        self.assertNotEqual(code, 0, "the add was answered: " + out)
        d.proc.wait(10)
        files = [f for f in os.listdir(d.state_dir) if f.endswith(".vtpm")]
        self.assertTrue(files, "the instance was saved before provisioning, marked pending")
        d.start()
        self.assertEqual(d.result("list")["instances"], [])
        wait_until(lambda: not [f for f in os.listdir(d.state_dir) if f.endswith(".vtpm")], 10,
                   what="the unfinished instance's state removed")
        self.assertIn("provisioning was interrupted", d.log())
        # Adds work as before.
        uuid = d.ctl_ok("add", "--ek", "rsa", "--ek-cert").strip()
        self.assertEqual(d.result("show", uuid=uuid)["provisioning"]["ek"][0]["type"], "rsa")


class CaTest(ProvisioningTestCase):
    def test_ca_is_kept_sealed_across_restarts(self):
        uuid, env = self.add("--ek", "ecc", "--ek-cert")
        first = self.d.ctl_ok("ca-cert")
        with open(os.path.join(self.d.state_dir, "ca.key"), "rb") as f:
            sealed = f.read()
        self.assertTrue(sealed.startswith(b"VTPMCAK1"))
        self.assertNotIn(b"PRIVATE KEY", sealed)
        self.d.stop()
        self.d.start()
        self.assertEqual(self.d.ctl_ok("ca-cert"), first)
        # Certificates issued after the restart chain to the same CA.
        uuid2, env2 = self.add("--ek", "ecc", "--ek-cert")
        self.tool(env2, "tpm2_startup", "-c")
        der = self.path("ecc.der")
        self.tool(env2, "tpm2_nvread", EK_CERT_INDEX["ecc"], "-C", "o", "-o", der)
        pem = der + ".pem"
        run(["openssl", "x509", "-inform", "der", "-in", der, "-out", pem])
        ca = self.path("ca.pem")
        with open(ca, "w") as f:
            f.write(first)
        run(["openssl", "verify", "-CAfile", ca, pem])

    def test_ca_key_under_another_master_key_refuses_to_start(self):
        self.d.stop()
        key = os.path.join(self.d.state_dir, "ca.key")
        with open(key, "rb") as f:
            data = bytearray(f.read())
        data[-1] ^= 1
        with open(key, "wb") as f:
            f.write(data)
        with self.assertRaises(Exception):
            self.d.start()
        self.assertIn("ca.key", self.d.log())
        data[-1] ^= 1
        with open(key, "wb") as f:
            f.write(data)
        self.d.start()


if __name__ == "__main__":
    main()
