"""Print a config's whole job graph in a canonical order, to diff before and after a refactor.

Every job of ``snakemake -n -p --forceall`` is one block: its rule, wildcards, inputs,
outputs, log, resources and shell command (the params are inside the command). Job ids,
dates and reasons are dropped and file lists sorted, so two snapshots differ only where
a job, a file, a resource or a command differs.

    python ci/dag_snapshot.py --configfile config/smoke.yaml > before.txt
    # ... change the workflow ...
    python ci/dag_snapshot.py --configfile config/smoke.yaml > after.txt
    diff before.txt after.txt   # empty: the refactor changed no job

Extra arguments go to snakemake (``--config``, ``--workflow-profile``).
"""

from __future__ import annotations

import re
import subprocess
import sys

_DROP = ("jobid:", "reason:")
_LISTS = ("input:", "output:", "resources:")


def job_blocks(text: str) -> list[str]:
    """The dry run's jobs, one canonical text block each, sorted."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if re.match(r"^(local)?rule \w+:$", line):
            blocks.append([line])
        elif blocks and line.startswith("    ") and not line.strip().startswith(_DROP):
            key, _, value = line.strip().partition(" ")
            if key in _LISTS:
                value = ", ".join(sorted(v.strip() for v in value.split(",")))
            blocks[-1].append(f"    {key} {value}")
        elif blocks and line.startswith("Shell command:"):
            blocks[-1].append(line)
    return sorted("\n".join(b) for b in blocks)


def main(argv: list[str]) -> int:
    run = subprocess.run(
        ["snakemake", "-n", "-p", "--forceall", "--quiet", "host", *argv],
        capture_output=True,
        text=True,
    )
    if run.returncode:
        sys.stderr.write(run.stdout + run.stderr)
        return run.returncode
    blocks = job_blocks(run.stdout + run.stderr)
    if not blocks:
        sys.stderr.write("no job found in the dry run's output\n" + run.stdout + run.stderr)
        return 1
    print("\n\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
