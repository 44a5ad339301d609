"""The explorer's callback is a plain method: drive it by setting widget values."""

import numpy as np
import pytest

from helpers import attacks, explorer
from helpers.model import build_cnn


@pytest.fixture
def view(trained_cnn, small_mnist, monkeypatch):
    calls = []
    fgsm = explorer.ATTACKS["FGSM"]
    monkeypatch.setitem(explorer.ATTACKS, "FGSM", lambda *a: calls.append(1) or fgsm(*a))
    x, y = small_mnist.x_test[:60], small_mnist.y_test[:60]
    models = {"trained": trained_cnn, "untrained": build_cnn()}
    return explorer.make_explorer(models, x, y, n_accuracy=40, eps=0.0), calls


def test_first_frame_is_rendered_headless(view):
    ex, _ = view
    assert bytes(ex.image.value).startswith(b"\x89PNG")
    assert "trained" in ex.status.value and "accuracy at ε=0.00" in ex.status.value
    assert ex.widget.children[-1] is ex.image


def test_moving_epsilon_changes_what_is_drawn(view):
    ex, calls = view
    before_png, before_state = bytes(ex.image.value), ex.state()["trained"]
    assert before_state["pred_adv"] == before_state["pred_clean"]  # eps = 0: no attack
    ex.eps.value = 0.35
    after = ex.state()["trained"]
    assert bytes(ex.image.value) != before_png
    assert "accuracy at ε=0.35" in ex.status.value
    assert after["accuracy"] < before_state["accuracy"]
    # the drawn adversarial image is exactly FGSM at the slider's epsilon
    i = ex.index.value
    expected = attacks.fgsm(ex.models["trained"], ex.x[i : i + 1], ex.y[i : i + 1], 0.35)
    np.testing.assert_allclose(after["x_adv"], expected[0, ..., 0], atol=1e-6)
    assert calls == [1], "the FGSM direction must be computed once, then reused"


def test_index_and_model_controls(view):
    ex, _ = view
    ex.eps.value = 0.2
    ex.index.value = 7
    assert f"label {ex.y[7]}" in ex.status.value
    ex.model.value = "untrained"
    assert ex.status.value.startswith("<b>untrained</b>")
    assert len(ex.render_ms) >= 4


def test_side_by_side_shows_every_model(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:20], small_mnist.y_test[:20]
    ex = explorer.make_explorer({"a": trained_cnn, "b": trained_cnn}, x, y, side_by_side=True)
    assert set(ex.state()) == {"a", "b"} and ex.status.value.count("<br>") == 1
    ex.attack.value = "FGSM (predicted label)"
    assert bytes(ex.image.value).startswith(b"\x89PNG")


def test_bad_input_is_refused(trained_cnn, small_mnist):
    with pytest.raises(ValueError, match="at least one model"):
        explorer.make_explorer({}, small_mnist.x_test[:5], small_mnist.y_test[:5])
    with pytest.raises(ValueError, match="raw 0..255"):
        explorer.make_explorer(
            {"m": trained_cnn}, small_mnist.x_test[:5] * 255, small_mnist.y_test[:5]
        )


PGD = f"PGD-{attacks.PGD_STEPS}"


@pytest.fixture
def pgd_view(trained_cnn, small_mnist, monkeypatch):
    """One model, PGD picked; every PGD run is recorded as (number of images, eps)."""
    runs = []
    pgd = explorer.EPS_ATTACKS[PGD]

    def counted(model, x, y, eps):
        runs.append((len(x), round(eps, 4)))
        return pgd(model, x, y, eps)

    monkeypatch.setitem(explorer.EPS_ATTACKS, PGD, counted)
    x, y = small_mnist.x_test[:30], small_mnist.y_test[:30]
    ex = explorer.make_explorer({"trained": trained_cnn}, x, y, n_accuracy=30, n_pgd=8, eps=0.0)
    assert ex.eps.continuous_update  # FGSM: the slider follows every stop
    ex.attack.value = PGD
    return ex, runs


def test_pgd_is_offered_and_runs_once_per_slider_stop(pgd_view):
    ex, runs = pgd_view
    assert PGD in ex.attack.options and not ex.eps.continuous_update  # report on release
    assert runs == []  # eps = 0: nothing to attack
    ex.eps.value = 0.3
    assert runs == [(8, 0.3)], "the first stop at 0.3 attacks the accuracy batch once"
    ex.eps.value = 0.1
    ex.eps.value = 0.3  # visited before: cached
    assert runs == [(8, 0.3), (8, 0.1)]
    # the drawn digit is exactly PGD's result on the accuracy batch at the slider's epsilon
    model, i = ex.models["trained"], ex.index.value
    expected = attacks.pgd(model, ex.x[:8], ex.y[:8], 0.3, seed=0)
    np.testing.assert_allclose(ex.state()["trained"]["x_adv"], expected[i, ..., 0], atol=1e-6)
    assert np.abs(expected - ex.x[:8]).max() <= 0.3 + 1e-6
    ex.attack.value = "FGSM"
    assert ex.eps.continuous_update


def test_pgd_curve_fills_in_stop_by_stop(pgd_view):
    ex, _ = pgd_view
    for eps in (0.2, 0.4):
        ex.eps.value = eps
    curve = ex._artists["trained"]["curve"]
    acc = dict(zip(np.round(curve.get_xdata(), 4), curve.get_ydata(), strict=True))
    assert {float(e) for e, a in acc.items() if not np.isnan(a)} == {0.0, 0.2, 0.4}
    assert acc[0.4] <= acc[0.0] and acc[0.4] == ex.batch_accuracy("trained", PGD, 0.4)
    assert ex._figure.axes[-1].get_title() == "accuracy on 8 images"


def test_pgd_on_a_digit_outside_the_batch_runs_on_that_digit_alone(pgd_view):
    ex, runs = pgd_view
    ex.eps.value = 0.25
    ex.index.value = 20  # beyond n_pgd = 8
    ex.index.value = 3
    ex.index.value = 20  # cached
    assert runs == [(8, 0.25), (1, 0.25)]
    model = ex.models["trained"]
    expected = attacks.pgd(model, ex.x[20:21], ex.y[20:21], 0.25, seed=0)
    np.testing.assert_allclose(ex.state()["trained"]["x_adv"], expected[0, ..., 0], atol=1e-6)
