"""Transport-neutral endpoints for the swtpm-compatible guest channel tests.

"One body, every transport": the test files in this directory talk to a TPM
only through an :class:`Endpoint`, i.e. through

* ``ep.tcti()``      -- the TCTI string for tpm2-tools
                        (``swtpm:path=DATA`` or ``swtpm:host=127.0.0.1,port=P``)
* ``ep.ctrl_args()`` -- the swtpm_ioctl arguments that reach the control
                        channel (``['--unix', DATA + '.ctrl']`` or
                        ``['--tcp', '127.0.0.1:' + str(P + 1)]``; this is the
                        convention tcti-swtpm itself uses)
* ``ep.start()`` / ``ep.stop()`` (also a context manager)
* ``ep.pid()``       -- serving process id or None (fd-leak checks only)
* ``ep.exited(timeout)`` -- True if the process serving this endpoint has
                        terminated (swtpm: its own process; vtpmd: the
                        daemon).

Which implementation is used is chosen by the environment variable
``CHANNEL_TARGET`` (``swtpm`` -- the default -- or ``vtpmd``) in
:func:`make_endpoints`, the single factory the tests call.

``SwtpmEndpoint`` runs Debian's real ``swtpm socket --tpm2`` (one process per
endpoint, fresh temporary state directory) and is what the suite was
validated against.  ``VtpmdEndpoint`` is NOT implemented yet: see the marked
hook in :func:`make_endpoints`.

Helpers shared by the tests: :func:`tools` (run a tpm2-tools binary against an
endpoint), :func:`ioctl` (run swtpm_ioctl against its control channel),
:func:`ctrl_command` (send one raw control-channel command, for checks that
swtpm_ioctl refuses to send, e.g. an invalid locality), :class:`ChannelTestCase`.

Only 127.0.0.1 and ports 24000-24999 are used.  stdlib only.
"""

import atexit
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import sys
import threading
import time
import unittest

TARGET = os.environ.get("CHANNEL_TARGET", "swtpm")
BUILD_DIR = os.environ.get("VTPMD_BUILD_DIR", "/work/main/build")
KINDS = ("unix", "tcp")

HOST = "127.0.0.1"
PORT_MIN, PORT_MAX = 24000, 24999
START_TIMEOUT = 10.0
TOOL_TIMEOUT = 120.0

SWTPM = os.environ.get("SWTPM", "swtpm")
SWTPM_IOCTL = os.environ.get("SWTPM_IOCTL", "swtpm_ioctl")

_live_lock = threading.Lock()
_LIVE = set()


def _atexit_cleanup():
    for ep in list(_LIVE):
        try:
            ep.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_atexit_cleanup)


# --------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------

_port_lock = threading.Lock()
_reserved_ports = set()


def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def reserve_port_pair():
    """A port P (P+1 also free) in [24000, 24999), reserved in this process."""
    with _port_lock:
        candidates = list(range(PORT_MIN, PORT_MAX, 2))
        random.shuffle(candidates)
        for p in candidates:
            if p in _reserved_ports or p + 1 in _reserved_ports:
                continue
            if _port_free(p) and _port_free(p + 1):
                _reserved_ports.update((p, p + 1))
                return p
    raise RuntimeError("no free port pair in %d-%d" % (PORT_MIN, PORT_MAX))


def release_port_pair(p):
    with _port_lock:
        _reserved_ports.discard(p)
        _reserved_ports.discard(p + 1)


def _connectable(kind, addr):
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------
# endpoints
# --------------------------------------------------------------------------


class Endpoint:
    """One swtpm-compatible TPM: a data channel plus a control channel."""

    target = None           # "swtpm" | "vtpmd"

    def __init__(self, kind="unix"):
        if kind not in KINDS:
            raise ValueError("kind must be one of %r" % (KINDS,))
        self.kind = kind

    def tcti(self):
        raise NotImplementedError

    def ctrl_args(self):
        raise NotImplementedError

    def start(self):
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    def exited(self, timeout=0.0):
        raise NotImplementedError

    def pid(self):
        """PID of the process serving this endpoint, or None if unknown
        (used only for resource checks such as open fd counts)."""
        return None

    def log_tail(self, lines=60):
        """Diagnostics appended to failure messages (may be empty)."""
        return ""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<%s %s %s>" % (type(self).__name__, self.kind, self.tcti())


