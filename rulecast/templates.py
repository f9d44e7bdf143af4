"""Templates and expressions in rules: Jinja2, sandboxed, strict, compiled once."""
from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
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


def _substitutions(ast):
    """A template's output as literal text and ``(name, attributes)`` for each
    ``{{ name.attr.attr }}``, when that is all it holds; None otherwise."""
    if len(ast.body) != 1 or type(ast.body[0]) is not nodes.Output:
        return None
    parts = []
    for node in ast.body[0].nodes:
        if type(node) is nodes.TemplateData:
            parts.append(node.data)
            continue
        attributes = []
        while type(node) is nodes.Getattr:
            attributes.insert(0, node.attr)
            node = node.node
        if type(node) is not nodes.Name:
            return None
        parts.append((node.name, tuple(attributes)))
    return parts


class Substitution(Template):
    """A template of text and ``{{ name.attr }}`` substitutions only, rendered without a
    Jinja2 context: each value is looked up with the sandbox's own getattr and turned
    into text by ``str`` as Jinja2's code does. An undefined value renders through
    Jinja2 after all, so that it raises the error Jinja2 raises."""

    __slots__ = ("parts",)

    def __init__(self, template, parts):
        super().__init__(template)
        self.parts = parts

    def render(self, context):
        out, getattr_ = [], self.env.getattr
        for part in self.parts:
            if part.__class__ is str:
                out.append(part)
                continue
            name, attributes = part
            value = context[name] if name in context else self.env.globals.get(name, _UNDEFINED)
            for attribute in attributes:
                if isinstance(value, Undefined):
                    break
                value = getattr_(value, attribute)
            if isinstance(value, Undefined):
                return super().render(context)
            out.append(str(value))
        return "".join(out)


_UNDEFINED = Undefined()


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
            ast = self.env.parse(source)
            parts = _substitutions(ast)  # before compiling, which may rewrite the tree
            template = self.env.from_string(ast)
        except TemplateSyntaxError as exc:
            raise RuleError("template syntax error in %r: %s" % (source, exc.message)) from None
        return Template(template) if parts is None else Substitution(template, parts)

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
        return self.renderer(compiled)(context)

    def renderer(self, compiled):
        """``render(context)`` for a structure from :meth:`compile_data`, its shape walked
        here, once, instead of on every rendering."""
        if isinstance(compiled, dict):
            items = [(k, self.renderer(v)) for k, v in compiled.items()]
            return lambda context: {k: render(context) for k, render in items}
        if isinstance(compiled, list):
            renders = [self.renderer(v) for v in compiled]
            return lambda context: [render(context) for render in renders]
        if hasattr(compiled, "render"):
            return compiled.render
        return lambda context: compiled

    def compile_data(self, data):
        """Compile every string in a JSON-like structure into a template, once."""
        if isinstance(data, dict):
            return {k: self.compile_data(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.compile_data(v) for v in data]
        if isinstance(data, str):
            return self.template(data)
        return data
