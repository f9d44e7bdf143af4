"""The hub: a worker's registry of connections by channel, and the fan-out."""
import logging

import gevent

__all__ = ["Hub"]

log = logging.getLogger("rulecast.hub")


class Hub:
    """Delivers each message it is handed to the connections on its channel.

    The message's bytes are made once (:class:`rulecast.message.Message` caches
    them); delivering is appending those bytes to each connection's queue. The
    queues are flushed once the delivering greenlet yields: what was delivered
    meanwhile (a batch from the bus, publishes that came in together) leaves in
    one send() per connection, and a send() is most of what a delivery costs.
    """

    def __init__(self, metrics):
        self.metrics = metrics
        self.subscribers = {}  # channel -> set of connections
        self.connections = set()
        #: Bumped whenever a subscription changes, so presence is written only then.
        self.version = 0
        self._due = []  # connections to flush
        # Counted when scraped: a set() per connect and close cost a lock each time.
        metrics.connections.set_function(lambda: len(self.connections))

    def add(self, connection):
        self.connections.add(connection)

    def subscribe(self, connection, channel):
        connection.channels.add(channel)
        self.subscribers.setdefault(channel, set()).add(connection)
        self.version += 1

    def unsubscribe(self, connection, channel):
        connection.channels.discard(channel)
        self.version += 1
        subs = self.subscribers.get(channel)
        if subs is not None:
            subs.discard(connection)
            if not subs:
                del self.subscribers[channel]

    def remove(self, connection):
        """Forget ``connection`` and all its subscriptions (idempotent)."""
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        for channel in tuple(connection.channels):
            self.unsubscribe(connection, channel)

    def users(self, channel):
        """The users (not anonymous connections) subscribed to ``channel`` here."""
        return {c.identity.user for c in self.subscribers.get(channel, ())
                if c.identity.user is not None}

    def presence(self):
        """Every channel with identified subscribers, and who they are."""
        found = {}
        for channel, connections in self.subscribers.items():
            users = sorted({c.identity.user for c in connections if c.identity.user is not None})
            if users:
                found[channel] = users
        return found

    def deliver(self, message):
        """Queue ``message`` on every connection subscribed to its channel."""
        subs = self.subscribers.get(message.channel)
        if not subs:
            return
        # A copy: a slow consumer closed during the loop leaves the set.
        connections = tuple(subs)
        for connection in connections:
            connection.push(message)
        self.metrics.delivered.inc(len(connections))

    def flush_later(self, connection):
        """Have ``connection`` flushed once the current greenlet yields."""
        if not self._due:
            gevent.get_hub().loop.run_callback(self._flush)
        self._due.append(connection)

    def _flush(self):
        due, self._due = self._due, []
        for connection in due:
            try:
                connection.flush()
            except Exception:  # one connection's failure must not strand the others
                log.exception("flushing a connection failed")

    def slow_consumer(self, connection):
        self.metrics.slow_closes.inc()

    def close_all(self, code=1001, reason="server going away"):
        for connection in tuple(self.connections):
            connection.close(code, reason)
