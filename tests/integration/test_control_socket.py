#!/usr/bin/env python3
"""The control socket as a Linux service exposes it: created owner-only,
one daemon per socket, a stale socket from a crashed daemon replaced, the
socket file removed on clean shutdown, bad configuration refused.

Usage: python3 tests/integration/test_control_socket.py [-v]
"""

import os
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class ControlSocketTest(harness.DaemonTestCase):
    def test_socket_is_owner_only_and_its_new_directory_is_private(self):
        d = self.start_daemon()
        mode = os.lstat(d.socket_path).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(d.socket_path)).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(d.state_dir).st_mode), 0o700)

    def test_a_second_daemon_on_a_live_socket_refuses_to_start(self):
        d = self.start_daemon()
        second = subprocess.run(
            [harness.VTPMD, "--state-dir", d.state_dir + "-other", "--control-socket", d.socket_path],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(second.returncode, 1)
        self.assertIn("another vtpmd is listening", second.stderr)
        self.assertEqual(d.call("hello")["result"]["daemon"], "vtpmd")  # the first one is untouched

    def test_a_stale_socket_left_by_a_crash_is_replaced(self):
        d = self.start_daemon()
        d.kill()
        self.assertTrue(os.path.exists(d.socket_path))  # SIGKILL leaves it behind
        d.restart()
        self.assertEqual(d.call("hello")["result"]["daemon"], "vtpmd")

    def test_clean_shutdown_removes_the_socket(self):
        d = self.start_daemon()
        d.stop()
        self.assertFalse(os.path.exists(d.socket_path))

    def test_a_path_that_is_not_a_socket_is_never_unlinked(self):
        d = self.start_daemon()
        d.stop()
        with open(d.socket_path, "w") as f:
            f.write("precious")
        refused = subprocess.run(
            [harness.VTPMD, "--state-dir", d.state_dir, "--control-socket", d.socket_path],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("is not a socket", refused.stderr)
        with open(d.socket_path) as f:
            self.assertEqual(f.read(), "precious")

    def test_bad_flags_and_config_files_are_refused_with_exit_2(self):
        cases = [
            (["--bogus", "1"], "unknown flag --bogus"),
            (["--log-level", "loud"], "unknown log level"),
            (["--tpm12-workers-max", "-1"], "tpm12-workers-max"),
        ]
        tmp = harness.tempfile.TemporaryDirectory(prefix="vtpmd-cfg-")
        self.addCleanup(tmp.cleanup)
        config = os.path.join(tmp.name, "bad.json")
        with open(config, "w") as f:
            f.write('{"state_dir": "/tmp/x", "no_such_setting": 1}')
        cases.append((["--config", config], "unknown setting 'no_such_setting'"))
        for args, message in cases:
            with self.subTest(args=args):
                r = subprocess.run([harness.VTPMD] + args, capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 2)
                self.assertIn(message, r.stderr)


if __name__ == "__main__":
    unittest.main()
