#!/usr/bin/env python3
"""Hardening of the running daemon: no key material in core dumps (vtpmd
and its workers are not dumpable by default; with --allow-core-dumps a real
core is produced and none of vtpmd's keys is in it), and the system-call
filter is active in the daemon and in its engine workers."""

import hashlib
import hmac
import os
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tpmcmd as T  # noqa: E402

NV_INDEX = 0x01500020


def status_fields(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def hkdf_sha256(ikm, salt, info, length=32):
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def core_pattern():
    with open("/proc/sys/kernel/core_pattern") as f:
        return f.read().strip()


class HardeningTest(harness.DaemonTestCase):

    def setUp(self):
        # Cores land in the crashing process's working directory when
        # core_pattern is a plain name; a piped handler (systemd-coredump,
        # apport) is host-wide and not ours to change.
        pattern = core_pattern()
        self.assertFalse(pattern.startswith("|"),
                         "core_pattern pipes to %r; this test needs plain core files" % pattern)
        self.assertNotIn("/", pattern, "core_pattern %r writes elsewhere" % pattern)
        self.saved_rlimit = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.saved_cwd = os.getcwd()

    def tearDown(self):
        os.chdir(self.saved_cwd)
        resource.setrlimit(resource.RLIMIT_CORE, self.saved_rlimit)

    def daemon_in_its_directory(self, extra_args=()):
        """A daemon whose working directory (where cores go) is its own
        temporary directory."""
        d = harness.Daemon(extra_args=extra_args)
        self.addCleanup(d.cleanup)
        self._daemons.append(d)
        os.chdir(d.tmp)  # inherited by the daemon and its workers
        # An ASan build turns core dumps off by itself (disable_coredump=1): let the dump
        # policy under test decide. No effect on an uninstrumented build.
        asan = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o] + ["disable_coredump=0"]
        d.start(env={"ASAN_OPTIONS": ":".join(asan)})
        return d

    def cores_in(self, directory):
        return sorted(n for n in os.listdir(directory) if n == "core" or n.startswith("core."))

    def crash(self, d, pid):
        os.kill(pid, signal.SIGABRT)
        harness.wait_until(lambda: not os.path.exists("/proc/%d/status" % pid)
                           or status_fields(pid).get("State", "").startswith("Z"),
                           10 * harness.TIMEOUT_SCALE, what="pid %d to die" % pid)

    def busy_instances(self, d):
        """A TPM 2.0 instance with NV written (its key derived and in use)
        and a TPM 1.2 instance (a worker process)."""
        u20 = d.result("add", auto_startup=True)["uuid"]
        T.check(d.exec(u20, T.nv_define_space(NV_INDEX, 8)), "NV_DefineSpace")
        T.check(d.exec(u20, T.nv_write(NV_INDEX, b"12345678")), "NV_Write")
        u12 = d.result("add", tpm="1.2")["uuid"]
        T.tpm12_check(d.exec(u12, T.tpm12_startup_clear()), "TPM_Startup")
        return u20, u12

    def test_default_daemon_and_workers_are_not_dumpable_and_filtered(self):
        d = self.daemon_in_its_directory()
        u20, u12 = self.busy_instances(d)
        workers = d.worker_pids()
        self.assertTrue(workers, "the TPM 1.2 instance has a worker process")
        for pid in [d.pid] + workers:
            st = status_fields(pid)
            self.assertEqual(st["Seccomp"], "2", "pid %d runs under a seccomp filter" % pid)
            self.assertGreaterEqual(int(st["Seccomp_filters"]), 1)
        hardening = d.result("status")["hardening"]
        self.assertEqual(hardening["seccomp"], "enforce")
        self.assertFalse(hardening["core_dumps"])
        self.assertGreater(hardening["key_memory"]["mapped_bytes"], 0)
        # A crashing worker leaves no core; its instance restarts from saved state.
        self.crash(d, workers[0])
        harness.wait_until(lambda: d.result("show", uuid=u12)["state"] == "running",
                           10 * harness.TIMEOUT_SCALE, what="the TPM 1.2 instance back")
        T.check(d.exec(u20, T.get_random(8)), "GetRandom after a worker crash")
        # So does the daemon itself.
        self.crash(d, d.pid)
        d.proc.wait(timeout=10 * harness.TIMEOUT_SCALE)
        self.assertEqual(d.proc.returncode, -signal.SIGABRT)
        self.assertEqual(self.cores_in(d.tmp), [], "a non-dumpable vtpmd left a core")

    def test_allowed_core_dumps_hold_no_key(self):
        d = self.daemon_in_its_directory(["--allow-core-dumps"])
        u20, u12 = self.busy_instances(d)
        self.assertTrue(d.result("status")["hardening"]["core_dumps"])
        # The switch reaches the workers: a crashing worker dumps core.
        worker = d.worker_pids()[0]
        self.crash(d, worker)
        harness.wait_until(lambda: self.cores_in(d.tmp), 10 * harness.TIMEOUT_SCALE, what="the worker's core")
        worker_core = os.path.join(d.tmp, "worker-dump")
        os.rename(os.path.join(d.tmp, self.cores_in(d.tmp)[0]), worker_core)
        harness.wait_until(lambda: d.result("show", uuid=u12)["state"] == "running",
                           10 * harness.TIMEOUT_SCALE, what="the TPM 1.2 instance back")
        T.check(d.exec(u20, T.nv_write(NV_INDEX, b"87654321")), "NV_Write")  # keys in use right now
        self.crash(d, d.pid)
        d.proc.wait(timeout=30 * harness.TIMEOUT_SCALE)
        cores = self.cores_in(d.tmp)
        self.assertEqual(len(cores), 1, cores)
        with open(os.path.join(d.tmp, cores[0]), "rb") as f:
            core = f.read()
        with open(worker_core, "rb") as f:
            worker_dump = f.read()
        # The search works: the dump is real and holds what vtpmd had in
        # ordinary memory (the instance's UUID, the state directory).
        self.assertGreater(len(core), 1 << 20)
        self.assertTrue(u20.encode() in core)
        self.assertTrue(d.state_dir.encode() in core)

        # Every key vtpmd holds: the root key (its file), the file root's
        # two derived keys, the master key, the manifest key and each
        # instance key (from the state, as only a root-key holder can).
        with open(os.path.join(d.state_dir, "root.key"), "rb") as f:
            root_key = f.read()
        keys = {"root": root_key,
                "root wrap": hkdf_sha256(root_key, b"", b"vtpmd file root: master key wrap"),
                "root counter mac": hkdf_sha256(root_key, b"", b"vtpmd file root: counter mac")}
        out = subprocess.run([harness.STATE_EDITOR, d.state_dir, "print-keys"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        for line in out.splitlines():
            name, key = line.split()
            keys[name] = bytes.fromhex(key)
        self.assertIn("master", keys)
        self.assertIn("instance:" + u20, keys)
        self.assertIn("instance:" + u12, keys)
        for name, key in keys.items():
            self.assertEqual(len(key), 32, name)
            # assertFalse: assertNotIn would print the whole dump.
            self.assertFalse(key in core, "the %s key is in vtpmd's core dump" % name)
            self.assertFalse(key in worker_dump, "the %s key is in a worker's core dump" % name)
        print("core %d bytes, worker core %d bytes: none of %d keys in either"
              % (len(core), len(worker_dump), len(keys)))


if __name__ == "__main__":
    harness.main()
