#!/usr/bin/env python3
"""A TPM flooded with RSA key generation must not starve its neighbours.

One *noisy* TPM 2.0 instance is flooded through the control API with
TPM2_CreatePrimary of RSA-2048 storage keys (each with a different
``unique``, so each derives a new key: tens of ms apiece), FLOOD_DEPTH of
them queued at all times (each paired with a FlushContext of the new handle,
so the TPM never runs out of object slots).  Meanwhile QUIET instances each
run TPM2_PCR_Extend in a closed loop (one outstanding, over their own
control connections) for FLOOD_SECONDS.

Fairness, with bounds generous enough for a loaded 2-core machine and ASan:

* every quiet instance completes at least MIN_QUIET_EXTENDS extends during
  the flood;
* the quiet instances' p99 latency (client-side, send to answer) is at most
  P99_FACTOR x the longest CreatePrimary the noisy instance ran (its own
  ``timing.run_us``) + P99_SLACK_MS: a flood delays another instance by
  about one expensive command, never by the flood's queue.  The queue is
  deep on purpose: an engine that served commands in arrival order would
  keep a quiet command behind ~FLOOD_DEPTH key generations (about 1 s, 2 s
  under ASan), well above the bound (about 0.45-0.7 s; 1.1 s under ASan);
* the noisy instance made progress too (MIN_NOISY_CREATES key generations).

Holds whether the daemon serves the noisy instance on the shared engine
thread (round-robin, one command per instance per turn) or moves it to a
worker process of its own: the test does not look at placement, it only
prints it.  Prints the measured numbers.

Usage: python3 tests/integration/test_noisy_neighbour.py [-v]
"""

import json
import math
import os
import selectors
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tpmcmd as T  # noqa: E402

QUIET = 5
FLOOD_SECONDS = 8.0
FLOOD_DEPTH = 32              # CreatePrimary+Flush pairs queued on the noisy one
QUIET_PCR = 16
MIN_QUIET_EXTENDS = 20
MIN_NOISY_CREATES = 5
P99_FACTOR = 3
P99_SLACK_MS = 250
DRAIN_TIMEOUT_S = 60.0
FIRST_TRANSIENT = 0x80000000  # the handle CreatePrimary gets with no object loaded


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(fraction * len(sorted_values))) - 1]


def create_primary(seq):
    """CreatePrimary(owner, RSA-2048 storage) with *seq* as its ``unique``,
    so every call derives a different key."""
    template = (T.rsa2048_storage_template()[:-2]      # drop the empty unique
                + T._tpm2b(seq.to_bytes(8, "big")))
    return T.create_primary(template)


class Conn:
    """One control connection of the selector loop: a harness Client to
    send with, its socket read here line by line."""

    def __init__(self, client, uuid):
        self.client = client
        self.uuid = uuid
        self.buf = b""
        self.sent = {}          # request id -> (send time, what)

    def exec(self, command, what):
        req_id = self.client.send("exec", {"uuid": self.uuid, "command": T.hexs(command)})
        self.sent[req_id] = (time.perf_counter(), what)

    def replies(self):
        """Complete responses now readable: (reply, send time, what, now)."""
        chunk = self.client.sock.recv(1 << 16)
        if not chunk:
            raise AssertionError("daemon closed the connection of %s" % self.uuid)
        self.buf += chunk
        now = time.perf_counter()
        out = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            reply = json.loads(line)
            sent_at, what = self.sent.pop(reply["id"])
            if "error" in reply:
                raise AssertionError("%s on %s failed: %s" % (what, self.uuid, reply["error"]))
            out.append((reply["result"], sent_at, what, now))
        return out


