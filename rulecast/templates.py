"""Templates and expressions in rules: Jinja2, sandboxed, strict, compiled once."""
from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rulecast.registry import RuleError

__all__ = ["Templates", "Constant"]


class Constant:
    """A template without markup: rendering it is returning it."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def render(self, context):
        return self.text


class Template:
    """A compiled template, rendered as Jinja2's ``Template.render`` does minus its cost:
    that copies the template's globals, a ChainMap, key by key on every call, which is
    most of the time a short template takes."""

    __slots__ = ("env", "root", "name", "blocks")

    def __init__(self, template):
        self.env = template.environment
        self.root = template.root_render_func
        self.name = template.name
        self.blocks = template.blocks

    def context(self, context):
        # A template from a string has no globals of its own: the environment's are all.
        return Context(self.env, {**self.env.globals, **context}, self.name, self.blocks)

    def render(self, context):
        try:
            return self.env.concat(self.root(self.context(context)))
        except Exception:
            self.env.handle_exception()  # as Jinja2 does: the traceback points into the rule


class Templates:
    """Compiles rule text. Only rule files are ever template source: event data is
    context, so ``{{ 7*7 }}`` inside an event arrives as those characters."""

    def __init__(self):
        # Immutable: a template cannot change the event it renders (no list.append, …).
        self.env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

    def template(self, source):
        """A compiled template with ``render(context) -> str``."""
        if not isinstance(source, str):
            raise RuleError("a template must be a string, got %r" % (source,))
        if "{" not in source:
            return Constant(source)
        try:
            return Template(self.env.from_string(source))
        except TemplateSyntaxError as exc:
            raise RuleError("template syntax error in %r: %s" % (source, exc.message)) from None

    def expression(self, source):
        """A compiled expression: ``evaluate(context) -> value``."""
        if not isinstance(source, str) or not source.strip():
            raise RuleError("an expression must be a non-empty string, got %r" % (source,))
        try:
            compiled = self.env.compile_expression(source, undefined_to_none=False)
        except TemplateSyntaxError as exc:
            raise RuleError("expression syntax error in %r: %s" % (source, exc.message)) from None
        # The template that assigns the value to ``result``, run as TemplateExpression
        # runs it, minus the same copy of the globals as in Template.
        template = Template(compiled._template)

        def evaluate(context):
            scope = template.context(context)
            for _ in template.root(scope):
                pass
            return scope.vars["result"]
        return evaluate

    def render_data(self, compiled, context):
        """Render a structure from :meth:`compile_data`: its templates become strings."""
        if isinstance(compiled, dict):
            return {k: self.render_data(v, context) for k, v in compiled.items()}
        if isinstance(compiled, list):
            return [self.render_data(v, context) for v in compiled]
        if hasattr(compiled, "render"):
            return compiled.render(context)
        return compiled

    def compile_data(self, data):
        """Compile every string in a JSON-like structure into a template, once."""
        if isinstance(data, dict):
            return {k: self.compile_data(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.compile_data(v) for v in data]
        if isinstance(data, str):
            return self.template(data)
        return data
