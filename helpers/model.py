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

import os
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from helpers import engine
from helpers.data import IMAGE_SHAPE, NUM_CLASSES, validate_images

LOGITS_LAYER = "logits"
PROBABILITIES_LAYER = "probabilities"
#: The ``/proc/cpuinfo`` flags that mean native bfloat16 arithmetic (AVX512-BF16, Intel AMX).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
PRECISIONS: tuple[str, ...] = ("float32", "mixed_bfloat16")
_LOGITS_MODELS: weakref.WeakKeyDictionary[keras.Model, keras.Model] = weakref.WeakKeyDictionary()
_CHECKED: weakref.WeakSet[keras.Model] = weakref.WeakSet()
_BF16_COPIES: weakref.WeakKeyDictionary[keras.Model, keras.Model] = weakref.WeakKeyDictionary()


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has native bf16 instructions (``avx512_bf16`` or ``amx_bf16`` among the
    ``flags`` of Linux's ``/proc/cpuinfo``); ``False`` where that file cannot be read (other
    systems), as without those instructions bf16 runs emulated and slower than float32."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and BF16_FLAGS & set(value.split()):
            return True
    return False


def training_precision() -> str:
    """How models train on this machine: ``"mixed_bfloat16"`` where the CPU computes in
    bfloat16 natively (about twice as fast there), else ``"float32"``. The environment
    variable ``MNIST_AD_PRECISION`` (``float32`` or ``mixed_bfloat16``) overrides it.

    Training uses it, and Square's search (:func:`helpers.autoattack.fast_margins`, whose
    findings the float32 model confirms). A trained model is copied into float32
    (:func:`in_float32`) before anything evaluates or attacks it, so every gradient of an
    attack and every reported prediction is float32."""
    chosen = os.environ.get("MNIST_AD_PRECISION", "").strip()
    if chosen:
        if chosen not in PRECISIONS:
            raise ValueError(
                f"MNIST_AD_PRECISION={chosen!r}: use one of {PRECISIONS}, or unset it to let "
                "the course choose by the CPU"
            )
        return chosen
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def build_cnn(
    width: int = 1,
    learning_rate: float = 1e-3,
    name: str = "cnn",
    dropout: bool = True,
    precision: str = "float32",
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
        precision: ``"float32"``, or ``"mixed_bfloat16"`` for training where the CPU has
            bf16 (:func:`training_precision`): the hidden layers compute in bfloat16 and
            keep float32 weights; the logits and probabilities stay float32.

    Returns:
        A compiled ``keras.Model`` mapping ``(n, 28, 28, 1)`` images in [0, 1] to ``(n, 10)``
        class probabilities, with layers named ``"logits"`` and ``"probabilities"``.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if not (isinstance(learning_rate, int | float) and 0 < learning_rate < 1):
        raise ValueError(f"learning_rate must be a number in (0, 1), got {learning_rate!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    hidden = {"dtype": precision}
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = keras.layers.Conv2D(32 * width, 3, activation="relu", name="conv1", **hidden)(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1", **hidden)(x)
    x = keras.layers.Conv2D(64 * width, 3, activation="relu", name="conv2", **hidden)(x)
    x = keras.layers.MaxPooling2D(2, name="pool2", **hidden)(x)
    if dropout:
        x = keras.layers.Dropout(0.25, name="dropout1", **hidden)(x)
    x = keras.layers.Flatten(name="flatten", **hidden)(x)
    x = keras.layers.Dense(128 * width, activation="relu", name="dense", **hidden)(x)
    if dropout:
        x = keras.layers.Dropout(0.5, name="dropout2", **hidden)(x)
    logits = keras.layers.Dense(NUM_CLASSES, name=LOGITS_LAYER, dtype="float32")(x)
    probabilities = keras.layers.Softmax(name=PROBABILITIES_LAYER, dtype="float32")(logits)
    model = keras.Model(inputs, probabilities, name=name)
    # Only the optimizer: helpers.training.train_model computes the loss itself (on the logits).
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def in_float32(model: keras.Model, **build: object) -> keras.Model:
    """The network of ``model`` (built by :func:`build_cnn` with arguments ``build``)
    computing in float32: a fresh float32 build holding the same weights. A mixed-precision
    model keeps its weights in float32, so the copy is exact; only the arithmetic changes."""
    copy = build_cnn(name=model.name, **{**build, "precision": "float32"})
    copy.set_weights(model.get_weights())
    return copy


def in_bfloat16(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose hidden layers compute in bfloat16, its ``"logits"`` and
    ``"probabilities"`` layers in float32, holding ``model``'s current weights.

    A forward pass through it takes about 0.4x the float32 time where the CPU has bf16
    (:func:`cpu_has_bf16`); its logits differ from the float32 model's by a few
    hundredths. So it may only guide a search whose findings the float32 model confirms
    (:func:`helpers.autoattack.fast_margins`), never report a result. The copy is made once
    per model; each call refreshes its weights, in case ``model`` has trained since.
    """

    def in_bf16(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if layer.name not in (LOGITS_LAYER, PROBABILITIES_LAYER):
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    if model not in _BF16_COPIES:
        _BF16_COPIES[model] = keras.models.clone_model(model, clone_function=in_bf16)
    copy = _BF16_COPIES[model]
    copy.set_weights(model.get_weights())
    return copy


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
