import json

import pytest

from helpers.paths import RESULTS_DIR
from tooling import reproduce


def _model(clean, fgsm, pgd, aa, robust, seconds, at_03=(0.1, 0.05, 0.04, 0.03)):
    """A model's entry in metrics.json: ``at_03`` = (FGSM, PGD, AutoAttack, robust) at 0.3."""
    at = {"0.25": (fgsm, pgd, aa, robust), "0.3": at_03}
    return {
        "clean": clean,
        **{
            attack: {key: values[i] for key, values in at.items()}
            for i, attack in enumerate(("fgsm", "pgd", "autoattack", "robust"))
        },
        "autoattack_seconds": {"0.25": 60, "0.3": 30},
        "train_seconds": seconds,
        "epochs": 12,
    }


SAMPLE = {
    "run": {
        "date": "2026-01-01 00:00 UTC",
        "machine": "test CPU, 2 cores",
        "commit": "abc",
        "seed": 0,
        "tensorflow": "2.21.0",
        "full_size": True,
    },
    "evaluation": {
        "n_test": 10000,
        "n_headline": 2000,
        "eps": 0.25,
        "headline_eps": [0.25, 0.3],
        "pgd": {"steps": 40, "rel_step": 0.04, "restarts": 5},
        "autoattack": {"apgd_steps": 100, "targets": 3, "queries": 1000, "n_images": 2000},
        "checks": [{"passed": True}, {"passed": True}, {"passed": False}],
    },
    "published_at_0.3": [
        {"model": "Madry et al. 2018", "clean": 0.9853, "autoattack": 0.885, "trained_on": "GPU"}
    ],
    "models": {
        "standard": _model(0.9921, 0.2, 0.0, 0.0, 0.0, 300),
        "fgsm_at": _model(0.99, 0.97, 0.5, 0.46, 0.45, 600),
        "pgd_at": _model(0.986, 0.95, 0.92, 0.916, 0.915, 900, at_03=(0.9, 0.7, 0.4, 0.39)),
    },
}


def test_table_puts_reference_beside_measured():
    table = reproduce.results_table(SAMPLE)
    lines = table.splitlines()
    assert lines[0].startswith(
        "| model | clean | FGSM ε=0.25 | PGD-40 ×5 ε=0.25 | AutoAttack ε=0.25 | robust ε=0.25 |"
    )
    assert "| reference: standard CNN | 99.2% | 72.2% |" in table
    assert (
        "| **ours: standard CNN** | 99.2% | 20.0% | 0.0% ±0.2 | 0.0% ±0.2 | 0.0% ±0.2 | – "
        "| 5.0 min (12 epochs) |" in table
    )  # PGD, AutoAttack and robust on the 2,000 headline images, with their 95% intervals
    assert (
        "| **ours: FGSM-trained CNN** | 99.0% | 97.0% | 50.0% ±2.2 | 46.0% ±2.2 | 45.0% ±2.2 |"
        in table
    )
    pgd_row = (
        "| **ours: PGD-trained CNN** | 98.6% | 95.0% | 92.0% ±1.3 | 91.6% ±1.3 | 91.5% ±1.3 | – "
        "| 15.0 min"
    )
    assert pgd_row in table and "± its 95% interval (Wilson)" in table
    assert "5 restarts" in table and "2 of 3 passed" in table
    assert "40 steps of 0.04·ε" in table and "1,000 queries" in table
    assert "PGD-trained CNN 1.5 min" in table  # AutoAttack's time per model, both budgets
    assert "Not a full-size run" not in table
    assert "bfloat16" not in table  # a float32 run: Square searched in float32 too
    in_bf16 = {**SAMPLE, "run": {**SAMPLE["run"], "training_precision": "mixed_bfloat16"}}
    assert "Square (1,000 queries; its search runs on a bfloat16 copy" in (
        reproduce.results_table(in_bf16)
    )


