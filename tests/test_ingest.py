"""Publish and events served before Flask: batches, all-or-nothing, the same errors."""
import requests

from rulecast.ingest import MAX_BATCH
from tests.test_api import post


def test_batch_publish_answers_ids_in_order(server):
    """A list body answers 202 with consecutive ids in the order sent, each delivered."""
    c = server.connect(token=server.token("bea"))
    c.recv_type("welcome")
    items = [{"channel": "user:bea", "data": {"n": n}} for n in range(5)]
    r = post(server, "/api/publish", items)
    assert r.status_code == 202
    ids = r.json()["ids"]
    assert ids == list(range(ids[0], ids[0] + 5))
    got = [c.recv_type("message") for _ in ids]
    assert [(m["id"], m["data"]["n"]) for m in got] == list(zip(ids, range(5)))


def test_batch_with_bad_items_stores_nothing(server):
    """Bad items reject the whole batch with errors keyed by index; nothing is stored."""
    before = requests.get(server.url + "/rulecast/healthz").json()["last_id"]
    items = [{"channel": "topic:x", "data": {}}, {"channel": "bogus:x", "data": {}},
             {"channel": "topic:x", "data": {}}, {"channel": "topic:x"}]
    r = post(server, "/api/publish", items)
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert set(errors) == {"1", "3"}
    assert "unknown channel kind 'bogus'" in errors["1"]["channel"][0]
    assert errors["3"] == {"data": ["Missing data for required field."]}
    assert requests.get(server.url + "/rulecast/healthz").json()["last_id"] == before


def test_batch_empty_or_too_long_400(server):
    """An empty list and a list over MAX_BATCH items are 400, saying why."""
    r = post(server, "/api/publish", [])
    assert r.status_code == 400 and "empty" in r.json()["errors"]["_"][0]
    r = post(server, "/api/publish", [{"channel": "topic:x", "data": {}}] * (MAX_BATCH + 1))
    assert r.status_code == 400 and str(MAX_BATCH) in r.json()["errors"]["_"][0]


def test_batch_item_over_size_limit_413(make_server):
    """An item whose data exceeds max_message_bytes is a 413 naming its index."""
    s = make_server(limits={"max_message_bytes": 1000})
    items = [{"channel": "topic:x", "data": {"pad": "x" * n}} for n in (10, 900, 1500)]
    r = post(s, "/api/publish", items)
    assert r.status_code == 413 and set(r.json()["errors"]) == {"2"}


def test_wrong_content_type_400(server):
    """A body sent as form data is a 400 asking for JSON."""
    r = post(server, "/api/publish", data="channel=topic:x",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["errors"]["_"][0]


def test_deeply_nested_body_400(server):
    """JSON nested beyond the parser's depth is a 400, not an internal error."""
    body = '{"channel":"topic:x","data":' + "[" * 5000 + "]" * 5000 + "}"
    r = post(server, "/api/publish", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = post(server, "/api/events", data="[" * 5000 + "]" * 5000,
             headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_get_on_publish_405(server):
    """Only POST is served; other methods get 405 with Allow."""
    r = requests.get(server.url + "/rulecast/api/publish")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_chunked_body_accepted(server):
    """A body sent with chunked transfer encoding is read whole."""
    chunks = iter([b'{"channel":"topic:x",', b'"data":{"k":1}}'])
    r = requests.post(server.url + "/rulecast/api/publish", data=chunks, headers={
        "Authorization": "Bearer " + server.api_key, "Content-Type": "application/json"})
    assert r.status_code == 202 and isinstance(r.json()["id"], int)


def test_event_batch_errors_by_index(server):
    """A bad event in a list rejects the list with its errors under its index."""
    r = post(server, "/api/events", [{"type": "ok"}, {"type": "bad type!"}])
    assert r.status_code == 400 and set(r.json()["errors"]) == {"1"}
