"""Observability: stats and Prometheus metrics (control socket and the
loopback HTTP listener, parsed with prometheus_client's own parser), JSON
and human log lines with the per-instance rate limit, systemd's notify
protocol (READY/STATUS/WATCHDOG/STOPPING over a real NOTIFY_SOCKET), and
vtpmd --check-config."""

import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # a non-Debian python3 first on PATH: use Debian's package
    import sys
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families

import harness as H
import tpmcmd as T


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition, via the real parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def http(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


class MetricsTest(H.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.d = cls.start_class_daemon(extra_args=["--metrics-listen", "127.0.0.1:%d" % cls.port])
        cls.u = cls.d.result("add", auto_startup=True)["uuid"]
        for i in range(3):
            cls.d.exec(cls.u, T.pcr_extend(16, bytes([i]) * 32))
        for _ in range(2):
            cls.d.exec(cls.u, T.get_random(8))
        bad = cls.d.call("exec", uuid=cls.u, command="80010000000c0000017b00")  # size field lies
        assert "error" in bad

    def test_stats_global_and_instance(self):
        s = self.d.result("stats")
        classes = s["commands"]["by_class"]
        self.assertEqual(classes["pcr"]["count"], 3)
        self.assertEqual(classes["random"]["count"], 2)
        self.assertGreater(classes["pcr"]["p99_us"], 0)
        self.assertGreaterEqual(s["errors"]["by_kind"]["invalid_argument"], 1)
        self.assertEqual(s["instances"]["running"], 1)
        self.assertGreaterEqual(s["persistence"]["writes"], 1)  # add is durable before it answers
        self.assertGreaterEqual(s["persistence"]["lag"]["count"], 1)
        one = self.d.result("stats", uuid=self.u)
        self.assertEqual(one["uuid"], self.u)
        self.assertEqual(one["commands"], 5)
        self.assertEqual(one["errors"], 1)
        self.assertEqual(one["queue"], {"engine": 0, "throttled": 0})
        err = self.d.call("stats", uuid="00000000-0000-4000-8000-000000000000")
        self.assertEqual(err["error"]["code"], "not_found")

    def test_vtpmctl_stats(self):
        out = self.d.ctl_ok("stats")
        self.assertRegex(out, r"(?m)^pcr\s+3\s")
        self.assertRegex(out, r"(?m)^random\s+2\s")
        self.assertIn("invalid_argument 1", out)
        as_json = json.loads(self.d.ctl_ok("stats", "--json"))
        self.assertEqual(as_json["commands"]["by_class"]["pcr"]["count"], 3)
        self.assertIn("commands: 5", self.d.ctl_ok("stats", self.u))
        text = self.d.ctl_ok("metrics", "--instances")
        self.assertEqual(samples(text)[("vtpmd_instance_commands_total", frozenset({("instance", self.u)}))], 5)

    def check_exposition(self, text, per_instance):
        m = samples(text)
        pcr = frozenset({("class", "pcr")})
        self.assertEqual(m[("vtpmd_command_duration_seconds_count", pcr)], 3)
        self.assertEqual(m[("vtpmd_command_duration_seconds_bucket", pcr | {("le", "+Inf")})], 3)
        self.assertGreater(m[("vtpmd_command_duration_seconds_sum", pcr)], 0)
        self.assertEqual(m[("vtpmd_command_duration_seconds_count", frozenset({("class", "random")}))], 2)
        self.assertGreaterEqual(m[("vtpmd_errors_total", frozenset({("kind", "invalid_argument")}))], 1)
        self.assertEqual(m[("vtpmd_instances", frozenset({("state", "running")}))], 1)
        self.assertEqual(m[("vtpmd_queue_depth", frozenset({("queue", "engine")}))], 0)
        self.assertGreaterEqual(m[("vtpmd_persistence_lag_seconds_count", frozenset())], 1)
        self.assertTrue(("vtpmd_engine_swaps_total", frozenset({("shard", "engine-thread")})) in m)
        has_instance = ("vtpmd_instance_commands_total", frozenset({("instance", self.u)})) in m
        self.assertEqual(has_instance, per_instance)
        # Buckets are cumulative and end at the count.
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items()
                         if k[0] == "vtpmd_command_duration_seconds_bucket" and ("class", "pcr") in k[1])
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))

    def test_metrics_through_control_socket(self):
        r = self.d.result("metrics")
        self.assertTrue(r["content_type"].startswith("text/plain; version=0.0.4"))
        self.check_exposition(r["text"], per_instance=False)
        self.check_exposition(self.d.result("metrics", instances=True)["text"], per_instance=True)

    def test_metrics_over_http(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as resp:
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
            self.check_exposition(resp.read().decode(), per_instance=False)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics?instances=1" % self.port, timeout=5) as resp:
            self.check_exposition(resp.read().decode(), per_instance=True)

    def test_http_errors(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("http://127.0.0.1:%d/other" % self.port, timeout=5)
        self.assertEqual(e.exception.code, 404)
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(
                "http://127.0.0.1:%d/metrics" % self.port, data=b"x", method="POST"), timeout=5)
        self.assertEqual(e.exception.code, 405)
        self.assertEqual(e.exception.headers["Allow"], "GET, HEAD")
        head = http(self.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(head.endswith(b"\r\n\r\n"))  # headers only
        self.assertTrue(http(self.port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        # Just over the 8 KiB limit, so that the server has read it all when
        # it answers (unread bytes at close would reset the connection).
        big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 8200 + b"\r\n\r\n"
        self.assertTrue(http(self.port, big).startswith(b"HTTP/1.1 431 "))
        # A client that never finishes its request holds only its own
        # connection: others are served meanwhile.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as idle:
            idle.sendall(b"GET /metr")
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as resp:
                self.assertEqual(resp.status, 200)
        self.d.hello_ok()

    def test_listener_is_loopback_only(self):
        p = subprocess.run([H.VTPMD, "--metrics-listen", "0.0.0.0:%d" % free_port(), "--check-config"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        self.assertIn("not a loopback address", p.stderr)


class LogTest(H.DaemonTestCase):
    RESETS = 30

    def flood(self, fmt):
        d = self.start_daemon(extra_args=["--log-format", fmt, "--log-rate-limit", "2", "--log-burst", "3"])
        noisy = d.result("add", auto_startup=True)["uuid"]
        quiet = d.result("add", auto_startup=True)["uuid"]
        for _ in range(self.RESETS):
            d.result("power", uuid=noisy, action="reset")
        d.result("power", uuid=quiet, action="reset")
        time.sleep(1.5)  # the once-a-second report of what was dropped
        d.stop()
        return d, noisy, quiet, d.log()

    def test_json_lines_and_rate_limit(self):
        d, noisy, quiet, log = self.flood("json")
        records = []
        for line in log.splitlines():
            if line.startswith("==== "):
                continue  # the harness's own marker
            rec = json.loads(line)
            self.assertTrue({"ts", "level", "msg", "pid"} <= rec.keys(), rec)
            self.assertRegex(rec["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            records.append(rec)
        shown = [r for r in records if r.get("instance") == noisy and "powered on" in r["msg"]]
        dropped = sum(int(r["suppressed"]) for r in records if r.get("instance") == noisy and "suppressed" in r)
        self.assertLess(len(shown), self.RESETS)
        self.assertGreater(dropped, 0)
        self.assertEqual(len(shown) + dropped, self.RESETS)
        # Another instance's lines are not affected by the flood.
        self.assertEqual(len([r for r in records if r.get("instance") == quiet and "powered on" in r["msg"]]), 1)
        self.assertTrue(any(r["level"] == "info" and "ready" in r["msg"] and "instance" not in r for r in records))

    def test_human_lines_and_rate_limit(self):
        d, noisy, quiet, log = self.flood("human")
        shown = len(re.findall(r"DEBUG instance=%s powered on" % noisy, log))
        dropped = sum(int(n) for n in re.findall(
            r"WARN instance=%s suppressed (\d+) log line\(s\).* suppressed=\d+" % noisy, log))
        self.assertGreater(dropped, 0)
        self.assertEqual(shown + dropped, self.RESETS)
        self.assertEqual(len(re.findall(r"instance=%s powered on" % quiet, log)), 1)


class SystemdNotifyTest(H.DaemonTestCase):
    def test_ready_watchdog_stopping(self):
        d = H.Daemon()
        self.addCleanup(d.cleanup)
        self._daemons.append(d)
        path = os.path.join(d.tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        sock.settimeout(10)
        d.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        first = sock.recv(4096).decode()
        self.assertTrue(first.startswith("READY=1\n"), first)
        self.assertIn("STATUS=serving 0 instance(s); control socket " + d.socket_path, first)
        # Ready means the control socket answers.
        d.hello_ok()
        start = time.monotonic()
        pings = 0
        while time.monotonic() - start < 1.0:
            if sock.recv(4096) == b"WATCHDOG=1":
                pings += 1
        self.assertGreaterEqual(pings, 6)  # every 100 ms (half of 200 ms)
        self.assertLessEqual(pings, 13)
        # From here on a thread reads the socket as systemd does: a unix
        # datagram queue holds only net.unix.max_dgram_qlen (10) messages,
        # and a slow add (valgrind: seconds) would fill it with pings.
        messages = []
        sock.settimeout(0.5)
        stop_reading = threading.Event()

        def read_all():
            while not stop_reading.is_set():
                try:
                    messages.append(sock.recv(4096).decode())
                except socket.timeout:
                    pass
        reader = threading.Thread(target=read_all)
        reader.start()
        try:
            # The workers vtpmd spawns do not inherit the socket.
            d.result("add", tpm="1.2")
            for pid in d.worker_pids():
                with open("/proc/%d/environ" % pid, "rb") as f:
                    self.assertNotIn(b"NOTIFY_SOCKET", f.read())
            d.stop()
        finally:
            stop_reading.set()
            reader.join()
        sock.setblocking(False)
        try:  # what arrived after the reader's last look
            while True:
                messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            pass
        stopping = [m for m in messages if m.startswith("STOPPING=1")]
        self.assertEqual(len(stopping), 1, messages)
        self.assertIn("STATUS=shutting down: saving 1 instance(s)", stopping[0])

    def test_unusable_notify_socket_is_a_clear_error(self):
        d = H.Daemon()
        self.addCleanup(d.cleanup)
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(d.tmp, "nobody-listens"))
        p = subprocess.run([H.VTPMD, "--state-dir", d.state_dir, "--control-socket", d.socket_path],
                           env=env, capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 1)
        self.assertIn("NOTIFY_SOCKET", p.stderr)


class ProgressTest(H.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()

    def listed(self):
        return {i["uuid"] for i in self.d.result("list")["instances"]}

    def test_bulk_add_streams_progress_to_those_who_ask(self):
        with self.d.client() as c:
            c.send_line({"v": 1, "id": "bulk", "method": "add", "progress": True,
                         "params": {"count": 3, "auto_startup": True}})
            lines = [c.read_line() for _ in range(4)]
        notes, reply = lines[:3], lines[3]
        self.assertEqual([n["progress"]["done"] for n in notes], [1, 2, 3])
        self.assertTrue(all(n["id"] == "bulk" and n["progress"]["total"] == 3 for n in notes))
        added = reply["result"]["added"]
        self.assertEqual([n["progress"]["uuid"] for n in notes], added)
        self.assertTrue(set(added) <= self.listed())
        # Without "progress": the reply only.
        with self.d.client() as c:
            c.send_line({"v": 1, "id": 2, "method": "add", "params": {"count": 2}})
            only = c.read_line()
            self.assertEqual(len(only["result"]["added"]), 2)
            c.send_line({"v": 1, "id": 3, "method": "hello"})
            self.assertEqual(c.read_line()["id"], 3)  # nothing else was queued before it

    def test_provisioning_add_streams_its_steps(self):
        with self.d.client() as c:
            c.send_line({"v": 1, "id": "prov", "method": "add", "progress": True,
                         "params": {"ek": ["rsa", "ecc"], "ek_certificates": True, "pcr_banks": ["sha256"]}})
            lines = []
            while True:
                lines.append(c.read_line())
                if "progress" not in lines[-1]:
                    break
        reply, notes = lines[-1], [n["progress"] for n in lines[:-1]]
        uuid = reply["result"]["uuid"]
        self.assertEqual([n["step"].split(" (")[0] for n in notes],
                         ["PCR banks allocated", "rsa EK created", "ecc EK created", "rsa EK certificate issued",
                          "ecc EK certificate issued"])
        self.assertTrue(all(n["uuid"] == uuid for n in notes))
        elapsed = [n["elapsed_ms"] for n in notes]
        self.assertEqual(elapsed, sorted(elapsed))
        # vtpmctl draws them on a terminal, then prints the UUID.
        tty = subprocess.run(["script", "-qec", "%s --socket %s add --ek rsa --ek-cert" % (H.VTPMCTL, self.d.socket_path),
                              "/dev/null"], capture_output=True, timeout=60)
        self.assertEqual(tty.returncode, 0, tty.stdout)
        self.assertRegex(tty.stdout, rb"^\rprovisioning: rsa EK created \(\d+ ms\)\s*\rprovisioning: rsa EK certificate "
                                     rb"issued \(\d+ bytes\) \(\d+ ms\)\s*\r\n[0-9a-f-]{36}")

    def read_until_reply(self, c):
        lines = []
        while True:
            lines.append(c.read_line())
            if "progress" not in lines[-1]:
                return lines[-1], [n["progress"] for n in lines[:-1]]

    def test_import_streams_its_steps(self):
        uuid = self.d.result("add", tpm="1.2")["uuid"]
        key = os.urandom(32)
        bundle = self.d.result("export", uuid=uuid, transport_key=key.hex())["bundle"]
        self.d.result("remove", uuid=uuid)
        with self.d.client() as c:
            c.send_line({"v": 1, "id": "imp", "method": "import", "progress": True,
                         "params": {"bundle": bundle, "transport_key": key.hex()}})
            reply, notes = self.read_until_reply(c)
        self.assertEqual(reply["result"]["uuid"], uuid)
        self.assertEqual([n["step"] for n in notes], ["opened", "loaded", "durable"])
        self.assertTrue(all(n["uuid"] == uuid for n in notes))
        elapsed = [n["elapsed_ms"] for n in notes]
        self.assertEqual(elapsed, sorted(elapsed))
        # A bundle that does not open: the error, no step.
        with self.d.client() as c:
            c.send_line({"v": 1, "id": "bad", "method": "import", "progress": True,
                         "params": {"bundle": bundle, "transport_key": os.urandom(32).hex()}})
            reply, notes = self.read_until_reply(c)
        self.assertEqual(notes, [])
        self.assertIn("error", reply)
        # vtpmctl draws the steps on a terminal.
        self.d.result("remove", uuid=uuid)
        path = os.path.join(self.d.tmp, "bundle.vtpmx")
        with open(path, "wb") as f:
            f.write(bytes.fromhex(bundle))
        key_path = os.path.join(self.d.tmp, "transport.key")
        with open(key_path, "wb") as f:
            f.write(key)
        tty = subprocess.run(["script", "-qec", "%s --socket %s import %s --transport-key %s" % (
            H.VTPMCTL, self.d.socket_path, path, key_path), "/dev/null"], capture_output=True, timeout=60)
        self.assertEqual(tty.returncode, 0, tty.stdout)
        self.assertRegex(tty.stdout, rb"^\rimporting: opened \(\d+ ms\)\s*\rimporting: loaded \(\d+ ms\)\s*"
                                     rb"\rimporting: durable \(\d+ ms\)\s*\r\nimported " + uuid.encode())

    def test_bulk_add_refuses_what_names_one_instance(self):
        before = self.listed()
        for params in ({"count": 2, "uuid": "6f0c5d1e-8a4b-4c2d-9e3f-0123456789ab"},
                       {"count": 2, "swtpm_path": os.path.join(self.d.tmp, "x")},
                       {"count": 0}, {"count": 10001}, {"count": "3"}):
            err = self.d.call("add", **params)
            self.assertEqual(err["error"]["code"], "invalid_argument", params)
        self.assertEqual(self.listed(), before)

    def test_vtpmctl_progress_only_on_a_terminal(self):
        code, out, err = self.d.ctl("add", "--count", "3")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(out.split()), 3)
        self.assertEqual(err, "")  # not a terminal: no progress drawn
        tty = subprocess.run(["script", "-qec", "%s --socket %s add --count 2" % (H.VTPMCTL, self.d.socket_path),
                              "/dev/null"], capture_output=True, timeout=60)
        self.assertEqual(tty.returncode, 0, tty.stdout)
        # One line redrawn in place, ended before the UUIDs (the terminal
        # turns "\n" into "\r\n").
        self.assertTrue(tty.stdout.startswith(b"\radded 1/2\radded 2/2\r\n"), tty.stdout)
        uuids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", tty.stdout.decode())
        self.assertEqual(len(uuids), 2)
        self.assertTrue(set(uuids) <= self.listed())


class CheckConfigTest(H.DaemonTestCase):
    def run_check(self, *args):
        p = subprocess.run([H.VTPMD, "--check-config"] + list(args), capture_output=True, text=True, timeout=20)
        return p.returncode, p.stdout, p.stderr

    def test_fresh_configuration_is_ok_and_untouched(self):
        d = H.Daemon()
        self.addCleanup(d.cleanup)
        code, out, _ = self.run_check("--state-dir", d.state_dir, "--control-socket", d.socket_path,
                                      "--log-format", "json")
        self.assertEqual(code, 0, out)
        self.assertIn("configuration OK", out)
        self.assertRegex(out, r"ok\s+state directory\s+%s \(will be created" % re.escape(d.state_dir))
        self.assertRegex(out, r"ok\s+root of trust\s+file \(auto\)")
        self.assertFalse(os.path.exists(d.state_dir))
        self.assertFalse(os.path.exists(os.path.dirname(d.socket_path)))

    def test_problems_are_named(self):
        d = self.start_daemon()
        before = sorted(os.listdir(d.state_dir))
        # The running daemon's socket, and its state without the root key.
        os.rename(os.path.join(d.state_dir, "root.key"), os.path.join(d.tmp, "root.key.moved"))
        code, out, _ = self.run_check("--state-dir", d.state_dir, "--control-socket", d.socket_path)
        os.rename(os.path.join(d.tmp, "root.key.moved"), os.path.join(d.state_dir, "root.key"))
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r"FAIL\s+control socket\s+.*another vtpmd is listening")
        self.assertRegex(out, r"FAIL\s+root of trust\s+key file .*root.key is missing")
        self.assertIn("2 problem(s)", out)
        self.assertEqual(sorted(os.listdir(d.state_dir)), before)
        blocked = os.path.join(d.tmp, "a-file")
        open(blocked, "w").close()
        code, out, _ = self.run_check("--state-dir", os.path.join(blocked, "state"),
                                      "--control-socket", os.path.join(d.tmp, "other.sock"))
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r"FAIL\s+state directory")
        code, _, err = self.run_check("--log-format", "xml")
        self.assertEqual(code, 2)
        self.assertIn("unknown log format 'xml'", err)


if __name__ == "__main__":
    unittest.main()
