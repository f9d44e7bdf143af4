"""The registries of conditions and actions that plugins fill, and what factories get."""
from marshmallow import Schema, ValidationError, fields

__all__ = ["Registry", "Step", "Compiler", "RuleError"]


class RuleError(ValueError):
    """A problem in a rule, found while it is loaded; ``where`` says which part."""

    def __init__(self, what, where=""):
        super().__init__(what)
        self.what = what
        self.where = where


class Step:
    """A registered condition or action: its name, options field and factory."""

    __slots__ = ("name", "field", "factory", "plugin")

    def __init__(self, name, field, factory, plugin):
        self.name = name
        self.field = field
        self.factory = factory
        self.plugin = plugin

    def load(self, options):
        """Validated options; raises marshmallow.ValidationError with the field's messages."""
        return self.field.deserialize(options)


def as_field(schema):
    """A marshmallow field for options given as a Schema (class or instance) or a field."""
    if isinstance(schema, fields.Field):
        return schema
    if isinstance(schema, type) and issubclass(schema, Schema):
        schema = schema()
    if isinstance(schema, Schema):
        return fields.Nested(schema)
    raise TypeError("schema must be a marshmallow Schema or Field, got %r" % (schema,))


class Registry:
    """Named steps of one kind ("condition" or "action"), filled by the plugin hooks."""

    def __init__(self, kind):
        self.kind = kind
        self.steps = {}

    def add(self, name, schema, factory, plugin=None):
        """Register ``name``: options checked by ``schema`` (a marshmallow Schema or
        Field), compiled once by ``factory(options, compiler)`` into a callable."""
        if name in self.steps:
            raise ValueError("%s %r is registered twice (by %s and %s)"
                             % (self.kind, name, self.steps[name].plugin, plugin))
        self.steps[name] = Step(name, as_field(schema), factory, plugin)

    def get(self, name):
        """The step called ``name``; RuleError naming the known ones otherwise."""
        try:
            return self.steps[name]
        except KeyError:
            raise RuleError("unknown %s %r; known: %s"
                            % (self.kind, name, ", ".join(sorted(self.steps)))) from None

    def names(self):
        return sorted(self.steps)


def _messages(exc):
    """marshmallow's messages as one line: 'to: Not a valid list.; title: …'."""
    def flat(messages, at=""):
        if isinstance(messages, dict):
            for key, value in messages.items():
                if key == "_schema":  # marshmallow's name for "the options as a whole"
                    yield from flat(value, at)
                else:
                    yield from flat(value, "%s.%s" % (at, key) if at else str(key))
        elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
            yield "%s: %s" % (at, " ".join(messages)) if at else " ".join(messages)
        else:
            for i, value in enumerate(messages):
                yield from flat(value, "%s[%d]" % (at, i))
    return "; ".join(flat(exc.messages))


class Compiler:
    """What a factory gets beside its options: templates, and nested conditions.

    One compiler serves one rule set; every call turns text into callables once, at
    load time, so matching an event runs no parser.
    """

    def __init__(self, conditions, actions, templates):
        self.conditions = conditions
        self.actions = actions
        self.templates = templates

    def template(self, source):
        """A compiled template: ``render(context) -> str``. Raises RuleError."""
        return self.templates.template(source)

    def expression(self, source):
        """A compiled sandboxed expression: ``evaluate(context) -> value``."""
        return self.templates.expression(source)

    def condition(self, config, where=""):
        """A checker ``check(event) -> bool`` for a one-key mapping ``{name: options}``."""
        return self._step(self.conditions, config, where)

    def action(self, config, where=""):
        """A runner ``run(event, context)`` for a one-key mapping ``{name: options}``."""
        return self._step(self.actions, config, where)

    def _step(self, registry, config, where):
        if not isinstance(config, dict) or len(config) != 1:
            raise RuleError("a %s is a mapping with one key, its name, like "
                            "{%s: …}; got %r" % (registry.kind, registry.names()[0]
                                                 if registry.steps else "name", config), where)
        (name, options), = config.items()
        step = registry.get(str(name))
        try:
            options = step.load(options)
        except ValidationError as exc:
            raise RuleError("%s %s: %s" % (registry.kind, name, _messages(exc)), where) from None
        try:
            compiled = step.factory(options, self)
        except RuleError as exc:
            # A nested step's place is inside this one's: if[2] all.any[0].
            inner = "%s.%s" % (where, exc.where) if where and exc.where else exc.where or where
            raise RuleError(exc.what, inner) from None
        compiled.step_name = name
        return compiled
