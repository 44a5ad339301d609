"""The figures of notebooks 04 and 07 draw what their data says."""

import numpy as np

from helpers import plots


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
    # the 95% interval of 60% on 100 digits: ±9.6 points
    bars = next(c for c in ax.collections if len(c.get_segments()) == 2).get_segments()
    np.testing.assert_allclose(bars[1][:, 0], [0.6 - 0.096, 0.6 + 0.096], atol=1e-3)
    assert "0.25" in ax.get_xlabel()
