"""Finding a request's identity: plugins first, then the token it presents."""
import hmac

from werkzeug.http import parse_cookie
from urllib.parse import parse_qs

from rulecast import tokens
from rulecast.channels import Identity

__all__ = ["COOKIE", "bearer", "api_key_of", "token_of", "identify"]

#: The cookie a browser presents its token in.
COOKIE = "rulecast_token"


def bearer(environ):
    """The value of a request's ``Authorization: Bearer`` header; None without one."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


def api_key_of(environ, api_keys):
    """The API key a request presents as ``Authorization: Bearer``; None when the
    bearer value is none of ``api_keys`` (it may still be a user token)."""
    value = bearer(environ)
    if not value:
        return None
    # Every key compared, each in constant time: how long it takes tells nothing.
    # As bytes: compare_digest refuses str holding anything but ASCII.
    given = value.encode("utf-8", "surrogatepass")
    matched = [hmac.compare_digest(given, key.encode("utf-8", "surrogatepass"))
               for key in api_keys]
    return value if any(matched) else None


def token_of(environ):
    """The token a request presents: ``Authorization: Bearer``, ``?token=``, or the
    ``rulecast_token`` cookie, in that order; None when there is none."""
    value = bearer(environ)
    if value is not None:
        return value
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
