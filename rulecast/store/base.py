"""The store interface: message history with ordered ids, and inbox read marks."""


class Store:
    """What every store backend provides.

    Ids are assigned by the store (or by the bus's one sequencer through it): strictly
    increasing, never reused, even after history is pruned or the server restarts.
    Every query answers in id order.
    """

    def append(self, channel, data, time=None):
        """Store one message; return it as a :class:`rulecast.message.Message` with its id."""
        return self.append_many([(channel, data, time)])[0]

    def append_many(self, items):
        """Store ``(channel, data, time)`` tuples in one transaction; return their
        messages in id order. ``time`` None means now."""
        raise NotImplementedError

    def append_requests(self, requests):
        """Store several publishers' ``(token, items)`` in as few transactions as the
        backend can; return, per request, its messages, or None when :meth:`resolve` had
        given its token up (then none of its items was stored). A token is used once."""
        raise NotImplementedError

    def resolve(self, token, items):
        """What became of the publish of ``items`` under ``token`` whose answer was
        lost: its messages when it was stored, else None, and from then on it never
        will be (a late :meth:`append_requests` of it is refused). Tokens are kept for
        a minute at least."""
        raise NotImplementedError

    def last_id(self):
        """The largest id ever assigned (0 when none)."""
        raise NotImplementedError

    def since(self, after_id, channels, limit=None):
        """Stored messages with id > ``after_id`` on any of ``channels``, oldest first,
        at most ``limit`` of them (None: all)."""
        raise NotImplementedError

    def between(self, after_id, upto_id):
        """Stored messages with ``after_id`` < id <= ``upto_id`` on every channel: what a
        bus fills a gap with."""
        raise NotImplementedError

    def latest(self, channels, limit):
        """The newest ``limit`` messages on ``channels``, oldest first (an inbox page)."""
        raise NotImplementedError

    def last_read(self, user):
        """The id up to which ``user`` has read their inbox (0 when never)."""
        raise NotImplementedError

    def mark_read(self, user, upto):
        """Record that ``user`` read up to ``upto``; never moves the mark backwards.
        Returns the mark now in force."""
        raise NotImplementedError

    def count_since(self, after_id, channels):
        """How many stored messages on ``channels`` have id > ``after_id`` (unread)."""
        raise NotImplementedError

    def prune(self):
        """Apply the history limits (per-channel count, age); return how many went."""
        raise NotImplementedError

    def close(self):
        """Release connections and files."""
