"""A small intranet co-hosted in the rulecast server: documents, news, comments, workflow.

Run it with ``PYTHONPATH=contrib/demo rulecast serve --app intranet:app --workers 1``.
Everything lives in memory, seeded at import: a restart starts over. There are no
passwords: the login page lets you be any of the demo users.
"""
import copy
import hashlib
import logging
from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import (Flask, abort, flash, g, redirect, render_template, request, session,
                   url_for)
from flask.sessions import SecureCookieSessionInterface

import rulecast
from rulecast import tokens

log = logging.getLogger("rulecast.demo.intranet")

#: The cookie the rulecast server reads a browser's identity from.
TOKEN_COOKIE = "rulecast_token"
#: Seconds a login lasts (the token's ttl and the cookies' max-age).
LOGIN_TTL = 86400
#: Longest comment accepted, in characters.
MAX_COMMENT = 2000

USERS = {
    "alice": {"name": "Alice", "groups": ["editors"], "roles": ["Editor"]},
    "bob": {"name": "Bob", "groups": ["editors"], "roles": []},
    "carol": {"name": "Carol", "groups": ["reviewers"], "roles": ["Reviewer"]},
    "dave": {"name": "Dave", "groups": [], "roles": []},
}

SEED = [
    {"id": "q3-plan", "path": "/intranet/plans/q3-plan", "type": "Document",
     "title": "Q3 plan", "owner": "alice", "state": "private",
     "body": "Goals for the third quarter: ship the notification server, "
             "move the team wiki, and hire two engineers."},
    {"id": "budget-2027", "path": "/intranet/plans/budget-2027", "type": "Document",
     "title": "Budget 2027 (draft)", "owner": "bob", "state": "pending",
     "body": "Travel stays flat; hardware grows by ten percent; training doubles."},
    {"id": "onboarding", "path": "/intranet/handbook/onboarding", "type": "Document",
     "title": "Onboarding checklist", "owner": "carol", "state": "published",
     "body": "Day one: laptop, accounts, a buddy. Week one: a first small change shipped."},
    {"id": "new-office", "path": "/intranet/news/new-office", "type": "News Item",
     "title": "We move to a new office", "owner": "alice", "state": "private",
     "summary": "From 1 March we work at Harbour Street 12.",
     "body": "From 1 March we work at Harbour Street 12, third floor. "
             "Bikes go in the courtyard; the old badge opens the new door."},
    {"id": "cafeteria", "path": "/intranet/news/cafeteria", "type": "News Item",
     "title": "The cafeteria has a new menu", "owner": "bob", "state": "published",
     "summary": "Soup of the day, and a vegan dish every day.",
     "body": "Soup of the day, and a vegan dish every day. Friday is pizza day."},
]

#: The workflow: action → (button label, states it starts from, state it leads to).
TRANSITIONS = {
    "submit": ("Submit for review", ("private",), "pending"),
    "publish": ("Publish", ("private", "pending"), "published"),
    "retract": ("Retract", ("pending", "published"), "private"),
}

#: The event fields of a content item (what rules see as ``object``).
OBJECT_FIELDS = ("id", "path", "type", "title", "owner", "state")


def _seed():
    items = {}
    for entry in copy.deepcopy(SEED):
        entry.update(url=entry["path"], comments=[])
        items[entry["id"]] = entry
    return items


#: id → item; the demo's whole database.
ITEMS = _seed()

app = Flask(__name__)
app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                  PERMANENT_SESSION_LIFETIME=LOGIN_TTL, MAX_CONTENT_LENGTH=64 * 1024)


# --- who is asking -------------------------------------------------------------------

def _session_key():
    """The Flask session's key, derived from the running server's secret, so every
    worker agrees on it and a restart keeps people logged in."""
    from rulecast import config
    secret = str(config.current().secret)
    return hashlib.sha256(("rulecast-demo-intranet\0" + secret).encode()).hexdigest()


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, keyed when the first request comes: at import
    the server's config is not active yet."""

    def get_signing_serializer(self, app):
        if app.secret_key is None:
            app.secret_key = _session_key()
            _warn_if_many_workers()
        return super().get_signing_serializer(app)


app.session_interface = _SessionInterface()


@app.before_request
def _identify():
    user = session.get("user")
    g.user = user if user in USERS else None


def _warn_if_many_workers():
    """Content is per process: with several workers, pages would disagree."""
    try:
        from rulecast.server import current
        if current().worker is not None:
            log.warning("the demo intranet keeps its content in memory per process; "
                        "run it with --workers 1 or pages will disagree")
    except RuntimeError:
        pass


@app.after_request
def _keep_token(response):
    """A logged-in browser whose rulecast_token cookie is gone gets a fresh one."""
    if g.get("user") and TOKEN_COOKIE not in request.cookies and not g.get("logged_out"):
        _set_token(response, g.user)
    return response


def _set_token(response, user):
    info = USERS[user]
    token = tokens.issue(user, info["groups"], info["roles"], ttl=LOGIN_TTL)
    response.set_cookie(TOKEN_COOKIE, token, max_age=LOGIN_TTL, httponly=True, samesite="Lax")


def actor():
    """The event ``actor`` for the logged-in user."""
    info = USERS[g.user]
    return {"id": g.user, "name": info["name"], "groups": list(info["groups"])}


def require_login():
    if g.user is None:
        abort(401)


