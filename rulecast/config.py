"""Configuration: defaults < rulecast.yaml < RULECAST_* variables < flags, all checked at once."""
import contextlib
import copy
import os
import secrets
import tempfile

import yaml
from marshmallow import ValidationError, fields

from rulecast.config_schema import DEFAULTS, LISTEN, ConfigSchema, parse_duration

__all__ = ["Config", "ConfigError", "load", "parse_duration", "current", "activate"]

DEFAULT_FILE = "rulecast.yaml"


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Section:
    """Plain attributes; `as_dict()` gives back the keys it was built from."""

    def __init__(self, values):
        self._keys = tuple(values)
        self.__dict__.update(values)

    def as_dict(self):
        return {key: (value.as_dict() if isinstance(value, Section) else
                      list(value) if isinstance(value, list) else value)
                for key, value in ((key, getattr(self, key)) for key in self._keys)}

    def __repr__(self):
        shown = (f"{k}={'***' if k in ('secret', 'api_keys') else v!r}"
                 for k, v in self.as_dict().items())
        return f"{type(self).__name__}({', '.join(shown)})"


class Config(Section):
    """The effective configuration, plus `host`, `port`, `source` and `api_key_file`."""

    def __init__(self, values, source=None, api_key_file=None):
        super().__init__(dict(values, limits=Section(values["limits"]),
                              history=Section(values["history"])))
        host, port = LISTEN.match(self.listen).groups()
        self.host, self.port = host.strip("[]"), int(port)
        self.source = source
        self.api_key_file = api_key_file


def load(path=None, overrides=None, environ=None) -> Config:
    """The Config from defaults < file < RULECAST_* < `overrides`; ConfigError lists every
    problem. Without `path`, ./rulecast.yaml is read when it exists."""
    if path is None and os.path.isfile(DEFAULT_FILE):
        path = DEFAULT_FILE
    # Each problem is ((rank, line), text) so that they print in file order, then env, flags.
    raw, problems = copy.deepcopy(DEFAULTS), []
    layers = [_read_file(os.fspath(path), problems)] if path else []
    layers += [_from_environ(os.environ if environ is None else environ),
               _from_overrides(overrides or {})]
    for values, _ in layers:
        _merge(raw, values)
    wheres = [where for _, where in reversed(layers)]
    source = os.path.abspath(path) if path else None
    try:
        values = ConfigSchema(base=os.path.dirname(source) if source else os.getcwd()).load(raw)
    except ValidationError as exc:
        problems += _located(exc.messages, wheres)
    if problems:
        raise ConfigError(text for _, text in sorted(problems, key=lambda p: p[0]))
    api_key_file = None
    try:
        if values["secret"] is None:
            values["secret"] = _kept_secret(values["var_dir"], "secret")
        if not values["api_keys"]:
            api_key_file = os.path.join(values["var_dir"], "api-key")
            values["api_keys"] = [_kept_secret(values["var_dir"], "api-key")]
    except ValueError as exc:
        raise ConfigError([_located({"var_dir": [str(exc)]}, wheres)[0][1]]) from None
    return Config(values, source=source, api_key_file=api_key_file)


def _read_file(path, problems):
    """The mapping in a YAML file, and where each key and item is: (key, ...) -> (rank, line,
    label)."""
    try:
        with open(path, encoding="utf-8") as f:
            loader = yaml.SafeLoader(f.read())
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        problems.append(((1, 0), f"{path}: no such file" if isinstance(exc, FileNotFoundError)
                         else f"{path}: cannot read: {why}"))
        return {}, {}
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        line = (exc.problem_mark or exc.context_mark).line + 1
        problems.append(((1, line), f"{path}:{line}: YAML syntax error: {exc.problem}"))
        return {}, {}
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        line = node.start_mark.line + 1
        problems.append(((1, line), f"{path}:{line}: expected a mapping of keys like "
                                    f"'listen: 127.0.0.1:8080', got a {type(data).__name__}"))
        return {}, {}
    where = {}
    _note_lines(node, (), path, where)
    return {str(key): value for key, value in data.items()}, where


