"""L-infinity evasion attacks: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018).

Read it top to bottom: the loss and its gradient, FGSM (one signed step), then PGD (many
small signed steps, each projected back onto the ε-ball, from random starts, keeping every
example's worst case). The functions are the algorithm; :mod:`helpers.engine` only compiles
them and runs them in batches.

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

The course's settings, used wherever a notebook does not say otherwise:
"""

from __future__ import annotations

import logging
from typing import Literal, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from helpers import engine
from helpers.data import labels_for, one_hot, validate_images
from helpers.model import logits_model, predict_probabilities

#: The L-infinity budget of the course's attacks and defenses (pixels in [0, 1]).
EPS = 0.25
#: PGD's steps, and its step size as a fraction of ε (every attack and every training
#: recipe gives its step this way): 40 steps of 0.04·ε move a pixel at most 1.6·ε in all.
#: That is less than the ball's width along one pixel (2ε). A pixel at 0 or 1 (four in five
#: MNIST pixels) has only an ε-wide range left once clipped to [0, 1], which it crosses with
#: 0.6·ε to spare; a mid-grey pixel reaches the far face only from a start within 1.6·ε of
#: it (80% of uniform random starts) -- one reason PGD is run with restarts.
PGD_STEPS = 40
PGD_REL_STEP = 0.04

LossOn = Literal["logits", "margin", "probabilities"]
LOSSES: tuple[str, ...] = ("logits", "margin", "probabilities")
_PROBABILITY_EPSILON = 1e-7  # Keras 2's clipping constant for cross-entropy on probabilities

# Each model gets its own compiled functions; notebooks that build several models in a
# loop would otherwise print TensorFlow's "retracing" warning.
tf.get_logger().setLevel(logging.ERROR)


def validate_epsilon(eps: float, name: str = "eps") -> float:
    """Return ``eps`` as a float, or raise ``ValueError`` unless ``0 <= eps <= 1``.

    Pixels live in [0, 1], so an L-infinity budget above 1 is meaningless.
    """
    if isinstance(eps, bool):
        raise ValueError(f"{name} must be a number in [0, 1], got the boolean {eps!r}")
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


def validate_loss_on(loss_on: str) -> None:
    """Raise ``ValueError`` unless ``loss_on`` is one of :data:`LOSSES`."""
    if loss_on not in LOSSES:
        raise ValueError(f"loss_on must be one of {LOSSES}, got {loss_on!r}")


def attack_inputs(
    model: keras.Model, x: np.ndarray, y: np.ndarray | None, targeted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Checked images ``float32 (n, 28, 28, 1)`` and one-hot labels ``(n, 10)`` for the
    loss: the given labels, or the model's own predictions where ``y`` is ``None``."""
    x = validate_images(x)
    if y is None:
        if targeted:
            raise ValueError("a targeted attack needs the target labels y")
        return x, one_hot(predict_probabilities(model, x).argmax(axis=1))
    return x, one_hot(labels_for(x, y))


# --- the loss and its gradient -----------------------------------------------------------


def per_example_loss(
    model: keras.Model, x: tf.Tensor, y_onehot: tf.Tensor, loss_on: LossOn = "logits"
) -> tf.Tensor:
    """The attack's loss for each image ``(n,)``; the attacker makes it larger."""
    if loss_on == "logits":
        logits = logits_model(model)(x, training=False)
        return tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=logits)
    if loss_on == "margin":
        logits = logits_model(model)(x, training=False)
        true_logit = tf.reduce_sum(y_onehot * logits, axis=-1)
        best_other = tf.reduce_max(logits - 1e9 * y_onehot, axis=-1)
        return best_other - true_logit
    # The mistake, spelled out with plain TF ops: Keras 3 would quietly recover the logits
    # from a Softmax layer's output, which hides the problem this option demonstrates.
    probs = model(x, training=False)
    clipped = tf.clip_by_value(probs, _PROBABILITY_EPSILON, 1.0 - _PROBABILITY_EPSILON)
    return -tf.reduce_sum(y_onehot * tf.math.log(clipped), axis=-1)


