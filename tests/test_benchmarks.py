"""`make bench` in its smallest mode: the JSON has every key, the numbers are sane, the table
renders. Peers (ART, CleverHans) and the notebook series are skipped here: they are slow, and
the peers are benchmark-only dependencies that a test environment need not have."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from benchmarks.measure import defense_settings
from benchmarks.report import render_table, series_full_from_results, target_met
from helpers import registry
from helpers.paths import PROJECT_ROOT

REQUIRED = (
    "fgsm_over_fwd_bwd",
    "fgsm_at_epoch_over_standard",
    "fgsm_rs_at_epoch_over_standard",
    "pgd_at_epoch_over_standard",
    "pgd_step_over_fgsm",
    "slider_ms",
    "slider_ms_two_models",
    "standard_images_per_s",
    "standard_epoch_s",
    "fgsm_images_per_s",
    "xla_over_default",
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run through the real command line; returns (results, stdout, path)."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--skip-series",
            "--skip-peers",
            "--out",
            str(out),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout, out


def test_quick_run_writes_every_key_as_a_positive_number(quick):
    results, _, _ = quick
    for key in REQUIRED:
        value = results[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    assert results["date"].endswith("UTC") and results["commit"]
    assert results["tensorflow"].startswith("2.")
    assert results["quick"] is True
    assert results["skipped"] == ["peers", "series"]
    assert not any(k.startswith(("art_", "cleverhans_")) for k in results)
    assert "series_ci_s" not in results


def test_quick_run_numbers_are_consistent(quick):
    results, _, _ = quick
    # the standard epoch is scaled from the timed subset to the full 54,000 images
    assert results["full_train_images"] == 54_000
    expected = results["full_train_images"] / results["standard_images_per_s"]
    assert results["standard_epoch_s"] == pytest.approx(expected)
    for defense in ("fgsm", "fgsm_rs", "pgd"):
        entry = results["adversarial_training"][defense]
        assert entry["over_standard"] == results[f"{defense}_at_epoch_over_standard"]
    assert 0.0 <= results["attack_model"]["clean_accuracy"] <= 1.0
    assert results["explorer"]["one_model"]["moves"] == results["sizes"]["explorer_moves"]


def test_full_size_series_comes_from_the_last_reproduce(quick):
    results, _, _ = quick
    metrics = json.loads((PROJECT_ROOT / "results" / "metrics.json").read_text())
    assert results["series_full_s"] == metrics["run"]["notebook_seconds"]["total"]
    assert results["series_full_source"]["commit"] == metrics["run"]["commit"]


def test_table_is_printed_and_rerenders_from_the_json(quick):
    results, stdout, out = quick
    table = render_table(results)
    assert table.startswith("| measure | result | target |")
    assert table in stdout
    assert "one forward+backward pass" in table and "Quick smoke run" in table
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--table", "--out", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == table


def test_table_reports_unavailable_peers_and_targets():
    results = {
        "fgsm_over_fwd_bwd": 1.4,
        "fgsm_images_per_s": 5000.0,
        "fgsm": {"images": 10000},
        "peers": {
            "ours": {"fgsm": {"accuracy": 0.3}, "pgd": {"accuracy": 0.1}},
            "art": {
                "available": True,
                "version": "1.20.1",
                "fgsm": {"over_ours": 2.0, "accuracy": 0.3, "agrees": True},
                "pgd": {"over_ours": 0.9, "accuracy": 0.12, "agrees": False},
            },
            "cleverhans": {"available": False, "reason": "ModuleNotFoundError: cleverhans"},
        },
        "peer_images": 2000,
        "peer_pgd_steps": 10,
        "peer_tolerance": 0.005,
    }
    table = render_table(results)
    assert "≤ 1.3× ✗" in table
    assert "**2.00×** our time" in table and "≥ 1× ✓" in table
    assert "**disagree**" in table and "≥ 1× ✗" in table
    assert "unavailable (ModuleNotFoundError: cleverhans)" in table
    assert target_met("fgsm_at_epoch_over_standard", 2.4) is True
    assert target_met("slider_ms", 30.0) is None


def test_table_marks_the_series_targets_and_names_another_machine():
    results = {
        "machine": {"cores": 2, "cpu": "AMD EPYC", "gpu": False},
        "series_full_s": 1900.0,
        "series_full_source": {"date": "d", "commit": "c", "machine": "Intel Xeon, 2 cores"},
        "series_ci_s": 100.0,
    }
    table = render_table(results)
    assert "31.7 min (1,900 s), from the last `make reproduce` (d, commit `c`, on Intel" in table
    assert "≤ 30 min ✗" in table and "≤ 5 min ✓" in table
    results["series_full_source"]["machine"] = "AMD EPYC, 2 cores"
    assert ", on " not in render_table(results)


def test_missing_reproduce_results_are_a_note_not_a_crash(tmp_path):
    assert "note" in series_full_from_results(tmp_path / "absent.json")


def test_defense_settings_follow_the_recipes():
    defenses = ("none", "fgsm", "fgsm_rs", "pgd")
    settings, source = defense_settings(defenses)
    assert set(settings) == set(defenses) and source == "helpers.registry.MODELS"
    for entry in settings.values():
        assert set(entry) == {"build", "train"} and "epochs" not in entry["train"]
    assert settings["pgd"]["train"]["defense"] == registry.MODELS["pgd_at"].train["defense"]
    assert "defense" not in settings["none"]["train"]


def test_readme_speed_table_is_generated_from_committed_results():
    """The README shows exactly what benchmarks/results.json says (`--table --readme`)."""
    from benchmarks.report import README_END, README_START

    results = PROJECT_ROOT / "benchmarks" / "results.json"
    assert results.exists(), "benchmarks/results.json is missing: run `make bench`"
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert README_START in readme and README_END in readme
    table = render_table(json.loads(results.read_text()))
    assert table in readme, "README speed table is stale: python -m benchmarks.run --table --readme"