class SwtpmEndpoint(Endpoint):
    """Debian's swtpm (``swtpm socket --tpm2``), one process per endpoint."""

    target = "swtpm"

    def __init__(self, kind="unix"):
        super().__init__(kind)
        self.dir = None
        self.proc = None
        self.port = None
        self._port_reserved = False
        self.data_path = None

    # -- addresses ---------------------------------------------------------
    def tcti(self):
        if self.kind == "unix":
            return "swtpm:path=%s" % self.data_path
        return "swtpm:host=%s,port=%d" % (HOST, self.port)

    def ctrl_args(self):
        if self.kind == "unix":
            return ["--unix", self.data_path + ".ctrl"]
        return ["--tcp", "%s:%d" % (HOST, self.port + 1)]

    def _addrs(self):
        if self.kind == "unix":
            return [self.data_path, self.data_path + ".ctrl"]
        return [(HOST, self.port), (HOST, self.port + 1)]

    # -- life cycle --------------------------------------------------------
    def start(self):
        self.dir = tempfile.mkdtemp(prefix="channel-swtpm-")
        state = os.path.join(self.dir, "state")
        os.mkdir(state)
        self.data_path = os.path.join(self.dir, "data.sock")
        with _live_lock:
            _LIVE.add(self)
        last_err = None
        for _attempt in range(5):
            if self.kind == "unix":
                server = "type=unixio,path=%s" % self.data_path
                ctrl = "type=unixio,path=%s.ctrl" % self.data_path
            else:
                self.port = reserve_port_pair()
                self._port_reserved = True
                server = "type=tcp,port=%d,bindaddr=%s" % (self.port, HOST)
                ctrl = "type=tcp,port=%d,bindaddr=%s" % (self.port + 1, HOST)
            argv = [SWTPM, "socket", "--tpm2",
                    "--tpmstate", "dir=%s" % state,
                    "--server", server, "--ctrl", ctrl,
                    "--flags", "not-need-init,startup-clear",
                    "--log", "file=%s,level=1" % os.path.join(self.dir, "log")]
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL,
                                         start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT
            family = self.kind
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if all(_connectable(family, a) for a in self._addrs()):
                    return self
                time.sleep(0.02)
            last_err = "swtpm did not come up (rc=%r) %s" % (
                self.proc.poll(), self.log_tail())
            self._kill_proc()
            if self.kind == "tcp":   # probably lost a port race; retry
                release_port_pair(self.port)
                self._port_reserved = False
                continue
            break
        self.stop()
        raise RuntimeError(last_err)

    def _kill_proc(self):
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        else:
            p.wait()

    def stop(self):
        self._kill_proc()
        self.proc = None
        if self.port is not None and self._port_reserved:
            release_port_pair(self.port)
            self._port_reserved = False
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        with _live_lock:
            _LIVE.discard(self)

    def exited(self, timeout=0.0):
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def pid(self):
        return self.proc.pid if self.proc else None

    def log_tail(self, lines=60):
        if not self.dir:
            return ""
        try:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                keep = [l for l in f if "Data client disconnected" not in l]
            if not keep:
                return ""
            return "\n--- swtpm log ---\n" + "".join(keep[-lines:])
        except OSError:
            return ""


class EndpointSet(list):
    """A list of started endpoints; ``close()`` stops them all (and, for a
    target that shares one server between endpoints, that server too)."""

    def close(self):
        while self:
            ep = self.pop()
            try:
                ep.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VtpmdEndpoint(Endpoint):
    """One TPM 2.0 instance of a shared vtpmd, with swtpm-style endpoints
    of *kind* (unix: DATA + DATA.ctrl; tcp: P + P+1 on 127.0.0.1)."""

    target = "vtpmd"

    def __init__(self, kind, daemon, index):
        super().__init__(kind)
        self.daemon = daemon
        self.uuid = None
        params = {"auto_startup": True}
        if kind == "unix":
            self.data = os.path.join(daemon.tmp, "tpm%d" % index)
            params["swtpm_path"] = self.data
        else:
            self.port = reserve_port_pair()
            params["swtpm_port"] = self.port
        self.params = params

    def start(self):
        self.uuid = self.daemon.result("add", **self.params)["uuid"]
        return self

    def stop(self):
        if self.uuid and self.daemon.running():
            try:
                self.daemon.call("remove", uuid=self.uuid, force=True)
            except Exception:  # noqa: BLE001 - the daemon may be going away
                pass
        self.uuid = None

    def tcti(self):
        if self.kind == "unix":
            return "swtpm:path=%s" % self.data
        return "swtpm:host=127.0.0.1,port=%d" % self.port

    def ctrl_args(self):
        if self.kind == "unix":
            return ["--unix", self.data + ".ctrl"]
        return ["--tcp", "127.0.0.1:%d" % (self.port + 1)]

    def exited(self, timeout=0.0):
        deadline = time.monotonic() + timeout
        while True:
            if not self.daemon.running():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def pid(self):
        return self.daemon.pid if self.daemon.running() else None

    def log_tail(self, lines=60):
        try:
            return "\n--- vtpmd log ---\n" + "\n".join(self.daemon.log().splitlines()[-lines:])
        except Exception:  # noqa: BLE001
            return ""