def loss_gradient(
    model: keras.Model, x: tf.Tensor, y_onehot: tf.Tensor, loss_on: LossOn = "logits"
) -> tf.Tensor:
    """The gradient of each image's loss with respect to its pixels, ``(n, 28, 28, 1)``."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = per_example_loss(model, x, y_onehot, loss_on)
    return tape.gradient(loss, x)


# --- FGSM: one signed step ---------------------------------------------------------------


def fgsm_signs(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    targeted: bool = False,
    loss_on: LossOn = "logits",
) -> np.ndarray:
    """The direction of FGSM's step: ``sign(grad_x loss)``, negated for a targeted attack.

    Independent of epsilon, so it can be computed once and reused for many budgets
    (see :func:`apply_signs`). Returns ``float32`` ``(n, 28, 28, 1)`` in {-1, 0, +1};
    a 0 marks a pixel whose gradient is exactly zero.
    """
    validate_loss_on(loss_on)
    x, y_onehot = attack_inputs(model, x, y, targeted)
    (gradient,) = engine.in_batches(model, loss_gradient, [x, y_onehot], loss_on=loss_on)
    signs = np.sign(gradient)
    return -signs if targeted else signs  # targeted: step down the loss of the target


def apply_signs(x: np.ndarray, signs: np.ndarray, eps: float) -> np.ndarray:
    """``clip(x + eps * signs, 0, 1)``: one FGSM step of size ``eps`` along ``signs``."""
    eps = validate_epsilon(eps)
    return np.clip(x + np.float32(eps) * signs, 0.0, 1.0).astype(np.float32)


def fgsm_step(
    model: keras.Model,
    x: tf.Tensor,
    y_onehot: tf.Tensor,
    step: float | tf.Tensor,
    loss_on: LossOn = "logits",
) -> tf.Tensor:
    """FGSM on a batch of tensors: ``clip(x + step * sign(grad_x loss), 0, 1)``; ``step``
    is ε, or -ε for a targeted attack (down the loss of the target)."""
    gradient = loss_gradient(model, x, y_onehot, loss_on)
    return tf.clip_by_value(x + step * tf.sign(gradient), 0.0, 1.0)


def fgsm(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = EPS,
    *,
    targeted: bool = False,
    loss_on: LossOn = "logits",
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

    Returns:
        ``float32`` adversarial images, same shape as ``x``.
    """
    eps = validate_epsilon(eps)
    validate_loss_on(loss_on)
    x, y_onehot = attack_inputs(model, x, y, targeted)
    step = -eps if targeted else eps
    (x_adv,) = engine.in_batches(model, fgsm_step, [x, y_onehot], [step], loss_on=loss_on)
    return x_adv


def random_sign_noise(x: np.ndarray, eps: float, seed: int = 0) -> np.ndarray:
    """``clip(x + eps * s, 0, 1)`` with random signs ``s`` in {-1, +1}: a perturbation as
    large as an attack's in L-infinity, but without a gradient. The sanity baseline every
    attack must beat. Returns ``float32`` images, same shape as ``x``."""
    x = validate_images(x)
    signs = np.random.default_rng(seed).choice(np.float32([-1.0, 1.0]), size=x.shape)
    return apply_signs(x, signs, eps)


def saturated_share(probabilities: np.ndarray) -> float:
    """Share of images whose top probability lies above the clip of the mistaken loss
    (``loss_on="probabilities"``): above ``1 - 1e-7`` as float32 rounds it, 0.99999988.
    ``probabilities``: ``(n, classes)`` in [0, 1]. For such an image, classified correctly,
    that loss has an exactly zero gradient; at the clip's end itself the gradient still
    passes, so ``>=`` would count images FGSM can move."""
    top = np.asarray(probabilities, dtype=np.float32).max(axis=1)
    return float((top > np.float32(1.0 - _PROBABILITY_EPSILON)).mean())


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


# --- PGD: many small signed steps, projected ---------------------------------------------


