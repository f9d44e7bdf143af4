"""The comparison of issue #7 in one command: rulecast (one worker) against Flask-SocketIO,
scenario by scenario, N subscribers on one channel; see bench/README.md."""
import argparse
import importlib.util
import json
import signal
import sys
import time

from procs import log_tail, raise_nofile
from publisher import PUBLISHERS
from suite_report import machine, print_report, summarize
from target import Target

BEHIND = 0.9  # a step fails when the publisher achieved less than this share of its rate
SLOW_SHARE = 0.01  # of the subscribers stop reading in the slow-consumer phase
HISTORY = 1_000_000  # history.max_per_channel: pruning never matters in a run
SERVER_NAMES = {"rulecast": "rulecast", "peer": "socketio"}


def figures(prefix, phase):
    """The latency phase ``phase`` as flat figures named ``prefix``_..."""
    return {prefix + "_p50_ms": phase["p50"], prefix + "_p99_ms": phase["p99"],
            prefix + "_max_ms": phase["max"], prefix + "_lost": phase["lost"]
            + phase["duplicates"], prefix + "_closed": phase["closed"],
            prefix + "_client_busy": phase["busy"]}


def verdict(phase, step, rate, budget):
    """Why a step failed, as (kind, detail), or None when it passed; ``step``: its
    figures, ``budget``: its p99 limit in ms."""
    sent, achieved = phase["sent"], step["publish_rate"]
    if phase["closed"]:
        return "closed", "the server closed %d subscribers (codes %s)" % (
            phase["closed"], ", ".join("%s: %d" % kv for kv in sorted(phase["codes"].items())))
    if phase["lost"] or phase["duplicates"]:
        return "lost", "%d deliveries lost, %d duplicated" % (phase["lost"], phase["duplicates"])
    if sent["errors"]:
        return "publish errors", sent["errors"][0]
    if phase["p99"] > budget:
        return "p99", "p99 %.0f ms > %.0f ms" % (phase["p99"], budget)
    if achieved < BEHIND * rate:
        kind = "server-bound" if step["server_busy"] > 0.8 else "publisher-bound"
        return kind, "published %.0f/s of %.0f/s (server %.0f%%, publisher %.0f%%, client " \
            "%.0f%% busy)" % (achieved, rate, step["server_busy"] * 100, sent["busy"] * 100,
                              phase["busy"] * 100)
    return None


def step_figures(phase, ready):
    """A step's throughput and cost; the rate is the publisher's achieved one."""
    sent = phase["sent"]
    rate = (sent["ok"] - 1) / max(sent["last"] - sent["first"], 1e-9)
    return dict(publish_rate=rate, deliveries_per_s=ready * rate,
                cpu_us_per_delivery=phase["cpu_s"] * 1e6 / max(phase["received"], 1),
                server_busy=phase["cpu_s"] / phase["wall_s"], client_busy=phase["busy"],
                publisher_busy=sent["busy"], p50_ms=phase["p50"], p99_ms=phase["p99"],
                max_ms=phase["max"])


def step_up(phase, ready, rate, args, budget, result):
    """Publishes with ``phase(messages, rate)`` at a geometrically rising rate from ``rate``
    (``args``: step_seconds, step_messages, step_factor, max_rate) until a step fails
    (``budget``: its p99 in ms; ``ready``: the deliveries per message); each step goes to
    ``result["steps"]``, the failure to ``result``. Returns the best step, and whether the
    failing one lost or closed anything."""
    best = None
    while True:
        messages = max(args.step_messages, round(rate * args.step_seconds))
        got = phase(messages, rate)
        step = step_figures(got, ready)
        failed = verdict(got, step, rate, budget)
        result["steps"].append(dict(step, rate=rate, failed=failed and failed[1]))
        if failed:
            result.update(failed_rate=rate, failed_why=failed[0], failed_detail=failed[1])
            return best, got["closed"] or got["lost"] or got["duplicates"]
        best = result["steps"][-1]
        if rate >= args.max_rate:
            result.update(failed_rate=None, failed_why="cap",
                          failed_detail="passed the cap of %g/s" % args.max_rate)
            return best, False
        rate = min(rate * args.step_factor, args.max_rate)


