"""The notebook series, its parameters cells, and how to execute it with papermill at one
of three sizes.

Full size means each notebook's own defaults (its ``parameters`` cell); CI size injects
the small values below so that the whole series runs in a few minutes on 2 CPU cores;
classroom size sits between them: each notebook in about a third of its full-size time or
less, yet large enough that every effect its text relies on still shows (no notebook
prints its size note, a line starting with :data:`SIZE_NOTE`).

Command line: the whole series at a size, in order, with one artifacts folder, reporting
each notebook's seconds and every size note it printed (``OUT/times.json``)::

    python -m tooling.series --size classroom --out build/series-classroom [--from 04]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from tooling import quiet

#: The course, in reading order. Later notebooks reuse what earlier ones saved.
NOTEBOOKS: tuple[str, ...] = (
    "01_data_and_preprocessing.ipynb",
    "02_training_a_cnn.ipynb",
    "03_fgsm_attack.ipynb",
    "04_adversarial_training.ipynb",
    "05_evaluation.ipynb",
    "06_robustness_evaluation.ipynb",
    "07_certified_robustness.ipynb",
)

#: The notebooks whose saved models a notebook loads: it runs only after them. (Notebook 03
#: shows the FGSM-trained model in its explorer too when notebook 04 has saved it, but does
#: not wait for it.)
NEEDS: dict[str, tuple[str, ...]] = {
    "03_fgsm_attack.ipynb": ("02_training_a_cnn.ipynb",),
    **{
        notebook: ("02_training_a_cnn.ipynb", "04_adversarial_training.ipynb")
        for notebook in NOTEBOOKS[4:]
    },
}
#: The order in which side-by-side runs start notebooks (``make reproduce JOBS=2``): notebook
#: 04 first, as every later notebook waits for its models, then the longest.
PARALLEL_ORDER: tuple[str, ...] = tuple(NOTEBOOKS[i] for i in (3, 0, 1, 2, 5, 6, 4))

_CI_REBUILD = {"REBUILD_N_TRAIN": 2000, "REBUILD_EPOCHS": 1}

#: Small parameters for CI; every key must exist in that notebook's parameters cell.
CI_PARAMETERS: dict[str, dict[str, Any]] = {
    "01_data_and_preprocessing.ipynb": {},
    "02_training_a_cnn.ipynb": {"N_TRAIN": 3000, "EPOCHS": 2},
    "03_fgsm_attack.ipynb": {"N_TEST": 500, **_CI_REBUILD},
    "04_adversarial_training.ipynb": {
        "N_TRAIN": 3000,
        "EPOCHS": 2,
        "FGSM_RS_EPOCHS": 1,
        "PGD_EPOCHS": 1,
        "N_TEST": 1000,
        "TRADES_BETAS": [1.0, 6.0],
        "TRADES_N_TRAIN": 1000,
        "TRADES_EPOCHS": 1,
        "N_ATTACK": 30,
        "AA_APGD_STEPS": 5,
        "AA_TARGETS": 1,
        "AA_QUERIES": 20,
    },
    "05_evaluation.ipynb": {"N_TEST": 500, "N_PGD": 100, "PGD_RESTARTS": 1, **_CI_REBUILD},
    "06_robustness_evaluation.ipynb": {
        "EPSILONS": [0.0, 0.1, 0.2, 0.3],
        "N_CURVE": 100,
        "N_HEADLINE": 200,
        "N_TEST": 1000,
        "N_CHECK": 100,
        "PGD_RESTARTS": 1,
        "AA_APGD_STEPS": 20,
        "AA_TARGETS": 1,
        "AA_QUERIES": 100,
        "TOLERANCE": 0.03,
        "LEAK_EPOCHS": 1,
        "SIDE_N_TRAIN": 2000,
        "SURROGATE_EPOCHS": 1,
        **_CI_REBUILD,
    },
    "07_certified_robustness.ipynb": {
        "N_CERTIFY": 500,
        "N_ATTACK": 50,
        "AA_APGD_STEPS": 10,
        "AA_TARGETS": 1,
        "AA_QUERIES": 50,
        "N_TRAIN": 2000,
        "IBP_EPOCHS": 2,
        **_CI_REBUILD,
    },
}


#: Between CI and full size, for a class (``make assignments SIZE=classroom``): each
#: notebook in about a third of its full-size time or less, with every effect its text
#: describes still visible (measured: the teacher's guide, notebooks/README.md). Notebook
#: 01 has nothing to shrink; the REBUILD_* values (stand-ins for missing models) keep their
#: defaults. Every key must exist in that notebook's parameters cell.
CLASSROOM_PARAMETERS: dict[str, dict[str, Any]] = {
    "01_data_and_preprocessing.ipynb": {},
    "02_training_a_cnn.ipynb": {"N_TRAIN": 30000, "EPOCHS": 10},
    "03_fgsm_attack.ipynb": {"N_TEST": 2000, "N_SCALE": 1000},
    "04_adversarial_training.ipynb": {
        "N_TRAIN": 30000,
        "EPOCHS": 6,
        "FGSM_RS_EPOCHS": 4,
        "PGD_EPOCHS": 4,
        "TRADES_N_TRAIN": 10000,
        "TRADES_EPOCHS": 2,
        "N_ATTACK": 200,
    },
    "05_evaluation.ipynb": {"N_TEST": 2000, "N_PGD": 300},
    "06_robustness_evaluation.ipynb": {
        "N_CURVE": 200,
        "N_HEADLINE": 300,
        "AA_APGD_STEPS": 50,
        "AA_QUERIES": 1000,
        "N_CHECK": 100,
        "SIDE_N_TRAIN": 30000,
    },
    "07_certified_robustness.ipynb": {
        "N_CERTIFY": 2000,
        "N_ATTACK": 100,
        "N_TRAIN": 30000,
        "IBP_EPOCHS": 6,
    },
}

#: The sizes, largest first; each but "full" injects its table of parameters.
SIZES: tuple[str, ...] = ("full", "classroom", "ci")
_SIZE_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {notebook: {} for notebook in NOTEBOOKS},
    "classroom": CLASSROOM_PARAMETERS,
    "ci": CI_PARAMETERS,
}


def parameters_for(notebook: str, size: str) -> dict[str, Any]:
    """Papermill parameters for ``notebook`` at ``size``: ``"full"`` (none, the notebook's
    own), ``"classroom"`` or ``"ci"``."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if notebook not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {notebook!r}; the series is {NOTEBOOKS}")
    return dict(_SIZE_PARAMETERS[size][notebook])


