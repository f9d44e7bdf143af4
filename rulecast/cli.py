"""The `rulecast` command: serve, token, listen, check, explain, reload, genconfig."""
import argparse
import logging
import sys

from rulecast import __version__

__all__ = ["main"]


def _load_config(args, **overrides):
    from rulecast import config
    try:
        return config.load(args.config, overrides=overrides)
    except config.ConfigError as exc:
        sys.exit("rulecast: bad configuration:\n%s" % exc)


def cmd_serve(args):
    """Run the server."""
    from gevent import monkey
    monkey.patch_all()
    from rulecast.plugins import PluginError, manager
    from rulecast.server import Server, raise_open_files
    cfg = _load_config(args, listen=args.listen, workers=args.workers, app=args.app)
    raise_open_files(cfg.limits.max_connections)  # before forking: workers inherit it
    if cfg.api_key_file:
        logging.getLogger("rulecast").info("API key for the HTTP API is in %s",
                                           cfg.api_key_file)
    try:
        # Fail here, in one process, rather than in every worker.
        server = Server(cfg) if cfg.workers == 1 else manager(cfg.plugins)
    except PluginError as exc:
        sys.exit("rulecast: %s" % exc)
    if cfg.workers > 1:
        import importlib.util
        from rulecast.supervisor import Supervisor
        module = (cfg.app or "").partition(":")[0]
        if module and importlib.util.find_spec(module) is None:
            sys.exit("app: cannot import %r: no such module" % module)
        return Supervisor(cfg).run()
    server.serve_forever()
    return 0


def _duration(value):
    from rulecast.config import parse_duration
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_token(args):
    """Print a signed token for a user."""
    from rulecast import tokens
    cfg = _load_config(args)
    print(tokens.issue(args.user, args.group, args.role, ttl=args.ttl, secret=cfg.secret))
    return 0


def cmd_listen(args):
    """Print every message a token may receive, one JSON line each."""
    from rulecast import client
    return client.listen_command(args)


def _ruleset(args, paths):
    from rulecast.engine import load_rules
    from rulecast.plugins import PluginError, manager
    cfg = _load_config(args)
    try:
        hook = manager(cfg.plugins).hook
    except PluginError as exc:
        sys.exit("rulecast: %s" % exc)
    return load_rules(paths or cfg.rules, hook), paths or cfg.rules


def cmd_check(args):
    """Check rule files; print each problem as file:line: rule NAME: where: what."""
    ruleset, paths = _ruleset(args, args.paths)
    for problem in ruleset.problems:
        print(problem)
    if ruleset.problems:
        print("%d problems; %d rules are fine" % (len(ruleset.problems), len(ruleset.rules)),
              file=sys.stderr)
        return 1
    print("%d rules OK in %s" % (len(ruleset.rules), ", ".join(paths)))
    return 0


def cmd_explain(args):
    """Show how each rule treats an event, and what it would send; sends nothing."""
    import json
    from marshmallow import ValidationError
    from rulecast.engine import explain
    from rulecast.events import load_events
    try:
        with (sys.stdin if args.event == "-" else open(args.event, encoding="utf-8")) as f:
            events = load_events(json.load(f))
    except (OSError, ValueError) as exc:
        sys.exit("rulecast explain: cannot read %s: %s" % (args.event, exc))
    except ValidationError as exc:
        sys.exit("rulecast explain: not an event: %s" % json.dumps(exc.messages))
    ruleset, _ = _ruleset(args, args.rules)
    for problem in ruleset.problems:
        print("(skipped) %s" % problem, file=sys.stderr)
    for event in events:
        report = explain(ruleset, event)
        if args.json:
            print(json.dumps({"event": event.as_dict(), "rules": report}, indent=2))
            continue
        print("event %s" % event.type)
        for entry in report:
            _print_entry(entry)
    return 0


