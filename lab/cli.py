"""`python -m lab COMMAND`: the CLI behind the make targets."""

from __future__ import annotations

import argparse
import importlib
import sys

from lab.run import StepFailed, log

# command -> (module:function, help). Modules are imported only when their
# command runs, so `setup` works before the virtualenv exists.
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("lab.bootstrap:setup_command", "install Debian packages, the virtualenv and pinned tools"),
    "up": ("lab.nodes.commands:up_command", "boot the lab nodes and write inventory/lab/hosts.yml"),
    "down": ("lab.nodes.commands:down_command", "stop and remove the lab nodes (caches are kept)"),
    "status": ("lab.nodes.commands:status_command", "show the lab nodes"),
    "ssh": ("lab.nodes.commands:ssh_command", "open a shell on a lab node"),
    "reboot": ("lab.nodes.commands:reboot_command", "reboot a lab node"),
    "clean": ("lab.nodes.commands:clean_command", "remove the lab and every cache"),
    "mirror": ("lab.mirror.commands:mirror_command", "build the offline package and image mirror"),
    "image": ("lab.mirror.app_image:image_command", "build the app image with podman"),
    "bench-rollout": ("lab.bench.commands:bench_rollout_command", "rolling update under load, writes reports/"),
    "conformance": ("lab.conformance.runner:conformance_command", "Kubernetes' [Conformance] suite on the lab cluster"),
    "demo": ("lab.demo:demo_command", "the whole mission on the local lab"),
    "report": ("lab.report:report_command", "render reports/*.json into docs/measured.md"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command")
    options = parser.parse_args(argv)
    target, _ = COMMANDS[options.command]
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        return int(function(options.args) or 0)
    except StepFailed as error:
        log(f"FAILED: {error}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
