"""rulecast: live, rule-driven notifications for Python web applications."""
__version__ = "0.1.0"

from rulecast.inprocess import emit, publish, publish_many  # noqa: E402  (the public API)

__all__ = ["emit", "publish", "publish_many", "__version__"]
