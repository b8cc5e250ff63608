"""The Helm chart, rendered by the pinned helm and validated offline against Kubernetes 1.29."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.paths import BIN, REPO
from tests.conftest import run_tool

pytestmark = pytest.mark.chart

CHART = REPO / "chart"
KUBE_VERSION = "1.29.0"


def helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool([BIN / "helm", *args], check=check)


def render(*options: str, chart: Path = CHART) -> list[dict]:
    out = helm("template", "demo", chart, "--namespace", "apps", "--kube-version", KUBE_VERSION, *options).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[dict], kind: str, component: str | None = None) -> dict:
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] == kind and (component is None or labels.get("app.kubernetes.io/component") == component):
            return doc
    raise AssertionError(f"no {kind} rendered")


def app_container(docs: list[dict]) -> dict:
    return find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def checksum(docs: list[dict]) -> str:
    return find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


NON_DEFAULT_SETTINGS = [
    "replicaCount=3",
    "image.registry=10.77.0.1:5000",
    "image.tag=1.2.3",
    "service.nodePort=31000",
    "service.externalTrafficPolicy=Local",
    "nodeFailure.tolerationSeconds=0",
    "podDisruptionBudget.enabled=false",
    "topologySpread.enabled=false",
    "testing.failReadiness=true",
]
NON_DEFAULT = ["--set-string", "message=hola"] + [arg for s in NON_DEFAULT_SETTINGS for arg in ("--set", s)]


def test_lint_strict():
    for values in ([], NON_DEFAULT):
        result = helm("lint", "--strict", "--kube-version", KUBE_VERSION, CHART, *values)
        assert "0 chart(s) failed" in result.stdout


MIN_AVAILABLE_BUDGET = [
    "--set",
    "podDisruptionBudget.maxUnavailable=null",
    "--set-string",
    "podDisruptionBudget.minAvailable=50%",
    "--set",
    "podDisruptionBudget.unhealthyPodEvictionPolicy=IfHealthyBudget",
]


@pytest.mark.parametrize(
    "options", [[], NON_DEFAULT, MIN_AVAILABLE_BUDGET], ids=["defaults", "non-defaults", "minAvailable-budget"]
)
def test_rendered_manifests_validate_against_kubernetes_1_29(tmp_path, options):
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(render(*options)))
    result = run_tool(["kubernetes-validate", "-k", KUBE_VERSION, "--strict", manifest], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource deployment/" in result.stdout


def test_schema_validation_rejects_unknown_fields(tmp_path):
    """The validator itself must fail on a bad field, or the test above proves nothing."""
    docs = render()
    find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["notAField"] = True
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = run_tool(["kubernetes-validate", "-k", KUBE_VERSION, "--strict", manifest], check=False)
    assert result.returncode != 0


def test_objects_and_defaults():
    docs = render()
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "Service"]
    service = find(docs, "Service")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    # any worker's NodePort answers unless a load balancer asks for Local
    assert service["spec"]["externalTrafficPolicy"] == "Cluster"
    config = find(docs, "ConfigMap")
    assert config["data"] == {"APP_MESSAGE": "default-message"}
    deployment = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = app_container(docs)["env"]
    app_message = next(e for e in env if e["name"] == "APP_MESSAGE")
    assert app_message["valueFrom"]["configMapKeyRef"] == {"name": config["metadata"]["name"], "key": "APP_MESSAGE"}


def test_labels_follow_app_kubernetes_io():
    docs = render()
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "demo"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/name"].startswith("tiny-http-app")
    deployment = find(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == find(docs, "Service")["spec"]["selector"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    test_pod = find(docs, "Pod")
    assert not selector.items() <= test_pod["metadata"]["labels"].items(), "the Service would route to the test pod"


# --- checksum/config ------------------------------------------------------


def test_checksum_changes_with_the_message():
    assert checksum(render("--set-string", "message=hello-world")) != checksum(render("--set-string", "message=hola"))


def test_checksum_is_stable_for_the_same_values():
    assert checksum(render("--set-string", "message=hola")) == checksum(render("--set-string", "message=hola"))


@pytest.mark.parametrize(
    "change",
    [["--set", "replicaCount=5"], ["--set", "image.tag=9.9.9"], ["--set", "resources.limits.memory=256Mi"]],
    ids=["replicas", "image-tag", "resources"],
)
def test_checksum_ignores_everything_but_the_config(change):
    assert checksum(render(*change)) == checksum(render())


def test_chart_version_bump_changes_neither_checksum_nor_pod_template(tmp_path):
    bumped = tmp_path / "chart"
    shutil.copytree(CHART, bumped)
    chart_yaml = bumped / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", "version: 0.2.0"))
    before, after = find(render(), "Deployment"), find(render(chart=bumped), "Deployment")
    assert before["metadata"]["labels"]["helm.sh/chart"] != after["metadata"]["labels"]["helm.sh/chart"]
    assert before["spec"]["template"] == after["spec"]["template"]


def test_checksum_is_sha256_of_the_rendered_config_data():
    import hashlib

    data = "APP_MESSAGE: " + '"hola"'
    assert checksum(render("--set-string", "message=hola")) == hashlib.sha256(data.encode()).hexdigest()


# --- messages arrive as strings, byte for byte ------------------------------


@pytest.mark.parametrize("message", ["123", "yes", "true", "0123", "1e3", "null", "~"])
def test_scalar_looking_messages_stay_strings(message):
    config = find(render("--set-string", f"message={message}"), "ConfigMap")
    assert config["data"]["APP_MESSAGE"] == message


@pytest.mark.parametrize(
    "message",
    ['say "hi": ok', "line one\nline two", "ñandú ☃ 日本", "{{ .Values.message }}", "a: b # c", "back\\slash"],
)
def test_awkward_messages_render_exactly(tmp_path, message):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"message": message}, allow_unicode=True))
    config = find(render("-f", str(values)), "ConfigMap")
    assert config["data"]["APP_MESSAGE"] == message


# --- values.schema.json -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--set", "message=123"], "message"),
        (["--set-string", "message="], "message"),
        (["--set", "replicaCount=two"], "replicaCount"),
        (["--set", "replicaCount=0"], "replicaCount"),
        (["--set", "service.nodePort=29999"], "nodePort"),
        (["--set", "service.nodePort=32768"], "nodePort"),
        (["--set", "service.nodePort=http"], "nodePort"),
        (["--set", "unknownKey=1"], "unknownKey"),
        (["--set", "image.unknownKey=1"], "unknownKey"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "podDisruptionBudget.enabled=maybe"], "enabled"),
        # a budget of 0 would block every drain
        (["--set", "podDisruptionBudget.maxUnavailable=0"], "maxUnavailable"),
        (["--set-string", "podDisruptionBudget.maxUnavailable=0%"], "maxUnavailable"),
        (["--set-string", "podDisruptionBudget.minAvailable=101%"], "minAvailable"),
        (["--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=Never"], "unhealthyPodEvictionPolicy"),
        (["--set", "rollout.revisionHistoryLimit=-1"], "revisionHistoryLimit"),
        # no template falls back on a default of its own: what it renders is required
        (["--set", "rollout.revisionHistoryLimit=null"], "revisionHistoryLimit"),
        (["--set", "topologySpread.maxSkew=null"], "maxSkew"),
        (["--set", "topologySpread.maxSkew=0"], "maxSkew"),
        (["--set", "service.externalTrafficPolicy=local"], "externalTrafficPolicy"),
        (["--set", "nodeFailure.tolerationSeconds=-1"], "tolerationSeconds"),
        (["--set", "nodeFailure.tolerationSeconds=3601"], "tolerationSeconds"),
        (["--set", "nodeFailure.tolerationSeconds=soon"], "tolerationSeconds"),
        (["--set", "nodeFailure.tolerationSeconds=null"], "tolerationSeconds"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_schema_rejects_bad_values_with_a_clear_error(options, expected):
    result = helm("template", "demo", CHART, "--kube-version", KUBE_VERSION, *options, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert expected in result.stderr


# --- zero-downtime and restricted pod settings -------------------------------


def test_rollout_settings_for_zero_downtime():
    deployment = find(render(), "Deployment")
    spec = deployment["spec"]
    # every new pod at once, and no old pod goes before a new one is ready
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}}
    assert spec["minReadySeconds"] == 0
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["httpGet"]["path"] == "/health"
    assert readiness["periodSeconds"] == 1
    assert liveness != readiness
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    # long enough for endpoint propagation on a large cluster (the lab sets less, measured)
    assert pre_stop == ["sleep", "10"]
    graceful = int(next(e["value"] for e in container["env"] if e["name"] == "GRACEFUL_TIMEOUT"))
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + graceful + 5
    spread = pod["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    # replicas on distinct nodes, counting only nodes a pod may be scheduled on (not a dead or cordoned one)
    assert (spread["whenUnsatisfiable"], spread["nodeTaintsPolicy"]) == ("DoNotSchedule", "Honor")
    budget = find(render(), "PodDisruptionBudget")["spec"]
    # a drain evicts one pod at a time, and a pod that is not ready never holds it up
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_grace_period_follows_the_timeouts():
    pod = find(
        render("--set", "rollout.preStopSleepSeconds=30", "--set", "rollout.gracefulTimeoutSeconds=45"), "Deployment"
    )
    assert pod["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 85


def test_pods_are_restricted():
    docs = render()
    for pod in (find(docs, "Deployment")["spec"]["template"]["spec"], find(docs, "Pod")["spec"]):
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "memory" in container["resources"]["limits"]
            assert container["resources"]["requests"]


def test_helm_test_hook_checks_the_configured_message_with_the_app_image():
    docs = render("--set", "image.registry=10.77.0.1:5000")
    test_pod = find(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = test_pod["spec"]["containers"][0]
    assert container["image"] == app_container(docs)["image"]
    expected = next(e for e in container["env"] if e["name"] == "EXPECTED_MESSAGE")
    assert expected["valueFrom"]["configMapKeyRef"]["key"] == "APP_MESSAGE"


def test_readiness_switch_is_off_by_default():
    env = app_container(render())["env"]
    assert "APP_FAIL_READINESS" not in {e["name"] for e in env}
    env = app_container(render("--set", "testing.failReadiness=true"))["env"]
    assert {"name": "APP_FAIL_READINESS", "value": "true"} in env


def test_notes_print_the_exact_curl_line(tmp_path):
    # helm renders NOTES.txt only on install; in a copy of the chart, tpl renders
    # the same text into a ConfigMap that `helm template` can show.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.copy")
    (chart / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.copy") . | toJson }}\n'
    )
    rendered = helm(
        "template",
        "demo",
        chart,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "service.nodePort=31234",
        "--set-string",
        "message=hola",
        "--show-only",
        "templates/notes-check.yaml",
    ).stdout
    notes = yaml.safe_load(rendered)["data"]["notes"]
    assert 'curl -s "http://${NODE_IP}:31234/version"' in notes
    assert '{"message": "hola"}' in notes


# --- leaving a dead node ----------------------------------------------------

NODE_LOSS_TAINTS = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]


def node_loss_tolerations(docs: list[dict]) -> dict[str, dict]:
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    return {t["key"]: t for t in pod.get("tolerations") or [] if t.get("key") in NODE_LOSS_TAINTS}


def test_pods_leave_a_dead_node_after_seconds_not_minutes():
    """Without its own tolerations a pod gets Kubernetes' 300 s and the Deployment runs short for five minutes."""
    tolerations = node_loss_tolerations(render())
    assert sorted(tolerations) == NODE_LOSS_TAINTS
    for toleration in tolerations.values():
        assert toleration["operator"] == "Exists"
        assert toleration["effect"] == "NoExecute"
        assert toleration["tolerationSeconds"] == 10


