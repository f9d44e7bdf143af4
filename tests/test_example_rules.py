"""The example rules in rules/ deliver the right messages to the right users, live."""
import os

import pytest
import requests

RULES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rules")

DOC = {"id": "q3", "type": "Document", "path": "/intranet/plans/q3", "title": "Q3 plan",
       "owner": "ann", "url": "http://intranet/plans/q3"}


@pytest.fixture
def site(make_server):
    s = make_server(rules=[RULES])
    people = {
        "ann": s.connect(token=s.token("ann")),
        "rev": s.connect(token=s.token("rev", groups=["reviewers"], roles=["Reviewer"])),
        "bob": s.connect(token=s.token("bob")),
        "anon": s.connect(),
    }
    people["anon"].send({"type": "subscribe", "channel": "topic:public-news"})
    for c in people.values():
        c.recv_type("welcome")
    people["anon"].recv_type("subscribed")
    return s, people


def event(s, body):
    r = requests.post(s.url + "/rulecast/api/events", json=body,
                      headers={"Authorization": "Bearer " + s.api_key})
    assert r.status_code == 202, r.text
    return r.json()


def quiet(c):
    """Nothing else is waiting for this client: a ping is answered first."""
    c.send({"type": "ping"})
    return c.recv()["type"] == "pong"


def test_comment_reaches_owner_and_reviewers(site):
    """bob comments on ann's document: ann and the Reviewer role hear it, bob does not."""
    s, people = site
    result = event(s, {"type": "comment.added", "actor": {"id": "bob", "name": "Bob"},
                       "object": DOC, "data": {"text": "Looks good"}})
    assert result["matched"] == ["comment-to-owner", "comment-to-reviewers"]
    to_ann = people["ann"].recv_type("message")
    assert to_ann["channel"] == "user:ann"
    assert to_ann["data"]["title"] == "Bob commented on Q3 plan"
    assert to_ann["data"]["url"] == "http://intranet/plans/q3"
    to_rev = people["rev"].recv_type("message")
    assert to_rev["channel"] == "role:Reviewer" and to_rev["data"]["body"] == "Bob: Looks good"
    assert quiet(people["bob"]) and quiet(people["anon"])


def test_owner_commenting_own_document_not_notified(site):
    """An owner's own comment does not notify the owner."""
    s, people = site
    result = event(s, {"type": "comment.added", "actor": {"id": "ann", "name": "Ann"},
                       "object": DOC, "data": {"text": "note to self"}})
    assert "comment-to-owner" not in result["matched"]
    assert quiet(people["ann"])


def test_pending_goes_to_reviewers_group(site):
    """A transition to pending notifies group:reviewers only."""
    s, people = site
    event(s, {"type": "workflow.transition", "actor": {"id": "ann", "name": "Ann"},
              "object": DOC, "data": {"from": "private", "to": "pending"}})
    message = people["rev"].recv_type("message")
    assert message["channel"] == "group:reviewers"
    assert message["data"]["title"] == "Q3 plan awaits review"
    assert message["data"]["state"] == "pending"
    assert quiet(people["ann"]) and quiet(people["bob"])


def test_published_news_reaches_public_topic(site):
    """A published news item reaches anonymous subscribers of topic:public-news."""
    s, people = site
    event(s, {"type": "workflow.transition", "actor": {"id": "ann"},
              "object": dict(DOC, type="News Item", title="Canteen opens"),
              "data": {"to": "published"}})
    message = people["anon"].recv_type("message")
    assert message["channel"] == "topic:public-news"
    assert message["data"]["title"] == "Canteen opens"


def test_injection_in_event_data_arrives_literally(site):
    """Template syntax inside event data is shown as text, never evaluated."""
    s, people = site
    event(s, {"type": "comment.added", "actor": {"id": "bob", "name": "{{ 7*7 }}"},
              "object": DOC, "data": {"text": "{% for x in range(3) %}x{% endfor %}"}})
    data = people["ann"].recv_type("message")["data"]
    assert data["title"] == "{{ 7*7 }} commented on Q3 plan"
    assert data["body"] == "{% for x in range(3) %}x{% endfor %}"
