"""Smoke tests of bench/fanout.py: tiny real runs deliver everything (no timing is asserted)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fanout(*args):
    """The JSON medians of a bench/fanout.py run with 20 subscribers and 10 messages."""
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "fanout.py"), "--subscribers", "20",
         "--messages", "10", "--runs", "1", "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return next(r for r in json.loads(run.stdout)["results"] if r["subscribers"] == 20)


@pytest.mark.timeout(180)  # above the subprocess timeout, so a hang reports the bench's output
def test_fanout_smoke():
    result = fanout("--rate", "100")
    assert result["lost"] == 0, result
    assert result["deliveries"] == 200, result
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"], result
    assert result["cpu_us_per_delivery"] > 0, result


@pytest.mark.timeout(180)
def test_fanout_smoke_two_workers():
    """Through the supervisor, the sequencer and two workers joined by nanomsg."""
    result = fanout("--workers", "2")
    assert result["workers"] == 2, result
    assert result["lost"] == 0, result
    assert result["deliveries"] == 200, result
