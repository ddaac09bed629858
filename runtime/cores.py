"""How many cores this process may use: what inference and encoding threads are sized by."""

from __future__ import annotations

import os


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads share a core's FPUs)."""
    try:
        cores, current = set(), {}
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("processor", "physical id", "core id"):
                    current[key] = value
                if not line.strip() and current:
                    cores.add((current.get("physical id"), current.get("core id", current.get("processor"))))
                    current = {}
        available = len(os.sched_getaffinity(0))
        return max(1, min(len(cores) or available, available))
    except (OSError, AttributeError):
        return max(1, os.cpu_count() or 1)
