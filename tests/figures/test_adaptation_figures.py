import numpy as np
from matplotlib.figure import Figure

from fedkd_lessons.figures.lesson4_adaptation import (aggregator_recovery_figure, client_spread_figure,
                                                      distill_sweep_figure, method_comparison_figure,
                                                      overfitting_figure, readme_figure, springs_figure,
                                                      who_gains_by_local_figure, who_gains_figure)
from fedkd_lessons.experiments.lesson4_springs import make_spring_toy

RNG = np.random.default_rng(0)
K = 6


def scores():
    return {name: RNG.uniform(0.7, 1.0, K) for name in ("global", "local", "finetune", "freeze_base", "ewc", "distill")}


def test_each_lesson4_figure_returns_a_figure_with_its_title():
    acc = scores()
    figures = [
        client_spread_figure(acc["global"], acc["local"], np.arange(K) + 30, np.arange(K) + 20, title="spread"),
        method_comparison_figure(acc, title="methods"),
        who_gains_figure(acc["global"], {m: acc[m] - acc["global"] for m in ("finetune", "distill")}, title="gains"),
        aggregator_recovery_figure({"mean": acc, "median": scores()}, title="recovery"),
        distill_sweep_figure(RNG.normal(0, 0.01, (2, 3)), (1, 4, 6), (0.5, 0.95), marked=[(0.95, 6)], title="sweep"),
    ]
    for fig, title in zip(figures, ("spread", "methods", "gains", "recovery", "sweep")):
        assert isinstance(fig, Figure)
        assert fig.axes[0].get_title() == title


def test_overfitting_figure_draws_one_curve_per_method_and_the_global_level():
    curves = {"finetune": RNG.uniform(0.8, 1, (3, K)), "distill": RNG.uniform(0.8, 1, (3, K))}
    fig = overfitting_figure((0, 5, 20), curves, 0.9, 10, ["5", "all"], {"finetune": [-0.03, 0.0], "distill": [0.01, 0.0]})
    left, right = fig.axes
    assert len(left.lines) == 3 and len(right.lines) == 3
    np.testing.assert_allclose(left.lines[0].get_ydata(), 100 * curves["finetune"].mean(axis=1))


def test_readme_figure_shows_finetuning_below_distillation_after_many_epochs():
    fig = readme_figure()
    finetune, distill, _ = fig.axes[0].lines
    assert isinstance(fig, Figure)
    assert finetune.get_ydata()[-1] < distill.get_ydata()[-1]


def test_no_lesson4_figure_draws_bars():
    """Bars would need an axis from zero; these axes start near the data, so the figures use dots and lines."""
    acc = scores()
    for fig in (client_spread_figure(acc["global"], acc["local"], np.arange(K) + 30, np.arange(K) + 20),
                method_comparison_figure(acc), aggregator_recovery_figure({"mean": acc, "median": scores()})):
        assert not fig.axes[0].patches


def test_who_gains_by_local_figure_draws_one_panel_per_model_with_open_dots_for_the_mirrored():
    local = RNG.uniform(0.7, 1.0, 8)
    mirrored = np.array([True, False] * 4)
    fig = who_gains_by_local_figure(local, {"global": RNG.normal(0, 0.05, 8), "distill": RNG.normal(0, 0.05, 8)},
                                    mirrored, title="who")
    assert len(fig.axes) == 2 and fig._suptitle.get_text() == "who"
    filled, hollow = fig.axes[1].collections
    assert len(filled.get_offsets()) == 4 and len(hollow.get_offsets()) == 4
    np.testing.assert_allclose(hollow.get_offsets()[:, 0], 100 * local[mirrored])


def test_springs_figure_draws_both_springs_and_the_paths():
    fig = springs_figure(make_spring_toy(size=80), steps=20)
    ewc, distill = fig.axes[:2]
    assert "each weight" in ewc.get_title() and "outputs" in distill.get_title()
    labels = [text.get_text() for text in distill.get_legend().get_texts()]
    assert labels[0].startswith("fine-tune") and labels[1].startswith("distill")
