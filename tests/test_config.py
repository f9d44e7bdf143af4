"""Tests for rulecast.config: layering, checking, and the generated secrets."""
import os
import stat

import pytest
import yaml

from rulecast import config
from rulecast.config import ConfigError, load, parse_duration


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working directory with no config file."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems(**kwargs):
    with pytest.raises(ConfigError) as caught:
        load(**kwargs)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_defaults_without_a_file(here):
    """With no rulecast.yaml the embedded defaults apply, relative to the current directory."""
    c = load(environ={})
    assert c.source is None
    assert (c.listen, c.host, c.port) == ("127.0.0.1:8080", "127.0.0.1", 8080)
    assert c.prefix == "/rulecast"
    assert c.var_dir == str(here / "var")
    assert c.rules == [str(here / "rules")]
    assert c.store == "sqlite:///" + str(here / "var" / "rulecast.db")
    assert c.bus == "nanomsg" and c.app is None and c.plugins == []
    assert (c.limits.max_message_bytes, c.limits.max_connections) == (65536, 10000)
    assert (c.limits.send_queue, c.limits.client_rate) == (1000, 50)
    assert c.history.max_per_channel == 1000 and c.history.max_age == 7 * 86400


def test_secret_and_api_key_generated_private_and_stable(here):
    """Without secret or api_keys both are generated into var/ with mode 0600, once."""
    first, second = load(environ={}), load(environ={})
    assert first.secret == second.secret and len(first.secret) >= 32
    assert first.api_keys == second.api_keys and first.api_keys != [first.secret]
    assert first.api_key_file == str(here / "var" / "api-key")
    assert (here / "var" / "secret").read_text().strip() == first.secret
    assert (here / "var" / "api-key").read_text().strip() == first.api_keys[0]
    for name in ("secret", "api-key"):
        assert stat.S_IMODE(os.stat(here / "var" / name).st_mode) == 0o600
    assert sorted(os.listdir(here / "var")) == ["api-key", "secret"]


def test_kept_secrets_are_read_not_rewritten(here):
    """Once var/secret and var/api-key exist, loading reads them and writes nothing."""
    write(here / "var" / "secret", "s" * 20 + "\n")
    write(here / "var" / "api-key", "k" * 20 + "\n")
    before = os.stat(here / "var").st_mtime_ns
    c = load(environ={})
    assert (c.secret, c.api_keys) == ("s" * 20, ["k" * 20])
    assert os.stat(here / "var").st_mtime_ns == before


def test_first_writer_of_a_secret_wins(here, monkeypatch):
    """A secret another process wrote meanwhile is kept, so both processes share it."""
    write(here / "var" / "secret", "written-by-the-other-process\n")
    exists = os.path.exists
    monkeypatch.setattr(config.os.path, "exists", lambda p: exists(p) and p.endswith("api-key"))
    assert load(environ={}).secret == "written-by-the-other-process"
    assert sorted(os.listdir(here / "var")) == ["api-key", "secret"]


def test_truncated_secret_file_is_reported(here):
    """A kept secret file that is too short is an error telling how to regenerate it."""
    write(here / "var" / "secret", "abc\n")
    [problem] = problems(environ={})
    assert problem == (f"var_dir: {here / 'var' / 'secret'} holds fewer than 16 characters; "
                       f"delete it to get a new one")


def test_configured_secret_and_keys_touch_no_files(here):
    """A configured secret and api_keys are used as given and var/ is not created."""
    write(here / "rulecast.yaml", "secret: 0123456789abcdef\napi_keys: [k1, k2]\n")
    c = load(environ={})
    assert c.secret == "0123456789abcdef"
    assert c.api_keys == ["k1", "k2"] and c.api_key_file is None
    assert not (here / "var").exists()


def test_unusable_var_dir_is_one_problem(here):
    """A var_dir that cannot be created is reported with its key and its file line."""
    write(here / "blocker", "a file, not a folder")
    write(here / "rulecast.yaml", "prefix: /x\nvar_dir: blocker/var\n")
    [problem] = problems(environ={})
    assert problem.startswith("rulecast.yaml:2: var_dir: cannot keep a generated secret in ")


