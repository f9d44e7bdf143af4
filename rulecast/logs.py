"""Log lines: a stable key=value (or JSON) record per happening, with its request id."""
import contextvars
import itertools
import json
import logging
import os
import re
import sys
import time

__all__ = ["setup", "set_process", "request_id", "new_request_id", "fields", "access"]

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


_second = _stamp = None


def _clock(created):
    """``created`` (seconds) as logging writes times, local: the date and clock part
    made once a second, for an access line per request is the most frequent line."""
    global _second, _stamp
    second = int(created)
    if second != _second:
        _stamp, _second = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)), second
    return "%s,%03d" % (_stamp, (created - second) * 1000)


class KeyValueFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER message key=value … request=ID``"""

    def format(self, record):
        line = self.line(record.created, record.levelname, record.name, record.getMessage(),
                         getattr(record, "fields", {}))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line

    @staticmethod
    def line(created, level, logger, message, values):
        parts = ["%s %s %s %s" % (_clock(created), level, logger, message)]
        parts += ["%s=%s" % (k, _value(v)) for k, v in _context(values).items()]
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record):
        doc = self.doc(record.created, record.levelname, record.name, record.getMessage(),
                       getattr(record, "fields", {}))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)

    @staticmethod
    def doc(created, level, logger, message, values):
        doc = {"time": _clock(created), "level": level, "logger": logger, "message": message}
        doc.update(_context(values))
        return doc

    @classmethod
    def line(cls, *args):
        return json.dumps(cls.doc(*args), default=str)


_access = logging.getLogger("rulecast.access")
_handler = None  # the handler setup() installed


def access(**values):
    """Log ``request`` on ``rulecast.access`` with ``values``, as ``_access.info`` would.

    An access line per request is the most frequent line there is, and the logging
    module's path for a record (a LogRecord, filters and handlers up the loggers, each
    formatter call) cost a third of a publish in the running server. While logging is
    as :func:`setup` left it, the line is made by the same formatter's code and written
    to its stream directly; otherwise it takes the logging module's path."""
    if not _access.isEnabledFor(logging.INFO):
        return
    handler, root = _handler, logging.root
    if (handler is None or root.handlers != [handler] or _access.handlers or _access.filters
            or not isinstance(handler.formatter, (KeyValueFormatter, JsonFormatter))
            or not _access.propagate or _access.parent is not root or root.filters
            or handler.filters or handler.level > logging.INFO):
        _access.info("request", extra=fields(**values))
        return
    line = handler.formatter.line(time.time(), "INFO", "rulecast.access", "request", values)
    data = (line + "\n").encode("utf-8", "backslashreplace")
    stream = handler.stream
    handler.acquire()
    try:
        stream.flush()  # what others wrote through the stream goes first
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a file: a StringIO, say
            stream.write(line + "\n")
            stream.flush()
        else:
            # Past the text and buffer layers: the line is whole and ends in a newline.
            while data:
                data = data[os.write(fd, data):]
    except Exception:
        handler.handleError(logging.makeLogRecord({"msg": line}))
    finally:
        handler.release()


def setup(as_json=False, level=logging.INFO):
    """Send rulecast's logs to stderr as key=value lines, or JSON with ``as_json``."""
    # Nothing rulecast prints needs the caller's file and line, the thread or the
    # process of a record: finding them cost a third of an access line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    global _handler
    handler = _handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
