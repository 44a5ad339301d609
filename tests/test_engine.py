import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_smooth_model

from helpers import attacks, engine
from helpers.data import one_hot


@pytest.mark.parametrize("batch_size", [1, 3, 8, 256])
def test_in_batches_equals_the_function_on_the_whole_array(random_images, batch_size, monkeypatch):
    x, y = random_images
    model = tiny_smooth_model()
    y_onehot = one_hot(y)
    eager = attacks.pgd_step(model, tf.constant(x), tf.constant(x), y_onehot, 0.1, 0.05)
    args = (model, attacks.pgd_step, [x, x, y_onehot], [0.1, 0.05, 1.0])
    given = engine.in_batches(*args, batch_size=batch_size)  # as Square's search passes it
    monkeypatch.setattr(engine, "BATCH_SIZE", batch_size)
    for batched in (engine.in_batches(*args), given):
        assert len(batched) == 3
        for got, want in zip(batched, eager, strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


def test_batches_side_by_side_give_what_one_at_a_time_gives(trained_cnn, small_mnist, monkeypatch):
    """Two batches computed at once (the engine's threads) give every number, to the last
    bit, that the same batches give computed one after another."""
    from concurrent.futures import ThreadPoolExecutor

    x, y = small_mnist.x_test[:300], small_mnist.y_test[:300]
    args = (trained_cnn, attacks.pgd_step, [x, x, one_hot(y)], [0.2, 0.05, 1.0])
    side_by_side = engine.in_batches(*args, batch_size=64)
    monkeypatch.setattr(engine, "_POOL", ThreadPoolExecutor(1))
    one_at_a_time = engine.in_batches(*args, batch_size=64)
    for got, want in zip(side_by_side, one_at_a_time, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("n", "batch_size", "size"),
    [(1000, 256, 256), (1000, 1024, 500), (100, 1024, 64), (50, 1024, 64), (8, 3, 3)],
)
def test_a_single_large_batch_is_shared_between_the_threads(n, batch_size, size):
    assert engine.split_size(n, batch_size) == size


def test_one_graph_per_model_function_and_options(random_images):
    x, y = random_images
    model = tiny_smooth_model()
    y_onehot = one_hot(y)
    first = engine.compiled(model, attacks.loss_gradient, [x, y_onehot], 0, loss_on="logits")
    again = engine.compiled(
        model, attacks.loss_gradient, [x[:3], y_onehot[:3]], 0, loss_on="logits"
    )
    other = engine.compiled(model, attacks.loss_gradient, [x, y_onehot], 0, loss_on="margin")
    assert first is again and first is not other
    assert (
        engine.compiled(tiny_smooth_model(1), attacks.loss_gradient, [x, y_onehot], 0) is not first
    )


def test_empty_input_gives_empty_output(random_images):
    x, _ = random_images
    (probabilities,) = engine.in_batches(
        tiny_smooth_model(), lambda model, images: model(images), [x[:0]]
    )
    assert probabilities.shape == (0, 10)


def test_no_rows_through_a_convolution(trained_cnn):
    """A zero-size batch through the CNN's convolutions fails inside TensorFlow; the engine
    answers with empty outputs of the right shapes instead (PGD's later restarts meet this
    when an earlier restart fooled every image)."""
    x = np.zeros((0, 28, 28, 1), np.float32)
    out = engine.in_batches(
        trained_cnn, attacks.pgd_step, [x, x, np.zeros((0, 10), np.float32)], [0.1, 0.01, 1.0]
    )
    assert [a.shape for a in out] == [(0, 28, 28, 1), (0, 10), (0,)]


def test_restarts_after_every_image_is_fooled(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:50], small_mnist.y_test[:50]
    x_adv = attacks.pgd(trained_cnn, x, y, 0.5, steps=10, rel_step=0.25, restarts=3)
    assert (trained_cnn(x_adv).numpy().argmax(1) != y).all()
