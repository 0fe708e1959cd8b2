"""One worker process of :func:`pconv_cli.train.distributed.launch` (``python -m`` this module).

Reads the pickled ``(entrypoint, args)`` the launcher wrote, runs it with the
rank the environment gives, and reports back through files in the launcher's
private folder: rank 0's return value (``result.pkl``), or the one-line error of
a rank that failed (``error-<rank>.json``: message and exit code). Exit codes: 0
done, 1 failed, 130 interrupted (Ctrl-C/SIGTERM, reported as such).

SIGTERM raises ``KeyboardInterrupt`` here (a training loop replaces that with a
stop at the next step boundary), and on Linux the worker asks the kernel for a
SIGHUP when the launcher dies (handled the same way, once), so a killed launcher
never leaves a run training.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import sys
import traceback
from pathlib import Path


def _parent_death_signal() -> None:
    """Linux: SIGHUP this process when its parent (the launcher) dies (best effort).

    The kernel sends it once per thread of the dead parent (a launcher has several), so
    it is SIGHUP, which never escalates the way a second Ctrl-C/SIGTERM does."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGHUP)
        if os.getppid() == 1:  # the launcher is already gone
            os.kill(os.getpid(), signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    if signal.Signals(signum).name == "SIGHUP":  # the launcher died: stop once, not again
        signal.signal(signum, signal.SIG_IGN)
    raise KeyboardInterrupt


def _report(folder: Path, rank: int, message: str, exit_code: int) -> None:
    path = folder / f"error-{rank}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"message": message, "exit_code": exit_code}))
    os.replace(tmp, path)


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _interrupt)
    _parent_death_signal()
    spec_path = Path(sys.argv[1])
    folder = spec_path.parent
    rank = int(os.environ.get("RANK", 0))
    with spec_path.open("rb") as handle:
        spec = pickle.load(handle)
    sys.path[:] = spec["sys_path"]  # the launcher's: entry points defined in scripts and tests
    from pconv_cli.errors import PconvError, one_line

    try:
        entrypoint, args = pickle.loads(spec["call"])
        result = entrypoint(*args)
    except KeyboardInterrupt:
        _report(folder, rank, "interrupted", 130)
        sys.exit(130)
    except PconvError as exc:
        _report(folder, rank, str(exc), exc.exit_code)
        sys.exit(exc.exit_code)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if code:
            _report(folder, rank, f"exit code {code} (its error is printed above)", code)
        sys.exit(code)
    except Exception as exc:  # a bug: its traceback goes to stderr, one line to the launcher
        traceback.print_exc()
        _report(folder, rank, one_line(exc) or type(exc).__name__, 1)
        sys.exit(1)
    if rank == 0:
        tmp = folder / "result.tmp"
        with tmp.open("wb") as handle:
            pickle.dump(result, handle)
        os.replace(tmp, folder / "result.pkl")
    # Done: leave without the interpreter's teardown, where the C++ threads of a finished
    # process group can abort the process ("terminate called without an active
    # exception") and turn a finished run into a failed one. The launcher reaps the rest.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
