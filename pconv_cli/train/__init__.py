"""Training: one generic trainer, one task per model family.

``resolve_config(options)`` -> :class:`TrainConfig`; ``train(config)`` runs it
(single process, or every rank under DDP). A family's task
(:class:`~pconv_cli.train.tasks.Task`, registered with ``register_task``; GANs
subclass :class:`~pconv_cli.train.gan.GANTask`) says what a step does; see
:mod:`pconv_cli.train.loop` and :mod:`pconv_cli.train.tasks`.

Importing this package is cheap: the names below load on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "pconv_cli.train.config",
    "resolve_config": "pconv_cli.train.config",
    "TrainingError": "pconv_cli.train.errors",
    "GANTask": "pconv_cli.train.gan",
    "TrainCallbacks": "pconv_cli.train.loop",
    "Trainer": "pconv_cli.train.loop",
    "TrainingInterrupted": "pconv_cli.train.loop",
    "train": "pconv_cli.train.loop",
    "InpaintingTask": "pconv_cli.train.tasks",
    "NonFiniteLossError": "pconv_cli.train.tasks",
    "StepContext": "pconv_cli.train.tasks",
    "Task": "pconv_cli.train.tasks",
    "get_task": "pconv_cli.train.tasks",
    "register_task": "pconv_cli.train.tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in ("losses", "config", "loop", "tasks", "gan", "distributed"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
