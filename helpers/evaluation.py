"""Measuring a classifier: clean accuracy, accuracy under attack, confusion matrices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import keras
import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

from helpers.attacks import apply_signs, fgsm_signs, pgd, saturated_share, validate_epsilon
from helpers.data import NUM_CLASSES, labels_for, to_int_labels, validate_images
from helpers.model import predict_probabilities, with_logit_scale


def eps_key(eps: float) -> str:
    """The JSON key for a budget: ``0.25 -> "0.25"``, ``0.1 -> "0.1"``, ``0 -> "0"``."""
    return format(round(validate_epsilon(eps), 6), "g")


def predict_labels(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Predicted classes ``(n,)`` for images ``(n, 28, 28, 1)`` in [0, 1]."""
    return predict_probabilities(model, x).argmax(axis=1)


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction (0..1) of images classified as their label (``y`` integer or one-hot)."""
    if not len(x):
        raise ValueError("accuracy of no images is undefined; pass at least one image")
    return float((predict_labels(model, x) == labels_for(x, y)).mean())


def fgsm_accuracy_curve(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epsilons: Iterable[float],
    *,
    attack_labels: str = "true",
    loss_on: str = "logits",
) -> dict[str, float]:
    """Accuracy under FGSM for each budget, as ``{eps_key(eps): accuracy}``.

    FGSM's direction does not depend on eps, so it is computed once and reused: the
    whole curve costs one gradient plus one forward pass per budget.

    Args:
        attack_labels: ``"true"`` attacks away from the true label (standard); ``"predicted"``
            away from the model's own prediction (no label leaking).
    """
    if attack_labels not in ("true", "predicted"):
        raise ValueError(f"attack_labels must be 'true' or 'predicted', got {attack_labels!r}")
    x = validate_images(x)
    labels = to_int_labels(y)
    attack_y = labels if attack_labels == "true" else None
    signs = fgsm_signs(model, x, attack_y, loss_on=loss_on)
    return {
        eps_key(eps): float((predict_labels(model, apply_signs(x, signs, eps)) == labels).mean())
        for eps in epsilons
    }


def pgd_accuracy_curve(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epsilons: Iterable[float],
    **pgd_kwargs: object,
) -> dict[str, float]:
    """Accuracy under PGD (true labels) for each budget, ``{eps_key(eps): accuracy}``.

    ``pgd_kwargs`` go to :func:`helpers.attacks.pgd` (``steps``, ``rel_step``, ``restarts``...).
    """
    labels = to_int_labels(y)
    curve = {}
    for eps in epsilons:
        x_adv = pgd(model, x, labels, eps, **pgd_kwargs) if eps > 0 else x
        curve[eps_key(eps)] = accuracy(model, x_adv, labels)
    return curve


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``(10, 10)`` counts: row = true class, column = predicted class."""
    true, predicted = labels_for(y_pred, y_true, "y_true"), labels_for(y_true, y_pred, "y_pred")
    return _sk_confusion_matrix(true, predicted, labels=np.arange(NUM_CLASSES))


def worst_case_accuracy(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    adversarial: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """Accuracy per attack and the robust accuracy over all of them.

    ``adversarial`` maps an attack name to its adversarial version of ``x``. The result has
    one accuracy per name, plus ``"worst_case"``: the share of examples that the model gets
    right on the clean image *and* under every attack (the mean over examples of the worst
    case, as Carlini et al. 2019 recommend -- never the best attack's average alone).
    """
    labels = to_int_labels(y)
    correct_everywhere = predict_labels(model, x) == labels
    result = {}
    for name, x_adv in adversarial.items():
        if x_adv.shape != x.shape:
            raise ValueError(f"{name}: adversarial images {x_adv.shape} != clean {x.shape}")
        correct = predict_labels(model, x_adv) == labels
        result[name] = float(correct.mean())
        correct_everywhere &= correct
    result["worst_case"] = float(correct_everywhere.mean())
    return result


#: The losses of the logit-scale experiment (notebook 03), with the names its figure shows.
SCALE_LOSSES: dict[str, str] = {
    "probabilities": "cross-entropy on probabilities",
    "logits": "cross-entropy on logits",
    "margin": "logit margin",
}


def logit_scale_experiment(
    model: keras.Model, x: np.ndarray, y: np.ndarray, eps: float, scales: Iterable[float]
) -> dict[str, list[float]]:
    """The same classifier with its logits multiplied by each of ``scales``
    (:func:`helpers.model.with_logit_scale`: identical predictions, a more confident softmax),
    attacked by FGSM at ``eps`` with each loss of :data:`SCALE_LOSSES`.

    Returns ``{"saturated share": [...], "FGSM accuracy, <loss>": [...]}``, one value per
    scale: the share of images the mistaken loss cannot move
    (:func:`helpers.attacks.saturated_share`), and the accuracy under each FGSM, fractions
    in [0, 1].
    """
    result: dict[str, list[float]] = {"saturated share": []}
    for s in scales:
        sharper = with_logit_scale(model, s)
        p = predict_probabilities(sharper, x)
        result["saturated share"].append(saturated_share(p))
        for loss_on, label in SCALE_LOSSES.items():
            curve = fgsm_accuracy_curve(sharper, x, y, [eps], loss_on=loss_on)
            result.setdefault(f"FGSM accuracy, {label}", []).append(curve[eps_key(eps)])
    return result
