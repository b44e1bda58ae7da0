"""Run wrk (Debian's package, a separate process) with load.lua and read its JSON summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "load.lua"


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (Debian's package)")
    return path


def wrk_version() -> str:
    out = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].strip()


@dataclass
class WrkResult:
    raw: dict[str, Any]

    @property
    def requests(self) -> int:
        return int(self.raw["requests"])

    @property
    def seconds(self) -> float:
        return self.raw["duration_us"] / 1e6

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def ms(self, percentile: float | str) -> float:
        return self.raw["latency_us"]["percentiles"][str(percentile)] / 1000

    @property
    def mean_ms(self) -> float:
        return float(self.raw["latency_us"]["mean"]) / 1000

    @property
    def statuses(self) -> dict[str, int]:
        return self.raw["statuses"]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "latency_ms": {
                "mean": round(self.mean_ms, 3),
                **{f"p{p}": round(self.ms(p), 3) for p in ("50", "75", "90", "99", "99.9")},
                "max": round(self.raw["latency_us"]["max"] / 1000, 3),
            },
            "statuses": self.statuses,
            "errors": self.raw["errors"],
            **({"schedule": self.raw["schedule"]} if self.raw["schedule"]["slots"] else {}),
        }


def run(
    url: str,
    body_file: Path,
    tokens_file: Path,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    rate: float | None = None,
    timeout_s: float = 30.0,
) -> WrkResult:
    """wrk -t threads -c connections -d seconds; with `rate`, an approximately constant arrival rate."""
    cmd = [
        wrk_binary(),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        f"{timeout_s:g}s",
        "-s",
        str(LUA),
        url,
        "--",
        str(body_file),
        str(tokens_file),
    ]
    if rate:
        cmd.append(f"{rate / threads:.6f}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return WrkResult(json.loads(line[len("WRKJSON ") :]))
    raise RuntimeError(f"wrk printed no summary (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
