"""The built-in rule conditions, registered through the same hook as an add-on's."""
import fnmatch
import re

from marshmallow import ValidationError, fields

from rulecast.events import lookup
from rulecast.hookspecs import hookimpl
from rulecast.registry import RuleError

__all__ = ["rulecast_add_conditions", "path_regex"]

_MISSING = object()
#: What a ``field`` name may start with: the keys of ``Event.context``.
CONTEXT_ROOTS = ("type", "id", "time", "actor", "object", "data")
OPERATORS = ("equals", "in", "not_in", "exists")


class Strings(fields.Field):
    """A non-empty string or a non-empty list of them, loaded as a tuple; ``what``
    names one item in messages, e.g. "a glob like 'comment.*'"."""

    def __init__(self, what, **kwargs):
        self.what = what
        kwargs.setdefault("error_messages", {"null": "must be %s or a list of them" % what})
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise ValidationError("must be %s or a list of them, got %r" % (self.what, value))
        if not items:
            raise ValidationError("must name at least one; an empty list never matches")
        return tuple(items)


class Typed(fields.Field):
    """A value of one Python type, described by ``what`` in the message."""

    def __init__(self, type_, what):
        super().__init__(error_messages={"null": "must be %s" % what})
        self.type_, self.what = type_, what

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, self.type_):
            raise ValidationError("must be %s, got %r" % (self.what, value))
        return value


class FieldTest(fields.Field):
    """``{name: object.state, <operator>: value}`` with exactly one operator, loaded as
    ``(name, operator, value)``."""

    # marshmallow formats these messages: literal braces are doubled.
    default_error_messages = {"null": "must be a mapping like {{name: object.state, equals: x}}"}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("must be a mapping like {name: object.state, in: [published]}, "
                                  "got %r" % (value,))
        name = value.get("name")
        # A name outside the context can never be found: catch the typo at load.
        if (not isinstance(name, str) or name.split(".")[0] not in CONTEXT_ROOTS
                or "" in name.split(".")):
            raise ValidationError("name must be a dotted path starting with one of %s, "
                                  "like object.state; got %r" % (", ".join(CONTEXT_ROOTS), name))
        ops = [key for key in value if key != "name"]
        unknown = [key for key in ops if key not in OPERATORS]
        if unknown:
            raise ValidationError("unknown option %s; the operators are %s"
                                  % (", ".join(map(repr, unknown)), ", ".join(OPERATORS)))
        if len(ops) != 1:
            raise ValidationError("needs exactly one operator of %s, got %s"
                                  % (", ".join(OPERATORS), ", ".join(ops) or "none"))
        op = ops[0]
        arg = value[op]
        if op in ("in", "not_in"):
            if not isinstance(arg, list):
                raise ValidationError("%s must be a list of values, got %r; for one value "
                                      "use equals" % (op, arg))
            arg = tuple(arg)
        elif op == "exists" and not isinstance(arg, bool):
            raise ValidationError("exists must be true or false, got %r" % (arg,))
        return name, op, arg


class Conditions(fields.Field):
    """A non-empty list of condition mappings; with ``single``, one mapping alone too.
    Each item is checked when the compiler compiles it."""

    def __init__(self, single=False, **kwargs):
        self.single = single
        self.shape = "a condition mapping or a list" if single else "a list"
        kwargs.setdefault("error_messages", {"null": "must be %s of conditions" % self.shape})
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if self.single and isinstance(value, dict):
            return value
        if not isinstance(value, list):
            raise ValidationError("must be %s of conditions like [{type: comment.*}, "
                                  "{path: /intranet/**}], got %r" % (self.shape, value))
        if not value:
            raise ValidationError("must hold at least one condition")
        return value


