"""Seeding, and one training loop for standard and adversarial training.

:func:`train_model` trains a model from :func:`helpers.model.build_cnn` with the optimizer it
was compiled with. Its ``defense`` (a :class:`Defense`) says what each batch is made of:

- ``"none"``: clean images only (standard training);
- ``"fgsm"``: a share ``adv_fraction`` of every batch is replaced by FGSM examples made on
  the fly against the current model (Goodfellow et al. 2015);
- ``"fgsm_rs"``: FGSM from a random start in the ε-ball, step ``1.25 * eps``
  ("fast adversarial training", Wong, Rice & Kolter 2020);
- ``"pgd"``: PGD examples with a random start (Madry et al. 2018);
- ``"trades"``: every image twice, clean and perturbed: the loss is the clean cross-entropy
  plus ``beta`` times the KL divergence between the model's predictions on the two, the
  perturbation found by PGD on that KL term (TRADES, Zhang et al. 2019);
- ``"ibp"``: no attack at all: the loss mixes the clean cross-entropy with the cross-entropy
  of the worst-case logits that interval bound propagation proves for the whole ε-box
  (:mod:`helpers.certify`), with ε growing from 0 over the first ``ramp`` of training
  (Gowal et al. 2018). It trains for *provable* robustness.

Two settings help every defense: a ``ramp`` (ε grows from 0 over the first part of training,
so the network first learns the digits, then to defend them) and ``weight_average`` (the
model kept is an exponential moving average of the weights along training, which is
smoother and more robust than the last step's weights; Gowal et al. 2020).

The attack that makes training examples is :func:`helpers.attacks.pgd_step`, the step the
evaluation's PGD takes: loss on the logits, the true labels, the model in inference mode (no
dropout); the weight update runs in training mode. Its ``monitor`` (a :class:`Monitor`) says
what is measured on validation data after each epoch.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from helpers.attacks import EPS, check_pgd_settings, fgsm, pgd, pgd_step, validate_epsilon
from helpers.certify import certified_accuracy, hidden_layers, worst_case_logits
from helpers.data import NUM_CLASSES, labels_for, one_hot, validate_images
from helpers.evaluation import accuracy
from helpers.model import logits_model

DEFENSES: tuple[str, ...] = ("none", "fgsm", "fgsm_rs", "pgd", "trades", "ibp")
Schedule = Literal["constant", "cosine", "one_cycle"]
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "one_cycle")


class Defense(NamedTuple):
    """How training batches are made adversarial (see the module docstring).

    ``eps``: the training attack's budget in [0, 1]; ``steps``: PGD's steps (``"pgd"`` only);
    ``rel_step``: its step as a fraction of ``eps`` (``None``: ``2.5 / steps``, so that the
    steps together travel 2.5 ε); ``adv_fraction``: the share of each batch replaced, in
    (0, 1] (TRADES perturbs every image and keeps its clean copy too); ``beta``: TRADES'
    weight of the robustness term against the clean loss (larger: more robust, less
    accurate on clean images); ``ramp``: the share of training, in [0, 1], over which the
    budget grows linearly from 0 to ``eps`` (:func:`eps_at`; 0: the full ``eps`` from the
    first step). IBP needs a ramp > 0, over which its verified loss's weight also grows
    from 0 to one half (:func:`ibp_schedule`).
    """

    kind: Literal["none", "fgsm", "fgsm_rs", "pgd", "trades", "ibp"] = "none"
    eps: float = EPS
    steps: int = 1
    rel_step: float | None = None
    adv_fraction: float = 0.5
    beta: float = 6.0
    ramp: float = 0.0

    def attack(self) -> tuple[int, float, bool]:
        """``(steps, rel_step, random_start)`` of the attack that makes training examples."""
        if self.kind == "fgsm":
            return 1, 1.0, False  # one step of size ε from the clean image
        if self.kind == "fgsm_rs":
            return 1, 1.25, True  # from a random point, a step of 1.25 ε (Wong et al.)
        rel_step = 2.5 / self.steps if self.rel_step is None else self.rel_step
        return self.steps, rel_step, True

    def describe(self) -> str:
        """The defense in words, e.g. ``"PGD-3 examples at ε=0.25 (100% of each batch)"``."""
        ramp = f", ε ramped up over the first {self.ramp:.0%}" if self.ramp else ""
        if self.kind == "trades":
            return f"TRADES with β={self.beta:g}: KL-PGD-{self.steps} at ε={self.eps:g}{ramp}"
        if self.kind == "ibp":
            return f"IBP: verified loss at ε up to {self.eps:g} (ramped over {self.ramp:.0%})"
        name = {"fgsm": "FGSM", "fgsm_rs": "FGSM-RS", "pgd": f"PGD-{self.steps}"}[self.kind]
        return f"{name} examples at ε={self.eps:g} ({self.adv_fraction:.0%} of each batch){ramp}"


class Monitor(NamedTuple):
    """What :func:`train_model` measures on the validation data after every epoch.

    ``eps``: if set, accuracy under FGSM at this budget (``val_fgsm_accuracy``), and with
    ``pgd_steps > 0`` under PGD (``val_pgd_accuracy``, on the first ``size`` validation
    images, step ``2.5 * eps / pgd_steps``) -- the early warning for catastrophic overfitting
    of single-step training. ``certified``: with ``eps`` set, also the share of those
    images that interval bound propagation proves robust (``val_certified_accuracy``).
    ``restore_best``: a measured metric (e.g. ``"val_pgd_accuracy"``); at the end the
    weights of the epoch where it was highest are restored (early stopping against
    catastrophic overfitting).
    """

    eps: float | None = None
    pgd_steps: int = 0
    size: int = 500
    restore_best: str | None = None
    certified: bool = False

    def measured(self) -> tuple[str, ...]:
        """The validation metrics this monitor records each epoch."""
        return (
            ("val_accuracy",)
            + ("val_fgsm_accuracy",) * (self.eps is not None)
            + ("val_pgd_accuracy",) * bool(self.pgd_steps)
            + ("val_certified_accuracy",) * (self.certified and self.eps is not None)
        )


NO_DEFENSE = Defense()  # standard training: clean images only
NO_MONITOR = Monitor()  # clean validation accuracy only


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
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def _checked_data(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images checked by :func:`helpers.data.validate_images` and one-hot labels."""
    x = validate_images(x, name=f"x_{name}")
    return x, one_hot(labels_for(x, y, name=f"y_{name}"))