@app.context_processor
def _globals():
    user = g.get("user")
    info = USERS.get(user)
    channels = []
    if info:
        channels = (["user:" + user] + ["group:" + x for x in info["groups"]]
                    + ["role:" + x for x in info["roles"]])
    return {"user": user, "me": info, "users": USERS, "channels": channels}


# --- content and permissions ---------------------------------------------------------

def visible(item):
    """Logged-in users see the whole intranet; anonymous visitors what is published."""
    return g.user is not None or item["state"] == "published"


def allowed_actions(item):
    """The workflow actions the current user may take on ``item`` now."""
    user = g.user
    if user is None:
        return []
    roles, owner = USERS[user]["roles"], item["owner"] == user
    actions = []
    for action, (label, sources, target) in TRANSITIONS.items():
        if item["state"] not in sources:
            continue
        if action == "submit":
            ok = owner
        elif action == "publish":
            # Reviewers publish what waits for review; editors publish news directly.
            ok = ("Reviewer" in roles and item["state"] == "pending") or (
                "Editor" in roles and item["type"] == "News Item")
        else:  # retract
            ok = owner or "Reviewer" in roles
        if ok:
            actions.append((action, label))
    return actions


def event_object(item):
    """What the rules see of ``item``: its fields and an absolute url."""
    obj = {k: item[k] for k in OBJECT_FIELDS}
    obj["url"] = request.url_root.rstrip("/") + item["url"]
    return obj


def item_by_id(item_id):
    item = ITEMS.get(item_id)
    if item is None or not visible(item):
        abort(404)
    return item


def _listing(kind=None):
    items = [i for i in ITEMS.values() if visible(i) and (kind is None or i["type"] == kind)]
    return sorted(items, key=lambda i: (i["type"], i["title"].lower()))


def _safe_next(target):
    """A local path to go back to after login, never another site."""
    parts = urlsplit(target or "")
    if not target or parts.scheme or parts.netloc or not target.startswith("/"):
        return url_for("home")
    return target


# --- pages ---------------------------------------------------------------------------

@app.get("/")
def home():
    return render_template("home.html", documents=_listing("Document"),
                           news=_listing("News Item"))


@app.get("/news")
def news():
    return render_template("news.html", news=_listing("News Item"))


@app.get("/intranet/<path:rest>")
def item_page(rest):
    path = "/intranet/" + rest.rstrip("/")
    item = next((i for i in ITEMS.values() if i["path"] == path), None)
    if item is None:
        abort(404)
    if not visible(item):
        return redirect(url_for("login", next=path))
    return render_template("item.html", item=item, actions=allowed_actions(item))


@app.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", next=_safe_next(request.args.get("next")))
    user = request.form.get("user", "")
    if user not in USERS:
        return render_template("login.html", next=_safe_next(request.form.get("next")),
                               error="Pick one of the demo users."), 400
    session.clear()
    session["user"] = user
    session.permanent = True
    response = redirect(_safe_next(request.form.get("next")))
    _set_token(response, user)
    return response


@app.post("/logout")
def logout():
    session.clear()
    g.logged_out = True
    response = redirect(url_for("home"))
    response.delete_cookie(TOKEN_COOKIE, httponly=True, samesite="Lax")
    return response


# --- actions: each changes state and emits; the events go out once the response did ---

@app.post("/items/<item_id>/comment")
def comment(item_id):
    require_login()
    item = item_by_id(item_id)
    text = request.form.get("text", "").strip()
    error = None
    if not text:
        error = "A comment needs some text."
    elif len(text) > MAX_COMMENT:
        error = "A comment may have at most %d characters." % MAX_COMMENT
    if error:
        return render_template("item.html", item=item, actions=allowed_actions(item),
                               error=error, draft=text), 400
    item["comments"].append({"author": g.user, "name": USERS[g.user]["name"], "text": text,
                             "time": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
    rulecast.emit("comment.added", actor=actor(), object=event_object(item),
                  data={"text": text})
    flash("Your comment was added.")
    return redirect(item["url"] + "#comments")


@app.post("/items/<item_id>/transition")
def transition(item_id):
    require_login()
    item = item_by_id(item_id)
    action = request.form.get("action", "")
    if action not in TRANSITIONS:
        abort(400)
    if action not in dict(allowed_actions(item)):
        abort(403)
    before, after = item["state"], TRANSITIONS[action][2]
    item["state"] = after
    data = {"from": before, "to": after}
    if item["type"] == "News Item" and after == "published":
        # One event for a published news item: the example rule news-published fires on
        # a workflow.transition to "published" *and* on news.published, so sending both
        # would put every news item twice on topic:public-news.
        rulecast.emit("news.published", actor=actor(), object=event_object(item),
                      data=dict(data, summary=item.get("summary", "")))
    else:
        rulecast.emit("workflow.transition", actor=actor(), object=event_object(item),
                      data=data)
    flash("%s is now %s." % (item["title"], after))
    return redirect(item["url"])


@app.errorhandler(401)
def _unauthorized(exc):
    return render_template("error.html", title="Please log in",
                           message="Pick a demo user first."), 401


@app.errorhandler(403)
def _forbidden(exc):
    return render_template("error.html", title="Not allowed",
                           message="You may not do that to this item."), 403


@app.errorhandler(404)
def _not_found(exc):
    return render_template("error.html", title="Not found",
                           message="There is no such page in the intranet."), 404


@app.errorhandler(400)
def _bad_request(exc):
    return render_template("error.html", title="Bad request",
                           message="The form did not make sense."), 400
