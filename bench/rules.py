"""Events per second through 100 rules with typical conditions, on one core."""
import argparse
import copy
import http.client
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rulecast.bus import LocalBus  # noqa: E402
from rulecast.engine import Engine, load_rules  # noqa: E402
from rulecast.events import Event, load_events  # noqa: E402
from rulecast.hub import Hub  # noqa: E402
from rulecast import logs  # noqa: E402
from rulecast.metrics import Metrics  # noqa: E402
from rulecast.plugins import manager  # noqa: E402
from rulecast.store.sqlite import SQLiteStore  # noqa: E402
from rulecast.webhooks import Sender  # noqa: E402
from bench import procs  # noqa: E402

TYPES = ["comment.added", "comment.removed", "workflow.transition", "news.published",
         "vm.ready", "vm.failed", "user.joined", "file.uploaded", "task.assigned", "task.done"]


def spread(n, rule):
    """``n`` rules, ``rule(i, on)`` each, their ``on`` going round TYPES: every third
    rule takes its type's glob (comment.*) instead."""
    out = []
    for i in range(n):
        kind = TYPES[i % len(TYPES)]
        out.append(rule(i, kind if i % 3 else kind.split(".")[0] + ".*"))
    return "".join(out)


def rules_yaml(n):
    """``n`` rules spread over TYPES, each with a typical mix of conditions."""
    return spread(n, lambda i, on: """- name: rule-%d
  on: %s
  if:
    - path: /intranet/section-%d/**
    - object_type: [Document, News Item]
    - not: {actor_is_owner: true}
    - field: {name: data.state, in: [pending, published]}
  then:
    - notify:
        to: ["user:{{ object.owner }}", "role:Reviewer"]
        title: "{{ actor.name }} on {{ object.title }}"
        body: "{{ data.text | truncate(80) }}"
        url: "{{ object.url }}"
""" % (i, on, i % 20))


def events(count, seed=1):
    rnd = random.Random(seed)
    return [Event(rnd.choice(TYPES), actor={"id": "u%d" % rnd.randrange(50), "name": "User"},
                  object={"type": rnd.choice(["Document", "News Item", "Folder"]),
                          "path": "/intranet/section-%d/doc-%d" % (rnd.randrange(40), i),
                          "owner": "u%d" % rnd.randrange(50), "title": "Doc %d" % i,
                          "url": "http://intranet/doc-%d" % i},
                  data={"state": rnd.choice(["pending", "published", "private"]),
                        "text": "some comment text " * 5})
            for i in range(count)]


class CountingBus:
    """Takes the messages and drops them: the engine's own cost, no store."""

    def __init__(self):
        self.count = 0

    def publish_many(self, items):
        self.count += len(items)
        return []


def path_rules_yaml(n):
    """``n`` rules of which :data:`PATH_EVENT`'s type is wanted by about one in eight and
    matched by path-0 alone: no other path fits."""
    return spread(n, lambda i, on: """- name: path-%d
  on: %s
  if:
    - path: /intranet/section-%d/**
    - expr: "data.text | length > 0"
  then:
    - notify:
        to: "user:{{ object.owner }}"
        title: "{{ actor.name }} on {{ object.title }}"
        body: "{{ data.text | truncate(80) }}"
""" % (i, on, i))


#: A parsed JSON body, as the API gets it, that path-0 alone of path_rules_yaml matches.
PATH_EVENT = {"type": "comment.added", "actor": {"id": "bob", "name": "Bob"},
              "object": {"id": "doc-1", "path": "/intranet/section-0/q3-plan",
                         "type": "Document", "title": "Q3 plan", "owner": "ann",
                         "url": "http://intranet/q3-plan"},
              "data": {"text": "some comment text " * 5}}


def per_event_us(run, bodies, events_per_body, runs):
    """Median over ``runs`` of CPU µs per event of ``run(body)`` over ``bodies``."""
    def once():
        start = time.process_time()
        for body in bodies:
            run(body)
        return (time.process_time() - start) * 1e6 / (len(bodies) * events_per_body)
    return statistics.median(once() for _ in range(runs))