class LocalKernelManager(AsyncKernelManager):
    """A kernel that talks to papermill through local sockets (files beside its connection
    file) instead of loopback TCP ports: nothing else on the machine can connect to it, and
    the kernel has no reason to warn, at every start, that its TCP traffic is unencrypted.
    What C++ code writes to the kernel's standard error (TensorFlow's start-up notices at
    its import, in every notebook's setup cell) is not copied into the notebook's outputs
    (``capture_fd_output`` off): it reaches our standard error, without those notices
    (:mod:`tooling.quiet`); every other line comes through. Python's own output and
    warnings stay in the notebook."""

    transport = "ipc"

    @default("ip")
    def _ip_default(self) -> str:
        """Socket files of this kernel's own (jupyter_client's default, ``kernel-ipc`` in the
        working folder, is shared by every kernel started before its connection file is
        named: two notebooks run side by side would read each other's messages)."""
        return os.path.join(tempfile.gettempdir(), f"mnist-ad-kernel-{uuid.uuid4().hex}-ipc")

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        kw["stderr"] = subprocess.PIPE
        kernel_cmd = [*kernel_cmd, "--IPKernelApp.capture_fd_output=False"]
        await super()._async_launch_kernel(kernel_cmd, **kw)
        quiet.forward_in_background(self.provisioner.process.stderr, sys.stderr.fileno())


def run_notebook(
    notebook: str, output_dir: Path, size: str = "ci", log_output: bool = False
) -> tuple[Path, float]:
    """Execute one notebook in a fresh ``python3`` kernel; return (executed copy, seconds).

    Raises papermill's ``PapermillExecutionError`` (naming the failing cell) on any error.
    """
    import papermill

    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / notebook
    start = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOKS_DIR / notebook),
        str(output),
        parameters=parameters_for(notebook, size),
        kernel_name="python3",
        cwd=str(NOTEBOOKS_DIR),
        log_output=log_output,
        progress_bar=False,
        kernel_manager_class=LocalKernelManager,
    )
    return output, time.perf_counter() - start


