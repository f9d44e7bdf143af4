"""Several workers under a supervisor: fan-out, bursts, crashes, signals, health."""
import os
import signal
import threading
import time

import pytest
import requests

from rulecast import client

BURST_RULES = """
- name: burst
  on: burst
  then: [{publish: {channel: "topic:public-burst", data: {n: "{{ data.n }}"}}}]
"""


def health(s):
    return requests.get(s.url + "/rulecast/healthz", timeout=5).json()


def connections_per_worker(s):
    text = requests.get(s.url + "/rulecast/metrics", timeout=5).text
    return {line.split('worker="')[1].split('"')[0]: float(line.split()[-1])
            for line in text.splitlines() if line.startswith("rulecast_connections{")}


def clients_on_every_worker(s, subscribe, at_least=2):
    """Open subscribed clients until each worker holds ``at_least`` of them."""
    clients = []
    for _ in range(200):
        c = s.connect()
        c.send({"type": "subscribe", "channel": subscribe})
        c.recv_type("subscribed")
        clients.append(c)
        if len(clients) >= at_least * s.workers:
            time.sleep(1.2)  # the per-worker figures are written each second
            counts = connections_per_worker(s)
            if len(counts) == s.workers and min(counts.values()) >= at_least:
                return clients
    pytest.fail("connections never reached every worker: %s" % connections_per_worker(s))


def children_of(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(p) for p in f.read().split()]


def test_fan_out_reaches_clients_on_every_worker(make_server):
    """A message published through any worker reaches subscribers on all workers, once."""
    s = make_server(workers=2)
    clients = clients_on_every_worker(s, "topic:public-all")
    ids = [s.publish("topic:public-all", {"n": n}) for n in range(20)]
    for c in clients:
        assert [m["id"] for m in c.messages(20)] == ids


def test_burst_with_gap_repair_delivers_everything_in_order(make_server, tmp_path):
    """Thousands of messages at once: every client on every worker gets all, in order, once."""
    rules = tmp_path / "burst.yaml"
    rules.write_text(BURST_RULES)
    s = make_server(workers=2, rules=[str(rules)], limits={"send_queue": 20000})
    clients = clients_on_every_worker(s, "topic:public-burst")
    ids = []
    for batch in range(4):
        r = requests.post(s.url + "/rulecast/api/events", headers={
            "Authorization": "Bearer " + s.api_key},
            json=[{"type": "burst", "data": {"n": batch * 1000 + n}} for n in range(1000)])
        ids += r.json()["messages"]
    assert len(ids) == 4000
    for c in clients:
        got = [m["id"] for m in c.messages(4000, timeout=30)]
        assert got == ids
    text = requests.get(s.url + "/rulecast/metrics").text
    assert 'rulecast_gaps_repaired_total{worker="0"}' in text


def test_pings_answered_while_bus_saturated(make_server, tmp_path):
    """While bursts saturate the bus, a worker still answers pings."""
    rules = tmp_path / "burst.yaml"
    rules.write_text(BURST_RULES)
    s = make_server(workers=2, rules=[str(rules)], limits={"send_queue": 100000})
    listeners = clients_on_every_worker(s, "topic:public-burst", at_least=1)
    pinger = s.connect()
    pinger.recv_type("welcome")
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            requests.post(s.url + "/rulecast/api/events", headers={
                "Authorization": "Bearer " + s.api_key},
                json=[{"type": "burst", "data": {"n": n}} for n in range(1000)])

    flooders = [threading.Thread(target=flood) for _ in range(2)]
    for t in flooders:
        t.start()
    try:
        time.sleep(0.5)
        for _ in range(10):
            pinger.send({"type": "ping"})
            assert pinger.recv_type("pong", timeout=2)
        assert all(t.is_alive() for t in flooders)  # the pongs came during the flood
    finally:
        stop.set()
        for t in flooders:
            t.join(30)
    assert listeners


def test_kill_9_worker_restarted_and_clients_resume(make_server):
    """kill -9 of the workers: they are restarted, and a resuming client ends with every
    accepted message exactly once, in order."""
    s = make_server(workers=2)
    token = s.token("kim")
    got, ready = [], threading.Event()

    def consume():
        for frame in client.subscribe(s.url, token=token, on_status=lambda state, _: (
                state == "connected" and ready.set())):
            got.append(frame["id"])
            if len(got) >= 60:
                return

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    assert ready.wait(10)
    accepted = [s.publish("user:kim", {"n": n}) for n in range(20)]
    old = [w["pid"] for w in health(s)["workers"]]
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    n = 20
    while len(accepted) < 60:
        try:
            accepted.append(s.publish("user:kim", {"n": n}))
            n += 1
        except (requests.ConnectionError, AssertionError):
            time.sleep(0.05)  # the workers are being restarted
    reader.join(30)
    assert got == accepted
    new = [w["pid"] for w in health(s)["workers"] if w["alive"]]
    assert len(new) == 2 and not set(new) & set(old)


