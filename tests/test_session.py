"""The WebSocket wire protocol against a real server: every client frame and its answer."""
import socket
import threading

import requests


def test_welcome_lists_automatic_channels(server):
    """A user is subscribed to user:, group: and role: channels on connect."""
    c = server.connect(token=server.token("ann", groups=["eds"], roles=["Reviewer"]))
    welcome = c.recv()
    assert welcome["type"] == "welcome"
    assert welcome["user"] == "ann"
    assert welcome["channels"] == ["group:eds", "role:Reviewer", "user:ann"]
    assert isinstance(welcome["last_id"], int)


def test_message_reaches_user_group_and_role(server):
    """Messages on the user's own, group and role channels arrive as message frames."""
    c = server.connect(token=server.token("bea", groups=["eds"], roles=["Boss"]))
    c.recv_type("welcome")
    ids = [server.publish(ch, {"n": i}) for i, ch in
           enumerate(["user:bea", "group:eds", "role:Boss", "user:other"])]
    got = c.messages(3)
    assert [m["id"] for m in got] == ids[:3]
    assert [m["channel"] for m in got] == ["user:bea", "group:eds", "role:Boss"]
    assert got[0]["data"] == {"n": 0} and got[0]["time"].endswith("Z")


def test_token_in_cookie_query_and_auth_frame(server):
    """The token is accepted from the cookie, ?token= and a first auth frame."""
    token = server.token("cid")
    by_cookie = server.connect(cookie="rulecast_token=" + token)
    assert by_cookie.recv()["user"] == "cid"
    by_query = server.connect(query="token=" + token)
    assert by_query.recv()["user"] == "cid"
    by_frame = server.connect()
    by_frame.send({"type": "auth", "token": token})
    assert by_frame.recv()["user"] == "cid"


def test_anonymous_gets_welcome_without_user(server):
    """With no token and no auth frame, the connection is anonymous with no channels."""
    c = server.connect()
    welcome = c.recv()
    assert welcome["user"] is None and welcome["channels"] == []


def test_expired_token_closes_1008(server):
    """An expired token closes the socket with 1008."""
    c = server.connect(token=server.token("old", ttl=-1))
    assert c.close_code() == 1008


def test_bad_auth_frame_closes_1008(server):
    """An auth frame with a forged token closes with 1008."""
    c = server.connect()
    c.send({"type": "auth", "token": "forged.token"})
    assert c.close_code() == 1008


def test_public_topic_subscription(server):
    """Anonymous clients may subscribe to topics matching public_topics and get them."""
    c = server.connect()
    c.recv_type("welcome")
    c.send({"type": "subscribe", "channel": "topic:public-news"})
    assert c.recv() == {"type": "subscribed", "channel": "topic:public-news"}
    mid = server.publish("topic:public-news", {"title": "hi"})
    assert c.recv_type("message")["id"] == mid


def test_forbidden_subscriptions_get_error_frame(server):
    """Non-public topics and other users' channels are refused with `forbidden`."""
    c = server.connect(token=server.token("dan"))
    c.recv_type("welcome")
    for channel in ("topic:secret", "user:eve", "group:admins"):
        c.send({"type": "subscribe", "channel": channel})
        error = c.recv()
        assert error["type"] == "error" and error["code"] == "forbidden", error
        assert channel in error["message"]


def test_unknown_channel_kind_is_bad_request(server):
    """A channel of an unknown kind is a bad_request naming the known kinds."""
    c = server.connect()
    c.recv_type("welcome")
    c.send({"type": "subscribe", "channel": "room:1"})
    error = c.recv()
    assert error["code"] == "bad_request"
    assert "known: user, group, role, topic" in error["message"]


def test_unsubscribe_stops_delivery(server):
    """After unsubscribe no more messages of that channel arrive."""
    c = server.connect()
    c.recv_type("welcome")
    c.send({"type": "subscribe", "channel": "topic:public-a"})
    c.recv_type("subscribed")
    c.send({"type": "unsubscribe", "channel": "topic:public-a"})
    assert c.recv() == {"type": "unsubscribed", "channel": "topic:public-a"}
    server.publish("topic:public-a", {"x": 1})
    c.send({"type": "ping"})
    assert c.recv() == {"type": "pong"}


def test_bad_frames_get_errors_and_connection_stays(server):
    """Malformed JSON, non-objects and unknown types are answered; the socket stays open."""
    c = server.connect()
    c.recv_type("welcome")
    c.ws.send("{nope")
    assert c.recv()["code"] == "bad_request"
    c.ws.send("[1, 2]")
    assert c.recv()["code"] == "bad_request"
    c.send({"type": "dance"})
    error = c.recv()
    assert error["code"] == "bad_request" and "known: auth, call" in error["message"]
    c.send({"type": "ping"})
    assert c.recv() == {"type": "pong"}


