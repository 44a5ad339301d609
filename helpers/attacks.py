"""L-infinity evasion attacks: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018).

All attacks take model-ready images ``x`` of shape ``(n, 28, 28, 1)`` in [0, 1] and return
adversarial images of the same shape, with ``|x_adv - x| <= eps`` per pixel and every
pixel still in [0, 1].

Labels (``y``): integer ``(n,)`` or one-hot ``(n, 10)``. For an untargeted attack, ``y``
is the label to move *away from*; ``None`` uses the model's own prediction, which avoids
"label leaking" (Kurakin et al. 2017). For a targeted attack, ``y`` is the label to move
*towards* and is required.

The loss (``loss_on``) is, by default, the cross-entropy taken on the **logits** (the layer
before the softmax). Two alternatives:

- ``"margin"``: the logit margin ``max_{j != y} z_j - z_y`` (Carlini & Wagner 2017). Its
  gradient's sign does not change when the logits are scaled, so a model cannot look more
  robust merely by being more confident.
- ``"probabilities"``: reproduces a common tutorial mistake -- cross-entropy on clipped
  softmax outputs, as Keras 2 computed it -- where confidently classified images get an
  exactly zero gradient and the attack looks far weaker than it is.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Literal, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from helpers.data import NUM_CLASSES, one_hot, to_int_labels, validate_images
from helpers.model import logits_model

# Each model gets its own compiled functions (traced once per model). Notebooks that build
# several models in a loop would otherwise print TensorFlow's "retracing" warning.
tf.get_logger().setLevel(logging.ERROR)

LossOn = Literal["logits", "margin", "probabilities"]
LOSSES: tuple[str, ...] = ("logits", "margin", "probabilities")
_PROBABILITY_EPSILON = 1e-7  # Keras 2's clipping constant for cross-entropy on probabilities

_PGD_CHUNK = 10  # PGD steps per compiled call; fooled examples drop out between calls

#: Images per compiled call of every attack and prediction. On 2 CPU cores (AMD EPYC,
#: TensorFlow 2.21) batches of 256 ran PGD 1.4x and FGSM 1.2-1.35x faster than batches of
#: 1024, most likely because a smaller batch's activations stay in cache. Results do not
#: depend on it.
BATCH_SIZE = 256
_COMPILED: weakref.WeakKeyDictionary[keras.Model, dict[str, Callable]] = weakref.WeakKeyDictionary()


def validate_epsilon(eps: float, name: str = "eps") -> float:
    """Return ``eps`` as a float, or raise ``ValueError`` unless ``0 <= eps <= 1``.

    Pixels live in [0, 1], so an L-infinity budget above 1 is meaningless.
    """
    try:
        value = float(eps)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number in [0, 1], got {eps!r}") from err
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(
            f"{name} must lie in [0, 1] (pixels are scaled to [0, 1]), got {eps!r}; "
            "for a budget in 0..255 pixel units divide by 255"
        )
    return value


def _per_example_loss(
    model: keras.Model, x: tf.Tensor, y_onehot: tf.Tensor, loss_on: LossOn
) -> tf.Tensor:
    if loss_on == "logits":
        logits = _compiled(model)["logits_model"](x, training=False)
        return tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=logits)
    if loss_on == "margin":
        logits = _compiled(model)["logits_model"](x, training=False)
        true_logit = tf.reduce_sum(y_onehot * logits, axis=-1)
        best_other = tf.reduce_max(logits - 1e9 * y_onehot, axis=-1)
        return best_other - true_logit
    # The mistake, spelled out with plain TF ops: Keras 3 would quietly recover the logits
    # from a Softmax layer's output, which hides the problem this option demonstrates.
    probs = model(x, training=False)
    clipped = tf.clip_by_value(probs, _PROBABILITY_EPSILON, 1.0 - _PROBABILITY_EPSILON)
    return -tf.reduce_sum(y_onehot * tf.math.log(clipped), axis=-1)


def logits_and_input_gradient(
    net: keras.Model, x: tf.Tensor, y_onehot: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Logits ``(n, 10)`` of ``net`` at ``x`` and the gradient of the per-example
    cross-entropy (on the logits) with respect to ``x``. For use inside ``tf.function``."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = net(x, training=False)
        loss = tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=logits)
    return logits, tape.gradient(loss, x)


def linf_step(
    x0: tf.Tensor,
    x_adv: tf.Tensor,
    gradient: tf.Tensor,
    eps: float | tf.Tensor,
    step_size: float | tf.Tensor,
    direction: float | tf.Tensor = 1.0,
) -> tf.Tensor:
    """One PGD step: move ``step_size`` along ``direction * sign(gradient)``, then project
    onto the eps-ball around ``x0`` and onto [0, 1]. For use inside ``tf.function``."""
    x_next = x_adv + direction * step_size * tf.sign(gradient)
    return tf.clip_by_value(tf.clip_by_value(x_next, x0 - eps, x0 + eps), 0.0, 1.0)


def _compiled(model: keras.Model) -> dict[str, Callable]:
    """Per-model cache of compiled functions (traced once, reused for every batch)."""
    cache = _COMPILED.get(model)
    if cache is not None:
        return cache
    cache = {"logits_model": logits_model(model)}
    image_spec = tf.TensorSpec([None, 28, 28, 1], tf.float32)
    label_spec = tf.TensorSpec([None, NUM_CLASSES], tf.float32)

    def make_gradient(loss_on: LossOn) -> Callable:
        @tf.function(input_signature=[image_spec, label_spec])
        def gradient(x: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = _per_example_loss(model, x, y_onehot, loss_on)
            return tape.gradient(loss, x)

        return gradient

    def make_pgd_chunk(steps: int) -> Callable:
        # The steps are unrolled: a tf.range loop (a graph while-loop) ran each step 1.6x
        # slower here (Intel Xeon, 2 cores, TensorFlow 2.21), as its body is not optimised
        # like straight-line code. One trace per chunk length; the attacks use at most 10.
        @tf.function(
            input_signature=[
                image_spec,
                image_spec,
                label_spec,
                tf.TensorSpec([], tf.float32),
                tf.TensorSpec([], tf.float32),
                tf.TensorSpec([], tf.float32),
            ]
        )
        def pgd_chunk(x0, x_start, y_onehot, eps, step_size, direction):
            net = cache["logits_model"]
            target = tf.argmax(y_onehot, axis=1)

            def record(x_now, logits, x_keep, logits_keep, found):
                pred = tf.argmax(logits, axis=1)
                new = tf.where(direction > 0, pred != target, pred == target) & ~found
                x_keep = tf.where(new[:, None, None, None], x_now, x_keep)
                logits_keep = tf.where(new[:, None], logits, logits_keep)
                return x_keep, logits_keep, found | new

            x_adv, x_keep = x_start, x_start
            logits_keep = tf.zeros_like(y_onehot)
            found = tf.zeros([tf.shape(x0)[0]], tf.bool)
            for i in range(steps):
                logits, gradient = logits_and_input_gradient(net, x_adv, y_onehot)
                if i > 0:  # the logits of the previous step's result (the start point
                    # itself is not kept, so one step of size eps from x is exactly FGSM)
                    x_keep, logits_keep, found = record(x_adv, logits, x_keep, logits_keep, found)
                x_adv = linf_step(x0, x_adv, gradient, eps, step_size, direction)
            logits_last = net(x_adv, training=False)
            x_keep, logits_keep, found = record(x_adv, logits_last, x_keep, logits_keep, found)
            x_out = tf.where(found[:, None, None, None], x_keep, x_adv)
            logits_out = tf.where(found[:, None], logits_keep, logits_last)
            loss = tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=logits_out)
            return x_out, found, loss

        return pgd_chunk

    def pgd_loop(x0, x_start, y_onehot, eps, step_size, steps, direction):
        """``steps`` projected signed-gradient steps from ``x_start``.

        Returns ``(x_adv, fooled, loss)`` per example: the first iterate after a step that
        fooled the model (or the last iterate, where none did), whether it fooled it, and
        its loss.
        Keeping the first success makes the attack monotone: more steps never undo one.
        """
        steps = int(steps)
        if f"pgd_chunk_{steps}" not in cache:
            cache[f"pgd_chunk_{steps}"] = make_pgd_chunk(steps)
        return cache[f"pgd_chunk_{steps}"](x0, x_start, y_onehot, eps, step_size, direction)

    @tf.function(input_signature=[image_spec])
    def probabilities(x):
        return model(x, training=False)

    cache["probabilities"] = probabilities
    for loss_on in LOSSES:
        cache[f"gradient_{loss_on}"] = make_gradient(loss_on)
    cache["pgd_loop"] = pgd_loop
    _COMPILED[model] = cache
    return cache


def _attack_labels(
    model: keras.Model, x: np.ndarray, y: np.ndarray | None, targeted: bool, batch_size: int
) -> np.ndarray:
    """One-hot labels for the loss: given labels, or the model's predictions if ``None``."""
    if y is None:
        if targeted:
            raise ValueError("a targeted attack needs the target labels y")
        labels = predict_probabilities(model, x, batch_size).argmax(axis=1)
    else:
        labels = to_int_labels(y)
        if len(labels) != len(x):
            raise ValueError(f"got {len(x)} images but {len(labels)} labels")
    return one_hot(labels)


