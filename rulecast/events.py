"""Events: what an application reports, checked and turned into a template context."""
from marshmallow import Schema, ValidationError, fields, validate

from rulecast.message import now_iso

__all__ = ["EventSchema", "Event", "load_events", "make_event", "lookup"]

#: Event types: dotted words such as comment.added or workflow.transition.
TYPE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]*$"


class EventSchema(Schema):
    """An event; only ``type`` is required."""

    type = fields.String(required=True, validate=[
        validate.Length(max=200),
        validate.Regexp(TYPE_PATTERN, error="must be a dotted name like 'comment.added', "
                                            "got {input!r}")])
    id = fields.Raw(load_default=None, validate=lambda v: v is None or (
        isinstance(v, (str, int)) and not isinstance(v, bool)),
        error_messages={"validator_failed": "must be a string or an integer"})
    time = fields.String(load_default=None)
    actor = fields.Dict(keys=fields.String(), load_default=dict)
    object = fields.Dict(keys=fields.String(), load_default=dict)
    data = fields.Dict(keys=fields.String(), load_default=dict)


class Event:
    """A checked event. ``context`` is what templates and expressions see."""

    __slots__ = ("type", "id", "time", "actor", "object", "data", "context")

    def __init__(self, type, id=None, time=None, actor=None, object=None, data=None):
        self.type = type
        self.id = id
        self.time = time or now_iso()
        self.actor = actor or {}
        self.object = object or {}
        self.data = data or {}
        self.context = {"type": self.type, "id": self.id, "time": self.time,
                        "actor": self.actor, "object": self.object, "data": self.data}

    def as_dict(self):
        return dict(self.context)

    def __repr__(self):
        return "<Event %s %s>" % (self.type, self.id or "")


_schema = EventSchema()
_many = EventSchema(many=True)


def load_events(payload):
    """Events from a JSON payload: one event object or a list of them.
    Raises ValidationError with field errors (keyed by index for a list)."""
    if isinstance(payload, list):
        if not payload:
            raise ValidationError({"_": ["an empty list holds no events"]})
        return [Event(**e) for e in _many.load(payload)]
    if not isinstance(payload, dict):
        raise ValidationError({"_": ["expected an event object or a list of them"]})
    return [Event(**_schema.load(payload))]


def make_event(type, actor=None, object=None, data=None, id=None, time=None):
    """One checked event from keyword arguments, as the emit() functions take them.
    Raises ValueError naming the bad fields."""
    event = {"type": type, "actor": actor or {}, "object": object or {}, "data": data or {}}
    if id is not None:
        event["id"] = id
    if time is not None:
        event["time"] = time
    try:
        return load_events(event)[0]
    except ValidationError as exc:
        raise ValueError("not an event: %s" % exc.messages) from None


_MISSING = object()


def lookup(context, dotted, default=_MISSING):
    """The value at a dotted path such as ``object.state`` in ``context``; ``default``
    when a part is missing (KeyError when no default is given)."""
    value = context
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif default is _MISSING:
            raise KeyError(dotted)
        else:
            return default
    return value
