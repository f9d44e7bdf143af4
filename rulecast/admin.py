"""The admin view at `/rulecast/admin`: workers, channels, presence, rules, messages."""
import hmac
import json

from flask import Blueprint, current_app, jsonify, render_template_string, request
from marshmallow import ValidationError

from rulecast.engine import explain
from rulecast.events import load_events
from rulecast.identity import identify
from rulecast.tokens import InvalidToken

__all__ = ["bp", "ADMIN_ROLE"]

#: Users with this role may open the admin view; API-key holders may too.
ADMIN_ROLE = "rulecast-admin"

bp = Blueprint("rulecast_admin", __name__)


def _server():
    return current_app.config["RULECAST_SERVER"]


def _allowed(server):
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and any(
            hmac.compare_digest(auth[7:].strip(), k) for k in server.config.api_keys):
        return True
    try:
        identity = identify(request.environ, server.config.secret, server.hook)
    except InvalidToken:
        return False
    return identity is not None and ADMIN_ROLE in identity.roles


def snapshot(server):
    """What the view shows, as plain data."""
    presence = dict(server.hub.presence())
    if server.cluster is not None:
        for channel in list(presence):
            presence[channel] = sorted(server.cluster.users(channel))
    last = server.bus.last_id
    return {
        "workers": server.cluster.workers() if server.cluster else [
            {"worker": None, "connections": len(server.hub.connections), "last_id": last,
             "alive": True}],
        "channels": sorted(((channel, len(conns)) for channel, conns
                            in server.hub.subscribers.items()), key=lambda c: -c[1])[:100],
        "presence": presence,
        "rules": [r.as_dict() for r in server.engine.ruleset.rules],
        "problems": [str(p) for p in server.engine.ruleset.problems],
        "messages": [m.frame() for m in reversed(server.store.between(max(0, last - 20), last))],
    }


@bp.route("/admin", methods=["GET"])
def view():
    server = _server()
    if not _allowed(server):
        return jsonify(errors={"_": ["the admin view needs an API key or a user with role %s"
                                     % ADMIN_ROLE]}), 403
    data = snapshot(server)
    if request.args.get("format") == "json" or request.accept_mimetypes.best == "application/json":
        return jsonify(data)
    return render_template_string(PAGE, data=data, prefix=server.config.prefix, report=None,
                                  event=EXAMPLE)


@bp.route("/admin/explain", methods=["POST"])
def explain_event():
    """Runs a test event through `explain`: what each rule would do; nothing is sent."""
    server = _server()
    if not _allowed(server):
        return jsonify(errors={"_": ["forbidden"]}), 403
    text = request.form.get("event") or request.get_data(as_text=True)
    try:
        events = load_events(json.loads(text))
        report = [explain(server.engine.ruleset, event) for event in events]
    except ValueError as exc:
        report = {"error": "not JSON: %s" % exc}
    except ValidationError as exc:
        report = {"error": exc.messages}
    if request.form.get("event") is None:
        return jsonify(report=report)
    return render_template_string(PAGE, data=snapshot(server), prefix=server.config.prefix,
                                  report=json.dumps(report, indent=2), event=text)


EXAMPLE = json.dumps({"type": "comment.added", "actor": {"id": "bob", "name": "Bob"},
                      "object": {"type": "Document", "path": "/intranet/q3", "owner": "ann",
                                 "title": "Q3 plan", "url": "http://intranet/q3"},
                      "data": {"text": "Looks good"}}, indent=2)

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>rulecast admin</title><style>
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.4rem 0 1.2rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f4f4f4}h2{margin:1.2rem 0 .3rem;font-size:1.1rem}code,pre{background:#f6f6f6}
pre{padding:.5rem;overflow:auto;max-height:30rem}textarea{width:100%;height:12rem;font-family:monospace}
</style></head><body><h1>rulecast admin</h1>
<h2>Workers</h2><table><tr><th>worker</th><th>pid</th><th>alive</th><th>connections</th><th>last id</th><th>sequencer</th></tr>
{% for w in data.workers %}<tr><td>{{ w.worker if w.worker is not none else "single" }}</td><td>{{ w.pid or "" }}</td>
<td>{{ "yes" if w.alive else "NO" }}</td><td>{{ w.connections }}</td><td>{{ w.last_id }}</td><td>{{ w.sequencer or "" }}</td></tr>{% endfor %}</table>
<h2>Channels on this worker</h2><table><tr><th>channel</th><th>subscribers</th><th>users present (all workers)</th></tr>
{% for channel, n in data.channels %}<tr><td><code>{{ channel }}</code></td><td>{{ n }}</td>
<td>{{ data.presence.get(channel, [])|join(", ") }}</td></tr>{% else %}<tr><td colspan=3>none</td></tr>{% endfor %}</table>
<h2>Rules</h2><table><tr><th>rule</th><th>at</th><th>on</th><th>hits</th><th>failures</th></tr>
{% for r in data.rules %}<tr><td>{{ r.name }}</td><td>{{ r.file }}:{{ r.line }}</td><td>{{ r.on|join(", ") }}</td>
<td>{{ r.hits }}</td><td>{{ r.failures }}</td></tr>{% endfor %}</table>
{% for p in data.problems %}<p>problem: <code>{{ p }}</code></p>{% endfor %}
<h2>Last messages</h2><table><tr><th>id</th><th>channel</th><th>time</th><th>data</th></tr>
{% for m in data.messages %}<tr><td>{{ m.id }}</td><td><code>{{ m.channel }}</code></td><td>{{ m.time }}</td>
<td><code>{{ m.data|tojson }}</code></td></tr>{% endfor %}</table>
<h2>Try an event</h2><p>Runs it through <code>explain</code>: what each rule would do. Nothing is sent.</p>
<form method="post" action="{{ prefix }}/admin/explain"><textarea name="event" aria-label="event JSON">{{ event }}</textarea>
<button>Explain</button></form>{% if report %}<pre>{{ report }}</pre>{% endif %}
</body></html>"""
