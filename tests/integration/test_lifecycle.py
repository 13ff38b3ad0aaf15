#!/usr/bin/env python3
"""Daemon and instance lifecycle: clean shutdown and restart, crash
(SIGKILL) and restart, power reset/off/on, auto_startup, corrupt state
files and the status counts.

Usage: python3 tests/integration/test_lifecycle.py [-v]
"""

import hashlib
import json
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tpmcmd as T  # noqa: E402

NV_INDEX = 0x01500010
NV_DATA = b"survives power loss!"
PCR20 = 16
PCR12 = 10


class LifecycleTest(harness.DaemonTestCase):

    # -- helpers
    def boot20(self, d, u):
        T.check(d.exec(u, T.startup()), "Startup")

    def boot12(self, d, u):
        T.tpm12_check(d.exec(u, T.tpm12_startup_clear()), "Startup")

    def extend20(self, d, u, tag):
        digest = hashlib.sha256(tag.encode()).digest()
        T.check(d.exec(u, T.pcr_extend(PCR20, digest)))
        return digest

    def extend12(self, d, u, tag):
        digest = hashlib.sha1(tag.encode()).digest()
        T.parse_tpm12_extend(d.exec(u, T.tpm12_extend(PCR12, digest)))
        return digest

    def pcr20(self, d, u):
        return T.parse_pcr_read(d.exec(u, T.pcr_read(PCR20))).digest

    def pcr12(self, d, u):
        return T.parse_tpm12_pcr_read(d.exec(u, T.tpm12_pcr_read(PCR12)))

    def define_and_write_nv(self, d, u):
        T.check(d.exec(u, T.nv_define_space(NV_INDEX, len(NV_DATA))),
                "NV_DefineSpace")
        T.check(d.exec(u, T.nv_write(NV_INDEX, NV_DATA)), "NV_Write")

    def read_nv(self, d, u):
        return T.parse_nv_read(d.exec(u, T.nv_read(NV_INDEX, len(NV_DATA))))

    def wait_persisted(self, d, u, old_bytes):
        """Wait until the state file of *u* has been rewritten (differs from
        *old_bytes*) and then stays unchanged for 0.3 s."""
        def read():  # the newest slot, looked up afresh: writes alternate
            with open(d.state_file(u), "rb") as f:
                return f.read()

        harness.wait_until(lambda: read() != old_bytes, 5,
                           what="the state of %s to be rewritten" % u)
        last = read()
        stable_since = time.monotonic()
        while time.monotonic() - stable_since < 0.3:
            time.sleep(0.05)
            now = read()
            if now != last:
                last, stable_since = now, time.monotonic()
        return last

    def list_uuids(self, d):
        return sorted(i["uuid"] for i in d.result("list")["instances"])

    # -- tests

    def test_sigterm_exits_0_and_restart_keeps_instances_and_pcrs(self):
        d = self.start_daemon()
        u20 = [d.result("add")["uuid"] for _ in range(3)]
        u12 = [d.result("add", tpm="1.2")["uuid"] for _ in range(2)]
        pcrs = {}
        for u in u20:
            self.boot20(d, u)
            self.extend20(d, u, u)
            pcrs[u] = self.pcr20(d, u)
        for u in u12:
            self.boot12(d, u)
            self.extend12(d, u, u)
            pcrs[u] = self.pcr12(d, u)
        # a transient object on one 2.0 instance (volatile state)
        cp = T.parse_create_primary(d.exec(u20[0], T.create_primary_ecc_p256()))
        before = self.list_uuids(d)
        workers = d.worker_pids()
        self.assertEqual(len(workers), 2, "one worker per TPM 1.2 instance")

        self.assertEqual(d.stop(), 0)
        harness.wait_until(lambda: not d.group_pids(), 5,
                           what="vtpmd-engine workers to exit")
        self.assertFalse(os.path.exists(d.socket_path),
                         "control socket left behind after clean exit")

        d.restart()
        self.assertEqual(self.list_uuids(d), before)
        for u in u20:
            # no Startup: the TPM resumes where it was
            self.assertEqual(self.pcr20(d, u), pcrs[u], u)
        for u in u12:
            self.assertEqual(self.pcr12(d, u), pcrs[u], u)
        handles, _ = T.parse_handles(d.exec(u20[0], T.get_capability_handles()))
        self.assertIn(cp.handle, handles, "transient object lost over a "
                                          "clean restart")
        # Startup now is refused: the TPM was never reset
        self.assertEqual(T.rc(d.exec(u20[1], T.startup())),
                         T.TPM_RC_INITIALIZE)
        self.assertIn("SIGTERM", d.log())

    def test_an_acknowledged_add_survives_sigkill_right_after_the_ack(self):
        d = self.start_daemon()
        added = []
        for round_ in range(10):
            added.append(d.result("add")["uuid"])
            d.kill()
            harness.wait_until(lambda: not d.group_pids(), 5, what="the daemon to die")
            d.restart()
            self.assertEqual(self.list_uuids(d), sorted(added), "round %d: an acknowledged add was lost" % round_)

    def test_an_acknowledged_add_keeps_its_endpoints_after_sigkill_right_after_the_ack(self):
        """An add with swtpm endpoints is one commit: the instance and where it
        listens are durable together before the answer (they were two commits,
        the second after the answer). 10 rounds of add, ack, SIGKILL at once,
        restart: every acknowledged instance answers on its own socket."""
        d = self.start_daemon()
        paths = {}
        for round_ in range(10):
            path = os.path.join(d.tmp, "ep%d.sock" % round_)
            paths[d.result("add", auto_startup=True, swtpm_path=path)["uuid"]] = path
            d.kill()
            harness.wait_until(lambda: not d.group_pids(), 5, what="the daemon to die")
            d.restart()
            for u, p in paths.items():
                self.assertIn("swtpm-data:unix:" + p, d.result("show", uuid=u)["channels"], "round %d" % round_)
                answer = T.data_socket_exchange(p, T.get_random(8))
                self.assertEqual(len(T.parse_get_random(answer)), 8, "round %d: %s does not answer" % (round_, p))

    @staticmethod
    def settled_writes(d):
        """The persister's write count once nothing is pending and it has
        not moved for 0.2 s (a restarted instance's auto-startup saves too)."""
        seen = []

        def settled():
            p = d.result("stats")["persistence"]
            seen.append(p["writes"])
            if p["pending"] or len(seen) < 3 or len(set(seen[-3:])) != 1:
                time.sleep(0.1)
                return False
            return True
        harness.wait_until(settled, 10, what="persistence to settle")
        return seen[-1]

    def test_an_acknowledged_attach_and_detach_survive_sigkill_right_after_the_ack(self):
        """attach and detach answer once the setting is on disk (Service::when_saved,
        which waits for the setting's own write): 10 rounds of attach (or detach),
        ack, SIGKILL at once, restart."""
        d = self.start_daemon()
        u = d.result("add", auto_startup=True)["uuid"]
        for round_ in range(10):
            path = os.path.join(d.tmp, "att%d.sock" % round_)
            writes = self.settled_writes(d)
            if round_ % 2 == 0:
                d.result("attach", uuid=u, swtpm_path=path)
            else:
                d.result("detach", uuid=u)
            # Waiting for the setting's own save: no second write for the answer.
            self.assertEqual(d.result("stats")["persistence"]["writes"] - writes, 1, "round %d" % round_)
            d.kill()
            harness.wait_until(lambda: not d.group_pids(), 5, what="the daemon to die")
            d.restart()
            channels = d.result("show", uuid=u)["channels"]
            if round_ % 2 == 0:
                self.assertIn("swtpm-data:unix:" + path, channels, "round %d: an acknowledged attach was lost" % round_)
                self.assertEqual(len(T.parse_get_random(T.data_socket_exchange(path, T.get_random(8)))), 8)
            else:
                self.assertEqual(channels, [], "round %d: an acknowledged detach was lost" % round_)

    def test_an_acknowledged_nv_write_survives_sigkill_right_after_the_ack(self):
        """The durability rule: the response to an NV write is released only
        once the new state is on disk. 25 rounds of write, ack, SIGKILL at
        once (no waiting for files), restart: the acknowledged data is there."""
        d = self.start_daemon()
        u = d.result("add", auto_startup=True)["uuid"]
        T.check(d.exec(u, T.nv_define_space(NV_INDEX, 8)), "NV_DefineSpace")
        for round_ in range(25):
            data = struct.pack(">Q", 0x5EED0000 + round_)
            T.check(d.exec(u, T.nv_write(NV_INDEX, data)), "NV_Write")  # acknowledged
            d.kill()
            harness.wait_until(lambda: not d.group_pids(), 5, what="the daemon to die")
            d.restart()
            got = T.parse_nv_read(d.exec(u, T.nv_read(NV_INDEX, 8)))
            self.assertEqual(got, data, "round %d: an acknowledged NV write was lost in a crash" % round_)

    def test_sigkill_keeps_instances_and_nv_but_resets_pcrs(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        u12 = d.result("add", tpm="1.2")["uuid"]
        self.boot20(d, u)
        self.boot12(d, u12)
        with open(d.state_file(u), "rb") as f:
            before_nv = f.read()
        self.define_and_write_nv(d, u)
        self.assertEqual(self.read_nv(d, u), NV_DATA)
        self.extend20(d, u, "pre-crash")
        self.extend12(d, u12, "pre-crash")
        self.assertNotEqual(self.pcr20(d, u), bytes(32))
        # NV is persisted asynchronously: wait for the file to change.
        self.wait_persisted(d, u, before_nv)
        workers = d.worker_pids()
        self.assertEqual(len(workers), 1)

        d.kill()
        harness.wait_until(lambda: not d.group_pids(), 5,
                           what="vtpmd-engine workers to exit after the "
                                "daemon was killed")
        d.restart()
        self.assertEqual(self.list_uuids(d), sorted([u, u12]))
        # power loss: the TPM needs Startup again
        self.assertEqual(T.rc(d.exec(u, T.get_random(8))), T.TPM_RC_INITIALIZE)
        self.boot20(d, u)
        self.assertEqual(self.pcr20(d, u), bytes(32), "PCR survived a crash")
        self.assertEqual(self.read_nv(d, u), NV_DATA, "NV lost in a crash")
        pub = T.parse_nv_read_public(d.exec(u, T.nv_read_public(NV_INDEX)))
        self.assertTrue(pub.attributes & T.TPMA_NV_WRITTEN)
        self.boot12(d, u12)
        self.assertEqual(self.pcr12(d, u12), bytes(20))

    def test_clean_restart_resumes_once_then_a_crash_is_a_power_loss(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        self.boot20(d, u)
        self.extend20(d, u, "x")
        pcr = self.pcr20(d, u)
        d.stop()
        d.restart()
        self.assertEqual(self.pcr20(d, u), pcr)
        # the resumed volatile state must not be resumed a second time
        time.sleep(0.5)
        d.kill()
        d.restart()
        self.assertEqual(T.rc(d.exec(u, T.pcr_read(PCR20))),
                         T.TPM_RC_INITIALIZE)
        self.boot20(d, u)
        self.assertEqual(self.pcr20(d, u), bytes(32))

    def test_power_reset_clears_pcrs_but_keeps_nv(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        u12 = d.result("add", tpm="1.2")["uuid"]
        self.boot20(d, u)
        self.boot12(d, u12)
        self.define_and_write_nv(d, u)
        self.extend20(d, u, "a")
        self.extend12(d, u12, "a")
        code, out, err = d.ctl("power", u, "reset")
        self.assertEqual(code, 0, err)
        info = d.result("power", uuid=u12, action="reset")
        self.assertEqual((info["state"], info["power"]), ("running", "on"))
        # _TPM_Init: Startup is needed again
        self.assertEqual(T.rc(d.exec(u, T.get_random(8))), T.TPM_RC_INITIALIZE)
        self.boot20(d, u)
        self.boot12(d, u12)
        self.assertEqual(self.pcr20(d, u), bytes(32))
        self.assertEqual(self.pcr12(d, u12), bytes(20))
        self.assertEqual(self.read_nv(d, u), NV_DATA)

    def test_power_off_makes_exec_unavailable_and_on_restores(self):
        d = self.start_daemon()
        u = d.result("add")["uuid"]
        u12 = d.result("add", tpm="1.2")["uuid"]
        self.boot20(d, u)
        self.define_and_write_nv(d, u)
        for x in (u, u12):
            info = d.result("power", uuid=x, action="off")
            self.assertEqual((info["state"], info["power"]),
                             ("stopped", "off"))
        self.assertErrorCode(d.call("exec", uuid=u,
                                    command=T.hexs(T.get_random(8))),
                             "unavailable")
        self.assertErrorCode(d.call("exec", uuid=u12,
                                    command=T.hexs(T.tpm12_get_random(8))),
                             "unavailable")
        code, out, err = d.ctl("exec", u, T.hexs(T.get_random(8)))
        self.assertEqual(code, 1)
        self.assertIn("unavailable", err)
        st = d.result("status")["instances"]
        self.assertEqual((st["running"], st["stopped"]), (0, 2))
        # off is remembered over a daemon restart
        d.stop()
        d.restart()
        self.assertEqual(d.result("show", uuid=u)["power"], "off")
        self.assertErrorCode(d.call("exec", uuid=u,
                                    command=T.hexs(T.get_random(8))),
                             "unavailable")
        code, out, err = d.ctl("power", u, "on")
        self.assertEqual(code, 0, err)
        d.result("power", uuid=u12, action="on")
        self.assertEqual(d.result("show", uuid=u)["state"], "running")
        self.boot20(d, u)
        self.boot12(d, u12)
        self.assertEqual(len(T.parse_get_random(d.exec(u, T.get_random(8)))),
                         8)
        self.assertEqual(len(T.parse_tpm12_get_random(
            d.exec(u12, T.tpm12_get_random(8)))), 8)
        self.assertEqual(self.read_nv(d, u), NV_DATA)

    def test_auto_startup_instance_needs_no_startup(self):
        d = self.start_daemon()
        code, out, err = d.ctl("add", "--auto-startup")
        self.assertEqual(code, 0, err)
        u = out.strip()
        code, out, err = d.ctl("add", "--auto-startup", "--tpm", "1.2")
        self.assertEqual(code, 0, err)
        u12 = out.strip()
        self.assertTrue(d.result("show", uuid=u)["auto_startup"])
        self.assertEqual(len(T.parse_get_random(d.exec(u, T.get_random(8)))),
                         8)
        self.assertEqual(T.rc(d.exec(u, T.startup())), T.TPM_RC_INITIALIZE)
        self.assertEqual(len(T.parse_tpm12_get_random(
            d.exec(u12, T.tpm12_get_random(8)))), 8)
        # TPM 1.2: a second Startup is TPM_INVALID_POSTINIT (0x26)
        self.assertEqual(T.tpm12_rc(d.exec(u12, T.tpm12_startup_clear())),
                         0x26)
        # ... and after every power-on
        d.result("power", uuid=u, action="reset")
        self.assertEqual(len(T.parse_get_random(d.exec(u, T.get_random(8)))),
                         8)
        d.result("power", uuid=u, action="off")
        d.result("power", uuid=u, action="on")
        self.assertEqual(len(T.parse_get_random(d.exec(u, T.get_random(8)))),
                         8)
        self.assertEqual(T.rc(d.exec(u, T.startup())), T.TPM_RC_INITIALIZE)

    def test_auto_startup_instance_needs_no_startup_after_a_crash(self):
        # A daemon crash is a power loss (PCRs reset, Startup needed); the
        # daemon's next power-on of the instance must send Startup(CLEAR)
        # for it ("auto_startup: send TPM Startup(CLEAR) after every
        # power-on, for clients that do not").
        d = self.start_daemon()
        u = d.result("add", auto_startup=True)["uuid"]
        u12 = d.result("add", tpm="1.2", auto_startup=True)["uuid"]
        self.extend20(d, u, "x")
        self.extend12(d, u12, "x")
        time.sleep(0.3)
        d.kill()
        d.restart()
        with self.subTest(tpm="2.0"):
            r = d.exec(u, T.get_random(8))
            self.assertEqual(T.rc(r), 0, "auto_startup TPM 2.0 instance "
                             "answers GetRandom with %s after a daemon crash"
                             % T.rc_str(T.rc(r)))
            self.assertEqual(self.pcr20(d, u), bytes(32))
        with self.subTest(tpm="1.2"):
            r = d.exec(u12, T.tpm12_get_random(8))
            self.assertEqual(T.tpm12_rc(r), 0, "auto_startup TPM 1.2 "
                             "instance answers GetRandom with rc 0x%x "
                             "after a daemon crash" % T.tpm12_rc(r))
            self.assertEqual(self.pcr12(d, u12), bytes(20))

    def test_corrupt_state_file_quarantines_only_that_instance(self):
        d = self.start_daemon()
        good20 = d.result("add")["uuid"]
        good12 = d.result("add", tpm="1.2")["uuid"]
        bad = d.result("add")["uuid"]
        for u in (good20, bad):
            self.boot20(d, u)
            self.extend20(d, u, u)
        self.boot12(d, good12)
        self.extend12(d, good12, good12)
        pcr = {good20: self.pcr20(d, good20), good12: self.pcr12(d, good12)}
        d.stop()

        path = d.state_file(bad)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[len(data) // 2] ^= 0x40
        with open(path, "wb") as f:
            f.write(data)

        d.restart()
        self.assertIn(os.path.basename(path), d.log(),
                      "the daemon log does not name the corrupt file")
        # the others load fine and keep their state
        self.assertEqual(self.pcr20(d, good20), pcr[good20])
        self.assertEqual(self.pcr12(d, good12), pcr[good12])
        # the corrupt one is not usable, and reported
        listed = {i["uuid"]: i for i in d.result("list")["instances"]}
        self.assertIn(good20, listed)
        self.assertIn(good12, listed)
        if bad in listed:
            self.assertEqual(listed[bad]["state"], "failed")
        resp = d.call("exec", uuid=bad, command=T.hexs(T.get_random(8)))
        self.assertIn(resp.get("error", {}).get("code"),
                      ("not_found", "corrupt", "unavailable"), resp)
        st = d.result("status")["instances"]
        self.assertEqual(st["running"], 2)
        # the file is left in place, untouched
        with open(path, "rb") as f:
            self.assertEqual(f.read(), bytes(data))
        d.stop()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), bytes(data),
                             "clean shutdown rewrote the corrupt file")

    def test_corrupt_tpm_state_inside_a_valid_record_fails_the_instance(self):
        d = self.start_daemon()
        good = d.result("add")["uuid"]
        bad = d.result("add")["uuid"]
        for u in (good, bad):
            self.boot20(d, u)
        d.stop()
        # Garble libtpms' permanent blob inside an authentic, sealed record
        # (as only a holder of the root key could): the store accepts it,
        # libtpms must refuse it.
        subprocess.run([harness.STATE_EDITOR, d.state_dir, "garble-permanent", bad], check=True)
        d.restart()
        self.assertEqual(len(T.parse_get_random(d.exec(good,
                                                       T.get_random(8)))), 8)
        # control-protocol.md: corrupt = "instance state could not be
        # loaded; the instance is quarantined"; state failed = "state could
        # not be loaded ...; only power/remove are accepted".
        with self.subTest("first command"):
            resp = d.call("exec", uuid=bad, command=T.hexs(T.get_random(8)))
            self.assertErrorCode(resp, "corrupt")
        with self.subTest("later commands"):
            resp = d.call("exec", uuid=bad, command=T.hexs(T.get_random(8)))
            self.assertErrorCode(resp, "corrupt")
        with self.subTest("show"):
            info = d.result("show", uuid=bad)
            self.assertEqual(info["state"], "failed", info)
            self.assertIn("failure", info)
        with self.subTest("status"):
            st = d.result("status")["instances"]
            self.assertEqual((st["total"], st["running"], st["failed"]),
                             (2, 1, 1), st)
        self.assertIn("TPMLIB_MainInit", d.log())
        # remove still works for it; the other instance is unaffected
        d.result("remove", uuid=bad)
        self.assertErrorCode(d.call("show", uuid=bad), "not_found")
        self.assertEqual(len(T.parse_get_random(d.exec(good,
                                                       T.get_random(8)))), 8)

    def test_add_does_not_overwrite_a_quarantined_state_file(self):
        d = self.start_daemon()
        bad = d.result("add")["uuid"]
        self.boot20(d, bad)
        d.stop()
        path = d.state_file(bad)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[len(data) // 2] ^= 0x01
        with open(path, "wb") as f:
            f.write(data)
        d.restart()
        self.assertIn(os.path.basename(path), d.log())
        # The file was "left untouched for inspection" (daemon log); adding
        # an instance under the same UUID must not destroy it.
        resp = d.call("add", uuid=bad)
        time.sleep(0.5)  # let any state write land
        kept = []
        for name in os.listdir(d.state_dir):
            with open(os.path.join(d.state_dir, name), "rb") as f:
                if f.read() == bytes(data):
                    kept.append(name)
        self.assertTrue(kept, "add %s answered %r and the quarantined state "
                        "file was overwritten" % (bad, resp))

    def test_status_reports_counts(self):
        d = self.start_daemon()
        a = d.result("add")["uuid"]
        d.result("add")
        d.result("add", tpm="1.2")
        d.result("power", uuid=a, action="off")
        st = d.result("status")
        self.assertEqual(st["instances"], {"total": 3, "tpm12": 1, "tpm20": 2,
                                           "running": 2, "stopped": 1,
                                           "failed": 0})
        self.assertEqual(st["pid"], d.pid)
        self.assertEqual(st["state_dir"], d.state_dir)
        self.assertGreaterEqual(st["uptime_s"], 0)
        self.assertGreaterEqual(st["control"]["connections"], 1)
        names = [s["name"] for s in st["engine"]["shards"]]
        self.assertIn("engine-thread", names)
        workers = [s for s in st["engine"]["shards"] if s["pid"]]
        self.assertEqual(len(workers), 1)
        self.assertEqual(sorted(d.worker_pids()), [workers[0]["pid"]])
        self.assertEqual(st["engine"]["outstanding"], 0)
        code, out, err = d.ctl("status")
        self.assertEqual(code, 0, err)
        self.assertIn("instances:   3", out)
        code, out, err = d.ctl("--json", "status")
        self.assertEqual(json.loads(out)["instances"]["total"], 3)


if __name__ == "__main__":
    harness.main()
