"""`make bench` in its smallest mode: the JSON has every key, the numbers are sane, the table
renders. Peers (ART, CleverHans) and the notebook series are skipped here: they are slow, and
the peers are benchmark-only dependencies that a test environment need not have."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import keras
import pytest

from benchmarks import floor, torch_peer
from benchmarks.make_test import makefile_stages, time_stages
from benchmarks.measure import defense_settings
from benchmarks.report import (
    make_test_from_file,
    render_table,
    series_by_notebook,
    series_full_from_results,
    target_met,
    with_records,
    with_series_records,
)
from helpers import registry
from helpers.model import build_cnn
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
    other = json.loads((PROJECT_ROOT / "benchmarks" / "reproduce_other_class.json").read_text())
    assert results["series_full_other_s"] == other["run"]["notebook_seconds"]["total"]
    assert results["series_full_other_source"]["machine"] == other["run"]["machine"]


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
    assert "≤ 1.1× ✗" in table
    assert "**2.00×** our time" in table and "≥ 1× ✓" in table
    assert "**disagree**" in table and "≥ 1× ✗" in table
    assert "unavailable (ModuleNotFoundError: cleverhans)" in table
    assert target_met("fgsm_at_epoch_over_standard", 2.4) is True
    assert target_met("slider_ms", 30.0) is None


def test_table_compares_squares_bfloat16_search_with_its_float32_one():
    square = {"art_seconds": 60.0, "art_accuracy": 0.94, "ours_seconds": 20.0}
    square |= {"ours_accuracy": 0.938, "agrees": True, "fast_seconds": 9.0}
    results = {"autoattack_peers": {"model": "m", "images": 500, "square": square}}
    row = "Square searching in bfloat16 (AutoAttack's), same model and images | **0.45×**"
    for fast, mark in ((0.946, "✓"), (0.95, "✗")):
        square["fast_accuracy"] = fast
        table = render_table(results)
        assert row in table and f"{100 * fast:.1f}% vs 93.8%" in table
        assert f"≤ float32 + 1 point {mark}" in table
    del square["fast_seconds"], square["fast_accuracy"]  # an older results.json: no row
    assert "bfloat16" not in render_table(results)


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


def test_series_by_notebook_has_a_column_per_recorded_run():
    fast = {"machine": "Xeon", "commit": "a", "notebooks": {"01_x.ipynb": 30.0, "02_y.ipynb": 90.0}}
    slow = {"machine": "EPYC", "commit": "b", "notebooks": {"01_x.ipynb": 60.0}}
    table = series_by_notebook({"series_full_source": fast, "series_full_other_source": slow})
    lines = table.splitlines()
    assert lines[0] == "| full-size series, minutes | Xeon, commit `a` | EPYC, commit `b` |"
    assert lines[2:] == [
        "| `01_x` | 0.5 | 1.0 |",
        "| `02_y` | 1.5 | – |",
        "| all | **2.0** | **1.0** |",
    ]
    assert series_by_notebook({"series_full_source": fast}).count("|---") == 2
    assert series_by_notebook({}) == "" and series_by_notebook({"series_full_source": {}}) == ""
    assert table in render_table({"series_full_source": fast, "series_full_other_source": slow})


def test_make_test_time_is_read_and_marked_against_ten_minutes(tmp_path):
    measured = {"make_test_s": 855.0, "stages": {"unit": 92.0, "classroom": 291.0}, "date": "d"}
    (tmp_path / "make_test.json").write_text(json.dumps({**measured, "commit": "c"}))
    found = make_test_from_file(tmp_path / "make_test.json")
    assert found["make_test_s"] == 855.0 and found["source"]["stages"] == measured["stages"]
    table = render_table({"make_test_s": 855.0, "make_test_source": found["source"]})
    assert "14.2 min (855 s); largest: classroom 291 s, unit 92 s" in table
    assert "≤ 10 min ✗" in table and ", on " not in table
    source = {**found["source"], "machine": "AMD EPYC, 2 cores"}  # measured on another CPU
    mixed = {"machine": {"cpu": "Intel(R) Xeon(R) Processor"}, "make_test_s": 855.0}
    assert "commit `c`, on AMD EPYC, 2 cores)" in render_table(
        {**mixed, "make_test_source": source}
    )
    assert "note" in make_test_from_file(tmp_path / "absent.json")


def test_make_test_stages_come_from_the_makefile_and_a_failure_names_its_stage(tmp_path):
    assert makefile_stages()[:2] == ["lint", "unit"]
    assert (
        "classroom" in makefile_stages() and "hub-test+nbval+browser+book-test" in makefile_stages()
    )
    rules = "ok:\n\ttrue\nalso:\n\ttrue\nbad:\n\tfalse\n"
    (tmp_path / "Makefile").write_text(f"TEST_STAGES := ok,also bad\n{rules}")
    assert makefile_stages(tmp_path / "Makefile") == ["ok+also", "bad"]
    assert set(time_stages(tmp_path, ["ok+also"])) == {"ok+also"}
    with pytest.raises(RuntimeError, match="`make bad` failed"):
        time_stages(tmp_path, ["ok+also", "bad"])
    (tmp_path / "Makefile").write_text(rules)
    with pytest.raises(ValueError, match="no TEST_STAGES"):
        makefile_stages(tmp_path / "Makefile")


def test_missing_reproduce_results_are_a_note_not_a_crash(tmp_path):
    assert "note" in series_full_from_results(tmp_path / "absent.json")


def test_series_records_replace_the_old_rows_and_only_this_class_missing_is_a_note(tmp_path):
    run = {"run": {"notebook_seconds": {"01_x.ipynb": 60.0, "total": 60.0}, "machine": "EPYC"}}
    (tmp_path / "this.json").write_text(json.dumps(run))
    stale = {"series_full_s": 1.0, "series_full_other_s": 2.0, "kept": True}
    fresh = with_series_records(stale, tmp_path / "this.json", tmp_path / "absent.json")
    assert fresh["series_full_s"] == 60.0 and fresh["series_full_source"]["machine"] == "EPYC"
    assert fresh["kept"] and not any(k.startswith("series_full_other") for k in fresh)
    assert "series_full_note" not in fresh
    swapped = with_series_records(stale, tmp_path / "absent.json", tmp_path / "this.json")
    assert swapped["series_full_other_s"] == 60.0 and "series_full_note" in swapped


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
    stored = json.loads(results.read_text())
    table = render_table(stored)
    assert table in readme, "README speed table is stale: python -m benchmarks.run --table --readme"
    # its rows read from other runs' records match those records as committed
    assert with_records(stored) == stored, (
        "benchmarks/results.json is behind results/metrics.json, "
        "benchmarks/reproduce_other_class.json or benchmarks/make_test.json: "
        "python -m benchmarks.run --table --readme"
    )


# -- the training step against PyTorch, the compute floor and bf16 (section train_step) ------

#: The course's CNN by hand: multiply-adds of conv1, conv2, dense and logits, × 2 (FLOPs).
CNN_FORWARD_FLOPS = 2 * (26 * 26 * 32 * 9 * 1 + 11 * 11 * 64 * 9 * 32 + 1600 * 128 + 128 * 10)


def _torch_or_skip():
    torch, reason = torch_peer.load_torch()
    if torch is None:
        pytest.skip(f"PyTorch unavailable: {reason}")
    return torch


def test_flops_of_a_tiny_conv_and_dense_layer_by_hand():
    # 3x3 kernel over a 5x5x2 image -> 3x3x4: each of the 36 outputs takes 9*2 multiply-adds
    assert floor.conv2d_flops(3, 3, 3, 3, 2, 4) == 2 * 36 * 18 == 1296
    assert floor.dense_flops(36, 5) == 360
    inputs = keras.Input((5, 5, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(1)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5, name="logits")(x)
    tiny = keras.Model(inputs, keras.layers.Softmax()(x))
    assert floor.forward_flops_per_image(tiny) == 1296 + 360
    assert floor.train_flops_per_image(tiny) == 3 * (1296 + 360)


def test_flops_of_the_course_cnn():
    model = build_cnn()
    assert floor.forward_flops_per_image(model) == CNN_FORWARD_FLOPS == 5_262_080
    assert floor.train_flops_per_image(model) == 3 * CNN_FORWARD_FLOPS
    assert floor.forward_flops_per_image(build_cnn(width=2)) > 3 * CNN_FORWARD_FLOPS


def test_flop_count_refuses_a_layer_it_cannot_count():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.BatchNormalization()(inputs)
    with pytest.raises(ValueError, match="no FLOP count"):
        floor.forward_flops_per_image(keras.Model(inputs, x))


def test_matmul_fn_counts_its_work():
    run, flops = floor.matmul_fn(n=64, repeats=3)
    assert flops == 3 * 2 * 64**3
    assert run() is None


def test_cpu_has_bf16_reads_the_flags(tmp_path):
    assert isinstance(floor.cpu_has_bf16(), bool)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert floor.cpu_has_bf16(info) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert floor.cpu_has_bf16(info) is True
    info.write_text("flags\t\t: fpu amx_tile amx_bf16\n")
    assert floor.cpu_has_bf16(info) is True
    assert floor.cpu_has_bf16(tmp_path / "absent") is False


def test_torch_peer_has_the_keras_models_parameter_count():
    torch = _torch_or_skip()
    for width in (1, 2):
        keras_count = build_cnn(width=width).count_params()
        assert torch_peer.count_parameters(torch_peer.torch_cnn(torch, width=width)) == keras_count
    assert build_cnn().count_params() == 225_034
    logits = torch_peer.torch_cnn(torch)(torch.zeros(3, 1, 28, 28))
    assert tuple(logits.shape) == (3, 10)


@pytest.mark.parametrize("variant", torch_peer.VARIANTS)
def test_torch_peer_trains_an_epoch(variant, random_images):
    torch = _torch_or_skip()
    x, y = random_images
    run = torch_peer.epoch_fn(
        torch, x, y, variant=variant, batch_size=4, lr_schedule="cosine", planned_epochs=2
    )
    losses = [run(), run(), run()]  # a third call stays at the schedule's end
    assert all(math.isfinite(v) and v > 0 for v in losses)
    with pytest.raises(ValueError, match="variant"):
        torch_peer.epoch_fn(torch, x, y, variant="compiled")


def test_bf16_model_is_built_under_the_policy_and_the_policy_restored(random_images, monkeypatch):
    from benchmarks import measure

    model = measure.bf16_cnn({})
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer("conv1").variable_dtype == "float32"
    assert model.get_layer("logits").compute_dtype == "float32"
    x, y = random_images
    run = measure.course_epoch_fn(model, x, y, batch_size=4)
    assert math.isfinite(run())  # the course's step runs on it (loss taken in float32)

    def broken(**_):
        raise RuntimeError("boom")

    monkeypatch.setattr(measure, "build_cnn", broken)
    with pytest.raises(RuntimeError):
        measure.bf16_cnn({})
    assert keras.mixed_precision.global_policy().name == "float32"


def test_train_step_reports_torch_unavailable_and_still_measures(random_images, monkeypatch):
    from benchmarks import measure

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    x, y = random_images
    step = measure.training_step_floor(
        x, y, build={}, lr_schedule="cosine", batch_size=4, rounds=1, matmul_n=64, bf16=False
    )
    assert step["torch"]["available"] is False and "import of torch" in step["torch"]["reason"]
    assert "over_ours" not in step["torch"]
    assert step["flops"]["train_per_image"] == 3 * CNN_FORWARD_FLOPS
    assert 0 < step["train_fraction_of_peak"] and step["matmul"]["gflop_s"] > 0
    assert step["bf16"]["measured"] is False and "note" in step["bf16"]
    assert isinstance(step["cpu_bf16"], bool)
    assert set(step["times"]) == {"ours", "matmul"}
    table = render_table({"train_step": step})
    assert "PyTorch: standard training step | unavailable (ModuleNotFoundError" in table
    assert "of the matmul's rate" in table and f"not measured: {step['bf16']['note']}" in table


def test_train_step_table_rows():
    step = {
        "images": 10240,
        "batch_size": 128,
        "ours_images_per_s": 7000.0,
        "torch": {
            "available": True,
            "version": "2.13.0+cpu",
            "threads": 2,
            "variant": "channels_last",
            "over_ours": 1.5,
            "images_per_s": 4666.0,
        },
        "flops": {"train_per_image": 3 * CNN_FORWARD_FLOPS},
        "matmul": {"n": 2048, "gflop_s": 200.0},
        "train_gflop_s": 110.5,
        "train_fraction_of_peak": 0.5525,
        "bf16": {"measured": True, "over_fp32": 0.8},
    }
    table = render_table({"train_step": step})
    assert "PyTorch 2.13.0+cpu (channels-last)" in table and "**1.50×** our time" in table
    assert "**55%** of the matmul's rate (110 of 200 GFLOP/s at 15.8 MFLOP" in table
    assert "**0.80×** float32's time" in table


def test_quick_run_measures_the_training_step_against_its_peers(quick):
    results, stdout, _ = quick
    step = results["train_step"]
    assert results["train_flops_per_image"] == 3 * CNN_FORWARD_FLOPS
    for key in ("matmul_gflop_s", "train_fraction_of_peak"):
        assert isinstance(results[key], float) and results[key] > 0, key
    assert results["cpu_bf16"] is floor.cpu_has_bf16()
    if results["cpu_bf16"]:
        assert results["bf16_train_over_fp32"] > 0 and "bf16" in step["times"]
    else:
        assert "bf16_train_over_fp32" not in results and results["bf16_note"]
    if torch_peer.load_torch()[0] is None:
        assert step["torch"]["available"] is False and "torch_train_over_ours" not in results
    else:
        assert results["torch_train_over_ours"] > 0 and results["torch_images_per_s"] > 0
        assert results["torch_variant"] in torch_peer.VARIANTS
        assert set(step["torch"]["variants"]) == set(torch_peer.VARIANTS)
    assert "of the matmul's rate" in stdout


def _saved_cnn(tmp_path):
    """A saved random CNN and the first 30 test digits' correct/incorrect split under it."""
    from benchmarks.independent_autoattack import _test_images
    from helpers.evaluation import predict_labels

    keras.utils.set_random_seed(0)  # fixed weights: some digits right, some wrong
    model = build_cnn(name="independent", dropout=False)
    path = tmp_path / "model.keras"
    model.save(path)
    x, y = _test_images(30)  # the digits `certified` reads
    correct = predict_labels(model, x[..., None]) == y
    return path, [int(i) for i in (~correct).nonzero()[0]], [int(i) for i in correct.nonzero()[0]]


