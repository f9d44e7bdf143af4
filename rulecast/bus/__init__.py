"""Buses: how messages travel between workers and hosts."""
from rulecast.bus.base import Bus, BusUnavailable
from rulecast.bus.local import LocalBus

__all__ = ["Bus", "BusUnavailable", "LocalBus"]
