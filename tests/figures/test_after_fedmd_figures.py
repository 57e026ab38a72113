"""Lesson 7's figures draw from a result at tiny settings (every panel, its labels, the chance line)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fedkd_lessons.figures.lesson7_after_fedmd import (accuracy_by_method_figure, against_control_figure,
                                                       defence_curve_figure, methods_diagram)
from fedkd_lessons.experiments.lesson5_fedmd import Settings as FedMDSettings  # noqa: E402
from fedkd_lessons.experiments.lesson7_after_fedmd import CHANCE, Settings, run_lesson  # noqa: E402


@pytest.fixture(scope="module")
def result():
    fedmd = FedMDSettings(parties=3, letters_per_class=4, evaluation_per_class=2, public_epochs=1, private_epochs=1,
                          pooled_epochs=1, rounds=1, subset_size=30)
    settings = Settings(seeds=2, fedmd=fedmd, favourite_letters=4, other_letters=1, noise_stds=(2.0, 5.0),
                        defended_noise_stds=(5.0,), attack_draws=2)
    return run_lesson(settings, progress=False)[1]


def test_the_diagram_names_every_method():
    fig = methods_diagram()
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"FedMD", "DS-FL", "FD", "FedDF"} <= texts
    plt.close(fig)


def test_the_accuracy_figure_has_every_method_and_reference(result):
    fig = accuracy_by_method_figure(result)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["round 0\n(start)", "control\n(reference)", "FedMD", "FD", "FedDF", "DS-FL"]
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "pooled upper bound (first seed)"
    plt.close(fig)


def test_the_control_figure_has_one_row_per_method(result):
    fig = against_control_figure(result)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "DS-FL - control", "FedDF - control", "FD - control", "FedMD - control"]
    plt.close(fig)


def test_the_defence_curve_has_every_noise_level_chance_and_the_cost_where_measured(result):
    fig = defence_curve_figure(result, CHANCE)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["0", "2", "5"]
    assert any(list(line.get_ydata()) == [CHANCE, CHANCE] for line in left.get_lines())  # the chance line
    means = [line for line in left.get_lines() if line.get_marker() == "D"]
    assert [line.get_xdata()[0] for line in means] == [0, 1, 2]
    assert np.allclose([line.get_ydata()[0] for line in means], result.attack.mean(axis=0))
    costs = [line for line in right.get_lines() if line.get_marker() == "D"]  # only where FedMD ran defended
    assert [line.get_xdata()[0] for line in costs] == [2]
    assert np.isclose(costs[0].get_ydata()[0], 100 * result.defence_cost()[5.0].mean)
    assert "attack falls towards chance" in fig._suptitle.get_text()
    plt.close(fig)
