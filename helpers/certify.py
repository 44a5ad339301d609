"""Proving robustness: interval bound propagation (IBP, Gowal et al. 2018).

Every attack gives an *upper* bound on robust accuracy: the share of images that no attack
we tried could break. IBP gives a *lower* bound: the share of images for which it proves
that no perturbation within ε can change the prediction. The true robust accuracy lies
between the two.

The proof pushes the whole box of images ``[x - ε, x + ε] ∩ [0, 1]`` through the network,
one layer at a time, keeping for every unit an interval ``[lower, upper]`` that contains
its value for every image in the box:

- a linear layer (Conv2D, Dense) ``W h + b``: with the box's centre ``c = (upper + lower) / 2``
  and radius ``r = (upper - lower) / 2``, the output lies in ``W c + b ± |W| r``;
- a monotone layer (ReLU, max pooling, flatten) keeps the order of its inputs, so it maps
  the lower bound to the new lower bound and the upper to the upper.

For the last layer the bounds are taken on the *margins* ``z_y - z_j`` of the true class
over every other (the last layer folded into the margin, tighter than subtracting two
separate logit intervals): the image is certified when every margin's lower bound is
positive. Each bound holds for every image in the box, so a certified image cannot be
broken by any attack; the converse does not hold (the intervals are loose), which is why
the lower bound can sit far below the attacks' upper bound.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from helpers import engine
from helpers.attacks import attack_inputs, validate_epsilon
from helpers.model import LOGITS_LAYER, check_model

Bounds = tuple[tf.Tensor, tf.Tensor]  # (lower, upper), both shaped like the layer's output


def input_box(x: tf.Tensor, eps: float | tf.Tensor) -> Bounds:
    """The images within ε of ``x`` (``(n, 28, 28, 1)`` in [0, 1]) that are valid images:
    ``[max(x - ε, 0), min(x + ε, 1)]`` per pixel."""
    return tf.maximum(x - eps, 0.0), tf.minimum(x + eps, 1.0)


def affine(layer: keras.layers.Layer, h: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """A Conv2D's or Dense layer's linear map of ``h`` with ``kernel`` (no bias, no
    activation), computed in ``h``'s dtype."""
    kernel = tf.cast(kernel, h.dtype)
    if isinstance(layer, keras.layers.Conv2D):
        return tf.nn.conv2d(h, kernel, layer.strides, layer.padding.upper())
    return tf.matmul(h, kernel)


def linear_bounds(layer: keras.layers.Layer, lower: tf.Tensor, upper: tf.Tensor) -> Bounds:
    """Bounds on ``W h + b`` for every ``h`` in ``[lower, upper]``: centre ``W c + b``,
    radius ``|W| r`` (before the layer's activation)."""
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    centre = affine(layer, centre, layer.kernel) + tf.cast(layer.bias, centre.dtype)
    radius = affine(layer, radius, tf.abs(layer.kernel))
    return centre - radius, centre + radius


def layer_bounds(layer: keras.layers.Layer, lower: tf.Tensor, upper: tf.Tensor) -> Bounds:
    """Bounds on ``layer``'s output for every input in ``[lower, upper]``."""
    if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
        lower, upper = linear_bounds(layer, lower, upper)
        if layer.activation not in (keras.activations.relu, keras.activations.linear):
            raise ValueError(f"IBP here handles ReLU and linear activations, not {layer.name!r}'s")
        return layer.activation(lower), layer.activation(upper)  # both are monotone
    if isinstance(layer, keras.layers.MaxPooling2D | keras.layers.Flatten | keras.layers.ReLU):
        # monotone: the order of the bounds is kept. ``call`` computes in the bounds' dtype
        # (calling the layer itself would cast them to its own, bfloat16 in mixed precision)
        return layer.call(lower), layer.call(upper)
    if isinstance(layer, keras.layers.Dropout | keras.layers.InputLayer):
        return lower, upper  # the identity when the model predicts
    raise ValueError(
        f"IBP here handles Conv2D, Dense, ReLU, MaxPooling2D, Flatten and Dropout layers; "
        f"layer {layer.name!r} is a {type(layer).__name__}"
    )


