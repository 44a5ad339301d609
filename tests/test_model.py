import keras
import numpy as np
import pytest

from helpers.model import (
    build_cnn,
    cpu_has_bf16,
    in_bfloat16,
    in_float32,
    logits_model,
    training_precision,
    with_logit_scale,
)


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
        {"precision": "float16"},
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


def test_mixed_precision_computes_hidden_layers_in_bf16_and_logits_in_float32(random_images):
    x, _ = random_images
    model = build_cnn(precision="mixed_bfloat16")
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)  # the weights stay float32
    assert logits_model(model)(x).dtype == "float32"
    copy = in_float32(model)
    assert copy.get_layer("conv1").compute_dtype == "float32"
    for a, b in zip(model.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the copy holds exactly the same weights
    # the same network: the logits agree to bfloat16's precision (about 3 digits)
    np.testing.assert_allclose(logits_model(copy)(x), logits_model(model)(x), atol=0.05)


def test_bfloat16_copy_computes_in_bf16_and_follows_later_training(random_images):
    x, _ = random_images
    model = build_cnn()
    copy = in_bfloat16(model)
    assert copy.get_layer("conv1").compute_dtype == "bfloat16"
    assert copy.get_layer("logits").compute_dtype == "float32"
    assert copy.get_layer("probabilities").compute_dtype == "float32"
    np.testing.assert_allclose(logits_model(copy)(x), logits_model(model)(x), atol=0.05)
    assert not np.array_equal(logits_model(copy)(x), logits_model(model)(x))  # really bf16
    model.get_layer("logits").bias.assign(np.arange(10, dtype="float32"))  # "trained" since
    again = in_bfloat16(model)
    assert again is copy  # made once per model ...
    np.testing.assert_array_equal(again.get_layer("logits").bias, np.arange(10))  # ... kept current
    np.testing.assert_allclose(logits_model(again)(x), logits_model(model)(x), atol=0.05)


def test_training_precision_follows_the_cpu_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv("MNIST_AD_PRECISION", raising=False)
    assert training_precision() == ("mixed_bfloat16" if cpu_has_bf16() else "float32")
    monkeypatch.setenv("MNIST_AD_PRECISION", "float32")
    assert training_precision() == "float32"
    monkeypatch.setenv("MNIST_AD_PRECISION", "half")
    with pytest.raises(ValueError, match="MNIST_AD_PRECISION"):
        training_precision()
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse2 avx512f\n")
    assert cpu_has_bf16(info) is False
    info.write_text("processor : 0\nflags : fpu avx512_bf16 avx512f\n")
    assert cpu_has_bf16(info) is True
    assert cpu_has_bf16(tmp_path / "missing") is False
