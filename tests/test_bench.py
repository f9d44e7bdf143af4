"""Smoke test of bench/fanout.py: a tiny real run delivers everything (no timing is asserted)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(180)  # above the subprocess timeout, so a hang reports the bench's output
def test_fanout_smoke():
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "fanout.py"), "--subscribers", "20",
         "--messages", "10", "--rate", "100", "--runs", "1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = next(r for r in json.loads(run.stdout)["results"] if r["subscribers"] == 20)
    assert result["lost"] == 0, result
    assert result["deliveries"] == 200, result
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"], result
    assert result["cpu_us_per_delivery"] > 0, result
