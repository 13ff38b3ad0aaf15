#!/usr/bin/env python3
"""The warm pool (docs/provisioning.md, "Warm pool"): TPM 2.0 instances
manufactured ahead (banks allocated, EKs created), handed to matching
`add`s, which then only get their certificates. Checked with the same
standard tools as test_provisioning: tpm2_getekcertificate, tpm2_createek
and openssl verify."""

import os
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DaemonTestCase, TIMEOUT_SCALE, main, wait_until  # noqa: E402

POOL = ["--warm-pool", "2", "--warm-pool-ek", "rsa,ecc", "--warm-pool-pcr-banks", "sha256"]
EK_CERT_INDEX = {"rsa": "0x01c00002", "ecc": "0x01c0000a"}


def run(argv, env=None):
    p = subprocess.run(argv, env=env, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("%s -> exit %d\n%s" % (" ".join(argv), p.returncode, p.stderr.decode(errors="replace")))
    return p.stdout


class WarmPoolTest(DaemonTestCase):
    def setUp(self):
        self.d = self.start_daemon(POOL)
        self.tmp = tempfile.mkdtemp(prefix="vtpmd-pool-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.tmp]))
        self.serial = 0

    def pool(self):
        return self.d.result("status")["warm_pool"]

    def wait_ready(self, n):
        wait_until(lambda: self.pool()["ready"] == n, 60 * TIMEOUT_SCALE, what="%d warm-pool members ready" % n)

    def on_disk(self):
        """UUIDs with state files: instances and pool members alike."""
        return {name.split(".")[0] for name in os.listdir(self.d.state_dir) if name.endswith(".vtpm")}

    def listed(self):
        return {i["uuid"] for i in self.d.result("list")["instances"]}

    def members(self):
        return self.on_disk() - self.listed()

    def add(self, *flags):
        self.serial += 1
        sock = os.path.join(self.d.tmp, "pool%d" % self.serial)
        uuid = self.d.ctl_ok("add", "--swtpm-path", sock, *flags).strip()
        env = dict(os.environ, TPM2TOOLS_TCTI="swtpm:path=" + sock, TSS2_LOG="all+NONE")
        return uuid, env

    def ek_public_keys(self, env, ca_pem):
        """{kind: PEM} of the EKs, each checked against its certificate."""
        run(["tpm2_startup", "-c"], env)
        keys = {}
        for kind in ("rsa", "ecc"):
            der = os.path.join(self.tmp, "%d-%s.der" % (self.serial, kind))
            run(["tpm2_getekcertificate", "-o", der] if kind == "rsa" else
                ["tpm2_nvread", EK_CERT_INDEX[kind], "-C", "o", "-o", der], env)
            pem = der + ".pem"
            run(["openssl", "x509", "-inform", "der", "-in", der, "-out", pem])
            self.assertIn(b": OK", run(["openssl", "verify", "-CAfile", ca_pem, pem]))
            pub = der + ".pub.pem"
            run(["tpm2_createek", "-c", der + ".ctx", "-G", kind, "-u", pub, "-f", "pem"], env)
            run(["tpm2_flushcontext", "-t"], env)
            cert_key = run(["openssl", "x509", "-in", pem, "-pubkey", "-noout"])
            with open(pub, "rb") as f:
                self.assertEqual(f.read(), cert_key, kind + " EK differs from its certificate's key")
            keys[kind] = cert_key
        return keys

    def test_matching_adds_take_members_whose_keys_are_distinct_and_certified(self):
        self.wait_ready(2)
        self.assertEqual(self.listed(), set(), "pool members are not listed")
        self.assertEqual(self.d.result("status")["instances"]["total"], 0)
        members = self.members()
        self.assertEqual(len(members), 2)
        ca_pem = os.path.join(self.tmp, "ca.pem")
        with open(ca_pem, "w") as f:
            f.write(self.d.ctl_ok("ca-cert"))

        seen = []
        for _ in range(2):
            uuid, env = self.add("--ek", "ecc,rsa", "--pcr-banks", "sha256", "--ek-cert", "--platform-cert")
            shown = self.d.result("show", uuid=uuid)["provisioning"]
            self.assertEqual(shown.get("manufactured_by"), "warm_pool")
            self.assertEqual(shown["pcr_banks"], ["sha256"])
            seen.append(self.ek_public_keys(env, ca_pem))
        for kind in ("rsa", "ecc"):
            self.assertNotEqual(seen[0][kind], seen[1][kind], "two instances got the same %s EK" % kind)
        self.assertGreaterEqual(self.pool()["taken"], 2)
        # The members handed out are gone from disk; the pool makes new ones.
        self.wait_ready(2)
        self.assertFalse(members & self.on_disk(), "a taken member's state is still on disk")
        self.assertEqual(len(self.members()), 2)

    def test_other_profiles_are_manufactured_as_before(self):
        self.wait_ready(2)
        for flags in (["--ek", "rsa", "--pcr-banks", "sha256"], ["--ek", "rsa,ecc"], ["--ek", "rsa,ecc", "--pcr-banks", "sha1,sha256"]):
            uuid, _ = self.add(*flags)
            self.assertNotIn("manufactured_by", self.d.result("show", uuid=uuid)["provisioning"], flags)
        plain, _ = self.add()
        self.assertNotIn("provisioning", self.d.result("show", uuid=plain))
        self.assertEqual(self.pool()["taken"], 0)
        self.assertEqual(self.pool()["ready"], 2)

    def test_pool_survives_restart_and_follows_a_new_profile(self):
        self.wait_ready(2)
        members = self.members()
        self.d.stop()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(notify.close)
        notify.bind(os.path.join(self.d.tmp, "notify.sock"))
        notify.settimeout(10 * TIMEOUT_SCALE)
        self.d.restart(env={"NOTIFY_SOCKET": notify.getsockname()})
        # systemd hears of instances, not of the pool's members.
        self.assertIn("STATUS=serving 0 instance(s)", notify.recv(4096).decode())
        # Ready at once: nothing is manufactured again.
        self.assertEqual(self.pool()["ready"], 2)
        self.assertEqual(self.members(), members)
        uuid, _ = self.add("--ek", "rsa,ecc", "--pcr-banks", "sha256")
        self.assertEqual(self.d.result("show", uuid=uuid)["provisioning"].get("manufactured_by"), "warm_pool")
        # Another profile: the old members go, new ones are made.
        self.d.stop()
        self.d.restart(["--warm-pool", "1", "--warm-pool-ek", "ecc"])
        self.wait_ready(1)
        self.assertEqual(self.pool()["ek"], ["ecc"])
        wait_until(lambda: len(self.members()) == 1, 30 * TIMEOUT_SCALE, what="one member on disk")
        self.assertFalse(members & self.on_disk(), "members of the old profile were kept")
        self.assertIn(uuid, self.listed(), "a real instance was touched")
        # No pool: every member is removed, instances stay.
        self.d.stop()
        self.d.restart(["--warm-pool", "0"])
        wait_until(lambda: not self.members(), 30 * TIMEOUT_SCALE, what="no members on disk")
        self.assertEqual(self.listed(), {uuid})

    def test_a_crash_while_filling_never_leaves_a_half_made_member(self):
        self.d.stop()
        for _ in range(3):
            self.d.restart(["--warm-pool", "3", "--warm-pool-ek", "rsa,ecc", "--log-level", "debug"])
            wait_until(lambda: self.pool()["filling"], 10 * TIMEOUT_SCALE, what="the pool filling")
            self.d.kill()
        self.d.restart(["--warm-pool", "3", "--warm-pool-ek", "rsa,ecc"])
        self.wait_ready(3)
        wait_until(lambda: len(self.members()) == 3, 30 * TIMEOUT_SCALE, what="exactly the pool's members on disk")
        uuid, env = self.add("--ek", "rsa,ecc", "--ek-cert")
        self.assertEqual(self.d.result("show", uuid=uuid)["provisioning"].get("manufactured_by"), "warm_pool")
        ca_pem = os.path.join(self.tmp, "ca.pem")
        with open(ca_pem, "w") as f:
            f.write(self.d.ctl_ok("ca-cert"))
        self.ek_public_keys(env, ca_pem)


if __name__ == "__main__":
    main()
