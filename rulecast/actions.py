"""The built-in actions notify, publish, webhook and log, registered like an add-on's."""
import re
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from rulecast import webhooks
from rulecast.channels import KINDS, ChannelError, parse
from rulecast.hookspecs import hookimpl
from rulecast.registry import RuleError

__all__ = ["ActionError", "NotifySchema", "PublishSchema", "WebhookSchema", "LogSchema",
           "rulecast_add_actions"]

# Where template markup starts; the text before it is literal and can be checked at load.
_MARKUP = re.compile(r"\{[{%#]")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_KNOWN = ", ".join(KINDS)
#: The keys notify puts in every message; extra data may not shadow them.
NOTIFY_KEYS = ("title", "body", "url", "event", "rule")


class ActionError(Exception):
    """An action that cannot run for this event; the engine logs it with the rule's name."""


# -- load-time checks ---------------------------------------------------------------------

def _literal(source):
    """The text before the first markup, and whether there is no markup at all."""
    parts = _MARKUP.split(source, 1)
    return parts[0], len(parts) == 1


def channel_template(source):
    """Reject at load a channel template whose literal text already rules it out."""
    prefix, static = _literal(source)
    if static:
        try:
            parse(source)
        except ChannelError as exc:
            raise ValidationError(str(exc)) from None
    elif ":" in prefix and prefix.partition(":")[0] not in KINDS:
        raise ValidationError("unknown channel kind %r in %r; known: %s"
                              % (prefix.partition(":")[0], source, _KNOWN))
    elif not any((kind + ":").startswith(prefix) or prefix.startswith(kind + ":")
                 for kind in KINDS):
        raise ValidationError("channel %r must start with KIND: where KIND is one of %s"
                              % (source, _KNOWN))


