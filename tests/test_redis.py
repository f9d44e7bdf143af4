"""Several hosts on one Redis: a real redis-server, two rulecast servers, faults."""
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from rulecast import client
from tests.conftest import free_port
from tests.test_supervisor import clients_on_every_worker

redis = pytest.importorskip("redis", reason="the Redis tests need redis-py: "
                                            "pip install rulecast[redis]")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed (apt-get install redis-server)",
                allow_module_level=True)


class RedisServer:
    """A redis-server subprocess on a free port, its files in ``directory``.

    ``durable``: append-only file fsynced on every write, so that what Redis
    acknowledged survives a kill and a restart."""

    def __init__(self, directory, durable=False):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if durable
                       else ["--appendonly", "no"])
        self.args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                     "--dir", self.dir, "--save", "", *persistence]
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        r = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.time() + 10
        while True:
            try:
                if r.ping():
                    r.close()
                    return self
            except redis.RedisError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("redis-server did not start; see %s" % self.dir)
            time.sleep(0.02)

    def kill(self):
        """SIGKILL: no chance to save or to answer anyone."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
            self.log.close()

    def client(self):
        return redis.Redis(port=self.port)


@pytest.fixture
def redis_server(tmp_path):
    """A fresh, throw-away redis-server."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def durable_redis(tmp_path):
    """A redis-server that keeps what it acknowledged across a kill and a restart."""
    server = RedisServer(tmp_path / "redis", durable=True).start()
    yield server
    server.stop()


BURST_RULES = """
- name: burst
  on: burst
  then: [{publish: {channel: "topic:public-burst", data: {n: "{{ data.n }}"}}}]
"""


def two_hosts(make_server, redis_server, **config):
    """Two rulecast servers ("hosts") sharing the Redis store and bus."""
    return [make_server(store=redis_server.url, bus=redis_server.url, **config)
            for _ in range(2)]


