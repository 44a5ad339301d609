"""An interactive epsilon explorer: move a slider, watch a digit become a confident mistake.

:func:`make_explorer` returns an :class:`Explorer` whose ``widget`` a notebook displays. Its
controls are ordinary ipywidgets; every change calls :func:`Explorer.render`, a plain method
that tests call directly (no browser needed).

Why it is fast: an FGSM direction ``sign(grad_x loss)`` does not depend on epsilon, so it is
computed once per model and image set and cached. Moving the epsilon slider then costs one
forward pass for the shown image, one batched forward pass for the accuracy view (itself
cached per epsilon), and redrawing artists that already exist. The figure is a
``matplotlib.figure.Figure`` that is never shown through pyplot: it is updated in place and
rendered to PNG into an ``ipywidgets.Image``, so there is no flicker and no pile of figures.

PGD's result depends on epsilon, so nothing can be computed once for every slider stop.
It runs lazily instead: the first time the slider stops at an epsilon, PGD attacks the
small accuracy batch (``n_pgd`` images, the shown digit's result comes from it when it is
one of them) and the result is cached per model and epsilon, so a stop visited before
costs what an FGSM stop costs. While PGD is picked the slider reports its value only when
released, not at every stop it passes, and the accuracy curve fills in stop by stop.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import ipywidgets as widgets
import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from helpers.attacks import EPS, PGD_STEPS, apply_signs, fgsm_signs, pgd
from helpers.data import NUM_CLASSES, labels_for, validate_images
from helpers.model import predict_probabilities
from helpers.plots import WRONG

#: ``function(model, x, y)`` returning an attack's step direction, the same for every eps
DirectionFn = Callable[[keras.Model, np.ndarray, np.ndarray], np.ndarray]
#: The attacks whose direction the slider scales, by name (computed once per model)
ATTACKS: dict[str, DirectionFn] = {
    "FGSM": lambda model, x, y: fgsm_signs(model, x, y),
    "FGSM (predicted label)": lambda model, x, y: fgsm_signs(model, x, None),
}
#: ``function(model, x, y, eps)`` returning adversarial images that depend on eps
AttackFn = Callable[[keras.Model, np.ndarray, np.ndarray, float], np.ndarray]
#: The attacks run again at each slider stop, by name (on first use, then cached)
EPS_ATTACKS: dict[str, AttackFn] = {
    f"PGD-{PGD_STEPS}": lambda model, x, y, eps: pgd(model, x, y, eps, seed=0),
}
EPS_MAX, EPS_STEP = 0.5, 0.01


@dataclass
class Explorer:
    """The widget and its parts. Display ``widget``; set control values to interact."""

    widget: widgets.VBox
    eps: widgets.FloatSlider
    index: widgets.IntSlider
    model: widgets.ToggleButtons
    attack: widgets.Dropdown
    image: widgets.Image
    status: widgets.HTML
    models: Mapping[str, keras.Model]
    x: np.ndarray
    y: np.ndarray
    n_accuracy: int
    side_by_side: bool
    n_pgd: int = 100
    render_ms: list[float] = field(default_factory=list)
    _directions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    _eps_batches: dict[tuple[str, str, float], np.ndarray] = field(default_factory=dict)
    _eps_singles: dict[tuple[str, str, float, int], np.ndarray] = field(default_factory=dict)
    _clean_probs: dict[str, np.ndarray] = field(default_factory=dict)
    _accuracy: dict[tuple[str, str, float], float] = field(default_factory=dict)
    _figure: Figure | None = None
    _artists: dict = field(default_factory=dict)

    # -- computations (cached) ------------------------------------------------------
    def direction(self, model_name: str, attack_name: str) -> np.ndarray:
        """The cached attack direction for every image of the explorer, ``(n, 28, 28, 1)``."""
        key = (model_name, attack_name)
        if key not in self._directions:
            self._directions[key] = ATTACKS[attack_name](self.models[model_name], self.x, self.y)
        return self._directions[key]

    def clean_probabilities(self, model_name: str) -> np.ndarray:
        if model_name not in self._clean_probs:
            self._clean_probs[model_name] = predict_probabilities(self.models[model_name], self.x)
        return self._clean_probs[model_name]

    def accuracy_batch_size(self, attack_name: str) -> int:
        """How many of the first images the accuracy view attacks with ``attack_name``."""
        return self.n_accuracy if attack_name in ATTACKS else self.n_pgd

    def eps_attack_batch(self, model_name: str, attack_name: str, eps: float) -> np.ndarray:
        """An eps-dependent attack (:data:`EPS_ATTACKS`) on the first ``n_pgd`` images at
        budget ``eps``, run the first time this model and budget are asked for, then cached."""
        eps = round(float(eps), 4)
        key = (model_name, attack_name, eps)
        if key not in self._eps_batches:
            x, y = self.x[: self.n_pgd], self.y[: self.n_pgd]
            model = self.models[model_name]
            self._eps_batches[key] = x if eps == 0 else EPS_ATTACKS[attack_name](model, x, y, eps)
        return self._eps_batches[key]

    def adversarial(self, model_name: str, attack_name: str, eps: float, index: int) -> np.ndarray:
        """Image ``index`` under ``attack_name`` at budget ``eps``, shape ``(1, 28, 28, 1)``."""
        i = slice(index, index + 1)
        if attack_name in ATTACKS:
            return apply_signs(self.x[i], self.direction(model_name, attack_name)[i], eps)
        if index < self.n_pgd:  # one of the accuracy batch: its result is computed anyway
            return self.eps_attack_batch(model_name, attack_name, eps)[i]
        eps = round(float(eps), 4)
        key = (model_name, attack_name, eps, index)
        if key not in self._eps_singles:
            model = self.models[model_name]
            x_adv = EPS_ATTACKS[attack_name](model, self.x[i], self.y[i], eps) if eps else self.x[i]
            self._eps_singles[key] = x_adv
        return self._eps_singles[key]

    def batch_accuracy(self, model_name: str, attack_name: str, eps: float) -> float:
        """Accuracy on the first :meth:`accuracy_batch_size` images at budget ``eps`` (cached)."""
        eps = round(float(eps), 4)
        key = (model_name, attack_name, eps)
        if key not in self._accuracy:
            n = self.accuracy_batch_size(attack_name)
            if attack_name in ATTACKS:
                direction = self.direction(model_name, attack_name)[:n]
                x_adv = apply_signs(self.x[:n], direction, eps)
            else:
                x_adv = self.eps_attack_batch(model_name, attack_name, eps)
            pred = predict_probabilities(self.models[model_name], x_adv).argmax(1)
            self._accuracy[key] = float((pred == self.y[:n]).mean())
        return self._accuracy[key]

    def shown_models(self) -> list[str]:
        return list(self.models) if self.side_by_side else [self.model.value]

    def state(self) -> dict[str, dict[str, object]]:
        """What the explorer shows now, per model: predictions, confidences, accuracy."""
        i, eps, attack = self.index.value, self.eps.value, self.attack.value
        out = {}
        for name in self.shown_models():
            x_adv = self.adversarial(name, attack, eps, i)
            p_adv = predict_probabilities(self.models[name], x_adv)[0]
            p_clean = self.clean_probabilities(name)[i]
            out[name] = {
                "x_adv": x_adv[0, ..., 0],
                "probs_clean": p_clean,
                "probs_adv": p_adv,
                "pred_clean": int(p_clean.argmax()),
                "pred_adv": int(p_adv.argmax()),
                "accuracy": self.batch_accuracy(name, attack, eps),
            }
        return out

    # -- drawing --------------------------------------------------------------------
    def _build_figure(self, names: list[str]) -> None:
        """Draw the static parts once; the parts that change are "animated" artists,
        left out of the background and blitted onto it at every render."""
        fig = Figure(figsize=(11, 2.5 * len(names) + 0.2), dpi=72)
        canvas = FigureCanvasAgg(fig)
        grid = fig.add_gridspec(
            len(names),
            6,  # column 3 is an empty spacer between the digits and the charts
            width_ratios=[1, 1, 1, 0.12, 1.8, 1.8],
            left=0.04,
            right=0.99,
            bottom=0.2 / len(names),
            top=1 - 0.2 / len(names),
            wspace=0.3,
            hspace=0.45,
        )
        attack = self.attack.value
        artists: dict = {"names": names, "attack": attack, "dynamic": []}
        n, lazy = self.accuracy_batch_size(attack), attack not in ATTACKS
        for row, name in enumerate(names):
            axes = [fig.add_subplot(grid[row, c]) for c in (0, 1, 2, 4, 5)]
            a = {**_draw_digits(axes[:3], name), **_draw_charts(axes[3:], n, lazy)}
            artists[name] = a
            artists["dynamic"] += [
                a["original"],
                a["delta"],
                a["adversarial"],
                *a["titles"],
                *(spine for ax in axes[:3] for spine in ax.spines.values()),
                *a["bars_clean"],
                *a["bars_adv"],
                a["curve"],
                a["marker"],
                a["point"],
            ]
        canvas.draw()
        artists["background"] = canvas.copy_from_bbox(fig.bbox)
        self._figure, self._artists = fig, artists

    def _blit_png(self) -> bytes:
        """Background + changed artists -> PNG bytes (fast: no full redraw)."""
        fig = self._figure
        canvas = fig.canvas
        canvas.restore_region(self._artists["background"])
        for artist in self._artists["dynamic"]:
            fig.draw_artist(artist)
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(
            buffer, format="png", compress_level=1
        )
        return buffer.getvalue()

    def render(self, *_: object) -> dict[str, dict[str, object]]:
        """Recompute what is shown and redraw in place; returns :meth:`state`."""
        start = time.perf_counter()
        names = self.shown_models()
        if (
            self._figure is None
            or self._artists["names"] != names
            or self._artists["attack"] != self.attack.value
        ):
            self._build_figure(names)
        state = self.state()
        i, eps, attack = self.index.value, self.eps.value, self.attack.value
        colors = {True: "black", False: "crimson"}
        lines = []
        for name, s in state.items():
            a = self._artists[name]
            x = self.x[i, ..., 0]
            a["original"].set_data(x)
            a["delta"].set_data(s["x_adv"] - x)
            a["adversarial"].set_data(s["x_adv"])
            texts = (
                (f"clean → {s['pred_clean']} ({s['probs_clean'].max():.0%})", s["pred_clean"]),
                (f"change ±{eps:.2f}", self.y[i]),
                (f"adversarial → {s['pred_adv']} ({s['probs_adv'].max():.0%})", s["pred_adv"]),
            )
            for artist, (text, pred) in zip(a["titles"], texts, strict=True):
                right = pred == self.y[i]
                artist.set_text(text if right else f"{text} {WRONG}")  # a symbol, not only red
                artist.set_color(colors[right])
            for bar, p in zip(a["bars_clean"], s["probs_clean"], strict=True):
                bar.set_height(p)
            for bar, p in zip(a["bars_adv"], s["probs_adv"], strict=True):
                bar.set_height(p)
            # Once per model and attack: the accuracy at every slider stop, so that moving
            # the slider later never waits for the batch. An eps-dependent attack (PGD)
            # shows the stops computed so far instead.
            if attack not in ATTACKS:
                known = [self._accuracy.get((name, attack, e), np.nan) for e in a["curve_eps"]]
                a["curve"].set_ydata(known)
            elif np.isnan(a["curve"].get_ydata()).any():
                a["curve"].set_ydata([self.batch_accuracy(name, attack, e) for e in a["curve_eps"]])
            a["marker"].set_xdata([eps, eps])
            a["point"].set_data([eps], [s["accuracy"]])
            lines.append(
                f"<b>{name}</b>: label {self.y[i]}, clean → <b>{s['pred_clean']}</b> "
                f"({s['probs_clean'].max():.1%}), adversarial → <b>{s['pred_adv']}</b> "
                f"({s['probs_adv'].max():.1%}); accuracy at ε={eps:.2f}: {s['accuracy']:.1%}"
            )
        self.image.value = self._blit_png()
        self.status.value = "<br>".join(lines)
        self.render_ms.append(1000 * (time.perf_counter() - start))
        return state

    def _reset_curves(self, *_: object) -> None:
        self._figure = None  # attack changed: accuracy curves are redrawn
        # PGD runs at each new slider stop: report the value on release, not while dragging
        self.eps.continuous_update = self.attack.value in ATTACKS
        self.render()


def make_explorer(
    models: Mapping[str, keras.Model],
    x: np.ndarray,
    y: np.ndarray,
    *,
    side_by_side: bool = False,
    n_accuracy: int = 500,
    n_pgd: int = 100,
    eps: float = EPS,
    index: int = 0,
) -> Explorer:
    """Build the explorer for ``models`` (name -> model) on images ``x`` with labels ``y``.

    Args:
        models: one or more classifiers from :func:`helpers.model.build_cnn`.
        x: images ``(n, 28, 28, 1)`` in [0, 1] -- keep ``n`` modest (~1,000): the attack
            direction is computed for all of them on first use.
        y: their labels (int or one-hot).
        side_by_side: show every model at once (else a toggle picks one).
        n_accuracy: the first this many images form the fixed batch of the accuracy view.
        n_pgd: the same for PGD, which runs per slider stop (on first use), so fewer.
        eps, index: initial slider values.
    """
    if not models:
        raise ValueError("make_explorer needs at least one model")
    x = validate_images(x)
    y = labels_for(x, y)
    names = list(models)
    eps_slider, index_slider, model_picker, attack_picker = _make_controls(
        len(x), names, eps, index
    )
    image = widgets.Image(format="png")
    status = widgets.HTML()
    controls = [eps_slider, index_slider, attack_picker]
    if not side_by_side and len(names) > 1:
        controls.insert(2, model_picker)
    box = widgets.VBox([widgets.VBox(controls), status, image])
    explorer = Explorer(
        widget=box,
        eps=eps_slider,
        index=index_slider,
        model=model_picker,
        attack=attack_picker,
        image=image,
        status=status,
        models=dict(models),
        x=x,
        y=y,
        n_accuracy=min(n_accuracy, len(x)),
        side_by_side=side_by_side,
        n_pgd=min(n_pgd, len(x)),
    )
    for control in (eps_slider, index_slider, model_picker):
        control.observe(explorer.render, names="value")
    attack_picker.observe(explorer._reset_curves, names="value")
    explorer.render()
    return explorer


def _draw_digits(axes: list, name: str) -> dict:
    """The three digit panels of one model's row (original, perturbation, adversarial)."""
    blank = np.zeros((28, 28))
    a = {
        "original": axes[0].imshow(blank, cmap="gray_r", vmin=0, vmax=1, animated=True),
        "delta": axes[1].imshow(blank, cmap="RdBu_r", vmin=-EPS_MAX, vmax=EPS_MAX, animated=True),
        "adversarial": axes[2].imshow(blank, cmap="gray_r", vmin=0, vmax=1, animated=True),
        "titles": [
            ax.text(
                0.5,
                1.04,
                "",
                transform=ax.transAxes,
                ha="center",
                fontsize=10,
                animated=True,
            )
            for ax in axes[:3]
        ],
    }
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel(name, fontsize=10)
    return a