def check_training_settings(
    epochs: int,
    batch_size: int,
    defense: Defense,
    lr_schedule: str,
    monitor: Monitor,
    weight_average: float = 0.0,
) -> None:
    """Raise ``ValueError``, naming the setting, for anything :func:`train_model` cannot run."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(weight_average, int | float) and 0 <= weight_average < 1):
        raise ValueError(
            f"weight_average is the moving average's decay, in [0, 1) (0: no average; "
            f"0.999 averages over about the last 1,000 steps), got {weight_average!r}"
        )
    if lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {lr_schedule!r}")
    if defense.kind not in DEFENSES:
        raise ValueError(f"defense must be one of {DEFENSES}, got {defense.kind!r}")
    if defense.kind != "none":
        if (
            isinstance(defense.steps, bool)
            or not isinstance(defense.steps, int)
            or defense.steps < 1
        ):
            raise ValueError(
                f"the defense's steps must be a positive integer, got {defense.steps!r}"
            )
        steps, rel_step, _ = defense.attack()
        check_pgd_settings(defense.eps, steps, rel_step)
        if not 0.0 < defense.adv_fraction <= 1.0:
            raise ValueError(f"adv_fraction must be in (0, 1], got {defense.adv_fraction!r}")
        if not (isinstance(defense.beta, int | float) and defense.beta >= 0):
            raise ValueError(f"TRADES' beta must be a number >= 0, got {defense.beta!r}")
        if not (isinstance(defense.ramp, int | float) and 0 <= defense.ramp <= 1):
            raise ValueError(f"ramp must be a share of training in [0, 1], got {defense.ramp!r}")
        if defense.kind == "ibp" and defense.ramp == 0:
            raise ValueError(
                "IBP needs a ramp > 0: a full-size box from the first step only teaches the "
                "network to output the same scores for every image; try ramp=0.4"
            )
    if monitor.eps is not None:
        validate_epsilon(monitor.eps, "monitor eps")
    if (monitor.pgd_steps or monitor.certified) and monitor.eps is None:
        raise ValueError("a PGD or certified monitor needs its budget: Monitor(eps=...)")
    if monitor.restore_best is not None and monitor.restore_best not in monitor.measured():
        raise ValueError(
            f"restore_best={monitor.restore_best!r} needs a measured metric: one of "
            f"{monitor.measured()}; set Monitor(eps=..., pgd_steps=...) accordingly"
        )


def eps_at(defense: Defense, progress: tf.Tensor) -> tf.Tensor:
    """The training attack's budget after a fraction ``progress`` (0..1) of training:
    growing linearly from 0 to ``defense.eps`` over the first ``defense.ramp`` of it, then
    constant (``ramp = 0``: ``eps`` throughout). An attack at full strength from the first
    step, against a network that cannot yet read digits, can make training fail: a few
    large steps then find the same easy examples every time, and robustness collapses."""
    if defense.ramp == 0:
        return tf.constant(defense.eps, tf.float32)
    return defense.eps * tf.minimum(1.0, progress / defense.ramp)


def adversarial_examples(
    model: keras.Model,
    x: tf.Tensor,
    y_onehot: tf.Tensor,
    defense: Defense,
    rng: tf.random.Generator,
    eps: tf.Tensor,
) -> tf.Tensor:
    """The training attack of ``defense`` on a batch, at budget ``eps`` (:func:`eps_at`):
    from ``x`` (or a random point of the ε-ball), ``steps`` steps of
    :func:`helpers.attacks.pgd_step`. For use in ``tf.function``."""
    steps, rel_step, random_start = defense.attack()
    x_adv = x
    if random_start:
        x_adv = tf.clip_by_value(x + rng.uniform(tf.shape(x), -eps, eps), 0.0, 1.0)
    for _ in range(steps):
        x_adv = pgd_step(model, x, x_adv, y_onehot, eps, rel_step * eps)[0]
    return tf.stop_gradient(x_adv)  # the examples are data: no gradient flows through them


def kl_divergence(p_logits: tf.Tensor, q_logits: tf.Tensor) -> tf.Tensor:
    """``KL(softmax(p) || softmax(q))`` per example ``(n,)``, from logits ``(n, 10)``: how
    far the prediction ``q`` has moved away from ``p``, 0 when they agree."""
    p = tf.nn.softmax(p_logits)
    return tf.reduce_sum(p * (tf.nn.log_softmax(p_logits) - tf.nn.log_softmax(q_logits)), 1)


def trades_examples(
    net: keras.Model, x: tf.Tensor, eps: float | tf.Tensor, steps: int,
    step_size: float | tf.Tensor, rng: tf.random.Generator,
) -> tf.Tensor:  # fmt: skip
    """TRADES' inner maximisation: PGD that pushes the prediction away from the clean one
    (up :func:`kl_divergence`), labels unused. ``net`` outputs logits. At ``x`` itself the
    KL term is 0 and so is its gradient, so the attack starts elsewhere: from a uniform
    random point of the ε-ball, as PGD training does. (Zhang et al. start from ``x`` plus
    noise of size 0.001 and take 40 steps. With 3 steps, both starts collapsed in our
    full-size runs: validation PGD accuracy near 80% after epoch 2, near 10% after epoch 3,
    while FGSM accuracy rose above 95%; see ``results/front.json``.)"""
    clean_logits = tf.stop_gradient(net(x, training=False))
    x_adv = tf.clip_by_value(x + rng.uniform(tf.shape(x), -eps, eps), 0.0, 1.0)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = kl_divergence(clean_logits, net(x_adv, training=False))
        x_adv = x_adv + step_size * tf.sign(tape.gradient(loss, x_adv))
        x_adv = tf.clip_by_value(x_adv, x - eps, x + eps)  # back onto the ε-ball around x
        x_adv = tf.clip_by_value(x_adv, 0.0, 1.0)  # and onto valid images
    return tf.stop_gradient(x_adv)


def training_loss(
    net: keras.Model, x: tf.Tensor, x_adv: tf.Tensor, y: tf.Tensor, defense: Defense
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The loss a step minimises, with the logits of the clean and the adversarial images
    (training mode). TRADES: clean cross-entropy + β · KL(clean || adversarial); every
    other defense: cross-entropy on the batch, its first part replaced by ``x_adv``."""
    if defense.kind == "trades":
        logits, adv_logits = tf.split(net(tf.concat([x, x_adv], 0), training=True), 2)
        clean_loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)
        robust_loss = kl_divergence(logits, adv_logits)
        return tf.reduce_mean(clean_loss + defense.beta * robust_loss), logits, adv_logits
    n_adv = tf.shape(x_adv)[0]
    all_logits = net(tf.concat([x_adv, x[n_adv:]], 0), training=True)
    loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=all_logits)
    return tf.reduce_mean(loss), all_logits[n_adv:], all_logits[:n_adv]