def _note_lines(node, at, path, where):
    if isinstance(node, yaml.MappingNode):
        children = [(at + (key.value,), key, value) for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [(at + (index,), item, item) for index, item in enumerate(node.value)]
    else:
        return
    for child, marked, value in children:
        line = marked.start_mark.line + 1
        where[child] = (1, line, f"{path}:{line}")
        _note_lines(value, child, path, where)


def _from_environ(environ):
    """Values from RULECAST_<KEY> and RULECAST_<SECTION>_<KEY>; empty ones count as unset."""
    values, where = {}, {}
    for key, field in ConfigSchema(base="").load_fields.items():
        subfields = field.schema.load_fields if isinstance(field, fields.Nested) else {}
        for at, field in [((key,), field)] + [((key, sub), f) for sub, f in subfields.items()]:
            name = "RULECAST_" + "_".join(at).upper()
            value = _env_value(environ[name], field) if environ.get(name) else None
            if value is not None:
                section = values.setdefault(key, {}) if len(at) == 2 else values
                if isinstance(section, dict):
                    section[at[-1]] = value
                where[at] = (2, 0, name)
    return values, where


def _env_value(text, field):
    if isinstance(field, fields.List) and not text.lstrip().startswith("["):
        # YAML would read "a,b" as one string and "*" as an alias; commas are what is meant.
        return [item.strip() for item in text.split(",") if item.strip()]
    if isinstance(field, fields.String):
        # Verbatim: YAML would turn a secret of digits into an int and "1:30" into 90.
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _from_overrides(overrides):
    values = {key: value for key, value in overrides.items() if value is not None}
    paths = [(key,) for key in values] + [(key, sub) for key, value in values.items()
                                           if isinstance(value, dict) for sub in value]
    return values, {at: (3, 0, "--" + at[0].replace("_", "-")) for at in paths}


def _merge(raw, values):
    """Lay `values` over `raw`; sections key by key. An empty key means the default."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(DEFAULTS.get(key), dict):
            # A section below that is not a mapping stays, to be reported, not half replaced.
            if isinstance(raw[key], dict):
                raw[key].update((sub, v) for sub, v in value.items() if v is not None)
        elif value is not None:
            raw[key] = value


def _located(messages, wheres, at=()):
    """[((rank, line), "where: dotted.key: message")] for a marshmallow error dict; the value
    came from the highest layer that set its key or an enclosing one."""
    found = []
    for key, value in messages.items():
        path = at if key == "_schema" else at + (key,)
        if isinstance(value, dict):
            found += _located(value, wheres, path)
            continue
        rank, line, label = next((where[path[:n]] for where in wheres
                                  for n in range(len(path), 0, -1) if path[:n] in where),
                                 (0, 0, None))
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)[1:]
        found += [((rank, line), f"{label + ': ' if label else ''}{dotted}: {message}")
                  for message in (value if isinstance(value, list) else [value])]
    return found


def _kept_secret(var_dir, name):
    """The token in var_dir/name, generated on first use with mode 0600; first writer wins."""
    path = os.path.join(var_dir, name)
    try:
        if not os.path.exists(path):
            os.makedirs(var_dir, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=var_dir, prefix=f".{name}.") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
                f.flush()
                # link() never replaces, so processes starting together share one value.
                with contextlib.suppress(FileExistsError):
                    os.link(f.name, path)
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as exc:
        key = "api_keys" if name == "api-key" else name
        raise ValueError(f"cannot keep a generated {name} in {var_dir}: {exc.strerror}; make "
                         f"var_dir writable or set {key}") from None
    if len(value) < 16:
        raise ValueError(f"{path} holds fewer than 16 characters; delete it to get a new one")
    return value


_active = None


def activate(config):
    """Make ``config`` the one :func:`current` answers (the running server's)."""
    global _active
    _active = config


def current():
    """The running server's config, or else the one :func:`load` finds from here."""
    if _active is None:
        activate(load())
    return _active
