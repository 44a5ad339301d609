"""The compute floor of a training step: the CNN's FLOPs per image, the machine's matmul rate,
and whether the CPU has bf16 instructions.

FLOPs are counted analytically, as multiply-adds × 2 (one multiply and one add each):

- a 2-D convolution, per image: ``2 · out_h · out_w · c_out · (k_h · k_w · c_in)``;
- a dense layer, per image: ``2 · n_in · n_out``;
- biases, activations, pooling, dropout and the softmax are not counted (element-wise work,
  about 2% of the course's CNN's forward FLOPs);
- backward ≈ 2 × forward: each layer needs the gradient to its input and to its weights, each
  as many multiply-adds as its forward pass. (The first convolution needs no gradient to the
  image, so the true backward of this CNN is about 4% less and the step 2.5% less.) A
  training step is therefore ``3 ×`` the forward FLOPs.

For the course's CNN (``build_cnn()``, width 1) that is 5,262,080 FLOPs forward and
15,786,240 (15.8 MFLOP) per image per training step.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

# One source: the course's training precision reads the same flags.
from helpers.model import cpu_has_bf16 as cpu_has_bf16

#: Backward pass FLOPs over forward pass FLOPs (input gradient + weight gradient).
BACKWARD_OVER_FORWARD = 2
FLOP_FORMULA = (
    "multiply-adds × 2 of the Conv2D and Dense layers (conv: 2·out_h·out_w·c_out·k_h·k_w·c_in, "
    "dense: 2·n_in·n_out; bias, activations, pooling not counted); backward = 2 × forward, "
    "so a training step is 3 × forward"
)


def conv2d_flops(
    out_h: int, out_w: int, kernel_h: int, kernel_w: int, c_in: int, c_out: int
) -> int:
    """FLOPs of one image through a 2-D convolution (no groups, no bias):
    ``2 · out_h · out_w · c_out · kernel_h · kernel_w · c_in``.

    ``out_h × out_w`` is the output's spatial size (after padding and strides), so the formula
    holds for any padding or stride."""
    return 2 * out_h * out_w * c_out * kernel_h * kernel_w * c_in


def dense_flops(n_in: int, n_out: int) -> int:
    """FLOPs of one image (one input vector of ``n_in``) through a dense layer (no bias):
    ``2 · n_in · n_out``."""
    return 2 * n_in * n_out


def forward_flops_per_image(model: keras.Model) -> int:
    """Forward-pass FLOPs of one image through ``model``'s Conv2D and Dense layers.

    The shapes come from the built model (``layer.output.shape``, ``layer.kernel.shape``), so
    the count follows the model if its width changes. Any other layer with weights (one this
    count knows nothing about) raises ``ValueError``; layers without weights (pooling,
    dropout, flatten, softmax) count as zero.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            if layer.groups != 1 or layer.data_format != "channels_last":
                raise ValueError(f"layer {layer.name!r}: only ungrouped channels-last Conv2D")
            _, out_h, out_w, c_out = layer.output.shape
            kernel_h, kernel_w, c_in, _ = layer.kernel.shape
            total += conv2d_flops(out_h, out_w, kernel_h, kernel_w, c_in, c_out)
        elif isinstance(layer, keras.layers.Dense):
            if len(layer.input.shape) != 2:
                raise ValueError(f"layer {layer.name!r}: only Dense on vectors (n, features)")
            n_in, n_out = layer.kernel.shape
            total += dense_flops(n_in, n_out)
        elif layer.weights:
            raise ValueError(f"no FLOP count for layer {layer.name!r} ({type(layer).__name__})")
    return total


def train_flops_per_image(model: keras.Model) -> int:
    """FLOPs of one image in a training step: forward + backward, ``(1 + 2) ×`` the forward
    FLOPs (see the module's docstring; the optimizer's update is per weight, not per image,
    and not counted)."""
    return (1 + BACKWARD_OVER_FORWARD) * forward_flops_per_image(model)


def matmul_fn(n: int = 2048, repeats: int = 4, seed: int = 0) -> tuple[Callable[[], None], int]:
    """A large float32 matmul in TensorFlow, the machine's practical peak: ``(run, flops)``.

    ``run()`` multiplies two fixed ``(n, n)`` float32 matrices ``repeats`` times (eager
    ``tf.linalg.matmul``: the same kernels and thread pool as training), ``flops`` is the
    work of one call, ``repeats · 2 · n³``. GFLOP/s = ``flops / seconds / 1e9``. Each product
    is forced by reading one element back to Python.
    """
    a = tf.random.stateless_uniform((n, n), seed=[seed, 1], dtype=tf.float32)
    b = tf.random.stateless_uniform((n, n), seed=[seed, 2], dtype=tf.float32)

    def run() -> None:
        for _ in range(repeats):
            float(tf.linalg.matmul(a, b)[0, 0])

    return run, repeats * 2 * n**3
