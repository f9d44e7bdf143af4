"""The built-in actions, compiled from options through a real registry and compiler."""
import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from rulecast import actions
from rulecast.events import Event
from rulecast.registry import Compiler, Registry, RuleError
from rulecast.templates import Templates


class Recorder:
    """What the engine hands an action, recording what the action does with it."""

    def __init__(self, rule="comment-to-owner"):
        self.rule = rule
        self.messages, self.webhooks, self.logs = [], [], []

    def publish(self, channel, data):
        self.messages.append((channel, data))

    def webhook(self, request):
        self.webhooks.append(request)

    def log(self, level, text):
        self.logs.append((level, text))


@pytest.fixture
def compile():
    registry = Registry("action")
    actions.rulecast_add_actions(registry)
    return Compiler(Registry("condition"), registry, Templates()).action


def event(**data):
    return Event("comment.added", id=7,
                 actor={"id": "bob", "name": "Bob"},
                 object={"owner": "ann", "title": "Q3 plan", "url": "https://x.example/q3"},
                 data=data or {"text": "looks good"})


def run(action, ev=None):
    context = Recorder()
    action(ev or event(), context)
    return context


def test_notify_sends_rendered_message_to_each_target(compile):
    """notify renders title, body, url and extra data and sends one message per channel."""
    action = compile({"notify": {
        "to": ["user:{{ object.owner }}", "role:Reviewer"],
        "title": "New comment on {{ object.title }}",
        "body": "{{ actor.name }}: {{ data.text }}", "url": "{{ object.url }}",
        "data": {"by": "{{ actor.id }}", "priority": 2}}})
    expected = {"title": "New comment on Q3 plan", "body": "Bob: looks good",
                "url": "https://x.example/q3", "event": "comment.added",
                "rule": "comment-to-owner", "by": "bob", "priority": 2}
    assert run(action).messages == [("user:ann", expected), ("role:Reviewer", expected)]


def test_notify_leaves_out_body_and_url_when_not_configured(compile):
    """A notify with only a title sends title, event and rule."""
    action = compile({"notify": {"to": "topic:news", "title": "hi"}})
    assert run(action).messages == [
        ("topic:news", {"title": "hi", "event": "comment.added", "rule": "comment-to-owner"})]


def test_event_data_is_never_template_source(compile):
    """Template markup inside the event arrives as those characters."""
    action = compile({"notify": {"to": "topic:news", "title": "{{ data.text }}"}})
    assert run(action, event(text="{{ 7*7 }}")).messages[0][1]["title"] == "{{ 7*7 }}"


def test_missing_variable_raises(compile):
    """An undefined name fails the action, naming the option, instead of rendering ''."""
    action = compile({"notify": {"to": "topic:news", "title": "{{ object.nope }}"}})
    with pytest.raises(actions.ActionError, match="notify: title: UndefinedError") as info:
        run(action)
    assert isinstance(info.value.__cause__, UndefinedError)


def test_sandbox_refuses_dunder_attributes(compile):
    """A template cannot reach Python internals such as __class__."""
    action = compile({"notify": {"to": "topic:news", "title": "{{ data.__class__ }}"}})
    with pytest.raises(actions.ActionError) as info:
        run(action)
    assert isinstance(info.value.__cause__, SecurityError)


@pytest.mark.parametrize("target", ["room:1", "room:{{ object.owner }}"])
def test_bad_channel_kind_rejected_at_load(compile, target):
    """A target whose literal text shows an unknown kind fails at load, naming the kinds."""
    with pytest.raises(RuleError, match="unknown channel kind 'room'.*known: user, group, "
                                        "role, topic"):
        compile({"notify": {"to": ["user:ann", target], "title": "t"}})


def test_rendered_bad_channel_raises_at_run(compile):
    """A target that renders into a bad channel fails the action and sends nothing."""
    action = compile({"notify": {"to": ["user:ann", "{{ data.where }}"], "title": "t"}})
    context = Recorder()
    with pytest.raises(actions.ActionError, match="notify: rendered channel 'room:1'.*known"):
        action(event(where="room:1"), context)
    assert context.messages == []


def test_target_rendering_empty_name_raises(compile):
    """A target rendering to 'user:' is a broken rule, not a skipped target."""
    action = compile({"notify": {"to": "user:{{ data.who }}", "title": "t"}})
    with pytest.raises(actions.ActionError, match="KIND:NAME"):
        run(action, event(who=""))


