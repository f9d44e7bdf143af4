"""Smoke tests of bench/fanout.py and bench/suite.py: tiny real runs deliver everything
(no timing is asserted)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_json(script, *args, timeout=150):
    """What ``bench/<script> ARGS`` printed, as JSON; it must exit 0."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def fanout(*args):
    """The JSON medians of a bench/fanout.py run with 20 subscribers and 10 messages."""
    report = bench_json("fanout.py", "--subscribers", "20", "--messages", "10", "--runs", "1",
                        "--json", *args, timeout=120)
    return next(r for r in report["results"] if r["subscribers"] == 20)


@pytest.mark.timeout(180)  # above the subprocess timeout, so a hang reports the bench's output
def test_fanout_smoke():
    """One worker, 20 subscribers, 10 messages at 100/s: all 200 deliveries arrive."""
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


#: Every phase of the suite, tiny: 20 subscribers, short steps, a low cap on the rate.
SUITE_TINY = ["--subscribers", "20", "--runs", "1", "--max-connections", "200",
              "--step-seconds", "0.5", "--max-rate", "200", "--idle-messages", "3",
              "--latency-seconds", "1", "--slow-seconds", "1", "--json"]


@pytest.mark.timeout(180)
def test_suite_smoke():
    """Every phase of bench/suite.py runs on both servers, without loss, with sane figures."""
    both = importlib.util.find_spec("flask_socketio") is not None
    report = bench_json("suite.py", *SUITE_TINY, "--server", "both" if both else "rulecast")
    assert sorted(report["results"]) == (["peer", "rulecast"] if both else ["rulecast"])
    for server, by_n in report["results"].items():
        figures = by_n["20"]["median"]
        for phase in ("lat1", "lat50", "slow"):
            assert figures[phase + "_lost"] == 0, (server, phase, figures)
            assert figures[phase + "_closed"] == 0, (server, phase, figures)
            assert 0 < figures[phase + "_p50_ms"] <= figures[phase + "_p99_ms"] \
                <= figures[phase + "_max_ms"], (server, phase, figures)
        assert figures["sustained_deliveries_per_s"] > 0, (server, figures)
        assert figures["sustained_cpu_us_per_delivery"] > 0, (server, figures)
        assert figures["slow_clients"] == 1, (server, figures)
        assert report["max_connections"][server]["held"] == 200, report["max_connections"]


#: bench/targeted.py, tiny: 20 subscribers, a short phase at a low common rate, two steps.
TARGETED_TINY = ["--subscribers", "20", "--runs", "1", "--fixed-rate", "100",
                 "--fixed-seconds", "0.5", "--start-rate", "100", "--step-seconds", "0.5",
                 "--max-rate", "150", "--batch", "10", "--json"]


@pytest.mark.timeout(180)
def test_targeted_smoke():
    """Targeted publish and events, one at a time, in batches of 10 and over service
    sockets, on both servers: every message reaches its one subscriber once, with sane
    figures (no timing asserted)."""
    both = importlib.util.find_spec("flask_socketio") is not None
    report = bench_json("targeted.py", *TARGETED_TINY, "--server", "both" if both else "rulecast")
    results = report["results"]
    measured = [(case, column) for case, by in results.items() for column in by
                if not by[column].get("skipped")]
    assert ("events", "rulecast") in measured and ("events, batch 10", "rulecast") in measured
    assert ("publish", "rulecast") in measured
    for case in ("publish, service socket", "events, service socket"):
        assert (case, "rulecast") in measured and (case, "peer") not in measured, measured
        figures = results[case]["rulecast"]["median"]
        assert figures["fixed_accepted"] == 50 and figures["fixed_errors"] == 0, figures
    assert not both or ("publish", "peer") in measured, measured
    for case, column in measured:
        figures = results[case][column]["median"]
        assert figures["fixed_lost"] == 0 and figures["fixed_misrouted"] == 0, (case, figures)
        assert figures["fixed_closed"] == 0, (case, column, figures)
        for prefix in ("fixed", "sustained"):
            assert 0 < figures[prefix + "_p50_ms"] <= figures[prefix + "_p99_ms"], (
                case, column, figures)
            assert figures[prefix + "_cpu_us"] > 0, (case, column, figures)
            assert figures[prefix + "_rate"] > 0, (case, column, figures)
    # Publish batches are skipped, with the reason, only where the server refuses a list.
    skipped = results["publish, batch 10"]["rulecast"]
    assert "median" in skipped and (not skipped.get("skipped") or "400" in skipped["skipped"])
