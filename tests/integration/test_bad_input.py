#!/usr/bin/env python3
"""Bad input never hurts the daemon: invalid UUIDs, duplicate/unknown
instances, busy removal, malformed TPM packets and garbage on the control
socket.  After every bad input the daemon must still answer `hello` on a new
connection and the witness instances (one TPM 2.0, one TPM 1.2, with
extended PCRs) must be intact and working.

Usage: python3 tests/integration/test_bad_input.py [-v]
"""

import hashlib
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tpmcmd as T  # noqa: E402

GOOD_UUID = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"  # valid, never added
BAD_UUIDS = [
    "garbage",
    "{6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab}",   # braces
    "00000000-0000-0000-0000-000000000000",     # nil
    "6f1c2d3e4a5b4c6d8e7f0123456789ab",         # no dashes
    "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ag",     # non-hex
    "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab0",    # too long
    "",
]
USAGE_EXIT = 2   # vtpmctl --help: "2 usage error: ... invalid UUID or hex"
DAEMON_EXIT = 1  # vtpmctl --help: "1 the daemon returned an error"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class BadInputTest(harness.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        d = cls.d = cls.start_class_daemon()
        # Witnesses whose state must survive every bad input.
        cls.w20 = d.result("add")["uuid"]
        cls.w12 = d.result("add", tpm="1.2")["uuid"]
        T.check(d.exec(cls.w20, T.startup()))
        T.tpm12_check(d.exec(cls.w12, T.tpm12_startup_clear()))
        T.check(d.exec(cls.w20, T.pcr_extend(16, hashlib.sha256(b"w").digest())))
        T.parse_tpm12_extend(d.exec(cls.w12, T.tpm12_extend(
            10, hashlib.sha1(b"w").digest())))
        cls.pcr20 = T.parse_pcr_read(d.exec(cls.w20, T.pcr_read(16))).digest
        cls.pcr12 = T.parse_tpm12_pcr_read(d.exec(cls.w12,
                                                  T.tpm12_pcr_read(10)))
        assert cls.pcr20 != bytes(32) and cls.pcr12 != bytes(20)

    def assert_intact(self):
        """hello on a new connection; witnesses keep their PCRs and work."""
        d = self.d
        self.assertTrue(d.running(), "vtpmd died")
        self.assertTrue(d.hello_ok())
        with harness.Client(d.socket_path, 30) as c:
            self.assertEqual(T.parse_pcr_read(c.exec(self.w20,
                                                     T.pcr_read(16))).digest,
                             self.pcr20)
            self.assertEqual(T.parse_tpm12_pcr_read(
                c.exec(self.w12, T.tpm12_pcr_read(10))), self.pcr12)
            self.assertEqual(len(T.parse_get_random(
                c.exec(self.w20, T.get_random(8)))), 8)
            self.assertEqual(len(T.parse_tpm12_get_random(
                c.exec(self.w12, T.tpm12_get_random(8)))), 8)
            uuids = {i["uuid"] for i in c.result("list")["instances"]}
            self.assertLessEqual({self.w20, self.w12}, uuids)

    def fresh20(self):
        u = self.d.result("add")["uuid"]
        T.check(self.d.exec(u, T.startup()))
        return u

    # ---------------------------------------------------------------- UUIDs

    def test_invalid_uuids_are_invalid_argument_and_vtpmctl_usage_error(self):
        d = self.d
        total = d.result("status")["instances"]["total"]
        for bad in BAD_UUIDS:
            for method, extra in (("add", {}), ("show", {}), ("remove", {}),
                                  ("cancel", {}),
                                  ("power", {"action": "reset"}),
                                  ("exec", {"command": T.hexs(T.get_random(
                                      4))})):
                resp = d.call(method, uuid=bad, **extra)
                self.assertErrorCode(resp, "invalid_argument",
                                     "%s uuid=%r -> %r" % (method, bad, resp))
            for args in (["add", "--uuid", bad], ["show", bad],
                         ["remove", bad], ["power", bad, "on"],
                         ["exec", bad, "80010000000c000001440000"]):
                code, out, err = d.ctl(*args)
                self.assertEqual(code, USAGE_EXIT, "vtpmctl %r -> %d %s%s"
                                 % (args, code, out, err))
                self.assertIn("UUID", err)
        # a UUID of the wrong JSON type
        for value in (42, None, ["x"], {"a": 1}):
            self.assertErrorCode(d.call("show", uuid=value),
                                 "invalid_argument")
        self.assertErrorCode(d.call("show"), "invalid_argument")
        # nothing was created by any of that
        self.assertEqual(d.result("status")["instances"]["total"], total)
        self.assert_intact()

    def test_uppercase_uuid_names_the_same_instance(self):
        d = self.d
        resp = d.call("show", uuid=self.w20.upper())
        self.assertEqual(resp["result"]["uuid"], self.w20, resp)

    def test_duplicate_add_is_already_exists(self):
        d = self.d
        u = "11111111-2222-4333-8444-555555555555"
        code, out, err = d.ctl("add", "--uuid", u)
        self.assertEqual(code, 0, err)
        self.assertErrorCode(d.call("add", uuid=u), "already_exists")
        self.assertErrorCode(d.call("add", uuid=u, tpm="1.2"),
                             "already_exists")
        code, out, err = d.ctl("add", "--uuid", u, "--tpm", "1.2")
        self.assertEqual(code, DAEMON_EXIT, out + err)
        self.assertIn("already_exists", err)
        # the original is untouched: still TPM 2.0
        self.assertEqual(d.result("show", uuid=u)["tpm"], "2.0")
        d.result("remove", uuid=u)
        self.assert_intact()

    def test_remove_or_show_of_unknown_uuid_is_not_found(self):
        d = self.d
        for method in ("remove", "show", "cancel"):
            self.assertErrorCode(d.call(method, uuid=GOOD_UUID), "not_found")
        self.assertErrorCode(d.call("exec", uuid=GOOD_UUID,
                                    command=T.hexs(T.get_random(4))),
                             "not_found")
        self.assertErrorCode(d.call("power", uuid=GOOD_UUID, action="on"),
                             "not_found")
        code, out, err = d.ctl("remove", GOOD_UUID)
        self.assertEqual(code, DAEMON_EXIT)
        self.assertIn("not_found", err)
        self.assert_intact()

    def test_bad_add_parameters_are_invalid_argument(self):
        d = self.d
        total = d.result("status")["instances"]["total"]
        for params in ({"tpm": "3.0"}, {"tpm": 2}, {"auto_startup": "yes"},
                       {"max_command_size": 100},
                       {"max_command_size": 1 << 20},
                       {"max_command_size": "4096"}, {"colour": "red"}):
            self.assertErrorCode(d.call("add", **params), "invalid_argument",
                                 "add %r" % params)
        self.assertErrorCode(d.call("power", uuid=self.w20, action="sideways"),
                             "invalid_argument")
        for args in (["add", "--tpm", "3.0"], ["add", "--bogus"],
                     ["power", self.w20, "sideways"],
                     ["exec", self.w20, "80010000000c000001440000",
                      "--locality", "7"]):
            code, out, err = d.ctl(*args)
            self.assertEqual(code, USAGE_EXIT, "%r: %s" % (args, err))
        self.assertErrorCode(d.call("exec", uuid=self.w20,
                                    command=T.hexs(T.get_random(4)),
                                    locality=5), "invalid_argument")
        self.assertEqual(d.result("status")["instances"]["total"], total)
        self.assert_intact()

    # ---------------------------------------------------------- busy remove

    def test_remove_closes_the_instances_endpoints(self):
        d = self.d
        path = os.path.join(d.tmp, "removed-data.sock")
        u = d.result("add", auto_startup=True, swtpm_path=path)["uuid"]
        self.assertTrue(os.path.exists(path) and os.path.exists(path + ".ctrl"))
        d.result("remove", uuid=u)
        # The guest channels let go once the instance is gone (Service's
        # removal listeners), with nothing left on disk.
        self.assertFalse(os.path.exists(path))
        self.assertFalse(os.path.exists(path + ".ctrl"))

    def test_an_add_whose_endpoints_cannot_open_creates_nothing(self):
        """add binds its sockets while the new TPM is made durable and listens
        once it is; a socket that cannot be had fails the add, all or nothing,
        and harms nobody else's endpoints."""
        d = self.d
        total = d.result("status")["instances"]["total"]
        blocker = os.path.join(d.tmp, "not-a-socket")
        with open(blocker, "w") as f:
            f.write("keep me")
        resp = d.call("add", auto_startup=True, swtpm_path=blocker)
        self.assertErrorCode(resp, "already_exists")
        self.assertIn("is not a socket", resp["error"]["message"])
        with open(blocker) as f:
            self.assertEqual(f.read(), "keep me")
        self.assertFalse(os.path.exists(blocker + ".ctrl"), "a half-made add left its control socket")

        taken = os.path.join(d.tmp, "taken.sock")
        u = d.result("add", auto_startup=True, swtpm_path=taken)["uuid"]
        self.assertErrorCode(d.call("add", auto_startup=True, swtpm_path=taken), "already_exists")
        # The same UUID again, endpoints elsewhere: the add's own error, and
        # the existing instance keeps its sockets.
        elsewhere = os.path.join(d.tmp, "elsewhere.sock")
        self.assertErrorCode(d.call("add", uuid=u, swtpm_path=elsewhere), "already_exists")
        self.assertFalse(os.path.exists(elsewhere))
        self.assertEqual(len(T.parse_get_random(T.data_socket_exchange(taken, T.get_random(8)))), 8)
        self.assertEqual(d.result("status")["instances"]["total"], total + 1)
        d.result("remove", uuid=u)
        self.assert_intact()

    def test_remove_with_commands_in_flight_is_busy_until_forced(self):
        d = self.d
        u = self.fresh20()
        other = d.client()
        # ~40 slow commands pipelined on a second connection: RSA-2048
        # primaries (distinct seeds, each a real key generation), flushed
        # so that the object slots never run out.
        ids = []
        for i in range(20):
            ids.append(other.send("exec", {"uuid": u, "command": T.hexs(
                T.create_primary_rsa2048(sensitive_data=b"%d" % i))}))
            ids.append(other.send("exec", {"uuid": u, "command": T.hexs(
                T.flush_context(0x80000000))}))
        first = other.wait(ids[0])
        self.assertEqual(first["result"]["rc"], 0, first)
        outstanding = d.result("show", uuid=u)["outstanding"]
        self.assertGreater(outstanding, 0, "commands finished too early")
        resp = d.call("remove", uuid=u)
        self.assertErrorCode(resp, "busy")
        code, out, err = d.ctl("remove", u)
        self.assertEqual(code, DAEMON_EXIT)
        self.assertIn("busy", err)
        self.assertEqual(d.result("show", uuid=u)["state"], "running")

        resp = d.call("remove", uuid=u, force=True)
        self.assertEqual(resp.get("result"), {"uuid": u}, resp)
        # every pipelined request is answered: done, cancelled or not_found
        codes = []
        for i in ids[1:]:
            r = other.wait(i)
            codes.append(r["error"]["code"] if "error" in r else "ok")
        self.assertIn("cancelled", codes)
        self.assertLessEqual(set(codes), {"ok", "cancelled", "not_found"},
                             codes)
        self.assertErrorCode(d.call("show", uuid=u), "not_found")
        self.assertFalse(os.path.exists(d.state_file(u)))
        self.assert_intact()

    # ---------------------------------------------------- bad TPM packets

    def counters(self, u):
        return self.d.result("show", uuid=u)["counters"]

    def test_malformed_tpm_packets_are_refused_and_instance_keeps_working(self):
        d = self.d
        u = self.fresh20()
        T.check(d.exec(u, T.pcr_extend(16, hashlib.sha256(b"x").digest())))
        pcr_before = T.parse_pcr_read(d.exec(u, T.pcr_read(16))).digest
        good = T.get_random(8)
        body = T.get_random(8)
        cases = [
            ("truncated (<10 bytes)", good[:6], "invalid_argument"),
            ("truncated (9 bytes)", good[:9], "invalid_argument"),
            ("size field larger than packet",
             body[:2] + struct.pack(">I", len(body) + 4) + body[6:],
             "invalid_argument"),
            ("size field smaller than packet",
             body[:2] + struct.pack(">I", len(body) - 1) + body[6:],
             "invalid_argument"),
            ("trailing bytes after a correct size", good + b"\x00",
             "invalid_argument"),
            ("oversized 5000 bytes",
             struct.pack(">HII", 0x8001, 5000, 0x17B) + bytes(4990),
             "too_large"),
            ("TPM 1.2 tag on TPM 2.0", T.tpm12_get_random(8),
             "invalid_argument"),
            ("unknown tag", b"\x12\x34" + good[2:], "invalid_argument"),
        ]
        before = self.counters(u)
        for what, packet, code in cases:
            resp = d.call("exec", uuid=u, command=T.hexs(packet))
            self.assertErrorCode(resp, code, "%s -> %r" % (what, resp))
            self.assertNotIn("result", resp)
        after = self.counters(u)
        self.assertEqual(after["errors"] - before["errors"], len(cases),
                         "refused commands count as errors (control-protocol"
                         ".md, show)")
        self.assertEqual(after["commands"], before["commands"])

        # hex that is not hex, or no command at all
        for text in ("zz", "8001000", "80 01 xx", "0x8001"):
            self.assertErrorCode(d.call("exec", uuid=u, command=text),
                                 "invalid_argument", "command %r" % text)
        self.assertErrorCode(d.call("exec", uuid=u, command=""),
                             "invalid_argument")
        self.assertErrorCode(d.call("exec", uuid=u), "invalid_argument")
        self.assertErrorCode(d.call("exec", uuid=u, command=1234),
                             "invalid_argument")
        # whitespace between bytes is allowed (docs) and works
        spaced = " ".join("%02x" % b for b in good)
        self.assertEqual(d.call("exec", uuid=u, command=spaced)
                         ["result"]["rc"], 0)
        # a hex string larger than any TPM accepts
        self.assertErrorCode(d.call("exec", uuid=u, command="00" * 70000),
                             "too_large")
        # vtpmctl: non-hex is a usage error, a bad packet a daemon error
        code, out, err = d.ctl("exec", u, "xyz")
        self.assertEqual(code, USAGE_EXIT, err)
        code, out, err = d.ctl("exec", u, T.hexs(good[:6]))
        self.assertEqual(code, DAEMON_EXIT, err)
        self.assertIn("invalid_argument", err)

        # the instance still works and its PCR did not move
        self.assertEqual(T.parse_pcr_read(d.exec(u, T.pcr_read(16))).digest,
                         pcr_before)
        self.assertEqual(len(T.parse_get_random(d.exec(u, good))), 8)
        self.assertEqual(d.result("show", uuid=u)["state"], "running")
        d.result("remove", uuid=u)
        self.assert_intact()

    def test_tpm2_packet_to_tpm12_instance_is_refused(self):
        d = self.d
        for packet in (T.get_random(8), T.startup(), T.tpm12_get_random(8)[:8]):
            self.assertErrorCode(d.call("exec", uuid=self.w12,
                                        command=T.hexs(packet)),
                                 "invalid_argument")
        self.assert_intact()

    def test_max_command_size_is_enforced_at_the_limit(self):
        d = self.d
        u = d.result("add", max_command_size=1024)["uuid"]
        self.assertEqual(d.result("show", uuid=u)["max_command_size"], 1024)
        T.check(d.exec(u, T.startup()))

        def padded(n):  # a GetRandom with junk after its parameter
            return struct.pack(">HII", 0x8001, n, 0x17B) + bytes(n - 10)

        self.assertErrorCode(d.call("exec", uuid=u, command=T.hexs(
            padded(1025))), "too_large")
        # exactly at the limit: passes vtpmd, the TPM itself answers
        r = d.call("exec", uuid=u, command=T.hexs(padded(1024)))
        self.assertIn("result", r, r)
        self.assertEqual(len(T.parse_get_random(d.exec(u, T.get_random(8)))),
                         8)
        d.result("remove", uuid=u)
        # the default instance limit is 4096 bytes
        r = d.call("exec", uuid=self.w20, command=T.hexs(padded(4096)))
        self.assertIn("result", r, r)
        self.assertErrorCode(d.call("exec", uuid=self.w20,
                                    command=T.hexs(padded(4097))), "too_large")
        self.assert_intact()

    # ---------------------------------------------- control socket garbage

    def test_binary_junk_line_fails_only_that_request(self):
        d = self.d
        junk = bytes(range(256)).replace(b"\n", b"") * 4
        lines, closed = d.raw_send(junk + b"\n" + b'{"id":7,"method":"hello"}\n')
        self.assertEqual(len(lines), 2, lines)
        self.assertEqual(lines[0]["error"]["code"], "invalid_argument")
        self.assertIsNone(lines[0]["id"])
        self.assertEqual(lines[0]["v"], 1)
        self.assertEqual(lines[1]["id"], 7)
        self.assertEqual(lines[1]["result"]["daemon"], "vtpmd")
        self.assert_intact()

    def test_non_object_and_malformed_requests_are_invalid_argument(self):
        d = self.d
        cases = [
            (b"this is not json", None),
            (b"[1, 2, 3]", None),
            (b'["hello"]', None),
            (b'"hello"', None),
            (b"42", None),
            (b"null", None),
            (b'{"id": 1, "method": "hello"', None),          # unterminated
            (b'{"id": 2}', 2),                               # no method
            (b'{"id": 3, "method": ""}', 3),
            (b'{"id": 4, "method": 7}', 4),
            (b'{"id": 5, "method": "hello", "params": [1]}', 5),
            (b'{"id": 6, "method": "hello", "params": {"x": 1}}', 6),
            (b'{"id": 7.5, "method": "hello"}', None),
            (b'{"id": 8, "v": "1", "method": "hello"}', 8),
        ]
        payload = b"".join(c + b"\n" for c, _ in cases)
        payload += b'{"id": "last", "method": "hello"}\n'
        lines, closed = d.raw_send(payload)
        self.assertEqual(len(lines), len(cases) + 1, lines)
        for (req, rid), resp in zip(cases, lines):
            self.assertEqual(resp.get("error", {}).get("code"),
                             "invalid_argument", "%r -> %r" % (req, resp))
            self.assertEqual(resp["id"], rid, "%r -> %r" % (req, resp))
        self.assertEqual(lines[-1]["id"], "last")
        self.assertIn("result", lines[-1])
        self.assert_intact()

    def test_unknown_method_is_not_found_and_ids_are_echoed(self):
        d = self.d
        lines, _ = d.raw_send(
            b'{"v":1,"id":"abc","method":"frobnicate","params":{}}\n'
            b'{"id":null,"method":"nope"}\n'
            b'{"v":2,"id":9,"method":"hello"}\n'
            b'{"id":10,"method":"hello"}\r\n'
            b'\n'
            b'{"method":"hello"}\n')
        self.assertEqual(len(lines), 5, lines)
        self.assertEqual(lines[0]["id"], "abc")
        self.assertEqual(lines[0]["error"]["code"], "not_found")
        self.assertIsNone(lines[1]["id"])
        self.assertEqual(lines[1]["error"]["code"], "not_found")
        self.assertEqual(lines[2]["id"], 9)
        self.assertEqual(lines[2]["error"]["code"], "unsupported")
        self.assertEqual(lines[3]["id"], 10)          # trailing \r tolerated
        self.assertIn("result", lines[3])
        self.assertIn("result", lines[4])             # id optional
        self.assertIsNone(lines[4].get("id"))
        self.assert_intact()

    def test_line_over_1mib_is_too_large_and_connection_closed(self):
        d = self.d
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(d.socket_path)
            s.settimeout(10)
            try:
                s.sendall(b"x" * (2 << 20))  # 2 MiB, no newline
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon may close before we finish: fine
            buf, closed = b"", False
            deadline = time.monotonic() + 10 * harness.TIMEOUT_SCALE
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                buf += chunk
        self.assertTrue(closed, "connection was not closed")
        first = json.loads(buf.split(b"\n")[0])
        self.assertEqual(first["error"]["code"], "too_large", buf[:300])
        # A long line still below 1 MiB is just a request.
        line = json.dumps({"id": 1, "method": "hello",
                           "params": {"pad": "a" * 1000000}}).encode()
        lines, closed = d.raw_send(line + b"\n" + b'{"id":2,"method":"hello"}\n')
        self.assertEqual([ln["id"] for ln in lines], [1, 2], lines)
        self.assertEqual(lines[0]["error"]["code"], "invalid_argument")
        self.assertIn("result", lines[1])
        self.assert_intact()

    def test_client_sending_half_a_request_then_disconnecting(self):
        d = self.d
        baseline = d.result("status")["control"]["connections"]
        for half in (b'{"v":1,"id":1,"meth', b'{"id":2,"method":"exec",'
                     b'"params":{"uuid":"' + self.w20.encode() + b'","comm',
                     b"\x00\x01\x02"):
            d.raw_send(half, read=False)
        # and one that closes its write side and waits for an answer
        lines, closed = d.raw_send(b'{"id":3,"method":"hel')
        self.assertEqual(lines, [])
        self.assertTrue(closed)
        harness.wait_until(
            lambda: d.result("status")["control"]["connections"] == baseline,
            5, what="half-request connections to be dropped")
        self.assert_intact()

    def test_client_disconnecting_after_exec_still_runs_the_command(self):
        d = self.d
        u = self.fresh20()
        digest = hashlib.sha256(b"fire and forget").digest()
        d.raw_send(json.dumps({"id": 1, "method": "exec", "params": {
            "uuid": u, "command": T.hexs(T.pcr_extend(16, digest))}}).encode()
            + b"\n", read=False)
        harness.wait_until(lambda: self.counters(u)["commands"] >= 2, 5 * harness.TIMEOUT_SCALE,
                           what="the orphaned command to run")
        self.assertEqual(T.parse_pcr_read(d.exec(u, T.pcr_read(16))).digest,
                         T.pcr_extend_expected(bytes(32), digest))
        d.result("remove", uuid=u)
        self.assert_intact()

    def test_client_that_never_reads_responses(self):
        d = self.d
        # (a) cheap requests with large answers: the daemon must not buffer
        # without bound (it may drop the client) and stays responsive.
        rss0 = rss_kib(d.pid)
        flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(flood.close)
        flood.connect(d.socket_path)
        flood.settimeout(3)
        batch = b'{"id":1,"method":"list"}\n' * 1000
        sent = 0
        dropped = False
        try:
            for _ in range(40):
                flood.sendall(batch)
                sent += 1000
                self.assertTrue(d.hello_ok())
        except (BrokenPipeError, ConnectionResetError):
            dropped = True
        except socket.timeout:
            pass  # the daemon stopped reading from us: fine
        rss1 = rss_kib(d.pid)
        print("\n  never-reading client: %d list requests sent, dropped=%s, "
              "daemon RSS %d -> %d KiB" % (sent, dropped, rss0, rss1),
              file=sys.stderr)
        self.assertLess(rss1 - rss0, 128 * 1024,
                        "daemon buffers unread responses without bound")
        flood.close()

        # (b) pipelined TPM commands never read: other instances still get
        # their commands through promptly.
        flood2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(flood2.close)
        flood2.connect(d.socket_path)
        flood2.settimeout(2)
        req = (json.dumps({"id": 1, "method": "exec", "params": {
            "uuid": self.w20, "command": T.hexs(T.get_random(32))}})
            + "\n").encode() * 500
        try:
            for _ in range(10):
                flood2.sendall(req)
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass
        t0 = time.monotonic()
        with harness.Client(d.socket_path, 30) as c:
            self.assertEqual(len(T.parse_tpm12_get_random(
                c.exec(self.w12, T.tpm12_get_random(8)))), 8)
            c.result("hello")
        # The point is "promptly", not a number: the bound stretches under
        # valgrind (VTPMD_TIMEOUT_SCALE).
        self.assertLess(time.monotonic() - t0, 5 * harness.TIMEOUT_SCALE)
        flood2.close()
        harness.wait_until(
            lambda: d.result("status")["engine"]["outstanding"] == 0, 30 * harness.TIMEOUT_SCALE,
            what="the abandoned commands to drain")
        self.assert_intact()


if __name__ == "__main__":
    harness.main()