def test_table_at_0_3_puts_the_published_models_beside_ours():
    table = reproduce.results_table(SAMPLE)
    at_03 = table[table.index("| model | clean | FGSM ε=0.3 |") :]
    assert (
        "| **ours: PGD-trained CNN** | 98.6% | 90.0% | 70.0% ±2.0 | 40.0% ±2.2 | 39.0% ±2.2 |"
        in at_03
    )
    assert "| published: Madry et al. 2018, GPU-trained | 98.5% | – | – | 88.5% | – | – |" in at_03
    assert "reference:" not in at_03 and "min (12 epochs)" not in at_03.split("\n\n")[0]


def test_table_order_survives_a_json_round_trip():
    """metrics.json is written with sorted keys; the table keeps the course's order."""
    round_trip = json.loads(json.dumps(SAMPLE, sort_keys=True))
    assert list(round_trip["models"]) == ["fgsm_at", "pgd_at", "standard"]
    table = reproduce.results_table(round_trip)
    assert table == reproduce.results_table(SAMPLE)
    assert table.index("ours: standard") < table.index("ours: FGSM") < table.index("ours: PGD")


def test_table_lists_notebook_times():
    run = {**SAMPLE["run"], "notebook_seconds": {"01_a.ipynb": 12, "02_b.ipynb": 360, "total": 372}}
    table = reproduce.results_table({**SAMPLE, "run": run})
    assert "Notebook run times: 01 0.2 min, 02 6.0 min; the whole series 6 min." in table
    resumed = reproduce.results_table({**SAMPLE, "run": {**run, "resumed_from": "02"}})
    assert "Notebooks before 02 are kept from an earlier attempt of the same run" in resumed
    assert "earlier attempt" not in table


def test_table_reports_check_failures_beyond_the_claimed_budgets():
    check = {
        "passed": True,
        "model": "PGD-trained CNN",
        "name": "white-box strongest",
        "detail": "transfer ≥ PGD at every ε up to 0.3; beyond ε = 0.3 (not required): "
        "ε=0.4: transfer 20.0% < PGD 36.0%",
        "beyond": "ε=0.4: transfer 20.0% < PGD 36.0%",
    }
    evaluation = {**SAMPLE["evaluation"], "checks": [*SAMPLE["evaluation"]["checks"], check]}
    table = reproduce.results_table({**SAMPLE, "evaluation": evaluation})
    assert "not required: PGD-trained CNN, white-box strongest: ε=0.4: transfer 20.0%" in table
    assert "not required" not in reproduce.results_table(SAMPLE)


def test_update_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{reproduce.TABLE_START}\nold\n{reproduce.TABLE_END}\noutro\n")
    assert reproduce.update_readme("NEW", readme)
    assert (
        readme.read_text() == f"intro\n{reproduce.TABLE_START}\nNEW\n{reproduce.TABLE_END}\noutro\n"
    )
    assert not reproduce.update_readme("NEW", readme)
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        reproduce.update_readme("x", readme)


def test_readme_table_is_generated_from_committed_metrics():
    """The README shows exactly what results/metrics.json says (run `make readme`)."""
    metrics_file = RESULTS_DIR / "metrics.json"
    assert metrics_file.exists(), "results/metrics.json is missing: run `make reproduce`"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["run"]["full_size"], "the committed results must come from a full-size run"
    readme = reproduce.README.read_text()
    assert reproduce.results_table(metrics) in readme, "README table is stale: run `make readme`"


def test_resuming_reads_only_finished_runs_at_the_same_size(tmp_path):
    from tooling.reproduce import executed_seconds

    def executed(name, **papermill):
        path = tmp_path / name
        path.write_text(json.dumps({"metadata": {"papermill": papermill}, "cells": []}))
        return path

    done = executed("done.ipynb", duration=12.5, parameters={}, exception=None)
    assert executed_seconds(done, {}) == 12.5
    with pytest.raises(ValueError, match="ran with"):
        executed_seconds(done, {"EPOCHS": 2})
    failed = executed("failed.ipynb", duration=3.0, parameters={}, exception=True)
    with pytest.raises(ValueError, match="did not finish"):
        executed_seconds(failed, {})
    with pytest.raises(ValueError, match="no executed notebook"):
        executed_seconds(tmp_path / "missing.ipynb", {})