def ibp_schedule(defense: Defense, progress: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """IBP's ``(ε, κ)`` after a fraction ``progress`` (0..1) of training: over the first
    ``defense.ramp`` of it, ε grows linearly from 0 to ``defense.eps`` and the clean loss's
    weight κ falls from 1 to 0.5, then both stay (Gowal et al. 2018). Starting at ε = 0
    lets the network first learn the digits; a large box at once would only teach it to
    output the same scores for every image."""
    ramp = tf.minimum(1.0, progress / defense.ramp)
    return ramp * defense.eps, 1.0 - 0.5 * ramp


def ibp_loss(
    model: keras.Model, x: tf.Tensor, y: tf.Tensor, eps: tf.Tensor, kappa: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """IBP training's loss, with the clean logits and the worst-case logits:
    ``κ · CE(clean logits) + (1 - κ) · CE(worst-case logits within ε)``. The second term
    is small only when the bounds prove the right class, so minimising it makes the
    network both robust and easy to prove robust (tight bounds)."""
    logits = logits_model(model)(x, training=True)
    # the bounds in the dtype the layers compute in: bfloat16 where the model trains in
    # mixed precision (a loss, not a proof: proofs are always taken in float32)
    dtype = tf.as_dtype(hidden_layers(model)[0].compute_dtype)
    worst = worst_case_logits(model, x, y, eps, dtype)
    clean_loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)
    verified_loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=worst)
    return tf.reduce_mean(kappa * clean_loss + (1.0 - kappa) * verified_loss), logits, worst


