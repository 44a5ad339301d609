"""What one student's kernel needs: peak memory and CPU time of a course notebook's run.

Runs each notebook top to bottom in a fresh kernel (nbclient, kernel ``python3`` of this
environment), at the size asked for (the CI or classroom parameters of ``tooling.series``
written into the parameters cell, as ``tooling.classroom`` releases them; ``full``: the
course's own), and reports for the kernel process

- ``peak_rss_mib``: its peak resident memory, the kernel's ``VmHWM`` in ``/proc`` (Linux);
- ``cpu_seconds``: its CPU time, user + system, all threads (TensorFlow uses every core);
- ``wall_seconds``: how long the run took (depends on what else the machine is doing).

Models and figures go to a scratch folder (``--artifacts``, default
``build/hub-measure/artifacts``), never to ``artifacts/``. Usage::

    python -m hub.measure notebooks/01_data_and_preprocessing.ipynb --size ci
    python -m hub.measure notebooks/0[12]*.ipynb --size full --out build/hub-measure/full.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
from nbclient import NotebookClient

from helpers.paths import PROJECT_ROOT
from tooling.classroom import set_parameters
from tooling.series import SIZES, parameters_for

SCRATCH = PROJECT_ROOT / "build" / "hub-measure"


def peak_rss_mib(pid: int) -> float:
    """The peak resident set size of a live process (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far, all its threads."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure(notebook: Path, size: str, workdir: Path) -> dict[str, Any]:
    """Run ``notebook`` at ``size`` in a fresh kernel started in ``workdir``; return what
    its kernel used (see the module docstring)."""
    nb = nbformat.read(notebook, as_version=4)
    set_parameters(nb, parameters_for(notebook.name, size), label=f"size {size}")
    client = NotebookClient(
        nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    started = time.monotonic()
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        used = {
            "notebook": notebook.name,
            "size": size,
            "peak_rss_mib": round(peak_rss_mib(pid), 1),
            "cpu_seconds": round(cpu_seconds(pid), 1),
            "wall_seconds": round(time.monotonic() - started, 1),
        }
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.measure", description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--size", choices=SIZES, default="ci")
    parser.add_argument("--artifacts", type=Path, default=SCRATCH / "artifacts")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    os.environ["MNIST_AD_ARTIFACTS"] = str(args.artifacts.resolve())  # the kernels inherit it
    workdir = SCRATCH / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for notebook in args.notebooks:
        rows.append(measure(notebook.resolve(), args.size, workdir))
        print(json.dumps(rows[-1]), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
