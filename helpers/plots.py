"""The figures the notebooks show. Each function draws one figure and returns it.

Images may be raw ``uint8`` (n, 28, 28) or model-ready ``float32`` (n, 28, 28, 1) in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from helpers.data import NUM_CLASSES, class_counts, to_int_labels

# A colour-blind-safe palette for every figure; lines carry markers or styles as well.
sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
_PALETTE = sns.color_palette("colorblind", 10)
_MARKERS = "osD^vPX*"
# A model's colour: the palette without its grey and yellow (chance lines, low contrast).
_MODEL_COLOURS = [_PALETTE[i] for i in (0, 1, 2, 3, 4, 5, 6, 9)]
#: Lines that belong to no course model (a setting, a published figure, a bound): greys,
#: so that none is taken for a model, each with its own marker and line style.
_NEUTRAL_COLOURS = ("black", "0.4", "0.6", "0.72")
_NEUTRAL_LINES = ("-", "--", "-.", ":")
#: Marks a wrong prediction in a title, beside its colour (which not everyone can see).
WRONG = "✗"


def model_style(label: str) -> dict[str, object]:
    """The colour and marker of the course model a line belongs to, the same in every
    figure: ``label`` is a model's label (``helpers.registry.MODELS``), optionally followed
    by more (``"standard CNN, PGD-40"``). Empty for a line of no course model."""
    from helpers.registry import MODELS  # imported here: the registry needs TensorFlow

    labels = [spec.label for spec in MODELS.values()]
    owners = [i for i, own in enumerate(labels) if label.startswith(own)]
    if not owners:
        return {}
    i = max(owners, key=lambda j: len(labels[j]))  # the most specific label that fits
    return {"color": _MODEL_COLOURS[i % len(_MODEL_COLOURS)], "marker": _MARKERS[i % len(_MARKERS)]}


def neutral_style(i: int) -> dict[str, object]:
    """The colour, marker and line style of the ``i``-th line in a figure that belongs to no
    course model: a grey (never a model's colour), with a marker and a line style of its own."""
    return {
        "color": _NEUTRAL_COLOURS[i % len(_NEUTRAL_COLOURS)],
        "marker": _MARKERS[i % len(_MARKERS)],
        "ls": _NEUTRAL_LINES[i % len(_NEUTRAL_LINES)],
    }


def attack_linestyle(label: str) -> str:
    """The line style of the attack a curve's label names, as in every figure: PGD solid,
    FGSM dashed, anything else dotted-dashed."""
    if "PGD" in label:
        return _ATTACK_STYLE["pgd"][2]
    return _ATTACK_STYLE["fgsm"][2] if "FGSM" in label else "-."


def _as_2d(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    return images[..., 0] if images.ndim == 4 else images


def plot_sample_grid(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray | None = None,
    n: int = 20,
    ncols: int = 10,
    title: str | None = None,
) -> Figure:
    """The first ``n`` images with their labels (and predictions: red and ✗ when wrong)."""
    images, labels = _as_2d(images)[:n], to_int_labels(labels)[:n]
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.45 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=images.max() or 1)
        text, color = f"{labels[i]}", "black"
        if predictions is not None:
            pred = to_int_labels(predictions)[i]
            text, color = f"{labels[i]} → {pred}", "black"
            if pred != labels[i]:
                text, color = f"{text} {WRONG}", "crimson"
        ax.set_title(text, fontsize=10, color=color)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_balance(y_train: np.ndarray, y_test: np.ndarray) -> Figure:
    """Side-by-side bar chart of the share of each digit in the training and test sets."""
    train, test = class_counts(y_train), class_counts(y_test)
    digits = np.arange(NUM_CLASSES)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.4
    ax.bar(digits - width / 2, train / train.sum(), width, label=f"train (n={train.sum():,})")
    ax.bar(digits + width / 2, test / test.sum(), width, label=f"test (n={test.sum():,})")
    ax.axhline(1 / NUM_CLASSES, color="gray", ls="--", lw=1, label="perfect balance")
    ax.set(xticks=digits, xlabel="digit", ylabel="share of examples", title="Class balance")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return fig


def plot_pixel_histogram(x_raw: np.ndarray) -> Figure:
    """Histogram of raw pixel values (log scale): most pixels are 0 (background) or ~255."""
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(np.asarray(x_raw).ravel(), bins=64, color="steelblue")
    ax.set(yscale="log", xlabel="pixel value (0 = white paper, 255 = ink)", ylabel="count")
    ax.set_title("Pixel intensities")
    fig.tight_layout()
    return fig


def plot_history(history: Mapping[str, Sequence[float]], title: str = "Training") -> Figure:
    """Loss (left) and every ``*accuracy`` series (right) per epoch."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax_loss.plot(epochs, history["loss"], marker="o", label="training loss")
    if "val_loss" in history:
        ax_loss.plot(epochs, history["val_loss"], marker="o", label="validation loss")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax_loss.legend()
    names = {
        "accuracy": "train (clean part)",
        "adv_accuracy": "train (adversarial part)",
        "val_accuracy": "validation, clean",
        "val_fgsm_accuracy": "validation, FGSM",
        "val_pgd_accuracy": "validation, PGD",
        "val_certified_accuracy": "validation, certified",
    }
    if "val_certified_accuracy" in history:  # IBP: its "adversarial part" is the proofs
        names["adv_accuracy"] = "train (certified at the ε of the moment)"
    for key, label in names.items():
        if key in history:
            ax_acc.plot(epochs, history[key], marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.02))
    ax_acc.legend(fontsize=9)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm: np.ndarray, title: str = "Confusion matrix", ax=None) -> Figure:
    """Heatmap of a ``(10, 10)`` confusion matrix (rows: true digit, columns: predicted)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.6))
    else:
        fig = ax.figure
    sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax, annot_kws={"size": 7})
    ax.set(xlabel="predicted digit", ylabel="true digit", title=title)
    return fig


