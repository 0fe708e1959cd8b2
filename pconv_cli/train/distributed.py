"""Data-parallel training with PyTorch's own stack: DDP, launched by torch's elastic launcher.

``pconv train --gpus N`` (or ``--device cpu --nproc N``) starts N local worker
processes through ``torch.distributed.launcher`` (the engine behind
``torchrun``); the same command also runs unchanged under ``torchrun``, which
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. CUDA uses NCCL, CPU uses gloo.

SyncBN for every backend lives in :mod:`pconv_cli.nn.sync_batchnorm`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from pconv_cli.errors import Interrupted, PconvError

__all__ = [
    "DistContext",
    "LaunchError",
    "WorkersInterrupted",
    "check_world_size",
    "context_from_env",
    "launch",
]


class LaunchError(PconvError, RuntimeError):
    """The distributed run could not start or a worker failed (one-line message)."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env() -> DistContext:
    """Rank, world size and local rank as torchrun (and our launcher) set them."""
    return DistContext(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_process_group(ctx: DistContext, device: torch.device) -> bool:
    """Join the process group (NCCL for CUDA, gloo otherwise); True if this call created it."""
    if not ctx.enabled or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return True


def check_world_size(processes: int, device: torch.device) -> None:
    """Refuse impossible requests before any process starts."""
    if processes < 1:
        raise LaunchError(f"the number of processes must be >= 1, got {processes}")
    if device.type == "cuda":
        available = torch.cuda.device_count()
        if processes > available:
            raise LaunchError(f"--gpus {processes}: only {available} CUDA GPU(s) are available")
    elif device.type != "cpu" and processes > 1:
        raise LaunchError(f"several processes need CUDA (NCCL) or the CPU (gloo), not {device}")


def all_reduce_mean(values: Tensor) -> Tensor:
    """Mean of ``values`` over all ranks (a no-op outside a process group)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


# -- launching ---------------------------------------------------------------------------

_FAILURE_GRACE_S = 3.0
"""After a rank fails, how long the others get to stop before they are killed."""
_POLL_S = 0.05


class WorkersInterrupted(Interrupted):
    """Ctrl-C or SIGTERM stopped a launched run; the message is rank 0's (exit code 130)."""


@dataclass
class _Worker:
    rank: int
    process: subprocess.Popen
    error_file: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def failure(self) -> tuple[int, str, int] | None:
        """``(time written, message, exit code)`` of this rank's error report, if it wrote one."""
        try:
            stat = self.error_file.stat()
            report = json.loads(self.error_file.read_text())
        except (OSError, ValueError):
            return None
        return stat.st_mtime_ns, str(report.get("message", "")), int(report.get("exit_code", 1))


def launch(entrypoint: Callable[..., Any], args: tuple, *, processes: int) -> Any:
    """Run ``entrypoint(*args)`` in ``processes`` local worker processes; rank 0's return value.

    What ``torchrun --standalone`` does, with pconv's guarantees:

    - the launcher hosts the rendezvous store on a free port it picks itself
      (``MASTER_PORT`` from the environment if set), so runs started together on
      one machine never clash; workers reach it as torchrun's workers reach the
      agent's store (``TORCHELASTIC_USE_AGENT_STORE``);
    - each worker is a fresh interpreter in a session of its own: ``entrypoint``
      and ``args`` are pickled once into a private folder (they must be picklable,
      like anything handed to another process); whatever a worker starts (data
      loader processes, trackers) is killed with its session when the launcher
      ends, however it ends;
    - a failing worker stops the run: the others get :data:`_FAILURE_GRACE_S`
      seconds, then are killed; the first failure's one-line message becomes a
      :class:`LaunchError` (``worker rank R failed: ...``);
    - Ctrl-C or SIGTERM is forwarded to every worker as SIGTERM (a training run
      stops at a step boundary and saves); when they exit with status 130 the
      launcher raises :class:`WorkersInterrupted` with rank 0's message. A second
      signal kills the workers at once.
    """
    if processes < 1:
        raise LaunchError(f"the number of processes must be >= 1, got {processes}")
    host = "127.0.0.1"
    port = int(os.environ.get("MASTER_PORT", 0))
    try:
        store = dist.TCPStore(host, port, processes, is_master=True, wait_for_workers=False)
    except (RuntimeError, OSError) as exc:
        raise LaunchError(f"cannot open the rendezvous port {host}:{port}: {exc}") from None
    folder = Path(tempfile.mkdtemp(prefix="pconv-launch-"))
    workers: list[_Worker] = []
    signals = _SignalForwarder()
    try:
        spec = folder / "spec.pkl"
        with spec.open("wb") as handle:
            pickle.dump({"sys_path": list(sys.path), "call": pickle.dumps((entrypoint, args))},
                        handle)  # fmt: skip
        env_base = {
            **os.environ,
            "MASTER_ADDR": host,
            "MASTER_PORT": str(store.port),
            "TORCHELASTIC_USE_AGENT_STORE": "True",
            "WORLD_SIZE": str(processes),
            "LOCAL_WORLD_SIZE": str(processes),
            "GROUP_RANK": "0",
            "PCONV_LAUNCH_DIR": str(folder),
        }
        with signals:
            for rank in range(processes):
                env = {**env_base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
                process = subprocess.Popen(
                    [sys.executable, "-m", "pconv_cli.train.worker", str(spec)],
                    env=env, start_new_session=True,
                )  # fmt: skip
                workers.append(_Worker(rank, process, folder / f"error-{rank}.json"))
                signals.workers = workers
            _wait(workers)
        return _outcome(workers, folder, signalled=signals.count > 0)
    finally:
        _kill_sessions(workers)
        del store
        shutil.rmtree(folder, ignore_errors=True)


class _SignalForwarder:
    """While active: SIGINT/SIGTERM to the launcher -> SIGTERM to every worker; again -> kill."""

    def __init__(self) -> None:
        self.workers: list[_Worker] = []
        self.count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count == 1:
            for worker in self.workers:
                _signal_pid(worker.pid, signal.SIGTERM)
        else:
            _kill_sessions(self.workers)


def _wait(workers: list[_Worker]) -> None:
    """Until every worker has exited; a failure gives the others a short grace, then kills."""
    failed_at: float | None = None
    while True:
        codes = [w.process.poll() for w in workers]  # every worker, so each exit is seen
        if all(code is not None for code in codes):
            return
        if failed_at is None and any(c not in (None, 0, 130) for c in codes):
            failed_at = time.monotonic()
            for worker in workers:
                if worker.process.returncode is None:
                    _signal_pid(worker.pid, signal.SIGTERM)
        if failed_at is not None and time.monotonic() - failed_at > _FAILURE_GRACE_S:
            _kill_sessions(workers)
        time.sleep(_POLL_S)


def _outcome(workers: list[_Worker], folder: Path, *, signalled: bool) -> Any:
    """Rank 0's result, or the error the workers' exit codes and reports amount to."""
    if all(w.process.returncode == 0 for w in workers):
        with (folder / "result.pkl").open("rb") as handle:
            return pickle.load(handle)
    reports = {w.rank: w.failure() for w in workers}
    failures = [(r[0], rank, r[1]) for rank, r in reports.items() if r and r[2] != 130]
    if failures:
        _, rank, message = min(failures)  # the first report written is the root cause
        raise LaunchError(f"worker rank {rank} failed: {message}")
    crashed = [w for w in workers if w.process.returncode not in (0, 130)]
    if crashed and not signalled:
        code = crashed[0].process.returncode
        what = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        raise LaunchError(f"worker rank {crashed[0].rank} failed: {what}")
    report = reports.get(0) or next((r for r in reports.values() if r), None)
    raise WorkersInterrupted(report[1] if report else "interrupted; no checkpoint was saved")


def _signal_pid(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _kill_sessions(workers: list[_Worker]) -> None:
    """Kill every process in each worker's session (its data loaders too) and reap the workers."""
    for worker in workers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.pid, signal.SIGKILL)
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=10)
