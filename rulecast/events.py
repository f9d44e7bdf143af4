"""Events: what an application reports, checked and turned into a template context."""
import re

from marshmallow import Schema, ValidationError, fields, validate

from rulecast.message import now_iso

__all__ = ["EventSchema", "Event", "load_events", "make_event", "lookup"]

#: Event types: dotted words such as comment.added or workflow.transition.
TYPE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]*$"


def _string_or_integer(value):
    # A validator must raise: marshmallow 4 ignores one that returns False.
    if value is not None and (type(value) not in (str, int)):
        raise ValidationError("must be a string or an integer")


class EventSchema(Schema):
    """An event; only ``type`` is required."""

    type = fields.String(required=True, validate=[
        validate.Length(max=200),
        validate.Regexp(TYPE_PATTERN, error="must be a dotted name like 'comment.added', "
                                            "got {input!r}")])
    id = fields.Raw(load_default=None, validate=_string_or_integer)
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
_type = re.compile(TYPE_PATTERN).match
_KEYS = frozenset(_schema.fields)
_MAPPINGS = ("actor", "object", "data")


def _checked(item):
    """The Event for ``item`` when it is plainly well-formed, else None: then the schema
    decides, so that it alone words the errors. Whatever passes here, the schema would
    load into the same event, at a tenth of its cost."""
    if item.__class__ is not dict or not _KEYS.issuperset(item):
        return None
    type_, id_, time = item.get("type"), item.get("id"), item.get("time")
    if (type_.__class__ is not str or len(type_) > 200 or _type(type_) is None
            or id_ is not None and id_.__class__ is not str and id_.__class__ is not int
            or time is not None and time.__class__ is not str):
        return None
    mappings = []
    for key in _MAPPINGS:
        value = item.get(key)
        if value is None:
            if key in item:  # null is an error, absent is {}
                return None
            value = {}
        elif value.__class__ is not dict:
            return None
        else:
            for name in value:
                if name.__class__ is not str:
                    return None
            value = dict(value)  # a copy, as the schema makes: the caller's may change
        mappings.append(value)
    return Event(type_, id_, time, *mappings)


def load_events(payload):
    """Events from a JSON payload: one event object or a list of them.
    Raises ValidationError with field errors (keyed by index for a list)."""
    if isinstance(payload, list):
        if not payload:
            raise ValidationError({"_": ["an empty list holds no events"]})
        events = [_checked(item) for item in payload]
        if None in events:
            return [Event(**e) for e in _many.load(payload)]
        return events
    if not isinstance(payload, dict):
        raise ValidationError({"_": ["expected an event object or a list of them"]})
    event = _checked(payload)
    return [event if event is not None else Event(**_schema.load(payload))]


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
