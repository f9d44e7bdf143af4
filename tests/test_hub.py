"""The hub fans a message out to its channel's connections, sharing one encoding."""
from rulecast.hub import Hub
from rulecast.message import Message
from rulecast.metrics import Metrics


class Recorder:
    """A connection that records what it is handed."""

    def __init__(self):
        self.channels = set()
        self.got = []

    def push(self, message):
        self.got.append(message.ws)


def test_delivers_only_to_channel_subscribers():
    """A message reaches the subscribers of its channel and nobody else."""
    hub = Hub(Metrics())
    a, b = Recorder(), Recorder()
    for conn, channel in ((a, "topic:x"), (b, "topic:y")):
        hub.add(conn)
        hub.subscribe(conn, channel)
    hub.deliver(Message(1, "topic:x", "t", {}))
    assert len(a.got) == 1 and b.got == []


def test_same_bytes_for_every_subscriber():
    """Fan-out hands every connection the very same bytes object."""
    hub = Hub(Metrics())
    conns = [Recorder() for _ in range(50)]
    for conn in conns:
        hub.add(conn)
        hub.subscribe(conn, "topic:x")
    hub.deliver(Message(1, "topic:x", "t", {"big": "x" * 1000}))
    first = conns[0].got[0]
    assert all(c.got[0] is first for c in conns)


def test_remove_forgets_all_subscriptions():
    """A removed connection leaves every channel, and empty channels are dropped."""
    hub = Hub(Metrics())
    a = Recorder()
    hub.add(a)
    hub.subscribe(a, "topic:x")
    hub.subscribe(a, "user:u")
    hub.remove(a)
    assert hub.subscribers == {} and a not in hub.connections
    hub.remove(a)  # idempotent