def url_problem(url):
    """Why ``url`` cannot be a webhook's address, or None."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host, got %r" % url
    return None


def url_template(source):
    """Reject at load a URL template whose literal text is not http(s)."""
    prefix, static = _literal(source)
    if static and url_problem(source):
        raise ValidationError(url_problem(source))
    elif not static and not any(s.startswith(prefix.lower()) or prefix.lower().startswith(s)
                                for s in ("http://", "https://")):
        raise ValidationError("must start with http:// or https://, got %r" % source)


def _no_reserved(data):
    taken = sorted(set(data) & set(NOTIFY_KEYS))
    if taken:
        raise ValidationError("%s set by notify itself; rename in data, or use the option"
                              % ", ".join(map(repr, taken)))


class _Targets(fields.Field):
    """One channel template or a non-empty list of them."""

    # make_error runs str.format on the message: {{{{ comes out as {{.
    default_error_messages = {"invalid": "expected a channel like 'user:{{{{ object.owner }}}}' "
                                         "or a non-empty list of them"}

    def _deserialize(self, value, attr, data, **kwargs):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise self.make_error("invalid")
        for item in items:
            channel_template(item)
        return list(items)


class _Options(Schema):
    """Options whose unknown keys are errors naming the known ones."""

    error_messages = {"type": "expected a mapping of options"}

    class Meta:
        unknown = RAISE  # a backstop: _unknown_keys reports them with the known names

    @pre_load
    def _unknown_keys(self, data, **kwargs):
        if isinstance(data, dict):
            known = sorted(field.data_key or name for name, field in self.load_fields.items())
            unknown = [key for key in data if key not in known]
            if unknown:
                raise ValidationError({str(key): ["unknown option; known: %s" % ", ".join(known)]
                                       for key in unknown})
        return data


def _data(required=None, **kwargs):
    messages = {"invalid": "expected a mapping of names to values"}
    if required:
        messages["required"] = required
    return fields.Dict(keys=fields.String(), required=bool(required), error_messages=messages,
                       **kwargs)


class NotifySchema(_Options):
    to = _Targets(required=True, error_messages={
        "required": "who to notify: a channel like 'user:{{{{ object.owner }}}}' or a list"})
    title = fields.String(required=True, error_messages={"required": "a message needs a title"})
    body = fields.String()
    url = fields.String()
    data = _data(validate=_no_reserved)


class PublishSchema(_Options):
    channel = fields.String(required=True, validate=channel_template, error_messages={
        "required": "which channel, like 'topic:news'"})
    data = _data(required="the message data, a mapping")


class WebhookSchema(_Options):
    url = fields.String(required=True, validate=url_template,
                        error_messages={"required": "the address to send to, http(s)://…"})
    method = fields.String(load_default="POST", validate=validate.OneOf(
        ("POST", "PUT", "PATCH"), error="must be one of {choices}, got {input!r}"))
    headers = fields.Dict(load_default=dict, values=fields.String(), keys=fields.String(
        validate=validate.Regexp(_HEADER_NAME, error="{input!r} is not a valid header name")))
    body = _data(load_default=None)
    retries = fields.Integer(strict=True, load_default=3, validate=validate.Range(
        0, 10, error="must be a whole number from {min} to {max}, got {input}"))
    timeout = fields.Float(load_default=5.0, validate=validate.Range(
        0, 60, min_inclusive=False, error="must be seconds above {min} and at most {max}, "
                                          "got {input}"))


class LogSchema(_Options):
    message = fields.String(required=True, error_messages={"required": "what to log"})
    level = fields.String(load_default="info", validate=validate.OneOf(
        ("info", "warning", "error"), error="must be one of {choices}, got {input!r}"))


# -- compiling and rendering --------------------------------------------------------------

def _compile(compiler, option, source):
    """``render(context)`` for a string's template, or for a mapping's structure of them
    (see compile_data)."""
    try:
        if isinstance(source, str):
            return compiler.template(source).render
        return compiler.templates.renderer(compiler.templates.compile_data(source))
    except RuleError as exc:
        raise RuleError("%s: %s" % (option, exc.what)) from None


def _render(action, option, render, context):
    """Render one option; any failure (undefined name, sandbox refusal) names the option."""
    try:
        return render(context)
    except Exception as exc:
        raise ActionError("%s: %s: %s: %s" % (action, option, type(exc).__name__, exc)) from exc


def _channel(action, text):
    try:
        parse(text)
    except ChannelError as exc:
        raise ActionError("%s: rendered channel %r: %s" % (action, text, exc)) from None
    return text


# -- factories ----------------------------------------------------------------------------

def notify_from_config(options, compiler):
    """A notification (``title``, ``body``, ``url``, extra ``data``) to each channel in
    ``to``, once per channel; everything is rendered before the first is sent."""
    targets = _compile(compiler, "to", options["to"])
    parts = {key: _compile(compiler, key, options[key])
             for key in ("title", "body", "url") if key in options}
    extra = _compile(compiler, "data", options.get("data", {}))

    def run(event, context):
        scope = event.context
        channels = []
        for channel in _render("notify", "to", targets, scope):
            if _channel("notify", channel) not in channels:  # one message per channel
                channels.append(channel)
        data = {key: _render("notify", key, render, scope)
                for key, render in parts.items()}
        data.update(event=event.type, rule=context.rule)
        data.update(_render("notify", "data", extra, scope))
        # Everything is rendered and checked before the first publish: all or nothing.
        for channel in channels:
            context.publish(channel, dict(data))
    return run


def publish_from_config(options, compiler):
    """One message with the rendered ``data`` to the rendered ``channel``."""
    channel = _compile(compiler, "channel", options["channel"])
    data = _compile(compiler, "data", options["data"])

    def run(event, context):
        target = _render("publish", "channel", channel, event.context)
        context.publish(_channel("publish", target),
                        _render("publish", "data", data, event.context))
    return run


def webhook_from_config(options, compiler):
    """An HTTP request to the rendered ``url``, with the event (or the rendered ``body``)
    as JSON, retried with back-off in the background."""
    url = _compile(compiler, "url", options["url"])
    headers = _compile(compiler, "headers", options["headers"])
    body = None if options["body"] is None else _compile(compiler, "body", options["body"])
    method, retries, timeout = options["method"], options["retries"], options["timeout"]

    def run(event, context):
        scope = event.context
        address = _render("webhook", "url", url, scope)
        problem = url_problem(address)
        if problem:
            raise ActionError("webhook: url: %s" % problem)
        rendered = _render("webhook", "headers", headers, scope)
        for name, value in rendered.items():
            if "\r" in value or "\n" in value:  # would add headers of the event's making
                raise ActionError("webhook: headers.%s: must be one line" % name)
        payload = (event.as_dict() if body is None
                   else _render("webhook", "body", body, scope))
        context.webhook(webhooks.Request(address, method, rendered, payload, retries, timeout,
                                         context.rule))
    return run


def log_from_config(options, compiler):
    """A line in the server's log at ``level`` with the rendered ``message``."""
    message = _compile(compiler, "message", options["message"])
    level = options["level"]

    def run(event, context):
        context.log(level, _render("log", "message", message, event.context))
    return run


@hookimpl
def rulecast_add_actions(registry):
    registry.add("notify", NotifySchema, notify_from_config, plugin=__name__)
    registry.add("publish", PublishSchema, publish_from_config, plugin=__name__)
    registry.add("webhook", WebhookSchema, webhook_from_config, plugin=__name__)
    registry.add("log", LogSchema, log_from_config, plugin=__name__)
