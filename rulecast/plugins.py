"""The plugin manager: add-ons from entry points and from the config's `plugins`."""
import importlib

import pluggy

from rulecast import hookspecs

__all__ = ["PluginError", "manager"]

#: The entry-point group that add-on packages register under.
ENTRY_POINT_GROUP = "rulecast"

#: rulecast's own plugin modules, registered exactly like an add-on.
BUILTINS = ("rulecast.conditions", "rulecast.actions")


class PluginError(Exception):
    """A plugin named in the config that cannot be imported."""


def manager(names=()):
    """A plugin manager with the built-ins, every installed add-on, and ``names``."""
    pm = pluggy.PluginManager("rulecast")
    pm.add_hookspecs(hookspecs)
    for name in BUILTINS + tuple(names):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise PluginError("plugins: cannot import %r: %s; is it installed in this "
                              "environment?" % (name, exc)) from None
        if not pm.is_registered(module):
            pm.register(module, name=name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm
