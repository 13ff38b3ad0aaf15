#!/usr/bin/env python3
"""Durable NV writes per second: vtpmd against swtpm, 1 / 100 / 1000 TPMs.

What is measured
----------------
TPM 2.0 ``TPM2_NV_Write`` commands per second, and their latency, when N
TPM instances all write at once, for two servers in the same run:

* **vtpmd**: one daemon (``vtpmd --state-dir D --control-socket S``) holding
  all N instances, each created over the JSON control socket with
  swtpm-compatible endpoints (``add`` with ``swtpm_path``, ``auto_startup``).
* **swtpm**: Debian's ``swtpm socket --tpm2``, one process per instance
  (``--tpmstate dir=...``, ``--flags not-need-init,startup-clear``).

Both are driven identically, through the swtpm-compatible *data* socket of
each instance (plain TPM command bytes in, response bytes out), and both keep
their state in directories under one parent directory, i.e. on the same
disk and filesystem.

How
---
Per instance, once: TPM2_Startup(CLEAR) (TPM_RC_INITIALIZE, "already
started", is accepted), TPM2_NV_DefineSpace of an ordinary 64-byte index
0x01500000 with owner authorization, one warm-up NV_Write.  Then the timed
phase: every instance has exactly one NV_Write outstanding (8..64 bytes of
changing data); when its response arrives the next is sent at once (closed
loop).  All instances are served by one ``selectors`` event loop in this
process.  Writes that complete inside the window (``--seconds``) are
counted; latency is send-to-complete-response per command.  Any response
code other than 0 aborts the run.

"Durable" means acknowledged only once on disk.  vtpmd holds an answer that
follows a change of persistent state until that state is on disk.  Whether
swtpm does is *observed*, not assumed: after the timed phase one instance of
each server is traced with ``strace -f -c`` for a second of NV writes and the
sync-type system calls per write are reported, and per run the flush
requests the disk received (/proc/diskstats: the whole device, so other
processes' flushes count too).  Neither server is tuned or slowed down.
Also reported: the servers' CPU time and bytes sent to storage
(/proc/PID/io), this client's CPU time, the load and CPU/IO pressure before
each run, and the disk's own write+fdatasync rate as a yardstick.

Results: a table on stdout and a JSON file (default
``results/nv-durable-<date>.json``).  Runs take roughly
``2 x len(instances) x (seconds + setup)``; setting up 1000 swtpm processes
takes about half a minute.  Everything started here is killed at the end,
also on Ctrl-C or an error; processes started by others are never touched.

Usage::

    python3 tools/bench/nv_durable_bench.py [--instances 1,100,1000]
        [--seconds 10] [--dir /var/tmp] [--only vtpmd|swtpm]
        [--build-dir build] [--json FILE] [--keep]
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import tpmcmd as T  # noqa: E402 - the project's TPM command builders

NV_INDEX = 0x01500000
NV_SIZE = 64
TPM_RC_INITIALIZE = 0x100
TPM_RC_NV_DEFINED = 0x14C
STALL_SECONDS = 60.0          # no response at all for this long: abort
SOCKET_WAIT_SECONDS = 30.0    # for a server's sockets to appear
SWTPM_BATCH = 50              # swtpm processes started at once
CONTROL_WINDOW = 64           # pipelined control requests
PROBE_SECONDS = 1.0
SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "syncfs", "sync",
              "msync", "rename", "renameat", "renameat2")


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived; unwinds like Ctrl-C so cleanup runs."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


# --------------------------------------------------------------------------
# processes this script started
# --------------------------------------------------------------------------


class Children:
    """Every process started here, each the leader of its own process group
    (``start_new_session``), so that it and whatever it forks can be killed
    without touching anybody else's processes."""

    def __init__(self):
        self.procs = []

    def spawn(self, argv, log_path=None, **kw):
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=kw.pop("stderr", out),
                                    start_new_session=True, close_fds=True, **kw)
        finally:
            if log_path:
                out.close()
        self.procs.append(proc)
        return proc

    def stop(self, procs, timeout):
        """SIGTERM *procs* (their groups), SIGKILL what is left after
        *timeout* s, then SIGKILL any member of their groups still alive."""
        procs = [p for p in procs if p in self.procs]
        for p in procs:
            if p.poll() is None:          # not reaped: its pid is still ours
                _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            _wait_until(p, deadline)
        for p in procs:
            if p.poll() is None:
                _signal_group(p.pid, signal.SIGKILL)
                p.wait()
        _kill_group_members({p.pid for p in procs})
        for p in procs:
            self.procs.remove(p)

    def stop_all(self, timeout=10.0):
        self.stop(list(self.procs), timeout)


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_until(proc, deadline):
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass


