"""The suite's figures: medians over runs, the machine, and the table rulecast against peer."""
import os
import platform
import statistics
import subprocess
from importlib import metadata

from procs import CLIENT_CPU, ROOT, SERVER_CPU

WORST = ("_lost", "_closed")  # figures shown as their worst run: a loss is not averaged away
SERVER_HEADS = {"rulecast": "rulecast", "peer": "Flask-SocketIO"}

# (label, figure, format, the client's busy share beside it); "%" formats a share.
ROWS = [("connect s", "connect_s", "%.2f", "connect_client_busy"),
        ("  srv CPU us/connect", "connect_cpu_us", "%.0f", None),
        ("  srv busy", "connect_server_busy", "%", None),
        ("idle KiB/conn", "idle_kib_per_conn", "%.1f", None),
        ("sustained deliveries/s", "sustained_deliveries_per_s", "%.0f",
         "sustained_client_busy"),
        ("  at publish rate msg/s", "sustained_publish_rate", "%.1f", None),
        ("  srv CPU us/delivery", "sustained_cpu_us_per_delivery", "%.2f", None),
        ("  srv busy", "sustained_server_busy", "%", None),
        ("  next step failed msg/s", "failed_rate", "%.1f", None),
        ("  p99 budget of a step ms", "p99_budget_ms", "%.0f", None),
        ("1 msg/s p50 ms", "lat1_p50_ms", "%.1f", "lat1_client_busy"),
        ("1 msg/s p99 ms", "lat1_p99_ms", "%.1f", "lat1_client_busy"),
        ("1 msg/s max ms", "lat1_max_ms", "%.1f", "lat1_client_busy"),
        ("1 msg/s lost", "lat1_lost", "%d", None),
        ("50% rate p50 ms", "lat50_p50_ms", "%.1f", "lat50_client_busy"),
        ("50% rate p99 ms", "lat50_p99_ms", "%.1f", "lat50_client_busy"),
        ("50% rate max ms", "lat50_max_ms", "%.1f", "lat50_client_busy"),
        ("50% rate lost", "lat50_lost", "%d", None),
        ("1% slow: others p50 ms", "slow_p50_ms", "%.1f", "slow_client_busy"),
        ("1% slow: others p99 ms", "slow_p99_ms", "%.1f", "slow_client_busy"),
        ("1% slow: others max ms", "slow_max_ms", "%.1f", "slow_client_busy"),
        ("1% slow: others lost", "slow_lost", "%d", None),
        ("1% slow: srv RSS start MiB", "slow_rss_start_mib", "%.1f", None),
        ("1% slow: srv RSS max MiB", "slow_rss_max_mib", "%.1f", None),
        ("1% slow: srv RSS end MiB", "slow_rss_end_mib", "%.1f", None),
        ("1% slow: stopped / closed", "slow_closed", "%d", None)]


def summarize(runs):
    """{"median": the runs' medians (the worst run for losses and closes), with every run's
    failure reasons and notes; "failed": each run's step failure in words}."""
    median = {}
    for key in runs[0]:
        values = [r.get(key) for r in runs if isinstance(r.get(key), (int, float))]
        if values and not isinstance(values[0], bool):
            median[key] = max(values) if key.endswith(WORST) else statistics.median(values)
    median["failed_rate"] = median.get("failed_rate")  # None: every run passed the cap
    median["failed_why"] = ", ".join(sorted({r["failed_why"] for r in runs
                                             if r.get("failed_why")}))
    codes = {}
    for r in runs:
        for code, count in (r.get("slow_codes") or {}).items():
            codes[code] = max(codes.get(code, 0), count)
    median["slow_codes"] = codes
    median["notes"] = sorted({note for r in runs for note in r["notes"]})
    return dict(median=median, failed=[r.get("failed_detail") for r in runs])


