"""Smoke test of tools/bench/compare.py: the benchmark runs end to end.

One instance of each server, one PCR_Extend window of 0.2 s, two starts,
density of 10 instances. It checks that both servers answered through the
load generator and that the result files are written; it asserts no
performance figure (those belong to the benchmark's own runs)."""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("VTPMD_BUILD_DIR", os.path.join(REPO, "build"))


def main():
    with tempfile.TemporaryDirectory(prefix="compare-smoke-") as out:
        done = subprocess.run(
            [sys.executable, os.path.join(REPO, "tools", "bench", "compare.py"), "--build-dir", BUILD,
             "--instances", "1", "--clients", "1", "--loads", "pcr_extend,nv_write",
             "--seconds", "0.2", "--repeat", "1", "--starts", "2", "--density", "10",
             "--tmpfs", "/nonexistent", "--out", out],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        text = done.stdout.decode(errors="replace")
        assert done.returncode == 0, text
        files = sorted(os.listdir(out))
        assert [f.rsplit(".", 1)[1] for f in files] == ["json", "md"], files
        with open(os.path.join(out, files[0])) as f:
            doc = json.load(f)
        runs = {(r["server"], r["load"]): r for r in doc["loads"]}
        for server in ("vtpmd", "swtpm"):
            for load in ("pcr_extend", "nv_write"):
                r = runs[(server, load)]
                assert r["ops"] > 0 and not r["errors"], (server, load, r)
            assert doc["start"][server]["n"] == 2, doc["start"]
        assert doc["density"][0]["instances"] == 10 and doc["density"][0]["rss"] > 0
        assert "| pcr_extend | 1 | 1 |" in open(os.path.join(out, files[1])).read()
    print("compare.py smoke: ok")


if __name__ == "__main__":
    main()
