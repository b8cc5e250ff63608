"""deploy.yml and playbooks/undeploy.yml end to end on the lab cluster.

The tests run in file order and share the one release: install, no-op re-run,
a roll to a new message, tricky messages, a bad release that is rolled back,
undeploy twice, and a fresh install at the end that leaves the app running.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from lab.bench.prober import Prober, summarize
from lab.cluster import INVENTORY, KUBECONFIG, worker_address
from lab.nodes.ssh import ssh_argv
from lab.nodes.topology import Lab
from lab.paths import BIN
from lab.playbook import play_recap
from tests.conftest import LabCluster, run_tool
from tests.node.lab_inventory import lab_inventory, setting

pytestmark = pytest.mark.cluster

RELEASE = NAMESPACE = DEPLOYMENT = "tiny-http-app"
NODE_PORT = 30080


@dataclass(frozen=True)
class Rollout:
    generation: int
    revision: str  # the Deployment's, which names its current ReplicaSet
    replicaset: str
    pods: frozenset[str]
    helm_revision: int


@pytest.fixture(scope="module")
def app(lab_cluster: LabCluster) -> str:
    """host:port where users reach the app: the load balancer the inventory names (which makes the
    Service Local: a worker without an app pod drops), else the first worker's NodePort."""
    inventory = lab_inventory()
    balancer = inventory.var(inventory.master, "app_load_balancer_address")
    return str(balancer) if balancer else f"{worker_address()}:{NODE_PORT}"


@pytest.fixture(scope="module")
def apis(app: str) -> tuple[client.AppsV1Api, client.CoreV1Api]:
    api_client = config.new_client_from_config(config_file=str(KUBECONFIG))
    return client.AppsV1Api(api_client), client.CoreV1Api(api_client)


