"""The run directory: checkpoints of every module and optimizer by name, the log, its history.

Layout::

    config.json        fully resolved options (:class:`~pconv_cli.train.config.TrainConfig`)
    log.jsonl          one JSON record per log interval (every loss term, lr, images/s)
    last.safetensors   the newest weights (a pconv checkpoint: the model, plus the
                       task's other modules under their names, e.g. ``discriminator.*``)
    best.safetensors   the model with the best validation metric (tasks that validate)
    checkpoints/       step-XXXXXXXX.safetensors (weights) + step-XXXXXXXX.state.pt
                       (optimizers and grad scalers by name, RNG, sample-stream
                       position; loaded with ``weights_only=True``)
    samples/           step-XXXXXXXX.png
    loss.png           the loss curves

Saves write the state file, then the weights, then ``last.safetensors``, each
atomically: a crash leaves a complete older pair, and resume takes the newest
pair that reads back.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pconv_cli.files import atomic_write, remove_stale_temporaries
from pconv_cli.train.config import TrainingError
from pconv_cli.weights.checkpoint import load_state_dict_strict, read_checkpoint, save_checkpoint

__all__ = ["RunDir", "append_jsonl", "read_history"]


@dataclass(frozen=True)
class RunDir:
    """Paths and checkpoints of one run directory."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.root / "last.safetensors"

    @property
    def best(self) -> Path:
        """The model with the best validation metric so far (tasks that validate)."""
        return self.root / "best.safetensors"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``RUN/.lock`` (an advisory ``flock``) while a run writes here: a second
        ``pconv train --out RUN`` fails at once instead of writing the same run. The lock
        goes with the process, however it ends. Temporaries a killed run left are removed."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        handle = (self.root / ".lock").open("a+")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                owner = handle.read().strip() or "?"
                raise TrainingError(
                    f"{self.root} is being written by another pconv run (pid {owner}); "
                    "wait for it to end or choose another --out"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            for folder in (self.root, self.checkpoints, self.root / "samples"):
                remove_stale_temporaries(folder)
            yield
        finally:
            handle.close()

    def save_best(self, model: nn.Module, **metadata: Any) -> Path:
        """Write ``best.safetensors`` (the model only), atomically."""
        return save_checkpoint(self.best, model, **metadata)

    def model_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.safetensors"

    def state_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.state.pt"

    def sample_path(self, step: int) -> Path:
        return self.root / "samples" / f"step-{step:08d}.png"

    def saved_steps(self) -> list[int]:
        """Steps with both a weights and a state file, newest first."""
        steps = []
        for state in self.checkpoints.glob("step-*.state.pt"):
            try:
                step = int(state.name.split("-")[1].split(".")[0])
            except (IndexError, ValueError):
                continue
            if self.model_path(step).is_file():
                steps.append(step)
        return sorted(steps, reverse=True)

    def save(
        self,
        *,
        model: nn.Module,
        modules: Mapping[str, nn.Module],
        primary: str,
        state: dict[str, Any],
        metadata: dict[str, Any],
        keep_last: int,
    ) -> Path:
        """Write step ``state["step"]``: the state file, the weights, ``last.safetensors``.

        ``model`` is the registry-built model saved as such; ``modules[primary]`` is
        it, the other ``modules`` are stored under their names. Checkpoints beyond
        the newest ``keep_last`` are deleted.
        """
        step = state["step"]
        extra = {name: module for name, module in modules.items() if name != primary}
        try:
            atomic_write(self.state_path(step), lambda tmp: torch.save(state, tmp))
            path = save_checkpoint(self.model_path(step), model, extra_modules=extra, **metadata)
            save_checkpoint(self.last, model, extra_modules=extra, **metadata)
        except (OSError, RuntimeError) as exc:  # full disk: torch's zip writer: RuntimeError
            if not self.model_path(step).is_file():  # no half pair for resume to trip on
                self.state_path(step).unlink(missing_ok=True)
            older = [s for s in self.saved_steps() if s != step]
            kept = f"; step {older[0]} is intact" if older else ""
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            raise TrainingError(
                f"cannot save the checkpoint of step {step} in {self.checkpoints}: {reason}{kept}"
            ) from None
        for old in self.saved_steps()[keep_last:]:
            self.state_path(old).unlink(missing_ok=True)
            self.model_path(old).unlink(missing_ok=True)
        return path

    def load_latest(
        self, *, modules: Mapping[str, nn.Module], primary: str, on_skip=None
    ) -> dict[str, Any]:
        """Load the newest checkpoint pair that reads back into ``modules``; return its state.

        The state's optimizers and scalers are keyed by module name (a state file of
        pconv 0.1, with one ``optimizer``, is read as the primary module's).
        ``on_skip(text)`` hears about every unreadable newer pair.
        """
        errors = []
        for step in self.saved_steps():
            try:
                weights = read_checkpoint(self.model_path(step))
                state = torch.load(self.state_path(step), map_location="cpu", weights_only=True)
            except Exception as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                errors.append(f"step {step}: {reason}")
                if on_skip is not None:
                    on_skip(
                        f"warning: skipped checkpoint step {step} "
                        f"({self.model_path(step).name}, {self.state_path(step).name}): {reason}"
                    )
                continue
            source = str(self.model_path(step))
            for name, module in modules.items():
                module_state = weights.net_state() if name == primary else None
                if name != primary:
                    module_state = weights.module_state(name)
                    if module_state is None:
                        raise TrainingError(f"--resume: {source} has no {name} weights")
                target = module.net if name == primary else module
                load_state_dict_strict(target, module_state, source)
            if "optimizer" in state:  # pconv 0.1: one optimizer and scaler
                state["optimizers"] = {primary: state.pop("optimizer")}
                state["scalers"] = {primary: state.pop("scaler", None)}
            if errors and on_skip is not None:
                on_skip(f"resuming from step {step} ({self.model_path(step).name})")
            return state
        detail = f" ({errors[0]})" if errors else ""
        raise TrainingError(f"--resume: no loadable checkpoint in {self.checkpoints}{detail}")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON record as a line and flush it."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def read_history(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """Log records of earlier sessions of this run, up to the resumed step.

    Records past ``up_to_step`` (logged after the last checkpoint of an
    interrupted session) are dropped from the file too, so the log stays a clean
    history of the weights that exist.
    """
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= up_to_step:
            records.append(record)
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return records
