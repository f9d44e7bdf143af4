"""Rules from YAML files: read with line numbers, checked, compiled into callables once."""
import difflib
import fnmatch
import os
import re

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from rulecast.registry import RuleError

__all__ = ["Problem", "Rule", "RuleSet", "load", "read_yaml"]


class Problem:
    """One problem in the rules, printed as ``file:line: rule NAME: where: what``."""

    __slots__ = ("file", "line", "rule", "where", "what")

    def __init__(self, file, line, what, rule=None, where=None):
        self.file, self.line, self.what, self.rule, self.where = file, line, what, rule, where

    def __str__(self):
        parts = ["%s:%s" % (self.file, self.line) if self.line else self.file]
        if self.rule:
            parts.append("rule %s" % self.rule)
        if self.where:
            parts.append(self.where)
        return ": ".join(parts + [self.what])


# -- YAML with line numbers ---------------------------------------------------------------

class LineDict(dict):
    """A mapping that knows its line and the line of each key."""
    line = 0

    def __init__(self):
        super().__init__()
        self.lines = {}


class LineList(list):
    """A sequence that knows the line of each item."""

    def __init__(self):
        super().__init__()
        self.lines = []


class _Loader(yaml.SafeLoader):
    """SafeLoader that records lines, and keeps keys like ``on`` strings: YAML 1.1
    would read the rule key ``on:`` as True."""


def _mapping(loader, node):
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:bool":
            key = key_node.value
        else:
            key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _sequence(loader, node):
    result = LineList()
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.lines.append(item.start_mark.line + 1)
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _sequence)


def read_yaml(text):
    """YAML text as LineDict/LineList; yaml.YAMLError on bad syntax."""
    return yaml.load(text, Loader=_Loader)


# -- rules --------------------------------------------------------------------------------

class _Globs(fields.Field):
    """One event-type glob or a list of them."""

    default_error_messages = {"invalid": "expected an event type or glob like 'comment.*', "
                                         "or a list of them"}

    def _deserialize(self, value, attr, data, **kwargs):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(
                isinstance(i, str) and i.strip() for i in items):
            raise self.make_error("invalid")
        return tuple(items)


class RuleSchema(Schema):
    """A rule's own keys; its conditions and actions are checked by their registries."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Regexp(
        r"^[\w.\-]+$", error="must be letters, digits, '.', '-' or '_', got {input!r}"))
    on = _Globs(required=True)
    if_ = fields.List(fields.Raw(), data_key="if", load_default=list)
    then = fields.List(fields.Raw(), required=True, validate=validate.Length(
        min=1, error="needs at least one action"))
    stop = fields.Boolean(load_default=False)
    description = fields.String(load_default="")


class Rule:
    """A compiled rule, with its hit and failure counts."""

    def __init__(self, name, on, conditions, actions, stop, file, line, description=""):
        self.name = name
        self.on = on
        #: ``(label, line, check)`` for each condition, in order.
        self.conditions = conditions
        #: ``(label, line, run)`` for each action, in order.
        self.actions = actions
        self.stop = stop
        self.file = file
        self.line = line
        self.description = description
        self.hits = 0
        self.failures = 0
        #: The rule's children of the engine's rule_hits and rule_failures counters.
        self.hit_counter = self.failure_counter = None
        self._on = re.compile("|".join("(?:%s)" % fnmatch.translate(g) for g in on))

    def wants(self, event_type):
        return self._on.match(event_type) is not None

    def as_dict(self):
        return {"name": self.name, "file": self.file, "line": self.line, "on": list(self.on),
                "description": self.description, "hits": self.hits, "failures": self.failures}


class RuleSet:
    """The loaded rules in file order, with the problems met loading them."""

    def __init__(self, rules, problems):
        self.rules = rules
        self.problems = problems
        self._by_type = {}

    def for_type(self, event_type):
        """The rules whose ``on`` matches, cached per type: matching globs is per type,
        not per event."""
        rules = self._by_type.get(event_type)
        if rules is None:
            if len(self._by_type) > 10000:
                self._by_type.clear()  # types are caller-chosen: keep the cache bounded
            rules = self._by_type[event_type] = [r for r in self.rules if r.wants(event_type)]
        return rules


def _files(paths, problems):
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    if name.endswith((".yaml", ".yml")):
                        yield os.path.join(root, name)
        elif os.path.isfile(path):
            yield path
        else:
            problems.append(Problem(path, 0, "no such rules file or folder"))


def _schema_problems(exc, item, file, name):
    for key, messages in exc.messages.items():
        line = item.lines.get(key, item.line) if isinstance(item, LineDict) else 0
        if messages == ["Unknown field."]:
            close = difflib.get_close_matches(str(key), ["name", "on", "if", "then", "stop",
                                                         "description"], n=1)
            what = "unknown key;%s known: description, if, name, on, stop, then" % (
                " did you mean %r?" % close[0] if close else "")
        else:
            what = " ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
        yield Problem(file, line, what, rule=name, where=key)


def _compile_steps(kind, items, compile, file, name, problems):
    compiled = []
    for i, item in enumerate(items):
        label = "%s[%d]" % (kind, i)
        if isinstance(item, dict) and len(item) == 1:
            label += " %s" % next(iter(item))
        line = items.lines[i] if isinstance(items, LineList) else 0
        try:
            compiled.append((label, line, compile(item, label)))
        except RuleError as exc:
            problems.append(Problem(file, line, exc.what, rule=name, where=exc.where or label))
    return compiled


def _load_rule(item, file, seen, compiler, problems):
    line = getattr(item, "line", 0)
    if not isinstance(item, dict):
        problems.append(Problem(file, line, "a rule is a mapping with name, on, if and then; "
                                            "got %r" % (item,)))
        return None
    name = item.get("name") if isinstance(item.get("name"), str) else None
    before = len(problems)
    try:
        spec = RuleSchema().load(item)
    except ValidationError as exc:
        problems.extend(_schema_problems(exc, item, file, name))
        return None
    if name in seen:
        problems.append(Problem(file, line, "duplicate rule name; first at %s" % seen[name],
                                rule=name, where="name"))
        return None
    conditions = _compile_steps("if", item.get("if") or [], compiler.condition, file, name,
                                problems)
    actions = _compile_steps("then", item["then"], compiler.action, file, name, problems)
    if len(problems) > before:
        return None
    seen[name] = "%s:%d" % (file, line)
    return Rule(name, spec["on"], conditions, actions, spec["stop"], file, line,
                spec["description"])


def load(paths, compiler):
    """Every rule in ``paths`` (files or folders of .yaml). A bad rule is reported in
    ``problems`` and skipped; the others load."""
    rules, problems, seen = [], [], {}
    for file in _files(paths, problems):
        shown = os.path.relpath(file) if not os.path.relpath(file).startswith("..") else file
        try:
            with open(file, encoding="utf-8") as f:
                document = read_yaml(f.read())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problems.append(Problem(shown, mark.line + 1 if mark else 0, "YAML syntax error: %s"
                                    % (getattr(exc, "problem", None) or exc)))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(shown, 0, "cannot read: %s" % exc))
            continue
        if document is None:
            continue
        if not isinstance(document, list):
            problems.append(Problem(shown, getattr(document, "line", 1),
                                    "a rules file holds a list of rules (- name: …)"))
            continue
        for item in document:
            rule = _load_rule(item, shown, seen, compiler, problems)
            if rule is not None:
                rules.append(rule)
    return RuleSet(rules, problems)
