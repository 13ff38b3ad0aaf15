#!/usr/bin/env python3
"""Noisy neighbour: quiet TPMs' latency while another TPM floods its engine.

What is measured
----------------
One *noisy* and Q *quiet* TPM 2.0 instances (default Q=10) on one server, in
two phases of ``--seconds`` each (default 10):

1. **baseline**: every quiet instance runs TPM2_PCR_Extend in a closed loop
   (one command outstanding, the next sent as soon as the answer is in); the
   noisy instance is idle.
2. **flood**: the same quiet load while the noisy instance runs back-to-back
   TPM2_CreatePrimary of RSA-2048 storage keys, the most expensive command a
   guest can send: one outstanding (a guest on a TPM bus has one command in
   flight), each followed by TPM2_FlushContext of the new handle so the TPM
   never runs out of object slots.  Every CreatePrimary carries a different
   ``unique`` field, so each derives a new key (prime search from the
   primary seed: ~10-65 ms each on the reference machine) instead of the
   same key again.

Per server and phase: the quiet instances' PCR_Extend latency (p50, p99,
max over all of them, send-to-complete-response) and throughput, the
fewest extends any one quiet instance completed, and the noisy instance's
CreatePrimary count and latency; the ratio flood p99 / baseline p99 of
each server and the vtpmd / swtpm ratios.  Also the servers' CPU time, this
client's CPU time and the machine's load before each phase.

Servers (the process management, data channels, closed loop and launchers
are nv_durable_bench's):

* **vtpmd**: one daemon holding all Q+1 instances, each with
  swtpm-compatible endpoints and ``auto_startup``.
* **swtpm**: Debian's ``swtpm socket --tpm2``, one process per instance.

Both are driven through each instance's swtpm-compatible Unix *data* socket
from one ``selectors`` loop in this process.  ``--noisy-depth N`` (N > 1,
vtpmd only) floods through the control socket instead, keeping N
CreatePrimary+FlushContext pairs queued on the noisy instance at all times
(a misbehaving manager rather than a guest); the quiet instances still use
their data sockets.

Results: a table on stdout and a JSON file (default
``results/noisy-neighbour-<date>.json``).  A run takes about
``2 x (2 x seconds + setup)``.  Everything started here is killed at the end,
also on Ctrl-C or an error; processes started by others are never touched.

Usage::

    python3 tools/bench/noisy_neighbour_bench.py [--quiet 10] [--seconds 10]
        [--only vtpmd|swtpm] [--noisy-depth 1] [--build-dir build]
        [--dir /var/tmp] [--json FILE]
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nv_durable_bench as B  # noqa: E402 - processes, channels, launchers

T = B.T                       # the project's TPM command builders
REPO = B.REPO

QUIET_PCR = 16
TPM_RC_INITIALIZE = 0x100
FIRST_TRANSIENT = 0x80000000  # the slot a CreatePrimary gets when none is loaded


class BenchError(B.BenchError):
    pass


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------


def quiet_command(ch):
    """The PCR_Extend a quiet instance sends, built once per channel."""
    cmd = getattr(ch, "extend_cmd", None)
    if cmd is None:
        digest = (ch.index.to_bytes(4, "big") * 8)[:32]
        cmd = ch.extend_cmd = T.pcr_extend(QUIET_PCR, digest)
    return cmd


_unique_seq = [0]


def create_primary_command():
    """CreatePrimary(owner, RSA-2048 storage key) with a fresh ``unique``,
    so that every call derives (and searches primes for) a different key."""
    _unique_seq[0] += 1
    template = (T.rsa2048_storage_template()[:-2]      # drop the empty unique
                + T._tpm2b(_unique_seq[0].to_bytes(8, "big")))
    return T.create_primary(template)


def summarize(latencies, seconds):
    latencies = sorted(latencies)
    return {
        "count": len(latencies),
        "per_s": round(len(latencies) / seconds, 1),
        "p50_us": B._us(B.percentile(latencies, 0.50)),
        "p99_us": B._us(B.percentile(latencies, 0.99)),
        "max_us": B._us(latencies[-1] if latencies else None),
    }


# --------------------------------------------------------------------------
# one phase
# --------------------------------------------------------------------------


class NoisyChannel:
    """State of the noisy instance's closed loop on its data channel:
    CreatePrimary, FlushContext of the new handle, CreatePrimary, ..."""

    def __init__(self, ch):
        self.ch = ch
        self.flush_handle = None   # set while a FlushContext is in flight
        self.latencies = []

    def next_command(self, end):
        if self.flush_handle is not None:
            return T.flush_context(self.flush_handle)
        if time.perf_counter() >= end:
            return None
        return create_primary_command()

    def on_response(self, response, now, end):
        if self.flush_handle is not None:
            B.check_rc(self.ch, response, {0}, "TPM2_FlushContext")
            self.flush_handle = None
            return
        B.check_rc(self.ch, response, {0}, "TPM2_CreatePrimary RSA-2048")
        self.flush_handle = T.parse_create_primary(response).handle
        if now <= end:
            self.latencies.append(now - self.ch.sent_at)


class ControlFlood(threading.Thread):
    """--noisy-depth N: N CreatePrimary + FlushContext(0x80000000) pairs
    queued on the noisy instance through vtpmd's control socket (`exec`) at
    all times.  An instance's commands run in order, so every CreatePrimary
    finds slot 0 free and gets handle 0x80000000, which the pair's flush
    frees again (checked)."""

    def __init__(self, control_path, uuid, depth, end):
        super().__init__(name="control-flood", daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(B.STALL_SECONDS)
        self.sock.connect(control_path)
        self.uuid, self.depth, self.end = uuid, depth, end
        self.buf = b""
        self.latencies, self.run_us = [], []
        self.error = None

    def run(self):
        try:
            self._flood()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def _send(self, req_id, command):
        line = {"v": 1, "id": req_id, "method": "exec",
                "params": {"uuid": self.uuid, "command": command.hex()}}
        self.sock.sendall(json.dumps(line).encode() + b"\n")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise BenchError("vtpmd closed the control connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def _flood(self):
        sent_at, next_id, pairs = {}, 0, 0
        flush = T.flush_context(FIRST_TRANSIENT)
        while True:
            while pairs < self.depth and time.perf_counter() < self.end:
                sent_at[next_id] = time.perf_counter()
                self._send(next_id, create_primary_command())
                self._send(next_id + 1, flush)
                next_id += 2
                pairs += 1
            if not pairs:
                return
            reply = self._read()
            now = time.perf_counter()
            if "error" in reply:
                raise BenchError("noisy exec failed: %s" % reply["error"])
            response = bytes.fromhex(reply["result"]["response"])
            code = T.rc(response)
            if reply["id"] % 2:                     # the pair's FlushContext
                if code:
                    raise BenchError("noisy FlushContext rc=0x%x (%s)" % (code, T.rc_str(code)))
                pairs -= 1
                continue
            if code:
                raise BenchError("noisy CreatePrimary rc=0x%x (%s)" % (code, T.rc_str(code)))
            handle = T.parse_create_primary(response).handle
            if handle != FIRST_TRANSIENT:
                raise BenchError("noisy CreatePrimary got handle 0x%x, not 0x%x"
                                 % (handle, FIRST_TRANSIENT))
            if now <= self.end:
                self.latencies.append(now - sent_at.pop(reply["id"]))
                self.run_us.append(reply["result"]["timing"]["run_us"])


def run_phase(server, quiet, noisy, seconds, flood_depth, control=None):
    """One timed phase; *noisy* None: baseline.  Returns the phase's results."""
    pids = server.pids()
    load, busy = os.getloadavg()[0], B.pressure()
    cpu0, _ = B.process_usage(pids)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    end = start + seconds
    per_quiet = {ch: [] for ch in quiet}
    noisy_loop = flood = None
    channels = list(quiet)
    if noisy is not None and flood_depth == 1:
        noisy_loop = NoisyChannel(noisy)
        channels.append(noisy)
    elif noisy is not None:
        flood = ControlFlood(control["path"], control["noisy_uuid"], flood_depth, end)
        flood.start()

    def next_command(ch):
        if noisy_loop is not None and ch is noisy_loop.ch:
            return noisy_loop.next_command(end)
        return quiet_command(ch) if time.perf_counter() < end else None

    def on_response(ch, response, now):
        if noisy_loop is not None and ch is noisy_loop.ch:
            noisy_loop.on_response(response, now, end)
            return
        B.check_rc(ch, response, {0}, "TPM2_PCR_Extend")
        if now <= end:
            per_quiet[ch].append(now - ch.sent_at)

    B.drive(channels, next_command, on_response)
    if flood is not None:
        flood.join(B.STALL_SECONDS + 10)
        if flood.is_alive():
            raise BenchError("the control-socket flood did not finish")
        if flood.error is not None:
            raise flood.error
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu1, _ = B.process_usage(server.pids())
    everything = [x for lat in per_quiet.values() for x in lat]
    result = {
        "phase": "flood" if noisy is not None else "baseline",
        "seconds": seconds,
        "quiet": summarize(everything, seconds),
        "quiet_min_per_instance": min(len(v) for v in per_quiet.values()),
        "quiet_max_per_instance": max(len(v) for v in per_quiet.values()),
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "client_cpu_s": round(self1.ru_utime + self1.ru_stime
                              - self0.ru_utime - self0.ru_stime, 2),
        "loadavg_1min_before": round(load, 2),
        "pressure_before": busy,
    }
    if noisy_loop is not None:
        result["noisy"] = summarize(noisy_loop.latencies, seconds)
        result["noisy"]["path"] = "data socket, 1 outstanding"
    elif flood is not None:
        result["noisy"] = summarize(flood.latencies, seconds)
        result["noisy"]["path"] = "control socket, %d queued" % flood_depth
        runs = sorted(flood.run_us)
        result["noisy"]["run_p50_us"] = B.percentile(runs, 0.5)
        result["noisy"]["run_max_us"] = runs[-1] if runs else None
    return result