def test_resume_replays_in_order_without_duplicates(server):
    """`?since=` replays every later message on the connection's channels, then goes live."""
    token = server.token("fay")
    first = server.publish("user:fay", {"n": 1})
    ids = [server.publish("user:fay", {"n": n}) for n in range(2, 6)]
    server.publish("user:someone-else", {"n": 0})
    c = server.connect(token=token, query="since=%d" % first)
    c.recv_type("welcome")
    live = server.publish("user:fay", {"n": 6})
    got = [m["id"] for m in c.messages(5)]
    assert got == ids + [live]
    c.send({"type": "ping"})
    assert c.recv()["type"] == "pong"  # nothing repeated after the live one


def test_resume_frame(server):
    """A resume frame replays after `since` like the query parameter."""
    token = server.token("gus")
    ids = [server.publish("user:gus", {"n": n}) for n in range(3)]
    c = server.connect(token=token)
    c.recv_type("welcome")
    c.send({"type": "resume", "since": ids[0]})
    assert [m["id"] for m in c.messages(2)] == ids[1:]


def test_resume_covers_topic_subscribed_after_welcome(server):
    """subscribe then resume: a topic message sent between welcome and subscribe arrives."""
    c = server.connect(token=server.token("ida"))
    since = c.recv_type("welcome")["last_id"]
    gap = server.publish("topic:public-gap", {"n": 1})
    c.send({"type": "subscribe", "channel": "topic:public-gap"})
    c.recv_type("subscribed")
    c.send({"type": "resume", "since": since})
    assert c.recv_type("message")["id"] == gap


def test_since_gives_later_subscriptions_their_backlog(server):
    """With ?since=, a topic subscribed after connecting gets its messages since then."""
    since = server.publish("topic:public-back", {"n": 0})
    missed = [server.publish("topic:public-back", {"n": n}) for n in (1, 2)]
    c = server.connect(token=server.token("jan"), query="since=%d" % since)
    c.recv_type("welcome")
    c.send({"type": "subscribe", "channel": "topic:public-back"})
    c.recv_type("subscribed")
    live = server.publish("topic:public-back", {"n": 3})
    assert [m["id"] for m in c.messages(3)] == missed + [live]


def test_resume_across_restart(make_server):
    """History survives a restart: a client resumes with since and misses nothing."""
    s = make_server()
    token = s.token("hal")
    seen = s.publish("user:hal", {"n": 0})
    s.restart()
    later = [s.publish("user:hal", {"n": n}) for n in (1, 2)]
    c = s.connect(token=token, query="since=%d" % seen)
    assert [m["id"] for m in c.messages(2)] == later
    assert later[0] > seen


def test_resume_pages_through_long_history(make_server):
    """A resume longer than the send queue is replayed whole, not cut as too slow."""
    s = make_server(limits={"send_queue": 50})
    for n in range(300):
        s.publish("user:ivy", {"n": n})
    c = s.connect(token=s.token("ivy"), query="since=0")
    got = [m["data"]["n"] for m in c.messages(300)]
    assert got == list(range(300))


def test_client_publish_to_allowed_channel(server):
    """publish to a client_publish channel answers published and reaches subscribers."""
    reader = server.connect()
    reader.recv_type("welcome")
    reader.send({"type": "subscribe", "channel": "topic:board-1"})
    assert reader.recv()["type"] == "subscribed"
    writer = server.connect(token=server.token("jo"))
    writer.recv_type("welcome")
    writer.send({"type": "publish", "channel": "topic:board-1", "data": {"stroke": [1, 2]}})
    published = writer.recv()
    assert published["type"] == "published" and isinstance(published["id"], int)
    message = reader.recv_type("message")
    assert message["id"] == published["id"] and message["data"] == {"stroke": [1, 2]}


def test_client_publish_elsewhere_forbidden(server):
    """publish outside client_publish is refused with forbidden."""
    c = server.connect(token=server.token("kim"))
    c.recv_type("welcome")
    c.send({"type": "publish", "channel": "topic:public-news", "data": {"x": 1}})
    error = c.recv()
    assert error["code"] == "forbidden" and "topic:board-*" in error["message"]


def test_client_publish_needs_object_data(server):
    """publish with non-object data is a bad_request."""
    c = server.connect()
    c.recv_type("welcome")
    c.send({"type": "publish", "channel": "topic:board-1", "data": [1]})
    assert c.recv()["code"] == "bad_request"


def test_rate_limit_answers_rate_limited(make_server):
    """Frames beyond limits.client_rate are answered rate_limited; the socket stays."""
    s = make_server(limits={"client_rate": 5})
    c = s.connect()
    c.recv_type("welcome")
    for _ in range(20):
        c.send({"type": "ping"})
    answers = [c.recv()["type"] for _ in range(20)]
    assert answers.count("pong") <= 6
    assert "error" in answers


