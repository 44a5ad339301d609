"""The field's standard evaluation, after AutoAttack (Croce & Hein 2020), in L-infinity.

Three attacks, each run on the images the earlier ones left unbroken; an image counts as
robust only if every attack failed on it (the per-example worst case):

- :func:`apgd` -- Auto-PGD: PGD whose step size needs no tuning (it starts at 2ε and is
  halved at checkpoints where the loss stopped rising), with momentum, keeping the
  highest-loss point; with the cross-entropy (APGD-CE) or, targeted at each of the most
  likely wrong classes, the scale-free difference-of-logits-ratio loss (APGD-T, DLR);
- :func:`square_attack` -- Square (Andriushchenko et al. 2020): no gradient at all, only the
  model's scores; random square patches of ±ε, kept when they lower the margin. When it
  beats the gradient attacks, the gradients are masked. Its search runs on a bfloat16 copy
  of the model where the CPU has bf16 (:func:`fast_margins`, about twice as fast), and asks
  the float32 model about every image near the decision boundary.

FAB-T, the fourth attack of the standard AutoAttack, is left out: it rarely changes the
result on top of the other three (Croce & Hein 2020, table 7) and costs as much as APGD-T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from helpers import engine
from helpers.attacks import EPS, attack_inputs, validate_epsilon
from helpers.data import NUM_CLASSES, one_hot
from helpers.model import in_bfloat16, logits_model, training_precision

Loss = Literal["ce", "dlr"]
MOMENTUM = 0.75  # alpha of the paper: how much of the new step a move takes
RHO = 0.75  # a checkpoint halves the step where the loss rose in fewer than 75% of steps
#: The standard AutoAttack's settings (Croce & Hein 2020): APGD's steps, APGD-T's target
#: classes (all nine wrong ones) and Square's queries.
APGD_STEPS = 100
TARGETS = 9
QUERIES = 5000
#: Square's margins below this (in logits) are taken in float32, not from the bfloat16
#: copy (:func:`fast_margins`): ten times the largest error of bfloat16's margins measured
#: on the course's models (about 0.1).
NEAR = 1.0
#: Images per call of the bfloat16 copy in Square's search: one call per query for up to
#: this many (a forward pass alone gains nothing from :data:`helpers.engine.BATCH_SIZE`'s
#: smaller batches, and each call costs time of its own; ``benchmarks/README.md``).
SEARCH_BATCH = 1024


def dlr_loss(logits: tf.Tensor, y_onehot: tf.Tensor, target_onehot: tf.Tensor) -> tf.Tensor:
    """The targeted difference-of-logits-ratio loss of Croce & Hein (2020), per image:
    ``-(z_y - z_t) / (z_1 - (z_3 + z_4) / 2)`` with ``z_1 >= z_2 >= ...`` the sorted logits.
    Dividing by a spread of the logits makes it blind to their scale, so an over-confident
    model cannot hide behind it. The attacker makes it larger."""
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    z_y = tf.reduce_sum(logits * y_onehot, axis=-1)
    z_t = tf.reduce_sum(logits * target_onehot, axis=-1)
    spread = ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2 + 1e-12
    return -(z_y - z_t) / spread


def apgd_loss_and_gradient(
    model: keras.Model,
    x: tf.Tensor,
    y_onehot: tf.Tensor,
    target_onehot: tf.Tensor,
    loss: Loss = "ce",
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """APGD's loss ``(n,)`` at ``x``, its gradient ``(n, 28, 28, 1)`` and the logits."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = logits_model(model)(x, training=False)
        if loss == "ce":
            value = tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=logits)
        else:
            value = dlr_loss(logits, y_onehot, target_onehot)
    return value, tape.gradient(value, x), logits