def cell_text(cell: Mapping[str, Any]) -> str:
    """A notebook cell's source as one string (nbformat stores a string or a list of lines)."""
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def parameters_cell(nb: Mapping[str, Any]) -> dict[str, Any] | None:
    """The code cell tagged ``parameters`` (papermill's convention), or None."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell["metadata"].get("tags", []):
            return cell
    return None


def parameter_statements(source: str) -> dict[str, ast.Assign]:
    """The assignments of a parameters cell's ``source``, by name, in the cell's order."""
    return {
        target.id: node
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The parameters cell of the notebook at ``path``, parsed: ``{name: value}`` in the
    cell's order (values are literals, as papermill needs them).

    Raises ``ValueError`` if the notebook has no cell tagged ``parameters``.
    """
    cell = parameters_cell(json.loads(Path(path).read_text()))
    if cell is None:
        raise ValueError(f"{path}: no cell tagged 'parameters'")
    return {
        name: ast.literal_eval(node.value)
        for name, node in parameter_statements(cell_text(cell)).items()
    }


# --------------------------------------------------------------------------- size notes

#: How a notebook's size-note cell begins the line it prints when the effect its text
#: describes did not show at the size it ran at (notebooks 03, 04, 06, 07).
SIZE_NOTE = "Note: at this size"


def output_text(output: Mapping[str, Any]) -> str:
    """What a code cell's output shows as text: a stream's text, else its ``text/plain``."""
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        text = output.get("data", {}).get("text/plain", "")
    return text if isinstance(text, str) else "".join(text)


def size_notes(notebook_json: Mapping[str, Any]) -> list[str]:
    """The size notes an executed notebook printed, in order: each output line that starts
    with :data:`SIZE_NOTE` (stripped). Sources are not read: a size-note cell that printed
    nothing means the effect showed."""
    return [
        line.strip()
        for cell in notebook_json.get("cells", [])
        for output in cell.get("outputs", [])
        for line in output_text(output).splitlines()
        if line.strip().startswith(SIZE_NOTE)
    ]


# --------------------------------------------------------------------------- the series


def _first_index(start_at: str | None) -> int:
    """The position in :data:`NOTEBOOKS` of the notebook named (or number-prefixed) by
    ``start_at``; 0 for ``None``."""
    if start_at is None:
        return 0
    matches = [i for i, nb in enumerate(NOTEBOOKS) if nb.startswith(start_at)]
    if len(matches) != 1:
        raise ValueError(f"--from {start_at!r} must name one notebook of {NOTEBOOKS}")
    return matches[0]


def _entry(path: Path, size: str, seconds: float, *, kept: bool) -> dict[str, Any]:
    """``times.json``'s record of one executed notebook."""
    entry = {
        "seconds": round(seconds, 1),
        "parameters": parameters_for(path.name, size),
        "size_notes": size_notes(json.loads(path.read_text())),
    }
    return {**entry, "kept_from_earlier_run": True} if kept else entry


