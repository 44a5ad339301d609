"""Interval bound propagation: the bounds contain every reachable value, and a proof holds
against the course's attacks."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import attacks, certify
from helpers.data import one_hot
from helpers.model import build_cnn, logits_model


@pytest.fixture(scope="module")
def cnn():
    """The course CNN with random weights (dropout layers included: IBP passes them)."""
    keras.utils.set_random_seed(3)
    return build_cnn(name="ibp_test")


def test_eps_zero_gives_the_exact_logits(cnn, random_images):
    x, _ = random_images
    _, (lower, upper) = certify.bounds_by_layer(cnn, x, 0.0)[-1]
    logits = logits_model(cnn)(x).numpy()
    np.testing.assert_allclose(lower.numpy(), logits, atol=1e-4)
    np.testing.assert_allclose(upper.numpy(), logits, atol=1e-4)


def test_sampled_images_in_the_box_stay_inside_every_layers_bounds(cnn, random_images):
    x, _ = random_images
    eps = 0.05
    bounds = dict(certify.bounds_by_layer(cnn, x, eps))
    layers = [layer.name for layer in cnn.layers[1:-1]]  # up to the logits
    inside = keras.Model(cnn.inputs, [cnn.get_layer(name).output for name in layers])
    rng = np.random.default_rng(0)
    for _ in range(10):
        corner = rng.choice([-eps, eps], x.shape)  # the box's corners stretch bounds most
        sample = np.clip(x + corner * rng.uniform(0.5, 1.0, x.shape), 0, 1).astype(np.float32)
        for name, value in zip(layers, inside(sample), strict=True):
            lower, upper = bounds[name]
            assert np.all(value.numpy() >= lower.numpy() - 1e-4), name
            assert np.all(value.numpy() <= upper.numpy() + 1e-4), name


def test_pgd_never_pushes_a_margin_below_its_lower_bound(cnn, random_images):
    """PGD maximises the loss inside the ball: the lowest margins it finds must still lie
    above the proven bounds (a bug in either would show here)."""
    x, y = random_images
    eps = 0.03
    y_onehot = one_hot(y)
    bound = certify.margin_lower_bounds(cnn, tf.constant(x), tf.constant(y_onehot), eps).numpy()
    x_adv = attacks.pgd(cnn, x, y, eps, steps=20, rel_step=0.1, seed=0)
    assert np.all(np.abs(x_adv - x) <= eps + 1e-6)
    z = logits_model(cnn)(x_adv).numpy()
    margins = (z * y_onehot).sum(1, keepdims=True) - z
    assert np.all(margins >= bound - 1e-4)
    np.testing.assert_allclose(bound[y_onehot > 0], 0.0)


def test_margin_bound_is_at_least_as_tight_as_subtracting_logit_intervals(cnn, random_images):
    x, y = random_images
    y_onehot = one_hot(y)
    _, (lower, upper) = certify.bounds_by_layer(cnn, x, 0.02)[-1]
    naive = (lower.numpy() * y_onehot).sum(1, keepdims=True) - upper.numpy()
    tight = certify.margin_lower_bounds(cnn, tf.constant(x), tf.constant(y_onehot), 0.02)
    wrong = y_onehot == 0
    assert np.all(tight.numpy()[wrong] >= naive[wrong] - 1e-4)


def _own_predictions(model, x):
    return logits_model(model)(x).numpy().argmax(1)


def test_certified_images_are_never_broken_by_the_course_attacks(trained_cnn, small_mnist):
    """At the budget where about half the test digits are certified, FGSM and PGD break
    none of the certified ones."""
    x, y = small_mnist.x_test[:200], small_mnist.y_test[:200]
    shares = {e: certify.certified_accuracy(trained_cnn, x, y, e) for e in (3e-4, 1e-3, 3e-3, 1e-2)}
    eps = min(shares, key=lambda e: abs(shares[e] - 0.5))
    proven = certify.certify(trained_cnn, x, y, eps)
    assert 0 < proven.sum() < len(x), shares
    for x_adv in (
        attacks.fgsm(trained_cnn, x, y, eps),
        attacks.pgd(trained_cnn, x, y, eps, steps=20, rel_step=0.1, seed=0),
    ):
        assert np.all(_own_predictions(trained_cnn, x_adv)[proven] == y[proven])


def test_a_larger_budget_never_certifies_more(cnn, random_images):
    x, _ = random_images
    y = _own_predictions(cnn, x)
    masks = [certify.certify(cnn, x, y, e) for e in (0.0, 1e-4, 1e-3, 1e-2, 0.1)]
    assert masks[0].all()  # at ε = 0 the proof is the prediction itself
    for smaller, larger in itertools.pairwise(masks):
        assert np.all(smaller >= larger)


def test_compiled_batches_equal_the_readable_form(cnn, random_images, monkeypatch):
    from helpers import engine

    monkeypatch.setattr(engine, "BATCH_SIZE", 3)  # several batches, the last one short
    x, _ = random_images
    y = _own_predictions(cnn, x)
    eager = certify.certified_mask(cnn, tf.constant(x), tf.constant(one_hot(y)), 1e-3)
    np.testing.assert_array_equal(certify.certify(cnn, x, y, 1e-3), eager.numpy())


def test_unsupported_layers_and_bad_budgets_are_refused(random_images):
    x, y = random_images
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.BatchNormalization(name="norm")(h)
    logits = keras.layers.Dense(10, name="logits")(h)
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))
    with pytest.raises(ValueError, match="'norm' is a BatchNormalization"):
        certify.certify(model, x, y, 0.1)
    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        certify.certify(build_cnn(), x, y, 1.5)


def test_proofs_are_taken_in_float32_even_for_a_mixed_precision_model(cnn, random_images):
    """A model training in bfloat16 keeps its weights in float32: its proofs (the monitor's
    during IBP training) are exactly those of its float32 copy, while the training loss
    may take the bounds in bfloat16, close to them (rounding, never a proof)."""
    x, y = random_images
    y_onehot = tf.constant(one_hot(y))
    mixed = build_cnn(name="ibp_test_bf16", precision="mixed_bfloat16")
    mixed.set_weights(cnn.get_weights())
    for eps in (0.0, 0.02):
        exact = certify.margin_lower_bounds(cnn, tf.constant(x), y_onehot, eps).numpy()
        proof = certify.margin_lower_bounds(mixed, tf.constant(x), y_onehot, eps).numpy()
        np.testing.assert_array_equal(proof, exact)
        rounded = certify.margin_lower_bounds(mixed, tf.constant(x), y_onehot, eps, tf.bfloat16)
        scale = np.abs(exact).max()
        np.testing.assert_allclose(rounded.numpy(), exact, atol=0.05 * scale)
    assert certify.certify(mixed, x, y, 0.02).tolist() == certify.certify(cnn, x, y, 0.02).tolist()
