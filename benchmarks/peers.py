"""The same attacks from other libraries, on the same model and images as ours.

Peers: the Adversarial Robustness Toolbox (ART, ``adversarial-robustness-toolbox``) and
CleverHans 4 (its TensorFlow 2 functions). They are benchmark-only dependencies
(``requirements-bench.txt``); a peer that does not install or import is reported as
unavailable, with the reason, and the benchmark goes on.

The comparison is exact by construction: the same Keras model (its logits, via
:func:`helpers.model.logits_model`), the same test images and true labels, L-infinity
budget ``eps``, cross-entropy on the logits, pixels clipped to [0, 1]; PGD with the same
number of steps and step size and *no* random start. FGSM must then give the same images
(up to the sign of gradients that are exactly zero); PGD may differ slightly, because ours
keeps each example's first successful iterate while ART and CleverHans return the last, so
our adversarial accuracy can only be lower (stronger) or equal.
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from benchmarks.measure import engine_batch_size, interleaved, median_ratio
from helpers.attacks import fgsm, pgd
from helpers.data import NUM_CLASSES, one_hot
from helpers.engine import BATCH_SIZE
from helpers.model import logits_model, predict_probabilities

#: Peers in the order they are reported; the pip names are in requirements-bench.txt.
PEERS: dict[str, str] = {"art": "ART", "cleverhans": "CleverHans"}
#: How far (as a fraction) a peer's adversarial accuracy may lie from ours.
AGREEMENT_TOLERANCE = 0.005

Attack = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Implementation:
    """One library's FGSM and PGD, both ``(x, y_int) -> x_adv`` as NumPy."""

    name: str
    version: str
    fgsm: Attack
    pgd: Attack


def ours(model: keras.Model, eps: float, steps: int, step_size: float, batch_size: int):
    def our_fgsm(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with engine_batch_size(batch_size):
            return fgsm(model, x, y, eps)

    def our_pgd(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with engine_batch_size(batch_size):
            return pgd(model, x, y, eps, steps=steps, rel_step=step_size / eps, random_start=False)

    return Implementation("ours", "helpers", our_fgsm, our_pgd)


def _art_classifier(model: keras.Model) -> Any:
    """ART's wrapper of our model: its logits, cross-entropy on them, pixels in [0, 1]."""
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        logits_model(model),
        nb_classes=NUM_CLASSES,
        input_shape=(28, 28, 1),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )


def art(model: keras.Model, eps: float, steps: int, step_size: float, batch_size: int):
    """ART's FastGradientMethod and ProjectedGradientDescent on a TensorFlowV2Classifier."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "PyTorch not found" and similar import notices
        import art as art_package
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    classifier = _art_classifier(model)
    fgm = FastGradientMethod(
        classifier, norm=np.inf, eps=eps, targeted=False, num_random_init=0, batch_size=batch_size
    )
    projected = ProjectedGradientDescent(
        classifier,
        norm=np.inf,
        eps=eps,
        eps_step=step_size,
        max_iter=steps,
        targeted=False,
        num_random_init=0,
        batch_size=batch_size,
        verbose=False,
    )
    return Implementation(
        "art",
        art_package.__version__,
        lambda x, y: fgm.generate(x, y=one_hot(y)),
        lambda x, y: projected.generate(x, y=one_hot(y)),
    )


def cleverhans(model: keras.Model, eps: float, steps: int, step_size: float, batch_size: int):
    """CleverHans 4's ``tf2`` functions, called batch by batch like ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import cleverhans as cleverhans_package
        from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
        from cleverhans.tf2.attacks.projected_gradient_descent import (
            projected_gradient_descent,
        )

    net = logits_model(model)

    def batched(attack: Callable) -> Attack:
        def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.concatenate(
                [
                    np.asarray(attack(x[s : s + batch_size], y[s : s + batch_size]))
                    for s in range(0, len(x), batch_size)
                ]
            )

        return run

    return Implementation(
        "cleverhans",
        cleverhans_package.__version__.split("-")[0],
        batched(
            lambda x, y: fast_gradient_method(
                net, x, eps, np.inf, clip_min=0.0, clip_max=1.0, y=y
            ).numpy()
        ),
        batched(
            lambda x, y: projected_gradient_descent(
                net,
                x,
                eps,
                step_size,
                steps,
                np.inf,
                clip_min=0.0,
                clip_max=1.0,
                y=y,
                rand_init=False,
            ).numpy()
        ),
    )


FACTORIES = {"art": art, "cleverhans": cleverhans}


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict_probabilities(model, x).argmax(axis=1) == y).mean())


