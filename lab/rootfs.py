"""Debian root filesystems made by debootstrap, cached by suite and package set.

The lab nodes and the local base images start from these. A tree is built once
into CACHE/rootfs/<name>-<digest>/ and then copied (never overlaid: an image
store inside a node cannot use overlay on top of an overlay root).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from lab.paths import CACHE
from lab.run import run, step

ROOTFS_CACHE = CACHE / "rootfs"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def debootstrap(name: str, packages: list[str], suite: str = "bookworm", variant: str = "minbase") -> Path:
    """Return a cached root filesystem with packages installed; build it if missing."""
    key = hashlib.sha256(f"{suite} {variant} {' '.join(sorted(packages))}".encode()).hexdigest()[:12]
    target = ROOTFS_CACHE / f"{name}-{suite}-{key}"
    if (target / ".complete").is_file():
        return target
    with step(f"debootstrap {name} ({suite}, {len(packages)} extra packages)"):
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        run(
            [
                "debootstrap",
                f"--variant={variant}",
                f"--include={','.join(sorted(packages))}",
                suite,
                partial,
                DEBIAN_MIRROR,
            ]
        )
        # apt caches are not needed in the copies
        for cached in (partial / "var/cache/apt/archives").glob("*.deb"):
            cached.unlink()
        (partial / ".complete").write_text(key + "\n")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target
