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
  numbers that decided it.

PGD here uses a step proportional to the budget, ``step = travel * eps / steps``: with the
default ``travel = 1.6`` and 40 steps that is 0.01 at eps = 0.25, and the attack can cross
the ball 1.6 times
at every budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any, NamedTuple

import keras
import numpy as np

from helpers.attacks import (
    effort_accuracy,
    extend_pgd_effort,
    fgsm,
    pgd,
    pgd_effort,
    random_sign_noise,
    validate_epsilon,
)
from helpers.data import NUM_CLASSES, to_int_labels, validate_images
from helpers.evaluation import accuracy, eps_key, worst_case_accuracy

#: The attacks of a curve, weakest idea first; "worst_case" combines them.
ATTACKS: tuple[str, ...] = ("noise", "transfer", "fgsm", "pgd")


class Check(NamedTuple):
    """One sanity check on one model: ``passed`` and the numbers behind it."""

    name: str
    model: str
    passed: bool
    detail: str


def pgd_settings(eps: float, steps: int = 40, travel: float = 1.6) -> dict[str, float | int]:
    """PGD's ``steps`` and ``step_size = travel * eps / steps`` for a budget ``eps``: all
    steps together can move a pixel ``travel`` times the budget, whatever ``steps`` is."""
    eps = validate_epsilon(eps)
    if not travel > 0:
        raise ValueError(f"travel must be positive, got {travel!r}")
    return {"steps": steps, "step_size": max(travel * eps / steps, 1e-6)}


