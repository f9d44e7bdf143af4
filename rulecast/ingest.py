"""The publish and events endpoints as plain WSGI: what every message pays, without Flask."""
import json
import logging
import time

from gevent.pywsgi import format_date_time
from marshmallow import ValidationError

from rulecast.api import PUBLISH, PUBLISH_MANY, ApiError, require_api_key
from rulecast.bus import BusUnavailable
from rulecast.channels import ChannelError, parse as parse_channel
from rulecast.events import load_events
from rulecast.message import dumps

__all__ = ["Ingest", "MAX_BATCH"]

log = logging.getLogger("rulecast.api")

#: The most messages one publish request may carry.
MAX_BATCH = 1000


def _answer(start_response, status, body):
    data = dumps(body)
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data))), ("Date", _date())])
    return [data]


_date_second = _date_text = None


def _date():
    """The Date header, made once a second rather than by the server for each answer."""
    global _date_second, _date_text
    now = int(time.time())
    if now != _date_second:
        _date_second, _date_text = now, format_date_time(now).decode("latin-1")
    return _date_text


def _valid_message(item):
    """True when ``item`` is exactly ``{"channel": C, "data": {…}}`` with a valid C:
    what PUBLISH accepts, checked without building marshmallow's error machinery."""
    if type(item) is not dict or len(item) != 2:
        return False
    channel, data = item.get("channel"), item.get("data")
    if type(data) is not dict or type(channel) is not str:
        return False
    try:
        parse_channel(channel)
    except ChannelError:
        return False
    return True


class Ingest:
    """``POST {prefix}/api/publish`` and ``POST {prefix}/api/events``.

    Flask's request context, sessions, signals and per-request objects cost more than
    the message itself; these two endpoints answer the same bodies with the same
    statuses and ``{"errors": …}`` as the rest of the API, from the WSGI environ. A
    well-formed body is checked by a few type tests; anything else goes through the
    marshmallow schemas, which word the errors.
    """

    def __init__(self, server):
        self.server = server
        prefix = server.config.prefix
        self.routes = {prefix + "/api/publish": self.publish,
                       prefix + "/api/events": self.events}
        limit = server.config.limits.max_message_bytes
        #: A body this small holds no message over the size limit: no need to measure.
        self.small_body = limit + 1024
        #: The largest body read: room for a batch of events or messages.
        self.max_body = 16 * limit
        self.max_message = limit

    def __call__(self, handler, environ, start_response):
        """Answer ``environ``, a request for ``handler`` (one of :attr:`routes`)."""
        if environ["REQUEST_METHOD"] != "POST":
            start_response("405 METHOD NOT ALLOWED", [("Allow", "POST"),
                                                      ("Content-Type", "application/json")])
            return [b'{"errors":{"_":["this endpoint takes POST"]}}']
        try:
            require_api_key(environ, self.server.config.api_keys)
            return handler(self._body(environ), start_response)
        except ApiError as exc:
            return _answer(start_response, "%d %s" % (exc.status, _REASONS[exc.status]),
                           {"errors": exc.errors})
        except Exception:
            log.exception("%s %s failed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return _answer(start_response, "500 INTERNAL SERVER ERROR",
                           {"errors": {"_": ["internal error"]}})

    def _body(self, environ):
        """The request's JSON body, at most :attr:`max_body` bytes."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise ApiError(400, {"_": ["Content-Length must be a number of bytes"]}) from None
        if length > self.max_body:
            raise ApiError(413, {"_": ["body larger than %d bytes" % self.max_body]})
        if not _is_json(environ.get("CONTENT_TYPE", "")):
            raise ApiError(400, {"_": [
                "the body must be JSON with Content-Type: application/json"]})
        raw = environ["wsgi.input"].read(self.max_body + 1)
        if len(raw) > self.max_body:  # chunked: no Content-Length said so up front
            raise ApiError(413, {"_": ["body larger than %d bytes" % self.max_body]})
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, {"_": [
                "the body must be JSON with Content-Type: application/json"]}) from None
        return body, len(raw)

    def publish(self, request, start_response):
        body, size = request
        if isinstance(body, list):
            items = self._messages(body, size)
            ids = [m.id for m in self._publish(items)]
            return _answer(start_response, "202 ACCEPTED", {"ids": ids})
        if size > self.small_body:
            raise ApiError(413, {"_": ["body larger than %d bytes" % self.small_body]})
        if not _valid_message(body):
            _schema_errors(PUBLISH, body)
        message, = self._publish([(body["channel"], body["data"])])
        return _answer(start_response, "202 ACCEPTED", {"id": message.id})

    def _messages(self, body, size):
        """The ``(channel, data)`` pairs of a batch; 400 naming every bad item."""
        if not body:
            raise ApiError(400, {"_": ["an empty list holds no messages"]})
        if len(body) > MAX_BATCH:
            raise ApiError(400, {"_": ["at most %d messages per request, got %d"
                                       % (MAX_BATCH, len(body))]})
        if not all(_valid_message(item) for item in body):
            _schema_errors(PUBLISH_MANY, body)
        if size > self.small_body:
            too_large = {str(i): {"data": ["larger than %d bytes" % self.max_message]}
                         for i, item in enumerate(body)
                         if len(dumps(item["data"])) > self.max_message}
            if too_large:
                raise ApiError(413, too_large)
        return [(item["channel"], item["data"]) for item in body]

    def events(self, request, start_response):
        body, _ = request
        try:
            batch = load_events(body)
        except ValidationError as exc:
            raise ApiError(400, exc.messages) from None
        try:
            matched, ids = self.server.engine.process(batch)
        except BusUnavailable as exc:
            raise ApiError(503, {"_": ["not accepted: %s; try again" % exc]}) from None
        return _answer(start_response, "202 ACCEPTED", {"matched": matched, "messages": ids})

    def _publish(self, items):
        try:
            return self.server.bus.publish_many(items)
        except BusUnavailable as exc:
            raise ApiError(503, {"_": ["not accepted: %s; try again" % exc]}) from None


def _is_json(content_type):
    """As Flask's ``is_json``: application/json or application/*+json, any parameters."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json"))


def _schema_errors(schema, body):
    """Raise 400 with the errors ``schema`` finds in ``body``: the fast check failed."""
    try:
        schema.load(body)
    except ValidationError as exc:
        raise ApiError(400, exc.messages) from None
    raise ApiError(400, {"_": [("not a message: %r" % (body,))[:200]]})


_REASONS = {400: "BAD REQUEST", 401: "UNAUTHORIZED", 413: "REQUEST ENTITY TOO LARGE",
            503: "SERVICE UNAVAILABLE"}
