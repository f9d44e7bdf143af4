"""The browser widget and client (rulecast/static/rulecast.js) in a real Chromium.

Each test starts a server co-hosting tests/widget_app.py and logs a user in with the
httponly ``rulecast_token`` cookie. Set RULECAST_WIDGET_SCREENSHOT=1 to refresh
docs/widget.png.
"""
import datetime
import os
import time
from urllib.parse import urlencode

import pytest
import requests

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

CHROMIUM = os.environ.get("RULECAST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no Chromium at " + CHROMIUM)

# Runs before the page's scripts on every load: records what the client passed on.
RECORDER = """
window.__rc = {messages: [], statuses: []};
addEventListener("rulecast:message", (e) => __rc.messages.push(e.detail.id));
addEventListener("rulecast:status", (e) => __rc.statuses.push(e.detail.status));
"""
# A WebSocket that a proxy blocks: every connection errors before it opens.
BLOCKED_WEBSOCKET = """
window.WebSocket = class {
  constructor() { setTimeout(() => { this.onerror && this.onerror(new Event("error"));
                                      this.onclose && this.onclose({code: 1006, reason: ""}); }, 5); }
  send() { throw new Error("blocked"); }
  close() {}
};
"""


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    context.set_default_timeout(15000)
    yield context
    context.close()


@pytest.fixture
def site(make_server):
    """A server co-hosting the widget test app, with a public topic clients may publish to."""
    return make_server(app="tests.widget_app:app", public_topics=["public-*", "board-*"],
                       client_publish=["topic:board-*"])