def playbook(playbook: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_tool(["ansible-playbook", "-i", INVENTORY, playbook, *extra], check=False)


def deploy(message: str | None = None, *extra: str, tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """deploy.yml; a message with tmp_path goes through app_message_file, byte for byte."""
    if message is not None and tmp_path is not None:
        path = tmp_path / "message.txt"
        path.write_bytes(message.encode("utf-8"))
        extra = ("-e", f"app_message_file={path}", *extra)
    elif message is not None:
        extra = ("-e", f"app_message={message}", *extra)
    return playbook("deploy.yml", *extra)


def succeeded(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return recap(result)


def recap(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    counts = play_recap(result.stdout).get("localhost")
    assert counts, result.stdout[-2000:]
    return counts


def version(app: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://{app}/version", timeout=5) as response:
        return response.status, response.read()


def served_message(app: str) -> str:
    status, body = version(app)
    assert status == 200
    document = json.loads(body.decode("utf-8"))
    assert list(document) == ["message"]
    return document["message"]


def helm_revision() -> int | None:
    result = run_tool(
        [BIN / "helm", "list", "--kubeconfig", KUBECONFIG, "-n", NAMESPACE, "-o", "json", "--filter", f"^{RELEASE}$"]
    )
    releases = json.loads(result.stdout or "[]")
    return int(releases[0]["revision"]) if releases else None


def rollout_state(apis: tuple[client.AppsV1Api, client.CoreV1Api]) -> Rollout:
    apps, core = apis
    deployment = apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
    revision = deployment.metadata.annotations["deployment.kubernetes.io/revision"]
    replicasets = apps.list_namespaced_replica_set(NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}")
    current = next(
        rs for rs in replicasets.items if rs.metadata.annotations["deployment.kubernetes.io/revision"] == revision
    )
    pods = core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/component=web").items
    return Rollout(
        deployment.metadata.generation,
        revision,
        current.metadata.name,
        frozenset(p.metadata.name for p in pods),
        helm_revision() or 0,
    )


def namespace_exists(core: client.CoreV1Api) -> bool:
    return any(ns.metadata.name == NAMESPACE for ns in core.list_namespace().items)


# ------------------------------------------------------------------ the tests, in order


def test_invalid_messages_are_rejected_before_anything_changes(app, apis, tmp_path):
    before_revision = helm_revision()
    before_namespace = namespace_exists(apis[1])
    too_long = "x" * 16385
    cases = {
        "empty": deploy("", tmp_path=tmp_path),
        "too long": deploy(too_long, tmp_path=tmp_path),
        "a number": playbook("deploy.yml", "-e", '{"app_message": 123}'),
        "a list": playbook("deploy.yml", "-e", '{"app_message": ["a"]}'),
    }
    for name, result in cases.items():
        assert result.returncode != 0, name
        assert "app_message must be a non-empty string of at most 16384 characters" in result.stdout, name
        assert recap(result)["changed"] == 0, name
    assert helm_revision() == before_revision
    assert namespace_exists(apis[1]) == before_namespace


def test_deploy_serves_the_message(app, apis):
    started = time.monotonic()
    succeeded(deploy("hello-world"))
    print(f"deploy.yml hello-world: {time.monotonic() - started:.1f}s")
    assert served_message(app) == "hello-world"
    config_map = apis[1].read_namespaced_config_map(DEPLOYMENT, NAMESPACE)
    assert config_map.data == {"APP_MESSAGE": "hello-world"}


def test_the_same_message_again_changes_and_rolls_nothing(app, apis):
    before = rollout_state(apis)
    started = time.monotonic()
    result = deploy("hello-world")
    counts = succeeded(result)
    print(f"deploy.yml, same message: {time.monotonic() - started:.1f}s, {counts}")
    assert counts["changed"] == 0, result.stdout[-3000:]
    assert rollout_state(apis) == before
    assert "unchanged" in result.stdout and "nothing rolled" in result.stdout


def test_a_new_message_rolls_a_new_replicaset(app, apis):
    before = rollout_state(apis)
    started = time.monotonic()
    result = deploy("hola")
    succeeded(result)
    print(f"deploy.yml hello-world -> hola: {time.monotonic() - started:.1f}s")
    after = rollout_state(apis)
    assert after.replicaset != before.replicaset
    assert after.generation == before.generation + 1
    assert after.helm_revision == before.helm_revision + 1
    assert not (after.pods & before.pods), "some pods were not replaced"
    assert len(after.pods) == 2  # the old pods are gone when deploy.yml returns
    assert served_message(app) == "hola"
    assert f"ReplicaSet before: {before.replicaset}" in result.stdout
    assert f"ReplicaSet now:    {after.replicaset}" in result.stdout
    assert f"Helm revision {after.helm_revision}" in result.stdout


TRICKY_FILES = {
    "quotes and colons": "she said \"it's: 'fine'\": ok: yes",
    "newlines": "line one\nline two\n",
    "unicode": "héllo wörld ✓ 你好 🚀",
    "jinja braces": "{{ lookup('ansible.builtin.env', 'HOME') }} {% raw %}",
}
TRICKY_COMMAND_LINE = ["yes", "0123"]


@pytest.mark.parametrize("message", TRICKY_FILES.values(), ids=TRICKY_FILES.keys())
def test_tricky_messages_from_a_file_arrive_byte_for_byte(app, apis, tmp_path, message):
    succeeded(deploy(message, tmp_path=tmp_path))
    status, body = version(app)
    assert status == 200
    assert json.loads(body.decode("utf-8")) == {"message": message}
    assert apis[1].read_namespaced_config_map(DEPLOYMENT, NAMESPACE).data == {"APP_MESSAGE": message}


@pytest.mark.parametrize("message", TRICKY_COMMAND_LINE)
def test_messages_that_look_like_other_types_stay_strings(app, message):
    """`-e app_message=yes` and `-e app_message=0123`: neither a boolean nor an octal number."""
    succeeded(deploy(message))
    assert served_message(app) == message


def test_a_message_with_braces_from_an_unsafe_vars_file(app, tmp_path):
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text("app_message: !unsafe '{{ not templated }}: kept'\n", encoding="utf-8")
    succeeded(playbook("deploy.yml", "-e", f"@{vars_file}"))
    assert served_message(app) == "{{ not templated }}: kept"


def test_a_release_that_never_becomes_ready_fails_and_is_rolled_back(app, apis):
    succeeded(deploy("before-the-bad-release"))
    before = rollout_state(apis)
    result = deploy("never-ready", "-e", "app_fail_readiness=true", "-e", "app_helm_timeout=45s")
    assert result.returncode != 0
    assert "Installing or upgrading tiny-http-app in tiny-http-app failed" in result.stdout
    assert "has been rolled back due to atomic being set" in result.stdout, result.stdout[-3000:]
    assert served_message(app) == "before-the-bad-release"
    after = rollout_state(apis)
    assert after.replicaset == before.replicaset  # the rollback returned to the same ReplicaSet
    assert after.helm_revision == before.helm_revision + 2  # the failed upgrade, then the rollback


def test_undeploy_removes_everything_and_is_idempotent(app, apis):
    counts = succeeded(playbook("playbooks/undeploy.yml"))
    assert counts["changed"] >= 1
    assert helm_revision() is None
    assert not namespace_exists(apis[1])
    with pytest.raises(OSError):
        version(app)
    again = succeeded(playbook("playbooks/undeploy.yml"))
    assert again["changed"] == 0


def test_a_fresh_install_creates_the_namespace_and_serves(app, apis):
    started = time.monotonic()
    counts = succeeded(deploy("hello-world"))
    print(f"deploy.yml fresh install: {time.monotonic() - started:.1f}s, {counts}")
    assert namespace_exists(apis[1])
    labels = apis[1].read_namespace(NAMESPACE).metadata.labels
    assert labels["kubeadm-helm-rollout/created-by"] == "app-role"
    assert served_message(app) == "hello-world"


def test_a_runtime_restart_under_load_fails_no_request(app, apis, lab_cluster: LabCluster):
    """`systemctl restart crio` (or containerd) on a worker that runs an app pod: conmon (the
    containerd shim) keeps the containers running, so 100 requests/s see no error."""
    pods = apis[1].list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name=tiny-http-app").items
    node_name = next(pod.spec.node_name for pod in pods if pod.status.phase == "Running")
    runtime = "crio" if setting(lab_inventory(), node_name, "cluster_container_runtime") == "crio" else "containerd"
    node = Lab.from_env().node(node_name)
    host, port = app.rsplit(":", 1)
    prober = Prober(host, int(port), rate=100, expected={"hello-world"}).start()
    time.sleep(3)
    restart = ssh_argv(node, "sudo", "systemctl", "restart", runtime)
    restarted = subprocess.run(restart, check=False, capture_output=True, text=True, timeout=120)
    is_active = ssh_argv(node, "systemctl", "is-active", runtime)
    active = subprocess.run(is_active, check=False, capture_output=True, text=True, timeout=30)
    time.sleep(5)
    samples = prober.stop()
    assert restarted.returncode == 0, restarted.stderr
    assert active.stdout.strip() == "active"
    summary = summarize(samples)
    print(f"{runtime} restarted on {node_name} under load: {summary['errors']} errors / {summary['requests']} requests")
    assert summary["errors"] == 0, summary
    assert served_message(app) == "hello-world"
