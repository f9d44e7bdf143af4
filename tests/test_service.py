"""Service connections: a WebSocket opened with an API key publishes and emits."""
import json

import pytest
import requests
import websocket

from tests.conftest import RunningServer

RULES = """
- name: comment-to-owner
  on: comment.added
  then:
    - notify: {to: ["user:{{ object.owner }}"], title: "New comment"}
"""


@pytest.fixture(scope="module")
def service_server(tmp_path_factory):
    """A server with one rule, client publishing limited to board topics."""
    directory = tmp_path_factory.mktemp("service")
    (directory / "rules.yaml").write_text(RULES)
    s = RunningServer(directory / "s", rules=[str(directory / "rules.yaml")],
                      client_publish=["topic:board-*"], limits={"client_rate": 5})
    s.start()
    yield s
    s.stop()


def _frame(frame):
    return websocket.ABNF.create_frame(json.dumps(frame), websocket.ABNF.OPCODE_TEXT).format()


def service(server, query=""):
    """A service connection, past its welcome."""
    c = server.connect(token=server.api_key, query=query)
    welcome = c.recv()
    assert welcome["type"] == "welcome" and welcome["user"] is None, welcome
    return c


def history(server, user):
    r = requests.get(server.url + "/rulecast/api/notifications?limit=500",
                     headers={"Authorization": "Bearer " + server.token(user)}, timeout=5)
    return [m["id"] for m in r.json()["messages"]]


def test_api_key_publishes_outside_client_publish(service_server):
    """An API key at the handshake publishes to any channel; a subscriber gets it."""
    s = service_server
    user = s.connect(token=s.token("sue"))
    user.recv_type("welcome")
    c = service(s)
    c.send({"type": "publish", "channel": "user:sue", "data": {"n": 1}})
    reply = c.recv()
    assert reply["type"] == "published"
    frame = user.recv_type("message")
    assert (frame["id"], frame["channel"], frame["data"]) == (reply["id"], "user:sue", {"n": 1})


def test_wrong_key_is_tried_as_token_and_closes_1008(service_server):
    """A bearer value that is no API key is a token: a bad one closes with 1008."""
    c = service_server.connect(token="not-the-key")
    assert c.close_code() == 1008


def test_emit_answers_matched_and_messages(service_server):
    """emit runs the rules: the reply names the matched rules and the message ids."""
    s = service_server
    owner = s.connect(token=s.token("olga"))
    owner.recv_type("welcome")
    c = service(s)
    c.send({"type": "emit", "event": {"type": "comment.added", "object": {"owner": "olga"}}})
    reply = c.recv()
    assert reply["type"] == "emitted" and reply["matched"] == ["comment-to-owner"]
    assert [m["id"] for m in owner.messages(1)] == reply["messages"]


def test_bad_emit_names_the_field_and_stays_open(service_server):
    """An invalid event is a bad_request naming the field; the next frame is answered."""
    c = service(service_server)
    c.send({"type": "emit", "event": {"type": "no spaces allowed"}})
    error = c.recv()
    assert error["code"] == "bad_request" and "event.type" in error["message"], error
    assert list(error["errors"]["event"]) == ["type"]
    c.send({"type": "ping"})
    assert c.recv() == {"type": "pong"}


def test_emit_without_api_key_is_forbidden(service_server):
    """A connection without an API key may not emit."""
    c = service_server.connect(token=service_server.token("ned"))
    c.recv_type("welcome")
    c.send({"type": "emit", "event": {"type": "comment.added"}})
    error = c.recv()
    assert error["code"] == "forbidden" and "API key" in error["message"]


def test_pipelined_publishes_answered_in_order(service_server):
    """100 publishes sent at once get 100 replies in order, increasing ids, all stored."""
    s = service_server
    c = service(s)
    frames = [{"type": "publish", "channel": "user:pip", "data": {"n": n}, "ref": n}
              for n in range(100)]
    c.ws.sock.sendall(b"".join(_frame(f) for f in frames))
    replies = [c.recv() for _ in frames]
    assert [r["type"] for r in replies] == ["published"] * 100
    assert [r["ref"] for r in replies] == list(range(100))
    ids = [r["id"] for r in replies]
    assert ids == sorted(set(ids))
    assert set(ids) <= set(history(s, "pip"))


def test_bad_frame_in_a_pipeline_fails_alone(service_server):
    """An invalid publish among valid ones gets its error in its place; the others go."""
    c = service(service_server)
    frames = [{"type": "publish", "channel": "user:bo", "data": {}, "ref": "a"},
              {"type": "publish", "channel": "nochannel", "data": {}, "ref": "b"},
              {"type": "ping"},
              {"type": "publish", "channel": "user:bo", "data": [], "ref": "c"},
              {"type": "publish", "channel": "user:bo", "data": {}, "ref": "d"}]
    c.ws.sock.sendall(b"".join(_frame(f) for f in frames))
    replies = [c.recv() for _ in frames]
    assert [(r["type"], r.get("ref")) for r in replies] == [
        ("published", "a"), ("error", "b"), ("pong", None), ("error", "c"), ("published", "d")]
    assert replies[1]["code"] == replies[3]["code"] == "bad_request"
    assert replies[0]["id"] < replies[4]["id"]


def test_service_is_not_rate_limited(service_server):
    """client_rate does not apply to a service connection."""
    c = service(service_server)
    for n in range(20):
        c.send({"type": "ping"})
    assert [c.recv()["type"] for _ in range(20)] == ["pong"] * 20


def test_frame_over_size_limit_closes_1009(make_server):
    """limits.max_message_bytes holds for each frame of a service too."""
    s = make_server(limits={"max_message_bytes": 1000})
    c = service(s)
    c.send({"type": "publish", "channel": "user:x", "data": {"text": "x" * 1000}})
    assert c.close_code() == 1009


def test_ref_echoed_on_client_publish(service_server):
    """A ref on a publish frame comes back on the reply of an ordinary client too."""
    c = service_server.connect()
    c.recv_type("welcome")
    c.send({"type": "publish", "channel": "topic:board-1", "data": {}, "ref": 7})
    assert c.recv()["ref"] == 7
    c.send({"type": "publish", "channel": "topic:other", "data": {}, "ref": "x"})
    assert c.recv()["ref"] == "x"
