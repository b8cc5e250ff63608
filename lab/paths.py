"""Where things live. Heavy artefacts go to the cache, never into the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Everything built or downloaded, keyed by version below it, so a warm machine
# rebuilds nothing. `make lab-clean` removes it.
CACHE = Path(os.environ.get("LAB_CACHE", "~/.cache/kubeadm-lab")).expanduser()

# Symlinks to the pinned tool builds; the Makefile puts this first on PATH.
BIN = CACHE / "bin"

VENV = REPO / ".venv"
REPORTS = REPO / "reports"
