"""An add-on for the tests, named in `plugins:`: identify, authorize, configure."""
from flask import jsonify

from rulecast.channels import Identity
from rulecast.hookspecs import hookimpl


@hookimpl
def rulecast_identify(request):
    """The co-hosted app's own session: cookie `app_session=USER`."""
    user = request.cookies.get("app_session")
    return Identity(user, groups=["from-app"]) if user else None


@hookimpl
def rulecast_authorize(identity, channel):
    """Members of from-app may hear topic:members."""
    if channel == "topic:members" and "from-app" in identity.groups:
        return True
    return None


@hookimpl
def rulecast_configure(config, flask_app):
    @flask_app.get(config.prefix + "/hello")
    def hello():
        return jsonify(hello="from a plugin")
