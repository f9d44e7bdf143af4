"""`rulecast genconfig`: a complete, commented rulecast.yaml with every key at its default.

The keys come from walking :class:`~rulecast.config_schema.ConfigSchema` (sections such
as ``limits`` key by key), the values from ``DEFAULTS``, the comments from
:data:`DESCRIPTIONS`. :func:`problems` lists a field without a description or a default,
and a description of no field; the tests require it to be empty, so this cannot drift
from the schema.
"""
import textwrap

import yaml
from marshmallow import fields

from rulecast.config_schema import DEFAULTS, ConfigSchema

__all__ = ["DESCRIPTIONS", "generate", "problems", "keys"]

#: One short description per configuration key, dotted for keys inside a section.
DESCRIPTIONS = {
    "listen": "Address the server listens on, HOST:PORT ('[::1]:8080' for IPv6).",
    "workers": "Worker processes: a number, or auto for one per CPU under a supervisor.",
    "var_dir": "Folder for the SQLite store, the pid file, worker status and generated "
               "secrets; relative to this file.",
    "secret": "Signs user tokens; at least 16 characters. null: generated once and kept in "
              "var_dir/secret. Set it, the same everywhere, when several hosts serve.",
    "api_keys": "Keys for the HTTP API (Authorization: Bearer KEY). Empty: one is generated "
                "and kept in var_dir/api-key.",
    "app": "WSGI application to co-host on the same port, as 'package.module:attribute'; "
           "null: none (a demo page at /).",
    "prefix": "URL path under which rulecast answers (WebSocket, SSE, HTTP API, widget).",
    "rules": "Rule files or folders of *.yaml rule files; relative to this file.",
    "plugins": "Modules of add-on plugins to load, like 'my_addon.plugin'.",
    "store": "Where messages are kept: 'sqlite:///path.db' (sqlite://// for an absolute "
             "path) or 'redis://HOST:PORT/DB'. null: SQLite in var_dir/rulecast.db.",
    "bus": "How workers share messages: nanomsg (one host) or 'redis://HOST:PORT/DB' "
           "(several hosts; the store must then be the same Redis).",
    "allowed_origins": "Browser origins besides the server's own that may connect, like "
                       "'https://*.example.org'; others get HTTP 403.",
    "public_topics": "Topic channel globs anonymous clients may subscribe to; 'news-*' means "
                     "'topic:news-*'.",
    "client_publish": "Channel patterns clients may publish to over the socket, like "
                      "'topic:board-*'. Empty: only the HTTP API and rules publish.",
    "limits": "Limits per connection and per worker.",
    "limits.max_message_bytes": "Largest message data, in bytes, a client or the API may "
                                "send.",
    "limits.max_connections": "WebSocket and SSE clients per worker; more are refused "
                              "(close code 1013).",
    "limits.send_queue": "Frames that may wait for a slow client; past this its backlog is "
                         "dropped and it must resume with since.",
    "limits.client_rate": "Frames per second a client may send; more are answered "
                          "rate_limited. 0: unlimited.",
    "history": "The history kept per channel, for resume and the inbox.",
    "history.max_per_channel": "Messages kept per channel; older ones are trimmed.",
    "history.max_age": "How long messages are kept: a duration like 30s, 15m, 1h, 7d, 2w, or "
                       "a number of seconds.",
}

_HEADER = """\
# rulecast.yaml: every key with its default (rulecast genconfig).
# Every key is optional: delete those you keep at their default.
# RULECAST_<KEY> environment variables override this file (RULECAST_LIMITS_SEND_QUEUE
# for limits.send_queue), and command-line flags override both."""


def keys(schema=None, at=()):
    """((dotted key path), field) for every key of ``schema`` (default: ConfigSchema),
    sections first and then their keys, in declaration order."""
    schema = ConfigSchema(base="") if schema is None else schema
    for name, field in schema.load_fields.items():
        path = at + (field.data_key or name,)
        yield path, field
        if isinstance(field, fields.Nested):
            yield from keys(field.schema, path)


def problems(schema=None, descriptions=None, defaults=None):
    """What keeps the generated file from being complete: keys of ``schema`` without a
    description or a default, and descriptions of no key. Empty when all is well."""
    descriptions = DESCRIPTIONS if descriptions is None else descriptions
    defaults = DEFAULTS if defaults is None else defaults
    found, known = [], set()
    for path, _ in keys(schema):
        dotted = ".".join(path)
        known.add(dotted)
        if not (descriptions.get(dotted) or "").strip():
            found.append(f"{dotted}: no description in rulecast.genconfig.DESCRIPTIONS")
        section = defaults
        for part in path[:-1]:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or path[-1] not in section:
            found.append(f"{dotted}: no default in rulecast.config_schema.DEFAULTS")
    found += [f"{dotted}: described in DESCRIPTIONS but not a configuration key"
              for dotted in sorted(set(descriptions) - known)]
    return found


def _comment(text, indent):
    return [indent + "# " + line for line in textwrap.wrap(text, 88 - len(indent) - 2)]


def yaml_value(value):
    """``value`` as it is written in rulecast.yaml, on one line."""
    if value is None:
        return "null"
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def generate():
    """The text of a rulecast.yaml that sets every key to its default, each with a
    comment. Raises RuntimeError when :func:`problems` finds any."""
    missing = problems()
    if missing:
        raise RuntimeError("cannot generate the configuration:\n" + "\n".join(missing))
    lines = [_HEADER]
    for path, field in keys():
        indent = "  " * (len(path) - 1)
        default = DEFAULTS
        for part in path:
            default = default[part]
        if len(path) == 1:
            lines.append("")
        lines += _comment(DESCRIPTIONS[".".join(path)], indent)
        if isinstance(field, fields.Nested):
            lines.append(f"{indent}{path[-1]}:")
        else:
            lines.append(f"{indent}{path[-1]}: {yaml_value(default)}")
    return "\n".join(lines) + "\n"
