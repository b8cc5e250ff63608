"""The served app: a real gunicorn with the image's config, on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab.paths import REPO
from tests.conftest import free_port

GUNICORN = REPO / ".venv" / "bin" / "gunicorn"


def get(url: str, timeout: float = 5) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_gunicorn(module: str, port: int, **env: str) -> subprocess.Popen[str]:
    environment = dict(
        os.environ,
        PORT=str(port),
        WEB_CONCURRENCY="2",
        GRACEFUL_TIMEOUT="10",
        PYTHONPATH=os.pathsep.join([str(REPO / "app"), str(Path(__file__).parent)]),
        **env,
    )
    process = subprocess.Popen(
        [
            sys.executable,
            str(GUNICORN),
            "--config",
            str(REPO / "app" / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            module,
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited early: {process.stdout.read()}") from None
            time.sleep(0.1)
    process.kill()
    raise AssertionError("gunicorn did not start listening in 15 s")


@pytest.fixture
def served():
    port = free_port()
    process = start_gunicorn("tiny_http_app.wsgi:app", port, APP_MESSAGE="served-message")
    yield f"http://127.0.0.1:{port}", process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_gunicorn_serves_version_and_health_and_logs_access(served):
    base, process = served
    assert get(f"{base}/version") == (200, {"message": "served-message"})
    assert get(f"{base}/health") == (200, {"status": "healthy"})
    assert get(f"{base}/missing")[0] == 404
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    # the access log goes to stdout, one line per request
    assert '"GET /version HTTP/1.1" 200' in output
    assert '"GET /missing HTTP/1.1" 404' in output


def test_sigterm_drains_in_flight_requests_then_refuses_new_ones(tmp_path):
    port = free_port()
    marker = tmp_path / "in-flight"
    process = start_gunicorn("slow_wsgi:app", port, IN_FLIGHT_MARKER=str(marker))
    base = f"http://127.0.0.1:{port}"
    try:
        result: dict[str, object] = {}

        def slow_request() -> None:
            result["answer"] = get(f"{base}/version?delay=2", timeout=10)

        in_flight = threading.Thread(target=slow_request)
        in_flight.start()
        # the master listens before its workers boot: wait until one holds the request
        deadline = time.monotonic() + 15
        while not marker.exists():
            assert time.monotonic() < deadline, "no worker took the request within 15 s"
            time.sleep(0.02)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        in_flight.join(timeout=10)
        process.wait(timeout=15)
        elapsed = time.monotonic() - sent
        assert result["answer"] == (200, {"message": "drain-test"})
        assert process.returncode == 0
        # it waited for the request (about 2 s more), not for the whole graceful timeout
        assert 1.0 < elapsed < 8.0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
