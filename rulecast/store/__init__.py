"""The store: message history and inbox read marks, opened from a URL."""
from rulecast.config_schema import is_redis
from rulecast.store.base import Store
from rulecast.store.sqlite import SQLiteStore

__all__ = ["Store", "open_store"]

FORMS = ("sqlite:////absolute/path.db, sqlite:///relative/path.db, "
         "redis://[:password@]host[:port][/db][?prefix=name], rediss://… (TLS)")


def open_store(url, max_per_channel=1000, max_age=7 * 86400.0):
    """The store named by `url`: ``sqlite:////abs.db`` (absolute path),
    ``sqlite:///rel.db`` (relative to the current directory), or ``redis://…`` /
    ``rediss://…`` (shared by several hosts; needs ``pip install rulecast[redis]``)."""
    if url[:10].lower() == "sqlite:///":
        path = url[10:]  # keeps the leading "/" of an absolute path
        if path and not path.endswith("/"):
            return SQLiteStore(path, max_per_channel=max_per_channel, max_age=max_age)
    if is_redis(url):
        from rulecast.store.redis import RedisStore  # imports redis-py only now
        return RedisStore(url, max_per_channel=max_per_channel, max_age=max_age)
    raise ValueError("store %r: not a store URL; accepted forms: %s" % (url, FORMS))
