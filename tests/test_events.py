"""Events: the schema and the template context."""
import pytest
from marshmallow import ValidationError

from rulecast.events import Event, load_events, lookup


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
