"""A fast slice of Kubernetes' own [Conformance] suite on the lab cluster, through `make conformance`'s command.

Tests nobody here wrote: pod networking across nodes, cluster DNS,
Deployments and Services (kube-proxy, NodePort, hostPort), which is where a
regression in the cluster roles (runtime, pod network, kube-proxy, CoreDNS)
shows first. The whole suite is `make conformance`, not a test: it takes
hours on 2 cores (docs/conformance.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.conformance.runner import LAB_SKIPS, focus_regex, skip_regex
from tests.conftest import VENV_BIN, LabCluster, run_tool

pytestmark = pytest.mark.conformance

# Exact names, as conformance.yaml (codename) and the report print them.
CI_SUBSET = [
    "[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http "
    "[NodeConformance] [Conformance]",
    "[sig-network] Networking Granular Checks: Pods should function for node-pod communication: udp "
    "[LinuxOnly] [NodeConformance] [Conformance]",
    "[sig-network] DNS should provide DNS for the cluster [Conformance]",
    "[sig-network] DNS should provide DNS for services [Conformance]",
    "[sig-apps] Deployment RollingUpdateDeployment should delete old pods and create new ones [Conformance]",
    "[sig-apps] Deployment deployment should delete old replica sets [Conformance]",
    "[sig-network] Services should provide secure master service [Conformance]",
    "[sig-network] Services should serve a basic endpoint from pods [Conformance]",
    "[sig-network] Services should be able to create a functioning NodePort service [Conformance]",
    "[sig-network] HostPort validates that there is no conflict between pods with same hostPort "
    "but different hostIP and protocol [LinuxOnly] [Conformance]",
]


def conformance(*args: str | Path) -> tuple[int, str]:
    result = run_tool([VENV_BIN / "python", "-m", "lab", "conformance", *args], check=False)
    return result.returncode, result.stdout[-6000:] + result.stderr[-6000:]


def run_subset(tmp_path: Path, *extra: str) -> tuple[int, str, dict]:
    report = tmp_path / "conformance.json"
    status, output = conformance(
        "--focus",
        focus_regex(CI_SUBSET),
        "--skip",
        skip_regex(LAB_SKIPS),
        "--report",
        report,
        "--report-dir",
        tmp_path / "e2e",
        *extra,
    )
    assert report.is_file(), f"no report written (exit {status}):\n{output}"
    return status, output, json.loads(report.read_text())


def by_state(report: dict, state: str) -> dict[str, dict]:
    return {test["name"]: test for test in report["tests"] if test["state"] == state}


def test_ci_subset_is_runnable_on_the_lab():
    assert len(set(CI_SUBSET)) == len(CI_SUBSET)
    assert not set(CI_SUBSET) & set(LAB_SKIPS), "a test the lab skips cannot guard the roles"


def test_focus_selects_exactly_the_ci_subset(tmp_path: Path):
    # ginkgo --dry-run over the built e2e.test: the names exist in the suite,
    # are spelled right, and the focus regex catches no other test
    status, output, report = run_subset(tmp_path, "--dry-run")
    assert status == 0, output
    assert report["dry_run"]
    assert sorted(by_state(report, "selected")) == sorted(CI_SUBSET), output


def test_ci_subset_passes_on_the_lab_cluster(lab_cluster: LabCluster, tmp_path: Path):
    status, output, report = run_subset(tmp_path)
    failed = by_state(report, "failed")
    assert not failed, "\n\n".join(f"{name}:\n{test['message'][:3000]}" for name, test in failed.items())
    assert not report["suite_failures"], report["suite_failures"]
    # every selected test ran and passed: none skipped itself, none missing
    assert sorted(by_state(report, "passed")) == sorted(CI_SUBSET), output
    assert status == 0, output
    print(
        f"\nconformance CI subset: {report['passed']} passed in {report['seconds']:.0f}s; "
        + ", ".join(f"{t['seconds']:.0f}s" for t in report["tests"])
    )
