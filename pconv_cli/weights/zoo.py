"""The zoo: published weights pconv knows by name (in the spirit of torchvision's weights enums).

Each :class:`~pconv_cli.weights.entry.WeightsEntry` says where a file lives (a
URL, or ``bundled``: a file inside the package, loaded offline), its sha256, what
it is (family, config, data, the publisher's scores) and which converter reads it
(``source_format``). Every model family lists its published weights in its own
folder (``pconv_cli/models/<family>/zoo.py``, a ``WEIGHTS`` tuple, torch-free);
the zoo holds them in the order of the family index, then whatever
:func:`register_weights` adds. Names a family makes on demand (e.g. torchvision's
weights of a classifier) come from its zoo module's ``resolve_weights(name)`` or
from :func:`register_weights_resolver`.
Nothing here downloads: see :mod:`pconv_cli.weights.hub`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from pconv_cli.models.families import DEFAULT_WEIGHTS, import_family_parts
from pconv_cli.weights.entry import WeightsEntry
from pconv_cli.weights.errors import WeightsError

__all__ = [
    "DEFAULT_WEIGHTS",
    "ZOO",
    "WeightsEntry",
    "get_weights",
    "list_weights",
    "register_weights",
    "register_weights_resolver",
    "resolve_weights",
]

ZOO: dict[str, WeightsEntry] = {
    entry.name: entry
    for module in import_family_parts("zoo")
    for entry in getattr(module, "WEIGHTS", ())
}
"""Published weights by name; see :func:`get_weights`. Families add theirs in their ``zoo.py``
or with :func:`register_weights`."""

_RESOLVERS: list[Callable[[str], WeightsEntry | None]] = [
    module.resolve_weights
    for module in import_family_parts("zoo")
    if hasattr(module, "resolve_weights")
]


def register_weights(*entries: WeightsEntry) -> None:
    """Add (or replace) zoo entries (for families registered from outside pconv)."""
    for entry in entries:
        ZOO[entry.name] = entry


def register_weights_resolver(resolve: Callable[[str], WeightsEntry | None]) -> None:
    """Entries made on demand: ``resolve(name)`` returns the entry a name stands for, or None
    (for open-ended sets, such as every torchvision weights enum of every classifier)."""
    _RESOLVERS.append(resolve)


@functools.cache
def _load_plugins() -> None:
    """Import the ``pconv_cli.plugins`` entry points (they may register weights) once, if any
    are installed: without one, nothing is imported."""
    from importlib.metadata import entry_points

    from pconv_cli.models.families import PLUGIN_GROUP

    if entry_points(group=PLUGIN_GROUP):
        from pconv_cli.models.registry import load_plugins

        load_plugins()


def _lookup(name: str) -> WeightsEntry | None:
    if name in ZOO:
        return ZOO[name]
    return next((e for resolve in _RESOLVERS if (e := resolve(name)) is not None), None)


def resolve_weights(name: str) -> WeightsEntry | None:
    """The zoo entry called ``name``, listed or made by a resolver (pconv's families, then
    installed plugins); None if there is none."""
    entry = _lookup(name)
    if entry is None:
        _load_plugins()
        entry = _lookup(name)
    return entry


def list_weights() -> list[WeightsEntry]:
    """Every listed zoo entry (installed plugins' included), in zoo order."""
    _load_plugins()
    return list(ZOO.values())


def get_weights(name: str) -> WeightsEntry:
    """The zoo entry called ``name``; an unknown name is a :class:`WeightsError`."""
    entry = resolve_weights(name)
    if entry is None:
        raise WeightsError(
            f"unknown weights {name!r}; known: {', '.join(ZOO)} (or pass a file path)"
        )
    return entry