def transfer_examples(
    source: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epsilons: Iterable[float],
    *,
    steps: int = 40,
    travel: float = 1.6,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """PGD examples crafted on ``source`` (the attacker's own model) for every budget:
    ``{eps_key: images (n, 28, 28, 1)}``. Evaluate any other model on them for a
    black-box transfer attack; compute them once and reuse them for every target."""
    labels = to_int_labels(y)
    return {
        eps_key(eps): pgd(source, x, labels, eps, seed=seed, **pgd_settings(eps, steps, travel))
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
    steps: int = 40,
    restarts: int = 1,
    travel: float = 1.6,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Accuracy of ``model`` under every attack of :data:`ATTACKS`, per budget.

    Args:
        x, y: the fixed evaluation images ``(n, 28, 28, 1)`` in [0, 1] and their labels.
        epsilons: budgets in [0, 1].
        transfer: :func:`transfer_examples` made on ``x`` for (at least) these budgets;
            without it the curve has no ``"transfer"`` attack.
        steps, restarts, travel: PGD's settings (see :func:`pgd_settings`).

    Returns:
        ``{"clean": {eps_key: acc}, "fgsm": ..., "pgd": ..., "noise": ..., ["transfer": ...],
        "worst_case": ...}``; accuracies are fractions in [0, 1], every attack on the same
        images (at eps = 0 every entry is the clean accuracy).
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
                model,
                x,
                labels,
                eps,
                restarts=restarts,
                seed=seed,
                **pgd_settings(eps, steps, travel),
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


def _effort_summary(
    accuracy_at: Callable[[int, int], float], steps: int, restarts: int
) -> dict[str, Any]:
    """The :func:`attack_effort` dictionary, from ``accuracy_at(steps, restarts)``."""
    by_steps = {str(k): accuracy_at(k, restarts) for k in range(10, 2 * steps + 1, 10)}
    by_restarts = {str(r): accuracy_at(steps, r) for r in range(1, 2 * restarts + 1)}
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
    steps: int = 40,
    restarts: int = 5,
    step_size: float = 0.01,
    seed: int = 0,
) -> dict[str, Any]:
    """PGD accuracy at ``eps`` as the attack's effort grows, up to twice the configured
    steps and restarts, from one run of :func:`helpers.attacks.pgd_effort`.

    ``steps`` must be a multiple of 10. Returns ``{"by_steps": {k: acc} (at ``restarts``
    restarts, k = 10, 20, ... 2 * steps), "by_restarts": {r: acc} (at ``steps`` steps, r = 1
    ... 2 * restarts), "base", "double_steps", "double_restarts"}`` with string keys. If the
    attack has converged, doubling its effort changes little.
    """
    if steps % 10:
        raise ValueError(f"steps must be a multiple of 10, got {steps}")
    fooled_at = pgd_effort(
        model, x, y, eps, step_size=step_size, steps=2 * steps, restarts=2 * restarts, seed=seed
    )
    return _effort_summary(lambda k, r: effort_accuracy(fooled_at, k, r), steps, restarts)


def converge_attack(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    steps: int = 40,
    restarts: int = 5,
    step_size: float = 0.01,
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
    but attack harder until the number stops moving.

    No step is taken twice: restart ``r`` with the same seed follows the same path whatever
    the total number of steps, so each measurement takes the restarts of the last one up
    from where they stopped (:func:`helpers.attacks.extend_pgd_effort`) and runs only the
    steps and restarts that are new, with the numbers a fresh :func:`attack_effort` at the
    final setting would give.

    Returns the last :func:`attack_effort` result plus ``"steps"``, ``"restarts"`` (the
    setting it converged at, or the last one tried) and ``"tried"``: ``[[steps, restarts,
    accuracy], ...]`` for every setting measured, in order.
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    if steps % 10:
        raise ValueError(f"steps must be a multiple of 10, got {steps}")
    progress = None

    def accuracy_at(k: int, r: int) -> float:
        assert progress is not None and len(progress.steps) >= r, (k, r)
        assert (progress.steps[:r] >= k).all(), (k, r)
        return effort_accuracy(progress.fooled_at, k, r)

    tried: list[list[float]] = []
    while True:
        for k, r in ((2 * steps, restarts), (steps, 2 * restarts)):
            progress = extend_pgd_effort(
                model,
                x,
                y,
                eps,
                progress=progress,
                step_size=step_size,
                steps=k,
                restarts=r,
                seed=seed,
            )
        result = _effort_summary(accuracy_at, steps, restarts)
        tried.append([steps, restarts, result["base"]])
        more_steps = result["base"] - result["double_steps"] >= tolerance
        more_restarts = result["base"] - result["double_restarts"] >= tolerance
        can_step = more_steps and 2 * steps <= max_steps
        can_restart = more_restarts and 2 * restarts <= max_restarts
        if not (can_step or can_restart):
            return {**result, "steps": steps, "restarts": restarts, "tried": tried}
        if can_step:
            steps *= 2
        if can_restart:
            restarts *= 2


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
    model: str, curve: Mapping[str, Mapping[str, float]], tolerance: float = 0.005
) -> Check:
    """Black-box transfer and random noise of the same L∞ size must be weaker than the
    white-box PGD attack at every budget (if not, the white-box attack is failing)."""
    weaker = [a for a in ("transfer", "noise") if a in curve]
    bad = [
        f"ε={k}: {a} {_pct(curve[a][k])} < PGD {_pct(curve['pgd'][k])}"
        for a in weaker
        for k in curve["pgd"]
        if curve[a][k] < curve["pgd"][k] - tolerance
    ]
    detail = f"{' and '.join(weaker)} ≥ PGD at every ε" if not bad else "; ".join(bad)
    return Check("white-box strongest", model, not bad, detail)


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


def require(checks: Sequence[Check]) -> None:
    """Raise ``AssertionError`` listing every failed check (a loud stop, not a warning)."""
    failed = [c for c in checks if not c.passed]
    if failed:
        lines = "\n".join(f"- {c.model}: {c.name}: {c.detail}" for c in failed)
        raise AssertionError(
            f"{len(failed)} of {len(checks)} sanity checks failed; the evaluation cannot be "
            f"trusted until they pass:\n{lines}"
        )


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


def headline_table(headline: Mapping[str, Mapping[str, float]], eps: float) -> str:
    """Markdown: clean, FGSM, PGD and robust (worst-case) accuracy per model at ``eps``."""
    return _markdown_table(
        ("model", "clean", f"FGSM ε={eps:g}", f"PGD ε={eps:g}", f"robust ε={eps:g}"),
        (
            (model, *[_pct(h[k]) for k in ("clean", "fgsm", "pgd", "robust")])
            for model, h in headline.items()
        ),
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
