#!/usr/bin/env python3
"""Many instances in one vtpmd: add/list/show through vtpmctl, commands on
all of them, PCR isolation, transient objects and sessions surviving engine
swaps, remove, and `vtpmctl exec`.

The tests share one daemon with 100 instances (70 TPM 2.0, 30 TPM 1.2) and
run in the order of their numbers; a later test is skipped when the
instances it needs were not set up by an earlier one.

Usage: python3 tests/integration/test_instances.py [-v]
"""

import concurrent.futures
import hashlib
import json
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tpmcmd as T  # noqa: E402

N20 = 70
N12 = 30
PCR20 = 16
PCR12 = 10
PARALLEL_CTL = 6

TPM_CC_ReadPublic = 0x0173


def read_public(handle):
    """TPM2_ReadPublic(TPMI_DH_OBJECT objectHandle), no sessions."""
    return struct.pack(">HIII", T.TPM_ST_NO_SESSIONS, 14, TPM_CC_ReadPublic,
                       handle)


def parse_read_public(resp):
    """-> (PublicArea, name): TPM2B_PUBLIC outPublic || TPM2B_NAME name."""
    T.check(resp, "ReadPublic")
    r = T._Reader(resp, 10)
    pub = T.parse_tpmt_public(r.tpm2b())
    return pub, r.tpm2b()


def pmap(fn, items, workers=PARALLEL_CTL):
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


