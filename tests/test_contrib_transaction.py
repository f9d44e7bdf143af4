"""rulecast.contrib.transaction: events go out only after a successful two-phase commit."""
import logging

import pytest
import transaction

from rulecast.contrib.transaction import emit


class Recorder:
    """A stand-in for the engine: records each batch of events it is handed."""

    def __init__(self, fail=False):
        self.batches, self.fail = [], fail

    def __call__(self, events):
        if self.fail:
            raise RuntimeError("bus down")
        self.batches.append([(e.type, e.data) for e in events])


class FailingVote:
    """Another resource of the transaction, refusing in tpc_vote."""

    def __init__(self, manager):
        self.transaction_manager = manager

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn):
        raise RuntimeError("vote refused")

    def sortKey(self):
        return "a-failing-resource"


@pytest.fixture
def tm():
    """A transaction manager of the test's own; the global one is left alone."""
    return transaction.TransactionManager()


def test_sent_after_commit(tm):
    """An emitted event reaches process only when the transaction commits."""
    record = Recorder()
    tm.begin()
    emit("doc.modified", data={"n": 1}, manager=tm, process=record)
    assert record.batches == []
    tm.commit()
    assert record.batches == [[("doc.modified", {"n": 1})]]


def test_dropped_on_abort(tm):
    """An aborted transaction's events are never sent, nor are they sent later."""
    record = Recorder()
    tm.begin()
    emit("doc.modified", manager=tm, process=record)
    tm.abort()
    tm.begin()
    tm.commit()
    assert record.batches == []


def test_dropped_when_another_resource_fails_vote(tm):
    """A resource failing tpc_vote fails the commit, and the events are dropped."""
    record = Recorder()
    tm.begin()
    emit("doc.modified", manager=tm, process=record)
    tm.get().join(FailingVote(tm))
    with pytest.raises(RuntimeError, match="vote refused"):
        tm.commit()
    tm.abort()
    assert record.batches == []


def test_several_emits_one_batch_in_order(tm):
    """Several emits in one transaction go out as one batch, in the order emitted."""
    record = Recorder()
    tm.begin()
    for n in range(3):
        emit("doc.step", data={"n": n}, manager=tm, process=record)
    assert len(tm.get()._resources) == 1
    tm.commit()
    assert record.batches == [[("doc.step", {"n": 0}), ("doc.step", {"n": 1}),
                               ("doc.step", {"n": 2})]]


def test_rolled_back_savepoint_drops_later_events(tm):
    """Events emitted after a savepoint that is rolled back are not sent."""
    record = Recorder()
    tm.begin()
    emit("doc.kept", manager=tm, process=record)
    savepoint = tm.savepoint()
    emit("doc.undone", manager=tm, process=record)
    savepoint.rollback()
    tm.commit()
    assert record.batches == [[("doc.kept", {})]]


def test_bad_event_raises_at_emit(tm):
    """A malformed event raises ValueError at emit, naming the field."""
    tm.begin()
    with pytest.raises(ValueError, match="type"):
        emit("not a type!", manager=tm, process=Recorder())
    assert tm.get()._resources == []


def test_processing_error_logged_not_raised(tm, caplog):
    """A failure while sending after the commit is logged, and commit() still returns."""
    tm.begin()
    emit("doc.modified", manager=tm, process=Recorder(fail=True))
    with caplog.at_level(logging.ERROR, logger="rulecast.emit"):
        tm.commit()
    assert "were not sent: doc.modified" in caplog.text and "bus down" in caplog.text


def test_no_server_raises_at_emit(tm, monkeypatch):
    """Without process and without a running server, emit raises at once, not after commit."""
    monkeypatch.setattr("rulecast.server._current", None)
    tm.begin()
    with pytest.raises(RuntimeError, match="no rulecast server"):
        emit("doc.modified", manager=tm)
    assert tm.get()._resources == []
