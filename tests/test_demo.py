"""The demo intranet (contrib/demo) co-hosted in a real server, driven like a browser."""
import os
import re

import requests

from tests.conftest import ROOT

DEMO = os.path.join(ROOT, "contrib", "demo")
RULES = os.path.join(ROOT, "rules")
WIDGET = '<script src="/rulecast/static/rulecast.js" data-rulecast-widget></script>'


def start(make_server):
    return make_server(app="intranet:app", extra_path=[DEMO], rules=[RULES],
                       public_topics=["public-*"])


def login(server, user):
    """A requests session logged in as ``user`` through the login form."""
    browser = requests.Session()
    r = browser.post(server.url + "/login", data={"user": user}, allow_redirects=False, timeout=5)
    assert r.status_code == 302, r.text
    assert browser.cookies.get("rulecast_token") and browser.cookies.get("session")
    return browser


def socket(server, browser=None):
    """A WebSocket presenting the browser's login cookie (anonymous without one)."""
    cookie = None
    if browser is not None:
        cookie = "rulecast_token=" + browser.cookies["rulecast_token"]
    client = server.connect(cookie=cookie)
    client.welcome = client.recv_type("welcome")
    return client


def listen_topic(server, channel):
    client = socket(server)
    client.send({"type": "subscribe", "channel": channel})
    client.recv_type("subscribed")
    return client


def assert_nothing_queued(client):
    """The next frame after a ping is its pong: no message waits before it."""
    client.send({"type": "ping"})
    frame = client.recv()
    assert frame["type"] == "pong", frame


def post(browser, server, path, **form):
    return browser.post(server.url + path, data=form, allow_redirects=False, timeout=5)


def test_login_cookie_identifies_the_socket(make_server):
    """The token the login sets makes a socket alice's, on her user, group and role channels."""
    s = start(make_server)
    welcome = socket(s, login(s, "alice")).welcome
    assert welcome["user"] == "alice"
    assert {"user:alice", "group:editors", "role:Editor"} <= set(welcome["channels"])


def test_comment_notifies_the_owner(make_server):
    """Bob's comment on alice's document reaches alice, naming bob and the document."""
    s = start(make_server)
    alice = socket(s, login(s, "alice"))
    bob = login(s, "bob")
    r = post(bob, s, "/items/q3-plan/comment", text="Looks good to me")
    assert r.status_code == 302
    m = alice.recv_type("message")
    assert m["channel"] == "user:alice"
    assert m["data"]["title"] == "Bob commented on Q3 plan"
    assert m["data"]["body"] == "Looks good to me"
    assert m["data"]["url"] == s.url + "/intranet/plans/q3-plan"


def test_comment_notifies_reviewer_role(make_server):
    """A comment on a document reaches carol through role:Reviewer."""
    s = start(make_server)
    carol = socket(s, login(s, "carol"))
    post(login(s, "bob"), s, "/items/q3-plan/comment", text="One question")
    m = carol.recv_type("message")
    assert m["channel"] == "role:Reviewer"
    assert m["data"]["title"] == "New comment on Q3 plan"
    assert m["data"]["body"] == "Bob: One question"


def test_commenter_is_not_notified(make_server):
    """Bob, who wrote the comment, gets no message about it."""
    s = start(make_server)
    alice = socket(s, login(s, "alice"))
    bob_browser = login(s, "bob")
    bob = socket(s, bob_browser)
    post(bob_browser, s, "/items/q3-plan/comment", text="Mine")
    alice.recv_type("message")  # the event has been processed
    assert_nothing_queued(bob)


def test_owner_commenting_on_own_document_only_tells_reviewers(make_server):
    """Alice commenting on her own document is not told about it; carol is."""
    s = start(make_server)
    alice_browser = login(s, "alice")
    alice = socket(s, alice_browser)
    carol = socket(s, login(s, "carol"))
    post(alice_browser, s, "/items/q3-plan/comment", text="Note to self")
    assert carol.recv_type("message")["data"]["body"] == "Alice: Note to self"
    assert_nothing_queued(alice)


