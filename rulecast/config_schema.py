"""The configuration keys: their defaults, checks and error messages."""
import difflib
import os
import re

from marshmallow import (EXCLUDE, Schema, ValidationError, fields, post_load, validate,
                         validates_schema)

__all__ = ["DEFAULTS", "ConfigSchema", "LimitsSchema", "HistorySchema", "parse_duration",
           "LISTEN", "is_redis"]


def is_redis(url):
    """True for a redis:// or rediss:// URL (a bus or store on Redis)."""
    return (url or "").lower().startswith(("redis://", "rediss://"))

DEFAULTS = {
    "listen": "127.0.0.1:8080", "workers": "auto", "var_dir": "./var", "secret": None,
    "api_keys": [], "app": None, "prefix": "/rulecast", "rules": ["rules"], "plugins": [],
    "store": None, "bus": "nanomsg", "allowed_origins": [],
    # By convention topics named public-* are for everyone, as the demo and rules/ use.
    "public_topics": ["topic:public-*"],
    "client_publish": [],
    "limits": {"max_message_bytes": 65536, "max_connections": 10000, "send_queue": 1000,
               "client_rate": 50},
    "history": {"max_per_channel": 1000, "max_age": "7d"},
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})$")
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"


def parse_duration(value) -> float:
    """Seconds in a number of seconds or a string like "30s", "15m", "1h", "7d", "2w", "1h30m"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    text = value.strip() if isinstance(value, str) else ""
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if re.fullmatch(f"(?:{_DURATION.pattern})+", text):
        return float(sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(text)))
    raise ValueError(f"expected a duration like '30s', '15m', '1h', '7d' or '2w' "
                     f"(or a number of seconds), got {value!r}")


def _listen(value):
    match = LISTEN.match(value)
    if not match:
        raise ValidationError(f"expected HOST:PORT like '127.0.0.1:8080' or '[::1]:8080', "
                              f"got {value!r}")
    if int(match.group(2)) > 65535:
        raise ValidationError(f"port {match.group(2)} is out of range 0-65535 in {value!r}")


def _workers(value):
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValidationError(f'must be a positive integer or "auto", got {value!r}')


def _max_age(value):
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if seconds <= 0:
        raise ValidationError(f"must be longer than zero, like '7d', got {value!r}")
    return seconds


class PathList(fields.List):
    """A list of paths, which may also be written as one path."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = [value] if isinstance(value, str) else value
        return super()._deserialize(value, attr, data, **kwargs)


class TopicPattern(fields.String):
    """A glob over topic channels; "news-*" means "topic:news-*"."""

    def _deserialize(self, value, attr, data, **kwargs):
        pattern = super()._deserialize(value, attr, data, **kwargs)
        if pattern.startswith(("user:", "group:", "role:")):
            raise ValidationError(f"public_topics may only name topic: channels, got {pattern!r};"
                                  f" users, groups and roles get theirs from their token")
        if pattern in ("", "topic:"):
            raise ValidationError("expected a topic glob like 'public-*', got an empty one")
        return pattern if pattern.startswith("topic:") else "topic:" + pattern


def _positive(unit):
    return fields.Integer(strict=True, validate=validate.Range(
        min=1, error=f"must be a whole number of {unit} above 0, got {{input}}"))


class _Strict(Schema):
    """A mapping whose unknown keys are errors that suggest the nearest known key."""

    error_messages = {"type": "expected a mapping of keys"}

    class Meta:
        # Unknown keys are reported by _unknown_keys, whose message can suggest the fix.
        unknown = EXCLUDE

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _unknown_keys(self, data, original, **kwargs):
        known = sorted(self.load_fields)
        unknown = {key: difflib.get_close_matches(key, known, n=1)
                   for key in map(str, original if isinstance(original, dict) else ())
                   if key not in known}
        if unknown:
            raise ValidationError({
                key: [f"unknown key;{f' did you mean {c[0]!r}?' if c else ''} known: "
                      f"{', '.join(known)}"] for key, c in unknown.items()})


