"""Reference tables generated from rulecast's own code, so that they cannot drift.

``rulecast-config``
    Every configuration key of :class:`rulecast.config_schema.ConfigSchema` (sections
    such as ``limits`` and ``history`` key by key) with its default from ``DEFAULTS``,
    its ``RULECAST_*`` variable and what it accepts, in the words of its validators;
    with its description from ``rulecast.genconfig.DESCRIPTIONS`` when that exists.

``rulecast-metrics``
    Every Prometheus metric the ``rulecast`` package creates (``Counter(...)``,
    ``Gauge(...)``… calls, found in its source), with its exposed name, type, labels
    and help text.

``rulecast-steps`` with ``:kind: conditions`` or ``:kind: actions``
    Every condition or action the built-in plugins register through
    ``rulecast.engine.compiler_for(rulecast.plugins.manager().hook)``: its name, its
    options (names, required flags, defaults, checks) and the factory's docstring.

Keys, conditions, actions and metrics become cross-reference targets:
``{confval}`limits.send_queue```,
``{rule-condition}`path```, ``{rule-action}`webhook```, ``{metric}`rulecast_connections```.
A key in ``DEFAULTS`` without a field, or a field without a default, is a build warning.
"""
import ast
import inspect
import os
import re

from docutils import nodes
from docutils.parsers.rst import directives
from marshmallow import Schema, ValidationError, fields, missing
from sphinx.domains.std import StandardDomain
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from rulecast.genconfig import yaml_value

log = logging.getLogger(__name__)

#: A value that no check accepts; its traces are cut from the messages shown.
PROBE = "\u2026"
_PROBE_SHOWN = re.compile(r"[,;]?\s*got\s+(?:%s|%s)\.?$" % (re.escape(repr(PROBE)),
                                                            re.escape(PROBE)))
#: marshmallow's own generic messages say nothing about a field: never shown.
_GENERIC = {message for cls in vars(fields).values()
            if isinstance(cls, type) and issubclass(cls, fields.Field)
            for base in cls.__mro__
            for message in vars(base).get("default_error_messages", {}).values()}
_TYPES = [(fields.Boolean, "true or false"), (fields.Integer, "integer"),
          (fields.Float, "number"), (fields.String, "string"), (fields.Dict, "mapping"),
          (fields.Nested, "mapping"), (fields.List, "list")]


# -- reading the code -------------------------------------------------------------------

def _first_paragraph(text):
    text = inspect.cleandoc(text or "")
    return " ".join(text.split("\n\n")[0].split())


def _own_doc(obj):
    """The docstring ``obj`` itself has (not one inherited from marshmallow)."""
    doc = obj.__doc__ if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if isinstance(obj, type):
        module = obj.__module__ or ""
        if module.startswith("marshmallow") or doc is None:
            return ""
    return _first_paragraph(doc)


def _format(message, **values):
    """A message as a user reads it: placeholders filled, the probed value cut."""
    try:
        text = str(message).format(input=PROBE, **values)
    except (KeyError, IndexError, ValueError):
        text = str(message)
    text = _PROBE_SHOWN.sub("", text.strip())
    return text.replace(repr(PROBE), PROBE)


def _probe(function):
    """The message ``function`` gives for a value nothing accepts, or its docstring."""
    try:
        function(PROBE)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, list) else [exc.messages]
        return "; ".join(_format(m) for m in messages if isinstance(m, str))
    except Exception:  # noqa: BLE001 -- a check that cannot take a string: use its doc
        pass
    return _own_doc(function)


def _validator_text(validator):
    error = getattr(validator, "error", None)
    if error is None:  # a plain function
        return _probe(validator)
    values = {name: getattr(validator, name) for name in ("min", "max", "equal")
              if hasattr(validator, name)}
    if hasattr(validator, "choices"):
        values["choices"] = ", ".join(map(str, validator.choices))
        values["labels"] = ", ".join(map(str, getattr(validator, "labels", ())))
    if hasattr(validator, "regex"):
        values["regex"] = validator.regex.pattern
    return _format(error, **values)


def _is_marshmallow(field):
    return type(field).__module__.startswith("marshmallow")


def _type_name(field):
    for cls, name in _TYPES:
        if isinstance(field, cls):
            return name
    return ""