def path_regex(glob):
    """Regex source for a path glob: ``*`` and ``?`` stay within one segment, ``**``
    spans any depth, and a whole-segment ``/**`` may also match nothing, so
    ``/intranet/**`` matches ``/intranet`` and ``/a/**/b`` matches ``/a/b``."""
    out, i, n = [], 0, len(glob)
    while i < n:
        if glob.startswith("/**", i) and glob[i + 3:i + 4] in ("", "/"):
            out.append("(?:/.*)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            char = glob[i]
            out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
            i += 1
    return "".join(out)


def _one_regex(sources):
    """A ``fullmatch`` for the alternatives: one regex however many globs."""
    return re.compile("|".join("(?:%s)" % s for s in sources), re.S).fullmatch


def _is(what, value):
    return "%s is missing" % what if value is _MISSING else "%s is %r" % (what, value)


def type_from_config(globs, compiler):
    """The event's type matches one of the globs (``comment.*``)."""
    match = _one_regex(fnmatch.translate(g) for g in globs)

    def check(event):
        return match(event.type) is not None
    check.explain = lambda event: _is("type", event.type)
    return check


def path_from_config(globs, compiler):
    """The object's ``path`` matches one of the globs: ``*`` within one segment, ``**``
    across segments."""
    match = _one_regex(path_regex(g) for g in globs)

    def check(event):
        path = event.object.get("path")
        return isinstance(path, str) and match(path) is not None
    check.explain = lambda event: _is("object.path", event.object.get("path", _MISSING))
    return check


def object_type_from_config(names, compiler):
    """The object's ``type`` is one of the names."""
    names = frozenset(names)

    def check(event):
        value = event.object.get("type")
        # The str test keeps an unhashable value (a list) from raising in the set lookup.
        return isinstance(value, str) and value in names
    check.explain = lambda event: _is("object.type", event.object.get("type", _MISSING))
    return check


def field_from_config(options, compiler):
    """A field of the event, by dotted name (``data.state``), equals a value, is or is
    not among values, or exists."""
    name, op, arg = options
    if op == "equals":
        def check(event):
            return lookup(event.context, name, _MISSING) == arg
    elif op == "in":
        def check(event):
            return lookup(event.context, name, _MISSING) in arg
    elif op == "not_in":
        def check(event):
            return lookup(event.context, name, _MISSING) not in arg
    else:
        def check(event):
            return (lookup(event.context, name, _MISSING) is not _MISSING) is arg
    check.explain = lambda event: _is(name, lookup(event.context, name, _MISSING))
    return check


def actor_in_group_from_config(groups, compiler):
    """The actor belongs to at least one of the groups."""
    wanted = frozenset(groups)

    def check(event):
        have = event.actor.get("groups")
        if not isinstance(have, (list, tuple)):
            return False
        try:
            return not wanted.isdisjoint(have)
        except TypeError:  # a malformed event: a list or mapping among the groups
            return False
    check.explain = lambda event: _is("actor.groups", event.actor.get("groups", _MISSING))
    return check


def actor_is_owner_from_config(wanted, compiler):
    """The actor is (``true``) or is not (``false``) the object's ``owner``; an actor
    without an id owns nothing."""
    def check(event):
        actor = event.actor.get("id")
        # Two missing ids are not a match: an anonymous actor owns nothing.
        return (actor is not None and actor == event.object.get("owner")) is wanted
    check.explain = lambda event: "%s, %s" % (
        _is("actor.id", event.actor.get("id", _MISSING)),
        _is("object.owner", event.object.get("owner", _MISSING)))
    return check


def expr_from_config(source, compiler):
    """A sandboxed Jinja2 expression over the event is true; an undefined name fails
    the rule instead of reading as false."""
    evaluate = compiler.expression(source)

    def check(event):
        # bool() of a strict Undefined raises, so an undefined name or a blocked attribute
        # fails the rule loudly instead of quietly reading as false.
        return bool(evaluate(event.context))
    return check


def _nested(compiler, items, name):
    """Compiled checkers for ``items``; a problem deep inside says where, e.g. all[1].not."""
    if isinstance(items, dict):
        items, wheres = [items], [name]
    else:
        wheres = ["%s[%d]" % (name, i) for i in range(len(items))]
    checks = []
    for item, where in zip(items, wheres):
        try:
            checks.append(compiler.condition(item))
        except RuleError as exc:
            where = "%s.%s" % (where, exc.where) if exc.where else where
            raise RuleError(exc.what, where) from None
    return tuple(checks)


def all_from_config(items, compiler):
    """Every nested condition holds."""
    checks = _nested(compiler, items, "all")

    def check(event):
        for one in checks:
            if not one(event):
                return False
        return True
    return check


def _any(checks):
    def check(event):
        for one in checks:
            if one(event):
                return True
        return False
    return check


def any_from_config(items, compiler):
    """At least one nested condition holds."""
    return _any(_nested(compiler, items, "any"))


def not_from_config(items, compiler):
    """None of the nested conditions holds."""
    holds = _any(_nested(compiler, items, "not"))
    return lambda event: not holds(event)


@hookimpl
def rulecast_add_conditions(registry):
    add = registry.add
    add("type", Strings("an event type glob like 'comment.*'"), type_from_config, plugin=__name__)
    add("path", Strings("a path glob like '/intranet/**'"), path_from_config, plugin=__name__)
    add("object_type", Strings("an object type like 'Document'"), object_type_from_config,
        plugin=__name__)
    add("field", FieldTest(), field_from_config, plugin=__name__)
    add("actor_in_group", Strings("a group name"), actor_in_group_from_config, plugin=__name__)
    # Strictly a bool: the string "false" would otherwise read as true.
    add("actor_is_owner", Typed(bool, "true or false"), actor_is_owner_from_config,
        plugin=__name__)
    add("expr", Typed(str, 'a Jinja2 expression in a string, like "data.text | length > 0"'),
        expr_from_config, plugin=__name__)
    add("all", Conditions(), all_from_config, plugin=__name__)
    add("any", Conditions(), any_from_config, plugin=__name__)
    add("not", Conditions(single=True), not_from_config, plugin=__name__)
