"""The rule engine against a real server: events in, messages out, failures contained."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import logging

import pytest
import requests

from rulecast.bus import LocalBus
from rulecast.engine import Engine, explain, load_rules
from rulecast.events import Event
from rulecast.hookspecs import hookimpl
from rulecast.hub import Hub
from rulecast.metrics import Metrics
from rulecast.plugins import manager
from rulecast.store.sqlite import SQLiteStore
from rulecast.webhooks import Sender

RULES = """
- name: to-owner
  on: comment.*
  if:
    - not: {actor_is_owner: true}
  then:
    - notify:
        to: "user:{{ object.owner }}"
        title: "{{ actor.name }} on {{ object.title }}"
        body: "{{ data.text }}"
- name: broken
  on: comment.added
  then:
    - notify: {to: "user:{{ object.owner }}", title: "{{ data.missing_key }}"}
    - log: {message: "still runs after a failing action"}
- name: first-stop
  on: stop.test
  stop: true
  then: [{publish: {channel: "topic:public-stop", data: {n: "1"}}}]
- name: never-after-stop
  on: stop.test
  then: [{publish: {channel: "topic:public-stop", data: {n: "2"}}}]
"""


def rules_file(tmp_path, text=RULES):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def post_event(server, event):
    return requests.post(server.url + "/rulecast/api/events", json=event,
                         headers={"Authorization": "Bearer " + server.api_key})


COMMENT = {"type": "comment.added", "actor": {"id": "bob", "name": "Bob"},
           "object": {"owner": "ann", "title": "Q3 plan"}, "data": {"text": "{{ 7*7 }}"}}


def test_event_to_message_over_websocket(make_server, tmp_path):
    """An event matched by a rule reaches the owner's socket with rendered data."""
    s = make_server(rules=[rules_file(tmp_path)])
    c = s.connect(token=s.token("ann"))
    c.recv_type("welcome")
    r = post_event(s, COMMENT)
    assert r.status_code == 202
    assert r.json()["matched"] == ["to-owner", "broken"]
    message = c.recv_type("message")
    assert message["id"] == r.json()["messages"][0]
    assert message["data"] == {"title": "Bob on Q3 plan", "body": "{{ 7*7 }}",
                               "event": "comment.added", "rule": "to-owner"}


def test_failing_action_counted_others_run(make_server, tmp_path):
    """A failing action is logged with the rule's name and counted; the rest still run."""
    s = make_server(rules=[rules_file(tmp_path)])
    post_event(s, COMMENT)
    listed = requests.get(s.url + "/rulecast/api/rules",
                          headers={"Authorization": "Bearer " + s.api_key}).json()
    counts = {r["name"]: (r["hits"], r["failures"]) for r in listed["rules"]}
    assert counts["broken"] == (1, 1) and counts["to-owner"] == (1, 0)
    s.stop()
    log = s.output()
    assert "rule failed rule=broken" in log and "missing_key" in log
    assert "still runs after a failing action" in log


def test_stop_ends_matching(make_server, tmp_path):
    """A rule with stop: true ends matching for that event."""
    s = make_server(rules=[rules_file(tmp_path)])
    assert post_event(s, {"type": "stop.test"}).json()["matched"] == ["first-stop"]


def test_event_array_and_field_errors(make_server, tmp_path):
    """A list of events is accepted; bad events get 400 with errors per index."""
    s = make_server(rules=[rules_file(tmp_path)])
    ok = post_event(s, [COMMENT, {"type": "nothing.matches"}])
    assert ok.status_code == 202 and len(ok.json()["messages"]) == 1
    bad = post_event(s, [{"type": "ok"}, {"actor": "x"}])
    assert bad.status_code == 400
    assert set(bad.json()["errors"]["1"]) == {"type", "actor"}


def test_events_need_api_key(make_server, tmp_path):
    """POST /api/events without the key is 401."""
    s = make_server(rules=[rules_file(tmp_path)])
    r = requests.post(s.url + "/rulecast/api/events", json=COMMENT)
    assert r.status_code == 401


