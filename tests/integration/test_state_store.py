#!/usr/bin/env python3
"""The sealed state store seen from outside: nothing in clear on disk,
tampering and rollback quarantine only the instance concerned (and
`vtpmctl show` says why), whole-store damage refuses loudly, remove
destroys the state, and export/import moves an instance between daemons
under an operator's transport key with its PCRs and NV intact."""

import os
import shutil
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tpmcmd as T  # noqa: E402

NV_INDEX = 0x01500020
MARKER = b"vtpmd-sealed-state-marker-0123456789"  # 36 bytes of NV data
PCR = 16
DIGEST = bytes(range(32))


def slurp(path):
    with open(path, "rb") as f:
        return f.read()


def spit(path, data):
    with open(path, "wb") as f:
        f.write(data)


class StateStoreTest(harness.DaemonTestCase):

    def prepare(self, d, u):
        """Startup, an extended PCR and an NV index holding MARKER."""
        T.check(d.exec(u, T.startup()), "Startup")
        T.check(d.exec(u, T.pcr_extend(PCR, DIGEST)), "PCR_Extend")
        T.check(d.exec(u, T.nv_define_space(NV_INDEX, len(MARKER))), "NV_DefineSpace")
        T.check(d.exec(u, T.nv_write(NV_INDEX, MARKER)), "NV_Write")
        return T.parse_pcr_read(d.exec(u, T.pcr_read(PCR)))

    def nv(self, d, u):
        return T.parse_nv_read(d.exec(u, T.nv_read(NV_INDEX, len(MARKER))))

    def show_text(self, d, u):
        code, out, err = d.ctl("show", u)
        self.assertEqual(code, 0, err)
        return out

    def test_no_plaintext_on_disk_and_files_are_private(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        self.prepare(d, u)
        d.stop()  # the clean-shutdown record carries volatile state too
        names = sorted(os.listdir(d.state_dir))
        self.assertTrue(u + ".a.vtpm" in names or u + ".b.vtpm" in names, names)
        self.assertTrue("manifest.a" in names or "manifest.b" in names, names)
        for name in ("master.key", "root.key", "root.key.counter"):
            self.assertIn(name, names)
        for name in names:
            path = os.path.join(d.state_dir, name)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode) & 0o077, 0, name)
            with open(path, "rb") as f:
                self.assertNotIn(MARKER[:16], f.read(), "NV data in clear in " + name)
        self.assertIn("NOT hardware-protected", d.log())

    def test_tampered_blob_quarantines_only_that_instance_and_show_says_why(self):
        d = self.start_daemon()
        good, bad = d.result("add")["uuid"], d.result("add")["uuid"]
        for u in (good, bad):
            self.prepare(d, u)
        d.stop()
        path = d.state_file(bad)
        data = bytearray(slurp(path))
        data[len(data) // 2] ^= 0x04
        spit(path, bytes(data))
        d.restart()
        self.assertEqual(self.nv(d, good), MARKER)
        info = d.result("show", uuid=bad)
        self.assertEqual(info["state"], "failed", info)
        self.assertIn("authentication failed", info["failure"])
        self.assertIn("authentication failed", self.show_text(d, bad))
        self.assertErrorCode(d.call("exec", uuid=bad, command=T.hexs(T.get_random(8))), "corrupt")
        self.assertErrorCode(d.call("add", uuid=bad), "already_exists")
        self.assertEqual(slurp(path), bytes(data), "evidence was rewritten")

    def test_an_old_copy_of_a_blob_is_a_rollback(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        T.check(d.exec(u, T.startup()), "Startup")
        T.check(d.exec(u, T.nv_define_space(NV_INDEX, len(MARKER))), "NV_DefineSpace")
        T.check(d.exec(u, T.nv_write(NV_INDEX, b"A" * len(MARKER))), "NV_Write")
        old = slurp(d.state_file(u))
        T.check(d.exec(u, T.nv_write(NV_INDEX, b"B" * len(MARKER))), "NV_Write")
        d.stop()
        spit(d.state_file(u), old)  # e.g. restored from a backup
        d.restart()
        info = d.result("show", uuid=u)
        self.assertEqual(info["state"], "failed", info)
        self.assertIn("rollback", info["failure"])
        self.assertIn("rollback", self.show_text(d, u))

    def test_a_rolled_back_state_directory_is_refused_for_every_instance(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        self.prepare(d, u)
        d.stop()
        snapshot = os.path.join(d.tmp, "snapshot")
        shutil.copytree(d.state_dir, snapshot)
        d.restart()
        T.check(d.exec(u, T.nv_write(NV_INDEX, b"C" * len(MARKER))), "NV_Write")
        d.stop()
        # Put back the whole directory except the root's counter (which a
        # TPM-backed root keeps out of reach).
        for name in os.listdir(snapshot):
            if not name.startswith("root.key"):
                shutil.copy2(os.path.join(snapshot, name), os.path.join(d.state_dir, name))
        d.restart()
        info = d.result("show", uuid=u)
        self.assertEqual(info["state"], "failed", info)
        self.assertIn("rolled back", info["failure"])

    def test_missing_master_key_refuses_to_start_and_touches_nothing(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        d.stop()
        os.rename(os.path.join(d.state_dir, "master.key"), os.path.join(d.tmp, "master.key"))
        before = slurp(d.state_file(u))
        with self.assertRaises(AssertionError):
            d.restart()
        self.assertIn("no master key file", d.log())
        self.assertEqual(slurp(d.state_file(u)), before)
        os.rename(os.path.join(d.tmp, "master.key"), os.path.join(d.state_dir, "master.key"))
        d.restart()
        self.assertEqual(d.result("show", uuid=u)["state"], "running")

    def test_a_root_key_readable_by_others_refuses_to_start(self):
        d = self.start_daemon()
        d.stop()
        os.chmod(os.path.join(d.state_dir, "root.key"), 0o644)
        with self.assertRaises(AssertionError):
            d.restart()
        self.assertIn("chmod 600", d.log())

    def test_new_instances_start_in_the_manifest_and_move_to_their_files_when_writes_pause(self):
        """An add costs one sync: the new TPM's first state goes into the
        manifest itself and moves to its own file once writes pause
        (docs/state-format.md). Either way it survives SIGKILL."""
        d = self.start_daemon()
        ids = [d.result("add", auto_startup=True)["uuid"] for _ in range(12)]
        harness.wait_until(lambda: d.result("stats")["persistence"]["inline"] == 0, 10,
                           what="the new instances' state to move to their files")
        self.assertIn("from the manifest to their files", d.log())
        for u in ids:
            self.assertTrue(os.path.exists(os.path.join(d.state_dir, u + ".b.vtpm")), u)
        # Some more, and SIGKILL before they move: they load from the manifest.
        more = [d.result("add", auto_startup=True)["uuid"] for _ in range(5)]
        d.kill()
        d.restart()
        self.assertEqual(sorted(i["uuid"] for i in d.result("list")["instances"]), sorted(ids + more))
        for u in ids + more:
            self.assertEqual(len(T.parse_get_random(d.exec(u, T.get_random(8)))), 8, u)
        harness.wait_until(lambda: d.result("stats")["persistence"]["inline"] == 0, 10,
                           what="the restarted daemon to move them too")
        for u in more:  # generation 1 moved, or a later one (a cold start's auto-startup writes one)
            self.assertTrue(any(os.path.exists(os.path.join(d.state_dir, "%s.%s.vtpm" % (u, s))) for s in "ab"), u)

    def test_remove_destroys_the_state_for_good(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        self.prepare(d, u)
        path = d.state_file(u)
        self.assertTrue(os.path.exists(path))
        d.result("remove", uuid=u)
        self.assertFalse(os.path.exists(path))
        d.kill()
        d.restart()
        self.assertErrorCode(d.call("show", uuid=u), "not_found")
        # The UUID is free again, with a fresh key: nothing of the old TPM.
        d.result("add", uuid=u)
        T.check(d.exec(u, T.startup()), "Startup")
        self.assertNotEqual(T.resp_rc(d.exec(u, T.nv_read(NV_INDEX, len(MARKER)))), 0)

    def test_export_import_moves_an_instance_with_pcrs_and_nv(self):
        src = self.start_daemon(name="source")
        dst = self.start_daemon(name="destination")
        u = src.result("add")["uuid"]
        pcr = self.prepare(src, u)
        key = os.path.join(src.tmp, "transport.key")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        bundle = os.path.join(src.tmp, "bundle.vtpmx")
        out = src.ctl_ok("export", u, "--transport-key", key, "--output", bundle)
        self.assertIn("exported " + u, out)
        self.assertEqual(stat.S_IMODE(os.stat(bundle).st_mode), 0o600)
        with open(bundle, "rb") as f:
            sealed = f.read()
        self.assertNotIn(MARKER[:16], sealed)

        with self.subTest("wrong transport key"):
            wrong = os.path.join(src.tmp, "wrong.key")
            with open(wrong, "wb") as f:
                f.write(os.urandom(32))
            code, _, err = dst.ctl("import", bundle, "--transport-key", wrong)
            self.assertEqual(code, 1, err)
            self.assertIn("wrong transport key", err)
        with self.subTest("tampered bundle"):
            damaged = bytearray(sealed)
            damaged[-40] ^= 1
            resp = dst.call("import", bundle=damaged.hex(), transport_key=slurp(key).hex())
            self.assertErrorCode(resp, "corrupt")
        self.assertEqual(dst.result("list")["instances"], [])

        out = dst.ctl_ok("import", bundle, "--transport-key", key)
        self.assertIn("imported " + u, out)
        self.assertEqual(T.parse_pcr_read(dst.exec(u, T.pcr_read(PCR))), pcr)  # resumed, no Startup
        self.assertEqual(self.nv(dst, u), MARKER)
        self.assertErrorCode(dst.call("import", bundle=sealed.hex(),
                                      transport_key=slurp(key).hex()), "already_exists")
        dst.kill()  # the import was durable when acknowledged
        dst.restart()
        T.check(dst.exec(u, T.startup()), "Startup")
        self.assertEqual(self.nv(dst, u), MARKER)


if __name__ == "__main__":
    harness.main()
