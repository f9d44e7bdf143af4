"""Server-sent events against a real server, read with a real streaming HTTP client."""
import json

import requests


class Stream:
    """Reads a text/event-stream into events (dicts of field → value)."""

    def __init__(self, response):
        self.response = response
        self.lines = response.iter_lines(decode_unicode=True)

    def next_event(self):
        event = {}
        for line in self.lines:
            if not line:
                if event:
                    return event
                continue
            if line.startswith(":"):
                event.setdefault("comments", []).append(line)
                continue
            field, _, value = line.partition(": ")
            event[field] = value

    def next_message(self):
        while True:
            event = self.next_event()
            if event.get("event") == "message":
                return event


def open_stream(server, token=None, **kw):
    headers = kw.pop("headers", {})
    if token:
        headers["Authorization"] = "Bearer " + token
    r = requests.get(server.url + "/rulecast/sse", headers=headers, stream=True, timeout=20, **kw)
    return r


def test_sse_delivers_with_id_lines(server):
    """Each message arrives as id:, event: message and data: the message frame."""
    r = open_stream(server, server.token("sue"))
    assert r.headers["Content-Type"].startswith("text/event-stream")
    s = Stream(r)
    assert s.next_event() == {"retry": "2000"}
    welcome = s.next_event()
    assert welcome["event"] == "welcome" and json.loads(welcome["data"])["user"] == "sue"
    mid = server.publish("user:sue", {"title": "t"})
    event = s.next_message()
    assert event["id"] == str(mid)
    frame = json.loads(event["data"])
    assert frame == {"type": "message", "id": mid, "channel": "user:sue",
                     "time": frame["time"], "data": {"title": "t"}}
    r.close()


def test_sse_channel_parameter_subscribes_public_topic(server):
    """?channel=topic:x subscribes an allowed topic."""
    s = Stream(open_stream(server, params={"channel": "topic:public-sse"}))
    mid = server.publish("topic:public-sse", {"a": 1})
    assert s.next_message()["id"] == str(mid)


def test_sse_forbidden_channel_403(server):
    """A channel the identity may not hear is refused with 403 and the reason."""
    r = open_stream(server, params={"channel": "topic:private"})
    assert r.status_code == 403
    assert "topic:private" in r.json()["errors"]["channel"][0]


def test_sse_bad_token_401(server):
    """A bad token is refused with 401."""
    r = open_stream(server, "bogus")
    assert r.status_code == 401 and "token" in r.json()["errors"]


def test_sse_since_and_last_event_id(server):
    """?since= replays later messages; Last-Event-ID takes precedence, as on reconnect."""
    token = server.token("tom")
    ids = [server.publish("user:tom", {"n": n}) for n in range(4)]
    s = Stream(open_stream(server, token, params={"since": ids[0]}))
    assert [s.next_message()["id"] for _ in range(3)] == [str(i) for i in ids[1:]]
    s = Stream(open_stream(server, token, params={"since": ids[0]},
                           headers={"Last-Event-ID": str(ids[2])}))
    assert s.next_message()["id"] == str(ids[3])


def test_sse_bad_since_400(server):
    """A since that is not an id is a 400 naming the field."""
    r = open_stream(server, params={"since": "yesterday"})
    assert r.status_code == 400 and "since" in r.json()["errors"]


def test_sse_heartbeat_comment(server):
    """Idle streams carry heartbeat comment lines."""
    from rulecast.connection import StreamConnection
    assert StreamConnection.heartbeat == 15.0
    s = Stream(open_stream(server))
    s.next_event()  # retry
    s.next_event()  # welcome
    # A heartbeat is due within 15 s of silence.
    event = s.next_event()
    assert event.get("comments") == [": heartbeat"]


def test_sse_stream_ends_on_graceful_stop(make_server):
    """SIGTERM ends open event streams and the server exits 0."""
    s = make_server()
    stream = Stream(open_stream(s, s.token("zed")))
    assert stream.next_event() == {"retry": "2000"}
    s.proc.terminate()
    list(stream.lines)  # returns only when the server ends the stream (else: read timeout)
    assert s.proc.wait(10) == 0


def test_sse_client_hangup_frees_its_place_at_once(make_server):
    """A client that closes its stream stops counting as a connection right away."""
    import time
    s = make_server()
    r = open_stream(s, s.token("amy"))
    stream = Stream(r)
    stream.next_event()
    assert requests.get(s.url + "/rulecast/healthz").json()["connections"] == 1
    r.close()
    deadline = time.time() + 3  # without watching for the hang-up it took ~30 s
    while requests.get(s.url + "/rulecast/healthz").json()["connections"] != 0:
        assert time.time() < deadline, "the closed stream still counts"
        time.sleep(0.05)
