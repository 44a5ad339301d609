"""The speed layer beneath the attacks: compile a function once per model, run it in batches.

The attacks in :mod:`helpers.attacks` are written as the algorithm, on tensors. This module
makes them fast without changing what they compute, so a reader can skip it:

- :func:`compiled` traces ``fn(model, ...)`` once per model with ``tf.function``, with a
  free batch dimension, so every batch size reuses one graph;
- :func:`in_batches` runs it over NumPy arrays, :data:`BATCH_SIZE` images at a time, two
  batches at once (:data:`CONCURRENT_BATCHES`), and joins the results.

An example's result does not depend on which other examples share its batch: the batch size
and dropping finished examples change a number in its last bits at most (a batch of another
size can round differently), and running batches side by side changes none at all
(``tests/test_engine.py`` checks the first against ``fn`` called eagerly on the whole array,
the second bit for bit against one batch at a time).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import keras
import numpy as np
import tensorflow as tf

#: Images per compiled call of every attack and prediction (smaller batches keep their
#: activations in the CPU's cache; ``benchmarks/README.md`` has the measurements).
BATCH_SIZE = 256

#: Batches computed at the same time, each from its own thread. One batch at a time leaves
#: the cores idle about a fifth of the time, between and inside TensorFlow's operations; a
#: second batch in flight fills those gaps (``benchmarks/README.md``). A batch's result
#: does not depend on what runs beside it.
CONCURRENT_BATCHES = 2

#: No share of a split batch is smaller than this: a small batch gains nothing.
MIN_SPLIT = 64

_POOL: ThreadPoolExecutor


def _new_pool() -> None:
    """Start the pool of :func:`side_by_side`: at import, and again in a forked process,
    which inherits the pool but not its threads."""
    global _POOL
    _POOL = ThreadPoolExecutor(CONCURRENT_BATCHES, thread_name_prefix="engine")


_new_pool()
os.register_at_fork(after_in_child=_new_pool)

_CACHE: weakref.WeakKeyDictionary[keras.Model, dict[Any, Callable]] = weakref.WeakKeyDictionary()


def compiled(
    model: keras.Model, fn: Callable, arrays: Sequence[np.ndarray], n_scalars: int, **options: Any
) -> Callable:
    """``fn(model, *arrays, *scalars, **options)`` as a ``tf.function``, traced once per model.

    ``arrays`` (batched along axis 0) fix the input signature with a free batch size;
    ``n_scalars`` float32 scalars follow them as tensors, so changing their values (a new
    ε, say) reuses the graph; ``options`` (strings, booleans) are fixed at tracing time.
    """
    specs = tuple(
        tf.TensorSpec([None, *a.shape[1:]], tf.as_dtype(a.dtype), name=f"a{i}")
        for i, a in enumerate(arrays)
    ) + tuple(tf.TensorSpec([], tf.float32, name=f"s{i}") for i in range(n_scalars))
    key = (fn, specs, tuple(sorted(options.items())))
    cache = _CACHE.setdefault(model, {})
    if key not in cache:

        @tf.function(input_signature=list(specs))
        def run(*args: tf.Tensor) -> Any:
            return fn(model, *args, **options)

        cache[key] = run
    return cache[key]


def in_batches(
    model: keras.Model,
    fn: Callable,
    arrays: Sequence[np.ndarray],
    scalars: Sequence[float] = (),
    batch_size: int | None = None,
    **options: Any,
) -> tuple[np.ndarray, ...]:
    """Run ``fn`` (see :func:`compiled`) over ``arrays`` in batches of ``batch_size``
    (``None``: :data:`BATCH_SIZE`).

    Up to :data:`CONCURRENT_BATCHES` batches run at once (:func:`split_size` says how large).
    Returns ``fn``'s outputs as NumPy arrays, batches joined along axis 0 (a tuple even when
    ``fn`` returns a single tensor).
    """
    batch_size = batch_size or BATCH_SIZE
    run = compiled(model, fn, arrays, len(scalars), **options)
    values = [np.float32(s) for s in scalars]
    if not len(arrays[0]):  # no rows: run one row of zeros for the output shapes, keep none
        # (a zero-size batch through a convolution can fail inside TensorFlow's graph)
        row = [np.zeros((1, *a.shape[1:]), a.dtype) for a in arrays]
        return tuple(t[:0] for t in _numpy(run(*row, *values)))
    size = split_size(len(arrays[0]), batch_size)

    def one_batch(start: int) -> list[np.ndarray]:
        return _numpy(run(*(a[start : start + size] for a in arrays), *values))

    parts = side_by_side(one_batch, range(0, len(arrays[0]), size))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def side_by_side(function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[function(item) for item in items]``, :data:`CONCURRENT_BATCHES` items at a time
    (each item alone where there is only one)."""
    if len(items) == 1:
        return [function(items[0])]
    return list(_POOL.map(function, items))


def split_size(n: int, batch_size: int) -> int:
    """The batch size :func:`in_batches` uses for ``n`` images: ``batch_size``, or, where
    ``n`` fills fewer than :data:`CONCURRENT_BATCHES` such batches, an even share of ``n``
    per thread (so that a single batch is shared between the threads), but not below
    :data:`MIN_SPLIT` images."""
    shared = -(-n // CONCURRENT_BATCHES)  # n split evenly between the threads
    return max(1, min(batch_size, max(shared, MIN_SPLIT)))


def _numpy(out: Any) -> list[np.ndarray]:
    """A compiled function's output(s) as a list of NumPy arrays."""
    return [t.numpy() for t in (out if isinstance(out, tuple | list) else (out,))]
