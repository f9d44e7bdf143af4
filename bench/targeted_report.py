"""The targeted bench's figures: which side was the bound, medians over runs, and the table."""
from procs import CLIENT_CPU, SERVER_CPU
from publisher import PACED, WS_CAP
from suite_report import cell, grid, print_head, ratio, summarize

HEADS = {"rulecast": "rulecast", "before": "before", "peer": "Flask-SocketIO"}
# (label, figure, format, the load client's busy share beside it); {u}: message or event.
ROWS = [("sustained {u}s/s, 0 lost", "sustained_rate", "%.0f", "sustained_client_busy"),
        ("  srv CPU us/{u}", "sustained_cpu_us", "%.1f", None),
        ("  p50 ms", "sustained_p50_ms", "%.1f", None),
        ("  p99 ms", "sustained_p99_ms", "%.1f", None),
        ("  srv busy", "sustained_server_busy", "%", None),
        ("  publisher busy", "sustained_publisher_busy", "%", None),
        ("  next step failed {u}s/s", "failed_rate", "%.0f", None),
        ("  bound at that step", "failed_bound", "text", None),
        ("at {r:,.0f}/s: srv CPU us/{u}", "fixed_cpu_us", "%.1f", "fixed_client_busy"),
        ("at {r:,.0f}/s: p50 ms", "fixed_p50_ms", "%.1f", None),
        ("at {r:,.0f}/s: p99 ms", "fixed_p99_ms", "%.1f", None),
        ("at {r:,.0f}/s: achieved {u}s/s", "fixed_rate", "%.0f", None),
        ("at {r:,.0f}/s: lost / misrouted", "fixed_lost", "lost", None)]


def bound(figures, prefix, workers):
    """Which side ran out of CPU in a phase, from the busy shares ``prefix``_server_busy,
    _client_busy, _publisher_busy: the server (pinned to its own core, near 100 %), CPU 1
    (the load client and the publisher share it), or, with unpinned workers, the whole
    machine; "none" when nobody was near its limit (a latency or loss limit, not CPU)."""
    s, c, p = (figures[prefix + k] for k in ("_server_busy", "_client_busy",
                                               "_publisher_busy"))
    if workers > 1 and s + c + p >= 1.6:
        return "machine (%.0f%% of 200%%)" % ((s + c + p) * 100)
    if workers == 1 and s >= 0.8:
        return "server (%.0f%%)" % (s * 100)
    if c + p >= 0.8:
        return "%s (CPU %d: client %.0f%%, publisher %.0f%%)" % (
            "load client" if c >= p else "publisher", CLIENT_CPU, c * 100, p * 100)
    return "none (server %.0f%%, client %.0f%%, publisher %.0f%%)" % (s * 100, c * 100, p * 100)


def summarize_case(runs):
    """suite_report.summarize's medians of one column's runs of one workload, with the
    bounds (short, each run's kind) and a refusal that skipped it."""
    if runs[0].get("skipped"):
        return dict(median=dict(notes=[runs[0]["skipped"]]), failed=[], skipped=runs[0]["skipped"])
    summary = summarize(runs)
    summary["median"]["failed_bound"] = ", ".join(sorted({
        r["failed_bound"].split(" (")[0] for r in runs if r.get("failed_bound")}))
    summary["median"]["fixed_misrouted"] = max(r.get("fixed_misrouted", 0) for r in runs)
    return summary


def text_cell(median, key, fmt, busy):
    if fmt == "text":
        return median.get(key) or "-"
    if fmt == "lost":
        return "%d / %d" % (median.get("fixed_lost", 0), median.get("fixed_misrouted", 0))
    return cell(median, key, fmt, busy)


