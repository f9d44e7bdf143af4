"""The `rulecast` command: serve, token, listen."""
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
    from rulecast.plugins import PluginError
    from rulecast.server import Server
    cfg = _load_config(args, listen=args.listen, workers=args.workers, app=args.app)
    log = logging.getLogger("rulecast")
    if cfg.workers > 1:
        log.warning("workers: %d asked; this version runs one worker process", cfg.workers)
    if cfg.api_key_file:
        log.info("API key for the HTTP API is in %s", cfg.api_key_file)
    try:
        server = Server(cfg)
    except PluginError as exc:
        sys.exit("rulecast: %s" % exc)
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
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
