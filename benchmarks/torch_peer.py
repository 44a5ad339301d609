"""The course's CNN in PyTorch: a benchmark-only peer for the standard training step.

The same network as :func:`helpers.model.build_cnn` (width 1: Conv2D 32 3x3 ReLU, MaxPool 2,
Conv2D 64 3x3 ReLU, MaxPool 2, Dropout 0.25, Flatten, Dense 128 ReLU, Dropout 0.5, Dense 10;
225,034 weights), trained as the course trains it: Adam (learning rate 1e-3, Keras' epsilon
1e-7), cross-entropy on the logits, batches of 128 of the same images, reshuffled every
epoch, the learning rate set before every step by the course's schedule
(:func:`helpers.training.learning_rate_at`) and the loss read back after every step, as
:func:`helpers.training.run_epoch` does.

Two variants, both plain eager PyTorch on the CPU: ``"eager"`` (the default NCHW layout) and
``"channels_last"`` (model and batches in ``torch.channels_last`` memory format, which sends
the convolutions to oneDNN's NHWC kernels, as TensorFlow's CPU kernels are NHWC).
``torch.compile`` is left out: it needs a C++ compiler at run time and minutes of compiling.

PyTorch is a benchmark-only dependency (``requirements-bench.txt``): where it does not
install or import, :func:`load_torch` says why and the benchmark reports it unavailable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from helpers.training import Schedule, learning_rate_at

#: The variants timed, in the order they run.
VARIANTS: tuple[str, ...] = ("eager", "channels_last")
#: Keras' Adam epsilon (PyTorch's default is 1e-8).
ADAM_EPSILON = 1e-7


def load_torch() -> tuple[ModuleType | None, str]:
    """Import PyTorch: ``(torch, "")``, or ``(None, reason)`` where it is missing or fails
    to import (any exception, e.g. a broken wheel)."""
    try:
        import torch
    except Exception as err:  # a peer that cannot import is only unavailable
        return None, f"{type(err).__name__}: {err}"
    return torch, ""


def torch_cnn(torch: ModuleType, width: int = 1, dropout: bool = True) -> Any:
    """The course's CNN as a ``torch.nn.Sequential`` on ``(n, 1, 28, 28)`` images, returning
    ``(n, 10)`` logits (no softmax: the loss takes the logits, as the course's does).

    ``width`` and ``dropout`` mean what they mean for :func:`helpers.model.build_cnn`.
    PyTorch's default initialisation differs from Keras' (Glorot uniform), which changes
    the weights, not the time of a step.
    """
    nn = torch.nn
    layers: list[Any] = [
        nn.Conv2d(1, 32 * width, 3),  # 28x28 -> 26x26
        nn.ReLU(),
        nn.MaxPool2d(2),  # -> 13x13
        nn.Conv2d(32 * width, 64 * width, 3),  # -> 11x11
        nn.ReLU(),
        nn.MaxPool2d(2),  # -> 5x5 (floor, as Keras' "valid" pooling)
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * width * 5 * 5, 128 * width),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128 * width, 10),
    ]
    if not dropout:
        layers = [layer for layer in layers if not isinstance(layer, nn.Dropout)]
    return nn.Sequential(*layers)


def count_parameters(module: Any) -> int:
    """Number of trainable weights of a ``torch.nn.Module`` (Keras' ``count_params``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def epoch_fn(
    torch: ModuleType,
    x: np.ndarray,
    y: np.ndarray,
    *,
    variant: str,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    lr_schedule: Schedule = "constant",
    planned_epochs: int = 1,
    dropout: bool = True,
    seed: int = 0,
) -> Callable[[], float]:
    """One training epoch of the PyTorch CNN on ``x``, per call: ``run() -> last loss``.

    ``x``: images ``(n, 28, 28, 1)`` float32 in [0, 1] (the course's layout; transposed once
    here to ``(n, 1, 28, 28)``); ``y``: integer labels ``(n,)``. ``variant``: one of
    :data:`VARIANTS`. The learning rate follows ``lr_schedule`` over ``planned_epochs``
    calls (afterwards it stays at the schedule's end). Threads: PyTorch's setting, which
    the caller sets (``torch.set_num_threads``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    channels_last = variant == "channels_last"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(seed)
    model = torch_cnn(torch, dropout=dropout).to(memory_format=memory_format)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, eps=ADAM_EPSILON)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    generator = torch.Generator().manual_seed(seed)
    n = len(images)
    steps_per_epoch = -(-n // batch_size)
    total_steps = planned_epochs * steps_per_epoch
    step_counter = itertools.count()
    cross_entropy = torch.nn.functional.cross_entropy

    def run() -> float:
        order = torch.randperm(n, generator=generator)
        loss_value = float("nan")
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            batch = images[index].contiguous(memory_format=memory_format)
            step = min(next(step_counter), total_steps)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step / total_steps, learning_rate, lr_schedule)
            optimizer.zero_grad(set_to_none=True)
            loss = cross_entropy(model(batch), labels[index])
            loss.backward()
            optimizer.step()
            loss_value = loss.item()  # as the course's loop reads its loss every step
        return loss_value

    return run
