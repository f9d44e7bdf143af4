"""Channel names, identities and the subscription and publish policy."""
import types

import pytest

from rulecast.channels import ChannelError, Identity, Policy, parse


class Hook:
    def __init__(self, answer=None):
        self.answer = answer

    def rulecast_authorize(self, identity, channel):
        return self.answer


def policy(answer=None, **config):
    cfg = types.SimpleNamespace(public_topics=config.get("public_topics", []),
                                client_publish=config.get("client_publish", []))
    return Policy(cfg, Hook(answer))


def test_parse_kinds():
    """The four kinds parse into kind and name."""
    assert parse("topic:a:b") == ("topic", "a:b")
    assert parse("user:42") == ("user", "42")


@pytest.mark.parametrize("bad, words", [
    ("room:1", "unknown channel kind 'room'"), ("topic", "KIND:NAME"), ("topic:", "KIND:NAME"),
    ("topic:a b", "no spaces"), (7, "must be a string")])
def test_parse_rejects_with_reason(bad, words):
    """Bad channels are refused with a message naming the problem."""
    with pytest.raises(ChannelError, match=words):
        parse(bad)


def test_identity_channels():
    """A user hears its user, group and role channels; anonymous hears none."""
    assert Identity("u", ["g"], ["r"]).channels == ["user:u", "group:g", "role:r"]
    assert Identity().channels == []


def test_public_topics_for_anyone():
    """public_topics patterns open topics to anonymous identities, nothing else."""
    p = policy(public_topics=["topic:news-*"])
    assert p.may_subscribe(Identity(), "topic:news-1")
    assert not p.may_subscribe(Identity(), "topic:other")
    assert not p.may_subscribe(Identity(), "user:someone")


def test_hook_may_authorize():
    """rulecast_authorize can open channels beyond the defaults."""
    assert policy(answer=True).may_subscribe(Identity("u"), "group:admins")
    assert not policy(answer=None).may_subscribe(Identity("u"), "group:admins")


def test_client_publish_patterns():
    """Clients publish only to channels matching client_publish."""
    p = policy(client_publish=["topic:board-*"])
    assert p.may_publish(Identity(), "topic:board-7")
    assert not p.may_publish(Identity("u"), "user:u")
