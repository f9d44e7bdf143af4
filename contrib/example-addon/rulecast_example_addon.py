"""An example add-on: the `weekday` condition and the `notify_digest` action."""
from datetime import datetime

from marshmallow import Schema, ValidationError, fields

from rulecast.channels import ChannelError, parse
from rulecast.hookspecs import hookimpl
from rulecast.registry import RuleError

__all__ = ["rulecast_add_conditions", "rulecast_add_actions", "parse_time"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Weekdays(fields.Field):
    """A weekday name or a non-empty list of them, loaded as a frozenset of numbers
    (Monday is 0). Names are ``mon``…``sun`` or in full, in any case."""

    default_error_messages = {"null": "must be a weekday like mon or a list like [mon, tue]"}

    def _deserialize(self, value, attr, data, **kwargs):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise ValidationError("must be a weekday like mon or a non-empty list like "
                                  "[mon, tue], got %r" % (value,))
        days = set()
        for item in items:
            name = item.lower() if isinstance(item, str) else item
            if name in DAYS:
                days.add(DAYS.index(name))
            elif name in _FULL:
                days.add(_FULL.index(name))
            else:
                raise ValidationError("unknown weekday %r; use one of %s"
                                      % (item, ", ".join(DAYS)))
        return frozenset(days)


def parse_time(text):
    """The datetime of an ISO 8601 event time such as ``2026-11-21T05:51:15.123Z``,
    or None when it is not one."""
    if not isinstance(text, str):
        return None
    try:  # Python before 3.11 does not read a trailing Z.
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None


def weekday_from_config(days, compiler):
    # The day of the date as written: 2026-11-21T23:30:00-05:00 is a Saturday, though it is
    # already Sunday in UTC. Apps that mean the local day send local times with an offset.
    def check(event):
        when = parse_time(event.time)
        return when is not None and when.weekday() in days

    def explain(event):
        when = parse_time(event.time)
        if when is None:
            return "time is %r, not an ISO 8601 time" % (event.time,)
        return "time is %s, a %s" % (event.time, _FULL[when.weekday()].capitalize())
    check.explain = explain
    return check


def _static_channel(source):
    """A channel without template markup can be checked when the rules load."""
    if "{" not in source:
        try:
            parse(source)
        except ChannelError as exc:
            raise ValidationError(str(exc)) from None


class NotifyDigestSchema(Schema):
    """``{to: channel template, title: template}``; other keys are errors."""

    to = fields.String(required=True, validate=_static_channel, error_messages={
        "required": "which channel, like 'user:{{{{ object.owner }}}}'"})
    title = fields.String(required=True, error_messages={"required": "a digest needs a title"})


def _template(compiler, option, source):
    try:
        return compiler.template(source)
    except RuleError as exc:
        raise RuleError("%s: %s" % (option, exc.what)) from None


def notify_digest_from_config(options, compiler):
    to = _template(compiler, "to", options["to"])
    title = _template(compiler, "title", options["title"])

    def run(event, context):
        # Any exception is logged by the engine with the rule's name; other actions still run.
        channel = to.render(event.context)
        try:
            parse(channel)
        except ChannelError as exc:
            raise ValueError("notify_digest: rendered channel %r: %s" % (channel, exc)) from None
        context.publish(channel, {"title": title.render(event.context).upper(),
                                  "event": event.type, "rule": context.rule})
    return run


@hookimpl
def rulecast_add_conditions(registry):
    registry.add("weekday", Weekdays(), weekday_from_config, plugin=__name__)


@hookimpl
def rulecast_add_actions(registry):
    registry.add("notify_digest", NotifyDigestSchema, notify_digest_from_config,
                 plugin=__name__)