def test_call_runs_request_against_cohosted_app_with_cookies(make_server):
    """A call frame runs a request on the co-hosted app with the connection's cookies."""
    s = make_server(app="tests.apps:app")
    c = s.connect(cookie="session=abc123")
    c.recv_type("welcome")
    c.send({"type": "call", "id": 7, "method": "GET", "path": "/whoami"})
    assert c.recv() == {"type": "result", "id": 7, "status": 200,
                        "body": {"session": "abc123", "method": "GET"}}
    c.send({"type": "call", "id": "b", "method": "POST", "path": "/echo", "body": {"q": 1}})
    result = c.recv()
    assert result["status"] == 200 and result["body"]["got"] == {"q": 1}


def test_call_errors(make_server):
    """A failing app answers status 500; a malformed call is a bad_request."""
    s = make_server(app="tests.apps:app")
    c = s.connect()
    c.recv_type("welcome")
    c.send({"type": "call", "id": 1, "path": "/boom"})
    assert c.recv()["status"] == 500
    c.send({"type": "call", "id": 2, "path": "no-slash"})
    assert c.recv()["code"] == "bad_request"
    c.send({"type": "call", "id": 3, "path": "/missing"})
    assert c.recv()["status"] == 404


def test_inprocess_publish_from_cohosted_app(make_server):
    """rulecast.publish() inside the co-hosted app delivers to subscribers."""
    s = make_server(app="tests.apps:app", public_topics=["public-*"])
    c = s.connect()
    c.recv_type("welcome")
    c.send({"type": "subscribe", "channel": "topic:public-app"})
    c.recv_type("subscribed")
    r = requests.post(s.url + "/announce", json={"title": "from the app"})
    message = c.recv_type("message")
    assert message["id"] == r.json()["id"] and message["data"] == {"title": "from the app"}


def test_slow_consumer_closed_1013_others_unaffected(make_server):
    """A client that stops reading is closed with 1013; a reading client gets everything."""
    s = make_server(limits={"send_queue": 20})
    slow = s.connect(token=s.token("lou"),
                     sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    slow.recv_type("welcome")
    fast = s.connect(token=s.token("lou"))
    fast.recv_type("welcome")
    got = []
    reader = threading.Thread(target=lambda: got.extend(m["id"] for m in fast.messages(150)))
    reader.start()
    # 9 MB: more than loopback socket buffers hold, so the slow queue must overflow.
    payload = {"pad": "x" * 60000}
    ids = [s.publish("user:lou", payload) for _ in range(150)]
    reader.join(30)
    assert got == ids
    assert slow.close_code(timeout=10) == 1013
    metrics = requests.get(s.url + "/rulecast/metrics").text
    assert "rulecast_slow_consumer_closes_total 1.0" in metrics


def test_too_many_connections_closed_1013(make_server):
    """Past limits.max_connections a new connection is closed with 1013."""
    s = make_server(limits={"max_connections": 2})
    a, b = s.connect(), s.connect()
    a.recv_type("welcome")
    b.recv_type("welcome")
    assert s.connect().close_code() == 1013


def test_graceful_stop_sends_1001(make_server):
    """SIGTERM closes every client with 1001 and the server exits 0."""
    s = make_server()
    c = s.connect(token=s.token("max"))
    c.recv_type("welcome")
    s.proc.terminate()
    assert c.close_code() == 1001
    assert s.proc.wait(10) == 0


def test_bad_since_in_query_is_bad_request(server):
    """?since= that is not an id gets a bad_request error frame; the socket stays open."""
    c = server.connect(token=server.token("nia"), query="since=yesterday")
    c.recv_type("welcome")
    error = c.recv()
    assert error["code"] == "bad_request" and "since" in error["message"]
    c.send({"type": "ping"})
    assert c.recv() == {"type": "pong"}


def test_channels_in_query_replay_in_id_order(server):
    """?channel= subscribes before the ?since replay: one replay, strictly in id order."""
    token = server.token("oli")
    since = server.publish("user:oli", {"n": 0})
    ids = [server.publish(ch, {"n": n}) for n, ch in enumerate(
        ["topic:public-q", "user:oli", "topic:public-q", "user:oli"], 1)]
    c = server.connect(token=token, query="channel=topic:public-q&since=%d" % since)
    c.recv_type("welcome")
    assert c.recv() == {"type": "subscribed", "channel": "topic:public-q"}
    assert [m["id"] for m in c.messages(4)] == ids


def test_forbidden_channel_in_query_is_an_error_frame(server):
    """A channel in the query the identity may not hear gets a forbidden error frame."""
    c = server.connect(token=server.token("pam"), query="channel=topic:secret")
    c.recv_type("welcome")
    assert c.recv()["code"] == "forbidden"
