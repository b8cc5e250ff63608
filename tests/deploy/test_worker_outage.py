"""A worker powered off under load (issue 22), the short version of
`make bench-rollout ARGS=--worker-outage`, on the release test_deploy.py leaves.

Through the lab's load balancer, only the balancer's detection window may fail;
directly at a surviving worker's NodePort, nothing fails once the node is
NotReady and its endpoints are gone; the Deployment is whole again within a
minute; the worker comes back Ready.
"""

from __future__ import annotations

import pytest
from kubernetes import client, config

from lab.bench.outage import measure_worker_outage
from lab.bench.rollout import run_deploy
from lab.cluster import KUBECONFIG
from tests.conftest import LabCluster

pytestmark = pytest.mark.cluster

NAMESPACE = SERVICE = "tiny-http-app"
RATE = 100.0
# The budget: under 0.5 % of the requests of a 5-minute window at RATE
# with one worker powered off, and at most 5 seconds with errors.
ERROR_BUDGET = int(0.005 * RATE * 300)
SECONDS_WITH_ERRORS = 5
# After NotReady the endpoints leave the EndpointSlice and every kube-proxy
# syncs at most a second later; 5 s is that with room for a loaded machine.
ENDPOINT_PROPAGATION = 5.0
WHOLE_WITHIN = 60.0


@pytest.fixture(scope="module")
def outage(lab_cluster: LabCluster) -> dict[str, dict[str, object]]:
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(KUBECONFIG)))
    service = core.read_namespaced_service(SERVICE, NAMESPACE)
    # the lab's inventory names its load balancer, so the app role chose Local
    assert service.spec.external_traffic_policy == "Local"
    # a rollout first spreads the pods one per worker (earlier tests may have left them on one)
    # (through a file, byte for byte: `-e app_message=outage drill` would deploy "outage")
    message = "outage drill"
    run_deploy(message)
    measured = measure_worker_outage(
        kubeconfig=KUBECONFIG,
        message=message,
        rate=RATE,
        before=5.0,
        after=5.0,
        paths=["balancer/new", "survivor/new"],
    )
    reports = {each.path: each.report() for each in measured}
    for path, report in reports.items():
        print(
            f"{path}: {report['errors']} errors / {report['requests']} requests,"
            f" {report['seconds_with_errors']} s with errors ({report['first_error_at']}..{report['last_error_at']}),"
            f" NotReady {report['node_not_ready_at']} s, whole {report['seconds_until_whole']} s,"
            f" pods by node before {report['ready_pods_by_node']}"
        )
    return reports


def test_the_replicas_ran_on_distinct_workers(outage):
    # the chart's topology spread: one worker's death must not take every replica
    report = outage["balancer/new"]
    assert len(report["ready_pods_by_node"]) == report["replicas"] >= 2, report["ready_pods_by_node"]


def test_through_the_balancer_only_its_detection_window_fails(outage):
    report = outage["balancer/new"]
    assert report["seconds_with_errors"] <= SECONDS_WITH_ERRORS, report
    assert report["errors"] <= ERROR_BUDGET, report


def test_a_surviving_worker_serves_once_the_node_is_not_ready(outage):
    report = outage["survivor/new"]
    assert report["node_not_ready_at"] is not None, report
    last_error = report["last_error_at"]
    assert last_error is None or last_error <= report["node_not_ready_at"] + ENDPOINT_PROPAGATION, report


def test_the_app_is_whole_again_within_a_minute(outage):
    report = outage["balancer/new"]
    assert report["whole_within_timeout"], report
    assert report["seconds_until_whole"] <= WHOLE_WITHIN, report
    assert report["restarted_node_ready_after_s"] is not None, report
