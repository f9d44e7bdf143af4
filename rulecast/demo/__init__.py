"""The demo page served at `/` on the embedded defaults: pick a user, watch messages."""
from flask import Flask, make_response, redirect, request, send_from_directory

from rulecast import tokens
from rulecast.identity import COOKIE

#: The demo's users: name → (groups, roles).
USERS = {
    "alice": (("editors",), ("Reviewer",)),
    "bob": (("editors",), ()),
    "carol": (("reviewers",), ("Manager",)),
}


def create_app(server):
    """A tiny Flask app that logs a demo user in by setting the rulecast_token cookie."""
    app = Flask("rulecast.demo", static_folder=None)
    here = __path__[0]

    @app.get("/")
    def index():
        return send_from_directory(here, "index.html")

    @app.post("/login")
    def login():
        user = request.form.get("user", "")
        response = make_response(redirect("/"))
        if user in USERS:
            groups, roles = USERS[user]
            token = tokens.issue(user, groups, roles, ttl=86400, secret=server.config.secret)
            response.set_cookie(COOKIE, token, httponly=True, samesite="Lax", max_age=86400)
        else:
            response.delete_cookie(COOKIE)
        return response

    return app
