import numpy as np
import pytest

from helpers import attacks, autoattack
from helpers.evaluation import accuracy, predict_labels


def test_checkpoints_follow_the_paper():
    assert autoattack.apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_square_window_shrinks_on_schedule():
    sides = [autoattack.square_window(0.8, i, 5000) for i in (0, 10, 100, 1000, 4999)]
    assert sides[0] == 25 and sides == sorted(sides, reverse=True) and sides[-1] >= 1


@pytest.fixture(scope="module")
def batch(small_mnist):
    return small_mnist.x_test[:100], small_mnist.y_test[:100]


def test_apgd_stays_in_the_ball_and_reports_what_it_fooled(trained_cnn, batch):
    x, y = batch
    x_adv, fooled = autoattack.apgd(trained_cnn, x, y, 0.1, steps=20)
    assert x_adv.dtype == np.float32 and np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    np.testing.assert_array_equal(fooled, predict_labels(trained_cnn, x_adv) != y)
    again, _ = autoattack.apgd(trained_cnn, x, y, 0.1, steps=20)
    np.testing.assert_array_equal(again, x_adv)  # same seed, same images


def test_apgd_is_at_least_as_strong_as_pgd_40(trained_cnn, batch):
    x, y = batch
    pgd_acc = accuracy(trained_cnn, attacks.pgd(trained_cnn, x, y, 0.1), y)
    _, fooled = autoattack.apgd(trained_cnn, x, y, 0.1, steps=100)
    assert 1 - fooled.mean() <= pgd_acc + 0.01, (1 - fooled.mean(), pgd_acc)


def test_targeted_dlr_reaches_its_target(trained_cnn, batch):
    x, y = batch
    target = autoattack.top_wrong_classes(trained_cnn, x, y, 1)[0]
    assert (target != y).all()
    x_adv, _ = autoattack.apgd(trained_cnn, x, y, 0.2, steps=50, loss="dlr", target=target)
    assert (predict_labels(trained_cnn, x_adv) == target).mean() > 0.5
    with pytest.raises(ValueError, match="target class"):
        autoattack.apgd(trained_cnn, x, y, 0.2, loss="dlr")


def test_square_needs_no_gradient_and_beats_noise(trained_cnn, batch):
    x, y = batch
    noise = accuracy(trained_cnn, attacks.random_sign_noise(x, 0.2), y)
    x_adv, fooled = autoattack.square_attack(trained_cnn, x, y, 0.2, queries=300)
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    np.testing.assert_array_equal(fooled, predict_labels(trained_cnn, x_adv) != y)
    assert 1 - fooled.mean() < noise - 0.3, (1 - fooled.mean(), noise)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "float32"])
def test_fast_margins_confirm_every_fooled_image_in_float32(
    trained_cnn, batch, precision, monkeypatch
):
    """Square's fast margins come from a bfloat16 copy (when the CPU has bf16), close to the
    float32 ones; but each image near or past the boundary carries its float32 margin.
    Without bf16 they are the float32 margins."""
    x, y = batch
    monkeypatch.setattr(autoattack, "training_precision", lambda: precision)
    x_adv, _ = autoattack.square_attack(trained_cnn, x, y, 0.15, queries=50)
    exact = autoattack._margins(trained_cnn, x_adv, y)
    fast = autoattack.fast_margins(trained_cnn)(x_adv, y)
    assert 0 < (exact <= 0).sum() < len(x)  # some fooled, some not: both cases are checked
    near = fast < autoattack.NEAR
    np.testing.assert_array_equal(fast[near], exact[near])
    if precision == "float32":
        np.testing.assert_array_equal(fast, exact)
    else:
        assert not np.array_equal(fast, exact)  # the copy really computed in bfloat16
        np.testing.assert_allclose(fast, exact, atol=0.2)


def test_square_searching_in_bfloat16_is_as_strong_and_claims_only_float32_errors(
    trained_cnn, batch, monkeypatch
):
    x, y = batch
    monkeypatch.setattr(autoattack, "training_precision", lambda: "mixed_bfloat16")
    _, exact = autoattack.square_attack(trained_cnn, x, y, 0.15, queries=200)
    fast = autoattack.fast_margins(trained_cnn)
    x_adv, fooled = autoattack.square_attack(trained_cnn, x, y, 0.15, queries=200, margins=fast)
    assert np.abs(x_adv - x).max() <= 0.15 + 1e-6
    assert np.all(predict_labels(trained_cnn, x_adv)[fooled] != y[fooled])
    assert abs(fooled.mean() - exact.mean()) <= 0.05, (fooled.mean(), exact.mean())


def test_autoattack_is_the_worst_case_of_its_attacks(trained_cnn, batch):
    x, y = batch
    result = autoattack.autoattack(trained_cnn, x, y, 0.1, apgd_steps=20, targets=2, queries=100)
    assert set(result["fooled_by"]) == {"apgd-ce", "apgd-t1", "apgd-t2", "square"}
    broken = sum(result["fooled_by"].values())
    assert result["robust"] == pytest.approx(result["clean"] - broken)
    assert accuracy(trained_cnn, result["x_adv"], y) == pytest.approx(result["robust"])
    assert result["robust"] <= 1 - autoattack.apgd(trained_cnn, x, y, 0.1, steps=20)[1].mean()


def test_autoattack_by_budget_attacks_only_what_smaller_budgets_left(trained_cnn, batch):
    """Robust at a larger budget implies robust at every smaller one; each adversarial image
    stays inside its own ball; the first budget is AutoAttack itself; the larger one attacks
    only the survivors and its shares add up."""
    x, y = batch
    settings = {"apgd_steps": 10, "targets": 1, "queries": 50}
    results = autoattack.autoattack_by_budget(trained_cnn, x, y, [0.15, 0.05], **settings)
    assert list(results) == [0.05, 0.15]
    alone = autoattack.autoattack(trained_cnn, x, y, 0.05, **settings)
    np.testing.assert_array_equal(results[0.05]["robust_mask"], alone["robust_mask"])
    small, large = results[0.05], results[0.15]
    assert np.all(small["robust_mask"] | ~large["robust_mask"])
    assert large["fooled_by"]["smaller budget"] == pytest.approx(1 - small["robust"])
    for eps, result in results.items():
        assert np.abs(result["x_adv"] - x).max() <= eps + 1e-6
        broken = sum(result["fooled_by"].values())
        assert result["robust"] == pytest.approx(1 - broken)
        assert accuracy(trained_cnn, result["x_adv"], y) == pytest.approx(result["robust"])


def test_apgd_stops_working_on_an_image_once_it_is_fooled(trained_cnn, batch, monkeypatch):
    """Each step evaluates only the images not yet fooled: at a budget that fools most
    images within a few steps, APGD costs far less than steps x images gradients."""
    x, y = batch
    rows = []
    in_batches = autoattack.engine.in_batches

    def counting(model, fn, arrays, *args, **kwargs):
        rows.append(len(arrays[0]))
        return in_batches(model, fn, arrays, *args, **kwargs)

    monkeypatch.setattr(autoattack.engine, "in_batches", counting)
    _, fooled = autoattack.apgd(trained_cnn, x, y, 0.3, steps=50)
    assert fooled.mean() > 0.9
    assert sum(rows) < 0.3 * 51 * len(x), (sum(rows), len(x))