class Run:
    """One server with N subscribers through every phase; restarts the server when a
    failed step closed subscribers."""

    def __init__(self, server, n, args):
        self.server, self.n, self.args, self.target = server, n, args, None
        self.paths = None  # each subscriber's WebSocket path, in targeted mode
        self.result = dict(server=server, subscribers=n, notes=[], steps=[])

    def new_target(self):
        return Target(self.server, 1, self.args.run_seconds,
                      max_connections=self.n + 1000, max_per_channel=HISTORY)

    def start(self):
        """(Re)starts the server and connects the subscribers; the connect figures."""
        if self.target:
            self.close()
        self.target = self.new_target()
        report = self.target.connect(self.n, self.args.addresses, paths=self.paths)
        if report["ready"] < self.n:
            raise RuntimeError("%s: only %d of %d subscribers connected (%s); lower "
                               "--subscribers or look for the cause at the end of the "
                               "server's log:\n%s" % (self.server, report["ready"], self.n,
                                                      report["why"], log_tail(self.target.tmp)))
        return report

    def close(self):
        self.target.close()
        self.result["notes"] += self.target.notes + self.target.problems[:3]

    def step(self, budget):
        """The stepped rate on this run's subscribers (see step_up)."""
        rate = min(max(1.0, self.args.start_deliveries / self.n), self.args.max_rate)
        return step_up(lambda messages, r: self.target.phase(messages, r, PUBLISHERS),
                       self.n, rate, self.args, budget, self.result)

    def measure(self):
        """Every phase, in an order where only the last ones may close subscribers."""
        args, n, result = self.args, self.n, self.result
        try:
            report = self.start()
            result.update(connect_s=report["connect_s"], connect_client_busy=report["busy"],
                          connect_cpu_us=report["cpu_us_per_connect"],
                          connect_server_busy=report["server_busy"],
                          idle_kib_per_conn=report["rss_kib_per_conn"])
            result.update(figures("lat1", self.target.phase(args.idle_messages, 1.0)))
            # When one message alone takes longer than the budget to reach everyone (N =
            # 10,000), no rate could pass: the budget then allows that much queueing on top.
            budget = args.p99_ms if result["lat1_p99_ms"] <= args.p99_ms else (
                result["lat1_p99_ms"] + args.p99_ms)
            result["p99_budget_ms"] = budget
            best, damaged = self.step(budget)
            if best is None:
                result["notes"].append("no step passed: the sustained figures are 0 and the "
                                       "50 % phases run at half the first step's rate")
                best = dict(publish_rate=max(1.0, args.start_deliveries / n), deliveries_per_s=0,
                            cpu_us_per_delivery=0, server_busy=0, client_busy=0)
            result.update(("sustained_" + k, v) for k, v in best.items())
            if damaged:
                self.start()
            half = best["publish_rate"] / 2
            result["half_rate"] = half
            result.update(figures("lat50", self.target.phase(
                max(args.step_messages, round(half * args.latency_seconds)), half,
                PUBLISHERS)))
            slow = self.target.phase(max(args.step_messages, round(half * args.slow_seconds)),
                                     half, PUBLISHERS, slow=max(1, round(n * SLOW_SHARE)),
                                     watch_rss=True)
            result.update(figures("slow", slow))
            rss = slow["rss_kib"]
            result.update(slow_clients=slow["slow"], slow_closed=slow["slow_closed"],
                          slow_codes=slow["slow_codes"], slow_rss_start_mib=rss[0] / 1024,
                          slow_rss_max_mib=max(rss) / 1024, slow_rss_end_mib=rss[-1] / 1024,
                          slow_server_closes=self.target.metrics()[1])
        finally:
            if self.target:
                self.close()
        return result