# --------------------------------------------------------------------------
# one server
# --------------------------------------------------------------------------


def one_command(ch, command, what):
    """Send *command* on *ch* alone; its response (rc must be 0)."""
    out = []

    def next_command(_ch):
        return None if out else command

    def on_response(_ch, response, _now):
        B.check_rc(ch, response, {0}, what)
        out.append(response)

    B.drive([ch], next_command, on_response)
    return out[0]


def vtpmd_instances(server):
    """{data socket path: instance object} from vtpmd's `list`."""
    client = B.ControlClient(server.control)
    try:
        listing = client.call_many("list", [{}])[0]["instances"]
    finally:
        client.close()
    out = {}
    for inst in listing:
        for channel in inst.get("channels", []):
            if channel.startswith("swtpm-data:unix:"):
                out[channel.split(":", 2)[2]] = inst
    return out


def run_server(name, args, parent, children):
    workdir = os.path.join(parent, name)
    t0 = time.monotonic()
    server = B.make_server(name, children, args.build_dir, workdir, args.quiet + 1)
    paths = server.start()
    deadline = time.monotonic() + B.SOCKET_WAIT_SECONDS
    channels = [B.Channel(i, p, deadline) for i, p in enumerate(paths)]
    noisy, quiet = channels[0], channels[1:]
    result = {"server": name, "quiet_instances": len(quiet)}
    try:
        B.run_step(channels, T.startup(), {0, TPM_RC_INITIALIZE}, "TPM2_Startup")
        B.run_step(quiet, quiet_command, {0}, "warm-up TPM2_PCR_Extend")
        created = one_command(noisy, create_primary_command(), "warm-up CreatePrimary")
        one_command(noisy, T.flush_context(T.parse_create_primary(created).handle),
                    "warm-up FlushContext")
        control = None
        if name == "vtpmd":
            control = {"path": server.control}
            found = vtpmd_instances(server)
            control["noisy_uuid"] = found[noisy.path]["uuid"]
            result["placement_before"] = placement(found, noisy, quiet)
        result["setup_s"] = round(time.monotonic() - t0, 2)
        result["phases"] = [
            run_phase(server, quiet, None, args.seconds, args.noisy_depth),
            run_phase(server, quiet, noisy, args.seconds, args.noisy_depth, control),
        ]
        if name == "vtpmd":
            result["placement_after"] = placement(vtpmd_instances(server), noisy, quiet)
    finally:
        for ch in channels:
            ch.close()
        note = server.stop()
    if note:
        result["note"] = note
    base, flood = result["phases"]
    result["flood_over_baseline_p99"] = _ratio(flood["quiet"]["p99_us"], base["quiet"]["p99_us"])
    return result


