"""Backends run a command somewhere and report its output and exit, behind one interface.
They are found by name in the `spell_jupyter.backends` entry-point group (docker and local are
this package's own), so another package can bring one without a change here."""

from __future__ import annotations

from importlib.metadata import entry_points

from traitlets import import_item

from .base import ENTRY_POINT_GROUP, Backend, LaunchRequest, ProcessState, ProcessStatus


def backend_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def backend_named(name: str) -> type[Backend]:
    """The Backend class registered as `name`, or named 'module.Class'."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if found:
        cls = found[0].load()
    elif "." in name:
        cls = import_item(name)
    else:
        raise ValueError(
            f"SpellJupyter.backend: no backend named {name!r} (known: "
            f"{', '.join(['auto', *backend_names()])}; or give a class as 'module.Class')"
        )
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ValueError(f"SpellJupyter.backend: {name} is not a Backend class")
    return cls


__all__ = [
    "Backend",
    "LaunchRequest",
    "ProcessState",
    "ProcessStatus",
    "backend_named",
    "backend_names",
]
