"""Timing helpers and the measurements of ``make bench`` (one function per number).

Conventions: every timed call is warmed up first (the first call of a ``tf.function``
traces it), repeated, and summarised by its median. Ratios are taken per repetition between
calls made back to back (A, B, A, B, ...) and then their median is reported, so that a
slow spell of the machine slows both sides of a ratio.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # op determinism on/off

from helpers import engine
from helpers.attacks import fgsm, pgd
from helpers.data import NUM_CLASSES, one_hot
from helpers.engine import BATCH_SIZE
from helpers.model import build_cnn, logits_model, predict_probabilities
from helpers.training import train_model


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    fns: Mapping[str, Callable[[], object]], reps: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time each function ``reps`` times, round-robin after ``warmup`` untimed rounds.

    Returns ``{name: [seconds per repetition]}``; repetition ``i`` of every function ran in
    the same round, so per-round ratios compare calls made moments apart.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name].append(seconds(fn))
    return times


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of the per-repetition ratios ``numerator[i] / denominator[i]``."""
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))


# -- training ---------------------------------------------------------------------------


def defense_settings(defenses: Sequence[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """How the course trains each defense: ``({defense: {"build", "train"}}, source)``, from
    the course's registry of models (the recipes of notebooks 02 and 04). ``train`` holds
    what shapes one training step's cost (the defense and the schedule; monitors, epochs
    and early stopping are left out: they are not part of an epoch's training time)."""
    from helpers.registry import COURSE_MODELS, MODELS
    from helpers.training import NO_DEFENSE

    settings = {}
    for defense in defenses:
        recipe = next(
            MODELS[n]
            for n in COURSE_MODELS
            if MODELS[n].train.get("defense", NO_DEFENSE).kind == defense
        )
        train = {k: v for k, v in recipe.train.items() if k in ("defense", "lr_schedule")}
        settings[defense] = {"build": dict(recipe.build), "train": train}
    return settings, "helpers.registry.MODELS"


def step_settings(train: Mapping[str, Any]) -> dict[str, Any]:
    """A defense's training settings as the results record them: ``lr_schedule``, and the
    defense's ``eps``, ``adv_fraction`` and (PGD) ``pgd_steps``."""
    record = {"lr_schedule": train["lr_schedule"]}
    if "defense" in train:
        defense = train["defense"]
        record.update(eps=defense.eps, adv_fraction=defense.adv_fraction)
        if defense.kind == "pgd":
            record["pgd_steps"] = defense.steps
    return record


def settings_record(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`defense_settings` as JSON-ready values (the defenses as dicts)."""
    return {
        defense: {
            "build": dict(entry["build"]),
            "train": {
                k: v._asdict() if hasattr(v, "_asdict") else v for k, v in entry["train"].items()
            },
        }
        for defense, entry in settings.items()
    }


def training_epochs(
    x: np.ndarray,
    y: np.ndarray,
    *,
    settings: Mapping[str, Mapping[str, Any]],
    timed_epochs: int,
    batch_size: int,
    seed: int = 0,
    precision: str = "float32",
) -> tuple[dict[str, list[float]], dict[str, keras.Model]]:
    """Seconds per epoch on ``x`` for each defense in ``settings``, warm-up epoch excluded,
    the models built in ``precision`` (the course's, :func:`helpers.model.training_precision`,
    when the benchmark measures what the notebooks do).

    ``settings`` maps a defense to ``{"build": build_cnn kwargs, "train": train_model
    kwargs}`` (see :func:`defense_settings`). Each ``train_model`` call compiles its own
    training step, so its first epoch includes tracing; that epoch is dropped. The standard
    model (``"none"``) is measured first and once more at the end (continuing its training),
    so drift of the machine during the measurement shows on both sides of every ratio.

    Returns ``({defense: [seconds per timed epoch]}, {defense: trained model})``.
    """
    models = {
        d: build_cnn(name=f"bench_{d}", precision=precision, **settings[d].get("build", {}))
        for d in settings
    }
    epochs: dict[str, list[float]] = {d: [] for d in settings}
    order = list(settings)
    if "none" in order:
        order.append("none")
    for defense in order:
        history = train_model(
            models[defense],
            x,
            y,
            epochs=1 + timed_epochs,
            batch_size=batch_size,
            seed=seed,
            progress=False,
            **settings[defense].get("train", {}),
        )
        epochs[defense] += history["epoch_seconds"][1:]
    return epochs, models


def course_epoch_fn(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    lr_schedule: str = "constant",
    planned_epochs: int = 1,
    seed: int = 0,
) -> Callable[[], float]:
    """One epoch of the course's standard training step on ``x``, per call: ``run() -> loss``.

    The step is ``train_model``'s own (:func:`helpers.training.make_train_step` with no
    defense, driven by :func:`helpers.training.run_epoch`: one ``tf.data`` iterator, the
    learning rate assigned before every step, the loss read back after it), compiled once,
    so that calls can be interleaved with other measurements; the first call traces it.
    ``x``: images ``(n, 28, 28, 1)`` in [0, 1]; ``y``: integer labels ``(n,)``. The learning
    rate follows ``lr_schedule`` over ``planned_epochs`` calls (then stays at its end).
    """
    from tqdm.auto import tqdm

    from helpers.training import (
        NO_DEFENSE,
        learning_rate_at,
        make_train_step,
        run_epoch,
        shuffled_batches,
    )

    step = make_train_step(model, NO_DEFENSE, seed)
    batches = shuffled_batches(x, one_hot(y), batch_size, seed)
    steps_per_epoch = -(-len(x) // batch_size)
    total_steps = planned_epochs * steps_per_epoch
    base_lr = float(model.optimizer.learning_rate.numpy())
    bar = tqdm(disable=True)
    done = 0

    def run() -> float:
        nonlocal done
        record = run_epoch(
            model,
            step,
            batches,
            steps_per_epoch,
            NO_DEFENSE,
            lambda i: learning_rate_at(min(1.0, i / total_steps), base_lr, lr_schedule),
            first_step=done,
            bar=bar,
            total_steps=max(total_steps, done + steps_per_epoch),
        )
        done += steps_per_epoch
        return record["loss"]

    return run


def bf16_cnn(build: Mapping[str, Any], name: str = "bench_bf16") -> keras.Model:
    """The course's CNN (``build_cnn(**build)``) as the course trains it where the CPU has
    bf16: Keras' ``mixed_bfloat16`` in the hidden layers, float32 weights, float32 logits."""
    return build_cnn(name=name, **{**build, "precision": "mixed_bfloat16"})


def _torch_peer(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    learning_rate: float,
    lr_schedule: str,
    planned_epochs: int,
    threads: int,
) -> tuple[dict[str, Callable[[], float]], dict[str, Any]]:
    """The PyTorch peer's epoch functions, warmed up (one epoch each), and what to report of
    it: ``({"torch_" + variant: run}, {"available", "version" | "reason", "threads"})``.
    A variant that fails on its first epoch is left out, with its error."""
    from benchmarks import torch_peer

    torch, reason = torch_peer.load_torch()
    if torch is None:
        return {}, {"available": False, "reason": reason}
    torch.set_num_threads(threads)
    info: dict[str, Any] = {
        "available": True,
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "variants": {},
    }
    fns = {}
    for variant in torch_peer.VARIANTS:
        try:
            run = torch_peer.epoch_fn(
                torch,
                x,
                y,
                variant=variant,
                batch_size=batch_size,
                learning_rate=learning_rate,
                lr_schedule=lr_schedule,
                planned_epochs=planned_epochs,
            )
            run()  # warm-up (oneDNN primitives are created on first use)
        except Exception as err:  # one failing variant: report it, time the rest
            info["variants"][variant] = {"error": f"{type(err).__name__}: {str(err)[:500]}"}
        else:
            fns[f"torch_{variant}"] = run
    if not fns:
        return {}, {"available": False, "reason": "every variant failed", **info}
    return fns, info


def _load_average() -> float | None:
    """The system's 1-minute load average (runnable processes), ``None`` where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def training_step_floor(
    x: np.ndarray,
    y: np.ndarray,
    *,
    build: Mapping[str, Any],
    lr_schedule: str,
    batch_size: int,
    rounds: int,
    matmul_n: int = 2048,
    matmul_repeats: int = 4,
    bf16: bool | None = None,
    torch_peer: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """The course's standard training step against PyTorch, the compute floor and bf16.

    In ``rounds`` interleaved rounds (after a warm-up epoch of each), on the images ``x``
    ``(n, 28, 28, 1)`` and labels ``y`` ``(n,)``, batches of ``batch_size``:

    - ``ours``: an epoch of the course's standard step (:func:`course_epoch_fn`, the model
      built with ``build_cnn(**build)``, learning rate by ``lr_schedule``);
    - ``torch_eager``, ``torch_channels_last``: the same CNN and recipe in PyTorch
      (:mod:`benchmarks.torch_peer`) with ``threads`` threads (default: the usable cores),
      where PyTorch imports (``torch_peer=False`` leaves it out);
    - ``matmul``: ``matmul_repeats`` float32 ``(matmul_n, matmul_n)`` matmuls
      (:func:`benchmarks.floor.matmul_fn`), the machine's practical peak;
    - ``bf16``: an epoch of the same step on the model built under ``mixed_bfloat16``
      (:func:`bf16_cnn`), where ``bf16`` is true (default: where :func:`cpu_has_bf16`).

    Returns the numbers of benchmarks/README.md (``ours_images_per_s``, ``torch`` with
    ``over_ours`` = PyTorch's seconds per image over ours, ``train_fraction_of_peak``,
    ``bf16`` with ``over_fp32``, ...) and the raw ``times`` in seconds per round.
    """
    from benchmarks import floor
    from tooling.run_facts import usable_cores

    load_before = _load_average()
    threads = threads or usable_cores()
    planned = 1 + rounds  # the warm-up epoch and the timed ones, for the learning-rate schedule
    cpu_bf16 = floor.cpu_has_bf16()
    bf16 = cpu_bf16 if bf16 is None else bf16
    model = build_cnn(name="bench_step_fp32", **build)
    learning_rate = float(model.optimizer.learning_rate.numpy())
    epoch = dict(batch_size=batch_size, lr_schedule=lr_schedule, planned_epochs=planned)
    fns: dict[str, Callable[[], object]] = {"ours": course_epoch_fn(model, x, y, **epoch)}
    if bf16:
        fns["bf16"] = course_epoch_fn(bf16_cnn(build), x, y, **epoch)
    if torch_peer:
        torch_fns, torch_info = _torch_peer(
            x, y, learning_rate=learning_rate, threads=threads, **epoch
        )
        fns.update(torch_fns)
    else:
        torch_info = {"available": False, "reason": "not measured (--skip-torch)"}
    matmul, matmul_flops = floor.matmul_fn(matmul_n, matmul_repeats)
    fns["matmul"] = matmul
    for name, fn in fns.items():  # warm-up: traces the course's steps (torch's ran already)
        if not name.startswith("torch_"):
            fn()
    times = interleaved(fns, rounds, warmup=0)

    n = len(x)
    flops = floor.train_flops_per_image(model)
    ours_s = statistics.median(times["ours"])
    matmul_rates = [matmul_flops / t for t in times["matmul"]]
    train_rates = [n * flops / t for t in times["ours"]]
    result: dict[str, Any] = {
        "images": n,
        "batch_size": batch_size,
        "rounds": rounds,
        "threads": threads,
        "ours_images_per_s": n / ours_s,
        "flops": {
            "forward_per_image": floor.forward_flops_per_image(model),
            "train_per_image": flops,
            "formula": floor.FLOP_FORMULA,
        },
        "matmul": {
            "n": matmul_n,
            "repeats": matmul_repeats,
            "gflop_s": statistics.median(matmul_rates) / 1e9,
            "best_gflop_s": max(matmul_rates) / 1e9,
        },
        "train_gflop_s": statistics.median(train_rates) / 1e9,
        # per round: the training step's FLOP rate over the matmul's, moments apart
        "train_fraction_of_peak": statistics.median(
            t / m for t, m in zip(train_rates, matmul_rates, strict=True)
        ),
        "cpu_bf16": cpu_bf16,
        # other work on the cores: PyTorch's OpenMP threads suffer from it far more than
        # TensorFlow's (see benchmarks/README.md), so the ratio needs a quiet machine
        "load_average": {"before": load_before, "after": _load_average()},
        "times": times,
    }
    for name in fns:
        if name.startswith("torch_"):
            variant = name.removeprefix("torch_")
            torch_info["variants"][variant] = {
                "images_per_s": n / statistics.median(times[name]),
                "over_ours": median_ratio(times[name], times["ours"]),
            }
    timed = {v: e for v, e in torch_info.get("variants", {}).items() if "over_ours" in e}
    if timed:
        best = min(timed, key=lambda v: timed[v]["over_ours"])  # the peer at its fastest
        torch_info.update(variant=best, **timed[best])
    result["torch"] = torch_info
    if bf16:
        result["bf16"] = {
            "measured": True,
            "images_per_s": n / statistics.median(times["bf16"]),
            "over_fp32": median_ratio(times["bf16"], times["ours"]),
            "policy": "mixed_bfloat16 (logits in float32)",
        }
    else:
        note = (
            "not asked for (bf16=False)"
            if cpu_bf16
            else "the CPU has no bf16 instructions (no avx512_bf16 or amx_bf16 in "
            "/proc/cpuinfo), so bf16 would run emulated, slower than float32"
        )
        result["bf16"] = {"measured": False, "note": note}
    return result


# -- attacks ----------------------------------------------------------------------------


@contextlib.contextmanager
def engine_batch_size(batch_size: int) -> Iterator[None]:
    """Run the course's attacks in batches of ``batch_size`` for the block."""
    before = engine.BATCH_SIZE
    engine.BATCH_SIZE = batch_size
    try:
        yield
    finally:
        engine.BATCH_SIZE = before


@contextlib.contextmanager
def op_determinism_off() -> Iterator[None]:
    """Turn TensorFlow's deterministic ops off for the block, restoring the setting after.

    XLA has no deterministic implementation of the max-pool gradient, so with the course's
    deterministic ops on (``set_seed``) a ``jit_compile`` gradient of this CNN cannot even
    be built; the XLA timing runs without them.
    """
    was_on = tf_config.is_op_determinism_enabled()
    if was_on:
        tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if was_on:
            tf_config.enable_op_determinism()


def forward_backward_fn(
    model: keras.Model, jit_compile: bool = False
) -> Callable[[np.ndarray, np.ndarray, int], None]:
    """The floor under FGSM: the input gradient of the loss (on the logits), per batch.

    A plain compiled forward pass plus backward pass to the input, with nothing around it
    (no sign, no step, no clipping, no copy back to NumPy): what any FGSM must compute. Its
    batches run side by side as the engine runs the attacks' (:func:`helpers.engine.side_by_side`).
    ``jit_compile``: compile it with XLA instead of TensorFlow's default graph executor
    (run with deterministic ops off, see :func:`op_determinism_off`).
    Returns ``run(x, y_onehot, batch_size)``.
    """
    net = logits_model(model)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 28, 28, 1], tf.float32),
            tf.TensorSpec([None, NUM_CLASSES], tf.float32),
        ],
        jit_compile=jit_compile,
    )
    def gradient(x: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = net(x, training=False)
            loss = tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=logits)
        return tape.gradient(loss, x)

    def run(x: np.ndarray, y_onehot: np.ndarray, batch_size: int) -> None:
        with op_determinism_off() if jit_compile else contextlib.nullcontext():
            engine.side_by_side(  # the batches side by side, as the attacks run them
                lambda start: gradient(
                    x[start : start + batch_size], y_onehot[start : start + batch_size]
                ),
                range(0, len(x), batch_size),
            )

    return run