def pgd_step(
    model: keras.Model,
    x: tf.Tensor,
    x_adv: tf.Tensor,
    y_onehot: tf.Tensor,
    eps: float | tf.Tensor,
    step_size: float | tf.Tensor,
    direction: float | tf.Tensor = 1.0,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One step of PGD from ``x_adv``: up the cross-entropy (down, with ``direction = -1``,
    for a targeted attack), then back onto the ε-ball around ``x`` and into [0, 1].

    Returns ``(x_next, logits, loss)``; the logits ``(n, 10)`` and loss ``(n,)`` are those
    of ``x_adv`` (computed for the gradient anyway), so the caller can see whether
    ``x_adv`` already fools the model without another forward pass.
    """
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        logits = logits_model(model)(x_adv, training=False)
        loss = tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=logits)
    gradient = tape.gradient(loss, x_adv)
    x_next = x_adv + direction * step_size * tf.sign(gradient)
    x_next = tf.clip_by_value(x_next, x - eps, x + eps)  # project onto the ε-ball around x
    x_next = tf.clip_by_value(x_next, 0.0, 1.0)  # and onto valid images
    return x_next, logits, loss


def uniform_start(x: np.ndarray, eps: float, seed: int, restart: int) -> np.ndarray:
    """A uniform random point of the ε-ball around each image (and in [0, 1]); restart
    ``r`` draws with seed ``(seed, r)``, so it is the same whichever examples it runs on."""
    noise = np.random.default_rng([seed, restart]).uniform(-eps, eps, size=x.shape)
    return np.clip(x + noise.astype(np.float32), 0.0, 1.0)


def pgd_steps(
    model: keras.Model,
    x: np.ndarray,
    x_start: np.ndarray,
    y_onehot: np.ndarray,
    eps: float,
    step_size: float,
    steps: int,
    *,
    targeted: bool = False,
    steps_done: int = 0,
    fooled_at: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PGD's inner loop: take :func:`pgd_step` from ``x_start`` until ``steps`` steps are
    done, each example stopping at the first iterate that fools the model.

    ``steps_done`` and ``fooled_at`` continue an earlier call that stopped at ``x_start``
    (a path depends only on where it is, so going on gives what one longer run gives).

    Returns ``(x_adv, fooled_at, loss)`` per example: the first iterate that fooled the
    model (where none did, the last one), the step that did (0: none), and the loss there
    (negated for a targeted attack, so that larger is always better for the attacker).
    """
    direction = -1.0 if targeted else 1.0
    x_adv = x_start.copy()
    fooled_at = np.zeros(len(x), np.int64) if fooled_at is None else fooled_at.copy()
    loss = np.zeros(len(x), np.float32)
    active = np.flatnonzero(fooled_at == 0)  # the examples still being attacked
    if not len(active):
        return x_adv, fooled_at, loss
    for step in range(steps_done, steps + 1):
        batch = [x[active], x_adv[active], y_onehot[active]]
        x_next, logits, step_loss = engine.in_batches(
            model, pgd_step, batch, [eps, step_size, direction]
        )
        if step > steps_done:  # the start itself is never kept: 1 step of ε from x is FGSM
            predicted, label = logits.argmax(axis=1), y_onehot[active].argmax(axis=1)
            fools = predicted == label if targeted else predicted != label
            fooled_at[active[fools]] = step
            loss[active] = direction * step_loss
            active, x_next = active[~fools], x_next[~fools]
        if step == steps or not len(active):
            return x_adv, fooled_at, loss
        x_adv[active] = x_next
    return x_adv, fooled_at, loss


def pgd(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = EPS,
    *,
    steps: int = PGD_STEPS,
    rel_step: float = PGD_REL_STEP,
    restarts: int = 1,
    random_start: bool = True,
    targeted: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Projected Gradient Descent (Madry et al. 2018), L-infinity, loss on the logits.

    Repeats ``x_adv <- clip(project_eps(x_adv + rel_step * eps * sign(grad)), 0, 1)`` for
    ``steps`` steps (:func:`pgd_step`) from a uniform random point of the ε-ball
    (:func:`uniform_start`) or, with ``random_start=False``, from ``x``. Each example keeps
    the first iterate that fools the model. Each restart runs only on the examples that no
    earlier restart fooled; an example nobody fooled keeps its highest-loss result. So the
    attack is monotone on a fixed batch: more steps or restarts never raise the accuracy it
    measures. (Without a random start every restart would repeat the first: one runs.)

    With ``steps=1, rel_step=1, random_start=False`` it is exactly FGSM; with
    ``rel_step = 1 / steps`` and no random start it is BIM / I-FGSM (Kurakin et al. 2017).

    Returns ``float32`` adversarial images, same shape as ``x``.
    """
    eps, step_size = check_pgd_settings(eps, steps, rel_step, restarts)
    x, y_onehot = attack_inputs(model, x, y, targeted)
    x_best = x.copy()
    loss_best = np.full(len(x), -np.inf, np.float32)
    fooled = np.zeros(len(x), dtype=bool)
    for restart in range(restarts if random_start else 1):
        todo = np.flatnonzero(~fooled)  # a restart attacks only what still stands
        start = uniform_start(x, eps, seed, restart) if random_start else x
        x_adv, fooled_at, loss = pgd_steps(
            model, x[todo], start[todo], y_onehot[todo], eps, step_size, steps, targeted=targeted
        )
        better = (fooled_at > 0) | (loss > loss_best[todo])  # each example's worst case
        x_best[todo[better]], loss_best[todo[better]] = x_adv[better], loss[better]
        fooled[todo] |= fooled_at > 0
    return x_best


def pgd_highest_loss(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = EPS,
    *,
    steps: int = PGD_STEPS,
    rel_step: float = PGD_REL_STEP,
    seed: int = 0,
) -> np.ndarray:
    """PGD that takes every step on every image and keeps each image's *highest-loss*
    iterate, not its first success: the examples to craft on one model and send to another
    (a transfer attack). Barely-adversarial images, which :func:`pgd` returns, sit right at
    the first model's decision boundary and rarely cross the second model's; the
    highest-loss ones are pushed as deep into the wrong class as the budget allows.

    One random start (:func:`uniform_start`, restart 0). Returns ``float32`` images, shape
    of ``x``, within ``eps`` of it and in [0, 1].
    """
    eps, step_size = check_pgd_settings(eps, steps, rel_step)
    x, y_onehot = attack_inputs(model, x, y)
    x_adv = uniform_start(x, eps, seed, 0)
    x_best, loss_best = x_adv.copy(), np.full(len(x), -np.inf, np.float32)
    for _ in range(steps + 1):  # the last pass only measures the loss of the last step
        x_next, _, loss = engine.in_batches(
            model, pgd_step, [x, x_adv, y_onehot], [eps, step_size, 1.0]
        )
        better = loss > loss_best  # ``loss`` is that of x_adv, the point the step left
        x_best[better], loss_best[better] = x_adv[better], loss[better]
        x_adv = x_next
    return x_best


def check_pgd_settings(
    eps: float, steps: int, rel_step: float, restarts: int = 1
) -> tuple[float, float]:
    """Validate PGD's settings; return ``(eps, step_size)`` with ``step_size = rel_step * eps``."""
    eps = validate_epsilon(eps)
    if isinstance(rel_step, bool) or not (isinstance(rel_step, int | float) and rel_step > 0):
        raise ValueError(f"rel_step (the step as a fraction of eps) must be > 0, got {rel_step!r}")
    if not np.isfinite(rel_step):
        raise ValueError(f"rel_step must be finite, got {rel_step!r}")
    for name, value in (("steps", steps), ("restarts", restarts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return eps, rel_step * eps


# --- how much effort PGD needs -----------------------------------------------------------


class Effort(NamedTuple):
    """Every restart of PGD run on every example, as far as :func:`pgd_effort` has taken it.

    ``fooled_at``: ``int (restarts, n)``, the step at which restart ``r`` first fooled
    example ``i`` (0: not yet); ``x_last``: ``float32 (restarts, n, 28, 28, 1)``, where each
    restart stands; ``steps``: ``int (restarts,)``, how many steps each has run.
    """

    fooled_at: np.ndarray
    x_last: np.ndarray
    steps: np.ndarray


def pgd_effort(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = EPS,
    *,
    steps: int = 2 * PGD_STEPS,
    restarts: int = 10,
    rel_step: float = PGD_REL_STEP,
    seed: int = 0,
    earlier: Effort | None = None,
) -> Effort:
    """Run restarts ``0 .. restarts - 1`` of :func:`pgd` (same seeds) on *every* example for
    ``steps`` steps, recording when each first fools each example.

    One call answers, for any ``k <= steps`` and ``m <= restarts``, what
    ``pgd(..., steps=k, restarts=m)`` measures (:func:`effort_accuracy`). ``earlier``, a
    result for the same model, images and settings, is taken up where it stopped, so
    doubling the steps costs only the new steps; what it ran beyond ``steps`` or
    ``restarts`` is kept.
    """
    eps, step_size = check_pgd_settings(eps, steps, rel_step, restarts)
    x, y_onehot = attack_inputs(model, x, y)
    if earlier is not None and earlier.fooled_at.shape[1] != len(x):
        raise ValueError(f"earlier was run on {earlier.fooled_at.shape[1]} images, not {len(x)}")
    fooled_at, x_last, done = ([], [], []) if earlier is None else map(list, earlier)
    for r in range(restarts):
        if r == len(done):  # a restart not run before starts at its random point
            fooled_at.append(np.zeros(len(x), np.int64))
            x_last.append(uniform_start(x, eps, seed, r))
            done.append(0)
        if done[r] < steps:
            x_last[r], fooled_at[r], _ = pgd_steps(
                model, x, x_last[r], y_onehot, eps, step_size, steps,
                steps_done=done[r], fooled_at=fooled_at[r],
            )  # fmt: skip
            done[r] = steps
    return Effort(np.array(fooled_at), np.array(x_last), np.array(done))


def effort_accuracy(fooled_at: np.ndarray, steps: int, restarts: int) -> float:
    """Accuracy that PGD with ``steps`` steps and ``restarts`` restarts measures, from
    ``fooled_at`` of :func:`pgd_effort` (the share of examples that none of the first
    ``restarts`` restarts fooled within ``steps`` steps)."""
    first = np.asarray(fooled_at)[:restarts]
    fooled = ((first > 0) & (first <= steps)).any(axis=0)
    return float(1.0 - fooled.mean())