def placement(found, noisy, quiet):
    """Which engine shard serves the noisy and the quiet instances."""
    return {"noisy": found[noisy.path].get("engine"),
            "quiet": sorted({found[ch.path].get("engine") for ch in quiet})}


def _ratio(a, b):
    if a is None or not b:
        return None
    return round(a / b, 3)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def comparisons(results):
    """vtpmd / swtpm for the quiet side of each phase."""
    v, s = results.get("vtpmd"), results.get("swtpm")
    if not (v and s):
        return None
    out = {}
    for i, phase in enumerate(("baseline", "flood")):
        qv, qs = v["phases"][i]["quiet"], s["phases"][i]["quiet"]
        out[phase] = {"p50": _ratio(qv["p50_us"], qs["p50_us"]),
                      "p99": _ratio(qv["p99_us"], qs["p99_us"]),
                      "max": _ratio(qv["max_us"], qs["max_us"]),
                      "throughput": _ratio(qv["per_s"], qs["per_s"])}
    nv, ns = v["phases"][1].get("noisy"), s["phases"][1].get("noisy")
    if nv and ns:
        out["noisy_create_primary_count"] = _ratio(nv["count"], ns["count"])
    return out


def print_table(results, comp):
    fl = B.fmt_latency
    print()
    print("%-6s %-8s | %9s %9s %9s %9s %7s | %8s %9s %9s | %7s %7s" % (
        "server", "phase", "quiet/s", "p50", "p99", "max", "min/inst",
        "noisy CP", "CP p50", "CP max", "srv CPU", "cli CPU"))
    print("-" * 124)
    for name, r in results.items():
        for ph in r["phases"]:
            q, n = ph["quiet"], ph.get("noisy")
            print("%-6s %-8s | %9s %9s %9s %9s %7d | %8s %9s %9s | %6.1fs %6.1fs" % (
                name, ph["phase"], "{:,.0f}".format(q["per_s"]), fl(q["p50_us"]),
                fl(q["p99_us"]), fl(q["max_us"]), ph["quiet_min_per_instance"],
                n["count"] if n else "-", fl(n["p50_us"]) if n else "-",
                fl(n["max_us"]) if n else "-", ph["server_cpu_s"], ph["client_cpu_s"]))
    print()
    for name, r in results.items():
        base, flood = r["phases"]
        print("%s: quiet p99 flood / baseline = %s (%s -> %s); load before %.1f / %.1f%s%s" % (
            name, r["flood_over_baseline_p99"], fl(base["quiet"]["p99_us"]),
            fl(flood["quiet"]["p99_us"]), base["loadavg_1min_before"],
            flood["loadavg_1min_before"],
            "; noisy %s" % flood["noisy"]["path"] if flood.get("noisy") else "",
            "; engines before/after: %s / %s" % (r["placement_before"], r["placement_after"])
            if "placement_before" in r else ""))
    if comp:
        for phase in ("baseline", "flood"):
            c = comp[phase]
            print("vtpmd / swtpm, %s: quiet p50 %s, p99 %s, max %s, throughput %s" % (
                phase, c["p50"], c["p99"], c["max"], c["throughput"]))
        if "noisy_create_primary_count" in comp:
            print("vtpmd / swtpm, noisy CreatePrimary count: %s"
                  % comp["noisy_create_primary_count"])