def test_a_run_makes_its_notebooks_models_afresh(tmp_path, monkeypatch):
    from tooling.reproduce import forget_models_made_by

    monkeypatch.setenv("MNIST_AD_ARTIFACTS", str(tmp_path))
    models = tmp_path / "models"
    models.mkdir()
    for name in ("standard", "surrogate", "fgsm_leaky"):
        (models / f"{name}.keras").write_bytes(b"stale")
    assert forget_models_made_by("06_robustness_evaluation.ipynb") == ["surrogate", "fgsm_leaky"]
    assert [p.name for p in models.iterdir()] == ["standard.keras"]
    assert forget_models_made_by("05_evaluation.ipynb") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m["models"]["pgd_at"]["autoattack"].pop("0.3"),
            r"models\.pgd_at\.autoattack\.0\.3",
        ),
        (
            lambda m: m["models"]["standard"].update(clean=float("nan")),
            r"models\.standard\.clean = nan",
        ),
        (
            lambda m: m["models"]["fgsm_at"]["fgsm"].update({"0.25": 1.7}),
            r"fgsm\.0\.25 = 1\.7 is not",
        ),
        (lambda m: m["models"]["fgsm_at"]["robust"].update({"0.25": 99.0}), r"robust\.0\.25 = 99"),
        (lambda m: m["models"]["standard"].update(train_seconds=-1), "train_seconds = -1"),
        (lambda m: m["evaluation"].pop("checks"), "lacks evaluation.checks"),
    ],
)
def test_the_table_refuses_bad_metrics_naming_the_key(change, message):
    metrics = json.loads(json.dumps(SAMPLE))
    change(metrics)
    with pytest.raises(ValueError, match=message):
        reproduce.results_table(metrics)


def test_a_missing_or_broken_metrics_file_gets_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist: run `make reproduce`"):
        reproduce.read_metrics(tmp_path / "metrics.json")
    broken = tmp_path / "metrics.json"
    broken.write_text('{"run": {')
    with pytest.raises(ValueError, match="not readable JSON"):
        reproduce.read_metrics(broken)


def _certification(models):
    return {
        "eps": [0.1, 0.3],
        "n_certify": 10000,
        "n_attack": 300,
        "autoattack": {"apgd_steps": 50, "targets": 3, "queries": 500},
        "models": {
            name: {
                "clean": clean,
                "certified": {"0.1": cert[0], "0.3": cert[1]},
                "autoattack": {"0.1": attacked[0], "0.3": attacked[1]},
            }
            for name, (clean, cert, attacked) in models.items()
        },
        "ibp_at": {"train_seconds": 420, "epochs": 12, "defense": {"eps": 0.2}, "n_train": 54000},
        "published_at_0.3": [
            {"model": "IBP (Gowal et al. 2018)", "clean": 0.9834, "certified": 0.9179,
             "trained_on": "GPU"}
        ],
    }  # fmt: skip


