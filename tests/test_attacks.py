import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_smooth_model

from helpers import attacks, engine
from helpers.data import one_hot
from helpers.evaluation import accuracy, predict_labels
from helpers.model import logits_model, predict_probabilities, with_logit_scale


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


@pytest.mark.parametrize("loss_on", attacks.LOSSES)
@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_in_one_compiled_step_equals_signs_then_step(loss_on, targeted, random_images):
    """fgsm's compiled step gives, bit for bit, the readable two-step form: the direction
    (fgsm_signs) and then the step along it (apply_signs); y=None uses the predictions."""
    x, y = random_images
    model = tiny_smooth_model()
    for labels in (y, None) if not targeted else (y,):
        signs = attacks.fgsm_signs(model, x, labels, targeted=targeted, loss_on=loss_on)
        for eps in (0.0, 0.1, 0.3):
            got = attacks.fgsm(model, x, labels, eps, targeted=targeted, loss_on=loss_on)
            np.testing.assert_array_equal(got, attacks.apply_signs(x, signs, eps))


def test_fgsm_sign_matches_finite_differences(random_images):
    x, y = random_images
    model = tiny_smooth_model()
    signs = attacks.fgsm_signs(model, x[:2], y[:2])
    net = logits_model(model)
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
    assert attacks.saturated_share(model(x).numpy()) == 1.0  # beyond the clip
    predicted = predict_labels(model, x)
    probs_signs = attacks.fgsm_signs(model, x, predicted, loss_on="probabilities")
    logit_signs = attacks.fgsm_signs(model, x, predicted, loss_on="logits")
    assert attacks.zero_gradient_share(probs_signs)["images"] == 1.0
    assert attacks.zero_gradient_share(logit_signs) == {"pixels": 0.0, "images": 0.0}


def test_saturated_share_counts_exactly_the_images_the_mistaken_loss_cannot_move(trained_cnn):
    clip = np.float32(1 - 1e-7)  # 0.99999988: at the clip's end the gradient still passes
    above = np.nextafter(clip, np.float32(1))
    probabilities = np.zeros((4, 10), np.float32)
    probabilities[:, 0] = [1.0, above, clip, 0.5]
    assert attacks.saturated_share(probabilities) == 0.5
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (64, 28, 28, 1)).astype(np.float32)
    shares = []
    for scale in (1.0, 30.0, 300.0):  # the same predictions, ever more saturated
        sharper = with_logit_scale(trained_cnn, scale)
        p = predict_probabilities(sharper, x)
        predicted = p.argmax(axis=1)
        dead = attacks.fgsm_signs(sharper, x, predicted, loss_on="probabilities") == 0
        shares.append(attacks.saturated_share(p))
        assert dead.reshape(len(x), -1).all(axis=1).mean() == shares[-1], scale
    assert shares[0] < shares[-1] and any(0 < share < 1 for share in shares), shares


def test_pgd_stays_in_budget_and_range(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:64], small_mnist.y_test[:64]
    x_adv = attacks.pgd(trained_cnn, x, y, eps=0.1, steps=5, restarts=2)
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_pgd_one_full_step_without_random_start_is_fgsm(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    via_pgd = attacks.pgd(trained_cnn, x, y, eps=0.2, steps=1, rel_step=1.0, random_start=False)
    np.testing.assert_allclose(via_pgd, attacks.fgsm(trained_cnn, x, y, eps=0.2), atol=1e-6)


@pytest.mark.parametrize("targeted", [False, True])
def test_more_steps_and_restarts_never_help_the_model(trained_cnn, small_mnist, targeted):
    x, y = small_mnist.x_test[:200], small_mnist.y_test[:200]
    labels = (y + 1) % 10 if targeted else y

    def acc(**kw):
        x_adv = attacks.pgd(trained_cnn, x, labels, eps=0.1, seed=3, targeted=targeted, **kw)
        hits = predict_labels(trained_cnn, x_adv) == labels
        return 1.0 - hits.mean() if targeted else hits.mean()  # targeted: share not hit

    by_steps = [acc(steps=k, rel_step=0.2) for k in (1, 2, 5, 10, 20)]
    by_restarts = [acc(steps=3, rel_step=0.2, restarts=r) for r in (1, 2, 4)]
    assert by_steps == sorted(by_steps, reverse=True), by_steps
    assert by_restarts == sorted(by_restarts, reverse=True), by_restarts
    assert by_steps[-1] < by_steps[0]  # and the monotonicity is not vacuous
    if not targeted:
        assert acc(steps=20, rel_step=0.1) <= accuracy(trained_cnn, x, y) - 0.2


def test_pgd_does_not_depend_on_the_batch_size(trained_cnn, small_mnist, monkeypatch):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    kw = {"eps": 0.15, "steps": 5, "rel_step": 1 / 3, "restarts": 2, "seed": 1}
    whole = attacks.pgd(trained_cnn, x, y, **kw)
    monkeypatch.setattr(engine, "BATCH_SIZE", 7)
    np.testing.assert_array_equal(attacks.pgd(trained_cnn, x, y, **kw), whole)


def test_targeted_pgd_reaches_its_targets(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    target = (y + 3) % 10
    x_adv = attacks.pgd(trained_cnn, x, target, eps=0.3, steps=30, rel_step=0.07, targeted=True)
    assert np.abs(x_adv - x).max() <= 0.3 + 1e-6 and 0.0 <= x_adv.min() and x_adv.max() <= 1.0
    assert (predict_labels(trained_cnn, x_adv) == target).mean() > 0.8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"restarts": 0},
        {"rel_step": 0.0},
        {"rel_step": -1.0},
        {"rel_step": float("inf")},
        {"steps": True},
        {"eps": True},
    ],
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
    kw = {"eps": 0.1, "rel_step": 0.1, "seed": 2}
    effort = attacks.pgd_effort(trained_cnn, x, y, steps=20, restarts=3, **kw)
    assert effort.fooled_at.shape == (3, 100) and effort.fooled_at.max() <= 20
    assert list(effort.steps) == [20, 20, 20]
    for steps, restarts in ((7, 1), (20, 1), (10, 3), (13, 2)):
        direct = accuracy(
            trained_cnn, attacks.pgd(trained_cnn, x, y, steps=steps, restarts=restarts, **kw), y
        )
        assert attacks.effort_accuracy(effort.fooled_at, steps, restarts) == pytest.approx(direct)


