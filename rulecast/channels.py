"""Channels and identities: who a connection is, and what it may hear and say."""
import fnmatch
import re

__all__ = ["KINDS", "Identity", "ANONYMOUS", "ChannelError", "parse", "Policy"]

KINDS = ("user", "group", "role", "topic")
# Matches what str.isspace() calls space, both being Py_UNICODE_ISSPACE, at C speed.
_space = re.compile(r"\s").search


class ChannelError(ValueError):
    """A channel name that is not ``kind:name`` with a known kind."""


def parse(channel):
    """Split ``channel`` into ``(kind, name)``; raise ChannelError naming the problem."""
    if not isinstance(channel, str):
        raise ChannelError("channel must be a string like 'topic:news', got %r" % (channel,))
    kind, sep, name = channel.partition(":")
    if not sep or not name:
        raise ChannelError("channel %r must look like KIND:NAME, e.g. 'topic:news'" % channel)
    if kind not in KINDS:
        raise ChannelError("unknown channel kind %r in %r; known: %s"
                           % (kind, channel, ", ".join(KINDS)))
    if len(channel) > 200 or _space(channel):
        raise ChannelError("channel %r must be at most 200 characters with no spaces" % channel)
    return kind, name


class Identity:
    """Who a connection is: a user id (None when anonymous), groups and roles."""

    __slots__ = ("user", "groups", "roles", "token")

    def __init__(self, user=None, groups=(), roles=(), token=None):
        self.user = user
        self.groups = tuple(groups)
        self.roles = tuple(roles)
        #: The token it was proven with, if any (never logged).
        self.token = token

    @property
    def channels(self):
        """The channels a connection is subscribed to on connect."""
        if self.user is None:
            return []
        return (["user:" + self.user] + ["group:" + g for g in self.groups]
                + ["role:" + r for r in self.roles])

    def __repr__(self):
        return "<Identity %s groups=%s roles=%s>" % (self.user, self.groups, self.roles)


ANONYMOUS = Identity()


class Policy:
    """Decides subscriptions and client publishes from the config and the plugins."""

    def __init__(self, config, hook):
        self.public_topics = tuple(config.public_topics)
        self.client_publish = tuple(config.client_publish)
        self.hook = hook

    def may_subscribe(self, identity, channel):
        """Own user/group/role channels, public topics, or what a plugin allows."""
        kind, _ = parse(channel)
        if channel in identity.channels:
            return True
        if kind == "topic" and any(fnmatch.fnmatchcase(channel, p) for p in self.public_topics):
            return True
        return bool(self.hook.rulecast_authorize(identity=identity, channel=channel))

    def may_publish(self, identity, channel):
        """Only channels matching the config's ``client_publish`` patterns."""
        parse(channel)
        return any(fnmatch.fnmatchcase(channel, p) for p in self.client_publish)