@pytest.mark.parametrize("seconds", [0, 1, 45, 3600])
def test_node_loss_toleration_renders_as_given(tmp_path, seconds):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({"nodeFailure": {"tolerationSeconds": seconds}}))
    # --set gives an integer, a values file a float: a 0 must stay 0 in both
    for options in (["--set", f"nodeFailure.tolerationSeconds={seconds}"], ["-f", str(values_file)]):
        tolerations = node_loss_tolerations(render(*options))
        assert [t["tolerationSeconds"] for t in tolerations.values()] == [seconds, seconds], options


def test_user_tolerations_are_added_to_the_node_loss_ones():
    docs = render("--set", "tolerations[0].key=dedicated", "--set", "tolerations[0].operator=Exists")
    keys = [t["key"] for t in find(docs, "Deployment")["spec"]["template"]["spec"]["tolerations"]]
    assert keys == [*NODE_LOSS_TAINTS, "dedicated"]


# --- every accepted value renders as given -----------------------------------


def rendered_at(docs: list[dict], kind: str, path: str) -> object:
    value: object = find(docs, kind)
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]  # type: ignore[index]
    return value


# (values given, as --set arguments, the object and field they render to, the value expected there).
# The zeros and falses first: a template's `| default` turns them into its own default.
AS_GIVEN = [
    (["--set", "rollout.revisionHistoryLimit=0"], "Deployment", "spec.revisionHistoryLimit", 0),
    (
        ["--set", "podDisruptionBudget.maxUnavailable=null", "--set", "podDisruptionBudget.minAvailable=0"],
        "PodDisruptionBudget",
        "spec.minAvailable",
        0,
    ),
    (
        ["--set", "podDisruptionBudget.maxUnavailable=null", "--set-string", "podDisruptionBudget.minAvailable=0%"],
        "PodDisruptionBudget",
        "spec.minAvailable",
        "0%",
    ),
    (["--set", "rollout.minReadySeconds=0"], "Deployment", "spec.minReadySeconds", 0),
    (["--set", "rollout.maxUnavailable=0"], "Deployment", "spec.strategy.rollingUpdate.maxUnavailable", 0),
    (
        ["--set", "livenessProbe.initialDelaySeconds=0"],
        "Deployment",
        "spec.template.spec.containers.0.livenessProbe.initialDelaySeconds",
        0,
    ),
    (["--set", "rollout.revisionHistoryLimit=3"], "Deployment", "spec.revisionHistoryLimit", 3),
    (["--set", "topologySpread.maxSkew=2"], "Deployment", "spec.template.spec.topologySpreadConstraints.0.maxSkew", 2),
    (
        ["--set", "topologySpread.whenUnsatisfiable=ScheduleAnyway"],
        "Deployment",
        "spec.template.spec.topologySpreadConstraints.0.whenUnsatisfiable",
        "ScheduleAnyway",
    ),
    (["--set", "service.externalTrafficPolicy=Local"], "Service", "spec.externalTrafficPolicy", "Local"),
    (["--set", "podDisruptionBudget.maxUnavailable=2"], "PodDisruptionBudget", "spec.maxUnavailable", 2),
    (["--set-string", "podDisruptionBudget.maxUnavailable=50%"], "PodDisruptionBudget", "spec.maxUnavailable", "50%"),
    (
        ["--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=IfHealthyBudget"],
        "PodDisruptionBudget",
        "spec.unhealthyPodEvictionPolicy",
        "IfHealthyBudget",
    ),
]