class VtpmdEndpointSet(EndpointSet):
    """*count* endpoints served by ONE vtpmd, which close() stops (and checks
    that it exits 0: a clean shutdown is part of every test)."""

    def __init__(self, kind, count):
        super().__init__()
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
        import harness  # noqa: E402 - the integration suite's daemon runner
        self.daemon = harness.Daemon(log_level="info")
        self.daemon.start()
        try:
            for i in range(count):
                self.append(VtpmdEndpoint(kind, self.daemon, i).start())
        except BaseException:
            self.close()
            raise

    def close(self):
        super().close()
        if self.daemon is not None:
            try:
                if self.daemon.running():
                    self.daemon.stop()
            finally:
                self.daemon.cleanup()
                self.daemon = None


def make_endpoints(kind="unix", count=1):
    """Start *count* endpoints of transport *kind* on ``CHANNEL_TARGET``.

    Returns an :class:`EndpointSet` (already started; call ``close()``).
    """
    eps = EndpointSet()
    try:
        if TARGET == "swtpm":
            for _ in range(count):
                eps.append(SwtpmEndpoint(kind).start())
        elif TARGET == "vtpmd":
            eps = VtpmdEndpointSet(kind, count)
        else:
            raise ValueError("unknown CHANNEL_TARGET %r" % TARGET)
    except BaseException:
        eps.close()
        raise
    return eps


# --------------------------------------------------------------------------
# running the real tools
# --------------------------------------------------------------------------


class ToolError(AssertionError):
    pass


def _run(argv, env=None, input=None, check=True, timeout=TOOL_TIMEOUT, ep=None):
    p = subprocess.run(argv, env=env, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    if check and p.returncode != 0:
        raise ToolError("%s exited %d\nstdout: %s\nstderr: %s%s" % (
            " ".join(argv), p.returncode,
            p.stdout.decode(errors="replace")[-2000:],
            p.stderr.decode(errors="replace")[-4000:],
            ep.log_tail() if ep is not None else ""))
    return p


def tools(ep, *argv, input=None, check=True, extra_env=None):
    """Run a tpm2-tools command against *ep* (TPM2TOOLS_TCTI in the env).

    Returns the CompletedProcess (stdout/stderr bytes); raises ToolError if
    *check* and the exit status is not 0.
    """
    env = dict(os.environ)
    env["TPM2TOOLS_TCTI"] = ep.tcti()
    env.setdefault("TSS2_LOG", "all+NONE")   # expected failures stay quiet
    if extra_env:
        env.update(extra_env)
    return _run(list(argv), env=env, input=input, check=check, ep=ep)


def ioctl(ep, *args, check=True):
    """Run ``swtpm_ioctl <args> <ctrl_args>`` against *ep*."""
    return _run([SWTPM_IOCTL] + list(args) + ep.ctrl_args(), check=check, ep=ep)


def flush_transient(ep):
    """Flush transient objects and sessions (no resource manager on the
    channel: objects loaded by a tool stay loaded; the TPM has 3 slots)."""
    tools(ep, "tpm2_flushcontext", "-t")
    tools(ep, "tpm2_flushcontext", "-l")
    tools(ep, "tpm2_flushcontext", "-s")


def ctrl_command(ep, cmd, payload=b"", resp_len=4):
    """Send one raw control-channel command (big-endian u32 code + payload)
    on a fresh connection; return the response bytes (first u32 = result)."""
    kind, addr = ep.ctrl_args()
    if kind == "--unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        host, port = addr.rsplit(":", 1)
        addr = (host, int(port))
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(addr)
        s.sendall(struct.pack(">I", cmd) + payload)
        buf = b""
        while len(buf) < resp_len:
            chunk = s.recv(resp_len - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        s.close()


CMD_SET_LOCALITY = 0x05


# --------------------------------------------------------------------------
# unittest glue
# --------------------------------------------------------------------------


class ChannelTestCase(unittest.TestCase):
    """Base: ``self.endpoints(kind, n)``/``self.endpoint(kind)`` and
    ``self.tmpdir()`` with automatic cleanup."""

    def endpoints(self, kind, count):
        eps = make_endpoints(kind, count)
        self.addCleanup(eps.close)
        return eps

    def endpoint(self, kind):
        return self.endpoints(kind, 1)[0]

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="channel-test-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


def quirk(target, reason):
    """Mark a test as an expected failure on *target* (a documented bug of
    that implementation); it must pass everywhere else.  CHANNEL_NO_QUIRKS=1
    runs such tests as ordinary tests (to see how they fail)."""
    def deco(fn):
        if TARGET == target and not os.environ.get("CHANNEL_NO_QUIRKS"):
            fn = unittest.expectedFailure(fn)
            fn.__doc__ = (fn.__doc__ or "") + " [expected failure on %s: %s]" % (
                target, reason)
        return fn
    return deco
