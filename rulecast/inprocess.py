"""The API for an app co-hosted in the server: emit and publish, deferred to success."""
import contextvars
import logging

from rulecast.channels import parse as parse_channel
from rulecast.events import make_event

log = logging.getLogger("rulecast.emit")

__all__ = ["emit", "publish", "publish_many", "deferring"]

# The events a request emitted, sent when its response succeeded; None outside one.
_pending = contextvars.ContextVar("rulecast_pending_events", default=None)


def _server():
    from rulecast.server import current
    return current()


def emit(type, actor=None, object=None, data=None, id=None, time=None):
    """Report an event to the rules. Inside a request of the co-hosted app it goes out
    only after the response was sent with a status below 400, and is dropped otherwise;
    outside a request at once. Raises ValueError naming bad fields."""
    events = [make_event(type, actor, object, data, id, time)]
    pending = _pending.get()
    if pending is not None:
        pending.extend(events)
        return None
    return _server().engine.process(events)


def publish(channel, data):
    """Publish ``data`` (a dict) to ``channel`` at once; returns the message id."""
    return _server().bus.publish_many([_checked(channel, data)])[0].id


def publish_many(items):
    """Publish ``(channel, data)`` pairs (or ``{"channel", "data"}`` dicts) at once, in
    one transaction: all of them or, when one is bad, none (ValueError or TypeError
    naming its index). Returns their ids in order."""
    pairs = []
    for i, item in enumerate(items):
        channel, data = (item["channel"], item["data"]) if isinstance(item, dict) else item
        try:
            pairs.append(_checked(channel, data))
        except (TypeError, ValueError) as exc:
            raise type(exc)("item %d: %s" % (i, exc)) from None
    return [m.id for m in _server().bus.publish_many(pairs)]


def _checked(channel, data):
    parse_channel(channel)
    if not isinstance(data, dict):
        raise TypeError("data must be a dict, got %s" % type(data).__name__)
    return channel, data


class _Response:
    """The app's response body; sends the request's events once it was written."""

    def __init__(self, body, status, pending, engine):
        self.body, self.status, self.pending, self.engine = body, status, pending, engine

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            if self.pending and self.status and int(self.status[0].split()[0]) < 400:
                try:
                    self.engine().process(self.pending)
                except Exception:
                    log.exception("events emitted during the request were not sent")


def deferring(app, engine):
    """Wrap the co-hosted WSGI ``app`` so emit() inside a request waits for its success."""
    def wrapped(environ, start_response):
        pending, status = [], []

        def recording_start_response(s, headers, exc_info=None):
            status[:] = [s]
            return start_response(s, headers, exc_info)

        token = _pending.set(pending)
        try:
            body = app(environ, recording_start_response)
        except BaseException:
            pending.clear()  # the request failed: its events never happened
            raise
        finally:
            _pending.reset(token)
        return _Response(body, status, pending, engine)
    return wrapped