def test_sigterm_closes_clients_1001_and_stops_everything(make_server):
    """SIGTERM to the supervisor: clients get 1001, every process exits, exit code 0."""
    s = make_server(workers=2)
    clients = clients_on_every_worker(s, "topic:public-x", at_least=1)
    children = children_of(s.proc.pid)
    assert len(children) == 3  # a sequencer and two workers
    s.proc.terminate()
    assert all(c.close_code() == 1001 for c in clients)
    assert s.proc.wait(15) == 0
    assert not any(os.path.exists("/proc/%d" % pid) for pid in children)


def test_sighup_reloads_rules_in_every_worker(make_server, tmp_path):
    """SIGHUP to the supervisor reloads the rules in each worker."""
    rules = tmp_path / "r.yaml"
    rules.write_text("- {name: old, on: x, then: [{log: {message: old}}]}\n")
    s = make_server(workers=2, rules=[str(rules)])
    rules.write_text("- {name: new, on: x, then: [{log: {message: new}}]}\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    def reloaded(worker):
        return any("rules reloaded" in line and "process=worker-%d" % worker in line
                   for line in s.output().splitlines())

    while not (reloaded(0) and reloaded(1)):
        assert time.time() < deadline, "not every worker reloaded"
        time.sleep(0.05)
    for _ in range(20):
        with requests.Session() as fresh:  # a new connection: either worker may answer
            r = fresh.post(s.url + "/rulecast/api/events", json={"type": "x"},
                           headers={"Authorization": "Bearer " + s.api_key})
        assert r.json()["matched"] == ["new"]


def test_stale_ipc_files_cleaned_at_start(make_server, tmp_path):
    """IPC socket files a crash left in the run directory are removed at start."""
    run = tmp_path / "s0" / "var" / "run"
    run.mkdir(parents=True)
    (run / "stale-from-a-crash.ipc").write_text("")
    s = make_server(workers=2)
    assert not (run / "stale-from-a-crash.ipc").exists()
    assert (run / "messages.ipc").exists()
    assert health(s)["status"] == "ok"


def test_unreachable_sequencer_reported_and_publish_refused(make_server):
    """A stopped sequencer shows in /healthz (503) and publishing answers 503; both recover."""
    s = make_server(workers=2)
    workers = {w["pid"] for w in health(s)["workers"]}
    sequencer, = [p for p in children_of(s.proc.pid) if p not in workers]
    os.kill(sequencer, signal.SIGSTOP)
    try:
        deadline = time.time() + 10
        # Each worker notices on its own, up to a tick apart, and either may answer a
        # request: judge the answer that said 503, not the next one.
        while (answer := requests.get(s.url + "/rulecast/healthz")).status_code != 503:
            assert time.time() < deadline, "healthz never reported the sequencer"
            time.sleep(0.2)
        body = answer.json()
        assert body["status"] == "degraded" and body["sequencer"] == "unreachable"
        r = requests.post(s.url + "/rulecast/api/publish", json={"channel": "topic:x", "data": {}},
                          headers={"Authorization": "Bearer " + s.api_key}, timeout=15)
        assert r.status_code == 503
    finally:
        os.kill(sequencer, signal.SIGCONT)
    deadline = time.time() + 10
    while requests.get(s.url + "/rulecast/healthz").status_code != 200:
        assert time.time() < deadline, "healthz never recovered"
        time.sleep(0.2)


def test_worker_crash_loop_stops_the_server(make_server, tmp_path):
    """A worker that dies right after every start makes the supervisor give up, exit 1."""
    broken = tmp_path / "broken_app.py"
    broken.write_text("raise RuntimeError('this app cannot start')\n")
    with pytest.raises(RuntimeError, match="exited 1"):
        make_server(workers=2, app="broken_app:app", extra_path=[str(tmp_path)])


def test_children_stop_when_the_supervisor_is_killed(make_server):
    """kill -9 of the supervisor: the sequencer and workers stop too, none is orphaned."""
    s = make_server(workers=2)
    children = children_of(s.proc.pid)
    assert len(children) == 3
    s.proc.kill()
    s.proc.wait(5)
    deadline = time.time() + 15
    while any(os.path.exists("/proc/%d" % pid) and _state(pid) != "Z" for pid in children):
        assert time.time() < deadline, "children outlived the supervisor"
        time.sleep(0.1)


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
