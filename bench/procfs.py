"""What /proc says about processes, for the benchmarks and the tests' process handling."""

from __future__ import annotations

import os


def children(pid: int) -> list[int]:
    """The direct children of a process (a gunicorn master's workers, OPA under replay), from /proc."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(child) for child in fh.read().split()]
        except OSError:
            continue
    return sorted(set(out))