def test_values_from_the_default_file(here):
    """./rulecast.yaml is read when no path is given and its values win over defaults."""
    write(here / "rulecast.yaml", """
listen: 0.0.0.0:9000
workers: 3
app: mysite.wsgi:application
prefix: /live
plugins: [rulecast_ldap, my.addon]
bus: redis://localhost:6379/1
store: redis://localhost:6379/1
allowed_origins: ["https://app.example.org", "https://*.example.org:8443"]
client_publish: ["topic:board-*"]
limits: {send_queue: 10}
history: {max_age: 2h}
""")
    c = load(environ={})
    assert c.source == str(here / "rulecast.yaml")
    assert (c.host, c.port, c.workers) == ("0.0.0.0", 9000, 3)
    assert (c.app, c.prefix) == ("mysite.wsgi:application", "/live")
    assert c.bus == "redis://localhost:6379/1"
    assert c.plugins == ["rulecast_ldap", "my.addon"]
    assert c.allowed_origins == ["https://app.example.org", "https://*.example.org:8443"]
    assert c.client_publish == ["topic:board-*"]
    assert c.limits.send_queue == 10 and c.limits.max_connections == 10000
    assert c.history.max_age == 7200.0 and c.history.max_per_channel == 1000


def test_empty_keys_mean_the_default(here):
    """A key or section left empty (its items commented out) takes the default."""
    write(here / "rulecast.yaml", "limits:\n  # send_queue: 5\nrules:\nworkers:\n"
                                  "history:\n  max_age:\n")
    c = load(environ={"RULECAST_APP": ""}, overrides={"workers": 2})
    assert c.limits.send_queue == 1000 and c.rules == [str(here / "rules")]
    assert c.history.max_age == 7 * 86400 and c.app is None


def test_empty_file_means_defaults(here):
    """An empty rulecast.yaml is the same as none, except for source."""
    write(here / "rulecast.yaml", "# nothing yet\n")
    c = load(environ={})
    assert c.source == str(here / "rulecast.yaml") and c.listen == "127.0.0.1:8080"


def test_explicit_missing_file(here):
    """An explicit path that does not exist is an error, not a silent fallback."""
    assert problems(path="nowhere.yaml", environ={}) == ["nowhere.yaml: no such file"]


def test_environment_beats_file(here):
    """RULECAST_<KEY> and RULECAST_<SECTION>_<KEY> override the file, parsed as YAML."""
    write(here / "rulecast.yaml", "workers: 2\nlimits: {send_queue: 10, max_connections: 5}\n")
    c = load(environ={"RULECAST_WORKERS": "4", "RULECAST_LIMITS_SEND_QUEUE": "20",
                      "RULECAST_HISTORY_MAX_AGE": "15m", "RULECAST_SECRET": "1234567890123456"})
    assert c.workers == 4
    assert (c.limits.send_queue, c.limits.max_connections) == (20, 5)
    assert c.history.max_age == 900.0
    assert c.secret == "1234567890123456"


def test_overrides_beat_environment(here):
    """Flags win over the environment; None flags are ignored."""
    c = load(environ={"RULECAST_LISTEN": "127.0.0.1:7000", "RULECAST_WORKERS": "4"},
             overrides={"listen": "127.0.0.1:9000", "workers": None, "app": "m:app"})
    assert c.port == 9000 and c.workers == 4 and c.app == "m:app"


def test_list_from_comma_separated_environment(here):
    """A list-valued variable may be a plain comma-separated string or a YAML list."""
    c = load(environ={"RULECAST_API_KEYS": "k1, k2", "RULECAST_PUBLIC_TOPICS": "*",
                      "RULECAST_PLUGINS": "[a.b, c]"})
    assert c.api_keys == ["k1", "k2"]
    assert c.public_topics == ["topic:*"]
    assert c.plugins == ["a.b", "c"]


def test_unknown_key_with_suggestion_and_line(here):
    """An unknown key names its line, the nearest known key, and all known keys."""
    write(here / "rulecast.yaml", "prefix: /x\n\nlsiten: 1.2.3.4:80\n")
    [problem] = problems(environ={})
    assert problem.startswith("rulecast.yaml:3: lsiten: unknown key; did you mean 'listen'? "
                              "known: allowed_origins, api_keys, app, bus, ")
    assert problem.endswith(", var_dir, workers")


def test_unknown_nested_key(here):
    """Unknown keys inside a section are errors with the dotted key."""
    write(here / "rulecast.yaml", "limits:\n  sendqueue: 3\n")
    [problem] = problems(environ={})
    assert problem.startswith("rulecast.yaml:2: limits.sendqueue: unknown key; "
                              "did you mean 'send_queue'? known: client_rate, ")


def test_bad_nested_type_names_file_line_and_key(tmp_path, here):
    """A bad value inside a section is reported as path:line: section.key: message."""
    path = write(tmp_path / "etc" / "rulecast.yaml",
                 "listen: 127.0.0.1:80\nlimits:\n  max_connections: 5\n  send_queue: lots\n")
    assert problems(path=str(path), environ={}) == [
        f"{path}:4: limits.send_queue: Not a valid integer."]


