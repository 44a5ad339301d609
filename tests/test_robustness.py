import numpy as np
import pytest
from conftest import tiny_smooth_model

from helpers import attacks
from helpers import robustness as rb
from helpers.evaluation import accuracy


def curve(pgd, fgsm=None, noise=None, transfer=None):
    """A synthetic curve over the budgets 0.1, 0.2, 0.3 (accuracies as given)."""
    keys = ("0.1", "0.2", "0.3")
    out = {"pgd": dict(zip(keys, pgd, strict=True))}
    for name, values in (("fgsm", fgsm), ("noise", noise), ("transfer", transfer)):
        if values is not None:
            out[name] = dict(zip(keys, values, strict=True))
    return out


def test_pgd_settings_scale_the_step_with_the_budget():
    assert rb.pgd_settings(0.25) == {"steps": 40, "step_size": pytest.approx(0.01)}
    assert rb.pgd_settings(0.5, steps=10, travel=1.0)["step_size"] == pytest.approx(0.05)
    with pytest.raises(ValueError):
        rb.pgd_settings(1.5)


def test_robustness_curve_on_a_trained_model(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:120], small_mnist.y_test[:120]
    epsilons = [0.0, 0.1, 0.2]
    transfer = rb.transfer_examples(tiny_smooth_model(), x, y, epsilons, steps=5)
    result = rb.robustness_curve(
        trained_cnn, x, y, epsilons, transfer=transfer, steps=10, travel=1.0
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
    result = rb.attack_effort(trained_cnn, x, y, 0.1, steps=10, restarts=2, step_size=0.01)
    assert list(result["by_steps"]) == ["10", "20"] and list(result["by_restarts"]) == list("1234")
    by_restarts = list(result["by_restarts"].values())
    assert by_restarts == sorted(by_restarts, reverse=True)
    assert result["double_steps"] <= result["base"] and result["double_restarts"] <= result["base"]
    assert result["base"] == result["by_restarts"]["2"] == result["by_steps"]["10"]
    with pytest.raises(ValueError, match="multiple of 10"):
        rb.attack_effort(trained_cnn, x, y, 0.1, steps=15)


def count_pgd_steps(model, monkeypatch) -> list[int]:
    """From now on, count the image-steps PGD takes on ``model`` (a one-element list)."""
    cache = attacks._compiled(model)
    loop, count = cache["pgd_loop"], [0]

    def counting(x0, *args):
        count[0] += len(x0) * int(args[-2])  # images x steps of this compiled call
        return loop(x0, *args)

    monkeypatch.setitem(cache, "pgd_loop", counting)
    return count


def test_converge_attack_attacks_harder_until_doubling_stops_helping(
    trained_cnn, small_mnist, monkeypatch
):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    kwargs = dict(steps=10, restarts=1, step_size=0.002, seed=0)
    # A tolerance no change can reach: the first setting is reported as is.
    lax = rb.converge_attack(trained_cnn, x, y, 0.1, tolerance=1.0, **kwargs)
    assert (lax["steps"], lax["restarts"], len(lax["tried"])) == (10, 1, 1)
    # Tiny steps (travel 0.02 < eps) are far from converged: it must escalate.
    pgd_steps = count_pgd_steps(trained_cnn, monkeypatch)
    strict = rb.converge_attack(trained_cnn, x, y, 0.1, tolerance=1e-9, max_steps=40, **kwargs)
    strict_cost = pgd_steps[0]
    assert strict["steps"] == 40 and len(strict["tried"]) >= 3
    accuracies = [a for _, _, a in strict["tried"]]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[-1] < accuracies[0]
    assert strict["tried"][-1] == [strict["steps"], strict["restarts"], strict["base"]]
    assert "not at PGD-10×1" in rb.check_converged("m", strict, 1e-9).detail
    # Reusing earlier runs gives what a fresh measurement at the final setting gives.
    fresh = rb.attack_effort(
        trained_cnn,
        x,
        y,
        0.1,
        steps=strict["steps"],
        restarts=strict["restarts"],
        step_size=0.002,
        seed=0,
    )
    assert {k: strict[k] for k in fresh} == fresh
    # ... at less cost: no step taken twice, so no more PGD steps than that one measurement.
    assert 0 < strict_cost <= pgd_steps[0] - strict_cost
    with pytest.raises(ValueError, match="tolerance"):
        rb.converge_attack(trained_cnn, x, y, 0.1, tolerance=0.0)


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
