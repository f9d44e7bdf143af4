"""rulecast.client and `rulecast listen` against a real server."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from rulecast import client
from rulecast.client import AuthError, ClientError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for(condition, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Consumer(threading.Thread):
    """Runs client.subscribe() in a thread until ``n`` messages came; records states.
    While ``gate`` is clear, the client waits before each reconnect attempt."""

    def __init__(self, url, n, **kw):
        super().__init__(daemon=True)
        self.url, self.n, self.kw = url, n, kw
        self.frames = queue.Queue()
        self.states = []
        self.error = None
        self.gate = threading.Event()
        self.gate.set()

    def status(self, state, detail):
        self.states.append(state)
        if state == "reconnecting":
            self.gate.wait(30)

    def run(self):
        messages = client.subscribe(self.url, on_status=self.status, **self.kw)
        try:
            for count, frame in enumerate(messages, 1):
                self.frames.put(frame)
                if count == self.n:
                    break
        except Exception as exc:
            self.error = exc
        finally:
            messages.close()

    def connected(self, times=1):
        wait_for(lambda: self.states.count("connected") >= times, what="connected x%d" % times)
        return self

    def get(self, n=1):
        return [self.frames.get(timeout=10) for _ in range(n)]


def next_within(messages, timeout=10):
    """next(messages), but failing after ``timeout`` instead of hanging."""
    result = queue.Queue()

    def run():
        try:
            result.put((True, next(messages)))
        except BaseException as exc:
            result.put((False, exc))

    threading.Thread(target=run, daemon=True).start()
    ok, value = result.get(timeout=timeout)
    if not ok:
        raise value
    return value


def consume(url, n, **kw):
    c = Consumer(url, n, **kw)
    c.start()
    return c.connected()


def connections(server):
    return requests.get(server.url + "/rulecast/healthz", timeout=5).json()["connections"]


def test_publish_returns_id_a_subscriber_receives(server):
    """publish() returns the new message's id, and a subscriber receives that message."""
    ws = server.connect(server.token("pia"))
    ws.recv_type("welcome")
    mid = client.publish(server.url, "user:pia", {"n": 1}, server.api_key)
    frame = ws.messages(1)[0]
    ws.close()
    assert (frame["id"], frame["channel"], frame["data"]) == (mid, "user:pia", {"n": 1})


def test_publish_wrong_key_is_401(server):
    """publish() with an unknown API key raises ClientError with status 401."""
    with pytest.raises(ClientError) as info:
        client.publish(server.url, "user:pia", {"n": 1}, "wrong-key")
    assert info.value.status == 401
    assert "authorization" in info.value.errors


def test_publish_bad_channel_is_400_with_field_error(server):
    """publish() to a malformed channel raises ClientError 400 naming the channel field."""
    with pytest.raises(ClientError) as info:
        client.publish(server.url, "nochannel", {"n": 1}, server.api_key)
    assert info.value.status == 400
    assert list(info.value.errors) == ["channel"]
    assert "400" in str(info.value) and "channel" in str(info.value)


def test_emit_wrong_key_is_401(server):
    """emit() posts to the events endpoint with the key: a wrong key is a 401 ClientError."""
    with pytest.raises(ClientError) as info:
        client.emit(server.url, "comment.added", "wrong-key", data={"text": "hi"})
    assert info.value.status == 401


def test_subscribe_user_token_receives_user_channel(server):
    """subscribe() with a user token yields the messages sent to user:<id>."""
    c = consume(server.url, 1, token=server.token("uma"))
    mid = server.publish("user:uma", {"hello": "uma"})
    frame = c.get()[0]
    assert (frame["id"], frame["channel"], frame["data"]) == (mid, "user:uma", {"hello": "uma"})
    assert "time" in frame


def test_subscribe_public_topic(server):
    """subscribe(channels=[a public topic]) yields that topic's messages, anonymously."""
    c = consume(server.url, 1, channels=["topic:public-x"])
    mid = server.publish("topic:public-x", {"t": 1})
    assert [(f["id"], f["channel"]) for f in c.get()] == [(mid, "topic:public-x")]


def test_subscribe_forbidden_topic_raises(server):
    """A topic the server refuses raises ClientError with the error frame's code."""
    messages = client.subscribe(server.url, token=server.token("ivo"), channels=["topic:secret"])
    with pytest.raises(ClientError) as info:
        next_within(messages)
    assert info.value.code == "forbidden"
    assert "topic:secret" in str(info.value)


def test_subscribe_since_replays_later_messages(server):
    """subscribe(since=N) first yields the stored messages after N, not N itself."""
    first = server.publish("user:sam", {"n": 1})
    second = server.publish("user:sam", {"n": 2})
    messages = client.subscribe(server.url, token=server.token("sam"), since=first)
    try:
        assert next_within(messages)["id"] == second
    finally:
        messages.close()