@contextmanager
def artifacts_at(folder: Path) -> Iterator[None]:
    """``MNIST_AD_ARTIFACTS`` set to ``folder`` for the block (the kernels started in it
    inherit it), then as it was."""
    saved = os.environ.get("MNIST_AD_ARTIFACTS")
    os.environ["MNIST_AD_ARTIFACTS"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MNIST_AD_ARTIFACTS"]
        else:
            os.environ["MNIST_AD_ARTIFACTS"] = saved


def run_series(size: str, out: Path, start_at: str | None = None) -> dict[str, Any]:
    """Execute the series at ``size``, one notebook after another in the course's order, in
    fresh kernels that share the artifacts folder ``out/artifacts`` (``MNIST_AD_ARTIFACTS``
    for this call only); executed copies go to ``out/executed``. Return the record written
    to ``out/times.json`` after every notebook: the run's facts, ``size``, per notebook its
    ``seconds``, ``parameters`` and ``size_notes``, ``total_seconds``, and ``complete``.

    Every model that a notebook of the run makes is deleted first, so that no notebook
    loads a copy left by an earlier run. ``start_at`` (e.g. ``"04"``) re-runs from that
    notebook on and keeps the earlier ones' executed copies (refused unless they finished
    with the same parameters), reading their seconds and size notes from those copies.
    A failing notebook raises papermill's error; the record keeps what finished.
    """
    from helpers.paths import write_atomically
    from tooling.reproduce import executed_seconds, forget_models_made_by
    from tooling.run_facts import cpu_model, run_facts, usable_cores

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    first = _first_index(start_at)
    out = Path(out).resolve()
    executed, times = out / "executed", out / "times.json"
    record: dict[str, Any] = {
        **run_facts(f"{cpu_model()}, {usable_cores()} cores"),
        "size": size,
        "notebooks": {},
        "total_seconds": 0.0,
        "complete": False,
    }
    notebooks = record["notebooks"]

    def save() -> None:
        record["total_seconds"] = round(sum(e["seconds"] for e in notebooks.values()), 1)
        record["complete"] = len(notebooks) == len(NOTEBOOKS)
        with write_atomically(times) as scratch:
            scratch.write_text(json.dumps(record, indent=2) + "\n")

    with artifacts_at(out / "artifacts"):
        for notebook in NOTEBOOKS[:first]:
            path = executed / notebook
            seconds = executed_seconds(path, parameters_for(notebook, size))
            notebooks[notebook] = _entry(path, size, seconds, kept=True)
            print(f"== {notebook}: kept from its earlier run ({seconds:.0f} s)", flush=True)
        for notebook in NOTEBOOKS[first:]:
            forget_models_made_by(notebook)
        for notebook in NOTEBOOKS[first:]:
            print(f"== {notebook} ({size} size) started {time.strftime('%H:%M')}", flush=True)
            path, seconds = run_notebook(notebook, executed, size=size)
            notebooks[notebook] = _entry(path, size, seconds, kept=False)
            save()
            notes = notebooks[notebook]["size_notes"]
            print(f"   done in {seconds / 60:.1f} min, {len(notes)} size note(s)", flush=True)
            for note in notes:
                print(f"   {note}", flush=True)
    save()
    return record


def summary(record: Mapping[str, Any]) -> str:
    """A run's record as a table: per notebook its seconds and its size notes."""
    rows = [f"{'notebook':34s} {'seconds':>8s} {'min':>5s}  size notes"]
    for notebook, entry in record["notebooks"].items():
        notes = "; ".join(entry["size_notes"]) or "none"
        rows.append(f"{notebook:34s} {entry['seconds']:8.1f} {entry['seconds'] / 60:5.1f}  {notes}")
    total = record["total_seconds"]
    rows.append(f"{'total':34s} {total:8.1f} {total / 60:5.1f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tooling.series",
        description="Run notebooks 01-07 at a size; report seconds and size notes per notebook.",
    )
    parser.add_argument("--size", choices=SIZES, default="classroom")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for executed/, artifacts/ and times.json (default: build/series-SIZE)",
    )
    parser.add_argument(
        "--from",
        dest="start_at",
        metavar="NOTEBOOK",
        help="re-run from this notebook (e.g. 04), keeping the earlier executed notebooks",
    )
    args = parser.parse_args(argv)
    out = args.out or PROJECT_ROOT / "build" / f"series-{args.size}"
    from papermill.exceptions import PapermillExecutionError

    try:
        record = run_series(args.size, out, args.start_at)
    except (ValueError, PapermillExecutionError) as err:
        print(f"error: {err}", file=sys.stderr)
        print(f"{Path(out) / 'times.json'} holds the notebooks that finished", file=sys.stderr)
        return 1
    print("\n" + summary(record))
    print(f"\nwrote {Path(out) / 'times.json'}")
    return 0


if __name__ == "__main__":
    from tooling.quiet import quiet_stderr

    quiet_stderr()  # before TensorFlow is imported: its start-up notices are noise here
    sys.exit(main())