def _pids_by_group():
    """{pgid: [pid, ...]} of every live process (one scan of /proc)."""
    groups = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z":
            groups.setdefault(int(fields[2]), []).append(int(name))
    return groups


def _kill_group_members(pgids):
    """SIGKILL processes left in *pgids* after their leaders were reaped.
    A process group id is not reused while the group has members, so these
    are descendants of processes this script started."""
    for _ in range(50):
        left = [pid for g, pids in _pids_by_group().items() if g in pgids
                for pid in pids]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    raise BenchError("processes %s survived SIGKILL" % left)


def _terminate(signum, _frame):
    raise Terminated(signum)


# --------------------------------------------------------------------------
# one instance's data channel
# --------------------------------------------------------------------------


def connect_unix(path, deadline):
    """A connected non-blocking Unix stream socket to *path*; retries until
    the listener exists or *deadline* (monotonic) passes."""
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.setblocking(False)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() > deadline:
                raise BenchError("nobody listens on %s" % path) from None
            time.sleep(0.02)


class Channel:
    """The data connection of one TPM instance; one command in flight."""

    def __init__(self, index, path, deadline):
        self.index = index
        self.path = path
        self.sock = connect_unix(path, deadline)
        self.out = b""
        self.buf = bytearray()
        self.sent_at = 0.0
        self.seq = 0

    def start(self, command):
        """Begin a command; True if it went out completely already."""
        self.out = command
        self.buf.clear()
        self.sent_at = time.perf_counter()
        return self.flush()

    def flush(self):
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return False
            self.out = self.out[n:]
        return True

    def receive(self):
        """Read what is there; the complete response, or None for now."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return None
        if not chunk:
            raise BenchError("instance %d (%s) closed its data connection"
                             % (self.index, self.path))
        self.buf += chunk
        if len(self.buf) < 10:
            return None
        size = int.from_bytes(self.buf[2:6], "big")
        if len(self.buf) < size:
            return None
        if len(self.buf) > size:
            raise BenchError("instance %d sent %d bytes for a %d-byte response"
                             % (self.index, len(self.buf), size))
        return bytes(self.buf)

    def close(self):
        self.sock.close()


def drive(channels, next_command, on_response):
    """Closed loop over *channels*: each gets ``next_command(ch)`` (None:
    this channel is done); every complete response goes to
    ``on_response(ch, response, now)`` before the channel's next command."""
    sel = selectors.DefaultSelector()
    busy = 0
    for ch in channels:
        busy += _issue(sel, ch, next_command(ch), registered=False)
    last_progress = time.monotonic()
    while busy:
        events = sel.select(timeout=1.0)
        if not events and time.monotonic() - last_progress > STALL_SECONDS:
            raise BenchError("%d instances did not answer within %.0f s"
                             % (busy, STALL_SECONDS))
        for key, mask in events:
            ch = key.data
            if mask & selectors.EVENT_WRITE and ch.flush():
                sel.modify(ch.sock, selectors.EVENT_READ, ch)
            if not mask & selectors.EVENT_READ:
                continue
            response = ch.receive()
            if response is None:
                continue
            last_progress = time.monotonic()
            on_response(ch, response, time.perf_counter())
            if not _issue(sel, ch, next_command(ch), registered=True):
                busy -= 1
    sel.close()


def _issue(sel, ch, command, registered):
    """Send *command* on *ch* (None: unregister); 1 if one is in flight."""
    if command is None:
        if registered:
            sel.unregister(ch.sock)
        return 0
    events = selectors.EVENT_READ
    if not ch.start(command):
        events |= selectors.EVENT_WRITE
    if registered:
        sel.modify(ch.sock, events, ch)
    else:
        sel.register(ch.sock, events, ch)
    return 1