def rule_path(rules_path, count, runs):
    """CPU µs per event from the parsed body to the (channel, data) list, and its parts:
    validation alone (load_events), the engine alone (Engine.process), both, and both
    with the server's logging set up (into /dev/null); one event per body, and batches
    of 10."""
    hook = manager().hook
    ruleset = load_rules([rules_path], hook)
    assert not ruleset.problems, ruleset.problems
    bus = CountingBus()
    engine = Engine(ruleset, bus, hook, Metrics(), Sender())
    singles = [copy.deepcopy(PATH_EVENT) for _ in range(count)]
    batches = [[copy.deepcopy(PATH_EVENT) for _ in range(10)] for _ in range(count // 10)]
    loaded = [load_events(body) for body in singles]
    loaded_batches = [load_events(body) for body in batches]
    engine.process(loaded[0])
    bus.count = 0
    def both(body):
        engine.process(load_events(body))
    figures = {
        "validate_us": per_event_us(load_events, singles, 1, runs),
        "validate_batch10_us": per_event_us(load_events, batches, 10, runs),
        "engine_us": per_event_us(engine.process, loaded, 1, runs),
        "engine_batch10_us": per_event_us(engine.process, loaded_batches, 10, runs),
        "both_us": per_event_us(both, singles, 1, runs),
        "both_batch10_us": per_event_us(both, batches, 10, runs),
        "wanted": len(ruleset.for_type(PATH_EVENT["type"])),
    }
    with open(os.devnull, "w") as sink:
        logs.setup()  # as `rulecast serve` does: INFO and above, key=value lines
        logging.getLogger().handlers[0].setStream(sink)
        try:
            figures["logged_us"] = per_event_us(both, singles, 1, runs)
            figures["logged_batch10_us"] = per_event_us(both, batches, 10, runs)
        finally:
            logging.getLogger().handlers[:] = []
    assert bus.count == 3 * runs * (len(singles) + 10 * len(batches)), bus.count
    return figures


def end_to_end(rules_path, count, batch):
    """Server CPU µs per event for ``count`` events POSTed to a real `rulecast serve
    --workers 1` with the rules in ``rules_path``, ``batch`` events per request, on one
    keep-alive connection."""
    os.environ["RULECAST_RULES"] = rules_path  # procs writes a config without rules
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {procs.CLIENT_CPU})  # the server has SERVER_CPU to itself
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, _ = procs.start_server(tmp, 1, max_per_channel=100)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"Authorization": "Bearer " + procs.KEY,
                       "Content-Type": "application/json"}
            one = json.dumps(PATH_EVENT if batch == 1 else [PATH_EVENT] * batch)

            def post():
                conn.request("POST", "/rulecast/api/events", one, headers)
                answer = conn.getresponse()
                body = answer.read()
                assert answer.status == 202, body
                return json.loads(body)
            assert post()["matched"] == ["path-0"] * batch
            for _ in range(50):  # warm up: first requests import and compile lazily
                post()
            before = procs.proc_stats(proc.pid)[0]
            for _ in range(count // batch):
                post()
            cpu = procs.proc_stats(proc.pid)[0] - before
            conn.close()
        finally:
            procs.stop_server(proc)
            del os.environ["RULECAST_RULES"]
    return cpu * 1e6 / (count // batch * batch)


def measure(engine, batch):
    start = time.process_time()
    for event in batch:
        engine.process([event])
    return len(batch) / (time.process_time() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rules", type=int, default=100)
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--path-events", type=int, default=5000,
                   help="events through the rule path (parsed body to messages)")
    p.add_argument("--serve", type=int, default=0, metavar="N",
                   help="also POST N events to a real `rulecast serve --workers 1` with the "
                        "rule path's rules and report its CPU per event")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rules.yaml")
        with open(path, "w") as f:
            f.write(rules_yaml(args.rules))
        hook = manager().hook
        ruleset = load_rules([path], hook)
        assert not ruleset.problems, ruleset.problems
        metrics, batch = Metrics(), events(args.events)
        counting = CountingBus()
        engine_only = Engine(ruleset, counting, hook, metrics, Sender())
        store = SQLiteStore(os.path.join(tmp, "bench.db"), max_per_channel=1000)
        stored = Engine(ruleset, LocalBus(store, Hub(metrics), hook, metrics), hook, metrics,
                        Sender())
        results = {
            "rules": args.rules, "events": args.events,
            "engine_events_per_s": statistics.median(
                measure(engine_only, batch) for _ in range(args.runs)),
            "stored_events_per_s": statistics.median(
                measure(stored, batch[:max(1, args.events // 4)]) for _ in range(args.runs)),
            "messages_per_event": counting.count / (args.events * args.runs),
        }
        path = os.path.join(tmp, "path-rules.yaml")
        with open(path, "w") as f:
            f.write(path_rules_yaml(args.rules))
        results["rule_path"] = rule_path(path, args.path_events, args.runs)
        if args.serve:
            results["rule_path"]["serve_us"] = end_to_end(path, args.serve, 1)
            results["rule_path"]["serve_batch10_us"] = end_to_end(path, args.serve, 10)
    if args.json:
        print(json.dumps(results))
        return
    print("%d rules, %d events, median of %d runs, one core (CPU time)" % (
        args.rules, args.events, args.runs))
    print("  engine only (match, render, no store): %10.0f events/s" % results[
        "engine_events_per_s"])
    print("  with SQLite store and hub:             %10.0f events/s" % results[
        "stored_events_per_s"])
    print("  messages per event:                    %10.2f" % results["messages_per_event"])
    figures = results["rule_path"]
    print("the rule path: %d rules, an event wants %d by type and matches 1 (path, expr, "
          "notify), CPU us per event" % (args.rules, figures["wanted"]))
    print("  %-44s %10s %10s" % ("", "1/body", "10/body"))
    for key, what in (("validate", "validation alone (load_events)"),
                      ("engine", "engine alone (Engine.process, no store)"),
                      ("both", "parsed body to messages (both)"),
                      ("logged", "both, logging as the server does"),
                      ("serve", "server CPU, rulecast serve --workers 1")):
        if key + "_us" in figures:
            print("  %-44s %10.1f %10.1f" % (what, figures[key + "_us"],
                                             figures[key + "_batch10_us"]))


if __name__ == "__main__":
    main()
