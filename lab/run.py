"""Running commands and reporting which step failed."""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


class StepFailed(RuntimeError):
    """A named step of a lab command failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Print the step, time it, and re-raise any failure as StepFailed naming it."""
    log(f"{name} ...")
    started = time.monotonic()
    try:
        yield
    except StepFailed:
        raise
    except (subprocess.CalledProcessError, OSError, ValueError) as error:
        raise StepFailed(f"step '{name}' failed: {error}") from error
    log(f"{name}: done in {time.monotonic() - started:.1f}s")


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (never through a shell). With capture, stdout/stderr are returned."""
    args = [str(a) for a in argv]
    try:
        return subprocess.run(
            args,
            check=check,
            text=True,
            env=env,
            cwd=cwd,
            input=input_text,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or "").strip().splitlines()[-5:] if capture else []
        raise StepFailed(
            f"command failed ({error.returncode}): {shlex.join(args)}"
            + ("\n  " + "\n  ".join(detail) if detail else "")
        ) from error


@contextlib.contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on lock_file (made if missing); wait, saying so, while another holds it."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another {what} to finish ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
