"""The HTTP API under the prefix: notifications, SSE, rules, health and metrics.

Publish and events, the endpoints every message goes through, are served before
Flask, by :mod:`rulecast.ingest`."""
import logging
import os

from flask import (Blueprint, Flask, Response, current_app, jsonify, request,
                   send_from_directory)
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates
from werkzeug.exceptions import HTTPException

from rulecast import sse
from rulecast.channels import ChannelError, parse as parse_channel
from rulecast.identity import api_key_of, bearer, identify
from rulecast.tokens import InvalidToken

log = logging.getLogger("rulecast.api")

bp = Blueprint("rulecast", __name__)


class ApiError(Exception):
    """An HTTP error answered as ``{"errors": {field: [messages]}}``."""

    def __init__(self, status, errors):
        super().__init__(status, errors)
        self.status = status
        self.errors = errors


class PublishSchema(Schema):
    channel = fields.String(required=True)
    data = fields.Dict(required=True, keys=fields.String())

    @validates("channel")
    def _channel(self, value, **kw):
        try:
            parse_channel(value)
        except ChannelError as exc:
            raise ValidationError(str(exc)) from None


class InboxQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # ?token= shares the query string

    since = fields.Integer(load_default=None, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=50, validate=validate.Range(
        min=1, max=500, error="limit must be between {min} and {max}"))


class ReadSchema(Schema):
    upto = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


# One instance each: a Schema deep-copies its fields when made, which cost a twentieth
# of a publish; loading keeps no state in the instance.
PUBLISH, INBOX_QUERY, READ = PublishSchema(), InboxQuerySchema(), ReadSchema()
PUBLISH_MANY = PublishSchema(many=True)


def _server():
    return current_app.config["RULECAST_SERVER"]


def _load(schema, data):
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError(400, exc.messages) from None


def _json_body():
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, {"_": ["the body must be JSON with Content-Type: application/json"]})
    return data


def require_api_key(environ=None, api_keys=None):
    """Raise 401 unless the request (``environ``, by default Flask's) carries one of the
    configured API keys."""
    environ = request.environ if environ is None else environ
    if not bearer(environ):
        raise ApiError(401, {"authorization": ["send an API key as 'Authorization: Bearer KEY'"]})
    if api_key_of(environ, _server().config.api_keys if api_keys is None else api_keys) is None:
        raise ApiError(401, {"authorization": ["unknown API key"]})


def require_user():
    """The user making the request, found as the sockets find it (plugins first, then
    the token); 401 when there is none."""
    server = _server()
    try:
        identity = identify(request.environ, server.config.secret, server.hook)
    except InvalidToken as exc:
        raise ApiError(401, {"token": [str(exc)]}) from None
    if identity is None or identity.user is None:
        raise ApiError(401, {"token": ["send a user token (cookie rulecast_token, "
                                       "Authorization: Bearer or ?token=)"]})
    return identity


@bp.get("/api/rules")
def rules():
    require_api_key()
    server = _server()
    return jsonify(rules=[r.as_dict() for r in server.engine.ruleset.rules],
                   problems=[str(p) for p in server.engine.ruleset.problems])


@bp.get("/api/notifications")
def notifications():
    identity = require_user()
    query = _load(INBOX_QUERY, request.args)
    store, channels = _server().store, identity.channels
    if query["since"] is None:
        messages = store.latest(channels, query["limit"])
    else:
        messages = store.since(query["since"], channels, query["limit"])
    last_read = store.last_read(identity.user)
    return jsonify(messages=[m.frame() for m in messages], last_read=last_read,
                   unread=store.count_since(last_read, channels), user=identity.user)


@bp.post("/api/notifications/read")
def notifications_read():
    identity = require_user()
    upto = _load(READ, _json_body())["upto"]
    server = _server()
    if upto > server.bus.last_id:
        raise ApiError(400, {"upto": ["no message has id %d yet; the last is %d"
                                      % (upto, server.bus.last_id)]})
    last_read = server.store.mark_read(identity.user, upto)
    return jsonify(last_read=last_read,
                   unread=server.store.count_since(last_read, identity.channels))


@bp.get("/sse")
def events_stream():
    try:
        body = sse.stream(_server(), request.environ)
    except sse.Refused as exc:
        raise ApiError(exc.status, exc.errors) from None
    return Response(body, headers=sse.HEADERS, direct_passthrough=True)


@bp.get("/ws")
def websocket_without_upgrade():
    raise ApiError(426, {"_": ["this endpoint speaks WebSocket; connect with a "
                               "WebSocket client (Upgrade: websocket)"]})


STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


@bp.get("/static/<path:name>")
def static(name):
    """The browser widget and its assets; revalidated, so an upgrade is seen at once."""
    response = send_from_directory(STATIC, name, max_age=0)
    response.headers["Access-Control-Allow-Origin"] = "*"  # embeddable from other origins
    return response


@bp.get("/healthz")
def healthz():
    server = _server()
    body = {"status": "ok" if server.bus.healthy else "degraded", "last_id": server.bus.last_id,
            "connections": len(server.hub.connections)}
    if server.cluster is not None:
        body.update(worker=server.worker, workers=server.cluster.workers(),
                    sequencer="ok" if server.bus.healthy else "unreachable")
    return jsonify(body), 200 if server.bus.healthy else 503


@bp.get("/metrics")
def metrics():
    server = _server()
    text = server.cluster.metrics() if server.cluster else server.metrics.render()
    return Response(text, content_type="text/plain; version=0.0.4; charset=utf-8")


def create_app(server):
    """rulecast's own Flask app, its blueprint mounted under the prefix."""
    app = Flask("rulecast")
    app.config["RULECAST_SERVER"] = server
    app.config["MAX_CONTENT_LENGTH"] = 16 * server.config.limits.max_message_bytes
    app.json.sort_keys = False
    app.register_blueprint(bp, url_prefix=server.config.prefix)
    from rulecast import admin
    app.register_blueprint(admin.bp, url_prefix=server.config.prefix)

    @app.errorhandler(ApiError)
    def _api_error(exc):
        return jsonify(errors=exc.errors), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc):
        return jsonify(errors={"_": [exc.description]}), exc.code

    @app.errorhandler(Exception)
    def _internal(exc):
        log.exception("%s %s failed", request.method, request.path)
        return jsonify(errors={"_": ["internal error"]}), 500

    return app
