"""The store: message history and inbox read marks, opened from a URL."""
from rulecast.store.base import Store
from rulecast.store.sqlite import SQLiteStore

__all__ = ["Store", "open_store"]

FORMS = "sqlite:////absolute/path.db, sqlite:///relative/path.db"


def open_store(url, max_per_channel=1000, max_age=7 * 86400.0):
    """The store named by `url`: ``sqlite:////abs.db`` (absolute path) or
    ``sqlite:///rel.db`` (relative to the current directory)."""
    if url[:10].lower() == "sqlite:///":
        path = url[10:]  # keeps the leading "/" of an absolute path
        if path and not path.endswith("/"):
            return SQLiteStore(path, max_per_channel=max_per_channel, max_age=max_age)
    if url.partition(":")[0].lower() in ("redis", "rediss"):
        raise NotImplementedError(
            "store %r: the Redis store is not available yet; use %s" % (url, FORMS))
    raise ValueError("store %r: not a store URL; accepted forms: %s" % (url, FORMS))
