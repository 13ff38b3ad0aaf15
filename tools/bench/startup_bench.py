#!/usr/bin/env python3
"""Start-up with N instances on disk: eager checks, lazy engine restore.

vtpmd opens its state directory eagerly: before it accepts a connection it
authenticates and decrypts every sealed blob against the manifest (so a
tampered or rolled-back instance is reported at start, not at the guest's
first command) and commits the reconciled manifest. Loading an instance
into libtpms is lazy: the first command to it pays that cost. This script
measures both halves, so the cost of the other choices is visible:

* ``ready_s``     -- exec to the control socket answering (the eager part);
* ``first_cmd_s`` -- then one TPM2_GetRandom to every instance, 64 in
                     flight (the lazy part: what an eager engine restore
                     would add to start-up);
* ``again_s``     -- the same round again (instances now resident).

Twice: after SIGTERM (every instance saved with volatile state, resumed
once at start, then re-saved without it) and after SIGKILL (no volatile
state). A benchmark, not a test. Usage:
  python3 tools/bench/startup_bench.py [--instances 1000] [--build-dir build]
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--build-dir", default=os.path.join(HERE, "..", "..", "build"))
    return p.parse_args()


def pipelined(client, requests, window=64):
    """Send (method, params) requests with up to *window* in flight; return
    the responses in order; any error response aborts."""
    pending, out, it = [], [], iter(requests)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < window:
            try:
                method, params = next(it)
            except StopIteration:
                exhausted = True
                break
            pending.append(client.send(method, params))
        if pending:
            resp = client.wait(pending.pop(0))
            if "error" in resp:
                sys.exit("request failed: %r" % (resp,))
            out.append(resp["result"])
    return out


def round_of_commands(d, uuids, T):
    with d.client(timeout=600) as c:
        t0 = time.monotonic()
        pipelined(c, (("exec", {"uuid": u, "command": T.hexs(T.get_random(8))}) for u in uuids))
        return time.monotonic() - t0


def timed_start(d):
    t0 = time.monotonic()
    d.restart()
    return time.monotonic() - t0


def main():
    args = parse_args()
    os.environ["VTPMD_BUILD_DIR"] = os.path.abspath(args.build_dir)
    sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
    import harness  # noqa: E402  (reads VTPMD_BUILD_DIR)
    import tpmcmd as T  # noqa: E402

    n = args.instances
    with harness.Daemon(log_level="info") as d:
        with d.client(timeout=600) as c:
            uuids = [r["uuid"] for r in pipelined(c, (("add", {"auto_startup": True}) for _ in range(n)))]
            nv = 0x01500000
            pipelined(c, (("exec", {"uuid": u, "command": T.hexs(T.nv_define_space(nv, 32))}) for u in uuids))
            pipelined(c, (("exec", {"uuid": u, "command": T.hexs(T.nv_write(nv, b"x" * 32))}) for u in uuids))
        state_bytes = sum(os.path.getsize(os.path.join(d.state_dir, f)) for f in os.listdir(d.state_dir))
        results = {"instances": n, "state_dir_bytes": state_bytes, "date": time.strftime("%Y-%m-%d %H:%M")}
        for how in ("sigterm", "sigkill"):
            if how == "sigterm":
                d.stop()
            else:
                d.kill()
            ready = timed_start(d)
            first = round_of_commands(d, uuids, T)
            again = round_of_commands(d, uuids, T)
            results[how] = {"ready_s": round(ready, 3), "first_cmd_s": round(first, 3), "again_s": round(again, 3)}
    print(json.dumps(results, indent=2))
    print("\n%d instances (%.1f MB of sealed state)" % (n, state_bytes / 1e6))
    print("%-8s %10s %14s %10s" % ("after", "ready (s)", "1st cmd all", "2nd round"))
    for how in ("sigterm", "sigkill"):
        r = results[how]
        print("%-8s %10.3f %14.3f %10.3f" % (how, r["ready_s"], r["first_cmd_s"], r["again_s"]))


if __name__ == "__main__":
    main()
