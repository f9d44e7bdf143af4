"""The HTTP API against a real server: publish, notifications, health, metrics, errors."""
import requests


def post(server, path, json=None, key="default", **kw):
    headers = kw.pop("headers", {})
    if key:
        headers["Authorization"] = "Bearer " + (server.api_key if key == "default" else key)
    return requests.post(server.url + "/rulecast" + path, json=json, headers=headers, **kw)


def test_publish_202_with_increasing_ids(server):
    """publish answers 202 with strictly increasing ids."""
    a = post(server, "/api/publish", {"channel": "topic:x", "data": {}})
    b = post(server, "/api/publish", {"channel": "topic:x", "data": {}})
    assert a.status_code == b.status_code == 202
    assert b.json()["id"] > a.json()["id"]


def test_publish_without_key_401(server):
    """No API key → 401 saying how to send one; a wrong key → 401."""
    r = post(server, "/api/publish", {"channel": "topic:x", "data": {}}, key=None)
    assert r.status_code == 401 and "Bearer" in r.json()["errors"]["authorization"][0]
    r = post(server, "/api/publish", {"channel": "topic:x", "data": {}}, key="wrong")
    assert r.status_code == 401


def test_publish_field_errors_400(server):
    """Every field error at once, per field."""
    r = post(server, "/api/publish", {"channel": "bogus:x", "data": [1], "extra": 1})
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert "unknown channel kind 'bogus'" in errors["channel"][0]
    assert set(errors) == {"channel", "data", "extra"}


def test_publish_not_json_400(server):
    """A body that is not JSON is a 400."""
    r = post(server, "/api/publish", data="nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["errors"]["_"][0]


def test_publish_too_large_413(make_server):
    """A body over the message size limit is a 413."""
    s = make_server(limits={"max_message_bytes": 1000})
    r = post(s, "/api/publish", {"channel": "topic:x", "data": {"pad": "x" * 5000}})
    assert r.status_code == 413


def test_events_accepted_with_no_rule_matching(server):
    """The events endpoint requires the key; an event no rule wants is accepted, matching nothing."""
    assert post(server, "/api/events", {"type": "x"}, key=None).status_code == 401
    r = post(server, "/api/events", {"type": "x"})
    assert r.status_code == 202 and r.json() == {"matched": [], "messages": []}


def test_notifications_inbox_and_read_marks(server):
    """The inbox lists the user's messages with unread counts; read marks move forward."""
    token = server.token("una", groups=["g1"])
    auth = {"Authorization": "Bearer " + token}
    ids = [server.publish(ch, {"title": ch}) for ch in ("user:una", "group:g1", "user:other")]
    inbox = requests.get(server.url + "/rulecast/api/notifications", headers=auth).json()
    assert [m["id"] for m in inbox["messages"]] == ids[:2]
    assert inbox["unread"] == 2 and inbox["last_read"] == 0
    r = post(server, "/api/notifications/read", {"upto": ids[0]}, key=token)
    assert r.json() == {"last_read": ids[0], "unread": 1}
    r = post(server, "/api/notifications/read", {"upto": 0}, key=token)
    assert r.json()["last_read"] == ids[0]  # never backwards
    since = requests.get(server.url + "/rulecast/api/notifications",
                         params={"since": ids[0]}, headers=auth).json()
    assert [m["id"] for m in since["messages"]] == [ids[1]]


def test_notifications_need_user_token(server):
    """No token → 401; bad query → 400 per field; upto beyond the last id → 400."""
    assert requests.get(server.url + "/rulecast/api/notifications").status_code == 401
    auth = {"Authorization": "Bearer " + server.token("vic")}
    r = requests.get(server.url + "/rulecast/api/notifications", params={"limit": 0},
                     headers=auth)
    assert r.status_code == 400 and "limit" in r.json()["errors"]
    r = post(server, "/api/notifications/read", {"upto": 10 ** 9}, key=server.token("vic"))
    assert r.status_code == 400 and "upto" in r.json()["errors"]


def test_healthz(server):
    """healthz answers ok with the last id."""
    body = requests.get(server.url + "/rulecast/healthz").json()
    assert body["status"] == "ok" and isinstance(body["last_id"], int)


def test_metrics_count_published_and_delivered(server):
    """metrics exposes connections, published and delivered in Prometheus text."""
    c = server.connect(token=server.token("wes"))
    c.recv_type("welcome")
    server.publish("user:wes", {})
    c.recv_type("message")
    text = requests.get(server.url + "/rulecast/metrics").text
    assert "rulecast_connections " in text
    assert "rulecast_messages_published_total" in text
    delivered = [l for l in text.splitlines() if l.startswith("rulecast_messages_delivered_total")]
    assert float(delivered[0].split()[1]) >= 1


def test_unknown_api_path_404_json(server):
    """Unknown paths under the prefix answer 404 in the error format."""
    r = requests.get(server.url + "/rulecast/nope")
    assert r.status_code == 404 and "errors" in r.json()


def test_demo_page_served_at_root(server):
    """Without an app, the demo page is served at /."""
    r = requests.get(server.url + "/")
    assert r.status_code == 200 and "rulecast demo" in r.text
