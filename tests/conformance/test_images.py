"""The conformance suite's images, pulled from the lab registry and run with podman.

Each check is something a [Conformance] test does with the image: agnhost's
subcommands and the tools tests exec in it, the pages httpd and nginx serve
on port 80, busybox's applets, setuid under no_new_privs, the flags the
aggregator test gives sample-apiserver. The containers run without a network
(their own loopback only), as nothing outside is reachable here anyway.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.conformance import images
from lab.conformance.runner import write_repo_list
from lab.mirror import builds
from lab.mirror.commands import REGISTRY
from lab.mirror.gobuild import build
from lab.mirror.images import PODMAN_RUN_FLAGS, push_registry

pytestmark = pytest.mark.conformance

PODMAN_RUN = [
    "podman",
    "run",
    "--rm",
    "--quiet",
    "--tls-verify=false",
    "--network",
    "none",
    *PODMAN_RUN_FLAGS,
]


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    images.build_test_images()  # seconds when nothing changed
    with push_registry() as address:
        yield address


def podman_run(registry: str, image: str, *argv: str, options: tuple[str, ...] = ()) -> str:
    """Run argv in the image as the registry serves it; its output (stdout and stderr)."""
    reference = f"{registry}/{images.E2E_REPOSITORY}/{image}"
    result = subprocess.run([*PODMAN_RUN, *options, reference, *argv], capture_output=True, text=True, check=False)
    # the loopback port changes every session: do not pile up tags in podman's store
    subprocess.run(["podman", "image", "rm", reference], capture_output=True, check=False)
    return result.stdout + result.stderr


def serve_and_fetch(server: str, url: str) -> str:
    """A shell line: start server in the background, then fetch url from the container's loopback.

    Prints only what url answers, or the server's log when it never did."""
    return (
        f"{server} >/tmp/server.log 2>&1 & "
        f"for i in $(seq 50); do wget -qO- {url} && exit 0; sleep 0.2; done; cat /tmp/server.log; exit 1"
    )