@pytest.mark.parametrize(
    ("options", "kind", "path", "expected"), AS_GIVEN, ids=[" ".join(case[0][1::2]) for case in AS_GIVEN]
)
def test_every_accepted_value_renders_as_given(options, kind, path, expected):
    assert rendered_at(render(*options), kind, path) == expected


@pytest.mark.parametrize(
    ("options", "kind", "path", "expected"), AS_GIVEN[:3], ids=["revisionHistoryLimit", "minAvailable", "minAvailable%"]
)
def test_zeros_from_a_values_file_render_as_given(tmp_path, options, kind, path, expected):
    """A values file gives numbers as floats, --set as integers: both must arrive as given."""
    values: dict = {}
    for setting in options[1::2]:
        key, _, raw = setting.partition("=")
        *parents, leaf = key.split(".")
        node = values
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = None if raw == "null" else raw if raw.endswith("%") else int(raw)
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    assert rendered_at(render("-f", str(values_file)), kind, path) == expected


# --- the PodDisruptionBudget never blocks a drain for good -------------------


def scaled(value: int | str, replicas: int) -> int:
    """Kubernetes' GetScaledValueFromIntOrPercent as the disruption controller calls it (rounding up)."""
    if isinstance(value, str):
        return math.ceil(int(value.rstrip("%")) * replicas / 100)
    return value


