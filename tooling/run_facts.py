"""Where and when a run happened: the date, the commit, the machine and the library versions.

One home for the facts that ``make reproduce`` (``results/metrics.json``, key ``run``) and
``make bench`` (``benchmarks/results.json``) record beside their numbers; each caller adds
its own description of the machine and keys of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from helpers.paths import PROJECT_ROOT


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo``'s model name; elsewhere what Python knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """Short commit of the checkout at ``root``, ``-dirty`` if tracked files differ from it;
    ``"unknown"`` without git or outside a repository."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_facts(machine: Any) -> dict[str, Any]:
    """The facts of a run, in this order: ``date`` (UTC, to the minute), ``commit``,
    ``machine`` (the caller's description of it, as given), ``python``, ``tensorflow`` and
    ``keras`` (versions)."""
    import keras
    import tensorflow as tf

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
