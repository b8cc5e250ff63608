"""Reading what ansible-playbook printed."""

from __future__ import annotations

import re

# One host's line of the PLAY RECAP: "lab-master   : ok=61   changed=26   unreachable=0 ..."
RECAP_LINE = re.compile(r"^(\S+)\s*:\s*((?:\w+=\d+[ \t]*)+)$", re.MULTILINE)


def play_recap(output: str) -> dict[str, dict[str, int]]:
    """host -> counts (ok, changed, unreachable, failed, ...) from an ansible-playbook run's PLAY RECAP."""
    if "PLAY RECAP" not in output:
        return {}
    section = output.rpartition("PLAY RECAP")[2]
    return {
        host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
        for host, counts in RECAP_LINE.findall(section)
    }
