"""gevent-websocket 0.10.1, owned: size limit, masking, close codes, Origin check."""
import base64
import fnmatch
import hashlib
import re
import socket
import struct
from urllib.parse import urlsplit

from gevent.pywsgi import WSGIServer
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, Stream, WebSocket as _WebSocket

from rulecast.headers import Headers
from rulecast.logs import access
from rulecast.message import ws_frame

# Tokens in URLs (?token=) must never reach a log file.
_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s]*")

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# RFC 6455 §7.4: codes a peer may put in a close frame.
_VALID_CLOSE = set(range(1000, 1004)) | set(range(1007, 1012)) | set(range(3000, 5000))


class Close(Exception):
    """The connection must end with this close code (RFC 6455 §7.4)."""

    def __init__(self, code, reason=""):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def close_frame(code, reason=""):
    """A close frame carrying its status code, which 0.10.1's close() never sends."""
    return ws_frame(struct.pack("!H", code) + reason.encode("utf-8")[:120], OP_CLOSE)


def _unmask(payload, mask):
    # XOR as one big integer: ~100x faster than 0.10.1's per-byte Python loop.
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class WebSocket(_WebSocket):
    """Reads client messages strictly; never writes by itself.

    Every byte the server sends goes through :attr:`send`, the owning connection's
    queue, so a pong or a close frame can never interleave with a message half
    written to the socket.
    """

    __slots__ = ("max_size", "send")

    def __init__(self, environ, stream, handler, max_size):
        super().__init__(environ, stream, handler)
        #: Largest message accepted, in bytes; larger → close 1009 before it is read.
        self.max_size = max_size
        #: Callable taking ready-made frame bytes; set by the connection.
        self.send = None

    def read_frame(self):
        header = Header.decode_header(self.stream)
        if header.flags:
            raise Close(1002, "reserved bits set")
        if not header.mask:
            raise Close(1002, "client frames must be masked")
        if header.length > self.max_size:
            raise Close(1009, "frame larger than %d bytes" % self.max_size)
        payload = self.raw_read(header.length) if header.length else b""
        if len(payload) != header.length:
            raise WebSocketError("unexpected EOF reading frame payload")
        return header, _unmask(payload, header.mask)

    def receive(self):
        """The next text message as str; None when the peer closed or went away.
        Raises :class:`Close` when the peer broke the protocol or the limits."""
        opcode, parts, size = None, [], 0
        try:
            while True:
                header, payload = self.read_frame()
                op = header.opcode
                if op == OP_PING:
                    self.send(ws_frame(payload, OP_PONG))
                    continue
                if op == OP_PONG:
                    continue
                if op == OP_CLOSE:
                    self._answer_close(payload)
                    return None
                if op in (OP_TEXT, OP_BINARY):
                    if opcode is not None:
                        raise Close(1002, "new message inside a fragmented one")
                    opcode = op
                elif op != OP_CONT or opcode is None:
                    raise Close(1002, "unexpected opcode %d" % op)
                size += len(payload)
                if size > self.max_size:
                    raise Close(1009, "message larger than %d bytes" % self.max_size)
                parts.append(payload)
                if header.fin:
                    break
        except (WebSocketError, OSError):
            return None
        if opcode == OP_BINARY:
            raise Close(1003, "binary frames are not supported; send JSON text")
        try:
            return b"".join(parts).decode("utf-8")
        except UnicodeDecodeError:
            raise Close(1007, "invalid UTF-8") from None

    def _answer_close(self, payload):
        if len(payload) >= 2:
            code = struct.unpack("!H", payload[:2])[0]
            self.send(close_frame(code if code in _VALID_CLOSE else 1002))
        else:
            self.send(close_frame(1000))

    def close(self, code=1000, message=b""):
        # The connection sends close frames through its queue; here we only let go.
        self.closed = True
        self.stream = self.raw_write = self.raw_read = None
        self.environ = None


