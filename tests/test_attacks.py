import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_smooth_model

from helpers import attacks
from helpers.evaluation import accuracy, predict_labels
from helpers.model import logits_model, with_logit_scale


@pytest.mark.parametrize("eps", [-0.01, 1.01, float("nan"), "a", None])
def test_epsilon_outside_unit_interval_is_refused(eps, random_images):
    x, y = random_images
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.fgsm(tiny_smooth_model(), x, y, eps=eps)


def test_bad_images_are_refused(random_images):
    x, y = random_images
    model = tiny_smooth_model()
    with pytest.raises(ValueError, match="raw 0..255"):
        attacks.fgsm(model, x * 255, y)
    with pytest.raises(ValueError, match="shape"):
        attacks.pgd(model, x[..., 0], y)
    with pytest.raises(ValueError, match="8 images but 3 labels"):
        attacks.fgsm(model, x, y[:3])


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.25, 1.0])
def test_fgsm_stays_in_budget_and_valid_range(eps, random_images):
    x, y = random_images
    x_adv = attacks.fgsm(tiny_smooth_model(), x, y, eps=eps)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if eps == 0.0:
        np.testing.assert_array_equal(x_adv, x)


def test_fgsm_sign_matches_finite_differences(random_images):
    x, y = random_images
    model = tiny_smooth_model()
    signs = attacks.fgsm_signs(model, x[:2], y[:2])
    net = attacks._compiled(model)["logits_model"]
    onehot = tf.one_hot(y[:2], 10)

    def loss(images):
        logits = net(tf.constant(images))
        return tf.nn.softmax_cross_entropy_with_logits(onehot, logits).numpy()

    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(40):
        i, r, c = rng.integers(0, 2), rng.integers(0, 28), rng.integers(0, 28)
        h = 1e-2
        up, down = x[:2].copy(), x[:2].copy()
        up[i, r, c, 0] += h
        down[i, r, c, 0] -= h
        numeric = (loss(up)[i] - loss(down)[i]) / (2 * h)
        if abs(numeric) > 1e-3:  # skip derivatives too small to resolve in float32
            assert np.sign(numeric) == signs[i, r, c, 0]
            checked += 1
    assert checked >= 20


def test_fgsm_lowers_accuracy_of_a_trained_model(trained_cnn, small_mnist):
    x, y = small_mnist.x_test, small_mnist.y_test
    clean = accuracy(trained_cnn, x, y)
    attacked = accuracy(trained_cnn, attacks.fgsm(trained_cnn, x, y, eps=0.25), y)
    assert clean > 0.9
    assert attacked < clean - 0.4


def test_targeted_fgsm_moves_towards_the_target(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:200], small_mnist.y_test[:200]
    target = (y + 1) % 10
    before = (predict_labels(trained_cnn, x) == target).mean()
    x_adv = attacks.fgsm(trained_cnn, x, target, eps=0.25, targeted=True)
    after = (predict_labels(trained_cnn, x_adv) == target).mean()
    assert after > before + 0.05
    with pytest.raises(ValueError, match="target labels"):
        attacks.fgsm(trained_cnn, x, None, targeted=True)


def test_loss_on_saturated_probabilities_gives_zero_gradients():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, (1, 28, 28, 1))
    x = (base + rng.uniform(-1e-3, 1e-3, (8, 28, 28, 1))).astype(np.float32)
    model = tiny_smooth_model()
    top2 = np.sort(logits_model(model)(x).numpy(), axis=1)[:, -2:]
    scale = 40.0 / (top2[:, 1] - top2[:, 0]).min()  # logit margins >= 40: saturated
    layer = model.get_layer("logits")
    layer.set_weights([w * scale for w in layer.get_weights()])
    assert (model(x).numpy().max(axis=1) >= 1 - 1e-7).all()  # inside the clip
    predicted = predict_labels(model, x)
    probs_signs = attacks.fgsm_signs(model, x, predicted, loss_on="probabilities")
    logit_signs = attacks.fgsm_signs(model, x, predicted, loss_on="logits")
    assert attacks.zero_gradient_share(probs_signs)["images"] == 1.0
    assert attacks.zero_gradient_share(logit_signs) == {"pixels": 0.0, "images": 0.0}