def _draw_charts(axes: list, n_accuracy: int, lazy: bool = False) -> dict:
    """The two charts of one model's row: class probabilities and accuracy against ε
    (``lazy``: filled in stop by stop, so each computed stop is marked by a dot)."""
    digits = np.arange(NUM_CLASSES)
    curve_eps = np.round(np.arange(0, EPS_MAX + 1e-9, EPS_STEP), 4)  # every slider stop
    a: dict = {}
    width = 0.4
    a["bars_clean"] = axes[0].bar(
        digits - width / 2, np.zeros(10), width, label="clean", animated=True
    )
    a["bars_adv"] = axes[0].bar(
        digits + width / 2, np.zeros(10), width, label="adversarial", animated=True
    )
    axes[0].set(ylim=(0, 1.05), xticks=digits, yticks=[0, 0.5, 1])
    for ax in axes:
        ax.tick_params(labelsize=9)
    axes[0].set_title("class probabilities", fontsize=10)
    axes[0].legend(
        fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, frameon=False
    )
    (a["curve"],) = axes[1].plot(
        curve_eps, np.full(len(curve_eps), np.nan), marker="." if lazy else None, animated=True
    )
    a["marker"] = axes[1].axvline(0, color="crimson", lw=1.5, animated=True)
    (a["point"],) = axes[1].plot([0], [0], "o", color="crimson", animated=True)
    axes[1].set(xlim=(0, EPS_MAX), ylim=(0, 1.02), yticks=[0, 0.5, 1])
    axes[1].set_xlabel("ε", labelpad=1)
    axes[1].set_title(f"accuracy on {n_accuracy} images", fontsize=10)
    a["curve_eps"] = curve_eps
    return a


def _make_controls(
    n_images: int, names: list[str], eps: float, index: int
) -> tuple[widgets.FloatSlider, widgets.IntSlider, widgets.ToggleButtons, widgets.Dropdown]:
    """The explorer's controls: ε slider, image slider, model toggle, attack picker."""
    style = {"description_width": "90px"}
    layout = widgets.Layout(width="480px")
    eps_slider = widgets.FloatSlider(
        value=eps,
        min=0.0,
        max=EPS_MAX,
        step=EPS_STEP,
        description="ε (budget)",
        readout_format=".2f",
        continuous_update=True,
        style=style,
        layout=layout,
    )
    index_slider = widgets.IntSlider(
        value=index, min=0, max=n_images - 1, description="test image", style=style, layout=layout
    )
    model_picker = widgets.ToggleButtons(options=names, description="model", style=style)
    attack_picker = widgets.Dropdown(
        options=[*ATTACKS, *EPS_ATTACKS], description="attack", style=style
    )
    return eps_slider, index_slider, model_picker, attack_picker
