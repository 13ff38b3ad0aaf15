#!/usr/bin/env python3
"""An unmodified Linux kernel in QEMU (-tpmdev emulator) against a vtpmd
instance: the guest's tpm_tis / tpm_crb driver finds a TPM 2.0, PCR extends
from inside the guest verify on the host, and a guest reboot (QEMU's
CMD_INIT) resets the TPM. Needs tests/qemu/build-guest.sh to have run.

Usage: python3 tests/qemu/test_qemu_vtpmd.py [-v]
"""

import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

BOOT_TEST = os.path.join(HERE, "boot-test.py")


class QemuBootTest(harness.DaemonTestCase):
    def boot(self, device, boots):
        d = self.start_daemon(log_level="debug")  # logs every control command and reply
        ctrl = os.path.join(d.tmp, "qemu-%s.ctrl" % device)
        uuid = d.result("add", ctrl=ctrl)["uuid"]
        r = subprocess.run([sys.executable, BOOT_TEST, "--ctrl", ctrl, "--device", device, "--boots", str(boots),
                            "--timeout", "90"],
                           capture_output=True, text=True, timeout=400)
        print("\n" + r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "", file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-2000:] +
                         "\n--- vtpmd log (tail) ---\n" + "\n".join(d.log().splitlines()[-60:]))
        shown = d.result("show", uuid=uuid)
        self.assertGreater(shown["counters"]["commands"], 10)  # the guest really used this instance
        self.assertEqual(shown["state"], "running")
        self.assertEqual(d.result("hello")["daemon"], "vtpmd")  # QEMU's CMD_SHUTDOWN did not stop the daemon
        d.stop()

    def test_tpm_tis_guest_boots_twice_and_extends_pcrs(self):
        self.boot("tpm-tis", 2)

    def test_tpm_crb_guest_boots_and_extends_pcrs(self):
        self.boot("tpm-crb", 1)


if __name__ == "__main__":
    unittest.main()