def test_pgd_stays_in_budget_and_range(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:64], small_mnist.y_test[:64]
    x_adv = attacks.pgd(trained_cnn, x, y, eps=0.1, steps=5, restarts=2, batch_size=20)
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_pgd_one_full_step_without_random_start_is_fgsm(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    via_pgd = attacks.pgd(trained_cnn, x, y, eps=0.2, steps=1, step_size=0.2, random_start=False)
    np.testing.assert_allclose(via_pgd, attacks.fgsm(trained_cnn, x, y, eps=0.2), atol=1e-6)


@pytest.mark.parametrize("targeted", [False, True])
def test_more_steps_and_restarts_never_help_the_model(trained_cnn, small_mnist, targeted):
    x, y = small_mnist.x_test[:200], small_mnist.y_test[:200]
    labels = (y + 1) % 10 if targeted else y

    def acc(**kw):
        x_adv = attacks.pgd(
            trained_cnn, x, labels, eps=0.1, seed=3, batch_size=64, targeted=targeted, **kw
        )
        hits = predict_labels(trained_cnn, x_adv) == labels
        return 1.0 - hits.mean() if targeted else hits.mean()  # targeted: share not hit

    by_steps = [acc(steps=k, step_size=0.02) for k in (1, 2, 5, 10, 20)]
    by_restarts = [acc(steps=3, step_size=0.02, restarts=r) for r in (1, 2, 4)]
    assert by_steps == sorted(by_steps, reverse=True), by_steps
    assert by_restarts == sorted(by_restarts, reverse=True), by_restarts
    assert by_steps[-1] < by_steps[0]  # and the monotonicity is not vacuous
    if not targeted:
        assert acc(steps=20, step_size=0.01) <= accuracy(trained_cnn, x, y) - 0.2


def test_pgd_does_not_depend_on_the_batch_size(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    kw = {"eps": 0.15, "steps": 5, "step_size": 0.05, "restarts": 2, "seed": 1}
    np.testing.assert_allclose(
        attacks.pgd(trained_cnn, x, y, batch_size=100, **kw),
        attacks.pgd(trained_cnn, x, y, batch_size=7, **kw),
        atol=1e-6,
    )


def test_targeted_pgd_reaches_its_targets(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    target = (y + 3) % 10
    x_adv = attacks.pgd(trained_cnn, x, target, eps=0.3, steps=30, step_size=0.02, targeted=True)
    assert np.abs(x_adv - x).max() <= 0.3 + 1e-6 and 0.0 <= x_adv.min() and x_adv.max() <= 1.0
    assert (predict_labels(trained_cnn, x_adv) == target).mean() > 0.8


def test_bim_is_pgd_without_random_start(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:50], small_mnist.y_test[:50]
    np.testing.assert_allclose(
        attacks.bim(trained_cnn, x, y, eps=0.2, steps=4),
        attacks.pgd(trained_cnn, x, y, eps=0.2, steps=4, step_size=0.05, random_start=False),
    )


@pytest.mark.parametrize(
    "kwargs", [{"steps": 0}, {"restarts": 0}, {"step_size": 0.0}, {"batch_size": 0}]
)
def test_pgd_rejects_bad_settings(kwargs, random_images):
    x, y = random_images
    with pytest.raises(ValueError):
        attacks.pgd(tiny_smooth_model(), x, y, **kwargs)


def test_margin_loss_direction_ignores_logit_scale(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    sharper = with_logit_scale(trained_cnn, 50.0)
    np.testing.assert_array_equal(
        attacks.fgsm_signs(trained_cnn, x, y, loss_on="margin"),
        attacks.fgsm_signs(sharper, x, y, loss_on="margin"),
    )
    with pytest.raises(ValueError, match="loss_on"):
        attacks.fgsm_signs(trained_cnn, x, y, loss_on="softmax")


def test_pgd_effort_answers_for_every_smaller_setting(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    kw = {"eps": 0.1, "step_size": 0.01, "seed": 2}
    fooled_at = attacks.pgd_effort(trained_cnn, x, y, steps=20, restarts=3, **kw)
    assert fooled_at.shape == (3, 100) and set(np.unique(fooled_at)) <= {0, 10, 20}
    for steps, restarts in ((10, 1), (20, 1), (10, 3), (20, 2)):
        direct = accuracy(
            trained_cnn, attacks.pgd(trained_cnn, x, y, steps=steps, restarts=restarts, **kw), y
        )
        assert attacks.effort_accuracy(fooled_at, steps, restarts) == pytest.approx(direct)


def test_extend_pgd_effort_goes_on_where_it_stopped(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    kw = {"eps": 0.1, "step_size": 0.005, "seed": 1, "batch_size": 64}
    fresh = attacks.extend_pgd_effort(trained_cnn, x, y, steps=30, restarts=3, **kw)
    part = attacks.extend_pgd_effort(trained_cnn, x, y, steps=10, restarts=2, **kw)
    assert part.fooled_at.shape == (2, 100) and list(part.steps) == [10, 10]
    more = attacks.extend_pgd_effort(trained_cnn, x, y, progress=part, steps=30, restarts=3, **kw)
    assert list(more.steps) == [30, 30, 30]
    np.testing.assert_array_equal(more.fooled_at, fresh.fooled_at)
    np.testing.assert_array_equal(more.x_last, fresh.x_last)
    assert (more.fooled_at > 0).sum() > (part.fooled_at > 0).sum()  # the steps were taken
    # Asking for less keeps what was done; other images are refused.
    same = attacks.extend_pgd_effort(trained_cnn, x, y, progress=more, steps=20, restarts=1, **kw)
    np.testing.assert_array_equal(same.fooled_at, more.fooled_at)
    with pytest.raises(ValueError, match="progress was made on 100 images"):
        attacks.extend_pgd_effort(trained_cnn, x[:50], y[:50], progress=more, **kw)


def test_pgd_steps_run_as_straight_line_code(trained_cnn, small_mnist):
    """A graph while-loop ran PGD's steps 1.6x slower here; the chunks are unrolled."""
    x, y = small_mnist.x_test[:4], small_mnist.y_test[:4]
    attacks.pgd(trained_cnn, x, y, eps=0.1, steps=12, step_size=0.01)  # chunks of 10 and 2
    cache = attacks._compiled(trained_cnn)
    for steps in (10, 2):
        graph = cache[f"pgd_chunk_{steps}"].get_concrete_function().graph
        types = {op.type for op in graph.get_operations()}
        assert not types & {"While", "StatelessWhile"}
        assert sum(t == "Sign" for t in (op.type for op in graph.get_operations())) == steps