def test_expired_token_raises_auth_error(server):
    """An expired token ends subscribe() with AuthError instead of retrying."""
    states = []
    messages = client.subscribe(server.url, token=server.token("old", ttl=-1),
                                on_status=lambda state, detail: states.append(state))
    with pytest.raises(AuthError) as info:
        next_within(messages)
    assert info.value.code == 1008
    assert states == []


def test_close_closes_the_socket(make_server):
    """Closing the generator closes its WebSocket on the server too."""
    s = make_server()
    mid = s.publish("user:cy", {"n": 1})
    messages = client.subscribe(s.url, token=s.token("cy"), since=mid - 1)
    assert next_within(messages)["id"] == mid
    assert connections(s) == 1
    messages.close()
    wait_for(lambda: connections(s) == 0, what="no connections")


def test_reconnect_resumes_every_id_once(make_server):
    """After a server restart the client reconnects; every id arrives once, in order."""
    s = make_server()
    c = consume(s.url, 3, token=s.token("rea"))
    ids = [s.publish("user:rea", {"n": 1})]
    assert c.get()[0]["id"] == ids[0]
    s.restart()
    c.connected(2)
    ids += [s.publish("user:rea", {"n": n}) for n in (2, 3)]
    assert [f["id"] for f in c.get(2)] == ids[1:]
    assert "disconnected" in c.states


def test_messages_published_while_disconnected_are_delivered(make_server):
    """Messages published before the client has reconnected come first, each once."""
    s = make_server()
    c = consume(s.url, 5, token=s.token("dee"))
    ids = [s.publish("user:dee", {"n": 0})]
    assert c.get()[0]["id"] == ids[0]
    c.gate.clear()
    s.restart()
    ids += [s.publish("user:dee", {"n": n}) for n in (1, 2, 3)]
    assert c.states.count("connected") == 1
    c.gate.set()
    c.connected(2)
    ids.append(s.publish("user:dee", {"n": 4}))  # live: anything repeated would come first
    assert [f["id"] for f in c.get(4)] == ids[1:]


def test_topic_messages_published_while_disconnected_are_delivered(make_server):
    """The resume after a reconnect covers extra topic channels too, not only user:<id>."""
    s = make_server(public_topics=["public-*"])
    c = consume(s.url, 3, token=s.token("tia"), channels=["topic:public-r"])
    first = s.publish("topic:public-r", {"n": 0})
    assert c.get()[0]["id"] == first
    c.gate.clear()
    s.restart()
    ids = [s.publish("topic:public-r", {"n": 1}), s.publish("user:tia", {"n": 2})]
    c.gate.set()
    assert [f["id"] for f in c.get(2)] == ids


def test_dead_connection_is_detected(make_server, monkeypatch):
    """A server that stops answering pings counts as disconnected; the client comes back."""
    monkeypatch.setattr(client, "PING_AFTER", 0.3)
    monkeypatch.setattr(client, "DEAD_AFTER", 0.3)
    s = make_server()
    c = consume(s.url, 1, token=s.token("zed"))
    os.kill(s.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: "disconnected" in c.states, what="disconnected")
    finally:
        os.kill(s.proc.pid, signal.SIGCONT)
    c.connected(2)
    mid = s.publish("user:zed", {"n": 1})
    assert c.get()[0]["id"] == mid


def _default_sigint():
    # A shell without job control starts background jobs with SIGINT ignored, the
    # ignoring is inherited, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def listen(server, *args):
    proc = subprocess.Popen([sys.executable, "-m", "rulecast", "listen", server.url, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT), preexec_fn=_default_sigint)
    lines = {"out": queue.Queue(), "err": queue.Queue()}
    for name, stream in (("out", proc.stdout), ("err", proc.stderr)):
        threading.Thread(target=lambda q=lines[name], f=stream: [q.put(l) for l in f],
                         daemon=True).start()
    return proc, lines


def wait_line(lines, containing, timeout=10):
    deadline = time.time() + timeout
    while True:
        line = lines.get(timeout=max(0.01, deadline - time.time()))
        if containing in line:
            return line


def test_listen_prints_messages_as_json_lines(server):
    """`rulecast listen` prints each message frame as one JSON line on stdout."""
    proc, lines = listen(server, "--token", server.token("lea"))
    try:
        wait_line(lines["err"], "connected")
        ids = [server.publish("user:lea", {"n": n}) for n in (1, 2)]
        frames = [json.loads(lines["out"].get(timeout=10)) for _ in ids]
    finally:
        proc.terminate()
        proc.wait(10)
    assert [(f["id"], f["channel"], f["data"]) for f in frames] == [
        (ids[0], "user:lea", {"n": 1}), (ids[1], "user:lea", {"n": 2})]


def test_listen_exits_0_on_ctrl_c(server):
    """Ctrl-C (SIGINT) ends `rulecast listen` with exit status 0."""
    proc, lines = listen(server, "--token", server.token("lou"))
    try:
        wait_line(lines["err"], "connected")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_listen_expired_token_exits_2(server):
    """`rulecast listen` with an expired token says so on stderr and exits 2."""
    proc, lines = listen(server, "--token", server.token("old", ttl=-1))
    try:
        assert proc.wait(10) == 2
    finally:
        proc.kill()
    assert "expired" in wait_line(lines["err"], "token")


