"""The lab's load balancer configuration, checked by the real haproxy (`haproxy -c`).
Its behaviour in front of nodes: tests/lab/test_nodes.py; under a worker outage: make bench-rollout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.nodes import balancer
from lab.nodes.balancer import Settings
from tests.lab.unit_lab import a_lab


def haproxy_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "balancer.cfg"
    path.write_text(text)
    return subprocess.run([balancer.HAPROXY, "-c", "-f", path], capture_output=True, text=True, check=False)


@pytest.mark.skipif(not shutil.which("haproxy") and not Path(balancer.HAPROXY).exists(), reason="make setup")
@pytest.mark.parametrize("settings", [Settings(), Settings(redispatch=False, retries=0)], ids=["default", "no-retry"])
def test_haproxy_accepts_the_configuration_over_the_workers_only(tmp_path, settings):
    lab = a_lab(tmp_path)
    text = balancer.config(lab, [n for n in lab.nodes(3) if n.role == "workers"], settings)
    result = haproxy_check(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bind 100.79.0.10:80" in text
    servers = [line.split()[1:3] for line in text.splitlines() if line.strip().startswith("server ")]
    assert servers == [["labunit-worker-1", "100.79.0.12:30080"], ["labunit-worker-2", "100.79.0.13:30080"]]
    assert ("no option redispatch" in text) is not settings.redispatch
    assert f"retries {settings.retries}" in text


def test_a_broken_configuration_is_refused(tmp_path):
    """The check above can fail: haproxy -c refuses what it cannot run."""
    lab = a_lab(tmp_path)
    text = balancer.config(lab, lab.nodes(2)[1:], Settings()).replace("balance roundrobin", "balance sideways")
    assert haproxy_check(tmp_path, text).returncode != 0


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LAB_BALANCER_FALL", "3")
    monkeypatch.setenv("LAB_BALANCER_REDISPATCH", "0")
    assert Settings.from_env() == Settings(fall=3, redispatch=False)
    monkeypatch.delenv("LAB_BALANCER_FALL")
    monkeypatch.delenv("LAB_BALANCER_REDISPATCH")
    assert Settings.from_env() == Settings()
