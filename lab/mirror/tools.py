"""The pinned client tools the project builds for itself: helm and helm-diff.

helm is in neither PyPI nor Debian, and get.helm.sh is not reachable, so it is
built from the module proxy. helm-diff lets kubernetes.core.helm tell a no-op
upgrade from a real one; 3.9.5 is the last line built against Helm 3.14.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.mirror.gobuild import GoBuild, build, link_into_bin
from lab.paths import BIN, CACHE, REPO
from lab.run import run, step

HELM_VERSION = "v3.14.4"
HELM_DIFF_VERSION = "v3.9.5"

HELM = GoBuild(
    name="helm",
    version=HELM_VERSION,
    module="helm.sh/helm/v3",
    binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
    ldflags=f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"
    " -X helm.sh/helm/v3/internal/version.gitTreeState=clean",
)

HELM_DIFF = GoBuild(
    name="helm-diff",
    version=HELM_DIFF_VERSION,
    module="github.com/databus23/helm-diff/v3",
    binaries={"diff": "github.com/databus23/helm-diff/v3"},
    ldflags=f"-s -w -X github.com/databus23/helm-diff/v3/cmd.Version={HELM_DIFF_VERSION.lstrip('v')}",
    nosumdb=("github.com/databus23/helm-diff",),
)

# Helm finds plugins here; the app role points HELM_PLUGINS at the same place.
HELM_PLUGINS = CACHE / "helm-plugins"


def tool_env(**extra: str) -> dict[str, str]:
    """The environment `make` gives commands: pinned tools and the venv first on PATH,
    helm's plugins, the project's ansible.cfg."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN), str(REPO / ".venv" / "bin"), env.get("PATH", "")])
    env["HELM_PLUGINS"] = str(HELM_PLUGINS)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env.update(extra)
    return env


def install_helm_diff(diff_dir: Path) -> None:
    """Lay helm-diff out as a Helm plugin (plugin.yaml + bin/diff)."""
    plugin = HELM_PLUGINS / "diff"
    (plugin / "bin").mkdir(parents=True, exist_ok=True)
    manifest = (
        'name: "diff"\n'
        f'version: "{HELM_DIFF_VERSION.lstrip("v")}"\n'
        'usage: "Preview helm upgrade changes as a diff"\n'
        'description: "Preview helm upgrade changes as a diff"\n'
        "useTunnel: true\n"
        'command: "$HELM_PLUGIN_DIR/bin/diff"\n'
    )
    if not (plugin / "plugin.yaml").is_file() or (plugin / "plugin.yaml").read_text() != manifest:
        (plugin / "plugin.yaml").write_text(manifest)
    link = plugin / "bin" / "diff"
    if not link.is_symlink() or link.resolve() != (diff_dir / "diff").resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(diff_dir / "diff")


def ensure_tools() -> None:
    link_into_bin(build(HELM), ["helm"])
    install_helm_diff(build(HELM_DIFF))
    with step("check helm"):
        env = dict(os.environ, HELM_PLUGINS=str(HELM_PLUGINS))
        version = run([BIN / "helm", "version", "--short"], capture=True, env=env).stdout.strip()
        if not version.startswith(HELM_VERSION):
            raise ValueError(f"helm reports {version}, expected {HELM_VERSION}")
        plugins = run([BIN / "helm", "plugin", "list"], capture=True, env=env).stdout
        if "diff" not in plugins:
            raise ValueError("helm-diff plugin is not visible to helm")
