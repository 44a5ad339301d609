"""Seeding, and one training loop for standard and adversarial training.

:func:`train_model` trains a model from :func:`helpers.model.build_cnn` with the optimizer it
was compiled with. The ``defense`` argument picks what each batch is made of:

- ``"none"``: clean images only (standard training);
- ``"fgsm"``: a share ``adv_fraction`` of every batch is replaced by FGSM examples made on
  the fly against the current model (Goodfellow et al. 2015);
- ``"fgsm_rs"``: FGSM from a random start in the eps-ball, step ``1.25 * eps``
  ("fast adversarial training", Wong, Rice & Kolter 2020);
- ``"pgd"``: PGD examples with a random start (Madry et al. 2018).

The attack that makes training examples takes its loss on the logits, uses the true labels,
and runs the model in inference mode (no dropout); the weight update runs in training mode.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from helpers.attacks import fgsm, linf_step, logits_and_input_gradient, pgd, validate_epsilon
from helpers.data import NUM_CLASSES, to_int_labels, validate_images
from helpers.evaluation import accuracy
from helpers.model import logits_model

Defense = Literal["none", "fgsm", "fgsm_rs", "pgd"]
DEFENSES: tuple[str, ...] = ("none", "fgsm", "fgsm_rs", "pgd")
Schedule = Literal["constant", "cosine", "one_cycle"]
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "one_cycle")


def learning_rate_at(progress: float, base: float, schedule: Schedule) -> float:
    """Learning rate after a fraction ``progress`` (0..1) of training.

    - ``"constant"``: ``base`` throughout;
    - ``"cosine"``: from ``base`` down to 0 along half a cosine;
    - ``"one_cycle"``: linearly up from 0 to ``base`` over the first 40%, then down to 0
      (the cyclic schedule of fast adversarial training).
    """
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "one_cycle":
        return base * (progress / 0.4 if progress < 0.4 else (1.0 - progress) / 0.6)
    raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {schedule!r}")


def set_seed(seed: int, deterministic_ops: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TF ops deterministic.

    With ``deterministic_ops`` the same seed gives the same weights and the same numbers
    on the same machine and library versions (at a small speed cost on CPU).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def _check_training_inputs(
    x: np.ndarray, y: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray]:
    x = validate_images(x, name=f"x_{name}")
    labels = to_int_labels(y)
    if len(labels) != len(x):
        raise ValueError(f"x_{name} has {len(x)} images but y_{name} has {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"y_{name} labels must lie in 0..{NUM_CLASSES - 1}")
    return x, np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def _make_train_step(
    model: keras.Model,
    defense: str,
    eps: float,
    adv_fraction: float,
    pgd_steps: int,
    pgd_step_size: float,
    seed: int,
):
    """Compile one optimisation step; returns ``step(x, y) -> (loss, clean_acc, adv_acc)``."""
    net = logits_model(model)
    optimizer = model.optimizer
    optimizer.build(net.trainable_variables)
    rng = tf.random.Generator.from_seed(seed)
    if defense == "fgsm":
        steps, step_size, random_start = 1, eps, False
    elif defense == "fgsm_rs":
        steps, step_size, random_start = 1, 1.25 * eps, True
    else:
        steps, step_size, random_start = pgd_steps, pgd_step_size, True

    def adversarial(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        x_adv = x
        if random_start:
            x_adv = tf.clip_by_value(x + rng.uniform(tf.shape(x), -eps, eps), 0.0, 1.0)
        for _ in range(steps):
            _, gradient = logits_and_input_gradient(net, x_adv, y)
            x_adv = linf_step(x, x_adv, gradient, eps, step_size)
        return tf.stop_gradient(x_adv)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 28, 28, 1], tf.float32),
            tf.TensorSpec([None, NUM_CLASSES], tf.float32),
        ]
    )
    def step(x: tf.Tensor, y: tf.Tensor):
        n_adv = 0
        if defense != "none":
            n_adv = tf.cast(tf.round(adv_fraction * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)
            x = tf.concat([adversarial(x[:n_adv], y[:n_adv]), x[n_adv:]], axis=0)
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            per_example = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_mean(per_example)
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply(grads, net.trainable_variables)
        correct = tf.cast(tf.argmax(logits, 1) == tf.argmax(y, 1), tf.float32)
        return loss, tf.reduce_sum(correct[n_adv:]), tf.reduce_sum(correct[:n_adv]), n_adv

    return step


def train_model(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 128,
    defense: Defense = "none",
    eps: float = 0.25,
    adv_fraction: float = 0.5,
    pgd_steps: int = 7,
    pgd_step_size: float | None = None,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    monitor_eps: float | None = None,
    monitor_pgd_steps: int = 0,
    monitor_size: int = 500,
    lr_schedule: Schedule = "constant",
    restore_best: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` in place and return its per-epoch history.

    Args:
        model: compiled model from :func:`helpers.model.build_cnn` (its optimizer is used).
        x_train: images ``(n, 28, 28, 1)`` in [0, 1]; ``y_train``: labels (int or one-hot).
        epochs: passes over the data (>= 1); ``batch_size``: images per step (>= 1).
        defense: ``"none"``, ``"fgsm"``, ``"fgsm_rs"`` or ``"pgd"`` (see module docstring).
        eps: L-infinity budget of the training attack, in [0, 1].
        adv_fraction: share of each batch replaced by adversarial examples, in (0, 1].
        pgd_steps, pgd_step_size: PGD's iterations and step (default ``2.5 * eps / steps``).
        validation_data: ``(x_val, y_val)`` measured after every epoch.
        monitor_eps: if set, also measure FGSM accuracy at this budget on the validation
            data after each epoch (``val_fgsm_accuracy``).
        monitor_pgd_steps: if > 0, also measure PGD accuracy (that many steps, budget
            ``monitor_eps``, step ``2.5 * eps / steps``) on the first ``monitor_size``
            validation images (``val_pgd_accuracy``) -- the early warning for
            catastrophic overfitting of single-step training.
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"one_cycle"``, applied per step to the
            learning rate the model was compiled with (see :func:`learning_rate_at`).
        restore_best: a validation metric (e.g. ``"val_pgd_accuracy"``); at the end the
            weights of the epoch where it was highest are restored -- early stopping
            against catastrophic overfitting. ``history["best_epoch"]`` records which.
        seed: seeds the shuffling and the random starts.
        progress: show a progress bar.

    Returns:
        ``{"loss", "accuracy", "adv_accuracy", "val_accuracy", "val_fgsm_accuracy",
        "val_pgd_accuracy", "epoch_seconds"}`` -> one float per epoch (keys present only
        where they apply). Accuracies are fractions in [0, 1]; ``accuracy`` is on the clean
        part of the training batches (absent when ``adv_fraction`` is 1: there is none),
        ``adv_accuracy`` on their adversarial part.
    """
    if lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {lr_schedule!r}")
    if defense not in DEFENSES:
        raise ValueError(f"defense must be one of {DEFENSES}, got {defense!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    eps = validate_epsilon(eps)
    if defense != "none" and not 0.0 < adv_fraction <= 1.0:
        raise ValueError(f"adv_fraction must be in (0, 1], got {adv_fraction!r}")
    if defense == "pgd" and (not isinstance(pgd_steps, int) or pgd_steps < 1):
        raise ValueError(f"pgd_steps must be a positive integer, got {pgd_steps!r}")
    if monitor_eps is not None:
        monitor_eps = validate_epsilon(monitor_eps, "monitor_eps")
    if (monitor_eps is not None or monitor_pgd_steps) and validation_data is None:
        raise ValueError("monitor_eps / monitor_pgd_steps need validation_data")
    measured = {
        "val_accuracy": validation_data is not None,
        "val_fgsm_accuracy": monitor_eps is not None,
        "val_pgd_accuracy": bool(monitor_pgd_steps),
    }
    if restore_best is not None and not measured.get(restore_best):
        raise ValueError(
            f"restore_best={restore_best!r} needs a measured metric: one of {sorted(measured)}, "
            "with validation_data / monitor_eps / monitor_pgd_steps set accordingly"
        )
    if monitor_pgd_steps and monitor_eps is None:
        raise ValueError("monitor_pgd_steps needs monitor_eps (the PGD budget)")
    x_train, y_onehot = _check_training_inputs(x_train, y_train, "train")
    if validation_data is not None:
        x_val, y_val = _check_training_inputs(*validation_data, "val")
    if pgd_step_size is None:
        pgd_step_size = 2.5 * eps / pgd_steps

    step = _make_train_step(model, defense, eps, adv_fraction, pgd_steps, pgd_step_size, seed)
    # One iterator for the whole run, reshuffled every epoch: creating a fresh iterator
    # per epoch sometimes stalled for about 20 s here (TensorFlow 2.21 on 2 CPU cores),
    # which made every second or third epoch twice as long.
    batches = iter(
        tf.data.Dataset.from_tensor_slices((x_train, y_onehot))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )
    steps_per_epoch = -(-len(x_train) // batch_size)
    total_steps = epochs * steps_per_epoch
    base_lr = float(model.optimizer.learning_rate.numpy())
    step_count = 0
    best_score, best_weights = -1.0, None
    history: dict[str, list[float]] = {}
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"training ({defense})", disable=not progress)
    for _ in range(epochs):
        start = time.perf_counter()
        loss_sum, clean_correct, adv_correct, n_adv_total = 0.0, 0.0, 0.0, 0
        for x_batch, y_batch in itertools.islice(batches, steps_per_epoch):
            if lr_schedule != "constant":
                lr = learning_rate_at(step_count / total_steps, base_lr, lr_schedule)
                model.optimizer.learning_rate.assign(lr)
            step_count += 1
            loss, clean_c, adv_c, n_adv = step(x_batch, y_batch)
            loss_sum += float(loss) * len(x_batch)
            clean_correct += float(clean_c)
            adv_correct += float(adv_c)
            n_adv_total += int(n_adv)
            bar.update(1)
        record = {"loss": loss_sum / len(x_train), "epoch_seconds": time.perf_counter() - start}
        if n_adv_total < len(x_train):  # with adv_fraction = 1 there is no clean part
            record["accuracy"] = clean_correct / (len(x_train) - n_adv_total)
        if defense != "none":
            record["adv_accuracy"] = adv_correct / max(1, n_adv_total)
        if validation_data is not None:
            record["val_accuracy"] = accuracy(model, x_val, y_val)
            if monitor_eps is not None:
                x_adv = fgsm(model, x_val, y_val, monitor_eps)
                record["val_fgsm_accuracy"] = accuracy(model, x_adv, y_val)
            if monitor_pgd_steps:
                x_m, y_m = x_val[:monitor_size], y_val[:monitor_size]
                x_adv = pgd(
                    model,
                    x_m,
                    y_m,
                    monitor_eps,
                    steps=monitor_pgd_steps,
                    step_size=max(2.5 * monitor_eps / monitor_pgd_steps, 1e-6),
                    seed=seed,
                )
                record["val_pgd_accuracy"] = accuracy(model, x_adv, y_m)
        for key, value in record.items():
            history.setdefault(key, []).append(float(value))
        if restore_best is not None:
            if record[restore_best] > best_score:
                best_score, best_weights = record[restore_best], model.get_weights()
                history["best_epoch"] = [float(len(history["loss"]))]
        bar.set_postfix(
            {k: f"{v:.3f}" for k, v in record.items() if k != "epoch_seconds"}, refresh=True
        )
    bar.close()
    if best_weights is not None:
        model.set_weights(best_weights)
    if lr_schedule != "constant":
        model.optimizer.learning_rate.assign(base_lr)
    return history


#: The course's four models, in the order the notebooks present them.
MODEL_LABELS: dict[str, str] = {
    "standard": "standard CNN",
    "fgsm_at": "FGSM-trained CNN",
    "fgsm_rs_at": "FGSM-RS-trained CNN",
    "pgd_at": "PGD-trained CNN",
}

#: How notebooks 02 and 04 train each model at full size (their parameters cells hold the
#: same values; a test keeps the two in step). ``build`` goes to
#: :func:`helpers.model.build_cnn`, the rest to :func:`train_model`.
RECIPES: dict[str, dict[str, Any]] = {
    "standard": {
        "build": {"width": 1, "dropout": True, "learning_rate": 1e-3},
        "epochs": 6,
        "defense": "none",
        "lr_schedule": "cosine",
        "monitor_eps": 0.25,
    },
    "fgsm_at": {
        "build": {"width": 1, "dropout": True, "learning_rate": 1e-3},
        "epochs": 5,
        "defense": "fgsm",
        "lr_schedule": "cosine",
        "eps": 0.25,
        "adv_fraction": 0.5,
        "monitor_eps": 0.25,
        "monitor_pgd_steps": 10,
    },
    "fgsm_rs_at": {
        "build": {"width": 1, "dropout": False, "learning_rate": 2e-3},
        "epochs": 6,
        "defense": "fgsm_rs",
        "lr_schedule": "one_cycle",
        "eps": 0.3,
        "adv_fraction": 1.0,
        "monitor_eps": 0.25,
        "monitor_pgd_steps": 10,
        "restore_best": "val_pgd_accuracy",
    },
    "pgd_at": {
        "build": {"width": 1, "dropout": False, "learning_rate": 2e-3},
        "epochs": 8,
        "defense": "pgd",
        "lr_schedule": "one_cycle",
        "eps": 0.25,
        "adv_fraction": 1.0,
        "pgd_steps": 3,
        "monitor_eps": 0.25,
        "monitor_pgd_steps": 10,
        "restore_best": "val_pgd_accuracy",
    },
}


def train_recipe(
    name: str,
    *,
    n_train: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
    **overrides: Any,
) -> tuple[keras.Model, dict[str, list[float]], dict[str, Any]]:
    """Seed, load MNIST, build and train model ``name`` by its recipe (:data:`RECIPES`).

    Args:
        name: one of :data:`MODEL_LABELS` (``"standard"``, ``"fgsm_at"``, ``"fgsm_rs_at"``,
            ``"pgd_at"``).
        n_train: training images (``None``: all 60,000, 10% of them held out for validation).
        epochs: ``None`` keeps the recipe's; later notebooks pass a small number to rebuild
            a missing model quickly.
        overrides: replace recipe settings for :func:`train_model` (e.g. ``eps=0.2``).

    Returns:
        ``(model, history, settings)``: the trained model, its per-epoch history (see
        :func:`train_model`) and the settings actually used, with ``train_seconds`` (wall
        time of training, including the per-epoch validation attacks), ``n_train`` and
        ``seed``.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; the recipes are {sorted(RECIPES)}")
    from helpers.data import prepare_mnist
    from helpers.model import build_cnn

    settings = {**RECIPES[name], **overrides}
    if epochs is not None:
        settings["epochs"] = epochs
    fit = {k: v for k, v in settings.items() if k != "build"}
    set_seed(seed)
    data = prepare_mnist(n_train=n_train, seed=seed)
    model = build_cnn(name=name, **settings["build"])
    start = time.perf_counter()
    history = train_model(
        model,
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        seed=seed,
        progress=progress,
        **fit,
    )
    settings.update(train_seconds=time.perf_counter() - start, n_train=len(data.x_train), seed=seed)
    return model, history, settings


def summarize_training(
    model: keras.Model,
    history: dict[str, list[float]],
    settings: dict[str, Any],
    eps: float = 0.25,
) -> dict[str, Any]:
    """What notebooks save about a trained model: clean and FGSM (at ``eps``) accuracy on
    all 10,000 test images, plus ``settings`` and ``history`` from :func:`train_recipe`.
    Accuracies are fractions in [0, 1]."""
    from helpers.data import load_mnist, preprocess_images
    from helpers.evaluation import eps_key, fgsm_accuracy_curve

    mnist = load_mnist()
    x_test = preprocess_images(mnist.x_test)
    curve = fgsm_accuracy_curve(model, x_test, mnist.y_test, [0.0, eps])
    return {
        **settings,
        "clean": curve["0"],
        "fgsm": {eps_key(eps): curve[eps_key(eps)]},
        "n_test": len(x_test),
        "history": history,
    }