def test_all_problems_reported_at_once_in_order(here):
    """Every problem from the file, the environment and flags is listed, one per line."""
    write(here / "rulecast.yaml",
          "workers: 0\nprefix: rulecast/\npublic_topics:\n  - news\n  - user:bob\nlimits: 5\n")
    assert problems(environ={"RULECAST_HISTORY_MAX_AGE": "1y"}, overrides={"listen": "abc"}) == [
        'rulecast.yaml:1: workers: must be a positive integer or "auto", got 0',
        "rulecast.yaml:2: prefix: must start with '/' and have no trailing '/' or spaces, "
        "like '/rulecast', got 'rulecast/'",
        "rulecast.yaml:5: public_topics[1]: public_topics may only name topic: channels, "
        "got 'user:bob'; users, groups and roles get theirs from their token",
        "rulecast.yaml:6: limits: expected a mapping of keys",
        "RULECAST_HISTORY_MAX_AGE: history.max_age: expected a duration like '30s', '15m', "
        "'1h', '7d' or '2w' (or a number of seconds), got '1y'",
        "--listen: listen: expected HOST:PORT like '127.0.0.1:8080' or '[::1]:8080', got 'abc'",
    ]


def test_environment_problem_names_the_variable(here):
    """A bad environment value is reported under the variable's name."""
    assert problems(environ={"RULECAST_WORKERS": "many"}) == [
        'RULECAST_WORKERS: workers: must be a positive integer or "auto", got \'many\'']


def test_section_that_is_not_a_mapping_is_reported(here):
    """A section given as a scalar is reported at its line even when variables set sub-keys."""
    write(here / "rulecast.yaml", "limits: 5\n")
    assert problems(environ={"RULECAST_LIMITS_SEND_QUEUE": "3"}) == [
        "rulecast.yaml:1: limits: expected a mapping of keys"]


def test_problem_names_the_layer_that_set_the_value(here):
    """A bad value replacing the file's is reported under the variable, not the file line."""
    write(here / "rulecast.yaml",
          "public_topics:\n  - news\n  - sports\nlimits:\n  send_queue: 5\n")
    assert problems(environ={"RULECAST_PUBLIC_TOPICS": "ok,role:x",
                             "RULECAST_LIMITS_SEND_QUEUE": "0"}) == [
        "RULECAST_PUBLIC_TOPICS: public_topics[1]: public_topics may only name topic: channels, "
        "got 'role:x'; users, groups and roles get theirs from their token",
        "RULECAST_LIMITS_SEND_QUEUE: limits.send_queue: must be a whole number of frames "
        "above 0, got 0",
    ]


def test_yaml_syntax_error_with_line(here):
    """A YAML syntax error is one problem with the file and line."""
    write(here / "rulecast.yaml", "listen: 1.2.3.4:80\nrules: [a, b\nworkers: 2\n")
    [problem] = problems(environ={})
    assert problem.startswith("rulecast.yaml:3: YAML syntax error: ")


def test_top_level_must_be_a_mapping(here):
    """A file holding a list instead of keys says so."""
    write(here / "rulecast.yaml", "- listen: 1.2.3.4:80\n")
    assert problems(environ={}) == [
        "rulecast.yaml:1: expected a mapping of keys like 'listen: 127.0.0.1:8080', got a list"]


def test_workers_auto_is_cpu_count(here, monkeypatch):
    """workers: auto, the default, is the number of CPUs."""
    monkeypatch.setattr(config.os, "cpu_count", lambda: 7)
    assert load(environ={}).workers == 7
    assert load(environ={}, overrides={"workers": "auto"}).workers == 7
    assert load(environ={}, overrides={"workers": 1}).workers == 1


@pytest.mark.parametrize("listen, host, port", [
    ("127.0.0.1:8080", "127.0.0.1", 8080),
    ("localhost:0", "localhost", 0),
    ("[::1]:8080", "::1", 8080),
    ("[::]:65535", "::", 65535),
])
def test_listen_parsing(here, listen, host, port):
    """listen gives host and port; IPv6 in brackets and port 0 are accepted."""
    c = load(environ={}, overrides={"listen": listen})
    assert (c.listen, c.host, c.port) == (listen, host, port)


@pytest.mark.parametrize("listen", ["abc", "1.2.3.4", ":80", "host:port", "::1:80", "h:65536"])
def test_listen_rejected(here, listen):
    """A listen value that is not HOST:PORT names the flag, the key and the value."""
    [problem] = problems(environ={}, overrides={"listen": listen})
    assert problem.startswith("--listen: listen: ") and repr(listen) in problem


def test_listen_must_be_a_string(here):
    """A bare port number in the file gets a message showing the expected form."""
    write(here / "rulecast.yaml", "listen: 8080\n")
    assert problems(environ={}) == [
        "rulecast.yaml:1: listen: expected HOST:PORT as a string, like '127.0.0.1:8080'"]


