"""Integration-test harness for vtpmd (stdlib only).

* :class:`Daemon` starts ``build/src/vtpmd`` (build dir from the environment
  variable ``VTPMD_BUILD_DIR``, default ``/work/main/build``) in a fresh
  temporary directory holding its state directory, control socket and log.
  It is a context manager; ``stop()`` (SIGTERM, exit status 0 expected),
  ``kill()`` (SIGKILL) and ``restart()`` (same state directory) control it;
  ``start(env=...)`` / ``restart(env=...)`` add environment variables for
  that one run (e.g. ``{"VTPMD_CRASH_AT": "blob-synced:3"}``),
  ``call()`` talks JSON over a persistent connection, ``client()`` opens more
  connections, ``raw_send()`` sends raw bytes on a fresh connection and
  ``ctl()`` runs vtpmctl against the daemon.
* :class:`Client` is one control connection (newline-delimited JSON).
* :class:`DaemonTestCase` is a ``unittest.TestCase`` base that starts daemons
  with automatic cleanup (also for class-wide daemons) and prints the
  daemon log of every daemon the test used when the test fails.

Processes are started in their own process group (``start_new_session``),
so the daemon and the vtpmd-engine workers it spawns can be found and
killed by that group id at cleanup, even when the test failed.  Every daemon
ever started is also registered with an ``atexit`` hook.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tpmcmd as T  # noqa: E402

BUILD_DIR = os.environ.get("VTPMD_BUILD_DIR", "/work/main/build")
VTPMD = os.path.join(BUILD_DIR, "src", "vtpmd")
VTPMD_ENGINE = os.path.join(BUILD_DIR, "src", "vtpmd-engine")
VTPMCTL = os.path.join(BUILD_DIR, "tools", "vtpmctl", "vtpmctl")
STATE_EDITOR = os.path.join(BUILD_DIR, "tests", "support", "state_editor")

# VTPMD_WRAPPER runs the daemon under a tool, e.g. scripts/valgrind.sh sets
# "valgrind --error-exitcode=99 ...": a clean stop() (exit 0) then also
# means no memory errors. Timeouts stretch by VTPMD_TIMEOUT_SCALE.
WRAPPER = os.environ.get("VTPMD_WRAPPER", "").split()
TIMEOUT_SCALE = float(os.environ.get("VTPMD_TIMEOUT_SCALE", "1"))
START_TIMEOUT = 10.0 * TIMEOUT_SCALE
STOP_TIMEOUT = 30.0 * TIMEOUT_SCALE
LOG_TAIL_LINES = 400

_LIVE = set()  # every Daemon with processes possibly alive, for atexit


def _atexit_cleanup():
    for d in list(_LIVE):
        try:
            d.cleanup()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_atexit_cleanup)


# --------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------


def pids_in_group(pgid):
    """PIDs of live (non-zombie) processes whose process group is *pgid*."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # fields after the ")" of comm: state ppid pgrp ...
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) >= 3 and int(rest[2]) == pgid and rest[0] != "Z":
            out.append(int(name))
    return out


