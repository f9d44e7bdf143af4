"""Emit events from a `transaction` (Zope, Plone, pyramid_tm) app: sent only once committed.

``emit()`` checks the event at once and joins the current transaction with a data manager
that holds it. The events go out in ``tpc_finish``, after every resource voted and the
transaction was committed; an abort, a failed vote or a rolled-back savepoint drops them.
"""
import logging

import transaction
from transaction.interfaces import IDataManagerSavepoint, ISavepointDataManager
from zope.interface import implementer

from rulecast.events import make_event

log = logging.getLogger("rulecast.emit")

__all__ = ["emit", "EventDataManager"]

# The key of {process: data manager} in each transaction's data.
_KEY = object()


def _process_with_server(events):
    """Hand ``events`` to the rules of the rulecast server running in this process."""
    from rulecast.server import current
    return current().engine.process(events)


def emit(type, actor=None, object=None, data=None, manager=None, process=None,
         id=None, time=None):
    """Report an event once the current transaction commits; dropped if it aborts.

    ``manager`` is the transaction manager (default ``transaction.manager``); ``process``
    takes the list of events (default: the running server's engine). Raises ValueError
    naming bad fields, and RuntimeError without a server, here rather than after commit.
    Events emitted in one transaction are sent as one batch, in the order emitted.
    """
    events = [make_event(type, actor, object, data, id, time)]
    if process is None:
        from rulecast.server import current
        current()  # no server: say so while the caller can still see it
        process = _process_with_server
    manager = manager or transaction.manager
    txn = manager.get()
    try:
        managers = txn.data(_KEY)
    except KeyError:
        managers = {}
        txn.set_data(_KEY, managers)
    dm = managers.get(process)
    if dm is None:
        dm = managers[process] = EventDataManager(manager, process, managers)
        txn.join(dm)
    dm.events.extend(events)


@implementer(ISavepointDataManager)
class EventDataManager:
    """Holds one transaction's events; hands them to ``process`` in ``tpc_finish`` only."""

    def __init__(self, transaction_manager, process, managers):
        self.transaction_manager = transaction_manager
        self.process = process
        self.managers = managers  # where emit() finds this one; left on abort
        self.events = []

    def _drop(self):
        self.events = []
        if self.managers.get(self.process) is self:
            del self.managers[self.process]  # a later emit joins a fresh one

    def abort(self, txn):
        """The transaction aborted, or a savepoint from before we joined rolled back."""
        self._drop()

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        pass  # nothing of ours can fail the commit; we only act once it succeeded

    def tpc_finish(self, txn):
        """Committed: send the events. A failure is logged, never raised, since the
        transaction cannot be undone any more."""
        events, self.events = self.events, []
        if not events:
            return
        try:
            self.process(events)
        except Exception:
            log.exception("%d events of a committed transaction were not sent: %s",
                          len(events), ", ".join(e.type for e in events))

    def tpc_abort(self, txn):
        """The two-phase commit failed (another resource refused): drop the events."""
        self._drop()

    def sortKey(self):
        # Last among the resources, so their tpc_finish (the real commit) runs first.
        return "\U0010ffff rulecast"

    def savepoint(self):
        return _Savepoint(self, len(self.events))


@implementer(IDataManagerSavepoint)
class _Savepoint:
    """Rolling back forgets the events emitted since the savepoint."""

    def __init__(self, dm, count):
        self.dm, self.count = dm, count

    def rollback(self):
        del self.dm.events[self.count:]
