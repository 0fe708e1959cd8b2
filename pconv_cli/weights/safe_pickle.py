"""Reading ``torch.save`` files that pickle more than tensors, without running code from them.

``torch.load(weights_only=True)`` refuses every class it does not know. Some published
checkpoints also pickle their training configuration: a PyTorch Lightning checkpoint
holds OmegaConf containers (``hyper_parameters``) and callback classes. Loading those
with a plain ``torch.load`` would import those libraries and call whatever the pickle
names, which is how a planted ``__reduce__`` runs code.

:func:`load_restricted` reads such a file with an unpickler that resolves only

- tensors and storages (torch's own rebuild functions), ``OrderedDict``, numpy
  scalars, dtypes and arrays, and builtin data types (``dict``, ``list``, ``int``, ...);
- classes from the ``inert`` namespaces the caller names (e.g. ``"omegaconf"``), each
  replaced by an :class:`Inert` stand-in: a class of the same name that records its
  constructor arguments, items and pickled state and runs nothing;

and refuses any other global (``os.system``, ``builtins.eval``, ...) with a
:class:`RefusedGlobal` error before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
from collections import OrderedDict
from collections.abc import Iterable
from typing import IO, Any, ClassVar

import torch

__all__ = ["Inert", "RefusedGlobal", "inert_state", "load_restricted"]


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set; ``name`` is ``module.qualname``."""

    def __init__(self, name: str):
        super().__init__(f"global {name} is not allowed")
        self.name = name


class Inert:
    """Stand-in for an object of a class that is not imported: it keeps what the pickle
    gives it (``args``, ``kwargs``, ``state``, ``items``) and never calls anything.

    Subclasses are made per pickled name; :attr:`inert_name` is the original
    ``module.qualname``.
    """

    inert_name: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any):
        """Arguments were recorded by ``__new__``."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.items[len(self.items)] = value

    def extend(self, values: Iterable[Any]) -> None:
        for value in values:
            self.append(value)

    def __repr__(self) -> str:
        return f"<inert {self.inert_name}>"


def inert_state(obj: Any, key: str, default: Any = None) -> Any:
    """``obj.state[key]`` for an :class:`Inert` whose pickled state is a dict, else ``default``."""
    if isinstance(obj, Inert) and isinstance(obj.state, dict):
        return obj.state.get(key, default)
    return default


_BUILTIN_TYPES = (dict, list, tuple, set, frozenset, int, float, complex, str, bytes,
                  bytearray, bool, slice)  # fmt: skip
_TORCH_NAMES = (
    "_utils._rebuild_tensor", "_utils._rebuild_tensor_v2", "_utils._rebuild_parameter",
    "_utils._rebuild_parameter_with_state", "Size",
)  # fmt: skip


def _allowed_globals() -> dict[str, Any]:
    """``module.qualname`` -> object for every global a restricted pickle may name."""
    import codecs

    from pconv_cli.weights.formats import _numpy_data_globals

    allowed: dict[str, Any] = {f"builtins.{t.__name__}": t for t in _BUILTIN_TYPES}
    allowed["collections.OrderedDict"] = OrderedDict
    allowed["_codecs.encode"] = codecs.encode  # bytes in protocol-2 pickles
    for name in _TORCH_NAMES:
        obj: Any = torch
        for part in name.split("."):
            obj = getattr(obj, part)
        allowed[f"torch.{name}"] = obj
    for dtype in vars(torch).values():
        if isinstance(dtype, torch.dtype):
            allowed[f"torch.{str(dtype).removeprefix('torch.')}"] = dtype
    for item in _numpy_data_globals():
        obj, name = item if isinstance(item, tuple) else (item, None)
        allowed[name or f"{obj.__module__}.{obj.__qualname__}"] = obj
    return allowed


def _make_unpickler(inert: tuple[str, ...]) -> type[pickle.Unpickler]:
    allowed = _allowed_globals()
    stand_ins: dict[str, type[Inert]] = {}

    def is_inert(name: str) -> bool:
        return any(name == space or name.startswith(space + ".") for space in inert)

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            # Python 2 names of protocol-2 pickles (``__builtin__.long``), as pickle maps them
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            full = f"{module}.{name}"
            if full in allowed:
                return allowed[full]
            if is_inert(full):
                if full not in stand_ins:
                    stand_ins[full] = type(name.rsplit(".", 1)[-1], (Inert,), {
                        "inert_name": full, "__module__": __name__,
                    })  # fmt: skip
                return stand_ins[full]
            raise RefusedGlobal(full)

    return RestrictedUnpickler


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load``."""

    __name__ = "pconv_restricted_pickle"

    def __init__(self, inert: tuple[str, ...]):
        self.Unpickler = _make_unpickler(inert)

    def load(self, file: IO[bytes], **kwargs: Any) -> Any:
        return self.Unpickler(file, **kwargs).load()


def load_restricted(
    file: str | os.PathLike[str] | IO[bytes], *, inert: Iterable[str] = ()
) -> Any:
    """The object a ``torch.save`` file holds, tensors on the CPU, read with the restricted
    unpickler (see the module docstring); ``inert`` names the modules (``"omegaconf"``) or
    classes (``"typing.Any"``) that become :class:`Inert` stand-ins.

    Raises :class:`RefusedGlobal` for any other global, before it is called.
    """
    module = _PickleModule(tuple(inert))
    return torch.load(file, map_location="cpu", pickle_module=module, weights_only=False)
