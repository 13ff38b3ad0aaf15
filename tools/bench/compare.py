#!/usr/bin/env python3
"""vtpmd against Debian's swtpm, side by side in one run: a table of ratios.

Both servers are started here and driven by the same load generator
(``build/tools/bench/loadgen``, one epoll thread) through the same kind of
socket: each instance's swtpm-compatible Unix data socket.  vtpmd is one
daemon whose instances are added over the control socket (``swtpm_path``,
``auto_startup``); swtpm is ``swtpm socket --tpm2`` with one process per
instance (``--flags not-need-init,startup-clear``).  The servers run pinned
to one CPU (``--server-cpu``, default 0), the load generator and this script
on another (``--client-cpu``, default 1); the two servers run back to back
for every configuration.

Sections (each reported as vtpmd, swtpm, vtpmd/swtpm):

* start    -- vtpmd ``add`` (durable) to the first answered TPM2_GetRandom on
              the new data socket, against swtpm spawn to its first answer;
              p50/p99 over ``--starts`` sequential starts.
* loads    -- PCR_Extend, GetRandom, PCR_Read, CreatePrimary ECC P-256 and
              RSA-2048 (each followed by an untimed FlushContext), NV_Write
              (64-byte index, 8 changing bytes; vtpmd answers once the write
              is on disk, Debian's swtpm 0.7.1 never fsyncs) with 1, 100 and
              1000 instances and 1 or 64 clients.  A client keeps one command
              in flight and sends its next one to the next of its instances,
              so 1 client over 1000 instances is 1000 interleaved instances.
              ops/s, p50, p99, the servers' CPU time; for vtpmd the engine's
              swaps per second and mean swap cost (``status``).
* density  -- RSS and PSS per idle instance of one vtpmd with 1k, 10k and
              100k instances (no endpoints), and with the 1000 instances of
              the loads section (endpoints open), against the private memory
              and PSS of an idle swtpm process.

Results: tables on stdout, JSON and a markdown summary in ``results/``
(``compare-<date>.json`` / ``.md``).  ``--quick`` (under 2 minutes) runs
shorter windows, one run per cell, fewer starts and density at 1k only.

Usage::

    python3 tools/bench/compare.py [--quick] [--build-dir build]
        [--instances 1,100,1000] [--loads pcr_extend,...] [--clients 1,64]
        [--seconds S] [--density 1000,10000,100000] [--only vtpmd|swtpm]
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nv_durable_bench as nvb  # noqa: E402 - launchers, control client, process handling
from nv_durable_bench import T  # noqa: E402 - the project's TPM command builders

REPO = nvb.REPO
NV_INDEX = 0x01500000
NV_SIZE = 64
TPM_RC_NV_DEFINED = 0x14C
LOADGEN_TIMEOUT = 600


def load_specs():
    """name -> loadgen arguments (the same bytes for both servers)."""
    nv_write = T.nv_write(NV_INDEX, bytes(NV_SIZE))
    return {
        "pcr_extend": ["--command", T.hexs(T.pcr_extend(16, b"\x11" * 32))],
        "get_random": ["--command", T.hexs(T.get_random(32))],
        "pcr_read": ["--command", T.hexs(T.pcr_read(0))],
        "create_primary_ecc": ["--command", T.hexs(T.create_primary_ecc_p256()),
                               "--flush-created"],
        "create_primary_rsa": ["--command", T.hexs(T.create_primary_rsa2048()),
                               "--flush-created"],
        # the data's last 8 bytes change with every write (before the u16 offset)
        "nv_write": ["--command", T.hexs(nv_write), "--vary-offset", str(len(nv_write) - 10),
                     "--prep", "%s:0,%d" % (T.hexs(T.nv_define_space(NV_INDEX, NV_SIZE)),
                                            TPM_RC_NV_DEFINED)],
    }


SLOW_LOADS = ("create_primary_rsa",)   # ~10-60 ms per command: a longer window


# --------------------------------------------------------------------------
# pinning, process measurements
# --------------------------------------------------------------------------


@contextlib.contextmanager
def pinned(cpu):
    """Run the body (and whatever it spawns, which inherits the mask) on *cpu*."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def smaps(pid):
    """{Rss, Pss, Private_Clean, Private_Dirty, ...} in bytes, or None."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        return None
    return out


def private(m):
    return m["Private_Clean"] + m["Private_Dirty"]


def cpu_seconds(pids):
    return nvb.process_usage(pids)[0]


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def pct(values, fraction):
    return nvb.percentile(sorted(values), fraction)


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------


class Vtpmd(nvb.Vtpmd):
    def status(self):
        client = nvb.ControlClient(self.control)
        try:
            return client.call_many("status", [{}])[0]
        finally:
            client.close()

    def engine_counters(self):
        shards = self.status()["engine"]["shards"]
        return sum(s["swaps"] for s in shards), sum(s["swap_us_total"] for s in shards)

    def memory(self):
        return smaps(self.proc.pid)


def make_vtpmd(args, children, workdir, count):
    server = Vtpmd(children, args.build_dir, workdir, count)
    if args.vtpmd:
        server.binary = os.path.abspath(args.vtpmd)
    return server


def loadgen(binary, sockets_file, spec, clients, seconds, client_cpu):
    argv = ["taskset", "-c", str(client_cpu), binary, "--sockets", sockets_file,
            "--clients", str(clients), "--seconds", str(seconds)] + spec
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=LOADGEN_TIMEOUT)
    if done.returncode != 0:
        raise nvb.BenchError("loadgen failed: %s" % done.stderr.decode(errors="replace").strip())
    return json.loads(done.stdout)


def exchange(sock, command):
    sock.sendall(command)
    data = b""
    while len(data) < 10 or len(data) < int.from_bytes(data[2:6], "big"):
        chunk = sock.recv(4096)
        if not chunk:
            raise nvb.BenchError("data socket closed before the answer")
        data += chunk
    if T.resp_rc(data) != 0:
        raise nvb.BenchError("first command failed: rc 0x%x" % T.resp_rc(data))
    return data


def first_answer(path, deadline, proc=None):
    """Connect to *path* as soon as it accepts, send GetRandom, wait for the answer."""
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            break
        except OSError:
            s.close()
            if proc is not None and proc.poll() is not None:
                raise nvb.BenchError("swtpm exited with %s" % proc.returncode) from None
            if time.monotonic() > deadline:
                raise nvb.BenchError("%s never accepted" % path) from None
            time.sleep(0.0002)
    with s:
        exchange(s, T.get_random(16))


# --------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------


def file_create_us(directory, n=20):
    """Mean microseconds to create (and then remove) an empty file in *directory*."""
    names = [os.path.join(directory, ".create-probe-%d" % i) for i in range(n)]
    t0 = time.perf_counter()
    for name in names:
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o600))
    spent = time.perf_counter() - t0
    for name in names:
        os.unlink(name)
    return spent / n * 1e6


def settle_filesystem(directory, limit=60.0, cheap_us=60.0):
    """Wait until creating files in *directory* is cheap again; the cost and the wait.

    Both servers create files to start an instance (sockets; swtpm its state
    file too). On ext4 a block group with many inodes deleted in the last 30 s
    makes every creation scan them (recently_deleted(): 0.3-1 ms per file here
    after an earlier run's cleanup), which swamps what is measured."""
    t0 = time.monotonic()
    cost = file_create_us(directory)
    while cost > cheap_us and time.monotonic() - t0 < limit:
        time.sleep(2)
        cost = file_create_us(directory)
    return round(cost, 1), round(time.monotonic() - t0, 1)


def measure_starts(args, children, parent):
    """add/spawn -> first answer, sequentially, both servers pinned."""
    out = {}
    out["file_create_us"], out["settle_s"] = settle_filesystem(parent)
    if args.only != "swtpm":
        workdir = os.path.join(parent, "start-vtpmd")
        os.makedirs(workdir)
        with pinned(args.server_cpu):
            server = make_vtpmd(args, children, workdir, 0)
            server.start()
        client = nvb.ControlClient(server.control)
        times = []
        try:
            for i in range(args.starts):
                path = os.path.join(workdir, "s%04d" % i)
                t0 = time.perf_counter()
                client.call_many("add", [{"tpm": "2.0", "auto_startup": True, "swtpm_path": path}])
                first_answer(path, time.monotonic() + 30)
                times.append(time.perf_counter() - t0)
        finally:
            client.close()
            server.stop()
        out["vtpmd"] = _summary_ms(times)
    if args.only != "vtpmd":
        workdir = os.path.join(parent, "start-swtpm")
        os.makedirs(workdir)
        server = nvb.Swtpm(children, workdir, 0)
        server.binary = shutil.which("swtpm")
        times = []
        try:
            for i in range(args.starts):
                t0 = time.perf_counter()
                with pinned(args.server_cpu):
                    path = server._spawn(i)
                first_answer(path, time.monotonic() + 30, server.procs[-1])
                times.append(time.perf_counter() - t0)
        finally:
            server.stop()
        out["swtpm"] = _summary_ms(times)
    return out


def _summary_ms(times):
    return {"n": len(times), "p50_ms": round(pct(times, 0.5) * 1e3, 3),
            "p99_ms": round(pct(times, 0.99) * 1e3, 3), "min_ms": round(min(times) * 1e3, 3)}


def start_server(name, args, children, workdir, n):
    os.makedirs(workdir)
    t0 = time.monotonic()
    with pinned(args.server_cpu):
        if name == "vtpmd":
            server = make_vtpmd(args, children, workdir, n)
        else:
            server = nvb.Swtpm(children, workdir, n)
        paths = server.start()
    setup = time.monotonic() - t0
    sockets_file = os.path.join(workdir, "sockets.txt")
    with open(sockets_file, "w") as f:
        f.write("\n".join(paths) + "\n")
    return server, sockets_file, setup


def idle_memory(name, server):
    """Idle memory right after set-up, before any load."""
    time.sleep(0.5)
    if name == "vtpmd":
        m = server.memory()
        return {"rss": m["Rss"], "pss": m["Pss"], "private": private(m)}
    ms = [m for m in (smaps(p) for p in server.pids()) if m]
    k = len(ms)
    return {"processes": k, "rss_per_process": sum(m["Rss"] for m in ms) // k,
            "pss_per_process": sum(m["Pss"] for m in ms) // k,
            "private_per_process": sum(private(m) for m in ms) // k}


def measure_loads(args, children, parent, specs):
    """Both servers hold N instances at once (idle one costs no CPU); every
    cell runs vtpmd, swtpm, vtpmd, swtpm ... (--repeat times each) so that
    both see the same background load; the median run of each is reported."""
    runs, raw, memory = [], [], {}
    for n in args.counts:
        servers = {}
        try:
            for name in args.servers:
                workdir = os.path.join(parent, "%s-%d" % (name, n))
                print("%s x%d: setting up ..." % (name, n), end=" ", flush=True)
                server, sockets_file, setup = start_server(name, args, children, workdir, n)
                servers[name] = (server, sockets_file)
                memory[(name, n)] = dict(idle_memory(name, server), setup_s=round(setup, 2))
                print("%.1f s" % setup, flush=True)
            for load in args.loads:
                for clients in args.client_counts:
                    if clients > n and clients != args.client_counts[0]:
                        continue          # 64 clients on 1 instance = 1 client
                    cell = {name: [] for name in servers}
                    for _ in range(args.repeat):
                        for name, (server, sockets_file) in servers.items():
                            cell[name].append(run_cell(args, name, server, sockets_file,
                                                       specs[load], load, n, min(clients, n)))
                    for name, results in cell.items():
                        raw += results
                        runs.append(median_run(results))
                        if args.repeat > 1:
                            show(runs[-1], "median")
        finally:
            for name, (server, _) in servers.items():
                server.stop()
                if not args.keep:
                    shutil.rmtree(os.path.join(parent, "%s-%d" % (name, n)), ignore_errors=True)
    return runs, raw, memory


MEDIAN_KEYS = ("ops_per_s", "p50_us", "p90_us", "p99_us", "max_us", "server_cpu_per_op_us",
               "swaps_per_s", "swap_us_avg", "swap_share_of_wall", "loadavg_1min_before")


def median_run(results):
    """The first run with every measured value replaced by its median."""
    out = dict(results[0], repeats=len(results))
    for key in MEDIAN_KEYS:
        values = sorted(r[key] for r in results if r.get(key) is not None)
        out[key] = values[(len(values) - 1) // 2] if values else None
    out["ops"] = sum(r["ops"] for r in results)
    return out


def show(r, tag=""):
    print("  %-18s x%-5d c%-3d %s %10s ops/s  p50 %9s  p99 %9s%s %s" % (
        r["load"], r["instances"], r["clients"], r["server"], "{:,.0f}".format(r["ops_per_s"]),
        nvb.fmt_latency(r["p50_us"]), nvb.fmt_latency(r["p99_us"]),
        "  swaps %s/s @ %s us" % (r["swaps_per_s"], r["swap_us_avg"])
        if r["server"] == "vtpmd" and r.get("swaps_per_s") else "", tag), flush=True)


def run_cell(args, name, server, sockets_file, spec, load, n, clients):
    seconds = args.seconds * (args.slow_factor if load in SLOW_LOADS else 1)
    counters = server.engine_counters() if name == "vtpmd" else None
    pids = server.pids()
    cpu0, t0, load1 = cpu_seconds(pids), time.monotonic(), loadavg()[0]
    r = loadgen(args.loadgen, sockets_file, spec + ["--warmup", str(args.warmup)], clients,
                seconds, args.client_cpu)
    wall = time.monotonic() - t0
    r.update(server=name, load=load, loadavg_1min_before=load1,
             server_cpu_per_op_us=None, wall_s=round(wall, 2))
    if r["ops"]:
        r["server_cpu_per_op_us"] = round((cpu_seconds(pids) - cpu0) / wall * seconds
                                          / r["ops"] * 1e6, 1)
    if counters:
        swaps, swap_us = server.engine_counters()
        d_swaps, d_us = swaps - counters[0], swap_us - counters[1]
        r["swaps_per_s"] = round(d_swaps / wall)
        r["swap_us_avg"] = round(d_us / d_swaps, 2) if d_swaps else None
        r["swap_share_of_wall"] = round(d_us / 1e6 / wall, 3)
    if args.repeat == 1:
        show(r)
    return r


def measure_density(args, children, parent):
    """vtpmd alone: idle memory per instance at each count (no endpoints)."""
    out = []
    for n in args.density_counts:
        workdir = os.path.join(parent, "density-%d" % n)
        os.makedirs(workdir)
        with pinned(args.server_cpu):
            server = make_vtpmd(args, children, workdir, 0)
            server.start()
        try:
            time.sleep(0.3)
            base = server.memory()
            t0 = time.monotonic()
            client = nvb.ControlClient(server.control)
            try:
                for first in range(0, n, 10000):
                    client.call_many("add", [{"tpm": "2.0"}] * min(10000, n - first))
            finally:
                client.close()
            added = time.monotonic() - t0
            time.sleep(0.5)
            m = server.memory()
            row = {"instances": n, "add_s": round(added, 1),
                   "rss_base": base["Rss"], "rss": m["Rss"], "pss": m["Pss"],
                   "rss_per_instance": (m["Rss"] - base["Rss"]) // n,
                   "pss_per_instance": (m["Pss"] - base["Pss"]) // n}
            out.append(row)
            print("density x%d: added in %.1f s, RSS %.1f MiB (+%d B/instance), PSS +%d B/instance"
                  % (n, added, m["Rss"] / 2**20, row["rss_per_instance"], row["pss_per_instance"]),
                  flush=True)
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def fmt_ratio(r):
    return "-" if r is None else "%.2f" % r


def summarise(doc):
    """The targets of issue 7 and a markdown table of every ratio."""
    runs = {(r["server"], r["load"], r["instances"], r["clients"]): r for r in doc["loads"]}
    lines = ["# vtpmd vs swtpm, %s" % doc["environment"]["date"], "",
             "Load average before: %s; servers on CPU %d, load generator on CPU %d; %s." % (
                 doc["environment"]["loadavg_before"], doc["settings"]["server_cpu"],
                 doc["settings"]["client_cpu"], doc["environment"]["cpu_model"]), ""]
    lines += ["| load | instances | clients | vtpmd ops/s | swtpm ops/s | ops ratio | "
              "vtpmd p50 | swtpm p50 | vtpmd p99 | swtpm p99 | p50 ratio | swaps/s | swap us |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    keys = sorted({k[1:] for k in runs}, key=lambda k: (doc["settings"]["loads"].index(k[0]),
                                                        k[1], k[2]))
    for load, n, c in keys:
        v, s = runs.get(("vtpmd", load, n, c)), runs.get(("swtpm", load, n, c))
        lines.append("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            load, n, c, _ops(v), _ops(s), fmt_ratio(ratio(_g(v, "ops_per_s"), _g(s, "ops_per_s"))),
            nvb.fmt_latency(_g(v, "p50_us")), nvb.fmt_latency(_g(s, "p50_us")),
            nvb.fmt_latency(_g(v, "p99_us")), nvb.fmt_latency(_g(s, "p99_us")),
            fmt_ratio(ratio(_g(v, "p50_us"), _g(s, "p50_us"))),
            _g(v, "swaps_per_s", "-"), _g(v, "swap_us_avg", "-")))
    starts = [(k, doc[k]) for k in ("start", "start_tmpfs") if doc.get(k)]
    if starts:
        lines += ["", "| instance start: add/spawn -> first answer | vtpmd p50 | vtpmd p99 | "
                  "swtpm p50 | swtpm p99 | p50 ratio | file create before |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for key, st in starts:
            lines.append("| state on %s | %s ms | %s ms | %s ms | %s ms | %s | %s us |" % (
                doc["settings"]["tmpfs" if key == "start_tmpfs" else "dir"],
                _g(st.get("vtpmd"), "p50_ms", "-"), _g(st.get("vtpmd"), "p99_ms", "-"),
                _g(st.get("swtpm"), "p50_ms", "-"), _g(st.get("swtpm"), "p99_ms", "-"),
                fmt_ratio(ratio(_g(st.get("vtpmd"), "p50_ms"), _g(st.get("swtpm"), "p50_ms"))),
                st.get("file_create_us", "-")))
        lines.append("")
        lines.append("vtpmd's `add` answers once the new TPM is on disk (fdatasync); swtpm "
                     "writes nothing durable before answering.")
    swtpm_priv = _swtpm_private(doc)
    if doc.get("density") or doc.get("idle_memory"):
        lines += ["", "| idle memory per instance | RSS | PSS | vs swtpm private/process |",
                  "|---|---:|---:|---:|"]
        for row in doc.get("density", []):
            lines.append("| vtpmd x%d (no endpoints) | %s | %s | %s |" % (
                row["instances"], _kib(row["rss_per_instance"]), _kib(row["pss_per_instance"]),
                fmt_ratio(ratio(row["rss_per_instance"], swtpm_priv))))
        for m in doc.get("idle_memory", []):
            if m["server"] == "vtpmd" and m.get("rss_per_instance") is not None:
                lines.append("| vtpmd x%d (endpoints open) | %s | %s | %s |" % (
                    m["instances"], _kib(m["rss_per_instance"]), _kib(m["pss_per_instance"]),
                    fmt_ratio(ratio(m["rss_per_instance"], swtpm_priv))))
            elif m["server"] == "swtpm":
                lines.append("| swtpm x%d, per process (private %s) | %s | %s | 1 |" % (
                    m["instances"], _kib(m["private_per_process"]), _kib(m["rss_per_process"]),
                    _kib(m["pss_per_process"])))
    lines += ["", "| target (issue 7) | measured | met |", "|---|---|---|"]
    for t in doc["targets"]:
        lines.append("| %s | %s | %s |" % (t["target"], t["measured"],
                                           {True: "yes", False: "**no**", None: "n/a"}[t["met"]]))
    return "\n".join(lines) + "\n"


def _g(d, key, default=None):
    return default if not d or d.get(key) is None else d[key]


def _ops(r):
    return "-" if not r else "{:,.0f}".format(r["ops_per_s"])


def _kib(b):
    return "%.1f KiB" % (b / 1024) if b is not None else "-"


def _swtpm_private(doc):
    values = [m["private_per_process"] for m in doc.get("idle_memory", [])
              if m["server"] == "swtpm"]
    return min(values) if values else None


def targets(doc):
    runs = {(r["server"], r["load"], r["instances"], r["clients"]): r for r in doc["loads"]}
    out = []
    priv = _swtpm_private(doc)
    per_instance = [row["rss_per_instance"] for row in doc.get("density", [])]
    per_instance += [m["rss_per_instance"] for m in doc.get("idle_memory", [])
                     if m["server"] == "vtpmd" and m.get("rss_per_instance") is not None]
    worst = max(per_instance, default=None)
    r = ratio(worst, priv)
    out.append({"target": "idle instance memory <= 1/20 swtpm private",
                "measured": "%s (worst vtpmd RSS/instance %s, swtpm private %s)" % (
                    fmt_ratio(r), _kib(worst), _kib(priv)),
                "met": None if r is None else r <= 0.05})
    for key in ("start", "start_tmpfs"):
        st = doc.get(key, {})
        if not st:
            continue
        r = ratio(_g(st.get("vtpmd"), "p50_ms"), _g(st.get("swtpm"), "p50_ms"))
        out.append({"target": "add -> first answer <= 1/4 of swtpm spawn -> first answer "
                              "(p50, state on %s)" % doc["settings"]["tmpfs" if key == "start_tmpfs"
                                                                        else "dir"],
                    "measured": fmt_ratio(r), "met": None if r is None else r <= 0.25})
    v, s = runs.get(("vtpmd", "pcr_extend", 1, 1)), runs.get(("swtpm", "pcr_extend", 1, 1))
    r = ratio(_g(v, "p50_us"), _g(s, "p50_us"))
    out.append({"target": "single-instance PCR_Extend p50 <= 1.2x swtpm",
                "measured": fmt_ratio(r), "met": None if r is None else r <= 1.2})
    # Aggregate throughput with the most instances and clients, for every
    # load measured (the target names no command).
    n = max(doc["settings"]["instances"])
    c = max(doc["settings"]["clients"])
    for load in dict.fromkeys(r["load"] for r in doc["loads"]):
        v, s = runs.get(("vtpmd", load, n, c)), runs.get(("swtpm", load, n, c))
        r = ratio(_g(v, "ops_per_s"), _g(s, "ops_per_s"))
        out.append({"target": "%s throughput, %d instances, %d clients >= swtpm" % (load, n, c),
                    "measured": fmt_ratio(r), "met": None if r is None else r >= 1.0})
    return out


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="short windows, one run per cell, 20 starts, density 1k only: under 2 minutes")
    p.add_argument("--instances", default="1,100,1000")
    p.add_argument("--clients", default="1,64")
    p.add_argument("--loads", default=None, help="comma-separated, default all")
    p.add_argument("--seconds", type=float, default=None, help="window per cell (default 2, quick 0.3)")
    p.add_argument("--warmup", type=float, default=None,
                   help="untimed lead-in per cell (default 0.3, quick 0.1)")
    p.add_argument("--slow-factor", type=float, default=None,
                   help="window multiplier for RSA CreatePrimary (default 3, quick 2)")
    p.add_argument("--starts", type=int, default=None, help="default 100, quick 20")
    p.add_argument("--density", default=None, help="default 1000,10000,100000; quick 1000")
    p.add_argument("--repeat", type=int, default=None,
                   help="runs per cell and server, alternating; medians reported (default 3, quick 1)")
    p.add_argument("--vtpmd", default=None, help="vtpmd binary (default BUILD/src/vtpmd)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--only", choices=("vtpmd", "swtpm"))
    p.add_argument("--skip", default="", help="comma-separated sections to skip: start,loads,density")
    p.add_argument("--dir", default="/var/tmp", help="state directories go in here")
    p.add_argument("--tmpfs", default="/dev/shm",
                   help="the start section runs again with state here (no disk syncs)")
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--out", default=os.path.join(REPO, "results"))
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    specs = load_specs()
    args.loads = args.loads.split(",") if args.loads else list(specs)
    for load in args.loads:
        if load not in specs:
            p.error("unknown load %s (known: %s)" % (load, ", ".join(specs)))
    args.counts = [int(x) for x in args.instances.split(",")]
    args.client_counts = [int(x) for x in args.clients.split(",")]
    q = args.quick
    args.seconds = args.seconds or (0.3 if q else 2.0)
    args.slow_factor = args.slow_factor or (2.0 if q else 3.0)
    args.starts = args.starts or (20 if q else 100)
    args.repeat = args.repeat or (1 if q else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.1 if q else 0.3)
    args.density_counts = [int(x) for x in (args.density or
                                             ("1000" if q else "1000,10000,100000")).split(",")
                           if x]
    args.skip = set(filter(None, args.skip.split(",")))
    args.servers = [args.only] if args.only else ["vtpmd", "swtpm"]
    args.build_dir = os.path.abspath(args.build_dir)
    args.loadgen = os.path.join(args.build_dir, "tools", "bench", "loadgen")
    if not os.access(args.loadgen, os.X_OK):
        p.error("%s missing: build first (ninja -C %s)" % (args.loadgen, args.build_dir))
    if os.cpu_count() < 2 or args.server_cpu == args.client_cpu:
        p.error("needs two CPUs: --server-cpu and --client-cpu must differ")
    return args, specs


def environment(args):
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "cpu_model": model, "loadavg_before": loadavg(),
        "mem_total_kib": int(open("/proc/meminfo").readline().split()[1]),
        "vtpmd_built": nvb._mtime(os.path.join(args.build_dir, "src", "vtpmd")),
        "swtpm": (nvb.command_output(["swtpm", "--version"]).splitlines() or [""])[0],
        "libtpms": nvb.command_output(["dpkg-query", "-W", "-f", "${Version}", "libtpms0"]),
        "git": nvb.command_output(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
    }


def main(argv=None):
    args, specs = parse_args(argv)
    signal.signal(signal.SIGTERM, nvb._terminate)
    signal.signal(signal.SIGHUP, nvb._terminate)
    nvb.raise_fd_limit(max(args.counts + [min(max(args.density_counts, default=0), 1000)]))
    os.makedirs(args.dir, exist_ok=True)
    parent = tempfile.mkdtemp(prefix="vtpm-compare-", dir=os.path.abspath(args.dir))
    children = nvb.Children()
    started = time.monotonic()
    doc = {"benchmark": "compare", "environment": environment(args),
           "settings": {"instances": args.counts, "clients": args.client_counts,
                        "loads": args.loads, "seconds": args.seconds, "warmup": args.warmup,
                        "slow_factor": args.slow_factor, "starts": args.starts,
                        "repeat": args.repeat, "vtpmd": args.vtpmd,
                        "density": args.density_counts, "quick": args.quick,
                        "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
                        "dir": args.dir, "tmpfs": args.tmpfs},
           "loads": [], "idle_memory": []}
    print("vtpmd vs swtpm, %s, load average %s" % (doc["environment"]["date"],
                                                  doc["environment"]["loadavg_before"]))
    os.sched_setaffinity(0, {args.client_cpu})
    try:
        if "start" not in args.skip:
            doc["start"] = measure_starts(args, children, parent)
            print("start, state on %s: %s" % (args.dir, json.dumps(doc["start"])), flush=True)
            if os.path.isdir(args.tmpfs):
                tmp = tempfile.mkdtemp(prefix="vtpm-compare-", dir=args.tmpfs)
                try:
                    doc["start_tmpfs"] = measure_starts(args, children, tmp)
                finally:
                    children.stop_all()
                    shutil.rmtree(tmp, ignore_errors=True)
                print("start, state on %s: %s" % (args.tmpfs, json.dumps(doc["start_tmpfs"])),
                      flush=True)
        if "loads" not in args.skip:
            runs, raw, memory = measure_loads(args, children, parent, specs)
            doc["loads"], doc["load_runs"] = runs, raw
            for (name, n), m in memory.items():
                doc["idle_memory"].append(dict(m, server=name, instances=n))
            _per_instance_idle(doc)
        if "density" not in args.skip and args.only != "swtpm":
            doc["density"] = measure_density(args, children, parent)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        children.stop_all()
        if not args.keep:
            shutil.rmtree(parent, ignore_errors=True)
    doc["environment"]["loadavg_after"] = loadavg()
    doc["duration_s"] = round(time.monotonic() - started, 1)
    doc["targets"] = targets(doc)
    md = summarise(doc)
    print()
    print(md)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(args.out, "compare-%s%s" % (stamp, "-quick" if args.quick else ""))
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    with open(base + ".md", "w") as f:
        f.write(md)
    print("results: %s.json, %s.md (%.0f s)" % (base, base, doc["duration_s"]))
    return 0


def _per_instance_idle(doc):
    """vtpmd's idle memory with N endpoint instances, per instance over x1."""
    mem = {m["instances"]: m for m in doc["idle_memory"] if m["server"] == "vtpmd"}
    base = mem.get(min(mem)) if mem else None
    for n, m in mem.items():
        if base is None or n == base["instances"]:
            m["rss_per_instance"] = m["pss_per_instance"] = None
            continue
        m["rss_per_instance"] = (m["rss"] - base["rss"]) // (n - base["instances"])
        m["pss_per_instance"] = (m["pss"] - base["pss"]) // (n - base["instances"])


if __name__ == "__main__":
    nvb.run_main(main, "compare")