def _own_words(field):
    """What a field of rulecast's own class says it expects: the message it gives for a
    missing or wrong value, else its class docstring."""
    for key in ("null", "invalid"):
        message = field.error_messages.get(key)
        if message and message not in _GENERIC:
            return _format(message)
    doc = _own_doc(type(field)).rstrip(".")
    # A class docstring reads as a phrase here: "A glob over …" → "a glob over …".
    return doc[:1].lower() + doc[1:] if not doc[1:2].isupper() else doc


def describe_field(field, lead=""):
    """What ``field`` accepts, in its own messages: ``lead`` (e.g. its "required"
    message), its type or own words, its checks."""
    parts = [lead] if lead else []
    if not _is_marshmallow(field):
        if not lead:
            parts.append(_own_words(field))
    elif isinstance(field, fields.List):
        inner = describe_field(field.inner)
        parts.append("a list; each item: " + inner if inner else "a list")
    elif isinstance(field, fields.Dict):
        text = "" if lead else "a mapping"
        for what, sub in (("keys", field.key_field), ("values", field.value_field)):
            described = describe_field(sub) if sub is not None else ""
            if described and described != _type_name(sub):
                text += "%s%s: %s" % ("; " if text else "", what, described)
        parts.append(text)
    elif isinstance(field, fields.Function) and field.deserialize_func is not None:
        parts.append(_probe(field.deserialize_func))
    elif not lead:  # a lead message already says what it is
        parts.append(_type_name(field))
    parts += [_validator_text(v) for v in field.validators]
    if field.allow_none:
        parts.append("or null")
    return "; ".join(p for p in parts if p)


def config_rows():
    """(dotted key, default, environment variable, description, accepts) per
    configuration key, and what ``rulecast genconfig`` finds wrong with the schema,
    DEFAULTS and the descriptions (each becomes a build warning)."""
    from rulecast import genconfig
    from rulecast.config_schema import DEFAULTS

    rows = []
    for path, field in genconfig.keys():
        if isinstance(field, fields.Nested):
            continue  # a section: its keys follow
        default = DEFAULTS
        for part in path:
            default = default.get(part) if isinstance(default, dict) else None
        dotted = ".".join(path)
        rows.append((dotted, yaml_value(default), "RULECAST_" + "_".join(path).upper(),
                     genconfig.DESCRIPTIONS.get(dotted, ""), describe_field(field)))
    return rows, genconfig.problems()


def builtin_steps(kind):
    """The registry.Step objects of ``kind`` ("conditions"/"actions") registered by the
    built-in plugins, in registration order."""
    from rulecast import engine, plugins

    compiler = engine.compiler_for(plugins.manager().hook)
    registry = compiler.conditions if kind == "conditions" else compiler.actions
    return [step for step in registry.steps.values() if step.plugin in plugins.BUILTINS]


def option_rows(field):
    """(option, required, default, accepts) for a step whose options are a Schema,
    else None."""
    if not (isinstance(field, fields.Nested) and isinstance(field.schema, Schema)):
        return None
    rows = []
    for name, option in field.schema.load_fields.items():
        default = option.load_default
        if callable(default):
            default = default()
        required = option.error_messages.get("required")
        lead = (_format(required) if option.required and required and required not in _GENERIC
                else "")
        accepts = describe_field(option, lead)
        rows.append((option.data_key or name, "yes" if option.required else "no",
                     "" if default is missing else yaml_value(default),
                     accepts))
    return rows


_METRIC_TYPES = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram",
                 "Summary": "summary", "Info": "info", "Enum": "enum"}


def metric_rows():
    """(exposed name, type, labels, help, module) for every metric the rulecast package
    creates, read from its source so that metrics made only at run time count too."""
    import rulecast

    root = os.path.dirname(os.path.abspath(rulecast.__file__))
    rows = []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
            module = module.removesuffix(".__init__")
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for call in ast.walk(tree):
                if not isinstance(call, ast.Call):
                    continue
                func = call.func
                kind = _METRIC_TYPES.get(getattr(func, "id", None) or getattr(func, "attr", ""))
                if kind is None or len(call.args) < 2:
                    continue
                try:
                    metric, text = (ast.literal_eval(arg) for arg in call.args[:2])
                    labels = (ast.literal_eval(call.args[2]) if len(call.args) > 2 else
                              next((ast.literal_eval(k.value) for k in call.keywords
                                    if k.arg == "labelnames"), ()))
                except ValueError:
                    continue  # not a literal name: not a metric definition we can show
                if not (isinstance(metric, str) and metric.startswith("rulecast_")):
                    continue
                exposed = metric + "_total" if kind == "counter" else metric
                rows.append((exposed, kind, ", ".join(labels), text, module))
    return sorted(rows)