@pytest.fixture
def engine(tmp_path):
    """An engine in this process over RULES, with a real store, hub and bus; its
    plugin manager is ``engine.pm``."""
    pm, metrics = manager(), Metrics()
    store = SQLiteStore(str(tmp_path / "engine.db"))
    bus = LocalBus(store, Hub(metrics), pm.hook, metrics)
    engine = Engine(load_rules([rules_file(tmp_path)], pm.hook), bus, pm.hook, metrics,
                    Sender())
    engine.pm = pm
    yield engine
    store.close()


def test_event_line_at_debug_only(engine, caplog):
    """Each event gets a log line at debug level, and none above it."""
    caplog.set_level(logging.INFO, logger="rulecast.rules")
    engine.process([Event(**COMMENT)])
    assert [r for r in caplog.records if r.getMessage() == "event"] == []
    caplog.set_level(logging.DEBUG, logger="rulecast.rules")
    engine.process([Event(**COMMENT)])
    line, = [r for r in caplog.records if r.getMessage() == "event"]
    assert line.levelno == logging.DEBUG
    assert line.fields == {"type": "comment.added", "id": None,
                           "matched": ["to-owner", "broken"], "messages": 1}


def test_rule_counters_in_the_engines_metrics(engine, tmp_path):
    """Hits and failures are counted per rule in the metrics of the engine that runs it."""
    engine.process([Event(**COMMENT), Event(**COMMENT)])
    text = engine.metrics.render().decode()
    assert 'rulecast_rule_hits_total{rule="to-owner"} 2.0' in text
    assert 'rulecast_rule_failures_total{rule="broken"} 2.0' in text
    other = Engine(engine.ruleset, engine.bus, engine.hook, Metrics(), engine.sender)
    other.process([Event(**COMMENT)])
    assert 'rulecast_rule_hits_total{rule="to-owner"} 1.0' in other.metrics.render().decode()


def test_event_hook_plugin_registered_later(engine):
    """A plugin implementing rulecast_event_received is called from the next batch on."""
    seen = []

    class Plugin:
        @hookimpl
        def rulecast_event_received(self, event):
            seen.append(event.type)

    engine.process([Event("before.plugin")])
    engine.pm.register(Plugin())
    engine.process([Event("after.plugin"), Event("and.again")])
    assert seen == ["after.plugin", "and.again"]


def test_explain_reports_conditions_and_sends_nothing(tmp_path):
    """explain shows which condition failed and why, and what would be sent."""
    ruleset = load_rules([rules_file(tmp_path)], manager().hook)
    own = dict(COMMENT, actor={"id": "ann", "name": "Ann"})
    report = {e["rule"]: e for e in explain(ruleset, Event(**own))}
    assert report["to-owner"]["matched"] is False
    assert report["to-owner"]["conditions"][0]["held"] is False
    assert report["broken"]["errors"] and "missing_key" in report["broken"]["errors"][0]
    report = {e["rule"]: e for e in explain(ruleset, Event(**COMMENT))}
    assert report["to-owner"]["messages"][0]["channel"] == "user:ann"
    assert report["first-stop"]["wants"] is False


def test_sighup_reloads_without_dropping_connections(make_server, tmp_path):
    """SIGHUP loads new rules; open sockets stay; a broken new set is refused."""
    path = rules_file(tmp_path)
    s = make_server(rules=[path])
    c = s.connect(token=s.token("ann"))
    c.recv_type("welcome")
    with open(path, "a") as f:
        f.write("- name: added-later\n  on: later.event\n"
                "  then: [{notify: {to: 'user:ann', title: new rule}}]\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while post_event(s, {"type": "later.event"}).json()["matched"] != ["added-later"]:
        assert time.time() < deadline, "rules were not reloaded"
        time.sleep(0.05)
    assert c.recv_type("message")["data"]["title"] == "new rule"
    with open(path, "a") as f:
        f.write("- name: broken-later\n  on: x\n  then: [{nope: {}}]\n")
    subprocess.run([sys.executable, "-m", "rulecast", "reload", "--config", s.path],
                   check=True, capture_output=True, cwd=s.dir,
                   env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__))))
    deadline = time.time() + 5
    while "reload refused" not in s.output():
        assert time.time() < deadline, "reload was not attempted"
        time.sleep(0.05)
    assert post_event(s, {"type": "later.event"}).json()["matched"] == ["added-later"]
    c.send({"type": "ping"})
    assert c.recv_type("pong")
