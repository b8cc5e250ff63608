"""Debian root filesystems made by debootstrap, cached by suite and package set.

The lab nodes and the local base images start from these. A tree is built once
into CACHE/rootfs/<name>-<digest>/ and then copied (never overlaid: an image
store inside a node cannot use overlay on top of an overlay root).

They come from the Debian mirror this host uses itself (debian_mirror()), as
does the mirror's Debian subset (lab.mirror.apt): behind a company mirror, the
host's apt sources name the only one that answers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from lab.paths import CACHE
from lab.run import run, step

ROOTFS_CACHE = CACHE / "rootfs"
# The last resort, when neither LAB_DEBIAN_MIRROR nor the host's apt sources name a mirror.
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
APT_ETC = Path("/etc/apt")
# what debootstrap and apt can both fetch from (not apt-only ones such as mirror+http: or cdrom:)
MIRROR_SCHEMES = ("http://", "https://", "ftp://", "file:")


def _one_line_entries(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(URI, [suite], components) of each `deb [options] URI SUITE COMPONENT...` line (sources.list)."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 4 or words[0] != "deb":  # deb-src, blank and comment lines
            continue
        words = words[1:]
        if words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 3:
            yield words[0], [words[1]], words[2:]


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    """The stanzas of a deb822 file as {lowercase field name: value} (continuation lines joined)."""
    fields: dict[str, str] = {}
    name = ""
    for line in [*text.splitlines(), ""]:
        if not line.strip():  # a blank line ends a stanza
            if fields:
                yield fields
            fields, name = {}, ""
        elif line.startswith("#"):
            continue
        elif line[0].isspace() and name:
            fields[name] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            fields[name] = value.strip()


def _deb822_entries(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(URI, suites, components) of each URI of each enabled `Types: deb` stanza (*.sources)."""
    for fields in _deb822_stanzas(text):
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


def host_debian_mirrors(suite: str, apt_etc: Path = APT_ETC) -> list[str]:
    """The URIs the host's apt sources fetch `suite` main from, in apt's order of reading them:
    sources.list, then sources.list.d/ (*.list and *.sources, by name)."""
    files = [apt_etc / "sources.list"]
    parts = apt_etc / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for uri, suites, components in entries:
            if suite in suites and "main" in components and uri.startswith(MIRROR_SCHEMES):
                found.append(uri.rstrip("/"))
    return found


def debian_mirror(suite: str = "bookworm", apt_etc: Path = APT_ETC, environ: Mapping[str, str] | None = None) -> str:
    """The Debian mirror debootstrap and the mirror's Debian subset fetch `suite` from:
    LAB_DEBIAN_MIRROR if set, else the first the host's own apt sources use for
    `suite` main (not -updates or -security), else deb.debian.org."""
    environ = os.environ if environ is None else environ
    override = environ.get("LAB_DEBIAN_MIRROR", "").strip()
    if override:
        return override.rstrip("/")
    return next(iter(host_debian_mirrors(suite, apt_etc)), DEFAULT_DEBIAN_MIRROR)


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
                debian_mirror(suite),
            ]
        )
        # apt caches are not needed in the copies
        for cached in (partial / "var/cache/apt/archives").glob("*.deb"):
            cached.unlink()
        (partial / ".complete").write_text(key + "\n")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target