def test_pgd_effort_goes_on_where_it_stopped(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    kw = {"eps": 0.1, "rel_step": 0.05, "seed": 1}
    fresh = attacks.pgd_effort(trained_cnn, x, y, steps=30, restarts=3, **kw)
    part = attacks.pgd_effort(trained_cnn, x, y, steps=7, restarts=2, **kw)
    assert part.fooled_at.shape == (2, 100) and list(part.steps) == [7, 7]
    more = attacks.pgd_effort(trained_cnn, x, y, earlier=part, steps=30, restarts=3, **kw)
    assert list(more.steps) == [30, 30, 30]
    np.testing.assert_array_equal(more.fooled_at, fresh.fooled_at)
    np.testing.assert_array_equal(more.x_last, fresh.x_last)
    assert (more.fooled_at > 0).sum() > (part.fooled_at > 0).sum()  # the steps were taken
    # Asking for less keeps what was done; other images are refused.
    same = attacks.pgd_effort(trained_cnn, x, y, earlier=more, steps=20, restarts=1, **kw)
    np.testing.assert_array_equal(same.fooled_at, more.fooled_at)
    with pytest.raises(ValueError, match="earlier was run on 100 images"):
        attacks.pgd_effort(trained_cnn, x[:50], y[:50], earlier=more, **kw)


def readable_pgd(model, x, y, eps, steps, rel_step, restarts, seed):
    """PGD as the textbook writes it: every restart, every step, every example, eagerly
    (no compiling, no batches, nobody leaves early); each example keeps the first iterate
    that fools the model, else its highest-loss final iterate over the restarts."""
    y_onehot = tf.one_hot(y, 10)
    best, best_loss = x.copy(), np.full(len(x), -np.inf, np.float32)
    fooled = np.zeros(len(x), bool)
    for restart in range(restarts):
        x_adv = tf.constant(attacks.uniform_start(x, eps, seed, restart))
        found = np.zeros(len(x), bool)
        kept = np.zeros_like(x)
        for step in range(steps + 1):
            x_next, logits, loss = attacks.pgd_step(model, x, x_adv, y_onehot, eps, rel_step * eps)
            if step > 0:
                new = (logits.numpy().argmax(1) != y) & ~found & ~fooled
                kept[new], found = x_adv.numpy()[new], found | new
            x_adv = x_next if step < steps else x_adv
        loss = loss.numpy()
        last = ~found & ~fooled & (loss > best_loss)
        best[found], best[last], best_loss[last] = kept[found], x_adv.numpy()[last], loss[last]
        fooled |= found
    return best


def test_fast_pgd_equals_the_readable_form(trained_cnn, small_mnist, monkeypatch):
    """The engine (compiled, in batches, fooled examples leaving early) changes no number."""
    x, y = small_mnist.x_test[:60], small_mnist.y_test[:60]
    monkeypatch.setattr(engine, "BATCH_SIZE", 16)
    for eps, steps, restarts in ((0.1, 6, 2), (0.2, 3, 3)):
        expected = readable_pgd(trained_cnn, x, y, eps, steps, 0.3, restarts, seed=5)
        got = attacks.pgd(
            trained_cnn, x, y, eps, steps=steps, rel_step=0.3, restarts=restarts, seed=5
        )
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_pgd_highest_loss_keeps_the_highest_loss_iterate(trained_cnn, small_mnist):
    """It walks the same path as :func:`pgd` (restart 0) without stopping, so its loss is
    never below that of pgd's first success, and it takes every step on every image."""
    x, y = small_mnist.x_test[:80], small_mnist.y_test[:80]
    settings = dict(steps=10, rel_step=0.25, seed=2)
    full = attacks.pgd_highest_loss(trained_cnn, x, y, 0.2, **settings)
    first = attacks.pgd(trained_cnn, x, y, 0.2, **settings)
    assert full.dtype == np.float32 and np.abs(full - x).max() <= 0.2 + 1e-6
    assert full.min() >= 0 and full.max() <= 1

    def loss(images):
        return keras.losses.categorical_crossentropy(
            one_hot(y), logits_model(trained_cnn)(images), from_logits=True
        ).numpy()

    assert (loss(full) >= loss(first) - 1e-5).all()
    assert loss(full).mean() > loss(first).mean() + 1.0, (loss(full).mean(), loss(first).mean())
