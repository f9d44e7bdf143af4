"""rulecast.emit() and publish() from a co-hosted app: events wait for a good response."""
import requests


RULE = """
- name: emitted
  on: app.*
  then: [{publish: {channel: "topic:public-app", data: {what: "{{ type }}"}}}]
"""


def start(make_server, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULE)
    s = make_server(app="tests.apps:app", rules=[str(path)])
    c = s.connect()
    c.recv_type("welcome")
    c.send({"type": "subscribe", "channel": "topic:public-app"})
    c.recv_type("subscribed")
    return s, c


def test_emit_sent_after_successful_response(make_server, tmp_path):
    """emit() in a view that succeeds reaches subscribers."""
    s, c = start(make_server, tmp_path)
    assert requests.post(s.url + "/emit", json={"type": "app.ok"}).status_code == 200
    assert c.recv_type("message")["data"] == {"what": "app.ok"}


def test_emit_dropped_when_response_fails(make_server, tmp_path):
    """emit() in a view that answers 4xx/5xx or raises is dropped."""
    s, c = start(make_server, tmp_path)
    assert requests.post(s.url + "/emit", json={"type": "app.bad", "status": 409}).status_code == 409
    assert requests.post(s.url + "/emit", json={"type": "app.boom", "raise": True}).status_code == 500
    assert requests.post(s.url + "/emit", json={"type": "app.later"}).status_code == 200
    assert c.recv_type("message")["data"] == {"what": "app.later"}  # the first two never came


def test_emit_bad_event_raises_value_error(make_server, tmp_path):
    """emit() with a bad type raises ValueError naming the field."""
    s, _ = start(make_server, tmp_path)
    r = requests.post(s.url + "/emit", json={"type": "bad type!"})
    assert r.status_code == 400 and "type" in r.json()["error"]


def test_publish_many_stores_in_order(make_server, tmp_path):
    """publish_many() answers consecutive ids in order; subscribers get each message."""
    s, c = start(make_server, tmp_path)
    r = requests.post(s.url + "/announce-many", json={"titles": ["a", "b", "c"]})
    ids = r.json()["ids"]
    assert ids == list(range(ids[0], ids[0] + 3))
    assert [c.recv_type("message")["data"]["title"] for _ in ids] == ["a", "b", "c"]


def test_publish_many_bad_item_stores_nothing(make_server, tmp_path):
    """One bad item raises ValueError naming its index; no item of the batch is stored."""
    s, c = start(make_server, tmp_path)
    r = requests.post(s.url + "/announce-many", json={"titles": ["a", None]})
    assert r.status_code == 400 and r.json()["error"].startswith("item 1: ")
    assert requests.post(s.url + "/announce-many", json={"titles": ["z"]}).status_code == 200
    assert c.recv_type("message")["data"]["title"] == "z"  # "a" was never published
