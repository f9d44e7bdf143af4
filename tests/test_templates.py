"""Templates and expressions: rendered exactly as Jinja2 itself renders them."""
import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rulecast.templates import Substitution, Template, Templates

#: What Jinja2 itself, configured as rulecast configures it, makes of the same source.
JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

CONTEXT = {"type": "comment.added", "id": 7, "time": "2026-01-01T00:00:00Z",
           "actor": {"id": "bob", "name": "Bob", "groups": ["a"], "items": 3},
           "object": {"owner": None, "title": "Q3 {{ plan }}", "n": 1.5, "deep": {"x": [1]}},
           "data": {"text": "hello " * 30}}

SOURCES = [
    "{{ actor.name }} on {{ object.title }}",
    "user:{{ actor.id }}",
    "{{ object.owner }}|{{ object.n }}|{{ id }}|{{ actor.groups }}|{{ object.deep }}",
    "{{ object.deep.x }}",
    "{{ actor.items }}",  # a dict method, as the sandbox's getattr finds it first
    "{{ data.text | truncate(20) }}",
    "{% for g in actor.groups %}{{ g }},{% endfor %}",
    "{% set who = actor.name %}{{ who }}",
    "{{ range }} {{ namespace }}",  # Jinja2's globals
    "{{ 1 + 2 }} {{ actor.name ~ '!' }}",
    "  {{- actor.name -}}  \n",
    "{{ actor.name }}\n",
    "{{ actor.missing }}",
    "{{ nothing }}",
    "{{ nothing.at.all }}",
    "{{ object.owner.id }}",
    "{{ actor.pop }}",
    "{{ actor.__class__ }}",
    "{{ type.upper }} {{ type.__len__ }}",
]


def outcome(render, context):
    try:
        return "ok", render(context)
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("source", SOURCES)
def test_render_as_jinja_renders(source):
    """A template renders to Jinja2's text, or fails with Jinja2's error and message."""
    ours = Templates().template(source)
    assert outcome(ours.render, CONTEXT) == outcome(JINJA.from_string(source).render, CONTEXT)


@pytest.mark.parametrize("source", [
    "data.text | length > 0", "actor.name == 'Bob'", "actor.missing", "nothing",
    "actor.groups[0]", "range(3) | list", "actor.pop", "type is string"])
def test_expression_as_jinja_evaluates(source):
    """An expression gives Jinja2's value, or fails with Jinja2's error and message."""
    ours = Templates().expression(source)
    theirs = JINJA.compile_expression(source, undefined_to_none=False)
    # bool(), as the expr condition takes it: an undefined value raises only then.
    assert outcome(lambda c: bool(ours(c)), CONTEXT) == outcome(lambda c: bool(theirs(**c)),
                                                                CONTEXT)


def test_plain_substitutions_skip_the_jinja_context():
    """Text and dotted names alone make a Substitution; anything more, a Template."""
    templates = Templates()
    assert type(templates.template("user:{{ object.owner }}")) is Substitution
    assert type(templates.template("{{ data.text | truncate(80) }}")) is Template
    assert type(templates.template("{{ data['text'] }}")) is Template