def hidden_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers between the input and the logits layer, in order (the course's CNN is
    a chain; see :func:`helpers.model.build_cnn`)."""
    check_model(model)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    return layers[: [layer.name for layer in layers].index(LOGITS_LAYER)]


def bounds_by_layer(model: keras.Model, x: tf.Tensor, eps: float) -> list[tuple[str, Bounds]]:
    """``[(layer name, (lower, upper)), ...]``: the box around ``x`` and its bounds after
    every layer up to and including the logits. For looking inside; certification uses
    the tighter :func:`margin_lower_bounds`."""
    lower, upper = input_box(tf.convert_to_tensor(x, tf.float32), eps)
    bounds = [("input", (lower, upper))]
    for layer in [*hidden_layers(model), model.get_layer(LOGITS_LAYER)]:
        lower, upper = layer_bounds(layer, lower, upper)
        bounds.append((layer.name, (lower, upper)))
    return bounds


def margin_lower_bounds(
    model: keras.Model,
    x: tf.Tensor,
    y_onehot: tf.Tensor,
    eps: float | tf.Tensor,
    dtype: tf.DType = tf.float32,
) -> tf.Tensor:
    """Lower bounds ``(n, 10)`` on the margins ``z_y - z_j`` of the true class ``y`` over
    every class ``j``, valid for every image within ε of ``x`` (0 where ``j = y``).

    ``x``: ``(n, 28, 28, 1)`` in [0, 1]; ``y_onehot``: ``(n, 10)``. The margin is linear in
    the last hidden layer ``h``: ``(w_y - w_j) · h + (b_y - b_j)``, bounded as in
    :func:`linear_bounds` with one weight vector ``w_y - w_j`` per class. ``dtype``: what
    the hidden layers' bounds are computed in: float32 for a proof; IBP training may
    take ``tf.bfloat16``, whose rounding can move a bound a little either way (fine for a
    loss, never for a proof); the margins are computed in float32 either way."""
    lower, upper = input_box(tf.cast(x, dtype), tf.cast(eps, dtype))
    for layer in hidden_layers(model):
        lower, upper = layer_bounds(layer, lower, upper)
    logits = model.get_layer(LOGITS_LAYER)
    centre = tf.cast((upper + lower) / 2, tf.float32)  # (n, units)
    radius = tf.cast((upper - lower) / 2, tf.float32)
    w_true = tf.matmul(y_onehot, logits.kernel, transpose_b=True)  # (n, units): w_y per image
    w_diff = w_true[:, :, None] - logits.kernel[None]  # (n, units, 10): w_y - w_j
    b_diff = tf.reduce_sum(y_onehot * logits.bias, 1, keepdims=True) - logits.bias  # (n, 10)
    margin_centre = tf.einsum("nu,nuj->nj", centre, w_diff) + b_diff
    margin_radius = tf.einsum("nu,nuj->nj", radius, tf.abs(w_diff))
    return margin_centre - margin_radius


def worst_case_logits(
    model: keras.Model,
    x: tf.Tensor,
    y_onehot: tf.Tensor,
    eps: float | tf.Tensor,
    dtype: tf.DType = tf.float32,
) -> tf.Tensor:
    """Logits ``(n, 10)`` worse than any image within ε can give: ``-margin_lower_bounds``
    (the true class at 0, every other class as far above it as the bounds allow). Their
    cross-entropy is IBP training's verified loss; their argmax is ``y`` only for a
    certified image (ties aside). ``dtype``: as in :func:`margin_lower_bounds`."""
    return -margin_lower_bounds(model, x, y_onehot, eps, dtype)


def certified_mask(
    model: keras.Model, x: tf.Tensor, y_onehot: tf.Tensor, eps: float | tf.Tensor
) -> tf.Tensor:
    """``(n,)`` booleans: True where IBP proves the prediction is ``y`` for every image
    within ε of ``x`` (every margin over another class has a positive lower bound)."""
    margins = margin_lower_bounds(model, x, y_onehot, eps)
    return tf.reduce_all((margins > 0) | (y_onehot > 0), axis=1)


def certify(model: keras.Model, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """``(n,)`` booleans: which images of ``(x, y)`` IBP certifies at ``eps`` (see
    :func:`certified_mask`). ``x``: ``(n, 28, 28, 1)`` in [0, 1]; ``y``: labels, int or
    one-hot. Compiled and batched by :mod:`helpers.engine`; the same numbers as calling
    :func:`certified_mask` on the whole array."""
    validate_epsilon(eps)
    x, y_onehot = attack_inputs(model, x, y)
    return engine.in_batches(model, certified_mask, [x, y_onehot], [eps])[0]


def certified_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, eps: float) -> float:
    """The share of images in [0, 1] that IBP proves robust at ``eps``: a lower bound on
    robust accuracy under *every* attack within ε (an attack gives an upper bound)."""
    return float(certify(model, x, y, eps).mean())


def interval_widths(model: keras.Model, x: np.ndarray, eps: float) -> dict[str, float]:
    """``{layer name: mean width of its units' intervals}`` for the box around the images
    ``x`` ``(n, 28, 28, 1)``: how the uncertainty grows as the box passes through the
    network (the identity layers, dropout and flatten, left out)."""
    validate_epsilon(eps)
    return {
        name: float(tf.reduce_mean(upper - lower))
        for name, (lower, upper) in bounds_by_layer(model, x, eps)
        if not name.startswith(("dropout", "flatten"))
    }