def run_step(channels, command, accepted, what):
    """Send *command* once on every channel; each rc must be in *accepted*."""
    pending = set(channels)

    def next_command(ch):
        if ch in pending:
            pending.discard(ch)
            return command if isinstance(command, bytes) else command(ch)
        return None

    def on_response(ch, response, _now):
        check_rc(ch, response, accepted, what)

    drive(channels, next_command, on_response)


def check_rc(ch, response, accepted, what):
    code = T.rc(response)
    if code not in accepted:
        raise BenchError("instance %d (%s): %s returned rc=0x%x (%s)"
                         % (ch.index, ch.path, what, code, T.rc_str(code)))


def nv_write_for(ch):
    """The next NV_Write of *ch*: 8..64 bytes that change every time."""
    ch.seq += 1
    length = 8 + (ch.seq * 7 + ch.index) % (NV_SIZE - 7)
    pattern = ch.index.to_bytes(4, "big") + ch.seq.to_bytes(8, "big")
    data = (pattern * (length // len(pattern) + 1))[:length]
    return T.nv_write(NV_INDEX, data)


def prepare(channels):
    """Startup, define the NV index, one warm-up write, on every instance."""
    run_step(channels, T.startup(), {0, TPM_RC_INITIALIZE}, "TPM2_Startup")
    run_step(channels, T.nv_define_space(NV_INDEX, NV_SIZE),
             {0, TPM_RC_NV_DEFINED}, "TPM2_NV_DefineSpace")
    run_step(channels, nv_write_for, {0}, "warm-up TPM2_NV_Write")


def timed_writes(channels, seconds):
    """The timed closed loop; returns (writes, elapsed s, latencies in s)."""
    latencies = []
    start = time.perf_counter()
    end = start + seconds

    def next_command(ch):
        return nv_write_for(ch) if time.perf_counter() < end else None

    def on_response(ch, response, now):
        check_rc(ch, response, {0}, "TPM2_NV_Write")
        if now <= end:
            latencies.append(now - ch.sent_at)

    drive(channels, next_command, on_response)
    return len(latencies), seconds, latencies


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


# --------------------------------------------------------------------------
# the two servers
# --------------------------------------------------------------------------


class ControlClient:
    """Newline-delimited JSON on vtpmd's control socket, pipelined."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(path)
        self.buf = b""

    def call_many(self, method, params_list):
        """Results of *method* for every params dict, in order; at most
        CONTROL_WINDOW requests in flight."""
        results = {}
        sent = in_flight = 0
        while sent < len(params_list) or in_flight:
            while sent < len(params_list) and in_flight < CONTROL_WINDOW:
                self._send(sent, method, params_list[sent])
                sent += 1
                in_flight += 1
            reply = self._read()
            in_flight -= 1
            if "error" in reply:
                raise BenchError("vtpmd %s failed: %s" % (method, reply["error"]))
            results[reply["id"]] = reply["result"]
        return [results[i] for i in range(len(params_list))]

    def _send(self, req_id, method, params):
        line = {"v": 1, "id": req_id, "method": method, "params": params}
        self.sock.sendall(json.dumps(line).encode() + b"\n")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise BenchError("vtpmd closed the control connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


class Vtpmd:
    """One vtpmd with N TPM 2.0 instances behind swtpm-style Unix sockets."""

    name = "vtpmd"

    def __init__(self, children, build_dir, workdir, count):
        self.children = children
        self.binary = os.path.join(build_dir, "src", "vtpmd")
        self.workdir = workdir
        self.count = count
        self.control = os.path.join(workdir, "run", "control.sock")
        self.proc = None

    def start(self):
        """Start the daemon and create the instances; the data socket paths."""
        if not os.access(self.binary, os.X_OK):
            raise BenchError("%s missing: build first (ninja -C build)" % self.binary)
        argv = [self.binary, "--state-dir", os.path.join(self.workdir, "state"),
                "--control-socket", self.control, "--log-level", "warn"]
        self.proc = self.children.spawn(argv, os.path.join(self.workdir, "vtpmd.log"))
        client = self._wait_ready()
        try:
            paths = [os.path.join(self.workdir, "tpm%04d" % i) for i in range(self.count)]
            client.call_many("add", [{"tpm": "2.0", "auto_startup": True, "swtpm_path": p}
                                     for p in paths])
        finally:
            client.close()
        return paths

    def _wait_ready(self):
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise BenchError("vtpmd exited with %s at start-up:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
            try:
                client = ControlClient(self.control)
                client.call_many("hello", [{}])
                return client
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("vtpmd did not accept on %s" % self.control) from None
                time.sleep(0.05)

    def pids(self):
        """The daemon and its vtpmd-engine workers (its process group)."""
        return _pids_by_group().get(self.proc.pid, [])

    def probe_pid(self):
        return self.proc.pid

    def log_tail(self, lines=30):
        try:
            with open(os.path.join(self.workdir, "vtpmd.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        """SIGTERM (a clean shutdown saves every instance) and wait."""
        if self.proc is not None:
            self.children.stop([self.proc], timeout=120.0)
            code = self.proc.returncode
            self.proc = None
            if code != 0:
                return "vtpmd exited with %s after SIGTERM" % code
        return None


class Swtpm:
    """N ``swtpm socket --tpm2`` processes, one per instance."""

    name = "swtpm"

    def __init__(self, children, workdir, count):
        self.children = children
        self.binary = shutil.which("swtpm")
        self.workdir = workdir
        self.count = count
        self.procs = []

    def start(self):
        if not self.binary:
            raise BenchError("swtpm is not installed (apt-get install swtpm)")
        paths = []
        for first in range(0, self.count, SWTPM_BATCH):
            batch = range(first, min(self.count, first + SWTPM_BATCH))
            paths += [self._spawn(i) for i in batch]
            self._wait_sockets(paths[first:])
        return paths

    def _spawn(self, index):
        tpm_dir = os.path.join(self.workdir, "tpm%04d" % index)
        state = os.path.join(tpm_dir, "state")
        os.makedirs(state)
        path = os.path.join(tpm_dir, "data.sock")
        argv = [self.binary, "socket", "--tpm2", "--tpmstate", "dir=" + state,
                "--server", "type=unixio,path=" + path,
                "--ctrl", "type=unixio,path=%s.ctrl" % path,
                "--flags", "not-need-init,startup-clear"]
        self.procs.append(self.children.spawn(argv, os.path.join(tpm_dir, "swtpm.log")))
        return path

    def _wait_sockets(self, paths):
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        for proc, path in zip(self.procs[-len(paths):], paths):
            while not (os.path.exists(path) and os.path.exists(path + ".ctrl")):
                if proc.poll() is not None:
                    raise BenchError("swtpm for %s exited with %s: %s" % (
                        path, proc.returncode, self._log(path)))
                if time.monotonic() > deadline:
                    raise BenchError("swtpm did not create %s" % path)
                time.sleep(0.01)

    @staticmethod
    def _log(path):
        try:
            with open(os.path.join(os.path.dirname(path), "swtpm.log"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def pids(self):
        return [p.pid for p in self.procs if p.poll() is None]

    def probe_pid(self):
        return self.procs[0].pid

    def stop(self):
        self.children.stop(self.procs, timeout=15.0)
        self.procs = []
        return None


# --------------------------------------------------------------------------
# observations around the timed phase
# --------------------------------------------------------------------------


def process_usage(pids):
    """(CPU seconds, bytes sent to storage) summed over *pids*."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, written = 0.0, 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            with open("/proc/%d/io" % pid) as f:
                written += next(int(line.split()[1]) for line in f
                                if line.startswith("write_bytes:"))
        except (OSError, StopIteration):
            continue
    return cpu, written


def pressure():
    """Share of the last 10 s in which some task waited for CPU / for I/O
    (/proc/pressure, Linux 4.20+): how busy the machine was besides us."""
    out = {}
    for kind in ("cpu", "io"):
        try:
            with open("/proc/pressure/" + kind) as f:
                out[kind + "_some_avg10"] = float(f.readline().split()[1].split("=")[1])
        except (OSError, IndexError, ValueError):
            out[kind + "_some_avg10"] = None
    return out


def block_device(path):
    """Kernel name of the block device holding *path*, or None."""
    st = os.stat(path)
    uevent = "/sys/dev/block/%d:%d/uevent" % (os.major(st.st_dev), os.minor(st.st_dev))
    try:
        with open(uevent) as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return line.strip().split("=", 1)[1]
    except OSError:
        pass
    return None


def disk_counters(device):
    """{writes, sectors_written, flushes} of *device* from /proc/diskstats."""
    if device is None:
        return None
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if fields[2] == device:     # flushes: since Linux 5.5
                flushes = int(fields[18]) if len(fields) > 18 else None
                return {"writes": int(fields[7]), "sectors_written": int(fields[9]),
                        "flushes": flushes}
    return None


def sync_rate(directory, seconds=2.0):
    """The disk's own pace: 64-byte overwrite + fdatasync of one file in
    *directory*, one thread, as many as fit in *seconds*; per second."""
    path = os.path.join(directory, "sync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            os.pwrite(fd, count.to_bytes(8, "big") * 8, 0)
            os.fdatasync(fd)
            count += 1
        return round(count / (time.perf_counter() - start), 1)
    finally:
        os.close(fd)
        os.unlink(path)


def counter_delta(before, after):
    if before is None or after is None:
        return None
    return {k: (after[k] - before[k]) if after[k] is not None else None for k in after}


def probe_sync_calls(children, pid, channel):
    """Trace *pid* (all threads) with ``strace -f -c`` while *channel* runs
    NV writes for PROBE_SECONDS; sync-type syscalls per acknowledged write."""
    strace = shutil.which("strace")
    if not strace:
        return {"available": False}
    argv = [strace, "-f", "-c", "-e", "trace=" + ",".join(SYNC_CALLS), "-p", str(pid)]
    proc = children.spawn(argv, stderr=subprocess.PIPE)
    time.sleep(0.5)                      # let strace attach to every thread
    if proc.poll() is not None:
        err = proc.communicate()[1].decode(errors="replace").strip()
        children.stop([proc], timeout=1.0)
        return {"available": False, "error": err[-500:]}
    writes, _, _ = timed_writes([channel], PROBE_SECONDS)
    time.sleep(0.2)                      # background syncs of the last write
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    finally:
        children.stop([proc], timeout=5.0)
    # strace -c prints no table at all when none of the calls happened
    calls = parse_strace_summary(err.decode(errors="replace"))
    return {"available": True, "writes": writes, "calls": calls,
            "per_write": {k: round(v / writes, 2) for k, v in calls.items()} if writes else {}}


def parse_strace_summary(text):
    """{syscall: calls} from the table ``strace -c`` prints."""
    calls = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in SYNC_CALLS and fields[3].isdigit():
            calls[fields[-1]] = int(fields[3])
    return calls


# --------------------------------------------------------------------------
# one run: one server, N instances
# --------------------------------------------------------------------------


def run_one(server, seconds, device, probe, children):
    t0 = time.monotonic()
    paths = server.start()
    deadline = time.monotonic() + SOCKET_WAIT_SECONDS
    channels = [Channel(i, p, deadline) for i, p in enumerate(paths)]
    try:
        prepare(channels)
        setup_s = time.monotonic() - t0
        result = measure(server, channels, seconds, device)
        result["setup_s"] = round(setup_s, 2)
        if probe:
            result["sync_probe"] = probe_sync_calls(children, server.probe_pid(), channels[0])
    finally:
        for ch in channels:
            ch.close()
        note = server.stop()
    if note:
        result["note"] = note
    return result


def measure(server, channels, seconds, device):
    """The timed phase with CPU, storage and disk counters around it."""
    pids = server.pids()
    load, busy = os.getloadavg()[0], pressure()
    cpu0, io0 = process_usage(pids)
    disk0 = disk_counters(device)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    writes, elapsed, latencies = timed_writes(channels, seconds)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    disk1 = disk_counters(device)
    cpu1, io1 = process_usage(pids)
    latencies.sort()
    disk = counter_delta(disk0, disk1)
    return {
        "instances": len(channels), "writes": writes, "seconds": elapsed,
        "writes_per_s": round(writes / elapsed, 1),
        "p50_us": _us(percentile(latencies, 0.50)),
        "p99_us": _us(percentile(latencies, 0.99)),
        "max_us": _us(latencies[-1] if latencies else None),
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "server_storage_bytes_per_write": round((io1 - io0) / writes) if writes else None,
        "client_cpu_s": round(self1.ru_utime + self1.ru_stime
                              - self0.ru_utime - self0.ru_stime, 2),
        # the whole device: other processes' I/O is in here too
        "device_counters_all_processes": disk,
        "loadavg_1min_before": round(load, 2),
        "pressure_before": busy,
    }


def _us(seconds):
    return None if seconds is None else round(seconds * 1e6)


# --------------------------------------------------------------------------
# environment, report
# --------------------------------------------------------------------------


def raise_fd_limit(max_instances):
    """Sockets for every instance plus slack (and what swtpm inherits)."""
    need = 2 * max_instances + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        raise BenchError("RLIMIT_NOFILE hard limit %d < %d needed for %d instances"
                         % (hard, need, max_instances))
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


def command_output(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=10).stdout.decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return "(%s: %s)" % (argv[0], e)


def environment(parent, build_dir):
    device = block_device(parent)
    cache = None
    if device:
        cache = command_output(["cat", "/sys/class/block/%s/queue/write_cache" % device])
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "dir": parent, "df": command_output(["df", "-T", parent]),
        "mount_options": command_output(["findmnt", "-no", "FSTYPE,OPTIONS", "-T", parent]),
        "block_device": device, "write_cache": cache,
        "fdatasync_per_s_one_thread": sync_rate(parent),
        "vtpmd": command_output([os.path.join(build_dir, "src", "vtpmd"), "--version"]),
        "vtpmd_built": _mtime(os.path.join(build_dir, "src", "vtpmd")),
        "swtpm": (command_output(["swtpm", "--version"]).splitlines() or [""])[0],
        "libtpms": command_output(["dpkg-query", "-W", "-f", "${Version}", "libtpms0"]),
        "git": command_output(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
    }


def _mtime(path):
    try:
        stamp = os.stat(path).st_mtime
    except OSError:
        return None
    return datetime.datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")


def fmt_latency(us):
    if us is None:
        return "-"
    if us >= 10000:
        return "%.1f ms" % (us / 1000)
    if us >= 1000:
        return "%.2f ms" % (us / 1000)
    return "%d us" % us


def ratio(results, n):
    """vtpmd writes/s over swtpm writes/s for *n* instances, or None."""
    v, s = results.get(("vtpmd", n)), results.get(("swtpm", n))
    if not (v and s and s["writes_per_s"]):
        return None
    return round(v["writes_per_s"] / s["writes_per_s"], 3)


def print_table(results, counts):
    print()
    print("%6s | %12s %9s %9s | %12s %9s %9s | %s" % (
        "N", "vtpmd w/s", "p50", "p99", "swtpm w/s", "p50", "p99", "vtpmd/swtpm"))
    print("-" * 92)
    for n in counts:
        v, s = results.get(("vtpmd", n)), results.get(("swtpm", n))
        r = ratio(results, n)
        print("%6d | %12s %9s %9s | %12s %9s %9s | %s" % (
            n, *_cells(v), *_cells(s), "-" if r is None else "%.2f" % r))
    print()
    for (name, n), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print("%s x%d: %d writes in %.0f s, server CPU %.1f s, client CPU %.1f s, "
              "storage %s B/write, device flushes %s (whole disk), setup %.1f s, "
              "load before %.2f%s" % (
                  name, n, r["writes"], r["seconds"], r["server_cpu_s"], r["client_cpu_s"],
                  r["server_storage_bytes_per_write"], _flushes(r), r["setup_s"],
                  r["loadavg_1min_before"], (" (%s)" % r["note"]) if r.get("note") else ""))


def _flushes(r):
    disk = r["device_counters_all_processes"]
    if not disk or disk["flushes"] is None:
        return "n/a"
    if not r["writes"]:
        return str(disk["flushes"])
    return "%d = %.2f/write" % (disk["flushes"], disk["flushes"] / r["writes"])


def _cells(r):
    if not r:
        return ("-", "-", "-")
    return ("{:,.0f}".format(r["writes_per_s"]), fmt_latency(r["p50_us"]),
            fmt_latency(r["p99_us"]))


def print_probes(results):
    for (name, _n), r in sorted(results.items()):
        probe = r.get("sync_probe")
        if not probe:
            continue
        if not probe["available"]:
            print("%s: strace not available, sync calls not observed" % name)
            continue
        print("%s, one instance traced for %d NV writes: %s" % (
            name, probe["writes"],
            ", ".join("%s %.2f/write" % kv for kv in sorted(probe["per_write"].items()))
            or "no sync-type system calls at all"))


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", default="1,100,1000",
                   help="comma-separated instance counts (default 1,100,1000)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="timed phase per count and server (default 10)")
    p.add_argument("--dir", default="/var/tmp",
                   help="a fresh directory for all state is made in here (default /var/tmp)")
    p.add_argument("--only", choices=("vtpmd", "swtpm"), help="measure one server only")
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--json", help="result file (default results/nv-durable-<date>.json)")
    p.add_argument("--keep", action="store_true", help="keep the state directories")
    args = p.parse_args(argv)
    try:
        args.counts = [int(x) for x in args.instances.split(",") if x.strip()]
    except ValueError:
        p.error("--instances takes numbers such as 1,100,1000")
    if not args.counts or min(args.counts) < 1:
        p.error("--instances needs counts >= 1")
    return args


def make_server(name, children, build_dir, workdir, count):
    os.makedirs(workdir)
    if name == "vtpmd":
        return Vtpmd(children, build_dir, workdir, count)
    return Swtpm(children, workdir, count)


def run_all(args, parent, children, env):
    servers = [args.only] if args.only else ["vtpmd", "swtpm"]
    results = {}
    for n in args.counts:
        for name in servers:
            workdir = os.path.join(parent, "%s-%d" % (name, n))
            print("%s x%d ..." % (name, n), end=" ", flush=True)
            server = make_server(name, children, args.build_dir, workdir, n)
            probe = not any(k[0] == name for k in results)
            results[(name, n)] = r = run_one(server, args.seconds, env["block_device"],
                                             probe, children)
            print("%s writes/s, p50 %s, p99 %s" % ("{:,.0f}".format(r["writes_per_s"]),
                                                  fmt_latency(r["p50_us"]),
                                                  fmt_latency(r["p99_us"])), flush=True)
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    return results


def write_json(path, env, args, results):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {"benchmark": "nv_durable_bench", "environment": env,
           "settings": {"instances": args.counts, "seconds": args.seconds,
                        "nv_index": "0x%08x" % NV_INDEX, "nv_size": NV_SIZE,
                        "write_bytes": "8..%d" % NV_SIZE},
           "runs": [dict(server=name, **r) for (name, _n), r in results.items()],
           "ratio_vtpmd_over_swtpm": {str(n): ratio(results, n) for n in args.counts}}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def main(argv=None):
    args = parse_args(argv)
    args.build_dir = os.path.abspath(args.build_dir)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    raise_fd_limit(max(args.counts))
    os.makedirs(args.dir, exist_ok=True)
    parent = tempfile.mkdtemp(prefix="nv-durable-bench-", dir=os.path.abspath(args.dir))
    if len(parent) > 70:
        raise BenchError("--dir path too long for Unix socket paths: %s" % parent)
    children = Children()
    try:
        env = environment(parent, args.build_dir)
        print("durable NV writes, %s, %s s per run, state in %s" % (
            env["date"], args.seconds, parent))
        print(env["df"])
        print("the disk alone: %s write+fdatasync/s (one thread, 64 bytes)"
              % env["fdatasync_per_s_one_thread"])
        results = run_all(args, parent, children, env)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)     # a second Ctrl-C must not stop the cleanup
        children.stop_all()
        if not args.keep:
            shutil.rmtree(parent, ignore_errors=True)
    print_table(results, args.counts)
    print_probes(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.json or os.path.join(REPO, "results", "nv-durable-%s.json" % stamp)
    write_json(path, env, args, results)
    print("\nresults: %s" % path)
    return 0


def run_main(entry, name):
    """Runs a benchmark's *entry* and exits with its status; a BenchError,
    an interrupt or a termination signal ends it with one line naming *name*."""
    try:
        sys.exit(entry())
    except BenchError as e:
        print("\n%s: %s" % (name, e), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\n%s: interrupted" % name, file=sys.stderr)
        sys.exit(130)
    except Terminated as e:
        print("\n%s: terminated by signal %d" % (name, e.signum), file=sys.stderr)
        sys.exit(128 + e.signum)


if __name__ == "__main__":
    run_main(main, "nv_durable_bench")