def test_submit_for_review_notifies_reviewers_group(make_server):
    """Alice submitting her document for review reaches carol on group:reviewers."""
    s = start(make_server)
    carol = socket(s, login(s, "carol"))
    alice = login(s, "alice")
    assert post(alice, s, "/items/q3-plan/transition", action="submit").status_code == 302
    m = carol.recv_type("message")
    assert m["channel"] == "group:reviewers"
    assert m["data"]["title"] == "Q3 plan awaits review"
    assert m["data"]["state"] == "pending"
    page = alice.get(s.url + "/intranet/plans/q3-plan", timeout=5).text
    assert "state-pending" in page


def test_publishing_news_reaches_anonymous_topic(make_server):
    """A news item published reaches an anonymous socket on topic:public-news, once."""
    s = start(make_server)
    anonymous = listen_topic(s, "topic:public-news")
    r = post(login(s, "alice"), s, "/items/new-office/transition", action="publish")
    assert r.status_code == 302
    m = anonymous.recv_type("message")
    assert m["channel"] == "topic:public-news"
    assert m["data"]["title"] == "We move to a new office"
    assert m["data"]["body"] == "From 1 March we work at Harbour Street 12."
    assert m["data"]["event"] == "news.published"
    assert_nothing_queued(anonymous)
    assert "We move to a new office" in requests.get(s.url + "/news", timeout=5).text


def test_failed_request_emits_nothing(make_server):
    """An empty comment (400) and a forbidden transition (403) send no message."""
    s = start(make_server)
    carol = socket(s, login(s, "carol"))
    bob = login(s, "bob")
    assert post(bob, s, "/items/q3-plan/comment", text="   ").status_code == 400
    dave = login(s, "dave")
    assert post(dave, s, "/items/q3-plan/transition", action="submit").status_code == 403
    assert post(bob, s, "/items/q3-plan/comment", text="second try").status_code == 302
    assert carol.recv_type("message")["data"]["body"] == "Bob: second try"  # the first came never
    assert "second try" in bob.get(s.url + "/intranet/plans/q3-plan", timeout=5).text


def test_anonymous_cannot_act(make_server):
    """Posting a comment without logging in is refused with 401."""
    s = start(make_server)
    r = requests.post(s.url + "/items/onboarding/comment", data={"text": "hi"},
                      allow_redirects=False, timeout=5)
    assert r.status_code == 401


def test_comment_html_is_escaped(make_server):
    """HTML in a comment shows as text on the document page."""
    s = start(make_server)
    bob = login(s, "bob")
    post(bob, s, "/items/q3-plan/comment", text='<script>alert("x")</script><b>bold</b>')
    page = bob.get(s.url + "/intranet/plans/q3-plan", timeout=5).text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>alert" not in page and "<b>bold" not in page


def test_logout_clears_both_cookies(make_server):
    """Logging out drops the session and the rulecast_token cookie."""
    s = start(make_server)
    alice = login(s, "alice")
    assert post(alice, s, "/logout").status_code == 302
    assert "rulecast_token" not in alice.cookies and "session" not in alice.cookies
    assert "You are not logged in" in alice.get(s.url + "/", timeout=5).text


def test_pages_render_for_every_user(make_server):
    """Home, news and every visible item page render for each user, with the widget."""
    s = start(make_server)
    for user in (None, "alice", "bob", "carol", "dave"):
        browser = login(s, user) if user else requests.Session()
        home = browser.get(s.url + "/", timeout=5)
        assert home.status_code == 200 and WIDGET in home.text
        name = user.capitalize() if user else "not logged in"
        assert name in home.text
        links = set(re.findall(r'href="(/intranet/[^"]+)"', home.text))
        assert len(links) == (5 if user else 3)  # anonymous: the published ones (+ banner link)
        for path in sorted(links) + ["/news"]:
            page = browser.get(s.url + path, timeout=5, allow_redirects=False)
            if user is None and path == "/intranet/plans/q3-plan":
                assert page.status_code == 302  # private: log in first
                continue
            assert page.status_code == 200, (user, path)
            assert WIDGET in page.text
