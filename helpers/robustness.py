"""Evaluating robustness honestly: a battery of attacks per budget, and the sanity checks
of Carlini et al. 2019 ("On Evaluating Adversarial Robustness") as functions that can fail.

Vocabulary used throughout:

- a *curve* is ``{attack: {eps_key: accuracy}}`` for one model on one fixed set of images,
  with the attacks ``"fgsm"``, ``"pgd"`` (white-box), ``"transfer"`` (black-box: PGD
  examples crafted on another model), ``"noise"`` (random ±eps signs, no gradient) and
  ``"worst_case"``: the share of images the model classifies correctly on the clean image
  *and* under every attack -- the mean over examples of the worst case over attacks, which
  is the number to report as robust accuracy;
- a *check* is a :class:`Check`: one sanity check on one model, passed or not, with the
  numbers that decided it;
- the *headline* (:class:`Headline`) is the evaluation at one budget that a table reports:
  clean and FGSM accuracy on the whole test set, PGD with restarts and the robust accuracy
  over a battery of attacks on a fixed subset, strengthened where the convergence check
  had to attack harder (:func:`evaluate_headline`, :func:`strengthen_headline`).

PGD's step is a fraction ``rel_step`` of the budget (:data:`helpers.attacks.PGD_REL_STEP`,
0.04: 0.01 at ε = 0.25), so the attack is equally thorough at every budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any, Literal, NamedTuple

import keras
import numpy as np

from helpers import engine
from helpers.attacks import (
    PGD_REL_STEP,
    PGD_STEPS,
    apply_signs,
    attack_inputs,
    effort_accuracy,
    fgsm,
    fgsm_signs,
    per_example_loss,
    pgd,
    pgd_effort,
    pgd_highest_loss,
    random_sign_noise,
)
from helpers.autoattack import APGD_STEPS, QUERIES, TARGETS, autoattack
from helpers.data import NUM_CLASSES, to_int_labels, validate_images
from helpers.evaluation import (
    accuracy,
    eps_key,
    fgsm_accuracy_curve,
    predict_labels,
    worst_case_accuracy,
)

#: The attacks of a curve, weakest idea first; "worst_case" combines them.
ATTACKS: tuple[str, ...] = ("noise", "transfer", "fgsm", "pgd")


class Check(NamedTuple):
    """One sanity check on one model: ``passed`` and the numbers behind it; ``beyond``: what
    it found past the largest budget a claim is made at, reported but not required."""

    name: str
    model: str
    passed: bool
    detail: str
    beyond: str = ""


# --- how sure is a number measured on a subset? -------------------------------------------


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval ``(lower, upper)`` of a share measured as ``k`` successes
    out of ``n`` (95% for ``z = 1.96``): where the share over all images lies, given that
    only ``n`` of them were measured. Unlike ``p ± z·sqrt(p(1 - p)/n)`` it stays inside
    [0, 1] and does not shrink to nothing at 0% or 100% (Exercise 6.2 writes it)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p = k / n
    centre = p + z**2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (centre - spread) / (1 + z**2 / n), (centre + spread) / (1 + z**2 / n)


def margin(share: float, n: int, z: float = 1.96) -> float:
    """The ± of a share (e.g. an accuracy in [0, 1]) measured on ``n`` images: the larger
    distance from it to an end of its :func:`wilson_interval`, so that ``share ± margin``
    covers the whole interval (at 0% on 1,000 images: ±0.4 points, not ±0)."""
    low, high = wilson_interval(round(share * n), n, z)
    return max(share - low, high - share)


def pct_with_margin(share: float, n: int) -> str:
    """A share measured on ``n`` images with its 95% margin, in points: ``"88.7% ±2.0"``."""
    return f"{100 * share:.1f}% ±{100 * margin(share, n):.1f}"


def transfer_examples(
    source: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epsilons: Iterable[float],
    *,
    steps: int = PGD_STEPS,
    rel_step: float = PGD_REL_STEP,
    keep: Literal["highest_loss", "first_success"] = "highest_loss",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """PGD examples crafted on ``source`` (the attacker's own model) for every budget:
    ``{eps_key: images (n, 28, 28, 1)}``. Evaluate any other model on them for a
    black-box transfer attack; compute them once and reuse them for every target.

    ``keep="highest_loss"`` (the full-strength attack): every PGD step is taken and each
    image keeps its highest-loss iterate on ``source``
    (:func:`helpers.attacks.pgd_highest_loss`); ``"first_success"``: :func:`pgd`'s first
    iterate that fools ``source``, barely across its boundary (for comparison: those
    transfer far worse).
    """
    if keep not in ("highest_loss", "first_success"):
        raise ValueError(f"keep must be 'highest_loss' or 'first_success', got {keep!r}")
    attack = pgd_highest_loss if keep == "highest_loss" else pgd
    labels = to_int_labels(y)
    return {
        eps_key(eps): attack(source, x, labels, eps, steps=steps, rel_step=rel_step, seed=seed)
        if eps > 0
        else validate_images(x).copy()
        for eps in epsilons
    }


def robustness_curve(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epsilons: Iterable[float],
    *,
    transfer: Mapping[str, np.ndarray] | None = None,
    steps: int = PGD_STEPS,
    restarts: int = 1,
    rel_step: float = PGD_REL_STEP,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Accuracy of ``model`` under every attack of :data:`ATTACKS`, per budget.

    Args:
        x, y: the fixed evaluation images ``(n, 28, 28, 1)`` in [0, 1] and their labels.
        epsilons: budgets in [0, 1].
        transfer: :func:`transfer_examples` made on ``x`` for (at least) these budgets;
            without it the curve has no ``"transfer"`` attack.
        steps, restarts, rel_step: PGD's settings (see :func:`helpers.attacks.pgd`).

    Returns:
        ``{attack: {eps_key: acc}}`` for the attacks ``"clean"``, ``"fgsm"``, ``"pgd"``,
        ``"noise"``, ``"transfer"`` (if given) and ``"worst_case"``; accuracies are
        fractions in [0, 1], every attack on the same images (at eps = 0 every entry is the
        clean accuracy).
    """
    x = validate_images(x)
    labels = to_int_labels(y)
    clean = accuracy(model, x, labels)
    curve: dict[str, dict[str, float]] = {}
    for eps in epsilons:
        key = eps_key(eps)
        adversarial = {
            "noise": random_sign_noise(x, eps, seed=seed),
            "fgsm": fgsm(model, x, labels, eps),
            "pgd": pgd(
                model, x, labels, eps, steps=steps, rel_step=rel_step, restarts=restarts, seed=seed
            )
            if eps > 0
            else x,
        }
        if transfer is not None:
            if key not in transfer:
                raise ValueError(f"no transfer examples for eps={key}; make them for every budget")
            if transfer[key].shape != x.shape:
                raise ValueError("transfer examples must be made on the same images x")
            adversarial["transfer"] = transfer[key]
        result = worst_case_accuracy(model, x, labels, adversarial)
        result["clean"] = clean
        for attack, value in result.items():
            curve.setdefault(attack, {})[key] = value
    return curve


def _effort_summary(fooled_at: np.ndarray, steps: int, restarts: int) -> dict[str, Any]:
    """The :func:`attack_effort` dictionary, from ``fooled_at`` of a :func:`pgd_effort` run
    of at least ``2 * steps`` steps and ``2 * restarts`` restarts."""
    unit = math.gcd(steps, 10)  # every 10 steps where the steps are a multiple of 10
    by_steps = {
        str(k): effort_accuracy(fooled_at, k, restarts) for k in range(unit, 2 * steps + 1, unit)
    }
    by_restarts = {str(r): effort_accuracy(fooled_at, steps, r) for r in range(1, 2 * restarts + 1)}
    return {
        "by_steps": by_steps,
        "by_restarts": by_restarts,
        "base": by_steps[str(steps)],
        "double_steps": by_steps[str(2 * steps)],
        "double_restarts": by_restarts[str(2 * restarts)],
    }


def attack_effort(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    steps: int = PGD_STEPS,
    restarts: int = 5,
    rel_step: float = PGD_REL_STEP,
    seed: int = 0,
) -> dict[str, Any]:
    """PGD accuracy at ``eps`` as the attack's effort grows, up to twice the given steps
    and restarts, from one run of :func:`helpers.attacks.pgd_effort`.

    Returns ``{"by_steps": {k: acc} (at ``restarts`` restarts, k up to 2 * steps),
    "by_restarts": {r: acc} (at ``steps`` steps, r = 1 ... 2 * restarts), "base",
    "double_steps", "double_restarts"}`` with string keys. If the attack has converged,
    doubling its effort changes little.
    """
    effort = pgd_effort(
        model, x, y, eps, steps=2 * steps, restarts=2 * restarts, rel_step=rel_step, seed=seed
    )
    return _effort_summary(effort.fooled_at, steps, restarts)


def converge_attack(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    steps: int = PGD_STEPS,
    restarts: int = 5,
    rel_step: float = PGD_REL_STEP,
    tolerance: float = 0.02,
    max_steps: int = 160,
    max_restarts: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Strengthen PGD until doubling its effort stops finding adversarial examples.

    Measures as :func:`attack_effort` does at (``steps``, ``restarts``). If doubling the
    steps lowers the accuracy by ``tolerance`` or more, the steps are doubled; likewise the
    restarts; and the measurement is repeated, up to ``max_steps`` and ``max_restarts``.
    This is what an evaluator does when the convergence check fails: not loosen the check,
    but attack harder until the number stops moving. Each measurement takes the restarts
    of the last one up where they stopped (see :func:`helpers.attacks.pgd_effort`), so no
    step is taken twice.

    Returns the last :func:`attack_effort` result plus ``"steps"``, ``"restarts"`` (the
    setting it converged at, or the last one tried) and ``"tried"``: ``[[steps, restarts,
    accuracy], ...]`` for every setting measured, in order.
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    effort, tried = None, []
    while True:
        for k, r in ((2 * steps, restarts), (steps, 2 * restarts)):
            effort = pgd_effort(
                model, x, y, eps, steps=k, restarts=r, rel_step=rel_step, seed=seed, earlier=effort
            )
        result = _effort_summary(effort.fooled_at, steps, restarts)
        tried.append([steps, restarts, result["base"]])
        can_step = result["base"] - result["double_steps"] >= tolerance and 2 * steps <= max_steps
        can_restart = (
            result["base"] - result["double_restarts"] >= tolerance and 2 * restarts <= max_restarts
        )
        if not (can_step or can_restart):
            return {**result, "steps": steps, "restarts": restarts, "tried": tried}
        steps, restarts = steps * (2 if can_step else 1), restarts * (2 if can_restart else 1)


# --- the headline numbers at one budget ---------------------------------------------------


class Headline(NamedTuple):
    """The headline evaluation of several models at one budget (see :func:`evaluate_headline`).

    ``numbers``: ``{model: {"clean", "fgsm", "pgd", "robust"[, "converged_at",
    "pgd_converged"]}}``, accuracies in [0, 1]; ``batteries``: ``{model: {attack: images
    (n, 28, 28, 1)}}``, the adversarial images behind them.
    """

    numbers: dict[str, dict[str, Any]]
    batteries: dict[str, dict[str, np.ndarray]]


def headline_battery(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    transfer: np.ndarray,
    steps: int = PGD_STEPS,
    restarts: int = 5,
    rel_step: float = PGD_REL_STEP,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The attacks of the headline on images ``x`` ``(n, 28, 28, 1)`` in [0, 1] at ``eps``.

    ``transfer``: PGD examples of ``x`` crafted on another model (:func:`transfer_examples`),
    the same for every model evaluated. Returns ``{"fgsm", "pgd", "transfer", "noise"}``:
    adversarial images of the shape of ``x``, PGD with ``restarts`` random restarts (each
    image keeps its worst case), noise of random ±eps signs.
    """
    x, labels = validate_images(x), to_int_labels(y)
    if transfer.shape != x.shape:
        raise ValueError(f"transfer examples {transfer.shape} must be made on x {x.shape}")
    pgd_images = pgd(
        model, x, labels, eps, steps=steps, rel_step=rel_step, restarts=restarts, seed=seed
    )
    return {
        "fgsm": fgsm(model, x, labels, eps),
        "pgd": pgd_images,
        "transfer": transfer,
        "noise": random_sign_noise(x, eps, seed=seed),
    }


def headline_numbers(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    battery: Mapping[str, np.ndarray],
    x_test: np.ndarray,
    y_test: np.ndarray,
    eps: float,
) -> dict[str, float]:
    """The headline row of one model: ``{"clean", "fgsm", "pgd", "transfer", "robust"}``
    in [0, 1].

    Clean and FGSM accuracy (at ``eps``) on the whole test set ``x_test``; PGD and robust
    accuracy (the per-image worst case over every attack of ``battery``, made on ``x``) on
    the headline images ``x``, a subset of it.
    """
    on_head = worst_case_accuracy(model, x, y, battery)
    full = fgsm_accuracy_curve(model, x_test, y_test, [0.0, eps])
    return {
        "clean": full["0"],
        "fgsm": full[eps_key(eps)],
        "pgd": on_head["pgd"],
        "transfer": on_head["transfer"],
        "robust": on_head["worst_case"],
    }


def evaluate_headline(
    models: Mapping[str, keras.Model],
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    surrogate: keras.Model,
    eps: float,
    steps: int = PGD_STEPS,
    restarts: int = 5,
    rel_step: float = PGD_REL_STEP,
    seed: int = 0,
) -> Headline:
    """Every model against the headline battery at ``eps``: :func:`headline_battery` on the
    headline images ``x`` (the transfer examples crafted once, on ``surrogate``, with the
    same PGD at full strength: one start, every step, the highest-loss iterate), then
    :func:`headline_numbers`, with clean and FGSM accuracy on all of ``x_test``."""
    crafted = transfer_examples(surrogate, x, y, [eps], steps=steps, rel_step=rel_step, seed=seed)
    transfer = crafted[eps_key(eps)]
    numbers, batteries = {}, {}
    for name, model in models.items():
        batteries[name] = headline_battery(
            model, x, y, eps, transfer=transfer, steps=steps, restarts=restarts,
            rel_step=rel_step, seed=seed,
        )  # fmt: skip
        numbers[name] = headline_numbers(model, x, y, batteries[name], x_test, y_test, eps)
    return Headline(numbers, batteries)


def with_attack(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    numbers: Mapping[str, Any],
    battery: Mapping[str, np.ndarray],
    attack: str,
    images: np.ndarray,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One model's headline with one more attack: ``images`` (its adversarial versions of
    the headline images ``x``) join the ``battery`` as ``attack``; ``numbers`` gains the
    accuracy on them under that name, and ``"robust"`` becomes the per-image worst case over
    the enlarged battery (never higher than before). Returns new ``(numbers, battery)``."""
    battery = {**battery, attack: images}
    on_head = worst_case_accuracy(model, x, y, battery)
    return {**numbers, attack: on_head[attack], "robust": on_head["worst_case"]}, battery


def strengthen_one(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    numbers: Mapping[str, Any],
    battery: Mapping[str, np.ndarray],
    effort: Mapping[str, Any],
    eps: float,
    *,
    rel_step: float = PGD_REL_STEP,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One model's headline after the convergence check (see :func:`strengthen_headline`).

    ``effort``: :func:`converge_attack` for this model, started at the headline's PGD setting.
    Returns new ``(numbers, battery)`` (the arguments are not changed): ``numbers`` gains
    ``"converged_at"`` (e.g. ``"PGD-80×5"``); where the check had to attack harder than the
    headline, PGD at that setting is run on ``x`` and joins the battery as
    ``"pgd_converged"`` (:func:`with_attack`). ``"pgd"`` is kept.
    """
    numbers = {**numbers, "converged_at": f"PGD-{effort['steps']}×{effort['restarts']}"}
    if len(effort["tried"]) == 1:  # converged at the headline's own setting
        return numbers, dict(battery)
    stronger = pgd(
        model, x, y, eps, steps=effort["steps"], rel_step=rel_step,
        restarts=effort["restarts"], seed=seed,
    )  # fmt: skip
    return with_attack(model, x, y, numbers, battery, "pgd_converged", stronger)


def strengthen_headline(
    models: Mapping[str, keras.Model],
    numbers: Mapping[str, Mapping[str, Any]],
    batteries: Mapping[str, Mapping[str, np.ndarray]],
    efforts: Mapping[str, Mapping[str, Any]],
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    rel_step: float = PGD_REL_STEP,
    seed: int = 0,
) -> Headline:
    """The headline of :func:`evaluate_headline` after :func:`sanity_checks`: where the
    convergence check needed a stronger PGD than the headline's, that PGD is run on the
    headline images ``x`` too and the robust accuracy includes it (:func:`strengthen_one`).
    ``efforts``: ``{model: converge_attack result}``. Returns a new :class:`Headline`."""
    result = Headline({}, {})
    for name, model in models.items():
        result.numbers[name], result.batteries[name] = strengthen_one(
            model, x, y, numbers[name], batteries[name], efforts[name], eps,
            rel_step=rel_step, seed=seed,
        )  # fmt: skip
    return result


def correct_under_every_attack(
    model: keras.Model, x: np.ndarray, y: np.ndarray, battery: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Per image, the worst case over the attacks: ``True`` where ``model`` classifies the
    clean image ``x`` *and* every adversarial version of it in ``battery`` (``{attack:
    images of the shape of x}``, e.g. a :class:`Headline`'s) correctly. A boolean array
    ``(n,)``; its mean is the robust accuracy."""
    labels = to_int_labels(y)
    correct = predict_labels(model, validate_images(x)) == labels
    for attack, images in battery.items():
        if images.shape != x.shape:
            raise ValueError(f"{attack}: adversarial images {images.shape} != clean {x.shape}")
        correct &= predict_labels(model, images) == labels
    return correct


def accuracy_by_class(correct: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The share of ``correct`` (booleans, one per image) within each true digit ``y``:
    ``(10,)`` in [0, 1], ``nan`` for a digit with no image."""
    correct, labels = np.asarray(correct, dtype=bool), to_int_labels(y)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    hits = np.bincount(labels, weights=correct, minlength=NUM_CLASSES)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def robust_accuracy_by_class(
    models: Mapping[str, keras.Model],
    x: np.ndarray,
    y: np.ndarray,
    batteries: Mapping[str, Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Robust accuracy per true digit for every model: ``{model: (10,)}``, the
    :func:`accuracy_by_class` of :func:`correct_under_every_attack` over its battery
    (``batteries[model]``, made on the headline images ``x``). The mean over the digits,
    weighted by their counts, is the headline's robust accuracy."""
    return {
        name: accuracy_by_class(correct_under_every_attack(model, x, y, batteries[name]), y)
        for name, model in models.items()
    }


#: Published MNIST models at ε = 0.3 under the standard AutoAttack, all trained on GPUs
#: (the MNIST table of Croce & Hein 2020, "Reliable evaluation of adversarial robustness
#: with an ensemble of diverse parameter-free attacks"): ``(model, clean, AutoAttack)``,
#: accuracies in [0, 1].
PUBLISHED_AT_0_3: tuple[tuple[str, float, float], ...] = (
    ("Madry et al. 2018 (PGD training)", 0.9853, 0.8850),
    ("Wong et al. 2020 (FGSM with random start)", 0.9850, 0.8293),
    ("Zhang et al. 2019 (TRADES)", 0.9948, 0.9281),
    ("Gowal et al. 2020", 0.9926, 0.9634),
)


def published_table(ours: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: our models (``{label: {"clean", "autoattack"}}``, AutoAttack at ε = 0.3)
    beside :data:`PUBLISHED_AT_0_3`, each published row labelled with its source."""
    rows = [
        (f"ours: {label}", _pct(v["clean"]), _pct(v["autoattack"])) for label, v in ours.items()
    ]
    rows += [
        (f"{model}, GPU-trained", _pct(clean), _pct(robust))
        for model, clean, robust in PUBLISHED_AT_0_3
    ]
    return _markdown_table(("model", "clean", "AutoAttack ε=0.3"), rows)


def autoattack_table(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Markdown: per model (``{label: {eps_key: run}}``, runs of :func:`autoattack_headline`)
    and budget, the robust accuracy, the share of images each attack was first to break,
    and the time it took."""
    attacks = list(
        dict.fromkeys(a for r in runs.values() for v in r.values() for a in v["fooled_by"])
    )
    rows = [
        (
            label, key, _pct(v["clean"]), _pct(v["robust"]),
            *[_pct(v["fooled_by"].get(a, 0.0)) for a in attacks], f"{v['seconds']:.0f} s",
        )
        for label, by_eps in runs.items()
        for key, v in by_eps.items()
    ]  # fmt: skip
    header = (
        "model",
        "ε",
        "clean (these images)",
        "robust",
        *[f"broken by {a}" for a in attacks],
        "time",
    )
    return _markdown_table(header, rows)


# --- AutoAttack on the headline images ------------------------------------------------


def autoattack_headline(
    models: Mapping[str, keras.Model],
    headlines: Mapping[str, Headline],
    x: np.ndarray,
    y: np.ndarray,
    *,
    apgd_steps: int = APGD_STEPS,
    targets: int = TARGETS,
    queries: int = QUERIES,
    seed: int = 0,
) -> tuple[dict[str, Headline], dict[str, dict[str, dict[str, Any]]]]:
    """:func:`helpers.autoattack.autoattack` on every model at every budget of
    ``headlines`` (``{eps_key: Headline}``, made on the headline images ``x``).

    AutoAttack's images join each battery as ``"autoattack"`` (:func:`with_attack`), so
    the robust accuracy is the worst case over the battery *and* AutoAttack. Returns
    ``(headlines, runs)``: the enlarged headlines, and ``runs[model][eps_key]`` =
    ``{"clean", "robust", "fooled_by", "seconds"}`` (accuracies in [0, 1] on ``x``; the
    share of images each of AutoAttack's attacks was first to break; its run time).
    """
    enlarged = {key: Headline({}, {}) for key in headlines}
    runs: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in models}
    for key, headline in headlines.items():
        for name, model in models.items():
            started = time.perf_counter()
            result = autoattack(
                model, x, y, float(key), apgd_steps=apgd_steps, targets=targets,
                queries=queries, seed=seed,
            )  # fmt: skip
            runs[name][key] = {
                **{k: result[k] for k in ("clean", "robust", "fooled_by")},
                "seconds": time.perf_counter() - started,
            }
            enlarged[key].numbers[name], enlarged[key].batteries[name] = with_attack(
                model, x, y, headline.numbers[name], headline.batteries[name], "autoattack",
                result["x_adv"],
            )  # fmt: skip
    return enlarged, runs


def tradeoff_points(
    models: Mapping[str, keras.Model],
    test: tuple[np.ndarray, np.ndarray],
    attacked: tuple[np.ndarray, np.ndarray],
    eps: float,
    *,
    apgd_steps: int = APGD_STEPS,
    targets: int = TARGETS,
    queries: int = QUERIES,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Where each model sits between accuracy and robustness: ``{label: {"clean", "fgsm",
    "robust"}}``, accuracies in [0, 1].

    ``"clean"`` and ``"fgsm"`` (FGSM at ``eps``) are measured on all of ``test`` (images
    ``(n, 28, 28, 1)`` in [0, 1] and labels); ``"robust"`` is the AutoAttack-style accuracy
    at ``eps`` (:func:`helpers.autoattack.autoattack`) on ``attacked``, usually a smaller
    stratified subset of the test set, since the attacks cost far more than a prediction.
    """
    (x, y), (x_a, y_a) = test, attacked
    points = {}
    for label, model in models.items():
        result = autoattack(
            model, x_a, y_a, eps, apgd_steps=apgd_steps, targets=targets, queries=queries,
            seed=seed,
        )  # fmt: skip
        curve = fgsm_accuracy_curve(model, x, y, [0.0, eps])  # at 0: the clean accuracy
        points[label] = {
            "clean": curve[eps_key(0.0)],
            "fgsm": curve[eps_key(eps)],
            "robust": float(result["robust"]),
        }
    return points


# --- the sanity checks -------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def check_chance_at_large_budget(
    model: str, accuracy: float, eps: float, chance: float = 1 / NUM_CLASSES
) -> Check:
    """At a budget that can turn every image into the same grey picture (eps = 0.5), an
    attack that works must bring accuracy down to chance (10%) or below."""
    return Check(
        f"chance at ε={eps:g}",
        model,
        accuracy <= chance,
        f"PGD accuracy {_pct(accuracy)} (must be ≤ {_pct(chance)})",
    )


def check_iterative_beats_single_step(
    model: str, curve: Mapping[str, Mapping[str, float]], tolerance: float = 0.005
) -> Check:
    """PGD (many steps) must be at least as strong as FGSM (one step) at every budget."""
    worse = {
        k: (curve["pgd"][k], curve["fgsm"][k])
        for k in curve["pgd"]
        if curve["pgd"][k] > curve["fgsm"][k] + tolerance
    }
    detail = (
        "PGD ≤ FGSM at every ε"
        if not worse
        else "; ".join(f"ε={k}: PGD {_pct(p)} > FGSM {_pct(f)}" for k, (p, f) in worse.items())
    )
    return Check("iterative ≥ single-step", model, not worse, detail)


def check_monotone_in_budget(
    model: str, curve: Mapping[str, Mapping[str, float]], tolerance: float = 0.005
) -> Check:
    """More budget must never help the model: PGD accuracy falls (or stays) as eps grows.
    A curve that rises is a classic sign of gradient masking or a broken attack."""
    points = sorted((float(k), v) for k, v in curve["pgd"].items())
    rises = [(e0, a0, e1, a1) for (e0, a0), (e1, a1) in pairwise(points) if a1 > a0 + tolerance]
    detail = (
        "PGD accuracy never rises with ε"
        if not rises
        else "; ".join(
            f"{_pct(a0)} at ε={e0:g} < {_pct(a1)} at ε={e1:g}" for e0, a0, e1, a1 in rises
        )
    )
    return Check("monotone in ε", model, not rises, detail)


def check_converged(model: str, result: Mapping[str, Any], tolerance: float = 0.01) -> Check:
    """Doubling PGD's steps or restarts must change the accuracy by less than ``tolerance``.

    ``result``: from :func:`attack_effort` or :func:`converge_attack`; for the latter the
    detail also names the weaker settings that did not converge."""
    base = result["base"]
    change = max(abs(result["double_steps"] - base), abs(result["double_restarts"] - base))
    setting = ""
    if "steps" in result:
        setting = f"PGD-{result['steps']}×{result['restarts']} "
        weaker = [f"PGD-{s}×{r} {_pct(a)}" for s, r, a in result.get("tried", [])[:-1]]
        if weaker:
            setting = f"not at {', '.join(weaker)}; at {setting}"
    return Check(
        "attack converged",
        model,
        change < tolerance,
        f"{setting}{_pct(base)}; 2× steps {_pct(result['double_steps'])}, "
        f"2× restarts {_pct(result['double_restarts'])} (change must be < {_pct(tolerance)})",
    )


def check_white_box_strongest(
    model: str,
    curve: Mapping[str, Mapping[str, float]],
    tolerance: float = 0.005,
    up_to: float | None = None,
) -> Check:
    """Black-box transfer and random noise of the same L∞ size must be weaker than the
    white-box PGD attack at every budget up to ``up_to`` (the largest budget a claim is made
    at; ``None``: every budget): if not, the white-box attack is failing there.

    Beyond ``up_to`` a failure is reported in the detail but does not fail the check: a
    model trained at some budget can mislead PGD's gradients above it, where the transfer
    attack then does better. Nothing is claimed there, and the curve's worst case over the
    attacks already includes the transfer attack; the notebook shows the finding."""
    weaker = [a for a in ("transfer", "noise") if a in curve]
    bad = [
        (float(k), f"ε={k}: {a} {_pct(curve[a][k])} < PGD {_pct(curve['pgd'][k])}")
        for a in weaker
        for k in curve["pgd"]
        if curve[a][k] < curve["pgd"][k] - tolerance
    ]
    required = [text for k, text in bad if up_to is None or k <= up_to + 1e-9]
    beyond = [text for k, text in bad if up_to is not None and k > up_to + 1e-9]
    where = "every ε" if up_to is None else f"every ε up to {up_to:g}"
    detail = f"{' and '.join(weaker)} ≥ PGD at {where}" if not required else "; ".join(required)
    noted = "; ".join(beyond)
    if beyond:
        detail += f"; beyond ε = {up_to:g} (not required): {noted}"
    return Check("white-box strongest", model, not required, detail, noted)


def check_gradient_free_weaker(
    model: str, white_box: float, gradient_free: float, tolerance: float = 0.005
) -> Check:
    """An attack that never sees a gradient (Square, which reads only the model's scores)
    must not beat the white-box gradient attacks: where it does, the gradients the
    white-box attacks follow are masked (Carlini et al. 2019). Accuracies in [0, 1]."""
    passed = gradient_free >= white_box - tolerance
    detail = f"gradient-free {_pct(gradient_free)} vs white-box {_pct(white_box)}"
    return Check(
        "gradient-free ≥ white-box",
        model,
        passed,
        detail if passed else f"{detail}: gradient masking suspected",
    )


def check_gradient_free_adds_little(
    model: str, run: Mapping[str, Any], tolerance: float = 0.005
) -> Check:
    """AutoAttack runs Square, which never sees a gradient, last, on the images the gradient
    attacks (APGD-CE, APGD-T) left standing: if it still breaks more than ``tolerance`` of
    all images, the gradients misled those attacks (masking), and a white-box number alone
    would be optimistic. ``run``: one :func:`autoattack_headline` run."""
    extra = run["fooled_by"].get("square", 0.0)
    passed = extra <= tolerance
    detail = (
        f"Square broke {_pct(extra)} of the images the gradient attacks left standing "
        f"(must be ≤ {_pct(tolerance)})"
    )
    return Check(
        "gradient-free adds little",
        model,
        passed,
        detail if passed else f"{detail}: gradient masking suspected",
    )


def check_worst_case(model: str, curve: Mapping[str, Mapping[str, float]]) -> Check:
    """The robust accuracy (per-example worst case over attacks) can be no higher than the
    accuracy under any single attack, nor than the clean accuracy."""
    attacks = [a for a in (*ATTACKS, "clean") if a in curve]
    bad = [
        f"ε={k}: worst case {_pct(v)} > {a} {_pct(curve[a][k])}"
        for k, v in curve["worst_case"].items()
        for a in attacks
        if v > curve[a][k] + 1e-12
    ]
    detail = "worst case ≤ every attack at every ε" if not bad else "; ".join(bad)
    return Check("robust = worst case", model, not bad, detail)


def model_checks(
    label: str,
    model: keras.Model,
    curve: Mapping[str, Mapping[str, float]],
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    chance_eps: float = 0.5,
    steps: int = PGD_STEPS,
    restarts: int = 5,
    rel_step: float = PGD_REL_STEP,
    tolerance: float = 0.02,
    max_steps: int = 160,
    max_restarts: int = 20,
    autoattack_run: Mapping[str, Any] | None = None,
    claims_up_to: float | None = None,
    seed: int = 0,
) -> tuple[list[Check], dict[str, Any]]:
    """Every sanity check on one model (named ``label`` in the checks).

    On the check images ``x`` ``(n, 28, 28, 1)``: PGD (``steps``, one start) at
    ``chance_eps`` for the chance check, and :func:`converge_attack` at ``eps`` from
    (``steps``, ``restarts``) up to (``max_steps``, ``max_restarts``); the other checks read
    the model's :func:`robustness_curve` ``curve`` and, given its
    :func:`autoattack_headline` run at ``eps`` (``autoattack_run``), what the gradient-free
    attack found there (:func:`check_gradient_free_adds_little`); ``claims_up_to``: the
    largest budget of the claims, above which the white-box check only reports
    (:func:`check_white_box_strongest`). Returns ``(checks,
    effort)``: the checks in the order of the checklist, and the :func:`converge_attack`
    result.
    """
    at_chance = pgd(model, x, y, chance_eps, steps=steps, rel_step=rel_step, seed=seed)
    effort = converge_attack(
        model, x, y, eps, steps=steps, restarts=restarts, rel_step=rel_step, tolerance=tolerance,
        max_steps=max_steps, max_restarts=max_restarts, seed=seed,
    )  # fmt: skip
    checks = [
        check_chance_at_large_budget(label, accuracy(model, at_chance, y), chance_eps),
        check_iterative_beats_single_step(label, curve),
        check_monotone_in_budget(label, curve),
        check_converged(label, effort, tolerance),
        check_white_box_strongest(label, curve, up_to=claims_up_to),
        *([check_gradient_free_adds_little(label, autoattack_run)] if autoattack_run else []),
        check_worst_case(label, curve),
    ]
    return checks, effort


def sanity_checks(
    models: Mapping[str, keras.Model],
    curves: Mapping[str, Mapping[str, Mapping[str, float]]],
    x: np.ndarray,
    y: np.ndarray,
    *,
    labels: Mapping[str, str] | None = None,
    autoattack_runs: Mapping[str, Mapping[str, Any]] | None = None,
    **settings: Any,
) -> tuple[list[Check], dict[str, dict[str, Any]]]:
    """:func:`model_checks` for every model, one model after another.

    ``curves``: ``{model: robustness_curve}``; ``labels``: how the checks name each model
    (default: its key); ``autoattack_runs``: ``{model: autoattack_headline run at eps}``
    for the gradient-free check; ``settings``: the keyword arguments of
    :func:`model_checks` (``eps``, ``chance_eps``, ``steps``, ``restarts``, ``tolerance``...).
    Returns ``(checks, efforts)``: all checks, model by model, and ``{model: converge_attack
    result}``.
    """
    checks, efforts = [], {}
    runs = autoattack_runs or {}
    for name, model in models.items():
        label = name if labels is None else labels[name]
        found, efforts[name] = model_checks(
            label, model, curves[name], x, y, autoattack_run=runs.get(name), **settings
        )
        checks += found
    return checks, efforts


def require(checks: Sequence[Check]) -> None:
    """Raise ``AssertionError`` listing every failed check (a loud stop, not a warning)."""
    failed = [c for c in checks if not c.passed]
    if failed:
        lines = "\n".join(f"- {c.model}: {c.name}: {c.detail}" for c in failed)
        raise AssertionError(
            f"{len(failed)} of {len(checks)} sanity checks failed; the evaluation cannot be "
            f"trusted until they pass:\n{lines}"
        )


# --- label leaking -----------------------------------------------------------------------


def label_leaking(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    known: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Clean accuracy against FGSM at ``eps`` made with the true and with the predicted labels.

    On images ``x`` ``(n, 28, 28, 1)`` in [0, 1] (the whole test set, in notebook 06).
    ``known``: clean and FGSM accuracy (true labels, at ``eps``) already measured on these
    images, as ``{"clean": ..., "fgsm": ...}`` (a :func:`headline_numbers` row); they are
    then not measured again. Returns ``{"eps", "clean", "true_label", "predicted_label"}``,
    accuracies in [0, 1]. FGSM accuracy above the clean accuracy with true labels, but not
    with predicted ones, means the model reads the label off the perturbation
    (Kurakin et al. 2017): see :func:`leaking_table`.
    """
    key = eps_key(eps)
    with_true = (
        {"0": known["clean"], key: known["fgsm"]}
        if known is not None
        else fgsm_accuracy_curve(model, x, y, [0.0, eps])
    )
    with_predicted = fgsm_accuracy_curve(model, x, y, [eps], attack_labels="predicted")
    return {
        "eps": eps,
        "clean": with_true["0"],
        "true_label": with_true[key],
        "predicted_label": with_predicted[key],
    }


# --- the loss around the test images ----------------------------------------------------


def mean_loss(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """The mean cross-entropy (taken on the logits, as the attacks do) of ``model`` on
    images ``x`` ``(n, 28, 28, 1)`` in [0, 1] with labels ``y``."""
    x, y_onehot = attack_inputs(model, x, y)
    (losses,) = engine.in_batches(model, per_example_loss, [x, y_onehot])
    return float(losses.mean())


def loss_along_directions(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    points: int = 11,
    steps: int = PGD_STEPS,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """How the loss rises as each image moves away from itself along three directions:
    the mean cross-entropy of ``model`` at ``clip(x + t·d, 0, 1)`` for ``points`` values
    of t from 0 to ``eps``, with d per image

    - ``"gradient sign"``: the sign of the loss's gradient at x, FGSM's direction (at
      t = eps the FGSM image);
    - ``"random sign"``: random signs, seeded (at t = eps the image of
      :func:`helpers.attacks.random_sign_noise` with the same ``seed``);
    - ``"towards PGD"``: ``(x_pgd - x) / eps``, towards the highest-loss image PGD found
      within ``eps`` (:func:`helpers.attacks.pgd_highest_loss`, ``steps`` steps).

    At t = 0 every direction gives the clean loss. Near it no direction within the budget
    climbs faster than the gradient sign (that is what the gradient says); a direction that
    ends far higher shows a loss surface that curves away from the straight line FGSM
    assumes. Returns ``{direction: {t_key: mean loss}}`` (keys as :func:`eps_key`).
    """
    if not 0 < eps <= 1:
        raise ValueError(f"eps must be in (0, 1], got {eps}")
    x, labels = validate_images(x), to_int_labels(y)
    towards = pgd_highest_loss(model, x, labels, eps, steps=steps, seed=seed)
    directions = {
        "gradient sign": fgsm_signs(model, x, labels),
        "random sign": np.random.default_rng(seed).choice(np.float32([-1, 1]), size=x.shape),
        "towards PGD": (towards - x) / np.float32(eps),
    }
    ts = np.linspace(0.0, eps, points)
    return {  # apply_signs(x, d, t) = clip(x + t·d, 0, 1), for any d in [-1, 1]
        name: {eps_key(t): mean_loss(model, apply_signs(x, d, t), labels) for t in ts}
        for name, d in directions.items()
    }


# --- tables -----------------------------------------------------------------------------


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def checks_table(checks: Sequence[Check]) -> str:
    """The checks as a Markdown table (one row per check)."""
    return _markdown_table(
        ("model", "check", "passed", "numbers"),
        ((c.model, c.name, "✅" if c.passed else "❌", c.detail) for c in checks),
    )


def curves_table(
    curves: Mapping[str, Mapping[str, Mapping[str, float]]], epsilons: Iterable[float]
) -> str:
    """Markdown: one row per model and attack, one column per budget (accuracy in %)."""
    keys = [eps_key(e) for e in epsilons]
    rows = [
        (
            model if attack == "noise" else "",
            attack.replace("_", " "),
            *[_pct(c[attack][k]) for k in keys],
        )
        for model, c in curves.items()
        for attack in (*ATTACKS, "worst_case")
        if attack in c
    ]
    return _markdown_table(("model", "attack", *[f"ε={k}" for k in keys]), rows)


#: The headline's accuracies measured on the subset of headline images (the others, clean
#: and FGSM, on the whole test set).
ON_SUBSET = ("pgd", "autoattack", "robust")


def headline_table(
    headline: Mapping[str, Mapping[str, float]], eps: float, n_subset: int | None = None
) -> str:
    """Markdown: clean, FGSM, PGD, AutoAttack (where measured) and robust (worst-case)
    accuracy per model at ``eps``. Given ``n_subset``, the number of headline images, every
    accuracy measured on them (:data:`ON_SUBSET`) shows its 95% margin
    (:func:`pct_with_margin`), and a line below the table says so."""
    columns = {"clean": "clean", "fgsm": "FGSM", "pgd": "PGD", "autoattack": "AutoAttack"}
    shown = [k for k in columns if any(k in h for h in headline.values())] + ["robust"]
    header = [f"{columns[k]} ε={eps:g}" if k != "clean" else "clean" for k in shown[:-1]]

    def cell(h: Mapping[str, float], k: str) -> str:
        if k not in h:
            return "–"
        return pct_with_margin(h[k], n_subset) if n_subset and k in ON_SUBSET else _pct(h[k])

    table = _markdown_table(
        ("model", *header, f"robust ε={eps:g}"),
        ((model, *[cell(h, k) for k in shown]) for model, h in headline.items()),
    )
    if not n_subset:
        return table
    return (
        f"{table}\n\n± : the 95% interval (Wilson) of an accuracy measured on the "
        f"{n_subset:,} headline images; clean and FGSM accuracy are measured on the whole "
        "test set."
    )


def leaking_table(leaking: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: per model (``{label: {"eps", "clean", "true_label", "predicted_label"}}``),
    clean accuracy against FGSM at ``eps`` with true and with predicted labels. FGSM
    accuracy above clean accuracy (true labels) is the signature of label leaking."""
    return _markdown_table(
        ("model", "ε", "clean", "FGSM, true labels", "FGSM, predicted labels", "leaking?"),
        (
            (
                model,
                f"{v['eps']:g}",
                _pct(v["clean"]),
                _pct(v["true_label"]),
                _pct(v["predicted_label"]),
                "**yes**: adversarial > clean" if v["true_label"] > v["clean"] else "no",
            )
            for model, v in leaking.items()
        ),
    )
