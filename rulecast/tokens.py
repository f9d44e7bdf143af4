"""Signed identity tokens: who a connection is, for how long."""
import time

from itsdangerous import BadSignature, URLSafeSerializer

__all__ = ["issue", "verify", "InvalidToken"]

_SALT = "rulecast.token.v1"


class InvalidToken(Exception):
    """A token that is malformed, signed with another secret, or expired."""


def _serializer(secret):
    if secret is None:
        from rulecast import config
        secret = config.current().secret
    return URLSafeSerializer(secret, salt=_SALT)


def issue(user, groups=(), roles=(), ttl=None, secret=None):
    """A token for ``user`` in ``groups`` with ``roles``, valid ``ttl`` seconds
    (None: no expiry), signed with ``secret`` (default: the running config's)."""
    if not user or not isinstance(user, str):
        raise ValueError("user must be a non-empty string, got %r" % (user,))
    claims = {"u": user, "g": sorted(set(groups)), "r": sorted(set(roles))}
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)
    return _serializer(secret).dumps(claims)


def verify(token, secret=None):
    """The claims ``(user, groups, roles)`` of a valid token; raises InvalidToken."""
    try:
        claims = _serializer(secret).loads(token)
    except BadSignature:
        raise InvalidToken("token signature is invalid") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("u"), str):
        raise InvalidToken("token carries no user")
    if "exp" in claims and claims["exp"] < time.time():
        raise InvalidToken("token expired")
    return claims["u"], tuple(claims.get("g", ())), tuple(claims.get("r", ()))
