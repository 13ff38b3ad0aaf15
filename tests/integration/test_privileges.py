#!/usr/bin/env python3
"""--user: vtpmd starts as root, hands its state and socket directories to
an unprivileged user and runs as that user for good; everything still
works, across restarts, with TPM 2.0 and TPM 1.2 (worker processes)."""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tpmcmd as T  # noqa: E402

NOBODY = 65534


def status_fields(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields


class PrivilegesTest(harness.DaemonTestCase):

    def test_runs_as_the_user_with_no_way_back(self):
        d = harness.Daemon()
        self.addCleanup(d.cleanup)
        os.chmod(d.tmp, 0o711)  # nobody must reach its directories inside
        # The worker must be executable by nobody wherever the tree lives.
        worker = os.path.join(d.tmp, "vtpmd-engine")
        shutil.copy2(harness.VTPMD_ENGINE, worker)
        os.chmod(worker, 0o755)
        d.extra_args = ["--user", "nobody", "--engine-worker", worker]
        d.start()
        st = status_fields(d.pid)
        self.assertEqual(st["Uid"], [str(NOBODY)] * 4)
        self.assertEqual(st["Gid"][0], str(NOBODY))
        self.assertEqual(st["NoNewPrivs"], ["1"])
        self.assertEqual(st["CapEff"], ["0000000000000000"])
        u20 = d.result("add", auto_startup=True)["uuid"]
        u12 = d.result("add", tpm="1.2")["uuid"]
        T.check(d.exec(u20, T.get_random(8)), "GetRandom")
        T.tpm12_check(d.exec(u12, T.tpm12_startup_clear()), "TPM_Startup")
        for pid in d.worker_pids():  # TPM 1.2 runs in workers: unprivileged too
            self.assertEqual(status_fields(pid)["Uid"], [str(NOBODY)] * 4)
        for name in os.listdir(d.state_dir):
            self.assertEqual(os.stat(os.path.join(d.state_dir, name)).st_uid, NOBODY, name)
        self.assertEqual(os.stat(d.socket_path).st_uid, NOBODY)
        d.kill()
        d.restart()
        self.assertEqual(status_fields(d.pid)["Uid"][0], str(NOBODY))
        T.check(d.exec(u20, T.get_random(8)), "GetRandom after restart")
        self.assertIn("running as user nobody", d.log())

    def test_an_unknown_user_or_root_is_refused(self):
        for user, why in (("no-such-user-vtpmd", "no user 'no-such-user-vtpmd'"), ("root", "is root")):
            d = harness.Daemon(extra_args=["--user", user])
            self.addCleanup(d.cleanup)
            with self.assertRaises(AssertionError):
                d.start()
            self.assertIn(why, d.log())


if __name__ == "__main__":
    harness.main()
