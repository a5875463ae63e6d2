"""What the benchmarks share: timing a subprocess or a call on a device, and what they print about the
machine's load (their numbers are only as quiet as it is)."""

import os
import subprocess
import time
from typing import Any, Callable


def timed_run(cmd: list[str], **env: str) -> float:
    """Wall seconds of one subprocess (passive OpenMP waits; ``env`` added to the environment)."""
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **env})
    return time.perf_counter() - started


def synced_seconds(fn: Callable[[], Any], device: Any) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` and what it returned; on CUDA its queued kernels are waited for before
    and after (a torch device)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, out


def report_load(load_at_start: float) -> None:
    load1, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = max(load_at_start, load1) > cpus + 0.5
    print(f"1-min load average: {load_at_start:.2f} at start, {load1:.2f} at end ({cpus} CPUs)"
          + ("  -- other work was running: expect noisy numbers" if busy else ""))
    if busy and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("hint: with other processes on the cores, OpenMP's spin-waiting makes torch up to ~30x slower here; "
              "rerun with OMP_WAIT_POLICY=PASSIVE (or --threads 1), see benchmarks/README.md")
