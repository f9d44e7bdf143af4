"""The hooks an add-on implements; their docstrings are their documentation."""
import pluggy

hookspec = pluggy.HookspecMarker("rulecast")
hookimpl = pluggy.HookimplMarker("rulecast")


@hookspec
def rulecast_add_conditions(registry):
    """Register rule conditions.

    Call ``registry.add(name, schema, factory)`` for each: ``schema`` is a marshmallow
    Schema (options as a mapping) or Field (any shape) for the condition's options;
    ``factory(options, compiler)`` returns a checker ``check(event) -> bool``, built
    once when the rules load. ``compiler`` compiles templates, expressions and nested
    conditions (:class:`rulecast.registry.Compiler`). A checker may carry
    ``check.explain(event) -> str`` naming the value it tested, for `rulecast explain`.
    """


@hookspec
def rulecast_add_actions(registry):
    """Register rule actions.

    Call ``registry.add(name, schema, factory)`` for each: ``factory(options, compiler)``
    returns ``run(event, context)``, built once when the rules load. ``context`` has
    ``rule`` (the rule's name), ``publish(channel, data)``, ``webhook(request)`` and
    ``log(level, text)``; an exception from ``run`` is logged with the rule's name and
    does not stop the other actions.
    """


@hookspec(firstresult=True)
def rulecast_identify(request):
    """Return an :class:`rulecast.channels.Identity` for a connecting ``request``
    (a ``werkzeug.Request``), e.g. from the co-hosted app's session cookie, or None
    to fall back to rulecast's token. The first non-None answer wins.
    """


@hookspec(firstresult=True)
def rulecast_authorize(identity, channel):
    """Return True to let ``identity`` subscribe to ``channel`` beyond its own
    user/group/role channels and the ``public_topics``; False or None refuses.
    The first non-None answer wins.
    """


@hookspec
def rulecast_event_received(event):
    """Called with each accepted event before the rules run."""


@hookspec
def rulecast_message_published(message):
    """Called once with each :class:`rulecast.message.Message` after it got its id and
    was stored, in the process that published it. Keep it quick: it runs on the
    publishing path."""


@hookspec
def rulecast_configure(config, flask_app):
    """Called once at start-up with the loaded config and rulecast's Flask app, to add
    routes, blueprints or request hooks. ``POST {prefix}/api/publish`` and
    ``POST {prefix}/api/events`` are answered before Flask (every message goes through
    them), so Flask's request hooks do not see those two; use
    ``rulecast_event_received`` or ``rulecast_message_published`` for them."""