# -- docutils nodes ---------------------------------------------------------------------

_INLINE = re.compile(r"``(.+?)``|:[\w:]+:`~?(.+?)`|`([^`]+)`"
                     # Quoted values in check messages: shown as code, as typed.
                     r"|(?<!\w)'([^'\s][^']*?)'(?!\w)|(?<!\w)\"([^\"\s][^\"]*?)\"(?!\w)")


def inline(text):
    """Nodes for a docstring or message phrase: ``code``, :roles:`x` and quoted
    values become literals (so no typographic quotes change what to type)."""
    out, at = [], 0
    for match in _INLINE.finditer(text):
        if match.start() > at:
            out.append(nodes.Text(text[at:match.start()]))
        out.append(nodes.literal(text=next(g for g in match.groups() if g is not None)))
        at = match.end()
    if at < len(text):
        out.append(nodes.Text(text[at:]))
    return out


def paragraph(*children):
    return nodes.paragraph("", "", *children)


def table(headers, rows, widths, classes=()):
    tgroup = nodes.tgroup(cols=len(headers))
    for width in widths:
        tgroup += nodes.colspec(colwidth=width)
    head = nodes.row()
    for header in headers:
        head += nodes.entry("", paragraph(nodes.Text(header)))
    tgroup += nodes.thead("", head)
    body = nodes.tbody()
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            if isinstance(cell, nodes.Node):
                entry += cell
            elif isinstance(cell, list):
                entry += paragraph(*cell)
            elif cell:
                entry += paragraph(*inline(cell))
            row += entry
        body += row
    tgroup += body
    return nodes.table("", tgroup, classes=["rulecast-reference", *classes])


class _Generated(SphinxDirective):
    """Remembers its document, so that a rebuild always re-runs it (the code may have
    changed while the page did not)."""

    def note_generated(self):
        self.env.rulecast_generated = getattr(self.env, "rulecast_generated", set())
        self.env.rulecast_generated.add(self.env.docname)

    def target(self, objtype, name):
        node_id = "%s-%s" % (objtype, nodes.make_id(name))
        std = self.env.get_domain("std")
        std.note_object(objtype, name, node_id, location=(self.env.docname, self.lineno))
        return node_id


class ConfigDirective(_Generated):
    """``rulecast-config``: the table of every configuration key."""

    has_content = False

    def run(self):
        self.note_generated()
        rows, problems = config_rows()
        for problem in problems:
            log.warning("rulecast-config: %s", problem, location=self.get_location(),
                        type="rulecast", subtype="config")
        cells = []
        for key, default, env, description, accepts in rows:
            node_id = self.target("confval", key)
            name = paragraph(nodes.literal(text=key))
            name["ids"].append(node_id)
            variable = paragraph(nodes.literal(text=env))
            variable["classes"].append("rulecast-env")
            about = nodes.container()
            if description:
                about += paragraph(*inline(description))
            checks = paragraph(*([nodes.emphasis(text="accepts: ")] if description else []),
                               *inline(accepts))
            checks["classes"].append("rulecast-accepts")
            about += checks
            cells.append((nodes.container("", name, variable), [nodes.literal(text=default)],
                          about))
        return [table(["key and environment variable", "default", "meaning"], cells,
                      [34, 16, 50], classes=["rulecast-config"])]