def wait_for(condition, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def connections(server):
    return requests.get(server.url + "/rulecast/healthz", timeout=5).json()["connections"]


def widget(page):
    return page.locator("rulecast-widget")


def bell(page):
    return page.get_by_role("button", name="Notifications")


def items(page):
    return page.locator("rulecast-widget li")


def wait_ready(page):
    """Until the connection is live and the inbox loaded."""
    expect(widget(page)).to_have_attribute("data-status", "live")
    expect(widget(page)).to_have_attribute("data-ready", "")


def open_page(context, server, user="ann", init=None, **attributes):
    """A new tab logged in as ``user`` on the widget page, ready."""
    page = context.new_page()
    page.add_init_script(RECORDER)
    if init:
        page.add_init_script(init)
    target = "/" + ("?" + urlencode(attributes) if attributes else "")
    page.goto(server.url + "/login?" + urlencode({"user": user, "next": target}))
    wait_ready(page)
    return page


def delivered(page):
    return page.evaluate("__rc.messages")


def test_live_message_shows_with_unread_count(site, context):
    """A message published to user:ann appears live in her list, and the badge counts it."""
    page = open_page(context, site)
    expect(bell(page)).to_have_attribute("aria-label", "Notifications")
    site.publish("user:ann", {"title": "Comment on Q3 plan", "body": "bob: looks good",
                              "url": "https://intranet.example/q3"})
    site.publish("user:bob", {"title": "not for ann"})
    expect(bell(page)).to_have_attribute("aria-label", "Notifications, 1 unread")
    expect(page.locator("rulecast-widget .badge")).to_have_text("1")
    expect(page.locator("rulecast-widget .toast")).to_contain_text("Comment on Q3 plan")
    bell(page).click()
    expect(items(page)).to_have_count(1)
    link = items(page).get_by_role("link", name="Comment on Q3 plan")
    expect(link).to_have_attribute("href", "https://intranet.example/q3")
    expect(items(page).first).to_contain_text("bob: looks good")
    expect(items(page).first.locator("time")).to_have_text("just now")


def test_reload_and_return_neither_lose_nor_repeat(site, context):
    """After a reload, and after coming back to the page, each message shows exactly once."""
    page = open_page(context, site)
    one = site.publish("user:ann", {"title": "one"})
    expect(items(page)).to_have_count(1)

    page.reload()
    wait_ready(page)
    two = site.publish("user:ann", {"title": "two"})
    expect(items(page)).to_have_count(2)
    wait_for(lambda: two in delivered(page), what="message two")
    assert delivered(page) == [two]  # "one" came from the inbox, not again over the socket

    page.goto(site.url + "/away")
    three = site.publish("user:ann", {"title": "three"})
    page.goto(site.url + "/")
    wait_ready(page)
    wait_for(lambda: three in delivered(page), what="message three")
    assert delivered(page) == [three]  # resumed after "two": "three" replayed, nothing else
    expect(items(page)).to_have_count(3)
    for title in ("one", "two", "three"):
        expect(items(page).filter(has_text=title)).to_have_count(1)
    assert one < two < three
    expect(bell(page)).to_have_attribute("aria-label", "Notifications, 3 unread")


def test_markup_in_messages_is_text(site, context):
    """A title full of HTML shows as those characters, and no script or dialog runs."""
    page = open_page(context, site)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    title = "<img src=x onerror=alert(1)>"
    site.publish("user:ann", {"title": title, "body": "<script>alert(2)</script><b>bold</b>",
                              "url": "javascript:alert(3)"})
    expect(page.locator("rulecast-widget .toast strong")).to_have_text(title)
    bell(page).click()
    expect(items(page).locator(".title")).to_have_text(title)
    expect(items(page).locator(".body")).to_have_text("<script>alert(2)</script><b>bold</b>")
    assert page.locator("rulecast-widget img, rulecast-widget script, rulecast-widget b").count() == 0
    assert items(page).locator("a").count() == 0  # a javascript: URL is never a link
    items(page).locator(".title").click()
    # A safe message after the hostile one: by the time it shows, any handler would have run.
    site.publish("user:ann", {"title": "after"})
    expect(items(page)).to_have_count(2)
    assert dialogs == []


def test_server_restart_reconnects_and_resumes(site, context):
    """After a server restart the widget reconnects and gets what was published meanwhile."""
    page = open_page(context, site)
    site.publish("user:ann", {"title": "before"})
    expect(items(page)).to_have_count(1)

    site.restart()  # same port, same store
    site.publish("user:ann", {"title": "while away"})  # before the widget's back-off elapsed
    expect(items(page).filter(has_text="while away")).to_have_count(1, timeout=30000)
    expect(widget(page)).to_have_attribute("data-status", "live")
    assert "reconnecting" in page.evaluate("__rc.statuses")
    site.publish("user:ann", {"title": "after restart"})
    expect(items(page).filter(has_text="after restart")).to_have_count(1)
    expect(items(page)).to_have_count(3)
    expect(bell(page)).to_have_attribute("aria-label", "Notifications, 3 unread")


def test_sse_fallback_when_websocket_is_blocked(site, context):
    """When every WebSocket fails before opening, the client falls back to SSE and delivers."""
    page = open_page(context, site, init=BLOCKED_WEBSOCKET, channels="topic:public-news")
    assert page.evaluate("RuleCast.widget.client.transport") == "sse"
    site.publish("user:ann", {"title": "over SSE"})
    site.publish("topic:public-news", {"title": "news over SSE"})
    expect(items(page)).to_have_count(2)
    expect(bell(page)).to_have_attribute("aria-label", "Notifications, 2 unread")
    assert connections(site) == 1


@pytest.mark.parametrize("election", ["web-locks", "broadcast"])
def test_tabs_share_one_connection(site, context, election):
    """Two tabs share one server connection; both show a message; the survivor takes over."""
    if election == "broadcast":  # a browser without Web Locks
        context.add_init_script("delete Navigator.prototype.locks;")
    first = open_page(context, site)
    second = open_page(context, site)
    assert first.evaluate("RuleCast.widget.client.role") == "leader"
    assert second.evaluate("RuleCast.widget.client.role") == "follower"
    wait_for(lambda: connections(site) == 1, what="one connection")

    site.publish("user:ann", {"title": "to both tabs"})
    for page in (first, second):
        expect(items(page).filter(has_text="to both tabs")).to_have_count(1)
    assert connections(site) == 1

    first.close()
    missed = site.publish("user:ann", {"title": "while the leader left"})
    expect(items(second).filter(has_text="while the leader left")).to_have_count(1)
    # (the closing tab may still relay it, in its last milliseconds)
    second.wait_for_function("RuleCast.widget.client.role === 'leader'")
    assert delivered(second).count(missed) == 1
    wait_for(lambda: connections(site) == 1, what="one connection after the takeover")


def test_mark_all_read_persists(site, context):
    """"Mark all read" zeroes the count, and it stays zero after a reload."""
    page = open_page(context, site)
    for n in range(3):
        site.publish("user:ann", {"title": "note %d" % n})
    expect(bell(page)).to_have_attribute("aria-label", "Notifications, 3 unread")
    bell(page).click()
    page.get_by_role("button", name="Mark all read").click()
    expect(bell(page)).to_have_attribute("aria-label", "Notifications")
    expect(page.locator("rulecast-widget .badge")).to_be_hidden()
    expect(page.locator("rulecast-widget li.unread")).to_have_count(0)

    page.reload()
    wait_ready(page)
    expect(items(page)).to_have_count(3)
    expect(bell(page)).to_have_attribute("aria-label", "Notifications")
    expect(page.locator("rulecast-widget li.unread")).to_have_count(0)


def test_keyboard_opens_and_escape_closes(site, context):
    """The bell opens with Enter, focus moves into the list, Escape closes and refocuses."""
    page = open_page(context, site)
    site.publish("user:ann", {"title": "keyboard", "url": "/somewhere"})
    expect(items(page)).to_have_count(1)  # the list fills while closed
    bell(page).focus()
    page.keyboard.press("Enter")
    expect(bell(page)).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("region", name="Notifications")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Mark all read")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("region", name="Notifications")).to_be_hidden()
    expect(bell(page)).to_be_focused()
    expect(bell(page)).to_have_attribute("aria-expanded", "false")


def test_hidden_page_lets_go_and_resumes(site, context):
    """A page hidden longer than data-hidden-timeout closes its socket and resumes on return."""
    page = open_page(context, site, **{"hidden-timeout": "1"})
    set_visibility = """(state) => {
        Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    page.evaluate(set_visibility, "hidden")
    expect(widget(page)).to_have_attribute("data-status", "paused")
    wait_for(lambda: connections(site) == 0, what="the socket closed")
    site.publish("user:ann", {"title": "while hidden"})
    page.evaluate(set_visibility, "visible")
    expect(items(page).filter(has_text="while hidden")).to_have_count(1)
    expect(widget(page)).to_have_attribute("data-status", "live")


def test_client_api_subscribe_and_publish(site, context):
    """RuleCast.connect: subscribe a topic, publish to it, and get the message with its id."""
    page = open_page(context, site)
    got = page.evaluate("""async () => {
        const got = [];
        const client = RuleCast.connect({share: false, onMessage: (f) => got.push(f)});
        await new Promise((resolve) => { const t = setInterval(() => client.status === "live" && (clearInterval(t), resolve()), 20); });
        await client.subscribe("topic:board-1");
        const id = await client.publish("topic:board-1", {stroke: [1, 2]});
        await new Promise((resolve) => { const t = setInterval(() => got.length && (clearInterval(t), resolve()), 20); });
        let refused = null;
        try { await client.publish("topic:public-news", {}); } catch (e) { refused = e.code; }
        client.close();
        return {id, got, refused};
    }""")
    assert [f["id"] for f in got["got"]] == [got["id"]]
    assert got["got"][0]["data"] == {"stroke": [1, 2]}
    assert got["refused"] == "forbidden"


def test_screenshot_of_open_dropdown(site, browser, tmp_path):
    """The open dropdown with a few notifications renders (saved to docs/widget.png on request)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ages = {}
    for title, body, minutes in [
            ("Deadline moved", "The Q3 report is now due on Friday.", 26 * 60),
            ("Carol shared “Budget 2027”", "You can edit this spreadsheet.", 3 * 60),
            ("You were mentioned", "dave: @ann can you check the hiring numbers?", 12),
            ("New comment on Q3 plan", "bob: Looks good to me, one question about the budget.", 2)]:
        ages[site.publish("user:ann", {"title": title, "body": body, "url": "/docs"})] = minutes
    first = min(ages)
    token = site.token("ann")
    requests.post(site.url + "/rulecast/api/notifications/read", json={"upto": first + 1},
                  headers={"Authorization": "Bearer " + token}, timeout=5).raise_for_status()

    def aged(route):  # the messages were published just now: show them as older
        body = route.fetch().json()
        for m in body["messages"]:
            m["time"] = (now - datetime.timedelta(minutes=ages[m["id"]])).isoformat()
        route.fulfill(json=body)

    context = browser.new_context(viewport={"width": 1000, "height": 700}, device_scale_factor=2)
    page = context.new_page()
    page.route("**/rulecast/api/notifications?*", aged)
    page.goto(site.url + "/login?user=ann")
    wait_ready(page)
    bell(page).click()
    expect(items(page)).to_have_count(4)
    expect(items(page).first.locator("time")).to_have_text("2 min ago")
    expect(bell(page)).to_have_attribute("aria-label", "Notifications, 2 unread")
    page.mouse.move(0, 0)
    path = (os.path.join(ROOT, "docs", "widget.png") if os.environ.get("RULECAST_WIDGET_SCREENSHOT")
            else str(tmp_path / "widget.png"))
    page.screenshot(path=path, clip={"x": 440, "y": 0, "width": 560, "height": 520})
    context.close()
    assert os.path.getsize(path) > 1000
