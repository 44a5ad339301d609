"""The course's CNN, built so that attacks can reach its logits.

Architecture (``width=1``)::

    input (28, 28, 1)
    Conv2D 32 3x3 ReLU -> MaxPooling2D 2x2 -> Conv2D 64 3x3 ReLU -> MaxPooling2D 2x2
    -> Dropout 0.25 -> Flatten -> Dense 128 ReLU -> Dropout 0.5
    Dense 10 "logits" -> Softmax "probabilities"

The softmax is its own layer so that :func:`logits_model` can cut it off: an attack must
take its loss on the logits, because a saturated softmax (outputs that round to exactly
1.0 in float32) has zero gradient and makes an attack look weak.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from helpers import engine
from helpers.data import IMAGE_SHAPE, NUM_CLASSES, validate_images

LOGITS_LAYER = "logits"
PROBABILITIES_LAYER = "probabilities"
_LOGITS_MODELS: weakref.WeakKeyDictionary[keras.Model, keras.Model] = weakref.WeakKeyDictionary()
_CHECKED: weakref.WeakSet[keras.Model] = weakref.WeakSet()


def build_cnn(
    width: int = 1, learning_rate: float = 1e-3, name: str = "cnn", dropout: bool = True
) -> keras.Model:
    """Build the CNN and give it its optimizer, Adam (``model.compile(optimizer=...)``).

    Args:
        width: multiplies the number of filters and hidden units (1 = the reference CNN,
            32/64 filters and 128 units). Wider models resist attacks better when trained
            adversarially.
        learning_rate: Adam's learning rate, > 0.
        name: the model's name (shown in summaries).
        dropout: keep the two dropout layers (rates 0.25 and 0.5). Adversarial training
            is a strong regulariser of its own and needs the capacity dropout takes away,
            so the robust models of notebook 04 are built without it.

    Returns:
        A compiled ``keras.Model`` mapping ``(n, 28, 28, 1)`` images in [0, 1] to ``(n, 10)``
        class probabilities, with layers named ``"logits"`` and ``"probabilities"``.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if not (isinstance(learning_rate, int | float) and 0 < learning_rate < 1):
        raise ValueError(f"learning_rate must be a number in (0, 1), got {learning_rate!r}")
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = keras.layers.Conv2D(32 * width, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(64 * width, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    if dropout:
        x = keras.layers.Dropout(0.25, name="dropout1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128 * width, activation="relu", name="dense")(x)
    if dropout:
        x = keras.layers.Dropout(0.5, name="dropout2")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name=LOGITS_LAYER)(x)
    probabilities = keras.layers.Softmax(name=PROBABILITIES_LAYER)(logits)
    model = keras.Model(inputs, probabilities, name=name)
    # Only the optimizer: helpers.training.train_model computes the loss itself (on the logits).
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def check_model(model: keras.Model) -> None:
    """Raise ``ValueError`` unless ``model`` follows the course's convention: MNIST images
    ``(28, 28, 1)`` in, 10 class probabilities out, through a layer named ``"logits"``
    without an activation and a softmax at the end (checked once per model)."""
    if model in _CHECKED:
        return
    fix = "build it with helpers.model.build_cnn"
    shape = tuple(model.input_shape[1:])
    if shape != IMAGE_SHAPE:
        raise ValueError(
            f"model {model.name!r} takes inputs {shape}, MNIST images are {IMAGE_SHAPE}; {fix}"
        )
    if model.output_shape[-1] != NUM_CLASSES:
        raise ValueError(
            f"model {model.name!r} has {model.output_shape[-1]} outputs, MNIST has "
            f"{NUM_CLASSES} classes; {fix}"
        )
    try:
        layer = model.get_layer(LOGITS_LAYER)
    except ValueError as err:
        raise ValueError(
            f"model {model.name!r} has no layer named {LOGITS_LAYER!r}; {fix} so "
            "attacks can take the loss on logits"
        ) from err
    if getattr(getattr(layer, "activation", None), "__name__", "") == "softmax":
        raise ValueError(
            f"model {model.name!r}: its {LOGITS_LAYER!r} layer applies a softmax, "
            "so attacks would take their loss on probabilities; give that layer "
            "no activation and add a separate Softmax layer"
        )
    last = model.layers[-1]
    if not (
        isinstance(last, keras.layers.Softmax)
        or getattr(getattr(last, "activation", None), "__name__", "") == "softmax"
    ):
        raise ValueError(
            f"model {model.name!r} does not end in a softmax, so its outputs are "
            f"not probabilities; {fix}"
        )
    _CHECKED.add(model)


def logits_model(model: keras.Model) -> keras.Model:
    """A model sharing ``model``'s weights that outputs the pre-softmax logits ``(n, 10)``.

    Made once per model and kept; the model is checked first (:func:`check_model`).
    """
    if model in _LOGITS_MODELS:
        return _LOGITS_MODELS[model]
    check_model(model)
    logits = model.get_layer(LOGITS_LAYER).output
    net = keras.Model(model.inputs, logits, name=f"{model.name}_logits")
    _LOGITS_MODELS[model] = net
    return net


def _probabilities(model: keras.Model, x: tf.Tensor) -> tf.Tensor:
    return model(x, training=False)


def predict_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n, 10)`` for images ``(n, 28, 28, 1)`` in [0, 1].

    A compiled forward pass in batches (faster than ``model.predict`` for repeated calls
    on small inputs, and silent).
    """
    check_model(model)
    (probabilities,) = engine.in_batches(model, _probabilities, [validate_images(x)])
    return probabilities


def with_logit_scale(model: keras.Model, scale: float) -> keras.Model:
    """The same classifier with its logits multiplied by ``scale`` (shared weights).

    Predictions (the arg-max) do not change, but the softmax becomes more confident for
    ``scale > 1``: a controlled way to study how saturation affects attacks. The result
    follows the course's convention ("logits" layer, then "probabilities").
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    logits = keras.layers.Rescaling(scale, name=LOGITS_LAYER)(logits_model(model)(inputs))
    probabilities = keras.layers.Softmax(name=PROBABILITIES_LAYER)(logits)
    return keras.Model(inputs, probabilities, name=f"{model.name}_x{scale:g}")
