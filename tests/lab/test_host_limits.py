"""The host limits `lab up` raises for many nodes: raised to the minimum, never lowered."""

from __future__ import annotations

from pathlib import Path

from lab.nodes.nspawn import INOTIFY_MINIMUMS, raise_inotify_limits


def test_low_inotify_limits_are_raised_and_high_ones_left_alone(tmp_path: Path) -> None:
    (tmp_path / "max_user_instances").write_text("128\n")  # Debian's default: six nodes exhaust it
    (tmp_path / "max_user_watches").write_text("1048576\n")  # an operator's own, higher than ours

    raised = raise_inotify_limits(tmp_path)

    assert raised == [f"fs.inotify.max_user_instances 128 -> {INOTIFY_MINIMUMS['max_user_instances']}"]
    assert int((tmp_path / "max_user_instances").read_text()) == INOTIFY_MINIMUMS["max_user_instances"]
    assert (tmp_path / "max_user_watches").read_text() == "1048576\n"
    assert raise_inotify_limits(tmp_path) == []
