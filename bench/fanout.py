"""Fan-out benchmark: N raw-socket subscribers on one topic, a publisher, server cost;
against rulecast, or against its peer Flask-SocketIO (bench/peer_socketio.py)."""
import argparse
import json
import resource
import shutil
import signal
import statistics
import sys

from procs import CHANNEL, CLIENT_CPU, SERVER_CPU, SERVERS, raise_nofile
from publisher import PUBLISHERS
from target import Target

RUN_SECONDS = 60  # overall deadline of one run: start, connect, publish, drain


# -- one run ---------------------------------------------------------------------------------

def run_once(n, cfg):
    """One run with ``n`` subscribers; ``cfg``: server, workers, mode, messages, rate."""
    throughput, server = cfg.mode == "throughput", getattr(cfg, "server", "rulecast")
    # The queue and history bounds sit above the run's message count: the load client
    # never resumes, so a 1013 close or a pruned gap would read as loss, not as a bug.
    with Target(server, cfg.workers, RUN_SECONDS, getattr(cfg, "peer_nagle", False),
                send_queue=max(10000, cfg.messages + 1000),
                max_per_channel=max(1000, 2 * cfg.messages + 1000)) as target:
        connected = target.connect(n)
        if not connected["ready"]:
            raise RuntimeError("no subscriber got through: %s" % connected["why"])
        got = target.phase(cfg.messages, None if throughput else cfg.rate,
                           PUBLISHERS if throughput else 1)
        refilled, slow_closes = target.metrics()
    sent, ready = got["sent"], connected["ready"]
    if sent["ok"] + len(sent["errors"]) < cfg.messages:
        sent["errors"].insert(0, "the %d s deadline stopped the publisher after %d messages"
                              % (RUN_SECONDS, sent["ok"] + len(sent["errors"])))
    for p in got["procs"]:  # connections taken: descriptors opened while subscribers came
        p["conns"] = connected["conns"].get(p["pid"], 0)
    closes = ", ".join("%s: %d" % kv for kv in sorted(got["codes"].items()))
    why = connected["why"] or (closes and "closed by the server (%s)" % closes)
    wall, cpu = got["wall_s"], got["cpu_s"]
    return dict(subscribers=n, server=server, workers=cfg.workers, mode=cfg.mode,
                messages=cfg.messages, pings_answered=got["pings"],
                connect_s=connected["connect_s"],
                failed_connects=n - ready,
                publish_rate=(sent["ok"] - (0 if throughput else 1))
                / max(sent["last"] - sent["first"], 1e-9),
                published=sent["ok"], publish_errors=len(sent["errors"]),
                deliveries=got["received"], lost=n * cfg.messages - got["received"],
                undelivered=got["expected"] - got["received"], duplicates=got["duplicates"],
                closed_by_server=got["closed"], error_frames=got["error_frames"],
                deliveries_per_s=got["received"] / max(got["last"] - sent["first"], 1e-9),
                drain_ms=max(0.0, got["last"] - sent["last"]) * 1000,
                p50_ms=got["p50"], p99_ms=got["p99"], max_ms=got["max"],
                cpu_us_per_delivery=cpu * 1e6 / max(got["received"], 1),
                server_busy=cpu / wall, rss_kib_per_conn=connected["rss_growth_kib"] / n,
                client_busy=got["busy"], server_log_problems=len(target.problems),
                refilled=refilled, slow_closes=slow_closes, procs=got["procs"],
                notes=sorted(({why} | set(sent["errors"][:1]) | set(target.problems[:3])
                              | set(target.notes)) - {""}))


def loss_report(r):
    """A loud line when deliveries are missing or repeated, else None."""
    if r["lost"] <= 0 and r["duplicates"] <= 0:
        return None
    return ("!!! LOST %d of %d deliveries (%d subscribers failed to connect, %d publishes "
            "failed, %d accepted messages' deliveries never arrived, %d duplicates, %d "
            "connections closed by the server): a loss is a bug, see the notes"
            % (r["lost"], r["subscribers"] * r["messages"],
               r["failed_connects"], r["publish_errors"], r["undelivered"], r["duplicates"],
               r["closed_by_server"]))


# -- output -------------------------------------------------------------------------------

