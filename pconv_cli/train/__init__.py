"""Training: one generic loop, one task per model family.

``resolve_config(options)`` -> :class:`TrainConfig`; ``train(config)`` runs it
(single process, or every rank under DDP). A family's task
(:class:`~pconv_cli.train.tasks.Task`, registered with ``register_task``) says
what a step does; see :mod:`pconv_cli.train.loop` and :mod:`pconv_cli.train.tasks`.
"""

from pconv_cli.train.config import TrainConfig, TrainingError, resolve_config
from pconv_cli.train.loop import TrainCallbacks, TrainingInterrupted, train
from pconv_cli.train.tasks import (
    InpaintingTask,
    NonFiniteLossError,
    PConvTask,
    StepContext,
    Task,
    get_task,
    register_task,
)

__all__ = [
    "InpaintingTask",
    "NonFiniteLossError",
    "PConvTask",
    "StepContext",
    "Task",
    "TrainCallbacks",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "get_task",
    "register_task",
    "resolve_config",
    "train",
]