def predict_probabilities(
    model: keras.Model, x: np.ndarray, batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """Class probabilities ``(n, 10)`` for images ``(n, 28, 28, 1)`` in [0, 1].

    A compiled forward pass in batches (faster than ``model.predict`` for repeated calls
    on small inputs, and silent).
    """
    x = validate_images(x)
    _check_batch_size(batch_size)
    forward = _compiled(model)["probabilities"]
    out = np.empty((len(x), NUM_CLASSES), dtype=np.float32)
    for start in range(0, len(x), batch_size):
        out[start : start + batch_size] = forward(x[start : start + batch_size]).numpy()
    return out


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def fgsm_signs(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    targeted: bool = False,
    loss_on: LossOn = "logits",
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """The direction of FGSM's step: ``sign(grad_x loss)``, negated for a targeted attack.

    Independent of epsilon, so it can be computed once and reused for many budgets
    (see :func:`apply_signs`). Returns ``float32`` ``(n, 28, 28, 1)`` in {-1, 0, +1};
    a 0 marks a pixel whose gradient is exactly zero.
    """
    x = validate_images(x)
    _check_batch_size(batch_size)
    if loss_on not in LOSSES:
        raise ValueError(f"loss_on must be one of {LOSSES}, got {loss_on!r}")
    labels = _attack_labels(model, x, y, targeted, batch_size)
    gradient = _compiled(model)[f"gradient_{loss_on}"]
    signs = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        signs[sl] = tf.sign(gradient(x[sl], labels[sl])).numpy()
    return -signs if targeted else signs


def apply_signs(x: np.ndarray, signs: np.ndarray, eps: float) -> np.ndarray:
    """``clip(x + eps * signs, 0, 1)``: one FGSM step of size ``eps`` along ``signs``."""
    eps = validate_epsilon(eps)
    return np.clip(x + np.float32(eps) * signs, 0.0, 1.0).astype(np.float32)


def fgsm(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = 0.25,
    *,
    targeted: bool = False,
    loss_on: LossOn = "logits",
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Fast Gradient Sign Method: ``x_adv = clip(x + eps * sign(grad_x loss(f(x), y)), 0, 1)``.

    Args:
        model: a Keras classifier built by :func:`helpers.model.build_cnn`.
        x: images ``(n, 28, 28, 1)`` in [0, 1].
        y: labels (see module docstring); ``None`` = the model's predictions.
        eps: L-infinity budget in [0, 1].
        targeted: step *towards* class ``y`` instead of away from it.
        loss_on: ``"logits"`` (cross-entropy, the default), ``"margin"`` (logit margin) or
            ``"probabilities"`` (the saturated-softmax mistake, for demonstration).
        batch_size: images per gradient computation.

    Returns:
        ``float32`` adversarial images, same shape as ``x``.
    """
    eps = validate_epsilon(eps)
    signs = fgsm_signs(model, x, y, targeted=targeted, loss_on=loss_on, batch_size=batch_size)
    return apply_signs(validate_images(x), signs, eps)


def random_sign_noise(x: np.ndarray, eps: float, seed: int = 0) -> np.ndarray:
    """``clip(x + eps * s, 0, 1)`` with random signs ``s`` in {-1, +1}: a perturbation as
    large as an attack's in L-infinity, but without a gradient. The sanity baseline every
    attack must beat. Returns ``float32`` images, same shape as ``x``."""
    x = validate_images(x)
    signs = np.random.default_rng(seed).choice(np.float32([-1.0, 1.0]), size=x.shape)
    return apply_signs(x, signs, eps)


def zero_gradient_share(signs: np.ndarray) -> dict[str, float]:
    """How much of an FGSM direction is dead: ``{"pixels": ..., "images": ...}``.

    ``pixels`` is the fraction of pixels with an exactly zero gradient; ``images`` the
    fraction of images whose whole gradient is zero (FGSM cannot move them at all).
    """
    signs = np.asarray(signs)
    zero = signs == 0
    return {
        "pixels": float(zero.mean()),
        "images": float(zero.reshape(len(zero), -1).all(axis=1).mean()),
    }


def pgd(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = 0.25,
    *,
    step_size: float = 0.01,
    steps: int = 40,
    restarts: int = 1,
    random_start: bool = True,
    targeted: bool = False,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Projected Gradient Descent (Madry et al. 2018), L-infinity, loss on logits.

    Repeats ``x_adv <- clip(project_eps(x_adv + step_size * sign(grad)), 0, 1)`` for
    ``steps`` iterations from a uniform random point in the eps-ball (``random_start``) or
    from ``x``. Each example keeps the first iterate that fools the model. Restart ``r``
    starts from noise drawn with seed ``(seed, r)`` and runs only on the examples that no
    earlier restart fooled; an example nobody fooled keeps its highest-loss iterate
    (lowest, for a targeted attack). So the attack is monotone on a fixed batch: more
    steps or more restarts never raise the accuracy it measures. (Without a random start
    every restart would repeat the first, so only one runs.)

    With ``steps=1, random_start=False, step_size=eps`` it is exactly FGSM. Without a
    random start and with ``step_size = eps / steps`` it is BIM / I-FGSM (Kurakin et al.).

    Returns ``float32`` adversarial images, same shape as ``x``.
    """
    x, run = _pgd_setup(
        model, x, y, eps, step_size, steps, restarts, random_start, targeted, seed, batch_size
    )
    best = x.copy()
    fooled = np.zeros(len(x), dtype=bool)
    best_score = np.full(len(x), -np.inf, dtype=np.float32)
    for restart in range(restarts if random_start else 1):
        todo = np.flatnonzero(~fooled)
        x_adv, fooled_at, score = run(restart, todo)
        success = fooled_at > 0
        better = success | (score > best_score[todo])
        best[todo[better]] = x_adv[better]
        best_score[todo[better]] = score[better]
        fooled[todo] |= success
    return best


class EffortProgress(NamedTuple):
    """How far each restart of :func:`extend_pgd_effort` has got, so a later call can go on.

    ``fooled_at``: ``int`` ``(restarts, n)``, as :func:`pgd_effort` returns it (0: not
    fooled yet); ``x_last``: ``float32`` ``(restarts, n, 28, 28, 1)``, each restart's last
    iterate, or the one that fooled the example; ``steps``: ``int`` ``(restarts,)``, the
    steps each restart has run.
    """

    fooled_at: np.ndarray
    x_last: np.ndarray
    steps: np.ndarray


def pgd_effort(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = 0.25,
    *,
    step_size: float = 0.01,
    steps: int = 80,
    restarts: int = 10,
    targeted: bool = False,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """When each restart of :func:`pgd` first fools each example: ``int`` ``(restarts, n)``.

    Entry ``[r, i]`` is the number of steps after which restart ``r`` (seed ``(seed, r)``,
    as in :func:`pgd`) first fooled example ``i`` -- a multiple of 10, or ``steps`` -- and
    0 where it never did. Every restart runs on every example, so one call answers, for
    any ``k`` (a multiple of 10, up to ``steps``) and ``m <= restarts``, what
    ``pgd(..., steps=k, restarts=m)`` would measure: see :func:`effort_accuracy`.
    """
    return extend_pgd_effort(
        model,
        x,
        y,
        eps,
        step_size=step_size,
        steps=steps,
        restarts=restarts,
        targeted=targeted,
        seed=seed,
        batch_size=batch_size,
    ).fooled_at


def extend_pgd_effort(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = 0.25,
    *,
    progress: EffortProgress | None = None,
    step_size: float = 0.01,
    steps: int = 80,
    restarts: int = 10,
    targeted: bool = False,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> EffortProgress:
    """:func:`pgd_effort`, continued: runs until restarts ``0 .. restarts - 1`` have each
    run at least ``steps`` steps, taking every restart of ``progress`` (an earlier result
    for the same model, images, labels and settings) up from where it stopped.

    A restart's path depends only on its seed, so going on from step ``k`` gives what a
    fresh run would give (exactly, when ``k`` is a multiple of 10: the steps are taken in
    the same compiled chunks of 10, on the same batches). Doubling an attack's steps this
    way costs the new steps only. Restarts of ``progress`` beyond ``restarts``, and steps
    beyond ``steps``, are kept. Returns the new :class:`EffortProgress`.
    """
    x, run = _pgd_setup(
        model, x, y, eps, step_size, steps, restarts, True, targeted, seed, batch_size
    )
    n = len(x)
    if progress is None:
        progress = EffortProgress(
            np.zeros((0, n), dtype=np.int64),
            np.zeros((0, *x.shape), dtype=np.float32),
            np.zeros(0, dtype=np.int64),
        )
    elif progress.fooled_at.shape[1:] != (n,) or progress.x_last.shape[1:] != x.shape:
        raise ValueError(
            f"progress was made on {progress.fooled_at.shape[1]} images, not these {n}"
        )
    if len(progress.steps) >= restarts and (progress.steps[:restarts] >= steps).all():
        return progress  # nothing to run (converge_attack asks this often)
    total = max(restarts, len(progress.steps))
    fooled_at = np.zeros((total, n), dtype=np.int64)
    x_last = np.zeros((total, *x.shape), dtype=np.float32)
    done = np.zeros(total, dtype=np.int64)
    kept = len(progress.steps)
    fooled_at[:kept], x_last[:kept], done[:kept] = progress
    for restart in range(restarts):
        if done[restart] >= steps:
            continue
        resume = (x_last[restart], fooled_at[restart], done[restart]) if done[restart] else None
        x_last[restart], fooled_at[restart] = run(restart, np.arange(n), steps, resume)[:2]
        done[restart] = steps
    return EffortProgress(fooled_at, x_last, done)


def effort_accuracy(fooled_at: np.ndarray, steps: int, restarts: int) -> float:
    """Accuracy that PGD with ``steps`` steps and ``restarts`` restarts measures, from the
    result of :func:`pgd_effort` (the share of examples that none of the first
    ``restarts`` restarts fooled within ``steps`` steps)."""
    first = np.asarray(fooled_at)[:restarts]
    fooled = ((first > 0) & (first <= steps)).any(axis=0)
    return float(1.0 - fooled.mean())


def _pgd_setup(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None,
    eps: float,
    step_size: float,
    steps: int,
    restarts: int,
    random_start: bool,
    targeted: bool,
    seed: int,
    batch_size: int,
) -> tuple[np.ndarray, Callable[..., tuple[np.ndarray, ...]]]:
    """Validate PGD's arguments; return ``(x, run)`` where ``run(restart, idx)``
    attacks the examples ``idx`` from restart ``restart``'s start and returns, per example,
    ``(x_adv, fooled_at, score)``: the first iterate that fooled the model (else the last),
    the steps after which it did (0: never) and the loss (negated if targeted).
    ``run(restart, idx, until, resume)`` runs to ``until`` steps instead, going on from
    ``resume = (x_adv, fooled_at, steps_done)`` of an earlier run on the same ``idx``
    (its scores then cover only the examples it moved)."""
    x = validate_images(x)
    eps = validate_epsilon(eps)
    step_size = float(step_size)
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    _check_batch_size(batch_size)
    labels = _attack_labels(model, x, y, targeted, batch_size)
    loop = _compiled(model)["pgd_loop"]
    args = (np.float32(eps), np.float32(step_size))
    direction = np.float32(-1.0 if targeted else 1.0)

    def run(
        restart: int,
        idx: np.ndarray,
        until: int = steps,
        resume: tuple[np.ndarray, np.ndarray, int] | None = None,
    ) -> tuple[np.ndarray, ...]:
        x_adv = np.empty((len(idx), *x.shape[1:]), dtype=np.float32)
        fooled_at = np.zeros(len(idx), dtype=np.int64)
        score = np.zeros(len(idx), dtype=np.float32)
        if resume is not None:
            # Go on from an earlier call's last iterates (x_last, fooled_at, steps done).
            x_adv[:], fooled_at[:] = resume[0], resume[1]
        elif random_start:
            # Noise for every example, so each one's start depends only on (seed, restart).
            rng = np.random.default_rng([seed, restart])
            noise = rng.uniform(-eps, eps, size=x.shape).astype(np.float32)[idx]
        for start in range(0, len(idx), batch_size):
            # Steps in chunks; an example leaves the batch as soon as it is fooled (its
            # trajectory does not depend on the others, so the result is the same).
            active = np.arange(start, min(start + batch_size, len(idx)))
            if resume is not None:
                active = active[fooled_at[active] == 0]
                x_now, done = x_adv[active], int(resume[2])
            else:
                x_now, done = x[idx[active]], 0
                if random_start:
                    x_now = np.clip(x_now + noise[active], 0.0, 1.0)
            while done < until and len(active):
                chunk = min(_PGD_CHUNK, until - done)
                rows = idx[active]
                x_now, success, loss = (
                    t.numpy() for t in loop(x[rows], x_now, labels[rows], *args, chunk, direction)
                )
                done += chunk
                x_adv[active], score[active] = x_now, direction * loss
                fooled_at[active[success]] = done
                active, x_now = active[~success], x_now[~success]
        return x_adv, fooled_at, score

    return x, run


def bim(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = 0.25,
    *,
    steps: int = 10,
    targeted: bool = False,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Basic Iterative Method / I-FGSM: PGD without random start, step ``eps / steps``."""
    eps = validate_epsilon(eps)
    if eps == 0:
        return validate_images(x).copy()
    return pgd(
        model,
        x,
        y,
        eps,
        step_size=eps / steps,
        steps=steps,
        random_start=False,
        targeted=targeted,
        batch_size=batch_size,
    )
