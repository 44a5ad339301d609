import numpy as np
import pytest
from conftest import tiny_smooth_model

from helpers import attacks, autoattack, engine
from helpers import robustness as rb
from helpers.evaluation import accuracy, fgsm_accuracy_curve, worst_case_accuracy
from helpers.model import build_cnn
from helpers.training import set_seed, train_model


def curve(pgd, fgsm=None, noise=None, transfer=None):
    """A synthetic curve over the budgets 0.1, 0.2, 0.3 (accuracies as given)."""
    keys = ("0.1", "0.2", "0.3")
    out = {"pgd": dict(zip(keys, pgd, strict=True))}
    for name, values in (("fgsm", fgsm), ("noise", noise), ("transfer", transfer)):
        if values is not None:
            out[name] = dict(zip(keys, values, strict=True))
    return out


def test_transfer_examples_take_the_step_as_a_fraction_of_each_budget(small_mnist):
    x, y = small_mnist.x_test[:40], small_mnist.y_test[:40]
    source = tiny_smooth_model()
    made = rb.transfer_examples(source, x, y, [0.0, 0.1, 0.2], steps=5, rel_step=0.1, seed=3)
    first = rb.transfer_examples(
        source, x, y, [0.1, 0.2], steps=5, rel_step=0.1, keep="first_success", seed=3
    )
    assert list(made) == ["0", "0.1", "0.2"]
    np.testing.assert_array_equal(made["0"], x)
    for eps in (0.1, 0.2):
        full = attacks.pgd_highest_loss(source, x, y, eps, steps=5, rel_step=0.1, seed=3)
        np.testing.assert_array_equal(made[str(eps)], full)
        expected = attacks.pgd(source, x, y, eps, steps=5, rel_step=0.1, seed=3)
        np.testing.assert_array_equal(first[str(eps)], expected)
        assert np.abs(made[str(eps)] - x).max() <= eps + 1e-6
    assert not np.array_equal(made["0.1"], made["0.2"])
    with pytest.raises(ValueError, match="keep must be"):
        rb.transfer_examples(source, x, y, [0.1], keep="last")


def test_full_strength_transfer_transfers_better(trained_cnn, small_mnist):
    """Examples pushed to the surrogate's highest loss fool another model more often than
    examples that stop at the surrogate's decision boundary."""
    x, y = small_mnist.x_test[:200], small_mnist.y_test[:200]
    set_seed(1)
    surrogate = build_cnn()  # the attacker's own CNN: another seed, half the data
    d = small_mnist
    train_model(surrogate, d.x_train[:1000], d.y_train[:1000], epochs=3, seed=1, progress=False)
    kwargs = dict(steps=20, seed=0)
    full = rb.transfer_examples(surrogate, x, y, [0.2], **kwargs)["0.2"]
    first = rb.transfer_examples(surrogate, x, y, [0.2], keep="first_success", **kwargs)["0.2"]
    assert accuracy(trained_cnn, full, y) < accuracy(trained_cnn, first, y) - 0.05


def test_robustness_curve_on_a_trained_model(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:120], small_mnist.y_test[:120]
    epsilons = [0.0, 0.1, 0.2]
    transfer = rb.transfer_examples(tiny_smooth_model(), x, y, epsilons, steps=5)
    result = rb.robustness_curve(
        trained_cnn, x, y, epsilons, transfer=transfer, steps=10, rel_step=0.1
    )
    assert set(result) == {"clean", "noise", "transfer", "fgsm", "pgd", "worst_case"}
    clean = accuracy(trained_cnn, x, y)
    assert all(result[a]["0"] == pytest.approx(clean) for a in result)
    for key in ("0.1", "0.2"):
        assert result["worst_case"][key] <= min(result[a][key] for a in rb.ATTACKS)
        assert result["pgd"][key] <= result["noise"][key]
    assert result["pgd"]["0.2"] < clean - 0.3
    assert rb.check_worst_case("cnn", result).passed
    assert rb.check_white_box_strongest("cnn", result).passed
    with pytest.raises(ValueError, match="no transfer examples"):
        rb.robustness_curve(trained_cnn, x, y, [0.3], transfer=transfer)


