import keras
import numpy as np
import pytest

from helpers.model import build_cnn, logits_model, with_logit_scale


def test_cnn_outputs_probabilities_from_a_logits_layer(random_images):
    x, _ = random_images
    model = build_cnn()
    probs = model(x).numpy()
    assert probs.shape == (8, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    logits = logits_model(model)(x).numpy()
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), probs, rtol=1e-5, atol=1e-7)
    assert [layer.name for layer in model.layers[-2:]] == ["logits", "probabilities"]


def test_width_scales_capacity():
    assert build_cnn(width=2).count_params() > 2 * build_cnn().count_params()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"width": 1.5},
        {"width": True},
        {"learning_rate": 0},
        {"learning_rate": float("inf")},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        build_cnn(**kwargs)


def test_logits_model_needs_a_logits_layer():
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    with pytest.raises(ValueError, match="no layer named 'logits'"):
        logits_model(keras.Model(inputs, outputs))


def test_logit_scale_keeps_predictions_and_sharpens_probabilities(random_images):
    x, _ = random_images
    model = build_cnn()
    sharper = with_logit_scale(model, 5.0)
    np.testing.assert_allclose(logits_model(sharper)(x), 5.0 * logits_model(model)(x), rtol=1e-5)
    assert (sharper(x).numpy().argmax(1) == model(x).numpy().argmax(1)).all()
    assert sharper(x).numpy().max(1).mean() > model(x).numpy().max(1).mean()
    with pytest.raises(ValueError):
        with_logit_scale(model, 0)


def _model(inputs_shape=(28, 28, 1), classes=10, logits_activation=None, softmax=True):
    inputs = keras.Input(inputs_shape)
    x = keras.layers.Flatten()(inputs)
    out = keras.layers.Dense(classes, activation=logits_activation, name="logits")(x)
    if softmax:
        out = keras.layers.Softmax(name="probabilities")(out)
    return keras.Model(inputs, out)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"inputs_shape": (32, 32, 1)}, r"takes inputs \(32, 32, 1\)"),
        ({"classes": 5}, "has 5 outputs"),
        ({"logits_activation": "softmax"}, "applies a softmax"),
        ({"softmax": False}, "does not end in a softmax"),
    ],
)
def test_models_outside_the_convention_are_refused(kwargs, message):
    from helpers.model import predict_probabilities

    x = np.zeros((2, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=message):
        predict_probabilities(_model(**kwargs), x)
