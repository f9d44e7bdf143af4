"""Log lines: a stable key=value (or JSON) record per happening, with its request id."""
import contextvars
import json
import logging
import os
import sys

__all__ = ["setup", "set_process", "request_id", "new_request_id", "fields"]

_process = None


def set_process(name):
    """Name this process in every line (``process=worker-1``) under a supervisor."""
    global _process
    _process = name

#: The id of the HTTP request or connection being served, for every line it causes.
request_id = contextvars.ContextVar("rulecast_request_id", default=None)


def new_request_id(given=None):
    """Use the client's X-Request-ID when it is sane, else make one; set it as current."""
    rid = given if given and len(given) <= 64 and given.isprintable() and " " not in given \
        else os.urandom(6).hex()
    request_id.set(rid)
    return rid


def fields(**values):
    """``extra=`` for a log call: values that follow the message as key=value."""
    return {"fields": values}


def _value(value):
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text)  # quoted, so a line always splits back into its pairs
    return text


def _context(values):
    pairs = dict(values)
    rid = request_id.get()
    if rid:
        pairs["request"] = rid
    if _process:
        pairs["process"] = _process
    return pairs


class KeyValueFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER message key=value … request=ID``"""

    def format(self, record):
        line = "%s %s %s %s" % (self.formatTime(record), record.levelname, record.name,
                                record.getMessage())
        pairs = _context(getattr(record, "fields", {}))
        if pairs:
            line += " " + " ".join("%s=%s" % (k, _value(v)) for k, v in pairs.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record):
        doc = {"time": self.formatTime(record), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        doc.update(_context(getattr(record, "fields", {})))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup(as_json=False, level=logging.INFO):
    """Send rulecast's logs to stderr as key=value lines, or JSON with ``as_json``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