def wait_for(condition, timeout=10, what="the condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out waiting for %s" % what
        time.sleep(0.02)


def health(s):
    return requests.get(s.url + "/rulecast/healthz", timeout=5)


def try_publish(s, channel, data):
    """The id when accepted (202), None when refused with 503."""
    r = requests.post(s.url + "/rulecast/api/publish", json={"channel": channel, "data": data},
                      headers={"Authorization": "Bearer " + s.api_key}, timeout=30)
    if r.status_code == 503:
        return None
    assert r.status_code == 202, r.text
    return r.json()["id"]


def subscribed(s, channel):
    c = s.connect()
    c.send({"type": "subscribe", "channel": channel})
    c.recv_type("subscribed")
    return c


def test_message_published_on_one_host_reaches_clients_on_both(make_server, redis_server):
    """A message published on host B reaches subscribers on host A and on B, once each."""
    a, b = two_hosts(make_server, redis_server)
    on_a, on_b = subscribed(a, "topic:public-x"), subscribed(b, "topic:public-x")
    ids = [b.publish("topic:public-x", {"n": n}) for n in range(5)]
    ids += [a.publish("topic:public-x", {"n": n}) for n in range(5, 10)]
    for c in (on_a, on_b):
        got = c.messages(10)
        assert [m["id"] for m in got] == ids
        assert [m["data"]["n"] for m in got] == list(range(10))
        c.send({"type": "ping"})
        assert c.recv()["type"] == "pong"  # nothing came twice


def test_resume_across_hosts(make_server, redis_server):
    """A client that saw id N on host A and reconnects to host B with ?since=N gets
    every later message, in order, once."""
    a, b = two_hosts(make_server, redis_server)
    token = a.token("kim")
    first = a.connect(token)
    first.recv_type("welcome")
    seen = a.publish("user:kim", {"n": 0})
    assert first.recv_type("message")["id"] == seen
    first.close()
    missed = [a.publish("user:kim", {"n": n}) for n in range(1, 4)]
    missed += [b.publish("user:kim", {"n": n}) for n in range(4, 6)]
    again = b.connect(token, query="since=%d" % seen)
    assert [m["id"] for m in again.messages(5)] == missed
    live = a.publish("user:kim", {"n": 6})
    assert again.recv_type("message")["id"] == live


def test_ids_strictly_increasing_across_hosts_under_concurrent_publishing(
        make_server, redis_server):
    """Threads publishing on both hosts at once get distinct ids, and every subscriber
    on every host sees all of them in strictly increasing order."""
    a, b = two_hosts(make_server, redis_server)
    watchers = [subscribed(a, "topic:public-race"), subscribed(b, "topic:public-race")]
    results = {}

    def publisher(host, name):
        with requests.Session() as http:
            results[name] = [http.post(
                host.url + "/rulecast/api/publish",
                json={"channel": "topic:public-race", "data": {"by": name, "n": n}},
                headers={"Authorization": "Bearer " + host.api_key}).json()["id"]
                for n in range(50)]

    threads = [threading.Thread(target=publisher, args=(host, "%s%d" % (label, i)))
               for label, host in (("a", a), ("b", b)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    everything = sorted(i for ids in results.values() for i in ids)
    assert len(everything) == 300 and len(set(everything)) == 300
    assert all(ids == sorted(ids) for ids in results.values())
    for w in watchers:
        got = [m["id"] for m in w.messages(300)]
        assert got == everything


def test_burst_reaches_every_host_in_order(make_server, redis_server, tmp_path):
    """Thousands of messages from rules on both hosts at once: every client on every
    host gets all of them, in id order, once."""
    rules = tmp_path / "burst.yaml"
    rules.write_text(BURST_RULES)
    a, b = two_hosts(make_server, redis_server, rules=[str(rules)],
                     limits={"send_queue": 20000})
    watchers = [subscribed(h, "topic:public-burst") for h in (a, b) for _ in range(2)]
    ids = []

    def burst(host, start):
        r = requests.post(host.url + "/rulecast/api/events", headers={
            "Authorization": "Bearer " + host.api_key},
            json=[{"type": "burst", "data": {"n": start + n}} for n in range(1000)])
        ids.extend(r.json()["messages"])

    threads = [threading.Thread(target=burst, args=(h, i * 1000))
               for i, h in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(ids)) == 4000
    for w in watchers:
        assert [m["id"] for m in w.messages(4000, timeout=30)] == sorted(ids)


def test_message_stored_without_announcement_still_delivered(make_server, redis_server):
    """A message whose pub/sub announcement was lost (here: never sent) reaches clients
    through the poll of the last id, the end-of-burst case."""
    from rulecast.store.redis import RedisStore
    a, = [make_server(store=redis_server.url, bus=redis_server.url)]
    c = subscribed(a, "topic:public-quiet")
    store = RedisStore(redis_server.url)
    try:
        lost = store.append("topic:public-quiet", {"silent": True})
    finally:
        store.close()
    got = c.recv_type("message", timeout=5)
    assert got["id"] == lost.id and got["data"] == {"silent": True}
    assert "rulecast_gaps_repaired_total 1.0" in requests.get(a.url + "/rulecast/metrics").text


def test_gap_in_the_stream_filled_in_order(make_server, redis_server):
    """When a message skips ids, the missing ones are delivered first, from the store."""
    from rulecast.store.redis import RedisStore
    a, = [make_server(store=redis_server.url, bus=redis_server.url)]
    c = subscribed(a, "topic:public-gap")
    store = RedisStore(redis_server.url)
    try:
        lost = [m.id for m in store.append_many(
            [("topic:public-gap", {"n": n}, None) for n in range(3)])]
    finally:
        store.close()
    after = a.publish("topic:public-gap", {"n": 3})
    assert [m["id"] for m in c.messages(4)] == lost + [after]


def test_healthz_and_publish_503_while_redis_is_down(make_server, durable_redis):
    """With Redis down, /healthz answers 503 and the metrics show it, publishing answers
    503; both recover when Redis is back."""
    a = make_server(store=durable_redis.url, bus=durable_redis.url)
    durable_redis.kill()
    wait_for(lambda: health(a).status_code == 503, what="healthz to report Redis down")
    assert health(a).json()["status"] == "degraded"
    assert "rulecast_redis_connected 0.0" in requests.get(a.url + "/rulecast/metrics").text
    r = requests.post(a.url + "/rulecast/api/publish", json={"channel": "topic:x", "data": {}},
                      headers={"Authorization": "Bearer " + a.api_key}, timeout=15)
    assert r.status_code == 503 and "Redis" in r.json()["errors"]["_"][0]
    durable_redis.start()
    wait_for(lambda: health(a).status_code == 200, what="healthz to recover")
    assert "rulecast_redis_connected 1.0" in requests.get(a.url + "/rulecast/metrics").text
    assert a.publish("topic:x", {}) > 0


def test_redis_restart_mid_stream_loses_nothing_accepted(make_server, durable_redis):
    """Redis killed and restarted while both hosts publish: a resuming client ends with
    exactly the accepted (202) ids, in order; publishes meanwhile answer 503."""
    a, b = two_hosts(make_server, durable_redis)
    token = a.token("kim")
    got, ready = [], threading.Event()
    accepted, stop = [], threading.Event()

    def consume():
        for frame in client.subscribe(a.url, token=token, on_status=lambda state, _: (
                state == "connected" and ready.set())):
            got.append(frame["id"])

    def produce(host):
        n = 0
        while not stop.is_set():
            try:
                i = try_publish(host, "user:kim", {"n": n})
            except requests.ConnectionError:
                i = None
            if i is None:
                time.sleep(0.01)
            else:
                accepted.append(i)
            n += 1

    threading.Thread(target=consume, daemon=True).start()
    assert ready.wait(10)
    producers = [threading.Thread(target=produce, args=(host,)) for host in (a, b)]
    for t in producers:
        t.start()
    try:
        wait_for(lambda: len(accepted) >= 50, what="messages before the restart")
        durable_redis.kill()
        wait_for(lambda: all(health(h).status_code == 503 for h in (a, b)),
                 what="both hosts to report Redis down")
        for host in (a, b):  # refused, never taken and lost
            assert try_publish(host, "user:kim", {"while": "down"}) is None
        durable_redis.start()
        wait_for(lambda: all(health(h).status_code == 200 for h in (a, b)),
                 what="both hosts back")
        mark = len(accepted)
        wait_for(lambda: len(accepted) >= mark + 50, what="messages after the restart")
    finally:
        stop.set()
        for t in producers:
            t.join(30)
    wait_for(lambda: len(got) >= len(accepted), timeout=15, what="every accepted message")
    time.sleep(0.6)  # a poll period: anything extra (refused yet delivered) would show
    assert got == sorted(accepted)


def test_workers_talk_to_redis_without_a_sequencer(make_server, redis_server):
    """With the Redis bus, two workers run with no sequencer process, and a message
    reaches clients on both workers."""
    s = make_server(workers=2, store=redis_server.url, bus=redis_server.url)
    with open("/proc/%d/task/%d/children" % (s.proc.pid, s.proc.pid)) as f:
        assert len(f.read().split()) == 2  # two workers, nothing else
    clients = clients_on_every_worker(s, "topic:public-w", at_least=1)
    sent = s.publish("topic:public-w", {})
    assert all(c.recv_type("message")["id"] == sent for c in clients)
    metrics = requests.get(s.url + "/rulecast/metrics").text
    assert 'rulecast_redis_connected{worker="0"} 1.0' in metrics
    assert 'rulecast_redis_connected{worker="1"} 1.0' in metrics


def test_redis_bus_without_redis_store_refused_at_start(make_server, redis_server):
    """bus: redis://… with an SQLite store stops start-up with a line naming the fix."""
    with pytest.raises(RuntimeError, match="needs the Redis store"):
        make_server(bus=redis_server.url)


def test_redis_store_with_the_nanomsg_bus(make_server, redis_server):
    """The Redis store also serves one host's nanomsg workers (its sequencer writes)."""
    s = make_server(workers=2, store=redis_server.url)
    c = subscribed(s, "topic:public-n")
    ids = [s.publish("topic:public-n", {"n": n}) for n in range(3)]
    assert [m["id"] for m in c.messages(3)] == ids
    assert int(redis_server.client().get("{rulecast}:id")) == ids[-1]
