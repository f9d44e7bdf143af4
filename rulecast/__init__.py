"""rulecast: live, rule-driven notifications for Python web applications."""
__version__ = "0.1.0"

__all__ = ["publish", "__version__"]


def publish(channel, data):
    """Publish ``data`` (a dict) to ``channel`` from code co-hosted in a running
    rulecast server; returns the message id."""
    from rulecast.channels import parse
    from rulecast.server import current
    parse(channel)
    if not isinstance(data, dict):
        raise TypeError("data must be a dict, got %s" % type(data).__name__)
    return current().bus.publish(channel, data).id