def fgsm_cost(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    reps: int,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """FGSM on ``x`` (true labels) against one forward+backward pass and one forward pass."""
    floor = forward_backward_fn(model)
    floor_xla = forward_backward_fn(model, jit_compile=True)
    y_onehot = one_hot(y)
    with engine_batch_size(batch_size):
        times = interleaved(
            {
                "fwd_bwd": lambda: floor(x, y_onehot, batch_size),
                "fwd_bwd_xla": lambda: floor_xla(x, y_onehot, batch_size),
                "fgsm": lambda: fgsm(model, x, y, eps),
                "forward": lambda: predict_probabilities(model, x),
            },
            reps,
        )
    fgsm_s = statistics.median(times["fgsm"])
    return {
        "images": len(x),
        "batch_size": batch_size,
        "fgsm_s": fgsm_s,
        "fwd_bwd_s": statistics.median(times["fwd_bwd"]),
        "forward_s": statistics.median(times["forward"]),
        "fgsm_images_per_s": len(x) / fgsm_s,
        "fgsm_over_fwd_bwd": median_ratio(times["fgsm"], times["fwd_bwd"]),
        # XLA (jit_compile=True) against the default executor on the same computation: the
        # course compiles without XLA because on CPU this ratio came out above 1.
        "xla_over_default": median_ratio(times["fwd_bwd_xla"], times["fwd_bwd"]),
        "times": times,
    }


def pgd_cost(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    steps: int,
    step_size: float,
    reps: int,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """PGD-``steps`` against one FGSM on the same images.

    ``pgd_step_over_fgsm``: seconds per step over one FGSM, measured at a budget so small
    (eps = step_size) that almost no image is fooled, so every image takes every step (PGD
    stops working on an image once it is fooled). ``pgd_as_evaluated_s``: PGD at ``eps`` as
    notebook 05 runs it (random start, one restart), where fooled images drop out early.
    """
    with engine_batch_size(batch_size):
        times = interleaved(
            {
                "pgd_all_steps": lambda: pgd(model, x, y, step_size, steps=steps, rel_step=1.0),
                "pgd": lambda: pgd(model, x, y, eps, steps=steps, rel_step=step_size / eps),
                "fgsm": lambda: fgsm(model, x, y, eps),
            },
            reps,
        )
    per_step = [t / steps for t in times["pgd_all_steps"]]
    return {
        "images": len(x),
        "steps": steps,
        "step_size": step_size,
        "pgd_s": statistics.median(times["pgd_all_steps"]),
        "pgd_as_evaluated_s": statistics.median(times["pgd"]),
        "fgsm_s": statistics.median(times["fgsm"]),
        "pgd_step_over_fgsm": median_ratio(per_step, times["fgsm"]),
        "times": times,
    }


# -- the explorer -----------------------------------------------------------------------


def slider_latency(
    models: Mapping[str, keras.Model],
    x: np.ndarray,
    y: np.ndarray,
    *,
    moves: int,
    side_by_side: bool,
    eps: float = 0.25,
) -> dict[str, Any]:
    """Milliseconds per move of the explorer's epsilon slider, as notebooks 03/05 build it.

    The explorer is built on ``x`` (its constructor computes the attack directions and the
    accuracy curve, reported as ``open_s``); then the slider is moved to ``moves + 1``
    different values and each redraw's ``render_ms`` is read. The first move is a warm-up.
    This is the Python side of a move (compute + redraw + PNG), not the browser's.
    """
    from helpers.explorer import EPS_MAX, EPS_STEP, make_explorer

    stops = np.round(np.arange(EPS_STEP, EPS_MAX + 1e-9, EPS_STEP), 4)
    if not 1 <= moves < len(stops) - 1:
        raise ValueError(f"moves must lie in 1..{len(stops) - 2}, got {moves}")
    start = time.perf_counter()
    explorer = make_explorer(models, x, y, side_by_side=side_by_side, eps=eps)
    open_s = time.perf_counter() - start
    # Distinct values, each one different from the last, so every assignment redraws.
    values = [float(stops[(i * 7) % len(stops)]) for i in range(1, moves + 2)]
    first = len(explorer.render_ms)
    for value in values:
        explorer.eps.value = value
    ms = explorer.render_ms[first + 1 :]
    if len(ms) != moves:
        raise RuntimeError(f"expected {moves} timed redraws, got {len(ms)}")
    return {
        "models": len(models),
        "images": len(x),
        "moves": moves,
        "open_s": open_s,
        "slider_ms": statistics.median(ms),
        "slider_ms_max": max(ms),
    }


# -- the notebook series ----------------------------------------------------------------


def series_at_ci_size(scratch: Path, notebooks: Sequence[str]) -> dict[str, float]:
    """Execute ``notebooks`` in order at CI size, as ``make notebooks`` does; seconds each.

    Models and metrics go to ``scratch/artifacts`` (emptied first, so the run starts clean
    like CI), executed copies to ``scratch/executed``; the user's ``artifacts/`` is never
    touched. The kernels inherit ``MNIST_AD_ARTIFACTS`` from this process.
    """
    import shutil

    from tooling.series import run_notebook

    shutil.rmtree(scratch, ignore_errors=True)
    previous = os.environ.get("MNIST_AD_ARTIFACTS")
    os.environ["MNIST_AD_ARTIFACTS"] = str(scratch / "artifacts")
    try:
        result = {}
        for notebook in notebooks:
            _, result[notebook] = run_notebook(notebook, scratch / "executed", size="ci")
            print(f"   {notebook}: {result[notebook]:.0f} s", flush=True)
        return result
    finally:
        if previous is None:
            os.environ.pop("MNIST_AD_ARTIFACTS", None)
        else:
            os.environ["MNIST_AD_ARTIFACTS"] = previous