def test_the_certification_table_puts_both_bounds_side_by_side():
    cert = _certification(
        {"pgd_at": (0.986, (0.01, 0.0), (0.95, 0.4)), "ibp_at": (0.955, (0.92, 0.0), (0.93, 0.02))}
    )
    models = {**SAMPLE["models"]}
    models["pgd_at"] = {**models["pgd_at"], "certified": {"0.25": 0.0, "0.3": 0.0}}
    table = reproduce.results_table({**SAMPLE, "models": models, "certification": cert})
    assert "| 98.6% | 95.0% | 92.0% ±1.3 | 91.6% ±1.3 | 91.5% ±1.3 | 0.0% |" in table
    proofs = table[table.index("ε=0.1: certified / attacked") :]
    # certified on every test digit here (no "certified_attack_subset"): no interval
    assert "| **ours: IBP-trained CNN** | 95.5% | 92.0% / 93.0% ±3.5 | 0.0% / 2.0% ±2.3 |" in proofs
    assert proofs.index("ours: PGD-trained") < proofs.index("ours: IBP-trained")  # course order
    assert "certified at 92.0% (ε = 0.1), 0.0% (ε = 0.3)" in proofs
    assert "| published: IBP (Gowal et al. 2018), GPU-trained | 98.3% | – | 91.8% / – |" in proofs
    assert "12 epochs in 7.0 min" in proofs and "300" in proofs
    assert "certified / attacked" not in reproduce.results_table(SAMPLE)  # no notebook 07


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_side_by_side_runs_start_a_notebook_only_after_the_ones_it_loads(
    tmp_path, monkeypatch, jobs
):
    import threading
    import time

    from tooling import series

    monkeypatch.setenv("MNIST_AD_ARTIFACTS", str(tmp_path))
    log, lock = [], threading.Lock()

    def fake_run(notebook, output_dir, size):
        with lock:
            log.append(("start", notebook))
        time.sleep(0.02 if notebook.startswith("04") else 0.005)
        with lock:
            log.append(("end", notebook))
        return output_dir / notebook, 1.0

    monkeypatch.setattr(series, "run_notebook", fake_run)
    seconds = reproduce.run_series("ci", tmp_path, jobs=jobs)
    assert list(seconds) == list(series.NOTEBOOKS)
    for notebook, needs in series.NEEDS.items():
        started = log.index(("start", notebook))
        assert all(log.index(("end", need)) < started for need in needs), (notebook, log)
    running = peak = 0
    for event, _ in log:
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert peak <= jobs
    if jobs == 1:
        assert [nb for event, nb in log if event == "start"] == list(series.NOTEBOOKS)


def test_a_failed_notebook_stops_the_side_by_side_run(tmp_path, monkeypatch):
    from tooling import series

    monkeypatch.setenv("MNIST_AD_ARTIFACTS", str(tmp_path))
    started = []

    def fake_run(notebook, output_dir, size):
        started.append(notebook)
        if notebook.startswith("04"):
            raise RuntimeError("cell 7 failed")
        return output_dir / notebook, 1.0

    monkeypatch.setattr(series, "run_notebook", fake_run)
    with pytest.raises(RuntimeError, match="cell 7"):
        reproduce.run_series("ci", tmp_path, jobs=2)
    assert not {nb for nb in started if nb[:2] in ("05", "06", "07")}


def test_the_expected_time_comes_from_the_committed_run():
    recorded = json.loads((RESULTS_DIR / "metrics.json").read_text())["run"]["notebook_seconds"]
    notebook = "02_training_a_cnn.ipynb"
    assert reproduce.expected_seconds(notebook, "full") == pytest.approx(recorded[notebook])
    assert reproduce.expected_seconds(notebook, "ci") is None
    assert reproduce.expected_seconds("99_missing.ipynb", "full") is None


def test_the_tradeoff_table_lists_every_point_of_notebook_04s_sweep():
    sweep = {
        "eps": 0.25,
        "n_train": 20000,
        "epochs": 3,
        "n_attack": 300,
        "points": {
            "TRADES-trained CNN, β=1": {"clean": 0.972, "fgsm": 0.8637, "robust": 0.73},
            "PGD-trained CNN, same size": {"clean": 0.9712, "fgsm": 0.8518, "robust": 0.69},
        },
    }
    table = reproduce.results_table({**SAMPLE, "trades_tradeoff": sweep})
    part = table[table.index("notebook 04's trade-off") :]
    assert "| TRADES-trained CNN, β=1 | 97.2% | 86.4% | 73.0% ±5.3 |" in part  # of 300
    assert "| PGD-trained CNN, same size | 97.1% | 85.2% | 69.0% ±5.4 |" in part
    assert "20,000 training images" in part and "3 epochs" in part and "300" in part
    assert "trade-off" not in reproduce.results_table(SAMPLE)  # a run without the sweep