def child_pids(pid):
    """Direct children of *pid* (non-zombie)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) >= 2 and int(rest[1]) == pid and rest[0] != "Z":
            out.append(int(name))
    return out


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll *predicate* until it returns a truthy value; return that value.
    Raises AssertionError after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


# --------------------------------------------------------------------------
# control connection
# --------------------------------------------------------------------------


class DaemonError(AssertionError):
    """A control call that was expected to succeed returned an error."""

    def __init__(self, method, params, error):
        super().__init__("%s %s -> error %s: %s" % (
            method, json.dumps(params)[:200], error.get("code"),
            error.get("message")))
        self.code = error.get("code")
        self.error = error


class Client:
    """One persistent control connection. Thread-safe (one call at a time).

    ``call()`` returns the whole response object (``{"v","id","result"}`` or
    ``{"v","id","error"}``); ``result()`` returns the result or raises
    :class:`DaemonError`.
    """

    def __init__(self, path, timeout=120.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout * TIMEOUT_SCALE)
        self.sock.connect(path)
        self._buf = b""
        self._next_id = 1
        self._lock = threading.Lock()
        self._stash = {}  # responses read while waiting for another id

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- framing
    def send_line(self, obj):
        data = obj if isinstance(obj, (bytes, bytearray)) else \
            json.dumps(obj).encode()
        self.sock.sendall(bytes(data) + b"\n")

    def read_line(self):
        """Next response line, parsed; None at EOF."""
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def new_id(self):
        with self._lock:
            i = self._next_id
            self._next_id += 1
            return i

    def send(self, method, params=None, req_id=None):
        """Send one request without waiting; returns its id."""
        if req_id is None:
            req_id = self.new_id()
        msg = {"v": 1, "id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send_line(msg)
        return req_id

    def wait(self, req_id):
        """Read until the response with *req_id* arrives (others stashed)."""
        if req_id in self._stash:
            return self._stash.pop(req_id)
        while True:
            resp = self.read_line()
            if resp is None:
                raise ConnectionError("daemon closed the connection while "
                                      "waiting for id %r" % (req_id,))
            if resp.get("id") == req_id:
                return resp
            self._stash[resp.get("id")] = resp

    def call(self, method, **params):
        with self._lock:
            req_id = self._next_id
            self._next_id += 1
            self.send(method, params, req_id)
            return self.wait(req_id)

    def result(self, method, **params):
        resp = self.call(method, **params)
        if "error" in resp:
            raise DaemonError(method, params, resp["error"])
        return resp["result"]

    # -- TPM helpers
    def exec_full(self, uuid, command, **kw):
        """exec -> full result dict (response hex, rc, timing)."""
        return self.result("exec", uuid=uuid, command=T.hexs(command), **kw)

    def exec(self, uuid, command, **kw):
        """exec -> response bytes."""
        return bytes.fromhex(self.exec_full(uuid, command, **kw)["response"])


# --------------------------------------------------------------------------
# daemon
# --------------------------------------------------------------------------


class Daemon:
    """A vtpmd in its own temp dir. Use as a context manager.

    ``extra_args``: additional vtpmd flags (e.g. ``["--tpm12-slice-ms",
    "100"]``).  The log (stderr+stdout of every run, appended across
    restarts) is ``self.log_path``.
    """

    def __init__(self, extra_args=(), name="vtpmd", log_level="debug"):
        self.extra_args = list(extra_args)
        self.name = name
        self.log_level = log_level
        self.tmp = tempfile.mkdtemp(prefix="vtpmd-it-")
        self.state_dir = os.path.join(self.tmp, "state")
        self.socket_path = os.path.join(self.tmp, "run", "control.sock")
        self.log_path = os.path.join(self.tmp, "vtpmd.log")
        self.proc = None
        self.pgids = []  # one per run (each run is its own process group)
        self._client = None
        self._clients = []
        self.saved_log = None  # log text kept after cleanup()
        _LIVE.add(self)

    # -- lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def start(self, env=None):
        """Start vtpmd and wait until it answers ``hello``.

        *env*: extra environment variables (dict) for this run only, on top
        of the test's own environment; a later start() without *env* runs
        without them."""
        for path in (VTPMD, VTPMD_ENGINE, VTPMCTL):
            if not os.access(path, os.X_OK):
                raise RuntimeError("%s is missing; build first (ninja -C %s)"
                                   % (path, BUILD_DIR))
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("daemon already running")
        args = WRAPPER + [VTPMD, "--state-dir", self.state_dir,
                          "--control-socket", self.socket_path,
                          "--log-level", self.log_level] + self.extra_args
        child_env = None
        if env:
            child_env = dict(os.environ)
            child_env.update({k: str(v) for k, v in env.items()})
        with open(self.log_path, "ab") as log:
            log.write(("==== %s: %s%s\n" % (
                time.strftime("%H:%M:%S"),
                "".join("%s=%s " % kv for kv in sorted((env or {}).items())),
                " ".join(args))).encode())
            log.flush()
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True, env=child_env)
        self.pgids.append(self.proc.pid)
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("vtpmd exited with %s during start-up\n%s"
                                     % (self.proc.returncode, self.log()))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect(self.socket_path)
                    s.sendall(b'{"id":0,"method":"hello"}\n')
                    if s.recv(4096):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("vtpmd did not accept on %s within %.0f s"
                                     "\n%s" % (self.socket_path,
                                               START_TIMEOUT, self.log()))
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _close_clients(self):
        for c in self._clients:
            c.close()
        self._clients = []
        self._client = None

    def worker_pids(self):
        """vtpmd-engine worker processes of the current run."""
        if not self.running():
            return []
        return child_pids(self.proc.pid)

    def stop(self, timeout=STOP_TIMEOUT, expect_code=0):
        """SIGTERM; assert exit status *expect_code* within *timeout* s."""
        self._close_clients()
        assert self.running(), "daemon is not running"
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_groups()
            raise AssertionError("vtpmd did not exit within %.0f s of SIGTERM"
                                 % timeout) from None
        if expect_code is not None and code != expect_code:
            raise AssertionError("vtpmd exited with %d after SIGTERM, "
                                 "expected %d\n%s" % (code, expect_code,
                                                      self.log()))
        return code

    def kill(self):
        """SIGKILL the daemon only (its workers must notice and exit)."""
        self._close_clients()
        if self.running():
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, extra_args=None, env=None):
        """Start again on the same state dir (after stop() or kill()).
        *env*: extra environment variables for this run only (see start())."""
        if self.running():
            raise RuntimeError("restart() needs a stopped daemon")
        if extra_args is not None:
            self.extra_args = list(extra_args)
        return self.start(env=env)

    def _kill_groups(self):
        for pgid in self.pgids:
            for pid in pids_in_group(pgid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def group_pids(self):
        """Live processes (daemon and workers) of every run so far."""
        out = []
        for pgid in self.pgids:
            out.extend(pids_in_group(pgid))
        return out

    def cleanup(self):
        """Kill everything still alive, keep the log text, remove tmp."""
        self._close_clients()
        if self.running():
            self.proc.kill()
        self._kill_groups()
        try:
            wait_until(lambda: not self.group_pids(), 10, what="processes")
        except AssertionError:
            pass
        if os.path.isdir(self.tmp):
            self.saved_log = self.log()
            shutil.rmtree(self.tmp, ignore_errors=True)
        _LIVE.discard(self)

    def log(self):
        if self.saved_log is not None and not os.path.exists(self.log_path):
            return self.saved_log
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    # -- control API
    def client(self, timeout=120.0):
        c = Client(self.socket_path, timeout)
        self._clients.append(c)
        return c

    def _default_client(self):
        if self._client is None:
            self._client = self.client()
        return self._client

    def call(self, method, **params):
        """One request on the persistent connection -> response dict."""
        return self._default_client().call(method, **params)

    def result(self, method, **params):
        """Like call() but returns the result, raising DaemonError."""
        return self._default_client().result(method, **params)

    def exec(self, uuid, command, **kw):
        return self._default_client().exec(uuid, command, **kw)

    def exec_full(self, uuid, command, **kw):
        return self._default_client().exec_full(uuid, command, **kw)

    def hello_ok(self):
        """hello on a brand-new connection succeeds."""
        with Client(self.socket_path, 10) as c:
            r = c.result("hello")
        return r.get("daemon") == "vtpmd"

    def raw_send(self, data, read=True, shutdown_write=True, timeout=5.0):
        """Send raw bytes on a fresh connection.

        Returns (lines, closed): the response lines read (parsed as JSON when
        possible, else bytes) until EOF or *timeout*; closed is True when
        the daemon closed the connection.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.socket_path)
            s.sendall(data)
            if not read:
                return [], False
            if shutdown_write:
                s.shutdown(socket.SHUT_WR)
            s.settimeout(timeout)
            buf = b""
            closed = False
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                buf += chunk
            lines = []
            for raw in buf.split(b"\n"):
                if not raw:
                    continue
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    lines.append(raw)
            return lines, closed

    def ctl(self, *args, input=None, timeout=60):  # noqa: A002
        """Run vtpmctl --socket PATH ARGS -> (exit code, stdout, stderr).
        Under VTPMD_TIMEOUT_SCALE both vtpmctl's own answer timeout (60 s)
        and *timeout* stretch."""
        scaled = ["--timeout", "%d" % (60 * TIMEOUT_SCALE)] if TIMEOUT_SCALE != 1 else []
        p = subprocess.run([VTPMCTL, "--socket", self.socket_path] + scaled
                           + [str(a) for a in args],
                           input=input, capture_output=True, text=True,
                           timeout=timeout * TIMEOUT_SCALE)
        return p.returncode, p.stdout, p.stderr

    def ctl_ok(self, *args, **kw):
        code, out, err = self.ctl(*args, **kw)
        if code != 0:
            raise AssertionError("vtpmctl %s -> exit %d: %s%s" % (
                " ".join(map(str, args)), code, out, err))
        return out

    # -- files
    def state_file(self, uuid):
        """The instance's newest state file. Its blobs alternate between two
        slots, <uuid>.a.vtpm and <uuid>.b.vtpm; the sealed header is in
        clear and carries the generation (u64 at offset 28, see
        docs/state-format.md), so the newest is the higher generation."""
        best, best_generation = None, -1
        for slot in "ab":
            path = os.path.join(self.state_dir, "%s.%s.vtpm" % (uuid, slot))
            try:
                with open(path, "rb") as f:
                    header = f.read(36)
            except FileNotFoundError:
                continue
            generation = (struct.unpack(">Q", header[28:36])[0]
                          if len(header) == 36 and header[:8] == b"VTPMSEAL" else 0)
            if generation > best_generation:
                best, best_generation = path, generation
        return best or os.path.join(self.state_dir, uuid + ".a.vtpm")