def max_connections(server, args):
    """Subscribers opened from several source addresses until ``--max-connections``, the
    first failure or ``--max-connections-seconds``; how many the server still holds a
    second later and its RSS growth per connection then."""
    with Target(server, 1, args.max_connections_seconds + 60,
                max_connections=args.max_connections + 1000, max_per_channel=HISTORY) as target:
        report = target.connect(args.max_connections, args.addresses, until_failure=True,
                                seconds=args.max_connections_seconds)
        time.sleep(1)  # for the server to close what it would not keep
        held = target.count()
        why = report["why"] or ("target reached" if report["ready"] >= args.max_connections
                                else "")
        result = dict(server=server, target=args.max_connections, held=held["open"],
                      connect_s=report["connect_s"], why=why, nofile=report["nofile"],
                      kib_per_conn=(held["rss_kib"] - target.rss0) / max(held["open"], 1))
    result["notes"] = target.notes + target.problems[:3]
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--subscribers", default="100,1000,10000", help="comma-separated counts N")
    p.add_argument("--runs", type=int, default=3, help="runs per server and N; figures are "
                   "their medians, losses the worst run")
    p.add_argument("--server", choices=("rulecast", "peer", "both"), default="both",
                   help="rulecast (--workers 1), the peer Flask-SocketIO "
                        "(bench/peer_socketio.py), or both with the ratios")
    p.add_argument("--start-deliveries", type=float, default=5000,
                   help="the first step publishes at this ÷ N messages/s (at least 1/s)")
    p.add_argument("--p99-ms", type=float, default=100,
                   help="a step passes with a p99 up to this (or, when the 1 msg/s phase's "
                        "p99 is already above it, up to that p99 plus this)")
    p.add_argument("--step-factor", type=float, default=1.5, help="rate × this per step")
    p.add_argument("--step-seconds", type=float, default=2.0, help="publishing time per step")
    p.add_argument("--step-messages", type=int, default=10,
                   help="at least this many messages per step and latency phase")
    p.add_argument("--max-rate", type=float, default=5000,
                   help="stepping stops after passing this publish rate (messages/s)")
    p.add_argument("--idle-messages", type=int, default=10, help="messages of the 1/s phase")
    p.add_argument("--latency-seconds", type=float, default=3.0,
                   help="length of the phase at 50%% of the sustained rate")
    p.add_argument("--slow-seconds", type=float, default=5.0,
                   help="length of the slow-consumer phase (at 50%% of the sustained rate)")
    p.add_argument("--max-connections", type=int, default=25000,
                   help="connections to try to hold in one worker (0 skips)")
    p.add_argument("--max-connections-seconds", type=float, default=120,
                   help="time limit for opening them")
    p.add_argument("--addresses", type=int, default=4,
                   help="source addresses 127.0.0.1…k, round robin, each with its own "
                        "ephemeral ports")
    p.add_argument("--run-seconds", type=float, default=600,
                   help="deadline of one server's run at one N")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    counts = [int(c) for c in args.subscribers.split(",")]
    if args.runs < 1 or min(counts) < 1 or args.step_factor <= 1 or args.addresses < 1:
        p.error("--runs, every N and --addresses must be at least 1, --step-factor above 1")
    servers = ["rulecast", "peer"] if args.server == "both" else [args.server]
    if "peer" in servers and importlib.util.find_spec("flask_socketio") is None:
        p.error("the peer needs flask-socketio: .venv/bin/pip install -e '.[bench]'")
    nofile = raise_nofile()  # the forked load client inherits it
    if max(counts) + 100 > nofile:
        p.error("%d subscribers need more file descriptors than RLIMIT_NOFILE (%d); "
                "raise it (ulimit -n) or lower --subscribers" % (max(counts), nofile))
    where = machine()  # before the runs: the commit measured, not one checked out meanwhile
    runs = {s: {n: [] for n in counts} for s in servers}
    for n in counts:
        for k in range(args.runs):
            # Alternating the order run by run, so a drift in the machine's load hits both.
            for server in servers if k % 2 == 0 else servers[::-1]:
                print("N=%d %s run %d/%d" % (n, server, k + 1, args.runs), file=sys.stderr,
                      flush=True)
                runs[server][n].append(Run(SERVER_NAMES[server], n, args).measure())
    maxconn = {}
    if args.max_connections:
        for server in servers:
            print("%s: max connections" % server, file=sys.stderr, flush=True)
            maxconn[server] = max_connections(SERVER_NAMES[server], args)
    results = {s: {n: summarize(runs[s][n]) for n in counts} for s in servers}
    report = dict(command=" ".join(["bench/suite.py"] + sys.argv[1:] if argv is None
                                   else ["bench/suite.py"] + argv),
                  machine=where, runs=args.runs, results=results,
                  all_runs=runs, max_connections=maxconn)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, servers, counts)
    lost = any(r["median"].get(k) for rs in results.values() for r in rs.values()
               for k in ("lat1_lost", "lat50_lost", "slow_lost"))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
