"""The notebook series, its parameters cells, and how to execute it with papermill at full
or CI size.

Full size means each notebook's own defaults (its ``parameters`` cell); CI size injects
the small values below so that the whole series runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from helpers.paths import NOTEBOOKS_DIR

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


def parameters_for(notebook: str, size: str) -> dict[str, Any]:
    """Papermill parameters for ``notebook`` at ``size`` ``"full"`` (none) or ``"ci"``."""
    if size not in ("full", "ci"):
        raise ValueError(f"size must be 'full' or 'ci', got {size!r}")
    if notebook not in CI_PARAMETERS:
        raise ValueError(f"unknown notebook {notebook!r}; the series is {NOTEBOOKS}")
    return {} if size == "full" else dict(CI_PARAMETERS[notebook])


class LocalKernelManager(AsyncKernelManager):
    """A kernel that talks to papermill through local sockets (files beside its connection
    file) instead of loopback TCP ports: nothing else on the machine can connect to it, and
    the kernel has no reason to warn, at every start, that its TCP traffic is unencrypted."""

    transport = "ipc"


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