def environment(args):
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "vtpmd": B.command_output([os.path.join(args.build_dir, "src", "vtpmd"), "--version"]),
        "vtpmd_built": B._mtime(os.path.join(args.build_dir, "src", "vtpmd")),
        "swtpm": (B.command_output(["swtpm", "--version"]).splitlines() or [""])[0],
        "libtpms": B.command_output(["dpkg-query", "-W", "-f", "${Version}", "libtpms0"]),
        "git": B.command_output(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
    }


def write_json(path, env, args, results, comp):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {"benchmark": "noisy_neighbour_bench", "environment": env,
           "settings": {"quiet": args.quiet, "seconds": args.seconds,
                        "noisy_depth": args.noisy_depth, "quiet_command":
                        "TPM2_PCR_Extend(PCR %d, sha256)" % QUIET_PCR,
                        "noisy_command": "TPM2_CreatePrimary(owner, RSA-2048 storage, "
                                         "unique varies) + TPM2_FlushContext"},
           "runs": list(results.values()),
           "ratio_vtpmd_over_swtpm": comp}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quiet", type=int, default=10, metavar="N",
                   help="quiet instances next to the noisy one (default 10)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="length of each phase, baseline and flood (default 10)")
    p.add_argument("--only", choices=("vtpmd", "swtpm"), help="measure one server only")
    p.add_argument("--noisy-depth", type=int, default=1, metavar="N",
                   help="1 (default): the noisy guest has one CreatePrimary in flight on "
                        "its data socket; N > 1 (vtpmd only): N queued through the "
                        "control socket")
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--dir", default="/var/tmp",
                   help="a fresh directory for all state is made in here (default /var/tmp)")
    p.add_argument("--json", help="result file (default results/noisy-neighbour-<date>.json)")
    args = p.parse_args(argv)
    if args.quiet < 1:
        p.error("--quiet needs at least 1")
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    if args.noisy_depth < 1:
        p.error("--noisy-depth needs at least 1")
    if args.noisy_depth > 1 and args.only != "vtpmd":
        p.error("--noisy-depth > 1 floods through vtpmd's control socket: add --only vtpmd")
    return args


