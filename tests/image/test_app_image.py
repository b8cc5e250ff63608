"""The app image, built for real with podman from the Dockerfile (offline) and run."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid

import pytest

from lab.mirror.app_image import PODMAN_RUN_FLAGS, build_app_image
from tests.conftest import free_port

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def image() -> str:
    return build_app_image()


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], text=True, capture_output=True, check=check)


@pytest.fixture
def restricted_container(image):
    """Run as the chart runs it: read-only root, no capabilities, no privilege escalation."""
    name = f"tiny-http-app-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    podman(
        "run", "-d", "--name", name, *PODMAN_RUN_FLAGS, "--network", "host", "--read-only",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-e", f"PORT={port}", "-e", 'APP_MESSAGE=héllo: "image"', image,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield name, base
    podman("rm", "-f", "-t", "0", name, check=False)


def test_image_metadata(image):
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"][0] == "gunicorn"  # exec form: gunicorn is PID 1 and gets SIGTERM
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # --format docker keeps HEALTHCHECK (podman reports it at the top level)
    assert "urllib.request" in " ".join(inspected["Healthcheck"]["Test"])


def test_serves_the_message_read_only_and_unprivileged(restricted_container):
    name, base = restricted_container
    with urllib.request.urlopen(f"{base}/version", timeout=5) as response:
        assert json.loads(response.read()) == {"message": 'héllo: "image"'}
    with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "healthy"}
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"


def test_healthcheck_passes_with_the_standard_library(restricted_container):
    name, _ = restricted_container
    assert podman("healthcheck", "run", name, check=False).returncode == 0


def test_sleep_binary_exists_for_pre_stop(restricted_container):
    name, _ = restricted_container
    assert podman("exec", name, "sleep", "0", check=False).returncode == 0


def test_sigterm_stops_cleanly(restricted_container):
    name, base = restricted_container
    urllib.request.urlopen(f"{base}/version", timeout=5).close()
    started = time.monotonic()
    podman("stop", "-t", "30", name)
    assert time.monotonic() - started < 10
    assert podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
    logs = podman("logs", name).stdout + podman("logs", name).stderr
    assert '"GET /version HTTP/1.1" 200' in logs
    assert "Handling signal: term" in logs