def test_relative_paths_resolve_against_the_file(tmp_path, here):
    """var_dir, rules and a relative sqlite store resolve against the file's folder."""
    etc = tmp_path / "etc"
    path = write(etc / "rulecast.yaml", "var_dir: state\nrules: [../shared, more.yaml]\n"
                                       "store: sqlite:///db/main.db\nsecret: 0123456789abcdef\n")
    c = load(path=str(path), environ={})
    assert c.var_dir == str(etc / "state")
    assert c.rules == [str(tmp_path / "shared"), str(etc / "more.yaml")]
    assert c.store == "sqlite:///" + str(etc / "db" / "main.db")
    assert c.api_key_file == str(etc / "state" / "api-key") and (etc / "state" / "api-key").exists()


def test_rules_may_be_one_path(here):
    """rules may be a single path instead of a list."""
    write(here / "rulecast.yaml", "rules: /srv/rules\n")
    assert load(environ={}).rules == ["/srv/rules"]


@pytest.mark.parametrize("store, expected", [
    ("sqlite:///data/x.db", "sqlite:///{here}/data/x.db"),
    ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
])
def test_store_forms(here, store, expected):
    """Relative and absolute sqlite URLs become absolute; redis URLs are kept."""
    assert load(environ={"RULECAST_STORE": store}).store == expected.format(here=here)


@pytest.mark.parametrize("store", ["postgres://db/x", "sqlite://x.db", "sqlite:///"])
def test_store_rejected(here, store):
    """Other store URLs are rejected, naming both accepted forms."""
    [problem] = problems(environ={"RULECAST_STORE": store})
    assert problem.startswith("RULECAST_STORE: store: expected 'sqlite:///path.db'")
    assert "redis://" in problem


def test_public_topics_normalised(here):
    """Bare public topic patterns get "topic:" prepended; explicit ones are kept."""
    write(here / "rulecast.yaml", "public_topics: [public-*, 'topic:news']\n")
    assert load(environ={}).public_topics == ["topic:public-*", "topic:news"]


@pytest.mark.parametrize("pattern", ["user:bob", "group:staff", "role:Manager"])
def test_public_topics_reject_other_kinds(here, pattern):
    """public_topics naming user, group or role channels is an error."""
    [problem] = problems(environ={}, overrides={"public_topics": [pattern]})
    assert problem.startswith(f"--public-topics: public_topics[0]: public_topics may only name "
                              f"topic: channels, got {pattern!r}")


def test_client_publish_needs_a_kind(here):
    """client_publish patterns must start with a channel kind."""
    [problem] = problems(environ={"RULECAST_CLIENT_PUBLISH": "topic:ok-*,board-*"})
    assert problem.startswith("RULECAST_CLIENT_PUBLISH: client_publish[1]: expected a channel "
                              "pattern starting with user:, group:, role: or topic:")


@pytest.mark.parametrize("key, value", [
    ("app", "not a module"), ("app", "module"), ("secret", "short"), ("plugins", ["bad-name"]),
    ("bus", "zeromq"), ("allowed_origins", ["app.example.org"]), ("prefix", "/a b"),
    ("limits", {"client_rate": -1}), ("history", {"max_age": 0}),
])
def test_other_bad_values(here, key, value):
    """Each remaining check rejects a bad value under the key's name."""
    [problem] = problems(environ={}, overrides={key: value})
    assert problem.startswith(f"--{key.replace('_', '-')}: {key}")


def test_as_dict_round_trips(here):
    """as_dict() is plain data that, written back as a file, loads to the same values."""
    first = load(environ={}, overrides={"public_topics": ["news"], "limits": {"send_queue": 3}})
    write(here / "copy" / "rulecast.yaml", yaml.safe_dump(first.as_dict()))
    second = load(path=str(here / "copy" / "rulecast.yaml"), environ={})
    assert second.as_dict() == first.as_dict()
    assert "secret" in first.as_dict() and first.secret not in repr(first)


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("2w", 1209600),
    ("1h30m", 5400), ("90", 90), (45, 45), (1.5, 1.5), (" 2m ", 120),
])
def test_parse_duration(text, seconds):
    """Durations with a unit, plain numbers and numeric strings are seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "1y", "m", "-5", -5, "1h 30m", None, True])
def test_parse_duration_rejects(bad):
    """Anything else raises ValueError with an example of the expected form."""
    with pytest.raises(ValueError, match="expected a duration like '30s'"):
        parse_duration(bad)


def test_redis_bus_needs_redis_store(here):
    """A Redis bus with the SQLite store is refused at load, naming bus and the fix."""
    write(here / "rulecast.yaml", "bus: redis://localhost:6379/0\n")
    [problem] = problems(environ={})
    assert problem.startswith("rulecast.yaml:1: bus: a redis:// bus needs the Redis store")