def compare(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    steps: int,
    step_size: float,
    reps: int,
    batch_size: int = BATCH_SIZE,
    peers: tuple[str, ...] = tuple(PEERS),
) -> dict[str, Any]:
    """Time FGSM and PGD of ours and of each available peer, interleaved; compare accuracies.

    Each implementation runs once untimed (tracing its functions; its adversarial images are
    kept for the accuracies), then ``reps`` rounds of ours, ART, CleverHans back to back.

    Returns ``{"ours": {...}, "<peer>": {...}}``. Every entry has ``available`` (with a
    ``reason`` when false: not installed, or failed to import or set up) and ``version``;
    then per attack (``"fgsm"``, ``"pgd"``) the median ``seconds``, the adversarial
    ``accuracy`` on ``(x, y)`` and ``max_linf``, and for a peer also ``over_ours`` (peer time /
    our time, median of per-round ratios), ``accuracy_gap`` (peer - ours), ``agrees``
    (within :data:`AGREEMENT_TOLERANCE`) and ``same_images`` (share of images equal to ours
    within 1e-6) -- or ``{"error": ...}`` if that attack failed. ``ours`` also has the
    model's ``clean_accuracy`` on ``x``.
    """
    implementations = [ours(model, eps, steps, step_size, batch_size)]
    result: dict[str, Any] = {"ours": {"available": True, "version": "helpers"}}
    for name in peers:
        try:
            implementations.append(FACTORIES[name](model, eps, steps, step_size, batch_size))
        except Exception as err:  # not installed, or fails to import or set up: go on
            result[name] = {"available": False, "reason": f"{type(err).__name__}: {err}"}
        else:
            result[name] = {"available": True, "version": implementations[-1].version}
    for attack in ("fgsm", "pgd"):
        adversarial: dict[str, np.ndarray] = {}
        fns = {}
        for impl in implementations:
            fn = getattr(impl, attack)
            try:  # also the warm-up: traces each library's functions
                adversarial[impl.name] = np.asarray(fn(x, y), dtype=np.float32)
            except Exception as err:
                if impl.name == "ours":
                    raise
                result[impl.name][attack] = {"error": f"{type(err).__name__}: {err}"}
                continue
            fns[impl.name] = lambda fn=fn: fn(x, y)
        times = interleaved(fns, reps, warmup=0)
        for name, x_adv in adversarial.items():  # "ours" comes first
            record: dict[str, Any] = {
                "seconds": statistics.median(times[name]),
                "accuracy": _accuracy(model, x_adv, y),
                "max_linf": float(np.abs(x_adv - x).max()),
            }
            if name != "ours":
                record["over_ours"] = median_ratio(times[name], times["ours"])
                record["accuracy_gap"] = record["accuracy"] - result["ours"][attack]["accuracy"]
                record["agrees"] = abs(record["accuracy_gap"]) <= AGREEMENT_TOLERANCE
                record["same_images"] = float(
                    np.all(np.abs(x_adv - adversarial["ours"]) <= 1e-6, axis=(1, 2, 3)).mean()
                )
            result[name][attack] = record
    result["ours"]["clean_accuracy"] = _accuracy(model, x, y)
    return result


def compare_autoattack(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    apgd_steps: int = 100,
    queries: int = 1000,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """Our APGD-CE and Square against ART's ``AutoProjectedGradientDescent`` and
    ``SquareAttack`` with matching settings (L-infinity, ``eps``, cross-entropy for APGD,
    one random start, ``queries`` for Square, ``p_init`` 0.8), on the same model and images.

    Returns ``{"apgd": {...}, "square": {...}}``, each with our and ART's adversarial
    ``accuracy`` and ``seconds``, ``gap`` (ART - ours: positive means ours is stronger) and
    ``agrees`` (ours at most 2 points weaker); or ``{"available": False, "reason"}``.
    Square's record also has ``fast_accuracy`` and ``fast_seconds``: ours searching with
    the bfloat16 margins that AutoAttack uses (:func:`helpers.autoattack.fast_margins`).
    """
    import time

    from helpers.autoattack import apgd, fast_margins, square_attack

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    except Exception as err:  # not installed, or fails to import: go on
        return {"available": False, "reason": f"{type(err).__name__}: {err}"}
    classifier = _art_classifier(model)
    peers = {
        "apgd": AutoProjectedGradientDescent(
            classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=apgd_steps,
            targeted=False, nb_random_init=1, batch_size=batch_size, loss_type="cross_entropy",
            verbose=False,
        ),
        "square": SquareAttack(
            classifier, norm=np.inf, eps=eps, max_iter=queries, p_init=0.8, nb_restarts=1,
            batch_size=batch_size, verbose=False,
        ),
    }  # fmt: skip
    ours_fn = {
        "apgd": lambda: apgd(model, x, y, eps, steps=apgd_steps)[0],
        "square": lambda: square_attack(model, x, y, eps, queries=queries)[0],
    }
    fast = {
        "square": lambda: square_attack(
            model, x, y, eps, queries=queries, margins=fast_margins(model)
        )[0]
    }
    result: dict[str, Any] = {"available": True, "eps": eps, "images": len(x)}
    for name, peer in peers.items():
        record = {}
        runs = [("ours", ours_fn[name]), ("art", lambda p=peer: p.generate(x, y=one_hot(y)))]
        for who, run in runs + ([("fast", fast[name])] if name in fast else []):
            start = time.perf_counter()
            x_adv = np.asarray(run(), dtype=np.float32)
            record[f"{who}_seconds"] = time.perf_counter() - start
            record[f"{who}_accuracy"] = _accuracy(model, x_adv, y)
            record[f"{who}_max_linf"] = float(np.abs(x_adv - x).max())
        record["gap"] = record["art_accuracy"] - record["ours_accuracy"]
        record["agrees"] = record["gap"] >= -0.02
        result[name] = record
    return result