def _print_entry(entry):
    import json
    if not entry["wants"]:
        print("  rule %s (%s): not for this event type" % (entry["rule"], entry["at"]))
        return
    print("  rule %s (%s): %s" % (entry["rule"], entry["at"],
                                 "MATCHED" if entry["matched"] else "no match"))
    for c in entry["conditions"]:
        print("    %s %s (line %s)%s" % ("held  " if c["held"] else "FAILED", c["condition"],
                                      c["line"], ": " + c["why"] if c["why"] else ""))
    for m in entry.get("messages", ()):
        print("    would send to %s: %s" % (m["channel"], json.dumps(m["data"])))
    for w in entry.get("webhooks", ()):
        print("    would %s %s" % (w["method"], w["url"]))
    for line in entry.get("logs", ()):
        print("    would log %s" % line)
    for error in entry.get("errors", ()):
        print("    action FAILED %s" % error)


def cmd_reload(args):
    """Ask the running server to re-read its rules (SIGHUP)."""
    import os
    import signal
    cfg = _load_config(args)
    pid_file = os.path.join(cfg.var_dir, "rulecast.pid")
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        sys.exit("rulecast reload: no running server found through %s: %s" % (pid_file, exc))
    print("asked rulecast (pid %d) to reload its rules; its log says how it went" % pid)
    return 0


def cmd_genconfig(args):
    """Print a complete rulecast.yaml: every key at its default, with comments."""
    from rulecast.genconfig import generate
    sys.stdout.write(generate())
    return 0


def parser():
    p = argparse.ArgumentParser(prog="rulecast", description="Live, rule-driven "
                                "notifications for Python web applications.")
    p.add_argument("--version", action="version", version="rulecast " + __version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, func, help):
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(func=func)
        return c

    def with_config(c):
        c.add_argument("--config", metavar="FILE",
                       help="configuration file (default: ./rulecast.yaml if present)")
        return c

    s = with_config(command("serve", cmd_serve, cmd_serve.__doc__))
    s.add_argument("--listen", metavar="HOST:PORT", help="address to listen on")
    s.add_argument("--workers", metavar="N", type=lambda v: int(v) if v.isdigit() else v,
                   help="worker processes, or 'auto'")
    s.add_argument("--app", metavar="MODULE:ATTR", help="WSGI application to co-host")
    s.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    s.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="info", help="least severe lines logged (default: info); "
                                        "debug adds a line per event and per message")

    t = with_config(command("token", cmd_token, cmd_token.__doc__))
    t.add_argument("user")
    t.add_argument("--group", action="append", default=[], metavar="G")
    t.add_argument("--role", action="append", default=[], metavar="R")
    t.add_argument("--ttl", type=_duration, metavar="DURATION",
                   help="lifetime, e.g. 1h or 7d (default: no expiry)")

    lp = command("listen", cmd_listen, cmd_listen.__doc__)
    lp.add_argument("url", help="the server, e.g. http://127.0.0.1:8080")
    lp.add_argument("--token", help="a user token (default: anonymous)")
    lp.add_argument("--channel", action="append", default=[], metavar="C",
                    help="also subscribe to this topic channel")
    lp.add_argument("--since", type=int, metavar="ID", help="replay messages after ID first")
    lp.add_argument("--prefix", default="/rulecast", help="the server's prefix")
    c = with_config(command("check", cmd_check, cmd_check.__doc__))
    c.add_argument("paths", nargs="*", metavar="PATH",
                   help="rule files or folders (default: the config's rules)")

    e = with_config(command("explain", cmd_explain, cmd_explain.__doc__))
    e.add_argument("event", metavar="EVENT.json", help="the event as JSON ('-': stdin)")
    e.add_argument("--rules", nargs="+", metavar="PATH", help="rule files or folders")
    e.add_argument("--json", action="store_true", help="print the report as JSON")

    with_config(command("reload", cmd_reload, cmd_reload.__doc__))

    command("genconfig", cmd_genconfig, cmd_genconfig.__doc__)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    from rulecast import logs
    logs.setup(as_json=getattr(args, "log_json", False),
               level=getattr(args, "log_level", "info").upper())
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