def evictions_allowed(budget: dict, replicas: int) -> int:
    """The budget's status.disruptionsAllowed when all `replicas` pods of the Deployment are ready."""
    if "maxUnavailable" in budget:
        desired_healthy = max(0, replicas - scaled(budget["maxUnavailable"], replicas))
    else:
        desired_healthy = scaled(budget["minAvailable"], replicas)
    return max(0, replicas - desired_healthy)


# The budget settings a user can give: the default, other maxUnavailable values,
# and minAvailable (which needs maxUnavailable unset) from 0 to all of the pods.
BUDGETS: dict[str, list[str]] = {
    "defaults": [],
    "maxUnavailable=2": ["--set", "podDisruptionBudget.maxUnavailable=2"],
    "maxUnavailable=1%": ["--set-string", "podDisruptionBudget.maxUnavailable=1%"],
    "maxUnavailable=100%": ["--set-string", "podDisruptionBudget.maxUnavailable=100%"],
    **{
        f"minAvailable={value}": [
            "--set",
            "podDisruptionBudget.maxUnavailable=null",
            "--set-string" if value.endswith("%") else "--set",
            f"podDisruptionBudget.minAvailable={value}",
        ]
        for value in ("0", "1", "2", "3", "0%", "34%", "50%", "67%", "100%")
    },
}