def test_publish_many_over_http(server):
    """publish_many() posts a list and returns one id per item, in order."""
    ws = server.connect(server.token("hal"))
    ws.recv_type("welcome")
    items = [("user:hal", {"n": 1}), {"channel": "user:hal", "data": {"n": 2}}]
    ids = client.publish_many(server.url, items, server.api_key)
    assert [(f["id"], f["data"]) for f in ws.messages(2)] == list(zip(ids, [{"n": 1}, {"n": 2}]))


def test_publisher_publishes_to_any_channel(server):
    """Publisher.publish() returns the id of a message a subscriber receives."""
    ws = server.connect(server.token("pam"))
    ws.recv_type("welcome")
    with client.Publisher(server.url, server.api_key) as publisher:
        mid = publisher.publish("user:pam", {"n": 1})
    frame = ws.messages(1)[0]
    assert (frame["id"], frame["channel"], frame["data"]) == (mid, "user:pam", {"n": 1})


def test_publisher_publish_many_in_order(server):
    """Publisher.publish_many() returns strictly increasing ids, one per item, in order."""
    ws = server.connect(server.token("pat"))
    ws.recv_type("welcome")
    items = [("user:pat", {"n": n}) for n in range(50)]
    with client.Publisher(server.url, server.api_key) as publisher:
        ids = publisher.publish_many(items)
    assert len(ids) == 50 and ids == sorted(set(ids))
    assert [(f["id"], f["data"]["n"]) for f in ws.messages(50)] == list(zip(ids, range(50)))


def test_publisher_refused_item_raises_batch_error(server):
    """A refused item raises BatchError keyed by its index; the other items are sent."""
    with client.Publisher(server.url, server.api_key) as publisher:
        with pytest.raises(client.BatchError) as info:
            publisher.publish_many([("user:pat", {}), ("nochannel", {}), ("user:pat", {})])
    assert info.value.code == "bad_request" and list(info.value.errors) == ["1"]
    assert info.value.ids[1] is None and info.value.ids[0] < info.value.ids[2]


def test_publisher_emit(make_server, tmp_path):
    """Publisher.emit() answers the matched rules and the ids of their messages."""
    rules = tmp_path / "rules.yaml"
    rules.write_text('- {name: hello, on: greeting, then: [{publish: {channel: "user:eve", '
                     'data: {hi: 1}}}]}\n')
    s = make_server(rules=[str(rules)])
    with client.Publisher(s.url, s.api_key) as publisher:
        answer = publisher.emit("greeting", actor={"id": "bob"})
        assert answer["matched"] == ["hello"] and len(answer["messages"]) == 1
        with pytest.raises(ClientError) as info:
            publisher.emit("not a type")
    assert info.value.code == "bad_request" and "type" in info.value.errors["event"]


def test_publisher_wrong_key_raises_auth_error(server):
    """A key the server does not know raises AuthError when the Publisher connects."""
    with pytest.raises(AuthError) as info:
        client.Publisher(server.url, "wrong-key").connect()
    assert info.value.code == 1008 and "API key" in str(info.value)


def test_publisher_reconnects_after_restart(make_server):
    """After a server restart the next publish opens a new socket and succeeds."""
    s = make_server()
    with client.Publisher(s.url, s.api_key) as publisher:
        first = publisher.publish("user:ray", {"n": 1})
        s.restart()
        assert publisher.publish("user:ray", {"n": 2}) > first


def test_publisher_lost_reply_raises_unconfirmed_or_retries(make_server):
    """A reply that never comes raises Unconfirmed; with retry=True the frame is resent."""
    s = make_server()
    publisher = client.Publisher(s.url, s.api_key, timeout=0.5)
    publisher.connect()
    os.kill(s.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(client.Unconfirmed) as info:
            publisher.publish("user:una", {"n": 1})
        assert info.value.ids == [None]
        threading.Timer(1.0, os.kill, (s.proc.pid, signal.SIGCONT)).start()
        mid = publisher.publish("user:una", {"n": 2}, retry=True)
    finally:
        os.kill(s.proc.pid, signal.SIGCONT)
        publisher.close()
    r = requests.get(s.url + "/rulecast/api/notifications", timeout=5,
                     headers={"Authorization": "Bearer " + s.token("una")})
    stored = [(m["id"], m["data"]["n"]) for m in r.json()["messages"]]
    # The unconfirmed frame was stored once the server woke up, and the retried one
    # may be stored twice: no idempotency key yet.
    assert (mid, 2) in stored and (1 in [n for _, n in stored])


def test_publisher_publish_many_beyond_send_queue(make_server):
    """More items than limits.send_queue go through: replies are read while sending."""
    s = make_server(limits={"send_queue": 300})
    with client.Publisher(s.url, s.api_key) as publisher:
        ids = publisher.publish_many([("user:big", {"n": n}) for n in range(2000)])
    assert len(ids) == 2000 and ids == sorted(set(ids))