class InstancesTest(harness.DaemonTestCase):
    d = None
    tpm20 = []      # UUIDs of TPM 2.0 instances still present
    tpm12 = []      # UUIDs of TPM 1.2 instances still present
    started = False  # Startup sent to every instance
    pcr = {}        # uuid -> expected value of PCR16 (2.0) / PCR10 (1.2)

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()

    def need(self, what):
        if what == "instances" and len(self.tpm20) + len(self.tpm12) == 0:
            self.skipTest("instances were not added (see test_01)")
        if what == "started" and not type(self).started:
            self.skipTest("instances were not started (see test_02)")

    def all_uuids(self):
        return list(self.tpm20) + list(self.tpm12)

    def version_of(self, uuid):
        return "1.2" if uuid in self.tpm12 else "2.0"

    def read_pcr(self, uuid):
        if self.version_of(uuid) == "1.2":
            return T.parse_tpm12_pcr_read(self.d.exec(uuid,
                                                      T.tpm12_pcr_read(PCR12)))
        return T.parse_pcr_read(self.d.exec(uuid, T.pcr_read(PCR20))).digest

    # ------------------------------------------------------------------

    def test_01_vtpmctl_adds_100_mixed_instances_list_and_show_them(self):
        d = self.d
        # Mixed order; every 10th instance gets a caller-chosen UUID.
        plan = ["2.0"] * N20 + ["1.2"] * N12
        random.Random(1).shuffle(plan)
        jobs = []
        for i, v in enumerate(plan):
            args = ["add"] + (["--tpm", "1.2"] if v == "1.2" else [])
            fixed = None
            if i % 10 == 0:
                fixed = "%08x-0000-4000-8000-%012x" % (0xabc00000 + i, i)
                args += ["--uuid", fixed]
            jobs.append((v, args, fixed))

        def add(job):
            v, args, fixed = job
            code, out, err = d.ctl(*args)
            return v, fixed, code, out.strip(), err

        added = pmap(add, jobs)
        tpm20, tpm12 = [], []
        for v, fixed, code, out, err in added:
            self.assertEqual(code, 0, "vtpmctl add failed: %s" % err)
            self.assertRegex(out, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
                                  r"[0-9a-f]{4}-[0-9a-f]{12}$")
            if fixed:
                self.assertEqual(out, fixed)
            (tpm12 if v == "1.2" else tpm20).append(out)
        self.assertEqual(len(set(tpm20 + tpm12)), N20 + N12, "UUIDs unique")
        type(self).tpm20, type(self).tpm12 = tpm20, tpm12

        # list: exactly these 100, sorted by UUID (JSON and human output)
        code, out, err = d.ctl("--json", "list")
        self.assertEqual(code, 0, err)
        listed = json.loads(out)["instances"]
        uuids = [i["uuid"] for i in listed]
        self.assertEqual(len(listed), 100)
        self.assertEqual(uuids, sorted(tpm20 + tpm12))
        for i in listed:
            self.assertEqual(i["tpm"], self.version_of(i["uuid"]))
        code, out, err = d.ctl("list")
        self.assertEqual(code, 0, err)
        rows = [ln for ln in out.splitlines()[1:] if ln.strip()]
        self.assertEqual(len(rows), 100, out)
        self.assertEqual(sorted(r.split()[0] for r in rows),
                         sorted(tpm20 + tpm12))

        # show each
        def show(u):
            return u, d.ctl("--json", "show", u)

        for u, (code, out, err) in pmap(show, tpm20 + tpm12):
            self.assertEqual(code, 0, err)
            info = json.loads(out)
            self.assertEqual(info["uuid"], u)
            self.assertEqual(info["tpm"], self.version_of(u))
            self.assertEqual(info["state"], "running")
            self.assertEqual(info["power"], "on")
            self.assertEqual(info["max_command_size"], 4096)
            self.assertFalse(info["auto_startup"])
            self.assertGreater(info["state_bytes"]["permanent"], 0)
            self.assertTrue(os.path.isfile(d.state_file(u)), u)

        st = d.result("status")
        self.assertEqual(st["instances"]["total"], 100)
        self.assertEqual(st["instances"]["tpm20"], N20)
        self.assertEqual(st["instances"]["tpm12"], N12)
        self.assertEqual(st["instances"]["running"], 100)

    def test_02_startup_and_commands_run_on_every_instance(self):
        self.need("instances")
        d = self.d
        for u in self.tpm20:
            T.check(d.exec(u, T.startup()), "Startup " + u)
            props, _ = T.parse_tpm_properties(
                d.exec(u, T.get_capability_tpm_properties(T.PT_FIXED, 64)))
            self.assertEqual(props[T.TPM_PT_FAMILY_INDICATOR], 0x322e3000)
            self.assertGreaterEqual(props[T.TPM_PT_PCR_COUNT], 24)
            self.assertEqual(len(T.parse_get_random(
                d.exec(u, T.get_random(16)))), 16)
            self.assertEqual(T.parse_pcr_read(
                d.exec(u, T.pcr_read(PCR20))).digest, bytes(32))
        for u in self.tpm12:
            T.tpm12_check(d.exec(u, T.tpm12_startup_clear()), "Startup " + u)
            ver = T.parse_tpm12_version(
                d.exec(u, T.tpm12_get_capability_version()))
            self.assertEqual((ver.major, ver.minor), (1, 2))
            self.assertEqual(len(T.parse_tpm12_get_random(
                d.exec(u, T.tpm12_get_random(16)))), 16)
            self.assertEqual(T.parse_tpm12_pcr_read(
                d.exec(u, T.tpm12_pcr_read(PCR12))), bytes(20))
        type(self).started = True
        type(self).pcr = {u: bytes(32) for u in self.tpm20}
        type(self).pcr.update({u: bytes(20) for u in self.tpm12})
        for u in self.all_uuids():
            c = d.result("show", uuid=u)["counters"]
            self.assertGreaterEqual(c["commands"], 4, u)
            self.assertEqual(c["errors"], 0, u)

    def test_03_pcr_extends_are_isolated_per_instance(self):
        self.need("started")
        d = self.d
        uuids = self.all_uuids()
        extends = {u: [] for u in uuids}
        rng = random.Random(3)
        # Three rounds, each in a different order, each value distinct.
        for rnd in range(3):
            order = list(uuids)
            rng.shuffle(order)
            for u in order:
                seed = ("%s/%d" % (u, rnd)).encode()
                if self.version_of(u) == "1.2":
                    digest = hashlib.sha1(seed).digest()
                    T.parse_tpm12_extend(d.exec(u, T.tpm12_extend(PCR12,
                                                                  digest)))
                else:
                    digest = hashlib.sha256(seed).digest()
                    T.check(d.exec(u, T.pcr_extend(PCR20, digest)),
                            "PCR_Extend " + u)
                extends[u].append(digest)
        # Only now read every PCR back.
        for u in uuids:
            alg = "sha1" if self.version_of(u) == "1.2" else "sha256"
            expected = self.pcr[u]
            for digest in extends[u]:
                expected = T.pcr_extend_expected(expected, digest, alg)
            self.assertEqual(self.read_pcr(u).hex(), expected.hex(),
                             "PCR of %s (TPM %s) is not the chain of its own "
                             "extends" % (u, self.version_of(u)))
            self.pcr[u] = expected
        self.assertEqual(len({v for v in self.pcr.values()}), len(uuids))

    def test_04_transient_objects_and_sessions_survive_interleaving(self):
        self.need("started")
        d = self.d
        chosen = self.tpm20[:6]
        objects = {}
        for u in chosen:
            cp = T.parse_create_primary(d.exec(u, T.create_primary_ecc_p256()))
            sess = T.parse_start_auth_session(d.exec(u, T.start_auth_session(
                "hmac")))
            self.assertEqual(cp.handle >> 24, T.TPM_HT_TRANSIENT)
            self.assertEqual(sess.handle >> 24, T.TPM_HT_HMAC_SESSION)
            objects[u] = (cp, sess.handle)
        # Different primary seeds per instance: different keys.
        self.assertEqual(len({o[0].ecc_x for o in objects.values()}),
                         len(chosen))

        swaps_before = sum(s["swaps"] for s in
                           d.result("status")["engine"]["shards"])
        rng = random.Random(4)
        everyone = self.all_uuids()
        for i in range(600):
            u = chosen[i % len(chosen)] if i % 3 == 0 else rng.choice(everyone)
            if self.version_of(u) == "1.2":
                T.parse_tpm12_get_random(d.exec(u, T.tpm12_get_random(8)))
            elif i % 2:
                T.parse_get_random(d.exec(u, T.get_random(8)))
            else:
                T.parse_pcr_read(d.exec(u, T.pcr_read(0)))
        swaps = sum(s["swaps"] for s in
                    d.result("status")["engine"]["shards"]) - swaps_before
        self.assertGreater(swaps, 200, "interleaving should force swaps")

        for u in chosen:
            cp, session = objects[u]
            handles, _ = T.parse_handles(d.exec(u, T.get_capability_handles(
                T.TPM_HT_TRANSIENT << 24)))
            self.assertIn(cp.handle, handles, "object gone on %s" % u)
            pub, name = parse_read_public(d.exec(u, read_public(cp.handle)))
            self.assertEqual((pub.ecc_x, pub.ecc_y), (cp.ecc_x, cp.ecc_y),
                             "a different key behind the handle on %s" % u)
            self.assertEqual(name, cp.name)
            saved = T.parse_context_save(d.exec(u, T.context_save(cp.handle)))
            self.assertEqual(saved.saved_handle >> 24, T.TPM_HT_TRANSIENT)
            sessions, _ = T.parse_handles(d.exec(u, T.get_capability_handles(
                T.TPM_HT_HMAC_SESSION << 24)))
            self.assertIn(session, sessions, "session gone on %s" % u)
            T.check(d.exec(u, T.flush_context(session)))
            T.check(d.exec(u, T.flush_context(cp.handle)))

    def test_05_vtpmctl_exec_prints_the_response_hex(self):
        self.need("started")
        d = self.d
        u20, u12 = self.tpm20[-1], self.tpm12[-1]
        code, out, err = d.ctl("exec", u20, T.hexs(T.get_random(8)))
        self.assertEqual(code, 0, err)
        resp = bytes.fromhex(out.strip())
        self.assertEqual(len(resp), 20)
        self.assertEqual(len(T.parse_get_random(resp)), 8)
        # HEX split over several arguments
        cmd = T.hexs(T.pcr_read(PCR20))
        code, out, err = d.ctl("exec", u20, cmd[:10], cmd[10:])
        self.assertEqual(code, 0, err)
        self.assertEqual(T.parse_pcr_read(bytes.fromhex(out.strip())).digest,
                         self.pcr[u20])
        # '-' reads the hex from stdin; TPM 1.2
        code, out, err = d.ctl("exec", u12, "-",
                               input=T.hexs(T.tpm12_pcr_read(PCR12)) + "\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(T.parse_tpm12_pcr_read(bytes.fromhex(out.strip())),
                         self.pcr[u12])
        # A TPM error code is a normal response: exit 0, hex printed.
        code, out, err = d.ctl("exec", u20, T.hexs(T.startup()))
        self.assertEqual(code, 0, err)
        self.assertEqual(T.rc(bytes.fromhex(out.strip())),
                         T.TPM_RC_INITIALIZE)

    def test_06_removed_instances_are_gone_others_still_work(self):
        self.need("started")
        d = self.d
        gone = self.tpm20[10:15] + self.tpm12[10:15]
        for u in gone:
            code, out, err = d.ctl("remove", u)
            self.assertEqual(code, 0, err)
        for u in gone:
            code, out, err = d.ctl("show", u)
            self.assertEqual(code, 1, "show of removed %s: %s" % (u, out))
            self.assertIn("not_found", err)
            self.assertErrorCode(d.call("show", uuid=u), "not_found")
            self.assertErrorCode(d.call("exec", uuid=u,
                                        command=T.hexs(T.get_random(8))),
                                 "not_found")
            self.assertFalse(os.path.exists(d.state_file(u)), u)
        type(self).tpm20 = [u for u in self.tpm20 if u not in gone]
        type(self).tpm12 = [u for u in self.tpm12 if u not in gone]
        left = self.all_uuids()
        listed = [i["uuid"] for i in d.result("list")["instances"]]
        self.assertEqual(sorted(listed), sorted(left))
        self.assertEqual(len(listed), 90)
        st = d.result("status")["instances"]
        self.assertEqual((st["total"], st["tpm20"], st["tpm12"]),
                         (90, N20 - 5, N12 - 5))
        for u in left:
            self.assertEqual(self.read_pcr(u), self.pcr[u], u)
        # the same UUID can be added again, as a fresh TPM
        again = gone[0]
        code, out, err = d.ctl("add", "--uuid", again)
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip(), again)
        T.check(d.exec(again, T.startup()))
        self.assertEqual(T.parse_pcr_read(d.exec(again,
                                                 T.pcr_read(PCR20))).digest,
                         bytes(32))


if __name__ == "__main__":
    harness.main()