def test_notify_data_may_not_shadow_its_own_keys(compile):
    """Extra data named like title or rule is rejected at load."""
    with pytest.raises(RuleError, match="'rule' set by notify itself"):
        compile({"notify": {"to": "topic:news", "title": "t", "data": {"rule": "x"}}})


def test_publish_renders_channel_and_data(compile):
    """publish renders the channel and nested string values; other values pass as-is."""
    action = compile({"publish": {"channel": "user:{{ object.owner }}", "data": {
        "text": "{{ data.text }}", "n": 3, "nested": {"who": ["{{ actor.name }}"]}}}})
    assert run(action).messages == [
        ("user:ann", {"text": "looks good", "n": 3, "nested": {"who": ["Bob"]}})]


def test_webhook_builds_request_with_defaults(compile):
    """A webhook with only a url POSTs the whole event, 3 retries, 5 s timeout."""
    ev = event()
    context = Recorder()
    compile({"webhook": {"url": "https://hooks.example/{{ object.owner }}"}})(ev, context)
    (request,) = context.webhooks
    assert (request.url, request.method, request.headers, request.body, request.retries,
            request.timeout, request.rule) == (
        "https://hooks.example/ann", "POST", {}, ev.as_dict(), 3, 5.0, "comment-to-owner")


def test_webhook_renders_headers_and_body(compile):
    """Header values and body strings are templates."""
    action = compile({"webhook": {"url": "http://h.example/", "method": "PUT",
                                  "headers": {"X-Actor": "{{ actor.id }}"},
                                  "body": {"text": "{{ data.text }}"}}})
    (request,) = run(action).webhooks
    assert (request.method, request.headers, request.body) == (
        "PUT", {"X-Actor": "bob"}, {"text": "looks good"})


@pytest.mark.parametrize("url", ["ftp://h.example/x", "file:///etc/passwd", "ftp://{{ x }}"])
def test_webhook_url_must_be_http(compile, url):
    """A url that is not http(s) is rejected at load."""
    with pytest.raises(RuleError, match="http:// or https://"):
        compile({"webhook": {"url": url}})


def test_webhook_url_rendered_to_other_scheme_raises(compile):
    """A url rendered from event data must still be http(s)."""
    action = compile({"webhook": {"url": "{{ data.hook }}"}})
    with pytest.raises(actions.ActionError, match="webhook: url: must be an http"):
        run(action, event(hook="file:///etc/passwd"))


def test_webhook_header_value_must_be_one_line(compile):
    """A rendered header value with a newline is refused, not sent."""
    action = compile({"webhook": {"url": "http://h.example/", "headers": {"X-A": "{{ data.a }}"}}})
    with pytest.raises(actions.ActionError, match="one line"):
        run(action, event(a="x\r\nX-Admin: 1"))


@pytest.mark.parametrize("options, message", [
    ({"retries": 11}, "retries: must be a whole number from 0 to 10"),
    ({"method": "GET"}, "method: must be one of POST, PUT, PATCH"),
    ({"timeout": 0}, "timeout: must be seconds above 0")])
def test_webhook_options_checked(compile, options, message):
    """Out-of-range webhook options are rejected with their own message."""
    with pytest.raises(RuleError, match=message):
        compile({"webhook": dict(url="http://h.example/", **options)})


def test_unknown_option_rejected_naming_known_ones(compile):
    """A misspelt option is an error listing the options there are."""
    with pytest.raises(RuleError, match="titel: unknown option; known: body, data, title, to, "
                                        "url"):
        compile({"notify": {"to": "topic:news", "titel": "t"}})


def test_template_syntax_error_names_option(compile):
    """A broken template is reported at load with the option it is in."""
    with pytest.raises(RuleError, match="body: template syntax error"):
        compile({"notify": {"to": "topic:news", "title": "t", "body": "{{ oops"}})


def test_log_renders_message_at_level(compile):
    """log hands the rendered text and its level to the engine."""
    action = compile({"log": {"message": "{{ actor.name }} commented", "level": "warning"}})
    assert run(action).logs == [("warning", "Bob commented")]


def test_notify_needs_a_target(compile):
    """An empty target list is rejected with an example of a target."""
    with pytest.raises(RuleError, match=r"to: expected a channel like 'user:\{\{ object.owner"):
        compile({"notify": {"to": [], "title": "t"}})