class NoisyNeighbourTest(harness.DaemonTestCase):

    def test_rsa_flood_delays_others_by_about_one_command(self):
        t_start = time.monotonic()
        d = self.start_daemon(log_level="info")
        # Its queue (2 x FLOOD_DEPTH commands) is above the default limit of
        # 64 on purpose: this test is about fairness, test_limits about limits.
        noisy = d.result("add", tpm="2.0", auto_startup=True, max_queued=1000)["uuid"]
        quiet = [d.result("add", tpm="2.0", auto_startup=True)["uuid"] for _ in range(QUIET)]

        # Warm-up: every quiet instance extends once, the noisy one creates
        # and flushes one key (first-command costs stay out of the numbers).
        extend_digest = {u: bytes([i + 1]) * 32 for i, u in enumerate(quiet)}
        extend = {u: T.pcr_extend(QUIET_PCR, extend_digest[u]) for u in quiet}
        done = {u: 1 for u in quiet}    # extends answered, warm-up included
        for u in quiet:
            T.check(d.exec(u, extend[u]), "warm-up PCR_Extend")
        handle = T.parse_create_primary(d.exec(noisy, create_primary(0))).handle
        T.check(d.exec(noisy, T.flush_context(handle)), "warm-up FlushContext")

        sel = selectors.DefaultSelector()
        conns = {}
        for u in [noisy] + quiet:
            conns[u] = Conn(d.client(timeout=DRAIN_TIMEOUT_S), u)
            sel.register(conns[u].client.sock, selectors.EVENT_READ, conns[u])
        flush = T.flush_context(FIRST_TRANSIENT)
        seq = 0
        pairs = 0                       # CreatePrimary+Flush pairs in flight
        creates_run_us, creates_total = [], 0
        quiet_lat = {u: [] for u in quiet}
        quiet_queued_us = []
        outstanding = 0

        def top_up_noisy():
            nonlocal seq, pairs, outstanding
            while pairs < FLOOD_DEPTH and time.perf_counter() < end:
                seq += 1
                conns[noisy].exec(create_primary(seq), "CreatePrimary")
                conns[noisy].exec(flush, "FlushContext")
                pairs += 1
                outstanding += 2

        start = time.perf_counter()
        end = start + FLOOD_SECONDS
        top_up_noisy()
        for u in quiet:
            conns[u].exec(extend[u], "PCR_Extend")
            outstanding += 1
        drain_deadline = end + DRAIN_TIMEOUT_S
        while outstanding:
            if time.perf_counter() > drain_deadline:
                self.fail("%d commands unanswered %.0f s after the flood"
                          % (outstanding, DRAIN_TIMEOUT_S))
            for key, _ in sel.select(timeout=1.0):
                conn = key.data
                for result, sent_at, what, now in conn.replies():
                    outstanding -= 1
                    response = bytes.fromhex(result["response"])
                    if what == "PCR_Extend":
                        T.check(response, "quiet PCR_Extend")
                        done[conn.uuid] += 1
                        if now <= end:
                            quiet_lat[conn.uuid].append(now - sent_at)
                            quiet_queued_us.append(result["timing"]["queued_us"])
                        if time.perf_counter() < end:
                            conn.exec(extend[conn.uuid], "PCR_Extend")
                            outstanding += 1
                    elif what == "CreatePrimary":
                        created = T.parse_create_primary(response)
                        self.assertEqual(created.handle, FIRST_TRANSIENT,
                                         "the pair's flush would miss it")
                        creates_run_us.append(result["timing"]["run_us"])
                        if now <= end:
                            creates_total += 1
                    else:
                        T.check(response, "noisy FlushContext")
                        pairs -= 1
                        top_up_noisy()
        sel.close()
        flood_s = time.perf_counter() - start
        shown = d.result("show", uuid=noisy)
        status = d.result("status")

        counts = {u: len(v) for u, v in quiet_lat.items()}
        every = sorted(x for v in quiet_lat.values() for x in v)
        p50, p99 = percentile(every, 0.50), percentile(every, 0.99)
        queued = sorted(quiet_queued_us)
        runs = sorted(creates_run_us)
        max_run_ms = runs[-1] / 1000 if runs else 0.0
        bound_ms = P99_FACTOR * max_run_ms + P99_SLACK_MS
        print("\n  noisy neighbour: 1 noisy (%d CreatePrimary RSA-2048 queued) + %d quiet "
              "(PCR_Extend, 1 outstanding) for %.1f s (%.1f s with drain)"
              % (FLOOD_DEPTH, QUIET, FLOOD_SECONDS, flood_s), file=sys.stderr)
        print("  noisy: %d CreatePrimary in the window, run_us p50 %.1f ms, max %.1f ms; "
              "placed on %s after the flood"
              % (creates_total, (percentile(runs, 0.5) or 0) / 1000, max_run_ms,
                 shown.get("engine")), file=sys.stderr)
        print("  quiet: extends per instance %s (min %d), latency p50 %.2f ms, p99 %.1f ms, "
              "max %.1f ms; bound for p99 %.0f ms (%d x %.1f + %d)"
              % (sorted(counts.values()), min(counts.values()), (p50 or 0) * 1e3,
                 (p99 or 0) * 1e3, every[-1] * 1e3 if every else 0, bound_ms, P99_FACTOR,
                 max_run_ms, P99_SLACK_MS), file=sys.stderr)
        print("  quiet queued_us in the engine: p50 %s, p99 %s, max %s; behind the whole "
              "flood queue they would wait ~%.0f ms (%d x p50 run)"
              % (percentile(queued, 0.5), percentile(queued, 0.99),
                 queued[-1] if queued else None,
                 FLOOD_DEPTH * (percentile(runs, 0.5) or 0) / 1000, FLOOD_DEPTH),
              file=sys.stderr)
        print("  shards: %s" % [(s["name"], s["instances"], s["jobs"])
                                for s in status["engine"]["shards"]], file=sys.stderr)
        print("  test wall time so far %.1f s" % (time.monotonic() - t_start), file=sys.stderr)

        self.assertGreaterEqual(creates_total, MIN_NOISY_CREATES,
                                "the noisy instance itself made (almost) no progress")
        for u, n in counts.items():
            self.assertGreaterEqual(n, MIN_QUIET_EXTENDS,
                                    "quiet instance %s starved: %d extends in %.0f s"
                                    % (u, n, FLOOD_SECONDS))
        self.assertLessEqual(p99 * 1e3, bound_ms,
                             "quiet p99 %.1f ms: waited for more than about one "
                             "CreatePrimary (max %.1f ms)" % (p99 * 1e3, max_run_ms))

        # Every quiet instance's PCR holds exactly its own extends (warm-up
        # included), and the noisy instance still answers.
        for u in quiet:
            value = b"\x00" * 32
            for _ in range(done[u]):
                value = T.pcr_extend_expected(value, extend_digest[u])
            got = T.parse_pcr_read(d.exec(u, T.pcr_read(QUIET_PCR))).digest
            self.assertEqual(got, value, "PCR %d of quiet instance %s" % (QUIET_PCR, u))
        T.parse_pcr_read(d.exec(noisy, T.pcr_read(QUIET_PCR)))
        d.stop()


if __name__ == "__main__":
    harness.main()