def headline(report):
    a = report["args"]
    lines = ["N = %d subscribers, each alone on its channel (rulecast: user:u<i> from its "
             "token; Flask-SocketIO: room u<i>); message n goes to u<n mod N>"
             % a["subscribers"],
             "server pinned to CPU %d (--workers rows: NOT pinned, sharing CPU %d); load client "
             "and publisher (raw sockets on epoll, %d keep-alive connections, one request in "
             "flight each) on CPU %d" % (SERVER_CPU, CLIENT_CPU, PACED, CLIENT_CPU),
             "steps from %g/s, x %g, %g s each; a step fails on a loss, duplicate or misroute, "
             "a close, a publish error, p99 > %g ms or the publisher below 90 %% of the rate; "
             "medians of %d run(s), losses from the worst; [c NN%%]: the load client's busy "
             "share" % (a["start_rate"], a["step_factor"], a["step_seconds"], a["p99_ms"],
                        a["runs"])]
    if any(c.get("transport") == "ws" for c in report["cases"]):
        lines.append("service socket rows: the same publisher on %d WebSockets to /rulecast/ws "
                     "with the API key, one message per frame, frames pipelined (at most %d "
                     "unanswered each), round robin" % (PACED, WS_CAP))
    if report["machine"].get("before"):
        lines.append("before: rulecast from %s" % report["machine"]["before"])
    return "\n".join(lines)


def print_report(report):
    """One row per figure and workload, a column per server; for the workloads the peer
    cannot run (events, workers), its column holds its publish figures as the reference,
    marked with *; the ratios rulecast/peer (and rulecast/before)."""
    print_head(report)
    print(headline(report))
    columns, results = report["columns"], report["results"]
    rate = report["args"]["fixed_rate"]
    heads = ["figure", "workload"] + [HEADS[c] for c in columns]
    pairs = [(a, b) for a, b in (("rulecast", "peer"), ("rulecast", "before"))
             if a in columns and b in columns]
    rows = [heads + ["%s/%s" % pair for pair in pairs]]
    for case in report["cases"]:
        if case["name"] not in results or "rulecast" not in results[case["name"]] and \
                "before" not in results[case["name"]]:
            continue  # a reference row only
        by = dict(results[case["name"]])
        if case["reference"] and case["reference"] in results:
            ref = results[case["reference"]].get("peer")
            if ref:
                by["peer"] = dict(ref, reference=True)
        unit = "event" if case["kind"] == "events" else "msg"
        for label, key, fmt, busy in ROWS:
            row = [label.format(u=unit, r=rate), case["name"]]
            for c in columns:
                md = by.get(c)
                if md is None:
                    row.append("-")
                elif md.get("skipped"):
                    row.append("skipped")
                else:
                    row.append(text_cell(md["median"], key, fmt, busy)
                               + " *" * bool(md.get("reference")))
            for a, b in pairs:
                ma, mb = by.get(a, {}).get("median", {}), by.get(b, {}).get("median", {})
                row.append(ratio(ma.get(key), mb.get(key), key) if fmt not in ("text", "lost")
                           else "-")
            rows.append(row)
    print(grid(rows))
    print("* the peer's publish figures of the same batch size, as the reference: it has "
          "no rules engine, no service sockets, and it runs one process")
    for case in report["cases"]:
        for column, runs in report["all_runs"][case["name"]].items():
            for k, r in enumerate(runs):
                who = "%s, %s run %d" % (case["name"], column, k + 1)
                if r.get("skipped"):
                    print("%s: skipped: %s" % (who, r["skipped"]))
                    continue
                print("%s steps: %s" % (who, ", ".join(
                    "%.0f/s p99 %.1f ms%s" % (s["rate"], s["p99_ms"],
                                              " FAILED" if s["failed"] else "")
                    for s in r["steps"])))
                print("%s: stepping ended: %s; bound: %s" % (
                    who, r.get("failed_detail"), r.get("failed_bound")))
                if r.get("fixed_lost") or r.get("fixed_misrouted") or r.get("fixed_closed"):
                    print("!!! %s: at %g/s %d lost or duplicated, %d misrouted, %d closed"
                          % (who, rate, r["fixed_lost"], r["fixed_misrouted"],
                             r["fixed_closed"]))
                for note in r["notes"]:
                    print("%s: %s" % (who, note))
