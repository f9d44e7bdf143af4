"""Targeted publish and events, each message for one subscriber: rulecast against Flask-SocketIO."""
import argparse
import collections
import importlib.util
import json
import os
import signal
import sys

from procs import raise_nofile
from suite import HISTORY, Run, step_figures, step_up
from suite_report import commit, machine
from target import Target
from targeted_report import bound, print_report, summarize_case
from workload import Workload, paths, rules_text

#: A workload of the table: its name, what it sends, messages per request, rulecast's
#: workers, the peer's workload shown beside it (for those the peer cannot run), and
#: how it is sent (workload.TRANSPORTS).
Case = collections.namedtuple("Case", "name kind batch workers reference transport",
                              defaults=("http",))
SERVERS = {"rulecast": "rulecast", "before": "rulecast", "peer": "socketio"}


def cases(kinds, batch, workers, transports=("http",)):
    """The table's workloads: each kind one message per request, then in batches of
    ``batch`` (when above 1), then each kind over service sockets (with "ws" in
    ``transports``), then publish with ``workers`` (when above 1)."""
    out = []
    for k in [1] + [batch] * (batch > 1) if "http" in transports else []:
        suffix = "" if k == 1 else ", batch %d" % k
        out += [Case(kind + suffix, kind, k, 1, None if kind == "publish" else "publish" + suffix)
                for kind in kinds]
    if "ws" in transports:  # the peer has none: its HTTP publish is the reference
        out += [Case(kind + ", service socket", kind, 1, 1, "publish", "ws") for kind in kinds]
    if workers > 1:
        out.append(Case("publish, --workers %d" % workers, "publish", 1, workers, "publish"))
    return out


class TargetedRun(Run):
    """One server, one workload: N subscribers each alone on its channel, a phase at the
    fixed common rate, then the stepped rate."""

    def __init__(self, case, column, args):
        super().__init__(SERVERS[column], args.subscribers, args)
        self.case, self.column = case, column
        self.source = args.source if column == "before" else None
        self.workload = Workload(case.kind, self.server, self.n, case.batch, case.transport)
        self.paths = paths(self.server, self.n)
        self.result.update(case=case.name, column=column)

    def new_target(self):
        return Target(self.server, self.case.workers, self.args.run_seconds,
                      max_connections=self.n + 1000, max_per_channel=HISTORY,
                      rules=rules_text() if self.case.kind == "events" else None,
                      source=self.source)

    def phase(self, messages, rate):
        return self.target.phase(messages, rate, workload=self.workload)

    def figures(self, prefix, phase):
        """A phase's throughput, cost, latency, losses and bound as ``prefix``_..."""
        step = step_figures(phase, 1)
        return {prefix + "_rate": step["publish_rate"],
                prefix + "_cpu_us": step["cpu_us_per_delivery"],
                prefix + "_p50_ms": phase["p50"], prefix + "_p99_ms": phase["p99"],
                prefix + "_lost": phase["lost"] + phase["duplicates"],
                prefix + "_misrouted": phase["misrouted"], prefix + "_closed": phase["closed"],
                prefix + "_server_busy": step["server_busy"],
                prefix + "_client_busy": phase["busy"],
                prefix + "_publisher_busy": phase["sent"]["busy"],
                prefix + "_late_ms": phase["sent"]["late_ms"],
                prefix + "_accepted": phase["sent"]["ok"],
                prefix + "_errors": len(phase["sent"]["errors"])}

    def measure(self):
        args, result = self.args, self.result
        try:
            result["connect_s"] = self.start()["connect_s"]
            fixed = self.phase(round(args.fixed_rate * args.fixed_seconds), args.fixed_rate)
            sent = fixed["sent"]
            if sent["statuses"].get(400) and not sent["ok"] and self.case.batch > 1 \
                    and self.case.kind == "publish":
                result["skipped"] = "the server answers 400 to a list body, so it cannot " \
                    "take publish batches: %s" % sent["refused"]
                return result
            if self.case.transport == "ws" and not sent["ok"] and sent["refused"]:
                result["skipped"] = "no service connections on this server: %s" \
                    % sent["refused"]
                return result
            result.update(self.figures("fixed", fixed))
            result["fixed_bound"] = bound(result, "fixed", self.case.workers)
            if fixed["closed"] or fixed["lost"] or fixed["duplicates"]:
                self.start()  # the steps must not inherit a damaged server
            best, _ = step_up(self.phase, 1, args.start_rate, args, args.p99_ms, result)
            last = result["steps"][-1]
            result["failed_bound"] = bound(dict(
                failed_server_busy=last["server_busy"], failed_client_busy=last["client_busy"],
                failed_publisher_busy=last["publisher_busy"]), "failed", self.case.workers)
            if best is None:
                result["notes"].append("no step passed: the sustained figures are 0")
                best = dict(publish_rate=0, cpu_us_per_delivery=0, p50_ms=0, p99_ms=0,
                            server_busy=0, client_busy=0, publisher_busy=0)
            result.update(sustained_rate=best["publish_rate"],
                          sustained_cpu_us=best["cpu_us_per_delivery"],
                          sustained_p50_ms=best["p50_ms"], sustained_p99_ms=best["p99_ms"],
                          sustained_server_busy=best["server_busy"],
                          sustained_client_busy=best["client_busy"],
                          sustained_publisher_busy=best["publisher_busy"])
        finally:
            if self.target:
                self.close()
        return result