def update_average(
    averages: list[tf.Variable], weights: list[tf.Variable], decay: tf.Tensor
) -> None:
    """One step of the exponential moving average of the weights:
    ``average <- decay * average + (1 - decay) * weight``, for each weight tensor."""
    for average, weight in zip(averages, weights, strict=True):
        average.assign(decay * average + (1.0 - decay) * weight)


def average_decay(weight_average: float, step: tf.Tensor) -> tf.Tensor:
    """The decay of the weight average at optimisation step ``step`` (0, 1, ...):
    ``weight_average``, but smaller during the first steps, ``(1 + step) / (10 + step)``, so
    that the average does not stay near the random initial weights."""
    return tf.minimum(weight_average, (1.0 + step) / (10.0 + step))


def make_train_step(
    model: keras.Model,
    defense: Defense,
    seed: int,
    averages: list[tf.Variable] | None = None,
    weight_average: float = 0.0,
):
    """Compile one optimisation step: ``step(x, y_onehot, progress) -> (loss, clean correct,
    number clean, adversarial correct, number adversarial)``, ``progress`` the share of
    training done (0..1). The batch's adversarial images come from
    :func:`adversarial_examples` (the first ``adv_fraction`` of it) or, for TRADES,
    :func:`trades_examples` (all of it), at the budget :func:`eps_at` gives; the weights
    take one step on :func:`training_loss`. IBP takes its step on :func:`ibp_loss` instead,
    and its "adversarial correct" counts the images its bounds certify. With
    ``averages`` (one variable per trainable weight), each step also updates their moving
    average with decay ``weight_average`` (:func:`update_average`)."""
    net = logits_model(model)
    optimizer = model.optimizer
    optimizer.build(net.trainable_variables)
    rng = tf.random.Generator.from_seed(seed)
    image_spec = tf.TensorSpec([None, 28, 28, 1], tf.float32)

    label_spec = tf.TensorSpec([None, NUM_CLASSES], tf.float32)

    n_steps = tf.Variable(0.0, trainable=False)  # optimisation steps taken

    @tf.function(input_signature=[image_spec, label_spec, tf.TensorSpec([], tf.float32)])
    def step(x: tf.Tensor, y: tf.Tensor, progress: tf.Tensor):
        eps = eps_at(defense, progress)
        if defense.kind == "trades":
            steps, rel_step, _ = defense.attack()
            x_adv = trades_examples(net, x, eps, steps, rel_step * eps, rng)
        elif defense.kind not in ("none", "ibp"):
            n = tf.cast(tf.shape(x)[0], tf.float32)
            n_adv = tf.cast(tf.round(defense.adv_fraction * n), tf.int32)
            x_adv = adversarial_examples(model, x[:n_adv], y[:n_adv], defense, rng, eps)
        else:
            x_adv = x[:0]
        with tf.GradientTape() as tape:
            if defense.kind == "ibp":
                eps, kappa = ibp_schedule(defense, progress)
                loss, logits, adv_logits = ibp_loss(model, x, y, eps, kappa)
            else:
                loss, logits, adv_logits = training_loss(net, x, x_adv, y, defense)
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply(grads, net.trainable_variables)
        if averages is not None:
            decay = average_decay(weight_average, n_steps)
            update_average(averages, net.trainable_variables, decay)
        n_steps.assign_add(1.0)
        labels = tf.argmax(y, 1)
        n_clean, n_adv = tf.shape(logits)[0], tf.shape(adv_logits)[0]
        # the clean logits belong to the batch's last n_clean labels, the adversarial to its first
        clean_y, adv_y = labels[tf.shape(labels)[0] - n_clean :], labels[:n_adv]
        clean_correct = tf.reduce_sum(tf.cast(tf.argmax(logits, 1) == clean_y, tf.float32))
        adv_correct = tf.reduce_sum(tf.cast(tf.argmax(adv_logits, 1) == adv_y, tf.float32))
        return loss, clean_correct, n_clean, adv_correct, n_adv

    return step


