"""What `make bench-rollout` writes and prints: CSVs, the plot, the summary."""

from __future__ import annotations

import csv
from pathlib import Path

from lab.bench.prober import Sample, as_rows


def write_csv(path: Path, samples: list[Sample], origin: float) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["scheduled", "sent", "latency", "kind", "status", "message", "detail"]
        )
        writer.writeheader()
        writer.writerows(as_rows(samples, origin))


def plot(reports: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(reports), 1, figsize=(12, 2.8 * len(reports)), squeeze=False)
    for axis, report in zip(axes[:, 0], reports, strict=True):
        rows = report["per_second"]
        seconds = [r["second"] for r in rows]  # type: ignore[index]
        old = [r["old"] for r in rows]  # type: ignore[index]
        new = [r["new"] for r in rows]  # type: ignore[index]
        errors = [r["errors"] for r in rows]  # type: ignore[index]
        axis.bar(seconds, old, width=1.0, align="edge", color="#4c72b0", label="old message")
        axis.bar(seconds, new, width=1.0, align="edge", bottom=old, color="#dd8452", label="new message")
        bottoms = [o + n for o, n in zip(old, new, strict=True)]
        axis.bar(seconds, errors, width=1.0, align="edge", bottom=bottoms, color="#c44e52", label="errors")
        # Errors are few against 100 requests/s: mark each second that had any above the bars.
        top = max([o + n + e for o, n, e in zip(old, new, errors, strict=True)], default=100)
        for second, count in zip(seconds, errors, strict=True):
            if count:
                axis.plot(second + 0.5, top * 1.08, "v", color="#c44e52", markersize=8)
                axis.annotate(str(count), (second + 0.5, top * 1.13), ha="center", fontsize=7, color="#c44e52")
        axis.set_ylim(0, top * 1.22)
        axis.axvline(0, color="black", linestyle="--", linewidth=1, label="upgrade starts")
        if report["rollout_seconds"] is not None:
            axis.axvline(report["rollout_seconds"], color="green", linestyle="--", linewidth=1, label="old pods gone")
        axis.axvline(report["trigger_seconds"], color="grey", linestyle=":", linewidth=1, label="command returns")
        kinds = ", ".join(f"{k} {v}" for k, v in report["error_kinds"].items()) or "none"  # type: ignore[union-attr]
        if report["expected_trigger_to_succeed"]:
            outcome = (
                f"rollout {report['rollout_seconds']} s, both messages served for {report['mixed_message_seconds']} s"
            )
        else:
            outcome = f"the command failed after {report['trigger_seconds']} s and Helm rolled back"
        phases = report.get("phases") or {}
        if phases.get("floor"):
            outcome += (
                f"; from the Deployment change {phases['rollout_from_deployment_change']} s"
                f" = {phases['rollout_vs_floor']} x the floor {phases['floor']} s"
            )
        axis.set_title(
            f"{report['variant']}: {report['errors']} errors / {report['requests']} requests ({kinds}); {outcome}",
            fontsize=9,
        )
        axis.set_ylabel("requests/s")
        axis.legend(fontsize=7, loc="lower left", ncol=6)
    axes[-1, 0].set_xlabel("seconds since the upgrade started")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_summary(reports: list[dict[str, object]]) -> None:
    print(f"{'variant':<22} {'requests':>8} {'errors':>6} {'ratio':>9}  {'rollout s':>9} {'mixed s':>7}  kinds")
    for r in reports:
        rollout = "-" if r["rollout_seconds"] is None else f"{r['rollout_seconds']:.1f}"
        kinds = ", ".join(f"{k}={v}" for k, v in r["error_kinds"].items()) or "-"  # type: ignore[union-attr]
        print(
            f"{r['variant']:<22} {r['requests']:>8} {r['errors']:>6} {r['error_ratio']:>9.5f}  "
            f"{rollout:>9} {r['mixed_message_seconds']:>7.1f}  {kinds}"
        )
    print_phases(reports)
    by_configuration: dict[str, list[dict[str, object]]] = {}
    for r in reports:
        if r["expected_trigger_to_succeed"]:
            by_configuration.setdefault(str(r["variant"]).split("/")[0], []).append(r)
    ratios = []
    for name, rolled in by_configuration.items():
        requests, errors = sum(r["requests"] for r in rolled), sum(r["errors"] for r in rolled)  # type: ignore[misc]
        ratios.append(f"{name} {errors}/{requests} = {errors / requests:.5f}")
    if ratios:
        print("error ratio: " + ", ".join(ratios))
    times = {
        name: [r["rollout_seconds"] for r in rolled if r["rollout_seconds"] is not None]
        for name, rolled in by_configuration.items()
    }
    if times.get("project") and times.get("baseline"):
        project, baseline = (sum(times[n]) / len(times[n]) for n in ("project", "baseline"))
        print(
            f"rollout, mean of the variants: project {project:.1f} s, baseline {baseline:.1f} s,"
            f" ratio {project / baseline:.2f}"
        )


# (report key, what it means) of the per-phase breakdown, in the order they happen
PHASES = (
    ("deployment_changed_at", "Deployment changed (the command's work before it)"),
    ("new_pod_created_to_running", "new pod created -> its container runs"),
    ("new_pod_running_to_ready", "container runs -> ready"),
    ("last_new_pod_ready_at", "last new pod ready at"),
    ("first_old_pod_terminating_at", "first old pod terminating at"),
    ("old_pod_terminating_to_gone", "old pod terminating -> gone (preStop, drain, cleanup)"),
    ("old_pod_terminating_to_exited", "  of it: -> reported exited (preStop, drain, sandbox stop)"),
    ("old_pod_exited_to_gone", "  of it: reported exited -> gone (volumes, deletion)"),
    ("old_pods_gone_at", "old pods gone at"),
    ("command_returned_at", "the command returned at"),
    ("endpoint_propagation", "endpoint propagation (deletion -> no node routes to it)"),
    ("longest_request", "longest request (drain)"),
    ("floor", "floor: created->ready + propagation + drain"),
    ("rollout_from_deployment_change", "rollout from the Deployment change"),
    ("rollout_vs_floor", "rollout / floor"),
)


def print_phases(reports: list[dict[str, object]]) -> None:
    """Seconds per phase, one column per variant that rolled (times after the command started)."""
    rolled = [r for r in reports if r.get("phases")]
    if not rolled:
        return
    print(f"\n{'phase (s)':<58}" + "".join(f"{r['variant']:>20}" for r in rolled))
    for key, meaning in PHASES:
        values = [r["phases"].get(key) for r in rolled]  # type: ignore[union-attr]
        print(f"{meaning:<58}" + "".join(f"{'-' if v is None else v:>20}" for v in values))