def origin_allowed(environ, allowed):
    """True when the request has no Origin (not a browser), or its Origin is this
    server's own, or it matches a pattern of ``allowed`` (globs like https://*.x.org)."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin:
        return True
    if urlsplit(origin).netloc.lower() == environ.get("HTTP_HOST", "").lower():
        return True
    return any(fnmatch.fnmatchcase(origin.lower(), p.lower()) for p in allowed)


class Handler(WebSocketHandler):
    """Upgrades only the server's WebSocket path, refusing foreign origins with 403."""

    #: How request headers are read: without the email package (rulecast.headers).
    MessageClass = Headers

    #: Bytes the request reader buffers. pywsgi's default, 8 KiB, would stay allocated
    #: for a WebSocket's whole life, a third of what an idle connection costs; a
    #: request line and its headers take a few more reads of this size.
    rfile_buffer = 1024

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server, rfile=sock.makefile("rb", self.rfile_buffer))

    def log_request(self):
        status = (self._orig_status or self.status or "000").split()[0]
        duration = (self.time_finish - self.time_start) if self.time_finish else 0.0
        client = self.client_address
        access(
            client=client[0] if isinstance(client, tuple) else client,
            request_line=_TOKEN_IN_URL.sub(r"\1[redacted]", self.requestline or ""),
            status=int(status) if status.isdigit() else status,
            bytes=self.response_length or 0, seconds=round(duration, 4))

    #: Bodies up to this size leave with their head in one send().
    one_send = 64 * 1024

    def _write_with_headers(self, data):
        # pywsgi sends the head and the body with two sendall() calls (and a
        # getsockopt each): a tenth of what a small API answer costs.
        if len(data) > self.one_send:
            return super()._write_with_headers(data)
        self.headers_sent = True
        self.finalize_headers()
        out = bytearray(b"HTTP/1.1 ")
        out += self.status
        out += b"\r\n"
        for header, value in self.response_headers:
            out += b"%s: %s\r\n" % (header, value)
        out += b"\r\n"
        if data:  # gevent-websocket writes '' (a str) after a 101
            out += b"%x\r\n%s\r\n" % (len(data), data) if self.response_use_chunked else data
        self._sendall(out)

    def _sendall(self, data):
        # gevent's sendall() asks the kernel for SO_SNDBUF on every call; an API answer
        # fits in one send(), and only what did not fit takes sendall's path.
        try:
            sent = self.socket.send(data)
            if sent < len(data):
                self.socket.sendall(memoryview(data)[sent:])
        except OSError as exc:
            self.status = "socket error: %s" % exc
            if self.code > 0:
                self.code = -self.code
            raise
        self.response_length += len(data)

    def get_environ(self):
        env = super().get_environ()
        env["rulecast.socket"] = self.socket  # so a stream that stopped reading can be cut
        return env

    def upgrade_websocket(self):
        if self.environ.get("PATH_INFO") != self.server.ws_path:
            return None  # other paths, upgrade or not, belong to the co-hosted app
        return super().upgrade_websocket()

    def upgrade_connection(self):
        env = self.environ
        if env.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
            self.start_response("426 Upgrade Required", [("Sec-WebSocket-Version", "13")])
            return [b"WebSocket version 13 required"]
        key = env.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        try:
            valid = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            valid = False
        if not valid:
            self.start_response("400 Bad Request", [])
            return [b"Sec-WebSocket-Key must be 16 bytes in base64"]
        if not origin_allowed(env, self.server.config.allowed_origins):
            self.start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"Origin %s is not allowed; add it to allowed_origins"
                    % env["HTTP_ORIGIN"].encode("latin-1", "replace")]
        self.websocket = WebSocket(env, Stream(self), self,
                                   self.server.config.limits.max_message_bytes)
        env["wsgi.websocket"] = self.websocket
        env["wsgi.websocket_version"] = "13"
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode("latin-1")).digest())
        self.start_response("101 Switching Protocols", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept.decode("ascii"))])
        return None


class GeventServer(WSGIServer):
    """The one gevent server: rulecast's endpoints and the co-hosted app on one port."""

    handler_class = Handler

    def __init__(self, listener, application, config, ws_path, **kw):
        super().__init__(listener, application, log=None, **kw)
        #: The loaded :class:`rulecast.config.Config`.
        self.config = config
        #: The only path upgraded to a WebSocket.
        self.ws_path = ws_path

    def handle(self, sock, address):
        # pywsgi writes head and body in two sends; without TCP_NODELAY a keep-alive
        # client with delayed ACK waits ~40 ms per request.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a Unix socket
        super().handle(sock, address)
