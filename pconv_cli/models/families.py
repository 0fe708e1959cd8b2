"""The index of pconv's built-in model families: one line per family folder.

Everything a family owns lives in its folder ``pconv_cli/models/<name>/``, by
convention in these modules (each optional):

- ``family.py``: registers the family's networks (``register_model``), its
  training task (``register_task``) and the converters of its published formats
  (``register_converter``); imports torch. Loaded on first use of a registry;
- ``zoo.py``: ``WEIGHTS``, its published weights (torch-free);
- ``cli.py``: ``CLI``, a :class:`FamilyCli` with the family's text for the
  commands' help (torch-free: ``--help`` never imports torch).

Generic code (the trainer, loading, the zoo, commands, eval, the web app) finds
families only through this index and the registries. Families living outside
pconv register through the ``pconv_cli.plugins`` entry-point group instead.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType

PLUGIN_GROUP = "pconv_cli.plugins"
"""The entry-point group of families living outside pconv (each entry a module to import)."""

__all__ = [
    "DEFAULT_FAMILY",
    "DEFAULT_WEIGHTS",
    "FAMILIES",
    "PLUGIN_GROUP",
    "FamilyCli",
    "FamilyOption",
    "family_cli",
    "import_family_parts",
    "load_families",
]

FAMILIES: tuple[str, ...] = (
    "pconv",  # the PConv U-Net (Liu et al. 2018) and its plain-convolution twin
    "deepfillv2",  # DeepFillv2 (Yu et al. 2019), MMagic's layout
    "classifiers",  # torchvision classifiers, zero or partial-convolution padding
    "lama",  # LaMa (Suvorov et al. 2022), Fourier convolutions
    "migan",  # MI-GAN (Sargsyan et al. 2023), inference only
    "sunnerli",  # SunnerLi's P-Conv (2018), inference only
)
"""Folders under ``pconv_cli/models/``, in registration (and zoo) order."""

DEFAULT_FAMILY = "pconv_unet"
"""What ``pconv train`` trains without ``--arch``."""

DEFAULT_WEIGHTS = "pconv-bsds300"
"""The zoo entry ``pconv inpaint``, ``pconv serve`` and ``pconv eval`` (without a source) use:
bundled in the package, so it works offline."""


@dataclass(frozen=True)
class FamilyOption:
    """An option of ``pconv train``/``finetune`` that a family brings (plain data, no typer).

    ``key`` says where the value goes: ``model.X`` (the family's config), ``loss.X`` (a
    loss weight of its task) or a ``TrainConfig`` field. ``panel``: the help section
    (``model`` or ``loss``); ``minimum``/``maximum``: the range (``positive``: > 0);
    ``flag``: a ``--x/--no-x`` switch; ``finetune``: whether ``pconv finetune`` has it
    (model options come from ``--init`` there). Families declaring the same option share it.
    """

    name: str
    flags: tuple[str, ...]
    type: type
    help: str
    key: str
    panel: str = "model"
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    metavar: str | None = None
    flag: bool = False
    finetune: bool = True


@dataclass(frozen=True)
class FamilyCli:
    """A family's words in the commands' help (torch-free).

    ``label``: how help text names it (``"PConv U-Net"``); ``families``: the registry
    names it brings, with a few words each; ``stages``: what ``--stage`` means for it;
    ``presets``: ``--preset`` name -> what it does; ``defaults``: its step count and
    learning rate defaults in words; ``options``: the training options it reads;
    ``finetune``: what ``pconv finetune`` does to it.
    """

    label: str
    families: dict[str, str]
    stages: str = ""
    presets: dict[str, str] = field(default_factory=dict)
    defaults: str = ""
    options: tuple[FamilyOption, ...] = ()
    finetune: str = ""


_loaded = False


def _module(family: str, part: str) -> ModuleType | None:
    name = f"pconv_cli.models.{family}.{part}"
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def import_family_parts(part: str) -> list[ModuleType]:
    """``pconv_cli.models.<family>.<part>`` of every indexed family that has one, in order."""
    return [m for family in FAMILIES if (m := _module(family, part)) is not None]


def load_families() -> None:
    """Import every family's ``family.py`` once (registering its models, task, converters)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_family_parts("family")


def family_cli() -> list[FamilyCli]:
    """The :class:`FamilyCli` of every indexed family (torch-free)."""
    return [m.CLI for m in import_family_parts("cli") if hasattr(m, "CLI")]