def _logits(model: keras.Model, x: tf.Tensor) -> tf.Tensor:
    return logits_model(model)(x, training=False)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step: the first after 22% of the steps,
    each later one 3% of the steps sooner than the last gap, but at least 6% after it (the
    paper's ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, in whole steps)."""
    gap, shrink, least = (
        max(int(0.22 * steps), 1),
        max(int(0.03 * steps), 1),
        max(int(0.06 * steps), 1),
    )
    points = [gap]
    while points[-1] + max(gap - shrink, least) <= steps:
        gap = max(gap - shrink, least)
        points.append(points[-1] + gap)
    return points


def apgd_start(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """APGD's random start, in units of ε: uniform noise scaled so that each image's largest
    change is exactly ε (``float32``, ``shape``)."""
    start = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    return start / np.abs(start).reshape(len(start), -1).max(axis=1)[:, None, None, None]


def apgd(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = EPS,
    *,
    steps: int = APGD_STEPS,
    loss: Loss = "ce",
    target: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Auto-PGD, L-infinity (Croce & Hein 2020, algorithm 1), one run of ``steps`` steps.

    ``loss="ce"``: untargeted cross-entropy; ``loss="dlr"`` with ``target`` (int ``(n,)``):
    the targeted DLR loss, which pulls each image towards its target class.

    Returns ``(x_adv, fooled)``: per image the first iterate that fooled the model, or where
    none did its highest-loss iterate (``float32 (n, 28, 28, 1)``, within ε of ``x`` and in
    [0, 1]), and whether it fooled it (``bool (n,)``).
    """
    eps = validate_epsilon(eps)
    x, y_onehot = attack_inputs(model, x, y)
    if loss == "dlr" and target is None:
        raise ValueError("the DLR loss of APGD-T needs a target class per image")
    target_onehot = one_hot(np.zeros(len(x), int) if target is None else np.asarray(target))

    def project(z: np.ndarray) -> np.ndarray:
        return np.clip(np.clip(z, x - eps, x + eps), 0.0, 1.0)

    def evaluate(z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """Loss, gradient and "fooled" at ``z``, for the images ``rows`` only."""
        value, gradient, logits = engine.in_batches(
            model, apgd_loss_and_gradient, [z[rows], y_onehot[rows], target_onehot[rows]],
            loss=loss,
        )  # fmt: skip
        return value, gradient, logits.argmax(axis=1) != y_onehot[rows].argmax(axis=1)

    x_now = project(x + eps * apgd_start(x.shape, seed))
    f_now, grad, fooled = evaluate(x_now, np.arange(len(x)))
    x_out = x_now.copy()  # each image's result: its first fooling iterate, or its best
    x_best, f_best, grad_best = x_now.copy(), f_now.copy(), grad.copy()
    eta = np.full((len(x), 1, 1, 1), 2 * eps, np.float32)
    x_prev, rises = x_now.copy(), np.zeros(len(x))
    checkpoints, last = apgd_checkpoints(steps), 0
    eta_last, f_best_last = eta.copy(), f_best.copy()
    for k in range(steps):
        z = project(x_now + eta * np.sign(grad))
        alpha = 1.0 if k == 0 else MOMENTUM
        x_next = project(x_now + alpha * (z - x_now) + (1 - alpha) * (x_now - x_prev))
        # an image already fooled is done: only the others are evaluated (and can change)
        live = np.flatnonzero(~fooled)
        if not len(live):
            break
        f_next, grad_next, fooled_next = f_now.copy(), grad.copy(), fooled.copy()
        f_next[live], grad_next[live], fooled_next[live] = evaluate(x_next, live)
        new = fooled_next & ~fooled
        x_out[new], fooled = x_next[new], fooled | fooled_next
        rises += f_next > f_now
        better = f_next > f_best
        x_best[better], f_best[better], grad_best[better] = (
            x_next[better],
            f_next[better],
            grad_next[better],
        )
        x_prev, x_now, f_now, grad = x_now, x_next, f_next, grad_next
        if k + 1 in checkpoints:  # halve the step where progress stalled, go back to best
            stalled = rises < RHO * (k + 1 - last)
            stalled |= (eta_last[:, 0, 0, 0] == eta[:, 0, 0, 0]) & (f_best_last == f_best)
            eta[stalled] /= 2
            x_now[stalled], grad[stalled] = x_best[stalled], grad_best[stalled]
            rises[:], last, eta_last, f_best_last = 0, k + 1, eta.copy(), f_best.copy()
    x_out[~fooled] = x_best[~fooled]
    return x_out, fooled


def top_wrong_classes(model: keras.Model, x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """For each image, its ``k`` most likely classes other than its label: ``int (k, n)``,
    the most likely first (APGD-T attacks towards each in turn)."""
    logits = engine.in_batches(model, _logits, [x])[0]
    logits[np.arange(len(x)), y] = -np.inf
    return np.argsort(-logits, axis=1)[:, :k].T


def square_window(p: float, step: int, queries: int, side: int = 28) -> int:
    """The side of Square's patch at query ``step``: the share ``p`` of the image at first,
    halved at fixed points of the run (the schedule of Andriushchenko et al., rescaled to
    ``queries``), never below one pixel."""
    at = int(step / queries * 10_000)
    halvings = sum(at > t for t in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    area = p / 2**halvings
    return int(min(max(round(np.sqrt(area * side * side)), 1), side - 1))


def _margins(
    model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int | None = None
) -> np.ndarray:
    """Square's loss, ``z_y - max_{j != y} z_j`` per image: below zero means fooled."""
    logits = engine.in_batches(model, _logits, [x], batch_size=batch_size)[0]
    true = logits[np.arange(len(x)), y]
    logits[np.arange(len(x)), y] = -np.inf
    return true - logits.max(axis=1)


def fast_margins(model: keras.Model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``margins(x, y)``: :func:`_margins` of ``model`` at about half the cost, for Square.

    Where the CPU computes in bfloat16 (:func:`helpers.model.training_precision`), the
    margins come from a bfloat16 copy of ``model`` (:func:`helpers.model.in_bfloat16`),
    off by a tenth at most; every image whose margin there is below :data:`NEAR` (close to
    fooled, or fooled) is asked again in float32, and that margin replaces it. So near the
    decision boundary, where the attack succeeds or fails, the search takes exactly the
    float32 model's decisions, and it stops on an image only where the float32 model is
    fooled. Elsewhere it is :func:`_margins` itself.
    """
    if training_precision() == "float32":
        return partial(_margins, model)
    fast = in_bfloat16(model)

    def margins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        margin = _margins(fast, x, y, batch_size=SEARCH_BATCH)
        near = np.flatnonzero(margin < NEAR)
        if len(near):
            margin[near] = _margins(model, x[near], y[near])
        return margin

    return margins


def square_attack(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    eps: float = EPS,
    *,
    queries: int = QUERIES,
    p_init: float = 0.8,
    seed: int = 0,
    margins: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The Square attack, L-infinity (Andriushchenko et al. 2020): a random search that
    uses only the model's scores, never a gradient.

    Starts from vertical stripes of ±ε; then, ``queries - 1`` times, each image not yet
    fooled gets one random square patch set to ±ε (the patch shrinks on a fixed schedule,
    :func:`square_window`), kept if it lowers the margin :func:`_margins`.

    ``margins(images, labels)`` computes that margin; by default the model's own, exactly.
    :func:`autoattack` passes the faster :func:`fast_margins`.

    Returns ``(x_adv, fooled)`` like :func:`apgd`.
    """
    eps = validate_epsilon(eps)
    x, y_onehot = attack_inputs(model, x, y)
    labels = y_onehot.argmax(axis=1)
    margins = margins or partial(_margins, model)
    rng = np.random.default_rng(seed)
    stripes = rng.choice(np.float32([-eps, eps]), size=(len(x), 1, x.shape[2], 1))
    x_adv = np.clip(x + stripes, 0.0, 1.0)
    margin = margins(x_adv, labels)
    rows = np.arange(x.shape[1])
    for step in range(1, queries):
        todo = np.flatnonzero(margin > 0)
        if not len(todo):
            break
        s = square_window(p_init, step, queries, x.shape[1])
        r, c = rng.integers(0, x.shape[1] - s + 1, size=(2, len(todo)))
        inside = (rows >= r[:, None]) & (rows < r[:, None] + s)
        window = inside[:, :, None] & ((rows >= c[:, None]) & (rows < c[:, None] + s))[:, None]
        window = window[..., None]
        sign = rng.choice(np.float32([-1, 1]), size=(len(todo), 1, 1, 1))
        clean, now = x[todo], x_adv[todo]
        new_value = np.clip(clean + sign * eps, 0.0, 1.0)
        unchanged = np.all((np.abs(now - new_value) < 1e-7) | ~window, axis=(1, 2, 3))
        new_value[unchanged] = np.clip(clean[unchanged] - sign[unchanged] * eps, 0.0, 1.0)
        candidate = np.where(window, new_value, now)
        new_margin = margins(candidate, labels[todo])
        better = new_margin < margin[todo]
        x_adv[todo[better]], margin[todo[better]] = candidate[better], new_margin[better]
    return x_adv, margin <= 0


def autoattack(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    eps: float = EPS,
    *,
    apgd_steps: int = APGD_STEPS,
    targets: int = TARGETS,
    queries: int = QUERIES,
    seed: int = 0,
) -> dict[str, object]:
    """The AutoAttack-style robust accuracy of ``model`` on ``(x, y)`` at ``eps``.

    APGD-CE, then APGD-T (DLR loss) towards each of the ``targets`` most likely wrong
    classes, then Square with ``queries`` queries (searching with :func:`fast_margins`),
    each on the images every earlier attack left correctly classified; an image counts as
    broken when the model, in float32, misclassifies what an attack found. Returns
    ``{"clean", "robust", "fooled_by": {attack: share of all images it was first to
    break}, "x_adv", "robust_mask"}``, accuracies in [0, 1].
    """
    x, y_onehot = attack_inputs(model, x, y)
    labels = y_onehot.argmax(axis=1)
    predicted = engine.in_batches(model, _logits, [x])[0].argmax(axis=1)
    robust = predicted == labels  # still correct under every attack so far
    x_adv, fooled_by = x.copy(), {}

    def run(name: str, attack) -> None:
        """Run ``attack(indices)`` on the images still robust; record what it broke."""
        todo = np.flatnonzero(robust)
        found = attack(todo)[0] if len(todo) else x[:0]
        hit = engine.in_batches(model, _logits, [found])[0].argmax(axis=1) != labels[todo]
        x_adv[todo[hit]], robust[todo[hit]] = found[hit], False
        fooled_by[name] = float(hit.sum() / len(x))

    run("apgd-ce", lambda i: apgd(model, x[i], labels[i], eps, steps=apgd_steps, seed=seed))
    n_targets = min(targets, NUM_CLASSES - 1)
    wrong = top_wrong_classes(model, x, labels, n_targets)
    for k in range(n_targets):
        run(
            f"apgd-t{k + 1}",
            lambda i, k=k: apgd(
                model, x[i], labels[i], eps, steps=apgd_steps, loss="dlr", target=wrong[k][i],
                seed=seed,
            ),
        )  # fmt: skip
    run(
        "square",
        lambda i: square_attack(
            model, x[i], labels[i], eps, queries=queries, seed=seed, margins=fast_margins(model)
        ),
    )
    return {
        "clean": float((predicted == labels).mean()),
        "robust": float(robust.mean()),
        "fooled_by": fooled_by,
        "x_adv": x_adv,
        "robust_mask": robust,
    }


def autoattack_by_budget(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epsilons: Sequence[float],
    **settings: Any,
) -> dict[float, dict[str, object]]:
    """:func:`autoattack` at each budget of ``epsilons``, smallest first, each on the images
    that every smaller budget left robust.

    An image broken within ε stays broken within any larger ε (its adversarial image lies
    inside the larger ball too), so attacking it again could only waste time. Returns
    ``{eps: result}`` with :func:`autoattack`'s keys, on all of ``x``; ``fooled_by`` gains
    the entry ``"smaller budget"`` (the share broken before, or misclassified when clean)
    and ``x_adv`` keeps those images' earlier adversarial versions. ``settings``:
    :func:`autoattack`'s keywords.
    """
    x, y_onehot = attack_inputs(model, x, y)
    labels = y_onehot.argmax(axis=1)
    robust = engine.in_batches(model, _logits, [x])[0].argmax(axis=1) == labels
    clean, x_adv = float(robust.mean()), x.copy()
    results: dict[float, dict[str, object]] = {}
    for eps in sorted(epsilons):
        todo = np.flatnonzero(robust)
        fooled_by = {"smaller budget": float(1 - robust.mean())}
        if len(todo):
            run = autoattack(model, x[todo], labels[todo], eps, **settings)
            robust[todo], x_adv[todo] = run["robust_mask"], run["x_adv"]
            share = len(todo) / len(x)  # autoattack's shares are of the images it was given
            fooled_by |= {name: v * share for name, v in run["fooled_by"].items()}
        results[eps] = {
            "clean": clean,
            "robust": float(robust.mean()),
            "fooled_by": fooled_by,
            "x_adv": x_adv.copy(),
            "robust_mask": robust.copy(),
        }
    return results
