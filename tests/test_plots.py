"""The figures draw what their data says, and each line's colour says whose it is."""

import matplotlib.colors as mcolors
import numpy as np
import pytest

from helpers import plots

MODEL_LABELS = ("standard CNN", "FGSM-trained CNN", "FGSM-RS-trained CNN", "PGD-trained CNN")


def model_colours() -> set[tuple[float, ...]]:
    return {mcolors.to_rgba(plots.model_style(label)["color"]) for label in MODEL_LABELS}


def colour(artist) -> tuple[float, ...]:
    return mcolors.to_rgba(artist.get_color())


def test_certified_band_draws_one_panel_per_model_with_both_bounds():
    both = {"attacked": {"0.1": 0.9, "0.2": 0.5}, "certified": {"0.1": 0.8, "0.2": 0.1}}
    fig = plots.plot_certified_band({f"model {i}": both for i in range(4)})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4 and len(fig.axes) == 6  # a 2 x 3 grid, two panels hidden
    upper, lower = visible[0].lines[:2]
    np.testing.assert_allclose(upper.get_ydata(), [0.9, 0.5])
    np.testing.assert_allclose(lower.get_ydata(), [0.8, 0.1])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "unknown", "attacked (upper bound)", "certified (lower bound)",
    ]  # fmt: skip


def test_interval_growth_shows_widths_per_layer_and_the_true_class_apart():
    widths = {"0.1": {"input": 0.1, "conv1": 0.01, "logits": 50.0}}
    lower, upper = -np.arange(10.0), np.arange(10.0) + 1
    fig = plots.plot_interval_growth(widths, lower, upper, label=3, eps=0.1)
    ax_w, ax_z = fig.axes
    assert ax_w.get_yscale() == "log"
    np.testing.assert_allclose(ax_w.lines[0].get_ydata(), [0.1, 0.01, 50.0])
    assert ax_z.lines[0].get_ydata()[0] == lower[3]  # the true class's lowest value


def test_tradeoff_joins_a_sweep_and_annotates_each_setting():
    points = {
        "TRADES-trained CNN, β=0": {"clean": 0.99, "robust": 0.0},
        "TRADES-trained CNN, β=6": {"clean": 0.97, "robust": 0.6},
        "PGD-trained CNN, same size": {"clean": 0.98, "robust": 0.5},
    }
    fig = plots.plot_tradeoff(points, eps=0.25, n_attacked=100)
    (ax,) = fig.axes
    sweep, single = ax.lines[0], ax.lines[-1]
    np.testing.assert_allclose(sweep.get_xdata(), [0.0, 0.6])
    np.testing.assert_allclose(sweep.get_ydata(), [0.99, 0.97])
    assert sweep.get_linestyle() == "-" and single.get_linestyle() == "None"
    assert sweep.get_color() != single.get_color()  # each model its own colour
    assert [t.get_text() for t in ax.texts] == ["β=0", "β=6"]  # the single point is not
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["TRADES-trained CNN", "PGD-trained CNN, same size"]
    # the 95% Wilson interval of 60 digits in 100: [50.2%, 69.1%]
    bars = next(c for c in ax.collections if len(c.get_segments()) == 2).get_segments()
    np.testing.assert_allclose(bars[1][:, 0], [0.502, 0.691], atol=1e-3)
    assert "0.25" in ax.get_xlabel()


def test_tradeoff_tick_labels_are_the_ticks_not_rounded_ones():
    """The sweep of a full-size run (robust 78-84%, clean 94.8-96.6%): every tick label,
    read back as a number, is its tick's value."""
    points = {
        "TRADES-trained CNN, β=1": {"clean": 0.9629, "robust": 0.7833},
        "TRADES-trained CNN, β=6": {"clean": 0.9481, "robust": 0.8167},
        "PGD-trained CNN, same size": {"clean": 0.9655, "robust": 0.8367},
    }
    fig = plots.plot_tradeoff(points, eps=0.25, n_attacked=300)
    fig.canvas.draw()
    (ax,) = fig.axes
    for axis in (ax.xaxis, ax.yaxis):
        ticks = [t for t in axis.get_major_ticks() if t.label1.get_text()]
        assert len(ticks) >= 3
        for tick in ticks:
            shown = float(tick.label1.get_text().rstrip("%")) / 100
            assert shown == pytest.approx(tick.get_loc(), abs=1e-9), tick.label1.get_text()


def test_attack_effort_names_the_setting_each_line_was_measured_at():
    """A model whose PGD had to be strengthened (converge_attack's steps and restarts) says
    so in its legend entry; the axes carry no setting that is true of one model only."""

    def effort(steps, restarts, acc):
        return {
            "by_steps": {str(k): acc for k in range(10, 2 * steps + 1, 10)},
            "by_restarts": {str(r): acc for r in range(1, 2 * restarts + 1)},
            "steps": steps,
            "restarts": restarts,
        }

    efforts = {"standard CNN": effort(40, 5, 0.0), "FGSM-RS-trained CNN": effort(160, 10, 0.68)}
    fig = plots.plot_attack_effort(efforts, steps=40, restarts=5)
    ax_s, ax_r = fig.axes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == [
        "standard CNN: left at 5 restarts, right at 40 steps each",
        "FGSM-RS-trained CNN: left at 10 restarts, right at 160 steps each",
    ]
    assert "40 steps, 5 restarts" in legend[2]  # the headline's setting, the dashed lines
    assert "restarts" not in ax_s.get_xlabel() and "steps" not in ax_r.get_xlabel()
    assert max(ax_s.lines[1].get_xdata()) == 320 and max(ax_r.lines[1].get_xdata()) == 20
    # a plain attack_effort result (no "steps") falls back on the headline's setting
    plain = {
        "standard CNN": {
            k: v for k, v in effort(40, 5, 0.0).items() if k in ("by_steps", "by_restarts")
        }
    }
    fig = plots.plot_attack_effort(plain, steps=40, restarts=5)
    assert (
        fig.legends[0]
        .get_texts()[0]
        .get_text()
        .endswith("left at 5 restarts, right at 40 steps each")
    )


