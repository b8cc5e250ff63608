"""What an image of the mirror is made of, shared by every module that builds one
(lab.mirror.images, lab.mirror.calico, lab.conformance.images): an ImageSpec
(build context, Containerfile, the digest of its inputs) and the local name
prefix images are built under before they are pushed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_PREFIX = "localhost/kubeadm-lab"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    # file or directory in the build context -> source file or directory
    files: dict[str, Path]
    containerfile: str
    # file in the build context -> its content (small generated files)
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"

    def digest(self) -> str:
        digest = hashlib.sha256(self.containerfile.encode())
        for target, source in sorted(self.files.items()):
            # a directory counts as each of its files
            inputs = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
            for path in inputs:
                stat = path.stat()
                digest.update(f"{target} {path} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        for target, text in sorted(self.texts.items()):
            digest.update(f"{target} {len(text)}\n{text}\n".encode())
        return digest.hexdigest()