def main(argv=None):
    args = parse_args(argv)
    args.build_dir = os.path.abspath(args.build_dir)
    signal.signal(signal.SIGTERM, B._terminate)
    signal.signal(signal.SIGHUP, B._terminate)
    B.raise_fd_limit(args.quiet + 1)
    os.makedirs(args.dir, exist_ok=True)
    parent = tempfile.mkdtemp(prefix="noisy-bench-", dir=os.path.abspath(args.dir))
    if len(parent) > 70:
        raise BenchError("--dir path too long for Unix socket paths: %s" % parent)
    children = B.Children()
    results = {}
    try:
        env = environment(args)
        print("noisy neighbour, %s: 1 noisy + %d quiet instances, %s s per phase, "
              "load %s" % (env["date"], args.quiet, args.seconds, env["loadavg"]))
        for name in [args.only] if args.only else ["vtpmd", "swtpm"]:
            print("%s ..." % name, end=" ", flush=True)
            r = results[name] = run_server(name, args, parent, children)
            print("quiet p99 %s -> %s under the flood" % (
                B.fmt_latency(r["phases"][0]["quiet"]["p99_us"]),
                B.fmt_latency(r["phases"][1]["quiet"]["p99_us"])), flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)     # a second Ctrl-C must not stop the cleanup
        children.stop_all()
        shutil.rmtree(parent, ignore_errors=True)
    comp = comparisons(results)
    print_table(results, comp)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.json or os.path.join(REPO, "results", "noisy-neighbour-%s.json" % stamp)
    write_json(path, env, args, results, comp)
    print("\nresults: %s" % path)
    return 0


if __name__ == "__main__":
    B.run_main(main, "noisy_neighbour_bench")
