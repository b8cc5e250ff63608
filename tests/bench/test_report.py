"""The benchmark's figures from a known request log: rollout and mixed-message seconds, stale errors, the plot."""

from __future__ import annotations

from lab.bench.prober import Sample, mark_stale
from lab.bench.report import plot
from lab.bench.rollout import PodTimes, Rollout
from lab.cluster import PROJECT


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


def test_phases_and_the_floor_from_what_was_watched():
    """Two new pods created at 3 s, running at 4 s, ready at 5 s; the old ones terminating at
    5.5 s, exited at 7.5 s, gone at 9 s; their endpoints left every node 1.2 and 0.8 s after
    the deletion."""
    rollout = synthetic_rollout()
    start = rollout.upgrade_start
    rollout.old_hashes, rollout.new_hashes = ["old"], ["new"]
    rollout.old_gone_at = start + 9.0
    rollout.pods = {
        f"new-{i}": PodTimes("new", start + 3.0, start + 30, running=start + 4.0, ready=start + 5.0) for i in (1, 2)
    } | {
        f"old-{i}": PodTimes(
            "old",
            start - 60,
            start + 8.75,
            ip=f"10.0.0.{i}",
            ready=start - 50,
            terminating=start + 5.5,
            exited=start + 7.5,
        )
        for i in (1, 2)
    }
    rollout.propagation = {"10.0.0.1": 1.2, "10.0.0.2": 0.8}
    phases = rollout.report()["phases"]
    assert phases["deployment_changed_at"] == 3.0
    assert phases["new_pod_created_to_running"] == 1.0
    assert phases["new_pod_running_to_ready"] == 1.0
    assert phases["old_pod_terminating_to_gone"] == 3.5  # last seen 8.75 s + one poll
    assert phases["old_pod_terminating_to_exited"] == 2.0
    assert phases["old_pod_exited_to_gone"] == 1.5
    assert phases["endpoint_propagation"] == 1.2
    assert phases["longest_request"] == 0.002
    assert phases["floor"] == round(2.0 + 1.2 + 0.002, 2)
    assert phases["rollout_from_deployment_change"] == 6.0
    assert phases["rollout_vs_floor"] == round(6.0 / 3.2, 2)


def test_a_rollout_with_an_unknown_propagation_has_no_floor():
    rollout = synthetic_rollout()
    start = rollout.upgrade_start
    rollout.old_hashes, rollout.new_hashes = ["old"], ["new"]
    rollout.pods = {"new-1": PodTimes("new", start + 1, start + 30, running=start + 2, ready=start + 3)}
    rollout.propagation = {"10.0.0.1": None}  # a node still routed to it at its last snapshot
    phases = rollout.report()["phases"]
    assert phases["endpoint_propagation"] is None and phases["floor"] is None and phases["rollout_vs_floor"] is None
