"""The offline mirror: pinned builds served like pkgs.k8s.io and a registry.

Interface used by lab.nodes (kept stable while the mirror is built out):
- is_built() -> bool: everything `make mirror` makes is in the cache;
- start_services(): serve the apt repository (APT_PORT) and the registry
  (REGISTRY_PORT) on the lab bridge address, idempotently;
- stop_services(): stop both, idempotently.
"""

from __future__ import annotations

from lab.paths import CACHE

MIRROR_DIR = CACHE / "mirror"
BRIDGE_ADDRESS = "10.77.0.1"
APT_PORT = 8080
REGISTRY_PORT = 5000


def is_built() -> bool:
    return (MIRROR_DIR / ".complete").is_file()


def start_services() -> None:
    """Serve the mirror on the lab bridge (not yet implemented)."""


def stop_services() -> None:
    """Stop serving the mirror (not yet implemented)."""


def mirror_command(args: list[str]) -> int:
    raise SystemExit("make mirror: not implemented yet")