def test_independent_attack_is_checked_against_the_proofs(tmp_path):
    """At ε = 0 a proof is exact (certified = classified correctly), so an attack that lost
    only the misclassified digits agrees with it, and one that claims a correctly classified
    digit contradicts it and makes the check fail."""
    from benchmarks.independent_autoattack import certified

    model_path, wrong, right = _saved_cnn(tmp_path)
    assert right and wrong, "the random CNN must get some of the 30 digits right and some wrong"
    result_path = tmp_path / "result.json"
    result_path.write_text(json.dumps({"n_images": 30, "0.0": {"not_robust": wrong}}))
    record = certified(model_path, result_path)
    assert record["0.0"] == {"certified": len(right) / 30, "certified_but_broken": 0}
    assert json.loads(result_path.read_text())["certified"] == record

    result_path.write_text(json.dumps({"n_images": 30, "0.0": {"not_robust": wrong + right[:1]}}))
    with pytest.raises(AssertionError, match="broke digits the proof certified"):
        certified(model_path, result_path)
    saved = json.loads(result_path.read_text())["certified"]["0.0"]  # written all the same
    assert saved["certified_but_broken"] == 1


def test_independent_check_needs_the_attacks_per_digit_outcome(tmp_path):
    from benchmarks.independent_autoattack import certified

    model_path, _, _ = _saved_cnn(tmp_path)
    result_path = tmp_path / "result.json"
    result_path.write_text(json.dumps({"n_images": 30, "0.3": {"robust": 0.5}}))
    with pytest.raises(ValueError, match="no per-digit outcome"):
        certified(model_path, result_path)


def test_readme_quotes_the_independent_autoattack_results_as_recorded():
    """Every share the independent AutoAttack left, ours left, and the proofs certified on
    the same digits appears in the README as the JSON has it (one decimal), and no proved
    digit was broken."""
    from benchmarks.independent_autoattack import _budgets

    readme = (PROJECT_ROOT / "README.md").read_text()
    results = sorted((PROJECT_ROOT / "results").glob("independent_autoattack*.json"))
    assert results, "no results/independent_autoattack_*.json"
    for path in results:
        result = json.loads(path.read_text())
        assert f"results/{path.name}" in readme, f"the README does not cite {path.name}"
        ours = result.get("ours", {})  # the course's own AutoAttack on the same digits
        shares = [r[str(eps)]["robust"] for r in (result, ours) for eps in _budgets(r)]
        certified = result.get("certified", {})
        for key, record in certified.items():
            if key != "proof":
                assert record["certified_but_broken"] == 0, (path.name, key)
                shares.append(record["certified"])
        for share in shares:
            assert f"{100 * share:.1f}%" in readme, f"{path.name}: {100 * share:.1f}% not in README"
