#!/usr/bin/env python3
"""Crash durability: every acknowledged NV write survives SIGKILL.

100 TPM 2.0 instances run NV-writing traffic (NV_Increment of a
non-orderly counter index, NV_Write of fresh tagged values to an ordinary
index, and now and then CreatePrimary + EvictControl to persist a key or
EvictControl to evict one), one command outstanding per instance, pipelined
on a few control connections.  vtpmd is SIGKILLed at a random moment
(20-400 ms into the traffic) in at least 200 rounds and restarted on the
same state directory.  After every restart the harness checks ALL
instances:

* ``list`` shows every instance, running, none failed/quarantined, and the
  restarted daemon's log has no ERROR, "quarantined" or "corrupt" line;
* the restart was a power cycle: Startup(CLEAR) succeeds on instances
  without auto_startup and returns TPM_RC_INITIALIZE on the others;
* counter == last acknowledged value + k, 0 <= k <= increments in flight
  (sent, not answered) when the daemon died;
* NV data == the last acknowledged value or one that was in flight;
* every acknowledged persistent handle exists, every acknowledged
  eviction is gone; only handles in flight may go either way.

Responses that reached the client socket before the daemon died count as
acknowledged (they are read after the kill).

Fault rounds: vtpmd started with ``VTPMD_CRASH_AT=<point>:<n>`` logs
``crash point <point> reached`` and SIGKILLs itself the n-th time it
reaches <point> in the state write path.  Every point gets rounds with
n in FAULT_COUNTS; each asserts exit status -SIGKILL and the log line,
then restarts without the variable and verifies as above.

Environment: VTPMD_CRASH_SEED (RNG seed; printed at start, random by
default) reproduces the round order, every round's kill delay and the op
mix (each round has its own RNG seeded from it); which commands are in
flight at the kill still depends on timing.  VTPMD_CRASH_ROUNDS overrides
the number of SIGKILL rounds (default 200) for debugging.

Usage: python3 tests/integration/test_crash_durability.py [-v]
"""

import collections
import json
import os
import random
import re
import select
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tpmcmd as T  # noqa: E402

N_INSTANCES = 100
SIGKILL_ROUNDS = int(os.environ.get("VTPMD_CRASH_ROUNDS", "200"))
# Every step of the write path (state/crash_points.h): a blob written in
# place (before / after its fdatasync), the manifest likewise, the counter.
FAULT_POINTS = ("blob-written", "blob-synced", "manifest-written",
                "manifest-synced", "counter-incremented")
FAULT_COUNTS = (1, 3, 17, 150)  # 150: deep into the traffic (many commits)
KILL_DELAY_S = (0.020, 0.400)
# A fault round drives traffic until the daemon kills itself; if the
# point has not been reached after this long, the round fails.
FAULT_TIMEOUT_S = 60.0 * harness.TIMEOUT_SCALE
CONNECTIONS = 3
IO_TIMEOUT_S = 120.0 * harness.TIMEOUT_SCALE

NV_COUNTER = 0x01500020
NV_DATA = 0x01500021
DATA_SIZE = 32
PERSISTENT_FIRST = 0x81000000  # owner range 0x81000000..0x817FFFFF
PERSISTENT_SPAN = 0x00800000
MAX_PERSISTENT = 2             # per instance; NV holds only a few objects

# op mix for an idle instance (cumulative probabilities)
P_CREATE = 0.03   # CreatePrimary, then EvictControl(persist), FlushContext
P_EVICT = 0.05    # EvictControl of an acknowledged persistent handle
P_WRITE = 0.30    # NV_Write of a fresh value; the rest: NV_Increment

# After a restart nothing may be quarantined, corrupt or an error; the
# store's recovery notes ("... it is adopted", "removed the leftover of an
# interrupted write", ...) are warnings and are tallied in the summary.
BAD_LOG = re.compile(r"quarantin|corrupt| ERROR ", re.IGNORECASE)
WARN_LOG = re.compile(r" WARN (?:instance=\S+ )?(.*)")


def _seed():
    text = os.environ.get("VTPMD_CRASH_SEED")
    if text:
        return int(text, 0)
    return random.SystemRandom().randrange(1 << 32)


