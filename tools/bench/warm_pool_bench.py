#!/usr/bin/env python3
"""`vtpmctl add` with EKs and certificates, with and without a warm pool.

Each round adds one instance with ``--ek rsa,ecc --ek-cert --platform-cert``
(RSA and ECC EKs from the TCG templates, their certificates and a platform
certificate) and times the control call. Without a pool every add generates
its keys on the engine; with ``--warm-pool N`` an add takes a member that
was manufactured ahead and only gets its certificates. Adds are spaced by
``--gap`` seconds (a toolstack starting guests), so the pool can refill
between them; with no gap the pool drains and later adds fall back to
manufacture, which the ``from_pool`` count shows. A benchmark, not a test:
  python3 tools/bench/warm_pool_bench.py [--adds 20] [--pool 4] [--gap 0.3]
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = ["--ek", "rsa,ecc", "--ek-cert", "--platform-cert"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adds", type=int, default=20)
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--gap", type=float, default=0.3)
    p.add_argument("--build-dir", default=os.path.join(HERE, "..", "..", "build"))
    p.add_argument("--json", help="also write the results here")
    return p.parse_args()


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(harness, pool, adds, gap):
    extra = ["--warm-pool", str(pool), "--warm-pool-ek", "rsa,ecc"] if pool else []
    with harness.Daemon(extra, log_level="info") as d:
        if pool:
            harness.wait_until(lambda: d.result("status")["warm_pool"]["ready"] == pool, 120, what="pool full")
        times, from_pool = [], 0
        for _ in range(adds):
            started = time.monotonic()
            uuid = d.ctl_ok("add", *FLAGS).strip()
            times.append((time.monotonic() - started) * 1000)
            if d.result("show", uuid=uuid)["provisioning"].get("manufactured_by") == "warm_pool":
                from_pool += 1
            time.sleep(gap)
        return {"pool": pool, "adds": adds, "from_pool": from_pool, "p50_ms": round(statistics.median(times), 1),
                "p99_ms": round(percentile(times, 0.99), 1), "max_ms": round(max(times), 1)}


def main():
    args = parse_args()
    os.environ["VTPMD_BUILD_DIR"] = os.path.abspath(args.build_dir)
    sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
    import harness  # noqa: E402  (reads VTPMD_BUILD_DIR)
    results = [measure(harness, 0, args.adds, args.gap), measure(harness, args.pool, args.adds, args.gap)]
    print("| warm pool | adds | from pool | p50 | p99 | max |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print("| %d | %d | %d | %.1f ms | %.1f ms | %.1f ms |" % (r["pool"], r["adds"], r["from_pool"], r["p50_ms"],
                                                                 r["p99_ms"], r["max_ms"]))
    print("speed-up of the median add: %.1fx" % (results[0]["p50_ms"] / results[1]["p50_ms"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
