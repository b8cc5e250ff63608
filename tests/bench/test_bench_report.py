"""The benchmark's figures from a known request log: rollout and mixed-message seconds, stale errors, the plot."""

from __future__ import annotations

from lab.bench_report import plot
from lab.cluster import PROJECT
from lab.prober import Sample, mark_stale
from lab.rollout import Rollout


def sample(sent: float, message: str | None, kind: str = "ok") -> Sample:
    return Sample(scheduled=sent, sent=sent, latency=0.002, kind=kind, status=200 if message else 0, message=message)


def synthetic_rollout() -> Rollout:
    """100 s at 10 req/s around t=0: old until 12 s, both from 8 s to 12 s, new after; one refused connection."""
    start = 1000.0
    samples = []
    for i in range(-150, 850):
        t = i / 10
        if t < 8:
            message = "old"
        elif t < 12:
            message = "old" if i % 2 else "new"
        else:
            message = "new"
        samples.append(sample(start + t, message))
    samples[300] = sample(start + 15.0, None, kind="connect")
    samples[400] = sample(start + 25.0, "old")  # after the old pods were gone
    rollout = Rollout("project/new", PROJECT, "new", "old", "new", expect_success=True)
    rollout.upgrade_start, rollout.old_gone_at, rollout.trigger_seconds = start, start + 20.0, 22.0
    rollout.samples = mark_stale(samples, "old", rollout.old_gone_at)
    return rollout


def test_report_figures():
    report = synthetic_rollout().report()
    assert report["requests"] == 1000
    assert report["errors"] == 2
    assert report["error_kinds"] == {"connect": 1, "stale": 1}
    assert report["rollout_seconds"] == 20.0
    # the stale answer at 25 s counts as an old message served: both messages from 8 s to 25 s
    assert report["first_new_message_at"] == 8.0
    assert report["last_old_message_at"] == 25.0
    assert report["mixed_message_seconds"] == 17.0
    seconds = {row["second"]: row for row in report["per_second"]}
    assert seconds[-15] == {"second": -15, "old": 10, "new": 0, "errors": 0}
    assert seconds[9] == {"second": 9, "old": 5, "new": 5, "errors": 0}
    assert seconds[15] == {"second": 15, "old": 0, "new": 9, "errors": 1}


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "rollout.png"
    plot([synthetic_rollout().report()], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