def test_e2e_test_asks_for_exactly_the_references_pushed(tmp_path: Path) -> None:
    # e2e.test's own list of images, with the repo list the command gives it:
    # every image built here is named (name, tag) as manifest.go names it
    e2e_test = build(builds.KUBERNETES_E2E) / "e2e.test"
    repo_list = write_repo_list(tmp_path / "repo-list.yaml")
    listed = subprocess.run(
        [e2e_test, "--list-images"],
        env={"KUBE_TEST_REPO_LIST": str(repo_list), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    missing = [image.reference for image in images.IMAGES if f"{REGISTRY}/{image.reference}" not in listed]
    assert not missing, f"e2e.test never asks the lab registry for {missing}"


def test_every_image_the_suite_names_is_in_the_registry(registry: str, tmp_path: Path) -> None:
    for image in images.IMAGES:
        inspect = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/{image.reference}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert inspect.returncode == 0, f"{image.reference}: {inspect.stderr}"
        assert json.loads(inspect.stdout)["Architecture"] == "amd64"


def test_agnhost_has_the_subcommands_the_suite_runs(registry: str) -> None:
    output = podman_run(registry, "agnhost:2.47", "--help", options=("--entrypoint", "/agnhost"))
    for subcommand in (
        "netexec",
        "serve-hostname",
        "test-webserver",
        "pause",
        "porter",
        "liveness",
        "webhook",
        "crd-conversion-webhook",
        "mounttest",
        "entrypoint-tester",
        "nettest",
        "connect",
        "grpc-health-checking",
        "test-service-account-issuer-discovery",
        "inclusterclient",
    ):
        assert f"  {subcommand} " in output, f"agnhost lacks {subcommand}:\n{output}"


def test_agnhost_netexec_answers_on_8080(registry: str) -> None:
    script = serve_and_fetch("/agnhost netexec --http-port=8080", "http://127.0.0.1:8080/hostname")
    output = podman_run(registry, "agnhost:2.47", "-c", script, options=("--entrypoint", "sh", "--hostname", "probe"))
    assert output.strip() == "probe"


def test_agnhost_carries_the_tools_tests_exec_in_it(registry: str) -> None:
    script = (
        "dig -v 2>&1 | head -1; nslookup -version 2>&1 | head -1; curl --version | head -1; "
        "wget --version | head -1; nc -h 2>&1 | head -1; ss -V; getent hosts localhost; "
        "/coredns -version | head -1; id user-defined-in-image; test -x /agnhost-2 && echo agnhost-2; "
        "test -d /uploads && echo uploads; test -s /localhost.crt && test -s /localhost.key && echo porter-cert"
    )
    output = podman_run(registry, "agnhost:2.47", "-c", script, options=("--entrypoint", "sh"))
    for expected in (
        "DiG 9.",
        "curl ",
        "GNU Wget",
        "OpenBSD netcat",
        "iproute2",
        "localhost",
        "CoreDNS-1.11.1",
        "uid=1000(user-defined-in-image)",
        "50000(group-defined-in-image)",
        "agnhost-2",
        "uploads",
        "porter-cert",
    ):
        assert expected in output, f"{expected!r} missing:\n{output}"


def test_httpd_serves_its_default_page_on_port_80(registry: str) -> None:
    for tag in ("2.4.38-4", "2.4.39-4"):
        script = serve_and_fetch("httpd-foreground", "http://127.0.0.1:80/index.html")
        output = podman_run(registry, f"httpd:{tag}", "sh", "-c", script)
        assert output.strip() == "<html><body><h1>It works!</h1></body></html>", output


def test_httpd_page_is_where_statefulset_tests_move_it(registry: str) -> None:
    # breakHTTPProbe: mv -v /usr/local/apache2/htdocs/index.html /tmp/ ; restore moves it back
    output = podman_run(registry, "httpd:2.4.38-4", "sh", "-c", "mv -v /usr/local/apache2/htdocs/index.html /tmp/")
    assert "/tmp/index.html" in output, output


def test_the_two_httpd_tags_are_different_images(registry: str) -> None:
    digests = set()
    for tag in ("2.4.38-4", "2.4.39-4"):
        reference = f"docker://{registry}/{images.E2E_REPOSITORY}/httpd:{tag}"
        inspect = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", reference], capture_output=True, text=True, check=True
        )
        digests.add(json.loads(inspect.stdout)["Digest"])
    assert len(digests) == 2


def test_nginx_serves_its_welcome_page_on_port_80(registry: str) -> None:
    script = serve_and_fetch("nginx -g 'daemon off;'", "http://127.0.0.1:80/")
    output = podman_run(registry, "nginx:1.14-4", "sh", "-c", script)
    assert "<title>Welcome to nginx!</title>" in output, output


def test_busybox_has_the_applets_and_options_tests_use(registry: str) -> None:
    listed = set(podman_run(registry, "busybox:1.36.1-1", "busybox", "--list").split())
    assert {"sh", "sleep", "cat", "echo", "ls", "id", "wget", "nslookup", "nc", "env", "hostname", "stat"} <= listed
    # pre_stop: wget -O- --post-data=... (connection refused, not an unknown option)
    output = podman_run(registry, "busybox:1.36.1-1", "wget", "-O-", "--post-data=x", "http://127.0.0.1:1/write")
    assert "refused" in output, output
    assert podman_run(registry, "busybox:1.36.1-1", "sh", "-c", "echo -n DONE; id -u nobody").strip() == "DONE65534"
    # the Job tests' scripts: ash's [[ ]], $RANDOM and arithmetic
    script = "if [[ -r /etc/passwd ]] ; then echo readable ; fi ; test $RANDOM -ge 0 && echo $(( 32767 / 16384 ))"
    assert podman_run(registry, "busybox:1.36.1-1", "/bin/sh", "-c", script).split() == ["readable", "1"]
    # envFrom gives names like data-1; the Secret and ConfigMap tests print them with `sh -c env`
    output = podman_run(registry, "busybox:1.36.1-1", "sh", "-c", "env", options=("--env", "data-1=value-1"))
    assert "data-1=value-1" in output.splitlines(), output


def test_jessie_dnsutils_has_dig_and_getent(registry: str) -> None:
    output = podman_run(registry, "jessie-dnsutils:1.7", "sh", "-c", "dig -v 2>&1; getent hosts localhost; seq 1 2")
    assert "DiG 9." in output
    assert "localhost" in output


def test_nautilus_serves_its_update_demo_data(registry: str) -> None:
    script = serve_and_fetch("/agnhost test-webserver", "http://127.0.0.1:80/data.json")
    output = podman_run(registry, "nautilus:1.7", "-c", script, options=("--entrypoint", "sh"))
    assert json.loads(output) == {"image": "nautilus.jpg"}


def test_nonewprivs_escalates_only_without_no_new_privs(registry: str) -> None:
    # the Conformance test runs it as uid 1000 with allowPrivilegeEscalation: false
    escalated = podman_run(registry, "nonewprivs:1.3", options=("--user", "1000"))
    assert "Effective uid: 0" in escalated, escalated
    contained = podman_run(
        registry, "nonewprivs:1.3", options=("--user", "1000", "--security-opt", "no-new-privileges")
    )
    assert "Effective uid: 1000" in contained, contained


def test_sample_apiserver_takes_the_aggregator_tests_flags(registry: str) -> None:
    output = podman_run(registry, "sample-apiserver:1.17.7", "--help")
    for flag in (
        "--etcd-servers",
        "--tls-cert-file",
        "--tls-private-key-file",
        "--audit-log-path",
        "--audit-log-maxage",
        "--audit-log-maxbackup",
    ):
        assert flag in output, output[-2000:]
    assert "--secure-port int" in output and "(default 443)" in output  # the test probes :443/readyz
