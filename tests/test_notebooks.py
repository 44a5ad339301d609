"""Execute every notebook in order, in a fresh kernel, at CI size (papermill).

The executed copies land in build/ci/executed/, where `make nbval` re-runs them and
compares the outputs of cells marked NBVAL_CHECK_OUTPUT.
"""

import json

import pytest

from helpers.paths import PROJECT_ROOT
from tooling.series import CI_PARAMETERS, NOTEBOOKS, run_notebook

EXECUTED = PROJECT_ROOT / "build" / "ci" / "executed"
ARTIFACTS = PROJECT_ROOT / "build" / "ci" / "artifacts"
pytestmark = pytest.mark.notebooks
#: Notebooks run two at a time, each once the notebooks whose models it loads are done
#: (``tooling.series.NEEDS``), each kernel on one thread: at CI size much of a notebook's
#: time is its kernel's start, imports and Python's own work, which two kernels overlap.
JOBS = 2
#: TensorFlow's threads per kernel, whatever the machine's cores: the sums inside a layer
#: are split by thread, so the thread count changes the last digits of a training run.
#: ``make nbval`` re-runs these executions with the same setting (``KERNEL_THREADS`` in
#: the Makefile) and compares their outputs.
KERNEL_THREADS = 1


@pytest.fixture(autouse=True)
def _shared_artifacts(monkeypatch):
    """Notebooks hand models to each other: one artifacts folder for the whole series."""
    monkeypatch.setenv("MNIST_AD_ARTIFACTS", str(ARTIFACTS))


@pytest.fixture(scope="module")
def series(request) -> dict[str, object]:
    """Run the notebooks this session selected (all of them for ``make notebooks``), JOBS at
    a time; ``{notebook: seconds}``, or ``{"failure": exception}`` if one failed (the
    others that had started still finish, their executed copies are checked one by one)."""
    from tooling.reproduce import _run_side_by_side, forget_models_made_by

    selected = [
        item.callspec.params["notebook"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_notebook_runs_at_ci_size"
    ]
    todo = [nb for nb in NOTEBOOKS if nb in selected]
    with pytest.MonkeyPatch.context() as env:  # the kernels inherit it; undone afterwards
        env.setenv("MNIST_AD_ARTIFACTS", str(ARTIFACTS))
        env.setenv("TF_NUM_INTRAOP_THREADS", str(KERNEL_THREADS))
        try:
            for notebook in todo:
                (EXECUTED / notebook).unlink(missing_ok=True)  # no stale copy passes for a run
                forget_models_made_by(notebook)
            done = set(NOTEBOOKS) - set(todo)  # not selected: their models, if any, are used
            return dict(_run_side_by_side(todo, done, "ci", EXECUTED, JOBS))
        except Exception as failure:  # each notebook's test reports on its own copy
            return {"failure": failure}


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_at_ci_size(notebook, series):
    output = EXECUTED / notebook
    if not output.exists():
        pytest.fail(f"{notebook} did not run: {series.get('failure')!r}")
    nb = json.loads(output.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == (1 if CI_PARAMETERS[notebook] else 0), "CI parameters not injected"
    errors = [
        o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors, f"{notebook} failed: {series.get('failure')!r}"
    print(f"{notebook}: {series.get(notebook, 0):.0f} s")


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