class LimitsSchema(_Strict):
    max_message_bytes = _positive("bytes")
    max_connections = _positive("connections")
    send_queue = _positive("frames")
    client_rate = fields.Float(validate=validate.Range(
        min=0, error="must be frames per second, or 0 for unlimited, got {input}"))


class HistorySchema(_Strict):
    max_per_channel = _positive("messages")
    max_age = fields.Function(deserialize=_max_age)


class ConfigSchema(_Strict):
    """The keys of rulecast.yaml; relative paths resolve against `base`."""

    listen = fields.String(validate=_listen, error_messages={
        "invalid": "expected HOST:PORT as a string, like '127.0.0.1:8080'"})
    workers = fields.Function(deserialize=_workers)
    var_dir = fields.String(validate=validate.Length(min=1, error="must name a folder"))
    secret = fields.String(allow_none=True, validate=validate.Length(
        min=16, error="must be at least {min} characters; leave it out to have one generated"))
    api_keys = fields.List(fields.String(validate=validate.Length(
        min=1, error="an API key must not be empty")))
    app = fields.String(allow_none=True, validate=validate.Regexp(
        f"^{_DOTTED}:{_DOTTED}$", error="expected 'package.module:attribute', got {input!r}"))
    prefix = fields.String(validate=validate.Regexp(
        r"^(/[^/\s]+)+$", error="must start with '/' and have no trailing '/' or spaces, "
                                "like '/rulecast', got {input!r}"))
    rules = PathList(fields.String())
    plugins = fields.List(fields.String(validate=validate.Regexp(
        f"^{_DOTTED}$", error="expected a module name like 'my_addon.plugin', got {input!r}")))
    store = fields.String(allow_none=True, validate=validate.Regexp(
        r"^(sqlite:///.+|rediss?://.+)$", error="expected 'sqlite:///path.db' (relative; "
        "sqlite:////path.db is absolute) or 'redis://HOST:PORT/DB', got {input!r}"))
    bus = fields.String(validate=validate.Regexp(
        r"^(nanomsg|rediss?://.+)$",
        error="expected 'nanomsg' or 'redis://HOST:PORT/DB', got {input!r}"))
    allowed_origins = fields.List(fields.String(validate=validate.Regexp(
        r"^https?://[A-Za-z0-9*.\-]+(:\d+)?$", error="expected an origin like "
        "'https://app.example.org' or 'https://*.example.org' (no path), got {input!r}")))
    public_topics = fields.List(TopicPattern())
    client_publish = fields.List(fields.String(validate=validate.Regexp(
        r"^(user|group|role|topic):\S+$", error="expected a channel pattern starting with "
        "user:, group:, role: or topic:, like 'topic:board-*', got {input!r}")))
    limits = fields.Nested(LimitsSchema)
    history = fields.Nested(HistorySchema)

    def __init__(self, base, **kwargs):
        super().__init__(**kwargs)
        self.base = base

    @validates_schema
    def _redis_bus_needs_redis_store(self, data, **kwargs):
        if is_redis(data.get("bus")) and not is_redis(data.get("store")):
            raise ValidationError({"bus": [
                "a redis:// bus needs the Redis store on the same server (one script "
                "stores and publishes each message): set store: to the same URL"]})

    @post_load
    def _resolve_paths(self, data, **kwargs):
        def absolute(path):
            return os.path.normpath(os.path.join(self.base, os.path.expanduser(path)))
        data["var_dir"] = absolute(data["var_dir"])
        data["rules"] = [absolute(path) for path in data["rules"]]
        store = data["store"] or "sqlite:///" + os.path.join(data["var_dir"], "rulecast.db")
        if store.startswith("sqlite:///"):
            # "sqlite:///x" is relative and "sqlite:////x" absolute: join() handles both.
            store = "sqlite:///" + absolute(store[len("sqlite:///"):])
        data["store"] = store
        return data