def columns_of(args):
    out = ["rulecast"] if args.server in ("rulecast", "both") else []
    out += ["before"] * bool(args.source)
    return out + (["peer"] if args.server in ("peer", "both") else [])


def measure_all(plan, columns, args):
    """{case name: {column: [run results]}}, the columns' order swapped run by run so a
    drift in the machine's load hits them alike; a case a column's server refused (a
    batch to a publish API without them) is not run again."""
    runs = {case.name: {} for case in plan}
    for case in plan:
        mine = [c for c in columns if c != "peer" or case.reference is None
                and case.workers == 1]
        for k in range(args.runs):
            for column in mine if k % 2 == 0 else mine[::-1]:
                done = runs[case.name].setdefault(column, [])
                if done and done[0].get("skipped"):
                    continue
                print("%s: %s run %d/%d" % (case.name, column, k + 1, args.runs),
                      file=sys.stderr, flush=True)
                done.append(TargetedRun(case, column, args).measure())
    return runs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--subscribers", type=int, default=1000,
                   help="N: subscribers, each on its own channel (user:u<i> / room u<i>)")
    p.add_argument("--workload", default="publish,events",
                   help="comma-separated: publish (POST /api/publish to user:u<i>), events "
                        "(POST /api/events through 100 rules, rulecast only)")
    p.add_argument("--transport", default="http,ws",
                   help="comma-separated: http (a POST per request), ws (rulecast only: "
                        "frames pipelined on service WebSockets, rows '…, service socket')")
    p.add_argument("--batch", type=int, default=1,
                   help="also measure every workload with K messages per request (a JSON "
                        "list); 1: off")
    p.add_argument("--workers", type=int, default=1,
                   help="also measure the publish workload with rulecast --workers W "
                        "(unpinned); 1: off")
    p.add_argument("--source", metavar="DIR",
                   help="also measure rulecast run from the source tree DIR (PYTHONPATH=DIR; "
                        "e.g. `git worktree add /tmp/before COMMIT`), in a column 'before'")
    p.add_argument("--server", choices=("rulecast", "peer", "both"), default="both")
    p.add_argument("--runs", type=int, default=3, help="figures are medians of the runs, "
                   "losses the worst run")
    p.add_argument("--fixed-rate", type=float, default=1000,
                   help="the common rate (messages/s) at which every server is compared")
    p.add_argument("--fixed-seconds", type=float, default=3.0)
    p.add_argument("--start-rate", type=float, default=500, help="first step, messages/s")
    p.add_argument("--step-factor", type=float, default=1.5, help="rate × this per step")
    p.add_argument("--step-seconds", type=float, default=5.0, help="publishing time per step")
    p.add_argument("--step-messages", type=int, default=20,
                   help="at least this many messages per step")
    p.add_argument("--max-rate", type=float, default=50000,
                   help="stepping stops after passing this rate (messages/s)")
    p.add_argument("--p99-ms", type=float, default=100,
                   help="a step fails above this p99 (the goal of issue #12 is 20 ms)")
    p.add_argument("--run-seconds", type=float, default=600,
                   help="deadline of one server's run of one workload")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1 run, 1 s phases (unless given otherwise)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    given = set(a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv))
    args = p.parse_args(argv)
    if args.quick:
        for name, value in (("runs", 1), ("fixed_seconds", 1.0), ("step_seconds", 1.0)):
            if "--" + name.replace("_", "-") not in given:
                setattr(args, name, value)
    args.addresses = 1
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    kinds = [k for k in args.workload.split(",") if k]
    if not kinds or set(kinds) - {"publish", "events"}:
        p.error("--workload: publish, events or both")
    transports = [t for t in args.transport.split(",") if t]
    if not transports or set(transports) - {"http", "ws"}:
        p.error("--transport: http, ws or both")
    if min(args.runs, args.subscribers, args.batch, args.workers) < 1 or args.step_factor <= 1:
        p.error("--runs, --subscribers, --batch, --workers must be at least 1, "
                "--step-factor above 1")
    if args.source and not os.path.isdir(os.path.join(args.source, "rulecast")):
        p.error("--source %s: no rulecast package there" % args.source)
    columns = columns_of(args)
    if "peer" in columns and importlib.util.find_spec("flask_socketio") is None:
        p.error("the peer needs flask-socketio: .venv/bin/pip install -e '.[bench]'")
    if args.subscribers + 100 > raise_nofile():
        p.error("%d subscribers need more file descriptors than RLIMIT_NOFILE"
                % args.subscribers)
    where = machine()  # before the runs: the commit measured, not one checked out meanwhile
    if args.source:
        where["before"] = "%s (%s)" % (os.path.abspath(args.source), commit(args.source))
    plan = cases(kinds, args.batch, args.workers, transports)
    if "peer" in columns:  # the peer's reference rows, for the workloads it cannot run
        plan += [Case(c.reference, "publish", c.batch, 1, None) for c in plan
                 if c.reference and c.reference not in [x.name for x in plan]]
    runs = measure_all(plan, columns, args)
    results = {case.name: {col: summarize_case(rs) for col, rs in by.items()}
               for case in plan for by in [runs[case.name]]}
    report = dict(command=" ".join(["bench/targeted.py"] + (sys.argv[1:] if argv is None
                                                             else argv)),
                  machine=where, args=vars(args), columns=columns,
                  cases=[c._asdict() for c in plan], results=results, all_runs=runs)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    lost = any(md["median"].get("fixed_lost") or md["median"].get("fixed_misrouted")
               for by in results.values() for col, md in by.items() if col != "peer")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
