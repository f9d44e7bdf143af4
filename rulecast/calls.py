"""`call` frames: a request to the co-hosted app over the WebSocket, with its cookies."""
import json
import logging

from werkzeug.test import EnvironBuilder, run_wsgi_app

log = logging.getLogger("rulecast.calls")

__all__ = ["INHERITED", "parse", "run"]

#: Handshake environ keys a call inherits: who is calling, and to which server.
INHERITED = frozenset((
    "HTTP_COOKIE", "HTTP_HOST", "HTTP_USER_AGENT", "HTTP_ACCEPT_LANGUAGE", "REMOTE_ADDR",
    "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme", "rulecast.socket"))

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def parse(frame):
    """The call a frame asks for as a dict, or a string saying what is wrong with it."""
    if not isinstance(frame.get("id"), (str, int)) or isinstance(frame.get("id"), bool):
        return "call needs an 'id' (string or integer) to match its result"
    method = frame.get("method", "GET")
    if method not in METHODS:
        return "call method %r is not one of %s" % (method, ", ".join(METHODS))
    path = frame.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        return "call needs a 'path' starting with '/', got %r" % (path,)
    headers = frame.get("headers", {})
    if not isinstance(headers, dict) or not all(
            isinstance(v, str) for v in headers.values()):
        return "call 'headers' must be an object of strings"
    return {"id": frame["id"], "method": method, "path": path, "body": frame.get("body"),
            "headers": headers}


def run(app, environ_base, call):
    """Run ``call`` against the WSGI ``app``; return the ``result`` frame."""
    body, content_type = call["body"], None
    if body is not None and not isinstance(body, str):
        body, content_type = json.dumps(body), "application/json"
    path, _, query = call["path"].partition("?")
    builder = EnvironBuilder(
        path=path, query_string=query, method=call["method"], data=body,
        content_type=content_type, headers=call["headers"],
        environ_base={k: v for k, v in environ_base.items() if k != "HTTP_HOST"},
        base_url="%s://%s" % (environ_base.get("wsgi.url_scheme", "http"),
                              environ_base.get("HTTP_HOST", "localhost")))
    try:
        body_iter, status, headers = run_wsgi_app(app, builder.get_environ(), buffered=True)
        raw = b"".join(body_iter)
    except Exception:
        log.exception("call %s %s failed", call["method"], call["path"])
        return {"type": "result", "id": call["id"], "status": 500,
                "body": "internal error in the application"}
    finally:
        builder.close()
    ctype = headers.get("Content-Type", "")
    text = raw.decode("utf-8", "replace")
    if "json" in ctype:
        try:
            text = json.loads(text)
        except ValueError:
            pass
    return {"type": "result", "id": call["id"], "status": int(status.split()[0]),
            "body": text}