def plot_confusion_matrices(matrices: Mapping[str, np.ndarray], ncols: int = 2) -> Figure:
    """Several confusion matrices side by side, titled by the mapping's keys."""
    n = len(matrices)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.8 * nrows), squeeze=False)
    for ax, (title, cm) in zip(axes.flat, matrices.items(), strict=False):
        plot_confusion_matrix(cm, title, ax=ax)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def representative_indices(survived: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices drawn at random (seeded) so that the share of them with ``survived``
    (a boolean per image, e.g. "still correct under the attack") is as close as ``n``
    allows to the share among all images: a gallery of ``n`` that shows the attack as
    strong as it was measured. Sorted; fewer only if there are fewer than ``n`` images."""
    survived = np.asarray(survived, dtype=bool)
    rng = np.random.default_rng(seed)
    kept, fooled = np.flatnonzero(survived), np.flatnonzero(~survived)
    n = min(n, len(survived))
    n_kept = min(round(n * survived.mean()) if len(survived) else 0, len(kept))
    n_kept = max(n_kept, n - len(fooled))  # too few fooled images: take more that survived
    chosen = [rng.choice(kept, n_kept, replace=False), rng.choice(fooled, n - n_kept, False)]
    return np.sort(np.concatenate(chosen))


def plot_adversarial_examples(
    x: np.ndarray,
    x_adv: np.ndarray,
    probs_clean: np.ndarray,
    probs_adv: np.ndarray,
    y_true: np.ndarray,
    n: int = 6,
    title: str | None = None,
    indices: Sequence[int] | None = None,
) -> Figure:
    """Columns of clean image / perturbation / adversarial image, with predictions.

    Shows the images at ``indices`` (e.g. :func:`representative_indices`), or the first
    ``n``. Titles give the predicted digit and its probability; red and ✗ mark a wrong
    prediction. The perturbation is shown on a blue-red scale centred on 0.
    """
    shown = np.arange(min(n, len(x))) if indices is None else np.asarray(indices, dtype=int)
    x, x_adv = _as_2d(x)[shown], _as_2d(x_adv)[shown]
    probs_clean, probs_adv = np.asarray(probs_clean)[shown], np.asarray(probs_adv)[shown]
    y_true = to_int_labels(y_true)[shown]
    n = len(x)
    delta = x_adv - x
    bound = float(np.abs(delta).max()) or 1.0
    fig, axes = plt.subplots(3, n, figsize=(1.9 * n, 6.3), squeeze=False)
    for i in range(n):
        for row, (img, probs) in enumerate(
            [(x[i], probs_clean[i]), (None, None), (x_adv[i], probs_adv[i])]
        ):
            ax = axes[row, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if img is None:
                ax.imshow(delta[i], cmap="RdBu_r", vmin=-bound, vmax=bound)
                ax.set_title(f"change ±{bound:.2f}", fontsize=9)
                continue
            ax.imshow(img, cmap="gray_r", vmin=0, vmax=1)
            pred = int(np.argmax(probs))
            wrong = pred != y_true[i]
            text = f"{pred} ({probs[pred]:.0%})" + (f" {WRONG}" if wrong else "")
            ax.set_title(text, fontsize=10, color="crimson" if wrong else "black")
    for row, label in enumerate(["clean", "perturbation", "adversarial"]):
        axes[row, 0].set_ylabel(label, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_epsilon(
    curves: Mapping[str, Mapping[str, float]],
    title: str = "Accuracy under attack",
    references: Mapping[str, tuple[float, float]] | None = None,
    chance: bool = True,
) -> Figure:
    """One line per curve ``{label: {eps_key: accuracy}}`` against epsilon.

    A label that starts with a course model's name (``"standard CNN, PGD-40"``) gets that
    model's colour and marker (:func:`model_style`) and its attack's line style
    (:func:`attack_linestyle`); any other curve a grey of its own (:func:`neutral_style`).
    ``references`` are single published points ``{label: (eps, accuracy)}``, of no course
    model: a black star, then other grey marks.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    others = 0
    for label, curve in curves.items():
        eps = np.array([float(k) for k in curve])
        acc = np.array(list(curve.values()))
        order = np.argsort(eps)
        style = model_style(label)
        if not style:
            style, others = neutral_style(others), others + 1
        style = {**style, "ls": attack_linestyle(label)}
        ax.plot(eps[order], acc[order], ms=4, label=label, **style)
    for i, (label, (eps, acc)) in enumerate((references or {}).items()):
        color, marker = _NEUTRAL_COLOURS[i % 2], "*XP"[i % 3]
        ax.plot([eps], [acc], marker=marker, ms=13 if marker == "*" else 10, ls="none",
                color=color, label=label)  # fmt: skip
    if chance:
        ax.axhline(1 / NUM_CLASSES, color="gray", ls=":", lw=1, label="chance (10%)")
    ax.set(xlabel="ε (L∞ budget, pixels in [0, 1])", ylabel="accuracy", ylim=(0, 1.02))
    ax.set_title(title)
    ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return fig


def plot_series(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str,
    hlines: Mapping[str, float] | None = None,
) -> Figure:
    """A few named series against a common x axis, with optional labelled horizontal lines.

    A series named after a course model (:func:`model_style`) takes that model's colour and
    marker; any other a grey, a marker and a line style of its own (:func:`neutral_style`),
    so that no series is taken for a model it is not. The horizontal lines are thin and
    unmarked."""
    fig, ax = plt.subplots(figsize=(7.5, 5.0), layout="constrained")
    others = 0
    for label, values in series.items():
        style = model_style(label)
        if not style:
            style, others = neutral_style(others), others + 1
        ax.plot(x, values, ms=6, label=label, **style)
    for label, y in (hlines or {}).items():
        ax.axhline(y, color="0.5", ls=(0, (5, 3)), lw=1, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, ylim=(0, 1.02))
    # Below the axes, so that no curve is hidden behind the legend.
    fig.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    return fig


#: Colours and styles of the attacks in :func:`plot_robustness_curves`.
#: One colour and line style per attack in every figure (colour-blind-safe colours).
_ATTACK_STYLE = {
    "noise": ("random noise", _PALETTE[7], ":"),
    "transfer": ("transfer (black-box)", _PALETTE[4], "-."),
    "fgsm": ("FGSM", _PALETTE[0], "--"),
    "pgd": ("PGD", _PALETTE[3], "-"),
    "worst_case": ("worst case (robust accuracy)", "black", "-"),
}


def plot_robustness_curves(
    curves: Mapping[str, Mapping[str, Mapping[str, float]]], title: str = "Accuracy under attack"
) -> Figure:
    """One panel per model: accuracy against epsilon under each attack of its curve
    (``{model: {attack: {eps_key: accuracy}}}``, see :mod:`helpers.robustness`), with the
    per-example worst case as a wide grey band underneath and the area below it shaded."""
    n = len(curves)
    ncols = min(n, 2)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(6.2 * ncols, 3.9 * nrows), sharex=True, sharey=True, squeeze=False
    )
    for ax, (model, curve) in zip(axes.flat, curves.items(), strict=False):
        for attack, (label, color, style) in _ATTACK_STYLE.items():
            if attack not in curve:
                continue
            eps = np.array([float(k) for k in curve[attack]])
            acc = np.array(list(curve[attack].values()))
            order = np.argsort(eps)
            if attack == "worst_case":
                # A wide band underneath: the attack that sets it stays visible on top.
                ax.plot(
                    eps[order], acc[order], color=color, lw=7, alpha=0.22, label=label, zorder=1
                )
                ax.fill_between(eps[order], acc[order], color=color, alpha=0.05, zorder=0)
            else:
                ax.plot(
                    eps[order],
                    acc[order],
                    color=color,
                    ls=style,
                    lw=1.6,
                    marker=_MARKERS[list(_ATTACK_STYLE).index(attack)],
                    ms=3.5,
                    label=label,
                    zorder=3,
                )
        ax.axhline(1 / NUM_CLASSES, color="gray", ls=":", lw=1)
        ax.set(title=model, ylim=(0, 1.02))
    _finish_accuracy_panels(fig, axes, n, title, legend_height=0.05)
    return fig


