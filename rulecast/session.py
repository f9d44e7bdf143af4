"""A WebSocket session: the wire protocol's client frames and their answers."""
import json
import logging
import time
from urllib.parse import parse_qs

import gevent
from marshmallow import ValidationError

from rulecast import calls
from rulecast.bus import BusUnavailable
from rulecast.channels import ANONYMOUS, ChannelError, parse as parse_channel
from rulecast.connection import WebSocketConnection
from rulecast.events import load_events
from rulecast.identity import api_key_of, from_token, identify
from rulecast.logs import fields
from rulecast.message import dumps
from rulecast.tokens import InvalidToken
from rulecast.websocket import Close

log = logging.getLogger("rulecast.session")


class FrameError(Exception):
    """A frame answered with an error frame; the connection stays open."""

    def __init__(self, code, message, frame=None, errors=None):
        super().__init__(message)
        self.code = code
        #: The frame answered, when it was read as one: its ``ref`` is echoed.
        self.frame = frame
        #: Field errors as the HTTP API gives them, ``{field: [messages]}``.
        self.errors = errors


def _since(value, where):
    if value is None or value == "":
        return None
    try:
        since = int(value)
    except (TypeError, ValueError):
        since = -1
    if since < 0 or isinstance(value, bool):
        raise FrameError("bad_request", "%s must be a message id (an integer >= 0), got %r"
                         % (where, value))
    return since


def _problems(errors, where=""):
    """``field.sub: message`` for each message of marshmallow's nested ``errors``."""
    for field, problems in errors.items():
        name = "%s.%s" % (where, field) if where else str(field)
        if isinstance(problems, dict):
            yield from _problems(problems, name)
        else:
            for problem in problems if isinstance(problems, list) else [problems]:
                yield "%s: %s" % (name, problem)


