"""vtpmd's Xen backend settings against the real daemon on this (non-Xen) host.

The backend itself is tested through the simulated platform
(tests/xen/); here the real platform is asked for: built with libxen-dev,
vtpmd opens libxenstore, finds no xenstored and refuses to start with a
message that says so, instead of running without the guests' backend.
"""

import os
import subprocess
import tempfile
import unittest

from harness import VTPMD


class XenDaemonSettings(unittest.TestCase):
    def run_vtpmd(self, *flags):
        with tempfile.TemporaryDirectory(prefix="vtpmd-xen-") as tmp:
            return subprocess.run(
                [VTPMD, "--state-dir", os.path.join(tmp, "state"),
                 "--control-socket", os.path.join(tmp, "control.sock"), *flags],
                capture_output=True, text=True, timeout=60)

    def test_backend_on_without_xen_refuses_to_start(self):
        r = self.run_vtpmd("--xen-backend", "on")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("xen backend:", r.stderr)
        self.assertIn("xs_open", r.stderr)

    def test_bad_values_are_refused(self):
        for flag in ("--xen-backend", "--xen-auto-create", "--xen-allow-tpm2"):
            r = self.run_vtpmd(flag, "yes")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn('must be "on" or "off"', r.stderr)

    def test_config_file_switches(self):
        with tempfile.TemporaryDirectory(prefix="vtpmd-xen-") as tmp:
            conf = os.path.join(tmp, "vtpmd.json")
            with open(conf, "w") as f:
                f.write('{"xen_backend": true, "xen_auto_create": "on"}')
            r = subprocess.run(
                [VTPMD, "--config", conf, "--state-dir", os.path.join(tmp, "state"),
                 "--control-socket", os.path.join(tmp, "control.sock")],
                capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("xen backend:", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
