"""The worker-outage figures from a known request log: errors, seconds with errors, times since the poweroff."""

from __future__ import annotations

from lab.bench.outage import WorkerOutage
from lab.bench.prober import Sample


def test_outage_report_counts_errors_and_times_from_the_poweroff():
    poweroff = 5000.0
    samples = []
    for i in range(-100, 3000):  # 10 req/s from 10 s before the poweroff to 300 s after
        sent = poweroff + i / 10
        # connections to the dead node's pod time out between 20.0 and 22.5 s, every other request
        failing = 200 <= i < 225 and i % 2 == 0
        kind, message = ("timeout", None) if failing else ("ok", "hello-world")
        samples.append(Sample(sent, sent, 0.003, kind, 0 if failing else 200, message))
    outage = WorkerOutage("lab-worker-3", "lab-worker-2", 2, "hello-world", samples=samples, poweroff_at=poweroff)
    outage.node_not_ready_at, outage.pod_unready_at, outage.whole_at = (
        poweroff + 41.0,
        poweroff + 41.5,
        poweroff + 290.0,
    )

    report = outage.report()

    assert (report["requests"], report["errors"], report["error_kinds"]) == (3100, 13, {"timeout": 13})
    assert report["seconds_with_errors"] == 3  # 20, 21 and 22
    assert (report["first_error_at"], report["last_error_at"]) == (20.0, 22.4)
    assert report["node_not_ready_at"] == 41.0
    assert report["pod_on_stopped_node_unready_at"] == 41.5
    assert (report["seconds_until_whole"], report["whole_within_timeout"]) == (290.0, True)
    seconds = {row["second"]: row for row in report["per_second"]}
    assert seconds[-10] == {"second": -10, "old": 10, "new": 0, "errors": 0}
    assert seconds[20] == {"second": 20, "old": 5, "new": 0, "errors": 5}


def test_outage_not_whole_within_the_timeout_says_so():
    sample = Sample(1.0, 1.0, 0.003, "ok", 200, "m")
    report = WorkerOutage("w3", "w2", 2, "m", samples=[sample], poweroff_at=0.5).report()
    assert (report["seconds_until_whole"], report["whole_within_timeout"]) == (None, False)
    assert (report["errors"], report["seconds_with_errors"], report["first_error_at"]) == (0, 0, None)
