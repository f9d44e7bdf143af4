"""Log lines: a stable key=value (or JSON) record per happening, with its request id."""
import contextvars
import itertools
import json
import logging
import os
import re
import sys
import time

__all__ = ["setup", "set_process", "request_id", "new_request_id", "fields"]

_process = None


def set_process(name):
    """Name this process in every line (``process=worker-1``) under a supervisor."""
    global _process
    _process = name

#: The id of the HTTP request or connection being served, for every line it causes.
request_id = contextvars.ContextVar("rulecast_request_id", default=None)


# Request ids: random per process, then counted, which costs no system call.
_ids = itertools.count()
_id_prefix = os.urandom(4).hex()


def _reseed():
    global _id_prefix
    _id_prefix = os.urandom(4).hex()


os.register_at_fork(after_in_child=_reseed)  # each worker its own ids


def new_request_id(given=None):
    """Use the client's X-Request-ID when it is sane, else make one; set it as current."""
    rid = given if given and len(given) <= 64 and given.isprintable() and " " not in given \
        else "%s%x" % (_id_prefix, next(_ids))
    request_id.set(rid)
    return rid


def fields(**values):
    """``extra=`` for a log call: values that follow the message as key=value."""
    return {"fields": values}


# What makes a value need quotes: a line must always split back into its pairs.
_NEEDS_QUOTES = re.compile(r'[ "=\\]')


def _value(value):
    kind = type(value)
    if kind is int or kind is float:
        return repr(value)
    text = value if kind is str else json.dumps(value, separators=(",", ":"))
    if not text or _NEEDS_QUOTES.search(text) or not text.isprintable():
        return json.dumps(text)
    return text


def _context(values):
    pairs = dict(values)
    rid = request_id.get()
    if rid:
        pairs["request"] = rid
    if _process:
        pairs["process"] = _process
    return pairs


class _Formatter(logging.Formatter):
    """Times as logging writes them, the date and clock part made once a second: an
    access line per request is the most frequent line there is."""

    _second = _stamp = None

    def formatTime(self, record, datefmt=None):
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = second
        return "%s,%03d" % (self._stamp, record.msecs)


class KeyValueFormatter(_Formatter):
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


class JsonFormatter(_Formatter):
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
    # Nothing rulecast prints needs the caller's file and line, the thread or the
    # process of a record: finding them cost a third of an access line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
