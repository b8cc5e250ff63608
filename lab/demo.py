"""`make demo`: the whole mission on the local lab, from a clean clone.

The mirror (built once, cached), three nodes, site.yml (cluster and the app
with the message hello-world), then `deploy.yml -e app_message=hola` while the
prober sends 100 requests/s through the lab's load balancer; prints the nodes, the pods
before and after, the ReplicaSet change, both /version answers and the prober's
errors/requests. `make setup` has already run (the Makefile's dependency).
"""

from __future__ import annotations

import argparse
import sys
import time

from kubernetes import client, config

from lab.bench.rollout import Rollout, deploy_playbook, measure
from lab.cluster import INVENTORY, KUBECONFIG, PROJECT, get_message, worker_address
from lab.mirror import commands as mirror
from lab.nodes import balancer
from lab.nodes import commands as nodes
from lab.nodes.topology import Lab
from lab.paths import REPO
from lab.run import StepFailed, log, run, step


def show_nodes(core: client.CoreV1Api) -> None:
    print("nodes:")
    for node in core.list_node().items:
        ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "?")
        address = next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), "?")
        print(f"  {node.metadata.name:<14} {address:<12} Ready={ready:<5} {node.status.node_info.kubelet_version}")


def show_pods(core: client.CoreV1Api, title: str) -> None:
    print(f"pods {title}:")
    pods = core.list_namespaced_pod(PROJECT.namespace, label_selector=PROJECT.selector).items
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        ready = all(c.ready for c in pod.status.container_statuses or [])
        print(f"  {pod.metadata.name:<36} {pod.spec.node_name:<14} ready={ready}")


def demo_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0)
    options = parser.parse_args(args)
    started = time.monotonic()

    # Always asked (well under a second when warm): is_built() alone would keep
    # serving an app image older than app/ and the Dockerfile.
    with step("the offline mirror (built once, cached; the app image rebuilt when app/ changed)"):
        mirror.build_mirror()
    nodes.up(options.nodes)
    with step("serve the mirror on the lab bridge"):
        mirror.start_services()
    with step("site.yml: the cluster and the app with the message hello-world"):
        run(["ansible-playbook", "-i", INVENTORY, "site.yml", "-e", "app_message=hello-world"], cwd=REPO)

    status = rolling_update_under_load(options.rate)
    log(f"demo done in {time.monotonic() - started:.0f}s; make bench-rollout: keep-alive, control, rollback")
    return status


def rolling_update_under_load(rate: float) -> int:
    """hello-world -> hola with deploy.yml while the prober runs; print what changed."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # in step with the log on stderr
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(KUBECONFIG)))
    # as a user would: through the lab's load balancer (`lab up` starts it), else a worker's NodePort
    host, port = balancer.endpoint(Lab.from_env()) or (worker_address(), PROJECT.node_port)
    before = get_message(host, port)
    if before != "hello-world":
        raise StepFailed(f"after site.yml /version answers {before!r}, not 'hello-world'")
    show_nodes(core)
    show_pods(core, "before")

    with step(f"deploy.yml -e app_message=hola under {rate:.0f} requests/s"):
        rollout = Rollout("project/new", PROJECT, "new", "hello-world", "hola", expect_success=True)
        measure(
            rollout,
            lambda: deploy_playbook("hola"),
            host=host,
            port=port,
            kubeconfig=KUBECONFIG,
            rate=rate,
            before=15.0,
            after=15.0,
        )
    print(rollout.trigger_output.split("TASK [app : Show the rollout]")[-1].split("PLAY RECAP")[0].strip("* \n"))
    if rollout.trigger_rc != 0:
        raise StepFailed("deploy.yml failed (output above)")
    show_pods(core, "after")
    report = rollout.report()
    after = get_message(host, port)
    print(f"GET http://{host}:{port}/version before: {before!r}  after: {after!r}")
    print(
        f"ReplicaSet pod-template-hash {', '.join(rollout.old_hashes)} -> {', '.join(rollout.new_hashes)}; "
        f"rollout {report['rollout_seconds']} s, both messages served for {report['mixed_message_seconds']} s"
    )
    print(
        f"prober ({rate:.0f}/s, new connection per request): "
        f"{report['errors']} errors / {report['requests']} requests {report['error_kinds'] or ''}"
    )
    return 0 if report["errors"] == 0 and after == "hola" else 1
