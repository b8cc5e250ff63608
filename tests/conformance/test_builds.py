"""The conformance suite is built like the Kubernetes binaries it judges, and without disturbing their cache."""

from __future__ import annotations

import json
from dataclasses import replace

from lab.mirror import builds


def test_e2e_test_is_built_from_the_binaries_module_graph_and_version():
    e2e, binaries = builds.KUBERNETES_E2E, builds.KUBERNETES
    assert (e2e.module, e2e.version, e2e.replace, e2e.ldflags) == (
        binaries.module,
        binaries.version,
        binaries.replace,
        binaries.ldflags,
    )
    assert e2e.test_binaries == {"e2e.test": "k8s.io/kubernetes/test/e2e"}
    assert e2e.needs_wrapper  # go install cannot compile a test binary
    assert "-X k8s.io/component-base/version.gitVersion=v1.29.15" in e2e.ldflags


def test_test_binaries_leave_the_stamps_of_existing_builds_alone():
    # the field came later: an unchanged spec must keep the stamp its cached build carries
    for spec in builds.MIRROR_BUILDS:
        assert "test_binaries" not in json.loads(spec.stamp())
    e2e = builds.KUBERNETES_E2E
    assert json.loads(e2e.stamp())["test_binaries"] == e2e.test_binaries
    renamed = replace(e2e, test_binaries={"e2e-renamed.test": "k8s.io/kubernetes/test/e2e"})
    assert renamed.stamp() != e2e.stamp()
    assert renamed.outputs == ["ginkgo", "e2e-renamed.test"]