def validation_metrics(
    model: keras.Model, x_val: np.ndarray, y_val: np.ndarray, monitor: Monitor, seed: int
) -> dict[str, float]:
    """What ``monitor`` measures after an epoch: clean, FGSM, PGD and certified validation
    accuracy."""
    record = {"val_accuracy": accuracy(model, x_val, y_val)}
    if monitor.eps is not None:
        x_adv = fgsm(model, x_val, y_val, monitor.eps)
        record["val_fgsm_accuracy"] = accuracy(model, x_adv, y_val)
    x_m, y_m = x_val[: monitor.size], y_val[: monitor.size]  # the attacks' and proofs' share
    if monitor.pgd_steps:
        x_adv = pgd(
            model, x_m, y_m, monitor.eps, steps=monitor.pgd_steps,
            rel_step=2.5 / monitor.pgd_steps, seed=seed,
        )  # fmt: skip
        record["val_pgd_accuracy"] = accuracy(model, x_adv, y_m)
    if monitor.certified:
        record["val_certified_accuracy"] = certified_accuracy(model, x_m, y_m, monitor.eps)
    return record


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """An endless iterator of batches, reshuffled every epoch. One iterator serves the whole
    run: a fresh one per epoch sometimes stalled for seconds (see benchmarks/README.md)."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return iter(dataset.batch(batch_size).repeat().prefetch(tf.data.AUTOTUNE))


def run_epoch(
    model: keras.Model,
    step: Callable,
    batches: Iterator,
    n_steps: int,
    defense: Defense,
    lr_at_step: Callable[[int], float],
    first_step: int,
    bar: tqdm,
    total_steps: int,
) -> dict[str, float]:
    """One pass over the training data: ``n_steps`` batches through ``step`` (from
    :func:`make_train_step`), the learning rate set to ``lr_at_step(k)`` before step ``k``
    of ``total_steps``.
    Returns the epoch's ``loss``, ``accuracy`` (clean part), ``adv_accuracy`` and
    ``epoch_seconds``."""
    start = time.perf_counter()
    loss_sum, clean_correct, adv_correct, n_seen, n_clean, n_adv = 0.0, 0.0, 0.0, 0, 0, 0
    for i, (x_batch, y_batch) in enumerate(itertools.islice(batches, n_steps)):
        model.optimizer.learning_rate.assign(lr_at_step(first_step + i))
        progress = np.float32((first_step + i) / total_steps)
        loss, clean_c, clean_n, adv_c, adv_n = step(x_batch, y_batch, progress)
        if not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"training diverged: the loss became {float(loss)} in epoch "
                f"{first_step // n_steps + 1}, step {i + 1}; the learning rate "
                f"({float(model.optimizer.learning_rate.numpy()):g}) is most likely too large. "
                "Rebuild the model with a smaller one; this model must not be saved."
            )
        loss_sum += float(loss) * len(x_batch)
        clean_correct, adv_correct = clean_correct + float(clean_c), adv_correct + float(adv_c)
        n_seen, n_clean, n_adv = n_seen + len(x_batch), n_clean + int(clean_n), n_adv + int(adv_n)
        bar.update(1)
    record = {"loss": loss_sum / n_seen, "epoch_seconds": time.perf_counter() - start}
    if n_clean:  # with adv_fraction = 1 there is no clean part
        record["accuracy"] = clean_correct / n_clean
    if defense.kind != "none":
        record["adv_accuracy"] = adv_correct / max(1, n_adv)
    return record


@contextlib.contextmanager
def averaged_weights(
    weights: list[tf.Variable], averages: list[tf.Variable] | None
) -> Iterator[None]:
    """Inside the ``with`` block the model holds the averaged weights (nothing changes when
    ``averages`` is ``None``); after it, its training weights again."""
    if averages is None:
        yield
        return
    saved = [w.numpy() for w in weights]
    for weight, average in zip(weights, averages, strict=True):
        weight.assign(average)
    try:
        yield
    finally:
        for weight, value in zip(weights, saved, strict=True):
            weight.assign(value)


def train_model(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 128,
    defense: Defense = NO_DEFENSE,
    lr_schedule: Schedule = "constant",
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    monitor: Monitor = NO_MONITOR,
    weight_average: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` in place (its compiled optimizer; ``defense`` makes the batches
    adversarial) and return its per-epoch history.

    ``x_train``: images ``(n, 28, 28, 1)`` in [0, 1]; ``y_train``: labels (int or one-hot);
    ``lr_schedule``: ``"constant"``, ``"cosine"`` or ``"one_cycle"`` (:func:`learning_rate_at`),
    applied per step to the compiled learning rate; ``validation_data``: ``(x_val, y_val)``,
    measured after every epoch as ``monitor`` says; ``weight_average``: the decay of a moving
    average of the weights (e.g. 0.999; 0: none), which is then what the monitor measures
    and what the model holds at the end; ``seed``: shuffling and random starts.

    Returns ``{"loss", "accuracy", "adv_accuracy", "val_accuracy", "val_fgsm_accuracy",
    "val_pgd_accuracy", "epoch_seconds", "best_epoch"}`` -> one float per epoch (keys only
    where they apply). Accuracies are fractions in [0, 1]; ``accuracy`` is on the clean part
    of the batches (absent when all are adversarial), ``adv_accuracy`` on the rest.
    """
    check_training_settings(epochs, batch_size, defense, lr_schedule, monitor, weight_average)
    if validation_data is None and (monitor.eps is not None or monitor.restore_best):
        raise ValueError("a monitor needs validation_data")
    x_train, y_onehot = _checked_data(x_train, y_train, "train")
    if validation_data is not None:
        x_val, y_val = _checked_data(*validation_data, "val")
    weights = logits_model(model).trainable_variables
    averages = [tf.Variable(w, trainable=False) for w in weights] if weight_average else None
    step = make_train_step(model, defense, seed, averages, weight_average)
    batches = shuffled_batches(x_train, y_onehot, batch_size, seed)
    steps_per_epoch = -(-len(x_train) // batch_size)
    base_lr = float(model.optimizer.learning_rate.numpy())
    history: dict[str, list[float]] = {}
    best_score, best_weights = -1.0, None
    bar = tqdm(
        total=epochs * steps_per_epoch, desc=f"training ({defense.kind})", disable=not progress
    )
    for epoch in range(epochs):
        record = run_epoch(
            model, step, batches, steps_per_epoch, defense,
            lambda i: learning_rate_at(i / (epochs * steps_per_epoch), base_lr, lr_schedule),
            first_step=epoch * steps_per_epoch, bar=bar, total_steps=epochs * steps_per_epoch,
        )  # fmt: skip
        if validation_data is not None:
            with averaged_weights(weights, averages):  # the monitor measures the model kept
                record.update(validation_metrics(model, x_val, y_val, monitor, seed))
                if monitor.restore_best and record[monitor.restore_best] > best_score:
                    best_score, best_weights = record[monitor.restore_best], model.get_weights()
                    history["best_epoch"] = [float(epoch + 1)]
        for key, value in record.items():
            history.setdefault(key, []).append(float(value))
        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k != "epoch_seconds"})
    bar.close()
    if averages is not None:
        for weight, average in zip(weights, averages, strict=True):
            weight.assign(average)
    if best_weights is not None:
        model.set_weights(best_weights)
    model.optimizer.learning_rate.assign(base_lr)
    return history
