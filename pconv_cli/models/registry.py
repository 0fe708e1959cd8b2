"""The model registry: every family registers a builder and its config under a name.

A *family* is a kind of network pconv can build, train and load (see
:mod:`pconv_cli.models.families` for the built-in ones). Its *config* is a dataclass
holding every option the builder needs; checkpoints store the family name and the
config as JSON, so a model is rebuilt from its file without knowing any class name.
Families register themselves when their module is imported::

    @register_model("my_net", config=MyNetConfig, task="my_net")
    def my_net(config: MyNetConfig) -> InpaintingModel: ...

``build_model("my_net", width=0.5)`` validates the options against the config
dataclass and calls the builder. pconv's own families are listed in
:mod:`pconv_cli.models.families` and registered on first use of the registry;
families living outside pconv are found through the ``pconv_cli.plugins``
entry-point group (any module imported there may register families, tasks and
converters) or by importing their module before use.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pconv_cli.errors import UsageError

__all__ = [
    "ModelError",
    "ModelFamily",
    "build_model",
    "config_from_json",
    "config_to_json",
    "describe_config",
    "get_family",
    "list_models",
    "make_config",
    "plugin_modules",
    "register_model",
    "register_resolver",
]

from pconv_cli.models.families import PLUGIN_GROUP


class ModelError(UsageError, ValueError):
    """An unknown family or bad options for one; the message is one line (exit code 2)."""


@dataclass(frozen=True)
class ModelFamily:
    """A registered family.

    - ``build(config) -> nn.Module``: the model (for ``kind="inpainting"`` an
      :class:`~pconv_cli.models.inpainting.InpaintingModel`).
    - ``config``: the dataclass of the builder's options (JSON-serialisable fields).
    - ``task``: name of its training task (:func:`pconv_cli.train.tasks.register_task`);
      None: the family cannot be trained (inference only).
    - ``training_modules``: builders ``config -> nn.Module`` of the other networks
      training needs (e.g. ``{"discriminator": ...}``), saved beside the model.
    - ``defaults``: config values the family fixes (e.g. the torchvision ``arch`` of a
      classifier family); ``build_options``: keyword arguments of ``build`` that are
      not part of the config (e.g. ``weights`` to start from), so never stored.
    """

    name: str
    config: type
    build: Callable[[Any], nn.Module]
    task: str | None = None
    kind: str = "inpainting"
    aliases: tuple[str, ...] = ()
    training_modules: Mapping[str, Callable[[Any], nn.Module]] = field(default_factory=dict)
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    build_options: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """The Python module that registered the family (imported again in worker processes)."""
        return self.build.__module__


_FAMILIES: dict[str, ModelFamily] = {}
_ALIASES: dict[str, str] = {}
_RESOLVERS: list[tuple[Callable[[str], ModelFamily | None], Callable[[], list[str]], str]] = []
_plugins_loaded = False


def register_model(
    name: str,
    *,
    config: type,
    task: str | None = None,
    kind: str = "inpainting",
    aliases: tuple[str, ...] = (),
    training_modules: Mapping[str, Callable[[Any], nn.Module]] | None = None,
    description: str = "",
    defaults: Mapping[str, Any] | None = None,
    build_options: tuple[str, ...] = (),
) -> Callable[[Callable[[Any], nn.Module]], Callable[[Any], nn.Module]]:
    """Decorator registering ``builder(config) -> nn.Module`` as family ``name``.

    Registering a name again replaces the family (useful in tests and notebooks).
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config of family {name!r} must be a dataclass, got {config!r}")

    def decorator(builder: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        family = ModelFamily(
            name=name,
            config=config,
            build=builder,
            task=task,
            kind=kind,
            aliases=tuple(aliases),
            training_modules=dict(training_modules or {}),
            description=description or (builder.__doc__ or "").strip().split("\n")[0],
            defaults=dict(defaults or {}),
            build_options=tuple(build_options),
        )
        _FAMILIES[name] = family
        for alias in aliases:
            _ALIASES[alias] = name
        return builder

    return decorator


def load_plugins() -> None:
    """Register pconv's own families (the index), then import every module of the
    ``pconv_cli.plugins`` entry-point group, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    from pconv_cli.models.families import load_families

    load_families()

    for entry in entry_points(group=PLUGIN_GROUP):
        entry.load()


def register_resolver(
    resolve: Callable[[str], ModelFamily | None],
    names: Callable[[], list[str]],
    description: str,
) -> None:
    """Families made on demand: ``resolve(name)`` registers and returns the family a name
    stands for (or None); ``names()`` lists every name it would accept; ``description``
    says what they are in error messages.

    For open-ended sets such as "any torchvision classifier, with or without partial
    padding", where registering every member up front would import a library.
    """
    _RESOLVERS.append((resolve, names, description))


def get_family(name: str) -> ModelFamily:
    """The family called ``name`` (or one of its aliases); unknown names are a ModelError."""
    load_plugins()
    family = _FAMILIES.get(_ALIASES.get(name, name))
    for resolve, _, _ in _RESOLVERS if family is None else ():
        family = resolve(name)
        if family is not None:
            break
    if family is None:
        known = ", ".join(list_models(include_resolvable=False))
        hint = "".join(f"; or {description}" for _, _, description in _RESOLVERS)
        raise ModelError(f"unknown model family {name!r}; known: {known}{hint}")
    return family


def list_models(kind: str | None = None, *, include_resolvable: bool = True) -> list[str]:
    """Names of every registered family (of one ``kind`` if given), in registration order.

    With ``include_resolvable`` the names families are made for on demand follow
    (e.g. every torchvision classifier; the library they come from is imported).
    """
    load_plugins()
    names = [name for name, family in _FAMILIES.items() if kind is None or family.kind == kind]
    if include_resolvable and kind in (None, "classification"):
        for _, resolvable, _ in _RESOLVERS:
            names += [name for name in resolvable() if name not in names]
    return names


def plugin_modules() -> list[str]:
    """Modules outside pconv that registered families (worker processes import them again)."""
    return sorted({f.module for f in _FAMILIES.values() if not f.module.startswith("pconv_cli.")})


def make_config(family: ModelFamily | str, options: Mapping[str, Any] | None = None) -> Any:
    """The family's config dataclass from ``options``; unknown options or bad values are errors."""
    if isinstance(family, str):
        family = get_family(family)
    options = dict(options or {})
    for key, value in family.defaults.items():
        if options.setdefault(key, value) != value:
            raise ModelError(f"{family.name} fixes {key} = {value!r}, got {options[key]!r}")
    known = [f.name for f in dataclasses.fields(family.config)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ModelError(
            f"{family.name} has no option {', '.join(unknown)} (its options: {', '.join(known)})"
        )
    try:
        return family.config(**options)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{family.name}: {exc}") from None


def config_to_json(config: Any) -> str:
    """The config as compact JSON (what checkpoints store)."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def config_from_json(family: ModelFamily | str, text: str) -> Any:
    """Inverse of :func:`config_to_json` (through :func:`make_config`, so it is validated)."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"bad model config JSON ({exc})") from None
    if not isinstance(options, dict):
        raise ModelError(f"model config must be a JSON object, got {type(options).__name__}")
    return make_config(family, options)


def describe_config(family: str, config: Any) -> str:
    """One line naming a family and its options: ``my_net(layers=7, width=1.0, ...)``."""
    options = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items())
    return f"{family}({options})"


def build_model(name: str, **options: Any) -> nn.Module:
    """Build family ``name`` with keyword ``options`` (its config's fields; others default).

    ``build_model("my_net", layers=7, width=1.0)``. The result knows its
    family and config (``model.family``, ``model.config``). Options in the
    family's ``build_options`` (e.g. a classifier's ``weights``) go to the builder
    without entering the config.
    """
    family = get_family(name)
    extra = {key: options.pop(key) for key in family.build_options if key in options}
    return family.build(make_config(family, options), **extra)