COLUMNS = [("subs", "subscribers", "%d"), ("connect s", "connect_s", "%.2f"),
           ("pub/s", "publish_rate", "%.1f"), ("deliv/s", "deliveries_per_s", "%.0f"),
           ("msg/s out", "messages_out", "%.1f"),
           ("p50 ms", "p50_ms", "%.1f"), ("p99 ms", "p99_ms", "%.1f"), ("max ms", "max_ms", "%.1f"),
           ("lost", "lost", "%.0f"), ("srv us/deliv", "cpu_us_per_delivery", "%.1f"),
           ("srv busy", "server_busy", "%.0f%%"), ("srv KiB/conn", "rss_kib_per_conn", "%.1f"),
           ("client busy", "client_busy", "%.0f%%")]


#: Throughput mode adds how long deliveries went on after the last publish was answered.
THROUGHPUT_COLUMNS = COLUMNS[:5] + [("drain ms", "drain_ms", "%.0f")] + COLUMNS[5:]


def table(rows, columns=COLUMNS):
    cells = [[h for h, _, _ in columns]] + [
        [f % (r[k] * 100 if f.endswith("%%") else r[k]) for _, k, f in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def summarize(mine):
    """The medians of one configuration's runs, with every run's notes."""
    keys = [k for k, v in mine[0].items() if isinstance(v, (int, float))
            and k not in ("workers", "messages", "refilled", "slow_closes")]
    result = {k: statistics.median(r[k] for r in mine) for k in keys}
    for k in ("refilled", "slow_closes"):
        values = [r[k] for r in mine if r[k] is not None]
        result[k] = max(values) if values else None
    result.update(server=mine[0]["server"], workers=mine[0]["workers"], mode=mine[0]["mode"],
                  messages=mine[0]["messages"],
                  messages_out=result["deliveries_per_s"] / mine[0]["subscribers"],
                  lost=max(r["lost"] for r in mine),  # a loss in any run is not averaged away
                  duplicates=max(r["duplicates"] for r in mine),
                  notes=sorted({note for r in mine for note in r["notes"]}))
    return result


def headline(cfg, runs):
    what = ("%d messages as fast as %d connections get answers" % (cfg.messages, PUBLISHERS)
            if cfg.mode == "throughput" else "%d messages at %g/s" % (cfg.messages, cfg.rate))
    pinned = ("pinned to CPU %d" % SERVER_CPU if shutil.which("taskset")
              else "NOT pinned (no taskset)")
    if getattr(cfg, "server", "rulecast") == "socketio":
        return ("Flask-SocketIO fan-out (gevent + gevent-websocket, one process, %s), %s "
                "mode: %s to room bench, median of %d run(s); server %s, load client and "
                "publisher on CPU %d" % ("Nagle on (stock)" if getattr(cfg, "peer_nagle", False)
                                         else "TCP_NODELAY like rulecast", cfg.mode, what, runs,
                                         pinned, CLIENT_CPU))
    where = ("server %s" % pinned if cfg.workers == 1 else
             "server NOT pinned (its %d workers, sequencer and supervisor use both cores, so "
             "it shares CPU %d with the load client)" % (cfg.workers, CLIENT_CPU))
    return ("rulecast fan-out, --workers %d, %s mode: %s to %s, median of %d run(s); %s, "
            "load client and publisher on CPU %d"
            % (cfg.workers, cfg.mode, what, CHANNEL, runs, where, CLIENT_CPU))


def details(results):
    """The lines below a table: per-process split, bus refills, notes, losses."""
    lines = []
    for r in results:
        n = r["subscribers"]
        for i, run in enumerate(r["runs"]):
            if r["workers"] > 1:
                lines.append("N=%d run %d processes (busy over the publish phase, conns "
                             "taken): %s" % (n, i + 1, ", ".join(
                                 "%s %.0f%%%s" % (p["role"], p["busy"] * 100,
                                                  " %d" % p["conns"] if "worker" in p["role"]
                                                  else "") for p in run["procs"])))
        if r["refilled"]:
            lines.append("N=%d: the bus refilled up to %d messages from the store (drops "
                         "between the sequencer and a worker)" % (n, r["refilled"]))
        if r["slow_closes"]:
            lines.append("N=%d: the server closed up to %d connections as too slow (1013)"
                         % (n, r["slow_closes"]))
        for note in r["notes"]:
            lines.append("N=%d: %s" % (n, note))
        for run in r["runs"]:
            loud = loss_report(run)
            if loud:
                lines.append("N=%d: %s" % (n, loud))
    return lines


def measure(plans, counts, runs):
    """Runs every plan (a config) for every N, ``runs`` times, interleaving the plans run
    by run so that a drift in the machine's load hits them alike; {plan index: results}."""
    out = {i: [] for i in range(len(plans))}
    for n in counts:
        mine = {i: [] for i in range(len(plans))}
        for k in range(runs):
            for i, cfg in enumerate(plans):
                print("N=%d %s --workers %d %s run %d/%d" % (
                    n, getattr(cfg, "server", "rulecast"), cfg.workers, cfg.mode, k + 1, runs),
                    file=sys.stderr, flush=True)
                r = run_once(n, cfg)
                loud = loss_report(r)
                if loud:
                    print(loud, file=sys.stderr, flush=True)
                mine[i].append(r)
        for i in mine:
            out[i].append(dict(summarize(mine[i]), runs=mine[i]))
    return out


RATIOS = {"rate": [("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("max ms", "max_ms"),
                   ("srv us/deliv", "cpu_us_per_delivery"), ("srv busy", "server_busy"),
                   ("srv KiB/conn", "rss_kib_per_conn")],
          "throughput": [("accepted msg/s", "publish_rate"), ("deliveries/s", "deliveries_per_s"),
                         ("msg/s out", "messages_out"), ("drain ms", "drain_ms"),
                         ("p50 ms", "p50_ms"),
                         ("p99 ms", "p99_ms"), ("srv us/deliv", "cpu_us_per_delivery"),
                         ("srv busy", "server_busy")]}


#: Against the peer: every figure of the table.
PEER_RATIOS = {"rate": [("connect s", "connect_s"), ("pub/s", "publish_rate"),
                        ("deliveries/s", "deliveries_per_s"), ("p50 ms", "p50_ms"),
                        ("p99 ms", "p99_ms"), ("max ms", "max_ms"),
                        ("srv us/deliv", "cpu_us_per_delivery"), ("srv busy", "server_busy"),
                        ("srv KiB/conn", "rss_kib_per_conn"), ("client busy", "client_busy")],
               "throughput": [("connect s", "connect_s"), ("accepted msg/s", "publish_rate"),
                              ("deliveries/s", "deliveries_per_s"), ("msg/s out", "messages_out"),
                              ("drain ms", "drain_ms"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
                              ("max ms", "max_ms"), ("srv us/deliv", "cpu_us_per_delivery"),
                              ("srv busy", "server_busy"), ("srv KiB/conn", "rss_kib_per_conn"),
                              ("client busy", "client_busy")]}


def ratio_table(pairs, many, heads=None, figures=RATIOS):
    """``pairs``: (mode label, mode, results of workers 1, results of workers ``many``);
    ``heads``: other column names (first, second, ratio) for another comparison."""
    heads = heads or ("workers 1", "workers %d" % many, "w%d/w1" % many)
    rows = [("mode", "subs", "figure") + tuple(heads)]
    for label, mode, one, other in pairs:
        for a, b in zip(one, other):
            for name, key in figures[mode] + [("lost", "lost")]:
                ratio = ("%.2f" % (b[key] / a[key]) if a[key] and key != "lost" else "-")
                share = key in ("server_busy", "client_busy")
                fmt = "%.0f%%" if share else "%.2f" if key == "connect_s" else "%.1f"
                scale = 100 if share else 1
                rows.append((label, "%d" % a["subscribers"], name, fmt % (a[key] * scale),
                             fmt % (b[key] * scale), ratio))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def strip(results):
    return [{k: v for k, v in r.items() if k != "runs"} for r in results]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--subscribers", default="100,1000", help="comma-separated counts N")
    p.add_argument("--workers", type=int, default=1,
                   help="`rulecast serve --workers N`; above 1 the server is not pinned")
    p.add_argument("--mode", choices=("rate", "throughput"), default="rate",
                   help="rate: publish at --rate; throughput: as fast as the server answers "
                        "%d parallel connections" % PUBLISHERS)
    p.add_argument("--messages", type=int, default=None,
                   help="messages published per run (default 200 in rate mode, 2000 in "
                        "throughput mode)")
    p.add_argument("--rate", type=float, default=50, help="messages published per second")
    p.add_argument("--runs", type=int, default=3, help="runs per N; figures are their medians")
    p.add_argument("--compare", action="store_true",
                   help="--workers 1 against --workers M (M = --workers if above 1, else 2), "
                        "in rate mode (--messages at --rate) and in throughput mode "
                        "(--throughput-messages), with the ratios")
    p.add_argument("--throughput-messages", type=int, default=2000,
                   help="with --compare: messages per throughput-mode run")
    p.add_argument("--server", choices=sorted(SERVERS), default="rulecast",
                   help="the server to measure: rulecast, or the peer Flask-SocketIO "
                        "(bench/peer_socketio.py, gevent + gevent-websocket, one process; "
                        "needs flask-socketio installed)")
    p.add_argument("--peer", action="store_true",
                   help="the same scenario (--mode, --messages, --rate) against rulecast and "
                        "against Flask-SocketIO, alternating run by run, with the ratios "
                        "rulecast/peer")
    p.add_argument("--peer-nagle", action="store_true",
                   help="run the peer stock, without the TCP_NODELAY that rulecast sets (each "
                        "keep-alive publish then waits ~40 ms for a delayed ACK)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    # SIGTERM ends the bench like Ctrl-C: through the finally blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    counts = [int(c) for c in args.subscribers.split(",")]
    if args.workers < 1 or args.runs < 1 or min(counts) < 1:
        p.error("--workers, --runs and every N must be at least 1")
    if args.peer and args.compare:
        p.error("--peer and --compare do not go together: run them one after the other")
    if args.peer and args.server != "rulecast":
        p.error("--peer already runs both servers: leave out --server")
    if args.server == "socketio" and args.workers != 1:
        p.error("the Flask-SocketIO peer is one process: --workers must be 1")
    if args.peer or args.server == "socketio":
        import importlib.util  # the peer's process imports it; here, only look for it
        if importlib.util.find_spec("flask_socketio") is None:
            p.error("the peer needs flask-socketio: .venv/bin/pip install flask-socketio")
    raise_nofile()  # the forked load client inherits it
    if max(counts) + 100 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        p.error("%d subscribers need more file descriptors than RLIMIT_NOFILE" % max(counts))
    if args.messages is None:
        args.messages = 2000 if args.mode == "throughput" else 200
    if args.compare:
        many = max(2, args.workers)
        plans = [argparse.Namespace(workers=w, mode=m, rate=args.rate,
                                    messages=args.messages if m == "rate"
                                    else args.throughput_messages)
                 for m in ("rate", "throughput") for w in (1, many)]
    elif args.peer:
        plans = [argparse.Namespace(server=server, workers=args.workers if server == "rulecast"
                                    else 1, mode=args.mode, rate=args.rate,
                                    messages=args.messages, peer_nagle=args.peer_nagle)
                 for server in ("rulecast", "socketio")]
    else:
        plans = [argparse.Namespace(server=args.server, workers=args.workers, mode=args.mode,
                                    rate=args.rate, messages=args.messages,
                                    peer_nagle=args.peer_nagle)]
    out = measure(plans, counts, args.runs)
    lost = any(r["lost"] > 0 or r["duplicates"] > 0 for rs in out.values() for r in rs)
    if args.json:
        print(json.dumps({"runs": args.runs, "configs": [
            dict(vars(cfg), results=strip(out[i]), all_runs=[x for r in out[i] for x in r["runs"]])
            for i, cfg in enumerate(plans)], **({} if args.compare or args.peer else dict(
                vars(plans[0]), results=strip(out[0]),
                all_runs=[x for r in out[0] for x in r["runs"]]))}, indent=2))
        return 1 if lost else 0
    for i, cfg in enumerate(plans):
        if i:
            print()
        print(headline(cfg, args.runs))
        print(table(out[i], THROUGHPUT_COLUMNS if cfg.mode == "throughput" else COLUMNS))
        for line in details(out[i]):
            print(line)
    if args.compare:
        print()
        print("--workers %d against --workers 1 (medians; lost is the worst run)" % many)
        print(ratio_table([("rate %g/s" % args.rate, "rate", out[0], out[1]),
                           ("throughput", "throughput", out[2], out[3])], many))
    if args.peer:
        label = "rate %g/s" % args.rate if args.mode == "rate" else "throughput"
        print()
        print("rulecast (--workers %d) against Flask-SocketIO, %s mode, %d messages (medians; "
              "lost is the worst run)" % (args.workers, args.mode, args.messages))
        print(ratio_table([(label, args.mode, out[1], out[0])], 1,
                          heads=("Flask-SocketIO", "rulecast", "rulecast/peer"),
                          figures=PEER_RATIOS))
    if lost:
        print("\n!!! DELIVERIES WERE LOST OR DUPLICATED: see the lines starting with !!! "
              "above. The server refills drops from its store, so this is a bug.")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
