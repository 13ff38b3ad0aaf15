"""The hardware root of trust (issue 5), with swtpm as the host's TPM 2.0.

First start seals the master key to the TPM, a restart unseals it; a
changed PCR in the policy stops the start with a clear error and changes
nothing; reseal to predicted values, then restart, works; an
operator-signed (authorized) policy unlocks new PCR values; the TPM's NV
counter catches a state directory rolled back to an older epoch; a TPM
that vanishes while vtpmd runs costs the guests nothing.
"""
import hashlib
import json
import os
import shutil
import subprocess
import time
import unittest

from harness import VTPMD, DaemonTestCase, Daemon, wait_until
from hwtpm import HardwareTpm
import tpmcmd as T

FIRMWARE_UPDATE = hashlib.sha256(b"firmware 2.0").digest()


class HardwareRootTest(DaemonTestCase):
    def setUp(self):
        self.tpm = HardwareTpm().start()
        self.addCleanup(self.tpm.cleanup)

    def daemon(self, *extra):
        return self.start_daemon(["--root-of-trust", self.tpm.spec] + list(extra))

    def status_root(self, d):
        return d.result("status")["root_of_trust"]

    def start_fails(self, d, *needles):
        """Starts d's daemon again, expecting it to refuse; returns its output."""
        args = [VTPMD, "--state-dir", d.state_dir, "--control-socket", d.socket_path] + d.extra_args
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0, proc.stderr)
        for needle in needles:
            self.assertIn(needle, proc.stderr)
        return proc.stderr

    def files(self, d):
        out = {}
        for name in sorted(os.listdir(d.state_dir)):
            with open(os.path.join(d.state_dir, name), "rb") as f:
                out[name] = f.read()
        return out

    def add_with_pcr(self, d):
        uuid = d.result("add")["uuid"]
        T.check(d.exec(uuid, T.startup()), "Startup")
        T.check(d.exec(uuid, T.pcr_extend(16, b"\x16" * 32)), "PCR_Extend")
        d.ctl_ok("set", uuid, "--max-queued", "32")  # a durable change
        return uuid

    def test_seal_restart_unseal(self):
        d = self.daemon()
        root = self.status_root(d)
        self.assertEqual(root["kind"], "tpm")
        self.assertTrue(root["hardware_protected"])
        self.assertEqual(root["policy"], "PCRs sha256:0,2,4,7")
        uuid = self.add_with_pcr(d)
        counter = root["counter"]["value"]
        d.stop()
        self.assertNotIn("NOT hardware-protected", d.log())
        self.assertFalse(os.path.exists(os.path.join(d.state_dir, "root.key")))
        d.start()
        self.assertEqual(d.result("show", uuid=uuid)["state"], "running")
        pcr = T.parse_pcr_read(d.exec(uuid, T.pcr_read(16))).digest
        self.assertEqual(pcr, T.pcr_extend_expected(b"\0" * 32, b"\x16" * 32))
        # One counter increment per start (an epoch), none per write.
        self.assertEqual(self.status_root(d)["counter"]["value"], counter + 1)
        for i in range(20):
            d.ctl_ok("set", uuid, "--max-queued", str(40 + i))
        self.assertEqual(self.status_root(d)["counter"]["value"], counter + 1)

    def test_changed_pcr_refuses_to_start_and_changes_nothing(self):
        d = self.daemon()
        self.add_with_pcr(d)
        d.stop()
        before = self.files(d)
        self.tpm.extend(7, FIRMWARE_UPDATE)
        err = self.start_fails(d, "PCRs sha256:0,2,4,7 differ from those the master key was sealed to",
                               "vtpmctl reseal", "will not create a new key")
        self.assertEqual(self.files(d), before, err)

    def test_reseal_to_predicted_values_then_restart(self):
        d = self.daemon()
        uuid = self.add_with_pcr(d)
        predicted = self.tpm_predicted_pcr7(d)
        out = d.ctl_ok("reseal", "--pcr-values", "sha256:7=" + predicted.hex())
        self.assertIn("resealed: PCRs sha256:0,2,4,7", out)
        d.stop()
        self.tpm.extend(7, FIRMWARE_UPDATE)
        self.assertEqual(self.tpm.pcr(7), predicted)
        d.start()
        self.assertEqual(d.result("show", uuid=uuid)["state"], "running")
        # And to a different selection, at the current values; a client
        # that asks hears the two steps (the TPM's part, then the file).
        with d.client() as c:
            c.send_line({"v": 1, "id": "rs", "method": "reseal", "progress": True,
                         "params": {"pcrs": "sha256:0,7"}})
            lines = [c.read_line()]
            while "progress" in lines[-1]:
                lines.append(c.read_line())
        self.assertEqual([n["progress"]["step"] for n in lines[:-1]], ["sealed", "written"])
        self.assertIn("PCRs sha256:0,7", lines[-1]["result"]["policy"])
        d.stop()
        d.start()
        self.assertEqual(self.status_root(d)["policy"], "PCRs sha256:0,7")
        # Bad requests change nothing.
        code, _, err = d.ctl("reseal", "--pcrs", "md5:1")
        self.assertEqual(code, 1)
        self.assertIn("unknown PCR bank 'md5'", err)
        code, _, err = d.ctl("reseal", "--pcr-values", "sha256:7=abcd")
        self.assertEqual(code, 1)
        self.assertIn("64 hex digits", err)
        code, _, err = d.ctl("reseal", "--authorized")
        self.assertIn("--tpm-policy-key", err)
        self.assertEqual(self.status_root(d)["policy"], "PCRs sha256:0,7")

    def tpm_predicted_pcr7(self, d):
        # PCR 7 as it will be after the "firmware update": the daemon holds
        # the TPM's only connection, so compute from the value read before.
        return hashlib.sha256(self._pcr7_at_start + FIRMWARE_UPDATE).digest()

    def run(self, result=None):
        # Read PCR 7 before any daemon connects (swtpm has one client at a time).
        tpm = HardwareTpm().start()
        try:
            self._pcr7_at_start = tpm.pcr(7)
        finally:
            tpm.cleanup()
        return super().run(result)

    def operator_keys(self, kind):
        keydir = os.path.join(self.tpm.dir, "keys-" + kind)
        os.mkdir(keydir)
        priv = os.path.join(keydir, "operator.pem")
        pub = os.path.join(keydir, "operator.pub.pem")
        if kind == "rsa":
            subprocess.run(["openssl", "genrsa", "-out", priv, "2048"], check=True, capture_output=True)
        else:
            subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", priv],
                           check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True, capture_output=True)
        return priv, pub

    def check_authorized_upgrade(self, kind):
        priv, pub = self.operator_keys(kind)
        other_priv, _ = self.operator_keys(kind + "-other")
        policies = os.path.join(self.tpm.dir, "policies-" + kind)
        os.mkdir(policies)
        d = self.daemon("--tpm-policy-key", pub, "--tpm-signed-policies", policies)
        self.assertEqual(self.status_root(d)["policy"], "PCRs sha256:0,2,4,7 or an operator-signed policy")
        uuid = self.add_with_pcr(d)
        d.stop()
        current = {i: self.tpm.pcr(i) for i in (0, 2, 4, 7)}
        future = dict(current)
        future[7] = hashlib.sha256(current[7] + FIRMWARE_UPDATE).digest()
        values = ",".join("sha256:%d=%s" % (i, v.hex()) for i, v in sorted(future.items()))
        # Signed by someone else, and signed for other values: both refused.
        d.ctl_ok("sign-policy", "--key", other_priv, "--pcr-values", values,
                 "--output", os.path.join(policies, "a-forged.json"))
        d.ctl_ok("sign-policy", "--key", priv, "--pcr-values",
                 values.replace(future[7].hex(), "11" * 32), "--output", os.path.join(policies, "b-wrong.json"))
        self.tpm.extend(7, FIRMWARE_UPDATE)
        err = self.start_fails(d, "a-forged.json: its signature does not verify",
                               "b-wrong.json: signed for other PCR values")
        # The operator's signature for the new values unlocks it.
        out = d.ctl_ok("sign-policy", "--key", priv, "--pcr-values", values,
                       "--output", os.path.join(policies, "c-firmware-2.json"))
        self.assertIn("signed policy for sha256:0,2,4,7", out)
        d.start()
        self.assertEqual(d.result("show", uuid=uuid)["state"], "running")
        self.assertIn("unsealed with an operator-signed policy", self.status_root(d)["policy"])
        # Reseal to the new current values: no signed policy needed after.
        d.ctl_ok("reseal")
        d.stop()
        for name in os.listdir(policies):
            os.unlink(os.path.join(policies, name))
        d.start()
        self.assertEqual(self.status_root(d)["policy"], "PCRs sha256:0,2,4,7 or an operator-signed policy")
        return err

    def test_authorized_policy_upgrade_rsa(self):
        self.check_authorized_upgrade("rsa")

    def test_authorized_policy_upgrade_ecc(self):
        self.check_authorized_upgrade("ecc")

    def test_nv_counter_detects_a_rolled_back_state_directory(self):
        d = self.daemon()
        uuid = self.add_with_pcr(d)
        d.stop()
        copy = os.path.join(self.tpm.dir, "state-copy")
        shutil.copytree(d.state_dir, copy)
        d.start()  # a new epoch
        d.ctl_ok("set", uuid, "--max-queued", "50")
        d.stop()
        shutil.rmtree(d.state_dir)
        shutil.copytree(copy, d.state_dir)
        d.start()
        shown = d.result("show", uuid=uuid)
        self.assertEqual(shown["state"], "failed")
        self.assertIn("rolled back to an older copy", shown["failure"])

    def test_tpm_vanishing_while_running_costs_the_guests_nothing(self):
        d = self.daemon("--tpm-counter-interval", "1")
        uuid = self.add_with_pcr(d)
        self.tpm.kill()
        time.sleep(1.1)  # the next commit is due to start an epoch
        for i in range(5):
            d.ctl_ok("set", uuid, "--max-queued", str(20 + i))  # acknowledged = durable
            T.parse_get_random(d.exec(uuid, T.get_random(16)))
        counter = wait_until(lambda: (lambda c: c if not c["in_step"] else None)(self.status_root(d)["counter"]),
                             10, what="counter behind")
        self.assertIn("advancing the TPM's NV counter", counter["problem"])
        self.tpm.start()
        def caught_up():
            d.ctl_ok("set", uuid, "--max-queued", "30")
            return self.status_root(d)["counter"]["in_step"]
        wait_until(caught_up, 90, interval=0.5, what="counter back in step")
        d.stop()
        d.start()
        shown = d.result("show", uuid=uuid)
        self.assertEqual(shown["state"], "running")
        self.assertEqual(shown["limits"]["max_queued"], 30)

    def test_unreachable_tpm_fails_start_with_a_hint(self):
        d = Daemon(["--root-of-trust", "swtpm:path=/nonexistent/tpm.sock"])
        self.addCleanup(d.cleanup)
        os.makedirs(os.path.dirname(d.socket_path), exist_ok=True)
        self.start_fails(d, "cannot open the TPM channel swtpm:path=/nonexistent/tpm.sock",
                         "is the TPM simulator listening there?")

    def test_auto_keeps_the_kind_that_sealed_the_master_key(self):
        d = self.daemon()
        d.stop()
        d.extra_args = []  # --root-of-trust auto; no /dev/tpmrm0 here
        self.start_fails(d, "master.key is sealed by a TPM", "--root-of-trust")
        f = self.start_daemon([])
        self.assertEqual(self.status_root(f)["kind"], "file")
        f.stop()
        f.extra_args = ["--root-of-trust", self.tpm.spec]
        self.start_fails(f, "sealed by the 'file' root of trust")


if __name__ == "__main__":
    unittest.main(verbosity=2)