def test_series_of_no_model_are_grey_each_with_its_own_marker_and_line():
    series = {f"setting {i}": [0.1 * i, 0.2] for i in range(4)} | {"PGD-trained CNN": [0.5, 0.6]}
    fig = plots.plot_series([1, 2], series, "x", "y", "t", hlines={"reference": 0.7})
    (ax,) = fig.axes
    others, model = ax.lines[:4], ax.lines[4]
    assert len({line.get_marker() for line in others}) == 4
    assert len({line.get_linestyle() for line in others}) == 4
    assert not {colour(line) for line in others} & model_colours()
    assert all(len(set(colour(line)[:3])) == 1 for line in others)  # greys
    assert colour(model) == mcolors.to_rgba(plots.model_style("PGD-trained CNN")["color"])
    assert model.get_marker() == plots.model_style("PGD-trained CNN")["marker"]


def test_published_points_beside_a_curve_wear_no_models_colour():
    curve = {"0": 0.99, "0.25": 0.3}
    fig = plots.plot_accuracy_vs_epsilon(
        {"standard CNN, FGSM": curve}, references={"tutorial": (0.25, 0.72), "paper": (0.25, 0.1)}
    )
    (ax,) = fig.axes
    line, *stars = ax.lines[:3]
    assert colour(line) == mcolors.to_rgba(plots.model_style("standard CNN")["color"])
    assert not {colour(s) for s in stars} & model_colours()
    assert stars[0].get_marker() != stars[1].get_marker()


def test_certified_band_wears_no_models_colour():
    both = {"attacked": {"0.1": 0.9}, "certified": {"0.1": 0.8}}
    fig = plots.plot_certified_band({"PGD-trained CNN": both})
    lines = fig.axes[0].lines[:2]
    assert not {colour(line) for line in lines} & model_colours()


@pytest.mark.parametrize("accuracy", [0.3, 0.5, 0.875])
def test_representative_gallery_is_fooled_as_often_as_the_test_set(accuracy):
    survived = np.random.default_rng(1).random(2000) < accuracy
    shown = plots.representative_indices(survived, 8, seed=0)
    assert len(shown) == 8 == len(set(shown)) and list(shown) == sorted(shown)
    assert survived[shown].sum() == round(8 * survived.mean())
    np.testing.assert_array_equal(shown, plots.representative_indices(survived, 8, seed=0))
    assert not np.array_equal(shown, plots.representative_indices(survived, 8, seed=1))


def test_representative_gallery_takes_what_there_is():
    assert plots.representative_indices(np.zeros(5, bool), 8).tolist() == [0, 1, 2, 3, 4]
    all_survive = plots.representative_indices(np.ones(20, bool), 3, seed=2)
    assert len(all_survive) == 3
    few_fooled = np.array([True] * 9 + [False])  # 90%: of 4 shown, 4 would survive ...
    assert plots.representative_indices(few_fooled, 4).size == 4


def test_adversarial_examples_show_the_chosen_images():
    x = np.zeros((10, 28, 28, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(10) / 10
    probs = np.eye(10, dtype=np.float32)
    y = np.arange(10)
    fig = plots.plot_adversarial_examples(x, x, probs, probs[::-1], y, indices=[2, 7])
    clean_row = fig.axes[:2]
    assert [ax.images[0].get_array()[0, 0] for ax in clean_row] == pytest.approx([0.2, 0.7])
    assert [ax.get_title() for ax in clean_row] == ["2 (100%)", "7 (100%)"]


def test_accuracy_by_class_draws_one_coloured_mark_per_model_and_digit():
    by_class = {"standard CNN": np.zeros(10), "PGD-trained CNN": np.linspace(0.5, 0.95, 10)}
    fig = plots.plot_accuracy_by_class(by_class, counts=[100] * 10)
    (ax,) = fig.axes
    marks = [container.lines[0] for container in ax.containers]  # the errorbars' points
    np.testing.assert_allclose(marks[1].get_ydata(), by_class["PGD-trained CNN"])
    assert colour(marks[1]) == mcolors.to_rgba(plots.model_style("PGD-trained CNN")["color"])
    assert np.all(marks[0].get_xdata() < marks[1].get_xdata())  # side by side per digit
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(by_class)


def test_loss_along_directions_one_panel_per_model_one_line_style_per_direction():
    curve = {"0": 0.1, "0.125": 0.5, "0.25": 2.0}
    losses = {
        label: {"gradient sign": curve, "random sign": curve, "towards PGD": curve}
        for label in ("standard CNN", "FGSM-trained CNN", "PGD-trained CNN")
    }
    fig = plots.plot_loss_along_directions(losses)
    assert [ax.get_title() for ax in fig.axes] == list(losses)
    for ax, label in zip(fig.axes, losses, strict=True):
        assert [line.get_linestyle() for line in ax.lines] == ["--", ":", "-"]
        assert {colour(line) for line in ax.lines} == {
            mcolors.to_rgba(plots.model_style(label)["color"])
        }
        np.testing.assert_allclose(ax.lines[2].get_ydata(), [0.1, 0.5, 2.0])