class Session:
    """Reads a client's frames and answers them, on the handler's greenlet."""

    #: Seconds to wait for a first ``auth`` frame when the handshake carried no token.
    auth_timeout = 1.0
    #: Most ``call`` frames one client may have running at once.
    max_calls = 4

    def __init__(self, server, environ):
        self.server = server
        self.environ = environ
        self.ws = environ["wsgi.websocket"]
        self.conn = WebSocketConnection(server.hub, ANONYMOUS, server.config.limits.send_queue,
                                        environ["rulecast.socket"])
        self.ws.send = self.conn.send_bytes
        self.rate = server.config.limits.client_rate
        self.allowance = self.rate
        self.checked = time.monotonic()
        self.calls = 0
        self.welcomed = False
        #: Whether the handshake presented an API key: publish anywhere, emit events.
        self.service = False

    def run(self):
        started = time.monotonic()
        try:
            self._serve()
        except Close as close:
            self._fail(close.code, close.reason)
        except Exception:
            log.exception("session failed")
            self._fail(1011, "internal error")
        finally:
            self.conn.close(1000)
            self.conn.join(self.conn.close_timeout)
            log.info("connection closed", extra=fields(
                transport="websocket", user=self.conn.identity.user, code=self.conn.close_code,
                seconds=round(time.monotonic() - started, 3)))

    def _fail(self, code, reason):
        self.server.metrics.client_errors.labels(str(code)).inc()
        self.conn.close(code, reason)

    def _serve(self):
        server, environ = self.server, self.environ
        if api_key_of(environ, server.config.api_keys) is not None:
            # Trusted to publish, and not limited per frame: what the server holds for
            # it stays bounded by the pipeline's and the send queue's limits.
            self.service, self.rate = True, 0
            environ = {k: v for k, v in environ.items() if k != "HTTP_AUTHORIZATION"}
        try:
            identity = identify(environ, server.config.secret, server.hook)
        except InvalidToken as exc:
            raise Close(1008, str(exc)) from None
        if len(server.hub.connections) >= server.config.limits.max_connections:
            raise Close(1013, "server overloaded: too many connections")
        server.hub.add(self.conn)
        first = None
        if identity is not None or self.service:
            # A service says who it is at the handshake: no wait for an auth frame.
            self._welcome(identity or ANONYMOUS)
        else:
            first = self._first_frame()
            if first is None:
                return
            if not self.welcomed:
                identity = self._auth_frame(first)
                self._welcome(identity or ANONYMOUS)
                if identity is not None:
                    first = None
        query = parse_qs(self.environ.get("QUERY_STRING", ""))
        for channel in query.get("channel", ()):
            # Subscribed before the resume: one replay covers them all, in id order.
            self._answer_frame({"type": "subscribe", "channel": channel})
        since = query.get("since")
        if since:
            self._answer_frame({"type": "resume", "since": since[0]})
        if self.service:
            # Imported here: rulecast.service builds on this module.
            from rulecast.service import Pipeline
            limits = server.config.limits
            return Pipeline(self, 16 * limits.max_message_bytes,
                            max(1, limits.send_queue // 2)).run()
        text = first if first is not None else self.ws.receive()
        while text is not None and not self.conn.closed:
            self._handle(text)
            text = self.ws.receive()

    def _first_frame(self):
        """No token at the handshake: a first auth frame may bring one. Anonymous
        clients that stay silent get their welcome after auth_timeout."""
        # A bare timer, not spawn_later: a greenlet per connection cost a twentieth
        # of a handshake. The welcome it runs never blocks.
        timer = gevent.get_hub().loop.timer(self.auth_timeout)
        timer.start(self._welcome, ANONYMOUS)
        try:
            return self.ws.receive()
        finally:
            timer.close()

    def _auth_frame(self, text):
        """The identity an auth frame proves, None if ``text`` is not an auth frame."""
        try:
            frame = json.loads(text)
        except ValueError:
            return None
        if not isinstance(frame, dict) or frame.get("type") != "auth":
            return None
        return self._verify(frame.get("token"))

    def _verify(self, token):
        if not isinstance(token, str) or not token:
            raise Close(1008, "auth needs a token string")
        try:
            return from_token(token, self.server.config.secret)
        except InvalidToken as exc:
            raise Close(1008, str(exc)) from None

    def _welcome(self, identity):
        hub, conn = self.server.hub, self.conn
        for channel in tuple(conn.channels):
            if channel.split(":", 1)[0] != "topic":
                hub.unsubscribe(conn, channel)
        conn.identity = identity
        last_id = self.server.bus.last_id
        for channel in identity.channels:
            hub.subscribe(conn, channel)
            conn.live_after(channel, last_id)
        self.welcomed = True
        log.info("connection open", extra=fields(
            transport="websocket", user=identity.user, channels=len(conn.channels)))
        conn.send({"type": "welcome", "user": identity.user,
                   "channels": sorted(conn.channels), "last_id": last_id})

    # -- frames ------------------------------------------------------------------------

    def _handle(self, text):
        """Answer one client frame; a bad one gets an error frame, never a close."""
        try:
            frame = self._parse(text)
        except FrameError as exc:
            return self._error(exc)
        self._answer_frame(frame)

    def _parse(self, text):
        if not self._allowed():
            raise FrameError("rate_limited", "more than %g frames per second; slow down"
                             % self.rate)
        try:
            frame = json.loads(text)
        except ValueError as exc:
            raise FrameError("bad_request", "frame is not valid JSON: %s" % exc) from None
        if not isinstance(frame, dict):
            raise FrameError("bad_request", "frame must be a JSON object with a 'type'")
        if frame.get("type") not in self.HANDLERS:
            raise FrameError("bad_request", "unknown frame type %r; known: %s"
                             % (frame.get("type"), ", ".join(sorted(self.HANDLERS))), frame)
        return frame

    def _answer_frame(self, frame):
        try:
            self.HANDLERS[frame["type"]](self, frame)
        except FrameError as exc:
            exc.frame = frame
            self._error(exc)

    def _reply(self, frame, reply):
        """Send ``reply`` to ``frame``, echoing the frame's ``ref`` if it has one, so a
        client can match the replies to frames it sent without waiting."""
        if frame is not None and "ref" in frame:
            reply["ref"] = frame["ref"]
        self.conn.send(reply)

    def _error(self, exc):
        self.server.metrics.client_errors.labels(exc.code).inc()
        reply = {"type": "error", "code": exc.code, "message": str(exc)}
        if exc.errors:
            reply["errors"] = exc.errors
        self._reply(exc.frame, reply)

    def _allowed(self):
        if not self.rate:
            return True
        now = time.monotonic()
        self.allowance = min(self.rate, self.allowance + (now - self.checked) * self.rate)
        self.checked = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    def _channel(self, frame):
        channel = frame.get("channel")
        try:
            parse_channel(channel)
        except ChannelError as exc:
            raise FrameError("bad_request", str(exc), frame) from None
        return channel

    def on_subscribe(self, frame):
        channel = self._channel(frame)
        if not self.server.policy.may_subscribe(self.conn.identity, channel):
            raise FrameError("forbidden", "not allowed to subscribe to %r" % channel)
        since = _since(frame.get("since"), "since")
        if since is None:
            since = self.conn.cursor
        if channel not in self.conn.channels:
            self.server.hub.subscribe(self.conn, channel)
            self.conn.live_after(channel, self.server.bus.last_id)
        self.conn.send({"type": "subscribed", "channel": channel})
        if since is not None:
            self.conn.resume(self.server.store, since, [channel])

    def on_unsubscribe(self, frame):
        channel = self._channel(frame)
        self.server.hub.unsubscribe(self.conn, channel)
        self.conn.send({"type": "unsubscribed", "channel": channel})

    def on_resume(self, frame):
        since = _since(frame.get("since"), "since")
        if since is None:
            raise FrameError("bad_request", "resume needs 'since', the last message id seen")
        conn = self.conn
        conn.cursor = since if conn.cursor is None else min(conn.cursor, since)
        conn.resume(self.server.store, since)

    def on_presence(self, frame):
        channel = self._channel(frame)
        if not self.server.policy.may_subscribe(self.conn.identity, channel):
            raise FrameError("forbidden", "not allowed to see who is on %r" % channel)
        self.conn.send({"type": "presence", "channel": channel,
                        "users": sorted(self.server.users(channel))})

    def on_ping(self, frame):
        self.conn.send({"type": "pong"})

    def on_auth(self, frame):
        self._welcome(self._verify(frame.get("token")))

    def _publishable(self, frame):
        """The ``(channel, data)`` a publish frame asks for; FrameError if refused."""
        channel = self._channel(frame)
        data = frame.get("data")
        if not isinstance(data, dict):
            raise FrameError("bad_request", "publish needs 'data', a JSON object", frame)
        if not self.service and not self.server.policy.may_publish(self.conn.identity, channel):
            raise FrameError("forbidden", "clients may not publish to %r; allowed: %s" % (
                channel, ", ".join(self.server.config.client_publish) or "none (client_publish)"),
                frame)
        if len(dumps(data)) > self.server.config.limits.max_message_bytes:
            raise FrameError("too_large", "data is larger than %d bytes"
                             % self.server.config.limits.max_message_bytes, frame)
        return channel, data

    def on_publish(self, frame):
        channel, data = self._publishable(frame)
        try:
            message = self.server.bus.publish(channel, data)
        except BusUnavailable as exc:
            raise FrameError("unavailable", "not published: %s; try again" % exc) from None
        self._reply(frame, {"type": "published", "id": message.id})

    def on_emit(self, frame):
        if not self.service:
            raise FrameError("forbidden", "emit is for services: connect with an API key "
                                          "as 'Authorization: Bearer KEY'")
        try:
            events = load_events(frame.get("event"))
        except ValidationError as exc:
            errors = {"event": exc.messages}
            raise FrameError("bad_request", "emit: %s" % "; ".join(_problems(errors)),
                             errors=errors) from None
        try:
            matched, ids = self.server.engine.process(events)
        except BusUnavailable as exc:
            raise FrameError("unavailable", "not emitted: %s; try again" % exc) from None
        self._reply(frame, {"type": "emitted", "matched": matched, "messages": ids})

    def on_call(self, frame):
        request = calls.parse(frame)
        if isinstance(request, str):
            raise FrameError("bad_request", request)
        if self.calls >= self.max_calls:
            raise FrameError("rate_limited", "more than %d calls running; wait for results"
                             % self.max_calls)
        self.calls += 1
        gevent.spawn(self._call, request)

    def _call(self, request):
        try:
            result = calls.run(self.server.wsgi, self.environ_base, request)
        finally:
            self.calls -= 1
        self.conn.send(result)

    @property
    def environ_base(self):
        return {k: v for k, v in self.environ.items() if k in calls.INHERITED}

    HANDLERS = {"subscribe": on_subscribe, "unsubscribe": on_unsubscribe, "resume": on_resume,
                "ping": on_ping, "auth": on_auth, "publish": on_publish, "call": on_call,
                "presence": on_presence, "emit": on_emit}
