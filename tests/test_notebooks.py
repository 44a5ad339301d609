"""Execute every notebook in order, in a fresh kernel, at CI size (papermill).

The executed copies land in build/ci/executed/, where `make nbval` re-runs them and
compares the outputs of cells marked NBVAL_CHECK_OUTPUT.
"""

import json

import pytest

from helpers.paths import PROJECT_ROOT
from tooling.series import CI_PARAMETERS, NOTEBOOKS, run_notebook

EXECUTED = PROJECT_ROOT / "build" / "ci" / "executed"
pytestmark = pytest.mark.notebooks


@pytest.fixture(autouse=True)
def _shared_artifacts(monkeypatch):
    """Notebooks hand models to each other: one artifacts folder for the whole series."""
    monkeypatch.setenv("MNIST_AD_ARTIFACTS", str(PROJECT_ROOT / "build" / "ci" / "artifacts"))


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_at_ci_size(notebook):
    output, seconds = run_notebook(notebook, EXECUTED, size="ci")
    nb = json.loads(output.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == (1 if CI_PARAMETERS[notebook] else 0), "CI parameters not injected"
    errors = [
        o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    print(f"{notebook}: {seconds:.0f} s")


def test_series_results_assemble(monkeypatch):
    """After the series, the metrics that `make reproduce` collects are complete and sane."""
    from helpers import registry
    from tooling.reproduce import collect_metrics, results_table, run_info

    metrics = collect_metrics(run_info("ci"), {})
    for name in registry.COURSE_MODELS:
        m = metrics["models"][name]
        values = [m["clean"], m["fgsm"]["0.25"], m["pgd"]["0.25"], m["robust"]["0.25"]]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert m["robust"]["0.25"] <= min(m["pgd"]["0.25"], m["clean"])
        assert m["train_seconds"] > 0
    assert all(check["passed"] for check in metrics["evaluation"]["checks"])
    assert "Not a full-size run" in results_table(metrics)


def test_a_notebook_runs_alone_and_rebuilds_missing_models(tmp_path, monkeypatch):
    """With no saved models, notebook 05 trains small stand-ins itself and says so."""
    monkeypatch.setenv("MNIST_AD_ARTIFACTS", str(tmp_path / "artifacts"))
    output, _ = run_notebook("05_evaluation.ipynb", tmp_path / "executed", size="ci")
    text = "".join(
        "".join(o.get("text", ""))
        for c in json.loads(output.read_text())["cells"]
        for o in c.get("outputs", [])
    )
    assert text.count("Note: no saved model") == 2
    assert (tmp_path / "artifacts" / "models" / "fgsm_at.keras").exists()
