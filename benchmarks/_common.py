"""What both benchmarks print about the machine's load (their numbers are only as quiet as it is)."""

import os


def report_load(load_at_start: float) -> None:
    load1, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = max(load_at_start, load1) > cpus + 0.5
    print(f"1-min load average: {load_at_start:.2f} at start, {load1:.2f} at end ({cpus} CPUs)"
          + ("  -- other work was running: expect noisy numbers" if busy else ""))
    if busy and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("hint: with other processes on the cores, OpenMP's spin-waiting makes torch up to ~30x slower here; "
              "rerun with OMP_WAIT_POLICY=PASSIVE (or --threads 1), see benchmarks/README.md")