def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def commit(tree):
    """``git describe`` of a source tree: the commit measured, and whether it was dirty."""
    return subprocess.run(["git", "-C", tree, "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip()


def machine():
    """Cores, CPU model, Python and the versions measured, with the checkout's commit."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return dict(cores=os.cpu_count(), cpu=model, python=platform.python_version(),
                kernel=platform.release(), rulecast="%s (%s)" % (version("rulecast"), commit(ROOT)),
                peer="flask-socketio %s, python-socketio %s, python-engineio %s" % (
                    version("flask-socketio"), version("python-socketio"),
                    version("python-engineio")),
                gevent=version("gevent"), gevent_websocket=version("gevent-websocket"))


def cell(median, key, fmt, busy):
    value = median.get(key)
    if value is None:
        text = "-"
    elif fmt == "%":
        text = "%.0f%%" % (value * 100)
    else:
        text = fmt % value
    if key == "failed_rate":
        text += " (%s)" % (median["failed_why"] or "-")
    if key == "slow_closed":
        text = "%d / %s%s" % (median.get("slow_clients", 0), text, "".join(
            " %s:%d" % kv for kv in sorted(median["slow_codes"].items())))
    if busy and median.get(busy) is not None:
        text += " [c %.0f%%]" % (median[busy] * 100)
    return text


def ratio(a, b, key):
    if key.endswith(WORST) or key in ("failed_rate", "slow_closed", "p99_budget_ms"):
        return "-"
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "-"
    return "%.2f" % (a / b)


def grid(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def print_head(report):
    """The exact command and the machine, as every bench's output starts."""
    m = report["machine"]
    print("$ " + report["command"])
    print("machine: %d cores, %s; Python %s, Linux %s; rulecast %s; %s; gevent %s, "
          "gevent-websocket %s" % (m["cores"], m["cpu"], m["python"], m["kernel"],
                                   m["rulecast"], m["peer"], m["gevent"], m["gevent_websocket"]))


def print_report(report, servers, counts):
    """The table: one row per figure and N, a column per server and the ratio rulecast/peer
    when both ran; the client's busy share in brackets beside what it could limit."""
    print_head(report)
    print("server pinned to CPU %d, load client and publisher to CPU %d; medians of %d run(s), "
          "lost and closed from the worst run; [c NN%%]: the load client's busy share"
          % (SERVER_CPU, CLIENT_CPU, report["runs"]))
    heads = ["figure", "N"] + [SERVER_HEADS[s] for s in servers]
    both = len(servers) == 2
    rows = [heads + ["rulecast/peer"] * both]
    for n in counts:
        medians = [report["results"][s][n]["median"] for s in servers]
        for label, key, fmt, busy in ROWS:
            rows.append([label, str(n)] + [cell(md, key, fmt, busy) for md in medians]
                        + ([ratio(medians[0].get(key), medians[1].get(key), key)] if both
                           else []))
    maxconn = report["max_connections"]
    if maxconn:
        mc = [maxconn[s] for s in servers]
        for label, key, fmt in (("max connections held", "held", "%d"),
                                ("  KiB/conn at that count", "kib_per_conn", "%.1f")):
            rows.append([label, str(mc[0]["target"])] + [fmt % r[key] for r in mc]
                        + ([ratio(mc[0][key], mc[1][key], key)] if both else []))
    print(grid(rows))
    for s in servers:
        for n in counts:
            summary = report["results"][s][n]
            for k, detail in enumerate(summary["failed"]):
                print("%s N=%d run %d: stepping ended: %s" % (s, n, k + 1, detail))
            for note in summary["median"]["notes"]:
                print("%s N=%d: %s" % (s, n, note))
        if s in maxconn:
            r = maxconn[s]
            print("%s max connections: %d of %d held after %.1f s; stopped: %s "
                  "(RLIMIT_NOFILE %d)%s" % (s, r["held"], r["target"], r["connect_s"], r["why"],
                                            r["nofile"], "".join("; " + x for x in r["notes"])))
    losses = [(s, n) for s in servers for n in counts
              if any(report["results"][s][n]["median"].get(k)
                     for k in ("lat1_lost", "lat50_lost", "slow_lost"))]
    if losses:
        print("\n!!! DELIVERIES WERE LOST in a latency or slow-consumer phase (%s): those "
              "phases stay far below the sustained rate, so this is a bug"
              % ", ".join("%s N=%d" % x for x in losses))
