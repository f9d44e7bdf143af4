"""Events per second through 100 rules with typical conditions, on one core."""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rulecast.bus import LocalBus  # noqa: E402
from rulecast.engine import Engine, load_rules  # noqa: E402
from rulecast.events import Event  # noqa: E402
from rulecast.hub import Hub  # noqa: E402
from rulecast.metrics import Metrics  # noqa: E402
from rulecast.plugins import manager  # noqa: E402
from rulecast.store.sqlite import SQLiteStore  # noqa: E402
from rulecast.webhooks import Sender  # noqa: E402

TYPES = ["comment.added", "comment.removed", "workflow.transition", "news.published",
         "vm.ready", "vm.failed", "user.joined", "file.uploaded", "task.assigned", "task.done"]


def rules_yaml(n):
    """``n`` rules spread over TYPES, each with a typical mix of conditions."""
    out = []
    for i in range(n):
        kind = TYPES[i % len(TYPES)]
        on = kind if i % 3 else kind.split(".")[0] + ".*"
        out.append("""- name: rule-%d
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
    return "".join(out)


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


if __name__ == "__main__":
    main()