def _finish_accuracy_panels(
    fig: Figure, axes: np.ndarray, n: int, title: str, legend_height: float
) -> None:
    """The common frame of a grid of accuracy-against-ε panels, ``n`` of them used: hide the
    unused, label the outer axes, one legend for all below (``legend_height`` of the figure)
    and the title."""
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("ε (L∞ budget)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, legend_height, 1, 1))


def plot_robustness_during_training(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "Validation accuracy under PGD after every epoch",
) -> Figure:
    """Per training recipe (``{label: history}`` from :func:`helpers.training.train_model`):
    validation accuracy under PGD (solid) and under FGSM (dashed) against the epoch.
    Catastrophic overfitting shows as a solid line that collapses while its dashed twin
    keeps climbing."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for i, (label, history) in enumerate(histories.items()):
        if "val_pgd_accuracy" not in history:
            continue
        style = model_style(label) or {k: v for k, v in neutral_style(i).items() if k != "ls"}
        epochs = np.arange(1, len(history["val_pgd_accuracy"]) + 1)
        pgd_ls, fgsm_ls = _ATTACK_STYLE["pgd"][2], _ATTACK_STYLE["fgsm"][2]
        ax.plot(epochs, history["val_pgd_accuracy"], ls=pgd_ls, label=f"{label}: PGD", **style)
        if "val_fgsm_accuracy" in history:
            fgsm = history["val_fgsm_accuracy"]
            ax.plot(epochs, fgsm, ls=fgsm_ls, alpha=0.7, label=f"{label}: FGSM", **style)
    ax.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.02), title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    # Below the axes: inside, it would hide whichever curve runs along the bottom.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3)
    fig.tight_layout()
    return fig


def plot_attack_effort(
    efforts: Mapping[str, Mapping[str, Mapping[str, float]]],
    steps: int,
    restarts: int,
    title: str = "Has the attack converged?",
) -> Figure:
    """PGD accuracy against its number of steps (left) and restarts (right), one line per
    model (``{model: result of helpers.robustness.attack_effort or converge_attack}``); the
    headline's setting (``steps``, ``restarts``) is marked by a vertical line. Each model's
    legend entry names what its line held fixed: a :func:`~helpers.robustness.converge_attack`
    result was measured at the setting it converged at (its ``"steps"`` and ``"restarts"``),
    which may be stronger than the headline's. Flat lines to the right of the mark mean
    more effort would not find more adversarial examples."""
    fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    for i, (label, effort) in enumerate(efforts.items()):
        style = model_style(label) or neutral_style(i)
        at_steps, at_restarts = effort.get("steps", steps), effort.get("restarts", restarts)
        entry = f"{label}: left at {at_restarts} restarts, right at {at_steps} steps each"
        for ax, key in ((ax_s, "by_steps"), (ax_r, "by_restarts")):
            xs = [int(k) for k in effort[key]]
            ax.plot(xs, list(effort[key].values()), ms=4, label=entry, **style)
    headline = f"the headline's setting: {steps} steps, {restarts} restarts"
    ax_s.axvline(steps, color="gray", ls="--", lw=1, label=headline)
    ax_r.axvline(restarts, color="gray", ls="--", lw=1)
    ax_s.set(xlabel="PGD steps", ylabel="accuracy", ylim=(0, 1.02))
    ax_r.set(xlabel="random restarts")
    ax_r.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = ax_s.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=2, fontsize=8.5, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05 + 0.035 * -(-len(labels) // 2), 1, 1))
    return fig


def plot_interval_growth(
    widths: Mapping[str, Mapping[str, float]],
    logit_lower: np.ndarray,
    logit_upper: np.ndarray,
    label: int,
    eps: float,
    title: str = "The box through the network",
) -> Figure:
    """Left: the mean width of the IBP intervals after every layer (log scale), one line
    per budget (``{eps_key: {layer: width}}``, see :func:`helpers.certify.interval_widths`).
    Right: the logits' intervals ``(10,)`` at budget ``eps`` for one digit of class
    ``label``: it is certified when the true class's lowest value (the line) lies above
    every other class's highest."""
    fig, (ax_w, ax_z) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    colors = sns.color_palette("colorblind", len(widths))
    for (key, by_layer), color, marker in zip(widths.items(), colors, "osD^v<>", strict=False):
        ax_w.plot(
            list(by_layer), list(by_layer.values()), color=color, marker=marker, label=f"ε = {key}"
        )
    ax_w.set(yscale="log", ylabel="mean interval width", title="interval width after each layer")
    ax_w.tick_params(axis="x", rotation=30)
    ax_w.legend(fontsize=9)
    classes = np.arange(NUM_CLASSES)
    others = classes != label
    ax_z.vlines(classes[others], logit_lower[others], logit_upper[others], color="0.45", lw=6)
    ax_z.vlines(label, logit_lower[label], logit_upper[label], color="C0", lw=6)
    ax_z.axhline(logit_lower[label], color="C0", ls="--", lw=1, label="true class: lowest value")
    ax_z.set(
        xticks=classes, xlabel="class", ylabel="logit",
        title=f"logit intervals at ε = {eps:g} (true class {label} in blue)",
    )  # fmt: skip
    ax_z.legend(fontsize=9, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_tradeoff(
    points: Mapping[str, Mapping[str, float]],
    eps: float,
    title: str = "Clean accuracy against robust accuracy",
    n_attacked: int | None = None,
) -> Figure:
    """Each model as a point: robust accuracy at ``eps`` (``"robust"``) across, clean
    accuracy (``"clean"``) up, from ``{label: {"clean", "robust"}}`` (e.g.
    :func:`helpers.robustness.tradeoff_points`). A label ``"<course model>, <setting>"``
    (``"TRADES-trained CNN, β=6"``) takes that model's colour and marker. The points of a
    model with several are joined in the order given and annotated with their setting, so
    a sweep of one knob reads as a path; a model with one point is named in full in the
    legend. ``n_attacked``: the number of digits the robust accuracy was measured on, for
    its 95% interval (a horizontal bar). Up and to the right is better on both counts."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    families: dict[str, list[str]] = {}
    for label in points:
        families.setdefault(label.split(",")[0], []).append(label)
    for family, labels in families.items():
        robust = np.array([points[label]["robust"] for label in labels])
        clean = np.array([points[label]["clean"] for label in labels])
        xerr = None if n_attacked is None else _wilson_bars(robust, n_attacked)
        sweep = len(labels) > 1
        style = {"marker": "o", **model_style(family)}
        ax.errorbar(
            robust, clean, xerr=xerr, ms=8, capsize=3, ls="-" if sweep else "none",
            label=family if sweep else labels[0], **style,
        )  # fmt: skip
        for label, r, c in zip(labels, robust, clean, strict=True):
            setting = label.partition(",")[2].strip()
            if sweep and setting:
                ax.annotate(setting, (r, c), textcoords="offset points", xytext=(8, 5), fontsize=9)
    ax.margins(x=0.15, y=0.12)
    for axis in (ax.xaxis, ax.yaxis):
        _percent_ticks(axis)
    ax.set(xlabel=f"AutoAttack-style accuracy at ε = {eps:g} (robust)", ylabel="clean accuracy")
    ax.set_title(title)
    ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return fig


def _percent_ticks(axis: Axis) -> None:
    """Label ``axis`` (shares in [0, 1]) in percent, its ticks at 1, 2 or 5 times a power of
    ten and shown with the decimals their spacing needs, so that no label is a rounded tick
    (ticks 2.5 points apart shown without decimals would read 77.5% as "78%")."""
    axis.set_major_locator(MaxNLocator(steps=[1, 2, 5, 10]))

    def label(share: float, _position: int) -> str:
        ticks = axis.get_majorticklocs()
        step = 100 * float(np.min(np.diff(ticks))) if len(ticks) > 1 else 1.0
        decimals = max(0, int(np.ceil(-np.log10(step) - 1e-9)))  # 2 → 0, 0.5 → 1, 0.05 → 2
        return f"{100 * share:.{decimals}f}%"

    axis.set_major_formatter(FuncFormatter(label))


def _wilson_bars(shares: np.ndarray, n: int) -> np.ndarray:
    """Error bars ``(2, len(shares))`` (below, above) of shares measured on ``n`` images:
    their 95% Wilson intervals (:func:`helpers.robustness.wilson_interval`)."""
    from helpers.robustness import wilson_interval  # imported here: it needs TensorFlow

    ends = np.array([wilson_interval(round(s * n), n) for s in np.atleast_1d(shares)])
    return np.clip(np.stack([shares - ends[:, 0], ends[:, 1] - shares]), 0, None)


def plot_accuracy_by_class(
    by_class: Mapping[str, Sequence[float]],
    counts: Sequence[int] | None = None,
    title: str = "Robust accuracy per digit",
    ylabel: str = "robust accuracy",
) -> Figure:
    """Per digit 0-9, one mark per model (``{label: (10,) accuracies}``), side by side, in
    the model's colour and marker (:func:`model_style`). ``counts``: how many images of each
    digit the accuracies were measured on, for 95% Wilson intervals as vertical bars."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    digits = np.arange(NUM_CLASSES)
    width = 0.7 / max(len(by_class), 1)
    for i, (label, values) in enumerate(by_class.items()):
        values = np.asarray(values, dtype=float)
        style = model_style(label) or {k: v for k, v in neutral_style(i).items() if k != "ls"}
        yerr = None
        if counts is not None:
            yerr = np.hstack([
                _wilson_bars(v, int(c)) if c else np.full((2, 1), np.nan)
                for v, c in zip(values, counts, strict=True)
            ])  # fmt: skip
        offset = (i - (len(by_class) - 1) / 2) * width
        ax.errorbar(
            digits + offset, values, yerr=yerr, ls="none", ms=6, capsize=2, elinewidth=1,
            label=label, **style,
        )  # fmt: skip
    for edge in digits[:-1] + 0.5:
        ax.axvline(edge, color="0.85", lw=0.8)
    ax.grid(axis="x", visible=False)
    ax.set(xticks=digits, xlabel="true digit", ylabel=ylabel, ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncols=4)
    fig.tight_layout()
    return fig


#: The directions of :func:`plot_loss_along_directions`: a name and the line style of the
#: attack that moves that way (FGSM dashed, random noise dotted, PGD solid).
_DIRECTION_STYLE = {"gradient sign": "--", "random sign": ":", "towards PGD": "-"}


def plot_loss_along_directions(
    losses: Mapping[str, Mapping[str, Mapping[str, float]]],
    title: str = "The loss along three directions from each test image",
) -> Figure:
    """One panel per model (``{label: {direction: {t_key: mean loss}}}``, see
    :func:`helpers.robustness.loss_along_directions`): the mean loss against the distance t
    moved along each direction, in the model's colour, one line style per direction (as the
    attack that moves that way). The panels share their y axis."""
    n = len(losses)
    fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 4.0), sharey=True, squeeze=False)
    for ax, (label, by_direction) in zip(axes.flat, losses.items(), strict=True):
        style = model_style(label) or {"color": "black"}
        for j, (direction, curve) in enumerate(by_direction.items()):
            t = np.array([float(k) for k in curve])
            ax.plot(
                t, list(curve.values()), color=style["color"], marker=_MARKERS[j], ms=4,
                ls=_DIRECTION_STYLE.get(direction, "-."), label=direction,
            )  # fmt: skip
        ax.set(title=label, xlabel="distance moved t (L∞)")
        ax.legend(fontsize=9, loc="upper left")
    axes[0, 0].set_ylabel("mean cross-entropy")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_certified_band(
    bounds: Mapping[str, Mapping[str, Mapping[str, float]]],
    title: str = "Robust accuracy lies between the proof and the attack",
) -> Figure:
    """One panel per model (``{model: {"attacked": {eps_key: acc}, "certified": {...}}}``):
    the attacks' accuracy (an upper bound, solid, black circles) and the certified accuracy
    (a lower bound, dashed, grey squares) against ε, the band between them shaded grey: the
    true robust accuracy lies somewhere inside it. Bounds, not models: no model's colour."""
    n = len(bounds)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), sharex=True, sharey=True, squeeze=False
    )
    upper_color, lower_color = _NEUTRAL_COLOURS[:2]
    for ax, (model, both) in zip(axes.flat, bounds.items(), strict=False):
        eps = np.array([float(k) for k in both["attacked"]])
        upper = np.array(list(both["attacked"].values()))
        lower = np.array([both["certified"][k] for k in both["attacked"]])
        ax.fill_between(eps, lower, upper, color="0.5", alpha=0.18, label="unknown")
        ax.plot(eps, upper, color=upper_color, marker="o", label="attacked (upper bound)")
        ax.plot(eps, lower, color=lower_color, marker="s", ls="--", label="certified (lower bound)")
        ax.set(title=model, ylim=(0, 1.02))
    _finish_accuracy_panels(fig, axes, n, title, legend_height=0.06)
    return fig