class MetricsDirective(_Generated):
    """``rulecast-metrics``: the table of every Prometheus metric."""

    has_content = False

    def run(self):
        self.note_generated()
        rows = metric_rows()
        # The source reading must at least find what rulecast.metrics.Metrics registers.
        from rulecast.metrics import Metrics
        found = {row[0] for row in rows}
        for family in Metrics().registry.collect():
            exposed = family.name + "_total" if family.type == "counter" else family.name
            if exposed not in found:
                log.warning("rulecast-metrics: %s is registered by rulecast.metrics.Metrics "
                            "but was not found in the source", exposed,
                            location=self.get_location(), type="rulecast", subtype="metrics")
        cells = []
        for exposed, kind, labels, text, module in rows:
            node_id = self.target("metric", exposed)
            cells.append(([nodes.inline("", "", nodes.literal(text=exposed), ids=[node_id])],
                          kind, [nodes.literal(text=labels)] if labels else "", text,
                          [nodes.literal(text=module)]))
        return [table(["metric", "type", "labels", "meaning", "defined in"], cells,
                      [34, 10, 10, 40, 20], classes=["rulecast-metrics"])]


class StepsDirective(_Generated):
    """``rulecast-steps`` with ``:kind: conditions|actions``: one entry per built-in step."""

    has_content = False
    option_spec = {"kind": lambda arg: directives.choice(arg, ("conditions", "actions"))}

    def run(self):
        self.note_generated()
        kind = self.options.get("kind")
        if kind is None:
            raise self.error("rulecast-steps needs :kind: conditions or :kind: actions")
        objtype = "rule-condition" if kind == "conditions" else "rule-action"
        steps = builtin_steps(kind)
        if not steps:
            log.warning("rulecast-steps: the built-in plugins register no %s", kind,
                        location=self.get_location(), type="rulecast", subtype="steps")
        require_doc = self.config.rulecast_steps_require_docstring
        out = []
        for step in steps:
            node_id = self.target(objtype, step.name)
            item = nodes.container(classes=["rulecast-step", objtype])
            title = paragraph(nodes.strong("", "", nodes.literal(text=step.name)))
            title["ids"].append(node_id)
            item += title
            doc = _first_paragraph(inspect.getdoc(step.factory) or "")
            if doc:
                item += paragraph(*inline(doc))
            elif require_doc:
                log.warning("rulecast-steps: %s %r: factory %s.%s has no docstring",
                            kind[:-1], step.name, step.factory.__module__,
                            step.factory.__qualname__, location=self.get_location(),
                            type="rulecast", subtype="docstring")
            rows = option_rows(step.field)
            if rows is not None:
                rows = [([nodes.literal(text=name)], required,
                         [nodes.literal(text=default)] if default else "", accepts)
                        for name, required, default, accepts in rows]
            if rows is None:
                item += paragraph(nodes.emphasis(text="options: "),
                                  *inline(describe_field(step.field) or "any value"))
            else:
                item += table(["option", "required", "default", "accepts"], rows,
                              [16, 10, 14, 60], classes=["rulecast-options"])
            item += paragraph(nodes.emphasis(text="factory: "),
                              nodes.literal(text="%s.%s" % (step.factory.__module__,
                                                            step.factory.__qualname__)))
            out.append(item)
        return out


# -- keeping generated pages fresh ------------------------------------------------------

def _outdated(app, env, added, changed, removed):
    return sorted(getattr(env, "rulecast_generated", set()) - set(removed))


def _purge(app, env, docname):
    getattr(env, "rulecast_generated", set()).discard(docname)


def _merge(app, env, docnames, other):
    env.rulecast_generated = getattr(env, "rulecast_generated", set())
    env.rulecast_generated |= getattr(other, "rulecast_generated", set()) & set(docnames)


def setup(app):
    if "confval" not in StandardDomain.object_types:  # Sphinx before 7.4
        app.add_crossref_type("confval", "confval", ref_nodeclass=nodes.literal)
    app.add_crossref_type("rule-condition", "rule-condition", ref_nodeclass=nodes.literal)
    app.add_crossref_type("rule-action", "rule-action", ref_nodeclass=nodes.literal)
    app.add_crossref_type("metric", "metric", ref_nodeclass=nodes.literal)
    app.add_config_value("rulecast_steps_require_docstring", False, "env")
    app.add_directive("rulecast-config", ConfigDirective)
    app.add_directive("rulecast-steps", StepsDirective)
    app.add_directive("rulecast-metrics", MetricsDirective)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"version": "1", "env_version": 1, "parallel_read_safe": True,
            "parallel_write_safe": True}