class Vtpm:
    """What the harness knows about one instance."""

    def __init__(self, n, uuid, auto_startup):
        self.n = n
        self.uuid = uuid
        self.auto = auto_startup
        self.counter = None          # last acknowledged counter value
        self.counter_unacked = 0     # increments sent, not answered
        self.data = None             # last acknowledged NV data
        self.data_unacked = []       # NV_Write values sent, not answered
        self.persistent = set()      # acknowledged persistent handles
        self.persist_unacked = set()  # EvictControl(persist) not answered
        self.evict_unacked = set()   # EvictControl(evict) not answered
        self.next_handle = PERSISTENT_FIRST + (n * 0x1000) % PERSISTENT_SPAN
        self.transient = None        # created primary awaiting EvictControl
        self.to_flush = None         # transient to flush after persisting
        self.started = False         # Startup done in this daemon run
        self.pending = None          # (kind, arg) of the outstanding command
        self.seq = 0

    def alloc_handle(self):
        h = self.next_handle
        self.next_handle = PERSISTENT_FIRST + (
            (h - PERSISTENT_FIRST + 1) % PERSISTENT_SPAN)
        return h

    def power_cycled(self):
        """The daemon died: volatile state (transient objects) is gone."""
        self.transient = None
        self.to_flush = None
        self.started = self.auto  # auto_startup: the daemon sends Startup
        self.pending = None

    def name(self):
        return "instance #%d %s (auto_startup=%s)" % (self.n, self.uuid,
                                                       self.auto)


class Stats:
    def __init__(self):
        self.rounds = 0
        self.sigkill_rounds = 0
        self.fault_rounds = {p: 0 for p in FAULT_POINTS}
        self.fault_at_startup = 0
        self.fault_where = {p: [] for p in FAULT_POINTS}
        self.acked = {"increment": 0, "write": 0, "persist": 0, "evict": 0}
        self.acked_after_kill = 0
        self.verified = 0
        self.inflight_applied = 0
        self.inflight_not_applied = 0
        self.commands = 0
        self.warnings = collections.Counter()  # normalized WARN messages


class Pipeline:
    """A few control connections with one command outstanding per instance.
    Requests carry globally unique ids; responses are matched by id."""

    def __init__(self, daemon, n_conns):
        self.conns = [harness.Client(daemon.socket_path, IO_TIMEOUT_S)
                      for _ in range(n_conns)]
        self.next_id = 1
        self.waiting = {}  # id -> (Vtpm, conn)
        self.eof = set()

    def close(self):
        for c in self.conns:
            c.close()

    def send(self, vtpm, command):
        req_id = self.next_id
        self.next_id += 1
        conn = self.conns[vtpm.n % len(self.conns)]
        self.waiting[req_id] = (vtpm, conn)
        try:
            conn.send("exec", {"uuid": vtpm.uuid,
                               "command": T.hexs(command)}, req_id)
        except (BrokenPipeError, ConnectionResetError):
            # the daemon just died: the command stays "in flight" (unknown
            # whether it ran); poll() still reads what was sent before
            pass
        return req_id

    def _lines(self, conn):
        while b"\n" in conn._buf:
            line, conn._buf = conn._buf.split(b"\n", 1)
            yield json.loads(line)

    def poll(self, timeout):
        """Responses that arrive within *timeout* seconds (maybe none)."""
        live = [c for c in self.conns if c not in self.eof]
        out = []
        if not live:
            return out
        readable, _, _ = select.select([c.sock for c in live], [], [],
                                       max(0.0, timeout))
        for c in live:
            if c.sock not in readable:
                continue
            try:
                chunk = c.sock.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof.add(c)
                continue
            c._buf += chunk
            out.extend(self._lines(c))
        return out

    def all_closed(self):
        return len(self.eof) == len(self.conns)

    def drain(self, timeout=10.0):
        """After the daemon died: every complete response still buffered
        in the sockets (the daemon sent it before dying)."""
        out = []
        deadline = time.monotonic() + timeout
        while not self.all_closed():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("control connections still open %.0f s "
                                     "after the daemon died" % timeout)
            out.extend(self.poll(left))
        return out