# --------------------------------------------------------------------------
# unittest integration
# --------------------------------------------------------------------------


class DaemonTestCase(unittest.TestCase):
    """Base class: start_daemon() / start_class_daemon() with cleanup and
    the daemon log printed (tail) when a test fails or errors."""

    _class_daemons = []

    @classmethod
    def start_class_daemon(cls, *args, **kw):
        d = Daemon(*args, **kw)
        cls.addClassCleanup(d.cleanup)
        cls._class_daemons = cls._class_daemons + [d]
        d.start()
        return d

    def start_daemon(self, *args, **kw):
        d = Daemon(*args, **kw)
        self.addCleanup(d.cleanup)
        self._daemons.append(d)
        d.start()
        return d

    def run(self, result=None):
        self._daemons = []
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for d in self._daemons + list(type(self)._class_daemons):
                lines = d.log().splitlines()
                cut = lines[-LOG_TAIL_LINES:]
                sys.stderr.write("\n----- %s log of %s (%s)%s -----\n" % (
                    d.name, self.id(), d.log_path,
                    "" if len(cut) == len(lines)
                    else ", last %d of %d lines" % (len(cut), len(lines))))
                sys.stderr.write("\n".join(cut) + "\n")
                sys.stderr.write("----- end of log -----\n")
        return out

    # -- assertions
    def assertErrorCode(self, resp, code, msg=None):
        self.assertIn("error", resp, msg or "expected error %s, got %r"
                      % (code, resp))
        self.assertEqual(resp["error"]["code"], code,
                         msg or "unexpected error: %r" % (resp,))


def _on_sigterm(signum, frame):
    # e.g. a meson timeout: unwind like ^C so that the atexit hook kills
    # every daemon and removes the temp dirs.
    raise KeyboardInterrupt("SIGTERM")


def main():
    """unittest.main() with verbosity 2; exit status non-zero on failure."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    unittest.main(verbosity=2)
