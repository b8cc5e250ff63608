"""Background services the lab runs on the host (the mirror's apt and registry,
the load balancer): started detached with a pid file, found again by that pid
file and the process's command line, stopped by that pid only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.run import log, step


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    run_dir: Path  # holds <name>.pid and <name>.log, and is the service's cwd

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def running_pid(self) -> int | None:
        """The pid if the pid file names a live process running this argv."""
        if not self.pid_file.is_file():
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (ValueError, OSError):
            return None
        argv = [part.decode() for part in cmdline if part]
        # the interpreter may differ (system python3 or the venv's): compare the rest
        return pid if argv[1:] == self.argv[1:] and alive(pid) else None

    def start(self, ready: Callable[[], None], what: str) -> bool:
        """Start it unless it runs; ready() raises OSError until it serves. True if started now."""
        if self.running_pid() is not None:
            return False
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with step(f"serve {self.name} at {what}"):
            with open(self.log_file, "ab") as log_file:
                process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives the command that started it
                    cwd=self.run_dir,
                )
            self.pid_file.write_text(f"{process.pid}\n")
            try:
                wait_until(ready)
            except OSError as error:
                tail = self.log_file.read_text(errors="replace").strip().splitlines()[-3:]
                raise ValueError(f"{self.name} did not serve {what}: {error}; log: {' / '.join(tail)}") from error
        return True

    def stop(self, what: str = "") -> bool:
        """SIGTERM (SIGKILL after 5 s) the process of the pid file, if it runs this argv (idempotent)."""
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not alive(pid):
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            log(f"stopped {what or self.name} (pid {pid})")
        self.pid_file.unlink(missing_ok=True)
        return pid is not None


def alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaps it when this process started it
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(ready: Callable[[], None], timeout: float = 20.0) -> None:
    """Call ready() until it stops raising OSError; re-raise after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ready()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)
