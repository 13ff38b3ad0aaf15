#!/usr/bin/env python3
"""Control socket access by peer credentials (SO_PEERCRED): a uid that is
not allowed is refused at connect, a reader may only look, an admin may
do everything. Clients run as the unprivileged user nobody (setpriv)."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

NOBODY = 65534


class ControlAccessTest(harness.DaemonTestCase):

    def daemon(self, *flags):
        d = harness.Daemon(extra_args=list(flags))
        self.addCleanup(d.cleanup)
        os.chmod(d.tmp, 0o711)  # let nobody reach the socket's directory
        d.start()
        return d

    def as_nobody(self, d, *args):
        p = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                            harness.VTPMCTL, "--socket", d.socket_path] + list(args),
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def test_an_unlisted_uid_is_refused_at_connect(self):
        d = self.daemon("--control-readers", "uid:12345")
        code, _, err = self.as_nobody(d, "list")
        self.assertEqual(code, 1, err)
        self.assertIn("permission_denied", err)
        self.assertIn("uid %d" % NOBODY, err)
        self.assertIn("refused uid %d" % NOBODY, d.log())
        d.result("status")  # root still served

    def test_with_no_allow_list_the_socket_is_private(self):
        d = self.daemon()
        self.assertEqual(os.stat(d.socket_path).st_mode & 0o777, 0o600)
        code, _, err = self.as_nobody(d, "list")
        self.assertEqual(code, 3, err)  # cannot even connect
        self.assertIn("Permission denied", err)

    def test_a_reader_may_look_but_not_change(self):
        d = self.daemon("--control-readers", "user:nobody")
        u = d.result("add")["uuid"]
        for args in (("list",), ("show", u), ("status",), ("hello",)):
            code, out, err = self.as_nobody(d, *args)
            self.assertEqual(code, 0, (args, err))
        self.assertIn(u, self.as_nobody(d, "list")[1])
        for args in (("add",), ("remove", u), ("exec", u, "80010000000c000001430000"), ("power", u, "off")):
            code, _, err = self.as_nobody(d, *args)
            self.assertEqual(code, 1, (args, err))
            self.assertIn("permission_denied", err)
            self.assertIn("needs admin access", err)
        self.assertEqual(d.result("show", uuid=u)["power"], "on")
        self.assertEqual(len(d.result("list")["instances"]), 1)

    def test_an_admin_may_do_everything(self):
        d = self.daemon("--control-admins", "uid:%d" % NOBODY)
        code, out, err = self.as_nobody(d, "add")
        self.assertEqual(code, 0, err)
        u = out.strip()
        code, _, err = self.as_nobody(d, "remove", u)
        self.assertEqual(code, 0, err)

    def test_a_bad_principal_fails_the_start(self):
        d = harness.Daemon(extra_args=["--control-admins", "user:no-such-user-vtpmd"])
        self.addCleanup(d.cleanup)
        with self.assertRaises(AssertionError):
            d.start()
        self.assertIn("no user 'no-such-user-vtpmd'", d.log())


if __name__ == "__main__":
    harness.main()
