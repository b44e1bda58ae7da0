"""How much of the machine the run had: CPU used by processes that are not ours.

The benchmark shares a 2-core machine with whatever else runs on it. For each phase this
reads /proc/stat (all CPU time spent, including steal) and /proc/<pid>/stat of this process
and its descendants (the servers, OPA, wrk once reaped), so foreign = all − ours. A phase
with foreign load above a few percent of a core is flagged in RESULTS.md.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def _busy_and_steal() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / HZ, steal / HZ


def _ours() -> float:
    return tree_seconds(os.getpid())


@dataclass
class Sample:
    wall: float
    busy: float
    steal: float
    ours: float


def sample() -> Sample:
    busy, steal = _busy_and_steal()
    return Sample(time.monotonic(), busy, steal, _ours())


def foreign(start: Sample, end: Sample) -> dict[str, float]:
    wall = max(end.wall - start.wall, 1e-9)
    others = max(0.0, (end.busy - start.busy) - (end.ours - start.ours))
    return {
        "ours_cores": round((end.ours - start.ours) / wall, 2),
        "foreign_cores": round(others / wall, 2),
        "steal_cores": round((end.steal - start.steal) / wall, 2),
    }


def wait_quiet(threshold_cores: float = 0.15, window_s: float = 2.0, max_wait_s: float = 60.0) -> float:
    """Wait (up to max_wait_s) for a window in which others use under threshold_cores; return the last reading."""
    deadline = time.monotonic() + max_wait_s
    while True:
        start = sample()
        time.sleep(window_s)
        load = foreign(start, sample())["foreign_cores"]
        if load <= threshold_cores or time.monotonic() >= deadline:
            return load


def tree_seconds(root: int) -> float:
    """CPU seconds (user + system, reaped children included) of a process and its descendants."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(rest[1])
        cpu[pid] = sum(int(x) for x in rest[11:15]) / HZ
    total = 0.0
    for pid, value in cpu.items():
        p = pid
        while p and p != root:
            p = parents.get(p, 0)
        if p == root:
            total += value
    return total
