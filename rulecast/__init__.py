"""rulecast: live, rule-driven notifications for Python web applications."""
__version__ = "0.1.0"

from rulecast.inprocess import emit, publish  # noqa: E402  (the public in-process API)

__all__ = ["emit", "publish", "__version__"]
