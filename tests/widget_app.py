"""A co-hosted Flask app for the browser tests: a page with the widget, and a login.

Served beside rulecast with ``make_server(app="tests.widget_app:app")``. Query parameters
of ``/`` become the widget's ``data-*`` attributes (``?channels=topic:public-news``).
"""
from flask import Flask, redirect, request
from markupsafe import escape

from rulecast import tokens
from rulecast.identity import COOKIE

app = Flask(__name__)

#: Query parameters of ``/`` passed on as ``data-<name>`` attributes of the script tag.
ATTRIBUTES = ("channels", "position", "hidden-timeout", "share", "toast", "token", "url", "limit")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Acme intranet</title>
<style>
  body { margin: 0; font: 15px/1.5 system-ui, sans-serif; color: #1f2937; background: #f3f4f6; }
  header { display: flex; align-items: center; gap: 2rem; height: 56px; padding: 0 24px;
           background: #fff; border-bottom: 1px solid #e5e7eb; }
  header b { font-size: 17px; } header nav a { color: #4b5563; margin-right: 1.2rem; text-decoration: none; }
  main { max-width: 46rem; margin: 2rem auto; padding: 0 24px; }
  .card { background: #fff; border: 1px solid #e5e7eb; border-radius: 12px; padding: 1rem 1.4rem; margin-bottom: 1rem; }
  .card p { color: #4b5563; }
  rulecast-widget { --rulecast-offset: 8px; }
</style>
</head>
<body>
<header><b>Acme intranet</b><nav><a href="/">Home</a><a href="/">Documents</a><a href="/">People</a></nav></header>
<main>
  <div class="card"><h2>Q3 plan</h2><p>Draft for review: goals, budget and the hiring plan for the third quarter.</p></div>
  <div class="card"><h2>Team news</h2><p>The office is closed on Friday; the all-hands moves to Monday at ten.</p></div>
</main>
<script src="/rulecast/static/rulecast.js" data-rulecast-widget %s></script>
</body>
</html>
"""


@app.get("/")
def index():
    attributes = " ".join('data-%s="%s"' % (name, escape(request.args[name]))
                          for name in ATTRIBUTES if name in request.args)
    return PAGE % attributes


@app.get("/login")
def login():
    """Log ``?user=`` in (with ``&group=`` groups): the httponly token cookie, then ``next``."""
    user = request.args["user"]
    response = redirect(request.args.get("next", "/"))
    token = tokens.issue(user, groups=request.args.getlist("group"))  # the server's secret
    response.set_cookie(COOKIE, token, httponly=True, samesite="Lax")
    return response


@app.get("/away")
def away():
    return "<!doctype html><title>elsewhere</title><p>A page without the widget.</p>"
