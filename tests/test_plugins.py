"""Add-ons named in `plugins:` hook into identity, authorization and the Flask app."""

import pytest
import requests

from rulecast.plugins import PluginError, manager


def test_identify_hook_gives_identity_from_app_session(make_server):
    """rulecast_identify can derive the identity from the co-hosted app's cookie."""
    s = make_server(plugins=["tests.plugin_example"])
    c = s.connect(cookie="app_session=pat")
    welcome = c.recv()
    assert welcome["user"] == "pat" and "group:from-app" in welcome["channels"]


def test_authorize_hook_opens_a_channel(make_server):
    """rulecast_authorize allows a topic that is not public."""
    s = make_server(plugins=["tests.plugin_example"])
    member = s.connect(cookie="app_session=pat")
    member.recv_type("welcome")
    member.send({"type": "subscribe", "channel": "topic:members"})
    assert member.recv()["type"] == "subscribed"
    stranger = s.connect(token=s.token("sam"))
    stranger.recv_type("welcome")
    stranger.send({"type": "subscribe", "channel": "topic:members"})
    assert stranger.recv()["code"] == "forbidden"


def test_configure_hook_adds_routes(make_server):
    """rulecast_configure receives the Flask app and can add routes."""
    s = make_server(plugins=["tests.plugin_example"])
    assert requests.get(s.url + "/rulecast/hello").json() == {"hello": "from a plugin"}


def test_missing_plugin_module_named_clearly():
    """A plugin that cannot be imported is reported with its name and the fix."""
    with pytest.raises(PluginError, match="cannot import 'no_such_addon'.*installed"):
        manager(["no_such_addon"])


def test_inbox_uses_identify_hook(make_server):
    """The inbox finds the user as the sockets do: through rulecast_identify."""
    s = make_server(plugins=["tests.plugin_example"])
    mid = s.publish("user:pat", {"title": "for pat"})
    r = requests.get(s.url + "/rulecast/api/notifications", cookies={"app_session": "pat"})
    assert r.status_code == 200
    assert r.json()["user"] == "pat" and [m["id"] for m in r.json()["messages"]] == [mid]
