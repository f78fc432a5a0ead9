"""Shared benchmark plumbing: the reference nnU-Net in its own venv, timed runs with whole-tree peak RSS.

nnunetv2 is never a dependency of autounet: it is installed into ``benchmarks/_work/nnunet_venv`` with
torch pinned to the version already installed here (so no CUDA wheels are pulled in).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# The autounet CLI makes idle OpenMP threads sleep (see autounet/cli/__init__.py); the benchmarks that run
# autounet in-process do the same here, before torch is imported. nnU-Net's runs inherit it, so both tools are
# measured alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

WORK = Path(__file__).resolve().parent / "_work"
NNUNET_VENV = WORK / "nnunet_venv"
TORCH_PIN = "torch==2.13.0"
NNUNET_PIN = "nnunetv2==2.8.1"


def ensure_nnunet_venv() -> Path:
    """Create the reference venv if missing; return its bin folder."""
    bin_dir = NNUNET_VENV / "bin"
    if (bin_dir / "nnUNetv2_plan_and_preprocess").exists():
        return bin_dir
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"installing {NNUNET_PIN} into {NNUNET_VENV} (once) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(NNUNET_VENV)], check=True)
    constraints = WORK / "constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")
    pip = [str(bin_dir / "pip"), "install", "-q"]
    subprocess.run([*pip, TORCH_PIN], check=True)
    subprocess.run([*pip, NNUNET_PIN, "-c", str(constraints)], check=True)
    return bin_dir


@dataclass
class RunResult:
    """Wall time and peak resident memory of a command and all its descendants."""

    seconds: float
    peak_rss_mib: float
    returncode: int


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    stack, found = [pid], []
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def timed_run(command: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> RunResult:
    """Run ``command``; sample the summed RSS of its process tree every 50 ms (Linux /proc)."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    start = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_mib(_descendants(process.pid)))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = process.wait()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if log:
        out.close()
    return RunResult(seconds, peak, returncode)


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Print rows as an aligned text table (first row is the header)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * w for w in widths))
