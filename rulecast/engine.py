"""The rule engine: runs events through the rules and sends what their actions produce."""
import logging

from rulecast import rules as rules_module
from rulecast.logs import fields
from rulecast.registry import Compiler, Registry
from rulecast.templates import Templates
from rulecast.webhooks import redact

log = logging.getLogger("rulecast.rules")

__all__ = ["Engine", "compiler_for", "load_rules"]


def compiler_for(hook):
    """A compiler whose conditions and actions are what the plugins registered."""
    conditions, actions = Registry("condition"), Registry("action")
    hook.rulecast_add_conditions(registry=conditions)
    hook.rulecast_add_actions(registry=actions)
    return Compiler(conditions, actions, Templates())


def load_rules(paths, hook):
    """The rule set in ``paths`` with the plugins' conditions and actions."""
    return rules_module.load(paths, compiler_for(hook))


class Context:
    """What an action runs with: the rule, and where its output goes."""

    __slots__ = ("rule", "messages", "webhooks", "logs")

    def __init__(self, rule, messages, webhooks, logs=None):
        self.rule = rule
        self.messages = messages
        self.webhooks = webhooks
        self.logs = logs

    def publish(self, channel, data):
        self.messages.append((channel, data))

    def webhook(self, request):
        self.webhooks.append(request)

    def log(self, level, text):
        if self.logs is not None:
            self.logs.append((level, text))
        else:
            log.log(logging.getLevelName(level.upper()), text, extra=fields(rule=self.rule))


class Engine:
    """Matches events to the rule set and runs the actions of those that hold.

    An event's messages are stored and sent together, after every rule ran, in one
    store transaction; webhooks go out only once those messages are accepted.
    """

    def __init__(self, ruleset, bus, hook, metrics, sender):
        self.metrics = metrics
        self.ruleset = ruleset
        self.bus = bus
        self.hook = hook
        self.sender = sender

    @property
    def ruleset(self):
        return self._ruleset

    @ruleset.setter
    def ruleset(self, ruleset):
        # Rules count into this engine's metrics: their counters resolve on first use.
        for rule in ruleset.rules:
            rule.hit_counter = rule.failure_counter = None
        self._ruleset = ruleset

    def process(self, events):
        """Run ``events``; return (names of the rules that matched, message ids).
        Raises BusUnavailable when the messages could not be stored."""
        matched, messages, webhooks = [], [], []
        received = self.hook.rulecast_event_received
        # Calling a hook nobody implements still costs pluggy a call; asked per batch,
        # so a plugin registered later is called from its next batch on.
        notify = bool(received.get_hookimpls())
        logged = log.isEnabledFor(logging.DEBUG)
        self.metrics.events.inc(len(events))
        for event in events:
            if notify:
                try:
                    received(event=event)
                except Exception:
                    log.exception("plugin hook rulecast_event_received failed on %r", event)
            before, hits = len(messages), []
            for rule in self.ruleset.for_type(event.type):
                if self._run(rule, event, messages, webhooks):
                    hits.append(rule.name)
                    if rule.stop:
                        break
            matched += hits
            if logged:  # a line per event costs as much as the rules: debug only
                log.debug("event", extra=fields(type=event.type, id=event.id, matched=hits,
                                                messages=len(messages) - before))
        ids = [m.id for m in self.bus.publish_many(messages)] if messages else []
        for request in webhooks:
            self.sender.send(request)
        return matched, ids

    def _run(self, rule, event, messages, webhooks):
        try:
            for _, _, check in rule.conditions:
                if not check(event):
                    return False
        except Exception as exc:
            self._failed(rule, "condition", exc)
            return False
        rule.hits += 1
        counter = rule.hit_counter
        if counter is None:  # labels() takes a lock and a lookup: once per rule, not per hit
            counter = rule.hit_counter = self.metrics.rule_hits.labels(rule.name)
        counter.inc()
        context = Context(rule.name, messages, webhooks)
        for label, _, run in rule.actions:
            try:
                run(event, context)
            except Exception as exc:
                self._failed(rule, label, exc)
        return True

    def _failed(self, rule, where, exc):
        rule.failures += 1
        if rule.failure_counter is None:
            rule.failure_counter = self.metrics.rule_failures.labels(rule.name)
        rule.failure_counter.inc()
        log.warning("rule failed", extra=fields(
            rule=rule.name, at="%s:%d" % (rule.file, rule.line), where=where,
            error="%s: %s" % (type(exc).__name__, exc)))


def explain(ruleset, event):
    """For each rule: whether it wants the event, each condition's result and why, and
    what it would send. Nothing is sent."""
    report = []
    for rule in ruleset.rules:
        entry = {"rule": rule.name, "at": "%s:%d" % (rule.file, rule.line),
                 "wants": rule.wants(event.type), "conditions": [], "matched": False}
        report.append(entry)
        if not entry["wants"]:
            continue
        held = True
        for label, line, check in rule.conditions:
            try:
                result, why = bool(check(event)), None
            except Exception as exc:
                result, why = False, "%s: %s" % (type(exc).__name__, exc)
            if not result and why is None and hasattr(check, "explain"):
                why = check.explain(event)
            entry["conditions"].append({"condition": label, "line": line, "held": result,
                                        "why": why})
            held = held and result
        if not held:
            continue
        entry["matched"] = True
        messages, webhooks, logs, errors = [], [], [], []
        context = Context(rule.name, messages, webhooks, logs)
        for label, _, run in rule.actions:
            try:
                run(event, context)
            except Exception as exc:
                errors.append("%s: %s: %s" % (label, type(exc).__name__, exc))
        entry.update(messages=[{"channel": c, "data": d} for c, d in messages],
                     webhooks=[{"method": w.method, "url": redact(w.url)} for w in webhooks],
                     logs=["%s: %s" % item for item in logs], errors=errors)
        if rule.stop:
            break
    return report