class CrashDurabilityTest(harness.DaemonTestCase):

    def setUp(self):
        self.seed = _seed()
        print("\nseed %d (VTPMD_CRASH_SEED=%d reproduces the choices)"
              % (self.seed, self.seed), flush=True)
        self.rng = random.Random(self.seed)
        self.stats = Stats()
        self.round = 0
        self.what = "setup"

    # ------------------------------------------------------------------
    # helpers

    def fail_at(self, vtpm, message):
        text = "round %d (%s): %s%s\n(reproduce the choices with " \
            "VTPMD_CRASH_SEED=%d)" % (self.round, self.what,
                                      vtpm.name() + ": " if vtpm else "",
                                      message, self.seed)
        if vtpm is not None:
            lines = [ln for ln in self.d.log().splitlines()
                     if vtpm.uuid in ln]
            text += "\n-- the instance's last log lines --\n" + \
                "\n".join(lines[-30:])
        raise AssertionError(text)

    def log_size(self):
        try:
            return os.path.getsize(self.d.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        with open(self.d.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def batch(self, requests, conn):
        """Pipeline [(vtpm, command bytes)] on *conn*; return the responses
        in request order (JSON result dicts); a JSON error fails."""
        ids = [conn.send("exec", {"uuid": v.uuid, "command": T.hexs(cmd)})
               for v, cmd in requests]
        got = {}
        for i in ids:
            got[i] = conn.wait(i)
        out = []
        for (v, cmd), i in zip(requests, ids):
            resp = got[i]
            if "error" in resp:
                self.fail_at(v, "exec of %s failed: %r" % (
                    T.hexs(cmd[:10]), resp["error"]))
            out.append(resp["result"])
        self.stats.commands += len(ids)
        return out

    @staticmethod
    def response(result):
        return bytes.fromhex(result["response"])

    # ------------------------------------------------------------------
    # setup

    def setup_instances(self):
        d = self.d
        c = d.client()
        ids = []
        for n in range(N_INSTANCES):
            # every other instance gets its Startup from the daemon
            ids.append(c.send("add", {"auto_startup": n % 2 == 0}))
        self.vtpms = []
        for n, i in enumerate(ids):
            resp = c.wait(i)
            self.assertIn("result", resp, resp)
            self.vtpms.append(Vtpm(n, resp["result"]["uuid"], n % 2 == 0))
        reqs = []
        for v in self.vtpms:
            if not v.auto:
                reqs.append((v, T.startup()))
            reqs += [(v, T.nv_define_counter(NV_COUNTER)),
                     (v, T.nv_define_space(NV_DATA, DATA_SIZE)),
                     (v, T.nv_increment(NV_COUNTER)),
                     (v, T.nv_write(NV_DATA, self.fresh_value(v))),
                     (v, T.nv_read(NV_COUNTER, 8)),
                     (v, T.nv_read(NV_DATA, DATA_SIZE))]
        res = self.batch(reqs, c)
        k = 0
        for v in self.vtpms:
            k += 0 if v.auto else 1
            for j in range(4):
                T.check(self.response(res[k + j]), "%s setup step %d"
                        % (v.name(), j))
            v.counter = T.parse_nv_counter(self.response(res[k + 4]))
            v.data = T.parse_nv_read(self.response(res[k + 5]))
            v.started = True
            k += 6
        c.close()

    def fresh_value(self, v):
        v.seq += 1
        head = struct.pack(">HII", v.n, self.round, v.seq)
        return head + bytes(self.rng.getrandbits(8)
                            for _ in range(DATA_SIZE - len(head)))

    # ------------------------------------------------------------------
    # traffic

    def next_command(self, v):
        """Choose the instance's next command; record it as pending."""
        if not v.started:
            v.pending = ("startup", None)
            return T.startup()
        if v.transient is not None:
            h = v.alloc_handle()
            v.persist_unacked.add(h)
            v.pending = ("persist", h)
            return T.evict_control(v.transient, h)
        if v.to_flush is not None:
            v.pending = ("flush", v.to_flush)
            return T.flush_context(v.to_flush)
        r = self.rng.random()
        if r < P_CREATE and len(v.persistent) < MAX_PERSISTENT:
            v.pending = ("create", None)
            return T.create_primary_ecc_p256()
        if r < P_EVICT and v.persistent:
            h = self.rng.choice(sorted(v.persistent))
            v.evict_unacked.add(h)
            v.pending = ("evict", h)
            return T.evict_control(h, h)
        if r < P_WRITE:
            value = self.fresh_value(v)
            v.data_unacked.append(value)
            v.pending = ("write", value)
            return T.nv_write(NV_DATA, value)
        v.counter_unacked += 1
        v.pending = ("increment", None)
        return T.nv_increment(NV_COUNTER)

    def acknowledge(self, v, resp, after_kill=False):
        kind, arg = v.pending
        v.pending = None
        if "error" in resp:
            self.fail_at(v, "%s failed: %r" % (kind, resp["error"]))
        raw = self.response(resp["result"])
        code = T.rc(raw)
        if code != 0:
            self.fail_at(v, "%s returned rc 0x%x (%s)" % (
                kind, code, T.rc_str(code)))
        if kind in self.stats.acked:
            self.stats.acked[kind] += 1
            self.round_acked += 1
            if after_kill:
                self.stats.acked_after_kill += 1
        if kind == "startup":
            v.started = True
        elif kind == "increment":
            v.counter += 1
            v.counter_unacked -= 1
        elif kind == "write":
            v.data = arg
            v.data_unacked.remove(arg)
        elif kind == "create":
            v.transient = T.parse_create_primary(raw).handle
        elif kind == "persist":
            v.persistent.add(arg)
            v.persist_unacked.discard(arg)
            v.to_flush, v.transient = v.transient, None
        elif kind == "flush":
            v.to_flush = None
        elif kind == "evict":
            v.persistent.discard(arg)
            v.evict_unacked.discard(arg)

    def issue(self, pipe, v):
        pipe.send(v, self.next_command(v))
        self.stats.commands += 1

    def handle(self, pipe, responses, after_kill=False):
        for resp in responses:
            entry = pipe.waiting.pop(resp.get("id"), None)
            if entry is None:
                raise AssertionError("round %d: response with unknown id %r"
                                     % (self.round, resp.get("id")))
            self.acknowledge(entry[0], resp, after_kill)
            if not after_kill:
                self.issue(pipe, entry[0])

    def traffic(self, duration=None):
        """Drive traffic; SIGKILL the daemon after *duration* seconds, or
        (duration None) run until the daemon dies by itself.  Returns the
        daemon's exit status."""
        d = self.d
        pipe = Pipeline(d, CONNECTIONS)
        try:
            for v in self.vtpms:
                self.issue(pipe, v)
            t0 = time.monotonic()
            limit = duration if duration is not None else FAULT_TIMEOUT_S
            while True:
                left = t0 + limit - time.monotonic()
                if left <= 0 or pipe.all_closed():
                    break
                self.handle(pipe, pipe.poll(min(left, 0.5)))
            if duration is not None:
                d.kill()  # SIGKILL; our own connections stay open
            else:
                try:
                    d.proc.wait(10)
                except harness.subprocess.TimeoutExpired:
                    raise AssertionError(
                        "round %d (%s): the daemon did not die within %.0f s "
                        "of traffic (%d writes acknowledged)" % (
                            self.round, self.what, FAULT_TIMEOUT_S,
                            self.round_acked)) from None
            # whatever the daemon sent before dying is acknowledged
            self.handle(pipe, pipe.drain(), after_kill=True)
            code = d.proc.returncode
        finally:
            pipe.close()
        for v in self.vtpms:
            v.power_cycled()
        return code

    # ------------------------------------------------------------------
    # verification

    def restart_and_verify(self):
        start = self.log_size()
        self.d.restart()
        self.verify(start)

    def verify(self, log_start):
        d = self.d
        listed = d.result("list")["instances"]
        by_uuid = {i["uuid"]: i for i in listed}
        if len(listed) != N_INSTANCES:
            self.fail_at(None, "list shows %d instances, expected %d"
                         % (len(listed), N_INSTANCES))
        for v in self.vtpms:
            inst = by_uuid.get(v.uuid)
            if inst is None:
                self.fail_at(v, "lost: not in list")
            if inst["state"] != "running" or "failure" in inst \
                    or inst["power"] != "on":
                self.fail_at(v, "not running after restart: %r" % inst)
        c = d.client()
        reqs = []
        for v in self.vtpms:
            reqs += [(v, T.startup()),
                     (v, T.nv_read(NV_COUNTER, 8)),
                     (v, T.nv_read(NV_DATA, DATA_SIZE)),
                     (v, T.get_capability_persistent())]
        res = self.batch(reqs, c)
        c.close()
        for k, v in enumerate(self.vtpms):
            self.check_instance(v, [self.response(r)
                                    for r in res[4 * k:4 * k + 4]])
        status = d.result("status")["instances"]
        if status["total"] != N_INSTANCES or status["failed"] != 0 \
                or status["running"] != N_INSTANCES:
            self.fail_at(None, "status after the restart: %r" % status)
        lines = self.log_since(log_start).splitlines()
        bad = [ln for ln in lines if BAD_LOG.search(ln)]
        if bad:
            self.fail_at(None, "the restarted daemon logged:\n"
                         + "\n".join(bad[:40]))
        for ln in lines:
            m = WARN_LOG.search(ln)
            if m:
                self.stats.warnings[_normalized(m.group(1))] += 1
        self.stats.verified += self.round_acked
        self.round_acked = 0

    def check_instance(self, v, resps):
        startup, counter, data, handles = resps
        want = T.TPM_RC_INITIALIZE if v.auto else T.TPM_RC_SUCCESS
        if T.rc(startup) != want:
            self.fail_at(v, "Startup(CLEAR) after the restart returned %s, "
                         "expected %s (a crash must look like a power "
                         "cycle)" % (T.rc_str(T.rc(startup)),
                                     T.rc_str(want)))
        v.started = True
        try:
            found_c = T.parse_nv_counter(counter)
            found_d = T.parse_nv_read(data)
            found_h, more = T.parse_handles(handles)
        except T.TpmError as e:
            self.fail_at(v, "reading state after the restart: %s" % e)
        found_h = set(found_h)
        # counter: every acknowledged increment, plus some in flight
        lo, hi = v.counter, v.counter + v.counter_unacked
        if not lo <= found_c <= hi:
            self.fail_at(v, "counter is %d, expected %d (last acknowledged)"
                         " .. %d (+%d in flight)%s" % (
                             found_c, lo, hi, v.counter_unacked,
                             " -- an ACKNOWLEDGED INCREMENT WAS LOST"
                             if found_c < lo else ""))
        applied = found_c - lo
        # data: the last acknowledged value or one in flight
        if found_d == v.data:
            d_applied = 0
        elif found_d in v.data_unacked:
            d_applied = 1
        else:
            self.fail_at(v, "NV data is %s, expected the last acknowledged "
                         "%s or one in flight %s" % (
                             found_d.hex(), v.data.hex(),
                             [x.hex() for x in v.data_unacked]))
        # persistent handles: acknowledged ones exist, evicted ones are gone
        sure = v.persistent - v.evict_unacked
        allowed = v.persistent | v.persist_unacked
        missing, extra = sure - found_h, found_h - allowed
        if missing or extra or more:
            self.fail_at(v, "persistent handles %s; acknowledged %s, in "
                         "flight persist %s evict %s: missing %s, "
                         "unexpected %s" % (
                             _hx(found_h), _hx(v.persistent),
                             _hx(v.persist_unacked), _hx(v.evict_unacked),
                             _hx(missing), _hx(extra)))
        h_applied = len(v.persist_unacked & found_h) + \
            len(v.evict_unacked - found_h)
        inflight = (v.counter_unacked + len(v.data_unacked)
                    + len(v.persist_unacked) + len(v.evict_unacked))
        done = applied + d_applied + h_applied
        self.stats.inflight_applied += done
        self.stats.inflight_not_applied += inflight - done
        # the TPM's state is the new truth
        v.counter, v.counter_unacked = found_c, 0
        v.data, v.data_unacked = found_d, []
        v.persistent = found_h
        v.persist_unacked, v.evict_unacked = set(), set()

    # ------------------------------------------------------------------
    # rounds

    def sigkill_round(self):
        self.what = "SIGKILL"
        delay = self.rng.uniform(*KILL_DELAY_S)
        code = self.traffic(delay)
        self.assertEqual(code, -signal.SIGKILL)
        self.stats.sigkill_rounds += 1
        self.restart_and_verify()

    def fault_round(self, point, n):
        self.what = "VTPMD_CRASH_AT=%s:%d" % (point, n)
        d = self.d
        d.kill()  # idle: every response was read, nothing is in flight
        for v in self.vtpms:
            v.power_cycled()
        start = self.log_size()
        env = {"VTPMD_CRASH_AT": "%s:%d" % (point, n)}
        try:
            d.restart(env=env)
        except AssertionError:
            # the point may be reached while starting up: still a crash
            if d.proc.returncode != -signal.SIGKILL:
                raise
            self.stats.fault_at_startup += 1
            where = "n=%d at start-up" % n
            code = d.proc.returncode
        else:
            acked_before = self.round_acked
            code = self.traffic(None)
            where = "n=%d after %d acks" % (n, self.round_acked - acked_before)
        if code != -signal.SIGKILL:
            self.fail_at(None, "with %s vtpmd exited with %s, expected "
                         "-SIGKILL" % (self.what, code))
        line = "crash point %s reached" % point
        if line not in self.log_since(start):
            self.fail_at(None, "with %s vtpmd died but did not log %r"
                         % (self.what, line))
        self.stats.fault_rounds[point] += 1
        self.stats.fault_where[point].append(where)
        self.restart_and_verify()

    def test_crash_durability(self):
        t0 = time.monotonic()
        self.d = self.start_daemon()
        self.round_acked = 0
        self.setup_instances()
        schedule = [None] * SIGKILL_ROUNDS + [
            (p, n) for p in FAULT_POINTS for n in FAULT_COUNTS]
        self.rng.shuffle(schedule)
        t_setup = time.monotonic() - t0
        try:
            for self.round, fault in enumerate(schedule, 1):
                # per round, so that a round's kill delay and first choices
                # do not depend on how much traffic earlier rounds managed
                self.rng = random.Random("%d:%d" % (self.seed, self.round))
                if fault is None:
                    self.sigkill_round()
                else:
                    self.fault_round(*fault)
                self.stats.rounds += 1
                if self.round % 25 == 0:
                    print("round %d/%d: %.1f s, %d acknowledged writes "
                          "verified" % (self.round, len(schedule),
                                        time.monotonic() - t0,
                                        self.stats.verified), flush=True)
        finally:
            self.summary(time.monotonic() - t0, t_setup)
        s = self.stats
        self.assertGreaterEqual(s.sigkill_rounds, SIGKILL_ROUNDS)
        for p in FAULT_POINTS:
            self.assertGreaterEqual(s.fault_rounds[p], len(FAULT_COUNTS), p)
        self.assertEqual(s.verified, sum(s.acked.values()))
        self.assertGreater(s.inflight_applied + s.inflight_not_applied, 0)

    def summary(self, elapsed, t_setup):
        s = self.stats
        total = sum(s.acked.values())
        print("\n== crash durability summary (seed %d) ==" % self.seed)
        print("instances                %d" % N_INSTANCES)
        print("rounds                   %d" % s.rounds)
        print("SIGKILL rounds           %d" % s.sigkill_rounds)
        print("fault rounds             %d (%d reached at start-up)" % (
            sum(s.fault_rounds.values()), s.fault_at_startup))
        for p in FAULT_POINTS:
            print("  %-22s %d (%s)" % (p, s.fault_rounds[p],
                                      ", ".join(s.fault_where[p])))
        print("TPM commands sent        %d" % s.commands)
        print("acknowledged writes      %d (increment %d, write %d, "
              "persist %d, evict %d; %d read after the kill)" % (
                  total, s.acked["increment"], s.acked["write"],
                  s.acked["persist"], s.acked["evict"], s.acked_after_kill))
        print("acknowledged verified    %d" % s.verified)
        print("in flight at the crash   %d applied, %d not applied" % (
            s.inflight_applied, s.inflight_not_applied))
        print("WARN lines after restarts %d:" % sum(s.warnings.values()))
        for text, count in s.warnings.most_common(8):
            print("  %6d  %s" % (count, text))
        print("time                     %.1f s (setup %.1f s)" % (
            elapsed, t_setup), flush=True)


def _normalized(message):
    """A log message with UUIDs, paths and numbers generalized."""
    message = re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<uuid>",
                     message)
    message = re.sub(r"/\S+", "<path>", message)
    return re.sub(r"\d+", "N", message)[:150]


def _hx(handles):
    return "{%s}" % ", ".join("0x%08x" % h for h in sorted(handles))


if __name__ == "__main__":
    harness.main()