def test_attack_effort_never_reports_a_weaker_attack_for_more_effort(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    result = rb.attack_effort(trained_cnn, x, y, 0.1, steps=10, restarts=2, rel_step=0.1)
    assert list(result["by_steps"]) == ["10", "20"] and list(result["by_restarts"]) == list("1234")
    by_restarts = list(result["by_restarts"].values())
    assert by_restarts == sorted(by_restarts, reverse=True)
    assert result["double_steps"] <= result["base"] and result["double_restarts"] <= result["base"]
    assert result["base"] == result["by_restarts"]["2"] == result["by_steps"]["10"]
    # Steps that are no multiple of 10 are reported at their greatest common divisor with 10.
    odd = rb.attack_effort(trained_cnn, x[:20], y[:20], 0.1, steps=15, restarts=1)
    assert list(odd["by_steps"]) == ["5", "10", "15", "20", "25", "30"]


def count_pgd_steps(monkeypatch) -> list[int]:
    """From now on, count the image-steps PGD takes (a one-element list): every batched
    call of :func:`helpers.attacks.pgd_step` is one step of each image it is given."""
    run, count = engine.in_batches, [0]

    def counting(model, fn, arrays, *args, **kwargs):
        if fn is attacks.pgd_step:
            count[0] += len(arrays[0])
        return run(model, fn, arrays, *args, **kwargs)

    monkeypatch.setattr(engine, "in_batches", counting)
    return count


def test_converge_attack_attacks_harder_until_doubling_stops_helping(
    trained_cnn, small_mnist, monkeypatch
):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    kwargs = dict(steps=10, restarts=1, rel_step=0.02, seed=0)
    # A tolerance no change can reach: the first setting is reported as is.
    lax = rb.converge_attack(trained_cnn, x, y, 0.1, tolerance=1.0, **kwargs)
    assert (lax["steps"], lax["restarts"], len(lax["tried"])) == (10, 1, 1)
    # Tiny steps (10 of 0.02·eps travel 0.2·eps) are far from converged: it must escalate.
    pgd_steps = count_pgd_steps(monkeypatch)
    strict = rb.converge_attack(
        trained_cnn, x, y, 0.1, tolerance=1e-9, max_steps=40, max_restarts=2, **kwargs
    )
    strict_cost = pgd_steps[0]
    assert strict["steps"] == 40 and len(strict["tried"]) >= 3
    accuracies = [a for _, _, a in strict["tried"]]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[-1] < accuracies[0]
    assert strict["tried"][-1] == [strict["steps"], strict["restarts"], strict["base"]]
    assert "not at PGD-10×1" in rb.check_converged("m", strict, 1e-9).detail
    # Reusing earlier runs gives what a fresh measurement at the final setting gives.
    fresh = rb.attack_effort(
        trained_cnn, x, y, 0.1, steps=strict["steps"], restarts=strict["restarts"], rel_step=0.02
    )
    assert {k: strict[k] for k in fresh} == fresh
    # ... at less cost: no step taken twice, so no more PGD steps than that one measurement.
    assert 0 < strict_cost <= pgd_steps[0] - strict_cost
    with pytest.raises(ValueError, match="tolerance"):
        rb.converge_attack(trained_cnn, x, y, 0.1, tolerance=0.0)


def test_evaluate_headline_runs_the_battery_on_every_model(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:60], small_mnist.y_test[:60]
    x_test, y_test = small_mnist.x_test[:200], small_mnist.y_test[:200]
    surrogate, other = tiny_smooth_model(), tiny_smooth_model(seed=1)
    settings = dict(steps=5, restarts=2, rel_step=0.1, seed=4)
    numbers, batteries = rb.evaluate_headline(
        {"cnn": trained_cnn, "other": other}, x, y, x_test, y_test, surrogate=surrogate, eps=0.2,
        **settings,
    )  # fmt: skip
    assert list(numbers) == list(batteries) == ["cnn", "other"]
    battery = batteries["cnn"]
    assert list(battery) == ["fgsm", "pgd", "transfer", "noise"]
    # Each attack is the library's, with the given settings; the transfer examples are made
    # once on the surrogate (one start, full strength) and are the same for every model.
    pgd = attacks.pgd(trained_cnn, x, y, 0.2, **settings)
    np.testing.assert_array_equal(battery["pgd"], pgd)
    np.testing.assert_array_equal(battery["fgsm"], attacks.fgsm(trained_cnn, x, y, 0.2))
    np.testing.assert_array_equal(battery["noise"], attacks.random_sign_noise(x, 0.2, seed=4))
    transfer = rb.transfer_examples(surrogate, x, y, [0.2], steps=5, rel_step=0.1, seed=4)["0.2"]
    np.testing.assert_array_equal(battery["transfer"], transfer)
    np.testing.assert_array_equal(batteries["other"]["transfer"], transfer)
    # Clean and FGSM on the whole test set; PGD and the worst case on the headline images.
    full = fgsm_accuracy_curve(trained_cnn, x_test, y_test, [0.0, 0.2])
    on_head = worst_case_accuracy(trained_cnn, x, y, battery)
    assert numbers["cnn"] == {
        "clean": full["0"],
        "fgsm": full["0.2"],
        "pgd": on_head["pgd"],
        "transfer": on_head["transfer"],
        "robust": on_head["worst_case"],
    }
    assert numbers["cnn"]["robust"] <= min(on_head[a] for a in battery)
    assert numbers["cnn"]["pgd"] < accuracy(trained_cnn, x, y) - 0.3  # the attack works
    with pytest.raises(ValueError, match="transfer examples"):
        rb.headline_battery(trained_cnn, x, y, 0.2, transfer=transfer[:10])


def test_strengthen_headline_adds_the_converged_attack(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:60], small_mnist.y_test[:60]
    models = {"cnn": trained_cnn}
    # A weak headline PGD: 2 steps of 0.05·eps from a random start.
    numbers, batteries = rb.evaluate_headline(
        models, x, y, x, y, surrogate=tiny_smooth_model(), eps=0.1, steps=2, restarts=1,
        rel_step=0.05,
    )  # fmt: skip
    before = numbers["cnn"]
    escalated = {"steps": 20, "restarts": 2, "tried": [[2, 1, 0.9], [4, 2, 0.8], [20, 2, 0.5]]}
    strong_numbers, strong_batteries = rb.strengthen_headline(
        models, numbers, batteries, {"cnn": escalated}, x, y, 0.1, rel_step=0.05
    )
    strong = attacks.pgd(trained_cnn, x, y, 0.1, steps=20, restarts=2, rel_step=0.05)
    np.testing.assert_array_equal(strong_batteries["cnn"]["pgd_converged"], strong)
    after = strong_numbers["cnn"]
    assert list(after) == [
        "clean",
        "fgsm",
        "pgd",
        "transfer",
        "robust",
        "converged_at",
        "pgd_converged",
    ]
    assert after["converged_at"] == "PGD-20×2"
    assert after["pgd_converged"] == accuracy(trained_cnn, strong, y) < before["pgd"]
    worst = worst_case_accuracy(trained_cnn, x, y, strong_batteries["cnn"])["worst_case"]
    assert after["robust"] == worst < before["robust"]
    kept = ("clean", "fgsm", "pgd", "transfer")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert "converged_at" not in before and "pgd_converged" not in batteries["cnn"]  # unchanged
    # Converged at the headline's own setting: only the setting is recorded.
    converged = {"steps": 2, "restarts": 1, "tried": [[2, 1, 0.9]]}
    same, same_batteries = rb.strengthen_headline(
        models, numbers, batteries, {"cnn": converged}, x, y, 0.1, rel_step=0.05
    )
    assert same["cnn"] == {**before, "converged_at": "PGD-2×1"}
    assert list(same_batteries["cnn"]) == list(batteries["cnn"])


def test_sanity_checks_run_every_check_on_every_model(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:50], small_mnist.y_test[:50]
    curve = rb.robustness_curve(trained_cnn, x, y, [0.0, 0.1, 0.2], steps=5, rel_step=0.2)
    settings = dict(eps=0.1, steps=10, restarts=1, rel_step=0.1, tolerance=1.0, seed=0)
    run = {"fooled_by": {"apgd-ce": 0.5, "square": 0.0}}
    checks, efforts = rb.sanity_checks(
        {"cnn": trained_cnn}, {"cnn": curve}, x, y, labels={"cnn": "the CNN"}, chance_eps=0.5,
        autoattack_runs={"cnn": run}, **settings,
    )  # fmt: skip
    assert [c.name for c in checks] == [
        "chance at ε=0.5",
        "iterative ≥ single-step",
        "monotone in ε",
        "attack converged",
        "white-box strongest",
        "gradient-free adds little",
        "robust = worst case",
    ]
    assert {c.model for c in checks} == {"the CNN"}
    at_chance = attacks.pgd(trained_cnn, x, y, 0.5, steps=10, rel_step=0.1)
    chance = accuracy(trained_cnn, at_chance, y)
    assert checks[0] == rb.check_chance_at_large_budget("the CNN", chance, 0.5) and checks[0].passed
    del settings["eps"]
    assert efforts == {"cnn": rb.converge_attack(trained_cnn, x, y, 0.1, **settings)}
    # A "large" budget too small to erase the digit: the chance check must fail.
    weak, _ = rb.model_checks(
        "m", trained_cnn, curve, x, y, eps=0.1, chance_eps=0.02, autoattack_run=run, **settings
    )
    assert not weak[0].passed and weak[1:] == [c._replace(model="m") for c in checks[1:]]


def test_label_leaking_compares_true_and_predicted_labels(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    measured = rb.label_leaking(trained_cnn, x, y, 0.2)
    with_true = fgsm_accuracy_curve(trained_cnn, x, y, [0.0, 0.2])
    predicted = fgsm_accuracy_curve(trained_cnn, x, y, [0.2], attack_labels="predicted")["0.2"]
    assert measured == {
        "eps": 0.2,
        "clean": with_true["0"],
        "true_label": with_true["0.2"],
        "predicted_label": predicted,
    }
    assert measured["true_label"] < measured["clean"]  # a standard CNN does not leak
    # Numbers measured before (a headline row) are taken as they are, not measured again.
    known = rb.label_leaking(trained_cnn, x, y, 0.2, known={"clean": 0.5, "fgsm": 0.25})
    assert known == {"eps": 0.2, "clean": 0.5, "true_label": 0.25, "predicted_label": predicted}
    assert rb.leaking_table({"cnn": measured}).endswith("| no |")
    leaky = {**measured, "true_label": measured["clean"] + 0.1}
    assert "**yes**" in rb.leaking_table({"leaky": leaky})


def test_chance_check():
    assert rb.check_chance_at_large_budget("m", 0.098, 0.5).passed
    failed = rb.check_chance_at_large_budget("m", 0.35, 0.5)
    assert not failed.passed and "35.0%" in failed.detail


def test_iterative_check_catches_a_weak_pgd():
    assert rb.check_iterative_beats_single_step("m", curve([0.5, 0.2, 0.0], [0.6, 0.3, 0.1])).passed
    failed = rb.check_iterative_beats_single_step("m", curve([0.5, 0.4, 0.0], [0.6, 0.3, 0.1]))
    assert not failed.passed and "ε=0.2" in failed.detail


def test_monotone_check_catches_a_rising_curve():
    assert rb.check_monotone_in_budget("m", curve([0.9, 0.5, 0.5])).passed
    failed = rb.check_monotone_in_budget("m", curve([0.9, 0.5, 0.7]))
    assert not failed.passed and "ε=0.3" in failed.detail


def test_convergence_check_uses_the_larger_change():
    ok = {"base": 0.90, "double_steps": 0.897, "double_restarts": 0.895}
    assert rb.check_converged("m", ok, tolerance=0.01).passed
    bad = {"base": 0.90, "double_steps": 0.899, "double_restarts": 0.87}
    assert not rb.check_converged("m", bad, tolerance=0.01).passed


def test_white_box_check_catches_a_stronger_transfer_attack():
    good = curve([0.5, 0.2, 0.0], noise=[0.9, 0.9, 0.8], transfer=[0.7, 0.5, 0.3])
    assert rb.check_white_box_strongest("m", good).passed
    bad = curve([0.5, 0.2, 0.0], noise=[0.9, 0.9, 0.8], transfer=[0.7, 0.1, 0.3])
    failed = rb.check_white_box_strongest("m", bad)
    assert not failed.passed and "transfer" in failed.detail
    # required up to the claims' largest budget; beyond it reported, not failed
    assert not rb.check_white_box_strongest("m", bad, up_to=0.2).passed
    beyond = rb.check_white_box_strongest("m", bad, up_to=0.1)
    assert beyond.passed and "beyond ε = 0.1 (not required): ε=0.2: transfer" in beyond.detail
    assert beyond.beyond.startswith("ε=0.2: transfer") and failed.beyond == ""


def test_worst_case_check_catches_an_optimistic_robust_accuracy():
    c = curve([0.5, 0.2, 0.0], fgsm=[0.6, 0.3, 0.1])
    c["worst_case"] = {"0.1": 0.5, "0.2": 0.2, "0.3": 0.0}
    assert rb.check_worst_case("m", c).passed
    c["worst_case"]["0.2"] = 0.25
    assert not rb.check_worst_case("m", c).passed


def test_require_lists_every_failure():
    checks = [
        rb.Check("a", "m1", True, "fine"),
        rb.Check("b", "m1", False, "bad one"),
        rb.Check("c", "m2", False, "bad two"),
    ]
    with pytest.raises(AssertionError, match=r"2 of 3 sanity checks failed") as err:
        rb.require(checks)
    assert "m1: b: bad one" in str(err.value) and "m2: c: bad two" in str(err.value)
    rb.require(checks[:1])
    assert rb.checks_table(checks).count("\n") == 4


def test_random_sign_noise_has_the_full_budget(random_images):
    from helpers.attacks import random_sign_noise

    x, _ = random_images
    x = np.full_like(x, 0.5)
    noisy = random_sign_noise(x, 0.2, seed=1)
    np.testing.assert_allclose(np.abs(noisy - x), 0.2, atol=1e-6)
    assert 0.4 < (noisy > x).mean() < 0.6


def test_gradient_free_check_fires_on_masking():
    ok = rb.check_gradient_free_weaker("m", white_box=0.40, gradient_free=0.55)
    masked = rb.check_gradient_free_weaker("m", white_box=0.90, gradient_free=0.30)
    assert ok.passed and not masked.passed
    assert "gradient masking suspected" in masked.detail and "30.0%" in masked.detail


def test_gradient_free_check_reads_what_square_found_after_the_gradient_attacks():
    ok = rb.check_gradient_free_adds_little("m", {"fooled_by": {"apgd-ce": 0.6, "square": 0.002}})
    bad = rb.check_gradient_free_adds_little("m", {"fooled_by": {"apgd-ce": 0.6, "square": 0.041}})
    assert ok.passed and not bad.passed
    assert "4.1%" in bad.detail and "gradient masking suspected" in bad.detail


def test_square_is_no_stronger_than_pgd_on_an_honest_model(trained_cnn, small_mnist):
    from helpers import autoattack

    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    white_box = accuracy(trained_cnn, attacks.pgd(trained_cnn, x, y, 0.1), y)
    _, fooled = autoattack.square_attack(trained_cnn, x, y, 0.1, queries=200)
    assert rb.check_gradient_free_weaker("cnn", white_box, 1 - fooled.mean()).passed


def test_autoattack_joins_the_headline_battery(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:60], small_mnist.y_test[:60]
    models = {"cnn": trained_cnn}
    settings = dict(surrogate=tiny_smooth_model(), steps=2, restarts=1, rel_step=0.05)
    headlines = {
        key: rb.Headline(*rb.evaluate_headline(models, x, y, x, y, eps=float(key), **settings))
        for key in ("0.1", "0.15")
    }
    enlarged, runs = rb.autoattack_headline(
        models, headlines, x, y, apgd_steps=10, targets=1, queries=50
    )
    for key in ("0.1", "0.15"):
        before, after = headlines[key].numbers["cnn"], enlarged[key].numbers["cnn"]
        alone = autoattack.autoattack(
            trained_cnn, x, y, float(key), apgd_steps=10, targets=1, queries=50
        )
        run = runs["cnn"][key]
        assert run["robust"] == alone["robust"] == after["autoattack"]
        assert set(run["fooled_by"]) == {"apgd-ce", "apgd-t1", "square"} and run["seconds"] > 0
        np.testing.assert_array_equal(enlarged[key].batteries["cnn"]["autoattack"], alone["x_adv"])
        worst = worst_case_accuracy(trained_cnn, x, y, enlarged[key].batteries["cnn"])
        assert after["robust"] == worst["worst_case"] <= min(before["robust"], run["robust"])
        assert "autoattack" not in headlines[key].batteries["cnn"]  # the input is unchanged
    assert runs["cnn"]["0.15"]["robust"] <= runs["cnn"]["0.1"]["robust"]
    table = rb.headline_table({"CNN": enlarged["0.1"].numbers["cnn"]}, 0.1)
    assert "AutoAttack ε=0.1" in table.splitlines()[0]


def test_tradeoff_points_measure_clean_on_the_test_set_and_autoattack_on_the_subset(
    trained_cnn, small_mnist
):
    x, y = small_mnist.x_test, small_mnist.y_test
    settings = dict(apgd_steps=5, targets=1, queries=20)
    points = rb.tradeoff_points({"cnn": trained_cnn}, (x, y), (x[:40], y[:40]), 0.2, **settings)
    alone = autoattack.autoattack(trained_cnn, x[:40], y[:40], 0.2, **settings)
    assert points["cnn"]["robust"] == alone["robust"]
    assert points["cnn"]["clean"] == accuracy(trained_cnn, x, y) > 0.8
    fgsm_share = fgsm_accuracy_curve(trained_cnn, x, y, [0.2])["0.2"]
    assert points["cnn"]["fgsm"] == pytest.approx(fgsm_share)
    assert points["cnn"]["robust"] <= points["cnn"]["fgsm"] < points["cnn"]["clean"]


# --- intervals, per-class robust accuracy, the loss along directions ---------------------


def test_wilson_interval_matches_the_formula_and_stays_inside_0_and_1():
    low, high = rb.wilson_interval(900, 1000)
    assert low == pytest.approx(0.8798, abs=5e-5) and high == pytest.approx(0.9171, abs=5e-5)
    low, high = rb.wilson_interval(0, 50)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.05 < high < 0.09
    a, b = rb.wilson_interval(30, 100), rb.wilson_interval(70, 100)
    assert a[0] == pytest.approx(1 - b[1]) and a[1] == pytest.approx(1 - b[0])
    with pytest.raises(ValueError, match="0 <= k <= n"):
        rb.wilson_interval(5, 0)


def test_margin_covers_the_interval_and_never_vanishes():
    assert rb.margin(0.887, 1000) == pytest.approx(0.0211, abs=1e-4)  # about ±2 points
    assert rb.margin(0.0, 1000) == pytest.approx(0.0038, abs=1e-4)  # not ±0 at 0%
    assert rb.margin(0.5, 100) > rb.margin(0.5, 1000)
    assert rb.pct_with_margin(0.887, 1000) == "88.7% ±2.1"


def test_headline_table_shows_margins_on_the_subset_accuracies_only():
    headline = {"PGD-trained CNN": {"clean": 0.986, "fgsm": 0.95, "pgd": 0.9, "robust": 0.887}}
    plain = rb.headline_table(headline, 0.25)
    assert "| PGD-trained CNN | 98.6% | 95.0% | 90.0% | 88.7% |" in plain and "±" not in plain
    table = rb.headline_table(headline, 0.25, n_subset=1000)
    assert "| PGD-trained CNN | 98.6% | 95.0% | 90.0% ±2.0 | 88.7% ±2.1 |" in table
    assert "1,000 headline images" in table.splitlines()[-1]


def test_robust_accuracy_by_class_is_the_worst_case_per_digit(small_mnist):
    x, y = small_mnist.x_test[:60], small_mnist.y_test[:60]
    model = tiny_smooth_model()
    battery = {
        "fgsm": attacks.fgsm(model, x, y, 0.1),
        "noise": attacks.random_sign_noise(x, 0.1, seed=0),
    }
    correct = rb.correct_under_every_attack(model, x, y, battery)
    assert correct.shape == (60,) and correct.dtype == bool
    assert correct.mean() == worst_case_accuracy(model, x, y, battery)["worst_case"]
    by_class = rb.robust_accuracy_by_class({"m": model}, x, y, {"m": battery})["m"]
    counts = np.bincount(y, minlength=10)
    assert np.nansum(by_class * counts) / counts.sum() == pytest.approx(correct.mean())
    with pytest.raises(ValueError, match="noise"):
        rb.correct_under_every_attack(model, x, y, {"noise": x[:5]})


def test_accuracy_by_class_on_made_up_results():
    correct = np.array([True, False, True, True, False])
    y = np.array([0, 0, 1, 1, 3])
    by_class = rb.accuracy_by_class(correct, y)
    np.testing.assert_allclose(by_class[[0, 1, 3]], [0.5, 1.0, 0.0])
    assert np.isnan(by_class[2]) and np.isnan(by_class[9])  # no image of these digits


def linear_model(seed: int = 0):
    """Logits linear in the pixels (the course's convention: "logits", then a softmax)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    logits = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))


def test_loss_along_directions_starts_at_the_clean_loss_and_climbs_fastest_along_the_gradient():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, (40, 28, 28, 1)).astype(np.float32)  # no pixel meets a clip
    y = rng.integers(0, 10, 40)
    model = linear_model()
    losses = rb.loss_along_directions(model, x, y, 0.25, points=6, steps=10, seed=3)
    assert list(losses) == ["gradient sign", "random sign", "towards PGD"]
    assert list(losses["gradient sign"]) == ["0", "0.05", "0.1", "0.15", "0.2", "0.25"]
    clean = rb.mean_loss(model, x, y)
    for curve in losses.values():
        assert curve["0"] == pytest.approx(clean, rel=1e-6)
    grad, rand = losses["gradient sign"], losses["random sign"]
    assert all(grad[t] >= rand[t] for t in grad)  # for a linear model, the steepest way up
    assert grad["0.25"] > clean + 0.5
    # the ends are the images of FGSM, of random noise and of PGD at full strength
    ends = {
        "gradient sign": attacks.fgsm(model, x, y, 0.25),
        "random sign": attacks.random_sign_noise(x, 0.25, seed=3),
        "towards PGD": attacks.pgd_highest_loss(model, x, y, 0.25, steps=10, seed=3),
    }
    for name, images in ends.items():
        assert losses[name]["0.25"] == pytest.approx(rb.mean_loss(model, images, y), rel=1e-4)
    with pytest.raises(ValueError, match="eps"):
        rb.loss_along_directions(model, x, y, 0.0)
