import os
import subprocess
import sys

from conftest import ROOT


def test_bench_quick_runs_and_writes_its_table():
    r = subprocess.run([sys.executable, "bench.py", "--quick"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "out", "quick-results", "bench.md")) as f:
        text = f.read()
    assert "GFLOP/s" in text and "| code |" in text and "speed-up" in text
