#!/usr/bin/env python3
"""N endpoints driven concurrently by unmodified tpm2-tools.

Each of N endpoints (CHANNEL_N; default 20 on swtpm -- one process each --
and 200 on vtpmd) runs getrandom, pcrextend (an endpoint-specific digest,
twice) and pcrread from its own worker thread (CHANNEL_WORKERS, default N).
All must succeed and each endpoint's PCR must hold exactly its own chain
(isolation), also when re-read after all workers finished.

    CHANNEL_TARGET=swtpm CHANNEL_N=20 python3 tests/channel/test_concurrency.py -v
"""

import hashlib
import os
import re
import sys
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from endpoint import TARGET, ChannelTestCase, ioctl, tools  # noqa: E402

NV_INDEX = "0x1500020"

N = int(os.environ.get("CHANNEL_N", "200" if TARGET == "vtpmd" else "20"))
WORKERS = int(os.environ.get("CHANNEL_WORKERS", str(N)))
PCR = 16
OTHER_PCR = 23


def digest(i):
    return hashlib.sha256(b"endpoint-%d" % i).digest()


def expected(i):
    v = bytes(32)
    for _ in range(2):
        v = hashlib.sha256(v + digest(i)).digest()
    return v


def pcrs(ep):
    out = tools(ep, "tpm2_pcrread", "sha256:%d,%d" % (PCR, OTHER_PCR)).stdout.decode()
    got = {}
    for idx, hexv in re.findall(r"(\d+)\s*:\s*0x([0-9A-Fa-f]{64})", out):
        got[int(idx)] = bytes.fromhex(hexv)
    return got


def sequence(ep, i):
    rnd = tools(ep, "tpm2_getrandom", "--hex", "16").stdout.strip()
    assert len(bytes.fromhex(rnd.decode())) == 16, rnd
    for _ in range(2):
        tools(ep, "tpm2_pcrextend", "%d:sha256=%s" % (PCR, digest(i).hex()))
    # NV and the control channel too: each instance's own index and data.
    data = ("instance %d" % i).encode()
    tools(ep, "tpm2_nvdefine", NV_INDEX, "-C", "o", "-s", str(len(data)), "-a", "ownerread|ownerwrite")
    tools(ep, "tpm2_nvwrite", NV_INDEX, "-C", "o", "-i", "-", input=data)
    got = tools(ep, "tpm2_nvread", NV_INDEX, "-C", "o", "-s", str(len(data))).stdout
    assert got == data, (got, data)
    info = ioctl(ep, "--info", "1").stdout
    assert b'"family":"2.0"' in info, info
    return pcrs(ep)


class ConcurrencyBody:
    KIND = None

    def test_concurrent_sequences_isolated(self):
        """N endpoints x (getrandom, 2x pcrextend, pcrread) in parallel: all
        succeed, every PCR holds only its own endpoint's chain."""
        t0 = time.monotonic()
        eps = self.endpoints(self.KIND, N)
        t1 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, WORKERS)) as pool:
            futs = [pool.submit(sequence, ep, i) for i, ep in enumerate(eps)]
            results = [f.result() for f in futs]   # re-raises a worker failure
        t2 = time.monotonic()
        for i, got in enumerate(results):
            self.assertEqual(got.get(PCR), expected(i), "endpoint %d (%r)" % (i, eps[i]))
            self.assertEqual(got.get(OTHER_PCR), bytes(32), "endpoint %d" % i)
        # isolation after the fact: re-read every endpoint, in parallel too
        with ThreadPoolExecutor(max_workers=max(1, WORKERS)) as pool:
            again = list(pool.map(pcrs, eps))
        for i, got in enumerate(again):
            self.assertEqual(got.get(PCR), expected(i), "endpoint %d re-read" % i)
        self.assertEqual(len({g[PCR] for g in again}), N)
        sys.stderr.write("\n  [%s/%s N=%d workers=%d] start %.2fs, sequences %.2fs\n"
                         % (TARGET, self.KIND, N, WORKERS, t1 - t0, t2 - t1))


class UnixConcurrencyTest(ConcurrencyBody, ChannelTestCase):
    KIND = "unix"


class TcpConcurrencyTest(ConcurrencyBody, ChannelTestCase):
    KIND = "tcp"


if __name__ == "__main__":
    unittest.main()
