"""Events: the schema and the template context."""
import pytest
from marshmallow import ValidationError

from rulecast.events import Event, EventSchema, load_events, lookup


def test_only_type_required():
    """An event needs only a type; the rest defaults."""
    event, = load_events({"type": "comment.added"})
    assert event.type == "comment.added" and event.actor == {} and event.time.endswith("Z")


def test_list_errors_keyed_by_index():
    """A list of events reports errors per index and field."""
    with pytest.raises(ValidationError) as exc:
        load_events([{"type": "ok"}, {"type": "bad type!"}, {}])
    assert set(exc.value.messages) == {1, 2}
    assert "type" in exc.value.messages[2]


def test_fields_must_be_objects():
    """actor, object and data must be objects."""
    with pytest.raises(ValidationError) as exc:
        load_events({"type": "x", "actor": "bob", "data": [1]})
    assert set(exc.value.messages) == {"actor", "data"}


def test_lookup_dotted():
    """lookup walks dotted paths and list indexes, with a default."""
    ctx = Event("x", object={"tags": ["a", "b"], "owner": {"id": 7}}).context
    assert lookup(ctx, "object.owner.id") == 7
    assert lookup(ctx, "object.tags.1") == "b"
    assert lookup(ctx, "object.nope", None) is None
    with pytest.raises(KeyError):
        lookup(ctx, "data.x")


#: Bodies the fast check refuses, each for another reason; the schema words the errors.
BAD = [
    {},
    {"type": None},
    {"type": 7},
    {"type": ""},
    {"type": "bad type!"},
    {"type": "x" * 201},
    {"type": "x", "time": 5},
    {"type": "x", "actor": None},
    {"type": "x", "actor": "bob", "data": [1]},
    {"type": "x", "object": {1: "not a string key"}},
    {"type": "x", "color": "red"},
    {"actor": {"id": "bob"}, "nope": 1},
    "comment.added",
    [{"type": "ok"}, {"type": "bad type!"}, {}],
    [{"type": "ok"}, "not an object", {"type": "x", "data": None}],
]


@pytest.mark.parametrize("body", BAD, ids=range(len(BAD)))
def test_errors_as_the_schema_gives_them(body):
    """A bad body gets exactly the errors EventSchema gives, per index for a list."""
    with pytest.raises(ValidationError) as exc:
        load_events(body)
    if isinstance(body, (dict, list)):
        with pytest.raises(ValidationError) as schema:
            EventSchema(many=isinstance(body, list)).load(body)
        assert exc.value.messages == schema.value.messages
    else:
        assert exc.value.messages == {"_": ["expected an event object or a list of them"]}


#: Well-formed bodies, plain and unusual: the fast check and the schema load them alike.
GOOD = [
    {"type": "comment.added"},
    {"type": "a\n"},  # the schema's pattern ends in $, which allows one final newline
    {"type": "x" * 200, "id": 7, "time": "2026-01-01T00:00:00Z", "actor": {"id": "bob"},
     "object": {"path": "/a", "tags": ["x"]}, "data": {"text": "{{ 7*7 }}", "n": None}},
    {"type": "x", "id": "e-1", "time": None, "data": {}},
]


@pytest.mark.parametrize("body", GOOD, ids=range(len(GOOD)))
def test_good_events_as_the_schema_loads_them(body):
    """A well-formed event is the one the schema would load, with copies of its mappings."""
    event, = load_events(body)
    loaded = EventSchema().load(body)
    if loaded["time"] is None:
        loaded["time"] = event.time  # the receiving time
    assert event.as_dict() == loaded
    for key in ("actor", "object", "data"):
        assert key not in body or getattr(event, key) is not body[key]


@pytest.mark.parametrize("id_", [True, 1.5, [1], {"a": 1}])
def test_odd_ids_refused(id_):
    """An id neither string nor integer is a field error, in one event or a list."""
    with pytest.raises(ValidationError) as exc:
        load_events({"type": "x", "id": id_})
    assert exc.value.messages == {"id": ["must be a string or an integer"]}
    with pytest.raises(ValidationError) as exc:
        load_events([{"type": "x", "id": 7}, {"type": "x", "id": id_}])
    assert exc.value.messages == {1: {"id": ["must be a string or an integer"]}}
