"""Server-sent events at `/rulecast/sse`: the same messages as the WebSocket, one way."""
from urllib.parse import parse_qs

import logging

from rulecast.channels import ANONYMOUS, ChannelError, parse as parse_channel
from rulecast.connection import StreamConnection
from rulecast.identity import identify
from rulecast.logs import fields
from rulecast.tokens import InvalidToken

log = logging.getLogger("rulecast.sse")

__all__ = ["stream"]

HEADERS = [("Content-Type", "text/event-stream; charset=utf-8"),
           ("Cache-Control", "no-cache"),
           ("X-Accel-Buffering", "no")]  # nginx must not buffer a live stream


class Refused(Exception):
    """The stream cannot start: an HTTP status and field errors."""

    def __init__(self, status, errors):
        super().__init__(status, errors)
        self.status = status
        self.errors = errors


def _since(environ, query):
    # EventSource sends Last-Event-ID on its own reconnects: newer than the URL's since.
    for field, value in (("Last-Event-ID", environ.get("HTTP_LAST_EVENT_ID")),
                         ("since", query.get("since", [None])[0])):
        if value not in (None, ""):
            if not value.isdigit():
                raise Refused(400, {field: ["must be a message id (an integer >= 0)"]})
            return int(value)
    return None


def stream(server, environ):
    """Open a stream: returns the response body iterator, or raises Refused."""
    try:
        identity = identify(environ, server.config.secret, server.hook) or ANONYMOUS
    except InvalidToken as exc:
        raise Refused(401, {"token": [str(exc)]}) from None
    query = parse_qs(environ.get("QUERY_STRING", ""))
    since = _since(environ, query)
    channels = list(identity.channels)
    for channel in query.get("channel", []):
        try:
            parse_channel(channel)
        except ChannelError as exc:
            raise Refused(400, {"channel": [str(exc)]}) from None
        if not server.policy.may_subscribe(identity, channel):
            raise Refused(403, {"channel": ["not allowed to subscribe to %r" % channel]})
        channels.append(channel)
    if len(server.hub.connections) >= server.config.limits.max_connections:
        raise Refused(503, {"_": ["server overloaded: too many connections"]})
    conn = StreamConnection(server.hub, identity, server.config.limits.send_queue, environ)
    server.hub.add(conn)
    last_id = server.bus.last_id
    for channel in channels:
        server.hub.subscribe(conn, channel)
        conn.live_after(channel, last_id)
    conn.send({"type": "welcome", "user": identity.user, "channels": sorted(conn.channels),
               "last_id": last_id})
    log.info("connection open", extra=fields(transport="sse", user=identity.user,
                                             channels=len(conn.channels)))
    if since is not None:
        conn.resume(server.store, since)
    return conn.stream()
