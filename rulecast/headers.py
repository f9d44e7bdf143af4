"""Request headers for gevent's pywsgi, read without the email package."""

__all__ = ["Headers", "MAX_LINE", "MAX_HEADERS"]

#: The longest header line read, and the most header lines: http.client's limits.
MAX_LINE = 65536
MAX_HEADERS = 100


class Headers:
    """What pywsgi's handler asks of its ``MessageClass``: :attr:`status` (not empty
    when the headers could not be read, which pywsgi answers with 400), ``get`` and
    ``getheader``, ``del``, :attr:`typeheader` and the :attr:`headers` lines.

    pywsgi's own, http.client's parser, builds an email message for this: a seventh
    of what a WebSocket handshake costs the server.
    """

    __slots__ = ("status", "_fields")

    def __init__(self, fp, *_):
        #: Why the headers could not be read; "" when they could.
        self.status = ""
        self._fields = []  # (name, value) as sent: tuples of strings, which the GC untracks
        while True:
            line = fp.readline(MAX_LINE + 1)
            if len(line) > MAX_LINE:
                self.status = "header line longer than %d bytes" % MAX_LINE
                return
            if line in (b"\r\n", b"\n", b""):
                return
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and self._fields:  # obsolete folding (RFC 7230 3.2.4)
                name, value = self._fields[-1]
                self._fields[-1] = (name, value + " " + text.strip())
                continue
            name, colon, value = text.partition(":")
            if not colon or not name or name != name.strip():
                self.status = "malformed header line %r" % text[:100]
                return
            if len(self._fields) >= MAX_HEADERS:
                self.status = "more than %d header lines" % MAX_HEADERS
                return
            self._fields.append((name, value.strip()))

    def get(self, name, default=None):
        """The first value of header ``name`` (any case), else ``default``."""
        name = name.lower()
        for field, value in self._fields:
            if field.lower() == name:
                return value
        return default

    getheader = get

    def __contains__(self, name):
        return self.get(name) is not None

    def __delitem__(self, name):
        name = name.lower()
        self._fields = [f for f in self._fields if f[0].lower() != name]

    @property
    def typeheader(self):
        """The Content-Type, or None."""
        return self.get("content-type")

    @property
    def headers(self):
        """The header lines, ``"Name: value\\r\\n"`` each, as pywsgi builds its environ."""
        return ["%s: %s\r\n" % (name, value) for name, value in self._fields]
