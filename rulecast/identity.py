"""Finding a request's identity: plugins first, then the token it presents."""
from werkzeug.http import parse_cookie
from urllib.parse import parse_qs

from rulecast import tokens
from rulecast.channels import Identity

__all__ = ["COOKIE", "token_of", "identify"]

#: The cookie a browser presents its token in.
COOKIE = "rulecast_token"


def token_of(environ):
    """The token a request presents: ``Authorization: Bearer``, ``?token=``, or the
    ``rulecast_token`` cookie, in that order; None when there is none."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if query.get("token"):
        return query["token"][0]
    cookies = environ.get("HTTP_COOKIE", "")
    if COOKIE not in cookies:  # parsing them costs a tenth of a WebSocket handshake
        return None
    return parse_cookie(cookies).get(COOKIE) or None


def from_token(token, secret):
    """The identity a token proves; raises :class:`rulecast.tokens.InvalidToken`."""
    user, groups, roles = tokens.verify(token, secret)
    return Identity(user, groups, roles, token=token)


def identify(environ, secret, hook):
    """The identity of a connecting request; None when it presents nothing.
    Raises InvalidToken when it presents a bad or expired token."""
    if hook.rulecast_identify.get_hookimpls():
        from werkzeug.wrappers import Request
        identity = hook.rulecast_identify(request=Request(environ))
        if identity is not None:
            return identity
    token = token_of(environ)
    return from_token(token, secret) if token else None