@pytest.mark.parametrize("budget", BUDGETS, ids=list(BUDGETS))
@pytest.mark.parametrize("replicas", [1, 2, 3], ids=lambda r: f"replicaCount={r}")
def test_no_budget_the_chart_renders_blocks_every_drain(replicas, budget):
    """kubectl drain waits until the budget allows an eviction: with every pod ready it must allow one,
    or the chart must refuse the values, naming them."""
    options = ["--set", f"replicaCount={replicas}", *BUDGETS[budget]]
    result = helm("template", "demo", CHART, "--kube-version", KUBE_VERSION, *options, check=False)
    if result.returncode != 0:
        # only a minAvailable that keeps every pod may be refused
        min_available = budget.removeprefix("minAvailable=")
        assert budget.startswith("minAvailable="), result.stderr
        value: int | str = min_available if min_available.endswith("%") else int(min_available)
        assert scaled(value, replicas) >= replicas, result.stderr
        assert f"podDisruptionBudget.minAvailable ({min_available})" in result.stderr
        assert f"replicaCount ({replicas})" in result.stderr
        return
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert find(docs, "Deployment")["spec"]["replicas"] == replicas
    spec = find(docs, "PodDisruptionBudget")["spec"]
    assert evictions_allowed(spec, replicas) >= 1, spec
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_budget_with_both_limits_is_refused_naming_them():
    result = helm(
        "template",
        "demo",
        CHART,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "podDisruptionBudget.minAvailable=1",
        check=False,
    )
    assert result.returncode != 0
    assert "set maxUnavailable (1) or minAvailable (1), not both" in result.stderr
    assert "podDisruptionBudget.maxUnavailable=null" in result.stderr
