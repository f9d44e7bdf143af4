"""The admin view and presence: who is where, rules, last messages, a test event."""
import requests


def get(s, **kw):
    return requests.get(s.url + "/rulecast/admin", **kw)


def test_admin_needs_key_or_admin_role(server):
    """Without the API key or the rulecast-admin role the view is refused."""
    assert get(server).status_code == 403
    plain = server.token("joe")
    assert get(server, cookies={"rulecast_token": plain}).status_code == 403
    admin = server.token("ada", roles=["rulecast-admin"])
    assert get(server, cookies={"rulecast_token": admin}).status_code == 200
    assert get(server, headers={"Authorization": "Bearer " + server.api_key}).status_code == 200


def test_admin_json_shows_presence_rules_and_messages(server):
    """The view lists channels with their users, and the last messages."""
    c = server.connect(token=server.token("viv", groups=["ops"]))
    c.recv_type("welcome")
    mid = server.publish("group:ops", {"title": "hello ops"})
    data = get(server, params={"format": "json"},
               headers={"Authorization": "Bearer " + server.api_key}).json()
    assert "viv" in data["presence"]["group:ops"]
    assert data["messages"][0]["id"] == mid
    assert data["workers"][0]["connections"] >= 1


def test_admin_page_escapes_message_data(server):
    """Message data shown in the page is escaped."""
    server.publish("topic:x", {"title": "<script>alert(1)</script>"})
    page = get(server, headers={"Authorization": "Bearer " + server.api_key}).text
    assert "<script>alert(1)</script>" not in page and "rulecast admin" in page


def test_admin_explain_sends_nothing(make_server, tmp_path):
    """The test-event form explains an event without publishing anything."""
    rules = tmp_path / "r.yaml"
    rules.write_text("- {name: r, on: x, then: [{notify: {to: 'user:a', title: hi}}]}\n")
    s = make_server(rules=[str(rules)])
    before = requests.get(s.url + "/rulecast/healthz").json()["last_id"]
    r = requests.post(s.url + "/rulecast/admin/explain", data='{"type": "x"}',
                      headers={"Authorization": "Bearer " + s.api_key})
    report = r.json()["report"][0]
    assert report[0]["matched"] and report[0]["messages"][0]["channel"] == "user:a"
    assert requests.get(s.url + "/rulecast/healthz").json()["last_id"] == before


def test_presence_frame_lists_users_of_a_channel(server):
    """presence answers with the users subscribed to a channel the asker may hear."""
    a = server.connect(token=server.token("ana"))
    a.send({"type": "subscribe", "channel": "topic:public-room"})
    a.recv_type("subscribed")
    b = server.connect(token=server.token("ben"))
    b.recv_type("welcome")
    b.send({"type": "presence", "channel": "topic:public-room"})
    assert b.recv_type("presence") == {"type": "presence", "channel": "topic:public-room",
                                       "users": ["ana"]}
    b.send({"type": "presence", "channel": "user:ana"})
    assert b.recv_type("error")["code"] == "forbidden"


def test_presence_across_workers(make_server):
    """Under the supervisor, presence includes users connected to other workers."""
    import time
    from tests.test_supervisor import connections_per_worker
    s = make_server(workers=2)
    clients = []
    while len(clients) < 6 or min(connections_per_worker(s).values() or [0]) < 2:
        assert len(clients) < 100, "connections never reached both workers"
        c = s.connect(token=s.token("u%d" % len(clients)))
        c.send({"type": "subscribe", "channel": "topic:public-lobby"})
        c.recv_type("subscribed")
        clients.append(c)
        if len(clients) >= 6:
            time.sleep(1.1)  # per-worker figures are written each second
    expected = sorted("u%d" % n for n in range(len(clients)))
    deadline = time.time() + 5
    while True:
        clients[0].send({"type": "presence", "channel": "topic:public-lobby"})
        users = clients[0].recv_type("presence")["users"]
        if users == expected or time.time() > deadline:
            break
        time.sleep(0.2)  # other workers write their presence each second
    assert users == expected
