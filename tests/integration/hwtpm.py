"""A swtpm standing in for the host's hardware TPM 2.0 in integration tests.

The test owns the process: start/stop/kill it, and reach it with tpm2-tools
(while no vtpmd holds the connection: swtpm serves one client at a time)
to read or extend PCRs, as firmware or a boot loader would.
"""
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time

QUIET = dict(os.environ, TSS2_LOG="all+none")


class HardwareTpm:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vtpmd-hwtpm-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state)
        self.socket = os.path.join(self.dir, "tpm.sock")
        self.proc = None

    @property
    def spec(self):
        return "swtpm:path=" + self.socket

    def start(self):
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2",
             "--server", "type=unixio,path=" + self.socket,
             "--ctrl", "type=unixio,path=" + self.socket + ".ctrl",
             "--tpmstate", "dir=" + self.state,
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("swtpm did not start")
            time.sleep(0.02)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None
        for p in (self.socket, self.socket + ".ctrl"):
            if os.path.exists(p):
                os.unlink(p)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        for p in (self.socket, self.socket + ".ctrl"):
            if os.path.exists(p):
                os.unlink(p)

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tool(self, *args):
        return subprocess.run(list(args) + ["-T", self.spec], env=QUIET, check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def pcr(self, index, bank="sha256"):
        out = self.tool("tpm2_pcrread", "%s:%d" % (bank, index))
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("%d " % index) or line.startswith("%d:" % index):
                return bytes.fromhex(line.split("0x", 1)[1])
        raise AssertionError("no PCR %d in %r" % (index, out))

    def extend(self, index, digest, bank="sha256"):
        self.tool("tpm2_pcrextend", "%d:%s=%s" % (index, bank, digest.hex()))

    def predicted_after_extend(self, index, digest):
        return hashlib.sha256(self.pcr(index) + digest).digest()
