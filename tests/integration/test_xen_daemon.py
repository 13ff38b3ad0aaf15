"""vtpmd's Xen backend settings against the real daemon on this (non-Xen) host.

The backend itself is tested through the simulated platform
(tests/xen/); here the real platform is asked for: built with libxen-dev,
vtpmd opens libxenstore, finds no xenstored and refuses to start with a
message that says so, instead of running without the guests' backend.
"""

import json
import os
import subprocess
import tempfile
import unittest

import harness
from harness import VTPMD, Daemon


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


class VchanSetting(unittest.TestCase):
    """The per-instance vchan setting on a daemon without the Xen backend:
    asking for a channel is refused with the reason (and creates nothing),
    a setting saved by a Xen-enabled daemon survives restarts here, shown
    as inactive, and can be turned off. The channel itself is tested
    through the simulated platform (tests/xen/vchan_test.cc)."""

    def test_vchan_needs_the_xen_backend(self):
        with Daemon(name="vtpmd-vchan") as d:
            code, _out, err = d.ctl("add", "--vchan", "5")
            self.assertNotEqual(code, 0)
            self.assertIn("vchan channels need the Xen backend", err)
            self.assertEqual(d.result("list")["instances"], [])
            uuid = d.ctl_ok("add").strip()
            code, _out, err = d.ctl("set", uuid, "--vchan", "5")
            self.assertNotEqual(code, 0)
            self.assertIn("--xen-backend on", err)
            for bad in ("0", "32752", "dom5"):
                code, _out, err = d.ctl("set", uuid, "--vchan", bad)
                self.assertNotEqual(code, 0)
                self.assertIn("--vchan: expected a domain id", err)
            self.assertNotIn("vchan", d.result("show", uuid=uuid))

    def test_saved_setting_survives_restarts_and_turns_off(self):
        with Daemon(name="vtpmd-vchan") as d:
            uuid = d.ctl_ok("add").strip()
            d.stop()
            setting = {"domid": 5, "path": "/local/domain/0/data/vtpmd/" + uuid,
                       "read_min": 4096, "write_min": 4096}
            subprocess.run([harness.STATE_EDITOR, d.state_dir, "set-vchan", uuid, json.dumps(setting)],
                           check=True)
            d.start()
            shown = d.result("show", uuid=uuid)["vchan"]
            self.assertEqual(shown["state"], "inactive")
            self.assertEqual(shown["setting"], setting)
            d.stop()
            d.start()
            self.assertEqual(d.result("show", uuid=uuid)["vchan"]["setting"], setting)
            listed = d.ctl_ok("list")
            self.assertIn(uuid, listed)
            d.ctl_ok("set", uuid, "--vchan", "off")
            d.stop()
            d.start()
            self.assertNotIn("vchan", d.result("show", uuid=uuid))


if __name__ == "__main__":
    unittest.main(verbosity=2)
